//! The message catalogue: every sentence, table header, prompt and error line printed for
//! people comes from `cli/locales/{en,zh}/*.ftl` (Fluent), looked up with [`tr!`].
//!
//! The language is chosen once, at start, by [`init`]: `--lang zh|en`, else `lang` in
//! `<home>/config.toml`, else the locale (`LC_ALL`, `LC_MESSAGES`, `LANG`, the first one
//! set) when it begins with `zh`; English otherwise. `--json` output never depends on it.
//!
//! Each area of the binary keeps its messages in a file of its own under both languages
//! (`core.ftl`, `ledger.ftl`, ...); a test checks that both languages hold the same
//! message ids with the same arguments, and that every id the code asks for exists.
//!
//! Fluent chooses plural forms (`1 change`, `2 changes`) by the language's rules, so code
//! passes counts as numbers, never pre-formatted.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use fluent_bundle::FluentValue;
use fluent_templates::{LanguageIdentifier, Loader, langid, static_loader};

static_loader! {
    static LOCALES = {
        locales: "./locales",
        fallback_language: "en",
        // No Unicode isolation marks around arguments: the output goes to terminals and
        // files, where they would be stray invisible characters.
        customise: |bundle| bundle.set_use_isolating(false),
    };
}

static EN: LanguageIdentifier = langid!("en");
static ZH: LanguageIdentifier = langid!("zh");

/// A language the binary speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// 中文.
    Zh,
    /// English.
    En,
}

impl Lang {
    /// `zh` or `en` (also `zh-CN`, `zh_CN.UTF-8`, `en_US`: only the language counts).
    pub fn parse(text: &str) -> Option<Lang> {
        let lang = text
            .split(['_', '-', '.', '@'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match lang.as_str() {
            "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    fn id(self) -> &'static LanguageIdentifier {
        match self {
            Lang::Zh => &ZH,
            Lang::En => &EN,
        }
    }
}

static LANG: OnceLock<Lang> = OnceLock::new();

/// Chooses the language for this run (see the module docs). `home` is the node's home,
/// when one is known; a config file that cannot be read counts as not setting it (the
/// command that reads it reports why).
pub fn init(flag: Option<Lang>, home: Option<&Path>) {
    let lang = flag
        .or_else(|| {
            home.and_then(|h| yizhan_node::config::load(h).ok())
                .and_then(|c| c.lang)
                .and_then(|l| Lang::parse(&l))
        })
        .unwrap_or_else(from_locale);
    let _ = LANG.set(lang);
}

/// The language the locale asks for: Chinese when it begins with `zh`.
fn from_locale() -> Lang {
    let locale = ["LC_ALL", "LC_MESSAGES", "LANG"]
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .find(|v| !v.is_empty())
        .unwrap_or_default();
    if locale.starts_with("zh") {
        Lang::Zh
    } else {
        Lang::En
    }
}

/// The language of this run (English before [`init`]).
pub fn lang() -> Lang {
    LANG.get().copied().unwrap_or(Lang::En)
}

/// Whether this run speaks Chinese.
pub fn zh() -> bool {
    lang() == Lang::Zh
}

/// One message in this run's language. Use [`tr!`].
pub fn message(id: &str, args: &[(&'static str, FluentValue<'static>)]) -> String {
    message_in(lang(), id, args)
}

/// One message in `lang`, whatever this run speaks (a printed page is always Chinese).
pub fn message_in(lang: Lang, id: &str, args: &[(&'static str, FluentValue<'static>)]) -> String {
    let map: HashMap<Cow<'static, str>, FluentValue<'static>> = args
        .iter()
        .map(|(k, v)| (Cow::Borrowed(*k), v.clone()))
        .collect();
    let args = (!map.is_empty()).then_some(&map);
    LOCALES
        .try_lookup_complete(lang.id(), id, args)
        .unwrap_or_else(|| id.to_string())
}

/// A message whose id is made at run time (`field-{name}`, `role-{slug}`), or `fallback`
/// when the catalogue has none: for names that come from data, such as a record's fields.
pub fn message_or(id: &str, fallback: &str) -> String {
    LOCALES
        .try_lookup_complete(lang().id(), id, None)
        .unwrap_or_else(|| fallback.to_string())
}

/// An argument of a message: text, or a number (which selects plural forms).
pub fn arg<T: Into<Arg>>(value: T) -> FluentValue<'static> {
    value.into().0
}

/// What [`arg`] takes.
pub struct Arg(FluentValue<'static>);

macro_rules! arg_from {
    (text: $($t:ty),*) => { $(impl From<$t> for Arg { fn from(v: $t) -> Arg { Arg(FluentValue::from(v.to_string())) } })* };
    (number: $($t:ty),*) => { $(impl From<$t> for Arg { fn from(v: $t) -> Arg { Arg(FluentValue::from(v)) } })* };
}
arg_from!(text: String, &String, &str, Cow<'_, str>, &std::path::Display<'_>, std::net::SocketAddr);
arg_from!(number: usize, u64, u32, i64, i32, f64);

/// A message from the catalogue in this run's language:
/// `tr!("saved-visit", id = id)`.
#[macro_export]
macro_rules! tr {
    ($id:literal) => {
        $crate::i18n::message($id, &[])
    };
    ($id:literal, $($key:ident = $value:expr),+ $(,)?) => {
        $crate::i18n::message($id, &[$((stringify!($key), $crate::i18n::arg($value))),+])
    };
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::PathBuf;

    use fluent_syntax::ast;

    use super::*;

    fn locales() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("locales")
    }

    /// Every message id of one language, with the variables each uses.
    fn catalogue(lang: &str) -> BTreeMap<String, BTreeSet<String>> {
        let mut out = BTreeMap::new();
        for entry in std::fs::read_dir(locales().join(lang)).unwrap() {
            let path = entry.unwrap().path();

            let text = std::fs::read_to_string(&path).unwrap();
            let resource = fluent_syntax::parser::parse(text.as_str())
                .unwrap_or_else(|(_, errors)| panic!("{}: {errors:?}", path.display()));
            for entry in resource.body {
                if let ast::Entry::Message(m) = entry {
                    let mut vars = BTreeSet::new();
                    if let Some(value) = &m.value {
                        variables(value, &mut vars);
                    }
                    let id = m.id.name.to_string();
                    assert!(
                        out.insert(id.clone(), vars).is_none(),
                        "{lang}: message {id} is defined twice"
                    );
                }
            }
        }
        out
    }

    fn variables(pattern: &ast::Pattern<&str>, vars: &mut BTreeSet<String>) {
        for element in &pattern.elements {
            if let ast::PatternElement::Placeable { expression } = element {
                expression_vars(expression, vars);
            }
        }
    }

    fn expression_vars(expression: &ast::Expression<&str>, vars: &mut BTreeSet<String>) {
        match expression {
            ast::Expression::Select { selector, variants } => {
                inline_vars(selector, vars);
                for v in variants {
                    variables(&v.value, vars);
                }
            }
            ast::Expression::Inline(inline) => inline_vars(inline, vars),
        }
    }

    fn inline_vars(inline: &ast::InlineExpression<&str>, vars: &mut BTreeSet<String>) {
        match inline {
            ast::InlineExpression::VariableReference { id } => {
                vars.insert(id.name.to_string());
            }
            ast::InlineExpression::Placeable { expression } => expression_vars(expression, vars),
            _ => {}
        }
    }

    #[test]
    fn both_languages_hold_the_same_messages_with_the_same_arguments() {
        let en = catalogue("en");
        // `--help` in Chinese (`zh/help.ftl`); the English is the doc comments of
        // `args.rs`, and `help.rs` tests that both cover every command and option.
        let mut zh = catalogue("zh");
        zh.retain(|id, _| id != "help" && !id.starts_with("help-"));
        let en_ids: BTreeSet<_> = en.keys().collect();
        let zh_ids: BTreeSet<_> = zh.keys().collect();
        assert_eq!(
            en_ids.difference(&zh_ids).collect::<Vec<_>>(),
            Vec::<&&String>::new(),
            "in English only"
        );
        assert_eq!(
            zh_ids.difference(&en_ids).collect::<Vec<_>>(),
            Vec::<&&String>::new(),
            "in Chinese only"
        );
        for (id, vars) in &en {
            assert_eq!(vars, &zh[id], "{id}: the two languages use other arguments");
        }
        assert!(en.len() > 50, "the catalogue is nearly empty");
    }

    #[test]
    fn every_message_the_code_asks_for_exists() {
        let en = catalogue("en");
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut missing = Vec::new();
        let mut asked = 0;
        let mut stack = vec![src];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, _) in text.match_indices("tr!(\"") {
                    let rest = &text[i + 5..];
                    let id = &rest[..rest.find('"').unwrap()];
                    asked += 1;
                    if !en.contains_key(id) {
                        missing.push(format!("{}: {id}", path.display()));
                    }
                }
            }
        }
        assert!(asked > 50, "the code asks for almost no messages");
        assert_eq!(missing, Vec::<String>::new());
    }

    #[test]
    fn plurals_follow_the_language() {
        let changes = |lang: &LanguageIdentifier, count: i64| {
            let args = HashMap::from([(Cow::Borrowed("count"), FluentValue::from(count))]);
            LOCALES.lookup_complete(lang, "changes", Some(&args))
        };
        assert_eq!(changes(&EN, 1), "1 change");
        assert_eq!(changes(&EN, 3), "3 changes");
        assert_eq!(changes(&ZH, 3), "3 条修改");
    }

    #[test]
    fn locale_names_are_read_by_their_language() {
        assert_eq!(Lang::parse("zh_CN.UTF-8"), Some(Lang::Zh));
        assert_eq!(Lang::parse("zh-TW"), Some(Lang::Zh));
        assert_eq!(Lang::parse("en_US.UTF-8"), Some(Lang::En));
        assert_eq!(Lang::parse("C"), None);
    }
}

//! Output: one JSON value on stdout with `--json`, aligned tables and short sentences
//! without it.
//!
//! Human output carries text other members wrote (names, notes, comments, grid names,
//! error reasons), and a terminal obeys the escape sequences in what it prints: a comment
//! holding `ESC ] 0 ; … BEL` retitles the window, `ESC [ 2 J` clears it. Everything
//! printed for people goes through [`clean`]: the tables and fields here, the error line
//! in `main`, `serve`'s lines and the report. `--json` carries text unchanged.
//!
//! A command that writes a file (`export`, `report --out`) writes it whole or not at all,
//! through [`write_atomically`].

use std::borrow::Cow;
use std::io::Write;

use comfy_table::presets;
use serde::Serialize;
use yizhan_node::model::Category;

/// Where a command's result goes.
pub struct Out {
    pub json: bool,
}

impl Out {
    /// Prints `value` as the command's one JSON value, or runs `human` to print for people.
    pub fn emit<T: Serialize>(&self, value: &T, human: impl FnOnce()) -> anyhow::Result<()> {
        if self.json {
            let mut stdout = std::io::stdout().lock();
            serde_json::to_writer(&mut stdout, value)?;
            writeln!(stdout)?;
        } else {
            human();
        }
        Ok(())
    }
}

/// Text for people: every control character (C0, DEL, C1) and every bidirectional
/// override or isolate (which reorder what follows them on screen) replaced by a visible
/// stand-in, so that printing it cannot move the cursor, retitle or clear the terminal,
/// or disguise the rest of the line. A newline stays (notes have lines); a tab becomes a
/// space; the C0 controls become their Unicode pictures (ESC shows as `␛`); the rest `�`.
pub fn clean(text: &str) -> Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !text.contains(unsafe_char) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| match c {
                '\n' => '\n',
                '\t' => ' ',
                c if c < ' ' => char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}'),
                '\u{7f}' => '\u{2421}',
                c if unsafe_char(c) => '\u{fffd}',
                c => c,
            })
            .collect(),
    )
}

/// A table with a header row and no borders; columns are aligned by display width, so
/// Chinese text lines up. Its cells are [`clean`]ed as they are added.
pub struct Table(comfy_table::Table);

impl Table {
    /// Adds a row of cells.
    pub fn add_row(&mut self, cells: Vec<String>) {
        self.0.add_row(
            cells
                .iter()
                .map(|c| clean(c).into_owned())
                .collect::<Vec<_>>(),
        );
    }

    /// The number of rows added.
    pub fn row_count(&self) -> usize {
        self.0.row_count()
    }
}

/// An empty [`Table`] with `header` (already in this run's language).
pub fn table<S: AsRef<str>>(header: &[S]) -> Table {
    let mut t = comfy_table::Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(
        header
            .iter()
            .map(|h| h.as_ref().to_string())
            .collect::<Vec<_>>(),
    );
    Table(t)
}

/// Prints a table, or a sentence when it has no rows.
pub fn print_table(t: &Table, empty: &str) {
    if t.row_count() == 0 {
        println!("{empty}");
    } else {
        for line in t.0.to_string().lines() {
            println!("{}", line.trim_end());
        }
    }
}

/// Prints `label  value` lines, the labels padded to one width. Each key is a field name
/// (`visited_at`), shown by its label in this run's language ([`label`]).
pub fn print_fields(fields: &[(&str, String)]) {
    let labels: Vec<String> = fields.iter().map(|(k, _)| label(k)).collect();
    let width = labels
        .iter()
        .map(|k| unicode_width::UnicodeWidthStr::width(k.as_str()))
        .max()
        .unwrap_or(0);
    for (k, (_, v)) in labels.iter().zip(fields) {
        let pad = width - unicode_width::UnicodeWidthStr::width(k.as_str());
        // A note's later lines start under its first.
        let v = clean(v).replace('\n', &format!("\n{}", " ".repeat(width + 2)));
        println!("{k}{}  {v}", " ".repeat(pad));
    }
}

/// A record field's name for people (`visited_at` → `visited at` / `走访时间`); a field the
/// catalogue does not name (`tag:disabled`) as it is.
pub fn label(field: &str) -> String {
    if let Some(tag) = field.strip_prefix("tag:") {
        return match tag.parse::<yizhan_node::model::Tag>() {
            Ok(t) if crate::i18n::zh() => format!("{}：{}", label("tags"), t.zh()),
            _ => field.to_string(),
        };
    }
    crate::i18n::message_or(&format!("field-{field}"), field)
}

/// A member's role for people (`volunteer` → `网格员`).
pub fn role(slug: &str) -> String {
    crate::i18n::message_or(&format!("role-{slug}"), slug)
}

/// A status, priority, channel, satisfaction or tag for people: its Chinese name in a
/// Chinese run, its slug otherwise; text that is none of them as it is.
pub fn word(slug: &str) -> String {
    word_in(crate::i18n::lang(), slug)
}

/// [`word`] in a given language.
pub fn word_in(lang: crate::i18n::Lang, slug: &str) -> String {
    use yizhan_node::model::{Channel, Priority, Satisfaction, Status, Tag};
    if lang != crate::i18n::Lang::Zh {
        return slug.to_string();
    }
    slug.parse::<Status>()
        .map(Status::zh)
        .or_else(|_| slug.parse::<Priority>().map(Priority::zh))
        .or_else(|_| slug.parse::<Channel>().map(Channel::zh))
        .or_else(|_| slug.parse::<Satisfaction>().map(Satisfaction::zh))
        .or_else(|_| slug.parse::<Tag>().map(Tag::zh))
        .map_or_else(|_| slug.to_string(), str::to_string)
}

/// [`word`] of an optional value; `-` for none.
pub fn opt_word(value: &Option<String>) -> String {
    value.as_deref().map_or_else(|| "-".to_string(), word)
}

/// A category for people: its Chinese name.
pub fn category(slug: &Option<String>) -> String {
    match slug.as_deref().map(str::parse::<Category>) {
        Some(Ok(c)) => c.zh().to_string(),
        Some(Err(_)) => slug.clone().unwrap_or_default(),
        None => "-".to_string(),
    }
}

/// An optional text for people.
pub fn opt(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "-".to_string())
}

/// Prints one line for people, [`clean`]ed.
pub fn say(line: &str) {
    println!("{}", clean(line));
}

/// A device id shortened for tables (still a usable prefix).
pub fn short(device: &str) -> String {
    device.chars().take(12).collect()
}

/// Writes `bytes` to a temporary file beside `path`, fsyncs it, and renames it over `path`,
/// so that `path` is either the old file or the whole new one.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        // Exports hold residents' personal data: owner-only, like the store.
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// When something happened, for people, in this machine's zone: `2026年12月8日 08:30` in
/// Chinese, `2026-12-08 08:30` in English. Text that is not an RFC 3339 time is printed as
/// it is; `None` is `-`.
pub fn when(time: Option<&str>) -> String {
    when_in(crate::i18n::lang(), time)
}

/// [`when`] in a given language (a printed page is Chinese whatever the run speaks).
pub fn when_in(lang: crate::i18n::Lang, time: Option<&str>) -> String {
    local(lang, time, "%Y年%-m月%-d日 %H:%M", "%Y-%m-%d %H:%M")
}

/// A day, for people: `2026年12月8日` or `2026-12-08` (see [`when`]).
pub fn day(time: Option<&str>) -> String {
    local(crate::i18n::lang(), time, "%Y年%-m月%-d日", "%Y-%m-%d")
}

fn local(lang: crate::i18n::Lang, time: Option<&str>, zh: &str, en: &str) -> String {
    let Some(text) = time else {
        return "-".to_string();
    };
    match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(t) => {
            let format = if lang == crate::i18n::Lang::Zh {
                zh
            } else {
                en
            };
            t.with_timezone(&chrono::Local).format(format).to_string()
        }
        Err(_) => text.to_string(),
    }
}

/// Members by name, for people: the roster this node knows, so that tables say `李强`
/// where JSON says a device id. Where two members share a name, each is followed by the
/// first 6 characters of its id (`李强 (3fa9c1)`); a device not on the roster prints as
/// its short id.
pub struct Names(std::collections::HashMap<String, String>);

impl Names {
    /// The roster of `node`.
    pub fn of(node: &yizhan_node::Node) -> anyhow::Result<Names> {
        let members = node.members()?;
        let mut count: std::collections::HashMap<&str, usize> = Default::default();
        for m in &members {
            *count.entry(m.name.as_str()).or_default() += 1;
        }
        let mut own: std::collections::HashMap<String, String> = members
            .iter()
            .map(|m| {
                let name = if count[m.name.as_str()] > 1 || m.name.is_empty() {
                    format!("{} ({})", m.name, &m.device_id[..6.min(m.device_id.len())])
                } else {
                    m.name.clone()
                };
                (m.device_id.clone(), name)
            })
            .collect();
        // This node itself, before it has joined a site.
        let id = node.identity();
        let me = id.device_id.to_string();
        own.entry(me).or_insert_with(|| id.name.clone());
        Ok(Names(own))
    }

    /// Whether the roster names `device`.
    pub fn knows(&self, device: &str) -> bool {
        self.0.contains_key(device)
    }

    /// The name of `device` (a whole device id), or its short id.
    pub fn name(&self, device: &str) -> String {
        self.0.get(device).cloned().unwrap_or_else(|| short(device))
    }
}

/// A member's name from `names` when the roster could be read, else its short id.
pub fn name(names: Option<&Names>, device: &str) -> String {
    names.map_or_else(|| short(device), |n| n.name(device))
}

/// [`name`] of an optional member; `-` for none.
pub fn opt_name(names: Option<&Names>, device: Option<&str>) -> String {
    device.map_or_else(|| "-".to_string(), |d| name(names, d))
}

/// A list for people: `和平里、安华里` in Chinese, `a, b` in English.
pub fn list(items: &[String]) -> String {
    list_in(crate::i18n::lang(), items)
}

/// [`list`] in a given language.
pub fn list_in(lang: crate::i18n::Lang, items: &[String]) -> String {
    if items.is_empty() {
        return "-".to_string();
    }
    items.join(if lang == crate::i18n::Lang::Zh {
        "、"
    } else {
        ", "
    })
}

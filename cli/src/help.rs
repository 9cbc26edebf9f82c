//! `--help` in the run's language.
//!
//! The English help is the doc comments of `args.rs`, as clap reads them. In a Chinese run
//! every command's and option's help is replaced by its message in
//! `cli/locales/zh/help.ftl`, named by its path: `help-visit-add` for the command
//! `visit add`, `help-visit-add--household` for its `--household`, `help--home` for a
//! global option. A test checks that every command and option has one, and that every
//! message names one. (clap's own words, `Usage:` and `Options:`, stay as clap writes them.)
//!
//! The language must be known before the command line is parsed, so [`crate::i18n::init`]
//! runs first, on `--lang` and `--home` read from the raw arguments.

use clap::{Command, CommandFactory};

use crate::args::Cli;

/// The command line's definition, its help in the run's language.
pub fn command() -> Command {
    let cmd = Cli::command();
    if crate::i18n::zh() {
        translate(cmd, "help")
    } else {
        cmd
    }
}

/// Ends the process on a command line clap refused, or on `--help`: clap's own page and
/// exit code, its error line told in the run's language first (clap's words stay as the
/// detail: it has no catalogue of its own).
pub fn exit(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if !crate::i18n::zh() || matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
    {
        e.exit();
    }
    let what = match e.kind() {
        ErrorKind::UnknownArgument => crate::tr!("usage-unknown-argument"),
        ErrorKind::InvalidSubcommand => crate::tr!("usage-unknown-command"),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => crate::tr!("usage-bad-value"),
        ErrorKind::MissingRequiredArgument => crate::tr!("usage-missing-argument"),
        ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            crate::tr!("usage-missing-command")
        }
        ErrorKind::ArgumentConflict => crate::tr!("usage-conflict"),
        _ => crate::tr!("usage-other"),
    };
    let rendered = e.render().to_string();
    let detail = rendered.strip_prefix("error: ").unwrap_or(&rendered);
    eprint!(
        "{}",
        crate::tr!("usage-error", what = what, detail = detail.to_string())
    );
    std::process::exit(e.exit_code());
}

/// `cmd` and everything under it, with the help the catalogue has for `path`.
fn translate(mut cmd: Command, path: &str) -> Command {
    if let Some(about) = lookup(path) {
        cmd = cmd.about(about.clone()).long_about(about);
    }
    let args: Vec<String> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .map(|a| a.get_id().to_string())
        .collect();
    for id in args {
        if let Some(help) = lookup(&arg_path(path, &id)) {
            cmd = cmd.mut_arg(id.as_str(), |a| a.help(help.clone()).long_help(help));
        }
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in subs {
        let sub_path = format!("{path}-{name}");
        cmd = cmd.mut_subcommand(name.as_str(), |s| translate(s, &sub_path));
    }
    cmd
}

/// The message id of an argument: `help-visit-add--household`, `help--home`.
fn arg_path(path: &str, id: &str) -> String {
    format!("{path}--{}", id.replace('_', "-"))
}

fn lookup(id: &str) -> Option<String> {
    let text = crate::i18n::message_or(id, "");
    (!text.is_empty()).then_some(text)
}

/// The language and home named on the raw command line (`--lang zh`, `--lang=zh`,
/// `--home DIR`), read before clap parses it, so that its help and errors can follow.
pub fn early(
    args: &[std::ffi::OsString],
) -> (Option<crate::i18n::Lang>, Option<std::path::PathBuf>) {
    let mut lang = None;
    let mut home = None;
    let mut it = args.iter().skip(1);
    while let Some(arg) = it.next() {
        let Some(arg) = arg.to_str() else { continue };
        if arg == "--" {
            break;
        }
        if let Some(value) = arg.strip_prefix("--lang=") {
            lang = crate::i18n::Lang::parse(value);
        } else if arg == "--lang" {
            lang = it
                .next()
                .and_then(|v| v.to_str())
                .and_then(crate::i18n::Lang::parse);
        } else if let Some(value) = arg.strip_prefix("--home=") {
            home = Some(value.into());
        } else if arg == "--home" {
            home = it.next().map(Into::into);
        }
    }
    (lang, home)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every command's and option's message id.
    fn paths(cmd: &Command, path: &str, out: &mut BTreeSet<String>) {
        out.insert(path.to_string());
        for a in cmd.get_arguments() {
            if a.is_hide_set() || matches!(a.get_id().as_str(), "help" | "version") {
                continue;
            }
            out.insert(arg_path(path, a.get_id().as_str()));
        }
        for s in cmd.get_subcommands() {
            paths(s, &format!("{path}-{}", s.get_name()), out);
        }
    }

    fn catalogue() -> BTreeSet<String> {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("locales/zh/help.ftl");
        let text = std::fs::read_to_string(file).unwrap();
        let resource = fluent_syntax::parser::parse(text.as_str()).unwrap();
        resource
            .body
            .iter()
            .filter_map(|e| match e {
                fluent_syntax::ast::Entry::Message(m) => Some(m.id.name.to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_command_and_option_has_chinese_help_and_every_help_names_one() {
        let mut wanted = BTreeSet::new();
        paths(&Cli::command(), "help", &mut wanted);
        let have = catalogue();
        let missing: Vec<_> = wanted.difference(&have).collect();
        let stray: Vec<_> = have.difference(&wanted).collect();
        assert!(missing.is_empty(), "no Chinese help for: {missing:#?}");
        assert!(stray.is_empty(), "help for nothing: {stray:#?}");
    }

    #[test]
    fn the_language_is_read_before_parsing() {
        let args = |a: &[&str]| {
            a.iter()
                .map(Into::into)
                .collect::<Vec<std::ffi::OsString>>()
        };
        assert_eq!(
            early(&args(&[
                "yizhan",
                "--home",
                "/h",
                "visit",
                "--lang=zh",
                "list"
            ])),
            (Some(crate::i18n::Lang::Zh), Some("/h".into()))
        );
        assert_eq!(
            early(&args(&["yizhan", "visit", "add", "--", "--lang", "zh"])),
            (None, None)
        );
    }
}

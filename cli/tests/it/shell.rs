//! Shell integration generated from the clap definitions: completion scripts for each shell
//! and the man page name every command, and need no home.

use crate::util::*;

/// The subcommands `yizhan --help` lists (clap's own `help` left out).
fn subcommands(home: &Home) -> Vec<String> {
    let help = home.text(&["--help"]);
    let section = help
        .split("Commands:")
        .nth(1)
        .and_then(|s| s.split("Options:").next())
        .expect("a Commands section in --help");
    let names: Vec<String> = section
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    for expected in [
        "visit",
        "ticket",
        "sync",
        "conflicts",
        "resolve",
        "completions",
        "man",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
    names
}

#[test]
fn bash_completion_names_every_subcommand() {
    let home = Home::empty();
    let names = subcommands(&home);
    let script = home.text(&["completions", "bash"]);
    assert!(
        script.contains("complete -F"),
        "not a bash completion script"
    );
    for n in &names {
        assert!(script.contains(n.as_str()), "bash completion lacks {n}");
    }
    // Nested commands and value choices are completed too.
    for word in [
        "add",
        "show",
        "update",
        "comment",
        "powershell",
        "visits",
        "csv",
    ] {
        assert!(script.contains(word), "bash completion lacks {word}");
    }
    // No home is needed, and none is made.
    assert!(!home.store().exists(), "completions created a store");
}

#[test]
fn every_shell_gets_a_script_and_an_unknown_shell_is_a_usage_error() {
    let home = Home::empty();
    let names = subcommands(&home);
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script = home.text(&["completions", shell]);
        assert!(script.contains("yizhan"), "{shell}: {script}");
        assert!(script.contains("conflicts"), "{shell} lacks conflicts");
        assert!(
            script.contains(names[0].as_str()),
            "{shell} lacks {}",
            names[0]
        );
    }
    home.usage_error(&["completions", "tcsh"]);
    home.usage_error(&["completions"]);
}

#[test]
fn man_page_has_name_synopsis_and_every_subcommand() {
    let home = Home::empty();
    let names = subcommands(&home);
    let page = home.text(&["man"]);
    assert!(
        page.starts_with(".ie") || page.starts_with(".TH"),
        "not roff: {}",
        &page[..80]
    );
    assert!(page.contains(".TH yizhan 1"), "no title line");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH OPTIONS"] {
        assert!(page.contains(section), "no {section}");
    }
    for n in &names {
        assert!(
            page.contains(&format!(".SS \"yizhan {n}\"")),
            "the man page has no section for {n}"
        );
    }
    for nested in [
        "yizhan visit add",
        "yizhan ticket update",
        "yizhan quarantine accept",
    ] {
        assert!(
            page.contains(&format!(".SS \"{nested}\"")),
            "no section for {nested}"
        );
    }
    // Options of subcommands are documented in their sections.
    assert!(
        page.contains("household"),
        "visit add's --household is missing"
    );
    assert!(!home.store().exists(), "man created a store");
}

//! Shell integration, generated at run time from the clap definitions in `args.rs`, so it
//! never falls behind the commands: `yizhan completions SHELL` prints a completion script
//! (clap_complete) and `yizhan man` prints the man page (clap_mangen, roff), both on stdout.
//!
//! The man page is one page, `yizhan(1)`: the top-level name, synopsis, options and list of
//! commands, then a subsection for every subcommand (and theirs) with its synopsis,
//! description and options.
//!
//! Install, for example:
//!
//! ```text
//! yizhan completions bash > ~/.local/share/bash-completion/completions/yizhan
//! yizhan completions zsh  > ~/.zfunc/_yizhan
//! yizhan completions fish > ~/.config/fish/completions/yizhan.fish
//! yizhan man > ~/.local/share/man/man1/yizhan.1
//! ```

use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;

use crate::args::Cli;

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "yizhan", &mut buf);
    write_stdout(&buf)
}

/// Prints the man page: the top-level page (name, synopsis, description, options, the list
/// of commands), then a COMMANDS section with every subcommand's synopsis, description and
/// options.
pub fn man() -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .context("cannot render the man page")?;
    let mut subs = Vec::new();
    collect(&cmd, "yizhan", &mut subs);
    writeln!(buf, ".SH \"COMMANDS IN DETAIL\"")?;
    for (path, sub) in subs {
        render_subcommand(&path, sub, &mut buf)?;
    }
    write_stdout(&buf)
}

/// Every subcommand below `cmd`, depth first, with its full path (`yizhan ticket update`).
fn collect<'a>(cmd: &'a clap::Command, path: &str, out: &mut Vec<(String, &'a clap::Command)>) {
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let sub_path = format!("{path} {}", sub.get_name());
        out.push((sub_path.clone(), sub));
        collect(sub, &sub_path, out);
    }
}

/// One subcommand as a subsection: its synopsis, description and options, with the
/// section headings clap_mangen gives them turned into paragraphs.
fn render_subcommand(path: &str, sub: &clap::Command, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    let man = clap_mangen::Man::new(sub.clone().bin_name(path));
    let mut part = Vec::new();
    man.render_synopsis_section(&mut part)?;
    man.render_description_section(&mut part)?;
    man.render_options_section(&mut part)?;
    writeln!(buf, ".SS \"{path}\"")?;
    for line in String::from_utf8_lossy(&part).lines() {
        match line {
            ".SH SYNOPSIS" => {}
            ".SH DESCRIPTION" => writeln!(buf, ".PP")?,
            l if l.starts_with(".SH ") => writeln!(buf, ".PP\n{}:", title_case(&l[4..]))?,
            l => writeln!(buf, "{l}")?,
        }
    }
    Ok(())
}

/// `OPTIONS` → `Options`, `"ARGUMENTS"` → `Arguments`.
fn title_case(heading: &str) -> String {
    let h = heading.trim_matches('"').to_lowercase();
    let mut chars = h.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => h,
    }
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()?;
    Ok(())
}

//! `yizhan`: the command-line face of a yizhan node.
//!
//! The outside of this binary is fixed by `shared/contract/cli.md`. `main` parses the
//! command line (usage errors exit 2), runs the command in [`try_main`], and turns any
//! error into one line on stderr and exit code 1.
//!
//! - `args`: the clap definitions (the only place that knows clap).
//! - `commands`: one function per command, calling `yizhan_node::Node`.
//! - `output`: JSON and human output (tables that line up Chinese text).

mod args;
mod commands;
mod config;
mod conflicts;
mod daemon;
mod errors;
mod help;
mod history;
mod i18n;
mod ledger;
mod notice;
mod office;
mod output;
mod print;
mod progress;
mod report;
mod shell;
mod station;

use std::process::ExitCode;

use clap::FromArgMatches;

fn main() -> ExitCode {
    reset_sigpipe();
    // The language first: `--help` and usage errors follow it too.
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let (lang, home) = help::early(&raw);
    let home = home
        .or_else(|| std::env::var_os("YIZHAN_HOME").map(Into::into))
        .or_else(commands::default_home);
    i18n::init(lang, home.as_deref());
    let matches = help::command()
        .try_get_matches_from(raw)
        .unwrap_or_else(|e| help::exit(e));
    let cli = args::Cli::from_arg_matches(&matches).unwrap_or_else(|e| help::exit(e));
    init_logging();
    match try_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // Ctrl-C stopped the command: the shell's code for SIGINT, and not a word.
        Err(e) if e.is::<daemon::Interrupted>() => ExitCode::from(130),
        Err(e) => {
            eprintln!("{}", tr!("error-line", reason = one_line(&e)));
            ExitCode::from(1)
        }
    }
}

/// Output piped into a program that stops reading (`yizhan visit list | head`) ends the
/// process quietly, as it does any Unix tool, rather than in a panic of `println!` (Rust
/// ignores SIGPIPE by default).
#[allow(unsafe_code)]
fn reset_sigpipe() {
    #[cfg(unix)]
    // SAFETY: first thing in `main`, before any other thread exists; `SIG_DFL` is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The error line for people ([`errors::one_line`]), on one line and [`output::clean`]ed:
/// errors quote what peers sent (a refusal's reason, a record's text).
fn one_line(e: &anyhow::Error) -> String {
    let msg = errors::one_line(e);
    output::clean(&msg.replace(['\n', '\r'], " ")).into_owned()
}

fn try_main(cli: args::Cli) -> anyhow::Result<()> {
    commands::run(cli)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("YIZHAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

//! `yizhan-bench`: the scale benchmarks, run against the real `yizhan` binary.
//!
//! ```sh
//! cargo run --release -p yizhan-bench -- all                 # N = 10,000 and 100,000
//! cargo run --release -p yizhan-bench -- all --sizes 10000,100000,1000000
//! cargo run --release -p yizhan-bench -- quiet | small-diff | evening | growth
//! cargo run --release -p yizhan-bench -- encryption      # plain against encrypted home
//! cargo run --release -p yizhan-bench -- queries         # daily queries at N = 1,000,000
//! ```
//!
//! It builds `yizhan` in release mode (`cargo build --release -p yizhan-cli`; skip with
//! `--no-build`), generates each size's stores once with the node library (cached under
//! `target/bench-data/<N>/`, copied before every run), starts the station as a real
//! `yizhan serve --listen 127.0.0.1:0` process and runs the laptops as `yizhan --json sync`
//! processes over QUIC on loopback, with the stores as durable as in production.
//!
//! For each target it prints the measured figure, the baseline run in this same process
//! (Automerge's per-document sync protocol for targets 1 and 2, the verify-decode-apply-
//! insert floor for target 3) and their ratio, with PASS or FAIL against the target. It
//! exits with status 1 if any target fails. `encryption` (also part of `all`) measures what
//! encryption at rest costs, a plain home against an encrypted one, and gates nothing.
//! `queries` times the queries a station head runs every day against the same questions on
//! plain SQLite tables.
//! See `docs/performance.md`.

mod baseline;
mod data;
mod encryption;
mod procs;
mod queries;
mod report;
mod scenario;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

use crate::scenario::Phases;

/// The scale benchmarks of yizhan.
#[derive(Debug, Parser)]
#[command(name = "yizhan-bench")]
struct Cli {
    /// Station sizes (documents) to run, comma-separated [default: 10000,100000; for
    /// `queries`, 1000000].
    #[arg(long, global = true, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// Where generated stores are cached (default: target/bench-data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// The `yizhan` binary (default: target/release/yizhan).
    #[arg(long, global = true)]
    yizhan: Option<PathBuf>,
    /// Do not run `cargo build --release -p yizhan-cli` first.
    #[arg(long, global = true)]
    no_build: bool,
    #[command(subcommand)]
    command: Which,
}

#[derive(Clone, Copy, Debug, Subcommand)]
enum Which {
    /// Every target (1–5), and what encryption costs.
    All,
    /// Target 1: quiet reconnect.
    Quiet,
    /// Target 2: small difference (after the quiet reconnect).
    SmallDiff,
    /// Target 3: evening merge.
    Evening,
    /// Target 5: targets 1–3 at every size, and how they grow.
    Growth,
    /// What encryption at rest costs: a plain home against an encrypted one (no target).
    Encryption,
    /// The daily queries of a station head, against plain SQLite tables.
    Queries,
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("yizhan-bench: some targets FAIL");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("yizhan-bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool> {
    let cli = Cli::parse();
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ is inside the workspace")
        .to_path_buf();
    let data_dir = cli
        .data_dir
        .clone()
        .unwrap_or_else(|| workspace.join("target").join("bench-data"));
    let yz = procs::Yizhan::prepare(&workspace, cli.yizhan.clone(), !cli.no_build)?;
    if matches!(cli.command, Which::Encryption) {
        let enc = encryption::run(&yz, &data_dir)?;
        report::machine();
        report::encryption(&enc);
        return Ok(true);
    }
    let default_sizes = match cli.command {
        Which::Queries => vec![1_000_000],
        _ => vec![10_000, 100_000],
    };
    let mut sizes = cli.sizes.clone().unwrap_or(default_sizes);
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.is_empty() {
        bail!("no sizes given");
    }
    if matches!(cli.command, Which::Queries) {
        let results = sizes
            .iter()
            .map(|&n| queries::run(&yz, &data_dir, n))
            .collect::<Result<Vec<_>>>()?;
        report::machine();
        return Ok(report::queries(&results));
    }
    let all = Phases {
        quiet: true,
        small_diff: true,
        evening: true,
    };
    let phases = match cli.command {
        Which::All | Which::Growth => all,
        Which::Quiet => Phases {
            quiet: true,
            ..Phases::default()
        },
        Which::SmallDiff => Phases {
            quiet: true,
            small_diff: true,
            ..Phases::default()
        },
        Which::Evening => Phases {
            evening: true,
            ..Phases::default()
        },
        Which::Encryption | Which::Queries => unreachable!("handled above"),
    };
    let mut results = Vec::new();
    for &n in &sizes {
        results.push(scenario::run(&yz, &data_dir, n, phases)?);
    }
    let enc = match cli.command {
        Which::All => Some(encryption::run(&yz, &data_dir)?),
        _ => None,
    };
    report::machine();
    let growth = matches!(cli.command, Which::All | Which::Growth);
    let passed = report::print(&results, growth);
    if let Some(enc) = &enc {
        report::encryption(enc);
    }
    Ok(passed)
}

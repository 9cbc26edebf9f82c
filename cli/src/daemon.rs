//! `serve` and `sync`: the commands that talk to other nodes.

use std::io::Write;

use anyhow::Context;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use yizhan_node::Node;
use yizhan_node::daemon::{self, ServeEvent};
use yizhan_node::link;

use crate::args::{ServeArgs, SyncArgs};
use crate::output::Out;
use crate::progress::Progress;
use crate::tr;
use yizhan_node::sync::{SyncConfig, SyncProgress, SyncStats};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context(tr!("serve-runtime"))
}

/// `sync` was stopped by Ctrl-C (SIGINT) before it ended: `main` exits 130, the shell's
/// code for a command ended by SIGINT, and says nothing (the person pressed it).
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

pub fn sync_once(node: Node, out: &Out, args: SyncArgs) -> anyhow::Result<()> {
    let addr = match &args.peer {
        Some(a) => crate::config::parse_addr(a)?,
        None => crate::config::station_for_sync(&node)?,
    };
    let spinner = Progress::spinner(out, &tr!("sync-spinner", addr = addr));
    let config = SyncConfig {
        progress: spinner.handle().map(|bar| {
            SyncProgress(std::sync::Arc::new(move |s: &SyncStats| {
                bar.set_message(tr!(
                    "sync-progress",
                    addr = addr,
                    sent = s.sent,
                    received = s.received
                ));
            }))
        }),
        ..SyncConfig::default()
    };
    let rt = runtime()?;
    // Ctrl-C drops the sync where it waits (between two store writes, never inside one:
    // each of the node's transactions runs whole within one step of the sync), so the
    // store holds what the completed steps wrote, as after a lost connection.
    let report = rt.block_on(async {
        // Listening for SIGINT before the first packet leaves.
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context(tr!("serve-runtime"))?;
        anyhow::Ok(tokio::select! {
            report = link::sync_once(node, addr, config) => Some(report),
            _ = interrupt.recv() => None,
        })
    })?;
    spinner.finish();
    // The sync's tasks end with the runtime, before the process does.
    drop(rt);
    let Some(report) = report else {
        return Err(Interrupted.into());
    };
    let report = report?;
    let s = &report.stats;
    out.emit(
        &json!({
            "peer": report.peer.to_string(),
            "sent": s.sent,
            "received": s.received,
            "rejected": s.rejected,
            "bytes_sent": s.bytes_sent,
            "bytes_received": s.bytes_received,
            "round_trips": s.round_trips,
        }),
        || {
            println!(
                "{}",
                tr!(
                    "sync-done",
                    addr = addr,
                    sent = s.sent,
                    received = s.received,
                    rejected = s.rejected,
                    bytes_out = s.bytes_sent,
                    bytes_in = s.bytes_received,
                    trips = s.round_trips
                )
            )
        },
    )
}

pub fn serve(node: Node, out: &Out, args: ServeArgs) -> anyhow::Result<()> {
    let home = node.home_handle();
    let config = crate::config::for_node(home.dir(), &node, &args)?.serve_config()?;
    // Peers by name in the lines for people (the roster as it is when serving starts; a
    // member enrolled later shows by its short id).
    let names = crate::output::Names::of(&node)?;
    drop(node);
    let json = out.json;
    let rt = runtime()?;
    rt.block_on(async move {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(daemon::serve(home, config, events_tx, stop_rx));
        let signals = tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            let _ = stop_tx.send(true);
        });
        while let Some(event) = events.recv().await {
            print_event(json, &names, &event);
        }
        signals.abort();
        server.await.context(tr!("serve-stopped"))??;
        Ok(())
    })
}

fn print_event(json: bool, names: &crate::output::Names, event: &ServeEvent) {
    let mut stdout = std::io::stdout().lock();
    let line = match (json, event) {
        (true, ServeEvent::Listening(addr)) => {
            json!({"event": "listening", "addr": addr.to_string()}).to_string()
        }
        (false, ServeEvent::Listening(addr)) => tr!("serve-listening", addr = *addr),
        (true, ServeEvent::Synced { peer, stats }) => json!({
            "event": "synced",
            "peer": peer.to_string(),
            "sent": stats.sent,
            "received": stats.received,
            "rejected": stats.rejected,
        })
        .to_string(),
        (false, ServeEvent::Synced { peer, stats }) => tr!(
            "serve-synced",
            peer = names.name(&peer.to_string()),
            sent = stats.sent,
            received = stats.received,
            rejected = stats.rejected
        ),
        (true, ServeEvent::Discovered { peer, addrs }) => json!({
            "event": "discovered",
            "peer": peer.to_string(),
            "addrs": addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        })
        .to_string(),
        (false, ServeEvent::Discovered { peer, addrs }) => tr!(
            "serve-found",
            peer = names.name(&peer.to_string()),
            addrs = addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (true, ServeEvent::Ignored { device, reason }) => json!({
            "event": "ignored",
            "device": device,
            "reason": reason,
        })
        .to_string(),
        (false, ServeEvent::Ignored { device, reason }) => tr!(
            "serve-ignored",
            who = device
                .as_deref()
                .map_or_else(|| tr!("serve-a-node"), |d| names.name(d)),
            reason = reason.as_str()
        ),
        (true, ServeEvent::Failed { peer, error }) => json!({
            "event": "failed",
            "peer": peer.map(|p| p.to_string()),
            "error": error,
        })
        .to_string(),
        (false, ServeEvent::Failed { peer, error }) => {
            // A peer's refusal reason is its own text.
            let error = crate::output::clean(error);
            eprintln!(
                "{}",
                match peer {
                    Some(p) => tr!(
                        "serve-failed-with",
                        peer = names.name(&p.to_string()),
                        error = error
                    ),
                    None => tr!("serve-failed", error = error),
                }
            );
            return;
        }
    };
    // Human lines quote peers' words (a reason for ignoring one); JSON lines are JSON.
    let line = if json {
        line
    } else {
        crate::output::clean(&line).into_owned()
    };
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

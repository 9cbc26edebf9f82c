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
use yizhan_node::sync::{SyncConfig, SyncProgress, SyncStats};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn sync_once(node: Node, out: &Out, args: SyncArgs) -> anyhow::Result<()> {
    let addr = match &args.peer {
        Some(a) => crate::config::parse_addr(a)?,
        None => crate::config::station_for_sync(&node)?,
    };
    let spinner = Progress::spinner(out, &format!("syncing with {addr}"));
    let config = SyncConfig {
        progress: spinner.handle().map(|bar| {
            SyncProgress(std::sync::Arc::new(move |s: &SyncStats| {
                bar.set_message(format!(
                    "syncing with {addr}: sent {} changes, received {}",
                    s.sent, s.received
                ));
            }))
        }),
        ..SyncConfig::default()
    };
    let report = runtime()?.block_on(link::sync_once(node, addr, config));
    spinner.finish();
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
                "Synced with {addr}: sent {} changes, received {}, rejected {} ({} bytes out, {} in, {} round trips).",
                s.sent, s.received, s.rejected, s.bytes_sent, s.bytes_received, s.round_trips
            )
        },
    )
}

pub fn serve(node: Node, out: &Out, args: ServeArgs) -> anyhow::Result<()> {
    let home = node.home_handle();
    let config = crate::config::for_node(home.dir(), &node, &args)?.serve_config()?;
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
            print_event(json, &event);
        }
        signals.abort();
        server.await.context("the daemon stopped unexpectedly")??;
        Ok(())
    })
}

fn print_event(json: bool, event: &ServeEvent) {
    let mut stdout = std::io::stdout().lock();
    let line = match (json, event) {
        (true, ServeEvent::Listening(addr)) => {
            json!({"event": "listening", "addr": addr.to_string()}).to_string()
        }
        (false, ServeEvent::Listening(addr)) => format!("listening on {addr}"),
        (true, ServeEvent::Synced { peer, stats }) => json!({
            "event": "synced",
            "peer": peer.to_string(),
            "sent": stats.sent,
            "received": stats.received,
            "rejected": stats.rejected,
        })
        .to_string(),
        (false, ServeEvent::Synced { peer, stats }) => format!(
            "synced with {}: sent {}, received {}, rejected {}",
            &peer.to_string()[..12],
            stats.sent,
            stats.received,
            stats.rejected
        ),
        (true, ServeEvent::Discovered { peer, addrs }) => json!({
            "event": "discovered",
            "peer": peer.to_string(),
            "addrs": addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        })
        .to_string(),
        (false, ServeEvent::Discovered { peer, addrs }) => format!(
            "found {} nearby at {}",
            &peer.to_string()[..12],
            addrs
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
        (false, ServeEvent::Ignored { device, reason }) => format!(
            "ignored {} nearby: {reason}",
            device
                .as_deref()
                .map_or_else(|| "a node".to_string(), |d| d.chars().take(12).collect())
        ),
        (true, ServeEvent::Failed { peer, error }) => json!({
            "event": "failed",
            "peer": peer.map(|p| p.to_string()),
            "error": error,
        })
        .to_string(),
        (false, ServeEvent::Failed { peer, error }) => {
            eprintln!(
                "sync failed{}: {}",
                peer.map(|p| format!(" with {}", &p.to_string()[..12]))
                    .unwrap_or_default(),
                // A peer's refusal reason is its own text.
                crate::output::clean(error)
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

//! The daemon's dial loops: keeping a connection to the station, syncing with the peers
//! met before, and with the nodes of this site found on the network. Every loop backs off
//! from what it cannot reach with the same [`Backoff`](super::backoff).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use yizhan_protocol::DeviceId;

use super::backoff::{Backoff, Backoffs};
use super::{ServeConfig, ServeEvent};
use crate::discovery::{
    Discovery, Ignored, Neighbours, SERVICE_TYPE, Sighting, instance_name, wait_for_news,
};
use crate::home::Home;
use crate::identity::Role;
use crate::link::{DaemonError, blocking, resolve, station_addr, sync_on};
use crate::net::{Endpoint, PeerConnection};
use crate::sync::SyncConfig;

/// The longest a peer that cannot be reached waits between tries.
const PEER_RETRY_MAX: Duration = Duration::from_secs(3600);

/// Every `resync`, syncs with each other peer this node knows an address for (members
/// met before), backing off from those that cannot be reached.
pub(super) async fn keep_syncing_with_peers(
    home: &Home,
    endpoint: &Endpoint,
    config: &ServeConfig,
    neighbours: Option<Arc<Neighbours>>,
    events: &mpsc::UnboundedSender<ServeEvent>,
) {
    let sync_config = SyncConfig::default();
    let mut backoffs = Backoffs::new(config.resync, PEER_RETRY_MAX);
    loop {
        tokio::time::sleep(config.resync).await;
        let known = blocking(
            || -> Option<(Vec<crate::status::PeerInfo>, Option<String>, Option<DeviceId>)> {
                let node = home.checkout().ok()?;
                let ident = node.identity().clone();
                let peers = node.peers();
                home.give_back(node);
                Some((peers.ok()?, ident.station_addr, ident.root))
            },
        );
        let Some((peers, station_addr, root)) = known else {
            continue;
        };
        for p in peers {
            let Some(addr) = p.addr.as_deref() else {
                continue;
            };
            if Some(p.device) == root || station_addr.as_deref() == Some(addr) {
                continue; // the station has its own loop
            }
            if neighbours
                .as_ref()
                .is_some_and(|n| n.addrs_of(p.device).is_some())
            {
                continue; // found on the network: the neighbours' loop syncs with it
            }
            let now = Instant::now();
            if !backoffs.ready(&p.device, now) {
                continue;
            }
            let Ok(addr) = resolve(addr) else { continue };
            let result = async {
                let conn = endpoint.connect_to(addr, p.device).await?;
                let stats = sync_on(home, &conn, &sync_config).await;
                conn.connection.close(0u32.into(), b"done");
                stats
            }
            .await;
            match result {
                Ok(stats) => {
                    backoffs.forget(&p.device);
                    let _ = events.send(ServeEvent::Synced {
                        peer: p.device,
                        stats,
                    });
                }
                Err(e) => {
                    let _ = events.send(ServeEvent::Failed {
                        peer: Some(p.device),
                        error: format!("peer at {addr}: {e}"),
                    });
                    // Peers come and go; try again later, less often.
                    backoffs.failed(p.device, now);
                }
            }
        }
    }
}

/// Keeps a connection to the station and syncs on it: at once, whenever this node's log
/// grows (another process wrote), and every `resync`; reconnects with back-off.
pub(super) async fn keep_syncing_with_station(
    home: &Home,
    endpoint: &Endpoint,
    config: &ServeConfig,
    neighbours: Option<Arc<Neighbours>>,
    events: &mpsc::UnboundedSender<ServeEvent>,
) {
    let sync_config = SyncConfig::default();
    let mut backoff = Backoff::new(config.retry_min, config.retry_max);
    loop {
        // The configured address (flag or config file, else the one stored at join), and
        // where discovery found the root station, dialled as that device.
        let target = blocking(|| {
            home.checkout().map(|n| {
                let addr = config.station.or_else(|| station_addr(&n).ok());
                let root = n.identity().root;
                home.give_back(n);
                (addr, root)
            })
        });
        let Ok((configured, root)) = target else {
            tokio::time::sleep(config.retry_max.min(Duration::from_secs(5))).await;
            continue;
        };
        let found = root
            .zip(neighbours.as_ref())
            .and_then(|(r, n)| n.addrs_of(r).map(|a| (r, a)));
        if configured.is_none() && found.is_none() {
            // No station known yet (not joined, none found nearby): look again later.
            let wait = config.retry_max.min(Duration::from_secs(5));
            wait_for_news(neighbours.as_deref(), wait).await;
            continue;
        }
        let mut connected = Err(None);
        if let Some(addr) = configured {
            connected = endpoint
                .connect(addr)
                .await
                .map(|c| (c, addr))
                .map_err(|e| Some(format!("station at {addr}: {e}")));
        }
        if let (true, Some((root, addrs))) = (connected.is_err(), &found) {
            // Unknown or unreachable where configured: try where discovery found it. The
            // configured address's failure is reported only if that fails too (a stale
            // stored address is no news while discovery reaches the station).
            let stale = connected.err().flatten();
            connected = dial(endpoint, *root, addrs).await.map_err(|e| {
                let found_error = format!("station found at {}: {e}", addrs[0]);
                Some(match &stale {
                    Some(stale) => format!("{stale}; {found_error}"),
                    None => found_error,
                })
            });
        }
        let (conn, addr) = match connected {
            Ok(c) => c,
            Err(error) => {
                let _ = events.send(ServeEvent::Failed {
                    peer: None,
                    error: error.unwrap_or_default(),
                });
                tokio::time::sleep(backoff.failed()).await;
                continue;
            }
        };
        let peer = conn.peer;
        // One handle on the store watches the log for this connection's lifetime:
        // opening the store every poll would cost an encrypted home a key derivation
        // twice a second.
        let Ok(mut watcher) = blocking(|| home.open()) else {
            tokio::time::sleep(backoff.failed()).await;
            continue;
        };
        let _ = blocking(|| watcher.note_peer_addr(peer, &addr.to_string()));
        let mut last_end = None;
        let mut last_sync = Instant::now() - config.resync;
        loop {
            let end = blocking(|| watcher.log_end().ok());
            if end != last_end || last_sync.elapsed() >= config.resync {
                match sync_on(home, &conn, &sync_config).await {
                    Ok(stats) => {
                        backoff.succeeded();
                        last_sync = Instant::now();
                        // The sync sent what the log held when it read it, so count from
                        // the end seen before it: a record written while it ran (after its
                        // page was read) is sent by the next round, not when the periodic
                        // resync comes. What the sync itself received grows the log too,
                        // which costs one quiet round.
                        last_end = end;
                        let _ = events.send(ServeEvent::Synced { peer, stats });
                    }
                    Err(e) => {
                        let _ = events.send(ServeEvent::Failed {
                            peer: Some(peer),
                            error: e.to_string(),
                        });
                        conn.connection.close(1u32.into(), b"sync failed");
                        break;
                    }
                }
            }
            tokio::time::sleep(config.poll).await;
        }
        tokio::time::sleep(backoff.failed()).await;
    }
}

/// Keeps syncing with the nodes of this site found on the network (each dialled as the
/// device it advertised) and with the configured peer addresses: as soon as one is found,
/// whenever this node's log grows, and every `resync`; backs off from those that fail.
/// The station is left to its own loop on a volunteer.
pub(super) async fn keep_syncing_with_neighbours(
    home: &Home,
    endpoint: &Endpoint,
    neighbours: Option<Arc<Neighbours>>,
    config: &ServeConfig,
    events: &mpsc::UnboundedSender<ServeEvent>,
) {
    let sync_config = SyncConfig::default();
    let mut backoffs = Backoffs::new(config.resync, PEER_RETRY_MAX);
    let mut known: HashMap<DeviceId, Vec<SocketAddr>> = HashMap::new();
    let mut last_end = None;
    let mut last_round = Instant::now() - config.resync;
    let Ok(mut watcher) = blocking(|| home.open()) else {
        return;
    };
    loop {
        let (root, skip_root) = {
            let ident = watcher.identity();
            (ident.root, ident.role != Role::Station)
        };
        let end = blocking(|| watcher.log_end().ok());
        let found = neighbours.as_ref().map(|n| n.all()).unwrap_or_default();
        let news = found.iter().any(|c| known.get(&c.device) != Some(&c.addrs));
        if news || end != last_end || last_round.elapsed() >= config.resync {
            let mut targets: Vec<(String, Option<DeviceId>, Vec<SocketAddr>)> = found
                .iter()
                .filter(|c| !(skip_root && Some(c.device) == root))
                .map(|c| (c.device.to_string(), Some(c.device), c.addrs.clone()))
                .collect();
            targets.extend(config.peers.iter().map(|a| (a.to_string(), None, vec![*a])));
            for c in &found {
                if known.get(&c.device) != Some(&c.addrs) {
                    // Found anew or moved: try it now, whatever its back-off.
                    backoffs.forget(&c.device.to_string());
                }
            }
            known = found.into_iter().map(|c| (c.device, c.addrs)).collect();
            for (key, device, addrs) in targets {
                let now = Instant::now();
                if !backoffs.ready(&key, now) {
                    continue;
                }
                let result = async {
                    let (conn, addr) = match device {
                        Some(d) => dial(endpoint, d, &addrs).await?,
                        None => (endpoint.connect(addrs[0]).await?, addrs[0]),
                    };
                    let stats = sync_on(home, &conn, &sync_config).await;
                    conn.connection.close(0u32.into(), b"done");
                    Ok::<_, DaemonError>((conn.peer, addr, stats?))
                }
                .await;
                match result {
                    Ok((peer, addr, stats)) => {
                        backoffs.forget(&key);
                        let _ = blocking(|| watcher.note_peer_addr(peer, &addr.to_string()));
                        let _ = events.send(ServeEvent::Synced { peer, stats });
                    }
                    Err(e) => {
                        let _ = events.send(ServeEvent::Failed {
                            peer: device,
                            error: format!("peer at {}: {e}", addrs[0]),
                        });
                        backoffs.failed(key, now);
                    }
                }
            }
            last_round = Instant::now();
            // Our own syncs may have grown the log: count from after them.
            last_end = blocking(|| watcher.log_end().ok());
        }
        wait_for_news(neighbours.as_deref(), config.poll).await;
    }
}

/// Dials `device` at the first of `addrs` that answers; the handshake must prove `device`.
pub(super) async fn dial(
    endpoint: &Endpoint,
    device: DeviceId,
    addrs: &[SocketAddr],
) -> Result<(PeerConnection, SocketAddr), DaemonError> {
    let mut last = None;
    for &addr in addrs {
        match endpoint.connect_to(addr, device).await {
            Ok(conn) => return Ok((conn, addr)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(
        || DaemonError::Stream("no address to dial".into()),
        Into::into,
    ))
}

/// Reads sightings until the browser stops: records candidates in `neighbours` and
/// reports what was found and what was ignored (each advertisement once, until it
/// changes).
pub(super) async fn watch_network(
    discovery: Arc<Discovery>,
    neighbours: Arc<Neighbours>,
    events: mpsc::UnboundedSender<ServeEvent>,
) {
    let mut ignored: HashMap<String, Ignored> = HashMap::new();
    while let Some(sighting) = discovery.next().await {
        match sighting {
            Sighting::Found(c) => {
                // The instance name is derived from the device id.
                let instance = format!("{}.{SERVICE_TYPE}", instance_name(c.device));
                ignored.remove(&instance);
                if neighbours.insert(&instance, c.clone()) {
                    let _ = events.send(ServeEvent::Discovered {
                        peer: c.device,
                        addrs: c.addrs,
                    });
                }
            }
            Sighting::Ignored {
                instance,
                device,
                reason,
            } => {
                if ignored.get(&instance) != Some(&reason) {
                    let _ = events.send(ServeEvent::Ignored {
                        device,
                        reason: reason.to_string(),
                    });
                    ignored.insert(instance, reason);
                }
            }
            Sighting::Gone { instance } => {
                neighbours.remove_instance(&instance);
                ignored.remove(&instance);
            }
        }
    }
}

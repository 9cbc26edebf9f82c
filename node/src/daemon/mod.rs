//! The node daemon (`serve`): listens for members, keeps syncing with the station and the
//! peers it knows or finds on the network, and stops cleanly when asked.
//!
//! - [`serve`] accepts a bounded number of connections, each of which may run many syncs,
//!   one per stream ([`crate::link::sync_stream`]), with a node of the home's pool;
//! - the dial loops (`dial`) keep a connection to the station while it is reachable, sync
//!   within about a second of a change written by another process (the CLI), and back off
//!   from what they cannot reach (`backoff`);
//! - discovery ([`crate::discovery`]) finds the site's nodes on the local network.

mod backoff;
mod dial;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use yizhan_protocol::DeviceId;

use crate::discovery::{Discovery, Neighbours};
use crate::home::{Home, Node};
use crate::identity::Role;
use crate::link::{DaemonError, blocking, sync_stream};
use crate::net::{Endpoint, NetConfig, PeerConnection};
use crate::sync::{SyncConfig, SyncStats};

/// How `serve` runs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Most peers connected at once; more are turned away.
    pub max_peers: usize,
    /// First wait after a failed sync with the station; doubles up to `retry_max`.
    pub retry_min: Duration,
    /// Longest wait between attempts to reach the station.
    pub retry_max: Duration,
    /// Sync with the station at least this often while it is reachable.
    pub resync: Duration,
    /// How often to look for changes written by other processes.
    pub poll: Duration,
    /// Find the nodes of this site on the local network (mDNS) and sync with them.
    pub discovery: bool,
    /// The station's address, over the one stored at join (a flag or the config file).
    pub station: Option<SocketAddr>,
    /// More peer addresses to keep syncing with (whichever member answers).
    pub peers: Vec<SocketAddr>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "0.0.0.0:7365".parse().expect("literal"),
            max_peers: 64,
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            resync: Duration::from_secs(30),
            poll: Duration::from_millis(500),
            discovery: false,
            station: None,
            peers: Vec::new(),
        }
    }
}

/// What `serve` reports as it runs.
#[derive(Clone, Debug)]
pub enum ServeEvent {
    /// It accepts connections at this address.
    Listening(SocketAddr),
    /// A sync completed.
    Synced {
        /// The peer.
        peer: DeviceId,
        /// What moved.
        stats: SyncStats,
    },
    /// Discovery found a node of this site on the local network (not yet verified: the
    /// handshake will prove the device or fail).
    Discovered {
        /// The device it advertised.
        peer: DeviceId,
        /// Where.
        addrs: Vec<SocketAddr>,
    },
    /// Discovery saw a node it will not dial (another site, a malformed advertisement).
    Ignored {
        /// The device it advertised, as it advertised it, if at all.
        device: Option<String>,
        /// Why it is ignored.
        reason: String,
    },
    /// A sync or connection failed.
    Failed {
        /// The peer, if known.
        peer: Option<DeviceId>,
        /// Why.
        error: String,
    },
}

/// Runs the node until `shutdown` turns true. Reports through `events`.
pub async fn serve(
    home: Home,
    config: ServeConfig,
    events: mpsc::UnboundedSender<ServeEvent>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    // One connection for start-up, kept in the pool for the first sync.
    let mut node = blocking(|| home.checkout())?;
    let key = node.device_key();
    let is_station = node.identity().role == Role::Station;
    let site = node.identity().site_id;
    // Its connections come from the socket it listens on: peers may dial that back.
    let net = NetConfig {
        listening: true,
        ..NetConfig::default()
    };
    let endpoint = Arc::new(Endpoint::bind(config.listen, &key, &net)?);
    let local = endpoint.local_addr()?;
    blocking(|| node.set_listen_addr(&local.to_string()))?;
    home.give_back(node);
    let _ = events.send(ServeEvent::Listening(local));

    // Discovery (a node of no site has nothing to advertise): it only proposes addresses.
    let mut discovery = None;
    if let (true, Some(site)) = (config.discovery, site) {
        match Discovery::start(local, site, key.device_id()) {
            Ok(d) => discovery = Some(Arc::new(d)),
            Err(e) => {
                let _ = events.send(ServeEvent::Failed {
                    peer: None,
                    error: e.to_string(),
                });
            }
        }
    }
    let neighbours = discovery.as_ref().map(|_| Arc::new(Neighbours::default()));
    let watcher = discovery
        .clone()
        .zip(neighbours.clone())
        .map(|(d, n)| tokio::spawn(dial::watch_network(d, n, events.clone())));
    let nearby = (neighbours.is_some() || !config.peers.is_empty()).then(|| {
        let (endpoint, home, events) = (endpoint.clone(), home.clone(), events.clone());
        let (config, neighbours) = (config.clone(), neighbours.clone());
        tokio::spawn(async move {
            dial::keep_syncing_with_neighbours(&home, &endpoint, neighbours, &config, &events).await
        })
    });

    let slots = Arc::new(Semaphore::new(config.max_peers));
    let accept = {
        let endpoint = endpoint.clone();
        let home = home.clone();
        let events = events.clone();
        let slots = slots.clone();
        tokio::spawn(async move {
            // Handshakes run side by side, so that a peer that stalls or dies in the middle
            // of one holds up no one else; as many at once as there may be peers (a whole
            // site's laptops arriving together are all let in), and more are refused.
            let handshakes = Arc::new(Semaphore::new(config.max_peers));
            while let Some(accepting) = endpoint.accept_incoming().await {
                let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
                    accepting.refuse();
                    continue;
                };
                let home = home.clone();
                let events = events.clone();
                let slots = slots.clone();
                tokio::spawn(async move {
                    let finished = accepting.finish().await;
                    drop(handshake);
                    let conn = match finished {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = events.send(ServeEvent::Failed {
                                peer: None,
                                error: e.to_string(),
                            });
                            return;
                        }
                    };
                    let Ok(permit) = slots.try_acquire_owned() else {
                        conn.connection.close(2u32.into(), b"busy: too many peers");
                        return;
                    };
                    serve_connection(&home, conn, &events).await;
                    drop(permit);
                });
            }
        })
    };

    let outbound = (!is_station).then(|| {
        let endpoint = endpoint.clone();
        let home = home.clone();
        let events = events.clone();
        let config = config.clone();
        let neighbours = neighbours.clone();
        tokio::spawn(async move {
            dial::keep_syncing_with_station(&home, &endpoint, &config, neighbours, &events).await
        })
    });

    let checkpoints = tokio::spawn(keep_checkpointing(home.clone()));

    let peers = {
        let endpoint = endpoint.clone();
        let home = home.clone();
        let events = events.clone();
        let config = config.clone();
        let neighbours = neighbours.clone();
        tokio::spawn(async move {
            dial::keep_syncing_with_peers(&home, &endpoint, &config, neighbours, &events).await
        })
    };

    let _ = shutdown.wait_for(|stop| *stop).await;
    if let Some(task) = outbound {
        task.abort();
    }
    peers.abort();
    checkpoints.abort();
    for task in [watcher, nearby].into_iter().flatten() {
        task.abort();
        let _ = task.await; // the watcher's handle on the discovery is dropped with it
    }
    if let Some(d) = discovery.and_then(Arc::into_inner) {
        // Withdraw the advertisement so peers forget this node at once.
        let _ = tokio::task::spawn_blocking(move || d.shutdown()).await;
    }
    endpoint.close().await;
    accept.abort();
    Ok(())
}

/// How often `serve` checkpoints the WAL in the background.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Copies the WAL back into the database every [`CHECKPOINT_EVERY`], on a connection of
/// its own and a thread of its own, so that the syncs' commits do not (their connections
/// checkpoint only as a safety net: `Store::tune_for_daemon`).
async fn keep_checkpointing(home: Home) {
    let mut slot: Option<Node> = None;
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        let home = home.clone();
        let done = tokio::task::spawn_blocking(move || {
            let result = home.checkpoint(&mut slot);
            (slot, result)
        })
        .await;
        match done {
            Ok((kept, result)) => {
                slot = kept;
                if let Err(e) = result {
                    tracing::debug!("background checkpoint failed: {e}");
                    slot = None;
                }
            }
            Err(_) => slot = None,
        }
    }
}

/// How long an accepted connection may stay open without starting a sync.
const IDLE_CONNECTION: Duration = Duration::from_secs(120);

/// Answers syncs on one accepted connection, one per stream, until it closes.
async fn serve_connection(
    home: &Home,
    conn: PeerConnection,
    events: &mpsc::UnboundedSender<ServeEvent>,
) {
    // Only a member that completed a sync is remembered as a peer, with where it was
    // reached: noted with the time of the sync, in its transaction. Where it was reached
    // is worth dialing back only if it listens there (`serve`); a one-shot `sync` comes
    // from a port that is gone once it exits.
    let config = SyncConfig {
        peer_addr: conn
            .peer_listens
            .then(|| conn.connection.remote_address().to_string()),
        ..SyncConfig::default()
    };
    let peer = conn.peer;
    // A peer that holds a connection without syncing gives its slot back.
    while let Ok(Ok((send, recv))) =
        tokio::time::timeout(IDLE_CONNECTION, conn.connection.accept_bi()).await
    {
        let event = match sync_stream(home, conn.peer, send, recv, &config).await {
            Ok(stats) => ServeEvent::Synced { peer, stats },
            Err(e) => ServeEvent::Failed {
                peer: Some(conn.peer),
                error: e.to_string(),
            },
        };
        let failed = matches!(event, ServeEvent::Failed { .. });
        let _ = events.send(event);
        if failed {
            // Let the peer read why (a refusal) and hang up first; then close.
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.connection.closed()).await;
            conn.connection.close(1u32.into(), b"sync failed");
            return;
        }
    }
}

//! The node daemon and one-shot syncs over QUIC.
//!
//! This module only moves frames between QUIC streams and a [`SyncEngine`]; everything the
//! frames mean is decided by the engine and the protocol session.
//!
//! - [`sync_stream`] runs one sync on one bidirectional stream.
//! - [`sync_once`] connects to a peer, syncs once, and reports what moved.
//! - [`serve`] listens for members (bounded number of connections, each may run many
//!   syncs, one per stream), keeps syncing with the station while it is reachable (with
//!   back-off while it is not), syncs within about a second of a change written by another
//!   process (the CLI), and stops cleanly when asked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, watch};
use yizhan_protocol::DeviceId;
use yizhan_protocol::wire::MAX_FRAME;

use crate::discovery::{Discovery, Neighbours};
use crate::error::{OpenError, ReadError};
use crate::home::{Home, Node};
use crate::identity::Role;
use crate::net::{Endpoint, NetConfig, NetError, PeerConnection, read_frame, write_frame};
use crate::sync::{SyncConfig, SyncEngine, SyncError, SyncStats};

/// Why a sync over QUIC failed.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The home could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The transport failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The sync itself failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// Reading node state failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Writing node state failed.
    #[error(transparent)]
    Write(#[from] crate::error::WriteError),
    /// A QUIC stream failed.
    #[error("connection lost: {0}")]
    Stream(String),
    /// The peer ended the stream before the sync was complete.
    #[error("the peer ended the sync before it was complete")]
    Incomplete,
    /// No station address is known.
    #[error("no station address is known: give HOST:PORT, or join with --station HOST:PORT")]
    NoStation,
    /// A bad address.
    #[error("'{0}' is not a HOST:PORT address")]
    BadAddress(String),
}

/// The result of a completed sync.
#[derive(Clone, Debug)]
pub struct SyncReport {
    /// The peer.
    pub peer: DeviceId,
    /// What moved (bytes are the whole connection's UDP payload for one-shot syncs).
    pub stats: SyncStats,
}

/// Resolves `HOST:PORT` (a name or an address).
pub fn resolve(addr: &str) -> Result<SocketAddr, DaemonError> {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| DaemonError::BadAddress(addr.to_string()))
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    // Store work is short and synchronous; let the runtime move other tasks meanwhile.
    tokio::task::block_in_place(f)
}

/// Frames queued between the engine and the stream tasks, each way.
const FRAME_QUEUE: usize = 4;

/// Runs one sync on one stream, this node's side, with the node at `home`.
///
/// Reading and writing run as two tasks, so that a node never stops reading while it
/// has pages to send (two nodes that both have much to send would otherwise each wait
/// for the other to read). Pages and fetch answers are made only when the writer takes
/// a frame, so what waits for a peer that does not read is bounded; past
/// `Session::wants_input`'s bound (which an honest sync never reaches) reading stops
/// too, and the transport's flow control stops the peer.
pub async fn sync_stream(
    home: &Home,
    peer: DeviceId,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    config: &SyncConfig,
) -> Result<SyncStats, DaemonError> {
    let node = blocking(|| home.checkout())?;
    let mut engine = SyncEngine::new(node, peer, config, Instant::now())?;
    let result = sync_engine_on_stream(&mut engine, send, recv).await;
    home.give_back(engine.into_node());
    result
}

async fn sync_engine_on_stream(
    engine: &mut SyncEngine,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
) -> Result<SyncStats, DaemonError> {
    let (in_tx, mut in_rx) = mpsc::channel(FRAME_QUEUE);
    let reader = tokio::spawn(read_frames(recv, in_tx));
    let (out_tx, out_rx) = mpsc::channel(FRAME_QUEUE);
    let writer = tokio::spawn(write_frames(send, out_rx));
    // A frame taken from the engine but not yet handed to the writer: on an error it is
    // still sent first, so the peer hears our Hello before our refusal.
    let mut pending: Option<Vec<u8>> = None;
    let mut result = drive(engine, &mut pending, &out_tx, &mut in_rx).await;
    if matches!(
        result,
        Err(DaemonError::Stream(_) | DaemonError::Net(_) | DaemonError::Incomplete)
    ) {
        // The stream broke: a refusal the peer sent before closing may still be waiting
        // to be read, and says more than the broken stream does.
        result = Err(last_word(engine, &mut in_rx)
            .await
            .unwrap_or_else(|| result.expect_err("matched an error")));
    }
    if result.is_err() {
        // Flush what the session still has to say (a refusal, say), for as long as the
        // peer reads: one that does not read holds nothing here for long.
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            if let Some(frame) = pending.take()
                && out_tx.send(frame).await.is_err()
            {
                return;
            }
            while let Ok(Some(frame)) = blocking(|| engine.poll_transmit()) {
                if out_tx.send(frame).await.is_err() {
                    break;
                }
            }
        })
        .await;
    }
    drop(out_tx);
    // The writer finishes the stream and waits until the peer has read our last frame (its
    // acknowledgement can take the peer's ACK delay, 25 ms). After a completed session the
    // peer's end of its own stream says as much sooner: a session ends only once it has
    // received the other side's `Done`, our last frame, and then its stream is finished.
    let mut writer = writer;
    let written = tokio::time::timeout(Duration::from_secs(5), async {
        if result.is_ok() {
            tokio::select! {
                w = &mut writer => Some(w),
                () = peer_finished(&mut in_rx) => None,
            }
        } else {
            Some((&mut writer).await)
        }
    })
    .await;
    writer.abort();
    reader.abort();
    match (result, written) {
        (Err(e), _) => Err(e),
        (Ok(()), Ok(Some(Ok(Err(e))))) => Err(e),
        (Ok(()), _) => Ok(engine.stats().clone()),
    }
}

/// Returns once the peer's stream has ended (cleanly or not); frames after the session's
/// end are not read.
async fn peer_finished(frames: &mut mpsc::Receiver<Result<Vec<u8>, DaemonError>>) {
    while let Some(Ok(_)) = frames.recv().await {}
}

/// Reads what is left of the peer's frames (for up to a second) and returns the session's
/// error if they end it (a `Refuse`, say).
async fn last_word(
    engine: &mut SyncEngine,
    frames: &mut mpsc::Receiver<Result<Vec<u8>, DaemonError>>,
) -> Option<DaemonError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, frames.recv()).await {
        if let Err(e) = blocking(|| engine.handle_frame(&frame, Instant::now())) {
            return Some(e.into());
        }
    }
    None
}

async fn read_frames(
    mut recv: quinn::RecvStream,
    frames: mpsc::Sender<Result<Vec<u8>, DaemonError>>,
) {
    loop {
        let item = match read_frame(&mut recv, MAX_FRAME).await {
            Ok(Some(frame)) => Ok(frame),
            Ok(None) => Err(DaemonError::Incomplete),
            Err(e) => Err(e.into()),
        };
        let end = item.is_err();
        if frames.send(item).await.is_err() || end {
            return;
        }
    }
}

async fn write_frames(
    mut send: quinn::SendStream,
    mut frames: mpsc::Receiver<Vec<u8>>,
) -> Result<(), DaemonError> {
    while let Some(frame) = frames.recv().await {
        write_frame(&mut send, &frame).await?;
    }
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(3), send.stopped()).await;
    Ok(())
}

async fn drive(
    engine: &mut SyncEngine,
    pending: &mut Option<Vec<u8>>,
    out: &mpsc::Sender<Vec<u8>>,
    frames: &mut mpsc::Receiver<Result<Vec<u8>, DaemonError>>,
) -> Result<(), DaemonError> {
    loop {
        if pending.is_none() {
            *pending = blocking(|| engine.poll_transmit())?;
        }
        if pending.is_none() && engine.is_finished() {
            return Ok(());
        }
        let deadline = engine
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(30));
        // Our frames go out before the peer's are taken in: a page of ours is on its way
        // while we store the peer's, instead of waiting behind that write (and its fsync).
        tokio::select! {
            biased;
            permit = out.reserve(), if pending.is_some() => {
                let permit = permit.map_err(|_| DaemonError::Stream("writer stopped".into()))?;
                permit.send(pending.take().expect("checked"));
            }
            frame = frames.recv(), if engine.wants_input() => match frame {
                Some(Ok(frame)) => blocking(|| engine.handle_frame(&frame, Instant::now()))?,
                Some(Err(e)) => return Err(e),
                None => return Err(DaemonError::Incomplete),
            },
            () = tokio::time::sleep_until(deadline.into()) => {
                blocking(|| engine.handle_timeout(Instant::now()))?;
            }
        }
    }
}

/// Opens a new stream on `conn` and syncs on it (the side that starts the sync).
pub async fn sync_on(
    home: &Home,
    conn: &PeerConnection,
    config: &SyncConfig,
) -> Result<SyncStats, DaemonError> {
    let (send, recv) = conn
        .connection
        .open_bi()
        .await
        .map_err(|e| DaemonError::Stream(e.to_string()))?;
    sync_stream(home, conn.peer, send, recv, config).await
}

/// Connects to `addr`, syncs once, closes. The byte counts are everything this node sent
/// and received on the connection (UDP payloads, handshake included).
pub async fn sync_once(home: &Home, addr: SocketAddr) -> Result<SyncReport, DaemonError> {
    sync_once_with(home, addr, &SyncConfig::default()).await
}

/// [`sync_once`] with the given options (a progress observer, say).
pub async fn sync_once_with(
    home: &Home,
    addr: SocketAddr,
    config: &SyncConfig,
) -> Result<SyncReport, DaemonError> {
    // One store connection for the whole sync (each `home.open()` would cost a key
    // derivation on an encrypted home): taken from the home's pool and given back.
    let node = blocking(|| home.checkout())?;
    let key = node.device_key();
    let member = node.identity().site_id.is_some();
    home.give_back(node);
    if !member {
        return Err(SyncError::NotMember.into());
    }
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let endpoint = Endpoint::bind(bind, &key, &NetConfig::default())?;
    let conn = endpoint.connect(addr).await?;
    // Where the peer was reached is noted with the time of the sync, in one transaction.
    let config = SyncConfig {
        peer_addr: Some(addr.to_string()),
        ..config.clone()
    };
    let result = sync_on(home, &conn, &config).await;
    tracing::trace!("session over");
    let stats = conn.connection.stats();
    conn.close_told(Duration::from_millis(20)).await;
    endpoint.close_within(Duration::ZERO).await;
    tracing::trace!("connection closed");
    let mut stats_out = result?;
    stats_out.bytes_sent = stats.udp_tx.bytes;
    stats_out.bytes_received = stats.udp_rx.bytes;
    Ok(SyncReport {
        peer: conn.peer,
        stats: stats_out,
    })
}

/// The station's address as this node knows it.
pub fn station_addr(node: &Node) -> Result<SocketAddr, DaemonError> {
    let addr = node
        .identity()
        .station_addr
        .clone()
        .ok_or(DaemonError::NoStation)?;
    resolve(&addr)
}

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
        .map(|(d, n)| tokio::spawn(crate::discovery::watch_network(d, n, events.clone())));
    let nearby = (neighbours.is_some() || !config.peers.is_empty()).then(|| {
        let (endpoint, home, events) = (endpoint.clone(), home.clone(), events.clone());
        let (config, neighbours) = (config.clone(), neighbours.clone());
        tokio::spawn(async move {
            crate::discovery::keep_syncing_with_neighbours(
                &home, &endpoint, neighbours, &config, &events,
            )
            .await
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
            keep_syncing_with_station(&home, &endpoint, &config, neighbours, &events).await
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
            keep_syncing_with_peers(&home, &endpoint, &config, neighbours, &events).await
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

/// Every `resync`, syncs with each other peer this node knows an address for (members
/// met before), backing off from those that cannot be reached.
async fn keep_syncing_with_peers(
    home: &Home,
    endpoint: &Endpoint,
    config: &ServeConfig,
    neighbours: Option<Arc<Neighbours>>,
    events: &mpsc::UnboundedSender<ServeEvent>,
) {
    let sync_config = SyncConfig::default();
    let mut next_try: std::collections::HashMap<DeviceId, (Instant, Duration)> =
        std::collections::HashMap::new();
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
            if next_try.get(&p.device).is_some_and(|(at, _)| *at > now) {
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
                    next_try.remove(&p.device);
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
                    let wait = next_try.get(&p.device).map_or(config.resync, |(_, w)| {
                        (*w * 2).min(Duration::from_secs(3600))
                    });
                    next_try.insert(p.device, (now + wait, wait));
                }
            }
        }
    }
}

/// Keeps a connection to the station and syncs on it: at once, whenever this node's log
/// grows (another process wrote), and every `resync`; reconnects with back-off.
async fn keep_syncing_with_station(
    home: &Home,
    endpoint: &Endpoint,
    config: &ServeConfig,
    neighbours: Option<Arc<Neighbours>>,
    events: &mpsc::UnboundedSender<ServeEvent>,
) {
    let sync_config = SyncConfig::default();
    let mut backoff = config.retry_min;
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
            crate::discovery::wait_for_news(neighbours.as_deref(), wait).await;
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
            connected = crate::discovery::dial(endpoint, *root, addrs)
                .await
                .map_err(|e| {
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
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(config.retry_max);
                continue;
            }
        };
        let peer = conn.peer;
        // One handle on the store watches the log for this connection's lifetime:
        // opening the store every poll would cost an encrypted home a key derivation
        // twice a second.
        let Ok(mut watcher) = blocking(|| home.open()) else {
            tokio::time::sleep(backoff).await;
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
                        backoff = config.retry_min;
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
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(config.retry_max);
    }
}

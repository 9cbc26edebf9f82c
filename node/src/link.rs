//! A sync over a QUIC link: frames between a QUIC stream and a [`SyncEngine`].
//!
//! This module only moves frames; everything they mean is decided by the engine and the
//! protocol session. One sync, in order:
//!
//! ```text
//! sync_once(node, addr)             sync_stream(home, peer, stream)  (serve, dial loops)
//!   Endpoint::bind, connect           Home::checkout -> node
//!   open_bi -> stream                   |
//!   SyncEngine::new(node, peer) <-------+
//!   run: reader task -> frame -> engine.handle_frame -> ingest (one transaction)
//!        engine.poll_transmit -> frame -> writer task (pages built as it takes them)
//!        until the session is finished (both sent Done) or fails (a Refuse read first)
//!   the writer finishes the stream; the connection is closed (sync_once) or kept (serve)
//! ```
//!
//! - [`sync_once`] connects to a peer with the node the command opened, syncs once, and
//!   reports what moved.
//! - [`sync_stream`] runs one sync on one bidirectional stream with a node of the home's
//!   pool (the daemon's connections, `crate::daemon`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use yizhan_protocol::DeviceId;
use yizhan_protocol::wire::MAX_FRAME;

use crate::error::{OpenError, ReadError};
use crate::home::{Home, Node};
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
    /// A HOST:PORT address whose host name does not resolve.
    #[error("the host '{0}' cannot be found (its name does not resolve)")]
    Unresolved(String),
}

/// The result of a completed sync.
#[derive(Clone, Debug)]
pub struct SyncReport {
    /// The peer.
    pub peer: DeviceId,
    /// What moved (bytes are the whole connection's UDP payload for one-shot syncs).
    pub stats: SyncStats,
}

/// Resolves `HOST:PORT` (a name or an address): [`DaemonError::BadAddress`] when it is not
/// of that form, [`DaemonError::Unresolved`] when the host name does not resolve.
pub fn resolve(addr: &str) -> Result<SocketAddr, DaemonError> {
    use std::net::ToSocketAddrs;
    let text = addr.trim();
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    let host = host_of(text).ok_or_else(|| DaemonError::BadAddress(addr.to_string()))?;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| DaemonError::Unresolved(host.to_string()))
}

/// The host of a `HOST:PORT` address that is not an IP address: a name (no colon, no
/// space) and a port number. `None` when the text is not of that form.
pub fn host_of(addr: &str) -> Option<&str> {
    let (host, port) = addr.rsplit_once(':')?;
    let name =
        !host.is_empty() && !host.contains([':', '[', ']']) && !host.contains(char::is_whitespace);
    (name && port.parse::<u16>().is_ok()).then_some(host)
}

/// Runs store work on this task's thread: it is short and synchronous, and the runtime
/// moves the thread's other tasks elsewhere meanwhile.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
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
    let result = run(&mut engine, send, recv).await;
    home.give_back(engine.into_node());
    result
}

/// Runs `engine`'s session on one stream until it ends.
async fn run(
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
    let (send, recv) = open_stream(conn).await?;
    sync_stream(home, conn.peer, send, recv, config).await
}

/// Opens the bidirectional stream one sync runs on.
async fn open_stream(
    conn: &PeerConnection,
) -> Result<(quinn::SendStream, quinn::RecvStream), DaemonError> {
    conn.connection
        .open_bi()
        .await
        .map_err(|e| DaemonError::Stream(e.to_string()))
}

/// Connects to `addr` and syncs once with `node`, then closes. The byte counts are
/// everything this node sent and received on the connection (UDP payloads, handshake
/// included).
pub async fn sync_once(
    node: Node,
    addr: SocketAddr,
    config: SyncConfig,
) -> Result<SyncReport, DaemonError> {
    if node.identity().site_id.is_none() {
        return Err(SyncError::NotMember.into());
    }
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let endpoint = Endpoint::bind(bind, &node.device_key(), &NetConfig::default())?;
    let conn = endpoint.connect(addr).await?;
    // Where the peer was reached is noted with the time of the sync, in one transaction.
    let config = SyncConfig {
        peer_addr: Some(addr.to_string()),
        ..config
    };
    let result = async {
        let (send, recv) = open_stream(&conn).await?;
        let mut engine = SyncEngine::new(node, conn.peer, &config, Instant::now())?;
        run(&mut engine, send, recv).await
    }
    .await;
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

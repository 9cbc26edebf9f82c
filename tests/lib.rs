//! Multi-node tests for yizhan, and the helpers they share.
//!
//! [`TestNode`] is a real `Node` in its own temporary home; [`enroll`] admits one to a
//! station's site. [`sync`] runs one sync between two of them through the real
//! `SyncEngine`s over an in-memory link with a virtual clock, where frames can be lost,
//! duplicated and reordered ([`Faults`]).

pub mod fuzz_targets;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use yizhan_node::Node;
use yizhan_node::members::EnrollRequest;
use yizhan_node::sync::{SyncConfig, SyncEngine, SyncStats};
use yizhan_node::{InitConfig, InitSeed};
use yizhan_protocol::{DeviceId, DocId, MemberRole};

/// A node in a temporary home that is removed when the node is dropped.
pub struct TestNode {
    /// The node.
    pub node: Node,
    _dir: TempDir,
}

impl TestNode {
    /// A new unenrolled node called `name`.
    pub fn new(name: &str) -> TestNode {
        Self::make(name, false)
    }

    /// A new station (the root of a new site) called `name`.
    pub fn station(name: &str) -> TestNode {
        Self::make(name, true)
    }

    fn make(name: &str, station: bool) -> TestNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let node = Node::init(
            &dir.path().join("home"),
            &InitConfig {
                name: name.to_string(),
                station,
                encrypt: None,
            },
            InitSeed::random(),
        )
        .expect("init");
        TestNode { node, _dir: dir }
    }

    /// This node's device id.
    pub fn id(&self) -> DeviceId {
        self.node.identity().device_id
    }

    /// Hands every stored change of `doc` on this node to `other`; returns how many
    /// `other` newly accepted.
    pub fn send_doc(&self, other: &mut TestNode, doc: DocId) -> usize {
        let changes = self.node.doc_changes(doc).expect("read changes");
        let report = other.node.ingest(vec![changes]).expect("ingest");
        assert!(
            report.rejected.is_empty(),
            "rejected: {:?}",
            report.rejected
        );
        report.accepted
    }

    /// Reopens the node from its home, as after a restart.
    pub fn reopen(&mut self) {
        let home = self.node.home().to_path_buf();
        let fresh = Node::open(&home).expect("reopen");
        self.node = fresh;
    }
}

/// What can go wrong on the simulated link, as probabilities per frame.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// A frame is dropped.
    pub loss: f64,
    /// A frame is delivered twice.
    pub duplicate: f64,
    /// A frame is delivered after a later one.
    pub reorder: f64,
}

/// How one simulated sync ended.
#[derive(Debug)]
pub struct SyncOutcome {
    /// The first node's view.
    pub a: Result<SyncStats, String>,
    /// The second node's view.
    pub b: Result<SyncStats, String>,
    /// Virtual time the sync took.
    pub elapsed: Duration,
}

impl SyncOutcome {
    /// Both sides completed.
    pub fn ok(&self) -> bool {
        self.a.is_ok() && self.b.is_ok()
    }
}

/// Enrols `volunteer` at `station` for `grids` and joins it.
pub fn enroll(station: &mut TestNode, volunteer: &mut TestNode, grids: &[&str]) {
    enroll_as(station, volunteer, grids, MemberRole::Volunteer);
}

/// Enrols `device` at `station` with `role` and joins it.
pub fn enroll_as(station: &mut TestNode, device: &mut TestNode, grids: &[&str], role: MemberRole) {
    let token = station
        .node
        .enroll(&EnrollRequest {
            device: device.id(),
            name: device.node.identity().name.clone(),
            grids: grids.iter().map(|g| g.to_string()).collect(),
            role,
            expires_days: None,
        })
        .expect("enroll");
    device.node.join(&token, None).expect("join");
}

/// The deterministic random source of fault schedules.
pub type Rng = rand::rngs::StdRng;

/// A fault schedule's random source, from a seed.
pub fn rng(seed: u64) -> Rng {
    rand::SeedableRng::seed_from_u64(seed)
}

fn chance(rng: &mut Rng, p: f64) -> bool {
    p > 0.0 && rand::Rng::random::<f64>(rng) < p
}

/// Runs one sync between `a` and `b` over a simulated link with `faults`, on a virtual
/// clock (each delivery takes 10 ms; a stalled sync runs into the idle timeout).
pub fn sync(a: &mut TestNode, b: &mut TestNode, faults: Faults, rng: &mut Rng) -> SyncOutcome {
    let (a_id, b_id) = (a.id(), b.id());
    let start = Instant::now();
    let mut now = start;
    let config = SyncConfig {
        idle_timeout: Duration::from_secs(5),
        ..SyncConfig::default()
    };
    let placeholder_a = Node::open(a.node.home()).expect("open");
    let placeholder_b = Node::open(b.node.home()).expect("open");
    let node_a = std::mem::replace(&mut a.node, placeholder_a);
    let node_b = std::mem::replace(&mut b.node, placeholder_b);
    let mut ea = Some(SyncEngine::new(node_a, b_id, &config, now).expect("engine a"));
    let mut eb = Some(SyncEngine::new(node_b, a_id, &config, now).expect("engine b"));
    let mut ra: Result<(), String> = Ok(());
    let mut rb: Result<(), String> = Ok(());
    // Frames in flight: (to_b, payload).
    let mut flight: VecDeque<(bool, Vec<u8>)> = VecDeque::new();
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps < 100_000, "simulated sync does not terminate");
        for (to_b, engine, result) in [(true, &mut ea, &mut ra), (false, &mut eb, &mut rb)] {
            let Some(e) = engine.as_mut() else { continue };
            if result.is_err() {
                continue;
            }
            loop {
                match e.poll_transmit() {
                    Ok(Some(frame)) => {
                        if chance(rng, faults.loss) {
                            continue;
                        }
                        if chance(rng, faults.duplicate) {
                            flight.push_back((to_b, frame.clone()));
                        }
                        if chance(rng, faults.reorder) && !flight.is_empty() {
                            let at = rand::Rng::random_range(rng, 0..flight.len());
                            flight.insert(at, (to_b, frame));
                        } else {
                            flight.push_back((to_b, frame));
                        }
                    }
                    Ok(None) => break,
                    Err(err) => {
                        *result = Err(err.to_string());
                        break;
                    }
                }
            }
        }
        let a_done = ra.is_err() || ea.as_ref().is_some_and(SyncEngine::is_finished);
        let b_done = rb.is_err() || eb.as_ref().is_some_and(SyncEngine::is_finished);
        if a_done && b_done {
            break;
        }
        if let Some((to_b, frame)) = flight.pop_front() {
            now += Duration::from_millis(10);
            let (engine, result) = if to_b {
                (&mut eb, &mut rb)
            } else {
                (&mut ea, &mut ra)
            };
            if result.is_ok()
                && let Some(e) = engine.as_mut()
                && let Err(err) = e.handle_frame(&frame, now)
            {
                *result = Err(err.to_string());
            }
            continue;
        }
        // Nothing in flight: whoever is still waiting runs into its idle timeout.
        now += Duration::from_secs(6);
        for (engine, result) in [(&mut ea, &mut ra), (&mut eb, &mut rb)] {
            if result.is_ok()
                && let Some(e) = engine.as_mut()
                && !e.is_finished()
                && let Err(err) = e.handle_timeout(now)
            {
                *result = Err(err.to_string());
            }
        }
    }
    let ea = ea.take().expect("engine a");
    let eb = eb.take().expect("engine b");
    let sa = ea.stats().clone();
    let sb = eb.stats().clone();
    a.node = ea.into_node();
    b.node = eb.into_node();
    SyncOutcome {
        a: ra.map(|_| sa),
        b: rb.map(|_| sb),
        elapsed: now - start,
    }
}

/// Syncs until a sync completes on both sides (at most `tries` attempts).
pub fn sync_until_ok(a: &mut TestNode, b: &mut TestNode, tries: usize) -> SyncOutcome {
    let mut rng = rng(1);
    for _ in 0..tries {
        let out = sync(a, b, Faults::default(), &mut rng);
        if out.ok() {
            return out;
        }
    }
    panic!("sync did not complete in {tries} tries");
}

/// A raw connection to a node's store, for tests that tamper with it.
pub type Conn = rusqlite::Connection;

/// Opens a store file directly (no yizhan checks).
pub fn open_db(path: &std::path::Path) -> Conn {
    rusqlite::Connection::open(path).expect("open store")
}

/// A node served by `daemon::serve` on loopback QUIC (port `:0`), from a test.
pub struct Served {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    events: tokio::sync::mpsc::UnboundedReceiver<yizhan_node::daemon::ServeEvent>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), yizhan_node::link::DaemonError>>,
}

/// What `yizhan sync HOST:PORT` does for the home at `home`: opens its own node and syncs
/// once over real QUIC with the peer at `addr`.
pub async fn sync_once(
    home: &yizhan_node::Home,
    addr: std::net::SocketAddr,
) -> Result<yizhan_node::link::SyncReport, yizhan_node::link::DaemonError> {
    yizhan_node::link::sync_once(home.open()?, addr, SyncConfig::default()).await
}

/// Starts `daemon::serve` for `node` with at most `max_peers` peers, and waits until it
/// listens.
pub async fn serve(node: &TestNode, max_peers: usize) -> Served {
    use yizhan_node::daemon::{self, ServeConfig, ServeEvent};
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let config = ServeConfig {
        listen: "127.0.0.1:0".parse().expect("literal"),
        max_peers,
        ..ServeConfig::default()
    };
    let task = tokio::spawn(daemon::serve(
        node.node.home_handle(),
        config,
        events_tx,
        stop_rx,
    ));
    let addr = match events.recv().await {
        Some(ServeEvent::Listening(addr)) => addr,
        other => panic!("expected Listening, got {other:?}"),
    };
    Served {
        addr,
        events,
        stop,
        task,
    }
}

impl Served {
    /// The next failure the daemon reports (within 60 s).
    pub async fn next_failure(&mut self) -> String {
        loop {
            match tokio::time::timeout(Duration::from_secs(60), self.events.recv()).await {
                Ok(Some(yizhan_node::daemon::ServeEvent::Failed { error, .. })) => return error,
                Ok(Some(_)) => continue,
                other => panic!("no failure reported: {other:?}"),
            }
        }
    }

    /// Stops it cleanly; fails the test if it ended with an error.
    pub async fn stop(self) {
        self.stop.send(true).expect("serve is running");
        self.task.await.expect("serve task").expect("serve");
    }
}

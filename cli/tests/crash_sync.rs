// A test binary of its own, not a module of `it`: it SIGKILLs `yizhan` processes at
// moments drawn from 0–110 ms, which is where a sync or a write is under way on an
// otherwise quiet machine. Beside the `it` tests, each starting `yizhan` processes of its
// own, the kills would land mostly before the work they aim at.

//! Crash safety of writers and of both ends of a sync (security.md, promise 1).
//!
//! One station (`serve`) and two volunteer laptops, enrolled for the station's grid, keep
//! their homes for the whole run, so state accumulates as over a real evening. Each trial,
//! driven by a seeded RNG:
//!
//! 1. a few writes complete on the station and on one laptop (so both directions of the
//!    coming sync carry data), sometimes on the other laptop too (the station relays them);
//! 2. that laptop starts `yizhan sync` with the station's `serve`, while 0–2 more writers
//!    (`visit add/edit`, `ticket open/update/comment`, a small `import`) run on any node;
//! 3. after a random 0–[`MAX_KILL_MS`] ms the plan's targets get SIGKILL: the laptop's sync,
//!    the station's serve, the writers, both ends of the sync at once, or all of them;
//! 4. a killed `serve` is started again on the same home, and then every trial checks:
//!    every write whose id (or count) the CLI printed is stored on the node that printed it
//!    (its record, and the change carrying the write's unique marker text); an import is
//!    all or nothing; `PRAGMA integrity_check` is ok on every `store.db`; `yizhan verify`
//!    passes; no (document, actor, seq) ever names two different changes, across all nodes
//!    and all trials, and no node ever loses a change it held; the next, un-killed
//!    `yizhan sync` completes; and afterwards station and laptop list the same visits and
//!    tickets.
//!
//! At the end all three nodes sync until they agree, and every write acknowledged
//! anywhere during the run is present on all of them.
//!
//! `YIZHAN_CRASH_TRIALS=N` runs N trials (default [`DEFAULT_TRIALS`]); the seed is printed
//! and `YIZHAN_CRASH_SEED=S` replays a run's choices (the kill moments race real processes,
//! so a replay is the same mix, not the same interleaving).

// The helpers of `it`, where all of them are used (and dead code is caught); this
// binary uses a few.
#[allow(dead_code)]
#[path = "it/util.rs"]
mod util;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::{Connection, OpenFlags, params};
use serde_json::Value;
use util::*;

/// Trials in a plain `cargo test` run.
const DEFAULT_TRIALS: usize = 200;
/// The kill lands 0..=this many ms after the sync and the racing writers were started.
const MAX_KILL_MS: u64 = 110;
/// How long a one-shot command may run before the test calls it hung.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `serve` may take to print its first line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// After its serve was killed, how long a sync is given to end before it is left to time
/// out on its own (as an orphan).
const ORPHAN_GRACE: Duration = Duration::from_millis(300);
/// An orphaned sync still running this long after its start is hung (QUIC's idle
/// timeout is 30 s).
const ORPHAN_HUNG: Duration = Duration::from_secs(100);

const GRID: &str = "和平里";
const STATION: usize = 0;

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

/// A private copy of the binary under test, made once, so that a rebuild of
/// `target/debug/yizhan` during the run (a shared working tree) cannot swap it mid-run.
fn bin() -> &'static Path {
    static BIN_COPY: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &BIN_COPY
        .get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("yizhan-crash-bin-")
                .tempdir()
                .expect("temp dir");
            let path = dir.path().join("yizhan");
            std::fs::copy(BIN, &path).expect("copy the binary");
            (dir, path)
        })
        .1
}

/// Removes the copy of the binary when the test ends, passed or failed (a static is never
/// dropped).
struct RemoveBinCopy;

impl Drop for RemoveBinCopy {
    fn drop(&mut self) {
        if let Some(dir) = bin().parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `yizhan --home H [--json] ARGS` as [`Home::command`] builds it, run from [`bin`].
fn command(home: &Home, json: bool, args: &[String]) -> Command {
    let template = home.command(json, args);
    let mut cmd = Command::new(bin());
    for (k, v) in template.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.args(template.get_args()).stdin(Stdio::null());
    cmd
}

/// Runs a command to its end (under [`COMMAND_TIMEOUT`]) and asserts it succeeded;
/// returns what it printed, parsed.
fn json_ok(home: &Home, args: &[&str]) -> Value {
    let args = s(args);
    let e = Proc::spawn(home, &args).finish();
    assert!(
        e.status.success(),
        "`yizhan {}` failed ({:?}): {}",
        args.join(" "),
        e.status,
        e.stderr
    );
    serde_json::from_str(e.stdout.trim()).expect("prints JSON")
}

/// A home initialised with `init ARGS`.
fn init(args: &[&str]) -> Home {
    let mut home = Home::empty();
    let mut a = vec!["init"];
    a.extend_from_slice(args);
    home.device_id = json_ok(&home, &a)["device_id"]
        .as_str()
        .expect("device_id")
        .to_string();
    home
}

/// A spawned `yizhan` process. Dropping it kills and reaps it, so a failing test leaves
/// nothing behind.
struct Proc {
    child: Option<Child>,
    what: String,
    started: Instant,
    /// Threads draining stdout and stderr (a full pipe would block the child).
    output: Option<(Drain, Drain)>,
}

type Drain = std::thread::JoinHandle<String>;

fn drain(mut r: impl Read + Send + 'static) -> Drain {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    })
}

/// How a process ended and what it printed.
struct Ended {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ended {
    fn killed(&self) -> bool {
        self.status.signal() == Some(libc::SIGKILL)
    }
}

impl Proc {
    fn spawn(home: &Home, args: &[String]) -> Proc {
        let mut child = command(home, true, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn yizhan");
        let output = (
            drain(child.stdout.take().expect("stdout")),
            drain(child.stderr.take().expect("stderr")),
        );
        Proc {
            child: Some(child),
            what: format!("yizhan --json {}", args.join(" ")),
            started: Instant::now(),
            output: Some(output),
        }
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("not yet reaped")
    }

    /// Still running (not yet exited).
    fn running(&mut self) -> bool {
        self.child().try_wait().expect("try_wait").is_none()
    }

    /// SIGKILLs it if it is still running; true if the signal found it running.
    fn kill(&mut self) -> bool {
        if !self.running() {
            return false;
        }
        // std sends SIGKILL; the child is not reaped yet, so the pid is still ours.
        self.child().kill().expect("SIGKILL");
        true
    }

    /// Waits up to `timeout`; `None` if it still runs then.
    fn wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child().try_wait().expect("try_wait") {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(3));
        }
    }

    /// Waits for the exit (panics if it takes longer than [`COMMAND_TIMEOUT`]) and collects
    /// the output.
    fn finish(mut self) -> Ended {
        if self.wait_for(COMMAND_TIMEOUT).is_none() {
            let what = self.what.clone();
            let ended = self.kill_and_collect();
            panic!(
                "`{what}` still ran after {COMMAND_TIMEOUT:?} (killed); stderr: {}",
                ended.stderr
            );
        }
        self.collect()
    }

    fn kill_and_collect(mut self) -> Ended {
        self.kill();
        self.collect()
    }

    /// Reaps it (it has exited or been killed) and reads what it printed.
    fn collect(mut self) -> Ended {
        let mut child = self.child.take().expect("not yet reaped");
        let status = child.wait().expect("wait");
        let (stdout, stderr) = match self.output.take() {
            Some((out, err)) => (
                out.join().expect("stdout reader"),
                err.join().expect("stderr reader"),
            ),
            None => Default::default(),
        };
        Ended {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `yizhan serve --listen 127.0.0.1:0` on the station's home.
struct Serve {
    proc: Proc,
    addr: SocketAddr,
}

impl Serve {
    fn start(home: &Home, n: usize) -> Serve {
        let stderr_path = home.scratch(&format!("serve-{n}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).expect("create stderr file");
        let mut child = command(home, false, &s(&["serve", "--listen", "127.0.0.1:0"]))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn yizhan serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        // Drains stdout (one line per sync) for as long as the daemon runs.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let proc = Proc {
            child: Some(child),
            what: "yizhan serve".into(),
            started: Instant::now(),
            output: None,
        };
        let first = lines.recv_timeout(START_TIMEOUT).unwrap_or_else(|_| {
            panic!(
                "serve printed no first line within {START_TIMEOUT:?}; stderr: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            )
        });
        let addr = first
            .strip_prefix("listening on ")
            .and_then(|a| a.trim().parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("serve's first line is not `listening on ADDR`: {first:?}"));
        Serve { proc, addr }
    }
}

// ---------------------------------------------------------------------------------------
// Writes and what they acknowledged
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Op {
    VisitAdd,
    VisitEdit,
    TicketOpen,
    TicketUpdate,
    Comment,
    Import,
}

/// One planned write. Every write carries a marker (`[n]`, unique in the run) in a text
/// field, so the change it made can be found in any store.
#[derive(Clone, Debug)]
struct Write {
    node: usize,
    op: Op,
    args: Vec<String>,
    marker: String,
    /// The record an edit, update or comment changes.
    target: Option<String>,
    /// Rows of an import.
    rows: usize,
}

/// A write the CLI acknowledged: it printed the record id (or the import count).
#[derive(Clone, Debug)]
struct Ack {
    node: usize,
    op: Op,
    /// The record it made or changed (none for an import).
    record: Option<String>,
    marker: String,
    rows: usize,
    trial: usize,
}

/// What a `--json` write printed, if it printed all of it: `Some(id)` for a record
/// command (`Some("")` for an import whose count is right).
fn acknowledged(w: &Write, stdout: &str) -> Option<String> {
    let v: Value = serde_json::from_str(stdout.trim()).ok()?;
    if w.op == Op::Import {
        return (v["imported"].as_u64() == Some(w.rows as u64)).then(String::new);
    }
    let id = v["id"].as_str()?;
    is_hex(id, 32).then(|| id.to_string())
}

// ---------------------------------------------------------------------------------------
// Nodes and the store checks
// ---------------------------------------------------------------------------------------

struct Node {
    home: Home,
    label: &'static str,
    /// (id, author) of the visits this node is known to hold.
    visits: Vec<(String, String)>,
    /// Ids of the tickets this node is known to hold.
    tickets: Vec<String>,
    /// Every change hash seen in this store so far: a store never loses a change.
    hashes: HashSet<Vec<u8>>,
}

fn open_ro(home: &Home) -> Connection {
    let conn = Connection::open_with_flags(
        home.store(),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap_or_else(|e| panic!("open {} read-only: {e}", home.store().display()));
    conn.busy_timeout(Duration::from_secs(30))
        .expect("busy_timeout");
    conn
}

/// `PRAGMA integrity_check` rows (`["ok"]` when sound).
fn integrity(conn: &Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare("PRAGMA integrity_check")
        .expect("prepare integrity_check");
    stmt.query_map([], |r| r.get::<_, String>(0))
        .expect("integrity_check")
        .collect::<Result<_, _>>()
        .expect("integrity_check rows")
}

/// Every change's (doc, actor, seq, hash).
type ChangeKey = (Vec<u8>, Vec<u8>, i64);
fn changes(conn: &Connection) -> Vec<(ChangeKey, Vec<u8>)> {
    let mut stmt = conn
        .prepare("SELECT doc_id, actor, seq, hash FROM changes")
        .expect("prepare changes");
    stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?), r.get(3)?)))
        .expect("changes")
        .collect::<Result<_, _>>()
        .expect("changes rows")
}

/// Is the acknowledged write stored: its record, and a change of that record holding the
/// marker? For an import: exactly `rows` records carry its marker. Returns what is wrong.
fn ack_missing(conn: &Connection, a: &Ack) -> Option<String> {
    if a.op == Op::Import {
        let n = marked_records(conn, &a.marker);
        return (n != a.rows).then(|| format!("{n} of the {} imported records", a.rows));
    }
    let id = a.record.as_deref().expect("record write");
    let exists: i64 = conn
        .query_row(
            "SELECT count(*) FROM records WHERE lower(hex(doc_id)) = ?1",
            [id],
            |r| r.get(0),
        )
        .expect("records query");
    if exists == 0 {
        return Some(format!("record {id} is not listed"));
    }
    let marked: i64 = conn
        .query_row(
            "SELECT count(*) FROM changes c JOIN records r ON r.doc_id = c.doc_id \
             WHERE lower(hex(r.doc_id)) = ?1 AND instr(c.bytes, ?2) > 0",
            params![id, a.marker.as_bytes()],
            |r| r.get(0),
        )
        .expect("changes query");
    (marked == 0).then(|| format!("record {id} has no change carrying {}", a.marker))
}

/// How many visit logs and tickets hold `marker` in their list summaries (not the
/// households a visit names at a marked address).
fn marked_records(conn: &Connection, marker: &str) -> usize {
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM records WHERE kind IN (1, 2) AND instr(summary, ?1) > 0",
            [marker],
            |r| r.get(0),
        )
        .expect("records query");
    usize::try_from(n).expect("count")
}

// ---------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Plan {
    /// The laptop's sync.
    Sync,
    /// The station's serve.
    Serve,
    /// The racing writers.
    Writers,
    /// Both ends of the sync at once.
    BothEnds,
    /// Sync, serve and writers at once.
    All,
}

impl Plan {
    fn kills_sync(self) -> bool {
        matches!(self, Plan::Sync | Plan::BothEnds | Plan::All)
    }
    fn kills_serve(self) -> bool {
        matches!(self, Plan::Serve | Plan::BothEnds | Plan::All)
    }
    fn kills_writers(self) -> bool {
        matches!(self, Plan::Writers | Plan::All)
    }
}

#[derive(Default)]
struct Stats {
    plans: BTreeMap<String, usize>,
    kills_sync: usize,
    kills_serve: usize,
    kills_writer: usize,
    /// Trials whose kill found both the sync and the serve running.
    kills_both_ends: usize,
    syncs_killed: usize,
    syncs_completed: usize,
    /// Ended by themselves with an error soon after their serve was killed.
    syncs_failed: usize,
    syncs_orphaned: usize,
    orphans_timed_out: usize,
    orphans_cut_at_end: usize,
    sync_ms_total: u128,
    writes_acked: usize,
    writes_killed_unacked: usize,
    imports_atomic_checked: usize,
    acks_checked: usize,
    check_syncs: usize,
    verifies: usize,
    integrity_checks: usize,
    serve_restarts: usize,
}

struct Harness {
    rng: StdRng,
    seed: u64,
    nodes: Vec<Node>,
    serve: Serve,
    serves_started: usize,
    /// (doc, actor, seq) → hash, over every store and every trial.
    seqs: HashMap<ChangeKey, (Vec<u8>, &'static str, usize)>,
    acks: Vec<Ack>,
    orphans: Vec<Proc>,
    writes: usize,
    stats: Stats,
}

fn category(rng: &mut StdRng) -> String {
    CATEGORIES[rng.random_range(0..CATEGORIES.len())]
        .0
        .to_string()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|a| a.to_string()).collect()
}

impl Harness {
    fn new(seed: u64) -> Harness {
        let station = init(&["--name", "幸福里工作站", "--station"]);
        let serve = Serve::start(&station, 0);
        let addr = serve.addr.to_string();
        let mut nodes = vec![Node {
            home: station,
            label: "station",
            visits: Vec::new(),
            tickets: Vec::new(),
            hashes: HashSet::new(),
        }];
        for (label, name) in [("laptop 1", "王芳"), ("laptop 2", "李娜")] {
            let home = init(&["--name", "测试员"]);
            let token = json_ok(
                &nodes[STATION].home,
                &[
                    "enroll",
                    home.device_id.as_str(),
                    "--name",
                    name,
                    "--grid",
                    GRID,
                ],
            )["token"]
                .as_str()
                .expect("token")
                .to_string();
            json_ok(&home, &["join", token.as_str(), "--station", addr.as_str()]);
            nodes.push(Node {
                home,
                label,
                visits: Vec::new(),
                tickets: Vec::new(),
                hashes: HashSet::new(),
            });
        }
        Harness {
            rng: StdRng::seed_from_u64(seed),
            seed,
            nodes,
            serve,
            serves_started: 1,
            seqs: HashMap::new(),
            acks: Vec::new(),
            orphans: Vec::new(),
            writes: 0,
            stats: Stats::default(),
        }
    }

    /// A random write on `node`, of what that node may do with what it holds.
    fn plan_write(&mut self, node: usize) -> Write {
        self.writes += 1;
        let marker = format!("[{}]", self.writes);
        let rng = &mut self.rng;
        let n = &self.nodes[node];
        let editable: Vec<&String> = n
            .visits
            .iter()
            .filter(|(_, author)| node == STATION || *author == n.home.device_id)
            .map(|(id, _)| id)
            .collect();
        let roll = rng.random_range(0..100);
        let mut op = match roll {
            0..30 => Op::VisitAdd,
            30..52 => Op::VisitEdit,
            52..66 => Op::TicketOpen,
            66..80 => Op::TicketUpdate,
            80..96 => Op::Comment,
            _ => Op::Import,
        };
        if op == Op::VisitEdit && editable.is_empty() {
            op = Op::VisitAdd;
        }
        if matches!(op, Op::TicketUpdate | Op::Comment) && n.tickets.is_empty() {
            op = Op::TicketOpen;
        }
        let mut target = None;
        let mut rows = 0;
        let args = match op {
            Op::VisitAdd => {
                let mut a = s(&["visit", "add", "--household"]);
                a.push(format!("幸福里{marker}号"));
                a.extend(s(&["--grid", GRID, "--resident", "王秀英", "--note"]));
                a.push(format!("走访{marker}"));
                a.push("--category".into());
                a.push(category(rng));
                a
            }
            Op::VisitEdit => {
                let id = editable[rng.random_range(0..editable.len())].clone();
                let mut a = s(&["visit", "edit", id.as_str(), "--note"]);
                a.push(format!("回访{marker}"));
                if rng.random_bool(0.3) {
                    a.push("--needs".into());
                    a.push(format!("需要{marker}"));
                }
                target = Some(id);
                a
            }
            Op::TicketOpen => {
                let mut a = s(&["ticket", "open", "--title"]);
                a.push(format!("报修{marker}"));
                a.extend(s(&["--grid", GRID, "--priority"]));
                a.push(["low", "normal", "high", "urgent"][rng.random_range(0..4)].into());
                a.push("--category".into());
                a.push(category(rng));
                a
            }
            Op::TicketUpdate => {
                let id = n.tickets[rng.random_range(0..n.tickets.len())].clone();
                let mut a = s(&["ticket", "update", id.as_str(), "--title"]);
                a.push(format!("更新{marker}"));
                a.push("--status".into());
                a.push(
                    ["open", "in_progress", "resolved", "closed"][rng.random_range(0..4)].into(),
                );
                if rng.random_bool(0.3) {
                    let who = rng.random_range(1..=2);
                    a.push("--assign".into());
                    a.push(self.nodes[who].home.device_id.clone());
                }
                target = Some(id);
                a
            }
            Op::Comment => {
                let id = n.tickets[rng.random_range(0..n.tickets.len())].clone();
                target = Some(id.clone());
                vec![
                    "ticket".into(),
                    "comment".into(),
                    id,
                    format!("留言{marker}：已联系住户"),
                ]
            }
            Op::Import => {
                rows = rng.random_range(5..=20);
                let mut csv = vec![VISIT_KEYS.iter().map(|k| k.to_string()).collect()];
                for i in 0..rows {
                    csv.push(vec![
                        fake_hex((self.writes * 100 + i) as u64, 32),
                        format!("{marker}户{i}"),
                        String::new(), // household_id: import links by grid and address
                        GRID.to_string(),
                        CATEGORIES[i % 7].0.to_string(),
                        format!("批量走访第{i}户"),
                        serde_json::to_string(&[format!("张{i}")]).expect("json"),
                        String::new(),
                        generated_time(i),
                        fake_hex(7, 64),
                        "[]".to_string(),
                    ]);
                }
                let file = n.home.scratch(&format!("import-{}.csv", self.writes));
                std::fs::write(&file, write_csv(&csv)).expect("write csv");
                let mut a = s(&["import", "--kind", "visits", "--format", "csv"]);
                a.push(file.to_str().expect("utf-8 path").to_string());
                a
            }
        };
        Write {
            node,
            op,
            args,
            marker,
            target,
            rows,
        }
    }

    /// Records what a finished or killed write acknowledged; a write that was not killed
    /// must have succeeded and said so.
    fn settle_write(&mut self, w: &Write, e: &Ended, trial: usize, ctx: &str) {
        let acked = acknowledged(w, &e.stdout);
        if !e.killed() {
            assert!(
                e.status.success() && acked.is_some(),
                "{ctx}: `{}` on {} ended on its own without success ({:?}); stdout: {:?}; stderr: {}",
                w.args.join(" "),
                self.nodes[w.node].label,
                e.status,
                e.stdout,
                e.stderr
            );
        }
        let Some(id) = acked else {
            self.stats.writes_killed_unacked += 1;
            if w.op == Op::Import {
                // All or nothing, acknowledged or not.
                let n = marked_records(&open_ro(&self.nodes[w.node].home), &w.marker);
                assert!(
                    n == 0 || n == w.rows,
                    "{ctx}: a killed import of {} rows left {n} of them on {}",
                    w.rows,
                    self.nodes[w.node].label
                );
                self.stats.imports_atomic_checked += 1;
            }
            return;
        };
        self.stats.writes_acked += 1;
        let record = match w.op {
            Op::Import => None,
            Op::VisitAdd | Op::TicketOpen => Some(id),
            _ => {
                assert_eq!(
                    Some(&id),
                    w.target.as_ref(),
                    "{ctx}: `{}` printed another id",
                    w.args.join(" ")
                );
                Some(id)
            }
        };
        let node = &mut self.nodes[w.node];
        match (w.op, &record) {
            (Op::VisitAdd, Some(id)) => node.visits.push((id.clone(), node.home.device_id.clone())),
            (Op::TicketOpen, Some(id)) => node.tickets.push(id.clone()),
            _ => {}
        }
        self.acks.push(Ack {
            node: w.node,
            op: w.op,
            record,
            marker: w.marker.clone(),
            rows: w.rows,
            trial,
        });
    }

    fn spawn_write(&self, w: &Write) -> Proc {
        Proc::spawn(&self.nodes[w.node].home, &w.args)
    }

    fn sync_args(&self) -> Vec<String> {
        vec!["sync".into(), self.serve.addr.to_string()]
    }

    fn trial(&mut self, t: usize) {
        let laptop = self.rng.random_range(1..=2);
        let other = 3 - laptop;
        let ctx = format!("trial {t} (seed {})", self.seed);

        // 1. New changes on both ends of the coming sync (and sometimes to relay).
        let mut pre = vec![self.plan_write(STATION), self.plan_write(laptop)];
        if self.rng.random_bool(0.3) {
            pre.push(self.plan_write(other));
        }
        let procs: Vec<Proc> = pre.iter().map(|w| self.spawn_write(w)).collect();
        for (w, p) in pre.iter().zip(procs) {
            let e = p.finish();
            self.settle_write(w, &e, t, &ctx);
        }

        // 2. The sync and the racing writers; 3. the kill.
        let plan = match self.rng.random_range(0..100) {
            0..30 => Plan::Sync,
            30..45 => Plan::Serve,
            45..60 => Plan::Writers,
            60..85 => Plan::BothEnds,
            _ => Plan::All,
        };
        *self.stats.plans.entry(format!("{plan:?}")).or_default() += 1;
        let racing_n = if plan.kills_writers() {
            self.rng.random_range(1..=2)
        } else {
            self.rng.random_range(0..=2)
        };
        let racing: Vec<Write> = (0..racing_n)
            .map(|_| {
                let node = self.rng.random_range(0..3);
                self.plan_write(node)
            })
            .collect();
        // A writer is done in ~25 ms and a sync in ~55 ms (debug build, loopback): aim the
        // kill where the plan's targets still run.
        let max_ms = match plan {
            Plan::Writers => MAX_KILL_MS / 3,
            Plan::All => MAX_KILL_MS * 2 / 3,
            Plan::Sync | Plan::BothEnds => MAX_KILL_MS * 4 / 5,
            Plan::Serve => MAX_KILL_MS,
        };
        let delay = Duration::from_millis(self.rng.random_range(0..=max_ms));
        let mut sync = Proc::spawn(&self.nodes[laptop].home, &self.sync_args());
        let mut writers: Vec<Proc> = racing.iter().map(|w| self.spawn_write(w)).collect();
        std::thread::sleep(delay);
        let mut serve_killed = false;
        let mut sync_hit = false;
        // The nodes where a kill found a process running.
        let mut hit = BTreeSet::new();
        // Several targets are killed back to back, in a random order.
        let mut order = [0u8, 1, 2];
        for i in (1..3).rev() {
            order.swap(i, self.rng.random_range(0..=i));
        }
        for k in order {
            match k {
                0 if plan.kills_sync() => {
                    sync_hit = sync.kill();
                    if sync_hit {
                        self.stats.kills_sync += 1;
                        hit.insert(laptop);
                    }
                }
                1 if plan.kills_serve() => {
                    assert!(
                        self.serve.proc.kill(),
                        "{ctx}: the station's serve had exited on its own; stderr in {}",
                        self.nodes[STATION].home.scratch("").display()
                    );
                    serve_killed = true;
                    self.stats.kills_serve += 1;
                    hit.insert(STATION);
                }
                2 if plan.kills_writers() => {
                    for (p, w) in writers.iter_mut().zip(&racing) {
                        if p.kill() {
                            self.stats.kills_writer += 1;
                            hit.insert(w.node);
                        }
                    }
                }
                _ => {}
            }
        }
        if sync_hit && serve_killed {
            self.stats.kills_both_ends += 1;
        }

        // The racing sync: killed, completed, or cut off by the serve's death.
        if sync_hit {
            self.stats.syncs_killed += 1;
            drop(sync.collect());
        } else if serve_killed && sync.wait_for(ORPHAN_GRACE).is_none() {
            // Its peer is gone: it waits for QUIC's idle timeout. Left to end on its own.
            self.stats.syncs_orphaned += 1;
            self.orphans.push(sync);
        } else {
            let e = sync.finish();
            match e.status.code() {
                Some(0) => self.stats.syncs_completed += 1,
                Some(1) if serve_killed => self.stats.syncs_failed += 1,
                _ => panic!(
                    "{ctx}: laptop {laptop}'s sync ({plan:?}) ended on its own with {:?}; stderr: {}",
                    e.status, e.stderr
                ),
            }
        }
        for (w, p) in racing.iter().zip(writers) {
            let e = p.finish();
            self.settle_write(w, &e, t, &ctx);
        }
        if serve_killed {
            self.serves_started += 1;
            let old = std::mem::replace(
                &mut self.serve,
                Serve::start(&self.nodes[STATION].home, self.serves_started),
            );
            drop(old.proc.collect());
            self.stats.serve_restarts += 1;
        }
        self.reap_orphans(&ctx, false);

        // 4. The checks.
        let trial_acks: Vec<Ack> = self.acks.iter().filter(|a| a.trial == t).cloned().collect();
        self.check_stores(&trial_acks, &ctx);
        // `verify` on every node a kill hit (on the laptop if the kill came too late for all).
        if hit.is_empty() {
            hit.insert(laptop);
        }
        self.verify(&hit.into_iter().collect::<Vec<_>>(), &ctx);
        self.check_sync(laptop, &ctx);
        self.check_agree(&[STATION, laptop], &ctx);
    }

    /// Orphaned syncs that have ended must have ended as a sync does: success or a clean
    /// error. At the end (`last`), those still running are cut, unless they are hung.
    fn reap_orphans(&mut self, ctx: &str, last: bool) {
        let mut still = Vec::new();
        for mut p in std::mem::take(&mut self.orphans) {
            if p.running() {
                assert!(
                    p.started.elapsed() < ORPHAN_HUNG,
                    "{ctx}: a sync whose serve was killed still runs after {:?}",
                    p.started.elapsed()
                );
                if last {
                    self.stats.orphans_cut_at_end += 1;
                    drop(p.kill_and_collect());
                } else {
                    still.push(p);
                }
                continue;
            }
            let e = p.collect();
            assert!(
                matches!(e.status.code(), Some(0 | 1)),
                "{ctx}: a sync whose serve was killed ended with {:?}; stderr: {}",
                e.status,
                e.stderr
            );
            self.stats.orphans_timed_out += 1;
        }
        self.orphans = still;
    }

    /// Acknowledged writes are stored; integrity_check is ok; no (doc, actor, seq) names two
    /// changes; no store lost a change.
    fn check_stores(&mut self, acks: &[Ack], ctx: &str) {
        for (i, node) in self.nodes.iter_mut().enumerate() {
            let conn = open_ro(&node.home);
            let ok = integrity(&conn);
            assert_eq!(
                ok,
                ["ok"],
                "{ctx}: integrity_check on {}: {ok:?}",
                node.label
            );
            self.stats.integrity_checks += 1;
            for a in acks.iter().filter(|a| a.node == i) {
                if let Some(why) = ack_missing(&conn, a) {
                    panic!(
                        "{ctx}: {} acknowledged {:?} {} (trial {}), but on it {why}",
                        node.label, a.op, a.marker, a.trial
                    );
                }
                self.stats.acks_checked += 1;
            }
            let all = changes(&conn);
            let now: HashSet<Vec<u8>> = all.iter().map(|(_, h)| h.clone()).collect();
            assert_eq!(
                now.len(),
                all.len(),
                "{ctx}: duplicate hashes in {}",
                node.label
            );
            let lost = node.hashes.difference(&now).count();
            assert_eq!(
                lost, 0,
                "{ctx}: {} lost {lost} changes it held before",
                node.label
            );
            for (key, hash) in all {
                let seen = self
                    .seqs
                    .entry(key.clone())
                    .or_insert_with(|| (hash.clone(), node.label, i));
                assert_eq!(
                    seen.0,
                    hash,
                    "{ctx}: (doc {}, actor {}, seq {}) names change {} on {} but {} on {}",
                    hex(&key.0),
                    hex(&key.1),
                    key.2,
                    hex(&hash),
                    node.label,
                    hex(&seen.0),
                    seen.1
                );
            }
            node.hashes = now;
        }
    }

    /// `yizhan verify` passes on these nodes (in parallel).
    fn verify(&mut self, which: &[usize], ctx: &str) {
        let nodes = &self.nodes;
        std::thread::scope(|sc| {
            let handles: Vec<_> = which
                .iter()
                .map(|&i| {
                    sc.spawn(move || {
                        let e = Proc::spawn(&nodes[i].home, &s(&["verify"])).finish();
                        let v: Value = serde_json::from_str(e.stdout.trim()).unwrap_or_else(|_| {
                            panic!(
                                "{ctx}: verify on {} printed {:?}; stderr: {}",
                                nodes[i].label, e.stdout, e.stderr
                            )
                        });
                        assert!(
                            e.status.success() && v["bad"] == 0,
                            "{ctx}: verify on {}: {v} ({:?}); stderr: {}",
                            nodes[i].label,
                            e.status,
                            e.stderr
                        );
                    })
                })
                .collect();
            for h in handles {
                h.join().expect("verify thread");
            }
        });
        self.stats.verifies += which.len();
    }

    /// The next, un-killed sync of `laptop` completes.
    fn check_sync(&mut self, laptop: usize, ctx: &str) {
        let started = Instant::now();
        let e = Proc::spawn(&self.nodes[laptop].home, &self.sync_args()).finish();
        self.stats.sync_ms_total += started.elapsed().as_millis();
        assert!(
            e.status.success(),
            "{ctx}: the sync of {} after the kill failed ({:?}); stderr: {}",
            self.nodes[laptop].label,
            e.status,
            e.stderr
        );
        self.stats.check_syncs += 1;
    }

    /// These nodes list the same visits and tickets (everything is in the laptops' grid).
    /// Refreshes what each node is known to hold.
    fn check_agree(&mut self, which: &[usize], ctx: &str) {
        let nodes = &self.nodes;
        let lists: Vec<(Vec<Value>, Vec<Value>)> = std::thread::scope(|sc| {
            let handles: Vec<_> = which
                .iter()
                .map(|&i| {
                    sc.spawn(move || {
                        let v = sc.spawn(move || list(&nodes[i].home, "visit"));
                        let t = list(&nodes[i].home, "ticket");
                        (v.join().expect("list thread"), t)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("list thread"))
                .collect()
        });
        let (v0, t0) = &lists[0];
        for (k, (v, t)) in lists.iter().enumerate().skip(1) {
            let (a, b) = (self.nodes[which[0]].label, self.nodes[which[k]].label);
            if let Some(d) = diff(v0, v) {
                panic!("{ctx}: after the sync {a} and {b} list different visits: {d}");
            }
            if let Some(d) = diff(t0, t) {
                panic!("{ctx}: after the sync {a} and {b} list different tickets: {d}");
            }
        }
        for (&i, (v, t)) in which.iter().zip(lists) {
            let node = &mut self.nodes[i];
            node.visits = v
                .iter()
                .map(|x| {
                    (
                        x["id"].as_str().expect("id").to_string(),
                        x["author"].as_str().expect("author").to_string(),
                    )
                })
                .collect();
            node.tickets = t
                .iter()
                .map(|x| x["id"].as_str().expect("id").to_string())
                .collect();
        }
    }

    /// At the end: every node syncs until all agree, and every write acknowledged anywhere
    /// in the run is on every node.
    fn converge(&mut self) {
        let ctx = format!("at the end (seed {})", self.seed);
        self.reap_orphans(&ctx, true);
        for laptop in [1, 2, 1] {
            self.check_sync(laptop, &ctx);
        }
        self.check_agree(&[STATION, 1, 2], &ctx);
        let acks = self.acks.clone();
        for node in &self.nodes {
            let conn = open_ro(&node.home);
            for a in &acks {
                if let Some(why) = ack_missing(&conn, a) {
                    panic!(
                        "{ctx}: {} acknowledged {:?} {} in trial {}, but on {} {why}",
                        self.nodes[a.node].label, a.op, a.marker, a.trial, node.label
                    );
                }
            }
        }
        self.check_stores(&[], &ctx);
        self.verify(&[STATION, 1, 2], &ctx);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `yizhan --json KIND list` under the command timeout.
fn list(home: &Home, kind: &str) -> Vec<Value> {
    let e = Proc::spawn(home, &s(&[kind, "list"])).finish();
    assert!(
        e.status.success(),
        "{kind} list failed ({:?}): {}",
        e.status,
        e.stderr
    );
    array(serde_json::from_str(e.stdout.trim()).expect("list prints JSON"))
}

/// What differs between two lists of records, by id.
fn diff(a: &[Value], b: &[Value]) -> Option<String> {
    let by_id = |l: &[Value]| -> BTreeMap<String, Value> {
        l.iter()
            .map(|v| (v["id"].as_str().expect("id").to_string(), v.clone()))
            .collect()
    };
    let (a, b) = (by_id(a), by_id(b));
    let only_a: Vec<&String> = a.keys().filter(|k| !b.contains_key(*k)).collect();
    let only_b: Vec<&String> = b.keys().filter(|k| !a.contains_key(*k)).collect();
    let differ: Vec<String> = a
        .iter()
        .filter_map(|(k, v)| b.get(k).filter(|w| *w != v).map(|w| format!("{v} vs {w}")))
        .take(3)
        .collect();
    (!only_a.is_empty() || !only_b.is_empty() || !differ.is_empty()).then(|| {
        format!(
            "{} only on the first {only_a:?}, {} only on the second {only_b:?}, differing: {differ:?}",
            only_a.len(),
            only_b.len()
        )
    })
}

fn env_num(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

#[test]
fn kills_of_writers_and_both_ends_of_a_sync_lose_nothing_acknowledged() {
    let trials = env_num("YIZHAN_CRASH_TRIALS").map_or(DEFAULT_TRIALS, |n| n as usize);
    let seed = env_num("YIZHAN_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64
    });
    eprintln!("crash_sync: {trials} trials, seed {seed} (replay: YIZHAN_CRASH_SEED={seed})");
    let _bin_copy = RemoveBinCopy;
    let start = Instant::now();
    let mut h = Harness::new(seed);
    for t in 0..trials {
        h.trial(t);
        if (t + 1) % 50 == 0 {
            eprintln!(
                "crash_sync: {} trials, {:.1} s",
                t + 1,
                start.elapsed().as_secs_f64()
            );
        }
    }
    h.converge();
    let st = &h.stats;
    let (visits, tickets) = (
        h.nodes[STATION].visits.len(),
        h.nodes[STATION].tickets.len(),
    );
    eprintln!(
        "crash_sync summary: {trials} trials in {:.1} s (seed {seed}); plans {:?}; \
         SIGKILLs: {} syncs, {} serves, {} writers, {} trials with both ends at once; \
         racing syncs: {} killed mid-way, {} completed first, \
         {} failed after their serve died, {} orphaned ({} timed out on their own, {} cut at the end); \
         writes: {} acknowledged and checked ({} store checks), {} killed unacknowledged \
         ({} killed imports all-or-nothing); {} serve restarts, {} next syncs completed (mean {} ms), \
         {} verify runs, {} integrity checks; {} distinct (doc, actor, seq); \
         end state {visits} visits, {tickets} tickets on all three nodes",
        start.elapsed().as_secs_f64(),
        st.plans,
        st.kills_sync,
        st.kills_serve,
        st.kills_writer,
        st.kills_both_ends,
        st.syncs_killed,
        st.syncs_completed,
        st.syncs_failed,
        st.syncs_orphaned,
        st.orphans_timed_out,
        st.orphans_cut_at_end,
        st.writes_acked,
        st.acks_checked,
        st.writes_killed_unacked,
        st.imports_atomic_checked,
        st.serve_restarts,
        st.check_syncs,
        st.sync_ms_total
            .checked_div(st.check_syncs as u128)
            .unwrap_or(0),
        st.verifies,
        st.integrity_checks,
        h.seqs.len(),
    );
    assert_eq!(
        st.check_syncs,
        trials + 3,
        "every trial ends with a completed sync"
    );
}

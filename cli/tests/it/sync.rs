//! Sync over real QUIC between real `yizhan` processes on loopback: a station and volunteers,
//! each in its own temporary home. The same scenarios as `tests/tests/it/sync_sim.rs`, seen from
//! the outside: what moves, what stays within a volunteer's grids, who is refused, what a
//! forged or cut sync leaves behind, and how `serve` starts and stops.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::util::*;
use rand::Rng;
use rusqlite::{Connection, params};
use serde_json::Value;

/// How long `serve` may take to print its first line (a debug build on a busy machine).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a one-shot command (a sync) may take before the test gives up and kills it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `serve` may take to exit after SIGINT/SIGTERM ("a few seconds", generously).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

const HEPING: &str = "和平里";
const XINGFU: &str = "幸福路";

/// The keys `sync --json` prints.
const SYNC_KEYS: [&str; 7] = [
    "peer",
    "sent",
    "received",
    "rejected",
    "bytes_sent",
    "bytes_received",
    "round_trips",
];

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

#[allow(unsafe_code)]
fn signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our unreaped child.
    let r = unsafe { libc::kill(pid, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig}) failed");
}

/// Waits for `child` up to `timeout`; `None` if it is still running then.
fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait().expect("wait for child") {
            Some(status) => return Some(status),
            None if Instant::now() >= deadline => return None,
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Kills a child for good and reaps it (used when a test gives up on it).
fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `cmd` to completion with piped output, killing it if it outlives `timeout`.
fn output_with_timeout(mut cmd: Command, what: &str, timeout: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn yizhan");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let Some(status) = wait_timeout(&mut child, timeout) else {
        kill_and_reap(&mut child);
        let stderr = err_reader.join().unwrap_or_default();
        panic!(
            "`yizhan {what}` still ran after {timeout:?} (killed); stderr: {}",
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

/// `yizhan --home H --json ARGS` under a timeout.
fn run_json_timeout(home: &Home, args: &[&str]) -> Output {
    output_with_timeout(
        home.command(true, args),
        &format!("--json {}", show_args(args)),
        COMMAND_TIMEOUT,
    )
}

/// `yizhan --home H --json sync [PEER]`: asserts success and the documented keys.
fn sync(home: &Home, peer: Option<&str>) -> Value {
    let mut args = vec!["sync"];
    args.extend(peer);
    let out = run_json_timeout(home, &args);
    assert_success(&out, &args);
    let v = parse_json(&out.stdout, &args);
    assert_eq!(keys(&v), sorted(&SYNC_KEYS), "sync --json printed {v}");
    for k in &SYNC_KEYS[1..] {
        assert!(v[k].is_u64(), "sync --json: {k} is not a count: {v}");
    }
    assert!(
        is_hex(v["peer"].as_str().unwrap_or_default(), 64),
        "sync --json: peer is not a device id: {v}"
    );
    v
}

/// `yizhan --home H --json sync [PEER]` must fail: exit 1, nothing on stdout, exactly one
/// stderr line `error: ...`. Returns that line.
fn sync_refused(home: &Home, peer: Option<&str>) -> String {
    let mut args = vec!["sync"];
    args.extend(peer);
    let out = run_json_timeout(home, &args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected `yizhan sync` to fail with exit 1; stdout: {}; stderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        out.stdout.iter().all(u8::is_ascii_whitespace),
        "a failed sync printed on stdout: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_one_error_line(&stderr, &args);
    stderr.trim_end().to_string()
}

/// A running `yizhan --home H serve --listen 127.0.0.1:0`. Dropping it sends SIGTERM and
/// waits (then SIGKILL if it will not stop), so no test leaves a daemon behind.
struct Serve {
    child: Option<Child>,
    /// Where it listens, from its first stdout line.
    addr: SocketAddr,
    /// Its first stdout line.
    first_line: String,
    lines: mpsc::Receiver<String>,
    stderr_path: std::path::PathBuf,
}

impl Serve {
    /// `yizhan --home H serve --listen 127.0.0.1:0`; waits for `listening on HOST:PORT`.
    fn start(home: &Home) -> Serve {
        let mut serve = Serve::spawn(home, false);
        serve.addr = serve
            .first_line
            .strip_prefix("listening on ")
            .and_then(|a| a.trim().parse::<SocketAddr>().ok())
            .unwrap_or_else(|| {
                panic!(
                    "serve's first stdout line is not `listening on HOST:PORT`: {:?}",
                    serve.first_line
                )
            });
        serve
    }

    /// `yizhan --home H --json serve --listen 127.0.0.1:0`; waits for the first line, which
    /// must be `{"event": "listening", "addr"}`.
    fn start_json(home: &Home) -> Serve {
        let mut serve = Serve::spawn(home, true);
        let v: Value = serde_json::from_str(&serve.first_line).unwrap_or_else(|e| {
            panic!(
                "--json serve's first line is not JSON ({e}): {:?}",
                serve.first_line
            )
        });
        assert_eq!(v["event"], "listening", "first line: {v}");
        serve.addr = v["addr"]
            .as_str()
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("\"addr\" is not HOST:PORT: {v}"));
        serve
    }

    fn spawn(home: &Home, json: bool) -> Serve {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stderr_path = home.scratch(&format!("serve-{n}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).expect("create stderr file");
        let mut child = home
            .command(
                json,
                &["serve", "--listen", "127.0.0.1:0", "--no-discovery"],
            )
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn yizhan serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        // Drains stdout for as long as the daemon runs, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut serve = Serve {
            child: Some(child),
            addr: "127.0.0.1:0".parse().expect("literal"),
            first_line: String::new(),
            lines,
            stderr_path,
        };
        match serve.lines.recv_timeout(START_TIMEOUT) {
            Ok(line) => serve.first_line = line,
            Err(_) => {
                let stderr = serve.stderr();
                let status = serve
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                drop(serve);
                panic!(
                    "serve printed no first line within {START_TIMEOUT:?} (exit: {status:?}); stderr: {stderr}"
                );
            }
        }
        serve
    }

    /// The address as `HOST:PORT`.
    fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// What it wrote on stderr so far.
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sends `sig` and waits up to [`STOP_TIMEOUT`] for the exit; panics if it does not
    /// exit by then (and kills it). Returns the exit status and every later stdout line.
    fn stop_with(mut self, sig: libc::c_int) -> (ExitStatus, Vec<String>) {
        let mut child = self.child.take().expect("running");
        signal(child.id(), sig);
        let Some(status) = wait_timeout(&mut child, STOP_TIMEOUT) else {
            kill_and_reap(&mut child);
            panic!(
                "serve did not exit within {STOP_TIMEOUT:?} of signal {sig}; stderr: {}",
                self.stderr()
            );
        };
        // The reader thread ends at end of file, once the process (and its stdout) is gone.
        let mut rest = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            rest.push(line);
        }
        (status, rest)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            #[allow(unsafe_code)]
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is our unreaped child.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        if wait_timeout(&mut child, STOP_TIMEOUT).is_none() {
            kill_and_reap(&mut child);
        }
    }
}

/// Polls `check` every 200 ms until it returns `Some`, or gives up after `timeout`.
fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------
// Membership and records
// ---------------------------------------------------------------------------------------

/// The ids of the visits a node lists.
fn visit_ids(home: &Home) -> BTreeSet<String> {
    home.visits()
        .iter()
        .map(|v| v["id"].as_str().expect("visit id").to_string())
        .collect()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// `status --json`.
fn status(home: &Home) -> Value {
    home.json(&["status"])
}

fn pending(home: &Home) -> u64 {
    let s = status(home);
    s["pending_to_station"]
        .as_u64()
        .unwrap_or_else(|| panic!("pending_to_station is not a count: {s}"))
}

/// `verify --json` passes: exit 0, `bad` 0, and it checked at least one change.
fn assert_verifies(home: &Home, who: &str) {
    let v = home.json(&["verify"]);
    assert_eq!(v["bad"], 0, "verify on {who}: {v}");
    assert!(
        v["changes"].as_u64().is_some_and(|n| n > 0),
        "verify on {who} checked nothing: {v}"
    );
}

/// A station serving on loopback.
fn serving_station() -> (Home, Serve) {
    let station = Home::station();
    let serve = Serve::start(&station);
    (station, serve)
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// Visits logged before and after joining reach the station, and come back to exactly the
/// volunteers whose grid they are in; after a full sync nothing is pending and the station's
/// receipt is kept; every node verifies.
#[test]
fn records_reach_the_station_and_return_within_grid_scope() {
    let (station, serve) = serving_station();
    let addr = serve.addr();
    let (a, b, c) = (Home::new(), Home::new(), Home::new());

    // Offline, before joining (the grid given by hand: no membership yet).
    let a1 = a.add_visit(
        "和平里3号楼201室",
        &[
            "--grid",
            HEPING,
            "--note",
            "独居老人，腿脚不便",
            "--resident",
            "王秀英",
        ],
    );
    let b1 = b.add_visit(
        "和平里5号楼102室",
        &["--grid", HEPING, "--needs", "代购药品"],
    );
    let c1 = c.add_visit("幸福路18号", &["--grid", XINGFU, "--category", "纠纷调解"]);

    join(&station, &a, "王芳", &[HEPING], &addr);
    join(&station, &b, "李强", &[HEPING], &addr);
    join(&station, &c, "张伟", &[XINGFU], &addr);

    // Offline, after joining (the grid is the volunteer's own).
    let a2 = a.add_visit(
        "和平里7号楼",
        &["--category", "政策咨询", "--note", "咨询低保"],
    );
    let b2 = b.add_visit("和平里9号楼301室", &["--resident", "赵大爷"]);
    let c2 = c.add_visit("幸福路2弄", &["--note", "楼道堆物"]);
    // The station logs one of its own in 和平里.
    let s1 = station.add_visit(
        "和平里社区活动室",
        &["--grid", HEPING, "--note", "站点走访"],
    );
    for (v, id) in [(&a, &a2), (&b, &b2), (&c, &c2)] {
        let shown = v.visit(id);
        assert!(
            shown["grid"] == HEPING || shown["grid"] == XINGFU,
            "a volunteer's visit without --grid is not in its grid: {shown}"
        );
    }

    for round in 0..2 {
        for v in [&a, &b, &c] {
            let out = sync(v, None);
            assert_eq!(
                out["peer"],
                station.device_id.as_str(),
                "round {round}: {out}"
            );
        }
    }

    let heping = set(&[&a1, &a2, &b1, &b2, &s1]);
    let xingfu = set(&[&c1, &c2]);
    let all: BTreeSet<String> = heping.union(&xingfu).cloned().collect();
    assert_eq!(visit_ids(&station), all, "the station lists every visit");
    assert_eq!(visit_ids(&a), heping, "A lists exactly the 和平里 visits");
    assert_eq!(visit_ids(&b), heping, "B lists exactly the 和平里 visits");
    assert_eq!(visit_ids(&c), xingfu, "C lists exactly the 幸福路 visits");

    // Every visit reads the same everywhere it is held (Chinese text unchanged, author kept).
    let at_station: Vec<Value> = station.visits();
    for (v, who) in [(&a, "A"), (&b, "B"), (&c, "C")] {
        for visit in v.visits() {
            let same = at_station
                .iter()
                .find(|s| s["id"] == visit["id"])
                .unwrap_or_else(|| panic!("{who}'s visit {} not at the station", visit["id"]));
            assert_eq!(&visit, same, "{who} and the station disagree");
        }
    }
    let shown = station.visit(&a1);
    assert_eq!(shown["author"], a.device_id.as_str(), "{shown}");
    assert_eq!(shown["household"], "和平里3号楼201室");
    assert_eq!(shown["note"], "独居老人，腿脚不便");
    assert_eq!(shown["residents"], serde_json::json!(["王秀英"]));
    assert_eq!(station.visit(&c1)["category"], "dispute-mediation");

    // The roster came with the sync: A knows B and C and their grids.
    let members = array(a.json(&["members"]));
    for (v, grid) in [(&b, HEPING), (&c, XINGFU)] {
        let m = members
            .iter()
            .find(|m| m["device_id"] == v.device_id.as_str())
            .unwrap_or_else(|| panic!("A's roster lacks {}: {members:?}", v.device_id));
        assert_eq!(m["role"], "volunteer", "{m}");
        assert_eq!(m["grids"], serde_json::json!([grid]), "{m}");
        assert_eq!(m["revoked"], false, "{m}");
    }

    for (v, who) in [(&a, "A"), (&b, "B"), (&c, "C")] {
        let s = status(v);
        assert_eq!(s["pending_to_station"], 0, "{who} after a full sync: {s}");
        assert!(
            !s["station_receipt"].is_null(),
            "{who} has no station receipt after syncing: {s}"
        );
        // The station as a peer: where it was reached, and when.
        let station_peer = status_peer(&s, &station.device_id)
            .unwrap_or_else(|| panic!("{who} does not list the station: {s}"));
        assert_eq!(station_peer["addr"], addr.as_str(), "{who}: {station_peer}");
        assert!(
            station_peer["last_sync"].is_string(),
            "{who}: {station_peer}"
        );
        // And the station remembers the volunteer and when (its side of a sync may end a
        // moment after the volunteer's), but no address: a one-shot sync's port is gone.
        let seen = poll(Duration::from_secs(10), || {
            status_peer(&status(&station), &v.device_id).filter(|p| p["last_sync"].is_string())
        })
        .unwrap_or_else(|| panic!("the station does not list {who} as synced"));
        assert_eq!(seen["addr"], Value::Null, "{who}: {seen}");
    }
    for (v, who) in [(&station, "station"), (&a, "A"), (&b, "B"), (&c, "C")] {
        assert_verifies(v, who);
    }

    // A new visit is pending until the next sync.
    let a3 = a.add_visit("和平里11号楼", &["--note", "新走访"]);
    assert!(pending(&a) >= 1, "a new visit is not counted as pending");
    let out = sync(&a, None);
    assert!(out["sent"].as_u64() >= Some(1), "{out}");
    assert_eq!(pending(&a), 0, "pending after syncing the new visit");
    assert!(visit_ids(&station).contains(&a3));
    drop(serve);
}

/// A visit carried to the station by another volunteer arrives as its author's, unchanged.
#[test]
fn a_visit_relayed_by_another_volunteer_arrives_as_its_authors() {
    let (station, station_serve) = serving_station();
    let addr = station_serve.addr();
    let (a, b) = (Home::new(), Home::new());
    join(&station, &a, "王芳", &[HEPING], &addr);
    join(&station, &b, "李强", &[HEPING], &addr);
    let id = a.add_visit("和平里7号", &["--note", "托人转交", "--resident", "刘奶奶"]);

    // A meets B in the field; A never reaches the station.
    let b_serve = Serve::start(&b);
    let out = sync(&a, Some(&b_serve.addr()));
    assert_eq!(out["peer"], b.device_id.as_str(), "{out}");
    assert!(
        out["sent"].as_u64() >= Some(1),
        "A sent nothing to B: {out}"
    );
    assert_eq!(b.visit(&id)["household"], "和平里7号");
    drop(b_serve);

    // B meets the station.
    sync(&b, None);
    let shown = station.visit(&id);
    assert_eq!(shown["author"], a.device_id.as_str(), "{shown}");
    assert_eq!(shown["note"], "托人转交", "{shown}");
    assert_eq!(shown["residents"], serde_json::json!(["刘奶奶"]), "{shown}");
    assert_verifies(&station, "station");
    assert_verifies(&b, "B");

    // A is not told its visit is safe until A hears it from the station itself.
    assert!(pending(&a) >= 1, "A counts its relayed visit as confirmed");
    sync(&a, None);
    assert_eq!(pending(&a), 0);
}

/// Two volunteers change a ticket's status offline; both values survive as a conflict,
/// shown alike on both laptops and at the station.
#[test]
fn concurrent_ticket_edits_show_the_conflict_everywhere() {
    let (station, serve) = serving_station();
    let addr = serve.addr();
    let (a, b) = (Home::new(), Home::new());
    join(&station, &a, "王芳", &[HEPING], &addr);
    join(&station, &b, "李强", &[HEPING], &addr);
    let t = a.open_ticket(
        "楼道灯坏了",
        &["--category", "城市管理", "--household", "和平里3号楼"],
    );
    sync(&a, None);
    sync(&b, None);
    assert_eq!(
        b.ticket(&t)["title"],
        "楼道灯坏了",
        "B did not get A's ticket"
    );

    // Offline, both change the status; B also comments.
    a.json(&["ticket", "update", &t, "--status", "resolved"]);
    b.json(&["ticket", "update", &t, "--status", "in_progress"]);
    b.json(&["ticket", "comment", &t, "已报修，等待物业"]);
    for _ in 0..2 {
        sync(&a, None);
        sync(&b, None);
    }

    let mut statuses = Vec::new();
    for (n, who) in [(&a, "A"), (&b, "B"), (&station, "station")] {
        let shown = n.ticket(&t);
        let conflicts = shown["conflicts"]
            .as_array()
            .unwrap_or_else(|| panic!("{who}: no conflicts array: {shown}"));
        let status_conflict = conflicts
            .iter()
            .find(|c| c["field"] == "status")
            .unwrap_or_else(|| panic!("{who}: no conflict on status: {shown}"));
        let mut values: Vec<String> = status_conflict["values"]
            .as_array()
            .unwrap_or_else(|| panic!("{who}: conflict values: {status_conflict}"))
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect();
        values.sort();
        assert_eq!(values, ["in_progress", "resolved"], "{who}: {shown}");
        let comments = shown["comments"].as_array().expect("comments");
        assert_eq!(comments.len(), 1, "{who}: {shown}");
        assert_eq!(comments[0]["text"], "已报修，等待物业");
        assert_eq!(comments[0]["author"], b.device_id.as_str());
        statuses.push(shown["status"].clone());
    }
    assert!(
        statuses.iter().all(|s| *s == statuses[0]),
        "the nodes show different statuses: {statuses:?}"
    );
    assert!(
        statuses[0] == "in_progress" || statuses[0] == "resolved",
        "{statuses:?}"
    );
}

/// A device that never joined cannot sync, and the station is unchanged.
#[test]
fn an_unenrolled_device_cannot_sync() {
    let (station, serve) = serving_station();
    station.add_visit("和平里社区活动室", &["--grid", HEPING]);
    let before = station.snapshot();
    let stranger = Home::new();
    stranger.add_visit("和平里99号", &["--grid", HEPING]);
    sync_refused(&stranger, Some(&serve.addr()));
    assert_eq!(station.snapshot(), before, "the station changed");
    assert_eq!(stranger.visits().len(), 1, "the stranger received records");
}

/// A revoked device is refused (saying so), and its new visit never reaches the station.
#[test]
fn a_revoked_device_is_refused() {
    let (station, serve) = serving_station();
    let addr = serve.addr();
    let c = Home::new();
    join(&station, &c, "张伟", &[XINGFU], &addr);
    let old = c.add_visit("幸福路1号", &[]);
    sync(&c, None);
    assert!(visit_ids(&station).contains(&old));

    station.json(&["revoke", &c.device_id, "--reason", "电脑丢失"]);
    let fresh = c.add_visit("幸福路2号", &["--note", "吊销之后"]);
    station.add_visit("幸福路居委会", &["--grid", XINGFU]);
    let before = station.snapshot();
    let line = sync_refused(&c, None);
    assert!(
        line.contains("revoked"),
        "the refusal does not say why: {line}"
    );
    assert_eq!(station.snapshot(), before, "the station changed");
    assert!(!visit_ids(&station).contains(&fresh));
    station.error(&["visit", "show", &fresh]);
    // Nothing came back to it either.
    assert_eq!(
        visit_ids(&c),
        set(&[&old, &fresh]),
        "the revoked device got records"
    );
    let roster = array(station.json(&["members"]));
    assert!(
        roster
            .iter()
            .any(|m| m["device_id"] == c.device_id.as_str() && m["revoked"] == true),
        "{roster:?}"
    );
}

/// A member of another site (with its own station) is refused by this site's station.
#[test]
fn a_device_of_another_site_is_refused() {
    let (station, serve) = serving_station();
    station.add_visit("和平里社区活动室", &["--grid", HEPING]);
    let before = station.snapshot();

    let other_station = Home::station();
    let stranger = Home::new();
    // Its own station's address is not needed to join; it never runs here.
    join(
        &other_station,
        &stranger,
        "陌生人",
        &[HEPING],
        "127.0.0.1:9",
    );
    stranger.add_visit("和平里99号", &[]);

    let line = sync_refused(&stranger, Some(&serve.addr()));
    assert!(
        line.contains("site"),
        "the refusal does not say why: {line}"
    );
    assert_eq!(station.snapshot(), before, "the station changed");
    assert_eq!(stranger.visits().len(), 1, "the stranger received records");
    let roster = array(station.json(&["members"]));
    assert!(
        !roster
            .iter()
            .any(|m| m["device_id"] == stranger.device_id.as_str()),
        "the stranger is in the station's roster: {roster:?}"
    );
}

/// A change whose signature was altered on the laptop's disk is refused by the station,
/// while the rest of the sync goes through.
#[test]
fn a_forged_change_is_rejected_and_the_rest_merges() {
    let (station, serve) = serving_station();
    let a = Home::new();
    join(&station, &a, "王芳", &[HEPING], &serve.addr());
    let good = a.add_visit("和平里1号", &["--note", "正常记录"]);
    let bad = a.add_visit("和平里2号", &["--note", "被篡改"]);

    // Nothing runs on A's home now: alter one signature of the second visit.
    {
        let db = Connection::open(a.store()).expect("open store.db");
        let (hash, mut sig): (Vec<u8>, Vec<u8>) = db
            .query_row(
                "SELECT c.hash, c.signature FROM changes c JOIN records r ON r.doc_id = c.doc_id
                 WHERE lower(hex(r.doc_id)) = ?1 ORDER BY c.seq LIMIT 1",
                params![bad],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("the tampered visit's change");
        assert_eq!(sig.len(), 64);
        sig[10] ^= 0x01;
        let n = db
            .execute(
                "UPDATE changes SET signature = ?1 WHERE hash = ?2",
                params![sig, hash],
            )
            .expect("update");
        assert_eq!(n, 1);
    }

    let out = sync(&a, None);
    assert!(
        out["sent"].as_u64() >= Some(2),
        "A did not send both: {out}"
    );
    let ids = visit_ids(&station);
    assert!(ids.contains(&good), "the untouched visit did not arrive");
    assert!(!ids.contains(&bad), "the station took the forged change");
    station.error(&["visit", "show", &bad]);
    assert_eq!(station.visit(&good)["note"], "正常记录");
    let s = status(&station);
    assert!(
        s["rejected"].as_u64() >= Some(1),
        "the station does not count the rejected change: {s}"
    );
    assert_verifies(&station, "station");
    // A's own verify finds the forgery.
    let out = a.run_json(&["verify"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "verify on A passes a forged store"
    );
}

/// Syncs killed part-way lose nothing: a later plain sync brings all 2,000 visits.
#[test]
fn syncs_cut_at_random_moments_then_a_full_sync_brings_everything() {
    const N: usize = 2000;
    let (station, serve) = serving_station();
    let a = Home::new();
    join(&station, &a, "王芳", &[HEPING], &serve.addr());
    let csv = a.scratch("visits.csv");
    // A volunteer imports only into its own grids.
    let rows = (1..=5).fold(generated_visits_csv("断点", N), |text, k| {
        text.replace(&format!("第{k}网格"), HEPING)
    });
    std::fs::write(&csv, rows).expect("write csv");
    let imported = a.json(&[
        "import",
        "--kind",
        "visits",
        "--format",
        "csv",
        csv.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(imported["imported"], N, "{imported}");

    let mut rng = rand::rng();
    let mut killed = 0;
    for _ in 0..4 {
        let mut child = a
            .command(true, &["sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sync");
        std::thread::sleep(Duration::from_millis(rng.random_range(50..=300)));
        if child.try_wait().expect("try_wait").is_none() {
            signal(child.id(), libc::SIGKILL);
            killed += 1;
        }
        child.wait().expect("reap sync");
    }
    eprintln!("{killed} of 4 syncs were killed part-way");

    sync(&a, None);
    let mine = visit_ids(&a);
    assert_eq!(mine.len(), N);
    let by_a = array(station.json(&["visit", "list", "--by", &a.device_id]));
    let at_station: BTreeSet<String> = by_a
        .iter()
        .map(|v| v["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(
        by_a.len(),
        N,
        "the station lists {} of A's visits",
        by_a.len()
    );
    assert_eq!(at_station, mine, "the station's visits differ from A's");
    assert_eq!(pending(&a), 0);
    // Verifying 2,000 changes is slow in a debug build: both at once.
    std::thread::scope(|s| {
        s.spawn(|| assert_verifies(&station, "station"));
        assert_verifies(&a, "A");
    });
}

/// A volunteer's running `serve` pushes a visit written by another process to the station.
#[test]
fn serve_pushes_new_visits_to_the_station() {
    let (station, station_serve) = serving_station();
    let a = Home::new();
    join(&station, &a, "王芳", &[HEPING], &station_serve.addr());
    let a_serve = Serve::start(&a);
    let id = a.add_visit("和平里6号楼", &["--note", "服务进程推送"]);
    let arrived = poll(Duration::from_secs(15), || {
        visit_ids(&station).contains(&id).then_some(())
    });
    assert!(
        arrived.is_some(),
        "the visit did not reach the station within 15 s; A's serve stderr: {}",
        a_serve.stderr()
    );
    assert_eq!(station.visit(&id)["author"], a.device_id.as_str());
    drop(a_serve);
}

/// `--json serve` prints `{"event": "listening", "addr"}` first, and only JSON objects.
#[test]
fn json_serve_prints_listening_event_first() {
    let station = Home::station();
    let serve = Serve::start_json(&station);
    assert_eq!(serve.addr.ip().to_string(), "127.0.0.1");
    assert_ne!(serve.addr.port(), 0, "the real port is printed");
    // It really listens there.
    let a = Home::new();
    join(&station, &a, "王芳", &[HEPING], &serve.addr());
    a.add_visit("和平里1号", &[]);
    sync(&a, None);
    let (status, rest) = serve.stop_with(libc::SIGTERM);
    assert!(status.success(), "{status:?}");
    for line in rest {
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("--json serve printed a non-JSON line ({e}): {line:?}"));
        assert!(v["event"].is_string(), "a line without \"event\": {line}");
    }
}

/// SIGTERM stops a station's `serve` cleanly (exit 0), and the home is usable after.
#[test]
fn sigterm_stops_serve_cleanly() {
    let (station, serve) = serving_station();
    let a = Home::new();
    join(&station, &a, "王芳", &[HEPING], &serve.addr());
    a.add_visit("和平里1号", &[]);
    sync(&a, None);
    let (status, _) = serve.stop_with(libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "serve after SIGTERM: {status:?}");
    assert_verifies(&station, "station");
    assert_eq!(station.visits().len(), 1);
}

/// SIGINT stops a volunteer's `serve` (connected to its station) cleanly, exit 0.
#[test]
fn sigint_stops_serve_cleanly() {
    let (station, station_serve) = serving_station();
    let a = Home::new();
    join(&station, &a, "王芳", &[HEPING], &station_serve.addr());
    a.add_visit("和平里1号", &[]);
    let serve = Serve::start(&a);
    // Wait until it has synced with the station, so a connection is open when stopped.
    let synced = poll(Duration::from_secs(20), || {
        (!status(&a)["station_receipt"].is_null()).then_some(())
    });
    assert!(
        synced.is_some(),
        "A's serve never synced with the station; stderr: {}",
        serve.stderr()
    );
    let (status, _) = serve.stop_with(libc::SIGINT);
    assert_eq!(status.code(), Some(0), "serve after SIGINT: {status:?}");
    assert_verifies(&a, "A");
    drop(station_serve);
}

// ---------------------------------------------------------------------------------------
// An ordinary day: what `status` says is pending, and what each end counts
// ---------------------------------------------------------------------------------------

impl Serve {
    /// The next `{"event": "synced"}` line of a `--json` serve for `peer` (failed syncs
    /// and other peers' lines are skipped).
    fn next_synced(&self, peer: &str) -> Value {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "serve printed no sync with {peer}; stderr: {}",
                    self.stderr()
                )
            });
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("serve --json printed a non-JSON line ({e}): {line}"));
            if v["event"] == "synced" && v["peer"] == peer {
                return v;
            }
        }
    }
}

/// `v` syncs with the station (served with `--json`): both ends count the same changes
/// each way; right after, nothing is pending, and a second sync moves nothing. Returns
/// the first sync's counts as the laptop printed them.
fn sync_with_station_exactly(v: &Home, who: &str, station: &Serve) -> Value {
    let addr = station.addr();
    let mine = sync(v, Some(&addr));
    let theirs = station.next_synced(&v.device_id);
    assert_eq!(mine["rejected"], 0, "{who}: {mine}");
    assert_eq!(
        (&mine["sent"], &mine["received"]),
        (&theirs["received"], &theirs["sent"]),
        "{who} and the station count the same sync differently: {who} {mine}, station {theirs}"
    );
    assert_eq!(pending(v), 0, "{who}: pending right after a sync ({mine})");
    let again = sync(v, Some(&addr));
    let theirs_again = station.next_synced(&v.device_id);
    assert_eq!(
        (&again["sent"], &again["received"]),
        (&json_zero(), &json_zero()),
        "{who}: a second sync moved changes again: {again}"
    );
    assert_eq!(
        (&theirs_again["sent"], &theirs_again["received"]),
        (&json_zero(), &json_zero()),
        "the station, at {who}'s second sync: {theirs_again}"
    );
    assert_eq!(pending(v), 0, "{who}: pending after a second sync");
    mine
}

fn json_zero() -> Value {
    Value::from(0u64)
}

/// A day of ordinary work: records of both kinds made before joining and after, each
/// edited and linked in between others, a laptop that meets another laptop before the
/// station. After each sync with the station nothing is pending and a second sync sends
/// nothing; the laptop and the station count each sync alike.
#[test]
fn an_ordinary_day_leaves_nothing_pending_and_both_ends_count_alike() {
    let station = Home::station();
    let serve = Serve::start_json(&station);
    let addr = serve.addr();
    let (a, b) = (Home::new(), Home::new());

    // Before joining: a visit and a ticket, each edited after the other was made.
    let v0 = a.add_visit("和平里2号楼", &["--grid", HEPING, "--note", "入户"]);
    let t0 = a.open_ticket("楼道灯坏了", &["--grid", HEPING]);
    a.json(&["visit", "edit", &v0, "--note", "灯已报修"]);
    a.json(&["ticket", "update", &t0, "--status", "in_progress"]);
    join(&station, &a, "张阿姨", &[HEPING], &addr);
    // b is told of no reachable station: it meets a first.
    join(&station, &b, "李叔", &[HEPING], "127.0.0.1:9");

    // Open a ticket, log a visit, update the ticket; link them; comment.
    let t1 = a.open_ticket("漏水", &["--category", "城市管理"]);
    let v1 = a.add_visit("和平里5号楼302室", &["--note", "厨房漏水"]);
    a.json(&["ticket", "update", &t1, "--status", "in_progress"]);
    a.json(&["visit", "edit", &v1, "--ticket", &t1]);
    a.json(&["ticket", "comment", &t1, "已联系物业"]);
    let first = sync_with_station_exactly(&a, "a", &serve);
    assert!(first["sent"].as_u64().is_some_and(|n| n >= 9), "{first}");

    // b works, then meets a (a dials b's serve), before either meets the station.
    let bv = b.add_visit("和平里7号楼", &["--note", "低保复核"]);
    let bt = b.open_ticket("噪音投诉", &[]);
    b.json(&["visit", "edit", &bv, "--ticket", &bt]);
    {
        let b_serve = Serve::start(&b);
        sync(&a, Some(&b_serve.addr()));
    }
    a.json(&["ticket", "update", &bt, "--priority", "high"]);
    b.json(&["ticket", "comment", &t1, "我明天去看"]);
    a.json(&["visit", "edit", &v1, "--needs", "维修"]);

    // a brings b's records to the station first, then b comes with the same and more.
    sync_with_station_exactly(&a, "a", &serve);
    sync_with_station_exactly(&b, "b", &serve);
    // a receives what only b had.
    let last = sync_with_station_exactly(&a, "a", &serve);
    assert!(last["received"].as_u64().is_some_and(|n| n >= 1), "{last}");
    assert_eq!(a.ticket(&t1)["comments"].as_array().map(Vec::len), Some(2));
    assert_eq!(visit_ids(&a), visit_ids(&station));
    assert_eq!(visit_ids(&b), visit_ids(&station));
}

// ---------------------------------------------------------------------------------------
// Which addresses a serving node remembers
// ---------------------------------------------------------------------------------------

/// A one-shot `sync` comes from a port that is gone once it exits: the station does not
/// remember it as the laptop's address, lists no address for it, and never dials it back.
/// A laptop that runs `serve` dials from where it listens: that address is remembered.
#[test]
fn serve_remembers_only_addresses_peers_listen_on() {
    let station = Home::station();
    // The station tries its peers every second (the default is every 30).
    std::fs::write(
        station.path().join("config.toml"),
        "sync_interval_secs = 1\n",
    )
    .expect("write config.toml");
    let serve = Serve::start_json(&station);
    let addr = serve.addr();
    let (a, b) = (Home::new(), Home::new());
    join(&station, &a, "张阿姨", &[HEPING], &addr);
    join(&station, &b, "李叔", &[HEPING], &addr);

    a.add_visit("和平里1号楼", &[]);
    sync(&a, None);
    sync(&a, None);
    let a_synced = Instant::now();
    let peer = status_peer(&status(&station), &a.device_id).expect("the station lists a");
    assert!(peer["last_sync"].is_string(), "{peer}");
    assert_eq!(
        peer["addr"],
        Value::Null,
        "a one-shot sync's port remembered: {peer}"
    );

    // b serves: its syncs with the station come from where it listens.
    let b_serve = Serve::start(&b);
    let listening = b_serve.addr();
    let remembered = poll(COMMAND_TIMEOUT, || {
        status_peer(&status(&station), &b.device_id)
            .filter(|p| p["addr"].is_string())
            .map(|p| p["addr"].clone())
    });
    assert_eq!(remembered, Some(Value::from(listening.clone())));

    // A few rounds of the station's peer loop: it dials b where b listens, never a.
    let a_device = a.device_id.clone();
    let synced_b = poll(COMMAND_TIMEOUT, || {
        let line = serve.lines.recv_timeout(Duration::from_millis(100)).ok()?;
        let v: Value = serde_json::from_str(&line).expect("serve --json prints JSON");
        assert!(
            !(v["event"] == "failed" && v["peer"] == a_device.as_str()),
            "the station dialed a's one-shot port: {v}"
        );
        (v["event"] == "synced" && v["peer"] == b.device_id.as_str()).then_some(v)
    });
    assert!(synced_b.is_some(), "the station never synced with b");
    // A dial to a's gone port would fail at the connect timeout (10 s).
    std::thread::sleep(Duration::from_secs(13).saturating_sub(a_synced.elapsed()));
    drop(b_serve);
    let (_, rest) = serve.stop_with(libc::SIGTERM);
    for line in rest {
        let v: Value = serde_json::from_str(&line).expect("serve --json prints JSON");
        assert!(
            !(v["event"] == "failed" && v["peer"] == a_device.as_str()),
            "the station dialed a's one-shot port: {v}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Records that leave a laptop's scope
// ---------------------------------------------------------------------------------------

/// Whether `home`'s store file or its write-ahead log holds `marker`'s bytes.
fn store_holds(home: &Home, marker: &str) -> bool {
    let db = home.store();
    let wal = db.with_file_name("store.db-wal");
    [db, wal].iter().any(|p| {
        std::fs::read(p)
            .is_ok_and(|bytes| bytes.windows(marker.len()).any(|w| w == marker.as_bytes()))
    })
}

/// A visit moved to another grid and a ticket reassigned to another grid's volunteer are
/// gone from the old grid's laptop after its next sync: from its lists, its `show`, and
/// the bytes of its store and log; `status` says how many were removed. The laptop's own
/// comment on the ticket reached the station first, and the new grid's laptop gets both.
#[test]
fn records_that_leave_a_laptops_grid_are_gone_from_it_after_its_next_sync() {
    let (station, serve) = serving_station();
    let addr = serve.addr();
    let (a, b) = (Home::new(), Home::new());
    join(&station, &a, "张阿姨", &[HEPING], &addr);
    join(&station, &b, "李叔", &[XINGFU], &addr);
    let tag: u64 = rand::rng().random();
    let (visit_marker, ticket_marker, comment_marker) = (
        format!("VISIT-{tag:016x}"),
        format!("TICKET-{tag:016x}"),
        format!("COMMENT-{tag:016x}"),
    );

    // The station logs a visit in a's grid, and opens a ticket in b's grid assigned to a.
    let v = station.add_visit(
        "和平里9号楼101室",
        &["--grid", HEPING, "--note", visit_marker.as_str()],
    );
    let t = station.open_ticket(ticket_marker.as_str(), &["--grid", XINGFU]);
    station.json(&["ticket", "update", &t, "--assign", a.device_id.as_str()]);
    let own = a.add_visit("和平里1号楼", &["--note", "自己的走访"]);
    sync(&a, None);
    assert!(visit_ids(&a).contains(&v));
    assert_eq!(a.ticket(&t)["title"], ticket_marker.as_str());
    a.json(&["ticket", "comment", &t, comment_marker.as_str()]);
    for m in [&visit_marker, &ticket_marker, &comment_marker] {
        assert!(
            store_holds(&a, m),
            "a's store does not hold {m} to begin with"
        );
    }
    assert_eq!(status(&a)["purged"], 0);
    // b, of the other grid, holds the ticket (its grid) but not the visit.
    sync(&b, None);
    assert!(!visit_ids(&b).contains(&v));
    assert!(!store_holds(&b, &visit_marker));

    // The visit was in the wrong grid; the ticket is b's work.
    station.json(&["visit", "edit", &v, "--grid", XINGFU]);
    station.json(&["ticket", "update", &t, "--assign", b.device_id.as_str()]);
    sync(&a, None);

    assert_eq!(visit_ids(&a), set(&[&own]), "a still lists a moved visit");
    assert!(a.tickets().is_empty(), "a still lists a reassigned ticket");
    a.error(&["visit", "show", &v]);
    a.error(&["ticket", "show", &t]);
    for m in [&visit_marker, &ticket_marker, &comment_marker] {
        assert!(!store_holds(&a, m), "a's store or log still holds {m}");
    }
    let s = status(&a);
    assert_eq!(s["purged"], 2, "{s}");
    assert_eq!(s["records"]["visits"], 1, "{s}");
    assert_eq!(s["pending_to_station"], 0, "{s}");
    let text = a.text(&["status"]);
    assert!(
        text.contains("2 records"),
        "status does not say what was removed: {text}"
    );
    assert_verifies(&a, "a");

    // The station holds a's comment; b gets both records, with it.
    let comments = station.ticket(&t)["comments"].clone();
    assert_eq!(comments[0]["text"], comment_marker.as_str(), "{comments}");
    sync(&b, None);
    assert!(visit_ids(&b).contains(&v));
    assert_eq!(b.ticket(&t)["comments"][0]["text"], comment_marker.as_str());

    // They do not come back to a.
    let again = sync(&a, None);
    assert_eq!(again["received"], 0, "{again}");
    assert_eq!(visit_ids(&a), set(&[&own]));
    assert_eq!(status(&a)["purged"], 2);
    drop(serve);
}

// A test binary of its own, not a module of `it`: it makes and deletes network namespaces
// (state of the whole machine, needing root), so that it can be run, or left out, by
// itself: `cargo test -p yizhan-cli --test discovery`.

//! Local network discovery (mDNS), black-box: `yizhan serve` processes run inside a
//! network namespace made for the test (only its own loopback, so no packet leaves it and
//! no other test's nodes are seen), and find each other with no peer or station address
//! given anywhere.
//!
//! Making a namespace needs root and `ip netns`. Without them the tests print why and
//! pass, unless `YIZHAN_REQUIRE_NETNS=1` (CI sets it), which turns that into a failure.

// The helpers of `it`, where all of them are used (and dead code is caught); this
// binary uses a few.
#[allow(dead_code)]
#[path = "it/util.rs"]
mod util;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use util::*;

/// How long discovery plus a sync may take on a busy 2-core machine (debug build).
const WAIT: Duration = Duration::from_secs(90);
const GRID: &str = "和平里";

/// A network namespace with its loopback up; deleted on drop.
struct Netns(String);

impl Netns {
    /// A new namespace, or `None` (and why) when this machine cannot make one.
    fn new() -> Option<Netns> {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("yzdisc-{}-{n}", std::process::id());
        let why = match Command::new("ip").args(["netns", "add", &name]).output() {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(String::from_utf8_lossy(&o.stderr).trim().to_string()),
            Err(e) => Some(format!("cannot run ip: {e}")),
        };
        if let Some(why) = why {
            let msg =
                format!("cannot create a network namespace (root and `ip netns` needed): {why}");
            if std::env::var("YIZHAN_REQUIRE_NETNS").as_deref() == Ok("1") {
                panic!("YIZHAN_REQUIRE_NETNS=1 but {msg}");
            }
            eprintln!("skipping: {msg}");
            return None;
        }
        let ns = Netns(name);
        let up = Command::new("ip")
            .args(["-n", &ns.0, "link", "set", "lo", "up"])
            .status()
            .expect("run ip");
        assert!(up.success(), "cannot bring up lo in {}", ns.0);
        Some(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// `yizhan --json serve --listen 127.0.0.1:0 EXTRA...` inside `ns`; its stdout lines as
/// JSON values.
struct Serve {
    child: Child,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    name: &'static str,
}

impl Serve {
    fn start(ns: &Netns, home: &Home, name: &'static str, extra: &[&str]) -> Serve {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend(extra);
        let inner = home.command(true, &args);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.0])
            .arg(inner.get_program())
            .args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ip netns exec yizhan serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("serve --json printed a non-JSON line ({e}): {line}")
                });
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let serve = Serve {
            child,
            lines,
            seen: Vec::new(),
            name,
        };
        let first = serve
            .lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("{name}: serve printed nothing"));
        assert_eq!(first["event"], "listening", "{name}: {first}");
        serve
    }

    /// Events printed so far.
    fn events(&mut self) -> &[Value] {
        while let Ok(v) = self.lines.try_recv() {
            self.seen.push(v);
        }
        &self.seen
    }

    /// Stops it with SIGTERM and returns every event it printed.
    fn stop(mut self) -> Vec<Value> {
        #[allow(unsafe_code)]
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our child
        // (`ip netns exec` execs yizhan in place).
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("{}: serve did not stop after SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The reader thread ends with the pipe.
        while let Ok(v) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(v);
        }
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Enrolls `v` at `station` for GRID and joins it with no station address at all.
fn join_without_address(station: &Home, v: &Home, name: &str) {
    let token = station.json(&[
        "enroll",
        v.device_id.as_str(),
        "--name",
        name,
        "--grid",
        GRID,
    ])["token"]
        .as_str()
        .expect("token")
        .to_string();
    let joined = v.json(&["join", token.as_str()]);
    assert_eq!(joined["role"], "volunteer", "{joined}");
    let cfg = v.json(&["config"]);
    assert_eq!(
        cfg["station"]["value"],
        Value::Null,
        "a station address is known: {cfg}"
    );
}

/// Waits until `cond` holds, polling; panics with `what` after [`WAIT`].
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn has_visit(home: &Home, id: &str) -> bool {
    home.visits().iter().any(|v| v["id"] == id)
}

/// Events of `kind` about `device` (as `peer` or `device`).
fn about<'a>(events: &'a [Value], kind: &str, device: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event"] == kind && (e["peer"] == device || e["device"] == device))
        .collect()
}

fn mentions(events: &[Value], device: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["peer"] == device || e.to_string().contains(device))
        .cloned()
        .collect()
}

#[test]
fn nodes_of_one_site_find_each_other_and_sync_and_another_site_is_ignored() {
    let Some(ns) = Netns::new() else { return };
    let station = Home::station();
    let (a, b) = (Home::new(), Home::new());
    join_without_address(&station, &a, "甲");
    join_without_address(&station, &b, "乙");
    // Another site's station on the same network.
    let foreign = Home::station();
    let visit = a.add_visit("3-2-101", &["--note", "发现"]);

    let mut sa = Serve::start(&ns, &a, "a", &[]);
    let sb = Serve::start(&ns, &b, "b", &[]);
    let mut sf = Serve::start(&ns, &foreign, "foreign", &[]);

    // Volunteer to volunteer, no address typed anywhere.
    wait_until("b holds a's visit", || has_visit(&b, &visit));
    // The foreign node has been seen and judged (so "never dialled" below means something).
    wait_until("a has ignored the foreign node", || {
        !about(sa.events(), "ignored", &foreign.device_id).is_empty()
    });
    wait_until("the foreign node has ignored a", || {
        !about(sf.events(), "ignored", &a.device_id).is_empty()
    });

    // The station joins the network last: found without an address, it gets the visit.
    let ss = Serve::start(&ns, &station, "station", &[]);
    wait_until("the station holds a's visit", || {
        has_visit(&station, &visit)
    });
    wait_until("a has synced with the station", || {
        !about(sa.events(), "synced", &station.device_id).is_empty()
    });

    let (ea, eb) = (sa.stop(), sb.stop());
    let (es, ef) = (ss.stop(), sf.stop());

    for (name, events, other) in [("a", &ea, &b), ("b", &eb, &a)] {
        assert!(
            !about(events, "discovered", &other.device_id).is_empty(),
            "{name} never discovered its peer: {events:?}"
        );
        assert!(
            !about(events, "synced", &other.device_id).is_empty(),
            "{name} never synced with its peer: {events:?}"
        );
    }
    let ignored = about(&ea, "ignored", &foreign.device_id);
    assert!(
        ignored
            .iter()
            .all(|e| e["reason"].as_str().unwrap_or("").contains("another site")),
        "{ignored:?}"
    );
    // The other site's node is never dialled, discovered or synced with, by anyone.
    for (name, events) in [("a", &ea), ("b", &eb), ("station", &es)] {
        let seen: Vec<_> = mentions(events, &foreign.device_id)
            .into_iter()
            .filter(|e| e["event"] != "ignored")
            .collect();
        assert!(
            seen.is_empty(),
            "{name} dealt with the foreign node: {seen:?}"
        );
    }
    // And it dialled no one, nor did anyone reach it: it printed no sync of any kind.
    let busy: Vec<_> = ef
        .iter()
        .filter(|e| ["synced", "failed", "discovered"].contains(&e["event"].as_str().unwrap_or("")))
        .collect();
    assert!(
        busy.is_empty(),
        "the foreign node synced or was dialled: {busy:?}"
    );
    assert_eq!(foreign.json(&["status"])["peers"], serde_json::json!([]));
    // Each volunteer remembers the other at the address discovery found.
    let status = a.json(&["status"]);
    let pb = status_peer(&status, &b.device_id)
        .unwrap_or_else(|| panic!("a does not list b as a peer: {status}"));
    assert!(
        pb["addr"]
            .as_str()
            .is_some_and(|s| s.starts_with("127.0.0.1:")),
        "{pb}"
    );
    assert!(
        status_peer(&status, &foreign.device_id).is_none(),
        "a lists the foreign node as a peer"
    );
}

#[test]
fn discovery_can_be_turned_off_by_flag_or_config_file() {
    let Some(ns) = Netns::new() else { return };
    let station = Home::station();
    let [off_flag, off_file, c, d] = [Home::new(), Home::new(), Home::new(), Home::new()];
    for (v, name) in [(&off_flag, "丙"), (&off_file, "丁"), (&c, "戊"), (&d, "己")] {
        join_without_address(&station, v, name);
    }
    std::fs::write(off_file.path().join("config.toml"), "discovery = false\n").expect("write");
    assert_eq!(
        off_file.json(&["config"])["discovery"]["source"],
        "config file"
    );
    let hidden = off_flag.add_visit("1-1-101", &[]);

    let s_flag = Serve::start(&ns, &off_flag, "off-flag", &["--no-discovery"]);
    let s_file = Serve::start(&ns, &off_file, "off-file", &[]);
    let mut sc = Serve::start(&ns, &c, "c", &[]);
    let sd = Serve::start(&ns, &d, "d", &[]);
    // A positive control on the same network: c and d do find each other.
    wait_until("c has synced with d", || {
        !about(sc.events(), "synced", &d.device_id).is_empty()
    });
    let (ec, ed) = (sc.stop(), sd.stop());
    let (e_flag, e_file) = (s_flag.stop(), s_file.stop());

    for (name, events) in [("c", &ec), ("d", &ed)] {
        for off in [&off_flag, &off_file] {
            let seen = mentions(events, &off.device_id);
            assert!(
                seen.is_empty(),
                "{name} found a node without discovery: {seen:?}"
            );
        }
    }
    for (name, events) in [("--no-discovery", &e_flag), ("discovery = false", &e_file)] {
        let seen: Vec<_> = events
            .iter()
            .filter(|e| e["event"] != "listening")
            .collect();
        assert!(seen.is_empty(), "{name}: {seen:?}");
    }
    assert!(!has_visit(&c, &hidden) && !has_visit(&d, &hidden));
}

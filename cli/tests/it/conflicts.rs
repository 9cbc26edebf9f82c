//! `conflicts` and `resolve` end to end: a station and two volunteers, each a real `yizhan`
//! process with its own home, syncing over QUIC on loopback. A field edited concurrently on
//! two laptops is listed on every node with both values and their authors; `resolve` on one
//! node settles it everywhere once synced. Bad input is one line, exit 1, nothing changed.

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::util::*;
use serde_json::Value;

const HEPING: &str = "和平里";
/// How long `serve` may take to print its first line, or a sync to finish.
const TIMEOUT: Duration = Duration::from_secs(90);

/// Runs `cmd` to completion, killing it if it outlives [`TIMEOUT`].
fn run_with_timeout(mut cmd: Command, what: &str) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn yizhan");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let deadline = Instant::now() + TIMEOUT;
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(out) => out.expect("wait for yizhan"),
        Err(_) => {
            #[allow(unsafe_code)]
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is our child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            panic!("`yizhan {what}` still ran after {TIMEOUT:?} (killed)");
        }
    }
}

/// `sync --json` with the station; asserts success.
fn sync(home: &Home) {
    let out = run_with_timeout(home.command(true, &["sync"]), "sync");
    assert_success(&out, &["sync"]);
}

fn join(station: &Home, v: &Home, name: &str, addr: &str) {
    let token = station.json(&[
        "enroll",
        v.device_id.as_str(),
        "--name",
        name,
        "--grid",
        HEPING,
    ])["token"]
        .as_str()
        .expect("enroll printed a token")
        .to_string();
    v.json(&["join", token.as_str(), "--station", addr]);
}

/// `conflicts --json` as an array.
fn conflicts(home: &Home) -> Vec<Value> {
    array(home.json(&["conflicts"]))
}

/// The (value, author) pairs of one conflict, sorted.
fn values_and_authors(c: &Value) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = c["values"]
        .as_array()
        .unwrap_or_else(|| panic!("values is not an array: {c}"))
        .iter()
        .map(|v| {
            assert_eq!(keys(v), sorted(&["value", "author", "at"]), "{v}");
            // Panics unless `at` is an RFC 3339 time.
            assert!(
                rfc3339_secs(v["at"].as_str().unwrap_or_default()) > 0,
                "{c}"
            );
            (
                v["value"].as_str().expect("value").to_string(),
                v["author"].as_str().expect("author").to_string(),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

/// Two volunteers set one ticket's status offline; after syncing, every node lists the
/// conflict with both values and their authors. A volunteer may not resolve a conflict in
/// someone else's visit log; bad input changes nothing; `resolve` on one volunteer settles
/// the ticket's conflict on every node once synced, with the new change in the history.
#[test]
fn a_conflict_is_listed_everywhere_and_one_resolve_settles_it_everywhere() {
    let station = Home::station();
    let serve = Serving::start(&station);
    let (a, b) = (Home::new(), Home::new());
    join(&station, &a, "王芳", &serve.addr);
    join(&station, &b, "李强", &serve.addr);

    let t = a.open_ticket("楼道灯坏了", &["--category", "城市管理"]);
    let v = a.add_visit("和平里3号楼201室", &["--note", "独居老人"]);
    sync(&a);
    sync(&b);
    assert_eq!(
        b.ticket(&t)["title"],
        "楼道灯坏了",
        "B did not get A's ticket"
    );
    for n in [&a, &b, &station] {
        assert_eq!(conflicts(n), Vec::<Value>::new(), "a conflict before any");
    }

    // Offline: both volunteers set the ticket's status; A and the station both edit the
    // note of A's visit log.
    a.json(&["ticket", "update", &t, "--status", "resolved"]);
    b.json(&["ticket", "update", &t, "--status", "in_progress"]);
    a.json(&["visit", "edit", &v, "--note", "已送药"]);
    station.json(&["visit", "edit", &v, "--note", "需要轮椅"]);
    for _ in 0..2 {
        sync(&a);
        sync(&b);
    }

    for (n, who) in [(&a, "A"), (&b, "B"), (&station, "station")] {
        let all = conflicts(n);
        assert_eq!(all.len(), 2, "{who}: {all:?}");
        for c in &all {
            assert_eq!(
                keys(c),
                sorted(&["record", "kind", "field", "values"]),
                "{who}: {c}"
            );
        }
        let ticket = all
            .iter()
            .find(|c| c["record"] == t.as_str())
            .unwrap_or_else(|| panic!("{who}: the ticket's conflict is not listed: {all:?}"));
        assert_eq!(ticket["kind"], "ticket");
        assert_eq!(ticket["field"], "status");
        assert_eq!(
            values_and_authors(ticket),
            [
                ("in_progress".to_string(), b.device_id.clone()),
                ("resolved".to_string(), a.device_id.clone()),
            ],
            "{who}"
        );
        // The value listed first is the one `ticket show` shows.
        assert_eq!(
            ticket["values"][0]["value"],
            n.ticket(&t)["status"],
            "{who}"
        );
        let visit = all
            .iter()
            .find(|c| c["record"] == v.as_str())
            .unwrap_or_else(|| panic!("{who}: the visit's conflict is not listed: {all:?}"));
        assert_eq!(visit["kind"], "visit");
        assert_eq!(visit["field"], "note");
        assert_eq!(
            values_and_authors(visit),
            [
                ("已送药".to_string(), a.device_id.clone()),
                ("需要轮椅".to_string(), station.device_id.clone()),
            ],
            "{who}"
        );
        assert_eq!(n.json(&["status"])["conflicts"], 2, "{who}: status count");
    }

    // For people: one row per value, with the authors' names where known.
    let human = station.text(&["conflicts"]);
    for needle in [
        t.as_str(),
        "status",
        "resolved",
        "in_progress",
        "王芳",
        "李强",
    ] {
        assert!(human.contains(needle), "no {needle:?} in:\n{human}");
    }

    // B may not settle the conflict in A's visit log; nothing changes.
    let before = (b.snapshot(), b.ticket(&t), b.visit(&v));
    let err = b.error(&["resolve", &v[..8], "note", "已送药"]);
    assert!(err.contains("author or a station"), "{err}");
    // Bad input: unknown field, a value the field does not take, an unknown id, a field
    // with no conflict. Each is one line, exit 1, and nothing is written.
    let err = b.error(&["resolve", &t, "colour", "red"]);
    assert!(err.contains("no field 'colour'"), "{err}");
    let err = b.error(&["resolve", &t, "status", "done"]);
    assert!(err.contains("unknown status 'done'"), "{err}");
    let err = b.error(&["resolve", "0123456789abcdef", "status", "closed"]);
    assert!(err.contains("no visit or ticket matches"), "{err}");
    let err = b.error(&["resolve", &t, "priority", "high"]);
    assert!(err.contains("no conflict in 'priority'"), "{err}");
    let err = b.error(&["resolve", &t, "opened_at", "2026-01-01"]);
    assert!(err.contains("cannot be changed"), "{err}");
    let after = (b.snapshot(), b.ticket(&t), b.visit(&v));
    assert_eq!(after, before, "a refused resolve changed the store");
    assert_eq!(conflicts(&b).len(), 2);

    // B settles the ticket (by a prefix of its id), the station settles the visit.
    let done = b.json(&["resolve", &t[..8], "status", "resolved"]);
    assert_eq!(
        done,
        serde_json::json!({"id": t, "field": "status", "value": "resolved"})
    );
    // The station names the field as its Chinese conflicts table shows it: 备注.
    let done = station.json(&["--lang", "zh", "resolve", &v, "备注", "已送药，需要轮椅"]);
    assert_eq!(done["field"], "note");
    assert_eq!(done["value"], "已送药，需要轮椅");
    assert_eq!(
        conflicts(&b).len(),
        1,
        "B still lists the ticket's conflict"
    );
    for _ in 0..2 {
        sync(&b);
        sync(&a);
    }

    for (n, who) in [(&a, "A"), (&b, "B"), (&station, "station")] {
        assert_eq!(
            conflicts(n),
            Vec::<Value>::new(),
            "{who} still lists conflicts"
        );
        assert_eq!(n.json(&["status"])["conflicts"], 0, "{who}: status count");
        assert_eq!(
            n.text(&["conflicts"]).trim(),
            "No conflicts.",
            "{who}: human output"
        );
        let shown = n.ticket(&t);
        assert_eq!(shown["status"], "resolved", "{who}: {shown}");
        assert_eq!(shown["conflicts"], serde_json::json!([]), "{who}");
        // The resolving change is in the history, by B, naming the field and value.
        let last = shown["history"]
            .as_array()
            .and_then(|h| h.last())
            .cloned()
            .expect("history");
        assert_eq!(last["author"], b.device_id.as_str(), "{who}: {last}");
        assert_eq!(last["author_name"], "李强", "{who}: {last}");
        // Resolving a ticket also records when (the report's time to resolve); a time equal
        // to the one already there, to the second, is no change and is not listed.
        let changes = last["changes"].as_array().expect("changes");
        assert_eq!(
            changes[0],
            serde_json::json!({"field": "status", "value": "resolved"}),
            "{who}: {last}"
        );
        assert!(
            changes[1..]
                == [serde_json::json!({"field": "resolved_at", "value": shown["resolved_at"]})]
                || changes.len() == 1,
            "{who}: {last}"
        );
        let visit = n.visit(&v);
        assert_eq!(visit["note"], "已送药，需要轮椅", "{who}: {visit}");
        assert_eq!(visit["conflicts"], serde_json::json!([]), "{who}");
    }
    drop(serve);
}

/// On a node with no conflicts, `conflicts` prints `[]` (or a sentence), and `resolve`
/// refuses every bad argument with one line and exit 1, changing nothing.
#[test]
fn resolve_refuses_bad_input_on_a_single_node() {
    let home = Home::new();
    let t = home.open_ticket("水管漏水", &["--grid", HEPING]);
    let v = home.add_visit("和平里5号楼", &["--grid", HEPING]);
    assert_eq!(conflicts(&home), Vec::<Value>::new());
    assert_eq!(home.text(&["conflicts"]).trim(), "No conflicts.");
    let before = (home.snapshot(), home.ticket(&t), home.visit(&v));
    for (args, needle) in [
        (
            vec!["resolve", t.as_str(), "status", "closed"],
            "no conflict",
        ),
        (
            vec!["resolve", t.as_str(), "colour", "red"],
            "no field 'colour'",
        ),
        (
            vec!["resolve", v.as_str(), "title", "x"],
            "a visit has no field 'title'",
        ),
        (
            vec!["resolve", t.as_str(), "category", "welfare"],
            "unknown category",
        ),
        (
            vec!["resolve", t.as_str(), "priority", "asap"],
            "unknown priority",
        ),
        (
            vec!["resolve", v.as_str(), "visited_at", "yesterday"],
            "malformed time",
        ),
        (
            vec!["resolve", t.as_str(), "title", "  "],
            "title must not be empty",
        ),
        (
            vec!["resolve", "ffffffffff", "status", "closed"],
            "no visit or ticket",
        ),
        (vec!["resolve", "abc", "status", "closed"], "too short"),
        (
            vec!["resolve", "not-an-id", "status", "closed"],
            "not a record id",
        ),
    ] {
        let err = home.error(&args);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let after = (home.snapshot(), home.ticket(&t), home.visit(&v));
    assert_eq!(after, before, "a refused resolve changed the store");
    // A missing argument is a usage error.
    home.usage_error(&["resolve", t.as_str(), "status"]);
}

//! Bad input: every refused command exits 1 (2 for usage errors) with one `error: ` line
//! on stderr, nothing on stdout under `--json`, and leaves the store exactly as it was.

use std::collections::BTreeSet;

use crate::util::*;
use serde_json::Value;

/// A home with one visit and one ticket (with a comment, so there is some history).
fn populated() -> (Home, String, String) {
    let home = Home::new();
    let t = home.open_ticket(
        "楼道灯坏了",
        &["--category", "城市管理", "--grid", "第三网格"],
    );
    home.json(&["ticket", "comment", &t, "已报修"]);
    let v = home.add_visit(
        "幸福里3号楼201室",
        &[
            "--grid",
            "第三网格",
            "--category",
            "为民服务",
            "--note",
            "独居老人",
            "--resident",
            "王秀英",
            "--at",
            "2026-11-20",
            "--ticket",
            &t,
        ],
    );
    (home, v, t)
}

/// Everything a user can see of the records: both lists and every record shown whole
/// (with its history), so that a half-written change would show.
fn state(home: &Home) -> Value {
    let (visits, tickets) = home.snapshot();
    let mut shown = Vec::new();
    for v in visits.as_array().expect("visits") {
        shown.push(home.visit(v["id"].as_str().expect("id")));
    }
    for t in tickets.as_array().expect("tickets") {
        shown.push(home.ticket(t["id"].as_str().expect("id")));
    }
    serde_json::json!({"visits": visits, "tickets": tickets, "shown": shown})
}

/// Asserts each command fails with exit 1 and one error line and changes nothing.
fn assert_refused(home: &Home, cases: &[Vec<String>]) {
    let before = state(home);
    for args in cases {
        home.error(args);
    }
    assert_eq!(state(home), before, "a refused command changed the store");
}

fn case(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn unknown_category_is_refused() {
    let (home, v, t) = populated();
    let mut cases = Vec::new();
    for bad in ["养老服务", "unknown", "poverty_relief", "扶贫", ""] {
        cases.push(case(&[
            "visit",
            "add",
            "--household",
            "甲",
            "--category",
            bad,
        ]));
        cases.push(case(&[
            "ticket",
            "open",
            "--title",
            "乙",
            "--category",
            bad,
        ]));
        cases.push(case(&["visit", "edit", &v, "--category", bad]));
        cases.push(case(&["visit", "list", "--category", bad]));
        cases.push(case(&["ticket", "list", "--category", bad]));
    }
    assert_refused(&home, &cases);
    let _ = t;
}

#[test]
fn malformed_time_is_refused() {
    let (home, _v, _t) = populated();
    let mut cases = Vec::new();
    for bad in [
        "2026-13-01",
        "2026-02-30",
        "2026-11-20T25:00:00Z",
        "2026-11-20T09:30",
        "2026/11/20",
        "20261120",
        "yesterday",
        "11-20-2026",
        "2026-11-20T09:30:00+25:00",
        "",
    ] {
        cases.push(case(&["visit", "add", "--household", "甲", "--at", bad]));
        cases.push(case(&["visit", "list", "--since", bad]));
        cases.push(case(&[
            "export", "--kind", "visits", "--format", "json", "--since", bad,
        ]));
    }
    assert_refused(&home, &cases);
}

/// A day from `now` in days, as `--at` takes it (a plain date, local midnight; the tests
/// run with TZ=UTC).
fn day(offset_days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(offset_days))
        .format("%Y-%m-%d")
        .to_string()
}

#[test]
fn times_that_cannot_be_true_are_refused() {
    let (home, v, t) = populated();
    // A second day's work, before the mistakes.
    let v2 = home.add_visit("和平路8号", &["--grid", "第三网格", "--at", &day(0)]);
    home.json(&["ticket", "update", &t, "--status", "in_progress"]);
    home.json(&["visit", "edit", &v2, "--needs", "需要复查"]);
    let ahead = (chrono::Utc::now() + chrono::Duration::hours(25))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut cases = Vec::new();
    for bad in [
        "1900-01-01",
        "0026-11-20",
        "1999-12-31T23:59:59Z",
        ahead.as_str(),
        &day(3),
        "2999-01-01",
    ] {
        cases.push(case(&["visit", "add", "--household", "甲", "--at", bad]));
        cases.push(case(&["visit", "edit", &v, "--at", bad]));
        cases.push(case(&["visit", "edit", &v2, "--note", "改", "--at", bad]));
    }
    let before = home.json(&["visit", "list"]);
    assert_refused(&home, &cases);
    assert_eq!(home.json(&["visit", "list"]), before);
    let line = home.error(&["visit", "add", "--household", "甲", "--at", "1900-01-01"]);
    assert!(line.contains("2000-01-01"), "{line}");
    let line = home.error(&["visit", "add", "--household", "甲", "--at", &day(3)]);
    assert!(line.contains("ahead"), "{line}");

    // The edges hold: the first second of 2000, and less than a day ahead (a laptop
    // clock a little behind, or a time zone east of this one).
    let soon = (chrono::Utc::now() + chrono::Duration::hours(23))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for ok in ["2000-01-01T00:00:00Z", soon.as_str()] {
        let id = home.add_visit("乙", &["--at", ok]);
        assert_eq!(
            rfc3339_secs(home.visit(&id)["visited_at"].as_str().expect("visited_at")),
            rfc3339_secs(ok)
        );
    }
}

/// `enroll` refuses a revoked device and a membership of less than a day, and leaves the
/// roster as it was: no token, and the member's current membership keeps its expiry.
#[test]
fn enrolments_that_cannot_work_are_refused() {
    let station = Home::station();
    let v = Home::new();
    let w = Home::new();
    let token = station.json(&[
        "enroll",
        &v.device_id,
        "--name",
        "张阿姨",
        "--grid",
        "和平里",
        "--expires-days",
        "30",
    ])["token"]
        .as_str()
        .expect("token")
        .to_string();
    v.json(&["join", &token]);
    station.json(&["enroll", &w.device_id, "--name", "李叔", "--grid", "光明街"]);
    station.add_visit("和平里1号", &["--grid", "和平里"]);
    let members = station.json(&["members"]);
    for days in ["0", "-1", "-365"] {
        let line = station.error(&[
            "enroll",
            &v.device_id,
            "--name",
            "张阿姨",
            "--grid",
            "和平里",
            "--expires-days",
            days,
        ]);
        assert!(line.contains("--expires-days"), "{line}");
    }
    assert_eq!(
        station.json(&["members"]),
        members,
        "a refused enrolment changed the roster"
    );

    station.json(&["revoke", &w.device_id, "--reason", "电脑丢失"]);
    let members = station.json(&["members"]);
    let (code, stderr) =
        station.fail(&["enroll", &w.device_id, "--name", "李叔", "--grid", "光明街"]);
    assert_eq!(code, 1, "{stderr}");
    assert_one_error_line(&stderr, &["enroll"]);
    assert!(stderr.contains("revoked"), "{stderr}");
    // Without --json: no token on stdout either.
    let out = station.run(&["enroll", &w.device_id, "--name", "李叔", "--grid", "光明街"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(station.json(&["members"]), members);
}

#[test]
fn empty_household_or_title_is_refused() {
    let (home, _v, t) = populated();
    assert_refused(
        &home,
        &[
            case(&["visit", "add", "--household", ""]),
            case(&["visit", "add", "--household", "", "--note", "有备注"]),
            case(&["ticket", "open", "--title", ""]),
            case(&["ticket", "open", "--title", "", "--household", "甲"]),
            case(&["ticket", "update", &t, "--title", ""]),
        ],
    );
}

/// A 6-hex prefix that starts none of `ids`.
fn unused_prefix(ids: &[&str]) -> String {
    (0u32..)
        .map(|n| format!("{:06x}", n * 0x9e37 % 0x100_0000))
        .find(|p| ids.iter().all(|id| !id.starts_with(p.as_str())))
        .expect("some prefix is free")
}

#[test]
fn short_unknown_or_wrong_kind_ids_are_refused() {
    let (home, v, t) = populated();
    let free = unused_prefix(&[&v, &t]);
    let unknown_full = format!("{free}{}", &v[6..]);
    let mut cases = Vec::new();
    for id in [
        &v[..5],
        &v[..1],
        &t[..5],
        "",
        free.as_str(),
        unknown_full.as_str(),
        "zzzzzzzz",
        "幸福里幸福里",
    ] {
        cases.push(case(&["visit", "show", id]));
        cases.push(case(&["visit", "edit", id, "--note", "改"]));
        cases.push(case(&["ticket", "show", id]));
        cases.push(case(&["ticket", "update", id, "--status", "closed"]));
        cases.push(case(&["ticket", "comment", id, "评论"]));
        cases.push(case(&["visit", "add", "--household", "甲", "--ticket", id]));
    }
    // A visit id is not a ticket id and the other way round.
    cases.push(case(&["ticket", "show", &v]));
    cases.push(case(&["ticket", "update", &v, "--status", "closed"]));
    cases.push(case(&["ticket", "comment", &v, "评论"]));
    cases.push(case(&["visit", "show", &t]));
    cases.push(case(&["visit", "edit", &t, "--note", "改"]));
    cases.push(case(&["visit", "add", "--household", "甲", "--ticket", &v]));
    assert_refused(&home, &cases);
}

#[test]
fn ambiguous_prefix_is_refused() {
    let home = Home::new();
    // Import visits in batches until two ids share their first six characters.
    let file = home.scratch("batch.csv");
    let mut found = None;
    for batch in 0..12 {
        std::fs::write(&file, generated_visits_csv(&format!("批{batch}"), 3000))
            .expect("write csv");
        let path = file.to_str().expect("utf-8 temp path");
        home.json(&["import", "--kind", "visits", "--format", "csv", path]);
        let mut ids: Vec<String> = home
            .visits()
            .iter()
            .map(|v| v["id"].as_str().expect("id").to_string())
            .collect();
        ids.sort();
        if let Some(w) = ids.windows(2).find(|w| w[0][..6] == w[1][..6]) {
            found = Some((w[0].clone(), w[1].clone()));
            break;
        }
    }
    let (a, b) = found.expect("no two ids share a 6-character prefix after 36,000 visits");
    eprintln!("ambiguous pair: {a} {b}");
    let prefix = &a[..6];
    let before = home.snapshot();
    for args in [
        case(&["visit", "show", prefix]),
        case(&["visit", "edit", prefix, "--note", "改"]),
    ] {
        home.error(&args);
    }
    assert_eq!(
        home.snapshot(),
        before,
        "a refused command changed the store"
    );
    // The shortest unique prefixes still work.
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    assert_eq!(home.visit(&a[..common + 1])["id"], a.as_str());
    assert_eq!(home.visit(&b[..common + 1])["id"], b.as_str());
}

#[test]
fn bad_assignee_is_refused() {
    let (home, _v, t) = populated();
    let me = home.device_id.clone();
    let free = unused_prefix(&[&me]);
    assert_refused(
        &home,
        &[
            case(&["ticket", "update", &t, "--assign", &me[..5]]),
            case(&["ticket", "update", &t, "--assign", &free]),
            case(&["ticket", "update", &t, "--assign", "not-a-device"]),
            case(&["ticket", "update", &t, "--assign", &format!("{me}00")]),
            case(&["ticket", "update", &t, "--assign", ""]),
            case(&["visit", "list", "--by", &free]),
        ],
    );
}

#[test]
fn bad_status_or_priority_is_refused() {
    let (home, _v, t) = populated();
    let before = state(&home);
    for args in [
        case(&["ticket", "update", &t, "--status", "done"]),
        case(&["ticket", "update", &t, "--status", "已解决"]),
        case(&["ticket", "update", &t, "--priority", "critical"]),
        case(&["ticket", "open", "--title", "甲", "--priority", "十万火急"]),
        case(&["ticket", "list", "--status", "done"]),
    ] {
        let (code, stderr) = home.fail(&args);
        assert!(
            code == 1 || code == 2,
            "exit {code} for {}: {stderr}",
            show_args(&args)
        );
        assert!(!stderr.trim().is_empty());
    }
    assert_eq!(state(&home), before);
}

#[test]
fn second_init_is_refused_and_changes_nothing() {
    for station in [false, true] {
        let home = if station {
            Home::station()
        } else {
            Home::new()
        };
        home.add_visit("甲", &["--grid", "一网格"]);
        let key = read(&home.path().join("device.key"));
        let id = home.json(&["id"]);
        let before = state(&home);
        home.error(&["init", "--name", "另一个"]);
        home.error(&["init", "--name", "另一个", "--station"]);
        assert_eq!(read(&home.path().join("device.key")), key, "key replaced");
        assert_eq!(home.json(&["id"]), id, "identity changed");
        assert_eq!(state(&home), before, "records changed");
    }
}

#[test]
fn commands_on_an_uninitialised_home_fail() {
    let home = Home::empty();
    for args in [
        case(&["id"]),
        case(&["visit", "list"]),
        case(&["visit", "add", "--household", "甲"]),
        case(&["ticket", "open", "--title", "乙"]),
        case(&["ticket", "list"]),
    ] {
        home.error(&args);
    }
    assert!(
        !home.path().join("device.key").exists(),
        "a command other than init created a key"
    );
}

fn tables(path: &std::path::Path) -> BTreeSet<(String, String)> {
    let db = rusqlite::Connection::open(path).expect("open db");
    let mut stmt = db
        .prepare("SELECT name, coalesce(sql, '') FROM sqlite_master")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

fn remove_sidecars(store: &std::path::Path) {
    for ext in ["db-wal", "db-shm"] {
        let _ = std::fs::remove_file(store.with_extension(ext));
    }
}

fn store_commands(v: &str) -> Vec<Vec<String>> {
    vec![
        case(&["visit", "list"]),
        case(&["ticket", "list"]),
        case(&["visit", "add", "--household", "甲"]),
        case(&["ticket", "open", "--title", "乙"]),
        case(&["visit", "show", v]),
    ]
}

#[test]
fn garbage_store_is_refused_and_left_alone() {
    let (home, v, _t) = populated();
    let store = home.store();
    remove_sidecars(&store);
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&store, &garbage).expect("write garbage");
    for args in store_commands(&v) {
        home.error(&args);
    }
    // verify must fail too (it may print its count).
    let out = home.run_json(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "verify on a garbage store");
    assert_eq!(read(&store), garbage, "garbage store was rewritten");
}

#[test]
fn another_programs_database_is_refused_and_left_alone() {
    let (home, v, _t) = populated();
    let store = home.store();
    remove_sidecars(&store);
    std::fs::remove_file(&store).expect("remove store");
    {
        let db = rusqlite::Connection::open(&store).expect("create foreign db");
        db.execute_batch(
            "CREATE TABLE recipes (name TEXT NOT NULL, steps TEXT);
             INSERT INTO recipes VALUES ('红烧肉', '先焯水'), ('麻婆豆腐', '先炒肉末');",
        )
        .expect("fill foreign db");
    }
    let schema = tables(&store);
    for args in store_commands(&v) {
        home.error(&args);
    }
    assert_eq!(tables(&store), schema, "foreign database schema changed");
    let db = rusqlite::Connection::open(&store).expect("open");
    let n: i64 = db
        .query_row("SELECT count(*) FROM recipes", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 2, "foreign rows changed");
}

#[test]
fn usage_errors_exit_2() {
    let (home, v, _t) = populated();
    let before = state(&home);
    for args in [
        case(&["visit", "add", "--household", "甲", "--bogus"]),
        case(&["visit", "add"]),
        case(&["visit", "add", "--note", "没有户"]),
        case(&["ticket", "open"]),
        case(&["ticket", "open", "--priority", "high"]),
        case(&["ticket", "comment", &v]),
        case(&["visit", "show"]),
        case(&["frobnicate"]),
        case(&["visit", "frobnicate"]),
        case(&["visit", "list", "--color", "blue"]),
        case(&["export", "--kind", "visits"]),
        case(&["import", "--kind", "visits", "--format", "csv"]),
    ] {
        home.usage_error(&args);
    }
    assert_eq!(state(&home), before, "a usage error changed the store");

    let fresh = Home::empty();
    fresh.usage_error(&["init"]);
    fresh.usage_error(&["init", "--name"]);
    assert!(
        !fresh.path().join("device.key").exists(),
        "a usage error initialised the home"
    );
}

/// Output piped into a program that stops reading (`yizhan visit list | head -1`) ends the
/// command quietly, as for any Unix tool: no panic, no exit code 101.
#[test]
fn a_reader_that_stops_reading_ends_the_command_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let home = Home::new();
    let csv = home.scratch("visits.csv");
    std::fs::write(&csv, generated_visits_csv("管道", 3000)).expect("write csv");
    home.json(&[
        "import",
        "--kind",
        "visits",
        "--format",
        "csv",
        csv.to_str().unwrap(),
    ]);
    let mut child = home
        .command(false, &["visit", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read one line");
    // The reader is gone now, with thousands of rows still to print.
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!first.is_empty());
    assert_ne!(out.status.code(), Some(101), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}

/// A volunteer of 和平里 writes records only in 和平里: another grid, or a typo of one, is
/// exit 1 with one line, at `visit add`, `ticket open`, `visit edit --grid` and `ticket
/// update --grid`, and nothing is written. The station writes in any grid.
#[test]
fn a_volunteer_writing_outside_its_grids_is_refused() {
    let station = Home::station();
    let volunteer = Home::new();
    let token = station.json(&[
        "enroll",
        volunteer.device_id.as_str(),
        "--name",
        "王芳",
        "--grid",
        "和平里",
    ])["token"]
        .as_str()
        .expect("enroll printed a token")
        .to_string();
    volunteer.json(&["join", token.as_str(), "--station", "127.0.0.1:9"]);
    let v = volunteer.add_visit("和平里1号楼", &[]);
    let t = volunteer.open_ticket("楼道灯坏了", &["--grid", "和平里"]);
    for grid in ["光明街", "不存在的网格"] {
        let cases = [
            case(&["visit", "add", "--household", "和平里1号楼", "--grid", grid]),
            case(&["ticket", "open", "--title", "路灯", "--grid", grid]),
            case(&["visit", "edit", &v, "--grid", grid]),
            case(&["ticket", "update", &t, "--grid", grid]),
        ];
        let before = state(&volunteer);
        for args in &cases {
            let line = volunteer.error(args);
            assert!(line.contains(grid), "{line}");
            assert!(line.contains("its own grids"), "{line}");
        }
        assert_eq!(
            state(&volunteer),
            before,
            "a refused command changed the store"
        );
    }
    assert_eq!(volunteer.visits()[0]["grid"], "和平里");
    station.add_visit("光明街2号楼", &["--grid", "光明街"]);
}

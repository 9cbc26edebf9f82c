//! The household ledger through the binary: households made on two laptops that meet only at
//! the station, tags and the station's policy, due lists computed offline, ticket
//! deadlines, the follow-up call, a household that moves grid, and a store made by the
//! release before households existed.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::util::*;

const G1: &str = "幸福里一网格";
const G2: &str = "幸福里二网格";
const DAY: i64 = 24 * 3600;

fn sync(home: &Home, addr: &str) -> Value {
    let out = home.json(&["sync", addr]);
    assert_eq!(out["rejected"], 0, "a sync refused changes: {out}");
    out
}

fn households(home: &Home) -> Vec<Value> {
    array(home.json(&["household", "list"]))
}

fn find<'a>(list: &'a [Value], address: &str) -> &'a Value {
    list.iter()
        .find(|h| h["address"] == address)
        .unwrap_or_else(|| panic!("no household at {address}: {list:?}"))
}

fn secs(v: &Value) -> i64 {
    rfc3339_secs(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
}

/// A grid's week: a station head sets a shorter interval for elderly residents living
/// alone; two volunteers of one grid, who meet only at the station, each log a visit to
/// 张秀英's home, one writing the address with full-width digits; a resident's request
/// comes in by the hotline and is resolved late, then rated in the follow-up call; the
/// due list on a laptop is computed with no network.
#[test]
fn two_laptops_keep_one_ledger_and_compute_what_is_due_offline() {
    let station = Home::station();
    let serve = Serving::start(&station);
    let addr = serve.addr.clone();
    let (a, b, c) = (Home::new(), Home::new(), Home::new());
    join(&station, &a, "王芳", &[G1], &addr);
    join(&station, &b, "李强", &[G1], &addr);
    join(&station, &c, "张伟", &[G2], &addr);

    // The station's policy: elderly residents living alone every 14 days.
    let policy = station.json(&["policy", "set", "visit-every", "独居老人", "14"]);
    assert_eq!(policy["visit_every"]["elderly-alone"], 14, "{policy}");
    assert_eq!(
        policy["ticket_due"],
        json!({"urgent": 1, "high": 3, "normal": 7, "low": 15})
    );
    let (code, err) = a.fail(&["policy", "set", "visit-every", "elderly-alone", "7"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("station"), "{err}");
    for v in [&a, &b, &c] {
        sync(v, &addr);
    }
    assert_eq!(
        a.json(&["policy", "show"]),
        policy,
        "the policy reached the laptop"
    );

    // A adds the household with its tag, and logs a visit to it by address.
    let hh = id_of(&a.json(&[
        "household",
        "add",
        "--address",
        "幸福路12号",
        "--resident",
        "张秀英",
        "--tag",
        "独居老人",
        "--phone",
        "13800001234",
    ]));
    let va = a.add_visit(
        "幸福路１２号",
        &["--note", "看望", "--at", "2026-11-20T10:00:00+08:00"],
    );
    assert_eq!(
        a.visit(&va)["household_id"],
        hh.as_str(),
        "full-width digits name it too"
    );
    assert_eq!(a.visit(&va)["household"], "幸福路12号");
    // B, who has not met A, logs a visit to the same address: the same household.
    let vb = b.add_visit("幸福路12号", &["--at", "2026-11-25T15:00:00+08:00"]);
    assert_eq!(b.visit(&vb)["household_id"], hh.as_str());
    b.json(&["household", "edit", &hh[..8], "--tag", "低保户"]);
    // And another household of the grid, never visited.
    let other = id_of(&b.json(&["household", "add", "--address", "和平里3号"]));

    // A ticket by the hotline, with when the resident asked.
    let t = id_of(&a.json(&[
        "ticket",
        "open",
        "--title",
        "楼道灯坏了",
        "--household",
        &hh[..10],
        "--priority",
        "high",
        "--at",
        "2026-12-01T09:00:00+08:00",
        "--channel",
        "热线",
    ]));
    let ticket = a.ticket(&t);
    assert_eq!(ticket["household_id"], hh.as_str(), "{ticket}");
    assert_eq!(ticket["grid"], G1, "the ticket takes the household's grid");
    assert_eq!(ticket["channel"], "hotline");
    assert_eq!(
        secs(&ticket["due"]) - secs(&ticket["opened_at"]),
        3 * DAY,
        "{ticket}"
    );
    assert_eq!(ticket["overdue"], true, "{ticket}");

    for v in [&a, &b, &a, &b, &c] {
        sync(v, &addr);
    }

    // One household everywhere in the grid, tags merged, no conflict; none on C.
    for (home, who) in [(&station, "station"), (&a, "A"), (&b, "B")] {
        let list = households(home);
        let h = find(&list, "幸福路12号");
        assert_eq!(h["id"], hh.as_str(), "{who}: {h}");
        assert_eq!(
            h["tags"],
            json!(["elderly-alone", "low-income"]),
            "{who}: {h}"
        );
        assert_eq!(h["residents"], json!(["张秀英"]), "{who}: {h}");
        assert_eq!(
            secs(&h["last_visit"]),
            rfc3339_secs("2026-11-25T15:00:00+08:00"),
            "{who}: {h}"
        );
        // The shortest interval of its tags: 14 days (elderly alone), not 30 (low income).
        assert_eq!(
            secs(&h["next_due"]) - secs(&h["last_visit"]),
            14 * DAY,
            "{who}: {h}"
        );
        assert_eq!(h["overdue"], false, "{who}: {h}");
        let shown = home.json(&["household", "show", &hh]);
        let visits: Vec<&str> = shown["visits"]
            .as_array()
            .expect("visits")
            .iter()
            .map(|v| v["id"].as_str().expect("id"))
            .collect();
        assert_eq!(visits, [vb.as_str(), va.as_str()], "{who}: newest first");
        assert_eq!(shown["tickets"][0]["id"], t.as_str(), "{who}");
        assert_eq!(shown["conflicts"], json!([]), "{who}: {shown}");
        assert_eq!(home.text(&["conflicts"]).trim(), "No conflicts.", "{who}");
    }
    assert!(
        households(&c).is_empty(),
        "a laptop of another grid holds none of this grid's households"
    );

    // The due list, on A with no station reachable: the never-visited household first (it
    // was due when added: ordinary, 182 days), then the ticket, overdue.
    let due = a.json(&["due", "--within", "14"]);
    let dh: Vec<&str> = due["households"]
        .as_array()
        .expect("households")
        .iter()
        .map(|h| h["id"].as_str().expect("id"))
        .collect();
    assert!(dh.contains(&hh.as_str()), "due within 14 days: {due}");
    assert!(
        !dh.contains(&other.as_str()),
        "added today, due in 182 days: {due}"
    );
    let dt = &due["tickets"][0];
    assert_eq!(dt["id"], t.as_str(), "{due}");
    let now = now_secs();
    let expected = (now - secs(&ticket["due"])).div_euclid(DAY);
    assert!(
        dt["days_overdue"] == expected || dt["days_overdue"] == expected + 1,
        "{dt} (expected {expected})"
    );
    let h = &due["households"][0];
    assert_eq!(
        h["days_overdue"],
        (now - secs(&h["next_due"])).div_euclid(DAY),
        "{h}"
    );
    let overdue = array(a.json(&["ticket", "list", "--overdue"]));
    assert_eq!(overdue.len(), 1, "{overdue:?}");

    // The follow-up call: only on a resolved or closed ticket.
    let (code, err) = a.fail(&["ticket", "update", &t, "--satisfaction", "满意"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("resolved or closed"), "{err}");
    a.json(&["ticket", "update", &t, "--assign", "李强"]);
    assert_eq!(
        a.ticket(&t)["assignee"],
        b.device_id.as_str(),
        "assigned by name"
    );
    a.json(&["ticket", "update", &t, "--status", "resolved"]);
    a.json(&["ticket", "update", &t, "--satisfaction", "基本满意"]);
    let done = a.ticket(&t);
    assert_eq!(done["satisfaction"], "basic", "{done}");
    assert_eq!(done["overdue"], false, "{done}");
    assert!(secs(&done["resolved_at"]) >= now - 60, "{done}");
    assert!(array(a.json(&["ticket", "list", "--overdue"])).is_empty());
    assert!(
        a.json(&["due"])["tickets"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "a resolved ticket is not due"
    );
    // A deadline given by hand stays as given.
    let later = id_of(&a.json(&[
        "ticket",
        "open",
        "--title",
        "咨询低保",
        "--due",
        "2027-01-15",
        "--channel",
        "mailbox",
    ]));
    assert_eq!(
        secs(&a.ticket(&later)["due"]),
        rfc3339_secs("2027-01-15T00:00:00Z") - tz_offset()
    );
    sync(&a, &addr);
    assert_eq!(station.ticket(&t)["satisfaction"], "basic");
    for home in [&station, &a, &b, &c] {
        assert_eq!(home.json(&["verify"])["bad"], 0);
    }
}

/// The machine's UTC offset in seconds (a plain date is midnight in the machine's zone).
fn tz_offset() -> i64 {
    let out = Command::new("date").arg("+%z").output().expect("date");
    let z = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let sign = if z.starts_with('-') { -1 } else { 1 };
    let digits: Vec<i64> = z
        .trim_start_matches(['+', '-'])
        .chars()
        .filter_map(|c| c.to_digit(10).map(i64::from))
        .collect();
    match digits.as_slice() {
        [h1, h2, m1, m2] => sign * ((h1 * 10 + h2) * 3600 + (m1 * 10 + m2) * 60),
        _ => 0,
    }
}

/// Mistakes get one clear line and change nothing.
#[test]
fn bad_ledger_input_is_refused_with_nothing_written() {
    let station = Home::station();
    let hh = id_of(&station.json(&[
        "household",
        "add",
        "--address",
        "光明街5号",
        "--grid",
        G2,
        "--tag",
        "残疾人",
    ]));
    let before = station.json(&["household", "list"]);
    for args in [
        vec!["household", "add", "--address", "光明街6号"],
        vec!["household", "add", "--address", "光明街5号", "--grid", G2],
        vec!["household", "add", "--address", "  ", "--grid", G2],
        vec![
            "household",
            "add",
            "--address",
            "光明街7号",
            "--grid",
            G2,
            "--tag",
            "不存在",
        ],
        vec!["household", "edit", &hh, "--tag", "vip"],
        vec!["household", "edit", &hh],
        vec!["policy", "set", "visit-every", "elderly-alone", "0"],
        vec!["policy", "set", "visit-every", "nobody", "30"],
        vec!["policy", "set", "ticket-due", "urgent", "一天"],
        vec![
            "ticket",
            "open",
            "--title",
            "x",
            "--grid",
            G2,
            "--channel",
            "fax",
        ],
        vec![
            "ticket",
            "open",
            "--title",
            "x",
            "--grid",
            G1,
            "--household",
            &hh[..8],
        ],
        vec![
            "ticket",
            "open",
            "--title",
            "x",
            "--grid",
            G2,
            "--at",
            "1999-12-31",
        ],
        vec!["due", "--within=-1"],
        vec!["due", "--within", "一周"],
    ] {
        let (code, err) = station.fail(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert_one_error_line(&err, &args);
    }
    assert_eq!(station.json(&["household", "list"]), before);
    assert!(station.tickets().is_empty());
    let shown = station.json(&["household", "show", &hh[..6]]);
    assert_eq!(shown["tags"], json!(["disabled"]));
    assert_eq!(shown["overdue"], false, "added just now: {shown}");
    let found = array(station.json(&["household", "list", "--search", "光明"]));
    assert_eq!(found.len(), 1);
    assert!(array(station.json(&["household", "list", "--tag", "低保户"])).is_empty());
    assert_eq!(
        array(station.json(&["household", "list", "--tag", "disabled"])).len(),
        1
    );
}

/// A household that moves to another grid leaves the old grid's laptop at its next sync
/// with the station, and reaches the new grid's; its old visits stay where they were.
#[test]
fn a_moved_household_leaves_the_old_grids_laptop() {
    let station = Home::station();
    let serve = Serving::start(&station);
    let addr = serve.addr.clone();
    let (a, c) = (Home::new(), Home::new());
    join(&station, &a, "王芳", &[G1], &addr);
    join(&station, &c, "张伟", &[G2], &addr);
    let hh = id_of(&a.json(&[
        "household",
        "add",
        "--address",
        "幸福路30号",
        "--tag",
        "社区矫正",
    ]));
    let v = a.add_visit("幸福路30号", &["--note", "例行走访"]);
    sync(&a, &addr);
    sync(&c, &addr);
    assert!(households(&c).is_empty(), "the tag stays in its grid");
    station.json(&["household", "edit", &hh, "--grid", G2]);
    sync(&a, &addr);
    sync(&a, &addr);
    sync(&c, &addr);
    assert!(
        households(&a).iter().all(|h| h["id"] != hh.as_str()),
        "the moved household is gone from the old grid's laptop"
    );
    let on_c = households(&c);
    assert_eq!(
        find(&on_c, "幸福路30号")["tags"],
        json!(["community-correction"])
    );
    assert_eq!(a.visit(&v)["household_id"], hh.as_str(), "the visit stays");
}

fn unpack_fixture(into: &Path) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ledger-before-households.tar.gz");
    let status = Command::new("tar")
        .arg("xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(into)
        .status()
        .expect("run tar");
    assert!(status.success(), "unpack {}", fixture.display());
}

/// Homes made by the release before households existed (a station and three volunteers,
/// visits and tickets naming households by text, one address written two ways; see
/// `tests/fixtures/make-ledger-before-households.sh`) open with every record linked to a
/// household, households made, every store verifying, and after syncing with each other
/// all agree with no conflict.
#[test]
fn stores_from_before_households_upgrade_and_agree() {
    let dir = tempfile::tempdir().expect("temp dir");
    unpack_fixture(dir.path());
    let home = |name: &str| {
        let h = Home::empty();
        let to = h.path();
        for f in ["device.key", "store.db"] {
            std::fs::copy(dir.path().join(name).join(f), to.join(f)).expect("copy fixture");
        }
        h
    };
    let (station, a, b, c) = (home("station"), home("a"), home("b"), home("c"));
    for (h, who) in [(&station, "station"), (&a, "a"), (&b, "b"), (&c, "c")] {
        assert_eq!(h.json(&["verify"])["bad"], 0, "{who} after the upgrade");
        for v in h.visits() {
            assert!(
                is_hex(v["household_id"].as_str().unwrap_or_default(), 32),
                "{who}: {v}"
            );
        }
    }
    let list = households(&station);
    let addresses: Vec<&str> = list
        .iter()
        .map(|h| h["address"].as_str().unwrap())
        .collect();
    assert_eq!(addresses.len(), 3, "{list:?}");
    for address in ["幸福路12号", "和平里3号", "光明街5号"] {
        assert!(addresses.contains(&address), "{address}: {addresses:?}");
    }
    let xingfu = find(&list, "幸福路12号")["id"].clone();
    let linked: Vec<Value> = station
        .visits()
        .into_iter()
        .filter(|v| v["household_id"] == xingfu)
        .collect();
    assert_eq!(
        linked.len(),
        3,
        "both spellings link to one household: {linked:?}"
    );
    assert_eq!(
        secs(&find(&list, "幸福路12号")["last_visit"]),
        rfc3339_secs("2026-11-20T00:00:00Z") - tz_offset()
    );
    let tickets = station.tickets();
    assert!(
        tickets.iter().all(|t| t["household_id"].is_string()),
        "{tickets:?}"
    );

    let serve = Serving::start(&station);
    for v in [&a, &b, &c, &a, &b] {
        sync(v, &serve.addr);
    }
    assert_eq!(station.text(&["conflicts"]).trim(), "No conflicts.");
    let ids = |h: &Home| {
        let mut ids: Vec<String> = households(h)
            .iter()
            .map(|h| h["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let g1: Vec<String> = ids(&a);
    assert_eq!(g1.len(), 2, "{g1:?}");
    assert_eq!(ids(&b), g1);
    assert_eq!(ids(&c).len(), 1);
    for h in [&station, &a, &b, &c] {
        assert_eq!(h.json(&["verify"])["bad"], 0);
        assert_eq!(h.json(&["status"])["pending_to_station"], 0);
    }
}

/// A visit filed under the wrong household is moved to the right one: both households'
/// latest visits follow.
#[test]
fn a_visit_moved_to_another_household_moves_its_latest_visit() {
    let station = Home::station();
    let v = station.add_visit(
        "幸福路1号",
        &["--grid", G1, "--at", "2026-11-02T10:00:00+08:00"],
    );
    let first = station.visit(&v)["household_id"]
        .as_str()
        .unwrap()
        .to_string();
    station.json(&["visit", "edit", &v, "--household", "幸福路11号"]);
    let moved = station.visit(&v);
    let second = moved["household_id"].as_str().unwrap().to_string();
    assert_ne!(first, second, "{moved}");
    assert_eq!(moved["household"], "幸福路11号");
    let list = households(&station);
    assert_eq!(
        find(&list, "幸福路1号")["last_visit"],
        Value::Null,
        "{list:?}"
    );
    assert_eq!(find(&list, "幸福路11号")["id"], second.as_str());
    assert_eq!(
        secs(&find(&list, "幸福路11号")["last_visit"]),
        rfc3339_secs("2026-11-02T10:00:00+08:00")
    );
    assert_eq!(station.json(&["verify"])["bad"], 0);
}

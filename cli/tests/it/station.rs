//! The station head's commands through the binary: `members` with expiry and last sync,
//! `quarantine` that shows what a held change holds and says why nothing merged, `show` of
//! a record held only in quarantine, and `sync`'s addresses, plurals and Ctrl-C; each in
//! Chinese (`LANG=zh_CN.UTF-8`) and English (`LANG=C`) where people read it.

use std::io::Read;
use std::net::UdpSocket;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

const GRID: &str = "和平里";

const ZH: &str = "zh_CN.UTF-8";
const EN: &str = "C";

fn sync_json(home: &Home, addr: &str) -> Value {
    home.json(&["sync", addr])
}

/// The roster row of `device` in `members --json`.
fn member(station: &Home, device: &str) -> Value {
    array(station.json(&["members"]))
        .into_iter()
        .find(|m| m["device_id"] == device)
        .unwrap_or_else(|| panic!("{device} is not in members"))
}

/// The line of a table that contains `needle`.
fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
}

#[test]
fn members_show_expiry_last_sync_and_state_in_both_languages() {
    let station = Home::station();
    let serve = Serving::start(&station);
    let (li, zhang, wang) = (Home::new(), Home::new(), Home::new());
    // 李强 for 30 days, who syncs; 张阿姨 for good, who never does; 王伟, revoked.
    let token = station.json(&[
        "enroll",
        &li.device_id,
        "--name",
        "李强",
        "--grid",
        GRID,
        "--expires-days",
        "30",
    ])["token"]
        .as_str()
        .unwrap()
        .to_string();
    li.json(&["join", &token, "--station", &serve.addr]);
    join(&station, &zhang, "张阿姨", &[GRID], &serve.addr);
    join(&station, &wang, "王伟", &[GRID], &serve.addr);
    sync_json(&li, &serve.addr);
    station.json(&["revoke", &wang.device_id, "--reason", "电脑丢失"]);

    let l = member(&station, &li.device_id);
    let keys_of = keys(&l);
    assert_eq!(
        keys_of,
        sorted(&[
            "device_id",
            "name",
            "role",
            "grids",
            "revoked",
            "expires_at",
            "last_sync"
        ])
    );
    let expires = rfc3339_secs(l["expires_at"].as_str().expect("an expiry"));
    assert!(
        (expires - now_secs() - 30 * 86_400).abs() < 600,
        "expires in 30 days: {l}"
    );
    assert_recent(&l["last_sync"]);
    let z = member(&station, &zhang.device_id);
    assert_eq!(z["expires_at"], Value::Null, "{z}");
    assert_eq!(z["last_sync"], Value::Null, "never synced: {z}");
    assert_eq!(member(&station, &wang.device_id)["revoked"], true);
    // The volunteer's own roster knows when it synced with the station.
    let st = member(&li, &station.device_id);
    assert_recent(&st["last_sync"]);

    // An expiry that has passed (written into the roster as a past certificate would have it).
    let conn = rusqlite::Connection::open(station.store()).unwrap();
    conn.execute(
        "UPDATE members SET expires_at = 1767225600000 WHERE lower(hex(device)) = ?1",
        [&zhang.device_id],
    )
    .unwrap();
    drop(conn);

    let zh = text_in(&station, ZH, &["members"]);
    let header = zh.lines().next().unwrap();
    let cols: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        &cols[..6],
        ["名称", "角色", "网格", "有效期", "最后同步", "状态"],
        "{zh}"
    );
    let row = line_with(&zh, "李强");
    assert!(row.contains("网格员") && row.contains("正常"), "{row}");
    // Both times as Chinese readers write them, in the machine's zone (UTC here).
    assert_eq!(row.matches('年').count(), 2, "{row}");
    let row = line_with(&zh, "张阿姨");
    assert!(
        row.contains("2026年1月1日 00:00") && row.contains("已过期") && row.contains("从未同步"),
        "{row}"
    );
    assert!(line_with(&zh, "王伟").contains("已撤销"), "{zh}");
    assert!(line_with(&zh, "幸福里工作站").contains("驿站"), "{zh}");
    assert!(
        !zh.contains(&station.device_id),
        "whole ids in the table: {zh}"
    );

    let en = text_in(&station, EN, &["members"]);
    let cols: Vec<&str> = en.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        &cols[..7],
        ["NAME", "ROLE", "GRIDS", "EXPIRES", "LAST", "SYNC", "STATUS"],
        "{en}"
    );
    let row = line_with(&en, "张阿姨");
    assert!(
        row.contains("2026-01-01 00:00") && row.contains("expired") && row.contains("never"),
        "{row}"
    );
    assert!(line_with(&en, "王伟").contains("revoked"), "{en}");
    assert!(line_with(&en, "李强").contains("active"), "{en}");
}

/// A station, two volunteers of one grid, and a revoked volunteer's ticket (opened, then
/// updated: two changes, the second built on the first) relayed to the station by the other
/// volunteer after the revocation: both changes held. Returns (station, ticket id, the held
/// changes' ids in order: the opening first).
fn held_ticket() -> (Home, String, String, String) {
    let station = Home::station();
    let serve = Serving::start(&station);
    let (a, b) = (Home::new(), Home::new());
    join(&station, &a, "李强", &[GRID], &serve.addr);
    join(&station, &b, "张阿姨", &[GRID], &serve.addr);
    sync_json(&a, &serve.addr);
    sync_json(&b, &serve.addr);
    let ticket = a.open_ticket("楼道灯坏了", &["--grid", GRID]);
    a.json(&[
        "ticket",
        "update",
        &ticket,
        "--status",
        "in_progress",
        "--note",
        "三楼和四楼之间的灯，晚上很黑，老人上下楼不方便，请尽快修理",
    ]);
    {
        // In the field, out of the station's reach: B's daemon cannot relay to it yet.
        let config = b.path().join("config.toml");
        std::fs::write(&config, "station = \"127.0.0.1:9\"\n").unwrap();
        let b_serve = Serving::start(&b);
        sync_json(&a, &b_serve.addr);
        drop(b_serve);
        std::fs::remove_file(&config).unwrap();
    }
    station.json(&["revoke", &a.device_id, "--reason", "电脑丢失"]);
    sync_json(&b, &serve.addr);
    let held = array(station.json(&["quarantine", "list"]));
    assert_eq!(held.len(), 2, "{held:?}");
    let open = held
        .iter()
        .find(|h| h["depends_on"].as_array().is_some_and(|d| d.is_empty()))
        .expect("the opening waits for nothing");
    let update = held
        .iter()
        .find(|h| h["id"] != open["id"])
        .expect("the update");
    (
        station,
        ticket,
        open["id"].as_str().unwrap().to_string(),
        update["id"].as_str().unwrap().to_string(),
    )
}

#[test]
fn quarantine_shows_what_is_held_and_says_why_nothing_merged() {
    let (station, ticket, open, update) = held_ticket();
    let held = array(station.json(&["quarantine", "list"]));
    for h in &held {
        assert_eq!(h["kind"], "ticket", "{h}");
        assert_eq!(h["record"], ticket.as_str(), "{h}");
        assert_recent(&h["made_at"]);
        assert_recent(&h["received_at"]);
        assert_recent(&h["revoked_at"]);
        assert_eq!(h["revocation_reason"], "电脑丢失");
    }
    let by_id = |id: &str| held.iter().find(|h| h["id"] == id).unwrap().clone();
    let (o, u) = (by_id(&open), by_id(&update));
    assert_eq!(u["depends_on"], serde_json::json!([open]), "{u}");
    let writes = |h: &Value, field: &str| {
        h["writes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["field"] == field)
            .map(|w| w["value"].clone())
    };
    assert_eq!(writes(&o, "title"), Some("楼道灯坏了".into()), "{o}");
    assert_eq!(writes(&u, "status"), Some("in_progress".into()), "{u}");
    assert_eq!(writes(&o, "status"), Some("open".into()), "{o}");

    // For people: content (long values cut short), when made and received, the author by
    // name with the revocation, and what it waits for.
    let zh = text_in(&station, ZH, &["quarantine", "list"]);
    for needed in [
        "待定修改",
        "工单",
        "李强（",
        "已撤销：电脑丢失",
        "修改时间",
        "收到时间",
        "标题 = 楼道灯坏了",
        "状态 = 处理中",
        "备注 = 三楼和四楼之间的灯，晚上很黑，老人上下楼不方便，…",
        "登记时间 = 2026年",
        "（同在隔离区）",
        "驿站收到之前，作者已被撤销",
        "年",
    ] {
        assert!(zh.contains(needed), "{needed:?} not in:\n{zh}");
    }
    assert!(zh.contains(&format!("{open}（同在隔离区）")), "{zh}");
    assert!(!zh.contains(&station.device_id[..12]), "{zh}");
    let en = text_in(&station, EN, &["quarantine", "list"]);
    for needed in [
        "Held change",
        "ticket",
        "李强 (revoked",
        "made",
        "received",
        "waits for",
        "title = 楼道灯坏了",
        "status = in_progress",
        "(also held)",
        "its author was revoked before the station received it",
    ] {
        assert!(en.contains(needed), "{needed:?} not in:\n{en}");
    }

    // The held ticket is not "no ticket matches": show says where it is.
    let line = error_in(&station, ZH, &["ticket", "show", &ticket[..8]]);
    assert!(
        line.contains("隔离区") && line.contains("李强") && line.contains("yizhan quarantine list"),
        "{line}"
    );
    let line = error_in(&station, EN, &["ticket", "show", &ticket]);
    assert!(
        line.contains("held in quarantine")
            && line.contains("李强 was revoked")
            && line.contains("its 2 changes"),
        "{line}"
    );

    // The update alone cannot merge before the opening: exit 1, nothing merged, and the
    // line names the change it waits for.
    let line = error_in(&station, EN, &["quarantine", "accept", &update[..10]]);
    assert!(
        line.contains(&open) && line.contains("accept") && line.contains("--all"),
        "{line}"
    );
    let line = error_in(&station, ZH, &["quarantine", "accept", &update[..10]]);
    assert!(line.contains(&open) && line.contains("先接受"), "{line}");
    assert_eq!(array(station.json(&["quarantine", "list"])).len(), 2);

    // The opening first, then the update: one each, in the singular.
    let said = text_in(&station, EN, &["quarantine", "accept", &open[..10]]);
    assert_eq!(said.trim(), "Merged 1 held change.");
    assert_eq!(station.ticket(&ticket)["status"], "open");
    let said = text_in(&station, ZH, &["quarantine", "accept", &update[..10]]);
    assert_eq!(said.trim(), "已合并 1 条待定修改。");
    assert_eq!(station.ticket(&ticket)["status"], "in_progress");
    assert_eq!(
        text_in(&station, ZH, &["quarantine", "list"]).trim(),
        "隔离区里没有待定的修改。"
    );
    assert_eq!(station.json(&["verify"])["bad"], 0);
}

#[test]
fn rejecting_a_held_change_drops_what_builds_on_it_in_the_plural() {
    let (station, ticket, open, _update) = held_ticket();
    // The report flags what waits, and whose device was revoked.
    let report = station.json(&["report"]);
    assert_eq!(report["held_in_quarantine"], 2, "{report}");
    assert_eq!(report["revoked_devices"][0]["name"], "李强", "{report}");
    let zh = text_in(&station, ZH, &["report"]);
    assert!(
        zh.contains("## ⚠ 需要注意") && zh.contains("有 2 条已撤销成员的修改等待驿站决定"),
        "{zh}"
    );
    let en = text_in(&station, EN, &["report"]);
    assert!(
        en.contains("## ⚠ Needs attention")
            && en.contains("2 changes by revoked members wait for the station's decision"),
        "{en}"
    );
    let said = text_in(&station, EN, &["quarantine", "reject", &open[..10]]);
    assert_eq!(said.trim(), "Dropped 2 held changes for good.");
    assert!(array(station.json(&["quarantine", "list"])).is_empty());
    let line = error_in(&station, EN, &["ticket", "show", &ticket]);
    assert!(line.contains("no ticket matches"), "{line}");
}

#[test]
fn sync_tells_an_unknown_host_from_a_bad_address() {
    let home = Home::station();
    let line = error_in(&home, EN, &["sync", "nosuchhost.invalid:7365"]);
    assert!(
        line.contains("nosuchhost.invalid") && line.contains("cannot be found"),
        "{line}"
    );
    assert!(!line.contains("HOST:PORT"), "{line}");
    let line = error_in(&home, ZH, &["sync", "nosuchhost.invalid:7365"]);
    assert!(
        line.contains("找不到") && line.contains("nosuchhost.invalid"),
        "{line}"
    );
    for bad in ["nosuchhost.invalid", "127.0.0.1:99999", "a b:7365", ":7365"] {
        let line = error_in(&home, EN, &["sync", bad]);
        assert!(line.contains("is not a HOST:PORT address"), "{bad}: {line}");
    }
    let line = error_in(&home, ZH, &["sync", "nosuchhost.invalid"]);
    assert!(line.contains("不是“主机:端口”"), "{line}");
    // `join --station` is checked the same way.
    let v = Home::new();
    let token = home.json(&["enroll", &v.device_id, "--name", "李强", "--grid", GRID])["token"]
        .as_str()
        .unwrap()
        .to_string();
    let line = error_in(
        &v,
        EN,
        &["join", &token, "--station", "nosuchhost.invalid:7365"],
    );
    assert!(line.contains("cannot be found"), "{line}");
}

#[test]
fn sync_counts_changes_in_the_plural_of_the_language() {
    let station = Home::station();
    let serve = Serving::start(&station);
    let v = Home::new();
    join(&station, &v, "李强", &[GRID], &serve.addr);
    sync_json(&v, &serve.addr);
    v.open_ticket("楼道灯坏了", &["--grid", GRID]);
    let en = text_in(&v, EN, &["sync", &serve.addr]);
    assert!(en.contains(": sent 1 change, received"), "{en}");
    v.open_ticket("路灯不亮", &["--grid", GRID]);
    v.open_ticket("井盖松动", &["--grid", GRID]);
    let zh = text_in(&v, ZH, &["sync", &serve.addr]);
    assert!(
        zh.starts_with("已与 ") && zh.contains("发出 2 条修改"),
        "{zh}"
    );
    let en = text_in(&v, EN, &["sync", &serve.addr]);
    assert!(en.contains(": sent 0 changes, received"), "{en}");
}

#[allow(unsafe_code)]
fn sigint(pid: u32) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our unreaped child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
}

#[test]
fn ctrl_c_during_sync_exits_130_without_a_word_and_leaves_the_store_sound() {
    let home = Home::station();
    home.open_ticket("楼道灯坏了", &["--grid", GRID]);
    let before = home.snapshot();
    // A peer that never answers: it reads every datagram and drops it.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    for lang in [ZH, EN] {
        let mut child = home
            .command(false, &["sync", addr.as_str()])
            .env("LANG", lang)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Waiting on the peer: its first packet has arrived.
        let mut buf = [0u8; 2048];
        silent.recv_from(&mut buf).expect("the sync dials the peer");
        sigint(child.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "sync did not stop on SIGINT");
            std::thread::sleep(Duration::from_millis(20));
        };
        let (mut out, mut err) = (String::new(), String::new());
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(status.code(), Some(130), "{status:?}; stderr: {err}");
        assert_eq!(err, "", "stderr after Ctrl-C");
        assert_eq!(out, "", "stdout after Ctrl-C");
        // Drain what else the dialer sent before the next round.
        silent
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        while silent.recv_from(&mut buf).is_ok() {}
        silent
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
    }
    assert_eq!(home.snapshot(), before);
    assert_eq!(home.json(&["verify"])["bad"], 0);
    home.open_ticket("之后照常", &["--grid", GRID]);
}

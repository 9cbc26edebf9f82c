//! Identity (`init`, `id`) and records (`visit ...`, `ticket ...`) through the CLI.

use crate::util::*;
use serde_json::{Value, json};

const HOUSEHOLD: &str = "幸福里社区3号楼2单元201室";
const GRID: &str = "第三网格";

// ---------------------------------------------------------------------------------------
// init / id / home
// ---------------------------------------------------------------------------------------

#[test]
fn init_unenrolled_prints_identity_and_id_agrees() {
    let home = Home::empty();
    let v = home.json(&["init", "--name", "王志愿"]);
    assert_eq!(keys(&v), sorted(&["device_id", "site_id", "role"]), "{v}");
    let device = v["device_id"].as_str().expect("device_id string");
    assert!(is_hex(device, 64), "device_id {device:?}");
    assert_eq!(v["site_id"], Value::Null);
    assert_eq!(v["role"], "unenrolled");

    let id = home.json(&["id"]);
    assert_eq!(
        keys(&id),
        sorted(&["device_id", "name", "site_id", "role"]),
        "{id}"
    );
    assert_eq!(id["device_id"], device);
    assert_eq!(id["name"], "王志愿");
    assert_eq!(id["site_id"], Value::Null);
    assert_eq!(id["role"], "unenrolled");
}

#[test]
fn init_station_creates_a_site() {
    let home = Home::empty();
    let v = home.json(&["init", "--name", "幸福里工作站", "--station"]);
    let site = v["site_id"].as_str().expect("station has a site_id");
    assert!(is_hex(site, 32), "site_id {site:?}");
    assert_eq!(v["role"], "station");
    assert!(is_hex(v["device_id"].as_str().unwrap_or(""), 64), "{v}");

    let id = home.json(&["id"]);
    assert_eq!(id["device_id"], v["device_id"]);
    assert_eq!(id["site_id"], site);
    assert_eq!(id["role"], "station");
    assert_eq!(id["name"], "幸福里工作站");
}

#[test]
fn init_creates_a_missing_home_directory() {
    let home = Home::empty();
    let nested = home.scratch("a/b/节点");
    let out = home
        .bare_command()
        .arg("--home")
        .arg(&nested)
        .args(["--json", "init", "--name", "甲"])
        .output()
        .expect("run");
    assert_success(&out, &["init (nested home)"]);
    assert!(nested.join("device.key").is_file());
    assert!(nested.join("store.db").is_file());
}

#[test]
fn two_homes_have_different_devices() {
    let a = Home::new();
    let b = Home::new();
    assert_ne!(a.device_id, b.device_id);
    let sa = Home::station();
    let sb = Home::station();
    assert_ne!(
        sa.json(&["id"])["site_id"],
        sb.json(&["id"])["site_id"],
        "two stations share a site id"
    );
}

#[test]
fn init_writes_a_private_key_and_a_store() {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new();
    let key = home.path().join("device.key");
    let meta = std::fs::metadata(&key).expect("device.key exists after init");
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "device.key must be readable by its owner only"
    );
    assert!(meta.len() > 0, "device.key is empty");
    assert!(home.store().is_file(), "store.db exists after init");
    // The secret key is never printed.
    let key_bytes = read(&key);
    let shown = home.text(&["id"]);
    let shown_json = home.json(&["id"]).to_string();
    for window in key_bytes.windows(16) {
        if let Ok(s) = std::str::from_utf8(window) {
            assert!(
                !shown.contains(s) && !shown_json.contains(s),
                "key file content printed by `id`"
            );
        }
    }
}

#[test]
fn home_can_come_from_yizhan_home_env() {
    let home = Home::empty();
    let out = home
        .bare_command()
        .env("YIZHAN_HOME", home.path())
        .args(["--json", "init", "--name", "李四"])
        .output()
        .expect("run yizhan");
    assert_success(&out, &["init (via YIZHAN_HOME)"]);
    let v = parse_json(&out.stdout, &["init"]);
    // The same home seen through --home.
    let id = home.json(&["id"]);
    assert_eq!(id["device_id"], v["device_id"]);
    assert_eq!(id["name"], "李四");
    assert!(home.path().join("device.key").is_file());

    // A record added through the env var is seen through --home and vice versa.
    let out = home
        .bare_command()
        .env("YIZHAN_HOME", home.path())
        .args(["--json", "visit", "add", "--household", HOUSEHOLD])
        .output()
        .expect("run yizhan");
    assert_success(&out, &["visit add (via YIZHAN_HOME)"]);
    let vid = id_of(&parse_json(&out.stdout, &["visit add"]));
    let visits = home.visits();
    assert_eq!(visits.len(), 1);
    assert_eq!(visits[0]["id"], vid.as_str());

    // --home wins over YIZHAN_HOME.
    let other = Home::new();
    let out = other
        .bare_command()
        .env("YIZHAN_HOME", home.path())
        .arg("--home")
        .arg(other.path())
        .args(["--json", "id"])
        .output()
        .expect("run yizhan");
    assert_success(&out, &["id"]);
    assert_eq!(
        parse_json(&out.stdout, &["id"])["device_id"],
        other.device_id
    );
}

#[test]
fn id_for_people_names_the_device() {
    let home = Home::new();
    let text = home.text(&["id"]);
    assert!(text.contains(&home.device_id), "{text}");
    assert!(text.contains("测试员"), "{text}");
}

// ---------------------------------------------------------------------------------------
// visits
// ---------------------------------------------------------------------------------------

#[test]
fn visit_add_round_trips_every_field_in_chinese() {
    let home = Home::new();
    let note = "老人独居，腿脚不便；\"需要\"定期上门。";
    let id = home.add_visit(
        HOUSEHOLD,
        &[
            "--grid",
            GRID,
            "--category",
            "扶贫解困",
            "--note",
            note,
            "--resident",
            "王秀英",
            "--resident",
            "李建国",
            "--needs",
            "需要轮椅、代购药品",
            "--at",
            "2026-11-20",
        ],
    );
    let visits = home.visits();
    assert_eq!(visits.len(), 1, "{visits:?}");
    let v = &visits[0];
    assert_eq!(keys(v), sorted(&VISIT_KEYS), "{v}");
    assert_eq!(
        *v,
        json!({
            "id": id,
            "household": HOUSEHOLD,
            // Not joined to a site: no household yet (its id derives from the site).
            "household_id": null,
            "grid": GRID,
            "category": "poverty-relief",
            "note": note,
            "residents": ["王秀英", "李建国"],
            "needs": "需要轮椅、代购药品",
            "visited_at": "2026-11-20T00:00:00Z",
            "author": home.device_id,
            "tickets": [],
        })
    );

    // `visit show` is the list object plus history and conflicts.
    let shown = home.visit(&id);
    let mut expected_keys: Vec<&str> = VISIT_KEYS.to_vec();
    expected_keys.extend(["history", "conflicts"]);
    assert_eq!(keys(&shown), sorted(&expected_keys), "{shown}");
    for k in VISIT_KEYS {
        assert_eq!(shown[k], v[k], "field {k} differs between list and show");
    }
    assert_eq!(shown["conflicts"], json!([]));

    // And for people: the Chinese text comes out unchanged.
    let text = home.text(&["visit", "show", &id]);
    for s in [HOUSEHOLD, GRID, "王秀英", "李建国", "需要轮椅、代购药品"] {
        assert!(text.contains(s), "`visit show` lost {s:?}:\n{text}");
    }
}

#[test]
fn visit_absent_fields_are_null() {
    let home = Home::new();
    let before = now_secs();
    let id = home.add_visit("和平路8号", &[]);
    let v = home.visit(&id);
    assert_eq!(v["household"], "和平路8号");
    for k in ["grid", "category", "note", "needs"] {
        assert_eq!(v[k], Value::Null, "absent {k} should be null: {v}");
    }
    assert_eq!(v["residents"], json!([]));
    assert_eq!(v["tickets"], json!([]));
    assert_eq!(v["author"], home.device_id.as_str());
    // Without --at the visit is dated now.
    assert_recent(&v["visited_at"]);
    let at = rfc3339_secs(v["visited_at"].as_str().unwrap());
    assert!(at >= before - 2, "visited_at {at} before the command ran");

    // With --grid the grid is kept as given.
    let id = home.add_visit("和平路9号", &["--grid", "G"]);
    assert_eq!(home.visit(&id)["grid"], "G");
}

#[test]
fn visit_times_accept_dates_and_keep_offsets() {
    let home = Home::new();
    let a = home.add_visit("甲", &["--at", "2026-11-20"]);
    let b = home.add_visit("乙", &["--at", "2026-11-20T09:30:00+08:00"]);
    let c = home.add_visit("丙", &["--at", "2026-11-21T01:02:03Z"]);
    assert_eq!(home.visit(&a)["visited_at"], "2026-11-20T00:00:00Z");
    assert_eq!(home.visit(&b)["visited_at"], "2026-11-20T09:30:00+08:00");
    assert_eq!(home.visit(&c)["visited_at"], "2026-11-21T01:02:03Z");
}

#[test]
fn categories_accept_slug_or_chinese_name_and_print_the_slug() {
    let home = Home::new();
    for (slug, name) in CATEGORIES {
        let by_name = home.add_visit(&format!("{name}户"), &["--category", name]);
        let by_slug = home.add_visit(&format!("{slug}户"), &["--category", slug]);
        assert_eq!(home.visit(&by_name)["category"], slug, "category {name}");
        assert_eq!(home.visit(&by_slug)["category"], slug, "category {slug}");
        let t = home.open_ticket(&format!("{name}工单"), &["--category", name]);
        assert_eq!(home.ticket(&t)["category"], slug, "ticket category {name}");
    }
    // Filtering by either form finds the same visits.
    for (slug, name) in CATEGORIES {
        let a = home.json(&["visit", "list", "--category", slug]);
        let b = home.json(&["visit", "list", "--category", name]);
        assert_eq!(a, b, "filter by {slug} vs {name}");
        assert_eq!(a.as_array().map(Vec::len), Some(2), "{slug}: {a}");
        let t = home.json(&["ticket", "list", "--category", name]);
        assert_eq!(t.as_array().map(Vec::len), Some(1), "{name}: {t}");
        assert_eq!(t[0]["category"], slug);
    }
}

fn households(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("expected array: {list}"))
        .iter()
        .map(|v| v["household"].as_str().expect("household").to_string())
        .collect()
}

#[test]
fn visit_list_filters_by_grid_category_since_and_author() {
    let home = Home::new();
    home.add_visit(
        "一号",
        &[
            "--grid",
            "东区",
            "--category",
            "城市管理",
            "--at",
            "2026-11-01",
        ],
    );
    home.add_visit(
        "二号",
        &[
            "--grid",
            "西区",
            "--category",
            "纠纷调解",
            "--at",
            "2026-11-10T08:00:00Z",
        ],
    );
    home.add_visit(
        "三号",
        &[
            "--grid",
            "东区",
            "--category",
            "纠纷调解",
            "--at",
            "2026-11-20",
        ],
    );
    let list = |args: &[&str]| {
        let mut a = vec!["visit", "list"];
        a.extend_from_slice(args);
        households(&home.json(&a))
    };
    assert_eq!(list(&[]), ["一号", "二号", "三号"]);
    assert_eq!(list(&["--grid", "东区"]), ["一号", "三号"]);
    assert_eq!(list(&["--grid", "西区"]), ["二号"]);
    assert!(list(&["--grid", "北区"]).is_empty());
    assert_eq!(list(&["--category", "dispute-mediation"]), ["二号", "三号"]);
    assert_eq!(
        list(&["--grid", "东区", "--category", "纠纷调解"]),
        ["三号"]
    );
    // --since is inclusive and compares instants.
    assert_eq!(list(&["--since", "2026-11-10"]), ["二号", "三号"]);
    assert_eq!(list(&["--since", "2026-11-10T08:00:00Z"]), ["二号", "三号"]);
    assert_eq!(
        list(&["--since", "2026-11-10T16:00:00+08:00"]),
        ["二号", "三号"]
    );
    assert_eq!(list(&["--since", "2026-11-10T08:00:01Z"]), ["三号"]);
    assert!(list(&["--since", "2026-12-01"]).is_empty());
    // --by: this node wrote all of them; another device none.
    assert_eq!(list(&["--by", &home.device_id]), ["一号", "二号", "三号"]);
    let other = Home::new();
    assert!(list(&["--by", &other.device_id]).is_empty());
}

#[test]
fn lists_are_in_chronological_order() {
    let home = Home::new();
    for (h, at) in [
        ("c", "2026-11-03T10:00:00Z"),
        ("a", "2026-11-01"),
        ("d", "2026-11-03T19:00:00+08:00"), // 11:00Z, after c
        ("b", "2026-11-02T23:59:59Z"),
    ] {
        home.add_visit(h, &["--at", at]);
    }
    assert_eq!(
        households(&home.json(&["visit", "list"])),
        ["a", "b", "c", "d"]
    );

    for t in ["第一件", "第二件", "第三件"] {
        home.open_ticket(t, &[]);
    }
    let tickets = home.tickets();
    assert_eq!(tickets.len(), 3);
    let times: Vec<i64> = tickets
        .iter()
        .map(|t| rfc3339_secs(t["opened_at"].as_str().expect("opened_at")))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "tickets not by opened_at: {tickets:?}"
    );
}

#[test]
fn visit_edit_changes_fields_and_grows_history() {
    let home = Home::new();
    let id = home.add_visit(
        HOUSEHOLD,
        &[
            "--grid",
            GRID,
            "--note",
            "初次走访",
            "--resident",
            "王秀英",
            "--at",
            "2026-11-20",
        ],
    );
    let first = home.visit(&id);
    let h1 = first["history"].as_array().expect("history array").clone();
    assert_eq!(h1.len(), 1, "a new visit has one change: {first}");
    let entry = &h1[0];
    assert_eq!(
        keys(entry),
        sorted(&["hash", "author", "author_name", "at", "message", "changes"]),
        "{entry}"
    );
    assert_eq!(entry["author"], home.device_id.as_str());
    assert!(entry["hash"].as_str().is_some_and(|h| !h.is_empty()));
    assert_recent(&entry["at"]);

    let edited = home.json(&[
        "visit",
        "edit",
        &id,
        "--note",
        "复访：情况好转",
        "--needs",
        "每月送米面油",
        "--category",
        "为民服务",
    ]);
    assert_eq!(id_of(&edited), id, "edit answers with the same id");
    let v = home.visit(&id);
    assert_eq!(v["note"], "复访：情况好转");
    assert_eq!(v["needs"], "每月送米面油");
    assert_eq!(v["category"], "resident-services");
    // Untouched fields stay.
    for k in [
        "household",
        "grid",
        "residents",
        "visited_at",
        "author",
        "tickets",
    ] {
        assert_eq!(v[k], first[k], "edit changed {k}");
    }
    let h2 = v["history"].as_array().expect("history array");
    assert_eq!(h2.len(), 2, "one entry per change: {v}");
    assert_eq!(h2[0], h1[0], "history is oldest first and unchanged");
    assert_ne!(h2[1]["hash"], h2[0]["hash"]);
    assert_eq!(v["conflicts"], json!([]));

    home.json(&["visit", "edit", &id, "--note", "第三次"]);
    let v = home.visit(&id);
    assert_eq!(v["note"], "第三次");
    assert_eq!(v["needs"], "每月送米面油");
    assert_eq!(v["history"].as_array().map(Vec::len), Some(3));
    // Still one visit.
    assert_eq!(home.visits().len(), 1);
}

#[test]
fn visits_link_to_tickets_both_ways() {
    let home = Home::new();
    let t1 = home.open_ticket("楼道灯坏了", &["--household", HOUSEHOLD]);
    let t2 = home.open_ticket("申请低保", &[]);
    let v1 = home.add_visit(HOUSEHOLD, &["--ticket", &t1, "--at", "2026-11-20"]);
    let v2 = home.add_visit("和平路8号", &["--at", "2026-11-21"]);
    assert_eq!(home.visit(&v1)["tickets"], json!([t1]));
    assert_eq!(home.visit(&v2)["tickets"], json!([]));
    assert_eq!(home.ticket(&t1)["visits"], json!([v1]));
    assert_eq!(home.ticket(&t2)["visits"], json!([]));

    home.json(&["visit", "edit", &v2, "--ticket", &t2]);
    assert_eq!(home.visit(&v2)["tickets"], json!([t2]));
    assert_eq!(home.ticket(&t2)["visits"], json!([v2]));
    // The list shows the same links.
    let list = home.visits();
    let linked: Vec<&Value> = list.iter().map(|v| &v["tickets"]).collect();
    assert_eq!(linked, [&json!([t1]), &json!([t2])]);
}

#[test]
fn identical_records_are_separate_records() {
    // Two visits to the same household on the same day, with nothing else said, are two
    // visits; likewise two tickets with the same title opened in the same second.
    let home = Home::new();
    let args = ["--grid", GRID, "--at", "2026-11-20"];
    let a = home.add_visit(HOUSEHOLD, &args);
    let b = home.add_visit(HOUSEHOLD, &args);
    assert_ne!(a, b);
    let c = home.add_visit("和平路8号", &[]);
    let d = home.add_visit("和平路8号", &[]);
    assert_ne!(c, d);
    assert_eq!(home.visits().len(), 4);
    let t = home.open_ticket("楼道灯坏了", &[]);
    let u = home.open_ticket("楼道灯坏了", &[]);
    assert_ne!(t, u);
    assert_eq!(home.tickets().len(), 2);
    // The same comment twice is two comments.
    home.json(&["ticket", "comment", &t, "已报修"]);
    home.json(&["ticket", "comment", &t, "已报修"]);
    assert_eq!(
        home.ticket(&t)["comments"].as_array().map(Vec::len),
        Some(2)
    );
    let verify = home.json(&["verify"]);
    assert_eq!(verify["bad"], 0, "{verify}");
}

#[test]
fn ids_accept_unique_prefixes_of_six_or_more() {
    let home = Home::new();
    let v = home.add_visit(HOUSEHOLD, &["--note", "原始"]);
    let t = home.open_ticket("修水管", &[]);
    for n in [6, 10, 31, 32] {
        assert_eq!(home.visit(&v[..n])["id"], v.as_str(), "visit prefix {n}");
        assert_eq!(home.ticket(&t[..n])["id"], t.as_str(), "ticket prefix {n}");
    }
    assert_eq!(
        id_of(&home.json(&["visit", "edit", &v[..6], "--note", "前缀编辑"])),
        v
    );
    assert_eq!(home.visit(&v)["note"], "前缀编辑");
    assert_eq!(
        id_of(&home.json(&["ticket", "update", &t[..7], "--status", "in_progress"])),
        t
    );
    home.json(&["ticket", "comment", &t[..8], "已联系物业"]);
    let w = home.add_visit("和平路8号", &["--ticket", &t[..6]]);
    let shown = home.ticket(&t);
    assert_eq!(shown["status"], "in_progress");
    assert_eq!(shown["comments"][0]["text"], "已联系物业");
    assert_eq!(shown["visits"], json!([w]));
    assert_eq!(home.visit(&w)["tickets"], json!([t]), "prefix stored whole");
}

// ---------------------------------------------------------------------------------------
// tickets
// ---------------------------------------------------------------------------------------

#[test]
fn ticket_open_defaults() {
    let home = Home::new();
    let id = home.open_ticket("小区路灯不亮", &[]);
    let tickets = home.tickets();
    assert_eq!(tickets.len(), 1);
    let t = &tickets[0];
    assert_eq!(keys(t), sorted(&TICKET_KEYS), "{t}");
    assert_eq!(t["id"], id.as_str());
    assert_eq!(t["title"], "小区路灯不亮");
    assert_eq!(t["status"], "open");
    assert_eq!(t["priority"], "normal");
    for k in ["category", "household", "grid", "assignee", "note"] {
        assert_eq!(t[k], Value::Null, "absent {k} should be null: {t}");
    }
    assert_eq!(t["opened_by"], home.device_id.as_str());
    assert_recent(&t["opened_at"]);

    let shown = home.ticket(&id);
    let mut expected: Vec<&str> = TICKET_KEYS.to_vec();
    expected.extend(["comments", "visits", "history", "conflicts"]);
    assert_eq!(keys(&shown), sorted(&expected), "{shown}");
    for k in TICKET_KEYS {
        assert_eq!(shown[k], t[k], "field {k} differs between list and show");
    }
    assert_eq!(shown["comments"], json!([]));
    assert_eq!(shown["visits"], json!([]));
    assert_eq!(shown["conflicts"], json!([]));
    assert_eq!(shown["history"].as_array().map(Vec::len), Some(1));
}

#[test]
fn ticket_open_keeps_every_field() {
    let home = Home::new();
    let id = home.open_ticket(
        "楼上漏水，影响楼下住户",
        &[
            "--category",
            "dispute-mediation",
            "--household",
            HOUSEHOLD,
            "--grid",
            GRID,
            "--priority",
            "urgent",
            "--note",
            "张阿姨反映，已拍照",
        ],
    );
    let t = home.ticket(&id);
    assert_eq!(t["title"], "楼上漏水，影响楼下住户");
    assert_eq!(t["category"], "dispute-mediation");
    assert_eq!(t["household"], HOUSEHOLD);
    assert_eq!(t["grid"], GRID);
    assert_eq!(t["priority"], "urgent");
    assert_eq!(t["note"], "张阿姨反映，已拍照");
    assert_eq!(t["status"], "open");
    for p in ["low", "normal", "high"] {
        let id = home.open_ticket("p", &["--priority", p]);
        assert_eq!(home.ticket(&id)["priority"], p);
    }
}

#[test]
fn ticket_update_changes_fields_and_grows_history() {
    let home = Home::new();
    let id = home.open_ticket("电梯异响", &["--note", "三号楼"]);
    let before = home.ticket(&id);
    for (i, (flag, value, field)) in [
        ("--status", "in_progress", "status"),
        ("--priority", "high", "priority"),
        ("--title", "电梯异响，需要维保", "title"),
        ("--status", "resolved", "status"),
        ("--status", "closed", "status"),
        ("--status", "open", "status"),
    ]
    .into_iter()
    .enumerate()
    {
        let answer = home.json(&["ticket", "update", &id, flag, value]);
        assert_eq!(id_of(&answer), id);
        let t = home.ticket(&id);
        assert_eq!(t[field], value, "after {flag} {value}: {t}");
        let history = t["history"].as_array().expect("history");
        assert_eq!(history.len(), i + 2, "one history entry per change: {t}");
        assert_eq!(history[0], before["history"][0], "oldest first");
    }
    let t = home.ticket(&id);
    assert_eq!(t["note"], "三号楼");
    assert_eq!(t["opened_by"], before["opened_by"]);
    assert_eq!(t["opened_at"], before["opened_at"]);
    assert_eq!(t["conflicts"], json!([]));
    assert_eq!(home.tickets().len(), 1, "updates never make a new ticket");
}

#[test]
fn ticket_assign_takes_a_device_id_or_prefix() {
    let home = Home::new();
    let a = home.open_ticket("送药上门", &[]);
    let b = home.open_ticket("调解邻里纠纷", &[]);
    let c = home.open_ticket("政策咨询", &[]);
    home.json(&["ticket", "update", &a, "--assign", &home.device_id]);
    home.json(&["ticket", "update", &b, "--assign", &home.device_id[..8]]);
    assert_eq!(home.ticket(&a)["assignee"], home.device_id.as_str());
    assert_eq!(
        home.ticket(&b)["assignee"],
        home.device_id.as_str(),
        "own id prefix is stored whole"
    );
    assert_eq!(home.ticket(&c)["assignee"], Value::Null);
    // A full 64-hex id of another device is accepted too.
    let other = Home::new();
    home.json(&["ticket", "update", &c, "--assign", &other.device_id]);
    assert_eq!(home.ticket(&c)["assignee"], other.device_id.as_str());

    let mine = home.json(&["ticket", "list", "--assignee", &home.device_id]);
    let ids: Vec<&str> = mine
        .as_array()
        .expect("array")
        .iter()
        .map(|t| t["id"].as_str().expect("id"))
        .collect();
    let mut want = [a.as_str(), b.as_str()];
    want.sort();
    let mut ids = ids;
    ids.sort();
    assert_eq!(ids, want);
    let theirs = home.json(&["ticket", "list", "--assignee", &other.device_id]);
    assert_eq!(theirs.as_array().map(Vec::len), Some(1));
    assert_eq!(theirs[0]["id"], c.as_str());
}

#[test]
fn ticket_comments_keep_order_author_and_text() {
    let home = Home::new();
    let id = home.open_ticket("垃圾分类宣传", &[]);
    let texts = [
        "已张贴海报",
        "周六上午在广场设点，请\"志愿者\"准时到",
        "完成",
    ];
    for (i, text) in texts.iter().enumerate() {
        let answer = home.json(&["ticket", "comment", &id, text]);
        assert!(answer["id"].is_string(), "{answer}");
        let t = home.ticket(&id);
        assert_eq!(t["comments"].as_array().map(Vec::len), Some(i + 1));
        assert_eq!(t["history"].as_array().map(Vec::len), Some(i + 2));
    }
    let t = home.ticket(&id);
    let comments = t["comments"].as_array().expect("comments");
    for (c, text) in comments.iter().zip(texts) {
        assert_eq!(keys(c), sorted(&["author", "text", "at"]), "{c}");
        assert_eq!(c["text"], text);
        assert_eq!(c["author"], home.device_id.as_str());
        assert_recent(&c["at"]);
    }
    assert_eq!(t["status"], "open", "a comment does not change the status");
    let text = home.text(&["ticket", "show", &id]);
    assert!(text.contains("周六上午在广场设点"), "{text}");
}

#[test]
fn ticket_list_filters() {
    let home = Home::new();
    let a = home.open_ticket("1甲", &["--category", "城市管理", "--grid", "东区"]);
    let b = home.open_ticket("2乙", &["--category", "政策咨询", "--grid", "西区"]);
    let c = home.open_ticket("3丙", &["--category", "城市管理", "--grid", "西区"]);
    home.json(&["ticket", "update", &b, "--status", "resolved"]);
    home.json(&["ticket", "update", &c, "--status", "in_progress"]);
    let titles = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["ticket", "list"];
        a.extend_from_slice(args);
        let mut t = home
            .json(&a)
            .as_array()
            .expect("array")
            .iter()
            .map(|t| t["title"].as_str().expect("title").to_string())
            .collect::<Vec<_>>();
        // Tickets opened in the same second may list in either order.
        t.sort();
        t
    };
    assert_eq!(titles(&[]), ["1甲", "2乙", "3丙"]);
    assert_eq!(titles(&["--status", "open"]), ["1甲"]);
    assert_eq!(titles(&["--status", "resolved"]), ["2乙"]);
    assert_eq!(titles(&["--status", "in_progress"]), ["3丙"]);
    assert!(titles(&["--status", "closed"]).is_empty());
    assert_eq!(titles(&["--category", "city-management"]), ["1甲", "3丙"]);
    assert_eq!(titles(&["--grid", "西区"]), ["2乙", "3丙"]);
    assert_eq!(
        titles(&["--grid", "西区", "--category", "城市管理"]),
        ["3丙"]
    );
    assert!(titles(&["--assignee", &home.device_id]).is_empty());
    let _ = a;
}

// ---------------------------------------------------------------------------------------
// output for people
// ---------------------------------------------------------------------------------------

#[test]
fn visit_list_for_people_is_an_aligned_table_with_chinese_text() {
    let home = Home::new();
    let wide = "幸福里社区3号楼2单元201室";
    let narrow = "Apt 7";
    for h in [wide, narrow] {
        home.add_visit(
            h,
            &[
                "--grid",
                "GRIDX",
                "--category",
                "information",
                "--note",
                "NOTEX",
                "--needs",
                "NEEDSX",
                "--at",
                "2026-11-20",
            ],
        );
    }
    let text = home.text(&["visit", "list"]);
    let lines: Vec<&str> = text.lines().collect();
    let row_wide = lines
        .iter()
        .position(|l| l.contains(wide))
        .unwrap_or_else(|| panic!("Chinese household missing or altered:\n{text}"));
    let row_narrow = lines
        .iter()
        .position(|l| l.contains(narrow))
        .unwrap_or_else(|| panic!("household missing:\n{text}"));
    let first_row = row_wide.min(row_narrow);
    assert!(
        lines[..first_row].iter().any(|l| !l.trim().is_empty()
            && l.chars().any(char::is_alphanumeric)
            && !l.contains(wide)
            && !l.contains(narrow)),
        "no header line before the rows:\n{text}"
    );
    // Each column starts at the same display column in both rows, whatever the width of
    // the Chinese household before it.
    let (lw, ln) = (lines[row_wide], lines[row_narrow]);
    let mut compared = 0;
    for token in ["GRIDX", "NOTEX", "NEEDSX", "information", "信息发布"] {
        if let (Some(a), Some(b)) = (display_col(lw, token), display_col(ln, token)) {
            assert_eq!(a, b, "column of {token} not aligned:\n{lw}\n{ln}");
            compared += 1;
        }
    }
    assert!(
        compared > 0,
        "neither grid, note, needs nor category shown:\n{text}"
    );
    // A table drawn with borders is rectangular on screen.
    let bordered = |l: &str| l.trim_end().ends_with(['|', '│', '┃']);
    if bordered(lw) && bordered(ln) {
        assert_eq!(
            display_width(lw.trim_end()),
            display_width(ln.trim_end()),
            "rows of different display width:\n{lw}\n{ln}"
        );
    }
}

#[test]
fn ticket_list_for_people_keeps_chinese_titles() {
    let home = Home::new();
    home.open_ticket("楼道堆放杂物，存在消防隐患", &["--grid", "GRIDX"]);
    home.open_ticket("Leak", &["--grid", "GRIDX"]);
    let text = home.text(&["ticket", "list"]);
    let lines: Vec<&str> = text.lines().collect();
    let a = lines
        .iter()
        .find(|l| l.contains("楼道堆放杂物，存在消防隐患"))
        .unwrap_or_else(|| panic!("Chinese title missing:\n{text}"));
    let b = lines
        .iter()
        .find(|l| l.contains("Leak"))
        .unwrap_or_else(|| panic!("title missing:\n{text}"));
    if let (Some(x), Some(y)) = (display_col(a, "GRIDX"), display_col(b, "GRIDX")) {
        assert_eq!(x, y, "grid column not aligned:\n{a}\n{b}");
    }
}

// ---------------------------------------------------------------------------------------
// Other members' text on the terminal
// ---------------------------------------------------------------------------------------

/// What a hostile member typed: an OSC that retitles the window (ended by BEL), a clear
/// screen, colours, a carriage return that overwrites the line, a right-to-left override,
/// and a C1 CSI.
const ESCAPES: &str =
    "\x1b]0;pwned\x07\x1b[2J\x1b[31m红字\x1b[0m\r覆盖\u{202e}gpj.exe\u{9b}31m\x08\x7f";

/// A character that does something to a terminal rather than show.
fn acts_on_terminal(c: char) -> bool {
    (c.is_control() && c != '\n') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn assert_printable(text: &str, what: &str) {
    let bad: Vec<char> = text.chars().filter(|c| acts_on_terminal(*c)).collect();
    assert!(
        bad.is_empty(),
        "{what} prints control characters {bad:?}:\n{text}"
    );
}

/// A volunteer's day of records carrying escape sequences reaches the station; every human
/// view there (shows with history, lists, members, conflicts, the report, an error that
/// quotes the text) prints them as visible stand-ins, and `--json` carries them exactly.
#[test]
fn escape_sequences_from_another_member_never_reach_the_terminal() {
    let station = Home::station();
    let serve = Serving::start(&station);
    let v = Home::new();
    let name = format!("张阿姨{ESCAPES}");
    let token =
        station.json(&["enroll", &v.device_id, "--name", &name, "--grid", "和平里"])["token"]
            .as_str()
            .expect("token")
            .to_string();
    v.json(&["join", &token, "--station", &serve.addr]);

    // The volunteer's day: a ticket, a visit linked to it, a comment, edits of both.
    let title = format!("楼道灯{ESCAPES}");
    let t = v.open_ticket(&title, &["--note", ESCAPES]);
    let visit = v.add_visit(
        &format!("和平里{ESCAPES}"),
        &[
            "--ticket",
            &t,
            "--note",
            ESCAPES,
            "--resident",
            ESCAPES,
            "--needs",
            ESCAPES,
        ],
    );
    v.json(&["ticket", "comment", &t, ESCAPES]);
    v.json(&[
        "visit",
        "edit",
        &visit,
        "--note",
        &format!("改{ESCAPES}\n第二行"),
    ]);
    v.json(&["ticket", "update", &t, "--status", "in_progress"]);
    v.json(&["sync"]);
    // The station works on the same ticket, so both ends hold both kinds of change.
    station.json(&["ticket", "comment", &t, "已派人"]);
    v.json(&["sync"]);

    for home in [&station, &v] {
        for args in [
            vec!["ticket", "show", t.as_str()],
            vec!["visit", "show", visit.as_str()],
            vec!["ticket", "list"],
            vec!["visit", "list"],
            vec!["members"],
            vec!["conflicts"],
            vec!["status"],
        ] {
            let out = home.text(&args);
            assert_printable(&out, &show_args(&args));
        }
        let shown = home.text(&["ticket", "show", &t]);
        assert!(
            shown.contains("␛]0;pwned␇␛[2J"),
            "no visible stand-in:\n{shown}"
        );
        // A note's own lines stay lines.
        let shown = home.text(&["visit", "show", &visit]);
        assert!(
            shown.lines().any(|l| l.trim() == "第二行") && !shown.contains('␊'),
            "the note's second line is not a line of its own:\n{shown}"
        );

        // --json: the text exactly as written.
        let k = home.json(&["ticket", "show", &t]);
        assert_eq!(k["title"], title.as_str());
        assert_eq!(k["note"], ESCAPES);
        assert!(
            k["comments"]
                .as_array()
                .expect("comments")
                .iter()
                .any(|c| c["text"] == ESCAPES),
            "{k}"
        );
        let shown = home.json(&["visit", "show", &visit]);
        assert_eq!(shown["residents"], json!([ESCAPES]));
        assert_eq!(shown["needs"], ESCAPES);
        assert_eq!(shown["note"], format!("改{ESCAPES}\n第二行"));
    }
    let report = station.text(&["report"]);
    assert_printable(&report, "report");
    assert!(report.contains("张阿姨␛"), "{report}");
    let members = station.json(&["members"]);
    assert!(
        array(members).iter().any(|m| m["name"] == name.as_str()),
        "members --json lost the name as written"
    );
    // An error line that quotes the text.
    let (code, stderr) = station.fail(&["visit", "list", "--category", ESCAPES]);
    assert_eq!(code, 1);
    assert_printable(stderr.trim_end(), "an error line");
}

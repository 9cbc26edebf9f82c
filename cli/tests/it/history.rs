//! `visit show` and `ticket show` list the record's history, read from its stored signed
//! changes: each entry says who (device id and name), when (RFC 3339), and what changed
//! (each field set, with its new value).

use crate::util::*;
use serde_json::{Value, json};

/// The `history` array of a shown record, each entry checked for its keys, author and time.
fn history(home: &Home, shown: &Value) -> Vec<Value> {
    let h = shown["history"]
        .as_array()
        .unwrap_or_else(|| panic!("no history array: {shown}"))
        .clone();
    for e in &h {
        assert_eq!(
            keys(e),
            sorted(&["hash", "author", "author_name", "at", "message", "changes"]),
            "{e}"
        );
        assert!(is_hex(e["hash"].as_str().unwrap_or_default(), 64), "{e}");
        assert_eq!(e["author"], home.device_id.as_str(), "{e}");
        assert_eq!(e["author_name"], "测试员", "{e}");
        assert_recent(&e["at"]);
    }
    h
}

/// The (field, value) pairs of one entry.
fn changes(e: &Value) -> Value {
    e["changes"].clone()
}

#[test]
fn visit_history_names_author_time_fields_and_values() {
    let home = Home::new();
    let v = home.add_visit(
        "和平里3号楼201室",
        &[
            "--grid",
            "和平里",
            "--category",
            "扶贫解困",
            "--resident",
            "王秀英",
            "--at",
            "2026-11-20T09:30:00+08:00",
        ],
    );
    let t = home.open_ticket("送米面油", &["--grid", "和平里"]);
    home.json(&[
        "visit",
        "edit",
        &v,
        "--note",
        "独居老人，腿脚不便",
        "--resident",
        "王秀英",
        "--resident",
        "李建国",
        "--ticket",
        &t,
    ]);
    let h = history(&home, &home.visit(&v));
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h[0]["message"], "add visit");
    assert_eq!(
        changes(&h[0]),
        json!([
            {"field": "household", "value": "和平里3号楼201室"},
            {"field": "grid", "value": "和平里"},
            {"field": "category", "value": "poverty-relief"},
            {"field": "visited_at", "value": "2026-11-20T09:30:00+08:00"},
            {"field": "residents", "value": ["王秀英"]},
        ])
    );
    assert_eq!(
        changes(&h[1]),
        json!([
            {"field": "note", "value": "独居老人，腿脚不便"},
            {"field": "residents", "value": ["王秀英", "李建国"]},
            {"field": "tickets", "value": [t]},
        ])
    );
    // The history's hashes are the stored changes' hashes: re-reading gives the same.
    assert_eq!(history(&home, &home.visit(&v)), h);

    // For people: the author's name, and each field with its new value.
    let text = home.text(&["visit", "show", &v]);
    let table = text.split("History:").nth(1).expect("a History section");
    for needle in [
        "测试员",
        "add visit",
        "edit visit",
        "note = 独居老人，腿脚不便",
        "residents = 王秀英、李建国",
    ] {
        assert!(table.contains(needle), "no {needle:?} in:\n{table}");
    }
}

#[test]
fn ticket_history_shows_updates_assignments_and_comments() {
    let home = Home::new();
    let t = home.open_ticket(
        "楼道灯坏了",
        &[
            "--grid",
            "和平里",
            "--priority",
            "high",
            "--category",
            "city-management",
        ],
    );
    home.json(&[
        "ticket",
        "update",
        &t,
        "--status",
        "in_progress",
        "--assign",
        &home.device_id[..8],
    ]);
    home.json(&["ticket", "comment", &t, "已报修，等待物业"]);
    home.json(&["ticket", "update", &t, "--status", "resolved"]);
    let h = history(&home, &home.ticket(&t));
    assert_eq!(h.len(), 4, "{h:?}");
    let first = changes(&h[0]);
    let fields: Vec<&str> = first
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["field"].as_str().expect("field"))
        .collect();
    assert_eq!(
        fields,
        [
            "title",
            "status",
            "priority",
            "category",
            "grid",
            "opened_at",
            "due",
            "channel"
        ],
        "{first}"
    );
    assert_eq!(first[0]["value"], "楼道灯坏了");
    assert_eq!(first[1]["value"], "open");
    assert_eq!(first[2]["value"], "high");
    assert_eq!(
        changes(&h[1]),
        json!([
            {"field": "status", "value": "in_progress"},
            {"field": "assignee", "value": home.device_id},
        ])
    );
    assert_eq!(h[2]["message"], "comment");
    assert_eq!(
        changes(&h[2]),
        json!([{"field": "comment", "value": "已报修，等待物业"}])
    );
    // Resolving records when, for the report's time to resolve and on-time counts.
    let resolved_at = home.ticket(&t)["resolved_at"].clone();
    assert!(resolved_at.is_string(), "{resolved_at}");
    assert_eq!(
        changes(&h[3]),
        json!([
            {"field": "status", "value": "resolved"},
            {"field": "resolved_at", "value": resolved_at},
        ])
    );
    // Oldest first: each entry's time is no earlier than the one before.
    for pair in h.windows(2) {
        assert!(
            rfc3339_secs(pair[0]["at"].as_str().unwrap())
                <= rfc3339_secs(pair[1]["at"].as_str().unwrap()),
            "{pair:?}"
        );
    }
    let text = home.text(&["ticket", "show", &t]);
    for needle in ["status = resolved", "comment = 已报修，等待物业", "测试员"] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
}

/// Every time a node prints is in the machine's time zone: a plain `--at` date, the time a
/// visit was logged, and the times of its history (read from the changes' own timestamps)
/// share one offset, here China Standard Time.
#[test]
fn times_print_in_the_machines_time_zone() {
    let home = Home::new();
    let in_shanghai = |args: &[&str]| -> Value {
        let out = home
            .command(true, args)
            .env("TZ", "Asia/Shanghai")
            .output()
            .expect("run yizhan");
        assert_success(&out, args);
        parse_json(&out.stdout, args)
    };
    let dated = id_of(&in_shanghai(&[
        "visit",
        "add",
        "--household",
        "和平里 1 号",
        "--at",
        "2026-11-20",
    ]));
    let now = id_of(&in_shanghai(&[
        "visit",
        "add",
        "--household",
        "和平里 2 号",
    ]));
    let first = in_shanghai(&["visit", "show", &dated]);
    assert_eq!(first["visited_at"], "2026-11-20T00:00:00+08:00");
    let second = in_shanghai(&["visit", "show", &now]);
    let mut times = vec![
        second["visited_at"]
            .as_str()
            .expect("visited_at")
            .to_string(),
    ];
    for shown in [&first, &second] {
        for entry in shown["history"].as_array().expect("history") {
            times.push(entry["at"].as_str().expect("at").to_string());
        }
    }
    for t in &times {
        assert!(
            t.ends_with("+08:00"),
            "{t} is not in China Standard Time: {times:?}"
        );
    }
}

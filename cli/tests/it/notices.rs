//! Notices (信息发布) through the binary, over loopback: a station publishes to one grid, to
//! another and to the whole site; a volunteer's laptop holds its grid's and the site-wide
//! ones and not the other grid's, lists them offline, marks one read, and the mark reaches
//! the station; a volunteer cannot publish; notices past `until` are hidden without
//! `--all`; human output in Chinese and English.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::util::{Home, Serving, array, id_of, join, run_in, text_in};

fn publish(station: &Home, title: &str, body: &str, extra: &[&str]) -> String {
    let mut args = vec!["notice", "publish", "--title", title, "--body", body];
    args.extend_from_slice(extra);
    id_of(&station.json(&args))
}

fn notices(home: &Home, all: bool) -> Vec<Value> {
    let mut args = vec!["notice", "list"];
    if all {
        args.push("--all");
    }
    array(home.json(&args))
}

fn ids(list: &[Value]) -> BTreeSet<String> {
    list.iter()
        .map(|n| n["id"].as_str().expect("id").to_string())
        .collect()
}

fn find<'a>(list: &'a [Value], id: &str) -> &'a Value {
    list.iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("notice {id} not in {list:?}"))
}

#[test]
fn notices_reach_their_grids_are_read_offline_and_the_mark_reaches_the_station() {
    let station = Home::station();
    let serving = Serving::start(&station);
    let a = Home::new();
    let b = Home::new();
    join(&station, &a, "李强", &["和平里"], &serving.addr);
    join(&station, &b, "王芳", &["光明街"], &serving.addr);

    let water = publish(
        &station,
        "停水通知",
        "12月10日 8:00-12:00 和平里停水，请提前储水。",
        &["--grid", "和平里", "--until", "2099-01-01T00:00:00+08:00"],
    );
    let lights = publish(
        &station,
        "路灯检修",
        "光明街路灯本周检修。",
        &["--grid", "光明街"],
    );
    let meeting = publish(&station, "周五例会", "周五下午三点，驿站二楼。", &[]);
    let old = publish(
        &station,
        "国庆值班",
        "国庆值班表已排好。",
        &["--until", "2026-10-08"],
    );

    // The station holds all four; the one past its `until` only with --all.
    assert_eq!(
        ids(&notices(&station, false)),
        BTreeSet::from([water.clone(), lights.clone(), meeting.clone()])
    );
    let all = notices(&station, true);
    assert_eq!(all.len(), 4);
    let w = find(&all, &water);
    let keys: Vec<&str> = w
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "id",
            "title",
            "body",
            "grids",
            "published_at",
            "until",
            "read",
            "read_by"
        ]),
        "{w}"
    );
    assert_eq!(w["title"], "停水通知");
    assert_eq!(w["body"], "12月10日 8:00-12:00 和平里停水，请提前储水。");
    assert_eq!(w["grids"], serde_json::json!(["和平里"]));
    assert_eq!(w["until"], "2099-01-01T00:00:00+08:00");
    assert_eq!(w["read"], false);
    assert_eq!(w["read_by"], serde_json::json!([]));
    assert_eq!(find(&all, &meeting)["grids"], serde_json::json!([]));
    assert_eq!(find(&all, &meeting)["until"], Value::Null);

    // The 和平里 laptop gets its grid's and the site-wide ones, never 光明街's.
    a.json(&["sync"]);
    assert_eq!(
        ids(&notices(&a, true)),
        BTreeSet::from([water.clone(), meeting.clone(), old.clone()])
    );
    assert_eq!(
        ids(&notices(&a, false)),
        BTreeSet::from([water.clone(), meeting.clone()])
    );
    b.json(&["sync"]);
    assert_eq!(
        ids(&notices(&b, true)),
        BTreeSet::from([lights.clone(), meeting.clone(), old.clone()])
    );

    // Offline: the station is gone; the laptop lists and marks read by a prefix.
    drop(serving);
    let marked = a.json(&["notice", "read", &water[..8]]);
    assert_eq!(marked["id"], water.as_str());
    let mine = notices(&a, false);
    assert_eq!(find(&mine, &water)["read"], true);
    assert_eq!(
        find(&mine, &water)["read_by"],
        serde_json::json!([a.device_id])
    );
    assert_eq!(find(&mine, &meeting)["read"], false);
    // Reading it again writes nothing more.
    a.json(&["notice", "read", &water]);
    assert_eq!(
        find(&notices(&a, false), &water)["read_by"],
        serde_json::json!([a.device_id])
    );
    // Not a notice, too short a prefix: exit 1.
    assert_eq!(a.fail(&["notice", "read", "0000000000"]).0, 1);
    assert_eq!(a.fail(&["notice", "read", &water[..4]]).0, 1);

    // Back online: the mark reaches the station, which shows who read it.
    let serving = Serving::start(&station);
    let synced = a.json(&["sync", &serving.addr]);
    assert!(synced["sent"].as_u64().unwrap() >= 1, "{synced}");
    let at_station = notices(&station, false);
    let w = find(&at_station, &water);
    assert_eq!(w["read_by"], serde_json::json!([a.device_id]), "{w}");
    assert_eq!(w["read"], false, "the station itself has not read it");
    assert_eq!(
        find(&at_station, &meeting)["read_by"],
        serde_json::json!([])
    );

    // People see names, in their language.
    let zh = text_in(&station, "zh_CN.UTF-8", &["notice", "list"]);
    for want in [
        "停水通知",
        "已读人员",
        "李强",
        "发布范围",
        "和平里",
        "全站",
        "长期有效",
        "未读",
    ] {
        assert!(zh.contains(want), "{want:?} missing from:\n{zh}");
    }
    assert!(!zh.contains(&a.device_id), "{zh}");
    assert!(
        !zh.contains("国庆值班"),
        "an ended notice without --all:\n{zh}"
    );
    let en = text_in(&station, "C", &["notice", "list", "--all"]);
    for want in [
        "停水通知",
        "read by",
        "李强",
        "whole site",
        "no end",
        "ended",
        "国庆值班",
    ] {
        assert!(en.contains(want), "{want:?} missing from:\n{en}");
    }
    let laptop = text_in(&a, "zh_CN.UTF-8", &["notice", "list"]);
    assert!(laptop.contains("[已读]"), "{laptop}");
    assert!(
        laptop.contains("12月10日 8:00-12:00 和平里停水"),
        "{laptop}"
    );
    let said = text_in(&a, "zh_CN.UTF-8", &["notice", "read", &meeting]);
    assert_eq!(said.trim(), "已标记为已读：周五例会");
    let said = text_in(&station, "C", &["notice", "read", &meeting]);
    assert_eq!(said.trim(), "Marked as read: 周五例会");

    // A volunteer may not publish: exit 1, one line, in its language, nothing written.
    let args = [
        "notice",
        "publish",
        "--title",
        "假通知",
        "--body",
        "不应发布",
    ];
    assert_eq!(a.fail(&args).0, 1);
    let out = run_in(&a, "zh_CN.UTF-8", &args);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("只有驿站可以发布通知"), "{stderr}");
    let out = run_in(&a, "C", &args);
    assert!(String::from_utf8_lossy(&out.stderr).contains("only a station may publish a notice"));
    assert_eq!(notices(&a, true).len(), 3);
    // Nor without a title or body: exit 2 (usage) or 1 (empty).
    assert_eq!(
        station
            .fail(&["notice", "publish", "--title", " ", "--body", "x"])
            .0,
        1
    );
    assert_eq!(
        station
            .run(&["notice", "publish", "--title", "x"])
            .status
            .code(),
        Some(2)
    );

    // Empty lists say so.
    let fresh = Home::station();
    assert_eq!(
        text_in(&fresh, "zh_CN.UTF-8", &["notice", "list"]).trim(),
        "暂无有效通知（加 --all 可查看已到期的通知）。"
    );
    assert_eq!(
        text_in(&fresh, "C", &["notice", "list", "--all"]).trim(),
        "No notices."
    );
}

#[test]
fn the_report_counts_each_notice_and_the_volunteers_who_read_it() {
    let station = Home::station();
    let serving = Serving::start(&station);
    let a = Home::new();
    let b = Home::new();
    join(&station, &a, "李强", &["和平里"], &serving.addr);
    join(&station, &b, "王芳", &["光明街"], &serving.addr);
    let water = publish(&station, "停水通知", "周三停水。", &["--grid", "和平里"]);
    let meeting = publish(&station, "周五例会", "周五下午三点。", &[]);
    for v in [&a, &b] {
        v.json(&["sync"]);
        v.json(&["notice", "read", &meeting]);
    }
    a.json(&["notice", "read", &water]);
    for v in [&a, &b] {
        v.json(&["sync"]);
    }

    let report = station.json(&["report"]);
    let notices = array(report["notices"].clone());
    assert_eq!(notices.len(), 2, "{report}");
    let n = find(&notices, &water);
    assert_eq!(
        n,
        &serde_json::json!({
            "id": water, "title": "停水通知", "grids": ["和平里"], "readers": 1, "of": 1
        })
    );
    let n = find(&notices, &meeting);
    assert_eq!(
        (n["readers"].as_u64(), n["of"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(n["grids"], serde_json::json!([]));

    // A revoked volunteer is no longer one the notice is for; its mark stays listed.
    station.json(&["revoke", &b.device_id]);
    let report = station.json(&["report"]);
    let n = find(&array(report["notices"].clone()), &meeting).clone();
    assert_eq!(
        (n["readers"].as_u64(), n["of"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        find(&notices_of(&station), &meeting)["read_by"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A period that ends before they were published has none.
    let before = station.json(&["report", "--until", "2026-01-01"]);
    assert_eq!(before["notices"], serde_json::json!([]));

    // People read a table in Markdown and in HTML, in their language.
    let md = text_in(&station, "zh_CN.UTF-8", &["report"]);
    assert!(md.contains("## 八、信息发布\n"), "{md}");
    assert!(
        md.contains("| 通知 | 发布范围 | 已读 | 应读 | 编号 |\n| --- | --- | ---: | ---: | --- |"),
        "{md}"
    );
    assert!(md.contains("| 停水通知 | 和平里 | 1 | 1 |"), "{md}");
    assert!(md.contains("| 周五例会 | 全站 | 1 | 1 |"), "{md}");
    let md = text_in(&station, "C", &["report"]);
    assert!(md.contains("## 8. Notices\n"), "{md}");
    assert!(md.contains("| 周五例会 | whole site | 1 | 1 |"), "{md}");
    let html = text_in(&station, "zh_CN.UTF-8", &["report", "--format", "html"]);
    assert!(html.contains("<h2>八、信息发布</h2>"), "{html}");
    assert!(html.contains("<td>停水通知</td><td>和平里</td>"), "{html}");
    let none = text_in(&station, "C", &["report", "--until", "2026-01-01"]);
    assert!(
        none.contains("No notices were published in the period."),
        "{none}"
    );
}

fn notices_of(home: &Home) -> Vec<Value> {
    notices(home, true)
}

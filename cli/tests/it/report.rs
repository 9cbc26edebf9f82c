//! `yizhan report` against a hand-counted fixture.
//!
//! A station and three volunteers (one never syncs, one is revoked). Two volunteers import
//! visit logs from `fixtures/report/*.csv` and sync them to the station over real QUIC on
//! loopback; the station imports its own visits and five tickets (with `opened_at` in
//! October and November), then opens, updates and resolves three more tickets now. Every
//! figure of `report --json` is checked against counts worked out by hand from the fixture
//! files (see the comments), for three windows. Ticket resolution times are the signed
//! changes' own times, so the expected medians are computed from `ticket show`'s history.
//!
//! The HTML report is rendered in headless Chromium and the screenshot is decoded: every
//! bar of every chart must be there, in its colour, with a length in proportion to its
//! count.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::*;
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/report");
const DAY: i64 = 86_400;

fn fixture(name: &str) -> String {
    format!("{FIXTURES}/{name}")
}

/// The station enrolls `v` for `grid` and returns the token; `v` joins when `join` is set.
fn enroll(station: &Home, v: &Home, name: &str, grid: &str, join: Option<&str>) {
    let token = station.json(&[
        "enroll",
        v.device_id.as_str(),
        "--name",
        name,
        "--grid",
        grid,
    ])["token"]
        .as_str()
        .expect("token")
        .to_string();
    if let Some(addr) = join {
        v.json(&["join", token.as_str(), "--station", addr]);
    }
}

fn import_visits(home: &Home, file: &str, n: u64) {
    let f = fixture(file);
    let v = home.json(&["import", "--kind", "visits", "--format", "csv", f.as_str()]);
    assert_eq!(v["imported"], n, "{file}");
}

fn time_plus(secs: i64) -> String {
    chrono::DateTime::from_timestamp(now_secs() + secs, 0)
        .expect("a time")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The fixture, built once per test that needs it.
struct Site {
    station: Home,
    zhang: Home,
    /// Device ids by name.
    ids: BTreeMap<&'static str, String>,
    /// Ticket ids by title.
    tickets: BTreeMap<String, String>,
}

fn build_site() -> Site {
    let station = Home::station();
    let serve = Serving::start(&station);
    let zhang = Home::new();
    let li = Home::new();
    let wang = Home::new();
    let zhao = Home::new();
    enroll(&station, &zhang, "张阿姨", "和平里", Some(&serve.addr));
    enroll(&station, &li, "李叔", "幸福路", Some(&serve.addr));
    enroll(&station, &wang, "王姐", "和平里", None); // enrolled, never syncs
    enroll(&station, &zhao, "赵哥", "幸福路", None);
    station.json(&["revoke", zhao.device_id.as_str(), "--reason", "搬走了"]);

    import_visits(&zhang, "zhang_visits.csv", 6);
    import_visits(&li, "li_visits.csv", 4);
    import_visits(&station, "station_visits.csv", 3);
    for v in [&zhang, &li] {
        let s = v.json(&["sync"]);
        assert_eq!(s["rejected"], 0, "{s}");
    }
    drop(serve);
    assert_eq!(
        station.visits().len(),
        13,
        "every visit reached the station"
    );

    let f = fixture("tickets.csv");
    station.json(&["import", "--kind", "tickets", "--format", "csv", f.as_str()]);
    let t6 = station.open_ticket("路灯报修", &["--category", "城市管理", "--grid", "幸福路"]);
    let t7 = station.open_ticket(
        "困难家庭慰问",
        &["--category", "扶贫解困", "--grid", "和平里"],
    );
    station.open_ticket("社区活动场地", &["--grid", "光明街"]);
    let mut tickets: BTreeMap<String, String> = station
        .tickets()
        .iter()
        .map(|t| (t["title"].as_str().unwrap().to_string(), id_of(t)))
        .collect();
    assert_eq!(tickets.len(), 8);
    let update = |id: &str, status: &str| {
        station.json(&["ticket", "update", id, "--status", status]);
    };
    update(&tickets["低保申请复核"], "resolved"); // T1
    update(&tickets["楼道堆物清理"], "closed"); // T3
    update(&t6, "resolved");
    update(&t7, "in_progress");
    update(&t7, "resolved");
    update(&t7, "closed");
    tickets.insert("T6".into(), t6);

    let ids = BTreeMap::from([
        ("station", station.device_id.clone()),
        ("张阿姨", zhang.device_id.clone()),
        ("李叔", li.device_id.clone()),
        ("王姐", wang.device_id.clone()),
    ]);
    Site {
        station,
        zhang,
        ids,
        tickets,
    }
}

impl Site {
    /// Seconds from a ticket's `opened_at` to the time of history entry `entry` (the
    /// change that resolved it).
    fn resolve_secs(&self, title: &str, entry: usize) -> i64 {
        let t = self.station.ticket(&self.tickets[title]);
        let opened = rfc3339_secs(t["opened_at"].as_str().unwrap());
        let history = t["history"].as_array().expect("history");
        let at = rfc3339_secs(history[entry]["at"].as_str().expect("history at"));
        at - opened
    }

    fn report(&self, args: &[&str]) -> Value {
        let mut all = vec!["report"];
        all.extend_from_slice(args);
        self.station.json(&all)
    }
}

fn median(mut v: Vec<i64>) -> f64 {
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
    }
}

/// The seven categories in order, then null: as `by_category` lists them.
const CATS: [&str; 7] = [
    "resident-services",
    "poverty-relief",
    "co-governance",
    "city-management",
    "dispute-mediation",
    "policy-consultation",
    "information",
];

fn visit_categories(counts: [u64; 7], none: u64) -> Value {
    let mut v: Vec<Value> = CATS
        .iter()
        .zip(counts)
        .map(|(c, n)| json!({ "category": c, "count": n }))
        .collect();
    if none > 0 {
        v.push(json!({ "category": null, "count": none }));
    }
    Value::Array(v)
}

/// (opened, resolved, open, median) for each category in order, then null's if given.
fn ticket_categories(
    rows: [(u64, u64, u64, Option<f64>); 7],
    none: Option<(u64, u64, u64)>,
) -> Value {
    let mut v: Vec<Value> = CATS
        .iter()
        .zip(rows)
        .map(|(c, (o, r, p, m))| {
            json!({ "category": c, "opened": o, "resolved": r, "open": p, "median_resolve_secs": m })
        })
        .collect();
    if let Some((o, r, p)) = none {
        v.push(json!({ "category": null, "opened": o, "resolved": r, "open": p, "median_resolve_secs": null }));
    }
    Value::Array(v)
}

fn stale(site: &Site, name: &str, grids: &[&str], last: Option<&str>, until: &str) -> Value {
    json!({
        "device_id": site.ids[name],
        "name": name,
        "grids": grids,
        "last_sync": last,
        "days_since_sync": last.map(|l| (rfc3339_ms(until) - rfc3339_ms(l)).div_euclid(DAY * 1000)),
    })
}

/// Milliseconds since the epoch (a sync's time has milliseconds).
fn rfc3339_ms(s: &str) -> i64 {
    let frac = s
        .split_once('.')
        .map(|(_, f)| f.trim_end_matches('Z'))
        .map_or(0, |f| {
            format!("{f:0<3}")[..3].parse::<i64>().expect("digits")
        });
    rfc3339_secs(s) * 1000 + frac
}

/// The station's last sync with each volunteer, from `status --json`.
fn last_syncs(site: &Site) -> BTreeMap<String, String> {
    site.station.json(&["status"])["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .filter_map(|p| {
            Some((
                p["device_id"].as_str()?.to_string(),
                p["last_sync"].as_str()?.to_string(),
            ))
        })
        .collect()
}

#[test]
fn every_figure_matches_the_hand_counted_fixture() {
    let site = build_site();
    let s = &site.station;
    // 张阿姨 and 李叔 synced with the station while the fixture was built; 王姐 never did.
    let syncs = last_syncs(&site);
    for name in ["张阿姨", "李叔"] {
        assert!(syncs.contains_key(&site.ids[name]), "{name} never synced");
    }
    assert!(!syncs.contains_key(&site.ids["王姐"]));

    // ---- October: [2026-10-01, 2026-11-01) -------------------------------------------
    let oct = site.report(&["--since", "2026-10-01", "--until", "2026-11-01T00:00:00Z"]);
    assert_eq!(oct["since"], "2026-10-01T00:00:00Z");
    assert_eq!(oct["until"], "2026-11-01T00:00:00Z");
    assert_eq!(oct["whole_site"], true);
    assert_eq!(oct["node"]["role"], "station");
    assert_eq!(oct["node"]["device_id"], site.ids["station"]);
    assert_recent(&oct["generated_at"]);
    // Visits in October. 张阿姨: rows 1, 2, 3 (23:59:59 on the 31st) and 6 (08:00+08:00 on
    // the 1st is exactly the start); row 4 (exactly at the end) and row 5 (a second before
    // the start) are out. 李叔: rows 1-3. Station: rows 1-2.
    assert_eq!(oct["visits"]["total"], 9);
    assert_eq!(
        oct["visits"]["by_grid"],
        json!([
            { "grid": "和平里", "count": 4 },
            { "grid": "幸福路", "count": 3 },
            { "grid": "光明街", "count": 2 },
        ])
    );
    // resident z3; poverty z1 z2; co-governance l3; city l1 l2; dispute -; policy z6;
    // information s1; none s2.
    assert_eq!(
        oct["visits"]["by_category"],
        visit_categories([1, 2, 1, 2, 0, 1, 1], 1)
    );
    assert_eq!(
        oct["visits"]["by_volunteer"],
        json!([
            { "device_id": site.ids["张阿姨"], "name": "张阿姨", "count": 4 },
            { "device_id": site.ids["李叔"], "name": "李叔", "count": 3 },
            { "device_id": site.ids["station"], "name": "幸福里工作站", "count": 2 },
        ])
    );
    // Tickets opened in October: 低保申请复核 (T1), 临时救助 (T2), 楼道堆物清理 (T3).
    // Every resolution happened today, after the window: none resolved. Open as of Nov 1:
    // T1 (open), T3 (in progress), T4 邻里噪音纠纷 (opened in September); T2 was imported
    // resolved, and its first change (the import) is all there is to judge it by.
    let t = &oct["tickets"];
    assert_eq!(
        (&t["opened"], &t["resolved"], &t["open"]),
        (&json!(3), &json!(0), &json!(3))
    );
    assert_eq!(t["median_resolve_secs"], Value::Null);
    assert_eq!(
        t["by_category"],
        ticket_categories(
            [
                (0, 0, 0, None),
                (2, 0, 1, None),
                (0, 0, 0, None),
                (1, 0, 1, None),
                (0, 0, 1, None),
                (0, 0, 0, None),
                (0, 0, 0, None),
            ],
            None
        )
    );
    // Judged by the latest sync: 张阿姨 and 李叔 synced today, after Oct 25. 王姐 never
    // synced; 赵哥 is revoked.
    assert_eq!(oct["stale_after_days"], 7);
    assert_eq!(
        oct["volunteers_not_synced"],
        json!([stale(
            &site,
            "王姐",
            &["和平里"],
            None,
            "2026-11-01T00:00:00Z"
        )])
    );

    // ---- November to tomorrow ---------------------------------------------------------
    let tomorrow = time_plus(DAY);
    let nov = site.report(&["--since", "2026-11-01", "--until", tomorrow.as_str()]);
    assert_eq!(nov["until"], tomorrow.as_str());
    // 张阿姨 row 4 (dispute), 李叔 row 4 (city), station row 3 (information).
    assert_eq!(nov["visits"]["total"], 3);
    assert_eq!(
        nov["visits"]["by_grid"],
        json!([
            { "grid": "光明街", "count": 1 },
            { "grid": "和平里", "count": 1 },
            { "grid": "幸福路", "count": 1 },
        ])
    );
    assert_eq!(
        nov["visits"]["by_category"],
        visit_categories([0, 0, 0, 1, 1, 0, 1], 0)
    );
    let mut by_vol: Vec<(String, u64)> = nov["visits"]["by_volunteer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_string(),
                v["count"].as_u64().unwrap(),
            )
        })
        .collect();
    by_vol.sort();
    assert_eq!(
        by_vol,
        vec![
            ("幸福里工作站".into(), 1),
            ("张阿姨".into(), 1),
            ("李叔".into(), 1)
        ]
    );
    // Opened since Nov 1: T5 医保政策咨询 (Nov 3), and today 路灯报修 (T6), 困难家庭慰问
    // (T7), 社区活动场地 (T8, no category). Resolved today: T1, T2 (its import), T3 (closed),
    // T6, T7 (once: resolved then closed). Open: T4, T5, T8.
    let d1 = site.resolve_secs("低保申请复核", 1);
    let d2 = site.resolve_secs("临时救助", 0);
    let d3 = site.resolve_secs("楼道堆物清理", 1);
    let d6 = site.resolve_secs("T6", 1);
    let d7 = site.resolve_secs("困难家庭慰问", 2);
    assert!(d1 > 40 * DAY && d6 >= 0 && d7 >= 0, "{d1} {d6} {d7}");
    let t = &nov["tickets"];
    assert_eq!(
        (&t["opened"], &t["resolved"], &t["open"]),
        (&json!(4), &json!(5), &json!(3))
    );
    assert_eq!(
        t["median_resolve_secs"],
        json!(median(vec![d1, d2, d3, d6, d7]))
    );
    assert_eq!(
        t["by_category"],
        ticket_categories(
            [
                (0, 0, 0, None),
                (1, 3, 0, Some(median(vec![d1, d2, d7]))),
                (0, 0, 0, None),
                (1, 2, 0, Some(median(vec![d3, d6]))),
                (0, 0, 1, None),
                (1, 0, 1, None),
                (0, 0, 0, None),
            ],
            Some((1, 0, 1))
        )
    );
    assert_eq!(
        nov["volunteers_not_synced"],
        json!([stale(&site, "王姐", &["和平里"], None, &tomorrow)])
    );

    // ---- Everything, to eight days from now ---------------------------------------------
    let later = time_plus(8 * DAY);
    let all = site.report(&["--until", later.as_str()]);
    assert_eq!(all["since"], Value::Null);
    assert_eq!(all["visits"]["total"], 13);
    assert_eq!(
        all["visits"]["by_grid"],
        json!([
            { "grid": "和平里", "count": 6 },
            { "grid": "幸福路", "count": 4 },
            { "grid": "光明街", "count": 3 },
        ])
    );
    assert_eq!(
        all["visits"]["by_category"],
        visit_categories([1, 2, 1, 3, 1, 1, 2], 2)
    );
    let t = &all["tickets"];
    assert_eq!(
        (&t["opened"], &t["resolved"], &t["open"]),
        (&json!(8), &json!(5), &json!(3))
    );
    // The period ends eight days from now, but 张阿姨 and 李叔 synced minutes ago: silence
    // is measured to now, not to days that have not come yet. Only the never-synced shows.
    assert_eq!(
        all["volunteers_not_synced"],
        json!([stale(&site, "王姐", &["和平里"], None, &later)])
    );

    // ---- The Markdown shows the same figures ---------------------------------------------
    // In Chinese, as the station prints it for its office.
    let md = s.text(&[
        "--lang",
        "zh",
        "report",
        "--since",
        "2026-11-01",
        "--until",
        tomorrow.as_str(),
    ]);
    let oct_md = s.text(&[
        "--lang",
        "zh",
        "report",
        "--since",
        "2026-10-01",
        "--until",
        "2026-11-01",
    ]);
    for line in [
        "| 和平里 | 4 |",
        "| 幸福路 | 3 |",
        "| 光明街 | 2 |",
        "| **合计** | **9** |",
        "| 扶贫解困 | 2 |",
        "| 城市管理 | 2 |",
        "| 未分类 | 1 |",
        "| 走访 | 9 |",
        "| 新开工单 | 3 |",
        "| 办结工单 | 0 |",
        "| 截至期末未结 | 3 |",
        "| 扶贫解困 | 2 | 0 | 1 | — |",
        "| 纠纷调解 | 0 | 0 | 1 | — |",
        "| 王姐 | 和平里 | 从未 | — |",
    ] {
        assert!(
            oct_md.contains(line),
            "October's Markdown lacks {line:?}:\n{oct_md}"
        );
    }
    assert!(
        oct_md.contains("| 张阿姨 | 4 |") && !oct_md.contains(&site.ids["张阿姨"][..12]),
        "{oct_md}"
    );
    assert!(
        oct_md.contains("统计时段：2026年10月1日 至 2026年11月1日（含起点，不含终点）"),
        "{oct_md}"
    );
    for line in [
        "| 走访 | 3 |",
        "| 新开工单 | 4 |",
        "| 办结工单 | 5 |",
        "| 截至期末未结 | 3 |",
        "| 政策咨询 | 1 | 0 | 1 | — |",
        "| 未分类 | 1 | 0 | 1 | — |",
    ] {
        assert!(
            md.contains(line),
            "November's Markdown lacks {line:?}:\n{md}"
        );
    }
    assert!(md.contains("| 扶贫解困 | 1 | 3 | 0 | "), "{md}");
    assert!(
        !md.contains("本机不是驿站"),
        "a station's report is not partial"
    );
    // The revoked volunteer is flagged, by name, with the day of its revocation.
    let revoked = array(all["revoked_devices"].clone());
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["name"], "赵哥");
    assert_eq!(revoked[0]["reason"], "搬走了");
    assert_recent(&revoked[0]["revoked_at"]);
    assert_eq!(all["held_in_quarantine"], 0);
    assert!(md.contains("## ⚠ 需要注意"), "{md}");
    assert!(md.contains("### 已撤销的设备"), "{md}");
    let row = md
        .lines()
        .find(|l| l.starts_with("| 赵哥 |"))
        .unwrap_or_else(|| panic!("no row for 赵哥:\n{md}"));
    assert!(row.contains("年") && row.contains("| 搬走了 |"), "{row}");
    // Dates as Chinese readers write them; no RFC 3339 left for people.
    assert!(!md.contains("T00:00:00Z"), "{md}");
    assert!(md.contains("生成时间：20") && md.contains("日 "), "{md}");

    // --out writes the same Markdown to a file.
    let out = s.scratch("oct.md");
    let o = out.to_str().unwrap();
    let printed = s.text(&[
        "--lang",
        "zh",
        "report",
        "--since",
        "2026-10-01",
        "--until",
        "2026-11-01",
        "--out",
        o,
    ]);
    assert!(printed.contains("oct.md"), "{printed}");
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        written.replace(generated(&written), ""),
        oct_md.replace(generated(&oct_md), "")
    );

    // ---- A volunteer's report covers what it holds, and says so --------------------------
    let v = site
        .zhang
        .json(&["report", "--since", "2026-10-01", "--until", "2026-11-01"]);
    assert_eq!(v["whole_site"], false);
    assert_eq!(v["node"]["role"], "volunteer");
    assert_eq!(v["visits"]["total"], 4, "only 和平里's visits: {v}");
    let out = site.zhang.run(&["report"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Note:"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the station"));
    let out = site.zhang.run(&["--lang", "zh", "report"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("> **注意：** 本机不是驿站"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("本机不是驿站"));

    // ---- The HTML report, rendered -----------------------------------------------------
    let html = s.scratch("report.html");
    let h = html.to_str().unwrap();
    s.text(&[
        "--lang",
        "zh",
        "report",
        "--until",
        later.as_str(),
        "--format",
        "html",
        "--out",
        h,
    ]);
    check_html(&html, &s.scratch("report.png"), &all);

    // In English, the same page speaks English and says so.
    let en = s.scratch("report-en.html");
    s.text(&[
        "--lang",
        "en",
        "report",
        "--format",
        "html",
        "--out",
        en.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&en).unwrap();
    assert!(text.contains("<html lang=\"en\">"));
    for needed in [
        "<h1>Station report</h1>",
        "<h2>⚠ Needs attention</h2>",
        "<h3>Revoked devices</h3>",
        "<td>赵哥</td>",
        "<h2>4. By grid</h2>",
    ] {
        assert!(text.contains(needed), "the English page lacks {needed}");
    }
    assert!(!text.contains("幸福驿站工作报告") && !text.contains("走访"));
}

/// The "generated at" line, which differs between two runs.
fn generated(md: &str) -> &str {
    md.lines()
        .find(|l| l.contains("Generated:") || l.contains("生成时间："))
        .expect("a Generated line")
}

#[test]
fn bad_windows_are_refused() {
    let s = Home::station();
    let e = s.error(&["report", "--since", "yesterday"]);
    assert!(e.contains("--since") && e.contains("yesterday"), "{e}");
    let e = s.error(&["report", "--until", "2026-13-01"]);
    assert!(e.contains("--until"), "{e}");
    let e = s.error(&["report", "--since", "2026-11-01", "--until", "2026-10-01"]);
    assert!(e.contains("before"), "{e}");
    s.error(&["report", "--since", "2026-11-01", "--until", "2026-11-01"]);
    s.usage_error(&["report", "--format", "pdf"]);
    s.usage_error(&["report", "--sinse", "2026-11-01"]);
    // An empty store reports zeros, and a volunteer-less roster lists nobody.
    let v = s.json(&["report"]);
    assert_eq!(v["visits"]["total"], 0);
    assert_eq!(v["tickets"]["opened"], 0);
    assert_eq!(v["tickets"]["median_resolve_secs"], Value::Null);
    assert_eq!(v["volunteers_not_synced"], json!([]));
}

// ---------------------------------------------------------------------------------------
// HTML in Chromium
// ---------------------------------------------------------------------------------------

/// The bar colours `cli/src/report.rs` uses.
const VISIT_CATEGORY: [u8; 3] = [0x1b, 0x7f, 0x79];
const VISIT_GRID: [u8; 3] = [0x2f, 0x6d, 0xb5];
const OPENED: [u8; 3] = [0xe0, 0x8a, 0x1e];
const RESOLVED: [u8; 3] = [0x3a, 0x9a, 0x4a];
const OPEN: [u8; 3] = [0xc8, 0x45, 0x3b];
const HOUSEHOLD: [u8; 3] = [0x8e, 0x6c, 0xb0];
const COVERED: [u8; 3] = [0x5b, 0xa8, 0xd6];
const VOLUNTEER_VISIT: [u8; 3] = [0x6b, 0x8e, 0x23];
const VOLUNTEER_RESOLVED: [u8; 3] = [0xb0, 0x5a, 0x8e];
const ON_TIME: [u8; 3] = [0x2e, 0x8b, 0x57];
const CHANNEL: [u8; 3] = [0x7a, 0x5c, 0x3e];
const OVERDUE_HOUSEHOLD: [u8; 3] = [0xd9, 0x6c, 0x2b];
const OVERDUE_TICKET: [u8; 3] = [0x99, 0x33, 0x66];

fn screenshot(html: &Path, png: &Path) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("--window-size={PAGE_WIDTH},{PAGE_HEIGHT}"))
        .arg(format!("file://{}", html.display()))
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(
        out.status.success() && png.exists(),
        "chromium made no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The screenshot's size: tall enough for every section.
const PAGE_WIDTH: usize = 1200;
const PAGE_HEIGHT: usize = 4400;

struct Image {
    width: usize,
    height: usize,
    rgb: Vec<[u8; 3]>,
}

fn decode(png: &Path) -> Image {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let step = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let rgb = buf[..info.buffer_size()]
        .chunks(step)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    Image {
        width: info.width as usize,
        height: info.height as usize,
        rgb,
    }
}

impl Image {
    /// The bars of one colour, top to bottom: runs of rows holding at least 3 pixels of the
    /// colour, each as (first row, height, widest run of the colour in a row).
    fn bars(&self, colour: [u8; 3]) -> Vec<(usize, usize, usize)> {
        let mut out: Vec<(usize, usize, usize)> = Vec::new();
        let mut current: Option<(usize, usize, usize)> = None;
        for y in 0..self.height {
            let row = &self.rgb[y * self.width..(y + 1) * self.width];
            let n = row.iter().filter(|p| **p == colour).count();
            match (&mut current, n >= 3) {
                (Some((_, h, w)), true) => {
                    *h += 1;
                    *w = (*w).max(n);
                }
                (None, true) => current = Some((y, 1, n)),
                (Some(_), false) => out.extend(current.take()),
                (None, false) => {}
            }
        }
        out.extend(current);
        out
    }
}

/// Asserts the bars of `colour` are one legend swatch (if `legend`) then one bar per
/// non-zero count, in order, each as long as its count in proportion to the longest.
fn assert_bars(img: &Image, what: &str, colour: [u8; 3], legend: bool, counts: &[u64]) {
    let mut bars = img.bars(colour);
    if legend {
        assert!(!bars.is_empty(), "{what}: no legend swatch");
        let swatch = bars.remove(0);
        assert!(
            swatch.2 < 20,
            "{what}: the first shape is not the legend swatch: {swatch:?}"
        );
    }
    let nonzero: Vec<u64> = counts.iter().copied().filter(|c| *c > 0).collect();
    if nonzero.is_empty() {
        assert!(
            bars.is_empty(),
            "{what}: bars for counts {counts:?}: {bars:?}"
        );
        return;
    }
    assert_eq!(
        bars.len(),
        nonzero.len(),
        "{what}: expected {} bars for counts {counts:?}, found {bars:?}",
        nonzero.len()
    );
    let max = *nonzero.iter().max().unwrap() as f64;
    let longest = bars.iter().map(|b| b.2).max().unwrap() as f64;
    assert!(
        longest > 30.0,
        "{what}: the longest bar is only {longest} px"
    );
    for (bar, count) in bars.iter().zip(&nonzero) {
        let expected = longest * *count as f64 / max;
        assert!(
            (bar.2 as f64 - expected).abs() <= 3.0,
            "{what}: a bar for {count} is {} px long, expected about {expected:.0} ({bars:?})",
            bar.2
        );
        assert!(bar.1 >= 6, "{what}: a bar only {} px high", bar.1);
    }
}

/// The numbers of `field` in each entry of `list`.
fn column(list: &Value, field: &str) -> Vec<u64> {
    list.as_array()
        .expect("an array")
        .iter()
        .map(|e| e[field].as_u64().expect("a count"))
        .collect()
}

fn check_html(html: &Path, png: &Path, report: &Value) {
    let text = std::fs::read_to_string(html).unwrap();
    // One self-contained file: nothing to fetch.
    assert!(text.starts_with("<!DOCTYPE html>"));
    assert!(text.contains("<meta charset=\"utf-8\">"));
    for bad in [
        "<script", "<link", "<img", "src=", "url(", "@import", "https:",
    ] {
        assert!(
            !text.contains(bad),
            "the HTML report refers outside itself: {bad}"
        );
    }
    let http: Vec<_> = text
        .match_indices("http:")
        .map(|(i, _)| &text[i..i + 30])
        .collect();
    assert!(
        http.iter()
            .all(|h| h.starts_with("http://www.w3.org/2000/svg")),
        "{http:?}"
    );
    assert_eq!(text.matches("<svg").count(), 7, "seven charts");
    for heading in ["四、网格", "五、网格员", "六、工单来源", "七、期末逾期"] {
        assert!(text.contains(heading), "no section {heading}");
    }
    assert!(text.contains("Noto Sans CJK SC"), "CJK fonts asked for");
    assert!(text.contains("<html lang=\"zh-CN\">"));
    // The revoked volunteer flagged where the page begins.
    let attention = text.find("id=\"attention\"").expect("a warning section");
    assert!(attention < text.find("<h2>概览</h2>").expect("the summary"));
    assert!(text.contains("<h3>已撤销的设备</h3>") && text.contains("<td>赵哥</td>"));
    assert!(text.contains("幸福驿站工作报告") && !text.contains("Station report"));

    screenshot(html, png);
    // To look at it (docs/img/report-example.png is one such screenshot).
    if let Some(keep) = std::env::var_os("YIZHAN_KEEP_REPORT_SCREENSHOT") {
        std::fs::copy(png, &keep).expect("copy the screenshot");
        std::fs::copy(html, PathBuf::from(&keep).with_extension("html")).expect("copy the HTML");
    }
    let img = decode(png);
    assert_eq!((img.width, img.height), (PAGE_WIDTH, PAGE_HEIGHT));
    let ink = img
        .rgb
        .iter()
        .filter(|p| p.iter().all(|c| *c < 100))
        .count();
    assert!(ink > 20_000, "the page looks blank: {ink} dark pixels");
    // The warning section is drawn: its tinted box (`.attention`, #fdecea) is on the page.
    let tint = img
        .rgb
        .iter()
        .filter(|p| p[..] == [0xfd, 0xec, 0xea])
        .count();
    assert!(tint > 5_000, "no warning box on the page: {tint} pixels");

    // All time: visits by category 1 2 1 3 1 1 2 and 2 with none; by grid 6 4 3.
    assert_bars(
        &img,
        "visits by category",
        VISIT_CATEGORY,
        false,
        &[1, 2, 1, 3, 1, 1, 2, 2],
    );
    assert_bars(&img, "visits by grid", VISIT_GRID, false, &[6, 4, 3]);
    // Tickets by category (seven categories, then none): opened, resolved, still open.
    assert_bars(
        &img,
        "tickets opened",
        OPENED,
        true,
        &[0, 3, 0, 2, 1, 1, 0, 1],
    );
    assert_bars(
        &img,
        "tickets resolved",
        RESOLVED,
        true,
        &[0, 3, 0, 2, 0, 0, 0, 0],
    );
    assert_bars(
        &img,
        "tickets still open",
        OPEN,
        true,
        &[0, 0, 0, 0, 1, 1, 0, 1],
    );

    // The sections per grid and per volunteer, as the same report's JSON counts them.
    let grids = &report["grids"];
    assert_bars(
        &img,
        "households",
        HOUSEHOLD,
        true,
        &column(grids, "households"),
    );
    assert_bars(&img, "covered", COVERED, true, &column(grids, "covered"));
    let volunteers = &report["volunteers"];
    assert_bars(
        &img,
        "volunteers' visits",
        VOLUNTEER_VISIT,
        true,
        &column(volunteers, "visits"),
    );
    assert_bars(
        &img,
        "volunteers' tickets resolved",
        VOLUNTEER_RESOLVED,
        true,
        &column(volunteers, "tickets_resolved"),
    );
    assert_bars(
        &img,
        "volunteers' tickets resolved on time",
        ON_TIME,
        true,
        &column(volunteers, "resolved_on_time"),
    );
    let channels: Vec<u64> = ["hotline", "mailbox", "walk-in", "visit", "patrol"]
        .iter()
        .map(|c| report["tickets_by_channel"][c].as_u64().expect("a count"))
        .collect();
    assert_bars(&img, "tickets by channel", CHANNEL, false, &channels);
    let overdue = |list: &str| report[list].as_array().expect("ids").len() as u64;
    assert_bars(
        &img,
        "households overdue",
        OVERDUE_HOUSEHOLD,
        true,
        &[overdue("overdue_households")],
    );
    assert_bars(
        &img,
        "tickets overdue",
        OVERDUE_TICKET,
        true,
        &[overdue("overdue_tickets")],
    );
}

// ---------------------------------------------------------------------------------------
// Per grid and per volunteer: a day as people live it
// ---------------------------------------------------------------------------------------

mod day {
    use super::*;

    /// RFC 3339 for `now + days`, to the second.
    fn at(now: i64, days: i64) -> String {
        chrono::DateTime::from_timestamp(now + days * DAY, 0)
            .expect("a time")
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    fn ids(v: &Value) -> Vec<String> {
        let mut out: Vec<String> = v
            .as_array()
            .expect("an array")
            .iter()
            .map(|x| x.as_str().expect("an id").to_string())
            .collect();
        out.sort();
        out
    }

    fn sorted_ids(v: &[&String]) -> Vec<String> {
        let mut out: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        out.sort();
        out
    }

    /// `household add --address A --grid G --tag T...`; returns the id.
    fn add_household(home: &Home, address: &str, grid: &str, tags: &[&str]) -> String {
        let mut args = vec!["household", "add", "--address", address, "--grid", grid];
        for t in tags {
            args.extend_from_slice(&["--tag", t]);
        }
        id_of(&home.json(&args))
    }

    /// `ticket open` in `grid` for the household at `address`, asked `opened` days from
    /// now, with EXTRA flags; returns the id.
    fn open(
        home: &Home,
        now: i64,
        title: &str,
        grid: &str,
        address: &str,
        opened: i64,
        extra: &[&str],
    ) -> String {
        let when = at(now, opened);
        let mut args = vec![
            "--grid",
            grid,
            "--household",
            address,
            "--at",
            when.as_str(),
        ];
        args.extend_from_slice(extra);
        home.open_ticket(title, &args)
    }

    /// A station and two volunteers, 张阿姨 in 和平里 and 李叔 in 幸福路, all through the
    /// binary. Each adds the households of its grid today (with tags: 30 days between
    /// visits, 182 for an ordinary household, and 1 for 困难户 once the station shortens
    /// it), opens tickets as residents asked (`--at` days ago, deadlines from `--due` or
    /// the policy), logs visits with `visit add --at`, resolves tickets today (two before
    /// their deadline, one after), and syncs; the station resolves its walk-in late and
    /// records the follow-up calls. `now` is the test's start; "d-15" below means 15 days
    /// before it. Period A is [d-20, d+2), period B is the past [d-40, d-10).
    #[test]
    fn grids_and_volunteers_match_the_hand_counts() {
        let now = now_secs();
        let station = Home::station();
        station.json(&["policy", "set", "visit-every", "困难户", "1"]);
        // A walk-in at the station twelve days ago: urgent, so due a day later.
        let t5 = open(
            &station,
            now,
            "井盖松动",
            "幸福路",
            "幸福路 2-201",
            -12,
            &["--priority", "urgent"],
        );
        let serve = Serving::start(&station);
        let zhang = Home::new();
        let li = Home::new();
        enroll(&station, &zhang, "张阿姨", "和平里", Some(&serve.addr));
        enroll(&station, &li, "李叔", "幸福路", Some(&serve.addr));

        let _h1 = add_household(&zhang, "和平里 1-101", "和平里", &["elderly-alone"]);
        let _h2 = add_household(&zhang, "和平里 1-102", "和平里", &["普通户"]);
        let _h3 = add_household(&zhang, "和平里 1-103", "和平里", &["low-income"]);
        let h7 = add_household(&zhang, "和平里 1-104", "和平里", &["独居老人"]);
        let _h4 = add_household(&li, "幸福路 2-201", "幸福路", &["disabled"]);
        let h5 = add_household(
            &li,
            "幸福路 2-202",
            "幸福路",
            &["elderly-alone", "ordinary"],
        );
        let h6 = add_household(&li, "幸福路 2-203", "幸福路", &["hardship"]);

        let t1 = open(
            &zhang,
            now,
            "热水器漏水",
            "和平里",
            "和平里 1-101",
            -10,
            &["--due", &at(now, -7), "--channel", "hotline"],
        );
        // Due from the policy (normal priority: 7 days); a volunteer's channel is `visit`.
        let t2 = open(&zhang, now, "助餐登记", "和平里", "和平里 1-103", -2, &[]);
        let t6 = open(
            &zhang,
            now,
            "楼道灯不亮",
            "和平里",
            "和平里 1-102",
            -3,
            &["--due", &at(now, 4), "--channel", "热线"],
        );
        let t3 = open(
            &li,
            now,
            "邻里噪音",
            "幸福路",
            "幸福路 2-202",
            -30,
            &["--due", &at(now, -25), "--channel", "mailbox"],
        );
        let t4 = open(
            &li,
            now,
            "路面积水",
            "幸福路",
            "幸福路 2-203",
            -1,
            &["--due", &at(now, 2), "--channel", "patrol"],
        );

        for (v, address, grid, days) in [
            (&zhang, "和平里 1-101", "和平里", -15),
            (&zhang, "和平里 1-102", "和平里", -90),
            (&zhang, "和平里 1-101", "和平里", -25),
            (&zhang, "和平里 1-104", "和平里", -40),
            (&li, "幸福路 2-201", "幸福路", -5),
            (&li, "幸福路 2-202", "幸福路", -45),
            (&li, "幸福路 2-202", "幸福路", -3),
        ] {
            let when = at(now, days);
            v.add_visit(address, &["--grid", grid, "--at", when.as_str()]);
        }
        // Every visit found its household by address: no new household was made.
        assert_eq!(array(zhang.json(&["household", "list"])).len(), 4);
        assert_eq!(array(li.json(&["household", "list"])).len(), 3);
        // Resolved today: 热水器漏水 after its deadline (d-7), 助餐登记 and 路面积水
        // before theirs.
        zhang.json(&["ticket", "update", t1.as_str(), "--status", "resolved"]);
        zhang.json(&["ticket", "update", t2.as_str(), "--status", "resolved"]);
        li.json(&["ticket", "update", t4.as_str(), "--status", "resolved"]);
        for v in [&zhang, &li] {
            let s = v.json(&["sync"]);
            assert_eq!(s["rejected"], 0, "{s}");
        }
        drop(serve);
        // The station resolves its walk-in, due d-11, today; then the follow-up calls.
        station.json(&["ticket", "update", t5.as_str(), "--status", "resolved"]);
        for (id, verdict) in [(&t1, "satisfied"), (&t2, "基本满意"), (&t4, "unsatisfied")] {
            station.json(&["ticket", "update", id.as_str(), "--satisfaction", verdict]);
        }
        assert_eq!(station.visits().len(), 7, "every visit reached the station");
        assert_eq!(station.tickets().len(), 6);
        assert_eq!(array(station.json(&["household", "list"])).len(), 7);
        assert_eq!(
            station.ticket(&t2)["due"],
            json!(at(now, -2 + 7)),
            "the policy's 7 days"
        );
        assert_eq!(station.ticket(&t2)["channel"], "visit");
        assert_eq!(station.ticket(&t5)["channel"], "walk-in");
        assert_eq!(
            station.ticket(&t5)["due"],
            json!(at(now, -11)),
            "urgent: 1 day"
        );

        // ---- Period A: [d-20, d+2) -----------------------------------------------------
        let (a0, a1) = (at(now, -20), at(now, 2));
        let a = station.json(&["report", "--since", a0.as_str(), "--until", a1.as_str()]);
        // Households at d+2. 和平里: 1-101 last visited d-15 (+30: covered), 1-102 d-90
        // (+182: covered), 1-103 never, added today (due d+30: neither), 1-104 d-40 (due
        // d-10: overdue). 幸福路: 2-201 (d-5) and 2-202 (d-3) covered; 2-203 never visited,
        // added today, 困难户 every day (due d+1: overdue).
        // Visits in A: one in 和平里 (d-15), two in 幸福路 (d-5, d-3).
        // Tickets opened in A: 和平里 热水器漏水, 助餐登记, 楼道灯不亮; 幸福路 路面积水 and
        // the walk-in 井盖松动 (邻里噪音 was asked at d-30). Resolved today: 热水器漏水 (late),
        // 助餐登记 (on time) in 和平里; 路面积水 (on time), 井盖松动 (late) in 幸福路. Rated
        // today: 热水器漏水 satisfied, 助餐登记 basic; 路面积水 unsatisfied. Overdue at d+2:
        // 邻里噪音 (due d-25, never resolved); 楼道灯不亮 is due d+4.
        assert_eq!(
            a["grids"],
            json!([
                { "grid": "和平里", "households": 4, "covered": 2, "visits": 1,
                  "tickets_opened": 3, "tickets_resolved": 2, "resolved_on_time": 1,
                  "rated": 2, "satisfied": 2, "overdue_tickets": 0 },
                { "grid": "幸福路", "households": 3, "covered": 2, "visits": 2,
                  "tickets_opened": 2, "tickets_resolved": 2, "resolved_on_time": 1,
                  "rated": 1, "satisfied": 0, "overdue_tickets": 1 },
            ])
        );
        // Most visits first; the station resolved its walk-in, late.
        assert_eq!(
            a["volunteers"],
            json!([
                { "device_id": li.device_id, "name": "李叔", "visits": 2,
                  "tickets_resolved": 1, "resolved_on_time": 1 },
                { "device_id": zhang.device_id, "name": "张阿姨", "visits": 1,
                  "tickets_resolved": 2, "resolved_on_time": 1 },
                { "device_id": station.device_id, "name": "幸福里工作站", "visits": 0,
                  "tickets_resolved": 1, "resolved_on_time": 0 },
            ])
        );
        assert_eq!(
            a["tickets_by_channel"],
            json!({ "hotline": 2, "mailbox": 0, "walk-in": 1, "visit": 1, "patrol": 1 })
        );
        assert_eq!(ids(&a["overdue_households"]), sorted_ids(&[&h7, &h6]));
        assert_eq!(ids(&a["overdue_tickets"]), vec![t3.clone()]);
        assert!(!ids(&a["overdue_tickets"]).contains(&t6));
        // The figures that were there before agree.
        assert_eq!(a["visits"]["total"], 3);
        assert_eq!(a["tickets"]["opened"], 5);
        assert_eq!(a["tickets"]["resolved"], 4);

        // ---- Period B, in the past: [d-40, d-10) ----------------------------------------
        // Judged at d-10, with no visit made after it. The households were added today, so
        // only those visited before d-10 are there. 和平里: 1-101 (last before the end
        // d-15), 1-102 (d-90), 1-104 (d-40, due exactly d-10: still covered); 1-103 is not
        // there. 幸福路: 2-201's only visit is d-5, after the end (not there); 2-202's latest
        // before the end is d-45 (due d-15: overdue); 2-203 is not there.
        // Visits in B: d-15, d-25, d-40 in 和平里 (the start is included).
        // Tickets asked in B: 邻里噪音 (d-30) and the walk-in (d-12); 热水器漏水 (d-10) is
        // at the end, excluded. Nothing was resolved or rated in B, and at d-10 both 幸福路
        // tickets were open and past their deadlines (d-25, d-11).
        let (b0, b1) = (at(now, -40), at(now, -10));
        let b = station.json(&["report", "--since", b0.as_str(), "--until", b1.as_str()]);
        assert_eq!(
            b["grids"],
            json!([
                { "grid": "和平里", "households": 3, "covered": 3, "visits": 3,
                  "tickets_opened": 0, "tickets_resolved": 0, "resolved_on_time": 0,
                  "rated": 0, "satisfied": 0, "overdue_tickets": 0 },
                { "grid": "幸福路", "households": 1, "covered": 0, "visits": 0,
                  "tickets_opened": 2, "tickets_resolved": 0, "resolved_on_time": 0,
                  "rated": 0, "satisfied": 0, "overdue_tickets": 2 },
            ])
        );
        assert_eq!(
            b["volunteers"],
            json!([
                { "device_id": zhang.device_id, "name": "张阿姨", "visits": 3,
                  "tickets_resolved": 0, "resolved_on_time": 0 },
                { "device_id": li.device_id, "name": "李叔", "visits": 0,
                  "tickets_resolved": 0, "resolved_on_time": 0 },
            ])
        );
        assert_eq!(
            b["tickets_by_channel"],
            json!({ "hotline": 0, "mailbox": 1, "walk-in": 1, "visit": 0, "patrol": 0 })
        );
        assert_eq!(ids(&b["overdue_households"]), vec![h5.clone()]);
        assert_eq!(ids(&b["overdue_tickets"]), sorted_ids(&[&t3, &t5]));

        // ---- The Markdown shows the same (in English) --------------------------------------
        let md = station.text(&["report", "--since", a0.as_str(), "--until", a1.as_str()]);
        for line in [
            "| 和平里 | 4 | 2 | 1 | 3 | 2 | 1 | 2 | 2 | 0 |",
            "| 幸福路 | 3 | 2 | 2 | 2 | 2 | 1 | 1 | 0 | 1 |",
            "| **Total** | **7** | **4** | **3** | **5** | **4** | **2** | **3** | **2** | **1** |",
            "| hotline | 2 |",
            "| walk-in | 1 |",
            "| mailbox | 0 |",
            "| Households overdue for a visit | 2 |",
            "| Tickets overdue | 1 |",
        ] {
            assert!(md.contains(line), "the Markdown lacks {line:?}:\n{md}");
        }
        for (name, id, row) in [
            ("李叔", &li.device_id, "2 | 1 | 1"),
            ("张阿姨", &zhang.device_id, "1 | 2 | 1"),
            ("幸福里工作站", &station.device_id, "0 | 1 | 0"),
        ] {
            let line = format!("| {name} | {row} |");
            assert!(md.contains(&line), "the Markdown lacks {line:?}:\n{md}");
            assert!(!md.contains(&id[..12]), "a member in hex:\n{md}");
        }
        assert!(md.contains(&format!("- `{t3}`")), "{md}");
    }
}

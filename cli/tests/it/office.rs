//! Office files and printing: Excel workbooks read and written by another program than the
//! binary's own (umya-spreadsheet, not calamine or rust_xlsxwriter), and printed pages
//! rendered in headless Chromium.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use umya_spreadsheet::structs::Worksheet;

use crate::util::*;

/// The station's name, as `Home::station` makes it.
const STATION: &str = "幸福里工作站";
const GRID: &str = "第三网格";
const MULTI_LINE: &str = "老人腿脚不便，\n第二行：需要上门送药。\n第三行";
const FORMULA: &str = "=cmd|' /C calc'!A0";

/// An RFC 3339 time `hours` before now, to the second, in UTC (the tests' zone).
fn hours_ago(hours: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::hours(hours))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The Excel serial number of an RFC 3339 time in UTC (the tests' zone): days since
/// 1899-12-30.
fn serial(time: &str) -> f64 {
    let t = chrono::DateTime::parse_from_rfc3339(time).unwrap();
    let epoch = chrono::DateTime::parse_from_rfc3339("1899-12-30T00:00:00Z").unwrap();
    (t - epoch).num_milliseconds() as f64 / 86_400_000.0
}

/// A day's records of all three kinds at a station; returns (visit ids, ticket ids).
fn a_day(home: &Home) -> (Vec<String>, Vec<String>) {
    home.json(&[
        "household",
        "add",
        "--address",
        "幸福里3号楼201室",
        "--grid",
        GRID,
        "--resident",
        "王秀英",
        "--tag",
        "独居老人",
        "--tag",
        "低保户",
        "--phone",
        "13912345678",
        "--note",
        "子女在外地",
    ]);
    home.json(&[
        "household",
        "add",
        "--address",
        "和平路8号",
        "--grid",
        GRID,
        "--resident",
        "张三",
    ]);
    let visits = vec![
        home.add_visit(
            "幸福里3号楼201室",
            &[
                "--grid",
                GRID,
                "--category",
                "扶贫解困",
                "--resident",
                "王秀英",
                "--resident",
                "李四",
                "--note",
                MULTI_LINE,
                "--needs",
                "申请助餐",
                "--at",
                &hours_ago(5),
            ],
        ),
        home.add_visit(
            "和平路8号",
            &[
                "--grid",
                GRID,
                "--category",
                "dispute-mediation",
                "--note",
                FORMULA,
                "--at",
                &hours_ago(3),
            ],
        ),
    ];
    let tickets = vec![
        home.open_ticket(
            "楼道灯坏了",
            &[
                "--grid",
                GRID,
                "--household",
                "幸福里3号楼201室",
                "--category",
                "城市管理",
                "--note",
                "三楼到五楼",
            ],
        ),
        home.open_ticket("邻里噪音", &["--grid", GRID, "--priority", "高"]),
    ];
    home.json(&[
        "ticket",
        "update",
        &tickets[0],
        "--status",
        "处理中",
        "--priority",
        "紧急",
        "--assign",
        STATION,
    ]);
    home.json(&["ticket", "comment", &tickets[0], "已联系物业"]);
    (visits, tickets)
}

/// The first sheet of a workbook, as umya-spreadsheet reads it.
fn sheet(path: &Path) -> Worksheet {
    let book = umya_spreadsheet::reader::xlsx::read(path).expect("umya-spreadsheet reads it");
    book.sheet(0).expect("a first sheet").clone()
}

/// The header row's texts.
fn header(ws: &Worksheet) -> Vec<String> {
    let mut out = Vec::new();
    for col in 1.. {
        let v = ws.value((col, 1));
        if v.is_empty() {
            break;
        }
        out.push(v);
    }
    out
}

/// The column (1-based) whose header is `name`.
fn col(ws: &Worksheet, name: &str) -> u32 {
    header(ws)
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", header(ws))) as u32
        + 1
}

/// The row (1-based) whose `编号` is `id`.
fn row_of(ws: &Worksheet, id: &str) -> u32 {
    let c = col(ws, "编号");
    (2..=ws.highest_row())
        .find(|r| ws.value((c, *r)) == id)
        .unwrap_or_else(|| panic!("no row for {id}"))
}

fn cell(ws: &Worksheet, id: &str, column: &str) -> String {
    ws.value((col(ws, column), row_of(ws, id)))
}

/// Asserts that the cell of `column` in `id`'s row is a date-time cell at `time`.
fn assert_time_cell(ws: &Worksheet, id: &str, column: &str, time: &str) {
    let c = ws
        .cell((col(ws, column), row_of(ws, id)))
        .unwrap_or_else(|| panic!("{column} of {id} is empty"));
    let n = c
        .value_number()
        .unwrap_or_else(|| panic!("{column} of {id} is not a number: {}", c.value()));
    assert!(
        (n - serial(time)).abs() < 1e-6,
        "{column} of {id}: serial {n}, expected {} ({time})",
        serial(time)
    );
    let format = c
        .style()
        .number_format()
        .map(|f| f.format_code().to_string())
        .unwrap_or_default();
    assert!(
        format.contains("yy") && format.contains("hh:mm"),
        "{column} of {id} has no date-time format: {format:?}"
    );
}

/// Asserts that the header row is frozen and every column has a width that fits its text.
fn assert_frozen_and_fitted(ws: &Worksheet) {
    let view = &ws.sheets_views().sheet_view_list()[0];
    let pane = view.pane().expect("a pane");
    assert!(
        matches!(
            pane.state(),
            umya_spreadsheet::structs::PaneStateValues::Frozen
        ),
        "the header row is not frozen"
    );
    assert_eq!(pane.top_left_cell().to_string(), "A2");
    let columns = header(ws).len() as u32;
    for c in 1..=columns {
        let width = ws
            .column_dimensions()
            .iter()
            .find(|d| d.col_num() == c)
            .map(|d| d.width())
            .unwrap_or_else(|| panic!("column {c} has no width of its own"));
        let widest = (1..=ws.highest_row())
            .map(|r| {
                let v = ws.value((c, r));
                v.lines().map(display_width).max().unwrap_or(0)
            })
            .max()
            .unwrap_or(0)
            .min(64);
        assert!(
            width >= widest as f64,
            "column {} ({}) is {width} wide for text {widest} wide",
            c,
            ws.value((c, 1))
        );
        assert!(width <= 70.0, "column {c} is {width} wide");
    }
}

#[test]
fn a_days_records_export_to_a_workbook_another_program_reads() {
    let home = Home::station();
    let (visits, tickets) = a_day(&home);
    let dir = home.scratch("");

    // Visits.
    let file = dir.join("走访.xlsx");
    let v = home.json(&[
        "export",
        "--kind",
        "visits",
        "--format",
        "xlsx",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(v["exported"], 2);
    assert_eq!(v["out"], file.to_str().unwrap());
    let ws = sheet(&file);
    assert_eq!(
        header(&ws),
        [
            "走访时间",
            "网格",
            "户",
            "类别",
            "走访对象",
            "走访情况",
            "诉求",
            "走访人编号",
            "走访人",
            "关联工单",
            "户编号",
            "编号"
        ]
    );
    assert_eq!(ws.highest_row(), 3, "a header and two rows");
    for id in &visits {
        let visit = home.visit(id);
        assert_time_cell(&ws, id, "走访时间", visit["visited_at"].as_str().unwrap());
        assert_eq!(cell(&ws, id, "走访人编号"), home.device_id);
        assert_eq!(cell(&ws, id, "走访人"), STATION);
        assert_eq!(cell(&ws, id, "网格"), GRID);
    }
    assert_eq!(cell(&ws, &visits[0], "类别"), "扶贫解困");
    assert_eq!(cell(&ws, &visits[0], "走访对象"), "王秀英、李四");
    assert_eq!(cell(&ws, &visits[0], "走访情况"), MULTI_LINE);
    assert_eq!(cell(&ws, &visits[1], "类别"), "纠纷调解");
    // A note that looks like a formula is a text cell holding exactly that text.
    let c = ws
        .cell((col(&ws, "走访情况"), row_of(&ws, &visits[1])))
        .unwrap();
    assert!(!c.is_formula(), "the note became a formula");
    assert_eq!(c.value(), FORMULA);
    assert_frozen_and_fitted(&ws);

    // Tickets: statuses, priorities, categories and channels by Chinese name; members by
    // name beside their ids.
    let file = dir.join("工单.xlsx");
    home.json(&[
        "export",
        "--kind",
        "tickets",
        "--format",
        "xlsx",
        "--out",
        file.to_str().unwrap(),
    ]);
    let ws = sheet(&file);
    let t0 = home.ticket(&tickets[0]);
    assert_eq!(cell(&ws, &tickets[0], "标题"), "楼道灯坏了");
    assert_eq!(cell(&ws, &tickets[0], "状态"), "处理中");
    assert_eq!(cell(&ws, &tickets[0], "优先级"), "紧急");
    assert_eq!(cell(&ws, &tickets[0], "类别"), "城市管理");
    assert_eq!(cell(&ws, &tickets[0], "来源渠道"), "来访");
    assert_eq!(cell(&ws, &tickets[0], "承办人"), STATION);
    assert_eq!(cell(&ws, &tickets[0], "承办人编号"), home.device_id);
    assert_eq!(cell(&ws, &tickets[0], "登记人"), STATION);
    assert_eq!(cell(&ws, &tickets[0], "超期"), "否");
    assert_time_cell(
        &ws,
        &tickets[0],
        "登记时间",
        t0["opened_at"].as_str().unwrap(),
    );
    assert_time_cell(&ws, &tickets[0], "办结期限", t0["due"].as_str().unwrap());
    assert_eq!(cell(&ws, &tickets[1], "优先级"), "高");
    assert_eq!(cell(&ws, &tickets[1], "状态"), "待处理");
    assert_eq!(cell(&ws, &tickets[1], "承办人"), "");
    assert_frozen_and_fitted(&ws);

    // Households: tags by Chinese name, joined by 、.
    let file = dir.join("户.xlsx");
    home.json(&[
        "export",
        "--kind",
        "households",
        "--format",
        "xlsx",
        "--out",
        file.to_str().unwrap(),
    ]);
    let ws = sheet(&file);
    let households = home.json(&["household", "list"]);
    let h = households
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["address"] == "幸福里3号楼201室")
        .unwrap();
    let id = h["id"].as_str().unwrap();
    assert_eq!(cell(&ws, id, "标签"), "独居老人、低保户");
    assert_eq!(cell(&ws, id, "居民"), "王秀英");
    assert_eq!(cell(&ws, id, "电话"), "13912345678");
    assert_time_cell(&ws, id, "建档时间", h["added_at"].as_str().unwrap());
    assert_time_cell(&ws, id, "最近走访", h["last_visit"].as_str().unwrap());
    assert_frozen_and_fitted(&ws);

    // People read what happened, in their language.
    let out = home
        .bare_command()
        .env("LANG", "zh_CN.UTF-8")
        .arg("--home")
        .arg(home.path())
        .args(["export", "--kind", "visits", "--format", "xlsx", "--out"])
        .arg(dir.join("zh.xlsx"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("已导出 2 条记录"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = home.text(&[
        "export",
        "--kind",
        "visits",
        "--format",
        "xlsx",
        "--out",
        dir.join("en.xlsx").to_str().unwrap(),
    ]);
    assert!(text.contains("Exported 2 records to"), "{text}");
}

/// The fields of a record that an import keeps (ids, authors and derived fields are made
/// anew).
fn kept(record: &Value, fields: &[&str]) -> Vec<Value> {
    fields.iter().map(|f| record[*f].clone()).collect()
}

const VISIT_KEPT: &[&str] = &[
    "household",
    "grid",
    "category",
    "note",
    "residents",
    "needs",
    "visited_at",
];
const TICKET_KEPT: &[&str] = &[
    "title",
    "status",
    "category",
    "priority",
    "household",
    "grid",
    "assignee",
    "opened_at",
    "note",
    "due",
    "channel",
    "resolved_at",
    "satisfaction",
];
const HOUSEHOLD_KEPT: &[&str] = &[
    "address",
    "grid",
    "residents",
    "tags",
    "phone",
    "note",
    "added_at",
];

fn sorted_kept(list: &Value, fields: &[&str]) -> Vec<Vec<Value>> {
    let mut out: Vec<Vec<Value>> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| kept(r, fields))
        .collect();
    out.sort_by_key(|r| serde_json::to_string(r).unwrap());
    out
}

#[test]
fn an_exported_workbook_imports_back_to_the_same_records() {
    let home = Home::station();
    a_day(&home);
    let dir = home.scratch("");
    let export = |kind: &str| {
        let file = dir.join(format!("{kind}.xlsx"));
        home.json(&[
            "export",
            "--kind",
            kind,
            "--format",
            "xlsx",
            "--out",
            file.to_str().unwrap(),
        ]);
        file
    };
    let (households, visits, tickets) = (export("households"), export("visits"), export("tickets"));

    // Households into another station (the same addresses here would be the same records).
    let other = Home::station();
    let v = other.json(&[
        "import",
        "--kind",
        "households",
        "--format",
        "xlsx",
        households.to_str().unwrap(),
    ]);
    assert_eq!(v["imported"], 2);
    assert_eq!(
        sorted_kept(&other.json(&["household", "list"]), HOUSEHOLD_KEPT),
        sorted_kept(&home.json(&["household", "list"]), HOUSEHOLD_KEPT)
    );

    // Visits and tickets into the same station: each comes back a second time, the same.
    let before_visits = home.json(&["visit", "list"]);
    let before_tickets = home.json(&["ticket", "list"]);
    for (kind, file) in [("visits", &visits), ("tickets", &tickets)] {
        let v = home.json(&[
            "import",
            "--kind",
            kind,
            "--format",
            "xlsx",
            file.to_str().unwrap(),
        ]);
        assert_eq!(v["imported"], 2, "{kind}");
    }
    let twice = |list: &Value, fields: &[&str]| {
        let mut once = sorted_kept(list, fields);
        once.extend(once.clone());
        once.sort_by_key(|r| serde_json::to_string(r).unwrap());
        once
    };
    assert_eq!(
        sorted_kept(&home.json(&["visit", "list"]), VISIT_KEPT),
        twice(&before_visits, VISIT_KEPT)
    );
    assert_eq!(
        sorted_kept(&home.json(&["ticket", "list"]), TICKET_KEPT),
        twice(&before_tickets, TICKET_KEPT)
    );
}

/// A workbook as another program (Excel, WPS) saves it, written by umya-spreadsheet:
/// Chinese headers in another order, names and slugs, a date-time cell in another format,
/// a date-time typed as text, a phone typed as a number, a blank row.
fn foreign_workbook(path: &Path, rows: &[[&str; 5]], visited: &[f64]) {
    let mut book = umya_spreadsheet::new_file();
    let ws = book.sheet_mut(0).unwrap();
    ws.set_name("Sheet1");
    for (c, h) in ["户", "网格", "类别", "走访对象", "走访情况", "走访时间"]
        .iter()
        .enumerate()
    {
        ws.cell_mut((c as u32 + 1, 1)).set_value(*h);
    }
    for (i, row) in rows.iter().enumerate() {
        // Row 3 is left blank, as people leave rows.
        let r = if i < 1 { 2 } else { i as u32 + 3 };
        for (c, v) in row.iter().enumerate() {
            ws.cell_mut((c as u32 + 1, r)).set_value(*v);
        }
        let at = ws.cell_mut((6, r));
        at.set_value_number(visited[i]);
        at.style_mut()
            .number_format_mut()
            .set_format_code("yyyy/m/d h:mm");
    }
    umya_spreadsheet::writer::xlsx::write(&book, path).expect("umya-spreadsheet writes it");
}

#[test]
fn a_workbook_saved_by_another_program_imports() {
    let home = Home::station();
    let file = home.scratch("wps.xlsx");
    let t1 = hours_ago(30);
    let t2 = hours_ago(6);
    foreign_workbook(
        &file,
        &[
            [
                "幸福里3号楼201室",
                GRID,
                "为民服务",
                "王秀英、李四",
                "第一行\n第二行",
            ],
            ["和平路8号", GRID, "policy-consultation", "张三", "=1+1"],
        ],
        &[serial(&t1), serial(&t2)],
    );
    let v = home.json(&[
        "import",
        "--kind",
        "visits",
        "--format",
        "xlsx",
        file.to_str().unwrap(),
    ]);
    assert_eq!(v["imported"], 2);
    let list = home.json(&["visit", "list"]);
    let got = sorted_kept(
        &list,
        &["household", "category", "residents", "note", "visited_at"],
    );
    let mut want = vec![
        kept(
            &serde_json::json!({"household": "幸福里3号楼201室", "category": "resident-services",
                "residents": ["王秀英", "李四"], "note": "第一行\n第二行", "visited_at": t1}),
            &["household", "category", "residents", "note", "visited_at"],
        ),
        kept(
            &serde_json::json!({"household": "和平路8号", "category": "policy-consultation",
                "residents": ["张三"], "note": "=1+1", "visited_at": t2}),
            &["household", "category", "residents", "note", "visited_at"],
        ),
    ];
    want.sort_by_key(|r| serde_json::to_string(r).unwrap());
    assert_eq!(got, want);
}

#[test]
fn a_bad_row_imports_nothing_and_is_named_as_excel_numbers_it() {
    let home = Home::station();
    let file = home.scratch("bad.xlsx");
    let t = serial(&hours_ago(2));
    // Sheet rows 2 and 4 (row 3 is blank); row 4 has a category no station has.
    foreign_workbook(
        &file,
        &[
            ["甲", GRID, "为民服务", "王秀英", "好"],
            ["乙", GRID, "养老服务", "张三", "坏"],
        ],
        &[t, t],
    );
    let (code, stderr) = home.fail(&[
        "import",
        "--kind",
        "visits",
        "--format",
        "xlsx",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("row 4"), "{stderr}");
    assert!(stderr.contains("养老服务"), "{stderr}");
    assert!(stderr.contains("nothing imported"), "{stderr}");
    assert_eq!(home.json(&["visit", "list"]), serde_json::json!([]));

    // In Chinese too.
    let out = home
        .bare_command()
        .env("LANG", "zh_CN.UTF-8")
        .arg("--home")
        .arg(home.path())
        .args(["import", "--kind", "visits", "--format", "xlsx"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("未导入任何记录"), "{stderr}");
    assert!(stderr.contains("第 4 行"), "{stderr}");

    // Not a workbook at all.
    let junk = home.scratch("junk.xlsx");
    std::fs::write(&junk, "household,visited_at\n甲,2026-11-01\n").unwrap();
    let (code, stderr) = home.fail(&[
        "import",
        "--kind",
        "visits",
        "--format",
        "xlsx",
        junk.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("xlsx"), "{stderr}");
    assert_eq!(home.json(&["visit", "list"]), serde_json::json!([]));
}

#[test]
fn a_text_longer_than_a_cell_is_cut_with_a_warning_naming_the_record() {
    let home = Home::station();
    // Notes are limited in bytes, so the long text is mostly ASCII (Excel counts characters).
    let long = format!("{}尾", "x".repeat(33_000));
    let id = home.add_visit("幸福里3号楼201室", &["--grid", GRID, "--note", &long]);
    let file = home.scratch("long.xlsx");
    let out = home.run(&[
        "export",
        "--kind",
        "visits",
        "--format",
        "xlsx",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&id),
        "the warning names the record: {stderr}"
    );
    assert!(stderr.contains("33001"), "{stderr}");
    let ws = sheet(&file);
    let note = cell(&ws, &id, "走访情况");
    assert_eq!(note.encode_utf16().count(), 32_767);
    assert!(note.ends_with('…'));
    assert_eq!(note.trim_end_matches('…'), "x".repeat(32_766));

    // It imports back as it was cut; nothing else differs.
    let other = Home::station();
    other.json(&[
        "import",
        "--kind",
        "visits",
        "--format",
        "xlsx",
        file.to_str().unwrap(),
    ]);
    let back = &other.json(&["visit", "list"])[0];
    assert_eq!(back["note"], note);
    assert_eq!(back["visited_at"], home.visit(&id)["visited_at"]);
}

/// Runs headless Chromium on a page with `flag` (`--dump-dom`, `--print-to-pdf=...`).
fn chromium_on(page: &Path, flag: &str) -> Vec<u8> {
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
            "--no-pdf-header-footer",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(flag)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The text of a DOM, its tags removed and entities decoded (what a reader sees).
fn text_of(dom: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in dom.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// Pages of an A4 PDF Chromium printed: their count, and each page's size in points.
fn pdf_pages(pdf: &[u8]) -> (usize, Vec<(f64, f64)>) {
    let text = String::from_utf8_lossy(pdf);
    let count = text
        .match_indices("/Type /Page")
        .filter(|(i, _)| !text[i + 11..].starts_with('s'))
        .count();
    let sizes = text
        .match_indices("/MediaBox [")
        .map(|(i, m)| {
            let rest = &text[i + m.len()..];
            let nums: Vec<f64> = rest[..rest.find(']').unwrap()]
                .split_whitespace()
                .map(|n| n.parse().unwrap())
                .collect();
            (nums[2] - nums[0], nums[3] - nums[1])
        })
        .collect();
    (count, sizes)
}

/// Renders a printed page: its text as a reader sees it, with checks that it is
/// self-contained, ran no script, and prints on A4 (one sheet when `one_sheet`).
fn render(page: &Path, one_sheet: bool) -> String {
    let html = std::fs::read_to_string(page).unwrap();
    for external in [
        "<img", "<script", "<link", "<iframe", "<object", "<embed", "href=", "@import", "url(",
    ] {
        assert!(!html.contains(external), "{external} in {}", page.display());
    }
    let dom = String::from_utf8(chromium_on(page, "--dump-dom")).unwrap();
    assert!(
        !dom.contains("RANSCRIPT") && !dom.contains("IMGRAN"),
        "a script in a note ran: {dom}"
    );
    let pdf = page.with_extension("pdf");
    chromium_on(page, &format!("--print-to-pdf={}", pdf.display()));
    let (count, sizes) = pdf_pages(&std::fs::read(&pdf).unwrap());
    assert!(count >= 1);
    if one_sheet {
        assert_eq!(count, 1, "{} prints on {count} sheets", page.display());
    }
    for (w, h) in sizes {
        // A4: 210 × 297 mm, 595.3 × 841.9 points.
        assert!(
            (w - 595.3).abs() < 2.0 && (h - 841.9).abs() < 2.0,
            "page {w} × {h}"
        );
    }
    text_of(&dom)
}

/// `2026年12月8日 08:30` in UTC, the tests' zone.
fn chinese_time(time: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(time)
        .unwrap()
        .with_timezone(&chrono::Utc)
        .format("%Y年%-m月%-d日 %H:%M")
        .to_string()
}

#[test]
fn printed_pages_hold_the_record_its_history_and_its_visits_on_a4() {
    let home = Home::station();
    let (visits, tickets) = a_day(&home);
    // What the script and the handler would do if they ran: words that are nowhere in the
    // page's source, only in what they would make.
    let hostile = "<script>document.title='RAN'+'SCRIPT'</script><img src=x onerror=\"document.body.className='IMG'+'RAN'\">";
    let visit = home.add_visit(
        "幸福里3号楼201室",
        &[
            "--grid",
            GRID,
            "--note",
            hostile,
            "--ticket",
            &tickets[0],
            "--at",
            &hours_ago(1),
        ],
    );
    let households = home.json(&["household", "list"]);
    let household = households
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["address"] == "幸福里3号楼201室")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = home.scratch("");

    // The household: its fields, its visits (the hostile note as text), its tickets.
    let page = dir.join("household.html");
    let v = home.json(&[
        "print",
        "household",
        &household[..8],
        "--out",
        page.to_str().unwrap(),
    ]);
    assert_eq!(v, serde_json::json!({ "out": page.to_str().unwrap() }));
    let text = render(&page, false);
    for want in [
        "户档案：幸福里3号楼201室",
        "第三网格",
        "独居老人、低保户",
        "王秀英",
        "13912345678",
        "子女在外地",
        "走访记录",
        "扶贫解困",
        "第二行：需要上门送药。",
        "<script>document.title='RAN'+'SCRIPT'</script>",
        "楼道灯坏了",
        "处理中",
        "修改记录",
        "新建",
        STATION,
    ] {
        assert!(text.contains(want), "household page lacks {want:?}: {text}");
    }
    let first = home.visit(&visits[0]);
    assert!(text.contains(&chinese_time(first["visited_at"].as_str().unwrap())));
    assert!(!text.contains(&home.device_id), "members by name, not id");

    // The visit: one sheet, with its history.
    let page = dir.join("visit.html");
    home.json(&["print", "visit", &visit, "--out", page.to_str().unwrap()]);
    let text = render(&page, true);
    for want in [
        "入户走访记录",
        "幸福里3号楼201室",
        "走访人",
        STATION,
        "修改记录",
        "新建",
        &tickets[0],
    ] {
        assert!(text.contains(want), "visit page lacks {want:?}: {text}");
    }
    assert!(text.contains(&chinese_time(
        home.visit(&visit)["visited_at"].as_str().unwrap()
    )));

    // The ticket: its fields in Chinese, comments, visits, and who changed what when.
    let page = dir.join("ticket.html");
    home.json(&[
        "print",
        "ticket",
        &tickets[0][..6],
        "--out",
        page.to_str().unwrap(),
    ]);
    let text = render(&page, false);
    let ticket = home.ticket(&tickets[0]);
    for want in [
        "工单：楼道灯坏了",
        "处理中",
        "紧急",
        "城市管理",
        "承办人",
        "已联系物业",
        "办理意见",
        "状态：处理中",
        "优先级：紧急",
        "修改",
        "<script>document.title='RAN'+'SCRIPT'</script>",
        &chinese_time(ticket["opened_at"].as_str().unwrap()),
    ] {
        assert!(text.contains(want), "ticket page lacks {want:?}: {text}");
    }

    // Without --out the page goes to stdout; with --json it is inside the one JSON value.
    let html = home.text(&["print", "visit", &visits[1]]);
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("=cmd|' /C calc'!A0"));
    let v = home.json(&["print", "visit", &visits[1]]);
    assert_eq!(v["out"], Value::Null);
    assert_eq!(v["html"].as_str().unwrap().len(), html.len());

    // An unknown id is one line and exit 1.
    let (code, _) = home.fail(&["print", "ticket", "ffffffffff"]);
    assert_eq!(code, 1);
}

#[test]
fn a_ticket_assigned_by_name_in_a_workbook_goes_to_that_member() {
    let home = Home::station();
    let opened = serial(&hours_ago(4));
    let write = |path: &Path, assignee: &str| {
        let mut book = umya_spreadsheet::new_file();
        let ws = book.sheet_mut(0).unwrap();
        for (c, h) in ["登记时间", "标题", "网格", "承办人"].iter().enumerate() {
            ws.cell_mut((c as u32 + 1, 1)).set_value(*h);
        }
        let at = ws.cell_mut((1, 2));
        at.set_value_number(opened);
        at.style_mut()
            .number_format_mut()
            .set_format_code("yyyy-mm-dd hh:mm");
        ws.cell_mut((2, 2)).set_value("楼道灯坏了");
        ws.cell_mut((3, 2)).set_value(GRID);
        ws.cell_mut((4, 2)).set_value(assignee);
        umya_spreadsheet::writer::xlsx::write(&book, path).unwrap();
    };
    let file = home.scratch("assigned.xlsx");
    write(&file, STATION);
    home.json(&[
        "import",
        "--kind",
        "tickets",
        "--format",
        "xlsx",
        file.to_str().unwrap(),
    ]);
    let tickets = home.json(&["ticket", "list"]);
    assert_eq!(tickets[0]["assignee"], home.device_id.as_str());

    // A name that is no member's is a bad row: nothing imported.
    write(&file, "不认识的人");
    let (code, stderr) = home.fail(&[
        "import",
        "--kind",
        "tickets",
        "--format",
        "xlsx",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("row 2") && stderr.contains("不认识的人"),
        "{stderr}"
    );
    assert_eq!(home.json(&["ticket", "list"]).as_array().unwrap().len(), 1);
}

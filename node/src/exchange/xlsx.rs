//! Records as an Excel workbook (Office Open XML), for people: one sheet, a header row in
//! Chinese, categories, statuses, priorities, channels, verdicts and tags by Chinese name,
//! lists joined by `、`, times as date-time cells in this machine's zone, members by name in
//! a column beside their device id, the header row frozen and the columns fitted to their
//! text (a Chinese character counts twice).
//!
//! The reader turns each sheet row into the same JSON object as a CSV row ([`super::Row`]),
//! so that an imported workbook obeys the rules of [`super`] and no others. It takes the
//! Chinese headers or the column keys, names or slugs, date-time cells or text. A name
//! typed beside a member column is kept for [`super::parse_tickets_with`] to look up (a
//! ticket assigned by name); the derived columns are read past, as in CSV.
//!
//! A workbook is a zip archive, so reading is bounded before anything is read whole: a file
//! larger than [`MAX_FILE`], parts that unpack to more than [`MAX_UNPACKED`] in all, or a
//! sheet of more than [`MAX_ROWS`] rows is refused (a zip bomb or the wrong file).

use std::collections::HashMap;
use std::io::{Cursor, Read};

use calamine::{DataRef, Reader};
use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone};
use rust_xlsxwriter::{Format as CellFormat, Workbook};
use serde_json::{Map, Value};
use unicode_width::UnicodeWidthStr;

use super::{Cut, Export, ExportError, ImportError, Kind, Row, list_cell};
use crate::model::{Category, Channel, Priority, Satisfaction, Status, Tag, Time};

/// The most a cell holds, in UTF-16 code units, as Excel counts characters.
pub const MAX_CELL: usize = 32_767;
/// The largest workbook import reads, in bytes.
pub const MAX_FILE: u64 = 64 * 1024 * 1024;
/// The most all parts of a workbook may unpack to, in bytes.
pub const MAX_UNPACKED: u64 = 512 * 1024 * 1024;
/// The most rows a sheet may have, its header row included.
pub const MAX_ROWS: u32 = 200_001;

/// How much a workbook to import may hold.
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// The file, in bytes.
    file: u64,
    /// All its parts unpacked, in bytes.
    unpacked: u64,
    /// The rows of its sheet, the header row included.
    rows: u32,
}

const LIMITS: Limits = Limits {
    file: MAX_FILE,
    unpacked: MAX_UNPACKED,
    rows: MAX_ROWS,
};

/// What a column holds, and so how it is written and read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cell {
    /// Text as it is.
    Text,
    /// A time: a date-time cell.
    Time,
    /// A list joined by `、`.
    List,
    /// A category by Chinese name.
    Category,
    /// A status by Chinese name.
    Status,
    /// A priority by Chinese name.
    Priority,
    /// A channel by Chinese name.
    Channel,
    /// A verdict by Chinese name.
    Satisfaction,
    /// Tags by Chinese name, joined by `、`.
    Tags,
    /// Yes or no (是 / 否).
    Flag,
    /// A member's device id; the sheet has the member's name in the next column.
    Member(&'static str),
}

/// A column of the sheet: the record's key, and its header.
struct Column {
    key: &'static str,
    header: &'static str,
    cell: Cell,
}

const fn col(key: &'static str, header: &'static str, cell: Cell) -> Column {
    Column { key, header, cell }
}

const VISITS: &[Column] = &[
    col("visited_at", "走访时间", Cell::Time),
    col("grid", "网格", Cell::Text),
    col("household", "户", Cell::Text),
    col("category", "类别", Cell::Category),
    col("residents", "走访对象", Cell::List),
    col("note", "走访情况", Cell::Text),
    col("needs", "诉求", Cell::Text),
    col("author", "走访人编号", Cell::Member("走访人")),
    col("tickets", "关联工单", Cell::List),
    col("household_id", "户编号", Cell::Text),
    col("id", "编号", Cell::Text),
];

const TICKETS: &[Column] = &[
    col("opened_at", "登记时间", Cell::Time),
    col("title", "标题", Cell::Text),
    col("status", "状态", Cell::Status),
    col("priority", "优先级", Cell::Priority),
    col("category", "类别", Cell::Category),
    col("grid", "网格", Cell::Text),
    col("household", "户", Cell::Text),
    col("channel", "来源渠道", Cell::Channel),
    col("note", "说明", Cell::Text),
    col("assignee", "承办人编号", Cell::Member("承办人")),
    col("opened_by", "登记人编号", Cell::Member("登记人")),
    col("due", "办结期限", Cell::Time),
    col("overdue", "超期", Cell::Flag),
    col("resolved_at", "办结时间", Cell::Time),
    col("satisfaction", "满意度", Cell::Satisfaction),
    col("rated_at", "回访时间", Cell::Time),
    col("household_id", "户编号", Cell::Text),
    col("id", "编号", Cell::Text),
];

const HOUSEHOLDS: &[Column] = &[
    col("address", "地址", Cell::Text),
    col("grid", "网格", Cell::Text),
    col("residents", "居民", Cell::List),
    col("tags", "标签", Cell::Tags),
    col("phone", "电话", Cell::Text),
    col("note", "备注", Cell::Text),
    col("added_at", "建档时间", Cell::Time),
    col("last_visit", "最近走访", Cell::Time),
    col("next_due", "下次走访", Cell::Time),
    col("overdue", "逾期", Cell::Flag),
    col("id", "编号", Cell::Text),
];

fn layout(kind: Kind) -> &'static [Column] {
    match kind {
        Kind::Visits => VISITS,
        Kind::Tickets => TICKETS,
        Kind::Households => HOUSEHOLDS,
    }
}

/// The sheet's name.
fn sheet_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Visits => "走访记录",
        Kind::Tickets => "工单",
        Kind::Households => "户",
    }
}

/// The headers of `kind`'s sheet, in order (name columns included).
pub fn headers(kind: Kind) -> Vec<&'static str> {
    let mut out = Vec::new();
    for c in layout(kind) {
        out.push(c.header);
        if let Cell::Member(name) = c.cell {
            out.push(name);
        }
    }
    out
}

/// The date-time format of time cells.
const TIME_FORMAT: &str = "yyyy-mm-dd hh:mm";
/// How wide a time cell shows, in characters.
const TIME_WIDTH: usize = 16;
/// Narrowest and widest column, in characters.
const MIN_WIDTH: usize = 4;
const MAX_WIDTH: usize = 64;

/// The Excel serial number of `time` in this machine's zone: days since 1899-12-30, the
/// time of day as the fraction.
fn serial(time: Time) -> f64 {
    let local = DateTime::from_timestamp_millis(time.millis())
        .unwrap_or_default()
        .with_timezone(&Local)
        .naive_local();
    let epoch = excel_epoch();
    (local - epoch).num_milliseconds() as f64 / crate::model::DAY_MS as f64
}

fn excel_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(1899, 12, 30)
        .expect("a date")
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
}

/// The time of a serial number read as this machine's local time, to the millisecond.
fn from_serial(serial: f64) -> Option<Time> {
    if !serial.is_finite() || !(0.0..3_000_000.0).contains(&serial) {
        return None;
    }
    let ms = (serial * crate::model::DAY_MS as f64).round() as i64;
    local_time(excel_epoch() + chrono::Duration::milliseconds(ms))
}

/// A wall-clock time in this machine's zone (the earlier one in the hour a clock is set
/// back).
fn local_time(local: NaiveDateTime) -> Option<Time> {
    let at = Local.from_local_datetime(&local).earliest()?;
    Some(Time::from_millis(at.timestamp_millis()))
}

/// `text` cut to fit a cell: at most [`MAX_CELL`] UTF-16 code units, the last of them `…`.
/// `None` when it fits as it is.
fn cut(text: &str) -> Option<String> {
    if text.encode_utf16().count() <= MAX_CELL {
        return None;
    }
    let mut out = String::new();
    let mut units = 0;
    for c in text.chars() {
        if units + c.len_utf16() > MAX_CELL - 1 {
            break;
        }
        units += c.len_utf16();
        out.push(c);
    }
    out.push('…');
    Some(out)
}

/// A name of an enum written in Chinese, or the slug as it is when it is none of them.
fn chinese<T: std::str::FromStr>(slug: &str, zh: impl Fn(T) -> &'static str) -> String {
    slug.parse::<T>()
        .map_or_else(|_| slug.to_string(), |v| zh(v).to_string())
}

/// The items of a list, as one cell: joined by `、`, or the JSON array when an item holds
/// a separator (so that reading it back splits it the same way).
fn joined(items: &[Value], each: impl Fn(&str) -> String) -> String {
    let texts: Vec<String> = items
        .iter()
        .map(|i| i.as_str().map_or_else(|| i.to_string(), &each))
        .collect();
    let plain = texts.iter().all(|t| {
        !t.is_empty()
            && t.trim() == t
            && !t.contains(['、', ',', '，', ';', '；', '\n', '\r'])
            && !t.starts_with('[')
    });
    if plain {
        texts.join("、")
    } else {
        serde_json::to_string(&texts).expect("text serialises")
    }
}

/// The text of a cell that is not a time.
fn text_of(cell: Cell, value: &Value) -> String {
    let Value::String(s) = value else {
        return match (cell, value) {
            (Cell::List | Cell::Tags, Value::Array(items)) => match cell {
                Cell::Tags => joined(items, |t| chinese::<Tag>(t, Tag::zh)),
                _ => joined(items, str::to_string),
            },
            (_, Value::Bool(b)) => if *b { "是" } else { "否" }.to_string(),
            (_, other) => other.to_string(),
        };
    };
    match cell {
        Cell::Category => chinese::<Category>(s, Category::zh),
        Cell::Status => chinese::<Status>(s, Status::zh),
        Cell::Priority => chinese::<Priority>(s, Priority::zh),
        Cell::Channel => chinese::<Channel>(s, Channel::zh),
        Cell::Satisfaction => chinese::<Satisfaction>(s, Satisfaction::zh),
        _ => s.clone(),
    }
}

/// How wide `text` shows: its widest line, a Chinese character counting twice.
fn width(text: &str) -> usize {
    text.lines().map(UnicodeWidthStr::width).max().unwrap_or(0)
}

fn xlsx_error(e: rust_xlsxwriter::XlsxError) -> ExportError {
    ExportError::Xlsx(e.to_string())
}

/// The workbook of `records` (each the JSON object `list` prints).
pub(super) fn write(
    records: &[Value],
    kind: Kind,
    how: &mut Export<'_>,
) -> Result<Vec<u8>, ExportError> {
    let columns = layout(kind);
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name(sheet_name(kind)).map_err(xlsx_error)?;
    let bold = CellFormat::new().set_bold();
    let time_format = CellFormat::new().set_num_format(TIME_FORMAT);
    let wrap = CellFormat::new().set_text_wrap();

    let headers = headers(kind);
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for (c, h) in headers.iter().enumerate() {
        sheet
            .write_string_with_format(0, c as u16, *h, &bold)
            .map_err(xlsx_error)?;
    }
    for (i, record) in records.iter().enumerate() {
        let row = i as u32 + 1;
        let id = record["id"].as_str().unwrap_or_default().to_string();
        let mut c: u16 = 0;
        for column in columns {
            let value = &record[column.key];
            if column.cell == Cell::Time
                && let Some(at) = value.as_str().and_then(|s| s.parse::<Time>().ok())
            {
                sheet
                    .write_number_with_format(row, c, serial(at), &time_format)
                    .map_err(xlsx_error)?;
                widths[c as usize] = widths[c as usize].max(TIME_WIDTH);
            } else if !value.is_null() {
                let mut text = text_of(column.cell, value);
                if let Some(short) = cut(&text) {
                    (how.on_cut)(&Cut {
                        record: id.clone(),
                        column: column.header,
                        chars: text.chars().count(),
                    });
                    text = short;
                }
                widths[c as usize] = widths[c as usize].max(width(&text));
                if text.contains('\n') || width(&text) > MAX_WIDTH {
                    sheet.write_string_with_format(row, c, &text, &wrap)
                } else {
                    sheet.write_string(row, c, &text)
                }
                .map_err(xlsx_error)?;
            }
            c += 1;
            if let Cell::Member(_) = column.cell {
                if let Some(name) = value.as_str().and_then(|d| how.names.get(d)) {
                    sheet.write_string(row, c, name).map_err(xlsx_error)?;
                    widths[c as usize] = widths[c as usize].max(width(name));
                }
                c += 1;
            }
        }
        (how.on_row)(i + 1);
    }
    for (c, w) in widths.iter().enumerate() {
        let w = (*w).clamp(MIN_WIDTH, MAX_WIDTH) + 2;
        sheet
            .set_column_width(c as u16, w as f64)
            .map_err(xlsx_error)?;
    }
    sheet.set_freeze_panes(1, 0).map_err(xlsx_error)?;
    book.save_to_buffer().map_err(xlsx_error)
}

fn unreadable(reason: impl Into<String>) -> ImportError {
    ImportError::Unreadable {
        format: "xlsx",
        reason: reason.into(),
    }
}

/// Checks the archive before a reader reads any part whole: every part is unpacked into
/// nothing, counting, and the file is refused once they add up to more than
/// [`MAX_UNPACKED`] (the sizes an archive declares may lie).
fn check_archive(bytes: &[u8], limits: Limits) -> Result<(), ImportError> {
    if bytes.len() as u64 > limits.file {
        return Err(unreadable(format!(
            "the file is larger than {} MiB",
            limits.file / (1024 * 1024)
        )));
    }
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| unreadable(format!("not an Excel workbook (.xlsx): {e}")))?;
    let mut left = limits.unpacked;
    for i in 0..zip.len() {
        let part = zip
            .by_index(i)
            .map_err(|e| unreadable(format!("a damaged part: {e}")))?;
        if part.size() > left {
            return Err(unreadable(too_big(limits)));
        }
        let read = std::io::copy(&mut part.take(left + 1), &mut std::io::sink())
            .map_err(|e| unreadable(format!("a damaged part: {e}")))?;
        if read > left {
            return Err(unreadable(too_big(limits)));
        }
        left -= read;
    }
    Ok(())
}

fn too_big(limits: Limits) -> String {
    format!(
        "it unpacks to more than {} MiB",
        limits.unpacked / (1024 * 1024)
    )
}

/// A cell's value as the JSON a CSV cell of that column would give.
fn value_of(cell: Cell, data: &DataRef<'_>) -> Option<Result<Value, String>> {
    let text = match data {
        DataRef::Empty => return None,
        DataRef::String(s) => s.clone(),
        DataRef::SharedString(s) => (*s).to_string(),
        DataRef::DateTime(d) => {
            if cell == Cell::Time {
                // Its parts, as the workbook's date system (1900 or 1904) counts them.
                let (y, mo, day, h, mi, sec, ms) = d.to_ymd_hms_milli();
                return Some(
                    NaiveDate::from_ymd_opt(i32::from(y), u32::from(mo), u32::from(day))
                        .and_then(|date| {
                            date.and_hms_milli_opt(
                                u32::from(h),
                                u32::from(mi),
                                u32::from(sec),
                                u32::from(ms),
                            )
                        })
                        .and_then(local_time)
                        .map(|t| Value::String(t.to_rfc3339()))
                        .ok_or_else(|| format!("{} is not a date-time", d.as_f64())),
                );
            }
            number(d.as_f64())
        }
        DataRef::Float(f) if cell == Cell::Time => {
            return Some(
                from_serial(*f)
                    .map(|t| Value::String(t.to_rfc3339()))
                    .ok_or_else(|| format!("{f} is not a date-time")),
            );
        }
        DataRef::Float(f) => number(*f),
        DataRef::Int(i) => i.to_string(),
        DataRef::Bool(b) => if *b { "是" } else { "否" }.to_string(),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.clone(),
        DataRef::Error(e) => return Some(Err(format!("the cell holds an error ({e})"))),
    };
    if text.trim().is_empty() {
        return None;
    }
    Some(match cell {
        Cell::List | Cell::Tags => list_cell(&text)
            .map_err(|_| "must be a list like 张秀英、王强 or [\"张秀英\",\"王强\"]".to_string()),
        Cell::Time => Ok(Value::String(local_text_time(&text))),
        _ => Ok(Value::String(text)),
    })
}

/// A number as people typed it: `13912345678`, not `13912345678.0`.
fn number(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        f.to_string()
    }
}

/// A time typed as text: RFC 3339 and plain dates as they are; `2026-12-08 08:30`,
/// `2026/12/8 8:30` and the like as this machine's local time.
fn local_text_time(text: &str) -> String {
    let t = text.trim();
    if t.parse::<Time>().is_ok() {
        return t.to_string();
    }
    for f in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y/%m/%d %H:%M:%S",
        "%Y/%m/%d %H:%M",
    ] {
        if let Ok(local) = NaiveDateTime::parse_from_str(t, f)
            && let Some(at) = Local.from_local_datetime(&local).earliest()
        {
            return Time::from_millis(at.timestamp_millis()).to_rfc3339();
        }
    }
    if let Ok(day) = NaiveDate::parse_from_str(t, "%Y/%m/%d") {
        return day.format("%Y-%m-%d").to_string();
    }
    t.to_string()
}

/// What a header names: a column, or the name column beside a member column.
enum Header {
    Column(&'static Column),
    Name(&'static Column),
}

fn header(kind: Kind, text: &str) -> Option<Header> {
    let t = text.trim();
    for c in layout(kind) {
        if c.header == t || c.key == t {
            return Some(Header::Column(c));
        }
        if matches!(c.cell, Cell::Member(name) if name == t) {
            return Some(Header::Name(c));
        }
    }
    None
}

/// The rows of the first sheet of a workbook, each as the JSON object of a CSV row. The
/// place of a row is its number as Excel shows it (the header is row 1).
pub(super) fn read(bytes: &[u8], kind: Kind) -> Result<Vec<Row>, ImportError> {
    read_within(bytes, kind, LIMITS)
}

fn read_within(bytes: &[u8], kind: Kind, limits: Limits) -> Result<Vec<Row>, ImportError> {
    check_archive(bytes, limits)?;
    let mut book = calamine::Xlsx::new(Cursor::new(bytes))
        .map_err(|e| unreadable(format!("not an Excel workbook (.xlsx): {e}")))?;
    let first = book
        .sheet_names()
        .first()
        .cloned()
        .ok_or_else(|| unreadable("the workbook has no sheet"))?;
    let mut cells = book
        .worksheet_cells_reader(&first)
        .map_err(|e| unreadable(e.to_string()))?;
    if cells.dimensions().end.0 >= limits.rows {
        return Err(too_many_rows(limits));
    }
    // Row number (from 0) → (column → value), in sheet order.
    let mut sheet: Vec<(u32, Vec<(u32, DataRef<'_>)>)> = Vec::new();
    while let Some(cell) = cells.next_cell().map_err(|e| unreadable(e.to_string()))? {
        let (r, c) = cell.get_position();
        if r >= limits.rows {
            return Err(too_many_rows(limits));
        }
        let value = cell.get_value().clone();
        if matches!(value, DataRef::Empty) {
            continue;
        }
        match sheet.last_mut() {
            Some((last, row)) if *last == r => row.push((c, value)),
            _ => sheet.push((r, vec![(c, value)])),
        }
    }
    let mut rows_in = sheet.into_iter();
    let Some((_, header_cells)) = rows_in.next() else {
        return Err(super::ImportError::Empty);
    };
    let mut columns: HashMap<u32, &'static Column> = HashMap::new();
    // Name columns, by the key of the member column they stand beside.
    let mut name_columns: HashMap<u32, &'static str> = HashMap::new();
    for (c, data) in &header_cells {
        let text = match data {
            DataRef::String(s) => s.clone(),
            DataRef::SharedString(s) => (*s).to_string(),
            other => format!("{other:?}"),
        };
        match header(kind, &text) {
            Some(Header::Column(col)) => {
                columns.insert(*c, col);
            }
            Some(Header::Name(member)) => {
                name_columns.insert(*c, member.key);
            }
            None => return Err(ImportError::UnknownColumn(text.trim().to_string())),
        }
    }
    let mut rows = Vec::new();
    for (r, cells) in rows_in {
        let place = super::Place::SheetRow(r + 1);
        let mut fields = Map::new();
        for (c, data) in &cells {
            if let Some(key) = name_columns.get(c) {
                if let Some(Ok(Value::String(name))) = value_of(Cell::Text, data) {
                    fields.insert(name_key(key), Value::String(name));
                }
                continue;
            }
            let Some(column) = columns.get(c) else {
                continue;
            };
            match value_of(column.cell, data) {
                None => {}
                Some(Ok(v)) => {
                    fields.insert(column.key.to_string(), v);
                }
                Some(Err(reason)) => {
                    return Err(ImportError::BadRow {
                        place,
                        reason: format!("{} ({}): {reason}", column.header, column.key).into(),
                    });
                }
            }
        }
        if fields.is_empty() {
            continue;
        }
        rows.push(Row { place, fields });
    }
    Ok(rows)
}

/// The field of a row that holds the name typed beside a member column (`assignee_name`).
pub(super) fn name_key(key: &str) -> String {
    format!("{key}_name")
}

fn too_many_rows(limits: Limits) -> ImportError {
    unreadable(format!("the sheet has more than {} rows", limits.rows - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_numbers_round_trip_to_the_millisecond() {
        for t in [
            "2026-12-08T08:30:00+08:00",
            "2000-01-01T00:00:00Z",
            "2026-03-01T23:59:59.123Z",
        ] {
            let at: Time = t.parse().unwrap();
            assert_eq!(
                from_serial(serial(at)).unwrap().millis(),
                at.millis(),
                "{t}"
            );
        }
    }

    #[test]
    fn long_text_is_cut_at_the_cell_limit_with_a_mark() {
        assert_eq!(cut("短"), None);
        let long = "长".repeat(MAX_CELL + 5);
        let short = cut(&long).unwrap();
        assert_eq!(short.encode_utf16().count(), MAX_CELL);
        assert!(short.ends_with('…'));
        // A character outside the basic plane counts twice, as Excel counts it.
        let emoji = "😀".repeat(MAX_CELL);
        assert!(cut(&emoji).unwrap().encode_utf16().count() <= MAX_CELL);
    }

    #[test]
    fn lists_join_with_the_chinese_comma_unless_an_item_holds_a_separator() {
        let plain = [Value::from("张秀英"), Value::from("王强")];
        assert_eq!(joined(&plain, str::to_string), "张秀英、王强");
        let odd = [Value::from("张、三"), Value::from("李四")];
        let cell = joined(&odd, str::to_string);
        assert_eq!(
            list_cell(&cell).unwrap(),
            serde_json::json!(["张、三", "李四"])
        );
    }

    /// A workbook of `n` visits, as export writes it.
    fn workbook(n: usize) -> Vec<u8> {
        let visits: Vec<Value> = (0..n)
            .map(|i| {
                serde_json::json!({"id": format!("{i:032x}"), "household": format!("和平路{i}号"),
                    "grid": "第一网格", "visited_at": "2026-11-20T08:00:00+08:00",
                    "residents": [], "tickets": [], "author": "00"})
            })
            .collect();
        let names = HashMap::new();
        let mut how = Export {
            format: super::super::Format::Xlsx,
            names: &names,
            on_row: &mut |_| {},
            on_cut: &mut |_| {},
        };
        write(&visits, Kind::Visits, &mut how).unwrap()
    }

    #[test]
    fn workbooks_beyond_the_limits_are_refused_before_they_are_read() {
        let book = workbook(50);
        assert_eq!(read_within(&book, Kind::Visits, LIMITS).unwrap().len(), 50);
        let small = |file, unpacked, rows| Limits {
            file,
            unpacked,
            rows,
        };
        let err = read_within(&book, Kind::Visits, small(1000, MAX_UNPACKED, MAX_ROWS)).err();
        assert!(format!("{}", err.unwrap()).contains("larger than"));
        let err = read_within(&book, Kind::Visits, small(MAX_FILE, 4096, MAX_ROWS)).err();
        assert!(format!("{}", err.unwrap()).contains("unpacks to more than"));
        let err = read_within(&book, Kind::Visits, small(MAX_FILE, MAX_UNPACKED, 50)).err();
        assert!(format!("{}", err.unwrap()).contains("more than 49 rows"));
        assert!(read_within(&book, Kind::Visits, small(MAX_FILE, MAX_UNPACKED, 51)).is_ok());

        // A few kilobytes that unpack to a megabyte, against a limit of half of one.
        let mut bomb = Vec::new();
        {
            let mut zip = zip::ZipWriter::new(Cursor::new(&mut bomb));
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            zip.start_file("xl/sharedStrings.xml", opts).unwrap();
            std::io::Write::write_all(&mut zip, &vec![b' '; 1 << 20]).unwrap();
            zip.finish().unwrap();
        }
        assert!(bomb.len() < 10_000, "{} bytes", bomb.len());
        let err = read_within(&bomb, Kind::Visits, small(MAX_FILE, 1 << 19, MAX_ROWS)).err();
        assert!(format!("{}", err.unwrap()).contains("unpacks to more than"));
    }

    #[test]
    fn a_file_that_is_not_a_workbook_is_unreadable() {
        let err = read(b"not a zip", Kind::Visits).err().unwrap();
        assert!(matches!(err, ImportError::Unreadable { .. }), "{err}");
    }
}

//! Export and import of records as CSV, JSON or Excel workbooks.
//!
//! CSV and JSON carry the objects `list --json` prints (visits, tickets, households). JSON
//! is an array of them. CSV has a header row with the same keys in the same order and one
//! record a row; a list field (`residents`, `tickets`, `tags`) is a JSON array inside its
//! cell, and an empty cell is null.
//!
//! Import reads every row into a JSON object first (so both formats share one set of rules),
//! checks them all, and only then hands the batch to the node, which stores it in one
//! transaction: a file with any bad row imports nothing, and the error names the first one.
//! A file may hold any of the columns export writes, in any order; those that the node
//! derives are read past: `id`, `author`, `opened_by` (the records become this node's own),
//! `household_id` (a visit or ticket is linked by its grid and `household` address), and a
//! ticket's `overdue` and `rated_at`, a household's `last_visit`, `next_due`, `overdue`.
//! Tags, channels and verdicts are read as slug or Chinese name.
//!
//! CSV is written for spreadsheet programs: it begins with a UTF-8 byte order mark (else
//! Excel reads the Chinese text as the local code page), and a cell that a spreadsheet
//! would take for a formula (beginning with `=`, `+`, `-`, `@`, a tab or a carriage
//! return) is written with a leading `'` ([`csv_escape`]), which import removes again
//! ([`csv_unescape`]). Import reads UTF-8, with or without the mark, and GB 18030 (what
//! Excel saves on Chinese Windows): a file that is valid UTF-8 is UTF-8, any other is
//! decoded as GB 18030 ([`decode`]).
//!
//! An Excel workbook ([`Format::Xlsx`], in [`xlsx`]) shows the same records for people: a
//! header row in Chinese, names instead of slugs, lists joined by `、`, real date-time
//! cells. Its reader turns each sheet row into the same JSON object as a CSV row, so the
//! rules below are the only ones.

use std::collections::HashMap;
use std::io::Write;

use serde_json::{Map, Value};
use yizhan_protocol::{DeviceId, DocId};

use crate::model::{
    BadTime, Category, Channel, Priority, Satisfaction, Status, Tag, Time, UnknownValue,
};
use crate::records::{FieldError, Household, NewHousehold, NewTicket, NewVisit, Ticket, Visit};

/// File format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
    /// An Excel workbook (Office Open XML) of one sheet, for people ([`xlsx`]).
    Xlsx,
}

pub mod xlsx;

/// Which records a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Visit logs.
    Visits,
    /// Tickets.
    Tickets,
    /// Households.
    Households,
}

/// A text cut to fit a spreadsheet cell ([`xlsx::MAX_CELL`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    /// The record's id.
    pub record: String,
    /// The column's header, as the sheet names it.
    pub column: &'static str,
    /// The text's length, in characters, before the cut.
    pub chars: usize,
}

/// How an export is written, beyond its records and format.
pub struct Export<'a> {
    /// The file format.
    pub format: Format,
    /// Members' names by device id: a workbook has a name column beside each device id.
    /// CSV and JSON carry ids only.
    pub names: &'a HashMap<String, String>,
    /// Called with the number of records written so far, after each.
    pub on_row: &'a mut dyn FnMut(usize),
    /// Called for each text cut to fit a cell (only a workbook's cells have a limit).
    pub on_cut: &'a mut dyn FnMut(&Cut),
}

/// The columns of a visit, in order.
pub const VISIT_COLUMNS: &[&str] = &[
    "id",
    "household",
    "household_id",
    "grid",
    "category",
    "note",
    "residents",
    "needs",
    "visited_at",
    "author",
    "tickets",
];
/// The columns of a ticket, in order.
pub const TICKET_COLUMNS: &[&str] = &[
    "id",
    "title",
    "status",
    "category",
    "priority",
    "household",
    "household_id",
    "grid",
    "assignee",
    "opened_by",
    "opened_at",
    "note",
    "due",
    "overdue",
    "channel",
    "resolved_at",
    "satisfaction",
    "rated_at",
];
/// The columns of a household, in order.
pub const HOUSEHOLD_COLUMNS: &[&str] = &[
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
const ARRAY_COLUMNS: &[&str] = &["residents", "tickets", "tags"];

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing failed.
    #[error("cannot write the export: {0}")]
    Io(#[from] std::io::Error),
    /// The CSV writer failed.
    #[error("cannot write CSV: {0}")]
    Csv(#[from] csv::Error),
    /// The workbook writer failed.
    #[error("cannot write the workbook: {0}")]
    Xlsx(String),
}

/// Why an import file was refused. Nothing was imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file as a whole is not readable in that format.
    #[error("the file is not valid {format}: {reason}")]
    Unreadable {
        /// `CSV`, `JSON` or `xlsx`.
        format: &'static str,
        /// Why.
        reason: String,
    },
    /// The header names a column export never writes.
    #[error("unknown column '{0}'")]
    UnknownColumn(String),
    /// One row is bad.
    #[error("{place}: {reason}")]
    BadRow {
        /// Where.
        place: Place,
        /// What is wrong.
        reason: RowError,
    },
    /// The file holds no records.
    #[error("the file holds no records")]
    Empty,
}

/// What is wrong with one row of an import file: a rule of the record (kept as its own
/// error, so that the binary can tell it in people's language), or what the file says.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    /// A field the record does not accept.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// A word that is not one of a field's values (a category, a tag, a status...).
    #[error(transparent)]
    Value(#[from] UnknownValue),
    /// A time that cannot be read.
    #[error(transparent)]
    Time(#[from] BadTime),
    /// Anything else about the file's cells.
    #[error("{0}")]
    Text(String),
}

impl From<String> for RowError {
    fn from(text: String) -> Self {
        RowError::Text(text)
    }
}

impl From<yizhan_protocol::ParseIdError> for RowError {
    fn from(e: yizhan_protocol::ParseIdError) -> Self {
        RowError::Text(e.to_string())
    }
}

impl From<&str> for RowError {
    fn from(text: &str) -> Self {
        RowError::Text(text.to_string())
    }
}

/// Where a row is in an import file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// A CSV record (from 1) and its line (the header is line 1).
    CsvRow {
        /// The record's number, from 1.
        row: usize,
        /// Its line in the file.
        line: usize,
    },
    /// An element of a JSON array, from 1.
    JsonRecord(usize),
    /// A sheet row as Excel numbers it (the header is row 1).
    SheetRow(u32),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::CsvRow { row, line } => write!(f, "row {row} (line {line})"),
            Place::JsonRecord(n) => write!(f, "record {n}"),
            Place::SheetRow(n) => write!(f, "row {n}"),
        }
    }
}

fn csv_cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => csv_escape(s),
        other => other.to_string(),
    }
}

/// The UTF-8 byte order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Whether a spreadsheet program could take a cell beginning with `c` for a formula (or,
/// with a tab or carriage return, strip the character and then take it for one).
fn formula_start(c: char) -> bool {
    matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r')
}

/// A text cell as written to CSV: with a leading `'` when it begins like a formula, so that
/// no spreadsheet runs it. A text already beginning with `'` and then such a character (or
/// another `'`) gets one too, so that [`csv_unescape`] gives every text back exactly.
pub fn csv_escape(text: &str) -> String {
    let mut chars = text.chars();
    let escape = match chars.next() {
        Some(c) if formula_start(c) => true,
        Some('\'') => chars.next().is_some_and(|c| c == '\'' || formula_start(c)),
        _ => false,
    };
    if escape {
        format!("'{text}")
    } else {
        text.to_string()
    }
}

/// A CSV cell as read back: without the `'` that [`csv_escape`] put before a formula.
pub fn csv_unescape(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(|c| c == '\'' || formula_start(c)) => rest,
        _ => cell,
    }
}

/// The text of an import file: UTF-8 (a leading byte order mark removed) when the bytes
/// are valid UTF-8, else GB 18030, the superset of GBK that Excel writes on Chinese
/// Windows. UTF-8 is tried first because GB 18030 would also read most UTF-8 bytes, as
/// other characters; the reverse is rare (a GBK file of Chinese text is almost never valid
/// UTF-8). A file with the mark that is not UTF-8 is refused.
pub fn decode<'a>(
    bytes: &'a [u8],
    format: &'static str,
) -> Result<std::borrow::Cow<'a, str>, ImportError> {
    let unreadable = |reason: &str| ImportError::Unreadable {
        format,
        reason: reason.to_string(),
    };
    if let Some(body) = bytes.strip_prefix(BOM) {
        return std::str::from_utf8(body)
            .map(std::borrow::Cow::Borrowed)
            .map_err(|e| {
                unreadable(&format!(
                    "it begins with a UTF-8 byte order mark but is not UTF-8: {e}"
                ))
            });
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok(std::borrow::Cow::Borrowed(text));
    }
    encoding_rs::GB18030
        .decode_without_bom_handling_and_without_replacement(bytes)
        .ok_or_else(|| unreadable("the text is neither UTF-8 nor GB 18030 (GBK)"))
}

/// A slice that serialises as a JSON array and reports each element written.
struct Observed<'a, T> {
    records: &'a [T],
    on_row: std::cell::RefCell<&'a mut dyn FnMut(usize)>,
}

impl<T: serde::Serialize> serde::Serialize for Observed<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.records.len()))?;
        for (i, r) in self.records.iter().enumerate() {
            seq.serialize_element(r)?;
            (self.on_row.borrow_mut())(i + 1);
        }
        seq.end()
    }
}

fn export<T: serde::Serialize>(
    records: &[T],
    kind: Kind,
    out: &mut dyn Write,
    how: &mut Export<'_>,
) -> Result<(), ExportError> {
    let columns = columns(kind);
    match how.format {
        Format::Json => {
            let observed = Observed {
                records,
                on_row: std::cell::RefCell::new(&mut *how.on_row),
            };
            serde_json::to_writer_pretty(&mut *out, &observed).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
        }
        Format::Csv => {
            out.write_all(BOM)?;
            let mut w = csv::Writer::from_writer(&mut *out);
            w.write_record(columns)?;
            for (i, r) in records.iter().enumerate() {
                let v = serde_json::to_value(r).expect("records serialise");
                w.write_record(columns.iter().map(|c| csv_cell(&v[*c])))?;
                (how.on_row)(i + 1);
            }
            w.flush()?;
        }
        Format::Xlsx => {
            let values: Vec<Value> = records
                .iter()
                .map(|r| serde_json::to_value(r).expect("records serialise"))
                .collect();
            out.write_all(&xlsx::write(&values, kind, how)?)?;
        }
    }
    Ok(())
}

/// The columns of `kind`, in order (CSV's header; the keys of a JSON object).
pub fn columns(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Visits => VISIT_COLUMNS,
        Kind::Tickets => TICKET_COLUMNS,
        Kind::Households => HOUSEHOLD_COLUMNS,
    }
}

/// Runs `export` with no names, no progress and no report of cuts.
fn quietly<R>(format: Format, export: impl FnOnce(&mut Export<'_>) -> R) -> R {
    let names = HashMap::new();
    let mut how = Export {
        format,
        names: &names,
        on_row: &mut |_| {},
        on_cut: &mut |_| {},
    };
    export(&mut how)
}

/// Writes visits in `format` (a workbook without member names, cuts unreported).
pub fn export_visits(
    visits: &[Visit],
    format: Format,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    quietly(format, |how| export(visits, Kind::Visits, out, how))
}

/// Writes tickets in `format` (a workbook without member names, cuts unreported).
pub fn export_tickets(
    tickets: &[Ticket],
    format: Format,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    quietly(format, |how| export(tickets, Kind::Tickets, out, how))
}

/// Writes households in `format` (a workbook without member names, cuts unreported).
pub fn export_households(
    households: &[Household],
    format: Format,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    quietly(format, |how| export(households, Kind::Households, out, how))
}

/// Writes visits as `how` says.
pub fn export_visits_with(
    visits: &[Visit],
    out: &mut dyn Write,
    how: &mut Export<'_>,
) -> Result<(), ExportError> {
    export(visits, Kind::Visits, out, how)
}

/// Writes tickets as `how` says.
pub fn export_tickets_with(
    tickets: &[Ticket],
    out: &mut dyn Write,
    how: &mut Export<'_>,
) -> Result<(), ExportError> {
    export(tickets, Kind::Tickets, out, how)
}

/// Writes households as `how` says.
pub fn export_households_with(
    households: &[Household],
    out: &mut dyn Write,
    how: &mut Export<'_>,
) -> Result<(), ExportError> {
    export(households, Kind::Households, out, how)
}

/// One row as a JSON object, with where it came from.
pub(crate) struct Row {
    place: Place,
    fields: Map<String, Value>,
}

fn read_rows(bytes: &[u8], format: Format, kind: Kind) -> Result<Vec<Row>, ImportError> {
    let columns = columns(kind);
    let rows = match format {
        Format::Xlsx => xlsx::read(bytes, kind)?,
        Format::Json => {
            let text = decode(bytes, "JSON")?;
            let value: Value =
                serde_json::from_str(&text).map_err(|e| ImportError::Unreadable {
                    format: "JSON",
                    reason: e.to_string(),
                })?;
            let Value::Array(items) = value else {
                return Err(ImportError::Unreadable {
                    format: "JSON",
                    reason: "expected an array of objects".into(),
                });
            };
            let mut rows = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let place = Place::JsonRecord(i + 1);
                let Value::Object(fields) = item else {
                    return Err(ImportError::BadRow {
                        place,
                        reason: "not an object".into(),
                    });
                };
                if let Some(k) = fields.keys().find(|k| !columns.contains(&k.as_str())) {
                    return Err(ImportError::BadRow {
                        place,
                        reason: format!("unknown field '{k}'").into(),
                    });
                }
                rows.push(Row { place, fields });
            }
            rows
        }
        Format::Csv => {
            let text = decode(bytes, "CSV")?;
            let mut reader = csv::ReaderBuilder::new()
                .flexible(false)
                .from_reader(text.as_bytes());
            let header: Vec<String> = reader
                .headers()
                .map_err(|e| ImportError::Unreadable {
                    format: "CSV",
                    reason: e.to_string(),
                })?
                .iter()
                .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
                .collect();
            if let Some(h) = header.iter().find(|h| !columns.contains(&h.as_str())) {
                return Err(ImportError::UnknownColumn(h.clone()));
            }
            let mut rows = Vec::new();
            for (i, record) in reader.records().enumerate() {
                let place = Place::CsvRow {
                    row: i + 1,
                    line: i + 2,
                };
                let record = record.map_err(|e| ImportError::BadRow {
                    place,
                    reason: e.to_string().into(),
                })?;
                let mut fields = Map::new();
                for (name, cell) in header.iter().zip(record.iter()) {
                    let cell = csv_unescape(cell);
                    let value = if cell.is_empty() {
                        Value::Null
                    } else if ARRAY_COLUMNS.contains(&name.as_str()) {
                        list_cell(cell).map_err(|_| ImportError::BadRow {
                            place,
                            reason: format!(
                                "{name} must be a list like 张秀英、王强 or [\"张秀英\",\"王强\"]"
                            )
                            .into(),
                        })?
                    } else {
                        Value::String(cell.to_string())
                    };
                    fields.insert(name.clone(), value);
                }
                rows.push(Row { place, fields });
            }
            rows
        }
    };
    if rows.is_empty() {
        return Err(ImportError::Empty);
    }
    Ok(rows)
}

/// A list in one cell: the JSON array `export` writes, or items as people type them in a
/// spreadsheet, separated by 、 , ， ; ； or line breaks.
pub(crate) fn list_cell(cell: &str) -> Result<Value, serde_json::Error> {
    if cell.trim_start().starts_with('[') {
        return serde_json::from_str(cell);
    }
    Ok(Value::Array(
        cell.split(['、', ',', '，', ';', '；', '\n', '\r'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.to_string()))
            .collect(),
    ))
}

impl Row {
    fn bad(&self, reason: impl Into<RowError>) -> ImportError {
        ImportError::BadRow {
            place: self.place,
            reason: reason.into(),
        }
    }

    fn text(&self, key: &str) -> Result<Option<String>, ImportError> {
        match self.fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.bad(format!("{key} must be text"))),
        }
    }

    fn required(&self, key: &str) -> Result<String, ImportError> {
        match self.text(key)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(self.bad(format!("{key} must not be empty"))),
        }
    }

    fn list(&self, key: &str) -> Result<Vec<String>, ImportError> {
        match self.fields.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(self.bad(format!("{key} must be a list of text"))),
                })
                .collect(),
            Some(_) => Err(self.bad(format!("{key} must be a list"))),
        }
    }

    /// When the record's event happened: required, as an import has no other source for
    /// it (dating it now would be a guess that looks like a fact).
    fn happened(&self, key: &str) -> Result<Time, ImportError> {
        self.parsed::<Time>(key)?
            .ok_or_else(|| self.bad(format!("{key} is missing (when it happened is required)")))
    }

    /// A time at which something happened, when given: it must be one that can be true.
    fn happened_opt(&self, key: &'static str) -> Result<Option<Time>, ImportError> {
        let at = self.parsed::<Time>(key)?;
        if let Some(t) = at {
            t.check_happened(Time::now_millis())
                .map_err(|e| self.bad(FieldError::Time(key, e)))?;
        }
        Ok(at)
    }

    fn parsed<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, ImportError>
    where
        T::Err: Into<RowError>,
    {
        self.text(key)?
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.parse::<T>().map_err(|e| self.bad(e)))
            .transpose()
    }
}

/// Reads visits to import. Every row is checked; the first bad one is the error.
pub fn parse_visits(bytes: &[u8], format: Format) -> Result<Vec<NewVisit>, ImportError> {
    read_rows(bytes, format, Kind::Visits)?
        .iter()
        .map(|row| {
            let tickets = row
                .list("tickets")?
                .iter()
                .map(|t| {
                    t.parse::<DocId>()
                        .map_err(|_| row.bad(format!("'{t}' is not a ticket id")))
                })
                .collect::<Result<_, _>>()?;
            let visit = NewVisit {
                household: row.required("household")?,
                grid: row.text("grid")?,
                category: row.parsed::<Category>("category")?,
                note: row.text("note")?,
                residents: row.list("residents")?,
                needs: row.text("needs")?,
                visited_at: Some(row.happened("visited_at")?),
                tickets,
                ..NewVisit::default()
            };
            visit.check().map_err(|e| row.bad(e))?;
            Ok(visit)
        })
        .collect()
}

/// Reads tickets to import. Every row is checked; the first bad one is the error.
pub fn parse_tickets(bytes: &[u8], format: Format) -> Result<Vec<NewTicket>, ImportError> {
    parse_tickets_with(bytes, format, &|_| None)
}

/// [`parse_tickets`], with the members by name: a workbook row whose assignee has a name
/// (承办人) and no device id is assigned to the member `member` finds by that name; a name
/// it does not find makes the row bad. The device id wins where a row has both.
pub fn parse_tickets_with(
    bytes: &[u8],
    format: Format,
    member: &dyn Fn(&str) -> Option<DeviceId>,
) -> Result<Vec<NewTicket>, ImportError> {
    read_rows(bytes, format, Kind::Tickets)?
        .iter()
        .map(|row| {
            let opened_at = row.happened("opened_at")?;
            let assignee = match row.parsed::<DeviceId>("assignee")? {
                Some(d) => Some(d),
                None => match row.text(&xlsx::name_key("assignee"))? {
                    Some(name) => Some(member(name.trim()).ok_or_else(|| {
                        row.bad(format!("no member is named '{name}' (assignee)"))
                    })?),
                    None => None,
                },
            };
            let ticket = NewTicket {
                title: row.required("title")?,
                status: row.parsed::<Status>("status")?,
                category: row.parsed::<Category>("category")?,
                priority: row.parsed::<Priority>("priority")?,
                household: row.text("household")?,
                grid: row.text("grid")?,
                assignee,
                opened_at: Some(opened_at),
                note: row.text("note")?,
                due: row.parsed::<Time>("due")?,
                channel: row.parsed::<Channel>("channel")?,
                resolved_at: row.happened_opt("resolved_at")?,
                satisfaction: row.parsed::<Satisfaction>("satisfaction")?,
                ..NewTicket::default()
            };
            ticket.check().map_err(|e| row.bad(e))?;
            if ticket
                .resolved_at
                .is_some_and(|r| r.millis() < opened_at.millis())
            {
                return Err(row.bad("resolved_at is before opened_at"));
            }
            // A verdict of the follow-up call comes after a resolution: the row is resolved
            // or closed, or (reopened since) still carries when it was resolved.
            let resolved = matches!(ticket.status, Some(Status::Resolved | Status::Closed))
                || ticket.resolved_at.is_some();
            if ticket.satisfaction.is_some() && !resolved {
                return Err(row.bad(
                    "satisfaction is recorded on a resolved or closed ticket (status or \
                     resolved_at)",
                ));
            }
            Ok(ticket)
        })
        .collect()
}

/// Reads households to import. Every row is checked; the first bad one is the error. A
/// row without `added_at` is added now: a station's ledger seldom records when a household
/// joined it.
pub fn parse_households(bytes: &[u8], format: Format) -> Result<Vec<NewHousehold>, ImportError> {
    read_rows(bytes, format, Kind::Households)?
        .iter()
        .map(|row| {
            let tags = row
                .list("tags")?
                .iter()
                .map(|t| t.parse::<Tag>().map_err(|e| row.bad(e)))
                .collect::<Result<Vec<_>, _>>()?;
            let mut unique = Vec::with_capacity(tags.len());
            for t in tags {
                if !unique.contains(&t) {
                    unique.push(t);
                }
            }
            let household = NewHousehold {
                address: row.required("address")?,
                grid: row.text("grid")?,
                residents: row.list("residents")?,
                tags: unique,
                phone: row.text("phone")?,
                note: row.text("note")?,
                added_at: row.parsed::<Time>("added_at")?,
            };
            household.check().map_err(|e| row.bad(e))?;
            Ok(household)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_json_rows_read_alike() {
        let csv = "household,residents,category,visited_at\n和平里 3-2-101,\"[\"\"张三\"\",\"\"李四\"\"]\",扶贫解困,2026-11-20\n";
        let json = r#"[{"household":"和平里 3-2-101","residents":["张三","李四"],"category":"poverty-relief","visited_at":"2026-11-20"}]"#;
        let a = parse_visits(csv.as_bytes(), Format::Csv).unwrap();
        let b = parse_visits(json.as_bytes(), Format::Json).unwrap();
        assert_eq!(a.len(), 1);
        for v in [&a[0], &b[0]] {
            assert_eq!(v.household, "和平里 3-2-101");
            assert_eq!(v.residents, vec!["张三", "李四"]);
            assert_eq!(v.category, Some(Category::PovertyRelief));
        }
    }

    #[test]
    fn first_bad_row_is_named() {
        let csv = "household,category,visited_at\nA,information,2026-11-20\nB,welfare,2026-11-20\nC,nonsense,2026-11-20\n";
        let err = parse_visits(csv.as_bytes(), Format::Csv).unwrap_err();
        assert!(err.to_string().starts_with("row 2 (line 3)"), "{err}");
        let err = parse_visits(b"houshold\nA\n", Format::Csv).unwrap_err();
        assert!(matches!(err, ImportError::UnknownColumn(_)));
    }

    #[test]
    fn households_read_tags_as_slug_or_chinese_and_may_lack_added_at() {
        let csv = "\u{feff}address,grid,residents,tags,phone,note\n\
                   幸福里3号楼201室,第三网格,\"[\"\"王秀英\"\"]\",\"[\"\"低保户\"\",\"\"elderly-alone\"\",\"\"独居老人\"\"]\",'+86 139,\n\
                   和平路8号,第一网格,,,,\n";
        let h = parse_households(csv.as_bytes(), Format::Csv).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].tags, vec![Tag::LowIncome, Tag::ElderlyAlone]);
        assert_eq!(h[0].residents, vec!["王秀英"]);
        assert_eq!(h[0].phone.as_deref(), Some("+86 139"));
        assert_eq!(h[0].added_at, None);
        assert!(h[1].tags.is_empty() && h[1].residents.is_empty());
        assert_eq!(h[1].grid.as_deref(), Some("第一网格"));

        let bad = "address,tags\n甲,[]\n乙,\"[\"\"贫困户\"\"]\"\n";
        let err = parse_households(bad.as_bytes(), Format::Csv).unwrap_err();
        assert!(err.to_string().starts_with("row 2 (line 3)"), "{err}");
        assert!(err.to_string().contains("贫困户"), "{err}");
        let err = parse_households(b"address,grid\n,g\n", Format::Csv).unwrap_err();
        assert!(err.to_string().contains("address"), "{err}");
    }

    #[test]
    fn tickets_keep_due_channel_resolution_and_verdict() {
        let json = r#"[{"title":"灯","opened_at":"2026-11-01","due":"2026-11-03","channel":"热线",
            "status":"resolved","resolved_at":"2026-11-02T08:00:00Z","satisfaction":"基本满意",
            "household_id":"00","overdue":false,"rated_at":"x"}]"#;
        let t = parse_tickets(json.as_bytes(), Format::Json).unwrap();
        assert_eq!(t[0].due, Some("2026-11-03".parse().unwrap()));
        assert_eq!(t[0].channel, Some(Channel::Hotline));
        assert_eq!(t[0].satisfaction, Some(Satisfaction::Basic));
        assert_eq!(
            t[0].resolved_at,
            Some("2026-11-02T08:00:00Z".parse().unwrap())
        );
        assert_eq!(t[0].household_id, None, "household_id is read past");

        for (row, what) in [
            ("open,,满意", "a verdict on an open ticket"),
            ("resolved,2026-10-01,", "resolved before opened"),
            ("resolved,2999-01-01,", "resolved in the future"),
        ] {
            let csv =
                format!("title,opened_at,status,resolved_at,satisfaction\n甲,2026-11-01,{row}\n");
            let err = parse_tickets(csv.as_bytes(), Format::Csv).unwrap_err();
            assert!(err.to_string().starts_with("row 1"), "{what}: {err}");
        }
        // Reopened after a rating: it still carries its resolution, and imports.
        let csv =
            "title,opened_at,status,resolved_at,satisfaction\n甲,2026-11-01,open,2026-11-02,满意\n";
        assert!(parse_tickets(csv.as_bytes(), Format::Csv).is_ok());
        let csv = "title,opened_at,channel\n甲,2026-11-01,电话\n";
        assert!(parse_tickets(csv.as_bytes(), Format::Csv).is_err());
    }

    #[test]
    fn escaped_cells_read_back_to_the_same_text() {
        for text in [
            "=HYPERLINK(\"http://evil.example/\")",
            "+1",
            "-2",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "'=x",
            "''",
            "'",
            "'abc",
            "plain",
            "",
            "和平里",
        ] {
            let cell = csv_escape(text);
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{cell:?}"
            );
            assert_eq!(csv_unescape(&cell), text);
        }
        assert_eq!(csv_escape("'abc"), "'abc");
    }

    #[test]
    fn utf8_is_read_as_utf8_and_anything_else_as_gb18030() {
        let text = "household,visited_at\n和平里,2026-11-20\n";
        assert_eq!(decode(text.as_bytes(), "CSV").unwrap(), text);
        let with_bom = [BOM, text.as_bytes()].concat();
        assert_eq!(decode(&with_bom, "CSV").unwrap(), text);
        let (gbk, _, unmappable) = encoding_rs::GB18030.encode(text);
        assert!(!unmappable);
        assert!(std::str::from_utf8(&gbk).is_err());
        assert_eq!(decode(&gbk, "CSV").unwrap(), text);
        let mut bad = with_bom.clone();
        bad.push(0xff);
        assert!(decode(&bad, "CSV").is_err());
    }
}

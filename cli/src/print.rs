//! `print visit|ticket|household ID`: one record as a page for the file cabinet. The page
//! is self-contained HTML (no scripts, no fonts, no images fetched from anywhere) laid out
//! for A4 paper by its print CSS, always in Chinese whatever this run speaks: the record's
//! fields with names for categories, statuses and members, its history (who changed what,
//! when), a ticket's comments and visits, a household's visits and tickets. Every text is
//! escaped: what residents and members wrote prints as text, never as markup.
//!
//! Without `--out` the page goes to stdout; with `--out` it is written atomically and
//! `--json` prints `{"out"}`. `--json` without `--out` prints `{"out": null, "html"}`, the
//! page inside the JSON value (stdout carries one JSON value and nothing else).

use std::fmt::Write as _;

use anyhow::Context;
use fluent_bundle::FluentValue;
use serde_json::{Value, json};
use yizhan_node::Node;
use yizhan_node::records::{Comment, HistoryEntry, Ticket, Visit};
use yizhan_protocol::RecordKind;

use crate::args::{PrintArgs, PrintKind};
use crate::i18n::{Lang, message_in};
use crate::output::{self, Names, Out};
use crate::tr;

/// A label of the page, in Chinese.
fn t(id: &str) -> String {
    message_in(Lang::Zh, id, &[])
}

/// A label with arguments, in Chinese.
fn ta(id: &str, args: &[(&'static str, FluentValue<'static>)]) -> String {
    message_in(Lang::Zh, id, args)
}

/// Text as HTML: markup characters escaped, control characters replaced.
fn esc(text: &str) -> String {
    html_escape::encode_text(&output::clean(text)).into_owned()
}

/// `2026年12月8日 08:30` in this machine's zone; `-` for none.
fn when(time: Option<&str>) -> String {
    output::when_in(Lang::Zh, time)
}

/// A status, priority, channel, verdict or tag by its Chinese name; `-` for none.
fn named(slug: Option<&str>) -> String {
    slug.map_or_else(|| "-".to_string(), |s| output::word_in(Lang::Zh, s))
}

/// A category by its Chinese name; `-` for none.
fn category(slug: Option<&str>) -> String {
    output::category(&slug.map(str::to_string))
}

fn opt(text: Option<&str>) -> String {
    match text {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "-".to_string(),
    }
}

fn list(items: &[String]) -> String {
    output::list_in(Lang::Zh, items)
}

/// The page being written.
struct Page {
    html: String,
}

impl Page {
    fn new(title: &str) -> Page {
        let mut html = String::new();
        let _ = write!(
            html,
            "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>{}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
            esc(title),
            esc(title)
        );
        Page { html }
    }

    /// A table of label and value rows.
    fn fields(&mut self, rows: &[(String, String)]) {
        self.html.push_str("<table class=\"fields\">\n");
        for (label, value) in rows {
            let _ = writeln!(
                self.html,
                "<tr><th>{}</th><td>{}</td></tr>",
                esc(label),
                esc(value)
            );
        }
        self.html.push_str("</table>\n");
    }

    /// A section: a heading and a table with a header row; `empty` when it has no rows.
    /// `widths` are the columns' shares of the page width, in percent.
    fn section(&mut self, heading: &str, header: &[String], widths: &[u8], rows: &[Vec<String>]) {
        let _ = writeln!(self.html, "<section>\n<h2>{}</h2>", esc(heading));
        if rows.is_empty() {
            let _ = writeln!(self.html, "<p class=\"none\">{}</p>", esc(&t("print-none")));
        } else {
            self.html.push_str("<table class=\"list\">\n<colgroup>");
            for w in widths {
                let _ = write!(self.html, "<col style=\"width: {w}%\">");
            }
            self.html.push_str("</colgroup>\n<thead><tr>");
            for h in header {
                let _ = write!(self.html, "<th>{}</th>", esc(h));
            }
            self.html.push_str("</tr></thead>\n<tbody>\n");
            for row in rows {
                self.html.push_str("<tr>");
                for cell in row {
                    let _ = write!(self.html, "<td>{}</td>", esc(cell));
                }
                self.html.push_str("</tr>\n");
            }
            self.html.push_str("</tbody>\n</table>\n");
        }
        self.html.push_str("</section>\n");
    }

    fn finish(mut self, id: &str) -> String {
        let printed = when(Some(&yizhan_node::model::Time::now().to_rfc3339()));
        let _ = write!(
            self.html,
            "<footer>{}</footer>\n</body>\n</html>\n",
            esc(&ta(
                "print-footer",
                &[
                    ("id", FluentValue::from(id.to_string())),
                    ("at", FluentValue::from(printed)),
                ]
            ))
        );
        self.html
    }
}

/// Print CSS: A4 with margins, tables that break between rows, never inside one, and
/// headings kept with what follows them.
const CSS: &str = r#"@page { size: A4; margin: 18mm 15mm 18mm 15mm; }
html { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", "PingFang SC", "SimSun", sans-serif; font-size: 10.5pt; color: #000; background: #fff; }
body { margin: 0; }
@media screen { body { max-width: 180mm; margin: 10mm auto; } }
h1 { font-size: 16pt; text-align: center; margin: 0 0 5mm; }
h2 { font-size: 12pt; margin: 5mm 0 2mm; break-after: avoid; page-break-after: avoid; }
table { width: 100%; border-collapse: collapse; table-layout: fixed; margin: 0 0 3mm; }
th, td { border: 0.5pt solid #000; padding: 1.2mm 2mm; text-align: left; vertical-align: top; white-space: pre-wrap; overflow-wrap: anywhere; word-break: break-word; }
th { background: #eee; font-weight: bold; }
table.fields th { width: 24mm; }
thead { display: table-header-group; }
tr { break-inside: avoid; page-break-inside: avoid; }
section { break-inside: auto; }
p.none { margin: 0 0 3mm; color: #333; }
footer { margin-top: 6mm; font-size: 9pt; color: #333; text-align: right; }
"#;

/// The Chinese name of a field a change set.
fn field_name(field: &str, kind: RecordKind) -> String {
    match (kind, field) {
        (RecordKind::Household, "residents") => return t("print-household-residents"),
        (RecordKind::Household, "note") => return t("print-household-note"),
        _ => {}
    }
    let id = format!("print-field-{}", field.replace('_', "-"));
    let name = t(&id);
    if name == id { field.to_string() } else { name }
}

/// A value a change set, as people read it.
fn field_value(field: &str, value: &Value, names: &Names) -> String {
    let text = match value {
        Value::Null => return t("print-removed"),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let items: Vec<String> = items
                .iter()
                .map(|i| {
                    let s = i.as_str().map_or_else(|| i.to_string(), str::to_string);
                    if field == "tags" { named(Some(&s)) } else { s }
                })
                .collect();
            return list(&items);
        }
        other => other.to_string(),
    };
    match field {
        "category" => category(Some(&text)),
        "status" | "priority" | "channel" | "satisfaction" => named(Some(&text)),
        "assignee" => names.name(&text),
        "visited_at" | "opened_at" | "due" | "resolved_at" | "rated_at" | "added_at" => {
            when(Some(&text))
        }
        _ => text,
    }
}

/// What a change did: made the record, changed it, or commented.
fn verb(message: &str) -> String {
    let first = message.split([':', ' ']).next().unwrap_or(message);
    match first {
        "add" | "open" => t("print-made"),
        "comment" => t("print-commented"),
        "resolve" => t("print-settled"),
        _ => t("print-changed"),
    }
}

fn history(page: &mut Page, entries: &[HistoryEntry], names: &Names, kind: RecordKind) {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|h| {
            let what = h
                .changes
                .iter()
                .filter(|c| !matches!(c.field.as_str(), "kind" | "id" | "household_id"))
                .map(|c| match c.field.strip_prefix("tag:") {
                    Some(tag) => {
                        let set = c.value == Value::Bool(true) || c.value == "true";
                        let id = if set {
                            "print-tag-added"
                        } else {
                            "print-tag-removed"
                        };
                        ta(id, &[("tag", FluentValue::from(named(Some(tag))))])
                    }
                    None => format!(
                        "{}：{}",
                        field_name(&c.field, kind),
                        field_value(&c.field, &c.value, names)
                    ),
                })
                .collect::<Vec<_>>()
                .join("\n");
            vec![
                when(Some(&h.at)),
                names.name(&h.author),
                verb(&h.message),
                what,
            ]
        })
        .collect();
    page.section(
        &t("print-history"),
        &[
            t("print-at"),
            t("print-who"),
            t("print-change"),
            t("print-what"),
        ],
        &[23, 14, 12, 51],
        &rows,
    );
}

fn visit_rows(visits: &[Visit], names: &Names) -> Vec<Vec<String>> {
    visits
        .iter()
        .map(|v| {
            vec![
                when(Some(&v.visited_at)),
                names.name(&v.author),
                category(v.category.as_deref()),
                list(&v.residents),
                opt(v.note.as_deref()),
            ]
        })
        .collect()
}

fn visit_header() -> Vec<String> {
    [
        "print-visited-at",
        "print-visitor",
        "print-category",
        "print-residents",
        "print-note",
    ]
    .iter()
    .map(|id| t(id))
    .collect()
}

fn ticket_status(tk: &Ticket) -> String {
    let status = named(Some(&tk.status));
    if tk.overdue {
        format!("{status}（{}）", t("print-overdue"))
    } else {
        status
    }
}

fn print_visit(node: &Node, id: &str, names: &Names) -> anyhow::Result<(String, String)> {
    let id = node.resolve(RecordKind::Visit, id)?;
    let d = node.show_visit(id)?;
    let v = &d.visit;
    let mut page = Page::new(&t("print-visit-title"));
    page.fields(&[
        (t("print-household"), v.household.clone()),
        (t("print-grid"), opt(v.grid.as_deref())),
        (t("print-visited-at"), when(Some(&v.visited_at))),
        (t("print-visitor"), names.name(&v.author)),
        (t("print-category"), category(v.category.as_deref())),
        (t("print-residents"), list(&v.residents)),
        (t("print-note"), opt(v.note.as_deref())),
        (t("print-needs"), opt(v.needs.as_deref())),
        (t("print-tickets"), list(&v.tickets)),
        (t("print-id"), v.id.clone()),
    ]);
    history(&mut page, &d.history, names, RecordKind::Visit);
    Ok((v.id.clone(), page.finish(&v.id)))
}

fn print_ticket(node: &Node, id: &str, names: &Names) -> anyhow::Result<(String, String)> {
    let id = node.resolve(RecordKind::Ticket, id)?;
    let d = node.show_ticket(id)?;
    let tk = &d.ticket;
    let mut page = Page::new(&ta(
        "print-ticket-title",
        &[("title", FluentValue::from(tk.title.clone()))],
    ));
    page.fields(&[
        (t("print-title"), tk.title.clone()),
        (t("print-status"), ticket_status(tk)),
        (t("print-priority"), named(Some(&tk.priority))),
        (t("print-category"), category(tk.category.as_deref())),
        (t("print-household"), opt(tk.household.as_deref())),
        (t("print-grid"), opt(tk.grid.as_deref())),
        (t("print-channel"), named(tk.channel.as_deref())),
        (t("print-opened-by"), names.name(&tk.opened_by)),
        (t("print-opened-at"), when(Some(&tk.opened_at))),
        (
            t("print-assignee"),
            tk.assignee
                .as_deref()
                .map_or_else(|| "-".to_string(), |d| names.name(d)),
        ),
        (t("print-due"), when(tk.due.as_deref())),
        (t("print-resolved-at"), when(tk.resolved_at.as_deref())),
        (t("print-satisfaction"), named(tk.satisfaction.as_deref())),
        (t("print-note"), opt(tk.note.as_deref())),
        (t("print-id"), tk.id.clone()),
    ]);
    let comments: Vec<Vec<String>> = d
        .comments
        .iter()
        .map(|c: &Comment| vec![when(Some(&c.at)), names.name(&c.author), c.text.clone()])
        .collect();
    page.section(
        &t("print-comments"),
        &[t("print-at"), t("print-who"), t("print-comment")],
        &[23, 14, 63],
        &comments,
    );
    let mut visits = Vec::new();
    for v in &d.visits {
        if let Ok(vid) = node.resolve(RecordKind::Visit, v)
            && let Ok(detail) = node.show_visit(vid)
        {
            visits.push(detail.visit);
        }
    }
    page.section(
        &t("print-visits"),
        &visit_header(),
        &[23, 12, 12, 15, 38],
        &visit_rows(&visits, names),
    );
    history(&mut page, &d.history, names, RecordKind::Ticket);
    Ok((tk.id.clone(), page.finish(&tk.id)))
}

fn print_household(node: &Node, id: &str, names: &Names) -> anyhow::Result<(String, String)> {
    let id = node.resolve(RecordKind::Household, id)?;
    let d = node.show_household(id)?;
    let h = &d.household;
    let tags: Vec<String> = h.tags.iter().map(|s| named(Some(s))).collect();
    let next = if h.overdue {
        format!("{}（{}）", when(h.next_due.as_deref()), t("print-overdue"))
    } else {
        when(h.next_due.as_deref())
    };
    let mut page = Page::new(&ta(
        "print-household-title",
        &[("address", FluentValue::from(h.address.clone()))],
    ));
    page.fields(&[
        (t("print-address"), h.address.clone()),
        (t("print-grid"), opt(h.grid.as_deref())),
        (t("print-household-residents"), list(&h.residents)),
        (t("print-tags"), list(&tags)),
        (t("print-phone"), opt(h.phone.as_deref())),
        (t("print-household-note"), opt(h.note.as_deref())),
        (t("print-added-at"), when(h.added_at.as_deref())),
        (t("print-last-visit"), when(h.last_visit.as_deref())),
        (t("print-next-due"), next),
        (t("print-id"), h.id.clone()),
    ]);
    page.section(
        &t("print-visits"),
        &visit_header(),
        &[23, 12, 12, 15, 38],
        &visit_rows(&d.visits, names),
    );
    let tickets: Vec<Vec<String>> = d
        .tickets
        .iter()
        .map(|tk| {
            vec![
                when(Some(&tk.opened_at)),
                tk.title.clone(),
                ticket_status(tk),
                tk.assignee
                    .as_deref()
                    .map_or_else(|| "-".to_string(), |d| names.name(d)),
            ]
        })
        .collect();
    page.section(
        &t("print-tickets"),
        &[
            t("print-opened-at"),
            t("print-title"),
            t("print-status"),
            t("print-assignee"),
        ],
        &[23, 43, 18, 16],
        &tickets,
    );
    history(&mut page, &d.history, names, RecordKind::Household);
    Ok((h.id.clone(), page.finish(&h.id)))
}

/// `print`: the page, to a file or stdout.
pub fn run(node: &Node, out: &Out, args: PrintArgs) -> anyhow::Result<()> {
    let names = Names::of(node)?;
    let (_, html) = match args.kind {
        PrintKind::Visit => print_visit(node, &args.id, &names)?,
        PrintKind::Ticket => print_ticket(node, &args.id, &names)?,
        PrintKind::Household => print_household(node, &args.id, &names)?,
    };
    match &args.out {
        Some(path) => {
            let file = path.display().to_string();
            output::write_atomically(path, html.as_bytes())
                .with_context(|| tr!("office-cannot-write", file = file.clone()))?;
            out.emit(&json!({ "out": file }), || {
                println!("{}", tr!("print-written", file = file.clone()))
            })
        }
        None if out.json => out.emit(&json!({ "out": null, "html": html }), || {}),
        None => {
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(html.as_bytes())?;
            stdout.flush()?;
            Ok(())
        }
    }
}

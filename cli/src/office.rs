//! `export` and `import`: records to and from CSV, JSON and Excel workbooks
//! (`yizhan_node::exchange`). A workbook names members beside their device ids (from the
//! roster), and a text cut to fit a cell is reported on stderr, naming the record.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use anyhow::{Context, bail};
use serde_json::json;
use yizhan_node::exchange::{self, Cut, Export, Format, ImportError, Place};
use yizhan_node::model::Time;
use yizhan_node::{Node, TicketFilter, VisitFilter};

use crate::args::{ExportArgs, FileFormat, ImportArgs, Kind};
use crate::commands::parse_opt;
use crate::output::{self, Names, Out};
use crate::progress::Progress;
use crate::tr;

fn format_of(f: FileFormat) -> Format {
    match f {
        FileFormat::Csv => Format::Csv,
        FileFormat::Json => Format::Json,
        FileFormat::Xlsx => Format::Xlsx,
    }
}

/// Device id → name, for the devices `ids` names (a workbook's name columns).
fn names_of<'a>(
    node: &Node,
    ids: impl Iterator<Item = &'a str>,
) -> anyhow::Result<HashMap<String, String>> {
    let names = Names::of(node)?;
    Ok(ids.map(|d| (d.to_string(), names.name(d))).collect())
}

/// Says on stderr that a text was cut to fit a cell.
fn warn_cut(cut: &Cut) {
    eprintln!(
        "{}",
        tr!(
            "office-cut",
            record = cut.record.clone(),
            column = cut.column,
            chars = cut.chars as u64,
            max = exchange::xlsx::MAX_CELL as u64
        )
    );
}

/// `export`: every record of a kind (since a time) to a file or stdout.
pub fn export(node: &Node, out: &Out, args: ExportArgs) -> anyhow::Result<()> {
    let since = parse_opt::<Time>(args.since)?;
    let format = format_of(args.format);
    if format == Format::Xlsx && args.out.is_none() && std::io::stdout().is_terminal() {
        bail!(tr!("office-xlsx-needs-out"));
    }
    let mut buf = Vec::new();
    let what = tr!("office-exporting");
    let mut cut = warn_cut;
    let count = match args.kind {
        Kind::Visits => {
            let visits = node.list_visits(&VisitFilter {
                since,
                ..VisitFilter::default()
            })?;
            let names = names_of(node, visits.iter().map(|v| v.author.as_str()))?;
            let bar = Progress::rows(out, visits.len(), &what);
            let mut how = Export {
                format,
                names: &names,
                on_row: &mut |n| bar.set(n),
                on_cut: &mut cut,
            };
            exchange::export_visits_with(&visits, &mut buf, &mut how)?;
            visits.len()
        }
        Kind::Tickets => {
            let tickets = node.list_tickets(&TicketFilter {
                since,
                ..TicketFilter::default()
            })?;
            let names = names_of(
                node,
                tickets.iter().flat_map(|t| {
                    std::iter::once(t.opened_by.as_str()).chain(t.assignee.as_deref())
                }),
            )?;
            let bar = Progress::rows(out, tickets.len(), &what);
            let mut how = Export {
                format,
                names: &names,
                on_row: &mut |n| bar.set(n),
                on_cut: &mut cut,
            };
            exchange::export_tickets_with(&tickets, &mut buf, &mut how)?;
            tickets.len()
        }
        Kind::Households => {
            let mut households = node.list_households(&yizhan_node::HouseholdFilter::default())?;
            // Since when a household is in the ledger; one of unknown date (made from older
            // records) is left out when a time is given.
            if let Some(since) = since {
                households.retain(|h| {
                    h.added_at
                        .as_deref()
                        .and_then(|a| a.parse::<Time>().ok())
                        .is_some_and(|a| a.millis() >= since.millis())
                });
            }
            let names = HashMap::new();
            let bar = Progress::rows(out, households.len(), &what);
            let mut how = Export {
                format,
                names: &names,
                on_row: &mut |n| bar.set(n),
                on_cut: &mut cut,
            };
            exchange::export_households_with(&households, &mut buf, &mut how)?;
            households.len()
        }
    };
    match args.out {
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&buf)?;
            stdout.flush()?;
            Ok(())
        }
        Some(path) => {
            output::write_atomically(&path, &buf)
                .with_context(|| tr!("office-cannot-write", file = path.display().to_string()))?;
            out.emit(
                &json!({ "exported": count, "out": path.display().to_string() }),
                || {
                    println!(
                        "{}",
                        tr!(
                            "office-exported",
                            count = count as u64,
                            file = path.display().to_string()
                        )
                    )
                },
            )
        }
    }
}

/// Why a file imported nothing, for people: the bad row's place in their language.
fn refused(e: ImportError, file: &str) -> anyhow::Error {
    let nothing = tr!("office-nothing-imported", file = file);
    match e {
        ImportError::BadRow { place, reason } => {
            let place = match place {
                Place::CsvRow { row, line } => tr!("office-place-csv", row = row, line = line),
                Place::JsonRecord(n) => tr!("office-place-json", n = n),
                Place::SheetRow(n) => tr!("office-place-sheet", n = n),
            };
            let reason = crate::errors::tell(&reason);
            anyhow::anyhow!(tr!("office-bad-row", place = place, reason = reason)).context(nothing)
        }
        other => anyhow::Error::new(other).context(nothing),
    }
}

/// `import`: the records of a file as this node's own, all or nothing.
pub fn import(node: &mut Node, out: &Out, args: ImportArgs) -> anyhow::Result<()> {
    let file = args.file.display().to_string();
    let format = format_of(args.format);
    if format == Format::Xlsx {
        // A workbook is refused by its size before it is read (it is a zip archive).
        let len = std::fs::metadata(&args.file)
            .with_context(|| tr!("office-cannot-read", file = file.clone()))?
            .len();
        if len > exchange::xlsx::MAX_FILE {
            bail!(tr!(
                "office-too-large",
                file = file.clone(),
                mib = exchange::xlsx::MAX_FILE / (1024 * 1024)
            ));
        }
    }
    let bytes = std::fs::read(&args.file)
        .with_context(|| tr!("office-cannot-read", file = file.clone()))?;
    let what = tr!("office-importing");
    let count = match args.kind {
        Kind::Visits => {
            let visits = exchange::parse_visits(&bytes, format).map_err(|e| refused(e, &file))?;
            let bar = Progress::rows(out, visits.len(), &what);
            node.add_visits_observed(&visits, &mut |n| bar.set(n))?
                .len()
        }
        Kind::Tickets => {
            let tickets = exchange::parse_tickets_with(&bytes, format, &|name| {
                crate::commands::member(node, name).ok()
            })
            .map_err(|e| refused(e, &file))?;
            let bar = Progress::rows(out, tickets.len(), &what);
            node.open_tickets_observed(&tickets, &mut |n| bar.set(n))?
                .len()
        }
        Kind::Households => {
            let households =
                exchange::parse_households(&bytes, format).map_err(|e| refused(e, &file))?;
            node.add_households(&households)?.len()
        }
    };
    out.emit(&json!({ "imported": count }), || {
        println!("{}", tr!("office-imported", count = count as u64))
    })
}

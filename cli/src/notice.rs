//! Notices (信息发布): `notice publish`, `notice list` and `notice read`.
//!
//! A station publishes a notice to some grids or to the whole site; each member's laptop
//! holds the notices of its grids and the site-wide ones, lists them offline, and marks one
//! read with a signed change that reaches the station with the next sync.

use std::fmt::Write as _;

use anyhow::bail;
use serde_json::json;
use yizhan_node::model::Time;
use yizhan_node::records::{NewNotice, Notice};
use yizhan_node::report::Report;
use yizhan_node::{Node, Role};
use yizhan_protocol::RecordKind;

use crate::args::NoticeCommand;
use crate::output::{self, Names, Out};
use crate::tr;

pub fn run(node: &mut Node, out: &Out, cmd: NoticeCommand) -> anyhow::Result<()> {
    match cmd {
        NoticeCommand::Publish {
            title,
            body,
            grids,
            until,
        } => {
            if node.identity().role != Role::Station {
                bail!(tr!("notice-station-only"));
            }
            let until = match until {
                Some(u) => Some(u.parse::<Time>()?),
                None => None,
            };
            let notice = NewNotice {
                title,
                body,
                grids,
                until,
            };
            let id = node.publish_notice(&notice)?;
            out.emit(&json!({ "id": id.to_string() }), || {
                output::say(&tr!("notice-published", id = id.to_string()));
            })
        }
        NoticeCommand::List { all } => {
            let notices = node.list_notices(all)?;
            let names = if out.json {
                None
            } else {
                Some(Names::of(node)?)
            };
            out.emit(&notices, || {
                print_notices(&notices, names.as_ref().expect("names for people"), all)
            })
        }
        NoticeCommand::Read { id } => {
            let id = node.resolve(RecordKind::Notice, &id)?;
            node.read_notice(id)?;
            let title = node
                .list_notices(true)?
                .into_iter()
                .find(|n| n.id == id.to_string())
                .map(|n| n.title)
                .unwrap_or_default();
            out.emit(&json!({ "id": id.to_string() }), || {
                output::say(&tr!("notice-marked-read", title = title));
            })
        }
    }
}

/// Each notice as a block: its title and whether this device has read it, its fields, then
/// its text.
fn print_notices(notices: &[Notice], names: &Names, all: bool) {
    if notices.is_empty() {
        output::say(&if all {
            tr!("notice-none")
        } else {
            tr!("notice-none-current")
        });
        return;
    }
    let now = Time::now_millis();
    for (i, n) in notices.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let mut state = vec![if n.read {
            tr!("notice-read")
        } else {
            tr!("notice-unread")
        }];
        if !n.current(now) {
            state.push(tr!("notice-expired"));
        }
        output::say(&format!("{}  [{}]", n.title, state.join(", ")));
        let grids = if n.grids.is_empty() {
            tr!("notice-whole-site")
        } else {
            n.grids.join("、")
        };
        let until = match &n.until {
            Some(u) => output::when(Some(u)),
            None => tr!("notice-no-end"),
        };
        let read_by = if n.read_by.is_empty() {
            tr!("notice-nobody")
        } else {
            n.read_by
                .iter()
                .map(|d| names.name(d))
                .collect::<Vec<_>>()
                .join("、")
        };
        let keys = [
            tr!("notice-field-id"),
            tr!("notice-field-published"),
            tr!("notice-field-grids"),
            tr!("notice-field-until"),
            tr!("notice-field-read-by"),
        ];
        output::print_fields(&[
            (keys[0].as_str(), n.id.clone()),
            (keys[1].as_str(), output::when(Some(&n.published_at))),
            (keys[2].as_str(), grids),
            (keys[3].as_str(), until),
            (keys[4].as_str(), read_by),
        ]);
        println!();
        output::say(&n.body);
    }
}

/// The grids of a notice in the report: the whole site for none.
fn report_grids(grids: &[String]) -> String {
    if grids.is_empty() {
        tr!("notice-whole-site")
    } else {
        grids.join("、")
    }
}

/// The columns of the report's notices table: (heading, numeric).
fn report_columns() -> Vec<(String, bool)> {
    vec![
        (tr!("notice-report-col-title"), false),
        (tr!("notice-report-col-for"), false),
        (tr!("notice-report-col-readers"), true),
        (tr!("notice-report-col-of"), true),
        (tr!("notice-report-col-id"), false),
    ]
}

/// The report's notices section in Markdown: each notice published in the period, with how
/// many of the volunteers it is for have read it. (The report's text is cleaned for people
/// as a whole, `report::run`.)
pub fn report_markdown(w: &mut String, r: &Report) {
    let _ = writeln!(w, "## {}\n", tr!("notice-report-section"));
    if r.notices.is_empty() {
        let _ = writeln!(w, "{}\n", tr!("notice-report-none"));
        return;
    }
    let columns = report_columns();
    let cells = |f: &dyn Fn(&(String, bool)) -> String| {
        columns.iter().map(f).collect::<Vec<_>>().join(" | ")
    };
    let _ = writeln!(
        w,
        "| {} |\n| {} |",
        cells(&|(h, _)| crate::report::md_cell(h)),
        cells(&|(_, n)| if *n { "---:".into() } else { "---".into() })
    );
    for n in &r.notices {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | `{}` |",
            crate::report::md_cell(&n.title),
            crate::report::md_cell(&report_grids(&n.grids)),
            n.readers,
            n.of,
            n.id
        );
    }
    let _ = writeln!(w);
}

/// The report's notices section in HTML (see [`report_markdown`]).
pub fn report_html(w: &mut String, r: &Report) {
    let _ = write!(
        w,
        "<section><h2>{}</h2>",
        crate::report::esc(&tr!("notice-report-section"))
    );
    if r.notices.is_empty() {
        let _ = write!(
            w,
            "<p>{}</p>",
            crate::report::esc(&tr!("notice-report-none"))
        );
    } else {
        let rows: Vec<Vec<String>> = r
            .notices
            .iter()
            .map(|n| {
                vec![
                    n.title.clone(),
                    report_grids(&n.grids),
                    n.readers.to_string(),
                    n.of.to_string(),
                    n.id.clone(),
                ]
            })
            .collect();
        crate::report::html_table(w, &report_columns(), &rows);
    }
    w.push_str("</section>\n");
}

//! The station head's view of the site: `members` (the roster with expiry and last sync)
//! and `quarantine` (changes of revoked authors held for a decision), and what `show` says
//! of a record that is only held there.

use anyhow::bail;
use serde_json::json;
use yizhan_node::Node;
use yizhan_node::quarantine::{BUILDS_ON_HELD, Held, QuarantineError, REVOKED_AUTHOR};
use yizhan_node::records::FieldChange;
use yizhan_protocol::{DocId, RecordKind};

use crate::args::QuarantineCommand;
use crate::output::{self, Names, Out, print_table, table};
use crate::tr;

/// Longest value shown for a field a held change writes, in characters.
const MAX_SHOWN: usize = 24;

/// `yizhan members`.
pub fn members(node: &Node, out: &Out) -> anyhow::Result<()> {
    let members = node.members()?;
    let names = Names::of(node)?;
    let now = chrono::Utc::now();
    let me = node.identity().device_id.to_string();
    out.emit(&members, || {
        let header = [
            tr!("members-col-name"),
            tr!("members-col-role"),
            tr!("members-col-grids"),
            tr!("members-col-expires"),
            tr!("members-col-last-sync"),
            tr!("members-col-status"),
            tr!("members-col-device"),
        ];
        let mut t = table(&header.each_ref().map(String::as_str));
        for m in &members {
            let expired = m
                .expires_at
                .as_deref()
                .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
                .is_some_and(|e| e <= now);
            let status = if m.revoked {
                tr!("members-status-revoked")
            } else if expired {
                tr!("members-status-expired")
            } else {
                tr!("members-status-active")
            };
            t.add_row(vec![
                names.name(&m.device_id),
                tr!("members-role", role = m.role.as_str()),
                if m.grids.is_empty() {
                    "-".into()
                } else {
                    m.grids.join("、")
                },
                match &m.expires_at {
                    Some(e) => output::when(Some(e)),
                    None => tr!("members-expires-never"),
                },
                match &m.last_sync {
                    Some(s) => output::when(Some(s)),
                    None if m.device_id == me => "-".to_string(),
                    None => tr!("members-never-synced"),
                },
                status,
                output::short(&m.device_id),
            ]);
        }
        print_table(&t, &tr!("members-none"));
    })
}

/// `yizhan quarantine list|accept|reject`.
pub fn quarantine(node: &mut Node, out: &Out, cmd: QuarantineCommand) -> anyhow::Result<()> {
    match cmd {
        QuarantineCommand::List => {
            let held = node.quarantine_list()?;
            let names = Names::of(node)?;
            out.emit(&held, || print_held(&held, &names))
        }
        QuarantineCommand::Accept(target) => {
            let n = match node.quarantine_accept(target.id.as_deref()) {
                Err(QuarantineError::WaitsFor { change, waits_for }) => {
                    // The command to type takes a prefix; the change waited for is named whole.
                    let first = waits_for
                        .first()
                        .map(|w| output::short(w))
                        .unwrap_or_default();
                    bail!(tr!(
                        "quarantine-waits-for",
                        change = output::short(&change),
                        waits = waits_for.join(", "),
                        first = first
                    ))
                }
                other => other?,
            };
            // One change named, and it went back to quarantine: say why, and fail.
            if n == 0
                && let Some(id) = target.id.as_deref()
                && let Some(h) = node
                    .quarantine_list()?
                    .into_iter()
                    .find(|h| h.id.starts_with(&id.trim().to_ascii_lowercase()))
            {
                bail!(tr!("quarantine-not-merged", change = h.id));
            }
            out.emit(&json!({ "accepted": n }), || {
                println!("{}", tr!("quarantine-accepted", count = n))
            })
        }
        QuarantineCommand::Reject(target) => {
            let n = node.quarantine_reject(target.id.as_deref())?;
            out.emit(&json!({ "rejected": n }), || {
                println!("{}", tr!("quarantine-rejected", count = n))
            })
        }
    }
}

/// One block per held change: what it writes, to which record, by whom, when it was made
/// and received, and what it waits for.
fn print_held(held: &[Held], names: &Names) {
    if held.is_empty() {
        println!("{}", tr!("quarantine-none"));
        return;
    }
    for (i, h) in held.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("{}", tr!("quarantine-change", id = h.id.as_str()));
        let author = names.name(&h.author);
        let author = match (&h.revoked_at, h.revocation_reason.as_deref()) {
            (Some(at), Some(reason)) if !reason.trim().is_empty() => tr!(
                "quarantine-author-revoked",
                name = author,
                at = output::when(Some(at)),
                reason = reason
            ),
            (Some(at), _) => tr!(
                "quarantine-author-revoked-no-reason",
                name = author,
                at = output::when(Some(at))
            ),
            (None, _) => author,
        };
        let waits = if h.depends_on.is_empty() {
            tr!("quarantine-waits-nothing")
        } else {
            h.depends_on
                .iter()
                .map(|d| tr!("quarantine-waits-held", id = d.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let keys = [
            tr!("quarantine-key-record"),
            tr!("quarantine-key-author"),
            tr!("quarantine-key-made"),
            tr!("quarantine-key-received"),
            tr!("quarantine-key-writes"),
            tr!("quarantine-key-waits"),
            tr!("quarantine-key-why"),
        ];
        let values = [
            format!(
                "{} {}",
                tr!("quarantine-kind", kind = h.kind.as_str()),
                h.record
            ),
            author,
            output::when(h.made_at.as_deref()),
            output::when(Some(&h.received_at)),
            writes(&h.writes),
            waits,
            reason(&h.reason),
        ];
        let fields: Vec<(&str, String)> = keys.iter().map(String::as_str).zip(values).collect();
        // Indented under the change's line.
        let width = fields
            .iter()
            .map(|(k, _)| unicode_width::UnicodeWidthStr::width(*k))
            .max()
            .unwrap_or(0);
        for (k, v) in &fields {
            let pad = width - unicode_width::UnicodeWidthStr::width(*k);
            println!("  {k}{}  {}", " ".repeat(pad), output::clean(v));
        }
    }
}

/// Why a change is held, in this run's language.
fn reason(reason: &str) -> String {
    match reason {
        REVOKED_AUTHOR => tr!("quarantine-reason-revoked"),
        BUILDS_ON_HELD => tr!("quarantine-reason-builds-on"),
        other => other.to_string(),
    }
}

/// `title = 楼道灯坏了; status = open` with long values cut short.
fn writes(changes: &[FieldChange]) -> String {
    if changes.is_empty() {
        return tr!("quarantine-writes-nothing");
    }
    changes
        .iter()
        .map(|c| {
            let value = match &c.value {
                // A time as people read it.
                serde_json::Value::String(s) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => {
                    output::when(Some(s))
                }
                serde_json::Value::String(s) => shorten(s),
                serde_json::Value::Null => tr!("quarantine-removed"),
                serde_json::Value::Array(items) => shorten(
                    &items
                        .iter()
                        .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                        .collect::<Vec<_>>()
                        .join("、"),
                ),
                other => other.to_string(),
            };
            format!("{} = {value}", c.field)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn shorten(s: &str) -> String {
    let one_line = s.replace(['\n', '\r'], " ");
    if one_line.chars().count() > MAX_SHOWN {
        let cut: String = one_line.chars().take(MAX_SHOWN).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

/// The record of `kind` that `given` names, as `show` resolves it; when none matches but
/// the station holds changes to one only in quarantine, an error that says so (and how to
/// see them) instead of "no record matches".
pub fn resolve_shown(node: &Node, kind: RecordKind, given: &str) -> anyhow::Result<DocId> {
    match node.resolve(kind, given) {
        Ok(id) => Ok(id),
        Err(e @ yizhan_node::ResolveError::NotFound(..)) => match node.held_record(kind, given)? {
            Some(held) => {
                let names = Names::of(node)?;
                let authors = held
                    .authors
                    .iter()
                    .map(|a| names.name(a))
                    .collect::<Vec<_>>()
                    .join("、");
                bail!(tr!(
                    "quarantine-held-record",
                    kind = kind.name(),
                    id = held.id,
                    author = authors,
                    at = output::when(held.revoked_at.as_deref()),
                    count = held.changes
                ))
            }
            None => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

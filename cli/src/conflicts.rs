//! `conflicts` and `resolve`: fields edited concurrently, across all records, and settling
//! one of them with a new signed change.

use std::collections::HashMap;

use anyhow::bail;
use serde_json::json;
use yizhan_node::Node;
use yizhan_node::ResolveError;
use yizhan_protocol::{DocId, RecordKind};

use crate::args::ResolveArgs;
use crate::output::{Out, print_table, table};

/// `yizhan conflicts`: `[{"record", "kind", "field", "values": [{"value", "author", "at"}]}]`.
pub fn list(node: &Node, out: &Out) -> anyhow::Result<()> {
    let conflicts = node.conflicts()?;
    out.emit(&conflicts, || {
        let names = device_names(node);
        let mut t = table(&["RECORD", "KIND", "FIELD", "VALUE", "AUTHOR", "AT"]);
        for c in &conflicts {
            for (i, v) in c.values.iter().enumerate() {
                let first = i == 0;
                t.add_row(vec![
                    if first {
                        c.record.clone()
                    } else {
                        String::new()
                    },
                    if first { c.kind.clone() } else { String::new() },
                    if first {
                        c.field.clone()
                    } else {
                        String::new()
                    },
                    v.value.clone(),
                    author(&names, &v.author),
                    v.at.clone(),
                ]);
            }
        }
        print_table(&t, "No conflicts.");
        if !conflicts.is_empty() {
            println!(
                "\n{} field(s) in conflict; the first value of each is the one shown. \
                 Settle one with: yizhan resolve ID FIELD VALUE",
                conflicts.len()
            );
        }
    })
}

/// `yizhan resolve ID FIELD VALUE`: `{"id", "field", "value"}`.
pub fn resolve(node: &mut Node, out: &Out, args: ResolveArgs) -> anyhow::Result<()> {
    let id = resolve_record(node, &args.id)?;
    let done = node.resolve_conflict(id, args.field.trim(), &args.value)?;
    out.emit(
        &json!({ "id": done.id, "field": done.field, "value": done.value }),
        || {
            crate::output::say(&format!(
                "Resolved {} of {}: it is now '{}' on this node, and on every node once synced.",
                done.field, done.id, done.value
            ))
        },
    )
}

/// The one visit or ticket whose id starts with `prefix`.
fn resolve_record(node: &Node, prefix: &str) -> anyhow::Result<DocId> {
    let visit = node.resolve(RecordKind::Visit, prefix);
    let ticket = node.resolve(RecordKind::Ticket, prefix);
    match (visit, ticket) {
        (Ok(id), Err(ResolveError::NotFound(..))) | (Err(ResolveError::NotFound(..)), Ok(id)) => {
            Ok(id)
        }
        (Ok(_), Ok(_)) => {
            bail!("'{prefix}' is ambiguous: it matches a visit and a ticket; give more characters")
        }
        (Err(ResolveError::NotFound(..)), Err(ResolveError::NotFound(..))) => {
            bail!("no visit or ticket matches '{prefix}'")
        }
        (Err(ResolveError::Malformed(..)), _) => bail!("'{prefix}' is not a record id"),
        (Err(e), _) | (_, Err(e)) => Err(e.into()),
    }
}

/// Device id → name, for the devices this node knows by name.
fn device_names(node: &Node) -> HashMap<String, String> {
    let mut names: HashMap<String, String> = node
        .members()
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.device_id, m.name))
        .collect();
    let me = node.identity();
    names.insert(me.device_id.to_string(), me.name.clone());
    names
}

/// A device for people: its short id and, where known, its name.
fn author(names: &HashMap<String, String>, device: &str) -> String {
    let short = crate::output::short(device);
    match names.get(device) {
        Some(name) => format!("{name} ({short})"),
        None => short,
    }
}

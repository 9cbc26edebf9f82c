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
use crate::tr;

/// `yizhan conflicts`: `[{"record", "kind", "field", "values": [{"value", "author", "at"}]}]`.
pub fn list(node: &Node, out: &Out) -> anyhow::Result<()> {
    let conflicts = node.conflicts()?;
    out.emit(&conflicts, || {
        let names = device_names(node);
        let mut t = table(&[
            tr!("col-record"),
            tr!("col-kind"),
            tr!("col-field"),
            tr!("col-value"),
            tr!("col-author"),
            tr!("col-at"),
        ]);
        for c in &conflicts {
            for (i, v) in c.values.iter().enumerate() {
                let first = i == 0;
                t.add_row(vec![
                    if first {
                        c.record.clone()
                    } else {
                        String::new()
                    },
                    if first {
                        crate::i18n::message_or(&format!("kind-{}", c.kind), &c.kind)
                    } else {
                        String::new()
                    },
                    if first {
                        crate::output::label(&c.field)
                    } else {
                        String::new()
                    },
                    v.value.clone(),
                    author(&names, &v.author),
                    crate::output::when(Some(&v.at)),
                ]);
            }
        }
        print_table(&t, &tr!("no-conflicts"));
        if !conflicts.is_empty() {
            println!("\n{}", tr!("conflicts-summary", count = conflicts.len()));
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
            crate::output::say(&tr!(
                "resolve-done",
                field = crate::output::label(&done.field),
                id = done.id.as_str(),
                value = done.value.as_str()
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
            bail!(tr!("record-ambiguous", prefix = prefix))
        }
        (Err(ResolveError::NotFound(..)), Err(ResolveError::NotFound(..))) => {
            bail!(tr!("record-none", prefix = prefix))
        }
        (Err(ResolveError::Malformed(..)), _) => bail!(tr!("record-malformed", prefix = prefix)),
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

//! `conflicts` and `resolve`: fields edited concurrently, across all records, and settling
//! one of them with a new signed change.

use anyhow::bail;
use serde_json::json;
use yizhan_node::Node;
use yizhan_node::ResolveError;
use yizhan_node::conflicts::ConflictError;
use yizhan_protocol::{DocId, RecordKind};

use crate::args::ResolveArgs;
use crate::output::{Out, print_table, table};
use crate::tr;

/// `yizhan conflicts`: `[{"record", "kind", "field", "values": [{"value", "author", "at"}]}]`.
pub fn list(node: &Node, out: &Out) -> anyhow::Result<()> {
    let conflicts = node.conflicts()?;
    out.emit(&conflicts, || {
        let names = crate::output::Names::of(node).ok();
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
                    crate::output::name(names.as_ref(), &v.author),
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
    let given = args.field.trim();
    let done = match node.resolve_conflict(id, given, &args.value) {
        // The field as the conflicts table names it for people (`备注` for `note`).
        Err(ConflictError::UnknownField { ref fields, .. })
            if let Some(field) = fields
                .split(", ")
                .find(|f| crate::output::label(f) == given)
                .map(str::to_string) =>
        {
            node.resolve_conflict(id, &field, &args.value)?
        }
        done => done?,
    };
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

//! A record's history for people: one row per signed change, with who made it (name and
//! short device id), when, and what it set.

use yizhan_node::records::{FieldChange, HistoryEntry};

use crate::output::{self, print_table, table};
use crate::tr;

/// Longest value shown in a history row, in characters (notes may be long).
const MAX_SHOWN: usize = 40;

/// Prints the `History:` table of `visit show` / `ticket show`.
pub fn print(history: &[HistoryEntry], names: Option<&output::Names>) {
    println!("\n{}", tr!("history-heading"));
    let mut t = table(&[
        tr!("col-at"),
        tr!("col-author"),
        tr!("col-change"),
        tr!("col-what"),
    ]);
    for h in history {
        // By the roster's name (a short id only where two share it); a device the roster
        // does not know by the name its certificate gave, with its short id.
        let who = match (names, &h.author_name) {
            (Some(n), _) if n.knows(&h.author) => n.name(&h.author),
            (_, Some(name)) => format!("{name} ({})", output::short(&h.author)),
            _ => output::short(&h.author),
        };
        t.add_row(vec![
            output::when(Some(&h.at)),
            who,
            verb(&h.message),
            what(h, names),
        ]);
    }
    print_table(&t, &tr!("history-none"));
}

/// The message without its field list (the WHAT column names the fields with values), in
/// this run's language where the catalogue knows it (`update ticket` → `更新工单`).
fn verb(message: &str) -> String {
    let verb = message.split(':').next().unwrap_or(message).trim();
    crate::i18n::message_or(&format!("verb-{}", verb.replace(' ', "-")), verb)
}

/// `status = resolved; note = 已修好` for the fields a change set.
fn what(h: &HistoryEntry, names: Option<&output::Names>) -> String {
    fields(&h.changes, names, MAX_SHOWN)
}

/// The fields of a change for people, `label = value; …`, each value in one line of at
/// most `max` characters (cut with `…`): times, statuses and members as people read them.
pub(crate) fn fields(changes: &[FieldChange], names: Option<&output::Names>, max: usize) -> String {
    let shorten = |s: &str| {
        let one_line = s.replace(['\n', '\r'], " ");
        if one_line.chars().count() > max {
            let cut: String = one_line.chars().take(max).collect();
            format!("{cut}…")
        } else {
            one_line
        }
    };
    changes
        .iter()
        .map(|c| {
            let value = match &c.value {
                serde_json::Value::String(s) => shorten(&value_for_people(&c.field, s, names)),
                serde_json::Value::Null => tr!("history-removed"),
                serde_json::Value::Array(items) => shorten(
                    &items
                        .iter()
                        .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                        .collect::<Vec<_>>()
                        .join("、"),
                ),
                other => other.to_string(),
            };
            format!("{} = {value}", output::label(&c.field))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A field's value for people: times in the local zone, statuses and the like by name.
fn value_for_people(field: &str, value: &str, names: Option<&output::Names>) -> String {
    match field {
        "assignee" | "opened_by" | "author" => output::name(names, value),
        "category" => output::category(&Some(value.to_string())),
        "status" | "priority" | "channel" | "satisfaction" => output::word(value),
        f if f.ends_with("_at") || f == "due" => output::when(Some(value)),
        _ => value.to_string(),
    }
}

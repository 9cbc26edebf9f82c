//! A record's history for people: one row per signed change, with who made it (name and
//! short device id), when, and what it set.

use yizhan_node::records::HistoryEntry;

use crate::output::{self, print_table, table};

/// Longest value shown in a history row, in characters (notes may be long).
const MAX_SHOWN: usize = 40;

/// Prints the `History:` table of `visit show` / `ticket show`.
pub fn print(history: &[HistoryEntry]) {
    println!("\nHistory:");
    let mut t = table(&["AT", "AUTHOR", "CHANGE", "WHAT"]);
    for h in history {
        let who = match &h.author_name {
            Some(name) => format!("{name} ({})", output::short(&h.author)),
            None => output::short(&h.author),
        };
        t.add_row(vec![h.at.clone(), who, verb(&h.message), what(h)]);
    }
    print_table(&t, "(none)");
}

/// The message without its field list (the WHAT column names the fields with values).
fn verb(message: &str) -> String {
    message.split(':').next().unwrap_or(message).to_string()
}

/// `status = resolved; note = 已修好` for the fields a change set.
fn what(h: &HistoryEntry) -> String {
    h.changes
        .iter()
        .map(|c| {
            let value = match &c.value {
                serde_json::Value::String(s) => shorten(s),
                serde_json::Value::Null => "(removed)".to_string(),
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

//! Output: one JSON value on stdout with `--json`, aligned tables and short sentences
//! without it.

use std::io::Write;

use comfy_table::{Table, presets};
use serde::Serialize;
use yizhan_node::model::Category;

/// Where a command's result goes.
pub struct Out {
    pub json: bool,
}

impl Out {
    /// Prints `value` as the command's one JSON value, or runs `human` to print for people.
    pub fn emit<T: Serialize>(&self, value: &T, human: impl FnOnce()) -> anyhow::Result<()> {
        if self.json {
            let mut stdout = std::io::stdout().lock();
            serde_json::to_writer(&mut stdout, value)?;
            writeln!(stdout)?;
        } else {
            human();
        }
        Ok(())
    }
}

/// A table with a header row and no borders; columns are aligned by display width, so
/// Chinese text lines up.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(header.to_vec());
    t
}

/// Prints a table, or a sentence when it has no rows.
pub fn print_table(t: &Table, empty: &str) {
    if t.row_count() == 0 {
        println!("{empty}");
    } else {
        for line in t.to_string().lines() {
            println!("{}", line.trim_end());
        }
    }
}

/// Prints `key  value` lines with the keys padded to one width.
pub fn print_fields(fields: &[(&str, String)]) {
    let width = fields
        .iter()
        .map(|(k, _)| unicode_width::UnicodeWidthStr::width(*k))
        .max()
        .unwrap_or(0);
    for (k, v) in fields {
        let pad = width - unicode_width::UnicodeWidthStr::width(*k);
        println!("{k}{}  {v}", " ".repeat(pad));
    }
}

/// A category for people: its Chinese name.
pub fn category(slug: &Option<String>) -> String {
    match slug.as_deref().map(str::parse::<Category>) {
        Some(Ok(c)) => c.zh().to_string(),
        Some(Err(_)) => slug.clone().unwrap_or_default(),
        None => "-".to_string(),
    }
}

/// An optional text for people.
pub fn opt(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "-".to_string())
}

/// A device id shortened for tables (still a usable prefix).
pub fn short(device: &str) -> String {
    device.chars().take(12).collect()
}

//! The household ledger's commands: `household`, `policy` and `due`.

use anyhow::{anyhow, bail};
use yizhan_node::Node;
use yizhan_node::model::{Priority, Tag, Time};
use yizhan_node::records::{HouseholdEdit, NewHousehold};
use yizhan_node::{DueList, HouseholdFilter};
use yizhan_protocol::RecordKind;

use crate::args::{DueArgs, HouseholdCommand, PolicyCommand, PolicySetting};
use crate::commands::{parse_opt, print_conflicts, print_history, saved};
use crate::output::{self, Out, print_fields, print_table, table};

fn tags(given: &[String]) -> anyhow::Result<Vec<Tag>> {
    given.iter().map(|t| Ok(t.parse::<Tag>()?)).collect()
}

/// Tag slugs as people read them: the Chinese names.
fn tag_names(slugs: &[String]) -> String {
    if slugs.is_empty() {
        return Tag::Ordinary.zh().to_string();
    }
    slugs
        .iter()
        .map(|s| {
            s.parse::<Tag>()
                .map(|t| t.zh().to_string())
                .unwrap_or(s.clone())
        })
        .collect::<Vec<_>>()
        .join("、")
}

pub fn household(node: &mut Node, out: &Out, cmd: HouseholdCommand) -> anyhow::Result<()> {
    match cmd {
        HouseholdCommand::Add(a) => {
            let h = NewHousehold {
                address: a.address,
                grid: a.grid,
                residents: a.residents,
                tags: tags(&a.tags)?,
                phone: a.phone,
                note: a.note,
                added_at: None,
            };
            let id = node.add_household(&h)?;
            saved(out, "household", id)
        }
        HouseholdCommand::List(a) => {
            let filter = HouseholdFilter {
                grid: a.grid,
                tag: parse_opt::<Tag>(a.tag)?,
                search: a.search,
            };
            let households = node.list_households(&filter)?;
            out.emit(&households, || {
                let mut t = table(&[
                    "ID",
                    "ADDRESS",
                    "GRID",
                    "RESIDENTS",
                    "TAGS",
                    "LAST VISIT",
                    "NEXT DUE",
                ]);
                for h in &households {
                    let due = match (&h.next_due, h.overdue) {
                        (Some(d), true) => format!("{d} (overdue)"),
                        (None, true) => "now (overdue)".into(),
                        (d, _) => output::opt(d),
                    };
                    t.add_row(vec![
                        h.id.clone(),
                        h.address.clone(),
                        output::opt(&h.grid),
                        h.residents.join("、"),
                        tag_names(&h.tags),
                        output::opt(&h.last_visit),
                        due,
                    ]);
                }
                print_table(&t, "No households.");
            })
        }
        HouseholdCommand::Show { id } => {
            let id = node.resolve(RecordKind::Household, &id)?;
            let d = node.show_household(id)?;
            out.emit(&d, || {
                let h = &d.household;
                print_fields(&[
                    ("id", h.id.clone()),
                    ("address", h.address.clone()),
                    ("grid", output::opt(&h.grid)),
                    ("residents", h.residents.join("、")),
                    ("tags", tag_names(&h.tags)),
                    ("phone", output::opt(&h.phone)),
                    ("note", output::opt(&h.note)),
                    ("added at", output::opt(&h.added_at)),
                    ("last visit", output::opt(&h.last_visit)),
                    (
                        "next due",
                        format!(
                            "{}{}",
                            h.next_due.as_deref().unwrap_or("now"),
                            if h.overdue { " (overdue)" } else { "" }
                        ),
                    ),
                ]);
                println!("\nVisits:");
                let mut t = table(&["ID", "VISITED", "CATEGORY", "AUTHOR", "NOTE"]);
                for v in &d.visits {
                    t.add_row(vec![
                        v.id.clone(),
                        v.visited_at.clone(),
                        output::category(&v.category),
                        output::short(&v.author),
                        output::opt(&v.note),
                    ]);
                }
                print_table(&t, "No visits.");
                println!("\nTickets:");
                let mut t = table(&["ID", "OPENED", "STATUS", "DUE", "TITLE"]);
                for k in &d.tickets {
                    t.add_row(vec![
                        k.id.clone(),
                        k.opened_at.clone(),
                        k.status.clone(),
                        output::opt(&k.due),
                        k.title.clone(),
                    ]);
                }
                print_table(&t, "No tickets.");
                print_history(&d.history);
                print_conflicts(&d.conflicts);
            })
        }
        HouseholdCommand::Edit(a) => {
            let id = node.resolve(RecordKind::Household, &a.id)?;
            let edit = HouseholdEdit {
                address: a.address,
                grid: a.grid,
                residents: (!a.residents.is_empty()).then_some(a.residents),
                tag: tags(&a.tags)?,
                untag: tags(&a.untags)?,
                phone: a.phone,
                note: a.note,
            };
            node.edit_household(id, &edit)?;
            saved(out, "household", id)
        }
    }
}

pub fn policy(node: &mut Node, out: &Out, cmd: PolicyCommand) -> anyhow::Result<()> {
    let policy = match cmd {
        PolicyCommand::Show => node.policy()?,
        PolicyCommand::Set { setting, key, days } => {
            let days: u32 = days
                .trim()
                .parse()
                .map_err(|_| anyhow!("'{days}' is not a number of whole days"))?;
            match setting {
                PolicySetting::VisitEvery => node.set_visit_every(key.parse::<Tag>()?, days)?,
                PolicySetting::TicketDue => node.set_ticket_due(key.parse::<Priority>()?, days)?,
            }
        }
    };
    out.emit(&policy, || {
        let mut t = table(&["TAG", "VISIT EVERY (DAYS)"]);
        for tag in Tag::ALL {
            let days = policy
                .visit_every
                .get(tag.as_str())
                .copied()
                .unwrap_or_default();
            t.add_row(vec![
                format!("{} {}", tag.as_str(), tag.zh()),
                days.to_string(),
            ]);
        }
        print_table(&t, "");
        println!();
        let mut t = table(&["PRIORITY", "TICKET DUE (DAYS)"]);
        for p in Priority::ALL {
            t.add_row(vec![
                p.as_str().to_string(),
                policy.ticket_due(*p).to_string(),
            ]);
        }
        print_table(&t, "");
    })
}

pub fn due(node: &Node, out: &Out, args: DueArgs) -> anyhow::Result<()> {
    let within: i64 = match args.within.trim().parse() {
        Ok(d) if (0..=3650).contains(&d) => d,
        _ => bail!(
            "--within takes whole days from 0 to 3650, not '{}'",
            args.within
        ),
    };
    let list: DueList = node.due(args.grid.as_deref(), within)?;
    out.emit(&list, || {
        let when = |days: Option<i64>| match days {
            None => "never visited".to_string(),
            Some(d) if d > 0 => format!("{d} days overdue"),
            Some(0) => "due today".to_string(),
            Some(d) => format!("due in {} days", -d),
        };
        println!("Households due a visit ({}):", Time::now());
        let mut t = table(&["ID", "ADDRESS", "GRID", "TAGS", "LAST VISIT", "DUE"]);
        for h in &list.households {
            t.add_row(vec![
                output::short(&h.id),
                h.address.clone(),
                output::opt(&h.grid),
                tag_names(&h.tags),
                output::opt(&h.last_visit),
                when(h.days_overdue),
            ]);
        }
        print_table(&t, "None.");
        println!("\nTickets due:");
        let mut t = table(&["ID", "TITLE", "GRID", "ASSIGNEE", "DUE"]);
        for k in &list.tickets {
            t.add_row(vec![
                output::short(&k.id),
                k.title.clone(),
                output::opt(&k.grid),
                k.assignee
                    .as_deref()
                    .map(output::short)
                    .unwrap_or("-".into()),
                when(Some(k.days_overdue)),
            ]);
        }
        print_table(&t, "None.");
    })
}

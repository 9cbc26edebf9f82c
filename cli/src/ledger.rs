//! The household ledger's commands: `household`, `policy` and `due`.

use anyhow::{anyhow, bail};
use yizhan_node::Node;
use yizhan_node::model::{Priority, Tag, Time};
use yizhan_node::records::{HouseholdEdit, NewHousehold};
use yizhan_node::{DueList, HouseholdFilter};
use yizhan_protocol::RecordKind;

use crate::args::{DueArgs, HouseholdCommand, PolicyCommand, PolicySetting};
use crate::commands::{Saved, note_text, parse_opt, print_conflicts, print_history, saved};
use crate::output::{self, Out, print_fields, print_table, table};
use crate::tr;

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

/// A household's next visit for people, marked when it has passed; `now` for one
/// that was never visited and has no date to count from.
fn next_due(next: &Option<String>, overdue: bool) -> String {
    match (next, overdue) {
        (None, true) => tr!("overdue-mark", when = tr!("household-due-now")),
        (None, false) => tr!("household-due-now"),
        (d, _) => crate::commands::due(d, overdue),
    }
}

/// [`next_due`] as a day, for the list.
fn next_due_day(next: &Option<String>, overdue: bool) -> String {
    match (next, overdue) {
        (Some(d), true) => tr!("overdue-mark", when = output::day(Some(d))),
        (Some(d), false) => output::day(Some(d)),
        (None, _) => next_due(&None, overdue),
    }
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
                note: note_text(a.note)?,
                added_at: None,
            };
            let id = node.add_household(&h)?;
            saved(out, Saved::Household, id)
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
                    tr!("col-id"),
                    tr!("col-address"),
                    tr!("col-grid"),
                    tr!("col-residents"),
                    tr!("col-tags"),
                    tr!("col-last-visit"),
                    tr!("col-next-due"),
                ]);
                for h in &households {
                    t.add_row(vec![
                        h.id.clone(),
                        h.address.clone(),
                        output::opt(&h.grid),
                        h.residents.join("、"),
                        tag_names(&h.tags),
                        output::day(h.last_visit.as_deref()),
                        next_due_day(&h.next_due, h.overdue),
                    ]);
                }
                print_table(&t, &tr!("no-households"));
            })
        }
        HouseholdCommand::Show { id } => {
            let id = node.resolve(RecordKind::Household, &id)?;
            let d = node.show_household(id)?;
            out.emit(&d, || {
                let names = output::Names::of(node).ok();
                let h = &d.household;
                print_fields(&[
                    ("id", h.id.clone()),
                    ("address", h.address.clone()),
                    ("grid", output::opt(&h.grid)),
                    ("residents", h.residents.join("、")),
                    ("tags", tag_names(&h.tags)),
                    ("phone", output::opt(&h.phone)),
                    ("note", output::opt(&h.note)),
                    ("added_at", output::when(h.added_at.as_deref())),
                    ("last_visit", output::when(h.last_visit.as_deref())),
                    ("next_due", next_due(&h.next_due, h.overdue)),
                ]);
                println!("\n{}", tr!("household-visits"));
                let mut t = table(&[
                    tr!("col-id"),
                    tr!("col-visited"),
                    tr!("col-category"),
                    tr!("col-author"),
                    tr!("col-note"),
                ]);
                for v in &d.visits {
                    t.add_row(vec![
                        v.id.clone(),
                        output::when(Some(&v.visited_at)),
                        output::category(&v.category),
                        output::name(names.as_ref(), &v.author),
                        output::opt(&v.note),
                    ]);
                }
                print_table(&t, &tr!("no-visits"));
                println!("\n{}", tr!("household-tickets"));
                let mut t = table(&[
                    tr!("col-id"),
                    tr!("col-opened"),
                    tr!("col-status"),
                    tr!("col-due"),
                    tr!("col-title"),
                ]);
                for k in &d.tickets {
                    t.add_row(vec![
                        k.id.clone(),
                        output::when(Some(&k.opened_at)),
                        output::word(&k.status),
                        crate::commands::due(&k.due, k.overdue),
                        k.title.clone(),
                    ]);
                }
                print_table(&t, &tr!("no-tickets"));
                print_history(node, &d.history);
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
                note: note_text(a.note)?,
            };
            node.edit_household(id, &edit)?;
            saved(out, Saved::Household, id)
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
                .map_err(|_| anyhow!(tr!("policy-days-invalid", days = days.as_str())))?;
            match setting {
                PolicySetting::VisitEvery => node.set_visit_every(key.parse::<Tag>()?, days)?,
                PolicySetting::TicketDue => node.set_ticket_due(key.parse::<Priority>()?, days)?,
            }
        }
    };
    out.emit(&policy, || {
        let mut t = table(&[tr!("col-tag"), tr!("col-visit-every")]);
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
        let mut t = table(&[tr!("col-priority"), tr!("col-ticket-due")]);
        for p in Priority::ALL {
            t.add_row(vec![
                format!("{} {}", p.as_str(), p.zh()),
                policy.ticket_due(*p).to_string(),
            ]);
        }
        print_table(&t, "");
    })
}

pub fn due(node: &Node, out: &Out, args: DueArgs) -> anyhow::Result<()> {
    let within: i64 = match args.within.trim().parse() {
        Ok(d) if (0..=3650).contains(&d) => d,
        _ => bail!(tr!("due-within-invalid", given = args.within.as_str())),
    };
    let list: DueList = node.due(args.grid.as_deref(), within)?;
    out.emit(&list, || {
        let names = output::Names::of(node).ok();
        let when = |days: Option<i64>| match days {
            None => tr!("due-never-visited"),
            Some(d) if d > 0 => tr!("due-overdue", days = d),
            Some(0) => tr!("due-today"),
            Some(d) => tr!("due-in", days = -d),
        };
        println!(
            "{}",
            tr!(
                "due-households",
                now = output::when(Some(&Time::now().to_rfc3339()))
            )
        );
        let mut t = table(&[
            tr!("col-id"),
            tr!("col-address"),
            tr!("col-grid"),
            tr!("col-tags"),
            tr!("col-last-visit"),
            tr!("col-next-due"),
        ]);
        for h in &list.households {
            t.add_row(vec![
                output::short(&h.id),
                h.address.clone(),
                output::opt(&h.grid),
                tag_names(&h.tags),
                output::day(h.last_visit.as_deref()),
                when(h.days_overdue),
            ]);
        }
        print_table(&t, &tr!("due-none"));
        println!("\n{}", tr!("due-tickets"));
        let mut t = table(&[
            tr!("col-id"),
            tr!("col-title"),
            tr!("col-grid"),
            tr!("col-assignee"),
            tr!("col-due"),
        ]);
        for k in &list.tickets {
            t.add_row(vec![
                output::short(&k.id),
                k.title.clone(),
                output::opt(&k.grid),
                output::opt_name(names.as_ref(), k.assignee.as_deref()),
                when(Some(k.days_overdue)),
            ]);
        }
        print_table(&t, &tr!("due-none"));
    })
}

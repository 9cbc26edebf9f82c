//! One function per command. Each opens the node, parses its values (a bad value is an
//! error, exit 1, before anything is written), calls the node, and prints the result.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use serde_json::json;
use yizhan_node::Node;
use yizhan_node::members::{EnrollRequest, SiteError};
use yizhan_node::model::{Category, Channel, Priority, Satisfaction, Status, Time};
use yizhan_node::records::{NewTicket, NewVisit, TicketUpdate, VisitEdit};
use yizhan_node::store::Passphrase;
use yizhan_node::{Home, InitConfig, InitSeed, TicketFilter, VisitFilter};
use yizhan_protocol::{DocId, MemberRole, RecordKind, Token};

use crate::args::*;
use crate::output::{self, Out, print_fields, print_table, table};

/// Runs one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let home = resolve_home(cli.home)?;
    let out = Out { json: cli.json };
    match cli.command {
        Command::Init(args) => init(&home, &out, args),
        Command::Id => id(&open(&home)?, &out),
        Command::Visit(cmd) => visit(&mut open(&home)?, &out, cmd),
        Command::Ticket(cmd) => ticket(&mut open(&home)?, &out, cmd),
        Command::Household(cmd) => crate::ledger::household(&mut open(&home)?, &out, cmd),
        Command::Policy(cmd) => crate::ledger::policy(&mut open(&home)?, &out, cmd),
        Command::Due(args) => crate::ledger::due(&open(&home)?, &out, args),
        Command::Enroll(args) => enroll(&mut open(&home)?, &out, args),
        Command::Join(args) => join(&mut open(&home)?, &out, args),
        Command::Revoke(args) => revoke(&mut open(&home)?, &out, args),
        Command::Members => members(&open(&home)?, &out),
        Command::Serve(args) => crate::daemon::serve(open(&home)?, &out, args),
        Command::Sync(args) => crate::daemon::sync_once(open(&home)?, &out, args),
        Command::Config(args) => {
            let initialised = home.join(yizhan_node::home::STORE_FILE).exists();
            let node = if initialised {
                Some(open(&home)?)
            } else {
                None
            };
            crate::config::show(&home, node.as_ref(), &out, &args)
        }
        Command::Status => status(&open(&home)?, &out),
        Command::Conflicts => crate::conflicts::list(&open(&home)?, &out),
        Command::Resolve(args) => crate::conflicts::resolve(&mut open(&home)?, &out, args),
        Command::Completions(args) => crate::shell::completions(args.shell),
        Command::Man => crate::shell::man(),
        Command::Quarantine(cmd) => quarantine(&mut open(&home)?, &out, cmd),
        Command::Verify => verify(&open(&home)?, &out),
        Command::Export(args) => crate::office::export(&open(&home)?, &out, args),
        Command::Import(args) => crate::office::import(&mut open(&home)?, &out, args),
        Command::Print(args) => crate::print::run(&open(&home)?, &out, args),
        Command::Report(args) => crate::report::run(&open(&home)?, &out, args),
    }
}

fn resolve_home(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match flag {
        Some(dir) if dir.as_os_str().is_empty() => bail!("--home must not be empty"),
        Some(dir) => Ok(dir),
        None => dirs::data_dir()
            .map(|d| d.join("yizhan"))
            .ok_or_else(|| anyhow!("no home directory: give --home DIR or set YIZHAN_HOME")),
    }
}

fn open(home: &Path) -> anyhow::Result<Node> {
    if Home::is_encrypted(home) {
        let passphrase = passphrase(Confirm::Once)?;
        return Ok(Home::encrypted(home, passphrase).open()?);
    }
    Ok(Node::open(home)?)
}

/// Whether a new passphrase is typed twice.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Confirm {
    Once,
    Twice,
}

/// The passphrase of an encrypted home: `$YIZHAN_PASSPHRASE`, else asked for at the
/// terminal (without echo).
fn passphrase(confirm: Confirm) -> anyhow::Result<Passphrase> {
    if let Ok(p) = std::env::var("YIZHAN_PASSPHRASE") {
        return Ok(Passphrase::new(p));
    }
    let first = rpassword::prompt_password("Passphrase: ").map_err(|_| {
        anyhow!("this needs a passphrase: set YIZHAN_PASSPHRASE or run it at a terminal")
    })?;
    if confirm == Confirm::Twice {
        let again = rpassword::prompt_password("Passphrase again: ")
            .map_err(|e| anyhow!("cannot read the passphrase: {e}"))?;
        if again != first {
            bail!("the two passphrases differ");
        }
    }
    Ok(Passphrase::new(first))
}

pub(crate) fn parse_opt<T: std::str::FromStr>(value: Option<String>) -> anyhow::Result<Option<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(value.map(|v| v.parse::<T>()).transpose()?)
}

fn init(home: &Path, out: &Out, args: InitArgs) -> anyhow::Result<()> {
    let config = InitConfig {
        name: args.name,
        station: args.station,
        encrypt: args
            .encrypt
            .then(|| passphrase(Confirm::Twice))
            .transpose()?,
    };
    let node = Node::init(home, &config, InitSeed::random())?;
    let ident = node.identity();
    out.emit(
        &json!({
            "device_id": ident.device_id.to_string(),
            "site_id": ident.site_id.map(|s| s.to_string()),
            "role": ident.role.as_str(),
        }),
        || {
            println!("Initialised {} in {}.", ident.name, home.display());
            let mut fields = vec![
                ("device", ident.device_id.to_string()),
                ("role", ident.role.as_str().to_string()),
            ];
            if let Some(site) = ident.site_id {
                fields.push(("site", site.to_string()));
            }
            print_fields(&fields);
        },
    )
}

fn id(node: &Node, out: &Out) -> anyhow::Result<()> {
    let ident = node.identity();
    out.emit(
        &json!({
            "device_id": ident.device_id.to_string(),
            "name": ident.name,
            "site_id": ident.site_id.map(|s| s.to_string()),
            "role": ident.role.as_str(),
        }),
        || {
            print_fields(&[
                ("device", ident.device_id.to_string()),
                ("name", ident.name.clone()),
                ("role", ident.role.as_str().to_string()),
                (
                    "site",
                    ident
                        .site_id
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "- (not a member of a site yet)".into()),
                ),
                (
                    "grids",
                    if ident.grids.is_empty() {
                        "-".into()
                    } else {
                        ident.grids.join(", ")
                    },
                ),
            ])
        },
    )
}

fn enroll(node: &mut Node, out: &Out, args: EnrollArgs) -> anyhow::Result<()> {
    let device = node.resolve_device(&args.device_id)?;
    let expires_days = args
        .expires_days
        .map(|d| u32::try_from(d).map_err(|_| SiteError::ExpiresDays(d)))
        .transpose()?;
    let token = node.enroll(&EnrollRequest {
        device,
        name: args.name.clone(),
        grids: args.grids,
        role: match args.role {
            MemberRoleArg::Volunteer => MemberRole::Volunteer,
            MemberRoleArg::Station => MemberRole::Station,
        },
        expires_days,
    })?;
    let text = token.to_text();
    out.emit(&json!({ "token": text }), || {
        eprintln!(
            "Enrolled {} ({device}). Hand this token to the device, which runs `yizhan join TOKEN`:",
            output::clean(&args.name)
        );
        println!("{text}");
    })
}

fn join(node: &mut Node, out: &Out, args: JoinArgs) -> anyhow::Result<()> {
    let token =
        Token::from_text(&args.token).map_err(|e| anyhow!("the token is not valid: {e}"))?;
    if let Some(addr) = &args.station {
        crate::config::parse_addr(addr)?;
    }
    node.join(&token, args.station)?;
    let ident = node.identity();
    let site = ident.site_id.map(|s| s.to_string());
    out.emit(
        &json!({ "site_id": site, "role": ident.role.as_str() }),
        || {
            output::say(&format!(
                "Joined site {} as {} for grids {}.",
                site.clone().unwrap_or_default(),
                ident.role.as_str(),
                if ident.grids.is_empty() {
                    "-".into()
                } else {
                    ident.grids.join(", ")
                }
            ))
        },
    )
}

fn revoke(node: &mut Node, out: &Out, args: RevokeArgs) -> anyhow::Result<()> {
    let device = node.resolve_device(&args.device_id)?;
    node.revoke(device, args.reason.as_deref().unwrap_or(""))?;
    out.emit(&json!({ "revoked": device.to_string() }), || {
        println!("Revoked {device}. Members refuse it once the revocation reaches them.")
    })
}

fn members(node: &Node, out: &Out) -> anyhow::Result<()> {
    let members = node.members()?;
    out.emit(&members, || {
        let mut t = table(&["DEVICE", "NAME", "ROLE", "GRIDS", "REVOKED"]);
        for m in &members {
            t.add_row(vec![
                m.device_id.clone(),
                m.name.clone(),
                m.role.clone(),
                m.grids.join(", "),
                if m.revoked {
                    "revoked".into()
                } else {
                    String::new()
                },
            ]);
        }
        print_table(&t, "No members known (this node has not joined a site).");
    })
}

fn quarantine(node: &mut Node, out: &Out, cmd: QuarantineCommand) -> anyhow::Result<()> {
    match cmd {
        QuarantineCommand::List => {
            let held = node.quarantine_list()?;
            out.emit(&held, || {
                let mut t = table(&["ID", "AUTHOR", "RECORD", "RECEIVED", "REASON"]);
                for h in &held {
                    t.add_row(vec![
                        h.id.clone(),
                        output::short(&h.author),
                        h.record.clone(),
                        h.received_at.clone(),
                        h.reason.clone(),
                    ]);
                }
                print_table(&t, "Nothing is held in quarantine.");
            })
        }
        QuarantineCommand::Accept(target) => {
            let n = node.quarantine_accept(target.id.as_deref())?;
            out.emit(&json!({ "accepted": n }), || {
                println!("Merged {n} held changes.")
            })
        }
        QuarantineCommand::Reject(target) => {
            let n = node.quarantine_reject(target.id.as_deref())?;
            out.emit(&json!({ "rejected": n }), || {
                println!("Dropped {n} held changes for good.")
            })
        }
    }
}

fn status(node: &Node, out: &Out) -> anyhow::Result<()> {
    let st = node.status()?;
    out.emit(&st, || {
        let pending = st.pending_to_station;
        print_fields(&[
            ("device", st.device_id.clone()),
            ("name", st.name.clone()),
            ("role", st.role.as_str().to_string()),
            ("site", st.site_id.clone().unwrap_or("-".into())),
            (
                "records",
                format!(
                    "{} visits, {} tickets",
                    st.records.visits, st.records.tickets
                ),
            ),
            (
                "at the station",
                match (&st.station_receipt, st.role) {
                    (_, yizhan_node::Role::Station) => "this is the station".into(),
                    (None, _) => format!("not yet confirmed; {pending} changes pending"),
                    (Some(r), _) => format!("confirmed {}; {pending} changes pending", r.at),
                },
            ),
            ("conflicts", st.conflicts.to_string()),
            ("rejected", st.rejected.to_string()),
            (
                "dropped",
                match st.purged {
                    0 => "none".into(),
                    n => format!("{n} records that left this laptop's grids were removed"),
                },
            ),
            (
                "misbehaviour",
                match st.misbehaviour.first() {
                    None => "none".into(),
                    Some(m) => format!(
                        "{} recorded; latest: {} by {} ({})",
                        st.misbehaviour.len(),
                        m.kind,
                        output::short(&m.device_id),
                        m.detail
                    ),
                },
            ),
        ]);
        if !st.peers.is_empty() {
            println!("\nPeers:");
            let mut t = table(&["DEVICE", "NAME", "ADDRESS", "LAST SYNC"]);
            for p in &st.peers {
                t.add_row(vec![
                    output::short(&p.device_id),
                    p.name.clone().unwrap_or_default(),
                    p.addr.clone().unwrap_or("-".into()),
                    p.last_sync.clone().unwrap_or("never".into()),
                ]);
            }
            print_table(&t, "");
        }
    })
}

fn tickets(node: &Node, ids: &[String]) -> anyhow::Result<Vec<DocId>> {
    ids.iter()
        .map(|t| Ok(node.resolve(RecordKind::Ticket, t)?))
        .collect()
}

pub(crate) fn saved(out: &Out, what: &str, id: DocId) -> anyhow::Result<()> {
    out.emit(&json!({ "id": id.to_string() }), || {
        println!("Saved {what} {id}.")
    })
}

fn visit(node: &mut Node, out: &Out, cmd: VisitCommand) -> anyhow::Result<()> {
    match cmd {
        VisitCommand::Add(a) => {
            let visit = NewVisit {
                household: a.household,
                grid: a.grid,
                category: parse_opt::<Category>(a.category)?,
                note: a.note,
                residents: a.residents,
                needs: a.needs,
                visited_at: parse_opt::<Time>(a.at)?,
                tickets: tickets(node, &a.tickets)?,
                household_id: None,
            };
            let id = node.add_visit(&visit)?;
            saved(out, "visit", id)
        }
        VisitCommand::List(a) => {
            let filter = VisitFilter {
                grid: a.grid,
                by: a.by.map(|d| node.resolve_device(&d)).transpose()?,
                since: parse_opt::<Time>(a.since)?,
                category: parse_opt::<Category>(a.category)?,
            };
            let visits = node.list_visits(&filter)?;
            out.emit(&visits, || {
                let mut t = table(&["ID", "VISITED", "HOUSEHOLD", "GRID", "CATEGORY", "AUTHOR"]);
                for v in &visits {
                    t.add_row(vec![
                        v.id.clone(),
                        v.visited_at.clone(),
                        v.household.clone(),
                        output::opt(&v.grid),
                        output::category(&v.category),
                        output::short(&v.author),
                    ]);
                }
                print_table(&t, "No visits.");
            })
        }
        VisitCommand::Show { id } => {
            let id = node.resolve(RecordKind::Visit, &id)?;
            let d = node.show_visit(id)?;
            out.emit(&d, || {
                let v = &d.visit;
                print_fields(&[
                    ("id", v.id.clone()),
                    ("household", v.household.clone()),
                    ("household id", output::opt(&v.household_id)),
                    ("grid", output::opt(&v.grid)),
                    ("category", output::category(&v.category)),
                    ("visited at", v.visited_at.clone()),
                    ("residents", v.residents.join("、")),
                    ("needs", output::opt(&v.needs)),
                    ("note", output::opt(&v.note)),
                    ("author", v.author.clone()),
                    ("tickets", v.tickets.join(", ")),
                ]);
                print_history(&d.history);
                print_conflicts(&d.conflicts);
            })
        }
        VisitCommand::Edit(a) => {
            let id = node.resolve(RecordKind::Visit, &a.id)?;
            let edit = VisitEdit {
                household: a.household,
                grid: a.grid,
                category: parse_opt::<Category>(a.category)?,
                note: a.note,
                residents: (!a.residents.is_empty()).then_some(a.residents),
                needs: a.needs,
                visited_at: parse_opt::<Time>(a.at)?,
                link_tickets: tickets(node, &a.tickets)?,
                household_id: None,
            };
            node.edit_visit(id, &edit)?;
            saved(out, "visit", id)
        }
    }
}

fn ticket(node: &mut Node, out: &Out, cmd: TicketCommand) -> anyhow::Result<()> {
    match cmd {
        TicketCommand::Open(a) => {
            let ticket = NewTicket {
                title: a.title,
                category: parse_opt::<Category>(a.category)?,
                household: a.household,
                grid: a.grid,
                priority: parse_opt::<Priority>(a.priority)?,
                note: a.note,
                opened_at: parse_opt::<Time>(a.at)?,
                due: parse_opt::<Time>(a.due)?,
                channel: parse_opt::<Channel>(a.channel)?,
                ..NewTicket::default()
            };
            let id = node.open_ticket(&ticket)?;
            saved(out, "ticket", id)
        }
        TicketCommand::Update(a) => {
            let id = node.resolve(RecordKind::Ticket, &a.id)?;
            let update = TicketUpdate {
                status: parse_opt::<Status>(a.status)?,
                assignee: a.assign.map(|d| member(node, &d)).transpose()?,
                priority: parse_opt::<Priority>(a.priority)?,
                title: a.title,
                category: parse_opt::<Category>(a.category)?,
                household: a.household,
                grid: a.grid,
                note: a.note,
                due: parse_opt::<Time>(a.due)?,
                satisfaction: parse_opt::<Satisfaction>(a.satisfaction)?,
                ..TicketUpdate::default()
            };
            node.update_ticket(id, &update)?;
            saved(out, "ticket", id)
        }
        TicketCommand::Comment { id, text } => {
            let id = node.resolve(RecordKind::Ticket, &id)?;
            node.comment_ticket(id, &text)?;
            saved(out, "comment on ticket", id)
        }
        TicketCommand::List(a) => {
            let filter = TicketFilter {
                status: parse_opt::<Status>(a.status)?,
                category: parse_opt::<Category>(a.category)?,
                grid: a.grid,
                assignee: a.assignee.map(|d| member(node, &d)).transpose()?,
                overdue: a.overdue,
                ..TicketFilter::default()
            };
            let tickets = node.list_tickets(&filter)?;
            out.emit(&tickets, || {
                let mut t = table(&[
                    "ID", "OPENED", "DUE", "STATUS", "PRIORITY", "TITLE", "CATEGORY", "GRID",
                    "ASSIGNEE",
                ]);
                for k in &tickets {
                    let due = match (&k.due, k.overdue) {
                        (Some(d), true) => format!("{d} (overdue)"),
                        (d, _) => output::opt(d),
                    };
                    t.add_row(vec![
                        k.id.clone(),
                        k.opened_at.clone(),
                        due,
                        k.status.clone(),
                        k.priority.clone(),
                        k.title.clone(),
                        output::category(&k.category),
                        output::opt(&k.grid),
                        k.assignee
                            .as_deref()
                            .map(output::short)
                            .unwrap_or("-".into()),
                    ]);
                }
                print_table(&t, "No tickets.");
            })
        }
        TicketCommand::Show { id } => {
            let id = node.resolve(RecordKind::Ticket, &id)?;
            let d = node.show_ticket(id)?;
            out.emit(&d, || {
                let k = &d.ticket;
                print_fields(&[
                    ("id", k.id.clone()),
                    ("title", k.title.clone()),
                    ("status", k.status.clone()),
                    ("priority", k.priority.clone()),
                    ("category", output::category(&k.category)),
                    ("household", output::opt(&k.household)),
                    ("household id", output::opt(&k.household_id)),
                    ("grid", output::opt(&k.grid)),
                    ("assignee", output::opt(&k.assignee)),
                    ("opened by", k.opened_by.clone()),
                    ("opened at", k.opened_at.clone()),
                    ("channel", output::opt(&k.channel)),
                    (
                        "due",
                        match (&k.due, k.overdue) {
                            (Some(d), true) => format!("{d} (overdue)"),
                            (d, _) => output::opt(d),
                        },
                    ),
                    ("resolved at", output::opt(&k.resolved_at)),
                    ("satisfaction", output::opt(&k.satisfaction)),
                    ("note", output::opt(&k.note)),
                    ("visits", d.visits.join(", ")),
                ]);
                if !d.comments.is_empty() {
                    println!("\nComments:");
                    let mut t = table(&["AT", "AUTHOR", "TEXT"]);
                    for c in &d.comments {
                        t.add_row(vec![c.at.clone(), output::short(&c.author), c.text.clone()]);
                    }
                    print_table(&t, "");
                }
                print_history(&d.history);
                print_conflicts(&d.conflicts);
            })
        }
    }
}

/// A member named by device id, prefix, or name (when exactly one member has it).
pub(crate) fn member(node: &Node, given: &str) -> anyhow::Result<yizhan_protocol::DeviceId> {
    let by_id = node.resolve_device(given);
    if let Ok(d) = by_id {
        return Ok(d);
    }
    let named: Vec<_> = node
        .members()?
        .into_iter()
        .filter(|m| m.name == given.trim())
        .collect();
    match named.as_slice() {
        [one] => Ok(one.device_id.parse()?),
        [] => bail!("no member is named '{given}' or has an id that starts with it"),
        many => bail!(
            "{} members are named '{given}': give the device id ({})",
            many.len(),
            many.iter()
                .map(|m| output::short(&m.device_id))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub(crate) fn print_history(history: &[yizhan_node::records::HistoryEntry]) {
    crate::history::print(history);
}

pub(crate) fn print_conflicts(conflicts: &[yizhan_node::records::Conflict]) {
    if conflicts.is_empty() {
        return;
    }
    println!("\nConflicts (edited concurrently; the first value is shown):");
    let mut t = table(&["FIELD", "VALUES"]);
    for c in conflicts {
        t.add_row(vec![c.field.clone(), c.values.join(" | ")]);
    }
    print_table(&t, "");
}

fn verify(node: &Node, out: &Out) -> anyhow::Result<()> {
    let report = node.verify()?;
    out.emit(&report, || {
        println!(
            "Checked {} changes: {}.",
            report.changes,
            if report.bad == 0 {
                "all good".to_string()
            } else {
                format!("{} bad", report.bad)
            }
        )
    })?;
    if report.bad > 0 {
        let shown: Vec<&str> = report.problems.iter().take(3).map(String::as_str).collect();
        bail!(
            "verification found {} problem(s): {}{}",
            report.bad,
            shown.join("; "),
            if report.problems.len() > 3 {
                "; …"
            } else {
                ""
            }
        );
    }
    Ok(())
}

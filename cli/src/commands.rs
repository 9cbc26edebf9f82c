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
use crate::tr;

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
        Command::Notice(cmd) => crate::notice::run(&mut open(&home)?, &out, cmd),
        Command::Enroll(args) => enroll(&mut open(&home)?, &out, args),
        Command::Join(args) => join(&mut open(&home)?, &out, args),
        Command::Revoke(args) => revoke(&mut open(&home)?, &out, args),
        Command::Members => crate::station::members(&open(&home)?, &out),
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
        Command::Quarantine(cmd) => crate::station::quarantine(&mut open(&home)?, &out, cmd),
        Command::Verify => verify(&open(&home)?, &out),
        Command::Export(args) => crate::office::export(&open(&home)?, &out, args),
        Command::Import(args) => crate::office::import(&mut open(&home)?, &out, args),
        Command::Print(args) => crate::print::run(&open(&home)?, &out, args),
        Command::Report(args) => crate::report::run(&open(&home)?, &out, args),
    }
}

fn resolve_home(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match flag {
        Some(dir) if dir.as_os_str().is_empty() => bail!(tr!("home-empty")),
        Some(dir) => Ok(dir),
        None => default_home().ok_or_else(|| anyhow!(tr!("home-none"))),
    }
}

/// The home when neither `--home` nor `YIZHAN_HOME` names one: the platform's data
/// directory, e.g. `~/.local/share/yizhan`.
pub(crate) fn default_home() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("yizhan"))
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
    let first = rpassword::prompt_password(format!("{} ", tr!("passphrase-prompt")))
        .map_err(|_| anyhow!(tr!("passphrase-needed")))?;
    if confirm == Confirm::Twice {
        let again = rpassword::prompt_password(format!("{} ", tr!("passphrase-again")))
            .map_err(|e| anyhow!(tr!("passphrase-unreadable", reason = e.to_string())))?;
        if again != first {
            bail!(tr!("passphrases-differ"));
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
            output::say(&tr!(
                "init-done",
                name = ident.name.as_str(),
                home = home.display().to_string()
            ));
            let mut fields = vec![
                ("device", ident.device_id.to_string()),
                ("role", output::role(ident.role.as_str())),
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
                ("role", output::role(ident.role.as_str())),
                (
                    "site",
                    ident
                        .site_id
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| tr!("id-no-site")),
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
            "{}",
            output::clean(&tr!(
                "enroll-done",
                name = args.name.as_str(),
                device = device.to_string()
            ))
        );
        println!("{text}");
    })
}

fn join(node: &mut Node, out: &Out, args: JoinArgs) -> anyhow::Result<()> {
    let token = Token::from_text(&args.token)
        .map_err(|e| anyhow!(tr!("token-invalid", reason = e.to_string())))?;
    if let Some(addr) = &args.station {
        crate::config::parse_addr(addr)?;
    }
    node.join(&token, args.station)?;
    let ident = node.identity();
    let site = ident.site_id.map(|s| s.to_string());
    out.emit(
        &json!({ "site_id": site, "role": ident.role.as_str() }),
        || {
            output::say(&tr!(
                "join-done",
                site = site.clone().unwrap_or_default(),
                role = output::role(ident.role.as_str()),
                grids = output::list(&ident.grids)
            ))
        },
    )
}

fn revoke(node: &mut Node, out: &Out, args: RevokeArgs) -> anyhow::Result<()> {
    let device = node.resolve_device(&args.device_id)?;
    node.revoke(device, args.reason.as_deref().unwrap_or(""))?;
    out.emit(&json!({ "revoked": device.to_string() }), || {
        println!("{}", tr!("revoke-done", device = device.to_string()))
    })
}

fn status(node: &Node, out: &Out) -> anyhow::Result<()> {
    let st = node.status()?;
    out.emit(&st, || {
        let names = output::Names::of(node).ok();
        let name_of = |d: &str| {
            names
                .as_ref()
                .map_or_else(|| output::short(d), |n| n.name(d))
        };
        let pending = st.pending_to_station;
        print_fields(&[
            ("device", st.device_id.clone()),
            ("name", st.name.clone()),
            ("role", output::role(st.role.as_str())),
            ("site", st.site_id.clone().unwrap_or("-".into())),
            (
                "records",
                tr!(
                    "status-records",
                    visits = st.records.visits,
                    tickets = st.records.tickets
                ),
            ),
            (
                "at-station",
                match (&st.station_receipt, st.role) {
                    (_, yizhan_node::Role::Station) => tr!("status-this-is-station"),
                    (None, _) => tr!("status-not-confirmed", pending = pending),
                    (Some(r), _) => tr!(
                        "status-confirmed",
                        at = output::when(Some(&r.at)),
                        pending = pending
                    ),
                },
            ),
            ("conflicts", st.conflicts.to_string()),
            ("rejected", st.rejected.to_string()),
            (
                "dropped",
                match st.purged {
                    0 => tr!("status-none"),
                    n => tr!("status-dropped", count = n),
                },
            ),
            (
                "misbehaviour",
                match st.misbehaviour.first() {
                    None => tr!("status-none"),
                    Some(m) => tr!(
                        "status-misbehaviour",
                        count = st.misbehaviour.len(),
                        kind = m.kind.as_str(),
                        device = name_of(&m.device_id),
                        detail = m.detail.as_str()
                    ),
                },
            ),
        ]);
        if !st.peers.is_empty() {
            println!("\n{}", tr!("status-peers"));
            let mut t = table(&[
                tr!("col-device"),
                tr!("col-name"),
                tr!("col-address"),
                tr!("col-last-sync"),
            ]);
            for p in &st.peers {
                t.add_row(vec![
                    output::short(&p.device_id),
                    p.name.clone().unwrap_or_default(),
                    p.addr.clone().unwrap_or("-".into()),
                    p.last_sync
                        .as_deref()
                        .map_or_else(|| tr!("status-never"), |t| output::when(Some(t))),
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

/// What a command saved, for its one line: `Saved visit ID.`
#[derive(Clone, Copy)]
pub(crate) enum Saved {
    Visit,
    Ticket,
    Comment,
    Household,
}

pub(crate) fn saved(out: &Out, what: Saved, id: DocId) -> anyhow::Result<()> {
    out.emit(&json!({ "id": id.to_string() }), || {
        let id = id.to_string();
        let line = match what {
            Saved::Visit => tr!("saved-visit", id = id),
            Saved::Ticket => tr!("saved-ticket", id = id),
            Saved::Comment => tr!("saved-comment", id = id),
            Saved::Household => tr!("saved-household", id = id),
        };
        println!("{line}");
    })
}

fn visit(node: &mut Node, out: &Out, cmd: VisitCommand) -> anyhow::Result<()> {
    match cmd {
        VisitCommand::Add(a) => {
            let visit = NewVisit {
                household: a.household,
                grid: a.grid,
                category: parse_opt::<Category>(a.category)?,
                note: note_text(a.note)?,
                residents: a.residents,
                needs: a.needs,
                visited_at: parse_opt::<Time>(a.at)?,
                tickets: tickets(node, &a.tickets)?,
                household_id: None,
            };
            let id = node.add_visit(&visit)?;
            saved(out, Saved::Visit, id)
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
                let names = output::Names::of(node).ok();
                let mut t = table(&[
                    tr!("col-id"),
                    tr!("col-visited"),
                    tr!("col-household"),
                    tr!("col-grid"),
                    tr!("col-category"),
                    tr!("col-author"),
                ]);
                for v in &visits {
                    t.add_row(vec![
                        v.id.clone(),
                        output::when(Some(&v.visited_at)),
                        v.household.clone(),
                        output::opt(&v.grid),
                        output::category(&v.category),
                        output::name(names.as_ref(), &v.author),
                    ]);
                }
                print_table(&t, &tr!("no-visits"));
            })
        }
        VisitCommand::Show { id } => {
            let id = crate::station::resolve_shown(node, RecordKind::Visit, &id)?;
            let d = node.show_visit(id)?;
            out.emit(&d, || {
                let names = output::Names::of(node).ok();
                let v = &d.visit;
                print_fields(&[
                    ("id", v.id.clone()),
                    ("household", v.household.clone()),
                    ("household_id", output::opt(&v.household_id)),
                    ("grid", output::opt(&v.grid)),
                    ("category", output::category(&v.category)),
                    ("visited_at", output::when(Some(&v.visited_at))),
                    ("residents", or_dash(v.residents.join("、"))),
                    ("needs", output::opt(&v.needs)),
                    ("note", output::opt(&v.note)),
                    ("author", output::name(names.as_ref(), &v.author)),
                    ("tickets", or_dash(v.tickets.join(", "))),
                ]);
                print_history(node, &d.history);
                print_conflicts(&d.conflicts);
            })
        }
        VisitCommand::Edit(a) => {
            let id = node.resolve(RecordKind::Visit, &a.id)?;
            let edit = VisitEdit {
                household: a.household,
                grid: a.grid,
                category: parse_opt::<Category>(a.category)?,
                note: note_text(a.note)?,
                residents: (!a.residents.is_empty()).then_some(a.residents),
                needs: a.needs,
                visited_at: parse_opt::<Time>(a.at)?,
                link_tickets: tickets(node, &a.tickets)?,
                household_id: None,
            };
            node.edit_visit(id, &edit)?;
            saved(out, Saved::Visit, id)
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
                note: note_text(a.note)?,
                opened_at: parse_opt::<Time>(a.at)?,
                due: parse_opt::<Time>(a.due)?,
                channel: parse_opt::<Channel>(a.channel)?,
                ..NewTicket::default()
            };
            let id = node.open_ticket(&ticket)?;
            saved(out, Saved::Ticket, id)
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
                note: note_text(a.note)?,
                due: parse_opt::<Time>(a.due)?,
                satisfaction: parse_opt::<Satisfaction>(a.satisfaction)?,
                ..TicketUpdate::default()
            };
            node.update_ticket(id, &update)?;
            saved(out, Saved::Ticket, id)
        }
        TicketCommand::Comment { id, text, file } => {
            let text = match (text, file) {
                (Some(text), _) => text,
                (None, Some(file)) => read_text(&file)?,
                (None, None) => unreachable!("clap requires the text or --file"),
            };
            let id = node.resolve(RecordKind::Ticket, &id)?;
            node.comment_ticket(id, &text)?;
            saved(out, Saved::Comment, id)
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
                let names = output::Names::of(node).ok();
                let mut t = table(&[
                    tr!("col-id"),
                    tr!("col-opened"),
                    tr!("col-due"),
                    tr!("col-status"),
                    tr!("col-priority"),
                    tr!("col-title"),
                    tr!("col-category"),
                    tr!("col-grid"),
                    tr!("col-assignee"),
                ]);
                for k in &tickets {
                    t.add_row(vec![
                        k.id.clone(),
                        output::when(Some(&k.opened_at)),
                        due(&k.due, k.overdue),
                        output::word(&k.status),
                        output::word(&k.priority),
                        k.title.clone(),
                        output::category(&k.category),
                        output::opt(&k.grid),
                        output::opt_name(names.as_ref(), k.assignee.as_deref()),
                    ]);
                }
                print_table(&t, &tr!("no-tickets"));
            })
        }
        TicketCommand::Show { id } => {
            let id = crate::station::resolve_shown(node, RecordKind::Ticket, &id)?;
            let d = node.show_ticket(id)?;
            out.emit(&d, || {
                let names = output::Names::of(node).ok();
                let k = &d.ticket;
                print_fields(&[
                    ("id", k.id.clone()),
                    ("title", k.title.clone()),
                    ("status", output::word(&k.status)),
                    ("priority", output::word(&k.priority)),
                    ("category", output::category(&k.category)),
                    ("household", output::opt(&k.household)),
                    ("household_id", output::opt(&k.household_id)),
                    ("grid", output::opt(&k.grid)),
                    (
                        "assignee",
                        output::opt_name(names.as_ref(), k.assignee.as_deref()),
                    ),
                    ("opened_by", output::name(names.as_ref(), &k.opened_by)),
                    ("opened_at", output::when(Some(&k.opened_at))),
                    ("channel", output::opt_word(&k.channel)),
                    ("due", due(&k.due, k.overdue)),
                    ("resolved_at", output::when(k.resolved_at.as_deref())),
                    ("satisfaction", output::opt_word(&k.satisfaction)),
                    ("note", output::opt(&k.note)),
                    ("visits", or_dash(d.visits.join(", "))),
                ]);
                if !d.comments.is_empty() {
                    println!("\n{}", tr!("comments-heading"));
                    let mut t = table(&[tr!("col-at"), tr!("col-author"), tr!("col-text")]);
                    for c in &d.comments {
                        t.add_row(vec![
                            output::when(Some(&c.at)),
                            output::name(names.as_ref(), &c.author),
                            c.text.clone(),
                        ]);
                    }
                    print_table(&t, "");
                }
                print_history(node, &d.history);
                print_conflicts(&d.conflicts);
            })
        }
    }
}

/// The note of `--note TEXT` or `--note-file FILE`.
pub(crate) fn note_text(args: NoteArgs) -> anyhow::Result<Option<String>> {
    match (args.note, args.note_file) {
        (Some(text), _) => Ok(Some(text)),
        (None, Some(file)) => Ok(Some(read_text(&file)?)),
        (None, None) => Ok(None),
    }
}

/// A long text from FILE, or standard input for `-`: UTF-8, its final line break dropped.
/// Reading stops past the longest text a record holds, so a wrong file (a disk image, a
/// stream without end) costs nothing and is refused.
pub(crate) fn read_text(file: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let limit = yizhan_node::records::MAX_LONG_TEXT as u64;
    let name = file.display().to_string();
    let unreadable = |e: std::io::Error| {
        anyhow!(tr!(
            "note-file-unreadable",
            file = name.as_str(),
            reason = e.to_string()
        ))
    };
    let mut bytes = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
            .map_err(unreadable)?;
    }
    if bytes.len() as u64 > limit {
        bail!(tr!("note-file-too-long", file = name.as_str(), max = limit));
    }
    let mut text = String::from_utf8(bytes)
        .map_err(|_| anyhow!(tr!("note-file-not-text", file = name.as_str())))?;
    let kept = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(kept);
    Ok(text)
}

/// `-` for an empty list.
pub(crate) fn or_dash(text: String) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text
    }
}

/// A deadline for people, marked when it has passed.
pub(crate) fn due(due: &Option<String>, overdue: bool) -> String {
    match (due, overdue) {
        (Some(d), true) => tr!("overdue-mark", when = output::when(Some(d))),
        (d, _) => output::when(d.as_deref()),
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
        [] => bail!(tr!("member-unknown", given = given)),
        many => bail!(tr!(
            "member-ambiguous",
            count = many.len(),
            given = given,
            ids = many
                .iter()
                .map(|m| output::short(&m.device_id))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

pub(crate) fn print_history(node: &Node, history: &[yizhan_node::records::HistoryEntry]) {
    crate::history::print(history, output::Names::of(node).ok().as_ref());
}

pub(crate) fn print_conflicts(conflicts: &[yizhan_node::records::Conflict]) {
    if conflicts.is_empty() {
        return;
    }
    println!("\n{}", tr!("conflicts-in-record"));
    let mut t = table(&[tr!("col-field"), tr!("col-values")]);
    for c in conflicts {
        t.add_row(vec![output::label(&c.field), c.values.join(" | ")]);
    }
    print_table(&t, "");
}

fn verify(node: &Node, out: &Out) -> anyhow::Result<()> {
    let report = node.verify()?;
    out.emit(&report, || {
        println!(
            "{}",
            tr!("verify-done", count = report.changes, bad = report.bad)
        )
    })?;
    if report.bad > 0 {
        let shown: Vec<&str> = report.problems.iter().take(3).map(String::as_str).collect();
        let more = if report.problems.len() > 3 {
            "; …"
        } else {
            ""
        };
        bail!(tr!(
            "verify-problems",
            count = report.bad,
            shown = format!("{}{more}", shown.join("; "))
        ));
    }
    Ok(())
}

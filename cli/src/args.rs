//! The command line, as clap sees it. Only this crate knows clap.
//!
//! Values with a meaning of their own (categories, times, statuses, ids) are taken as
//! text here and parsed by the command, so that a bad value is a failed command (exit 1)
//! with a clear reason, while a malformed command line is a usage error (exit 2).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// yizhan (驿站): offline-first records for community grid volunteers.
#[derive(Debug, Parser)]
#[command(name = "yizhan", version, about, propagate_version = true)]
pub struct Cli {
    /// The node's home directory (key, store, config).
    #[arg(long, global = true, env = "YIZHAN_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Print exactly one JSON value on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// The language of human output: zh (中文) or en. Default: `lang` in config.toml,
    /// else the locale (LC_ALL, LC_MESSAGES, LANG).
    #[arg(long, global = true, value_name = "LANG")]
    pub lang: Option<LangArg>,
    #[command(subcommand)]
    pub command: Command,
}

/// `--note TEXT` or `--note-file FILE`, wherever a record takes a note.
#[derive(Debug, Args)]
pub struct NoteArgs {
    /// Free text (may begin with `-`).
    #[arg(long, allow_hyphen_values = true, conflicts_with = "note_file")]
    pub note: Option<String>,
    /// Read the note from FILE (`-`: standard input), for text longer than a command line.
    #[arg(long, value_name = "FILE")]
    pub note_file: Option<PathBuf>,
}

/// `--lang`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LangArg {
    Zh,
    En,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create this node's home: a new device key and an empty store.
    Init(InitArgs),
    /// Show this node's identity.
    Id,
    /// Log and look up home visits.
    #[command(subcommand)]
    Visit(VisitCommand),
    /// Open and work service tickets.
    #[command(subcommand)]
    Ticket(TicketCommand),
    /// The household ledger (台账): households, their tags, visits and tickets.
    #[command(subcommand)]
    Household(HouseholdCommand),
    /// The station's policy: visit intervals by tag, ticket deadlines by priority.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Notices (信息发布): a station publishes; members read them offline and mark them read.
    #[command(subcommand)]
    Notice(NoticeCommand),
    /// What needs doing: households due a visit and tickets near or past their deadline,
    /// most overdue first, from the records this node holds (works offline).
    Due(DueArgs),
    /// Station only: admit a device to the site; prints the token to hand to it.
    Enroll(EnrollArgs),
    /// Join a site with the token a station gave this device.
    Join(JoinArgs),
    /// Station only: expel a device from the site.
    Revoke(RevokeArgs),
    /// The site's roster as this node knows it.
    Members,
    /// Run the node: accept syncs from members and keep syncing with the station.
    Serve(ServeArgs),
    /// Sync once with a peer (the station when none is given), both ways.
    Sync(SyncArgs),
    /// The effective network settings (flags, config.toml, join, defaults) and where each
    /// comes from; takes `serve`'s flags to show what they would change.
    Config(ServeArgs),
    /// Where this node stands: records, what is pending, peers, conflicts.
    Status,
    /// Every field edited concurrently, across all records: each value, its author, when.
    Conflicts,
    /// Settle a field's concurrent values with one value (a new signed change).
    Resolve(ResolveArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish) on stdout.
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout.
    Man,
    /// Station only: changes by revoked devices held back for a decision.
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// Re-check every stored change and the store's integrity.
    Verify,
    /// Write all records of one kind to a file.
    Export(ExportArgs),
    /// Add the records in a file as this node's own.
    Import(ImportArgs),
    /// The station's report for a period: visits, tickets, volunteers not synced.
    Report(ReportArgs),
    /// One record as a page for A4 paper (HTML, in Chinese), with its history.
    Print(PrintArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// A name for this device, e.g. the volunteer's name.
    #[arg(long)]
    pub name: String,
    /// Also create a new site whose root of trust is this device.
    #[arg(long)]
    pub station: bool,
    /// Keep the whole store encrypted at rest, keyed by a passphrase (from
    /// $YIZHAN_PASSPHRASE, or asked for at the terminal).
    #[arg(long)]
    pub encrypt: bool,
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// The record: a visit or ticket id, or a unique prefix of at least 6 characters.
    pub id: String,
    /// The field in conflict (as `conflicts` names it: status, note, category, ...).
    pub field: String,
    /// The value to keep (parsed as the field's type: a category's slug or Chinese name,
    /// a status, a priority, a time, a device id, or text).
    pub value: String,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MemberRoleArg {
    Volunteer,
    Station,
}

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The device's id (as `yizhan id` prints it on that device).
    pub device_id: String,
    /// Its name in the roster.
    #[arg(long)]
    pub name: String,
    /// A grid it works (repeat for several; a volunteer needs one).
    #[arg(long = "grid", value_name = "GRID")]
    pub grids: Vec<String>,
    /// Its role.
    #[arg(long, value_enum, default_value = "volunteer")]
    pub role: MemberRoleArg,
    /// Days until the membership expires (at least 1).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub expires_days: Option<i64>,
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The token from `yizhan enroll`.
    pub token: String,
    /// Where the station listens.
    #[arg(long, value_name = "HOST:PORT")]
    pub station: Option<String>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The device to expel (id or prefix).
    pub device_id: String,
    /// Why, for the record.
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (UDP) [default: `listen` in config.toml, else 0.0.0.0:7365].
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// The station's address, over config.toml and the address stored at join.
    #[arg(long, value_name = "HOST:PORT")]
    pub station: Option<String>,
    /// Do not look for the site's nodes on the local network (mDNS).
    #[arg(long)]
    pub no_discovery: bool,
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// List the held changes.
    List,
    /// Merge held changes.
    Accept(QuarantineTarget),
    /// Drop held changes for good.
    Reject(QuarantineTarget),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct QuarantineTarget {
    /// A held change's id (or a unique prefix of 6+ characters).
    pub id: Option<String>,
    /// Every held change.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The peer; the station when omitted.
    #[arg(value_name = "HOST:PORT")]
    pub peer: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum VisitCommand {
    /// Log a home visit.
    Add(VisitAddArgs),
    /// List visit logs.
    List(VisitListArgs),
    /// Show one visit log with its history.
    Show {
        /// Visit id or a unique prefix (6+ characters).
        id: String,
    },
    /// Change a visit log (its author or a station only).
    Edit(VisitEditArgs),
}

#[derive(Debug, Args)]
pub struct VisitAddArgs {
    /// The household visited: its address in the visit's grid, or its id (or a unique
    /// prefix); a new address adds the household.
    #[arg(long)]
    pub household: String,
    /// Grid; defaults to this volunteer's first grid.
    #[arg(long)]
    pub grid: Option<String>,
    /// Service category (slug or Chinese name).
    #[arg(long)]
    pub category: Option<String>,
    #[command(flatten)]
    pub note: NoteArgs,
    /// A resident met (repeat for several).
    #[arg(long = "resident", value_name = "NAME")]
    pub residents: Vec<String>,
    /// What the household needs.
    #[arg(long, allow_hyphen_values = true)]
    pub needs: Option<String>,
    /// When the visit happened (RFC 3339 or YYYY-MM-DD); now by default.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Link the visit to a ticket (id or prefix; repeatable).
    #[arg(long = "ticket", value_name = "ID")]
    pub tickets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VisitListArgs {
    /// Only this grid.
    #[arg(long)]
    pub grid: Option<String>,
    /// Only visits logged by this device (id or prefix).
    #[arg(long, value_name = "DEVICE_ID")]
    pub by: Option<String>,
    /// Only visits at or after this time.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only this category.
    #[arg(long)]
    pub category: Option<String>,
}

#[derive(Debug, Args)]
pub struct VisitEditArgs {
    /// Visit id or a unique prefix.
    pub id: String,
    /// New household.
    #[arg(long)]
    pub household: Option<String>,
    /// Move to another grid.
    #[arg(long)]
    pub grid: Option<String>,
    /// New category.
    #[arg(long)]
    pub category: Option<String>,
    #[command(flatten)]
    pub note: NoteArgs,
    /// New needs.
    #[arg(long, allow_hyphen_values = true)]
    pub needs: Option<String>,
    /// Replace the residents (repeat for several).
    #[arg(long = "resident", value_name = "NAME")]
    pub residents: Vec<String>,
    /// New visit time.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Link a ticket (repeatable).
    #[arg(long = "ticket", value_name = "ID")]
    pub tickets: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum TicketCommand {
    /// Open a service ticket.
    Open(TicketOpenArgs),
    /// Change a ticket's status, assignee, priority or title.
    Update(TicketUpdateArgs),
    /// Comment on a ticket: the text, or `--file FILE` (`-`: standard input).
    #[command(group = clap::ArgGroup::new("comment").required(true).args(["text", "file"]))]
    Comment {
        /// Ticket id or a unique prefix.
        id: String,
        /// The comment (may begin with `-`).
        #[arg(allow_hyphen_values = true)]
        text: Option<String>,
        /// Read the comment from FILE (`-`: standard input).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// List tickets.
    List(TicketListArgs),
    /// Show one ticket with comments, visits, history and conflicts.
    Show {
        /// Ticket id or a unique prefix.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct TicketOpenArgs {
    /// What is needed, in a few words.
    #[arg(long, allow_hyphen_values = true)]
    pub title: String,
    /// Service category (slug or Chinese name).
    #[arg(long)]
    pub category: Option<String>,
    /// The household concerned: its address in the ticket's grid, or its id (or a unique
    /// prefix); a new address adds the household.
    #[arg(long)]
    pub household: Option<String>,
    /// Grid; defaults to this volunteer's first grid.
    #[arg(long)]
    pub grid: Option<String>,
    /// low, normal (default), high or urgent.
    #[arg(long)]
    pub priority: Option<String>,
    #[command(flatten)]
    pub note: NoteArgs,
    /// When the resident asked (RFC 3339 or YYYY-MM-DD); now by default.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// The deadline; by default the request's time plus the policy's days for the
    /// priority.
    #[arg(long, value_name = "TIME")]
    pub due: Option<String>,
    /// How the request came in: hotline 热线, mailbox 信箱, walk-in 来访, visit 走访,
    /// patrol 巡查 (default visit on a volunteer's laptop, walk-in at a station).
    #[arg(long, value_name = "CH")]
    pub channel: Option<String>,
}

#[derive(Debug, Args)]
pub struct TicketUpdateArgs {
    /// Ticket id or a unique prefix.
    pub id: String,
    /// open, in_progress, resolved or closed.
    #[arg(long)]
    pub status: Option<String>,
    /// Assign to a member: device id, prefix, or name (when one member has it).
    #[arg(long, value_name = "MEMBER")]
    pub assign: Option<String>,
    /// low, normal, high or urgent.
    #[arg(long)]
    pub priority: Option<String>,
    /// New title.
    #[arg(long, allow_hyphen_values = true)]
    pub title: Option<String>,
    /// New category.
    #[arg(long)]
    pub category: Option<String>,
    /// New household.
    #[arg(long)]
    pub household: Option<String>,
    /// Move to another grid.
    #[arg(long)]
    pub grid: Option<String>,
    #[command(flatten)]
    pub note: NoteArgs,
    /// New deadline.
    #[arg(long, value_name = "TIME")]
    pub due: Option<String>,
    /// The resident's verdict in the follow-up call (回访), on a resolved or closed ticket:
    /// satisfied 满意, basic 基本满意, unsatisfied 不满意.
    #[arg(long, value_name = "VERDICT")]
    pub satisfaction: Option<String>,
}

#[derive(Debug, Args)]
pub struct TicketListArgs {
    /// Only this status.
    #[arg(long)]
    pub status: Option<String>,
    /// Only this category.
    #[arg(long)]
    pub category: Option<String>,
    /// Only this grid.
    #[arg(long)]
    pub grid: Option<String>,
    /// Only tickets assigned to this member (device id, prefix, or name).
    #[arg(long, value_name = "MEMBER")]
    pub assignee: Option<String>,
    /// Only tickets neither resolved nor closed whose deadline has passed.
    #[arg(long)]
    pub overdue: bool,
}

#[derive(Debug, Subcommand)]
pub enum HouseholdCommand {
    /// Add a household to the ledger.
    Add(HouseholdAddArgs),
    /// List households, with when each was last visited and is next due.
    List(HouseholdListArgs),
    /// Show one household with its visits, tickets and history.
    Show {
        /// Household id or a unique prefix (6+ characters).
        id: String,
    },
    /// Change a household: address, grid (it moves), residents, tags, phone, note.
    Edit(HouseholdEditArgs),
}

#[derive(Debug, Args)]
pub struct HouseholdAddArgs {
    /// Its address.
    #[arg(long)]
    pub address: String,
    /// Grid; defaults to this volunteer's first grid.
    #[arg(long)]
    pub grid: Option<String>,
    /// A resident (repeat for several).
    #[arg(long = "resident", value_name = "NAME")]
    pub residents: Vec<String>,
    /// A tag, slug or Chinese name (repeat for several): elderly-alone 独居老人,
    /// low-income 低保户, disabled 残疾人, hardship 困难户, left-behind-child 留守儿童,
    /// community-correction 社区矫正, ordinary 普通户.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Phone number.
    #[arg(long)]
    pub phone: Option<String>,
    #[command(flatten)]
    pub note: NoteArgs,
}

#[derive(Debug, Args)]
pub struct HouseholdListArgs {
    /// Only this grid.
    #[arg(long)]
    pub grid: Option<String>,
    /// Only households with this tag.
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Only households whose address, residents, phone or note hold this text.
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub search: Option<String>,
}

#[derive(Debug, Args)]
pub struct HouseholdEditArgs {
    /// Household id or a unique prefix.
    pub id: String,
    /// New address (the id stays).
    #[arg(long)]
    pub address: Option<String>,
    /// Move to another grid.
    #[arg(long)]
    pub grid: Option<String>,
    /// Replace the residents (repeat for several).
    #[arg(long = "resident", value_name = "NAME")]
    pub residents: Vec<String>,
    /// Add a tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Remove a tag (repeatable).
    #[arg(long = "untag", value_name = "TAG")]
    pub untags: Vec<String>,
    /// New phone number.
    #[arg(long)]
    pub phone: Option<String>,
    #[command(flatten)]
    pub note: NoteArgs,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show the policy this node holds (the defaults until a station sets one).
    Show,
    /// Station only: set one value of the policy.
    Set {
        /// `visit-every` (days between visits, by tag) or `ticket-due` (days from a request
        /// to its deadline, by priority).
        setting: PolicySetting,
        /// The tag (for visit-every) or the priority (for ticket-due).
        key: String,
        /// Whole days.
        days: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PolicySetting {
    VisitEvery,
    TicketDue,
}

#[derive(Debug, Subcommand)]
pub enum NoticeCommand {
    /// Station only: publish a notice to the grids named, or to the whole site.
    Publish {
        /// Its title.
        #[arg(long)]
        title: String,
        /// Its text.
        #[arg(long)]
        body: String,
        /// A grid it is for (repeat for several); none: the whole site.
        #[arg(long = "grid", value_name = "GRID")]
        grids: Vec<String>,
        /// When it stops being current (RFC 3339, or a date: its start); none: never.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
    },
    /// The notices this node holds, newest first (works offline).
    List {
        /// Also those whose `until` has passed.
        #[arg(long)]
        all: bool,
    },
    /// Mark a notice read by this device (it reaches the station with the next sync).
    Read {
        /// Notice id or a unique prefix (6+ characters).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct DueArgs {
    /// Only this grid.
    #[arg(long)]
    pub grid: Option<String>,
    /// Also what falls due within this many days (default 7).
    #[arg(long, value_name = "DAYS", default_value = "7")]
    pub within: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    Visits,
    Tickets,
    Households,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FileFormat {
    Csv,
    Json,
    /// An Excel workbook (headers and names in Chinese).
    Xlsx,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Which records.
    #[arg(long)]
    pub kind: Kind,
    /// File format.
    #[arg(long)]
    pub format: FileFormat,
    /// Write to this file (replaced atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Only records at or after this time (visited_at / opened_at / added_at).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Which records.
    #[arg(long)]
    pub kind: Kind,
    /// File format.
    #[arg(long)]
    pub format: FileFormat,
    /// The file to import.
    pub file: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    /// Markdown.
    Md,
    /// One self-contained HTML file with charts.
    Html,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Start of the period, inclusive (RFC 3339 or YYYY-MM-DD); from the first record when
    /// omitted.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// End of the period, exclusive (RFC 3339 or YYYY-MM-DD); now when omitted.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// md (default) or html.
    #[arg(long, value_enum)]
    pub format: Option<ReportFormat>,
    /// Write the report to this file (replaced atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PrintKind {
    Visit,
    Ticket,
    Household,
}

#[derive(Debug, Args)]
pub struct PrintArgs {
    /// Which kind of record.
    pub kind: PrintKind,
    /// Its id, or a unique prefix of at least 6 characters.
    pub id: String,
    /// Write the page to this file (replaced atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
}

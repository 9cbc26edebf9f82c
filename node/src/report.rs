//! The station's report for a time window: visits by grid, category and volunteer; tickets
//! opened, resolved and still open by category; the median time to resolve; volunteers
//! who have not synced for a week.
//!
//! Visits are counted from the `records` index alone (no document is loaded). Tickets need
//! their history, because the index holds only a ticket's current status: each ticket
//! opened before the window's end is loaded once and its signed changes are walked in
//! causal order. A ticket is *resolved* by a change that takes its status from open or
//! in progress to resolved or closed; the change's time (its author's clock, as signed) is
//! when. `docs/reports.md` gives every rule in words.
//!
//! The window is half-open: a time counts when `since <= t < until`.

use std::collections::{BTreeMap, HashMap};

use automerge::{AutoCommit, ChangeHash, ROOT, ReadDoc, ScalarValue, Value};
use serde::{Deserialize, Serialize};
use yizhan_protocol::DocId;

use crate::error::{ReadError, WriteError};
use crate::home::Node;
use crate::identity::Role;
use crate::model::{Category, Channel, DAY_MS, Satisfaction, Time};
use crate::records::Field;
use crate::store::docs::load_doc;

/// A volunteer counts as not synced when its last sync with this node is older than this
/// many days before the window's end (or when it never synced).
pub const STALE_AFTER_DAYS: i64 = 7;

/// The window a report covers: `since <= t < until`; no `since` means from the start.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Start, inclusive.
    pub since: Option<Time>,
    /// End, exclusive.
    pub until: Time,
}

impl Window {
    fn contains(&self, ms: i64) -> bool {
        self.since.is_none_or(|s| ms >= s.millis()) && ms < self.until.millis()
    }
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// `since` is not before `until`.
    #[error("--since ({since}) must be before --until ({until})")]
    EmptyWindow {
        /// The start given.
        since: String,
        /// The end given.
        until: String,
    },
    /// Reading the store failed.
    #[error(transparent)]
    Read(#[from] ReadError),
}

impl From<rusqlite::Error> for ReportError {
    fn from(e: rusqlite::Error) -> Self {
        ReportError::Read(ReadError::Sqlite(e))
    }
}

/// The whole report, as `report --json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// When the report was made (RFC 3339).
    pub generated_at: String,
    /// The window's start (RFC 3339), or null for "from the first record".
    pub since: Option<String>,
    /// The window's end (RFC 3339), exclusive.
    pub until: String,
    /// The node the report was made on.
    pub node: ReportNode,
    /// Whether this node holds the whole site (it is a station). When false, every figure
    /// covers only the records this node holds.
    pub whole_site: bool,
    /// Visit logs whose visit time falls in the window.
    pub visits: VisitFigures,
    /// Tickets.
    pub tickets: TicketFigures,
    /// The days without a sync after which a volunteer is listed.
    pub stale_after_days: i64,
    /// Volunteers (not revoked) whose last sync with this node is older than
    /// `stale_after_days` before `until`, or who never synced.
    pub volunteers_not_synced: Vec<StaleVolunteer>,
    /// One entry per grid: its households, their coverage, its visits and tickets; by
    /// grid name, null (no grid) last.
    pub grids: Vec<GridFigures>,
    /// One entry per volunteer: every volunteer in the roster (not revoked), then any
    /// other device that logged a visit or resolved a ticket in the window; most visits
    /// first.
    pub volunteers: Vec<VolunteerFigures>,
    /// Tickets opened in the window by channel slug: every channel (zeros included), and
    /// any other slug found. A ticket without a channel is in none.
    pub tickets_by_channel: BTreeMap<String, u64>,
    /// Ids of the households overdue at the window's end: their next visit (latest
    /// visit before the end, else when added, plus their interval) is due before it.
    pub overdue_households: Vec<String>,
    /// Ids of the tickets overdue at the window's end: opened before it, neither resolved
    /// nor closed as of it, and due before it.
    pub overdue_tickets: Vec<String>,
    /// Devices the site has revoked (as this node knows), revoked before the window's end,
    /// oldest first.
    #[serde(default)]
    pub revoked_devices: Vec<RevokedDevice>,
    /// Changes held in quarantine now, waiting for the station's decision (always 0 on a
    /// node that is not the station).
    #[serde(default)]
    pub held_in_quarantine: u64,
    /// The notices published in the window, oldest first, with their readers.
    #[serde(default)]
    pub notices: Vec<crate::notices::NoticeFigures>,
}

/// A device the site revoked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RevokedDevice {
    /// Its device id.
    pub device_id: String,
    /// Its name in the roster, or null.
    pub name: Option<String>,
    /// When it was revoked (RFC 3339).
    pub revoked_at: String,
    /// The reason the station gave.
    pub reason: String,
}

/// One grid's figures for a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GridFigures {
    /// The grid, or null: records that name none.
    pub grid: Option<String>,
    /// Households in the grid at the window's end: added before it (or with no added
    /// time), or visited before it.
    pub households: u64,
    /// Of those, households whose latest visit before the end is within their interval
    /// at the end.
    pub covered: u64,
    /// Visits in the window.
    pub visits: u64,
    /// Tickets opened in the window.
    pub tickets_opened: u64,
    /// Tickets resolved in the window (as [`TicketFigures::resolved`]).
    pub tickets_resolved: u64,
    /// Of those, tickets whose first resolution in the window was at or before `due`.
    pub resolved_on_time: u64,
    /// Tickets whose resident's verdict was recorded (`rated_at`) in the window.
    pub rated: u64,
    /// Of those, verdicts satisfied or basic.
    pub satisfied: u64,
    /// Tickets overdue at the window's end.
    pub overdue_tickets: u64,
}

/// One volunteer's figures for a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VolunteerFigures {
    /// Its device id.
    pub device_id: String,
    /// Its name in the roster, or null if the roster does not know it.
    pub name: Option<String>,
    /// Visits it logged in the window.
    pub visits: u64,
    /// Tickets it resolved in the window: it signed a change made in the window that
    /// resolved them.
    pub tickets_resolved: u64,
    /// Of those, tickets its first such change resolved at or before `due`.
    pub resolved_on_time: u64,
}

/// One household as the coverage count sees it.
#[derive(Clone, Debug)]
pub struct HouseholdRow {
    /// Its id (32 hex).
    pub id: String,
    /// Its grid.
    pub grid: Option<String>,
    /// Covered at the window's end.
    pub covered: bool,
    /// Overdue at the window's end.
    pub overdue: bool,
}

/// The node a report was made on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportNode {
    /// Its device id.
    pub device_id: String,
    /// Its name.
    pub name: String,
    /// `station`, `volunteer` or `unenrolled`.
    pub role: String,
}

/// Visit counts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VisitFigures {
    /// All visits in the window.
    pub total: u64,
    /// By grid, most visits first (null: the record names no grid).
    pub by_grid: Vec<GridCount>,
    /// By category: the seven categories in the station's order (zeros included), then
    /// null (no category) if any.
    pub by_category: Vec<CategoryCount>,
    /// By the device that logged the visit, most visits first.
    pub by_volunteer: Vec<VolunteerCount>,
}

/// Visits in one grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GridCount {
    /// The grid, or null.
    pub grid: Option<String>,
    /// How many.
    pub count: u64,
}

/// Visits in one category.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CategoryCount {
    /// The category slug, or null.
    pub category: Option<String>,
    /// How many.
    pub count: u64,
}

/// Visits logged by one device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolunteerCount {
    /// The device that logged them.
    pub device_id: String,
    /// Its name in the roster, or null if the roster does not know it.
    pub name: Option<String>,
    /// How many.
    pub count: u64,
}

/// Ticket counts, in all and by category.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TicketFigures {
    /// Tickets whose `opened_at` falls in the window.
    pub opened: u64,
    /// Tickets resolved (status became resolved or closed) by a change made in the window.
    pub resolved: u64,
    /// Tickets opened before `until` and, as of `until`, neither resolved nor closed.
    pub open: u64,
    /// The median, over the tickets counted in `resolved`, of the time from `opened_at`
    /// to the ticket's first resolution, in seconds; null when none was resolved.
    pub median_resolve_secs: Option<f64>,
    /// By category: the seven categories in order (zeros included), then null if any.
    pub by_category: Vec<TicketCategory>,
}

/// Ticket counts of one category.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketCategory {
    /// The category slug (the ticket's current one), or null.
    pub category: Option<String>,
    /// As [`TicketFigures::opened`].
    pub opened: u64,
    /// As [`TicketFigures::resolved`].
    pub resolved: u64,
    /// As [`TicketFigures::open`].
    pub open: u64,
    /// As [`TicketFigures::median_resolve_secs`].
    pub median_resolve_secs: Option<f64>,
}

/// A volunteer who has not synced recently.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StaleVolunteer {
    /// Its device id.
    pub device_id: String,
    /// Its name in the roster.
    pub name: String,
    /// Its grids.
    pub grids: Vec<String>,
    /// Its last completed sync with this node (RFC 3339), or null: never.
    pub last_sync: Option<String>,
    /// Whole days from `last_sync` to `until` (or to `now`, if `until` is later), or null:
    /// never.
    pub days_since_sync: Option<i64>,
}

/// What a ticket's history says, for one window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TicketFacts {
    /// Times (ms) of the changes that took the ticket from not done to done (resolved or
    /// closed), in causal order.
    pub resolutions: Vec<i64>,
    /// For each of `resolutions`, in the same order: who resolved it.
    pub resolvers: Vec<Resolver>,
    /// Whether, as of `until`, the ticket is resolved or closed.
    pub done_at_until: bool,
}

/// Who resolved a ticket, and when for the deadline.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resolver {
    /// The device that signed the resolving change (hex device id).
    pub device_id: String,
    /// When it was resolved, for judging the deadline: the ticket's `resolved_at` as that
    /// change left it, else the change's time (ms).
    pub resolved_ms: i64,
}

fn is_done(status: Option<&str>) -> bool {
    matches!(status, Some("resolved") | Some("closed"))
}

fn status_at(doc: &AutoCommit, heads: &[ChangeHash]) -> Option<String> {
    text_at(doc, Field::Status, heads)
}

fn text_at(doc: &AutoCommit, field: Field, heads: &[ChangeHash]) -> Option<String> {
    if heads.is_empty() {
        return None;
    }
    match doc.get_at(ROOT, field, heads) {
        Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// Reads a ticket's resolutions and its status as of `until_ms` from its history.
///
/// Each change is judged on its own branch of the history: the status after it (the
/// document as of that change and its ancestors) against the status before it (as of its
/// dependencies). The status as of `until_ms` is the document as of every change made
/// before then; a ticket none of whose changes is that old (it reached the record later,
/// e.g. imported with an earlier `opened_at`) is judged by its first change.
pub fn ticket_facts(doc: &mut AutoCommit, until_ms: i64) -> TicketFacts {
    let metas: Vec<(ChangeHash, i64, Vec<ChangeHash>, String)> = doc
        .get_changes_meta(&[])
        .into_iter()
        .map(|m| (m.hash, m.timestamp, m.deps, m.actor.to_hex_string()))
        .collect();
    let mut facts = TicketFacts::default();
    for (hash, at, deps, actor) in &metas {
        let here = std::slice::from_ref(hash);
        let after = status_at(doc, here);
        if is_done(after.as_deref()) && !is_done(status_at(doc, deps).as_deref()) {
            facts.resolutions.push(*at);
            let resolved_ms = text_at(doc, Field::ResolvedAt, here)
                .and_then(|s| s.parse::<Time>().ok())
                .map_or(*at, Time::millis);
            facts.resolvers.push(Resolver {
                device_id: actor.clone(),
                resolved_ms,
            });
        }
    }
    let before: Vec<ChangeHash> = metas
        .iter()
        .filter(|(_, at, _, _)| *at < until_ms)
        .map(|(h, _, _, _)| *h)
        .collect();
    let heads = if before.is_empty() {
        metas
            .first()
            .map(|(h, _, _, _)| vec![*h])
            .unwrap_or_default()
    } else {
        before
    };
    facts.done_at_until = is_done(status_at(doc, &heads).as_deref());
    facts
}

/// One ticket as the tally sees it.
#[derive(Clone, Debug, Default)]
pub struct TicketRow {
    /// Its id (32 hex).
    pub id: String,
    /// Its current category slug.
    pub category: Option<String>,
    /// Its current grid.
    pub grid: Option<String>,
    /// `opened_at`, ms.
    pub opened_ms: i64,
    /// Its deadline (`due`), ms.
    pub due_ms: Option<i64>,
    /// How the request came in (a channel slug).
    pub channel: Option<String>,
    /// When the resident's verdict was recorded (`rated_at`), ms.
    pub rated_ms: Option<i64>,
    /// The verdict is satisfied or basic.
    pub satisfied: bool,
    /// From its history.
    pub facts: TicketFacts,
}

impl TicketRow {
    /// The ticket's resolutions in the window, in causal order.
    fn resolved_in<'a>(&'a self, window: &'a Window) -> impl Iterator<Item = &'a Resolver> {
        self.facts
            .resolutions
            .iter()
            .zip(&self.facts.resolvers)
            .filter(|(at, _)| window.contains(**at))
            .map(|(_, r)| r)
    }

    /// Whether a resolution met the deadline (a ticket without one never does).
    fn on_time(&self, r: &Resolver) -> bool {
        self.due_ms.is_some_and(|due| r.resolved_ms <= due)
    }

    /// Neither resolved nor closed as of the window's end, and due before it.
    fn overdue_at_end(&self, window: &Window) -> bool {
        !self.facts.done_at_until && self.due_ms.is_some_and(|d| d < window.until.millis())
    }
}

/// The median of `values` (sorted here); the mean of the two middle values when even.
pub fn median(values: &mut [i64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2] as f64
    } else {
        (values[n / 2 - 1] as f64 + values[n / 2] as f64) / 2.0
    })
}

#[derive(Default)]
struct Tally {
    opened: u64,
    resolved: u64,
    open: u64,
    durations_ms: Vec<i64>,
}

impl Tally {
    fn add(&mut self, t: &TicketRow, window: &Window) {
        let until = window.until.millis();
        if t.opened_ms >= until {
            return;
        }
        if window.contains(t.opened_ms) {
            self.opened += 1;
        }
        if t.facts.resolutions.iter().any(|at| window.contains(*at)) {
            self.resolved += 1;
            if let Some(first) = t.facts.resolutions.iter().min() {
                self.durations_ms.push((first - t.opened_ms).max(0));
            }
        }
        if !t.facts.done_at_until {
            self.open += 1;
        }
    }

    fn median_secs(&mut self) -> Option<f64> {
        median(&mut self.durations_ms).map(|ms| ms / 1000.0)
    }
}

/// Counts tickets for the window: in all and by category.
pub fn tally_tickets(tickets: &[TicketRow], window: &Window) -> TicketFigures {
    let mut all = Tally::default();
    let mut by: HashMap<Option<String>, Tally> = HashMap::new();
    for t in tickets {
        all.add(t, window);
        by.entry(t.category.clone()).or_default().add(t, window);
    }
    let mut by_category = Vec::new();
    for key in category_keys(by.keys()) {
        let mut t = by.remove(&key).unwrap_or_default();
        if key.is_none() && t.opened + t.resolved + t.open == 0 {
            continue;
        }
        by_category.push(TicketCategory {
            category: key,
            opened: t.opened,
            resolved: t.resolved,
            open: t.open,
            median_resolve_secs: t.median_secs(),
        });
    }
    TicketFigures {
        opened: all.opened,
        resolved: all.resolved,
        open: all.open,
        median_resolve_secs: all.median_secs(),
        by_category,
    }
}

/// The per-grid figures: households from `households`, visits from `visits_by_grid`,
/// tickets from `tickets`. A grid is listed when any of its figures is not zero, or it has
/// households.
pub fn grid_figures(
    households: &[HouseholdRow],
    visits_by_grid: &[GridCount],
    tickets: &[TicketRow],
    window: &Window,
) -> Vec<GridFigures> {
    fn entry<'a>(
        by: &'a mut BTreeMap<Option<String>, GridFigures>,
        grid: &Option<String>,
    ) -> &'a mut GridFigures {
        by.entry(grid.clone()).or_insert_with(|| GridFigures {
            grid: grid.clone(),
            ..GridFigures::default()
        })
    }
    let mut by: BTreeMap<Option<String>, GridFigures> = BTreeMap::new();
    for h in households {
        let g = entry(&mut by, &h.grid);
        g.households += 1;
        g.covered += u64::from(h.covered);
    }
    for v in visits_by_grid {
        entry(&mut by, &v.grid).visits += v.count;
    }
    let until = window.until.millis();
    for t in tickets {
        if t.opened_ms >= until {
            continue;
        }
        let opened = window.contains(t.opened_ms);
        let first = t.resolved_in(window).next();
        let rated = t.rated_ms.is_some_and(|at| window.contains(at));
        let overdue = t.overdue_at_end(window);
        if !(opened || first.is_some() || rated || overdue) {
            continue;
        }
        let on_time = first.is_some_and(|r| t.on_time(r));
        let g = entry(&mut by, &t.grid);
        g.tickets_opened += u64::from(opened);
        g.tickets_resolved += u64::from(first.is_some());
        g.resolved_on_time += u64::from(on_time);
        g.rated += u64::from(rated);
        g.satisfied += u64::from(rated && t.satisfied);
        g.overdue_tickets += u64::from(overdue);
    }
    // BTreeMap puts None first; the contract lists it last.
    let mut out: Vec<GridFigures> = by.into_values().collect();
    let none_first = out.first().is_some_and(|g| g.grid.is_none());
    out.rotate_left(usize::from(none_first));
    out
}

/// The per-volunteer figures: every device in `roster` (device id, name), then any other
/// device with visits (`visits_by_device`) or resolutions in the window; most visits
/// first, then most tickets resolved, then by name.
pub fn volunteer_figures(
    roster: &[(String, String)],
    names: &HashMap<String, String>,
    visits_by_device: &[VolunteerCount],
    tickets: &[TicketRow],
    window: &Window,
) -> Vec<VolunteerFigures> {
    let mut by: BTreeMap<String, VolunteerFigures> = BTreeMap::new();
    let entry = |by: &mut BTreeMap<String, VolunteerFigures>, device: &str| {
        by.entry(device.to_string())
            .or_insert_with(|| VolunteerFigures {
                device_id: device.to_string(),
                name: names.get(device).cloned(),
                ..VolunteerFigures::default()
            });
    };
    for (device, _) in roster {
        entry(&mut by, device);
    }
    for v in visits_by_device {
        entry(&mut by, &v.device_id);
        if let Some(f) = by.get_mut(&v.device_id) {
            f.visits += v.count;
        }
    }
    for t in tickets {
        let mut seen: Vec<&str> = Vec::new();
        for r in t.resolved_in(window) {
            if seen.contains(&r.device_id.as_str()) {
                continue; // a device's first resolution in the window is the one judged
            }
            seen.push(&r.device_id);
            entry(&mut by, &r.device_id);
            if let Some(v) = by.get_mut(&r.device_id) {
                v.tickets_resolved += 1;
                v.resolved_on_time += u64::from(t.on_time(r));
            }
        }
    }
    let mut out: Vec<VolunteerFigures> = by.into_values().collect();
    out.sort_by(|a, b| {
        b.visits
            .cmp(&a.visits)
            .then(b.tickets_resolved.cmp(&a.tickets_resolved))
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.device_id.cmp(&b.device_id))
    });
    out
}

/// Tickets opened in the window by channel: every channel (zeros included), then any
/// other slug found.
pub fn tickets_by_channel(tickets: &[TicketRow], window: &Window) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = Channel::ALL
        .iter()
        .map(|c| (c.as_str().to_string(), 0))
        .collect();
    for t in tickets {
        if let Some(ch) = &t.channel
            && window.contains(t.opened_ms)
        {
            *out.entry(ch.clone()).or_default() += 1;
        }
    }
    out
}

/// The seven categories in the station's order, then any other slug found (sorted), then
/// null.
fn category_keys<'a>(found: impl Iterator<Item = &'a Option<String>>) -> Vec<Option<String>> {
    let mut keys: Vec<Option<String>> = Category::ALL
        .iter()
        .map(|c| Some(c.slug().to_string()))
        .collect();
    let mut others: Vec<Option<String>> = found
        .filter(|k| k.is_some() && !keys.contains(k))
        .cloned()
        .collect();
    others.sort();
    keys.extend(others);
    keys.push(None);
    keys
}

fn damaged(id: DocId) -> impl FnOnce(WriteError) -> ReadError {
    move |e| match e {
        WriteError::Damaged(id, why) => ReadError::Damaged(id, why),
        WriteError::Sqlite(e) => ReadError::Sqlite(e),
        other => ReadError::Damaged(id, other.to_string()),
    }
}

impl Node {
    /// The report for `window`, made at `now`.
    pub fn report(&self, window: &Window, now: Time) -> Result<Report, ReportError> {
        if let Some(since) = window.since
            && since.millis() >= window.until.millis()
        {
            return Err(ReportError::EmptyWindow {
                since: since.to_rfc3339(),
                until: window.until.to_rfc3339(),
            });
        }
        let ident = self.identity();
        let visits = self.visit_figures(window)?;
        let tickets = self.ticket_rows(window)?;
        let households = self.household_rows(window)?;
        let names = self.member_names()?;
        let roster = self.volunteer_roster()?;
        let grids = grid_figures(&households, &visits.by_grid, &tickets, window);
        let volunteers = volunteer_figures(&roster, &names, &visits.by_volunteer, &tickets, window);
        let overdue_households = households
            .into_iter()
            .filter(|h| h.overdue)
            .map(|h| h.id)
            .collect();
        let overdue_tickets = tickets
            .iter()
            .filter(|t| t.opened_ms < window.until.millis() && t.overdue_at_end(window))
            .map(|t| t.id.clone())
            .collect();
        Ok(Report {
            generated_at: now.to_rfc3339(),
            since: window.since.map(Time::to_rfc3339),
            until: window.until.to_rfc3339(),
            node: ReportNode {
                device_id: ident.device_id.to_string(),
                name: ident.name.clone(),
                role: ident.role.as_str().to_string(),
            },
            whole_site: ident.role == Role::Station,
            tickets_by_channel: tickets_by_channel(&tickets, window),
            tickets: tally_tickets(&tickets, window),
            visits,
            stale_after_days: STALE_AFTER_DAYS,
            volunteers_not_synced: self.stale_volunteers(window, now)?,
            grids,
            volunteers,
            overdue_households,
            overdue_tickets,
            revoked_devices: self.revoked_devices(window, &names)?,
            held_in_quarantine: self.held_count()?,
            notices: self.notice_figures(window.since.map(Time::millis), window.until.millis())?,
        })
    }

    /// Devices revoked before the window's end, oldest first.
    fn revoked_devices(
        &self,
        window: &Window,
        names: &HashMap<String, String>,
    ) -> rusqlite::Result<Vec<RevokedDevice>> {
        let conn = self.store().conn();
        let mut stmt = conn.prepare(
            "SELECT lower(hex(device)), revoked_at, reason FROM revocations
             WHERE revoked_at < ?1 ORDER BY revoked_at, device",
        )?;
        stmt.query_map([window.until.millis()], |r| {
            let device: String = r.get(0)?;
            Ok(RevokedDevice {
                name: names.get(&device).cloned(),
                device_id: device,
                revoked_at: Time::from_millis(r.get(1)?).to_rfc3339(),
                reason: r.get(2)?,
            })
        })?
        .collect()
    }

    /// How many changes wait in quarantine.
    fn held_count(&self) -> rusqlite::Result<u64> {
        self.store()
            .conn()
            .query_row("SELECT COUNT(*) FROM quarantine", [], |r| r.get(0))
    }

    /// Visit counts, from the index: one grouped query per breakdown.
    fn visit_figures(&self, window: &Window) -> Result<VisitFigures, ReportError> {
        let conn = self.store().conn();
        let since = window.since.map_or(i64::MIN, |t| t.millis());
        let until = window.until.millis();
        let grouped = |column: &str| -> rusqlite::Result<Vec<(Option<String>, u64)>> {
            let sql = format!(
                "SELECT {column}, COUNT(*) FROM records
                 WHERE kind = 1 AND at_ms >= ?1 AND at_ms < ?2 GROUP BY {column}"
            );
            let mut stmt = conn.prepare(&sql)?;
            stmt.query_map([since, until], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        };
        let by_most = |a: &(Option<String>, u64), b: &(Option<String>, u64)| {
            b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0))
        };

        let mut grids = grouped("grid")?;
        grids.sort_by(by_most);
        let total = grids.iter().map(|(_, n)| n).sum();

        let categories: BTreeMap<Option<String>, u64> = grouped("category")?.into_iter().collect();
        let by_category = category_keys(categories.keys())
            .into_iter()
            .filter_map(|key| {
                let count = categories.get(&key).copied().unwrap_or(0);
                (key.is_some() || count > 0).then_some(CategoryCount {
                    category: key,
                    count,
                })
            })
            .collect();

        let names = self.member_names()?;
        let mut authors = grouped("author")?;
        authors.sort_by(by_most);
        let by_volunteer = authors
            .into_iter()
            .map(|(device, count)| {
                let device = device.unwrap_or_default();
                VolunteerCount {
                    name: names.get(&device).cloned(),
                    device_id: device,
                    count,
                }
            })
            .collect();

        Ok(VisitFigures {
            total,
            by_grid: grids
                .into_iter()
                .map(|(grid, count)| GridCount { grid, count })
                .collect(),
            by_category,
            by_volunteer,
        })
    }

    /// Device id (hex) → name, for every member in the roster.
    fn member_names(&self) -> rusqlite::Result<HashMap<String, String>> {
        let conn = self.store().conn();
        let mut stmt = conn.prepare("SELECT lower(hex(device)), name FROM members")?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    }

    /// Volunteers in the roster, not revoked: (device id, name).
    fn volunteer_roster(&self) -> rusqlite::Result<Vec<(String, String)>> {
        let conn = self.store().conn();
        let mut stmt = conn.prepare(
            "SELECT lower(hex(device)), name FROM members
             WHERE role = 'volunteer' AND device NOT IN (SELECT device FROM revocations)",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    }

    /// Every household there at the window's end (added before it, or with no added time,
    /// or visited before it), judged as of the end, in one pass over the index. Its latest visit before the end is the
    /// index's `last_ms` when that is earlier; otherwise (a past window) the latest of its
    /// visits before the end, found through `records_by_household`. The CTE is
    /// materialised so that look-up runs once a household, not once a use of `last`.
    fn household_rows(&self, window: &Window) -> Result<Vec<HouseholdRow>, ReportError> {
        let conn = self.store().conn();
        let mut stmt = conn.prepare(
            "WITH h AS MATERIALIZED (
                 SELECT lower(hex(doc_id)) AS id, grid, at_ms,
                        COALESCE(every_days, 182) * 86400000 AS every_ms,
                        CASE WHEN last_ms IS NULL OR last_ms < ?1 THEN last_ms
                             ELSE (SELECT v.at_ms FROM records v
                                   WHERE v.household = lower(hex(records.doc_id))
                                     AND v.at_ms < ?1 AND v.kind = 1
                                   ORDER BY v.at_ms DESC LIMIT 1)
                        END AS last
                 FROM records WHERE kind = 3)
             SELECT id, grid,
                    last IS NOT NULL AND last + every_ms >= ?1,
                    COALESCE(last, NULLIF(at_ms, 0)) IS NULL
                        OR COALESCE(last, at_ms) + every_ms < ?1
             FROM h WHERE at_ms < ?1 OR last IS NOT NULL ORDER BY grid, id",
        )?;
        let rows = stmt.query_map([window.until.millis()], |r| {
            Ok(HouseholdRow {
                id: r.get(0)?,
                grid: r.get(1)?,
                covered: r.get(2)?,
                overdue: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Every ticket opened before the window's end, with the facts of its history.
    fn ticket_rows(&self, window: &Window) -> Result<Vec<TicketRow>, ReportError> {
        let conn = self.store().conn();
        let mut stmt = conn.prepare(
            "SELECT lower(hex(doc_id)), category, at_ms, grid, due_ms,
                    json_extract(summary, '$.channel'), json_extract(summary, '$.rated_at'),
                    json_extract(summary, '$.satisfaction')
             FROM records WHERE kind = 2 AND at_ms < ?1 ORDER BY at_ms",
        )?;
        let rows = stmt
            .query_map([window.until.millis()], |r| {
                let rated: Option<String> = r.get(6)?;
                let verdict: Option<String> = r.get(7)?;
                Ok(TicketRow {
                    id: r.get(0)?,
                    category: r.get(1)?,
                    opened_ms: r.get(2)?,
                    grid: r.get(3)?,
                    due_ms: r.get(4)?,
                    channel: r.get(5)?,
                    rated_ms: rated.and_then(|s| s.parse::<Time>().ok()).map(Time::millis),
                    satisfied: matches!(
                        verdict
                            .as_deref()
                            .and_then(|v| v.parse::<Satisfaction>().ok()),
                        Some(Satisfaction::Satisfied | Satisfaction::Basic)
                    ),
                    facts: TicketFacts::default(),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for mut row in rows {
            let id: DocId = row
                .id
                .parse()
                .map_err(|_| ReadError::Index(format!("malformed record id {}", row.id)))?;
            let mut doc = load_doc(conn, id).map_err(damaged(id))?;
            row.facts = ticket_facts(&mut doc, window.until.millis());
            out.push(row);
        }
        Ok(out)
    }

    /// Volunteers (role volunteer, not revoked) whose last sync with this node is older
    /// than [`STALE_AFTER_DAYS`] before the window's end, or who never synced; the longest
    /// silent first. A window that ends in the future is measured to `now`: no one has
    /// been silent through days that have not come yet.
    fn stale_volunteers(
        &self,
        window: &Window,
        now: Time,
    ) -> Result<Vec<StaleVolunteer>, ReportError> {
        let conn = self.store().conn();
        let until = window.until.millis().min(now.millis());
        let mut stmt = conn.prepare(
            "SELECT lower(hex(m.device)), m.name, m.grids, p.last_sync
             FROM members m LEFT JOIN peers p ON p.device = m.device
             WHERE m.role = 'volunteer'
               AND m.device NOT IN (SELECT device FROM revocations)
               AND (p.last_sync IS NULL OR p.last_sync < ?1)
             ORDER BY p.last_sync IS NOT NULL, p.last_sync, m.name",
        )?;
        let rows = stmt.query_map([until - STALE_AFTER_DAYS * DAY_MS], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (device_id, name, grids, last) = row?;
            out.push(StaleVolunteer {
                device_id,
                name,
                grids: serde_json::from_str(&grids).unwrap_or_default(),
                last_sync: last.map(|ms| Time::from_millis(ms).to_rfc3339()),
                days_since_sync: last.map(|ms| (until - ms).div_euclid(DAY_MS)),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::home::{InitConfig, InitSeed};
    use crate::model::Status;
    use crate::records::{
        NewTicket, NewVisit, TicketUpdate, write_new_ticket, write_ticket_update,
    };
    use automerge::transaction::CommitOptions;
    use yizhan_protocol::{DeviceKey, DocHeader, RecordKind};

    const H: i64 = 60 * 60 * 1000;

    fn t(s: &str) -> Time {
        s.parse().unwrap()
    }

    fn ms(s: &str) -> i64 {
        t(s).millis()
    }

    /// A ticket document: opened at `opened`, then each (time, status) in turn.
    fn ticket_doc(opened: &str, steps: &[(&str, Status)]) -> AutoCommit {
        let key = DeviceKey::from_seed([7; 32]);
        let header = DocHeader {
            kind: RecordKind::Ticket,
            author: key.device_id(),
            nonce: [1; 16],
        };
        let mut doc = AutoCommit::new();
        doc.set_actor(automerge::ActorId::from(
            key.device_id().as_bytes().to_vec(),
        ));
        let new = NewTicket {
            title: "修水管".into(),
            ..NewTicket::default()
        };
        write_new_ticket(&mut doc, header.doc_id(), &new, t(opened)).unwrap();
        doc.commit_with(CommitOptions::default().with_time(ms(opened)));
        for (at, status) in steps {
            let u = TicketUpdate {
                status: Some(*status),
                ..TicketUpdate::default()
            };
            write_ticket_update(&mut doc, &u, Time::from_millis(ms(at))).unwrap();
            doc.commit_with(CommitOptions::default().with_time(ms(at)));
        }
        doc
    }

    #[test]
    fn resolutions_come_from_the_history() {
        let mut doc = ticket_doc(
            "2026-03-01T08:00:00Z",
            &[
                ("2026-03-01T10:00:00Z", Status::InProgress),
                ("2026-03-02T08:00:00Z", Status::Resolved),
                // resolved → closed is not a second resolution
                ("2026-03-03T08:00:00Z", Status::Closed),
                ("2026-03-04T08:00:00Z", Status::Open),
                ("2026-03-05T08:00:00Z", Status::Resolved),
            ],
        );
        let facts = ticket_facts(&mut doc, ms("2026-03-04T12:00:00Z"));
        assert_eq!(
            facts.resolutions,
            vec![ms("2026-03-02T08:00:00Z"), ms("2026-03-05T08:00:00Z")]
        );
        assert!(!facts.done_at_until, "reopened on the 4th");
        // Each resolution's signer, and its `resolved_at` (the update wrote its own time).
        let signer = DeviceKey::from_seed([7; 32]).device_id().to_string();
        assert_eq!(
            facts.resolvers,
            vec![
                Resolver {
                    device_id: signer.clone(),
                    resolved_ms: ms("2026-03-02T08:00:00Z")
                },
                Resolver {
                    device_id: signer,
                    resolved_ms: ms("2026-03-05T08:00:00Z")
                },
            ]
        );
        assert!(ticket_facts(&mut doc, ms("2026-03-03T00:00:00Z")).done_at_until);
        assert!(!ticket_facts(&mut doc, ms("2026-03-02T07:59:59Z")).done_at_until);
        assert!(ticket_facts(&mut doc, ms("2026-04-01T00:00:00Z")).done_at_until);
        // Before its first change, a ticket is judged by that change: open.
        assert!(!ticket_facts(&mut doc, ms("2026-01-01T00:00:00Z")).done_at_until);
    }

    #[test]
    fn a_ticket_opened_resolved_counts_as_resolved_by_its_first_change() {
        let key = DeviceKey::from_seed([9; 32]);
        let header = DocHeader {
            kind: RecordKind::Ticket,
            author: key.device_id(),
            nonce: [2; 16],
        };
        let mut doc = AutoCommit::new();
        let new = NewTicket {
            title: "已办结".into(),
            status: Some(Status::Closed),
            ..NewTicket::default()
        };
        write_new_ticket(&mut doc, header.doc_id(), &new, t("2026-02-01T00:00:00Z")).unwrap();
        doc.commit_with(CommitOptions::default().with_time(ms("2026-03-10T00:00:00Z")));
        let facts = ticket_facts(&mut doc, ms("2026-01-01T00:00:00Z"));
        assert_eq!(facts.resolutions, vec![ms("2026-03-10T00:00:00Z")]);
        assert!(facts.done_at_until);
    }

    #[test]
    fn concurrent_resolutions_are_each_judged_on_their_branch() {
        let mut a = ticket_doc("2026-03-01T08:00:00Z", &[]);
        let mut b = a.fork();
        b.set_actor(automerge::ActorId::from(vec![2u8; 32]));
        for (doc, at) in [
            (&mut a, "2026-03-02T08:00:00Z"),
            (&mut b, "2026-03-03T08:00:00Z"),
        ] {
            let u = TicketUpdate {
                status: Some(Status::Resolved),
                ..TicketUpdate::default()
            };
            write_ticket_update(doc, &u, Time::from_millis(ms(at))).unwrap();
            doc.commit_with(CommitOptions::default().with_time(ms(at)));
        }
        a.merge(&mut b).unwrap();
        let facts = ticket_facts(&mut a, ms("2026-04-01T00:00:00Z"));
        let mut r = facts.resolutions.clone();
        r.sort();
        assert_eq!(
            r,
            vec![ms("2026-03-02T08:00:00Z"), ms("2026-03-03T08:00:00Z")]
        );
        assert!(facts.done_at_until);
    }

    #[test]
    fn a_resolution_carries_the_resolved_at_it_wrote() {
        // Imported resolved: `resolved_at` says when, the change is made later.
        let key = DeviceKey::from_seed([9; 32]);
        let header = DocHeader {
            kind: RecordKind::Ticket,
            author: key.device_id(),
            nonce: [3; 16],
        };
        let mut doc = AutoCommit::new();
        doc.set_actor(automerge::ActorId::from(
            key.device_id().as_bytes().to_vec(),
        ));
        let new = NewTicket {
            title: "已办结".into(),
            status: Some(Status::Resolved),
            resolved_at: Some(t("2026-02-03T00:00:00Z")),
            ..NewTicket::default()
        };
        write_new_ticket(&mut doc, header.doc_id(), &new, t("2026-02-01T00:00:00Z")).unwrap();
        doc.commit_with(CommitOptions::default().with_time(ms("2026-03-10T00:00:00Z")));
        let facts = ticket_facts(&mut doc, ms("2026-04-01T00:00:00Z"));
        assert_eq!(facts.resolutions, vec![ms("2026-03-10T00:00:00Z")]);
        assert_eq!(
            facts.resolvers,
            vec![Resolver {
                device_id: key.device_id().to_string(),
                resolved_ms: ms("2026-02-03T00:00:00Z"),
            }]
        );
    }

    /// A ticket row for the per-grid and per-volunteer rules.
    fn ticket(
        grid: Option<&str>,
        opened: &str,
        due: Option<&str>,
        resolved: &[(&str, &str)],
        done: bool,
    ) -> TicketRow {
        TicketRow {
            id: format!("{:032x}", ms(opened)),
            grid: grid.map(String::from),
            opened_ms: ms(opened),
            due_ms: due.map(ms),
            facts: TicketFacts {
                resolutions: resolved.iter().map(|(_, at)| ms(at)).collect(),
                resolvers: resolved
                    .iter()
                    .map(|(by, at)| Resolver {
                        device_id: (*by).into(),
                        resolved_ms: ms(at),
                    })
                    .collect(),
                done_at_until: done,
            },
            ..TicketRow::default()
        }
    }

    #[test]
    fn grids_and_volunteers_count_each_figure_by_its_rule() {
        let window = Window {
            since: Some(t("2026-03-01T00:00:00Z")),
            until: t("2026-04-01T00:00:00Z"),
        };
        let g1 = Some("一网格");
        let mut tickets = vec![
            // resolved exactly at its deadline: on time
            ticket(
                g1,
                "2026-03-02T00:00:00Z",
                Some("2026-03-05T00:00:00Z"),
                &[("aa", "2026-03-05T00:00:00Z")],
                true,
            ),
            // resolved a second late, then again by another device: the grid counts it
            // once (late, by its first resolution in the window); each device once
            ticket(
                g1,
                "2026-03-02T00:00:00Z",
                Some("2026-03-05T00:00:00Z"),
                &[
                    ("aa", "2026-03-05T00:00:01Z"),
                    ("aa", "2026-03-06T00:00:00Z"),
                    ("bb", "2026-03-04T00:00:00Z"),
                ],
                true,
            ),
            // no deadline: resolved, never on time
            ticket(
                g1,
                "2026-03-03T00:00:00Z",
                None,
                &[("bb", "2026-03-04T00:00:00Z")],
                true,
            ),
            // open at the end, due exactly at the end: not overdue
            ticket(
                g1,
                "2026-03-10T00:00:00Z",
                Some("2026-04-01T00:00:00Z"),
                &[],
                false,
            ),
            // open at the end, opened before the window, due inside it: overdue
            ticket(
                None,
                "2026-02-10T00:00:00Z",
                Some("2026-03-01T00:00:00Z"),
                &[],
                false,
            ),
            // opened after the end: in nothing
            ticket(
                g1,
                "2026-04-02T00:00:00Z",
                Some("2026-04-01T00:00:00Z"),
                &[],
                false,
            ),
        ];
        tickets[0].rated_ms = Some(ms("2026-03-06T00:00:00Z"));
        tickets[0].satisfied = true;
        tickets[1].rated_ms = Some(ms("2026-03-07T00:00:00Z"));
        // rated before the window: not counted
        tickets[2].rated_ms = Some(ms("2026-02-28T23:59:59Z"));
        tickets[2].satisfied = true;
        let households = [
            HouseholdRow {
                id: "h1".into(),
                grid: g1.map(String::from),
                covered: true,
                overdue: false,
            },
            HouseholdRow {
                id: "h2".into(),
                grid: g1.map(String::from),
                covered: false,
                overdue: true,
            },
        ];
        let visits = [GridCount {
            grid: Some("二网格".into()),
            count: 4,
        }];
        let grids = grid_figures(&households, &visits, &tickets, &window);
        assert_eq!(
            grids,
            vec![
                GridFigures {
                    grid: Some("一网格".into()),
                    households: 2,
                    covered: 1,
                    visits: 0,
                    tickets_opened: 4,
                    tickets_resolved: 3,
                    resolved_on_time: 1,
                    rated: 2,
                    satisfied: 1,
                    overdue_tickets: 0,
                },
                GridFigures {
                    grid: Some("二网格".into()),
                    visits: 4,
                    ..GridFigures::default()
                },
                GridFigures {
                    grid: None,
                    overdue_tickets: 1,
                    ..GridFigures::default()
                },
            ]
        );

        let roster = [("cc".to_string(), "王姐".to_string())];
        let names = HashMap::from([
            ("aa".to_string(), "张阿姨".to_string()),
            ("cc".to_string(), "王姐".to_string()),
        ]);
        let by_device = [VolunteerCount {
            device_id: "aa".into(),
            name: Some("张阿姨".into()),
            count: 3,
        }];
        let volunteers = volunteer_figures(&roster, &names, &by_device, &tickets, &window);
        assert_eq!(
            volunteers,
            vec![
                VolunteerFigures {
                    device_id: "aa".into(),
                    name: Some("张阿姨".into()),
                    visits: 3,
                    tickets_resolved: 2,
                    resolved_on_time: 1,
                },
                // "bb" resolved the second ticket before its deadline, the third without one
                VolunteerFigures {
                    device_id: "bb".into(),
                    name: None,
                    visits: 0,
                    tickets_resolved: 2,
                    resolved_on_time: 1,
                },
                VolunteerFigures {
                    device_id: "cc".into(),
                    name: Some("王姐".into()),
                    ..VolunteerFigures::default()
                },
            ]
        );

        tickets[3].channel = Some("hotline".into());
        tickets[4].channel = Some("hotline".into()); // opened before the window
        tickets[0].channel = Some("fax".into());
        let channels = tickets_by_channel(&tickets, &window);
        assert_eq!(channels["hotline"], 1);
        assert_eq!(channels["fax"], 1);
        assert_eq!(channels["patrol"], 0);
        assert_eq!(channels.len(), 6);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [5]), Some(5.0));
        assert_eq!(median(&mut [9, 1, 5]), Some(5.0));
        assert_eq!(median(&mut [4, 1, 3, 10]), Some(3.5));
    }

    fn row(category: Option<&str>, opened: &str, resolutions: &[&str], done: bool) -> TicketRow {
        TicketRow {
            category: category.map(String::from),
            opened_ms: ms(opened),
            facts: TicketFacts {
                resolutions: resolutions.iter().map(|s| ms(s)).collect(),
                resolvers: resolutions
                    .iter()
                    .map(|s| Resolver {
                        device_id: "aa".into(),
                        resolved_ms: ms(s),
                    })
                    .collect(),
                done_at_until: done,
            },
            ..TicketRow::default()
        }
    }

    #[test]
    fn the_tally_counts_each_figure_by_its_rule() {
        let window = Window {
            since: Some(t("2026-03-01T00:00:00Z")),
            until: t("2026-04-01T00:00:00Z"),
        };
        let tickets = [
            // opened and resolved in the window: 2 h
            row(
                Some("poverty-relief"),
                "2026-03-02T00:00:00Z",
                &["2026-03-02T02:00:00Z"],
                true,
            ),
            // opened before, resolved in the window: 10 days after opening
            row(
                Some("poverty-relief"),
                "2026-02-25T00:00:00Z",
                &["2026-03-07T00:00:00Z"],
                true,
            ),
            // opened in the window, still open
            row(Some("information"), "2026-03-10T00:00:00Z", &[], false),
            // opened and resolved before the window: in no figure
            row(
                Some("information"),
                "2026-01-10T00:00:00Z",
                &["2026-01-11T00:00:00Z"],
                true,
            ),
            // resolved before the window, reopened, resolved again in the window: the
            // median takes its first resolution (6 h)
            row(
                None,
                "2026-02-01T00:00:00Z",
                &["2026-02-01T06:00:00Z", "2026-03-20T00:00:00Z"],
                true,
            ),
            // opened after the window: in no figure
            row(Some("information"), "2026-04-02T00:00:00Z", &[], false),
            // resolved exactly at until: not in the window, and open as of until
            row(
                Some("co-governance"),
                "2026-03-31T00:00:00Z",
                &["2026-04-01T00:00:00Z"],
                false,
            ),
        ];
        let f = tally_tickets(&tickets, &window);
        assert_eq!((f.opened, f.resolved, f.open), (3, 3, 2));
        // durations: 2 h, 240 h, 6 h → median 6 h
        assert_eq!(f.median_resolve_secs, Some((6 * H / 1000) as f64));
        let by: HashMap<_, _> = f
            .by_category
            .iter()
            .map(|c| (c.category.clone(), c))
            .collect();
        assert_eq!(f.by_category.len(), 8, "seven categories and null");
        let pr = by[&Some("poverty-relief".to_string())];
        assert_eq!((pr.opened, pr.resolved, pr.open), (1, 2, 0));
        assert_eq!(
            pr.median_resolve_secs,
            Some(((2 * H + 240 * H) / 2 / 1000) as f64)
        );
        let info = by[&Some("information".to_string())];
        assert_eq!((info.opened, info.resolved, info.open), (1, 0, 1));
        assert_eq!(info.median_resolve_secs, None);
        let cg = by[&Some("co-governance".to_string())];
        assert_eq!((cg.opened, cg.resolved, cg.open), (1, 0, 1));
        let none = by[&None];
        assert_eq!((none.opened, none.resolved, none.open), (0, 1, 0));
        let rs = by[&Some("resident-services".to_string())];
        assert_eq!((rs.opened, rs.resolved, rs.open), (0, 0, 0));
    }

    fn station(dir: &std::path::Path) -> Node {
        Node::init(
            dir,
            &InitConfig {
                name: "幸福驿站".into(),
                station: true,
                encrypt: None,
            },
            InitSeed::random(),
        )
        .unwrap()
    }

    #[test]
    fn visits_are_counted_from_the_index_within_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = station(dir.path());
        let visit = |grid: &str, category: Option<Category>, at: &str| NewVisit {
            household: "和平里 3-2-101".into(),
            grid: Some(grid.into()),
            category,
            visited_at: Some(t(at)),
            ..NewVisit::default()
        };
        node.add_visits(&[
            visit(
                "一网格",
                Some(Category::PovertyRelief),
                "2026-03-01T00:00:00Z",
            ),
            visit(
                "一网格",
                Some(Category::PovertyRelief),
                "2026-03-05T00:00:00Z",
            ),
            visit("二网格", None, "2026-03-31T23:59:59Z"),
            visit(
                "二网格",
                Some(Category::Information),
                "2026-04-01T00:00:00Z",
            ),
            visit(
                "三网格",
                Some(Category::Information),
                "2026-02-28T23:59:59Z",
            ),
        ])
        .unwrap();
        let window = Window {
            since: Some(t("2026-03-01T00:00:00Z")),
            until: t("2026-04-01T00:00:00Z"),
        };
        let r = node.report(&window, t("2026-04-02T00:00:00Z")).unwrap();
        assert!(r.whole_site);
        assert_eq!(r.visits.total, 3);
        assert_eq!(
            r.visits.by_grid,
            vec![
                GridCount {
                    grid: Some("一网格".into()),
                    count: 2
                },
                GridCount {
                    grid: Some("二网格".into()),
                    count: 1
                },
            ]
        );
        let cats: Vec<_> = r
            .visits
            .by_category
            .iter()
            .map(|c| (c.category.as_deref(), c.count))
            .collect();
        assert_eq!(cats.len(), 8);
        assert!(cats.contains(&(Some("poverty-relief"), 2)));
        assert!(cats.contains(&(Some("information"), 0)));
        assert_eq!(cats[7], (None, 1));
        assert_eq!(r.visits.by_volunteer.len(), 1);
        assert_eq!(r.visits.by_volunteer[0].name.as_deref(), Some("幸福驿站"));
        assert_eq!(r.visits.by_volunteer[0].count, 3);
        assert_eq!(r.tickets.opened, 0);
        assert!(r.volunteers_not_synced.is_empty());

        let empty = Window {
            since: Some(t("2026-04-01T00:00:00Z")),
            until: t("2026-04-01T00:00:00Z"),
        };
        assert!(matches!(
            node.report(&empty, Time::now()),
            Err(ReportError::EmptyWindow { .. })
        ));
    }
    #[test]
    fn volunteers_not_synced_for_a_week_before_until() {
        use crate::members::EnrollRequest;
        use yizhan_protocol::MemberRole;
        let dir = tempfile::tempdir().unwrap();
        let mut node = station(dir.path());
        let mut enroll = |seed: u8, name: &str, role: MemberRole| {
            let device = DeviceKey::from_seed([seed; 32]).device_id();
            node.enroll(&EnrollRequest {
                device,
                name: name.into(),
                grids: vec!["一网格".into()],
                role,
                expires_days: None,
            })
            .unwrap();
            device
        };
        let fresh = enroll(1, "张阿姨", MemberRole::Volunteer);
        let stale = enroll(2, "李叔", MemberRole::Volunteer);
        let never = enroll(3, "王姐", MemberRole::Volunteer);
        let revoked = enroll(4, "赵哥", MemberRole::Volunteer);
        let other_station = enroll(5, "分站", MemberRole::Station);
        node.revoke(revoked, "left").unwrap();
        let until = t("2026-03-31T00:00:00Z");
        let conn = node.store().conn();
        for (device, last) in [
            (fresh, "2026-03-24T00:00:00Z"), // exactly 7 days: not stale
            (stale, "2026-03-23T23:59:59Z"),
            (revoked, "2026-01-01T00:00:00Z"),
            (other_station, "2026-01-01T00:00:00Z"),
        ] {
            conn.execute(
                "INSERT INTO peers(device, last_sync) VALUES (?1, ?2)",
                rusqlite::params![device.as_bytes().as_slice(), ms(last)],
            )
            .unwrap();
        }
        let r = node.report(&Window { since: None, until }, until).unwrap();
        let got: Vec<_> = r
            .volunteers_not_synced
            .iter()
            .map(|v| (v.name.as_str(), v.last_sync.as_deref(), v.days_since_sync))
            .collect();
        assert_eq!(
            got,
            vec![
                ("王姐", None, None),
                ("李叔", Some("2026-03-23T23:59:59Z"), Some(7)),
            ]
        );
        assert_eq!(r.volunteers_not_synced[0].device_id, never.to_string());
        assert_eq!(r.volunteers_not_synced[1].device_id, stale.to_string());
        assert_eq!(r.volunteers_not_synced[1].grids, vec!["一网格".to_string()]);

        // A period that ends in the future is measured to now: made on 2026-03-31, a
        // report to the end of April shows the same silences, with the same days.
        let april = Window {
            since: None,
            until: t("2026-05-01T00:00:00Z"),
        };
        let ahead = node.report(&april, until).unwrap();
        assert_eq!(ahead.volunteers_not_synced, r.volunteers_not_synced);
    }

    /// Not run by default: the cost of a month's report at a station of 1,000,000 visits
    /// and 100,000 households (index rows written directly, ten visits a household over a
    /// year, no tickets). Run with `cargo test --release -p yizhan-node --lib -- --ignored
    /// a_month_at_a_large_station --nocapture`; it prints the time for the last month and
    /// for a month in the past, and checks the counts it can know.
    #[test]
    #[ignore]
    fn a_month_at_a_large_station() {
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().unwrap();
        drop(station(dir.path()));
        let year_start = ms("2026-01-01T00:00:00Z");
        let year_ms = 365 * DAY_MS;
        {
            let mut conn =
                rusqlite::Connection::open(dir.path().join(crate::home::STORE_FILE)).unwrap();
            // Index rows only: no document behind them.
            conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
            let tx = conn.transaction().unwrap();
            let mut rng = rand::rngs::StdRng::seed_from_u64(18);
            let mut insert = tx
                .prepare(
                    "INSERT INTO records(docno, doc_id, kind, grid, author, at_ms, summary,
                                         household, due_ms, last_ms, every_days, tags)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, '{}', ?7, ?8, ?9, ?10, ?11)",
                )
                .unwrap();
            let mut docno = 1_000_000i64;
            for h in 0..100_000u32 {
                let mut id = [0u8; 16];
                rng.fill(&mut id);
                let hex = hex::encode(id);
                let grid = format!("网格{}", h % 50);
                let every: i64 = if h % 3 == 0 { 30 } else { 182 };
                let mut last = 0;
                for _ in 0..10 {
                    let at = year_start + rng.random_range(0..year_ms);
                    last = last.max(at);
                    let mut vid = [0u8; 16];
                    rng.fill(&mut vid);
                    docno += 1;
                    insert
                        .execute(rusqlite::params![
                            docno,
                            vid.as_slice(),
                            1,
                            grid,
                            format!("{:064x}", h % 100),
                            at,
                            hex,
                            None::<i64>,
                            None::<i64>,
                            None::<i64>,
                            None::<String>
                        ])
                        .unwrap();
                }
                docno += 1;
                insert
                    .execute(rusqlite::params![
                        docno,
                        id.as_slice(),
                        3,
                        grid,
                        "",
                        year_start - 10 * DAY_MS,
                        None::<String>,
                        last + every * DAY_MS,
                        last,
                        every,
                        "[]"
                    ])
                    .unwrap();
            }
            drop(insert);
            tx.commit().unwrap();
        }
        let node = Node::open(dir.path()).unwrap();
        for (since, until) in [
            ("2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"),
            ("2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z"),
        ] {
            let window = Window {
                since: Some(t(since)),
                until: t(until),
            };
            let started = std::time::Instant::now();
            let r = node.report(&window, t("2027-01-02T00:00:00Z")).unwrap();
            let took = started.elapsed();
            let part = std::time::Instant::now();
            node.visit_figures(&window).unwrap();
            let visits_took = part.elapsed();
            let part = std::time::Instant::now();
            node.household_rows(&window).unwrap();
            let households_took = part.elapsed();
            println!("  visits {visits_took:?}, households {households_took:?}");
            let households: u64 = r.grids.iter().map(|g| g.households).sum();
            let covered: u64 = r.grids.iter().map(|g| g.covered).sum();
            println!(
                "{since}..{until}: {took:?} ({} visits, {households} households, {covered} covered, {} overdue)",
                r.visits.total,
                r.overdue_households.len()
            );
            assert_eq!(households, 100_000);
            assert_eq!(r.grids.len(), 50);
            assert_eq!(
                covered + r.overdue_households.len() as u64,
                households,
                "every household was visited before the month: covered or overdue"
            );
            assert!(r.visits.total > 50_000 && r.visits.total < 120_000);
        }
    }
}

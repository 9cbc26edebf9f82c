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
use crate::model::{Category, Time};
use crate::records::Field;
use crate::store::docs::load_doc;

/// A volunteer counts as not synced when its last sync with this node is older than this
/// many days before the window's end (or when it never synced).
pub const STALE_AFTER_DAYS: i64 = 7;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

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
    /// Whether, as of `until`, the ticket is resolved or closed.
    pub done_at_until: bool,
}

fn is_done(status: Option<&str>) -> bool {
    matches!(status, Some("resolved") | Some("closed"))
}

fn status_at(doc: &AutoCommit, heads: &[ChangeHash]) -> Option<String> {
    if heads.is_empty() {
        return None;
    }
    match doc.get_at(ROOT, Field::Status, heads) {
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
    let metas: Vec<(ChangeHash, i64, Vec<ChangeHash>)> = doc
        .get_changes_meta(&[])
        .into_iter()
        .map(|m| (m.hash, m.timestamp, m.deps))
        .collect();
    let mut facts = TicketFacts::default();
    for (hash, at, deps) in &metas {
        let after = status_at(doc, std::slice::from_ref(hash));
        if is_done(after.as_deref()) && !is_done(status_at(doc, deps).as_deref()) {
            facts.resolutions.push(*at);
        }
    }
    let before: Vec<ChangeHash> = metas
        .iter()
        .filter(|(_, at, _)| *at < until_ms)
        .map(|(h, _, _)| *h)
        .collect();
    let heads = if before.is_empty() {
        metas.first().map(|(h, _, _)| vec![*h]).unwrap_or_default()
    } else {
        before
    };
    facts.done_at_until = is_done(status_at(doc, &heads).as_deref());
    facts
}

/// One ticket as the tally sees it.
#[derive(Clone, Debug)]
pub struct TicketRow {
    /// Its current category slug.
    pub category: Option<String>,
    /// `opened_at`, ms.
    pub opened_ms: i64,
    /// From its history.
    pub facts: TicketFacts,
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
            visits: self.visit_figures(window)?,
            tickets: tally_tickets(&self.ticket_rows(window)?, window),
            stale_after_days: STALE_AFTER_DAYS,
            volunteers_not_synced: self.stale_volunteers(window, now)?,
        })
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

    /// Every ticket opened before the window's end, with the facts of its history.
    fn ticket_rows(&self, window: &Window) -> Result<Vec<TicketRow>, ReportError> {
        let conn = self.store().conn();
        let mut stmt = conn.prepare(
            "SELECT lower(hex(doc_id)), category, at_ms FROM records WHERE kind = 2 AND at_ms < ?1 ORDER BY at_ms",
        )?;
        let rows = stmt
            .query_map([window.until.millis()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, category, opened_ms) in rows {
            let id: DocId = id
                .parse()
                .map_err(|_| ReadError::Index(format!("malformed record id {id}")))?;
            let mut doc = load_doc(conn, id).map_err(damaged(id))?;
            out.push(TicketRow {
                category,
                opened_ms,
                facts: ticket_facts(&mut doc, window.until.millis()),
            });
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
                done_at_until: done,
            },
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
}

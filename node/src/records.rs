//! The record model: how a visit log, a ticket, a household, the station's policy or a
//! notice is laid out in its Automerge document, and how the CLI-facing objects are read
//! back out of it.
//!
//! Root of every record document:
//!
//! | key | type | visit | ticket | household | policy | notice |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | `kind` | str | `"visit"` | `"ticket"` | `"household"` | `"policy"` | `"notice"` |
//! | `id` | str | the record id | the record id | the record id | the record id | the record id |
//! | `grid`, `note` | str | yes | yes | yes | | |
//! | `household`, `household_id`, `category` | str | yes | yes | | | |
//! | `needs`, `visited_at` | str | yes | | | | |
//! | `residents` | list of str | yes | | | | |
//! | `residents` | str, one name a line | | | yes | | |
//! | `tickets` | map ticket id → true | yes | | | | |
//! | `title` | str | | yes | | | yes |
//! | `status`, `priority`, `assignee`, `opened_at` | str | | yes | | | |
//! | `due`, `channel`, `resolved_at`, `satisfaction`, `rated_at` | str | | yes | | | |
//! | `comments` | list of map {author, text, at} | | yes | | | |
//! | `address`, `phone`, `added_at` | str | | | yes | | |
//! | `tag:TAG` | `"true"` / `"false"` | | | yes | | |
//! | `visit_every:TAG`, `ticket_due:PRIORITY` | str, whole days | | | | yes | |
//! | `body`, `published_at`, `until` | str | | | | | yes |
//! | `grids` | str, one grid a line, sorted; empty: the whole site | | | | | yes |
//! | `read:DEVICE` | str, when that device read it (RFC 3339) | | | | | yes |
//!
//! A notice's fields other than its read marks are written only by stations; a read mark
//! only by the device it names, once (`ingest::rules`). So a notice holds at most one
//! small register for each member, whatever its members do.
//!
//! A household's residents and tags are registers, not lists or maps: a household is made
//! by whoever comes first (its id derives from its site, grid and address), and two
//! laptops that make it offline both write its first fields. Registers merge (equal values
//! are one value); two lists made at one key would hide one another.
//!
//! Code names these keys only through [`Field`] (and a comment's through [`CommentField`]),
//! whose `as_str` is the key as stored.
//!
//! A comment is shown as written by the device that made its map (the actor of the map's
//! object id, bound to the signer of the change), not by its `author` field, and ingest
//! refuses any change by another device that writes to it (`rules::record_model`).
//! Scalar fields are registers: two concurrent writes of one field are both kept by
//! Automerge, one wins for display, and both are reported under `conflicts`. The author of a
//! visit and the opener of a ticket are not fields: they are the document header's author,
//! bound into the record id, so no later change can alter them.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use serde::{Deserialize, Serialize};
use yizhan_protocol::{DeviceId, DocHeader, DocId, RecordKind};

use crate::model::{Category, Channel, Priority, Satisfaction, Status, Tag, Time};

mod field;
pub use field::{CommentField, Field};

/// Longest accepted short text field (household, title, grid, names), in bytes.
pub const MAX_SHORT_TEXT: usize = 1024;
/// Longest accepted long text field (note, needs, comment), in bytes.
pub const MAX_LONG_TEXT: usize = 64 * 1024;
/// Most residents one visit may name.
pub const MAX_RESIDENTS: usize = 100;
/// Most tickets one visit may link in one change (`visit add`, `visit edit`, a row of
/// `import`). With it, the largest change a node writes (a new visit: 8 fields, 101
/// operations of residents, 257 of ticket links) stays within the protocol's
/// `MAX_CHANGE_OPS`, which every receiver enforces.
pub const MAX_LINKED_TICKETS: usize = 256;

/// The scalar fields of a visit log, in display order.
pub const VISIT_FIELDS: &[Field] = &[
    Field::Household,
    Field::HouseholdId,
    Field::Grid,
    Field::Category,
    Field::Note,
    Field::Needs,
    Field::VisitedAt,
];
/// The scalar fields of a ticket, in display order.
pub const TICKET_FIELDS: &[Field] = &[
    Field::Title,
    Field::Status,
    Field::Category,
    Field::Priority,
    Field::Household,
    Field::Grid,
    Field::Assignee,
    Field::Note,
    Field::OpenedAt,
    Field::HouseholdId,
    Field::Due,
    Field::Channel,
    Field::ResolvedAt,
    Field::Satisfaction,
    Field::RatedAt,
];
/// The scalar fields of a household, in display order.
pub const HOUSEHOLD_FIELDS: &[Field] = &[
    Field::Address,
    Field::Grid,
    Field::Residents,
    Field::Phone,
    Field::Note,
    Field::AddedAt,
    Field::Tag(Tag::ElderlyAlone),
    Field::Tag(Tag::LowIncome),
    Field::Tag(Tag::Disabled),
    Field::Tag(Tag::Hardship),
    Field::Tag(Tag::LeftBehindChild),
    Field::Tag(Tag::CommunityCorrection),
    Field::Tag(Tag::Ordinary),
];
/// The scalar fields of the policy.
pub const POLICY_FIELDS: &[Field] = &[
    Field::VisitEvery(Tag::ElderlyAlone),
    Field::VisitEvery(Tag::LowIncome),
    Field::VisitEvery(Tag::Disabled),
    Field::VisitEvery(Tag::Hardship),
    Field::VisitEvery(Tag::LeftBehindChild),
    Field::VisitEvery(Tag::CommunityCorrection),
    Field::VisitEvery(Tag::Ordinary),
    Field::TicketDue(Priority::Low),
    Field::TicketDue(Priority::Normal),
    Field::TicketDue(Priority::High),
    Field::TicketDue(Priority::Urgent),
];

/// The scalar fields of a notice (its read marks, `read:DEVICE`, apart), in display order.
pub const NOTICE_FIELDS: &[Field] = &[
    Field::Title,
    Field::Body,
    Field::Grids,
    Field::PublishedAt,
    Field::Until,
];

/// The key prefix of a notice's read marks: `read:` and the 64-hex device id.
pub const READ_MARK_PREFIX: &str = "read:";

/// Longest value a read mark may hold, in bytes: an RFC 3339 time is at most 35.
pub const MAX_READ_MARK: usize = 64;

/// The key of `device`'s read mark on a notice.
pub fn read_mark_key(device: DeviceId) -> String {
    format!("{READ_MARK_PREFIX}{device}")
}

/// The device (64 lowercase hex) whose read mark `key` is, if it is one.
pub fn read_mark_device(key: &str) -> Option<&str> {
    key.strip_prefix(READ_MARK_PREFIX)
        .filter(|d| d.len() == 64 && d.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// A notice as `notice list --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// Record id (32 hex).
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its text.
    pub body: String,
    /// The grids it is for; empty: the whole site.
    pub grids: Vec<String>,
    /// When it was published (RFC 3339).
    pub published_at: String,
    /// When it stops being current (RFC 3339); none: it stays current.
    pub until: Option<String>,
    /// Whether this node's device has read it.
    pub read: bool,
    /// The devices that have read it (64 hex each), in id order.
    pub read_by: Vec<String>,
}

impl Notice {
    /// Whether it is current at `now_ms`: no `until`, or `until` ahead.
    pub fn current(&self, now_ms: i64) -> bool {
        self.until
            .as_deref()
            .is_none_or(|u| u.parse::<Time>().map_or(true, |t| t.millis() > now_ms))
    }
}

/// A new notice, as a station publishes it.
#[derive(Debug, Clone, Default)]
pub struct NewNotice {
    /// Required, not empty.
    pub title: String,
    /// Required, not empty.
    pub body: String,
    /// The grids it is for; none: the whole site.
    pub grids: Vec<String>,
    /// When it stops being current; none: never.
    pub until: Option<Time>,
}

impl NewNotice {
    /// Checks every field; the grids come back sorted, each once.
    pub fn check(&self) -> Result<(), FieldError> {
        check_required(Field::Title.as_str(), &self.title)?;
        if self.body.trim().is_empty() {
            return Err(FieldError::Empty(Field::Body.as_str()));
        }
        check_text(Field::Body.as_str(), &self.body, MAX_LONG_TEXT)?;
        if self.grids.len() > MAX_NOTICE_GRIDS {
            return Err(FieldError::TooMany(Field::Grids.as_str(), MAX_NOTICE_GRIDS));
        }
        for g in &self.grids {
            check_required(Field::Grid.as_str(), g)?;
            if g.contains(['\n', '\r']) {
                return Err(FieldError::MultilineGrid);
            }
        }
        Ok(())
    }

    /// Its grids sorted, each once.
    pub fn grid_set(&self) -> Vec<String> {
        let mut grids: Vec<String> = self.grids.iter().map(|g| g.trim().to_string()).collect();
        grids.sort();
        grids.dedup();
        grids
    }
}

/// Most grids one notice may name.
pub const MAX_NOTICE_GRIDS: usize = 100;

/// A visit log as `visit list --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Visit {
    /// Record id (32 hex).
    pub id: String,
    /// The household visited (its address).
    pub household: String,
    /// The household's id.
    #[serde(default)]
    pub household_id: Option<String>,
    /// The grid the record belongs to.
    pub grid: Option<String>,
    /// Service category slug.
    pub category: Option<String>,
    /// Free text.
    pub note: Option<String>,
    /// Residents met.
    pub residents: Vec<String>,
    /// What the household needs.
    pub needs: Option<String>,
    /// When the visit happened (RFC 3339).
    pub visited_at: String,
    /// Device id of the volunteer who logged it.
    pub author: String,
    /// Ids of linked tickets.
    pub tickets: Vec<String>,
}

/// A ticket as `ticket list --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    /// Record id (32 hex).
    pub id: String,
    /// Short title.
    pub title: String,
    /// `open`, `in_progress`, `resolved`, `closed`.
    pub status: String,
    /// Service category slug.
    pub category: Option<String>,
    /// `low`, `normal`, `high`, `urgent`.
    pub priority: String,
    /// The household concerned (its address).
    pub household: Option<String>,
    /// The household's id.
    #[serde(default)]
    pub household_id: Option<String>,
    /// The grid the record belongs to.
    pub grid: Option<String>,
    /// Device id of the assignee.
    pub assignee: Option<String>,
    /// Device id of the member who opened it.
    pub opened_by: String,
    /// When the resident asked (RFC 3339).
    pub opened_at: String,
    /// Free text.
    pub note: Option<String>,
    /// The deadline (RFC 3339).
    #[serde(default)]
    pub due: Option<String>,
    /// Neither resolved nor closed, and past `due` (as of the read).
    #[serde(default)]
    pub overdue: bool,
    /// How the request came in (a channel slug).
    #[serde(default)]
    pub channel: Option<String>,
    /// When it was resolved or closed (RFC 3339).
    #[serde(default)]
    pub resolved_at: Option<String>,
    /// The resident's verdict in the follow-up call.
    #[serde(default)]
    pub satisfaction: Option<String>,
    /// When that verdict was recorded.
    #[serde(default)]
    pub rated_at: Option<String>,
}

impl Ticket {
    /// Sets `overdue` as of `now_ms`.
    pub fn judge(&mut self, now_ms: i64) {
        self.overdue = !matches!(self.status.as_str(), "resolved" | "closed")
            && self
                .due
                .as_deref()
                .and_then(|d| d.parse::<Time>().ok())
                .is_some_and(|d| d.millis() < now_ms);
    }
}

/// A household as `household list --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Household {
    /// Record id (32 hex).
    pub id: String,
    /// Its address.
    pub address: String,
    /// The grid it belongs to.
    pub grid: Option<String>,
    /// The people who live there.
    pub residents: Vec<String>,
    /// Tag slugs; none means `ordinary`.
    pub tags: Vec<String>,
    /// Phone number.
    pub phone: Option<String>,
    /// Free text.
    pub note: Option<String>,
    /// When it was added to the ledger (RFC 3339; none for households made from the
    /// records of a store that had none).
    pub added_at: Option<String>,
    /// The latest visit this node holds (RFC 3339).
    #[serde(default)]
    pub last_visit: Option<String>,
    /// When the next visit is due (RFC 3339).
    #[serde(default)]
    pub next_due: Option<String>,
    /// `next_due` has passed.
    #[serde(default)]
    pub overdue: bool,
}

/// A household with everything `household show` prints.
#[derive(Debug, Clone, Serialize)]
pub struct HouseholdDetail {
    /// The list object.
    #[serde(flatten)]
    pub household: Household,
    /// Its visits this node holds, newest first.
    pub visits: Vec<Visit>,
    /// Its tickets this node holds, newest first.
    pub tickets: Vec<Ticket>,
    /// Oldest first.
    pub history: Vec<HistoryEntry>,
    /// Fields edited concurrently.
    pub conflicts: Vec<Conflict>,
}

/// The station's policy as `policy show --json` prints it: days by tag and by priority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Visit interval in days, by tag slug.
    pub visit_every: std::collections::BTreeMap<String, u32>,
    /// Days from request to deadline, by priority.
    pub ticket_due: std::collections::BTreeMap<String, u32>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            visit_every: Tag::ALL
                .iter()
                .map(|t| (t.as_str().to_string(), t.default_visit_every()))
                .collect(),
            ticket_due: Priority::ALL
                .iter()
                .map(|p| (p.as_str().to_string(), p.default_ticket_due()))
                .collect(),
        }
    }
}

impl Policy {
    /// The visit interval of a household with `tags` (slugs; none is `ordinary`): the
    /// shortest of theirs.
    pub fn visit_every<S: AsRef<str>>(&self, tags: &[S]) -> u32 {
        let ordinary = [Tag::Ordinary.as_str()];
        let tags: Vec<&str> = if tags.is_empty() {
            ordinary.to_vec()
        } else {
            tags.iter().map(|t| t.as_ref()).collect()
        };
        tags.iter()
            .filter_map(|t| self.visit_every.get(*t).copied())
            .min()
            .unwrap_or(Tag::Ordinary.default_visit_every())
    }

    /// Days from a request of `priority` to its deadline.
    pub fn ticket_due(&self, priority: Priority) -> u32 {
        self.ticket_due
            .get(priority.as_str())
            .copied()
            .unwrap_or(priority.default_ticket_due())
    }
}

/// One field a change set, with its new value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The field: a record field (`status`, `note`, ...), or `residents` (the new list),
    /// `tickets` (ticket ids linked), `comment` (the comment's text).
    pub field: String,
    /// The new value: text for scalar fields, `null` for a removed field, an array for
    /// `residents` and `tickets`.
    pub value: serde_json::Value,
}

/// One entry of a record's history: one signed change (see [`crate::history`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The change hash.
    pub hash: String,
    /// Device id of its author (the change's signer).
    pub author: String,
    /// The author's name, where this node knows it (the roster, or this node itself).
    pub author_name: Option<String>,
    /// When its author made it (RFC 3339, author's clock).
    pub at: String,
    /// The change's message (`update ticket: status`, ...).
    pub message: String,
    /// The fields it set, with their new values, read from the change's operations.
    pub changes: Vec<FieldChange>,
}

/// A field with concurrent values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    /// The field name.
    pub field: String,
    /// Every concurrent value; the first is the one shown.
    pub values: Vec<String>,
}

/// A comment on a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comment {
    /// Device id of its author.
    pub author: String,
    /// The text.
    pub text: String,
    /// When (RFC 3339).
    pub at: String,
}

/// A visit with everything `visit show` prints.
#[derive(Debug, Clone, Serialize)]
pub struct VisitDetail {
    /// The list object.
    #[serde(flatten)]
    pub visit: Visit,
    /// Oldest first.
    pub history: Vec<HistoryEntry>,
    /// Fields edited concurrently.
    pub conflicts: Vec<Conflict>,
}

/// A ticket with everything `ticket show` prints.
#[derive(Debug, Clone, Serialize)]
pub struct TicketDetail {
    /// The list object.
    #[serde(flatten)]
    pub ticket: Ticket,
    /// Oldest first.
    pub comments: Vec<Comment>,
    /// Ids of visit logs linked to this ticket.
    pub visits: Vec<String>,
    /// Oldest first.
    pub history: Vec<HistoryEntry>,
    /// Fields edited concurrently.
    pub conflicts: Vec<Conflict>,
}

/// A record's fields, checked. Built by [`NewVisit`] and friends.
#[derive(Debug, Clone, Default)]
pub struct NewVisit {
    /// Required, not empty.
    pub household: String,
    /// Grid; the node fills in its first grid when `None`.
    pub grid: Option<String>,
    /// Category.
    pub category: Option<Category>,
    /// Note.
    pub note: Option<String>,
    /// Residents met.
    pub residents: Vec<String>,
    /// Needs.
    pub needs: Option<String>,
    /// When; now when `None`.
    pub visited_at: Option<Time>,
    /// Tickets to link.
    pub tickets: Vec<DocId>,
    /// The household's id; the node finds or makes it from `household` when `None`.
    pub household_id: Option<DocId>,
}

/// Changes to a visit log; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct VisitEdit {
    /// New household.
    pub household: Option<String>,
    /// New grid.
    pub grid: Option<String>,
    /// New category.
    pub category: Option<Category>,
    /// New note.
    pub note: Option<String>,
    /// Replaces the residents.
    pub residents: Option<Vec<String>>,
    /// New needs.
    pub needs: Option<String>,
    /// New visit time.
    pub visited_at: Option<Time>,
    /// Tickets to link (added to those already linked).
    pub link_tickets: Vec<DocId>,
    /// The new household's id (with `household`, its address); the node finds or makes
    /// it from `household` when `None`.
    pub household_id: Option<DocId>,
}

/// A new ticket.
#[derive(Debug, Clone, Default)]
pub struct NewTicket {
    /// Required, not empty.
    pub title: String,
    /// Category.
    pub category: Option<Category>,
    /// Household.
    pub household: Option<String>,
    /// Grid; the node fills in its first grid when `None`.
    pub grid: Option<String>,
    /// Priority; `normal` when `None`.
    pub priority: Option<Priority>,
    /// Status; `open` when `None` (import may carry another).
    pub status: Option<Status>,
    /// Assignee.
    pub assignee: Option<DeviceId>,
    /// Note.
    pub note: Option<String>,
    /// When the resident asked; now when `None`.
    pub opened_at: Option<Time>,
    /// The deadline; from the policy by priority when `None`.
    pub due: Option<Time>,
    /// How the request came in; by the node's role when `None`.
    pub channel: Option<Channel>,
    /// The household's id; the node finds or makes it from `household` when `None`.
    pub household_id: Option<DocId>,
    /// When resolved (import of a resolved ticket).
    pub resolved_at: Option<Time>,
    /// The follow-up call's verdict (import).
    pub satisfaction: Option<Satisfaction>,
}

/// Changes to a ticket; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TicketUpdate {
    /// New status.
    pub status: Option<Status>,
    /// New assignee.
    pub assignee: Option<DeviceId>,
    /// New priority.
    pub priority: Option<Priority>,
    /// New title.
    pub title: Option<String>,
    /// New category.
    pub category: Option<Category>,
    /// New household.
    pub household: Option<String>,
    /// New grid.
    pub grid: Option<String>,
    /// New note.
    pub note: Option<String>,
    /// New deadline.
    pub due: Option<Time>,
    /// The follow-up call's verdict (on a resolved or closed ticket).
    pub satisfaction: Option<Satisfaction>,
    /// The new household's id (with `household`, its address).
    pub household_id: Option<DocId>,
}

/// A new household.
#[derive(Debug, Clone, Default)]
pub struct NewHousehold {
    /// Required, not empty.
    pub address: String,
    /// Grid; the node fills in its first grid when `None`.
    pub grid: Option<String>,
    /// Residents.
    pub residents: Vec<String>,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Phone number.
    pub phone: Option<String>,
    /// Note.
    pub note: Option<String>,
    /// When it was added; now when `None`.
    pub added_at: Option<Time>,
}

/// Changes to a household; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct HouseholdEdit {
    /// New address (the id stays the one the first address derived).
    pub address: Option<String>,
    /// New grid: the household moves.
    pub grid: Option<String>,
    /// Replaces the residents.
    pub residents: Option<Vec<String>>,
    /// Tags to add.
    pub tag: Vec<Tag>,
    /// Tags to remove.
    pub untag: Vec<Tag>,
    /// New phone number.
    pub phone: Option<String>,
    /// New note.
    pub note: Option<String>,
}

/// A record field that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// A required text field is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// A text field is too long.
    #[error("{0} is too long (at most {1} bytes)")]
    TooLong(&'static str, usize),
    /// Too many entries.
    #[error("too many {0} (at most {1})")]
    TooMany(&'static str, usize),
    /// The edit changes nothing.
    #[error("nothing to change: give at least one field")]
    NothingToChange,
    /// When something happened cannot be true (before 2000, or ahead of the clock).
    #[error("{0} {1}")]
    Time(&'static str, crate::model::TimeRange),
    /// A resident's name holds a line break (a household keeps one name a line).
    #[error("a resident's name must be one line")]
    Multiline,
    /// A notice's grid holds a line break (a notice keeps one grid a line).
    #[error("a grid's name must be one line")]
    MultilineGrid,
}

fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.len() > max {
        return Err(FieldError::TooLong(field, max));
    }
    Ok(())
}

fn check_required(field: &'static str, value: &str) -> Result<(), FieldError> {
    if value.trim().is_empty() {
        return Err(FieldError::Empty(field));
    }
    check_text(field, value, MAX_SHORT_TEXT)
}

fn check_residents(residents: &[String]) -> Result<(), FieldError> {
    if residents.len() > MAX_RESIDENTS {
        return Err(FieldError::TooMany(
            Field::Residents.as_str(),
            MAX_RESIDENTS,
        ));
    }
    for r in residents {
        check_required("resident name", r)?;
    }
    Ok(())
}

fn check_links(tickets: &[DocId]) -> Result<(), FieldError> {
    if tickets.len() > MAX_LINKED_TICKETS {
        return Err(FieldError::TooMany("linked tickets", MAX_LINKED_TICKETS));
    }
    Ok(())
}

fn check_opt(field: &'static str, value: &Option<String>, max: usize) -> Result<(), FieldError> {
    value
        .as_deref()
        .map_or(Ok(()), |v| check_text(field, v, max))
}

/// A time at which something happened, on a record this node writes. Not applied to
/// changes received from peers: their records keep the times they were written with.
fn check_happened(field: &'static str, at: Option<Time>) -> Result<(), FieldError> {
    match at {
        Some(t) => t
            .check_happened(Time::now_millis())
            .map_err(|e| FieldError::Time(field, e)),
        None => Ok(()),
    }
}

fn check_grid(grid: &Option<String>) -> Result<(), FieldError> {
    match grid {
        Some(g) => check_required(Field::Grid.as_str(), g),
        None => Ok(()),
    }
}

impl NewVisit {
    /// Checks every field.
    pub fn check(&self) -> Result<(), FieldError> {
        check_required(Field::Household.as_str(), &self.household)?;
        check_grid(&self.grid)?;
        check_opt(Field::Note.as_str(), &self.note, MAX_LONG_TEXT)?;
        check_opt(Field::Needs.as_str(), &self.needs, MAX_LONG_TEXT)?;
        check_happened(Field::VisitedAt.as_str(), self.visited_at)?;
        check_links(&self.tickets)?;
        check_residents(&self.residents)
    }
}

impl VisitEdit {
    /// Checks every field, and that something changes.
    pub fn check(&self) -> Result<(), FieldError> {
        if let Some(h) = &self.household {
            check_required(Field::Household.as_str(), h)?;
        }
        check_grid(&self.grid)?;
        check_opt(Field::Note.as_str(), &self.note, MAX_LONG_TEXT)?;
        check_opt(Field::Needs.as_str(), &self.needs, MAX_LONG_TEXT)?;
        if let Some(r) = &self.residents {
            check_residents(r)?;
        }
        check_happened(Field::VisitedAt.as_str(), self.visited_at)?;
        check_links(&self.link_tickets)?;
        let nothing = self.household.is_none()
            && self.grid.is_none()
            && self.category.is_none()
            && self.note.is_none()
            && self.residents.is_none()
            && self.needs.is_none()
            && self.visited_at.is_none()
            && self.link_tickets.is_empty();
        if nothing {
            return Err(FieldError::NothingToChange);
        }
        Ok(())
    }
}

impl NewTicket {
    /// Checks every field.
    pub fn check(&self) -> Result<(), FieldError> {
        check_required(Field::Title.as_str(), &self.title)?;
        check_grid(&self.grid)?;
        check_opt(Field::Household.as_str(), &self.household, MAX_SHORT_TEXT)?;
        check_opt(Field::Note.as_str(), &self.note, MAX_LONG_TEXT)?;
        check_happened(Field::OpenedAt.as_str(), self.opened_at)
    }
}

impl NewHousehold {
    /// Checks every field.
    pub fn check(&self) -> Result<(), FieldError> {
        check_required(Field::Address.as_str(), &self.address)?;
        check_grid(&self.grid)?;
        check_household_residents(&self.residents)?;
        check_opt(Field::Phone.as_str(), &self.phone, MAX_SHORT_TEXT)?;
        check_opt(Field::Note.as_str(), &self.note, MAX_LONG_TEXT)?;
        check_happened(Field::AddedAt.as_str(), self.added_at)
    }
}

impl HouseholdEdit {
    /// Checks every field, and that something changes.
    pub fn check(&self) -> Result<(), FieldError> {
        if let Some(a) = &self.address {
            check_required(Field::Address.as_str(), a)?;
        }
        check_grid(&self.grid)?;
        if let Some(r) = &self.residents {
            check_household_residents(r)?;
        }
        check_opt(Field::Phone.as_str(), &self.phone, MAX_SHORT_TEXT)?;
        check_opt(Field::Note.as_str(), &self.note, MAX_LONG_TEXT)?;
        let nothing = self.address.is_none()
            && self.grid.is_none()
            && self.residents.is_none()
            && self.tag.is_empty()
            && self.untag.is_empty()
            && self.phone.is_none()
            && self.note.is_none();
        if nothing {
            return Err(FieldError::NothingToChange);
        }
        Ok(())
    }
}

fn check_household_residents(residents: &[String]) -> Result<(), FieldError> {
    check_residents(residents)?;
    if residents.iter().any(|r| r.contains(['\n', '\r'])) {
        return Err(FieldError::Multiline);
    }
    Ok(())
}

impl TicketUpdate {
    /// Checks every field, and that something changes.
    pub fn check(&self) -> Result<(), FieldError> {
        if let Some(t) = &self.title {
            check_required(Field::Title.as_str(), t)?;
        }
        check_grid(&self.grid)?;
        check_opt(Field::Household.as_str(), &self.household, MAX_SHORT_TEXT)?;
        check_opt(Field::Note.as_str(), &self.note, MAX_LONG_TEXT)?;
        let nothing = self.status.is_none()
            && self.assignee.is_none()
            && self.priority.is_none()
            && self.title.is_none()
            && self.category.is_none()
            && self.household.is_none()
            && self.grid.is_none()
            && self.note.is_none()
            && self.due.is_none()
            && self.satisfaction.is_none();
        if nothing {
            return Err(FieldError::NothingToChange);
        }
        Ok(())
    }
}

/// Collects the names of the fields a change sets, for its history message.
#[derive(Default)]
struct Edits {
    doc_fields: Vec<Field>,
}

impl Edits {
    fn put(
        &mut self,
        doc: &mut AutoCommit,
        field: Field,
        value: Option<impl Into<String>>,
    ) -> Result<(), automerge::AutomergeError> {
        if let Some(v) = value {
            doc.put(ROOT, field, v.into())?;
            self.doc_fields.push(field);
        }
        Ok(())
    }

    fn message(&self, verb: &str) -> String {
        if self.doc_fields.is_empty() {
            verb.to_string()
        } else {
            let fields: Vec<&str> = self.doc_fields.iter().map(|f| f.as_str()).collect();
            format!("{verb}: {}", fields.join(", "))
        }
    }
}

fn put_residents(
    doc: &mut AutoCommit,
    residents: &[String],
) -> Result<(), automerge::AutomergeError> {
    let list = doc.put_object(ROOT, Field::Residents, ObjType::List)?;
    for (i, r) in residents.iter().enumerate() {
        doc.insert(&list, i, r.as_str())?;
    }
    Ok(())
}

fn link_tickets(doc: &mut AutoCommit, tickets: &[DocId]) -> Result<(), automerge::AutomergeError> {
    let map = match doc.get(ROOT, Field::Tickets)? {
        Some((Value::Object(ObjType::Map), id)) => id,
        _ => doc.put_object(ROOT, Field::Tickets, ObjType::Map)?,
    };
    for t in tickets {
        doc.put(&map, t.to_string(), true)?;
    }
    Ok(())
}

/// Writes a new visit log into an empty document; returns the history message.
pub fn write_new_visit(
    doc: &mut AutoCommit,
    id: DocId,
    v: &NewVisit,
    visited_at: Time,
) -> Result<String, automerge::AutomergeError> {
    let mut e = Edits::default();
    doc.put(ROOT, Field::Kind, RecordKind::Visit.name())?;
    // The record id makes the first change unique to this record, even when two records
    // with the same content are made in the same second.
    doc.put(ROOT, Field::Id, id.to_string())?;
    e.put(doc, Field::Household, Some(v.household.as_str()))?;
    e.put(
        doc,
        Field::HouseholdId,
        v.household_id.map(|h| h.to_string()),
    )?;
    e.put(doc, Field::Grid, v.grid.as_deref())?;
    e.put(doc, Field::Category, v.category.map(|c| c.slug()))?;
    e.put(doc, Field::Note, v.note.as_deref())?;
    e.put(doc, Field::Needs, v.needs.as_deref())?;
    e.put(doc, Field::VisitedAt, Some(visited_at.to_rfc3339()))?;
    put_residents(doc, &v.residents)?;
    link_tickets(doc, &v.tickets)?;
    Ok("add visit".to_string())
}

/// Applies an edit to a visit log; returns the history message.
pub fn write_visit_edit(
    doc: &mut AutoCommit,
    edit: &VisitEdit,
) -> Result<String, automerge::AutomergeError> {
    let mut e = Edits::default();
    e.put(doc, Field::Household, edit.household.as_deref())?;
    e.put(
        doc,
        Field::HouseholdId,
        edit.household_id.map(|h| h.to_string()),
    )?;
    e.put(doc, Field::Grid, edit.grid.as_deref())?;
    e.put(doc, Field::Category, edit.category.map(|c| c.slug()))?;
    e.put(doc, Field::Note, edit.note.as_deref())?;
    e.put(doc, Field::Needs, edit.needs.as_deref())?;
    e.put(
        doc,
        Field::VisitedAt,
        edit.visited_at.map(|t| t.to_rfc3339()),
    )?;
    if let Some(r) = &edit.residents {
        put_residents(doc, r)?;
        e.doc_fields.push(Field::Residents);
    }
    if !edit.link_tickets.is_empty() {
        link_tickets(doc, &edit.link_tickets)?;
        e.doc_fields.push(Field::Tickets);
    }
    Ok(e.message("edit visit"))
}

/// Writes a new ticket into an empty document; returns the history message.
pub fn write_new_ticket(
    doc: &mut AutoCommit,
    id: DocId,
    t: &NewTicket,
    opened_at: Time,
) -> Result<String, automerge::AutomergeError> {
    let mut e = Edits::default();
    doc.put(ROOT, Field::Kind, RecordKind::Ticket.name())?;
    doc.put(ROOT, Field::Id, id.to_string())?;
    e.put(doc, Field::Title, Some(t.title.as_str()))?;
    e.put(
        doc,
        Field::Status,
        Some(t.status.unwrap_or(Status::Open).as_str()),
    )?;
    e.put(
        doc,
        Field::Priority,
        Some(t.priority.unwrap_or(Priority::Normal).as_str()),
    )?;
    e.put(doc, Field::Category, t.category.map(|c| c.slug()))?;
    e.put(doc, Field::Household, t.household.as_deref())?;
    e.put(doc, Field::Grid, t.grid.as_deref())?;
    e.put(doc, Field::Assignee, t.assignee.map(|a| a.to_string()))?;
    e.put(doc, Field::Note, t.note.as_deref())?;
    e.put(doc, Field::OpenedAt, Some(opened_at.to_rfc3339()))?;
    e.put(
        doc,
        Field::HouseholdId,
        t.household_id.map(|h| h.to_string()),
    )?;
    e.put(doc, Field::Due, t.due.map(|d| d.to_rfc3339()))?;
    e.put(doc, Field::Channel, t.channel.map(|c| c.as_str()))?;
    e.put(
        doc,
        Field::ResolvedAt,
        t.resolved_at.map(|d| d.to_rfc3339()),
    )?;
    e.put(doc, Field::Satisfaction, t.satisfaction.map(|s| s.as_str()))?;
    if t.satisfaction.is_some() {
        e.put(doc, Field::RatedAt, t.resolved_at.map(|d| d.to_rfc3339()))?;
    }
    doc.put_object(ROOT, Field::Comments, ObjType::List)?;
    Ok("open ticket".to_string())
}

/// Writes a new household into an empty document; returns the history message. A
/// household made from older records (`added_at` `None`) writes only what every node
/// derives alike from them: its address and grid.
pub fn write_new_household(
    doc: &mut AutoCommit,
    id: DocId,
    h: &NewHousehold,
    added_at: Option<Time>,
) -> Result<String, automerge::AutomergeError> {
    let mut e = Edits::default();
    doc.put(ROOT, Field::Kind, RecordKind::Household.name())?;
    doc.put(ROOT, Field::Id, id.to_string())?;
    e.put(doc, Field::Address, Some(h.address.as_str()))?;
    e.put(doc, Field::Grid, h.grid.as_deref())?;
    if !h.residents.is_empty() {
        e.put(doc, Field::Residents, Some(h.residents.join("\n")))?;
    }
    e.put(doc, Field::Phone, h.phone.as_deref())?;
    e.put(doc, Field::Note, h.note.as_deref())?;
    e.put(doc, Field::AddedAt, added_at.map(|t| t.to_rfc3339()))?;
    for t in &h.tags {
        e.put(doc, Field::Tag(*t), Some("true"))?;
    }
    Ok("add household".to_string())
}

/// Applies an edit to a household; returns the history message.
pub fn write_household_edit(
    doc: &mut AutoCommit,
    edit: &HouseholdEdit,
) -> Result<String, automerge::AutomergeError> {
    let mut e = Edits::default();
    e.put(doc, Field::Address, edit.address.as_deref())?;
    e.put(doc, Field::Grid, edit.grid.as_deref())?;
    e.put(
        doc,
        Field::Residents,
        edit.residents.as_ref().map(|r| r.join("\n")),
    )?;
    e.put(doc, Field::Phone, edit.phone.as_deref())?;
    e.put(doc, Field::Note, edit.note.as_deref())?;
    for t in &edit.tag {
        e.put(doc, Field::Tag(*t), Some("true"))?;
    }
    for t in &edit.untag {
        e.put(doc, Field::Tag(*t), Some("false"))?;
    }
    Ok(e.message("edit household"))
}

/// Writes the policy's new days for `field` (a `visit_every` or `ticket_due` field) into
/// the policy document, starting it if it is empty; returns the history message.
pub fn write_policy(
    doc: &mut AutoCommit,
    id: DocId,
    field: Field,
    days: u32,
) -> Result<String, automerge::AutomergeError> {
    if doc.get(ROOT, Field::Kind)?.is_none() {
        doc.put(ROOT, Field::Kind, RecordKind::Policy.name())?;
        doc.put(ROOT, Field::Id, id.to_string())?;
    }
    let mut e = Edits::default();
    e.put(doc, field, Some(days.to_string()))?;
    Ok(e.message("set policy"))
}

/// Writes a new notice into an empty document; returns the history message.
pub fn write_new_notice(
    doc: &mut AutoCommit,
    id: DocId,
    n: &NewNotice,
    published_at: Time,
) -> Result<String, automerge::AutomergeError> {
    let mut e = Edits::default();
    doc.put(ROOT, Field::Kind, RecordKind::Notice.name())?;
    doc.put(ROOT, Field::Id, id.to_string())?;
    e.put(doc, Field::Title, Some(n.title.as_str()))?;
    e.put(doc, Field::Body, Some(n.body.as_str()))?;
    e.put(doc, Field::Grids, Some(n.grid_set().join("\n")))?;
    e.put(doc, Field::PublishedAt, Some(published_at.to_rfc3339()))?;
    e.put(doc, Field::Until, n.until.map(|t| t.to_rfc3339()))?;
    Ok("publish notice".to_string())
}

/// Writes `device`'s read mark on a notice, at `at`; returns the history message.
pub fn write_read_mark(
    doc: &mut AutoCommit,
    device: DeviceId,
    at: Time,
) -> Result<String, automerge::AutomergeError> {
    doc.put(ROOT, read_mark_key(device), at.to_rfc3339())?;
    Ok("read notice".to_string())
}

/// Applies an update to a ticket; returns the history message.
pub fn write_ticket_update(
    doc: &mut AutoCommit,
    u: &TicketUpdate,
    now: Time,
) -> Result<String, automerge::AutomergeError> {
    let mut e = Edits::default();
    e.put(doc, Field::Status, u.status.map(|s| s.as_str()))?;
    // When it was resolved: each time it becomes resolved, and when it is closed
    // without having been resolved.
    let resolved_before = matches!(
        doc.get(ROOT, Field::ResolvedAt)?,
        Some((Value::Scalar(_), _))
    );
    match u.status {
        Some(Status::Resolved) => e.put(doc, Field::ResolvedAt, Some(now.to_rfc3339()))?,
        Some(Status::Closed) if !resolved_before => {
            e.put(doc, Field::ResolvedAt, Some(now.to_rfc3339()))?
        }
        _ => {}
    }
    e.put(doc, Field::Due, u.due.map(|d| d.to_rfc3339()))?;
    e.put(
        doc,
        Field::HouseholdId,
        u.household_id.map(|h| h.to_string()),
    )?;
    if let Some(verdict) = u.satisfaction {
        e.put(doc, Field::Satisfaction, Some(verdict.as_str()))?;
        e.put(doc, Field::RatedAt, Some(now.to_rfc3339()))?;
    }
    e.put(doc, Field::Assignee, u.assignee.map(|a| a.to_string()))?;
    e.put(doc, Field::Priority, u.priority.map(|p| p.as_str()))?;
    e.put(doc, Field::Title, u.title.as_deref())?;
    e.put(doc, Field::Category, u.category.map(|c| c.slug()))?;
    e.put(doc, Field::Household, u.household.as_deref())?;
    e.put(doc, Field::Grid, u.grid.as_deref())?;
    e.put(doc, Field::Note, u.note.as_deref())?;
    Ok(e.message("update ticket"))
}

/// Appends a comment to a ticket; returns the history message.
pub fn write_comment(
    doc: &mut AutoCommit,
    author: DeviceId,
    text: &str,
    at: Time,
) -> Result<String, automerge::AutomergeError> {
    let list = match doc.get(ROOT, Field::Comments)? {
        Some((Value::Object(ObjType::List), id)) => id,
        _ => doc.put_object(ROOT, Field::Comments, ObjType::List)?,
    };
    let len = doc.length(&list);
    let c = doc.insert_object(&list, len, ObjType::Map)?;
    doc.put(&c, CommentField::Author, author.to_string())?;
    doc.put(&c, CommentField::Text, text)?;
    doc.put(&c, CommentField::At, at.to_rfc3339())?;
    Ok("comment".to_string())
}

/// The scalar root fields a record of `kind` has, in display order.
pub(crate) fn fields_of(kind: RecordKind) -> &'static [Field] {
    match kind {
        RecordKind::Visit => VISIT_FIELDS,
        RecordKind::Ticket => TICKET_FIELDS,
        RecordKind::Household => HOUSEHOLD_FIELDS,
        RecordKind::Policy => POLICY_FIELDS,
        RecordKind::Notice => NOTICE_FIELDS,
    }
}

/// The scalar root field of a record of `kind` stored under `key`, if it has one.
pub(crate) fn scalar_field(kind: RecordKind, key: &str) -> Option<Field> {
    fields_of(kind).iter().copied().find(|f| f.as_str() == key)
}

/// A scalar as text (`None` for null and for objects).
pub(crate) fn scalar_text(v: &Value<'_>) -> Option<String> {
    match v {
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            ScalarValue::Null => None,
            other => Some(other.to_string()),
        },
        Value::Object(_) => None,
    }
}

fn get_str(doc: &impl ReadDoc, obj: &automerge::ObjId, key: CommentField) -> Option<String> {
    doc.get(obj, key)
        .ok()
        .flatten()
        .and_then(|(v, _)| scalar_text(&v))
}

/// The root map of a record document, read in one pass: each key's winning value, what a
/// list or map there holds, and every value of a key that holds concurrent ones.
///
/// It is read from an Automerge document ([`Root::read`]) or, for a new document made by one
/// simple change, from that change's operations ([`Root::of_first_change`]); both give the
/// same `Root` for such a document (`tests/tests/it/first_change.rs`).
#[derive(Debug, PartialEq)]
pub struct Root {
    fields: std::collections::HashMap<String, Entry>,
}

/// One key of a record's root map.
#[derive(Debug, PartialEq)]
struct Entry {
    /// The winning value.
    value: Value<'static>,
    /// A list's scalar items as text, in order, or a map's keys, in key order.
    items: Vec<String>,
    /// Every value, as text, when concurrent values stand beside the winner.
    conflict: Option<Vec<String>>,
}

impl Root {
    /// Reads the root map.
    pub fn read(doc: &impl ReadDoc) -> Root {
        let fields = doc
            .map_range(ROOT, ..)
            .map(|item| {
                let id = item.id();
                let value = Value::from(item.value);
                let items = match &value {
                    Value::Object(ObjType::List) => doc
                        .list_range(&id, ..)
                        .filter_map(|item| scalar_text(&Value::from(item.value)))
                        .collect(),
                    Value::Object(ObjType::Map) => {
                        let mut keys: Vec<String> = doc.keys(&id).collect();
                        keys.sort();
                        keys
                    }
                    _ => Vec::new(),
                };
                let conflict = item.conflict.then(|| {
                    doc.get_all(ROOT, item.key.as_ref())
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|(v, _)| scalar_text(v))
                        .collect()
                });
                let field = Entry {
                    value,
                    items,
                    conflict,
                };
                (item.key.into_owned(), field)
            })
            .collect();
        Root { fields }
    }

    /// Reads the root map of the document that `change` alone makes, without Automerge, if
    /// the change is simple enough: the first change of its actor (`seq` 1, no dependencies,
    /// counters from 1), and every operation one that can only mean one thing on an empty
    /// document. That is a first `put` of a scalar, or the making of a list or map, at a
    /// new non-empty root key; a `put` of a scalar at a new key of a map made earlier in the
    /// change; or an insertion of a scalar at the end of a list made earlier in the change.
    /// No operation may supersede another (`pred` is empty). Any other change, and any
    /// scalar that is not a string, number, boolean, timestamp or null, gives `None`, and
    /// the caller applies the change with Automerge instead.
    ///
    /// Such a document nests objects one deep and has no conflicts.
    pub fn of_first_change(change: &automerge::Change) -> Option<Root> {
        Root::of_expanded(change, &change.decode())
    }

    /// [`Root::of_first_change`] on the change's operations, decoded once by the caller
    /// (`change.decode()`).
    pub fn of_expanded(
        change: &automerge::Change,
        expanded: &automerge::ExpandedChange,
    ) -> Option<Root> {
        use automerge::legacy::{ElementId, Key, ObjectId, OpId, OpType};
        // A first change names no other actor: nothing but its own operations exists yet
        // (Automerge cannot apply one that does, to an empty document).
        if change.seq() != 1
            || !change.deps().is_empty()
            || change.start_op().get() != 1
            || !change.other_actor_ids().is_empty()
        {
            return None;
        }
        let actor = change.actor_id();
        let mut fields: std::collections::HashMap<String, Entry> =
            std::collections::HashMap::with_capacity(expanded.operations.len());
        // Objects made by the change: their op id → (root key, type, last inserted element).
        let mut made: std::collections::HashMap<u64, (String, ObjType, Option<OpId>)> =
            std::collections::HashMap::new();
        for (i, op) in expanded.operations.iter().enumerate() {
            let counter = i as u64 + 1;
            if !op.pred.is_empty() {
                return None;
            }
            let scalar = match &op.action {
                OpType::Put(v) => Some(simple_scalar(v)?),
                OpType::Make(ObjType::List | ObjType::Map) => None,
                _ => return None,
            };
            match (&op.obj, &op.key) {
                (ObjectId::Root, Key::Map(key)) => {
                    if op.insert || key.is_empty() || fields.contains_key(key.as_str()) {
                        return None;
                    }
                    let value = match scalar {
                        Some(v) => Value::Scalar(std::borrow::Cow::Owned(v)),
                        None => {
                            let OpType::Make(kind) = op.action else {
                                return None;
                            };
                            made.insert(counter, (key.to_string(), kind, None));
                            Value::Object(kind)
                        }
                    };
                    let field = Entry {
                        value,
                        items: Vec::new(),
                        conflict: None,
                    };
                    fields.insert(key.to_string(), field);
                }
                (ObjectId::Id(obj), key) => {
                    let scalar = scalar?;
                    if obj.actor() != actor {
                        return None;
                    }
                    let (root_key, kind, last) = made.get_mut(&obj.counter())?;
                    let items = &mut fields.get_mut(root_key.as_str())?.items;
                    match (*kind, key) {
                        (ObjType::Map, Key::Map(k)) if !op.insert && !k.is_empty() => {
                            if items.iter().any(|have| *have == *k) {
                                return None;
                            }
                            items.push(k.to_string());
                        }
                        (ObjType::List, Key::Seq(after)) if op.insert => {
                            let at_end = match (&after, &last) {
                                (ElementId::Head, None) => true,
                                (ElementId::Id(prev), Some(last)) => prev == last,
                                _ => false,
                            };
                            if !at_end {
                                return None;
                            }
                            *last = Some(OpId::new(counter, actor));
                            items.extend(scalar_text(&Value::Scalar(std::borrow::Cow::Owned(
                                scalar,
                            ))));
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
        for field in fields.values_mut() {
            if field.value == Value::Object(ObjType::Map) {
                field.items.sort();
            }
        }
        Some(Root { fields })
    }

    fn text(&self, field: Field) -> Option<String> {
        self.fields
            .get(field.as_str())
            .and_then(|f| scalar_text(&f.value))
    }

    /// The earliest of a time field's values (concurrent ones included).
    fn earliest(&self, field: Field) -> Option<String> {
        let entry = self.fields.get(field.as_str())?;
        match &entry.conflict {
            Some(all) => all
                .iter()
                .filter_map(|v| v.parse::<Time>().ok().map(|t| (t.millis(), v)))
                .min()
                .map(|(_, v)| v.clone()),
            None => scalar_text(&entry.value),
        }
    }

    fn items(&self, field: Field, kind: ObjType) -> Vec<String> {
        match self.fields.get(field.as_str()) {
            Some(f) if f.value == Value::Object(kind) => f.items.clone(),
            _ => Vec::new(),
        }
    }
}

/// A scalar [`Root::of_first_change`] reads as Automerge would: not a counter (its value
/// is the sum of increments), bytes or a value of a type this version does not know.
fn simple_scalar(v: &ScalarValue) -> Option<ScalarValue> {
    match v {
        ScalarValue::Str(_)
        | ScalarValue::Int(_)
        | ScalarValue::Uint(_)
        | ScalarValue::F64(_)
        | ScalarValue::Boolean(_)
        | ScalarValue::Timestamp(_)
        | ScalarValue::Null => Some(v.clone()),
        _ => None,
    }
}

/// Reads a visit log's list object.
pub fn read_visit(doc: &impl ReadDoc, header: &DocHeader) -> Visit {
    read_visit_from(&Root::read(doc), header)
}

/// Reads a visit log's list object from its root, read once.
pub fn read_visit_from(root: &Root, header: &DocHeader) -> Visit {
    let tickets = root.items(Field::Tickets, ObjType::Map);
    Visit {
        id: header.doc_id().to_string(),
        household: root.text(Field::Household).unwrap_or_default(),
        household_id: root.text(Field::HouseholdId),
        grid: root.text(Field::Grid),
        category: root.text(Field::Category),
        note: root.text(Field::Note),
        residents: root.items(Field::Residents, ObjType::List),
        needs: root.text(Field::Needs),
        visited_at: root.text(Field::VisitedAt).unwrap_or_default(),
        author: header.author.to_string(),
        tickets,
    }
}

/// Reads a ticket's list object.
pub fn read_ticket(doc: &impl ReadDoc, header: &DocHeader) -> Ticket {
    read_ticket_from(&Root::read(doc), header)
}

/// Reads a ticket's list object from its root, read once.
pub fn read_ticket_from(root: &Root, header: &DocHeader) -> Ticket {
    Ticket {
        id: header.doc_id().to_string(),
        title: root.text(Field::Title).unwrap_or_default(),
        status: root
            .text(Field::Status)
            .unwrap_or_else(|| Status::Open.as_str().into()),
        category: root.text(Field::Category),
        priority: root
            .text(Field::Priority)
            .unwrap_or_else(|| Priority::Normal.as_str().into()),
        household: root.text(Field::Household),
        household_id: root.text(Field::HouseholdId),
        grid: root.text(Field::Grid),
        assignee: root.text(Field::Assignee),
        opened_by: header.author.to_string(),
        opened_at: root.text(Field::OpenedAt).unwrap_or_default(),
        note: root.text(Field::Note),
        due: root.text(Field::Due),
        overdue: false,
        channel: root.text(Field::Channel),
        resolved_at: root.text(Field::ResolvedAt),
        satisfaction: root.text(Field::Satisfaction),
        rated_at: root.text(Field::RatedAt),
    }
}

/// Reads a household's list object (without what other records tell: `last_visit`,
/// `next_due`, `overdue`).
pub fn read_household(doc: &impl ReadDoc, header: &DocHeader) -> Household {
    read_household_from(&Root::read(doc), header)
}

/// Reads a household's list object from its root, read once.
pub fn read_household_from(root: &Root, header: &DocHeader) -> Household {
    let tags = Tag::ALL
        .iter()
        .filter(|t| root.text(Field::Tag(**t)).as_deref() == Some("true"))
        .map(|t| t.as_str().to_string())
        .collect();
    Household {
        id: header.doc_id().to_string(),
        address: root.text(Field::Address).unwrap_or_default(),
        grid: root.text(Field::Grid),
        residents: root
            .text(Field::Residents)
            .map(|r| {
                r.lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        tags,
        phone: root.text(Field::Phone),
        note: root.text(Field::Note),
        // Two laptops that add one household each say when: it was added at the first.
        added_at: root.earliest(Field::AddedAt),
        last_visit: None,
        next_due: None,
        overdue: false,
    }
}

/// Reads the policy, with the default for every value it does not set.
pub fn read_policy_from(root: &Root) -> Policy {
    let mut policy = Policy::default();
    for field in POLICY_FIELDS {
        let Some(days) = root.text(*field).and_then(|d| d.parse::<u32>().ok()) else {
            continue;
        };
        match field {
            Field::VisitEvery(t) => {
                policy.visit_every.insert(t.as_str().into(), days);
            }
            Field::TicketDue(p) => {
                policy.ticket_due.insert(p.as_str().into(), days);
            }
            _ => {}
        }
    }
    policy
}

/// Reads a notice's list object from its root, read once, as seen by `me`.
pub fn read_notice_from(root: &Root, header: &DocHeader, me: Option<DeviceId>) -> Notice {
    let mut read_by: Vec<String> = root
        .fields
        .keys()
        .filter_map(|k| read_mark_device(k))
        .map(str::to_string)
        .collect();
    read_by.sort();
    let me = me.map(|d| d.to_string());
    Notice {
        id: header.doc_id().to_string(),
        title: root.text(Field::Title).unwrap_or_default(),
        body: root.text(Field::Body).unwrap_or_default(),
        grids: root
            .text(Field::Grids)
            .map(|g| {
                g.lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        published_at: root.text(Field::PublishedAt).unwrap_or_default(),
        until: root.text(Field::Until),
        read: me.is_some_and(|me| read_by.contains(&me)),
        read_by,
    }
}

/// A notice's read marks: (device id in hex, when it read the notice as the mark says).
pub fn read_marks_from(root: &Root) -> Vec<(String, String)> {
    let mut marks: Vec<(String, String)> = root
        .fields
        .iter()
        .filter_map(|(k, e)| Some((read_mark_device(k)?.to_string(), scalar_text(&e.value)?)))
        .collect();
    marks.sort();
    marks
}

/// Reads a ticket's comments, in list order.
pub fn read_comments(doc: &impl ReadDoc) -> Vec<Comment> {
    let Ok(Some((Value::Object(ObjType::List), list))) = doc.get(ROOT, Field::Comments) else {
        return Vec::new();
    };
    doc.list_range(&list, ..)
        .filter_map(|item| match Value::from(item.value.clone()) {
            Value::Object(ObjType::Map) => {
                let id = item.id();
                // The comment's author is the device that made its map (the actor of its
                // object id, which is the signer of the change that made it), never what
                // a field says.
                let author = match &id {
                    automerge::ObjId::Id(_, actor, _) => hex::encode(actor.to_bytes()),
                    automerge::ObjId::Root => String::new(),
                };
                Some(Comment {
                    author,
                    text: get_str(doc, &id, CommentField::Text).unwrap_or_default(),
                    at: get_str(doc, &id, CommentField::At).unwrap_or_default(),
                })
            }
            _ => None,
        })
        .collect()
}

/// The fields of `kind` that hold more than one concurrent value.
pub fn read_conflicts(doc: &impl ReadDoc, kind: RecordKind) -> Vec<Conflict> {
    read_conflicts_from(&Root::read(doc), kind)
}

/// The fields of `kind` that hold concurrent values, from the root read once.
pub fn read_conflicts_from(root: &Root, kind: RecordKind) -> Vec<Conflict> {
    let mut out = Vec::new();
    for field in fields_of(kind) {
        if *field == Field::AddedAt {
            continue; // the earliest counts (`read_household_from`), no one chooses
        }
        let Some(all) = root
            .fields
            .get(field.as_str())
            .and_then(|f| f.conflict.as_ref())
        else {
            continue;
        };
        // Equal values written concurrently (two makers of one household) are one value.
        let mut values: Vec<String> = Vec::with_capacity(all.len());
        for v in all {
            if !values.contains(v) {
                values.push(v.clone());
            }
        }
        if values.len() > 1 {
            // Show the winning value first, as `get` does.
            let winner = root.text(*field);
            if let Some(w) = winner
                && let Some(pos) = values.iter().position(|v| *v == w)
            {
                values.swap(0, pos);
            }
            out.push(Conflict {
                field: field.as_str().to_string(),
                values,
            });
        }
    }
    out
}

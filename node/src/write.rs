//! Local writes: new visits, tickets and households, edits, status changes, comments and
//! the station's policy, made on this node.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction: the fields are checked first (each
//! `New…`/`…Edit` of `records` has its `check`, within the limits `ingest::rules` holds
//! received changes to), then `local::local_change` loads the document's latest snapshot,
//! makes the Automerge change with this device's actor, signs it, and stores the change,
//! the new snapshot and the record's index row (`store::docs`). Nothing is reported as saved before the commit returns, and the
//! commit is fsynced (`synchronous=FULL`).

use automerge::AutoCommit;
use rusqlite::Transaction;
use yizhan_protocol::{DeviceKey, DocId, RecordKind};

use crate::error::{Refusal, WriteError};
use crate::home::Node;
use crate::identity::{Identity, Role};
use crate::local::{household_for, local_change, make_household_in, policy_header};
use crate::model::{Channel, DAY_MS, Priority, Status, Tag, Time};
use crate::records::{
    self, Field, FieldError, HouseholdEdit, NewHousehold, NewTicket, NewVisit, Policy,
    TicketUpdate, VisitEdit,
};
use crate::store::docs::{has_doc, load_header, read_policy};

impl Node {
    /// Logs a new home visit. Returns its id once it is durably stored.
    pub fn add_visit(&mut self, visit: &NewVisit) -> Result<DocId, WriteError> {
        Ok(self.add_visits(std::slice::from_ref(visit))?[0])
    }

    /// Logs many visits in one transaction: all are stored, or none.
    pub fn add_visits(&mut self, visits: &[NewVisit]) -> Result<Vec<DocId>, WriteError> {
        self.add_visits_observed(visits, &mut |_| {})
    }

    /// [`Node::add_visits`], calling `on_row` with the number of rows made so far after
    /// each row (for a progress display; nothing is committed before the last).
    pub fn add_visits_observed(
        &mut self,
        visits: &[NewVisit],
        on_row: &mut dyn FnMut(usize),
    ) -> Result<Vec<DocId>, WriteError> {
        let mut ids = Vec::with_capacity(visits.len());
        let tx = self.store.write()?;
        for (i, v) in visits.iter().enumerate() {
            let in_batch = |e: WriteError| batch_error(visits.len(), i, e);
            v.check().map_err(|e| in_batch(e.into()))?;
            let mut v = NewVisit {
                grid: self.identity.default_grid(&v.grid),
                ..v.clone()
            };
            if v.household_id.is_none() {
                let (id, address, grid) = household_for(
                    &tx,
                    &self.key,
                    &self.identity,
                    v.grid.as_deref(),
                    visits[i].grid.is_some(),
                    &v.household,
                )
                .map_err(in_batch)?;
                (v.household_id, v.household, v.grid) = (id, address, grid);
            }
            self.identity
                .needs_grid(v.grid.as_deref())
                .map_err(in_batch)?;
            self.identity
                .may_write_grid(v.grid.as_deref())
                .map_err(in_batch)?;
            check_ticket_links(&tx, &v.tickets).map_err(in_batch)?;
            let header = self.identity.new_header(RecordKind::Visit);
            let at = v.visited_at.unwrap_or_else(Time::now);
            local_change(&tx, &self.key, &self.identity, header, None, |doc| {
                records::write_new_visit(doc, header.doc_id(), &v, at)
            })
            .map_err(in_batch)?;
            ids.push(header.doc_id());
            on_row(ids.len());
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Edits a visit log. Only its author or a station may.
    pub fn edit_visit(&mut self, id: DocId, edit: &VisitEdit) -> Result<(), WriteError> {
        edit.check()?;
        let tx = self.store.write()?;
        let mut edit = edit.clone();
        if edit.household_id.is_none() {
            let (household, grid) = (&mut edit.household, &mut edit.grid);
            edit.household_id = relink(&tx, &self.key, &self.identity, id, household, grid)?;
        }
        edit_visit_in(&tx, &self.key, &self.identity, id, &edit)?;
        tx.commit()?;
        Ok(())
    }

    /// Opens a ticket.
    pub fn open_ticket(&mut self, ticket: &NewTicket) -> Result<DocId, WriteError> {
        Ok(self.open_tickets(std::slice::from_ref(ticket))?[0])
    }

    /// Opens many tickets in one transaction: all are stored, or none.
    pub fn open_tickets(&mut self, tickets: &[NewTicket]) -> Result<Vec<DocId>, WriteError> {
        self.open_tickets_observed(tickets, &mut |_| {})
    }

    /// [`Node::open_tickets`], calling `on_row` with the number of rows made so far after
    /// each row.
    pub fn open_tickets_observed(
        &mut self,
        tickets: &[NewTicket],
        on_row: &mut dyn FnMut(usize),
    ) -> Result<Vec<DocId>, WriteError> {
        let mut ids = Vec::with_capacity(tickets.len());
        let tx = self.store.write()?;
        let policy = read_policy(&tx)?;
        for (i, t) in tickets.iter().enumerate() {
            let in_batch = |e: WriteError| batch_error(tickets.len(), i, e);
            t.check().map_err(|e| in_batch(e.into()))?;
            let mut t = NewTicket {
                grid: self.identity.default_grid(&t.grid),
                ..t.clone()
            };
            if let (None, Some(value)) = (t.household_id, t.household.clone()) {
                let (id, address, grid) = household_for(
                    &tx,
                    &self.key,
                    &self.identity,
                    t.grid.as_deref(),
                    tickets[i].grid.is_some(),
                    &value,
                )
                .map_err(in_batch)?;
                (t.household_id, t.household, t.grid) = (id, Some(address), grid);
            }
            self.identity
                .needs_grid(t.grid.as_deref())
                .map_err(in_batch)?;
            self.identity
                .may_write_grid(t.grid.as_deref())
                .map_err(in_batch)?;
            let header = self.identity.new_header(RecordKind::Ticket);
            let at = t.opened_at.unwrap_or_else(Time::now);
            if t.due.is_none() {
                let days = policy.ticket_due(t.priority.unwrap_or(Priority::Normal));
                t.due = Some(Time::from_millis(at.millis() + i64::from(days) * DAY_MS));
            }
            if t.channel.is_none() {
                t.channel = Some(if self.identity.role == Role::Station {
                    Channel::WalkIn
                } else {
                    Channel::Visit
                });
            }
            local_change(&tx, &self.key, &self.identity, header, None, |doc| {
                records::write_new_ticket(doc, header.doc_id(), &t, at)
            })
            .map_err(in_batch)?;
            ids.push(header.doc_id());
            on_row(ids.len());
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Updates a ticket. A verdict of the follow-up call is taken only on a ticket that is
    /// (or this update makes) resolved or closed.
    pub fn update_ticket(&mut self, id: DocId, update: &TicketUpdate) -> Result<(), WriteError> {
        update.check()?;
        let tx = self.store.write()?;
        let mut update = update.clone();
        if update.household_id.is_none() {
            let (household, grid) = (&mut update.household, &mut update.grid);
            update.household_id = relink(&tx, &self.key, &self.identity, id, household, grid)?;
        }
        let update = &update;
        if update.satisfaction.is_some() {
            let status = match update.status {
                Some(s) => s,
                None => tx
                    .prepare_cached(
                        "SELECT status FROM records
                         WHERE docno = (SELECT docno FROM doc_index WHERE doc_id = ?1)",
                    )?
                    .query_row([id.as_bytes().as_slice()], |r| {
                        r.get::<_, Option<String>>(0)
                    })
                    .ok()
                    .flatten()
                    .and_then(|s| s.parse::<Status>().ok())
                    .unwrap_or(Status::Open),
            };
            if !matches!(status, Status::Resolved | Status::Closed) {
                return Err(Refusal::NotFinished(status.to_string()).into());
            }
        }
        update_ticket_in(&tx, &self.key, &self.identity, id, update)?;
        tx.commit()?;
        Ok(())
    }

    /// Adds a household to the ledger. Returns its id once it is durably stored.
    pub fn add_household(&mut self, household: &NewHousehold) -> Result<DocId, WriteError> {
        Ok(self.add_households(std::slice::from_ref(household))?[0])
    }

    /// Adds many households in one transaction: all are stored, or none.
    pub fn add_households(
        &mut self,
        households: &[NewHousehold],
    ) -> Result<Vec<DocId>, WriteError> {
        let mut ids = Vec::with_capacity(households.len());
        let tx = self.store.write()?;
        for (i, h) in households.iter().enumerate() {
            let in_batch = |e: WriteError| batch_error(households.len(), i, e);
            h.check().map_err(|e| in_batch(e.into()))?;
            let h = NewHousehold {
                grid: self.identity.default_grid(&h.grid),
                ..h.clone()
            };
            let at = h.added_at.unwrap_or_else(Time::now);
            let id = make_household_in(&tx, &self.key, &self.identity, &h, Some(at))
                .map_err(in_batch)?;
            ids.push(id);
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Edits a household: any member that holds it may, within the grids it may write in.
    pub fn edit_household(&mut self, id: DocId, edit: &HouseholdEdit) -> Result<(), WriteError> {
        edit.check()?;
        let tx = self.store.write()?;
        edit_household_in(&tx, &self.key, &self.identity, id, edit)?;
        tx.commit()?;
        Ok(())
    }

    /// Sets the visit interval for households with `tag`: station only.
    pub fn set_visit_every(&mut self, tag: Tag, days: u32) -> Result<Policy, WriteError> {
        self.set_policy(Field::VisitEvery(tag), days)
    }

    /// Sets the days from a request of `priority` to its ticket's deadline: station only.
    pub fn set_ticket_due(&mut self, priority: Priority, days: u32) -> Result<Policy, WriteError> {
        self.set_policy(Field::TicketDue(priority), days)
    }

    fn set_policy(&mut self, field: Field, days: u32) -> Result<Policy, WriteError> {
        if self.identity.role != Role::Station {
            return Err(Refusal::PolicyStationOnly.into());
        }
        if !(1..=crate::model::MAX_POLICY_DAYS).contains(&days) {
            return Err(Refusal::PolicyDays(crate::model::MAX_POLICY_DAYS).into());
        }
        let tx = self.store.write()?;
        set_policy_in(&tx, &self.key, &self.identity, field, days)?;
        let policy = read_policy(&tx)?;
        tx.commit()?;
        Ok(policy)
    }

    /// Comments on a ticket.
    pub fn comment_ticket(&mut self, id: DocId, text: &str) -> Result<(), WriteError> {
        if text.trim().is_empty() {
            return Err(FieldError::Empty("comment").into());
        }
        if text.len() > records::MAX_LONG_TEXT {
            return Err(FieldError::TooLong("comment", records::MAX_LONG_TEXT).into());
        }
        let me = self.identity.device_id;
        self.change_ticket(id, |doc| records::write_comment(doc, me, text, Time::now()))
    }

    pub(crate) fn change_ticket(
        &mut self,
        id: DocId,
        build: impl FnOnce(&mut AutoCommit) -> Result<String, automerge::AutomergeError>,
    ) -> Result<(), WriteError> {
        let tx = self.store.write()?;
        let header = load_header(&tx, id)?;
        local_change(&tx, &self.key, &self.identity, header, Some(id), build)?;
        tx.commit()?;
        Ok(())
    }
}

pub(crate) fn edit_visit_in(
    tx: &Transaction<'_>,
    key: &DeviceKey,
    identity: &Identity,
    id: DocId,
    edit: &VisitEdit,
) -> Result<(), WriteError> {
    let header = load_header(tx, id)?;
    if header.author != identity.device_id && identity.role != Role::Station {
        return Err(Refusal::NotVisitAuthor.into());
    }
    identity.may_write_grid(edit.grid.as_deref())?;
    check_ticket_links(tx, &edit.link_tickets)?;
    local_change(tx, key, identity, header, Some(id), |doc| {
        records::write_visit_edit(doc, edit)
    })
}

/// A visit this node writes links only to tickets it holds (`visit add --ticket` resolves
/// them; an imported row must name one too).
pub(crate) fn check_ticket_links(
    tx: &Transaction<'_>,
    tickets: &[DocId],
) -> Result<(), WriteError> {
    for &t in tickets {
        match load_header(tx, t) {
            Ok(h) if h.kind == RecordKind::Ticket => {}
            Ok(_) | Err(WriteError::NotAllowed(_)) => {
                return Err(Refusal::UnknownTicket(t.to_string()).into());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub(crate) fn update_ticket_in(
    tx: &Transaction<'_>,
    key: &DeviceKey,
    identity: &Identity,
    id: DocId,
    update: &TicketUpdate,
) -> Result<(), WriteError> {
    let header = load_header(tx, id)?;
    identity.may_write_grid(update.grid.as_deref())?;
    if header.kind != RecordKind::Ticket {
        return Err(Refusal::NotA(id.to_string(), "ticket").into());
    }
    local_change(tx, key, identity, header, Some(id), |doc| {
        records::write_ticket_update(doc, update, Time::now())
    })
}

pub(crate) fn edit_household_in(
    tx: &Transaction<'_>,
    key: &DeviceKey,
    identity: &Identity,
    id: DocId,
    edit: &HouseholdEdit,
) -> Result<(), WriteError> {
    let header = load_header(tx, id)?;
    if header.kind != RecordKind::Household {
        return Err(Refusal::NotA(id.to_string(), "household").into());
    }
    identity.may_write_grid(edit.grid.as_deref())?;
    local_change(tx, key, identity, header, Some(id), |doc| {
        records::write_household_edit(doc, edit)
    })
}

pub(crate) fn set_policy_in(
    tx: &Transaction<'_>,
    key: &DeviceKey,
    identity: &Identity,
    field: Field,
    days: u32,
) -> Result<(), WriteError> {
    if identity.role != Role::Station {
        return Err(Refusal::PolicyStationOnly.into());
    }
    let header = policy_header(identity);
    let id = header.doc_id();
    let existing = if has_doc(tx, id)? { Some(id) } else { None };
    let header = match existing {
        Some(_) => load_header(tx, id)?,
        None => header,
    };
    local_change(tx, key, identity, header, existing, |doc| {
        records::write_policy(doc, id, field, days)
    })
}

/// For an edit of record `id` that names a new `household` (an address or an id): the
/// household it names, found or made in the record's grid (or the edit's `grid`), its
/// address written as the household's, and the grid set to the household's when that
/// differs. `None` when the edit names no household.
fn relink(
    tx: &Transaction<'_>,
    key: &DeviceKey,
    identity: &Identity,
    id: DocId,
    household: &mut Option<String>,
    grid: &mut Option<String>,
) -> Result<Option<DocId>, WriteError> {
    let Some(value) = household.clone() else {
        return Ok(None);
    };
    let current = match grid {
        Some(g) => Some(g.clone()),
        None => grid_of(tx, id)?,
    };
    let (hid, address, hgrid) = household_for(
        tx,
        key,
        identity,
        current.as_deref(),
        grid.is_some(),
        &value,
    )?;
    *household = Some(address);
    if hgrid != current {
        *grid = hgrid;
    }
    Ok(hid)
}

/// The grid of the record `id` as the index holds it.
fn grid_of(tx: &Transaction<'_>, id: DocId) -> Result<Option<String>, WriteError> {
    Ok(tx
        .prepare_cached(
            "SELECT grid FROM records WHERE docno = (SELECT docno FROM doc_index WHERE doc_id = ?1)",
        )?
        .query_row([id.as_bytes().as_slice()], |r| r.get(0))
        .ok()
        .flatten())
}

pub(crate) fn batch_error(len: usize, i: usize, e: WriteError) -> WriteError {
    if len == 1 {
        e
    } else {
        WriteError::InBatch {
            index: i + 1,
            source: Box::new(e),
        }
    }
}

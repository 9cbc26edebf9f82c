//! Local writes: new visits and tickets, edits, status changes and comments made on this
//! node.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction: load the document's latest snapshot,
//! make the Automerge change with this device's actor, check it against the record model
//! (`ingest::rules`), sign it, and store the change, the new snapshot and the record's index
//! row (`store::docs`). Nothing is reported as saved before the commit returns, and the
//! commit is fsynced (`synchronous=FULL`).

use automerge::transaction::CommitOptions;
use automerge::{ActorId, AutoCommit};
use rusqlite::Transaction;
use yizhan_protocol::{DeviceKey, DocHeader, DocId, RecordKind, SignedChange};

use crate::error::WriteError;
use crate::home::Node;
use crate::identity::{Identity, Role};
use crate::model::Time;
use crate::records::{self, FieldError, NewTicket, NewVisit, TicketUpdate, VisitEdit};
use crate::store::docs::{NewChange, load_doc, load_header, persist};

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
            let v = NewVisit {
                grid: self.identity.default_grid(&v.grid),
                ..v.clone()
            };
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
        edit_visit_in(&tx, &self.key, &self.identity, id, edit)?;
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
        for (i, t) in tickets.iter().enumerate() {
            let in_batch = |e: WriteError| batch_error(tickets.len(), i, e);
            t.check().map_err(|e| in_batch(e.into()))?;
            let t = NewTicket {
                grid: self.identity.default_grid(&t.grid),
                ..t.clone()
            };
            self.identity
                .may_write_grid(t.grid.as_deref())
                .map_err(in_batch)?;
            let header = self.identity.new_header(RecordKind::Ticket);
            let at = t.opened_at.unwrap_or_else(Time::now);
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

    /// Updates a ticket.
    pub fn update_ticket(&mut self, id: DocId, update: &TicketUpdate) -> Result<(), WriteError> {
        update.check()?;
        let tx = self.store.write()?;
        update_ticket_in(&tx, &self.key, &self.identity, id, update)?;
        tx.commit()?;
        Ok(())
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
        return Err(WriteError::NotAllowed(
            "only the visit's author or a station may change a visit log".into(),
        ));
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
                return Err(WriteError::NotAllowed(format!(
                    "links to ticket {t}, which this node does not hold"
                )));
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
    local_change(tx, key, identity, header, Some(id), |doc| {
        records::write_ticket_update(doc, update)
    })
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

/// Makes one change on this node inside `tx`: loads the document (or starts it), runs
/// `build` with this device as actor, commits, signs and persists.
pub(crate) fn local_change(
    tx: &Transaction<'_>,
    key: &DeviceKey,
    identity: &Identity,
    header: DocHeader,
    existing: Option<DocId>,
    build: impl FnOnce(&mut AutoCommit) -> Result<String, automerge::AutomergeError>,
) -> Result<(), WriteError> {
    let doc_id = header.doc_id();
    let mut doc = match existing {
        Some(id) => load_doc(tx, id)?,
        None => AutoCommit::new(),
    };
    doc.set_actor(ActorId::from(identity.device_id.as_bytes()));
    let message = build(&mut doc)?;
    let Some(_) = doc.commit_with(
        CommitOptions::default()
            .with_message(message)
            .with_time(Time::now().millis()),
    ) else {
        return Ok(());
    };
    let change = doc
        .get_last_local_change()
        .expect("a commit that returned a hash made a local change");
    let env = SignedChange::sign(key, identity.site_id, doc_id, &change);
    persist(
        tx,
        &header,
        &mut doc,
        &[NewChange {
            env,
            seq: change.seq(),
        }],
    )?;
    Ok(())
}

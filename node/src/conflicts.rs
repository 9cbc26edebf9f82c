//! Conflicts across all records, and settling them.
//!
//! A field holds concurrent values when two members set it without seeing each other's
//! change: Automerge keeps both, shows one, and the record's index row counts the conflicted
//! fields (`records.conflicts`, kept by `materialize` each time a record is written or
//! merged). [`Node::conflicts`] therefore loads only the documents the index marks, and reads
//! each concurrent value with the change that wrote it (its author and time).
//!
//! [`Node::resolve_conflict`] settles one field with a new signed change made through the
//! ordinary edit paths (`edit_visit_in`, `update_ticket_in`), so the write rules are the
//! same as for `visit edit` and `ticket update`. The new value is put on top of every
//! concurrent value this node holds, so every node that receives the change shows it and no
//! longer reports the conflict.

use std::collections::HashMap;
use std::panic::catch_unwind;

use automerge::{AutoCommit, ObjId as ExId, ROOT, ReadDoc};
use serde::{Deserialize, Serialize};
use yizhan_protocol::envelope::decode_change;
use yizhan_protocol::{DocId, RecordKind};

use crate::error::{ReadError, Refusal, ResolveError, WriteError};
use crate::home::Node;
use crate::model::{Category, Priority, Status, Time, UnknownValue};
use crate::records::{
    Field, FieldError, HouseholdEdit, TicketUpdate, VisitEdit, fields_of, scalar_field, scalar_text,
};
use crate::store::DOCUMENT_BYTES_SQL;
use crate::store::docs::{load_doc, load_header_conn};
use crate::write::{edit_household_in, edit_visit_in, set_policy_in, update_ticket_in};

/// One of the concurrent values of a field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictValue {
    /// The value.
    pub value: String,
    /// Device id of the author of the change that wrote it.
    pub author: String,
    /// When that change was made (RFC 3339, its author's clock).
    pub at: String,
}

/// A field of a record with concurrent values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordConflict {
    /// The record id.
    pub record: String,
    /// `visit` or `ticket`.
    pub kind: String,
    /// The field.
    pub field: String,
    /// Every concurrent value; the first is the one shown.
    pub values: Vec<ConflictValue>,
}

/// A settled conflict: the field now holds `value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    /// The record id.
    pub id: String,
    /// The field.
    pub field: String,
    /// The value written, in its stored form (a category's slug, a whole device id, ...).
    pub value: String,
}

/// Why a conflict could not be settled. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ConflictError {
    /// The record kind has no such field.
    #[error("a {kind} has no field '{field}' (fields: {fields})")]
    UnknownField {
        /// `visit` or `ticket`.
        kind: &'static str,
        /// What was given.
        field: String,
        /// The fields it has.
        fields: String,
    },
    /// The field is set once and never changed.
    #[error("{0} is set when the record is made and cannot be changed")]
    Fixed(String),
    /// The field holds one value only.
    #[error("{kind} {id} has no conflict in '{field}' (nothing to resolve)")]
    NoConflict {
        /// `visit` or `ticket`.
        kind: &'static str,
        /// The record.
        id: DocId,
        /// The field.
        field: String,
    },
    /// The value is not one the field accepts.
    #[error(transparent)]
    Value(#[from] UnknownValue),
    /// The time is malformed.
    #[error(transparent)]
    Time(#[from] crate::model::BadTime),
    /// The value breaks a field rule.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// A device id did not resolve.
    #[error(transparent)]
    Device(#[from] ResolveError),
    /// The write was refused or failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Reading failed.
    #[error(transparent)]
    Read(#[from] ReadError),
}

impl From<rusqlite::Error> for ConflictError {
    fn from(e: rusqlite::Error) -> Self {
        ConflictError::Write(WriteError::Sqlite(e))
    }
}

/// The changes of a document by actor, as (first op, last op, time), to find the change
/// that wrote an operation.
struct ChangeIndex {
    by_actor: HashMap<Vec<u8>, Vec<(u64, u64, i64)>>,
}

impl ChangeIndex {
    fn new(doc: &mut AutoCommit) -> ChangeIndex {
        Self::of(doc.get_changes(&[]).iter())
    }

    fn of<'a>(changes: impl Iterator<Item = &'a automerge::Change>) -> ChangeIndex {
        let mut by_actor: HashMap<Vec<u8>, Vec<(u64, u64, i64)>> = HashMap::new();
        for c in changes {
            by_actor
                .entry(c.actor_id().to_bytes().to_vec())
                .or_default()
                .push((c.start_op().get(), c.max_op(), c.timestamp()));
        }
        ChangeIndex { by_actor }
    }

    /// From the changes stored for document number `docno` (the changes its snapshot
    /// holds), read without asking Automerge to rebuild them from the document.
    fn stored(conn: &rusqlite::Connection, docno: i64, id: DocId) -> Result<Self, ReadError> {
        let mut stmt = conn.prepare_cached("SELECT bytes FROM changes WHERE docno = ?1")?;
        let changes = stmt
            .query_map([docno], |r| r.get::<_, Vec<u8>>(0))?
            .map(|bytes| {
                decode_change(&bytes?).map_err(|e| ReadError::Damaged(id, format!("a change: {e}")))
            })
            .collect::<Result<Vec<_>, ReadError>>()?;
        Ok(Self::of(changes.iter()))
    }

    /// The author and time of the change that made operation `id`.
    fn author_and_time(&self, id: &ExId) -> (String, String) {
        let ExId::Id(counter, actor, _) = id else {
            return (String::new(), String::new());
        };
        let actor = actor.to_bytes();
        let at = self
            .by_actor
            .get(actor)
            .and_then(|changes| {
                changes
                    .iter()
                    .find(|(first, last, _)| (*first..=*last).contains(counter))
            })
            .map(|(_, _, t)| Time::from_millis(*t).to_rfc3339())
            .unwrap_or_default();
        (hex::encode(actor), at)
    }
}

/// The fields of a record with more than one value, each with its values and the ids of
/// the operations that set them; the value shown comes first.
type Concurrent = Vec<(Field, Vec<(Option<String>, ExId)>)>;

fn concurrent_fields(doc: &AutoCommit, kind: RecordKind) -> Concurrent {
    let mut out = Vec::new();
    for field in fields_of(kind) {
        if *field == Field::AddedAt {
            continue; // the earliest counts (`records::read_household`), no one chooses
        }
        let mut all: Vec<(Option<String>, ExId)> = doc
            .get_all(ROOT, *field)
            .unwrap_or_default()
            .into_iter()
            .map(|(v, id)| (scalar_text(&v), id))
            .collect();
        if all.len() < 2 {
            continue;
        }
        // Equal values written concurrently (two makers of one household) are no conflict.
        let mut distinct: Vec<&Option<String>> = all.iter().map(|(v, _)| v).collect();
        distinct.sort();
        distinct.dedup();
        if distinct.len() < 2 {
            continue;
        }
        if let Ok(Some((_, winner))) = doc.get(ROOT, *field)
            && let Some(pos) = all.iter().position(|(_, id)| *id == winner)
        {
            all.swap(0, pos);
        }
        out.push((*field, all));
    }
    out
}

fn with_authors(fields: Concurrent, index: &ChangeIndex) -> Vec<(String, Vec<ConflictValue>)> {
    fields
        .into_iter()
        .map(|(field, all)| {
            let values = all
                .iter()
                .filter_map(|(v, id)| {
                    let value = v.clone()?;
                    let (author, at) = index.author_and_time(id);
                    Some(ConflictValue { value, author, at })
                })
                .collect();
            (field.as_str().to_string(), values)
        })
        .collect()
}

/// The fields of a record with concurrent values, each value with its author and time; the
/// value shown comes first.
pub fn read_field_conflicts(
    doc: &mut AutoCommit,
    kind: RecordKind,
) -> Vec<(String, Vec<ConflictValue>)> {
    let fields = concurrent_fields(doc, kind);
    if fields.is_empty() {
        return Vec::new();
    }
    let index = ChangeIndex::new(doc);
    with_authors(fields, &index)
}

impl Node {
    /// Every field with concurrent values, across all records this node holds: records in
    /// the order `list` shows them (visits, then tickets; oldest first), fields in display
    /// order. Only the records whose index row counts a conflict are loaded.
    pub fn conflicts(&self) -> Result<Vec<RecordConflict>, ReadError> {
        // One read transaction: a concurrent writer cannot change the answer half-way.
        let tx = self.store().conn().unchecked_transaction()?;
        // Kind and number come with the index row: no look-up of the id.
        let rows: Vec<(i64, Vec<u8>, u8)> = tx
            .prepare(
                "SELECT docno, doc_id, kind FROM records WHERE conflicts > 0
                 ORDER BY kind, at_ms, doc_id",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut document = tx.prepare(&format!(
            "SELECT {DOCUMENT_BYTES_SQL} FROM docs d WHERE d.docno = ?1"
        ))?;
        let mut out = Vec::new();
        for (docno, raw, kind) in rows {
            let id = DocId::from_slice(&raw)
                .ok_or_else(|| ReadError::Index("malformed record id in the index".into()))?;
            let kind = RecordKind::from_code(kind)
                .ok_or_else(|| ReadError::Damaged(id, "unknown kind".into()))?;
            let bytes: Vec<u8> = document.query_row([docno], |r| r.get(0))?;
            let doc = match catch_unwind(|| AutoCommit::load(&bytes)) {
                Ok(Ok(doc)) => doc,
                Ok(Err(e)) => return Err(ReadError::Damaged(id, e.to_string())),
                Err(_) => {
                    return Err(ReadError::Damaged(
                        id,
                        "the snapshot cannot be loaded".into(),
                    ));
                }
            };
            let fields = concurrent_fields(&doc, kind);
            if fields.is_empty() {
                continue;
            }
            let index = ChangeIndex::stored(&tx, docno, id)?;
            for (field, values) in with_authors(fields, &index) {
                out.push(RecordConflict {
                    record: id.to_string(),
                    kind: kind.name().to_string(),
                    field,
                    values,
                });
            }
        }
        Ok(out)
    }

    /// Settles the conflict in `field` of record `id` with `value`: a new signed change
    /// that sets the field over every concurrent value. The value is parsed as the field's
    /// type (a category's slug or Chinese name, a status, a priority, a time, a device id or
    /// prefix, or text within the field's limits). A visit log may be changed only by its
    /// author or a station, as for `visit edit`. Refused, with nothing written, when the
    /// field holds no concurrent values.
    pub fn resolve_conflict(
        &mut self,
        id: DocId,
        field: &str,
        value: &str,
    ) -> Result<Resolved, ConflictError> {
        let kind = match load_header_conn(self.store().conn(), id) {
            Ok(h) => h.kind,
            Err(ReadError::Sqlite(rusqlite::Error::QueryReturnedNoRows)) => {
                return Err(WriteError::from(Refusal::NoRecord(id.to_string())).into());
            }
            Err(e) => return Err(e.into()),
        };
        let Some(field) = scalar_field(kind, field) else {
            let fields: Vec<&str> = fields_of(kind).iter().map(|f| f.as_str()).collect();
            return Err(ConflictError::UnknownField {
                kind: kind.name(),
                field: field.to_string(),
                fields: fields.join(", "),
            });
        };
        let edit = self.parse_value(kind, field, value)?;
        let stored = match &edit {
            Edit::Visit(_, v) | Edit::Ticket(_, v) | Edit::Household(_, v) => v.clone(),
            Edit::Policy(_, _, v) => v.clone(),
        };
        let key = self.device_key();
        let identity = self.identity().clone();
        let tx = self.store_mut().write()?;
        let conflicted = load_doc(&tx, id)?
            .get_all(ROOT, field.as_str())
            .map(|all| all.len() > 1)
            .unwrap_or(false);
        if !conflicted {
            return Err(ConflictError::NoConflict {
                kind: kind.name(),
                id,
                field: field.as_str().to_string(),
            });
        }
        match &edit {
            Edit::Visit(e, _) => edit_visit_in(&tx, &key, &identity, id, e)?,
            Edit::Ticket(u, _) => update_ticket_in(&tx, &key, &identity, id, u)?,
            Edit::Household(e, _) => edit_household_in(&tx, &key, &identity, id, e)?,
            Edit::Policy(f, days, _) => set_policy_in(&tx, &key, &identity, *f, *days)?,
        }
        // The new value stands alone now; if it does not (the change was empty), say so
        // rather than report a resolution that did not happen.
        let settled = load_doc(&tx, id)?
            .get_all(ROOT, field.as_str())
            .map(|all| all.len() == 1)
            .unwrap_or(false);
        if !settled {
            return Err(WriteError::from(Refusal::NotSettled(field.to_string())).into());
        }
        tx.commit()?;
        Ok(Resolved {
            id: id.to_string(),
            field: field.as_str().to_string(),
            value: stored,
        })
    }

    /// The edit that sets `field` to `value`, checked, and the value as it is stored.
    fn parse_value(
        &self,
        kind: RecordKind,
        field: Field,
        value: &str,
    ) -> Result<Edit, ConflictError> {
        let text = Some(value.to_string());
        let edit = match kind {
            RecordKind::Visit => {
                let mut e = VisitEdit::default();
                let stored = match field {
                    Field::Household => {
                        e.household = text;
                        value.to_string()
                    }
                    Field::Grid => {
                        e.grid = text;
                        value.to_string()
                    }
                    Field::Note => {
                        e.note = text;
                        value.to_string()
                    }
                    Field::Needs => {
                        e.needs = text;
                        value.to_string()
                    }
                    Field::Category => {
                        let c: Category = value.parse()?;
                        e.category = Some(c);
                        c.slug().to_string()
                    }
                    Field::VisitedAt => {
                        let t: Time = value.parse()?;
                        e.visited_at = Some(t);
                        t.to_rfc3339()
                    }
                    other => return Err(ConflictError::Fixed(other.as_str().to_string())),
                };
                e.check()?;
                Edit::Visit(e, stored)
            }
            RecordKind::Ticket => {
                let mut u = TicketUpdate::default();
                let stored = match field {
                    Field::Title => {
                        u.title = text;
                        value.to_string()
                    }
                    Field::Household => {
                        u.household = text;
                        value.to_string()
                    }
                    Field::Grid => {
                        u.grid = text;
                        value.to_string()
                    }
                    Field::Note => {
                        u.note = text;
                        value.to_string()
                    }
                    Field::Status => {
                        let s: Status = value.parse()?;
                        u.status = Some(s);
                        s.as_str().to_string()
                    }
                    Field::Priority => {
                        let p: Priority = value.parse()?;
                        u.priority = Some(p);
                        p.as_str().to_string()
                    }
                    Field::Category => {
                        let c: Category = value.parse()?;
                        u.category = Some(c);
                        c.slug().to_string()
                    }
                    Field::Assignee => {
                        let d = self.resolve_device(value)?;
                        u.assignee = Some(d);
                        d.to_string()
                    }
                    other => return Err(ConflictError::Fixed(other.as_str().to_string())),
                };
                u.check()?;
                Edit::Ticket(u, stored)
            }
            RecordKind::Household => {
                let mut e = HouseholdEdit::default();
                let stored = match field {
                    Field::Address => {
                        e.address = text;
                        value.to_string()
                    }
                    Field::Grid => {
                        e.grid = text;
                        value.to_string()
                    }
                    Field::Phone => {
                        e.phone = text;
                        value.to_string()
                    }
                    Field::Note => {
                        e.note = text;
                        value.to_string()
                    }
                    Field::Residents => {
                        let names: Vec<String> = value
                            .split(['\n', '、', ','])
                            .map(str::trim)
                            .filter(|n| !n.is_empty())
                            .map(str::to_string)
                            .collect();
                        let stored = names.join("\n");
                        e.residents = Some(names);
                        stored
                    }
                    Field::Tag(t) => match value.trim() {
                        "true" | "yes" | "是" => {
                            e.tag.push(t);
                            "true".to_string()
                        }
                        "false" | "no" | "否" => {
                            e.untag.push(t);
                            "false".to_string()
                        }
                        _ => {
                            return Err(ConflictError::Fixed(format!(
                                "{} (give true or false)",
                                field.as_str()
                            )));
                        }
                    },
                    other => return Err(ConflictError::Fixed(other.as_str().to_string())),
                };
                e.check()?;
                Edit::Household(e, stored)
            }
            // A notice is published whole; its fields are not settled one by one.
            RecordKind::Notice => return Err(ConflictError::Fixed(field.as_str().to_string())),
            RecordKind::Policy => {
                let days: u32 = value.trim().parse().map_err(|_| {
                    ConflictError::Fixed(format!("{} (give whole days)", field.as_str()))
                })?;
                Edit::Policy(field, days, days.to_string())
            }
        };
        Ok(edit)
    }
}

/// One field's new value, as the edit that writes it and its stored form.
enum Edit {
    Visit(VisitEdit, String),
    Ticket(TicketUpdate, String),
    Household(HouseholdEdit, String),
    Policy(Field, u32, String),
}

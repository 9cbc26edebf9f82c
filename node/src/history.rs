//! A record's history, read from its stored signed changes: who made each change (the
//! signer, and its name where this node knows it), when (the time its author's clock wrote
//! into the change), and what it changed (each field it set, with the new value).
//!
//! The entries come from the `changes` table, not from a summary kept beside them: each
//! change's bytes are decoded and its operations are read back into fields. The signer is the
//! stored signer, which `check_bytes` bound to the change's actor when the change was stored.
//! Entries are in causal order (a change after every change it depends on), oldest first.

use std::collections::HashMap;

use automerge::legacy::{Key, ObjectId, OpId, OpType};
use automerge::{ActorId, ObjType, ScalarValue};

use yizhan_protocol::DocId;
use yizhan_protocol::envelope::decode_change;

use crate::error::ReadError;
use crate::identity::Identity;
use crate::model::Time;
use crate::records::{CommentField, Field, FieldChange, HistoryEntry};

/// The history of record `id`, oldest first, read from its stored signed changes.
pub(crate) fn read(
    conn: &rusqlite::Connection,
    identity: &Identity,
    id: DocId,
) -> Result<Vec<HistoryEntry>, ReadError> {
    let mut stmt = conn.prepare_cached(
        "SELECT hash, signer, bytes FROM changes
         WHERE docno = (SELECT docno FROM doc_index WHERE doc_id = ?1) ORDER BY lseq",
    )?;
    let rows = stmt
        .query_map([id.as_bytes().as_slice()], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut changes = Vec::with_capacity(rows.len());
    for (hash, signer, bytes) in rows {
        let change = decode_change(&bytes)
            .map_err(|e| ReadError::Damaged(id, format!("change {}: {e}", hex::encode(&hash))))?;
        changes.push((hex::encode(signer), change));
    }
    let names = device_names(conn, identity)?;
    let mut labels = Labels::default();
    Ok(causal_order(&changes)
        .into_iter()
        .map(|i| {
            let (signer, change) = &changes[i];
            HistoryEntry {
                hash: hex::encode(change.hash().0),
                author: signer.clone(),
                author_name: names.get(signer).cloned(),
                at: Time::from_millis(change.timestamp()).to_rfc3339(),
                message: change.message().unwrap_or_default().to_string(),
                changes: labels.describe(change),
            }
        })
        .collect())
}

/// What each of `extra` sets: changes of record `id` that are not stored with it (held in
/// quarantine), read as if they followed its stored changes, so that an item of a list or
/// map a stored change made is named. In the order given.
pub(crate) fn describe_unstored(
    conn: &rusqlite::Connection,
    id: DocId,
    extra: &[automerge::Change],
) -> Result<Vec<Vec<FieldChange>>, ReadError> {
    let mut stmt = conn.prepare_cached(
        "SELECT bytes FROM changes
         WHERE docno = (SELECT docno FROM doc_index WHERE doc_id = ?1) ORDER BY lseq",
    )?;
    let stored = stmt
        .query_map([id.as_bytes().as_slice()], |r| r.get::<_, Vec<u8>>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut changes = Vec::with_capacity(stored.len() + extra.len());
    for bytes in stored {
        let change = decode_change(&bytes).map_err(|e| ReadError::Damaged(id, e.to_string()))?;
        changes.push((String::new(), change));
    }
    let first_extra = changes.len();
    changes.extend(extra.iter().map(|c| (String::new(), c.clone())));
    let mut labels = Labels::default();
    let mut out = vec![Vec::new(); extra.len()];
    for i in causal_order(&changes) {
        let described = labels.describe(&changes[i].1);
        if i >= first_extra {
            out[i - first_extra] = described;
        }
    }
    Ok(out)
}

/// The names this node knows devices by: the roster's, and its own.
fn device_names(
    conn: &rusqlite::Connection,
    identity: &Identity,
) -> Result<HashMap<String, String>, ReadError> {
    let mut names: HashMap<String, String> = conn
        .prepare_cached("SELECT device, name FROM members")?
        .query_map([], |r| {
            Ok((hex::encode(r.get::<_, Vec<u8>>(0)?), r.get::<_, String>(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    names.insert(identity.device_id.to_string(), identity.name.clone());
    Ok(names)
}

/// Indices of `changes` in causal order: stored order, except that a change never comes
/// before a change it depends on.
fn causal_order(changes: &[(String, automerge::Change)]) -> Vec<usize> {
    let index: HashMap<automerge::ChangeHash, usize> = changes
        .iter()
        .enumerate()
        .map(|(i, (_, c))| (c.hash(), i))
        .collect();
    let mut done = vec![false; changes.len()];
    let mut order = Vec::with_capacity(changes.len());
    for start in 0..changes.len() {
        // Depth-first over the dependencies, without recursion.
        let mut stack = vec![(start, false)];
        while let Some((i, expanded)) = stack.pop() {
            if done[i] {
                continue;
            }
            if expanded {
                done[i] = true;
                order.push(i);
                continue;
            }
            stack.push((i, true));
            for dep in changes[i].1.deps() {
                if let Some(&d) = index.get(dep)
                    && !done[d]
                {
                    stack.push((d, false));
                }
            }
        }
    }
    order
}

/// What earlier changes made, replayed in causal order: the objects (so that later
/// operations on them can be named: the residents list, the linked-tickets map, the comments
/// list and each comment), and the operations that hold each root field's value now.
#[derive(Default)]
struct Labels {
    objects: HashMap<(u64, ActorId), Object>,
    live: HashMap<String, Vec<(OpId, serde_json::Value)>>,
}

/// An object a record holds: a root field's list or map, or one comment's map.
#[derive(Clone, Copy, PartialEq)]
enum Object {
    /// The object at this root field.
    Root(Field),
    /// A comment's map, in the `comments` list.
    Comment,
}

/// What a change that writes a comment's text is shown as setting: not a record field (a
/// comment is an item of `comments`), so it is named here.
const COMMENT: &str = "comment";

fn json_of(value: &ScalarValue) -> serde_json::Value {
    match value {
        ScalarValue::Str(s) => serde_json::Value::String(s.to_string()),
        ScalarValue::Null => serde_json::Value::Null,
        ScalarValue::Boolean(b) => serde_json::Value::Bool(*b),
        other => serde_json::Value::String(other.to_string()),
    }
}

impl Labels {
    fn label(&self, obj: &ObjectId) -> Option<Object> {
        match obj {
            ObjectId::Root => None,
            ObjectId::Id(OpId(counter, actor)) => {
                self.objects.get(&(*counter, actor.clone())).copied()
            }
        }
    }

    /// The fields one change set, in the order it set them.
    fn describe(&mut self, change: &automerge::Change) -> Vec<FieldChange> {
        let mut out: Vec<FieldChange> = Vec::new();
        let start = change.start_op().get();
        let actor = change.actor_id().clone();
        let expanded = change.decode();
        for (i, op) in expanded.operations.iter().enumerate() {
            let op_id = (start + i as u64, actor.clone());
            if let (ObjectId::Root, Key::Map(k)) = (&op.obj, &op.key) {
                // The values this operation supersedes no longer hold the field.
                let live = self.live.entry(k.to_string()).or_default();
                live.retain(|(id, _)| !op.pred.iter().any(|p| p == id));
                if let OpType::Put(v) = &op.action {
                    live.push((OpId(op_id.0, op_id.1.clone()), json_of(v)));
                }
            }
            match (&op.obj, &op.key, &op.action) {
                // The record's own bookkeeping, not fields a person set.
                (ObjectId::Root, Key::Map(k), _)
                    if matches!(Field::parse(k), Some(Field::Kind | Field::Id)) => {}
                (ObjectId::Root, Key::Map(k), OpType::Put(v)) => out.push(FieldChange {
                    field: k.to_string(),
                    value: json_of(v),
                }),
                // A delete removes the values it names; a concurrent value it did not see
                // may remain (Automerge settles a conflict in favour of the value already
                // shown this way), and then that value is what the field now holds.
                (ObjectId::Root, Key::Map(k), OpType::Delete) => out.push(FieldChange {
                    field: k.to_string(),
                    value: self
                        .live
                        .get(k.as_str())
                        .and_then(|live| live.iter().max_by(|a, b| a.0.cmp(&b.0)))
                        .map_or(serde_json::Value::Null, |(_, v)| v.clone()),
                }),
                (ObjectId::Root, Key::Map(k), OpType::Make(kind)) => {
                    let field = match (Field::parse(k), kind) {
                        (Some(f @ (Field::Residents | Field::Comments)), ObjType::List) => f,
                        (Some(f @ Field::Tickets), ObjType::Map) => f,
                        _ => continue,
                    };
                    self.objects.insert(op_id, Object::Root(field));
                    if field == Field::Residents {
                        // A new list replaces the residents, even when it stays empty.
                        push_item(&mut out, Field::Residents.as_str(), None);
                    }
                }
                (obj, _, action) => match (self.label(obj), action) {
                    (Some(Object::Root(Field::Residents)), OpType::Put(v)) if op.insert => {
                        push_item(&mut out, Field::Residents.as_str(), Some(json_of(v)));
                    }
                    (Some(Object::Root(Field::Tickets)), OpType::Put(_)) => {
                        if let Key::Map(ticket) = &op.key {
                            push_item(
                                &mut out,
                                Field::Tickets.as_str(),
                                Some(serde_json::Value::String(ticket.to_string())),
                            );
                        }
                    }
                    (Some(Object::Root(Field::Comments)), OpType::Make(ObjType::Map)) => {
                        self.objects.insert(op_id, Object::Comment);
                    }
                    (Some(Object::Comment), OpType::Put(v)) => {
                        if matches!(&op.key, Key::Map(k) if CommentField::parse(k) == Some(CommentField::Text))
                        {
                            out.push(FieldChange {
                                field: COMMENT.into(),
                                value: json_of(v),
                            });
                        }
                    }
                    _ => {}
                },
            }
        }
        out
    }
}

/// Adds `item` to the array value of `field` in `out`, starting the array if needed.
fn push_item(out: &mut Vec<FieldChange>, field: &str, item: Option<serde_json::Value>) {
    let pos = match out.iter().position(|c| c.field == field) {
        Some(p) => p,
        None => {
            out.push(FieldChange {
                field: field.to_string(),
                value: serde_json::Value::Array(Vec::new()),
            });
            out.len() - 1
        }
    };
    if let (Some(item), serde_json::Value::Array(items)) = (item, &mut out[pos].value) {
        items.push(item);
    }
}

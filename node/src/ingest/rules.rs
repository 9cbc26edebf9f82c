//! Admission rules against forged and abusive peers, applied by ingest on top of the
//! envelope checks (`SignedChange::verify_many`) and the write rules (`ingest::may_write`).
//!
//! - **Expired members.** A change whose author's newest known certificate had expired
//!   at the time the change claims to have been made is refused ("made after its
//!   author's membership expired"). Changes made before the expiry still count: an
//!   expired member's earlier work stays valid when others relay it. (A change's time is
//!   what its author claims, so a member could backdate; the door, `Hello`, refuses an
//!   expired certificate whatever the clock says.)
//! - **Equivocation.** An author never makes two different changes with the same
//!   `(actor, seq)` in one document. A change whose `(actor, seq)` is already stored (or
//!   admitted earlier in the same batch) under another hash is refused, and the author is
//!   recorded in the `misbehaviour` table (shown by `yizhan status`). Its signature has
//!   been verified by then, so the two changes are proof that the author signed both.
//! - **Nesting.** A record's schema nests objects at most 2 deep (`comments` → one
//!   comment map). A document in which any object, including values hidden in a
//!   conflict, sits deeper than [`MAX_OBJECT_DEPTH`] below the root after the batch's
//!   changes are applied is refused: every change of that document in the batch is
//!   rejected and the stored document is left as it was. This keeps every reader of a
//!   document (which may walk it recursively) away from unbounded depth.
//!
//! - **Operations.** A record holds at most [`MAX_RECORD_OPS`] Automerge operations over its
//!   whole history. Before a batch's changes are applied, each is admitted in order while
//!   the record's operations plus the admitted changes' stay within the budget; a change
//!   that would go over is refused ("the record would hold ... operations"), nothing of it
//!   stored. Each change is already at most `MAX_CHANGE_OPS` (refused before decoding by
//!   `decode_change`); this bounds what a record, and every node that holds it, must
//!   materialise when it is loaded.
//!
//! The checks are pure functions (unit-tested below) and a per-document `Gate` that
//! ingest asks once per verified change.

use std::collections::HashMap;

use automerge::ObjId;
use automerge::{ObjType, Prop, ROOT, ReadDoc, ScalarValue, Value, ValueRef};
use rusqlite::{OptionalExtension, Transaction, params};
use yizhan_protocol::{ChangeHash, DeviceId, DocId, RecordKind, SiteId, VerifiedChange};

use crate::records;
use crate::records::{CommentField, Field};

/// The deepest an object may sit below a record document's root (the root's own fields
/// are depth 1). The record schema uses 2.
pub const MAX_OBJECT_DEPTH: usize = 8;

/// The most Automerge operations one record may hold, over its whole history.
///
/// Sized from the record model: a new visit is at most 366 operations, an edit that
/// replaces the residents 108 plus its ticket links, a ticket 12, a comment 4, a field
/// update 1 each. 65,536 is a ticket with 16,000 comments, or a visit whose 100 residents
/// were rewritten 600 times. Loading a record of this size takes Automerge about 20 MB.
pub const MAX_RECORD_OPS: u64 = 1 << 16;

/// Most misbehaviour records kept; older ones are dropped.
const MAX_MISBEHAVIOUR_KEPT: i64 = 1000;

/// The kind of misbehaviour recorded for two different changes with one `(actor, seq)`.
pub const EQUIVOCATION: &str = "equivocation";

/// Why a change must be refused because its author's certificate had expired when it
/// claims to have been made, if so.
pub fn made_after_expiry(expires_at_ms: Option<i64>, change_time_ms: i64) -> Option<String> {
    match expires_at_ms {
        Some(e) if change_time_ms >= e => {
            Some("it was made after its author's membership expired".to_string())
        }
        _ => None,
    }
}

/// The misbehaviour detail for two changes by one author with one sequence number.
pub fn equivocation_detail(doc: DocId, seq: u64, first: ChangeHash, second: ChangeHash) -> String {
    format!("record {doc}: change {seq} signed twice, as {first} and as {second}")
}

/// Checks that no object of `doc` sits deeper than `max` below the root. Every value of
/// every key is followed, including values that lost a conflict. Returns the first depth
/// found over the limit.
pub fn check_depth(doc: &impl ReadDoc, max: usize) -> Result<(), usize> {
    let mut stack = vec![(ROOT, 0usize)];
    while let Some((obj, depth)) = stack.pop() {
        // One pass over the object's visible values; only a value with a conflict is
        // looked up again, for the values that lost it (one of them may be an object).
        let mut children: Vec<ObjId> = Vec::new();
        let mut conflicted: Vec<Prop> = Vec::new();
        match doc.object_type(&obj) {
            Ok(ObjType::Map | ObjType::Table) => {
                for item in doc.map_range(&obj, ..) {
                    if item.conflict {
                        conflicted.push(Prop::Map(item.key.into_owned()));
                    } else if let ValueRef::Object(_) = item.value {
                        children.push(item.id());
                    }
                }
            }
            Ok(ObjType::List) => {
                for item in doc.list_range(&obj, ..) {
                    if item.conflict {
                        conflicted.push(Prop::Seq(item.index));
                    } else if let ValueRef::Object(_) = item.value {
                        children.push(item.id());
                    }
                }
            }
            Ok(ObjType::Text) | Err(_) => {}
        }
        for prop in conflicted {
            for (value, id) in doc.get_all(&obj, prop).unwrap_or_default() {
                if let Value::Object(_) = value {
                    children.push(id);
                }
            }
        }
        for id in children {
            if depth + 1 > max {
                return Err(depth + 1);
            }
            stack.push((id, depth + 1));
        }
    }
    Ok(())
}

/// The root fields of `before` (a record's keys before a batch) that hold no value in the
/// merged `doc`. Settling a conflict deletes a field's other values and keeps the one
/// shown; a change that deletes a field's last value (a ticket's title, a household's
/// grid, which would take it out of every grid's scope) is refused.
pub fn removed_fields(before: &[String], doc: &impl ReadDoc) -> Vec<String> {
    before
        .iter()
        .filter(|k| matches!(doc.get(automerge::ROOT, k.as_str()), Ok(None)))
        .cloned()
        .collect()
}

/// Whether the change `bytes` deletes one of `fields` at the record's root.
pub fn deletes_any(bytes: &[u8], fields: &[String]) -> bool {
    use automerge::legacy::{Key, ObjectId, OpType};
    let Ok(change) = automerge::Change::from_bytes(bytes.to_vec()) else {
        return false;
    };
    let Ok(expanded) = expand(&change) else {
        return false;
    };
    expanded.operations.iter().any(|op| {
        matches!(op.action, OpType::Delete)
            && op.obj == ObjectId::Root
            && matches!(&op.key, Key::Map(k) if fields.iter().any(|f| f.as_str() == k.as_str()))
    })
}

/// Why a merged document must be refused for its nesting, if so (see the module docs).
pub fn nesting(doc: &impl ReadDoc) -> Result<(), String> {
    check_depth(doc, MAX_OBJECT_DEPTH).map_err(|depth| {
        format!("it nests objects {depth} deep, over the limit of {MAX_OBJECT_DEPTH}")
    })
}

/// Which of a batch's changes to a record its operation budget admits (see the module
/// docs). `held` is the number of operations the record holds, `incoming` each change's,
/// in the order they are to be applied. A change is admitted while the total stays within
/// [`MAX_RECORD_OPS`]; one that would go over gets the reason it is refused, and a later,
/// smaller one may still fit.
pub fn op_budget(held: u64, incoming: impl IntoIterator<Item = usize>) -> Vec<Result<(), String>> {
    let mut total = held;
    incoming
        .into_iter()
        .map(|ops| {
            let after = total.saturating_add(ops as u64);
            if after > MAX_RECORD_OPS {
                Err(format!(
                    "the record would hold {after} operations, over the limit of {MAX_RECORD_OPS}"
                ))
            } else {
                total = after;
                Ok(())
            }
        })
        .collect()
}

/// The per-document checks of one ingest batch: expiry and equivocation.
pub(crate) struct Gate {
    doc: DocId,
    /// `(signer, seq)` → hash of the change admitted for it earlier in this batch.
    claimed: HashMap<(DeviceId, u64), ChangeHash>,
    /// Each signer's certificate expiry, read once.
    expiry: HashMap<DeviceId, Option<i64>>,
}

impl Gate {
    /// The gate for the changes of `doc` in one batch.
    pub(crate) fn new(doc: DocId) -> Gate {
        Gate {
            doc,
            claimed: HashMap::new(),
            expiry: HashMap::new(),
        }
    }

    /// Why `v` must be refused, if it must. An equivocation is recorded as misbehaviour
    /// (inside `tx`, so it is kept with the rest of the batch).
    pub(crate) fn check(
        &mut self,
        tx: &Transaction<'_>,
        origin: Option<DeviceId>,
        v: &VerifiedChange,
    ) -> rusqlite::Result<Option<String>> {
        let signer = v.envelope.signer;
        let expires = match self.expiry.get(&signer) {
            Some(e) => *e,
            None => {
                let e = member_expiry(tx, signer)?;
                self.expiry.insert(signer, e);
                e
            }
        };
        if let Some(why) = made_after_expiry(expires, v.change.timestamp()) {
            return Ok(Some(why));
        }
        let seq = v.change.seq();
        let hash = v.envelope.hash;
        let earlier = match self.claimed.get(&(signer, seq)) {
            Some(h) => Some(*h),
            None => stored_hash(tx, self.doc, signer, seq)?,
        };
        if let Some(first) = earlier
            && first != hash
        {
            let detail = equivocation_detail(self.doc, seq, first, hash);
            record(tx, signer, EQUIVOCATION, &detail, origin)?;
            return Ok(Some(format!(
                "equivocation: its author already signed another change {seq} of this record"
            )));
        }
        self.claimed.insert((signer, seq), hash);
        Ok(None)
    }
}

/// The expiry of `device`'s newest stored certificate (`None`: never, or no certificate).
pub(crate) fn member_expiry(
    tx: &Transaction<'_>,
    device: DeviceId,
) -> rusqlite::Result<Option<i64>> {
    Ok(tx
        .prepare_cached("SELECT expires_at FROM members WHERE device = ?1")?
        .query_row([device.as_bytes().as_slice()], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .optional()?
        .flatten())
}

/// The hash stored for `(doc, actor, seq)`, if any.
fn stored_hash(
    tx: &Transaction<'_>,
    doc: DocId,
    actor: DeviceId,
    seq: u64,
) -> rusqlite::Result<Option<ChangeHash>> {
    let hash: Option<Vec<u8>> = tx
        .prepare_cached(
            "SELECT hash FROM changes
             WHERE docno = (SELECT docno FROM doc_index WHERE doc_id = ?1) AND actor = ?2 AND seq = ?3",
        )?
        .query_row(
            params![
                doc.as_bytes().as_slice(),
                actor.as_bytes().as_slice(),
                seq as i64
            ],
            |r| r.get(0),
        )
        .optional()?;
    Ok(hash.and_then(|h| <[u8; 32]>::try_from(h).ok().map(ChangeHash)))
}

/// Records misbehaviour by `device` (once per distinct detail; the newest
/// [`MAX_MISBEHAVIOUR_KEPT`] are kept).
pub(crate) fn record(
    tx: &Transaction<'_>,
    device: DeviceId,
    kind: &str,
    detail: &str,
    from_peer: Option<DeviceId>,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO misbehaviour(device, kind, detail, from_peer, at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        device.as_bytes().as_slice(),
        kind,
        detail,
        from_peer.map(|p| p.as_bytes().to_vec()),
        crate::model::Time::now_millis(),
    ])?;
    tx.prepare_cached(
        "DELETE FROM misbehaviour WHERE id <= (SELECT MAX(id) FROM misbehaviour) - ?1",
    )?
    .execute([MAX_MISBEHAVIOUR_KEPT])?;
    Ok(())
}

/// One recorded misbehaviour.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Misbehaviour {
    /// The device that misbehaved.
    pub device: DeviceId,
    /// What it did (`equivocation`).
    pub kind: String,
    /// The evidence, for people.
    pub detail: String,
    /// The peer the evidence came from (`None`: handed in locally).
    pub from_peer: Option<DeviceId>,
    /// When this node recorded it (ms since the Unix epoch).
    pub at_ms: i64,
}

/// Why a change must be refused for what it writes, if so: every operation must keep the
/// document a record of its kind as `records.rs` lays it out, leave what other members
/// wrote as they wrote it, and keep a volunteer's records in its grids.
///
/// The rules, checked on the change's own operations (so one bad change is refused and
/// the others of its batch are not, and no document is needed):
///
/// - **Known fields, right types.** At the root only the record's fields (`records.rs`)
///   are written, each a string of its kind (a known category, status or priority, an
///   RFC 3339 time, a 64-hex device id, non-empty where required, within the text
///   limits); a visit's `residents` is a list of names and its `tickets` a map of ticket
///   ids to `true`, a ticket's `comments` a list of comment maps. `kind` and `id` are
///   written only by the change that starts the record, with its kind and id; so is a
///   ticket's `comments` list (a later one would hide every comment).
/// - **Who wrote what.** A comment is a map inserted into `comments` with `author`,
///   `text` and `at`; only the device that inserted it (the actor of its object id, which
///   is the change's signer) may write to it, and `author` must be that device. Nothing
///   is deleted or incremented, except that a field's value may be deleted (settling a
///   conflict on the value that already shows deletes the others).
/// - **Causality.** An operation's id is above the ids of the object, element and values
///   it refers to, as in every change Automerge makes.
/// - **Grids.** `grids` is `Some` for a volunteer: a `grid` it writes must be one of them
///   (a station, `None`, writes in any grid).
/// - **What a shared record is about.** A change that starts a household (there may be
///   several, one a maker) writes its `address` and `grid`, and they derive its id with
///   the `site`; the policy's id is the one its site derives. So no member can take the
///   id of a household it did not make, nor hold a second policy.
/// - **Notices.** A volunteer (`grids` is `Some`) writes nothing of a notice but its own
///   read mark, `read:` and its device id, valued a time of at most
///   [`records::MAX_READ_MARK`] bytes; no one writes another device's mark, and a mark is
///   written once: it supersedes no value, once in a change (a mark the record already
///   holds is refused by ingest, `ingest::pipeline`). A member's marks cost a notice one
///   register each, whatever the member sends.
pub fn record_model(
    kind: RecordKind,
    doc: DocId,
    change: &automerge::Change,
    grids: Option<&[String]>,
    site: Option<&SiteId>,
) -> Result<(), String> {
    record_model_of(kind, doc, change, &expand(change)?, grids, site)
}

/// A change's operations, decoded. Automerge panics on a change whose operations name an
/// actor the change does not list (`Change::decode` unwraps the lookup); such a change is
/// refused here instead.
pub fn expand(change: &automerge::Change) -> Result<automerge::ExpandedChange, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| change.decode()))
        .map_err(|_| "Automerge could not read its operations".to_string())
}

/// [`record_model`] on the change's operations, decoded once by the caller
/// (`change.decode()`), who may read them again (`Root::of_expanded`).
pub fn record_model_of(
    kind: RecordKind,
    doc: DocId,
    change: &automerge::Change,
    expanded: &automerge::ExpandedChange,
    grids: Option<&[String]>,
    site: Option<&SiteId>,
) -> Result<(), String> {
    use automerge::legacy::{ElementId, Key, ObjectId, OpType};
    if kind == RecordKind::Policy
        && doc != yizhan_protocol::shared_doc_id(kind, &yizhan_protocol::policy_nonce(site))
    {
        return Err("it writes a policy that is not its site's".into());
    }
    /// What an object made by the change is.
    #[derive(Clone, Copy)]
    enum Made {
        Residents,
        Links,
        Comments,
        Comment,
    }
    let actor = change.actor_id();
    let start = change.start_op().get();
    let genesis = change.deps().is_empty();
    let mut made: HashMap<u64, Made> = HashMap::new();
    // A notice's read mark is written at most once by a change.
    let mut marked = false;
    // A household's first change: the address and grid it writes.
    let (mut first_address, mut first_grid) = (None, None);
    for (i, op) in expanded.operations.iter().enumerate() {
        let counter = start + i as u64;
        let refers_later = op.pred.iter().any(|p| p.counter() >= counter)
            || matches!(&op.obj, ObjectId::Id(o) if o.counter() >= counter)
            || matches!(&op.key, Key::Seq(ElementId::Id(e)) if e.counter() >= counter);
        if refers_later {
            return Err("an operation of it refers to a later one".into());
        }
        let value = match &op.action {
            OpType::Put(v) => Some(v),
            OpType::Make(_) => None,
            // Settling a conflict on the value that already shows deletes the others (a
            // notice's fields are a station's to settle).
            OpType::Delete
                if op.obj == ObjectId::Root
                    && (kind != RecordKind::Notice || grids.is_none())
                    && !op.insert
                    && !op.pred.is_empty()
                    && matches!(&op.key, Key::Map(k) if records::scalar_field(kind, k).is_some()) =>
            {
                continue;
            }
            OpType::Delete => return Err("it deletes part of the record".into()),
            _ => return Err("it writes an operation a record does not use".into()),
        };
        let text = |v: Option<&ScalarValue>| match v {
            Some(ScalarValue::Str(s)) => Some(s.to_string()),
            _ => None,
        };
        match &op.obj {
            ObjectId::Root => {
                let Key::Map(key) = &op.key else {
                    return Err("it writes a list position into the record's root".into());
                };
                if op.insert {
                    return Err("it inserts into the record's root".into());
                }
                let field = key.as_str();
                match (&op.action, Field::parse(field), kind) {
                    (OpType::Put(_), None, RecordKind::Notice)
                        if field.starts_with(records::READ_MARK_PREFIX) =>
                    {
                        let v = text(value).unwrap_or_default();
                        read_mark(field, &v, actor, op.pred.is_empty(), &mut marked)?;
                    }
                    (OpType::Put(_), _, RecordKind::Notice) if grids.is_some() => {
                        return Err(format!(
                            "only a station may write a notice's `{field}`; a member adds only its own read mark"
                        ));
                    }
                    (OpType::Put(_), _, _) => {
                        let Some(v) = text(value) else {
                            return Err(format!("it writes a value that is not text to `{field}`"));
                        };
                        root_field(kind, doc, field, &v, genesis, grids)?;
                        if kind == RecordKind::Household && genesis {
                            match Field::parse(field) {
                                Some(Field::Address) => first_address = Some(v),
                                Some(Field::Grid) => first_grid = Some(v),
                                _ => {}
                            }
                        }
                    }
                    (OpType::Make(ObjType::List), Some(Field::Residents), RecordKind::Visit) => {
                        made.insert(counter, Made::Residents);
                    }
                    (OpType::Make(ObjType::Map), Some(Field::Tickets), RecordKind::Visit) => {
                        made.insert(counter, Made::Links);
                    }
                    (OpType::Make(ObjType::List), Some(Field::Comments), RecordKind::Ticket)
                        if genesis =>
                    {
                        made.insert(counter, Made::Comments);
                    }
                    _ => {
                        return Err(format!(
                            "it makes an object at `{field}`, which a {} does not hold there",
                            kind.name()
                        ));
                    }
                }
            }
            ObjectId::Id(obj) => {
                let own = obj.actor() == actor && obj.counter() >= start;
                let role = if own {
                    Some(
                        *made
                            .get(&obj.counter())
                            .ok_or("it writes into an object it did not make")?,
                    )
                } else {
                    None
                };
                let by_signer = obj.actor() == actor;
                match (kind, role, &op.key, op.insert, &op.action) {
                    (
                        RecordKind::Visit,
                        Some(Made::Residents),
                        Key::Seq(_),
                        true,
                        OpType::Put(_),
                    ) => {
                        let name = text(value).ok_or("it lists a resident that is not text")?;
                        if name.trim().is_empty() || name.len() > records::MAX_SHORT_TEXT {
                            return Err("it lists an empty or over-long resident name".into());
                        }
                    }
                    (
                        RecordKind::Visit,
                        Some(Made::Links) | None,
                        Key::Map(k),
                        false,
                        OpType::Put(_),
                    ) => {
                        if !is_hex_id(k, 32) || value != Some(&ScalarValue::Boolean(true)) {
                            return Err("it links something other than a ticket id".into());
                        }
                    }
                    (
                        RecordKind::Ticket,
                        Some(Made::Comments) | None,
                        Key::Seq(_),
                        true,
                        OpType::Make(ObjType::Map),
                    ) => {
                        made.insert(counter, Made::Comment);
                    }
                    (
                        RecordKind::Ticket,
                        Some(Made::Comment) | None,
                        Key::Map(k),
                        false,
                        OpType::Put(_),
                    ) => {
                        if !by_signer {
                            return Err("it alters a comment another member wrote".into());
                        }
                        let v = text(value).ok_or("it writes a comment field that is not text")?;
                        comment_field(k, &v, actor)?;
                    }
                    (RecordKind::Ticket, None, _, _, _) if !by_signer => {
                        return Err("it alters a comment another member wrote".into());
                    }
                    _ => {
                        return Err(format!(
                            "it writes into an object a {} does not hold",
                            kind.name()
                        ));
                    }
                }
            }
        }
    }
    if kind == RecordKind::Household && genesis {
        let derived = match (&first_grid, &first_address) {
            (Some(grid), Some(address)) => {
                crate::store::docs::household_id(site, grid, address) == doc
            }
            _ => false,
        };
        if !derived {
            return Err("it starts a household whose grid and address do not derive its id".into());
        }
    }
    Ok(())
}

/// Checks a root field's new value (see [`record_model`]).
fn root_field(
    kind: RecordKind,
    doc: DocId,
    field: &str,
    v: &str,
    genesis: bool,
    grids: Option<&[String]>,
) -> Result<(), String> {
    let bad = || Err(format!("it writes an invalid `{field}`"));
    let ok = match Field::parse(field) {
        Some(Field::Kind) => genesis && v == kind.name(),
        Some(Field::Id) => genesis && v == doc.to_string(),
        _ => match records::scalar_field(kind, field) {
            None => {
                return Err(format!(
                    "it writes `{field}`, which a {} does not have",
                    kind.name()
                ));
            }
            Some(f) => valid_scalar(kind, f, v, grids)?,
        },
    };
    if ok { Ok(()) } else { bad() }
}

/// Whether `v` is a value a record of `kind` may hold in its scalar field `field`; an
/// error when a volunteer writes outside its `grids`.
fn valid_scalar(
    kind: RecordKind,
    field: Field,
    v: &str,
    grids: Option<&[String]>,
) -> Result<bool, String> {
    use crate::model::{Category, Channel, MAX_POLICY_DAYS, Priority, Satisfaction, Status, Time};
    Ok(match field {
        Field::Category => Category::ALL.iter().any(|c| c.slug() == v),
        Field::Status => Status::ALL.iter().any(|s| s.as_str() == v),
        Field::Priority => Priority::ALL.iter().any(|p| p.as_str() == v),
        Field::Channel => Channel::ALL.iter().any(|c| c.as_str() == v),
        Field::Satisfaction => Satisfaction::ALL.iter().any(|s| s.as_str() == v),
        Field::VisitedAt
        | Field::OpenedAt
        | Field::AddedAt
        | Field::Due
        | Field::ResolvedAt
        | Field::RatedAt => v.parse::<Time>().is_ok(),
        Field::Assignee => is_hex_id(v, 64),
        Field::HouseholdId => is_hex_id(v, 32),
        Field::Tag(_) => v == "true" || v == "false",
        Field::VisitEvery(_) | Field::TicketDue(_) => {
            v.len() <= 4
                && v.bytes().all(|b| b.is_ascii_digit())
                && v.parse::<u32>()
                    .is_ok_and(|d| (1..=MAX_POLICY_DAYS).contains(&d))
        }
        Field::Address => !v.trim().is_empty() && v.len() <= records::MAX_SHORT_TEXT,
        Field::Phone => v.len() <= records::MAX_SHORT_TEXT,
        // A household's residents: one name a line.
        Field::Residents => {
            v.len() <= records::MAX_LONG_TEXT
                && v.lines().count() <= records::MAX_RESIDENTS
                && v.lines().all(|l| l.len() <= records::MAX_SHORT_TEXT)
        }
        Field::Grid => {
            if v.trim().is_empty() || v.len() > records::MAX_SHORT_TEXT {
                return Ok(false);
            }
            if let Some(grids) = grids
                && !grids.iter().any(|g| g == v)
            {
                return Err(format!(
                    "a volunteer may write records only in its own grids, not in {v}"
                ));
            }
            true
        }
        Field::Body => !v.trim().is_empty() && v.len() <= records::MAX_LONG_TEXT,
        Field::PublishedAt | Field::Until => v.parse::<Time>().is_ok(),
        // A notice's grids: one a line, each a grid's name; none: the whole site.
        Field::Grids => {
            v.len() <= records::MAX_LONG_TEXT
                && v.lines().count() <= records::MAX_NOTICE_GRIDS
                && v.lines()
                    .all(|l| !l.trim().is_empty() && l.len() <= records::MAX_SHORT_TEXT)
        }
        Field::Household | Field::Title => {
            (field == Field::Household && kind == RecordKind::Ticket || !v.trim().is_empty())
                && v.len() <= records::MAX_SHORT_TEXT
        }
        Field::Note | Field::Needs => v.len() <= records::MAX_LONG_TEXT,
        // Not scalar fields: set once by the first change, or objects.
        Field::Kind | Field::Id | Field::Tickets | Field::Comments => false,
    })
}

/// Checks a notice's read mark `key` = `v` written by `author` (see [`record_model`]): the
/// key names the writer, the value is a time of bounded length, and it supersedes nothing
/// (a mark is written once), once in the change.
fn read_mark(
    key: &str,
    v: &str,
    author: &automerge::ActorId,
    fresh: bool,
    marked: &mut bool,
) -> Result<(), String> {
    let Some(device) = records::read_mark_device(key) else {
        return Err(format!("it writes `{key}`, which a notice does not have"));
    };
    if hex::decode(device).ok().as_deref() != Some(author.to_bytes()) {
        return Err("it writes another member's read mark".into());
    }
    if v.len() > records::MAX_READ_MARK || v.parse::<crate::model::Time>().is_err() {
        return Err("it writes a read mark that is not a time".into());
    }
    if !fresh || std::mem::replace(marked, true) {
        return Err("it marks a notice read a second time".into());
    }
    Ok(())
}

/// The read marks (`read:DEVICE` keys) a change of a notice writes.
pub fn read_marks_written(change: &automerge::Change) -> Vec<String> {
    use automerge::legacy::{Key, ObjectId};
    let Ok(expanded) = expand(change) else {
        return Vec::new();
    };
    expanded
        .operations
        .iter()
        .filter(|op| op.obj == ObjectId::Root)
        .filter_map(|op| match &op.key {
            Key::Map(k) if k.starts_with(records::READ_MARK_PREFIX) => Some(k.to_string()),
            _ => None,
        })
        .collect()
}

/// Checks a comment field written by its author (see [`record_model`]).
fn comment_field(key: &str, v: &str, author: &automerge::ActorId) -> Result<(), String> {
    let ok = match CommentField::parse(key) {
        Some(CommentField::Author) => {
            v.len() == 64 && hex::decode(v).is_ok_and(|b| b == author.to_bytes())
        }
        Some(CommentField::Text) => !v.trim().is_empty() && v.len() <= records::MAX_LONG_TEXT,
        Some(CommentField::At) => v.parse::<crate::model::Time>().is_ok(),
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("it writes an invalid comment field `{key}`"))
    }
}

/// Whether `s` is `len` lowercase hex digits (a record id is 32, a device id 64).
fn is_hex_id(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Why the document a change produces would not load back as it is, if so: Automerge
/// takes in some changes whose operations it later saves otherwise than they were signed
/// (a value said to replace one that is not there, say), and such a document then fails to
/// load with "mismatching heads" on every node that stored it. `snapshot` is what
/// `doc.save()` gave; it must load and show the same heads.
pub(crate) fn loads_back(doc: &mut automerge::AutoCommit, snapshot: &[u8]) -> Result<(), String> {
    let refused = || "the record would not load back after it".to_string();
    let loaded = std::panic::catch_unwind(|| automerge::AutoCommit::load(snapshot))
        .map_err(|_| refused())?
        .map_err(|_| refused())?;
    let mut loaded = loaded;
    if loaded.get_heads() == doc.get_heads() {
        Ok(())
    } else {
        Err(refused())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ObjType};

    #[test]
    fn expiry_refuses_only_changes_made_at_or_after_it() {
        assert!(made_after_expiry(None, i64::MAX).is_none());
        assert!(made_after_expiry(Some(1000), 999).is_none());
        assert!(made_after_expiry(Some(1000), 1000).is_some());
        assert!(made_after_expiry(Some(1000), 5000).is_some());
    }

    fn nested(depth: usize) -> AutoCommit {
        let mut doc = AutoCommit::new();
        let mut obj = ROOT;
        for _ in 0..depth {
            obj = doc.put_object(&obj, "x", ObjType::Map).unwrap();
        }
        doc.commit();
        doc
    }

    #[test]
    fn depth_counts_from_the_root() {
        assert_eq!(check_depth(&AutoCommit::new(), 0), Ok(()));
        assert_eq!(check_depth(&nested(3), 3), Ok(()));
        assert_eq!(check_depth(&nested(4), 3), Err(4));
        assert!(nesting(&nested(MAX_OBJECT_DEPTH)).is_ok());
        assert!(nesting(&nested(MAX_OBJECT_DEPTH + 1)).is_err());
    }

    /// The largest change of each kind a node writes, with every field at its longest:
    /// what `MAX_CHANGE_OPS` and [`MAX_RECORD_OPS`] were sized from.
    #[test]
    fn the_largest_lawful_changes_fit_the_limits_with_a_margin() {
        use crate::model::{Category, Priority, Status, Time};
        use crate::records::{self, MAX_LINKED_TICKETS, MAX_LONG_TEXT, MAX_RESIDENTS};
        use yizhan_protocol::columns::{MAX_CHANGE_OPS, declared_ops};
        let long = "话".repeat(MAX_LONG_TEXT / 3);
        let short = "户".repeat(records::MAX_SHORT_TEXT / 3);
        let tickets: Vec<DocId> = (0..MAX_LINKED_TICKETS)
            .map(|i| DocId::from_bytes([i as u8; 16]))
            .collect();
        let device = yizhan_protocol::DeviceKey::from_seed([9; 32]).device_id();
        let ops = |doc: &mut AutoCommit| {
            doc.commit();
            let change = doc.get_last_local_change().unwrap();
            let declared = declared_ops(change.raw_bytes(), MAX_CHANGE_OPS).unwrap();
            assert_eq!(declared, change.len() as u64);
            declared
        };
        let mut visit = AutoCommit::new();
        let new_visit = records::NewVisit {
            household: short.clone(),
            grid: Some(short.clone()),
            category: Some(Category::ALL[0]),
            note: Some(long.clone()),
            residents: vec![short.clone(); MAX_RESIDENTS],
            needs: Some(long.clone()),
            visited_at: None,
            tickets: tickets.clone(),
            household_id: Some(DocId::from_bytes([3; 16])),
        };
        new_visit.check().unwrap();
        // One more linked ticket is refused at the command, before anything is written.
        let mut over = new_visit.clone();
        over.tickets.push(DocId::from_bytes([0xee; 16]));
        assert_eq!(
            over.check().unwrap_err().to_string(),
            "too many linked tickets (at most 256)"
        );
        records::write_new_visit(
            &mut visit,
            DocId::from_bytes([1; 16]),
            &new_visit,
            Time::now(),
        )
        .unwrap();
        let new_visit_ops = ops(&mut visit);
        // Every field changed (Automerge writes nothing for a value put again unchanged)
        // and as many other tickets linked.
        let other = "家".repeat(records::MAX_SHORT_TEXT / 3);
        let edit = records::VisitEdit {
            household: Some(other.clone()),
            grid: Some(other.clone()),
            category: Some(Category::ALL[1]),
            note: Some("记".repeat(MAX_LONG_TEXT / 3)),
            residents: Some(vec![other.clone(); MAX_RESIDENTS]),
            needs: Some("需".repeat(MAX_LONG_TEXT / 3)),
            visited_at: Some(Time::now()),
            link_tickets: (0..MAX_LINKED_TICKETS)
                .map(|i| {
                    let mut id = [i as u8; 16];
                    id[15] = id[15].wrapping_add(1);
                    DocId::from_bytes(id)
                })
                .collect(),
            household_id: Some(DocId::from_bytes([4; 16])),
        };
        edit.check().unwrap();
        records::write_visit_edit(&mut visit, &edit).unwrap();
        let edit_ops = ops(&mut visit);
        let mut ticket = AutoCommit::new();
        let t = records::NewTicket {
            title: short.clone(),
            category: Some(Category::ALL[0]),
            household: Some(short.clone()),
            grid: Some(short.clone()),
            priority: Some(Priority::Urgent),
            status: Some(Status::Open),
            assignee: Some(device),
            note: Some(long.clone()),
            opened_at: None,
            due: Some(Time::now()),
            channel: Some(crate::model::Channel::Hotline),
            household_id: Some(DocId::from_bytes([3; 16])),
            resolved_at: Some(Time::now()),
            satisfaction: Some(crate::model::Satisfaction::Basic),
        };
        records::write_new_ticket(&mut ticket, DocId::from_bytes([2; 16]), &t, Time::now())
            .unwrap();
        let ticket_ops = ops(&mut ticket);
        records::write_comment(&mut ticket, device, &long, Time::now()).unwrap();
        let comment_ops = ops(&mut ticket);
        println!(
            "largest changes: new visit {new_visit_ops}, visit edit {edit_ops}, \
             new ticket {ticket_ops}, comment {comment_ops} operations; \
             limit {MAX_CHANGE_OPS} a change, {MAX_RECORD_OPS} a record"
        );
        assert_eq!(
            new_visit_ops,
            9 + 1 + MAX_RESIDENTS as u64 + 1 + MAX_LINKED_TICKETS as u64
        );
        let largest = new_visit_ops.max(edit_ops).max(ticket_ops).max(comment_ops);
        assert!(largest * 2 < MAX_CHANGE_OPS, "margin of at least two");
        // A record's budget holds a ticket with 16,000 comments, or 100 full visit edits.
        assert!(ticket_ops + 16_000 * comment_ops <= MAX_RECORD_OPS);
        assert!(new_visit_ops + 100 * edit_ops <= MAX_RECORD_OPS);
    }

    #[test]
    fn the_op_budget_admits_changes_in_order_while_they_fit() {
        let max = MAX_RECORD_OPS as usize;
        assert!(op_budget(0, [max]).iter().all(Result::is_ok));
        assert!(op_budget(1, [max])[0].is_err());
        // Over, then a small one that still fits, then one that no longer does.
        let v = op_budget(MAX_RECORD_OPS - 10, [5, 20, 5, 1]);
        assert_eq!(
            v.iter().map(Result::is_ok).collect::<Vec<_>>(),
            [true, false, true, false]
        );
        assert!(v[1].as_ref().unwrap_err().contains("65551 operations"));
        assert!(op_budget(u64::MAX, [usize::MAX])[0].is_err());
        // A very deep document is measured without recursion and stops at the limit.
        assert_eq!(check_depth(&nested(50_000), 8), Err(9));
    }

    #[test]
    fn depth_follows_lists_and_conflicting_values() {
        // Root → list → map → list → map: depth 4.
        let mut doc = AutoCommit::new();
        let l = doc.put_object(ROOT, "comments", ObjType::List).unwrap();
        let m = doc.insert_object(&l, 0, ObjType::Map).unwrap();
        let l2 = doc.put_object(&m, "l", ObjType::List).unwrap();
        doc.insert_object(&l2, 0, ObjType::Map).unwrap();
        doc.commit();
        assert_eq!(check_depth(&doc, 4), Ok(()));
        assert_eq!(check_depth(&doc, 3), Err(4));

        // A deep value that loses a conflict is still measured.
        let mut a = AutoCommit::new().with_actor(automerge::ActorId::from([1u8; 32].as_slice()));
        a.put(ROOT, "f", "x").unwrap();
        a.commit();
        let mut b = a
            .fork()
            .with_actor(automerge::ActorId::from([2u8; 32].as_slice()));
        let mut c = a
            .fork()
            .with_actor(automerge::ActorId::from([0u8; 32].as_slice()));
        b.put(ROOT, "f", "plain").unwrap();
        let mut obj = c.put_object(ROOT, "f", ObjType::Map).unwrap();
        for _ in 0..5 {
            obj = c.put_object(&obj, "x", ObjType::Map).unwrap();
        }
        b.commit();
        c.commit();
        b.merge(&mut c).unwrap();
        assert_eq!(b.get_all(ROOT, "f").unwrap().len(), 2);
        assert_eq!(check_depth(&b, 5), Err(6));
    }

    /// Every change the node's own writers make fits the record model; a volunteer's grid
    /// is judged by its grids; a comment is written only by its maker.
    #[test]
    fn the_record_model_takes_what_nodes_write() {
        use crate::model::{Category, Priority, Status, Time};
        use crate::records::{self, NewTicket, NewVisit, TicketUpdate, VisitEdit};
        let me = automerge::ActorId::from([7u8; 32].as_slice());
        let other = automerge::ActorId::from([9u8; 32].as_slice());
        let id = DocId::from_bytes([1; 16]);
        let grids = vec!["和平里".to_string()];
        let last = |am: &mut AutoCommit| {
            am.commit();
            am.get_last_local_change().unwrap().clone()
        };
        let ok = |kind, c: &automerge::Change| record_model(kind, id, c, Some(&grids), None);

        let mut visit = AutoCommit::new().with_actor(me.clone());
        let new = NewVisit {
            household: "和平里 1 号".into(),
            grid: Some("和平里".into()),
            category: Some(Category::ALL[1]),
            note: Some("独居".into()),
            residents: vec!["王秀英".into()],
            needs: Some("送药".into()),
            tickets: vec![DocId::from_bytes([2; 16])],
            ..NewVisit::default()
        };
        records::write_new_visit(&mut visit, id, &new, Time::now()).unwrap();
        assert_eq!(ok(RecordKind::Visit, &last(&mut visit)), Ok(()));
        let edit = VisitEdit {
            residents: Some(vec!["李建国".into()]),
            link_tickets: vec![DocId::from_bytes([3; 16])],
            note: Some("好转".into()),
            ..VisitEdit::default()
        };
        records::write_visit_edit(&mut visit, &edit).unwrap();
        assert_eq!(ok(RecordKind::Visit, &last(&mut visit)), Ok(()));
        let away = VisitEdit {
            grid: Some("光明街".into()),
            ..VisitEdit::default()
        };
        records::write_visit_edit(&mut visit, &away).unwrap();
        let moved = last(&mut visit);
        assert!(ok(RecordKind::Visit, &moved).is_err());
        assert_eq!(
            record_model(RecordKind::Visit, id, &moved, None, None),
            Ok(())
        );

        let mut ticket = AutoCommit::new().with_actor(me.clone());
        let new = NewTicket {
            title: "路灯".into(),
            grid: Some("和平里".into()),
            priority: Some(Priority::High),
            status: Some(Status::Open),
            ..NewTicket::default()
        };
        records::write_new_ticket(&mut ticket, id, &new, Time::now()).unwrap();
        assert_eq!(ok(RecordKind::Ticket, &last(&mut ticket)), Ok(()));
        let mut theirs = ticket.fork().with_actor(other.clone());
        // The model compares a comment's `author` with the actor, as text.
        let author_hex = "09".repeat(32);
        records::write_ticket_update(
            &mut theirs,
            &TicketUpdate {
                status: Some(Status::Resolved),
                ..TicketUpdate::default()
            },
            Time::now(),
        )
        .unwrap();
        assert_eq!(ok(RecordKind::Ticket, &last(&mut theirs)), Ok(()));
        let (_, list) = theirs.get(ROOT, Field::Comments).unwrap().unwrap();
        let c = theirs.insert_object(&list, 0, ObjType::Map).unwrap();
        theirs
            .put(&c, CommentField::Author, author_hex.as_str())
            .unwrap();
        theirs.put(&c, CommentField::Text, "修好了").unwrap();
        theirs
            .put(&c, CommentField::At, Time::now().to_rfc3339())
            .unwrap();
        assert_eq!(ok(RecordKind::Ticket, &last(&mut theirs)), Ok(()));
        // The opener may not touch it.
        ticket.merge(&mut theirs).unwrap();
        let (_, list) = ticket.get(ROOT, Field::Comments).unwrap().unwrap();
        let (_, c) = ticket.get(&list, 0).unwrap().unwrap();
        ticket.put(&c, CommentField::Text, "没修好").unwrap();
        assert_eq!(
            ok(RecordKind::Ticket, &last(&mut ticket)),
            Err("it alters a comment another member wrote".into())
        );
    }

    /// A station's notice passes; of a notice, a volunteer writes its own read mark, once,
    /// and nothing else; no one writes another's mark.
    #[test]
    fn a_notice_takes_a_stations_fields_and_each_members_own_mark() {
        use crate::model::Time;
        use crate::records::{self, NewNotice};
        let station = automerge::ActorId::from([7u8; 32].as_slice());
        let me = automerge::ActorId::from([9u8; 32].as_slice());
        let me_id = yizhan_protocol::DeviceId::from_slice(&[9u8; 32]).unwrap();
        let id = DocId::from_bytes([1; 16]);
        let grids = vec!["和平里".to_string()];
        let last = |am: &mut AutoCommit| {
            am.commit();
            am.get_last_local_change().unwrap().clone()
        };
        let as_volunteer =
            |c: &automerge::Change| record_model(RecordKind::Notice, id, c, Some(&grids), None);
        let mut notice = AutoCommit::new().with_actor(station.clone());
        let new = NewNotice {
            title: "停水通知".into(),
            body: "周三停水".into(),
            grids: vec!["光明街".into(), "和平里".into()],
            until: Some(Time::now()),
        };
        records::write_new_notice(&mut notice, id, &new, Time::now()).unwrap();
        let published = last(&mut notice);
        assert_eq!(
            record_model(RecordKind::Notice, id, &published, None, None),
            Ok(())
        );
        let mut mine = notice.fork().with_actor(me.clone());
        let put = |am: &mut AutoCommit, key: &str, value: &str| {
            am.put(ROOT, key, value).unwrap();
        };
        let mark = |am: &mut AutoCommit| {
            records::write_read_mark(am, me_id, Time::now()).unwrap();
        };
        mark(&mut mine);
        let first = last(&mut mine);
        assert_eq!(as_volunteer(&first), Ok(()));
        // Written again: it supersedes the first.
        put(
            &mut mine,
            &format!("read:{}", "09".repeat(32)),
            "2026-01-02T03:04:05Z",
        );
        assert_eq!(
            as_volunteer(&last(&mut mine)),
            Err("it marks a notice read a second time".into())
        );
        let cases: [(&str, &str, &str); 5] = [
            (
                "title",
                "通知取消",
                "only a station may write a notice's `title`; a member adds only its own read mark",
            ),
            (
                "read:0707070707070707070707070707070707070707070707070707070707070707",
                "2026-01-02T03:04:05Z",
                "it writes another member's read mark",
            ),
            (
                "read:zz",
                "2026-01-02T03:04:05Z",
                "it writes `read:zz`, which a notice does not have",
            ),
            (
                "read:0909090909090909090909090909090909090909090909090909090909090909",
                "not a time",
                "it writes a read mark that is not a time",
            ),
            (
                "until",
                "2099-01-01",
                "only a station may write a notice's `until`; a member adds only its own read mark",
            ),
        ];
        for (key, value, why) in cases {
            let mut theirs = notice.fork().with_actor(me.clone());
            put(&mut theirs, key, value);
            assert_eq!(as_volunteer(&last(&mut theirs)), Err(why.into()), "{key}");
        }
        // A station, too, writes no one's mark but its own.
        let mut again = notice.fork().with_actor(station.clone());
        put(
            &mut again,
            &format!("read:{}", "09".repeat(32)),
            "2026-01-02T03:04:05Z",
        );
        assert_eq!(
            record_model(RecordKind::Notice, id, &last(&mut again), None, None),
            Err("it writes another member's read mark".into())
        );
        // Its own mark written twice in one change.
        let mut twice = notice.fork().with_actor(me.clone());
        let own = format!("read:{}", "09".repeat(32));
        put(&mut twice, &own, "2026-01-02T03:04:05Z");
        put(&mut twice, &own, "2026-01-02T03:04:06Z");
        assert_eq!(
            as_volunteer(&last(&mut twice)),
            Err("it marks a notice read a second time".into())
        );
    }

    #[test]
    fn equivocation_detail_names_both_changes() {
        let d = equivocation_detail(
            DocId::from_bytes([1; 16]),
            7,
            ChangeHash([2; 32]),
            ChangeHash([3; 32]),
        );
        assert!(d.contains("change 7"));
        assert!(d.contains(&ChangeHash([2; 32]).to_string()));
        assert!(d.contains(&ChangeHash([3; 32]).to_string()));
    }
}

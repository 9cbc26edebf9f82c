//! Documents and their index rows: storing a record's changes, its snapshot and the row of
//! the materialised index (`records`, with a visit's `links`) that lists and queries read,
//! and loading documents and headers back.
//!
//! A household's row also holds what other records tell of it: its latest visit
//! (`last_ms`), its visit interval under the policy (`every_days`) and so when its next
//! visit is due (`due_ms`). Storing a visit refreshes its household's row, storing a
//! household computes them from the visits held, and storing the policy recomputes every
//! household's interval and due time ([`refresh_household`]).

use std::panic::catch_unwind;

use automerge::AutoCommit;
use rusqlite::{OptionalExtension, Transaction, params};
use yizhan_protocol::{ChangeHash, DeviceId, DocHeader, DocId, RecordKind, SignedChange, SiteId};

use crate::error::{ReadError, Refusal, WriteError};
use crate::model::Time;
use crate::records;
use crate::store;

/// One change made on this node, ready to store.
pub(crate) struct NewChange {
    pub(crate) env: SignedChange,
    pub(crate) seq: u64,
}

/// Puts new changes of `doc` in causal order, the order this node's log then serves them
/// onward in.
pub(crate) fn sort_causally(doc: &mut AutoCommit, changes: &mut [NewChange]) {
    if changes.len() < 2 {
        return;
    }
    let order: std::collections::HashMap<automerge::ChangeHash, usize> = doc
        .get_changes_meta(&[])
        .iter()
        .enumerate()
        .map(|(i, c)| (c.hash, i))
        .collect();
    changes.sort_by_key(|c| order.get(&c.env.hash.into()).copied().unwrap_or(usize::MAX));
}

pub(crate) fn has_doc(tx: &Transaction<'_>, id: DocId) -> rusqlite::Result<bool> {
    Ok(docno_of(tx, id)?.is_some())
}

/// The local number of the document `id`, if this node holds it.
pub(crate) fn docno_of(conn: &rusqlite::Connection, id: DocId) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT docno FROM doc_index WHERE doc_id = ?1")?
        .query_row([id.as_bytes().as_slice()], |r| r.get(0))
        .optional()
}

/// Whether document `doc` holds the change `hash`.
pub(crate) fn has_change(
    tx: &Transaction<'_>,
    doc: DocId,
    hash: &ChangeHash,
) -> rusqlite::Result<bool> {
    tx.prepare_cached(
        "SELECT 1 FROM changes
         WHERE docno = (SELECT docno FROM doc_index WHERE doc_id = ?1) AND hash = ?2",
    )?
    .exists(params![doc.as_bytes().as_slice(), hash.0.as_slice()])
}

pub(crate) type EnvelopeRow = Result<SignedChange, String>;

pub(crate) fn row_to_envelope(
    doc: DocId,
) -> impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<EnvelopeRow> {
    move |r| {
        let hash: Vec<u8> = r.get("hash")?;
        let signer: Vec<u8> = r.get("signer")?;
        let signature: Vec<u8> = r.get("signature")?;
        let bytes: Vec<u8> = r.get("bytes")?;
        Ok((|| {
            Ok(SignedChange {
                doc,
                hash: ChangeHash(hash.try_into().map_err(|_| "malformed hash")?),
                signer: DeviceId::from_slice(&signer).map_err(|_| "malformed signer")?,
                signature: signature.try_into().map_err(|_| "malformed signature")?,
                bytes,
            })
        })()
        .map_err(|e: &str| e.to_string()))
    }
}

/// Stores new changes made on this node.
pub(crate) fn persist(
    tx: &Transaction<'_>,
    header: &DocHeader,
    doc: &mut AutoCommit,
    new: &[NewChange],
    site: Option<&SiteId>,
) -> Result<(), WriteError> {
    persist_from(tx, header, doc, new, None, site)
}

/// Stores new changes of one document (received from `origin`, or made here when `None`),
/// each at the next position of this node's change log, with the document's new snapshot
/// and its index row.
pub(crate) fn persist_from(
    tx: &Transaction<'_>,
    header: &DocHeader,
    doc: &mut AutoCommit,
    new: &[NewChange],
    origin: Option<DeviceId>,
    site: Option<&SiteId>,
) -> Result<(), WriteError> {
    let prepared = prepare(header, doc, site);
    store_prepared(tx, header, &prepared, new, origin)
}

/// A document's new state, ready to store: computed without the store, so that it can be
/// done off the thread that writes.
pub(crate) struct Prepared {
    /// What loads as the document: Automerge's `save()`, or nothing for a new document of
    /// one change, which is stored once, as its change (see [`load_doc`]).
    pub(crate) snapshot: Vec<u8>,
    pub(crate) heads: Vec<u8>,
    pub(crate) row: IndexRow,
}

pub(crate) fn prepare(header: &DocHeader, doc: &mut AutoCommit, site: Option<&SiteId>) -> Prepared {
    let snapshot = doc.save();
    prepared_with(header, doc, snapshot, site)
}

/// [`prepare`] with the snapshot already at hand: what loads as `doc` (see
/// [`Prepared::snapshot`]).
pub(crate) fn prepared_with(
    header: &DocHeader,
    doc: &mut AutoCommit,
    snapshot: Vec<u8>,
    site: Option<&SiteId>,
) -> Prepared {
    let mut heads: Vec<[u8; 32]> = doc.get_heads().iter().map(|h| h.0).collect();
    heads.sort();
    Prepared {
        snapshot,
        heads: heads.concat(),
        row: index_row(header, doc, site),
    }
}

/// Stores new changes of one document with its new state (see [`persist_from`]).
pub(crate) fn store_prepared(
    tx: &Transaction<'_>,
    header: &DocHeader,
    prepared: &Prepared,
    new: &[NewChange],
    origin: Option<DeviceId>,
) -> Result<(), WriteError> {
    let doc_id = header.doc_id();
    let now = Time::now_millis();
    let docno = match docno_of(tx, doc_id)? {
        Some(docno) => {
            tx.prepare_cached(
                "UPDATE docs SET snapshot = ?2, heads = ?3, updated_at = ?4 WHERE docno = ?1",
            )?
            .execute(params![docno, prepared.snapshot, prepared.heads, now])?;
            docno
        }
        None => insert_doc(tx, header, doc_id, prepared, now)?,
    };
    store_changes(tx, doc_id, docno, new, origin, now)?;
    materialize_row(tx, header, docno, &prepared.row)
}

/// [`store_prepared`] for a document this transaction found that this node does not hold
/// (pass 1 of [`ingest_in`]), without looking it up again.
pub(crate) fn store_new_doc(
    tx: &Transaction<'_>,
    header: &DocHeader,
    prepared: &Prepared,
    new: &[NewChange],
    origin: Option<DeviceId>,
) -> Result<(), WriteError> {
    let doc_id = header.doc_id();
    let now = Time::now_millis();
    let docno = insert_doc(tx, header, doc_id, prepared, now)?;
    store_changes(tx, doc_id, docno, new, origin, now)?;
    materialize_row(tx, header, docno, &prepared.row)
}

/// Adds the `docs` row of a document this node does not hold (`doc_id` is its header's
/// id): it takes the next number (the rowid), and its id goes to the small index of new
/// ids (`store::index_new_doc`).
pub(crate) fn insert_doc(
    tx: &Transaction<'_>,
    header: &DocHeader,
    doc_id: DocId,
    prepared: &Prepared,
    now: i64,
) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO docs(doc_id, kind, author, nonce, snapshot, heads, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        doc_id.as_bytes().as_slice(),
        header.kind.code(),
        header.author.as_bytes().as_slice(),
        header.nonce.as_slice(),
        prepared.snapshot,
        prepared.heads,
        now,
    ])?;
    let docno = tx.last_insert_rowid();
    store::index_new_doc(tx, doc_id.as_bytes(), docno)?;
    Ok(docno)
}

/// The new changes of document `doc_id` (number `docno`), each at the next position of the
/// log.
pub(crate) fn store_changes(
    tx: &Transaction<'_>,
    doc_id: DocId,
    docno: i64,
    new: &[NewChange],
    origin: Option<DeviceId>,
    now: i64,
) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO changes(hash, doc_id, actor, seq, signer, signature, bytes, received_at,
                             origin, docno, lseq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,
                 (SELECT MAX(COALESCE(MAX(lseq), 0), (SELECT COALESCE(MAX(CAST(value AS INTEGER)), 0)
                      FROM meta WHERE key = 'log_floor')) + 1 FROM changes))",
    )?;
    let origin = origin.map(|o| o.as_bytes().to_vec());
    for c in new {
        insert.execute(params![
            c.env.hash.0.as_slice(),
            doc_id.as_bytes().as_slice(),
            c.env.signer.as_bytes().as_slice(),
            c.seq as i64,
            c.env.signer.as_bytes().as_slice(),
            c.env.signature.as_slice(),
            c.env.bytes,
            now,
            origin,
            docno,
        ])?;
    }
    Ok(())
}

/// A record's row in the `records` index and its links, as derived from its document.
#[derive(Debug, PartialEq)]
pub(crate) struct IndexRow {
    pub(crate) grid: Option<String>,
    pub(crate) category: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) assignee: Option<String>,
    pub(crate) at_ms: i64,
    pub(crate) summary: String,
    pub(crate) links: Vec<String>,
    pub(crate) conflicts: i64,
    /// A visit's or ticket's household id (hex).
    pub(crate) household: Option<String>,
    /// A ticket's deadline (ms).
    pub(crate) due_ms: Option<i64>,
    /// A household's tag slugs, as a JSON array.
    pub(crate) tags: Option<String>,
    /// A household's searchable text: address, residents, phone and note.
    pub(crate) search: Option<String>,
    /// A notice's grids, sorted (`notice_grids`); empty: the whole site.
    pub(crate) notice_grids: Option<Vec<String>>,
}

pub(crate) fn index_row(header: &DocHeader, doc: &AutoCommit, site: Option<&SiteId>) -> IndexRow {
    index_row_of(header, &records::Root::read(doc), site)
}

/// The household a visit or ticket is about: the id it names, or, for one written before
/// households existed (or before its node joined a site), the one its grid and household
/// text derive in `site` (the same on every node; none outside a site).
pub(crate) fn household_of(
    named: Option<&str>,
    grid: Option<&str>,
    text: Option<&str>,
    site: Option<&SiteId>,
) -> Option<String> {
    if let Some(id) = named {
        return Some(id.to_string());
    }
    // Outside a site there is no household: its id derives from the site.
    site?;
    let text = text.filter(|t| !t.trim().is_empty())?;
    Some(household_id(site, grid.unwrap_or_default(), text).to_string())
}

/// The id of the household at `address` in `grid` of `site`.
pub fn household_id(site: Option<&SiteId>, grid: &str, address: &str) -> DocId {
    yizhan_protocol::shared_doc_id(
        RecordKind::Household,
        &yizhan_protocol::household_nonce(site, grid, address),
    )
}

/// [`index_row`] from the record's root map.
pub(crate) fn index_row_of(
    header: &DocHeader,
    root: &records::Root,
    site: Option<&SiteId>,
) -> IndexRow {
    let mut row = IndexRow {
        grid: None,
        category: None,
        status: None,
        assignee: None,
        at_ms: 0,
        summary: String::new(),
        links: Vec::new(),
        conflicts: records::read_conflicts_from(root, header.kind).len() as i64,
        household: None,
        due_ms: None,
        tags: None,
        search: None,
        notice_grids: None,
    };
    let ms = |t: &str| t.parse::<Time>().map(Time::millis).unwrap_or(0);
    match header.kind {
        RecordKind::Visit => {
            let mut v = records::read_visit_from(root, header);
            v.household_id = household_of(
                v.household_id.as_deref(),
                v.grid.as_deref(),
                Some(&v.household),
                site,
            );
            row.summary = serde_json::to_string(&v).expect("records serialise");
            row.at_ms = ms(&v.visited_at);
            row.household = v.household_id;
            row.grid = v.grid;
            row.category = v.category;
            row.links = v.tickets;
        }
        RecordKind::Ticket => {
            let mut t = records::read_ticket_from(root, header);
            t.household_id = household_of(
                t.household_id.as_deref(),
                t.grid.as_deref(),
                t.household.as_deref(),
                site,
            );
            row.summary = serde_json::to_string(&t).expect("records serialise");
            row.at_ms = ms(&t.opened_at);
            row.due_ms = t.due.as_deref().map(ms);
            row.household = t.household_id;
            row.grid = t.grid;
            row.category = t.category;
            row.status = Some(t.status);
            row.assignee = t.assignee;
        }
        RecordKind::Household => {
            let h = records::read_household_from(root, header);
            row.summary = serde_json::to_string(&h).expect("records serialise");
            row.at_ms = h.added_at.as_deref().map(ms).unwrap_or(0);
            row.tags = Some(serde_json::to_string(&h.tags).expect("strings serialise"));
            let mut search = vec![h.address.as_str()];
            search.extend(h.residents.iter().map(String::as_str));
            search.extend(h.phone.as_deref());
            search.extend(h.note.as_deref());
            row.search = Some(search.join("\n"));
            row.grid = h.grid;
        }
        RecordKind::Policy => {
            let p = records::read_policy_from(root);
            row.summary = serde_json::to_string(&p).expect("records serialise");
        }
        RecordKind::Notice => {
            // Stored as no one's: `read` is the reader's (`Node::list_notices`).
            let n = records::read_notice_from(root, header, None);
            row.summary = serde_json::to_string(&n).expect("records serialise");
            row.at_ms = ms(&n.published_at);
            row.notice_grids = Some(n.grids);
        }
    }
    row
}

/// Writes the index row (and a visit's links) of the record whose document is number
/// `docno` in `docs`.
pub(crate) fn materialize_row(
    tx: &Transaction<'_>,
    header: &DocHeader,
    docno: i64,
    row: &IndexRow,
) -> Result<(), WriteError> {
    let id = header.doc_id();
    let id_text = id.to_string();
    // A visit that was stored before may have moved from another household, or in time.
    let before: Option<Option<String>> = if header.kind == RecordKind::Visit {
        tx.prepare_cached("SELECT household FROM records WHERE docno = ?1")?
            .query_row([docno], |r| r.get(0))
            .optional()?
    } else {
        None
    };
    if header.kind == RecordKind::Visit {
        tx.prepare_cached("DELETE FROM links WHERE visit = ?1")?
            .execute([&id_text])?;
        let mut link = tx.prepare_cached("INSERT INTO links(visit, ticket) VALUES (?1, ?2)")?;
        for t in &row.links {
            link.execute([&id_text, t])?;
        }
    }
    // A shared record's header author is only its first maker this node heard of: it
    // puts the record in no one's scope (`sync::Scope`).
    let author = if header.kind.is_shared() {
        String::new()
    } else {
        header.author.to_string()
    };
    tx.prepare_cached(
        "INSERT INTO records(docno, doc_id, kind, grid, category, author, status, assignee,
                             at_ms, summary, conflicts, household, due_ms, tags, search)
         VALUES (?11, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?12, ?13, ?14, ?15)
         ON CONFLICT(docno) DO UPDATE SET grid = excluded.grid, category = excluded.category,
             status = excluded.status, assignee = excluded.assignee, at_ms = excluded.at_ms,
             summary = excluded.summary, conflicts = excluded.conflicts,
             household = excluded.household, due_ms = excluded.due_ms, tags = excluded.tags,
             search = excluded.search",
    )?
    .execute(params![
        id.as_bytes().as_slice(),
        header.kind.code(),
        row.grid,
        row.category,
        author,
        row.status,
        row.assignee,
        row.at_ms,
        row.summary,
        row.conflicts,
        docno,
        row.household,
        row.due_ms,
        row.tags,
        row.search,
    ])?;
    match header.kind {
        RecordKind::Visit => match before {
            // A new visit: its household's latest visit can only move later.
            None => {
                if let Some(h) = &row.household {
                    tx.prepare_cached(
                        "UPDATE records SET last_ms = MAX(COALESCE(last_ms, ?2), ?2),
                             due_ms = MAX(COALESCE(last_ms, ?2), ?2) + every_days * 86400000
                         WHERE docno = (SELECT docno FROM doc_index WHERE doc_id = ?1)
                           AND kind = 3",
                    )?
                    .execute(params![hex_to_id(h), row.at_ms])?;
                }
            }
            Some(old) => {
                for h in old.iter().chain(row.household.iter()) {
                    if let Some(docno) = docno_of(tx, DocId::from_bytes(hex_to_id(h)))? {
                        refresh_household(tx, docno)?;
                    }
                }
            }
        },
        RecordKind::Household => refresh_household(tx, docno)?,
        RecordKind::Notice => {
            index_notice_grids(tx, docno, row.notice_grids.as_deref().unwrap_or_default())?
        }
        RecordKind::Policy => {
            // Two statements: every expression of one `SET` reads the row as it was, so
            // `due_ms` would take the interval before the change.
            tx.prepare_cached(&format!(
                "UPDATE records SET every_days = {EVERY_DAYS} WHERE kind = 3"
            ))?
            .execute([policy_visit_every(tx)?])?;
            tx.prepare_cached(&format!(
                "UPDATE records SET due_ms = {DUE_MS_OF_EVERY} WHERE kind = 3"
            ))?
            .execute([])?;
        }
        RecordKind::Ticket => {}
    }
    Ok(())
}

/// The rows of `notice_grids` of the notice numbered `docno`, for `grids` (none: the whole
/// site, `''`). A grid it no longer names is a move (`moves`), so that a laptop that held
/// the notice learns of it and drops it (`purge.rs`).
fn index_notice_grids(tx: &Transaction<'_>, docno: i64, grids: &[String]) -> rusqlite::Result<()> {
    let mut new: Vec<&str> = grids.iter().map(String::as_str).collect();
    if new.is_empty() {
        new.push("");
    }
    new.sort_unstable();
    let old: Vec<String> = tx
        .prepare_cached("SELECT grid FROM notice_grids WHERE docno = ?1 ORDER BY grid")?
        .query_map([docno], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if old.iter().map(String::as_str).eq(new.iter().copied()) {
        return Ok(());
    }
    tx.prepare_cached("DELETE FROM notice_grids WHERE docno = ?1")?
        .execute([docno])?;
    let mut insert =
        tx.prepare_cached("INSERT OR IGNORE INTO notice_grids(grid, docno) VALUES (?1, ?2)")?;
    for g in &new {
        insert.execute(params![g, docno])?;
    }
    let mut moved = tx.prepare_cached(
        "INSERT INTO moves(docno, lseq, grid, assignee)
         VALUES (?1, (SELECT COALESCE(MAX(lseq), 0) FROM changes), ?2, NULL)",
    )?;
    for g in old.iter().filter(|g| !new.contains(&g.as_str())) {
        moved.execute(params![docno, g])?;
    }
    Ok(())
}

/// 16 id bytes from 32 hex digits (all zero for anything else: a household that no node
/// holds).
fn hex_to_id(h: &str) -> [u8; 16] {
    let mut id = [0u8; 16];
    let _ = hex::decode_to_slice(h, &mut id);
    id
}

/// A household row's visit interval under the policy's `visit_every` (`?1`, a JSON
/// object of days by tag): the shortest of its tags', `ordinary`'s when it has none.
const EVERY_DAYS: &str = "COALESCE((SELECT MIN(p.value) FROM json_each(
        CASE WHEN records.tags IS NULL OR records.tags = '[]' THEN '[\"ordinary\"]'
             ELSE records.tags END) t
        JOIN json_each(?1) p ON p.key = t.value), 182)";

/// A household row's next due time, once `every_days` is set: its latest visit, else when
/// it was added (0: unknown, so due at once), plus its interval.
const DUE_MS_OF_EVERY: &str = "CASE WHEN COALESCE(last_ms, NULLIF(at_ms, 0)) IS NULL THEN 0
        ELSE COALESCE(last_ms, at_ms) + every_days * 86400000 END";

/// The policy's visit intervals as a JSON object (the defaults before a station set one).
pub(crate) fn policy_visit_every(conn: &rusqlite::Connection) -> rusqlite::Result<String> {
    Ok(serde_json::to_string(&read_policy(conn)?.visit_every).expect("numbers serialise"))
}

/// The policy this node holds (the defaults before a station set one).
pub(crate) fn read_policy(conn: &rusqlite::Connection) -> rusqlite::Result<records::Policy> {
    let stored: Option<String> = conn
        .prepare_cached("SELECT summary FROM records WHERE kind = 4 LIMIT 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(stored
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default())
}

/// Recomputes a household row's latest visit, interval and due time from the visits and
/// the policy this node holds.
pub(crate) fn refresh_household(tx: &Transaction<'_>, docno: i64) -> rusqlite::Result<()> {
    let every = policy_visit_every(tx)?;
    tx.prepare_cached(&format!(
        "UPDATE records SET
             last_ms = (SELECT MAX(v.at_ms) FROM records v
                        WHERE v.household = lower(hex(records.doc_id)) AND v.kind = 1),
             every_days = {EVERY_DAYS}
         WHERE docno = ?2 AND kind = 3"
    ))?
    .execute(params![every, docno])?;
    tx.prepare_cached(&format!(
        "UPDATE records SET due_ms = {DUE_MS_OF_EVERY} WHERE docno = ?1 AND kind = 3"
    ))?
    .execute([docno])?;
    Ok(())
}

/// The index row and links stored for a record.
pub(crate) fn stored_index_row(
    conn: &rusqlite::Connection,
    id: DocId,
) -> rusqlite::Result<Option<IndexRow>> {
    let row = conn
        .prepare_cached(
            "SELECT grid, category, status, assignee, at_ms, summary, conflicts, household,
                    CASE WHEN kind = 3 THEN NULL ELSE due_ms END, tags, search, kind
             FROM records WHERE docno = (SELECT docno FROM doc_index WHERE doc_id = ?1)",
        )?
        .query_row([id.as_bytes().as_slice()], |r| {
            Ok(IndexRow {
                grid: r.get(0)?,
                category: r.get(1)?,
                status: r.get(2)?,
                assignee: r.get(3)?,
                at_ms: r.get(4)?,
                summary: r.get(5)?,
                links: Vec::new(),
                conflicts: r.get(6)?,
                household: r.get(7)?,
                due_ms: r.get(8)?,
                tags: r.get(9)?,
                search: r.get(10)?,
                notice_grids: (r.get::<_, u8>(11)? == RecordKind::Notice.code()).then(Vec::new),
            })
        })
        .optional()?;
    let Some(mut row) = row else { return Ok(None) };
    if row.notice_grids.is_some() {
        let grids: Vec<String> = conn
            .prepare_cached(
                "SELECT grid FROM notice_grids
                 WHERE docno = (SELECT docno FROM doc_index WHERE doc_id = ?1) AND grid != ''
                 ORDER BY grid",
            )?
            .query_map([id.as_bytes().as_slice()], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        row.notice_grids = Some(grids);
    }
    row.links = conn
        .prepare_cached("SELECT ticket FROM links WHERE visit = ?1 ORDER BY ticket")?
        .query_map([id.to_string()], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(row))
}

/// The header of a stored document; `NotAllowed` when there is none.
pub(crate) fn load_header(tx: &Transaction<'_>, id: DocId) -> Result<DocHeader, WriteError> {
    match load_header_conn(tx, id) {
        Ok(h) => Ok(h),
        Err(ReadError::Sqlite(rusqlite::Error::QueryReturnedNoRows)) => {
            Err(WriteError::from(Refusal::NoRecord(id.to_string())))
        }
        Err(ReadError::Sqlite(e)) => Err(WriteError::Sqlite(e)),
        Err(e) => Err(WriteError::Damaged(id, e.to_string())),
    }
}

pub(crate) fn load_header_conn(
    conn: &rusqlite::Connection,
    id: DocId,
) -> Result<DocHeader, ReadError> {
    let (kind, author, nonce): (u8, Vec<u8>, Vec<u8>) = conn
        .prepare_cached(
            "SELECT kind, author, nonce FROM docs
             WHERE docno = (SELECT docno FROM doc_index WHERE doc_id = ?1)",
        )?
        .query_row([id.as_bytes().as_slice()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let damaged = |why: &str| ReadError::Damaged(id, why.to_string());
    let header = DocHeader {
        kind: RecordKind::from_code(kind).ok_or_else(|| damaged("unknown kind"))?,
        author: DeviceId::from_slice(&author).map_err(|_| damaged("malformed author"))?,
        nonce: nonce.try_into().map_err(|_| damaged("malformed nonce"))?,
    };
    if header.doc_id() != id {
        return Err(damaged("its id does not match its header"));
    }
    Ok(header)
}

/// SQL for what loads as the document of the `docs` row `d`: its snapshot, or, where that
/// is empty, its one change, stored once, as that change (ingest leaves a new document of
/// one change without a snapshot);
/// Automerge loads a change as it loads a saved document.
pub const DOCUMENT_BYTES_SQL: &str = "CASE WHEN length(d.snapshot) > 0 THEN d.snapshot
     ELSE (SELECT c.bytes FROM changes c WHERE c.docno = d.docno) END";

/// Loads a document from its snapshot (see [`DOCUMENT_BYTES_SQL`]).
pub(crate) fn load_doc(conn: &rusqlite::Connection, id: DocId) -> Result<AutoCommit, WriteError> {
    let snapshot: Option<Vec<u8>> = conn
        .prepare_cached(&format!(
            "SELECT {DOCUMENT_BYTES_SQL} FROM docs d
             WHERE d.docno = (SELECT docno FROM doc_index WHERE doc_id = ?1)"
        ))?
        .query_row([id.as_bytes().as_slice()], |r| r.get(0))
        .optional()?;
    let snapshot = snapshot.ok_or_else(|| WriteError::from(Refusal::NoRecord(id.to_string())))?;
    match catch_unwind(|| AutoCommit::load(&snapshot)) {
        Ok(Ok(doc)) => Ok(doc),
        Ok(Err(e)) => Err(WriteError::Damaged(id, e.to_string())),
        Err(_) => Err(WriteError::Damaged(
            id,
            "the snapshot cannot be loaded".into(),
        )),
    }
}

//! Documents and their index rows: storing a record's changes, its snapshot and the row of
//! the materialised index (`records`, `visits`, `tickets`) that lists and queries read, and
//! loading documents and headers back.

use std::panic::catch_unwind;

use automerge::AutoCommit;
use rusqlite::{OptionalExtension, Transaction, params};
use yizhan_protocol::{ChangeHash, DeviceId, DocHeader, DocId, RecordKind, SignedChange};

use crate::error::{ReadError, WriteError};
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
) -> Result<(), WriteError> {
    persist_from(tx, header, doc, new, None)
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
) -> Result<(), WriteError> {
    let prepared = prepare(header, doc);
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

pub(crate) fn prepare(header: &DocHeader, doc: &mut AutoCommit) -> Prepared {
    let snapshot = doc.save();
    prepared_with(header, doc, snapshot)
}

/// [`prepare`] with the snapshot already at hand: what loads as `doc` (see
/// [`Prepared::snapshot`]).
pub(crate) fn prepared_with(
    header: &DocHeader,
    doc: &mut AutoCommit,
    snapshot: Vec<u8>,
) -> Prepared {
    let mut heads: Vec<[u8; 32]> = doc.get_heads().iter().map(|h| h.0).collect();
    heads.sort();
    Prepared {
        snapshot,
        heads: heads.concat(),
        row: index_row(header, doc),
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
}

pub(crate) fn index_row(header: &DocHeader, doc: &AutoCommit) -> IndexRow {
    index_row_of(header, &records::Root::read(doc))
}

/// [`index_row`] from the record's root map.
pub(crate) fn index_row_of(header: &DocHeader, root: &records::Root) -> IndexRow {
    let (grid, category, status, assignee, at, summary, links) = match header.kind {
        RecordKind::Visit => {
            let v = records::read_visit_from(root, header);
            let summary = serde_json::to_string(&v).expect("records serialise");
            (
                v.grid,
                v.category,
                None,
                None,
                v.visited_at,
                summary,
                v.tickets,
            )
        }
        RecordKind::Ticket => {
            let t = records::read_ticket_from(root, header);
            let summary = serde_json::to_string(&t).expect("records serialise");
            let (status, assignee) = (Some(t.status), t.assignee);
            (
                t.grid,
                t.category,
                status,
                assignee,
                t.opened_at,
                summary,
                Vec::new(),
            )
        }
    };
    IndexRow {
        grid,
        category,
        status,
        assignee,
        at_ms: at.parse::<Time>().map(Time::millis).unwrap_or(0),
        summary,
        links,
        conflicts: records::read_conflicts_from(root, header.kind).len() as i64,
    }
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
    if header.kind == RecordKind::Visit {
        tx.prepare_cached("DELETE FROM links WHERE visit = ?1")?
            .execute([&id_text])?;
        let mut link = tx.prepare_cached("INSERT INTO links(visit, ticket) VALUES (?1, ?2)")?;
        for t in &row.links {
            link.execute([&id_text, t])?;
        }
    }
    tx.prepare_cached(
        "INSERT INTO records(docno, doc_id, kind, grid, category, author, status, assignee,
                             at_ms, summary, conflicts)
         VALUES (?11, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT(docno) DO UPDATE SET grid = excluded.grid, category = excluded.category,
             status = excluded.status, assignee = excluded.assignee, at_ms = excluded.at_ms,
             summary = excluded.summary, conflicts = excluded.conflicts",
    )?
    .execute(params![
        id.as_bytes().as_slice(),
        header.kind.code(),
        row.grid,
        row.category,
        header.author.to_string(),
        row.status,
        row.assignee,
        row.at_ms,
        row.summary,
        row.conflicts,
        docno,
    ])?;
    Ok(())
}

/// The index row and links stored for a record.
pub(crate) fn stored_index_row(
    conn: &rusqlite::Connection,
    id: DocId,
) -> rusqlite::Result<Option<IndexRow>> {
    let row = conn
        .prepare_cached(
            "SELECT grid, category, status, assignee, at_ms, summary, conflicts
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
            })
        })
        .optional()?;
    let Some(mut row) = row else { return Ok(None) };
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
        Err(ReadError::Sqlite(rusqlite::Error::QueryReturnedNoRows)) => Err(
            WriteError::NotAllowed(format!("no record {id} in this store")),
        ),
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
    let snapshot =
        snapshot.ok_or_else(|| WriteError::NotAllowed(format!("no record {id} in this store")))?;
    match catch_unwind(|| AutoCommit::load(&snapshot)) {
        Ok(Ok(doc)) => Ok(doc),
        Ok(Err(e)) => Err(WriteError::Damaged(id, e.to_string())),
        Err(_) => Err(WriteError::Damaged(
            id,
            "the snapshot cannot be loaded".into(),
        )),
    }
}

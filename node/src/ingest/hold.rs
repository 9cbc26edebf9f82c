//! What ingest keeps of what it does not merge: changes of revoked authors held in
//! quarantine for the station's decision, and refused changes kept (bounded) for
//! inspection.

use rusqlite::{Transaction, params};
use yizhan_protocol::{DeviceId, DocHeader, SignedChange};

use crate::error::WriteError;
use crate::ingest::{IngestContext, IngestReport, Rejection};
use crate::model::Time;

/// Why a change is held: its author was revoked before the station received it.
pub const REVOKED_AUTHOR: &str = "its author was revoked before the station received it";
/// Why a change is held: it builds on a change held in quarantine.
pub const BUILDS_ON_HELD: &str = "it builds on a change held in quarantine";

/// Holds a change back in quarantine until the station accepts or rejects it.
pub(crate) fn hold(
    tx: &Transaction<'_>,
    ctx: &IngestContext,
    report: &mut IngestReport,
    header: &DocHeader,
    env: &SignedChange,
    reason: &str,
) -> Result<(), WriteError> {
    // Bounded: past the limit, a change that would be held is refused instead (and kept,
    // bounded, with the rejected changes), so no relay can fill the station's disk.
    let (held, bytes): (i64, i64) = tx
        .prepare_cached("SELECT COUNT(*), COALESCE(SUM(length(bytes)), 0) FROM quarantine")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if held >= MAX_QUARANTINE_CHANGES || bytes + env.bytes.len() as i64 > MAX_QUARANTINE_BYTES {
        return reject(tx, ctx, report, env, "the quarantine is full");
    }
    report.quarantined += 1;
    tx.prepare_cached(
        "INSERT OR IGNORE INTO quarantine(hash, doc_id, kind, author, nonce, signer, signature,
                                          bytes, reason, from_peer, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        env.hash.0.as_slice(),
        env.doc.as_bytes().as_slice(),
        header.kind.code(),
        header.author.as_bytes().as_slice(),
        header.nonce.as_slice(),
        env.signer.as_bytes().as_slice(),
        env.signature.as_slice(),
        env.bytes,
        reason,
        ctx.origin.map(|o| o.as_bytes().to_vec()),
        Time::now_millis(),
    ])?;
    Ok(())
}

/// Whether any of a change's dependencies is held in quarantine.
pub(crate) fn depends_on_held(
    tx: &Transaction<'_>,
    deps: &[automerge::ChangeHash],
) -> rusqlite::Result<bool> {
    let mut stmt = tx.prepare_cached("SELECT 1 FROM quarantine WHERE hash = ?1")?;
    for dep in deps {
        if stmt.exists([dep.0.as_slice()])? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Most changes the quarantine holds.
pub(crate) const MAX_QUARANTINE_CHANGES: i64 = 10_000;
/// Most bytes of changes the quarantine holds.
pub(crate) const MAX_QUARANTINE_BYTES: i64 = 256 << 20;

/// Most rejected changes kept for inspection; older ones are dropped.
pub(crate) const MAX_REJECTED_KEPT: i64 = 10_000;

pub(crate) fn reject(
    tx: &Transaction<'_>,
    ctx: &IngestContext,
    report: &mut IngestReport,
    env: &SignedChange,
    reason: &str,
) -> Result<(), WriteError> {
    report.rejected.push(Rejection {
        doc: env.doc,
        hash: env.hash,
        reason: reason.to_string(),
    });
    keep_rejected(tx, ctx.origin, env, reason)
}

/// Keeps a refused change for inspection (the newest [`MAX_REJECTED_KEPT`]).
pub(crate) fn keep_rejected(
    tx: &Transaction<'_>,
    origin: Option<DeviceId>,
    env: &SignedChange,
    reason: &str,
) -> Result<(), WriteError> {
    tx.prepare_cached(
        "INSERT INTO rejected(doc_id, hash, signer, signature, bytes, reason, from_peer, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        env.doc.as_bytes().as_slice(),
        env.hash.0.as_slice(),
        env.signer.as_bytes().as_slice(),
        env.signature.as_slice(),
        env.bytes,
        reason,
        origin.map(|o| o.as_bytes().to_vec()),
        Time::now_millis(),
    ])?;
    tx.prepare_cached("DELETE FROM rejected WHERE id <= (SELECT MAX(id) FROM rejected) - ?1")?
        .execute([MAX_REJECTED_KEPT])?;
    Ok(())
}

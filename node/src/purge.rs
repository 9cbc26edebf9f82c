//! Dropping the records a volunteer's laptop may no longer hold.
//!
//! A volunteer's laptop holds the records of its grids, those it made, the tickets
//! assigned to it, the policy, and the notices of its grids and of the whole site
//! (protocol.md §9). A record that leaves that scope (moved to another grid,
//! reassigned, or the volunteer's own grids changed by a new enrolment) is removed from the
//! store at the end of the sync that brought the news: its document, its changes, its row
//! in the records index, its links, its refused changes and its moves, with SQLite's
//! `secure_delete` on, and then the file is rebuilt (`VACUUM`) and the write-ahead log
//! emptied, so that no copy of the record's text stays in `store.db` or its `-wal`.
//!
//! A record that holds a change this node made that the station's receipt does not cover
//! yet is kept until it does: a volunteer's own change that moves a record out of its
//! scope must reach the station first.

use std::collections::HashSet;

use rusqlite::{OptionalExtension, params};
use yizhan_protocol::DocId;

use crate::error::ReadError;
use crate::home::Node;
use crate::identity::Role;
use crate::store::set_meta;

/// The `meta` key of how many records this node has purged, in all.
const PURGED: &str = "purged_records";
/// The `meta` key set while some record out of scope is kept for a change the station's
/// receipt does not cover yet: the next sync looks again even if it brings nothing.
const PURGE_DEFERRED: &str = "purge_deferred";
/// The `meta` key of the grids this node's scope had when it last looked for records out
/// of it: a new enrolment (by `join` or a roster) changes them.
const PURGE_SCOPE: &str = "purge_scope";
/// The `meta` key of the highest log position ever used, kept when the changes at the top
/// of the log are purged, so that no position is given twice.
const LOG_FLOOR: &str = "log_floor";

/// Why purging failed.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    /// Reading node state failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// SQLite failed.
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl Node {
    /// How many records this node has dropped because they left its scope (`status`).
    pub fn purged_count(&self) -> Result<u64, ReadError> {
        Ok(self
            .store()
            .meta(PURGED)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Whether records out of scope must be looked for even if a sync brought nothing: one
    /// waits for the station's receipt, or this node's grids changed since the last look.
    pub(crate) fn purge_due(&self) -> Result<bool, ReadError> {
        let grids = serde_json::to_string(&self.identity().grids).expect("strings serialise");
        Ok(self.store().meta(PURGE_DEFERRED)?.as_deref() == Some("1")
            || self.store().meta(PURGE_SCOPE)?.as_deref() != Some(grids.as_str()))
    }

    /// Drops every record outside this volunteer's scope that holds no change of its own
    /// that the station's receipt does not cover. Returns how many it dropped (a station
    /// drops nothing).
    pub fn purge_out_of_scope(&mut self) -> Result<u64, PurgeError> {
        let ident = self.identity().clone();
        if ident.role != Role::Volunteer {
            return Ok(0);
        }
        let me = ident.device_id;
        let (covers, refused) = self.receipt_coverage()?;
        let grids = serde_json::to_string(&ident.grids).expect("strings serialise");
        let refused = serde_json::to_string(&refused).expect("strings serialise");
        let conn = self.store().conn();
        // Out of scope (§9), and holding an own change not covered, or not. A notice has no
        // grid (its grids are in `notice_grids`): its `r.grid IN (..)` is false, not NULL,
        // so that the rest decides (other records without a grid are kept, as before).
        let mut stmt = conn.prepare(
            "SELECT r.docno, r.doc_id, lower(hex(r.doc_id)),
                    EXISTS (SELECT 1 FROM changes c WHERE c.docno = r.docno AND c.origin IS NULL
                            AND (c.lseq > ?3 OR lower(hex(c.hash)) IN (SELECT value FROM json_each(?4))))
             FROM records r
             WHERE NOT (COALESCE(r.grid IN (SELECT value FROM json_each(?1)), r.kind != 5)
                        OR r.author = ?2
                        OR r.assignee IS NOT NULL AND r.assignee = ?2 OR r.kind = 4
                        OR r.docno IN (SELECT n.docno FROM notice_grids n
                            WHERE n.grid IN (SELECT value FROM json_each(?1) UNION ALL SELECT '')))",
        )?;
        let rows: Vec<(i64, Vec<u8>, String, bool)> = stmt
            .query_map(params![grids, me.to_string(), covers, refused], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        drop(stmt);
        let deferred = rows.iter().any(|r| r.3);
        let gone: Vec<_> = rows.into_iter().filter(|r| !r.3).collect();
        if gone.is_empty() {
            let flag = if deferred { "1" } else { "0" };
            let store = self.store();
            if store.meta(PURGE_DEFERRED)?.as_deref() != Some(flag)
                || store.meta(PURGE_SCOPE)?.as_deref() != Some(grids.as_str())
            {
                let tx = self.store_mut().write()?;
                set_meta(&tx, PURGE_DEFERRED, flag)?;
                set_meta(&tx, PURGE_SCOPE, &grids)?;
                tx.commit()?;
            }
            return Ok(0);
        }
        let total = self.purged_count()? + gone.len() as u64;
        let conn = self.store().conn();
        let secure: i64 = conn.pragma_query_value(None, "secure_delete", |r| r.get(0))?;
        conn.pragma_update(None, "secure_delete", 1)?;
        let result = (|| -> rusqlite::Result<()> {
            let tx = self.store_mut().write()?;
            let top: Option<i64> =
                tx.query_row("SELECT MAX(lseq) FROM changes", [], |r| r.get(0))?;
            let floor: Option<i64> = tx
                .query_row("SELECT value FROM meta WHERE key = ?1", [LOG_FLOOR], |r| {
                    r.get::<_, String>(0)
                })
                .optional()?
                .and_then(|v| v.parse().ok());
            let floor = top.unwrap_or(0).max(floor.unwrap_or(0));
            set_meta(&tx, LOG_FLOOR, &floor.to_string())?;
            for (docno, doc_id, id, _) in &gone {
                tx.execute("DELETE FROM links WHERE visit = ?1", [id])?;
                tx.execute("DELETE FROM changes WHERE docno = ?1", [docno])?;
                tx.execute("DELETE FROM records WHERE docno = ?1", [docno])?;
                tx.execute("DELETE FROM moves WHERE docno = ?1", [docno])?;
                tx.execute("DELETE FROM notice_grids WHERE docno = ?1", [docno])?;
                tx.execute("DELETE FROM docs WHERE docno = ?1", [docno])?;
                tx.execute("DELETE FROM doc_ids WHERE doc_id = ?1", [doc_id])?;
                tx.execute("DELETE FROM doc_ids_new WHERE doc_id = ?1", [doc_id])?;
                tx.execute("DELETE FROM rejected WHERE doc_id = ?1", [doc_id])?;
                tx.execute("INSERT OR IGNORE INTO purged(doc_id) VALUES (?1)", [doc_id])?;
            }
            set_meta(&tx, PURGED, &total.to_string())?;
            set_meta(&tx, PURGE_DEFERRED, if deferred { "1" } else { "0" })?;
            set_meta(&tx, PURGE_SCOPE, &grids)?;
            tx.commit()
        })();
        let conn = self.store().conn();
        let _ = conn.pragma_update(None, "secure_delete", secure);
        result?;
        // What was deleted may still sit in free pages written before, and in the log:
        // rebuild the file from what is live and empty the log. Best effort: another
        // connection reading at this moment keeps the log until the next checkpoint.
        if let Err(e) = conn.execute_batch("VACUUM") {
            tracing::warn!("could not rebuild the store after dropping records: {e}");
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
            tracing::warn!("could not empty the store's log after dropping records: {e}");
        }
        tracing::info!(
            records = gone.len(),
            "dropped records that left this node's scope"
        );
        Ok(gone.len() as u64)
    }

    /// The records this node dropped and does not hold again: only a station may give
    /// them back (another volunteer's copy may lack the change that moved them).
    pub(crate) fn purged_and_not_held(&self) -> Result<HashSet<DocId>, ReadError> {
        let mut stmt = self.store().conn().prepare(
            "SELECT p.doc_id FROM purged p
             WHERE NOT EXISTS (SELECT 1 FROM doc_index i WHERE i.doc_id = p.doc_id)",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = HashSet::new();
        for row in rows {
            if let Some(id) = DocId::from_slice(&row?) {
                out.insert(id);
            }
        }
        Ok(out)
    }

    /// The station receipt's position in this node's log and the changes it refused (hex
    /// hashes); `(0, [])` without a receipt for this log.
    fn receipt_coverage(&self) -> Result<(i64, Vec<String>), ReadError> {
        let epoch = self.store().meta("log_epoch")?.unwrap_or_default();
        Ok(match self.station_receipt()? {
            Some(r) if hex::encode(r.epoch) == epoch => (
                r.covers as i64,
                r.refused.iter().map(|h| h.to_string()).collect(),
            ),
            _ => (0, Vec::new()),
        })
    }
}

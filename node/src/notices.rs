//! Notices (信息发布): a station publishes one to some grids or to the whole site; every
//! member that holds it reads it offline and marks it read with a signed change of its own.
//!
//! A notice is a record of kind 5, made by one author (its id derives from the station's
//! device and a random nonce). Only a station writes its title, body, grids and `until`;
//! any member that holds it adds its own read mark, `read:DEVICE`, once, and nothing else
//! (`ingest::rules::record_model`, checked at every node that receives the change). A
//! volunteer holds the notices of its grids and those of the whole site (`sync::Scope`,
//! `purge`, through the `notice_grids` index); a station holds all.

use rusqlite::params;
use serde::{Deserialize, Serialize};
use yizhan_protocol::{DocId, RecordKind};

use crate::error::{ReadError, Refusal, WriteError};
use crate::home::Node;
use crate::identity::Role;
use crate::local::local_change;
use crate::model::Time;
use crate::records::{self, NewNotice, Notice};
use crate::store::docs::{load_doc, load_header};

/// A notice published in a report's period, and how many of those it is for have read it
/// (`report --json`'s `notices`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoticeFigures {
    /// Record id (32 hex).
    pub id: String,
    /// Its title.
    pub title: String,
    /// The grids it is for; empty: the whole site.
    pub grids: Vec<String>,
    /// Of the volunteers it is for (`of`), those whose read mark says they read it before
    /// the period's end.
    pub readers: u64,
    /// The volunteers it is for: in the roster, not revoked, enrolled for a grid it names
    /// (every one, for a notice to the whole site).
    pub of: u64,
}

impl Node {
    /// Publishes a notice: station only. Returns its id once it is durably stored.
    pub fn publish_notice(&mut self, notice: &NewNotice) -> Result<DocId, WriteError> {
        if self.identity.role != Role::Station {
            return Err(Refusal::NoticeStationOnly.into());
        }
        notice.check()?;
        let tx = self.store.write()?;
        let header = self.identity.new_header(RecordKind::Notice);
        let id = header.doc_id();
        local_change(&tx, &self.key, &self.identity, header, None, |doc| {
            records::write_new_notice(doc, id, notice, Time::now())
        })?;
        tx.commit()?;
        Ok(id)
    }

    /// The notices this node holds, newest first: only the current ones (no `until`, or
    /// `until` ahead) unless `all`. `read` is whether this device has read each.
    pub fn list_notices(&self, all: bool) -> Result<Vec<Notice>, ReadError> {
        let now = Time::now_millis();
        let me = self.identity.device_id;
        let mut stmt = self.store.conn().prepare_cached(
            "SELECT summary FROM records WHERE kind = ?1 ORDER BY at_ms DESC, docno DESC",
        )?;
        let rows = stmt.query_map(params![RecordKind::Notice.code()], |r| {
            r.get::<_, String>(0)
        })?;
        let mut out = Vec::new();
        for row in rows {
            let mut n: Notice =
                serde_json::from_str(&row?).map_err(|e| ReadError::Index(e.to_string()))?;
            n.read = n.read_by.contains(&me.to_string());
            if all || n.current(now) {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// Marks notice `id` read by this device: one signed change, which reaches the station
    /// with the next sync. A notice already read is left as it is (a mark is written once).
    pub fn read_notice(&mut self, id: DocId) -> Result<(), WriteError> {
        let tx = self.store.write()?;
        let header = load_header(&tx, id)?;
        if header.kind != RecordKind::Notice {
            return Err(Refusal::NotA(id.to_string(), "notice").into());
        }
        let me = self.identity.device_id;
        let held: Option<String> = tx
            .prepare_cached(
                "SELECT summary FROM records
                 WHERE docno = (SELECT docno FROM doc_index WHERE doc_id = ?1)",
            )?
            .query_row([id.as_bytes().as_slice()], |r| r.get(0))
            .ok();
        let read = held
            .and_then(|s| serde_json::from_str::<Notice>(&s).ok())
            .is_some_and(|n| n.read_by.contains(&me.to_string()));
        if !read {
            local_change(&tx, &self.key, &self.identity, header, Some(id), |doc| {
                records::write_read_mark(doc, me, Time::now())
            })?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl Node {
    /// The notices this node holds published in `since_ms <= t < until_ms` (no `since`:
    /// from the first), oldest first, with their readers as of `until_ms`. A revoked
    /// member's mark, and one of a member the notice is not for, is held and listed but
    /// not counted.
    pub fn notice_figures(
        &self,
        since_ms: Option<i64>,
        until_ms: i64,
    ) -> Result<Vec<NoticeFigures>, ReadError> {
        let conn = self.store.conn();
        let mut roster = conn.prepare(
            "SELECT lower(hex(device)), grids FROM members
             WHERE role = 'volunteer' AND device NOT IN (SELECT device FROM revocations)",
        )?;
        let volunteers: Vec<(String, Vec<String>)> = roster
            .query_map([], |r| {
                let grids: String = r.get(1)?;
                Ok((r.get(0)?, serde_json::from_str(&grids).unwrap_or_default()))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut stmt = conn.prepare_cached(
            "SELECT doc_id, summary FROM records
             WHERE kind = ?1 AND at_ms >= ?2 AND at_ms < ?3 ORDER BY at_ms, docno",
        )?;
        let rows: Vec<(Vec<u8>, String)> = stmt
            .query_map(
                params![
                    RecordKind::Notice.code(),
                    since_ms.unwrap_or(i64::MIN),
                    until_ms
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, summary) in rows {
            let n: Notice =
                serde_json::from_str(&summary).map_err(|e| ReadError::Index(e.to_string()))?;
            let id = DocId::from_slice(&id)
                .ok_or_else(|| ReadError::Index("malformed record id".into()))?;
            let for_them: Vec<&str> = volunteers
                .iter()
                .filter(|(_, grids)| {
                    n.grids.is_empty() || grids.iter().any(|g| n.grids.contains(g))
                })
                .map(|(device, _)| device.as_str())
                .collect();
            let readers = if n.read_by.iter().any(|d| for_them.contains(&d.as_str())) {
                let doc = load_doc(conn, id).map_err(|e| ReadError::Damaged(id, e.to_string()))?;
                records::read_marks_from(&records::Root::read(&doc))
                    .iter()
                    .filter(|(device, at)| {
                        for_them.contains(&device.as_str())
                            && at.parse::<Time>().is_ok_and(|t| t.millis() < until_ms)
                    })
                    .count() as u64
            } else {
                0
            };
            out.push(NoticeFigures {
                id: n.id,
                title: n.title,
                grids: n.grids,
                readers,
                of: for_them.len() as u64,
            });
        }
        Ok(out)
    }
}

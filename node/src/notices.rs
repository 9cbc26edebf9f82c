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
use yizhan_protocol::{DocId, RecordKind};

use crate::error::{ReadError, WriteError};
use crate::home::Node;
use crate::identity::Role;
use crate::local::local_change;
use crate::model::Time;
use crate::records::{self, NewNotice, Notice};
use crate::store::docs::load_header;

impl Node {
    /// Publishes a notice: station only. Returns its id once it is durably stored.
    pub fn publish_notice(&mut self, notice: &NewNotice) -> Result<DocId, WriteError> {
        if self.identity.role != Role::Station {
            return Err(WriteError::NotAllowed(
                "only a station may publish a notice".into(),
            ));
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
            return Err(WriteError::NotAllowed(format!("{id} is not a notice")));
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

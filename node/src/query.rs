//! Reads: finding a record by a prefix of its id, listing and showing records from the
//! materialised index and their documents, and `verify`, which re-checks every stored
//! change, document and index row against the rules a receiving node applies.

use automerge::AutoCommit;
use rusqlite::params;
use yizhan_protocol::{DeviceId, DocHeader, DocId, RecordKind, SignedChange};

use crate::error::{ReadError, ResolveError, WriteError};
use crate::home::Node;
use crate::identity::Role;
use crate::ingest::DocChanges;
use crate::ingest::rules::Misbehaviour;
use crate::model::{DAY_MS, Time};
use crate::records;
use crate::store::docs::{
    index_row, load_doc, load_header_conn, row_to_envelope, stored_index_row,
};

/// Filters for [`Node::list_visits`]; every `Some` must match.
#[derive(Clone, Debug, Default)]
pub struct VisitFilter {
    /// Grid.
    pub grid: Option<String>,
    /// Author.
    pub by: Option<DeviceId>,
    /// Visited at or after.
    pub since: Option<Time>,
    /// Category.
    pub category: Option<crate::model::Category>,
}

/// Filters for [`Node::list_tickets`]; every `Some` must match.
#[derive(Clone, Debug, Default)]
pub struct TicketFilter {
    /// Status.
    pub status: Option<crate::model::Status>,
    /// Category.
    pub category: Option<crate::model::Category>,
    /// Grid.
    pub grid: Option<String>,
    /// Assignee.
    pub assignee: Option<DeviceId>,
    /// Opened at or after.
    pub since: Option<Time>,
    /// Only those neither resolved nor closed whose deadline has passed.
    pub overdue: bool,
    /// Only those about this household.
    pub household: Option<DocId>,
}

/// Filters for [`Node::list_households`]; every `Some` must match.
#[derive(Clone, Debug, Default)]
pub struct HouseholdFilter {
    /// Grid.
    pub grid: Option<String>,
    /// Has this tag (`ordinary`: has no other).
    pub tag: Option<crate::model::Tag>,
    /// Address, a resident, the phone or the note holds this text.
    pub search: Option<String>,
}

/// A household on the due list.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DueHousehold {
    /// Record id.
    pub id: String,
    /// Its address.
    pub address: String,
    /// Its grid.
    pub grid: Option<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its latest visit this node holds.
    pub last_visit: Option<String>,
    /// When its next visit is due (null: never visited, and when it was added is not known).
    pub next_due: Option<String>,
    /// ⌊(now − next_due) / 24 h⌋, negative while not yet due.
    pub days_overdue: Option<i64>,
}

/// A ticket on the due list.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DueTicket {
    /// Record id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its grid.
    pub grid: Option<String>,
    /// Its assignee.
    pub assignee: Option<String>,
    /// Its deadline.
    pub due: Option<String>,
    /// ⌊(now − due) / 24 h⌋, negative while not yet due.
    pub days_overdue: i64,
}

/// What `due` prints: what needs doing, most overdue first.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DueList {
    /// Households whose next visit is due.
    pub households: Vec<DueHousehold>,
    /// Tickets neither resolved nor closed whose deadline is near or past.
    pub tickets: Vec<DueTicket>,
}

fn days_overdue(now_ms: i64, due_ms: i64) -> i64 {
    (now_ms - due_ms).div_euclid(DAY_MS)
}

fn time_of(ms: Option<i64>) -> Option<String> {
    ms.filter(|m| *m > 0)
        .map(|m| Time::from_millis(m).to_rfc3339())
}

/// What `verify` found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Changes checked.
    pub changes: u64,
    /// Problems found (bad changes, damaged documents, failed integrity check).
    pub bad: u64,
    /// One line per problem.
    #[serde(skip)]
    pub problems: Vec<String>,
}

impl Node {
    /// Finds the one record of `kind` whose id starts with `prefix` (at least 6 hex
    /// characters, or the whole id).
    pub fn resolve(&self, kind: RecordKind, prefix: &str) -> Result<DocId, ResolveError> {
        let what = kind.name();
        let p = prefix.trim().to_ascii_lowercase();
        if p.len() > 32 || !p.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ResolveError::Malformed(prefix.to_string(), what));
        }
        if p.len() < 6 {
            return Err(ResolveError::TooShort(prefix.to_string()));
        }
        // The ids starting with `p`: from `p` followed by zeros, up to the next prefix of
        // the same length (none past `ff…`).
        let free_bits = 4 * (32 - p.len() as u32);
        let low = u128::from_str_radix(&p, 16)
            .map_err(|_| ResolveError::Malformed(prefix.to_string(), what))?
            << free_bits;
        let high = low.checked_add(1u128 << free_bits);
        // Both bounds are in the SQL, so that the search ends where the prefix does (an
        // upper bound that may be NULL made SQLite walk the index to its end).
        let low = low.to_be_bytes().to_vec();
        let found: rusqlite::Result<Vec<Vec<u8>>> = match high {
            Some(high) => self
                .store
                .conn()
                .prepare_cached(
                    "SELECT i.doc_id FROM doc_index i JOIN docs d ON d.docno = i.docno
                     WHERE i.doc_id >= ?2 AND i.doc_id < ?3 AND d.kind = ?1 LIMIT 101",
                )
                .and_then(|mut stmt| {
                    stmt.query_map(
                        params![kind.code(), low, high.to_be_bytes().to_vec()],
                        |r| r.get(0),
                    )?
                    .collect()
                }),
            None => self
                .store
                .conn()
                .prepare_cached(
                    "SELECT i.doc_id FROM doc_index i JOIN docs d ON d.docno = i.docno
                     WHERE i.doc_id >= ?2 AND d.kind = ?1 LIMIT 101",
                )
                .and_then(|mut stmt| {
                    stmt.query_map(params![kind.code(), low], |r| r.get(0))?
                        .collect()
                }),
        };
        let found = found.map_err(|e| ResolveError::Sqlite(e.to_string()))?;
        match found.as_slice() {
            [] => Err(ResolveError::NotFound(prefix.to_string(), what)),
            [one] => DocId::from_slice(one)
                .ok_or_else(|| ResolveError::Sqlite("malformed record id in the index".into())),
            many => Err(ResolveError::Ambiguous(
                prefix.to_string(),
                many.len(),
                what,
            )),
        }
    }

    /// Finds the one device whose id starts with `prefix`: a whole 64-hex device id, or a
    /// prefix (at least 6 characters) of a device this node knows of.
    pub fn resolve_device(&self, prefix: &str) -> Result<DeviceId, ResolveError> {
        let p = prefix.trim().to_ascii_lowercase();
        if p.len() > 64 || !p.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ResolveError::Malformed(prefix.to_string(), "device"));
        }
        if p.len() == 64 {
            return p
                .parse()
                .map_err(|_| ResolveError::Malformed(prefix.to_string(), "device"));
        }
        if p.len() < 6 {
            return Err(ResolveError::TooShort(prefix.to_string()));
        }
        let mut known = self
            .known_devices()
            .map_err(|e| ResolveError::Sqlite(e.to_string()))?;
        known.retain(|d| d.to_string().starts_with(&p));
        match known.as_slice() {
            [] => Err(ResolveError::NotFound(prefix.to_string(), "device")),
            [one] => Ok(*one),
            many => Err(ResolveError::Ambiguous(
                prefix.to_string(),
                many.len(),
                "device",
            )),
        }
    }

    /// Every device this node has seen: itself, the members of its roster, and the authors
    /// and assignees of records.
    pub fn known_devices(&self) -> rusqlite::Result<Vec<DeviceId>> {
        let mut stmt = self.store.conn().prepare(
            "SELECT author FROM records UNION SELECT assignee FROM records
             WHERE assignee IS NOT NULL UNION SELECT lower(hex(device)) FROM members",
        )?;
        let mut out: Vec<DeviceId> = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .filter_map(|r| r.ok().and_then(|s| s.parse().ok()))
            .collect();
        out.push(self.identity.device_id);
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Visit logs matching `filter`, oldest first, from the index (no document is loaded).
    pub fn list_visits(&self, filter: &VisitFilter) -> Result<Vec<records::Visit>, ReadError> {
        let mut sql = String::from("SELECT summary FROM records WHERE kind = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        push_filter(&mut sql, &mut args, "grid = ?", filter.grid.clone());
        push_filter(
            &mut sql,
            &mut args,
            "author = ?",
            filter.by.map(|d| d.to_string()),
        );
        push_filter(
            &mut sql,
            &mut args,
            "at_ms >= ?",
            filter.since.map(|t| t.millis()),
        );
        push_filter(
            &mut sql,
            &mut args,
            "category = ?",
            filter.category.map(|c| c.slug().to_string()),
        );
        self.query_summaries(sql, args)
    }

    /// Tickets matching `filter`, oldest first, from the index (no document is loaded).
    pub fn list_tickets(&self, filter: &TicketFilter) -> Result<Vec<records::Ticket>, ReadError> {
        let mut sql = String::from("SELECT summary FROM records WHERE kind = 2");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        push_filter(
            &mut sql,
            &mut args,
            "status = ?",
            filter.status.map(|s| s.as_str().to_string()),
        );
        push_filter(
            &mut sql,
            &mut args,
            "category = ?",
            filter.category.map(|c| c.slug().to_string()),
        );
        push_filter(&mut sql, &mut args, "grid = ?", filter.grid.clone());
        push_filter(
            &mut sql,
            &mut args,
            "assignee = ?",
            filter.assignee.map(|d| d.to_string()),
        );
        push_filter(
            &mut sql,
            &mut args,
            "at_ms >= ?",
            filter.since.map(|t| t.millis()),
        );
        let now = Time::now_millis();
        push_filter(
            &mut sql,
            &mut args,
            "status NOT IN ('resolved', 'closed') AND due_ms < ?",
            filter.overdue.then_some(now),
        );
        push_filter(
            &mut sql,
            &mut args,
            "household = ?",
            filter.household.map(|h| h.to_string()),
        );
        let mut tickets: Vec<records::Ticket> = self.query_summaries(sql, args)?;
        for t in &mut tickets {
            t.judge(now);
        }
        Ok(tickets)
    }

    /// Households matching `filter`, by grid and address, from the index.
    pub fn list_households(
        &self,
        filter: &HouseholdFilter,
    ) -> Result<Vec<records::Household>, ReadError> {
        let mut sql = String::from("SELECT summary, last_ms, due_ms FROM records WHERE kind = 3");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        push_filter(&mut sql, &mut args, "grid = ?", filter.grid.clone());
        match filter.tag {
            Some(crate::model::Tag::Ordinary) => {
                sql.push_str(" AND (tags = '[]' OR tags LIKE '%\"ordinary\"%')");
            }
            tag => push_filter(
                &mut sql,
                &mut args,
                "EXISTS (SELECT 1 FROM json_each(tags) WHERE value = ?)",
                tag.map(|t| t.as_str().to_string()),
            ),
        }
        push_filter(
            &mut sql,
            &mut args,
            "instr(search, ?) > 0",
            filter.search.clone().filter(|s| !s.is_empty()),
        );
        sql.push_str(" ORDER BY grid, json_extract(summary, '$.address'), doc_id");
        self.households_of(&sql, args)
    }

    fn households_of(
        &self,
        sql: &str,
        args: Vec<rusqlite::types::Value>,
    ) -> Result<Vec<records::Household>, ReadError> {
        let now = Time::now_millis();
        let mut stmt = self.store.conn().prepare_cached(sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (json, last, due) = row?;
            let mut h: records::Household =
                serde_json::from_str(&json).map_err(|e| ReadError::Index(e.to_string()))?;
            h.last_visit = time_of(last);
            h.next_due = time_of(due);
            h.overdue = due.is_some_and(|d| d < now);
            out.push(h);
        }
        Ok(out)
    }

    /// A household with its visits and tickets (newest first), history and conflicts.
    pub fn show_household(&self, id: DocId) -> Result<records::HouseholdDetail, ReadError> {
        let (header, doc) = self.load(id)?;
        if header.kind != RecordKind::Household {
            return Err(ReadError::Index(format!("{id} is not a household")));
        }
        let mut household = records::read_household(&doc, &header);
        let (last, due): (Option<i64>, Option<i64>) = self
            .store
            .conn()
            .prepare_cached(
                "SELECT last_ms, due_ms FROM records
                 WHERE docno = (SELECT docno FROM doc_index WHERE doc_id = ?1)",
            )?
            .query_row([id.as_bytes().as_slice()], |r| Ok((r.get(0)?, r.get(1)?)))?;
        household.last_visit = time_of(last);
        household.next_due = time_of(due);
        household.overdue = due.is_some_and(|d| d < Time::now_millis());
        let of_kind = |kind: u8| {
            format!(
                "SELECT summary FROM records WHERE household = '{id}' AND kind = {kind}
                 ORDER BY at_ms DESC, doc_id"
            )
        };
        let visits = self.newest_first(&of_kind(1))?;
        let mut tickets: Vec<records::Ticket> = self.newest_first(&of_kind(2))?;
        let now = Time::now_millis();
        for t in &mut tickets {
            t.judge(now);
        }
        Ok(records::HouseholdDetail {
            household,
            visits,
            tickets,
            conflicts: records::read_conflicts(&doc, RecordKind::Household),
            history: crate::history::read(self.store.conn(), &self.identity, id)?,
        })
    }

    fn newest_first<T: serde::de::DeserializeOwned>(&self, sql: &str) -> Result<Vec<T>, ReadError> {
        let mut stmt = self.store.conn().prepare(sql)?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(serde_json::from_str(&row?).map_err(|e| ReadError::Index(e.to_string()))?);
        }
        Ok(out)
    }

    /// The station's policy as this node holds it (the defaults before a station set one).
    pub fn policy(&self) -> Result<records::Policy, ReadError> {
        Ok(crate::store::docs::read_policy(self.store.conn())?)
    }

    /// What needs doing within `within_days`, from the records this node holds: every
    /// household whose next visit is due, and every ticket neither resolved nor closed
    /// whose deadline is, by then; most overdue first. From the index (`records_by_due`).
    pub fn due(&self, grid: Option<&str>, within_days: i64) -> Result<DueList, ReadError> {
        let now = Time::now_millis();
        let until = now.saturating_add(within_days.saturating_mul(DAY_MS));
        let conn = self.store.conn();
        let grid_clause = if grid.is_some() {
            " AND grid = ?2"
        } else {
            " AND ?2 IS NULL"
        };
        // The columns a due list prints, read from the index row without parsing the
        // record's summary: a station's list runs to thousands of rows.
        let mut households = Vec::new();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT lower(hex(doc_id)),
                    substr(search, 1, instr(search || char(10), char(10)) - 1), grid, tags,
                    last_ms, due_ms
             FROM records INDEXED BY records_by_due
             WHERE kind = 3 AND due_ms <= ?1 AND due_ms IS NOT NULL{grid_clause}
             ORDER BY due_ms, doc_id"
        ))?;
        let mut rows = stmt.query(rusqlite::params![until, grid])?;
        while let Some(r) = rows.next()? {
            let tags: Option<String> = r.get(3)?;
            let due: i64 = r.get(5)?;
            households.push(DueHousehold {
                id: r.get(0)?,
                address: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                grid: r.get(2)?,
                tags: tags
                    .as_deref()
                    .and_then(|t| serde_json::from_str(t).ok())
                    .unwrap_or_default(),
                last_visit: time_of(r.get(4)?),
                next_due: time_of(Some(due)),
                days_overdue: (due > 0).then(|| days_overdue(now, due)),
            });
        }
        drop(rows);
        let mut tickets = Vec::new();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT lower(hex(doc_id)), json_extract(summary, '$.title'), grid, assignee,
                    json_extract(summary, '$.due'), due_ms
             FROM records
             WHERE kind = 2 AND due_ms <= ?1 AND status NOT IN ('resolved', 'closed'){grid_clause}
             ORDER BY due_ms, doc_id"
        ))?;
        let mut rows = stmt.query(rusqlite::params![until, grid])?;
        while let Some(r) = rows.next()? {
            tickets.push(DueTicket {
                id: r.get(0)?,
                title: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                grid: r.get(2)?,
                assignee: r.get(3)?,
                due: r.get(4)?,
                days_overdue: days_overdue(now, r.get(5)?),
            });
        }
        drop(rows);
        Ok(DueList {
            households,
            tickets,
        })
    }

    pub(crate) fn query_summaries<T: serde::de::DeserializeOwned>(
        &self,
        mut sql: String,
        args: Vec<rusqlite::types::Value>,
    ) -> Result<Vec<T>, ReadError> {
        sql.push_str(" ORDER BY at_ms, doc_id");
        let mut stmt = self.store.conn().prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            let json = row?;
            out.push(serde_json::from_str(&json).map_err(|e| ReadError::Index(e.to_string()))?);
        }
        Ok(out)
    }

    pub(crate) fn load(&self, id: DocId) -> Result<(DocHeader, AutoCommit), ReadError> {
        let tx = self.store.conn();
        let header = load_header_conn(tx, id)?;
        let doc = load_doc(tx, id).map_err(|e| match e {
            WriteError::Damaged(id, why) => ReadError::Damaged(id, why),
            WriteError::Sqlite(e) => ReadError::Sqlite(e),
            other => ReadError::Damaged(id, other.to_string()),
        })?;
        Ok((header, doc))
    }

    /// A visit log with its history and conflicts.
    pub fn show_visit(&self, id: DocId) -> Result<records::VisitDetail, ReadError> {
        let (header, doc) = self.load(id)?;
        let mut visit = records::read_visit(&doc, &header);
        visit.household_id = crate::store::docs::household_of(
            visit.household_id.as_deref(),
            visit.grid.as_deref(),
            Some(&visit.household),
            self.identity.site_id.as_ref(),
        );
        Ok(records::VisitDetail {
            visit,
            conflicts: records::read_conflicts(&doc, RecordKind::Visit),
            history: crate::history::read(self.store.conn(), &self.identity, id)?,
        })
    }

    /// A ticket with its comments, linked visits, history and conflicts.
    pub fn show_ticket(&self, id: DocId) -> Result<records::TicketDetail, ReadError> {
        let (header, doc) = self.load(id)?;
        let mut stmt = self
            .store
            .conn()
            .prepare_cached("SELECT visit FROM links WHERE ticket = ?1 ORDER BY visit")?;
        let visits = stmt
            .query_map([id.to_string()], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        let mut ticket = records::read_ticket(&doc, &header);
        ticket.household_id = crate::store::docs::household_of(
            ticket.household_id.as_deref(),
            ticket.grid.as_deref(),
            ticket.household.as_deref(),
            self.identity.site_id.as_ref(),
        );
        ticket.judge(Time::now_millis());
        Ok(records::TicketDetail {
            ticket,
            comments: records::read_comments(&doc),
            visits,
            conflicts: records::read_conflicts(&doc, RecordKind::Ticket),
            history: crate::history::read(self.store.conn(), &self.identity, id)?,
        })
    }

    /// How many records of each kind the store holds: (tickets, visits). Read from
    /// `record_counts`, which triggers keep as records come and go (migration 12).
    pub fn record_counts(&self) -> rusqlite::Result<(u64, u64)> {
        self.store.conn().query_row(
            "SELECT COALESCE(SUM(n) FILTER (WHERE kind = 2), 0),
                    COALESCE(SUM(n) FILTER (WHERE kind = 1), 0)
             FROM record_counts",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// The header and every stored signed change of one document, in the order stored (by
    /// log position: a `VACUUM` may renumber the rowids of `changes`).
    pub fn doc_changes(&self, id: DocId) -> Result<DocChanges, ReadError> {
        let header = load_header_conn(self.store.conn(), id)?;
        let mut stmt = self.store.conn().prepare_cached(
            "SELECT hash, signer, signature, bytes FROM changes
             WHERE docno = (SELECT docno FROM doc_index WHERE doc_id = ?1) ORDER BY lseq",
        )?;
        let rows = stmt.query_map([id.as_bytes().as_slice()], row_to_envelope(id))?;
        let mut changes = Vec::new();
        for row in rows {
            changes.push(row?.map_err(ReadError::Index)?);
        }
        Ok(DocChanges { header, changes })
    }

    /// Re-checks every stored change (size, decoding, hash, actor binding, strict
    /// signature), every document snapshot against its changes, and SQLite's integrity.
    pub fn verify(&self) -> Result<VerifyReport, ReadError> {
        // One read transaction: a concurrent writer cannot make the checks disagree.
        let tx = self.store.conn().unchecked_transaction()?;
        let conn: &rusqlite::Connection = &tx;
        let mut report = VerifyReport::default();
        let integrity: Vec<String> = conn
            .prepare("PRAGMA integrity_check")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if integrity != ["ok"] {
            report.bad += 1;
            report
                .problems
                .push(format!("SQLite integrity check: {}", integrity.join("; ")));
        }
        let site = self.identity.site_id;
        let roster = crate::site::RosterView::load(conn, site)?;
        let mut keys = yizhan_protocol::identity::KeyCache::default();
        // A revoked device's change that reached this volunteer from anyone but a station
        // (directly from the device, before the revocation did) was never judged by a
        // station: it is reported until then (`design.md`, "Quarantine").
        let unvouched = |signer: DeviceId, origin: Option<Vec<u8>>| {
            let origin = origin.and_then(|o| DeviceId::from_slice(&o).ok())?;
            let vouched = roster.is_station(origin) && !roster.is_revoked(origin);
            (self.identity.role != Role::Station && roster.is_revoked(signer) && !vouched).then(
                || format!("its author was revoked, and it came from {origin}, not from a station"),
            )
        };
        let mut stmt = conn.prepare(
            "SELECT doc_id, hash, signer, signature, bytes, actor, seq, origin FROM changes
             ORDER BY rowid",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            report.changes += 1;
            let doc: Vec<u8> = row.get(0)?;
            let hash: Vec<u8> = row.get(1)?;
            let problem = match DocId::from_slice(&doc) {
                None => Some("malformed document id".to_string()),
                Some(doc_id) => match row_to_envelope(doc_id)(row)? {
                    Err(e) => Some(e),
                    Ok(env) if site.is_some() && roster.role(env.signer).is_none() => {
                        Some("its author is not a member of this site".to_string())
                    }
                    Ok(env) if let Some(why) = unvouched(env.signer, row.get(7)?) => Some(why),
                    // One at a time: a change alone is checked with `verify_strict`, never
                    // in a batch (`protocol.md` §3.5).
                    Ok(env) => match SignedChange::verify_many(vec![(env, None)], site, &mut keys)
                        .remove(0)
                    {
                        Err(e) => Some(e.to_string()),
                        Ok(v) => {
                            let actor: Vec<u8> = row.get(5)?;
                            let seq: i64 = row.get(6)?;
                            (actor != v.change.actor_id().to_bytes()
                                || seq != v.change.seq() as i64)
                                .then(|| "stored actor or seq does not match the change".into())
                        }
                    },
                },
            };
            if let Some(p) = problem {
                report.bad += 1;
                report
                    .problems
                    .push(format!("change {}: {p}", hex::encode(&hash)));
            }
        }
        // Every document: it is found by its id (once), its id derives from its header, its
        // snapshot holds exactly the changes stored for it, and its index row and links are
        // what the document says.
        let mut stmt = conn.prepare("SELECT doc_id, docno FROM docs")?;
        let docs = stmt
            .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut found = conn.prepare("SELECT docno FROM doc_index WHERE doc_id = ?1")?;
        let mut hashes = conn.prepare("SELECT hash FROM changes WHERE docno = ?1")?;
        let indexed: i64 = conn.query_row("SELECT COUNT(*) FROM doc_index", [], |r| r.get(0))?;
        if indexed != docs.len() as i64 {
            report.bad += 1;
            report.problems.push(format!(
                "the index of record ids holds {indexed} ids for {} records",
                docs.len()
            ));
        }
        for (raw, docno) in docs {
            let Some(id) = DocId::from_slice(&raw) else {
                report.bad += 1;
                report.problems.push("malformed document id".into());
                continue;
            };
            let numbers: Vec<i64> = found
                .query_map([&raw], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            if numbers != [docno] {
                report.bad += 1;
                report.problems.push(format!(
                    "record {id}: the index of record ids does not find it"
                ));
                continue;
            }
            let stored: std::collections::BTreeSet<Vec<u8>> = hashes
                .query_map([docno], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let header = match load_header_conn(conn, id) {
                Ok(h) => h,
                Err(e) => {
                    report.bad += 1;
                    report.problems.push(e.to_string());
                    continue;
                }
            };
            let mut doc = match load_doc(conn, id) {
                Ok(doc) => doc,
                Err(e) => {
                    report.bad += 1;
                    report.problems.push(e.to_string());
                    continue;
                }
            };
            let held: std::collections::BTreeSet<Vec<u8>> = doc
                .get_changes(&[])
                .iter()
                .map(|c| c.hash().0.to_vec())
                .collect();
            if held != stored {
                report.bad += 1;
                report.problems.push(format!(
                    "record {id}: its snapshot does not match its stored changes"
                ));
            }
            let mut expected = index_row(&header, &doc, self.identity().site_id.as_ref());
            expected.links.sort();
            if stored_index_row(conn, id)?.as_ref() != Some(&expected) {
                report.bad += 1;
                report.problems.push(format!(
                    "record {id}: its index row does not match its document"
                ));
            }
        }
        Ok(report)
    }
}

pub(crate) fn push_filter<T: Into<rusqlite::types::Value>>(
    sql: &mut String,
    args: &mut Vec<rusqlite::types::Value>,
    clause: &str,
    value: Option<T>,
) {
    if let Some(v) = value {
        sql.push_str(" AND ");
        sql.push_str(clause);
        args.push(v.into());
    }
}

impl Node {
    /// The misbehaviour this node has recorded, newest first.
    pub fn misbehaviour(&self) -> Result<Vec<Misbehaviour>, ReadError> {
        let mut stmt = self.store().conn().prepare(
            "SELECT device, kind, detail, from_peer, at FROM misbehaviour ORDER BY id DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<Vec<u8>>>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (device, kind, detail, from_peer, at_ms) = row?;
            let Ok(device) = DeviceId::from_slice(&device) else {
                continue;
            };
            out.push(Misbehaviour {
                device,
                kind,
                detail,
                from_peer: from_peer.and_then(|p| DeviceId::from_slice(&p).ok()),
                at_ms,
            });
        }
        Ok(out)
    }
}

//! The station's quarantine: changes by revoked authors that reached it through another
//! member after the revocation. They are not merged until the station decides.

use std::collections::{HashMap, HashSet};

use rusqlite::{OptionalExtension, params};
use yizhan_protocol::envelope::decode_change;
use yizhan_protocol::{ChangeHash, DeviceId, DocHeader, DocId, RecordKind, SignedChange};

use crate::error::{ReadError, ResolveError, WriteError};
use crate::home::Node;
use crate::identity::Role;
use crate::ingest::{DocChanges, IngestContext, ingest_in};
use crate::model::Time;
use crate::records::FieldChange;

pub use crate::ingest::hold::{BUILDS_ON_HELD, REVOKED_AUTHOR};

/// One held change, as `quarantine list` prints it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Held {
    /// The change hash (the id to accept or reject).
    pub id: String,
    /// Its author.
    pub author: String,
    /// The record it changes.
    pub record: String,
    /// Why it is held ([`REVOKED_AUTHOR`], [`BUILDS_ON_HELD`]).
    pub reason: String,
    /// When it arrived (RFC 3339).
    pub received_at: String,
    /// The kind of the record: `visit`, `ticket`, `household` or `policy`.
    pub kind: String,
    /// When its author made it (RFC 3339, the author's clock as signed into the change);
    /// null when the change cannot be read.
    pub made_at: Option<String>,
    /// The fields it sets, with their new values (as a record's history shows them).
    pub writes: Vec<FieldChange>,
    /// The changes it builds on that are themselves held (ids), oldest first: it can be
    /// merged only with them or after them.
    pub depends_on: Vec<String>,
    /// When its author was revoked (RFC 3339), if this node knows of the revocation.
    pub revoked_at: Option<String>,
    /// The reason the station gave for the revocation.
    pub revocation_reason: Option<String>,
}

/// A record of which this node holds changes only in quarantine.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HeldRecord {
    /// The record's id.
    pub id: String,
    /// The authors of its held changes.
    pub authors: Vec<String>,
    /// How many of its changes are held.
    pub changes: usize,
    /// When the first of those authors was revoked (RFC 3339), if known.
    pub revoked_at: Option<String>,
}

/// Why a quarantine command failed.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    /// Only stations keep a quarantine.
    #[error("only a station keeps a quarantine")]
    NotStation,
    /// The id did not name one held change.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The change builds on held changes that are not being accepted with it: nothing was
    /// merged.
    #[error("change {change} builds on held change {}: accept that one first, or both", .waits_for.join(", "))]
    WaitsFor {
        /// The change asked for.
        change: String,
        /// The held changes it builds on.
        waits_for: Vec<String>,
    },
    /// Storing failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Reading failed.
    #[error(transparent)]
    Read(#[from] ReadError),
}

type Row = (
    Vec<u8>,
    Vec<u8>,
    u8,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
);

/// A held change as `list` reads it: hash, signer, record, kind, reason, received at, bytes.
type ListRow = (Vec<u8>, Vec<u8>, Vec<u8>, u8, String, i64, Vec<u8>);

/// A held change's hash and the held changes it builds on.
type HeldDeps = (Vec<u8>, Vec<Vec<u8>>);

impl Node {
    fn require_station(&self) -> Result<(), QuarantineError> {
        if self.identity().role == Role::Station {
            Ok(())
        } else {
            Err(QuarantineError::NotStation)
        }
    }

    /// The changes held in quarantine, oldest first, each with what it writes, when it
    /// was made and the held changes it builds on.
    pub fn quarantine_list(&self) -> Result<Vec<Held>, QuarantineError> {
        self.require_station()?;
        let conn = self.store().conn();
        let rows: Vec<ListRow> = conn
            .prepare(
                "SELECT hash, signer, doc_id, kind, reason, received_at, bytes
                 FROM quarantine ORDER BY received_at, hash",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(ReadError::from)?;
        let held: HashSet<Vec<u8>> = rows.iter().map(|r| r.0.clone()).collect();
        let revocations = self.revocations()?;
        // Each record's held changes are described together, after its stored ones.
        let decoded: Vec<Option<automerge::Change>> =
            rows.iter().map(|r| decode_change(&r.6).ok()).collect();
        let mut by_doc: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
        for (i, r) in rows.iter().enumerate() {
            if decoded[i].is_some() {
                by_doc.entry(r.2.clone()).or_default().push(i);
            }
        }
        let mut writes: Vec<Vec<FieldChange>> = vec![Vec::new(); rows.len()];
        for (doc, indices) in by_doc {
            let Some(id) = DocId::from_slice(&doc) else {
                continue;
            };
            let changes: Vec<automerge::Change> =
                indices.iter().filter_map(|&i| decoded[i].clone()).collect();
            let described = crate::history::describe_unstored(conn, id, &changes)?;
            for (i, d) in indices.into_iter().zip(described) {
                writes[i] = d;
            }
        }
        Ok(rows
            .into_iter()
            .zip(decoded)
            .zip(writes)
            .map(
                |(((hash, signer, doc, kind, reason, received_at, _), change), writes)| {
                    let revocation = revocations.get(&signer);
                    Held {
                        id: hex::encode(&hash),
                        author: hex::encode(&signer),
                        record: hex::encode(&doc),
                        reason,
                        received_at: Time::from_millis(received_at).to_rfc3339(),
                        kind: RecordKind::from_code(kind)
                            .map_or_else(|| kind.to_string(), |k| k.name().to_string()),
                        made_at: change
                            .as_ref()
                            .map(|c| Time::from_millis(c.timestamp()).to_rfc3339()),
                        writes,
                        depends_on: change
                            .as_ref()
                            .map(|c| {
                                c.deps()
                                    .iter()
                                    .filter(|d| held.contains(d.0.as_slice()))
                                    .map(|d| hex::encode(d.0))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        revoked_at: revocation.map(|(at, _)| Time::from_millis(*at).to_rfc3339()),
                        revocation_reason: revocation.map(|(_, why)| why.clone()),
                    }
                },
            )
            .collect())
    }

    /// Revoked devices: device → (revoked at, ms; reason).
    fn revocations(&self) -> Result<HashMap<Vec<u8>, (i64, String)>, ReadError> {
        Ok(self
            .store()
            .conn()
            .prepare("SELECT device, revoked_at, reason FROM revocations")?
            .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?
            .collect::<rusqlite::Result<_>>()?)
    }

    /// The record of `kind` whose id starts with `prefix`, when this node holds changes
    /// to it only in quarantine (`None` otherwise, and on a node that keeps none): what
    /// `show` says instead of "no record matches".
    pub fn held_record(
        &self,
        kind: RecordKind,
        prefix: &str,
    ) -> Result<Option<HeldRecord>, ReadError> {
        let p = prefix.trim().to_ascii_lowercase();
        if self.identity().role != Role::Station
            || p.len() < 6
            || p.len() > 32
            || !p.chars().all(|c| c.is_ascii_hexdigit())
        {
            return Ok(None);
        }
        let rows: Vec<(Vec<u8>, Vec<u8>)> = self
            .store()
            .conn()
            .prepare("SELECT doc_id, signer FROM quarantine WHERE kind = ?1 ORDER BY received_at")?
            .query_map([kind.code()], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut docs: Vec<Vec<u8>> = rows
            .iter()
            .filter(|(d, _)| hex::encode(d).starts_with(&p))
            .map(|(d, _)| d.clone())
            .collect();
        docs.sort();
        docs.dedup();
        let [doc] = docs.as_slice() else {
            return Ok(None);
        };
        let stored: Option<i64> = self
            .store()
            .conn()
            .query_row(
                "SELECT docno FROM doc_index WHERE doc_id = ?1",
                [doc],
                |r| r.get(0),
            )
            .optional()?;
        if stored.is_some() {
            return Ok(None);
        }
        let mut authors: Vec<Vec<u8>> = Vec::new();
        let mut changes = 0;
        for (d, signer) in &rows {
            if d == doc {
                changes += 1;
                if !authors.contains(signer) {
                    authors.push(signer.clone());
                }
            }
        }
        let revocations = self.revocations()?;
        Ok(Some(HeldRecord {
            id: hex::encode(doc),
            revoked_at: authors
                .iter()
                .find_map(|a| revocations.get(a))
                .map(|(at, _)| Time::from_millis(*at).to_rfc3339()),
            authors: authors.iter().map(hex::encode).collect(),
            changes,
        }))
    }

    /// The held change whose hash starts with `prefix` (6+ hex characters).
    fn resolve_held(&self, prefix: &str) -> Result<Vec<u8>, QuarantineError> {
        let p = prefix.trim().to_ascii_lowercase();
        if p.len() > 64 || !p.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ResolveError::Malformed(prefix.into(), "quarantined change").into());
        }
        if p.len() < 6 {
            return Err(ResolveError::TooShort(prefix.into()).into());
        }
        let matches: Vec<Vec<u8>> = self
            .store()
            .conn()
            .prepare("SELECT hash FROM quarantine")
            .and_then(|mut s| {
                s.query_map([], |r| r.get::<_, Vec<u8>>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(ReadError::from)?
            .into_iter()
            .filter(|h| hex::encode(h).starts_with(&p))
            .collect();
        match matches.len() {
            0 => Err(ResolveError::NotFound(prefix.into(), "quarantined change").into()),
            1 => Ok(matches.into_iter().next().expect("one")),
            n => Err(ResolveError::Ambiguous(prefix.into(), n, "quarantined change").into()),
        }
    }

    /// Merges held changes (one by id prefix, or all): they are checked again like any
    /// incoming change, except that their author's revocation is no bar.
    pub fn quarantine_accept(&mut self, id: Option<&str>) -> Result<usize, QuarantineError> {
        self.require_station()?;
        let hashes = self.selected(id)?;
        // A change that builds on a held change not accepted with it cannot merge: say
        // which, and merge nothing.
        for (hash, deps) in self.held_deps()? {
            if !hashes.contains(&hash) {
                continue;
            }
            let waits_for: Vec<String> = deps
                .iter()
                .filter(|d| !hashes.contains(d))
                .map(hex::encode)
                .collect();
            if !waits_for.is_empty() {
                return Err(QuarantineError::WaitsFor {
                    change: hex::encode(&hash),
                    waits_for,
                });
            }
        }
        let identity = self.identity().clone();
        let tx = self.store_mut().write().map_err(WriteError::from)?;
        let mut ctx = IngestContext::load(&tx, &identity, None)?;
        ctx.accept_revoked = true;
        let mut batch: Vec<DocChanges> = Vec::new();
        {
            let mut stmt = tx
                .prepare(
                    "SELECT hash, doc_id, kind, author, nonce, signer, signature, bytes
                     FROM quarantine WHERE hash = ?1",
                )
                .map_err(WriteError::from)?;
            for h in &hashes {
                let row: Row = stmt
                    .query_row([h], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                        ))
                    })
                    .map_err(WriteError::from)?;
                if let Some((header, env)) = decode(row) {
                    match batch.iter_mut().find(|d| d.header == header) {
                        Some(d) => d.changes.push(env),
                        None => batch.push(DocChanges {
                            header,
                            changes: vec![env],
                        }),
                    }
                }
            }
        }
        for h in &hashes {
            tx.execute(
                "CREATE TEMP TABLE IF NOT EXISTS accepting AS SELECT * FROM quarantine WHERE 0",
                [],
            )
            .map_err(WriteError::from)?;
            tx.execute(
                "INSERT INTO accepting SELECT * FROM quarantine WHERE hash = ?1",
                params![h],
            )
            .map_err(WriteError::from)?;
            tx.execute("DELETE FROM quarantine WHERE hash = ?1", params![h])
                .map_err(WriteError::from)?;
        }
        let report = ingest_in(&tx, &ctx, batch, Default::default())?;
        // What was refused is kept with the rejected changes; a change that builds on a
        // held one went back to quarantine; one still lacking its history stays held.
        tx.execute(
            "INSERT OR IGNORE INTO quarantine SELECT * FROM accepting a
             WHERE NOT EXISTS (SELECT 1 FROM changes c
                               WHERE c.docno = (SELECT docno FROM doc_index WHERE doc_id = a.doc_id)
                                 AND c.hash = a.hash)
               AND a.hash NOT IN (SELECT hash FROM rejected)",
            [],
        )
        .map_err(WriteError::from)?;
        tx.execute("DROP TABLE accepting", [])
            .map_err(WriteError::from)?;
        tx.commit().map_err(WriteError::from)?;
        Ok(report.accepted)
    }

    /// Drops held changes for good (one by id prefix, or all), with every held change
    /// that builds on them (which could never apply without them).
    pub fn quarantine_reject(&mut self, id: Option<&str>) -> Result<usize, QuarantineError> {
        self.require_station()?;
        let hashes = self.with_dependents(self.selected(id)?)?;
        let tx = self.store_mut().write().map_err(WriteError::from)?;
        for h in &hashes {
            // Kept with the rejected changes, so the author's next receipt says so.
            tx.execute(
                "INSERT INTO rejected(doc_id, hash, signer, signature, bytes, reason, from_peer,
                                      received_at)
                 SELECT doc_id, hash, signer, signature, bytes, 'rejected from quarantine',
                        from_peer, received_at FROM quarantine WHERE hash = ?1",
                params![h],
            )
            .map_err(WriteError::from)?;
            tx.execute("DELETE FROM quarantine WHERE hash = ?1", params![h])
                .map_err(WriteError::from)?;
        }
        tx.commit().map_err(WriteError::from)?;
        Ok(hashes.len())
    }

    /// `hashes` and every held change that builds on them, directly or not.
    fn with_dependents(&self, mut hashes: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, QuarantineError> {
        let held = self.held_deps()?;
        loop {
            let before = hashes.len();
            for (hash, deps) in &held {
                if !hashes.contains(hash) && deps.iter().any(|d| hashes.contains(d)) {
                    hashes.push(hash.clone());
                }
            }
            if hashes.len() == before {
                return Ok(hashes);
            }
        }
    }

    /// Every held change with the held changes it builds on directly.
    fn held_deps(&self) -> Result<Vec<HeldDeps>, QuarantineError> {
        let rows: Vec<(Vec<u8>, Vec<u8>)> = self
            .store()
            .conn()
            .prepare("SELECT hash, bytes FROM quarantine ORDER BY received_at, hash")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(ReadError::from)?;
        let held: HashSet<Vec<u8>> = rows.iter().map(|(h, _)| h.clone()).collect();
        Ok(rows
            .into_iter()
            .map(|(hash, bytes)| {
                let deps = decode_change(&bytes)
                    .map(|c| {
                        c.deps()
                            .iter()
                            .map(|d| d.0.to_vec())
                            .filter(|d| held.contains(d))
                            .collect()
                    })
                    .unwrap_or_default();
                (hash, deps)
            })
            .collect())
    }

    fn selected(&self, id: Option<&str>) -> Result<Vec<Vec<u8>>, QuarantineError> {
        match id {
            Some(p) => Ok(vec![self.resolve_held(p)?]),
            None => Ok(self
                .store()
                .conn()
                .prepare("SELECT hash FROM quarantine ORDER BY received_at, hash")
                .and_then(|mut s| {
                    s.query_map([], |r| r.get::<_, Vec<u8>>(0))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(ReadError::from)?),
        }
    }
}

fn decode(row: Row) -> Option<(DocHeader, SignedChange)> {
    let (hash, doc, kind, author, nonce, signer, signature, bytes) = row;
    let header = DocHeader {
        kind: RecordKind::from_code(kind)?,
        author: DeviceId::from_slice(&author).ok()?,
        nonce: nonce.try_into().ok()?,
    };
    let env = SignedChange {
        doc: DocId::from_slice(&doc)?,
        hash: ChangeHash(hash.try_into().ok()?),
        signer: DeviceId::from_slice(&signer).ok()?,
        signature: signature.try_into().ok()?,
        bytes,
    };
    Some((header, env))
}

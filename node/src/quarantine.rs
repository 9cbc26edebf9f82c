//! The station's quarantine: changes by revoked authors that reached it through another
//! member after the revocation. They are not merged until the station decides.

use rusqlite::params;
use yizhan_protocol::{ChangeHash, DeviceId, DocHeader, DocId, RecordKind, SignedChange};

use crate::error::{ReadError, ResolveError, WriteError};
use crate::home::Node;
use crate::identity::Role;
use crate::ingest::{DocChanges, IngestContext, ingest_in};

/// One held change, as `quarantine list` prints it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Held {
    /// The change hash (the id to accept or reject).
    pub id: String,
    /// Its author.
    pub author: String,
    /// The record it changes.
    pub record: String,
    /// Why it is held.
    pub reason: String,
    /// When it arrived (RFC 3339).
    pub received_at: String,
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

impl Node {
    fn require_station(&self) -> Result<(), QuarantineError> {
        if self.identity().role == Role::Station {
            Ok(())
        } else {
            Err(QuarantineError::NotStation)
        }
    }

    /// The changes held in quarantine, oldest first.
    pub fn quarantine_list(&self) -> Result<Vec<Held>, QuarantineError> {
        self.require_station()?;
        let mut stmt = self.store().conn().prepare(
            "SELECT hash, signer, doc_id, reason, received_at FROM quarantine ORDER BY received_at, hash",
        ).map_err(ReadError::from)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Held {
                    id: hex::encode(r.get::<_, Vec<u8>>(0)?),
                    author: hex::encode(r.get::<_, Vec<u8>>(1)?),
                    record: hex::encode(r.get::<_, Vec<u8>>(2)?),
                    reason: r.get(3)?,
                    received_at: crate::model::Time::from_millis(r.get(4)?).to_rfc3339(),
                })
            })
            .map_err(ReadError::from)?;
        Ok(rows
            .collect::<rusqlite::Result<_>>()
            .map_err(ReadError::from)?)
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
        let held: Vec<(Vec<u8>, Vec<Vec<u8>>)> = self
            .store()
            .conn()
            .prepare("SELECT hash, bytes FROM quarantine")
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(ReadError::from)?
            .into_iter()
            .map(|(hash, bytes)| {
                let deps = yizhan_protocol::envelope::decode_change(&bytes)
                    .map(|c| c.deps().iter().map(|d| d.0.to_vec()).collect())
                    .unwrap_or_default();
                (hash, deps)
            })
            .collect();
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

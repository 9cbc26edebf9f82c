//! The baselines, run in the benchmark's own process.
//!
//! - [`automerge_sync`]: Automerge's own per-document sync protocol
//!   (`automerge::sync::SyncDoc`) over the laptop's documents and the station's copies of
//!   them, read from the two stores, both sides starting from fresh sync states as after a
//!   reconnect. All documents run in lockstep: in each round both sides generate their
//!   message for every document that still has one, and the messages are exchanged. A
//!   round is one round trip. Bytes are the encoded messages, with no transport overhead.
//! - [`floor`]: the cost of only strict-verifying, decoding, applying and durably inserting
//!   a set of signed changes, in a tight loop on one thread.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use automerge::sync::{Message, State, SyncDoc};
use automerge::{AutoCommit, Automerge};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use yizhan_protocol::identity::KeyCache;
use yizhan_protocol::{ChangeHash, DeviceId, DocHeader, DocId, RecordKind, SignedChange, SiteId};

/// Opens a node's store read-only (the node may be running: WAL readers do not block it).
pub fn open_store(home: &Path) -> Result<Connection> {
    let path = home.join("store.db");
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(30))?;
    Ok(conn)
}

/// What the per-document Automerge sync moved.
#[derive(Clone, Debug, Default)]
pub struct AmSync {
    /// Documents synced.
    pub docs: usize,
    /// Bytes of messages from the laptop to the station.
    pub laptop_to_station: u64,
    /// Bytes of messages from the station to the laptop.
    pub station_to_laptop: u64,
    /// Rounds of the lockstep exchange (the most any document needed).
    pub round_trips: u64,
    /// The part of the above spent on the documents in the `focus` set.
    pub focus: Option<Box<AmSync>>,
}

impl AmSync {
    /// Bytes both ways.
    pub fn total(&self) -> u64 {
        self.laptop_to_station + self.station_to_laptop
    }

    fn add(&mut self, bytes: (u64, u64), rounds: u64) {
        self.docs += 1;
        self.laptop_to_station += bytes.0;
        self.station_to_laptop += bytes.1;
        self.round_trips = self.round_trips.max(rounds);
    }
}

/// Runs Automerge's sync protocol for every document the laptop holds against the station's
/// copy. Documents in `focus` are also totalled on their own.
pub fn automerge_sync(laptop: &Path, station: &Path, focus: &HashSet<DocId>) -> Result<AmSync> {
    let lconn = open_store(laptop)?;
    let sconn = open_store(station)?;
    // What loads as each document (a document of one change is stored as that change).
    const DOC: &str = yizhan_node::store::DOCUMENT_BYTES_SQL;
    let mut theirs = sconn.prepare(&format!(
        "SELECT {DOC} FROM docs d
             WHERE d.docno = (SELECT docno FROM doc_index WHERE doc_id = ?1)"
    ))?;
    let mut ours = lconn.prepare(&format!("SELECT d.doc_id, {DOC} FROM docs d"))?;
    let mut rows = ours.query([])?;
    let mut all = AmSync::default();
    let mut part = AmSync::default();
    while let Some(row) = rows.next()? {
        let id: Vec<u8> = row.get(0)?;
        let snapshot: Vec<u8> = row.get(1)?;
        let Some(station_snapshot): Option<Vec<u8>> =
            theirs.query_row([&id], |r| r.get(0)).optional()?
        else {
            bail!("the station lacks a document the laptop holds");
        };
        let mut a = Automerge::load(&snapshot)?;
        let mut b = Automerge::load(&station_snapshot)?;
        let (bytes, rounds) = sync_pair(&mut a, &mut b)?;
        all.add(bytes, rounds);
        if DocId::from_slice(&id).is_some_and(|d| focus.contains(&d)) {
            part.add(bytes, rounds);
        }
    }
    if !focus.is_empty() {
        all.focus = Some(Box::new(part));
    }
    Ok(all)
}

/// Syncs two copies of one document to completion from fresh states. Returns the bytes each
/// way (a → b, b → a) and the rounds it took.
fn sync_pair(a: &mut Automerge, b: &mut Automerge) -> Result<((u64, u64), u64)> {
    let (mut sa, mut sb) = (State::new(), State::new());
    let (mut ab, mut ba, mut rounds) = (0u64, 0u64, 0u64);
    loop {
        let to_b = a.generate_sync_message(&mut sa).map(Message::encode);
        let to_a = b.generate_sync_message(&mut sb).map(Message::encode);
        if to_b.is_none() && to_a.is_none() {
            break;
        }
        rounds += 1;
        if rounds > 100 {
            bail!("Automerge sync does not converge");
        }
        if let Some(m) = to_b {
            ab += m.len() as u64;
            b.receive_sync_message(&mut sb, Message::decode(&m)?)?;
        }
        if let Some(m) = to_a {
            ba += m.len() as u64;
            a.receive_sync_message(&mut sa, Message::decode(&m)?)?;
        }
    }
    if a.get_heads() != b.get_heads() {
        bail!("Automerge sync ended with different heads");
    }
    Ok(((ab, ba), rounds))
}

/// One stored change with its document's header, as a node would receive it.
pub struct Received {
    header: DocHeader,
    change: SignedChange,
}

/// Reads every change the node at `home` made itself (not those it received: an evening
/// laptop holds its grid's households from the station), in log order, with its header.
pub fn read_changes(home: &Path) -> Result<Vec<Received>> {
    let conn = open_store(home)?;
    let mut stmt = conn.prepare(
        "SELECT c.doc_id, c.hash, c.signer, c.signature, c.bytes, d.kind, d.author, d.nonce
         FROM changes c JOIN docs d ON d.docno = c.docno WHERE c.origin IS NULL
         ORDER BY c.lseq",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, Vec<u8>>(2)?,
            r.get::<_, Vec<u8>>(3)?,
            r.get::<_, Vec<u8>>(4)?,
            r.get::<_, u8>(5)?,
            r.get::<_, Vec<u8>>(6)?,
            r.get::<_, Vec<u8>>(7)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (doc, hash, signer, signature, bytes, kind, author, nonce) = row?;
        let malformed = || anyhow::anyhow!("malformed stored change");
        out.push(Received {
            header: DocHeader {
                kind: RecordKind::from_code(kind).ok_or_else(malformed)?,
                author: DeviceId::from_slice(&author).map_err(|_| malformed())?,
                nonce: nonce.try_into().map_err(|_| malformed())?,
            },
            change: SignedChange {
                doc: DocId::from_slice(&doc).ok_or_else(malformed)?,
                hash: ChangeHash(hash.try_into().map_err(|_| malformed())?),
                signer: DeviceId::from_slice(&signer).map_err(|_| malformed())?,
                signature: signature.try_into().map_err(|_| malformed())?,
                bytes,
            },
        });
    }
    Ok(out)
}

/// Changes per transaction in the floor, like one page of a sync.
const FLOOR_TX: usize = 2000;

/// Where the floor's time went.
#[derive(Clone, Copy, Debug, Default)]
pub struct Floor {
    /// Deriving the id, strict verification (decode, hash, actor, `verify_strict`).
    pub verify: Duration,
    /// Applying to a fresh Automerge document.
    pub apply: Duration,
    /// Inserting and committing (with the fsync of `synchronous=FULL`).
    pub insert: Duration,
}

impl Floor {
    /// All of it.
    pub fn total(&self) -> Duration {
        self.verify + self.apply + self.insert
    }
}

/// The floor: on this thread, for each change, derive the document id from the header,
/// verify the envelope strictly (size, decoding, hash, actor, ed25519 `verify_strict`),
/// apply it to a fresh Automerge document, and insert it into a new SQLite database in
/// `dir` (WAL, `synchronous=FULL`, one transaction per [`FLOOR_TX`] changes).
pub fn floor(changes: &[Received], site: SiteId, dir: &Path) -> Result<Floor> {
    let path = dir.join("floor.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let mut conn = Connection::open(&path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE changes (hash BLOB PRIMARY KEY, doc_id BLOB NOT NULL,
                               signature BLOB NOT NULL, bytes BLOB NOT NULL)",
    )?;
    let mut spent = Floor::default();
    for page in changes.chunks(FLOOR_TX) {
        let t = Instant::now();
        let tx = conn.transaction()?;
        spent.insert += t.elapsed();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO changes(hash, doc_id, signature, bytes) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for r in page {
                let t0 = Instant::now();
                if r.header.doc_id() != r.change.doc {
                    bail!("a change names another document than its header");
                }
                // One change alone, with a fresh key cache: checked with `verify_strict`, its
                // author's key decompressed for it, as the floor has always done.
                let verified = SignedChange::verify_many(
                    vec![(r.change.clone(), None)],
                    Some(site),
                    &mut KeyCache::default(),
                )
                .remove(0)?;
                let t1 = Instant::now();
                let mut doc = AutoCommit::new();
                doc.apply_changes([verified.change])?;
                let t2 = Instant::now();
                let env = &verified.envelope;
                insert.execute(params![
                    env.hash.0.as_slice(),
                    env.doc.as_bytes().as_slice(),
                    env.signature.as_slice(),
                    env.bytes,
                ])?;
                let t3 = Instant::now();
                spent.verify += t1 - t0;
                spent.apply += t2 - t1;
                spent.insert += t3 - t2;
            }
        }
        let t = Instant::now();
        tx.commit()?;
        spent.insert += t.elapsed();
    }
    Ok(spent)
}

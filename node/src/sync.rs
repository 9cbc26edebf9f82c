//! The sync engine: drives a `yizhan_protocol::sync::Session` with this node's store.
//!
//! The engine owns nothing of the network. The transport (QUIC in `daemon`, an in-memory
//! link in tests) hands it every frame it receives and sends every frame it yields:
//!
//! ```text
//! loop {
//!     while let Some(frame) = engine.poll_transmit()? { send(frame) }
//!     if engine.is_finished() { break }
//!     engine.handle_frame(&receive()?, now)?;
//! }
//! ```
//!
//! What it does with the session's events:
//!
//! - the peer's `Hello`: checks its certificate (this site, unexpired, names the device
//!   that authenticated the transport, not revoked) and accepts or refuses it;
//! - `Roster`: checks and stores certificates and revocations, ahead of any record data,
//!   and refuses the peer if the roster revokes it;
//! - `PullRequested`: pages through this node's change log after the peer's position,
//!   sending exactly the changes of records in both nodes' scopes, never a change back to
//!   the peer it came from or to its author;
//! - `Changes` / `Fetched`: verifies and stores them (`home::ingest_in`) in one
//!   transaction with the new position in the peer's log, and fetches documents whose
//!   history is missing (one `Fetch` outstanding at a time; the rest wait here);
//! - `FetchRequested`: keeps the request and builds its answer only when `poll_transmit`
//!   has nothing else to send (as pages of the log are), so a peer that asks but does not
//!   read makes this node hold at most one answer;
//! - at the end, a station signs a receipt of how much of the peer's log it holds, and a
//!   volunteer checks and keeps the station's receipt.

use std::time::{Duration, Instant};

use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};
use yizhan_protocol::membership::{Certificate, MemberRole, Receipt};
use yizhan_protocol::sync::{Event, Session, SessionConfig, SessionError};
use yizhan_protocol::wire::{
    Changes, Fetch, Fetched, Hello, MAX_FETCH_DOCS, MAX_HEADS, Pull, WireChange, WireDoc,
};
use yizhan_protocol::{ChangeHash, DeviceId, DocHeader, DocId, RecordKind, Signed, SiteId};

use crate::error::{ReadError, WriteError};
use crate::home::Node;
use crate::identity::Role;
use crate::ingest::group::{Job, Seen, run_alone};
use crate::ingest::{Decoded, DocChanges, IngestReport};
use crate::model::Time;
use crate::site::{RosterView, check_roster, load_roster, roster_digest, store_roster};
use crate::store::docs::{load_doc, load_header_conn};

/// Most changes in one page of the log.
const PAGE_CHANGES: usize = 2000;
/// Most bytes of changes in one page (a frame may be up to 4 MiB).
const PAGE_BYTES: usize = 2 << 20;
/// Most bytes of changes in one `Fetched`.
const FETCH_BYTES: usize = 3 << 20;
/// Most changes in one `Fetched` (the protocol allows 8192).
const FETCH_CHANGES: usize = 8000;
/// Most documents waiting to be fetched in one sync (16 bytes each); more are fetched in
/// a later sync.
const MAX_TO_FETCH: usize = 64 * MAX_FETCH_DOCS;

/// How a sync ended badly.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// This node is not a member of a site.
    #[error("this node is not a member of a site yet (run `yizhan join TOKEN`)")]
    NotMember,
    /// The session failed (protocol error, refusal, timeout).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// Storing failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Reading failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// SQLite failed.
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// What one sync moved, as `yizhan sync --json` prints it.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SyncStats {
    /// Changes sent to the peer.
    pub sent: u64,
    /// Changes received (new here or already held), not refused nor held in quarantine:
    /// what the peer counts as `sent`, less `rejected` and those quarantined.
    pub received: u64,
    /// Changes received and refused.
    pub rejected: u64,
    /// Bytes this node put on the wire (frames with their length prefixes).
    pub bytes_sent: u64,
    /// Bytes this node took off the wire.
    pub bytes_received: u64,
    /// Times this node waited for the peer after sending.
    pub round_trips: u64,
}

/// Which records a node holds.
#[derive(Clone, Debug)]
enum Scope {
    /// A station: the whole site.
    All,
    /// A volunteer: its grids, and the records it made or is assigned.
    Member {
        device: DeviceId,
        grids: Vec<String>,
    },
}

impl Scope {
    fn of(cert: &Certificate) -> Scope {
        match cert.role {
            MemberRole::Station => Scope::All,
            MemberRole::Volunteer => Scope::Member {
                device: cert.device,
                grids: cert.grids.clone(),
            },
        }
    }

    /// A SQL condition on `records r`, with its two parameters: the record is in the
    /// scope, or it left the scope at a position after parameter `?{after}` (`moves`), so
    /// that a node that held it learns of the move (and drops it, `purge.rs`).
    ///
    /// The policy (kind 4) is in every scope; a notice (kind 5) in the scope of the grids
    /// it names, or of every member when it names none (`notice_grids`, `''`). Each of the
    /// six terms is one an index answers (`records_by_grid`, `_by_author`, `_by_assignee`,
    /// `_by_kind_time`, `notice_grids`' key, the record's row id), so SQLite reads the
    /// records of the scope
    /// and never the whole log after the puller's position. (A correlated `EXISTS` on
    /// `moves` made it walk `changes` by position instead: a laptop's pull then scanned
    /// every other grid's new changes, and a station's evening merge cost 30-60% more
    /// CPU a change.)
    fn sql(&self, first_param: usize, after: usize) -> (String, Vec<String>) {
        match self {
            Scope::All => ("1".into(), Vec::new()),
            Scope::Member { device, grids } => (
                format!(
                    "(r.grid IN (SELECT value FROM json_each(?{a})) OR r.author = ?{b} OR r.assignee = ?{b} OR r.kind = 4
                      OR r.docno IN (SELECT n.docno FROM notice_grids n
                          WHERE n.grid IN (SELECT value FROM json_each(?{a}) UNION ALL SELECT ''))
                      OR r.docno IN (SELECT m.docno FROM moves m WHERE m.lseq > ?{after}
                          AND (m.grid IN (SELECT value FROM json_each(?{a})) OR m.grid = '' OR m.assignee = ?{b})))",
                    a = first_param,
                    b = first_param + 1
                ),
                vec![
                    serde_json::to_string(grids).expect("strings serialise"),
                    device.to_string(),
                ],
            ),
        }
    }
}

struct Peer {
    device: DeviceId,
    signed_cert: Signed<Certificate>,
    cert: Certificate,
    epoch: [u8; 16],
    scope: Scope,
    scope_key: [u8; 32],
    /// This node's position in the peer's log, as stored.
    cursor: u64,
}

/// Options of a sync.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// How long to wait for the peer.
    pub idle_timeout: Duration,
    /// Told what the sync has moved so far, each time a frame is taken or produced.
    pub progress: Option<SyncProgress>,
    /// Where the peer was reached: noted (if it changed) with the time of the sync, in the
    /// same transaction, once the sync completes.
    pub peer_addr: Option<String>,
}

/// An observer of a sync's progress: called with the counts so far (for a progress
/// display). It must be quick; it runs on the sync's own thread.
#[derive(Clone)]
pub struct SyncProgress(pub std::sync::Arc<dyn Fn(&SyncStats) + Send + Sync>);

impl std::fmt::Debug for SyncProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncProgress")
    }
}

impl Default for SyncConfig {
    fn default() -> Self {
        // Generous: a peer stays silent while it stores a large page (QUIC keep-alives
        // watch the connection itself).
        SyncConfig {
            idle_timeout: Duration::from_secs(120),
            progress: None,
            peer_addr: None,
        }
    }
}

/// One sync with one peer, over any transport.
pub struct SyncEngine {
    node: Node,
    session: Session,
    transport_peer: DeviceId,
    site: SiteId,
    my_cert: Certificate,
    my_epoch: [u8; 16],
    peer: Option<Peer>,
    /// The next position to serve the peer from, while it is pulling.
    serve_after: Option<u64>,
    /// The position the peer pulled from: records that left its scope after it are still
    /// served ([`Scope::sql`]).
    pull_after: u64,
    /// The peer's fetch, answered when `poll_transmit` has nothing else to send.
    fetch_to_answer: Option<Fetch>,
    /// Documents whose history to ask the peer for, once the outstanding fetch is answered.
    to_fetch: std::collections::BTreeSet<DocId>,
    stats: SyncStats,
    progress: Option<SyncProgress>,
    sent_since_receive: bool,
    /// The station's receipt, checked and not yet written: when the session finishes in the
    /// same turn, it is written in the same transaction as the time of the sync.
    receipt_to_keep: Option<Signed<Receipt>>,
    /// [`SyncConfig::peer_addr`].
    peer_addr: Option<String>,
    /// This node took on a new certificate of its own in this sync (other grids, say).
    scope_changed: bool,
    /// The records this volunteer dropped and does not hold (read at the first page from
    /// a peer that is not a station).
    purged: Option<std::collections::HashSet<DocId>>,
}

/// The scope key of a position in a log: the puller's certificate digest, then the
/// server's.
fn scope_key(a: &Signed<Certificate>, b: &Signed<Certificate>) -> [u8; 32] {
    Sha256::new()
        .chain_update(a.digest())
        .chain_update(b.digest())
        .finalize()
        .into()
}

impl SyncEngine {
    /// Starts a sync with `peer`, the device the transport authenticated.
    pub fn new(
        node: Node,
        peer: DeviceId,
        config: &SyncConfig,
        now: Instant,
    ) -> Result<SyncEngine, SyncError> {
        let ident = node.identity();
        let (Some(site), Some(cert)) = (ident.site_id, ident.cert.clone()) else {
            return Err(SyncError::NotMember);
        };
        let my_cert = cert
            .open()
            .map_err(|_| SyncError::Read(ReadError::Index("malformed own certificate".into())))?;
        let my_epoch = node.store().log_epoch()?;
        // Ask for the peer's log from where this node left off, right behind the Hello.
        let stored = stored_cursor(node.store().conn(), peer)?;
        let pull = match stored {
            Some((Some(epoch), cursor, Some(scope), _)) => Pull {
                epoch: epoch.try_into().unwrap_or([0; 16]),
                after: cursor.max(0) as u64,
                scope: scope.try_into().unwrap_or([0; 32]),
            },
            _ => Pull {
                epoch: [0; 16],
                after: 0,
                scope: [0; 32],
            },
        };
        let session = Session::new(
            SessionConfig {
                site,
                cert,
                roster_digest: roster_digest(node.store().conn())?,
                epoch: my_epoch,
                idle_timeout: config.idle_timeout,
            },
            pull,
            now,
        );
        Ok(SyncEngine {
            node,
            session,
            transport_peer: peer,
            site,
            my_cert,
            my_epoch,
            peer: None,
            serve_after: None,
            pull_after: 0,
            fetch_to_answer: None,
            to_fetch: Default::default(),
            stats: SyncStats::default(),
            progress: config.progress.clone(),
            peer_addr: config.peer_addr.clone(),
            sent_since_receive: false,
            receipt_to_keep: None,
            scope_changed: false,
            purged: None,
        })
    }

    /// Takes one frame from the peer.
    pub fn handle_frame(&mut self, bytes: &[u8], now: Instant) -> Result<(), SyncError> {
        self.stats.bytes_received += bytes.len() as u64 + 4;
        if self.sent_since_receive {
            self.stats.round_trips += 1;
            self.sent_since_receive = false;
        }
        self.session.handle_frame(bytes, now)?;
        let result = self.process_events();
        self.report_progress();
        result
    }

    fn report_progress(&self) {
        if let Some(p) = &self.progress {
            (p.0)(&self.stats);
        }
    }

    /// The next frame to send, if any. Answers the peer's fetch and produces pages of the
    /// log while the peer pulls, one at a time: only when the previous frame was taken.
    pub fn poll_transmit(&mut self) -> Result<Option<Vec<u8>>, SyncError> {
        loop {
            if let Some(frame) = self.session.poll_transmit() {
                self.stats.bytes_sent += frame.len() as u64 + 4;
                self.sent_since_receive = true;
                self.report_progress();
                return Ok(Some(frame));
            }
            if self.session.error().is_some() {
                return Ok(None);
            }
            if let Some(fetch) = self.fetch_to_answer.take() {
                let fetched = self.answer_fetch(fetch)?;
                self.session.send_fetched(fetched)?;
                continue;
            }
            if self.session.is_serving() && self.serve_after.is_some() {
                self.send_page()?;
                continue;
            }
            return Ok(None);
        }
    }

    /// Whether the transport should read the peer's next frame: false while the frames
    /// waiting to be sent are over the session's bound (see `Session::wants_input`).
    pub fn wants_input(&self) -> bool {
        self.session.wants_input()
    }

    /// When `handle_timeout` should be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    /// Tells the engine the time.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SyncError> {
        Ok(self.session.handle_timeout(now)?)
    }

    /// Whether the sync completed.
    pub fn is_finished(&self) -> bool {
        self.session.is_finished()
    }

    /// What the sync moved so far.
    pub fn stats(&self) -> &SyncStats {
        &self.stats
    }

    /// The peer, once its Hello was accepted.
    pub fn peer(&self) -> Option<DeviceId> {
        self.peer.as_ref().map(|p| p.device)
    }

    /// Gives the node back.
    pub fn into_node(self) -> Node {
        self.node
    }

    fn process_events(&mut self) -> Result<(), SyncError> {
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::PeerHello(hello) => self.on_hello(hello)?,
                Event::Roster(roster) => {
                    // Signatures are checked before the write transaction, and only for
                    // statements this node does not hold yet.
                    let checked = check_roster(self.node.store().conn(), self.site, &roster)?;
                    tracing::debug!(refused = checked.refused, "checked the peer's roster");
                    let outcome = if checked.is_empty() {
                        Default::default()
                    } else {
                        let tx = self.node.store_mut().write()?;
                        let outcome = store_roster(&tx, &checked)?;
                        tx.commit()?;
                        outcome
                    };
                    if outcome.revoked.contains(&self.transport_peer) {
                        return Err(self.refuse("you have been revoked from this site"));
                    }
                    self.adopt_newer_own_cert()?;
                }
                Event::PullRequested { after, scope } => {
                    // The peer's position counts only under the scope it was reached in.
                    let peer = self.peer.as_ref().expect("peer accepted before serving");
                    let expected = scope_key(
                        &peer.signed_cert,
                        &self
                            .node
                            .identity()
                            .cert
                            .clone()
                            .ok_or(SyncError::NotMember)?,
                    );
                    let after = if scope == expected { after } else { 0 };
                    self.serve_after = Some(after);
                    self.pull_after = after;
                }
                Event::Changes(page) => self.on_changes(page)?,
                Event::FetchRequested(fetch) => self.fetch_to_answer = Some(fetch),
                Event::Fetched(fetched) => {
                    let changes: usize = fetched.docs.iter().map(|d| d.changes.len()).sum();
                    let bytes: usize = fetched
                        .docs
                        .iter()
                        .flat_map(|d| d.changes.iter().map(|c| c.bytes.len()))
                        .sum();
                    // Near the answerer's limits: it may have cut the answer short.
                    let cut = changes + 100 >= FETCH_CHANGES || bytes + (1 << 20) >= FETCH_BYTES;
                    let asked: Vec<DocId> = fetched.docs.iter().map(|d| d.doc).collect();
                    let report = self.ingest(fetched.docs, None)?;
                    // Ask again for what is still missing, as long as answers bring
                    // something; an answer cut at its limits is asked again for the rest
                    // of its documents (a long history comes in several answers).
                    if report.accepted > 0 {
                        let mut report = report;
                        if cut {
                            report.missing.extend(asked);
                        }
                        self.after_ingest(&report)?;
                    }
                    self.fetch_next()?;
                }
                Event::ReceiveComplete => {
                    let receipt = self.receipt()?;
                    self.session.finish(receipt)?;
                }
                Event::PeerDone(receipt) => {
                    self.receipt_to_keep = match receipt {
                        Some(r) if self.receipt_is_kept(&r)? => Some(r),
                        _ => None,
                    };
                }
                Event::Finished => self.on_finished()?,
            }
        }
        // The peer is done but this side is not (it still waits for pages or fetches):
        // the receipt is written now, as it would have been with the session's end.
        if let Some(receipt) = self.receipt_to_keep.take() {
            let tx = self.node.store_mut().write()?;
            crate::site::keep_station_receipt(&tx, &receipt)?;
            tx.commit()?;
        }
        Ok(())
    }

    fn refuse(&mut self, reason: &str) -> SyncError {
        self.session.refuse(reason);
        SyncError::Session(SessionError::Refused(reason.to_string()))
    }

    fn on_hello(&mut self, hello: Hello) -> Result<(), SyncError> {
        let now = Time::now_millis();
        let cert = match hello.cert.check(Some(self.site), now) {
            Ok(c) => c,
            Err(e) => return Err(self.refuse(&format!("membership certificate: {e}"))),
        };
        if cert.device != self.transport_peer {
            return Err(self.refuse("the certificate is not for the device that connected"));
        }
        let roster = RosterView::load(self.node.store().conn(), Some(self.site))?;
        if roster.is_revoked(cert.device) {
            return Err(self.refuse("this device has been revoked from the site"));
        }
        let own_cert = self
            .node
            .identity()
            .cert
            .clone()
            .ok_or(SyncError::NotMember)?;
        // Remember the peer's certificate; find this node's position in its log. A peer
        // met before, with the same certificate and log, changes nothing: then nothing is
        // written (a write waits for the store's write lock, which a busy station's
        // ingest holds, and costs a commit).
        let conn = self.node.store().conn();
        let cert_held = crate::site::holds_cert_as_new(conn, &cert)?;
        let presented = cert.clone();
        // Judge the peer by the newest certificate known for it, not an older one it
        // might present (with more grids, or another role).
        let (signed_cert, cert) = match crate::site::newest_cert(conn, cert.device)? {
            Some((signed, newest)) if newest.issued_at_ms > cert.issued_at_ms => (signed, newest),
            _ => (hello.cert.clone(), cert),
        };
        if cert.expires_at_ms.is_some_and(|e| e <= now) {
            return Err(self.refuse("membership certificate: its membership expired"));
        }
        let stored = stored_cursor(conn, cert.device)?;
        let key = scope_key(&own_cert, &signed_cert);
        let cursor = match &stored {
            Some((Some(epoch), cursor, Some(sk), _)) if *epoch == hello.epoch && *sk == key => {
                (*cursor).max(0) as u64
            }
            _ => 0,
        };
        let row_held = stored
            .as_ref()
            .is_some_and(|(epoch, stored_cursor, sk, name)| {
                epoch.as_deref() == Some(hello.epoch.as_slice())
                    && *stored_cursor == cursor as i64
                    && sk.as_deref() == Some(key.as_slice())
                    && name.as_deref() == Some(cert.name.as_str())
            });
        if !(cert_held && row_held) {
            let tx = self.node.store_mut().write()?;
            crate::site::store_cert(&tx, &hello.cert, &presented)?;
            tx.execute(
                "INSERT INTO peers(device, name, epoch, cursor, scope_key) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(device) DO UPDATE SET name = excluded.name, epoch = excluded.epoch,
                     cursor = excluded.cursor, scope_key = excluded.scope_key",
                params![
                    cert.device.as_bytes().as_slice(),
                    cert.name,
                    hello.epoch.as_slice(),
                    cursor as i64,
                    key.as_slice(),
                ],
            )?;
            tx.commit()?;
        }
        let my_digest = roster_digest(self.node.store().conn())?;
        let roster = (my_digest != hello.roster_digest)
            .then(|| load_roster(self.node.store().conn()))
            .transpose()?;
        self.peer = Some(Peer {
            device: cert.device,
            signed_cert,
            scope: Scope::of(&cert),
            cert,
            epoch: hello.epoch,
            scope_key: key,
            cursor,
        });
        self.session.accept(roster)?;
        Ok(())
    }

    /// The scope a record must be in to travel to the peer: the peer's. (Not this node's
    /// own: a change that moves a record out of this node's scope must still reach the
    /// station.)
    /// Its parameters start at `?3`; `after` is the parameter of the position the peer
    /// pulled from.
    fn peer_scope_sql(&self, after: usize) -> (String, Vec<String>) {
        let peer = self.peer.as_ref().expect("peer accepted before data moves");
        peer.scope.sql(3, after)
    }

    fn send_page(&mut self) -> Result<(), SyncError> {
        let started = Instant::now();
        let after = self.serve_after.expect("serving");
        let peer = self
            .peer
            .as_ref()
            .expect("peer accepted before pull")
            .device;
        let (scope, scope_params) = self.peer_scope_sql(1);
        let conn = self.node.store().conn();
        let tx = conn.unchecked_transaction()?;
        let sql = format!(
            "SELECT c.lseq, c.doc_id, c.signature, c.bytes, c.seq, c.signer, d.kind, d.author, d.nonce
             FROM changes c JOIN docs d ON d.docno = c.docno JOIN records r ON r.docno = c.docno
             WHERE c.lseq > ?1 AND (c.origin IS NULL OR c.origin != ?2) AND c.signer != ?2 AND {scope}
             ORDER BY c.lseq LIMIT {PAGE_CHANGES}"
        );
        let mut stmt = tx.prepare_cached(&sql)?;
        let mut args: Vec<rusqlite::types::Value> =
            vec![(after as i64).into(), peer.as_bytes().to_vec().into()];
        args.extend(scope_params.into_iter().map(rusqlite::types::Value::from));
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        let mut docs: Vec<WireDoc> = Vec::new();
        let mut count = 0usize;
        let mut bytes = 0usize;
        let mut last_lseq = after;
        let mut scanned = 0usize;
        let mut full = false;
        while let Some(row) = rows.next()? {
            scanned += 1;
            let lseq: i64 = row.get(0)?;
            let doc: Vec<u8> = row.get(1)?;
            let signature: Vec<u8> = row.get(2)?;
            let change: Vec<u8> = row.get(3)?;
            let seq: i64 = row.get(4)?;
            let signer: Vec<u8> = row.get(5)?;
            let kind: u8 = row.get(6)?;
            let author: Vec<u8> = row.get(7)?;
            let nonce: Vec<u8> = row.get(8)?;
            if count > 0 && bytes + change.len() > PAGE_BYTES {
                full = true;
                break;
            }
            last_lseq = lseq as u64;
            let (Some(doc_id), Ok(signature)) = (
                DocId::from_slice(&doc),
                <[u8; 64]>::try_from(signature.as_slice()),
            ) else {
                if scanned >= PAGE_CHANGES {
                    full = true;
                    break;
                }
                continue;
            };
            // A first change carries the header the receiver needs to take the document;
            // of a shared kind (a household, the policy) every maker's first change does.
            let genesis = seq == 1
                && (signer == author
                    || RecordKind::from_code(kind).is_some_and(RecordKind::is_shared));
            let header = if genesis {
                match (
                    RecordKind::from_code(kind),
                    DeviceId::from_slice(&author),
                    <[u8; 16]>::try_from(nonce.as_slice()),
                ) {
                    (Some(kind), Ok(author), Ok(nonce)) => Some(DocHeader {
                        kind,
                        author,
                        nonce,
                    }),
                    _ => None,
                }
            } else {
                None
            };
            bytes += change.len();
            count += 1;
            let wire = WireChange {
                signature,
                bytes: change,
            };
            match docs.last_mut() {
                Some(d) if d.doc == doc_id => {
                    d.header = d.header.or(header);
                    d.changes.push(wire);
                }
                _ => docs.push(WireDoc {
                    doc: doc_id,
                    header,
                    changes: vec![wire],
                }),
            }
            if scanned >= PAGE_CHANGES {
                full = true;
                break;
            }
        }
        drop(rows);
        drop(stmt);
        let upto = if full {
            last_lseq
        } else {
            let max: Option<i64> =
                tx.query_row("SELECT MAX(lseq) FROM changes", [], |r| r.get(0))?;
            (max.unwrap_or(0) as u64).max(after)
        };
        drop(tx);
        tracing::debug!(
            peer = %peer,
            changes = count,
            scanned,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "read a page to send"
        );
        self.stats.sent += count as u64;
        self.serve_after = if full { Some(upto) } else { None };
        self.session.send_changes(Changes {
            from: after,
            upto,
            last: !full,
            docs,
        })?;
        Ok(())
    }

    /// Turns received wire documents into envelopes and stores them.
    fn ingest(
        &mut self,
        docs: Vec<WireDoc>,
        page: Option<(u64, u64)>,
    ) -> Result<IngestReport, SyncError> {
        let started = Instant::now();
        let peer = self.peer.as_ref().expect("peer accepted before data moves");
        let (peer_device, cursor) = (peer.device, peer.cursor);
        // Changes refused before they are even envelopes: (doc, signature, bytes, reason).
        let mut refused: Vec<(DocId, WireChange, String)> = Vec::new();
        let mut missing = Vec::new();
        // Syncs of one process queue for the store's write transaction (see
        // `Node::ingest_gate`). A sync keeps what decoding the page gives, so that
        // verifying does not decode again, as long as the syncs of this process hold no
        // more than `MAX_DECODED_HELD` decoded changes (a decoded change takes about 1 KiB;
        // twenty syncs waiting with a page each would hold them all at once).
        let gate = self.node.ingest_gate.clone();
        let page_changes: usize = docs.iter().map(|d| d.changes.len()).sum();
        let hold = gate.as_ref().and_then(|g| g.hold_decoded(page_changes));
        let keep_decoded = gate.is_none() || hold.is_some();
        // A document's changes may come in several runs of one message (its changes
        // interleaved with others' in the sender's log), the genesis with its header in an
        // earlier run than the rest: the runs of one document are applied as one batch, so
        // a later run finds the header an earlier run brought (§8.2).
        let mut runs: Vec<(DocId, Option<DocHeader>, Vec<WireChange>)> =
            Vec::with_capacity(docs.len());
        let mut run_of: std::collections::HashMap<DocId, usize> =
            std::collections::HashMap::with_capacity(docs.len());
        for wd in docs {
            let header = match wd.header {
                Some(h) if h.doc_id() == wd.doc => Some(h),
                Some(_) => {
                    let reason = "the header does not derive the document id";
                    refused.extend(wd.changes.into_iter().map(|c| (wd.doc, c, reason.into())));
                    continue;
                }
                None => None,
            };
            match run_of.get(&wd.doc) {
                Some(&i) => {
                    let run = &mut runs[i];
                    run.1 = run.1.or(header);
                    run.2.extend(wd.changes);
                }
                None => {
                    run_of.insert(wd.doc, runs.len());
                    runs.push((wd.doc, header, wd.changes));
                }
            }
        }
        // A volunteer takes a record it dropped (it left its scope) back only from a
        // station: another volunteer's copy may not have the change that moved it yet.
        if self.my_cert.role == MemberRole::Volunteer
            && self
                .peer
                .as_ref()
                .is_some_and(|p| p.cert.role != MemberRole::Station)
        {
            if self.purged.is_none() {
                self.purged = Some(self.node.purged_and_not_held()?);
            }
            let purged = self.purged.as_ref().expect("just loaded");
            if !purged.is_empty() {
                runs.retain(|(doc, _, _)| !purged.contains(doc));
            }
        }
        let mut headed = Vec::with_capacity(runs.len());
        for (doc, header, changes) in runs {
            let header = header.or_else(|| load_header_conn(self.node.store().conn(), doc).ok());
            match header {
                Some(header) => headed.push((header, changes)),
                None => missing.push(doc),
            }
        }
        let opened = open_envelopes(headed, keep_decoded);
        let (batch, decoded) = (opened.batch, opened.decoded);
        refused.extend(opened.refused);
        let undecodable = refused.len() as u64;
        // Nothing to store and no position to move: no transaction (and no fsync).
        if batch.is_empty()
            && refused.is_empty()
            && missing.is_empty()
            && page.is_none_or(|(_, upto)| upto == cursor)
        {
            return Ok(IngestReport::default());
        }
        let decoded_at = Instant::now();
        let job = Job {
            identity: self.node.identity().clone(),
            peer: peer_device,
            transport_peer: self.transport_peer,
            refused,
            batch,
            decoded,
            missing,
            cursor: page.map(|range| (range, cursor)),
        };
        let done = match gate {
            Some(gate) => gate.run(self.node.store_mut(), job)?,
            None => run_alone(self.node.store_mut(), job)?,
        };
        if done.cursor_moved
            && let Some((_, upto)) = page
        {
            self.peer.as_mut().expect("peer accepted").cursor = upto;
        }
        drop(hold);
        let report = done.report;
        tracing::debug!(
            peer = %peer_device,
            accepted = report.accepted,
            rejected = report.rejected.len() as u64 + undecodable,
            duplicate = report.duplicate,
            decode_ms = (decoded_at - started).as_secs_f64() * 1e3,
            group = done.group,
            store_ms = done.store_ms,
            commit_ms = done.commit_ms,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "ingested"
        );
        // Counted as the sender counts them: every change that came, whether it was new
        // here, already held, or waits for its history; less those refused and those held
        // in quarantine.
        let rejected = report.rejected.len() as u64 + undecodable;
        self.stats.received +=
            (page_changes as u64).saturating_sub(rejected + report.quarantined as u64);
        self.stats.rejected += rejected;
        Ok(report)
    }

    fn on_changes(&mut self, page: Changes) -> Result<(), SyncError> {
        let range = (page.from, page.upto);
        let report = self.ingest(page.docs, Some(range))?;
        self.after_ingest(&report)
    }

    /// Asks for the history of documents that could not be applied.
    fn after_ingest(&mut self, report: &IngestReport) -> Result<(), SyncError> {
        for doc in &report.missing {
            if self.to_fetch.len() >= MAX_TO_FETCH {
                break;
            }
            self.to_fetch.insert(*doc);
        }
        self.fetch_next()
    }

    /// Sends the next fetch (up to `MAX_FETCH_DOCS` documents, with the heads held now)
    /// when none is outstanding.
    fn fetch_next(&mut self) -> Result<(), SyncError> {
        if self.to_fetch.is_empty() || !self.session.can_fetch() {
            return Ok(());
        }
        let mut docs = Vec::new();
        while docs.len() < MAX_FETCH_DOCS
            && let Some(doc) = self.to_fetch.pop_first()
        {
            let mut heads: Vec<ChangeHash> = match load_doc(self.node.store().conn(), doc) {
                Ok(mut d) => d.get_heads().into_iter().map(ChangeHash::from).collect(),
                Err(_) => Vec::new(),
            };
            heads.truncate(MAX_HEADS);
            docs.push((doc, heads));
        }
        // In ascending order of document, each once (a set's order).
        self.session.fetch(Fetch { docs })?;
        Ok(())
    }

    fn answer_fetch(&mut self, fetch: Fetch) -> Result<Fetched, SyncError> {
        let (scope, scope_params) = self.peer_scope_sql(2);
        let conn = self.node.store().conn();
        let mut held_heads = conn.prepare_cached(
            "SELECT heads FROM docs WHERE docno = (SELECT docno FROM doc_index WHERE doc_id = ?1)",
        )?;
        let sql = format!(
            "SELECT 1 FROM records r
             WHERE r.docno = (SELECT docno FROM doc_index WHERE doc_id = ?1) AND ?2 = ?2 AND {scope}"
        );
        let mut in_scope = conn.prepare(&sql)?;
        let mut sig = conn.prepare_cached(
            "SELECT signature FROM changes
             WHERE docno = (SELECT docno FROM doc_index WHERE doc_id = ?1) AND hash = ?2",
        )?;
        let mut docs = Vec::new();
        let mut bytes = 0usize;
        let mut count = 0usize;
        for (doc, heads) in fetch.docs {
            let mut args: Vec<rusqlite::types::Value> = vec![
                doc.as_bytes().to_vec().into(),
                (self.pull_after as i64).into(),
            ];
            args.extend(
                scope_params
                    .iter()
                    .cloned()
                    .map(rusqlite::types::Value::from),
            );
            if !in_scope.exists(rusqlite::params_from_iter(args))? {
                continue;
            }
            // The asker holds what this node holds: nothing to send, and no document to
            // load.
            let mut asked: Vec<[u8; 32]> = heads.iter().map(|h| h.0).collect();
            asked.sort_unstable();
            let held: Option<Vec<u8>> = held_heads
                .query_row([doc.as_bytes().as_slice()], |r| r.get(0))
                .optional()?;
            if held.is_some_and(|h| h == asked.concat()) {
                continue;
            }
            let (Ok(header), Ok(mut am)) = (load_header_conn(conn, doc), load_doc(conn, doc))
            else {
                continue;
            };
            let known: Vec<automerge::ChangeHash> = heads
                .iter()
                .map(|h| automerge::ChangeHash::from(*h))
                .filter(|h| am.get_change_by_hash(h).is_some())
                .collect();
            // In causal order, and cut off at the message's limits: the asker applies what
            // came and asks again for the rest.
            let mut changes = Vec::new();
            for change in am.get_changes(&known) {
                let len = change.raw_bytes().len();
                if count >= FETCH_CHANGES || (count > 0 && bytes + len > FETCH_BYTES) {
                    break;
                }
                let signature: Option<Vec<u8>> = sig
                    .query_row(
                        params![doc.as_bytes().as_slice(), change.hash().0.as_slice()],
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(Ok(signature)) = signature.map(|s| <[u8; 64]>::try_from(s.as_slice()))
                else {
                    continue;
                };
                bytes += len;
                count += 1;
                changes.push(WireChange {
                    signature,
                    bytes: change.raw_bytes().to_vec(),
                });
            }
            if changes.is_empty() && (count >= FETCH_CHANGES || bytes >= FETCH_BYTES) {
                break;
            }
            self.stats.sent += changes.len() as u64;
            docs.push(WireDoc {
                doc,
                header: Some(header),
                changes,
            });
        }
        Ok(Fetched { docs })
    }

    fn receipt(&mut self) -> Result<Option<Signed<Receipt>>, SyncError> {
        if self.my_cert.role != MemberRole::Station {
            return Ok(None);
        }
        let peer = self.peer.as_ref().expect("peer accepted");
        // The log's last position is the number of changes held (positions are never
        // reused), without counting them.
        let total: i64 = self.node.store().conn().query_row(
            "SELECT COALESCE(MAX(lseq), 0) FROM changes",
            [],
            |r| r.get(0),
        )?;
        let refused: Vec<ChangeHash> = self
            .node
            .store()
            .conn()
            .prepare(
                "SELECT hash FROM (
                     SELECT doc_id, hash, received_at FROM rejected WHERE from_peer = ?1
                     UNION ALL
                     SELECT doc_id, hash, received_at FROM quarantine WHERE from_peer = ?1) x
                 WHERE NOT EXISTS (SELECT 1 FROM changes c
                                   WHERE c.docno = (SELECT docno FROM doc_index WHERE doc_id = x.doc_id)
                                     AND c.hash = x.hash)
                   AND hash != zeroblob(32)
                 GROUP BY hash ORDER BY MAX(received_at) DESC LIMIT ?2",
            )?
            .query_map(
                params![
                    peer.device.as_bytes().as_slice(),
                    yizhan_protocol::membership::MAX_RECEIPT_REFUSED as i64
                ],
                |r| r.get::<_, Vec<u8>>(0),
            )?
            .filter_map(|h| h.ok().and_then(|h| <[u8; 32]>::try_from(h).ok()))
            .map(ChangeHash)
            .collect();
        let receipt = Receipt {
            site: self.site,
            member: peer.device,
            epoch: peer.epoch,
            covers: peer.cursor,
            refused,
            station_changes: total as u64,
            at_ms: Time::now_millis(),
        };
        Ok(Some(Signed::sign(self.node.key(), &receipt)))
    }

    /// The station re-enrolled this node (new grids, say) and the roster brought the new
    /// certificate: take it on now, as joining with the new token would.
    fn adopt_newer_own_cert(&mut self) -> Result<(), SyncError> {
        let me = self.node.identity().device_id;
        let Some((signed, cert)) = crate::site::newest_cert(self.node.store().conn(), me)? else {
            return Ok(());
        };
        if cert.issued_at_ms <= self.my_cert.issued_at_ms || cert.site != self.site {
            return Ok(());
        }
        let mut identity = self.node.identity().clone();
        identity.grids = cert.grids.clone();
        identity.role = match cert.role {
            MemberRole::Station => Role::Station,
            MemberRole::Volunteer => Role::Volunteer,
        };
        identity.cert = Some(signed.clone());
        let tx = self.node.store_mut().write()?;
        crate::identity::save_identity(&tx, &identity)?;
        if let Some(peer) = self.peer.as_mut() {
            // The position now being reached in the peer's log is under the new scope.
            peer.scope_key = scope_key(&signed, &peer.signed_cert);
            tx.execute(
                "UPDATE peers SET scope_key = ?2 WHERE device = ?1",
                params![peer.device.as_bytes().as_slice(), peer.scope_key.as_slice()],
            )?;
        }
        tx.commit()?;
        self.node.set_identity(identity);
        self.my_cert = cert;
        self.scope_changed = true;
        Ok(())
    }

    /// Whether `signed` is a receipt to keep: opened, from this site's station on the
    /// other end of this connection, for this node and its log, and not older than the
    /// one held.
    fn receipt_is_kept(&self, signed: &Signed<Receipt>) -> Result<bool, SyncError> {
        let Ok(r) = signed.open() else {
            return Ok(false);
        };
        if r.refused.len() > yizhan_protocol::membership::MAX_RECEIPT_REFUSED {
            return Ok(false);
        }
        let roster = RosterView::load(self.node.store().conn(), Some(self.site))?;
        let me = self.node.identity().device_id;
        if !roster.is_station(signed.signer)
            || signed.signer != self.transport_peer
            || r.site != self.site
            || r.member != me
            || r.epoch != self.my_epoch
        {
            return Ok(false);
        }
        let previous = self.node.station_receipt()?;
        Ok(!previous.is_some_and(|p| p.covers > r.covers && p.epoch == r.epoch))
    }

    fn on_finished(&mut self) -> Result<(), SyncError> {
        let peer = self.peer.as_ref().expect("peer accepted");
        let seen = Seen {
            peer: peer.device,
            name: peer.cert.name.clone(),
            at_ms: Time::now_millis(),
            receipt: self.receipt_to_keep.take(),
            addr: self.peer_addr.clone(),
        };
        match self.node.ingest_gate.clone() {
            Some(gate) => gate.run(self.node.store_mut(), seen)?,
            None => run_alone(self.node.store_mut(), seen)?,
        };
        // Records that left this volunteer's scope go, once the station holds its own
        // changes to them (`purge.rs`). Looked for only when something may have moved:
        // changes came, this node's grids changed, or a record waits for the receipt.
        if self.my_cert.role == MemberRole::Volunteer
            && (self.stats.received > 0 || self.scope_changed || self.node.purge_due()?)
        {
            self.node
                .purge_out_of_scope()
                .map_err(|e| SyncError::Read(ReadError::Index(e.to_string())))?;
        }
        Ok(())
    }
}

/// A received page turned back into envelopes ([`open_envelopes`]).
struct Opened {
    batch: Vec<DocChanges>,
    decoded: Decoded,
    refused: Vec<(DocId, WireChange, String)>,
}

/// Turns each document's wire changes back into envelopes: decodes each change (panics
/// contained) to learn its hash and author, in the page's order. The decodings are kept
/// when `keep`.
fn open_envelopes(docs: Vec<(DocHeader, Vec<WireChange>)>, keep: bool) -> Opened {
    let kept = if keep {
        docs.iter().map(|(_, c)| c.len()).sum()
    } else {
        0
    };
    let mut opened = Opened {
        batch: Vec::with_capacity(docs.len()),
        decoded: Decoded::with_capacity(kept),
        refused: Vec::new(),
    };
    for (header, wire) in docs {
        let doc = header.doc_id();
        let mut changes = Vec::with_capacity(wire.len());
        for c in wire {
            match c.into_envelope(doc) {
                Ok((env, change)) => {
                    if keep {
                        opened.decoded.insert(env.hash, change);
                    }
                    changes.push(env);
                }
                Err(e) => opened.refused.push((doc, e.change, e.error.to_string())),
            }
        }
        opened.batch.push(DocChanges { header, changes });
    }
    opened
}

/// A peer's row: its log epoch, this node's position in its log, the scope key, and the
/// peer's name.
type CursorRow = (Option<Vec<u8>>, i64, Option<Vec<u8>>, Option<String>);

/// This node's stored position in `peer`'s log, if it has met the peer.
fn stored_cursor(
    conn: &rusqlite::Connection,
    peer: DeviceId,
) -> rusqlite::Result<Option<CursorRow>> {
    conn.query_row(
        "SELECT epoch, cursor, scope_key, name FROM peers WHERE device = ?1",
        [peer.as_bytes().as_slice()],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )
    .optional()
}

impl Node {
    /// Every document this node holds with its heads (sorted), for comparing nodes.
    pub fn doc_heads(&self) -> Result<std::collections::BTreeMap<DocId, Vec<u8>>, ReadError> {
        let mut stmt = self
            .store()
            .conn()
            .prepare("SELECT doc_id, heads FROM docs")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = std::collections::BTreeMap::new();
        for row in rows {
            let (id, heads) = row?;
            if let Some(id) = DocId::from_slice(&id) {
                out.insert(id, heads);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::home::{InitConfig, InitSeed};
    use crate::records::NewVisit;

    /// A page of `n` one-change documents as a node would receive it.
    fn page(n: usize) -> Vec<(DocHeader, Vec<WireChange>)> {
        let dir = tempfile::tempdir().unwrap();
        let config = InitConfig {
            name: "王芳".into(),
            station: false,
            encrypt: None,
        };
        let mut node = Node::init(&dir.path().join("a"), &config, InitSeed::random()).unwrap();
        let visits: Vec<NewVisit> = (0..n)
            .map(|i| NewVisit {
                household: format!("和平里 {i} 号"),
                ..NewVisit::default()
            })
            .collect();
        node.add_visits(&visits)
            .unwrap()
            .into_iter()
            .map(|id| {
                let d = node.doc_changes(id).unwrap();
                let wire = d
                    .changes
                    .into_iter()
                    .map(|env| WireChange {
                        signature: env.signature,
                        bytes: env.bytes,
                    })
                    .collect();
                (d.header, wire)
            })
            .collect()
    }

    /// A volunteer's scope holds the notices of its grids and the site-wide ones, and no
    /// other; SQLite finds them by look-ups in `notice_grids`' key, grid by grid, not by a
    /// scan of every notice.
    #[test]
    fn the_notices_of_a_scope_are_found_through_their_index() {
        let dir = tempfile::tempdir().unwrap();
        let config = InitConfig {
            name: "幸福驿站".into(),
            station: true,
            encrypt: None,
        };
        let mut node = Node::init(&dir.path().join("s"), &config, InitSeed::random()).unwrap();
        let mut expected = std::collections::BTreeSet::new();
        for i in 0..60 {
            let grids: Vec<String> = match i % 4 {
                0 => Vec::new(),
                1 => vec![format!("g{:02}", i % 10)],
                _ => vec![format!("g{:02}", i % 10), format!("g{:02}", (i + 3) % 10)],
            };
            let id = node
                .publish_notice(&crate::records::NewNotice {
                    title: format!("通知 {i}"),
                    body: "内容".into(),
                    grids: grids.clone(),
                    until: None,
                })
                .unwrap();
            if grids.is_empty() || grids.iter().any(|g| g == "g03" || g == "g07") {
                expected.insert(id);
            }
        }
        let scope = Scope::Member {
            device: yizhan_protocol::DeviceKey::from_seed([9; 32]).device_id(),
            grids: vec!["g03".into(), "g07".into()],
        };
        let (cond, params) = scope.sql(1, 3);
        let sql = format!("SELECT r.doc_id FROM records r WHERE r.kind = 5 AND ?3 = ?3 AND {cond}");
        let conn = node.store().conn();
        let mut args: Vec<rusqlite::types::Value> = params
            .into_iter()
            .map(rusqlite::types::Value::from)
            .collect();
        args.push(0i64.into());
        let found: std::collections::BTreeSet<DocId> = conn
            .prepare(&sql)
            .unwrap()
            .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .unwrap()
            .map(|id| DocId::from_slice(&id.unwrap()).unwrap())
            .collect();
        assert_eq!(found, expected);
        assert!(
            expected.len() > 15 && expected.len() < 60,
            "{}",
            expected.len()
        );
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(rusqlite::params_from_iter(args.iter()), |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(
            plan.contains("SEARCH n USING PRIMARY KEY (grid=?)"),
            "{plan}"
        );
        assert!(!plan.contains("SCAN n"), "{plan}");
    }

    #[test]
    fn a_page_opens_in_its_order_with_what_is_no_change_refused() {
        let mut docs = page(300);
        for i in [3, 256] {
            docs[i].1[0].bytes.truncate(10);
        }
        // What each document should open to: its doc id and the hashes of its changes.
        let expected: Vec<(DocId, Vec<ChangeHash>)> = docs
            .iter()
            .map(|(header, wire)| {
                let hashes = wire
                    .iter()
                    .filter_map(|c| yizhan_protocol::envelope::decode_change(&c.bytes).ok())
                    .map(|c| c.hash().into())
                    .collect();
                (header.doc_id(), hashes)
            })
            .collect();
        let opened = open_envelopes(docs.clone(), true);
        let batch: Vec<(DocId, Vec<ChangeHash>)> = opened
            .batch
            .iter()
            .map(|d| {
                (
                    d.header.doc_id(),
                    d.changes.iter().map(|c| c.hash).collect(),
                )
            })
            .collect();
        assert_eq!(batch, expected);
        let refused: Vec<DocId> = opened.refused.iter().map(|(d, _, _)| *d).collect();
        assert_eq!(refused, [docs[3].0.doc_id(), docs[256].0.doc_id()]);
        assert_eq!(opened.decoded.len(), 298);
        let unkept = open_envelopes(docs, false);
        assert!(unkept.decoded.is_empty());
        assert_eq!(unkept.batch.len(), 300);
    }
}

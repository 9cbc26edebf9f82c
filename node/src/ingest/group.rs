//! Group commit: the syncs of one process that store received changes at the same time
//! share one write transaction and one commit.
//!
//! Every sync of a [`Home`](crate::home::Home) hands the page it received to the home's
//! [`IngestGate`] as a [`Job`] and waits; at its end it hands the gate the note that it
//! finished ([`Seen`]: its time, where the peer was reached, a station's receipt) the same
//! way. One waiting sync at a time leads: it takes the
//! jobs queued at that moment (at most [`MAX_GROUP_CHANGES`] changes, and always at least
//! one), runs them in one transaction on its own store connection, commits once, and hands
//! every sync its own outcome. Then it passes the lead to the sync first in
//! the queue, if any, and waits for its own outcome if its job was not in the group.
//!
//! One commit for many pages writes each page of the database's random-keyed indexes once
//! instead of once per sync, and one fsync instead of many. A job whose ingest fails fails
//! alone: the others are stored again without it; a failed commit fails every job of the
//! group (nothing of it was stored). No sync's changes count as stored before the commit
//! that stored them returned.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rusqlite::{Transaction, params};
use yizhan_protocol::wire::WireChange;
use yizhan_protocol::{ChangeHash, DeviceId, DocId, Receipt, Signed, SignedChange};

use crate::error::WriteError;
use crate::identity::Identity;
use crate::ingest::hold::keep_rejected;
use crate::ingest::{Decoded, DocChanges, IngestContext, IngestReport, ingest_in};
use crate::store::Store;

/// The most changes one group takes; the first job is always taken whole.
pub(crate) const MAX_GROUP_CHANGES: usize = 16_000;

/// The most decoded changes that the syncs of one home hold while they wait to store
/// them (about 1 KiB each). A sync decodes its page to read each change's hash and author;
/// keeping the decodings spares the verifying threads decoding it again, and this bounds
/// what twenty syncs waiting at once keep in memory.
pub(crate) const MAX_DECODED_HELD: usize = 16_000;

/// One received page to store, with what its sync knows about where it came from.
#[derive(Clone)]
pub(crate) struct Job {
    /// The storing node's identity, as the sync that received the page holds it.
    pub identity: Identity,
    /// The peer the page came from.
    pub peer: DeviceId,
    /// The device at the other end of the connection (the signer of refused envelopes).
    pub transport_peer: DeviceId,
    /// Changes refused before they were envelopes: document, wire change, reason.
    pub refused: Vec<(DocId, WireChange, String)>,
    /// The envelopes, by document.
    pub batch: Vec<DocChanges>,
    /// Their decodings, where the sync kept them.
    pub decoded: Decoded,
    /// Documents named without a header this node could find (their history is missing).
    pub missing: Vec<DocId>,
    /// The peer's log position to move to, if the page is the next one: `(from, upto)`
    /// and the position the sync holds now.
    pub cursor: Option<((u64, u64), u64)>,
}

/// That a sync with `peer` finished: its time and the name its certificate gives, for
/// `peers` ("who was seen when").
#[derive(Clone)]
pub(crate) struct Seen {
    /// The peer the sync was with.
    pub peer: DeviceId,
    /// The peer's name, from its certificate.
    pub name: String,
    /// When the sync finished, in milliseconds since the epoch.
    pub at_ms: i64,
    /// The station's receipt that the sync brought, to keep.
    pub receipt: Option<Signed<Receipt>>,
    /// Where the peer was reached, to remember if it changed.
    pub addr: Option<String>,
}

/// What a sync hands the gate to write: a received page, or the note that it finished.
/// The note goes through the gate too, so that the syncs of a whole site finishing at
/// once share a commit instead of each waiting on SQLite's lock (whose busy handler
/// sleeps up to 100 ms at a time).
#[derive(Clone)]
pub(crate) enum Task {
    /// Store a received page.
    Ingest(Box<Job>),
    /// Note that a sync finished.
    Seen(Seen),
}

impl From<Job> for Task {
    fn from(job: Job) -> Task {
        Task::Ingest(Box::new(job))
    }
}

impl From<Seen> for Task {
    fn from(seen: Seen) -> Task {
        Task::Seen(seen)
    }
}

impl Task {
    fn changes(&self) -> usize {
        match self {
            Task::Ingest(job) => {
                job.batch.iter().map(|d| d.changes.len()).sum::<usize>() + job.refused.len()
            }
            Task::Seen(_) => 0,
        }
    }

    /// The task to run now, leaving `self` without the page's decodings (about 1 KiB a
    /// change): what stays is kept for a retry, and verifying decodes again if it comes to
    /// that.
    fn take_run_copy(&mut self) -> Task {
        match self {
            Task::Ingest(job) => {
                let decoded = std::mem::take(&mut job.decoded);
                Task::Ingest(Box::new(Job {
                    decoded,
                    ..(**job).clone()
                }))
            }
            Task::Seen(seen) => Task::Seen(seen.clone()),
        }
    }
}

/// What became of a [`Job`].
pub(crate) struct Done {
    /// The ingest's report.
    pub report: IngestReport,
    /// Whether the peer's log position moved to the page's end.
    pub cursor_moved: bool,
    /// Milliseconds spent storing the group this job was in, before its commit.
    pub store_ms: f64,
    /// Milliseconds the commit of the group took.
    pub commit_ms: f64,
    /// Jobs in that group.
    pub group: usize,
}

/// What a waiting sync is told.
enum Turn {
    /// Its job's outcome.
    Done(Result<Done, WriteError>),
    /// Lead the next group.
    Lead,
}

struct Waiting {
    job: Task,
    reply: SyncSender<Turn>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    /// Whether some sync leads a group now (or has been told to).
    leading: bool,
}

/// The queue of one home's syncs for its store's write transaction (see the module docs).
pub(crate) struct IngestGate {
    queue: Mutex<Queue>,
    /// The most changes one group takes ([`MAX_GROUP_CHANGES`]).
    max_changes: usize,
    /// Decoded changes syncs may still keep ([`MAX_DECODED_HELD`] less those held).
    decoded_left: AtomicUsize,
}

impl Default for IngestGate {
    fn default() -> Self {
        IngestGate {
            queue: Mutex::default(),
            max_changes: MAX_GROUP_CHANGES,
            decoded_left: AtomicUsize::new(MAX_DECODED_HELD),
        }
    }
}

/// Leave to keep `n` decoded changes until dropped ([`IngestGate::hold_decoded`]).
pub(crate) struct DecodedHold {
    gate: Arc<IngestGate>,
    n: usize,
}

impl Drop for DecodedHold {
    fn drop(&mut self) {
        self.gate.decoded_left.fetch_add(self.n, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for IngestGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let q = self.lock();
        f.debug_struct("IngestGate")
            .field("waiting", &q.waiting.len())
            .field("leading", &q.leading)
            .finish()
    }
}

impl IngestGate {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue stays consistent under a panic: every change to it is one push or pop.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether no sync is storing or waiting to.
    #[cfg(test)]
    fn is_idle(&self) -> bool {
        let q = self.lock();
        !q.leading && q.waiting.is_empty()
    }

    /// Leave to keep `n` decoded changes, if the budget has room for them.
    pub(crate) fn hold_decoded(self: &Arc<Self>, n: usize) -> Option<DecodedHold> {
        self.decoded_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(n)
            })
            .ok()
            .map(|_| DecodedHold {
                gate: self.clone(),
                n,
            })
    }

    /// Stores `job`, in a group with the jobs of other syncs waiting at the same time, on
    /// the store's connection if this sync leads. Blocks until the group that held it has
    /// committed.
    pub(crate) fn run(&self, store: &mut Store, job: impl Into<Task>) -> Result<Done, WriteError> {
        let job = job.into();
        let (reply, turns) = sync_channel(1);
        let lead_now = {
            let mut q = self.lock();
            q.waiting.push_back(Waiting { job, reply });
            !std::mem::replace(&mut q.leading, true)
        };
        if lead_now {
            self.lead(store);
        }
        loop {
            match turns.recv() {
                Ok(Turn::Done(outcome)) => return outcome,
                Ok(Turn::Lead) => self.lead(store),
                // Only the queue holds the sender, and every waiting job gets an answer.
                Err(_) => return Err(WriteError::Shared("the storing sync stopped".into())),
            }
        }
    }

    /// Runs one group, answers its jobs, and passes the lead on.
    fn lead(&self, store: &mut Store) {
        let group = {
            let mut q = self.lock();
            let mut group = Vec::new();
            let mut changes = 0;
            while let Some(next) = q.waiting.front() {
                let n = next.job.changes();
                if !group.is_empty() && changes + n > self.max_changes {
                    break;
                }
                changes += n;
                group.extend(q.waiting.pop_front());
            }
            group
        };
        // The lead is passed on however this ends, a panic included: otherwise every later
        // sync would wait for a leader that never comes.
        let _pass_on = PassOn(self);
        let (jobs, replies): (Vec<Task>, Vec<SyncSender<Turn>>) =
            group.into_iter().map(|w| (w.job, w.reply)).unzip();
        let outcomes = run_group(store, jobs);
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // A sync that stopped waiting no longer needs its answer.
            let _ = reply.send(Turn::Done(outcome));
        }
    }

    /// Tells the first waiting sync to lead, or, if none waits, that no one leads.
    fn pass_lead_on(&self) {
        let mut q = self.lock();
        while let Some(next) = q.waiting.pop_front() {
            let reply = next.reply.clone();
            q.waiting.push_front(next);
            if reply.send(Turn::Lead).is_ok() {
                return;
            }
            q.waiting.pop_front(); // its sync is gone: drop its job
        }
        q.leading = false;
    }
}

/// Passes the lead on when dropped (see [`IngestGate::lead`]). A sync whose group was
/// being stored when a panic unwound gets no answer: its channel closes, and it fails.
struct PassOn<'a>(&'a IngestGate);

impl Drop for PassOn<'_> {
    fn drop(&mut self) {
        self.0.pass_lead_on();
    }
}

/// Stores `jobs` in one transaction on `store`'s connection; one outcome per job, in order.
///
/// A job whose ingest fails gets its error, and the group is stored again without it (in
/// a new transaction): one job's failure does not cost the others their turn. (A
/// savepoint per job would isolate it too, but an open savepoint makes SQLite journal
/// every statement: a fifth of the station's time went there.)
fn run_group(store: &mut Store, jobs: Vec<Task>) -> Vec<Result<Done, WriteError>> {
    let count = jobs.len();
    let started = Instant::now();
    let tx = match store.write() {
        Ok(tx) => tx,
        Err(e) => return shared_failure(count, WriteError::from(e)),
    };
    let mut results = Vec::with_capacity(count);
    if let [_] = jobs.as_slice() {
        let job = jobs.into_iter().next().expect("one job");
        match run_job(&tx, job) {
            Ok(r) => results.push(r),
            Err(e) => return vec![Err(e)],
        }
    } else {
        let mut failed = None;
        let mut jobs = jobs;
        for (i, job) in jobs.iter_mut().enumerate() {
            match run_job(&tx, job.take_run_copy()) {
                Ok(r) => results.push(r),
                Err(e) => {
                    failed = Some((i, e));
                    break;
                }
            }
        }
        if let Some((i, e)) = failed {
            drop(tx); // rolls the whole group back
            let mut rest = jobs;
            rest.remove(i);
            let mut outcomes = run_group(store, rest);
            outcomes.insert(i, Err(e));
            return outcomes;
        }
    }
    let committing = Instant::now();
    if let Err(e) = tx.commit() {
        return shared_failure(count, WriteError::from(e));
    }
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let (store_ms, commit_ms) = (ms(committing - started), ms(committing.elapsed()));
    let changes: usize = results
        .iter()
        .map(|(r, _)| r.accepted + r.duplicate + r.rejected.len())
        .sum();
    tracing::debug!(jobs = count, changes, store_ms, commit_ms, "stored a group");
    results
        .into_iter()
        .map(|(report, cursor_moved)| {
            Ok(Done {
                report,
                cursor_moved,
                store_ms,
                commit_ms,
                group: count,
            })
        })
        .collect()
}

/// The same failure for every job of a group.
fn shared_failure(count: usize, first: WriteError) -> Vec<Result<Done, WriteError>> {
    let text = first.to_string();
    std::iter::once(Err(first))
        .chain((1..count).map(|_| Err(WriteError::Shared(text.clone()))))
        .collect()
}

/// Runs one task inside `tx`; returns the ingest's report and whether the peer's log
/// position moved (an empty report and `false` for a [`Task::Seen`]).
fn run_job(tx: &Transaction<'_>, task: Task) -> Result<(IngestReport, bool), WriteError> {
    let job = match task {
        Task::Ingest(job) => *job,
        Task::Seen(seen) => {
            tx.execute(
                "UPDATE peers SET last_sync = ?2, name = ?3 WHERE device = ?1",
                params![seen.peer.as_bytes().as_slice(), seen.at_ms, seen.name],
            )?;
            if let Some(addr) = &seen.addr {
                tx.execute(
                    "UPDATE peers SET addr = ?2 WHERE device = ?1 AND addr IS NOT ?2",
                    params![seen.peer.as_bytes().as_slice(), addr],
                )?;
            }
            if let Some(receipt) = &seen.receipt {
                crate::site::keep_station_receipt(tx, receipt)?;
            }
            return Ok((IngestReport::default(), false));
        }
    };
    let ctx = IngestContext::load(tx, &job.identity, Some(job.peer))?;
    for (doc, c, reason) in job.refused {
        let env = SignedChange {
            doc,
            hash: ChangeHash([0; 32]),
            signer: job.transport_peer,
            signature: c.signature,
            bytes: c.bytes,
        };
        keep_rejected(tx, Some(job.peer), &env, &reason)?;
    }
    let mut report = ingest_in(tx, &ctx, job.batch, job.decoded)?;
    report.missing.extend(job.missing);
    let mut moved = false;
    if let Some(((from, upto), cursor)) = job.cursor
        && from == cursor
        && report.missing.is_empty()
        && report.unknown_authors == 0
    {
        tx.execute(
            "UPDATE peers SET cursor = ?2 WHERE device = ?1",
            params![job.peer.as_bytes().as_slice(), upto as i64],
        )?;
        moved = true;
    }
    Ok((report, moved))
}

/// For a caller that has no gate (a node not from a [`Home`]): one job, one transaction.
pub(crate) fn run_alone(store: &mut Store, job: impl Into<Task>) -> Result<Done, WriteError> {
    run_group(store, vec![job.into()])
        .pop()
        .expect("one outcome per job")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::home::{Home, InitConfig, InitSeed, Node};
    use crate::records::NewVisit;

    fn node(dir: &std::path::Path, name: &str) -> Node {
        let config = InitConfig {
            name: name.into(),
            station: false,
            encrypt: None,
        };
        Node::init(&dir.join(name), &config, InitSeed::random()).unwrap()
    }

    /// A new node's home, and the node checked out of it as `serve` would (with a gate).
    fn station() -> (tempfile::TempDir, Home, Node) {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::plain(node(dir.path(), "station").home());
        let station = home.checkout().unwrap();
        (dir, home, station)
    }

    /// A page of `n` new visits from a laptop of its own, as a job for `station`.
    fn job(dir: &std::path::Path, name: &str, n: usize, station: &Node) -> Job {
        let mut laptop = node(dir, name);
        let visits: Vec<NewVisit> = (0..n)
            .map(|i| NewVisit {
                household: format!("{name} {i} 号"),
                ..NewVisit::default()
            })
            .collect();
        let ids = laptop.add_visits(&visits).unwrap();
        let peer = laptop.identity().device_id;
        Job {
            identity: station.identity().clone(),
            peer,
            transport_peer: peer,
            refused: Vec::new(),
            batch: ids
                .iter()
                .map(|id| laptop.doc_changes(*id).unwrap())
                .collect(),
            decoded: Decoded::default(),
            missing: Vec::new(),
            cursor: None,
        }
    }

    #[test]
    fn jobs_waiting_together_are_stored_by_one_commit_each_with_its_own_report() {
        let (dir, home, mut station) = station();
        let gate = IngestGate::default();
        // Three syncs wait while another leads; then the lead comes to this thread.
        let mut turns = Vec::new();
        for (name, n) in [("王芳", 3), ("李强", 5), ("张伟", 70)] {
            let (reply, turn) = sync_channel(1);
            let job = job(dir.path(), name, n, &station);
            gate.lock().waiting.push_back(Waiting {
                job: job.into(),
                reply,
            });
            turns.push((n, turn));
        }
        gate.lock().leading = true;
        assert!(!gate.is_idle());
        gate.lead(station.store_mut());
        for (n, turn) in turns {
            let Ok(Turn::Done(Ok(done))) = turn.try_recv() else {
                panic!("no outcome for the job of {n}");
            };
            assert_eq!((done.group, done.report.accepted), (3, n));
            assert!(done.report.rejected.is_empty());
        }
        // No one waits: the lead is not passed on.
        assert!(gate.is_idle());
        // Stored and committed: a fresh connection sees all of it, and it verifies.
        let fresh = home.open().unwrap();
        assert_eq!(fresh.record_counts().unwrap(), (0, 78));
        assert_eq!(fresh.verify().unwrap().bad, 0);
    }

    #[test]
    fn a_group_stops_at_its_limit_and_the_lead_passes_to_the_next_waiting() {
        let (dir, _home, mut station) = station();
        let gate = IngestGate {
            max_changes: 5,
            ..IngestGate::default()
        };
        let mut turns = Vec::new();
        for name in ["王芳", "李强"] {
            let (reply, turn) = sync_channel(1);
            let job = job(dir.path(), name, 3, &station);
            gate.lock().waiting.push_back(Waiting {
                job: job.into(),
                reply,
            });
            turns.push(turn);
        }
        gate.lock().leading = true;
        gate.lead(station.store_mut());
        // The first was stored alone; the second sync is told to lead, and stores its own.
        assert!(matches!(turns[0].try_recv(), Ok(Turn::Done(Ok(d))) if d.group == 1));
        assert!(matches!(turns[1].try_recv(), Ok(Turn::Lead)));
        assert!(!gate.is_idle());
        gate.lead(station.store_mut());
        assert!(matches!(turns[1].try_recv(), Ok(Turn::Done(Ok(d))) if d.report.accepted == 3));
        assert!(gate.is_idle());
    }

    #[test]
    fn decoded_changes_are_kept_within_the_budget_and_given_back() {
        let gate = Arc::new(IngestGate::default());
        let a = gate.hold_decoded(MAX_DECODED_HELD - 10).expect("room");
        assert!(gate.hold_decoded(11).is_none());
        let b = gate.hold_decoded(10).expect("room for exactly the rest");
        drop(a);
        assert!(gate.hold_decoded(MAX_DECODED_HELD - 10).is_some());
        drop(b);
        assert!(gate.hold_decoded(MAX_DECODED_HELD).is_some());
    }

    #[test]
    fn syncs_finishing_while_a_page_is_stored_share_its_commit() {
        let (dir, home, mut station) = station();
        let gate = IngestGate::default();
        let page = job(dir.path(), "王芳", 2, &station);
        let seen: Vec<Seen> = ["李强", "张伟"]
            .iter()
            .zip(1_800_000_000_000i64..)
            .map(|(name, at_ms)| Seen {
                peer: node(dir.path(), name).identity().device_id,
                name: (*name).into(),
                at_ms,
                receipt: None,
                addr: Some(format!("192.0.2.{}:7000", at_ms % 250)),
            })
            .collect();
        for s in &seen {
            station
                .store()
                .conn()
                .execute(
                    "INSERT INTO peers(device, name) VALUES (?1, ?2)",
                    params![s.peer.as_bytes().as_slice(), "?"],
                )
                .unwrap();
        }
        let mut turns = Vec::new();
        let tasks: Vec<Task> = std::iter::once(page.into())
            .chain(seen.iter().cloned().map(Task::from))
            .collect();
        for task in tasks {
            let (reply, turn) = sync_channel(1);
            gate.lock().waiting.push_back(Waiting { job: task, reply });
            turns.push(turn);
        }
        gate.lock().leading = true;
        gate.lead(station.store_mut());
        for turn in turns {
            assert!(matches!(turn.try_recv(), Ok(Turn::Done(Ok(d))) if d.group == 3));
        }
        // Committed together: a fresh connection sees the page and both notes.
        let fresh = home.open().unwrap();
        assert_eq!(fresh.record_counts().unwrap(), (0, 2));
        for s in &seen {
            let row: (String, i64, Option<String>) = fresh
                .store()
                .conn()
                .query_row(
                    "SELECT name, last_sync, addr FROM peers WHERE device = ?1",
                    [s.peer.as_bytes().as_slice()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .unwrap();
            assert_eq!(row, (s.name.clone(), s.at_ms, s.addr.clone()));
        }
    }

    #[test]
    fn a_job_handed_to_an_idle_gate_is_stored_at_once() {
        let (dir, _home, mut station) = station();
        let gate = IngestGate::default();
        let job = job(dir.path(), "王芳", 4, &station);
        let done = gate.run(station.store_mut(), job).unwrap();
        assert_eq!((done.group, done.report.accepted), (1, 4));
        assert!(gate.is_idle());
    }
}

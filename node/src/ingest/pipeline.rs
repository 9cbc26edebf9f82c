//! Passes 2 and 3 of [`ingest_in`](super::ingest_in) on many changes: signature checks and
//! the building of new documents on worker threads, stored in the original order on the
//! calling thread, then applying changes to documents the node already holds.

use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::AutoCommit;
use rusqlite::Transaction;
use yizhan_protocol::{DeviceId, DocHeader, DocId, SignedChange};

use crate::error::WriteError;
use crate::ingest::hold::{depends_on_held, hold, reject};
use crate::ingest::{
    IngestContext, IngestReport, Unchecked, Verdict, check_model, may_write, model_grids,
};
use crate::records;
use crate::store::docs::{
    NewChange, Prepared, has_doc, index_row_of, load_doc, prepare, sort_causally, store_new_doc,
    store_prepared,
};

/// A group of changes of one document for pass 2, and whether pass 2 may build the
/// document whole (its first group, for a document this node does not hold).
pub(crate) type Group = (bool, DocHeader, Vec<Unchecked>);

/// Most threads pass 2 of [`ingest_in`] runs on.
pub(crate) const MAX_VERIFY_WORKERS: usize = 2;

/// The outcome of checking one envelope: the verified change, or the envelope and why not.
pub(crate) type Checked = Result<yizhan_protocol::VerifiedChange, Box<yizhan_protocol::Unverified>>;

/// Below this many changes, checking on one thread is quicker than starting others.
pub(crate) const PARALLEL_VERIFY_MIN: usize = 64;

/// How many documents pass 2 hands over at once.
/// Their signatures are checked as one batch: for new visits, 128 signatures at about
/// 13 µs each on this project's machine, against 16 µs in batches of 32 (and 35 µs one by
/// one); the evening set ran 2–7% faster with 128 than with 32.
pub(crate) const WORK_BATCH: usize = 128;

/// Passes 2 and 3 of [`ingest_in`] on many changes: `workers` threads check signatures
/// (and build new documents) [`WORK_BATCH`] groups at a time, each taking the next batch
/// as it is free, while this thread stores the results in the original order of the
/// groups. Each batch has a channel of its own for its result: a worker that panics drops
/// its batch's sender, and the storing side stops there with an error (nothing of that
/// batch or after it is stored, and the caller's transaction is not committed).
pub(crate) fn store_checked(
    tx: &Transaction<'_>,
    ctx: &IngestContext,
    report: &mut IngestReport,
    expiries: &std::collections::HashMap<DeviceId, Option<i64>>,
    work: Vec<Group>,
    workers: usize,
) -> Result<(), WriteError> {
    use std::sync::mpsc::sync_channel;
    let site = ctx.site;
    let mut jobs = Vec::new();
    let mut results = Vec::new();
    let mut work = work.into_iter().peekable();
    while work.peek().is_some() {
        let (done, result) = sync_channel::<Vec<Work>>(1);
        jobs.push((work.by_ref().take(WORK_BATCH).collect::<Vec<Group>>(), done));
        results.push(result);
    }
    let jobs = std::sync::Mutex::new(jobs.into_iter());
    // The queue stays usable if a worker panicked while holding it.
    let next = || jobs.lock().unwrap_or_else(|p| p.into_inner()).next();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let next = &next;
            std::thread::Builder::new()
                .name("yizhan-verify".into())
                .spawn_scoped(scope, move || {
                    let mut keys = yizhan_protocol::identity::KeyCache::default();
                    while let Some((batch, done)) = next() {
                        // The signatures of the whole batch are checked together.
                        let mut groups = Vec::with_capacity(batch.len());
                        let mut unchecked = Vec::new();
                        for (first, header, changes) in batch {
                            groups.push((first, header, changes.len()));
                            unchecked.extend(changes);
                        }
                        let mut results =
                            SignedChange::verify_many(unchecked, site, &mut keys).into_iter();
                        let checked = groups
                            .into_iter()
                            .map(|(first, header, len)| {
                                let results: Vec<Checked> = results.by_ref().take(len).collect();
                                // A document new to this node whose changes all verify and
                                // may be merged is built here too (apply, snapshot, index
                                // row), so that the SQL thread only stores it.
                                if first {
                                    build_fresh(ctx, expiries, header, results)
                                } else {
                                    Work::Checked(header, results)
                                }
                            })
                            .collect();
                        // The storing side may have stopped on an error.
                        let _ = done.send(checked);
                    }
                })
                .map_err(WriteError::Thread)?;
        }
        let stored = results.into_iter().try_for_each(|result| {
            let batch = result.recv().map_err(|_| {
                WriteError::Thread(std::io::Error::other("a verifying thread stopped"))
            })?;
            batch
                .into_iter()
                .try_for_each(|work| store_work(tx, ctx, report, work))
        });
        if stored.is_err() {
            // The batches no worker has taken are not checked.
            jobs.lock()
                .unwrap_or_else(|p| p.into_inner())
                .by_ref()
                .for_each(drop);
        }
        stored
    })
}

/// Pass 3 of [`ingest_in`] for one group that pass 2 checked.
pub(crate) fn store_work(
    tx: &Transaction<'_>,
    ctx: &IngestContext,
    report: &mut IngestReport,
    work: Work,
) -> Result<(), WriteError> {
    match work {
        Work::Checked(header, results) => apply_group(tx, ctx, report, header, results),
        Work::Built(built) => {
            let Built {
                header,
                stored,
                prepared,
            } = *built;
            report.accepted += stored.len();
            store_new_doc(tx, &header, &prepared, &stored, ctx.origin)
        }
        Work::Retry(header, envelopes) => {
            let mut keys = yizhan_protocol::identity::KeyCache::default();
            let unchecked = envelopes.into_iter().map(|c| (c, None)).collect();
            let results = SignedChange::verify_many(unchecked, ctx.site, &mut keys);
            apply_group(tx, ctx, report, header, results)
        }
    }
}

/// What pass 2 of [`ingest_in`] hands the SQL thread for one group of changes.
pub(crate) enum Work {
    /// Checked envelopes, for [`apply_group`].
    Checked(DocHeader, Vec<Checked>),
    /// A new document, built and ready to store.
    Built(Box<Built>),
    /// A new document that could not be built off the SQL thread (its history is
    /// incomplete, or Automerge refused it): [`apply_group`] checks it again and decides.
    Retry(DocHeader, Vec<SignedChange>),
}

/// A new document built by pass 2: its changes in causal order and what to store.
pub(crate) struct Built {
    pub(crate) header: DocHeader,
    pub(crate) stored: Vec<NewChange>,
    pub(crate) prepared: Prepared,
}

/// Builds a document this node does not hold from `results`, if every change verified,
/// [`may_write`] merges each, and all of them apply; otherwise hands them back.
///
/// The checks are those of [`apply_group`] for a document the store does not hold:
/// [`may_write`], the author's membership expiry, no two changes with one
/// `(actor, seq)`, the record's operation budget, the record model, the nesting rule and
/// loading back (`rules.rs`); a
/// group that fails any of them goes to [`apply_group`], which refuses (and records) what
/// it must.
pub(crate) fn build_fresh(
    ctx: &IngestContext,
    expiries: &std::collections::HashMap<DeviceId, Option<i64>>,
    header: DocHeader,
    results: Vec<Checked>,
) -> Work {
    let mut claimed = std::collections::HashSet::new();
    let mergeable =
        results.iter().all(|r| {
            r.as_ref().is_ok_and(|v| {
                let signer = v.envelope.signer;
                let expiry = expiries.get(&signer).copied().flatten();
                crate::ingest::rules::made_after_expiry(expiry, v.change.timestamp()).is_none()
                    && claimed.insert((signer, v.change.seq()))
                    && matches!(may_write(ctx, &header, v), Ok(Verdict::Merge))
            })
        }) && crate::ingest::rules::op_budget(0, results.iter().flatten().map(|v| v.change.len()))
            .iter()
            .all(Result::is_ok);
    // Read marks are written once (`rules::record_model`): a notice's changes are checked
    // against one another by `apply_group`.
    let notice_marks = header.kind == yizhan_protocol::RecordKind::Notice && results.len() > 1;
    if !mergeable || results.is_empty() || notice_marks {
        return Work::Checked(header, results);
    }
    let mut kept = Vec::with_capacity(results.len());
    let mut changes = Vec::with_capacity(results.len());
    for v in results.into_iter().flatten() {
        kept.push(NewChange {
            seq: v.change.seq(),
            env: v.envelope,
        });
        changes.push(v.change);
    }
    let built = catch_unwind(AssertUnwindSafe(|| {
        // What each change writes (`rules::record_model`), its operations decoded once: a
        // change that fails goes back to `apply_group`, which refuses it alone.
        let mut decoded = Vec::with_capacity(changes.len());
        for (c, change) in kept.iter().zip(&changes) {
            let expanded = crate::ingest::rules::expand(change).ok()?;
            let grids = model_grids(ctx, c.env.signer);
            crate::ingest::rules::record_model_of(
                header.kind,
                c.env.doc,
                change,
                &expanded,
                grids,
                ctx.site.as_ref(),
            )
            .ok()?;
            decoded.push(expanded);
        }
        // Most new documents are one simple change: read it without building the document
        // (the same record as Automerge would make of it, see `Root::of_first_change`).
        if let ([only], [change], [expanded]) =
            (kept.as_slice(), changes.as_slice(), decoded.as_slice())
            && let Some(root) = records::Root::of_expanded(change, expanded)
        {
            return Some(Prepared {
                snapshot: Vec::new(),
                heads: only.env.hash.0.to_vec(),
                row: index_row_of(&header, &root, ctx.site.as_ref()),
            });
        }
        drop(decoded);
        let mut doc = AutoCommit::new();
        doc.apply_changes(changes).ok()?;
        if !doc.get_missing_deps(&[]).is_empty() {
            return None; // some changes wait for history this group does not bring
        }
        if crate::ingest::rules::nesting(&doc).is_err() {
            return None; // apply_group refuses the lot
        }
        if kept
            .iter()
            .any(|c| doc.get_change_meta_by_hash(&c.env.hash.into()).is_none())
        {
            return None;
        }
        sort_causally(&mut doc, &mut kept);
        // What is stored must load back as this document (`rules::loads_back`); a
        // document of one change is stored as that change, but it must save and load back
        // too, for the snapshot the next change brings.
        let prepared = prepare(&header, &mut doc, ctx.site.as_ref());
        crate::ingest::rules::loads_back(&mut doc, &prepared.snapshot).ok()?;
        Some(match kept.as_slice() {
            // A document of one change is that change: its snapshot is not stored twice.
            [_] => Prepared {
                snapshot: Vec::new(),
                ..prepared
            },
            _ => prepared,
        })
    }));
    match built {
        Ok(Some(prepared)) => Work::Built(Box::new(Built {
            header,
            stored: kept,
            prepared,
        })),
        _ => Work::Retry(header, kept.into_iter().map(|c| c.env).collect()),
    }
}

/// Which of `ids` this node holds. Looked up in id order: consecutive look-ups then walk
/// the index's pages in order, each page read once, instead of jumping between them.
pub(crate) fn held_docs(
    tx: &Transaction<'_>,
    ids: impl Iterator<Item = DocId>,
) -> rusqlite::Result<std::collections::HashSet<DocId>> {
    let mut ids: Vec<DocId> = ids.collect();
    ids.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    ids.dedup();
    let mut held = std::collections::HashSet::new();
    for id in ids {
        if has_doc(tx, id)? {
            held.insert(id);
        }
    }
    Ok(held)
}

/// Pass 3 of [`ingest_in`] for one document: who may write, then apply and store.
pub(crate) fn apply_group(
    tx: &Transaction<'_>,
    ctx: &IngestContext,
    report: &mut IngestReport,
    header: DocHeader,
    results: Vec<Checked>,
) -> Result<(), WriteError> {
    let doc_id = header.doc_id();
    let mut verified = Vec::new();
    let mut gate = crate::ingest::rules::Gate::new(doc_id); // expiry, equivocation (rules.rs)
    for result in results {
        match result {
            Ok(v) => match gate
                .check(tx, ctx.origin, &v)?
                .map_or_else(|| may_write(ctx, &header, &v), Err)
                .and_then(|verdict| match verdict {
                    Verdict::Merge => check_model(ctx, &header, &v).map(|()| verdict),
                    Verdict::Quarantine => Ok(verdict), // judged whole when accepted
                }) {
                Ok(Verdict::Merge) => verified.push(v),
                Ok(Verdict::Quarantine) => hold(
                    tx,
                    ctx,
                    report,
                    &header,
                    &v.envelope,
                    crate::ingest::hold::REVOKED_AUTHOR,
                )?,
                Err(why) => {
                    let signer = v.envelope.signer;
                    if ctx.site.is_some()
                        && ctx.roster.role(signer).is_none()
                        && !ctx.roster.is_revoked(signer)
                    {
                        report.unknown_authors += 1;
                    }
                    reject(tx, ctx, report, &v.envelope, &why)?
                }
            },
            Err(failed) => reject(tx, ctx, report, &failed.envelope, &failed.error.to_string())?,
        }
    }
    if verified.is_empty() {
        return Ok(());
    }
    let load = || match load_doc(tx, doc_id) {
        Ok(doc) => Ok(doc),
        Err(WriteError::NotAllowed(_)) => Ok(AutoCommit::new()), // a new document
        Err(e) => Err(e),
    };
    let mut doc = load()?;
    // The fields that hold a value now: a change may not take the last one away.
    let before: Vec<String> = automerge::ReadDoc::keys(&doc, automerge::ROOT).collect();
    // A notice's read mark is written once: not where the record holds it already, nor twice
    // in the batch (rules.rs).
    if header.kind == yizhan_protocol::RecordKind::Notice {
        let mut marked: std::collections::HashSet<String> = before
            .iter()
            .filter(|k| records::read_mark_device(k).is_some())
            .cloned()
            .collect();
        let mut fresh = Vec::with_capacity(verified.len());
        for v in verified {
            let marks = crate::ingest::rules::read_marks_written(&v.change);
            if marks.iter().all(|m| !marked.contains(m)) {
                marked.extend(marks);
                fresh.push(v);
            } else {
                reject(
                    tx,
                    ctx,
                    report,
                    &v.envelope,
                    "it marks a notice read a second time",
                )?;
            }
        }
        verified = fresh;
        if verified.is_empty() {
            return Ok(());
        }
    }
    // The record's budget of operations, before Automerge materialises any (rules.rs).
    let held = automerge::ReadDoc::stats(&doc).num_ops;
    let budget = crate::ingest::rules::op_budget(held, verified.iter().map(|v| v.change.len()));
    // Move the decoded changes into Automerge; keep what is needed of them afterwards.
    let mut kept = Vec::with_capacity(verified.len());
    let mut changes = Vec::with_capacity(verified.len());
    for (v, admitted) in verified.into_iter().zip(budget) {
        if let Err(why) = admitted {
            reject(tx, ctx, report, &v.envelope, &why)?;
            continue;
        }
        kept.push((v.envelope, v.change.seq(), v.change.deps().to_vec()));
        changes.push(v.change);
    }
    if kept.is_empty() {
        return Ok(());
    }
    loop {
        let applied = catch_unwind(AssertUnwindSafe(|| doc.apply_changes(changes)));
        if !matches!(applied, Ok(Ok(()))) {
            for (env, _, _) in kept {
                reject(
                    tx,
                    ctx,
                    report,
                    &env,
                    "Automerge could not apply the change",
                )?;
            }
            return Ok(());
        }
        // Objects nested too deep: nothing of this document in the batch is stored
        // (rules.rs).
        if let Err(why) = crate::ingest::rules::nesting(&doc) {
            for (env, _, _) in kept {
                reject(tx, ctx, report, &env, &why)?;
            }
            return Ok(());
        }
        // A field that held a value and holds none now was deleted whole, not settled: the
        // changes that delete it are refused, and the rest applied again without them.
        let removed = crate::ingest::rules::removed_fields(&before, &doc);
        let (culprits, rest): (Vec<_>, Vec<_>) = kept
            .into_iter()
            .partition(|(env, _, _)| crate::ingest::rules::deletes_any(&env.bytes, &removed));
        kept = rest;
        if culprits.is_empty() {
            break;
        }
        let why = format!("it removes the record's `{}`", removed.join("`, `"));
        for (env, _, _) in culprits {
            reject(tx, ctx, report, &env, &why)?;
        }
        doc = load()?;
        changes = kept
            .iter()
            .filter_map(|(env, _, _)| automerge::Change::from_bytes(env.bytes.clone()).ok())
            .collect();
    }
    let mut stored = Vec::new();
    let mut unapplied = Vec::new();
    for (env, seq, deps) in kept {
        // The change graph's metadata, not `get_change_by_hash`, which rebuilds the change.
        if doc.get_change_meta_by_hash(&env.hash.into()).is_some() {
            stored.push(NewChange { seq, env });
        } else {
            unapplied.push((env, deps));
        }
    }
    // A change that builds on a change held in quarantine is held with it (it cannot
    // apply before the station decides); the rest lack history to fetch.
    loop {
        let before = unapplied.len();
        let mut still = Vec::new();
        for (env, deps) in unapplied {
            if depends_on_held(tx, &deps)? {
                hold(
                    tx,
                    ctx,
                    report,
                    &header,
                    &env,
                    crate::ingest::hold::BUILDS_ON_HELD,
                )?;
            } else {
                still.push((env, deps));
            }
        }
        unapplied = still;
        if unapplied.len() == before {
            break;
        }
    }
    if !unapplied.is_empty() {
        report.missing.push(doc_id);
    }
    if stored.is_empty() {
        return Ok(());
    }
    sort_causally(&mut doc, &mut stored);
    let Ok(prepared) = catch_unwind(AssertUnwindSafe(|| {
        prepare(&header, &mut doc, ctx.site.as_ref())
    })) else {
        return Err(WriteError::Damaged(
            doc_id,
            "the merged document cannot be saved".into(),
        ));
    };
    // The new snapshot must load back as this document, or the record would be unreadable
    // on every node that stores it: nothing of this document in the batch is stored.
    if let Err(why) = crate::ingest::rules::loads_back(&mut doc, &prepared.snapshot) {
        for c in stored {
            reject(tx, ctx, report, &c.env, &why)?;
        }
        return Ok(());
    }
    report.accepted += stored.len();
    store_prepared(tx, &header, &prepared, &stored, ctx.origin)
}

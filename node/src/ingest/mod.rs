//! Ingest: how changes that came from other nodes become part of this node's store.
//!
//! Every received change passes the same gate, in one write transaction with the sync's new
//! position in the peer's log:
//!
//! 1. **Bounds and shape** (`protocol::envelope`): the envelope decodes within its byte and
//!    operation bounds, and its document id derives from its header.
//! 2. **Signature and membership** (`pipeline`): the envelope verifies strictly for this
//!    node's site; its signer's certificate is known and unexpired (`IngestContext`).
//! 3. **Write rules** (`may_write`, `rules`): the signer may write this record (author,
//!    station, grid), the change stays inside the record model and the record's operation
//!    budget, and the merged document loads back to the same heads.
//! 4. **Causality**: every dependency is present; documents whose history is missing are
//!    listed to fetch.
//! 5. **Store** (`store::docs`): the change, the new snapshot and the index row.
//!
//! Changes of a revoked author are held back for the station (`hold`); refused ones are
//! reported and kept, bounded, for inspection. Concurrent syncs of one process share one
//! transaction and one commit through the `group` gate.
//!
//! Layering: ingest uses `store`, `site` (the roster) and `identity`; it knows nothing of
//! `Node`, syncs or the network.

pub(crate) mod group;
pub(crate) mod hold;
pub(crate) mod pipeline;
pub mod rules;

use rusqlite::Transaction;
use yizhan_protocol::{ChangeHash, DeviceId, DocHeader, DocId, RecordKind, SignedChange, SiteId};

use crate::error::WriteError;
use crate::identity::{Identity, Role};
use crate::ingest::hold::reject;
use crate::ingest::pipeline::{
    Group, MAX_VERIFY_WORKERS, PARALLEL_VERIFY_MIN, apply_group, held_docs, store_checked,
};
use crate::store::docs::has_change;

/// Changes received from elsewhere for one document.
#[derive(Clone, Debug)]
pub struct DocChanges {
    /// The document's header (its id is derived from it).
    pub header: DocHeader,
    /// Its changes, in any order.
    pub changes: Vec<SignedChange>,
}

/// A change that was not accepted, and why.
#[derive(Clone, Debug)]
pub struct Rejection {
    /// The document it claimed.
    pub doc: DocId,
    /// The hash it claimed.
    pub hash: ChangeHash,
    /// Why.
    pub reason: String,
}

/// What `Node::ingest` did.
#[derive(Clone, Debug, Default)]
pub struct IngestReport {
    /// Changes newly stored.
    pub accepted: usize,
    /// Changes already held (a no-op).
    pub duplicate: usize,
    /// Changes refused.
    pub rejected: Vec<Rejection>,
    /// Documents some of whose changes could not be applied for lack of their history.
    pub missing: Vec<DocId>,
    /// Changes held in quarantine (a station receiving a revoked author's changes).
    pub quarantined: usize,
    /// Changes refused because this node holds no certificate of their author (neither a
    /// member nor revoked): the peer's roster, which comes before its pages, did not
    /// reach this node. The position in the peer's log does not move past them, so the
    /// next sync, with the roster, brings them again.
    pub unknown_authors: usize,
}

/// What ingest needs to know to judge changes: the site, who sent them, and the roster.
pub(crate) struct IngestContext {
    pub(crate) site: Option<SiteId>,
    /// The peer the changes came from (`None`: handed in locally).
    pub(crate) origin: Option<DeviceId>,
    /// Whether that peer is a station (a station only relays changes it accepted).
    pub(crate) origin_is_station: bool,
    /// This node is a station: a revoked author's changes go to quarantine.
    pub(crate) quarantine_revoked: bool,
    /// The station accepts quarantined changes: a revoked author is no bar.
    pub(crate) accept_revoked: bool,
    pub(crate) roster: crate::site::RosterView,
}

impl IngestContext {
    /// Reads the roster inside the write transaction `tx`, so that a revocation committed
    /// by another process just before applies to this batch.
    pub(crate) fn load(
        tx: &Transaction<'_>,
        identity: &Identity,
        origin: Option<DeviceId>,
    ) -> Result<IngestContext, WriteError> {
        let roster = crate::site::RosterView::load(tx, identity.site_id)?;
        let origin_is_station =
            origin.is_some_and(|o| roster.is_station(o) && !roster.is_revoked(o));
        Ok(IngestContext {
            site: identity.site_id,
            origin,
            origin_is_station,
            quarantine_revoked: identity.role == Role::Station,
            accept_revoked: false,
            roster,
        })
    }
}

/// Who may write what, once the envelope has verified:
///
/// - in a site, the signer must be a member (the root station, or a device with a
///   certificate from it) and not revoked, unless the change comes from a station, which
///   only holds a revoked device's changes if it accepted them;
/// - a document is started only by its header's author, except a shared one (a
///   household, the policy), which any member may start, with what derives its id;
/// - a visit log is changed only by its author or by a station;
/// - the policy is written only by stations, and a notice published only by one (what
///   others may write of it, their own read mark, is judged by `rules::record_model`).
///
/// What a change it merges writes is judged next, by [`model_grids`] and
/// `rules::record_model`.
pub(crate) fn may_write(
    ctx: &IngestContext,
    header: &DocHeader,
    v: &yizhan_protocol::VerifiedChange,
) -> Result<Verdict, String> {
    let signer = v.envelope.signer;
    let mut signer_is_station = false;
    if ctx.site.is_some() {
        match ctx.roster.role(signer) {
            None => return Err("its author is not a member of this site".into()),
            Some(role) => signer_is_station = role == yizhan_protocol::MemberRole::Station,
        }
    }
    if v.change.deps().is_empty() && signer != header.author && !header.kind.is_shared() {
        return Err("a record may only be started by its author".into());
    }
    if header.kind == RecordKind::Policy && ctx.site.is_some() && !signer_is_station {
        return Err("only a station may write the policy".into());
    }
    if header.kind == RecordKind::Notice
        && ctx.site.is_some()
        && v.change.deps().is_empty()
        && !signer_is_station
    {
        return Err("only a station may publish a notice".into());
    }
    if header.kind == RecordKind::Visit && signer != header.author && !signer_is_station {
        return Err("only the visit's author or a station may change a visit log".into());
    }
    if ctx.site.is_some()
        && ctx.roster.is_revoked(signer)
        && !ctx.origin_is_station
        && !ctx.accept_revoked
    {
        if ctx.quarantine_revoked {
            return Ok(Verdict::Quarantine);
        }
        return Err("its author was revoked".into());
    }
    Ok(Verdict::Merge)
}

/// The grids `signer` may write records in, for `rules::record_model`: a volunteer's
/// (none if the roster names none), or `None` (any grid) for a station and outside a site.
pub(crate) fn model_grids(ctx: &IngestContext, signer: DeviceId) -> Option<&[String]> {
    if ctx.site.is_none() || ctx.roster.is_station(signer) {
        return None;
    }
    Some(ctx.roster.grids(signer).unwrap_or_default())
}

/// Why a change [`may_write`] merges must be refused for what it writes, if so
/// (`rules::record_model`).
pub(crate) fn check_model(
    ctx: &IngestContext,
    header: &DocHeader,
    v: &yizhan_protocol::VerifiedChange,
) -> Result<(), String> {
    let grids = model_grids(ctx, v.envelope.signer);
    crate::ingest::rules::record_model(
        header.kind,
        v.envelope.doc,
        &v.change,
        grids,
        ctx.site.as_ref(),
    )
}

/// What to do with a change that passed the checks.
pub(crate) enum Verdict {
    /// Apply it.
    Merge,
    /// Hold it back for the station's decision (its author was revoked).
    Quarantine,
}

/// Changes already decoded by the caller of [`ingest_in`] (a received page is decoded to
/// learn each change's hash), by hash: verifying uses them instead of decoding again.
pub(crate) type Decoded = std::collections::HashMap<ChangeHash, automerge::Change>;

/// An envelope on its way to verification, with its decoding if the caller had one.
pub(crate) type Unchecked = (SignedChange, Option<automerge::Change>);

/// Checks and stores changes inside `tx`: the document id is derived from the header, the
/// envelope verifies strictly for this node's site, [`may_write`] allows it, and every
/// dependency is present. Refused changes are reported and kept in `rejected` for
/// inspection; documents whose history is missing are listed in `missing` (to fetch).
pub(crate) fn ingest_in(
    tx: &Transaction<'_>,
    ctx: &IngestContext,
    batch: Vec<DocChanges>,
    mut decoded: Decoded,
) -> Result<IngestReport, WriteError> {
    let started = std::time::Instant::now();
    let mut report = IngestReport::default();
    let mut seen = std::collections::HashSet::new();
    // Pass 1, cheap: drop what is not for its document and what this node already holds.
    let mut groups: Vec<(DocHeader, Vec<Unchecked>)> = Vec::with_capacity(batch.len());
    // Documents this node does not hold yet: pass 2 may build them off this thread.
    let mut fresh_docs = std::collections::HashSet::new();
    // Their signers' membership expiry (rules.rs), read here for pass 2.
    let mut expiries = std::collections::HashMap::new();
    let held = held_docs(tx, batch.iter().map(|d| d.header.doc_id()))?;
    for DocChanges { header, changes } in batch {
        let doc_id = header.doc_id();
        let new_doc = !held.contains(&doc_id);
        if new_doc {
            fresh_docs.insert(doc_id);
        }
        let mut fresh = Vec::with_capacity(changes.len());
        for env in changes {
            if env.doc != doc_id {
                reject(
                    tx,
                    ctx,
                    &mut report,
                    &env,
                    "change is not for the document its header names",
                )?;
                continue;
            }
            // A document this node does not hold has no stored change to look up.
            if !seen.insert((doc_id, env.hash)) || (!new_doc && has_change(tx, doc_id, &env.hash)?)
            {
                report.duplicate += 1;
                continue;
            }
            if new_doc && !expiries.contains_key(&env.signer) {
                expiries.insert(
                    env.signer,
                    crate::ingest::rules::member_expiry(tx, env.signer)?,
                );
            }
            let change = decoded.remove(&env.hash);
            fresh.push((env, change));
        }
        groups.push((header, fresh));
    }
    tracing::trace!(
        groups = groups.len(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "ingest pass 1"
    );
    // Pass 2, the costly part: strict signature checks, on a second core while this one
    // applies and stores what is already checked (pass 3).
    let total: usize = groups.iter().map(|(_, c)| c.len()).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if total < PARALLEL_VERIFY_MIN || cores < 2 {
        let mut keys = yizhan_protocol::identity::KeyCache::default();
        for (header, changes) in groups {
            let results = SignedChange::verify_many(changes, ctx.site, &mut keys);
            apply_group(tx, ctx, &mut report, header, results)?;
        }
    } else {
        // Which groups pass 2 may build whole: the first group of a document this node
        // does not hold (a later group builds on what pass 3 stored from the first).
        let mut firsts = fresh_docs;
        let work: Vec<Group> = groups
            .into_iter()
            .map(|(header, changes)| (firsts.remove(&header.doc_id()), header, changes))
            .collect();
        let workers = cores.min(MAX_VERIFY_WORKERS);
        let stored = store_checked(tx, ctx, &mut report, &expiries, work, workers);
        release_freed_memory();
        stored?;
    }
    Ok(report)
}

/// Hands memory freed by the verifying threads back to the system. Each thread allocates
/// from a malloc arena of its own, and glibc keeps what is freed in an arena for reuse: with
/// threads started for every large ingest, a station's resident memory grew by what its
/// arenas once held (370 MiB instead of 230 at 1,000,000 documents, 20 laptops at once).
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free memory to the system; it takes no pointer
    // and is thread-safe.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

//! One size's run: a working copy of the cached homes, the station's `yizhan serve`, and
//! the targets measured against it one after another.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use rusqlite::OptionalExtension;
use yizhan_node::Node;
use yizhan_node::records::VisitEdit;
use yizhan_protocol::DocId;

use crate::baseline::{self, AmSync, open_store};
use crate::data::{self, DIFF, GRIDS, Homes};
use crate::procs::{Station, SyncOut, Yizhan};

/// What to measure.
#[derive(Clone, Copy, Debug, Default)]
pub struct Phases {
    /// Target 1 (and the initial sync it needs).
    pub quiet: bool,
    /// Target 2.
    pub small_diff: bool,
    /// Target 3.
    pub evening: bool,
}

/// Everything measured at one size.
#[derive(Debug, Default)]
pub struct SizeResult {
    /// Station documents.
    pub n: usize,
    /// How long generating the cache took, if it was generated in this run.
    pub generated: Option<Duration>,
    /// The laptop's first sync, which brings its subset.
    pub initial: Option<SyncOut>,
    /// Target 1.
    pub quiet: Option<(SyncOut, AmSync)>,
    /// Target 2.
    pub small: Option<Small>,
    /// Target 3.
    pub evening: Option<Evening>,
    /// Target 4: the station's peak RSS (KiB) at the end.
    pub peak_rss_kib: u64,
}

/// Target 2's measurements.
#[derive(Debug)]
pub struct Small {
    /// The sync.
    pub sync: SyncOut,
    /// The new changes' own signed bytes (change bytes + signature), both stores.
    pub signed_bytes: u64,
    /// How many new changes those are.
    pub new_changes: u64,
    /// Automerge's per-document sync over the same documents.
    pub baseline: AmSync,
}

/// One evening set's ingest.
#[derive(Debug)]
pub struct Ingest {
    /// Changes the station newly stored.
    pub changes: u64,
    /// Wall time of the syncs.
    pub wall: Duration,
    /// The floor over the same changes.
    pub floor: baseline::Floor,
    /// CPU time the station used for them.
    pub station_cpu: Duration,
    /// CPU time the laptops' sync processes used.
    pub laptops_cpu: Duration,
}

impl Ingest {
    /// Changes per second.
    pub fn rate(&self) -> f64 {
        self.changes as f64 / self.wall.as_secs_f64()
    }
}

/// Target 3's measurements.
#[derive(Debug)]
pub struct Evening {
    /// New visits per laptop.
    pub per_laptop: usize,
    /// Laptops synced one after another.
    pub sequential: Ingest,
    /// Laptops synced all at once.
    pub concurrent: Ingest,
}

/// Runs `phases` at size `n` against one station process.
pub fn run(yz: &Yizhan, data_dir: &Path, n: usize, phases: Phases) -> Result<SizeResult> {
    let (cache, generated) = data::cached(data_dir, n)?;
    let homes = data::working_copy(&cache, data_dir, n)?;
    let station = yz.serve(&homes.station(), &homes.scratch().join("station.log"))?;
    eprintln!("N = {n}: station serving on {}", station.addr);
    let mut result = SizeResult {
        n,
        generated,
        ..SizeResult::default()
    };
    if phases.quiet || phases.small_diff {
        let initial = yz.sync(&homes.laptop(), &station.addr)?;
        // The laptop's own visits went to households of its grid it made itself (as every
        // node may): those go out too, and the station's making of each comes back.
        let households = data::households_per_grid(n);
        ensure!(
            initial.received as usize == data::subset(n) - DIFF + households
                && initial.sent as usize == DIFF + DIFF.min(households),
            "the initial sync moved {} in and {} out",
            initial.received,
            initial.sent
        );
        result.initial = Some(initial);
        result.quiet = Some(quiet(yz, &homes, &station)?);
    }
    if phases.small_diff {
        result.small = Some(small_diff(yz, &homes, &station)?);
    }
    if phases.evening {
        result.evening = Some(evening(yz, &homes, &station, n)?);
    }
    result.peak_rss_kib = station.peak_rss_kib()?;
    Ok(result)
}

/// Target 1: a sync when nothing differs, and Automerge's sync over the same documents.
fn quiet(yz: &Yizhan, homes: &Homes, station: &Station) -> Result<(SyncOut, AmSync)> {
    let out = yz.sync(&homes.laptop(), &station.addr)?;
    ensure!(
        out.sent == 0 && out.received == 0,
        "a quiet sync moved changes"
    );
    let base = baseline::automerge_sync(&homes.laptop(), &homes.station(), &HashSet::new())?;
    Ok((out, base))
}

fn max_lseq(home: &Path) -> Result<i64> {
    Ok(
        open_store(home)?.query_row("SELECT COALESCE(MAX(lseq), 0) FROM changes", [], |r| {
            r.get(0)
        })?,
    )
}

/// The signed bytes (change + 64-byte signature) and count of changes after `lseq`.
fn signed_after(home: &Path, lseq: i64) -> Result<(u64, u64)> {
    Ok(open_store(home)?.query_row(
        "SELECT COALESCE(SUM(length(bytes) + length(signature)), 0), COUNT(*)
         FROM changes WHERE lseq > ?1",
        [lseq],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )?)
}

/// Edits `ids` with the node at `home` (one change each).
fn edit(home: &Path, ids: &[DocId], note: &str) -> Result<()> {
    let mut node = Node::open(home)?;
    for (i, id) in ids.iter().enumerate() {
        let edit = VisitEdit {
            note: Some(format!("{note} #{i}")),
            ..VisitEdit::default()
        };
        node.edit_visit(*id, &edit)?;
    }
    Ok(())
}

fn doc_ids(home: &Path, sql: &str, param: &str) -> Result<Vec<DocId>> {
    let conn = open_store(home)?;
    let mut stmt = conn.prepare(sql)?;
    let ids = stmt
        .query_map([param], |r| r.get::<_, Vec<u8>>(0))?
        .map(|r| DocId::from_slice(&r?).context("malformed id"))
        .collect::<Result<Vec<_>>>()?;
    ensure!(ids.len() == DIFF, "found {} documents to edit", ids.len());
    Ok(ids)
}

/// Target 2: 100 documents edited on the laptop (its own visit logs) and 100 others at the
/// station (the station's visit logs in the laptop's grid), then a sync.
fn small_diff(yz: &Yizhan, homes: &Homes, station: &Station) -> Result<Small> {
    let (laptop_home, station_home) = (homes.laptop(), homes.station());
    let me = Node::open(&laptop_home)?.identity().device_id.to_string();
    let limit = format!("LIMIT {DIFF}");
    let ours = doc_ids(
        &laptop_home,
        &format!(
            "SELECT doc_id FROM records WHERE kind = 1 AND author = ?1 ORDER BY doc_id {limit}"
        ),
        &me,
    )?;
    let theirs = doc_ids(
        &station_home,
        &format!(
            "SELECT doc_id FROM records WHERE kind = 1 AND grid = 'g00' AND author != ?1
             ORDER BY doc_id {limit}"
        ),
        &me,
    )?;
    let (l0, s0) = (max_lseq(&laptop_home)?, max_lseq(&station_home)?);
    edit(&laptop_home, &ours, "复访：补贴已落实")?;
    edit(&station_home, &theirs, "驿站核实：已上报街道")?;
    let (lb, lc) = signed_after(&laptop_home, l0)?;
    let (sb, sc) = signed_after(&station_home, s0)?;
    ensure!(
        lc as usize == DIFF && sc as usize == DIFF,
        "unexpected new changes"
    );
    let focus: HashSet<DocId> = ours.iter().chain(&theirs).copied().collect();
    let baseline = baseline::automerge_sync(&laptop_home, &station_home, &focus)?;
    let sync = yz.sync(&laptop_home, &station.addr)?;
    ensure!(
        sync.sent as usize == DIFF && sync.received as usize == DIFF && sync.rejected == 0,
        "the sync moved {} out, {} in, {} rejected",
        sync.sent,
        sync.received,
        sync.rejected
    );
    Ok(Small {
        sync,
        signed_bytes: lb + sb,
        new_changes: lc + sc,
        baseline,
    })
}

fn station_changes(home: &Path) -> Result<u64> {
    let count: Option<i64> = open_store(home)?
        .query_row("SELECT COUNT(*) FROM changes", [], |r| r.get(0))
        .optional()?;
    Ok(count.unwrap_or(0) as u64)
}

/// Target 3: the first set of laptops syncs one after another, the second all at once;
/// each against the floor over its own changes.
fn evening(yz: &Yizhan, homes: &Homes, station: &Station, n: usize) -> Result<Evening> {
    let site = Node::open(&homes.station())?
        .identity()
        .site_id
        .context("the station has no site")?;
    let per_laptop = data::evening_visits(n);
    let mut ingests = Vec::new();
    for (set, concurrent) in [('a', false), ('b', true)] {
        let laptops = homes.evening(set);
        let mut changes = Vec::new();
        for home in &laptops {
            changes.extend(baseline::read_changes(home)?);
        }
        let expected = (GRIDS * per_laptop) as u64;
        ensure!(
            changes.len() as u64 == expected,
            "evening set {set}: {} changes",
            changes.len()
        );
        let floor = baseline::floor(&changes, site, &homes.scratch())?;
        drop(changes);
        let before = station_changes(&homes.station())?;
        let cpu_before = (station.cpu_time()?, crate::procs::children_cpu_time()?);
        let (outs, wall) = if concurrent {
            yz.sync_all(&laptops, &station.addr)?
        } else {
            yz.sync_each(&laptops, &station.addr)?
        };
        let station_cpu = station.cpu_time()? - cpu_before.0;
        let laptops_cpu = crate::procs::children_cpu_time()? - cpu_before.1;
        let stored = station_changes(&homes.station())? - before;
        let sent: u64 = outs.iter().map(|o| o.sent).sum();
        if stored != expected || sent != expected {
            bail!("evening set {set}: sent {sent}, the station stored {stored} of {expected}");
        }
        ingests.push(Ingest {
            changes: stored,
            wall,
            floor,
            station_cpu,
            laptops_cpu,
        });
    }
    let concurrent = ingests.pop().expect("two sets");
    let sequential = ingests.pop().expect("two sets");
    Ok(Evening {
        per_laptop,
        sequential,
        concurrent,
    })
}

//! The benchmark's data: a station, a laptop and two sets of evening laptops per size,
//! generated once with the node library and cached under `<data-dir>/<N>/`.
//!
//! For a station of `N` documents:
//!
//! - the station makes `N - DIFF` visit logs itself, spread over [`GRIDS`] grids of `N / 20`
//!   (grid `g00` gets `DIFF` fewer), in transactions of [`BATCH`] visits;
//! - the laptop is enrolled for grid `g00` and has made `DIFF` visits of its own there (it
//!   may edit only its own visit logs). It has never synced: its initial sync uploads those
//!   and brings the `N / 20 - DIFF` others, so that afterwards the station holds `N`
//!   documents and the laptop an `N / 20` subset of them;
//! - two sets (`a`, `b`) of [`GRIDS`] evening laptops, each enrolled for a grid of its own
//!   that holds nothing else, synced once (in memory, through the real `SyncEngine`s) so
//!   that they are up to date with the station, then each given `N / 100` new visits.
//!
//! Every run works on copies (see [`Workspace`]), so the cache stays as generated.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use yizhan_node::Node;
use yizhan_node::home::{InitConfig, InitSeed};
use yizhan_node::model::Category;
use yizhan_node::records::NewVisit;
use yizhan_node::site::EnrollRequest;
use yizhan_node::sync::{SyncConfig, SyncEngine};
use yizhan_protocol::MemberRole;

/// Grids the station's documents are spread over, and laptops per evening set.
pub const GRIDS: usize = 20;
/// Documents changed on each side in the small-difference target.
pub const DIFF: usize = 100;
/// Visits per write transaction while generating.
const BATCH: usize = 10_000;
/// Bumped whenever the generated layout changes, so stale caches are regenerated.
const LAYOUT_VERSION: &str = "yizhan-bench data v1";

/// The two evening sets: one synced one after another, one all at once.
pub const EVENING_SETS: [char; 2] = ['a', 'b'];

/// Where one size's homes live (the cache, or a working copy of it).
#[derive(Clone, Debug)]
pub struct Homes {
    root: PathBuf,
}

impl Homes {
    /// The station's home.
    pub fn station(&self) -> PathBuf {
        self.root.join("station")
    }

    /// The laptop's home.
    pub fn laptop(&self) -> PathBuf {
        self.root.join("laptop")
    }

    /// The homes of one evening set.
    pub fn evening(&self, set: char) -> Vec<PathBuf> {
        (0..GRIDS)
            .map(|i| self.root.join(format!("evening-{set}-{i:02}")))
            .collect()
    }

    /// A scratch directory for this run (the floor's database, logs).
    pub fn scratch(&self) -> PathBuf {
        self.root.join("scratch")
    }
}

/// The laptop's subset for a station of `n` documents.
pub fn subset(n: usize) -> usize {
    n / GRIDS
}

/// New visits per evening laptop for a station of `n` documents (1,000 at 100,000).
pub fn evening_visits(n: usize) -> usize {
    (n / 100).max(1)
}

/// Makes sure the cache for `n` exists (generating it if not) and returns it, with how long
/// generating took (`None` when it was cached).
pub fn cached(data_dir: &Path, n: usize) -> Result<(Homes, Option<Duration>)> {
    if n < GRIDS * DIFF * 2 {
        bail!(
            "size {n} is too small: at least {} documents",
            GRIDS * DIFF * 2
        );
    }
    let dir = data_dir.join(n.to_string());
    let ready = dir.join("READY");
    let homes = Homes {
        root: dir.join("homes"),
    };
    if fs::read_to_string(&ready).is_ok_and(|s| s.trim() == LAYOUT_VERSION) {
        return Ok((homes, None));
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(&dir)?;
    let started = Instant::now();
    eprintln!("generating the data for N = {n} in {} …", dir.display());
    generate(&homes, n)?;
    fs::write(&ready, LAYOUT_VERSION)?;
    Ok((homes, Some(started.elapsed())))
}

fn grid(i: usize) -> String {
    format!("g{i:02}")
}

const CATEGORIES: [Category; 4] = [
    Category::ResidentServices,
    Category::PovertyRelief,
    Category::CityManagement,
    Category::PolicyConsultation,
];

/// A realistic visit log: household, category, two residents, needs.
fn visit(grid: &str, i: usize) -> NewVisit {
    NewVisit {
        household: format!(
            "{grid} 和平里 {}-{}-{:03}",
            i % 40 + 1,
            i % 6 + 1,
            i % 900 + 101
        ),
        grid: Some(grid.to_string()),
        category: Some(CATEGORIES[i % CATEGORIES.len()]),
        residents: vec![format!("张秀英{i}"), format!("李建国{i}")],
        needs: Some(format!("冬季取暖补贴，第 {i} 户，需复访")),
        ..NewVisit::default()
    }
}

/// Adds `count` visits in `grid` to `node`, [`BATCH`] per transaction.
fn add_visits(node: &mut Node, grid: &str, count: usize) -> Result<()> {
    let mut done = 0;
    while done < count {
        let end = (done + BATCH).min(count);
        let batch: Vec<NewVisit> = (done..end).map(|i| visit(grid, i)).collect();
        node.add_visits(&batch)?;
        done = end;
    }
    Ok(())
}

fn new_node(home: &Path, name: &str, station: bool) -> Result<Node> {
    let config = InitConfig {
        name: name.to_string(),
        station,
        encrypt: None,
    };
    Ok(Node::init(home, &config, InitSeed::random())?)
}

/// Enrols a new volunteer for `grid` at `station` and joins it.
fn volunteer(station: &mut Node, home: &Path, name: &str, grid: &str) -> Result<Node> {
    let mut node = new_node(home, name, false)?;
    let token = station.enroll(&EnrollRequest {
        device: node.identity().device_id,
        name: name.to_string(),
        grids: vec![grid.to_string()],
        role: MemberRole::Volunteer,
        expires_days: None,
    })?;
    node.join(&token, None)?;
    Ok(node)
}

fn generate(homes: &Homes, n: usize) -> Result<()> {
    fs::create_dir_all(&homes.root)?;
    let mut station = new_node(&homes.station(), "station", true)?;
    let t = Instant::now();
    for g in 0..GRIDS {
        let count = if g == 0 { n / GRIDS - DIFF } else { n / GRIDS };
        add_visits(&mut station, &grid(g), count)?;
    }
    eprintln!("  station: {} visits in {:.1?}", n - DIFF, t.elapsed());
    // Every enrolment first, so that rosters agree once everyone has synced.
    let mut laptop = volunteer(&mut station, &homes.laptop(), "laptop", &grid(0))?;
    let mut evening = Vec::new();
    for set in EVENING_SETS {
        for (i, home) in homes.evening(set).iter().enumerate() {
            let name = format!("evening-{set}-{i:02}");
            evening.push(volunteer(&mut station, home, &name, &name)?);
        }
    }
    add_visits(&mut laptop, &grid(0), DIFF)?;
    let t = Instant::now();
    let per = evening_visits(n);
    for node in evening {
        let grid = node.identity().grids[0].clone();
        let (s, mut node) = sync_in_memory(station, node)?;
        station = s;
        add_visits(&mut node, &grid, per)?;
    }
    eprintln!(
        "  evening laptops: {} × {per} visits in {:.1?}",
        GRIDS * EVENING_SETS.len(),
        t.elapsed()
    );
    Ok(())
}

/// One sync between two nodes through their real `SyncEngine`s, frames handed over in
/// memory (used only to bring the evening laptops up to date while generating).
fn sync_in_memory(a: Node, b: Node) -> Result<(Node, Node)> {
    let (ida, idb) = (a.identity().device_id, b.identity().device_id);
    let config = SyncConfig::default();
    let mut ea = SyncEngine::new(a, idb, &config, Instant::now())?;
    let mut eb = SyncEngine::new(b, ida, &config, Instant::now())?;
    let (mut to_a, mut to_b) = (VecDeque::new(), VecDeque::new());
    loop {
        while let Some(frame) = ea.poll_transmit()? {
            to_b.push_back(frame);
        }
        while let Some(frame) = eb.poll_transmit()? {
            to_a.push_back(frame);
        }
        if ea.is_finished() && eb.is_finished() {
            break;
        }
        if to_a.is_empty() && to_b.is_empty() {
            bail!("in-memory sync stalled");
        }
        if let Some(frame) = to_b.pop_front() {
            eb.handle_frame(&frame, Instant::now())?;
        }
        if let Some(frame) = to_a.pop_front() {
            ea.handle_frame(&frame, Instant::now())?;
        }
    }
    Ok((ea.into_node(), eb.into_node()))
}

/// A fresh working copy of a size's cache, for one destructive run.
pub fn working_copy(cache: &Homes, data_dir: &Path, n: usize) -> Result<Homes> {
    let root = data_dir.join(n.to_string()).join("run");
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    copy_dir(&cache.root, &root)?;
    fs::create_dir_all(root.join("scratch"))?;
    Ok(Homes { root })
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            // Keeps the mode: a key file must stay private.
            fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

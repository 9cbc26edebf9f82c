//! The benchmark's data: a station, a laptop and two sets of evening laptops per size,
//! generated once with the node library and cached under `<data-dir>/<N>/`.
//!
//! For a station of `N` documents:
//!
//! - the station holds `N - DIFF` records, spread over [`GRIDS`] grids of `N / 20` (grid
//!   `g00` gets `DIFF` fewer): in each grid but `g00`, [`tickets_per_grid`] tickets (statuses
//!   mixed, two in three assigned) and [`edited_per_grid`] visit logs of an editor volunteer;
//!   the rest are visit logs the station makes itself, in transactions of [`BATCH`] visits.
//!   Visits and tickets are dated evenly over [`WINDOW`], so that a month holds about 1/23
//!   of them;
//! - the first [`conflicted_tickets`] tickets of each grid and all the editor's visit logs
//!   were edited concurrently by the station and the editor (the same field, neither seeing
//!   the other's change), so that `conflicts` finds `19 × (conflicted + edited)` records;
//! - the laptop is enrolled for grid `g00` and has made `DIFF` visits of its own there (it
//!   may edit only its own visit logs). It has never synced: its initial sync uploads those
//!   and brings the `N / 20 - DIFF` others, so that afterwards the station holds `N`
//!   documents and the laptop an `N / 20` subset of them;
//! - two sets (`a`, `b`) of [`GRIDS`] evening laptops, each enrolled for a grid of its own
//!   that holds nothing else, synced once (in memory, through the real `SyncEngine`s) so
//!   that they are up to date with the station, then each given `N / 100` new visits.
//!
//! Every run works on copies (see [`working_copy`]), so the cache stays as generated.

use std::collections::{HashSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use yizhan_node::Node;
use yizhan_node::members::EnrollRequest;
use yizhan_node::model::{Category, Priority, Status, Tag, Time};
use yizhan_node::records::{NewHousehold, NewTicket, NewVisit, TicketUpdate, VisitEdit};
use yizhan_node::sync::{SyncConfig, SyncEngine};
use yizhan_node::{InitConfig, InitSeed};
use yizhan_protocol::{DeviceId, DocId, MemberRole};

/// Grids the station's documents are spread over, and laptops per evening set.
pub const GRIDS: usize = 20;
/// Documents changed on each side in the small-difference target.
pub const DIFF: usize = 100;
/// Visits per write transaction while generating.
const BATCH: usize = 10_000;
/// Bumped whenever the generated layout changes, so stale caches are regenerated.
const LAYOUT_VERSION: &str = "yizhan-bench data v3";

/// The span the station's visits and tickets are dated in: 23 months, from
/// 2025-01-01T00:00:00Z to 2026-12-01T00:00:00Z (ms since the epoch, end excluded).
pub const WINDOW: (i64, i64) = (1_735_689_600_000, 1_796_083_200_000);

/// The last month of [`WINDOW`] (November 2026), as `--since` / `--until` take it.
pub const LAST_MONTH: (&str, &str) = ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z");

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

    /// Removes these homes and their scratch directory (a working copy, once measured).
    pub fn remove(self) -> Result<()> {
        fs::remove_dir_all(&self.root).with_context(|| format!("removing {}", self.root.display()))
    }
}

/// The laptop's subset for a station of `n` documents.
pub fn subset(n: usize) -> usize {
    n / GRIDS
}

/// Tickets in each grid but `g00` for a station of `n` documents (250 at 1,000,000).
pub fn tickets_per_grid(n: usize) -> usize {
    (n / 4000).max(1)
}

/// Of those, the first this many were edited concurrently (10 at 1,000,000).
pub fn conflicted_tickets(n: usize) -> usize {
    (tickets_per_grid(n) / 25).max(1)
}

/// The editor's visit logs in each grid but `g00`, all edited concurrently (10 at
/// 1,000,000).
pub fn edited_per_grid(n: usize) -> usize {
    (n / 100_000).max(1)
}

/// The `i`-th of `count` times spread evenly over [`WINDOW`], to the second.
fn dated(i: usize, count: usize) -> Time {
    let (start, end) = WINDOW;
    let span = (end - start) as i128;
    let at = start as i128 + span * (2 * i as i128 + 1) / (2 * count.max(1) as i128);
    Time::from_millis((at as i64) / 1000 * 1000)
}

/// Households in each of the station's grids for a station of `n` documents: one for every
/// ten visits (5,000 a grid, 100,000 in all, at 1,000,000).
pub fn households_per_grid(n: usize) -> usize {
    (n / GRIDS / 10).max(1)
}

/// Households in each evening laptop's grid, made at the station before the laptop's first
/// sync: its evening visits go to households it holds, as a volunteer's do.
const EVENING_HOUSEHOLDS: usize = 50;

/// The address of the `j`-th household of `grid`.
fn address(grid: &str, j: usize) -> String {
    format!(
        "{grid} 和平里 {}-{}-{:03}",
        j / 600 + 1,
        j / 100 % 6 + 1,
        j % 100 + 101
    )
}

/// The `j`-th household of `grid`: one in three elderly living alone, one in seven on low
/// income, one in fifty under community correction; added at the window's start.
fn household(grid: &str, j: usize) -> NewHousehold {
    let mut tags = Vec::new();
    if j.is_multiple_of(3) {
        tags.push(Tag::ElderlyAlone);
    }
    if j.is_multiple_of(7) {
        tags.push(Tag::LowIncome);
    }
    if j.is_multiple_of(50) {
        tags.push(Tag::CommunityCorrection);
    }
    NewHousehold {
        address: address(grid, j),
        grid: Some(grid.to_string()),
        residents: vec![format!("住户{j}")],
        tags,
        phone: Some(format!("1380000{j:04}")),
        added_at: Some(Time::from_millis(WINDOW.0)),
        ..NewHousehold::default()
    }
}

/// Adds `count` households to `grid` at `node`, [`BATCH`] per transaction; `added_now`:
/// added now rather than at the window's start (an evening grid's, not yet visited).
fn add_households(node: &mut Node, grid: &str, count: usize, added_now: bool) -> Result<()> {
    let mut done = 0;
    while done < count {
        let end = (done + BATCH).min(count);
        let batch: Vec<NewHousehold> = (done..end)
            .map(|j| NewHousehold {
                added_at: if added_now {
                    None
                } else {
                    household(grid, j).added_at
                },
                ..household(grid, j)
            })
            .collect();
        node.add_households(&batch)?;
        done = end;
    }
    Ok(())
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
        upgrade(&homes)?;
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

/// Opens every cached home once, so that a cache generated by an older yizhan is migrated
/// to the current store schema (`Node::open` migrates) before it is copied, rather than in
/// every copy, on a measured path. Opening a current store changes nothing.
fn upgrade(homes: &Homes) -> Result<()> {
    let mut all = vec![homes.station(), homes.laptop()];
    for set in EVENING_SETS {
        all.extend(homes.evening(set));
    }
    for home in all {
        Node::open(&home).with_context(|| format!("opening {}", home.display()))?;
    }
    Ok(())
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

/// Whether the `j`-th household of a grid has a tag (see [`household`]).
fn tagged(j: usize) -> bool {
    j.is_multiple_of(3) || j.is_multiple_of(7) || j.is_multiple_of(50)
}

/// Which of `households` the `i`-th of `count` visits goes to. A grid visits every
/// household in turn, and in the last tenth of the window (about ten weeks) only the
/// tagged ones, as a grid keeps its monthly visits: at the window's end few households are
/// overdue, as in a grid that keeps its ledger.
/// `tagged` lists the tagged ones among them.
fn visited(i: usize, count: usize, households: usize, tagged: &[usize]) -> usize {
    if count > 0 && i >= count / 10 * 9 && !tagged.is_empty() {
        tagged[i % tagged.len()]
    } else {
        i % households.max(1)
    }
}

/// A realistic visit log to one of `households` of the grid: household, category, two
/// residents, needs, dated the `i`-th of `count` over [`WINDOW`] (`count == 0`: now).
fn visit(grid: &str, i: usize, count: usize, households: usize, tagged: &[usize]) -> NewVisit {
    NewVisit {
        household: address(grid, visited(i, count, households, tagged)),
        grid: Some(grid.to_string()),
        category: Some(CATEGORIES[i % CATEGORIES.len()]),
        residents: vec![format!("张秀英{i}"), format!("李建国{i}")],
        needs: Some(format!("冬季取暖补贴，第 {i} 户，需复访")),
        visited_at: (count > 0).then(|| dated(i, count)),
        ..NewVisit::default()
    }
}

/// A realistic ticket, the `i`-th of `count` in `grid`: statuses in turn, every third
/// assigned to `assignees.0`, every third to `assignees.1`, dated over [`WINDOW`].
fn ticket(grid: &str, i: usize, count: usize, assignees: (DeviceId, DeviceId)) -> NewTicket {
    NewTicket {
        title: format!("楼道灯不亮，第 {i} 号"),
        category: Some(CATEGORIES[i % CATEGORIES.len()]),
        household: Some(format!("{grid} 和平里 {}-{}", i % 40 + 1, i % 6 + 1)),
        grid: Some(grid.to_string()),
        priority: Some(Priority::ALL[i % Priority::ALL.len()]),
        status: Some(Status::ALL[i % Status::ALL.len()]),
        assignee: match i % 3 {
            0 => Some(assignees.0),
            1 => Some(assignees.1),
            _ => None,
        },
        note: None,
        opened_at: Some(dated(i, count)),
        ..NewTicket::default()
    }
}

/// Adds `count` visits in `grid` to `node`, [`BATCH`] per transaction, dated over
/// [`WINDOW`] if `dated`, else now. Returns their ids.
fn add_visits(
    node: &mut Node,
    grid: &str,
    count: usize,
    dated: bool,
    households: usize,
) -> Result<Vec<DocId>> {
    let mut done = 0;
    let mut ids = Vec::with_capacity(count);
    let tagged: Vec<usize> = (0..households).filter(|j| tagged(*j)).collect();
    while done < count {
        let end = (done + BATCH).min(count);
        let spread = if dated { count } else { 0 };
        let batch: Vec<NewVisit> = (done..end)
            .map(|i| visit(grid, i, spread, households, &tagged))
            .collect();
        ids.extend(node.add_visits(&batch)?);
        done = end;
    }
    Ok(ids)
}

fn new_node(home: &Path, name: &str, station: bool) -> Result<Node> {
    let config = InitConfig {
        name: name.to_string(),
        station,
        encrypt: None,
    };
    Ok(Node::init(home, &config, InitSeed::random())?)
}

/// Enrols a new volunteer for `grids` at `station` and joins it.
fn volunteer(station: &mut Node, home: &Path, name: &str, grids: &[String]) -> Result<Node> {
    let mut node = new_node(home, name, false)?;
    let token = station.enroll(&EnrollRequest {
        device: node.identity().device_id,
        name: name.to_string(),
        grids: grids.to_vec(),
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
    let households = households_per_grid(n);
    for g in 0..GRIDS {
        add_households(&mut station, &grid(g), households, false)?;
    }
    eprintln!(
        "  station: {} households in {:.1?}",
        households * GRIDS,
        t.elapsed()
    );
    // The tickets and the concurrent edits first, while the station is small, so that the
    // editor's syncs are quick.
    let (s, extra) = tickets_and_conflicts(station, &homes.root.join("editor"), n)?;
    station = s;
    for g in 0..GRIDS {
        let count = if g == 0 {
            n / GRIDS - DIFF
        } else {
            n / GRIDS - extra
        };
        add_visits(&mut station, &grid(g), count, true, households)?;
    }
    eprintln!(
        "  station: {} visits and tickets in {:.1?}",
        n - DIFF,
        t.elapsed()
    );
    // Every enrolment first, so that rosters agree once everyone has synced.
    let mut laptop = volunteer(&mut station, &homes.laptop(), "laptop", &[grid(0)])?;
    let mut evening = Vec::new();
    for set in EVENING_SETS {
        for (i, home) in homes.evening(set).iter().enumerate() {
            let name = format!("evening-{set}-{i:02}");
            evening.push(volunteer(
                &mut station,
                home,
                &name,
                std::slice::from_ref(&name),
            )?);
        }
    }
    add_visits(&mut laptop, &grid(0), DIFF, false, households)?;
    let t = Instant::now();
    let per = evening_visits(n);
    for node in evening {
        let grid = node.identity().grids[0].clone();
        add_households(&mut station, &grid, EVENING_HOUSEHOLDS, true)?;
        let (s, mut node) = sync_in_memory(station, node)?;
        station = s;
        add_visits(&mut node, &grid, per, false, EVENING_HOUSEHOLDS)?;
    }
    eprintln!(
        "  evening laptops: {} × {per} visits in {:.1?}",
        GRIDS * EVENING_SETS.len(),
        t.elapsed()
    );
    Ok(())
}

/// Gives `station` its tickets and an editor volunteer's visit logs in every grid but
/// `g00`, and edits some of each concurrently at the station and at the editor (whose home
/// at `editor` is removed afterwards). Returns the station and how many records each grid
/// but `g00` now holds.
fn tickets_and_conflicts(mut station: Node, editor: &Path, n: usize) -> Result<(Node, usize)> {
    let grids: Vec<String> = (1..GRIDS).map(grid).collect();
    let mut ed = volunteer(&mut station, editor, "editor", &grids)?;
    let assignees = (station.identity().device_id, ed.identity().device_id);
    let (per, conflicted, edited) = (
        tickets_per_grid(n),
        conflicted_tickets(n),
        edited_per_grid(n),
    );
    let mut to_edit = Vec::new();
    let mut visits = Vec::new();
    for g in &grids {
        let tickets: Vec<NewTicket> = (0..per).map(|i| ticket(g, i, per, assignees)).collect();
        to_edit.extend(station.open_tickets(&tickets)?.into_iter().take(conflicted));
        visits.extend(add_visits(
            &mut ed,
            g,
            edited,
            true,
            households_per_grid(n),
        )?);
    }
    let (s, e) = sync_in_memory(station, ed)?;
    (station, ed) = (s, e);
    // The same field set on both sides, neither seeing the other's change.
    for (i, id) in to_edit.iter().enumerate() {
        for (node, priority) in [(&mut station, Priority::High), (&mut ed, Priority::Urgent)] {
            let update = TicketUpdate {
                priority: Some(priority),
                note: Some(format!("{} 已联系物业，第 {i} 次", node.identity().name)),
                ..TicketUpdate::default()
            };
            node.update_ticket(*id, &update)?;
        }
    }
    for (i, id) in visits.iter().enumerate() {
        for node in [&mut station, &mut ed] {
            let edit = VisitEdit {
                note: Some(format!("{} 复访，第 {i} 户", node.identity().name)),
                ..VisitEdit::default()
            };
            node.edit_visit(*id, &edit)?;
        }
    }
    let (station, ed) = sync_in_memory(station, ed)?;
    drop(ed);
    fs::remove_dir_all(editor)?;
    let found = station.conflicts()?;
    let records: HashSet<&str> = found.iter().map(|c| c.record.as_str()).collect();
    let expected = grids.len() * (conflicted + edited);
    if records.len() != expected {
        bail!(
            "the concurrent edits left {} records in conflict, not {expected}",
            records.len()
        );
    }
    Ok((station, per + edited))
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

/// A fresh working copy of a size's cache, for one destructive run. Every file is on disk
/// (fsynced) before the run starts, as a node's store is when its evening begins: else the
/// first fsync of each copied store (a laptop's at the end of its sync, the station's at a
/// checkpoint) would also write back the whole copy, on the measured path.
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
            fs::File::open(&target)?.sync_all()?;
        }
    }
    fs::File::open(to)?.sync_all()?;
    Ok(())
}

/// A fresh working copy of the station's and the laptop's homes (for the read-only queries),
/// fsynced
/// like [`working_copy`]; returns the copy's root, whose `station` is the home.
pub fn station_copy(cache: &Homes, data_dir: &Path, n: usize) -> Result<Homes> {
    let root = data_dir.join(n.to_string()).join("queries");
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    copy_dir(&cache.station(), &root.join("station"))?;
    copy_dir(&cache.laptop(), &root.join("laptop"))?;
    fs::create_dir_all(root.join("scratch"))?;
    Ok(Homes { root })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_23_months_ending_with_the_last_month() {
        let ms = |t: &str| t.parse::<Time>().unwrap().millis();
        assert_eq!(WINDOW.0, ms("2025-01-01T00:00:00Z"));
        assert_eq!(WINDOW.1, ms(LAST_MONTH.1));
        assert!(WINDOW.0 < ms(LAST_MONTH.0) && ms(LAST_MONTH.0) < WINDOW.1);
        // Evenly dated: the last of a grid's visits falls in the last month.
        assert!(dated(999, 1000).millis() >= ms(LAST_MONTH.0));
        assert!(dated(0, 1000).millis() < ms("2025-02-01T00:00:00Z"));
    }
}

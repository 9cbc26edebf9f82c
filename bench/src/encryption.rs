//! What encryption at rest costs: the same workload on a plain home
//! (the baseline) and on an encrypted one (`yizhan init --encrypt`: SQLCipher, keyed by a
//! passphrase), measured one after the other in this process, runs of the two interleaved
//! so that the shared machine's load falls on both alike.
//!
//! - `init --station` with the real binary (the encrypted one derives its key);
//! - opening the store: a bare SQLCipher connection's first read (the key derivation
//!   alone), `Node::open` / `Node::open_encrypted`, and `yizhan --json id` / `status`
//!   (what every command pays before it does anything);
//! - `yizhan import` of [`VISITS`] visits from a CSV file (one transaction), then
//!   `visit list --json` and `verify` over them, and the home's size on disk;
//! - a one-shot `yizhan --json sync` of [`SYNC_VISITS`] new visits from a plain laptop into
//!   a station served by `yizhan serve` from a plain or an encrypted home.
//!
//! Nothing here is a target: every row is "info".

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use yizhan_node::Node;
use yizhan_node::home::STORE_FILE;
use yizhan_node::members::EnrollRequest;
use yizhan_node::records::NewVisit;
use yizhan_node::store::Passphrase;
use yizhan_node::{InitConfig, InitSeed, VisitFilter};
use yizhan_protocol::MemberRole;

use crate::procs::Yizhan;
use crate::report::n_text;

/// The passphrase of the encrypted homes.
const PASSPHRASE: &str = "bench: 驿站 at rest";
/// Visits imported, listed and verified.
pub const VISITS: usize = 10_000;
/// New visits per one-shot sync into the station.
pub const SYNC_VISITS: usize = 1_000;
/// `init` calls of each kind.
const INIT_RUNS: usize = 5;
/// Opens (library and `id` / `status`) of each kind.
const OPEN_RUNS: usize = 7;
/// `import` runs of each kind (each into a new home).
const IMPORT_RUNS: usize = 2;
/// `visit list` and `integrity_check` runs of each kind.
const READ_RUNS: usize = 3;
/// `verify` runs of each kind (the longest read: kept to two, so the whole stays cheap).
const VERIFY_RUNS: usize = 2;
/// One-shot syncs of [`SYNC_VISITS`] of each kind.
const SYNC_RUNS: usize = 5;
/// The laptop's grid.
const GRID: &str = "g01";

/// One measure, plain against encrypted.
#[derive(Debug)]
pub struct Row {
    /// What was measured (and how often).
    pub measure: String,
    /// The plain home's figure (the baseline).
    pub plain: Figure,
    /// The encrypted home's figure.
    pub encrypted: Figure,
}

/// A measured figure.
#[derive(Clone, Copy, Debug)]
pub enum Figure {
    /// A wall time.
    Time(Duration),
    /// A rate (changes per second).
    Rate(f64),
    /// A size in bytes.
    Bytes(u64),
}

impl Figure {
    /// The figure as a number, for the ratio.
    pub fn value(self) -> f64 {
        match self {
            Figure::Time(d) => d.as_secs_f64(),
            Figure::Rate(r) => r,
            Figure::Bytes(b) => b as f64,
        }
    }

    /// The figure as printed.
    pub fn text(self) -> String {
        match self {
            Figure::Time(d) if d < Duration::from_secs(1) => {
                format!("{:.1} ms", d.as_secs_f64() * 1000.0)
            }
            Figure::Time(d) => format!("{:.2} s", d.as_secs_f64()),
            Figure::Rate(r) => format!("{r:.0} changes/s"),
            Figure::Bytes(b) => format!("{:.2} MiB", b as f64 / 1048576.0),
        }
    }
}

/// SQLCipher as bundled, and the settings an encrypted store was keyed with.
#[derive(Debug, Default)]
pub struct Cipher {
    /// `PRAGMA cipher_version`.
    pub version: String,
    /// `PRAGMA cipher_provider` and its version.
    pub provider: String,
    /// `PRAGMA kdf_iter`: PBKDF2 iterations per key derivation.
    pub kdf_iter: String,
    /// `PRAGMA cipher_kdf_algorithm`.
    pub kdf_algorithm: String,
    /// `PRAGMA cipher_hmac_algorithm`: the per-page MAC.
    pub hmac_algorithm: String,
    /// `PRAGMA cipher_page_size`.
    pub page_size: String,
}

/// Everything measured.
#[derive(Debug)]
pub struct EncryptionResult {
    /// The rows of the table, in order.
    pub rows: Vec<Row>,
    /// What the encrypted store uses.
    pub cipher: Cipher,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Encrypted,
}

const KINDS: [Kind; 2] = [Kind::Plain, Kind::Encrypted];

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Plain => "plain",
            Kind::Encrypted => "encrypted",
        }
    }

    fn passphrase(self) -> Option<Passphrase> {
        (self == Kind::Encrypted).then(|| Passphrase::new(PASSPHRASE.into()))
    }
}

/// The binary for each kind: the encrypted one with `YIZHAN_PASSPHRASE` set.
struct Bins {
    plain: Yizhan,
    encrypted: Yizhan,
}

impl Bins {
    fn of(&self, kind: Kind) -> &Yizhan {
        match kind {
            Kind::Plain => &self.plain,
            Kind::Encrypted => &self.encrypted,
        }
    }
}

/// Both kinds' samples of one measure, taken in turns (plain, encrypted, plain, …).
struct Samples {
    plain: Vec<Duration>,
    encrypted: Vec<Duration>,
}

impl Samples {
    fn take(runs: usize, mut one: impl FnMut(Kind, usize) -> Result<Duration>) -> Result<Samples> {
        let mut s = Samples {
            plain: Vec::new(),
            encrypted: Vec::new(),
        };
        for i in 0..runs {
            for kind in KINDS {
                let d = one(kind, i)?;
                match kind {
                    Kind::Plain => s.plain.push(d),
                    Kind::Encrypted => s.encrypted.push(d),
                }
            }
        }
        Ok(s)
    }

    fn medians(&self) -> (Duration, Duration) {
        (median(&self.plain), median(&self.encrypted))
    }

    fn row(&self, measure: String) -> Row {
        let (p, e) = self.medians();
        Row {
            measure,
            plain: Figure::Time(p),
            encrypted: Figure::Time(e),
        }
    }

    /// `count` changes over each median time.
    fn rate_row(&self, measure: String, count: usize) -> Row {
        let (p, e) = self.medians();
        let rate = |d: Duration| count as f64 / d.as_secs_f64();
        Row {
            measure,
            plain: Figure::Rate(rate(p)),
            encrypted: Figure::Rate(rate(e)),
        }
    }
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort_unstable();
    match v.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

/// Runs every measure in `<data_dir>/encryption/` (made afresh).
pub fn run(yz: &Yizhan, data_dir: &Path) -> Result<EncryptionResult> {
    let root = data_dir.join("encryption");
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    fs::create_dir_all(&root)?;
    eprintln!(
        "encryption: plain against encrypted homes in {}",
        root.display()
    );
    let bins = Bins {
        plain: yz.clone(),
        encrypted: yz.with_passphrase(PASSPHRASE),
    };
    let home = |what: &str, kind: Kind, i: usize| root.join(format!("{what}-{}-{i}", kind.tag()));
    let mut rows = Vec::new();

    // init, key derivation included.
    let init = Samples::take(INIT_RUNS, |kind, i| {
        Ok(bins
            .of(kind)
            .run(&home("init", kind, i), &init_args(kind))?
            .1)
    })?;
    rows.push(init.row(format!("`yizhan init --station` (median of {INIT_RUNS})")));

    // Writing: import into new homes, one transaction.
    let csv = root.join("visits.csv");
    fs::write(&csv, visits_csv(VISITS))?;
    let csv_arg = csv.to_str().context("the data directory is not UTF-8")?;
    let import = Samples::take(IMPORT_RUNS, |kind, i| {
        let h = home("import", kind, i);
        bins.of(kind).run(&h, &init_args(kind))?;
        let (out, wall) = bins.of(kind).run(
            &h,
            &["import", "--kind", "visits", "--format", "csv", csv_arg],
        )?;
        let v: Value = serde_json::from_slice(&out)?;
        ensure!(v["imported"].as_u64() == Some(VISITS as u64), "import: {v}");
        Ok(wall)
    })?;
    let what = format!("{} visits from CSV, one transaction", n_text(VISITS));
    rows.push(import.row(format!(
        "`yizhan import` of {what} (median of {IMPORT_RUNS})"
    )));
    rows.push(import.rate_row(format!("`yizhan import` rate ({what})"), VISITS));

    // The homes every read below works on: the first import's.
    let full = |kind: Kind| home("import", kind, 0);

    // Opening the store.
    let first_read = Samples::take(OPEN_RUNS, |kind, _| {
        first_read(&full(kind).join(STORE_FILE), kind)
    })?;
    rows.push(first_read.row(format!(
        "new connection's first read (rusqlite; `PRAGMA key` + `SELECT`, median of {OPEN_RUNS})"
    )));
    let open = Samples::take(OPEN_RUNS, |kind, _| {
        let started = Instant::now();
        let node = match kind.passphrase() {
            None => Node::open(&full(kind))?,
            Some(p) => Node::open_encrypted(&full(kind), &p)?,
        };
        let wall = started.elapsed();
        drop(node);
        Ok(wall)
    })?;
    rows.push(open.row(format!(
        "`Node::open` / `Node::open_encrypted` (library, median of {OPEN_RUNS})"
    )));
    for cmd in ["id", "status"] {
        let s = Samples::take(OPEN_RUNS, |kind, _| {
            Ok(bins.of(kind).run(&full(kind), &[cmd])?.1)
        })?;
        rows.push(s.row(format!("`yizhan --json {cmd}` (median of {OPEN_RUNS})")));
    }

    // Reading.
    let list = Samples::take(READ_RUNS, |kind, _| {
        let (out, wall) = bins.of(kind).run(&full(kind), &["visit", "list"])?;
        let v: Value = serde_json::from_slice(&out)?;
        let n = v
            .as_array()
            .or_else(|| v["visits"].as_array())
            .map(Vec::len);
        ensure!(n == Some(VISITS), "visit list printed {n:?} visits");
        Ok(wall)
    })?;
    rows.push(list.row(format!(
        "`yizhan --json visit list` of {} (median of {READ_RUNS})",
        n_text(VISITS)
    )));
    let verify = Samples::take(VERIFY_RUNS, |kind, _| {
        let (out, wall) = bins.of(kind).run(&full(kind), &["verify"])?;
        let v: Value = serde_json::from_slice(&out)?;
        ensure!(v["bad"].as_u64() == Some(0), "verify: {v}");
        Ok(wall)
    })?;
    rows.push(verify.row(format!(
        "`yizhan --json verify` ({} changes, median of {VERIFY_RUNS})",
        n_text(VISITS)
    )));

    let pages = page_count(&full(Kind::Plain).join(STORE_FILE))?;
    let integrity = Samples::take(READ_RUNS, |kind, _| {
        integrity_check(&full(kind).join(STORE_FILE), kind)
    })?;
    rows.push(integrity.row(format!(
        "`PRAGMA integrity_check` on a keyed connection (rusqlite; {} pages, median of {READ_RUNS})",
        n_text(pages)
    )));

    // Size on disk, every command above having exited (the WAL checkpointed away).
    rows.push(Row {
        measure: format!(
            "home on disk with {} visits (store.db, its WAL, the key)",
            n_text(VISITS)
        ),
        plain: Figure::Bytes(dir_bytes(&full(Kind::Plain))?),
        encrypted: Figure::Bytes(dir_bytes(&full(Kind::Encrypted))?),
    });

    // Sync ingest.
    let (quiet, sync, station_bytes) = sync_ingest(&bins, &root)?;
    rows.push(quiet.row(format!(
        "one-shot `yizhan sync` with nothing new, into a `serve` station (median of {SYNC_RUNS})"
    )));
    let what = format!("{} new visits", n_text(SYNC_VISITS));
    rows.push(sync.row(format!(
        "one-shot `yizhan sync` of {what} into a `serve` station (median of {SYNC_RUNS})"
    )));
    rows.push(sync.rate_row(format!("station ingest rate ({what} a sync)"), SYNC_VISITS));
    rows.push(Row {
        measure: format!("station home on disk after {SYNC_RUNS} × {what} (`serve` stopped)"),
        plain: Figure::Bytes(station_bytes.0),
        encrypted: Figure::Bytes(station_bytes.1),
    });

    let cipher = cipher(&full(Kind::Encrypted).join(STORE_FILE))?;
    Ok(EncryptionResult { rows, cipher })
}

/// `init --station`, with `--encrypt` for an encrypted home.
fn init_args(kind: Kind) -> Vec<&'static str> {
    let mut args = vec!["init", "--name", "bench", "--station"];
    if kind == Kind::Encrypted {
        args.push("--encrypt");
    }
    args
}

const CATEGORIES: [&str; 4] = [
    "resident-services",
    "poverty-relief",
    "city-management",
    "policy-consultation",
];

/// A CSV cell, quoted.
fn cell(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `count` realistic visits as `yizhan import --format csv` reads them.
fn visits_csv(count: usize) -> String {
    let mut out = String::from("household,grid,category,residents,needs,visited_at\n");
    for i in 0..count {
        let residents = serde_json::json!([format!("张秀英{i}"), format!("李建国{i}")]);
        out.push_str(&format!(
            "{},{GRID},{},{},{},2026-11-{:02}\n",
            cell(&format!(
                "{GRID} 和平里 {}-{}-{:03}",
                i % 40 + 1,
                i % 6 + 1,
                i % 900 + 101
            )),
            CATEGORIES[i % CATEGORIES.len()],
            cell(&residents.to_string()),
            cell(&format!("冬季取暖补贴，第 {i} 户，需复访")),
            i % 28 + 1
        ));
    }
    out
}

/// The same visits for the node library.
fn new_visits(from: usize, count: usize) -> Vec<NewVisit> {
    (from..from + count)
        .map(|i| NewVisit {
            household: format!(
                "{GRID} 胜利街 {}-{}-{:03}",
                i % 40 + 1,
                i % 6 + 1,
                i % 900 + 101
            ),
            grid: Some(GRID.into()),
            residents: vec![format!("王桂兰{i}")],
            needs: Some(format!("独居老人，第 {i} 户，每周电话回访")),
            ..NewVisit::default()
        })
        .collect()
}

/// A new connection to `store` and its first read, timed: for an encrypted store this is
/// where SQLCipher derives the key from the passphrase.
fn first_read(store: &Path, kind: Kind) -> Result<Duration> {
    let started = Instant::now();
    let conn = Connection::open_with_flags(store, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    if kind == Kind::Encrypted {
        conn.pragma_update(None, "key", PASSPHRASE)?;
    }
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))?;
    let wall = started.elapsed();
    ensure!(n > 0, "{} has no schema", store.display());
    Ok(wall)
}

/// A connection to `store`, keyed if encrypted, that has done its first read (and so
/// derived its key).
fn connect(store: &Path, kind: Kind) -> Result<Connection> {
    let conn = Connection::open_with_flags(store, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    if kind == Kind::Encrypted {
        conn.pragma_update(None, "key", PASSPHRASE)?;
    }
    let _: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    Ok(conn)
}

/// The pages of the (plain) store at `store`.
fn page_count(store: &Path) -> Result<usize> {
    let n: i64 = connect(store, Kind::Plain)?.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    Ok(n as usize)
}

/// `PRAGMA integrity_check` on a connection already keyed, timed: every page of the store
/// read (and, encrypted, its MAC checked and decrypted) about once.
fn integrity_check(store: &Path, kind: Kind) -> Result<Duration> {
    let conn = connect(store, kind)?;
    let started = Instant::now();
    let result: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    let wall = started.elapsed();
    ensure!(result == "ok", "integrity_check: {result}");
    Ok(wall)
}

/// The encrypted store's cipher settings, read from it.
fn cipher(store: &Path) -> Result<Cipher> {
    let conn = connect(store, Kind::Encrypted)?;
    let get = |pragma: &str| -> Result<String> {
        let v: SqlValue = conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))?;
        Ok(match v {
            SqlValue::Integer(i) => i.to_string(),
            SqlValue::Text(t) => t,
            other => format!("{other:?}"),
        })
    };
    Ok(Cipher {
        version: get("cipher_version")?,
        provider: format!(
            "{} {}",
            get("cipher_provider")?,
            get("cipher_provider_version")?
        ),
        kdf_iter: get("kdf_iter")?,
        kdf_algorithm: get("cipher_kdf_algorithm")?,
        hmac_algorithm: get("cipher_hmac_algorithm")?,
        page_size: get("cipher_page_size")?,
    })
}

/// The bytes of the regular files in `dir`.
fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let meta = entry?.metadata()?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// A station (plain or encrypted) with one plain laptop enrolled for [`GRID`] and joined.
fn station_and_laptop(root: &Path, kind: Kind) -> Result<(PathBuf, PathBuf)> {
    let station_home = root.join(format!("station-{}", kind.tag()));
    let laptop_home = root.join(format!("laptop-for-{}", kind.tag()));
    let config = |name: &str, station: bool, encrypt: Option<Passphrase>| InitConfig {
        name: name.into(),
        station,
        encrypt,
    };
    let mut station = Node::init(
        &station_home,
        &config("station", true, kind.passphrase()),
        InitSeed::random(),
    )?;
    let mut laptop = Node::init(
        &laptop_home,
        &config("laptop", false, None),
        InitSeed::random(),
    )?;
    let token = station.enroll(&EnrollRequest {
        device: laptop.identity().device_id,
        name: "laptop".into(),
        grids: vec![GRID.into()],
        role: MemberRole::Volunteer,
        expires_days: None,
    })?;
    laptop.join(&token, None)?;
    Ok((station_home, laptop_home))
}

/// [`SYNC_RUNS`] one-shot syncs of [`SYNC_VISITS`] new visits from a plain laptop into a
/// plain and into an encrypted station, each a `yizhan serve` process that has already
/// served one sync (so that it holds an open, keyed connection, as a running station
/// does), after as many syncs with nothing new. Returns the quiet syncs' times, the
/// ingesting syncs' times and the stations' homes' sizes at the end.
fn sync_ingest(bins: &Bins, root: &Path) -> Result<(Samples, Samples, (u64, u64))> {
    let scratch = root.join("scratch");
    fs::create_dir_all(&scratch)?;
    let mut homes = Vec::new();
    let mut stations = Vec::new();
    for kind in KINDS {
        let (station_home, laptop_home) = station_and_laptop(root, kind)?;
        let log = scratch.join(format!("serve-{}.log", kind.tag()));
        let station = bins.of(kind).serve(&station_home, &log)?;
        // The laptop's first sync: the roster, and the station opens its connection.
        bins.plain.sync(&laptop_home, &station.addr)?;
        homes.push((station_home, laptop_home));
        stations.push(station);
    }
    let quiet = Samples::take(SYNC_RUNS, |kind, _| {
        let k = usize::from(kind == Kind::Encrypted);
        let out = bins.plain.sync(&homes[k].1, &stations[k].addr)?;
        ensure!(
            out.sent == 0 && out.received == 0,
            "a quiet sync moved changes"
        );
        Ok(out.wall)
    })?;
    let samples = Samples::take(SYNC_RUNS, |kind, i| {
        let k = usize::from(kind == Kind::Encrypted);
        let (_, laptop_home) = &homes[k];
        let mut laptop = Node::open(laptop_home)?;
        laptop.add_visits(&new_visits(i * SYNC_VISITS, SYNC_VISITS))?;
        drop(laptop);
        let out = bins.plain.sync(laptop_home, &stations[k].addr)?;
        ensure!(
            out.sent == SYNC_VISITS as u64 && out.rejected == 0,
            "sync into the {} station: sent {}, rejected {}",
            kind.tag(),
            out.sent,
            out.rejected
        );
        Ok(out.wall)
    })?;
    // Stopped (killed), then opened and closed once more: the last connection to close
    // checkpoints the WAL into the database and removes it.
    drop(stations);
    let mut bytes = Vec::new();
    for (kind, (station_home, _)) in KINDS.into_iter().zip(&homes) {
        let node = match kind.passphrase() {
            None => Node::open(station_home)?,
            Some(p) => Node::open_encrypted(station_home, &p)?,
        };
        let stored = node.list_visits(&VisitFilter::default())?.len();
        ensure!(
            stored == SYNC_RUNS * SYNC_VISITS,
            "the {} station holds {stored} visits",
            kind.tag()
        );
        drop(node);
        bytes.push(dir_bytes(station_home)?);
    }
    Ok((quiet, samples, (bytes[0], bytes[1])))
}

#[cfg(test)]
mod tests {
    use yizhan_node::exchange::{Format, parse_visits};

    use super::*;

    #[test]
    fn the_generated_csv_is_what_import_reads() {
        let visits = parse_visits(visits_csv(30).as_bytes(), Format::Csv).unwrap();
        assert_eq!(visits.len(), 30);
        assert_eq!(visits[7].grid.as_deref(), Some(GRID));
        assert_eq!(visits[7].residents, ["张秀英7", "李建国7"]);
        assert_eq!(
            visits[7].needs.as_deref(),
            Some("冬季取暖补贴，第 7 户，需复访")
        );
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|&m| Duration::from_millis(m))
                .collect::<Vec<_>>()
        };
        assert_eq!(median(&ms(&[30, 10, 20])), Duration::from_millis(20));
        assert_eq!(median(&ms(&[40, 10, 20, 30])), Duration::from_millis(25));
        assert_eq!(median(&[]), Duration::ZERO);
    }
}

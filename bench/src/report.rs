//! The tables: one per target, each row with our figure, the baseline measured in the same
//! process, their ratio, the target and PASS/FAIL. Tables are Markdown, so they paste into
//! `docs/performance.md` as printed.

use std::time::Duration;

use comfy_table::{Table, presets};

use crate::encryption::EncryptionResult;
use crate::queries::{QueriesResult, RUNS, best_median};
use crate::scenario::{Ingest, SizeResult};

/// The size target 3's absolute figures are stated for (20 × 1,000 visits).
const EVENING_SIZE: usize = 100_000;
const KIB: u64 = 1024;

#[derive(Clone, Copy)]
enum Verdict {
    Pass,
    Fail,
    Info,
}

impl Verdict {
    fn of(ok: bool) -> Verdict {
        if ok { Verdict::Pass } else { Verdict::Fail }
    }

    /// Gated only where `gated`; elsewhere shown for information.
    fn gated(ok: bool, gated: bool) -> Verdict {
        if gated {
            Verdict::of(ok)
        } else {
            Verdict::Info
        }
    }

    fn text(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Info => "info",
        }
    }
}

/// Collects the rows of one table and whether any failed.
struct Tables {
    failed: bool,
}

impl Tables {
    fn table(&mut self, title: &str, header: &[&str], rows: Vec<(Vec<String>, Verdict)>) {
        if rows.is_empty() {
            return;
        }
        let mut table = Table::new();
        table.load_preset(presets::ASCII_MARKDOWN);
        let mut head: Vec<&str> = header.to_vec();
        head.push("result");
        table.set_header(head);
        for (mut cells, verdict) in rows {
            self.failed |= matches!(verdict, Verdict::Fail);
            cells.push(verdict.text().to_string());
            table.add_row(cells);
        }
        println!("\n### {title}\n\n{table}");
    }
}

fn ratio(ours: f64, base: f64) -> String {
    if base == 0.0 {
        "–".into()
    } else {
        format!("{:.2}", ours / base)
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// `n` with thousands separators.
pub(crate) fn n_text(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Prints the machine the benchmark runs on.
pub fn machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .flatten()
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or("unknown".into(), |kb| {
            format!("{:.1} GiB", kb as f64 / 1048576.0)
        });
    println!("\nmachine: {cpu}, {cores} cores, {mem} RAM");
}

/// Prints every table; returns whether every gated target passed.
pub fn print(results: &[SizeResult], growth: bool) -> bool {
    let mut t = Tables { failed: false };
    setup(&mut t, results);
    quiet(&mut t, results);
    small_diff(&mut t, results);
    evening(&mut t, results);
    memory(&mut t, results);
    if growth {
        grow(&mut t, results);
    }
    !t.failed
}

fn setup(t: &mut Tables, results: &[SizeResult]) {
    let rows = results
        .iter()
        .filter_map(|r| {
            let i = r.initial.as_ref()?;
            Some((
                vec![
                    n_text(r.n),
                    format!("{} in, {} out", i.received, i.sent),
                    secs(i.wall),
                    format!("{:.0}", i.received as f64 / i.wall.as_secs_f64()),
                    format!("{} / {} KiB", i.bytes_sent / KIB, i.bytes_received / KIB),
                    i.round_trips.to_string(),
                    r.generated.map_or("cached".into(), secs),
                ],
                Verdict::Info,
            ))
        })
        .collect();
    t.table(
        "Set-up: the laptop's initial sync (brings its subset)",
        &[
            "N",
            "changes",
            "wall",
            "changes/s",
            "bytes out / in",
            "round trips",
            "data generated",
        ],
        rows,
    );
}

fn quiet(t: &mut Tables, results: &[SizeResult]) {
    let mut rows = Vec::new();
    for r in results {
        let Some((ours, base)) = &r.quiet else {
            continue;
        };
        let n = n_text(r.n);
        let lines = [
            ("round trips", ours.round_trips, base.round_trips, 3),
            (
                "bytes laptop → station",
                ours.bytes_sent,
                base.laptop_to_station,
                4 * KIB,
            ),
            (
                "bytes station → laptop",
                ours.bytes_received,
                base.station_to_laptop,
                4 * KIB,
            ),
        ];
        for (what, o, b, bound) in lines {
            rows.push((
                vec![
                    n.clone(),
                    what.into(),
                    o.to_string(),
                    format!("{b} ({} docs)", base.docs),
                    ratio(o as f64, b as f64),
                    format!("≤ {bound}"),
                ],
                Verdict::of(o <= bound),
            ));
        }
    }
    t.table(
        "Target 1: quiet reconnect (nothing differs)",
        &[
            "N",
            "measure",
            "ours",
            "Automerge per-doc sync",
            "ratio",
            "target",
        ],
        rows,
    );
}

fn small_diff(t: &mut Tables, results: &[SizeResult]) {
    let mut rows = Vec::new();
    for r in results {
        let Some(s) = &r.small else { continue };
        let n = n_text(r.n);
        let base = &s.baseline;
        let focus = base.focus.as_deref().cloned().unwrap_or_default();
        let total = s.sync.bytes_sent + s.sync.bytes_received;
        let allowance = s.signed_bytes + 16 * KIB;
        rows.push((
            vec![
                n.clone(),
                "round trips".into(),
                s.sync.round_trips.to_string(),
                base.round_trips.to_string(),
                ratio(s.sync.round_trips as f64, base.round_trips as f64),
                "≤ 5".into(),
            ],
            Verdict::of(s.sync.round_trips <= 5),
        ));
        rows.push((
            vec![
                n.clone(),
                format!(
                    "bytes both ways ({} out, {} in)",
                    s.sync.bytes_sent, s.sync.bytes_received
                ),
                total.to_string(),
                format!(
                    "{} ({} docs; {} on the {} changed)",
                    base.total(),
                    base.docs,
                    focus.total(),
                    focus.docs
                ),
                ratio(total as f64, base.total() as f64),
                format!(
                    "≤ {allowance} ({} signed bytes of {} changes + 16 KiB)",
                    s.signed_bytes, s.new_changes
                ),
            ],
            Verdict::of(total <= allowance),
        ));
    }
    t.table(
        "Target 2: small difference (100 changed on the laptop, 100 others at the station)",
        &[
            "N",
            "measure",
            "ours",
            "Automerge per-doc sync",
            "ratio",
            "target",
        ],
        rows,
    );
}

fn ingest_row(n: usize, per: usize, how: &str, i: &Ingest) -> Vec<(Vec<String>, Verdict)> {
    let gated = n == EVENING_SIZE;
    let rate = i.rate();
    let floor = i.floor.total();
    let r = i.wall.as_secs_f64() / floor.as_secs_f64();
    let floor_rate = i.changes as f64 / floor.as_secs_f64();
    let share = |d: Duration| format!("{:.0}%", 100.0 * d.as_secs_f64() / floor.as_secs_f64());
    let label = format!("{} ({} × {per}, {how})", n_text(n), crate::data::GRIDS);
    vec![
        (
            vec![
                label.clone(),
                "changes/s".into(),
                format!("{rate:.0}"),
                format!("{floor_rate:.0}"),
                format!("{:.2}", floor_rate / rate),
                "≥ 15000".into(),
            ],
            Verdict::gated(rate >= 15_000.0, gated),
        ),
        (
            vec![
                label.clone(),
                format!("time for {} changes", i.changes),
                secs(i.wall),
                format!(
                    "{} (verify {}, apply {}, insert {})",
                    secs(floor),
                    share(i.floor.verify),
                    share(i.floor.apply),
                    share(i.floor.insert)
                ),
                format!("{r:.2}"),
                "≤ 1.5 × floor".into(),
            ],
            Verdict::gated(r <= 1.5, gated),
        ),
        (
            vec![
                label,
                "CPU µs per change (station + laptops)".into(),
                format!(
                    "{:.0} + {:.0}",
                    per_change(i.station_cpu, i.changes),
                    per_change(i.laptops_cpu, i.changes)
                ),
                format!("{:.0}", per_change(floor, i.changes)),
                format!(
                    "{:.2}",
                    per_change(i.station_cpu + i.laptops_cpu, i.changes)
                        / per_change(floor, i.changes)
                ),
                "(where the two cores went)".into(),
            ],
            Verdict::Info,
        ),
    ]
}

fn per_change(d: Duration, changes: u64) -> f64 {
    d.as_secs_f64() * 1e6 / changes.max(1) as f64
}

fn evening(t: &mut Tables, results: &[SizeResult]) {
    let mut rows = Vec::new();
    for r in results {
        let Some(e) = &r.evening else { continue };
        rows.extend(ingest_row(
            r.n,
            e.per_laptop,
            "one after another",
            &e.sequential,
        ));
        rows.extend(ingest_row(r.n, e.per_laptop, "all at once", &e.concurrent));
    }
    t.table(
        &format!(
            "Target 3: evening merge (gated at N = {}; ratio = ours / floor)",
            n_text(EVENING_SIZE)
        ),
        &[
            "N (laptops × visits)",
            "measure",
            "ours",
            "floor",
            "ratio",
            "target",
        ],
        rows,
    );
}

fn memory(t: &mut Tables, results: &[SizeResult]) {
    let rows = results
        .iter()
        .map(|r| {
            let mib = r.peak_rss_kib as f64 / 1024.0;
            (
                vec![n_text(r.n), format!("{mib:.1} MiB"), "< 300 MiB".into()],
                Verdict::of(mib < 300.0),
            )
        })
        .collect();
    t.table(
        "Target 4: station peak RSS (VmHWM) after everything above",
        &["N", "peak RSS", "target"],
        rows,
    );
}

fn grow(t: &mut Tables, results: &[SizeResult]) {
    let mut rows = Vec::new();
    for pair in results.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.n != a.n * 10 {
            continue;
        }
        let label = format!("{} → {}", n_text(a.n), n_text(b.n));
        // No faster than log N: the ratio may be at most ln(10N) / ln(N).
        let log_bound = (b.n as f64).ln() / (a.n as f64).ln();
        let mut bytes = |what: &str, x: Option<u64>, y: Option<u64>| {
            if let (Some(x), Some(y)) = (x, y) {
                let g = y as f64 / x as f64;
                rows.push((
                    vec![
                        label.clone(),
                        what.into(),
                        x.to_string(),
                        y.to_string(),
                        format!("{g:.2}"),
                        format!("≤ {log_bound:.2} (log N)"),
                    ],
                    Verdict::of(g <= log_bound),
                ));
            }
        };
        let quiet = |r: &SizeResult| {
            r.quiet
                .as_ref()
                .map(|(o, _)| o.bytes_sent + o.bytes_received)
        };
        let small = |r: &SizeResult| {
            r.small
                .as_ref()
                .map(|s| s.sync.bytes_sent + s.sync.bytes_received)
        };
        bytes("quiet reconnect bytes", quiet(a), quiet(b));
        bytes("small-difference bytes (100 + 100)", small(a), small(b));
        if let (Some(x), Some(y)) = (&a.evening, &b.evening) {
            for (how, i, j) in [
                ("one after another", &x.sequential, &y.sequential),
                ("all at once", &x.concurrent, &y.concurrent),
            ] {
                let g = j.wall.as_secs_f64() / i.wall.as_secs_f64();
                let work = j.changes as f64 / i.changes as f64;
                rows.push((
                    vec![
                        label.clone(),
                        format!("ingest time, {how} ({} → {} changes)", i.changes, j.changes),
                        secs(i.wall),
                        secs(j.wall),
                        format!("{g:.2}"),
                        format!("≤ {:.1} (linear, +25%)", work * 1.25),
                    ],
                    Verdict::of(g <= work * 1.25),
                ));
            }
        }
    }
    t.table(
        "Target 5: growth (figure at 10 N / figure at N)",
        &["N → 10 N", "measure", "at N", "at 10 N", "growth", "target"],
        rows,
    );
}

/// Prints the cost of encryption at rest: plain (the baseline) against encrypted, and the
/// cipher settings the encrypted store uses. Nothing is gated.
pub fn encryption(r: &EncryptionResult) {
    let mut t = Tables { failed: false };
    let rows = r
        .rows
        .iter()
        .map(|row| {
            (
                vec![
                    row.measure.clone(),
                    row.plain.text(),
                    row.encrypted.text(),
                    ratio(row.encrypted.value(), row.plain.value()),
                ],
                Verdict::Info,
            )
        })
        .collect();
    t.table(
        "Encryption at rest: plain home against encrypted home (SQLCipher)",
        &[
            "measure",
            "plain (baseline)",
            "encrypted",
            "ratio (encrypted/plain)",
        ],
        rows,
    );
    let c = &r.cipher;
    println!(
        "\nSQLCipher {} ({}): key derivation {} with kdf_iter = {} per open, page MAC {}, \
         cipher_page_size {}.",
        c.version, c.provider, c.kdf_algorithm, c.kdf_iter, c.hmac_algorithm, c.page_size
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Prints the `queries` table of each size; returns whether every query met its target.
pub fn queries(results: &[QueriesResult]) -> bool {
    let mut t = Tables { failed: false };
    for r in results {
        let (floor, floor_median) = best_median(&r.floor);
        let (id, id_median) = best_median(&r.id);
        let mut rows = vec![
            (
                vec![
                    n_text(r.n),
                    "process floor: `yizhan --version`".into(),
                    "–".into(),
                    format!("{:.1} ({:.1})", ms(floor), ms(floor_median)),
                    "–".into(),
                    "–".into(),
                    "–".into(),
                ],
                Verdict::Info,
            ),
            (
                vec![
                    n_text(r.n),
                    "`yizhan --json id` (store opened)".into(),
                    "–".into(),
                    format!("{:.1} ({:.1})", ms(id), ms(id_median)),
                    "–".into(),
                    "–".into(),
                    "–".into(),
                ],
                Verdict::Info,
            ),
        ];
        for q in &r.queries {
            let (ours, ours_median) = best_median(&q.ours);
            let (plain, _) = best_median(&q.baseline);
            let base = ms(floor) + ms(plain);
            rows.push((
                vec![
                    n_text(r.n),
                    format!("`{}`", q.name),
                    q.answer.clone(),
                    format!("{:.1} ({:.1})", ms(ours), ms(ours_median)),
                    format!("{:.1} + {:.1}", ms(floor), ms(plain)),
                    ratio(ms(ours), base),
                    format!("≤ {:.0} ms", q.target_ms),
                ],
                Verdict::of(ms(ours) <= q.target_ms),
            ));
        }
        t.table(
            &format!(
                "Queries at N = {} (best of {RUNS}, median in parentheses)",
                n_text(r.n)
            ),
            &[
                "N",
                "query",
                "answer",
                "ours (ms)",
                "baseline: floor + plain SQLite (ms)",
                "ratio",
                "target",
            ],
            rows,
        );
    }
    !t.failed
}

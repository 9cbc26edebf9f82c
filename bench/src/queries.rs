//! The queries a station head runs every day, asked of the real binary at a station of N
//! documents: each a `yizhan --json --home COPY …` process, timed from start to exit, best
//! and median of [`RUNS`].
//!
//! Beside each, the same question on plain SQLite tables in this process: the station's
//! records copied into `visits(id, grid, at_ms, conflicts, json)` and `tickets(id, grid,
//! status, at_ms, conflicts, json)` with the obvious indexes, asked on a fresh connection,
//! every row's JSON parsed. A process of ours also starts, so the baseline is that query's
//! time plus the **process floor**, `yizhan --version` (a start and exit that open nothing);
//! `yizhan --json id` (a start, the store opened, the identity read) is printed beside it.
//!
//! Households are in a table of their own, `households(id, grid, due_ms, search, json)`,
//! with their next due time and searchable text as the station's index has them, and
//! visits carry their household. The laptop's queries run on the laptop's home and plain
//! tables of its records.
//!
//! Both answers are summarised (a count, an id) and must agree, else the run fails: a fast
//! wrong answer is no figure. A new query is one entry of [`QUERIES`].

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rusqlite::{Connection, OpenFlags, params};
use serde_json::Value;

use crate::baseline::open_store;
use crate::data::{self, LAST_MONTH};
use crate::procs::Yizhan;

/// Timed runs of each query, ours and the baseline's.
pub const RUNS: usize = 3;

/// What a query may refer to: records picked from the station before timing.
#[derive(Clone, Debug)]
pub struct Params {
    /// A visit log the station made in grid `g03`, the middle one by number (whole id).
    pub visit: String,
    /// The first ticket of grid `g03` (edited concurrently: it has history and conflicts).
    pub ticket: String,
    /// A household of grid `g03` with visits (whole id).
    pub household: String,
}

/// Which home a query is asked of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum On {
    /// The station (N documents).
    Station,
    /// The laptop of grid `g00` (N/20 visits, N/200 households).
    Laptop,
}

/// One question: our command line, the same question on the plain tables, and its target.
pub struct Query {
    /// As the table shows it.
    pub name: &'static str,
    /// The arguments after `yizhan --json --home HOME`.
    pub args: fn(&Params) -> Vec<String>,
    /// A summary of our answer (a count, an id), read from its JSON.
    pub ours: fn(&Value, &Params) -> Result<String>,
    /// The same question on the plain tables; returns the same summary of its answer.
    pub baseline: fn(&Connection, &Params) -> Result<String>,
    /// The target, wall time of our process (ms).
    pub target_ms: f64,
    /// Asked of the station or of the laptop (the plain tables are that home's).
    pub on: On,
}

/// What is due within the default 7 days, on plain tables: households by their next due
/// time and tickets neither resolved nor closed by their deadline.
fn due_baseline(c: &Connection) -> Result<String> {
    let until = yizhan_node::model::Time::now_millis() + 7 * 24 * 3600 * 1000;
    let h = json_rows(
        c,
        "SELECT json FROM households WHERE due_ms <= ?1 ORDER BY due_ms, id",
        [until],
    )?;
    let t = json_rows(
        c,
        "SELECT json FROM tickets WHERE due_ms <= ?1 AND status NOT IN ('resolved', 'closed')
         ORDER BY due_ms, id",
        [until],
    )?;
    Ok(format!("{h} households, {t} tickets"))
}

fn due_ours(v: &Value) -> Result<String> {
    let n = |k: &str| v[k].as_array().map(Vec::len).context(k.to_string());
    Ok(format!(
        "{} households, {} tickets",
        n("households")?,
        n("tickets")?
    ))
}

/// The questions, in the order they are asked and printed.
pub const QUERIES: &[Query] = &[
    Query {
        name: "status",
        args: |_| strings(&["status"]),
        ours: |v, _| {
            let n = |p: &str| v.pointer(p).and_then(Value::as_u64).context(p.to_string());
            Ok(counts(
                n("/records/visits")?,
                n("/records/tickets")?,
                n("/conflicts")?,
            ))
        },
        baseline: |c, _| {
            let count = |sql: &str| -> Result<u64> { Ok(c.query_row(sql, [], |r| r.get(0))?) };
            Ok(counts(
                count("SELECT COUNT(*) FROM visits")?,
                count("SELECT COUNT(*) FROM tickets")?,
                count(
                    "SELECT (SELECT COALESCE(SUM(conflicts), 0) FROM visits WHERE conflicts > 0)
                          + (SELECT COALESCE(SUM(conflicts), 0) FROM tickets WHERE conflicts > 0)",
                )?,
            ))
        },
        target_ms: 100.0,
        on: On::Station,
    },
    Query {
        name: "conflicts",
        args: |_| strings(&["conflicts"]),
        ours: |v, _| {
            let mut records: Vec<&str> = array(v)?
                .iter()
                .filter_map(|c| c["record"].as_str())
                .collect();
            records.dedup();
            Ok(format!("{} records", records.len()))
        },
        baseline: |c, _| {
            let rows = json_rows(
                c,
                "SELECT json FROM visits WHERE conflicts > 0
                 UNION ALL SELECT json FROM tickets WHERE conflicts > 0",
                [],
            )?;
            Ok(format!("{rows} records"))
        },
        target_ms: 100.0,
        on: On::Station,
    },
    Query {
        name: "visit show ID",
        args: |p| strings(&["visit", "show", &p.visit]),
        ours: |v, _| id_of(v),
        baseline: |c, p| one_json(c, "SELECT json FROM visits WHERE id = ?1", &p.visit),
        target_ms: 100.0,
        on: On::Station,
    },
    Query {
        name: "visit list --grid g03 --since (a month)",
        args: |_| strings(&["visit", "list", "--grid", "g03", "--since", LAST_MONTH.0]),
        ours: |v, _| Ok(format!("{} visits", array(v)?.len())),
        baseline: |c, _| {
            let rows = json_rows(
                c,
                "SELECT json FROM visits WHERE grid = ?1 AND at_ms >= ?2 ORDER BY at_ms, id",
                params!["g03", millis(LAST_MONTH.0)?],
            )?;
            Ok(format!("{rows} visits"))
        },
        target_ms: 100.0,
        on: On::Station,
    },
    Query {
        name: "ticket list --status open --grid g03",
        args: |_| strings(&["ticket", "list", "--status", "open", "--grid", "g03"]),
        ours: |v, _| Ok(format!("{} tickets", array(v)?.len())),
        baseline: |c, _| {
            let rows = json_rows(
                c,
                "SELECT json FROM tickets WHERE grid = ?1 AND status = ?2 ORDER BY at_ms, id",
                params!["g03", "open"],
            )?;
            Ok(format!("{rows} tickets"))
        },
        target_ms: 100.0,
        on: On::Station,
    },
    Query {
        name: "ticket show ID",
        args: |p| strings(&["ticket", "show", &p.ticket]),
        ours: |v, _| id_of(v),
        baseline: |c, p| one_json(c, "SELECT json FROM tickets WHERE id = ?1", &p.ticket),
        target_ms: 100.0,
        on: On::Station,
    },
    Query {
        name: "report (a month)",
        args: |_| strings(&["report", "--since", LAST_MONTH.0, "--until", LAST_MONTH.1]),
        ours: |v, _| {
            let total = v
                .pointer("/visits/total")
                .and_then(Value::as_u64)
                .context("no visits.total")?;
            Ok(format!("{total} visits"))
        },
        baseline: |c, _| {
            // The visits' figures by grid and by category, and every ticket opened before
            // the window's end by category and status.
            let window = params![millis(LAST_MONTH.0)?, millis(LAST_MONTH.1)?];
            let mut totals = Vec::new();
            for column in ["grid", "json ->> '$.category'"] {
                let mut stmt = c.prepare(&format!(
                    "SELECT {column}, COUNT(*) FROM visits WHERE at_ms >= ?1 AND at_ms < ?2
                     GROUP BY 1"
                ))?;
                let rows = stmt.query_map(window, |r| r.get::<_, u64>(1))?;
                totals.push(
                    rows.collect::<rusqlite::Result<Vec<_>>>()?
                        .iter()
                        .sum::<u64>(),
                );
            }
            ensure!(totals[0] == totals[1], "by grid and by category differ");
            let total = totals[0];
            json_rows(
                c,
                "SELECT json FROM tickets WHERE at_ms < ?1 ORDER BY at_ms",
                [millis(LAST_MONTH.1)?],
            )?;
            Ok(format!("{total} visits"))
        },
        target_ms: 2000.0,
        on: On::Station,
    },
    Query {
        name: "due",
        args: |_| strings(&["due"]),
        ours: |v, _| due_ours(v),
        baseline: |c, _| due_baseline(c),
        target_ms: 100.0,
        on: On::Station,
    },
    Query {
        name: "household show ID",
        args: |p| strings(&["household", "show", &p.household]),
        ours: |v, _| {
            let visits = v["visits"].as_array().context("visits")?.len();
            Ok(format!("{}: {visits} visits", id_of(v)?))
        },
        baseline: |c, p| {
            let id = one_json(c, "SELECT json FROM households WHERE id = ?1", &p.household)?;
            let visits = json_rows(
                c,
                "SELECT json FROM visits WHERE household = ?1 ORDER BY at_ms DESC",
                [&p.household],
            )?;
            Ok(format!("{id}: {visits} visits"))
        },
        target_ms: 100.0,
        on: On::Station,
    },
    Query {
        name: "household list --search 住户123",
        args: |_| strings(&["household", "list", "--search", "住户123"]),
        ours: |v, _| Ok(format!("{} households", array(v)?.len())),
        baseline: |c, _| {
            let rows = json_rows(
                c,
                "SELECT json FROM households WHERE instr(search, ?1) > 0 ORDER BY grid, id",
                ["住户123"],
            )?;
            Ok(format!("{rows} households"))
        },
        target_ms: 300.0,
        on: On::Station,
    },
    Query {
        name: "due, on the laptop",
        args: |_| strings(&["due"]),
        ours: |v, _| due_ours(v),
        baseline: |c, _| due_baseline(c),
        target_ms: 30.0,
        on: On::Laptop,
    },
];

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn counts(visits: u64, tickets: u64, conflicts: u64) -> String {
    format!("{visits} visits, {tickets} tickets, {conflicts} fields in conflict")
}

fn array(v: &Value) -> Result<&Vec<Value>> {
    v.as_array().context("expected a JSON array")
}

fn id_of(v: &Value) -> Result<String> {
    Ok(v["id"].as_str().context("no id")?.to_string())
}

fn millis(time: &str) -> Result<i64> {
    Ok(time.parse::<yizhan_node::model::Time>()?.millis())
}

/// Every row's JSON (the first column) parsed; returns how many.
fn json_rows(c: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<usize> {
    let mut stmt = c.prepare(sql)?;
    let mut rows = stmt.query(args)?;
    let mut parsed = Vec::new();
    while let Some(row) = rows.next()? {
        let json: String = row.get(0)?;
        parsed.push(serde_json::from_str::<Value>(&json)?);
    }
    // What a command does with its answer: print it.
    let out = serde_json::to_string(&parsed)?;
    std::hint::black_box(out);
    Ok(parsed.len())
}

/// The record with id `hex` (its JSON parsed), by its primary key; returns its id.
fn one_json(c: &Connection, sql: &str, hex: &str) -> Result<String> {
    let id: yizhan_protocol::DocId = hex.parse()?;
    let json: String = c.query_row(sql, [id.as_bytes().as_slice()], |r| r.get(0))?;
    id_of(&serde_json::from_str::<Value>(&json)?)
}

/// One query's figures.
#[derive(Clone, Debug)]
pub struct Measured {
    /// As the table shows it.
    pub name: &'static str,
    /// The summary both answers agree on.
    pub answer: String,
    /// Our process's wall times, sorted.
    pub ours: Vec<Duration>,
    /// The plain tables' times (without the process floor), sorted.
    pub baseline: Vec<Duration>,
    /// The target (ms).
    pub target_ms: f64,
}

/// The `queries` run at one size.
#[derive(Clone, Debug)]
pub struct QueriesResult {
    /// Station size (documents).
    pub n: usize,
    /// `yizhan --version`, sorted: the process floor.
    pub floor: Vec<Duration>,
    /// `yizhan --json id`, sorted.
    pub id: Vec<Duration>,
    /// Every query, in [`QUERIES`] order.
    pub queries: Vec<Measured>,
}

/// The best (first) and median of sorted times.
pub fn best_median(times: &[Duration]) -> (Duration, Duration) {
    (times[0], times[times.len() / 2])
}

/// Runs every query at size `n` against a fresh copy of the station's cached home (removed
/// afterwards).
pub fn run(yz: &Yizhan, data_dir: &Path, n: usize) -> Result<QueriesResult> {
    let (cache, _) = data::cached(data_dir, n)?;
    let homes = data::station_copy(&cache, data_dir, n)?;
    let station = homes.station();
    let laptop = homes.laptop();
    // The laptop takes its grid from the station, as on its first evening.
    {
        let serving = yz.serve(&station, &homes.scratch().join("station.log"))?;
        let initial = yz.sync(&laptop, &serving.addr)?;
        eprintln!(
            "N = {n}: the laptop's first sync brought {} changes",
            initial.received
        );
    }
    let params = pick(&station)?;
    let plain = homes.scratch().join("plain.db");
    let plain_laptop = homes.scratch().join("plain-laptop.db");
    let t = Instant::now();
    build_plain(&station, &plain)?;
    build_plain(&laptop, &plain_laptop)?;
    eprintln!("N = {n}: plain tables built in {:.1?}", t.elapsed());
    let floor = times(|| Ok(yz.run(&station, &["--version"])?.1))?;
    let id = times(|| Ok(yz.run(&station, &["id"])?.1))?;
    let mut queries = Vec::new();
    for q in QUERIES {
        let (home, plain) = match q.on {
            On::Station => (&station, &plain),
            On::Laptop => (&laptop, &plain_laptop),
        };
        let args = (q.args)(&params);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut answer = None;
        let ours = times(|| {
            let (out, wall) = yz.run(home, &args)?;
            let v: Value = serde_json::from_slice(&out)
                .with_context(|| format!("{}: output is not JSON", q.name))?;
            answer = Some((q.ours)(&v, &params)?);
            Ok(wall)
        })?;
        let mut expected = None;
        let baseline = times(|| {
            let started = Instant::now();
            let conn = Connection::open_with_flags(plain, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            expected = Some((q.baseline)(&conn, &params)?);
            drop(conn);
            Ok(started.elapsed())
        })?;
        let (answer, expected) = (answer.expect("ran"), expected.expect("ran"));
        ensure!(
            answer == expected,
            "{}: yizhan answered {answer}, the plain tables {expected}",
            q.name
        );
        eprintln!(
            "  {}: {answer}, {:.1?} (plain {:.1?})",
            q.name, ours[0], baseline[0]
        );
        queries.push(Measured {
            name: q.name,
            answer,
            ours,
            baseline,
            target_ms: q.target_ms,
        });
    }
    // The copy and the plain tables are as large as the station: not kept.
    homes.remove()?;
    Ok(QueriesResult {
        n,
        floor,
        id,
        queries,
    })
}

/// [`RUNS`] timings of `one`, sorted.
fn times(mut one: impl FnMut() -> Result<Duration>) -> Result<Vec<Duration>> {
    let mut out = (0..RUNS).map(|_| one()).collect::<Result<Vec<_>>>()?;
    out.sort();
    Ok(out)
}

/// The records the queries refer to.
fn pick(station: &Path) -> Result<Params> {
    let conn = open_store(station)?;
    let station_id: String =
        conn.query_row("SELECT value FROM meta WHERE key = 'device_id'", [], |r| {
            r.get(0)
        })?;
    let visits: i64 = conn.query_row(
        "SELECT COUNT(*) FROM records WHERE kind = 1 AND grid = 'g03' AND author = ?1",
        [&station_id],
        |r| r.get(0),
    )?;
    let visit = conn.query_row(
        "SELECT lower(hex(doc_id)) FROM records WHERE kind = 1 AND grid = 'g03' AND author = ?1
         ORDER BY docno LIMIT 1 OFFSET ?2",
        params![station_id, visits / 2],
        |r| r.get(0),
    )?;
    let ticket = conn.query_row(
        "SELECT lower(hex(doc_id)) FROM records WHERE kind = 2 AND grid = 'g03'
         ORDER BY docno LIMIT 1",
        [],
        |r| r.get(0),
    )?;
    let household = conn.query_row(
        "SELECT h.household FROM records h WHERE h.kind = 1 AND h.grid = 'g03'
         AND h.household IS NOT NULL ORDER BY h.docno LIMIT 1 OFFSET ?1",
        [visits / 3],
        |r| r.get(0),
    )?;
    Ok(Params {
        visit,
        ticket,
        household,
    })
}

/// Copies the station's records into plain tables at `plain` (made anew).
fn build_plain(station: &Path, plain: &Path) -> Result<()> {
    if plain.exists() {
        std::fs::remove_file(plain)?;
    }
    let conn = Connection::open(plain)?;
    let store = station.join("store.db");
    conn.execute(
        "ATTACH ?1 AS s",
        [store.to_str().context("a store path that is not UTF-8")?],
    )?;
    conn.execute_batch(
        "PRAGMA journal_mode = OFF;
         PRAGMA synchronous = OFF;
         CREATE TABLE visits (
             id        BLOB PRIMARY KEY,
             grid      TEXT,
             at_ms     INTEGER NOT NULL,
             conflicts INTEGER NOT NULL,
             household TEXT,
             json      TEXT NOT NULL
         );
         CREATE TABLE tickets (
             id        BLOB PRIMARY KEY,
             grid      TEXT,
             status    TEXT,
             at_ms     INTEGER NOT NULL,
             conflicts INTEGER NOT NULL,
             due_ms    INTEGER,
             json      TEXT NOT NULL
         );
         CREATE TABLE households (
             id        BLOB PRIMARY KEY,
             grid      TEXT,
             due_ms    INTEGER,
             search    TEXT,
             json      TEXT NOT NULL
         );
         BEGIN;
         INSERT INTO visits SELECT doc_id, grid, at_ms, conflicts, household, summary
             FROM s.records WHERE kind = 1 ORDER BY doc_id;
         INSERT INTO tickets SELECT doc_id, grid, status, at_ms, conflicts, due_ms, summary
             FROM s.records WHERE kind = 2 ORDER BY doc_id;
         INSERT INTO households SELECT doc_id, grid, due_ms, search, summary
             FROM s.records WHERE kind = 3 ORDER BY doc_id;
         COMMIT;
         CREATE INDEX visits_by_grid_time ON visits(grid, at_ms);
         CREATE INDEX visits_by_time ON visits(at_ms);
         CREATE INDEX visits_in_conflict ON visits(conflicts) WHERE conflicts > 0;
         CREATE INDEX tickets_by_grid_status ON tickets(grid, status, at_ms);
         CREATE INDEX tickets_by_time ON tickets(at_ms);
         CREATE INDEX tickets_in_conflict ON tickets(conflicts) WHERE conflicts > 0;
         CREATE INDEX tickets_by_due ON tickets(due_ms);
         CREATE INDEX visits_by_household ON visits(household, at_ms);
         CREATE INDEX households_by_due ON households(due_ms);
         ANALYZE;
         DETACH s;",
    )?;
    let rows: i64 = conn.query_row(
        "SELECT (SELECT COUNT(*) FROM visits) + (SELECT COUNT(*) FROM tickets)",
        [],
        |r| r.get(0),
    )?;
    if rows == 0 {
        bail!("the station holds no records");
    }
    Ok(())
}

// A test binary of its own, not a module of `it`: it SIGKILLs 200 `visit add` and
// `visit edit` processes 0–12 ms after starting them, which is where a write is under way
// on an otherwise quiet machine. Beside the `it` tests, each starting `yizhan` processes
// of its own, the kills would land mostly before the write they aim at, and the test would
// pass without testing what it is for.

//! A `visit add` or `visit edit` killed at any moment never loses a record or an edit whose
//! id it already printed, never leaves the store unverifiable, and never makes a later write
//! reuse an (actor, seq).

// The helpers of `it`, where all of them are used (and dead code is caught); this
// binary uses a few.
#[allow(dead_code)]
#[path = "it/util.rs"]
mod util;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::Rng;
use util::*;

const TRIALS_PER_THREAD: usize = 50;
const THREADS: usize = 4;
const MAX_DELAY_MS: u64 = 12;

/// Sends SIGKILL to a child that has not been waited for (so the pid is still ours).
#[allow(unsafe_code)]
fn sigkill(pid: u32) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our unreaped child.
    let r = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(r, 0, "kill({pid}, SIGKILL) failed");
}

/// The record id in what a killed `--json visit add` managed to print, if it printed it
/// whole: `"id"`, a colon, and a complete quoted 32-hex string.
fn printed_id(stdout: &str) -> Option<String> {
    let at = stdout.find("\"id\"")?;
    let rest = stdout[at + 4..].trim_start().strip_prefix(':')?;
    let rest = rest.trim_start().strip_prefix('"')?;
    let end = rest.find('"')?;
    let id = &rest[..end];
    is_hex(id, 32).then(|| id.to_string())
}

struct Trial {
    /// An edit of the first visit (else an add).
    edit: bool,
    household: String,
    id: Option<String>,
    killed: bool,
    code: Option<i32>,
    stderr: String,
}

fn run_trials(home: &Home, thread: usize, first: &str) -> Vec<Trial> {
    let mut rng = rand::rng();
    let mut trials = Vec::new();
    for k in 0..TRIALS_PER_THREAD {
        // Every third trial edits the one shared visit, concurrently with the others.
        let edit = k % 3 == 2;
        let household = format!("幸福里{thread}栋{k}室");
        let args: Vec<&str> = if edit {
            vec!["visit", "edit", first, "--note", household.as_str()]
        } else {
            vec![
                "visit",
                "add",
                "--household",
                household.as_str(),
                "--note",
                "断电测试",
                "--resident",
                "王秀英",
            ]
        };
        let child = home
            .command(true, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn yizhan");
        std::thread::sleep(Duration::from_millis(rng.random_range(0..=MAX_DELAY_MS)));
        sigkill(child.id());
        let out = child.wait_with_output().expect("wait");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        trials.push(Trial {
            edit,
            household,
            id: printed_id(&stdout),
            killed: out.status.code().is_none(),
            code: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    trials
}

#[test]
fn killed_visit_adds_keep_every_printed_id() {
    let home = Home::new();
    // One ordinary visit first, so the store is not empty when the kills start.
    let first = home.add_visit("先来的住户", &[]);
    let start = Instant::now();
    let trials: Vec<Trial> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (home, first) = (&home, first.as_str());
                s.spawn(move || run_trials(home, t, first))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("trial thread"))
            .collect()
    });
    let printed: Vec<&Trial> = trials
        .iter()
        .filter(|t| t.id.is_some() && !t.edit)
        .collect();
    let printed_edits = trials.iter().filter(|t| t.id.is_some() && t.edit).count();
    eprintln!(
        "{} trials in {:?}: {} killed, {} finished, {} printed an id",
        trials.len(),
        start.elapsed(),
        trials.iter().filter(|t| t.killed).count(),
        trials.iter().filter(|t| !t.killed).count(),
        printed.len()
    );
    assert!(trials.len() >= 200);
    // A run that ended on its own (not by the kill) must have succeeded and said so.
    for t in trials.iter().filter(|t| !t.killed) {
        assert_eq!(
            t.code,
            Some(0),
            "visit add for {} failed on its own: {}",
            t.household,
            t.stderr
        );
        assert!(
            t.id.is_some(),
            "visit add for {} exited 0 but printed no id",
            t.household
        );
    }

    let visits = home.visits();
    let listed: BTreeSet<&str> = visits
        .iter()
        .map(|v| v["id"].as_str().expect("id"))
        .collect();
    assert_eq!(listed.len(), visits.len(), "duplicate ids in the list");
    assert!(listed.contains(first.as_str()));
    for t in &printed {
        let id = t.id.as_deref().expect("printed");
        assert!(
            listed.contains(id),
            "visit {id} ({}) was printed before the kill but is lost",
            t.household
        );
        let v = visits.iter().find(|v| v["id"] == id).expect("listed");
        assert_eq!(v["household"], t.household.as_str(), "visit {id} altered");
        assert_eq!(v["note"], "断电测试");
        assert_eq!(v["residents"], serde_json::json!(["王秀英"]));
    }
    // Every edit that printed its id is in the shared visit's history.
    let history = home.visit(&first)["history"]
        .as_array()
        .expect("history")
        .len();
    assert!(
        history > printed_edits,
        "{printed_edits} edits were reported saved but the history has {history} entries"
    );
    // Whatever else survived is whole: one of ours, with all its fields.
    let households: BTreeSet<&str> = trials
        .iter()
        .filter(|t| !t.edit)
        .map(|t| t.household.as_str())
        .collect();
    for v in &visits {
        if v["id"] == first.as_str() {
            continue;
        }
        let h = v["household"].as_str().expect("household");
        assert!(households.contains(h), "unexpected visit {v}");
        assert_eq!(v["note"], "断电测试", "half-written visit {v}");
        assert_eq!(
            v["residents"],
            serde_json::json!(["王秀英"]),
            "half-written visit {v}"
        );
    }

    let out = home.run_json(&["verify"]);
    let verify = parse_json(&out.stdout, &["verify"]);
    assert_eq!(
        verify["bad"], 0,
        "store has bad changes after kills: {verify}"
    );
    assert_eq!(out.status.code(), Some(0), "verify after kills: {verify}");
    assert!(
        verify["changes"].as_u64().unwrap_or(0) >= visits.len() as u64,
        "fewer changes than visits: {verify}"
    );
    // And the store still takes new records and edits: no (actor, seq) is reused, which the
    // store's UNIQUE (doc_id, actor, seq) would refuse.
    let last = home.add_visit("最后的住户", &[]);
    assert_eq!(home.visit(&last)["household"], "最后的住户");
    home.json(&["visit", "edit", &first, "--note", "最后一次"]);
    assert_eq!(home.visit(&first)["note"], "最后一次");
}

//! Notices across nodes through the real `SyncEngine`s: a volunteer's laptop holds the
//! notices of its grids and of the whole site; a notice whose grids a station changes
//! leaves the laptops of the grids it no longer names (once the station's receipt covers
//! their own read marks) and reaches the others' with the marks it holds.
//!
//! Hostile notices and read marks (hand-made changes) are in `attacks`.

use std::collections::BTreeSet;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ROOT};
use yizhan_node::DocChanges;
use yizhan_node::model::Time;
use yizhan_node::records::NewNotice;
use yizhan_protocol::{DocId, SignedChange};
use yizhan_tests::{TestNode, enroll, sync_until_ok};

const GRID: &str = "和平里";
const OTHER_GRID: &str = "光明街";

/// The ids of the notices `n` holds, current or not.
fn held(n: &TestNode) -> BTreeSet<DocId> {
    n.node
        .list_notices(true)
        .unwrap()
        .iter()
        .map(|x| x.id.parse().unwrap())
        .collect()
}

fn publish(station: &mut TestNode, title: &str, grids: &[&str]) -> DocId {
    station
        .node
        .publish_notice(&NewNotice {
            title: title.into(),
            body: format!("{title}：详见驿站公告栏。"),
            grids: grids.iter().map(|g| g.to_string()).collect(),
            until: None,
        })
        .unwrap()
}

/// The station writes a notice's `grids` (one a line; empty: the whole site) with a change
/// of its own. No command edits a notice, but a station may: every node takes it.
fn set_grids(station: &mut TestNode, id: DocId, grids: &str) {
    let stored = station.node.doc_changes(id).unwrap();
    let mut am = AutoCommit::new();
    am.apply_changes(
        stored
            .changes
            .iter()
            .map(|c| automerge::Change::try_from(c.bytes.as_slice()).unwrap()),
    )
    .unwrap();
    let mut am = am.with_actor(ActorId::from(station.id().as_bytes().as_slice()));
    am.put(ROOT, "grids", grids).unwrap();
    am.commit_with(CommitOptions::default().with_time(Time::now_millis()));
    let change = am.get_last_local_change().unwrap().clone();
    let env = SignedChange::sign(
        &station.node.device_key(),
        station.node.identity().site_id,
        id,
        &change,
    );
    let report = station
        .node
        .ingest(vec![DocChanges {
            header: stored.header,
            changes: vec![env],
        }])
        .unwrap();
    assert_eq!(report.accepted, 1, "{report:?}");
}

fn assert_verifies(n: &TestNode) {
    let report = n.node.verify().unwrap();
    assert_eq!(report.bad, 0, "{:?}", report.problems);
}

#[test]
fn a_notice_follows_its_grids() {
    let mut station = TestNode::station("幸福驿站");
    let mut a = TestNode::new("李强");
    let mut b = TestNode::new("王芳");
    enroll(&mut station, &mut a, &[GRID]);
    enroll(&mut station, &mut b, &[OTHER_GRID]);
    let water = publish(&mut station, "停水通知", &[GRID]);
    let meeting = publish(&mut station, "周五例会", &[]);
    let lights = publish(&mut station, "路灯检修", &[OTHER_GRID, GRID]);
    sync_until_ok(&mut a, &mut station, 1);
    sync_until_ok(&mut b, &mut station, 1);
    assert_eq!(held(&a), BTreeSet::from([water, meeting, lights]));
    assert_eq!(held(&b), BTreeSet::from([meeting, lights]));
    // Two laptops of different grids relay to each other only what the other may hold.
    sync_until_ok(&mut a, &mut b, 1);
    assert_eq!(held(&b), BTreeSet::from([meeting, lights]));

    // A reads the water notice; the station then sends it to the other grid, and makes
    // the meeting one for A's grid alone.
    a.node.read_notice(water).unwrap();
    set_grids(&mut station, water, OTHER_GRID);
    set_grids(&mut station, meeting, GRID);
    // The sync that brings A the move also takes A's mark to the station, whose receipt
    // then covers it: the water notice leaves A's laptop at the end of that sync, its mark
    // safe at the station.
    sync_until_ok(&mut a, &mut station, 1);
    assert_eq!(held(&a), BTreeSet::from([meeting, lights]));
    assert_eq!(a.node.purged_count().unwrap(), 1);
    let at_station = station.node.list_notices(true).unwrap();
    let w = at_station
        .iter()
        .find(|n| n.id == water.to_string())
        .unwrap();
    assert_eq!(w.read_by, [a.id().to_string()]);
    // B gains the water notice, with A's mark, and loses the meeting.
    sync_until_ok(&mut b, &mut station, 1);
    assert_eq!(held(&b), BTreeSet::from([water, lights]));
    let shown = b
        .node
        .list_notices(true)
        .unwrap()
        .into_iter()
        .find(|n| n.id == water.to_string())
        .unwrap();
    assert_eq!(shown.grids, [OTHER_GRID]);
    assert_eq!(shown.read_by, [a.id().to_string()]);
    assert!(!shown.read);
    // The station holds all three, each with the grids it names now.
    assert_eq!(held(&station), BTreeSet::from([water, meeting, lights]));
    let grids: Vec<Vec<String>> = station
        .node
        .list_notices(true)
        .unwrap()
        .into_iter()
        .map(|n| n.grids)
        .collect();
    assert!(grids.contains(&vec![GRID.to_string()]), "{grids:?}");
    assert!(
        grids.contains(&vec![OTHER_GRID.to_string(), GRID.to_string()]),
        "sorted: {grids:?}"
    );
    for n in [&station, &a, &b] {
        assert_verifies(n);
    }
}

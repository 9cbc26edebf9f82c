//! Property test: whatever records the nodes write and however the syncs between them are
//! scheduled over a lossy, duplicating, reordering link, with restarts in between, once the
//! network heals every node holds exactly the station's version of every record in its
//! scope, and every store still verifies.

use proptest::prelude::*;
use yizhan_node::model::Status;
use yizhan_node::records::{NewTicket, NewVisit, TicketUpdate, VisitEdit};
use yizhan_protocol::DocId;
use yizhan_tests::{Faults, TestNode, enroll, rng, sync, sync_until_ok};

/// One step of a schedule.
#[derive(Clone, Debug)]
enum Step {
    /// Node `n` logs a visit.
    Visit(usize),
    /// Node `n` edits the `k`-th visit it holds, if any (its own, or any as station).
    EditVisit(usize, usize),
    /// Node `n` opens a ticket.
    Ticket(usize),
    /// Node `n` moves the `k`-th ticket it holds on.
    UpdateTicket(usize, usize),
    /// Nodes `a` and `b` sync over a faulty link.
    Sync(usize, usize),
    /// Node `n` restarts (reopens its store).
    Restart(usize),
}

fn step(nodes: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..nodes).prop_map(Step::Visit),
        (0..nodes, 0..8usize).prop_map(|(n, k)| Step::EditVisit(n, k)),
        (0..nodes).prop_map(Step::Ticket),
        (0..nodes, 0..8usize).prop_map(|(n, k)| Step::UpdateTicket(n, k)),
        (0..nodes, 0..nodes).prop_map(|(a, b)| Step::Sync(a, b)),
        (0..nodes).prop_map(Step::Restart),
    ]
}

fn nth_visit(node: &TestNode, k: usize, own_only: bool) -> Option<DocId> {
    let me = node.id().to_string();
    let visits = node.node.list_visits(&Default::default()).unwrap();
    let candidates: Vec<_> = visits
        .iter()
        .filter(|v| !own_only || v.author == me)
        .collect();
    let v = candidates.get(k % candidates.len().max(1))?;
    v.id.parse().ok()
}

fn nth_ticket(node: &TestNode, k: usize) -> Option<DocId> {
    let tickets = node.node.list_tickets(&Default::default()).unwrap();
    let t = tickets.get(k % tickets.len().max(1))?;
    t.id.parse().ok()
}

/// Two nodes, one borrowed mutably each.
fn pair(nodes: &mut [TestNode], a: usize, b: usize) -> (&mut TestNode, &mut TestNode) {
    assert_ne!(a, b);
    if a < b {
        let (l, r) = nodes.split_at_mut(b);
        (&mut l[a], &mut r[0])
    } else {
        let (l, r) = nodes.split_at_mut(a);
        (&mut r[0], &mut l[b])
    }
}

/// Runs one schedule and checks that the network, once healed, has converged.
fn converges(volunteers: usize, steps: Vec<Step>, seed: u64) -> Result<(), TestCaseError> {
    // Node 0 is the station; the volunteers share grid 和平里 except the last, in 幸福路.
    let mut nodes = vec![TestNode::station("驿站")];
    for i in 0..volunteers {
        let mut v = TestNode::new(&format!("志愿者{i}"));
        let grid = if i + 1 == volunteers {
            "幸福路"
        } else {
            "和平里"
        };
        enroll(&mut nodes[0], &mut v, &[grid]);
        nodes.push(v);
    }
    let n = nodes.len();
    let faults = Faults {
        loss: 0.05,
        duplicate: 0.05,
        reorder: 0.1,
    };
    let mut r = rng(seed);
    let mut counter = 0;
    for s in steps {
        counter += 1;
        match s {
            Step::Visit(i) => {
                nodes[i % n]
                    .node
                    .add_visit(&NewVisit {
                        household: format!("户 {counter}"),
                        grid: station_grid(i % n),
                        ..NewVisit::default()
                    })
                    .unwrap();
            }
            Step::EditVisit(i, k) => {
                let node = &mut nodes[i % n];
                let station = i % n == 0;
                if let Some(id) = nth_visit(node, k, !station) {
                    node.node
                        .edit_visit(
                            id,
                            &VisitEdit {
                                note: Some(format!("第 {counter} 次")),
                                ..VisitEdit::default()
                            },
                        )
                        .unwrap();
                }
            }
            Step::Ticket(i) => {
                nodes[i % n]
                    .node
                    .open_ticket(&NewTicket {
                        title: format!("事项 {counter}"),
                        grid: station_grid(i % n),
                        ..NewTicket::default()
                    })
                    .unwrap();
            }
            Step::UpdateTicket(i, k) => {
                let node = &mut nodes[i % n];
                if let Some(id) = nth_ticket(node, k) {
                    let status =
                        [Status::InProgress, Status::Resolved, Status::Closed][counter % 3];
                    node.node
                        .update_ticket(
                            id,
                            &TicketUpdate {
                                status: Some(status),
                                ..TicketUpdate::default()
                            },
                        )
                        .unwrap();
                }
            }
            Step::Sync(a, b) => {
                let (a, b) = (a % n, b % n);
                if a != b {
                    let (x, y) = pair(&mut nodes, a, b);
                    let _ = sync(x, y, faults, &mut r);
                }
            }
            Step::Restart(i) => nodes[i % n].reopen(),
        }
    }
    // The network heals: every volunteer syncs with the station, twice round.
    for _ in 0..2 {
        for i in 1..n {
            let (station, v) = pair(&mut nodes, 0, i);
            sync_until_ok(v, station, 3);
        }
    }
    let at_station = nodes[0].node.doc_heads().unwrap();
    for v in &nodes[1..] {
        for (doc, heads) in v.node.doc_heads().unwrap() {
            prop_assert_eq!(at_station.get(&doc), Some(&heads), "record {} differs", doc);
        }
        prop_assert_eq!(v.node.pending_to_station().unwrap(), 0);
    }
    // Volunteers of one grid hold the same records of that grid.
    let grid_docs = |node: &TestNode| -> Vec<String> {
        let mut ids: Vec<String> = node
            .node
            .list_visits(&Default::default())
            .unwrap()
            .into_iter()
            .filter(|v| v.grid.as_deref() == Some("和平里"))
            .map(|v| v.id)
            .collect();
        ids.sort();
        ids
    };
    for i in 2..n - 1 {
        prop_assert_eq!(grid_docs(&nodes[1]), grid_docs(&nodes[i]));
    }
    for node in &nodes {
        let report = node.node.verify().unwrap();
        prop_assert_eq!(report.bad, 0, "{:?}", report.problems);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]

    #[test]
    fn every_schedule_converges(
        volunteers in 2..=4usize,
        steps in prop::collection::vec(step(5), 5..30),
        seed in any::<u64>(),
    ) {
        converges(volunteers, steps, seed)?;
    }
}

/// Schedules that once failed, kept as they shrank. The first lost the station's roster on
/// the way to volunteer 2 (the link drops frames), so the visit of volunteer 1 that came
/// after it was refused there as a stranger's: the position in the station's log must not
/// move past it, so that the next sync brings it again with the roster.
#[test]
fn schedules_that_once_failed_converge() {
    use Step::*;
    let cases = [(
        3,
        vec![Visit(1), Sync(1, 0), Sync(0, 3), Sync(1, 0), Sync(0, 2)],
        16388457140760616116,
    )];
    for (volunteers, steps, seed) in cases {
        converges(volunteers, steps, seed).unwrap();
    }
}

/// The grid of a new record: the station (node 0) names 和平里, as a station must; a
/// volunteer's record goes to its own grid.
fn station_grid(node: usize) -> Option<String> {
    (node == 0).then(|| "和平里".to_string())
}

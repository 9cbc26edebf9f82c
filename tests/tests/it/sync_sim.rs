//! A station and volunteers syncing through the real sync engines over a simulated link
//! (virtual clock; loss, duplication and reordering of frames).

use yizhan_node::model::Status;
use yizhan_node::quarantine::QuarantineError;
use yizhan_node::records::{NewTicket, NewVisit, TicketUpdate};
use yizhan_protocol::{DeviceId, DocId, RecordKind};
use yizhan_tests::{Faults, TestNode, enroll, rng, sync, sync_until_ok};

fn visit(node: &mut TestNode, household: &str) -> DocId {
    node.node
        .add_visit(&NewVisit {
            household: household.to_string(),
            ..NewVisit::default()
        })
        .expect("add visit")
}

fn households(node: &TestNode) -> Vec<String> {
    let mut h: Vec<String> = node
        .node
        .list_visits(&Default::default())
        .unwrap()
        .into_iter()
        .map(|v| v.household)
        .collect();
    h.sort();
    h
}

/// The documents `node` holds have the same heads at the station.
fn assert_same_as_station(node: &TestNode, station: &TestNode) {
    let mine = node.node.doc_heads().unwrap();
    let theirs = station.node.doc_heads().unwrap();
    for (doc, heads) in &mine {
        assert_eq!(
            theirs.get(doc),
            Some(heads),
            "document {doc} differs from the station"
        );
    }
}

fn verify_clean(nodes: &[&TestNode]) {
    for n in nodes {
        let report = n.node.verify().unwrap();
        assert_eq!(report.bad, 0, "{:?}", report.problems);
    }
}

struct World {
    station: TestNode,
    a: TestNode,
    b: TestNode,
    c: TestNode,
}

/// A station; A and B in grid 和平里, C in grid 幸福路.
fn world() -> World {
    let mut station = TestNode::station("幸福驿站");
    let mut a = TestNode::new("王芳");
    let mut b = TestNode::new("李强");
    let mut c = TestNode::new("张伟");
    enroll(&mut station, &mut a, &["和平里"]);
    enroll(&mut station, &mut b, &["和平里"]);
    enroll(&mut station, &mut c, &["幸福路"]);
    World { station, a, b, c }
}

#[test]
fn records_reach_the_station_and_come_back_within_scope_only() {
    let mut w = world();
    visit(&mut w.a, "和平里 1 号");
    visit(&mut w.a, "和平里 2 号");
    visit(&mut w.b, "和平里 3 号");
    visit(&mut w.c, "幸福路 9 号");
    // The station opens a ticket in 幸福路 assigned to A: A's scope includes it.
    let assigned = w
        .station
        .node
        .open_ticket(&NewTicket {
            title: "独居老人送餐".into(),
            grid: Some("幸福路".into()),
            assignee: Some(w.a.id()),
            ..NewTicket::default()
        })
        .unwrap();
    for _ in 0..2 {
        for v in [&mut w.a, &mut w.b, &mut w.c] {
            let out = sync_until_ok(v, &mut w.station, 1);
            assert!(out.ok(), "{out:?}");
        }
    }
    assert_eq!(
        households(&w.station),
        ["和平里 1 号", "和平里 2 号", "和平里 3 号", "幸福路 9 号"]
    );
    assert_eq!(
        households(&w.a),
        ["和平里 1 号", "和平里 2 号", "和平里 3 号"]
    );
    assert_eq!(
        households(&w.b),
        ["和平里 1 号", "和平里 2 号", "和平里 3 号"]
    );
    assert_eq!(households(&w.c), ["幸福路 9 号"]);
    // The assigned ticket reached A, not B (same grid as A, but not 幸福路 and not assigned).
    assert!(w.a.node.show_ticket(assigned).is_ok());
    assert!(w.b.node.show_ticket(assigned).is_err());
    // The station's ticket is in C's grid.
    assert!(w.c.node.show_ticket(assigned).is_ok());
    for v in [&w.a, &w.b, &w.c] {
        assert_same_as_station(v, &w.station);
        assert_eq!(v.node.pending_to_station().unwrap(), 0);
        assert!(v.node.station_receipt().unwrap().is_some());
    }
    verify_clean(&[&w.station, &w.a, &w.b, &w.c]);

    // New records count as pending until the next sync: two visits, each with the
    // household it made.
    visit(&mut w.a, "和平里 4 号");
    visit(&mut w.a, "和平里 5 号");
    assert_eq!(w.a.node.pending_to_station().unwrap(), 4);
    sync_until_ok(&mut w.a, &mut w.station, 1);
    assert_eq!(w.a.node.pending_to_station().unwrap(), 0);
}

#[test]
fn a_visit_relayed_by_another_volunteer_arrives_as_its_authors() {
    let mut w = world();
    let id = visit(&mut w.a, "和平里 7 号");
    // A meets B in the field; B later meets the station. A never does.
    assert!(sync_until_ok(&mut w.a, &mut w.b, 1).ok());
    assert_eq!(households(&w.b), ["和平里 7 号"]);
    assert!(sync_until_ok(&mut w.b, &mut w.station, 1).ok());
    let at_station = w.station.node.show_visit(id).unwrap();
    assert_eq!(at_station.visit.author, w.a.id().to_string());
    let changes = w.station.node.doc_changes(id).unwrap();
    assert!(changes.changes.iter().all(|c| c.signer == w.a.id()));
    verify_clean(&[&w.station, &w.b]);
    // A is not told it is safe at the station until A syncs with the station itself (its
    // visit, and the household it made).
    assert_eq!(w.a.node.pending_to_station().unwrap(), 2);
    assert!(sync_until_ok(&mut w.a, &mut w.station, 1).ok());
    assert_eq!(w.a.node.pending_to_station().unwrap(), 0);
}

#[test]
fn concurrent_ticket_edits_keep_both_and_show_conflicts_everywhere() {
    let mut w = world();
    let t =
        w.a.node
            .open_ticket(&NewTicket {
                title: "楼道灯坏了".into(),
                ..NewTicket::default()
            })
            .unwrap();
    sync_until_ok(&mut w.a, &mut w.station, 1);
    sync_until_ok(&mut w.b, &mut w.station, 1);
    // Offline, both edit the status; B also comments.
    let set = |n: &mut TestNode, s: Status| {
        n.node
            .update_ticket(
                t,
                &TicketUpdate {
                    status: Some(s),
                    ..TicketUpdate::default()
                },
            )
            .unwrap()
    };
    set(&mut w.a, Status::Resolved);
    set(&mut w.b, Status::InProgress);
    w.b.node.comment_ticket(t, "已报修").unwrap();
    for _ in 0..2 {
        sync_until_ok(&mut w.a, &mut w.station, 1);
        sync_until_ok(&mut w.b, &mut w.station, 1);
    }
    for n in [&w.a, &w.b, &w.station] {
        let shown = n.node.show_ticket(t).unwrap();
        assert_eq!(shown.comments.len(), 1);
        assert_eq!(shown.conflicts.len(), 1);
        assert_eq!(shown.conflicts[0].field, "status");
        let mut values = shown.conflicts[0].values.clone();
        values.sort();
        assert_eq!(values, ["in_progress", "resolved"]);
    }
    assert_same_as_station(&w.a, &w.station);
    assert_same_as_station(&w.b, &w.station);
}

#[test]
fn revoked_and_foreign_devices_are_refused_and_change_nothing() {
    let mut w = world();
    visit(&mut w.c, "幸福路 1 号");
    w.station
        .node
        .revoke(w.c.id(), "laptop lost")
        .expect("revoke");
    let before = w.station.node.doc_heads().unwrap();
    let out = sync(&mut w.c, &mut w.station, Faults::default(), &mut rng(3));
    assert!(!out.ok());
    assert!(format!("{out:?}").contains("revoked"), "{out:?}");
    assert_eq!(w.station.node.doc_heads().unwrap(), before);

    // A device of another site.
    let mut other_station = TestNode::station("别的驿站");
    let mut stranger = TestNode::new("陌生人");
    enroll(&mut other_station, &mut stranger, &["和平里"]);
    visit(&mut stranger, "和平里 99 号");
    let out = sync(
        &mut stranger,
        &mut w.station,
        Faults::default(),
        &mut rng(4),
    );
    assert!(!out.ok());
    assert!(format!("{out:?}").contains("another site"), "{out:?}");
    assert_eq!(w.station.node.doc_heads().unwrap(), before);

    // The revocation reaches A with its next sync, and A then refuses C too.
    sync_until_ok(&mut w.a, &mut w.station, 1);
    assert!(
        w.a.node
            .members()
            .unwrap()
            .iter()
            .any(|m| m.device_id == w.c.id().to_string() && m.revoked)
    );
}

#[test]
fn an_altered_change_is_rejected_while_the_rest_merges() {
    let mut w = world();
    let good = visit(&mut w.a, "和平里 1 号");
    let bad = visit(&mut w.a, "和平里 2 号");
    // Tamper with the second visit's stored signature on A's disk.
    let db = w.a.node.home().join("store.db");
    {
        let conn = rusqlite_conn(&db);
        conn.execute(
            "UPDATE changes SET signature = zeroblob(64) WHERE doc_id = ?1",
            [bad.as_bytes().as_slice()],
        )
        .unwrap();
    }
    w.a.reopen();
    let out = sync_until_ok(&mut w.a, &mut w.station, 1);
    let stats = out.b.as_ref().unwrap();
    // The good visit and both households.
    assert_eq!(stats.received, 3);
    assert_eq!(stats.rejected, 1);
    assert!(w.station.node.show_visit(good).is_ok());
    assert!(w.station.node.show_visit(bad).is_err());
    verify_clean(&[&w.station]);
    // The station's receipt names the refused change: A is not told it is safe.
    assert_eq!(w.a.node.pending_to_station().unwrap(), 1);
}

fn rusqlite_conn(path: &std::path::Path) -> yizhan_tests::Conn {
    yizhan_tests::open_db(path)
}

#[test]
fn syncs_cut_at_random_moments_lose_nothing_and_converge() {
    let (mut cut, mut completed) = (0, 0);
    for seed in 0..6u64 {
        let mut w = world();
        let mut r = rng(seed);
        let faults = Faults {
            loss: 0.08,
            duplicate: 0.05,
            reorder: 0.10,
        };
        for round in 0..4 {
            visit(&mut w.a, &format!("和平里 {seed}-{round}-a"));
            visit(&mut w.b, &format!("和平里 {seed}-{round}-b"));
            visit(&mut w.c, &format!("幸福路 {seed}-{round}-c"));
            let mut outcomes = Vec::new();
            for v in [&mut w.a, &mut w.b, &mut w.c] {
                outcomes.push(sync(v, &mut w.station, faults, &mut r));
            }
            outcomes.push(sync(&mut w.a, &mut w.b, faults, &mut r));
            for o in outcomes {
                if o.ok() {
                    completed += 1;
                } else {
                    cut += 1;
                }
            }
            verify_clean(&[&w.station, &w.a, &w.b, &w.c]);
        }
        // The network heals: every laptop syncs twice.
        for _ in 0..2 {
            for v in [&mut w.a, &mut w.b, &mut w.c] {
                sync_until_ok(v, &mut w.station, 3);
            }
        }
        assert_eq!(households(&w.station).len(), 12, "seed {seed}");
        assert_eq!(households(&w.a).len(), 8, "seed {seed}");
        assert_eq!(households(&w.b).len(), 8, "seed {seed}");
        assert_eq!(households(&w.c).len(), 4, "seed {seed}");
        for v in [&w.a, &w.b, &w.c] {
            assert_same_as_station(v, &w.station);
            assert_eq!(v.node.pending_to_station().unwrap(), 0, "seed {seed}");
        }
        verify_clean(&[&w.station, &w.a, &w.b, &w.c]);
    }
    // The schedules really did cut syncs half-way, and some still got through.
    eprintln!("faulty syncs: {cut} cut, {completed} completed");
    assert!(
        cut > 10 && completed > 0,
        "{cut} cut, {completed} completed"
    );
}

#[test]
fn a_revoked_authors_changes_relayed_later_wait_in_quarantine() {
    let mut w = world();
    let id = visit(&mut w.a, "和平里 8 号");
    // A hands its visit to B in the field, then A is revoked before B reaches the station.
    assert!(sync_until_ok(&mut w.a, &mut w.b, 1).ok());
    w.station
        .node
        .revoke(w.a.id(), "left the programme")
        .unwrap();
    assert!(sync_until_ok(&mut w.b, &mut w.station, 1).ok());
    assert!(
        w.station.node.show_visit(id).is_err(),
        "merged without a decision"
    );
    // The visit, and the household A made for it.
    let held = w.station.node.quarantine_list().unwrap();
    assert_eq!(held.len(), 2);
    assert!(held.iter().all(|h| h.author == w.a.id().to_string()));
    let visit_held = held
        .iter()
        .find(|h| h.record == id.to_string())
        .expect("the visit is held");
    // Volunteers keep no quarantine.
    assert!(w.b.node.quarantine_list().is_err());

    assert_eq!(
        w.station
            .node
            .quarantine_accept(Some(&visit_held.id[..8]))
            .unwrap(),
        1
    );
    assert_eq!(w.station.node.quarantine_list().unwrap().len(), 1);
    assert_eq!(w.station.node.quarantine_accept(None).unwrap(), 1);
    assert!(w.quarantine_empty());
    assert_eq!(
        w.station.node.show_visit(id).unwrap().visit.author,
        w.a.id().to_string()
    );
    verify_clean(&[&w.station]);

    // Accepted by the station, the change now travels on from it like any other.
    assert!(sync_until_ok(&mut w.c, &mut w.station, 1).ok());
    let mut fresh = TestNode::new("赵敏");
    enroll(&mut w.station, &mut fresh, &["和平里"]);
    assert!(sync_until_ok(&mut fresh, &mut w.station, 1).ok());
    assert!(fresh.node.show_visit(id).is_ok());
}

#[test]
fn rejected_quarantine_is_dropped_for_good() {
    let mut w = world();
    let id = visit(&mut w.a, "和平里 9 号");
    assert!(sync_until_ok(&mut w.a, &mut w.b, 1).ok());
    w.station.node.revoke(w.a.id(), "").unwrap();
    assert!(sync_until_ok(&mut w.b, &mut w.station, 1).ok());
    // The visit, and the household A made for it.
    assert_eq!(w.station.node.quarantine_reject(None).unwrap(), 2);
    assert!(w.quarantine_empty());
    assert!(w.station.node.show_visit(id).is_err());
}

impl World {
    fn quarantine_empty(&self) -> bool {
        self.station.node.quarantine_list().unwrap().is_empty()
    }
}

#[test]
fn a_new_grid_brings_its_older_records_at_the_next_sync() {
    let mut w = world();
    visit(&mut w.c, "幸福路 1 号");
    sync_until_ok(&mut w.c, &mut w.station, 1);
    sync_until_ok(&mut w.a, &mut w.station, 1);
    assert_eq!(households(&w.a), Vec::<String>::new());
    // The station adds 幸福路 to A's grids; A joins with the new token.
    enroll(&mut w.station, &mut w.a, &["和平里", "幸福路"]);
    sync_until_ok(&mut w.a, &mut w.station, 1);
    assert_eq!(households(&w.a), ["幸福路 1 号"]);
    assert_same_as_station(&w.a, &w.station);
}

#[test]
fn a_change_that_moves_a_record_out_of_the_senders_scope_still_reaches_the_station() {
    let mut w = world();
    let t = w
        .station
        .node
        .open_ticket(&NewTicket {
            title: "独居老人送餐".into(),
            grid: Some("幸福路".into()),
            assignee: Some(w.a.id()),
            ..NewTicket::default()
        })
        .unwrap();
    sync_until_ok(&mut w.a, &mut w.station, 1);
    // A hands the ticket on to C: it leaves A's scope with this very change.
    w.a.node
        .update_ticket(
            t,
            &TicketUpdate {
                assignee: Some(w.c.id()),
                ..TicketUpdate::default()
            },
        )
        .unwrap();
    assert_eq!(w.a.node.pending_to_station().unwrap(), 1);
    sync_until_ok(&mut w.a, &mut w.station, 1);
    let at_station = w.station.node.show_ticket(t).unwrap();
    assert_eq!(at_station.ticket.assignee, Some(w.c.id().to_string()));
    assert_eq!(w.a.node.pending_to_station().unwrap(), 0);
    sync_until_ok(&mut w.c, &mut w.station, 1);
    assert_eq!(
        w.c.node.show_ticket(t).unwrap().ticket.assignee,
        Some(w.c.id().to_string())
    );
}

#[test]
fn changes_built_on_a_held_change_wait_with_it_and_never_stall_the_sync() {
    let mut w = world();
    let t =
        w.a.node
            .open_ticket(&NewTicket {
                title: "修路灯".into(),
                ..NewTicket::default()
            })
            .unwrap();
    assert!(sync_until_ok(&mut w.a, &mut w.b, 1).ok());
    w.station.node.revoke(w.a.id(), "").unwrap();
    // B works on A's ticket, then reaches the station.
    w.b.node
        .update_ticket(
            t,
            &TicketUpdate {
                status: Some(Status::InProgress),
                ..TicketUpdate::default()
            },
        )
        .unwrap();
    assert!(sync_until_ok(&mut w.b, &mut w.station, 1).ok());
    assert_eq!(w.station.node.quarantine_list().unwrap().len(), 2);
    assert!(w.station.node.show_ticket(t).is_err());
    // B's own change is not safe at the station yet.
    assert_eq!(w.b.node.pending_to_station().unwrap(), 2);

    // Rejecting A's change drops B's with it; the next syncs go through, no stall.
    let held = w.station.node.quarantine_list().unwrap();
    let a_change = held
        .iter()
        .find(|h| h.author == w.a.id().to_string())
        .unwrap();
    assert_eq!(
        w.station
            .node
            .quarantine_reject(Some(&a_change.id))
            .unwrap(),
        2
    );
    for _ in 0..2 {
        let out = sync_until_ok(&mut w.b, &mut w.station, 1);
        assert_eq!(out.b.as_ref().unwrap().received, 0, "{out:?}");
    }
    assert!(w.quarantine_empty());
    verify_clean(&[&w.station]);
    // B still holds A's change, which no station vouched for: its `verify` says so.
    let report = w.b.node.verify().unwrap();
    assert_eq!(report.bad, 1, "{:?}", report.problems);
    assert!(report.problems[0].contains("its author was revoked"));
}

#[test]
fn a_held_change_is_accepted_only_after_the_held_change_it_builds_on() {
    let mut w = world();
    let t =
        w.a.node
            .open_ticket(&NewTicket {
                title: "修路灯".into(),
                ..NewTicket::default()
            })
            .unwrap();
    assert!(sync_until_ok(&mut w.a, &mut w.b, 1).ok());
    w.station.node.revoke(w.a.id(), "设备丢失").unwrap();
    w.b.node
        .update_ticket(
            t,
            &TicketUpdate {
                status: Some(Status::InProgress),
                ..TicketUpdate::default()
            },
        )
        .unwrap();
    assert!(sync_until_ok(&mut w.b, &mut w.station, 1).ok());
    let held = w.station.node.quarantine_list().unwrap();
    let by = |d: DeviceId| held.iter().find(|h| h.author == d.to_string()).unwrap();
    let (a_change, b_change) = (by(w.a.id()), by(w.b.id()));
    // What each holds, when it was made, and what it waits for.
    assert_eq!(a_change.kind, "ticket");
    assert_eq!(a_change.reason, yizhan_node::quarantine::REVOKED_AUTHOR);
    assert_eq!(b_change.reason, yizhan_node::quarantine::BUILDS_ON_HELD);
    assert!(a_change.depends_on.is_empty());
    assert_eq!(b_change.depends_on, vec![a_change.id.clone()]);
    assert!(a_change.writes.iter().any(|c| c.field == "title"));
    assert!(
        b_change
            .writes
            .iter()
            .any(|c| c.field == "status" && c.value == "in_progress")
    );
    assert!(a_change.made_at.is_some() && a_change.revoked_at.is_some());
    assert_eq!(a_change.revocation_reason.as_deref(), Some("设备丢失"));
    let record = w
        .station
        .node
        .held_record(RecordKind::Ticket, &t.to_string()[..8])
        .unwrap()
        .expect("the ticket is held");
    assert_eq!(record.changes, 2);
    assert!(record.revoked_at.is_some());

    // B's change alone: refused, naming A's, and nothing merged.
    match w.station.node.quarantine_accept(Some(&b_change.id)) {
        Err(QuarantineError::WaitsFor { change, waits_for }) => {
            assert_eq!(change, b_change.id);
            assert_eq!(waits_for, vec![a_change.id.clone()]);
        }
        other => panic!("accepted a change before the one it builds on: {other:?}"),
    }
    assert_eq!(w.station.node.quarantine_list().unwrap().len(), 2);
    assert_eq!(
        w.station
            .node
            .quarantine_accept(Some(&a_change.id))
            .unwrap(),
        1
    );
    assert_eq!(
        w.station
            .node
            .quarantine_accept(Some(&b_change.id))
            .unwrap(),
        1
    );
    assert!(w.quarantine_empty());
    assert_eq!(
        w.station.node.show_ticket(t).unwrap().ticket.status,
        "in_progress"
    );
    assert!(
        w.station
            .node
            .held_record(RecordKind::Ticket, &t.to_string())
            .unwrap()
            .is_none()
    );
    verify_clean(&[&w.station]);
}

#[test]
fn a_re_enrolment_takes_effect_at_the_next_sync_without_a_new_token() {
    use yizhan_node::members::EnrollRequest;
    let mut w = world();
    visit(&mut w.c, "幸福路 2 号");
    sync_until_ok(&mut w.c, &mut w.station, 1);
    sync_until_ok(&mut w.a, &mut w.station, 1);
    // The station widens A's grids; A never types the new token.
    w.station
        .node
        .enroll(&EnrollRequest {
            device: w.a.id(),
            name: "王芳".into(),
            grids: vec!["和平里".into(), "幸福路".into()],
            role: yizhan_protocol::MemberRole::Volunteer,
            expires_days: None,
        })
        .unwrap();
    sync_until_ok(&mut w.a, &mut w.station, 1);
    assert_eq!(w.a.node.identity().grids, ["和平里", "幸福路"]);
    sync_until_ok(&mut w.a, &mut w.station, 1);
    assert_eq!(households(&w.a), ["幸福路 2 号"]);
    // And the positions settle: a quiet sync moves nothing.
    let out = sync_until_ok(&mut w.a, &mut w.station, 1);
    assert_eq!(out.a.as_ref().unwrap().received, 0, "{out:?}");
    assert_eq!(out.b.as_ref().unwrap().sent, 0, "{out:?}");
}

/// A token names the station's address only when a laptop could dial it: not the
/// wildcard address a station listening on every interface (the default) is bound to.
#[test]
fn tokens_name_a_dialable_station_address_only() {
    use yizhan_node::members::EnrollRequest;
    let mut station = TestNode::station("幸福驿站");
    let device = TestNode::new("王芳").id();
    let request = EnrollRequest {
        device,
        name: "王芳".into(),
        grids: vec!["和平里".into()],
        role: yizhan_protocol::MemberRole::Volunteer,
        expires_days: None,
    };
    station.node.set_listen_addr("0.0.0.0:7365").unwrap();
    let token = station.node.enroll(&request).unwrap();
    assert!(token.station_addrs.is_empty(), "{:?}", token.station_addrs);
    station.node.set_listen_addr("192.168.1.20:7365").unwrap();
    let token = station.node.enroll(&request).unwrap();
    assert_eq!(token.station_addrs, ["192.168.1.20:7365"]);
}

/// A membership only moves forward: joining with a token older than the membership the
/// device holds (which would bring back its old grids) is refused and changes nothing;
/// the newest token can be used again.
#[test]
fn an_older_token_does_not_undo_a_newer_membership() {
    use yizhan_node::members::{EnrollRequest, SiteError};
    let mut station = TestNode::station("幸福驿站");
    let mut a = TestNode::new("王芳");
    let request = |grids: &[&str]| EnrollRequest {
        device: a.id(),
        name: "王芳".into(),
        grids: grids.iter().map(|g| g.to_string()).collect(),
        role: yizhan_protocol::MemberRole::Volunteer,
        expires_days: None,
    };
    let old = station.node.enroll(&request(&["和平里"])).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let new = station
        .node
        .enroll(&request(&["和平里", "幸福路"]))
        .unwrap();
    a.node.join(&new, None).unwrap();
    let refused = a.node.join(&old, None).unwrap_err();
    assert!(matches!(refused, SiteError::OlderToken { .. }), "{refused}");
    a.reopen();
    assert_eq!(a.node.identity().grids, ["和平里", "幸福路"]);
    a.node.join(&new, None).unwrap();
    assert_eq!(a.node.identity().grids, ["和平里", "幸福路"]);
}

/// Counts, with triggers (they fire for every connection, the node's own included), the
/// rows written to a store's `peers` and `members` tables from now on.
fn count_peer_writes(db: &std::path::Path) -> yizhan_tests::Conn {
    let conn = rusqlite_conn(db);
    conn.execute_batch(
        "CREATE TABLE test_writes(tbl TEXT NOT NULL);
         CREATE TRIGGER test_peers_in AFTER INSERT ON peers
             BEGIN INSERT INTO test_writes VALUES ('peers'); END;
         CREATE TRIGGER test_peers_up AFTER UPDATE ON peers
             BEGIN INSERT INTO test_writes VALUES ('peers'); END;
         CREATE TRIGGER test_members_in AFTER INSERT ON members
             BEGIN INSERT INTO test_writes VALUES ('members'); END;
         CREATE TRIGGER test_members_up AFTER UPDATE ON members
             BEGIN INSERT INTO test_writes VALUES ('members'); END;",
    )
    .unwrap();
    conn
}

fn writes(conn: &yizhan_tests::Conn, table: &str) -> i64 {
    conn.query_row(
        "SELECT COUNT(*) FROM test_writes WHERE tbl = ?1",
        [table],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn a_quiet_reconnect_rewrites_nothing_but_the_time_of_the_sync() {
    let mut w = world();
    visit(&mut w.a, "和平里 1 号");
    // The second sync moves the laptop's position past its own visit, which the station's
    // log got during the first.
    for _ in 0..2 {
        assert!(sync_until_ok(&mut w.a, &mut w.station, 1).ok());
    }
    let at_station = count_peer_writes(&w.station.node.home().join("store.db"));
    let at_laptop = count_peer_writes(&w.a.node.home().join("store.db"));
    // Nothing differs: each side notes when it saw the other (one row), and rewrites
    // neither the peer's row at hello nor its certificate. Every such write would wait for
    // the store's write lock, which a station busy storing another laptop's page holds.
    let out = sync_until_ok(&mut w.a, &mut w.station, 1);
    assert!(out.ok(), "{out:?}");
    for (side, conn) in [("station", &at_station), ("laptop", &at_laptop)] {
        let written = (writes(conn, "peers"), writes(conn, "members"));
        assert_eq!(written, (1, 0), "rows written at the {side}");
    }
    let seen: Vec<Option<i64>> = [&at_station, &at_laptop]
        .iter()
        .map(|c| {
            c.query_row("SELECT MAX(last_sync) FROM peers", [], |r| r.get(0))
                .unwrap()
        })
        .collect();
    assert!(seen.iter().all(Option::is_some), "{seen:?}");
    // Something new still moves the positions, and a new visit still arrives.
    visit(&mut w.a, "和平里 2 号");
    assert!(sync_until_ok(&mut w.a, &mut w.station, 1).ok());
    assert_same_as_station(&w.a, &w.station);
}

/// A ticket reassigned away from A reaches A through another volunteer who knows of the
/// move, but A keeps it while its own comment on it is not at the station; the sync that
/// takes the comment there drops it.
#[test]
fn a_record_that_left_a_scope_stays_until_the_station_holds_its_own_changes() {
    let mut w = world();
    let t = w
        .station
        .node
        .open_ticket(&NewTicket {
            title: "楼顶漏水".into(),
            grid: Some("幸福路".into()),
            assignee: Some(w.a.id()),
            ..NewTicket::default()
        })
        .unwrap();
    sync_until_ok(&mut w.a, &mut w.station, 1);
    sync_until_ok(&mut w.c, &mut w.station, 1);
    assert!(w.a.node.show_ticket(t).is_ok());
    w.a.node.comment_ticket(t, "我下午去看").unwrap();
    w.station
        .node
        .update_ticket(
            t,
            &TicketUpdate {
                assignee: Some(w.c.id()),
                ..TicketUpdate::default()
            },
        )
        .unwrap();
    sync_until_ok(&mut w.c, &mut w.station, 1);
    // C tells A of the move; A's comment is not at the station yet.
    assert!(sync_until_ok(&mut w.a, &mut w.c, 1).ok());
    let held = w.a.node.show_ticket(t).expect("A keeps the ticket for now");
    assert_eq!(held.ticket.assignee, Some(w.c.id().to_string()));
    assert_eq!(w.a.node.purged_count().unwrap(), 0);
    assert!(w.a.node.pending_to_station().unwrap() >= 1);
    // The station receives the comment and says so: then the ticket goes.
    assert!(sync_until_ok(&mut w.a, &mut w.station, 1).ok());
    assert!(w.a.node.show_ticket(t).is_err());
    assert_eq!(w.a.node.purged_count().unwrap(), 1);
    assert_eq!(w.a.node.pending_to_station().unwrap(), 0);
    let at_station = w.station.node.show_ticket(t).unwrap();
    assert_eq!(at_station.comments[0].text, "我下午去看");
    // A's later syncs do not bring it back.
    assert!(sync_until_ok(&mut w.a, &mut w.station, 1).ok());
    assert!(w.a.node.show_ticket(t).is_err());
    verify_clean(&[&w.station, &w.a, &w.c]);
}

/// A volunteer that has dropped a record (it left its grid) does not take it back from
/// another volunteer who has not heard of the move: that copy lacks the move. The other
/// volunteer's change reaches the station and the new grid, and it drops the record too.
#[test]
fn a_dropped_record_is_not_taken_back_from_a_volunteer_who_missed_the_move() {
    let mut w = world();
    let t = w
        .station
        .node
        .open_ticket(&NewTicket {
            title: "楼道堆物".into(),
            grid: Some("和平里".into()),
            ..NewTicket::default()
        })
        .unwrap();
    sync_until_ok(&mut w.a, &mut w.station, 1);
    sync_until_ok(&mut w.b, &mut w.station, 1);
    w.station
        .node
        .update_ticket(
            t,
            &TicketUpdate {
                grid: Some("幸福路".into()),
                ..TicketUpdate::default()
            },
        )
        .unwrap();
    sync_until_ok(&mut w.a, &mut w.station, 1);
    assert!(
        w.a.node.show_ticket(t).is_err(),
        "A still holds the moved ticket"
    );
    // B missed the move, comments, and meets A.
    w.b.node.comment_ticket(t, "已清理一半").unwrap();
    assert!(sync_until_ok(&mut w.a, &mut w.b, 1).ok());
    assert!(w.a.node.show_ticket(t).is_err(), "B gave A the ticket back");
    assert!(sync_until_ok(&mut w.a, &mut w.station, 1).ok());
    assert!(w.a.node.show_ticket(t).is_err());
    assert_eq!(w.a.node.pending_to_station().unwrap(), 0);
    // B's comment reaches the station and 幸福路; then B drops the ticket as well.
    assert!(sync_until_ok(&mut w.b, &mut w.station, 1).ok());
    assert!(w.b.node.show_ticket(t).is_err());
    assert!(sync_until_ok(&mut w.c, &mut w.station, 1).ok());
    assert_eq!(
        w.c.node.show_ticket(t).unwrap().comments[0].text,
        "已清理一半"
    );
    verify_clean(&[&w.station, &w.a, &w.b, &w.c]);
}

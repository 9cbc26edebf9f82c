//! Households and the station's policy across nodes, as volunteers and the station live
//! them: two laptops that make one household offline hold one record after they sync;
//! the station's policy reaches every laptop and sets its due list offline; a household
//! moved to another grid leaves the old grid's laptops and reaches the new one's; a store
//! made before households existed upgrades to the same households on every node.
//!
//! Hostile households and policies (hand-made changes) are in `attacks`.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ROOT};
use yizhan_node::DocChanges;
use yizhan_node::model::{Tag, Time};
use yizhan_node::query::HouseholdFilter;
use yizhan_node::records::{self, HouseholdEdit, NewHousehold, NewTicket, NewVisit};
use yizhan_protocol::{DocHeader, DocId, RecordKind, SignedChange, household_nonce, shared_doc_id};
use yizhan_tests::{TestNode, enroll, open_db, sync_until_ok};

const GRID: &str = "和平里";
const OTHER_GRID: &str = "光明街";
const DAY_MS: i64 = 24 * 3600 * 1000;

/// `days` days before these tests started, to the second (what `visit add --at` takes):
/// the same instant each time it is asked.
fn days_ago(days: i64) -> Time {
    static START: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| (Time::now_millis() / 1000) * 1000);
    Time::from_millis(start - days * DAY_MS)
}

/// `t` plus `days` days, as the node prints it.
fn plus_days(t: Time, days: i64) -> String {
    Time::from_millis(t.millis() + days * DAY_MS).to_rfc3339()
}

fn visit_at(n: &mut TestNode, household: &str, at: Time, residents: &[&str]) -> DocId {
    n.node
        .add_visit(&NewVisit {
            household: household.into(),
            visited_at: Some(at),
            residents: residents.iter().map(|r| r.to_string()).collect(),
            ..NewVisit::default()
        })
        .unwrap()
}

fn households(n: &TestNode) -> Vec<records::Household> {
    n.node.list_households(&HouseholdFilter::default()).unwrap()
}

fn assert_verifies(n: &TestNode) {
    let report = n.node.verify().unwrap();
    assert_eq!(report.bad, 0, "{:?}", report.problems);
}

/// Two volunteers of one grid, offline, each log a visit at one address (one typed with
/// full-width digits) and record different residents and tags; after both sync with the
/// station, every node holds one household under that address's id, with both tags, both
/// visits, a conflict on the residents only, and the same place on the due list.
#[test]
fn one_household_made_offline_on_two_laptops_merges() {
    let mut station = TestNode::station("幸福驿站");
    let mut a = TestNode::new("王芳");
    let mut b = TestNode::new("李强");
    enroll(&mut station, &mut a, &[GRID]);
    enroll(&mut station, &mut b, &[GRID]);

    // 王芳 visits first (twelve days ago) and records the household as she finds it.
    let a_visit = visit_at(&mut a, "幸福路12号", days_ago(12), &["张大爷"]);
    let h = households(&a);
    assert_eq!(h.len(), 1);
    let id: DocId = h[0].id.parse().unwrap();
    a.node
        .edit_household(
            id,
            &HouseholdEdit {
                residents: Some(vec!["张大爷".into()]),
                tag: vec![Tag::ElderlyAlone],
                ..HouseholdEdit::default()
            },
        )
        .unwrap();
    // 李强, on his own laptop, adds the same household (full-width digits) with what he
    // was told, and logs his visit three days ago.
    let b_id = b
        .node
        .add_household(&NewHousehold {
            address: "幸福路１２号".into(),
            residents: vec!["张大爷".into(), "张小明".into()],
            tags: vec![Tag::Disabled],
            ..NewHousehold::default()
        })
        .unwrap();
    assert_eq!(
        b_id, id,
        "one address derives one household id on every laptop"
    );
    let b_visit = visit_at(&mut b, "幸福路１２号", days_ago(3), &["张小明"]);
    // Offline, each laptop's due list has the household on its own visit.
    assert_eq!(
        a.node.due(Some(GRID), 30).unwrap().households[0].next_due,
        Some(plus_days(days_ago(12), 30))
    );

    sync_until_ok(&mut a, &mut station, 1);
    sync_until_ok(&mut b, &mut station, 1);
    sync_until_ok(&mut a, &mut station, 1);

    let last = days_ago(3);
    for (who, n) in [("station", &station), ("王芳", &a), ("李强", &b)] {
        let listed = households(n);
        assert_eq!(listed.len(), 1, "{who}: {listed:?}");
        let shown = n.node.show_household(id).unwrap();
        let mut tags = shown.household.tags.clone();
        tags.sort();
        assert_eq!(tags, ["disabled", "elderly-alone"], "{who}");
        assert_eq!(shown.household.grid.as_deref(), Some(GRID), "{who}");
        assert_eq!(shown.household.address, "幸福路12号", "{who}");
        let fields: Vec<&str> = shown.conflicts.iter().map(|c| c.field.as_str()).collect();
        assert!(
            fields.contains(&"residents"),
            "{who}: {:?}",
            shown.conflicts
        );
        for equal in ["address", "grid"] {
            assert!(!fields.contains(&equal), "{who}: {:?}", shown.conflicts);
        }
        let residents = shown
            .conflicts
            .iter()
            .find(|c| c.field == "residents")
            .unwrap();
        let mut values = residents.values.clone();
        values.sort();
        assert_eq!(values, ["张大爷", "张大爷\n张小明"], "{who}");
        let visits: Vec<&str> = shown.visits.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(
            visits,
            [b_visit.to_string(), a_visit.to_string()],
            "{who}: newest first"
        );
        for v in &shown.visits {
            assert_eq!(v.household_id.as_deref(), Some(id.to_string().as_str()));
        }
        assert_eq!(shown.household.last_visit, Some(last.to_rfc3339()), "{who}");
        assert_eq!(listed[0], shown.household, "{who}: list and show agree");
        assert_verifies(n);
    }
    // The laptops show the household once on their due list, thirty days (elderly
    // alone) after the latest visit of either volunteer; not yet due today.
    for (who, n) in [("王芳", &a), ("李强", &b)] {
        let due = n.node.due(Some(GRID), 30).unwrap();
        assert_eq!(due.households.len(), 1, "{who}: {due:?}");
        let d = &due.households[0];
        assert_eq!(d.id, id.to_string());
        assert_eq!(d.last_visit, Some(last.to_rfc3339()), "{who}");
        assert_eq!(d.next_due, Some(plus_days(last, 30)), "{who}");
        assert_eq!(d.days_overdue, Some(-27), "{who}");
        assert!(n.node.due(Some(GRID), 0).unwrap().households.is_empty());
    }
    // Both laptops show the same record: the merge is the same everywhere.
    let shown_a = a.node.show_household(id).unwrap();
    let shown_b = b.node.show_household(id).unwrap();
    assert_eq!(shown_a.household, shown_b.household);
    assert_eq!(shown_a.conflicts, shown_b.conflicts);
}

/// The station shortens the visit interval of elderly people living alone; a laptop that
/// synced once computes its due list with it offline, for households it held before and
/// ones it adds after. A volunteer cannot change the policy, neither through its node nor
/// with a change made by hand.
#[test]
fn the_station_policy_reaches_laptops_and_only_stations_write_it() {
    let mut station = TestNode::station("幸福驿站");
    let mut a = TestNode::new("王芳");
    enroll(&mut station, &mut a, &[GRID]);
    let visited = days_ago(3);
    visit_at(&mut a, "幸福路12号", visited, &[]);
    let id: DocId = households(&a)[0].id.parse().unwrap();
    a.node
        .edit_household(
            id,
            &HouseholdEdit {
                tag: vec![Tag::ElderlyAlone],
                ..HouseholdEdit::default()
            },
        )
        .unwrap();
    sync_until_ok(&mut a, &mut station, 1);
    assert_eq!(
        station.node.due(None, 30).unwrap().households[0].next_due,
        Some(plus_days(visited, 30))
    );

    let policy = station.node.set_visit_every(Tag::ElderlyAlone, 7).unwrap();
    assert_eq!(policy.visit_every["elderly-alone"], 7);
    assert_eq!(policy.visit_every["ordinary"], 182);
    // The station's own due list moves at once.
    assert_eq!(
        station.node.due(None, 7).unwrap().households[0].next_due,
        Some(plus_days(visited, 7))
    );
    sync_until_ok(&mut a, &mut station, 1);
    drop(station);

    // Offline now.
    assert_eq!(a.node.policy().unwrap(), policy);
    let due = a.node.due(Some(GRID), 7).unwrap();
    assert_eq!(due.households.len(), 1, "{due:?}");
    assert_eq!(due.households[0].next_due, Some(plus_days(visited, 7)));
    assert_eq!(due.households[0].days_overdue, Some(-4));
    let shown = a.node.show_household(id).unwrap();
    assert_eq!(shown.household.next_due, Some(plus_days(visited, 7)));
    // A household added after the policy arrived takes it too; an ordinary one does not.
    let today = days_ago(0);
    let lonely = a
        .node
        .add_household(&NewHousehold {
            address: "幸福路14号".into(),
            tags: vec![Tag::ElderlyAlone],
            added_at: Some(today),
            ..NewHousehold::default()
        })
        .unwrap();
    visit_at(&mut a, "幸福路16号", today, &[]);
    let due = a.node.due(Some(GRID), 7).unwrap();
    let listed: Vec<(&str, Option<&str>)> = due
        .households
        .iter()
        .map(|h| (h.address.as_str(), h.next_due.as_deref()))
        .collect();
    assert_eq!(
        listed,
        [
            ("幸福路12号", Some(plus_days(visited, 7).as_str())),
            ("幸福路14号", Some(plus_days(today, 7).as_str())),
        ]
    );
    assert_eq!(due.households[1].id, lonely.to_string());
    let ordinary = a
        .node
        .list_households(&HouseholdFilter {
            tag: Some(Tag::Ordinary),
            ..HouseholdFilter::default()
        })
        .unwrap();
    assert_eq!(ordinary.len(), 1);
    assert_eq!(ordinary[0].next_due, Some(plus_days(today, 182)));
    // It survives a restart.
    a.reopen();
    assert_eq!(a.node.due(Some(GRID), 7).unwrap(), due);

    // The volunteer's node refuses to change the policy.
    let refused = a.node.set_visit_every(Tag::ElderlyAlone, 1).unwrap_err();
    assert!(refused.to_string().contains("only a station"), "{refused}");
    assert!(
        a.node
            .set_ticket_due(yizhan_node::model::Priority::Urgent, 2)
            .is_err()
    );
    assert_eq!(a.node.policy().unwrap(), policy);
    assert_verifies(&a);
}

/// A change to the policy that a volunteer made by hand and signed with its own key is
/// refused by the station, with the reason, and changes nothing there.
#[test]
fn a_policy_change_signed_by_a_volunteer_is_refused_by_the_station() {
    let mut station = TestNode::station("幸福驿站");
    let mut a = TestNode::new("王芳");
    enroll(&mut station, &mut a, &[GRID]);
    station.node.set_visit_every(Tag::ElderlyAlone, 7).unwrap();
    sync_until_ok(&mut a, &mut station, 1);
    let policy_id = policy_doc(&station);
    let stored = a.node.doc_changes(policy_id).unwrap();
    let mut am = AutoCommit::new();
    for c in &stored.changes {
        am.apply_changes([automerge::Change::try_from(c.bytes.as_slice()).unwrap()])
            .unwrap();
    }
    let mut am = am.with_actor(ActorId::from(a.id().as_bytes().as_slice()));
    am.put(ROOT, "visit_every:elderly-alone", "365").unwrap();
    am.commit_with(CommitOptions::default().with_time(Time::now_millis()));
    let change = am.get_last_local_change().unwrap().clone();
    let env = SignedChange::sign(
        &a.node.device_key(),
        a.node.identity().site_id,
        policy_id,
        &change,
    );
    let before = station.node.policy().unwrap();
    let heads = station.node.doc_heads().unwrap();
    let report = station
        .node
        .ingest(vec![DocChanges {
            header: stored.header,
            changes: vec![env],
        }])
        .unwrap();
    assert_eq!(report.accepted, 0);
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    assert_eq!(
        report.rejected[0].reason,
        "only a station may write the policy"
    );
    assert_eq!(station.node.policy().unwrap(), before);
    assert_eq!(before.visit_every["elderly-alone"], 7);
    assert_eq!(station.node.doc_heads().unwrap(), heads);
    assert_verifies(&station);
}

/// The id of the policy document `n` holds.
fn policy_doc(n: &TestNode) -> DocId {
    let db = open_db(&n.node.home().join("store.db"));
    let raw: Vec<u8> = db
        .query_row("SELECT doc_id FROM records WHERE kind = 4", [], |r| {
            r.get(0)
        })
        .unwrap();
    DocId::from_slice(&raw).unwrap()
}

/// The station moves a household to another grid: the old grid's laptop drops it at its
/// next sync, the new grid's laptop gets it, and the visits logged there stay in the old
/// grid with the laptop that logged them.
#[test]
fn a_household_moved_to_another_grid_follows_its_grid() {
    let mut station = TestNode::station("幸福驿站");
    let mut a = TestNode::new("王芳");
    let mut b = TestNode::new("李强");
    enroll(&mut station, &mut a, &[GRID]);
    enroll(&mut station, &mut b, &[OTHER_GRID]);
    let visit = visit_at(&mut a, "幸福路12号", days_ago(5), &["张大爷"]);
    let id: DocId = households(&a)[0].id.parse().unwrap();
    sync_until_ok(&mut a, &mut station, 1);
    sync_until_ok(&mut b, &mut station, 1);
    assert!(households(&b).is_empty(), "another grid's household");

    // A volunteer may not move it out of its grids.
    let refused = a.node.edit_household(
        id,
        &HouseholdEdit {
            grid: Some(OTHER_GRID.into()),
            ..HouseholdEdit::default()
        },
    );
    assert!(refused.is_err());
    station
        .node
        .edit_household(
            id,
            &HouseholdEdit {
                grid: Some(OTHER_GRID.into()),
                ..HouseholdEdit::default()
            },
        )
        .unwrap();

    sync_until_ok(&mut a, &mut station, 1);
    assert!(households(&a).is_empty(), "{:?}", households(&a));
    assert!(a.node.show_household(id).is_err());
    assert!(a.node.due(None, 365).unwrap().households.is_empty());
    // The visit stays with the laptop that logged it, in its grid, still naming the
    // household.
    let kept = a.node.show_visit(visit).unwrap().visit;
    assert_eq!(kept.grid.as_deref(), Some(GRID));
    assert_eq!(kept.household_id, Some(id.to_string()));
    assert_eq!(a.node.list_visits(&Default::default()).unwrap().len(), 1);
    assert_verifies(&a);
    // Another sync does not bring it back.
    sync_until_ok(&mut a, &mut station, 1);
    assert!(households(&a).is_empty());

    sync_until_ok(&mut b, &mut station, 1);
    let on_b = households(&b);
    assert_eq!(on_b.len(), 1, "{on_b:?}");
    assert_eq!(on_b[0].id, id.to_string());
    assert_eq!(on_b[0].grid.as_deref(), Some(OTHER_GRID));
    assert!(b.node.show_visit(visit).is_err(), "the old grid's visit");
    assert!(b.node.show_household(id).unwrap().visits.is_empty());
    assert_eq!(
        b.node.due(Some(OTHER_GRID), 365).unwrap().households.len(),
        1
    );
    assert_verifies(&b);

    // The station holds both, the visit still in the old grid and listed with the
    // household.
    let shown = station.node.show_household(id).unwrap();
    assert_eq!(shown.household.grid.as_deref(), Some(OTHER_GRID));
    assert_eq!(shown.visits.len(), 1);
    assert_eq!(shown.visits[0].grid.as_deref(), Some(GRID));
    assert_verifies(&station);
}

// ---------------------------------------------------------------------------------------
// Upgrading a store made before households existed
// ---------------------------------------------------------------------------------------

/// A visit as nodes wrote them before households existed (no `household_id`), signed by
/// `n`'s key and stored on `n`.
fn old_visit(n: &mut TestNode, household: &str, grid: &str, at: Time) -> DocId {
    let (header, am) = old_record(n, RecordKind::Visit, at, |am, id| {
        let v = NewVisit {
            household: household.into(),
            grid: Some(grid.into()),
            ..NewVisit::default()
        };
        records::write_new_visit(am, id, &v, at).unwrap();
    });
    store_own(n, header, am)
}

/// A ticket as nodes wrote them before households existed (no `household_id`, `due`,
/// `channel`).
fn old_ticket(n: &mut TestNode, title: &str, household: &str, grid: &str, at: Time) -> DocId {
    let (header, am) = old_record(n, RecordKind::Ticket, at, |am, id| {
        let t = NewTicket {
            title: title.into(),
            household: Some(household.into()),
            grid: Some(grid.into()),
            ..NewTicket::default()
        };
        records::write_new_ticket(am, id, &t, at).unwrap();
    });
    store_own(n, header, am)
}

fn old_record(
    n: &TestNode,
    kind: RecordKind,
    at: Time,
    write: impl FnOnce(&mut AutoCommit, DocId),
) -> (DocHeader, AutoCommit) {
    let header = DocHeader {
        kind,
        author: n.id(),
        nonce: rand::random(),
    };
    let mut am = AutoCommit::new().with_actor(ActorId::from(n.id().as_bytes().as_slice()));
    write(&mut am, header.doc_id());
    am.commit_with(CommitOptions::default().with_time(at.millis()));
    (header, am)
}

fn store_own(n: &mut TestNode, header: DocHeader, mut am: AutoCommit) -> DocId {
    let change = am.get_last_local_change().unwrap().clone();
    let env = SignedChange::sign(
        &n.node.device_key(),
        n.node.identity().site_id,
        header.doc_id(),
        &change,
    );
    let report = n
        .node
        .ingest(vec![DocChanges {
            header,
            changes: vec![env],
        }])
        .unwrap();
    assert_eq!(report.accepted, 1, "{report:?}");
    header.doc_id()
}

/// Puts `n`'s store back as it was before households: no household documents, the
/// columns and indexes of the last migration gone, the records' summaries without a
/// household id, and the node's records not yet linked. Then opens it as the new version
/// does.
fn downgrade_and_reopen(n: &mut TestNode) {
    let db = open_db(&n.node.home().join("store.db"));
    let households: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM records WHERE kind IN (3, 4)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(households, 0, "the old records made no household");
    db.execute_batch(
        "DROP INDEX records_by_household; DROP INDEX records_by_due;
         ALTER TABLE records DROP COLUMN household; ALTER TABLE records DROP COLUMN due_ms;
         ALTER TABLE records DROP COLUMN last_ms; ALTER TABLE records DROP COLUMN every_days;
         ALTER TABLE records DROP COLUMN tags; ALTER TABLE records DROP COLUMN search;
         UPDATE records SET summary = json_remove(summary, '$.household_id', '$.due',
             '$.overdue', '$.channel', '$.resolved_at', '$.satisfaction', '$.rated_at');
         DELETE FROM meta WHERE key = 'households_linked';
         PRAGMA user_version = 10;",
    )
    .unwrap();
    drop(db);
    n.reopen();
    let version: i64 = open_db(&n.node.home().join("store.db"))
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 14);
}

/// A station and a laptop hold visits and a ticket made before households existed, at
/// addresses typed two ways. Each upgrades on its own: every visit and ticket is linked to
/// the household its grid and address derive, the households are made, the stores
/// verify; and after they sync they hold the same households, without conflicts.
#[test]
fn stores_made_before_households_upgrade_apart_and_agree() {
    let mut station = TestNode::station("幸福驿站");
    let mut a = TestNode::new("王芳");
    enroll(&mut station, &mut a, &[GRID]);
    let v1 = old_visit(&mut a, "幸福路 12号", GRID, days_ago(40));
    let v2 = old_visit(&mut a, "幸福路 13号", GRID, days_ago(20));
    let v3 = old_visit(&mut station, "幸福路　１２号", GRID, days_ago(10));
    let v4 = old_visit(&mut station, "光明街 1号", OTHER_GRID, days_ago(8));
    let t1 = old_ticket(
        &mut station,
        "楼道灯坏了",
        "幸福路 13号 ",
        GRID,
        days_ago(9),
    );
    sync_until_ok(&mut a, &mut station, 1);
    assert_eq!(a.node.list_visits(&Default::default()).unwrap().len(), 3);

    downgrade_and_reopen(&mut a);
    downgrade_and_reopen(&mut station);

    let derived = |n: &TestNode, grid: &str, address: &str| {
        let site = n.node.identity().site_id;
        shared_doc_id(
            RecordKind::Household,
            &household_nonce(site.as_ref(), grid, address),
        )
    };
    let h12 = derived(&a, GRID, "幸福路 12号");
    let h13 = derived(&a, GRID, "幸福路 13号");
    let h_other = derived(&a, OTHER_GRID, "光明街 1号");
    assert_eq!(derived(&station, GRID, "幸福路　１２号"), h12);
    let expect = [(v1, h12), (v2, h13), (v3, h12)];
    for (who, n) in [("王芳", &a), ("station", &station)] {
        for (v, h) in expect {
            let shown = n.node.show_visit(v).unwrap().visit;
            assert_eq!(shown.household_id, Some(h.to_string()), "{who}: visit {v}");
        }
        for v in n.node.list_visits(&Default::default()).unwrap() {
            assert!(v.household_id.is_some(), "{who}: {v:?}");
        }
        let t = n.node.show_ticket(t1).unwrap().ticket;
        assert_eq!(t.household_id, Some(h13.to_string()), "{who}");
        assert_verifies(n);
    }
    // Each made the households of its grids, with normalised addresses; the laptop not
    // the other grid's.
    let ids = |n: &TestNode| {
        let mut ids: Vec<(String, String, Option<String>)> = households(n)
            .into_iter()
            .map(|h| (h.id, h.address, h.grid))
            .collect();
        ids.sort();
        ids
    };
    let mut on_a_expected = vec![
        (
            h12.to_string(),
            "幸福路 12号".to_string(),
            Some(GRID.to_string()),
        ),
        (
            h13.to_string(),
            "幸福路 13号".to_string(),
            Some(GRID.to_string()),
        ),
    ];
    on_a_expected.sort();
    assert_eq!(ids(&a), on_a_expected);
    let mut on_station_expected = on_a_expected.clone();
    on_station_expected.push((
        h_other.to_string(),
        "光明街 1号".to_string(),
        Some(OTHER_GRID.to_string()),
    ));
    on_station_expected.sort();
    assert_eq!(ids(&station), on_station_expected);
    // The laptop's household holds the visits it has: its due list counts from them.
    let shown = a.node.show_household(h12).unwrap();
    assert_eq!(shown.visits.len(), 2);
    assert_eq!(shown.household.last_visit, Some(days_ago(10).to_rfc3339()));
    assert_eq!(shown.household.next_due, Some(plus_days(days_ago(10), 182)));
    assert_eq!(
        station.node.show_household(h_other).unwrap().visits[0].id,
        v4.to_string()
    );

    // Opening again makes nothing more.
    let heads = a.node.doc_heads().unwrap();
    a.reopen();
    assert_eq!(a.node.doc_heads().unwrap(), heads);

    sync_until_ok(&mut a, &mut station, 1);
    sync_until_ok(&mut a, &mut station, 1);
    assert_eq!(ids(&a), on_a_expected);
    assert_eq!(ids(&station), on_station_expected);
    for (who, n) in [("王芳", &a), ("station", &station)] {
        for h in [h12, h13] {
            let shown = n.node.show_household(h).unwrap();
            assert!(shown.conflicts.is_empty(), "{who}: {:?}", shown.conflicts);
            assert_eq!(shown.history.len(), 2, "{who}: both makings are kept");
        }
        let shown = n.node.show_household(h13).unwrap();
        assert_eq!(shown.visits.len(), 1, "{who}");
        assert_eq!(shown.tickets.len(), 1, "{who}");
        assert_verifies(n);
    }
    assert_eq!(
        a.node.show_household(h12).unwrap().household,
        station.node.show_household(h12).unwrap().household
    );
}

/// The laptop of the old grid, after it dropped a moved household, meets the family again
/// at the old address: the visit names the household where it lives now, the laptop does
/// not start a copy of its own in the old grid, and every node agrees afterwards.
#[test]
fn a_visit_at_a_moved_households_old_address_names_it_where_it_is() {
    let mut station = TestNode::station("幸福驿站");
    let mut a = TestNode::new("王芳");
    enroll(&mut station, &mut a, &[GRID]);
    visit_at(&mut a, "幸福路12号", days_ago(5), &[]);
    let id: DocId = households(&a)[0].id.parse().unwrap();
    sync_until_ok(&mut a, &mut station, 1);
    station
        .node
        .edit_household(
            id,
            &HouseholdEdit {
                grid: Some(OTHER_GRID.into()),
                ..HouseholdEdit::default()
            },
        )
        .unwrap();
    sync_until_ok(&mut a, &mut station, 1);
    assert!(households(&a).is_empty());

    let again = visit_at(&mut a, "幸福路１２号", days_ago(1), &[]);
    let logged = a.node.show_visit(again).unwrap().visit;
    assert_eq!(logged.household_id, Some(id.to_string()));
    assert_eq!(logged.grid.as_deref(), Some(GRID));
    assert!(households(&a).is_empty(), "{:?}", households(&a));
    let refused = a
        .node
        .add_household(&NewHousehold {
            address: "幸福路12号".into(),
            ..NewHousehold::default()
        })
        .unwrap_err();
    assert!(refused.to_string().contains("moved out"), "{refused}");

    let out = sync_until_ok(&mut a, &mut station, 1);
    assert_eq!(out.b.as_ref().unwrap().rejected, 0, "{out:?}");
    assert_eq!(a.node.pending_to_station().unwrap(), 0);
    assert!(station.node.misbehaviour().unwrap().is_empty());
    let shown = station.node.show_household(id).unwrap();
    assert_eq!(shown.household.grid.as_deref(), Some(OTHER_GRID));
    assert!(shown.conflicts.is_empty(), "{:?}", shown.conflicts);
    assert_eq!(shown.visits.len(), 2);
    assert_eq!(shown.household.last_visit, Some(days_ago(1).to_rfc3339()));
    sync_until_ok(&mut a, &mut station, 1);
    assert!(households(&a).is_empty());
    assert_verifies(&a);
    assert_verifies(&station);
}

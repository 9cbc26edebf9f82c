//! A new document made by one simple change is read straight from the change's operations
//! (`Root::of_first_change`), not by applying it with Automerge: ingest does this for most
//! new records. These tests hold that reading to Automerge's: the same root map, for the
//! records real nodes make and for random changes, and the same stored index rows after
//! an ingest (which `verify` recomputes with Automerge).

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, Change, ObjId, ObjType, ROOT, ReadDoc, ScalarValue};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use yizhan_node::records::{NewTicket, NewVisit, Root};
use yizhan_tests::TestNode;

/// What Automerge makes of `change` on an empty document.
fn applied(change: &Change) -> AutoCommit {
    let mut doc = AutoCommit::new();
    doc.apply_changes([change.clone()])
        .expect("Automerge applies it");
    doc
}

#[test]
fn records_that_nodes_make_are_read_as_automerge_reads_them() {
    let mut a = TestNode::new("王芳");
    let tickets = a
        .node
        .open_tickets(
            &(0..40)
                .map(|i| NewTicket {
                    title: format!("楼道灯 {i}"),
                    household: Some(format!("和平里 {i} 号")),
                    note: (i % 2 == 0).then(|| "需复查".to_string()),
                    ..NewTicket::default()
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let visits = a
        .node
        .add_visits(
            &(0..60)
                .map(|i| NewVisit {
                    household: format!("幸福路 {i} 号"),
                    residents: (0..i % 4).map(|r| format!("居民 {r}")).collect(),
                    note: (i % 3 == 0).then(|| "独居老人".to_string()),
                    tickets: tickets[..i % 3].to_vec(),
                    ..NewVisit::default()
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let mut b = TestNode::new("李强");
    let mut batch = Vec::new();
    for id in tickets.iter().chain(&visits) {
        let changes = a.node.doc_changes(*id).unwrap();
        let [env] = changes.changes.as_slice() else {
            panic!("a new record is one change");
        };
        let change = Change::try_from(env.bytes.as_slice()).unwrap();
        let fast = Root::of_first_change(&change).expect("a record a node makes is simple");
        assert_eq!(fast, Root::read(&applied(&change)), "{id}");
        batch.push(changes);
    }
    // Ingested in one batch (the parallel path, which reads new records this way), the
    // station's index rows are those Automerge gives: `verify` recomputes them.
    let report = b.node.ingest(batch).unwrap();
    assert_eq!(report.accepted, 100, "{:?}", report.rejected);
    let checked = b.node.verify().unwrap();
    assert_eq!(checked.bad, 0, "{checked:?}");
    let json = |n: &TestNode| {
        let visits = n.node.list_visits(&Default::default()).unwrap();
        let tickets = n.node.list_tickets(&Default::default()).unwrap();
        serde_json::to_string(&(visits, tickets)).unwrap()
    };
    assert_eq!(json(&a), json(&b));
}

/// Objects made so far in a random change: (id, type, length for a list).
type Made = Vec<(ObjId, ObjType)>;

fn random_scalar(rng: &mut StdRng) -> ScalarValue {
    match rng.random_range(0..9) {
        0 => ScalarValue::Int(rng.random_range(-5..5)),
        1 => ScalarValue::Uint(rng.random_range(0..5)),
        2 => ScalarValue::F64(f64::from(rng.random_range(-4i32..4)) / 2.0),
        3 => ScalarValue::Boolean(rng.random()),
        4 => ScalarValue::Null,
        5 => ScalarValue::Timestamp(rng.random_range(0..1_000_000)),
        6 => ScalarValue::Counter(rng.random_range(0..5i64).into()),
        7 => ScalarValue::Bytes(vec![1, 2, 3]),
        _ => ScalarValue::Str(format!("值{}", rng.random_range(0..4)).into()),
    }
}

/// One random operation on `doc`; errors (an index past the end, a bad key) are skipped.
fn random_op(rng: &mut StdRng, doc: &mut AutoCommit, made: &mut Made, keys: &[&str]) {
    let key = keys[rng.random_range(0..keys.len())];
    let target = (!made.is_empty()).then(|| made[rng.random_range(0..made.len())].clone());
    match rng.random_range(0..10) {
        0..=3 => {
            let _ = doc.put(ROOT, key, random_scalar(rng));
        }
        4 => {
            let kind = [ObjType::List, ObjType::Map, ObjType::Text][rng.random_range(0..3)];
            if let Ok(id) = doc.put_object(ROOT, key, kind) {
                made.push((id, kind));
            }
        }
        5 | 6 => match target {
            Some((list, ObjType::List)) => {
                let len = doc.length(&list);
                // Mostly at the end, sometimes anywhere.
                let at = if rng.random_range(0..4) == 0 {
                    rng.random_range(0..=len)
                } else {
                    len
                };
                let _ = doc.insert(&list, at, random_scalar(rng));
            }
            Some((map, ObjType::Map)) => {
                let _ = doc.put(&map, key, random_scalar(rng));
            }
            Some((text, _)) => {
                let _ = doc.splice_text(&text, 0, 0, "字");
            }
            None => {}
        },
        7 => {
            let _ = doc.delete(ROOT, key);
        }
        8 => {
            let _ = doc.increment(ROOT, key, 1);
        }
        _ => {
            if let Some((obj, kind)) = target {
                let made_in = match kind {
                    ObjType::List => {
                        let len = doc.length(&obj);
                        doc.insert_object(&obj, len, ObjType::Map)
                    }
                    _ => doc.put_object(&obj, key, ObjType::List),
                };
                if let Ok(id) = made_in {
                    let kind = doc.object_type(&id).unwrap();
                    made.push((id, kind));
                }
            }
        }
    }
}

#[test]
fn random_first_changes_are_read_as_automerge_reads_them_or_left_to_it() {
    let mut rng = StdRng::seed_from_u64(0x0066_6972_7374);
    let (mut fast, mut slow) = (0, 0);
    for case in 0..3000 {
        let mut doc = AutoCommit::new().with_actor(ActorId::from(rng.random::<[u8; 32]>()));
        let mut made = Made::new();
        let keys: &[&str] = if case % 2 == 0 {
            &["household", "grid", "note", "residents", "tickets", "状态"]
        } else {
            &["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"]
        };
        for _ in 0..rng.random_range(1..12) {
            random_op(&mut rng, &mut doc, &mut made, keys);
        }
        // Sometimes a second change: its document is not one change.
        let mut change = doc.get_last_local_change();
        if rng.random_range(0..8) == 0 {
            doc.commit();
            random_op(&mut rng, &mut doc, &mut made, keys);
            change = doc.get_last_local_change();
        }
        let Some(change) = change else { continue };
        match Root::of_first_change(&change) {
            Some(root) => {
                fast += 1;
                let full = applied(&change);
                assert_eq!(
                    root,
                    Root::read(&full),
                    "case {case}: {:?}",
                    change.decode()
                );
                assert!(yizhan_node::ingest::rules::nesting(&full).is_ok());
            }
            None => slow += 1,
        }
    }
    // Both ways are exercised.
    assert!(fast > 300 && slow > 300, "fast {fast}, slow {slow}");
}

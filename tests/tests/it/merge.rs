//! Two stores edit one ticket concurrently; after exchanging their signed changes both
//! hold the same document, and the field edited both ways shows under `conflicts`.

use yizhan_node::model::Status;
use yizhan_node::records::{NewTicket, TicketUpdate};
use yizhan_tests::TestNode;

#[test]
fn concurrent_ticket_edits_merge_and_show_conflicts() {
    let mut a = TestNode::new("王芳");
    let mut b = TestNode::new("李强");
    let id = a
        .node
        .open_ticket(&NewTicket {
            title: "楼道灯坏了".into(),
            household: Some("和平里 3 号楼".into()),
            ..NewTicket::default()
        })
        .unwrap();
    assert_eq!(a.send_doc(&mut b, id), 1);

    // Offline, both edit the status; A also edits the title, B comments.
    a.node
        .update_ticket(
            id,
            &TicketUpdate {
                status: Some(Status::Resolved),
                title: Some("楼道灯坏了（3 单元）".into()),
                ..TicketUpdate::default()
            },
        )
        .unwrap();
    b.node
        .update_ticket(
            id,
            &TicketUpdate {
                status: Some(Status::InProgress),
                ..TicketUpdate::default()
            },
        )
        .unwrap();
    b.node.comment_ticket(id, "已报修").unwrap();

    assert_eq!(a.send_doc(&mut b, id), 1);
    assert_eq!(b.send_doc(&mut a, id), 2);
    // Sending again is a no-op.
    assert_eq!(a.send_doc(&mut b, id), 0);

    let on_a = a.node.show_ticket(id).unwrap();
    let on_b = b.node.show_ticket(id).unwrap();
    for shown in [&on_a, &on_b] {
        assert_eq!(shown.ticket.title, "楼道灯坏了（3 单元）");
        assert_eq!(shown.comments.len(), 1);
        assert_eq!(shown.comments[0].text, "已报修");
        assert_eq!(shown.conflicts.len(), 1, "{:?}", shown.conflicts);
        assert_eq!(shown.conflicts[0].field, "status");
        let mut values = shown.conflicts[0].values.clone();
        values.sort();
        assert_eq!(values, vec!["in_progress", "resolved"]);
        assert_eq!(shown.history.len(), 4);
    }
    // Both nodes show the same winner, and the same list row.
    assert_eq!(on_a.ticket, on_b.ticket);
    assert_eq!(on_a.conflicts, on_b.conflicts);
    assert_eq!(a.node.verify().unwrap().bad, 0);
    assert_eq!(b.node.verify().unwrap().bad, 0);
}

/// One batch holds a duplicated envelope, an altered change and a forged signature beside
/// valid changes: the valid ones merge, the bad ones are rejected, the duplicate is a no-op.
#[test]
fn bad_changes_in_a_batch_do_not_stop_the_good_ones() {
    use yizhan_node::records::NewVisit;
    let mut a = TestNode::new("王芳");
    let mut b = TestNode::new("李强");
    let ids: Vec<_> = (0..3)
        .map(|i| {
            a.node
                .add_visit(&NewVisit {
                    household: format!("幸福路 {i} 号"),
                    ..NewVisit::default()
                })
                .unwrap()
        })
        .collect();
    let mut batch: Vec<_> = ids
        .iter()
        .map(|id| a.node.doc_changes(*id).unwrap())
        .collect();
    // Duplicate the first envelope inside its own document's list.
    let dup = batch[0].changes[0].clone();
    batch[0].changes.push(dup);
    // Alter the second visit's change bytes, and forge the third's signature.
    let last = batch[1].changes[0].bytes.len() - 1;
    batch[1].changes[0].bytes[last] ^= 0x01;
    batch[2].changes[0].signature[5] ^= 0x01;

    let report = b.node.ingest(batch).unwrap();
    assert_eq!(report.accepted, 1);
    assert_eq!(report.duplicate, 1);
    assert_eq!(report.rejected.len(), 2, "{:?}", report.rejected);
    let listed = b.node.list_visits(&Default::default()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].household, "幸福路 0 号");
    assert_eq!(b.node.verify().unwrap().bad, 0);
}

/// A member may sign one Automerge change for two documents of its own (the bytes do not
/// name their document, unless they write the record's `id`, which the record model ties
/// to one document). Both are stored, each with its own signature, and nothing else in the
/// batch is lost: a change is unique within its document, not across documents.
#[test]
fn one_change_signed_for_two_documents_is_stored_for_both() {
    use automerge::transaction::Transactable;
    use yizhan_node::DocChanges;
    use yizhan_protocol::{DocHeader, RecordKind, SignedChange};

    let a = TestNode::new("王芳");
    let mut b = TestNode::new("李强");
    let mut am = automerge::AutoCommit::new()
        .with_actor(automerge::ActorId::from(a.id().as_bytes().as_slice()));
    am.put(automerge::ROOT, "household", "幸福路 1 号").unwrap();
    am.commit();
    let change = am.get_last_local_change().unwrap().clone();
    let doc = |nonce: [u8; 16]| {
        let header = DocHeader {
            kind: RecordKind::Visit,
            author: a.id(),
            nonce,
        };
        let env = SignedChange::sign(&a.node.device_key(), None, header.doc_id(), &change);
        DocChanges {
            header,
            changes: vec![env],
        }
    };
    let (original, copy) = (doc([1; 16]), doc([7; 16]));
    let (first, second) = (original.header.doc_id(), copy.header.doc_id());
    let report = b.node.ingest(vec![original, copy]).unwrap();
    assert_eq!(report.accepted, 2, "{:?}", report.rejected);
    assert!(report.rejected.is_empty());
    for id in [first, second] {
        assert_eq!(b.node.doc_changes(id).unwrap().changes.len(), 1, "{id}");
    }
    assert_eq!(b.node.verify().unwrap().bad, 0);
    // Sent again, both are known.
    let again: Vec<DocChanges> = [first, second]
        .iter()
        .map(|id| b.node.doc_changes(*id).unwrap())
        .collect();
    assert_eq!(b.node.ingest(again).unwrap().duplicate, 2);
}

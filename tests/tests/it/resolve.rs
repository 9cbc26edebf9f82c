//! Records are named by any prefix of their id of at least 6 hex characters: the prefix
//! look-up (a range over the stored document ids) finds exactly the records whose id starts
//! with it, of the kind asked for.

use yizhan_node::ResolveError;
use yizhan_node::records::{NewTicket, NewVisit};
use yizhan_protocol::RecordKind;
use yizhan_tests::TestNode;

#[test]
fn every_prefix_finds_exactly_the_records_it_starts() {
    let mut t = TestNode::new("王芳");
    let visits = t
        .node
        .add_visits(
            &(0..300)
                .map(|i| NewVisit {
                    household: format!("和平里 {i} 号"),
                    ..NewVisit::default()
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let tickets = t
        .node
        .open_tickets(
            &(0..300)
                .map(|i| NewTicket {
                    title: format!("楼道灯 {i}"),
                    ..NewTicket::default()
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let all: Vec<(RecordKind, String)> = visits
        .iter()
        .map(|v| (RecordKind::Visit, v.to_string()))
        .chain(tickets.iter().map(|t| (RecordKind::Ticket, t.to_string())))
        .collect();
    for (kind, id) in &all {
        for len in [6, 7, 8, 15, 16, 31, 32] {
            let prefix = &id[..len];
            let matching: Vec<&String> = all
                .iter()
                .filter(|(k, other)| k == kind && other.starts_with(prefix))
                .map(|(_, other)| other)
                .collect();
            match t.node.resolve(*kind, &prefix.to_uppercase()) {
                Ok(found) => assert_eq!(vec![&found.to_string()], matching, "{prefix}"),
                Err(ResolveError::Ambiguous(_, n, _)) => assert_eq!(n, matching.len(), "{prefix}"),
                Err(e) => panic!("{prefix}: {e}"),
            }
        }
        // The same id asked for as the other kind is not found.
        let other = match kind {
            RecordKind::Visit => RecordKind::Ticket,
            RecordKind::Ticket
            | RecordKind::Household
            | RecordKind::Policy
            | RecordKind::Notice => RecordKind::Visit,
        };
        assert!(matches!(
            t.node.resolve(other, id),
            Err(ResolveError::NotFound(..))
        ));
    }
    // The ends of the id space, and bad prefixes.
    for edge in ["000000", "ffffff", &"f".repeat(32), &"0".repeat(32)] {
        let expected = all
            .iter()
            .filter(|(k, id)| *k == RecordKind::Visit && id.starts_with(edge))
            .count();
        match t.node.resolve(RecordKind::Visit, edge) {
            Ok(_) => assert_eq!(expected, 1),
            Err(ResolveError::NotFound(..)) => assert_eq!(expected, 0),
            Err(ResolveError::Ambiguous(_, n, _)) => assert_eq!(n, expected),
            Err(e) => panic!("{edge}: {e}"),
        }
    }
    assert!(matches!(
        t.node.resolve(RecordKind::Visit, "abcde"),
        Err(ResolveError::TooShort(_))
    ));
    assert!(matches!(
        t.node.resolve(RecordKind::Visit, "abcdefg"),
        Err(ResolveError::Malformed(..))
    ));
    assert!(matches!(
        t.node.resolve(RecordKind::Visit, &"a".repeat(33)),
        Err(ResolveError::Malformed(..))
    ));
}

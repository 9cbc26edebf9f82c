//! Multi-node tests for yizhan, and the helpers they share.
//!
//! The tests in `tests/tests/` run several nodes in one process, each in its own temporary
//! home, and move signed changes between them the way sync will: by handing one node's
//! stored envelopes to another node's `ingest`.

use tempfile::TempDir;
use yizhan_node::Node;
use yizhan_node::home::{InitConfig, InitSeed};
use yizhan_protocol::DocId;

/// A node in a temporary home that is removed when the node is dropped.
pub struct TestNode {
    /// The node.
    pub node: Node,
    _dir: TempDir,
}

impl TestNode {
    /// A new unenrolled node called `name`.
    pub fn new(name: &str) -> TestNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let node = Node::init(
            &dir.path().join("home"),
            &InitConfig {
                name: name.to_string(),
                station: false,
            },
            InitSeed::random(),
        )
        .expect("init");
        TestNode { node, _dir: dir }
    }

    /// Hands every stored change of `doc` on this node to `other`; returns how many
    /// `other` newly accepted.
    pub fn send_doc(&self, other: &mut TestNode, doc: DocId) -> usize {
        let changes = self.node.doc_changes(doc).expect("read changes");
        let report = other.node.ingest(vec![changes]).expect("ingest");
        assert!(
            report.rejected.is_empty(),
            "rejected: {:?}",
            report.rejected
        );
        report.accepted
    }
}

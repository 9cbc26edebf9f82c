//! The `ingest` target: a batch of signed changes handed to a real station's
//! `Node::ingest`, and the byte layout of its inputs.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tempfile::TempDir;
use yizhan_node::Node;
use yizhan_node::members::EnrollRequest;
use yizhan_node::{TicketFilter, VisitFilter};
use yizhan_protocol::envelope::{decode_change, signing_message};
use yizhan_protocol::{DeviceKey, DocHeader, DocId, MemberRole, RecordKind, SignedChange};

use super::common::{Input, init_node, install_panic_hook, keys, site};
use super::shape::{RUN_COUNTS, Runs, chunk_hash, count_agrees, shape_change};

/// A station's store with volunteer A enrolled and volunteer B enrolled then revoked, made
/// once per process; each input gets a fresh copy.
struct Template {
    _dir: TempDir,
    home: PathBuf,
}

fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = scratch_dir();
        let home = dir.path().join("station");
        let mut station = init_node(&home, "驿站", true, keys::ROOT);
        for (seed, name) in [(keys::VOLUNTEER, "王芳"), (keys::REVOKED, "李强")] {
            station
                .enroll(&EnrollRequest {
                    device: DeviceKey::from_seed(seed).device_id(),
                    name: name.into(),
                    grids: vec!["和平里".into()],
                    role: MemberRole::Volunteer,
                    expires_days: None,
                })
                .expect("enroll");
        }
        station
            .revoke(DeviceKey::from_seed(keys::REVOKED).device_id(), "left")
            .expect("revoke");
        drop(station);
        Template { _dir: dir, home }
    })
}

/// A temporary directory, in memory when the machine has /dev/shm.
fn scratch_dir() -> TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("temp dir")
}
fn copy_home(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("home dir");
    for entry in std::fs::read_dir(from).expect("read template") {
        let entry = entry.expect("template entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy template");
    }
}

/// One document of an ingest input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseDoc {
    /// The header's kind byte (1 visit, 2 ticket, 3 household, 4 policy, 5 notice; anything
    /// else is read as `kind % 2 + 1`).
    pub kind: u8,
    /// The header's author: a test key by `author % 4`.
    pub author: u8,
    /// The header's nonce.
    pub nonce: [u8; 16],
    /// Non-zero: the changes claim another document than the header's.
    pub misfiled: u8,
    /// The changes.
    pub changes: Vec<CaseChange>,
}

/// One change of an ingest input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseChange {
    /// Who signs: `0..=3` a test key; otherwise the key of the change's actor when it is a
    /// test key (the lawful case), else volunteer A.
    pub signer: u8,
    /// Bits 0-1: `0` signs for the station's site, `1` with no site, `2` and `3` leave the
    /// signature zero. Bit 2 leaves the chunk's framing as it came (else it is repaired,
    /// [`shape_change`]); bits 3-5 pick a count of `RUN_COUNTS` (0: no rewrite) that
    /// bits 6-7 write into the first run of every column, the action column, every other
    /// column, or the first column.
    pub how: u8,
    /// The raw Automerge change.
    pub bytes: Vec<u8>,
}

/// Encodes an ingest input: `ndocs`, then per document `kind author nonce[16] misfiled
/// nchanges`, then per change `signer how len:u16be bytes`.
pub fn encode_ingest(docs: &[CaseDoc]) -> Vec<u8> {
    let mut out = vec![docs.len() as u8];
    for d in docs {
        out.extend_from_slice(&[d.kind, d.author]);
        out.extend_from_slice(&d.nonce);
        out.extend_from_slice(&[d.misfiled, d.changes.len() as u8]);
        for c in &d.changes {
            out.extend_from_slice(&[c.signer, c.how]);
            out.extend_from_slice(&(c.bytes.len() as u16).to_be_bytes());
            out.extend_from_slice(&c.bytes);
        }
    }
    out
}

/// Decodes an ingest input (see [`encode_ingest`]); missing bytes read as zeros.
pub fn decode_ingest(data: &[u8]) -> Vec<CaseDoc> {
    let mut input = Input(data);
    let ndocs = input.u8() % 8;
    let mut docs = Vec::new();
    for _ in 0..ndocs {
        if input.is_empty() {
            break;
        }
        let kind = input.u8();
        let author = input.u8();
        let nonce = input.array();
        let misfiled = input.u8();
        let nchanges = input.u8() % 32;
        let mut changes = Vec::new();
        for _ in 0..nchanges {
            if input.is_empty() {
                break;
            }
            let signer = input.u8();
            let how = input.u8();
            let len = usize::from(input.u16());
            changes.push(CaseChange {
                signer,
                how,
                bytes: input.bytes(len).to_vec(),
            });
        }
        docs.push(CaseDoc {
            kind,
            author,
            nonce,
            misfiled,
            changes,
        });
    }
    docs
}

/// `ingest`: the input is a batch of documents and signed changes (see [`encode_ingest`]),
/// built into envelopes with the test keys and handed to `Node::ingest` of a fresh copy of
/// a station's store (volunteer A a member, volunteer B revoked). Ingest must not fail on
/// anything a peer sends (only on storage errors), must account for every change, and must
/// leave a store that verifies and whose records list and show.
pub fn ingest(data: &[u8]) {
    install_panic_hook();
    let cases = decode_ingest(data);
    let all = keys::all();
    let mut batch = Vec::new();
    let mut total = 0;
    let mut headers = Vec::new();
    for d in &cases {
        let header = DocHeader {
            kind: RecordKind::from_code(d.kind).unwrap_or(if d.kind % 2 == 0 {
                RecordKind::Visit
            } else {
                RecordKind::Ticket
            }),
            author: all[usize::from(d.author) % 4].device_id(),
            nonce: d.nonce,
        };
        let mut doc = header.doc_id();
        if d.misfiled != 0 {
            doc = DocId::from_bytes([d.misfiled; 16]);
        }
        let mut changes = Vec::new();
        for c in &d.changes {
            let count = RUN_COUNTS[usize::from(c.how >> 3 & 7)];
            let which =
                [Runs::All, Runs::Action, Runs::Others, Runs::First][usize::from(c.how >> 6)];
            let rewrite = (c.how >> 3 & 7 != 0).then_some((count, which));
            let bytes = shape_change(&c.bytes, rewrite, c.how & 4 == 0);
            let decoded = decode_change(&bytes).ok();
            if let Some(change) = &decoded {
                count_agrees(&bytes, change);
            }
            let hash = decoded
                .as_ref()
                .map_or_else(|| chunk_hash(&bytes), |ch| ch.hash().0);
            let key = if c.signer < 4 {
                &all[usize::from(c.signer)]
            } else {
                decoded
                    .as_ref()
                    .and_then(|ch| {
                        all.iter().find(|k| {
                            k.device_id().as_bytes().as_slice() == ch.actor_id().to_bytes()
                        })
                    })
                    .unwrap_or(&all[1])
            };
            let hash = yizhan_protocol::ChangeHash(hash);
            let signature = match c.how & 3 {
                0 => key.sign(&signing_message(Some(site()), doc, hash)),
                1 => key.sign(&signing_message(None, doc, hash)),
                _ => [0; 64],
            };
            changes.push(SignedChange {
                doc,
                hash,
                signer: key.device_id(),
                signature,
                bytes,
            });
        }
        total += changes.len();
        headers.push(header);
        batch.push(yizhan_node::DocChanges { header, changes });
    }

    let dir = scratch_dir();
    let home = dir.path().join("station");
    copy_home(&template().home, &home);
    let mut node = Node::open(&home).expect("open the copy of the template");
    let report = match node.ingest(batch) {
        Ok(r) => r,
        Err(e) => panic!("ingest failed on peer input: {e}"),
    };
    assert!(
        report.accepted + report.duplicate + report.rejected.len() + report.quarantined <= total,
        "ingest counted more changes than it was given: {report:?}"
    );
    let verified = node.verify().expect("verify");
    assert!(
        verified.problems.is_empty(),
        "the store no longer verifies after ingest: {:?}",
        verified.problems
    );
    let _ = node
        .list_visits(&VisitFilter::default())
        .expect("list visits");
    let _ = node
        .list_tickets(&TicketFilter::default())
        .expect("list tickets");
    for h in &headers {
        // No record holds more operations than its budget.
        if let Ok(stored) = node.doc_changes(h.doc_id()) {
            let ops: u64 = stored
                .changes
                .iter()
                .filter_map(|c| decode_change(&c.bytes).ok())
                .map(|c| c.len() as u64)
                .sum();
            assert!(
                ops <= yizhan_node::ingest::rules::MAX_RECORD_OPS,
                "a record holds {ops} operations, over its budget"
            );
        }
    }
    for h in headers {
        let _ = match h.kind {
            RecordKind::Visit => node.show_visit(h.doc_id()).map(|_| ()),
            RecordKind::Ticket => node.show_ticket(h.doc_id()).map(|_| ()),
            RecordKind::Household => node.show_household(h.doc_id()).map(|_| ()),
            RecordKind::Policy => node.policy().map(|_| ()),
            RecordKind::Notice => node.list_notices(true).map(|_| ()),
        };
    }
}

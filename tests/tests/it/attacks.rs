//! The attack corpus (security.md, "Forged and abusive peers"): one test per attack class.
//!
//! Each test shows, with assertions that can fail,
//!
//! (a) the attack is refused: an error, a rejected change with its reason, or a refused
//!     connection;
//! (b) nothing on the victim changed: its documents' heads, its change log and its record
//!     index are the same before and after;
//! (c) the victim still serves others: an honest member syncs with it afterwards, and each
//!     gets the other's new record.
//!
//! Hostile input is hand-made with the protocol crate's types (Automerge changes, ed25519
//! signatures, wire messages) and goes through the real gate: a hostile member drives a raw
//! protocol `Session` against the victim's real `SyncEngine` over the in-memory link
//! ([`attack`]), or `Node::ingest`, or (for frames, streams and message floods) real QUIC
//! on loopback against `daemon::serve`.
//!
//! The world: a station, honest volunteers A and B, and M, a volunteer who turned hostile,
//! all in grid 和平里.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ObjType, ROOT};
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use sha2::Digest;
use yizhan_node::DocChanges;
use yizhan_node::Node;
use yizhan_node::model::Time;
use yizhan_node::records::{self, NewTicket, NewVisit};
use yizhan_node::sync::{SyncConfig, SyncEngine, SyncStats};
use yizhan_protocol::envelope::signing_message;
use yizhan_protocol::membership::{Certificate, MemberRole, Revocation, issue};
use yizhan_protocol::sync::{Event, Session, SessionConfig};
use yizhan_protocol::wire::{
    Changes, Fetch, Fetched, Hello, Message, PROTOCOL_VERSION, Pull, Roster, WireChange, WireDoc,
};
use yizhan_protocol::{
    ChangeHash, DeviceId, DeviceKey, DocHeader, DocId, RecordKind, Signed, SignedChange, SiteId,
};
use yizhan_tests::{TestNode, enroll, open_db, serve, sync_until_ok};

const GRID: &str = "和平里";

// ---------------------------------------------------------------------------------------
// The world and what is compared before and after
// ---------------------------------------------------------------------------------------

struct World {
    station: TestNode,
    a: TestNode,
    b: TestNode,
    m: TestNode,
    /// A's visit, held by the station and A.
    a_visit: DocId,
    /// M's visit, held by the station and M.
    m_visit: DocId,
}

fn world() -> World {
    let mut station = TestNode::station("幸福驿站");
    let mut a = TestNode::new("王芳");
    let mut b = TestNode::new("李强");
    let mut m = TestNode::new("赵敏");
    enroll(&mut station, &mut a, &[GRID]);
    enroll(&mut station, &mut b, &[GRID]);
    enroll(&mut station, &mut m, &[GRID]);
    let a_visit = visit(&mut a, "和平里 1 号");
    let m_visit = visit(&mut m, "和平里 2 号");
    station
        .node
        .open_ticket(&NewTicket {
            title: "楼道灯坏了".into(),
            grid: Some(GRID.into()),
            ..NewTicket::default()
        })
        .unwrap();
    for v in [&mut a, &mut b, &mut m] {
        sync_until_ok(v, &mut station, 1);
    }
    sync_until_ok(&mut a, &mut station, 1);
    World {
        station,
        a,
        b,
        m,
        a_visit,
        m_visit,
    }
}

fn visit(node: &mut TestNode, household: &str) -> DocId {
    node.node
        .add_visit(&NewVisit {
            household: household.into(),
            ..NewVisit::default()
        })
        .unwrap()
}

fn site(w: &World) -> SiteId {
    w.station.node.identity().site_id.unwrap()
}

/// What must not change on a victim.
#[derive(Debug, PartialEq)]
struct Snapshot {
    heads: BTreeMap<DocId, Vec<u8>>,
    log_end: u64,
    index: String,
}

fn snapshot(n: &TestNode) -> Snapshot {
    let visits = n.node.list_visits(&Default::default()).unwrap();
    let tickets = n.node.list_tickets(&Default::default()).unwrap();
    let households = n.node.list_households(&Default::default()).unwrap();
    let policy = n.node.policy().unwrap();
    Snapshot {
        heads: n.node.doc_heads().unwrap(),
        log_end: n.node.log_end().unwrap(),
        index: format!(
            "{}{}{}{}",
            serde_json::to_string(&visits).unwrap(),
            serde_json::to_string(&tickets).unwrap(),
            serde_json::to_string(&households).unwrap(),
            serde_json::to_string(&policy).unwrap()
        ),
    }
}

/// The reasons of every change `n` keeps as rejected, oldest first.
fn rejected_reasons(n: &TestNode) -> Vec<String> {
    let db = open_db(&n.node.home().join("store.db"));
    let mut stmt = db
        .prepare("SELECT reason FROM rejected ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn rejected_count(n: &TestNode) -> usize {
    rejected_reasons(n).len()
}

/// (c): `honest` and `victim` each write a record in the grid, sync, and each gets the
/// other's; the victim's store still verifies.
fn still_serves(victim: &mut TestNode, honest: &mut TestNode) {
    let mine = visit(honest, "和平里 诚实的走访");
    let theirs = victim
        .node
        .open_ticket(&NewTicket {
            title: "攻击之后".into(),
            grid: Some(GRID.into()),
            ..NewTicket::default()
        })
        .unwrap();
    let out = sync_until_ok(honest, victim, 1);
    assert!(out.ok(), "{out:?}");
    assert!(
        victim.node.show_visit(mine).is_ok(),
        "the honest member's visit did not reach the victim"
    );
    assert!(
        honest.node.show_ticket(theirs).is_ok(),
        "the victim's ticket did not reach the honest member"
    );
    let report = victim.node.verify().unwrap();
    assert_eq!(report.bad, 0, "{:?}", report.problems);
}

// ---------------------------------------------------------------------------------------
// Crafting changes
// ---------------------------------------------------------------------------------------

fn now_ms() -> i64 {
    Time::now_millis()
}

fn actor(id: DeviceId) -> ActorId {
    ActorId::from(id.as_bytes().as_slice())
}

/// `holder`'s copy of `doc`, to build changes on, with `as_device` as the actor.
fn fork_of(holder: &TestNode, doc: DocId, as_device: DeviceId) -> (DocHeader, AutoCommit) {
    let stored = holder.node.doc_changes(doc).unwrap();
    let mut am = AutoCommit::new();
    let changes = stored
        .changes
        .iter()
        .map(|c| automerge::Change::try_from(c.bytes.as_slice()).unwrap())
        .collect::<Vec<_>>();
    am.apply_changes(changes).unwrap();
    (stored.header, am.with_actor(actor(as_device)))
}

/// Commits what `edit` does as one change made at `at_ms`.
fn commit(
    am: &mut AutoCommit,
    at_ms: i64,
    edit: impl FnOnce(&mut AutoCommit),
) -> automerge::Change {
    edit(am);
    am.commit_with(CommitOptions::default().with_time(at_ms));
    am.get_last_local_change().unwrap().clone()
}

/// A new visit log started by `key` (signed for `site`), made at `at_ms`.
fn new_visit_by(
    key: &DeviceKey,
    site: Option<SiteId>,
    household: &str,
    at_ms: i64,
) -> (DocHeader, AutoCommit, SignedChange) {
    let header = DocHeader {
        kind: RecordKind::Visit,
        author: key.device_id(),
        nonce: rand::random(),
    };
    let id = header.doc_id();
    let mut am = AutoCommit::new().with_actor(actor(key.device_id()));
    let change = commit(&mut am, at_ms, |am| {
        records::write_new_visit(
            am,
            id,
            &NewVisit {
                household: household.into(),
                grid: Some(GRID.into()),
                ..NewVisit::default()
            },
            Time::from_millis(at_ms),
        )
        .unwrap();
    });
    let env = SignedChange::sign(key, site, id, &change);
    (header, am, env)
}

fn put_note(note: &str) -> impl FnOnce(&mut AutoCommit) + '_ {
    move |am| {
        am.put(ROOT, "note", note).unwrap();
    }
}

fn wire_doc(header: DocHeader, changes: Vec<WireChange>) -> WireDoc {
    WireDoc {
        doc: header.doc_id(),
        header: Some(header),
        changes,
    }
}

fn wire(env: &SignedChange) -> WireChange {
    WireChange::from_envelope(env)
}

// ---------------------------------------------------------------------------------------
// A hostile member driving a raw protocol session against the victim's real engine
// ---------------------------------------------------------------------------------------

/// What the hostile peer does.
#[derive(Default)]
struct Script {
    /// Sent when it accepts the victim (before any data).
    roster: Option<Roster>,
    /// Pages of "its log", sent when the victim pulls (the last one marked last).
    pages: Vec<Vec<WireDoc>>,
    /// Raw frames sent right behind its Hello and Pull.
    raw: Vec<Vec<u8>>,
}

/// How the attack ended.
#[derive(Debug)]
struct Outcome {
    /// The victim's view.
    victim: Result<SyncStats, String>,
    /// The attacker's view (a refusal shows here).
    attacker: Result<(), String>,
}

/// Runs one sync between the victim's real `SyncEngine` and a hostile peer that the
/// transport authenticated as `device` and that presents `cert`, over an in-memory link on
/// a virtual clock.
fn attack(
    victim: &mut TestNode,
    device: DeviceId,
    cert: Signed<Certificate>,
    script: Script,
) -> Outcome {
    let site = victim.node.identity().site_id.unwrap();
    let config = SyncConfig {
        idle_timeout: Duration::from_secs(5),
        ..SyncConfig::default()
    };
    let mut now = Instant::now();
    let placeholder = Node::open(victim.node.home()).unwrap();
    let node = std::mem::replace(&mut victim.node, placeholder);
    let mut engine = SyncEngine::new(node, device, &config, now).unwrap();
    let mut session = Session::new(
        SessionConfig {
            site,
            cert,
            roster_digest: [0; 32],
            epoch: [9; 16],
            idle_timeout: config.idle_timeout,
        },
        Pull {
            epoch: [0; 16],
            after: 0,
            scope: [0; 32],
        },
        now,
    );
    let mut to_victim: VecDeque<Vec<u8>> = VecDeque::new();
    let mut to_attacker: VecDeque<Vec<u8>> = VecDeque::new();
    while let Some(f) = session.poll_transmit() {
        to_victim.push_back(f);
    }
    to_victim.extend(script.raw);
    let mut roster = script.roster;
    let mut pages = Some(script.pages);
    let mut v: Result<(), String> = Ok(());
    let mut a: Result<(), String> = Ok(());
    for _ in 0..1_000_000 {
        // (After a failure too: a refusal is the last frame the victim sends.)
        loop {
            match engine.poll_transmit() {
                Ok(Some(f)) => to_attacker.push_back(f),
                Ok(None) => break,
                Err(e) => {
                    if v.is_ok() {
                        v = Err(e.to_string());
                    }
                    break;
                }
            }
        }
        if a.is_ok() {
            let r = (|| -> Result<(), yizhan_protocol::sync::SessionError> {
                while let Some(event) = session.poll_event() {
                    match event {
                        Event::PeerHello(_) => session.accept(roster.take())?,
                        Event::PullRequested { .. } => {
                            let pages = pages.take().unwrap_or_default();
                            let n = pages.len().max(1) as u64;
                            let mut pages = pages.into_iter();
                            for i in 0..n {
                                session.send_changes(Changes {
                                    from: i,
                                    upto: i + 1,
                                    last: i + 1 == n,
                                    docs: pages.next().unwrap_or_default(),
                                })?;
                            }
                        }
                        Event::FetchRequested(_) => {
                            session.send_fetched(Fetched { docs: Vec::new() })?
                        }
                        Event::ReceiveComplete => session.finish(None)?,
                        _ => {}
                    }
                }
                Ok(())
            })();
            if let Err(e) = r {
                a = Err(e.to_string());
            }
            while let Some(f) = session.poll_transmit() {
                to_victim.push_back(f);
            }
        }
        let v_done = v.is_err() || engine.is_finished();
        let a_done = a.is_err() || session.is_finished();
        if v_done && a_done {
            break;
        }
        if let Some(f) = to_victim.pop_front() {
            now += Duration::from_millis(10);
            if v.is_ok()
                && let Err(e) = engine.handle_frame(&f, now)
            {
                v = Err(e.to_string());
            }
            continue;
        }
        if let Some(f) = to_attacker.pop_front() {
            if a.is_ok()
                && let Err(e) = session.handle_frame(&f, now)
            {
                a = Err(e.to_string());
            }
            continue;
        }
        now += Duration::from_secs(6);
        if v.is_ok()
            && !engine.is_finished()
            && let Err(e) = engine.handle_timeout(now)
        {
            v = Err(e.to_string());
        }
        if a.is_ok()
            && !session.is_finished()
            && let Err(e) = session.handle_timeout(now)
        {
            a = Err(e.to_string());
        }
    }
    let stats = engine.stats().clone();
    victim.node = engine.into_node();
    Outcome {
        victim: v.map(|_| stats),
        attacker: a,
    }
}

/// M attacks `victim` with `pages` of hand-made changes (its own certificate, as the
/// device the transport authenticated).
fn m_sends(w: &mut World, to_station: bool, pages: Vec<Vec<WireDoc>>) -> Outcome {
    let device = w.m.id();
    let cert = w.m.node.identity().cert.clone().unwrap();
    let victim = if to_station { &mut w.station } else { &mut w.a };
    attack(
        victim,
        device,
        cert,
        Script {
            pages,
            ..Script::default()
        },
    )
}

/// The sync completed and every one of `n` changes was refused, none stored.
fn all_refused(out: &Outcome, n: u64) {
    let stats = out.victim.as_ref().expect("the victim completes the sync");
    assert_eq!(stats.rejected, n, "{out:?}");
    assert_eq!(stats.received, 0, "{out:?}");
}

fn last_reason(n: &TestNode) -> String {
    rejected_reasons(n).pop().expect("a rejected change")
}

// ---------------------------------------------------------------------------------------
// Signatures
// ---------------------------------------------------------------------------------------

/// A change by M on M's own visit, signed properly, to be spoilt by each test.
fn m_edit(w: &World, note: &str) -> (DocHeader, SignedChange) {
    let (header, mut am) = fork_of(&w.m, w.m_visit, w.m.id());
    let change = commit(&mut am, now_ms(), put_note(note));
    let env = SignedChange::sign(&w.m.node.device_key(), Some(site(w)), w.m_visit, &change);
    (header, env)
}

#[test]
fn unsigned_change() {
    let mut w = world();
    let (header, env) = m_edit(&w, "未签名");
    let before = snapshot(&w.station);
    let unsigned = WireChange {
        signature: [0; 64],
        bytes: env.bytes.clone(),
    };
    let out = m_sends(&mut w, true, vec![vec![wire_doc(header, vec![unsigned])]]);
    all_refused(&out, 1);
    assert_eq!(last_reason(&w.station), "bad signature");
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

#[test]
fn bad_signature() {
    let mut w = world();
    let (header, env) = m_edit(&w, "签名被改");
    let before = snapshot(&w.station);
    let mut forged = wire(&env);
    forged.signature[10] ^= 0x01;
    let out = m_sends(&mut w, true, vec![vec![wire_doc(header, vec![forged])]]);
    all_refused(&out, 1);
    assert_eq!(last_reason(&w.station), "bad signature");
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

#[test]
fn signature_by_one_member_on_a_change_claiming_another_members_actor() {
    let mut w = world();
    // M writes a change on A's visit with A's actor id and signs it with its own key.
    let (header, mut am) = fork_of(&w.station, w.a_visit, w.a.id());
    let change = commit(&mut am, now_ms(), put_note("冒充王芳"));
    let m_key = w.m.node.device_key();
    let hash = ChangeHash::from(change.hash());
    let signature = m_key.sign(&signing_message(Some(site(&w)), w.a_visit, hash));
    let before = snapshot(&w.station);

    // On the wire the signer is the actor (A): M's signature does not verify for A.
    let out = m_sends(
        &mut w,
        true,
        vec![vec![wire_doc(
            header,
            vec![WireChange {
                signature,
                bytes: change.raw_bytes().to_vec(),
            }],
        )]],
    );
    all_refused(&out, 1);
    assert_eq!(last_reason(&w.station), "bad signature");

    // Handed in as an envelope that names M as the signer: the actor binding refuses it.
    let report = w
        .station
        .node
        .ingest(vec![DocChanges {
            header,
            changes: vec![SignedChange {
                doc: w.a_visit,
                hash,
                signer: w.m.id(),
                signature,
                bytes: change.raw_bytes().to_vec(),
            }],
        }])
        .unwrap();
    assert_eq!(report.accepted, 0);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(
        report.rejected[0].reason,
        "change actor is not bound to its signer"
    );
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

#[test]
fn change_signed_by_an_unknown_key() {
    let mut w = world();
    let stranger = DeviceKey::from_seed(rand::random());
    let (header, _, env) = new_visit_by(&stranger, Some(site(&w)), "和平里 陌生人", now_ms());
    let before = snapshot(&w.station);
    let out = m_sends(&mut w, true, vec![vec![wire_doc(header, vec![wire(&env)])]]);
    all_refused(&out, 1);
    assert_eq!(
        last_reason(&w.station),
        "its author is not a member of this site"
    );
    assert!(w.station.node.show_visit(header.doc_id()).is_err());
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

#[test]
fn change_signed_by_a_revoked_key() {
    let mut w = world();
    let mut r = TestNode::new("被撤销");
    enroll(&mut w.station, &mut r, &[GRID]);
    let (header, _, env) = new_visit_by(
        &r.node.device_key(),
        Some(site(&w)),
        "和平里 撤销后",
        now_ms(),
    );
    w.station.node.revoke(r.id(), "设备丢失").unwrap();
    sync_until_ok(&mut w.a, &mut w.station, 1); // A learns of the revocation
    let before_a = snapshot(&w.a);
    let before_station = snapshot(&w.station);

    // The revoked device itself is refused at the door.
    let r_cert = r.node.identity().cert.clone().unwrap();
    let out = attack(&mut w.station, r.id(), r_cert, Script::default());
    assert!(
        out.victim.as_ref().is_err_and(|e| e.contains("revoked")),
        "{out:?}"
    );
    assert!(out.attacker.is_err_and(|e| e.contains("revoked")));

    // Relayed by M to A: refused.
    let out = m_sends(
        &mut w,
        false,
        vec![vec![wire_doc(header, vec![wire(&env)])]],
    );
    all_refused(&out, 1);
    assert_eq!(last_reason(&w.a), "its author was revoked");
    assert_eq!(snapshot(&w.a), before_a);

    // Relayed by M to the station: held in quarantine for its decision, not merged.
    let out = m_sends(&mut w, true, vec![vec![wire_doc(header, vec![wire(&env)])]]);
    let stats = out.victim.expect("the station completes the sync");
    assert_eq!(stats.received, 0);
    assert_eq!(w.station.node.quarantine_list().unwrap().len(), 1);
    assert_eq!(snapshot(&w.station), before_station);

    still_serves(&mut w.a, &mut w.b);
    still_serves(&mut w.station, &mut w.b);
}

/// M's secret scalar `a` (the clamped first half of SHA-512 of its seed), for forging
/// signatures that only a lax verifier would take.
fn secret_scalar(key: &DeviceKey) -> Scalar {
    let h = sha2::Sha512::digest(key.seed());
    let mut a = [0u8; 32];
    a.copy_from_slice(&h[..32]);
    Scalar::from_bytes_mod_order(curve25519_dalek::scalar::clamp_integer(a))
}

fn challenge(r: &[u8; 32], a: &[u8; 32], msg: &[u8]) -> Scalar {
    let h = sha2::Sha512::new()
        .chain_update(r)
        .chain_update(a)
        .chain_update(msg)
        .finalize();
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&h);
    Scalar::from_bytes_mod_order_wide(&wide)
}

#[test]
fn weak_key_small_order_author() {
    let mut w = world();
    // The identity point is a small-order "key": the signature (R = identity, s = 0)
    // satisfies the plain verification equation for every message.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    let mut am = AutoCommit::new().with_actor(ActorId::from(weak.as_slice()));
    let change = commit(&mut am, now_ms(), put_note("弱密钥"));
    let header = DocHeader {
        kind: RecordKind::Visit,
        author: w.m.id(),
        nonce: [7; 16],
    };
    let mut signature = [0u8; 64];
    signature[0] = 1; // R = the identity point, s = 0
    let msg = signing_message(
        Some(site(&w)),
        header.doc_id(),
        ChangeHash::from(change.hash()),
    );
    use ed25519_dalek::Verifier;
    let lax = ed25519_dalek::VerifyingKey::from_bytes(&weak).unwrap();
    assert!(
        lax.verify(&msg, &ed25519_dalek::Signature::from_bytes(&signature))
            .is_ok(),
        "the forged signature should pass a non-strict verifier"
    );
    assert!(DeviceId::from_bytes(weak).is_err());
    let before = snapshot(&w.station);
    let out = m_sends(
        &mut w,
        true,
        vec![vec![wire_doc(
            header,
            vec![WireChange {
                signature,
                bytes: change.raw_bytes().to_vec(),
            }],
        )]],
    );
    all_refused(&out, 1);
    assert_eq!(
        last_reason(&w.station),
        "change actor is not bound to its signer"
    );
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

#[test]
fn non_canonical_key_encoding() {
    let mut w = world();
    // y = p + k for a point with y = k on the curve, not of small order: a second
    // encoding of a valid key. ed25519-dalek's decoder takes it; a device id must not.
    let alias = (0u8..19)
        .map(|k| {
            let mut b = [0xff; 32];
            b[0] = 0xed + k;
            b[31] = 0x7f;
            b
        })
        .find(|b| ed25519_dalek::VerifyingKey::from_bytes(b).is_ok_and(|v| !v.is_weak()))
        .expect("a non-canonical encoding of a valid point");
    assert!(DeviceId::from_bytes(alias).is_err());
    let mut am = AutoCommit::new().with_actor(ActorId::from(alias.as_slice()));
    let change = commit(&mut am, now_ms(), put_note("别名密钥"));
    let header = DocHeader {
        kind: RecordKind::Visit,
        author: w.m.id(),
        nonce: [8; 16],
    };
    let before = snapshot(&w.station);
    let out = m_sends(
        &mut w,
        true,
        vec![vec![wire_doc(
            header,
            vec![WireChange {
                signature: [3; 64],
                bytes: change.raw_bytes().to_vec(),
            }],
        )]],
    );
    all_refused(&out, 1);
    assert_eq!(
        last_reason(&w.station),
        "change actor is not bound to its signer"
    );
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

#[test]
fn non_canonical_signature_s_at_or_over_l() {
    let mut w = world();
    let (header, env) = m_edit(&w, "可塑签名");
    // s + L: the same scalar modulo L, so a verifier that reduced s would take it.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut sig = env.signature;
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = sig[32 + i] as u16 + L[i] as u16 + carry;
        sig[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    let mut s = [0u8; 32];
    s.copy_from_slice(&sig[32..]);
    let mut orig = [0u8; 32];
    orig.copy_from_slice(&env.signature[32..]);
    assert_eq!(
        Scalar::from_bytes_mod_order(s),
        Scalar::from_bytes_mod_order(orig),
        "s + L is the same scalar"
    );
    assert_ne!(sig, env.signature);
    let before = snapshot(&w.station);
    let out = m_sends(
        &mut w,
        true,
        vec![vec![wire_doc(
            header,
            vec![WireChange {
                signature: sig,
                bytes: env.bytes.clone(),
            }],
        )]],
    );
    all_refused(&out, 1);
    assert_eq!(last_reason(&w.station), "bad signature");
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

#[test]
fn small_order_r_in_signature() {
    let mut w = world();
    let (header, env) = m_edit(&w, "小阶 R");
    let key = w.m.node.device_key();
    let a = secret_scalar(&key);
    let a_bytes = *w.m.id().as_bytes();
    // R = a point of order 4 (y = 0); s = k·a. Then 8·(sB − kA − R) = 0: a cofactored
    // verifier accepts it, for a message M never signed.
    let r_point = CompressedEdwardsY([0; 32]).decompress().unwrap();
    assert!(r_point.is_small_order());
    let r = r_point.compress().to_bytes();
    let msg = signing_message(Some(site(&w)), w.m_visit, env.hash);
    let k = challenge(&r, &a_bytes, &msg);
    let s = k * a;
    let big_a = CompressedEdwardsY(a_bytes).decompress().unwrap();
    let check = curve25519_dalek::EdwardsPoint::mul_base(&s) - k * big_a - r_point;
    assert!(check.mul_by_cofactor().is_identity());
    assert!(!check.is_identity());
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r);
    sig[32..].copy_from_slice(s.as_bytes());
    let before = snapshot(&w.station);
    let out = m_sends(
        &mut w,
        true,
        vec![vec![wire_doc(
            header,
            vec![WireChange {
                signature: sig,
                bytes: env.bytes.clone(),
            }],
        )]],
    );
    all_refused(&out, 1);
    assert_eq!(last_reason(&w.station), "bad signature");
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

/// `n` new visit logs by M, signed for the site, as one page's documents.
fn m_new_visits(w: &World, n: usize, what: &str) -> Vec<(DocHeader, SignedChange)> {
    let key = w.m.node.device_key();
    (0..n)
        .map(|i| {
            let (header, _, env) =
                new_visit_by(&key, Some(site(w)), &format!("{what} {i}"), now_ms());
            (header, env)
        })
        .collect()
}

/// Whether `n` holds the document.
fn holds(n: &TestNode, doc: DocId) -> bool {
    n.node.doc_changes(doc).is_ok()
}

#[test]
fn bad_signatures_in_a_large_page_are_refused_and_the_rest_stored() {
    // A page large enough that the station checks its signatures in batches, on its
    // verifying threads (protocol.md §3.5): three spoilt signatures among 117 good ones.
    let mut w = world();
    let visits = m_new_visits(&w, 120, "批量");
    let spoilt = [10, 50, 90];
    let docs: Vec<WireDoc> = visits
        .iter()
        .enumerate()
        .map(|(i, (header, env))| {
            let mut change = wire(env);
            match i {
                10 => change.signature[40] ^= 0x01,   // a bit of s
                50 => change.signature[3] ^= 0x01,    // a bit of R
                90 => change.signature[..32].fill(0), // R = (0, 0): of small order
                _ => {}
            }
            wire_doc(*header, vec![change])
        })
        .collect();
    let out = m_sends(&mut w, true, vec![docs]);
    let stats = out.victim.as_ref().expect("the victim completes the sync");
    assert_eq!((stats.received, stats.rejected), (117, 3), "{out:?}");
    assert_eq!(rejected_reasons(&w.station), vec!["bad signature"; 3]);
    for (i, (header, _)) in visits.iter().enumerate() {
        assert_eq!(
            holds(&w.station, header.doc_id()),
            !spoilt.contains(&i),
            "visit {i}"
        );
    }
    assert_eq!(w.station.node.verify().unwrap().bad, 0);
    still_serves(&mut w.station, &mut w.a);
}

#[test]
fn a_signature_with_a_mixed_order_r_is_refused_or_reported_by_verify() {
    // The one signature a batch may accept that `verify_strict` refuses (protocol.md §3.5):
    // R = rB + T with T of order 8, and s right for rB. Only the key's holder (M) can make
    // it. Sent among 99 honest visits, it is either refused at ingest or, when the batch's
    // weights cancel T (about one time in eight), stored and then reported by `verify`,
    // which checks one signature at a time. Either way the honest visits are stored.
    let mut w = world();
    let mut visits = m_new_visits(&w, 100, "混合阶");
    let key = w.m.node.device_key();
    let a = secret_scalar(&key);
    let a_bytes = *w.m.id().as_bytes();
    let (header, env) = &mut visits[42];
    let r = Scalar::from(4242u64);
    let big_r = (curve25519_dalek::EdwardsPoint::mul_base(&r)
        + curve25519_dalek::constants::EIGHT_TORSION[1])
        .compress()
        .to_bytes();
    let msg = signing_message(Some(site(&w)), header.doc_id(), env.hash);
    let s = r + challenge(&big_r, &a_bytes, &msg) * a;
    env.signature[..32].copy_from_slice(&big_r);
    env.signature[32..].copy_from_slice(s.as_bytes());
    assert!(!w.m.id().verify_strict(&msg, &env.signature));
    let crafted = header.doc_id();
    let docs = visits
        .iter()
        .map(|(header, env)| wire_doc(*header, vec![wire(env)]))
        .collect();
    let out = m_sends(&mut w, true, vec![docs]);
    let stats = out.victim.as_ref().expect("the victim completes the sync");
    assert_eq!(stats.received + stats.rejected, 100, "{out:?}");
    for (header, _) in visits.iter().filter(|(h, _)| h.doc_id() != crafted) {
        assert!(holds(&w.station, header.doc_id()));
    }
    let report = w.station.node.verify().unwrap();
    if stats.rejected == 1 {
        assert_eq!(last_reason(&w.station), "bad signature");
        assert!(!holds(&w.station, crafted));
        assert_eq!(report.bad, 0);
        still_serves(&mut w.station, &mut w.a);
    } else {
        assert!(holds(&w.station, crafted));
        assert_eq!(report.bad, 1, "{:?}", report.problems);
        assert!(
            report.problems[0].contains("bad signature"),
            "{:?}",
            report.problems
        );
        // The station relays it with the honest visits. A volunteer takes them all, and
        // either holds the crafted one too or refuses it: the divergence §3.5 describes.
        let out = sync_until_ok(&mut w.a, &mut w.station, 1);
        assert!(out.ok(), "{out:?}");
        for (header, _) in visits.iter().filter(|(h, _)| h.doc_id() != crafted) {
            assert!(holds(&w.a, header.doc_id()));
        }
        let refused = rejected_reasons(&w.a);
        let held = holds(&w.a, crafted);
        assert!(
            held != (refused == ["bad signature"]),
            "held {held}, refused {refused:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Replays
// ---------------------------------------------------------------------------------------

#[test]
fn envelope_replayed_into_another_document() {
    let mut w = world();
    // A's own signed change (one the station does not hold yet), moved under M's visit
    // (header and id).
    let new_visit = visit(&mut w.a, "和平里 尚未同步");
    let a_change = w.a.node.doc_changes(new_visit).unwrap().changes[0].clone();
    let m_header = w.station.node.doc_changes(w.m_visit).unwrap().header;
    let before = snapshot(&w.station);
    let out = m_sends(
        &mut w,
        true,
        vec![vec![wire_doc(m_header, vec![wire(&a_change)])]],
    );
    all_refused(&out, 1);
    assert_eq!(last_reason(&w.station), "bad signature");
    // And A's change moved into a document of its own making (a new header by A).
    let fresh = DocHeader {
        kind: RecordKind::Visit,
        author: w.a.id(),
        nonce: [5; 16],
    };
    let out = m_sends(
        &mut w,
        true,
        vec![vec![wire_doc(fresh, vec![wire(&a_change)])]],
    );
    all_refused(&out, 1);
    assert_eq!(last_reason(&w.station), "bad signature");
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

#[test]
fn envelope_replayed_into_another_site() {
    let mut w = world();
    // M's change, signed for another site (M is enrolled there too, say) and for none.
    let (header, mut am) = fork_of(&w.m, w.m_visit, w.m.id());
    let change = commit(&mut am, now_ms(), put_note("别的驿站"));
    let key = w.m.node.device_key();
    let other = SiteId::from_bytes([0x42; 16]);
    let before = snapshot(&w.station);
    for s in [Some(other), None] {
        let env = SignedChange::sign(&key, s, w.m_visit, &change);
        let out = m_sends(&mut w, true, vec![vec![wire_doc(header, vec![wire(&env)])]]);
        all_refused(&out, 1);
        assert_eq!(last_reason(&w.station), "bad signature");
    }
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

#[test]
fn envelope_replayed_into_the_same_document_is_a_no_op() {
    let mut w = world();
    let a_changes = w.station.node.doc_changes(w.a_visit).unwrap();
    let before = snapshot(&w.station);
    let rejected = rejected_count(&w.station);
    let out = m_sends(
        &mut w,
        true,
        vec![vec![wire_doc(
            a_changes.header,
            a_changes.changes.iter().map(wire).collect(),
        )]],
    );
    let stats = out.victim.expect("the sync completes");
    // Counted as they came (as their sender counts them), and changing nothing.
    assert_eq!(stats.received, a_changes.changes.len() as u64);
    assert_eq!(stats.rejected, 0);
    let report = w.station.node.ingest(vec![a_changes.clone()]).unwrap();
    assert_eq!(report.duplicate, a_changes.changes.len());
    assert_eq!(report.accepted, 0);
    assert_eq!(rejected_count(&w.station), rejected);
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

// ---------------------------------------------------------------------------------------
// Equivocation
// ---------------------------------------------------------------------------------------

#[test]
fn two_different_changes_with_the_same_actor_and_seq() {
    let mut w = world();
    // M edits its visit and the station gets that edit honestly...
    let (header, mut first) = fork_of(&w.m, w.m_visit, w.m.id());
    let mut second = first.fork().with_actor(actor(w.m.id()));
    let mut third = first.fork().with_actor(actor(w.m.id()));
    let c1 = commit(&mut first, now_ms(), put_note("第一版"));
    let c2 = commit(&mut second, now_ms(), put_note("第二版"));
    let c3 = commit(&mut third, now_ms(), put_note("第三版"));
    assert_eq!(c1.seq(), c2.seq());
    assert_ne!(c1.hash(), c2.hash());
    let key = w.m.node.device_key();
    let sign = |c: &automerge::Change| SignedChange::sign(&key, Some(site(&w)), w.m_visit, c);
    let (e1, e2, e3) = (sign(&c1), sign(&c2), sign(&c3));
    let report = w
        .station
        .node
        .ingest(vec![DocChanges {
            header,
            changes: vec![e1.clone()],
        }])
        .unwrap();
    assert_eq!(report.accepted, 1);
    assert!(w.station.node.misbehaviour().unwrap().is_empty());
    let before = snapshot(&w.station);

    // ...then sends another change with the same (actor, seq), alongside an honest one by
    // A in the same page: only the equivocation is refused.
    let (a_header, mut a_doc) = fork_of(&w.a, w.a_visit, w.a.id());
    let honest = SignedChange::sign(
        &w.a.node.device_key(),
        Some(site(&w)),
        w.a_visit,
        &commit(&mut a_doc, now_ms(), put_note("王芳的补充")),
    );
    let out = m_sends(
        &mut w,
        true,
        vec![vec![
            wire_doc(header, vec![wire(&e2)]),
            wire_doc(a_header, vec![wire(&honest)]),
        ]],
    );
    let stats = out.victim.expect("the sync completes");
    assert_eq!((stats.received, stats.rejected), (1, 1), "{stats:?}");
    assert!(last_reason(&w.station).starts_with("equivocation"));
    let after = snapshot(&w.station);
    assert_eq!(after.heads.get(&w.m_visit), before.heads.get(&w.m_visit));
    assert_eq!(
        w.station
            .node
            .show_visit(w.m_visit)
            .unwrap()
            .visit
            .note
            .as_deref(),
        Some("第一版")
    );

    let seen = w.station.node.misbehaviour().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].device, w.m.id());
    assert_eq!(seen[0].kind, "equivocation");
    assert!(seen[0].detail.contains(&e1.hash.to_string()));
    assert!(seen[0].detail.contains(&e2.hash.to_string()));
    assert_eq!(seen[0].from_peer, Some(w.m.id()));

    // Replayed again, and a third version in the same batch: both refused, and recorded
    // once per piece of evidence.
    let report = w
        .station
        .node
        .ingest(vec![DocChanges {
            header,
            changes: vec![e2.clone(), e3.clone()],
        }])
        .unwrap();
    assert_eq!(report.accepted, 0);
    assert_eq!(report.rejected.len(), 2);
    assert_eq!(w.station.node.misbehaviour().unwrap().len(), 2);
    assert_eq!(snapshot(&w.station).heads, after.heads);
    still_serves(&mut w.station, &mut w.a);
}

// ---------------------------------------------------------------------------------------
// Write rules
// ---------------------------------------------------------------------------------------

#[test]
fn edit_of_another_volunteers_visit_log() {
    let mut w = world();
    let (header, mut am) = fork_of(&w.m, w.a_visit, w.m.id());
    let change = commit(&mut am, now_ms(), put_note("篡改王芳的记录"));
    let env = SignedChange::sign(&w.m.node.device_key(), Some(site(&w)), w.a_visit, &change);
    let before = snapshot(&w.station);
    let before_a = snapshot(&w.a);
    let out = m_sends(&mut w, true, vec![vec![wire_doc(header, vec![wire(&env)])]]);
    all_refused(&out, 1);
    assert_eq!(
        last_reason(&w.station),
        "only the visit's author or a station may change a visit log"
    );
    let out = m_sends(
        &mut w,
        false,
        vec![vec![wire_doc(header, vec![wire(&env)])]],
    );
    all_refused(&out, 1);
    assert_eq!(snapshot(&w.station), before);
    assert_eq!(snapshot(&w.a), before_a);
    still_serves(&mut w.station, &mut w.a);
}

#[test]
fn record_started_in_another_members_name() {
    let mut w = world();
    // M starts a visit whose header names A as its author.
    let header = DocHeader {
        kind: RecordKind::Visit,
        author: w.a.id(),
        nonce: [9; 16],
    };
    let mut am = AutoCommit::new().with_actor(actor(w.m.id()));
    let change = commit(&mut am, now_ms(), put_note("以王芳的名义"));
    let env = SignedChange::sign(
        &w.m.node.device_key(),
        Some(site(&w)),
        header.doc_id(),
        &change,
    );
    let before = snapshot(&w.station);
    let out = m_sends(&mut w, true, vec![vec![wire_doc(header, vec![wire(&env)])]]);
    all_refused(&out, 1);
    assert_eq!(
        last_reason(&w.station),
        "a record may only be started by its author"
    );
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

#[test]
fn header_that_does_not_derive_the_document_id() {
    let mut w = world();
    let (header, env) = m_edit(&w, "错误的头");
    let lying = WireDoc {
        doc: w.a_visit,
        header: Some(header),
        changes: vec![wire(&env)],
    };
    let before = snapshot(&w.station);
    let out = m_sends(&mut w, true, vec![vec![lying]]);
    all_refused(&out, 1);
    assert_eq!(
        last_reason(&w.station),
        "the header does not derive the document id"
    );
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

// ---------------------------------------------------------------------------------------
// Malformed and oversized content
// ---------------------------------------------------------------------------------------

#[test]
fn whole_document_chunk_in_place_of_a_change() {
    let mut w = world();
    let (header, mut am) = fork_of(&w.m, w.m_visit, w.m.id());
    commit(&mut am, now_ms(), put_note("整份文档"));
    let saved = am.save();
    let before = snapshot(&w.station);
    let out = m_sends(
        &mut w,
        true,
        vec![vec![wire_doc(
            header,
            vec![WireChange {
                signature: [1; 64],
                bytes: saved,
            }],
        )]],
    );
    all_refused(&out, 1);
    let reason = last_reason(&w.station);
    assert!(reason.starts_with("malformed change"), "{reason}");
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

#[test]
fn change_over_the_size_limit() {
    let mut w = world();
    let (header, mut am) = fork_of(&w.m, w.m_visit, w.m.id());
    let big = "很长".repeat(200_000); // 1.2 MB of text
    let change = commit(&mut am, now_ms(), put_note(&big));
    assert!(change.raw_bytes().len() > yizhan_protocol::envelope::MAX_CHANGE_BYTES);
    let env = SignedChange::sign(&w.m.node.device_key(), Some(site(&w)), w.m_visit, &change);
    let before = snapshot(&w.station);
    let out = m_sends(&mut w, true, vec![vec![wire_doc(header, vec![wire(&env)])]]);
    all_refused(&out, 1);
    let reason = last_reason(&w.station);
    assert!(reason.contains("over the limit"), "{reason}");
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

#[test]
fn message_over_the_per_message_limits() {
    let mut w = world();
    // 8,193 changes in one Changes message: the frame decodes, the limits refuse it.
    let junk = WireChange {
        signature: [0; 64],
        bytes: vec![0; 1],
    };
    let docs = vec![WireDoc {
        doc: w.m_visit,
        header: None,
        changes: vec![junk; yizhan_protocol::wire::MAX_CHANGES_PER_MESSAGE + 1],
    }];
    let frame = Message::Changes(Changes {
        from: 0,
        upto: 1,
        last: true,
        docs,
    })
    .encode();
    let before = snapshot(&w.station);
    let rejected = rejected_count(&w.station);
    let device = w.m.id();
    let cert = w.m.node.identity().cert.clone().unwrap();
    let out = attack(
        &mut w.station,
        device,
        cert,
        Script {
            raw: vec![frame],
            ..Script::default()
        },
    );
    let err = out.victim.expect_err("the victim ends the session");
    assert!(err.contains("too many changes"), "{err}");
    assert_eq!(rejected_count(&w.station), rejected);
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

#[test]
fn undecodable_frame() {
    let mut w = world();
    let before = snapshot(&w.station);
    let device = w.m.id();
    let cert = w.m.node.identity().cert.clone().unwrap();
    let out = attack(
        &mut w.station,
        device,
        cert,
        Script {
            raw: vec![vec![0xff; 64]],
            ..Script::default()
        },
    );
    let err = out.victim.expect_err("the victim ends the session");
    assert!(err.contains("malformed message"), "{err}");
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

#[test]
fn deeply_nested_values() {
    let mut w = world();
    let key = w.m.node.device_key();
    // One change nesting maps 100,000 deep in M's own visit (M may write it): too many
    // operations, refused before it is decoded; 1,000 deep: a visit log holds no object
    // there, so the record model refuses it before any depth is measured
    // (`rules::nesting` stays behind it).
    let (header, mut am) = fork_of(&w.m, w.m_visit, w.m.id());
    let mut spread = am.fork().with_actor(actor(w.m.id()));
    let before = snapshot(&w.station);
    for (depth, why) in [
        (100_000, TOO_MANY_OPS),
        (
            1_000,
            "it makes an object at `deep`, which a visit does not hold there",
        ),
    ] {
        let mut am = am.fork().with_actor(actor(w.m.id()));
        let deep = commit(&mut am, now_ms(), |am| {
            let mut obj = am.put_object(ROOT, "deep", ObjType::Map).unwrap();
            for _ in 0..depth {
                obj = am.put_object(&obj, "x", ObjType::Map).unwrap();
            }
        });
        assert!(deep.raw_bytes().len() < yizhan_protocol::envelope::MAX_CHANGE_BYTES);
        let env = SignedChange::sign(&key, Some(site(&w)), w.m_visit, &deep);
        let out = m_sends(&mut w, true, vec![vec![wire_doc(header, vec![wire(&env)])]]);
        all_refused(&out, 1);
        let reason = last_reason(&w.station);
        assert!(reason.starts_with(why), "{reason}");
    }

    // The same depth spread over many small changes, one level each: each is refused for
    // what it makes or where it writes.
    let mut envs = Vec::new();
    let mut obj = ROOT;
    for _ in 0..=yizhan_node::ingest::rules::MAX_OBJECT_DEPTH {
        let change = commit(&mut spread, now_ms(), |am| {
            obj = am.put_object(&obj, "y", ObjType::Map).unwrap();
        });
        envs.push(SignedChange::sign(&key, Some(site(&w)), w.m_visit, &change));
    }
    let report = w
        .station
        .node
        .ingest(vec![DocChanges {
            header,
            changes: envs.clone(),
        }])
        .unwrap();
    assert_eq!(report.accepted, 0);
    assert_eq!(report.rejected.len(), envs.len(), "{report:?}");
    assert_eq!(
        report.rejected[0].reason,
        "it makes an object at `y`, which a visit does not hold there"
    );
    for r in &report.rejected[1..] {
        assert_eq!(r.reason, "it writes into an object a visit does not hold");
    }
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

// ---------------------------------------------------------------------------------------
// Membership
// ---------------------------------------------------------------------------------------

#[test]
fn member_whose_certificate_has_expired() {
    let mut w = world();
    let day = 24 * 3600 * 1000;
    let now = now_ms();
    let x = DeviceKey::from_seed(rand::random());
    let expired = issue(
        &w.station.node.device_key(),
        &Certificate {
            site: site(&w),
            device: x.device_id(),
            name: "过期的志愿者".into(),
            role: MemberRole::Volunteer,
            grids: vec![GRID.into()],
            issued_at_ms: now - 30 * day,
            expires_at_ms: Some(now - day),
        },
    );
    let before = snapshot(&w.station);

    // At the door: refused.
    let out = attack(
        &mut w.station,
        x.device_id(),
        expired.clone(),
        Script::default(),
    );
    let err = out.victim.expect_err("refused");
    assert!(err.contains("expired"), "{err}");
    assert!(out.attacker.is_err_and(|e| e.contains("expired")));
    assert_eq!(snapshot(&w.station), before);

    // Relayed by M with the certificate in its roster: a visit made while X was a member
    // is accepted; a change X made after its membership expired is refused.
    let (header, mut am, started) =
        new_visit_by(&x, Some(site(&w)), "和平里 过期前", now - 2 * day);
    let late = commit(&mut am, now - 3600 * 1000, put_note("过期之后"));
    let late = SignedChange::sign(&x, Some(site(&w)), header.doc_id(), &late);
    let device = w.m.id();
    let cert = w.m.node.identity().cert.clone().unwrap();
    let out = attack(
        &mut w.station,
        device,
        cert.clone(),
        Script {
            roster: Some(Roster {
                certs: vec![expired],
                revocations: vec![],
            }),
            pages: vec![vec![wire_doc(header, vec![wire(&started)])]],
            ..Script::default()
        },
    );
    assert_eq!(out.victim.expect("sync").received, 1);
    let earlier = snapshot(&w.station);
    let out = attack(
        &mut w.station,
        device,
        cert,
        Script {
            pages: vec![vec![wire_doc(header, vec![wire(&late)])]],
            ..Script::default()
        },
    );
    all_refused(&out, 1);
    assert_eq!(
        last_reason(&w.station),
        "it was made after its author's membership expired"
    );
    assert_eq!(snapshot(&w.station), earlier);
    still_serves(&mut w.station, &mut w.a);
}

#[test]
fn certificate_not_signed_by_the_station() {
    let mut w = world();
    // M issues itself a station certificate for the site.
    let mut forged = w.m.node.identity().cert.clone().unwrap().open().unwrap();
    forged.role = MemberRole::Station;
    forged.issued_at_ms += 1;
    let forged = Signed::sign(&w.m.node.device_key(), &forged);
    let before = snapshot(&w.station);
    let device = w.m.id();
    let out = attack(&mut w.station, device, forged, Script::default());
    let err = out.victim.expect_err("refused");
    assert!(err.contains("not signed by the site's station"), "{err}");
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

#[test]
fn revocation_not_signed_by_the_station() {
    let mut w = world();
    // M sends a roster that "revokes" A, signed by M.
    let fake = Signed::sign(
        &w.m.node.device_key(),
        &Revocation {
            site: site(&w),
            device: w.a.id(),
            reason: "伪造".into(),
            revoked_at_ms: now_ms(),
        },
    );
    let before = snapshot(&w.station);
    let device = w.m.id();
    let cert = w.m.node.identity().cert.clone().unwrap();
    let out = attack(
        &mut w.station,
        device,
        cert,
        Script {
            roster: Some(Roster {
                certs: vec![],
                revocations: vec![fake],
            }),
            ..Script::default()
        },
    );
    out.victim
        .expect("the sync completes; the revocation is ignored");
    let members = w.station.node.members().unwrap();
    let a = members
        .iter()
        .find(|m| m.device_id == w.a.id().to_string())
        .unwrap();
    assert!(!a.revoked);
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

// ---------------------------------------------------------------------------------------
// Floods
// ---------------------------------------------------------------------------------------

#[test]
fn flood_of_changes() {
    let mut w = world();
    let before = snapshot(&w.station);
    // Three pages of 8,000 junk changes and 500 changes signed by strangers.
    let junk: Vec<WireChange> = (0..8000u32)
        .map(|i| WireChange {
            signature: [0; 64],
            bytes: i.to_be_bytes().to_vec(),
        })
        .collect();
    let mut strangers = Vec::new();
    for i in 0..500 {
        let key = DeviceKey::from_seed(rand::random());
        let (header, _, env) = new_visit_by(&key, Some(site(&w)), &format!("洪水 {i}"), now_ms());
        strangers.push(wire_doc(header, vec![wire(&env)]));
    }
    let pages = vec![
        vec![WireDoc {
            doc: w.m_visit,
            header: None,
            changes: junk.clone(),
        }],
        vec![WireDoc {
            doc: w.m_visit,
            header: None,
            changes: junk.clone(),
        }],
        vec![WireDoc {
            doc: w.m_visit,
            header: None,
            changes: junk,
        }],
        strangers,
    ];
    let out = m_sends(&mut w, true, pages);
    all_refused(&out, 3 * 8000 + 500);
    // The kept rejections are bounded.
    assert_eq!(rejected_count(&w.station), 10_000);
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

/// M's QUIC endpoint, connected to the station.
async fn m_connects(
    w: &World,
    addr: std::net::SocketAddr,
) -> (yizhan_node::net::Endpoint, yizhan_node::net::PeerConnection) {
    let endpoint = yizhan_node::net::Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        &w.m.node.device_key(),
        &yizhan_node::net::NetConfig::default(),
    )
    .unwrap();
    let conn = endpoint.connect(addr).await.unwrap();
    (endpoint, conn)
}

fn m_hello(w: &World) -> Vec<u8> {
    Message::Hello(Hello {
        version: PROTOCOL_VERSION,
        site: site(w),
        cert: w.m.node.identity().cert.clone().unwrap(),
        roster_digest: [0; 32],
        epoch: [9; 16],
    })
    .encode()
}

fn m_pull() -> Vec<u8> {
    Message::Pull(Pull {
        epoch: [0; 16],
        after: 0,
        scope: [0; 32],
    })
    .encode()
}

/// (c) over QUIC: A syncs with the serving station and each gets the other's new record.
async fn still_serves_over_quic(w: &mut World, addr: std::net::SocketAddr) {
    let mine = visit(&mut w.a, "和平里 QUIC 之后");
    let theirs = w
        .station
        .node
        .open_ticket(&NewTicket {
            title: "QUIC 攻击之后".into(),
            grid: Some(GRID.into()),
            ..NewTicket::default()
        })
        .unwrap();
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        yizhan_tests::sync_once(&w.a.node.home_handle(), addr),
    )
    .await
    .expect("the honest sync stalled")
    .expect("the honest sync");
    assert!(report.stats.received >= 1);
    w.a.reopen();
    w.station.reopen();
    assert!(w.station.node.show_visit(mine).is_ok());
    assert!(w.a.node.show_ticket(theirs).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_prefix_over_the_frame_limit() {
    let mut w = world();
    let before = snapshot(&w.station);
    let mut served = serve(&w.station, 64).await;
    let (endpoint, conn) = m_connects(&w, served.addr).await;
    let (mut send, _recv) = conn.connection.open_bi().await.unwrap();
    // A 4 GiB length prefix, then a few bytes.
    send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    // (The station may already have stopped reading: these may fail.)
    let _ = send.write_all(&[0; 16]).await;
    let _ = send.finish();
    let err = served.next_failure().await;
    assert!(err.contains("exceeds the limit"), "{err}");
    // The station hangs up on it.
    let closed = tokio::time::timeout(Duration::from_secs(30), conn.connection.closed())
        .await
        .expect("the connection is closed");
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(_)),
        "{closed:?}"
    );
    endpoint.close().await;
    // And a frame one byte over 4 MiB, announced honestly.
    let (endpoint, conn) = m_connects(&w, served.addr).await;
    let (mut send, _recv) = conn.connection.open_bi().await.unwrap();
    let len = (yizhan_protocol::wire::MAX_FRAME + 1) as u32;
    send.write_all(&len.to_be_bytes()).await.unwrap();
    let err = served.next_failure().await;
    assert!(err.contains("exceeds the limit"), "{err}");
    endpoint.close().await;
    assert_eq!(snapshot(&w.station), before);
    still_serves_over_quic(&mut w, served.addr).await;
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_of_messages() {
    let mut w = world();
    let before = snapshot(&w.station);
    let mut served = serve(&w.station, 64).await;
    let (endpoint, conn) = m_connects(&w, served.addr).await;
    let (mut send, _recv) = conn.connection.open_bi().await.unwrap();
    // Hello, Pull, then 200,000 more Pulls (11 MB, past every flow-control window) as
    // fast as the stream takes them.
    let hello = m_hello(&w);
    let flood = async move {
        yizhan_node::net::write_frame(&mut send, &hello).await?;
        for _ in 0..200_001 {
            yizhan_node::net::write_frame(&mut send, &m_pull()).await?;
        }
        Ok::<_, yizhan_node::net::NetError>(())
    };
    let sent = tokio::time::timeout(Duration::from_secs(60), flood)
        .await
        .expect("the flood is cut off, not left hanging");
    let err = served.next_failure().await;
    assert!(err.contains("unexpected Pull"), "{err}");
    // The station stopped reading it: the flood could not all be delivered.
    assert!(sent.is_err(), "the whole flood was accepted");
    endpoint.close().await;
    assert_eq!(snapshot(&w.station), before);
    still_serves_over_quic(&mut w, served.addr).await;
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_of_streams() {
    let mut w = world();
    let before = snapshot(&w.station);
    let mut served = serve(&w.station, 64).await;
    let (endpoint, conn) = m_connects(&w, served.addr).await;
    // Four streams open at once, each with a Hello...
    let mut streams = Vec::new();
    for _ in 0..4 {
        let (mut send, recv) = conn.connection.open_bi().await.unwrap();
        yizhan_node::net::write_frame(&mut send, &m_hello(&w))
            .await
            .unwrap();
        streams.push((send, recv));
    }
    // ...and no fifth: the transport grants at most four.
    let fifth = tokio::time::timeout(Duration::from_secs(2), conn.connection.open_bi()).await;
    assert!(fifth.is_err(), "a fifth stream was granted");
    // The first stream then breaks the protocol: the station ends that connection.
    yizhan_node::net::write_frame(&mut streams[0].0, &[0xff; 8])
        .await
        .unwrap();
    let err = served.next_failure().await;
    assert!(err.contains("malformed message"), "{err}");
    let closed = tokio::time::timeout(Duration::from_secs(30), conn.connection.closed())
        .await
        .expect("the connection is closed");
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(_)),
        "{closed:?}"
    );
    endpoint.close().await;

    // Many connections at once: past `max_peers` they are turned away as busy.
    drop(streams);
    served.stop().await;
    let served = serve(&w.station, 3).await;
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(m_connects(&w, served.addr).await);
    }
    let mut busy = 0;
    for (_, conn) in &held {
        if let Ok(reason) =
            tokio::time::timeout(Duration::from_secs(2), conn.connection.closed()).await
            && reason.to_string().contains("busy")
        {
            busy += 1;
        }
    }
    assert_eq!(busy, 3);
    for (endpoint, conn) in held {
        conn.connection.close(0u32.into(), b"bye");
        endpoint.close().await;
    }
    assert_eq!(snapshot(&w.station), before);
    still_serves_over_quic(&mut w, served.addr).await;
    served.stop().await;
}

// ---------------------------------------------------------------------------------------
// Hostile documents inside a large batch
// ---------------------------------------------------------------------------------------

/// A large batch (over the size at which ingest checks signatures on a second thread and
/// builds new documents there) hides hostile new documents among honest ones: one nested
/// too deep, one with two different changes for one (actor, seq). They are refused as in a
/// small batch, the equivocation is recorded, and every honest document is stored.
#[test]
fn hostile_new_documents_hidden_in_a_large_batch() {
    let mut w = world();
    let s = Some(site(&w));
    let (a_key, m_key) = (w.a.node.device_key(), w.m.node.device_key());
    let mut batch = Vec::new();
    let mut honest = Vec::new();
    for i in 0..100 {
        let (header, _, env) = new_visit_by(&a_key, s, &format!("和平里 {i} 号"), now_ms());
        honest.push(header.doc_id());
        batch.push(DocChanges {
            header,
            changes: vec![env],
        });
    }
    // Nested one level past the limit, in a new document of M's own.
    let (deep_header, mut deep_doc, deep_genesis) = new_visit_by(&m_key, s, "深", now_ms());
    let deep = commit(&mut deep_doc, now_ms(), |am| {
        let mut obj = am.put_object(ROOT, "deep", ObjType::Map).unwrap();
        for _ in 0..yizhan_node::ingest::rules::MAX_OBJECT_DEPTH {
            obj = am.put_object(&obj, "x", ObjType::Map).unwrap();
        }
    });
    let deep = SignedChange::sign(&m_key, s, deep_header.doc_id(), &deep);
    batch.insert(
        40,
        DocChanges {
            header: deep_header,
            changes: vec![deep_genesis, deep],
        },
    );
    // Two different second changes of one new document.
    let (eq_header, mut first, eq_genesis) = new_visit_by(&m_key, s, "两面", now_ms());
    let mut second = first.fork().with_actor(actor(w.m.id()));
    let c2 = commit(&mut first, now_ms(), put_note("甲"));
    let c2b = commit(&mut second, now_ms(), put_note("乙"));
    assert_eq!((c2.seq(), c2b.seq()), (2, 2));
    let sign = |c: &automerge::Change| SignedChange::sign(&m_key, s, eq_header.doc_id(), c);
    batch.insert(
        70,
        DocChanges {
            header: eq_header,
            changes: vec![eq_genesis, sign(&c2), sign(&c2b)],
        },
    );

    let report = w.station.node.ingest(batch).unwrap();
    // The honest visits, the deep document's first change, and the first two of the
    // equivocating document.
    assert_eq!(report.accepted, 100 + 1 + 2, "{report:?}");
    assert_eq!(report.rejected.len(), 2, "{:?}", report.rejected);
    let reasons = rejected_reasons(&w.station);
    assert!(
        reasons.contains(&"it makes an object at `deep`, which a visit does not hold there".into()),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.starts_with("equivocation")));
    let seen = w.station.node.misbehaviour().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].device, w.m.id());
    // The deep document's nested change is not stored; every honest one is, and is listed.
    let stored = w.station.node.doc_changes(deep_header.doc_id()).unwrap();
    assert_eq!(stored.changes.len(), 1);
    for id in &honest {
        assert_eq!(w.station.node.doc_changes(*id).unwrap().changes.len(), 1);
    }
    let listed = w
        .station
        .node
        .list_visits(&Default::default())
        .unwrap()
        .into_iter()
        .filter(|v| honest.iter().any(|h| h.to_string() == v.id))
        .count();
    assert_eq!(listed, honest.len());
    still_serves(&mut w.station, &mut w.b);
}

// ---------------------------------------------------------------------------------------
// Floods that cost the receiver more than their size (fetch, roster), and a stranger's
// refusal: real QUIC against a station serving in a process of its own, whose memory and
// CPU time are measured
// ---------------------------------------------------------------------------------------

/// A station serving its home from a child process (this test binary running
/// [`station_process`]), so that what an attack costs it can be read from /proc.
struct StationProcess {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    lines: std::sync::mpsc::Receiver<String>,
}

const STATION_HOME_VAR: &str = "YIZHAN_ATTACKS_STATION_HOME";

/// The name libtest gives this module's test `test`, as `--exact` needs it when this test
/// binary runs one of its own tests in a child process: the module's path in the crate.
fn libtest_name(test: &str) -> String {
    match module_path!().split_once("::") {
        Some((_crate, module)) => format!("{module}::{test}"),
        None => test.to_string(),
    }
}

impl StationProcess {
    fn start(home: &std::path::Path) -> StationProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                &libtest_name("station_process"),
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(STATION_HOME_VAR, home)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut station = StationProcess {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            lines,
        };
        station.addr = loop {
            let line = station
                .lines
                .recv_timeout(Duration::from_secs(60))
                .expect("the station process listens");
            // (libtest may have begun the line with the test's name.)
            if let Some((_, addr)) = line.split_once("listening ") {
                break addr.parse().unwrap();
            }
        };
        station
    }

    /// A field of /proc/PID/status, in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    }

    /// The process's peak resident memory so far, in MiB.
    fn peak_mib(&self) -> u64 {
        self.status_kib("VmHWM:") / 1024
    }

    /// The process's CPU time so far (user and system).
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // The fields after the command name (which is in parentheses): utime and stime
        // are the 12th and 13th of them, in clock ticks (100 a second on Linux).
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<u64> = rest
            .split(' ')
            .skip(11)
            .take(2)
            .map(|v| v.parse().unwrap())
            .collect();
        Duration::from_millis((f[0] + f[1]) * 10)
    }

    /// The next sync failure the station logs, if one comes within `wait`.
    fn failure_within(&self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some((_, error)) = line.split_once("failed: ") {
                        return Some(error.to_string());
                    }
                }
                Err(_) => return None,
            }
        }
    }
}

impl Drop for StationProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The station's process of the attacks above: serves the home named by
/// `YIZHAN_ATTACKS_STATION_HOME` and prints where it listens and each failure, until it
/// is killed. Without that variable (run by hand) it does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the station process of the memory-measured attacks, which start it"]
async fn station_process() {
    use yizhan_node::daemon::{ServeConfig, ServeEvent};
    let Some(home) = std::env::var_os(STATION_HOME_VAR) else {
        return;
    };
    let node = Node::open(std::path::Path::new(&home)).unwrap();
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let config = ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_peers: 64,
        ..ServeConfig::default()
    };
    tokio::spawn(yizhan_node::daemon::serve(
        node.home_handle(),
        config,
        events_tx,
        stop_rx,
    ));
    while let Some(event) = events.recv().await {
        match event {
            ServeEvent::Listening(addr) => println!("listening {addr}"),
            ServeEvent::Synced { peer, stats } => println!("synced {peer} {stats:?}"),
            ServeEvent::Failed { error, .. } => {
                println!("failed: {}", error.replace(['\n', '\r'], " "))
            }
            _ => {}
        }
    }
}

/// `n` characters of text that does not compress (CJK ideographs from a xorshift).
fn incompressible(n: usize, seed: u64) -> String {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_u32(0x4e00 + (x % 20_000) as u32).unwrap()
        })
        .collect()
}

/// M asks the station again and again for sixty large visits of its grid (each answer a
/// full 3 MiB `Fetched`), granting no flow-control credit: it never reads. The station
/// builds an answer only when its writer can take it, ends the session at the second
/// `Fetch` sent before the first was answered, and its memory stays near its normal
/// size; it serves B during the flood and A after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_flood_from_a_member_that_does_not_read() {
    let mut w = world();
    let large: Vec<NewVisit> = (0..60)
        .map(|i| NewVisit {
            household: format!("和平里 {i} 号楼"),
            grid: Some(GRID.into()),
            // ~60 KB each, ~3.5 MB in all.
            note: Some(incompressible(20_000, i + 1)),
            ..NewVisit::default()
        })
        .collect();
    let mut docs = w.station.node.add_visits(&large).unwrap();
    docs.sort();
    let before = snapshot(&w.station);
    let station = StationProcess::start(w.station.node.home());
    let (endpoint, conn) = m_connects(&w, station.addr).await;
    let start_mib = station.peak_mib();
    // M's receiving half is never read.
    let (mut send, _recv) = conn.connection.open_bi().await.unwrap();
    let fetch = Message::Fetch(Fetch {
        docs: docs.iter().map(|d| (*d, vec![])).collect(),
    })
    .encode();
    let hello = m_hello(&w);
    let flood = async move {
        yizhan_node::net::write_frame(&mut send, &hello).await?;
        yizhan_node::net::write_frame(&mut send, &m_pull()).await?;
        for _ in 0..100 {
            yizhan_node::net::write_frame(&mut send, &fetch).await?;
        }
        Ok::<_, yizhan_node::net::NetError>(send)
    };
    // B syncs while the flood comes (and gets the sixty visits). (The station may stop
    // reading M: the flood may not all be delivered.)
    let b_home = w.b.node.home_handle();
    let honest = tokio::time::timeout(
        Duration::from_secs(120),
        yizhan_tests::sync_once(&b_home, station.addr),
    );
    let (held, during) = tokio::join!(tokio::time::timeout(Duration::from_secs(30), flood), honest);
    let during = during
        .expect("B's sync during the flood stalled")
        .expect("B's sync during the flood");
    assert!(during.stats.received >= 60, "{:?}", during.stats);
    let failure = station.failure_within(Duration::from_secs(30));
    // A hundred answers held at once would be 300 MiB.
    let grew = station.peak_mib().saturating_sub(start_mib);
    assert!(
        grew < 100,
        "the station grew by {grew} MiB (from {start_mib} MiB) under the flood"
    );
    let failure = failure.expect("the station ends the flooding session");
    assert!(failure.contains("unexpected Fetch"), "{failure}");
    drop(held);
    endpoint.close().await;
    w.station.reopen();
    assert_eq!(snapshot(&w.station), before);
    still_serves_over_quic(&mut w, station.addr).await;
    assert!(station.peak_mib() < start_mib + 100);
}

/// M sends ten rosters of ten thousand certificates each (about 2 MB each, every one
/// claiming the station's signature and carrying a bad one) before any data. The station
/// checks the first (one signature check per certificate, outside its write transaction)
/// and ends the session at the second; its CPU time for all of it stays small, and it
/// keeps serving A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_flood() {
    let mut w = world();
    let before = snapshot(&w.station);
    let members = |n: &TestNode| -> i64 {
        open_db(&n.node.home().join("store.db"))
            .query_row("SELECT COUNT(*) FROM members", [], |r| r.get(0))
            .unwrap()
    };
    let members_before = members(&w.station);
    let station = StationProcess::start(w.station.node.home());
    let (endpoint, conn) = m_connects(&w, station.addr).await;
    let (mut send, _recv) = conn.connection.open_bi().await.unwrap();
    let genuine = w.m.node.identity().cert.clone().unwrap();
    let certs: Vec<Signed<Certificate>> = (0..yizhan_protocol::wire::MAX_ROSTER as u64)
        .map(|i| {
            let mut junk = genuine.clone();
            junk.signature[..8].copy_from_slice(&i.to_le_bytes());
            junk
        })
        .collect();
    let roster = Message::Roster(Roster {
        certs,
        revocations: vec![],
    })
    .encode();
    assert!(roster.len() > 1_000_000);
    let cpu_before = station.cpu();
    let hello = m_hello(&w);
    let flood = async move {
        yizhan_node::net::write_frame(&mut send, &hello).await?;
        yizhan_node::net::write_frame(&mut send, &m_pull()).await?;
        for _ in 0..10 {
            yizhan_node::net::write_frame(&mut send, &roster).await?;
        }
        Ok::<_, yizhan_node::net::NetError>(send)
    };
    let held = tokio::time::timeout(Duration::from_secs(60), flood).await;
    let failure = station
        .failure_within(Duration::from_secs(60))
        .expect("the station ends the flooding session");
    assert!(failure.contains("unexpected Roster"), "{failure}");
    // One roster's signatures (10,000 checks) and two rosters decoded; ten rosters took
    // ten times that.
    let cpu = station.cpu() - cpu_before;
    assert!(
        cpu < Duration::from_secs(4),
        "the flood cost {cpu:?} of CPU"
    );
    drop(held);
    endpoint.close().await;
    w.station.reopen();
    assert_eq!(snapshot(&w.station), before);
    // Nothing of the junk was kept: the station's roster is as it was.
    assert_eq!(members(&w.station), members_before);
    still_serves_over_quic(&mut w, station.addr).await;
}

/// A device that is no member of the site connects and sends a `Refuse` whose reason
/// holds terminal escapes, before any `Hello`; and a hostile listener answers A's sync
/// the same way. Neither the station's log nor A's sync error shows the stranger's words,
/// and the station keeps serving A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_before_hello() {
    let mut w = world();
    let before = snapshot(&w.station);
    let words = "\u{1b}]0;pwned\u{7}\u{1b}[2J 驿站已关闭，请到 evil.example 重新登记";
    let refuse = Message::Refuse(words.into()).encode();
    let mut served = serve(&w.station, 64).await;
    // A stranger's device, not enrolled anywhere.
    let stranger = DeviceKey::from_seed([77; 32]);
    let endpoint = yizhan_node::net::Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        &stranger,
        &yizhan_node::net::NetConfig::default(),
    )
    .unwrap();
    let conn = endpoint.connect(served.addr).await.unwrap();
    let (mut send, _recv) = conn.connection.open_bi().await.unwrap();
    yizhan_node::net::write_frame(&mut send, &refuse)
        .await
        .unwrap();
    let _ = send.finish();
    let logged = served.next_failure().await;
    assert!(logged.contains("not been accepted"), "{logged}");
    assert!(
        !logged.contains("evil") && !logged.contains('\u{1b}'),
        "{logged:?}"
    );
    endpoint.close().await;

    // A listener that refuses A before introducing itself.
    let listener = yizhan_node::net::Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        &stranger,
        &yizhan_node::net::NetConfig::default(),
    )
    .unwrap();
    let at = listener.local_addr().unwrap();
    let hostile = tokio::spawn(async move {
        let conn = listener.accept().await.unwrap().unwrap();
        let (mut send, _recv) = conn.connection.accept_bi().await.unwrap();
        yizhan_node::net::write_frame(&mut send, &refuse)
            .await
            .unwrap();
        let _ = send.finish();
        let _ = tokio::time::timeout(Duration::from_secs(10), conn.connection.closed()).await;
    });
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        yizhan_tests::sync_once(&w.a.node.home_handle(), at),
    )
    .await
    .expect("the sync ends")
    .expect_err("a refusal is an error");
    let shown = err.to_string();
    assert!(shown.contains("not been accepted"), "{shown}");
    assert!(
        !shown.contains("evil") && !shown.contains('\u{1b}'),
        "{shown:?}"
    );
    hostile.await.unwrap();
    assert_eq!(snapshot(&w.station), before);
    still_serves_over_quic(&mut w, served.addr).await;
    served.stop().await;
}

// ---------------------------------------------------------------------------------------
// What a change writes: the record model, who wrote what, grids (rules::record_model),
// and a document that would not load back (rules::loads_back)
// ---------------------------------------------------------------------------------------

use automerge::ReadDoc;

/// The ticket the station opened in `world()`.
fn station_ticket(w: &World) -> DocId {
    let tickets = w.station.node.list_tickets(&Default::default()).unwrap();
    tickets[0].id.parse().unwrap()
}

/// A change by M to `doc` (held by `holder`): `edit` made on its copy with Automerge, then
/// rewritten operation by operation with `craft`, re-encoded and signed by M.
fn m_crafted(
    w: &World,
    holder: &TestNode,
    doc: DocId,
    edit: impl FnOnce(&mut AutoCommit),
    craft: impl FnOnce(&mut automerge::ExpandedChange),
) -> (DocHeader, SignedChange) {
    let (header, mut am) = fork_of(holder, doc, w.m.id());
    let change = commit(&mut am, now_ms(), edit);
    let mut expanded = change.decode();
    craft(&mut expanded);
    let change = automerge::Change::from(expanded);
    let env = SignedChange::sign(&w.m.node.device_key(), Some(site(w)), doc, &change);
    (header, env)
}

/// The id of the operation that wrote `key` of the root of `doc` as `holder` has it.
fn op_of(holder: &TestNode, doc: DocId, key: &str) -> automerge::legacy::OpId {
    let (_, am) = fork_of(holder, doc, holder.id());
    match am.get(ROOT, key).unwrap().unwrap().1 {
        automerge::ObjId::Id(counter, actor, _) => automerge::legacy::OpId::new(counter, &actor),
        automerge::ObjId::Root => unreachable!(),
    }
}

#[test]
fn a_change_that_would_leave_its_record_unreadable() {
    let mut w = world();
    let ticket = station_ticket(&w);
    // A valid field, a valid value, and a signature by a member who may write tickets; but
    // the value claims to replace an operation that is not there (at another key, the
    // title, or nowhere), or its operation ids start below those it builds on. Automerge
    // takes such a change in, and saves the document so that it no longer loads
    // ("mismatching heads", "max_op is lower than start_op"), on every node that stored it.
    let title = op_of(&w.m, ticket, "title");
    let nowhere = automerge::legacy::OpId::new(1, &actor(w.m.id()));
    type Craft = Box<dyn Fn(&mut automerge::ExpandedChange)>;
    let crafts: [Craft; 3] = [
        Box::new(move |e| e.operations[0].pred = vec![title.clone()].into_iter().collect()),
        Box::new(move |e| e.operations[0].pred = vec![nowhere.clone()].into_iter().collect()),
        Box::new(|e| e.start_op = std::num::NonZeroU64::MIN),
    ];
    for craft in crafts {
        let (header, env) = m_crafted(&w, &w.m, ticket, put_note("看不见的备注"), craft);
        let before = snapshot(&w.station);
        let before_a = snapshot(&w.a);
        let out = m_sends(&mut w, true, vec![vec![wire_doc(header, vec![wire(&env)])]]);
        all_refused(&out, 1);
        assert_eq!(
            last_reason(&w.station),
            "the record would not load back after it"
        );
        let out = m_sends(
            &mut w,
            false,
            vec![vec![wire_doc(header, vec![wire(&env)])]],
        );
        all_refused(&out, 1);
        assert_eq!(snapshot(&w.station), before);
        assert_eq!(snapshot(&w.a), before_a);
        for n in [&w.station, &w.a] {
            let shown = n
                .node
                .show_ticket(ticket)
                .expect("the ticket stays readable");
            assert_eq!(shown.ticket.note, None);
        }
    }
    still_serves(&mut w.station, &mut w.a);
    still_serves(&mut w.a, &mut w.b);
}

#[test]
fn changes_outside_the_record_model_are_refused_one_by_one() {
    let mut w = world();
    let s = Some(site(&w));
    let key = w.m.node.device_key();
    // New visits of M's own, each with one thing a visit log does not hold, among honest
    // ones in the same page.
    type Spoil = fn(&mut AutoCommit);
    let spoilt: [(Spoil, &str); 7] = [
        (
            |am| am.put(ROOT, "evil", "x").map(drop).unwrap(),
            "it writes `evil`, which a visit does not have",
        ),
        (
            |am| am.put(ROOT, "category", "bogus").map(drop).unwrap(),
            "it writes an invalid `category`",
        ),
        (
            |am| am.put(ROOT, "visited_at", "昨天").map(drop).unwrap(),
            "it writes an invalid `visited_at`",
        ),
        (
            |am| am.put(ROOT, "note", 42).map(drop).unwrap(),
            "it writes a value that is not text to `note`",
        ),
        (
            |am| am.put(ROOT, "kind", "ticket").map(drop).unwrap(),
            "it writes an invalid `kind`",
        ),
        (
            |am| am.put_object(ROOT, "note", ObjType::Map).map(drop).unwrap(),
            "it makes an object at `note`, which a visit does not hold there",
        ),
        (
            |am| {
                let l = am.put_object(ROOT, "residents", ObjType::List).unwrap();
                am.insert_object(&l, 0, ObjType::Map).unwrap();
            },
            "it writes into an object a visit does not hold",
        ),
    ];
    let mut page = Vec::new();
    let mut bad = Vec::new();
    for (spoil, _) in &spoilt {
        let header = DocHeader {
            kind: RecordKind::Visit,
            author: w.m.id(),
            nonce: rand::random(),
        };
        let id = header.doc_id();
        let mut am = AutoCommit::new().with_actor(actor(w.m.id()));
        let change = commit(&mut am, now_ms(), |am| {
            records::write_new_visit(
                am,
                id,
                &NewVisit {
                    household: "和平里 坏".into(),
                    grid: Some(GRID.into()),
                    ..NewVisit::default()
                },
                Time::now(),
            )
            .unwrap();
            spoil(am);
        });
        bad.push(id);
        page.push(wire_doc(
            header,
            vec![wire(&SignedChange::sign(&key, s, id, &change))],
        ));
    }
    let mut good = Vec::new();
    for i in 0..3 {
        let (header, _, env) = new_visit_by(&key, s, &format!("和平里 好 {i}"), now_ms());
        good.push(header.doc_id());
        page.insert(2 * i, wire_doc(header, vec![wire(&env)]));
    }
    let before = snapshot(&w.station);
    let out = m_sends(&mut w, true, vec![page]);
    let stats = out.victim.as_ref().expect("the station completes the sync");
    assert_eq!((stats.received, stats.rejected), (3, 7), "{out:?}");
    let mut reasons = rejected_reasons(&w.station);
    let mut expected: Vec<String> = spoilt.iter().map(|(_, r)| r.to_string()).collect();
    reasons.sort();
    expected.sort();
    assert_eq!(reasons, expected);
    for id in &bad {
        assert!(!holds(&w.station, *id));
    }
    for id in &good {
        assert!(holds(&w.station, *id));
    }
    assert_eq!(snapshot(&w.station).heads.len(), before.heads.len() + 3);
    still_serves(&mut w.station, &mut w.a);
}

#[test]
fn altering_a_comment_another_member_wrote() {
    let mut w = world();
    let ticket = station_ticket(&w);
    w.a.node.comment_ticket(ticket, "灯还是不亮").unwrap();
    sync_until_ok(&mut w.a, &mut w.station, 1);
    sync_until_ok(&mut w.m, &mut w.station, 1);
    let station_id = w.station.id().to_string();
    let comment = |am: &AutoCommit| {
        let (_, list) = am.get(ROOT, "comments").unwrap().unwrap();
        am.get(&list, 0).unwrap().unwrap().1
    };
    type Edit = Box<dyn FnOnce(&mut AutoCommit)>;
    let attempts: Vec<(Edit, &str)> = vec![
        (
            Box::new(move |am: &mut AutoCommit| {
                let c = comment(am);
                am.put(&c, "author", station_id).unwrap();
            }),
            "it alters a comment another member wrote",
        ),
        (
            Box::new(move |am: &mut AutoCommit| {
                let c = comment(am);
                am.put(&c, "text", "灯已经修好了").unwrap();
            }),
            "it alters a comment another member wrote",
        ),
        (
            Box::new(|am: &mut AutoCommit| {
                let (_, list) = am.get(ROOT, "comments").unwrap().unwrap();
                am.delete(&list, 0).unwrap();
            }),
            "it deletes part of the record",
        ),
        (
            Box::new(|am: &mut AutoCommit| {
                am.put_object(ROOT, "comments", ObjType::List).unwrap();
            }),
            "it makes an object at `comments`, which a ticket does not hold there",
        ),
    ];
    let shown = |n: &TestNode| {
        let t = n.node.show_ticket(ticket).unwrap();
        (t.comments, snapshot(n))
    };
    let before = shown(&w.station);
    let before_a = shown(&w.a);
    assert_eq!(before.0.len(), 1);
    assert_eq!(before.0[0].author, w.a.id().to_string());
    for (edit, reason) in attempts {
        let (header, mut am) = fork_of(&w.m, ticket, w.m.id());
        let change = commit(&mut am, now_ms(), edit);
        let env = SignedChange::sign(&w.m.node.device_key(), Some(site(&w)), ticket, &change);
        let out = m_sends(&mut w, true, vec![vec![wire_doc(header, vec![wire(&env)])]]);
        all_refused(&out, 1);
        assert_eq!(last_reason(&w.station), reason);
        let out = m_sends(
            &mut w,
            false,
            vec![vec![wire_doc(header, vec![wire(&env)])]],
        );
        all_refused(&out, 1);
        assert_eq!(last_reason(&w.a), reason);
    }
    assert_eq!(shown(&w.station), before);
    assert_eq!(shown(&w.a), before_a);
    // M's own comment still goes through, shown as M's.
    w.m.node.comment_ticket(ticket, "我也看到了").unwrap();
    sync_until_ok(&mut w.m, &mut w.station, 1);
    let comments = w.station.node.show_ticket(ticket).unwrap().comments;
    assert_eq!(comments.len(), 2);
    assert_eq!(comments[1].author, w.m.id().to_string());
    still_serves(&mut w.station, &mut w.a);
}

#[test]
fn records_written_or_moved_into_another_grid() {
    let mut w = world();
    let key = w.m.node.device_key();
    let s = Some(site(&w));
    // A new visit of M's in a grid M is not enrolled for.
    let header = DocHeader {
        kind: RecordKind::Visit,
        author: w.m.id(),
        nonce: rand::random(),
    };
    let id = header.doc_id();
    let mut am = AutoCommit::new().with_actor(actor(w.m.id()));
    let change = commit(&mut am, now_ms(), |am| {
        records::write_new_visit(
            am,
            id,
            &NewVisit {
                household: "光明街 1 号".into(),
                grid: Some("光明街".into()),
                ..NewVisit::default()
            },
            Time::now(),
        )
        .unwrap();
    });
    let new_elsewhere = (header, SignedChange::sign(&key, s, id, &change));
    // M's own visit, and the station's ticket, moved there.
    let move_to = |am: &mut AutoCommit| {
        am.put(ROOT, "grid", "光明街").unwrap();
    };
    let moved_visit = m_crafted(&w, &w.m, w.m_visit, move_to, |_| {});
    let moved_ticket = m_crafted(&w, &w.m, station_ticket(&w), move_to, |_| {});
    let reason = "a volunteer may write records only in its own grids, not in 光明街";
    for (header, env) in [new_elsewhere, moved_visit, moved_ticket] {
        let before = snapshot(&w.station);
        let before_a = snapshot(&w.a);
        let out = m_sends(&mut w, true, vec![vec![wire_doc(header, vec![wire(&env)])]]);
        all_refused(&out, 1);
        assert_eq!(last_reason(&w.station), reason);
        let out = m_sends(
            &mut w,
            false,
            vec![vec![wire_doc(header, vec![wire(&env)])]],
        );
        all_refused(&out, 1);
        assert_eq!(last_reason(&w.a), reason);
        assert_eq!(snapshot(&w.station), before);
        assert_eq!(snapshot(&w.a), before_a);
    }
    // The station writes in any grid; a volunteer holding a ticket of another grid (it is
    // assigned to it) may change its other fields, and that reaches the station.
    let elsewhere = w
        .station
        .node
        .open_ticket(&NewTicket {
            title: "光明街 路灯".into(),
            grid: Some("光明街".into()),
            assignee: Some(w.m.id()),
            ..NewTicket::default()
        })
        .unwrap();
    sync_until_ok(&mut w.m, &mut w.station, 1);
    w.m.node
        .update_ticket(
            elsewhere,
            &records::TicketUpdate {
                note: Some("明天去看".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let refused = w.m.node.update_ticket(
        elsewhere,
        &records::TicketUpdate {
            grid: Some("光明街".into()),
            ..Default::default()
        },
    );
    assert!(refused.is_err_and(|e| e.to_string().contains("only in its own grids")));
    sync_until_ok(&mut w.m, &mut w.station, 1);
    let t = w.station.node.show_ticket(elsewhere).unwrap();
    assert_eq!(t.ticket.note.as_deref(), Some("明天去看"));
    assert_eq!(t.ticket.grid.as_deref(), Some("光明街"));
    still_serves(&mut w.station, &mut w.a);
}

#[test]
fn a_revoked_devices_changes_merged_before_the_revocation_arrived() {
    let mut w = world();
    let mut r = TestNode::new("被撤销");
    enroll(&mut w.station, &mut r, &[GRID]);
    w.station.node.revoke(r.id(), "设备丢失").unwrap();
    // R, revoked, writes and syncs straight with A, who has not heard of it yet.
    let made = visit(&mut r, "和平里 撤销之后");
    sync_until_ok(&mut r, &mut w.a, 1);
    assert!(holds(&w.a, made));
    // Once A learns of the revocation, its store says what it holds unjudged: the visit
    // and the household it made for it.
    sync_until_ok(&mut w.a, &mut w.station, 1);
    let report = w.a.node.verify().unwrap();
    assert_eq!(report.bad, 2, "{:?}", report.problems);
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.contains("its author was revoked")),
        "{:?}",
        report.problems
    );
    // The station held both back from A's relay for its decision.
    assert_eq!(w.station.node.quarantine_list().unwrap().len(), 2);
    assert!(!holds(&w.station, made));
    assert_eq!(w.station.node.verify().unwrap().bad, 0);
}

// ---------------------------------------------------------------------------------------
// Operation bombs: a change's operations counted before it is decoded, a record's budget
// ---------------------------------------------------------------------------------------

fn leb(out: &mut Vec<u8>, n: u64) {
    leb128::write::unsigned(out, n).unwrap();
}

fn sleb(out: &mut Vec<u8>, n: i64) {
    leb128::write::signed(out, n).unwrap();
}

/// A hand-made change chunk by `actor` on top of `deps`: its header, then `columns`
/// (`(spec, data)`, in Automerge's order), framed with a right checksum. Returns the chunk
/// and its hash.
fn chunk(
    actor: DeviceId,
    seq: u64,
    start_op: u64,
    deps: &[automerge::ChangeHash],
    columns: &[(u32, Vec<u8>)],
) -> (Vec<u8>, ChangeHash) {
    let mut body = Vec::new();
    leb(&mut body, deps.len() as u64);
    for d in deps {
        body.extend_from_slice(&d.0);
    }
    leb(&mut body, 32);
    body.extend_from_slice(actor.as_bytes());
    leb(&mut body, seq);
    leb(&mut body, start_op);
    sleb(&mut body, now_ms());
    leb(&mut body, 0); // no message
    leb(&mut body, 0); // no other actors
    leb(&mut body, columns.len() as u64);
    for (spec, data) in columns {
        leb(&mut body, u64::from(*spec));
        leb(&mut body, data.len() as u64);
    }
    for (_, data) in columns {
        body.extend_from_slice(data);
    }
    let (bytes, hash) = yizhan_protocol::columns::frame_change(&body);
    (bytes, ChangeHash(hash))
}

/// One run of `n` equal unsigned values in a run-length column.
fn run(n: u64, value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    sleb(&mut out, n as i64);
    leb(&mut out, value);
    out
}

/// The next change M may make to `am` (a fork with M's actor): its seq, start op, deps.
fn next_of(am: &mut AutoCommit, m: DeviceId) -> (u64, u64, Vec<automerge::ChangeHash>) {
    let changes = am.get_changes(&[]);
    let seq = changes.iter().filter(|c| c.actor_id() == &actor(m)).count() as u64 + 1;
    let start = changes.iter().map(|c| c.max_op()).max().unwrap_or(0) + 1;
    (seq, start, am.get_heads())
}

/// A change by M to its own visit (M may write it) of `n` operations `note = true`, each
/// column a single run: under a hundred bytes whatever `n`, signed by M for the site.
fn m_bomb(w: &World, n: u64) -> (DocHeader, SignedChange) {
    let (header, mut am) = fork_of(&w.m, w.m_visit, w.m.id());
    let (seq, start, deps) = next_of(&mut am, w.m.id());
    let mut key = Vec::new();
    sleb(&mut key, n as i64);
    leb(&mut key, 4);
    key.extend_from_slice(b"note");
    let mut insert = Vec::new();
    leb(&mut insert, n); // n times false
    let columns = [
        (0x15, key),       // key string
        (0x34, insert),    // insert
        (0x42, run(n, 1)), // action: set
        (0x56, run(n, 6)), // value metadata: an empty string (no bytes)
        (0x70, run(n, 0)), // predecessors: none
    ];
    let (bytes, hash) = chunk(w.m.id(), seq, start, &deps, &columns);
    (header, m_signs(w, bytes, hash))
}

fn m_signs(w: &World, bytes: Vec<u8>, hash: ChangeHash) -> SignedChange {
    let key = w.m.node.device_key();
    SignedChange {
        doc: w.m_visit,
        hash,
        signer: w.m.id(),
        signature: key.sign(&signing_message(Some(site(w)), w.m_visit, hash)),
        bytes,
    }
}

const TOO_MANY_OPS: &str = "change declares more than 1024 operations";

#[test]
fn operation_bomb() {
    let mut w = world();
    // The hand-made layout is a change Automerge takes: a small one is stored.
    let (header, small) = m_bomb(&w, 3);
    let report = w
        .station
        .node
        .ingest(vec![DocChanges {
            header,
            changes: vec![small],
        }])
        .unwrap();
    assert_eq!(report.accepted, 1, "{report:?}");
    // Ten and twenty million operations in under a hundred bytes, each validly signed.
    for n in [10_000_000, 20_000_000, u64::from(u32::MAX) * 4] {
        let (header, env) = m_bomb(&w, n);
        assert!(env.bytes.len() < 200, "{} bytes", env.bytes.len());
        for to_station in [true, false] {
            let victim = if to_station { &w.station } else { &w.a };
            let before = snapshot(victim);
            let out = m_sends(
                &mut w,
                to_station,
                vec![vec![wire_doc(header, vec![wire(&env)])]],
            );
            all_refused(&out, 1);
            let victim = if to_station { &w.station } else { &w.a };
            assert_eq!(last_reason(victim), TOO_MANY_OPS);
            assert_eq!(snapshot(victim), before);
        }
        // And through ingest, as a relayed change would come.
        let before = snapshot(&w.station);
        let report = w
            .station
            .node
            .ingest(vec![DocChanges {
                header,
                changes: vec![env],
            }])
            .unwrap();
        assert_eq!((report.accepted, report.rejected.len()), (0, 1));
        assert_eq!(snapshot(&w.station), before);
    }
    still_serves(&mut w.station, &mut w.b);
    still_serves(&mut w.a, &mut w.b);
}

/// The operations are few, but another column declares millions of rows: the predecessors
/// of one operation (Automerge reads as many as the group column says), or the key strings.
#[test]
fn operation_bomb_in_the_columns_around_the_action() {
    let mut w = world();
    let (header, mut am) = fork_of(&w.m, w.m_visit, w.m.id());
    let (seq, start, deps) = next_of(&mut am, w.m.id());
    let mut note = Vec::new();
    sleb(&mut note, 1);
    leb(&mut note, 4);
    note.extend_from_slice(b"note");
    let mut one_false = Vec::new();
    leb(&mut one_false, 1);
    let n = 10_000_000u64;
    let mut pred_counter = Vec::new();
    sleb(&mut pred_counter, n as i64);
    sleb(&mut pred_counter, 0);
    let many_preds = [
        (0x15, note.clone()),
        (0x34, one_false.clone()),
        (0x42, run(1, 1)),
        (0x56, run(1, 2)),
        (0x70, run(1, n)),    // one operation with n predecessors
        (0x71, run(n, 0)),    // their actors
        (0x73, pred_counter), // their counters
    ];
    let mut keys = Vec::new();
    sleb(&mut keys, n as i64);
    leb(&mut keys, 4);
    keys.extend_from_slice(b"note");
    let many_keys = [
        (0x15, keys),
        (0x34, one_false),
        (0x42, run(1, 1)),
        (0x56, run(1, 2)),
        (0x70, run(1, 0)),
    ];
    let mut envs = Vec::new();
    for columns in [&many_preds[..], &many_keys[..]] {
        let (bytes, hash) = chunk(w.m.id(), seq, start, &deps, columns);
        envs.push(m_signs(&w, bytes, hash));
    }
    let before = snapshot(&w.station);
    let out = m_sends(
        &mut w,
        true,
        vec![vec![wire_doc(header, envs.iter().map(wire).collect())]],
    );
    all_refused(&out, 2);
    let reasons = rejected_reasons(&w.station);
    assert_eq!(reasons[reasons.len() - 2..], [TOO_MANY_OPS, TOO_MANY_OPS]);
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

/// A full page (`MAX_CHANGES_PER_MESSAGE`) of bombs, each declaring the most operations an
/// `i64` run can: every one is refused from its run headers, none decoded.
#[test]
fn a_page_of_operation_bombs() {
    let mut w = world();
    let n = yizhan_protocol::wire::MAX_CHANGES_PER_MESSAGE;
    let (header, env) = m_bomb(&w, i64::MAX as u64);
    let page = vec![wire_doc(header, vec![wire(&env); n])];
    assert!(
        Message::Changes(Changes {
            from: 0,
            upto: 1,
            last: true,
            docs: page.clone()
        })
        .encode()
        .len()
            < yizhan_protocol::wire::MAX_FRAME
    );
    let before = snapshot(&w.station);
    let out = m_sends(&mut w, true, vec![page]);
    let stats = out.victim.as_ref().expect("the victim completes the sync");
    assert_eq!(stats.received, 0, "{out:?}");
    assert!(stats.rejected >= 1, "{out:?}");
    assert!(
        rejected_reasons(&w.station)
            .iter()
            .all(|r| r == TOO_MANY_OPS)
    );
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

/// Changes each within the per-change limit add up, in one record, past the record's
/// budget: those that would take it over are refused, the record stays as it was before
/// them and still loads.
#[test]
fn record_over_its_operation_budget() {
    let mut w = world();
    let s = Some(site(&w));
    let key = w.m.node.device_key();
    let header = DocHeader {
        kind: RecordKind::Ticket,
        author: w.m.id(),
        nonce: rand::random(),
    };
    let id = header.doc_id();
    let mut am = AutoCommit::new().with_actor(actor(w.m.id()));
    let genesis = commit(&mut am, now_ms(), |am| {
        records::write_new_ticket(
            am,
            id,
            &NewTicket {
                title: "很多评论".into(),
                grid: Some(GRID.into()),
                ..NewTicket::default()
            },
            Time::now(),
        )
        .unwrap();
    });
    let mut changes = vec![SignedChange::sign(&key, s, id, &genesis)];
    let mut total = genesis.len() as u64;
    // 250 comments (1,000 operations) a change, until the record is past its budget.
    while total <= yizhan_node::ingest::rules::MAX_RECORD_OPS {
        let c = commit(&mut am, now_ms(), |am| {
            for i in 0..250 {
                records::write_comment(am, w.m.id(), &format!("第 {i} 条"), Time::now()).unwrap();
            }
        });
        assert!(c.len() as u64 <= yizhan_protocol::columns::MAX_CHANGE_OPS);
        total += c.len() as u64;
        changes.push(SignedChange::sign(&key, s, id, &c));
    }
    let last = changes.last().unwrap().hash;
    let report = w
        .station
        .node
        .ingest(vec![DocChanges {
            header,
            changes: changes.clone(),
        }])
        .unwrap();
    assert_eq!(report.accepted, changes.len() - 1, "{report:?}");
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    assert_eq!(report.rejected[0].hash, last);
    let reason = last_reason(&w.station);
    assert!(reason.starts_with("the record would hold"), "{reason}");
    let shown = w.station.node.show_ticket(id).unwrap();
    assert_eq!(shown.comments.len(), 250 * (changes.len() - 2));
    // Sent again on its own, the last change is refused again: nothing more is stored.
    let before = snapshot(&w.station);
    let report = w
        .station
        .node
        .ingest(vec![DocChanges {
            header,
            changes: vec![changes.pop().unwrap()],
        }])
        .unwrap();
    assert_eq!((report.accepted, report.rejected.len()), (0, 1));
    assert_eq!(snapshot(&w.station), before);
    still_serves(&mut w.station, &mut w.a);
}

/// This process's peak resident memory since the last reset, in KiB, and a reset.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
}

/// How much the peak resident memory of this process grows while `f` runs, in MiB.
fn peak_growth_mib(f: impl FnOnce()) -> u64 {
    let rss = || {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    reset_peak_rss();
    let base = rss();
    f();
    peak_rss_kib().saturating_sub(base) / 1024
}

/// The most a bomb may make the victim's peak memory grow, in MiB.
const BOMB_MEMORY_MIB: u64 = 64;

/// Run alone in a child process by [`operation_bombs_leave_memory_bounded`], so that its
/// peak memory is its own: M's bombs reach the station through a real sync session. A
/// bomb of a million operations (the station's peak grew by 570 MB for it before it was
/// refused before decoding), then a page of bombs at the most an `i64` run declares, then a
/// page of changes at the per-change limit each in a new record.
#[test]
#[ignore = "run by operation_bombs_leave_memory_bounded in a process of its own"]
fn operation_bombs_memory_child() {
    let mut w = world();
    let (header, env) = m_bomb(&w, 1_000_000);
    let grew = peak_growth_mib(|| {
        let out = m_sends(&mut w, true, vec![vec![wire_doc(header, vec![wire(&env)])]]);
        all_refused(&out, 1);
    });
    println!("one bomb of 1,000,000 operations: peak memory grew {grew} MiB");
    assert!(
        grew <= BOMB_MEMORY_MIB,
        "one bomb: peak memory grew {grew} MiB"
    );

    let (header, env) = m_bomb(&w, i64::MAX as u64);
    let page = vec![wire_doc(header, vec![wire(&env); 8192])];
    let grew = peak_growth_mib(|| {
        let out = m_sends(&mut w, true, vec![page]);
        assert_eq!(out.victim.unwrap().received, 0);
    });
    println!("a page of 8,192 bombs: peak memory grew {grew} MiB");
    assert!(
        grew <= BOMB_MEMORY_MIB,
        "a page of bombs: peak memory grew {grew} MiB"
    );

    // 1,000 new records of M's, each one change of 1,024 operations (at the limit): all
    // lawful by their size, each record within its budget.
    let key = w.m.node.device_key();
    let s = Some(site(&w));
    let mut docs = Vec::new();
    for _ in 0..1000 {
        let (header, mut am, genesis) = new_visit_by(&key, s, "和平里 大", now_ms());
        let (seq, start, deps) = next_of(&mut am, w.m.id());
        let n = yizhan_protocol::columns::MAX_CHANGE_OPS;
        let mut k = Vec::new();
        sleb(&mut k, n as i64);
        leb(&mut k, 4);
        k.extend_from_slice(b"note");
        let mut insert = Vec::new();
        leb(&mut insert, n);
        let columns = [
            (0x15, k),
            (0x34, insert),
            (0x42, run(n, 1)),
            (0x56, run(n, 2)),
            (0x70, run(n, 0)),
        ];
        let (bytes, hash) = chunk(w.m.id(), seq, start, &deps, &columns);
        let id = header.doc_id();
        let env = SignedChange {
            doc: id,
            hash,
            signer: w.m.id(),
            signature: key.sign(&signing_message(s, id, hash)),
            bytes,
        };
        docs.push(wire_doc(header, vec![wire(&genesis), wire(&env)]));
    }
    let started = Instant::now();
    let grew = peak_growth_mib(|| {
        let out = m_sends(&mut w, true, vec![docs]);
        out.victim.unwrap();
    });
    println!(
        "1,000 records of 1,024 operations each: peak memory grew {grew} MiB, {:?}",
        started.elapsed()
    );
    assert!(
        grew <= BOMB_MEMORY_MIB,
        "records at the limit: peak memory grew {grew} MiB"
    );
    still_serves(&mut w.station, &mut w.a);
}

/// The station's peak memory, measured in a process of its own (tests in one process share
/// their memory), stays within [`BOMB_MEMORY_MIB`] of its normal use under the bombs of
/// [`operation_bombs_memory_child`].
#[test]
fn operation_bombs_leave_memory_bounded() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            &libtest_name("operation_bombs_memory_child"),
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the child failed: {stdout}\n{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// Households and the policy: a shared record's id, the policy's writers, the values of
// their new fields
// ---------------------------------------------------------------------------------------

use yizhan_node::model::{Priority, Tag};
use yizhan_node::records::{Field, HouseholdEdit, NewHousehold};
use yizhan_protocol::{household_nonce, policy_nonce, shared_doc_id};

/// Each of `attempts` (a hand-made document and change, and the reason it must be
/// refused with) is sent by M alone, to the station and to A: refused with that reason,
/// nothing stored on either; afterwards both still serve.
fn each_refused_by_station_and_a(w: &mut World, attempts: Vec<(DocHeader, SignedChange, String)>) {
    for (header, env, reason) in attempts {
        let before = snapshot(&w.station);
        let before_a = snapshot(&w.a);
        let out = m_sends(w, true, vec![vec![wire_doc(header, vec![wire(&env)])]]);
        all_refused(&out, 1);
        assert_eq!(last_reason(&w.station), reason);
        let out = m_sends(w, false, vec![vec![wire_doc(header, vec![wire(&env)])]]);
        all_refused(&out, 1);
        assert_eq!(last_reason(&w.a), reason);
        assert_eq!(snapshot(&w.station), before, "{reason}");
        assert_eq!(snapshot(&w.a), before_a, "{reason}");
    }
    still_serves(&mut w.station, &mut w.a);
    still_serves(&mut w.a, &mut w.b);
}

/// A household started by `key`: its header with `nonce`, its first change writing `h`
/// (and then what `spoil` does).
fn new_household_by(
    key: &DeviceKey,
    site: SiteId,
    nonce: [u8; 16],
    h: &NewHousehold,
    spoil: impl FnOnce(&mut AutoCommit),
) -> (DocHeader, SignedChange) {
    let header = DocHeader {
        kind: RecordKind::Household,
        author: key.device_id(),
        nonce,
    };
    let id = header.doc_id();
    let mut am = AutoCommit::new().with_actor(actor(key.device_id()));
    let change = commit(&mut am, now_ms(), |am| {
        records::write_new_household(am, id, h, Some(Time::now())).unwrap();
        spoil(am);
    });
    (header, SignedChange::sign(key, Some(site), id, &change))
}

fn household_at(grid: &str, address: &str) -> NewHousehold {
    NewHousehold {
        address: address.into(),
        grid: Some(grid.into()),
        residents: vec!["张大爷".into()],
        tags: vec![Tag::ElderlyAlone],
        ..NewHousehold::default()
    }
}

#[test]
fn a_household_whose_address_and_grid_do_not_derive_its_id() {
    let mut w = world();
    let key = w.m.node.device_key();
    let s = site(&w);
    let reason = "it starts a household whose grid and address do not derive its id";
    let here = household_at(GRID, "和平里 5号");
    let derived = household_nonce(Some(&s), GRID, "和平里 5号");
    let attempts = vec![
        // The id of 和平里 5号, and another address in it.
        new_household_by(&key, s, derived, &household_at(GRID, "和平里 6号"), |_| {}),
        // The id of 和平里 5号 in another grid (or another site), written in M's grid.
        new_household_by(
            &key,
            s,
            household_nonce(Some(&s), "光明街", "和平里 5号"),
            &here,
            |_| {},
        ),
        new_household_by(
            &key,
            s,
            household_nonce(Some(&SiteId::from_bytes([7; 16])), GRID, "和平里 5号"),
            &here,
            |_| {},
        ),
        // A random id.
        new_household_by(&key, s, rand::random(), &here, |_| {}),
        // The right id, without the grid.
        new_household_by(
            &key,
            s,
            derived,
            &NewHousehold {
                address: "和平里 5号".into(),
                grid: None,
                ..NewHousehold::default()
            },
            |_| {},
        ),
    ];
    let attempts = attempts
        .into_iter()
        .map(|(h, e)| (h, e, reason.to_string()))
        .collect();
    each_refused_by_station_and_a(&mut w, attempts);
    // The one that derives its id goes through, and reaches A through the station.
    let (header, env) = new_household_by(&key, s, derived, &here, |_| {});
    let out = m_sends(&mut w, true, vec![vec![wire_doc(header, vec![wire(&env)])]]);
    assert_eq!(out.victim.expect("sync").received, 1);
    sync_until_ok(&mut w.a, &mut w.station, 1);
    let shown = w.a.node.show_household(header.doc_id()).unwrap();
    assert_eq!(shown.household.address, "和平里 5号");
    assert_eq!(shown.household.tags, ["elderly-alone"]);
}

#[test]
fn a_household_in_a_grid_the_member_may_not_write() {
    let mut w = world();
    let key = w.m.node.device_key();
    let s = site(&w);
    let (header, env) = new_household_by(
        &key,
        s,
        household_nonce(Some(&s), "光明街", "光明街 1号"),
        &household_at("光明街", "光明街 1号"),
        |_| {},
    );
    let reason = "a volunteer may write records only in its own grids, not in 光明街".to_string();
    each_refused_by_station_and_a(&mut w, vec![(header, env, reason)]);
}

/// A's household in the grid, held by everyone.
fn a_household(w: &mut World) -> DocId {
    let id =
        w.a.node
            .add_household(&household_at(GRID, "和平里 8号"))
            .unwrap();
    sync_until_ok(&mut w.a, &mut w.station, 1);
    sync_until_ok(&mut w.m, &mut w.station, 1);
    id
}

#[test]
fn household_tags_that_are_not_the_ledgers() {
    let mut w = world();
    let household = a_household(&mut w);
    let key = w.m.node.device_key();
    let s = site(&w);
    type Edit = Box<dyn FnOnce(&mut AutoCommit)>;
    let edits: Vec<(Edit, &str)> = vec![
        (
            Box::new(|am| am.put(ROOT, "tag:elderly-alone", "yes").map(drop).unwrap()),
            "it writes an invalid `tag:elderly-alone`",
        ),
        (
            Box::new(|am| am.put(ROOT, "tag:disabled", "TRUE").map(drop).unwrap()),
            "it writes an invalid `tag:disabled`",
        ),
        (
            Box::new(|am| am.put(ROOT, "tag:disabled", "").map(drop).unwrap()),
            "it writes an invalid `tag:disabled`",
        ),
        (
            Box::new(|am| am.put(ROOT, "tag:disabled", true).map(drop).unwrap()),
            "it writes a value that is not text to `tag:disabled`",
        ),
        (
            Box::new(|am| am.put(ROOT, "tag:unknown", "true").map(drop).unwrap()),
            "it writes `tag:unknown`, which a household does not have",
        ),
        (
            Box::new(|am| am.put(ROOT, "tag:", "true").map(drop).unwrap()),
            "it writes `tag:`, which a household does not have",
        ),
        (
            Box::new(|am| {
                am.put(ROOT, "visit_every:elderly-alone", "1")
                    .map(drop)
                    .unwrap()
            }),
            "it writes `visit_every:elderly-alone`, which a household does not have",
        ),
        (
            Box::new(|am| {
                am.put_object(ROOT, "tag:disabled", ObjType::Map)
                    .map(drop)
                    .unwrap()
            }),
            "it makes an object at `tag:disabled`, which a household does not hold there",
        ),
    ];
    let mut attempts = Vec::new();
    for (edit, reason) in edits {
        let (header, mut am) = fork_of(&w.m, household, w.m.id());
        let change = commit(&mut am, now_ms(), edit);
        let env = SignedChange::sign(&key, Some(s), household, &change);
        attempts.push((header, env, reason.to_string()));
    }
    // A new household of M's with an unknown tag beside its own.
    let (header, env) = new_household_by(
        &key,
        s,
        household_nonce(Some(&s), GRID, "和平里 9号"),
        &household_at(GRID, "和平里 9号"),
        |am| {
            am.put(ROOT, "tag:vip", "true").unwrap();
        },
    );
    attempts.push((
        header,
        env,
        "it writes `tag:vip`, which a household does not have".into(),
    ));
    each_refused_by_station_and_a(&mut w, attempts);
    // M tags and untags through its node: that reaches the station.
    w.m.node
        .edit_household(
            household,
            &HouseholdEdit {
                tag: vec![Tag::Disabled],
                untag: vec![Tag::ElderlyAlone],
                ..HouseholdEdit::default()
            },
        )
        .unwrap();
    sync_until_ok(&mut w.m, &mut w.station, 1);
    let shown = w.station.node.show_household(household).unwrap();
    assert_eq!(shown.household.tags, ["disabled"]);
}

#[test]
fn visits_that_name_a_household_id_that_is_not_one() {
    let mut w = world();
    let key = w.m.node.device_key();
    let s = site(&w);
    let reason = "it writes an invalid `household_id`";
    let real = household_nonce(Some(&s), GRID, "和平里 2号");
    let real = shared_doc_id(RecordKind::Household, &real).to_string();
    let not_ids = [
        "xyz".to_string(),
        real[..31].to_string(),
        format!("{real}0"),
        real.to_uppercase(),
        format!("{real}{real}"),
        String::new(),
        format!("{} ", &real[..31]),
    ];
    let mut attempts = Vec::new();
    for bad in not_ids {
        let header = DocHeader {
            kind: RecordKind::Visit,
            author: w.m.id(),
            nonce: rand::random(),
        };
        let id = header.doc_id();
        let mut am = AutoCommit::new().with_actor(actor(w.m.id()));
        let change = commit(&mut am, now_ms(), |am| {
            records::write_new_visit(
                am,
                id,
                &NewVisit {
                    household: "和平里 2号".into(),
                    grid: Some(GRID.into()),
                    ..NewVisit::default()
                },
                Time::now(),
            )
            .unwrap();
            am.put(ROOT, "household_id", bad.as_str()).unwrap();
        });
        attempts.push((
            header,
            SignedChange::sign(&key, Some(s), id, &change),
            reason.into(),
        ));
    }
    // And M's own visit, edited to name one.
    let edit = |am: &mut AutoCommit| {
        am.put(ROOT, "household_id", "../../etc/passwd").unwrap();
    };
    let (header, env) = m_crafted(&w, &w.m, w.m_visit, edit, |_| {});
    attempts.push((header, env, reason.into()));
    each_refused_by_station_and_a(&mut w, attempts);
    assert_eq!(
        w.station
            .node
            .show_visit(w.m_visit)
            .unwrap()
            .visit
            .household_id,
        w.m.node.show_visit(w.m_visit).unwrap().visit.household_id
    );
}

/// The station sets the policy and every member syncs it; returns the policy's id.
fn station_policy(w: &mut World) -> DocId {
    w.station
        .node
        .set_visit_every(Tag::ElderlyAlone, 7)
        .unwrap();
    for v in [&mut w.a, &mut w.b, &mut w.m] {
        sync_until_ok(v, &mut w.station, 1);
    }
    shared_doc_id(RecordKind::Policy, &policy_nonce(Some(&site(w))))
}

fn policy_change(
    key: &DeviceKey,
    site: SiteId,
    header: DocHeader,
    am: &mut AutoCommit,
    field: Field,
    days: &str,
) -> SignedChange {
    let id = header.doc_id();
    let change = commit(am, now_ms(), |am| {
        if am.get(ROOT, "kind").unwrap().is_none() {
            records::write_policy(am, id, field, 30).unwrap();
        }
        am.put(ROOT, field.as_str(), days).unwrap();
    });
    SignedChange::sign(key, Some(site), id, &change)
}

#[test]
fn a_policy_written_by_a_volunteer() {
    let mut w = world();
    let key = w.m.node.device_key();
    let s = site(&w);
    let reason = "only a station may write the policy".to_string();
    // Before the station set one: M starts the site's policy, or another of its own.
    let mut attempts = Vec::new();
    for nonce in [policy_nonce(Some(&s)), rand::random()] {
        let header = DocHeader {
            kind: RecordKind::Policy,
            author: w.m.id(),
            nonce,
        };
        let mut am = AutoCommit::new().with_actor(actor(w.m.id()));
        let env = policy_change(
            &key,
            s,
            header,
            &mut am,
            Field::VisitEvery(Tag::ElderlyAlone),
            "365",
        );
        attempts.push((header, env, reason.clone()));
    }
    each_refused_by_station_and_a(&mut w, attempts);
    // After: M changes the station's policy on its copy.
    let policy = station_policy(&mut w);
    let (header, mut am) = fork_of(&w.m, policy, w.m.id());
    let env = policy_change(
        &key,
        s,
        header,
        &mut am,
        Field::TicketDue(Priority::Urgent),
        "30",
    );
    each_refused_by_station_and_a(&mut w, vec![(header, env, reason)]);
    for n in [&w.station, &w.a, &w.b] {
        let p = n.node.policy().unwrap();
        assert_eq!(p.visit_every["elderly-alone"], 7);
        assert_eq!(p.ticket_due["urgent"], 1);
    }
}

/// A second station of the site (enrolled as one) may write the site's policy, but not
/// start a second policy with an id of its own, nor write days the policy does not hold.
#[test]
fn a_second_policy_or_days_out_of_range_from_a_station() {
    let mut w = world();
    let policy = station_policy(&mut w);
    let mut s2 = TestNode::new("第二驿站");
    yizhan_tests::enroll_as(&mut w.station, &mut s2, &[GRID], MemberRole::Station);
    sync_until_ok(&mut s2, &mut w.station, 1);
    sync_until_ok(&mut w.a, &mut w.station, 1);
    let key = s2.node.device_key();
    let s = site(&w);
    let cert = s2.node.identity().cert.clone().unwrap();
    let mut attempts = Vec::new();
    for _ in 0..2 {
        let header = DocHeader {
            kind: RecordKind::Policy,
            author: s2.id(),
            nonce: rand::random(),
        };
        let mut am = AutoCommit::new().with_actor(actor(s2.id()));
        let env = policy_change(
            &key,
            s,
            header,
            &mut am,
            Field::VisitEvery(Tag::ElderlyAlone),
            "1",
        );
        attempts.push((header, env, "it writes a policy that is not its site's"));
    }
    for days in ["0", "3651", "7 ", "-1", "1e3", "０７"] {
        let (header, mut am) = fork_of(&s2, policy, s2.id());
        let env = policy_change(
            &key,
            s,
            header,
            &mut am,
            Field::VisitEvery(Tag::Ordinary),
            days,
        );
        attempts.push((header, env, "it writes an invalid `visit_every:ordinary`"));
    }
    for (header, env, reason) in attempts {
        for victim in [&mut w.station, &mut w.a] {
            let before = snapshot(victim);
            let out = attack(
                victim,
                s2.id(),
                cert.clone(),
                Script {
                    pages: vec![vec![wire_doc(header, vec![wire(&env)])]],
                    ..Script::default()
                },
            );
            all_refused(&out, 1);
            assert_eq!(last_reason(victim), reason);
            assert_eq!(snapshot(victim), before, "{reason}");
        }
    }
    // Its change to the site's policy goes through and reaches the laptops.
    let (header, mut am) = fork_of(&s2, policy, s2.id());
    let env = policy_change(
        &key,
        s,
        header,
        &mut am,
        Field::VisitEvery(Tag::Ordinary),
        "90",
    );
    let out = attack(
        &mut w.station,
        s2.id(),
        cert,
        Script {
            pages: vec![vec![wire_doc(header, vec![wire(&env)])]],
            ..Script::default()
        },
    );
    assert_eq!(out.victim.expect("sync").received, 1);
    sync_until_ok(&mut w.a, &mut w.station, 1);
    let p = w.a.node.policy().unwrap();
    assert_eq!(
        (p.visit_every["ordinary"], p.visit_every["elderly-alone"]),
        (90, 7)
    );
    let db = open_db(&w.a.node.home().join("store.db"));
    let policies: i64 = db
        .query_row("SELECT COUNT(*) FROM records WHERE kind = 4", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(policies, 1);
    still_serves(&mut w.station, &mut w.a);
}

/// A member deletes the last value of a field of a record others made (a household's grid
/// would take it out of every grid's scope, a ticket's title would leave it nameless):
/// refused at the station and at a laptop; settling a conflict, which deletes only the
/// other values, still reaches everyone.
#[test]
fn deleting_the_last_value_of_a_field() {
    let mut w = world();
    let household = a_household(&mut w);
    let key = w.m.node.device_key();
    let s = site(&w);
    let mut attempts = Vec::new();
    for field in ["grid", "address"] {
        let (header, mut am) = fork_of(&w.m, household, w.m.id());
        let change = commit(&mut am, now_ms(), |am| {
            am.delete(ROOT, field).unwrap();
        });
        let env = SignedChange::sign(&key, Some(s), household, &change);
        attempts.push((header, env, format!("it removes the record's `{field}`")));
    }
    each_refused_by_station_and_a(&mut w, attempts);
    for n in [&w.station, &w.a] {
        let shown = n.node.show_household(household).unwrap();
        assert_eq!(shown.household.grid.as_deref(), Some(GRID));
        assert_eq!(shown.household.address, "和平里 8号");
    }
}

// ---------------------------------------------------------------------------------------
// Notices: a member adds its own read mark, once, and nothing else
// ---------------------------------------------------------------------------------------

/// The notice `id` as `n` lists it.
fn notice_at(n: &TestNode, id: DocId) -> records::Notice {
    n.node
        .list_notices(true)
        .unwrap()
        .into_iter()
        .find(|x| x.id == id.to_string())
        .expect("the notice is held")
}

#[test]
fn a_notice_altered_or_marked_read_for_another_member() {
    let mut w = world();
    let notice = w
        .station
        .node
        .publish_notice(&records::NewNotice {
            title: "停水通知".into(),
            body: "周三上午和平里停水。".into(),
            grids: vec![GRID.into()],
            until: None,
        })
        .unwrap();
    sync_until_ok(&mut w.m, &mut w.station, 1);
    sync_until_ok(&mut w.a, &mut w.station, 1);
    assert!(holds(&w.m, notice) && holds(&w.a, notice));
    let key = w.m.node.device_key();
    let s = Some(site(&w));
    let a_mark = format!("read:{}", w.a.id());
    let station_mark = format!("read:{}", w.station.id());
    type Edit = Box<dyn FnOnce(&mut AutoCommit)>;
    let attempts: Vec<(Edit, &str)> = vec![
        (
            Box::new(|am: &mut AutoCommit| {
                am.put(ROOT, "title", "通知取消").unwrap();
            }),
            "only a station may write a notice's `title`; a member adds only its own read mark",
        ),
        (
            Box::new(move |am: &mut AutoCommit| {
                am.put(ROOT, a_mark.as_str(), Time::now().to_rfc3339())
                    .unwrap();
            }),
            "it writes another member's read mark",
        ),
        (
            Box::new(move |am: &mut AutoCommit| {
                am.put(ROOT, station_mark.as_str(), Time::now().to_rfc3339())
                    .unwrap();
            }),
            "it writes another member's read mark",
        ),
        (
            Box::new(|am: &mut AutoCommit| {
                am.put(ROOT, "grids", "光明街").unwrap();
            }),
            "only a station may write a notice's `grids`; a member adds only its own read mark",
        ),
        (
            Box::new(|am: &mut AutoCommit| {
                am.delete(ROOT, "until").unwrap_or(());
                am.delete(ROOT, "title").unwrap();
            }),
            "it deletes part of the record",
        ),
    ];
    let before = notice_at(&w.station, notice);
    let before_a = notice_at(&w.a, notice);
    for (i, (edit, reason)) in attempts.into_iter().enumerate() {
        let (header, mut am) = fork_of(&w.m, notice, w.m.id());
        let change = commit(&mut am, now_ms(), edit);
        let env = SignedChange::sign(&key, s, notice, &change);
        // An honest record of M's in the same page: it is kept.
        let (visit_header, _, visit) = new_visit_by(&key, s, &format!("和平里 {i} 号楼"), now_ms());
        for to_station in [true, false] {
            let page = vec![
                wire_doc(header, vec![wire(&env)]),
                wire_doc(visit_header, vec![wire(&visit)]),
            ];
            let out = m_sends(&mut w, to_station, vec![page]);
            let stats = out.victim.as_ref().expect("the victim completes the sync");
            assert_eq!((stats.rejected, stats.received), (1, 1), "{out:?}");
            let victim = if to_station { &w.station } else { &w.a };
            assert_eq!(last_reason(victim), reason);
            assert!(victim.node.show_visit(visit_header.doc_id()).is_ok());
        }
    }
    assert_eq!(notice_at(&w.station, notice), before);
    assert_eq!(notice_at(&w.a, notice), before_a);
    assert_eq!(before.title, "停水通知");
    assert!(before.read_by.is_empty());

    // A volunteer's notice of its own is refused whole.
    let header = DocHeader {
        kind: RecordKind::Notice,
        author: w.m.id(),
        nonce: rand::random(),
    };
    let mut am = AutoCommit::new().with_actor(actor(w.m.id()));
    let change = commit(&mut am, now_ms(), |am| {
        let n = records::NewNotice {
            title: "假通知".into(),
            body: "假的".into(),
            ..Default::default()
        };
        records::write_new_notice(am, header.doc_id(), &n, Time::now()).unwrap();
    });
    let env = SignedChange::sign(&key, s, header.doc_id(), &change);
    let out = m_sends(&mut w, true, vec![vec![wire_doc(header, vec![wire(&env)])]]);
    all_refused(&out, 1);
    assert_eq!(
        last_reason(&w.station),
        "only a station may publish a notice"
    );
    assert!(!holds(&w.station, header.doc_id()));

    // M's own mark is taken, once: written again (superseding it) or beside it (a
    // crafted second value), it is refused.
    w.m.node.read_notice(notice).unwrap();
    sync_until_ok(&mut w.m, &mut w.station, 1);
    assert_eq!(
        notice_at(&w.station, notice).read_by,
        [w.m.id().to_string()]
    );
    let mark = format!("read:{}", w.m.id());
    // Another time than the mark holds (a value put again unchanged writes nothing).
    let again = |am: &mut AutoCommit| {
        am.put(ROOT, mark.as_str(), "2026-01-02T03:04:05Z").unwrap();
    };
    let (header, mut am) = fork_of(&w.m, notice, w.m.id());
    let change = commit(&mut am, now_ms(), again);
    let env = SignedChange::sign(&key, s, notice, &change);
    let out = m_sends(&mut w, true, vec![vec![wire_doc(header, vec![wire(&env)])]]);
    all_refused(&out, 1);
    assert_eq!(
        last_reason(&w.station),
        "it marks a notice read a second time"
    );
    let (header, env) = m_crafted(&w, &w.m, notice, again, |e| {
        e.operations[0].pred = Vec::new().into_iter().collect();
    });
    let out = m_sends(&mut w, true, vec![vec![wire_doc(header, vec![wire(&env)])]]);
    all_refused(&out, 1);
    assert_eq!(
        last_reason(&w.station),
        "it marks a notice read a second time"
    );
    let held = notice_at(&w.station, notice);
    assert_eq!(held.read_by, [w.m.id().to_string()]);
    assert_eq!(held.title, "停水通知");
    still_serves(&mut w.station, &mut w.a);
}

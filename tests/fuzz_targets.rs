//! The bodies of the fuzz targets, shared by the `cargo fuzz` binaries in `fuzz/` and the
//! stable smoke test (`tests/tests/fuzz_smoke.rs`), and the generator of their seed corpora.
//!
//! Each body takes arbitrary bytes, as a hostile peer could send them, and must never
//! panic: a panic that escapes a body is a finding. Panics that the code under test
//! contains on purpose (Automerge's decoder and `apply_changes` run under `catch_unwind`)
//! are counted by [`contained_panics`] and are not findings in themselves.
//!
//! | target | what it decodes |
//! | --- | --- |
//! | [`frame`] | a byte stream as read from a sync stream: length-prefixed frames, each a `Message` |
//! | [`message`] | a sequence of frames fed to a real `protocol::sync::Session`, answered as a node would |
//! | [`envelope`] | a `WireChange`: Automerge change decoding, a first change read without Automerge, envelope rebuild, strict verification, apply |
//! | [`statement`] | signed certificates, revocations and receipts, whole or as fuzzed bodies signed by the root |
//! | [`token`] | the one-line `yzt1-` enrolment token |
//! | [`ingest`] | a batch of signed changes handed to a real station's `Node::ingest`, on a fresh copy of a store |
//!
//! The input layouts are simple byte formats (documented on each body), so that real data
//! from [`seeds`] is a valid input and libFuzzer's mutations stay meaningful.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use automerge::AutoCommit;
use tempfile::TempDir;
use yizhan_node::Node;
use yizhan_node::home::{InitConfig, InitSeed, TicketFilter, VisitFilter};
use yizhan_node::records::{NewTicket, NewVisit, TicketUpdate, VisitEdit};
use yizhan_node::site::EnrollRequest;
use yizhan_node::sync::{SyncConfig, SyncEngine};
use yizhan_protocol::columns::MAX_CHANGE_OPS;
use yizhan_protocol::envelope::{MAX_CHANGE_BYTES, decode_change, signing_message};
use yizhan_protocol::identity::KeyCache;
use yizhan_protocol::signed::Signed;
use yizhan_protocol::sync::{Event, Session, SessionConfig, SessionError};
use yizhan_protocol::wire::{
    Changes, Fetch, Fetched, MAX_FRAME, Message, Pull, Roster, WireChange, WireDoc,
};
use yizhan_protocol::{
    Certificate, DeviceId, DeviceKey, DocHeader, DocId, MemberRole, Receipt, RecordKind,
    Revocation, SignedChange, SiteId, Token,
};

/// A target's body.
pub type Body = fn(&[u8]);

/// Every target: its name (the `fuzz/fuzz_targets/<name>.rs` binary and the corpus
/// directory) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("frame", frame),
    ("message", message),
    ("envelope", envelope),
    ("statement", statement),
    ("token", token),
    ("ingest", ingest),
];

// ---------------------------------------------------------------------------------------
// Fixed keys and panic accounting
// ---------------------------------------------------------------------------------------

/// The fixed test keys: the site's root station, two volunteers (the second is revoked in
/// the ingest target's store) and a device of no site.
pub mod keys {
    use yizhan_protocol::DeviceKey;

    /// Seed of the root station's key.
    pub const ROOT: [u8; 32] = [0x11; 32];
    /// Seed of volunteer A's key.
    pub const VOLUNTEER: [u8; 32] = [0x22; 32];
    /// Seed of volunteer B's key (revoked in the ingest store).
    pub const REVOKED: [u8; 32] = [0x33; 32];
    /// Seed of a device that belongs to no site.
    pub const OUTSIDER: [u8; 32] = [0x44; 32];

    /// The four keys, by index (inputs pick signers by `index % 4`).
    pub fn all() -> [DeviceKey; 4] {
        [ROOT, VOLUNTEER, REVOKED, OUTSIDER].map(DeviceKey::from_seed)
    }
}

/// The test site (named by [`keys::ROOT`]).
pub fn site() -> SiteId {
    SiteId::for_root(DeviceKey::from_seed(keys::ROOT).device_id())
}

/// A fixed "now" for certificate checks (2026-01-01), so that runs are reproducible.
pub const NOW_MS: i64 = 1_767_225_600_000;

static CONTAINED: AtomicUsize = AtomicUsize::new(0);
static SEEN_PANICS: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Replaces the panic hook (once per process): every panic is counted, and the first one
/// at each source location is printed with its message. Contained panics are then not
/// fatal; one that escapes a body still fails it (libFuzzer's harness aborts on it, and
/// the smoke test's `catch_unwind` reports it).
pub fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            CONTAINED.fetch_add(1, Ordering::Relaxed);
            let location = info
                .location()
                .map_or_else(|| "?".to_string(), |l| format!("{}:{}", l.file(), l.line()));
            let mut seen = SEEN_PANICS.lock().unwrap_or_else(|e| e.into_inner());
            if seen
                .get_or_insert_with(HashSet::new)
                .insert(location.clone())
            {
                let payload = info.payload();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                eprintln!("[fuzz] panic at {location}: {message}");
            }
        }));
    });
}

/// How many panics this process has seen (contained ones included).
pub fn contained_panics() -> usize {
    CONTAINED.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------
// A small reader for structured inputs
// ---------------------------------------------------------------------------------------

/// Reads a fuzz input front to back; past the end it yields zeros and empty slices, so
/// every input means something.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for b in &mut out {
            *b = self.u8();
        }
        out
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// ---------------------------------------------------------------------------------------
// frame
// ---------------------------------------------------------------------------------------

/// The result of reading one frame from a byte stream.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameRead<'a> {
    /// The stream ended cleanly between frames.
    End,
    /// One frame's payload, and the rest of the stream.
    Frame(&'a [u8], &'a [u8]),
    /// The length is over the limit (refused before anything is allocated).
    TooLarge(u32),
    /// The stream ended inside a frame, after this many bytes of it.
    Truncated(usize),
}

/// Reads one frame as `yizhan_node::net::read_frame` does from a QUIC stream: a 4-byte
/// big-endian length, refused over `max_len` before reading on, then the payload; a stream
/// that ends inside the length or the payload is truncated.
pub fn read_frame(stream: &[u8], max_len: usize) -> FrameRead<'_> {
    if stream.is_empty() {
        return FrameRead::End;
    }
    let Some((header, rest)) = stream.split_first_chunk::<4>() else {
        return FrameRead::Truncated(stream.len());
    };
    let len = u32::from_be_bytes(*header);
    let Some(size) = usize::try_from(len).ok().filter(|&s| s <= max_len) else {
        return FrameRead::TooLarge(len);
    };
    if rest.len() < size {
        return FrameRead::Truncated(4 + rest.len());
    }
    let (payload, rest) = rest.split_at(size);
    FrameRead::Frame(payload, rest)
}

/// Splits a stream into frames until it ends, is truncated or a length is refused.
pub fn frames(mut stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let FrameRead::Frame(payload, rest) = read_frame(stream, MAX_FRAME) {
        out.push(payload);
        stream = rest;
    }
    out
}

/// Encodes payloads as a stream of frames (the inverse of [`frames`]).
pub fn encode_frames<'a>(payloads: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// Decodes one frame payload as a message and checks what a decoded message promises: it
/// is within the limits, re-encodes to a payload that decodes to the same message, and
/// every change it carries can be rebuilt and verified (or refused) without a panic.
fn check_message(payload: &[u8]) -> Option<Message> {
    let msg = Message::decode(payload).ok()?;
    let encoded = msg.encode();
    assert!(
        encoded.len() <= payload.len(),
        "a decoded message re-encodes longer than it came"
    );
    assert_eq!(
        Message::decode(&encoded).as_ref(),
        Ok(&msg),
        "a decoded message does not survive a round trip"
    );
    let docs: &[WireDoc] = match &msg {
        Message::Changes(c) => &c.docs,
        Message::Fetched(f) => &f.docs,
        _ => &[],
    };
    for wd in docs.iter().take(4) {
        if let Some(h) = &wd.header {
            let _ = h.doc_id();
        }
        for c in wd.changes.iter().take(8) {
            if let Ok((env, change)) = c.clone().into_envelope(wd.doc) {
                assert_eq!(env.hash, change.hash().into());
                let _ = SignedChange::verify_many(
                    vec![(env, Some(change))],
                    Some(site()),
                    &mut KeyCache::default(),
                );
            }
        }
    }
    Some(msg)
}

/// `frame`: the input is the byte stream a peer writes on a sync stream. It is split into
/// frames exactly as the node's reader does ([`read_frame`], the mirror of
/// `yizhan_node::net::read_frame`), and each payload is decoded as a `Message`.
pub fn frame(data: &[u8]) {
    install_panic_hook();
    let mut stream = data;
    loop {
        match read_frame(stream, MAX_FRAME) {
            FrameRead::Frame(payload, rest) => {
                assert!(payload.len() <= MAX_FRAME);
                assert_eq!(payload.len() + rest.len() + 4, stream.len());
                check_message(payload);
                stream = rest;
            }
            FrameRead::TooLarge(len) => {
                assert!(len as usize > MAX_FRAME);
                break;
            }
            FrameRead::Truncated(n) => {
                assert!(n > 0 && n <= stream.len());
                break;
            }
            FrameRead::End => break,
        }
    }
    // Also each whole input as one payload, so that mutations need not keep a length right.
    check_message(data);
}

// ---------------------------------------------------------------------------------------
// message
// ---------------------------------------------------------------------------------------

/// The station's own certificate, signed by the root (the session's configuration).
fn station_cert() -> &'static Signed<Certificate> {
    static CERT: OnceLock<Signed<Certificate>> = OnceLock::new();
    CERT.get_or_init(|| {
        let root = DeviceKey::from_seed(keys::ROOT);
        Signed::sign(
            &root,
            &Certificate {
                site: site(),
                device: root.device_id(),
                name: "驿站".into(),
                role: MemberRole::Station,
                grids: vec![],
                issued_at_ms: NOW_MS - 1000,
                expires_at_ms: None,
            },
        )
    })
}

/// `message`: the first byte chooses how the node answers; the rest is a stream of
/// frames (as for [`frame`]) that a real `Session` receives one by one, 10 ms apart on a
/// virtual clock. The node answers every event as the sync engine would: accept or refuse
/// the `Hello` (with a roster or not), serve pages, fetch the documents of a page, answer
/// fetches, finish. Every frame the session sends must decode, a misuse error means the
/// session refused a lawful answer, and a failed session must stay failed.
///
/// Option bits: 0 refuse the peer, 1 send a roster on accept, 2 serve two pages (else one),
/// 3 fetch the documents of each page, 4 answer a fetch with documents, 5 time out in the
/// middle, 6 stop feeding at the first error (else keep feeding a failed session).
pub fn message(data: &[u8]) {
    install_panic_hook();
    let (opts, stream) = match data.split_first() {
        Some((o, rest)) => (*o, rest),
        None => (0, data),
    };
    let config = SessionConfig {
        site: site(),
        cert: station_cert().clone(),
        roster_digest: [7; 32],
        epoch: [9; 16],
        idle_timeout: Duration::from_secs(30),
    };
    let start = Instant::now();
    let mut now = start;
    let pull = Pull {
        epoch: [0; 16],
        after: 0,
        scope: [0; 32],
    };
    let mut session = Session::new(config, pull, now);
    let mut driver = Driver {
        opts,
        pages_left: 0,
        served_from: 0,
    };
    driver.drain(&mut session);
    let payloads = frames(stream);
    for (i, payload) in payloads.iter().enumerate() {
        check_message(payload);
        now += Duration::from_millis(10);
        if opts & 0x20 != 0 && i == payloads.len() / 2 {
            // Long silence before this frame: the session must time out.
            let late = now + Duration::from_secs(31);
            if session.poll_timeout().is_some() {
                assert_eq!(session.handle_timeout(late), Err(SessionError::Timeout));
            }
            now = late;
        }
        let failed_before = session.error().is_some() || session.is_finished();
        let result = session.handle_frame(payload, now);
        if failed_before {
            assert!(result.is_err(), "an ended session took another frame");
        }
        match result {
            Ok(()) => driver.drain(&mut session),
            Err(_) => {
                // The session may still owe its peer a Refuse; then nothing more.
                driver.transmit(&mut session);
                if opts & 0x40 != 0 {
                    break;
                }
            }
        }
    }
    if let Some(deadline) = session.poll_timeout() {
        assert!(deadline >= now);
        let _ = session.handle_timeout(deadline);
        assert!(session.error().is_some());
    }
}

/// Answers a session's events as a node would.
struct Driver {
    opts: u8,
    pages_left: u8,
    served_from: u64,
}

impl Driver {
    fn ok(result: Result<(), SessionError>) {
        match result {
            Ok(()) | Err(SessionError::Ended) => {}
            Err(SessionError::Misuse(what)) => {
                panic!("the session refused a lawful answer: {what}")
            }
            // A held message may break the order when the node accepts.
            Err(_) => {}
        }
    }

    fn drain(&mut self, session: &mut Session) {
        loop {
            let mut progressed = false;
            while let Some(event) = session.poll_event() {
                progressed = true;
                self.answer(session, event);
            }
            if self.pages_left > 0 && session.is_serving() {
                self.pages_left -= 1;
                let last = self.pages_left == 0;
                let from = self.served_from;
                self.served_from += 3;
                Self::ok(session.send_changes(Changes {
                    from,
                    upto: from + 3,
                    last,
                    docs: vec![],
                }));
                progressed = true;
            }
            self.transmit(session);
            if !progressed {
                break;
            }
        }
    }

    fn answer(&mut self, session: &mut Session, event: Event) {
        match event {
            Event::PeerHello(hello) => {
                let _ = hello.cert.check(Some(site()), NOW_MS);
                if self.opts & 1 != 0 {
                    session.refuse("not a member of this site");
                    assert!(session.error().is_some());
                } else {
                    let roster = (self.opts & 2 != 0).then(|| Roster {
                        certs: vec![station_cert().clone()],
                        revocations: vec![],
                    });
                    Self::ok(session.accept(roster));
                }
            }
            Event::Roster(roster) => {
                for c in roster.certs.iter().take(4) {
                    let _ = c.check(Some(site()), NOW_MS);
                }
                for r in roster.revocations.iter().take(4) {
                    let _ = r.check(site());
                }
            }
            Event::PullRequested { after, .. } => {
                self.served_from = after;
                self.pages_left = if self.opts & 4 != 0 { 2 } else { 1 };
            }
            Event::Changes(page) => {
                if self.opts & 8 != 0 && !page.docs.is_empty() && session.can_fetch() {
                    let mut docs: Vec<_> =
                        page.docs.iter().take(4).map(|d| (d.doc, vec![])).collect();
                    docs.sort_by_key(|(d, _)| *d);
                    docs.dedup_by_key(|(d, _)| *d);
                    Self::ok(session.fetch(Fetch { docs }));
                }
            }
            Event::FetchRequested(fetch) => {
                let docs = if self.opts & 0x10 != 0 {
                    fetch
                        .docs
                        .iter()
                        .take(2)
                        .map(|(doc, _)| WireDoc {
                            doc: *doc,
                            header: None,
                            changes: vec![],
                        })
                        .collect()
                } else {
                    vec![]
                };
                Self::ok(session.send_fetched(Fetched { docs }));
            }
            Event::Fetched(_) => {}
            Event::ReceiveComplete => Self::ok(session.finish(None)),
            Event::PeerDone(receipt) => {
                if let Some(r) = receipt {
                    let _ = r.open();
                }
            }
            Event::Finished => assert!(session.is_finished()),
        }
    }

    fn transmit(&mut self, session: &mut Session) {
        while let Some(frame) = session.poll_transmit() {
            assert!(
                Message::decode(&frame).is_ok(),
                "the session sent a frame that does not decode"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// envelope
// ---------------------------------------------------------------------------------------

/// The row counts a structure-aware mutation writes into a change's run headers: none,
/// small, around the per-change limit, and far over it.
const RUN_COUNTS: [u64; 8] = [
    0,
    1,
    2,
    MAX_CHANGE_OPS - 1,
    MAX_CHANGE_OPS,
    MAX_CHANGE_OPS + 1,
    1 << 24,
    i64::MAX as u64,
];

/// Which columns [`shape_change`] rewrites the first run of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runs {
    /// Every column (the raw value column has no runs).
    All,
    /// The action column: the number of operations.
    Action,
    /// Every column but the action column.
    Others,
    /// The first column.
    First,
}

/// Shapes fuzzed change bytes so that they get past the chunk framing to the column
/// counter, Automerge's decoder and `apply`: with `rewrite`, the first run header of the
/// chosen columns is made to declare that many rows (each column's length in the metadata
/// following); then, with `repair`, the chunk is framed anew: the body's length and the
/// checksum (so the hash the signature covers) made right for the body it has. Bytes that
/// are not an uncompressed change chunk are left as they are.
pub fn shape_change(bytes: &[u8], rewrite: Option<(u64, Runs)>, repair: bool) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if let Some((count, which)) = rewrite
        && let Some(rewritten) = rewrite_runs(bytes, count, which)
    {
        out = rewritten;
    }
    if repair && out.len() > 9 && out[8] == 1 {
        let mut rest = &out[9..];
        if leb128::read::unsigned(&mut rest).is_ok() {
            out = yizhan_protocol::columns::frame_change(rest).0;
        }
    }
    out
}

fn rewrite_runs(bytes: &[u8], count: u64, which: Runs) -> Option<Vec<u8>> {
    let layout = yizhan_protocol::columns::change_layout(bytes).ok()?;
    let mut body = bytes[layout.body.start..layout.meta.start].to_vec();
    let mut datas = Vec::new();
    for (i, col) in layout.columns.iter().enumerate() {
        let data = &bytes[col.data.clone()];
        let action = col.id() == 4 && col.col_type() == 2;
        let chosen = match which {
            Runs::All => true,
            Runs::Action => action,
            Runs::Others => !action,
            Runs::First => i == 0,
        };
        datas.push(if chosen {
            rewrite_first_run(col.col_type(), data, count)
        } else {
            data.to_vec()
        });
    }
    let leb = |out: &mut Vec<u8>, n: u64| {
        leb128::write::unsigned(out, n).expect("writes to a Vec");
    };
    leb(&mut body, layout.columns.len() as u64);
    for (col, data) in layout.columns.iter().zip(&datas) {
        leb(&mut body, u64::from(col.spec));
        leb(&mut body, data.len() as u64);
    }
    for data in &datas {
        body.extend_from_slice(data);
    }
    let end = layout
        .columns
        .last()
        .map_or(layout.meta.end, |c| c.data.end);
    body.extend_from_slice(&bytes[end..layout.body.end]);
    Some(yizhan_protocol::columns::frame_change(&body).0)
}

/// A column's data with its first run header declaring `count` rows (a run of values, or
/// of nulls when the first run is one; the first run of `false` in a boolean column).
fn rewrite_first_run(col_type: u8, data: &[u8], count: u64) -> Vec<u8> {
    let mut rest = data;
    let mut out = Vec::new();
    match col_type {
        7 => return data.to_vec(),
        4 => {
            if leb128::read::unsigned(&mut rest).is_err() {
                return data.to_vec();
            }
            leb128::write::unsigned(&mut out, count).expect("writes to a Vec");
        }
        _ => {
            let Ok(n) = leb128::read::signed(&mut rest) else {
                return data.to_vec();
            };
            if n == 0 {
                if leb128::read::unsigned(&mut rest).is_err() {
                    return data.to_vec();
                }
                out.push(0);
                leb128::write::unsigned(&mut out, count).expect("writes to a Vec");
            } else {
                let count = i64::try_from(count).unwrap_or(i64::MAX);
                leb128::write::signed(&mut out, count).expect("writes to a Vec");
            }
        }
    }
    out.extend_from_slice(rest);
    out
}

/// The hash Automerge gives a well-framed change chunk (SHA-256 of everything after the
/// checksum), computed without decoding it, so that a change refused before decoding can
/// still carry a right signature.
fn chunk_hash(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    bytes
        .get(8..)
        .map_or([0; 32], |b| sha2::Sha256::digest(b).into())
}

/// What every decoded change must satisfy: its operations are the ones counted from its
/// run headers, within the limit.
fn count_agrees(bytes: &[u8], change: &automerge::Change) {
    let counted = yizhan_protocol::columns::declared_ops(bytes, MAX_CHANGE_OPS);
    assert_eq!(
        counted,
        Ok(change.len() as u64),
        "the operations counted before decoding are not the ones Automerge decoded"
    );
}

/// `envelope`: byte 0 holds options, the rest is an Automerge change chunk, as it would
/// arrive in a `WireChange`. The change is rebuilt into an envelope (decoded, panics
/// contained), verified strictly, and if it verifies, applied to an empty document, saved
/// and loaded again, with the panics contained as the node contains them.
///
/// Option bits 0-1 pick the signature: 0 the key of the change's actor when it is one of
/// the test keys (so the signature is right and verification reaches the end), 1 a test
/// key by bits 2-3, 2 and 3 all zeros. Bit 4 signs with no site. The bytes are shaped
/// ([`shape_change`]) first: bits 6-7 rewrite the first run of every column (1), of the
/// action column (2) or of every other column (3) to declare `1`, `MAX_CHANGE_OPS`, one
/// more, or `i64::MAX` rows (by bits 2-3); and the framing is repaired unless bit 5 is set.
pub fn envelope(data: &[u8]) {
    install_panic_hook();
    let mut input = Input(data);
    let opts = input.u8();
    let count =
        [1, MAX_CHANGE_OPS, MAX_CHANGE_OPS + 1, i64::MAX as u64][usize::from(opts >> 2 & 3)];
    let rewrite = match opts >> 6 {
        0 => None,
        1 => Some((count, Runs::All)),
        2 => Some((count, Runs::Action)),
        _ => Some((count, Runs::Others)),
    };
    let bytes = shape_change(input.bytes(usize::MAX), rewrite, opts & 0x20 == 0);
    let doc = DocId::from_bytes([0x5a; 16]);
    let sign_site = (opts & 0x10 == 0).then(site);
    let all = keys::all();
    let decoded = decode_change(&bytes);
    if let Ok(change) = &decoded {
        count_agrees(&bytes, change);
        first_change_agrees(change);
    }
    let signature = match opts & 3 {
        0 | 1 => {
            let key = decoded
                .as_ref()
                .ok()
                .filter(|_| opts & 3 == 0)
                .and_then(|c| {
                    all.iter()
                        .find(|k| k.device_id().as_bytes().as_slice() == c.actor_id().to_bytes())
                })
                .unwrap_or(&all[usize::from(opts >> 2) & 3]);
            let hash = decoded
                .as_ref()
                .map_or_else(|_| chunk_hash(&bytes), |c| c.hash().0);
            key.sign(&signing_message(
                sign_site,
                doc,
                yizhan_protocol::ChangeHash(hash),
            ))
        }
        _ => [0; 64],
    };
    let wire = WireChange {
        signature,
        bytes: bytes.clone(),
    };
    let rebuilt = wire.clone().into_envelope(doc);
    // What is refused comes back as it came (a receiver keeps it in its rejected table).
    if let Err(refused) = &rebuilt {
        assert_eq!(refused.change, wire, "a refused change came back altered");
    }
    if bytes.len() > MAX_CHANGE_BYTES {
        assert!(rebuilt.is_err());
        return;
    }
    assert_eq!(
        rebuilt.is_ok(),
        decoded
            .as_ref()
            .is_ok_and(|c| DeviceId::from_slice(c.actor_id().to_bytes()).is_ok()),
        "rebuilding disagrees with decoding"
    );
    let Ok((env, change)) = rebuilt else { return };
    assert_eq!(env.hash, change.hash().into());
    assert_eq!(
        env.signer.as_bytes().as_slice(),
        change.actor_id().to_bytes()
    );
    // The same check two ways: decoding the bytes, and taking the decoding just made.
    let verify = |items: Vec<(SignedChange, Option<automerge::Change>)>| {
        SignedChange::verify_many(items, Some(site()), &mut KeyCache::default())
    };
    let plain = verify(vec![(env.clone(), None)]).remove(0);
    let decoded = verify(vec![(env.clone(), Some(change.clone()))]).remove(0);
    assert_eq!(plain.is_ok(), decoded.is_ok());
    // And four times over in one batch, which must say the same of each.
    let many = verify(vec![
        (env.clone(), None);
        yizhan_protocol::identity::BATCH_MIN
    ]);
    assert!(many.iter().all(|r| r.is_ok() == plain.is_ok()));
    // A claimed hash other than the real one is refused.
    let mut wrong = env.clone();
    wrong.hash.0[0] ^= 1;
    assert!(verify(vec![(wrong, None)]).remove(0).is_err());
    let verified = match plain {
        Ok(v) => v,
        Err(e) => {
            if opts & 0x13 == 0 && all.iter().any(|k| k.device_id() == env.signer) {
                panic!("a change signed by its actor's key does not verify: {e}");
            }
            return;
        }
    };
    // Apply as ingest does, then save and load as the store does.
    let mut am = AutoCommit::new();
    let applied = catch_unwind(AssertUnwindSafe(|| {
        am.apply_changes([verified.change.clone()])
    }));
    if !matches!(applied, Ok(Ok(()))) {
        return;
    }
    let saved = catch_unwind(AssertUnwindSafe(|| am.save()));
    if let Ok(saved) = saved {
        let _ = catch_unwind(|| AutoCommit::load(&saved));
    }
}

/// A change that `Root::of_first_change` reads (as ingest does for a new document) must be
/// one that Automerge applies to an empty document, to the same root map and within the
/// nesting limit: otherwise the station would store a record other nodes refuse or read
/// differently.
fn first_change_agrees(change: &automerge::Change) {
    use yizhan_node::records::Root;
    // Expanding a change's operations is Automerge's code: a panic there is contained (as
    // in ingest, which then applies the change with Automerge).
    let Ok(Some(root)) = catch_unwind(|| Root::of_first_change(change)) else {
        return;
    };
    let mut doc = AutoCommit::new();
    let applied = catch_unwind(AssertUnwindSafe(|| doc.apply_changes([change.clone()])));
    assert!(
        matches!(applied, Ok(Ok(()))),
        "a change read as a first change does not apply"
    );
    assert!(automerge::ReadDoc::get_missing_deps(&doc, &[]).is_empty());
    assert_eq!(root, Root::read(&doc), "a first change read differently");
    assert!(yizhan_node::rules::nesting(&doc).is_ok());
}

// ---------------------------------------------------------------------------------------
// statement
// ---------------------------------------------------------------------------------------

/// `statement`: byte 0 picks the statement (`% 3`: certificate, revocation, receipt) and
/// the form (bit 2): a whole `Signed<T>` as stored, sent in a `Hello`, `Roster` or `Done`,
/// or in a token (0); or a body, which is signed here by the root so that the signature
/// holds and decoding the body is reached (1). The statement is opened and checked as the
/// node checks it. A statement that opens must be the canonical encoding of what it says.
pub fn statement(data: &[u8]) {
    install_panic_hook();
    let mut input = Input(data);
    let opts = input.u8();
    let rest = input.bytes(usize::MAX);
    match opts % 3 {
        0 => statement_kind::<Certificate>(opts, rest, |s| {
            let checked = s.check(Some(site()), NOW_MS);
            let joining = s.check(None, NOW_MS);
            if let Ok(c) = &checked {
                assert_eq!(SiteId::for_root(s.signer), c.site);
                assert!(joining.is_ok());
            }
            let _ = s.digest();
        }),
        1 => statement_kind::<Revocation>(opts, rest, |s| {
            if let Ok(r) = s.check(site()) {
                assert_eq!(r.site, site());
            }
        }),
        _ => statement_kind::<Receipt>(opts, rest, |s| {
            let _ = s.open();
        }),
    }
}

fn statement_kind<T>(opts: u8, rest: &[u8], check: impl Fn(&Signed<T>))
where
    T: yizhan_protocol::Statement + PartialEq + std::fmt::Debug,
{
    let signed = if opts & 4 == 0 {
        match Signed::<T>::from_bytes(rest) {
            Ok(s) => {
                assert_eq!(
                    Signed::<T>::from_bytes(&s.to_bytes()).ok().as_ref(),
                    Some(&s)
                );
                s
            }
            Err(_) => return,
        }
    } else {
        // A root-signed body: build the whole statement's bytes around it.
        let root = DeviceKey::from_seed(keys::ROOT);
        let mut domain_and_body = T::DOMAIN.to_vec();
        domain_and_body.extend_from_slice(rest);
        let signature = root.sign(&domain_and_body);
        let mut whole = Vec::new();
        whole.push(32);
        whole.extend_from_slice(root.device_id().as_bytes());
        let mut len = rest.len();
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                whole.push(b);
                break;
            }
            whole.push(b | 0x80);
        }
        whole.extend_from_slice(rest);
        whole.push(64);
        whole.extend_from_slice(&signature);
        match Signed::<T>::from_bytes(&whole) {
            Ok(s) => s,
            Err(_) => {
                assert!(
                    whole.len() > T::MAX_BODY + 256,
                    "a well-formed Signed<T> was refused"
                );
                return;
            }
        }
    };
    if let Ok(t) = signed.open() {
        // The body is the one canonical encoding of the statement: signing it again
        // yields the same bytes.
        let again = Signed::sign(&DeviceKey::from_seed(keys::ROOT), &t);
        assert_eq!(
            again.body, signed.body,
            "an opened statement is not canonical"
        );
        assert_eq!(again.open().ok().as_ref(), Some(&t));
    }
    check(&signed);
}

// ---------------------------------------------------------------------------------------
// token
// ---------------------------------------------------------------------------------------

/// `token`: byte 0 picks the form: text as typed or pasted (even), or the postcard bytes of
/// a `Token`, which are put in `yzt1-` text here so that decoding reaches the token's body
/// (odd). The token is read as `join` reads it and its certificate checked; a token that
/// reads must survive a round trip through its text.
pub fn token(data: &[u8]) {
    install_panic_hook();
    let mut input = Input(data);
    let opts = input.u8();
    let rest = input.bytes(usize::MAX);
    let text = if opts & 1 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        format!(
            "{}{}",
            yizhan_protocol::membership::TOKEN_PREFIX,
            base64url_encode(rest)
        )
    };
    let Ok(token) = Token::from_text(&text) else {
        return;
    };
    let line = token.to_text();
    assert!(!line.contains(char::is_whitespace));
    assert_eq!(Token::from_text(&line).as_ref(), Ok(&token));
    if let Ok(cert) = token.cert.check(None, NOW_MS) {
        assert_eq!(SiteId::for_root(token.cert.signer), cert.site);
    }
}

// ---------------------------------------------------------------------------------------
// ingest
// ---------------------------------------------------------------------------------------

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

fn init_node(home: &Path, name: &str, station: bool, seed: [u8; 32]) -> Node {
    Node::init(
        home,
        &InitConfig {
            name: name.into(),
            station,
            encrypt: None,
        },
        InitSeed { key: seed },
    )
    .expect("init")
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
    /// The header's kind byte (1 visit, 2 ticket; anything else is read as `kind % 2 + 1`).
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
        batch.push(yizhan_node::home::DocChanges { header, changes });
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
                ops <= yizhan_node::rules::MAX_RECORD_OPS,
                "a record holds {ops} operations, over its budget"
            );
        }
    }
    for h in headers {
        let _ = match h.kind {
            RecordKind::Visit => node.show_visit(h.doc_id()).map(|_| ()),
            RecordKind::Ticket => node.show_ticket(h.doc_id()).map(|_| ()),
        };
    }
}

// ---------------------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------------------

/// One seed input: its target, a file name, and the bytes.
#[derive(Clone, Debug)]
pub struct Seed {
    /// The target it is for.
    pub target: &'static str,
    /// Its file name in the corpus.
    pub name: String,
    /// The input.
    pub bytes: Vec<u8>,
}

/// Real data made by the code: a station and two volunteers (the test keys) make records,
/// enrol, sync and revoke; their frames, messages, envelopes, statements and tokens become
/// seed inputs for every target. Deterministic keys; times and nonces vary from run to run.
pub fn seeds() -> Vec<Seed> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut out = Vec::new();
    let mut add = |target: &'static str, name: String, bytes: Vec<u8>| {
        out.push(Seed {
            target,
            name,
            bytes,
        })
    };
    let mut station = init_node(&dir.path().join("s"), "驿站", true, keys::ROOT);
    let mut vol = init_node(&dir.path().join("a"), "王芳", false, keys::VOLUNTEER);
    let mut revoked = init_node(&dir.path().join("b"), "李强", false, keys::REVOKED);
    let mut tokens = Vec::new();
    for (node, addr) in [(&mut vol, Some("192.0.2.1:7365")), (&mut revoked, None)] {
        let token = station
            .enroll(&EnrollRequest {
                device: node.identity().device_id,
                name: node.identity().name.clone(),
                grids: vec!["和平里".into(), "幸福路".into()],
                role: MemberRole::Volunteer,
                expires_days: Some(365),
            })
            .expect("enroll");
        let mut token = token;
        if let Some(a) = addr {
            token.station_addrs = vec![a.into()];
        }
        node.join(&token, None).expect("join");
        tokens.push(token);
    }

    // Records: visits and tickets by each, edits, comments.
    let visit = vol
        .add_visit(&NewVisit {
            household: "和平里 3-2-101".into(),
            note: Some("独居老人，需要定期探访".into()),
            residents: vec!["张大爷".into(), "张奶奶".into()],
            needs: Some("助餐".into()),
            ..NewVisit::default()
        })
        .expect("visit");
    vol.edit_visit(
        visit,
        &VisitEdit {
            note: Some("已联系社区食堂".into()),
            ..VisitEdit::default()
        },
    )
    .expect("edit");
    let ticket = vol
        .open_ticket(&NewTicket {
            title: "楼道灯坏了".into(),
            household: Some("和平里 3 号楼".into()),
            assignee: Some(station.identity().device_id),
            ..NewTicket::default()
        })
        .expect("ticket");
    vol.comment_ticket(ticket, "已报修").expect("comment");
    vol.update_ticket(
        ticket,
        &TicketUpdate {
            title: Some("楼道灯坏了（3 单元）".into()),
            ..TicketUpdate::default()
        },
    )
    .expect("update");
    let b_visit = revoked
        .add_visit(&NewVisit {
            household: "幸福路 8 号".into(),
            ..NewVisit::default()
        })
        .expect("visit");
    let s_ticket = station
        .open_ticket(&NewTicket {
            title: "垃圾清运".into(),
            grid: Some("和平里".into()),
            ..NewTicket::default()
        })
        .expect("ticket");

    // envelope: every change, with the lawful signature option (0) and a few others.
    let mut all_changes = Vec::new();
    for (node, doc) in [
        (&vol, visit),
        (&vol, ticket),
        (&revoked, b_visit),
        (&station, s_ticket),
    ] {
        let dc = node.doc_changes(doc).expect("changes");
        for (i, env) in dc.changes.iter().enumerate() {
            let tag = &hex_of(doc.as_bytes())[..8];
            let mut lawful = vec![0u8];
            lawful.extend_from_slice(&env.bytes);
            add("envelope", format!("change-{tag}-{i}"), lawful);
        }
        all_changes.push(dc);
    }
    if let Some(first) = all_changes.first().and_then(|d| d.changes.first()) {
        for opts in [1u8, 2, 0x10] {
            let mut v = vec![opts];
            v.extend_from_slice(&first.bytes);
            add("envelope", format!("change-opts-{opts:02x}"), v);
        }
    }
    // Run lengths rewritten: every column, the action column, the others; at 1, at the
    // limit, one over, i64::MAX; on a one-operation change (a note edited) and on a first
    // change.
    for (tag, env) in [
        ("edit", all_changes.first().and_then(|d| d.changes.get(1))),
        ("first", all_changes.first().and_then(|d| d.changes.first())),
    ] {
        let Some(env) = env else { continue };
        for opts in [0x44u8, 0x48, 0x4c, 0x40, 0x88, 0xc4] {
            let mut v = vec![opts];
            v.extend_from_slice(&env.bytes);
            add("envelope", format!("change-runs-{tag}-{opts:02x}"), v);
        }
    }

    // ingest: each document's history with its header; the revoked author's visit (the
    // station holds it in quarantine); a batch of everything; a misfiled change.
    let mut every = Vec::new();
    for dc in &all_changes {
        let author = keys::all()
            .iter()
            .position(|k| k.device_id() == dc.header.author)
            .unwrap_or(1) as u8;
        let doc = CaseDoc {
            kind: dc.header.kind.code(),
            author,
            nonce: dc.header.nonce,
            misfiled: 0,
            changes: dc
                .changes
                .iter()
                .map(|c| CaseChange {
                    signer: 0xff,
                    how: 0,
                    bytes: c.bytes.clone(),
                })
                .collect(),
        };
        let tag = &hex_of(dc.header.doc_id().as_bytes())[..8];
        add(
            "ingest",
            format!("doc-{tag}"),
            encode_ingest(std::slice::from_ref(&doc)),
        );
        every.push(doc);
    }
    add("ingest", "batch".into(), encode_ingest(&every));
    if let Some(first) = every.first() {
        let mut misfiled = first.clone();
        misfiled.misfiled = 9;
        add("ingest", "misfiled".into(), encode_ingest(&[misfiled]));
        let mut unsigned = first.clone();
        for c in &mut unsigned.changes {
            c.how = 2;
        }
        add("ingest", "unsigned".into(), encode_ingest(&[unsigned]));
        let mut tail = first.clone();
        tail.changes.remove(0);
        add("ingest", "no-history".into(), encode_ingest(&[tail]));
        // The history with its later changes' runs rewritten (see `CaseChange::how`):
        // every column at the limit, one over, at 2^24; the action column alone one under.
        for how in [0x20u8, 0x28, 0x30, 0x58] {
            let mut runs = first.clone();
            for c in runs.changes.iter_mut().skip(1) {
                c.how = how;
            }
            add("ingest", format!("runs-{how:02x}"), encode_ingest(&[runs]));
        }
    }

    // token and statement: the enrolment tokens and their certificates.
    for (i, t) in tokens.iter().enumerate() {
        let text = t.to_text();
        let mut typed = vec![0u8];
        typed.extend_from_slice(format!(" {text}\n").as_bytes());
        add("token", format!("token-{i}"), typed);
        let mut raw = vec![1u8];
        raw.extend_from_slice(&base64_decode(&text[5..]));
        add("token", format!("token-raw-{i}"), raw);
        let mut whole = vec![0u8];
        whole.extend_from_slice(&t.cert.to_bytes());
        add("statement", format!("cert-{i}"), whole);
        let mut body = vec![4u8];
        body.extend_from_slice(&t.cert.body);
        add("statement", format!("cert-body-{i}"), body);
    }

    // Revoke B, then sync A with the station: the frames both ways are real messages
    // (Hello, Roster, Pull, Changes, Fetch, Fetched, Done with a receipt).
    station
        .revoke(revoked.identity().device_id, "left the site")
        .expect("revoke");
    let (to_station, to_volunteer) = record_sync(station, vol);
    for (side, frames) in [("to-station", &to_station), ("to-volunteer", &to_volunteer)] {
        for (i, f) in frames.iter().enumerate() {
            let name = Message::decode(f).map_or("bad", |m| m.name());
            add(
                "frame",
                format!("{side}-{i}-{name}"),
                encode_frames([&f[..]]),
            );
            let mut single = vec![0u8];
            single.extend_from_slice(&encode_frames([&f[..]]));
            add("message", format!("{side}-{i}-{name}"), single);
            if let Ok(Message::Roster(r)) = Message::decode(f) {
                for (j, rv) in r.revocations.iter().enumerate() {
                    let mut whole = vec![1u8];
                    whole.extend_from_slice(&rv.to_bytes());
                    add("statement", format!("revocation-{j}"), whole);
                    let mut body = vec![4 + 1];
                    body.extend_from_slice(&rv.body);
                    add("statement", format!("revocation-body-{j}"), body);
                }
            }
            if let Ok(Message::Done(d)) = Message::decode(f)
                && let Some(r) = d.receipt
            {
                let mut whole = vec![2u8];
                whole.extend_from_slice(&r.to_bytes());
                add("statement", "receipt".into(), whole);
                let mut body = vec![4 + 2];
                body.extend_from_slice(&r.body);
                add("statement", "receipt-body".into(), body);
            }
        }
        let stream = encode_frames(frames.iter().map(|f| &f[..]));
        add("frame", format!("{side}-all"), stream.clone());
        for opts in [0u8, 0x02, 0x0c, 0x18, 0x04] {
            let mut whole = vec![opts];
            whole.extend_from_slice(&stream);
            add("message", format!("{side}-all-{opts:02x}"), whole);
        }
    }
    // The short messages of docs/protocol.md §5.4, and a refusal.
    for (name, bytes) in [
        ("done-none", vec![7u8, 0]),
        ("refuse", vec![1, 2, b'n', b'o']),
        ("roster-empty", vec![2, 0, 0]),
        ("changes-empty", vec![4, 5, 9, 1, 0]),
    ] {
        add(
            "frame",
            format!("short-{name}"),
            encode_frames([&bytes[..]]),
        );
    }
    out
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// URL-safe base64 without padding, as tokens use it.
fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(BASE64URL[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = BASE64URL
            .iter()
            .position(|&x| x == c)
            .expect("token base64") as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Runs one sync between a station and a volunteer through their real engines, with no
/// faults, and returns the frames each received.
fn record_sync(station: Node, vol: Node) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let config = SyncConfig::default();
    let now = Instant::now();
    let (s_id, v_id) = (station.identity().device_id, vol.identity().device_id);
    let mut s = SyncEngine::new(station, v_id, &config, now).expect("station engine");
    let mut v = SyncEngine::new(vol, s_id, &config, now).expect("volunteer engine");
    let (mut to_s, mut to_v) = (Vec::new(), Vec::new());
    for _ in 0..10_000 {
        let mut moved = false;
        while let Some(f) = v.poll_transmit().expect("volunteer transmit") {
            s.handle_frame(&f, now).expect("station receives");
            to_s.push(f);
            moved = true;
        }
        while let Some(f) = s.poll_transmit().expect("station transmit") {
            v.handle_frame(&f, now).expect("volunteer receives");
            to_v.push(f);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert!(
        s.is_finished() && v.is_finished(),
        "the recorded sync finished"
    );
    (to_s, to_v)
}

/// Writes the seeds into `corpus/<target>/seed-<name>` under `root` (the `fuzz/`
/// directory), leaving other files alone.
pub fn write_seeds(root: &Path) -> std::io::Result<usize> {
    let seeds = seeds();
    for s in &seeds {
        let dir = root.join("corpus").join(s.target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{}", s.name)), &s.bytes)?;
    }
    Ok(seeds.len())
}

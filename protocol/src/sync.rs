//! The sync session: a sans-IO state machine for one sync between two nodes.
//!
//! A session knows the order of messages and nothing of storage. The node feeds it frames
//! and the time, and answers its events; the session produces the frames to send.
//!
//! ```text
//!   node                         Session                          peer
//!   ────                         ───────                          ────
//!   new(config, now) ─────────▶  queues Hello
//!   handle_frame(bytes, now) ──▶ decodes, checks order, queues events
//!   poll_event() ◀────────────── PeerHello / Roster / PullRequested / Changes /
//!                                 FetchRequested / Fetched / ReceiveComplete / PeerDone / Finished
//!   accept / refuse / send_changes / fetch / send_fetched / finish ──▶ queue messages
//!   poll_transmit() ◀─────────── the next frame payload to write
//!   poll_timeout() / handle_timeout(now): idle deadline
//! ```
//!
//! Order of calls: after every `handle_frame` (and after `new`), drain `poll_event` and
//! answer each event before polling the next (an answer may change what the next event
//! is), then drain `poll_transmit`. The same after every answer the node makes on its
//! own (pages of its log).
//!
//! The conversation, each side running the same machine:
//!
//! 1. `Hello` and `Pull` both ways, at once: a node knows which device the transport
//!    authenticated, so it asks for that peer's log from where it left off without
//!    waiting. The node checks the peer's certificate and either `accept`s, which sends
//!    `Roster` (only when the roster digests differ), or `refuse`s, which sends `Refuse`
//!    and ends the session. Nothing but `Hello`, `Pull` and `Refuse` is sent before the
//!    peer is accepted.
//! 2. At most one `Roster`, and only before any `Changes`: revocations arrive ahead of
//!    data.
//! 3. The peer answers `Pull` (once accepted) with pages of `Changes` from the position
//!    asked for (from the start if the epoch or the scope key differ), the last page
//!    marked `last`.
//! 4. A page may hold changes whose history the receiver lacks (a record that just came
//!    into its scope): it sends `Fetch` and the peer answers it with one `Fetched`. At
//!    most one `Fetch` is outstanding each way: the next is sent only once the answer to
//!    the last has arrived.
//! 5. When the last page has come and every fetch is answered, the node `finish`es,
//!    sending `Done` (a station puts its signed receipt in it). When both sides have sent
//!    and received `Done`, the session is finished.
//!
//! Every message kind but `Changes` comes a bounded number of times (`Hello`, `Pull`,
//! `Roster`, `Done` and `Refuse` once; `Fetch` once per answer; `Fetched` once per
//! `Fetch`); anything more is a violation that ends the session. A `Refuse` from a peer
//! whose `Hello` this node has not accepted ends the session without its text (a
//! stranger's words are never shown), and a shown reason has its control characters
//! replaced.
//!
//! Output is bounded too: the node produces pages and fetch answers only when
//! `poll_transmit` has nothing queued, so what waits here is at most a `Roster`, one
//! `Fetch`, one page or answer, `Done` and `Refuse`. [`Session::wants_input`] says when
//! [`MAX_QUEUED_OUT`] bytes are waiting: a node then stops reading until the peer has
//! taken them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::identity::SiteId;
use crate::membership::{Certificate, Receipt};
use crate::signed::Signed;
use crate::wire::{
    Changes, DecodeError, Done, Fetch, Fetched, Hello, MAX_FRAME, Message, PROTOCOL_VERSION, Pull,
    Roster,
};

/// Bytes of encoded frames a session may hold for the peer before its node stops reading
/// (see [`Session::wants_input`]): two full frames. By construction an honest session
/// holds less (a roster, one fetch, one page or answer, `Done`).
pub const MAX_QUEUED_OUT: usize = 2 * MAX_FRAME;

/// What a session needs to know about its own node.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// This node's site.
    pub site: SiteId,
    /// This node's membership certificate.
    pub cert: Signed<Certificate>,
    /// Digest of this node's roster.
    pub roster_digest: [u8; 32],
    /// Epoch of this node's change log.
    pub epoch: [u8; 16],
    /// How long the session waits for the peer before giving up.
    pub idle_timeout: Duration,
}

/// What the session asks of, or tells, its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The peer introduced itself: check its certificate, then `accept` or `refuse`.
    PeerHello(Hello),
    /// The peer's roster: store its certificates and revocations before anything else.
    Roster(Roster),
    /// The peer asks for this node's log after `after` (0 when its epoch is not this
    /// log's). The node serves from 0 instead when `scope` is not the scope key it
    /// computes. Answer with `send_changes` until a page marked last.
    PullRequested {
        /// The last position the peer has.
        after: u64,
        /// The scope key the peer's position was reached under.
        scope: [u8; 32],
    },
    /// A page of the peer's log.
    Changes(Changes),
    /// The peer asks for documents: answer with one `send_fetched` (when `poll_transmit`
    /// has nothing queued: an answer is built only when the peer can take it). The peer
    /// sends no other `Fetch` until this one is answered.
    FetchRequested(Fetch),
    /// The answer to one of this node's fetches.
    Fetched(Fetched),
    /// Everything this node asked for has arrived: call `finish`.
    ReceiveComplete,
    /// The peer is done, with its receipt if it is a station.
    PeerDone(Option<Signed<Receipt>>),
    /// Both sides are done.
    Finished,
}

/// Why a session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// A frame did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A message arrived out of order.
    #[error("protocol violation: unexpected {0}")]
    Unexpected(&'static str),
    /// The peer speaks another protocol version.
    #[error("peer speaks protocol version {0}, this node {PROTOCOL_VERSION}")]
    Version(u16),
    /// The peer belongs to another site.
    #[error("peer belongs to another site")]
    ForeignSite,
    /// The peer refused to sync, with its reason (control characters replaced).
    #[error("refused by peer: {0}")]
    RefusedByPeer(String),
    /// A peer whose `Hello` this node had not accepted sent `Refuse`; its text is not
    /// kept.
    #[error("refused by a peer that had not been accepted (its reason is not shown)")]
    RefusedByStranger,
    /// This node refused the peer.
    #[error("refused: {0}")]
    Refused(String),
    /// The peer was silent for longer than the idle timeout.
    #[error("peer timed out")]
    Timeout,
    /// A call came after the session had ended.
    #[error("session already ended")]
    Ended,
    /// The node answered in a way the session does not allow.
    #[error("node misuse: {0}")]
    Misuse(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    AwaitHello,
    Deciding,
    Running,
    Finished,
    Failed(SessionError),
}

/// One sync session. See the module docs for the order of calls.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    phase: Phase,
    /// Encoded frames for the peer, and their total size.
    out: VecDeque<Vec<u8>>,
    queued_bytes: usize,
    events: VecDeque<Event>,
    /// Messages that arrived while the node was deciding on the peer's Hello.
    held: VecDeque<Message>,
    deadline: Instant,
    // Receiving side.
    pull_sent: bool,
    changes_seen: bool,
    last_page_received: bool,
    fetch_outstanding: bool,
    receive_complete_emitted: bool,
    roster_received: bool,
    // Sending side.
    pull_received: bool,
    serving: bool,
    fetch_to_answer: bool,
    // Ending.
    done_sent: bool,
    done_received: bool,
}

impl Session {
    /// Starts a session; its `Hello`, then `pull` (what this node remembers of the peer
    /// the transport authenticated), are the first frames to transmit.
    pub fn new(config: SessionConfig, pull: Pull, now: Instant) -> Session {
        let hello = Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            site: config.site,
            cert: config.cert.clone(),
            roster_digest: config.roster_digest,
            epoch: config.epoch,
        });
        let mut session = Session {
            deadline: now + config.idle_timeout,
            config,
            phase: Phase::AwaitHello,
            out: VecDeque::new(),
            queued_bytes: 0,
            events: VecDeque::new(),
            held: VecDeque::new(),
            pull_sent: true,
            changes_seen: false,
            last_page_received: false,
            fetch_outstanding: false,
            receive_complete_emitted: false,
            roster_received: false,
            pull_received: false,
            serving: false,
            fetch_to_answer: false,
            done_sent: false,
            done_received: false,
        };
        session.queue(&hello);
        session.queue(&Message::Pull(pull));
        session
    }

    fn queue(&mut self, msg: &Message) {
        let frame = msg.encode();
        self.queued_bytes += frame.len();
        self.out.push_back(frame);
    }

    /// Takes one frame payload from the peer.
    pub fn handle_frame(&mut self, bytes: &[u8], now: Instant) -> Result<(), SessionError> {
        self.check_live()?;
        self.deadline = now + self.config.idle_timeout;
        let msg = match Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => return Err(self.fail(e.into())),
        };
        self.handle_message(msg)
    }

    fn handle_message(&mut self, msg: Message) -> Result<(), SessionError> {
        match (&self.phase, msg) {
            // Only a peer this node accepted may have its words shown (a `Refuse` that
            // comes while the node decides waits with the rest, below).
            (Phase::AwaitHello, Message::Refuse(_)) => {
                Err(self.fail(SessionError::RefusedByStranger))
            }
            (Phase::AwaitHello, Message::Hello(hello)) => {
                if hello.version != PROTOCOL_VERSION {
                    return Err(self.refuse_with(SessionError::Version(hello.version)));
                }
                if hello.site != self.config.site {
                    return Err(self.refuse_with(SessionError::ForeignSite));
                }
                self.phase = Phase::Deciding;
                self.events.push_back(Event::PeerHello(hello));
                Ok(())
            }
            (Phase::Deciding, msg) => {
                if self.held.len() >= 64 {
                    return Err(self.fail(SessionError::Unexpected("flood before accept")));
                }
                self.held.push_back(msg);
                Ok(())
            }
            (Phase::Running, msg) => self.handle_running(msg),
            (_, msg) => Err(self.fail(SessionError::Unexpected(msg.name()))),
        }
    }

    fn handle_running(&mut self, msg: Message) -> Result<(), SessionError> {
        let unexpected =
            |s: &mut Self, m: &Message| Err(s.fail(SessionError::Unexpected(m.name())));
        match msg {
            Message::Refuse(reason) => {
                return Err(self.fail(SessionError::RefusedByPeer(printable(&reason))));
            }
            Message::Roster(r)
                if !self.roster_received && !self.changes_seen && !self.done_received =>
            {
                self.roster_received = true;
                self.events.push_back(Event::Roster(r));
            }
            Message::Pull(p) if !self.pull_received && !self.done_received => {
                self.pull_received = true;
                self.serving = true;
                let after = if p.epoch == self.config.epoch {
                    p.after
                } else {
                    0
                };
                self.events.push_back(Event::PullRequested {
                    after,
                    scope: p.scope,
                });
            }
            Message::Changes(c) if self.pull_sent && !self.last_page_received => {
                self.changes_seen = true;
                self.last_page_received = c.last;
                self.events.push_back(Event::Changes(c));
            }
            Message::Fetch(f) if !self.done_received && !self.fetch_to_answer => {
                self.fetch_to_answer = true;
                self.events.push_back(Event::FetchRequested(f));
            }
            Message::Fetched(f) if self.fetch_outstanding => {
                self.fetch_outstanding = false;
                self.events.push_back(Event::Fetched(f));
            }
            Message::Done(d)
                if !self.done_received
                    && self.pull_received
                    && !self.serving
                    && !self.fetch_to_answer =>
            {
                self.done_received = true;
                self.events.push_back(Event::PeerDone(d.receipt));
            }
            other => return unexpected(self, &other),
        }
        Ok(())
    }

    /// The node accepts the peer, sending `roster` first when given.
    pub fn accept(&mut self, roster: Option<Roster>) -> Result<(), SessionError> {
        self.check_live()?;
        if self.phase != Phase::Deciding {
            return Err(SessionError::Misuse("accept without a pending Hello"));
        }
        self.phase = Phase::Running;
        if let Some(r) = roster {
            self.queue(&Message::Roster(r));
        }
        while let Some(msg) = self.held.pop_front() {
            self.handle_running(msg)?;
        }
        Ok(())
    }

    /// The node refuses the peer, telling it why. The session ends.
    pub fn refuse(&mut self, reason: &str) {
        let _ = self.refuse_with(SessionError::Refused(reason.to_string()));
    }

    fn refuse_with(&mut self, error: SessionError) -> SessionError {
        let mut reason = error.to_string();
        let mut cut = reason.len().min(1000);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        self.queue(&Message::Refuse(reason));
        self.fail(error)
    }

    /// Sends a page of this node's log, answering `PullRequested`.
    pub fn send_changes(&mut self, page: Changes) -> Result<(), SessionError> {
        self.check_live()?;
        if !self.serving {
            return Err(SessionError::Misuse("send_changes without a pull"));
        }
        self.serving = !page.last;
        self.queue(&Message::Changes(page));
        Ok(())
    }

    /// Asks the peer for documents whose history this node lacks. Only when
    /// [`Session::can_fetch`]: one fetch is outstanding at a time.
    pub fn fetch(&mut self, fetch: Fetch) -> Result<(), SessionError> {
        self.check_live()?;
        if self.phase != Phase::Running || self.done_sent {
            return Err(SessionError::Misuse("fetch outside a running session"));
        }
        if self.fetch_outstanding {
            return Err(SessionError::Misuse("fetch while another is outstanding"));
        }
        self.fetch_outstanding = true;
        self.queue(&Message::Fetch(fetch));
        Ok(())
    }

    /// Whether `fetch` may be called now: the session runs, this node is not done, and
    /// no fetch of this node's is waiting for its answer.
    pub fn can_fetch(&self) -> bool {
        self.phase == Phase::Running && !self.done_sent && !self.fetch_outstanding
    }

    /// Answers the `FetchRequested`.
    pub fn send_fetched(&mut self, fetched: Fetched) -> Result<(), SessionError> {
        self.check_live()?;
        if !self.fetch_to_answer {
            return Err(SessionError::Misuse("send_fetched without a fetch"));
        }
        self.fetch_to_answer = false;
        self.queue(&Message::Fetched(fetched));
        Ok(())
    }

    /// Ends this node's part, after `ReceiveComplete`; a station passes its receipt.
    pub fn finish(&mut self, receipt: Option<Signed<Receipt>>) -> Result<(), SessionError> {
        self.check_live()?;
        if !self.receive_complete_emitted || self.done_sent {
            return Err(SessionError::Misuse("finish before ReceiveComplete"));
        }
        self.done_sent = true;
        self.queue(&Message::Done(Done { receipt }));
        Ok(())
    }

    /// The next event for the node.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        if self.phase != Phase::Running {
            return None;
        }
        if !self.receive_complete_emitted
            && self.pull_sent
            && self.last_page_received
            && !self.fetch_outstanding
        {
            self.receive_complete_emitted = true;
            return Some(Event::ReceiveComplete);
        }
        if self.done_sent && self.done_received {
            self.phase = Phase::Finished;
            return Some(Event::Finished);
        }
        None
    }

    /// The next frame payload to send to the peer.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let frame = self.out.pop_front()?;
        self.queued_bytes -= frame.len();
        Some(frame)
    }

    /// Bytes of frames queued for the peer and not yet taken by `poll_transmit`.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Whether the node should read the peer's next frame: false while
    /// [`MAX_QUEUED_OUT`] bytes or more wait for the peer. A node that stops reading
    /// stops the peer in turn (the transport's flow control), so what a peer that does not
    /// read can make this node hold is bounded.
    pub fn wants_input(&self) -> bool {
        self.queued_bytes < MAX_QUEUED_OUT
    }

    /// Whether this node owes the peer pages of its log (it should call `send_changes`).
    pub fn is_serving(&self) -> bool {
        self.serving && self.phase == Phase::Running
    }

    /// When `handle_timeout` should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        matches!(
            self.phase,
            Phase::AwaitHello | Phase::Deciding | Phase::Running
        )
        .then_some(self.deadline)
    }

    /// Tells the session the time; fails it when the peer has been silent too long.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        self.check_live()?;
        if now >= self.deadline {
            return Err(self.fail(SessionError::Timeout));
        }
        Ok(())
    }

    /// Whether both sides are done.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// Why the session failed, if it did.
    pub fn error(&self) -> Option<&SessionError> {
        match &self.phase {
            Phase::Failed(e) => Some(e),
            _ => None,
        }
    }

    fn check_live(&self) -> Result<(), SessionError> {
        match &self.phase {
            Phase::Failed(e) => Err(e.clone()),
            Phase::Finished => Err(SessionError::Ended),
            _ => Ok(()),
        }
    }

    fn fail(&mut self, error: SessionError) -> SessionError {
        self.phase = Phase::Failed(error.clone());
        self.events.clear();
        error
    }
}

/// `text` with each control character (terminal escapes, newlines) replaced by U+FFFD, for
/// showing a peer's words in an error or a log line.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::DeviceKey;
    use crate::membership::MemberRole;
    use crate::wire::MAX_FRAME;

    const PULL: Pull = Pull {
        epoch: [0; 16],
        after: 0,
        scope: [0; 32],
    };

    fn config(root: &DeviceKey, me: &DeviceKey) -> SessionConfig {
        let site = SiteId::for_root(root.device_id());
        let cert = Signed::sign(
            root,
            &Certificate {
                site,
                device: me.device_id(),
                name: "n".into(),
                role: MemberRole::Volunteer,
                grids: vec!["g".into()],
                issued_at_ms: 0,
                expires_at_ms: None,
            },
        );
        SessionConfig {
            site,
            cert,
            roster_digest: [0; 32],
            epoch: [7; 16],
            idle_timeout: Duration::from_secs(10),
        }
    }

    /// Answers events the simplest way a node could: accept, serve one empty page,
    /// finish.
    fn answer(s: &mut Session) -> Vec<Event> {
        let mut seen = Vec::new();
        while let Some(e) = s.poll_event() {
            match &e {
                Event::PeerHello(_) => s.accept(None).unwrap(),
                Event::PullRequested { after, .. } => s
                    .send_changes(Changes {
                        from: *after,
                        upto: 3,
                        last: true,
                        docs: vec![],
                    })
                    .unwrap(),
                Event::ReceiveComplete => s.finish(None).unwrap(),
                _ => {}
            }
            seen.push(e);
        }
        seen
    }

    /// Moves every frame from `from` to `to`; returns how many moved.
    fn pump(from: &mut Session, to: &mut Session, now: Instant) -> Result<usize, SessionError> {
        let mut n = 0;
        while let Some(frame) = from.poll_transmit() {
            to.handle_frame(&frame, now)?;
            n += 1;
        }
        Ok(n)
    }

    #[test]
    fn a_quiet_sync_completes_on_both_sides() {
        let root = DeviceKey::from_seed([1; 32]);
        let (ka, kb) = (DeviceKey::from_seed([2; 32]), DeviceKey::from_seed([3; 32]));
        let now = Instant::now();
        let mut a = Session::new(config(&root, &ka), PULL, now);
        let mut b = Session::new(config(&root, &kb), PULL, now);
        let mut a_events = Vec::new();
        let mut b_events = Vec::new();
        for _ in 0..10 {
            let moved = pump(&mut a, &mut b, now).unwrap() + pump(&mut b, &mut a, now).unwrap();
            a_events.extend(answer(&mut a));
            b_events.extend(answer(&mut b));
            if moved == 0 && a.is_finished() && b.is_finished() {
                break;
            }
        }
        assert!(a.is_finished() && b.is_finished());
        for events in [&a_events, &b_events] {
            assert!(matches!(events[0], Event::PeerHello(_)));
            assert!(events.contains(&Event::ReceiveComplete));
            assert_eq!(events.last(), Some(&Event::Finished));
        }
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn a_foreign_site_is_refused_with_a_reason() {
        let (root, other_root) = (DeviceKey::from_seed([1; 32]), DeviceKey::from_seed([9; 32]));
        let (ka, kb) = (DeviceKey::from_seed([2; 32]), DeviceKey::from_seed([3; 32]));
        let now = Instant::now();
        let mut a = Session::new(config(&root, &ka), PULL, now);
        let mut b = Session::new(config(&other_root, &kb), PULL, now);
        assert_eq!(pump(&mut a, &mut b, now), Err(SessionError::ForeignSite));
        // b's Hello reaches a, which refuses b in turn; b's Refuse says why.
        assert_eq!(pump(&mut b, &mut a, now), Err(SessionError::ForeignSite));
        let refusal = std::iter::from_fn(|| b.poll_transmit())
            .map(|f| Message::decode(&f).unwrap())
            .last();
        assert!(
            matches!(&refusal, Some(Message::Refuse(r)) if r.contains("another site")),
            "{refusal:?}"
        );
        assert!(a.error().is_some() && b.error().is_some());
    }

    #[test]
    fn another_protocol_version_is_refused() {
        let root = DeviceKey::from_seed([1; 32]);
        let c = config(&root, &DeviceKey::from_seed([2; 32]));
        let now = Instant::now();
        let mut s = Session::new(c.clone(), PULL, now);
        let hello = Message::Hello(Hello {
            version: PROTOCOL_VERSION + 1,
            site: c.site,
            cert: c.cert.clone(),
            roster_digest: [0; 32],
            epoch: [0; 16],
        });
        assert_eq!(
            s.handle_frame(&hello.encode(), now),
            Err(SessionError::Version(PROTOCOL_VERSION + 1))
        );
    }

    #[test]
    fn messages_out_of_order_are_violations() {
        let root = DeviceKey::from_seed([1; 32]);
        let c = config(&root, &DeviceKey::from_seed([2; 32]));
        let now = Instant::now();
        // Data before Hello.
        let mut s = Session::new(c.clone(), PULL, now);
        let page = Message::Changes(Changes {
            from: 0,
            upto: 0,
            last: true,
            docs: vec![],
        });
        assert_eq!(
            s.handle_frame(&page.encode(), now),
            Err(SessionError::Unexpected("Changes"))
        );
        // Done before this node served the peer's pull.
        let mut s = Session::new(c.clone(), PULL, now);
        let hello = hello_of(&c);
        s.handle_frame(&hello.encode(), now).unwrap();
        let _ = answer(&mut s);
        let done = Message::Done(Done { receipt: None });
        assert_eq!(
            s.handle_frame(&done.encode(), now),
            Err(SessionError::Unexpected("Done"))
        );
        // A roster after record data.
        let mut s = Session::new(c.clone(), PULL, now);
        s.handle_frame(&hello.encode(), now).unwrap();
        let _ = answer(&mut s);
        s.handle_frame(&page.encode(), now).unwrap();
        let roster = Message::Roster(Roster::default());
        assert_eq!(
            s.handle_frame(&roster.encode(), now),
            Err(SessionError::Unexpected("Roster"))
        );
    }

    #[test]
    fn silence_times_out_and_misuse_is_refused() {
        let root = DeviceKey::from_seed([1; 32]);
        let c = config(&root, &DeviceKey::from_seed([2; 32]));
        let now = Instant::now();
        let mut s = Session::new(c.clone(), PULL, now);
        assert_eq!(
            s.finish(None),
            Err(SessionError::Misuse("finish before ReceiveComplete"))
        );
        assert!(s.handle_timeout(now + Duration::from_secs(9)).is_ok());
        assert_eq!(
            s.handle_timeout(now + Duration::from_secs(10)),
            Err(SessionError::Timeout)
        );
        assert_eq!(s.handle_frame(&[], now), Err(SessionError::Timeout));
    }

    #[test]
    fn oversized_and_garbage_frames_fail_cleanly() {
        let root = DeviceKey::from_seed([1; 32]);
        let c = config(&root, &DeviceKey::from_seed([2; 32]));
        let now = Instant::now();
        let mut s = Session::new(c.clone(), PULL, now);
        let big = vec![0u8; MAX_FRAME + 1];
        assert!(matches!(
            s.handle_frame(&big, now),
            Err(SessionError::Decode(DecodeError::TooLarge(_)))
        ));
        let mut s = Session::new(c, PULL, now);
        assert!(matches!(
            s.handle_frame(&[0xff, 0xff, 0xff], now),
            Err(SessionError::Decode(DecodeError::Malformed(_)))
        ));
    }

    /// The `Hello` a peer with config `c` sends: this protocol version, empty roster and log.
    fn hello_of(c: &SessionConfig) -> Message {
        Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            site: c.site,
            cert: c.cert.clone(),
            roster_digest: [0; 32],
            epoch: [0; 16],
        })
    }

    /// A session past the peer's accepted Hello (and its Pull), as a node that serves
    /// nothing yet; with the peer's config.
    fn running(now: Instant) -> (Session, SessionConfig) {
        let root = DeviceKey::from_seed([1; 32]);
        let c = config(&root, &DeviceKey::from_seed([2; 32]));
        let peer = config(&root, &DeviceKey::from_seed([3; 32]));
        let mut s = Session::new(c, PULL, now);
        let hello = hello_of(&peer);
        s.handle_frame(&hello.encode(), now).unwrap();
        assert!(matches!(s.poll_event(), Some(Event::PeerHello(_))));
        s.accept(None).unwrap();
        while s.poll_transmit().is_some() {}
        (s, peer)
    }

    fn fetch_of(n: u8) -> Message {
        Message::Fetch(Fetch {
            docs: (0..n)
                .map(|i| (crate::DocId::from_slice(&[i; 16]).unwrap(), vec![]))
                .collect(),
        })
    }

    #[test]
    fn a_second_fetch_before_the_first_is_answered_ends_the_session() {
        let now = Instant::now();
        let (mut s, _) = running(now);
        s.handle_frame(&fetch_of(2).encode(), now).unwrap();
        assert!(matches!(s.poll_event(), Some(Event::FetchRequested(_))));
        // Answered: the next may come.
        s.send_fetched(Fetched { docs: vec![] }).unwrap();
        s.handle_frame(&fetch_of(2).encode(), now).unwrap();
        assert!(matches!(s.poll_event(), Some(Event::FetchRequested(_))));
        // Not answered yet: a violation.
        assert_eq!(
            s.handle_frame(&fetch_of(1).encode(), now),
            Err(SessionError::Unexpected("Fetch"))
        );
        assert_eq!(s.poll_event(), None);
        assert!(s.send_fetched(Fetched { docs: vec![] }).is_err());
    }

    #[test]
    fn a_node_has_one_fetch_outstanding_at_a_time() {
        let now = Instant::now();
        let (mut s, _) = running(now);
        let Message::Fetch(f) = fetch_of(1) else {
            unreachable!()
        };
        assert!(s.can_fetch());
        s.fetch(f.clone()).unwrap();
        assert!(!s.can_fetch());
        assert_eq!(
            s.fetch(f.clone()),
            Err(SessionError::Misuse("fetch while another is outstanding"))
        );
        let answer = Message::Fetched(Fetched { docs: vec![] });
        s.handle_frame(&answer.encode(), now).unwrap();
        assert!(matches!(s.poll_event(), Some(Event::Fetched(_))));
        assert!(s.can_fetch());
        // An answer to nothing is a violation.
        assert_eq!(
            s.handle_frame(&answer.encode(), now),
            Err(SessionError::Unexpected("Fetched"))
        );
    }

    #[test]
    fn a_fetch_naming_a_document_twice_does_not_decode() {
        let doc = crate::DocId::from_slice(&[4; 16]).unwrap();
        for docs in [vec![(doc, vec![]), (doc, vec![])], {
            let other = crate::DocId::from_slice(&[3; 16]).unwrap();
            vec![(doc, vec![]), (other, vec![])]
        }] {
            assert_eq!(
                Message::decode(&Message::Fetch(Fetch { docs }).encode()),
                Err(DecodeError::OverLimit("documents not in order or repeated"))
            );
        }
    }

    #[test]
    fn a_second_roster_ends_the_session() {
        let now = Instant::now();
        let (mut s, _) = running(now);
        let roster = Message::Roster(Roster::default()).encode();
        s.handle_frame(&roster, now).unwrap();
        assert!(matches!(s.poll_event(), Some(Event::Roster(_))));
        assert_eq!(
            s.handle_frame(&roster, now),
            Err(SessionError::Unexpected("Roster"))
        );
        assert_eq!(s.poll_event(), None);
    }

    #[test]
    fn every_message_but_changes_comes_a_bounded_number_of_times() {
        let now = Instant::now();
        let (mut s, peer) = running(now);
        assert_eq!(
            s.handle_frame(&hello_of(&peer).encode(), now),
            Err(SessionError::Unexpected("Hello"))
        );
        let (mut s, _) = running(now);
        let pull = Message::Pull(PULL).encode();
        s.handle_frame(&pull, now).unwrap();
        assert_eq!(
            s.handle_frame(&pull, now),
            Err(SessionError::Unexpected("Pull"))
        );
        // Pages: any number until the last, none after it.
        let (mut s, _) = running(now);
        let page = |last| {
            Message::Changes(Changes {
                from: 0,
                upto: 0,
                last,
                docs: vec![],
            })
            .encode()
        };
        for _ in 0..3 {
            s.handle_frame(&page(false), now).unwrap();
        }
        s.handle_frame(&page(true), now).unwrap();
        assert_eq!(
            s.handle_frame(&page(true), now),
            Err(SessionError::Unexpected("Changes"))
        );
        // Done once.
        let (mut s, _) = running(now);
        s.handle_frame(&pull, now).unwrap();
        let _ = answer(&mut s);
        let done = Message::Done(Done { receipt: None }).encode();
        s.handle_frame(&done, now).unwrap();
        assert_eq!(
            s.handle_frame(&done, now),
            Err(SessionError::Unexpected("Done"))
        );
    }

    #[test]
    fn a_refusal_from_a_peer_not_accepted_is_not_shown() {
        let now = Instant::now();
        let root = DeviceKey::from_seed([1; 32]);
        let c = config(&root, &DeviceKey::from_seed([2; 32]));
        let text = "\u{1b}]0;pwned\u{7}\u{1b}[2J 请联系 evil.example";
        // Before Hello.
        let mut s = Session::new(c.clone(), PULL, now);
        let refuse = Message::Refuse(text.into()).encode();
        assert_eq!(
            s.handle_frame(&refuse, now),
            Err(SessionError::RefusedByStranger)
        );
        assert!(!s.error().unwrap().to_string().contains("evil"));
        // While the node decides on the Hello, then refuses it: never shown either.
        let (_, peer) = running(now);
        let mut s = Session::new(c, PULL, now);
        let hello = hello_of(&peer);
        s.handle_frame(&hello.encode(), now).unwrap();
        s.handle_frame(&refuse, now).unwrap();
        s.refuse("not a member");
        assert_eq!(
            s.error(),
            Some(&SessionError::Refused("not a member".into()))
        );
        // Held while the node decides, then the node accepts: shown.
        let mut s = Session::new(config(&root, &DeviceKey::from_seed([2; 32])), PULL, now);
        s.handle_frame(&hello.encode(), now).unwrap();
        s.handle_frame(&refuse, now).unwrap();
        assert!(matches!(s.poll_event(), Some(Event::PeerHello(_))));
        assert!(matches!(
            s.accept(None),
            Err(SessionError::RefusedByPeer(r)) if r.contains("evil.example")
        ));
        // From an accepted peer: shown, without its control characters.
        let (mut s, _) = running(now);
        let Err(SessionError::RefusedByPeer(shown)) = s.handle_frame(&refuse, now) else {
            panic!("{:?}", s.error())
        };
        assert!(shown.contains("evil.example"));
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
    }

    #[test]
    fn reading_stops_while_output_is_full() {
        let now = Instant::now();
        let (mut s, _) = running(now);
        s.handle_frame(&Message::Pull(PULL).encode(), now).unwrap();
        assert!(matches!(s.poll_event(), Some(Event::PullRequested { .. })));
        let page = || Changes {
            from: 0,
            upto: 1,
            last: false,
            docs: vec![crate::wire::WireDoc {
                doc: crate::DocId::from_slice(&[5; 16]).unwrap(),
                header: None,
                changes: (0..3)
                    .map(|_| crate::wire::WireChange {
                        signature: [0; 64],
                        bytes: vec![0; 1 << 20],
                    })
                    .collect(),
            }],
        };
        s.send_changes(page()).unwrap();
        s.send_changes(page()).unwrap();
        assert!(s.wants_input());
        s.send_changes(page()).unwrap();
        assert!(s.queued_bytes() >= MAX_QUEUED_OUT);
        assert!(!s.wants_input());
        assert!(s.poll_transmit().is_some());
        assert!(s.wants_input());
    }
}

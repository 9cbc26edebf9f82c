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
//! 2. A `Roster` is only accepted before any `Changes`: revocations arrive ahead of data.
//! 3. The peer answers `Pull` (once accepted) with pages of `Changes` from the position
//!    asked for (from the start if the epoch or the scope key differ), the last page
//!    marked `last`.
//! 4. A page may hold changes whose history the receiver lacks (a record that just came
//!    into its scope): it sends `Fetch` and the peer answers each with one `Fetched`.
//! 5. When the last page has come and every fetch is answered, the node `finish`es,
//!    sending `Done` (a station puts its signed receipt in it). When both sides have sent
//!    and received `Done`, the session is finished.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::identity::SiteId;
use crate::membership::{Certificate, Receipt};
use crate::signed::Signed;
use crate::wire::{
    Changes, DecodeError, Done, Fetch, Fetched, Hello, Message, PROTOCOL_VERSION, Pull, Roster,
};

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
    /// The peer asks for documents: answer with one `send_fetched`.
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
    /// The peer refused to sync, with its reason.
    #[error("refused by peer: {0}")]
    RefusedByPeer(String),
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
    out: VecDeque<Message>,
    events: VecDeque<Event>,
    /// Messages that arrived while the node was deciding on the peer's Hello.
    held: VecDeque<Message>,
    deadline: Instant,
    // Receiving side.
    pull_sent: bool,
    changes_seen: bool,
    last_page_received: bool,
    outstanding_fetches: usize,
    receive_complete_emitted: bool,
    // Sending side.
    pull_received: bool,
    serving: bool,
    fetches_to_answer: usize,
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
        Session {
            deadline: now + config.idle_timeout,
            config,
            phase: Phase::AwaitHello,
            out: VecDeque::from([hello, Message::Pull(pull)]),
            events: VecDeque::new(),
            held: VecDeque::new(),
            pull_sent: true,
            changes_seen: false,
            last_page_received: false,
            outstanding_fetches: 0,
            receive_complete_emitted: false,
            pull_received: false,
            serving: false,
            fetches_to_answer: 0,
            done_sent: false,
            done_received: false,
        }
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
        if let Message::Refuse(reason) = msg {
            return Err(self.fail(SessionError::RefusedByPeer(reason)));
        }
        match (&self.phase, msg) {
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
            Message::Roster(r) if !self.changes_seen && !self.done_received => {
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
            Message::Fetch(f) if !self.done_received => {
                self.fetches_to_answer += 1;
                self.events.push_back(Event::FetchRequested(f));
            }
            Message::Fetched(f) if self.outstanding_fetches > 0 => {
                self.outstanding_fetches -= 1;
                self.events.push_back(Event::Fetched(f));
            }
            Message::Done(d)
                if !self.done_received
                    && self.pull_received
                    && !self.serving
                    && self.fetches_to_answer == 0 =>
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
            self.out.push_back(Message::Roster(r));
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
        self.out.push_back(Message::Refuse(reason));
        self.fail(error)
    }

    /// Sends a page of this node's log, answering `PullRequested`.
    pub fn send_changes(&mut self, page: Changes) -> Result<(), SessionError> {
        self.check_live()?;
        if !self.serving {
            return Err(SessionError::Misuse("send_changes without a pull"));
        }
        self.serving = !page.last;
        self.out.push_back(Message::Changes(page));
        Ok(())
    }

    /// Asks the peer for documents whose history this node lacks.
    pub fn fetch(&mut self, fetch: Fetch) -> Result<(), SessionError> {
        self.check_live()?;
        if self.phase != Phase::Running || self.done_sent {
            return Err(SessionError::Misuse("fetch outside a running session"));
        }
        self.outstanding_fetches += 1;
        self.out.push_back(Message::Fetch(fetch));
        Ok(())
    }

    /// Answers one `FetchRequested`.
    pub fn send_fetched(&mut self, fetched: Fetched) -> Result<(), SessionError> {
        self.check_live()?;
        if self.fetches_to_answer == 0 {
            return Err(SessionError::Misuse("send_fetched without a fetch"));
        }
        self.fetches_to_answer -= 1;
        self.out.push_back(Message::Fetched(fetched));
        Ok(())
    }

    /// Ends this node's part, after `ReceiveComplete`; a station passes its receipt.
    pub fn finish(&mut self, receipt: Option<Signed<Receipt>>) -> Result<(), SessionError> {
        self.check_live()?;
        if !self.receive_complete_emitted || self.done_sent {
            return Err(SessionError::Misuse("finish before ReceiveComplete"));
        }
        self.done_sent = true;
        self.out.push_back(Message::Done(Done { receipt }));
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
            && self.outstanding_fetches == 0
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
        self.out.pop_front().map(|m| m.encode())
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
        let hello = Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            site: c.site,
            cert: c.cert.clone(),
            roster_digest: [0; 32],
            epoch: [0; 16],
        });
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
}

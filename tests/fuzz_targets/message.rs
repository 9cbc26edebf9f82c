//! The `message` target: a stream of frames received by a real sync `Session`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use yizhan_protocol::signed::Signed;
use yizhan_protocol::sync::{Event, Session, SessionConfig, SessionError};
use yizhan_protocol::wire::{Changes, Fetch, Fetched, Message, Pull, Roster, WireDoc};
use yizhan_protocol::{Certificate, DeviceKey, MemberRole};

use super::common::{NOW_MS, install_panic_hook, keys, site};
use super::frame::{check_message, frames};

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
/// frames (as for [`frame`](fn@super::frame)) that a real `Session` receives one by one,
/// 10 ms apart on a virtual clock. The node answers every event as the sync engine would:
/// accept or refuse the `Hello` (with a roster or not), serve pages, fetch the documents
/// of a page, answer fetches, finish. Every frame the session sends must decode, a misuse
/// error means the session refused a lawful answer, and a failed session must stay failed.
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

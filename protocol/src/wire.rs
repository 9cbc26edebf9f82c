//! The sync messages as they travel: one [`Message`] per frame, postcard-encoded.
//!
//! On a QUIC stream each frame is a 4-byte big-endian length followed by that many bytes
//! (at most [`MAX_FRAME`]; see [`crate::frame`]). See `docs/protocol.md` for the full
//! specification.

use serde::{Deserialize, Serialize};

use crate::doc::{DocHeader, DocId};
use crate::envelope::{ChangeHash, SignedChange, VerifyError, decode_change};
use crate::identity::{DeviceId, SiteId};
use crate::membership::{Certificate, Receipt, Revocation};
use crate::signed::Signed;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// The largest frame a node accepts, in bytes.
pub const MAX_FRAME: usize = 4 << 20;
/// The most changes one `Changes` or `Fetched` message may carry.
pub const MAX_CHANGES_PER_MESSAGE: usize = 8192;
/// The most documents one `Fetch` may ask for.
pub const MAX_FETCH_DOCS: usize = 1024;
/// The most heads a document may claim in a `Fetch`.
pub const MAX_HEADS: usize = 64;
/// The most certificates or revocations one `Roster` may carry.
pub const MAX_ROSTER: usize = 10_000;

/// One protocol message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// The first message each side sends.
    Hello(Hello),
    /// The sender will not sync with the receiver, and why. The last message.
    Refuse(String),
    /// The sender's certificates and revocations (sent when roster digests differ, before
    /// any record data).
    Roster(Roster),
    /// Asks the receiver for its change log after a position.
    Pull(Pull),
    /// A page of the sender's change log, answering `Pull`.
    Changes(Changes),
    /// Asks for whole documents whose history the sender lacks (one at a time).
    Fetch(Fetch),
    /// Answers one `Fetch`.
    Fetched(Fetched),
    /// The sender has received everything it asked for. It may still owe the peer pages
    /// and fetch answers, which follow; nothing else does.
    Done(Done),
}

/// The first message: who the sender is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u16,
    /// The sender's site.
    pub site: SiteId,
    /// The sender's membership certificate (must name the device that authenticated the
    /// transport).
    pub cert: Signed<Certificate>,
    /// SHA-256 over the sender's sorted certificate and revocation digests.
    pub roster_digest: [u8; 32],
    /// The epoch of the sender's change log (changes when a log is started anew).
    pub epoch: [u8; 16],
}

/// Certificates and revocations.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Roster {
    /// Membership certificates.
    pub certs: Vec<Signed<Certificate>>,
    /// Revocations.
    pub revocations: Vec<Signed<Revocation>>,
}

/// "Send me your log after position `after`." Sent right behind `Hello`, before the
/// peer's `Hello` has arrived, from what the sender remembers of the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pull {
    /// The epoch `after` refers to; a different epoch means "from the start".
    pub epoch: [u8; 16],
    /// The last position already received.
    pub after: u64,
    /// The scope key `after` was reached under: SHA-256 over the puller's certificate
    /// digest then the server's. When the server computes another key (a certificate, so
    /// a scope, changed), it serves from the start.
    pub scope: [u8; 32],
}

/// A page of the sender's change log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// The page covers log positions `from + 1 ..= upto`.
    pub from: u64,
    /// The last position this page covers.
    pub upto: u64,
    /// This is the last page.
    pub last: bool,
    /// The changes, grouped by document, in log order.
    pub docs: Vec<WireDoc>,
}

/// Documents whose missing history the sender asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetch {
    /// Each document with the heads the sender holds (empty when it holds none), in
    /// ascending order of document id, each once.
    pub docs: Vec<(DocId, Vec<ChangeHash>)>,
}

/// The answer to one `Fetch`: every change of each document that the asker's heads lack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetched {
    /// The documents (each with its header).
    pub docs: Vec<WireDoc>,
}

/// The end of the sender's part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// From a station: its signed statement of how much of the receiver's log it holds.
    pub receipt: Option<Signed<Receipt>>,
}

/// Changes of one document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireDoc {
    /// The document.
    pub doc: DocId,
    /// Its header, when the receiver may not have the document yet.
    pub header: Option<DocHeader>,
    /// Its changes, in causal order.
    pub changes: Vec<WireChange>,
}

/// One signed change on the wire. The hash and the signer are not sent: the receiver
/// computes the hash from the bytes and takes the signer from the change's actor (which
/// the actor binding makes the same thing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireChange {
    /// ed25519 signature (see [`crate::envelope`]).
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
    /// The raw Automerge change.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

impl WireChange {
    /// The wire form of a stored envelope.
    pub fn from_envelope(env: &SignedChange) -> Self {
        WireChange {
            signature: env.signature,
            bytes: env.bytes.clone(),
        }
    }

    /// Rebuilds the envelope: decodes the change (panics contained) to learn its hash and
    /// its actor, which must be a valid device id. The signature is checked later, by
    /// [`SignedChange::verify_many`] on the result (given with its decoding). A change that is not an envelope is given
    /// back with the reason (a receiver keeps what it refused).
    pub fn into_envelope(
        self,
        doc: DocId,
    ) -> Result<(SignedChange, automerge::Change), NotAnEnvelope> {
        let refuse = |change: WireChange, error: VerifyError| NotAnEnvelope { change, error };
        if self.bytes.len() > crate::envelope::MAX_CHANGE_BYTES {
            let len = self.bytes.len();
            return Err(refuse(self, VerifyError::TooLarge(len)));
        }
        let change = match decode_change(&self.bytes) {
            Ok(change) => change,
            Err(error) => return Err(refuse(self, error)),
        };
        let signer = match DeviceId::from_slice(change.actor_id().to_bytes()) {
            Ok(signer) => signer,
            Err(_) => return Err(refuse(self, VerifyError::ActorNotSigner)),
        };
        Ok((
            SignedChange {
                doc,
                hash: change.hash().into(),
                signer,
                signature: self.signature,
                bytes: self.bytes,
            },
            change,
        ))
    }
}

/// A [`WireChange`] that did not become an envelope ([`WireChange::into_envelope`]), given
/// back with why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct NotAnEnvelope {
    /// The change, as it came.
    pub change: WireChange,
    /// Why it is not an envelope.
    pub error: VerifyError,
}

/// Why a frame was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Over [`MAX_FRAME`].
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(usize),
    /// Not a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A message over one of the per-message limits.
    #[error("message over limits: {0}")]
    OverLimit(&'static str),
}

impl Message {
    /// Encodes the message as a frame payload.
    pub fn encode(&self) -> Vec<u8> {
        // Sized up front: a page of a thousand changes is about a megabyte, and growing
        // the buffer by doubling would copy it again at every step.
        let docs = match self {
            Message::Changes(page) => page.docs.as_slice(),
            Message::Fetched(answer) => answer.docs.as_slice(),
            _ => &[],
        };
        let hint: usize = docs
            .iter()
            .map(|d| {
                // Id, header and lengths; each change's signature, bytes and length.
                160 + d.changes.iter().map(|c| c.bytes.len() + 72).sum::<usize>()
            })
            .sum();
        postcard::to_extend(self, Vec::with_capacity(hint + 256)).expect("messages encode")
    }

    /// Decodes a frame payload, checking the size limits.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        if bytes.len() > MAX_FRAME {
            return Err(DecodeError::TooLarge(bytes.len()));
        }
        let (msg, rest): (Message, _) =
            postcard::take_from_bytes(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DecodeError::Malformed(
                "trailing bytes after the message".into(),
            ));
        }
        msg.check_limits()?;
        Ok(msg)
    }

    fn check_limits(&self) -> Result<(), DecodeError> {
        let count = |docs: &[WireDoc]| docs.iter().map(|d| d.changes.len()).sum::<usize>();
        match self {
            Message::Changes(c) if count(&c.docs) > MAX_CHANGES_PER_MESSAGE => {
                Err(DecodeError::OverLimit("too many changes"))
            }
            Message::Changes(c) if c.upto < c.from => Err(DecodeError::OverLimit("bad range")),
            Message::Fetched(f) if count(&f.docs) > MAX_CHANGES_PER_MESSAGE => {
                Err(DecodeError::OverLimit("too many changes"))
            }
            Message::Fetch(f) if f.docs.len() > MAX_FETCH_DOCS => {
                Err(DecodeError::OverLimit("too many documents"))
            }
            Message::Fetch(f) if f.docs.iter().any(|(_, h)| h.len() > MAX_HEADS) => {
                Err(DecodeError::OverLimit("too many heads"))
            }
            // Each document once (answering a document costs loading it).
            Message::Fetch(f) if !f.docs.windows(2).all(|w| w[0].0 < w[1].0) => {
                Err(DecodeError::OverLimit("documents not in order or repeated"))
            }
            Message::Roster(r)
                if r.certs.len() > MAX_ROSTER || r.revocations.len() > MAX_ROSTER =>
            {
                Err(DecodeError::OverLimit("roster too large"))
            }
            Message::Refuse(reason) if reason.len() > 1024 => {
                Err(DecodeError::OverLimit("reason too long"))
            }
            _ => Ok(()),
        }
    }

    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "Hello",
            Message::Refuse(_) => "Refuse",
            Message::Roster(_) => "Roster",
            Message::Pull(_) => "Pull",
            Message::Changes(_) => "Changes",
            Message::Fetch(_) => "Fetch",
            Message::Fetched(_) => "Fetched",
            Message::Done(_) => "Done",
        }
    }
}

//! The sans-IO core of yizhan: what every node must agree on, with no I/O of its own.
//!
//! This crate holds the identities of devices, sites and records, and the signed envelope
//! that every Automerge change travels in. It never touches a socket, a file or a clock:
//! callers pass bytes, the current time and randomness in, and get values and errors out.
//! That keeps every rule here deterministic and testable in memory.
//!
//! - [`identity`]: device keys ([`DeviceKey`], secret, never printed) and their public
//!   [`DeviceId`]s, and [`SiteId`]s.
//! - [`doc`]: record documents: [`DocId`] is derived from a [`DocHeader`] (kind, author,
//!   nonce), so that a record's kind and author cannot be changed after it is made.
//! - [`columns`]: the operations a change declares, counted from its column headers
//!   before it is decoded.
//! - [`envelope`]: [`SignedChange`], an Automerge change signed by its author's device key,
//!   and the rule that binds the change's Automerge actor to that key.
//! - [`signed`] and [`membership`]: statements signed by a site's root station:
//!   membership certificates, revocations, enrolment tokens and station receipts.
//! - [`wire`] and [`sync`]: the sync messages and [`sync::Session`], the sans-IO state
//!   machine of one sync.
//! - [`frame`]: the length-prefixed frames messages travel in on a stream: the prefix,
//!   and [`frame::FrameDecoder`], which cuts arriving bytes into frames.
//!
//! The wire format and the signing rule are specified in `docs/protocol.md`.
#![deny(missing_docs)]

pub mod columns;
pub mod doc;
pub mod envelope;
pub mod frame;
pub mod identity;
pub mod membership;
pub mod signed;
pub mod sync;
pub mod wire;

pub use doc::{
    DocHeader, DocId, RecordKind, household_nonce, normalize_address, policy_nonce, shared_doc_id,
};
pub use envelope::{ChangeHash, SignedChange, Unverified, VerifiedChange, VerifyError};
pub use identity::{DeviceId, DeviceKey, ParseIdError, SiteId};
pub use membership::{Certificate, MemberRole, MembershipError, Receipt, Revocation, Token};
pub use signed::{Signed, SignedError, Statement};

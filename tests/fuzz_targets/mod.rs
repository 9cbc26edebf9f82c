//! The bodies of the fuzz targets, shared by the `cargo fuzz` binaries in `fuzz/` and the
//! stable smoke test (`tests/tests/it/fuzz_smoke.rs`), and the generator of their seed corpora.
//!
//! Each body takes arbitrary bytes, as a hostile peer could send them, and must never
//! panic: a panic that escapes a body is a finding. Panics that the code under test
//! contains on purpose (Automerge's decoder and `apply_changes` run under `catch_unwind`)
//! are counted by [`contained_panics`] and are not findings in themselves.
//!
//! | target | file | what it decodes |
//! | --- | --- | --- |
//! | [`frame`] | `frame.rs` | a byte stream as read from a sync stream: length-prefixed frames cut by `protocol::frame::FrameDecoder`, each a `Message` |
//! | [`message`] | `message.rs` | a sequence of frames fed to a real `protocol::sync::Session`, answered as a node would |
//! | [`envelope`] | `envelope.rs` | a `WireChange`: Automerge change decoding, a first change read without Automerge, envelope rebuild, strict verification, apply |
//! | [`statement`] | `statement.rs` | signed certificates, revocations and receipts, whole or as fuzzed bodies signed by the root |
//! | [`token`] | `token.rs` | the one-line `yzt1-` enrolment token |
//! | [`ingest`] | `ingest.rs` | a batch of signed changes handed to a real station's `Node::ingest`, on a fresh copy of a store |
//!
//! `common.rs` holds the fixed keys and clock, the panic accounting and the input reader,
//! `shape.rs` the shaping of change bytes ([`shape_change`]) that `envelope` and `ingest`
//! share, and `seeds.rs` the seed generator ([`seeds`]).
//!
//! The input layouts are simple byte formats (documented on each body), so that real data
//! from [`seeds`] is a valid input and libFuzzer's mutations stay meaningful.

mod common;
mod envelope;
mod frame;
mod ingest;
mod message;
mod seeds;
mod shape;
mod statement;
mod token;

pub use common::{NOW_MS, contained_panics, install_panic_hook, keys, site};
pub use envelope::envelope;
pub use frame::{FrameRead, encode_frames, frame, frames, read_frame};
pub use ingest::{CaseChange, CaseDoc, decode_ingest, encode_ingest, ingest};
pub use message::message;
pub use seeds::{Seed, seeds, write_seeds};
pub use shape::{Runs, shape_change};
pub use statement::statement;
pub use token::token;

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

//! The yizhan node: everything a laptop or the station runs, minus the command line.
//!
//! - [`home`]: the node's home directory (device key file and store), and [`Node`], the
//!   API the CLI calls: make and read records, verify, export and import.
//! - [`store`]: SQLite, WAL and `synchronous=FULL`; schema and migrations; serialised writes.
//! - [`records`]: how visit logs and tickets are laid out in their Automerge documents.
//! - [`model`]: categories, status, priority and times.
//! - [`exchange`]: CSV and JSON export and all-or-nothing import.
//! - [`conflicts`]: fields edited concurrently across records, and settling them.
//! - [`history`]: a record's history, read from its stored signed changes.
//!
//! The node moves signed changes between Automerge documents and SQLite. Identities, ids and
//! the signing rule live in `yizhan-protocol`; who may write which record is checked on
//! ingest, in [`home`].

pub mod config;
pub mod conflicts;
pub mod daemon;
pub mod discovery;
pub mod exchange;
mod group;
pub mod history;
pub mod home;
pub mod model;
pub mod net;
pub mod purge;
pub mod quarantine;
pub mod records;
pub mod report;
pub mod rules;
pub mod site;
pub mod store;
pub mod sync;

pub use home::{Node, Role};

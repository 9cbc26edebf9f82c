//! The errors of the node's operations, one enum per kind of operation: making or opening
//! a home ([`InitError`], [`OpenError`]), writing ([`WriteError`]), finding a record by a
//! prefix of its id ([`ResolveError`]) and reading ([`ReadError`]).

use std::path::PathBuf;

use yizhan_protocol::{DocId, VerifyError};

use crate::records::FieldError;

/// Why `init` failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The home already holds a key or a store.
    #[error("{0} is already initialised")]
    AlreadyInitialised(PathBuf),
    /// The name is empty.
    #[error("name must not be empty")]
    EmptyName,
    /// The passphrase is empty.
    #[error("the passphrase must not be empty")]
    EmptyPassphrase,
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The store could not be created.
    #[error(transparent)]
    Store(#[from] StoreOpenError),
    /// SQLite failed while writing the identity.
    #[error("cannot write the store: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Why a home could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No node lives here yet.
    #[error("{0} is not initialised (run `yizhan init --name NAME` first)")]
    NotInitialised(PathBuf),
    /// The home is encrypted and no passphrase was given.
    #[error(
        "{0} is encrypted: give its passphrase (YIZHAN_PASSPHRASE, or type it at the terminal)"
    )]
    NeedsPassphrase(PathBuf),
    /// A passphrase was given for a home that is not encrypted.
    #[error("{0} is not encrypted")]
    NotEncrypted(PathBuf),
    /// The key file is missing, unreadable or malformed.
    #[error("bad key file {path}: {reason}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreOpenError),
    /// The store's identity does not match the key, or is missing.
    #[error("the store does not belong to this device key: {0}")]
    Mismatch(String),
    /// SQLite failed.
    #[error("cannot read the store: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Why a write was refused or failed. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A field is not acceptable.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// This node may not change that record.
    #[error("{0}")]
    NotAllowed(String),
    /// The stored document could not be loaded.
    #[error("record {0} is damaged in the store: {1}")]
    Damaged(DocId, String),
    /// A row of a batch failed; nothing of the batch was written.
    #[error("record {index}: {source}")]
    InBatch {
        /// 1-based position in the batch.
        index: usize,
        /// What was wrong with it.
        source: Box<WriteError>,
    },
    /// Automerge refused an operation.
    #[error("cannot make the change: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    /// SQLite failed.
    #[error("cannot write the store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The thread that checks signatures could not be started.
    #[error("cannot start a thread to check signatures: {0}")]
    Thread(std::io::Error),
    /// The changes were to be stored with other syncs' in one transaction (group commit,
    /// `group.rs`), and that failed: nothing of the group was stored.
    #[error("cannot store the changes (with other syncs'): {0}")]
    Shared(String),
}

/// Why an id or prefix did not name exactly one thing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    /// Fewer than 6 characters.
    #[error("id prefix '{0}' is too short (give at least 6 characters)")]
    TooShort(String),
    /// Not hexadecimal, or too long.
    #[error("'{0}' is not a {1} id")]
    Malformed(String, &'static str),
    /// Nothing matches.
    #[error("no {1} matches '{0}'")]
    NotFound(String, &'static str),
    /// More than one matches.
    #[error("'{0}' is ambiguous: it matches {1} {2}s; give more characters")]
    Ambiguous(String, usize, &'static str),
    /// SQLite failed.
    #[error("cannot read the store: {0}")]
    Sqlite(String),
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The stored document could not be loaded.
    #[error("record {0} is damaged in the store: {1}")]
    Damaged(DocId, String),
    /// A stored index row could not be read.
    #[error("the record index is damaged: {0}")]
    Index(String),
    /// SQLite failed.
    #[error("cannot read the store: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl From<VerifyError> for WriteError {
    fn from(e: VerifyError) -> Self {
        WriteError::NotAllowed(e.to_string())
    }
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreOpenError {
    /// The file exists but is not a SQLite database.
    #[error("{0} is not a yizhan store (unreadable or not a database)")]
    NotADatabase(String),
    /// The file is a SQLite database of some other program.
    #[error("{0} is not a yizhan store (it belongs to another program)")]
    Foreign(String),
    /// The passphrase does not open the encrypted store.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// An empty passphrase was given (SQLCipher would take it as "no key").
    #[error("the passphrase must not be empty")]
    EmptyPassphrase,
    /// The store was written by a newer yizhan.
    #[error("the store has schema version {0}, newer than this yizhan understands")]
    TooNew(i64),
    /// Migrating left a row that refers to a row that does not exist (in this table); the
    /// store is left as it was.
    #[error("cannot migrate the store: a row of {0} refers to a missing row")]
    BrokenReference(String),
    /// The new store file could not be made private to its owner.
    #[error("cannot make {0} private: {1}")]
    Permissions(String, std::io::Error),
    /// SQLite failed.
    #[error("cannot open the store: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

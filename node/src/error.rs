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

/// Why this node may not make a change: the write rules as the writer sees them. Each
/// carries what a person needs to put it right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A volunteer wrote outside its grids.
    #[error(
        "grid '{grid}' is not one of this volunteer's grids ({own}): a volunteer may write records only in its own grids"
    )]
    NotOwnGrid {
        /// The grid written to.
        grid: String,
        /// The volunteer's grids, joined.
        own: String,
    },
    /// A station's record names no grid.
    #[error("a station must name the grid (--grid)")]
    StationNeedsGrid,
    /// Households are derived from the site, which this node does not have yet.
    #[error("households are kept once this device has joined a site")]
    NotJoined,
    /// `household add` of an address the grid already has.
    #[error("grid {grid} already has a household at {address}: {id}")]
    HouseholdExists {
        /// The grid.
        grid: String,
        /// The address held.
        address: String,
        /// The household's id.
        id: String,
    },
    /// The household now lies outside this device's grids.
    #[error(
        "the household at {address} in grid {grid} ({id}) has moved out of this device's grids"
    )]
    HouseholdMovedAway {
        /// Its grid now.
        grid: String,
        /// Its address.
        address: String,
        /// Its id.
        id: String,
    },
    /// A household named by id is in another grid than the one given.
    #[error("household {id} is in grid {grid}, not {given}")]
    HouseholdInOtherGrid {
        /// The household.
        id: String,
        /// Its grid.
        grid: String,
        /// The grid given.
        given: String,
    },
    /// A household id that is not one.
    #[error("malformed household id")]
    MalformedHousehold,
    /// A prefix matching several households.
    #[error("'{0}' matches more than one household: give more of its id")]
    HouseholdAmbiguous(String),
    /// A satisfaction verdict on a ticket still open.
    #[error("the ticket is {0}: a follow-up verdict is recorded on a resolved or closed ticket")]
    NotFinished(String),
    /// Only a station writes the policy.
    #[error("only a station may change the policy")]
    PolicyStationOnly,
    /// Only a station publishes a notice.
    #[error("only a station may publish a notice")]
    NoticeStationOnly,
    /// Policy days out of range.
    #[error("days must be between 1 and {0}")]
    PolicyDays(u32),
    /// A visit log edited by someone else.
    #[error("only the visit's author or a station may change a visit log")]
    NotVisitAuthor,
    /// A visit links a ticket this node does not hold.
    #[error("links to ticket {0}, which this node does not hold")]
    UnknownTicket(String),
    /// A record of another kind than the command's.
    #[error("{0} is not a {1}")]
    NotA(String, &'static str),
    /// No such record.
    #[error("no record {0} in this store")]
    NoRecord(String),
    /// A resolution that did not settle the field.
    #[error("the change to '{0}' did not settle the conflict")]
    NotSettled(String),
    /// This node's own change failed its own signature checks.
    #[error("{0}")]
    Signature(String),
}

/// Why a write was refused or failed. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A field is not acceptable.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// This node may not make that change.
    #[error(transparent)]
    NotAllowed(#[from] Refusal),
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
        WriteError::NotAllowed(Refusal::Signature(e.to_string()))
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

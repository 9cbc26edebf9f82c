//! A node's home directory and the [`Node`] API over it.
//!
//! A home holds two files:
//!
//! - `device.key`: the 32-byte ed25519 secret seed as 64 hex characters, mode 0600, written once, atomically
//!   (temporary file, fsync, rename, fsync of the directory).
//! - `store.db`: the SQLite store ([`crate::store`]), with the node's name, role, site and
//!   grids in its `meta` table.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction: load the document's latest snapshot,
//! make the Automerge change with this device's actor, sign it, store the change, the new
//! snapshot and the record's index row, commit. Nothing is reported as saved before the
//! commit returns, and the commit is fsynced (`synchronous=FULL`).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use automerge::transaction::CommitOptions;
use automerge::{ActorId, AutoCommit};
use rusqlite::{OptionalExtension, Transaction, params};
use yizhan_protocol::{
    ChangeHash, DeviceId, DeviceKey, DocHeader, DocId, RecordKind, SignedChange, SiteId,
    VerifyError,
};

use crate::model::Time;
use crate::records::{self, FieldError, NewTicket, NewVisit, TicketUpdate, VisitEdit};
use crate::store::{self, Passphrase, Store, set_meta};

/// The file name of the device key inside a home.
pub const KEY_FILE: &str = "device.key";
/// The file name of the store inside a home.
pub const STORE_FILE: &str = "store.db";

/// What a node is in its site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The site's root of trust; holds the whole site.
    Station,
    /// An enrolled volunteer; holds its grids.
    Volunteer,
    /// Not a member of any site yet.
    Unenrolled,
}

impl Role {
    /// `station`, `volunteer` or `unenrolled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Station => "station",
            Role::Volunteer => "volunteer",
            Role::Unenrolled => "unenrolled",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        match s {
            "station" => Some(Role::Station),
            "volunteer" => Some(Role::Volunteer),
            "unenrolled" => Some(Role::Unenrolled),
            _ => None,
        }
    }
}

/// Who this node is.
#[derive(Clone, Debug)]
pub struct Identity {
    /// This device.
    pub device_id: DeviceId,
    /// The name its owner gave it.
    pub name: String,
    /// The site it belongs to, if any.
    pub site_id: Option<SiteId>,
    /// Its role.
    pub role: Role,
    /// The grids it is enrolled for (a volunteer's first grid is its default).
    pub grids: Vec<String>,
    /// The site's root station (whose key the site id derives from).
    pub root: Option<DeviceId>,
    /// This device's membership certificate.
    pub cert: Option<yizhan_protocol::Signed<yizhan_protocol::Certificate>>,
    /// Where the station can be reached, if known.
    pub station_addr: Option<String>,
}

/// How to make a new home.
#[derive(Clone, Debug)]
pub struct InitConfig {
    /// The device's human name.
    pub name: String,
    /// Also create a new site whose root of trust is this device.
    pub station: bool,
    /// Encrypt the whole store with this passphrase (the device key then lives inside
    /// the encrypted store, not in a file of its own).
    pub encrypt: Option<Passphrase>,
}

/// A home directory, with the passphrase that opens it if it is encrypted.
#[derive(Clone, Debug)]
pub struct Home {
    dir: PathBuf,
    passphrase: Option<Passphrase>,
    /// Nodes that finished their work and can be used again (see [`Home::checkout`]).
    pool: std::sync::Arc<std::sync::Mutex<Vec<Node>>>,
    /// The ingest gate of the nodes it hands out (see `Node::ingest_gate`).
    gate: std::sync::Arc<crate::group::IngestGate>,
}

/// Most idle nodes a [`Home`] keeps open for reuse.
const MAX_POOLED: usize = 4;

impl Home {
    /// A home whose store is not encrypted.
    pub fn plain(dir: &Path) -> Home {
        Home {
            dir: dir.to_path_buf(),
            passphrase: None,
            pool: Default::default(),
            gate: Default::default(),
        }
    }

    /// An encrypted home and its passphrase.
    pub fn encrypted(dir: &Path, passphrase: Passphrase) -> Home {
        Home {
            dir: dir.to_path_buf(),
            passphrase: Some(passphrase),
            pool: Default::default(),
            gate: Default::default(),
        }
    }

    /// Whether the home at `dir` is encrypted: its store exists and it has no key file
    /// (an encrypted home keeps its key inside the store).
    pub fn is_encrypted(dir: &Path) -> bool {
        dir.join(STORE_FILE).exists() && !dir.join(KEY_FILE).exists()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens the node that lives here.
    pub fn open(&self) -> Result<Node, OpenError> {
        match &self.passphrase {
            None => Node::open(&self.dir),
            Some(p) => Node::open_encrypted(&self.dir, p),
        }
    }

    /// The node that lives here, on a connection that an earlier [`Home::give_back`]
    /// returned if there is one, else newly opened.
    ///
    /// A long-running process (`serve`) uses this for its syncs: a reused connection keeps
    /// its page cache warm, costs no key derivation on an encrypted home, and keeps the
    /// store open between syncs, so that SQLite does not checkpoint and delete the WAL each
    /// time the last connection closes. The identity is read again, as it may have
    /// changed (a newer certificate) since the node was opened.
    pub fn checkout(&self) -> Result<Node, OpenError> {
        let pooled = self.pool.lock().map(|mut p| p.pop()).unwrap_or(None);
        match pooled {
            Some(mut node) => {
                node.identity = load_identity(&node.store, &node.key)?;
                Ok(node)
            }
            None => {
                let mut node = self.open()?;
                node.store.tune_for_daemon()?;
                node.ingest_gate = Some(self.gate.clone());
                Ok(node)
            }
        }
    }

    /// Checkpoints the WAL in the background of a long-running process: opens a
    /// connection of its own the first time, and keeps it in `slot`.
    pub fn checkpoint(&self, slot: &mut Option<Node>) -> Result<(i64, i64), OpenError> {
        if slot.is_none() {
            *slot = Some(self.open()?);
        }
        let node = slot.as_ref().expect("just opened");
        Ok(node.store.checkpoint()?)
    }

    /// Returns a node taken with [`Home::checkout`] for reuse. A node in the middle of a
    /// transaction, or beyond the [`MAX_POOLED`] idle ones, is closed instead.
    pub fn give_back(&self, node: Node) {
        if !node.store.conn().is_autocommit() {
            return;
        }
        // Only the few kept for reuse get the larger cache; a burst of syncs beyond them
        // runs on connections with the ordinary one, which close when done.
        if let Ok(mut pool) = self.pool.lock()
            && pool.len() < MAX_POOLED
            && node.store.keep_warm().is_ok()
        {
            pool.push(node);
        }
    }
}

/// Randomness for [`Node::init`], supplied by the caller.
pub struct InitSeed {
    /// The device key's secret seed.
    pub key: [u8; 32],
}

impl InitSeed {
    /// Fresh randomness from the operating system.
    pub fn random() -> Self {
        InitSeed {
            key: rand::random(),
        }
    }
}

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
    Store(#[from] store::OpenError),
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
    Store(#[from] store::OpenError),
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

/// Filters for [`Node::list_visits`]; every `Some` must match.
#[derive(Clone, Debug, Default)]
pub struct VisitFilter {
    /// Grid.
    pub grid: Option<String>,
    /// Author.
    pub by: Option<DeviceId>,
    /// Visited at or after.
    pub since: Option<Time>,
    /// Category.
    pub category: Option<crate::model::Category>,
}

/// Filters for [`Node::list_tickets`]; every `Some` must match.
#[derive(Clone, Debug, Default)]
pub struct TicketFilter {
    /// Status.
    pub status: Option<crate::model::Status>,
    /// Category.
    pub category: Option<crate::model::Category>,
    /// Grid.
    pub grid: Option<String>,
    /// Assignee.
    pub assignee: Option<DeviceId>,
    /// Opened at or after.
    pub since: Option<Time>,
}

/// What `verify` found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Changes checked.
    pub changes: u64,
    /// Problems found (bad changes, damaged documents, failed integrity check).
    pub bad: u64,
    /// One line per problem.
    #[serde(skip)]
    pub problems: Vec<String>,
}

/// Changes received from elsewhere for one document.
#[derive(Clone, Debug)]
pub struct DocChanges {
    /// The document's header (its id is derived from it).
    pub header: DocHeader,
    /// Its changes, in any order.
    pub changes: Vec<SignedChange>,
}

/// A change that was not accepted, and why.
#[derive(Clone, Debug)]
pub struct Rejection {
    /// The document it claimed.
    pub doc: DocId,
    /// The hash it claimed.
    pub hash: ChangeHash,
    /// Why.
    pub reason: String,
}

/// What [`Node::ingest`] did.
#[derive(Clone, Debug, Default)]
pub struct IngestReport {
    /// Changes newly stored.
    pub accepted: usize,
    /// Changes already held (a no-op).
    pub duplicate: usize,
    /// Changes refused.
    pub rejected: Vec<Rejection>,
    /// Documents some of whose changes could not be applied for lack of their history.
    pub missing: Vec<DocId>,
    /// Changes held in quarantine (a station receiving a revoked author's changes).
    pub quarantined: usize,
}

/// A node: its key, its store and its identity.
pub struct Node {
    home: PathBuf,
    /// The passphrase of an encrypted home.
    passphrase: Option<Passphrase>,
    key: DeviceKey,
    store: Store,
    identity: Identity,
    /// Shared by the nodes of one [`Home`] in one process: syncs hand it what they
    /// received, and it stores the pages of syncs that wait at the same time in one
    /// transaction (group commit, `group.rs`). They queue there, without a deadline,
    /// rather than in SQLite's busy handler, whose timeout a long queue of syncs would pass.
    pub(crate) ingest_gate: Option<std::sync::Arc<crate::group::IngestGate>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("home", &self.home)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> InitError + '_ {
    move |source| InitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn now_ms() -> i64 {
    Time::now_millis()
}

/// One change made on this node, ready to store.
struct NewChange {
    env: SignedChange,
    seq: u64,
}

impl Identity {
    /// The grid a new record of this node goes to when none is given: its first grid.
    fn default_grid(&self, grid: &Option<String>) -> Option<String> {
        grid.clone().or_else(|| self.grids.first().cloned())
    }

    /// Refuses a grid this node may not write records in: a volunteer writes only in its
    /// own grids (every receiving node refuses the change too, `rules::record_model`); a
    /// station, and a node of no site yet, in any.
    fn may_write_grid(&self, grid: Option<&str>) -> Result<(), WriteError> {
        match grid {
            Some(g) if self.role == Role::Volunteer && !self.grids.iter().any(|m| m == g) => {
                Err(WriteError::NotAllowed(format!(
                    "grid '{g}' is not one of this volunteer's grids ({}): a volunteer may \
                     write records only in its own grids",
                    self.grids.join(", ")
                )))
            }
            _ => Ok(()),
        }
    }

    fn new_header(&self, kind: RecordKind) -> DocHeader {
        DocHeader {
            kind,
            author: self.device_id,
            nonce: rand::random(),
        }
    }
}

impl Node {
    /// Makes a new home at `home`: a device key and an empty store. Refuses if the home
    /// already holds either.
    pub fn init(home: &Path, config: &InitConfig, seed: InitSeed) -> Result<Node, InitError> {
        let name = config.name.trim();
        if name.is_empty() {
            return Err(InitError::EmptyName);
        }
        if config.encrypt.as_ref().is_some_and(Passphrase::is_empty) {
            return Err(InitError::EmptyPassphrase);
        }
        let key_path = home.join(KEY_FILE);
        let store_path = home.join(STORE_FILE);
        if key_path.exists() {
            return Err(InitError::AlreadyInitialised(home.to_path_buf()));
        }
        if store_path.exists() {
            // A store without a key is what an `init` cut short leaves: records are only
            // ever written once the key exists, so an empty one is safe to start over.
            if !store_is_empty(&store_path) {
                return Err(InitError::AlreadyInitialised(home.to_path_buf()));
            }
            for suffix in ["", "-wal", "-shm"] {
                let f = PathBuf::from(format!("{}{suffix}", store_path.display()));
                if f.exists() {
                    fs::remove_file(&f).map_err(io_err(&f))?;
                }
            }
        }
        create_private_dir(home).map_err(io_err(home))?;

        let key = DeviceKey::from_seed(seed.key);
        let mut identity = Identity {
            device_id: key.device_id(),
            name: name.to_string(),
            site_id: None,
            role: if config.station {
                Role::Station
            } else {
                Role::Unenrolled
            },
            grids: Vec::new(),
            root: None,
            cert: None,
            station_addr: None,
        };

        // The store first, then the key: a home is complete once its key file exists, and
        // the key file appears atomically. An encrypted home keeps its key in the store,
        // written in the same transaction as the identity.
        let mut store = match &config.encrypt {
            None => Store::create(&store_path)?,
            Some(p) => Store::create_encrypted(&store_path, p)?,
        };
        {
            let tx = store.write()?;
            set_meta(&tx, "device_id", &identity.device_id.to_string())?;
            if config.encrypt.is_some() {
                set_meta(&tx, "device_seed", &hex::encode(key.seed()))?;
            }
            if config.station {
                crate::site::init_station(&tx, &key, &mut identity)?;
            }
            save_identity(&tx, &identity)?;
            tx.commit()?;
        }
        if config.encrypt.is_none() {
            write_key_file(&key_path, &key).map_err(io_err(&key_path))?;
        }
        Ok(Node {
            home: home.to_path_buf(),
            passphrase: config.encrypt.clone(),
            key,
            store,
            identity,
            ingest_gate: None,
        })
    }

    /// Opens an existing home whose store is encrypted with `passphrase`.
    pub fn open_encrypted(home: &Path, passphrase: &Passphrase) -> Result<Node, OpenError> {
        let store_path = home.join(STORE_FILE);
        if !store_path.exists() {
            return Err(OpenError::NotInitialised(home.to_path_buf()));
        }
        if home.join(KEY_FILE).exists() {
            return Err(OpenError::NotEncrypted(home.to_path_buf()));
        }
        let store = Store::open_encrypted(&store_path, passphrase)?;
        let seed = store
            .meta("device_seed")?
            .ok_or_else(|| OpenError::Mismatch("the store holds no device key".into()))?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(seed.trim(), &mut bytes)
            .map_err(|_| OpenError::Mismatch("malformed device key".into()))?;
        let key = DeviceKey::from_seed(bytes);
        let identity = load_identity(&store, &key)?;
        Ok(Node {
            home: home.to_path_buf(),
            passphrase: Some(passphrase.clone()),
            key,
            store,
            identity,
            ingest_gate: None,
        })
    }

    /// Opens an existing home.
    pub fn open(home: &Path) -> Result<Node, OpenError> {
        let key_path = home.join(KEY_FILE);
        let store_path = home.join(STORE_FILE);
        if !key_path.exists() && !store_path.exists() {
            return Err(OpenError::NotInitialised(home.to_path_buf()));
        }
        if Home::is_encrypted(home) {
            return Err(OpenError::NeedsPassphrase(home.to_path_buf()));
        }
        let key = read_key_file(&key_path)?;
        if !store_path.exists() {
            return Err(OpenError::Mismatch(format!(
                "{} is missing",
                store_path.display()
            )));
        }
        let store = Store::open(&store_path)?;
        let identity = load_identity(&store, &key)?;
        Ok(Node {
            home: home.to_path_buf(),
            passphrase: None,
            key,
            store,
            identity,
            ingest_gate: None,
        })
    }

    /// Who this node is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub(crate) fn set_identity(&mut self, identity: Identity) {
        self.identity = identity;
    }

    pub(crate) fn key(&self) -> &DeviceKey {
        &self.key
    }

    /// A copy of the device key, for the transport's TLS identity.
    pub fn device_key(&self) -> DeviceKey {
        DeviceKey::from_seed(self.key.seed())
    }

    /// Remembers where this node listens, so that tokens can name it.
    pub fn set_listen_addr(&mut self, addr: &str) -> Result<(), WriteError> {
        let tx = self.store.write()?;
        set_meta(&tx, "listen_addr", addr)?;
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The home, with its passphrase if encrypted, to open the node again elsewhere.
    pub fn home_handle(&self) -> Home {
        Home {
            dir: self.home.clone(),
            passphrase: self.passphrase.clone(),
            pool: Default::default(),
            gate: Default::default(),
        }
    }

    /// Logs a new home visit. Returns its id once it is durably stored.
    pub fn add_visit(&mut self, visit: &NewVisit) -> Result<DocId, WriteError> {
        Ok(self.add_visits(std::slice::from_ref(visit))?[0])
    }

    /// Logs many visits in one transaction: all are stored, or none.
    pub fn add_visits(&mut self, visits: &[NewVisit]) -> Result<Vec<DocId>, WriteError> {
        self.add_visits_observed(visits, &mut |_| {})
    }

    /// [`Node::add_visits`], calling `on_row` with the number of rows made so far after
    /// each row (for a progress display; nothing is committed before the last).
    pub fn add_visits_observed(
        &mut self,
        visits: &[NewVisit],
        on_row: &mut dyn FnMut(usize),
    ) -> Result<Vec<DocId>, WriteError> {
        let mut ids = Vec::with_capacity(visits.len());
        let tx = self.store.write()?;
        for (i, v) in visits.iter().enumerate() {
            let in_batch = |e: WriteError| batch_error(visits.len(), i, e);
            v.check().map_err(|e| in_batch(e.into()))?;
            let v = NewVisit {
                grid: self.identity.default_grid(&v.grid),
                ..v.clone()
            };
            self.identity
                .may_write_grid(v.grid.as_deref())
                .map_err(in_batch)?;
            check_ticket_links(&tx, &v.tickets).map_err(in_batch)?;
            let header = self.identity.new_header(RecordKind::Visit);
            let at = v.visited_at.unwrap_or_else(Time::now);
            local_change(&tx, &self.key, &self.identity, header, None, |doc| {
                records::write_new_visit(doc, header.doc_id(), &v, at)
            })
            .map_err(in_batch)?;
            ids.push(header.doc_id());
            on_row(ids.len());
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Edits a visit log. Only its author or a station may.
    pub fn edit_visit(&mut self, id: DocId, edit: &VisitEdit) -> Result<(), WriteError> {
        edit.check()?;
        let tx = self.store.write()?;
        edit_visit_in(&tx, &self.key, &self.identity, id, edit)?;
        tx.commit()?;
        Ok(())
    }

    /// Opens a ticket.
    pub fn open_ticket(&mut self, ticket: &NewTicket) -> Result<DocId, WriteError> {
        Ok(self.open_tickets(std::slice::from_ref(ticket))?[0])
    }

    /// Opens many tickets in one transaction: all are stored, or none.
    pub fn open_tickets(&mut self, tickets: &[NewTicket]) -> Result<Vec<DocId>, WriteError> {
        self.open_tickets_observed(tickets, &mut |_| {})
    }

    /// [`Node::open_tickets`], calling `on_row` with the number of rows made so far after
    /// each row.
    pub fn open_tickets_observed(
        &mut self,
        tickets: &[NewTicket],
        on_row: &mut dyn FnMut(usize),
    ) -> Result<Vec<DocId>, WriteError> {
        let mut ids = Vec::with_capacity(tickets.len());
        let tx = self.store.write()?;
        for (i, t) in tickets.iter().enumerate() {
            let in_batch = |e: WriteError| batch_error(tickets.len(), i, e);
            t.check().map_err(|e| in_batch(e.into()))?;
            let t = NewTicket {
                grid: self.identity.default_grid(&t.grid),
                ..t.clone()
            };
            self.identity
                .may_write_grid(t.grid.as_deref())
                .map_err(in_batch)?;
            let header = self.identity.new_header(RecordKind::Ticket);
            let at = t.opened_at.unwrap_or_else(Time::now);
            local_change(&tx, &self.key, &self.identity, header, None, |doc| {
                records::write_new_ticket(doc, header.doc_id(), &t, at)
            })
            .map_err(in_batch)?;
            ids.push(header.doc_id());
            on_row(ids.len());
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Updates a ticket.
    pub fn update_ticket(&mut self, id: DocId, update: &TicketUpdate) -> Result<(), WriteError> {
        update.check()?;
        let tx = self.store.write()?;
        update_ticket_in(&tx, &self.key, &self.identity, id, update)?;
        tx.commit()?;
        Ok(())
    }

    /// Comments on a ticket.
    pub fn comment_ticket(&mut self, id: DocId, text: &str) -> Result<(), WriteError> {
        if text.trim().is_empty() {
            return Err(FieldError::Empty("comment").into());
        }
        if text.len() > records::MAX_LONG_TEXT {
            return Err(FieldError::TooLong("comment", records::MAX_LONG_TEXT).into());
        }
        let me = self.identity.device_id;
        self.change_ticket(id, |doc| records::write_comment(doc, me, text, Time::now()))
    }

    fn change_ticket(
        &mut self,
        id: DocId,
        build: impl FnOnce(&mut AutoCommit) -> Result<String, automerge::AutomergeError>,
    ) -> Result<(), WriteError> {
        let tx = self.store.write()?;
        let header = load_header(&tx, id)?;
        local_change(&tx, &self.key, &self.identity, header, Some(id), build)?;
        tx.commit()?;
        Ok(())
    }

    /// Finds the one record of `kind` whose id starts with `prefix` (at least 6 hex
    /// characters, or the whole id).
    pub fn resolve(&self, kind: RecordKind, prefix: &str) -> Result<DocId, ResolveError> {
        let what = kind.name();
        let p = prefix.trim().to_ascii_lowercase();
        if p.len() > 32 || !p.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ResolveError::Malformed(prefix.to_string(), what));
        }
        if p.len() < 6 {
            return Err(ResolveError::TooShort(prefix.to_string()));
        }
        // The ids starting with `p`: from `p` followed by zeros, up to the next prefix of
        // the same length (none past `ff…`).
        let free_bits = 4 * (32 - p.len() as u32);
        let low = u128::from_str_radix(&p, 16)
            .map_err(|_| ResolveError::Malformed(prefix.to_string(), what))?
            << free_bits;
        let high = low.checked_add(1u128 << free_bits);
        let mut stmt = self
            .store
            .conn()
            .prepare_cached(
                "SELECT i.doc_id FROM doc_index i JOIN docs d ON d.docno = i.docno
                 WHERE i.doc_id >= ?2 AND (?3 IS NULL OR i.doc_id < ?3) AND d.kind = ?1
                 LIMIT 101",
            )
            .map_err(|e| ResolveError::Sqlite(e.to_string()))?;
        let high = high.map(|h| h.to_be_bytes().to_vec());
        let found: Vec<Vec<u8>> = stmt
            .query_map(
                params![kind.code(), low.to_be_bytes().to_vec(), high],
                |r| r.get(0),
            )
            .and_then(|rows| rows.collect())
            .map_err(|e| ResolveError::Sqlite(e.to_string()))?;
        match found.as_slice() {
            [] => Err(ResolveError::NotFound(prefix.to_string(), what)),
            [one] => DocId::from_slice(one)
                .ok_or_else(|| ResolveError::Sqlite("malformed record id in the index".into())),
            many => Err(ResolveError::Ambiguous(
                prefix.to_string(),
                many.len(),
                what,
            )),
        }
    }

    /// Finds the one device whose id starts with `prefix`: a whole 64-hex device id, or a
    /// prefix (at least 6 characters) of a device this node knows of.
    pub fn resolve_device(&self, prefix: &str) -> Result<DeviceId, ResolveError> {
        let p = prefix.trim().to_ascii_lowercase();
        if p.len() > 64 || !p.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ResolveError::Malformed(prefix.to_string(), "device"));
        }
        if p.len() == 64 {
            return p
                .parse()
                .map_err(|_| ResolveError::Malformed(prefix.to_string(), "device"));
        }
        if p.len() < 6 {
            return Err(ResolveError::TooShort(prefix.to_string()));
        }
        let mut known = self
            .known_devices()
            .map_err(|e| ResolveError::Sqlite(e.to_string()))?;
        known.retain(|d| d.to_string().starts_with(&p));
        match known.as_slice() {
            [] => Err(ResolveError::NotFound(prefix.to_string(), "device")),
            [one] => Ok(*one),
            many => Err(ResolveError::Ambiguous(
                prefix.to_string(),
                many.len(),
                "device",
            )),
        }
    }

    /// Every device this node has seen: itself, the members of its roster, and the authors
    /// and assignees of records.
    pub fn known_devices(&self) -> rusqlite::Result<Vec<DeviceId>> {
        let mut stmt = self.store.conn().prepare(
            "SELECT author FROM records UNION SELECT assignee FROM records
             WHERE assignee IS NOT NULL UNION SELECT lower(hex(device)) FROM members",
        )?;
        let mut out: Vec<DeviceId> = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .filter_map(|r| r.ok().and_then(|s| s.parse().ok()))
            .collect();
        out.push(self.identity.device_id);
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Visit logs matching `filter`, oldest first, from the index (no document is loaded).
    pub fn list_visits(&self, filter: &VisitFilter) -> Result<Vec<records::Visit>, ReadError> {
        let mut sql = String::from("SELECT summary FROM records WHERE kind = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        push_filter(&mut sql, &mut args, "grid = ?", filter.grid.clone());
        push_filter(
            &mut sql,
            &mut args,
            "author = ?",
            filter.by.map(|d| d.to_string()),
        );
        push_filter(
            &mut sql,
            &mut args,
            "at_ms >= ?",
            filter.since.map(|t| t.millis()),
        );
        push_filter(
            &mut sql,
            &mut args,
            "category = ?",
            filter.category.map(|c| c.slug().to_string()),
        );
        self.query_summaries(sql, args)
    }

    /// Tickets matching `filter`, oldest first, from the index (no document is loaded).
    pub fn list_tickets(&self, filter: &TicketFilter) -> Result<Vec<records::Ticket>, ReadError> {
        let mut sql = String::from("SELECT summary FROM records WHERE kind = 2");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        push_filter(
            &mut sql,
            &mut args,
            "status = ?",
            filter.status.map(|s| s.as_str().to_string()),
        );
        push_filter(
            &mut sql,
            &mut args,
            "category = ?",
            filter.category.map(|c| c.slug().to_string()),
        );
        push_filter(&mut sql, &mut args, "grid = ?", filter.grid.clone());
        push_filter(
            &mut sql,
            &mut args,
            "assignee = ?",
            filter.assignee.map(|d| d.to_string()),
        );
        push_filter(
            &mut sql,
            &mut args,
            "at_ms >= ?",
            filter.since.map(|t| t.millis()),
        );
        self.query_summaries(sql, args)
    }

    fn query_summaries<T: serde::de::DeserializeOwned>(
        &self,
        mut sql: String,
        args: Vec<rusqlite::types::Value>,
    ) -> Result<Vec<T>, ReadError> {
        sql.push_str(" ORDER BY at_ms, doc_id");
        let mut stmt = self.store.conn().prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            let json = row?;
            out.push(serde_json::from_str(&json).map_err(|e| ReadError::Index(e.to_string()))?);
        }
        Ok(out)
    }

    fn load(&self, id: DocId) -> Result<(DocHeader, AutoCommit), ReadError> {
        let tx = self.store.conn();
        let header = load_header_conn(tx, id)?;
        let doc = load_doc(tx, id).map_err(|e| match e {
            WriteError::Damaged(id, why) => ReadError::Damaged(id, why),
            WriteError::Sqlite(e) => ReadError::Sqlite(e),
            other => ReadError::Damaged(id, other.to_string()),
        })?;
        Ok((header, doc))
    }

    /// A visit log with its history and conflicts.
    pub fn show_visit(&self, id: DocId) -> Result<records::VisitDetail, ReadError> {
        let (header, doc) = self.load(id)?;
        Ok(records::VisitDetail {
            visit: records::read_visit(&doc, &header),
            conflicts: records::read_conflicts(&doc, RecordKind::Visit),
            history: crate::history::read(self.store.conn(), &self.identity, id)?,
        })
    }

    /// A ticket with its comments, linked visits, history and conflicts.
    pub fn show_ticket(&self, id: DocId) -> Result<records::TicketDetail, ReadError> {
        let (header, doc) = self.load(id)?;
        let mut stmt = self
            .store
            .conn()
            .prepare_cached("SELECT visit FROM links WHERE ticket = ?1 ORDER BY visit")?;
        let visits = stmt
            .query_map([id.to_string()], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(records::TicketDetail {
            ticket: records::read_ticket(&doc, &header),
            comments: records::read_comments(&doc),
            visits,
            conflicts: records::read_conflicts(&doc, RecordKind::Ticket),
            history: crate::history::read(self.store.conn(), &self.identity, id)?,
        })
    }

    /// How many records of each kind the store holds: (tickets, visits).
    pub fn record_counts(&self) -> rusqlite::Result<(u64, u64)> {
        self.store.conn().query_row(
            "SELECT COALESCE(SUM(kind = 2), 0), COALESCE(SUM(kind = 1), 0) FROM records",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// The header and every stored signed change of one document, in the order stored (by
    /// log position: a `VACUUM` may renumber the rowids of `changes`).
    pub fn doc_changes(&self, id: DocId) -> Result<DocChanges, ReadError> {
        let header = load_header_conn(self.store.conn(), id)?;
        let mut stmt = self.store.conn().prepare_cached(
            "SELECT hash, signer, signature, bytes FROM changes
             WHERE docno = (SELECT docno FROM doc_index WHERE doc_id = ?1) ORDER BY lseq",
        )?;
        let rows = stmt.query_map([id.as_bytes().as_slice()], row_to_envelope(id))?;
        let mut changes = Vec::new();
        for row in rows {
            changes.push(row?.map_err(ReadError::Index)?);
        }
        Ok(DocChanges { header, changes })
    }

    /// Stores changes that came from elsewhere (a test harness, an import of relayed
    /// changes), with the checks of [`ingest_in`]. Accepted changes commit in one
    /// transaction; refused ones are reported and never stop the others.
    pub fn ingest(&mut self, batch: Vec<DocChanges>) -> Result<IngestReport, WriteError> {
        let tx = self.store.write()?;
        let ctx = IngestContext::load(&tx, &self.identity, None)?;
        let report = ingest_in(&tx, &ctx, batch, Decoded::default())?;
        tx.commit()?;
        Ok(report)
    }

    /// Re-checks every stored change (size, decoding, hash, actor binding, strict
    /// signature), every document snapshot against its changes, and SQLite's integrity.
    pub fn verify(&self) -> Result<VerifyReport, ReadError> {
        // One read transaction: a concurrent writer cannot make the checks disagree.
        let tx = self.store.conn().unchecked_transaction()?;
        let conn: &rusqlite::Connection = &tx;
        let mut report = VerifyReport::default();
        let integrity: Vec<String> = conn
            .prepare("PRAGMA integrity_check")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if integrity != ["ok"] {
            report.bad += 1;
            report
                .problems
                .push(format!("SQLite integrity check: {}", integrity.join("; ")));
        }
        let site = self.identity.site_id;
        let roster = crate::site::RosterView::load(conn, site)?;
        let mut keys = yizhan_protocol::identity::KeyCache::default();
        // A revoked device's change that reached this volunteer from anyone but a station
        // (directly from the device, before the revocation did) was never judged by a
        // station: it is reported until then (`design.md`, "Quarantine").
        let unvouched = |signer: DeviceId, origin: Option<Vec<u8>>| {
            let origin = origin.and_then(|o| DeviceId::from_slice(&o).ok())?;
            let vouched = roster.is_station(origin) && !roster.is_revoked(origin);
            (self.identity.role != Role::Station && roster.is_revoked(signer) && !vouched).then(
                || format!("its author was revoked, and it came from {origin}, not from a station"),
            )
        };
        let mut stmt = conn.prepare(
            "SELECT doc_id, hash, signer, signature, bytes, actor, seq, origin FROM changes
             ORDER BY rowid",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            report.changes += 1;
            let doc: Vec<u8> = row.get(0)?;
            let hash: Vec<u8> = row.get(1)?;
            let problem = match DocId::from_slice(&doc) {
                None => Some("malformed document id".to_string()),
                Some(doc_id) => match row_to_envelope(doc_id)(row)? {
                    Err(e) => Some(e),
                    Ok(env) if site.is_some() && roster.role(env.signer).is_none() => {
                        Some("its author is not a member of this site".to_string())
                    }
                    Ok(env) if let Some(why) = unvouched(env.signer, row.get(7)?) => Some(why),
                    // One at a time: a change alone is checked with `verify_strict`, never
                    // in a batch (`protocol.md` §3.5).
                    Ok(env) => match SignedChange::verify_many(vec![(env, None)], site, &mut keys)
                        .remove(0)
                    {
                        Err(e) => Some(e.to_string()),
                        Ok(v) => {
                            let actor: Vec<u8> = row.get(5)?;
                            let seq: i64 = row.get(6)?;
                            (actor != v.change.actor_id().to_bytes()
                                || seq != v.change.seq() as i64)
                                .then(|| "stored actor or seq does not match the change".into())
                        }
                    },
                },
            };
            if let Some(p) = problem {
                report.bad += 1;
                report
                    .problems
                    .push(format!("change {}: {p}", hex::encode(&hash)));
            }
        }
        // Every document: it is found by its id (once), its id derives from its header, its
        // snapshot holds exactly the changes stored for it, and its index row and links are
        // what the document says.
        let mut stmt = conn.prepare("SELECT doc_id, docno FROM docs")?;
        let docs = stmt
            .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut found = conn.prepare("SELECT docno FROM doc_index WHERE doc_id = ?1")?;
        let mut hashes = conn.prepare("SELECT hash FROM changes WHERE docno = ?1")?;
        let indexed: i64 = conn.query_row("SELECT COUNT(*) FROM doc_index", [], |r| r.get(0))?;
        if indexed != docs.len() as i64 {
            report.bad += 1;
            report.problems.push(format!(
                "the index of record ids holds {indexed} ids for {} records",
                docs.len()
            ));
        }
        for (raw, docno) in docs {
            let Some(id) = DocId::from_slice(&raw) else {
                report.bad += 1;
                report.problems.push("malformed document id".into());
                continue;
            };
            let numbers: Vec<i64> = found
                .query_map([&raw], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            if numbers != [docno] {
                report.bad += 1;
                report.problems.push(format!(
                    "record {id}: the index of record ids does not find it"
                ));
                continue;
            }
            let stored: std::collections::BTreeSet<Vec<u8>> = hashes
                .query_map([docno], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let header = match load_header_conn(conn, id) {
                Ok(h) => h,
                Err(e) => {
                    report.bad += 1;
                    report.problems.push(e.to_string());
                    continue;
                }
            };
            let mut doc = match load_doc(conn, id) {
                Ok(doc) => doc,
                Err(e) => {
                    report.bad += 1;
                    report.problems.push(e.to_string());
                    continue;
                }
            };
            let held: std::collections::BTreeSet<Vec<u8>> = doc
                .get_changes(&[])
                .iter()
                .map(|c| c.hash().0.to_vec())
                .collect();
            if held != stored {
                report.bad += 1;
                report.problems.push(format!(
                    "record {id}: its snapshot does not match its stored changes"
                ));
            }
            let mut expected = index_row(&header, &doc);
            expected.links.sort();
            if stored_index_row(conn, id)?.as_ref() != Some(&expected) {
                report.bad += 1;
                report.problems.push(format!(
                    "record {id}: its index row does not match its document"
                ));
            }
        }
        Ok(report)
    }
}

pub(crate) fn edit_visit_in(
    tx: &Transaction<'_>,
    key: &DeviceKey,
    identity: &Identity,
    id: DocId,
    edit: &VisitEdit,
) -> Result<(), WriteError> {
    let header = load_header(tx, id)?;
    if header.author != identity.device_id && identity.role != Role::Station {
        return Err(WriteError::NotAllowed(
            "only the visit's author or a station may change a visit log".into(),
        ));
    }
    identity.may_write_grid(edit.grid.as_deref())?;
    check_ticket_links(tx, &edit.link_tickets)?;
    local_change(tx, key, identity, header, Some(id), |doc| {
        records::write_visit_edit(doc, edit)
    })
}

/// A visit this node writes links only to tickets it holds (`visit add --ticket` resolves
/// them; an imported row must name one too).
fn check_ticket_links(tx: &Transaction<'_>, tickets: &[DocId]) -> Result<(), WriteError> {
    for &t in tickets {
        match load_header(tx, t) {
            Ok(h) if h.kind == RecordKind::Ticket => {}
            Ok(_) | Err(WriteError::NotAllowed(_)) => {
                return Err(WriteError::NotAllowed(format!(
                    "links to ticket {t}, which this node does not hold"
                )));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub(crate) fn update_ticket_in(
    tx: &Transaction<'_>,
    key: &DeviceKey,
    identity: &Identity,
    id: DocId,
    update: &TicketUpdate,
) -> Result<(), WriteError> {
    let header = load_header(tx, id)?;
    identity.may_write_grid(update.grid.as_deref())?;
    local_change(tx, key, identity, header, Some(id), |doc| {
        records::write_ticket_update(doc, update)
    })
}

fn batch_error(len: usize, i: usize, e: WriteError) -> WriteError {
    if len == 1 {
        e
    } else {
        WriteError::InBatch {
            index: i + 1,
            source: Box::new(e),
        }
    }
}

fn push_filter<T: Into<rusqlite::types::Value>>(
    sql: &mut String,
    args: &mut Vec<rusqlite::types::Value>,
    clause: &str,
    value: Option<T>,
) {
    if let Some(v) = value {
        sql.push_str(" AND ");
        sql.push_str(clause);
        args.push(v.into());
    }
}

/// What ingest needs to know to judge changes: the site, who sent them, and the roster.
pub(crate) struct IngestContext {
    site: Option<SiteId>,
    /// The peer the changes came from (`None`: handed in locally).
    origin: Option<DeviceId>,
    /// Whether that peer is a station (a station only relays changes it accepted).
    origin_is_station: bool,
    /// This node is a station: a revoked author's changes go to quarantine.
    quarantine_revoked: bool,
    /// The station accepts quarantined changes: a revoked author is no bar.
    pub(crate) accept_revoked: bool,
    roster: crate::site::RosterView,
}

impl IngestContext {
    /// Reads the roster inside the write transaction `tx`, so that a revocation committed
    /// by another process just before applies to this batch.
    pub(crate) fn load(
        tx: &Transaction<'_>,
        identity: &Identity,
        origin: Option<DeviceId>,
    ) -> Result<IngestContext, WriteError> {
        let roster = crate::site::RosterView::load(tx, identity.site_id)?;
        let origin_is_station =
            origin.is_some_and(|o| roster.is_station(o) && !roster.is_revoked(o));
        Ok(IngestContext {
            site: identity.site_id,
            origin,
            origin_is_station,
            quarantine_revoked: identity.role == Role::Station,
            accept_revoked: false,
            roster,
        })
    }
}

/// Who may write what, once the envelope has verified:
///
/// - in a site, the signer must be a member (the root station, or a device with a
///   certificate from it) and not revoked, unless the change comes from a station, which
///   only holds a revoked device's changes if it accepted them;
/// - a document is started only by its header's author;
/// - a visit log is changed only by its author or by a station.
///
/// What a change it merges writes is judged next, by [`model_grids`] and
/// `rules::record_model`.
fn may_write(
    ctx: &IngestContext,
    header: &DocHeader,
    v: &yizhan_protocol::VerifiedChange,
) -> Result<Verdict, String> {
    let signer = v.envelope.signer;
    let mut signer_is_station = false;
    if ctx.site.is_some() {
        match ctx.roster.role(signer) {
            None => return Err("its author is not a member of this site".into()),
            Some(role) => signer_is_station = role == yizhan_protocol::MemberRole::Station,
        }
    }
    if v.change.deps().is_empty() && signer != header.author {
        return Err("a record may only be started by its author".into());
    }
    if header.kind == RecordKind::Visit && signer != header.author && !signer_is_station {
        return Err("only the visit's author or a station may change a visit log".into());
    }
    if ctx.site.is_some()
        && ctx.roster.is_revoked(signer)
        && !ctx.origin_is_station
        && !ctx.accept_revoked
    {
        if ctx.quarantine_revoked {
            return Ok(Verdict::Quarantine);
        }
        return Err("its author was revoked".into());
    }
    Ok(Verdict::Merge)
}

/// The grids `signer` may write records in, for `rules::record_model`: a volunteer's
/// (none if the roster names none), or `None` (any grid) for a station and outside a site.
fn model_grids(ctx: &IngestContext, signer: DeviceId) -> Option<&[String]> {
    if ctx.site.is_none() || ctx.roster.is_station(signer) {
        return None;
    }
    Some(ctx.roster.grids(signer).unwrap_or_default())
}

/// Why a change [`may_write`] merges must be refused for what it writes, if so
/// (`rules::record_model`).
fn check_model(
    ctx: &IngestContext,
    header: &DocHeader,
    v: &yizhan_protocol::VerifiedChange,
) -> Result<(), String> {
    let grids = model_grids(ctx, v.envelope.signer);
    crate::rules::record_model(header.kind, v.envelope.doc, &v.change, grids)
}

/// What to do with a change that passed the checks.
enum Verdict {
    /// Apply it.
    Merge,
    /// Hold it back for the station's decision (its author was revoked).
    Quarantine,
}

/// Changes already decoded by the caller of [`ingest_in`] (a received page is decoded to
/// learn each change's hash), by hash: verifying uses them instead of decoding again.
pub(crate) type Decoded = std::collections::HashMap<ChangeHash, automerge::Change>;

/// An envelope on its way to verification, with its decoding if the caller had one.
type Unchecked = (SignedChange, Option<automerge::Change>);

/// Checks and stores changes inside `tx`: the document id is derived from the header, the
/// envelope verifies strictly for this node's site, [`may_write`] allows it, and every
/// dependency is present. Refused changes are reported and kept in `rejected` for
/// inspection; documents whose history is missing are listed in `missing` (to fetch).
pub(crate) fn ingest_in(
    tx: &Transaction<'_>,
    ctx: &IngestContext,
    batch: Vec<DocChanges>,
    mut decoded: Decoded,
) -> Result<IngestReport, WriteError> {
    let started = std::time::Instant::now();
    let mut report = IngestReport::default();
    let mut seen = std::collections::HashSet::new();
    // Pass 1, cheap: drop what is not for its document and what this node already holds.
    let mut groups: Vec<(DocHeader, Vec<Unchecked>)> = Vec::with_capacity(batch.len());
    // Documents this node does not hold yet: pass 2 may build them off this thread.
    let mut fresh_docs = std::collections::HashSet::new();
    // Their signers' membership expiry (rules.rs), read here for pass 2.
    let mut expiries = std::collections::HashMap::new();
    let held = held_docs(tx, batch.iter().map(|d| d.header.doc_id()))?;
    for DocChanges { header, changes } in batch {
        let doc_id = header.doc_id();
        let new_doc = !held.contains(&doc_id);
        if new_doc {
            fresh_docs.insert(doc_id);
        }
        let mut fresh = Vec::with_capacity(changes.len());
        for env in changes {
            if env.doc != doc_id {
                reject(
                    tx,
                    ctx,
                    &mut report,
                    &env,
                    "change is not for the document its header names",
                )?;
                continue;
            }
            // A document this node does not hold has no stored change to look up.
            if !seen.insert((doc_id, env.hash)) || (!new_doc && has_change(tx, doc_id, &env.hash)?)
            {
                report.duplicate += 1;
                continue;
            }
            if new_doc && !expiries.contains_key(&env.signer) {
                expiries.insert(env.signer, crate::rules::member_expiry(tx, env.signer)?);
            }
            let change = decoded.remove(&env.hash);
            fresh.push((env, change));
        }
        groups.push((header, fresh));
    }
    tracing::trace!(
        groups = groups.len(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "ingest pass 1"
    );
    // Pass 2, the costly part: strict signature checks, on a second core while this one
    // applies and stores what is already checked (pass 3).
    let total: usize = groups.iter().map(|(_, c)| c.len()).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if total < PARALLEL_VERIFY_MIN || cores < 2 {
        let mut keys = yizhan_protocol::identity::KeyCache::default();
        for (header, changes) in groups {
            let results = SignedChange::verify_many(changes, ctx.site, &mut keys);
            apply_group(tx, ctx, &mut report, header, results)?;
        }
    } else {
        // Which groups pass 2 may build whole: the first group of a document this node
        // does not hold (a later group builds on what pass 3 stored from the first).
        let mut firsts = fresh_docs;
        let work: Vec<Group> = groups
            .into_iter()
            .map(|(header, changes)| (firsts.remove(&header.doc_id()), header, changes))
            .collect();
        let workers = cores.min(MAX_VERIFY_WORKERS);
        let stored = store_checked(tx, ctx, &mut report, &expiries, work, workers);
        release_freed_memory();
        stored?;
    }
    Ok(report)
}

/// Hands memory freed by the verifying threads back to the system. Each thread allocates
/// from a malloc arena of its own, and glibc keeps what is freed in an arena for reuse: with
/// threads started for every large ingest, a station's resident memory grew by what its
/// arenas once held (370 MiB instead of 230 at 1,000,000 documents, 20 laptops at once).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free memory to the system; it takes no pointer
    // and is thread-safe.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A group of changes of one document for pass 2, and whether pass 2 may build the
/// document whole (its first group, for a document this node does not hold).
type Group = (bool, DocHeader, Vec<Unchecked>);

/// Most threads pass 2 of [`ingest_in`] runs on.
const MAX_VERIFY_WORKERS: usize = 2;

/// Passes 2 and 3 of [`ingest_in`] on many changes: `workers` threads check signatures
/// (and build new documents) [`WORK_BATCH`] groups at a time, each taking the next batch
/// as it is free, while this thread stores the results in the original order of the
/// groups. Each batch has a channel of its own for its result: a worker that panics drops
/// its batch's sender, and the storing side stops there with an error (nothing of that
/// batch or after it is stored, and the caller's transaction is not committed).
fn store_checked(
    tx: &Transaction<'_>,
    ctx: &IngestContext,
    report: &mut IngestReport,
    expiries: &std::collections::HashMap<DeviceId, Option<i64>>,
    work: Vec<Group>,
    workers: usize,
) -> Result<(), WriteError> {
    use std::sync::mpsc::sync_channel;
    let site = ctx.site;
    let mut jobs = Vec::new();
    let mut results = Vec::new();
    let mut work = work.into_iter().peekable();
    while work.peek().is_some() {
        let (done, result) = sync_channel::<Vec<Work>>(1);
        jobs.push((work.by_ref().take(WORK_BATCH).collect::<Vec<Group>>(), done));
        results.push(result);
    }
    let jobs = std::sync::Mutex::new(jobs.into_iter());
    // The queue stays usable if a worker panicked while holding it.
    let next = || jobs.lock().unwrap_or_else(|p| p.into_inner()).next();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let next = &next;
            std::thread::Builder::new()
                .name("yizhan-verify".into())
                .spawn_scoped(scope, move || {
                    let mut keys = yizhan_protocol::identity::KeyCache::default();
                    while let Some((batch, done)) = next() {
                        // The signatures of the whole batch are checked together.
                        let mut groups = Vec::with_capacity(batch.len());
                        let mut unchecked = Vec::new();
                        for (first, header, changes) in batch {
                            groups.push((first, header, changes.len()));
                            unchecked.extend(changes);
                        }
                        let mut results =
                            SignedChange::verify_many(unchecked, site, &mut keys).into_iter();
                        let checked = groups
                            .into_iter()
                            .map(|(first, header, len)| {
                                let results: Vec<Checked> = results.by_ref().take(len).collect();
                                // A document new to this node whose changes all verify and
                                // may be merged is built here too (apply, snapshot, index
                                // row), so that the SQL thread only stores it.
                                if first {
                                    build_fresh(ctx, expiries, header, results)
                                } else {
                                    Work::Checked(header, results)
                                }
                            })
                            .collect();
                        // The storing side may have stopped on an error.
                        let _ = done.send(checked);
                    }
                })
                .map_err(WriteError::Thread)?;
        }
        let stored = results.into_iter().try_for_each(|result| {
            let batch = result.recv().map_err(|_| {
                WriteError::Thread(std::io::Error::other("a verifying thread stopped"))
            })?;
            batch
                .into_iter()
                .try_for_each(|work| store_work(tx, ctx, report, work))
        });
        if stored.is_err() {
            // The batches no worker has taken are not checked.
            jobs.lock()
                .unwrap_or_else(|p| p.into_inner())
                .by_ref()
                .for_each(drop);
        }
        stored
    })
}

/// Pass 3 of [`ingest_in`] for one group that pass 2 checked.
fn store_work(
    tx: &Transaction<'_>,
    ctx: &IngestContext,
    report: &mut IngestReport,
    work: Work,
) -> Result<(), WriteError> {
    match work {
        Work::Checked(header, results) => apply_group(tx, ctx, report, header, results),
        Work::Built(built) => {
            let Built {
                header,
                stored,
                prepared,
            } = *built;
            report.accepted += stored.len();
            store_new_doc(tx, &header, &prepared, &stored, ctx.origin)
        }
        Work::Retry(header, envelopes) => {
            let mut keys = yizhan_protocol::identity::KeyCache::default();
            let unchecked = envelopes.into_iter().map(|c| (c, None)).collect();
            let results = SignedChange::verify_many(unchecked, ctx.site, &mut keys);
            apply_group(tx, ctx, report, header, results)
        }
    }
}

/// What pass 2 of [`ingest_in`] hands the SQL thread for one group of changes.
enum Work {
    /// Checked envelopes, for [`apply_group`].
    Checked(DocHeader, Vec<Checked>),
    /// A new document, built and ready to store.
    Built(Box<Built>),
    /// A new document that could not be built off the SQL thread (its history is
    /// incomplete, or Automerge refused it): [`apply_group`] checks it again and decides.
    Retry(DocHeader, Vec<SignedChange>),
}

/// A new document built by pass 2: its changes in causal order and what to store.
struct Built {
    header: DocHeader,
    stored: Vec<NewChange>,
    prepared: Prepared,
}

/// Builds a document this node does not hold from `results`, if every change verified,
/// [`may_write`] merges each, and all of them apply; otherwise hands them back.
///
/// The checks are those of [`apply_group`] for a document the store does not hold:
/// [`may_write`], the author's membership expiry, no two changes with one
/// `(actor, seq)`, the record's operation budget, the record model, the nesting rule and
/// loading back (`rules.rs`); a
/// group that fails any of them goes to [`apply_group`], which refuses (and records) what
/// it must.
fn build_fresh(
    ctx: &IngestContext,
    expiries: &std::collections::HashMap<DeviceId, Option<i64>>,
    header: DocHeader,
    results: Vec<Checked>,
) -> Work {
    let mut claimed = std::collections::HashSet::new();
    let mergeable =
        results.iter().all(|r| {
            r.as_ref().is_ok_and(|v| {
                let signer = v.envelope.signer;
                let expiry = expiries.get(&signer).copied().flatten();
                crate::rules::made_after_expiry(expiry, v.change.timestamp()).is_none()
                    && claimed.insert((signer, v.change.seq()))
                    && matches!(may_write(ctx, &header, v), Ok(Verdict::Merge))
            })
        }) && crate::rules::op_budget(0, results.iter().flatten().map(|v| v.change.len()))
            .iter()
            .all(Result::is_ok);
    if !mergeable || results.is_empty() {
        return Work::Checked(header, results);
    }
    let mut kept = Vec::with_capacity(results.len());
    let mut changes = Vec::with_capacity(results.len());
    for v in results.into_iter().flatten() {
        kept.push(NewChange {
            seq: v.change.seq(),
            env: v.envelope,
        });
        changes.push(v.change);
    }
    let built = catch_unwind(AssertUnwindSafe(|| {
        // What each change writes (`rules::record_model`), its operations decoded once: a
        // change that fails goes back to `apply_group`, which refuses it alone.
        let mut decoded = Vec::with_capacity(changes.len());
        for (c, change) in kept.iter().zip(&changes) {
            let expanded = crate::rules::expand(change).ok()?;
            let grids = model_grids(ctx, c.env.signer);
            crate::rules::record_model_of(header.kind, c.env.doc, change, &expanded, grids).ok()?;
            decoded.push(expanded);
        }
        // Most new documents are one simple change: read it without building the document
        // (the same record as Automerge would make of it, see `Root::of_first_change`).
        if let ([only], [change], [expanded]) =
            (kept.as_slice(), changes.as_slice(), decoded.as_slice())
            && let Some(root) = records::Root::of_expanded(change, expanded)
        {
            return Some(Prepared {
                snapshot: Vec::new(),
                heads: only.env.hash.0.to_vec(),
                row: index_row_of(&header, &root),
            });
        }
        drop(decoded);
        let mut doc = AutoCommit::new();
        doc.apply_changes(changes).ok()?;
        if !doc.get_missing_deps(&[]).is_empty() {
            return None; // some changes wait for history this group does not bring
        }
        if crate::rules::nesting(&doc).is_err() {
            return None; // apply_group refuses the lot
        }
        if kept
            .iter()
            .any(|c| doc.get_change_meta_by_hash(&c.env.hash.into()).is_none())
        {
            return None;
        }
        sort_causally(&mut doc, &mut kept);
        // What is stored must load back as this document (`rules::loads_back`); a
        // document of one change is stored as that change, but it must save and load back
        // too, for the snapshot the next change brings.
        let prepared = prepare(&header, &mut doc);
        crate::rules::loads_back(&mut doc, &prepared.snapshot).ok()?;
        Some(match kept.as_slice() {
            // A document of one change is that change: its snapshot is not stored twice.
            [_] => Prepared {
                snapshot: Vec::new(),
                ..prepared
            },
            _ => prepared,
        })
    }));
    match built {
        Ok(Some(prepared)) => Work::Built(Box::new(Built {
            header,
            stored: kept,
            prepared,
        })),
        _ => Work::Retry(header, kept.into_iter().map(|c| c.env).collect()),
    }
}

/// Puts new changes of `doc` in causal order, the order this node's log then serves them
/// onward in.
fn sort_causally(doc: &mut AutoCommit, changes: &mut [NewChange]) {
    if changes.len() < 2 {
        return;
    }
    let order: std::collections::HashMap<automerge::ChangeHash, usize> = doc
        .get_changes_meta(&[])
        .iter()
        .enumerate()
        .map(|(i, c)| (c.hash, i))
        .collect();
    changes.sort_by_key(|c| order.get(&c.env.hash.into()).copied().unwrap_or(usize::MAX));
}

/// Which of `ids` this node holds. Looked up in id order: consecutive look-ups then walk
/// the index's pages in order, each page read once, instead of jumping between them.
fn held_docs(
    tx: &Transaction<'_>,
    ids: impl Iterator<Item = DocId>,
) -> rusqlite::Result<std::collections::HashSet<DocId>> {
    let mut ids: Vec<DocId> = ids.collect();
    ids.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    ids.dedup();
    let mut held = std::collections::HashSet::new();
    for id in ids {
        if has_doc(tx, id)? {
            held.insert(id);
        }
    }
    Ok(held)
}

fn has_doc(tx: &Transaction<'_>, id: DocId) -> rusqlite::Result<bool> {
    Ok(docno_of(tx, id)?.is_some())
}

/// The local number of the document `id`, if this node holds it.
fn docno_of(conn: &rusqlite::Connection, id: DocId) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT docno FROM doc_index WHERE doc_id = ?1")?
        .query_row([id.as_bytes().as_slice()], |r| r.get(0))
        .optional()
}

/// Pass 3 of [`ingest_in`] for one document: who may write, then apply and store.
fn apply_group(
    tx: &Transaction<'_>,
    ctx: &IngestContext,
    report: &mut IngestReport,
    header: DocHeader,
    results: Vec<Checked>,
) -> Result<(), WriteError> {
    let doc_id = header.doc_id();
    let mut verified = Vec::new();
    let mut gate = crate::rules::Gate::new(doc_id); // expiry, equivocation (rules.rs)
    for result in results {
        match result {
            Ok(v) => match gate
                .check(tx, ctx.origin, &v)?
                .map_or_else(|| may_write(ctx, &header, &v), Err)
                .and_then(|verdict| match verdict {
                    Verdict::Merge => check_model(ctx, &header, &v).map(|()| verdict),
                    Verdict::Quarantine => Ok(verdict), // judged whole when accepted
                }) {
                Ok(Verdict::Merge) => verified.push(v),
                Ok(Verdict::Quarantine) => hold(
                    tx,
                    ctx,
                    report,
                    &header,
                    &v.envelope,
                    "its author was revoked before the station received it",
                )?,
                Err(why) => reject(tx, ctx, report, &v.envelope, &why)?,
            },
            Err(failed) => reject(tx, ctx, report, &failed.envelope, &failed.error.to_string())?,
        }
    }
    if verified.is_empty() {
        return Ok(());
    }
    let mut doc = match load_doc(tx, doc_id) {
        Ok(doc) => doc,
        Err(WriteError::NotAllowed(_)) => AutoCommit::new(), // a new document
        Err(e) => return Err(e),
    };
    // The record's budget of operations, before Automerge materialises any (rules.rs).
    let held = automerge::ReadDoc::stats(&doc).num_ops;
    let budget = crate::rules::op_budget(held, verified.iter().map(|v| v.change.len()));
    // Move the decoded changes into Automerge; keep what is needed of them afterwards.
    let mut kept = Vec::with_capacity(verified.len());
    let mut changes = Vec::with_capacity(verified.len());
    for (v, admitted) in verified.into_iter().zip(budget) {
        if let Err(why) = admitted {
            reject(tx, ctx, report, &v.envelope, &why)?;
            continue;
        }
        kept.push((v.envelope, v.change.seq(), v.change.deps().to_vec()));
        changes.push(v.change);
    }
    if kept.is_empty() {
        return Ok(());
    }
    let applied = catch_unwind(AssertUnwindSafe(|| doc.apply_changes(changes)));
    if !matches!(applied, Ok(Ok(()))) {
        for (env, _, _) in kept {
            reject(
                tx,
                ctx,
                report,
                &env,
                "Automerge could not apply the change",
            )?;
        }
        return Ok(());
    }
    // Objects nested too deep: nothing of this document in the batch is stored (rules.rs).
    if let Err(why) = crate::rules::nesting(&doc) {
        for (env, _, _) in kept {
            reject(tx, ctx, report, &env, &why)?;
        }
        return Ok(());
    }
    let mut stored = Vec::new();
    let mut unapplied = Vec::new();
    for (env, seq, deps) in kept {
        // The change graph's metadata, not `get_change_by_hash`, which rebuilds the change.
        if doc.get_change_meta_by_hash(&env.hash.into()).is_some() {
            stored.push(NewChange { seq, env });
        } else {
            unapplied.push((env, deps));
        }
    }
    // A change that builds on a change held in quarantine is held with it (it cannot
    // apply before the station decides); the rest lack history to fetch.
    loop {
        let before = unapplied.len();
        let mut still = Vec::new();
        for (env, deps) in unapplied {
            if depends_on_held(tx, &deps)? {
                hold(
                    tx,
                    ctx,
                    report,
                    &header,
                    &env,
                    "it builds on a change held in quarantine",
                )?;
            } else {
                still.push((env, deps));
            }
        }
        unapplied = still;
        if unapplied.len() == before {
            break;
        }
    }
    if !unapplied.is_empty() {
        report.missing.push(doc_id);
    }
    if stored.is_empty() {
        return Ok(());
    }
    sort_causally(&mut doc, &mut stored);
    let Ok(prepared) = catch_unwind(AssertUnwindSafe(|| prepare(&header, &mut doc))) else {
        return Err(WriteError::Damaged(
            doc_id,
            "the merged document cannot be saved".into(),
        ));
    };
    // The new snapshot must load back as this document, or the record would be unreadable
    // on every node that stores it: nothing of this document in the batch is stored.
    if let Err(why) = crate::rules::loads_back(&mut doc, &prepared.snapshot) {
        for c in stored {
            reject(tx, ctx, report, &c.env, &why)?;
        }
        return Ok(());
    }
    report.accepted += stored.len();
    store_prepared(tx, &header, &prepared, &stored, ctx.origin)
}

/// Holds a change back in quarantine until the station accepts or rejects it.
fn hold(
    tx: &Transaction<'_>,
    ctx: &IngestContext,
    report: &mut IngestReport,
    header: &DocHeader,
    env: &SignedChange,
    reason: &str,
) -> Result<(), WriteError> {
    // Bounded: past the limit, a change that would be held is refused instead (and kept,
    // bounded, with the rejected changes), so no relay can fill the station's disk.
    let (held, bytes): (i64, i64) = tx
        .prepare_cached("SELECT COUNT(*), COALESCE(SUM(length(bytes)), 0) FROM quarantine")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if held >= MAX_QUARANTINE_CHANGES || bytes + env.bytes.len() as i64 > MAX_QUARANTINE_BYTES {
        return reject(tx, ctx, report, env, "the quarantine is full");
    }
    report.quarantined += 1;
    tx.prepare_cached(
        "INSERT OR IGNORE INTO quarantine(hash, doc_id, kind, author, nonce, signer, signature,
                                          bytes, reason, from_peer, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        env.hash.0.as_slice(),
        env.doc.as_bytes().as_slice(),
        header.kind.code(),
        header.author.as_bytes().as_slice(),
        header.nonce.as_slice(),
        env.signer.as_bytes().as_slice(),
        env.signature.as_slice(),
        env.bytes,
        reason,
        ctx.origin.map(|o| o.as_bytes().to_vec()),
        now_ms(),
    ])?;
    Ok(())
}

/// The outcome of checking one envelope: the verified change, or the envelope and why not.
type Checked = Result<yizhan_protocol::VerifiedChange, Box<yizhan_protocol::Unverified>>;

/// Below this many changes, checking on one thread is quicker than starting others.
const PARALLEL_VERIFY_MIN: usize = 64;

/// How many documents pass 2 hands over at once.
/// Their signatures are checked as one batch: for new visits, 128 signatures at about
/// 13 µs each on this project's machine, against 16 µs in batches of 32 (and 35 µs one by
/// one); the evening set ran 2–7% faster with 128 than with 32.
const WORK_BATCH: usize = 128;

/// Whether any of a change's dependencies is held in quarantine.
fn depends_on_held(tx: &Transaction<'_>, deps: &[automerge::ChangeHash]) -> rusqlite::Result<bool> {
    let mut stmt = tx.prepare_cached("SELECT 1 FROM quarantine WHERE hash = ?1")?;
    for dep in deps {
        if stmt.exists([dep.0.as_slice()])? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Most changes the quarantine holds.
const MAX_QUARANTINE_CHANGES: i64 = 10_000;
/// Most bytes of changes the quarantine holds.
const MAX_QUARANTINE_BYTES: i64 = 256 << 20;

/// Most rejected changes kept for inspection; older ones are dropped.
const MAX_REJECTED_KEPT: i64 = 10_000;

fn reject(
    tx: &Transaction<'_>,
    ctx: &IngestContext,
    report: &mut IngestReport,
    env: &SignedChange,
    reason: &str,
) -> Result<(), WriteError> {
    report.rejected.push(Rejection {
        doc: env.doc,
        hash: env.hash,
        reason: reason.to_string(),
    });
    keep_rejected(tx, ctx.origin, env, reason)
}

/// Keeps a refused change for inspection (the newest [`MAX_REJECTED_KEPT`]).
pub(crate) fn keep_rejected(
    tx: &Transaction<'_>,
    origin: Option<DeviceId>,
    env: &SignedChange,
    reason: &str,
) -> Result<(), WriteError> {
    tx.prepare_cached(
        "INSERT INTO rejected(doc_id, hash, signer, signature, bytes, reason, from_peer, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        env.doc.as_bytes().as_slice(),
        env.hash.0.as_slice(),
        env.signer.as_bytes().as_slice(),
        env.signature.as_slice(),
        env.bytes,
        reason,
        origin.map(|o| o.as_bytes().to_vec()),
        now_ms(),
    ])?;
    tx.prepare_cached("DELETE FROM rejected WHERE id <= (SELECT MAX(id) FROM rejected) - ?1")?
        .execute([MAX_REJECTED_KEPT])?;
    Ok(())
}

/// Whether document `doc` holds the change `hash`.
fn has_change(tx: &Transaction<'_>, doc: DocId, hash: &ChangeHash) -> rusqlite::Result<bool> {
    tx.prepare_cached(
        "SELECT 1 FROM changes
         WHERE docno = (SELECT docno FROM doc_index WHERE doc_id = ?1) AND hash = ?2",
    )?
    .exists(params![doc.as_bytes().as_slice(), hash.0.as_slice()])
}

type EnvelopeRow = Result<SignedChange, String>;

fn row_to_envelope(doc: DocId) -> impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<EnvelopeRow> {
    move |r| {
        let hash: Vec<u8> = r.get("hash")?;
        let signer: Vec<u8> = r.get("signer")?;
        let signature: Vec<u8> = r.get("signature")?;
        let bytes: Vec<u8> = r.get("bytes")?;
        Ok((|| {
            Ok(SignedChange {
                doc,
                hash: ChangeHash(hash.try_into().map_err(|_| "malformed hash")?),
                signer: DeviceId::from_slice(&signer).map_err(|_| "malformed signer")?,
                signature: signature.try_into().map_err(|_| "malformed signature")?,
                bytes,
            })
        })()
        .map_err(|e: &str| e.to_string()))
    }
}

/// Makes one change on this node inside `tx`: loads the document (or starts it), runs
/// `build` with this device as actor, commits, signs and persists.
fn local_change(
    tx: &Transaction<'_>,
    key: &DeviceKey,
    identity: &Identity,
    header: DocHeader,
    existing: Option<DocId>,
    build: impl FnOnce(&mut AutoCommit) -> Result<String, automerge::AutomergeError>,
) -> Result<(), WriteError> {
    let doc_id = header.doc_id();
    let mut doc = match existing {
        Some(id) => load_doc(tx, id)?,
        None => AutoCommit::new(),
    };
    doc.set_actor(ActorId::from(identity.device_id.as_bytes()));
    let message = build(&mut doc)?;
    let Some(_) = doc.commit_with(
        CommitOptions::default()
            .with_message(message)
            .with_time(Time::now().millis()),
    ) else {
        return Ok(());
    };
    let change = doc
        .get_last_local_change()
        .expect("a commit that returned a hash made a local change");
    let env = SignedChange::sign(key, identity.site_id, doc_id, &change);
    persist(
        tx,
        &header,
        &mut doc,
        &[NewChange {
            env,
            seq: change.seq(),
        }],
    )?;
    Ok(())
}

/// Stores new changes made on this node.
fn persist(
    tx: &Transaction<'_>,
    header: &DocHeader,
    doc: &mut AutoCommit,
    new: &[NewChange],
) -> Result<(), WriteError> {
    persist_from(tx, header, doc, new, None)
}

/// Stores new changes of one document (received from `origin`, or made here when `None`),
/// each at the next position of this node's change log, with the document's new snapshot
/// and its index row.
fn persist_from(
    tx: &Transaction<'_>,
    header: &DocHeader,
    doc: &mut AutoCommit,
    new: &[NewChange],
    origin: Option<DeviceId>,
) -> Result<(), WriteError> {
    let prepared = prepare(header, doc);
    store_prepared(tx, header, &prepared, new, origin)
}

/// A document's new state, ready to store: computed without the store, so that it can be
/// done off the thread that writes.
struct Prepared {
    /// What loads as the document: Automerge's `save()`, or nothing for a new document of
    /// one change, which is stored once, as its change (see [`load_doc`]).
    snapshot: Vec<u8>,
    heads: Vec<u8>,
    row: IndexRow,
}

fn prepare(header: &DocHeader, doc: &mut AutoCommit) -> Prepared {
    let snapshot = doc.save();
    prepared_with(header, doc, snapshot)
}

/// [`prepare`] with the snapshot already at hand: what loads as `doc` (see
/// [`Prepared::snapshot`]).
fn prepared_with(header: &DocHeader, doc: &mut AutoCommit, snapshot: Vec<u8>) -> Prepared {
    let mut heads: Vec<[u8; 32]> = doc.get_heads().iter().map(|h| h.0).collect();
    heads.sort();
    Prepared {
        snapshot,
        heads: heads.concat(),
        row: index_row(header, doc),
    }
}

/// Stores new changes of one document with its new state (see [`persist_from`]).
fn store_prepared(
    tx: &Transaction<'_>,
    header: &DocHeader,
    prepared: &Prepared,
    new: &[NewChange],
    origin: Option<DeviceId>,
) -> Result<(), WriteError> {
    let doc_id = header.doc_id();
    let now = now_ms();
    let docno = match docno_of(tx, doc_id)? {
        Some(docno) => {
            tx.prepare_cached(
                "UPDATE docs SET snapshot = ?2, heads = ?3, updated_at = ?4 WHERE docno = ?1",
            )?
            .execute(params![docno, prepared.snapshot, prepared.heads, now])?;
            docno
        }
        None => insert_doc(tx, header, doc_id, prepared, now)?,
    };
    store_changes(tx, doc_id, docno, new, origin, now)?;
    materialize_row(tx, header, docno, &prepared.row)
}

/// [`store_prepared`] for a document this transaction found that this node does not hold
/// (pass 1 of [`ingest_in`]), without looking it up again.
fn store_new_doc(
    tx: &Transaction<'_>,
    header: &DocHeader,
    prepared: &Prepared,
    new: &[NewChange],
    origin: Option<DeviceId>,
) -> Result<(), WriteError> {
    let doc_id = header.doc_id();
    let now = now_ms();
    let docno = insert_doc(tx, header, doc_id, prepared, now)?;
    store_changes(tx, doc_id, docno, new, origin, now)?;
    materialize_row(tx, header, docno, &prepared.row)
}

/// Adds the `docs` row of a document this node does not hold (`doc_id` is its header's
/// id): it takes the next number (the rowid), and its id goes to the small index of new
/// ids (`store::index_new_doc`).
fn insert_doc(
    tx: &Transaction<'_>,
    header: &DocHeader,
    doc_id: DocId,
    prepared: &Prepared,
    now: i64,
) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO docs(doc_id, kind, author, nonce, snapshot, heads, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        doc_id.as_bytes().as_slice(),
        header.kind.code(),
        header.author.as_bytes().as_slice(),
        header.nonce.as_slice(),
        prepared.snapshot,
        prepared.heads,
        now,
    ])?;
    let docno = tx.last_insert_rowid();
    store::index_new_doc(tx, doc_id.as_bytes(), docno)?;
    Ok(docno)
}

/// The new changes of document `doc_id` (number `docno`), each at the next position of the
/// log.
fn store_changes(
    tx: &Transaction<'_>,
    doc_id: DocId,
    docno: i64,
    new: &[NewChange],
    origin: Option<DeviceId>,
    now: i64,
) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO changes(hash, doc_id, actor, seq, signer, signature, bytes, received_at,
                             origin, docno, lseq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,
                 (SELECT MAX(COALESCE(MAX(lseq), 0), (SELECT COALESCE(MAX(CAST(value AS INTEGER)), 0)
                      FROM meta WHERE key = 'log_floor')) + 1 FROM changes))",
    )?;
    let origin = origin.map(|o| o.as_bytes().to_vec());
    for c in new {
        insert.execute(params![
            c.env.hash.0.as_slice(),
            doc_id.as_bytes().as_slice(),
            c.env.signer.as_bytes().as_slice(),
            c.seq as i64,
            c.env.signer.as_bytes().as_slice(),
            c.env.signature.as_slice(),
            c.env.bytes,
            now,
            origin,
            docno,
        ])?;
    }
    Ok(())
}

/// A record's row in the `records` index and its links, as derived from its document.
#[derive(Debug, PartialEq)]
struct IndexRow {
    grid: Option<String>,
    category: Option<String>,
    status: Option<String>,
    assignee: Option<String>,
    at_ms: i64,
    summary: String,
    links: Vec<String>,
    conflicts: i64,
}

fn index_row(header: &DocHeader, doc: &AutoCommit) -> IndexRow {
    index_row_of(header, &records::Root::read(doc))
}

/// [`index_row`] from the record's root map.
fn index_row_of(header: &DocHeader, root: &records::Root) -> IndexRow {
    let (grid, category, status, assignee, at, summary, links) = match header.kind {
        RecordKind::Visit => {
            let v = records::read_visit_from(root, header);
            let summary = serde_json::to_string(&v).expect("records serialise");
            (
                v.grid,
                v.category,
                None,
                None,
                v.visited_at,
                summary,
                v.tickets,
            )
        }
        RecordKind::Ticket => {
            let t = records::read_ticket_from(root, header);
            let summary = serde_json::to_string(&t).expect("records serialise");
            let (status, assignee) = (Some(t.status), t.assignee);
            (
                t.grid,
                t.category,
                status,
                assignee,
                t.opened_at,
                summary,
                Vec::new(),
            )
        }
    };
    IndexRow {
        grid,
        category,
        status,
        assignee,
        at_ms: at.parse::<Time>().map(Time::millis).unwrap_or(0),
        summary,
        links,
        conflicts: records::read_conflicts_from(root, header.kind).len() as i64,
    }
}

/// Writes the index row (and a visit's links) of the record whose document is number
/// `docno` in `docs`.
fn materialize_row(
    tx: &Transaction<'_>,
    header: &DocHeader,
    docno: i64,
    row: &IndexRow,
) -> Result<(), WriteError> {
    let id = header.doc_id();
    let id_text = id.to_string();
    if header.kind == RecordKind::Visit {
        tx.prepare_cached("DELETE FROM links WHERE visit = ?1")?
            .execute([&id_text])?;
        let mut link = tx.prepare_cached("INSERT INTO links(visit, ticket) VALUES (?1, ?2)")?;
        for t in &row.links {
            link.execute([&id_text, t])?;
        }
    }
    tx.prepare_cached(
        "INSERT INTO records(docno, doc_id, kind, grid, category, author, status, assignee,
                             at_ms, summary, conflicts)
         VALUES (?11, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT(docno) DO UPDATE SET grid = excluded.grid, category = excluded.category,
             status = excluded.status, assignee = excluded.assignee, at_ms = excluded.at_ms,
             summary = excluded.summary, conflicts = excluded.conflicts",
    )?
    .execute(params![
        id.as_bytes().as_slice(),
        header.kind.code(),
        row.grid,
        row.category,
        header.author.to_string(),
        row.status,
        row.assignee,
        row.at_ms,
        row.summary,
        row.conflicts,
        docno,
    ])?;
    Ok(())
}

/// The index row and links stored for a record.
fn stored_index_row(conn: &rusqlite::Connection, id: DocId) -> rusqlite::Result<Option<IndexRow>> {
    let row = conn
        .prepare_cached(
            "SELECT grid, category, status, assignee, at_ms, summary, conflicts
             FROM records WHERE docno = (SELECT docno FROM doc_index WHERE doc_id = ?1)",
        )?
        .query_row([id.as_bytes().as_slice()], |r| {
            Ok(IndexRow {
                grid: r.get(0)?,
                category: r.get(1)?,
                status: r.get(2)?,
                assignee: r.get(3)?,
                at_ms: r.get(4)?,
                summary: r.get(5)?,
                links: Vec::new(),
                conflicts: r.get(6)?,
            })
        })
        .optional()?;
    let Some(mut row) = row else { return Ok(None) };
    row.links = conn
        .prepare_cached("SELECT ticket FROM links WHERE visit = ?1 ORDER BY ticket")?
        .query_map([id.to_string()], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(row))
}

/// The header of a stored document; `NotAllowed` when there is none.
fn load_header(tx: &Transaction<'_>, id: DocId) -> Result<DocHeader, WriteError> {
    match load_header_conn(tx, id) {
        Ok(h) => Ok(h),
        Err(ReadError::Sqlite(rusqlite::Error::QueryReturnedNoRows)) => Err(
            WriteError::NotAllowed(format!("no record {id} in this store")),
        ),
        Err(ReadError::Sqlite(e)) => Err(WriteError::Sqlite(e)),
        Err(e) => Err(WriteError::Damaged(id, e.to_string())),
    }
}

pub(crate) fn load_header_conn(
    conn: &rusqlite::Connection,
    id: DocId,
) -> Result<DocHeader, ReadError> {
    let (kind, author, nonce): (u8, Vec<u8>, Vec<u8>) = conn
        .prepare_cached(
            "SELECT kind, author, nonce FROM docs
             WHERE docno = (SELECT docno FROM doc_index WHERE doc_id = ?1)",
        )?
        .query_row([id.as_bytes().as_slice()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let damaged = |why: &str| ReadError::Damaged(id, why.to_string());
    let header = DocHeader {
        kind: RecordKind::from_code(kind).ok_or_else(|| damaged("unknown kind"))?,
        author: DeviceId::from_slice(&author).map_err(|_| damaged("malformed author"))?,
        nonce: nonce.try_into().map_err(|_| damaged("malformed nonce"))?,
    };
    if header.doc_id() != id {
        return Err(damaged("its id does not match its header"));
    }
    Ok(header)
}

/// SQL for what loads as the document of the `docs` row `d`: its snapshot, or, where that
/// is empty, its one change, stored once, as that change (ingest leaves a new document of
/// one change without a snapshot);
/// Automerge loads a change as it loads a saved document.
pub const DOCUMENT_BYTES_SQL: &str = "CASE WHEN length(d.snapshot) > 0 THEN d.snapshot
     ELSE (SELECT c.bytes FROM changes c WHERE c.docno = d.docno) END";

/// Loads a document from its snapshot (see [`DOCUMENT_BYTES_SQL`]).
pub(crate) fn load_doc(conn: &rusqlite::Connection, id: DocId) -> Result<AutoCommit, WriteError> {
    let snapshot: Option<Vec<u8>> = conn
        .prepare_cached(&format!(
            "SELECT {DOCUMENT_BYTES_SQL} FROM docs d
             WHERE d.docno = (SELECT docno FROM doc_index WHERE doc_id = ?1)"
        ))?
        .query_row([id.as_bytes().as_slice()], |r| r.get(0))
        .optional()?;
    let snapshot =
        snapshot.ok_or_else(|| WriteError::NotAllowed(format!("no record {id} in this store")))?;
    match catch_unwind(|| AutoCommit::load(&snapshot)) {
        Ok(Ok(doc)) => Ok(doc),
        Ok(Err(e)) => Err(WriteError::Damaged(id, e.to_string())),
        Err(_) => Err(WriteError::Damaged(
            id,
            "the snapshot cannot be loaded".into(),
        )),
    }
}

pub(crate) fn save_identity(tx: &Transaction<'_>, identity: &Identity) -> rusqlite::Result<()> {
    set_meta(
        tx,
        "root",
        &identity.root.map(|r| r.to_string()).unwrap_or_default(),
    )?;
    set_meta(
        tx,
        "cert",
        &identity
            .cert
            .as_ref()
            .map(|c| hex::encode(c.to_bytes()))
            .unwrap_or_default(),
    )?;
    set_meta(
        tx,
        "station_addr",
        identity.station_addr.as_deref().unwrap_or_default(),
    )?;
    set_meta(tx, "name", &identity.name)?;
    set_meta(tx, "role", identity.role.as_str())?;
    set_meta(
        tx,
        "site_id",
        &identity.site_id.map(|s| s.to_string()).unwrap_or_default(),
    )?;
    set_meta(
        tx,
        "grids",
        &serde_json::to_string(&identity.grids).expect("strings serialise"),
    )?;
    Ok(())
}

fn load_identity(store: &Store, key: &DeviceKey) -> Result<Identity, OpenError> {
    let get = |k: &str| -> Result<String, OpenError> {
        store
            .meta(k)?
            .ok_or_else(|| OpenError::Mismatch(format!("the store has no {k}")))
    };
    let device_id = key.device_id();
    if get("device_id")? != device_id.to_string() {
        return Err(OpenError::Mismatch("it was made for another device".into()));
    }
    let role = get("role")?;
    let site = get("site_id")?;
    let opt = |k: &str| -> Result<Option<String>, OpenError> {
        Ok(store.meta(k)?.filter(|v| !v.is_empty()))
    };
    let root = match opt("root")? {
        Some(r) => Some(
            r.parse()
                .map_err(|_| OpenError::Mismatch("malformed root".into()))?,
        ),
        None => None,
    };
    let cert = match opt("cert")? {
        Some(c) => Some(
            hex::decode(&c)
                .ok()
                .and_then(|b| yizhan_protocol::Signed::from_bytes(&b).ok())
                .ok_or_else(|| OpenError::Mismatch("malformed certificate".into()))?,
        ),
        None => None,
    };
    let station_addr = opt("station_addr")?;
    Ok(Identity {
        device_id,
        name: get("name")?,
        role: Role::parse(&role)
            .ok_or_else(|| OpenError::Mismatch(format!("unknown role '{role}'")))?,
        site_id: if site.is_empty() {
            None
        } else {
            Some(
                site.parse()
                    .map_err(|_| OpenError::Mismatch("malformed site id".into()))?,
            )
        },
        grids: serde_json::from_str(&get("grids")?)
            .map_err(|_| OpenError::Mismatch("malformed grids".into()))?,
        root,
        cert,
        station_addr,
    })
}

fn store_is_empty(path: &Path) -> bool {
    Store::open(path).ok().and_then(|s| {
        s.conn()
            .query_row("SELECT COUNT(*) FROM docs", [], |r| r.get::<_, i64>(0))
            .ok()
    }) == Some(0)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    } else {
        let mut perms = fs::metadata(dir)?.permissions();
        if perms.mode() & 0o077 != 0 {
            perms.set_mode(0o700);
            fs::set_permissions(dir, perms)?;
        }
    }
    Ok(())
}

fn write_key_file(path: &Path, key: &DeviceKey) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("key.tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(hex::encode(key.seed()).as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn read_key_file(path: &Path) -> Result<DeviceKey, OpenError> {
    let bad = |reason: String| OpenError::KeyFile {
        path: path.to_path_buf(),
        reason,
    };
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)
            .map_err(|e| bad(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "readable by others (mode {:o}); run `chmod 600` on it",
                mode & 0o777
            )));
        }
    }
    let text = fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed)
        .map_err(|_| bad("not a 64-hex-character secret key".into()))?;
    Ok(DeviceKey::from_seed(seed))
}

impl From<VerifyError> for WriteError {
    fn from(e: VerifyError) -> Self {
        WriteError::NotAllowed(e.to_string())
    }
}

//! A node's home directory, and [`Node`]: a device key, an open store and the identity.
//!
//! A home holds:
//!
//! - `device.key`: the 32-byte ed25519 secret seed as 64 hex characters, mode 0600,
//!   written once, atomically (temporary file, fsync, rename, fsync of the directory). An
//!   encrypted home has no key file: its seed is kept inside the encrypted store.
//! - `store.db`: the SQLite store ([`crate::store`]), with the node's name, role, site and
//!   grids in its `meta` table.
//!
//! This module makes and opens homes and hands out [`Node`]s, one per command or, in the
//! daemon, from a small pool of open ones per sync. What a node does lives by
//! responsibility: local writes in [`crate::write`], reads and `verify` in
//! [`crate::query`], received changes in [`crate::ingest`], membership in
//! [`crate::members`], sync in [`crate::sync`].

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use yizhan_protocol::DeviceKey;

use crate::error::{InitError, OpenError, WriteError};
use crate::identity::{Identity, Role, load_identity, save_identity};
use crate::ingest::{Decoded, DocChanges, IngestContext, IngestReport, ingest_in};
use crate::store::{Passphrase, Store, set_meta};

/// The file name of the device key inside a home.
pub const KEY_FILE: &str = "device.key";
/// The file name of the store inside a home.
pub const STORE_FILE: &str = "store.db";

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
    pub(crate) dir: PathBuf,
    pub(crate) passphrase: Option<Passphrase>,
    /// Nodes that finished their work and can be used again (see [`Home::checkout`]).
    pub(crate) pool: std::sync::Arc<std::sync::Mutex<Vec<Node>>>,
    /// The ingest gate of the nodes it hands out (see `Node::ingest_gate`).
    pub(crate) gate: std::sync::Arc<crate::ingest::group::IngestGate>,
}

/// Most idle nodes a [`Home`] keeps open for reuse.
pub(crate) const MAX_POOLED: usize = 4;

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
    /// transaction, or beyond the `MAX_POOLED` idle ones, is closed instead.
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

/// A node: its key, its store and its identity.
pub struct Node {
    pub(crate) home: PathBuf,
    /// The passphrase of an encrypted home.
    pub(crate) passphrase: Option<Passphrase>,
    pub(crate) key: DeviceKey,
    pub(crate) store: Store,
    pub(crate) identity: Identity,
    /// Shared by the nodes of one [`Home`] in one process: syncs hand it what they
    /// received, and it stores the pages of syncs that wait at the same time in one
    /// transaction (group commit, `group.rs`). They queue there, without a deadline,
    /// rather than in SQLite's busy handler, whose timeout a long queue of syncs would pass.
    pub(crate) ingest_gate: Option<std::sync::Arc<crate::ingest::group::IngestGate>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("home", &self.home)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> InitError + '_ {
    move |source| InitError::Io {
        path: path.to_path_buf(),
        source,
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
        let mut store = store;
        let identity = load_identity(&store, &key)?;
        crate::upgrade::link_households(&mut store, &key, &identity)
            .map_err(|e| OpenError::Mismatch(format!("linking records to households: {e}")))?;
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
        let mut store = store;
        let identity = load_identity(&store, &key)?;
        crate::upgrade::link_households(&mut store, &key, &identity)
            .map_err(|e| OpenError::Mismatch(format!("linking records to households: {e}")))?;
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

    /// Stores changes that came from elsewhere (a test harness, an import of relayed
    /// changes), with the checks of `ingest_in`. Accepted changes commit in one
    /// transaction; refused ones are reported and never stop the others.
    pub fn ingest(&mut self, batch: Vec<DocChanges>) -> Result<IngestReport, WriteError> {
        let tx = self.store.write()?;
        let ctx = IngestContext::load(&tx, &self.identity, None)?;
        let report = ingest_in(&tx, &ctx, batch, Decoded::default())?;
        tx.commit()?;
        Ok(report)
    }
}

pub(crate) fn store_is_empty(path: &Path) -> bool {
    Store::open(path).ok().and_then(|s| {
        s.conn()
            .query_row("SELECT COUNT(*) FROM docs", [], |r| r.get::<_, i64>(0))
            .ok()
    }) == Some(0)
}

pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
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

pub(crate) fn write_key_file(path: &Path, key: &DeviceKey) -> std::io::Result<()> {
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

pub(crate) fn read_key_file(path: &Path) -> Result<DeviceKey, OpenError> {
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

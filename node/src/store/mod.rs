//! The SQLite store: documents, their signed changes, and the materialised record index.
//!
//! What the store assumes of SQLite and of the disk is written down in `docs/design.md`.
//! In short: WAL mode with `synchronous=FULL`, so a transaction that returned from `COMMIT`
//! has been fsynced and survives power loss; every write is one `BEGIN IMMEDIATE`
//! transaction that reads the latest state inside the write lock, so the CLI and a running
//! daemon can write the same store without ever giving two changes the same (actor, seq).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};

/// `PRAGMA application_id` of a yizhan store ("YZHN").
pub const APPLICATION_ID: i64 = 0x595A_484E;

/// The schema, one migration per step. `user_version` is the number of steps applied.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    -- One row per record document. `snapshot` is Automerge's save() of the document as of
    -- every change in `changes` for it, so that a document loads without replaying history.
    CREATE TABLE docs (
        doc_id     BLOB PRIMARY KEY,     -- 16 bytes, derived from (kind, author, nonce)
        kind       INTEGER NOT NULL,     -- 1 visit, 2 ticket
        author     BLOB NOT NULL,        -- 32-byte device id of the record's maker
        nonce      BLOB NOT NULL,        -- 16 bytes
        snapshot   BLOB NOT NULL,
        heads      BLOB NOT NULL,        -- sorted 32-byte change hashes, concatenated
        updated_at INTEGER NOT NULL      -- ms since epoch, local clock
    );
    -- Every change exactly as its author signed it, so it can be relayed unchanged.
    CREATE TABLE changes (
        hash        BLOB PRIMARY KEY,    -- Automerge change hash (SHA-256)
        doc_id      BLOB NOT NULL REFERENCES docs(doc_id),
        actor       BLOB NOT NULL,       -- Automerge actor id; equals signer
        seq         INTEGER NOT NULL,
        signer      BLOB NOT NULL,       -- 32-byte device id
        signature   BLOB NOT NULL,       -- 64-byte ed25519 signature
        bytes       BLOB NOT NULL,       -- raw Automerge change chunk
        received_at INTEGER NOT NULL,    -- ms since epoch, local clock
        UNIQUE (doc_id, actor, seq)
    );
    CREATE INDEX changes_by_doc ON changes(doc_id);
    -- The materialised index of records: what `list` reads without loading documents.
    CREATE TABLE records (
        doc_id   BLOB PRIMARY KEY REFERENCES docs(doc_id),
        id       TEXT NOT NULL UNIQUE,   -- hex of doc_id, for prefix look-ups
        kind     INTEGER NOT NULL,
        grid     TEXT,
        category TEXT,
        author   TEXT NOT NULL,          -- hex device id (visit author, ticket opener)
        status   TEXT,
        assignee TEXT,
        at_ms    INTEGER NOT NULL,       -- visited_at / opened_at
        summary  TEXT NOT NULL           -- the record as `list --json` prints it
    );
    CREATE INDEX records_by_kind_time ON records(kind, at_ms);
    -- Visit → ticket links, from each visit log's `tickets` field.
    CREATE TABLE links (
        visit  TEXT NOT NULL,
        ticket TEXT NOT NULL,
        PRIMARY KEY (visit, ticket)
    );
    CREATE INDEX links_by_ticket ON links(ticket, visit);
    "#,
    // 2: sites and sync.
    r#"
    -- This node's change log: every stored change gets the next position (`lseq`); peers
    -- pull the log after the last position they hold. `origin` is the peer a change came
    -- from (NULL when made here), so a change is never sent back where it came from.
    ALTER TABLE changes ADD COLUMN lseq INTEGER;
    ALTER TABLE changes ADD COLUMN origin BLOB;
    UPDATE changes SET lseq = rowid;
    CREATE UNIQUE INDEX changes_by_lseq ON changes(lseq);
    -- The log's epoch: a peer's position in it is only meaningful within one epoch.
    INSERT OR IGNORE INTO meta(key, value) VALUES ('log_epoch', lower(hex(randomblob(16))));
    -- How many fields of the record hold concurrent values.
    ALTER TABLE records ADD COLUMN conflicts INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX records_by_grid ON records(grid);
    CREATE INDEX records_by_author ON records(author);
    CREATE INDEX records_by_assignee ON records(assignee);
    -- Membership certificates this node has checked (the roster).
    CREATE TABLE members (
        device     BLOB PRIMARY KEY,
        cert       BLOB NOT NULL,        -- the signed certificate, as received
        name       TEXT NOT NULL,
        role       TEXT NOT NULL,        -- station | volunteer
        grids      TEXT NOT NULL,        -- JSON array
        expires_at INTEGER,              -- ms since epoch
        digest     BLOB NOT NULL
    );
    -- Revocations this node has checked.
    CREATE TABLE revocations (
        device      BLOB PRIMARY KEY,
        statement   BLOB NOT NULL,
        reason      TEXT NOT NULL,
        revoked_at  INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        digest      BLOB NOT NULL
    );
    -- Peers this node has synced with, and its position in each one's log.
    CREATE TABLE peers (
        device    BLOB PRIMARY KEY,
        name      TEXT,
        addr      TEXT,
        last_sync INTEGER,
        epoch     BLOB,
        cursor    INTEGER NOT NULL DEFAULT 0,
        scope_key BLOB
    );
    -- Changes refused on receipt, kept for inspection (bounded).
    CREATE TABLE rejected (
        id          INTEGER PRIMARY KEY,
        doc_id      BLOB NOT NULL,
        hash        BLOB NOT NULL,
        signer      BLOB,
        signature   BLOB,
        bytes       BLOB,
        reason      TEXT NOT NULL,
        from_peer   BLOB,
        received_at INTEGER NOT NULL
    );
    "#,
    // 3: quarantine.
    r#"
    -- Changes by revoked authors that reached a station through another member, held back
    -- (not merged) until the station accepts or rejects them.
    CREATE TABLE quarantine (
        hash        BLOB PRIMARY KEY,
        doc_id      BLOB NOT NULL,
        kind        INTEGER NOT NULL,
        author      BLOB NOT NULL,
        nonce       BLOB NOT NULL,
        signer      BLOB NOT NULL,
        signature   BLOB NOT NULL,
        bytes       BLOB NOT NULL,
        reason      TEXT NOT NULL,
        from_peer   BLOB,
        received_at INTEGER NOT NULL
    );
    "#,
    // 4: one index fewer to maintain on every stored change: UNIQUE (doc_id, actor, seq)
    // already serves look-ups by document.
    r#"
    DROP INDEX IF EXISTS changes_by_doc;
    "#,
    // 5: misbehaviour by other devices, proven by what they signed (two different changes
    // with one (actor, seq)). Bounded; one row per distinct piece of evidence.
    r#"
    CREATE TABLE misbehaviour (
        id        INTEGER PRIMARY KEY,
        device    BLOB NOT NULL,         -- the device that misbehaved
        kind      TEXT NOT NULL,         -- equivocation
        detail    TEXT NOT NULL,         -- the evidence, for people
        from_peer BLOB,                  -- the peer the evidence came from
        at        INTEGER NOT NULL,      -- ms since epoch, local clock
        UNIQUE (device, kind, detail)
    );
    "#,
    // 6: only tickets have an assignee: the visits' NULLs need no index entries (one
    // B-tree insert fewer for every visit; `assignee = ?` still uses the index).
    r#"
    DROP INDEX IF EXISTS records_by_assignee;
    CREATE INDEX records_by_assignee ON records(assignee) WHERE assignee IS NOT NULL;
    "#,
    // 7: every document gets a local number (`docs.docno`, in the order it arrived), and
    // `records` is keyed by it: a new record appends to its table instead of inserting into
    // B-trees keyed by random values (`records.doc_id` and the hex `records.id`, both
    // gone; prefix look-ups range over `docs.doc_id`). A UNIQUE column's index cannot be
    // dropped, so `records` is rebuilt.
    r#"
    ALTER TABLE docs ADD COLUMN docno INTEGER;
    UPDATE docs SET docno = rowid;
    CREATE UNIQUE INDEX docs_by_docno ON docs(docno);
    CREATE TABLE records_v7 (
        docno     INTEGER PRIMARY KEY REFERENCES docs(docno),
        doc_id    BLOB NOT NULL,
        kind      INTEGER NOT NULL,
        grid      TEXT,
        category  TEXT,
        author    TEXT NOT NULL,          -- hex device id (visit author, ticket opener)
        status    TEXT,
        assignee  TEXT,
        at_ms     INTEGER NOT NULL,       -- visited_at / opened_at
        summary   TEXT NOT NULL,          -- the record as `list --json` prints it
        conflicts INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO records_v7(docno, doc_id, kind, grid, category, author, status, assignee,
                           at_ms, summary, conflicts)
        SELECT d.docno, r.doc_id, r.kind, r.grid, r.category, r.author, r.status, r.assignee,
               r.at_ms, r.summary, r.conflicts
        FROM records r JOIN docs d ON d.doc_id = r.doc_id ORDER BY d.docno;
    DROP TABLE records;
    ALTER TABLE records_v7 RENAME TO records;
    CREATE INDEX records_by_kind_time ON records(kind, at_ms);
    CREATE INDEX records_by_grid ON records(grid);
    CREATE INDEX records_by_author ON records(author);
    CREATE INDEX records_by_assignee ON records(assignee) WHERE assignee IS NOT NULL;
    -- `changes` keeps one (document, actor, seq) to one change by the document's number:
    -- the first change of a new document appends to that index too. Rebuilt for the same
    -- reason; rowids and log positions are kept.
    CREATE TABLE changes_v7 (
        hash        BLOB PRIMARY KEY,    -- Automerge change hash (SHA-256)
        doc_id      BLOB NOT NULL REFERENCES docs(doc_id),
        docno       INTEGER NOT NULL REFERENCES docs(docno),
        actor       BLOB NOT NULL,       -- Automerge actor id; equals signer
        seq         INTEGER NOT NULL,
        signer      BLOB NOT NULL,       -- 32-byte device id
        signature   BLOB NOT NULL,       -- 64-byte ed25519 signature
        bytes       BLOB NOT NULL,       -- raw Automerge change chunk
        received_at INTEGER NOT NULL,    -- ms since epoch, local clock
        lseq        INTEGER,
        origin      BLOB,
        UNIQUE (docno, actor, seq)
    );
    INSERT INTO changes_v7(rowid, hash, doc_id, docno, actor, seq, signer, signature, bytes,
                           received_at, lseq, origin)
        SELECT c.rowid, c.hash, c.doc_id, d.docno, c.actor, c.seq, c.signer, c.signature,
               c.bytes, c.received_at, c.lseq, c.origin
        FROM changes c JOIN docs d ON d.doc_id = c.doc_id ORDER BY c.rowid;
    DROP TABLE changes;
    ALTER TABLE changes_v7 RENAME TO changes;
    CREATE UNIQUE INDEX changes_by_lseq ON changes(lseq);
    "#,
    // 8: a change is found by its document and hash, `UNIQUE (docno, hash)`, not by its
    // hash alone. Every look-up by hash knows the document, and the index on the hash
    // alone took a random leaf page for every change stored (a third of the pages a
    // large ingest writes). The same change may now be stored for two documents, each
    // signed for its own; before, the second made the whole ingest fail. Rebuilt (a
    // primary key cannot be dropped); rowids and log positions are kept.
    r#"
    CREATE TABLE changes_v8 (
        hash        BLOB NOT NULL,       -- Automerge change hash (SHA-256)
        doc_id      BLOB NOT NULL REFERENCES docs(doc_id),
        docno       INTEGER NOT NULL REFERENCES docs(docno),
        actor       BLOB NOT NULL,       -- Automerge actor id; equals signer
        seq         INTEGER NOT NULL,
        signer      BLOB NOT NULL,       -- 32-byte device id
        signature   BLOB NOT NULL,       -- 64-byte ed25519 signature
        bytes       BLOB NOT NULL,       -- raw Automerge change chunk
        received_at INTEGER NOT NULL,    -- ms since epoch, local clock
        lseq        INTEGER,
        origin      BLOB,
        UNIQUE (docno, hash),
        UNIQUE (docno, actor, seq)
    );
    INSERT INTO changes_v8(rowid, hash, doc_id, docno, actor, seq, signer, signature, bytes,
                           received_at, lseq, origin)
        SELECT rowid, hash, doc_id, docno, actor, seq, signer, signature, bytes, received_at,
               lseq, origin
        FROM changes ORDER BY rowid;
    DROP TABLE changes;
    ALTER TABLE changes_v8 RENAME TO changes;
    CREATE UNIQUE INDEX changes_by_lseq ON changes(lseq);
    "#,
    // 9: a document is found by its id in two indexes, `doc_ids` (large, settled) and
    // `doc_ids_new` (small, the documents made or received since the last settling), read
    // together through the `doc_index` view. An id is random: in one large index every new
    // document dirtied its own leaf page (more than half the pages a 1,000-change ingest
    // wrote). New ids go to the small index, and are moved to the large one in bulk
    // (`settle_doc_ids`). `docs` is keyed by its number alone (no index on `doc_id`, and
    // `docno` is the rowid), so it and `changes` (whose `doc_id` referenced `docs(doc_id)`)
    // are rebuilt; rowids, numbers and log positions are kept.
    r#"
    CREATE TABLE docs_v9 (
        docno      INTEGER PRIMARY KEY,  -- local number, in the order documents arrived
        doc_id     BLOB NOT NULL,        -- 16 bytes, derived from (kind, author, nonce)
        kind       INTEGER NOT NULL,     -- 1 visit, 2 ticket
        author     BLOB NOT NULL,        -- 32-byte device id of the record's maker
        nonce      BLOB NOT NULL,        -- 16 bytes
        snapshot   BLOB NOT NULL,
        heads      BLOB NOT NULL,        -- sorted 32-byte change hashes, concatenated
        updated_at INTEGER NOT NULL      -- ms since epoch, local clock
    );
    INSERT INTO docs_v9(docno, doc_id, kind, author, nonce, snapshot, heads, updated_at)
        SELECT docno, doc_id, kind, author, nonce, snapshot, heads, updated_at
        FROM docs ORDER BY docno;
    CREATE TABLE doc_ids (
        doc_id BLOB PRIMARY KEY,
        docno  INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO doc_ids(doc_id, docno) SELECT doc_id, docno FROM docs ORDER BY doc_id;
    CREATE TABLE doc_ids_new (
        doc_id BLOB PRIMARY KEY,
        docno  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE VIEW doc_index AS
        SELECT doc_id, docno FROM doc_ids UNION ALL SELECT doc_id, docno FROM doc_ids_new;
    CREATE TABLE changes_v9 (
        hash        BLOB NOT NULL,       -- Automerge change hash (SHA-256)
        doc_id      BLOB NOT NULL,       -- the document's id (its number is `docno`)
        docno       INTEGER NOT NULL REFERENCES docs(docno),
        actor       BLOB NOT NULL,       -- Automerge actor id; equals signer
        seq         INTEGER NOT NULL,
        signer      BLOB NOT NULL,       -- 32-byte device id
        signature   BLOB NOT NULL,       -- 64-byte ed25519 signature
        bytes       BLOB NOT NULL,       -- raw Automerge change chunk
        received_at INTEGER NOT NULL,    -- ms since epoch, local clock
        lseq        INTEGER,
        origin      BLOB,
        UNIQUE (docno, hash),
        UNIQUE (docno, actor, seq)
    );
    INSERT INTO changes_v9(rowid, hash, doc_id, docno, actor, seq, signer, signature, bytes,
                           received_at, lseq, origin)
        SELECT rowid, hash, doc_id, docno, actor, seq, signer, signature, bytes, received_at,
               lseq, origin
        FROM changes ORDER BY rowid;
    DROP TABLE changes;
    DROP TABLE docs;
    ALTER TABLE docs_v9 RENAME TO docs;
    ALTER TABLE changes_v9 RENAME TO changes;
    CREATE UNIQUE INDEX changes_by_lseq ON changes(lseq);
    "#,
    // 10: where records were before they moved. A record that leaves a grid (or a ticket
    // that leaves its assignee) must still reach the volunteers who held it, so that they
    // learn of the move and drop it (`purge.rs`): a node serving a pull sends the changes
    // of a record that left the puller's scope at a position after the puller's, as well
    // as those of records in its scope. `lseq` is the log's last position when the move
    // was stored (at or after the change that made it).
    r#"
    CREATE TABLE moves (
        docno    INTEGER NOT NULL,
        lseq     INTEGER NOT NULL,
        grid     TEXT,                   -- the grid before the move
        assignee TEXT                    -- the assignee before the move
    );
    CREATE INDEX moves_by_doc ON moves(docno, lseq);
    CREATE TRIGGER record_moved AFTER UPDATE OF grid, assignee ON records
        WHEN OLD.grid IS NOT NEW.grid OR OLD.assignee IS NOT NEW.assignee
    BEGIN
        INSERT INTO moves(docno, lseq, grid, assignee)
            VALUES (OLD.docno, (SELECT COALESCE(MAX(lseq), 0) FROM changes), OLD.grid,
                    OLD.assignee);
    END;
    -- The records a volunteer dropped because they left its scope (`purge.rs`): only a
    -- station gives one back, since another volunteer's copy may not have the move yet.
    CREATE TABLE purged (
        doc_id BLOB PRIMARY KEY
    ) WITHOUT ROWID;
    -- Addresses are remembered only where a peer listens (protocol.md §6.1). Those noted
    -- before may be the ephemeral ports of one-shot syncs, dialed back in vain: forgotten.
    -- A peer's listening address is noted again when this node dials it or it dials from
    -- where it listens.
    UPDATE peers SET addr = NULL;
    "#,
    // 11: households and the policy (kinds 3 and 4), due lists and ticket deadlines. A
    // visit's or ticket's household id; a ticket's deadline, a household's next due time,
    // with its latest visit and its visit interval; a household's tags and searchable
    // text. Visits and tickets stored before are linked to their households by the node
    // when it next opens (`upgrade`), which needs the site and the device key.
    r#"
    ALTER TABLE records ADD COLUMN household TEXT;   -- household id (hex) of a visit or ticket
    ALTER TABLE records ADD COLUMN due_ms INTEGER;   -- ticket deadline; household next due
    ALTER TABLE records ADD COLUMN last_ms INTEGER;  -- household: its latest visit
    ALTER TABLE records ADD COLUMN every_days INTEGER; -- household: its visit interval
    ALTER TABLE records ADD COLUMN tags TEXT;        -- household: JSON array of tag slugs
    ALTER TABLE records ADD COLUMN search TEXT;      -- household: address, residents, phone, note
    CREATE INDEX records_by_household ON records(household, at_ms) WHERE household IS NOT NULL;
    CREATE INDEX records_by_due ON records(kind, due_ms) WHERE due_ms IS NOT NULL;
    "#,
    // 12: the daily reads: the daily reads of a station without a scan of every record. The
    // records in conflict have an index of their own, in the order `conflicts` lists them
    // (`status` sums their counts from it); a record without a conflict has no entry in it.
    // Records by grid, then kind and time, so that `list --grid G --since T` reads the rows
    // it prints and no others, in order; it replaces the index on the grid alone, whose
    // look-ups it answers too. How many records of each kind there are is kept by triggers
    // as records come and go (`status` reads it instead of counting a million rows); a
    // migration that rebuilds `records` must create them again.
    r#"
    CREATE INDEX IF NOT EXISTS records_in_conflict ON records(kind, at_ms, doc_id)
        WHERE conflicts > 0;
    DROP INDEX IF EXISTS records_by_grid;
    CREATE INDEX records_by_grid ON records(grid, kind, at_ms);
    CREATE TABLE IF NOT EXISTS record_counts (
        kind INTEGER PRIMARY KEY,
        n    INTEGER NOT NULL
    );
    DELETE FROM record_counts;
    INSERT INTO record_counts(kind, n) SELECT kind, COUNT(*) FROM records GROUP BY kind;
    CREATE TRIGGER IF NOT EXISTS record_counted AFTER INSERT ON records BEGIN
        INSERT INTO record_counts(kind, n) VALUES (NEW.kind, 1)
            ON CONFLICT(kind) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER IF NOT EXISTS record_uncounted AFTER DELETE ON records BEGIN
        UPDATE record_counts SET n = n - 1 WHERE kind = OLD.kind;
    END;
    CREATE TRIGGER IF NOT EXISTS record_recounted AFTER UPDATE OF kind ON records
        WHEN OLD.kind IS NOT NEW.kind
    BEGIN
        UPDATE record_counts SET n = n - 1 WHERE kind = OLD.kind;
        INSERT INTO record_counts(kind, n) VALUES (NEW.kind, 1)
            ON CONFLICT(kind) DO UPDATE SET n = n + 1;
    END;
    "#,
    // 13: the due list reads households from its index alone: the index on the due time
    // also holds what the list prints of a household (its grid, latest visit, tags and
    // searchable text, whose first line is the address), so that a station's list of
    // thousands reads no record row. Only households and tickets have a due time.
    r#"
    DROP INDEX IF EXISTS records_by_due;
    CREATE INDEX records_by_due ON records(kind, due_ms, doc_id, grid, last_ms, tags, search)
        WHERE due_ms IS NOT NULL;
    "#,
    // 14: notices (kind 5). A notice names several grids, or the whole site: one row per
    // grid it names, `''` for the whole site, keyed by grid first, so that "the notices of
    // these grids or of the whole site" (a volunteer's scope, its list) is a look-up per
    // grid in this table; by document too, to replace a notice's rows. A notice's `grid`
    // in `records` is NULL. (`IF NOT EXISTS`: the tests take a store back to an earlier
    // version and open it again.)
    r#"
    CREATE TABLE IF NOT EXISTS notice_grids (
        grid  TEXT NOT NULL,             -- a grid the notice is for; '' for the whole site
        docno INTEGER NOT NULL,
        PRIMARY KEY (grid, docno)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS notice_grids_by_doc ON notice_grids(docno);
    "#,
];

/// How many new ids `doc_ids_new` holds at most before they are settled into `doc_ids`
/// (migration 9), for a store whose newest document has number `docno` (documents are never
/// deleted, so that is about how many it holds). Settling touches most leaves of the large
/// index (≈ 180 ids a leaf), so it is spaced in proportion to it: about `docno / 16` new
/// ids, a power of two from 16,384 (≈ 90 leaves of new ids) to 262,144.
fn settle_every(docno: i64) -> i64 {
    (docno.max(0) as u64 / 16)
        .next_power_of_two()
        .clamp(SETTLE_MIN, SETTLE_MAX) as i64
}

/// The least spacing of settling (see [`settle_every`]).
const SETTLE_MIN: u64 = 16_384;
/// The greatest spacing of settling (see [`settle_every`]).
const SETTLE_MAX: u64 = 262_144;

/// Moves every id of `doc_ids_new` into `doc_ids`, in the caller's transaction. Lookups
/// read both (the `doc_index` view), so this changes no answer, only where ids live.
pub fn settle_doc_ids(tx: &Transaction<'_>) -> rusqlite::Result<usize> {
    let moved = tx.execute(
        "INSERT INTO doc_ids(doc_id, docno) SELECT doc_id, docno FROM doc_ids_new",
        [],
    )?;
    tx.execute("DELETE FROM doc_ids_new", [])?;
    Ok(moved)
}

/// Records that document number `docno` (just inserted into `docs`) has id `doc_id`, and
/// settles the new ids when `docno` is a multiple of `settle_every`. The caller has
/// checked, in the same transaction, that no document has this id (`doc_index` does not
/// enforce it across its two tables).
pub fn index_new_doc(tx: &Transaction<'_>, doc_id: &[u8], docno: i64) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT INTO doc_ids_new(doc_id, docno) VALUES (?1, ?2)")?
        .execute(rusqlite::params![doc_id, docno])?;
    if docno % settle_every(docno) == 0 {
        settle_doc_ids(tx)?;
    }
    Ok(())
}

pub use crate::error::StoreOpenError as OpenError;

/// An open store.
pub struct Store {
    conn: Connection,
}

/// The passphrase of an encrypted store. It never prints.
#[derive(Clone)]
pub struct Passphrase(String);

impl Passphrase {
    /// Wraps a passphrase.
    pub fn new(text: String) -> Passphrase {
        Passphrase(text)
    }

    /// Whether it is empty (an empty passphrase is refused).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(<secret>)")
    }
}

/// Whether a store is encrypted, for what may be written outside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keying {
    /// Plain SQLite.
    Plain,
    /// SQLCipher, keyed by a passphrase.
    Encrypted,
}

impl Store {
    /// The epoch of this node's change log: a random id made with the store, which a peer
    /// keeps with its position in the log so that a store made anew is never taken for the
    /// same log.
    pub(crate) fn log_epoch(&self) -> Result<[u8; 16], crate::error::ReadError> {
        let text = self.meta("log_epoch")?.unwrap_or_default();
        let mut epoch = [0u8; 16];
        hex::decode_to_slice(text, &mut epoch)
            .map_err(|_| crate::error::ReadError::Index("malformed log epoch".into()))?;
        Ok(epoch)
    }

    /// Creates a new, empty store at `path` (which must not exist).
    pub fn create(path: &Path) -> Result<Store, OpenError> {
        Self::create_keyed(path, None)
    }

    /// Creates a new, empty store encrypted with `passphrase` (SQLCipher: every page of
    /// the database and of its WAL is encrypted; the key is derived from the passphrase).
    pub fn create_encrypted(path: &Path, passphrase: &Passphrase) -> Result<Store, OpenError> {
        Self::create_keyed(path, Some(passphrase))
    }

    fn create_keyed(path: &Path, passphrase: Option<&Passphrase>) -> Result<Store, OpenError> {
        if passphrase.is_some_and(Passphrase::is_empty) {
            return Err(OpenError::EmptyPassphrase);
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        if let Some(p) = passphrase {
            conn.pragma_update(None, "key", &p.0)?;
            quiet_cipher(&conn);
        }
        // Owner-only, before the WAL exists: SQLite gives the WAL and shm files the
        // database file's permissions.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| OpenError::Permissions(path.display().to_string(), e))?;
        }
        conn.pragma_update(None, "application_id", APPLICATION_ID)?;
        let keying = match passphrase {
            Some(_) => Keying::Encrypted,
            None => Keying::Plain,
        };
        Self::setup(conn, path, keying)
    }

    /// Opens an existing store.
    pub fn open(path: &Path) -> Result<Store, OpenError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Self::setup(conn, path, Keying::Plain)
    }

    /// Opens an existing encrypted store.
    pub fn open_encrypted(path: &Path, passphrase: &Passphrase) -> Result<Store, OpenError> {
        if passphrase.is_empty() {
            return Err(OpenError::EmptyPassphrase);
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.pragma_update(None, "key", &passphrase.0)?;
        quiet_cipher(&conn);
        match Self::setup(conn, path, Keying::Encrypted) {
            Err(OpenError::NotADatabase(_)) => Err(OpenError::WrongPassphrase),
            other => other,
        }
    }

    fn setup(conn: Connection, path: &Path, keying: Keying) -> Result<Store, OpenError> {
        let shown = path.display().to_string();
        conn.busy_timeout(Duration::from_secs(30))?;
        let app_id: i64 = match conn.pragma_query_value(None, "application_id", |r| r.get(0)) {
            Ok(v) => v,
            Err(e) if is_not_a_database(&e) => return Err(OpenError::NotADatabase(shown)),
            Err(e) => return Err(e.into()),
        };
        // Temporary tables and indexes stay in memory: nothing unencrypted reaches disk.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        if app_id != APPLICATION_ID {
            return Err(OpenError::Foreign(shown));
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: in WAL mode this fsyncs the WAL on every commit, so a commit survives power
        // loss (NORMAL would not).
        conn.pragma_update(None, "synchronous", "FULL")?;
        // A sync stores pages of up to 2,000 changes in one transaction: give it room
        // (8 MiB) so that it does not spill to the WAL half-way, and let the WAL grow to
        // ~32 MiB between checkpoints (each checkpoint then copies a page once, not once
        // per transaction that touched it).
        conn.pragma_update(None, "cache_size", -8192)?;
        conn.pragma_update(None, "wal_autocheckpoint", 8000)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut store = Store { conn };
        store.migrate(keying)?;
        Ok(store)
    }

    fn migrate(&mut self, keying: Keying) -> Result<(), OpenError> {
        // Most opens find the schema current: check without taking the write lock, so
        // that a read-only command never waits for a long write of another process.
        let current: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        if current == MIGRATIONS.len() as i64 {
            return Ok(());
        }
        // A migration that rebuilds a table (7, 8) drops the old one inside the migration's
        // transaction, and SQLite keeps a statement journal of every page the drop frees:
        // in memory that is about the table's size again (720 MB of peak RSS for a
        // 1,000,000-document station). A plain store's temporary files hold nothing the
        // database does not, so they go to disk while migrating; an encrypted store's
        // stay in memory.
        if keying == Keying::Plain {
            self.conn.pragma_update(None, "temp_store", "FILE")?;
        }
        // A migration that rebuilds a table others refer to (9: `docs`) drops it before
        // its copy takes its name, which foreign keys would refuse half-way. They are off
        // while migrating (a no-op inside a transaction, so it is set around it), and the
        // migrated schema is checked whole before it commits (`foreign_key_check`).
        self.conn.pragma_update(None, "foreign_keys", "OFF")?;
        let migrated = self.migrate_in_one_transaction();
        self.conn.pragma_update(None, "foreign_keys", "ON")?;
        if keying == Keying::Plain {
            self.conn.pragma_update(None, "temp_store", "MEMORY")?;
        }
        migrated
    }

    fn migrate_in_one_transaction(&mut self) -> Result<(), OpenError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let target = MIGRATIONS.len() as i64;
        if version > target {
            return Err(OpenError::TooNew(version));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        let broken: Option<String> = tx
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()?;
        if let Some(table) = broken {
            return Err(OpenError::BrokenReference(table));
        }
        tx.commit()?;
        Ok(())
    }

    /// Starts a write transaction that holds the write lock from its first statement
    /// (`BEGIN IMMEDIATE`), so that what it reads is still the latest when it commits.
    pub fn write(&mut self) -> rusqlite::Result<Transaction<'_>> {
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
    }

    /// The connection, for reads.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Tunes this connection for a long-running process (`serve`) that checkpoints the WAL
    /// in the background ([`Store::checkpoint`]): an automatic checkpoint only as a safety
    /// net far beyond the usual one, so that commits on the sync path do not copy pages
    /// back.
    ///
    /// It also sets SQLite's process-wide soft heap limit (`DAEMON_HEAP_LIMIT`): however
    /// many peers sync at once, their connections' page caches together give pages back
    /// beyond it, so the station's memory does not grow with the number of peers.
    pub fn tune_for_daemon(&self) -> rusqlite::Result<()> {
        self.conn
            .pragma_update(None, "soft_heap_limit", DAEMON_HEAP_LIMIT)?;
        self.conn
            .pragma_update(None, "wal_autocheckpoint", DAEMON_AUTOCHECKPOINT)
    }

    /// Gives this connection the larger page cache of one that `serve` keeps open for
    /// reuse (a few of them: the memory stays bounded).
    pub fn keep_warm(&self) -> rusqlite::Result<()> {
        self.conn
            .pragma_update(None, "cache_size", -DAEMON_CACHE_KIB)
    }

    /// Copies what it can of the WAL back into the database without waiting for readers
    /// or writers (`PRAGMA wal_checkpoint(PASSIVE)`). Returns the WAL's frames and how
    /// many of them are now in the database.
    pub fn checkpoint(&self) -> rusqlite::Result<(i64, i64)> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(1)?, r.get(2)?))
            })
    }

    /// Reads one `meta` value.
    pub fn meta(&self, key: &str) -> rusqlite::Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
    }
}

/// Page cache of a connection that `serve` keeps open for reuse (KiB).
const DAEMON_CACHE_KIB: i64 = 16 * 1024;
/// SQLite's soft heap limit in a process that serves (bytes): all its connections' page
/// caches and other SQLite memory together.
const DAEMON_HEAP_LIMIT: i64 = 64 << 20;
/// WAL pages after which such a connection checkpoints by itself (~256 MiB), should the
/// background checkpoints not keep up.
const DAEMON_AUTOCHECKPOINT: i64 = 65_536;

/// Sets one `meta` value inside a transaction.
pub fn set_meta(tx: &Transaction<'_>, key: &str, value: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO meta(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

/// SQLCipher logs decryption failures (a wrong passphrase) to stderr itself; the command
/// reports them in its own one line. (Set after keying: SQLCipher sets its default log
/// level when the key activates it.)
fn quiet_cipher(conn: &Connection) {
    let _: rusqlite::Result<String> =
        conn.query_row("PRAGMA cipher_log_level = NONE", [], |r| r.get(0));
}

fn is_not_a_database(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::NotADatabase
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::home::{InitConfig, InitSeed, Node, STORE_FILE};
    use crate::model::Status;
    use crate::query::{TicketFilter, VisitFilter};
    use crate::records::{NewTicket, NewVisit, TicketUpdate};
    use yizhan_protocol::RecordKind;

    /// Ids of the documents `conn` finds in (the large index, the small one).
    fn where_ids_are(conn: &Connection) -> (i64, i64) {
        let count = |table: &str| -> i64 {
            conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        (count("doc_ids"), count("doc_ids_new"))
    }

    /// New documents' ids go to the small index; settling moves them all to the large one.
    /// Before and after, every record is found by id and by prefix, listed, shown, edited
    /// and verified, and an edit never makes a second document.
    #[test]
    fn settled_and_new_ids_find_the_same_records() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let config = InitConfig {
            name: "王芳".into(),
            station: true,
            encrypt: None,
        };
        let mut node = Node::init(&home, &config, InitSeed { key: [4; 32] }).unwrap();
        let visit = |i: usize| NewVisit {
            household: format!("幸福里 {i} 号"),
            grid: Some("g00".into()),
            ..NewVisit::default()
        };
        let first = node
            .add_visits(&(0..30).map(visit).collect::<Vec<_>>())
            .unwrap();
        // Each visit names a new household: 30 visits and 30 households.
        assert_eq!(where_ids_are(node.store().conn()), (0, 60));
        {
            let tx = node.store_mut().write().unwrap();
            assert_eq!(settle_doc_ids(&tx).unwrap(), 60);
            tx.commit().unwrap();
        }
        assert_eq!(where_ids_are(node.store().conn()), (60, 0));
        let second = node
            .add_visits(&(30..50).map(visit).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(where_ids_are(node.store().conn()), (60, 40));

        for id in first.iter().chain(&second) {
            let text = id.to_string();
            assert_eq!(node.resolve(RecordKind::Visit, &text[..10]).unwrap(), *id);
            assert!(node.show_visit(*id).is_ok());
        }
        // An edit of a settled record and of a new one updates them in place.
        for id in [first[3], second[3]] {
            let edit = crate::records::VisitEdit {
                note: Some("已回访".into()),
                ..Default::default()
            };
            node.edit_visit(id, &edit).unwrap();
        }
        assert_eq!(where_ids_are(node.store().conn()), (60, 40));
        assert_eq!(node.list_visits(&VisitFilter::default()).unwrap().len(), 50);
        let report = node.verify().unwrap();
        // 50 visits, 2 edits, and the 50 households the visits named.
        assert_eq!((report.changes, report.bad), (102, 0), "{report:?}");
    }

    /// The small index is settled when a document's number reaches a multiple of
    /// [`settle_every`], in the transaction that adds it; the spacing grows with the store.
    #[test]
    fn new_ids_are_settled_at_a_spacing_that_grows_with_the_store() {
        const SETTLE_EVERY: i64 = SETTLE_MIN as i64;
        for (docno, every) in [
            (1, SETTLE_EVERY),
            (100_000, SETTLE_EVERY),
            (300_000, 32_768),
            (1_000_000, 65_536),
            (10_000_000, SETTLE_MAX as i64),
        ] {
            assert_eq!(settle_every(docno), every, "at document {docno}");
        }
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::create(&dir.path().join("s.db")).unwrap();
        let tx = store.write().unwrap();
        for docno in SETTLE_EVERY - 3..SETTLE_EVERY + 2 {
            index_new_doc(&tx, &docno.to_be_bytes(), docno).unwrap();
            let expected = if docno < SETTLE_EVERY {
                (0, docno - (SETTLE_EVERY - 4))
            } else {
                (4, docno - SETTLE_EVERY)
            };
            assert_eq!(where_ids_are(&tx), expected, "after document {docno}");
        }
        tx.commit().unwrap();
    }

    /// Migrations 7 to 9 rebuild `records`, `changes` and `docs`, number the documents and
    /// index their ids: a store of schema 6 holding records of one and of several changes
    /// comes out with every record and change, verifies, resolves prefixes, and takes new
    /// records after the old ones.
    #[test]
    fn migration_10_forgets_addresses_that_may_be_ephemeral_ports() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let config = InitConfig {
            name: "幸福驿站".into(),
            station: true,
            encrypt: None,
        };
        drop(Node::init(&home, &config, InitSeed { key: [5; 32] }).unwrap());
        {
            // The store as migration 9 left it, with a peer noted where its sync came from.
            let c = Connection::open(home.join(STORE_FILE)).unwrap();
            c.execute_batch(
                "DROP TRIGGER record_moved; DROP TABLE moves; DROP TABLE purged;
                 DROP INDEX records_by_household; DROP INDEX records_by_due;
                 ALTER TABLE records DROP COLUMN household; ALTER TABLE records DROP COLUMN due_ms;
                 ALTER TABLE records DROP COLUMN last_ms;
                 ALTER TABLE records DROP COLUMN every_days; ALTER TABLE records DROP COLUMN tags;
                 ALTER TABLE records DROP COLUMN search;
                 PRAGMA user_version = 9;
                 INSERT INTO peers(device, addr, last_sync) VALUES (x'01', '127.0.0.1:53124', 1);",
            )
            .unwrap();
        }
        let node = Node::open(&home).unwrap();
        let conn = node.store().conn();
        let addr: Option<String> = conn
            .query_row("SELECT addr FROM peers WHERE device = x'01'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(addr, None);
        let made: i64 = conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM moves) + (SELECT COUNT(*) FROM purged)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(made, 0);
    }

    /// The SQLite plan of `sql`, one line per step.
    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let steps: Vec<String> = stmt
            .query_map([], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        steps.join("\n")
    }

    /// A store as migration 11 left it gets the indexes of the daily reads, and SQLite
    /// answers those reads from them rather than by a scan of every record.
    #[test]
    fn migration_12_indexes_the_daily_reads() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let config = InitConfig {
            name: "幸福驿站".into(),
            station: true,
            encrypt: None,
        };
        let mut node = Node::init(&home, &config, InitSeed { key: [6; 32] }).unwrap();
        let visits: Vec<NewVisit> = (0..20)
            .map(|i| NewVisit {
                household: format!("和平里 {i} 号"),
                grid: Some(format!("g{:02}", i % 2)),
                ..NewVisit::default()
            })
            .collect();
        node.add_visits(&visits).unwrap();
        let listed = |node: &Node| {
            node.list_visits(&VisitFilter {
                grid: Some("g01".into()),
                ..VisitFilter::default()
            })
            .unwrap()
        };
        let before = listed(&node);
        assert_eq!(before.len(), 10);
        drop(node);
        {
            let c = Connection::open(home.join(STORE_FILE)).unwrap();
            c.execute_batch(
                "DROP INDEX records_in_conflict; DROP INDEX records_by_grid;
                 CREATE INDEX records_by_grid ON records(grid);
                 PRAGMA user_version = 11;",
            )
            .unwrap();
        }
        let mut node = Node::open(&home).unwrap();
        assert_eq!(listed(&node), before);
        assert_eq!(node.record_counts().unwrap(), (0, 20));
        // The counts follow records made, and dropped, after the migration.
        node.add_visit(&NewVisit {
            household: "和平里 20 号".into(),
            grid: Some("g00".into()),
            ..NewVisit::default()
        })
        .unwrap();
        let tickets: Vec<NewTicket> = (0..3)
            .map(|i| NewTicket {
                title: format!("楼道灯 {i}"),
                grid: Some("g00".into()),
                ..NewTicket::default()
            })
            .collect();
        node.open_tickets(&tickets).unwrap();
        assert_eq!(node.record_counts().unwrap(), (3, 21));
        node.store()
            .conn()
            .execute(
                "DELETE FROM records WHERE docno = (SELECT MIN(docno) FROM records WHERE kind = 1)",
                [],
            )
            .unwrap();
        assert_eq!(node.record_counts().unwrap(), (3, 20));
        let node = node;
        let conn = node.store().conn();
        let uses = |sql: &str, index: &str| {
            let plan = plan(conn, sql);
            assert!(plan.contains(index), "{sql}:\n{plan}");
            assert!(!plan.contains("SCAN records\n") && !plan.ends_with("SCAN records"));
        };
        uses(
            "SELECT COALESCE(SUM(conflicts), 0) FROM records WHERE conflicts > 0",
            "records_in_conflict",
        );
        uses(
            "SELECT doc_id FROM records WHERE conflicts > 0 ORDER BY kind, at_ms, doc_id",
            "records_in_conflict",
        );
        uses(
            "SELECT summary FROM records WHERE kind = 1 AND grid = 'g01' AND at_ms >= 0
             ORDER BY at_ms, doc_id",
            "records_by_grid (grid=? AND kind=? AND at_ms>?)",
        );
        uses(
            "SELECT summary FROM records WHERE kind = 2 AND status = 'open' AND grid = 'g01'
             ORDER BY at_ms, doc_id",
            "records_by_grid (grid=? AND kind=?)",
        );
    }

    #[test]
    fn migrations_from_6_keep_every_record_and_change() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let config = InitConfig {
            name: "王芳".into(),
            station: true,
            encrypt: None,
        };
        let mut node = Node::init(&home, &config, InitSeed { key: [3; 32] }).unwrap();
        let visits: Vec<NewVisit> = (0..40)
            .map(|i| NewVisit {
                household: format!("和平里 {i} 号"),
                grid: Some("g00".into()),
                ..NewVisit::default()
            })
            .collect();
        node.add_visits(&visits).unwrap();
        let tickets: Vec<NewTicket> = (0..15)
            .map(|i| NewTicket {
                title: format!("楼道灯 {i}"),
                grid: Some("g00".into()),
                ..NewTicket::default()
            })
            .collect();
        for id in node.open_tickets(&tickets).unwrap() {
            let update = TicketUpdate {
                status: Some(Status::InProgress),
                ..TicketUpdate::default()
            };
            node.update_ticket(id, &update).unwrap();
            node.comment_ticket(id, "已联系物业").unwrap();
        }
        let listed = |node: &Node| {
            (
                node.list_visits(&VisitFilter::default()).unwrap(),
                node.list_tickets(&TicketFilter::default()).unwrap(),
            )
        };
        let before = listed(&node);
        // The visits' households are left out of the old store below: schema 6 had none.
        let changes_before = node.verify().unwrap().changes - 40;
        assert_eq!(changes_before, 40 + 15 * 3);
        drop(node);

        // The same rows in a store made by migrations 1 to 6.
        let store = home.join(STORE_FILE);
        let old = dir.path().join("v6.db");
        {
            let c = Connection::open(&old).unwrap();
            c.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            for m in &MIGRATIONS[..6] {
                c.execute_batch(m).unwrap();
            }
            c.execute("ATTACH ?1 AS v7", [store.to_str().unwrap()])
                .unwrap();
            c.execute_batch(
                "DELETE FROM main.meta;
                 INSERT INTO main.meta SELECT * FROM v7.meta;
                 INSERT INTO main.members SELECT * FROM v7.members;
                 INSERT INTO main.links SELECT * FROM v7.links;
                 INSERT INTO main.docs(rowid, doc_id, kind, author, nonce, snapshot, heads,
                                       updated_at)
                     SELECT docno, doc_id, kind, author, nonce, snapshot, heads, updated_at
                     FROM v7.docs WHERE kind != 3;
                 INSERT INTO main.changes(rowid, hash, doc_id, actor, seq, signer, signature,
                                          bytes, received_at, lseq, origin)
                     SELECT rowid, hash, doc_id, actor, seq, signer, signature, bytes,
                            received_at, lseq, origin
                     FROM v7.changes
                     WHERE doc_id NOT IN (SELECT doc_id FROM v7.docs WHERE kind = 3);
                 INSERT INTO main.records(doc_id, id, kind, grid, category, author, status,
                                          assignee, at_ms, summary, conflicts)
                     SELECT doc_id, lower(hex(doc_id)), kind, grid, category, author, status,
                            assignee, at_ms, summary, conflicts
                     FROM v7.records WHERE kind != 3 ORDER BY docno;
                 PRAGMA main.user_version = 6;",
            )
            .unwrap();
            c.execute("DETACH v7", []).unwrap();
        }
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", store.display()));
        }
        std::fs::rename(&old, &store).unwrap();

        let mut node = Node::open(&home).unwrap();
        let version: i64 = node
            .store()
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        assert_eq!(listed(&node), before);
        // Opening it upgrades it: the node makes the 40 households its visits name.
        let report = node.verify().unwrap();
        assert_eq!(
            (report.changes, report.bad),
            (changes_before + 40, 0),
            "{report:?}"
        );
        for t in &before.1 {
            let id = t.id.to_string();
            assert_eq!(
                node.resolve(RecordKind::Ticket, &id[..8])
                    .unwrap()
                    .to_string(),
                id
            );
        }
        // A new record is numbered after the migrated ones, and listed with them.
        let new = node
            .add_visit(&NewVisit {
                household: "和平里 99 号".into(),
                grid: Some("g00".into()),
                ..NewVisit::default()
            })
            .unwrap();
        let docno = |id: yizhan_protocol::DocId| -> i64 {
            node.store()
                .conn()
                .query_row(
                    "SELECT docno FROM doc_index WHERE doc_id = ?1",
                    [id.as_bytes().as_slice()],
                    |r| r.get(0),
                )
                .unwrap()
        };
        let highest: i64 = node
            .store()
            .conn()
            .query_row(
                "SELECT MAX(docno) FROM docs WHERE doc_id != ?1",
                [new.as_bytes().as_slice()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(docno(new), highest + 1);
        // The migrated ids are in the large index; the new ones in the small one: the
        // households the upgrade made, the new visit and its household.
        assert_eq!(where_ids_are(node.store().conn()), (55, 42));
        assert_eq!(listed(&node).0.len(), 41);
        assert_eq!(node.verify().unwrap().bad, 0);
    }
}
pub(crate) mod docs;
pub use docs::DOCUMENT_BYTES_SQL;

//! What the targets share: the fixed test keys and clock, the panic accounting, a reader
//! for structured inputs, and making a node with a fixed key.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use yizhan_node::Node;
use yizhan_node::{InitConfig, InitSeed};
use yizhan_protocol::{DeviceKey, SiteId};

/// The fixed test keys: the site's root station, two volunteers (the second is revoked in
/// the ingest target's store) and a device of no site.
pub mod keys {
    use yizhan_protocol::DeviceKey;

    /// Seed of the root station's key.
    pub const ROOT: [u8; 32] = [0x11; 32];
    /// Seed of volunteer A's key.
    pub const VOLUNTEER: [u8; 32] = [0x22; 32];
    /// Seed of volunteer B's key (revoked in the ingest store).
    pub const REVOKED: [u8; 32] = [0x33; 32];
    /// Seed of a device that belongs to no site.
    pub const OUTSIDER: [u8; 32] = [0x44; 32];

    /// The four keys, by index (inputs pick signers by `index % 4`).
    pub fn all() -> [DeviceKey; 4] {
        [ROOT, VOLUNTEER, REVOKED, OUTSIDER].map(DeviceKey::from_seed)
    }
}

/// The test site (named by [`keys::ROOT`]).
pub fn site() -> SiteId {
    SiteId::for_root(DeviceKey::from_seed(keys::ROOT).device_id())
}

/// A fixed "now" for certificate checks (2026-01-01), so that runs are reproducible.
pub const NOW_MS: i64 = 1_767_225_600_000;

static CONTAINED: AtomicUsize = AtomicUsize::new(0);
static SEEN_PANICS: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Replaces the panic hook (once per process): every panic is counted, and the first one
/// at each source location is printed with its message. Contained panics are then not
/// fatal; one that escapes a body still fails it (libFuzzer's harness aborts on it, and
/// the smoke test's `catch_unwind` reports it).
pub fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            CONTAINED.fetch_add(1, Ordering::Relaxed);
            let location = info
                .location()
                .map_or_else(|| "?".to_string(), |l| format!("{}:{}", l.file(), l.line()));
            let mut seen = SEEN_PANICS.lock().unwrap_or_else(|e| e.into_inner());
            if seen
                .get_or_insert_with(HashSet::new)
                .insert(location.clone())
            {
                let payload = info.payload();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                eprintln!("[fuzz] panic at {location}: {message}");
            }
        }));
    });
}

/// How many panics this process has seen (contained ones included).
pub fn contained_panics() -> usize {
    CONTAINED.load(Ordering::Relaxed)
}

/// Reads a fuzz input front to back; past the end it yields zeros and empty slices, so
/// every input means something.
pub(super) struct Input<'a>(pub(super) &'a [u8]);

impl<'a> Input<'a> {
    pub(super) fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    pub(super) fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub(super) fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for b in &mut out {
            *b = self.u8();
        }
        out
    }

    pub(super) fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A new node in `home` with the key of `seed`.
pub(super) fn init_node(home: &Path, name: &str, station: bool, seed: [u8; 32]) -> Node {
    Node::init(
        home,
        &InitConfig {
            name: name.into(),
            station,
            encrypt: None,
        },
        InitSeed { key: seed },
    )
    .expect("init")
}

//! Device and site identities.
//!
//! A device is its ed25519 key pair. Its public half, the [`DeviceId`], is printed as 64
//! lowercase hex characters: stable, case-insensitive on input, and safe to copy and paste
//! (no ambiguous characters, one double-click selects it). The secret half, [`DeviceKey`],
//! never prints: its `Debug` redacts it and it has no `Display`.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Why an id given as text was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    /// The text is not lowercase or uppercase hexadecimal.
    #[error("{what} must be hexadecimal")]
    NotHex {
        /// Which kind of id was expected.
        what: &'static str,
    },
    /// The text has the wrong length.
    #[error("{what} must be {expected} hex characters, got {got}")]
    Length {
        /// Which kind of id was expected.
        what: &'static str,
        /// Expected number of hex characters.
        expected: usize,
        /// Number of characters given.
        got: usize,
    },
    /// The bytes are not a usable ed25519 public key (not a curve point, or a weak key).
    #[error("device id is not a valid ed25519 public key")]
    BadKey,
}

pub(crate) fn parse_hex<const N: usize>(
    what: &'static str,
    s: &str,
) -> Result<[u8; N], ParseIdError> {
    let s = s.trim();
    if s.len() != N * 2 {
        return Err(ParseIdError::Length {
            what,
            expected: N * 2,
            got: s.chars().count(),
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| ParseIdError::NotHex { what })?;
    Ok(out)
}

/// The public identity of a device: its ed25519 verifying key.
///
/// Construction checks that the bytes are a valid, non-weak curve point, so a `DeviceId`
/// can always verify signatures.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId([u8; 32]);

impl DeviceId {
    /// Length of a device id in bytes.
    pub const LEN: usize = 32;

    /// Accepts 32 bytes as a device id if they are a valid, non-weak ed25519 public key.
    ///
    /// The check decompresses and recompresses the point (two field exponentiations, about
    /// as long as hashing a few kilobytes), and every received record header and stored row
    /// names a device: ids already accepted on this thread are remembered (at most
    /// [`CHECKED_IDS`] of them), so a page of a thousand changes by one author checks the
    /// author once. The answer for given bytes never changes, so remembering it changes no
    /// result.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, ParseIdError> {
        if CHECKED.with(|c| c.borrow().contains(&bytes)) {
            return Ok(DeviceId(bytes));
        }
        let id = Self::check(bytes)?;
        CHECKED.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= CHECKED_IDS {
                c.clear();
            }
            c.insert(bytes);
        });
        Ok(id)
    }

    fn check(bytes: [u8; 32]) -> Result<Self, ParseIdError> {
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| ParseIdError::BadKey)?;
        if key.is_weak() {
            return Err(ParseIdError::BadKey);
        }
        // One point, one id: a non-canonical encoding (y ≥ p) of a valid point would let
        // the holder of one key sign as a second, different device id.
        if key.to_edwards().compress().to_bytes() != bytes {
            return Err(ParseIdError::BadKey);
        }
        Ok(DeviceId(bytes))
    }

    /// Accepts a byte slice as a device id (see [`DeviceId::from_bytes`]).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ParseIdError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| ParseIdError::Length {
            what: "device id",
            expected: 64,
            got: bytes.len() * 2,
        })?;
        Self::from_bytes(arr)
    }

    /// The raw public key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The ed25519 verifying key (decompressed anew: see [`KeyCache`] for many checks).
    pub fn verifying_key(&self) -> VerifyingKey {
        // Checked on construction.
        VerifyingKey::from_bytes(&self.0).expect("DeviceId holds a valid key")
    }

    /// Strictly verifies `signature` over `message` (`verify_strict`: rejects small-order
    /// keys and non-canonical signatures).
    pub fn verify_strict(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let sig = Signature::from_bytes(signature);
        self.verifying_key().verify_strict(message, &sig).is_ok()
    }
}

/// How many accepted device ids [`DeviceId::from_bytes`] remembers per thread.
pub const CHECKED_IDS: usize = 4096;

std::thread_local! {
    /// Device ids [`DeviceId::from_bytes`] accepted on this thread.
    static CHECKED: std::cell::RefCell<std::collections::HashSet<[u8; 32]>> =
        std::cell::RefCell::new(std::collections::HashSet::new());
}

/// Remembers device ids already checked, so that a batch of changes by a few authors
/// decompresses each author's key once.
#[derive(Debug, Default)]
pub struct DeviceIdCache(std::collections::HashMap<[u8; 32], DeviceId>);

impl DeviceIdCache {
    /// The device id for `bytes`, checked the first time they are seen.
    pub fn get(&mut self, bytes: &[u8]) -> Result<DeviceId, ParseIdError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| ParseIdError::Length {
            what: "device id",
            expected: 64,
            got: bytes.len() * 2,
        })?;
        if let Some(id) = self.0.get(&arr) {
            return Ok(*id);
        }
        let id = DeviceId::from_bytes(arr)?;
        if self.0.len() < 4096 {
            self.0.insert(arr, id);
        }
        Ok(id)
    }
}

/// Decompressed verifying keys of devices already seen, so that checking many signatures
/// by a few authors decompresses each author's key once.
#[derive(Debug, Default)]
pub struct KeyCache(std::collections::HashMap<DeviceId, VerifyingKey>);

impl KeyCache {
    /// Strictly verifies `signature` over `message` by `device`.
    pub fn verify_strict(
        &mut self,
        device: DeviceId,
        message: &[u8],
        signature: &[u8; 64],
    ) -> bool {
        if self.0.len() >= 4096 {
            self.0.clear();
        }
        let key = *self
            .0
            .entry(device)
            .or_insert_with(|| device.verifying_key());
        key.verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", &hex::encode(self.0)[..12])
    }
}

impl FromStr for DeviceId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_bytes(parse_hex::<32>("device id", s)?)
    }
}

/// A device's secret signing key. It never prints: `Debug` shows only the public id.
pub struct DeviceKey(SigningKey);

impl DeviceKey {
    /// Makes the key from a 32-byte secret seed. The caller supplies the randomness.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        DeviceKey(SigningKey::from_bytes(&seed))
    }

    /// The secret seed, for writing to the key file. Handle with care.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// This device's public identity.
    pub fn device_id(&self) -> DeviceId {
        DeviceId(self.0.verifying_key().to_bytes())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceKey(<secret> of {:?})", self.device_id())
    }
}

/// The identity of a site (one station and its volunteers): 16 random bytes, printed as
/// 32 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteId([u8; 16]);

impl SiteId {
    /// Makes a site id from 16 random bytes supplied by the caller.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        SiteId(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SiteId({self})")
    }
}

impl FromStr for SiteId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SiteId(parse_hex::<16>("site id", s)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_round_trips_as_hex() {
        let key = DeviceKey::from_seed([7; 32]);
        let id = key.device_id();
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<DeviceId>().unwrap(), id);
        assert_eq!(text.to_uppercase().parse::<DeviceId>().unwrap(), id);
    }

    #[test]
    fn secret_never_prints() {
        let key = DeviceKey::from_seed([9; 32]);
        let debug = format!("{key:?}");
        assert!(!debug.contains(&hex::encode([9u8; 32])));
        assert!(!debug.contains(&hex::encode(key.seed())));
        assert!(debug.contains("secret"));
    }

    #[test]
    fn weak_and_invalid_keys_are_refused() {
        // The identity point (small order) is weak.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(DeviceId::from_bytes(identity), Err(ParseIdError::BadKey));
        assert!("zz".parse::<DeviceId>().is_err());
        // Non-canonical encodings (y = p + k) of points that are on the curve and not of
        // small order: the decoder takes them, the id does not.
        let mut taken = 0;
        for k in 0u8..19 {
            let mut bytes = [0xff; 32];
            bytes[0] = 0xed + k;
            bytes[31] = 0x7f;
            if VerifyingKey::from_bytes(&bytes).is_ok_and(|v| !v.is_weak()) {
                taken += 1;
                assert_eq!(DeviceId::from_bytes(bytes), Err(ParseIdError::BadKey));
            }
        }
        assert!(taken > 0, "no non-canonical point found to test");
        assert!("ab".repeat(31).parse::<DeviceId>().is_err());
    }
}

macro_rules! serde_as_byte_array {
    ($ty:ty, $n:literal, $make:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serde_bytes::ByteArray::<$n>::new(*self.as_bytes()).serialize(s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let bytes = serde_bytes::ByteArray::<$n>::deserialize(d)?.into_array();
                #[allow(clippy::redundant_closure_call)]
                ($make)(bytes).map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_as_byte_array;

serde_as_byte_array!(DeviceId, 32, DeviceId::from_bytes);
serde_as_byte_array!(SiteId, 16, |b| Ok::<_, ParseIdError>(SiteId::from_bytes(b)));

impl SiteId {
    /// The site whose root of trust is `root` (a station's device): the first 16 bytes of
    /// SHA-256 over `"yizhan-site-v1\n" || root`. A site id names its root key, so a
    /// certificate can be checked against the site with nothing else to trust.
    pub fn for_root(root: DeviceId) -> SiteId {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(b"yizhan-site-v1\n")
            .chain_update(root.as_bytes())
            .finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        SiteId(id)
    }
}

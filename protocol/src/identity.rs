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
    /// result. This is the one cache of accepted ids: callers keep none of their own.
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

/// Decompressed verifying keys of devices already seen, so that checking many signatures
/// by a few authors decompresses each author's key once. The caller keeps it for as long
/// as the authors are likely to recur (a page, an ingest).
#[derive(Debug, Default)]
pub struct KeyCache(std::collections::HashMap<DeviceId, CachedKey>);

/// A device's decompressed key, and whether its signatures may be checked in a batch.
#[derive(Debug, Clone, Copy)]
struct CachedKey {
    key: VerifyingKey,
    /// The key is not of small order and has no small-order component, so that a batch
    /// equation over it says what `verify_strict` says (see [`KeyCache::verify_strict_many`]).
    /// Learnt the first time the key's signatures are many enough for a batch: the check
    /// costs about as much as a signature.
    batchable: Option<bool>,
}

/// Most keys a [`KeyCache`] holds; it starts afresh when full.
const CACHED_KEYS: usize = 4096;

/// Fewest signatures [`KeyCache::verify_strict_many`] checks as one batch; fewer are
/// checked one by one.
pub const BATCH_MIN: usize = 4;

impl KeyCache {
    fn key(&mut self, device: DeviceId) -> &mut CachedKey {
        if self.0.len() >= CACHED_KEYS && !self.0.contains_key(&device) {
            self.0.clear();
        }
        self.0.entry(device).or_insert_with(|| CachedKey {
            key: device.verifying_key(),
            batchable: None,
        })
    }

    fn batchable(&mut self, device: DeviceId) -> Option<VerifyingKey> {
        let cached = self.key(device);
        let batchable = *cached.batchable.get_or_insert_with(|| {
            !cached.key.is_weak() && cached.key.to_edwards().is_torsion_free()
        });
        batchable.then_some(cached.key)
    }

    /// Strictly verifies `signature` over `message` by `device`, alone.
    fn verify_strict(&mut self, device: DeviceId, message: &[u8], signature: &[u8; 64]) -> bool {
        self.key(device)
            .key
            .verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    }

    /// Verifies many signatures, `(device, message, signature)`, and says for each whether
    /// it holds. With fewer than [`BATCH_MIN`] (one alone, in particular), each is checked
    /// alone with `verify_strict`. Otherwise those that may be are checked together with
    /// ed25519-dalek's `verify_batch` (about a third of the cost each on this project's
    /// machine); if the batch fails, every one of them is checked alone with
    /// `verify_strict`, which decides.
    ///
    /// A signature goes into the batch only when its key is batchable (checked once per
    /// key) and its `R` is a canonical encoding of a point that is not of small order
    /// (checked on the bytes). The batch then refuses whatever `verify_strict` refuses —
    /// a wrong key, message or `s`, a non-canonical `s` — except one kind of signature:
    /// one whose `R` is a valid signature's `R` plus a small-order point. Only the key's
    /// holder can make one, and the batch's random weights (derived from the batch's
    /// contents) cancel that small-order part with probability 1/8 to 1/2.
    /// `docs/protocol.md` ("Checking signatures in batches") says what that means.
    pub fn verify_strict_many(&mut self, items: &[(DeviceId, &[u8], &[u8; 64])]) -> Vec<bool> {
        let mut verdicts = vec![false; items.len()];
        if items.len() >= BATCH_MIN {
            let mut batch: Vec<usize> = Vec::with_capacity(items.len());
            let mut keys: Vec<VerifyingKey> = Vec::with_capacity(items.len());
            for (i, (device, _, signature)) in items.iter().enumerate() {
                if let Some(key) = self.batchable(*device)
                    && plain_r(signature)
                {
                    batch.push(i);
                    keys.push(key);
                }
            }
            if batch.len() >= BATCH_MIN {
                let messages: Vec<&[u8]> = batch.iter().map(|&i| items[i].1).collect();
                let signatures: Vec<Signature> = batch
                    .iter()
                    .map(|&i| Signature::from_bytes(items[i].2))
                    .collect();
                if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
                    for &i in &batch {
                        verdicts[i] = true;
                    }
                }
            }
        }
        // What the batch did not accept (left out of it, or in a batch that failed or was
        // too small to run) is decided alone.
        for ((device, message, signature), verdict) in items.iter().zip(&mut verdicts) {
            if !*verdict {
                *verdict = self.verify_strict(*device, message, signature);
            }
        }
        verdicts
    }
}

/// Whether a signature's `R` (its first 32 bytes) may go into a batch: the canonical
/// encoding of a point that is not of small order. Checked on the bytes alone, without
/// decompressing: a `y` coordinate below p = 2^255 - 19, and not the `y` of any of the
/// eight small-order points (with either sign bit, which also excludes the non-canonical
/// "negative zero" `x` of the two whose `x` is 0). Anything else is checked alone, by
/// `verify_strict`, so this only ever routes; it never accepts.
fn plain_r(signature: &[u8; 64]) -> bool {
    let mut y: [u8; 32] = signature[..32].try_into().expect("64 = 32 + 32");
    y[31] &= 0x7f;
    // y >= p: the 19 values from 2^255 - 19 to 2^255 - 1.
    let non_canonical = y[31] == 0x7f && y[1..31].iter().all(|&b| b == 0xff) && y[0] >= 0xed;
    !non_canonical && !small_order_ys().contains(&y)
}

/// The `y` coordinates (sign bit cleared) of the eight points of small order.
fn small_order_ys() -> &'static [[u8; 32]; 8] {
    static YS: std::sync::OnceLock<[[u8; 32]; 8]> = std::sync::OnceLock::new();
    YS.get_or_init(|| {
        curve25519_dalek::constants::EIGHT_TORSION.map(|p| {
            let mut y = p.compress().to_bytes();
            y[31] &= 0x7f;
            y
        })
    })
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

    /// ℓ, the order of the prime subgroup, little-endian.
    const ELL: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    /// `s + ℓ`: the same scalar, non-canonically encoded.
    fn non_canonical_s(signature: &[u8; 64]) -> [u8; 64] {
        let mut out = *signature;
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(signature[32 + i]) + u16::from(ELL[i]) + carry;
            out[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        out
    }

    /// A signature to check: by whom, over what.
    type Item = (DeviceId, Vec<u8>, [u8; 64]);

    /// A way to spoil a signature, and its name.
    type Spoil = (&'static str, fn(&mut Item));

    /// `n` signatures by three devices over distinct messages.
    fn signed(n: usize) -> Vec<Item> {
        let keys: Vec<DeviceKey> = (1..=3u8).map(|i| DeviceKey::from_seed([i; 32])).collect();
        (0..n)
            .map(|i| {
                let key = &keys[i % keys.len()];
                let message = format!("change {i}").into_bytes();
                let signature = key.sign(&message);
                (key.device_id(), message, signature)
            })
            .collect()
    }

    fn verdicts(items: &[Item]) -> Vec<bool> {
        let refs: Vec<(DeviceId, &[u8], &[u8; 64])> = items
            .iter()
            .map(|(d, m, s)| (*d, m.as_slice(), s))
            .collect();
        KeyCache::default().verify_strict_many(&refs)
    }

    fn one_by_one(items: &[Item]) -> Vec<bool> {
        items
            .iter()
            .map(|(d, m, s)| d.verify_strict(m, s))
            .collect()
    }

    #[test]
    fn a_batch_of_good_signatures_all_hold() {
        for n in [0, 1, BATCH_MIN - 1, BATCH_MIN, 100] {
            assert_eq!(verdicts(&signed(n)), vec![true; n], "{n} signatures");
        }
    }

    #[test]
    fn a_batch_refuses_exactly_what_verify_strict_refuses() {
        // Each kind of bad signature, alone in a batch of good ones and all together.
        let spoil: [Spoil; 6] = [
            ("another message", |item| item.1.push(b'!')),
            ("another signer", |item| {
                item.0 = DeviceKey::from_seed([9; 32]).device_id()
            }),
            ("a flipped bit of s", |item| item.2[40] ^= 1),
            ("a flipped bit of R", |item| item.2[3] ^= 1),
            ("s + ℓ (non-canonical s)", |item| {
                item.2 = non_canonical_s(&item.2)
            }),
            ("R of small order (the identity)", |item| {
                item.2[..32].copy_from_slice(&[
                    1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0, 0, 0,
                ]);
            }),
        ];
        let mut all = signed(40);
        for (k, (what, f)) in spoil.iter().enumerate() {
            let mut items = signed(40);
            f(&mut items[7]);
            let expected = one_by_one(&items);
            assert!(!expected[7], "{what}: verify_strict refuses it");
            assert_eq!(verdicts(&items), expected, "{what}");
            f(&mut all[5 * k + 2]);
        }
        let expected = one_by_one(&all);
        assert_eq!(expected.iter().filter(|ok| !**ok).count(), spoil.len());
        assert_eq!(verdicts(&all), expected);
    }

    #[test]
    fn random_damage_is_judged_as_verify_strict_judges_it() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for round in 0..50 {
            let mut items = signed(24);
            for _ in 0..rng.random_range(0..3) {
                let i = rng.random_range(0..items.len());
                let byte = rng.random_range(0..64);
                items[i].2[byte] ^= 1 << rng.random_range(0..8);
            }
            assert_eq!(verdicts(&items), one_by_one(&items), "round {round}");
        }
    }

    #[test]
    fn only_a_canonical_r_not_of_small_order_goes_into_a_batch() {
        let good = signed(1)[0].2;
        assert!(plain_r(&good));
        for point in curve25519_dalek::constants::EIGHT_TORSION {
            for sign in [0, 0x80] {
                let mut signature = good;
                signature[..32].copy_from_slice(&point.compress().to_bytes());
                signature[31] ^= signature[31] & 0x80 ^ sign;
                assert!(
                    !plain_r(&signature),
                    "{:?} with sign bit {sign:#x}",
                    &signature[..32]
                );
            }
        }
        // The 19 non-canonical encodings, y = p .. 2^255 - 1, with either sign bit.
        for low in 0xed..=0xffu8 {
            for top in [0x7f, 0xff] {
                let mut signature = good;
                signature[0] = low;
                signature[1..31].fill(0xff);
                signature[31] = top;
                assert!(!plain_r(&signature), "y byte 0 = {low:#x}");
            }
        }
        // y = p - 1 is canonical (it is -1, the y of a point of order 2, so refused for
        // that); y = p - 2 is canonical and of no small-order point.
        let mut signature = good;
        signature[0] = 0xeb;
        signature[1..31].fill(0xff);
        signature[31] = 0x7f;
        assert!(plain_r(&signature));
    }

    /// A signature by `seed`'s key over `message` whose `R` is `rB + T`, with `T` the
    /// point of order 8 `EIGHT_TORSION[1]`, and whose `s` is right for `rB`: what only the
    /// key's holder can make (docs/protocol.md §3.5).
    fn mixed_order_signature(seed: [u8; 32], message: &[u8], r: u64) -> [u8; 64] {
        use curve25519_dalek::{Scalar, constants};
        use sha2::Digest;
        let a = ed25519_dalek::hazmat::ExpandedSecretKey::from(&seed).scalar;
        let public = DeviceKey::from_seed(seed).device_id();
        let r = Scalar::from(r);
        let big_r =
            (constants::ED25519_BASEPOINT_POINT * r + constants::EIGHT_TORSION[1]).compress();
        let mut hash = sha2::Sha512::new();
        hash.update(big_r.as_bytes());
        hash.update(public.as_bytes());
        hash.update(message);
        let k = Scalar::from_bytes_mod_order_wide(&hash.finalize().into());
        let mut signature = [0; 64];
        signature[..32].copy_from_slice(big_r.as_bytes());
        signature[32..].copy_from_slice((r + k * a).as_bytes());
        signature
    }

    #[test]
    fn the_one_signature_a_batch_may_accept_and_verify_strict_refuses() {
        // The gap docs/protocol.md §3.5 describes, pinned: such a signature is refused by
        // `verify_strict` always, accepted by a batch about one time in eight (the weights
        // are multiples of 8), and never makes a good signature in its batch refused.
        let seed = [5; 32];
        let mut accepted = 0;
        for round in 0..400u64 {
            let mut items = signed(7);
            let message = format!("crafted {round}").into_bytes();
            let signature = mixed_order_signature(seed, &message, 1000 + round);
            let device = DeviceKey::from_seed(seed).device_id();
            assert!(!device.verify_strict(&message, &signature));
            assert!(plain_r(&signature), "it looks like any other R");
            items.push((device, message, signature));
            let verdicts = verdicts(&items);
            assert!(verdicts[..7].iter().all(|ok| *ok), "round {round}");
            accepted += usize::from(verdicts[7]);
        }
        assert!((20..=80).contains(&accepted), "accepted {accepted} of 400");
    }

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

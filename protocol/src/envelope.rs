//! The signed change envelope.
//!
//! Every Automerge change is stored and relayed exactly as its author signed it:
//!
//! ```text
//! SignedChange { doc: DocId, hash: ChangeHash, signer: DeviceId, signature: [u8; 64], bytes }
//! ```
//!
//! The signature is ed25519 over the [signing message](signing_message):
//!
//! ```text
//! "yizhan-change-v1\n" || site_id (16 bytes, all zero before the device joins a site)
//!                      || doc_id (16 bytes) || change_hash (32 bytes)
//! ```
//!
//! The domain tag keeps these signatures apart from every other signature a device key
//! makes; the site id and document id stop a signature from being replayed into another site
//! or document; the change hash (SHA-256 of the change chunk, computed by Automerge) binds
//! every byte of the change.
//!
//! **Actor binding**: the Automerge actor id of a change must be exactly the 32 bytes of the
//! signer's device id. A device therefore cannot write a change that claims another
//! device's actor, and the `(actor, seq)` of a change names the device that made it.
//!
//! [`SignedChange::verify_many`] checks all of this, for one envelope or many, and contains
//! any panic Automerge raises on malformed bytes. The signatures of many are checked in one
//! batch where they may be
//! ([`KeyCache::verify_strict_many`](crate::identity::KeyCache::verify_strict_many), whose
//! docs give the one kind of signature a batch may accept that `verify_strict` refuses);
//! one alone is checked with `verify_strict`.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::doc::DocId;
use crate::identity::{DeviceId, DeviceKey, SiteId};

/// Domain tag at the start of every change signing message.
pub const CHANGE_DOMAIN: &[u8] = b"yizhan-change-v1\n";

/// The largest change, in bytes, a node accepts.
pub const MAX_CHANGE_BYTES: usize = 1 << 20;

/// The SHA-256 hash Automerge gives a change.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ChangeHash(#[serde(with = "serde_bytes")] pub [u8; 32]);

impl fmt::Display for ChangeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ChangeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChangeHash({})", &hex::encode(self.0)[..12])
    }
}

impl From<automerge::ChangeHash> for ChangeHash {
    fn from(h: automerge::ChangeHash) -> Self {
        ChangeHash(h.0)
    }
}

impl From<ChangeHash> for automerge::ChangeHash {
    fn from(h: ChangeHash) -> Self {
        automerge::ChangeHash(h.0)
    }
}

/// The exact bytes a device signs for a change (see the module docs).
pub fn signing_message(site: Option<SiteId>, doc: DocId, hash: ChangeHash) -> [u8; 81] {
    let mut msg = [0u8; 81];
    msg[..17].copy_from_slice(CHANGE_DOMAIN);
    if let Some(site) = site {
        msg[17..33].copy_from_slice(site.as_bytes());
    }
    msg[33..49].copy_from_slice(doc.as_bytes());
    msg[49..81].copy_from_slice(&hash.0);
    msg
}

/// An Automerge change in its author's signed envelope, as stored and relayed.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedChange {
    /// The document the change belongs to.
    pub doc: DocId,
    /// The change's hash, as claimed by the sender.
    pub hash: ChangeHash,
    /// The device that signed the change (and whose actor id it must carry).
    pub signer: DeviceId,
    /// ed25519 signature over [`signing_message`].
    pub signature: [u8; 64],
    /// The raw (uncompressed) Automerge change chunk.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for SignedChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedChange")
            .field("doc", &self.doc)
            .field("hash", &self.hash)
            .field("signer", &self.signer)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Why a signed change was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The change is larger than [`MAX_CHANGE_BYTES`].
    #[error("change is {0} bytes, over the limit")]
    TooLarge(usize),
    /// The bytes are not one well-formed Automerge change chunk.
    #[error("malformed change: {0}")]
    Malformed(String),
    /// The bytes hash to something other than the claimed hash.
    #[error("change hash does not match its bytes")]
    HashMismatch,
    /// The change's actor is not the signer's device id.
    #[error("change actor is not bound to its signer")]
    ActorNotSigner,
    /// The signature does not verify strictly.
    #[error("bad signature")]
    BadSignature,
    /// The change declares more operations (or rows of any column) than
    /// [`MAX_CHANGE_OPS`](crate::columns::MAX_CHANGE_OPS); refused before decoding.
    #[error("change declares more than {0} operations")]
    TooManyOps(u64),
}

/// An envelope that did not verify, handed back with the reason.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}")]
pub struct Unverified {
    /// The envelope, as received.
    pub envelope: SignedChange,
    /// Why it was refused.
    pub error: VerifyError,
}

/// A change whose envelope verified: the decoded change, ready to apply.
#[derive(Debug, Clone)]
pub struct VerifiedChange {
    /// The envelope, as received.
    pub envelope: SignedChange,
    /// The decoded Automerge change.
    pub change: automerge::Change,
}

impl SignedChange {
    /// Signs a change that `key` made (with `key`'s device id as its actor).
    pub fn sign(
        key: &DeviceKey,
        site: Option<SiteId>,
        doc: DocId,
        change: &automerge::Change,
    ) -> Self {
        let hash = ChangeHash::from(change.hash());
        SignedChange {
            doc,
            hash,
            signer: key.device_id(),
            signature: key.sign(&signing_message(site, doc, hash)),
            bytes: change.raw_bytes().to_vec(),
        }
    }

    /// Re-signs this change for `site` with `key`, which must be its signer's key. Used when
    /// a device joins a site: its earlier changes were signed with no site.
    pub fn resign(&mut self, key: &DeviceKey, site: Option<SiteId>) {
        debug_assert_eq!(key.device_id(), self.signer);
        self.signature = key.sign(&signing_message(site, self.doc, self.hash));
    }

    /// Verifies envelopes for `site`: size, decoding (panics contained), hash, actor
    /// binding, and the strict signature. This is the one way a change is checked; one
    /// change is a batch of one.
    ///
    /// Each envelope comes with its decoding if the caller already made one (as
    /// [`crate::wire::WireChange::into_envelope`] does), so that it is not decoded again.
    /// That decoding must be of exactly the envelope's bytes (compared byte for byte), with
    /// the claimed hash and actor: one that is not is [`VerifyError::HashMismatch`], as if
    /// the bytes had not matched the hash.
    ///
    /// The signatures are checked through `keys`, each author's key decompressed once, by
    /// [`KeyCache::verify_strict_many`](crate::identity::KeyCache::verify_strict_many):
    /// together in one batch where they may be, and with `verify_strict` one by one when
    /// there are fewer than [`BATCH_MIN`](crate::identity::BATCH_MIN) to check. A single
    /// change is therefore always checked alone, strictly.
    ///
    /// The results are in the order of `items`; a refused envelope is handed back with why.
    pub fn verify_many(
        items: Vec<(SignedChange, Option<automerge::Change>)>,
        site: Option<SiteId>,
        keys: &mut crate::identity::KeyCache,
    ) -> Vec<Result<VerifiedChange, Box<Unverified>>> {
        // Everything but the signature first, one by one.
        let checked: Vec<(SignedChange, Result<automerge::Change, VerifyError>)> = items
            .into_iter()
            .map(|(envelope, decoded)| {
                let change = match decoded {
                    Some(change) => envelope.check_decoded(&change).map(|()| change),
                    None => envelope.check_bytes(),
                };
                (envelope, change)
            })
            .collect();
        let messages: Vec<[u8; 81]> = checked
            .iter()
            .map(|(env, _)| signing_message(site, env.doc, env.hash))
            .collect();
        let to_verify: Vec<(DeviceId, &[u8], &[u8; 64])> = checked
            .iter()
            .zip(&messages)
            .filter(|((_, change), _)| change.is_ok())
            .map(|((env, _), message)| (env.signer, message.as_slice(), &env.signature))
            .collect();
        let mut verdicts = keys.verify_strict_many(&to_verify).into_iter();
        checked
            .into_iter()
            .map(|(envelope, change)| {
                let error = match change {
                    Ok(change) if verdicts.next() == Some(true) => {
                        return Ok(VerifiedChange { envelope, change });
                    }
                    Ok(_) => VerifyError::BadSignature,
                    Err(error) => error,
                };
                Err(Box::new(Unverified { envelope, error }))
            })
            .collect()
    }

    /// The checks of [`SignedChange::verify_many`] but the signature, for an envelope given
    /// with its decoding: size, and that
    /// `change` is the decoding of exactly these bytes, with the claimed hash and actor.
    fn check_decoded(&self, change: &automerge::Change) -> Result<(), VerifyError> {
        if self.bytes.len() > MAX_CHANGE_BYTES {
            return Err(VerifyError::TooLarge(self.bytes.len()));
        }
        if change.raw_bytes() != self.bytes.as_slice()
            || ChangeHash::from(change.hash()) != self.hash
        {
            return Err(VerifyError::HashMismatch);
        }
        if change.actor_id().to_bytes() != self.signer.as_bytes() {
            return Err(VerifyError::ActorNotSigner);
        }
        Ok(())
    }

    /// Checks everything but the signature: size, decoding, hash and actor binding.
    pub fn check_bytes(&self) -> Result<automerge::Change, VerifyError> {
        if self.bytes.len() > MAX_CHANGE_BYTES {
            return Err(VerifyError::TooLarge(self.bytes.len()));
        }
        let change = decode_change(&self.bytes)?;
        if ChangeHash::from(change.hash()) != self.hash {
            return Err(VerifyError::HashMismatch);
        }
        if change.actor_id().to_bytes() != self.signer.as_bytes() {
            return Err(VerifyError::ActorNotSigner);
        }
        Ok(change)
    }
}

/// Decodes one Automerge change chunk from hostile bytes. Automerge may panic on some
/// malformed input; the panic is caught here and reported as [`VerifyError::Malformed`].
///
/// Only an uncompressed change chunk (what `raw_bytes` gives) with a right checksum is a
/// change. The chunk type is checked before decoding: Automerge would otherwise inflate a
/// compressed chunk with no bound (a 1 MiB chunk can hold about 1 GiB), or parse a whole
/// document only to refuse it. The checksum (chunk bytes 4..8) is covered neither by the
/// change hash nor so by the signature, and Automerge does not check it when it decodes a
/// change; but a change that waits for its dependencies is saved, as it came, in the
/// document's snapshot, and loading a snapshot does check it. Found by fuzzing (see
/// `docs/fuzzing.md`).
///
/// Then the chunk's cost is bounded before Automerge decodes it: the rows every column
/// declares are counted from the run headers ([`crate::columns::declared_ops`]), and a
/// change declaring more than [`MAX_CHANGE_OPS`](crate::columns::MAX_CHANGE_OPS)
/// operations, or more rows in any column, is [`VerifyError::TooManyOps`]. Otherwise a
/// chunk of two hundred bytes could make Automerge walk, and a document materialise,
/// millions of operations.
pub fn decode_change(bytes: &[u8]) -> Result<automerge::Change, VerifyError> {
    /// The chunk type of an uncompressed change (at offset 8, after magic and checksum).
    const CHANGE_CHUNK: u8 = 1;
    if bytes.get(8) != Some(&CHANGE_CHUNK) {
        return Err(VerifyError::Malformed(
            "not an uncompressed change chunk".into(),
        ));
    }
    use crate::columns::{MAX_CHANGE_OPS, OpCountError, declared_ops};
    match declared_ops(bytes, MAX_CHANGE_OPS) {
        Ok(_) => {}
        Err(OpCountError::TooMany { limit, .. }) => return Err(VerifyError::TooManyOps(limit)),
        Err(e) => return Err(VerifyError::Malformed(e.to_string())),
    }
    let change = match catch_unwind(AssertUnwindSafe(|| automerge::Change::try_from(bytes))) {
        Ok(Ok(change)) => change,
        Ok(Err(e)) => return Err(VerifyError::Malformed(e.to_string())),
        Err(_) => return Err(VerifyError::Malformed("decoder panicked".into())),
    };
    if bytes[4..8] != change.hash().0[..4] {
        return Err(VerifyError::Malformed("bad chunk checksum".into()));
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ActorId, AutoCommit, ROOT};

    /// Verifies one envelope (a batch of one), with its decoding if given.
    fn verify(
        env: SignedChange,
        decoded: Option<automerge::Change>,
        site: Option<SiteId>,
    ) -> Result<VerifiedChange, VerifyError> {
        let mut results = SignedChange::verify_many(
            vec![(env, decoded)],
            site,
            &mut crate::identity::KeyCache::default(),
        );
        assert_eq!(results.len(), 1);
        results.remove(0).map_err(|refused| refused.error)
    }

    fn change_by(key: &DeviceKey) -> automerge::Change {
        let mut doc = AutoCommit::new().with_actor(ActorId::from(key.device_id().as_bytes()));
        doc.put(ROOT, "household", "和平里 3-2-101").unwrap();
        doc.commit();
        doc.get_last_local_change().unwrap()
    }

    #[test]
    fn signed_change_verifies_and_binds_site_and_doc() {
        let key = DeviceKey::from_seed([5; 32]);
        let doc = DocId::from_bytes([1; 16]);
        let site = SiteId::from_bytes([2; 16]);
        let env = SignedChange::sign(&key, Some(site), doc, &change_by(&key));
        assert!(verify(env.clone(), None, Some(site)).is_ok());
        assert_eq!(
            verify(env.clone(), None, None).unwrap_err(),
            VerifyError::BadSignature
        );
        let moved = SignedChange {
            doc: DocId::from_bytes([9; 16]),
            ..env.clone()
        };
        assert_eq!(
            verify(moved, None, Some(site)).unwrap_err(),
            VerifyError::BadSignature
        );
    }

    #[test]
    fn a_given_decoding_is_taken_only_if_it_is_of_the_envelopes_own_bytes() {
        let key = DeviceKey::from_seed([5; 32]);
        let other = DeviceKey::from_seed([6; 32]);
        let doc = DocId::from_bytes([1; 16]);
        let site = Some(SiteId::from_bytes([2; 16]));
        let change = change_by(&key);
        let env = SignedChange::sign(&key, site, doc, &change);
        let verified = verify(env.clone(), Some(change.clone()), site).unwrap();
        assert_eq!(verified.change.hash(), change.hash());
        // Another change than the one the bytes hold: refused, and the envelope comes back.
        let foreign = change_by(&other);
        let mut keys = crate::identity::KeyCache::default();
        let refused =
            SignedChange::verify_many(vec![(env.clone(), Some(foreign))], site, &mut keys)
                .remove(0)
                .unwrap_err();
        assert_eq!(refused.error, VerifyError::HashMismatch);
        assert_eq!(refused.envelope, env);
        // The right change under another site: the signature decides, as without it.
        assert_eq!(
            verify(env, Some(change), None).unwrap_err(),
            VerifyError::BadSignature
        );
    }

    #[test]
    fn a_batch_says_of_each_envelope_what_it_says_alone() {
        // Good envelopes by two keys, with and without their decodings, among spoilt ones:
        // enough to be checked as one batch, and each result where its envelope was.
        let keys = [DeviceKey::from_seed([5; 32]), DeviceKey::from_seed([6; 32])];
        let site = Some(SiteId::from_bytes([2; 16]));
        let mut items = Vec::new();
        for i in 0..12u8 {
            let key = &keys[usize::from(i) % 2];
            let mut doc = AutoCommit::new().with_actor(ActorId::from(key.device_id().as_bytes()));
            doc.put(ROOT, "n", i64::from(i)).unwrap();
            doc.commit();
            let change = doc.get_last_local_change().unwrap();
            let mut env = SignedChange::sign(key, site, DocId::from_bytes([i; 16]), &change);
            match i {
                3 => env.signature[40] ^= 1,
                7 => env.hash.0[0] ^= 1,
                9 => env.signature = [0; 64],
                _ => {}
            }
            items.push((env, (i % 3 == 0).then_some(change)));
        }
        let alone: Vec<Result<ChangeHash, VerifyError>> = items
            .iter()
            .map(|(env, decoded)| {
                verify(env.clone(), decoded.clone(), site).map(|v| v.envelope.hash)
            })
            .collect();
        let together: Vec<Result<ChangeHash, VerifyError>> =
            SignedChange::verify_many(items, site, &mut crate::identity::KeyCache::default())
                .into_iter()
                .map(|r| r.map(|v| v.envelope.hash).map_err(|refused| refused.error))
                .collect();
        assert_eq!(together, alone);
        let refused: Vec<usize> = (0..alone.len()).filter(|&i| alone[i].is_err()).collect();
        assert_eq!(refused, [3, 7, 9]);
        assert_eq!(alone[7], Err(VerifyError::HashMismatch));
    }

    #[test]
    fn altered_bytes_and_foreign_actor_are_rejected() {
        let key = DeviceKey::from_seed([5; 32]);
        let other = DeviceKey::from_seed([6; 32]);
        let doc = DocId::from_bytes([1; 16]);
        let mut env = SignedChange::sign(&key, None, doc, &change_by(&key));
        let last = env.bytes.len() - 1;
        env.bytes[last] ^= 0xff;
        assert!(verify(env, None, None).is_err());

        // `other` signs a change whose actor is `key`'s device.
        let change = change_by(&key);
        let mut env = SignedChange::sign(&key, None, doc, &change);
        env.signer = other.device_id();
        env.signature = other.sign(&signing_message(None, doc, env.hash));
        assert_eq!(
            verify(env.clone(), None, None).unwrap_err(),
            VerifyError::ActorNotSigner
        );
        assert_eq!(
            verify(env, Some(change), None).unwrap_err(),
            VerifyError::ActorNotSigner
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for bytes in [vec![], vec![0x85, 0x6f, 0x4a, 0x83], vec![0xff; 100]] {
            assert!(matches!(
                decode_change(&bytes),
                Err(VerifyError::Malformed(_))
            ));
        }
    }
}

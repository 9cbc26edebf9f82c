//! Signed statements: certificates, revocations and receipts.
//!
//! A [`Signed<T>`] carries the exact bytes that were signed (`body`, the postcard encoding
//! of `T`), the signer's device id and the signature. The signature is ed25519 over
//! `T::DOMAIN || body`, so a signature made for one kind of statement can never be taken
//! for another. The receiver checks the signature (strictly) over the bytes it received,
//! and only then decodes them: nothing is ever re-encoded to be checked.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::identity::{DeviceId, DeviceKey};

/// A statement type that can be signed.
pub trait Statement: Serialize + DeserializeOwned {
    /// Domain tag signed in front of the body.
    const DOMAIN: &'static [u8];
    /// The largest accepted body, in bytes.
    const MAX_BODY: usize = 16 * 1024;
}

/// A statement with its signer and signature, as it travels and is stored.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Signed<T: Statement> {
    /// The device that signed.
    pub signer: DeviceId,
    /// postcard encoding of the statement: the bytes that were signed (after the domain).
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// ed25519 signature over `T::DOMAIN || body`.
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
    #[serde(skip)]
    _kind: PhantomData<fn() -> T>,
}

impl<T: Statement> Clone for Signed<T> {
    fn clone(&self) -> Self {
        Signed {
            signer: self.signer,
            body: self.body.clone(),
            signature: self.signature,
            _kind: PhantomData,
        }
    }
}

impl<T: Statement> PartialEq for Signed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.signer == other.signer && self.body == other.body && self.signature == other.signature
    }
}

impl<T: Statement> Eq for Signed<T> {}

impl<T: Statement> std::fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signed")
            .field("signer", &self.signer)
            .field("len", &self.body.len())
            .finish()
    }
}

/// Why a signed statement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedError {
    /// The body is over the statement's size limit.
    #[error("statement is too large")]
    TooLarge,
    /// The signature does not verify strictly.
    #[error("bad signature on statement")]
    BadSignature,
    /// The body does not decode.
    #[error("malformed statement: {0}")]
    Malformed(String),
}

fn message(domain: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + body.len());
    m.extend_from_slice(domain);
    m.extend_from_slice(body);
    m
}

impl<T: Statement> Signed<T> {
    /// Signs `statement` with `key`.
    pub fn sign(key: &DeviceKey, statement: &T) -> Self {
        let body = postcard::to_stdvec(statement).expect("statements encode");
        Signed {
            signer: key.device_id(),
            signature: key.sign(&message(T::DOMAIN, &body)),
            body,
            _kind: PhantomData,
        }
    }

    /// Checks size and signature, then decodes the statement.
    pub fn open(&self) -> Result<T, SignedError> {
        if self.body.len() > T::MAX_BODY {
            return Err(SignedError::TooLarge);
        }
        if !self
            .signer
            .verify_strict(&message(T::DOMAIN, &self.body), &self.signature)
        {
            return Err(SignedError::BadSignature);
        }
        let (statement, rest): (T, _) = postcard::take_from_bytes(&self.body)
            .map_err(|e| SignedError::Malformed(e.to_string()))?;
        // One statement, encoded the one way postcard encodes it: no trailing bytes, no
        // overlong integers.
        if !rest.is_empty()
            || postcard::to_stdvec(&statement).ok().as_deref() != Some(self.body.as_slice())
        {
            return Err(SignedError::Malformed("not the canonical encoding".into()));
        }
        Ok(statement)
    }

    /// A stable digest of the signed statement (signer, body and signature).
    pub fn digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(T::DOMAIN);
        h.update(self.signer.as_bytes());
        h.update((self.body.len() as u64).to_be_bytes());
        h.update(&self.body);
        h.update(self.signature);
        h.finalize().into()
    }

    /// Encodes the whole signed statement (for storage or a token).
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("signed statements encode")
    }

    /// Decodes a whole signed statement; the signature is not checked until [`Self::open`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SignedError> {
        if bytes.len() > T::MAX_BODY + 256 {
            return Err(SignedError::TooLarge);
        }
        let (signed, rest): (Self, _) =
            postcard::take_from_bytes(bytes).map_err(|e| SignedError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(SignedError::Malformed("trailing bytes".into()));
        }
        Ok(signed)
    }
}

//! Record documents and their ids.
//!
//! Every record (a visit log or a ticket) is one Automerge document. Its [`DocId`] is not
//! random: it is the first 16 bytes of SHA-256 over the document's [`DocHeader`] (its kind,
//! the device that made it, and a random nonce). Whoever holds the header can check that a
//! document id really names a visit log made by that author, so neither the kind nor the
//! author of a record can be forged by a later change.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::identity::{DeviceId, ParseIdError, parse_hex};

/// Domain tag hashed in front of a header to derive a document id.
pub const DOC_ID_DOMAIN: &[u8] = b"yizhan-doc-v1\n";

/// What a record document holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    /// A home visit log. Only its author and stations may change it.
    Visit,
    /// A service ticket: shared work that any member holding it may change.
    Ticket,
}

impl RecordKind {
    /// The byte that stands for this kind in headers and on the wire.
    pub fn code(self) -> u8 {
        match self {
            RecordKind::Visit => 1,
            RecordKind::Ticket => 2,
        }
    }

    /// The kind a byte stands for, if any.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(RecordKind::Visit),
            2 => Some(RecordKind::Ticket),
            _ => None,
        }
    }

    /// The lowercase English name (`visit`, `ticket`).
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Visit => "visit",
            RecordKind::Ticket => "ticket",
        }
    }
}

/// The immutable facts a document id is derived from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct DocHeader {
    /// Visit log or ticket.
    pub kind: RecordKind,
    /// The device that made the record.
    pub author: DeviceId,
    /// 16 random bytes chosen by the author, so that ids never collide.
    pub nonce: [u8; 16],
}

impl DocHeader {
    /// The document id this header derives.
    pub fn doc_id(&self) -> DocId {
        let mut h = Sha256::new();
        h.update(DOC_ID_DOMAIN);
        h.update([self.kind.code()]);
        h.update(self.author.as_bytes());
        h.update(self.nonce);
        let digest = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        DocId(id)
    }
}

crate::identity::serde_as_byte_array!(DocId, 16, |b| Ok::<_, ParseIdError>(DocId::from_bytes(b)));

impl serde::Serialize for RecordKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl<'de> serde::Deserialize<'de> for RecordKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = <u8 as serde::Deserialize>::deserialize(d)?;
        RecordKind::from_code(code).ok_or_else(|| serde::de::Error::custom("unknown record kind"))
    }
}

/// The id of one record document: 16 bytes, printed as 32 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocId([u8; 16]);

impl DocId {
    /// Wraps raw id bytes. Use [`DocHeader::doc_id`] to make a new one.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        DocId(bytes)
    }

    /// Accepts a 16-byte slice.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(DocId)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocId({self})")
    }
}

impl FromStr for DocId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(DocId(parse_hex::<16>("record id", s)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceKey;

    #[test]
    fn id_binds_kind_author_and_nonce() {
        let a = DeviceKey::from_seed([1; 32]).device_id();
        let b = DeviceKey::from_seed([2; 32]).device_id();
        let h = DocHeader {
            kind: RecordKind::Visit,
            author: a,
            nonce: [3; 16],
        };
        let id = h.doc_id();
        assert_eq!(id, h.doc_id());
        assert_ne!(
            id,
            DocHeader {
                kind: RecordKind::Ticket,
                ..h
            }
            .doc_id()
        );
        assert_ne!(id, DocHeader { author: b, ..h }.doc_id());
        assert_ne!(
            id,
            DocHeader {
                nonce: [4; 16],
                ..h
            }
            .doc_id()
        );
        assert_eq!(id.to_string().parse::<DocId>().unwrap(), id);
    }
}

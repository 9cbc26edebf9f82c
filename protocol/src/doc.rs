//! Record documents and their ids.
//!
//! Every record (a visit log, a ticket, a household, the station's policy, a notice) is one
//! Automerge document. Its [`DocId`] is not random: it is the first 16 bytes of SHA-256 over
//! the document's [`DocHeader`]. There are two derivations:
//!
//! - **Made by one author** (visits, tickets, notices): the id covers the kind, the device
//!   that made the record and a random nonce. Whoever holds the header can check that a
//!   document id really names a visit log made by that author, so neither the kind nor the
//!   author of a record can be forged by a later change.
//! - **Made by whoever comes first** (households, the policy): the id covers the kind and a
//!   nonce derived from what the record is about, not from who made it: a household from
//!   its site, grid and normalised address ([`household_nonce`]), the policy from its site
//!   ([`policy_nonce`]). Two nodes that make the same household offline make the same
//!   document, and their changes merge. The header's author is then only the first maker
//!   this node heard of; it binds nothing.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::identity::{DeviceId, ParseIdError, SiteId, parse_hex};

/// Domain tag hashed in front of a header to derive a document id.
pub const DOC_ID_DOMAIN: &[u8] = b"yizhan-doc-v1\n";

/// What a record document holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    /// A home visit log. Only its author and stations may change it.
    Visit,
    /// A service ticket: shared work that any member holding it may change.
    Ticket,
    /// A household of the ledger: shared like a ticket, one per site, grid and address.
    Household,
    /// The station's policy (visit intervals, ticket deadlines): one per site, written
    /// only by stations, held by every member.
    Policy,
    /// A notice (信息发布) a station publishes to some grids or the whole site: its text
    /// written only by stations; each member that holds it adds only its own read mark.
    Notice,
}

impl RecordKind {
    /// The byte that stands for this kind in headers and on the wire.
    pub fn code(self) -> u8 {
        match self {
            RecordKind::Visit => 1,
            RecordKind::Ticket => 2,
            RecordKind::Household => 3,
            RecordKind::Policy => 4,
            RecordKind::Notice => 5,
        }
    }

    /// The kind a byte stands for, if any.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(RecordKind::Visit),
            2 => Some(RecordKind::Ticket),
            3 => Some(RecordKind::Household),
            4 => Some(RecordKind::Policy),
            5 => Some(RecordKind::Notice),
            _ => None,
        }
    }

    /// The lowercase English name (`visit`, `ticket`, `household`, `policy`, `notice`).
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Visit => "visit",
            RecordKind::Ticket => "ticket",
            RecordKind::Household => "household",
            RecordKind::Policy => "policy",
            RecordKind::Notice => "notice",
        }
    }

    /// Whether a record of this kind is made by whoever comes first: its id derives from
    /// what it is about, not from its author (see the module documentation).
    pub fn is_shared(self) -> bool {
        matches!(self, RecordKind::Household | RecordKind::Policy)
    }
}

/// Domain tag of a household's nonce.
pub const HOUSEHOLD_DOMAIN: &[u8] = b"yizhan-household-v1\n";
/// Domain tag of the policy's nonce.
pub const POLICY_DOMAIN: &[u8] = b"yizhan-policy-v1\n";

/// An address as households are keyed by it: surrounding whitespace removed, every run of
/// whitespace (the ideographic space too) made one ASCII space, and full-width digits and
/// Latin letters made half-width. Nothing else changes: `幸福路 １２号` and `幸福路 12号`
/// name one household, `12号` and `十二号` two.
pub fn normalize_address(address: &str) -> String {
    let mut out = String::with_capacity(address.len());
    for word in address.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().map(|c| match c {
            '\u{FF10}'..='\u{FF19}' | '\u{FF21}'..='\u{FF3A}' | '\u{FF41}'..='\u{FF5A}' => {
                char::from_u32(c as u32 - 0xFEE0).unwrap_or(c)
            }
            c => c,
        }));
    }
    out
}

/// The nonce of the household at `address` in `grid` of `site` (`None`: outside a site).
pub fn household_nonce(site: Option<&SiteId>, grid: &str, address: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(HOUSEHOLD_DOMAIN);
    h.update(site.map(|s| *s.as_bytes()).unwrap_or([0; 16]));
    h.update((grid.len() as u64).to_le_bytes());
    h.update(grid.as_bytes());
    h.update(normalize_address(address).as_bytes());
    let mut nonce = [0u8; 16];
    nonce.copy_from_slice(&h.finalize()[..16]);
    nonce
}

/// The id of a record of a shared kind (a household, the policy) with `nonce`, whoever
/// makes it.
pub fn shared_doc_id(kind: RecordKind, nonce: &[u8; 16]) -> DocId {
    let mut h = Sha256::new();
    h.update(DOC_ID_DOMAIN);
    h.update([kind.code()]);
    h.update(nonce);
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize()[..16]);
    DocId(id)
}

/// The nonce of the policy of `site` (`None`: outside a site).
pub fn policy_nonce(site: Option<&SiteId>) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(POLICY_DOMAIN);
    h.update(site.map(|s| *s.as_bytes()).unwrap_or([0; 16]));
    let mut nonce = [0u8; 16];
    nonce.copy_from_slice(&h.finalize()[..16]);
    nonce
}

/// The immutable facts a document id is derived from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct DocHeader {
    /// What the record is.
    pub kind: RecordKind,
    /// The device that made the record (of a shared kind: the first maker this node
    /// heard of, not bound into the id).
    pub author: DeviceId,
    /// 16 random bytes chosen by the author, so that ids never collide; of a shared kind,
    /// derived from what the record is about ([`household_nonce`], [`policy_nonce`]).
    pub nonce: [u8; 16],
}

impl DocHeader {
    /// The document id this header derives.
    pub fn doc_id(&self) -> DocId {
        if self.kind.is_shared() {
            return shared_doc_id(self.kind, &self.nonce);
        }
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

    #[test]
    fn a_household_id_binds_site_grid_and_address_but_not_its_maker() {
        let a = DeviceKey::from_seed([1; 32]).device_id();
        let b = DeviceKey::from_seed([2; 32]).device_id();
        let site = SiteId::from_bytes([7u8; 16]);
        let header = |author, grid: &str, address: &str| DocHeader {
            kind: RecordKind::Household,
            author,
            nonce: household_nonce(Some(&site), grid, address),
        };
        let id = header(a, "g1", "幸福路12号").doc_id();
        assert_eq!(header(b, "g1", "幸福路12号").doc_id(), id);
        assert_eq!(header(b, "g1", "  幸福路１２号 ").doc_id(), id);
        assert_ne!(header(a, "g2", "幸福路12号").doc_id(), id);
        assert_ne!(header(a, "g1", "幸福路13号").doc_id(), id);
        let other_site = DocHeader {
            nonce: household_nonce(Some(&SiteId::from_bytes([8; 16])), "g1", "幸福路12号"),
            ..header(a, "g1", "幸福路12号")
        };
        assert_ne!(other_site.doc_id(), id);
        // The grid and address are length-delimited: no two pairs hash alike.
        assert_ne!(
            household_nonce(None, "g1", "2路"),
            household_nonce(None, "g12", "路")
        );
        let policy = |author| DocHeader {
            kind: RecordKind::Policy,
            author,
            nonce: policy_nonce(Some(&site)),
        };
        assert_eq!(policy(a).doc_id(), policy(b).doc_id());
        assert_ne!(policy(a).doc_id(), id);
    }

    #[test]
    fn addresses_normalise_whitespace_and_full_width_digits_and_letters() {
        assert_eq!(
            normalize_address("  幸福路\u{3000}１２号\t３单元  "),
            "幸福路 12号 3单元"
        );
        assert_eq!(normalize_address("Ａ栋ｂ座"), "A栋b座");
        assert_eq!(normalize_address("幸福路，12号"), "幸福路，12号");
        assert_eq!(normalize_address(""), "");
    }
}

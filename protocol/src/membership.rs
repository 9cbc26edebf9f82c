//! Sites, membership certificates, revocations, tokens and station receipts.
//!
//! A site's root of trust is the station that created it: its id is
//! [`SiteId::for_root`] of the station's device id. The root signs a [`Certificate`] for
//! every device it admits (name, role, grids, expiry) and a [`Revocation`] for every device
//! it expels. Any member can check any other member's certificate with nothing but the
//! site id, so two volunteers can trust each other in the field, and every node can check
//! that the author of a change it relays was a member.

use serde::{Deserialize, Serialize};

use crate::identity::{DeviceId, DeviceKey, SiteId};
use crate::signed::{Signed, SignedError, Statement};

/// What a member is in its site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MemberRole {
    /// Holds the whole site; may change any visit log.
    Station,
    /// Holds its grids.
    Volunteer,
}

impl MemberRole {
    /// `station` or `volunteer`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Station => "station",
            MemberRole::Volunteer => "volunteer",
        }
    }
}

/// The root's statement that a device is a member of its site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// The site.
    pub site: SiteId,
    /// The member device.
    pub device: DeviceId,
    /// Its human name.
    pub name: String,
    /// Its role.
    pub role: MemberRole,
    /// The grids it works (a volunteer's first grid is its default).
    pub grids: Vec<String>,
    /// When the certificate was issued (ms since the Unix epoch).
    pub issued_at_ms: i64,
    /// When it stops being valid, if ever (ms since the Unix epoch).
    pub expires_at_ms: Option<i64>,
}

impl Statement for Certificate {
    const DOMAIN: &'static [u8] = b"yizhan-cert-v1\n";
}

/// The root's statement that a device is no longer a member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The site.
    pub site: SiteId,
    /// The expelled device.
    pub device: DeviceId,
    /// Why, for people.
    pub reason: String,
    /// When (ms since the Unix epoch).
    pub revoked_at_ms: i64,
}

impl Statement for Revocation {
    const DOMAIN: &'static [u8] = b"yizhan-revoke-v1\n";
}

/// A station's statement, at the end of a sync, of how much of a member's change log it
/// holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The site.
    pub site: SiteId,
    /// The member the receipt is for.
    pub member: DeviceId,
    /// The epoch of the member's change log.
    pub epoch: [u8; 16],
    /// The station has processed every change of the member's log up to this position.
    pub covers: u64,
    /// Changes the member sent that the station refused or holds in quarantine (the most
    /// recent [`MAX_RECEIPT_REFUSED`]): processed, but not held.
    pub refused: Vec<crate::envelope::ChangeHash>,
    /// How many changes the station holds in all.
    pub station_changes: u64,
    /// When the station signed it (ms since the Unix epoch).
    pub at_ms: i64,
}

/// The most refused changes a receipt lists.
pub const MAX_RECEIPT_REFUSED: usize = 256;

impl Statement for Receipt {
    const DOMAIN: &'static [u8] = b"yizhan-receipt-v1\n";
}

/// Why a certificate, revocation, receipt or token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// The signature or encoding is bad.
    #[error(transparent)]
    Signed(#[from] SignedError),
    /// It is signed by someone other than the site's root.
    #[error("not signed by the site's station")]
    NotRoot,
    /// It is for another site.
    #[error("it belongs to another site")]
    ForeignSite,
    /// It names another device.
    #[error("it is for device {given}, not {expected}")]
    WrongDevice {
        /// The device it names (hex).
        given: String,
        /// The device expected (hex).
        expected: String,
    },
    /// The certificate has expired.
    #[error("its membership expired")]
    Expired,
    /// The device has been revoked.
    #[error("the device was revoked")]
    Revoked,
    /// A receipt not signed by a station of the site.
    #[error("not signed by a station of this site")]
    NotStation,
    /// A token that is not one line of yizhan token text.
    #[error("not a yizhan enrolment token")]
    BadToken,
}

impl Signed<Certificate> {
    /// Opens a certificate and checks it is the root's, for `site`, and unexpired at `now_ms`.
    /// With `site` `None`, the site is taken from the certificate (as when joining) and
    /// still checked against its signer.
    pub fn check(&self, site: Option<SiteId>, now_ms: i64) -> Result<Certificate, MembershipError> {
        let cert = self.open()?;
        if SiteId::for_root(self.signer) != cert.site {
            return Err(MembershipError::NotRoot);
        }
        if site.is_some_and(|s| s != cert.site) {
            return Err(MembershipError::ForeignSite);
        }
        if cert.expires_at_ms.is_some_and(|e| e <= now_ms) {
            return Err(MembershipError::Expired);
        }
        Ok(cert)
    }
}

impl Signed<Revocation> {
    /// Opens a revocation and checks it is the root's, for `site`.
    pub fn check(&self, site: SiteId) -> Result<Revocation, MembershipError> {
        let r = self.open()?;
        if SiteId::for_root(self.signer) != site {
            return Err(MembershipError::NotRoot);
        }
        if r.site != site {
            return Err(MembershipError::ForeignSite);
        }
        Ok(r)
    }
}

/// The prefix of every token's text.
pub const TOKEN_PREFIX: &str = "yzt1-";

/// What a station hands a device it enrols: one line of text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// The device's certificate.
    pub cert: Signed<Certificate>,
    /// Addresses where the station may be reached (may be empty).
    pub station_addrs: Vec<String>,
}

impl Token {
    /// The one-line text form: `yzt1-` and URL-safe base64 of the postcard encoding.
    pub fn to_text(&self) -> String {
        use base64::Engine;
        let bytes = postcard::to_stdvec(self).expect("tokens encode");
        format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        )
    }

    /// Reads the text form (whitespace around it is ignored).
    pub fn from_text(text: &str) -> Result<Token, MembershipError> {
        use base64::Engine;
        let body = text
            .trim()
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(MembershipError::BadToken)?;
        if body.len() > 64 * 1024 {
            return Err(MembershipError::BadToken);
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| MembershipError::BadToken)?;
        match postcard::take_from_bytes(&bytes) {
            Ok((token, [])) => Ok(token),
            _ => Err(MembershipError::BadToken),
        }
    }
}

/// Issues a certificate signed by the site's root key.
pub fn issue(root: &DeviceKey, cert: &Certificate) -> Signed<Certificate> {
    Signed::sign(root, cert)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(root: &DeviceKey, device: DeviceId) -> Certificate {
        Certificate {
            site: SiteId::for_root(root.device_id()),
            device,
            name: "王芳".into(),
            role: MemberRole::Volunteer,
            grids: vec!["和平里".into()],
            issued_at_ms: 1_000,
            expires_at_ms: Some(10_000),
        }
    }

    #[test]
    fn certificates_chain_to_the_root_only() {
        let root = DeviceKey::from_seed([1; 32]);
        let other = DeviceKey::from_seed([2; 32]);
        let dev = DeviceKey::from_seed([3; 32]).device_id();
        let site = SiteId::for_root(root.device_id());
        let good = issue(&root, &cert(&root, dev));
        assert_eq!(good.check(Some(site), 5_000).unwrap().device, dev);
        assert_eq!(
            good.check(Some(site), 10_000).unwrap_err(),
            MembershipError::Expired
        );
        // A certificate for the root's site signed by another key is refused.
        let forged = issue(&other, &cert(&root, dev));
        assert_eq!(
            forged.check(Some(site), 5_000).unwrap_err(),
            MembershipError::NotRoot
        );
        // One for another site is refused.
        let foreign = issue(&other, &cert(&other, dev));
        assert_eq!(
            foreign.check(Some(site), 5_000).unwrap_err(),
            MembershipError::ForeignSite
        );
    }

    #[test]
    fn tokens_round_trip_as_one_line() {
        let root = DeviceKey::from_seed([1; 32]);
        let dev = DeviceKey::from_seed([3; 32]).device_id();
        let token = Token {
            cert: issue(&root, &cert(&root, dev)),
            station_addrs: vec!["192.0.2.1:7365".into()],
        };
        let text = token.to_text();
        assert!(!text.contains(char::is_whitespace));
        assert_eq!(Token::from_text(&format!(" {text}\n")).unwrap(), token);
        assert_eq!(
            Token::from_text("yzt1-!!").unwrap_err(),
            MembershipError::BadToken
        );
        let mut tampered = token.clone();
        tampered.cert.body[3] ^= 1;
        assert!(tampered.cert.check(None, 0).is_err());
    }
}

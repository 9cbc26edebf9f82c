//! Membership commands on a node: the station enrols devices and revokes them, a new device
//! joins with its token (re-signing what it wrote before it had a site), and anyone lists
//! the members it knows.
//!
//! The statements these commands make are defined and checked in
//! `yizhan_protocol::membership`, and kept in the roster by [`crate::site`].

use std::collections::HashSet;

use rusqlite::{OptionalExtension, params};
use yizhan_protocol::membership::{Certificate, MemberRole, MembershipError, Revocation, Token};
use yizhan_protocol::{DeviceId, DeviceKey, RecordKind, Signed, SiteId};

use crate::error::{ReadError, WriteError};
use crate::home::Node;
use crate::identity::Role;
use crate::model::Time;
use crate::records::{TicketUpdate, VisitEdit};
use crate::site::{revoked, store_cert, store_revocation};

/// One of this device's changes to re-sign: hash, document, signature, bytes, rowid.
type OwnChangeRow = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, i64);

/// Why a membership command failed. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// The command is for the site's station only.
    #[error("only the site's station can {0}")]
    NotStation(&'static str),
    /// A volunteer needs a grid.
    #[error("a volunteer must be enrolled for at least one grid (--grid)")]
    NoGrid,
    /// A bad name.
    #[error("name must not be empty")]
    EmptyName,
    /// The token is not acceptable.
    #[error("the token is not valid: {0}")]
    Token(#[from] MembershipError),
    /// This node is a member of another site.
    #[error("this node is already a member of site {0}")]
    OtherSite(SiteId),
    /// The device was revoked: it can never be a member again.
    #[error(
        "device {0} was revoked from this site; a revoked device cannot be enrolled or join again (make it a new device: `yizhan init` in a new home)"
    )]
    Revoked(DeviceId),
    /// A membership that would expire at once (or past any date the roster can show).
    #[error("--expires-days must be between 1 and {MAX_EXPIRES_DAYS} (got {0})")]
    ExpiresDays(i64),
    /// A station cannot revoke itself.
    #[error("a station cannot revoke itself")]
    RevokeSelf,
    /// The token's membership is older than the one this device already holds (its grids
    /// would go back to what they were).
    #[error(
        "this token was issued at {given}, before the membership this device already holds (issued at {held}); ask the station for a new token"
    )]
    OlderToken {
        /// When the token's certificate was issued.
        given: String,
        /// When the held certificate was issued.
        held: String,
    },
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// SQLite failed.
    #[error("cannot write the store: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// The longest membership `enroll --expires-days` grants: a hundred years (beyond, the
/// expiry would pass the dates the roster can print).
pub const MAX_EXPIRES_DAYS: u32 = 36_500;

/// A device admitted by the station.
#[derive(Clone, Debug)]
pub struct EnrollRequest {
    /// The device.
    pub device: DeviceId,
    /// Its name in the roster.
    pub name: String,
    /// Its grids (a volunteer needs at least one).
    pub grids: Vec<String>,
    /// Its role.
    pub role: MemberRole,
    /// Days until the membership expires (never when `None`).
    pub expires_days: Option<u32>,
}

/// One line of `members`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MemberInfo {
    /// The device.
    pub device_id: String,
    /// Its name.
    pub name: String,
    /// `station` or `volunteer`.
    pub role: String,
    /// Its grids.
    pub grids: Vec<String>,
    /// Whether it has been revoked.
    pub revoked: bool,
    /// When its membership expires (RFC 3339, from its certificate), or never.
    pub expires_at: Option<String>,
    /// When this node last completed a sync with it (RFC 3339), or never.
    pub last_sync: Option<String>,
}

impl Node {
    fn require_root(&self, what: &'static str) -> Result<SiteId, SiteError> {
        let ident = self.identity();
        match (ident.site_id, ident.root) {
            (Some(site), Some(root)) if root == ident.device_id => Ok(site),
            _ => Err(SiteError::NotStation(what)),
        }
    }

    /// Admits a device to this station's site. Returns the token to hand to it.
    pub fn enroll(&mut self, req: &EnrollRequest) -> Result<Token, SiteError> {
        let site = self.require_root("enroll devices")?;
        let name = req.name.trim();
        if name.is_empty() {
            return Err(SiteError::EmptyName);
        }
        let grids: Vec<String> = req
            .grids
            .iter()
            .map(|g| g.trim().to_string())
            .filter(|g| !g.is_empty())
            .collect();
        if req.role == MemberRole::Volunteer && grids.is_empty() {
            return Err(SiteError::NoGrid);
        }
        // A certificate of zero days would replace the device's current one with one that
        // has already expired.
        if let Some(days) = req.expires_days
            && !(1..=MAX_EXPIRES_DAYS).contains(&days)
        {
            return Err(SiteError::ExpiresDays(days.into()));
        }
        // A revocation is for good: a token for a revoked device would say "joined" and
        // then fail at every sync.
        if revoked(self.store().conn(), req.device)? {
            return Err(SiteError::Revoked(req.device));
        }
        let now = Time::now_millis();
        let cert = Certificate {
            site,
            device: req.device,
            name: name.to_string(),
            role: req.role,
            grids,
            issued_at_ms: now,
            expires_at_ms: req
                .expires_days
                .map(|d| now + i64::from(d) * 24 * 3600 * 1000),
        };
        let signed = Signed::sign(self.key(), &cert);
        let tx = self.store_mut().write()?;
        store_cert(&tx, &signed, &cert)?;
        let addrs: Vec<String> = tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'listen_addr'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .into_iter()
            // A wildcard address (`0.0.0.0:7365`, the default `listen`) names no host a
            // laptop could dial: the token then names none, and the laptop finds the
            // station by discovery or is given `join --station`.
            .filter(|a| {
                a.parse::<std::net::SocketAddr>()
                    .is_ok_and(|a| !a.ip().is_unspecified())
            })
            .collect();
        tx.commit()?;
        Ok(Token {
            cert: signed,
            station_addrs: addrs,
        })
    }

    /// Stores the membership a token grants, after checking it names this device and is
    /// signed by its site's root. Changes this device made before joining are re-signed
    /// for the site, and its records without a grid move to its first grid.
    pub fn join(&mut self, token: &Token, station_addr: Option<String>) -> Result<(), SiteError> {
        let now = Time::now_millis();
        let cert = token.cert.check(None, now)?;
        let me = self.identity().device_id;
        if cert.device != me {
            return Err(MembershipError::WrongDevice {
                given: cert.device.to_string(),
                expected: me.to_string(),
            }
            .into());
        }
        if let Some(site) = self.identity().site_id
            && site != cert.site
        {
            return Err(SiteError::OtherSite(site));
        }
        if revoked(self.store().conn(), me)? {
            return Err(SiteError::Revoked(me));
        }
        // A membership only moves forward: an old token would bring back old grids.
        if let Some(held) = self.identity().cert.as_ref().and_then(|c| c.open().ok())
            && held.site == cert.site
            && held.issued_at_ms > cert.issued_at_ms
        {
            return Err(SiteError::OlderToken {
                given: Time::from_millis(cert.issued_at_ms).to_string(),
                held: Time::from_millis(held.issued_at_ms).to_string(),
            });
        }
        let root = token.cert.signer;
        let addr = station_addr.or_else(|| token.station_addrs.first().cloned());
        let mut identity = self.identity().clone();
        identity.name = cert.name.clone();
        identity.site_id = Some(cert.site);
        identity.role = match cert.role {
            MemberRole::Station => Role::Station,
            MemberRole::Volunteer => Role::Volunteer,
        };
        identity.grids = cert.grids.clone();
        identity.root = Some(root);
        identity.cert = Some(token.cert.clone());
        if addr.is_some() {
            identity.station_addr = addr;
        }
        let first_grid = identity.grids.first().cloned();
        let key = DeviceKey::from_seed(self.key().seed());
        let tx = self.store_mut().write()?;
        store_cert(&tx, &token.cert, &cert)?;
        crate::identity::save_identity(&tx, &identity)?;
        // Re-sign this device's earlier changes for the site.
        {
            let mut stmt = tx.prepare(
                "SELECT hash, doc_id, signature, bytes, rowid FROM changes WHERE signer = ?1",
            )?;
            let rows: Vec<OwnChangeRow> = stmt
                .query_map([me.as_bytes().as_slice()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut update = tx.prepare("UPDATE changes SET signature = ?1 WHERE rowid = ?2")?;
            for (hash, doc, signature, bytes, rowid) in rows {
                let (Ok(h), Some(d), Ok(signature)) = (
                    <[u8; 32]>::try_from(hash.as_slice()),
                    yizhan_protocol::DocId::from_slice(&doc),
                    <[u8; 64]>::try_from(signature.as_slice()),
                ) else {
                    continue;
                };
                let mut env = yizhan_protocol::SignedChange {
                    doc: d,
                    hash: yizhan_protocol::ChangeHash(h),
                    signer: me,
                    signature,
                    bytes,
                };
                env.resign(&key, Some(cert.site));
                update.execute(params![env.signature.as_slice(), rowid])?;
            }
        }
        // Records without a grid go to this volunteer's first grid.
        if let Some(grid) = first_grid {
            let ungridded: Vec<(Vec<u8>, u8)> = tx
                .prepare("SELECT doc_id, kind FROM records WHERE grid IS NULL AND author = ?1")?
                .query_map([me.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (doc, kind) in ungridded {
                let Some(id) = yizhan_protocol::DocId::from_slice(&doc) else {
                    continue;
                };
                match RecordKind::from_code(kind) {
                    Some(RecordKind::Visit) => crate::write::edit_visit_in(
                        &tx,
                        &key,
                        &identity,
                        id,
                        &VisitEdit {
                            grid: Some(grid.clone()),
                            ..VisitEdit::default()
                        },
                    )?,
                    Some(RecordKind::Ticket) => crate::write::update_ticket_in(
                        &tx,
                        &key,
                        &identity,
                        id,
                        &TicketUpdate {
                            grid: Some(grid.clone()),
                            ..TicketUpdate::default()
                        },
                    )?,
                    Some(RecordKind::Household | RecordKind::Policy | RecordKind::Notice)
                    | None => {}
                }
            }
        }
        // A household's id derives from the site: the records made before joining name
        // none yet (`local::household_for`), and their index rows derived one without a
        // site. They are linked again, and their households made, when the node next opens
        // (`upgrade`).
        tx.execute(
            "UPDATE records SET household = NULL WHERE kind IN (1, 2)",
            [],
        )?;
        tx.execute("DELETE FROM meta WHERE key = ?1", [crate::upgrade::LINKED])?;
        tx.commit()?;
        self.set_identity(identity);
        Ok(())
    }

    /// Expels a device from this station's site.
    pub fn revoke(&mut self, device: DeviceId, reason: &str) -> Result<(), SiteError> {
        let site = self.require_root("revoke devices")?;
        if device == self.identity().device_id {
            return Err(SiteError::RevokeSelf);
        }
        let r = Revocation {
            site,
            device,
            reason: reason.to_string(),
            revoked_at_ms: Time::now_millis(),
        };
        let signed = Signed::sign(self.key(), &r);
        let tx = self.store_mut().write()?;
        store_revocation(&tx, &signed, &r)?;
        tx.commit()?;
        Ok(())
    }

    /// The site's roster as this node knows it.
    pub fn members(&self) -> Result<Vec<MemberInfo>, ReadError> {
        let conn = self.store().conn();
        let revoked: HashSet<Vec<u8>> = conn
            .prepare("SELECT device FROM revocations")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut stmt = conn.prepare(
            "SELECT m.device, m.name, m.role, m.grids, m.expires_at, p.last_sync
             FROM members m LEFT JOIN peers p ON p.device = m.device
             ORDER BY m.role, m.name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<i64>>(5)?,
            ))
        })?;
        let at = |ms: i64| Time::from_millis(ms).to_rfc3339();
        let mut out = Vec::new();
        for row in rows {
            let (device, name, role, grids, expires_at, last_sync) = row?;
            out.push(MemberInfo {
                device_id: hex::encode(&device),
                name,
                role,
                grids: serde_json::from_str(&grids).unwrap_or_default(),
                revoked: revoked.contains(&device),
                expires_at: expires_at.map(at),
                last_sync: last_sync.map(at),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::home::{InitConfig, InitSeed};
    use crate::site::{check_roster, load_roster, store_roster};

    fn node(dir: &std::path::Path, station: bool) -> Node {
        let config = InitConfig {
            name: "节点".into(),
            station,
            encrypt: None,
        };
        Node::init(dir, &config, InitSeed::random()).unwrap()
    }

    fn request(device: DeviceId, expires_days: Option<u32>) -> EnrollRequest {
        EnrollRequest {
            device,
            name: "张阿姨".into(),
            grids: vec!["和平里".into()],
            role: MemberRole::Volunteer,
            expires_days,
        }
    }

    #[test]
    fn a_revoked_device_is_neither_enrolled_nor_joins_again() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut station = node(a.path(), true);
        let mut laptop = node(b.path(), false);
        let device = laptop.identity().device_id;
        let site = station.identity().site_id.unwrap();
        let token = station.enroll(&request(device, Some(30))).unwrap();
        laptop.join(&token, None).unwrap();

        for days in [0, MAX_EXPIRES_DAYS + 1] {
            assert!(matches!(
                station.enroll(&request(device, Some(days))),
                Err(SiteError::ExpiresDays(_))
            ));
        }
        station.revoke(device, "电脑丢失").unwrap();
        let roster_before = load_roster(station.store().conn()).unwrap();
        assert!(matches!(
            station.enroll(&request(device, None)),
            Err(SiteError::Revoked(d)) if d == device
        ));
        assert_eq!(
            load_roster(station.store().conn()).unwrap(),
            roster_before,
            "a refused enrolment changed the roster"
        );

        // The laptop learns of its revocation (a roster from a peer); the token it still
        // holds no longer makes it a member.
        let tx = laptop.store_mut().write().unwrap();
        let checked = check_roster(&tx, site, &roster_before).unwrap();
        store_roster(&tx, &checked).unwrap();
        tx.commit().unwrap();
        assert!(matches!(
            laptop.join(&token, None),
            Err(SiteError::Revoked(d)) if d == device
        ));
    }
}

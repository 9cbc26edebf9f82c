//! The site's trust data on a node: the station's root of trust, the roster (certificates
//! and revocations) every node keeps to judge the authors of changes, and the station's
//! receipts. Commands that change membership are in [`crate::members`].
//!
//! The statements themselves (certificates, revocations, tokens) are defined and checked
//! in `yizhan_protocol::membership`; this module stores them and applies their effects.

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use sha2::{Digest, Sha256};
use yizhan_protocol::membership::{Certificate, MemberRole, Revocation};
use yizhan_protocol::wire::Roster;
use yizhan_protocol::{DeviceId, DeviceKey, Receipt, Signed, SiteId};

use crate::identity::Identity;
use crate::model::Time;
use crate::store::set_meta;

/// The roster as ingest consults it.
#[derive(Debug, Default)]
pub(crate) struct RosterView {
    root: Option<DeviceId>,
    roles: HashMap<DeviceId, MemberRole>,
    /// Each volunteer's grids, from its newest certificate.
    grids: HashMap<DeviceId, Vec<String>>,
    revoked: HashSet<DeviceId>,
}

impl RosterView {
    pub(crate) fn load(conn: &Connection, site: Option<SiteId>) -> rusqlite::Result<RosterView> {
        let mut view = RosterView::default();
        let Some(site) = site else { return Ok(view) };
        let root: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'root'", [], |r| {
                r.get(0)
            })
            .optional()?;
        view.root = root
            .and_then(|r| r.parse().ok())
            .filter(|r| SiteId::for_root(*r) == site);
        let mut stmt = conn.prepare("SELECT device, role, grids FROM members")?;
        for row in stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })? {
            let (device, role, grids) = row?;
            if let Ok(d) = DeviceId::from_slice(&device) {
                let role = if role == "station" {
                    MemberRole::Station
                } else {
                    // Grids that do not read as a list are no grids: nothing is in them.
                    view.grids
                        .insert(d, serde_json::from_str(&grids).unwrap_or_default());
                    MemberRole::Volunteer
                };
                view.roles.insert(d, role);
            }
        }
        let mut stmt = conn.prepare("SELECT device FROM revocations")?;
        for row in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))? {
            if let Ok(d) = DeviceId::from_slice(&row?) {
                view.revoked.insert(d);
            }
        }
        Ok(view)
    }

    /// The device's role in the site, if it is a member (the root is always the station).
    pub(crate) fn role(&self, device: DeviceId) -> Option<MemberRole> {
        if self.root == Some(device) {
            return Some(MemberRole::Station);
        }
        self.roles.get(&device).copied()
    }

    pub(crate) fn is_station(&self, device: DeviceId) -> bool {
        self.role(device) == Some(MemberRole::Station)
    }

    /// The grids a volunteer may write records in (`None` for a station, which writes in
    /// any grid, and for a device that is no member).
    pub(crate) fn grids(&self, device: DeviceId) -> Option<&[String]> {
        if self.root == Some(device) {
            return None;
        }
        self.grids.get(&device).map(Vec::as_slice)
    }

    pub(crate) fn is_revoked(&self, device: DeviceId) -> bool {
        self.revoked.contains(&device)
    }
}

/// Stores a checked certificate in the roster (replacing an older one of the device).
pub(crate) fn store_cert(
    tx: &Transaction<'_>,
    signed: &Signed<Certificate>,
    cert: &Certificate,
) -> rusqlite::Result<()> {
    if holds_cert_as_new(tx, cert)? {
        return Ok(()); // keep the newer certificate (or the one already held, if as new)
    }
    tx.execute(
        "INSERT INTO members(device, cert, name, role, grids, expires_at, digest)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(device) DO UPDATE SET cert = excluded.cert, name = excluded.name,
             role = excluded.role, grids = excluded.grids, expires_at = excluded.expires_at,
             digest = excluded.digest",
        params![
            cert.device.as_bytes().as_slice(),
            signed.to_bytes(),
            cert.name,
            cert.role.as_str(),
            serde_json::to_string(&cert.grids).expect("strings serialise"),
            cert.expires_at_ms,
            signed.digest().as_slice(),
        ],
    )?;
    Ok(())
}

/// Whether this node holds a certificate for `cert`'s device at least as new as `cert`
/// (then [`store_cert`] writes nothing).
pub(crate) fn holds_cert_as_new(conn: &Connection, cert: &Certificate) -> rusqlite::Result<bool> {
    let existing: Option<Vec<u8>> = conn
        .query_row(
            "SELECT cert FROM members WHERE device = ?1",
            [cert.device.as_bytes().as_slice()],
            |r| r.get(0),
        )
        .optional()?;
    Ok(existing.is_some_and(|bytes| {
        Signed::<Certificate>::from_bytes(&bytes)
            .ok()
            .and_then(|old| old.open().ok())
            .is_some_and(|old| old.issued_at_ms >= cert.issued_at_ms)
    }))
}

/// The newest certificate stored for `device`, checked again.
pub(crate) fn newest_cert(
    conn: &Connection,
    device: DeviceId,
) -> rusqlite::Result<Option<(Signed<Certificate>, Certificate)>> {
    let bytes: Option<Vec<u8>> = conn
        .query_row(
            "SELECT cert FROM members WHERE device = ?1",
            [device.as_bytes().as_slice()],
            |r| r.get(0),
        )
        .optional()?;
    Ok(bytes
        .and_then(|b| Signed::<Certificate>::from_bytes(&b).ok())
        .and_then(|s| s.check(None, i64::MIN).ok().map(|c| (s, c))))
}

/// Whether the roster holds a revocation of `device`.
pub(crate) fn revoked(conn: &Connection, device: DeviceId) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM revocations WHERE device = ?1")?
        .exists([device.as_bytes().as_slice()])
}

/// Stores a checked revocation.
pub(crate) fn store_revocation(
    tx: &Transaction<'_>,
    signed: &Signed<Revocation>,
    r: &Revocation,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO revocations(device, statement, reason, revoked_at, received_at, digest)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            r.device.as_bytes().as_slice(),
            signed.to_bytes(),
            r.reason,
            r.revoked_at_ms,
            Time::now_millis(),
            signed.digest().as_slice(),
        ],
    )?;
    Ok(())
}

/// Every certificate and revocation this node holds.
pub(crate) fn load_roster(conn: &Connection) -> rusqlite::Result<Roster> {
    let certs = conn
        .prepare("SELECT cert FROM members ORDER BY device")?
        .query_map([], |r| r.get::<_, Vec<u8>>(0))?
        .filter_map(|b| b.ok().and_then(|b| Signed::from_bytes(&b).ok()))
        .collect();
    let revocations = conn
        .prepare("SELECT statement FROM revocations ORDER BY device")?
        .query_map([], |r| r.get::<_, Vec<u8>>(0))?
        .filter_map(|b| b.ok().and_then(|b| Signed::from_bytes(&b).ok()))
        .collect();
    Ok(Roster { certs, revocations })
}

/// SHA-256 over the sorted digests of every certificate, then every revocation.
pub(crate) fn roster_digest(conn: &Connection) -> rusqlite::Result<[u8; 32]> {
    let mut h = Sha256::new();
    for (label, sql) in [
        (
            b"certs".as_slice(),
            "SELECT digest FROM members ORDER BY digest",
        ),
        (
            b"revocations".as_slice(),
            "SELECT digest FROM revocations ORDER BY digest",
        ),
    ] {
        h.update(label);
        let mut stmt = conn.prepare(sql)?;
        for d in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))? {
            h.update(d?);
        }
    }
    Ok(h.finalize().into())
}

/// What applying a peer's roster did.
#[derive(Debug, Default)]
pub(crate) struct RosterOutcome {
    /// Devices newly revoked.
    pub revoked: Vec<DeviceId>,
}

/// A peer's roster, checked ([`check_roster`]) and not yet stored ([`store_roster`]).
#[derive(Debug, Default)]
pub(crate) struct CheckedRoster {
    certs: Vec<(Signed<Certificate>, Certificate)>,
    revocations: Vec<(Signed<Revocation>, Revocation)>,
    /// Statements refused (bad signature, another site).
    pub refused: usize,
}

impl CheckedRoster {
    /// Whether there is nothing to store.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty() && self.revocations.is_empty()
    }
}

/// Checks a peer's roster outside any write transaction: statements this node already
/// holds (by digest), and repeats within the roster, are skipped without a signature
/// check; a statement not signed by this site's root is refused before its signature is
/// checked; each other statement costs one signature check.
pub(crate) fn check_roster(
    conn: &Connection,
    site: SiteId,
    roster: &Roster,
) -> rusqlite::Result<CheckedRoster> {
    let mut seen: HashSet<[u8; 32]> = HashSet::new();
    for sql in [
        "SELECT digest FROM members",
        "SELECT digest FROM revocations",
    ] {
        let mut stmt = conn.prepare(sql)?;
        for d in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))? {
            if let Ok(d) = <[u8; 32]>::try_from(d?) {
                seen.insert(d);
            }
        }
    }
    let mut out = CheckedRoster::default();
    for r in &roster.revocations {
        if !seen.insert(r.digest()) {
            continue;
        }
        match (SiteId::for_root(r.signer) == site).then(|| r.check(site)) {
            Some(Ok(rev)) => out.revocations.push((r.clone(), rev)),
            _ => out.refused += 1,
        }
    }
    for c in &roster.certs {
        if !seen.insert(c.digest()) {
            continue;
        }
        // Expired certificates still name members (their earlier changes stay valid).
        match (SiteId::for_root(c.signer) == site).then(|| c.check(Some(site), i64::MIN)) {
            Some(Ok(cert)) => out.certs.push((c.clone(), cert)),
            _ => out.refused += 1,
        }
    }
    Ok(out)
}

/// Stores a checked roster.
pub(crate) fn store_roster(
    tx: &Transaction<'_>,
    roster: &CheckedRoster,
) -> rusqlite::Result<RosterOutcome> {
    let mut out = RosterOutcome::default();
    for (signed, rev) in &roster.revocations {
        if !revoked(tx, rev.device)? {
            out.revoked.push(rev.device);
        }
        store_revocation(tx, signed, rev)?;
    }
    for (signed, cert) in &roster.certs {
        store_cert(tx, signed, cert)?;
    }
    Ok(out)
}

/// Makes a new station the root of its own site: the site id derives from its key, and it
/// holds a certificate for itself like every other member.
pub(crate) fn init_station(
    tx: &Transaction<'_>,
    key: &DeviceKey,
    identity: &mut Identity,
) -> rusqlite::Result<()> {
    let me = key.device_id();
    let site = SiteId::for_root(me);
    let cert = Certificate {
        site,
        device: me,
        name: identity.name.clone(),
        role: MemberRole::Station,
        grids: Vec::new(),
        issued_at_ms: Time::now_millis(),
        expires_at_ms: None,
    };
    let signed = Signed::sign(key, &cert);
    store_cert(tx, &signed, &cert)?;
    identity.site_id = Some(site);
    identity.root = Some(me);
    identity.cert = Some(signed);
    set_meta(tx, "root", &me.to_string())?;
    Ok(())
}

/// The `meta` key of the station's latest receipt for this node (hex of its signed bytes).
pub(crate) const STATION_RECEIPT: &str = "station_receipt";

/// Keeps `signed` as the station's latest receipt for this node
/// ([`Node::station_receipt`] reads it back).
pub(crate) fn keep_station_receipt(
    tx: &rusqlite::Transaction<'_>,
    signed: &Signed<Receipt>,
) -> rusqlite::Result<()> {
    set_meta(tx, STATION_RECEIPT, &hex::encode(signed.to_bytes()))
}

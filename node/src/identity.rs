//! Who this node is: its [`Role`] in its site and its [`Identity`] (device, name, site,
//! grids, root, certificate, station address), and how the identity is kept in the
//! store's `meta` table.

use rusqlite::Transaction;
use yizhan_protocol::{DeviceId, DeviceKey, DocHeader, RecordKind, SiteId};

use crate::error::{OpenError, WriteError};
use crate::store::{Store, set_meta};

/// What a node is in its site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The site's root of trust; holds the whole site.
    Station,
    /// An enrolled volunteer; holds its grids.
    Volunteer,
    /// Not a member of any site yet.
    Unenrolled,
}

impl Role {
    /// `station`, `volunteer` or `unenrolled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Station => "station",
            Role::Volunteer => "volunteer",
            Role::Unenrolled => "unenrolled",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Role> {
        match s {
            "station" => Some(Role::Station),
            "volunteer" => Some(Role::Volunteer),
            "unenrolled" => Some(Role::Unenrolled),
            _ => None,
        }
    }
}

/// Who this node is.
#[derive(Clone, Debug)]
pub struct Identity {
    /// This device.
    pub device_id: DeviceId,
    /// The name its owner gave it.
    pub name: String,
    /// The site it belongs to, if any.
    pub site_id: Option<SiteId>,
    /// Its role.
    pub role: Role,
    /// The grids it is enrolled for (a volunteer's first grid is its default).
    pub grids: Vec<String>,
    /// The site's root station (whose key the site id derives from).
    pub root: Option<DeviceId>,
    /// This device's membership certificate.
    pub cert: Option<yizhan_protocol::Signed<yizhan_protocol::Certificate>>,
    /// Where the station can be reached, if known.
    pub station_addr: Option<String>,
}

impl Identity {
    /// The grid a new record of this node goes to when none is given: its first grid.
    pub(crate) fn default_grid(&self, grid: &Option<String>) -> Option<String> {
        grid.clone().or_else(|| self.grids.first().cloned())
    }

    /// Refuses a new record without a grid at a station: a station works every grid, so it
    /// has no first grid to default to. (A volunteer's default is its first grid; a node
    /// of no site yet keeps records without one until it joins.)
    pub(crate) fn needs_grid(&self, grid: Option<&str>) -> Result<(), WriteError> {
        if grid.is_none() && self.role == Role::Station {
            return Err(crate::error::Refusal::StationNeedsGrid.into());
        }
        Ok(())
    }

    /// Refuses a grid this node may not write records in: a volunteer writes only in its
    /// own grids (every receiving node refuses the change too, `rules::record_model`); a
    /// station, and a node of no site yet, in any.
    pub(crate) fn may_write_grid(&self, grid: Option<&str>) -> Result<(), WriteError> {
        match grid {
            Some(g) if self.role == Role::Volunteer && !self.grids.iter().any(|m| m == g) => {
                Err(crate::error::Refusal::NotOwnGrid {
                    grid: g.to_string(),
                    own: self.grids.join(", "),
                }
                .into())
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn new_header(&self, kind: RecordKind) -> DocHeader {
        DocHeader {
            kind,
            author: self.device_id,
            nonce: rand::random(),
        }
    }
}

pub(crate) fn save_identity(tx: &Transaction<'_>, identity: &Identity) -> rusqlite::Result<()> {
    set_meta(
        tx,
        "root",
        &identity.root.map(|r| r.to_string()).unwrap_or_default(),
    )?;
    set_meta(
        tx,
        "cert",
        &identity
            .cert
            .as_ref()
            .map(|c| hex::encode(c.to_bytes()))
            .unwrap_or_default(),
    )?;
    set_meta(
        tx,
        "station_addr",
        identity.station_addr.as_deref().unwrap_or_default(),
    )?;
    set_meta(tx, "name", &identity.name)?;
    set_meta(tx, "role", identity.role.as_str())?;
    set_meta(
        tx,
        "site_id",
        &identity.site_id.map(|s| s.to_string()).unwrap_or_default(),
    )?;
    set_meta(
        tx,
        "grids",
        &serde_json::to_string(&identity.grids).expect("strings serialise"),
    )?;
    Ok(())
}

pub(crate) fn load_identity(store: &Store, key: &DeviceKey) -> Result<Identity, OpenError> {
    let get = |k: &str| -> Result<String, OpenError> {
        store
            .meta(k)?
            .ok_or_else(|| OpenError::Mismatch(format!("the store has no {k}")))
    };
    let device_id = key.device_id();
    if get("device_id")? != device_id.to_string() {
        return Err(OpenError::Mismatch("it was made for another device".into()));
    }
    let role = get("role")?;
    let site = get("site_id")?;
    let opt = |k: &str| -> Result<Option<String>, OpenError> {
        Ok(store.meta(k)?.filter(|v| !v.is_empty()))
    };
    let root = match opt("root")? {
        Some(r) => Some(
            r.parse()
                .map_err(|_| OpenError::Mismatch("malformed root".into()))?,
        ),
        None => None,
    };
    let cert = match opt("cert")? {
        Some(c) => Some(
            hex::decode(&c)
                .ok()
                .and_then(|b| yizhan_protocol::Signed::from_bytes(&b).ok())
                .ok_or_else(|| OpenError::Mismatch("malformed certificate".into()))?,
        ),
        None => None,
    };
    let station_addr = opt("station_addr")?;
    Ok(Identity {
        device_id,
        name: get("name")?,
        role: Role::parse(&role)
            .ok_or_else(|| OpenError::Mismatch(format!("unknown role '{role}'")))?,
        site_id: if site.is_empty() {
            None
        } else {
            Some(
                site.parse()
                    .map_err(|_| OpenError::Mismatch("malformed site id".into()))?,
            )
        },
        grids: serde_json::from_str(&get("grids")?)
            .map_err(|_| OpenError::Mismatch("malformed grids".into()))?,
        root,
        cert,
        station_addr,
    })
}

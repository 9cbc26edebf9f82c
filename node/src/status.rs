//! What `status` shows: the station's receipt (what is safe at the station), what is
//! pending to it, the peers met, conflicts and refused changes, and this node's log.

use rusqlite::params;
use yizhan_protocol::{DeviceId, Receipt, Signed};

use crate::error::ReadError;
use crate::home::Node;
use crate::identity::Role;
use crate::site::STATION_RECEIPT;

/// A peer as `status` shows it.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The peer.
    pub device: DeviceId,
    /// Its name from its certificate.
    pub name: Option<String>,
    /// Where it was last reached.
    pub addr: Option<String>,
    /// When the last sync with it completed (ms since the epoch).
    pub last_sync_ms: Option<i64>,
}

impl Node {
    /// The station's latest receipt for this node, checked when it was received.
    pub fn station_receipt(&self) -> Result<Option<Receipt>, ReadError> {
        Ok(self.station_receipt_signed()?.map(|(_, r)| r))
    }

    /// The station's latest receipt with the station that signed it.
    pub fn station_receipt_signed(&self) -> Result<Option<(DeviceId, Receipt)>, ReadError> {
        Ok(self
            .store()
            .meta(STATION_RECEIPT)?
            .filter(|s| !s.is_empty())
            .and_then(|s| hex::decode(s).ok())
            .and_then(|b| Signed::<Receipt>::from_bytes(&b).ok())
            .and_then(|s| s.open().ok().map(|r| (s.signer, r))))
    }

    /// How many changes this node holds that no station is yet known to hold: those in
    /// its log after the station receipt's position, less those that came from a station.
    pub fn pending_to_station(&self) -> Result<u64, ReadError> {
        if self.identity().role == Role::Station {
            return Ok(0);
        }
        let epoch = self.store().log_epoch()?;
        let (covers, refused) = match self.station_receipt()? {
            Some(r) if r.epoch == epoch => (r.covers as i64, r.refused),
            _ => (0, Vec::new()),
        };
        let root = self.identity().root.map(|r| r.as_bytes().to_vec());
        // Not from a station, and either after the receipt's position or refused by it.
        let count: i64 = self.store().conn().query_row(
            "SELECT COUNT(*) FROM changes c WHERE
                 (c.lseq > ?1 OR lower(hex(c.hash)) IN (SELECT value FROM json_each(?3)))
                 AND NOT (c.origin IS NOT NULL AND (c.origin = ?2 OR c.origin IN
                     (SELECT device FROM members WHERE role = 'station')))",
            params![
                covers,
                root,
                serde_json::to_string(&refused.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                    .expect("strings serialise")
            ],
            |r| r.get(0),
        )?;
        Ok(count as u64)
    }

    /// The peers this node has synced with or reached.
    pub fn peers(&self) -> Result<Vec<PeerInfo>, ReadError> {
        let mut stmt = self
            .store()
            .conn()
            .prepare("SELECT device, name, addr, last_sync FROM peers ORDER BY last_sync DESC")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<i64>>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (d, name, addr, last) = row?;
            if let Ok(device) = DeviceId::from_slice(&d) {
                out.push(PeerInfo {
                    device,
                    name,
                    addr,
                    last_sync_ms: last,
                });
            }
        }
        Ok(out)
    }

    /// Remembers where a peer was reached (nothing is written, and nothing committed, when
    /// it was reached there before).
    pub fn note_peer_addr(&mut self, peer: DeviceId, addr: &str) -> Result<(), ReadError> {
        self.store().conn().execute(
            "INSERT INTO peers(device, addr) VALUES (?1, ?2)
             ON CONFLICT(device) DO UPDATE SET addr = excluded.addr
                 WHERE addr IS NOT excluded.addr",
            params![peer.as_bytes().as_slice(), addr],
        )?;
        Ok(())
    }

    /// Counts for `status`: (fields in conflict, rejected changes kept).
    pub fn conflict_and_rejected_counts(&self) -> Result<(u64, u64), ReadError> {
        Ok(self.store().conn().query_row(
            "SELECT (SELECT COALESCE(SUM(conflicts), 0) FROM records), (SELECT COUNT(*) FROM rejected)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// The highest position in this node's change log (0 when empty).
    pub fn log_end(&self) -> Result<u64, ReadError> {
        let max: Option<i64> =
            self.store()
                .conn()
                .query_row("SELECT MAX(lseq) FROM changes", [], |r| r.get(0))?;
        Ok(max.unwrap_or(0) as u64)
    }
}

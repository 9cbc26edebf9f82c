//! What `status` shows: the station's receipt (what is safe at the station), what is
//! pending to it, the peers met, conflicts and refused changes, and this node's log.
//!
//! [`Node::status`] gathers it into one [`Status`], which serialises to the object
//! `yizhan status --json` prints.

use rusqlite::params;
use serde::{Serialize, Serializer};
use yizhan_protocol::{DeviceId, Receipt, Signed};

use crate::error::ReadError;
use crate::home::Node;
use crate::identity::Role;
use crate::model::Time;
use crate::site::STATION_RECEIPT;

/// Where this node stands, as `status` shows it. Ids are hex strings, times RFC 3339.
///
/// Every object's fields are declared in alphabetical order, the order in which `status
/// --json` has always printed its keys.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Status {
    /// Fields in conflict, across all records.
    pub conflicts: u64,
    /// This node's device id.
    pub device_id: String,
    /// Misbehaviour recorded, newest first.
    pub misbehaviour: Vec<MisbehaviourStatus>,
    /// This node's name.
    pub name: String,
    /// The peers this node has synced with or reached, most recent sync first.
    pub peers: Vec<PeerStatus>,
    /// Changes this node holds that no station is yet known to hold.
    pub pending_to_station: u64,
    /// Records dropped because they left this node's grids.
    pub purged: u64,
    /// How many records of each kind this node holds.
    pub records: RecordCounts,
    /// Refused changes kept.
    pub rejected: u64,
    /// `station`, `volunteer` or `unenrolled`.
    #[serde(serialize_with = "role_str")]
    pub role: Role,
    /// The site joined, if any.
    pub site_id: Option<String>,
    /// The station's latest receipt for this node, checked (`None` before the first sync
    /// with the station).
    pub station_receipt: Option<ReceiptStatus>,
}

fn role_str<S: Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(role.as_str())
}

/// How many records of each kind a node holds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordCounts {
    /// Tickets.
    pub tickets: u64,
    /// Visit logs.
    pub visits: u64,
}

/// The station's receipt, as `status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReceiptStatus {
    /// When the station signed it.
    pub at: String,
    /// The station has processed this node's log up to this position.
    pub covers: u64,
    /// The station that signed it.
    pub station: String,
    /// How many changes the station holds in all.
    pub station_changes: u64,
}

/// A peer, as `status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PeerStatus {
    /// Where it was last reached.
    pub addr: Option<String>,
    /// The peer's device id.
    pub device_id: String,
    /// When the last sync with it completed (`None`: never).
    pub last_sync: Option<String>,
    /// Its name from its certificate.
    pub name: Option<String>,
}

/// Misbehaviour recorded against a device, as `status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MisbehaviourStatus {
    /// When this node recorded it.
    pub at: String,
    /// The evidence, for people.
    pub detail: String,
    /// The device that misbehaved.
    pub device_id: String,
    /// What it did (`equivocation`).
    pub kind: String,
}

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
    /// Where this node stands: everything `status` shows, read at once.
    pub fn status(&self) -> Result<Status, ReadError> {
        let ident = self.identity();
        let at = |ms: i64| Time::from_millis(ms).to_rfc3339();
        let (tickets, visits) = self.record_counts()?;
        let (conflicts, rejected) = self.conflict_and_rejected_counts()?;
        Ok(Status {
            conflicts,
            device_id: ident.device_id.to_string(),
            misbehaviour: self
                .misbehaviour()?
                .into_iter()
                .map(|m| MisbehaviourStatus {
                    at: at(m.at_ms),
                    detail: m.detail,
                    device_id: m.device.to_string(),
                    kind: m.kind,
                })
                .collect(),
            name: ident.name.clone(),
            peers: self
                .peers()?
                .into_iter()
                .map(|p| PeerStatus {
                    addr: p.addr,
                    device_id: p.device.to_string(),
                    last_sync: p.last_sync_ms.map(at),
                    name: p.name,
                })
                .collect(),
            pending_to_station: self.pending_to_station()?,
            purged: self.purged_count()?,
            records: RecordCounts { tickets, visits },
            rejected,
            role: ident.role,
            site_id: ident.site_id.map(|s| s.to_string()),
            station_receipt: self
                .station_receipt_signed()?
                .map(|(station, r)| ReceiptStatus {
                    at: at(r.at_ms),
                    covers: r.covers,
                    station: station.to_string(),
                    station_changes: r.station_changes,
                }),
        })
    }

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

    /// Counts for `status`: (fields in conflict, rejected changes kept). The records in
    /// conflict are read from their own index (`records_in_conflict`), not by a scan of
    /// every record.
    pub fn conflict_and_rejected_counts(&self) -> Result<(u64, u64), ReadError> {
        Ok(self.store().conn().query_row(
            "SELECT (SELECT COALESCE(SUM(conflicts), 0) FROM records WHERE conflicts > 0),
                    (SELECT COUNT(*) FROM rejected)",
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `status --json` prints exactly these keys, in this order, with these value forms.
    #[test]
    fn status_json_keys_and_forms() {
        let status = Status {
            conflicts: 2,
            device_id: "aa".repeat(32),
            misbehaviour: vec![MisbehaviourStatus {
                at: "2026-12-01T08:00:00Z".into(),
                detail: "two changes".into(),
                device_id: "bb".repeat(32),
                kind: "equivocation".into(),
            }],
            name: "王芳".into(),
            peers: vec![PeerStatus {
                addr: None,
                device_id: "cc".repeat(32),
                last_sync: Some("2026-12-02T09:30:00Z".into()),
                name: Some("站".into()),
            }],
            pending_to_station: 3,
            purged: 0,
            records: RecordCounts {
                tickets: 4,
                visits: 5,
            },
            rejected: 1,
            role: Role::Volunteer,
            site_id: None,
            station_receipt: Some(ReceiptStatus {
                at: "2026-12-02T09:30:01Z".into(),
                covers: 7,
                station: "cc".repeat(32),
                station_changes: 70,
            }),
        };
        let expected = format!(
            concat!(
                r#"{{"conflicts":2,"device_id":"{a}","#,
                r#""misbehaviour":[{{"at":"2026-12-01T08:00:00Z","detail":"two changes","#,
                r#""device_id":"{b}","kind":"equivocation"}}],"name":"王芳","#,
                r#""peers":[{{"addr":null,"device_id":"{c}","#,
                r#""last_sync":"2026-12-02T09:30:00Z","name":"站"}}],"pending_to_station":3,"#,
                r#""purged":0,"#,
                r#""records":{{"tickets":4,"visits":5}},"rejected":1,"role":"volunteer","#,
                r#""site_id":null,"station_receipt":{{"at":"2026-12-02T09:30:01Z","#,
                r#""covers":7,"station":"{c}","station_changes":70}}}}"#
            ),
            a = "aa".repeat(32),
            b = "bb".repeat(32),
            c = "cc".repeat(32),
        );
        assert_eq!(serde_json::to_string(&status).unwrap(), expected);
        // The same keys as a `serde_json::Value` built from them (sorted maps).
        let value = serde_json::to_value(&status).unwrap();
        assert_eq!(serde_json::to_string(&value).unwrap(), expected);
        let none = Status {
            station_receipt: None,
            ..status
        };
        assert!(
            serde_json::to_string(&none)
                .unwrap()
                .ends_with(r#""site_id":null,"station_receipt":null}"#)
        );
    }
}

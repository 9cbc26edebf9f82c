//! The ledger for a store made before households existed: every visit and ticket is linked
//! to the household its grid and household text derive (the same id on every node, so
//! nodes that upgrade apart agree), and the households this node may write in are made,
//! each from what every node derives alike (its normalised address and its grid), so
//! that two nodes' makings merge without a conflict. Runs once, when the node opens, in
//! one transaction; it needs the device key to sign the new households, which the store
//! migrations do not have.

use std::collections::BTreeSet;

use rusqlite::params;
use yizhan_protocol::{DeviceKey, normalize_address};

use crate::error::WriteError;
use crate::identity::Identity;
use crate::local::{household_header, local_change};
use crate::model::Time;
use crate::records::{self, NewHousehold, Ticket, Visit};
use crate::store::docs::{has_doc, household_of};
use crate::store::{Store, set_meta};

/// The `meta` key set once this node's records are linked to households.
pub(crate) const LINKED: &str = "households_linked";

/// Links this node's older records to households and makes those households, once.
/// Returns how many households it made.
pub(crate) fn link_households(
    store: &mut Store,
    key: &DeviceKey,
    identity: &Identity,
) -> Result<usize, WriteError> {
    // Before joining a site there is no household to link to: its id derives from the site.
    if identity.site_id.is_none() || store.meta(LINKED)?.as_deref() == Some("1") {
        return Ok(0);
    }
    let site = identity.site_id.as_ref();
    let tx = store.write()?;
    let rows: Vec<(i64, u8, String)> = tx
        .prepare(
            "SELECT docno, kind, summary FROM records WHERE kind IN (1, 2) AND household IS NULL",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut wanted: BTreeSet<(String, String)> = BTreeSet::new();
    {
        let mut update = tx.prepare(
            "UPDATE records SET summary = ?2, household = ?3, due_ms = ?4 WHERE docno = ?1",
        )?;
        for (docno, kind, summary) in rows {
            let mut due_ms = None;
            let (summary, household, place) = if kind == 1 {
                let Ok(mut v) = serde_json::from_str::<Visit>(&summary) else {
                    continue;
                };
                v.household_id = household_of(None, v.grid.as_deref(), Some(&v.household), site);
                let place = v.grid.clone().map(|g| (g, v.household.clone()));
                let h = v.household_id.clone();
                (
                    serde_json::to_string(&v).expect("records serialise"),
                    h,
                    place,
                )
            } else {
                let Ok(mut t) = serde_json::from_str::<Ticket>(&summary) else {
                    continue;
                };
                t.household_id =
                    household_of(None, t.grid.as_deref(), t.household.as_deref(), site);
                let place = match (&t.grid, &t.household) {
                    (Some(g), Some(h)) if !h.trim().is_empty() => Some((g.clone(), h.clone())),
                    _ => None,
                };
                let h = t.household_id.clone();
                due_ms = t
                    .due
                    .as_deref()
                    .and_then(|d| d.parse::<Time>().ok())
                    .map(Time::millis);
                (
                    serde_json::to_string(&t).expect("records serialise"),
                    h,
                    place,
                )
            };
            update.execute(params![docno, summary, household, due_ms])?;
            if let Some((grid, text)) = place {
                wanted.insert((grid, normalize_address(&text)));
            }
        }
    }
    let mut made = 0;
    for (grid, address) in wanted {
        if address.is_empty() || identity.may_write_grid(Some(&grid)).is_err() {
            continue;
        }
        let header = household_header(identity, &grid, &address);
        let id = header.doc_id();
        if has_doc(&tx, id)? {
            continue;
        }
        let h = NewHousehold {
            address,
            grid: Some(grid),
            ..NewHousehold::default()
        };
        local_change(&tx, key, identity, header, None, |doc| {
            records::write_new_household(doc, id, &h, None)
        })?;
        made += 1;
    }
    set_meta(&tx, LINKED, "1")?;
    tx.commit()?;
    Ok(made)
}

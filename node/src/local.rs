//! One change made on this node: the document loaded (or started), changed with this
//! device as actor, signed and stored with its index row, inside the caller's transaction;
//! and finding or making the household a new record names. Below `write` (which builds
//! every local write on these) and `upgrade` (which makes the households of an older
//! store).

use automerge::transaction::CommitOptions;
use automerge::{ActorId, AutoCommit};
use rusqlite::{OptionalExtension, Transaction};
use yizhan_protocol::{DeviceKey, DocHeader, DocId, RecordKind, SignedChange, normalize_address};

use crate::error::{Refusal, WriteError};
use crate::identity::Identity;
use crate::model::Time;
use crate::records::{self, NewHousehold};
use crate::store::docs::{NewChange, has_doc, household_id, load_doc, persist};

/// Makes one change on this node inside `tx`: loads the document (or starts it), runs
/// `build` with this device as actor, commits, signs and persists.
pub(crate) fn local_change(
    tx: &Transaction<'_>,
    key: &DeviceKey,
    identity: &Identity,
    header: DocHeader,
    existing: Option<DocId>,
    build: impl FnOnce(&mut AutoCommit) -> Result<String, automerge::AutomergeError>,
) -> Result<(), WriteError> {
    let doc_id = header.doc_id();
    let mut doc = match existing {
        Some(id) => load_doc(tx, id)?,
        None => AutoCommit::new(),
    };
    doc.set_actor(ActorId::from(identity.device_id.as_bytes()));
    let message = build(&mut doc)?;
    let Some(_) = doc.commit_with(
        CommitOptions::default()
            .with_message(message)
            .with_time(Time::now().millis()),
    ) else {
        return Ok(());
    };
    let change = doc
        .get_last_local_change()
        .expect("a commit that returned a hash made a local change");
    let env = SignedChange::sign(key, identity.site_id, doc_id, &change);
    persist(
        tx,
        &header,
        &mut doc,
        &[NewChange {
            env,
            seq: change.seq(),
        }],
        identity.site_id.as_ref(),
    )?;
    Ok(())
}

/// The header of the household at `address` in `grid`, made by this node.
pub(crate) fn household_header(identity: &Identity, grid: &str, address: &str) -> DocHeader {
    DocHeader {
        kind: RecordKind::Household,
        author: identity.device_id,
        nonce: yizhan_protocol::household_nonce(identity.site_id.as_ref(), grid, address),
    }
}

/// Makes a household in `tx` (its grid already filled in): refused when the node holds
/// one at that address and grid already.
pub(crate) fn make_household_in(
    tx: &Transaction<'_>,
    key: &DeviceKey,
    identity: &Identity,
    h: &NewHousehold,
    added_at: Option<Time>,
) -> Result<DocId, WriteError> {
    if identity.site_id.is_none() {
        return Err(Refusal::NotJoined.into());
    }
    let grid = h
        .grid
        .as_deref()
        .ok_or(WriteError::from(Refusal::StationNeedsGrid))?;
    identity.may_write_grid(Some(grid))?;
    // Stored as every maker derives it, so that two makers' addresses merge as one value.
    let h = &NewHousehold {
        address: normalize_address(&h.address),
        ..h.clone()
    };
    let header = household_header(identity, grid, &h.address);
    let id = header.doc_id();
    if has_doc(tx, id)? {
        return Err(Refusal::HouseholdExists {
            grid: grid.to_string(),
            address: h.address.clone(),
            id: id.to_string(),
        }
        .into());
    }
    if was_purged(tx, id)? {
        return Err(Refusal::HouseholdMovedAway {
            grid: grid.to_string(),
            address: h.address.clone(),
            id: id.to_string(),
        }
        .into());
    }
    local_change(tx, key, identity, header, None, |doc| {
        records::write_new_household(doc, id, h, added_at)
    })?;
    Ok(id)
}

/// The household a new visit or ticket names by `value` (the contract's `--household`):
/// the address of a household of `grid`, else the id or a unique prefix of at least 6 hex
/// characters of a household this node holds (whose grid the record then takes; a
/// `grid_given` that differs is refused), else a new household at that address in `grid`,
/// made in `tx`. Returns the household's id (none for a record of no grid yet, which
/// names no household until it has one), its address and its grid.
pub(crate) fn household_for(
    tx: &Transaction<'_>,
    key: &DeviceKey,
    identity: &Identity,
    grid: Option<&str>,
    grid_given: bool,
    value: &str,
) -> Result<(Option<DocId>, String, Option<String>), WriteError> {
    if let Some(g) = grid
        && identity.site_id.is_some()
    {
        let id = household_id(identity.site_id.as_ref(), g, value);
        if has_doc(tx, id)? {
            let address = stored_address(tx, id)?.unwrap_or(value.to_string());
            return Ok((Some(id), address, Some(g.into())));
        }
        // A household whose address was edited since it was made.
        let wanted = normalize_address(value);
        let mut stmt = tx.prepare_cached(
            "SELECT doc_id, json_extract(summary, '$.address') FROM records
             WHERE kind = 3 AND grid = ?1",
        )?;
        let rows = stmt.query_map([g], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (raw, address) = row?;
            if normalize_address(&address) == wanted
                && let Some(id) = DocId::from_slice(&raw)
            {
                return Ok((Some(id), address, Some(g.into())));
            }
        }
    }
    let hexish =
        value.len() >= 6 && value.len() <= 32 && value.bytes().all(|b| b.is_ascii_hexdigit());
    if hexish {
        let prefix = value.to_ascii_lowercase();
        let found: Vec<(Vec<u8>, Option<String>, String)> = tx
            .prepare_cached(
                "SELECT doc_id, grid, json_extract(summary, '$.address') FROM records
                 WHERE kind = 3 AND substr(lower(hex(doc_id)), 1, ?2) = ?1 LIMIT 2",
            )?
            .query_map(rusqlite::params![prefix, prefix.len() as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        match found.as_slice() {
            [(raw, hgrid, address)] => {
                let id = DocId::from_slice(raw)
                    .ok_or_else(|| WriteError::from(Refusal::MalformedHousehold))?;
                if grid_given && grid != hgrid.as_deref() {
                    return Err(Refusal::HouseholdInOtherGrid {
                        id: id.to_string(),
                        grid: hgrid.as_deref().unwrap_or("-").to_string(),
                        given: grid.unwrap_or("-").to_string(),
                    }
                    .into());
                }
                return Ok((Some(id), address.clone(), hgrid.clone()));
            }
            [_, _] => {
                return Err(Refusal::HouseholdAmbiguous(value.to_string()).into());
            }
            _ => {}
        }
    }
    // Before joining, no household is made: its id derives from the site. The record is
    // linked when the node joins (`upgrade`).
    if grid.is_none() || identity.site_id.is_none() {
        return Ok((None, value.to_string(), grid.map(str::to_string)));
    }
    let new = NewHousehold {
        address: normalize_address(value),
        grid: grid.map(str::to_string),
        ..NewHousehold::default()
    };
    new.check()?;
    // A household this node dropped when it moved out of its grids: the record names it
    // where it is now, and this node does not start it again (its copy would stay in the
    // old grid, apart from everyone else's).
    let moved = household_id(identity.site_id.as_ref(), grid.unwrap_or_default(), value);
    if was_purged(tx, moved)? {
        return Ok((Some(moved), new.address, new.grid));
    }
    let id = make_household_in(tx, key, identity, &new, Some(Time::now()))?;
    Ok((Some(id), new.address, new.grid))
}

/// Whether this node dropped the record `id` because it left its scope (`purge`).
fn was_purged(tx: &Transaction<'_>, id: DocId) -> rusqlite::Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM purged WHERE doc_id = ?1")?
        .query_row([id.as_bytes().as_slice()], |_| Ok(()))
        .optional()?
        .is_some())
}

fn stored_address(tx: &Transaction<'_>, id: DocId) -> rusqlite::Result<Option<String>> {
    Ok(tx
        .prepare_cached(
            "SELECT json_extract(summary, '$.address') FROM records
             WHERE docno = (SELECT docno FROM doc_index WHERE doc_id = ?1)",
        )?
        .query_row([id.as_bytes().as_slice()], |r| r.get(0))
        .optional()?
        .flatten())
}

/// The header of the site's policy, made by this node.
pub(crate) fn policy_header(identity: &Identity) -> DocHeader {
    DocHeader {
        kind: RecordKind::Policy,
        author: identity.device_id,
        nonce: yizhan_protocol::policy_nonce(identity.site_id.as_ref()),
    }
}

//! The `envelope` target: one Automerge change as it arrives in a `WireChange`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::AutoCommit;
use yizhan_protocol::columns::MAX_CHANGE_OPS;
use yizhan_protocol::envelope::{MAX_CHANGE_BYTES, decode_change, signing_message};
use yizhan_protocol::identity::KeyCache;
use yizhan_protocol::wire::WireChange;
use yizhan_protocol::{DeviceId, DocId, SignedChange};

use super::common::{Input, install_panic_hook, keys, site};
use super::shape::{Runs, chunk_hash, count_agrees, shape_change};

/// `envelope`: byte 0 holds options, the rest is an Automerge change chunk, as it would
/// arrive in a `WireChange`. The change is rebuilt into an envelope (decoded, panics
/// contained), verified strictly, and if it verifies, applied to an empty document, saved
/// and loaded again, with the panics contained as the node contains them.
///
/// Option bits 0-1 pick the signature: 0 the key of the change's actor when it is one of
/// the test keys (so the signature is right and verification reaches the end), 1 a test
/// key by bits 2-3, 2 and 3 all zeros. Bit 4 signs with no site. The bytes are shaped
/// ([`shape_change`]) first: bits 6-7 rewrite the first run of every column (1), of the
/// action column (2) or of every other column (3) to declare `1`, `MAX_CHANGE_OPS`, one
/// more, or `i64::MAX` rows (by bits 2-3); and the framing is repaired unless bit 5 is set.
pub fn envelope(data: &[u8]) {
    install_panic_hook();
    let mut input = Input(data);
    let opts = input.u8();
    let count =
        [1, MAX_CHANGE_OPS, MAX_CHANGE_OPS + 1, i64::MAX as u64][usize::from(opts >> 2 & 3)];
    let rewrite = match opts >> 6 {
        0 => None,
        1 => Some((count, Runs::All)),
        2 => Some((count, Runs::Action)),
        _ => Some((count, Runs::Others)),
    };
    let bytes = shape_change(input.bytes(usize::MAX), rewrite, opts & 0x20 == 0);
    let doc = DocId::from_bytes([0x5a; 16]);
    let sign_site = (opts & 0x10 == 0).then(site);
    let all = keys::all();
    let decoded = decode_change(&bytes);
    if let Ok(change) = &decoded {
        count_agrees(&bytes, change);
        first_change_agrees(change);
    }
    let signature = match opts & 3 {
        0 | 1 => {
            let key = decoded
                .as_ref()
                .ok()
                .filter(|_| opts & 3 == 0)
                .and_then(|c| {
                    all.iter()
                        .find(|k| k.device_id().as_bytes().as_slice() == c.actor_id().to_bytes())
                })
                .unwrap_or(&all[usize::from(opts >> 2) & 3]);
            let hash = decoded
                .as_ref()
                .map_or_else(|_| chunk_hash(&bytes), |c| c.hash().0);
            key.sign(&signing_message(
                sign_site,
                doc,
                yizhan_protocol::ChangeHash(hash),
            ))
        }
        _ => [0; 64],
    };
    let wire = WireChange {
        signature,
        bytes: bytes.clone(),
    };
    let rebuilt = wire.clone().into_envelope(doc);
    // What is refused comes back as it came (a receiver keeps it in its rejected table).
    if let Err(refused) = &rebuilt {
        assert_eq!(refused.change, wire, "a refused change came back altered");
    }
    if bytes.len() > MAX_CHANGE_BYTES {
        assert!(rebuilt.is_err());
        return;
    }
    assert_eq!(
        rebuilt.is_ok(),
        decoded
            .as_ref()
            .is_ok_and(|c| DeviceId::from_slice(c.actor_id().to_bytes()).is_ok()),
        "rebuilding disagrees with decoding"
    );
    let Ok((env, change)) = rebuilt else { return };
    assert_eq!(env.hash, change.hash().into());
    assert_eq!(
        env.signer.as_bytes().as_slice(),
        change.actor_id().to_bytes()
    );
    // The same check two ways: decoding the bytes, and taking the decoding just made.
    let verify = |items: Vec<(SignedChange, Option<automerge::Change>)>| {
        SignedChange::verify_many(items, Some(site()), &mut KeyCache::default())
    };
    let plain = verify(vec![(env.clone(), None)]).remove(0);
    let decoded = verify(vec![(env.clone(), Some(change.clone()))]).remove(0);
    assert_eq!(plain.is_ok(), decoded.is_ok());
    // And four times over in one batch, which must say the same of each.
    let many = verify(vec![
        (env.clone(), None);
        yizhan_protocol::identity::BATCH_MIN
    ]);
    assert!(many.iter().all(|r| r.is_ok() == plain.is_ok()));
    // A claimed hash other than the real one is refused.
    let mut wrong = env.clone();
    wrong.hash.0[0] ^= 1;
    assert!(verify(vec![(wrong, None)]).remove(0).is_err());
    let verified = match plain {
        Ok(v) => v,
        Err(e) => {
            if opts & 0x13 == 0 && all.iter().any(|k| k.device_id() == env.signer) {
                panic!("a change signed by its actor's key does not verify: {e}");
            }
            return;
        }
    };
    // Apply as ingest does, then save and load as the store does.
    let mut am = AutoCommit::new();
    let applied = catch_unwind(AssertUnwindSafe(|| {
        am.apply_changes([verified.change.clone()])
    }));
    if !matches!(applied, Ok(Ok(()))) {
        return;
    }
    let saved = catch_unwind(AssertUnwindSafe(|| am.save()));
    if let Ok(saved) = saved {
        let _ = catch_unwind(|| AutoCommit::load(&saved));
    }
}

/// A change that `Root::of_first_change` reads (as ingest does for a new document) must be
/// one that Automerge applies to an empty document, to the same root map and within the
/// nesting limit: otherwise the station would store a record other nodes refuse or read
/// differently.
fn first_change_agrees(change: &automerge::Change) {
    use yizhan_node::records::Root;
    // Expanding a change's operations is Automerge's code: a panic there is contained (as
    // in ingest, which then applies the change with Automerge).
    let Ok(Some(root)) = catch_unwind(|| Root::of_first_change(change)) else {
        return;
    };
    let mut doc = AutoCommit::new();
    let applied = catch_unwind(AssertUnwindSafe(|| doc.apply_changes([change.clone()])));
    assert!(
        matches!(applied, Ok(Ok(()))),
        "a change read as a first change does not apply"
    );
    assert!(automerge::ReadDoc::get_missing_deps(&doc, &[]).is_empty());
    assert_eq!(root, Root::read(&doc), "a first change read differently");
    assert!(yizhan_node::ingest::rules::nesting(&doc).is_ok());
}

//! Shaped changes: fuzzed change bytes made to get past the chunk framing, for the
//! `envelope` and `ingest` targets (docs/fuzzing.md, "Shaped changes").

use yizhan_protocol::columns::MAX_CHANGE_OPS;

/// The row counts a structure-aware mutation writes into a change's run headers: none,
/// small, around the per-change limit, and far over it.
pub(super) const RUN_COUNTS: [u64; 8] = [
    0,
    1,
    2,
    MAX_CHANGE_OPS - 1,
    MAX_CHANGE_OPS,
    MAX_CHANGE_OPS + 1,
    1 << 24,
    i64::MAX as u64,
];

/// Which columns [`shape_change`] rewrites the first run of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runs {
    /// Every column (the raw value column has no runs).
    All,
    /// The action column: the number of operations.
    Action,
    /// Every column but the action column.
    Others,
    /// The first column.
    First,
}

/// Shapes fuzzed change bytes so that they get past the chunk framing to the column
/// counter, Automerge's decoder and `apply`: with `rewrite`, the first run header of the
/// chosen columns is made to declare that many rows (each column's length in the metadata
/// following); then, with `repair`, the chunk is framed anew: the body's length and the
/// checksum (so the hash the signature covers) made right for the body it has. Bytes that
/// are not an uncompressed change chunk are left as they are.
pub fn shape_change(bytes: &[u8], rewrite: Option<(u64, Runs)>, repair: bool) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if let Some((count, which)) = rewrite
        && let Some(rewritten) = rewrite_runs(bytes, count, which)
    {
        out = rewritten;
    }
    if repair && out.len() > 9 && out[8] == 1 {
        let mut rest = &out[9..];
        if leb128::read::unsigned(&mut rest).is_ok() {
            out = yizhan_protocol::columns::frame_change(rest).0;
        }
    }
    out
}

fn rewrite_runs(bytes: &[u8], count: u64, which: Runs) -> Option<Vec<u8>> {
    let layout = yizhan_protocol::columns::change_layout(bytes).ok()?;
    let mut body = bytes[layout.body.start..layout.meta.start].to_vec();
    let mut datas = Vec::new();
    for (i, col) in layout.columns.iter().enumerate() {
        let data = &bytes[col.data.clone()];
        let action = col.id() == 4 && col.col_type() == 2;
        let chosen = match which {
            Runs::All => true,
            Runs::Action => action,
            Runs::Others => !action,
            Runs::First => i == 0,
        };
        datas.push(if chosen {
            rewrite_first_run(col.col_type(), data, count)
        } else {
            data.to_vec()
        });
    }
    let leb = |out: &mut Vec<u8>, n: u64| {
        leb128::write::unsigned(out, n).expect("writes to a Vec");
    };
    leb(&mut body, layout.columns.len() as u64);
    for (col, data) in layout.columns.iter().zip(&datas) {
        leb(&mut body, u64::from(col.spec));
        leb(&mut body, data.len() as u64);
    }
    for data in &datas {
        body.extend_from_slice(data);
    }
    let end = layout
        .columns
        .last()
        .map_or(layout.meta.end, |c| c.data.end);
    body.extend_from_slice(&bytes[end..layout.body.end]);
    Some(yizhan_protocol::columns::frame_change(&body).0)
}

/// A column's data with its first run header declaring `count` rows (a run of values, or
/// of nulls when the first run is one; the first run of `false` in a boolean column).
fn rewrite_first_run(col_type: u8, data: &[u8], count: u64) -> Vec<u8> {
    let mut rest = data;
    let mut out = Vec::new();
    match col_type {
        7 => return data.to_vec(),
        4 => {
            if leb128::read::unsigned(&mut rest).is_err() {
                return data.to_vec();
            }
            leb128::write::unsigned(&mut out, count).expect("writes to a Vec");
        }
        _ => {
            let Ok(n) = leb128::read::signed(&mut rest) else {
                return data.to_vec();
            };
            if n == 0 {
                if leb128::read::unsigned(&mut rest).is_err() {
                    return data.to_vec();
                }
                out.push(0);
                leb128::write::unsigned(&mut out, count).expect("writes to a Vec");
            } else {
                let count = i64::try_from(count).unwrap_or(i64::MAX);
                leb128::write::signed(&mut out, count).expect("writes to a Vec");
            }
        }
    }
    out.extend_from_slice(rest);
    out
}

/// The hash Automerge gives a well-framed change chunk (SHA-256 of everything after the
/// checksum), computed without decoding it, so that a change refused before decoding can
/// still carry a right signature.
pub(super) fn chunk_hash(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    bytes
        .get(8..)
        .map_or([0; 32], |b| sha2::Sha256::digest(b).into())
}

/// What every decoded change must satisfy: its operations are the ones counted from its
/// run headers, within the limit.
pub(super) fn count_agrees(bytes: &[u8], change: &automerge::Change) {
    let counted = yizhan_protocol::columns::declared_ops(bytes, MAX_CHANGE_OPS);
    assert_eq!(
        counted,
        Ok(change.len() as u64),
        "the operations counted before decoding are not the ones Automerge decoded"
    );
}

//! The cost of an Automerge change, read from its column headers before it is decoded.
//!
//! Automerge stores a change's operations in columns, most of them run-length encoded: a
//! run header of a few bytes can stand for millions of equal values. A change chunk of two
//! hundred bytes can so declare ten million operations, which Automerge's decoder then
//! walks one by one and `apply_changes` materialises (about 200 bytes each). The functions
//! here read only the chunk header, the column metadata and the run headers, and count the
//! rows every column declares, without materialising a single operation;
//! [`crate::envelope::decode_change`] refuses a change over [`MAX_CHANGE_OPS`] before
//! Automerge sees its bytes.
//!
//! The layout, as Automerge 0.12 writes and reads it (`docs/protocol.md` §3.3):
//!
//! ```text
//! chunk   = magic(4) checksum(4) type(1) uLEB(len) body(len)
//! body    = uLEB(ndeps) hash(32)*ndeps  actor  uLEB(seq) uLEB(start_op) sLEB(time)
//!           uLEB(msglen) msg  uLEB(nactors) actor*nactors
//!           uLEB(ncols) (uLEB(spec) uLEB(collen))*ncols  coldata...  extra
//! actor   = uLEB(len) bytes(len)
//! spec    = column id << 4 | deflate << 3 | type
//! ```
//!
//! Column types and how many rows their data declares:
//!
//! - run-length columns (group 0, actor 1, integer 2, delta 3, string 5, value metadata
//!   6): a sequence of runs, each an sLEB count `n`: `n > 0` is one value repeated `n`
//!   times, `n < 0` is `-n` literal values, `n == 0` is followed by a uLEB count of
//!   nulls. A value is a uLEB (group, actor, integer, value metadata), an sLEB (delta), or a
//!   uLEB length and that many bytes (string).
//! - boolean columns (4): uLEB run lengths, alternately of `false` and `true`.
//! - raw value columns (7): bytes sliced by the lengths in the value metadata column, not
//!   rows; they cannot declare more than they hold.
//!
//! The number of operations is the number of rows of the action column (id 4, integer):
//! Automerge's decoder reads operations until that column ends. Every other column is read
//! once per operation, except the predecessor columns (id 7, actor and delta), which are
//! read as many times as the group column says for each operation: bounding the rows of
//! every column bounds the whole decoding.

use std::ops::Range;

/// The most operations one change may declare, and the most rows any of its columns may.
///
/// Sized from the record model (`node/src/records.rs`, scalar text: a note is one
/// operation whatever its length): the largest change a node writes is a new visit with
/// its 8 fields, a list of 100 residents (101 operations) and a map of up to 256 linked
/// tickets (257): 366 operations. A ticket is at most 12, a comment 4. The limit leaves a
/// margin of almost three over that. A change at the limit takes Automerge about 180 µs
/// to decode, a message of `MAX_CHANGES_PER_MESSAGE` of them about 1.5 s (measured on a
/// loaded 2-core machine, `tests::cost_of_the_count_against_decoding`).
pub const MAX_CHANGE_OPS: u64 = 1024;

/// The Automerge magic bytes at the start of every chunk.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// The column id of the action column.
const ACTION_COL: u32 = 4;
/// The type of an integer column.
const INTEGER: u8 = 2;

/// Why a change's columns could not be counted, or were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpCountError {
    /// The bytes end inside the chunk.
    #[error("change chunk is truncated")]
    Truncated,
    /// The bytes are not a change chunk as Automerge writes one.
    #[error("{0}")]
    Malformed(&'static str),
    /// A column declares more rows than the limit.
    #[error("change declares more than {limit} operations (column {column})")]
    TooMany {
        /// The column's spec.
        column: u32,
        /// The limit it went over.
        limit: u64,
    },
}

/// One column of a change chunk: its spec and where its data lies in the chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column's spec (`id << 4 | deflate << 3 | type`).
    pub spec: u32,
    /// Its data, as a range of the whole chunk's bytes.
    pub data: Range<usize>,
}

impl Column {
    /// The column's id.
    pub fn id(&self) -> u32 {
        self.spec >> 4
    }

    /// The column's type (0 group, 1 actor, 2 integer, 3 delta, 4 boolean, 5 string,
    /// 6 value metadata, 7 value).
    pub fn col_type(&self) -> u8 {
        (self.spec & 7) as u8
    }

    /// Whether the column says it is deflated (a change may not be).
    pub fn deflated(&self) -> bool {
        self.spec & 8 != 0
    }
}

/// The parts of a change chunk that frame its operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeLayout {
    /// The chunk's body (after the header's length), as a range of the chunk.
    pub body: Range<usize>,
    /// The column metadata (the column count, then each spec and length), as a range of
    /// the chunk; the columns' data follows it.
    pub meta: Range<usize>,
    /// Its columns, in the order of the metadata.
    pub columns: Vec<Column>,
}

/// A reader over hostile bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn uleb(&mut self) -> Result<u64, OpCountError> {
        leb128::read::unsigned(&mut self.bytes).map_err(leb_error)
    }

    fn sleb(&mut self) -> Result<i64, OpCountError> {
        leb128::read::signed(&mut self.bytes).map_err(leb_error)
    }

    fn skip(&mut self, n: u64) -> Result<(), OpCountError> {
        let n = usize::try_from(n).map_err(|_| OpCountError::Truncated)?;
        if n > self.bytes.len() {
            return Err(OpCountError::Truncated);
        }
        self.bytes = &self.bytes[n..];
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

fn leb_error(e: leb128::read::Error) -> OpCountError {
    match e {
        leb128::read::Error::IoError(_) => OpCountError::Truncated,
        leb128::read::Error::Overflow => OpCountError::Malformed("LEB128 number too large"),
    }
}

/// Reads a change chunk's header and column metadata (nothing of the columns' data).
pub fn change_layout(chunk: &[u8]) -> Result<ChangeLayout, OpCountError> {
    if chunk.len() < 9 {
        return Err(OpCountError::Truncated);
    }
    if chunk[..4] != MAGIC {
        return Err(OpCountError::Malformed("not an Automerge chunk"));
    }
    if chunk[8] != 1 {
        return Err(OpCountError::Malformed("not an uncompressed change chunk"));
    }
    let mut r = Reader { bytes: &chunk[9..] };
    let len = r.uleb()?;
    let start = chunk.len() - r.bytes.len();
    let len = usize::try_from(len).map_err(|_| OpCountError::Truncated)?;
    if len > r.bytes.len() {
        return Err(OpCountError::Truncated);
    }
    let body = start..start + len;
    let mut r = Reader {
        bytes: &chunk[body.clone()],
    };
    let deps = r.uleb()?;
    r.skip(deps.checked_mul(32).ok_or(OpCountError::Truncated)?)?;
    let actor = r.uleb()?;
    r.skip(actor)?;
    r.uleb()?; // seq
    r.uleb()?; // start op
    r.sleb()?; // time
    let message = r.uleb()?;
    r.skip(message)?;
    let others = r.uleb()?;
    for _ in 0..others {
        let actor = r.uleb()?;
        r.skip(actor)?;
    }
    // Offsets in the chunk: the body reader holds a suffix of the body, which may be
    // followed by bytes that are not part of it.
    let meta_start = body.end - r.bytes.len();
    let ncols = r.uleb()?;
    let mut specs = Vec::new();
    for _ in 0..ncols {
        // Each entry takes at least two bytes: a count beyond the body ends here.
        let spec = u32::try_from(r.uleb()?).map_err(|_| OpCountError::Malformed("bad spec"))?;
        let len = r.uleb()?;
        specs.push((spec, len));
    }
    let meta = meta_start..body.end - r.bytes.len();
    let mut offset = meta.end;
    let mut columns = Vec::with_capacity(specs.len());
    for (spec, len) in specs {
        let len = usize::try_from(len).map_err(|_| OpCountError::Truncated)?;
        let end = offset.checked_add(len).ok_or(OpCountError::Truncated)?;
        if end > body.end {
            return Err(OpCountError::Truncated);
        }
        columns.push(Column {
            spec,
            data: offset..end,
        });
        offset = end;
    }
    Ok(ChangeLayout {
        body,
        meta,
        columns,
    })
}

/// Counts the rows a column's data declares, refusing more than `limit` as soon as the
/// count passes it (so the time taken is bounded by the data's length, never by the
/// counts it declares). Raw value columns (type 7) hold no rows and count 0.
pub fn count_rows(col_type: u8, data: &[u8], limit: u64) -> Result<u64, OpCountError> {
    let mut r = Reader { bytes: data };
    let mut rows: u64 = 0;
    let over = || OpCountError::TooMany {
        column: u32::from(col_type),
        limit,
    };
    let add = |rows: &mut u64, n: u64| -> Result<(), OpCountError> {
        *rows = rows
            .checked_add(n)
            .filter(|&t| t <= limit)
            .ok_or_else(over)?;
        Ok(())
    };
    match col_type {
        7 => return Ok(0),
        4 => {
            while !r.is_empty() {
                let n = r.uleb()?;
                add(&mut rows, n)?;
            }
        }
        0..=3 | 5 | 6 => {
            let value = |r: &mut Reader<'_>| -> Result<(), OpCountError> {
                match col_type {
                    3 => r.sleb().map(drop),
                    5 => {
                        let len = r.uleb()?;
                        r.skip(len)
                    }
                    _ => r.uleb().map(drop),
                }
            };
            while !r.is_empty() {
                let n = r.sleb()?;
                if n > 0 {
                    add(&mut rows, n.unsigned_abs())?;
                    value(&mut r)?;
                } else if n < 0 {
                    add(&mut rows, n.unsigned_abs())?;
                    for _ in 0..n.unsigned_abs() {
                        value(&mut r)?;
                    }
                } else {
                    let nulls = r.uleb()?;
                    add(&mut rows, nulls)?;
                }
            }
        }
        _ => return Err(OpCountError::Malformed("unknown column type")),
    }
    Ok(rows)
}

/// The number of operations a change chunk declares, having checked that no column of it
/// declares more than `limit` rows (see the module docs). A deflated column is refused,
/// as Automerge refuses it in a change.
pub fn declared_ops(chunk: &[u8], limit: u64) -> Result<u64, OpCountError> {
    let layout = change_layout(chunk)?;
    let mut ops = 0;
    for col in &layout.columns {
        if col.deflated() {
            return Err(OpCountError::Malformed("change contains a deflated column"));
        }
        let rows =
            count_rows(col.col_type(), &chunk[col.data.clone()], limit).map_err(|e| match e {
                OpCountError::TooMany { limit, .. } => OpCountError::TooMany {
                    column: col.spec,
                    limit,
                },
                e => e,
            })?;
        if col.id() == ACTION_COL && col.col_type() == INTEGER {
            ops = rows;
        }
    }
    Ok(ops)
}

/// Frames a change chunk's body: magic, the checksum (the first four bytes of the hash),
/// the chunk type of an uncompressed change, the body's length, the body. The hash is
/// Automerge's: SHA-256 over the type, the length and the body. Used to build and repair
/// changes in tests and fuzzing; returns the chunk and its hash.
pub fn frame_change(body: &[u8]) -> (Vec<u8>, [u8; 32]) {
    use sha2::{Digest, Sha256};
    let mut head = vec![1u8];
    leb128::write::unsigned(&mut head, body.len() as u64).expect("writes to a Vec");
    let mut hasher = Sha256::new();
    hasher.update(&head);
    hasher.update(body);
    let hash: [u8; 32] = hasher.finalize().into();
    let mut chunk = Vec::with_capacity(8 + head.len() + body.len());
    chunk.extend_from_slice(&MAGIC);
    chunk.extend_from_slice(&hash[..4]);
    chunk.extend_from_slice(&head);
    chunk.extend_from_slice(body);
    (chunk, hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{VerifyError, decode_change};
    use automerge::transaction::Transactable;
    use automerge::{ActorId, AutoCommit, ObjType, ROOT};

    fn uleb(out: &mut Vec<u8>, n: u64) {
        leb128::write::unsigned(out, n).unwrap();
    }
    fn sleb(out: &mut Vec<u8>, n: i64) {
        leb128::write::signed(out, n).unwrap();
    }

    /// A change of `n` operations `put(ROOT, "x", true)` with no predecessors, every column
    /// one run: a few dozen bytes whatever `n`.
    fn bomb(n: u64) -> Vec<u8> {
        let mut cols: Vec<(u32, Vec<u8>)> = Vec::new();
        let mut key = Vec::new();
        sleb(&mut key, n as i64);
        uleb(&mut key, 1);
        key.push(b'x');
        cols.push((0x15, key)); // key string
        let mut insert = Vec::new();
        uleb(&mut insert, n);
        cols.push((0x34, insert)); // insert: n times false
        let mut action = Vec::new();
        sleb(&mut action, n as i64);
        uleb(&mut action, 1); // set
        cols.push((0x42, action));
        let mut meta = Vec::new();
        sleb(&mut meta, n as i64);
        uleb(&mut meta, 2); // true, no bytes
        cols.push((0x56, meta));
        let mut pred = Vec::new();
        sleb(&mut pred, n as i64);
        uleb(&mut pred, 0);
        cols.push((0x70, pred));
        let mut body = Vec::new();
        uleb(&mut body, 0); // deps
        uleb(&mut body, 32);
        body.extend_from_slice(&[7; 32]); // actor
        uleb(&mut body, 1); // seq
        uleb(&mut body, 1); // start op
        sleb(&mut body, 0); // time
        uleb(&mut body, 0); // message
        uleb(&mut body, 0); // other actors
        uleb(&mut body, cols.len() as u64);
        for (spec, data) in &cols {
            uleb(&mut body, u64::from(*spec));
            uleb(&mut body, data.len() as u64);
        }
        for (_, data) in &cols {
            body.extend_from_slice(data);
        }
        frame_change(&body).0
    }

    fn runs(parts: &[(i64, &[u64])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, values) in parts {
            sleb(&mut out, *n);
            for v in *values {
                uleb(&mut out, *v);
            }
        }
        out
    }

    #[test]
    fn counts_runs_literals_and_nulls() {
        // A run of 5, a literal of 3, a null run of 4.
        let mut data = runs(&[(5, &[9]), (-3, &[1, 2, 300])]);
        sleb(&mut data, 0);
        uleb(&mut data, 4);
        assert_eq!(count_rows(2, &data, 100), Ok(12));
        assert_eq!(
            count_rows(2, &data, 11),
            Err(OpCountError::TooMany {
                column: 2,
                limit: 11
            })
        );
        assert_eq!(count_rows(2, &[], 10), Ok(0));
        // Delta columns hold signed values; strings a length and bytes.
        let mut delta = Vec::new();
        sleb(&mut delta, -2);
        sleb(&mut delta, -70);
        sleb(&mut delta, 64);
        assert_eq!(count_rows(3, &delta, 10), Ok(2));
        let mut strings = Vec::new();
        sleb(&mut strings, -2);
        uleb(&mut strings, 2);
        strings.extend_from_slice(b"ab");
        uleb(&mut strings, 0);
        sleb(&mut strings, 7);
        uleb(&mut strings, 1);
        strings.push(b'c');
        assert_eq!(count_rows(5, &strings, 10), Ok(9));
        // Booleans: alternating run lengths.
        let mut bools = Vec::new();
        for n in [0, 3, 4] {
            uleb(&mut bools, n);
        }
        assert_eq!(count_rows(4, &bools, 10), Ok(7));
        // Raw values are not rows.
        assert_eq!(count_rows(7, &[0xff; 20], 0), Ok(0));
    }

    #[test]
    fn truncated_and_oversized_encodings_are_refused_not_counted() {
        // A run without its value, a literal short of its values, a string short of its
        // bytes, a null run without its count, a LEB128 number that never ends.
        assert_eq!(
            count_rows(2, &runs(&[(5, &[])]), 100),
            Err(OpCountError::Truncated)
        );
        assert_eq!(
            count_rows(2, &runs(&[(-3, &[1, 2])]), 100),
            Err(OpCountError::Truncated)
        );
        let mut s = Vec::new();
        sleb(&mut s, 1);
        uleb(&mut s, 10);
        s.extend_from_slice(b"abc");
        assert_eq!(count_rows(5, &s, 100), Err(OpCountError::Truncated));
        assert_eq!(count_rows(2, &[0], 100), Err(OpCountError::Truncated));
        assert_eq!(count_rows(2, &[0x80; 5], 100), Err(OpCountError::Truncated));
        let mut too_long = vec![0xff; 10];
        too_long.push(0x7f);
        assert!(count_rows(2, &too_long, 100).is_err());
        assert!(count_rows(2, &[0xff; 11], 100).is_err());
        // Sums that overflow a u64 are over any limit, not wrapped.
        let mut nulls = Vec::new();
        for _ in 0..3 {
            sleb(&mut nulls, 0);
            uleb(&mut nulls, u64::MAX);
        }
        assert!(matches!(
            count_rows(2, &nulls, u64::MAX),
            Err(OpCountError::TooMany { .. })
        ));
        let mut bools = Vec::new();
        uleb(&mut bools, u64::MAX);
        uleb(&mut bools, 1);
        assert!(matches!(
            count_rows(4, &bools, u64::MAX),
            Err(OpCountError::TooMany { .. })
        ));
        // A literal run of i64::MIN values: refused at its header, not walked.
        let mut lit = Vec::new();
        sleb(&mut lit, i64::MIN);
        assert!(matches!(
            count_rows(2, &lit, MAX_CHANGE_OPS),
            Err(OpCountError::TooMany { .. })
        ));
    }

    #[test]
    fn counts_what_automerge_decodes_for_real_changes() {
        let mut doc = AutoCommit::new().with_actor(ActorId::from([3u8; 32]));
        doc.put(ROOT, "household", "和平里 3-2-101").unwrap();
        let list = doc.put_object(ROOT, "residents", ObjType::List).unwrap();
        for i in 0..100 {
            doc.insert(&list, i, "张大爷").unwrap();
        }
        doc.commit();
        doc.put(ROOT, "note", "x".repeat(64 * 1024)).unwrap();
        doc.delete(&list, 3).unwrap();
        let c = doc.put_object(ROOT, "comments", ObjType::List).unwrap();
        let m = doc.insert_object(&c, 0, ObjType::Map).unwrap();
        doc.put(&m, "text", "已报修").unwrap();
        doc.commit();
        for change in doc.get_changes(&[]) {
            let bytes = change.raw_bytes();
            assert_eq!(declared_ops(bytes, MAX_CHANGE_OPS), Ok(change.len() as u64));
            assert!(decode_change(bytes).is_ok());
        }
    }

    #[test]
    fn an_operation_bomb_is_refused_before_decoding() {
        // Small ones decode: the hand-made layout is one Automerge accepts.
        let small = bomb(3);
        assert_eq!(declared_ops(&small, MAX_CHANGE_OPS), Ok(3));
        assert_eq!(decode_change(&small).unwrap().len(), 3);
        let at_limit = bomb(MAX_CHANGE_OPS);
        assert_eq!(
            decode_change(&at_limit).unwrap().len() as u64,
            MAX_CHANGE_OPS
        );
        // Ten million operations in well under a hundred bytes: refused, as is one more
        // than the limit.
        for n in [MAX_CHANGE_OPS + 1, 10_000_000, i64::MAX as u64] {
            let b = bomb(n);
            assert!(b.len() < 120, "{} bytes", b.len());
            assert_eq!(
                decode_change(&b).unwrap_err(),
                VerifyError::TooManyOps(MAX_CHANGE_OPS)
            );
        }
    }

    /// What the count costs on an ordinary change, against Automerge's decoding of it
    /// alone: printed, not asserted (`cargo test -p yizhan-protocol cost_of -- --nocapture`;
    /// with `CARGO_PROFILE_DEV_OPT_LEVEL=2` this crate is optimised as its dependencies are).
    #[test]
    fn cost_of_the_count_against_decoding() {
        let mut doc = AutoCommit::new().with_actor(ActorId::from([3u8; 32]));
        doc.put(ROOT, "kind", "visit").unwrap();
        doc.put(ROOT, "household", "和平里 3-2-101").unwrap();
        doc.put(ROOT, "note", "独居老人，需要定期探访").unwrap();
        doc.put(ROOT, "visited_at", "2026-12-07T15:00:00+08:00")
            .unwrap();
        let list = doc.put_object(ROOT, "residents", ObjType::List).unwrap();
        doc.insert(&list, 0, "张大爷").unwrap();
        doc.insert(&list, 1, "张奶奶").unwrap();
        doc.commit();
        let change = doc.get_last_local_change().unwrap();
        let bytes = change.raw_bytes().to_vec();
        let rounds = 20_000;
        let time = |f: &dyn Fn()| {
            let start = std::time::Instant::now();
            for _ in 0..rounds {
                f();
            }
            start.elapsed()
        };
        let count = time(&|| {
            std::hint::black_box(declared_ops(std::hint::black_box(&bytes), MAX_CHANGE_OPS))
                .unwrap();
        });
        let decode = time(&|| {
            std::hint::black_box(automerge::Change::try_from(std::hint::black_box(
                &bytes[..],
            )))
            .unwrap();
        });
        println!(
            "a change of {} operations, {} bytes: count {:?}, decode {:?} a change; \
             count / decode = {:.3}",
            change.len(),
            bytes.len(),
            count / rounds,
            decode / rounds,
            count.as_secs_f64() / decode.as_secs_f64()
        );
        // The most a page can make a receiver decode: MAX_CHANGES_PER_MESSAGE changes at the
        // limit.
        let at_limit = bomb(MAX_CHANGE_OPS);
        let start = std::time::Instant::now();
        for _ in 0..100 {
            std::hint::black_box(decode_change(std::hint::black_box(&at_limit))).unwrap();
        }
        let one = start.elapsed() / 100;
        println!(
            "a change of {MAX_CHANGE_OPS} operations decodes in {one:?}; a page of {} such: {:?}",
            crate::wire::MAX_CHANGES_PER_MESSAGE,
            one * crate::wire::MAX_CHANGES_PER_MESSAGE as u32
        );
    }

    #[test]
    fn the_layout_is_read_and_bad_framing_refused() {
        let b = bomb(3);
        let layout = change_layout(&b).unwrap();
        assert_eq!(layout.body.end, b.len());
        // Bytes after the body (Automerge refuses them) move nothing of the layout.
        let mut trailing = b.clone();
        trailing.extend_from_slice(&[0x7f; 40]);
        assert_eq!(change_layout(&trailing), Ok(layout.clone()));
        assert_eq!(declared_ops(&trailing, MAX_CHANGE_OPS), Ok(3));
        let ids: Vec<u32> = layout.columns.iter().map(Column::id).collect();
        assert_eq!(ids, [1, 3, 4, 5, 7]);
        for cut in [0, 8, 9, b.len() - 1] {
            assert!(
                declared_ops(&b[..cut], MAX_CHANGE_OPS).is_err(),
                "cut at {cut}"
            );
        }
        let mut deflated = b.clone();
        let layout = change_layout(&deflated).unwrap();
        // The first spec follows the column count (one byte here): set its deflate bit.
        let at = layout.meta.start + 1;
        assert_eq!(deflated[at], 0x15);
        deflated[at] |= 8;
        assert!(matches!(
            declared_ops(&deflated, MAX_CHANGE_OPS),
            Err(OpCountError::Malformed(_))
        ));
    }
}

//! A short, deterministic run of every fuzz target on stable Rust: each target's body
//! (`yizhan_tests::fuzz_targets`) runs over every file of its kept corpus
//! (`fuzz/corpus/<target>/`) and crashers (`fuzz/regressions/<target>/`), then over
//! inputs mutated from those files with a seeded random source. A panic in a body is a
//! failure, reported with the input that caused it.

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use yizhan_tests::fuzz_targets::{self, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every file of `fuzz/<kind>/<target>/`, sorted by name.
fn files(kind: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read corpus file");
            (p.display().to_string(), bytes)
        })
        .collect();
    out.sort();
    out
}

/// Runs `body` on `input`; a panic fails the test, naming the input.
fn run(target: &str, body: fn(&[u8]), what: &str, input: &[u8]) {
    if std::panic::catch_unwind(|| body(input)).is_err() {
        // Kept for `cargo fuzz run <target> <file>` and for fuzz/regressions/.
        let dir = std::env::temp_dir().join("yizhan-fuzz-smoke");
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join(format!("{target}-{}", what.replace(['/', ' '], "_")));
        let _ = std::fs::write(&file, input);
        panic!(
            "fuzz target `{target}` panicked on {what} ({} bytes), written to {}",
            input.len(),
            file.display()
        );
    }
}

/// One mutation of `base` (or a splice with `other`), in the spirit of libFuzzer's.
fn mutate(rng: &mut StdRng, base: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        match rng.random_range(0..8) {
            0 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v[i] = *[0u8, 1, 0x7f, 0x80, 0xff]
                    .get(rng.random_range(0..5))
                    .unwrap_or(&0);
            }
            2 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v[i] = rng.random();
            }
            3 if !v.is_empty() => {
                let at = rng.random_range(0..v.len());
                v.truncate(at);
            }
            4 => {
                let at = rng.random_range(0..=v.len());
                let n = rng.random_range(1..16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                v.splice(at..at, bytes);
            }
            5 if v.len() > 1 => {
                let a = rng.random_range(0..v.len());
                let b = rng.random_range(a..v.len());
                v.drain(a..b);
            }
            6 if !other.is_empty() => {
                let at = rng.random_range(0..=v.len());
                let from = rng.random_range(0..other.len());
                let to = rng.random_range(from..=other.len());
                v.truncate(at);
                v.extend_from_slice(&other[from..to]);
            }
            _ => {
                // A 4-byte length somewhere, as frames and ingest inputs carry.
                if v.len() >= 4 {
                    let i = rng.random_range(0..v.len() - 3);
                    let len: u32 = rng.random_range(0..(1 << 23));
                    v[i..i + 4].copy_from_slice(&len.to_be_bytes());
                }
            }
        }
    }
    v
}

/// How many mutated inputs each target gets: the ingest body opens a store per input.
fn mutations(target: &str) -> usize {
    match target {
        "ingest" => 300,
        _ => 3000,
    }
}

fn smoke(target: &str) {
    let body = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, body)| *body)
        .expect("a target of that name");
    let corpus = files("corpus", target);
    let regressions = files("regressions", target);
    assert!(
        !corpus.is_empty(),
        "no corpus for `{target}` in fuzz/corpus/{target}/"
    );
    for (name, input) in corpus.iter().chain(&regressions) {
        run(target, body, name, input);
    }
    let mut rng = StdRng::seed_from_u64(0x5eed_0000 + target.len() as u64);
    let pool: Vec<&[u8]> = corpus
        .iter()
        .chain(&regressions)
        .map(|(_, b)| &b[..])
        .collect();
    for i in 0..mutations(target) {
        let input = if i % 10 == 0 {
            // Pure noise, of any length up to 512 bytes.
            let n = rng.random_range(0..512);
            (0..n).map(|_| rng.random()).collect()
        } else {
            let base = pool[rng.random_range(0..pool.len())];
            let other = pool[rng.random_range(0..pool.len())];
            mutate(&mut rng, base, other)
        };
        run(target, body, &format!("mutation {i}"), &input);
    }
}

#[test]
fn frame() {
    smoke("frame");
}

#[test]
fn message() {
    smoke("message");
}

#[test]
fn envelope() {
    smoke("envelope");
}

#[test]
fn statement() {
    smoke("statement");
}

#[test]
fn token() {
    smoke("token");
}

#[test]
fn ingest() {
    smoke("ingest");
}

/// Freshly generated seeds (real data made by the current code) run through their targets,
/// so that a change to the formats is caught even before the corpus is regenerated.
#[test]
fn fresh_seeds_run_clean() {
    let seeds = fuzz_targets::seeds();
    for (name, _) in TARGETS {
        assert!(
            seeds.iter().any(|s| s.target == *name),
            "no seed for `{name}`"
        );
    }
    for s in &seeds {
        let body = TARGETS
            .iter()
            .find(|(name, _)| *name == s.target)
            .map(|(_, body)| *body)
            .expect("seed for a known target");
        run(s.target, body, &s.name, &s.bytes);
    }
}

/// The frame reader mirrors `net::read_frame`: lengths over the limit are refused before
/// anything else is read, a stream may end only between frames.
#[test]
fn frame_reader_rules() {
    use fuzz_targets::{FrameRead, read_frame};
    assert_eq!(read_frame(&[], 8), FrameRead::End);
    assert_eq!(read_frame(&[0, 0], 8), FrameRead::Truncated(2));
    assert_eq!(read_frame(&[0, 0, 0, 9], 8), FrameRead::TooLarge(9));
    assert_eq!(read_frame(&[0, 0, 0, 3, 1], 8), FrameRead::Truncated(5));
    assert_eq!(
        read_frame(&[0, 0, 0, 1, 7, 0], 8),
        FrameRead::Frame(&[7], &[0])
    );
    assert_eq!(read_frame(&[0, 0, 0, 0], 8), FrameRead::Frame(&[], &[]));
}

/// A real change chunk as an `envelope` input (option byte, then the change).
fn fresh_change() -> Vec<u8> {
    fuzz_targets::seeds()
        .into_iter()
        .find(|s| s.target == "envelope")
        .expect("an envelope seed")
        .bytes
}

/// Finding 1 (see docs/fuzzing.md): a change chunk's checksum is covered neither by the
/// change hash nor by the signature, so anyone relaying a change can alter it. Automerge
/// decoded such a change without checking, kept it among the changes waiting for their
/// dependencies, saved it so in the snapshot, and could then not load the snapshot: the
/// record was damaged for good. The checksum is now checked on decoding.
#[test]
fn a_changed_checksum_is_refused() {
    let seed = fresh_change();
    let good = &seed[1..];
    assert!(yizhan_protocol::envelope::decode_change(good).is_ok());
    let mut flipped = good.to_vec();
    flipped[4] ^= 0xff;
    assert_eq!(
        yizhan_protocol::envelope::decode_change(&flipped).unwrap_err(),
        yizhan_protocol::VerifyError::Malformed("bad chunk checksum".into())
    );
}

/// Finding 2: a compressed change chunk was inflated with no bound before any check (about
/// 1 GiB from a 1 MiB chunk), and a document chunk parsed whole. Only the uncompressed
/// change chunk is accepted now, and the type is checked before decoding.
#[test]
fn other_chunk_types_are_refused_before_decoding() {
    let seed = fresh_change();
    for chunk_type in [0u8, 2, 3] {
        let mut other = seed[1..].to_vec();
        other[8] = chunk_type;
        assert_eq!(
            yizhan_protocol::envelope::decode_change(&other).unwrap_err(),
            yizhan_protocol::VerifyError::Malformed("not an uncompressed change chunk".into())
        );
    }
}

/// Writes the seeds into `fuzz/corpus/<target>/seed-*`, as `cargo run --bin seeds` in
/// `fuzz/` does, without building the fuzz crate: `cargo test -p yizhan-tests --test it
/// fuzz_smoke::write_seeds -- --ignored`.
#[test]
#[ignore = "writes into fuzz/corpus; run on demand"]
fn write_seeds() {
    let n = fuzz_targets::write_seeds(&fuzz_dir()).expect("write the seeds");
    assert!(n > 0);
}

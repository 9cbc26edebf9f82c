//! Writes the seed corpora: `cargo +nightly run --bin seeds` in `fuzz/` (or any toolchain).
//! Real frames, messages, envelopes, statements, tokens and change batches made by the
//! code go to `corpus/<target>/seed-*`.

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let n = yizhan_tests::fuzz_targets::write_seeds(root)?;
    println!("wrote {n} seeds under {}", root.join("corpus").display());
    Ok(())
}

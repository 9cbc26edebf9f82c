//! The `ingest` fuzz target: the body is `yizhan_tests::fuzz_targets::ingest` (see docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| yizhan_tests::fuzz_targets::ingest(data));

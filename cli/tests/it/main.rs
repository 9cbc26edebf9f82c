//! Black-box tests of the built `yizhan` binary, one module per area, linked as one test
//! binary (`cargo test -p yizhan-cli --test it`; one module: `... --test it records::`).
//! Each test runs `yizhan` processes in temporary homes of its own (`util::Home`) and binds
//! loopback ports `:0`, so the tests share this process safely.
//!
//! Three tests are binaries of their own because they must run alone (each says why at its
//! top): `crash_sync.rs`, `durability.rs` and `discovery.rs`.

mod attacks_status;
mod bad_input;
mod config;
mod conflicts;
mod encryption;
mod exchange;
mod history;
mod language;
mod ledger;
mod notices;
mod office;
mod progress;
mod records;
mod report;
mod shell;
mod station;
mod sync;
mod tamper;
mod util;

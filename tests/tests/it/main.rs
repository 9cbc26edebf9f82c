//! The multi-node tests, one module per area, linked as one test binary
//! (`cargo test -p yizhan-tests --test it`; one module: `... --test it attacks::`). Nodes
//! live in temporary directories of their own and bind loopback ports `:0`; the tests that
//! measure a station's memory or CPU time run it in a process of its own (`attacks`).

mod attacks;
mod convergence;
mod first_change;
mod fuzz_smoke;
mod households;
mod merge;
mod notices;
mod quic;
mod resolve;
mod sync_sim;

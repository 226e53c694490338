//! Workspace integration tests for meshota.
//!
//! The tests live in `tests/tests/` and drive real processes: `meshota`
//! node daemons on loopback (created with `meshota testnet up`), and
//! `meshota-adversary` (`src/bin/adversary.rs`), a peer that proves a real
//! device key and holds a genuinely signed release but serves corrupt
//! chunks. This library itself holds nothing.

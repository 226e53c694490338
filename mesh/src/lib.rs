//! The meshota mesh protocol.
//!
//! **Not built yet.** This crate will hold the sans-IO protocol core: a state
//! machine fed events (link up/down, message received, timer fired, store
//! changed) with `now` passed in, returning actions (send, store, verify, arm
//! timer, install ready, report). It gossips verified release manifests,
//! schedules chunk fetches rarest-first, and sends coded broadcast over radio
//! links. Thin drivers for QUIC (quinn) and radio links feed it.
//!
//! Until it is built it exports nothing.

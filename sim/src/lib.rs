//! The deterministic meshota simulator.
//!
//! **Not built yet.** One seed will drive one run: many nodes running the mesh
//! core in virtual time over modelled IP and radio links, with faults
//! (loss, partitions, crashes, malicious peers) and safety and liveness
//! checkers evaluated at every step.
//!
//! Until it is built it exports nothing.

//! LoRa scenarios: many [`meshota_mesh::radio::RadioLink`]s over one
//! [`meshota_radios::Medium`] (EU868, path loss, 10 % extra frame loss,
//! half-duplex radios, collisions with capture), deterministic from a seed,
//! in virtual time; with the two yardsticks the issue asks for: the
//! broadcast bound (a greedy connected dominating set, each member sending
//! the payload once) and a unicast baseline (per-neighbour transfers with
//! acknowledgements and retransmission) run in the same medium.
//!
//! Start with [`LoraOptions`] and [`run`](fn@run); [`bound`] and [`unicast`] are the
//! yardsticks; [`scenario`] builds the node positions; [`kinds`] splits
//! the airtime by frame kind.

pub mod bound;
pub mod kinds;
pub mod run;
pub mod scenario;
pub mod unicast;

pub use kinds::{AirtimeByKind, BaselineAirtimeByKind, KindTally};
pub use run::{LoraOptions, LoraReport, PLAN_MAX_DETOUR, PatchRun, Relays, run};
pub use scenario::LoraTopology;

//! The mesh protocol over LoRa radio links (issue #8), sans-IO.
//!
//! # What it is for
//! One [`RadioLink`] per node and radio: it takes received frames and the
//! time, and hands back frames to transmit, each already admitted by the
//! node's [`meshota_radios::DutyCycleBudget`]. The same state machine runs
//! in the simulator (`meshota-sim`, over `meshota_radios::Medium`) and
//! would run over the SX126x backend.
//!
//! # How a release crosses a hop
//! 1. **Announce** ([`msg::Announce`]): the release key (the first 8
//!    bytes of its id), security version, "complete", "fetching" and "leaf" flags
//!    and how many strong neighbours still need it, on a Trickle timer
//!    (RFC 6206, [`crate::trickle`]): consistency is the release key and
//!    state, so neighbours that agree stay quiet and an older id heard
//!    resets the interval (a newer one is fetched instead).
//! 2. **Bundle** ([`bundle`]): a node that hears a newer release asks a
//!    holder for the signed manifest and chunk index (about 3.6 KB) with a
//!    bitmap of the fragments it holds (selective repeat). It asks a holder
//!    that announced itself complete (one still fetching the payload is
//!    asked only after ten minutes without hearing a complete one), and the
//!    holder answers in an elected burst like the symbols' (step 4), so the
//!    bundle and the payload travel together from the same few sources
//!    rather than the bundle racing ahead through every node. The answer is
//!    broadcast, so every neighbour collects it; requests overheard for the
//!    same release are postponed. When the askers of one burst lost
//!    different fragments, the holder sends as many coded repair fragments
//!    as the largest loss (plus a margin) rather than the union of their
//!    losses (`meshota_radios::repair`); any repair fragment replaces any
//!    lost fragment. The bundle is verified (ML-DSA-65
//!    signature, id, index hash) before it is kept, announced or relayed.
//! 3. **Payload**: each chunk of the signed index is one RaptorQ object
//!    (`meshota_radios::coding`) whose id is the chunk's BLAKE3, so a
//!    decoded chunk is checked against the signed index by the decoder
//!    itself; a chunk that fails is reset and only it is asked again. A
//!    needy node sends one [`msg::PayloadRequest`] (chunk bitmap and symbols
//!    still needed per chunk) to one chosen source; the source broadcasts
//!    fresh repair symbols for the largest need it was asked plus a margin
//!    (larger when it knows several needy neighbours), and every neighbour
//!    that lacks the chunk uses them. Each source starts
//!    at a random point of the 2^23 repair symbols, so a receiver hearing
//!    several gets fresh symbols from each; symbols heard before the bundle
//!    (or patch index) naming their object verified are kept (a bounded
//!    queue) and decoded once it does. No per-frame acknowledgements.
//!
//!    **Patches** ([`patch`]): when the manifest lists a patch from the
//!    node's installed image ([`RadioLink::set_base_image`]), the node
//!    fetches the patch index (fragments like the bundle, checked against
//!    the signed patch id) and the pieces (RaptorQ objects keyed by their
//!    BLAKE3 from the patch index, asked with a progress frame naming the
//!    patch) from a neighbour that announces it holds them, chosen by the
//!    election's preferences (step 4) so pieces have the same few senders
//!    as chunks; has the driver apply each piece against the base, and
//!    fetches plainly only the chunks no piece produced. Nodes on another base fetch chunks.
//! 4. **Multi-hop: electing the senders**: a node that decoded everything
//!    is a source, and only a source that was asked sends. Needy nodes ask
//!    a source over a strong link (per-sender message ids give each link's
//!    reception rate), preferring the one whose burst they are hearing,
//!    then the one that announced the most needy neighbours (a distributed
//!    greedy cover), then the one a neighbour just asked. A source waits
//!    before its burst, less the more neighbours asked it (and, with
//!    [`RadioTiming::lone_wait_factor`] above 1, longer still when one
//!    asker is its only needy neighbour); a neighbour it just sent the
//!    bundle has its payload request answered after a few seconds (the
//!    election for that neighbourhood was just held). A source calls off
//!    a burst not yet started when it hears another node's symbols of the
//!    release, or when every neighbour that asked it has since asked
//!    another source or announced itself complete (the askers ask again if
//!    still short).
//! 5. **Relays and leaves**: a node whose [`RadioConfig::relay`] is false
//!    is a leaf. It announces itself so (and covers nobody), receives and
//!    verifies like any node, and never serves; neighbours never ask it
//!    nor count it as a holder. Which nodes can be leaves is planned off
//!    the air (`meshota_radios::backbone`) from what links measured of
//!    their neighbours ([`RadioLink::neighbour_links`]).
//!
//! # What it does not do
//! It keeps the one release it is carrying in memory (chunks included) and
//! reports [`LinkEvent`]s; storing chunks and installing are the driver's.
//! Short ids are trusted only as addresses: everything that matters is
//! checked by signature and hash.

pub mod bundle;
mod carried;
mod config;
mod error;
mod link;
pub mod msg;
pub mod patch;
mod report;

pub use carried::PATCH_INDEX_BYTES_MAX;
pub use error::RadioError;
pub use link::{
    LinkEvent, LinkStats, NeighbourLink, PatchBlobs, RadioConfig, RadioLink, RadioTiming,
};
pub use patch::{PieceJob, PieceOutput};

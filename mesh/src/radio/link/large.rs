//! Large releases: held in the node's store, not the link's memory.
//!
//! Above the driver's whole-release limit a release crosses the radio by
//! patch only (see [`super::bundle`], "Large releases"): its bundle
//! carries the chunk index as a delta against the node's base index, the
//! chunks the node already has stay in its store (`ChunkSlot::Stored`:
//! counted as held, never served), and the link keeps in memory only what
//! the patch's pieces make or what it decoded. This module holds the
//! driver's side of that: giving the link such a release, its base index
//! and its stored chunks, and taking back the chunks to write.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use meshota_manifest::Hash;
use meshota_radios::Micros;

use super::{Carried, ChunkSlot, RadioError, RadioLink};
use crate::radio::bundle;

impl RadioLink {
    /// Gives the link a large release it holds in the node's store (the
    /// origin, or a node that got it over another link), to serve by patch:
    /// the bundle is verified (an index delta rebuilt against `base`, the
    /// chunk index of the delta's base image); `held` are chunks of the
    /// index the link keeps in memory and serves (the ones the patch's
    /// pieces produce, for nodes whose piece fails), each checked against
    /// the index. Every other chunk is taken as held in the node's store
    /// (the caller vouches for it) and is never served: a node that needs
    /// it is on another base, and cannot take the release by radio anyway.
    ///
    /// # Errors
    /// The bundle's verification errors; [`RadioError::Index`] when a held
    /// chunk is not one of the index's.
    pub fn add_stored_release(
        &mut self,
        now: Micros,
        bundle_bytes: Vec<u8>,
        base: Option<&bundle::BaseIndex>,
        held: &[Vec<u8>],
    ) -> Result<(), RadioError> {
        let base = base.or(self.base_index.as_ref());
        let verified = bundle::verify(bundle_bytes, None, &self.trust, &self.policy(), base)?;
        let mut carried = Carried::new(verified, self.symbol_size)?;
        let by_hash = carried.positions_by_hash();
        for (i, bytes) in held.iter().enumerate() {
            if carried.hold_bytes(&by_hash, bytes).is_none() {
                return Err(RadioError::Index(alloc::format!(
                    "held chunk {i} is not in the index"
                )));
            }
        }
        for j in 0..carried.chunks {
            carried.hold_stored(j);
        }
        self.carry_complete(now, carried);
        Ok(())
    }

    /// Tells the link the chunk index of the image the node has installed:
    /// a large release whose bundle carries its index as a delta against
    /// it can then be verified and fetched (by patch). Also sets the base
    /// image ([`RadioLink::set_base_image`]) to the index's image.
    pub fn set_base_index(&mut self, base: bundle::BaseIndex) {
        self.base_image = Some(base.index().image_hash());
        self.base_index = Some(base);
    }

    /// Tells the link which chunks of the carried release the node's store
    /// holds (its base image's, mostly) without handing their bytes: they
    /// count as held and are not fetched, and the link never serves them.
    /// For a large release (the daemon keeps its chunks out of memory);
    /// call it on [`LinkEvent::ManifestVerified`](crate::radio::LinkEvent::ManifestVerified). Returns how many were
    /// new.
    pub fn add_stored_chunks(&mut self, now: Micros, hashes: &[Hash]) -> usize {
        let Some(c) = self.carried.as_mut() else {
            return 0;
        };
        let stored: BTreeSet<&Hash> = hashes.iter().collect();
        let mut new = 0;
        for j in 0..c.chunks {
            if stored.contains(&c.bundle.chunks()[j].hash) && c.hold_stored(j) {
                new += 1;
            }
        }
        self.stats.chunks_supplied += new as u64;
        self.after_gain(now);
        new
    }

    /// The chunks of the carried release the link holds in memory (decoded,
    /// produced by pieces, handed in), each with its id, in index order and
    /// once per id: what a driver writes to its store when the release
    /// completes and the rest were held there already.
    pub fn held_chunks(&self) -> impl Iterator<Item = (Hash, &[u8])> + '_ {
        let mut seen = BTreeSet::new();
        self.carried
            .iter()
            .flat_map(|c| c.slots[..c.chunks].iter().zip(c.bundle.chunks()))
            .filter_map(move |(s, r)| match s {
                ChunkSlot::Held(b) if seen.insert(r.hash) => Some((r.hash, b.as_slice())),
                _ => None,
            })
    }
}

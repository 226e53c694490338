//! The release a link carries: its verified bundle and, per chunk of the
//! signed index, either the verified bytes or a RaptorQ decoder collecting
//! symbols (with the distinct symbol ids seen), plus encoders made on
//! demand to serve it. Invariant: a chunk is `Held` only with bytes that
//! hash to its id (the decoder checks; `add_release` checks).

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use meshota_radios::{ObjectDecoder, ObjectEncoder, ObjectInfo, Progress};

use super::bundle::VerifiedBundle;
use super::error::RadioError;
use super::msg::{TAG_LEN, tag_of};

#[derive(Debug)]
pub(super) enum ChunkSlot {
    Held(Vec<u8>),
    Missing {
        decoder: ObjectDecoder,
        symbols: BTreeSet<u32>,
    },
}

#[derive(Debug)]
pub(super) struct Carried {
    pub(super) bundle: VerifiedBundle,
    pub(super) tag: [u8; TAG_LEN],
    pub(super) chunk_tags: Vec<[u8; TAG_LEN]>,
    pub(super) infos: Vec<ObjectInfo>,
    pub(super) slots: Vec<ChunkSlot>,
    pub(super) encoders: Vec<Option<ObjectEncoder>>,
    pub(super) held: usize,
}

impl Carried {
    pub(super) fn new(bundle: VerifiedBundle, symbol_size: u16) -> Result<Self, RadioError> {
        let mut infos = Vec::with_capacity(bundle.chunks.len());
        let mut slots = Vec::with_capacity(bundle.chunks.len());
        for c in &bundle.chunks {
            let info = ObjectInfo {
                id: *c.hash.as_bytes(),
                len: c.len,
                symbol_size,
            };
            let decoder = ObjectDecoder::new(info)?;
            infos.push(info);
            slots.push(ChunkSlot::Missing {
                decoder,
                symbols: BTreeSet::new(),
            });
        }
        Ok(Self {
            tag: tag_of(&bundle.id),
            chunk_tags: bundle.chunks.iter().map(|c| tag_of(&c.hash)).collect(),
            encoders: infos.iter().map(|_| None).collect(),
            infos,
            slots,
            held: 0,
            bundle,
        })
    }

    pub(super) fn complete(&self) -> bool {
        self.held == self.slots.len()
    }

    /// Chunks held; `None` only past the bitmap's object limit.
    pub(super) fn held_bitmap(&self) -> Option<Progress> {
        let mut p = Progress::new(self.slots.len()).ok()?;
        for (i, s) in self.slots.iter().enumerate() {
            if matches!(s, ChunkSlot::Held(_)) {
                p.set(i);
            }
        }
        Some(p)
    }
}

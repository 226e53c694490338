//! Objects (chunks, patch pieces) as RaptorQ symbols (RFC 6330, crate
//! `raptorq`) sized to the frame payload, so one broadcast symbol serves
//! every neighbour whatever it lost; and the receivers' progress bitmap.
//!
//! # Symbol format (the payload of a [`crate::FrameKind::Symbol`] frame)
//! ```text
//! 0..4   object tag: the first 4 bytes of the object's BLAKE3 id
//! 4..7   encoding symbol id, u24 big-endian (RFC 6330 FEC payload id of
//!        the one source block)
//! 7..    symbol data, exactly the object's symbol size
//! ```
//! Sender and receiver derive the same RFC 6330 transmission parameters
//! from [`ObjectInfo`] (length and symbol size): one source block, one
//! sub-block, symbol alignment 1, so any symbol size fills the frame (an
//! alignment of 8 and a source block number byte cost 3 % of every
//! symbol frame at SF7). Nothing else is sent.
//!
//! # What a receiver gets
//! [`ObjectDecoder`] takes symbols in any order, ignores duplicates,
//! rejects symbols of other objects, and yields the object once enough
//! have arrived (RaptorQ: almost always the source symbol count, rarely a
//! couple more) **and** the bytes hash to the object id. A decode that
//! does not match (a bad symbol got in) resets the decoder. Memory is
//! bounded: past [`symbols_max`] symbols without success it resets too.

use alloc::vec::Vec;

use raptorq::{EncodingPacket, ObjectTransmissionInformation, PayloadId};

use crate::Error;

/// Largest object (bytes) the coding layer takes.
pub const OBJECT_BYTES_MAX: usize = 1 << 20;
/// Symbol header bytes before the symbol data.
pub const SYMBOL_HEADER_LEN: usize = 7;
/// Most source symbols of one object (RFC 6330's largest source block).
pub const SOURCE_SYMBOLS_MAX: usize = 56_403;
/// Largest symbol size (bytes): a 255-byte frame less the frame and symbol
/// headers.
pub const SYMBOL_SIZE_MAX: usize = 255 - crate::frame::OVERHEAD - SYMBOL_HEADER_LEN;

/// What sender and receivers agree on about one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectInfo {
    /// BLAKE3 of the object's bytes.
    pub id: [u8; 32],
    /// Its length in bytes.
    pub len: u32,
    /// Symbol size in bytes (as the encoder settled it; see
    /// [`ObjectEncoder::new`]).
    pub symbol_size: u16,
}

impl ObjectInfo {
    /// Checks that an encoder could produce this object's symbols (what
    /// [`ObjectDecoder::new`] checks), without making a decoder.
    ///
    /// # Errors
    /// [`Error::ObjectSize`], [`Error::SymbolSize`].
    pub fn validate(&self) -> Result<(), Error> {
        self.check().map(|_| ())
    }

    fn check(&self) -> Result<ObjectTransmissionInformation, Error> {
        let len = self.len as usize;
        if len == 0 || len > OBJECT_BYTES_MAX {
            return Err(Error::ObjectSize {
                len,
                max: OBJECT_BYTES_MAX,
            });
        }
        let size = usize::from(self.symbol_size);
        if size == 0 || size > SYMBOL_SIZE_MAX {
            return Err(Error::SymbolSize {
                size,
                max: SYMBOL_SIZE_MAX,
            });
        }
        if len.div_ceil(size) > SOURCE_SYMBOLS_MAX {
            // One source block: the symbols must fit RFC 6330's largest.
            return Err(Error::SymbolSize {
                size,
                max: SYMBOL_SIZE_MAX,
            });
        }
        Ok(ObjectTransmissionInformation::new(
            u64::from(self.len),
            self.symbol_size,
            1,
            1,
            1,
        ))
    }

    /// The tag symbols of this object carry.
    #[must_use]
    pub fn tag(&self) -> [u8; 4] {
        [self.id[0], self.id[1], self.id[2], self.id[3]]
    }

    /// Number of source symbols: the least a receiver needs.
    #[must_use]
    pub fn source_symbols(&self) -> u32 {
        self.len.div_ceil(u32::from(self.symbol_size.max(1)))
    }
}

/// The symbol size that fills a frame payload of `frame_payload` bytes
/// (e.g. [`crate::FrameCodec::max_payload`]).
#[must_use]
pub const fn symbol_size_for(frame_payload: usize) -> usize {
    let size = frame_payload.saturating_sub(SYMBOL_HEADER_LEN);
    if size > SYMBOL_SIZE_MAX {
        SYMBOL_SIZE_MAX
    } else {
        size
    }
}

/// The encoding symbol id a symbol carries (bytes 4..7, big-endian);
/// `None` for bytes shorter than the symbol header.
#[must_use]
pub fn symbol_esi(symbol: &[u8]) -> Option<u32> {
    let b = symbol.get(4..SYMBOL_HEADER_LEN)?;
    Some(u32::from_be_bytes([0, b[0], b[1], b[2]]))
}

/// The most symbols a decoder takes for `info` before it gives up and
/// starts over: twice the source symbols plus 64.
#[must_use]
pub fn symbols_max(info: &ObjectInfo) -> u32 {
    info.source_symbols().saturating_mul(2).saturating_add(64)
}

fn wire(tag: [u8; 4], packet: &EncodingPacket) -> Vec<u8> {
    let mut out = Vec::with_capacity(SYMBOL_HEADER_LEN + packet.data().len());
    out.extend_from_slice(&tag);
    out.extend_from_slice(&packet.payload_id().encoding_symbol_id().to_be_bytes()[1..]);
    out.extend_from_slice(packet.data());
    out
}

/// Turns one object into source and repair symbols. Invariant: every
/// symbol it returns is `SYMBOL_HEADER_LEN + symbol_size` bytes.
#[derive(Debug)]
pub struct ObjectEncoder {
    info: ObjectInfo,
    encoder: raptorq::Encoder,
    /// Next repair symbol number (of the one source block).
    next_repair: u32,
}

impl ObjectEncoder {
    /// An encoder for `object` with symbols of `symbol_size` bytes (use
    /// [`symbol_size_for`] to fill a frame).
    ///
    /// # Errors
    /// [`Error::ObjectSize`] for an empty object or one over
    /// [`OBJECT_BYTES_MAX`]; [`Error::SymbolSize`] for a size of 0, over
    /// [`SYMBOL_SIZE_MAX`], or so small that the object would need more
    /// than [`SOURCE_SYMBOLS_MAX`] symbols.
    pub fn new(object: &[u8], symbol_size: usize) -> Result<Self, Error> {
        if object.is_empty() || object.len() > OBJECT_BYTES_MAX {
            return Err(Error::ObjectSize {
                len: object.len(),
                max: OBJECT_BYTES_MAX,
            });
        }
        if symbol_size == 0 || symbol_size > SYMBOL_SIZE_MAX {
            return Err(Error::SymbolSize {
                size: symbol_size,
                max: SYMBOL_SIZE_MAX,
            });
        }
        let info = ObjectInfo {
            id: *blake3::hash(object).as_bytes(),
            // Both bounded above: the casts cannot truncate.
            len: object.len() as u32,
            symbol_size: symbol_size as u16,
        };
        let oti = info.check()?;
        Ok(Self {
            info,
            encoder: raptorq::Encoder::new(object, oti),
            next_repair: 0,
        })
    }

    /// What receivers need to know (sent with the announcement).
    #[must_use]
    pub const fn info(&self) -> &ObjectInfo {
        &self.info
    }

    /// Every source symbol, in order.
    #[must_use]
    pub fn source_symbols(&self) -> Vec<Vec<u8>> {
        let tag = self.info.tag();
        self.encoder
            .get_block_encoders()
            .iter()
            .flat_map(|b| b.source_packets())
            .map(|p| wire(tag, &p))
            .collect()
    }

    /// Largest first repair symbol number [`ObjectEncoder::repair_from`]
    /// takes: the encoding symbol id is 24 bits, and a start below 2^23
    /// leaves more than 8 million repair symbols after it.
    pub const REPAIR_START_MAX: u32 = 1 << 23;

    /// Moves the next repair symbol to number `start` (clamped
    /// to [`ObjectEncoder::REPAIR_START_MAX`]) at no cost: senders that
    /// each start at a random point of the repair space rarely send a
    /// symbol another already sent, so a receiver hearing several gets
    /// fresh symbols from each.
    pub fn repair_from(&mut self, start: u32) {
        self.next_repair = start.min(Self::REPAIR_START_MAX);
    }

    /// The next `count` repair symbols, never repeating one.
    pub fn repair_symbols(&mut self, count: u32) -> Vec<Vec<u8>> {
        let tag = self.info.tag();
        let Some(block) = self.encoder.get_block_encoders().first() else {
            return Vec::new();
        };
        let start = self.next_repair;
        self.next_repair = start.saturating_add(count);
        block
            .repair_packets(start, count)
            .iter()
            .map(|p| wire(tag, p))
            .collect()
    }
}

/// Collects one object's symbols. Invariant: [`ObjectDecoder::push`]
/// returns the object at most once, and only bytes that hash to its id.
#[derive(Debug)]
pub struct ObjectDecoder {
    info: ObjectInfo,
    oti: ObjectTransmissionInformation,
    decoder: raptorq::Decoder,
    received: u32,
    complete: bool,
}

impl ObjectDecoder {
    /// A decoder for the object `info` describes.
    ///
    /// # Errors
    /// [`Error::ObjectSize`], [`Error::SymbolSize`] for values the encoder
    /// would never produce.
    pub fn new(info: ObjectInfo) -> Result<Self, Error> {
        let oti = info.check()?;
        Ok(Self {
            info,
            oti,
            decoder: raptorq::Decoder::new(oti),
            received: 0,
            complete: false,
        })
    }

    /// The object this decoder wants.
    #[must_use]
    pub const fn info(&self) -> &ObjectInfo {
        &self.info
    }

    /// Symbols taken since the last reset.
    #[must_use]
    pub const fn received(&self) -> u32 {
        self.received
    }

    /// Whether the object has been yielded.
    #[must_use]
    pub const fn is_complete(&self) -> bool {
        self.complete
    }

    /// Takes one symbol (the payload of a symbol frame). Returns the object
    /// when this symbol completes it; `None` while more are needed and
    /// after completion.
    ///
    /// # Errors
    /// [`Error::ForeignSymbol`] for another object's tag;
    /// [`Error::MalformedSymbol`] for a bad length or block number, or when
    /// [`symbols_max`] symbols did not decode (the decoder starts over);
    /// [`Error::DecodedObjectMismatch`] when the decoded bytes do not hash
    /// to the id (the decoder starts over).
    pub fn push(&mut self, symbol: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let Some(esi) = symbol_esi(symbol) else {
            return Err(Error::MalformedSymbol {
                reason: "shorter than its header",
            });
        };
        if symbol[..4] != self.info.tag() {
            return Err(Error::ForeignSymbol);
        }
        if symbol.len() != SYMBOL_HEADER_LEN + usize::from(self.info.symbol_size) {
            return Err(Error::MalformedSymbol {
                reason: "length does not match the symbol size",
            });
        }
        let id = PayloadId::new(0, esi);
        if self.complete {
            return Ok(None);
        }
        self.received += 1;
        let packet = EncodingPacket::new(id, symbol[SYMBOL_HEADER_LEN..].to_vec());
        match self.decoder.decode(packet) {
            Some(bytes) if blake3::hash(&bytes).as_bytes() == &self.info.id => {
                self.complete = true;
                Ok(Some(bytes))
            }
            Some(_) => {
                self.reset();
                Err(Error::DecodedObjectMismatch)
            }
            None if self.received >= symbols_max(&self.info) => {
                self.reset();
                Err(Error::MalformedSymbol {
                    reason: "too many symbols without decoding; starting over",
                })
            }
            None => Ok(None),
        }
    }

    fn reset(&mut self) {
        self.decoder = raptorq::Decoder::new(self.oti);
        self.received = 0;
    }
}

#[cfg(test)]
#[path = "coding_tests.rs"]
mod tests;

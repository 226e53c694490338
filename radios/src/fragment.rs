//! Messages larger than one frame: splitting into numbered fragments and
//! reassembling them, in bounded memory.
//!
//! A message of `len` bytes becomes `ceil(len / p)` frames (one for an
//! empty message), `p` = the codec's [`FrameCodec::max_payload`], all with
//! the same kind, source, destination and message id, fragment indices
//! `0..count` and the same count. At most 255 fragments: 9,945 bytes at
//! the 51-byte EU868 limit, enough for a signed manifest.
//!
//! The [`Reassembler`] keys partial messages by (source, message id, kind,
//! count). Its memory is bounded by [`ReassemblyLimits`]: at most
//! `partial_messages_max` partial messages of at most `message_bytes_max`
//! bytes each; when full, the oldest partial is evicted; partials older
//! than `partial_age_us_max` are dropped. A message whose fragment count
//! could exceed `message_bytes_max` is refused at its first fragment.

use alloc::vec::Vec;

use crate::Error;
use crate::frame::{Frame, FrameCodec, FrameKind, Header};
use crate::shortid::ShortId;
use crate::time::Micros;

/// The most fragments a message can have (the count is one byte).
pub const FRAGMENTS_MAX: usize = 255;

/// Splits `message` into encoded frames.
///
/// # Errors
/// [`Error::MessageTooLong`] when it needs more than [`FRAGMENTS_MAX`] frames.
pub fn fragment(
    codec: &FrameCodec,
    kind: FrameKind,
    src: ShortId,
    dst: ShortId,
    msg_id: u8,
    message: &[u8],
) -> Result<Vec<Vec<u8>>, Error> {
    let per = codec.max_payload();
    let count = message.len().div_ceil(per).max(1);
    let frag_count = u8::try_from(count).map_err(|_| Error::MessageTooLong {
        len: message.len(),
        max_fragments: FRAGMENTS_MAX,
    })?;
    let mut frames = Vec::with_capacity(count);
    for index in 0..frag_count {
        let from = usize::from(index) * per;
        let part = &message[from.min(message.len())..(from + per).min(message.len())];
        let header = Header {
            kind,
            src,
            dst,
            msg_id,
            frag_index: index,
            frag_count,
        };
        frames.push(codec.encode(&header, part)?);
    }
    Ok(frames)
}

/// A whole message out of the reassembler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its kind.
    pub kind: FrameKind,
    /// Sender.
    pub src: ShortId,
    /// Destination.
    pub dst: ShortId,
    /// The sender's message id.
    pub msg_id: u8,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Bounds of a [`Reassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Partial messages held at once.
    pub partial_messages_max: usize,
    /// Largest message accepted (bytes).
    pub message_bytes_max: usize,
    /// Age (µs since its first fragment) after which a partial is dropped.
    /// LoRa is slow: 255 frames at SF12 under a 1 % duty cycle take hours.
    pub partial_age_us_max: u64,
}

impl Default for ReassemblyLimits {
    /// 8 partial messages of up to 16 KiB, kept for up to 6 hours.
    fn default() -> Self {
        Self {
            partial_messages_max: 8,
            message_bytes_max: 16 * 1024,
            partial_age_us_max: 6 * Micros::HOUR,
        }
    }
}

#[derive(Debug, Clone)]
struct Partial {
    kind: FrameKind,
    src: ShortId,
    dst: ShortId,
    msg_id: u8,
    count: u8,
    first_seen: Micros,
    parts: Vec<Option<Vec<u8>>>,
    received: usize,
    bytes: usize,
}

/// Collects fragments into messages. Invariant: it never holds more than
/// `partial_messages_max` partials nor more than `message_bytes_max` bytes
/// in any one ([`Reassembler::held_bytes`] is at most their product).
#[derive(Debug, Clone)]
pub struct Reassembler {
    limits: ReassemblyLimits,
    per_frame: usize,
    partials: Vec<Partial>,
}

impl Reassembler {
    /// A reassembler for frames of `codec`'s size.
    #[must_use]
    pub const fn new(codec: &FrameCodec, limits: ReassemblyLimits) -> Self {
        Self {
            limits,
            per_frame: codec.max_payload(),
            partials: Vec::new(),
        }
    }

    /// Payload bytes currently held in partial messages.
    #[must_use]
    pub fn held_bytes(&self) -> usize {
        self.partials.iter().map(|p| p.bytes).sum()
    }

    /// Partial messages currently held.
    #[must_use]
    pub fn partials(&self) -> usize {
        self.partials.len()
    }

    /// Takes one authenticated frame at `now`; returns the message it
    /// completes, if any. Duplicate fragments are ignored.
    ///
    /// # Errors
    /// [`Error::MessageTooLong`] when the announced fragment count could
    /// exceed `message_bytes_max`, or the fragments so far already do.
    pub fn accept(&mut self, now: Micros, frame: &Frame<'_>) -> Result<Option<Message>, Error> {
        let h = frame.header;
        let too_long = |len| Error::MessageTooLong {
            len,
            max_fragments: self.limits.message_bytes_max / self.per_frame.max(1),
        };
        let bound = usize::from(h.frag_count) * self.per_frame;
        if bound > self.limits.message_bytes_max && h.frag_count > 1 {
            return Err(too_long(bound));
        }
        if h.frag_count == 1 {
            if frame.payload.len() > self.limits.message_bytes_max {
                return Err(too_long(frame.payload.len()));
            }
            return Ok(Some(Message {
                kind: h.kind,
                src: h.src,
                dst: h.dst,
                msg_id: h.msg_id,
                bytes: frame.payload.to_vec(),
            }));
        }
        let age_max = self.limits.partial_age_us_max;
        self.partials.retain(|p| now.since(p.first_seen) <= age_max);
        let found = self.partials.iter().position(|p| {
            p.src == h.src && p.msg_id == h.msg_id && p.kind == h.kind && p.count == h.frag_count
        });
        let index = if let Some(i) = found {
            i
        } else {
            if self.partials.len() >= self.limits.partial_messages_max {
                // Evict the oldest partial.
                if let Some(oldest) = self
                    .partials
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, p)| p.first_seen)
                    .map(|(i, _)| i)
                {
                    self.partials.swap_remove(oldest);
                }
            }
            self.partials.push(Partial {
                kind: h.kind,
                src: h.src,
                dst: h.dst,
                msg_id: h.msg_id,
                count: h.frag_count,
                first_seen: now,
                parts: alloc::vec![None; usize::from(h.frag_count)],
                received: 0,
                bytes: 0,
            });
            self.partials.len() - 1
        };
        let p = &mut self.partials[index];
        let slot = &mut p.parts[usize::from(h.frag_index)];
        if slot.is_none() {
            if p.bytes + frame.payload.len() > self.limits.message_bytes_max {
                let len = p.bytes + frame.payload.len();
                self.partials.swap_remove(index);
                return Err(too_long(len));
            }
            *slot = Some(frame.payload.to_vec());
            p.received += 1;
            p.bytes += frame.payload.len();
        }
        if p.received < usize::from(p.count) {
            return Ok(None);
        }
        let done = self.partials.swap_remove(index);
        let mut bytes = Vec::with_capacity(done.bytes);
        for part in done.parts.into_iter().flatten() {
            bytes.extend_from_slice(&part);
        }
        Ok(Some(Message {
            kind: done.kind,
            src: done.src,
            dst: done.dst,
            msg_id: done.msg_id,
            bytes,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 32] = [3; 32];

    fn codec() -> FrameCodec {
        FrameCodec::new(&KEY, 51).unwrap()
    }

    fn feed(r: &mut Reassembler, c: &FrameCodec, frames: &[Vec<u8>]) -> Vec<Message> {
        frames
            .iter()
            .filter_map(|f| r.accept(Micros(0), &c.decode(f).unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn a_manifest_sized_message_crosses_in_fragments() {
        let c = codec();
        let msg: Vec<u8> = (0..5_300u32).map(|i| (i % 251) as u8).collect();
        let frames = fragment(
            &c,
            FrameKind::Message,
            ShortId(1),
            ShortId::BROADCAST,
            4,
            &msg,
        )
        .unwrap();
        assert_eq!(frames.len(), 5_300usize.div_ceil(39));
        assert!(frames.iter().all(|f| f.len() <= 51));
        let mut r = Reassembler::new(&c, ReassemblyLimits::default());
        let mut reversed = frames.clone();
        reversed.reverse();
        let out = feed(&mut r, &c, &reversed);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].bytes, msg);
        assert_eq!(r.partials(), 0);
    }

    #[test]
    fn messages_beyond_255_fragments_or_the_byte_limit_are_refused() {
        let c = codec();
        assert!(matches!(
            fragment(
                &c,
                FrameKind::Message,
                ShortId(1),
                ShortId(2),
                0,
                &[0; 39 * 255 + 1]
            ),
            Err(Error::MessageTooLong { .. })
        ));
        let small = ReassemblyLimits {
            message_bytes_max: 100,
            ..ReassemblyLimits::default()
        };
        let mut r = Reassembler::new(&c, small);
        let frames =
            fragment(&c, FrameKind::Message, ShortId(1), ShortId(2), 0, &[0; 200]).unwrap();
        assert!(matches!(
            r.accept(Micros(0), &c.decode(&frames[0]).unwrap()),
            Err(Error::MessageTooLong { .. })
        ));
        assert_eq!(r.partials(), 0);
    }

    #[test]
    fn stale_partials_expire_and_the_oldest_is_evicted_when_full() {
        let c = codec();
        let limits = ReassemblyLimits {
            partial_messages_max: 2,
            partial_age_us_max: 1_000,
            ..ReassemblyLimits::default()
        };
        let mut r = Reassembler::new(&c, limits);
        let first = |id: u8| {
            fragment(
                &c,
                FrameKind::Message,
                ShortId(1),
                ShortId(2),
                id,
                &[id; 100],
            )
            .unwrap()
        };
        let (a, b, d) = (first(1), first(2), first(3));
        r.accept(Micros(0), &c.decode(&a[0]).unwrap()).unwrap();
        r.accept(Micros(10), &c.decode(&b[0]).unwrap()).unwrap();
        r.accept(Micros(20), &c.decode(&d[0]).unwrap()).unwrap();
        assert_eq!(r.partials(), 2);
        // Message 1 was evicted: its remaining fragments start it afresh.
        assert_eq!(
            r.accept(Micros(30), &c.decode(&a[1]).unwrap()).unwrap(),
            None
        );
        // After the age limit everything old is gone.
        r.accept(Micros(5_000), &c.decode(&b[1]).unwrap()).unwrap();
        assert_eq!(r.partials(), 1);
    }

    proptest! {
        #[test]
        fn fragments_in_any_order_with_duplicates_reassemble(
            msg in prop::collection::vec(any::<u8>(), 0..3_000),
            order in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
        ) {
            let c = codec();
            let frames = fragment(&c, FrameKind::Message, ShortId(7), ShortId(8), 42, &msg).unwrap();
            // Some duplicates first, then every frame in reverse.
            let mut sequence: Vec<Vec<u8>> = order.iter().map(|i| frames[i.index(frames.len())].clone()).collect();
            sequence.extend(frames.iter().rev().cloned());
            let mut r = Reassembler::new(&c, ReassemblyLimits::default());
            let out = feed(&mut r, &c, &sequence);
            // Duplicates of a completed message may start a new partial,
            // but the first message out is the original.
            prop_assert!(!out.is_empty());
            prop_assert_eq!(&out[0].bytes, &msg);
            prop_assert_eq!(out[0].msg_id, 42);
        }

        #[test]
        fn reassembly_memory_stays_bounded_under_arbitrary_frames(
            frames in prop::collection::vec((any::<u16>(), any::<u8>(), 2u8..=255, any::<u8>(), 0usize..=39), 0..500)
        ) {
            let c = codec();
            let limits = ReassemblyLimits::default();
            let mut r = Reassembler::new(&c, limits);
            for (i, (src, msg_id, count, index, len)) in frames.into_iter().enumerate() {
                let h = Header {
                    kind: FrameKind::Message,
                    src: ShortId(src % 4),
                    dst: ShortId::BROADCAST,
                    msg_id: msg_id % 8,
                    frag_index: index % count,
                    frag_count: count,
                };
                let bytes = c.encode(&h, &alloc::vec![0xAB; len]).unwrap();
                let _ = r.accept(Micros(i as u64), &c.decode(&bytes).unwrap());
                prop_assert!(r.partials() <= limits.partial_messages_max);
                prop_assert!(r.held_bytes() <= limits.partial_messages_max * limits.message_bytes_max);
            }
        }
    }
}

//! The diff stream's coder (`DiffCodec::BaseContext`): a binary arithmetic
//! coder driven by a logistic mix of context models, where the contexts
//! include the *base bytes* each diff byte is added to.
//!
//! Why: in a patch between two builds of an executable, diff bytes are
//! mostly zero and non-zero where the base holds an address or offset that
//! moved. A general-purpose compressor sees the diff stream alone; the
//! applier, though, reads the base byte under every diff byte before it
//! needs the diff, so the coder may condition on it (an `E8` opcode, the
//! bytes of a pointer). On esbuild 0.23.0 → 0.23.1 this codes the diff
//! streams in 0.55× the bytes of zstd level 22 and 0.65× of xz -9e
//! (BENCHMARKS.md, "Patches").
//!
//! **Determinism.** Encoder and decoder run on different machines, so every
//! step is integer arithmetic: the logistic tables are built from a fixed
//! 33-point integer table (no floating point), hashing is a wrapping
//! multiply, updates are shifts. One input, one output, on any target.
//!
//! **Per diff byte** (with `u` the base byte under it): first a flag "is
//! this diff byte non-zero", then, if it is, its eight bits from the most
//! significant; each binary decision is predicted by [`MODELS`] context
//! models (adaptive 16-bit probabilities in hashed tables of
//! `2^TABLE_BITS`) mixed by a small neural mixer selected by the recent
//! flag history (flag) or the partial byte (bits). The contexts: the
//! length of the current run of zero diffs, the flag history, `u` and the
//! base bytes before it, and the previous diff bytes at distances 1, 2, 4
//! and 8. The history runs on across control steps (the diff stream as
//! a sequence), exactly as the applier meets it.
//!
//! **Stream end.** The encoder flushes four bytes; a decoder that has
//! produced every diff byte must have read the stream exactly to its end
//! (anything left over, or reading past it, is malformed).

use crate::error::{Error, Result};

/// Context models per decision.
const MODELS: usize = 8;
/// Each model's table has `2^TABLE_BITS` 16-bit probabilities: 8 models ×
/// 2 tables × 128 KiB = 2 MiB per coder.
const TABLE_BITS: u32 = 16;
/// Probability tables adapt by 1/2^`RATE` of the error.
const RATE: u32 = 4;
/// A run of this many zero diffs opens a block decision: "are the next
/// [`BLOCK`] diff bytes all zero?" (again after every skipped block).
const RUN_START: usize = 16;
/// Zero diffs skipped by one block decision: long unchanged stretches cost
/// one decision per block instead of one per byte, in bits and in time.
const BLOCK: usize = 256;
/// Mixer weight sets: 256 for the flag (flag history), 512 for the bits.
const FLAG_MIXERS: usize = 256;
const BIT_MIXERS: usize = 512;

/// `p = 4096 / (1 + e^(-x/256))` at x = -2048, -1920, ..., 2048.
const SQUASH_POINTS: [i32; 33] = [
    1, 2, 3, 6, 10, 16, 27, 45, 73, 120, 194, 310, 488, 747, 1101, 1546, 2047, 2549, 2994, 3348,
    3607, 3785, 3901, 3975, 4022, 4050, 4068, 4079, 4085, 4089, 4092, 4093, 4094,
];

/// The logistic function on the fixed-point scale: `x` in 1/256ths,
/// result a 12-bit probability.
fn squash(x: i32) -> i32 {
    if x > 2047 {
        return 4095;
    }
    if x < -2047 {
        return 1;
    }
    let w = x & 127;
    let i = usize::try_from((x >> 7) + 16).unwrap_or(0);
    (SQUASH_POINTS[i] * (128 - w) + SQUASH_POINTS[i + 1] * w + 64) >> 7
}

/// [`stretch_table`]: indexable by any 12-bit probability without a check.
type Stretch = [i16; 4096];

/// The inverse of [`squash`], tabulated for every 12-bit probability.
fn stretch_table() -> Box<Stretch> {
    let mut table = Box::new([2047i16; 4096]);
    let mut next = 0usize;
    for x in -2047i16..=2047 {
        let v = usize::try_from(squash(i32::from(x))).unwrap_or(0);
        while next <= v && next < table.len() {
            table[next] = x;
            next += 1;
        }
    }
    table
}

/// One set of context models and their mixer.
struct Predictor {
    /// `MODELS` tables of `2^TABLE_BITS` probabilities, one after another.
    tables: Vec<u16>,
    /// Weight sets; their number is a power of two.
    weights: Vec<[i32; MODELS]>,
    /// The slots and stretched predictions of the decision in flight.
    slots: [usize; MODELS],
    inputs: [i32; MODELS],
    mixer: usize,
    p: i32,
}

impl Predictor {
    fn new(mixers: usize) -> Self {
        debug_assert!(mixers.is_power_of_two());
        Self {
            tables: vec![1 << 15; MODELS << TABLE_BITS],
            weights: vec![[1 << 14; MODELS]; mixers],
            slots: [0; MODELS],
            inputs: [0; MODELS],
            mixer: 0,
            p: 2048,
        }
    }

    /// The probability (12 bits, 1..=4095) that the next decision is 1.
    fn predict(&mut self, stretch: &Stretch, contexts: &[u32; MODELS], mixer: usize) -> i32 {
        self.mixer = mixer & (self.weights.len() - 1);
        let w = &self.weights[self.mixer];
        let mut dot = 0i64;
        for (i, &c) in contexts.iter().enumerate() {
            let slot =
                (i << TABLE_BITS) | (c.wrapping_mul(0x9E37_79B1) >> (32 - TABLE_BITS)) as usize;
            self.slots[i] = slot;
            let s = i32::from(stretch[usize::from(self.tables[slot] >> 4)]);
            self.inputs[i] = s;
            dot += i64::from(s) * i64::from(w[i]);
        }
        let x = i32::try_from((dot >> 16).clamp(-2047, 2047)).unwrap_or(0);
        self.p = squash(x).clamp(1, 4095);
        self.p
    }

    fn update(&mut self, bit: bool) {
        let err = (i32::from(bit) << 12) - self.p;
        let w = &mut self.weights[self.mixer];
        for (i, w) in w.iter_mut().enumerate() {
            *w = w.saturating_add((self.inputs[i] * err) >> 10);
            let v = &mut self.tables[self.slots[i]];
            if bit {
                *v += (u16::MAX - *v) >> RATE;
            } else {
                *v -= *v >> RATE;
            }
        }
    }
}

/// The model state both sides keep in step: history and predictors.
struct Model {
    stretch: Box<Stretch>,
    flag: Predictor,
    bits: Predictor,
    /// Previous eight diff bytes, most recent in the low byte.
    diffs: u64,
    /// Previous three base bytes, most recent in the low byte.
    bases: u32,
    /// Consecutive zero diffs just before.
    run: u32,
    /// Non-zero flags of the previous diffs, most recent in bit 0.
    flags: u32,
    /// Diff bytes not yet coded.
    remaining: usize,
    /// Zero bytes left in a block announced all-zero.
    skip: usize,
    /// P(the next block is all zero), by blocks already skipped in this run.
    block: [u16; 8],
}

impl Model {
    fn new(len: usize) -> Self {
        Self {
            stretch: stretch_table(),
            flag: Predictor::new(FLAG_MIXERS),
            bits: Predictor::new(BIT_MIXERS),
            diffs: 0,
            bases: 0,
            run: 0,
            flags: 0,
            remaining: len,
            skip: 0,
            block: [1 << 15; 8],
        }
    }

    /// Codes (or decodes) one diff byte over the base byte `under`:
    /// `d` is the byte when encoding (ignored when decoding), and
    /// `zero_block` says whether `d` and the next `BLOCK - 1` bytes are all
    /// zero (asked only when encoding, and only at a block decision).
    fn step<C: BitCoder>(
        &mut self,
        coder: &mut C,
        under: u8,
        d: u8,
        zero_block: impl FnOnce() -> bool,
    ) -> Result<u8> {
        self.remaining = self.remaining.saturating_sub(1);
        if self.skip > 0 {
            self.skip -= 1;
            self.push(under, 0);
            return Ok(0);
        }
        let run = self.run as usize;
        if run >= RUN_START && (run - RUN_START) % BLOCK == 0 && self.remaining + 1 >= BLOCK {
            let k = ((run - RUN_START) / BLOCK).min(7);
            let p = i32::from(self.block[k] >> 4).clamp(1, 4095);
            let skip = coder.bit(p, zero_block())?;
            let v = &mut self.block[k];
            if skip {
                *v += (u16::MAX - *v) >> RATE;
                self.skip = BLOCK - 1;
                self.push(under, 0);
                return Ok(0);
            }
            *v -= *v >> RATE;
        }
        let p = self.predict_flag(under);
        let nonzero = coder.bit(p, d != 0)?;
        self.flag.update(nonzero);
        let mut out = 0u8;
        if nonzero {
            let mut partial = 1u32;
            for k in (0..8).rev() {
                let p = self.predict_bit(under, partial);
                let bit = coder.bit(p, (d >> k) & 1 == 1)?;
                self.bits.update(bit);
                partial = partial << 1 | u32::from(bit);
            }
            out = (partial & 0xff) as u8;
        }
        self.push(under, out);
        Ok(out)
    }

    fn predict_flag(&mut self, under: u8) -> i32 {
        let (u, r, f) = (u32::from(under), self.run.min(31), self.flags);
        let (d1, d4, d8) = (self.diff(1), self.diff(4), self.diff(8));
        let (b1, b2, b3) = (self.base(1), self.base(2), self.base(3));
        let contexts = [
            1 << 24 | r << 8 | (f & 0xff),
            2 << 24 | u << 8 | (f & 0xf),
            3 << 24 | (f & 3) << 16 | b1 << 8 | u,
            4 << 24 | d1 << 8 | r.min(3),
            5 << 24 | d4 << 8 | d8,
            6 << 24 | ((u << 8 | b3) << 2 | (f & 3)),
            7 << 24 | b2 << 16 | b1 << 8 | u,
            8 << 24 | (f & 0xffff),
        ];
        self.flag
            .predict(&self.stretch, &contexts, (f & 0xff) as usize)
    }

    fn predict_bit(&mut self, under: u8, partial: u32) -> i32 {
        let (u, r, f) = (u32::from(under), self.run.min(7), self.flags);
        let (d1, d2, d4, d8) = (self.diff(1), self.diff(2), self.diff(4), self.diff(8));
        let b1 = self.base(1);
        let nz = u32::from(d1 != 0);
        let contexts = [
            partial,
            1 << 16 | d1 << 8 | partial,
            2 << 16 | nz << 20 | u << 8 | partial,
            (3 << 24) ^ (d1 << 16 | d2 << 8 | partial),
            (4 << 24) ^ (d4 << 8 | partial),
            (5 << 24) ^ (b1 << 16 | u << 8 | partial),
            (6 << 24) ^ (d8 << 8 | partial),
            (7 << 24) ^ (r << 16 | (f & 0xf) << 8 | partial),
        ];
        self.bits
            .predict(&self.stretch, &contexts, (partial | nz << 8) as usize)
    }

    /// The diff byte `k` (1..=8) places back.
    const fn diff(&self, k: u32) -> u32 {
        ((self.diffs >> (8 * (k - 1))) & 0xff) as u32
    }

    /// The base byte `k` (1..=3) places back.
    const fn base(&self, k: u32) -> u32 {
        (self.bases >> (8 * (k - 1))) & 0xff
    }

    fn push(&mut self, under: u8, diff: u8) {
        self.diffs = self.diffs << 8 | u64::from(diff);
        self.bases = (self.bases << 8 | u32::from(under)) & 0x00ff_ffff;
        if diff == 0 {
            self.run = self.run.saturating_add(1);
        } else {
            self.run = 0;
        }
        self.flags = self.flags << 1 | u32::from(diff != 0);
    }
}

/// Codes `diff` given `under`, the base byte each diff byte is added to
/// (`under.len() == diff.len()`; extra bytes of either are ignored).
#[must_use]
pub(crate) fn encode(diff: &[u8], under: &[u8]) -> Vec<u8> {
    let n = diff.len().min(under.len());
    let mut model = Model::new(n);
    let mut coder = Encoder::default();
    for i in 0..n {
        let zero_block = || {
            diff.get(i..i + BLOCK)
                .is_some_and(|b| b.iter().all(|&x| x == 0))
        };
        // The encoder cannot fail.
        let _ = model.step(&mut coder, under[i], diff[i], zero_block);
    }
    coder.finish()
}

/// Decodes a diff stream one byte at a time, each given the base byte
/// under it. Invariant: yields exactly what [`encode`] was given, for the
/// same base bytes; any input whatever yields bytes or an error, never a
/// panic.
pub(crate) struct Decoder<'a> {
    model: Model,
    coder: ArithDecoder<'a>,
}

impl<'a> Decoder<'a> {
    /// Starts decoding `input`, which codes `len` diff bytes.
    ///
    /// # Errors
    /// [`Error::PatchMalformed`] when `input` is shorter than the four
    /// bytes every coded stream has.
    pub(crate) fn new(input: &'a [u8], len: usize) -> Result<Self> {
        let Some(head) = input.get(..4) else {
            return Err(malformed(format!(
                "coded diff stream of {} bytes",
                input.len()
            )));
        };
        Ok(Self {
            model: Model::new(len),
            coder: ArithDecoder {
                input,
                pos: 4,
                x1: 0,
                x2: u32::MAX,
                x: u32::from_be_bytes([head[0], head[1], head[2], head[3]]),
            },
        })
    }

    /// The next diff byte, whose base byte is `under`.
    ///
    /// # Errors
    /// [`Error::PatchMalformed`] when the stream ends too early.
    pub(crate) fn next(&mut self, under: u8) -> Result<u8> {
        self.model.step(&mut self.coder, under, 0, || false)
    }

    /// Checks that the stream was read exactly to its end.
    ///
    /// # Errors
    /// [`Error::PatchMalformed`] for bytes left over.
    pub(crate) fn finish(self) -> Result<()> {
        let c = &self.coder;
        if c.pos == c.input.len() {
            Ok(())
        } else {
            Err(malformed(format!(
                "coded diff stream has {} bytes after its end",
                c.input.len().saturating_sub(c.pos)
            )))
        }
    }
}

/// One binary decision through the arithmetic coder: the encoder codes
/// `bit` and returns it, the decoder returns the decoded bit.
trait BitCoder {
    fn bit(&mut self, p: i32, bit: bool) -> Result<bool>;
}

/// The binary arithmetic decoder.
struct ArithDecoder<'a> {
    input: &'a [u8],
    pos: usize,
    x1: u32,
    x2: u32,
    x: u32,
}

impl BitCoder for ArithDecoder<'_> {
    fn bit(&mut self, p: i32, _: bool) -> Result<bool> {
        let xmid = split(self.x1, self.x2, p);
        let bit = self.x <= xmid;
        if bit {
            self.x2 = xmid;
        } else {
            self.x1 = xmid + 1;
        }
        while (self.x1 ^ self.x2) & 0xff00_0000 == 0 {
            let Some(&b) = self.input.get(self.pos) else {
                return Err(malformed("coded diff stream ends early".into()));
            };
            self.pos += 1;
            self.x1 <<= 8;
            self.x2 = self.x2 << 8 | 0xff;
            self.x = self.x << 8 | u32::from(b);
        }
        Ok(bit)
    }
}

impl BitCoder for Encoder {
    fn bit(&mut self, p: i32, bit: bool) -> Result<bool> {
        self.code(bit, p);
        Ok(bit)
    }
}

/// The binary arithmetic encoder (carry-less, 32-bit, after lpaq1).
struct Encoder {
    x1: u32,
    x2: u32,
    out: Vec<u8>,
}

impl Default for Encoder {
    fn default() -> Self {
        Self {
            x1: 0,
            x2: u32::MAX,
            out: Vec::new(),
        }
    }
}

impl Encoder {
    fn code(&mut self, bit: bool, p: i32) {
        let xmid = split(self.x1, self.x2, p);
        if bit {
            self.x2 = xmid;
        } else {
            self.x1 = xmid + 1;
        }
        while (self.x1 ^ self.x2) & 0xff00_0000 == 0 {
            self.out.push((self.x2 >> 24) as u8);
            self.x1 <<= 8;
            self.x2 = self.x2 << 8 | 0xff;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(&self.x1.to_be_bytes());
        self.out
    }
}

/// The point dividing `[x1, x2]` in the ratio `p : 4096 - p` (`x1 <= result
/// < x2` whenever `x1 < x2` and `0 < p < 4096`).
fn split(x1: u32, x2: u32, p: i32) -> u32 {
    let range = x2 - x1;
    let p = u32::try_from(p).unwrap_or(2048);
    x1 + (range >> 12) * p + (((range & 0xfff) * p) >> 12)
}

fn malformed(reason: String) -> Error {
    Error::PatchMalformed {
        what: "patch piece",
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(coded: &[u8], under: &[u8]) -> Result<Vec<u8>> {
        let mut d = Decoder::new(coded, under.len())?;
        let out = under
            .iter()
            .map(|&u| d.next(u))
            .collect::<Result<Vec<u8>>>()?;
        d.finish()?;
        Ok(out)
    }

    /// A base and a "new build" of it: sparse changes where the base holds
    /// a marker byte, as moved addresses are.
    fn sample(len: usize, seed: u32) -> (Vec<u8>, Vec<u8>) {
        let mut x = seed | 1;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let under: Vec<u8> = (0..len).map(|_| (rnd() % 7) as u8 * 37).collect();
        let diff = under
            .iter()
            .map(|&u| if u == 74 { (rnd() % 3) as u8 } else { 0 })
            .collect();
        (diff, under)
    }

    #[test]
    fn decodes_what_it_encoded() {
        for (len, seed) in [(0, 1), (1, 2), (5, 3), (10_000, 4), (200_000, 5)] {
            let (diff, under) = sample(len, seed);
            let coded = encode(&diff, &under);
            assert_eq!(decode(&coded, &under).unwrap(), diff, "len {len}");
        }
    }

    #[test]
    fn random_diff_bytes_round_trip() {
        let diff: Vec<u8> = (0..50_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let under: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let coded = encode(&diff, &under);
        assert_eq!(decode(&coded, &under).unwrap(), diff);
    }

    #[test]
    fn sparse_diffs_conditioned_on_the_base_code_small() {
        let (diff, under) = sample(1 << 20, 9);
        let coded = encode(&diff, &under);
        let zstd = zstd::bulk::compress(&diff, 19).unwrap();
        assert!(
            coded.len() * 10 < zstd.len() * 9,
            "coded {} bytes, zstd -19 {} bytes",
            coded.len(),
            zstd.len()
        );
    }

    #[test]
    fn a_truncated_stream_is_malformed() {
        let (diff, under) = sample(50_000, 11);
        let coded = encode(&diff, &under);
        for cut in [0, 3, coded.len() / 2, coded.len() - 1] {
            assert!(
                matches!(
                    decode(&coded[..cut], &under),
                    Err(Error::PatchMalformed { .. })
                ),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn bytes_after_the_end_are_malformed() {
        let (diff, under) = sample(10_000, 12);
        let mut coded = encode(&diff, &under);
        coded.push(0);
        assert!(matches!(
            decode(&coded, &under),
            Err(Error::PatchMalformed { .. })
        ));
    }

    /// Counts the binary decisions coded.
    struct Counting(Encoder, usize);

    impl BitCoder for Counting {
        fn bit(&mut self, p: i32, bit: bool) -> Result<bool> {
            self.1 += 1;
            self.0.bit(p, bit)
        }
    }

    #[test]
    fn an_unchanged_stretch_costs_one_decision_per_block_not_per_byte() {
        let n = 1 << 20;
        let (diff, under) = (vec![0u8; n], vec![9u8; n]);
        let mut model = Model::new(n);
        let mut coder = Counting(Encoder::default(), 0);
        for i in 0..n {
            let zero_block = || diff[i..].iter().take(BLOCK).all(|&x| x == 0) && i + BLOCK <= n;
            model
                .step(&mut coder, under[i], diff[i], zero_block)
                .unwrap();
        }
        // 16 flags open the run, then one decision per 256-byte block, and
        // a flag per byte of the tail shorter than a block (not ~10^6).
        assert!(
            coder.1 <= RUN_START + n / BLOCK + BLOCK,
            "{} decisions",
            coder.1
        );
    }

    #[test]
    fn sparse_changes_in_long_unchanged_stretches_code_smaller_than_zstd() {
        let n = 1 << 20;
        let mut diff = vec![0u8; n];
        for i in (0..n).step_by(40_000) {
            diff[i] = 7;
        }
        let under = vec![3u8; n];
        let coded = encode(&diff, &under);
        assert_eq!(decode(&coded, &under).unwrap(), diff);
        // 27 changes in 1 MiB: a few bytes each, less than zstd needs,
        // not a fraction of a bit per zero byte.
        let zstd = zstd::bulk::compress(&diff, 19).unwrap();
        assert!(
            coded.len() < zstd.len(),
            "coded {} bytes, zstd -19 {}",
            coded.len(),
            zstd.len()
        );
    }

    proptest::proptest! {
        #[test]
        fn any_input_decodes_or_errs_without_panicking(
            input in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            under in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
        ) {
            let _ = decode(&input, &under);
        }
    }

    #[test]
    fn squash_and_stretch_are_inverse_on_the_grid() {
        let st = stretch_table();
        for x in (-2000..=2000).step_by(50) {
            let p = squash(x);
            let back = i32::from(st[usize::try_from(p).unwrap()]);
            assert!((squash(back) - p).abs() <= 1, "x {x} p {p} back {back}");
        }
        assert!(st.windows(2).all(|w| w[0] <= w[1]));
    }
}

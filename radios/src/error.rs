//! The radios crate's error type.

use alloc::string::String;

use crate::time::Micros;

/// What can go wrong with radio parameters, budgets, the medium, frames and
/// coding. Input from a radio (frames, symbols) gets one of these, never a
/// panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- Parameters (caller's configuration) ---
    /// Spreading factor outside 7..=12.
    #[error("spreading factor SF{sf} is not supported (use 7..=12)")]
    InvalidSpreadingFactor {
        /// The number given.
        sf: u8,
    },
    /// Bandwidth other than 125, 250 or 500 kHz.
    #[error("bandwidth {khz} kHz is not supported (use 125, 250 or 500)")]
    InvalidBandwidth {
        /// The value given.
        khz: u32,
    },
    /// Coding rate other than 4/5..4/8.
    #[error("coding rate 4/{denominator} is not supported (use 4/5..4/8)")]
    InvalidCodingRate {
        /// The denominator given.
        denominator: u8,
    },
    /// Preamble shorter than the radios accept.
    #[error("preamble of {symbols} symbols is shorter than the minimum {min}")]
    PreambleTooShort {
        /// Symbols given.
        symbols: u16,
        /// The minimum.
        min: u16,
    },
    /// Low-data-rate optimisation forced off where symbols last 16 ms or more.
    #[error(
        "low-data-rate optimisation must be on at SF{sf} / {bw_hz} Hz (symbol time of 16 ms or more)"
    )]
    LowDataRateRequired {
        /// Spreading factor.
        sf: u8,
        /// Bandwidth in Hz.
        bw_hz: u32,
    },
    /// A LoRa payload longer than the PHY allows, or longer than a frame limit.
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    PayloadTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },

    // --- Regional rules and the duty-cycle budget ---
    /// The frequency lies in none of the region's sub-bands.
    #[error("{hz} Hz is outside every {region} sub-band")]
    FrequencyOutsideRegion {
        /// Region name.
        region: &'static str,
        /// The frequency.
        hz: u32,
    },
    /// The region has no such data rate.
    #[error("{region} has no data rate DR{index}")]
    UnknownDataRate {
        /// Region name.
        region: &'static str,
        /// The index asked for.
        index: u8,
    },
    /// No data rate was configured.
    #[error("no data rate configured")]
    NoDataRate,
    /// One transmission longer than the region's dwell time.
    #[error("transmission of {airtime_us} µs exceeds the dwell time of {max_us} µs")]
    DwellTimeExceeded {
        /// The frame's airtime.
        airtime_us: u64,
        /// The dwell time.
        max_us: u64,
    },
    /// One transmission longer than its sub-band's whole hourly allowance.
    #[error(
        "transmission of {airtime_us} µs exceeds the hourly duty-cycle budget of {budget_us} µs"
    )]
    AirtimeExceedsBudget {
        /// The frame's airtime.
        airtime_us: u64,
        /// The allowance.
        budget_us: u64,
    },
    /// The duty cycle forbids sending now; `until` is the earliest instant
    /// it allows.
    #[error("duty cycle: may send again at {} µs", until.0)]
    DutyCycleWait {
        /// Earliest allowed start.
        until: Micros,
    },

    // --- Simulated medium (caller's misuse) ---
    /// Time passed in went backwards.
    #[error("time went backwards: {} µs after {} µs", now.0, last.0)]
    TimeWentBackwards {
        /// The time given.
        now: Micros,
        /// The latest time seen before.
        last: Micros,
    },
    /// No such node in the medium.
    #[error("no node {node} in the medium")]
    UnknownNode {
        /// The index given.
        node: usize,
    },
    /// A half-duplex radio asked to send while it is still sending.
    #[error("node {node} is still transmitting until {} µs", until.0)]
    RadioBusy {
        /// The node.
        node: usize,
        /// When its current frame ends.
        until: Micros,
    },
    /// A link matrix whose size does not match the number of nodes.
    #[error("link matrix of {got} entries for {nodes} nodes")]
    LinkMatrixSize {
        /// Entries given.
        got: usize,
        /// Nodes.
        nodes: usize,
    },

    // --- Frames from the air ---
    /// Shorter than a header and a MAC.
    #[error("frame of {len} bytes is shorter than the minimum {min}")]
    FrameTooShort {
        /// Its length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// Longer than the configured frame limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The MAC does not match: another mesh key, corruption or forgery.
    /// Nothing of the frame was parsed.
    #[error("frame MAC does not match (another mesh key, corruption or forgery)")]
    BadMac,
    /// A frame format version this build does not speak.
    #[error("frame version {found} is not supported (this build speaks {supported})")]
    UnsupportedFrameVersion {
        /// The version found.
        found: u8,
        /// The version supported.
        supported: u8,
    },
    /// An unknown frame kind.
    #[error("unknown frame kind {kind}")]
    UnknownFrameKind {
        /// The kind found.
        kind: u8,
    },
    /// A fragment header that cannot be right (index past count, count 0).
    #[error("bad fragment header: index {index} of {count}")]
    BadFragment {
        /// The fragment index.
        index: u8,
        /// The fragment count.
        count: u8,
    },
    /// A message that needs more fragments than a header can number.
    #[error("message of {len} bytes needs more than {max_fragments} fragments")]
    MessageTooLong {
        /// Its length.
        len: usize,
        /// The fragment limit.
        max_fragments: usize,
    },

    // --- Coded symbols ---
    /// An object outside the size limits of the coding layer.
    #[error("object of {len} bytes is outside 1..={max} bytes")]
    ObjectSize {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A symbol size the frame cannot carry, or zero.
    #[error("symbol size {size} is unusable (1..={max})")]
    SymbolSize {
        /// The size asked for.
        size: usize,
        /// The largest usable.
        max: usize,
    },
    /// A symbol that belongs to another object.
    #[error("symbol belongs to another object")]
    ForeignSymbol,
    /// A symbol whose header or length does not fit this object.
    #[error("malformed symbol: {reason}")]
    MalformedSymbol {
        /// What is wrong.
        reason: &'static str,
    },
    /// The decoded bytes do not hash to the object id: a bad symbol got in.
    #[error("decoded object does not match its id")]
    DecodedObjectMismatch,
    /// A progress bitmap that does not decode.
    #[error("malformed progress bitmap: {reason}")]
    MalformedProgress {
        /// What is wrong.
        reason: &'static str,
    },

    // --- Hardware (feature `sx126x`) ---
    /// The radio or its SPI/GPIO plumbing failed, or a setting the driver
    /// cannot express was asked for.
    #[error("radio hardware: {op}: {detail}")]
    Hardware {
        /// What was being done.
        op: &'static str,
        /// The driver's or the OS's message.
        detail: String,
    },
}

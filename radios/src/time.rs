//! Virtual time for radio links: microseconds on a clock the driver owns.

/// A point in time in microseconds since an epoch the driver chooses
/// (process start, or zero in a simulation). Only differences matter.
/// Radio airtimes are tens of milliseconds with sub-millisecond parts,
/// so this crate counts microseconds where the mesh core counts
/// milliseconds; [`Micros::from_millis`] converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Micros(pub u64);

impl Micros {
    /// One second.
    pub const SECOND: u64 = 1_000_000;
    /// One hour, the length of the duty-cycle window.
    pub const HOUR: u64 = 3_600 * Self::SECOND;

    /// The instant `ms` milliseconds after the epoch (saturating).
    #[must_use]
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms.saturating_mul(1_000))
    }

    /// This instant in whole milliseconds, rounded up (an event is never
    /// reported earlier than it happens).
    #[must_use]
    pub const fn as_millis_ceil(self) -> u64 {
        self.0.div_ceil(1_000)
    }

    /// `us` microseconds later (saturating).
    #[must_use]
    pub const fn plus(self, us: u64) -> Self {
        Self(self.0.saturating_add(us))
    }

    /// Microseconds from `earlier` to `self`, zero if `earlier` is later.
    #[must_use]
    pub const fn since(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

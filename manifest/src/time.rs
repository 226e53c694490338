//! Time as the caller sees it: passed in, never read from a clock here.

use core::fmt;

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch (UTC), as carried in meshota documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UnixTime(pub u64);

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Civil date from days since epoch (Howard Hinnant's algorithm).
        let secs = self.0;
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        )
    }
}

/// Whether expiry dates are enforced during a verification.
///
/// A node with a trustworthy clock passes `Enforce` with its current time. A
/// node with no clock at all (no RTC, no network time) can only pass
/// [`Expiration::dangerous_ignore`], which turns off freeze-attack
/// protection; the name is meant to be noticed in review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiration {
    /// Reject anything whose expiry is at or before `now`.
    Enforce {
        /// The verifier's current time.
        now: UnixTime,
    },
    /// Accept expired documents. Only for nodes without any clock.
    DangerousIgnore,
}

impl Expiration {
    /// Accept expired documents: for nodes that have no clock at all.
    #[must_use]
    pub const fn dangerous_ignore() -> Self {
        Self::DangerousIgnore
    }

    /// `Some(now)` when expiry is enforced.
    #[must_use]
    pub const fn now(&self) -> Option<UnixTime> {
        match self {
            Self::Enforce { now } => Some(*now),
            Self::DangerousIgnore => None,
        }
    }

    /// True when `expires` is set and not after the enforced `now`.
    #[must_use]
    pub fn has_passed(&self, expires: Option<UnixTime>) -> bool {
        matches!((self.now(), expires), (Some(now), Some(exp)) if exp <= now)
    }
}

//! Duty-cycle budget (asked before every transmission) and an independent
//! checker (used by the simulated medium and by tests).
//!
//! # The rule
//! In every sub-band, the airtime of one node's transmissions that falls
//! inside **any** one-hour window is at most the sub-band's limit `L`
//! (36 s at 1 %). This is the sliding-window reading of ETSI EN 300 220;
//! it is stricter than a per-transmission off-time and never allows a
//! burst larger than `L`.
//!
//! # Why checking one window per transmission is enough
//! A node's transmissions never overlap each other (a radio sends one
//! frame at a time). For a new transmission `[s, s+a)`, among the windows
//! that contain part of it the fullest is the one ending at `s+a`: sliding
//! a window left by `d` adds at most `d` of older airtime and drops exactly
//! `d` of the new frame; sliding it right only drops older airtime. Windows
//! that contain none of it were checked when their own frames were sent.
//! So the budget admits `[s, s+a)` when `a` plus the older airtime inside
//! `[s+a-H, s)` is at most `L` (H = one hour), and the checker verifies the
//! same window with its own, exact record.
//!
//! # Bounded memory
//! The budget keeps at most [`RECORDS_PER_BAND_MAX`] records per sub-band.
//! Past that, the two oldest merge into one record of their summed airtime
//! ending where the later one ended: airtime only moves later, so every
//! window sees at least as much as really happened (conservative, never
//! permissive). Records that ended an hour before `now` are dropped.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::Error;
use crate::region::Region;
use crate::time::Micros;

/// Records kept per sub-band before the oldest are merged.
pub const RECORDS_PER_BAND_MAX: usize = 512;

/// One past transmission: `[start, end)` in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u64,
    end: u64,
}

impl Span {
    const fn len(self) -> u64 {
        self.end - self.start
    }

    /// Microseconds of this span inside `[from, until)`.
    fn overlap(self, from: u64, until: u64) -> u64 {
        let lo = self.start.max(from);
        let hi = self.end.min(until);
        hi.saturating_sub(lo)
    }
}

/// One node's duty-cycle budget for a region: a sliding one-hour window per
/// sub-band. Invariant: following its answers (sending only when
/// [`DutyCycleBudget::earliest`] says `now` or later, and recording each
/// transmission with [`DutyCycleBudget::try_transmit`]) the node never
/// exceeds any sub-band's duty cycle in any one-hour window.
#[derive(Debug, Clone)]
pub struct DutyCycleBudget {
    region: Region,
    bands: Vec<VecDeque<Span>>,
}

impl DutyCycleBudget {
    /// An empty budget for `region` (nothing sent yet).
    #[must_use]
    pub fn new(region: Region) -> Self {
        Self {
            region,
            bands: region.sub_bands.iter().map(|_| VecDeque::new()).collect(),
        }
    }

    /// The region this budget enforces.
    #[must_use]
    pub const fn region(&self) -> &Region {
        &self.region
    }

    /// The earliest instant at or after `now` at which a transmission of
    /// `airtime_us` on `freq_hz` keeps the node within its duty cycle (and
    /// after its previous transmission ends).
    ///
    /// # Errors
    /// [`Error::FrequencyOutsideRegion`], [`Error::DwellTimeExceeded`], or
    /// [`Error::AirtimeExceedsBudget`] when the frame is longer than the
    /// sub-band's whole hourly allowance (it could never be sent).
    pub fn earliest(&self, now: Micros, freq_hz: u32, airtime_us: u64) -> Result<Micros, Error> {
        self.region.check_dwell(airtime_us)?;
        let (index, band) = self.region.sub_band(freq_hz)?;
        let limit = band.airtime_per_hour_us();
        if airtime_us > limit {
            return Err(Error::AirtimeExceedsBudget {
                airtime_us,
                budget_us: limit,
            });
        }
        let records = &self.bands[index];
        let busy_until = records.back().map_or(0, |r| r.end);
        let first = now.0.max(busy_until);
        let room = limit - airtime_us;
        // Find the smallest window start t with older airtime after t <= room.
        let mut newer = 0u64;
        for r in records.iter().rev() {
            if newer + r.len() <= room {
                newer += r.len();
                continue;
            }
            let t = r.end - (room - newer);
            let s = (t + Micros::HOUR).saturating_sub(airtime_us);
            return Ok(Micros(first.max(s)));
        }
        Ok(Micros(first))
    }

    /// Records a transmission of `airtime_us` on `freq_hz` starting at `now`,
    /// if the budget allows it now.
    ///
    /// # Errors
    /// [`Error::DutyCycleWait`] with the instant it may send when that is
    /// later than `now` (nothing is recorded); the errors of
    /// [`DutyCycleBudget::earliest`].
    pub fn try_transmit(
        &mut self,
        now: Micros,
        freq_hz: u32,
        airtime_us: u64,
    ) -> Result<(), Error> {
        let at = self.earliest(now, freq_hz, airtime_us)?;
        if at > now {
            return Err(Error::DutyCycleWait { until: at });
        }
        let (index, _) = self.region.sub_band(freq_hz)?;
        let records = &mut self.bands[index];
        let horizon = now.0.saturating_sub(Micros::HOUR);
        while records.front().is_some_and(|r| r.end <= horizon) {
            records.pop_front();
        }
        records.push_back(Span {
            start: now.0,
            end: now.0 + airtime_us,
        });
        if records.len() > RECORDS_PER_BAND_MAX {
            if let (Some(a), Some(b)) = (records.pop_front(), records.pop_front()) {
                records.push_front(Span {
                    start: b.end - (a.len() + b.len()),
                    end: b.end,
                });
            }
        }
        Ok(())
    }

    /// Airtime (µs) this budget counts inside the hour before `now` on the
    /// sub-band holding `freq_hz` (0 for a frequency outside the region).
    #[must_use]
    pub fn used_last_hour(&self, now: Micros, freq_hz: u32) -> u64 {
        self.region.sub_band(freq_hz).map_or(0, |(i, _)| {
            let from = now.0.saturating_sub(Micros::HOUR);
            self.bands[i].iter().map(|r| r.overlap(from, now.0)).sum()
        })
    }
}

/// A transmission that broke a duty cycle, as the checker saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The node (the caller's index).
    pub node: usize,
    /// The sub-band's name.
    pub sub_band: &'static str,
    /// End of the one-hour window that held too much airtime.
    pub window_end: Micros,
    /// Airtime inside that window (µs).
    pub airtime_us: u64,
    /// The limit (µs).
    pub limit_us: u64,
}

/// Watches every transmission of every node and reports each that leaves
/// a one-hour window with more airtime than its sub-band allows. It keeps
/// its own exact records (no merging), independent of
/// [`DutyCycleBudget`]: that is what it checks. Memory: the transmissions
/// of the last hour per node and sub-band.
#[derive(Debug, Clone)]
pub struct DutyCycleChecker {
    region: Region,
    /// Per node, per sub-band.
    records: Vec<Vec<VecDeque<Span>>>,
    violations: Vec<Violation>,
}

impl DutyCycleChecker {
    /// A checker for `region` with no transmissions seen.
    #[must_use]
    pub const fn new(region: Region) -> Self {
        Self {
            region,
            records: Vec::new(),
            violations: Vec::new(),
        }
    }

    /// Notes a transmission by `node` of `airtime_us` from `start` on
    /// `freq_hz`. A frequency outside the region is itself a violation
    /// (limit 0). Transmissions of one node are expected in start order.
    pub fn observe(&mut self, node: usize, start: Micros, freq_hz: u32, airtime_us: u64) {
        let end = start.0 + airtime_us;
        let Ok((band, sub)) = self.region.sub_band(freq_hz) else {
            self.violations.push(Violation {
                node,
                sub_band: "outside region",
                window_end: Micros(end),
                airtime_us,
                limit_us: 0,
            });
            return;
        };
        if self.records.len() <= node {
            let bands = self.region.sub_bands.len();
            self.records
                .resize_with(node + 1, || (0..bands).map(|_| VecDeque::new()).collect());
        }
        let log = &mut self.records[node][band];
        let from = end.saturating_sub(Micros::HOUR);
        while log.front().is_some_and(|r| r.end <= from) {
            log.pop_front();
        }
        log.push_back(Span {
            start: start.0,
            end,
        });
        let used: u64 = log.iter().map(|r| r.overlap(from, end)).sum();
        let limit = sub.airtime_per_hour_us();
        if used > limit {
            self.violations.push(Violation {
                node,
                sub_band: sub.name,
                window_end: Micros(end),
                airtime_us: used,
                limit_us: limit,
            });
        }
    }

    /// Every violation seen so far, in the order observed.
    #[must_use]
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::{EU868, US915};
    use proptest::prelude::*;

    const G1: u32 = 868_100_000;
    const G2: u32 = 868_850_000;
    const G3: u32 = 869_525_000;
    const S: u64 = Micros::SECOND;

    #[test]
    fn budget_refuses_transmission_beyond_one_percent() {
        let mut b = DutyCycleBudget::new(EU868);
        // 36 one-second frames back to back use the whole 1 % allowance.
        for i in 0..36 {
            b.try_transmit(Micros(i * S), G1, S).unwrap();
        }
        assert_eq!(b.used_last_hour(Micros(36 * S), G1), 36 * S);
        let err = b.try_transmit(Micros(36 * S), G1, S).unwrap_err();
        // The next second-long frame fits once the first one has slid out
        // of the window that would end with it: at exactly one hour.
        assert_eq!(
            err,
            Error::DutyCycleWait {
                until: Micros(3_600 * S)
            }
        );
        assert_eq!(
            b.earliest(Micros(36 * S), G1, S).unwrap(),
            Micros(3_600 * S)
        );
        b.try_transmit(Micros(3_600 * S), G1, S).unwrap();
        // Other sub-bands have their own allowance.
        b.try_transmit(Micros(36 * S), G3, S).unwrap();
    }

    #[test]
    fn budget_answers_the_previous_frames_end_while_it_is_on_air() {
        let mut b = DutyCycleBudget::new(EU868);
        b.try_transmit(Micros(0), G3, 500_000).unwrap();
        assert_eq!(b.earliest(Micros(100), G3, 1_000).unwrap(), Micros(500_000));
    }

    #[test]
    fn budget_refuses_frames_it_could_never_send() {
        let b = DutyCycleBudget::new(EU868);
        // 0.1 % of an hour is 3.6 s.
        assert!(matches!(
            b.earliest(Micros(0), G2, 3_600_001),
            Err(Error::AirtimeExceedsBudget {
                budget_us: 3_600_000,
                ..
            })
        ));
        assert!(matches!(
            b.earliest(Micros(0), 870_000_000, 10),
            Err(Error::FrequencyOutsideRegion { .. })
        ));
        let us = DutyCycleBudget::new(US915);
        assert!(matches!(
            us.earliest(Micros(0), 915_000_000, 400_001),
            Err(Error::DwellTimeExceeded { .. })
        ));
        assert_eq!(
            us.earliest(Micros(7), 915_000_000, 400_000).unwrap(),
            Micros(7)
        );
    }

    #[test]
    fn checker_reports_a_node_that_ignores_its_budget() {
        let mut c = DutyCycleChecker::new(EU868);
        for i in 0..36 {
            c.observe(3, Micros(i * S), G1, S);
        }
        assert!(c.violations().is_empty());
        c.observe(3, Micros(100 * S), G1, 1);
        assert_eq!(c.violations().len(), 1);
        let v = &c.violations()[0];
        assert_eq!(
            (v.node, v.sub_band, v.airtime_us, v.limit_us),
            (3, "g1", 36 * S + 1, 36 * S)
        );
        // Another node has its own allowance.
        c.observe(4, Micros(100 * S), G1, S);
        assert_eq!(c.violations().len(), 1);
    }

    /// Largest airtime in any one-hour window, by brute force over the
    /// windows that start at a frame start or end at a frame end.
    fn worst_window(spans: &[(u64, u64)]) -> u64 {
        let total = |from: u64, until: u64| -> u64 {
            spans
                .iter()
                .map(|&(s, e)| e.min(until).saturating_sub(s.max(from)))
                .sum()
        };
        spans
            .iter()
            .flat_map(|&(s, e)| {
                [
                    total(s, s + Micros::HOUR),
                    total(e.saturating_sub(Micros::HOUR), e),
                ]
            })
            .max()
            .unwrap_or(0)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

        /// A node that asks before every frame never exceeds 1 % (or 0.1 %,
        /// 10 %) in any window, and the checker agrees with brute force.
        #[test]
        fn budget_never_lets_a_node_exceed_its_duty_cycle(
            requests in prop::collection::vec((0u64..120 * S, 1_000u64..2 * S, 0usize..3), 1..400)
        ) {
            let freqs = [G1, G2, G3];
            let mut b = DutyCycleBudget::new(EU868);
            let mut c = DutyCycleChecker::new(EU868);
            let mut now = Micros(0);
            let mut sent: [Vec<(u64, u64)>; 3] = Default::default();
            for (gap, airtime, band) in requests {
                now = now.plus(gap);
                let f = freqs[band];
                let airtime = airtime.min(EU868.sub_bands[band].airtime_per_hour_us());
                let at = b.earliest(now, f, airtime).unwrap();
                prop_assert!(at >= now);
                // Asking earlier than the answer is refused.
                if at > now {
                    prop_assert_eq!(b.try_transmit(now, f, airtime), Err(Error::DutyCycleWait { until: at }));
                }
                b.try_transmit(at, f, airtime).unwrap();
                c.observe(0, at, f, airtime);
                sent[band].push((at.0, at.0 + airtime));
                now = at;
            }
            prop_assert!(c.violations().is_empty(), "{:?}", c.violations());
            for (band, spans) in sent.iter().enumerate() {
                prop_assert!(worst_window(spans) <= EU868.sub_bands[band].airtime_per_hour_us());
            }
        }

        /// The checker flags exactly the frames whose hour holds too much.
        #[test]
        fn checker_agrees_with_brute_force(
            frames in prop::collection::vec((0u64..600 * S, 1u64..20 * S), 1..60)
        ) {
            let mut c = DutyCycleChecker::new(EU868);
            let mut spans = Vec::new();
            let mut t = 0;
            for (gap, airtime) in frames {
                let start = t + gap;
                c.observe(0, Micros(start), G1, airtime);
                spans.push((start, start + airtime));
                t = start + airtime;
            }
            let over = worst_window(&spans) > 36 * S;
            prop_assert_eq!(over, !c.violations().is_empty());
        }
    }

    #[test]
    fn budget_memory_stays_bounded_and_merging_stays_safe() {
        let mut b = DutyCycleBudget::new(EU868);
        let mut c = DutyCycleChecker::new(EU868);
        let mut now = Micros(0);
        // 5 000 short frames in the 10 % band: far more than the record cap.
        for _ in 0..5_000 {
            let at = b.earliest(now, G3, 20_000).unwrap();
            b.try_transmit(at, G3, 20_000).unwrap();
            c.observe(0, at, G3, 20_000);
            now = at.plus(20_000);
        }
        assert!(b.bands[2].len() <= RECORDS_PER_BAND_MAX);
        assert!(c.violations().is_empty());
        // It kept sending: 5 000 frames of 20 ms = 100 s, under 360 s per hour.
        assert!(now.0 >= 100 * S);
    }
}

//! Trickle timing (RFC 6206) for anti-entropy summaries.
//!
//! Each interval of length I picks a moment t in [I/2, I). At t, the node
//! sends its summary unless it already heard `k` consistent summaries in
//! this interval. At the end of the interval I doubles, up to `i_max`. An
//! inconsistency (a peer has something new, or lacks something) resets I
//! to `i_min`: fast when something is new, slow when all agree.

use crate::rng::SeededRng;
use crate::time::Timestamp;

/// Trickle parameters, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrickleConfig {
    /// Smallest interval.
    pub i_min_ms: u64,
    /// Largest interval.
    pub i_max_ms: u64,
    /// Redundancy constant: suppress after this many consistent summaries.
    pub k: u32,
}

impl TrickleConfig {
    /// Defaults for IP links: 200 ms to 60 s, k = 2.
    pub const IP: Self = Self {
        i_min_ms: 200,
        i_max_ms: 60_000,
        k: 2,
    };

    /// Defaults for LoRa links (`crate::radio`): 16 s to 10 min, k = 1. A
    /// frame takes a tenth of a second or more and airtime is rationed, so
    /// one announcement per interval among neighbours that agree is enough.
    pub const LORA: Self = Self {
        i_min_ms: 16_000,
        i_max_ms: 600_000,
        k: 1,
    };
}

/// One Trickle timer.
#[derive(Debug, Clone)]
pub struct Trickle {
    config: TrickleConfig,
    interval_ms: u64,
    interval_start: Timestamp,
    fire_at: Option<Timestamp>,
    heard: u32,
}

impl Trickle {
    /// A timer that starts a minimal interval at `now`.
    pub fn new(config: TrickleConfig, now: Timestamp, rng: &mut SeededRng) -> Self {
        let mut t = Self {
            config,
            interval_ms: config.i_min_ms,
            interval_start: now,
            fire_at: None,
            heard: 0,
        };
        t.start_interval(now, rng);
        t
    }

    fn start_interval(&mut self, now: Timestamp, rng: &mut SeededRng) {
        self.interval_start = now;
        self.heard = 0;
        let half = self.interval_ms / 2;
        self.fire_at = Some(Timestamp(
            now.0 + rng.range(half, self.interval_ms.max(half + 1)),
        ));
    }

    /// The next moment [`Trickle::on_timeout`] must run.
    #[must_use]
    pub fn deadline(&self) -> Timestamp {
        match self.fire_at {
            Some(t) => t,
            None => Timestamp(self.interval_start.0 + self.interval_ms),
        }
    }

    /// A consistent summary was heard.
    pub fn hear_consistent(&mut self) {
        self.heard = self.heard.saturating_add(1);
    }

    /// Something is new or missing somewhere: go fast again.
    pub fn reset(&mut self, now: Timestamp, rng: &mut SeededRng) {
        if self.interval_ms > self.config.i_min_ms || self.fire_at.is_none() {
            self.interval_ms = self.config.i_min_ms;
            self.start_interval(now, rng);
        }
    }

    /// Advances the timer; returns true when the summary should be sent now.
    pub fn on_timeout(&mut self, now: Timestamp, rng: &mut SeededRng) -> bool {
        let mut send = false;
        if let Some(t) = self.fire_at {
            if now >= t {
                self.fire_at = None;
                send = self.heard < self.config.k;
            }
        }
        if self.fire_at.is_none() && now.0 >= self.interval_start.0 + self.interval_ms {
            self.interval_ms = (self.interval_ms * 2).min(self.config.i_max_ms);
            self.start_interval(now, rng);
        }
        send
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_doubles_up_to_the_maximum_while_consistent() {
        let mut rng = SeededRng::new(1);
        let cfg = TrickleConfig {
            i_min_ms: 100,
            i_max_ms: 800,
            k: 1,
        };
        let mut t = Trickle::new(cfg, Timestamp(0), &mut rng);
        let mut sends = 0;
        for _ in 0..40 {
            let now = t.deadline();
            if t.on_timeout(now, &mut rng) {
                sends += 1;
            }
        }
        assert_eq!(t.interval_ms, 800);
        assert!(sends >= 10, "{sends}");
    }

    #[test]
    fn hearing_k_consistent_summaries_suppresses_sending() {
        let mut rng = SeededRng::new(2);
        let cfg = TrickleConfig {
            i_min_ms: 100,
            i_max_ms: 100,
            k: 1,
        };
        let mut t = Trickle::new(cfg, Timestamp(0), &mut rng);
        t.hear_consistent();
        let now = t.deadline();
        assert!(!t.on_timeout(now, &mut rng));
    }

    #[test]
    fn reset_returns_to_the_minimum_interval() {
        let mut rng = SeededRng::new(3);
        let cfg = TrickleConfig {
            i_min_ms: 100,
            i_max_ms: 10_000,
            k: 1,
        };
        let mut t = Trickle::new(cfg, Timestamp(0), &mut rng);
        for _ in 0..20 {
            let now = t.deadline();
            t.on_timeout(now, &mut rng);
        }
        assert!(t.interval_ms > 100);
        let now = t.deadline();
        t.reset(now, &mut rng);
        assert_eq!(t.interval_ms, 100);
        assert!(t.deadline().since(now) < 100);
    }
}

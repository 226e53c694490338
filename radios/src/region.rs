//! Regional rules as data: sub-bands with duty-cycle limits, dwell times,
//! data rates and their largest payloads.
//!
//! Sources: ETSI EN 300 220-2 / ERC Recommendation 70-03 annex 1 for the
//! EU868 sub-bands; LoRaWAN Regional Parameters (RP002-1.0.x) for data
//! rates and the largest application payload `N` per data rate (the
//! tables with no dwell-time limit for EU868, the uplink table with the
//! 400 ms dwell time for US915).

use crate::Error;
use crate::lora::{Bandwidth, LoraParams, SpreadingFactor};

/// A frequency range with one duty-cycle limit and one power limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubBand {
    /// Short name used in reports, e.g. `"g1"`.
    pub name: &'static str,
    /// Lowest frequency, inclusive (Hz).
    pub low_hz: u32,
    /// Highest frequency, inclusive (Hz).
    pub high_hz: u32,
    /// Largest fraction of any one-hour window a node may transmit, in
    /// parts per million (10 000 = 1 %). 1 000 000 means no limit.
    pub duty_cycle_ppm: u32,
    /// Largest radiated power (mW ERP).
    pub max_erp_mw: u32,
}

impl SubBand {
    /// Whether `hz` lies in this sub-band.
    #[must_use]
    pub const fn contains(&self, hz: u32) -> bool {
        self.low_hz <= hz && hz <= self.high_hz
    }

    /// Airtime allowed in any one-hour window, in microseconds.
    #[must_use]
    pub const fn airtime_per_hour_us(&self) -> u64 {
        crate::time::Micros::HOUR * self.duty_cycle_ppm as u64 / 1_000_000
    }
}

/// One data rate of a region: its modulation and largest payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRate {
    /// Index in the region's table (DR0, DR1, ...).
    pub index: u8,
    /// Spreading factor.
    pub sf: SpreadingFactor,
    /// Bandwidth.
    pub bw: Bandwidth,
    /// Largest payload (bytes): the regional parameters' `N`. Frames of
    /// this crate are never longer.
    pub max_payload: u8,
}

impl DataRate {
    /// The modulation of this data rate with the usual packet settings
    /// ([`LoraParams::new`]).
    #[must_use]
    pub const fn params(&self) -> LoraParams {
        LoraParams::new(self.sf, self.bw)
    }
}

/// A region's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Name, e.g. `"EU868"`.
    pub name: &'static str,
    /// Sub-bands a node may transmit in. A frequency outside all of them
    /// is refused.
    pub sub_bands: &'static [SubBand],
    /// Longest single transmission (µs), if the region limits dwell time.
    pub dwell_time_us: Option<u64>,
    /// Data rates, by index.
    pub data_rates: &'static [DataRate],
}

const fn dr(index: u8, sf: SpreadingFactor, bw: Bandwidth, max_payload: u8) -> DataRate {
    DataRate {
        index,
        sf,
        bw,
        max_payload,
    }
}

/// EU 863–870 MHz: the three sub-bands LoRa meshes use, with their duty
/// cycles (1 %, 0.1 %, 10 %) and power limits (25 mW, 25 mW, 500 mW).
pub const EU868: Region = Region {
    name: "EU868",
    sub_bands: &[
        SubBand {
            name: "g1",
            low_hz: 868_000_000,
            high_hz: 868_600_000,
            duty_cycle_ppm: 10_000,
            max_erp_mw: 25,
        },
        SubBand {
            name: "g2",
            low_hz: 868_700_000,
            high_hz: 869_200_000,
            duty_cycle_ppm: 1_000,
            max_erp_mw: 25,
        },
        SubBand {
            name: "g3",
            low_hz: 869_400_000,
            high_hz: 869_650_000,
            duty_cycle_ppm: 100_000,
            max_erp_mw: 500,
        },
    ],
    dwell_time_us: None,
    data_rates: &[
        dr(0, SpreadingFactor::Sf12, Bandwidth::Khz125, 51),
        dr(1, SpreadingFactor::Sf11, Bandwidth::Khz125, 51),
        dr(2, SpreadingFactor::Sf10, Bandwidth::Khz125, 51),
        dr(3, SpreadingFactor::Sf9, Bandwidth::Khz125, 115),
        dr(4, SpreadingFactor::Sf8, Bandwidth::Khz125, 222),
        dr(5, SpreadingFactor::Sf7, Bandwidth::Khz125, 222),
        dr(6, SpreadingFactor::Sf7, Bandwidth::Khz250, 222),
    ],
};

/// US 902–928 MHz: no duty cycle, a 400 ms dwell time per transmission
/// (FCC 15.247 as applied by LoRaWAN), uplink data rates DR0–DR4.
pub const US915: Region = Region {
    name: "US915",
    sub_bands: &[SubBand {
        name: "ism",
        low_hz: 902_000_000,
        high_hz: 928_000_000,
        duty_cycle_ppm: 1_000_000,
        max_erp_mw: 1_000,
    }],
    dwell_time_us: Some(400_000),
    data_rates: &[
        dr(0, SpreadingFactor::Sf10, Bandwidth::Khz125, 11),
        dr(1, SpreadingFactor::Sf9, Bandwidth::Khz125, 53),
        dr(2, SpreadingFactor::Sf8, Bandwidth::Khz125, 125),
        dr(3, SpreadingFactor::Sf7, Bandwidth::Khz125, 242),
        dr(4, SpreadingFactor::Sf8, Bandwidth::Khz500, 242),
    ],
};

impl Region {
    /// The sub-band that holds `hz`, with its index.
    ///
    /// # Errors
    /// [`Error::FrequencyOutsideRegion`] when none does.
    pub fn sub_band(&self, hz: u32) -> Result<(usize, &SubBand), Error> {
        self.sub_bands
            .iter()
            .enumerate()
            .find(|(_, b)| b.contains(hz))
            .ok_or(Error::FrequencyOutsideRegion {
                region: self.name,
                hz,
            })
    }

    /// Data rate `index`.
    ///
    /// # Errors
    /// [`Error::UnknownDataRate`] when the region has no such data rate.
    pub fn data_rate(&self, index: u8) -> Result<&DataRate, Error> {
        self.data_rates
            .iter()
            .find(|d| d.index == index)
            .ok_or(Error::UnknownDataRate {
                region: self.name,
                index,
            })
    }

    /// The largest frame every one of `indices` can carry: the smallest
    /// table payload among them, further cut so a frame fits the dwell time.
    /// Frames sized to this work at whichever of these data rates a link
    /// ends up using.
    ///
    /// # Errors
    /// [`Error::UnknownDataRate`] for an index not in the table;
    /// [`Error::NoDataRate`] when `indices` is empty.
    pub fn frame_limit(&self, indices: &[u8]) -> Result<usize, Error> {
        let mut limit: Option<usize> = None;
        for &i in indices {
            let d = self.data_rate(i)?;
            let mut n = usize::from(d.max_payload);
            if let Some(dwell) = self.dwell_time_us {
                n = n.min(d.params().max_payload_within(dwell).unwrap_or(0));
            }
            limit = Some(limit.map_or(n, |l| l.min(n)));
        }
        limit.ok_or(Error::NoDataRate)
    }

    /// Checks one transmission against the dwell time.
    ///
    /// # Errors
    /// [`Error::DwellTimeExceeded`] when `airtime_us` is longer.
    pub const fn check_dwell(&self, airtime_us: u64) -> Result<(), Error> {
        match self.dwell_time_us {
            Some(max_us) if airtime_us > max_us => {
                Err(Error::DwellTimeExceeded { airtime_us, max_us })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eu868_sub_bands_carry_their_duty_cycles_and_power() {
        let (i, g1) = EU868.sub_band(868_100_000).unwrap();
        assert_eq!((i, g1.duty_cycle_ppm), (0, 10_000));
        assert_eq!(g1.airtime_per_hour_us(), 36 * Micros::SECOND);
        let (_, g2) = EU868.sub_band(868_850_000).unwrap();
        assert_eq!(g2.airtime_per_hour_us(), 3_600_000);
        let (_, g3) = EU868.sub_band(869_525_000).unwrap();
        assert_eq!((g3.duty_cycle_ppm, g3.max_erp_mw), (100_000, 500));
        // 868.65 MHz lies between g1 and g2: no sub-band, no transmission.
        assert!(matches!(
            EU868.sub_band(868_650_000),
            Err(Error::FrequencyOutsideRegion {
                hz: 868_650_000,
                ..
            })
        ));
    }

    use crate::time::Micros;

    #[test]
    fn eu868_frames_fit_fifty_one_bytes_at_dr0_to_dr2() {
        assert_eq!(EU868.frame_limit(&[0, 1, 2]).unwrap(), 51);
        assert_eq!(EU868.frame_limit(&[5]).unwrap(), 222);
        assert!(matches!(
            EU868.frame_limit(&[9]),
            Err(Error::UnknownDataRate { index: 9, .. })
        ));
        assert!(matches!(EU868.frame_limit(&[]), Err(Error::NoDataRate)));
    }

    #[test]
    fn us915_dwell_time_refuses_frames_longer_than_400_ms() {
        assert!(US915.check_dwell(400_000).is_ok());
        assert!(matches!(
            US915.check_dwell(400_001),
            Err(Error::DwellTimeExceeded {
                max_us: 400_000,
                ..
            })
        ));
        assert!(EU868.check_dwell(2_000_000).is_ok());
        // Every US915 frame limit also fits the dwell time.
        for d in US915.data_rates {
            let n = US915.frame_limit(&[d.index]).unwrap();
            assert!(d.params().time_on_air_us(n).unwrap() <= 400_000);
        }
    }
}

//! LoRa modulation and packet parameters, and time on air.
//!
//! Time on air follows Semtech's formula (AN1200.13, "LoRa Modem Designer's
//! Guide", and the SX1276/SX1262 datasheets):
//!
//! ```text
//! T_sym     = 2^SF / BW
//! n_payload = 8 + max(ceil((8 PL - 4 SF + 28 + 16 CRC - 20 IH) / (4 (SF - 2 DE))) (CR + 4), 0)
//! T_air     = (n_preamble + 4.25 + n_payload) T_sym
//! ```
//!
//! with `PL` the payload length in bytes, `CRC` 1 when the payload CRC is
//! on, `IH` 1 for an implicit header, `DE` 1 when low-data-rate
//! optimisation is on and `CR` 1..4 for coding rates 4/5..4/8.
//!
//! # Rounding
//! For the supported bandwidths (125, 250, 500 kHz) and spreading factors
//! (7–12) a quarter symbol is a whole number of nanoseconds, so
//! [`LoraParams::time_on_air_ns`] is **exact**. [`LoraParams::time_on_air_us`]
//! rounds that **up** to the next microsecond, so budgets built on it never
//! under-count airtime (by less than one microsecond per frame).

use crate::Error;

/// Spreading factor (chips per symbol = 2^SF). SF5/SF6 of the SX126x are
/// not used: LoRaWAN regions and SX127x peers stop at SF7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpreadingFactor {
    /// SF7: fastest, shortest range.
    Sf7 = 7,
    /// SF8.
    Sf8 = 8,
    /// SF9.
    Sf9 = 9,
    /// SF10.
    Sf10 = 10,
    /// SF11.
    Sf11 = 11,
    /// SF12: slowest, longest range.
    Sf12 = 12,
}

impl SpreadingFactor {
    /// Every spreading factor, fastest first.
    pub const ALL: [Self; 6] = [
        Self::Sf7,
        Self::Sf8,
        Self::Sf9,
        Self::Sf10,
        Self::Sf11,
        Self::Sf12,
    ];

    /// From its number (7..=12).
    ///
    /// # Errors
    /// [`Error::InvalidSpreadingFactor`] for any other number.
    pub const fn from_number(sf: u8) -> Result<Self, Error> {
        Ok(match sf {
            7 => Self::Sf7,
            8 => Self::Sf8,
            9 => Self::Sf9,
            10 => Self::Sf10,
            11 => Self::Sf11,
            12 => Self::Sf12,
            _ => return Err(Error::InvalidSpreadingFactor { sf }),
        })
    }

    /// Its number, 7..=12.
    #[must_use]
    pub const fn number(self) -> u8 {
        self as u8
    }

    /// Demodulation floor: the lowest SNR (dB) at which a frame of this
    /// spreading factor is still received (SX1276 datasheet table 13).
    #[must_use]
    pub const fn snr_floor_db(self) -> f64 {
        match self {
            Self::Sf7 => -7.5,
            Self::Sf8 => -10.0,
            Self::Sf9 => -12.5,
            Self::Sf10 => -15.0,
            Self::Sf11 => -17.5,
            Self::Sf12 => -20.0,
        }
    }
}

/// Channel bandwidth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bandwidth {
    /// 125 kHz.
    Khz125,
    /// 250 kHz.
    Khz250,
    /// 500 kHz.
    Khz500,
}

impl Bandwidth {
    /// From kilohertz (125, 250 or 500).
    ///
    /// # Errors
    /// [`Error::InvalidBandwidth`] for any other value.
    pub const fn from_khz(khz: u32) -> Result<Self, Error> {
        Ok(match khz {
            125 => Self::Khz125,
            250 => Self::Khz250,
            500 => Self::Khz500,
            _ => return Err(Error::InvalidBandwidth { khz }),
        })
    }

    /// In hertz.
    #[must_use]
    pub const fn hz(self) -> u32 {
        match self {
            Self::Khz125 => 125_000,
            Self::Khz250 => 250_000,
            Self::Khz500 => 500_000,
        }
    }
}

/// Forward error correction rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CodingRate {
    /// 4/5.
    Cr4_5 = 1,
    /// 4/6.
    Cr4_6 = 2,
    /// 4/7.
    Cr4_7 = 3,
    /// 4/8.
    Cr4_8 = 4,
}

impl CodingRate {
    /// From the denominator of 4/x (5..=8).
    ///
    /// # Errors
    /// [`Error::InvalidCodingRate`] for any other value.
    pub const fn from_denominator(denominator: u8) -> Result<Self, Error> {
        Ok(match denominator {
            5 => Self::Cr4_5,
            6 => Self::Cr4_6,
            7 => Self::Cr4_7,
            8 => Self::Cr4_8,
            _ => return Err(Error::InvalidCodingRate { denominator }),
        })
    }
}

/// Explicit (length, rate and CRC flag sent in a header) or implicit header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderMode {
    /// The frame carries a PHY header (the usual mode).
    Explicit,
    /// No PHY header: both sides must agree on length, rate and CRC.
    Implicit,
}

/// Low-data-rate optimisation (`DE` in the formula).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LowDataRate {
    /// On exactly when the symbol time is 16 ms or more (SF11 and SF12 at
    /// 125 kHz, SF12 at 250 kHz), as Semtech recommends.
    Auto,
    /// Forced on.
    On,
    /// Forced off; refused where the symbol time is 16 ms or more.
    Off,
}

/// Symbol time at or above which low-data-rate optimisation is mandatory.
pub const LOW_DATA_RATE_SYMBOL_NS: u64 = 16_000_000;
/// The shortest preamble the SX126x/SX127x accept (symbols).
pub const PREAMBLE_SYMBOLS_MIN: u16 = 6;
/// The largest LoRa PHY payload (bytes).
pub const PAYLOAD_BYTES_MAX: usize = 255;

/// Everything that decides a LoRa frame's time on air. Built through
/// [`LoraParams::new`] or [`LoraParams::validate`], so a value in use is
/// a combination the radios accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoraParams {
    /// Spreading factor.
    pub sf: SpreadingFactor,
    /// Bandwidth.
    pub bw: Bandwidth,
    /// Coding rate.
    pub cr: CodingRate,
    /// Programmed preamble length in symbols (the radio adds 4.25).
    pub preamble_symbols: u16,
    /// Header mode.
    pub header: HeaderMode,
    /// Payload CRC on.
    pub crc: bool,
    /// Low-data-rate optimisation.
    pub low_data_rate: LowDataRate,
}

impl LoraParams {
    /// The usual LoRaWAN-like settings for `sf` and `bw`: CR 4/5, 8-symbol
    /// preamble, explicit header, CRC on, automatic low-data-rate
    /// optimisation.
    #[must_use]
    pub const fn new(sf: SpreadingFactor, bw: Bandwidth) -> Self {
        Self {
            sf,
            bw,
            cr: CodingRate::Cr4_5,
            preamble_symbols: 8,
            header: HeaderMode::Explicit,
            crc: true,
            low_data_rate: LowDataRate::Auto,
        }
    }

    /// Checks the combination.
    ///
    /// # Errors
    /// [`Error::PreambleTooShort`] below [`PREAMBLE_SYMBOLS_MIN`];
    /// [`Error::LowDataRateRequired`] when optimisation is forced off at a
    /// symbol time of 16 ms or more.
    pub const fn validate(self) -> Result<Self, Error> {
        if self.preamble_symbols < PREAMBLE_SYMBOLS_MIN {
            return Err(Error::PreambleTooShort {
                symbols: self.preamble_symbols,
                min: PREAMBLE_SYMBOLS_MIN,
            });
        }
        if matches!(self.low_data_rate, LowDataRate::Off)
            && self.symbol_ns() >= LOW_DATA_RATE_SYMBOL_NS
        {
            return Err(Error::LowDataRateRequired {
                sf: self.sf.number(),
                bw_hz: self.bw.hz(),
            });
        }
        Ok(self)
    }

    /// Symbol time in nanoseconds (exact: 2^SF * 10^9 / BW).
    #[must_use]
    pub const fn symbol_ns(self) -> u64 {
        (1u64 << self.sf.number()) * 1_000_000_000 / self.bw.hz() as u64
    }

    /// Whether low-data-rate optimisation is in effect.
    #[must_use]
    pub const fn low_data_rate_on(self) -> bool {
        match self.low_data_rate {
            LowDataRate::On => true,
            LowDataRate::Off => false,
            LowDataRate::Auto => self.symbol_ns() >= LOW_DATA_RATE_SYMBOL_NS,
        }
    }

    /// Number of payload symbols (`n_payload` above) for `payload_len`.
    ///
    /// # Errors
    /// [`Error::PayloadTooLong`] above [`PAYLOAD_BYTES_MAX`]; the errors of
    /// [`LoraParams::validate`].
    pub fn payload_symbols(self, payload_len: usize) -> Result<u64, Error> {
        self.validate()?;
        if payload_len > PAYLOAD_BYTES_MAX {
            return Err(Error::PayloadTooLong {
                len: payload_len,
                max: PAYLOAD_BYTES_MAX,
            });
        }
        let sf = i64::from(self.sf.number());
        let pl = payload_len as i64;
        let crc = i64::from(self.crc);
        let ih = i64::from(matches!(self.header, HeaderMode::Implicit));
        let de = i64::from(self.low_data_rate_on());
        let numerator = 8 * pl - 4 * sf + 28 + 16 * crc - 20 * ih;
        let denominator = 4 * (sf - 2 * de);
        // ceil for a positive numerator; a non-positive one gives max(.., 0) = 0.
        let blocks = if numerator > 0 {
            (numerator + denominator - 1) / denominator
        } else {
            0
        };
        let cr = self.cr as i64;
        // blocks and cr are non-negative, so the cast cannot wrap.
        Ok(8 + (blocks * (cr + 4)) as u64)
    }

    /// Time on air of a frame with `payload_len` bytes, in nanoseconds,
    /// exact (see the module doc).
    ///
    /// # Errors
    /// As [`LoraParams::payload_symbols`].
    pub fn time_on_air_ns(self, payload_len: usize) -> Result<u64, Error> {
        let payload = self.payload_symbols(payload_len)?;
        // In quarter symbols: 4 n_preamble + 17 (the 4.25) + 4 n_payload.
        let quarters = 4 * u64::from(self.preamble_symbols) + 17 + 4 * payload;
        Ok(quarters * self.symbol_ns() / 4)
    }

    /// Time on air in microseconds, rounded up (see the module doc).
    ///
    /// # Errors
    /// As [`LoraParams::payload_symbols`].
    pub fn time_on_air_us(self, payload_len: usize) -> Result<u64, Error> {
        Ok(self.time_on_air_ns(payload_len)?.div_ceil(1_000))
    }

    /// The longest payload whose time on air is at most `airtime_us_max`,
    /// or `None` when not even an empty payload fits.
    #[must_use]
    pub fn max_payload_within(self, airtime_us_max: u64) -> Option<usize> {
        (0..=PAYLOAD_BYTES_MAX)
            .rev()
            .find(|&len| matches!(self.time_on_air_us(len), Ok(t) if t <= airtime_us_max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_tenths(params: LoraParams, len: usize) -> u64 {
        // Round to the nearest 0.1 ms, as the issue's figures are given.
        (params.time_on_air_ns(len).unwrap() + 50_000) / 100_000
    }

    #[test]
    fn time_on_air_matches_independently_computed_figures() {
        let p = |sf| LoraParams::new(sf, Bandwidth::Khz125);
        assert_eq!(ms_tenths(p(SpreadingFactor::Sf7), 10), 412);
        assert_eq!(ms_tenths(p(SpreadingFactor::Sf9), 10), 1444);
        assert_eq!(ms_tenths(p(SpreadingFactor::Sf12), 10), 9912);
        let no_crc = LoraParams {
            crc: false,
            ..p(SpreadingFactor::Sf7)
        };
        assert_eq!(ms_tenths(no_crc, 255), 3945);
    }

    #[test]
    fn time_on_air_is_exact_in_nanoseconds_and_rounds_up_to_microseconds() {
        // SF7/125 kHz, 10 bytes: 40.25 symbols of 1.024 ms = 41.216 ms.
        let p = LoraParams::new(SpreadingFactor::Sf7, Bandwidth::Khz125);
        assert_eq!(p.time_on_air_ns(10).unwrap(), 41_216_000);
        // SF12/125 kHz: 30.25 symbols of 32.768 ms = 991.232 ms.
        let p12 = LoraParams::new(SpreadingFactor::Sf12, Bandwidth::Khz125);
        assert_eq!(p12.time_on_air_ns(10).unwrap(), 991_232_000);
        // SF12 at 500 kHz: 8.192 ms symbols, quarter symbol 2.048 ms; any
        // sub-microsecond remainder would round up.
        let fast = LoraParams::new(SpreadingFactor::Sf12, Bandwidth::Khz500);
        let ns = fast.time_on_air_ns(1).unwrap();
        assert_eq!(fast.time_on_air_us(1).unwrap(), ns.div_ceil(1_000));
    }

    #[test]
    fn low_data_rate_is_automatic_at_sixteen_millisecond_symbols() {
        let on = |sf, bw| LoraParams::new(sf, bw).low_data_rate_on();
        assert!(!on(SpreadingFactor::Sf10, Bandwidth::Khz125)); // 8.192 ms
        assert!(on(SpreadingFactor::Sf11, Bandwidth::Khz125)); // 16.384 ms
        assert!(on(SpreadingFactor::Sf12, Bandwidth::Khz250)); // 16.384 ms
        assert!(!on(SpreadingFactor::Sf12, Bandwidth::Khz500)); // 8.192 ms
        let forced = LoraParams {
            low_data_rate: LowDataRate::On,
            ..LoraParams::new(SpreadingFactor::Sf7, Bandwidth::Khz125)
        };
        assert!(forced.low_data_rate_on());
        // Forcing it on lengthens the frame (fewer bits per symbol).
        let plain = LoraParams::new(SpreadingFactor::Sf7, Bandwidth::Khz125);
        assert!(forced.time_on_air_ns(50).unwrap() > plain.time_on_air_ns(50).unwrap());
    }

    #[test]
    fn invalid_combinations_are_typed_errors() {
        assert!(matches!(
            SpreadingFactor::from_number(6),
            Err(Error::InvalidSpreadingFactor { sf: 6 })
        ));
        assert!(matches!(
            Bandwidth::from_khz(62),
            Err(Error::InvalidBandwidth { khz: 62 })
        ));
        assert!(matches!(
            CodingRate::from_denominator(9),
            Err(Error::InvalidCodingRate { denominator: 9 })
        ));
        let off_at_sf12 = LoraParams {
            low_data_rate: LowDataRate::Off,
            ..LoraParams::new(SpreadingFactor::Sf12, Bandwidth::Khz125)
        };
        assert!(matches!(
            off_at_sf12.time_on_air_ns(10),
            Err(Error::LowDataRateRequired {
                sf: 12,
                bw_hz: 125_000
            })
        ));
        let short = LoraParams {
            preamble_symbols: 5,
            ..LoraParams::new(SpreadingFactor::Sf7, Bandwidth::Khz125)
        };
        assert!(matches!(
            short.validate(),
            Err(Error::PreambleTooShort { .. })
        ));
        let p = LoraParams::new(SpreadingFactor::Sf7, Bandwidth::Khz125);
        assert!(matches!(
            p.time_on_air_ns(256),
            Err(Error::PayloadTooLong { len: 256, .. })
        ));
    }

    #[test]
    fn implicit_header_and_higher_coding_rate_change_airtime_the_formula_way() {
        let base = LoraParams::new(SpreadingFactor::Sf9, Bandwidth::Khz125);
        // 20 bytes, SF9: (160-36+28+16)/36 = 4.67 -> 5 blocks of 5 symbols.
        assert_eq!(base.payload_symbols(20).unwrap(), 8 + 25);
        let implicit = LoraParams {
            header: HeaderMode::Implicit,
            ..base
        };
        // (160-36+28+16-20)/36 = 4.11 -> 5 blocks still.
        assert_eq!(implicit.payload_symbols(20).unwrap(), 8 + 25);
        // 18 bytes implicit: (144-36+28+16-20)/36 = 3.67 -> 4 blocks.
        assert_eq!(implicit.payload_symbols(18).unwrap(), 8 + 20);
        let cr48 = LoraParams {
            cr: CodingRate::Cr4_8,
            ..base
        };
        assert_eq!(cr48.payload_symbols(20).unwrap(), 8 + 5 * 8);
    }

    #[test]
    fn max_payload_within_is_the_longest_that_fits() {
        let p = LoraParams::new(SpreadingFactor::Sf10, Bandwidth::Khz125);
        let n = p.max_payload_within(400_000).unwrap();
        assert!(p.time_on_air_us(n).unwrap() <= 400_000);
        assert!(p.time_on_air_us(n + 1).unwrap() > 400_000);
        assert_eq!(p.max_payload_within(1_000), None);
    }
}

//! Hardware backend (feature `sx126x`): lora-phy's SX126x driver on a
//! Linux host (e.g. a Raspberry Pi with an SX1262 HAT), through the
//! adapters in [`linux`]. Wiring and configuration: `docs/radio-sx1262.md`.
//!
//! [`Sx126xLink`] is generic over the SPI device, the pins and the delay,
//! so the same code runs on spidev + GPIO character devices ([`open`]) and
//! against a mock SPI device in tests. It sends and receives whole frames
//! with this crate's [`Channel`] settings; the caller asks its
//! [`crate::DutyCycleBudget`] before [`Sx126xLink::transmit`].

pub mod linux;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use embedded_hal_async::delay::DelayNs;
use embedded_hal_async::spi::SpiDevice;
use lora_phy::iv::GenericSx126xInterfaceVariant;
use lora_phy::mod_params::{Bandwidth, CodingRate, RadioError, SpreadingFactor};
use lora_phy::mod_traits::InterfaceVariant;
use lora_phy::sx126x::{self, Sx126x, Sx1262, TcxoCtrlVoltage};
use lora_phy::{LoRa, RxMode};

use crate::Error;
use crate::lora::{self as params, HeaderMode, LowDataRate};
use crate::medium::Channel;
use linux::{AdapterError, CdevInput, CdevOutput, SpidevDevice, ThreadDelay};

/// Runs a future to completion on the calling thread. The adapters in
/// [`linux`] finish their I/O inside each poll, so this never spins on a
/// pending future for long; it yields the thread between polls.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

/// Where an SX1262 is wired on a Linux host, and how its board is built.
/// [`HatConfig::waveshare_sx1262_hat`] gives the values for the Waveshare
/// SX1262 LoRaWAN/GNSS HAT on a Raspberry Pi.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HatConfig {
    /// The spidev device, e.g. `/dev/spidev0.0`.
    pub spi_path: PathBuf,
    /// SPI clock (Hz); the SX126x accepts up to 16 MHz.
    pub spi_speed_hz: u32,
    /// The GPIO chip holding the pins, e.g. `/dev/gpiochip0` (Pi 5:
    /// `/dev/gpiochip4` on older kernels).
    pub gpio_chip: PathBuf,
    /// NSS on a plain GPIO line (driven by the adapter), or `None` when it
    /// is the spidev device's own chip-select line.
    pub nss_line: Option<u32>,
    /// NRESET line (BCM numbering on a Pi).
    pub reset_line: u32,
    /// BUSY line.
    pub busy_line: u32,
    /// DIO1 line (the interrupt).
    pub dio1_line: u32,
    /// TCXO supply on DIO3, when the module has a TCXO.
    pub tcxo_1v8: bool,
    /// Use the DC-DC regulator (most modules have the inductor).
    pub use_dcdc: bool,
    /// Transmit power (dBm), -9..=22 on the SX1262; stay within the
    /// sub-band's ERP limit with your antenna gain.
    pub tx_power_dbm: i32,
}

impl HatConfig {
    /// Waveshare SX1262 LoRaWAN/GNSS HAT on a Raspberry Pi 4: SPI0 with
    /// NSS on GPIO21, RESET GPIO18, BUSY GPIO20, DIO1 GPIO16, RF switch on
    /// DIO2, 14 dBm.
    #[must_use]
    pub fn waveshare_sx1262_hat() -> Self {
        Self {
            spi_path: PathBuf::from("/dev/spidev0.0"),
            spi_speed_hz: 2_000_000,
            gpio_chip: PathBuf::from("/dev/gpiochip0"),
            nss_line: Some(21),
            reset_line: 18,
            busy_line: 20,
            dio1_line: 16,
            tcxo_1v8: false,
            use_dcdc: true,
            tx_power_dbm: 14,
        }
    }
}

/// The interface variant [`open`] builds: GPIO outputs and edge-waiting inputs.
pub type LinuxVariant = GenericSx126xInterfaceVariant<CdevOutput, CdevInput>;

/// One SX126x radio as a frame link. Invariant: after construction the
/// radio is initialised for LoRa (private sync word) and in standby between
/// calls.
pub struct Sx126xLink<SPI, IV, DLY>
where
    SPI: SpiDevice<u8>,
    IV: InterfaceVariant,
    DLY: DelayNs,
{
    lora: LoRa<Sx126x<SPI, IV, Sx1262>, DLY>,
    tx_power_dbm: i32,
}

fn hw(op: &'static str) -> impl Fn(RadioError) -> Error {
    move |e| Error::Hardware {
        op,
        detail: format!("{e:?}"),
    }
}

fn adapter(e: AdapterError) -> Error {
    Error::Hardware {
        op: e.op,
        detail: e.detail,
    }
}

/// lora-phy's modulation values for this crate's parameters. lora-phy
/// chooses low-data-rate optimisation itself (the same rule as
/// [`LowDataRate::Auto`]), so a forced setting that differs is refused.
fn modulation(p: params::LoraParams) -> Result<(SpreadingFactor, Bandwidth, CodingRate), Error> {
    let p = p.validate()?;
    let auto = params::LoraParams {
        low_data_rate: LowDataRate::Auto,
        ..p
    };
    if p.low_data_rate_on() != auto.low_data_rate_on() {
        return Err(Error::Hardware {
            op: "modulation",
            detail: "the SX126x backend sets low-data-rate optimisation automatically".into(),
        });
    }
    let sf = match p.sf {
        params::SpreadingFactor::Sf7 => SpreadingFactor::_7,
        params::SpreadingFactor::Sf8 => SpreadingFactor::_8,
        params::SpreadingFactor::Sf9 => SpreadingFactor::_9,
        params::SpreadingFactor::Sf10 => SpreadingFactor::_10,
        params::SpreadingFactor::Sf11 => SpreadingFactor::_11,
        params::SpreadingFactor::Sf12 => SpreadingFactor::_12,
    };
    let bw = match p.bw {
        params::Bandwidth::Khz125 => Bandwidth::_125KHz,
        params::Bandwidth::Khz250 => Bandwidth::_250KHz,
        params::Bandwidth::Khz500 => Bandwidth::_500KHz,
    };
    let cr = match p.cr {
        params::CodingRate::Cr4_5 => CodingRate::_4_5,
        params::CodingRate::Cr4_6 => CodingRate::_4_6,
        params::CodingRate::Cr4_7 => CodingRate::_4_7,
        params::CodingRate::Cr4_8 => CodingRate::_4_8,
    };
    Ok((sf, bw, cr))
}

impl<SPI, IV, DLY> Sx126xLink<SPI, IV, DLY>
where
    SPI: SpiDevice<u8>,
    IV: InterfaceVariant,
    DLY: DelayNs,
{
    /// Resets and initialises the radio behind `spi` and `iv`.
    ///
    /// # Errors
    /// [`Error::Hardware`] when the radio does not answer as expected.
    pub async fn new(
        spi: SPI,
        iv: IV,
        delay: DLY,
        tcxo_1v8: bool,
        use_dcdc: bool,
        tx_power_dbm: i32,
    ) -> Result<Self, Error> {
        let config = sx126x::Config {
            chip: Sx1262,
            tcxo_ctrl: tcxo_1v8.then_some(TcxoCtrlVoltage::Ctrl1V8),
            use_dcdc,
            rx_boost: false,
        };
        let radio = Sx126x::new(spi, iv, config);
        // false: the private-network sync word (0x1424), not LoRaWAN's.
        let lora = LoRa::new(radio, false, delay).await.map_err(hw("init"))?;
        Ok(Self { lora, tx_power_dbm })
    }

    /// Sends one frame on `channel` and returns when the radio reports
    /// TxDone. The caller has asked its duty-cycle budget first.
    ///
    /// # Errors
    /// [`Error::PayloadTooLong`] over 255 bytes; parameter errors;
    /// [`Error::Hardware`] when the radio fails.
    pub async fn transmit(&mut self, channel: &Channel, payload: &[u8]) -> Result<(), Error> {
        if payload.len() > params::PAYLOAD_BYTES_MAX {
            return Err(Error::PayloadTooLong {
                len: payload.len(),
                max: params::PAYLOAD_BYTES_MAX,
            });
        }
        let (sf, bw, cr) = modulation(channel.params)?;
        let mdltn = self
            .lora
            .create_modulation_params(sf, bw, cr, channel.freq_hz)
            .map_err(hw("modulation params"))?;
        let mut pkt = self
            .lora
            .create_tx_packet_params(
                channel.params.preamble_symbols,
                matches!(channel.params.header, HeaderMode::Implicit),
                channel.params.crc,
                false,
                &mdltn,
            )
            .map_err(hw("packet params"))?;
        self.lora
            .prepare_for_tx(&mdltn, &mut pkt, self.tx_power_dbm, payload)
            .await
            .map_err(hw("prepare tx"))?;
        self.lora.tx().await.map_err(hw("tx"))
    }

    /// Listens on `channel` for one frame (single mode: until a frame or
    /// the radio's own timeout) into `buf`; returns its length and RSSI.
    ///
    /// # Errors
    /// Parameter errors; [`Error::Hardware`] on a radio failure or timeout.
    pub async fn receive(
        &mut self,
        channel: &Channel,
        buf: &mut [u8],
    ) -> Result<(usize, i16), Error> {
        let (sf, bw, cr) = modulation(channel.params)?;
        let mdltn = self
            .lora
            .create_modulation_params(sf, bw, cr, channel.freq_hz)
            .map_err(hw("modulation params"))?;
        let max = u8::try_from(buf.len().min(params::PAYLOAD_BYTES_MAX)).unwrap_or(u8::MAX);
        let pkt = self
            .lora
            .create_rx_packet_params(
                channel.params.preamble_symbols,
                matches!(channel.params.header, HeaderMode::Implicit),
                max,
                channel.params.crc,
                false,
                &mdltn,
            )
            .map_err(hw("packet params"))?;
        self.lora
            .prepare_for_rx(RxMode::Single(u16::MAX), &mdltn, &pkt)
            .await
            .map_err(hw("prepare rx"))?;
        let (len, status) = self.lora.rx(&pkt, buf).await.map_err(hw("rx"))?;
        Ok((usize::from(len), status.rssi))
    }
}

/// Opens the radio wired as `config` says: spidev, GPIO lines, reset,
/// initialisation.
///
/// # Errors
/// [`Error::Hardware`] naming the device or line that failed.
pub fn open(
    config: &HatConfig,
) -> Result<Sx126xLink<SpidevDevice, LinuxVariant, ThreadDelay>, Error> {
    let nss = config
        .nss_line
        .map(|line| CdevOutput::request(&config.gpio_chip, line, true))
        .transpose()
        .map_err(adapter)?;
    let spi = SpidevDevice::open(&config.spi_path, config.spi_speed_hz, nss).map_err(adapter)?;
    let reset = CdevOutput::request(&config.gpio_chip, config.reset_line, true).map_err(adapter)?;
    let busy = CdevInput::request(&config.gpio_chip, config.busy_line).map_err(adapter)?;
    let dio1 = CdevInput::request(&config.gpio_chip, config.dio1_line).map_err(adapter)?;
    let iv =
        GenericSx126xInterfaceVariant::new(reset, dio1, busy, None, None).map_err(hw("pins"))?;
    block_on(Sx126xLink::new(
        spi,
        iv,
        ThreadDelay,
        config.tcxo_1v8,
        config.use_dcdc,
        config.tx_power_dbm,
    ))
}

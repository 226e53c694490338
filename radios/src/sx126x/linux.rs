//! Adapters from Linux character devices to the async embedded-hal traits
//! lora-phy drives: spidev for [`SpiDevice`], GPIO character devices
//! (gpiocdev, uAPI v2) for [`OutputPin`] and [`Wait`], and a sleeping
//! [`DelayNs`].
//!
//! Each adapter does its I/O synchronously inside the async method, so
//! the futures lora-phy builds complete on their first poll; [`super::block_on`]
//! runs them on the calling thread. Waiting on a pin blocks on the line's
//! edge events, bounded by [`PIN_WAIT_MS_MAX`].

use std::path::Path;
use std::time::Duration;

use embedded_hal::digital::{ErrorKind as PinErrorKind, ErrorType as PinErrorType, OutputPin};
use embedded_hal::spi::{ErrorKind as SpiErrorKind, ErrorType as SpiErrorType, Operation};
use embedded_hal_async::delay::DelayNs;
use embedded_hal_async::digital::Wait;
use embedded_hal_async::spi::SpiDevice;
use gpiocdev::line::{EdgeDetection, EdgeKind, Value};
use gpiocdev::request::Request;
use spidev::{SpiModeFlags, Spidev, SpidevOptions, SpidevTransfer};

/// Longest wait for a pin level or edge before giving up (BUSY normally
/// drops within microseconds; DIO1 rises at the end of a frame, at most a
/// few seconds at SF12).
pub const PIN_WAIT_MS_MAX: u64 = 10_000;

/// An I/O failure of an adapter, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {detail}")]
pub struct AdapterError {
    /// The operation.
    pub op: &'static str,
    /// The OS or driver's message.
    pub detail: String,
}

impl AdapterError {
    fn new(op: &'static str, e: impl std::fmt::Display) -> Self {
        Self {
            op,
            detail: e.to_string(),
        }
    }
}

impl embedded_hal::spi::Error for AdapterError {
    fn kind(&self) -> SpiErrorKind {
        SpiErrorKind::Other
    }
}

impl embedded_hal::digital::Error for AdapterError {
    fn kind(&self) -> PinErrorKind {
        PinErrorKind::Other
    }
}

/// A spidev device (`/dev/spidevB.C`) as an async [`SpiDevice`]. Each
/// transaction is one `SPI_IOC_MESSAGE` ioctl, so chip select stays asserted
/// across its operations. When the board wires NSS to a plain GPIO rather
/// than a CE line, pass it as `cs`: the adapter then drives it around each
/// transaction and asks spidev not to drive one (`SPI_NO_CS`).
#[derive(Debug)]
pub struct SpidevDevice {
    spi: Spidev,
    cs: Option<CdevOutput>,
}

impl SpidevDevice {
    /// Opens `path` in SPI mode 0, MSB first, at `speed_hz`.
    ///
    /// # Errors
    /// When the device cannot be opened or configured.
    pub fn open(path: &Path, speed_hz: u32, cs: Option<CdevOutput>) -> Result<Self, AdapterError> {
        let mut spi = Spidev::open(path).map_err(|e| AdapterError::new("open spidev", e))?;
        let mut mode = SpiModeFlags::SPI_MODE_0;
        if cs.is_some() {
            mode |= SpiModeFlags::SPI_NO_CS;
        }
        let options = SpidevOptions::new()
            .bits_per_word(8)
            .max_speed_hz(speed_hz)
            .mode(mode)
            .build();
        spi.configure(&options)
            .map_err(|e| AdapterError::new("configure spidev", e))?;
        Ok(Self { spi, cs })
    }

    fn run(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), AdapterError> {
        let mut transfers = Vec::with_capacity(operations.len());
        for op in operations.iter_mut() {
            transfers.push(match op {
                Operation::Read(buf) => SpidevTransfer::read(buf),
                Operation::Write(buf) => SpidevTransfer::write(buf),
                Operation::Transfer(read, write) => {
                    if read.len() != write.len() {
                        return Err(AdapterError::new(
                            "spi transfer",
                            "read and write buffers of different lengths",
                        ));
                    }
                    SpidevTransfer::read_write(write, read)
                }
                Operation::TransferInPlace(buf) => SpidevTransfer::read_write_in_place(buf),
                Operation::DelayNs(ns) => {
                    SpidevTransfer::delay(u16::try_from(ns.div_ceil(1_000)).unwrap_or(u16::MAX))
                }
            });
        }
        if let Some(cs) = &mut self.cs {
            cs.set(false)?;
        }
        let result = self
            .spi
            .transfer_multiple(&mut transfers)
            .map_err(|e| AdapterError::new("spi transfer", e));
        if let Some(cs) = &mut self.cs {
            cs.set(true)?;
        }
        result
    }
}

impl SpiErrorType for SpidevDevice {
    type Error = AdapterError;
}

impl SpiDevice<u8> for SpidevDevice {
    async fn transaction(
        &mut self,
        operations: &mut [Operation<'_, u8>],
    ) -> Result<(), Self::Error> {
        self.run(operations)
    }
}

/// One GPIO line requested as an output (RESET, a software NSS, RF switch
/// enables).
#[derive(Debug)]
pub struct CdevOutput {
    req: Request,
    offset: u32,
}

impl CdevOutput {
    /// Requests line `offset` of `chip` (e.g. `/dev/gpiochip0`) as an output
    /// driven `initial`.
    ///
    /// # Errors
    /// When the chip cannot be opened or the line is taken.
    pub fn request(chip: &Path, offset: u32, initial: bool) -> Result<Self, AdapterError> {
        let req = Request::builder()
            .on_chip(chip)
            .with_consumer("meshota-radios")
            .with_line(offset)
            .as_output(level(initial))
            .request()
            .map_err(|e| AdapterError::new("request gpio output", e))?;
        Ok(Self { req, offset })
    }

    fn set(&mut self, high: bool) -> Result<(), AdapterError> {
        self.req
            .set_value(self.offset, level(high))
            .map_err(|e| AdapterError::new("set gpio", e))
    }
}

const fn level(high: bool) -> Value {
    if high { Value::Active } else { Value::Inactive }
}

impl PinErrorType for CdevOutput {
    type Error = AdapterError;
}

impl OutputPin for CdevOutput {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.set(false)
    }

    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.set(true)
    }
}

/// One GPIO line requested as an input with edge events on both edges
/// (BUSY, DIO1), waited on without polling.
#[derive(Debug)]
pub struct CdevInput {
    req: Request,
    offset: u32,
}

impl CdevInput {
    /// Requests line `offset` of `chip` as an input with both-edge detection.
    ///
    /// # Errors
    /// When the chip cannot be opened or the line is taken.
    pub fn request(chip: &Path, offset: u32) -> Result<Self, AdapterError> {
        let req = Request::builder()
            .on_chip(chip)
            .with_consumer("meshota-radios")
            .with_line(offset)
            .as_input()
            .with_edge_detection(EdgeDetection::BothEdges)
            .request()
            .map_err(|e| AdapterError::new("request gpio input", e))?;
        Ok(Self { req, offset })
    }

    fn is_high(&self) -> Result<bool, AdapterError> {
        self.req
            .value(self.offset)
            .map(|v| v == Value::Active)
            .map_err(|e| AdapterError::new("read gpio", e))
    }

    /// Drops edge events already queued.
    fn drain(&self) -> Result<(), AdapterError> {
        while self
            .req
            .has_edge_event()
            .map_err(|e| AdapterError::new("poll gpio events", e))?
        {
            self.req
                .read_edge_event()
                .map_err(|e| AdapterError::new("read gpio event", e))?;
        }
        Ok(())
    }

    /// Blocks until the next edge of `kind` (either kind when `None`).
    fn next_edge(&self, kind: Option<EdgeKind>) -> Result<(), AdapterError> {
        let timeout = Duration::from_millis(PIN_WAIT_MS_MAX);
        loop {
            if !self
                .req
                .wait_edge_event(timeout)
                .map_err(|e| AdapterError::new("wait gpio event", e))?
            {
                return Err(AdapterError::new("wait gpio event", "timed out"));
            }
            let event = self
                .req
                .read_edge_event()
                .map_err(|e| AdapterError::new("read gpio event", e))?;
            if kind.is_none_or(|k| k == event.kind) {
                return Ok(());
            }
        }
    }

    /// Blocks until the line reads `high` (at most [`PIN_WAIT_MS_MAX`] per
    /// edge, at most 64 edges).
    fn wait_level(&self, high: bool) -> Result<(), AdapterError> {
        for _ in 0..64 {
            self.drain()?;
            if self.is_high()? == high {
                return Ok(());
            }
            self.next_edge(None)?;
        }
        Err(AdapterError::new("wait gpio level", "line keeps toggling"))
    }
}

impl PinErrorType for CdevInput {
    type Error = AdapterError;
}

impl Wait for CdevInput {
    async fn wait_for_high(&mut self) -> Result<(), Self::Error> {
        self.wait_level(true)
    }

    async fn wait_for_low(&mut self) -> Result<(), Self::Error> {
        self.wait_level(false)
    }

    async fn wait_for_rising_edge(&mut self) -> Result<(), Self::Error> {
        self.drain()?;
        self.next_edge(Some(EdgeKind::Rising))
    }

    async fn wait_for_falling_edge(&mut self) -> Result<(), Self::Error> {
        self.drain()?;
        self.next_edge(Some(EdgeKind::Falling))
    }

    async fn wait_for_any_edge(&mut self) -> Result<(), Self::Error> {
        self.drain()?;
        self.next_edge(None)
    }
}

/// [`DelayNs`] by sleeping the calling thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadDelay;

impl DelayNs for ThreadDelay {
    async fn delay_ns(&mut self, ns: u32) {
        std::thread::sleep(Duration::from_nanos(u64::from(ns)));
    }
}

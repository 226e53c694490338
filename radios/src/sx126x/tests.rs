//! The backend against a mock SX126x: a recording SPI device and pins that
//! are always ready. The mock answers GetIrqStatus with TxDone or RxDone,
//! GetRxBufferStatus / ReadBuffer / GetPacketStatus with a stored frame,
//! and zeros elsewhere.

use core::convert::Infallible;
use std::cell::RefCell;
use std::rc::Rc;

use embedded_hal::digital::{ErrorType as PinErrorType, OutputPin};
use embedded_hal::spi::{ErrorType, Operation};
use embedded_hal_async::delay::DelayNs;
use embedded_hal_async::digital::Wait;
use embedded_hal_async::spi::SpiDevice;
use lora_phy::iv::GenericSx126xInterfaceVariant;

use super::{Sx126xLink, block_on};
use crate::Error;
use crate::lora::{Bandwidth, LoraParams, LowDataRate, SpreadingFactor};
use crate::medium::Channel;

const SET_STANDBY: u8 = 0x80;
const SET_PACKET_TYPE: u8 = 0x8A;
const CALIBRATE_IMAGE: u8 = 0x98;
const SET_MODULATION_PARAMS: u8 = 0x8B;
const SET_PACKET_PARAMS: u8 = 0x8C;
const SET_RF_FREQUENCY: u8 = 0x86;
const WRITE_BUFFER: u8 = 0x0E;
const SET_TX: u8 = 0x83;
const SET_RX: u8 = 0x82;
const GET_IRQ_STATUS: u8 = 0x12;
const GET_RX_BUFFER_STATUS: u8 = 0x13;
const GET_PACKET_STATUS: u8 = 0x14;
const READ_BUFFER: u8 = 0x1E;
const TX_DONE: u16 = 1 << 0;
const RX_DONE: u16 = 1 << 1;

#[derive(Default)]
struct Chip {
    /// The bytes written in each SPI transaction, in order.
    commands: Vec<Vec<u8>>,
    irq: u16,
    rx_frame: Vec<u8>,
}

#[derive(Clone, Default)]
struct MockSpi(Rc<RefCell<Chip>>);

impl ErrorType for MockSpi {
    type Error = Infallible;
}

impl SpiDevice<u8> for MockSpi {
    async fn transaction(
        &mut self,
        operations: &mut [Operation<'_, u8>],
    ) -> Result<(), Infallible> {
        let mut chip = self.0.borrow_mut();
        let mut written = Vec::new();
        let mut reads = 0;
        for op in operations.iter_mut() {
            match op {
                Operation::Write(b) => written.extend_from_slice(b),
                Operation::Read(buf) => {
                    let opcode = written.first().copied().unwrap_or(0);
                    // read_with_status reads the status byte first.
                    let with_status = matches!(
                        opcode,
                        GET_IRQ_STATUS | GET_RX_BUFFER_STATUS | GET_PACKET_STATUS
                    );
                    let answer: Vec<u8> = match (opcode, with_status, reads) {
                        (_, true, 0) => vec![0],
                        (GET_IRQ_STATUS, _, _) => chip.irq.to_be_bytes().to_vec(),
                        (GET_RX_BUFFER_STATUS, _, _) => vec![chip.rx_frame.len() as u8, 0],
                        (GET_PACKET_STATUS, _, _) => vec![120, 20, 120],
                        (READ_BUFFER, _, _) => chip.rx_frame.clone(),
                        _ => vec![],
                    };
                    for (i, b) in buf.iter_mut().enumerate() {
                        *b = answer.get(i).copied().unwrap_or(0);
                    }
                    reads += 1;
                }
                Operation::Transfer(read, write) => {
                    written.extend_from_slice(write);
                    read.fill(0);
                }
                Operation::TransferInPlace(buf) => {
                    written.extend_from_slice(buf);
                    buf.fill(0);
                }
                Operation::DelayNs(_) => {}
            }
        }
        chip.commands.push(written);
        Ok(())
    }
}

/// RESET, and BUSY/DIO1 that are always ready.
#[derive(Default)]
struct Pin(Rc<RefCell<Vec<bool>>>);

impl PinErrorType for Pin {
    type Error = Infallible;
}

impl OutputPin for Pin {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.0.borrow_mut().push(false);
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.0.borrow_mut().push(true);
        Ok(())
    }
}

impl Wait for Pin {
    async fn wait_for_high(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
    async fn wait_for_low(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
    async fn wait_for_rising_edge(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
    async fn wait_for_falling_edge(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
    async fn wait_for_any_edge(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

struct NoDelay;

impl DelayNs for NoDelay {
    async fn delay_ns(&mut self, _ns: u32) {}
}

type MockLink = Sx126xLink<MockSpi, GenericSx126xInterfaceVariant<Pin, Pin>, NoDelay>;

fn radio() -> (MockLink, MockSpi, Rc<RefCell<Vec<bool>>>) {
    let spi = MockSpi::default();
    let reset = Pin::default();
    let reset_log = Rc::clone(&reset.0);
    let iv = GenericSx126xInterfaceVariant::new(reset, Pin::default(), Pin::default(), None, None)
        .unwrap();
    let link = block_on(Sx126xLink::new(spi.clone(), iv, NoDelay, false, true, 14)).unwrap();
    (link, spi, reset_log)
}

fn eu_sf7() -> Channel {
    Channel {
        freq_hz: 868_100_000,
        params: LoraParams::new(SpreadingFactor::Sf7, Bandwidth::Khz125),
    }
}

/// Index of the first command at or after `from` whose opcode is `op`.
fn find(commands: &[Vec<u8>], from: usize, op: u8) -> usize {
    commands[from..]
        .iter()
        .position(|c| c.first() == Some(&op))
        .map(|i| i + from)
        .unwrap_or_else(|| {
            panic!("opcode {op:#04x} not sent after command {from}: {commands:02x?}")
        })
}

#[test]
fn init_resets_the_chip_and_selects_lora_in_standby() {
    let (_link, spi, reset) = radio();
    // NRESET pulsed low then released.
    assert_eq!(*reset.borrow(), vec![false, true]);
    let chip = spi.0.borrow();
    let standby = find(&chip.commands, 0, SET_STANDBY);
    assert_eq!(chip.commands[standby], vec![SET_STANDBY, 0x00]); // STDBY_RC
    let packet_type = find(&chip.commands, standby, SET_PACKET_TYPE);
    assert_eq!(chip.commands[packet_type], vec![SET_PACKET_TYPE, 0x01]); // LoRa
}

#[test]
fn transmit_issues_the_sx126x_command_sequence_with_our_parameters() {
    let (mut link, spi, _) = radio();
    let start = spi.0.borrow().commands.len();
    spi.0.borrow_mut().irq = TX_DONE;
    block_on(link.transmit(&eu_sf7(), b"hello mesh")).unwrap();
    let chip = spi.0.borrow();
    let c = &chip.commands;
    // Image calibration for 863–870 MHz (datasheet table 9-2: 0xD7, 0xDB).
    let cal = find(c, start, CALIBRATE_IMAGE);
    assert_eq!(c[cal], vec![CALIBRATE_IMAGE, 0xD7, 0xDB]);
    // SF7, BW 125 kHz (0x04), CR 4/5 (0x01), low-data-rate optimisation off.
    let modulation = find(c, cal, SET_MODULATION_PARAMS);
    assert_eq!(
        c[modulation],
        vec![SET_MODULATION_PARAMS, 0x07, 0x04, 0x01, 0x00]
    );
    // Preamble 8, explicit header, 10 bytes, CRC on, IQ standard.
    let packet = find(c, modulation, SET_PACKET_PARAMS);
    assert_eq!(
        c[packet],
        vec![SET_PACKET_PARAMS, 0x00, 0x08, 0x00, 10, 0x01, 0x00]
    );
    // Frequency in PLL steps of 32 MHz / 2^25, rounded to nearest.
    let steps = ((868_100_000u64 << 25) + 16_000_000) / 32_000_000;
    let freq = find(c, packet, SET_RF_FREQUENCY);
    let mut expect = vec![SET_RF_FREQUENCY];
    expect.extend_from_slice(&(steps as u32).to_be_bytes());
    assert_eq!(c[freq], expect);
    // The payload at buffer offset 0, then SetTx with no timeout.
    let write = find(c, freq, WRITE_BUFFER);
    let mut expect = vec![WRITE_BUFFER, 0x00];
    expect.extend_from_slice(b"hello mesh");
    assert_eq!(c[write], expect);
    let tx = find(c, write, SET_TX);
    assert_eq!(c[tx], vec![SET_TX, 0, 0, 0]);
    // It waited for TxDone by reading the IRQ status.
    find(c, tx, GET_IRQ_STATUS);
}

#[test]
fn transmit_at_sf12_turns_low_data_rate_optimisation_on() {
    let (mut link, spi, _) = radio();
    spi.0.borrow_mut().irq = TX_DONE;
    let channel = Channel {
        params: LoraParams::new(SpreadingFactor::Sf12, Bandwidth::Khz125),
        ..eu_sf7()
    };
    block_on(link.transmit(&channel, &[1, 2, 3])).unwrap();
    let chip = spi.0.borrow();
    let m = find(&chip.commands, 0, SET_MODULATION_PARAMS);
    assert_eq!(
        chip.commands[m],
        vec![SET_MODULATION_PARAMS, 0x0C, 0x04, 0x01, 0x01]
    );
}

#[test]
fn settings_lora_phy_cannot_express_are_refused_before_any_command() {
    let (mut link, spi, _) = radio();
    let before = spi.0.borrow().commands.len();
    let forced = Channel {
        params: LoraParams {
            low_data_rate: LowDataRate::On,
            ..LoraParams::new(SpreadingFactor::Sf7, Bandwidth::Khz125)
        },
        ..eu_sf7()
    };
    assert!(matches!(
        block_on(link.transmit(&forced, b"x")),
        Err(Error::Hardware {
            op: "modulation",
            ..
        })
    ));
    assert!(matches!(
        block_on(link.transmit(&eu_sf7(), &[0; 256])),
        Err(Error::PayloadTooLong { len: 256, .. })
    ));
    assert_eq!(spi.0.borrow().commands.len(), before);
}

#[test]
fn receive_reads_the_frame_the_chip_reports() {
    let (mut link, spi, _) = radio();
    {
        let mut chip = spi.0.borrow_mut();
        chip.irq = RX_DONE;
        chip.rx_frame = b"frame from the air".to_vec();
    }
    let mut buf = [0u8; 64];
    let (len, rssi) = block_on(link.receive(&eu_sf7(), &mut buf)).unwrap();
    assert_eq!(&buf[..len], b"frame from the air");
    assert_eq!(rssi, -60); // -120 / 2 dBm
    let chip = spi.0.borrow();
    let rx = find(&chip.commands, 0, SET_RX);
    find(&chip.commands, rx, READ_BUFFER);
}

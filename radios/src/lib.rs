//! Radio links for meshota, as frames.
//!
//! **Not built yet.** This crate will hold LoRa modulation parameters and time
//! on air (Semtech AN1200.13), regional duty-cycle and dwell-time rules as
//! data, a per-node duty-cycle budget, a simulated radio medium (path loss,
//! half-duplex, collisions) and, behind the `sx126x` feature, a lora-phy
//! backend over Linux spidev and GPIO character devices.
//!
//! It depends on no other meshota crate. Until it is built it exports nothing.

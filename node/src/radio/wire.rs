//! The medium server's socket protocol: what a daemon's radio driver
//! (`backend = "medium"`) and `meshota testnet medium` say to each other
//! over a Unix stream socket. ARCHITECTURE.md, "Medium server", has it
//! byte by byte.
//!
//! ```text
//! message:  kind (u8) || body length (u16 LE, <= BODY_BYTES_MAX) || body
//!
//! client -> server
//!   0x01 Hello     version (u8, 1) || node index on the medium (u16 LE)
//!   0x02 Transmit  freq_hz (u32 LE) || sf (u8, 7..=12) || bw_khz (u16 LE:
//!                  125, 250, 500) || coding-rate denominator (u8, 5..=8)
//!                  || frame (1..=255 bytes)
//! server -> client
//!   0x81 Welcome   version (u8, 1) || time scale (u32 LE, >= 1)
//!   0x82 Receive   rssi (i16 LE, dBm) || frame (1..=255 bytes)
//!   0x83 Refused   reason (UTF-8); the server closes the connection after it
//! ```
//!
//! Decoding checks the kind, the length and every field before anything
//! is used; bad input is a [`WireError`], never a panic.

use meshota_radios::{Bandwidth, Channel, CodingRate, LoraParams, SpreadingFactor};

/// Protocol version in Hello and Welcome.
pub(crate) const VERSION: u8 = 1;
/// Largest body of one message (bytes).
pub(crate) const BODY_BYTES_MAX: usize = 1024;
/// Largest radio frame (the LoRa payload limit).
pub(crate) const FRAME_BYTES_MAX: usize = 255;
/// Largest reason in a Refused message.
const REASON_BYTES_MAX: usize = 512;

const HELLO: u8 = 0x01;
const TRANSMIT: u8 = 0x02;
const WELCOME: u8 = 0x81;
const RECEIVE: u8 = 0x82;
const REFUSED: u8 = 0x83;

/// A message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum WireError {
    /// A kind byte no message has.
    #[error("unknown message kind 0x{0:02x}")]
    UnknownKind(u8),
    /// A length over [`BODY_BYTES_MAX`].
    #[error("message body of {len} bytes exceeds {max}")]
    TooLong {
        /// The length announced.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A body shorter or longer than its fields.
    #[error("{what}: body of {len} bytes is malformed")]
    BadLength {
        /// Which message.
        what: &'static str,
        /// Its body length.
        len: usize,
    },
    /// A field with a value the protocol does not allow.
    #[error("{what}: {reason}")]
    BadField {
        /// Which message.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The peer speaks another protocol version.
    #[error("protocol version {got}, this build speaks {VERSION}")]
    Version {
        /// The version received.
        got: u8,
    },
}

/// One message of the protocol.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Msg {
    /// Client: "I am node `node` of the medium".
    Hello {
        /// The node's index on the medium.
        node: u16,
    },
    /// Client: put `frame` on the air on `channel`, now.
    Transmit {
        /// Frequency and modulation.
        channel: Channel,
        /// The frame.
        frame: Vec<u8>,
    },
    /// Server: accepted; the medium runs `time_scale` times faster than
    /// the wall clock.
    Welcome {
        /// Virtual microseconds per wall-clock microsecond.
        time_scale: u32,
    },
    /// Server: a frame received intact.
    Receive {
        /// Received power (dBm).
        rssi_dbm: i16,
        /// The frame.
        frame: Vec<u8>,
    },
    /// Server: the connection is refused (and closed).
    Refused {
        /// Why.
        reason: String,
    },
}

fn frame_ok(what: &'static str, frame: &[u8]) -> Result<(), WireError> {
    if frame.is_empty() || frame.len() > FRAME_BYTES_MAX {
        return Err(WireError::BadField {
            what,
            reason: format!("frame of {} bytes (1..={FRAME_BYTES_MAX})", frame.len()),
        });
    }
    Ok(())
}

impl Msg {
    /// The message as bytes: kind, length, body.
    #[must_use]
    pub(crate) fn encode(&self) -> Vec<u8> {
        let (kind, body) = match self {
            Self::Hello { node } => {
                let mut b = vec![VERSION];
                b.extend_from_slice(&node.to_le_bytes());
                (HELLO, b)
            }
            Self::Transmit { channel, frame } => {
                let mut b = channel.freq_hz.to_le_bytes().to_vec();
                b.push(channel.params.sf.number());
                let khz = u16::try_from(channel.params.bw.hz() / 1000).unwrap_or(u16::MAX);
                b.extend_from_slice(&khz.to_le_bytes());
                b.push(cr_denominator(channel.params.cr));
                b.extend_from_slice(frame);
                (TRANSMIT, b)
            }
            Self::Welcome { time_scale } => {
                let mut b = vec![VERSION];
                b.extend_from_slice(&time_scale.to_le_bytes());
                (WELCOME, b)
            }
            Self::Receive { rssi_dbm, frame } => {
                let mut b = rssi_dbm.to_le_bytes().to_vec();
                b.extend_from_slice(frame);
                (RECEIVE, b)
            }
            Self::Refused { reason } => {
                let mut r = reason.as_bytes().to_vec();
                r.truncate(REASON_BYTES_MAX);
                (REFUSED, r)
            }
        };
        let mut out = Vec::with_capacity(3 + body.len());
        out.push(kind);
        let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Checks a header (kind and length) before the body is read; returns
    /// the body length.
    ///
    /// # Errors
    /// [`WireError::UnknownKind`], [`WireError::TooLong`].
    pub(crate) fn check_header(header: [u8; 3]) -> Result<usize, WireError> {
        if !matches!(header[0], HELLO | TRANSMIT | WELCOME | RECEIVE | REFUSED) {
            return Err(WireError::UnknownKind(header[0]));
        }
        let len = usize::from(u16::from_le_bytes([header[1], header[2]]));
        if len > BODY_BYTES_MAX {
            return Err(WireError::TooLong {
                len,
                max: BODY_BYTES_MAX,
            });
        }
        Ok(len)
    }

    /// Decodes a body of kind `kind`.
    ///
    /// # Errors
    /// Any [`WireError`]: each field is checked.
    pub(crate) fn decode(kind: u8, body: &[u8]) -> Result<Self, WireError> {
        let len = body.len();
        match kind {
            HELLO => {
                let [v, a, b] = body else {
                    return Err(WireError::BadLength { what: "hello", len });
                };
                if *v != VERSION {
                    return Err(WireError::Version { got: *v });
                }
                Ok(Self::Hello {
                    node: u16::from_le_bytes([*a, *b]),
                })
            }
            TRANSMIT => {
                const WHAT: &str = "transmit";
                if len < 9 {
                    return Err(WireError::BadLength { what: WHAT, len });
                }
                let bad = |reason: String| WireError::BadField { what: WHAT, reason };
                let freq_hz = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
                let sf = SpreadingFactor::from_number(body[4])
                    .map_err(|_| bad(format!("spreading factor {}", body[4])))?;
                let khz = u16::from_le_bytes([body[5], body[6]]);
                let bw = Bandwidth::from_khz(u32::from(khz))
                    .map_err(|_| bad(format!("bandwidth {khz} kHz")))?;
                let cr = CodingRate::from_denominator(body[7])
                    .map_err(|_| bad(format!("coding rate 4/{}", body[7])))?;
                let frame = body[8..].to_vec();
                frame_ok(WHAT, &frame)?;
                let mut params = LoraParams::new(sf, bw);
                params.cr = cr;
                Ok(Self::Transmit {
                    channel: Channel { freq_hz, params },
                    frame,
                })
            }
            WELCOME => {
                let [v, a, b, c, d] = body else {
                    return Err(WireError::BadLength {
                        what: "welcome",
                        len,
                    });
                };
                if *v != VERSION {
                    return Err(WireError::Version { got: *v });
                }
                let time_scale = u32::from_le_bytes([*a, *b, *c, *d]);
                if time_scale == 0 {
                    return Err(WireError::BadField {
                        what: "welcome",
                        reason: "time scale 0".into(),
                    });
                }
                Ok(Self::Welcome { time_scale })
            }
            RECEIVE => {
                if len < 3 {
                    return Err(WireError::BadLength {
                        what: "receive",
                        len,
                    });
                }
                let frame = body[2..].to_vec();
                frame_ok("receive", &frame)?;
                Ok(Self::Receive {
                    rssi_dbm: i16::from_le_bytes([body[0], body[1]]),
                    frame,
                })
            }
            REFUSED => Ok(Self::Refused {
                reason: String::from_utf8_lossy(body).into_owned(),
            }),
            other => Err(WireError::UnknownKind(other)),
        }
    }
}

const fn cr_denominator(cr: CodingRate) -> u8 {
    match cr {
        CodingRate::Cr4_5 => 5,
        CodingRate::Cr4_6 => 6,
        CodingRate::Cr4_7 => 7,
        CodingRate::Cr4_8 => 8,
    }
}

/// Reads one message from `r` (async): header, checks, body, decode.
///
/// # Errors
/// I/O errors (end of stream included) as `Err(None)`-free
/// [`ReadError::Io`]; protocol errors as [`ReadError::Wire`].
pub(crate) async fn read_msg<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Result<Msg, ReadError> {
    use tokio::io::AsyncReadExt;
    let mut header = [0u8; 3];
    r.read_exact(&mut header).await.map_err(ReadError::Io)?;
    let len = Msg::check_header(header).map_err(ReadError::Wire)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(ReadError::Io)?;
    Msg::decode(header[0], &body).map_err(ReadError::Wire)
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The stream failed or ended.
    #[error("socket: {0}")]
    Io(std::io::Error),
    /// The bytes are not a valid message.
    #[error("protocol: {0}")]
    Wire(WireError),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn round_trip(m: &Msg) -> Msg {
        let b = m.encode();
        let len = Msg::check_header([b[0], b[1], b[2]]).unwrap();
        assert_eq!(len, b.len() - 3);
        Msg::decode(b[0], &b[3..]).unwrap()
    }

    #[test]
    fn every_message_round_trips_byte_for_byte() {
        let mut params = LoraParams::new(SpreadingFactor::Sf9, Bandwidth::Khz250);
        params.cr = CodingRate::Cr4_7;
        for m in [
            Msg::Hello { node: 513 },
            Msg::Transmit {
                channel: Channel {
                    freq_hz: 869_525_000,
                    params,
                },
                frame: vec![7; 222],
            },
            Msg::Welcome { time_scale: 10 },
            Msg::Receive {
                rssi_dbm: -117,
                frame: vec![1, 2, 3],
            },
            Msg::Refused {
                reason: "node 9 is not on the medium".into(),
            },
        ] {
            assert_eq!(round_trip(&m), m);
        }
        assert_eq!(Msg::Hello { node: 2 }.encode(), [0x01, 3, 0, 1, 2, 0]);
    }

    #[test]
    fn malformed_messages_are_typed_errors() {
        assert_eq!(
            Msg::check_header([0x7f, 0, 0]),
            Err(WireError::UnknownKind(0x7f))
        );
        assert!(matches!(
            Msg::check_header([0x02, 0xff, 0xff]),
            Err(WireError::TooLong { .. })
        ));
        assert!(matches!(
            Msg::decode(HELLO, &[1, 0]),
            Err(WireError::BadLength { .. })
        ));
        assert_eq!(
            Msg::decode(HELLO, &[9, 0, 0]),
            Err(WireError::Version { got: 9 })
        );
        // SF 13, bandwidth 300 kHz, coding rate 4/9, empty and long frames.
        let tx = |sf: u8, khz: u16, cr: u8, frame: usize| {
            let mut b = 869_525_000u32.to_le_bytes().to_vec();
            b.push(sf);
            b.extend_from_slice(&khz.to_le_bytes());
            b.push(cr);
            b.extend(std::iter::repeat_n(0u8, frame));
            Msg::decode(TRANSMIT, &b)
        };
        assert!(tx(7, 125, 5, 10).is_ok());
        for bad in [
            tx(13, 125, 5, 10),
            tx(7, 300, 5, 10),
            tx(7, 125, 9, 10),
            tx(7, 125, 5, 256),
        ] {
            assert!(matches!(bad, Err(WireError::BadField { .. })), "{bad:?}");
        }
        assert!(matches!(tx(7, 125, 5, 0), Err(WireError::BadLength { .. })));
        assert!(matches!(
            Msg::decode(WELCOME, &[1, 0, 0, 0, 0]),
            Err(WireError::BadField { .. })
        ));
        assert!(matches!(
            Msg::decode(RECEIVE, &[0, 0]),
            Err(WireError::BadLength { .. })
        ));
    }
}

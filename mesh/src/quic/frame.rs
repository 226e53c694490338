//! Length-prefixed frames on QUIC streams: a `u32` big-endian length, then
//! exactly that many bytes. A message is one frame alone on its own
//! unidirectional stream.
//!
//! The announced length is checked against the caller's limit before any
//! buffer is reserved, and the buffer then grows only as bytes arrive, so a
//! peer cannot make us allocate more than it actually sends.

use std::sync::Arc;

use quinn::{RecvStream, SendStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::QuicError;

/// The largest message a peer may send: 4 MiB. Larger frames close the
/// connection with `CloseCode::MessageTooLarge`.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Bytes reserved up front for a frame body; more is reserved as data
/// arrives.
const INITIAL_CAPACITY: usize = 64 * 1024;

/// Writes one frame (`len` as `u32` BE, then `payload`). Does not finish
/// the stream.
///
/// # Errors
/// [`QuicError::MessageTooLarge`] if `payload` does not fit a `u32` length;
/// stream and connection errors from quinn.
pub async fn write_frame(stream: &mut SendStream, payload: &[u8]) -> Result<(), QuicError> {
    let len = u32::try_from(payload.len()).map_err(|_| QuicError::MessageTooLarge {
        len: payload.len() as u64,
        max: u64::from(u32::MAX),
    })?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(payload).await?;
    Ok(())
}

/// Reads one frame of at most `max` bytes. The length is checked before
/// anything is allocated for the body.
///
/// # Errors
/// [`QuicError::FrameTooLarge`] when the header announces more than `max`;
/// [`QuicError::MalformedFrame`] when the stream ends inside the frame;
/// stream and connection errors from quinn.
pub async fn read_frame(stream: &mut RecvStream, max: usize) -> Result<Vec<u8>, QuicError> {
    let len = read_len(stream, max).await?;
    read_body(stream, len).await
}

/// Reads a frame header and checks the announced length against `max`.
///
/// # Errors
/// As [`read_frame`].
pub async fn read_len(stream: &mut RecvStream, max: usize) -> Result<usize, QuicError> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).await?;
    let announced = u32::from_be_bytes(header);
    let len = usize::try_from(announced)
        .ok()
        .filter(|len| *len <= max)
        .ok_or(QuicError::FrameTooLarge {
            len: u64::from(announced),
            max: max as u64,
        })?;
    Ok(len)
}

/// Reads a frame body of exactly `len` bytes (announced by [`read_len`]);
/// the buffer grows only as bytes arrive.
///
/// # Errors
/// [`QuicError::MalformedFrame`] when the stream ends inside the body;
/// stream and connection errors from quinn.
pub async fn read_body(stream: &mut RecvStream, len: usize) -> Result<Vec<u8>, QuicError> {
    let mut body = Vec::with_capacity(len.min(INITIAL_CAPACITY));
    while body.len() < len {
        match stream.read_chunk(len - body.len(), true).await? {
            Some(chunk) => body.extend_from_slice(&chunk.bytes),
            None => {
                return Err(QuicError::MalformedFrame {
                    reason: "stream ended inside a frame body",
                });
            }
        }
    }
    Ok(body)
}

/// Checks that the stream ends here (the sender finished it).
///
/// # Errors
/// [`QuicError::MalformedFrame`] when more bytes follow; stream and
/// connection errors from quinn.
pub async fn expect_end(stream: &mut RecvStream) -> Result<(), QuicError> {
    match stream.read_chunk(1, true).await? {
        None => Ok(()),
        Some(_) => Err(QuicError::MalformedFrame {
            reason: "bytes after the last frame of a stream",
        }),
    }
}

/// Reads one whole message stream: a single frame of at most
/// [`MAX_MESSAGE_BYTES`], then the end of the stream. The body is read
/// only once `budget` grants its length (in KiB); the returned permit
/// holds that share until the caller drops it, after handing the message
/// on.
///
/// # Errors
/// As [`read_frame`] and [`expect_end`]; [`QuicError::Stream`] if the
/// budget was closed.
pub async fn read_message(
    stream: &mut RecvStream,
    budget: Arc<Semaphore>,
) -> Result<(Vec<u8>, OwnedSemaphorePermit), QuicError> {
    let len = read_len(stream, MAX_MESSAGE_BYTES).await?;
    let kib = u32::try_from(len.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    let permit = budget
        .acquire_many_owned(kib)
        .await
        .map_err(|_| QuicError::Stream {
            reason: "read budget closed".into(),
        })?;
    let body = read_body(stream, len).await?;
    expect_end(stream).await?;
    Ok((body, permit))
}

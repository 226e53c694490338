//! The [`Slot`] trait: a byte-addressed medium with flash-like erase.
//!
//! Backends: [`crate::file::FileSlot`] (plain file or block device) and
//! [`crate::flash::NorSlot`] (strict NOR-flash model with power cuts).

use crate::error::{Error, Result};

/// Value of an erased byte on every backend.
pub const ERASED: u8 = 0xFF;

/// A fixed-size medium holding one image (an A/B slot) or a record area.
///
/// Contract every backend meets (checked by one shared test suite):
/// - offsets and lengths past [`Slot::size`] fail with [`Error::OutOfBounds`]
///   and change nothing;
/// - [`Slot::erase`] takes a range aligned to [`Slot::erase_size`] and leaves
///   every byte in it equal to [`ERASED`];
/// - [`Slot::write`] to erased bytes stores them (a strict backend refuses a
///   write that needs an erase first, with [`Error::NotErased`]);
/// - after [`Slot::flush`] returns, written data survives a power cut.
pub trait Slot {
    /// Size in bytes. Never changes.
    fn size(&self) -> u64;
    /// Erase granularity in bytes (1 where the medium can rewrite any byte). Never 0.
    fn erase_size(&self) -> u64;
    /// Fills `buf` from `offset`.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`], I/O errors, [`Error::PowerCut`] in models.
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// Writes `data` at `offset`.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`], [`Error::NotErased`] (strict flash), I/O errors.
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<()>;
    /// Erases `len` bytes at `offset`, both multiples of [`Slot::erase_size`].
    ///
    /// # Errors
    /// [`Error::Misaligned`], [`Error::OutOfBounds`], I/O errors.
    fn erase(&mut self, offset: u64, len: u64) -> Result<()>;
    /// Makes everything written so far durable.
    ///
    /// # Errors
    /// I/O errors, [`Error::PowerCut`] in models.
    fn flush(&mut self) -> Result<()>;
}

impl<T: Slot + ?Sized> Slot for &mut T {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn erase_size(&self) -> u64 {
        (**self).erase_size()
    }
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read(offset, buf)
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        (**self).write(offset, data)
    }
    fn erase(&mut self, offset: u64, len: u64) -> Result<()> {
        (**self).erase(offset, len)
    }
    fn flush(&mut self) -> Result<()> {
        (**self).flush()
    }
}

/// Checks that `len` bytes at `offset` lie inside a medium of `size` bytes.
///
/// # Errors
/// [`Error::OutOfBounds`] otherwise (including on arithmetic overflow).
pub fn check_range(offset: u64, len: u64, size: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::OutOfBounds { offset, len, size }),
    }
}

/// Checks an erase range: inside the medium and sector-aligned at both ends.
///
/// # Errors
/// [`Error::OutOfBounds`] or [`Error::Misaligned`].
pub fn check_erase(offset: u64, len: u64, size: u64, erase_size: u64) -> Result<()> {
    check_range(offset, len, size)?;
    let es = erase_size.max(1);
    if offset % es != 0 || len % es != 0 {
        return Err(Error::Misaligned {
            offset,
            len,
            erase_size: es,
        });
    }
    Ok(())
}

/// Smallest multiple of the slot's erase size that covers `len` bytes.
#[must_use]
pub fn erase_span(slot: &dyn Slot, len: u64) -> u64 {
    let es = slot.erase_size().max(1);
    len.div_ceil(es).saturating_mul(es)
}

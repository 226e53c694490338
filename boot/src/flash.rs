//! A strict NOR-flash model in memory, with power cuts and torn writes, for
//! tests and the simulator.
//!
//! Rules of the model (stricter than most real parts, like MCUboot's simflash):
//! - erase works on whole sectors only and sets every byte to `0xFF`;
//! - a write can only clear bits: writing a byte that needs a 1 where the
//!   flash holds a 0 fails with [`Error::NotErased`] and changes nothing;
//! - every write, erase and flush is one *operation*, numbered from 0 over the
//!   life of the device; a [`CutPlan`] cuts the power at operation `k`. With a
//!   [`Tear`] the cut operation lands partly (a prefix of a write, a prefix of
//!   an erase); without one it does not land at all. After a cut, every access
//!   fails with [`Error::PowerCut`] until [`NorFlash::power_cycle`].

use std::cell::RefCell;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::slot::{ERASED, Slot, check_erase, check_range};

/// Shape of a flash part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Erase-sector size in bytes.
    pub sector_size: u64,
    /// Number of sectors.
    pub sectors: u64,
}

impl Geometry {
    /// Total bytes.
    #[must_use]
    pub const fn size(&self) -> u64 {
        self.sector_size.saturating_mul(self.sectors)
    }
}

/// How the operation at the cut point lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tear {
    /// Not at all: the cut falls just before it.
    None,
    /// The first half of the bytes land.
    Half,
    /// A seeded pseudo-random prefix lands and the byte after it is
    /// half-programmed (random bits of it cleared). Same seed, same bytes.
    Seeded(u64),
}

/// When to cut the power.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutPlan {
    /// Index of the operation at which the power goes.
    pub at_op: u64,
    /// How that operation lands.
    pub tear: Tear,
}

#[derive(Debug)]
struct Inner {
    mem: Vec<u8>,
    geometry: Geometry,
    ops: u64,
    cut: Option<CutPlan>,
    powered: bool,
}

/// SplitMix64: a tiny seeded generator, enough for choosing tear points.
const fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Inner {
    fn check_power(&self) -> Result<()> {
        if self.powered {
            Ok(())
        } else {
            Err(Error::PowerCut { op: self.ops })
        }
    }

    /// Counts an operation; returns `Some(bytes_that_land)` if the power goes now.
    fn begin_op(&mut self, len: usize) -> Result<Option<(usize, u8)>> {
        self.check_power()?;
        let op = self.ops;
        self.ops += 1;
        match self.cut {
            Some(plan) if plan.at_op == op => {
                self.powered = false;
                let landed = match plan.tear {
                    Tear::None => (0, 0xFF),
                    Tear::Half => (len / 2, 0xFF),
                    Tear::Seeded(seed) => {
                        let r = splitmix64(seed ^ op.wrapping_mul(0x100_0000_01B3));
                        let n = usize::try_from(r % (len as u64 + 1)).unwrap_or(0);
                        // Low byte: mask of bits that stay 1 in the half-programmed byte.
                        (n, (r >> 32) as u8)
                    }
                };
                Ok(Some(landed))
            }
            _ => Ok(None),
        }
    }
}

/// A NOR-flash device shared by its partitions (cheap to clone: a handle).
///
/// Invariant: bytes only change by erase (to `0xFF`, whole sectors) or by
/// clearing bits; the operation counter only grows.
#[derive(Debug, Clone)]
pub struct NorFlash(Rc<RefCell<Inner>>);

impl NorFlash {
    /// A fully erased device.
    #[must_use]
    pub fn new(geometry: Geometry) -> Self {
        let size = usize::try_from(geometry.size()).unwrap_or(0);
        Self(Rc::new(RefCell::new(Inner {
            mem: vec![ERASED; size],
            geometry,
            ops: 0,
            cut: None,
            powered: true,
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> Result<T>) -> Result<T> {
        // Re-entrant use is impossible through this API; treat it as a cut
        // rather than panicking.
        let mut inner = self
            .0
            .try_borrow_mut()
            .map_err(|_| Error::PowerCut { op: u64::MAX })?;
        f(&mut inner)
    }

    /// The device's geometry.
    #[must_use]
    pub fn geometry(&self) -> Geometry {
        self.0.try_borrow().map(|i| i.geometry).unwrap_or(Geometry {
            sector_size: 1,
            sectors: 0,
        })
    }

    /// Operations (write, erase, flush) performed so far.
    #[must_use]
    pub fn ops(&self) -> u64 {
        self.0.try_borrow().map(|i| i.ops).unwrap_or(0)
    }

    /// Arms a power cut (replacing any armed one).
    pub fn arm(&self, plan: CutPlan) {
        if let Ok(mut i) = self.0.try_borrow_mut() {
            i.cut = Some(plan);
        }
    }

    /// The power is off after a cut.
    #[must_use]
    pub fn is_cut(&self) -> bool {
        self.0.try_borrow().map(|i| !i.powered).unwrap_or(true)
    }

    /// Turns the power back on and disarms the cut; contents stay as they were.
    pub fn power_cycle(&self) {
        if let Ok(mut i) = self.0.try_borrow_mut() {
            i.powered = true;
            i.cut = None;
        }
    }

    /// A copy of the whole contents (for inspection).
    #[must_use]
    pub fn snapshot(&self) -> Vec<u8> {
        self.0
            .try_borrow()
            .map(|i| i.mem.clone())
            .unwrap_or_default()
    }

    /// A partition of `sectors` sectors starting at sector `first`.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] when it passes the end of the device.
    pub fn partition(&self, first: u64, sectors: u64) -> Result<NorSlot> {
        let g = self.geometry();
        let offset = first.saturating_mul(g.sector_size);
        let size = sectors.saturating_mul(g.sector_size);
        check_range(offset, size, g.size())?;
        Ok(NorSlot {
            flash: self.clone(),
            offset,
            size,
            sector_size: g.sector_size,
        })
    }
}

/// A sector-aligned window of a [`NorFlash`], used as a [`Slot`].
///
/// Invariant: never touches bytes outside its window.
#[derive(Debug, Clone)]
pub struct NorSlot {
    flash: NorFlash,
    offset: u64,
    size: u64,
    sector_size: u64,
}

impl NorSlot {
    /// The device this window belongs to.
    #[must_use]
    pub const fn flash(&self) -> &NorFlash {
        &self.flash
    }

    fn range(&self, offset: u64, len: u64) -> Result<core::ops::Range<usize>> {
        check_range(offset, len, self.size)?;
        let start = usize::try_from(self.offset + offset).map_err(|_| Error::OutOfBounds {
            offset,
            len,
            size: self.size,
        })?;
        let len = usize::try_from(len).map_err(|_| Error::OutOfBounds {
            offset,
            len,
            size: self.size,
        })?;
        Ok(start..start + len)
    }
}

impl Slot for NorSlot {
    fn size(&self) -> u64 {
        self.size
    }

    fn erase_size(&self) -> u64 {
        self.sector_size
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let r = self.range(offset, buf.len() as u64)?;
        self.flash.with(|i| {
            i.check_power()?;
            buf.copy_from_slice(i.mem.get(r).ok_or(Error::OutOfBounds {
                offset,
                len: 0,
                size: 0,
            })?);
            Ok(())
        })
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let r = self.range(offset, data.len() as u64)?;
        self.flash.with(|i| {
            i.check_power()?;
            let cur = i.mem.get(r.clone()).ok_or(Error::OutOfBounds {
                offset,
                len: 0,
                size: 0,
            })?;
            if let Some((k, (&old, &new))) = cur
                .iter()
                .zip(data)
                .enumerate()
                .find(|(_, (o, n))| *n & !**o != 0)
            {
                return Err(Error::NotErased {
                    offset: offset + k as u64,
                    old,
                    new,
                });
            }
            let cut = i.begin_op(data.len())?;
            let op = i.ops - 1;
            let (landed, partial_mask) = cut.unwrap_or((data.len(), 0xFF));
            let mem = i.mem.get_mut(r).ok_or(Error::OutOfBounds {
                offset,
                len: 0,
                size: 0,
            })?;
            for (m, &d) in mem.iter_mut().zip(data).take(landed) {
                *m &= d;
            }
            if cut.is_none() {
                return Ok(());
            }
            if let (Some(m), Some(&d)) = (mem.get_mut(landed), data.get(landed)) {
                *m &= d | partial_mask;
            }
            Err(Error::PowerCut { op })
        })
    }

    fn erase(&mut self, offset: u64, len: u64) -> Result<()> {
        check_erase(offset, len, self.size, self.sector_size)?;
        let r = self.range(offset, len)?;
        self.flash.with(|i| {
            let cut = i.begin_op(r.len())?;
            let landed = cut.map_or(r.len(), |(n, _)| n);
            let mem = i.mem.get_mut(r).ok_or(Error::OutOfBounds {
                offset,
                len,
                size: 0,
            })?;
            for m in mem.iter_mut().take(landed) {
                *m = ERASED;
            }
            if cut.is_some() {
                return Err(Error::PowerCut { op: i.ops - 1 });
            }
            Ok(())
        })
    }

    fn flush(&mut self) -> Result<()> {
        self.flash.with(|i| match i.begin_op(0)? {
            Some(_) => Err(Error::PowerCut { op: i.ops - 1 }),
            None => Ok(()),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn flash() -> NorFlash {
        NorFlash::new(Geometry {
            sector_size: 64,
            sectors: 4,
        })
    }

    #[test]
    fn write_that_needs_an_erase_is_refused_and_changes_nothing() {
        let f = flash();
        let mut s = f.partition(0, 4).unwrap();
        s.write(0, &[0x0F]).unwrap();
        s.write(0, &[0x0E]).unwrap(); // only clears a bit: allowed
        let err = s.write(0, &[0xF0]).unwrap_err();
        assert!(matches!(
            err,
            Error::NotErased {
                offset: 0,
                old: 0x0E,
                new: 0xF0
            }
        ));
        let mut b = [0u8; 1];
        s.read(0, &mut b).unwrap();
        assert_eq!(b, [0x0E]);
    }

    #[test]
    fn erase_must_cover_whole_sectors() {
        let f = flash();
        let mut s = f.partition(1, 2).unwrap();
        assert!(matches!(s.erase(1, 64), Err(Error::Misaligned { .. })));
        assert!(matches!(s.erase(0, 65), Err(Error::Misaligned { .. })));
        assert!(matches!(s.erase(64, 128), Err(Error::OutOfBounds { .. })));
        s.erase(64, 64).unwrap();
    }

    #[test]
    fn power_cut_stops_the_cut_operation_and_every_later_one() {
        let f = flash();
        let mut s = f.partition(0, 4).unwrap();
        f.arm(CutPlan {
            at_op: 1,
            tear: Tear::None,
        });
        s.write(0, &[1, 2]).unwrap();
        assert!(matches!(
            s.write(2, &[3, 4]),
            Err(Error::PowerCut { op: 1 })
        ));
        let mut b = [0u8; 4];
        assert!(matches!(s.read(0, &mut b), Err(Error::PowerCut { .. })));
        f.power_cycle();
        s.read(0, &mut b).unwrap();
        assert_eq!(b, [1, 2, 0xFF, 0xFF]);
        assert_eq!(f.ops(), 2);
    }

    #[test]
    fn torn_write_lands_only_its_first_half() {
        let f = flash();
        let mut s = f.partition(0, 4).unwrap();
        f.arm(CutPlan {
            at_op: 0,
            tear: Tear::Half,
        });
        assert!(s.write(0, &[0, 0, 0, 0]).is_err());
        f.power_cycle();
        let mut b = [0u8; 4];
        s.read(0, &mut b).unwrap();
        assert_eq!(b, [0, 0, 0xFF, 0xFF]);
    }

    #[test]
    fn torn_erase_leaves_the_sector_partly_erased() {
        let f = flash();
        let mut s = f.partition(0, 1).unwrap();
        s.write(0, &[0u8; 64]).unwrap();
        f.arm(CutPlan {
            at_op: 1,
            tear: Tear::Half,
        });
        assert!(s.erase(0, 64).is_err());
        f.power_cycle();
        let mut b = [0u8; 64];
        s.read(0, &mut b).unwrap();
        assert!(b[..32].iter().all(|&x| x == 0xFF));
        assert!(b[32..].iter().all(|&x| x == 0));
    }

    #[test]
    fn seeded_tear_is_reproducible() {
        let run = |seed| {
            let f = flash();
            let mut s = f.partition(0, 1).unwrap();
            f.arm(CutPlan {
                at_op: 0,
                tear: Tear::Seeded(seed),
            });
            let _ = s.write(0, &[0u8; 64]);
            f.snapshot()
        };
        assert_eq!(run(42), run(42));
    }
}

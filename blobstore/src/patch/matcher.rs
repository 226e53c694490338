//! bsdiff's matching (Colin Percival, "Naive differences of executable
//! code", 2003) over a suffix array of a window of the base: approximate
//! matches are extended forwards and backwards, their byte-wise differences
//! go to the diff stream, unmatched bytes to the extra stream.

use super::piece::Control;

/// A base window and its suffix array (built by divsufsort, 4 bytes per
/// base byte). Invariant: `sa` is the suffix array of `old`.
pub(crate) struct Window {
    pub(crate) old: Vec<u8>,
    sa: Vec<i32>,
}

/// The streams of one piece, positions relative to the window start.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    pub(crate) controls: Vec<Control>,
    pub(crate) diff: Vec<u8>,
    pub(crate) extra: Vec<u8>,
}

impl Window {
    /// Sorts the suffixes of `old`. `old.len()` must fit an `i32` (the
    /// caller's window limit is far below).
    pub(crate) fn new(old: Vec<u8>) -> Self {
        let mut sa = vec![0i32; old.len()];
        if !old.is_empty() && i32::try_from(old.len()).is_ok() {
            divsufsort::sort_in_place(&old, &mut sa);
        }
        Self { old, sa }
    }

    /// The longest match of a prefix of `new` in the window: (position, length).
    fn search(&self, new: &[u8]) -> (usize, usize) {
        let (old, sa) = (&self.old, &self.sa);
        if sa.is_empty() {
            return (0, 0);
        }
        let at = |i: usize| usize::try_from(sa[i]).unwrap_or(0);
        let (mut lo, mut hi) = (0usize, sa.len() - 1);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let suffix = &old[at(mid)..];
            let n = suffix.len().min(new.len());
            if suffix[..n] < new[..n] {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let (x, y) = (
            match_len(&old[at(lo)..], new),
            match_len(&old[at(hi)..], new),
        );
        if x > y { (at(lo), x) } else { (at(hi), y) }
    }

    /// bsdiff's scan of `new` against the window. The control stream starts
    /// with the base cursor at window position 0.
    pub(crate) fn diff(&self, new: &[u8]) -> Streams {
        let old = &self.old;
        let (oldsize, newsize) = (old.len() as i64, new.len() as i64);
        let old_at = |i: i64| old[usize::try_from(i).unwrap_or(0)];
        let new_at = |i: i64| new[usize::try_from(i).unwrap_or(0)];
        let mut out = Streams::default();
        let (mut scan, mut len, mut pos) = (0i64, 0i64, 0i64);
        let (mut lastscan, mut lastpos, mut lastoffset) = (0i64, 0i64, 0i64);
        while scan < newsize {
            let mut oldscore = 0i64;
            scan += len;
            let mut scsc = scan;
            while scan < newsize {
                let (p, l) = self.search(&new[usize::try_from(scan).unwrap_or(0)..]);
                (pos, len) = (p as i64, l as i64);
                while scsc < scan + len {
                    if scsc + lastoffset < oldsize && old_at(scsc + lastoffset) == new_at(scsc) {
                        oldscore += 1;
                    }
                    scsc += 1;
                }
                if (len == oldscore && len != 0) || len > oldscore + 8 {
                    break;
                }
                if scan + lastoffset < oldsize && old_at(scan + lastoffset) == new_at(scan) {
                    oldscore -= 1;
                }
                scan += 1;
            }
            if len != oldscore || scan == newsize {
                // Extend the previous match forwards...
                let (mut s, mut sf, mut lenf) = (0i64, 0i64, 0i64);
                let mut i = 0i64;
                while lastscan + i < scan && lastpos + i < oldsize {
                    if old_at(lastpos + i) == new_at(lastscan + i) {
                        s += 1;
                    }
                    i += 1;
                    if s * 2 - i > sf * 2 - lenf {
                        sf = s;
                        lenf = i;
                    }
                }
                // ...and this one backwards...
                let mut lenb = 0i64;
                if scan < newsize {
                    let (mut s, mut sb) = (0i64, 0i64);
                    let mut i = 1i64;
                    while scan >= lastscan + i && pos >= i {
                        if old_at(pos - i) == new_at(scan - i) {
                            s += 1;
                        }
                        if s * 2 - i > sb * 2 - lenb {
                            sb = s;
                            lenb = i;
                        }
                        i += 1;
                    }
                }
                // ...and split any overlap where it scores best.
                if lastscan + lenf > scan - lenb {
                    let overlap = (lastscan + lenf) - (scan - lenb);
                    let (mut s, mut ss, mut lens) = (0i64, 0i64, 0i64);
                    for i in 0..overlap {
                        if new_at(lastscan + lenf - overlap + i)
                            == old_at(lastpos + lenf - overlap + i)
                        {
                            s += 1;
                        }
                        if new_at(scan - lenb + i) == old_at(pos - lenb + i) {
                            s -= 1;
                        }
                        if s > ss {
                            ss = s;
                            lens = i + 1;
                        }
                    }
                    lenf += lens - overlap;
                    lenb -= lens;
                }
                for i in 0..lenf {
                    out.diff
                        .push(new_at(lastscan + i).wrapping_sub(old_at(lastpos + i)));
                }
                let copy_from = usize::try_from(lastscan + lenf).unwrap_or(0);
                let copy_to = usize::try_from(scan - lenb).unwrap_or(copy_from);
                out.extra.extend_from_slice(&new[copy_from..copy_to]);
                out.controls.push(Control {
                    add: u32::try_from(lenf).unwrap_or(u32::MAX),
                    copy: u32::try_from(copy_to - copy_from).unwrap_or(u32::MAX),
                    seek: (pos - lenb) - (lastpos + lenf),
                });
                lastscan = scan - lenb;
                lastpos = pos - lenb;
                lastoffset = pos - scan;
            }
        }
        out
    }
}

fn match_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays streams against `old` as the applier does.
    fn replay(old: &[u8], s: &Streams) -> Vec<u8> {
        let (mut out, mut cursor, mut d, mut e) = (Vec::new(), 0i64, 0usize, 0usize);
        for c in &s.controls {
            for i in 0..c.add as usize {
                out.push(old[cursor as usize + i].wrapping_add(s.diff[d]));
                d += 1;
            }
            out.extend_from_slice(&s.extra[e..e + c.copy as usize]);
            e += c.copy as usize;
            cursor += i64::from(c.add) + c.seek;
        }
        out
    }

    #[test]
    fn streams_rebuild_the_new_bytes_from_the_old() {
        let old: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut new = old.clone();
        new[100] ^= 1;
        new.splice(5000..5000, b"inserted bytes".iter().copied());
        new.drain(12_000..12_100);
        let w = Window::new(old.clone());
        let s = w.diff(&new);
        assert_eq!(replay(&old, &s), new);
        assert!(s.extra.len() < 200, "extra {}", s.extra.len());
    }

    #[test]
    fn empty_old_puts_everything_in_extra() {
        let w = Window::new(Vec::new());
        let s = w.diff(b"hello");
        assert_eq!(replay(&[], &s), b"hello");
        assert_eq!(s.extra, b"hello");
    }
}

//! Airtime by frame kind: what a run's airtime was spent on.
//!
//! The kind of a frame is the low nibble of its byte 0
//! (`meshota_radios::frame`): 1 announcement, 2 request, 3 message
//! (fragments of the bundle, or of a patch index), 4 symbol, 5 progress,
//! 6 repair (coded repair fragments of the bundle); anything else, and an
//! empty frame, is "other". The airtime of a frame is
//! [`scenario::airtime_us`] of its length, which is what the medium
//! charges the sender.

use meshota_radios::FrameKind;
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::scenario::{self, seconds};

// The low nibble of byte 0: `meshota_radios::FrameKind`'s numbers.
const ANNOUNCE: u8 = FrameKind::Announce as u8;
const REQUEST: u8 = FrameKind::Request as u8;
/// Bundle and patch-index fragments.
const MESSAGE: u8 = FrameKind::Message as u8;
const SYMBOL: u8 = FrameKind::Symbol as u8;
const PROGRESS: u8 = FrameKind::Progress as u8;
/// Coded repair fragments of the bundle.
const REPAIR: u8 = FrameKind::Repair as u8;

/// Frames of one kind and their airtime. Invariant: `airtime_us` is the
/// sum of [`scenario::airtime_us`] over the `frames` counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindTally {
    /// Frames sent.
    pub frames: u64,
    /// Their airtime (µs).
    pub airtime_us: u64,
}

impl KindTally {
    /// The airtime in seconds.
    #[must_use]
    pub fn seconds(&self) -> f64 {
        seconds(self.airtime_us)
    }

    fn add(&mut self, other: Self) {
        self.frames += other.frames;
        self.airtime_us += other.airtime_us;
    }
}

/// Frames sent and their airtime, by frame kind. Invariant: every frame
/// recorded is counted in exactly one field, so [`AirtimeByKind::total`]
/// is the frames recorded and their whole airtime.
///
/// Serialised (inside [`super::LoraReport`], flattened) as two objects
/// keyed by kind name (`announce`, `request`, `bundle`, `symbol`,
/// `progress`, `repair`, `other`): `"airtime_by_kind_s"` (seconds) and
/// `"frames_by_kind"` (frames).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AirtimeByKind {
    /// Announcements (kind 1).
    pub announce: KindTally,
    /// Requests (kind 2).
    pub request: KindTally,
    /// Message fragments (kind 3): the bundle (signed manifest and chunk
    /// index), and a patch run's patch index.
    pub bundle: KindTally,
    /// Coded symbols (kind 4): chunks and patch pieces.
    pub symbol: KindTally,
    /// Progress reports (kind 5).
    pub progress: KindTally,
    /// Coded repair fragments of the bundle (kind 6).
    pub repair: KindTally,
    /// Any other kind, and empty frames.
    pub other: KindTally,
}

impl AirtimeByKind {
    /// Counts one frame of `frame_len` bytes whose byte 0 is `first`
    /// (`None` for an empty frame): one frame and
    /// [`scenario::airtime_us`]`(frame_len)` in the field of its kind.
    pub fn record(&mut self, first: Option<u8>, frame_len: usize) {
        let t = KindTally {
            frames: 1,
            airtime_us: scenario::airtime_us(frame_len),
        };
        let slot = match first.map(|b| b & 0x0F) {
            Some(ANNOUNCE) => &mut self.announce,
            Some(REQUEST) => &mut self.request,
            Some(MESSAGE) => &mut self.bundle,
            Some(SYMBOL) => &mut self.symbol,
            Some(PROGRESS) => &mut self.progress,
            Some(REPAIR) => &mut self.repair,
            _ => &mut self.other,
        };
        slot.add(t);
    }

    /// Adds every count of `other` to this one's.
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.fields_mut().into_iter().zip(other.fields()) {
            mine.add(theirs.1);
        }
    }

    /// The sum over all kinds.
    #[must_use]
    pub fn total(&self) -> KindTally {
        let mut t = KindTally::default();
        for (_, k) in self.fields() {
            t.add(k);
        }
        t
    }

    /// Every kind with its JSON name, in a fixed order.
    #[must_use]
    pub const fn fields(&self) -> [(&'static str, KindTally); 7] {
        [
            ("announce", self.announce),
            ("request", self.request),
            ("bundle", self.bundle),
            ("symbol", self.symbol),
            ("progress", self.progress),
            ("repair", self.repair),
            ("other", self.other),
        ]
    }

    fn fields_mut(&mut self) -> [&mut KindTally; 7] {
        [
            &mut self.announce,
            &mut self.request,
            &mut self.bundle,
            &mut self.symbol,
            &mut self.progress,
            &mut self.repair,
            &mut self.other,
        ]
    }

    /// One short line of airtime per kind, in seconds, e.g.
    /// `ann 24s req 3s bundle 113s sym 476s prog 0s rep 0s other 0s`.
    #[must_use]
    pub fn summary(&self) -> String {
        let short = ["ann", "req", "bundle", "sym", "prog", "rep", "other"];
        short
            .iter()
            .zip(self.fields())
            .map(|(s, (_, k))| format!("{s} {:.0}s", k.seconds()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn serialize_keyed<S: Serializer>(
        &self,
        serializer: S,
        seconds_key: &str,
        frames_key: &str,
    ) -> Result<S::Ok, S::Error> {
        struct Seconds<'a>(&'a AirtimeByKind);
        impl Serialize for Seconds<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(7))?;
                for (name, k) in self.0.fields() {
                    m.serialize_entry(name, &k.seconds())?;
                }
                m.end()
            }
        }
        struct Frames<'a>(&'a AirtimeByKind);
        impl Serialize for Frames<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(7))?;
                for (name, k) in self.0.fields() {
                    m.serialize_entry(name, &k.frames)?;
                }
                m.end()
            }
        }
        let mut m = serializer.serialize_map(Some(2))?;
        m.serialize_entry(seconds_key, &Seconds(self))?;
        m.serialize_entry(frames_key, &Frames(self))?;
        m.end()
    }
}

impl Serialize for AirtimeByKind {
    /// `{"airtime_by_kind_s": {...}, "frames_by_kind": {...}}`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.serialize_keyed(serializer, "airtime_by_kind_s", "frames_by_kind")
    }
}

/// The unicast baseline's [`AirtimeByKind`]: serialised (flattened) as
/// `"baseline_airtime_by_kind_s"` and `"baseline_frames_by_kind"`. The
/// baseline sends the bundle and the image alike as message frames (its
/// `bundle` counts both) and acknowledges each with a progress frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BaselineAirtimeByKind(pub AirtimeByKind);

impl Serialize for BaselineAirtimeByKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_keyed(
            serializer,
            "baseline_airtime_by_kind_s",
            "baseline_frames_by_kind",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_nibble_lands_in_its_own_field_and_the_total_is_their_sum() {
        let mut k = AirtimeByKind::default();
        // Version 1 in the high nibble, as the codec writes it.
        for (kind, len) in [(1, 20), (2, 30), (3, 222), (4, 222), (5, 40), (6, 222)] {
            k.record(Some(0x10 | kind), len);
        }
        k.record(Some(0x1F), 15);
        k.record(None, 0);
        let f = k.fields();
        assert!(f.iter().all(|(_, t)| t.frames >= 1), "{f:?}");
        assert_eq!(k.other.frames, 2);
        assert_eq!(k.bundle.airtime_us, scenario::airtime_us(222));
        assert_eq!(k.announce.airtime_us, scenario::airtime_us(20));
        let total = k.total();
        assert_eq!(total.frames, 8);
        let sum: u64 = [20, 30, 222, 222, 40, 222, 15, 0]
            .iter()
            .map(|&l| scenario::airtime_us(l))
            .sum();
        assert_eq!(total.airtime_us, sum);
    }

    #[test]
    fn merge_adds_every_field() {
        let mut a = AirtimeByKind::default();
        a.record(Some(0x14), 3);
        let mut b = AirtimeByKind::default();
        b.record(Some(0x14), 3);
        b.record(Some(0x11), 1);
        a.merge(&b);
        assert_eq!(a.symbol.frames, 2);
        assert_eq!(a.announce.frames, 1);
        assert_eq!(a.total().frames, 3);
    }

    #[test]
    fn serialises_as_two_objects_keyed_by_kind() {
        let mut k = AirtimeByKind::default();
        k.record(Some(0x13), 222);
        let v: serde_json::Value = serde_json::to_value(k).unwrap_or_default();
        assert_eq!(v["frames_by_kind"]["bundle"], 1);
        assert_eq!(v["frames_by_kind"]["other"], 0);
        assert!(v["airtime_by_kind_s"]["bundle"].as_f64().unwrap_or(0.0) > 0.0);
        let b = serde_json::to_value(BaselineAirtimeByKind(k)).unwrap_or_default();
        assert_eq!(b["baseline_frames_by_kind"]["bundle"], 1);
    }
}

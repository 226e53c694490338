//! The broadcast bound: the payload sent once by each node of a greedy
//! connected dominating set (CDS) of the usable-link graph that contains
//! the source (Guha and Khuller's first greedy algorithm: grow a tree from
//! the source, each time making black the gray node that covers the most
//! white nodes). Every other node hears the payload from a black
//! neighbour; no scheme that sends whole-payload broadcasts can use fewer
//! than the minimum CDS, and the greedy one is within a log factor of it.

use meshota_radios::frame::OVERHEAD;

use super::scenario::{airtime_us, frame_len};

pub use meshota_radios::backbone::greedy_cds;

/// Airtime (µs) of `payload_bytes` sent once in full frames (every payload
/// byte of a frame used, no symbol header) by each of `senders` nodes.
#[must_use]
pub fn bound_airtime_us(payload_bytes: usize, senders: usize) -> u64 {
    let len = frame_len();
    let per = len.saturating_sub(OVERHEAD).max(1);
    let frames = payload_bytes / per;
    let rest = payload_bytes % per;
    let once = frames as u64 * airtime_us(len)
        + if rest > 0 {
            airtime_us(rest + OVERHEAD)
        } else {
            0
        };
    once * senders as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_scales_with_senders_and_payload() {
        let one = bound_airtime_us(20 * 1024, 1);
        assert!(one > 0);
        assert_eq!(bound_airtime_us(20 * 1024, 5), 5 * one);
        assert!(bound_airtime_us(100 * 1024, 1) > 4 * one);
    }
}

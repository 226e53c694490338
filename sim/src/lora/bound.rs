//! The broadcast bound: the payload sent once by each node of a greedy
//! connected dominating set (CDS) of the usable-link graph that contains
//! the source (Guha and Khuller's first greedy algorithm: grow a tree from
//! the source, each time making black the gray node that covers the most
//! white nodes). Every other node hears the payload from a black
//! neighbour; no scheme that sends whole-payload broadcasts can use fewer
//! than the minimum CDS, and the greedy one is within a log factor of it.

use meshota_radios::frame::OVERHEAD;

use super::scenario::{airtime_us, frame_len};

/// The greedy CDS containing `source`, in the order nodes became black.
/// Nodes unreachable from `source` are left out.
#[must_use]
pub fn greedy_cds(adj: &[Vec<usize>], source: usize) -> Vec<usize> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Colour {
        White,
        Gray,
        Black,
    }
    let n = adj.len();
    if source >= n {
        return Vec::new();
    }
    let mut colour = vec![Colour::White; n];
    let mut black = vec![source];
    colour[source] = Colour::Black;
    for &v in &adj[source] {
        colour[v] = Colour::Gray;
    }
    loop {
        let white_of = |v: usize, colour: &[Colour]| {
            adj[v]
                .iter()
                .filter(|&&u| colour[u] == Colour::White)
                .count()
        };
        let best = (0..n)
            .filter(|&v| colour[v] == Colour::Gray)
            .map(|v| (white_of(v, &colour), v))
            .filter(|&(w, _)| w > 0)
            .max_by_key(|&(w, v)| (w, core::cmp::Reverse(v)));
        let Some((_, v)) = best else {
            break;
        };
        colour[v] = Colour::Black;
        black.push(v);
        for &u in &adj[v] {
            if colour[u] == Colour::White {
                colour[u] = Colour::Gray;
            }
        }
    }
    black
}

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

    fn line(n: usize) -> Vec<Vec<usize>> {
        (0..n)
            .map(|i| {
                let mut v = Vec::new();
                if i > 0 {
                    v.push(i - 1);
                }
                if i + 1 < n {
                    v.push(i + 1);
                }
                v
            })
            .collect()
    }

    #[test]
    fn cds_of_a_line_from_its_end_is_every_node_but_the_last() {
        assert_eq!(greedy_cds(&line(6), 0), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn cds_of_a_star_is_its_centre_and_dominates_every_node() {
        // Centre 1 with leaves 0, 2, 3, 4; the source is leaf 0.
        let adj = vec![vec![1], vec![0, 2, 3, 4], vec![1], vec![1], vec![1]];
        let cds = greedy_cds(&adj, 0);
        assert_eq!(cds, [0, 1]);
        for (v, near) in adj.iter().enumerate() {
            assert!(cds.contains(&v) || near.iter().any(|u| cds.contains(u)));
        }
    }

    #[test]
    fn bound_scales_with_senders_and_payload() {
        let one = bound_airtime_us(20 * 1024, 1);
        assert!(one > 0);
        assert_eq!(bound_airtime_us(20 * 1024, 5), 5 * one);
        assert!(bound_airtime_us(100 * 1024, 1) > 4 * one);
    }
}

//! The testnet's peer graph: a ring plus chords, so releases travel
//! several hops (not a full mesh), the graph stays connected when a link
//! is down, and every node has four peers once the testnet has six nodes
//! or more. Four, not two: on a ring the seed's neighbours share no link,
//! and relays must each upload about the whole image, which kept a capped
//! swarm of 16 at 1.4-3.5 S/U (BENCHMARKS.md, Mesh).

/// The undirected links of an `n`-node testnet as `(dialler, listener)`
/// pairs: the ring `i -> i+1` and, once `n >= 6`, chords `i -> i + s` for
/// every node with `s = max(2, floor(sqrt(n)))` (the circulant graph
/// C_n(1, s): four peers each, diameter about sqrt(n)/2 + 1). Each link
/// appears once, so exactly one side dials it; no self-links.
pub(crate) fn links(n: usize) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut add = |a: usize, b: usize| {
        if a != b
            && !out
                .iter()
                .any(|&(x, y)| (x, y) == (a, b) || (x, y) == (b, a))
        {
            out.push((a, b));
        }
    };
    if n < 2 {
        return Vec::new();
    }
    for i in 0..n {
        add(i, (i + 1) % n);
    }
    if n >= 6 {
        let s = (n.isqrt()).max(2);
        for i in 0..n {
            add(i, (i + s) % n);
        }
    }
    out
}

/// The nodes node `i` dials, given the links of [`links`].
pub(crate) fn dials(links: &[(usize, usize)], i: usize) -> Vec<usize> {
    links
        .iter()
        .filter(|&&(a, _)| a == i)
        .map(|&(_, b)| b)
        .collect()
}

/// The largest hop count between two nodes (breadth-first search from
/// every node), or `None` when the graph is not connected.
pub(crate) fn diameter(n: usize, links: &[(usize, usize)]) -> Option<usize> {
    let mut worst = 0;
    for start in 0..n {
        let mut dist = vec![usize::MAX; n];
        dist[start] = 0;
        let mut queue = std::collections::VecDeque::from([start]);
        while let Some(u) = queue.pop_front() {
            for &(a, b) in links {
                let v = if a == u {
                    b
                } else if b == u {
                    a
                } else {
                    continue;
                };
                if dist[v] == usize::MAX {
                    dist[v] = dist[u] + 1;
                    queue.push_back(v);
                }
            }
        }
        for d in dist {
            if d == usize::MAX {
                return None;
            }
            worst = worst.max(d);
        }
    }
    Some(worst)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_testnet_size_is_connected_without_self_or_duplicate_links() {
        for n in 1..=64 {
            let l = links(n);
            assert!(diameter(n, &l).is_some(), "n = {n}");
            for (i, &(a, b)) in l.iter().enumerate() {
                assert_ne!(a, b);
                assert!(a < n && b < n);
                for &(x, y) in &l[i + 1..] {
                    assert!(
                        (x, y) != (a, b) && (x, y) != (b, a),
                        "n = {n}: {a}-{b} twice"
                    );
                }
            }
        }
    }

    #[test]
    fn eight_nodes_form_a_multi_hop_ring_with_chords_not_a_full_mesh() {
        let l = links(8);
        assert_eq!(l.len(), 8 + 8, "{l:?}");
        let d = diameter(8, &l).unwrap();
        assert!(
            d >= 2,
            "diameter {d}: releases must travel more than one hop"
        );
        assert!(l.len() < 8 * 7 / 2);
    }

    #[test]
    fn sixteen_nodes_have_four_peers_each_and_stay_multi_hop() {
        let l = links(16);
        for i in 0..16 {
            let degree = l.iter().filter(|&&(a, b)| a == i || b == i).count();
            assert_eq!(degree, 4, "node {i}: {l:?}");
        }
        assert_eq!(diameter(16, &l), Some(3));
    }

    #[test]
    fn every_link_is_dialled_by_exactly_one_side() {
        let l = links(8);
        let total: usize = (0..8).map(|i| dials(&l, i).len()).sum();
        assert_eq!(total, l.len());
        assert_eq!(dials(&l, 0), vec![1, 2]);
        assert_eq!(links(2), vec![(0, 1)]);
        assert!(links(1).is_empty());
    }
}

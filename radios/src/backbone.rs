//! Planning a backbone: which nodes of a radio mesh must relay and which
//! can be leaves (`[radio] relay = false`), from the links between them.
//!
//! A broadcast from every node of a *connected dominating set* (CDS) that
//! contains the node a release enters at reaches every node: each other
//! node has a relay among its neighbours, and the relays reach each other.
//! The smaller the set, the less airtime a release costs. Finding the
//! smallest is NP-hard; [`greedy_cds`] is Guha and Khuller's first greedy
//! algorithm (within a logarithmic factor of the smallest), the same set
//! the simulator's broadcast bound counts.

use alloc::vec;
use alloc::vec::Vec;

/// A backbone over nodes `0..n` of an undirected link graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backbone {
    /// Nodes that must relay: the source first, then the rest of the
    /// greedy set in the order it was chosen, then the relays added to
    /// bound detours. Connected, and every reachable node is one of them or
    /// a neighbour of one.
    pub relays: Vec<usize>,
    /// Reachable nodes that need not relay (ascending).
    pub leaves: Vec<usize>,
    /// Nodes no path of links joins to the source (ascending): no plan
    /// reaches them, whatever relays.
    pub unreachable: Vec<usize>,
}

/// The greedy connected dominating set containing `source` over the
/// adjacency lists `adj` (each link listed at both ends), in the order
/// nodes were chosen: grow a tree from `source`, each time choosing the
/// neighbour of the tree that covers the most nodes not yet covered (the
/// lowest index on a tie). Nodes unreachable from `source` are left out;
/// an out-of-range `source` gives an empty set. Indices in `adj` that are
/// out of range are ignored.
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
    let near = |v: usize| adj[v].iter().copied().filter(move |&u| u < n);
    let mut colour = vec![Colour::White; n];
    let mut black = vec![source];
    colour[source] = Colour::Black;
    for u in near(source) {
        if colour[u] == Colour::White {
            colour[u] = Colour::Gray;
        }
    }
    loop {
        let white_of =
            |v: usize, colour: &[Colour]| near(v).filter(|&u| colour[u] == Colour::White).count();
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
        for u in near(v) {
            if colour[u] == Colour::White {
                colour[u] = Colour::Gray;
            }
        }
    }
    black
}

/// Hops from `source` to every node over links in `adj`, relaying only
/// through nodes `through` allows (the source always relays); `None` for
/// nodes no such path reaches. A node is reached when a neighbour that
/// relays is, so non-relays are reached but never passed through.
fn hops(adj: &[Vec<usize>], source: usize, through: impl Fn(usize) -> bool) -> Vec<Option<usize>> {
    let n = adj.len();
    let mut d = vec![None; n];
    let mut queue = alloc::collections::VecDeque::new();
    d[source] = Some(0);
    queue.push_back(source);
    while let Some(v) = queue.pop_front() {
        if v != source && !through(v) {
            continue;
        }
        let next = d[v].map_or(0, |h| h + 1);
        for &u in adj[v].iter().filter(|&&u| u < n) {
            if d[u].is_none() {
                d[u] = Some(next);
                queue.push_back(u);
            }
        }
    }
    d
}

/// The backbone for a release entering at `source`: the relays of
/// [`greedy_cds`], then as few more as it takes for every reachable node
/// to be reached over relays within `max_detour` hops of its shortest
/// path. The greedy set grows as one tree whose branches can detour far
/// (on a 15-wide grid of 200 nodes fed from a corner, a node two hops from
/// the source is 46 relay hops from it); a release waits on the longest
/// branch. Each added path is a shortest path from the node with the
/// largest detour back to the source, through relays where it can.
#[must_use]
pub fn plan(adj: &[Vec<usize>], source: usize, max_detour: usize) -> Backbone {
    let n = adj.len();
    if source >= n {
        return Backbone {
            relays: Vec::new(),
            leaves: Vec::new(),
            unreachable: (0..n).collect(),
        };
    }
    let mut relays = greedy_cds(adj, source);
    let mut is_relay = vec![false; n];
    for &r in &relays {
        is_relay[r] = true;
    }
    let shortest = hops(adj, source, |_| true);
    // Each round makes at least one more node a relay: bounded by n.
    for _ in 0..n {
        let over = hops(adj, source, |v| is_relay[v]);
        let worst = (0..n)
            .filter_map(|v| {
                Some((
                    over[v]?.checked_sub(shortest[v]?.saturating_add(max_detour))?,
                    v,
                ))
            })
            .filter(|&(excess, _)| excess > 0)
            .max_by_key(|&(excess, v)| (excess, core::cmp::Reverse(v)));
        let Some((_, v)) = worst else {
            break;
        };
        // Back along a shortest path, preferring relays, then low indices;
        // a leaf needs a relay one hop nearer, not to relay itself.
        let step = |x: usize, is_relay: &[bool]| {
            let dx = shortest[x]?;
            adj[x]
                .iter()
                .copied()
                .filter(|&u| u < n && shortest[u].is_some_and(|du| du + 1 == dx))
                .min_by_key(|&u| (!is_relay[u], u))
        };
        let mut x = if is_relay[v] {
            v
        } else {
            match step(v, &is_relay) {
                Some(u) => u,
                None => break,
            }
        };
        while x != source {
            if !is_relay[x] {
                is_relay[x] = true;
                relays.push(x);
            }
            let Some(prev) = step(x, &is_relay) else {
                break;
            };
            x = prev;
        }
    }
    let mut covered = vec![false; n];
    for &r in &relays {
        covered[r] = true;
        for &u in adj[r].iter().filter(|&&u| u < n) {
            covered[u] = true;
        }
    }
    let leaves = (0..n).filter(|&v| covered[v] && !is_relay[v]).collect();
    let unreachable = (0..n).filter(|&v| !covered[v]).collect();
    Backbone {
        relays,
        leaves,
        unreachable,
    }
}

/// The most hops any node reachable from `source` is from it when only
/// `relays` pass a release on (the source always does): the longest
/// branch a release waits on.
#[must_use]
pub fn depth(adj: &[Vec<usize>], source: usize, relays: &[usize]) -> usize {
    if source >= adj.len() {
        return 0;
    }
    let mut is_relay = vec![false; adj.len()];
    for &r in relays.iter().filter(|&&r| r < adj.len()) {
        is_relay[r] = true;
    }
    hops(adj, source, |v| is_relay[v])
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0)
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

    /// A `w` × `h` grid, row-major, four neighbours each.
    fn grid(w: usize, h: usize) -> Vec<Vec<usize>> {
        (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                let mut v = Vec::new();
                if x > 0 {
                    v.push(i - 1);
                }
                if x + 1 < w {
                    v.push(i + 1);
                }
                if y > 0 {
                    v.push(i - w);
                }
                if y + 1 < h {
                    v.push(i + w);
                }
                v
            })
            .collect()
    }

    /// Every node is a relay or next to one, and the relays are connected.
    fn assert_connected_dominating(adj: &[Vec<usize>], relays: &[usize]) {
        for (v, near) in adj.iter().enumerate() {
            assert!(
                relays.contains(&v) || near.iter().any(|u| relays.contains(u)),
                "{v} not covered by {relays:?}"
            );
        }
        let mut seen = vec![relays[0]];
        let mut stack = vec![relays[0]];
        while let Some(v) = stack.pop() {
            for &u in &adj[v] {
                if relays.contains(&u) && !seen.contains(&u) {
                    seen.push(u);
                    stack.push(u);
                }
            }
        }
        assert_eq!(seen.len(), relays.len(), "relays {relays:?} not connected");
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
        assert_connected_dominating(&adj, &cds);
    }

    #[test]
    fn a_grid_plan_is_a_connected_dominating_set_with_fewer_relays_than_leaves() {
        let adj = grid(10, 20);
        let b = plan(&adj, 0, usize::MAX);
        assert_eq!(
            b.relays,
            greedy_cds(&adj, 0),
            "no detour bound: the greedy set"
        );
        assert_connected_dominating(&adj, &b.relays);
        assert!(b.unreachable.is_empty());
        assert_eq!(b.relays.len() + b.leaves.len(), 200);
        assert!(b.relays.len() < b.leaves.len(), "{} relays", b.relays.len());
        assert_eq!(b.relays[0], 0, "the source relays first");
    }

    /// The greedy set's tree detours on a grid fed from a corner; the plan
    /// adds a few relays so that no node waits on a branch much longer
    /// than its shortest path.
    #[test]
    fn a_plan_bounds_the_detour_of_the_greedy_tree_for_a_few_more_relays() {
        let adj = grid(15, 13);
        let diameter = 14 + 12;
        let greedy = greedy_cds(&adj, 0);
        assert!(
            depth(&adj, 0, &greedy) > diameter + 10,
            "the greedy tree detours"
        );
        for max_detour in [0, 2] {
            let b = plan(&adj, 0, max_detour);
            assert_connected_dominating(&adj, &b.relays);
            assert!(depth(&adj, 0, &b.relays) <= diameter + max_detour);
            assert_eq!(b.relays[..greedy.len()], greedy[..], "the greedy set first");
        }
        // Two hops of slack cost a few relays; none costs many more.
        let (two, none) = (plan(&adj, 0, 2), plan(&adj, 0, 0));
        assert!(
            two.relays.len() <= greedy.len() * 11 / 10,
            "{} relays against {}",
            two.relays.len(),
            greedy.len()
        );
        assert!(none.relays.len() > two.relays.len());
    }

    #[test]
    fn nodes_no_link_reaches_are_reported_unreachable_not_leaves() {
        // 0 - 1 - 2, and 3 - 4 apart.
        let adj = vec![vec![1], vec![0, 2], vec![1], vec![4], vec![3]];
        let b = plan(&adj, 0, 0);
        assert_eq!(b.relays, [0, 1]);
        assert_eq!(b.leaves, [2]);
        assert_eq!(b.unreachable, [3, 4]);
    }

    #[test]
    fn a_source_out_of_range_or_links_out_of_range_do_not_panic() {
        assert!(greedy_cds(&line(3), 7).is_empty());
        let b = plan(&line(3), 7, 2);
        assert!(b.relays.is_empty() && b.leaves.is_empty());
        assert_eq!(b.unreachable, [0, 1, 2]);
        assert_eq!(depth(&line(3), 7, &[]), 0);
        let b = plan(&[vec![1, 9], vec![0]], 0, 0);
        assert_eq!(b.relays, [0]);
        assert_eq!(b.leaves, [1]);
    }
}

//! Graphs of links. Every builder returns each undirected link once, as
//! `(a, b)` with `a < b`, in a deterministic order, and a graph in which
//! every node is reachable from every other.

use std::collections::BTreeSet;

use crate::options::Topology;
use crate::rng::SimRng;

/// Average degree the random topology aims for (the spanning tree gives 2,
/// extra random links the rest).
pub const RANDOM_DEGREE: usize = 6;

/// The links of `topology` over `n` nodes, drawing from `rng` (random only).
#[must_use]
pub fn links(topology: Topology, n: usize, rng: &mut SimRng) -> Vec<(usize, usize)> {
    let mut set: BTreeSet<(usize, usize)> = BTreeSet::new();
    let add = |a: usize, b: usize, set: &mut BTreeSet<(usize, usize)>| {
        if a != b {
            set.insert((a.min(b), a.max(b)));
        }
    };
    match topology {
        Topology::Line => (1..n).for_each(|i| add(i - 1, i, &mut set)),
        Topology::Ring => {
            (1..n).for_each(|i| add(i - 1, i, &mut set));
            if n > 2 {
                add(n - 1, 0, &mut set);
            }
        }
        Topology::Grid => {
            let w = grid_width(n);
            for i in 0..n {
                if (i + 1) % w != 0 && i + 1 < n {
                    add(i, i + 1, &mut set);
                }
                if i + w < n {
                    add(i, i + w, &mut set);
                }
            }
        }
        Topology::Random => {
            // A random recursive tree over a random order: connected.
            let mut order: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                let j = rng.index(i + 1);
                order.swap(i, j);
            }
            for i in 1..n {
                let parent = order[rng.index(i)];
                add(order[i], parent, &mut set);
            }
            // Extra links up to the target degree, with a bounded number of
            // draws (duplicates are skipped, not retried forever).
            let target = n * RANDOM_DEGREE / 2;
            let draws_max = target.saturating_mul(4);
            let mut draws = 0;
            while set.len() < target && draws < draws_max && n > 2 {
                draws += 1;
                let (a, b) = (rng.index(n), rng.index(n));
                add(a, b, &mut set);
            }
        }
    }
    set.into_iter().collect()
}

/// The width of the grid for `n` nodes: the ceiling of its square root.
#[must_use]
pub fn grid_width(n: usize) -> usize {
    let mut w = 1;
    while w * w < n {
        w += 1;
    }
    w
}

//! What one run simulates: every knob, its bounds, and the command line
//! that replays it.

use core::fmt;
use core::str::FromStr;

use crate::Error;

/// Most nodes in one run.
pub const NODES_MAX: usize = 100_000;
/// Largest image, in KiB (64 MiB).
pub const SIZE_KIB_MAX: u64 = 64 * 1024;
/// Default image size in KiB: a few chunks at the index's fixed chunking
/// parameters (16 KiB average).
pub const SIZE_KIB_DEFAULT: u64 = 256;
/// Virtual time after which a run that has not converged stops (15 min).
pub const VIRTUAL_MS_MAX: u64 = 15 * 60 * 1000;
/// Events processed per node before a run stops (livelock guard).
pub const EVENTS_PER_NODE_MAX: u64 = 50_000;

/// The shape of the graph of links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Topology {
    /// Node i links to i+1.
    Line,
    /// A line closed into a ring.
    Ring,
    /// A square-ish grid, row-major; each node links right and down.
    Grid,
    /// A random spanning tree (connected by construction) plus random extra
    /// links up to an average degree of [`crate::topology::RANDOM_DEGREE`].
    Random,
}

impl Topology {
    /// The name used on the command line.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Line => "line",
            Self::Ring => "ring",
            Self::Grid => "grid",
            Self::Random => "random",
        }
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Topology {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "line" => Ok(Self::Line),
            "ring" => Ok(Self::Ring),
            "grid" => Ok(Self::Grid),
            "random" => Ok(Self::Random),
            other => Err(Error::UnknownTopology(other.into())),
        }
    }
}

/// One run's parameters. Two runs with equal options produce the same
/// trace, byte for byte: every random choice derives from `seed`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Options {
    /// Number of nodes (2..=[`NODES_MAX`]). Node 0 is the honest seed that
    /// holds the release at time zero.
    pub nodes: usize,
    /// The one seed of every random choice.
    pub seed: u64,
    /// The graph of links.
    pub topology: Topology,
    /// Percent of nodes (other than node 0) that are malicious (0..=100).
    pub malicious_percent: u32,
    /// Percent chance that one transmission of a message is lost (0..=90);
    /// see [`crate::net`] for what a loss costs.
    pub loss_percent: u32,
    /// Percent of honest nodes (other than node 0) that crash once and
    /// restart from their store (0..=100).
    pub crash_percent: u32,
    /// Split the nodes in two halves (by index) from
    /// [`crate::net::PARTITION_START_MS`] until
    /// [`crate::net::PARTITION_HEAL_MS`].
    pub partition: bool,
    /// Size of the released image in KiB (1..=[`SIZE_KIB_MAX`]).
    pub size_kib: u64,
}

impl Options {
    /// Defaults for `nodes` and `seed`: random topology, no faults, a
    /// [`SIZE_KIB_DEFAULT`] KiB image.
    #[must_use]
    pub const fn new(nodes: usize, seed: u64) -> Self {
        Self {
            nodes,
            seed,
            topology: Topology::Random,
            malicious_percent: 0,
            loss_percent: 0,
            crash_percent: 0,
            partition: false,
            size_kib: SIZE_KIB_DEFAULT,
        }
    }

    /// Checks every bound.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] naming the option.
    pub fn validate(&self) -> Result<(), Error> {
        let check = |what: &'static str, value: u64, min: u64, max: u64| {
            if value < min || value > max {
                Err(Error::OutOfRange {
                    what,
                    value,
                    min,
                    max,
                })
            } else {
                Ok(())
            }
        };
        check("nodes", self.nodes as u64, 2, NODES_MAX as u64)?;
        check("malicious percent", self.malicious_percent.into(), 0, 100)?;
        check("loss percent", self.loss_percent.into(), 0, 90)?;
        check("crash percent", self.crash_percent.into(), 0, 100)?;
        check("size KiB", self.size_kib, 1, SIZE_KIB_MAX)?;
        Ok(())
    }

    /// The `meshota sim` command line that replays this run exactly.
    #[must_use]
    pub fn replay_command(&self) -> String {
        let mut s = format!(
            "meshota sim --nodes {} --seed {} --topology {}",
            self.nodes, self.seed, self.topology
        );
        if self.malicious_percent > 0 {
            s.push_str(&format!(" --malicious {}", self.malicious_percent));
        }
        if self.loss_percent > 0 {
            s.push_str(&format!(" --loss {}", self.loss_percent));
        }
        if self.crash_percent > 0 {
            s.push_str(&format!(" --crash {}", self.crash_percent));
        }
        if self.partition {
            s.push_str(" --partition");
        }
        if self.size_kib != SIZE_KIB_DEFAULT {
            s.push_str(&format!(" --size {}", self.size_kib));
        }
        s
    }
}

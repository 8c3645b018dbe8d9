//! Quorum systems: which nodes a node asks for permission.
//!
//! A node takes the lock once every member of its quorum has granted it. Mutual
//! exclusion needs only that **any two quorums intersect** (some arbiter is asked by
//! both requesters and grants one at a time); each node being in its own quorum saves
//! it a message. Every system here is checked at construction for both, so a bad
//! system is an error, never a silent split brain.
//!
//! - [`Majority`]: node `i` asks itself and the next `floor(n/2)` nodes cyclically.
//!   Large quorums, but the most failures tolerated.
//! - [`Grid`]: row plus column in a `ceil(sqrt(n))`-wide grid, quorum about
//!   `2*sqrt(n) - 1`.
//! - [`ProjectivePlane`]: a line of PG(2, q) through the node, `q + 1` members for
//!   `n = q*q + q + 1` with `q` prime (7, 13, 31, 57, ...): the smallest quorums.
//! - [`Custom`]: quorums given by the caller, checked the same way.
//! - [`default_for`] picks one by `n`.
//!
//! # Failures
//!
//! A dead member blocks the quorum it is in: a node whose own quorum holds a dead node
//! cannot collect every grant. [`QuorumSystem::live_quorum`] routes around it: it gives
//! the node another quorum of the system whose members are all alive, which is just as
//! safe (it intersects every other quorum). [`QuorumSystem::tolerates`] is the largest
//! `f` such that **any** `f` dead nodes leave such a quorum, so that every live node
//! can still take the lock. It is one less than the fewest nodes that meet every
//! quorum.
//!
//! # Sizes and failures tolerated
//!
//! `K / f`: the largest quorum `K` and the number `f` of dead nodes tolerated, as
//! computed by the code (a unit test checks this table, and the copy in
//! `docs/dlock.md`, against it). A dash: no plane of prime order has `N` points.
//!
//! | N  | majority | grid   | plane | default  |
//! |----|----------|--------|-------|----------|
//! | 3  | 2 / 1    | 3 / 0  | -     | majority |
//! | 5  | 3 / 2    | 4 / 1  | -     | majority |
//! | 7  | 4 / 3    | 5 / 1  | 3 / 2 | majority |
//! | 9  | 5 / 4    | 5 / 2  | -     | majority |
//! | 13 | 7 / 6    | 7 / 2  | 4 / 3 | majority |
//! | 16 | 9 / 7    | 7 / 3  | -     | grid     |
//! | 25 | 13 / 12  | 9 / 4  | -     | grid     |
//! | 31 | 16 / 15  | 11 / 4 | 6 / 5 | plane    |
//! | 49 | 25 / 24  | 13 / 6 | -     | grid     |
//! | 57 | 29 / 28  | 15 / 6 | 8 / 7 | plane    |
//! | 64 | 33 / 31  | 15 / 7 | -     | grid     |
//!
//! # Which system by default
//!
//! [`default_for`] takes a majority below [`GRID_FROM`] (16) nodes, and from 16 on a
//! plane when `n` has one (31, 57, ...), else a grid.
//!
//! - Below 16 a grid's quorum is at most one node smaller than a majority's (9: 5 and
//!   5, 13: 7 and 7, 15: 7 and 8), saving at most 3 messages per lock, while a
//!   majority tolerates at least as many dead nodes, and from 5 nodes on at least
//!   twice as many (9: 4 against 2, 13: 6 against 2).
//! - From 16 the grid's saving grows with `n` (16: 7 against 9, 64: 15 against 33),
//!   and so does the majority's arbiter load: each node arbitrates for more than half
//!   of the cluster, and one dead node sends more than half of the nodes to a
//!   fallback quorum (a grid: `2*sqrt(n) - 1` nodes, a plane: `q + 1`).
//! - A plane beats a grid on both counts where it exists (31: 6 / 5 against 11 / 4).
//!   At 7 and 13 its quorum is smaller than a majority's too (3 against 4, 4 against
//!   7) but it tolerates fewer dead nodes (2 against 3, 3 against 6), so the default
//!   stays with the majority there; build a [`ProjectivePlane`] to trade the other way.

use std::fmt;

mod grid;
mod majority;
mod plane;

pub use grid::Grid;
pub use majority::Majority;
pub use plane::ProjectivePlane;

/// A node's index in the cluster's member list (`0..nodes`).
///
/// # Examples
///
/// ```
/// use shmlink::dlock::quorum::{Majority, NodeId, QuorumSystem};
///
/// let me: NodeId = 2;
/// assert!(Majority::new(3)?.quorum(me).contains(&me));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type NodeId = u16;

/// The most nodes a quorum system here may have.
///
/// The construction check compares every pair of quorums (about `n^3 / 128` word
/// operations with bit sets: some 8 million at 1024), and a majority stores `n^2 / 2`
/// node ids; Maekawa's messages per lock grow with the quorum, so a cluster this size
/// is already beyond what the lock is for. Raising it needs a cheaper check.
///
/// # Examples
///
/// ```
/// use shmlink::dlock::quorum::{Grid, QuorumError, MAX_NODES};
///
/// assert!(Grid::new(MAX_NODES).is_ok());
/// assert_eq!(
///     Grid::new(MAX_NODES + 1).unwrap_err(),
///     QuorumError::TooMany { system: "grid", nodes: MAX_NODES + 1, max: MAX_NODES },
/// );
/// ```
pub const MAX_NODES: usize = 1024;

/// [`default_for`] takes a majority below this many nodes (see the module docs).
///
/// # Examples
///
/// ```
/// use shmlink::dlock::quorum::{default_for, GRID_FROM};
///
/// assert_eq!(default_for(GRID_FROM - 1)?.name(), "majority");
/// assert_eq!(default_for(GRID_FROM)?.name(), "grid");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const GRID_FROM: usize = 16;

/// Every node's quorum (voting set). Any two quorums intersect, and each node is in
/// its own quorum; both are checked when a system is built.
///
/// # Examples
///
/// ```
/// use shmlink::dlock::quorum::{default_for, QuorumSystem};
///
/// let system: Box<dyn QuorumSystem> = default_for(25)?;
/// assert_eq!((system.name(), system.nodes(), system.quorum_size()), ("grid", 25, 9));
/// for a in 0..25 {
///     for b in 0..25 {
///         assert!(system.quorum(a).iter().any(|m| system.quorum(b).contains(m)));
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait QuorumSystem: Send + Sync + fmt::Debug {
    /// Members of the cluster.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::quorum::{Grid, QuorumSystem};
    ///
    /// assert_eq!(Grid::new(10)?.nodes(), 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn nodes(&self) -> usize;

    /// Node `node`'s quorum: sorted, without duplicates, containing `node`.
    ///
    /// # Panics
    ///
    /// Implementations may panic if `node` is not below [`nodes`](Self::nodes); the
    /// ones in this module do. (An empty slice instead would read as "no grants
    /// needed", the one answer a lock must never get by mistake.)
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::quorum::{Majority, QuorumSystem};
    ///
    /// assert_eq!(Majority::new(3)?.quorum(2), &[0, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn quorum(&self, node: NodeId) -> &[NodeId];

    /// A short name (`"majority"`, `"grid"`, `"plane"`, `"custom"`).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::quorum::{ProjectivePlane, QuorumSystem};
    ///
    /// assert_eq!(ProjectivePlane::new(7)?.name(), "plane");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn name(&self) -> &'static str;

    /// The largest quorum's size, `K`: a lock costs `3K` messages uncontended.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::quorum::{Grid, Majority, ProjectivePlane, QuorumSystem};
    ///
    /// assert_eq!(Majority::new(13)?.quorum_size(), 7);
    /// assert_eq!(Grid::new(13)?.quorum_size(), 7);
    /// assert_eq!(ProjectivePlane::new(13)?.quorum_size(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn quorum_size(&self) -> usize {
        node_ids(self.nodes())
            .map(|i| self.quorum(i).len())
            .max()
            .unwrap_or(0)
    }

    /// The largest `f` such that any `f` dead nodes still leave
    /// [`live_quorum`](Self::live_quorum) a quorum whose members are all alive, for
    /// every live node: one less than the fewest nodes that meet every quorum.
    ///
    /// The provided method searches for that fewest number exactly, over the quorums
    /// [`quorum`](Self::quorum) lists. The search branches on the members of a quorum
    /// not yet met, so it costs up to `K^(f+1)` steps: fine for small hand-written
    /// systems. The systems in this module answer by formula instead (each proved in
    /// its docs and checked against the search in the tests). An implementation that
    /// widens [`live_quorum`](Self::live_quorum) beyond the listed quorums must override
    /// this too.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::quorum::{Custom, QuorumSystem};
    ///
    /// // Every quorum holds node 0: one death blocks all of them.
    /// let star = Custom::new(vec![vec![0], vec![0, 1], vec![0, 2]])?;
    /// assert_eq!(star.tolerates(), 0);
    /// // Three nodes, each pair a quorum: any one may die.
    /// let pairs = Custom::new(vec![vec![0, 1], vec![1, 2], vec![0, 2]])?;
    /// assert_eq!(pairs.tolerates(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn tolerates(&self) -> usize {
        fewest_meeting_all(self).saturating_sub(1)
    }

    /// A quorum for `node` whose members are all alive (`alive[m]` for member `m`; ids
    /// past the end of `alive` count as dead), or `None` if there is none.
    ///
    /// The node's own quorum when all of it is alive; else another quorum of the system
    /// (one containing `node` if any is all alive, so that `node` is still one of its
    /// own arbiters). Any quorum returned intersects every quorum any node asks, so the
    /// lock stays safe however nodes fall back. `None` also for a `node` not below
    /// [`nodes`](Self::nodes).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::quorum::{Grid, QuorumSystem};
    ///
    /// // 0 1 2
    /// // 3 4 5
    /// // 6 7 8
    /// let g = Grid::new(9)?;
    /// let mut alive = [true; 9];
    /// assert_eq!(g.live_quorum(4, &alive).as_deref(), Some(&[1, 3, 4, 5, 7][..]));
    /// alive[1] = false;
    /// // Node 4's own row and column hold node 1; it borrows node 3's quorum.
    /// assert_eq!(g.live_quorum(4, &alive).as_deref(), Some(&[0, 3, 4, 5, 6][..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn live_quorum(&self, node: NodeId, alive: &[bool]) -> Option<Vec<NodeId>> {
        if usize::from(node) >= self.nodes() {
            return None;
        }
        let up = |q: &[NodeId]| q.iter().all(|&m| is_alive(alive, m));
        let own = self.quorum(node);
        if up(own) {
            return Some(own.to_vec());
        }
        let mut other = None;
        for j in node_ids(self.nodes()) {
            let q = self.quorum(j);
            if up(q) {
                if q.binary_search(&node).is_ok() {
                    return Some(q.to_vec());
                }
                other.get_or_insert(q);
            }
        }
        other.map(<[NodeId]>::to_vec)
    }
}

/// Why a quorum system could not be built. Display names the system and its size.
///
/// # Examples
///
/// ```
/// use shmlink::dlock::quorum::{Custom, QuorumError};
///
/// let err = Custom::new(vec![vec![0], vec![1]]).unwrap_err();
/// assert_eq!(err, QuorumError::NotIntersecting { system: "custom", nodes: 2, a: 0, b: 1 });
/// assert_eq!(
///     err.to_string(),
///     "custom quorum system of 2 nodes: the quorums of nodes 0 and 1 do not intersect",
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuorumError {
    /// No nodes.
    Empty {
        /// `"majority"`, `"grid"`, `"plane"` or `"custom"`.
        system: &'static str,
    },
    /// More than [`MAX_NODES`] nodes.
    TooMany {
        /// Which system.
        system: &'static str,
        /// Nodes asked for.
        nodes: usize,
        /// [`MAX_NODES`].
        max: usize,
    },
    /// [`ProjectivePlane`] for a count that is not `q*q + q + 1` with `q` prime.
    NotAPlane {
        /// Nodes asked for.
        nodes: usize,
    },
    /// A quorum names a node not below the node count.
    OutOfRange {
        /// Which system.
        system: &'static str,
        /// Nodes in the system.
        nodes: usize,
        /// Whose quorum.
        node: NodeId,
        /// The member out of range.
        member: NodeId,
    },
    /// A node's quorum does not contain the node itself.
    MissingSelf {
        /// Which system.
        system: &'static str,
        /// Nodes in the system.
        nodes: usize,
        /// Whose quorum.
        node: NodeId,
    },
    /// A quorum is not sorted or has a duplicate (a bug in a built-in system;
    /// [`Custom`] sorts its input).
    NotSorted {
        /// Which system.
        system: &'static str,
        /// Nodes in the system.
        nodes: usize,
        /// Whose quorum.
        node: NodeId,
    },
    /// Two quorums share no node: the lock would not be exclusive.
    NotIntersecting {
        /// Which system.
        system: &'static str,
        /// Nodes in the system.
        nodes: usize,
        /// One node, whose quorum...
        a: NodeId,
        /// ...misses this node's quorum.
        b: NodeId,
    },
}

impl fmt::Display for QuorumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            QuorumError::Empty { system } => write!(f, "{system} quorum system of 0 nodes"),
            QuorumError::TooMany { system, nodes, max } => write!(
                f,
                "{system} quorum system of {nodes} nodes: at most {max} are supported"
            ),
            QuorumError::NotAPlane { nodes } => write!(
                f,
                "plane quorum system of {nodes} nodes: not q*q+q+1 for a prime q \
                 (7, 13, 31, 57, ...)"
            ),
            QuorumError::OutOfRange {
                system,
                nodes,
                node,
                member,
            } => write!(
                f,
                "{system} quorum system of {nodes} nodes: node {node}'s quorum names \
                 node {member}, which is not below {nodes}"
            ),
            QuorumError::MissingSelf {
                system,
                nodes,
                node,
            } => write!(
                f,
                "{system} quorum system of {nodes} nodes: node {node}'s quorum leaves \
                 out node {node}"
            ),
            QuorumError::NotSorted {
                system,
                nodes,
                node,
            } => write!(
                f,
                "{system} quorum system of {nodes} nodes: node {node}'s quorum is not \
                 sorted without duplicates"
            ),
            QuorumError::NotIntersecting {
                system,
                nodes,
                a,
                b,
            } => write!(
                f,
                "{system} quorum system of {nodes} nodes: the quorums of nodes {a} and \
                 {b} do not intersect"
            ),
        }
    }
}

impl std::error::Error for QuorumError {}

/// Quorums given by the caller: `quorums[i]` is node `i`'s.
///
/// # Examples
///
/// ```
/// use shmlink::dlock::quorum::{Custom, QuorumSystem};
///
/// // The Fano plane written out by hand, in any order.
/// let fano = Custom::new(vec![
///     vec![0, 1, 3],
///     vec![2, 1, 4],
///     vec![2, 3, 5],
///     vec![3, 4, 6],
///     vec![0, 4, 5],
///     vec![1, 5, 6],
///     vec![0, 2, 6],
/// ])?;
/// assert_eq!(fano.quorum(1), &[1, 2, 4]);
/// assert_eq!(fano.tolerates(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Custom {
    /// The caller's quorums, each sorted and deduplicated.
    table: Table,
}

impl Custom {
    /// Checks `quorums` (after sorting each and dropping duplicates): every member
    /// below `quorums.len()`, node `i` in `quorums[i]`, every two quorums intersecting.
    ///
    /// # Errors
    ///
    /// [`QuorumError::Empty`], [`QuorumError::TooMany`],
    /// [`QuorumError::OutOfRange`], [`QuorumError::MissingSelf`] or
    /// [`QuorumError::NotIntersecting`] (the first pair found), each with system
    /// `"custom"`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::quorum::{Custom, QuorumError};
    ///
    /// assert_eq!(
    ///     Custom::new(vec![vec![0, 1], vec![0]]).unwrap_err(),
    ///     QuorumError::MissingSelf { system: "custom", nodes: 2, node: 1 },
    /// );
    /// assert!(Custom::new(vec![vec![1, 0, 0], vec![0, 1]]).is_ok());
    /// ```
    pub fn new(quorums: Vec<Vec<NodeId>>) -> Result<Self, QuorumError> {
        let n = check_count("custom", quorums.len())?;
        let mut quorums = quorums.into_iter();
        let table = Table::build(n, |_, out| {
            out.extend(quorums.next().unwrap_or_default());
            out.sort_unstable();
            out.dedup();
        });
        table.check("custom")?;
        Ok(Custom { table })
    }
}

impl QuorumSystem for Custom {
    fn nodes(&self) -> usize {
        self.table.nodes()
    }

    fn quorum(&self, node: NodeId) -> &[NodeId] {
        self.table.get("custom", node)
    }

    fn name(&self) -> &'static str {
        "custom"
    }
}

impl fmt::Debug for Custom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Custom")
            .field("nodes", &self.nodes())
            .field("quorum_size", &self.table.max_len())
            .finish_non_exhaustive()
    }
}

/// The default quorum system for `nodes` nodes: a [`Majority`] below [`GRID_FROM`]
/// (16), else a [`ProjectivePlane`] where one exists (31, 57, ...), else a [`Grid`].
///
/// A majority tolerates the most dead nodes, and below 16 a grid saves at most one
/// member per quorum; from 16 the grid's smaller quorums and arbiter load win, and a
/// plane has both smaller quorums and more tolerated deaths than a grid. The module
/// docs give the table and the reasoning.
///
/// # Errors
///
/// [`QuorumError::Empty`] for 0 nodes, [`QuorumError::TooMany`] above [`MAX_NODES`].
///
/// # Examples
///
/// ```
/// use shmlink::dlock::quorum::default_for;
///
/// assert_eq!(default_for(5)?.name(), "majority");
/// assert_eq!(default_for(13)?.name(), "majority");
/// assert_eq!(default_for(31)?.name(), "plane");
/// assert_eq!(default_for(64)?.name(), "grid");
/// assert!(default_for(0).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn default_for(nodes: usize) -> Result<Box<dyn QuorumSystem>, QuorumError> {
    Ok(if nodes < GRID_FROM {
        Box::new(Majority::new(nodes)?)
    } else if ProjectivePlane::exists(nodes) {
        Box::new(ProjectivePlane::new(nodes)?)
    } else {
        Box::new(Grid::new(nodes)?)
    })
}

/// Node ids `0..n` (all of them, as `n <= MAX_NODES`; for foreign implementations the
/// ids that fit in a [`NodeId`]).
fn node_ids(n: usize) -> impl Iterator<Item = NodeId> {
    (0..n).map_while(|i| NodeId::try_from(i).ok())
}

/// `i` as a node id: callers hold `i < n <= MAX_NODES`, well inside `NodeId`.
fn id(i: usize) -> NodeId {
    debug_assert!(i < MAX_NODES);
    i as NodeId
}

/// Whether `alive` marks `m` alive (ids past its end are dead).
fn is_alive(alive: &[bool], m: NodeId) -> bool {
    alive.get(usize::from(m)).copied().unwrap_or(false)
}

/// `n` if a system may have that many nodes.
fn check_count(system: &'static str, n: usize) -> Result<usize, QuorumError> {
    match n {
        0 => Err(QuorumError::Empty { system }),
        n if n > MAX_NODES => Err(QuorumError::TooMany {
            system,
            nodes: n,
            max: MAX_NODES,
        }),
        n => Ok(n),
    }
}

/// The fewest nodes that meet every quorum `system` lists (0 for no nodes), by an exact
/// search: iterative deepening, branching on the members of the smallest quorum not
/// yet met (one of them must be in any set that meets it).
fn fewest_meeting_all<S: QuorumSystem + ?Sized>(system: &S) -> usize {
    let n = system.nodes();
    let quorums: Vec<&[NodeId]> = node_ids(n).map(|i| system.quorum(i)).collect();
    let mut dead = vec![false; n];
    (1..=n)
        .find(|&budget| meets_all(&quorums, &mut dead, budget))
        .unwrap_or(0)
}

/// Whether at most `budget` more dead nodes, on top of `dead`, can meet every quorum.
fn meets_all(quorums: &[&[NodeId]], dead: &mut [bool], budget: usize) -> bool {
    let unmet = quorums
        .iter()
        .filter(|q| !q.iter().any(|&m| dead[usize::from(m)]))
        .min_by_key(|q| q.len());
    let Some(unmet) = unmet else {
        return true;
    };
    if budget == 0 {
        return false;
    }
    for &m in *unmet {
        dead[usize::from(m)] = true;
        let met = meets_all(quorums, dead, budget - 1);
        dead[usize::from(m)] = false;
        if met {
            return true;
        }
    }
    false
}

/// Quorums stored back to back: quorum `i` is `members[ends[i-1]..ends[i]]`.
#[derive(Clone)]
struct Table {
    /// Every quorum's members, quorum 0 first.
    members: Vec<NodeId>,
    /// Where each quorum ends in `members`; one entry per node.
    ends: Vec<usize>,
}

impl Table {
    /// Quorum `i` is what `quorum_of(i, out)` leaves in the empty `out`.
    fn build(n: usize, mut quorum_of: impl FnMut(usize, &mut Vec<NodeId>)) -> Table {
        let (mut members, mut ends, mut out) = (Vec::new(), Vec::with_capacity(n), Vec::new());
        for i in 0..n {
            out.clear();
            quorum_of(i, &mut out);
            members.extend_from_slice(&out);
            ends.push(members.len());
        }
        Table { members, ends }
    }

    fn nodes(&self) -> usize {
        self.ends.len()
    }

    /// Node `node`'s quorum; panics (naming `system`) when `node` is out of range.
    fn get(&self, system: &str, node: NodeId) -> &[NodeId] {
        let i = usize::from(node);
        let n = self.nodes();
        assert!(i < n, "{system}: node {node} is not below {n}");
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.members[start..self.ends[i]]
    }

    fn max_len(&self) -> usize {
        node_ids(self.nodes())
            .map(|i| self.get("", i).len())
            .max()
            .unwrap_or(0)
    }

    /// Every quorum sorted without duplicates, in range and holding its node; then
    /// every pair intersecting, compared as bit sets of `ceil(n / 64)` words.
    fn check(&self, system: &'static str) -> Result<(), QuorumError> {
        let n = self.nodes();
        let words = n.div_ceil(64);
        let mut bits = vec![0u64; n * words];
        for node in node_ids(n) {
            let q = self.get(system, node);
            if q.windows(2).any(|w| w[0] >= w[1]) {
                return Err(QuorumError::NotSorted {
                    system,
                    nodes: n,
                    node,
                });
            }
            if let Some(&member) = q.iter().find(|&&m| usize::from(m) >= n) {
                return Err(QuorumError::OutOfRange {
                    system,
                    nodes: n,
                    node,
                    member,
                });
            }
            if q.binary_search(&node).is_err() {
                return Err(QuorumError::MissingSelf {
                    system,
                    nodes: n,
                    node,
                });
            }
            let row = &mut bits[usize::from(node) * words..][..words];
            for &m in q {
                row[usize::from(m) / 64] |= 1 << (m % 64);
            }
        }
        for a in 0..n {
            let qa = &bits[a * words..][..words];
            for b in a + 1..n {
                let qb = &bits[b * words..][..words];
                if !qa.iter().zip(qb).any(|(x, y)| x & y != 0) {
                    return Err(QuorumError::NotIntersecting {
                        system,
                        nodes: n,
                        a: id(a),
                        b: id(b),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The N of the documented table.
    const TABLE_NODES: [usize; 11] = [3, 5, 7, 9, 13, 16, 25, 31, 49, 57, 64];

    /// One table row's cells as the code computes them: N, then `K / f` for majority,
    /// grid and plane (`-` for none), then the default's name.
    fn computed_row(n: usize) -> Vec<String> {
        let kf = |s: &dyn QuorumSystem| format!("{} / {}", s.quorum_size(), s.tolerates());
        vec![
            n.to_string(),
            kf(&Majority::new(n).unwrap()),
            kf(&Grid::new(n).unwrap()),
            ProjectivePlane::new(n).map_or("-".to_string(), |p| kf(&p)),
            default_for(n).unwrap().name().to_string(),
        ]
    }

    /// The cells of the table rows in `text`: lines that start with `|` once `prefix`
    /// is stripped, and whose first cell is a number.
    fn documented_rows(text: &str, prefix: &str) -> Vec<Vec<String>> {
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix)?.trim().strip_prefix('|'))
            .map(|l| {
                l.trim_end_matches('|')
                    .split('|')
                    .map(|c| c.trim().to_string())
                    .collect()
            })
            .filter(|cells: &Vec<String>| cells[0].parse::<usize>().is_ok())
            .collect()
    }

    /// The module docs' table and the copy in docs/dlock.md both say, row for row,
    /// what the code computes.
    #[test]
    fn documented_table_matches_the_code() {
        let want: Vec<Vec<String>> = TABLE_NODES.iter().map(|&n| computed_row(n)).collect();
        let shown: Vec<String> = want
            .iter()
            .map(|r| format!("| {} |", r.join(" | ")))
            .collect();
        for (file, text, prefix) in [
            ("src/dlock/quorum.rs", include_str!("quorum.rs"), "//! "),
            ("docs/dlock.md", include_str!("../../docs/dlock.md"), ""),
        ] {
            let got = documented_rows(text, prefix);
            assert_eq!(
                got,
                want,
                "{file}: the table should read\n{}",
                shown.join("\n")
            );
        }
    }

    /// Checks a system independently of `Table::check`: each quorum sorted, without
    /// duplicates, in range, holding its node; every pair intersecting (merge walk).
    fn assert_valid(s: &dyn QuorumSystem) {
        let n = s.nodes();
        for i in 0..n {
            let q = s.quorum(id(i));
            assert!(q.windows(2).all(|w| w[0] < w[1]), "{s:?}: {i}: {q:?}");
            assert!(q.iter().all(|&m| usize::from(m) < n), "{s:?}: {i}: {q:?}");
            assert!(q.contains(&id(i)), "{s:?}: {i}: {q:?}");
            for j in i + 1..n {
                assert!(intersect(q, s.quorum(id(j))), "{s:?}: {i} and {j}");
            }
        }
        let largest = (0..n).map(|i| s.quorum(id(i)).len()).max().unwrap();
        assert_eq!(s.quorum_size(), largest, "{s:?}");
    }

    /// Whether two sorted slices share a member.
    fn intersect(a: &[NodeId], b: &[NodeId]) -> bool {
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            match a[i].cmp(&b[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }

    /// `alive` from the low `n` bits of `mask`.
    fn alive_from(n: usize, mask: u64) -> Vec<bool> {
        (0..n).map(|i| mask >> i & 1 == 1).collect()
    }

    /// What `live_quorum` returns for a live node is all alive and intersects every
    /// quorum any node asks; and either every live node gets one or none does.
    fn assert_live_quorums(s: &dyn QuorumSystem, alive: &[bool]) -> bool {
        let n = s.nodes();
        let got: Vec<Option<Vec<NodeId>>> = (0..n)
            .filter(|&i| alive[i])
            .map(|i| s.live_quorum(id(i), alive))
            .collect();
        for q in got.iter().flatten() {
            assert!(q.windows(2).all(|w| w[0] < w[1]), "{s:?}: {q:?}");
            assert!(
                q.iter().all(|&m| is_alive(alive, m)),
                "{s:?}: {alive:?}: {q:?}"
            );
            assert!(
                (0..n).all(|j| intersect(q, s.quorum(id(j)))),
                "{s:?}: {q:?}"
            );
            assert!(got.iter().flatten().all(|other| intersect(q, other)));
        }
        let some = got.iter().filter(|q| q.is_some()).count();
        assert!(some == 0 || some == got.len(), "{s:?}: {alive:?}: {got:?}");
        some > 0
    }

    /// `tolerates` by brute force over every set of dead nodes (`n <= 16`): one less
    /// than the smallest dead set that leaves no live node a live quorum.
    fn tolerates_by_brute_force(s: &dyn QuorumSystem) -> usize {
        let n = s.nodes();
        assert!(n <= 16);
        let fewest = (0..1u64 << n)
            .filter(|&dead| !assert_live_quorums(s, &alive_from(n, !dead)))
            .map(|dead| dead.count_ones() as usize)
            .min()
            .unwrap();
        fewest - 1
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        #[cfg_attr(miri, ignore = "proptest: too slow under Miri")]
        fn majority_quorums_intersect(n in 1usize..=64, mask in any::<u64>()) {
            let m = Majority::new(n).unwrap();
            assert_valid(&m);
            prop_assert!((0..n).all(|i| m.quorum(id(i)).len() == n / 2 + 1));
            // A majority is left exactly when more than half the nodes live.
            let alive = alive_from(n, mask);
            let live = alive.iter().filter(|&&a| a).count();
            let found = assert_live_quorums(&m, &alive);
            prop_assert_eq!(found, live > n / 2);
        }

        #[test]
        #[cfg_attr(miri, ignore = "proptest: too slow under Miri")]
        fn grid_quorums_intersect(n in 1usize..=64, mask in any::<u64>()) {
            let g = Grid::new(n).unwrap();
            assert_valid(&g);
            let w = g.width();
            prop_assert_eq!(w, (1..).find(|w| w * w >= n).unwrap());
            // Row plus column, less the node counted twice.
            for i in 0..n {
                let row = n.min((i / w + 1) * w) - i / w * w;
                let col = (i % w..n).step_by(w).count();
                prop_assert_eq!(g.quorum(id(i)).len(), row + col - 1);
            }
            prop_assert!(g.quorum_size() < 2 * w);
            assert_live_quorums(&g, &alive_from(n, mask));
        }
    }

    #[test]
    fn planes_are_valid() {
        for (n, q) in [(7, 2), (13, 3), (31, 5), (57, 7)] {
            let p = ProjectivePlane::new(n).unwrap();
            assert_valid(&p);
            assert_eq!((p.order(), p.quorum_size()), (q, q + 1));
        }
        for n in [0, 1, 3, 8, 12, 14, 21, 43, 58] {
            let err = ProjectivePlane::new(n).unwrap_err();
            assert!(matches!(
                err,
                QuorumError::NotAPlane { .. } | QuorumError::Empty { .. }
            ));
        }
    }

    #[test]
    fn tolerates_matches_brute_force() {
        for n in 1..=12 {
            let m = Majority::new(n).unwrap();
            assert_eq!(m.tolerates(), tolerates_by_brute_force(&m), "majority {n}");
            let g = Grid::new(n).unwrap();
            assert_eq!(g.tolerates(), tolerates_by_brute_force(&g), "grid {n}");
        }
        let p = ProjectivePlane::new(7).unwrap();
        assert_eq!(p.tolerates(), tolerates_by_brute_force(&p));
        let p = ProjectivePlane::new(13).unwrap();
        assert_eq!(p.tolerates(), tolerates_by_brute_force(&p));
    }

    /// The grid's and the plane's formulas against the provided exact search, where
    /// it is cheap. (A majority's listed windows alone tolerate just 1: it overrides
    /// `live_quorum` to take any majority.)
    #[test]
    fn tolerates_formulas_match_the_search() {
        for n in 1..=36 {
            let g = Grid::new(n).unwrap();
            assert_eq!(g.tolerates(), fewest_meeting_all(&g) - 1, "grid {n}");
        }
        for n in [7, 13, 31] {
            let p = ProjectivePlane::new(n).unwrap();
            assert_eq!(p.tolerates(), fewest_meeting_all(&p) - 1, "plane {n}");
        }
        for n in 3..=12 {
            assert_eq!(
                fewest_meeting_all(&Majority::new(n).unwrap()),
                2,
                "majority {n}"
            );
        }
    }

    #[test]
    fn custom_checks_what_it_is_given() {
        let err = |q: Vec<Vec<NodeId>>| Custom::new(q).unwrap_err();
        assert_eq!(err(vec![]), QuorumError::Empty { system: "custom" });
        assert_eq!(
            err(vec![vec![0]; MAX_NODES + 1]),
            QuorumError::TooMany {
                system: "custom",
                nodes: MAX_NODES + 1,
                max: MAX_NODES
            }
        );
        assert_eq!(
            err(vec![vec![0, 1], vec![1, 2]]),
            QuorumError::OutOfRange {
                system: "custom",
                nodes: 2,
                node: 1,
                member: 2
            }
        );
        assert_eq!(
            err(vec![vec![0, 1], vec![]]),
            QuorumError::MissingSelf {
                system: "custom",
                nodes: 2,
                node: 1
            }
        );
        // Two halves of four nodes: 0 and 1 ask {0, 1}, 2 and 3 ask {2, 3}.
        let halves = vec![vec![0, 1], vec![0, 1], vec![2, 3], vec![2, 3]];
        let e = err(halves);
        assert_eq!(
            e,
            QuorumError::NotIntersecting {
                system: "custom",
                nodes: 4,
                a: 0,
                b: 2
            }
        );
        assert_eq!(
            e.to_string(),
            "custom quorum system of 4 nodes: the quorums of nodes 0 and 2 do not intersect"
        );
        // Unsorted input with duplicates is normalized, then accepted.
        let c = Custom::new(vec![vec![2, 0, 2], vec![1, 0], vec![2, 1]]).unwrap();
        assert_eq!(c.quorum(0), &[0, 2]);
        assert_valid(&c);
        assert_eq!(c.tolerates(), tolerates_by_brute_force(&c));
        // The same quorums as a majority of 5 use: same answers as a brute force.
        let m = Majority::new(5).unwrap();
        let c = Custom::new((0..5).map(|i| m.quorum(i).to_vec()).collect()).unwrap();
        assert_eq!((c.tolerates(), tolerates_by_brute_force(&c)), (1, 1));
    }

    #[test]
    fn check_catches_an_unsorted_built_in() {
        let t = Table::build(2, |i, out| out.extend(if i == 0 { [1, 0] } else { [0, 1] }));
        assert_eq!(
            t.check("grid"),
            Err(QuorumError::NotSorted {
                system: "grid",
                nodes: 2,
                node: 0
            })
        );
    }

    #[test]
    fn errors_name_the_system_and_size() {
        let cases = [
            (
                Majority::new(0).map(drop),
                "majority quorum system of 0 nodes",
            ),
            (
                Grid::new(2000).map(drop),
                "grid quorum system of 2000 nodes: at most 1024 are supported",
            ),
            (
                ProjectivePlane::new(21).map(drop),
                "plane quorum system of 21 nodes: not q*q+q+1 for a prime q (7, 13, 31, 57, ...)",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got.unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn default_rule() {
        for n in 1..GRID_FROM {
            assert_eq!(default_for(n).unwrap().name(), "majority", "{n}");
        }
        // Every size to 64, then every plane size and a few grids (each build checks
        // all pairs, so not all 1024).
        let larger = [100, 133, 183, 307, 381, 500, 553, 871, 993, MAX_NODES];
        for n in (GRID_FROM..=64).chain(larger) {
            let want = if ProjectivePlane::exists(n) {
                "plane"
            } else {
                "grid"
            };
            assert_eq!(default_for(n).unwrap().name(), want, "{n}");
        }
        assert!(matches!(default_for(0), Err(QuorumError::Empty { .. })));
        assert!(matches!(
            default_for(MAX_NODES + 1),
            Err(QuorumError::TooMany { .. })
        ));
    }

    #[test]
    fn debug_is_short() {
        let s = format!("{:?}", default_for(MAX_NODES).unwrap());
        assert_eq!(s, "Grid { nodes: 1024, width: 32, .. }");
        assert_eq!(
            format!("{:?}", ProjectivePlane::new(13).unwrap()),
            "ProjectivePlane { nodes: 13, order: 3, .. }"
        );
    }
}

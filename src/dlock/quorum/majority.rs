//! Majority quorums: each node asks a cyclic window of `floor(n/2) + 1` nodes.

use std::fmt;

use super::{NodeId, QuorumError, QuorumSystem, Table, check_count, id, is_alive};

/// Majority quorums: node `i` asks itself and the next `floor(n/2)` nodes cyclically.
///
/// Quorum size `floor(n/2) + 1`; any two sets that large intersect, since together
/// they hold more than `n` members. The windows are rotations of each other, so every
/// node is in exactly `floor(n/2) + 1` quorums (balanced load).
///
/// When a member of its own window is dead, [`live_quorum`](QuorumSystem::live_quorum)
/// gives a node any `floor(n/2) + 1` live nodes instead (still a majority, so still
/// intersecting every other quorum): the system tolerates `floor((n-1)/2)` dead nodes,
/// the most any quorum system can.
///
/// # Examples
///
/// ```
/// use shmlink::dlock::quorum::{Majority, QuorumSystem};
///
/// let m = Majority::new(5)?;
/// assert_eq!(m.quorum(0), &[0, 1, 2]);
/// assert_eq!(m.quorum(4), &[0, 1, 4]); // 4, 0, 1: cyclic
/// assert_eq!(m.quorum_size(), 3);
/// assert_eq!(m.tolerates(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Majority {
    /// Quorum `i` is `{i, i+1, ..., i + n/2}` mod n, sorted.
    table: Table,
}

impl Majority {
    /// Majority quorums for `nodes` nodes.
    ///
    /// # Errors
    ///
    /// [`QuorumError::Empty`] for 0 nodes, [`QuorumError::TooMany`] above
    /// [`MAX_NODES`](super::MAX_NODES). The construction check cannot fail for a
    /// majority; it runs anyway.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::quorum::{Majority, QuorumError, QuorumSystem};
    ///
    /// assert_eq!(Majority::new(7)?.quorum(5), &[0, 1, 5, 6]);
    /// assert!(matches!(Majority::new(0), Err(QuorumError::Empty { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(nodes: usize) -> Result<Self, QuorumError> {
        let n = check_count("majority", nodes)?;
        let size = n / 2 + 1;
        let table = Table::build(n, |i, out| {
            out.extend((0..size).map(|k| id((i + k) % n)));
            out.sort_unstable();
        });
        table.check("majority")?;
        Ok(Majority { table })
    }
}

impl QuorumSystem for Majority {
    fn nodes(&self) -> usize {
        self.table.nodes()
    }

    fn quorum(&self, node: NodeId) -> &[NodeId] {
        self.table.get("majority", node)
    }

    fn name(&self) -> &'static str {
        "majority"
    }

    fn quorum_size(&self) -> usize {
        self.nodes() / 2 + 1
    }

    /// `floor((n-1)/2)`: any `n - (floor(n/2) + 1)` dead nodes leave a majority alive,
    /// one more leaves none.
    fn tolerates(&self) -> usize {
        (self.nodes() - 1) / 2
    }

    /// The node's own window if all of it is alive, else the first `floor(n/2) + 1` live
    /// nodes counting cyclically from `node` (itself first, if alive).
    fn live_quorum(&self, node: NodeId, alive: &[bool]) -> Option<Vec<NodeId>> {
        let n = self.nodes();
        let start = usize::from(node);
        if start >= n {
            return None;
        }
        let own = self.quorum(node);
        if own.iter().all(|&m| is_alive(alive, m)) {
            return Some(own.to_vec());
        }
        let mut picked: Vec<NodeId> = (0..n)
            .map(|k| id((start + k) % n))
            .filter(|&m| is_alive(alive, m))
            .take(self.quorum_size())
            .collect();
        if picked.len() < self.quorum_size() {
            return None;
        }
        picked.sort_unstable();
        Some(picked)
    }
}

impl fmt::Debug for Majority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Majority")
            .field("nodes", &self.nodes())
            .field("quorum_size", &self.quorum_size())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_cyclic_and_balanced() {
        let m = Majority::new(4).unwrap();
        assert_eq!(m.quorum(0), &[0, 1, 2]);
        assert_eq!(m.quorum(3), &[0, 1, 3]);
        // Every node is in exactly floor(n/2) + 1 quorums.
        for n in 1..=20 {
            let m = Majority::new(n).unwrap();
            let mut load = vec![0; n];
            for i in 0..n {
                for &x in m.quorum(id(i)) {
                    load[usize::from(x)] += 1;
                }
            }
            assert!(load.iter().all(|&l| l == n / 2 + 1), "n = {n}: {load:?}");
        }
    }

    #[test]
    fn live_quorum_routes_around_the_dead() {
        let m = Majority::new(5).unwrap();
        // Node 0's window is 0, 1, 2; with 1 dead it takes 0, 2, 3.
        let alive = [true, false, true, true, true];
        assert_eq!(m.live_quorum(0, &alive), Some(vec![0, 2, 3]));
        // Three dead: no majority left.
        let alive = [true, false, false, false, true];
        assert_eq!(m.live_quorum(0, &alive), None);
        // Out of range, or a short `alive` (the rest count as dead).
        assert_eq!(m.live_quorum(5, &[true; 5]), None);
        assert_eq!(m.live_quorum(3, &[true, true, true]), Some(vec![0, 1, 2]));
    }

    #[test]
    #[should_panic(expected = "majority: node 3 is not below 3")]
    fn quorum_out_of_range_panics() {
        let _ = Majority::new(3).unwrap().quorum(3);
    }
}

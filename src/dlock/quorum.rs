//! Quorum systems: which nodes a node asks for permission.

use std::fmt;

/// A node's index in the cluster's member list (`0..nodes`).
pub type NodeId = u16;

/// Every node's quorum (voting set). Any two quorums intersect, and each node is in
/// its own quorum; both are checked when a system is built.
pub trait QuorumSystem: Send + Sync + fmt::Debug {
    /// Members of the cluster.
    fn nodes(&self) -> usize;

    /// Node `node`'s quorum: sorted, without duplicates, containing `node`.
    ///
    /// # Panics
    ///
    /// Implementations may panic if `node` is not below [`nodes`](Self::nodes).
    fn quorum(&self, node: NodeId) -> &[NodeId];

    /// A short name (`"majority"`, `"grid"`, `"plane"`).
    fn name(&self) -> &'static str;
}

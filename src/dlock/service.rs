//! The two RPC services of a lock node: [`Peer`] between the nodes of a cluster, and
//! [`Local`] for the processes on the node's host.
//!
//! How the protocol's messages map onto calls (see docs/dlock.md, "Over RPC"):
//!
//! - `request` is a server stream per (arbiter, attempt): it carries the first
//!   `Request`, and the arbiter answers `Locked`, `Failed` and `Inquire` for that
//!   attempt on it. The stream ends when the attempt is released, after two leases,
//!   or when the connection breaks; a broken stream is not a withdrawal (the holder
//!   may still count on the vote, which then lapses with its lease).
//! - `refresh` (a retransmitted or keep-alive `Request` while the stream is open),
//!   `relinquish` (yield), `release`, `fence` and `renew` are unary calls; `fence` and
//!   `renew` answer with the arbiter's `FenceAck`, if it acknowledged.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::FencingToken;
use super::protocol::{Msg, MsgKind};

/// Why a peer or local call was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum NodeError {
    /// The message's kind does not belong to the method it came with.
    WrongKind {
        /// The method.
        method: String,
        /// The kind that came.
        kind: String,
    },
    /// The message is not for this node, or belongs to another configuration epoch.
    NotForThisNode {
        /// The addressee named in the message.
        to: u16,
        /// The epoch named in the message.
        epoch: u64,
    },
    /// The lock is not held through this connection.
    NotHeld {
        /// The lock.
        lock: String,
    },
    /// The node is stopping, or its state file failed and it stopped granting.
    Stopped {
        /// Why.
        reason: String,
    },
    /// Another attempt of this host on the lock is still on (a client that skipped
    /// the host's Bakery lock, or one that just left, whose lock runs out within a
    /// lease): ask again shortly. [`DistLock`](super::DistLock) does.
    Busy {
        /// The lock.
        lock: String,
    },
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongKind { method, kind } => {
                write!(f, "dlock method {method} cannot carry a {kind} message")
            }
            Self::NotForThisNode { to, epoch } => write!(
                f,
                "dlock message for node {to} of epoch {epoch} reached another node or epoch"
            ),
            Self::NotHeld { lock } => write!(f, "lock {lock} is not held by this client"),
            Self::Stopped { reason } => write!(f, "the lock node stopped: {reason}"),
            Self::Busy { lock } => write!(f, "lock {lock}: another attempt of this host is on"),
        }
    }
}

impl std::error::Error for NodeError {}

impl NodeError {
    pub(crate) fn wrong_kind(method: &str, kind: MsgKind) -> Self {
        Self::WrongKind {
            method: method.into(),
            kind: kind.name().into(),
        }
    }
}

/// What the node tells a local client about its attempt on a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum LockEvent {
    /// Granted with `token`, valid until `valid_until` on the host's monotonic clock
    /// (`CLOCK_BOOTTIME` in nanoseconds, as [`monotonic_now`](super::monotonic_now)
    /// reads it: the same for every process of the host).
    Granted {
        /// The fencing token.
        token: FencingToken,
        /// The end of the validity.
        valid_until: u64,
    },
    /// A renewal moved the end of the validity.
    Renewed {
        /// The new end of the validity.
        valid_until: u64,
    },
    /// The lock was lost: the holder must stop acting on it.
    Lost {
        /// Whether the lease ran out (`false`: an arbiter revoked the vote).
        expired: bool,
    },
}

/// One lock of a node, as `shmlink ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LockInfo {
    /// The lock's name (as the local client gave it).
    pub name: String,
    /// `waiting`, `fencing` or `held`.
    pub state: String,
    /// The fencing token, once fencing or held.
    pub token: Option<u64>,
    /// Votes held while waiting, of how many.
    pub votes: Option<(u32, u32)>,
    /// Nanoseconds of validity left, when held.
    pub valid_for_ns: Option<u64>,
    /// The local client's process id, when one holds or waits through this node.
    pub pid: Option<u32>,
}

/// A node's counters, as `shmlink ls` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeStatus {
    /// This node.
    pub node: u16,
    /// Its incarnation.
    pub incarnation: u64,
    /// The configuration epoch.
    pub epoch: u64,
    /// The highest fencing token it acknowledged (or its restored reservation).
    pub high_water: u64,
    /// Protocol messages sent to other nodes.
    pub sent: u64,
    /// Protocol messages received from other nodes.
    pub received: u64,
    /// Messages dropped because no connection or stream took them.
    pub undelivered: u64,
    /// Locks granted to this node.
    pub granted: u64,
    /// Held locks lost.
    pub lost: u64,
    /// This node's attempts, by lock.
    pub locks: Vec<LockInfo>,
}

/// An acquisition request of a local client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcquireArgs {
    /// The lock's name.
    pub name: String,
    /// The client's process id (shown by `shmlink ls`).
    pub pid: u32,
    /// A number the client chose for this attempt, which its `release` must name.
    pub key: u64,
}

/// A local client's release of the attempt it started with `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseArgs {
    /// The lock's name.
    pub name: String,
    /// The attempt's key (see [`AcquireArgs::key`]).
    pub key: u64,
}

crate::service! {
    /// Between the nodes of a cluster: the protocol's messages (see the module docs).
    pub trait Peer {
        client PeerClient;
        server PeerServer;
        error NodeError;
        /// A `Request`: opens the stream of the arbiter's answers for this attempt.
        stream fn request(msg: Msg) -> Msg;
        /// A retransmitted or keep-alive `Request` while its stream is open.
        fn refresh(msg: Msg) -> ();
        /// A `Relinquish` (yield).
        fn relinquish(msg: Msg) -> ();
        /// A `Release`; also ends the attempt's stream.
        fn release(msg: Msg) -> ();
        /// A `Fence`; answers with the `FenceAck`, if the arbiter acknowledged.
        fn fence(msg: Msg) -> Option<Msg>;
        /// A `Renew`; answers with the `FenceAck`, if the arbiter acknowledged.
        fn renew(msg: Msg) -> Option<Msg>;
    }
}

crate::service! {
    /// For the processes of the node's host.
    pub trait Local {
        client LocalClient;
        server LocalServer;
        error NodeError;
        /// Asks the node to take a lock: a stream of what happens to the attempt.
        /// Dropping the stream (or dying) withdraws the attempt or releases the lock.
        stream fn acquire(args: AcquireArgs) -> LockEvent;
        /// Releases a lock held (or withdraws one requested) through `acquire`.
        fn release(args: ReleaseArgs) -> ();
        /// The holder is alive: its client answers every `Granted` and `Renewed` with
        /// this. A holder that does not (paused, stuck) is no longer renewed, so its
        /// lock runs out with its validity and can go to another host.
        fn keepalive(args: ReleaseArgs) -> ();
        /// The node's state, for `shmlink ls`.
        fn status(unit: ()) -> NodeStatus;
    }
}

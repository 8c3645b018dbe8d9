//! What travels between nodes: the envelope ([`Msg`]), its bodies ([`Body`]), and the
//! identifiers they carry.

use serde::{Deserialize, Serialize};

use crate::dlock::quorum::NodeId;

/// A reading of one node's own monotonic clock, in nanoseconds; also used for spans.
///
/// The protocol core never reads a clock: the driver passes a `Nanos` with every call.
/// Readings of different nodes are never compared, so their origins need not agree;
/// only their rates must stay within the configured drift
/// ([`Config::epsilon_ppm`](super::Config::epsilon_ppm)).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Nanos(pub u64);

impl Nanos {
    /// The reading `ns` nanoseconds later (saturating).
    #[must_use]
    pub const fn after(self, ns: u64) -> Nanos {
        Nanos(self.0.saturating_add(ns))
    }

    /// Nanoseconds from `earlier` to `self` (0 if `earlier` is later).
    #[must_use]
    pub const fn since(self, earlier: Nanos) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A lock's name on the wire: a 64-bit FNV-1a hash of its text, so that every node
/// derives the same value without a registry. Two names that collide share one lock,
/// which costs concurrency, never exclusion.
///
/// # Examples
///
/// ```
/// use shmlink::dlock::protocol::LockName;
///
/// assert_eq!(LockName::new("jobs"), LockName::new("jobs"));
/// assert_ne!(LockName::new("jobs"), LockName::new("mail"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LockName(pub u64);

impl LockName {
    /// The name of the lock called `name`.
    #[must_use]
    pub const fn new(name: &str) -> LockName {
        // FNV-1a, 64 bit: stable across processes, versions and platforms (unlike
        // std's hasher).
        let bytes = name.as_bytes();
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut i = 0;
        while i < bytes.len() {
            hash ^= bytes[i] as u64;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            i += 1;
        }
        LockName(hash)
    }
}

/// One acquisition attempt: the requesting node, its incarnation (raised at every
/// start of the node) and a sequence number within the incarnation. Every message
/// about a request names it, so that each handler is idempotent and messages about an
/// older attempt are recognised as stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId {
    /// The requesting node.
    pub node: NodeId,
    /// The requesting node's incarnation.
    pub incarnation: u64,
    /// The attempt's number within the incarnation (from 1).
    pub seq: u64,
}

/// The envelope of every message.
///
/// `clock` is the sender's Lamport clock when it sent the message: receivers advance
/// their own past it, so a node that waited long is eventually older (higher priority)
/// than every new request. `incarnation` is the sender's: a receiver that sees a newer
/// one knows the node restarted, and drops what it held for the older one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Msg {
    /// The cluster's configuration epoch; nodes of different epochs refuse each other.
    pub epoch: u64,
    /// The sender.
    pub from: NodeId,
    /// The sender's incarnation.
    pub incarnation: u64,
    /// The addressee.
    pub to: NodeId,
    /// The sender's Lamport clock.
    pub clock: u64,
    /// Which lock the message is about.
    pub lock: LockName,
    /// What it says.
    pub body: Body,
}

/// What a message says. Requester to arbiter: `Request`, `Relinquish`, `Fence`,
/// `Renew`, `Release`; arbiter to requester: `Locked`, `Failed`, `Inquire`,
/// `FenceAck`.
///
/// `stamp` is the arbiter's grant counter (raised at every grant it makes, across all
/// locks), so that a requester can tell an old answer overtaken by a newer one on a
/// network that reorders, and an arbiter can tell which of its grants a `Relinquish`
/// gives back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Body {
    /// Asks for the arbiter's vote, with priority `(ts, id)` (lower first). Also sent
    /// again as a retransmission and, while waiting, as a keep-alive.
    Request {
        /// The attempt.
        id: RequestId,
        /// The requester's Lamport timestamp for the attempt.
        ts: u64,
    },
    /// The arbiter's vote is the requester's; `high_water` is the highest fencing
    /// token the arbiter has acknowledged.
    Locked {
        /// The attempt.
        id: RequestId,
        /// The arbiter's fencing high-water mark when it granted.
        high_water: u64,
        /// The grant's number at the arbiter.
        stamp: u64,
    },
    /// The requester does not have the arbiter's vote and waits behind a request of
    /// higher priority (or has lost the vote it had).
    Failed {
        /// The attempt.
        id: RequestId,
        /// The arbiter's grant counter when it answered.
        stamp: u64,
    },
    /// A request of higher priority waits for the vote granted as `stamp`: give it
    /// back if you cannot complete.
    Inquire {
        /// The attempt.
        id: RequestId,
        /// The grant asked about.
        stamp: u64,
    },
    /// The requester gives back the vote granted as `stamp` and keeps waiting.
    Relinquish {
        /// The attempt.
        id: RequestId,
        /// The grant given back.
        stamp: u64,
    },
    /// The requester holds every vote of its quorum and will use `token`; the arbiter
    /// raises its high-water mark to it and starts the lease.
    Fence {
        /// The attempt.
        id: RequestId,
        /// The fencing token.
        token: u64,
        /// The requester's confirmation round (see `FenceAck`).
        round: u64,
    },
    /// The arbiter acknowledged the `Fence` or `Renew` of `round` for `token`.
    ///
    /// Every fencing attempt and every renewal of an attempt has a new round, so that
    /// an acknowledgement delayed from an earlier one (possibly for a vote that lapsed
    /// since) is never taken for the current one: the holder's validity counts from the
    /// send time of the very round acknowledged.
    FenceAck {
        /// The attempt.
        id: RequestId,
        /// The fencing token acknowledged.
        token: u64,
        /// The round acknowledged.
        round: u64,
    },
    /// The holder renews its lease.
    Renew {
        /// The attempt.
        id: RequestId,
        /// The holder's fencing token.
        token: u64,
        /// The requester's confirmation round.
        round: u64,
    },
    /// The requester is done (or gave up): the arbiter frees the vote and forgets the
    /// request.
    Release {
        /// The attempt.
        id: RequestId,
    },
}

impl Body {
    /// The message's kind, for counting.
    #[must_use]
    pub const fn kind(&self) -> MsgKind {
        match self {
            Body::Request { .. } => MsgKind::Request,
            Body::Locked { .. } => MsgKind::Locked,
            Body::Failed { .. } => MsgKind::Failed,
            Body::Inquire { .. } => MsgKind::Inquire,
            Body::Relinquish { .. } => MsgKind::Relinquish,
            Body::Fence { .. } => MsgKind::Fence,
            Body::FenceAck { .. } => MsgKind::FenceAck,
            Body::Renew { .. } => MsgKind::Renew,
            Body::Release { .. } => MsgKind::Release,
        }
    }

    /// The attempt the message is about.
    #[must_use]
    pub const fn id(&self) -> RequestId {
        match *self {
            Body::Request { id, .. }
            | Body::Locked { id, .. }
            | Body::Failed { id, .. }
            | Body::Inquire { id, .. }
            | Body::Relinquish { id, .. }
            | Body::Fence { id, .. }
            | Body::FenceAck { id, .. }
            | Body::Renew { id, .. }
            | Body::Release { id } => id,
        }
    }
}

/// The kinds of [`Body`], to count messages by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[allow(missing_docs)] // the variants are the bodies of the same name
pub enum MsgKind {
    Request,
    Locked,
    Failed,
    Inquire,
    Relinquish,
    Fence,
    FenceAck,
    Renew,
    Release,
}

impl MsgKind {
    /// Every kind, in declaration order.
    pub const ALL: [MsgKind; 9] = [
        MsgKind::Request,
        MsgKind::Locked,
        MsgKind::Failed,
        MsgKind::Inquire,
        MsgKind::Relinquish,
        MsgKind::Fence,
        MsgKind::FenceAck,
        MsgKind::Renew,
        MsgKind::Release,
    ];

    /// The kind's name (`"Request"`, ...).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            MsgKind::Request => "Request",
            MsgKind::Locked => "Locked",
            MsgKind::Failed => "Failed",
            MsgKind::Inquire => "Inquire",
            MsgKind::Relinquish => "Relinquish",
            MsgKind::Fence => "Fence",
            MsgKind::FenceAck => "FenceAck",
            MsgKind::Renew => "Renew",
            MsgKind::Release => "Release",
        }
    }

    /// Whether requesters send this kind (the others are arbiters' answers).
    #[must_use]
    pub const fn to_arbiter(self) -> bool {
        matches!(
            self,
            MsgKind::Request
                | MsgKind::Relinquish
                | MsgKind::Fence
                | MsgKind::Renew
                | MsgKind::Release
        )
    }
}

/// Message counts by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounts([u64; 9]);

impl KindCounts {
    /// Messages of `kind`.
    #[must_use]
    pub const fn get(&self, kind: MsgKind) -> u64 {
        self.0[kind as usize]
    }

    /// Messages of every kind.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub(super) fn bump(&mut self, kind: MsgKind) {
        self.0[kind as usize] += 1;
    }
}

impl std::ops::AddAssign for KindCounts {
    fn add_assign(&mut self, other: KindCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

//! The sans-IO protocol core of the distributed lock: Maekawa's quorum algorithm with
//! FAILED/INQUIRE/RELINQUISH, leases, and fencing tokens acknowledged by a quorum.
//!
//! A [`Node`] is a state machine. It never reads a clock, sleeps, or touches a socket:
//! the driver feeds it messages ([`Node::handle`]), requests ([`Node::acquire`],
//! [`Node::release`], [`Node::cancel`]) and timer ticks ([`Node::tick`] at
//! [`Node::next_deadline`]), each with a reading of the node's own monotonic clock
//! ([`Nanos`]), optionally what it knows of peers ([`Node::set_alive`]), and applies
//! what it [drains](Node::drain), **in order**:
//!
//! - [`Out::Send`]: a message for another node (messages a node sends itself, as a
//!   member of the quorum it asks, are looped back inside the core);
//! - [`Out::Persist`]: write the fencing high-water mark to stable storage, and finish
//!   before acting on any later output (a later `Send` may acknowledge a token the mark
//!   covers);
//! - [`Out::Granted`] and [`Out::Lost`]: tell the local user.
//!
//! The same code runs in the seeded simulator (`tests/dlock_sim.rs`) and over real
//! transports.
//!
//! # The protocol
//!
//! Each node is both a *requester* and an *arbiter*, for any node that asks it.
//!
//! 1. The requester picks a quorum for the attempt: its own, unless it suspects a
//!    member of it (item 7); then another quorum of the system whose members it believes
//!    up ([`QuorumSystem::live_quorum`]), or its own if there is none. It sends
//!    `Request{id, ts}` to that quorum, with priority `(ts, id)` (`ts` a Lamport
//!    timestamp; lower is first).
//! 2. An arbiter gives its single vote per lock to one request (`Locked`, carrying its
//!    fencing high-water mark) and queues the others. It answers a request that waits
//!    behind one of higher priority with `Failed`; when a request outranks the one it
//!    voted for, it asks that one to give the vote back (`Inquire`). A requester gives
//!    it back (`Relinquish`) if it cannot complete anyway (it got a `Failed`, or gave a
//!    vote back already and has not got it again); it ignores `Inquire` once it holds
//!    every vote. This resolves the deadlock of the original 1985 algorithm. An arbiter
//!    that cannot vote yet (its lock-delay, item 5) or whose vote went to a holder that
//!    fenced (which keeps it until it releases) answers a request with `Failed` too, so
//!    that a live arbiter always answers.
//! 3. With every vote of the attempt's quorum, the requester picks
//!    `token = 1 + max(high-water marks)` (never below a token it fenced before in the
//!    same attempt) and sends `Fence{token, round}`. An arbiter acknowledges (`FenceAck`) only for its
//!    current vote and only a token above its mark when it voted, after raising its
//!    mark (and persisting it, in blocks of [`HIGH_WATER_BLOCK`]). Since quorums
//!    intersect, tokens strictly increase from holder to holder. With an
//!    acknowledgement of the current round from every member the lock is
//!    [`Granted`](Out::Granted). (Each fencing attempt and each renewal has a new
//!    round, so a late acknowledgement of an earlier attempt never counts.)
//! 4. **Leases.** An arbiter's vote lapses a lease `L` (on its own clock) after the
//!    last `Fence`/`Renew` it acknowledged, or, before the fence, after it last heard the
//!    requester; a lapsed vote goes to the next request. The holder counts the lock valid
//!    until the earliest *send* time of an acknowledged `Fence`/`Renew` plus
//!    `L * (1 - eps) / (1 + eps)` on its own clock, renews every `L / 3`, and reports
//!    [`Lost`](Out::Lost) when validity runs out (or an arbiter says the vote is gone).
//! 5. **Lock-delay.** A node grants nothing for `L` after it starts, so that votes it
//!    gave before a restart, and forgot, lapse first.
//! 6. `Release` frees the votes. Requesters retransmit unanswered messages (backing
//!    off from the retransmit interval to `L / 3`) and keep waiting requests alive every
//!    `L / 2`; arbiters re-send `Inquire` to a voted-for requester while a higher
//!    priority waits, and `Locked`, as a probe, every `L / 3` while a lower one waits.
//!    A requester answers `Locked` or `Inquire` for an attempt it no longer has, or
//!    from a node no longer in the attempt's quorum, with `Release`. Every handler is
//!    idempotent per [`RequestId`], and arbiters number their votes (`stamp`), so
//!    duplicated, reordered and lost messages only cost time.
//! 7. **Dead members.** A requester suspects a member of an attempt's quorum that
//!    leaves the attempt's questions (`Request`, `Fence`, `Renew`) unanswered, with no
//!    message of any kind from it, for a lease `L`; any message from the member's
//!    current incarnation clears the suspicion (so does [`Node::set_alive`]). A waiting
//!    attempt with a suspected member moves to the quorum `live_quorum` gives under
//!    these suspicions, if that is another: `Release` to the members it leaves (freeing
//!    a vote they gave it), `Request` with the same id and priority to those it joins;
//!    the votes of members in both are kept. A fencing attempt whose suspected member
//!    has not acknowledged goes back to waiting first (nobody relies on a token the
//!    whole quorum has not acknowledged). A held attempt never moves: its renewals
//!    fail, the lease ends it, and the next attempt starts on a live quorum. If no
//!    quorum is believed up, more nodes are suspected than the system tolerates, so some
//!    suspicions are likely wrong: those of nodes no attempt asks (which nothing would
//!    clear) are forgotten.
//!
//!    Why `L`: a live arbiter answers every question, and a requester asks again at
//!    least every `L / 2` (retransmissions back off to `L / 3`, keep-alives every
//!    `L / 2`), so a reachable member stays silent for `L` only if several messages in a
//!    row are lost. `L` is also how long an arbiter keeps a silent requester's vote or
//!    place, and how long a dead holder's votes take to lapse: suspecting sooner would
//!    mostly wait on those anyway. A wrong suspicion costs a move (at most `2K`
//!    messages), never safety, and ends at the member's next message.
//!
//! # Guarantees
//!
//! Two holders' validity windows never overlap in real time as long as every node's
//! clock rate is within `1 +/- eps` of real time (`eps` = [`Config::epsilon_ppm`]):
//! hence the holder's factor `(1 - eps) / (1 + eps)`, since a slow holder clock and a
//! fast arbiter clock differ by up to `2 eps`. Beyond that, and always for a holder
//! paused past its validity, only a resource that refuses stale fencing tokens is
//! safe. A holder must check [`Node::valid_until`] against a fresh clock reading
//! before each use of the lock.
//!
//! Mutual exclusion does not depend on which quorum a requester asks, only on every
//! quorum of the system meeting every other (checked when it is built) and on each
//! arbiter giving one vote per lock at a time; fencing tokens still rise for the same
//! reason. So arbiters vote for any node, and requesters may move.
//!
//! Liveness needs a live quorum, not a particular one: as long as one exists for a
//! requester, which holds for every node while at most
//! [`tolerates`](QuorumSystem::tolerates) nodes are dead (per the table in
//! `docs/dlock.md`), its requests are eventually granted. A dead member costs a
//! waiting attempt a lease (until it is suspected) and a move; a dead member of a
//! holder's quorum costs the holder the lock at the end of its lease. A requester with
//! no live quorum waits on its own quorum until enough members return (or the cluster
//! is rebuilt under a new epoch); meanwhile it gives back the votes that
//! higher-priority requests ask for, but lower-priority requests that need one of its
//! votes wait with it.
//!
//! # Examples
//!
//! See [`Node`].

mod arbiter;
mod msg;
mod requester;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::dlock::quorum::{NodeId, QuorumSystem};

pub use arbiter::{HIGH_WATER_BLOCK, MAX_TOKEN};
pub use msg::{Body, KindCounts, LockName, Msg, MsgKind, Nanos, RequestId};

use arbiter::Arbiter;
use requester::Requester;

/// A node's static configuration. Every node of a cluster must agree on `epoch`,
/// `quorums`, `lease` and `epsilon_ppm`; a message of another epoch is dropped.
#[derive(Debug, Clone)]
pub struct Config {
    /// The cluster's configuration epoch, carried in every message.
    pub epoch: u64,
    /// This node (an index into the member list).
    pub node: NodeId,
    /// Every node's quorum.
    pub quorums: Arc<dyn QuorumSystem>,
    /// The lease `L`: how long a vote outlives the holder's last renewal, and how long
    /// a starting node grants nothing.
    pub lease: Duration,
    /// The bound on every clock's rate error, in parts per million (10 000 = 1%).
    pub epsilon_ppm: u32,
    /// How long a requester waits for an answer before sending again (doubling up to
    /// `lease / 3`), and how often an arbiter re-sends `Inquire` at first.
    pub retransmit: Duration,
}

impl Config {
    /// The default lease.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);
    /// The default clock drift bound, 1% (the drift factor Redlock implementations use).
    pub const DEFAULT_EPSILON_PPM: u32 = 10_000;
    /// The default retransmission interval.
    pub const DEFAULT_RETRANSMIT: Duration = Duration::from_millis(200);
    /// The largest drift bound accepted (10%).
    pub const MAX_EPSILON_PPM: u32 = 100_000;

    /// A configuration with the default lease, drift bound and retransmission interval.
    #[must_use]
    pub fn new(epoch: u64, node: NodeId, quorums: Arc<dyn QuorumSystem>) -> Config {
        Config {
            epoch,
            node,
            quorums,
            lease: Self::DEFAULT_LEASE,
            epsilon_ppm: Self::DEFAULT_EPSILON_PPM,
            retransmit: Self::DEFAULT_RETRANSMIT,
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let nodes = self.quorums.nodes();
        if nodes == 0 || nodes > usize::from(NodeId::MAX) + 1 {
            return Err(ConfigError::BadQuorumSystem { node: None });
        }
        if usize::from(self.node) >= nodes {
            return Err(ConfigError::NodeOutOfRange {
                node: self.node,
                nodes,
            });
        }
        for n in 0..nodes {
            let n = n as NodeId; // nodes <= NodeId::MAX + 1, checked above
            let q = self.quorums.quorum(n);
            if q.is_empty() || q.iter().any(|&m| usize::from(m) >= nodes) {
                return Err(ConfigError::BadQuorumSystem { node: Some(n) });
            }
        }
        if !self.quorums.quorum(self.node).contains(&self.node) {
            return Err(ConfigError::NotInOwnQuorum { node: self.node });
        }
        let lease = nanos(self.lease);
        if lease < 3 {
            return Err(ConfigError::LeaseTooShort);
        }
        let retransmit = nanos(self.retransmit);
        if retransmit == 0 || retransmit > lease / 3 {
            return Err(ConfigError::RetransmitOutOfRange);
        }
        if self.epsilon_ppm > Self::MAX_EPSILON_PPM {
            return Err(ConfigError::EpsilonTooLarge {
                ppm: self.epsilon_ppm,
            });
        }
        Ok(())
    }
}

/// A [`Config`] that [`Node::new`] refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `node` is not below the number of nodes.
    NodeOutOfRange {
        /// The configured node.
        node: NodeId,
        /// Members of the cluster.
        nodes: usize,
    },
    /// The quorum system has no nodes or too many, or `node`'s quorum is empty or names
    /// a node out of range.
    BadQuorumSystem {
        /// The node whose quorum is wrong, if it is one node's.
        node: Option<NodeId>,
    },
    /// The node is not in its own quorum.
    NotInOwnQuorum {
        /// The configured node.
        node: NodeId,
    },
    /// The lease is shorter than 3 ns.
    LeaseTooShort,
    /// The retransmission interval is zero or longer than a third of the lease.
    RetransmitOutOfRange,
    /// The drift bound is above [`Config::MAX_EPSILON_PPM`].
    EpsilonTooLarge {
        /// The configured bound.
        ppm: u32,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NodeOutOfRange { node, nodes } => {
                write!(f, "node {node} is out of range for a cluster of {nodes}")
            }
            Self::BadQuorumSystem { node: Some(n) } => {
                write!(
                    f,
                    "the quorum of node {n} is empty or names a node out of range"
                )
            }
            Self::BadQuorumSystem { node: None } => {
                f.write_str("the quorum system has no nodes or more than 65536")
            }
            Self::NotInOwnQuorum { node } => write!(f, "node {node} is not in its own quorum"),
            Self::LeaseTooShort => f.write_str("the lease is too short"),
            Self::RetransmitOutOfRange => {
                f.write_str("the retransmission interval must be above zero and at most lease / 3")
            }
            Self::EpsilonTooLarge { ppm } => write!(
                f,
                "a clock drift bound of {ppm} ppm is above the {} ppm accepted",
                Config::MAX_EPSILON_PPM
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// [`Node::acquire`] for a lock this node already requested or holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcquireError {
    /// The attempt under way (or holding).
    pub pending: RequestId,
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the lock is already requested or held by this node (attempt {}/{}/{})",
            self.pending.node, self.pending.incarnation, self.pending.seq
        )
    }
}

impl std::error::Error for AcquireError {}

/// [`Node::release`] of a lock this node does not hold (use [`Node::cancel`] to
/// withdraw a request that was not granted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotHeld;

impl fmt::Display for NotHeld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the lock is not held by this node")
    }
}

impl std::error::Error for NotHeld {}

/// Why a held lock was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LostReason {
    /// The validity ran out before the quorum acknowledged a renewal.
    Expired,
    /// An arbiter answered a renewal saying it no longer holds the vote (it restarted,
    /// or the vote lapsed).
    Revoked,
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Expired => "the lease expired before the quorum renewed it",
            Self::Revoked => "an arbiter no longer holds the vote",
        })
    }
}

/// What the driver must do, in order (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Out {
    /// Send the message to `msg.to`.
    Send(Msg),
    /// The lock is held with fencing token `token`, valid until `valid_until` on this
    /// node's clock (renewals extend it: see [`Node::valid_until`]).
    Granted {
        /// The lock.
        lock: LockName,
        /// The attempt granted.
        id: RequestId,
        /// The fencing token: higher than every earlier holder's.
        token: u64,
        /// When the lock stops being valid unless renewed.
        valid_until: Nanos,
    },
    /// The lock held by `id` is lost; whatever the holder does now must be refused by
    /// the fenced resource.
    Lost {
        /// The lock.
        lock: LockName,
        /// The attempt that held it.
        id: RequestId,
        /// Why.
        reason: LostReason,
    },
    /// Write `high_water` to stable storage (the value to pass to [`Node::new`] after a
    /// restart), before acting on any later output.
    Persist {
        /// The fencing high-water mark to keep.
        high_water: u64,
    },
}

/// Where a request of this node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestState {
    /// Collecting votes: `votes` of `quorum`.
    Waiting {
        /// Votes held.
        votes: usize,
        /// Votes needed.
        quorum: usize,
    },
    /// Every vote held; waiting for the quorum to acknowledge `token`.
    Fencing {
        /// The token being acknowledged.
        token: u64,
    },
    /// Held with `token` until `valid_until` (unless renewed).
    Held {
        /// The fencing token.
        token: u64,
        /// The end of the validity so far.
        valid_until: Nanos,
    },
}

/// Counters, for tests, benches and `shmlink ls`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Messages handed to the driver for other nodes, by kind.
    pub sent: KindCounts,
    /// Messages to itself (looped back inside the core), by kind.
    pub looped: KindCounts,
    /// Messages from other nodes accepted for processing, by kind.
    pub received: KindCounts,
    /// Messages of another configuration epoch, dropped.
    pub other_epoch: u64,
    /// Malformed messages (node out of range, not for this node, an id that does not
    /// match its sender), dropped.
    pub invalid: u64,
    /// Messages about an attempt, grant or incarnation that is no longer current, or
    /// answers from a node that is not (or no longer) in the attempt's quorum.
    pub stale: u64,
    /// Times a node was suspected of being down (it left a question of an attempt
    /// unanswered for the lease, or the driver said so).
    pub suspicions: u64,
    /// Waiting attempts moved to another quorum, off a suspected member.
    pub moves: u64,
    /// Locks granted to this node.
    pub granted: u64,
    /// Held locks lost.
    pub lost: u64,
    /// Votes of this node (as arbiter) that lapsed at the end of their lease.
    pub lapsed: u64,
    /// Persist outputs.
    pub persists: u64,
}

/// Nanoseconds in `d`, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What both roles share: identity, timing, the Lamport clock, the outbox.
#[derive(Debug)]
struct Core {
    epoch: u64,
    node: NodeId,
    incarnation: u64,
    quorums: Arc<dyn QuorumSystem>,
    /// This node's own quorum: what an attempt asks when every member is believed up,
    /// and the fallback when no quorum is.
    quorum: Vec<NodeId>,
    /// The view: `suspected[n]` if node `n` is believed down (never this node). Set
    /// when `n` leaves a question of one of this node's attempts unanswered for
    /// `suspect_after` (or by [`Node::set_alive`]); cleared by any message from `n`.
    suspected: Vec<bool>,
    /// Raised at every change of `suspected`, so that attempts are rerouted only when
    /// the view changed since they last were.
    view: u64,
    /// How long a member of an attempt's quorum may leave the attempt's questions
    /// (`Request`, `Fence`, `Renew`) unanswered before it is suspected: the lease `L`.
    suspect_after: u64,
    /// When this incarnation started: it grants nothing before `started + lease`.
    started: Nanos,
    /// `L`, in nanoseconds.
    lease: u64,
    /// `L * (1 - eps) / (1 + eps)`: how long after sending a `Fence`/`Renew` the holder
    /// may count on it.
    holder_lease: u64,
    /// `L / 3`: the renewal period, the retransmission cap, and the probe period.
    third: u64,
    /// `L / 2`: how often a waiting requester tells arbiters that answered it that it is
    /// alive (an arbiter drops a waiter, or an unfenced vote, silent for `L`).
    keepalive: u64,
    retransmit: u64,
    /// The Lamport clock.
    clock: u64,
    /// The newest incarnation heard from each node.
    known: Vec<u64>,
    out: Vec<Out>,
    loopback: VecDeque<Msg>,
    stats: Stats,
}

impl Core {
    /// Sends `body` about `lock` to `to` (looped back if `to` is this node).
    fn send(&mut self, to: NodeId, lock: LockName, body: Body) {
        self.clock = self.clock.saturating_add(1);
        let msg = Msg {
            epoch: self.epoch,
            from: self.node,
            incarnation: self.incarnation,
            to,
            clock: self.clock,
            lock,
            body,
        };
        if to == self.node {
            self.stats.looped.bump(body.kind());
            self.loopback.push_back(msg);
        } else {
            self.stats.sent.bump(body.kind());
            self.out.push(Out::Send(msg));
        }
    }

    /// Whether the lock-delay after this incarnation's start still runs.
    fn in_lock_delay(&self, now: Nanos) -> bool {
        now < self.started.after(self.lease)
    }

    fn is_suspected(&self, node: NodeId) -> bool {
        self.suspected
            .get(usize::from(node))
            .copied()
            .unwrap_or(false)
    }

    /// Suspects `node` of being down (never this node).
    fn suspect(&mut self, node: NodeId) {
        if node != self.node
            && let Some(s) = self.suspected.get_mut(usize::from(node))
            && !*s
        {
            *s = true;
            self.view += 1;
            self.stats.suspicions += 1;
        }
    }

    fn unsuspect(&mut self, node: NodeId) {
        if let Some(s) = self.suspected.get_mut(usize::from(node))
            && *s
        {
            *s = false;
            self.view += 1;
        }
    }

    /// The quorum a waiting attempt should ask under the view:
    /// [`QuorumSystem::live_quorum`], the own quorum when all of it is believed up.
    ///
    /// `None` when no quorum is believed up. Then more nodes are suspected than the
    /// system may lose (or some quorum would be left), so when the cluster is within
    /// its tolerance some suspicions are wrong: a node falsely suspected is never asked
    /// again, so it might never be cleared. Suspicions of nodes outside `asked` (the
    /// members of this node's attempts, which are asked, so cleared by their next
    /// answer) are forgotten then, and the search repeated. A node really down is
    /// suspected again a lease after the next attempt asks it.
    fn choose_quorum(&mut self, asked: &[bool]) -> Option<Vec<NodeId>> {
        let alive = |c: &Core| c.suspected.iter().map(|&s| !s).collect::<Vec<bool>>();
        if let Some(q) = self.quorums.live_quorum(self.node, &alive(self)) {
            return Some(q);
        }
        let mut forgot = false;
        for (n, s) in self.suspected.iter_mut().enumerate() {
            if *s && !asked.get(n).copied().unwrap_or(false) {
                *s = false;
                forgot = true;
            }
        }
        if forgot {
            self.view += 1;
            self.quorums.live_quorum(self.node, &alive(self))
        } else {
            None
        }
    }
}

/// One member of a distributed-lock cluster: arbiter for the nodes whose quorum holds
/// it, and requester for its own locks (one attempt per lock at a time).
///
/// # Examples
///
/// A one-node cluster, whose only message goes to itself:
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use shmlink::dlock::protocol::{Config, LockName, Nanos, Node, Out};
/// use shmlink::dlock::quorum::{NodeId, QuorumSystem};
///
/// #[derive(Debug)]
/// struct Alone;
/// impl QuorumSystem for Alone {
///     fn nodes(&self) -> usize { 1 }
///     fn quorum(&self, _: NodeId) -> &[NodeId] { &[0] }
///     fn name(&self) -> &'static str { "alone" }
/// }
///
/// let mut config = Config::new(1, 0, Arc::new(Alone));
/// config.lease = Duration::from_secs(3);
/// let mut node = Node::new(config, 1, 0, Nanos(0))?;
/// let jobs = LockName::new("jobs");
/// node.acquire(jobs, Nanos(0))?;
///
/// // A starting node grants nothing for a lease (lock-delay), so that votes it gave
/// // before a restart lapse first. The driver runs the timers until then.
/// assert_eq!(node.drain().count(), 0);
/// let (mut now, mut token) = (Nanos(0), None);
/// while token.is_none() {
///     now = node.next_deadline().expect("a request waits");
///     node.tick(now);
///     for out in node.drain() {
///         match out {
///             Out::Persist { high_water } => { /* write it to the state file, then go on */ }
///             Out::Granted { token: t, valid_until, .. } => {
///                 assert!(valid_until > now);
///                 token = Some(t);
///             }
///             Out::Send(msg) => unreachable!("a one-node cluster only talks to itself: {msg:?}"),
///             other => unreachable!("{other:?}"),
///         }
///     }
/// }
/// assert_eq!(now, Nanos(3_000_000_000));
/// assert_eq!(token, Some(1));
/// assert!(node.valid_until(jobs).is_some());
/// node.release(jobs, now)?;
/// assert_eq!(node.valid_until(jobs), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Node {
    core: Core,
    arbiter: Arbiter,
    requester: Requester,
    /// The latest clock reading seen (readings that go backwards are raised to it).
    now: Nanos,
}

impl Node {
    /// A node starting at `now` as `incarnation` (which the driver raises and persists
    /// at every start), with the last high-water mark it persisted (0 the first time).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if `config` is inconsistent.
    pub fn new(
        config: Config,
        incarnation: u64,
        restored_high_water: u64,
        now: Nanos,
    ) -> Result<Node, ConfigError> {
        config.check()?;
        let lease = nanos(config.lease);
        let eps = u128::from(config.epsilon_ppm);
        let holder_lease = (u128::from(lease) * (1_000_000 - eps) / (1_000_000 + eps)) as u64; // < lease
        let nodes = config.quorums.nodes();
        let mut known = vec![0; nodes];
        known[usize::from(config.node)] = incarnation;
        let core = Core {
            epoch: config.epoch,
            node: config.node,
            incarnation,
            quorum: config.quorums.quorum(config.node).to_vec(),
            quorums: config.quorums,
            suspected: vec![false; nodes],
            view: 0,
            suspect_after: lease,
            started: now,
            lease,
            holder_lease,
            third: lease / 3,
            keepalive: lease / 2,
            retransmit: nanos(config.retransmit),
            clock: 0,
            known,
            out: Vec::new(),
            loopback: VecDeque::new(),
            stats: Stats::default(),
        };
        Ok(Node {
            core,
            arbiter: Arbiter::new(restored_high_water),
            requester: Requester::default(),
            now,
        })
    }

    /// This node.
    #[must_use]
    pub fn id(&self) -> NodeId {
        self.core.node
    }

    /// This node's incarnation.
    #[must_use]
    pub fn incarnation(&self) -> u64 {
        self.core.incarnation
    }

    /// Starts an attempt to take `lock`; [`Out::Granted`] reports success.
    ///
    /// # Errors
    ///
    /// [`AcquireError`] if this node already requested or holds `lock`.
    pub fn acquire(&mut self, lock: LockName, now: Nanos) -> Result<RequestId, AcquireError> {
        let now = self.enter(now);
        let id = self.requester.acquire(&mut self.core, lock, now)?;
        self.pump(now);
        Ok(id)
    }

    /// Releases the held `lock`.
    ///
    /// # Errors
    ///
    /// [`NotHeld`] if this node does not hold `lock` (it may have been lost, or not
    /// granted yet: then use [`cancel`](Self::cancel)).
    pub fn release(&mut self, lock: LockName, now: Nanos) -> Result<(), NotHeld> {
        let now = self.enter(now);
        let r = self.requester.release(&mut self.core, lock);
        self.pump(now);
        r
    }

    /// Withdraws this node's attempt on `lock`, granted or not (a `try_lock_for` that
    /// timed out, a dropped request), and returns it.
    pub fn cancel(&mut self, lock: LockName, now: Nanos) -> Option<RequestId> {
        let now = self.enter(now);
        let id = self.requester.cancel(&mut self.core, lock);
        self.pump(now);
        id
    }

    /// Stops renewing `lock` (a driver whose local holder stopped answering: paused or
    /// stuck). The lock stays valid to the end of its current validity and is then
    /// [`Lost`](Out::Lost) as expired; the votes are not freed before that, since the
    /// holder may still act until then. Returns whether this node has an attempt on
    /// `lock` (one still waiting is granted and then not renewed).
    pub fn stop_renewing(&mut self, lock: LockName, now: Nanos) -> bool {
        let now = self.enter(now);
        let had = self.requester.stop_renewing(lock);
        self.pump(now);
        had
    }

    /// Handles a message from the network. Messages of another epoch, malformed ones
    /// and stale ones are counted in [`stats`](Self::stats) and dropped.
    pub fn handle(&mut self, msg: Msg, now: Nanos) {
        let now = self.enter(now);
        self.receive(msg, now, false);
        self.pump(now);
    }

    /// Runs the timers due at `now`: retransmissions, renewals, lease ends, probes, the
    /// end of the lock-delay. Call it at [`next_deadline`](Self::next_deadline).
    pub fn tick(&mut self, now: Nanos) {
        let now = self.enter(now);
        self.pump(now);
    }

    /// The outputs produced so far, to apply in order.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Out> {
        self.core.out.drain(..)
    }

    /// When [`tick`](Self::tick) next has work, if ever.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Nanos> {
        let a = self.arbiter.next_deadline(&self.core);
        let r = self.requester.next_deadline(&self.core);
        match (a, r) {
            (Some(a), Some(r)) => Some(a.min(r)),
            (a, r) => a.or(r),
        }
    }

    /// Until when the held `lock` is valid (on this node's clock), if it is held and
    /// was valid at the latest reading given to the node. The holder must not act on
    /// the lock at or after the returned reading.
    #[must_use]
    pub fn valid_until(&self, lock: LockName) -> Option<Nanos> {
        match self.requester.state(lock)?.1 {
            RequestState::Held { valid_until, .. } if self.now < valid_until => Some(valid_until),
            _ => None,
        }
    }

    /// This node's attempt on `lock` and where it stands.
    #[must_use]
    pub fn request(&self, lock: LockName) -> Option<(RequestId, RequestState)> {
        self.requester.state(lock)
    }

    /// The quorum this node's attempt on `lock` asks (sorted): chosen when the attempt
    /// started, and changed while it waits if a member is suspected of being down.
    #[must_use]
    pub fn request_quorum(&self, lock: LockName) -> Option<&[NodeId]> {
        self.requester.quorum(lock)
    }

    /// Whether this node suspects `node` of being down (see [`set_alive`](Self::set_alive)).
    #[must_use]
    pub fn is_suspected(&self, node: NodeId) -> bool {
        self.core.is_suspected(node)
    }

    /// Tells the node what the driver knows of `node`: down (a refused connection, a
    /// peer that said it is stopping) or up again (a connection that works again).
    ///
    /// The core needs none of this: it suspects a member of an attempt's quorum that
    /// leaves the attempt's questions unanswered for a lease, and clears the suspicion
    /// at the next message from it. A node said to be down is avoided by attempts that
    /// start or wait from now on, until a message from it arrives (or the core finds
    /// no quorum without the nodes it suspects, and forgets the suspicions it cannot
    /// check). This node and nodes out of range are ignored.
    pub fn set_alive(&mut self, node: NodeId, alive: bool, now: Nanos) {
        let now = self.enter(now);
        if node != self.core.node && usize::from(node) < self.core.known.len() {
            if alive {
                self.core.unsuspect(node);
                self.requester.heard(node);
            } else {
                self.core.suspect(node);
            }
        }
        self.pump(now);
    }

    /// This node's attempts, by lock.
    pub fn requests(&self) -> impl Iterator<Item = (LockName, RequestId, RequestState)> + '_ {
        self.requester.states()
    }

    /// The highest fencing token this node (as arbiter) has acknowledged, or its
    /// restored reservation.
    #[must_use]
    pub fn high_water(&self) -> u64 {
        self.arbiter.high_water()
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> &Stats {
        &self.core.stats
    }

    /// Takes a clock reading (never going backwards) and runs what is due.
    fn enter(&mut self, now: Nanos) -> Nanos {
        self.now = self.now.max(now);
        self.advance(self.now);
        self.now
    }

    /// Runs the timers due at `now`.
    fn advance(&mut self, now: Nanos) {
        self.arbiter.advance(&mut self.core, now);
        self.requester.advance(&mut self.core, now);
    }

    /// Delivers the messages this node sent itself, and what they cause; moves waiting
    /// attempts off suspected members (which may send more to itself).
    fn pump(&mut self, now: Nanos) {
        loop {
            while let Some(msg) = self.core.loopback.pop_front() {
                self.receive(msg, now, true);
            }
            // Terminates: within one call suspicions only go (a message, or the core
            // forgetting them), and an attempt moves only to a quorum it is not on.
            self.requester.reroute(&mut self.core, now);
            if self.core.loopback.is_empty() {
                return;
            }
        }
    }

    fn receive(&mut self, msg: Msg, now: Nanos, looped: bool) {
        let core = &mut self.core;
        if msg.epoch != core.epoch {
            core.stats.other_epoch += 1;
            return;
        }
        let nodes = core.known.len();
        if msg.to != core.node || usize::from(msg.from) >= nodes {
            core.stats.invalid += 1;
            return;
        }
        let from = msg.from;
        // A newer incarnation: the sender restarted, and what this node held for the
        // old one (votes, queued requests) is dropped.
        let known = core.known[usize::from(from)];
        if msg.incarnation < known {
            core.stats.stale += 1;
            return;
        }
        if msg.incarnation > known {
            if from == core.node {
                core.stats.invalid += 1;
                return;
            }
            core.known[usize::from(from)] = msg.incarnation;
            self.arbiter
                .purge(&mut self.core, from, msg.incarnation, now);
        }
        let core = &mut self.core;
        let body = msg.body;
        let kind = body.kind();
        let id = body.id();
        // Any node may ask this one for its vote: a requester asks whichever quorum it
        // believes up, and exclusion rests on its quorum meeting every other one (and
        // on one vote per lock here), not on who asks. A requester takes answers only
        // from the members of its attempt's current quorum (checked by the handlers).
        let valid = if kind.to_arbiter() {
            // A restarted node answers a vote for its previous incarnation with a
            // Release of it (already dropped here when the new incarnation was seen).
            let incarnation_ok = id.incarnation == msg.incarnation
                || (kind == MsgKind::Release && id.incarnation < msg.incarnation);
            id.node == from && incarnation_ok
        } else {
            id.node == core.node
        };
        if !valid {
            core.stats.invalid += 1;
            return;
        }
        if !looped {
            // Any message from the node's current incarnation shows it is up.
            core.unsuspect(from);
            self.requester.heard(from);
        }
        let core = &mut self.core;
        core.clock = core.clock.max(msg.clock).saturating_add(1);
        if !looped {
            core.stats.received.bump(kind);
        }
        let (lock, inc) = (msg.lock, msg.incarnation);
        let (arb, req) = (&mut self.arbiter, &mut self.requester);
        match body {
            Body::Request { id, ts } => arb.on_request(core, now, lock, id, ts),
            Body::Relinquish { id, stamp } => arb.on_relinquish(core, now, lock, id, stamp),
            Body::Release { id } => arb.on_release(core, now, lock, id),
            Body::Fence { id, token, round } => arb.on_fence(core, now, lock, id, token, round),
            Body::Renew { id, token, round } => arb.on_renew(core, now, lock, id, token, round),
            Body::Locked {
                id,
                high_water,
                stamp,
            } => req.on_locked(core, now, from, inc, lock, id, high_water, stamp),
            Body::Failed { id, stamp } => req.on_failed(core, now, from, inc, lock, id, stamp),
            Body::Inquire { id, stamp } => req.on_inquire(core, now, from, inc, lock, id, stamp),
            Body::FenceAck { id, token, round } => {
                req.on_fence_ack(core, now, from, lock, id, token, round)
            }
        }
    }
}

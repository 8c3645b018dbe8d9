//! A lock node: the sans-IO [protocol core](super::protocol) driven over the RPC layer.
//!
//! A [`LockNode`] owns one [`protocol::Node`] behind a mutex and feeds it:
//!
//! - messages from other nodes, through the [`Peer`](super::service::Peer) service it
//!   serves at its listen URL;
//! - requests of the processes of its host, through the
//!   [`Local`](super::service::Local) service (`shm://` by default);
//! - timer ticks, from one thread that sleeps until [`protocol::Node::next_deadline`].
//!
//! What the core outputs is applied in order under the same mutex: a `Persist` is
//! written to the [`NodeState`] file before anything after it; a `Send` goes to the
//! peer's sender thread (requester to arbiter) or down the attempt's stream (arbiter
//! to requester); `Granted` and `Lost` go to the local client. Nothing under the mutex
//! waits for the network: each peer has a thread that connects (and reconnects), opens
//! the request streams, makes the unary calls and feeds their answers back.
//!
//! The node's clock is the host's `CLOCK_BOOTTIME` ([`monotonic_now`]), which every
//! process of the host reads alike, so a local client compares a validity deadline
//! with its own reading.

use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::outbox::{Flush, Outbox};
use super::protocol::{self, LockName, Msg, MsgKind, Nanos, Node, Out, RequestId, RequestState};
use super::quorum::NodeId;
use super::service::{
    AcquireArgs, Local, LocalServer, LockEvent, LockInfo, NodeError, NodeStatus, Peer, PeerClient,
    PeerServer, ReleaseArgs,
};
use super::tasks::Tasks;
use super::{ConfigFileError, FencingToken, NodeConfig, NodeState, StateError};
use crate::rpc::{
    ClientOptions, Context, RpcError, Server, ServerHandle, Sink, StreamSender, TryStreamError,
};
use crate::transport::ListenError;

/// A reading of the host's monotonic clock, the clock of every lock node and local
/// client: `CLOCK_BOOTTIME`, which unlike `CLOCK_MONOTONIC` goes on while the host is
/// suspended (a holder's clock that stopped during a suspend would overstate its
/// validity without bound).
#[must_use]
pub fn monotonic_now() -> Nanos {
    // CLOCK_BOOTTIME cannot fail on Linux (since 2.6.39); if it ever did, time would
    // stand still on this node, and a holder here would count its validity from
    // readings that no longer move: the fence is then the only protection, as for any
    // clock beyond the drift bound.
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).map_or(Nanos(0), |ts| {
        let ns = i128::from(ts.tv_sec()) * 1_000_000_000 + i128::from(ts.tv_nsec());
        Nanos(u64::try_from(ns).unwrap_or(0))
    })
}

/// How often the timer looks for local clients that went away without releasing.
const CLIENT_POLL: Duration = Duration::from_millis(50);

/// How to start a [`LockNode`].
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The protocol's configuration (epoch, this node, quorums, lease, drift bound).
    pub protocol: protocol::Config,
    /// Every member's URL, by node id (this node's entry is not dialled).
    pub members: Vec<String>,
    /// Where this node serves the other nodes.
    pub listen: String,
    /// Where the processes of this host reach the node (`None`: nowhere).
    pub local: Option<String>,
    /// The node state file (incarnation, fencing reservation).
    pub state_file: PathBuf,
}

impl NodeOptions {
    /// The options a [`NodeConfig`] (a `shmlink lockd` configuration file) describes.
    ///
    /// # Errors
    ///
    /// [`ConfigFileError`] if the configuration does not check.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::{NodeConfig, NodeOptions};
    ///
    /// let config = NodeConfig::parse(
    ///     "epoch = 3\nnode = 1\nmembers = tcp://10.0.0.1:7000, tcp://10.0.0.2:7000, \
    ///      tcp://10.0.0.3:7000\nstate = /var/lib/shmlink/node1.state\n",
    /// )?;
    /// let options = NodeOptions::from_config(&config)?;
    /// assert_eq!(options.listen, "tcp://10.0.0.2:7000");
    /// assert_eq!(options.protocol.epoch, 3);
    /// assert_eq!(options.local.as_deref(), Some(NodeConfig::DEFAULT_LOCAL));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_config(config: &NodeConfig) -> Result<NodeOptions, ConfigFileError> {
        config.check()?;
        Ok(NodeOptions {
            protocol: config.protocol()?,
            members: config.members.clone(),
            listen: config.listen.clone(),
            local: Some(config.local.clone()),
            state_file: config.state_file.clone(),
        })
    }
}

/// Why a [`LockNode`] did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The state file could not be used.
    State(StateError),
    /// The protocol configuration is inconsistent.
    Config(protocol::ConfigError),
    /// The member list does not match the quorum system.
    Members {
        /// Members given.
        given: usize,
        /// Nodes of the quorum system.
        nodes: usize,
    },
    /// A thread could not be started.
    Thread(std::io::Error),
    /// Listening failed (the error names the URL).
    Listen {
        /// Why.
        source: ListenError,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::State(e) => write!(f, "lock node: {e}"),
            Self::Config(e) => write!(f, "lock node configuration: {e}"),
            Self::Members { given, nodes } => write!(
                f,
                "lock node: {given} member URLs for a quorum system of {nodes} nodes"
            ),
            Self::Listen { source } => write!(f, "lock node: {source}"),
            Self::Thread(e) => write!(f, "lock node: start a thread: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::State(e) => Some(e),
            Self::Config(e) => Some(e),
            Self::Listen { source, .. } => Some(source),
            Self::Thread(e) => Some(e),
            Self::Members { .. } => None,
        }
    }
}

/// A local client's attempt on a lock.
struct Waiter {
    name: String,
    key: u64,
    pid: u32,
    /// The `acquire` stream, detached: events go out from the thread that has them.
    events: StreamSender<LockEvent>,
    /// The validity last reported.
    reported: Option<Nanos>,
    /// When the client must have answered the last report with a keep-alive, or the
    /// node stops renewing the lock.
    ack_due: Option<Nanos>,
    /// When the client asked.
    asked: Instant,
    /// The core's attempt: outputs of an earlier attempt on the lock (the `Lost` of a
    /// departed client's lock, drained after this attempt began) are not this one's.
    attempt: RequestId,
}

/// An arbiter-side stream, by attempt.
struct Route {
    /// When the stream opened: it is ended two leases later.
    opened: Instant,
    tx: StreamSender<Msg>,
}

struct Inner {
    node: Node,
    state: NodeState,
    /// Set when a `Persist` failed: the node stops acting (anything after the failed
    /// write could acknowledge a token the file does not cover).
    failed: Option<String>,
    routes: HashMap<RequestId, Route>,
    /// When the timer thread wakes next (`None`: it is awake).
    timer_at: Option<Nanos>,
    waiters: HashMap<LockName, Waiter>,
}

struct Shared {
    me: NodeId,
    epoch: u64,
    lease: Duration,
    retransmit: Duration,
    inner: Mutex<Inner>,
    tick: Condvar,
    /// This node's side of each other member (`None`: itself).
    links: Vec<Option<Link>>,
    stop: AtomicBool,
    undelivered: AtomicU64,
    /// How long the last grant to a local client took at this node, in ns (0: none).
    last_grant: AtomicU64,
    /// Threads for blocking waits (request streams, answers of calls).
    tasks: Arc<Tasks>,
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        relock(&self.inner)
    }

    /// Feeds `msg` to the core and applies what it outputs; returns, if `want_ack`,
    /// the `FenceAck` for `msg`'s attempt, or another answer about it that found no
    /// stream.
    fn deliver(self: &Arc<Self>, msg: Msg, want_ack: bool) -> Result<Option<Msg>, NodeError> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(self.stopped("shutting down"));
        }
        let mut inner = self.lock();
        if let Some(reason) = &inner.failed {
            return Err(self.stopped(reason));
        }
        inner.node.handle(msg, monotonic_now());
        let mut ack = want_ack.then_some((msg.body.id(), None));
        self.apply(&mut inner, ack.as_mut());
        drop(inner);
        self.send_queued();
        Ok(ack.and_then(|(_, m)| m))
    }

    /// The link to `peer` (`None` for this node, or an id out of range).
    fn link(&self, peer: NodeId) -> Option<&Link> {
        self.links.get(usize::from(peer)).and_then(Option::as_ref)
    }

    /// Sends what the core queued for other nodes, from this thread, to every peer
    /// that is connected and not being sent to already (see [`Link`]).
    fn send_queued(self: &Arc<Self>) {
        for link in self.links.iter().flatten() {
            link.send_queued(self);
        }
    }

    /// Has the links' threads send what the core queued (for the timer thread, which
    /// does no network I/O).
    fn kick_links(&self) {
        for link in self.links.iter().flatten() {
            if link.out.is_pending() {
                link.out.wake();
            }
        }
    }

    fn stopped(&self, reason: &str) -> NodeError {
        NodeError::Stopped {
            reason: format!("node {}: {reason}", self.me),
        }
    }

    /// Applies the core's outputs in order (see the module docs).
    fn apply(&self, inner: &mut Inner, mut ack: Option<&mut (RequestId, Option<Msg>)>) {
        let outs: Vec<Out> = inner.node.drain().collect();
        for out in outs {
            if inner.failed.is_some() {
                break;
            }
            match out {
                Out::Persist { high_water } => {
                    if let Err(e) = inner.state.reserve(high_water) {
                        inner.failed = Some(e.to_string());
                        for w in inner.waiters.values() {
                            let _ = w.events.try_send(&LockEvent::Lost { expired: false });
                        }
                    }
                }
                Out::Send(msg) => self.route(inner, msg, ack.as_deref_mut()),
                Out::Granted {
                    lock,
                    id,
                    token,
                    valid_until,
                } => {
                    if let Some(w) = inner.waiters.get_mut(&lock).filter(|w| w.attempt == id) {
                        let took = u64::try_from(w.asked.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        self.last_grant.store(took, Ordering::Relaxed);
                        w.reported = Some(valid_until);
                        w.ack_due = Some(monotonic_now().after(self.ack_window()));
                        let _ = w.events.try_send(&LockEvent::Granted {
                            token: FencingToken(token),
                            valid_until: valid_until.0,
                        });
                    }
                }
                Out::Lost { lock, id, reason } => {
                    if let Some(w) = inner.waiters.get_mut(&lock).filter(|w| w.attempt == id) {
                        w.reported = None;
                        w.ack_due = None;
                        let expired = reason == protocol::LostReason::Expired;
                        let _ = w.events.try_send(&LockEvent::Lost { expired });
                    }
                }
            }
        }
        // Renewals move validity without an output: report the moves.
        let Inner { node, waiters, .. } = inner;
        for (lock, w) in waiters.iter_mut() {
            if let (Some(old), Some(new)) = (w.reported, node.valid_until(*lock))
                && new > old
            {
                w.reported = Some(new);
                if w.ack_due.is_none() {
                    w.ack_due = Some(monotonic_now().after(self.ack_window()));
                }
                let _ = w
                    .events
                    .try_send(&LockEvent::Renewed { valid_until: new.0 });
            }
        }
        // Wake the timer thread only if it now has something to do before it wakes.
        if let Some(at) = inner.timer_at
            && Self::next_due(inner).is_some_and(|due| due < at)
        {
            inner.timer_at = None;
            self.tick.notify_one();
        }
    }

    /// The earliest of the core's deadlines, the keep-alives due and, while local
    /// clients wait or hold, the next look at whether they left ([`CLIENT_POLL`]).
    fn next_due(inner: &Inner) -> Option<Nanos> {
        let poll = (!inner.waiters.is_empty()).then(|| {
            monotonic_now().after(u64::try_from(CLIENT_POLL.as_nanos()).unwrap_or(u64::MAX))
        });
        let acks = inner
            .waiters
            .values()
            .filter_map(|w| w.ack_due)
            .chain(poll)
            .min();
        match (inner.node.next_deadline(), acks) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How long a local holder has to answer a grant or renewal report: a quarter of
    /// the lease, so that the node stops renewing before its next renewal round (at a
    /// third of the lease) when the holder does not answer.
    fn ack_window(&self) -> u64 {
        u64::try_from(self.lease.as_nanos() / 4).unwrap_or(u64::MAX)
    }

    /// Stops renewing the locks whose holders did not answer in time, and ends the
    /// attempts of clients that went away (or cancelled) without releasing: an
    /// attempt not granted yet is withdrawn; a granted lock is not released, since the
    /// client may be alive behind a broken connection and act until the validity it
    /// was told, so it is only no longer renewed, and runs out then.
    fn check_holders(inner: &mut Inner, now: Nanos) {
        let Inner { node, waiters, .. } = inner;
        waiters.retain(|lock, w| {
            let left = w.events.is_closed();
            let held = matches!(node.request(*lock), Some((_, RequestState::Held { .. })));
            if left && !held {
                node.cancel(*lock, now);
            } else if left || w.ack_due.is_some_and(|due| now >= due) {
                w.ack_due = None;
                node.stop_renewing(*lock, now);
            }
            !left
        });
    }

    fn route(&self, inner: &mut Inner, msg: Msg, ack: Option<&mut (RequestId, Option<Msg>)>) {
        let id = msg.body.id();
        match msg.body.kind() {
            MsgKind::Locked | MsgKind::Failed | MsgKind::Inquire => {
                if !self.down_stream(inner, id, &msg) {
                    // No stream (a holder's ended after two leases): an answer to the
                    // `fence` or `renew` call being handled goes back as its reply, so
                    // that a holder hears a refused renewal at once.
                    match ack {
                        Some((want, slot)) if *want == id && slot.is_none() => *slot = Some(msg),
                        _ => {
                            self.undelivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            // Down the attempt's stream too, when it is open: the requester's thread that
            // reads the stream (and delivered the `Locked` that caused the fence) then
            // gets it itself, with no hand-off from whichever thread reads the reply.
            MsgKind::FenceAck => {
                if !self.down_stream(inner, id, &msg) {
                    match ack {
                        // The acknowledgement wins over another answer put there first.
                        Some((want, slot)) if *want == id => *slot = Some(msg),
                        _ => {
                            self.undelivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            _ => {
                let queued = self
                    .links
                    .get(usize::from(msg.to))
                    .and_then(Option::as_ref)
                    .is_some_and(|link| link.queue(msg));
                if !queued {
                    self.undelivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Sends `msg` down attempt `id`'s stream, if one is open; whether it went.
    fn down_stream(&self, inner: &mut Inner, id: RequestId, msg: &Msg) -> bool {
        match inner.routes.get(&id) {
            Some(r) if r.opened.elapsed() < 2 * self.lease => match r.tx.try_send(msg) {
                Ok(()) => true,
                // The requester is far behind: a lost message, sent again.
                Err(TryStreamError::Full) => false,
                Err(TryStreamError::Closed(_)) => {
                    inner.routes.remove(&id);
                    false
                }
            },
            // A stream lives at most two leases; the requester's next keep-alive
            // reopens it.
            Some(_) => {
                inner.routes.remove(&id);
                false
            }
            None => false,
        }
    }

    fn check_addressed(&self, msg: &Msg) -> Result<(), NodeError> {
        if msg.to == self.me && msg.epoch == self.epoch {
            Ok(())
        } else {
            Err(NodeError::NotForThisNode {
                to: msg.to,
                epoch: msg.epoch,
            })
        }
    }

    fn unary(
        self: &Arc<Self>,
        method: &str,
        kind: MsgKind,
        msg: Msg,
    ) -> Result<Option<Msg>, NodeError> {
        if msg.body.kind() != kind {
            return Err(NodeError::wrong_kind(method, msg.body.kind()));
        }
        self.check_addressed(&msg)?;
        self.deliver(msg, matches!(kind, MsgKind::Fence | MsgKind::Renew))
    }

    fn status(&self) -> NodeStatus {
        let inner = self.lock();
        let now = monotonic_now();
        let stats = inner.node.stats();
        let locks = inner
            .node
            .requests()
            .map(|(lock, _, state)| {
                let w = inner.waiters.get(&lock);
                let mut info = LockInfo {
                    name: w.map_or_else(|| format!("{:016x}", lock.0), |w| w.name.clone()),
                    state: String::new(),
                    token: None,
                    votes: None,
                    valid_for_ns: None,
                    pid: w.map(|w| w.pid),
                };
                match state {
                    RequestState::Waiting { votes, quorum } => {
                        info.state = "waiting".into();
                        info.votes = Some((votes as u32, quorum as u32));
                    }
                    RequestState::Fencing { token } => {
                        info.state = "fencing".into();
                        info.token = Some(token);
                    }
                    RequestState::Held { token, valid_until } => {
                        info.state = "held".into();
                        info.token = Some(token);
                        info.valid_for_ns = Some(valid_until.since(now));
                    }
                }
                info
            })
            .collect();
        NodeStatus {
            node: self.me,
            incarnation: inner.node.incarnation(),
            epoch: self.epoch,
            high_water: inner.node.high_water(),
            sent: stats.sent.total(),
            received: stats.received.total(),
            undelivered: self.undelivered.load(Ordering::Relaxed),
            granted: stats.granted,
            lost: stats.lost,
            locks,
        }
    }
}

/// The peer service, as the node serves it.
struct PeerSide(Arc<Shared>);

impl Peer for PeerSide {
    fn request(&self, _ctx: &Context, msg: Msg, sink: &mut Sink<'_, Msg>) -> Result<(), NodeError> {
        let s = &self.0;
        if msg.body.kind() != MsgKind::Request {
            return Err(NodeError::wrong_kind("request", msg.body.kind()));
        }
        s.check_addressed(&msg)?;
        // The stream goes on after this returns: the core's answers for the attempt go
        // down it from whichever thread delivers what caused them (see `route`).
        let route = Route {
            opened: Instant::now(),
            tx: sink.detach(),
        };
        s.lock().routes.insert(msg.body.id(), route);
        s.deliver(msg, false)?;
        Ok(())
    }

    fn refresh(&self, _ctx: &Context, msg: Msg) -> Result<(), NodeError> {
        self.0.unary("refresh", MsgKind::Request, msg).map(drop)
    }

    fn relinquish(&self, _ctx: &Context, msg: Msg) -> Result<(), NodeError> {
        self.0
            .unary("relinquish", MsgKind::Relinquish, msg)
            .map(drop)
    }

    fn release(&self, _ctx: &Context, msg: Msg) -> Result<(), NodeError> {
        self.0.unary("release", MsgKind::Release, msg)?;
        // The attempt is over: end its stream.
        self.0.lock().routes.remove(&msg.body.id());
        Ok(())
    }

    fn fence(&self, _ctx: &Context, msg: Msg) -> Result<Option<Msg>, NodeError> {
        self.0.unary("fence", MsgKind::Fence, msg)
    }

    fn renew(&self, _ctx: &Context, msg: Msg) -> Result<Option<Msg>, NodeError> {
        self.0.unary("renew", MsgKind::Renew, msg)
    }
}

/// The local service, as the node serves it.
struct LocalSide(Arc<Shared>);

impl Local for LocalSide {
    fn acquire(
        &self,
        _ctx: &Context,
        args: AcquireArgs,
        sink: &mut Sink<'_, LockEvent>,
    ) -> Result<(), NodeError> {
        let s = &self.0;
        let lock = LockName::new(&args.name);
        let mut inner = s.lock();
        if let Some(reason) = &inner.failed {
            return Err(s.stopped(reason));
        }
        if s.stop.load(Ordering::Relaxed) {
            return Err(s.stopped("shutting down"));
        }
        // Another client of this host holds or waits (one that skipped the host's
        // Bakery lock, or one that just left and is not noticed yet, whose lock runs out
        // within a lease): the caller asks again, as for any holder. (Waiting here
        // would hold up the caller's connection: handlers run on its reader.)
        if inner.waiters.contains_key(&lock) {
            return Err(NodeError::Busy { lock: args.name });
        }
        let Ok(attempt) = inner.node.acquire(lock, monotonic_now()) else {
            return Err(NodeError::Busy { lock: args.name });
        };
        // The stream goes on after this returns: the node's events go down it from
        // whichever thread has them, and the timer notices a client that left
        // (`check_holders`).
        inner.waiters.insert(
            lock,
            Waiter {
                name: args.name.clone(),
                key: args.key,
                pid: args.pid,
                events: sink.detach(),
                reported: None,
                ack_due: None,
                asked: Instant::now(),
                attempt,
            },
        );
        s.apply(&mut inner, None);
        drop(inner);
        s.send_queued();
        Ok(())
    }

    fn release(&self, _ctx: &Context, args: ReleaseArgs) -> Result<(), NodeError> {
        let s = &self.0;
        let lock = LockName::new(&args.name);
        let mut inner = s.lock();
        if inner.waiters.get(&lock).is_none_or(|w| w.key != args.key) {
            return Err(NodeError::NotHeld { lock: args.name });
        }
        inner.waiters.remove(&lock);
        inner.node.cancel(lock, monotonic_now());
        s.apply(&mut inner, None);
        drop(inner);
        s.send_queued();
        Ok(())
    }

    fn keepalive(&self, _ctx: &Context, args: ReleaseArgs) -> Result<(), NodeError> {
        let lock = LockName::new(&args.name);
        let mut inner = self.0.lock();
        match inner.waiters.get_mut(&lock) {
            Some(w) if w.key == args.key => {
                w.ack_due = None;
                Ok(())
            }
            _ => Err(NodeError::NotHeld { lock: args.name }),
        }
    }

    fn status(&self, _ctx: &Context, (): ()) -> Result<NodeStatus, NodeError> {
        Ok(self.0.status())
    }
}

/// Most messages queued for one peer; beyond, they count as lost (the core sends
/// them again), so a peer that is down costs bounded memory.
const LINK_QUEUE: usize = 1 << 16;

/// This node's side of one other member: the messages queued for it, and the
/// connection to it.
///
/// The core queues messages under the node's mutex; the thread that made it output
/// them sends them after releasing the mutex (`Shared::send_queued`): a message goes
/// out with no hand-off to another thread. The [`Outbox`] lets one thread send at a
/// time, so messages leave in the order they were queued, and strands none. The link's
/// own thread connects (and reconnects after a failure), and sends what the timer
/// thread queued: neither a connect nor the timer waits for a peer.
struct Link {
    peer: NodeId,
    url: String,
    out: Outbox<Msg, Arc<PeerClient>>,
    /// Request streams open to this peer.
    open: Mutex<HashSet<RequestId>>,
    /// Set by a call or stream that failed on its connection: reconnect before the
    /// next call.
    broken: AtomicBool,
}

impl Link {
    fn new(peer: NodeId, url: String) -> Link {
        Link {
            peer,
            url,
            out: Outbox::new(LINK_QUEUE),
            open: Mutex::new(HashSet::new()),
            broken: AtomicBool::new(false),
        }
    }

    /// Queues `msg`; `false` if the queue is full.
    fn queue(&self, msg: Msg) -> bool {
        self.out.push(msg)
    }

    /// Sends the queue from this thread, unless another thread sends or the peer is
    /// not connected (then the link's thread is woken to connect).
    fn send_queued(&self, shared: &Arc<Shared>) {
        if self.broken.swap(false, Ordering::Relaxed) {
            self.out.disconnect();
        }
        let flushed = self.out.flush(|client, batch| {
            // For a `Request`: whether it opens a stream (none is open for its
            // attempt); for the others: whether the attempt's stream is open.
            let batch: Vec<(Msg, bool)> = {
                let mut open = relock(&self.open);
                batch
                    .into_iter()
                    .map(|m| {
                        let id = m.body.id();
                        let flag = if m.body.kind() == MsgKind::Request {
                            open.insert(id)
                        } else {
                            open.contains(&id)
                        };
                        (m, flag)
                    })
                    .collect()
            };
            self.send_batch(shared, client, batch)
        });
        if flushed == Flush::NotConnected {
            self.out.wake();
        }
    }

    /// Makes the calls for `batch` (with each message, for a `Request`: open a stream;
    /// else: the attempt's stream is open). Answers that matter are waited for on the
    /// node's tasks; the others are detached (nobody waits for them: the arbiter's
    /// answer to a `Fence` goes down the open stream, and `Release`, `Relinquish` and
    /// `refresh` answer nothing). `false` if that failed (the calls are cancelled, and
    /// the core sends again).
    fn send_batch(&self, shared: &Arc<Shared>, c: &PeerClient, batch: Vec<(Msg, bool)>) -> bool {
        let peer = self.peer;
        let timeout = call_timeout(shared);
        let mut pending = Vec::with_capacity(batch.len());
        let mut failed = false;
        let mut detach = |r: Result<(), RpcError<NodeError>>| {
            if let Err(e) = r {
                shared.undelivered.fetch_add(1, Ordering::Relaxed);
                failed |= connection_failed(&e);
            }
        };
        for (msg, flag) in batch {
            let id = msg.body.id();
            match msg.body.kind() {
                MsgKind::Request if flag => {
                    let stream = c.with_timeout(2 * shared.lease + timeout).request(msg);
                    let sh = shared.clone();
                    let read = shared.tasks.run(move || {
                        let link = sh.link(peer);
                        for item in stream {
                            match item {
                                // Only the arbiter this stream goes to speaks on it.
                                Ok(answer) if answer.from == peer => {
                                    if sh.deliver(answer, false).is_err() {
                                        break;
                                    }
                                }
                                Err(e) if connection_failed(&e) => {
                                    if let Some(link) = link {
                                        link.broken.store(true, Ordering::Relaxed);
                                    }
                                    break;
                                }
                                _ => break,
                            }
                        }
                        if let Some(link) = link {
                            relock(&link.open).remove(&id);
                        }
                    });
                    if read.is_err() {
                        relock(&self.open).remove(&id);
                    }
                }
                MsgKind::Request => detach(c.refresh(msg).detach()),
                MsgKind::Relinquish => detach(c.relinquish(msg).detach()),
                MsgKind::Release => detach(c.release(msg).detach()),
                MsgKind::Fence if flag => detach(c.fence(msg).detach()),
                MsgKind::Fence => pending.push(c.fence(msg)),
                MsgKind::Renew => pending.push(c.renew(msg)),
                _ => {
                    shared.undelivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if failed {
            self.broken.store(true, Ordering::Relaxed);
        }
        if pending.is_empty() {
            return true;
        }
        let sh = shared.clone();
        let waited = shared.tasks.run(move || {
            for call in pending {
                let err = match call.wait() {
                    Ok(Some(ack)) if ack.from == peer => {
                        let _ = sh.deliver(ack, false);
                        None
                    }
                    Ok(_) => None,
                    Err(e) => Some(e),
                };
                if let Some(e) = err {
                    sh.undelivered.fetch_add(1, Ordering::Relaxed);
                    if connection_failed(&e)
                        && let Some(link) = sh.link(peer)
                    {
                        link.broken.store(true, Ordering::Relaxed);
                    }
                }
            }
        });
        waited.is_ok()
    }
}

/// The budget of a unary call to a peer, and of a connect.
fn call_timeout(shared: &Shared) -> Duration {
    shared.retransmit.max(Duration::from_millis(50))
}

/// The link's own thread: connects and reconnects to its peer, and sends what nobody
/// else sends (what the timer queued, what was queued while it connected).
fn link_loop(shared: &Arc<Shared>, link: &Link) {
    let timeout = call_timeout(shared);
    let mut opts = ClientOptions {
        timeout,
        ..ClientOptions::default()
    };
    opts.transport.connect_timeout = timeout;
    let mut down_until: Option<Instant> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        if link.out.is_pending() {
            link.send_queued(shared);
            if down_until.is_none_or(|t| Instant::now() >= t) && link.out.begin_connect() {
                // Others leave the queue alone while this thread connects.
                let connected = PeerClient::connect_with(&link.url, &opts).ok();
                down_until = match connected {
                    Some(_) => None,
                    // Do not dial again for every message while the peer is down.
                    None => Some(Instant::now() + timeout),
                };
                let lost = link.out.end_connect(connected.map(Arc::new));
                shared.undelivered.fetch_add(lost as u64, Ordering::Relaxed);
                continue;
            }
            // Down: the core sends again.
            let lost = link.out.drop_queued();
            shared.undelivered.fetch_add(lost as u64, Ordering::Relaxed);
        }
        link.out.wait(Duration::from_millis(100));
    }
}

/// Whether a call failed because its connection did (then the client reconnects).
fn connection_failed<E>(e: &RpcError<E>) -> bool {
    matches!(
        e,
        RpcError::ServerGone | RpcError::Transport(_) | RpcError::Protocol(_)
    )
}

/// Runs the core's timers.
fn timer_loop(shared: &Shared) {
    let mut inner = shared.lock();
    while !shared.stop.load(Ordering::Relaxed) {
        let now = monotonic_now();
        if inner.failed.is_none() {
            Shared::check_holders(&mut inner, now);
            inner.node.tick(now);
            shared.apply(&mut inner, None);
            shared.kick_links();
        }
        let wait = Shared::next_due(&inner)
            .map_or(Duration::from_secs(1), |d| {
                Duration::from_nanos(d.since(now))
            })
            .clamp(Duration::from_micros(100), Duration::from_secs(1));
        inner.timer_at = Some(now.after(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX)));
        inner = shared
            .tick
            .wait_timeout(inner, wait)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
        inner.timer_at = None;
    }
}

/// A running lock node: serves its peers and its host's processes, and runs the
/// protocol's timers, until [`shutdown`](Self::shutdown) or drop.
///
/// # Examples
///
/// A one-node cluster over shared memory, and a process of its host taking a lock
/// through it (see [`DistLock`](super::DistLock)):
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use shmlink::dlock::protocol::Config;
/// use shmlink::dlock::quorum::Majority;
/// use shmlink::dlock::{DistLock, Lock, LockGuard, LockNode, NodeOptions};
///
/// # let pid = std::process::id();
/// # let dir = std::env::temp_dir().join(format!("doc-locknode-{pid}"));
/// # std::fs::create_dir_all(&dir)?;
/// let mut protocol = Config::new(1, 0, Arc::new(Majority::new(1)?));
/// protocol.lease = Duration::from_millis(300); // a starting node grants nothing for a lease
/// protocol.retransmit = Duration::from_millis(20);
/// let node = LockNode::start(NodeOptions {
///     protocol,
///     members: vec![format!("shm://doc-locknode-peer-{pid}")],
///     listen: format!("shm://doc-locknode-peer-{pid}"),
///     local: Some(format!("shm://doc-locknode-local-{pid}")),
///     state_file: dir.join("node0.state"),
/// })?;
///
/// let mut lock = DistLock::open(node.local_url().unwrap(), "jobs")?;
/// assert_eq!(node.last_grant(), None);
/// let first = lock.lock()?.token();
/// assert!(node.last_grant().is_some()); // the grant's time at the node
/// let guard = lock.lock()?;
/// assert!(guard.token() > first);
/// assert!(guard.check().is_ok());
/// # drop(guard);
/// # drop(lock);
/// node.shutdown();
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LockNode {
    shared: Arc<Shared>,
    peer_server: Option<ServerHandle>,
    local_server: Option<ServerHandle>,
    threads: Vec<JoinHandle<()>>,
    peer_url: String,
    local_url: Option<String>,
}

impl fmt::Debug for LockNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockNode")
            .field("node", &self.shared.me)
            .field("peer_url", &self.peer_url)
            .field("local_url", &self.local_url)
            .finish_non_exhaustive()
    }
}

impl LockNode {
    /// Opens the state file (taking a new incarnation), listens, and starts.
    ///
    /// # Errors
    ///
    /// [`StartError`].
    pub fn start(opts: NodeOptions) -> Result<LockNode, StartError> {
        let nodes = opts.protocol.quorums.nodes();
        if opts.members.len() != nodes {
            return Err(StartError::Members {
                given: opts.members.len(),
                nodes,
            });
        }
        let state = NodeState::open(&opts.state_file).map_err(StartError::State)?;
        let me = opts.protocol.node;
        let (epoch, lease, retransmit) = (
            opts.protocol.epoch,
            opts.protocol.lease,
            opts.protocol.retransmit,
        );
        let node = Node::new(
            opts.protocol,
            state.incarnation(),
            state.reserved(),
            monotonic_now(),
        )
        .map_err(StartError::Config)?;
        let links = (0..nodes)
            .map(|n| {
                (n != usize::from(me)).then(|| Link::new(n as NodeId, opts.members[n].clone()))
            })
            .collect();
        let shared = Arc::new(Shared {
            me,
            epoch,
            lease,
            retransmit,
            inner: Mutex::new(Inner {
                node,
                state,
                failed: None,
                routes: HashMap::new(),
                timer_at: None,
                waiters: HashMap::new(),
            }),
            tick: Condvar::new(),
            links,
            stop: AtomicBool::new(false),
            undelivered: AtomicU64::new(0),
            last_grant: AtomicU64::new(0),
            tasks: Tasks::new(format!("shmlink-dlock-{me}-wait")),
        });
        // Every handler only feeds the core and returns (a request stream is detached
        // and goes on without it): they run on the connections' readers, without a
        // hand-off to a worker.
        let peer_server = Server::new(PeerServer(PeerSide(shared.clone())))
            .workers(0)
            .serve(&opts.listen)
            .map_err(|source| StartError::Listen { source })?;
        let mut started = LockNode {
            peer_url: peer_server.url().unwrap_or(&opts.listen).to_owned(),
            shared: shared.clone(),
            peer_server: Some(peer_server),
            local_server: None,
            threads: Vec::new(),
            local_url: None,
        };
        if let Some(url) = &opts.local {
            // Every handler only feeds the core and returns (an `acquire` stream is
            // detached): they run on the connections' readers.
            let local = Server::new(LocalServer(LocalSide(shared.clone())))
                .workers(0)
                .serve(url)
                .map_err(|source| StartError::Listen { source })?;
            started.local_url = Some(local.url().unwrap_or(url).to_owned());
            started.local_server = Some(local);
        }
        for peer in (0..nodes).filter(|&n| n != usize::from(me)) {
            let sh = shared.clone();
            let t = std::thread::Builder::new()
                .name(format!("shmlink-dlock-peer-{peer}"))
                .spawn(move || {
                    if let Some(link) = sh.links[peer].as_ref() {
                        link_loop(&sh, link);
                    }
                })
                .map_err(StartError::Thread)?;
            started.threads.push(t);
        }
        let sh = shared.clone();
        let timer = std::thread::Builder::new()
            .name("shmlink-dlock-timer".into())
            .spawn(move || timer_loop(&sh))
            .map_err(StartError::Thread)?;
        started.threads.push(timer);
        Ok(started)
    }

    /// This node's id.
    #[must_use]
    pub fn id(&self) -> NodeId {
        self.shared.me
    }

    /// Where the node serves its peers.
    #[must_use]
    pub fn peer_url(&self) -> &str {
        &self.peer_url
    }

    /// Where the processes of this host reach the node, if anywhere.
    #[must_use]
    pub fn local_url(&self) -> Option<&str> {
        self.local_url.as_deref()
    }

    /// The node's state and its attempts (what `shmlink ls` shows).
    #[must_use]
    pub fn status(&self) -> NodeStatus {
        self.shared.status()
    }

    /// How long the last grant to a local client took at this node: from its
    /// `acquire` to the grant, the part of an acquisition that Maekawa's algorithm
    /// takes (for an uncontended lock, the quorum's two round trips: votes, then the
    /// fence), without the client's own call to the node. `None` before the first.
    ///
    /// # Examples
    ///
    /// See [`LockNode`]: `node.last_grant()` is `Some` after the first `lock()`.
    #[must_use]
    pub fn last_grant(&self) -> Option<Duration> {
        match self.shared.last_grant.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// The protocol core's counters.
    #[must_use]
    pub fn stats(&self) -> protocol::Stats {
        self.shared.lock().node.stats().clone()
    }

    /// Stops serving and joins the node's threads. Locks held through the node are
    /// not released: their votes lapse with their leases, as after a crash.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.tasks.close();
        self.shared.tick.notify_all();
        for link in self.shared.links.iter().flatten() {
            link.out.wake();
        }
        if let Some(s) = self.local_server.take() {
            s.shutdown(Duration::from_millis(200));
        }
        if let Some(s) = self.peer_server.take() {
            s.shutdown(Duration::from_millis(200));
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for LockNode {
    fn drop(&mut self) {
        self.stop();
    }
}

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
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::protocol::{self, LockName, Msg, MsgKind, Nanos, Node, Out, RequestId, RequestState};
use super::quorum::NodeId;
use super::service::{
    AcquireArgs, Local, LocalServer, LockEvent, LockInfo, NodeError, NodeStatus, Peer, PeerClient,
    PeerServer, ReleaseArgs,
};
use super::tasks::Tasks;
use super::{ConfigFileError, FencingToken, NodeConfig, NodeState, StateError};
use crate::rpc::{ClientOptions, Context, RpcError, Server, ServerHandle, Sink};
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

/// Workers of a node's local server: each attempt of a local client (one per lock
/// name on a host, since each takes the host's Bakery lock first) holds one while it
/// waits and holds; calls beyond them queue.
pub const LOCAL_WORKERS: usize = 64;

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
    /// Listening failed.
    Listen {
        /// The URL.
        url: String,
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
            Self::Listen { url, source } => write!(f, "lock node: listen at {url}: {source}"),
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
    events: Sender<LockEvent>,
    /// The validity last reported.
    reported: Option<Nanos>,
    /// When the client must have answered the last report with a keep-alive, or the
    /// node stops renewing the lock.
    ack_due: Option<Nanos>,
}

/// An arbiter-side stream, by attempt.
struct Route {
    generation: u64,
    tx: SyncSender<Msg>,
}

struct Inner {
    node: Node,
    state: NodeState,
    /// Set when a `Persist` failed: the node stops acting (anything after the failed
    /// write could acknowledge a token the file does not cover).
    failed: Option<String>,
    routes: HashMap<RequestId, Route>,
    generation: u64,
    /// Request streams this node has open to its arbiters.
    open: HashSet<(NodeId, RequestId)>,
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
    queues: Vec<Option<Mutex<Sender<Msg>>>>,
    /// Set by a request stream that failed on its connection: the peer's sender
    /// thread reconnects before its next call.
    broken: Vec<AtomicBool>,
    stop: AtomicBool,
    undelivered: AtomicU64,
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
    fn deliver(&self, msg: Msg, want_ack: bool) -> Result<Option<Msg>, NodeError> {
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
        Ok(ack.and_then(|(_, m)| m))
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
                            let _ = w.events.send(LockEvent::Lost { expired: false });
                        }
                    }
                }
                Out::Send(msg) => self.route(inner, msg, ack.as_deref_mut()),
                Out::Granted {
                    lock,
                    token,
                    valid_until,
                    ..
                } => {
                    if let Some(w) = inner.waiters.get_mut(&lock) {
                        w.reported = Some(valid_until);
                        w.ack_due = Some(monotonic_now().after(self.ack_window()));
                        let _ = w.events.send(LockEvent::Granted {
                            token: FencingToken(token),
                            valid_until: valid_until.0,
                        });
                    }
                }
                Out::Lost { lock, reason, .. } => {
                    if let Some(w) = inner.waiters.get_mut(&lock) {
                        w.reported = None;
                        w.ack_due = None;
                        let expired = reason == protocol::LostReason::Expired;
                        let _ = w.events.send(LockEvent::Lost { expired });
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
                let _ = w.events.send(LockEvent::Renewed { valid_until: new.0 });
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

    /// The earliest of the core's deadlines and the keep-alives due.
    fn next_due(inner: &Inner) -> Option<Nanos> {
        let acks = inner.waiters.values().filter_map(|w| w.ack_due).min();
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

    /// Stops renewing the locks whose holders did not answer in time.
    fn check_holders(inner: &mut Inner, now: Nanos) {
        let Inner { node, waiters, .. } = inner;
        for (lock, w) in waiters.iter_mut() {
            if w.ack_due.is_some_and(|due| now >= due) {
                w.ack_due = None;
                node.stop_renewing(*lock, now);
            }
        }
    }

    fn route(&self, inner: &mut Inner, msg: Msg, ack: Option<&mut (RequestId, Option<Msg>)>) {
        let id = msg.body.id();
        match msg.body.kind() {
            MsgKind::Locked | MsgKind::Failed | MsgKind::Inquire => {
                let sent = inner.routes.get(&id).is_some_and(|r| {
                    !matches!(
                        r.tx.try_send(msg),
                        Err(TrySendError::Disconnected(_) | TrySendError::Full(_))
                    )
                });
                if !sent {
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
            MsgKind::FenceAck => match ack {
                // The acknowledgement wins over another answer put there first.
                Some((want, slot)) if *want == id => *slot = Some(msg),
                _ => {
                    self.undelivered.fetch_add(1, Ordering::Relaxed);
                }
            },
            _ => {
                let queued = self
                    .queues
                    .get(usize::from(msg.to))
                    .and_then(Option::as_ref)
                    .is_some_and(|q| relock(q).send(msg).is_ok());
                if !queued {
                    self.undelivered.fetch_add(1, Ordering::Relaxed);
                }
            }
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

    fn unary(&self, method: &str, kind: MsgKind, msg: Msg) -> Result<Option<Msg>, NodeError> {
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
    fn request(&self, ctx: &Context, msg: Msg, sink: &mut Sink<'_, Msg>) -> Result<(), NodeError> {
        let s = &self.0;
        if msg.body.kind() != MsgKind::Request {
            return Err(NodeError::wrong_kind("request", msg.body.kind()));
        }
        s.check_addressed(&msg)?;
        let id = msg.body.id();
        // Room for a burst of answers; a stream that falls that far behind drops
        // answers, which only costs a retransmission.
        let (tx, rx) = mpsc::sync_channel(64);
        let generation = {
            let mut inner = s.lock();
            inner.generation += 1;
            let generation = inner.generation;
            inner.routes.insert(id, Route { generation, tx });
            generation
        };
        s.deliver(msg, false)?;
        // A stream lives at most two leases; the requester's next keep-alive reopens it.
        let end = Instant::now() + 2 * s.lease;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(answer) => {
                    if sink.send(&answer).is_err() {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if ctx.is_cancelled() || Instant::now() >= end || s.stop.load(Ordering::Relaxed)
                    {
                        break;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let mut inner = s.lock();
        if inner
            .routes
            .get(&id)
            .is_some_and(|r| r.generation == generation)
        {
            inner.routes.remove(&id);
        }
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
        ctx: &Context,
        args: AcquireArgs,
        sink: &mut Sink<'_, LockEvent>,
    ) -> Result<(), NodeError> {
        let s = &self.0;
        let lock = LockName::new(&args.name);
        let (tx, rx) = mpsc::channel();
        let mut tx = Some(tx);
        loop {
            let mut inner = s.lock();
            if let Some(reason) = &inner.failed {
                return Err(s.stopped(reason));
            }
            if s.stop.load(Ordering::Relaxed) {
                return Err(s.stopped("shutting down"));
            }
            // Another client of this host holds or waits (one that skipped the
            // host's Bakery lock, or one that just left and is not noticed yet): wait
            // for it, as for any holder.
            if !inner.waiters.contains_key(&lock)
                && inner.node.acquire(lock, monotonic_now()).is_ok()
            {
                let events = tx.take().expect("inserted once");
                inner.waiters.insert(
                    lock,
                    Waiter {
                        name: args.name.clone(),
                        key: args.key,
                        pid: args.pid,
                        events,
                        reported: None,
                        ack_due: None,
                    },
                );
                s.apply(&mut inner, None);
                break;
            }
            // Or the lock of a client that left without releasing runs out (within a
            // lease).
            drop(inner);
            if ctx.is_cancelled() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(event) => {
                    if sink.send(&event).is_err() {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if ctx.is_cancelled() || s.stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                // Released through `release`.
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
        // The client went away (or cancelled) without releasing. An attempt not granted
        // yet is withdrawn. A granted lock is not released: the client may be alive
        // behind a broken connection and act until the validity it was told, so the
        // lock is only no longer renewed, and runs out then.
        let mut inner = s.lock();
        if inner.waiters.get(&lock).is_some_and(|w| w.key == args.key) {
            inner.waiters.remove(&lock);
            let now = monotonic_now();
            if matches!(
                inner.node.request(lock),
                Some((_, RequestState::Held { .. }))
            ) {
                inner.node.stop_renewing(lock, now);
            } else {
                inner.node.cancel(lock, now);
            }
            s.apply(&mut inner, None);
        }
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

/// A call to a peer whose answer the sender thread waits for.
enum Pending {
    Unit(crate::rpc::Call<(), NodeError>),
    Ack(crate::rpc::Call<Option<Msg>, NodeError>),
}

/// Sends this node's messages to `peer`: connects and reconnects, opens the request
/// streams, and feeds answers back to the core.
fn peer_loop(shared: &Arc<Shared>, peer: NodeId, url: &str, rx: &Receiver<Msg>) {
    let timeout = shared.retransmit.max(Duration::from_millis(50));
    let mut opts = ClientOptions {
        timeout,
        ..ClientOptions::default()
    };
    opts.transport.connect_timeout = timeout;
    let mut client: Option<PeerClient> = None;
    let mut down_until: Option<Instant> = None;
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => {
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        if shared.broken[usize::from(peer)].swap(false, Ordering::Relaxed) {
            client = None;
        }
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        if client.is_none() {
            if down_until.is_some_and(|t| Instant::now() < t) {
                shared
                    .undelivered
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                continue;
            }
            match PeerClient::connect_with(url, &opts) {
                Ok(c) => {
                    client = Some(c);
                    down_until = None;
                }
                Err(_) => {
                    // The core retransmits: drop what was queued, and do not dial again
                    // for every message while the peer is down.
                    down_until = Some(Instant::now() + timeout);
                    shared
                        .undelivered
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    continue;
                }
            }
        }
        let Some(c) = client.as_ref() else { continue };
        let mut pending = Vec::with_capacity(batch.len());
        for msg in batch {
            let id = msg.body.id();
            match msg.body.kind() {
                MsgKind::Request => {
                    let opened = shared.lock().open.insert((peer, id));
                    if opened {
                        let stream = c.with_timeout(2 * shared.lease + timeout).request(msg);
                        let sh = shared.clone();
                        let spawned = shared.tasks.run(move || {
                            for item in stream {
                                match item {
                                    // Only the arbiter this stream goes to speaks on it.
                                    Ok(answer) if answer.from == peer => {
                                        if sh.deliver(answer, false).is_err() {
                                            break;
                                        }
                                    }
                                    Err(e) if connection_failed(&e) => {
                                        sh.broken[usize::from(peer)].store(true, Ordering::Relaxed);
                                        break;
                                    }
                                    _ => break,
                                }
                            }
                            sh.lock().open.remove(&(peer, id));
                        });
                        if spawned.is_err() {
                            shared.lock().open.remove(&(peer, id));
                        }
                    } else {
                        pending.push(Pending::Unit(c.refresh(msg)));
                    }
                }
                MsgKind::Relinquish => pending.push(Pending::Unit(c.relinquish(msg))),
                MsgKind::Release => pending.push(Pending::Unit(c.release(msg))),
                MsgKind::Fence => pending.push(Pending::Ack(c.fence(msg))),
                MsgKind::Renew => pending.push(Pending::Ack(c.renew(msg))),
                _ => {
                    shared.undelivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if pending.is_empty() {
            continue;
        }
        // The answers are waited for elsewhere: this thread goes on sending.
        let sh = shared.clone();
        let waited = shared.tasks.run(move || {
            for p in pending {
                let err = match p {
                    Pending::Unit(call) => call.wait().err(),
                    Pending::Ack(call) => match call.wait() {
                        Ok(Some(ack)) if ack.from == peer => {
                            let _ = sh.deliver(ack, false);
                            None
                        }
                        Ok(_) => None,
                        Err(e) => Some(e),
                    },
                };
                if let Some(e) = err {
                    sh.undelivered.fetch_add(1, Ordering::Relaxed);
                    if connection_failed(&e) {
                        sh.broken[usize::from(peer)].store(true, Ordering::Relaxed);
                    }
                }
            }
        });
        if waited.is_err() {
            // (Shutting down, or out of threads: the calls are cancelled, and the
            // core retransmits.)
            client = None;
        }
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
/// let first = lock.lock()?.token();
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
        let mut receivers = Vec::new();
        let queues = (0..nodes)
            .map(|n| {
                (n != usize::from(me)).then(|| {
                    let (tx, rx) = mpsc::channel();
                    receivers.push((n as NodeId, rx));
                    Mutex::new(tx)
                })
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
                generation: 0,
                open: HashSet::new(),
                timer_at: None,
                waiters: HashMap::new(),
            }),
            tick: Condvar::new(),
            queues,
            broken: (0..nodes).map(|_| AtomicBool::new(false)).collect(),
            stop: AtomicBool::new(false),
            undelivered: AtomicU64::new(0),
            tasks: Tasks::new(format!("shmlink-dlock-{me}-wait")),
        });
        // Every open request stream holds a worker for as long as it lives: room for
        // a few locks contended by every node at once.
        let workers = 16 + 8 * nodes;
        // Unary handlers only feed the core and never wait: they run on the
        // connection's reader, without a hand-off to a worker.
        let peer_server = Server::new(PeerServer(PeerSide(shared.clone())))
            .workers(workers)
            .inline_unary(true)
            .serve(&opts.listen)
            .map_err(|source| StartError::Listen {
                url: opts.listen.clone(),
                source,
            })?;
        let mut started = LockNode {
            peer_url: peer_server.url().unwrap_or(&opts.listen).to_owned(),
            shared: shared.clone(),
            peer_server: Some(peer_server),
            local_server: None,
            threads: Vec::new(),
            local_url: None,
        };
        if let Some(url) = &opts.local {
            // Each attempt of a local client holds a worker while it waits and holds.
            let local = Server::new(LocalServer(LocalSide(shared.clone())))
                .workers(LOCAL_WORKERS)
                .inline_unary(true)
                .serve(url)
                .map_err(|source| StartError::Listen {
                    url: url.clone(),
                    source,
                })?;
            started.local_url = Some(local.url().unwrap_or(url).to_owned());
            started.local_server = Some(local);
        }
        for (peer, rx) in receivers {
            let sh = shared.clone();
            let url = opts.members[usize::from(peer)].clone();
            if let Ok(t) = std::thread::Builder::new()
                .name(format!("shmlink-dlock-peer-{peer}"))
                .spawn(move || peer_loop(&sh, peer, &url, &rx))
            {
                started.threads.push(t);
            }
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

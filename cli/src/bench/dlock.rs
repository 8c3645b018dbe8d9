//! `shmlink bench dlock`: the distributed lock (Maekawa's quorum algorithm with leases
//! and fencing tokens, [`shmlink::dlock`]) against same-run baselines.
//!
//! Everything runs in this one process, over TCP on loopback: clusters of N = 3, 5 and 9
//! [`LockNode`]s talk to each other, and each client reaches its own node, over TCP
//! (network namespaces, one per node, are a later step; a host's processes would reach
//! their node over `shm://`, which in one process of a thousand threads costs more than
//! it saves: every shm wait re-reads `/proc/PID/stat`, whose cost grows with the
//! threads of the process). The nodes use the default quorum system for their size, a
//! lease of 3 s (so that no renewal falls inside a measured critical section) and a
//! retransmission interval of 50 ms. Measured in one run:
//!
//! - **uncontended**: one client on node 0 takes and releases a lock over and over,
//!   after the lock-delay of the starting nodes has passed (the first grant is awaited
//!   before timing): the median acquire and acquire+release latency, the median acquire
//!   as node 0 measured it ([`LockNode::last_grant`]: from the client's `acquire` call
//!   to the grant, without the client's own call to the node), and the protocol
//!   messages per critical section, summed over every node (`sent`, plus `looped`: what
//!   a node sends itself as a member of its own quorum), against the quorum size K
//!   (5K expected: `Request`, `Locked`, `Fence`, `FenceAck` and `Release` with each
//!   member; the goal is 3K..6K);
//! - **the quorum's round trip**, measured directly: a unary RPC echo to a server
//!   beside each other member of node 0's quorum (its messages to itself never leave
//!   its core), all in flight at once, over TCP loopback, each server running its
//!   handler on the connection's reader, as a node's peer server does (`workers(0)`).
//!   The goal is an uncontended acquire within two such round trips plus 10%. For
//!   reference, one such echo alone;
//! - **contended**: one client per node, all on one lock, for a fixed time (2 s; 0.5 s
//!   with `--quick`): critical sections per second and messages per critical section;
//!   every critical section increments a counter behind a [`FencedResource`] and checks
//!   that nobody wrote in between and that tokens strictly rise;
//! - **baselines**: one central lock server over the same RPC on TCP loopback
//!   (`acquire` waits until the lock is free, first come first served, and answers a
//!   token; `release`: 3 messages per critical section, and no fault tolerance), its
//!   uncontended latency and its throughput with as many clients as the cluster has
//!   nodes, with the same counter check; and the host-local Bakery lock that a
//!   [`DistLock`] takes first (named, [`HOST_PARTICIPANTS`] slots), uncontended. The
//!   central server runs its handlers inline: each client has a connection of its own
//!   and one call at a time on it, so a waiting `acquire` holds only its own
//!   connection's reader, and no call pays a hand-off to a pool.
//!
//! The uncontended cases (every cluster, the pings, the central server, the Bakery lock)
//! run batch by batch, interleaved, and the contended ones run by run, interleaved with
//! the central server's; the medians of the repetitions are reported, so that a slow
//! spell of the machine hits every case alike. At the end every node shuts down, and
//! the state files and the host locks' segments of the run are removed.

use std::collections::{HashMap, VecDeque};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shmlink::dlock::protocol::Config;
use shmlink::dlock::quorum::{NodeId, QuorumSystem, default_for};
use shmlink::dlock::{
    DistLock, FencedResource, FencingToken, HOST_PARTICIPANTS, Lock, LockGuard, LockNode,
    NodeOptions,
};
use shmlink::lock::{BakeryLock, LockError};
use shmlink::rpc::{ClientOptions, Context, Server, ServerHandle};
use shmlink::segment;

use super::rpc::Never;
use super::{Goal, LIMIT, Measurement, builder, median, print_goal_table, print_json};
use crate::Result;

/// The cluster sizes measured.
const SIZES: [usize; 3] = [3, 5, 9];
/// The nodes' lease: long enough that no renewal (every lease / 3) falls inside a
/// measured critical section by accident.
const LEASE: Duration = Duration::from_secs(3);
/// The nodes' retransmission interval.
const RETRANSMIT: Duration = Duration::from_millis(50);

/// Iteration counts of one run.
struct Plan {
    /// Interleaved batches per uncontended case (after one warm-up batch).
    rounds: usize,
    /// Critical sections (or round trips) per batch of the RPC and dlock cases.
    lock_iters: u64,
    /// Calls per batch of the Bakery case.
    bakery_iters: u64,
    /// How long each contended run lasts.
    contended: Duration,
    /// Repetitions of each contended case (interleaved; medians reported).
    reps: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                rounds: 3,
                lock_iters: 50,
                bakery_iters: 100_000,
                contended: Duration::from_millis(500),
                reps: 1,
            }
        } else {
            Self {
                rounds: 11,
                lock_iters: 400,
                bakery_iters: 1_000_000,
                contended: Duration::from_secs(2),
                reps: 3,
            }
        }
    }
}

shmlink::service! {
    /// The probe of the quorum's round trip.
    pub trait Ping {
        client PingClient;
        server PingServer;
        error Never;
        /// Returns its argument.
        fn echo(x: u64) -> u64;
    }
}

struct Echo;

impl Ping for Echo {
    fn echo(&self, _ctx: &Context, x: u64) -> std::result::Result<u64, Never> {
        Ok(x)
    }
}

/// Why the central lock server refused a call.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum CentralError {
    /// `release` of a lock not held with that token.
    NotHeld,
    /// The caller went away, or its deadline passed, while it waited.
    Gone,
}

impl std::fmt::Display for CentralError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotHeld => "the lock is not held with that token",
            Self::Gone => "the caller stopped waiting",
        })
    }
}

shmlink::service! {
    /// One central lock server: the baseline, without fault tolerance. A critical
    /// section costs 3 messages: the `acquire` request, its answer (the grant) and the
    /// `release` (whose empty answer is not counted, as the answers of the nodes'
    /// `Release` calls are not).
    pub trait Central {
        client CentralClient;
        server CentralServer;
        error CentralError;
        /// Waits until the lock `name` is free (first come, first served), takes it and
        /// answers its token.
        fn acquire(name: String) -> u64;
        /// Releases the lock `name` held with `token`.
        fn release(args: (String, u64)) -> ();
    }
}

/// One lock of the central server.
#[derive(Default)]
struct Entry {
    /// The holder's token.
    holder: Option<u64>,
    /// Tickets of the waiting calls, in arrival order.
    queue: VecDeque<u64>,
    /// The last ticket handed out.
    tickets: u64,
    /// The last token handed out.
    tokens: u64,
}

#[derive(Default)]
struct CentralLocks {
    locks: Mutex<HashMap<String, Entry>>,
    /// Notified when a lock is released or a waiter leaves.
    changed: Condvar,
}

impl CentralLocks {
    fn table(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Central for CentralLocks {
    fn acquire(&self, ctx: &Context, name: String) -> std::result::Result<u64, CentralError> {
        let mut table = self.table();
        let e = table.entry(name.clone()).or_default();
        e.tickets += 1;
        let ticket = e.tickets;
        e.queue.push_back(ticket);
        loop {
            let e = table.get_mut(&name).ok_or(CentralError::Gone)?;
            if e.holder.is_none() && e.queue.front() == Some(&ticket) {
                e.queue.pop_front();
                e.tokens += 1;
                e.holder = Some(e.tokens);
                return Ok(e.tokens);
            }
            if ctx.is_cancelled() {
                e.queue.retain(|&t| t != ticket);
                self.changed.notify_all();
                return Err(CentralError::Gone);
            }
            table = self
                .changed
                .wait_timeout(table, Duration::from_millis(50))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    fn release(
        &self,
        _ctx: &Context,
        (name, token): (String, u64),
    ) -> std::result::Result<(), CentralError> {
        let mut table = self.table();
        match table.get_mut(&name) {
            Some(e) if e.holder == Some(token) => {
                e.holder = None;
                self.changed.notify_all();
                Ok(())
            }
            _ => Err(CentralError::NotHeld),
        }
    }
}

/// A free TCP port on loopback, outside the ephemeral range (a port picked with
/// `bind(0)` and released could be taken by a node's own local listener first).
fn free_tcp_port() -> Result<u16> {
    Ok(shmlink::transport::unused_tcp_port(
        std::net::Ipv4Addr::LOCALHOST.into(),
    )?)
}

/// Client options of the bench's own RPC clients.
fn client_options() -> ClientOptions {
    ClientOptions {
        timeout: LIMIT,
        ..ClientOptions::default()
    }
}

/// A cluster of lock nodes over TCP loopback, and the echo servers beside the other
/// members of node 0's quorum.
struct Cluster {
    nodes: Vec<LockNode>,
    /// The quorum system's name.
    quorums: &'static str,
    /// The size of node 0's quorum (K).
    k: usize,
    /// One client per echo server.
    pings: Vec<PingClient>,
    _ping_servers: Vec<ServerHandle>,
}

impl Cluster {
    /// Starts `n` nodes, on free ports of TCP loopback, with state files in `dir`,
    /// and the echo servers.
    fn start(n: usize, dir: &Path) -> Result<Cluster> {
        let quorums: Arc<dyn QuorumSystem> = Arc::from(default_for(n)?);
        let members = (0..n)
            .map(|_| Ok(format!("tcp://127.0.0.1:{}", free_tcp_port()?)))
            .collect::<Result<Vec<String>>>()?;
        let mut nodes = Vec::with_capacity(n);
        for (i, listen) in members.iter().enumerate() {
            let mut protocol = Config::new(1, NodeId::try_from(i)?, quorums.clone());
            protocol.lease = LEASE;
            protocol.retransmit = RETRANSMIT;
            nodes.push(LockNode::start(NodeOptions {
                protocol,
                members: members.clone(),
                listen: listen.clone(),
                local: Some("tcp://127.0.0.1:0".to_owned()),
                state_file: dir.join(format!("n{n}.node{i}.state")),
            })?);
        }
        let quorum = quorums.quorum(0);
        let (mut pings, mut servers) = (Vec::new(), Vec::new());
        for _ in quorum.iter().filter(|&&m| m != 0) {
            let server = Server::new(PingServer(Echo))
                // As a node's peer server runs its handlers (src/dlock/node.rs).
                .workers(0)
                .serve("tcp://127.0.0.1:0")?;
            let url = server.url().ok_or("echo server without a URL")?.to_owned();
            pings.push(PingClient::connect_with(&url, &client_options())?);
            servers.push(server);
        }
        Ok(Cluster {
            nodes,
            quorums: quorums.name(),
            k: quorum.len(),
            pings,
            _ping_servers: servers,
        })
    }

    /// Node `i`'s local URL.
    fn local(&self, i: usize) -> Result<&str> {
        Ok(self.nodes[i]
            .local_url()
            .ok_or("a node without a local URL")?)
    }

    /// Protocol messages of every node so far: sent to others, and looped back to
    /// itself.
    fn messages(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| {
                let s = n.stats();
                s.sent.total() + s.looped.total()
            })
            .sum()
    }

    /// Stops every node, in parallel (each waits out its servers' grace period).
    fn shutdown(self) {
        std::thread::scope(|s| {
            for node in self.nodes {
                s.spawn(move || node.shutdown());
            }
        });
    }
}

/// What one batch of an uncontended case measured.
#[derive(Clone, Copy, Default)]
struct Batch {
    /// The case's latency (ns): acquire+release, or the round trip.
    ns: f64,
    /// The acquire alone (ns), where there is one.
    acquire_ns: f64,
    /// The acquire as the node measured it, without the client's call to the node
    /// (ns), where there is one.
    node_ns: f64,
    /// Protocol messages per critical section, where counted.
    messages: f64,
}

/// One batch of an uncontended case.
type Case<'a> = Box<dyn FnMut() -> Result<Batch> + 'a>;

/// Runs one warm-up batch of every case, then `rounds` rounds of one batch each, and
/// returns every case's batches.
fn interleaved(rounds: usize, cases: &mut [Case<'_>]) -> Result<Vec<Vec<Batch>>> {
    for case in cases.iter_mut() {
        case()?;
    }
    let mut batches = vec![Vec::with_capacity(rounds); cases.len()];
    for _ in 0..rounds {
        for (case, b) in cases.iter_mut().zip(&mut batches) {
            b.push(case()?);
        }
    }
    Ok(batches)
}

/// The median of `field` over `batches`.
fn med(batches: &[Batch], field: fn(&Batch) -> f64) -> f64 {
    median(batches.iter().map(field).collect())
}

/// `iters` uncontended critical sections through `lock`: median acquire and
/// acquire+release latency, and the messages per critical section of `cluster`.
fn dlock_batch(cluster: &Cluster, lock: &mut DistLock, iters: u64) -> Result<Batch> {
    let before = cluster.messages();
    let mut at_node = Vec::with_capacity(iters as usize);
    let mut acquire = Vec::with_capacity(iters as usize);
    let mut pair = Vec::with_capacity(iters as usize);
    for _ in 0..iters {
        let t0 = Instant::now();
        let guard = lock.try_lock_for(LIMIT)?;
        let t1 = Instant::now();
        guard.check()?;
        let node = cluster.nodes[0]
            .last_grant()
            .ok_or("node 0 reports no grant")?;
        at_node.push(node.as_nanos() as f64);
        drop(guard);
        let t2 = Instant::now();
        acquire.push((t1 - t0).as_nanos() as f64);
        pair.push((t2 - t0).as_nanos() as f64);
    }
    let messages = cluster.messages() - before;
    Ok(Batch {
        ns: median(pair),
        acquire_ns: median(acquire),
        node_ns: median(at_node),
        messages: messages as f64 / iters as f64,
    })
}

/// `iters` round trips of the quorum: an echo to every member's server at once, timed
/// until the last answer; the median.
fn ping_batch(pings: &[PingClient], iters: u64) -> Result<Batch> {
    let mut samples = Vec::with_capacity(iters as usize);
    for i in 0..iters {
        let t0 = Instant::now();
        let calls: Vec<_> = pings.iter().map(|c| c.echo(i)).collect();
        for call in calls {
            let v = call.wait().map_err(|e| format!("echo: {e:?}"))?;
            if v != i {
                return Err(format!("echo({i}) returned {v}").into());
            }
        }
        samples.push(t0.elapsed().as_nanos() as f64);
    }
    Ok(Batch {
        ns: median(samples),
        ..Batch::default()
    })
}

/// `iters` uncontended critical sections through the central server: median acquire
/// and acquire+release latency.
fn central_batch(client: &CentralClient, iters: u64) -> Result<Batch> {
    let name = "uncontended".to_owned();
    let mut acquire = Vec::with_capacity(iters as usize);
    let mut pair = Vec::with_capacity(iters as usize);
    for _ in 0..iters {
        let t0 = Instant::now();
        let token = client
            .acquire(name.clone())
            .wait()
            .map_err(|e| format!("central acquire: {e:?}"))?;
        let t1 = Instant::now();
        client
            .release((name.clone(), token))
            .wait()
            .map_err(|e| format!("central release: {e:?}"))?;
        let t2 = Instant::now();
        acquire.push((t1 - t0).as_nanos() as f64);
        pair.push((t2 - t0).as_nanos() as f64);
    }
    Ok(Batch {
        ns: median(pair),
        acquire_ns: median(acquire),
        ..Batch::default()
    })
}

/// The counter every contended critical section increments: `(count, last token)`.
type Counter = FencedResource<(u64, u64)>;

/// Increments `counter` under the lock held with `token`: fails if another holder
/// wrote since `seen` was read, or if the token did not rise.
fn increment(counter: &Counter, token: u64) -> std::result::Result<(), String> {
    let (seen, _) = counter.get();
    counter
        .apply(FencingToken(token), |c| {
            if c.0 != seen {
                return Err(format!(
                    "another holder wrote while token {token} held the lock"
                ));
            }
            if token <= c.1 {
                return Err(format!("token {token} after token {}", c.1));
            }
            *c = (seen + 1, token);
            Ok(())
        })
        .map_err(|e| e.to_string())?
}

/// A contended run: critical sections per second and messages per critical section.
#[derive(Clone, Copy)]
struct Contended {
    rate: f64,
    messages: f64,
}

/// Runs `section` over and over for each of `clients`, one thread each, all started
/// together, until `run` has passed; returns the critical sections and their rate,
/// after checking the counter they incremented.
fn race<C: Send>(
    clients: &mut [C],
    run: Duration,
    section: impl Fn(&mut C, &Counter) -> std::result::Result<(), String> + Sync,
) -> Result<(u64, f64)> {
    let counter = Counter::new("bench counter", (0, 0));
    let start = Barrier::new(clients.len() + 1);
    let (counts, elapsed) = std::thread::scope(|s| {
        let threads: Vec<_> = clients
            .iter_mut()
            .map(|c| {
                let (counter, start, section) = (&counter, &start, &section);
                s.spawn(move || {
                    start.wait();
                    let t0 = Instant::now();
                    let mut n = 0u64;
                    while t0.elapsed() < run {
                        section(c, counter)?;
                        n += 1;
                    }
                    Ok::<u64, String>(n)
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        let counts: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| Err("a client panicked".into())))
            .collect();
        (counts, t0.elapsed())
    });
    let mut total = 0;
    for c in counts {
        total += c?;
    }
    if counter.get().0 != total {
        return Err(format!("counted {} of {total} critical sections", counter.get().0).into());
    }
    Ok((total, total as f64 / elapsed.as_secs_f64()))
}

/// Every node's client competing for one lock for `run`.
fn dlock_contended(cluster: &Cluster, locks: &mut [DistLock], run: Duration) -> Result<Contended> {
    let before = cluster.messages();
    let sections = |lock: &mut DistLock, counter: &Counter| {
        let guard = lock.try_lock_for(LIMIT).map_err(|e| e.to_string())?;
        guard.check().map_err(|e| e.to_string())?;
        increment(counter, guard.token().0)
    };
    let (count, rate) = race(locks, run, sections)?;
    let messages = cluster.messages() - before;
    Ok(Contended {
        rate,
        messages: messages as f64 / count.max(1) as f64,
    })
}

/// As many central-server clients as `clients` competing for one lock for `run`.
fn central_contended(clients: &mut [CentralClient], run: Duration) -> Result<f64> {
    let (_, rate) = race(clients, run, |c, counter| {
        let token = c
            .acquire("contended".to_owned())
            .wait()
            .map_err(|e| format!("central acquire: {e:?}"))?;
        let done = increment(counter, token);
        c.release(("contended".to_owned(), token))
            .wait()
            .map_err(|e| format!("central release: {e:?}"))?;
        done
    })?;
    Ok(rate)
}

/// What the run leaves behind, removed on drop (also when the run fails): the state
/// file directory, and the host Bakery locks this process created for its clients.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(base: &str) -> Result<Scratch> {
        let dir = std::env::temp_dir().join(base);
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch { dir })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        // A DistLock creates its host's Bakery lock segment (`shmlink-dlock-*`) and
        // leaves it for the next process of the host; this run's nodes are gone, so
        // remove the ones this process created.
        let me = std::process::id();
        for info in segment::list().unwrap_or_default() {
            let ours = info.header.as_ref().is_some_and(|h| h.creator.pid == me);
            if ours && info.name.as_str().starts_with("shmlink-dlock-") {
                let _ = segment::unlink(info.name.as_str());
            }
        }
    }
}

/// The measurements of one cluster size.
struct BySize {
    n: usize,
    quorums: &'static str,
    k: usize,
    rtt: Vec<Batch>,
    dlock: Vec<Batch>,
    contended: Vec<Contended>,
    central: Vec<f64>,
}

/// Runs the `dlock` suite.
pub fn dlock(json: bool, quick: bool) -> Result {
    let p = Plan::new(quick);
    let base = format!("bench-dlock-{}", std::process::id());
    let scratch = Scratch::new(&base)?;
    let clusters = SIZES
        .iter()
        .map(|&n| Cluster::start(n, &scratch.dir))
        .collect::<Result<Vec<_>>>()?;
    let measured = measure(&p, &base, &clusters);
    for c in clusters {
        c.shutdown();
    }
    drop(scratch);
    let (results, goals) = rows(&measured?);
    if json {
        print_json(&results);
    } else {
        print_goal_table(
            &format!(
                "shmlink bench dlock (one process, nodes and clients on tcp loopback, \
                 lease {} s)",
                LEASE.as_secs()
            ),
            "lower is better for ns and msgs/CS, higher for CS/s",
            &results,
            &goals,
        );
    }
    Ok(())
}

/// The batches of the uncontended baselines, and the measurements of each size.
struct Measured {
    bakery: Vec<Batch>,
    central: Vec<Batch>,
    inline: Vec<Batch>,
    sized: Vec<BySize>,
}

/// Everything but the output, with the clusters started (and shut down by the caller
/// whatever happens here).
fn measure(p: &Plan, base: &str, clusters: &[Cluster]) -> Result<Measured> {
    let central_server = Server::new(CentralServer(CentralLocks::default()))
        .workers(0)
        .serve("tcp://127.0.0.1:0")?;
    let central_url = central_server
        .url()
        .ok_or("central server without a URL")?
        .to_owned();
    let central = CentralClient::connect_with(&central_url, &client_options())?;
    let inline_server = Server::new(PingServer(Echo))
        .workers(0)
        .serve("tcp://127.0.0.1:0")?;
    let inline = PingClient::connect_with(
        inline_server.url().ok_or("echo server without a URL")?,
        &client_options(),
    )?;
    let mut bakery = BakeryLock::create(
        builder(&format!("{base}.bakery")).unlink_on_drop(true),
        HOST_PARTICIPANTS,
    )?;

    // Every node's client, on one lock name for the contended runs, and node 0's on
    // another for the uncontended ones. The first grant waits out the lock-delay of the
    // starting nodes (a lease); one critical section through every node makes sure
    // each arbiter is past it before anything is timed.
    let mut contended_locks = Vec::new();
    let mut solo_locks = Vec::new();
    for c in clusters {
        let mut locks = Vec::with_capacity(c.nodes.len());
        for i in 0..c.nodes.len() {
            let mut lock = DistLock::open(c.local(i)?, "bench-contended")?;
            drop(lock.try_lock_for(LEASE * 3)?);
            locks.push(lock);
        }
        let mut solo = DistLock::open(c.local(0)?, "bench-uncontended")?;
        drop(solo.try_lock_for(LEASE * 3)?);
        contended_locks.push(locks);
        solo_locks.push(solo);
    }

    // Uncontended: [Bakery, central, inline echo, then per cluster: quorum round trip,
    // dlock].
    let mut cases: Vec<Case<'_>> = vec![
        Box::new(|| {
            let t0 = Instant::now();
            for _ in 0..p.bakery_iters {
                drop(black_box(bakery.lock().map_err(LockError::without_guard)?));
            }
            Ok(Batch {
                ns: t0.elapsed().as_nanos() as f64 / p.bakery_iters as f64,
                ..Batch::default()
            })
        }),
        Box::new(|| central_batch(&central, p.lock_iters)),
        Box::new(|| ping_batch(std::slice::from_ref(&inline), p.lock_iters)),
    ];
    for (c, lock) in clusters.iter().zip(solo_locks.iter_mut()) {
        cases.push(Box::new(move || ping_batch(&c.pings, p.lock_iters)));
        cases.push(Box::new(move || dlock_batch(c, lock, p.lock_iters)));
    }
    let mut batches = interleaved(p.rounds, &mut cases)?.into_iter();
    drop(cases);
    let bakery_batches = batches.next().ok_or("no bakery batches")?;
    let central_batches = batches.next().ok_or("no central batches")?;
    let inline_batches = batches.next().ok_or("no echo batches")?;
    let mut sized: Vec<BySize> = clusters
        .iter()
        .zip(SIZES)
        .map(|(c, n)| -> Result<BySize> {
            Ok(BySize {
                n,
                quorums: c.quorums,
                k: c.k,
                rtt: batches.next().ok_or("no ping batches")?,
                dlock: batches.next().ok_or("no dlock batches")?,
                contended: Vec::new(),
                central: Vec::new(),
            })
        })
        .collect::<Result<_>>()?;

    // Contended: per repetition, every cluster and the central server with as many
    // clients, one after the other.
    let mut central_clients = (0..*SIZES.iter().max().unwrap_or(&1))
        .map(|_| CentralClient::connect_with(&central_url, &client_options()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    for _ in 0..p.reps {
        for ((s, c), locks) in sized.iter_mut().zip(clusters).zip(&mut contended_locks) {
            s.contended.push(dlock_contended(c, locks, p.contended)?);
            let clients = &mut central_clients[..s.n];
            s.central.push(central_contended(clients, p.contended)?);
        }
    }
    drop((central_clients, central, inline));
    central_server.shutdown(Duration::from_millis(200));
    inline_server.shutdown(Duration::from_millis(200));
    Ok(Measured {
        bakery: bakery_batches,
        central: central_batches,
        inline: inline_batches,
        sized,
    })
}

/// The table's rows and their goals (see docs/benchmarks.md).
fn rows(m: &Measured) -> (Vec<Measurement>, Vec<Option<Goal>>) {
    let mut out: Vec<(Measurement, Option<Goal>)> = Vec::new();
    let bakery = Measurement::new(
        format!("BakeryLock lock+unlock, named, {HOST_PARTICIPANTS} slots (baseline)"),
        "ns",
        med(&m.bakery, |b| b.ns),
    );
    let central_pair = Measurement::new(
        "central lock server acquire+release, tcp, median (baseline)",
        "ns",
        med(&m.central, |b| b.ns),
    );
    let central_acquire = Measurement::new(
        "central lock server acquire, tcp, median (reference)",
        "ns",
        med(&m.central, |b| b.acquire_ns),
    );
    let inline = Measurement::new(
        "tcp rpc echo, handler inline, median (reference)",
        "ns",
        med(&m.inline, |b| b.ns),
    );
    for s in &m.sized {
        let n = s.n;
        let k = Measurement::new(
            format!("N={n}: quorum size K ({})", s.quorums),
            "nodes",
            s.k as f64,
        );
        let echoes = match s.k - 1 {
            1 => "1 echo".to_owned(),
            m => format!("{m} echoes at once"),
        };
        let rtt = Measurement::new(
            format!("N={n}: 2 quorum round trips ({echoes}, handlers inline)"),
            "ns",
            2.0 * med(&s.rtt, |b| b.ns),
        );
        let acquire = Measurement::new(
            format!("dlock N={n} acquire, uncontended, median"),
            "ns",
            med(&s.dlock, |b| b.acquire_ns),
        )
        .against(&rtt);
        let at_node = Measurement::new(
            format!("dlock N={n} acquire at the node, uncontended, median"),
            "ns",
            med(&s.dlock, |b| b.node_ns),
        )
        .against(&rtt);
        let pair_name = format!("dlock N={n} acquire+release, uncontended, median");
        let pair_ns = med(&s.dlock, |b| b.ns);
        let pair = Measurement::new(pair_name.clone(), "ns", pair_ns).against(&central_pair);
        let vs_bakery =
            Measurement::new(format!("{pair_name} vs Bakery"), "ns", pair_ns).against(&bakery);
        let messages = Measurement::new(
            format!("dlock N={n} messages per critical section, uncontended"),
            "msgs/CS",
            med(&s.dlock, |b| b.messages),
        )
        .against(&k);
        out.extend([
            (k, None),
            (rtt, None),
            (acquire, Some(Goal::AtMost(1.1))),
            (at_node, Some(Goal::AtMost(1.1))),
            (pair, None),
            (vs_bakery, None),
            (messages, Some(Goal::Within(3.0, 6.0))),
        ]);
    }
    // The uncontended baselines go first.
    let mut head = vec![
        (bakery, None),
        (central_pair, None),
        (central_acquire, None),
        (inline, None),
    ];
    head.append(&mut out);
    let mut out = head;
    for s in &m.sized {
        let n = s.n;
        let k_name = format!("N={n}: quorum size K ({})", s.quorums);
        let k = Measurement::new(k_name, "nodes", s.k as f64);
        let central = Measurement::new(
            format!("central lock server, {n} clients contended (baseline)"),
            "CS/s",
            median(s.central.clone()),
        );
        let rate = Measurement::new(
            format!("dlock N={n}, one client per node contended"),
            "CS/s",
            median(s.contended.iter().map(|c| c.rate).collect()),
        )
        .against(&central);
        let messages = Measurement::new(
            format!("dlock N={n} messages per critical section, contended"),
            "msgs/CS",
            median(s.contended.iter().map(|c| c.messages).collect()),
        )
        .against(&k);
        out.extend([
            (central, None),
            (rate, Some(Goal::AtLeast(0.5))),
            (messages, Some(Goal::Within(3.0, 6.0))),
        ]);
    }
    out.into_iter().unzip()
}

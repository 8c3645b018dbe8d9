//! A deterministic, seeded simulator over the sans-IO distributed-lock core
//! (`shmlink::dlock::protocol`, issue 13 item 8).
//!
//! One global virtual time; each node's clock runs at its own rate within
//! `1 +/- epsilon` of it, from its own origin. The network delays every message by a
//! random time (so messages reorder), duplicates and loses some, and cuts minorities
//! off for a while; nodes crash and restart (keeping only the incarnation and the
//! persisted fencing high-water mark), and pause for longer than the lease, then go on
//! with their old state. Some runs also kill nodes for good (crash, never restart), up
//! to as many as the quorum system tolerates ([`QuorumSystem::tolerates`]): the live
//! nodes must route around them ([`QuorumSystem::live_quorum`]). On every live node a
//! client takes one of the locks again and again, holds it for a while and lets go,
//! sometimes giving up on a wait (`try_lock_for`).
//!
//! Checked on every run:
//!
//! 1. no two holders' validity windows, mapped to global time, overlap;
//! 2. fencing tokens strictly increase across the grants of a lock, in global order;
//! 3. once faults stop, every request of a live node is granted within [`wait_bound`]
//!    (no deadlock, no starvation, no live node blocked by a dead one), every live node
//!    is granted the lock at least once, and when clients stop, nothing is left
//!    waiting;
//! 4. messages per critical section: `5K` uncontended (within `3K..6K`); the contended
//!    number is reported.
//!
//! `cargo test --test dlock_sim -- --nocapture summary` prints the summary.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use shmlink::dlock::protocol::{
    Config, KindCounts, LockName, LostReason, Msg, MsgKind, Nanos, Node, Out, RequestId,
    RequestState,
};
use shmlink::dlock::quorum::{Grid, Majority, NodeId, ProjectivePlane, QuorumSystem};

const MS: u64 = 1_000_000;

/// splitmix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, per_mille: u32) -> bool {
        self.next() % 1000 < u64::from(per_mille)
    }
}

/// Test-local quorum systems (the crate's own live in `dlock::quorum`).
#[derive(Debug)]
struct Quorums {
    name: &'static str,
    q: Vec<Vec<NodeId>>,
}

impl Quorums {
    /// Node `i`: itself and the next `n / 2` nodes, cyclically (any two sets of
    /// `n / 2 + 1` intersect).
    fn majority(n: usize) -> Arc<dyn QuorumSystem> {
        let q = (0..n)
            .map(|i| {
                let mut q: Vec<NodeId> = (0..=n / 2).map(|k| ((i + k) % n) as NodeId).collect();
                q.sort_unstable();
                q
            })
            .collect();
        Arc::new(Quorums {
            name: "majority",
            q,
        })
    }

    /// `side x side` nodes; node `i`: its row and its column (K = 2 * side - 1).
    fn grid(side: usize) -> Arc<dyn QuorumSystem> {
        let q = (0..side * side)
            .map(|i| {
                let (r, c) = (i / side, i % side);
                let mut q: Vec<NodeId> = (0..side).map(|k| (r * side + k) as NodeId).collect();
                q.extend(
                    (0..side)
                        .filter(|&k| k != r)
                        .map(|k| (k * side + c) as NodeId),
                );
                q.sort_unstable();
                q
            })
            .collect();
        Arc::new(Quorums { name: "grid", q })
    }
}

impl QuorumSystem for Quorums {
    fn nodes(&self) -> usize {
        self.q.len()
    }
    fn quorum(&self, node: NodeId) -> &[NodeId] {
        &self.q[usize::from(node)]
    }
    fn name(&self) -> &'static str {
        self.name
    }
}

/// The systems every run covers: majority for N = 3, 5, 9 and grids for N = 4, 9.
fn systems() -> Vec<Arc<dyn QuorumSystem>> {
    vec![
        Quorums::majority(3),
        Quorums::majority(5),
        Quorums::majority(9),
        Quorums::grid(2),
        Quorums::grid(3),
    ]
}

/// The systems run with nodes dying for good, as many as each tolerates: the crate's
/// majority for N = 5 (2 dead), grid for N = 9 (2), planes for N = 7 (2) and 13 (3).
/// (Their `live_quorum` is the crate's: for the majority, any 3 live nodes.)
fn death_systems() -> Vec<Arc<dyn QuorumSystem>> {
    vec![
        Arc::new(Majority::new(5).unwrap()),
        Arc::new(Grid::new(9).unwrap()),
        Arc::new(ProjectivePlane::new(7).unwrap()),
        Arc::new(ProjectivePlane::new(13).unwrap()),
    ]
}

/// One run's settings. Times are global nanoseconds.
#[derive(Debug, Clone)]
struct Params {
    seed: u64,
    quorums: Arc<dyn QuorumSystem>,
    /// How many lock names the clients use.
    locks: u64,
    lease: u64,
    retransmit: u64,
    eps_ppm: u32,
    /// Per-message delay, uniform.
    delay: (u64, u64),
    /// Per mille of messages lost, duplicated (fault phase only).
    loss: u32,
    dup: u32,
    /// Crashes, pauses and partitions, one every `fault_gap` on average (0: none).
    fault_gap: u64,
    /// Length of the phase with faults, then of the fault-free phase.
    fault_phase: u64,
    final_phase: u64,
    /// The longest hold and think times of a client.
    hold: u64,
    /// Per mille of holds of half a lease to three leases instead (fault phase only).
    long_holds: u32,
    think: u64,
    /// Per mille of waits given a timeout (fault phase only).
    timeouts: u32,
    /// Nodes that die for good at random times of the fault phase (at most
    /// `quorums.tolerates()`).
    deaths: usize,
}

impl Params {
    fn new(seed: u64, quorums: Arc<dyn QuorumSystem>) -> Params {
        let lease = 300 * MS;
        Params {
            seed,
            quorums,
            locks: 2,
            lease,
            retransmit: 15 * MS,
            eps_ppm: 20_000,
            delay: (MS / 2, 6 * MS),
            loss: 50,
            dup: 50,
            fault_gap: lease,
            fault_phase: 20 * lease,
            final_phase: 8 * lease,
            hold: 20 * MS,
            long_holds: 50,
            think: 20 * MS,
            timeouts: 100,
            deaths: 0,
        }
    }

    fn n(&self) -> usize {
        self.quorums.nodes()
    }

    /// The largest quorum, `K`.
    fn k(&self) -> usize {
        self.quorums.quorum_size()
    }
}

/// The longest wait for a lock once faults stopped (invariant 3), from the later of
/// the request and the end of the faults:
///
/// - `L` (plus drift) for what faults left behind to clear: the lock-delay of nodes that
///   restarted at the end of the faults, votes of crashed or partitioned holders, and
///   lost releases, each of which lapses a lease after its holder was last heard;
/// - `L / 3` for a retransmission backed off to its cap just before the faults stopped;
/// - `3L` for a long hold (fault phase only) still running when the faults stopped;
/// - then its turn among the other `N - 1` clients, each of which may overtake it at
///   most twice before the Lamport clocks (advanced by every answer) rank it first, for
///   at most a hold plus 12 message delays per critical section (request, yields,
///   inquiry, vote, fence and acknowledgement, release), and one retransmission interval;
/// - with nodes dead for good, `L` (plus drift) per dead node: an attempt that asks a
///   dead member its node does not suspect yet moves a lease after the first question
///   it left unanswered, and the quorum it moves to may hold another such member.
fn wait_bound(p: &Params) -> u64 {
    let drift = 1_000_000 + u64::from(p.eps_ppm);
    let lease = p.lease * drift / (1_000_000 - u64::from(p.eps_ppm));
    let per_cs = p.hold + 12 * p.delay.1 + p.retransmit;
    let long_hold = if p.long_holds > 0 { 3 * p.lease } else { 0 };
    let dead = p.deaths as u64 * lease;
    lease + lease / 3 + long_hold + dead + 2 * (p.n() as u64) * per_cs
}

enum Ev {
    /// A message, with its send order (to count reorderings).
    Deliver(Msg, u64),
    Tick(usize, u64),
    Acquire(usize),
    Release(usize, RequestId),
    Timeout(usize, RequestId),
    Fault,
    /// A node dies for good.
    Die,
    Restart(usize),
    Resume(usize),
    Heal,
    FaultsEnd,
    ClientsEnd,
}

impl Ev {
    /// The node an event happens on (paused nodes get it later, crashed ones never).
    fn host(&self) -> Option<usize> {
        match *self {
            Ev::Deliver(m, _) => Some(usize::from(m.to)),
            Ev::Tick(i, _) | Ev::Acquire(i) | Ev::Release(i, _) | Ev::Timeout(i, _) => Some(i),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Client {
    Idle,
    Waiting {
        lock: LockName,
        id: RequestId,
        since: u64,
    },
    Holding {
        lock: LockName,
        id: RequestId,
        window: usize,
    },
}

struct Host {
    node: Option<Node>,
    /// Dead for good: never restarts.
    gone: bool,
    incarnation: u64,
    persisted: u64,
    rate_ppm: i64,
    offset: u64,
    paused_until: Option<u64>,
    tick_gen: u64,
    tick_at: Option<u64>,
    client: Client,
}

impl Host {
    /// This node's clock at global time `g`.
    fn local(&self, g: u64) -> Nanos {
        let skew = i128::from(g) * i128::from(self.rate_ppm) / 1_000_000;
        Nanos((i128::from(self.offset) + i128::from(g) + skew) as u64)
    }

    /// The first global time at which this node's clock reads `t` or later.
    fn global(&self, t: Nanos) -> u64 {
        let l = i128::from(t.0) - i128::from(self.offset);
        let mut g = (l.max(0) * 1_000_000 / (1_000_000 + i128::from(self.rate_ppm))) as u64;
        while self.local(g) < t {
            g += 1;
        }
        while g > 0 && self.local(g - 1) >= t {
            g -= 1;
        }
        g
    }
}

/// A holder's validity window in global time: from the grant to the end of its
/// validity (as renewals move it), or its release, loss or crash if earlier.
#[derive(Debug, Clone, Copy)]
struct Window {
    node: usize,
    lock: LockName,
    token: u64,
    start: u64,
    end: u64,
    open: bool,
}

/// What a run did and found.
#[derive(Debug, Default, Clone)]
struct Report {
    runs: u64,
    delivered: u64,
    lost_msgs: u64,
    duplicated: u64,
    reordered: u64,
    cut_msgs: u64,
    crashes: u64,
    deaths: u64,
    dead_holders: u64,
    pauses: u64,
    paused_holders: u64,
    crashed_holders: u64,
    partitions: u64,
    timeouts: u64,
    grants: u64,
    lost_expired: u64,
    lost_revoked: u64,
    lapsed_votes: u64,
    stale: u64,
    invalid: u64,
    suspicions: u64,
    moves: u64,
    overlap_checks: u64,
    token_checks: u64,
    final_grants: u64,
    final_wait_max: u64,
    wait_bound: u64,
    messages: KindCounts,
    /// Messages by kind (in `MsgKind::ALL` order) and grants after the snapshot.
    measured: Option<([u64; 9], u64)>,
}

impl Report {
    fn add(&mut self, o: &Report) {
        self.runs += o.runs;
        self.delivered += o.delivered;
        self.lost_msgs += o.lost_msgs;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.cut_msgs += o.cut_msgs;
        self.crashes += o.crashes;
        self.deaths += o.deaths;
        self.dead_holders += o.dead_holders;
        self.pauses += o.pauses;
        self.paused_holders += o.paused_holders;
        self.crashed_holders += o.crashed_holders;
        self.partitions += o.partitions;
        self.timeouts += o.timeouts;
        self.grants += o.grants;
        self.lost_expired += o.lost_expired;
        self.lost_revoked += o.lost_revoked;
        self.lapsed_votes += o.lapsed_votes;
        self.stale += o.stale;
        self.invalid += o.invalid;
        self.suspicions += o.suspicions;
        self.moves += o.moves;
        self.overlap_checks += o.overlap_checks;
        self.token_checks += o.token_checks;
        self.final_grants += o.final_grants;
        self.final_wait_max = self.final_wait_max.max(o.final_wait_max);
        self.wait_bound = self.wait_bound.max(o.wait_bound);
        self.messages += o.messages;
    }
}

struct Sim {
    p: Params,
    rng: Rng,
    now: u64,
    seq: u64,
    events: BTreeMap<(u64, u64), Ev>,
    hosts: Vec<Host>,
    names: Vec<LockName>,
    /// The side of a partition each node is on (None: healed).
    cut: Option<Vec<bool>>,
    faults: bool,
    clients: bool,
    faults_end: u64,
    windows: Vec<Window>,
    /// Grants after the faults stopped, by node.
    final_grants: Vec<u64>,
    /// Highest send order delivered per (from, to).
    delivered_upto: BTreeMap<(NodeId, NodeId), u64>,
    sent: u64,
    same_time_ticks: (u64, u64),
    /// When to take `snapshot` (messages and grants so far), to measure from then on.
    snapshot_at: u64,
    snapshot: Option<(KindCounts, u64)>,
    r: Report,
}

impl Sim {
    fn new(p: Params) -> Sim {
        let mut rng = Rng(p.seed);
        let n = p.n();
        let eps = i64::from(p.eps_ppm);
        let hosts = (0..n)
            .map(|_| Host {
                node: None,
                gone: false,
                incarnation: 0,
                persisted: 0,
                rate_ppm: (rng.next() % (2 * eps as u64 + 1)) as i64 - eps,
                offset: rng.next() % (1 << 40),
                paused_until: None,
                tick_gen: 0,
                tick_at: None,
                client: Client::Idle,
            })
            .collect();
        let names = (0..p.locks)
            .map(|i| LockName::new(&format!("lock-{i}")))
            .collect();
        let mut sim = Sim {
            rng,
            now: 0,
            seq: 0,
            events: BTreeMap::new(),
            hosts,
            names,
            cut: None,
            faults: p.fault_gap > 0,
            clients: true,
            faults_end: p.fault_phase,
            windows: Vec::new(),
            final_grants: vec![0; n],
            delivered_upto: BTreeMap::new(),
            sent: 0,
            same_time_ticks: (0, 0),
            snapshot_at: u64::MAX,
            snapshot: None,
            r: Report {
                runs: 1,
                wait_bound: wait_bound(&p),
                ..Report::default()
            },
            p,
        };
        for i in 0..n {
            sim.start(i);
        }
        sim
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.events.insert((at, self.seq), ev);
    }

    fn config(&self, i: usize) -> Config {
        let mut c = Config::new(3, i as NodeId, self.p.quorums.clone());
        c.lease = Duration::from_nanos(self.p.lease);
        c.retransmit = Duration::from_nanos(self.p.retransmit);
        c.epsilon_ppm = self.p.eps_ppm;
        c
    }

    /// Starts (or restarts) node `i` with a new incarnation and its persisted mark.
    fn start(&mut self, i: usize) {
        let config = self.config(i);
        let h = &mut self.hosts[i];
        h.incarnation += 1;
        let node = Node::new(config, h.incarnation, h.persisted, h.local(self.now)).unwrap();
        h.node = Some(node);
        h.client = Client::Idle;
        let at = self.now + self.rng.range(0, self.p.think);
        self.push(at, Ev::Acquire(i));
        self.settle(i);
    }

    /// Applies node `i`'s outputs, follows its validity, and schedules its next tick.
    fn settle(&mut self, i: usize) {
        let Some(node) = self.hosts[i].node.as_mut() else {
            return;
        };
        let outs: Vec<Out> = node.drain().collect();
        for out in outs {
            match out {
                Out::Send(m) => self.send(m),
                Out::Granted {
                    lock,
                    id,
                    token,
                    valid_until,
                } => self.granted(i, lock, id, token, valid_until),
                Out::Lost { id, reason, .. } => self.lost(i, id, reason),
                Out::Persist { high_water } => {
                    let h = &mut self.hosts[i];
                    assert!(high_water >= h.persisted, "the persisted mark went down");
                    h.persisted = high_water;
                }
                other => panic!("unknown output {other:?}"),
            }
        }
        let h = &self.hosts[i];
        let node = h.node.as_ref().expect("alive");
        if let Client::Holding { lock, window, .. } = h.client
            && let Some((_, RequestState::Held { valid_until, .. })) = node.request(lock)
        {
            let end = h.global(valid_until);
            let w = &mut self.windows[window];
            w.end = w.end.max(end);
        }
        if let Some(d) = node.next_deadline() {
            let at = h.global(d).max(self.now);
            if h.tick_at.is_none_or(|t| at < t || t < self.now) {
                let h = &mut self.hosts[i];
                h.tick_gen += 1;
                h.tick_at = Some(at);
                let ev = Ev::Tick(i, h.tick_gen);
                self.push(at, ev);
            }
        }
    }

    fn send(&mut self, m: Msg) {
        self.sent += 1;
        let copies = if self.faults && self.rng.chance(self.p.dup) {
            2
        } else {
            1
        };
        if copies == 2 {
            self.r.duplicated += 1;
        }
        for _ in 0..copies {
            if self.faults && self.rng.chance(self.p.loss) {
                self.r.lost_msgs += 1;
                continue;
            }
            let at = self.now + self.rng.range(self.p.delay.0, self.p.delay.1);
            self.push(at, Ev::Deliver(m, self.sent));
        }
    }

    fn granted(&mut self, i: usize, lock: LockName, id: RequestId, token: u64, valid_until: Nanos) {
        let h = &self.hosts[i];
        let Client::Waiting {
            lock: want,
            id: asked,
            since,
        } = h.client
        else {
            panic!("node {i}: a grant nobody waits for")
        };
        assert_eq!(
            (want, asked),
            (lock, id),
            "node {i}: a grant for another request"
        );
        let end = h.global(valid_until);
        assert!(end > self.now, "granted already invalid");
        self.windows.push(Window {
            node: i,
            lock,
            token,
            start: self.now,
            end,
            open: true,
        });
        self.hosts[i].client = Client::Holding {
            lock,
            id,
            window: self.windows.len() - 1,
        };
        self.r.grants += 1;
        if self.now >= self.faults_end {
            self.r.final_grants += 1;
            self.final_grants[i] += 1;
            let wait = self.now - since.max(self.faults_end);
            self.r.final_wait_max = self.r.final_wait_max.max(wait);
        }
        let hold = if self.faults && self.rng.chance(self.p.long_holds) {
            self.rng.range(self.p.lease / 2, 3 * self.p.lease) // renewed on the way
        } else {
            self.rng.range(0, self.p.hold)
        };
        self.push(self.now + hold, Ev::Release(i, id));
    }

    /// The client on `i` stops holding (released, lost, crashed).
    fn close(&mut self, i: usize) {
        if let Client::Holding { window, .. } = self.hosts[i].client {
            let w = &mut self.windows[window];
            w.end = w.end.min(self.now);
            w.open = false;
        }
        self.hosts[i].client = Client::Idle;
    }

    fn lost(&mut self, i: usize, id: RequestId, reason: LostReason) {
        let Client::Holding { id: held, .. } = self.hosts[i].client else {
            panic!("node {i}: lost a lock it did not hold")
        };
        assert_eq!(held, id);
        match reason {
            LostReason::Expired => self.r.lost_expired += 1,
            _ => self.r.lost_revoked += 1,
        }
        self.close(i);
        let at = self.now + self.rng.range(0, self.p.think);
        self.push(at, Ev::Acquire(i));
    }

    fn alive(&self, i: usize) -> bool {
        self.hosts[i].node.is_some()
    }

    /// A node to hit: more often a holder, since faults matter most there.
    fn victim(&mut self) -> usize {
        let n = self.p.n();
        let holders: Vec<usize> = (0..n)
            .filter(|&i| matches!(self.hosts[i].client, Client::Holding { .. }))
            .collect();
        if !holders.is_empty() && self.rng.chance(600) {
            holders[(self.rng.next() % holders.len() as u64) as usize]
        } else {
            (self.rng.next() % n as u64) as usize
        }
    }

    fn fault(&mut self) {
        let n = self.p.n();
        let i = self.victim();
        let lease = self.p.lease;
        match self.rng.next() % 3 {
            0 if self.alive(i) && self.hosts[i].paused_until.is_none() => {
                self.r.crashes += 1;
                if let Client::Holding { .. } = self.hosts[i].client {
                    self.r.crashed_holders += 1;
                }
                self.close(i);
                let h = &mut self.hosts[i];
                h.node = None;
                h.tick_at = None;
                let at = self.now + self.rng.range(0, 2 * lease);
                self.push(at, Ev::Restart(i));
            }
            1 if self.alive(i) && self.hosts[i].paused_until.is_none() => {
                self.r.pauses += 1;
                if let Client::Holding { .. } = self.hosts[i].client {
                    self.r.paused_holders += 1;
                }
                let until = self.now + self.rng.range(lease * 5 / 4, 3 * lease);
                self.hosts[i].paused_until = Some(until);
                self.push(until, Ev::Resume(i));
            }
            2 if self.cut.is_none() => {
                self.r.partitions += 1;
                let mut cut = vec![false; n];
                cut[i] = true;
                let size = self.rng.range(1, (n as u64 / 2).max(1));
                for _ in 1..size {
                    cut[(self.rng.next() % n as u64) as usize] = true;
                }
                self.cut = Some(cut);
                let at = self.now + self.rng.range(lease / 2, 3 * lease);
                self.push(at, Ev::Heal);
            }
            _ => {}
        }
        let gap = self
            .rng
            .range(self.p.fault_gap / 2, self.p.fault_gap * 3 / 2);
        if self.now + gap < self.faults_end {
            self.push(self.now + gap, Ev::Fault);
        }
    }

    /// A node not dead yet (more often a holder) dies for good.
    fn die(&mut self) {
        let n = self.p.n();
        let mut i = self.victim();
        while self.hosts[i].gone {
            i = (i + 1) % n; // deaths < n: some node is not gone
        }
        self.r.deaths += 1;
        if let Client::Holding { .. } = self.hosts[i].client {
            self.r.dead_holders += 1;
        }
        self.close(i);
        let h = &mut self.hosts[i];
        h.gone = true;
        h.node = None;
        h.tick_at = None;
        h.paused_until = None;
    }

    fn resume(&mut self, i: usize) {
        if self.hosts[i].paused_until.take().is_some() {
            let h = &mut self.hosts[i];
            let now = h.local(self.now);
            if let Some(node) = h.node.as_mut() {
                node.tick(now);
            }
            h.tick_at = None;
            self.settle(i);
        }
    }

    fn faults_end(&mut self) {
        self.faults = false;
        self.cut = None;
        for i in 0..self.p.n() {
            self.resume(i);
            if !self.alive(i) && !self.hosts[i].gone {
                self.start(i);
            }
        }
    }

    fn step(&mut self) -> bool {
        let Some(((at, _), ev)) = self.events.pop_first() else {
            return false;
        };
        if at >= self.snapshot_at && self.snapshot.is_none() {
            self.snapshot = Some((messages(&self.hosts), self.r.grants));
        }
        self.now = at;
        if let Some(i) = ev.host() {
            if let Some(until) = self.hosts[i].paused_until {
                if !matches!(ev, Ev::Tick(..)) {
                    self.push(until, ev); // processed when the node resumes
                }
                return true;
            }
            if !self.alive(i) {
                if let Ev::Deliver(..) = ev {
                    self.r.lost_msgs += 1;
                }
                return true;
            }
        }
        match ev {
            Ev::Deliver(m, order) => {
                if let Some(cut) = &self.cut
                    && cut[usize::from(m.from)] != cut[usize::from(m.to)]
                {
                    self.r.cut_msgs += 1;
                    return true;
                }
                let upto = self.delivered_upto.entry((m.from, m.to)).or_default();
                if order < *upto {
                    self.r.reordered += 1;
                }
                *upto = (*upto).max(order);
                self.r.delivered += 1;
                if std::env::var_os("SIM_TRACE").is_some() {
                    eprintln!(
                        "{:>10}us {} -> {} {:?}",
                        self.now / 1000,
                        m.from,
                        m.to,
                        m.body
                    );
                }
                let i = usize::from(m.to);
                let h = &mut self.hosts[i];
                let now = h.local(self.now);
                h.node.as_mut().expect("alive").handle(m, now);
                self.settle(i);
            }
            Ev::Tick(i, generation) => {
                let h = &mut self.hosts[i];
                if generation != h.tick_gen {
                    return true;
                }
                if self.same_time_ticks.0 == self.now {
                    self.same_time_ticks.1 += 1;
                    assert!(
                        self.same_time_ticks.1 < 1000,
                        "node {i} ticks without end at {}",
                        self.now
                    );
                } else {
                    self.same_time_ticks = (self.now, 0);
                }
                h.tick_at = None;
                let now = h.local(self.now);
                h.node.as_mut().expect("alive").tick(now);
                self.settle(i);
            }
            Ev::Acquire(i) => {
                if !self.clients || !matches!(self.hosts[i].client, Client::Idle) {
                    return true;
                }
                let lock = self.names[(self.rng.next() % self.p.locks) as usize];
                let h = &mut self.hosts[i];
                let now = h.local(self.now);
                let id = h.node.as_mut().expect("alive").acquire(lock, now).unwrap();
                h.client = Client::Waiting {
                    lock,
                    id,
                    since: self.now,
                };
                if self.faults && self.rng.chance(self.p.timeouts) {
                    let at = self.now + self.rng.range(self.p.lease / 4, 2 * self.p.lease);
                    self.push(at, Ev::Timeout(i, id));
                }
                self.settle(i);
            }
            Ev::Release(i, id) => {
                let Client::Holding { lock, id: held, .. } = self.hosts[i].client else {
                    return true;
                };
                if held != id {
                    return true;
                }
                let h = &mut self.hosts[i];
                let now = h.local(self.now);
                // NotHeld if the lease ran out unnoticed: the Lost output says so.
                let released = h.node.as_mut().expect("alive").release(lock, now).is_ok();
                self.settle(i);
                if released {
                    self.close(i);
                    let at = self.now + self.rng.range(0, self.p.think);
                    self.push(at, Ev::Acquire(i));
                }
            }
            Ev::Timeout(i, id) => {
                let Client::Waiting {
                    lock, id: asked, ..
                } = self.hosts[i].client
                else {
                    return true;
                };
                if asked != id || !self.faults {
                    return true;
                }
                self.r.timeouts += 1;
                let h = &mut self.hosts[i];
                let now = h.local(self.now);
                h.node.as_mut().expect("alive").cancel(lock, now);
                h.client = Client::Idle;
                self.settle(i);
                let at = self.now + self.rng.range(0, self.p.think);
                self.push(at, Ev::Acquire(i));
            }
            Ev::Fault => {
                if self.faults {
                    self.fault();
                }
            }
            Ev::Die => self.die(),
            Ev::Restart(i) => {
                if !self.alive(i) && !self.hosts[i].gone {
                    self.start(i);
                }
            }
            Ev::Resume(i) => self.resume(i),
            Ev::Heal => self.cut = None,
            Ev::FaultsEnd => self.faults_end(),
            Ev::ClientsEnd => self.clients = false,
        }
        true
    }

    /// Runs the whole scenario and checks the invariants (panicking on a violation).
    fn run(mut self) -> Report {
        let (fault_end, end) = (self.p.fault_phase, self.p.fault_phase + self.p.final_phase);
        if self.faults {
            let first = self.rng.range(0, self.p.fault_gap);
            self.push(first, Ev::Fault);
        }
        assert!(self.p.deaths <= self.p.quorums.tolerates());
        for _ in 0..self.p.deaths {
            let at = self.rng.range(0, fault_end.max(1) - 1);
            self.push(at, Ev::Die);
        }
        self.push(fault_end, Ev::FaultsEnd);
        self.push(end, Ev::ClientsEnd);
        let deadline = end + wait_bound(&self.p) + 4 * self.p.lease;
        while self.step() {
            assert!(
                self.now <= deadline,
                "still busy {} ms after the clients stopped",
                (self.now - end) / MS
            );
        }
        for (i, h) in self.hosts.iter().enumerate() {
            assert!(
                matches!(h.client, Client::Idle),
                "seed {:#x}: node {i}: {:?} when the network went quiet (deadlock)",
                self.p.seed,
                h.client
            );
            assert!(
                h.gone || self.final_grants[i] > 0,
                "seed {:#x}: live node {i} never got the lock after the faults stopped",
                self.p.seed
            );
        }
        self.check();
        for h in &self.hosts {
            let Some(node) = h.node.as_ref() else {
                assert!(h.gone, "a node left down at the end");
                continue;
            };
            let s = node.stats();
            self.r.messages += s.sent;
            self.r.messages += s.looped;
            self.r.lapsed_votes += s.lapsed;
            self.r.stale += s.stale;
            self.r.invalid += s.invalid;
            self.r.suspicions += s.suspicions;
            self.r.moves += s.moves;
        }
        if let Some((before, grants)) = self.snapshot {
            let after = messages(&self.hosts);
            let by_kind = MsgKind::ALL.map(|k| after.get(k) - before.get(k));
            self.r.measured = Some((by_kind, self.r.grants - grants));
        }
        assert!(
            self.r.final_wait_max <= self.r.wait_bound,
            "a request waited {} ms after the faults stopped; the bound is {} ms",
            self.r.final_wait_max / MS,
            self.r.wait_bound / MS
        );
        self.r
    }

    /// Invariants 1 and 2, over every lock's windows in global order of grant.
    fn check(&mut self) {
        for &lock in &self.names {
            let mut ws: Vec<Window> = self
                .windows
                .iter()
                .filter(|w| w.lock == lock)
                .copied()
                .collect();
            ws.sort_by_key(|w| w.start);
            for pair in ws.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                assert!(!a.open, "a window left open: {a:?}");
                assert!(
                    b.start >= a.end,
                    "seed {:#x}: two holders at once: node {} until {} and node {} from {}",
                    self.p.seed,
                    a.node,
                    a.end,
                    b.node,
                    b.start
                );
                assert!(
                    b.token > a.token,
                    "seed {:#x}: token {} after {}",
                    self.p.seed,
                    b.token,
                    a.token
                );
                self.r.overlap_checks += 1;
                self.r.token_checks += 1;
            }
        }
    }
}

/// Messages (sent and looped back) over the live nodes of the cluster.
fn messages(hosts: &[Host]) -> KindCounts {
    let mut k = KindCounts::default();
    for h in hosts.iter().filter(|h| !h.gone) {
        let s = h.node.as_ref().expect("alive").stats();
        k += s.sent;
        k += s.looped;
    }
    k
}

/// Invariant 4, uncontended: one critical section at a time on a quiet, fault-free
/// network. Returns messages per critical section (each in 3K..6K), and renewals.
fn uncontended(quorums: Arc<dyn QuorumSystem>, rounds: usize) -> (f64, u64) {
    let mut p = Params::new(1, quorums);
    p.fault_gap = 0;
    p.locks = 1;
    p.long_holds = 0;
    let k = p.k() as u64;
    let n = p.n();
    let mut sim = Sim::new(p);
    sim.clients = false;
    sim.events.clear();
    sim.now = 2 * sim.p.lease; // past the lock-delay
    let mut total = 0;
    for round in 0..rounds {
        let i = round % n;
        let before = messages(&sim.hosts).total();
        sim.clients = true;
        sim.push(sim.now, Ev::Acquire(i));
        sim.step();
        sim.clients = false; // its release schedules no new request
        while sim.step() {}
        let per_cs = messages(&sim.hosts).total() - before;
        assert!(
            (3 * k..=6 * k).contains(&per_cs),
            "{per_cs} messages for K = {k}"
        );
        total += per_cs;
    }
    let renewals = messages(&sim.hosts).get(MsgKind::Renew);
    sim.check();
    (total as f64 / rounds as f64, renewals)
}

/// Invariant 4, contended: every node competes for one lock (no think time), no
/// faults, with `lease`; measured over 100 hold times after the start-up lock-delay.
/// Returns messages by kind (in `MsgKind::ALL` order) and critical sections.
fn contended(quorums: Arc<dyn QuorumSystem>, seed: u64, lease: u64) -> ([u64; 9], u64) {
    let mut p = Params::new(seed, quorums);
    p.fault_gap = 0;
    p.locks = 1;
    p.think = 0;
    p.long_holds = 0;
    p.fault_phase = 0;
    p.lease = lease;
    p.final_phase = 2 * lease + 100 * p.hold;
    let mut sim = Sim::new(p);
    sim.snapshot_at = 2 * lease;
    sim.run().measured.expect("measured")
}

/// Messages per critical section without renewals (a Renew and its FenceAck), and
/// renewal messages per critical section.
fn per_cs((m, grants): ([u64; 9], u64)) -> (f64, f64) {
    let renew = 2.0 * m[MsgKind::Renew as usize] as f64;
    let total = m.iter().sum::<u64>() as f64;
    ((total - renew) / grants as f64, renew / grants as f64)
}

#[test]
#[cfg_attr(miri, ignore = "a long seeded simulation: runs natively")]
fn uncontended_critical_sections_cost_5k_messages() {
    for q in systems() {
        let k = q.quorum_size() as f64;
        let (per_cs, renewals) = uncontended(q, 12);
        assert_eq!(per_cs, 5.0 * k);
        assert_eq!(renewals, 0);
    }
}

/// The table the team quotes: `cargo test --test dlock_sim -- --nocapture summary`.
#[test]
#[cfg_attr(miri, ignore = "a long seeded simulation: runs natively")]
fn summary() {
    const SEEDS: u64 = 6;
    let p = Params::new(0, Quorums::majority(3));
    println!();
    println!(
        "dlock simulator, {SEEDS} seeds per system: lease {} ms, clock rates 1 +/- {}%, delays {}..{} ms; \
         {} leases of faults ({}% loss, {}% duplication, a crash, pause > lease or partition \
         every ~{} ms, {}% of waits with a timeout), then {} fault-free leases",
        p.lease / MS,
        p.eps_ppm / 10_000,
        p.delay.0 as f64 / MS as f64,
        p.delay.1 / MS,
        p.fault_phase / p.lease,
        p.loss / 10,
        p.dup / 10,
        p.fault_gap / MS,
        p.timeouts / 10,
        p.final_phase / p.lease,
    );
    println!(
        "{:<11} {:>2} {:>6} {:>5} {:>5} {:>5} {:>7} {:>6} {:>6} {:>7} {:>5} {:>5} {:>5} {:>6} {:>7} {:>7}",
        "system",
        "K",
        "grants",
        "crash",
        "pause",
        "part",
        "dropped",
        "cut",
        "dup",
        "reorder",
        "tmout",
        "Lost",
        "lapse",
        "checks",
        "wait",
        "bound"
    );
    let mut all = Report::default();
    let mut costs = Vec::new();
    for q in systems() {
        let mut r = Report::default();
        for seed in 0..SEEDS {
            r.add(&Sim::new(Params::new(seed * 7919 + q.nodes() as u64, q.clone())).run());
        }
        println!(
            "{:<11} {:>2} {:>6} {:>5} {:>5} {:>5} {:>7} {:>6} {:>6} {:>7} {:>5} {:>5} {:>5} {:>6} {:>5}ms {:>5}ms",
            format!("{}-{}", q.name(), q.nodes()),
            q.quorum_size(),
            r.grants,
            r.crashes,
            r.pauses,
            r.partitions,
            r.lost_msgs,
            r.cut_msgs,
            r.duplicated,
            r.reordered,
            r.timeouts,
            r.lost_expired + r.lost_revoked,
            r.lapsed_votes,
            r.overlap_checks + r.token_checks,
            r.final_wait_max / MS,
            r.wait_bound / MS,
        );
        all.add(&r);
        let (un, _) = uncontended(q.clone(), q.nodes() * 2);
        let short = contended(q.clone(), 99, 300 * MS);
        let long = contended(q.clone(), 99, 3000 * MS);
        costs.push((q, un, short, long));
    }
    println!(
        "all {} runs: {} grants; {} overlap and {} token checks passed; {} holders paused, {} crashed; \
         {} locks lost ({} expired, {} revoked); {} stale and {} invalid messages dropped; \
         {} attempts moved off {} suspected nodes; max wait after faults {} ms (bound {} ms)",
        all.runs,
        all.grants,
        all.overlap_checks,
        all.token_checks,
        all.paused_holders,
        all.crashed_holders,
        all.lost_expired + all.lost_revoked,
        all.lost_expired,
        all.lost_revoked,
        all.stale,
        all.invalid,
        all.moves,
        all.suspicions,
        all.final_wait_max / MS,
        all.wait_bound / MS,
    );
    println!();
    println!(
        "the same faults, and nodes dead for good (crash, never restart) at random times of the faults, \
         as many as the system tolerates; {SEEDS} seeds per system"
    );
    println!(
        "{:<11} {:>2} {:>4} {:>6} {:>5} {:>5} {:>5} {:>7} {:>5} {:>5} {:>6} {:>7} {:>7}",
        "system",
        "K",
        "dead",
        "grants",
        "final",
        "crash",
        "moves",
        "suspect",
        "Lost",
        "lapse",
        "checks",
        "wait",
        "bound"
    );
    let mut dead = Report::default();
    for q in death_systems() {
        let mut r = Report::default();
        for seed in 0..SEEDS {
            let mut p = Params::new(seed * 7919 + 1000 + q.nodes() as u64, q.clone());
            p.deaths = q.tolerates();
            r.add(&Sim::new(p).run());
        }
        println!(
            "{:<11} {:>2} {:>4} {:>6} {:>5} {:>5} {:>5} {:>7} {:>5} {:>5} {:>6} {:>5}ms {:>5}ms",
            format!("{}-{}", q.name(), q.nodes()),
            q.quorum_size(),
            r.deaths,
            r.grants,
            r.final_grants,
            r.crashes,
            r.moves,
            r.suspicions,
            r.lost_expired + r.lost_revoked,
            r.lapsed_votes,
            r.overlap_checks + r.token_checks,
            r.final_wait_max / MS,
            r.wait_bound / MS,
        );
        dead.add(&r);
    }
    println!(
        "all {} runs with dead nodes: {} nodes dead for good ({} while holding); {} grants, {} after the faults \
         stopped (every live node's requests granted); {} overlap and {} token checks passed; {} attempts \
         moved off {} suspected nodes; max wait after faults {} ms (bound {} ms)",
        dead.runs,
        dead.deaths,
        dead.dead_holders,
        dead.grants,
        dead.final_grants,
        dead.overlap_checks,
        dead.token_checks,
        dead.moves,
        dead.suspicions,
        dead.final_wait_max / MS,
        dead.wait_bound / MS,
    );
    println!();
    println!(
        "messages per critical section (sent + looped back), fault-free; contended: every node, one lock, holds 0..20 ms, \
         after the start-up lock-delay"
    );
    println!(
        "{:<11} {:>2} {:>12} {:>22} {:>22}   contended L=300ms by kind",
        "system", "K", "uncontended", "contended L=300ms", "contended L=3s"
    );
    for (q, un, short, long) in costs {
        let k = q.quorum_size() as f64;
        let kinds: String = MsgKind::ALL
            .iter()
            .filter(|&&kind| short.0[kind as usize] > 0)
            .map(|&kind| {
                format!(
                    " {}={:.1}",
                    kind.name(),
                    short.0[kind as usize] as f64 / short.1 as f64
                )
            })
            .collect();
        let (s, s_renew) = per_cs(short);
        let (l, _) = per_cs(long);
        println!(
            "{:<11} {:>2} {:>5.1} ({:.0}K) {:>8.1} ({:.1}K) +{:.1} renew {:>8.1} ({:.1}K)        {}",
            format!("{}-{}", q.name(), q.nodes()),
            q.quorum_size(),
            un,
            un / k,
            s,
            s / k,
            s_renew,
            l,
            l / k,
            kinds.trim_start(),
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        // PROPTEST_CASES=10000 for a longer search (about 100 s); 256 take about 3 s.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/dlock_sim.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    /// Random systems, seeds and fault rates, and up to as many nodes dead for good
    /// as the system tolerates: invariants 1-3 hold on every run.
    #[test]
    #[cfg_attr(miri, ignore = "a long seeded simulation: runs natively")]
    fn invariants_hold_under_faults(
        seed in any::<u64>(),
        system in 0..9usize,
        deaths in 0..=3usize,
        loss in 0..200u32,
        dup in 0..200u32,
        locks in 1..=2u64,
        eps_ppm in 0..=100_000u32,
        fault_gap_leases in 1..4u64,
        max_delay_ms in 1..=30u64,
    ) {
        let q = systems().into_iter().chain(death_systems()).nth(system).unwrap();
        let mut p = Params::new(seed, q);
        p.deaths = deaths.min(p.quorums.tolerates());
        p.loss = loss;
        p.dup = dup;
        p.locks = locks;
        p.eps_ppm = eps_ppm;
        p.delay = (0, max_delay_ms * MS);
        p.fault_gap = fault_gap_leases * p.lease / 2;
        p.fault_phase = 12 * p.lease;
        p.final_phase = 6 * p.lease;
        let r = Sim::new(p).run();
        prop_assert!(r.grants > 0);
    }
}

//! Lock nodes as real processes, each in a network namespace of its own on a bridge
//! this test builds: clients on the nodes increment a counter held by a fenced
//! resource server, and each test injects one fault (SIGKILL of a holder, SIGKILL and
//! restart of an arbiter, SIGSTOP of a holder's host past its lease, a partition,
//! packet loss). Checked on every run: no violation at the server (a write the fence
//! let through although the value moved since its holder read it), tokens strictly
//! rising with the value, every acknowledged increment applied exactly once; and
//! progress once the fault is over. Each fault's recovery time is printed as a
//! `recovery ...` line (run with `--nocapture` to see them).
//!
//! Topology, when running as root with `ip netns`: namespace `<tag>b` holds the bridge
//! `<tag>br`; node `i` runs in `<tag>n<i>` at `10.A.B.(i+1)`, the counter server in
//! `<tag>s` at `10.A.B.200`, each joined to the bridge by a veth pair `<tag>v<i>` /
//! `<tag>p<i>` (the `p` end is the bridge port). `<tag>` is `d<pid>x<k>`, `A.B` comes
//! from the pid and `k`, so parallel tests and runs never share a name (and, each
//! network being isolated, a shared `A.B` would not matter anyway). A partition downs a
//! node's bridge port; loss is an iptables rule in the node's namespace. Without
//! namespaces (not root, no `ip netns`) everything runs on 127.0.0.1 with distinct
//! ports, and the faults that need namespaces print that they are skipped.
//!
//! The clients reach their node over shared memory (`shm://`; `/dev/shm` is the same
//! in every network namespace) and the server over TCP. Times that cross processes are
//! `CLOCK_MONOTONIC` nanoseconds ([`now_ns`]), the lock nodes' own clock.

mod support;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use shmlink::dlock::protocol::{Config, LockName};
use shmlink::dlock::quorum::{QuorumSystem, default_for};
use shmlink::dlock::{
    DistLock, DistLockError, FenceError, FencedResource, FencingToken, Lock, LockGuard, LockNode,
    NodeOptions,
};
use shmlink::rpc::{ClientOptions, Context, RpcError, Server};
use shmlink::sync::atomic::{AtomicU32, Ordering};
use support::{Child, Scenario, arg, now_ns, report};

scenarios!(node, server, client, stats);

/// The nodes' lease.
const LEASE: Duration = Duration::from_millis(500);
/// The nodes' retransmission interval.
const RETRANSMIT: Duration = Duration::from_millis(40);
/// The cluster's configuration epoch.
const EPOCH: u64 = 13;
/// The lock the clients take.
const LOCK: &str = "counter";
/// How long a child may take to start, and a client to stop once told.
const CHILD_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a client waits for the lock before it withdraws and asks again (unless
/// its test says otherwise).
const LOCK_TIMEOUT: Duration = Duration::from_secs(3);
/// The budget of a client's call to the counter server.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the lock may take to pass on after its holder failed: its votes lapse a
/// lease after the last renewal; ample room past that.
const PASS_ON_TIMEOUT: Duration = LEASE
    .saturating_mul(4)
    .saturating_add(Duration::from_secs(2));
/// How long progress may take once a fault is over (or during one, where the
/// protocol promises it).
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(15);
/// The port of every node, and of the server, in its own namespace.
const NODE_PORT: u16 = 7000;
const SERVER_PORT: u16 = 7100;
/// Set (to anything) to run on loopback even where namespaces are available.
const LOOPBACK_ENV: &str = "SHMLINK_TEST_LOOPBACK";
/// Packet loss of the loss test, per packet entering a node's namespace.
const LOSS: f64 = 0.05;

fn ms(ns: u64) -> u64 {
    ns / 1_000_000
}

// ---- the fenced counter server ----

/// Why the counter server refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CounterError {
    /// The token is below the highest the server has seen: its holder lost the lock
    /// and a newer holder has read or written since (the fence).
    Stale { token: u64, highest: u64 },
    /// The fence let the write through, but the value is not the one its holder read:
    /// another write came in between that the fence did not stop (an overlapping
    /// unfenced write: a token handed out twice, since the read raised the fence).
    /// Never refused quietly: recorded, printed, and counted by the tests.
    Violation {
        token: u64,
        expected: u64,
        current: u64,
    },
}

impl fmt::Display for CounterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stale { token, highest } => {
                write!(f, "stale token {token} (token {highest} seen)")
            }
            Self::Violation {
                token,
                expected,
                current,
            } => write!(
                f,
                "VIOLATION: token {token} wrote expecting {expected}, the value was {current}"
            ),
        }
    }
}

/// What the counter server applied and refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterStats {
    /// The counter.
    pub value: u64,
    /// Increments applied.
    pub applied: u64,
    /// Increments refused by the fence (stale token).
    pub refused: u64,
    /// Reads refused by the fence.
    pub refused_reads: u64,
    /// `(token, expected, current)` of every violation.
    pub violations: Vec<(u64, u64, u64)>,
    /// `(token, new value)` of every increment applied, in order.
    pub log: Vec<(u64, u64)>,
}

shmlink::service! {
    /// A counter behind a fence, incremented by the clients under the lock.
    pub trait Counter {
        client CounterClient;
        server CounterServer;
        error CounterError;
        /// The value, read with the holder's token. The read raises the fence: once a
        /// newer holder has read, an older one can no longer write (fencing a
        /// read-modify-write needs the token on the read too).
        fn get(token: u64) -> u64;
        /// `(token, expected)`: the new value, `expected + 1`; refuses a stale token,
        /// and records a violation if the value is not `expected`.
        fn incr(args: (u64, u64)) -> u64;
        /// What was applied and refused.
        fn stats(unit: ()) -> CounterStats;
    }
}

/// The server's state.
struct Fenced {
    counter: FencedResource<u64>,
    stats: Mutex<CounterStats>,
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn stale(e: FenceError) -> CounterError {
    match e {
        FenceError::Stale { token, highest, .. } => CounterError::Stale {
            token: token.0,
            highest: highest.0,
        },
        other => panic!("unexpected fence error: {other}"),
    }
}

impl Counter for Fenced {
    fn get(&self, _ctx: &Context, token: u64) -> Result<u64, CounterError> {
        self.counter
            .apply(FencingToken(token), |v| *v)
            .map_err(|e| {
                relock(&self.stats).refused_reads += 1;
                stale(e)
            })
    }

    fn incr(&self, _ctx: &Context, (token, expected): (u64, u64)) -> Result<u64, CounterError> {
        let stats = &self.stats;
        // The log is written under the resource's lock, so it is in applied order.
        let applied = self.counter.apply(FencingToken(token), |v| {
            let mut st = relock(stats);
            if *v != expected {
                let e = CounterError::Violation {
                    token,
                    expected,
                    current: *v,
                };
                eprintln!("counter server: {e}");
                st.violations.push((token, expected, *v));
                return Err(e);
            }
            *v += 1;
            st.value = *v;
            st.applied += 1;
            st.log.push((token, *v));
            Ok(*v)
        });
        applied.unwrap_or_else(|e| {
            relock(stats).refused += 1;
            Err(stale(e))
        })
    }

    fn stats(&self, _ctx: &Context, (): ()) -> Result<CounterStats, CounterError> {
        Ok(relock(&self.stats).clone())
    }
}

// ---- child scenarios ----

fn arg_ms(key: &str) -> Duration {
    Duration::from_millis(arg(key).parse().unwrap())
}

/// Child: a lock node (members as `tcp://` URLs, its id, lease, retransmit, state file,
/// local `shm://` URL); reports `ready incarnation=N started=NS` (`started`: a clock
/// reading taken before the node started, so its lock-delay ends after `started +
/// lease`), then runs until killed.
fn node() {
    let members: Vec<String> = arg("members").split(',').map(str::to_owned).collect();
    let id: u16 = arg("id").parse().unwrap();
    let quorums: Arc<dyn QuorumSystem> = Arc::from(default_for(members.len()).unwrap());
    let mut protocol = Config::new(EPOCH, id, quorums);
    protocol.lease = arg_ms("lease_ms");
    protocol.retransmit = arg_ms("retransmit_ms");
    let started = now_ns();
    let node = LockNode::start(NodeOptions {
        protocol,
        listen: members[usize::from(id)].clone(),
        members,
        local: Some(arg("local")),
        state_file: arg("state").into(),
    })
    .expect("start the lock node");
    report(format!(
        "ready incarnation={} started={started}",
        node.status().incarnation
    ));
    loop {
        std::thread::park();
    }
}

/// Child: the counter server at `url`; reports `listening URL`, runs until killed.
fn server() {
    let fenced = Fenced {
        counter: FencedResource::new("counter", 0),
        stats: Mutex::new(CounterStats::default()),
    };
    let handle = Server::new(CounterServer(fenced))
        .workers(16)
        .serve(&arg("url"))
        .expect("serve the counter");
    report(format!(
        "listening {}",
        handle.url().expect("a listening URL")
    ));
    loop {
        std::thread::park();
    }
}

fn connect_counter(url: &str) -> CounterClient {
    let opts = ClientOptions {
        timeout: CALL_TIMEOUT,
        ..ClientOptions::default()
    };
    CounterClient::connect_with(url, &opts)
        .unwrap_or_else(|e| panic!("connect to the counter server at {url}: {e}"))
}

/// Opens the lock through the node at `local`, trying again while the node is down
/// (restarting); `None` once `stop` exists.
fn open_lock(local: &str, stop: &Path) -> Option<DistLock> {
    let deadline = Instant::now() + CHILD_TIMEOUT;
    loop {
        match DistLock::open(local, LOCK) {
            Ok(l) => return Some(l),
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "node at {local} unreachable for {CHILD_TIMEOUT:?}: {e}"
                );
                if stop.exists() {
                    return None;
                }
                // Retry pacing while the node restarts; there is no line to wait for.
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Child: takes the lock through its node in a loop, reads the counter, writes it
/// back plus one with the fencing token; stops after `rounds` acknowledged increments
/// (0: never) or once the file `stop` exists. Reports:
///
/// - `ready` once connected;
/// - `acked VALUE TOKEN GRANTED_NS ACKED_NS` for each increment the server acknowledged;
/// - `holding TOKEN VALID_UNTIL_NS` at acquisition number `pause_round`, after the
///   read and the validity check, before sleeping `pause_ms` in the critical section
///   (the parent SIGKILLs or SIGSTOPs it there);
/// - `refused TOKEN WHY` (the fence refused), `violation TOKEN WHY`, `lost TOKEN` (the
///   guard said the lock was lost before the write), `unknown TOKEN WHY` (the call's
///   outcome is unknown), `lockerr WHY`;
/// - `done acked=N` at the end.
fn client() {
    let local = arg("local");
    let stop = PathBuf::from(arg("stop"));
    let rounds: u64 = arg("rounds").parse().unwrap();
    let mut me = Round {
        server_url: arg("server"),
        server: connect_counter(&arg("server")),
        pause_round: arg("pause_round").parse().ok(),
        pause: arg_ms("pause_ms"),
        lock_timeout: arg_ms("lock_timeout_ms"),
        round: 0,
        acked: 0,
    };
    let mut lock = open_lock(&local, &stop);
    report("ready");
    while (rounds == 0 || me.acked < rounds) && !stop.exists() {
        match lock.as_mut() {
            Some(l) => {
                if !me.run(l) {
                    lock = None; // the node went away: reconnect
                }
            }
            None => lock = open_lock(&local, &stop),
        }
    }
    report(format!("done acked={}", me.acked));
}

/// A client's state across its rounds.
struct Round {
    server_url: String,
    server: CounterClient,
    pause_round: Option<u64>,
    pause: Duration,
    lock_timeout: Duration,
    /// Acquisitions that reached the write.
    round: u64,
    acked: u64,
}

impl Round {
    /// One acquisition, read, write and release; `false` if the node went away.
    fn run(&mut self, lock: &mut DistLock) -> bool {
        let guard = match lock.try_lock_for(self.lock_timeout) {
            Ok(g) => g,
            Err(e) => {
                report(format!("lockerr {e}"));
                return !matches!(e, DistLockError::Rpc { .. } | DistLockError::Connect { .. });
            }
        };
        let granted = now_ns();
        let token = guard.token().0;
        let value = match self.server.get(token).wait() {
            Ok(v) => v,
            Err(e) => {
                let what = if matches!(e, RpcError::Service(_)) {
                    "refused"
                } else {
                    "unknown"
                };
                report(format!("{what} {token} read: {e}"));
                self.reconnect_after(&e);
                return true;
            }
        };
        if let Err(e) = guard.check() {
            report(format!("lost {token} {e}"));
            return true;
        }
        if self.pause_round == Some(self.round) {
            report(format!("holding {token} {}", guard.valid_until()));
            std::thread::sleep(self.pause);
        }
        self.round += 1;
        match self.server.incr((token, value)).wait() {
            Ok(new) => {
                self.acked += 1;
                report(format!("acked {new} {token} {granted} {}", now_ns()));
            }
            Err(RpcError::Service(e @ CounterError::Stale { .. })) => {
                report(format!("refused {token} {e}"));
            }
            Err(RpcError::Service(e @ CounterError::Violation { .. })) => {
                report(format!("violation {token} {e}"));
            }
            Err(e) => {
                report(format!("unknown {token} write: {e}"));
                self.reconnect_after(&e);
            }
        }
        drop(guard);
        true
    }

    /// After a failed call: a new connection unless the call only timed out or was
    /// refused (the connection is fine then).
    fn reconnect_after(&mut self, e: &RpcError<CounterError>) {
        if !matches!(e, RpcError::DeadlineExceeded | RpcError::Service(_)) {
            self.server = connect_counter(&self.server_url);
        }
    }
}

/// Child: reports the counter server's [`CounterStats`]: `stats VALUE APPLIED REFUSED
/// REFUSED_READS`, then `applied TOKEN VALUE` per increment and `violation TOKEN
/// EXPECTED CURRENT` per violation.
fn stats() {
    let st = connect_counter(&arg("url"))
        .stats(())
        .wait()
        .expect("the counter server's stats");
    report(format!(
        "stats {} {} {} {}",
        st.value, st.applied, st.refused, st.refused_reads
    ));
    for (token, value) in &st.log {
        report(format!("applied {token} {value}"));
    }
    for (token, expected, current) in &st.violations {
        report(format!("violation {token} {expected} {current}"));
    }
}

// ---- the network ----

fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program} {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Tests of this process so far (names and subnets are unique per test).
static NEXT: AtomicU32 = AtomicU32::new(0);

/// One test's network namespaces: a bridge, one per node, one for the server. Drop
/// deletes them, and with them every link the test made (each veth pair has an end in
/// a node's or the server's namespace; the bridge is in its own).
struct Netns {
    tag: String,
    subnet: String,
    bridge: String,
    nodes: Vec<String>,
    server: String,
    created: Vec<String>,
}

impl Netns {
    /// Builds the namespaces for `n` nodes; `Err` says why it could not.
    fn create(n: usize) -> Result<Netns, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("not root".into());
        }
        static SWEEP: Once = Once::new();
        SWEEP.call_once(sweep_stale_namespaces);
        let pid = std::process::id();
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        // At most 11 bytes ("d" + a 7-digit pid + "x" + 2 digits), so that the longest
        // link name, the tag plus "p" and a digit, fits Linux's 15.
        let tag = format!("d{pid}x{}", k % 100);
        let x = pid.wrapping_mul(16).wrapping_add(k);
        let mut net = Netns {
            subnet: format!("10.{}.{}", (x >> 8) & 0xff, x & 0xff),
            bridge: format!("{tag}b"),
            nodes: (0..n).map(|i| format!("{tag}n{i}")).collect(),
            server: format!("{tag}s"),
            created: Vec::new(),
            tag,
        };
        let all: Vec<String> = std::iter::once(net.bridge.clone())
            .chain(net.nodes.iter().cloned())
            .chain(std::iter::once(net.server.clone()))
            .collect();
        for ns in all {
            ip(&["netns", "add", &ns])?; // on failure, drop removes what was made
            net.created.push(ns);
        }
        let (tag, bridge) = (net.tag.clone(), net.bridge.clone());
        let br = format!("{tag}br");
        ip(&["-n", &bridge, "link", "add", &br, "type", "bridge"])?;
        ip(&["-n", &bridge, "link", "set", &br, "up"])?;
        let endpoints = (0..n)
            .map(|i| (net.nodes[i].clone(), i.to_string(), (i + 1).to_string()))
            .chain(std::iter::once((
                net.server.clone(),
                "s".to_owned(),
                "200".to_owned(),
            )));
        for (ns, suffix, host) in endpoints {
            let (veth, port) = (format!("{tag}v{suffix}"), format!("{tag}p{suffix}"));
            let cidr = format!("{}.{host}/24", net.subnet);
            ip(&[
                "link", "add", &veth, "netns", &ns, "type", "veth", "peer", "name", &port, "netns",
                &bridge,
            ])?;
            ip(&["-n", &bridge, "link", "set", &port, "master", &br, "up"])?;
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", &veth])?;
            ip(&["-n", &ns, "link", "set", &veth, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// Node `i`'s bridge port.
    fn port(&self, i: usize) -> String {
        format!("{}p{i}", self.tag)
    }
}

/// The pid in the name of a namespace this test makes (`d<pid>x<k>` then `b`, `s` or
/// `n<i>`).
fn namespace_pid(name: &str) -> Option<u32> {
    let (pid, rest) = name.strip_prefix('d')?.split_once('x')?;
    let rest = rest.trim_start_matches(|ch: char| ch.is_ascii_digit());
    let node = rest
        .strip_prefix('n')
        .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()));
    (rest == "b" || rest == "s" || node).then_some(())?;
    pid.parse().ok()
}

/// Deletes the namespaces of earlier runs that died before their drop ran (a test
/// binary killed by a timeout): those whose pid is gone.
fn sweep_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if let Some(pid) = namespace_pid(name)
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            match ip(&["netns", "del", name]) {
                Ok(()) => println!("removed the namespace {name} of a dead run"),
                Err(e) => eprintln!("cleanup: {e}"),
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Where the processes run.
enum Net {
    Netns(Netns),
    /// Everything on 127.0.0.1: the nodes' ports, chosen by the parent.
    Loopback(Vec<u16>),
}

impl Net {
    fn new(n: usize) -> Net {
        let netns = if std::env::var_os(LOOPBACK_ENV).is_some() {
            Err(format!("{LOOPBACK_ENV} is set"))
        } else {
            Netns::create(n)
        };
        match netns {
            Ok(ns) => Net::Netns(ns),
            Err(why) => {
                println!("network namespaces unavailable ({why}): loopback, all in one namespace");
                Net::Loopback((0..n).map(|_| free_tcp_port()).collect())
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Net::Netns(ns) => ns.nodes.len(),
            Net::Loopback(ports) => ports.len(),
        }
    }

    fn netns(&self) -> Option<&Netns> {
        match self {
            Net::Netns(ns) => Some(ns),
            Net::Loopback(_) => None,
        }
    }

    fn node_url(&self, i: usize) -> String {
        match self {
            Net::Netns(ns) => format!("tcp://{}.{}:{NODE_PORT}", ns.subnet, i + 1),
            Net::Loopback(ports) => format!("tcp://127.0.0.1:{}", ports[i]),
        }
    }

    fn server_listen_url(&self) -> String {
        match self {
            Net::Netns(ns) => format!("tcp://{}.200:{SERVER_PORT}", ns.subnet),
            Net::Loopback(_) => "tcp://127.0.0.1:0".into(),
        }
    }

    /// The command prefix that runs a child in namespace `ns` (none on loopback).
    fn prefix(&self, ns: impl Fn(&Netns) -> &str) -> Vec<String> {
        match self {
            Net::Netns(n) => ["ip", "netns", "exec", ns(n)].map(str::to_owned).to_vec(),
            Net::Loopback(_) => Vec::new(),
        }
    }
}

fn free_tcp_port() -> u16 {
    shmlink::transport::unused_tcp_port(std::net::Ipv4Addr::LOCALHOST.into())
        .expect("a free port on 127.0.0.1")
}

/// A scratch directory (state files, the stop file), removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let p = std::env::temp_dir().join(format!(
            "dlock-cluster-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---- the cluster, from the parent ----

/// An increment a client saw acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ack {
    client: usize,
    value: u64,
    token: u64,
    /// When the client had the lock.
    granted: u64,
    /// When the server's answer came.
    at: u64,
}

/// How a client runs.
#[derive(Debug, Clone, Copy)]
struct ClientOpts {
    /// Acknowledged increments after which it stops (0: until told).
    rounds: u64,
    /// The acquisition at which it reports `holding` and sleeps `pause`.
    pause_round: Option<u64>,
    pause: Duration,
    /// How long it waits for the lock before it withdraws and asks again.
    lock_timeout: Duration,
}

impl ClientOpts {
    fn until_stopped() -> Self {
        Self {
            rounds: 0,
            pause_round: None,
            pause: Duration::ZERO,
            lock_timeout: LOCK_TIMEOUT,
        }
    }

    fn rounds(rounds: u64) -> Self {
        Self {
            rounds,
            ..Self::until_stopped()
        }
    }

    /// Holds the lock for `pause` at its third acquisition.
    fn pausing(pause: Duration) -> Self {
        Self {
            pause_round: Some(2),
            pause,
            ..Self::until_stopped()
        }
    }
}

/// A client process and what it reported.
struct ClientProc {
    node: usize,
    child: Option<Child>,
    /// Every report so far, in order.
    lines: Vec<String>,
}

impl ClientProc {
    fn acks(&self, index: usize) -> Vec<Ack> {
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix("acked "))
            .map(|rest| {
                let f: Vec<u64> = rest
                    .split(' ')
                    .map(|x| x.parse().expect("an acked line of numbers"))
                    .collect();
                Ack {
                    client: index,
                    value: f[0],
                    token: f[1],
                    granted: f[2],
                    at: f[3],
                }
            })
            .collect()
    }

    fn count(&self, prefix: &str) -> usize {
        self.lines.iter().filter(|l| l.starts_with(prefix)).count()
    }
}

/// What the counter server reported at the end.
#[derive(Debug, Default)]
struct Stats {
    value: u64,
    applied: u64,
    refused: u64,
    refused_reads: u64,
    log: Vec<(u64, u64)>,
    violations: Vec<String>,
}

/// A cluster of `n` node processes, a counter server and clients. Drop kills every
/// child, removes the test's shared-memory segments, then (its fields) the state
/// directory and the namespaces.
struct Cluster {
    name: &'static str,
    n: usize,
    quorums: Box<dyn QuorumSystem>,
    members: Vec<String>,
    locals: Vec<String>,
    /// The prefix of every segment name of this test.
    shm_prefix: String,
    nodes: Vec<Option<Child>>,
    /// Incarnation and start time of each node's current process.
    started: Vec<(u64, u64)>,
    server: Option<Child>,
    server_url: String,
    clients: Vec<ClientProc>,
    /// Whose lines the next blocking wait reads.
    turn: usize,
    stop: PathBuf,
    dir: Dir,
    net: Net,
}

impl Cluster {
    /// Builds the network and starts the server and `n` nodes.
    fn start(name: &'static str, n: usize) -> Cluster {
        Self::start_on(name, Net::new(n))
    }

    /// Starts the server and a node per place of `net`.
    fn start_on(name: &'static str, net: Net) -> Cluster {
        let n = net.len();
        let dir = Dir::new();
        let shm_prefix = format!(
            "dlc-{}-{}-",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut c = Cluster {
            name,
            n,
            quorums: default_for(n).unwrap(),
            members: (0..n).map(|i| net.node_url(i)).collect(),
            locals: (0..n).map(|i| format!("shm://{shm_prefix}l{i}")).collect(),
            shm_prefix,
            nodes: Vec::new(),
            started: Vec::new(),
            server: None,
            server_url: String::new(),
            clients: Vec::new(),
            turn: 0,
            stop: dir.0.join("stop"),
            dir,
            net,
        };
        let mut server = Scenario::new("server")
            .arg("url", c.net.server_listen_url())
            .spawn_under(&as_strs(&c.net.prefix(|ns| &ns.server)));
        let line = server.wait_for("listening ", CHILD_TIMEOUT);
        c.server_url = line["listening ".len()..].to_owned();
        c.server = Some(server);
        for i in 0..n {
            let (child, incarnation, started) = c.spawn_node(i);
            c.nodes.push(Some(child));
            c.started.push((incarnation, started));
        }
        c
    }

    /// Starts node `i` and waits for it: the child, its incarnation and start time.
    fn spawn_node(&self, i: usize) -> (Child, u64, u64) {
        let mut child = Scenario::new("node")
            .arg("members", self.members.join(","))
            .arg("id", i)
            .arg("lease_ms", LEASE.as_millis())
            .arg("retransmit_ms", RETRANSMIT.as_millis())
            .arg("state", self.dir.0.join(format!("node{i}.state")).display())
            .arg("local", &self.locals[i])
            .spawn_under(&as_strs(&self.net.prefix(|ns| &ns.nodes[i])));
        let line = child.wait_for("ready ", CHILD_TIMEOUT);
        let field = |key: &str| -> u64 {
            line.split(' ')
                .find_map(|kv| kv.strip_prefix(key))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("node {i}: no {key} in {line:?}"))
        };
        (child, field("incarnation="), field("started="))
    }

    /// Starts a client on node `node` and waits until it is connected; returns its index.
    fn add_client(&mut self, node: usize, opts: ClientOpts) -> usize {
        let mut child = Scenario::new("client")
            .arg("local", &self.locals[node])
            .arg("server", &self.server_url)
            .arg("stop", self.stop.display())
            .arg("rounds", opts.rounds)
            .arg(
                "pause_round",
                opts.pause_round.map_or("none".into(), |r| r.to_string()),
            )
            .arg("pause_ms", opts.pause.as_millis())
            .arg("lock_timeout_ms", opts.lock_timeout.as_millis())
            .spawn_under(&as_strs(&self.net.prefix(|ns| &ns.nodes[node])));
        child.wait_for("ready", CHILD_TIMEOUT);
        self.clients.push(ClientProc {
            node,
            child: Some(child),
            lines: vec!["ready".into()],
        });
        self.clients.len() - 1
    }

    /// One client on every node, all with `opts`.
    fn client_per_node(&mut self, opts: ClientOpts) {
        for i in 0..self.n {
            self.add_client(i, opts);
        }
    }

    /// Reads what the clients reported: everything already there, else waits up to
    /// `block` on one of them (in turn).
    fn pump(&mut self, block: Duration) {
        let mut got = false;
        for c in &mut self.clients {
            if let Some(child) = c.child.as_mut() {
                while let Some(line) = child.try_wait_for("", Duration::ZERO) {
                    c.lines.push(line);
                    got = true;
                }
            }
        }
        if got {
            return;
        }
        let began = Instant::now();
        let live: Vec<usize> = (0..self.clients.len())
            .filter(|&i| self.clients[i].child.is_some())
            .collect();
        if !live.is_empty() {
            self.turn = (self.turn + 1) % live.len();
            let c = &mut self.clients[live[self.turn]];
            if let Some(line) = c.child.as_mut().and_then(|ch| ch.try_wait_for("", block)) {
                c.lines.push(line);
                return;
            }
        }
        // Nothing to read (every client exited): do not spin.
        if let Some(rest) = block.checked_sub(began.elapsed()) {
            std::thread::sleep(rest);
        }
    }

    /// Pumps until `done` holds; panics with what every client reported so far after
    /// `timeout`.
    fn wait_until(&mut self, what: &str, timeout: Duration, done: impl Fn(&Cluster) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "{}: no {what} within {timeout:?}; clients:\n{}",
                self.name,
                self.summary()
            );
            self.pump(Duration::from_millis(5));
        }
    }

    /// Pumps for `d` (a fault's duration).
    fn pump_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.pump(Duration::from_millis(5).min(end - Instant::now()));
        }
    }

    /// Every acknowledged increment, of every client.
    fn acks(&self) -> Vec<Ack> {
        let mut all: Vec<Ack> = (0..self.clients.len())
            .flat_map(|i| self.clients[i].acks(i))
            .collect();
        all.sort_by_key(|a| a.at);
        all
    }

    /// Acks of the lock granted after `t` (an ack that comes after `t` may be of an
    /// earlier grant: a holder finishing, an answer delayed), to the clients for which
    /// `who` holds, by time of the ack.
    fn acks_after(&self, t: u64, who: impl Fn(usize) -> bool) -> Vec<Ack> {
        self.acks()
            .into_iter()
            .filter(|a| a.granted > t && who(a.client))
            .collect()
    }

    /// Whether every client for which `who` holds has an ack of a grant after `t`.
    fn each_acked_after(&self, t: u64, who: impl Fn(usize) -> bool) -> bool {
        (0..self.clients.len())
            .filter(|&i| who(i))
            .all(|i| self.clients[i].acks(i).iter().any(|a| a.granted > t))
    }

    fn summary(&self) -> String {
        self.clients
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let tail = c.lines.len().saturating_sub(6);
                format!(
                    "  client {i} on node {}: {} acked, {} lockerr, last: {:?}",
                    c.node,
                    c.count("acked"),
                    c.count("lockerr"),
                    &c.lines[tail..]
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn client_pid(&self, i: usize) -> Pid {
        let child = self.clients[i].child.as_ref().expect("a live client");
        Pid::from_raw(child.pid() as i32)
    }

    fn node_pid(&self, i: usize) -> Pid {
        let child = self.nodes[i].as_ref().expect("a live node");
        Pid::from_raw(child.pid() as i32)
    }

    /// Client `i` was SIGKILLed: reaps it, keeping what it reported.
    fn reap_client(&mut self, i: usize) {
        let child = self.clients[i].child.take().expect("a live client");
        let done = child.wait(CHILD_TIMEOUT);
        self.clients[i].lines = done.reports;
    }

    /// Waits for every live client to finish its rounds (`stop`: tells them to stop
    /// first); each must exit successfully.
    fn finish_clients(&mut self, stop: bool) {
        if stop {
            std::fs::write(&self.stop, b"stop").expect("write the stop file");
        }
        for c in &mut self.clients {
            if let Some(child) = c.child.take() {
                let done = child.success(CHILD_TIMEOUT.max(PROGRESS_TIMEOUT));
                c.lines = done.reports;
            }
        }
    }

    /// The counter server's stats (read by a child in the server's namespace).
    fn stats(&self) -> Stats {
        let done = Scenario::new("stats")
            .arg("url", &self.server_url)
            .spawn_under(&as_strs(&self.net.prefix(|ns| &ns.server)))
            .success(CHILD_TIMEOUT);
        let mut st = Stats::default();
        for line in &done.reports {
            let f: Vec<&str> = line.split(' ').collect();
            let num = |k: usize| -> u64 { f[k].parse().expect("a stats number") };
            match f[0] {
                "stats" => {
                    (st.value, st.applied, st.refused, st.refused_reads) =
                        (num(1), num(2), num(3), num(4));
                }
                "applied" => st.log.push((num(1), num(2))),
                "violation" => st.violations.push(line.clone()),
                _ => {}
            }
        }
        st
    }

    /// The safety checks of every test: no violation; the log holds the values 1..=N in
    /// order with strictly rising tokens; every acknowledged increment is in it, with its
    /// token, exactly once. Returns the stats.
    fn check_safety(&self) -> Stats {
        let st = self.stats();
        let name = self.name;
        assert!(
            st.violations.is_empty(),
            "{name}: {} violations at the counter server: {:?}",
            st.violations.len(),
            st.violations
        );
        assert_eq!(
            (st.value, st.applied),
            (st.log.len() as u64, st.log.len() as u64),
            "{name}: value {} and applied {} differ from the {} increments logged",
            st.value,
            st.applied,
            st.log.len()
        );
        for (i, w) in st.log.windows(2).enumerate() {
            assert!(
                w[1].0 > w[0].0 && w[1].1 == w[0].1 + 1,
                "{name}: increment {} (token {}, value {}) follows token {} value {}: tokens \
                 must strictly rise as the value goes up by one",
                i + 1,
                w[1].0,
                w[1].1,
                w[0].0,
                w[0].1
            );
        }
        if let Some(first) = st.log.first() {
            assert_eq!(first.1, 1, "{name}: the first increment gave {}", first.1);
        }
        let acks = self.acks();
        let mut values: Vec<u64> = acks.iter().map(|a| a.value).collect();
        values.sort_unstable();
        values.dedup();
        assert_eq!(
            values.len(),
            acks.len(),
            "{name}: {} acks but {} distinct values: an increment was acknowledged twice",
            acks.len(),
            values.len()
        );
        for a in &acks {
            let logged = usize::try_from(a.value)
                .ok()
                .and_then(|v| v.checked_sub(1))
                .and_then(|i| st.log.get(i));
            assert_eq!(
                logged.map(|l| l.0),
                Some(a.token),
                "{name}: client {} was acknowledged value {} with token {}, the server logged \
                 {logged:?} for that value (log of {})",
                a.client,
                a.value,
                a.token,
                st.log.len()
            );
        }
        st
    }

    /// Nodes whose quorum holds `node`.
    fn quorums_with(&self, node: usize) -> Vec<usize> {
        (0..self.n)
            .filter(|&i| self.quorums.quorum(i as u16).contains(&(node as u16)))
            .collect()
    }

    fn remove_segments(&self) {
        let hosts: Vec<String> = self.locals.iter().map(|l| host_segment(l)).collect();
        let Ok(all) = shmlink::segment::list() else {
            return;
        };
        for info in all {
            let name = info.name.as_str();
            let ours = name.starts_with(&self.shm_prefix) || hosts.iter().any(|h| h == name);
            if ours && let Err(e) = shmlink::segment::unlink(name) {
                eprintln!("cleanup: unlink segment {name}: {e}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Children first (dropping a Child kills and reaps it), so that nothing holds
        // a segment or a namespace when they are removed.
        for c in &mut self.clients {
            c.child = None;
        }
        self.nodes.clear();
        self.server = None;
        self.remove_segments();
    }
}

/// The segment of the host Bakery lock that `DistLock` takes through the node at
/// `local`, named as `host_segment` in src/dlock/client.rs names it. `DistLock` never
/// removes it; the cluster's drop does.
fn host_segment(local: &str) -> String {
    format!(
        "shmlink-dlock-{:016x}-{:016x}",
        LockName::new(local).0,
        LockName::new(LOCK).0
    )
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn iptables_available() -> Result<(), String> {
    run("iptables", &["--version"])
}

// ---- the tests ----

/// Runs `rounds` increments from a client on each of `n` nodes, no faults.
fn no_faults(name: &'static str, n: usize, rounds: u64) {
    let began = Instant::now();
    let mut c = Cluster::start(name, n);
    c.client_per_node(ClientOpts::rounds(rounds));
    c.finish_clients(false);
    let st = c.check_safety();
    let acks = c.acks();
    let total = n as u64 * rounds;
    assert_eq!(
        (st.value, acks.len() as u64),
        (total, total),
        "{name}: {n} clients x {rounds} rounds should give {total}; the server has {}, \
         clients saw {} acknowledged",
        st.value,
        acks.len()
    );
    assert_eq!(
        (st.refused, st.refused_reads),
        (0, 0),
        "{name}: without faults the fence must never refuse (writes {}, reads {})",
        st.refused,
        st.refused_reads
    );
    // Mutual exclusion seen from the clients' own clocks: a holder had its answer
    // (`at`) before it released, so before the next holder was granted.
    let mut by_value = acks.clone();
    by_value.sort_by_key(|a| a.value);
    for w in by_value.windows(2) {
        assert!(
            w[1].granted > w[0].at,
            "{name}: client {} was granted (value {}) {} us before client {} had its \
             increment to {} acknowledged, while holding the lock",
            w[1].client,
            w[1].value,
            (w[0].at - w[1].granted) / 1000,
            w[0].client,
            w[0].value
        );
    }
    let span = acks.last().unwrap().at - acks.first().unwrap().granted;
    println!(
        "{name}: {total} increments by {n} clients in {} ms ({:.0}/s); test {:?}",
        ms(span),
        total as f64 / (span as f64 / 1e9),
        began.elapsed()
    );
}

#[test]
#[cfg_attr(miri, ignore = "spawns processes")]
fn five_nodes_without_faults_count_every_increment_once() {
    no_faults("no-faults-5", 5, 40);
}

#[test]
#[cfg_attr(miri, ignore = "spawns processes")]
fn nine_nodes_without_faults_count_every_increment_once() {
    no_faults("no-faults-9", 9, 10);
}

#[test]
#[cfg_attr(miri, ignore = "spawns processes")]
fn a_sigkilled_holder_loses_the_lock_and_others_go_on() {
    let name = "holder-kill";
    let mut c = Cluster::start(name, 5);
    let victim = c.add_client(0, ClientOpts::pausing(Duration::from_secs(30)));
    for i in 1..5 {
        c.add_client(i, ClientOpts::until_stopped());
    }
    let (holding, _) = wait_holding(&mut c, victim);
    let fault = now_ns();
    kill(c.client_pid(victim), Signal::SIGKILL).expect("SIGKILL the holder");
    c.reap_client(victim);
    let others = |i: usize| i != victim;
    c.wait_until(
        "ack by another client after the kill",
        PASS_ON_TIMEOUT,
        |c| !c.acks_after(fault, others).is_empty(),
    );
    let next = c.acks_after(fault, others)[0];
    c.wait_until(
        "ack by every other client after the kill",
        PROGRESS_TIMEOUT,
        |c| c.each_acked_after(fault, others),
    );
    c.finish_clients(true);
    let st = c.check_safety();
    assert!(
        st.log.iter().all(|&(t, _)| t != holding),
        "{name}: the killed holder's token {holding} was applied: {:?}",
        st.log
    );
    assert!(
        next.token > holding,
        "{name}: the next holder's token {} is not above the killed holder's {holding}",
        next.token
    );
    assert_eq!(st.refused, 0, "{name}: {} writes refused", st.refused);
    println!(
        "recovery holder-kill: {} ms (lease {} ms): next increment by client {} with token {} \
         (the killed holder had {holding}); {} increments in all",
        ms(next.at - fault),
        LEASE.as_millis(),
        next.client,
        next.token,
        st.value
    );
}

/// Waits until client `i` reports `holding TOKEN VALID_UNTIL`; returns the token and
/// the end of its validity as it knew it then.
fn wait_holding(c: &mut Cluster, i: usize) -> (u64, u64) {
    c.wait_until("holding report", PROGRESS_TIMEOUT, |c| {
        c.clients[i].count("holding") > 0
    });
    let line = c.clients[i]
        .lines
        .iter()
        .find(|l| l.starts_with("holding "))
        .unwrap();
    let f: Vec<u64> = line["holding ".len()..]
        .split(' ')
        .map(|x| x.parse().expect("a holding line of numbers"))
        .collect();
    (f[0], f[1])
}

#[test]
#[cfg_attr(miri, ignore = "spawns processes")]
fn a_sigkilled_arbiter_restarts_with_a_new_incarnation_and_tokens_keep_rising() {
    let name = "arbiter-kill";
    let mut c = Cluster::start(name, 5);
    let victim = 4;
    let dependent = c.quorums_with(victim);
    // A holder whose quorum holds the victim: when it reports `holding`, the victim's
    // vote is granted to it.
    let holder_node = *dependent
        .iter()
        .find(|&&i| i != victim)
        .expect("another node whose quorum holds the victim");
    // Clients do not withdraw and ask again while the arbiter is away: each attempt
    // must get through the restarted node by itself.
    let patient = Duration::from_secs(10);
    let mut holder = 0;
    for i in 0..5 {
        let mut opts = if i == holder_node {
            ClientOpts::pausing(Duration::from_millis(100))
        } else {
            ClientOpts::until_stopped()
        };
        opts.lock_timeout = patient;
        let k = c.add_client(i, opts);
        if i == holder_node {
            holder = k;
        }
    }
    wait_holding(&mut c, holder);
    let (incarnation, _) = c.started[victim];
    let fault = now_ns();
    let status = c.nodes[victim].take().unwrap().kill();
    // Down for two leases: the holder's votes lapse meanwhile.
    c.pump_for(2 * LEASE);
    let (child, new_incarnation, restarted) = c.spawn_node(victim);
    c.nodes[victim] = Some(child);
    c.started[victim] = (new_incarnation, restarted);
    let depends = |client: usize, cl: &Cluster| dependent.contains(&cl.clients[client].node);
    c.wait_until(
        "ack by every client after the restart",
        PROGRESS_TIMEOUT + patient,
        |c| c.each_acked_after(restarted, |_| true),
    );
    c.finish_clients(true);
    let st = c.check_safety();
    assert_eq!(
        new_incarnation,
        incarnation + 1,
        "{name}: node {victim} restarted as incarnation {new_incarnation} after {incarnation}"
    );
    // While the victim is down, attempts whose quorum holds it move to a live quorum
    // once they have suspected it for a lease (the core's fallback), so grants go on;
    // exclusion and rising tokens are checked by `check_safety` above.
    let delayed = restarted + LEASE.as_nanos() as u64;
    let next = c.acks_after(fault, |_| true)[0];
    let first_through = c
        .acks_after(restarted, |i| depends(i, &c))
        .first()
        .copied()
        .expect("an ack through the restarted node");
    // Once the lock-delay is over, the attempts that waited for the node are served
    // within retransmissions (backing off to a third of the lease) and the turns of the
    // others (a few ms each): 3 s is ample, and far below the clients' patience.
    let bound = delayed + 3_000_000_000;
    for (i, cl) in c.clients.iter().enumerate() {
        if !dependent.contains(&cl.node) {
            continue;
        }
        let first = cl.acks(i).into_iter().find(|a| a.granted > restarted);
        assert!(
            first.is_some_and(|a| a.granted <= bound),
            "{name}: client {i} on node {}, whose quorum holds node {victim}, was first \
             granted {} ms after the restart, {} ms after the lock-delay of {} ms ended: its \
             attempt was not served",
            cl.node,
            first.map_or(-1, |a| ms(a.granted - restarted) as i64),
            first.map_or(-1, |a| ms(a.granted.saturating_sub(delayed)) as i64),
            LEASE.as_millis()
        );
    }
    println!(
        "recovery arbiter-kill: {} ms to the next increment (client {} on node {}; quorums \
         holding node {victim}: those of nodes {dependent:?}); node {victim} ({status}) back \
         after {} ms as incarnation {new_incarnation}, first grant to a client of those nodes \
         {} ms after its restart (lock-delay {} ms; an attempt may have moved to a live \
         quorum); {} increments, {} refused",
        ms(next.at - fault),
        next.client,
        c.clients[next.client].node,
        ms(restarted - fault),
        ms(first_through.granted - restarted),
        LEASE.as_millis(),
        st.value,
        st.refused
    );
}

#[test]
#[cfg_attr(miri, ignore = "spawns processes")]
fn a_holder_paused_past_its_lease_is_refused_by_the_fence() {
    // The whole host pauses (client and node, as a suspended VM would): the node stops
    // renewing, the votes lapse, another holder reads and writes; then the paused
    // client wakes up inside its critical section and writes with its old token.
    paused_holder("holder-pause", true);
}

/// The same with only the client process paused (a long GC pause, a debugger).
#[test]
#[cfg_attr(miri, ignore = "spawns processes")]
fn a_paused_client_alone_loses_its_lock_after_the_lease() {
    paused_holder("client-pause", false);
}

/// SIGSTOPs a holder (with its node if `with_node`) at its critical section, waits for
/// another client's increment, SIGCONTs it: its late write must be refused.
fn paused_holder(name: &'static str, with_node: bool) {
    let mut c = Cluster::start(name, 5);
    let paused_node = 0;
    let victim = c.add_client(paused_node, ClientOpts::pausing(4 * LEASE));
    for i in 1..5 {
        c.add_client(i, ClientOpts::until_stopped());
    }
    let (holding, valid_until) = wait_holding(&mut c, victim);
    let mut paused = vec![c.client_pid(victim)];
    if with_node {
        paused.insert(0, c.node_pid(paused_node)); // first, so it renews no more
    }
    let fault = now_ns();
    for &pid in &paused {
        kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
    }
    let others = |i: usize| i != victim;
    c.wait_until(
        "ack by another client while the holder is paused",
        PASS_ON_TIMEOUT,
        |c| !c.acks_after(fault, others).is_empty(),
    );
    let next = c.acks_after(fault, others)[0];
    let resumed = now_ns();
    for &pid in paused.iter().rev() {
        kill(pid, Signal::SIGCONT).expect("SIGCONT");
    }
    c.wait_until("the late write's refusal", PROGRESS_TIMEOUT, |c| {
        c.clients[victim].count("refused ") > 0
    });
    c.wait_until("ack by the resumed client", PROGRESS_TIMEOUT, |c| {
        c.each_acked_after(resumed, |i| i == victim)
    });
    c.finish_clients(true);
    let st = c.check_safety();
    let refusal = c.clients[victim]
        .lines
        .iter()
        .find(|l| l.starts_with("refused "))
        .unwrap()
        .clone();
    assert!(
        refusal.starts_with(&format!("refused {holding} ")),
        "{name}: the paused holder had token {holding}; refused: {refusal:?}"
    );
    assert_eq!(
        (st.refused, st.refused_reads),
        (1, 0),
        "{name}: expected exactly the paused holder's write refused; refused writes {}, reads {}",
        st.refused,
        st.refused_reads
    );
    assert!(
        next.token > holding,
        "{name}: the holder after the pause has token {}, not above the paused {holding}",
        next.token
    );
    // The paused holder's validity (as it knew it, a lower bound) ended first.
    assert!(
        next.granted > valid_until,
        "{name}: client {} was granted the lock {} ms before the paused holder's validity \
         ended",
        next.client,
        ms(valid_until - next.granted)
    );
    println!(
        "recovery {name}: {} ms (lease {} ms): next increment by client {} with token {}; \
         paused {} ms; the paused holder's write with token {holding} was refused",
        ms(next.at - fault),
        LEASE.as_millis(),
        next.client,
        next.token,
        ms(resumed - fault),
    );
}

#[test]
#[cfg_attr(miri, ignore = "spawns processes")]
fn a_partitioned_node_blocks_no_safety_and_all_progress_after_the_heal() {
    let name = "partition";
    let net = Net::new(5);
    let Some(ns) = net.netns() else {
        println!("{name}: skipped (needs network namespaces)");
        return;
    };
    let cut = 0;
    let (bridge, port) = (ns.bridge.clone(), ns.port(cut));
    let mut c = Cluster::start_on(name, net);
    c.client_per_node(ClientOpts::until_stopped());
    c.wait_until("a first ack by every client", PROGRESS_TIMEOUT, |c| {
        c.each_acked_after(0, |_| true)
    });
    // Times taken once the commands returned: the port is surely down (up) by then.
    ip(&["-n", &bridge, "link", "set", &port, "down"]).expect("partition");
    let fault = now_ns();
    c.pump_for(3 * LEASE);
    ip(&["-n", &bridge, "link", "set", &port, "up"]).expect("heal");
    let healed = now_ns();
    c.wait_until(
        "ack by every client after the heal",
        PROGRESS_TIMEOUT,
        |c| c.each_acked_after(healed, |_| true),
    );
    c.finish_clients(true);
    let st = c.check_safety();
    let dependent = c.quorums_with(cut);
    let avoiding: Vec<usize> = (0..5).filter(|i| !dependent.contains(i)).collect();
    // Grants whose messages were in flight when the port went down may still
    // complete on the side that needs the cut node.
    let during = |who: &[usize]| {
        c.acks()
            .iter()
            .filter(|a| {
                a.granted > fault && a.at < healed && who.contains(&c.clients[a.client].node)
            })
            .count()
    };
    // Writes applied before the cut whose answers only came after the heal.
    let late = c
        .acks()
        .iter()
        .filter(|a| a.granted < fault && a.at > healed)
        .count();
    let after = c.acks_after(healed, |_| true)[0];
    let cut_back = c.acks_after(healed, |i| c.clients[i].node == cut)[0];
    println!(
        "recovery partition: node {cut} cut off for {} ms; meanwhile {} increments by nodes \
         {avoiding:?} (their quorums avoid it), {} by nodes {dependent:?}; after the heal: \
         next increment in {} ms, node {cut}'s client back in {} ms (lease {} ms); {late} \
         answers held up by the partition; {} refused writes",
        ms(healed - fault),
        during(&avoiding),
        during(&dependent),
        ms(after.at - healed),
        ms(cut_back.at - healed),
        LEASE.as_millis(),
        st.refused
    );
}

#[test]
#[cfg_attr(miri, ignore = "spawns processes")]
fn random_packet_loss_slows_but_neither_stops_nor_breaks_the_lock() {
    let name = "loss";
    let net = Net::new(5);
    let Some(ns) = net.netns() else {
        println!("{name}: skipped (needs network namespaces)");
        return;
    };
    if let Err(e) = iptables_available() {
        println!("{name}: skipped (iptables unavailable: {e})");
        return;
    }
    let p = LOSS.to_string();
    for node_ns in &ns.nodes {
        let rule = [
            "netns",
            "exec",
            node_ns,
            "iptables",
            "-A",
            "INPUT",
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            &p,
            "-j",
            "DROP",
        ];
        ip(&rule).expect("add the packet loss rule");
    }
    let mut c = Cluster::start_on(name, net);
    let began = now_ns();
    let rounds = 10;
    c.client_per_node(ClientOpts::rounds(rounds));
    c.finish_clients(false);
    let st = c.check_safety();
    let acks = c.acks();
    assert_eq!(
        acks.len() as u64,
        5 * rounds,
        "{name}: {} increments acknowledged of {}",
        acks.len(),
        5 * rounds
    );
    let gap = acks
        .windows(2)
        .map(|w| w[1].at - w[0].at)
        .max()
        .unwrap_or(0);
    let span = acks.last().unwrap().at - began;
    println!(
        "recovery loss: {:.0}% loss per packet into each node: {} increments in {} ms \
         ({:.0}/s), longest gap between increments {} ms (lease {} ms); refused by the \
         fence: {} writes, {} reads; {} unknown outcomes, {} lock timeouts",
        LOSS * 100.0,
        acks.len(),
        ms(span),
        acks.len() as f64 / (span as f64 / 1e9),
        ms(gap),
        LEASE.as_millis(),
        st.refused,
        st.refused_reads,
        c.clients.iter().map(|c| c.count("unknown")).sum::<usize>(),
        c.clients.iter().map(|c| c.count("lockerr")).sum::<usize>(),
    );
}

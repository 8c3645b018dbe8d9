//! Channels between real processes (children re-executing this binary, see
//! `tests/support`), for every supported flavour × message kind: SPSC with a `Raw` Pod
//! struct, MPMC with the same, SPSC with a `Postcard` serde struct.
//!
//! What is checked:
//! - a stream from a child arrives in order, exactly once; MPMC with two producer and
//!   two consumer processes delivers each message exactly once;
//! - synchronous send: each `send_acked` in a child returns only after the parent
//!   began the `recv` that took that message, with the channel empty;
//! - disconnects in every direction: a sender that exits or is killed leaves what it
//!   sent to be drained, then `Disconnected`; a receiver that exits fails sends at
//!   once; a receiver killed with SIGKILL ends a blocked `send` (message handed back)
//!   or `send_acked` (`Unacknowledged { disconnected: true }`); a sender killed ends a
//!   blocked `recv`. Each blocked call must notice the kill within 100 ms (measured
//!   from the SIGKILL; printed with `--nocapture`); the same 100 ms bound holds in
//!   debug builds.
//!
//! Each property runs in both wait modes (`Blocking`, `Spin`).

mod support;

use std::thread;
use std::time::{Duration, Instant};

use shmlink::channel::{
    AckError, Channel, Flavor, Options, RecvError, RecvTimeoutError, SendError, SendTimeoutError,
    TrySendError,
};
use shmlink::region::Region;
use shmlink::segment::ShmRegion;
use shmlink::sync::WaitMode;
use shmlink::sync::atomic::{AtomicU64, Ordering};
use support::messages::{Msg, Note, Tick};
use support::{Child, Scenario, arg, builder, report, unique_name};

scenarios!(
    send_stream,
    recv_into_bitmap,
    send_then_hang,
    receive_then_hang,
    receive_then_exit,
    acked_send,
    receive_and_die_mid_pop,
);

const CHILD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after a SIGKILL a blocked call must have noticed it (detection takes
/// about 10 ms; the rest is room for a loaded machine).
const DETECT_WITHIN: Duration = Duration::from_millis(500);
/// Messages streamed from one process to another (fewer in debug builds).
const STREAM: u64 = if cfg!(debug_assertions) {
    20_000
} else {
    100_000
};

/// Runs `$f::<M>()` for the message kind the parent passed as `kind`.
macro_rules! by_kind {
    ($f:ident) => {
        match arg("kind").as_str() {
            "Tick" => $f::<Tick>(),
            "Note" => $f::<Note>(),
            other => panic!("unknown kind {other:?}"),
        }
    };
}

/// A fresh named channel (removed when the parent's last handle drops).
fn create<M: Msg>(flavor: Flavor, mode: WaitMode, capacity: usize) -> (String, Channel<M, M::C>) {
    let name = unique_name("chx");
    let opts = Options::new()
        .flavor(flavor)
        .wait_mode(mode)
        .capacity(capacity)
        .max_message(256);
    let ch = Channel::create(builder(&name).unlink_on_drop(true), opts).expect("create channel");
    (name, ch)
}

fn open<M: Msg>() -> Channel<M, M::C> {
    Channel::open(builder(&arg("name"))).expect("open channel")
}

/// A child running `scenario` on the channel `name` with messages `M`.
fn child<M: Msg>(scenario: &str, name: &str) -> Scenario {
    Scenario::new(scenario)
        .arg("name", name)
        .arg("kind", M::NAME)
}

fn label<M: Msg>(flavor: Flavor, mode: WaitMode) -> String {
    format!("{} {flavor:?} {mode:?}", M::NAME)
}

/// Kills `child` after `delay` on another thread; joining gives when SIGKILL was sent.
fn kill_after(child: Child, delay: Duration) -> thread::JoinHandle<Instant> {
    thread::spawn(move || {
        thread::sleep(delay);
        let at = Instant::now();
        child.kill();
        at
    })
}

/// How long after the kill a blocked call returned at `returned`; checks the bound.
fn detected(case: &str, what: &str, killed: Instant, returned: Instant) -> Duration {
    assert!(
        returned >= killed,
        "{case}: {what} returned before the kill"
    );
    let after = returned - killed;
    println!("{case}: {what} noticed the SIGKILL after {after:?}");
    assert!(
        after < DETECT_WITHIN,
        "{case}: {what} noticed the SIGKILL after {after:?}"
    );
    after
}

/// Declares one `#[test]` per supported flavour × message kind × wait mode for the
/// generic parent-side function `$f::<M>(flavor, mode)`.
macro_rules! cases {
    ($($f:ident),* $(,)?) => {$(
        mod $f {
            use super::*;
            #[test]
            #[cfg_attr(miri, ignore = "spawns a process")]
            fn spsc_raw() {
                super::$f::<Tick>(Flavor::Spsc, WaitMode::Blocking);
            }
            #[test]
            #[cfg_attr(miri, ignore = "spawns a process")]
            fn mpmc_raw() {
                super::$f::<Tick>(Flavor::Mpmc, WaitMode::Blocking);
            }
            #[test]
            #[cfg_attr(miri, ignore = "spawns a process")]
            fn spsc_postcard() {
                super::$f::<Note>(Flavor::Spsc, WaitMode::Blocking);
            }
            #[test]
            #[cfg_attr(miri, ignore = "spawns a process")]
            fn spsc_raw_spin() {
                super::$f::<Tick>(Flavor::Spsc, WaitMode::Spin);
            }
            #[test]
            #[cfg_attr(miri, ignore = "spawns a process")]
            fn mpmc_raw_spin() {
                super::$f::<Tick>(Flavor::Mpmc, WaitMode::Spin);
            }
            #[test]
            #[cfg_attr(miri, ignore = "spawns a process")]
            fn spsc_postcard_spin() {
                super::$f::<Note>(Flavor::Spsc, WaitMode::Spin);
            }
            #[test]
            #[cfg_attr(miri, ignore = "spawns a process")]
            fn mpmc_postcard() {
                super::$f::<Note>(Flavor::Mpmc, WaitMode::Blocking);
            }
            #[test]
            #[cfg_attr(miri, ignore = "spawns a process")]
            fn mpmc_postcard_spin() {
                super::$f::<Note>(Flavor::Mpmc, WaitMode::Spin);
            }
        }
    )*};
}

cases!(
    stream_arrives_in_order_exactly_once,
    send_acked_returns_after_each_recv,
    sender_exit_is_drained_then_disconnected,
    sender_killed_is_drained_then_disconnected,
    sender_killed_ends_a_blocked_recv,
    receiver_exit_fails_sends_at_once,
    receiver_killed_ends_a_blocked_send,
    receiver_killed_ends_a_blocked_send_acked,
);

// ---- scenarios (children) ----

/// Sends `first .. first + count`, then exits (dropping the sender).
fn send_stream() {
    fn run<M: Msg>() {
        let ch = open::<M>();
        let first: u64 = arg("first").parse().unwrap();
        let count: u64 = arg("count").parse().unwrap();
        let mut tx = ch.sender().expect("claim sender");
        for seq in first..first + count {
            tx.send(M::make(seq)).expect("send");
        }
        report("done");
    }
    by_kind!(run)
}

/// Receives until disconnected, setting each message's bit in the shared bitmap
/// (each bit once) and checking that each producer's messages (`per` apiece) come in
/// order.
fn recv_into_bitmap() {
    fn run<M: Msg>() {
        let ch = open::<M>();
        let bits = ShmRegion::<AtomicU64>::open(builder(&arg("bitmap"))).expect("bitmap");
        let total: u64 = arg("total").parse().unwrap();
        let per: u64 = arg("per").parse().unwrap();
        let mut rx = ch.receiver().expect("claim receiver");
        let area = bits.area();
        let mut last = vec![None::<u64>; total.div_ceil(per) as usize];
        report("receiving");
        let mut got = 0u64;
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(m) => {
                    let seq = m.seq();
                    assert!(seq < total, "{seq} out of range");
                    let p = (seq / per) as usize;
                    assert!(last[p].is_none_or(|l| l < seq), "{seq} out of order");
                    last[p] = Some(seq);
                    // SAFETY: seq < total, and the bitmap holds total bits; its words
                    // are only accessed atomically.
                    let word = unsafe { area.atomic_u64((seq / 64) as usize * 8) };
                    let bit = 1u64 << (seq % 64);
                    assert_eq!(word.fetch_or(bit, Ordering::AcqRel) & bit, 0, "{seq} twice");
                    got += 1;
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
        report(format!("got={got}"));
    }
    by_kind!(run)
}

/// Sends `0 .. count` (they fit), reports `sent`, and waits to be killed.
fn send_then_hang() {
    fn run<M: Msg>() {
        let ch = open::<M>();
        let count: u64 = arg("count").parse().unwrap();
        let mut tx = ch.sender().expect("claim sender");
        for seq in 0..count {
            tx.try_send(M::make(seq)).expect("room for all");
        }
        report("sent");
        thread::sleep(Duration::from_secs(60));
        drop(tx);
    }
    by_kind!(run)
}

/// Claims the receiver, reports `ready`, and waits to be killed (never receiving).
fn receive_then_hang() {
    fn run<M: Msg>() {
        let ch = open::<M>();
        let rx = ch.receiver().expect("claim receiver");
        report("ready");
        thread::sleep(Duration::from_secs(60));
        drop(rx);
    }
    by_kind!(run)
}

/// Receives `0 .. count` in order, then exits (dropping the receiver).
fn receive_then_exit() {
    fn run<M: Msg>() {
        let ch = open::<M>();
        let count: u64 = arg("count").parse().unwrap();
        let mut rx = ch.receiver().expect("claim receiver");
        report("ready");
        for seq in 0..count {
            let m = rx.recv_timeout(Duration::from_secs(20)).expect("recv");
            assert_eq!(m.seq(), seq);
        }
    }
    by_kind!(run)
}

/// Sends `0 .. count` with `send_acked`. After each returns, the parent must already
/// have begun the `recv` that took it (the parent counts its `recv` calls in the shared
/// `started` word *before* each call), and the channel must be empty. Reports the
/// total time.
fn acked_send() {
    fn run<M: Msg>() {
        let ch = open::<M>();
        let started = ShmRegion::<AtomicU64>::open(builder(&arg("started"))).expect("counter");
        let count: u64 = arg("count").parse().unwrap();
        let mut tx = ch.sender().expect("claim sender");
        let t0 = Instant::now();
        for k in 0..count {
            tx.send_acked(M::make(k)).expect("acknowledged");
            let began = started.shared().load(Ordering::SeqCst);
            assert!(
                began > k,
                "send_acked({k}) returned before the receiver asked for it ({began} recv calls begun)"
            );
            assert!(
                ch.is_empty(),
                "send_acked({k}) returned with the message in the channel"
            );
        }
        report(format!("total_us={}", t0.elapsed().as_micros()));
    }
    by_kind!(run)
}

/// Claims a receiver, then takes one message and dies (SIGKILL at the crash point
/// `mpmc.pop:2`) after taking it but before finishing its pop.
fn receive_and_die_mid_pop() {
    fn run<M: Msg>() {
        // SAFETY: set before any other thread of this child reads the environment
        // (the crash plan is read once, at the first crash point reached).
        unsafe { std::env::set_var("SHMLINK_CRASH_AT", "mpmc.pop:2") };
        let ch = open::<M>();
        let mut rx = ch.receiver().expect("claim receiver");
        report("ready");
        let got = rx.recv_timeout(Duration::from_secs(20));
        report(format!("survived={}", got.is_ok()));
    }
    by_kind!(run)
}

// ---- parents ----

fn stream_arrives_in_order_exactly_once<M: Msg>(flavor: Flavor, mode: WaitMode) {
    let case = label::<M>(flavor, mode);
    let (name, ch) = create::<M>(flavor, mode, 1024);
    let mut rx = ch.receiver().unwrap();
    let sender = child::<M>("send_stream", &name)
        .arg("first", 0)
        .arg("count", STREAM)
        .spawn();
    for seq in 0..STREAM {
        let m = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{case}: stalled at {seq}: {e}"));
        assert_eq!(m.seq(), seq, "{case}: lost, duplicated or reordered");
    }
    sender.success(CHILD_TIMEOUT);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)),
        Err(RecvTimeoutError::Disconnected),
        "{case}"
    );
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn mpmc_two_producer_and_two_consumer_processes_deliver_each_message_once() {
    let per = STREAM / 2;
    let total = 2 * per;
    let (name, ch) = create::<Tick>(Flavor::Mpmc, WaitMode::Blocking, 1024);
    let bitmap = unique_name("chx-bits");
    let bits = ShmRegion::<AtomicU64>::create(
        builder(&bitmap).unlink_on_drop(true),
        (total.div_ceil(64) * 8) as usize,
    )
    .unwrap();
    // Our own sender keeps the channel connected until both producers are done: one
    // producer might otherwise finish before the other has even started.
    let keep = ch.sender().unwrap();
    let mut consumers: Vec<_> = (0..2)
        .map(|_| {
            child::<Tick>("recv_into_bitmap", &name)
                .arg("bitmap", &bitmap)
                .arg("total", total)
                .arg("per", per)
                .spawn()
        })
        .collect();
    for c in &mut consumers {
        c.wait_for("receiving", CHILD_TIMEOUT);
    }
    let producers: Vec<_> = (0..2)
        .map(|p| {
            child::<Tick>("send_stream", &name)
                .arg("first", p * per)
                .arg("count", per)
                .spawn()
        })
        .collect();
    for p in producers {
        p.success(CHILD_TIMEOUT);
    }
    drop(keep);
    let got: Vec<u64> = consumers
        .into_iter()
        .map(|c| c.success(CHILD_TIMEOUT).values()["got"].parse().unwrap())
        .collect();
    assert_eq!(
        got.iter().sum::<u64>(),
        total,
        "consumers together: {got:?}"
    );
    let area = bits.area();
    let mut delivered = 0u64;
    for w in 0..total.div_ceil(64) as usize {
        // SAFETY: w * 8 + 8 <= area length; the words are only accessed atomically.
        let word = unsafe { area.atomic_u64(w * 8) };
        delivered += u64::from(word.load(Ordering::Acquire).count_ones());
    }
    assert_eq!(delivered, total, "every message exactly once");
    assert!(ch.is_empty());
}

fn send_acked_returns_after_each_recv<M: Msg>(flavor: Flavor, mode: WaitMode) {
    /// Messages, and the parent's pause before each `recv`.
    const K: u64 = 40;
    const PAUSE: Duration = Duration::from_millis(2);
    let case = label::<M>(flavor, mode);
    let (name, ch) = create::<M>(flavor, mode, 1024);
    let started_name = unique_name("chx-started");
    let started =
        ShmRegion::<AtomicU64>::create(builder(&started_name).unlink_on_drop(true), 0).unwrap();
    let mut rx = ch.receiver().unwrap();
    let sender = child::<M>("acked_send", &name)
        .arg("started", &started_name)
        .arg("count", K)
        .spawn();
    for k in 0..K {
        thread::sleep(PAUSE);
        started.shared().store(k + 1, Ordering::SeqCst);
        let m = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{case}: message {k}: {e}"));
        assert_eq!(m.seq(), k, "{case}");
    }
    let done = sender.success(CHILD_TIMEOUT);
    // Had send_acked not waited, the child would have sent all K (the channel holds
    // 1024) in far less than our K - 1 pauses.
    let total = Duration::from_micros(done.values()["total_us"].parse().unwrap());
    assert!(total >= PAUSE * (K as u32 - 1), "{case}: {total:?}");
}

fn sender_exit_is_drained_then_disconnected<M: Msg>(flavor: Flavor, mode: WaitMode) {
    let case = label::<M>(flavor, mode);
    let (name, ch) = create::<M>(flavor, mode, 64);
    let mut rx = ch.receiver().unwrap();
    child::<M>("send_stream", &name)
        .arg("first", 0)
        .arg("count", 50)
        .spawn()
        .success(CHILD_TIMEOUT);
    for seq in 0..50 {
        let m = rx.recv_timeout(Duration::from_secs(5));
        assert_eq!(m.map(|m| m.seq()), Ok(seq), "{case}: drained first");
    }
    let t0 = Instant::now();
    assert_eq!(rx.recv(), Err(RecvError::Disconnected), "{case}");
    assert!(t0.elapsed() < DETECT_WITHIN, "{case}: {:?}", t0.elapsed());
}

fn sender_killed_is_drained_then_disconnected<M: Msg>(flavor: Flavor, mode: WaitMode) {
    let case = label::<M>(flavor, mode);
    let (name, ch) = create::<M>(flavor, mode, 64);
    let mut rx = ch.receiver().unwrap();
    let mut sender = child::<M>("send_then_hang", &name).arg("count", 50).spawn();
    sender.wait_for("sent", CHILD_TIMEOUT);
    sender.kill();
    for seq in 0..50 {
        let m = rx.recv_timeout(Duration::from_secs(5));
        assert_eq!(m.map(|m| m.seq()), Ok(seq), "{case}: drained first");
    }
    let t0 = Instant::now();
    assert_eq!(rx.recv(), Err(RecvError::Disconnected), "{case}");
    let took = t0.elapsed();
    println!("{case}: recv after a kill reported Disconnected after {took:?}");
    assert!(took < DETECT_WITHIN, "{case}: {took:?}");
}

fn sender_killed_ends_a_blocked_recv<M: Msg>(flavor: Flavor, mode: WaitMode) {
    let case = label::<M>(flavor, mode);
    let (name, ch) = create::<M>(flavor, mode, 64);
    let mut rx = ch.receiver().unwrap();
    let mut sender = child::<M>("send_then_hang", &name).arg("count", 20).spawn();
    sender.wait_for("sent", CHILD_TIMEOUT);
    for seq in 0..20 {
        let m = rx.recv_timeout(Duration::from_secs(5));
        assert_eq!(m.map(|m| m.seq()), Ok(seq), "{case}");
    }
    let killer = kill_after(sender, Duration::from_millis(55));
    let r = rx.recv();
    let returned = Instant::now();
    let killed = killer.join().unwrap();
    assert_eq!(r, Err(RecvError::Disconnected), "{case}");
    detected(&case, "recv", killed, returned);
}

fn receiver_exit_fails_sends_at_once<M: Msg>(flavor: Flavor, mode: WaitMode) {
    let case = label::<M>(flavor, mode);
    let (name, ch) = create::<M>(flavor, mode, 64);
    let mut tx = ch.sender().unwrap();
    let mut receiver = child::<M>("receive_then_exit", &name)
        .arg("count", 3)
        .spawn();
    receiver.wait_for("ready", CHILD_TIMEOUT);
    for seq in 0..3 {
        tx.send(M::make(seq)).unwrap();
    }
    receiver.success(CHILD_TIMEOUT);
    // Room in the channel, but nobody left to receive.
    let t0 = Instant::now();
    assert_eq!(
        tx.send(M::make(3)),
        Err(SendError::Disconnected(M::make(3))),
        "{case}"
    );
    assert_eq!(
        tx.try_send(M::make(4)),
        Err(TrySendError::Disconnected(M::make(4))),
        "{case}"
    );
    assert_eq!(
        tx.send_acked(M::make(5)),
        Err(AckError::NotSent(SendTimeoutError::Disconnected(M::make(
            5
        )))),
        "{case}"
    );
    assert!(t0.elapsed() < DETECT_WITHIN, "{case}: {:?}", t0.elapsed());
}

/// Fills the channel with `try_send`; returns the first message that did not fit.
fn fill<M: Msg>(tx: &mut shmlink::channel::Sender<M, M::C>, case: &str) -> u64 {
    let mut n = 0;
    loop {
        match tx.try_send(M::make(n)) {
            Ok(()) => n += 1,
            Err(TrySendError::Full(m)) => {
                assert_eq!(m, M::make(n), "{case}: handed back");
                return n;
            }
            Err(e) => panic!("{case}: {e}"),
        }
    }
}

fn receiver_killed_ends_a_blocked_send<M: Msg>(flavor: Flavor, mode: WaitMode) {
    let case = label::<M>(flavor, mode);
    let (name, ch) = create::<M>(flavor, mode, 16);
    let mut tx = ch.sender().unwrap();
    let mut receiver = child::<M>("receive_then_hang", &name).spawn();
    receiver.wait_for("ready", CHILD_TIMEOUT);
    let n = fill(&mut tx, &case);
    let killer = kill_after(receiver, Duration::from_millis(55));
    let r = tx.send(M::make(n));
    let returned = Instant::now();
    let killed = killer.join().unwrap();
    assert_eq!(r, Err(SendError::Disconnected(M::make(n))), "{case}");
    detected(&case, "send", killed, returned);
}

fn receiver_killed_ends_a_blocked_send_acked<M: Msg>(flavor: Flavor, mode: WaitMode) {
    let case = label::<M>(flavor, mode);
    let (name, ch) = create::<M>(flavor, mode, 16);
    let mut tx = ch.sender().unwrap();
    let mut receiver = child::<M>("receive_then_hang", &name).spawn();
    receiver.wait_for("ready", CHILD_TIMEOUT);
    let killer = kill_after(receiver, Duration::from_millis(55));
    let r = tx.send_acked(M::make(0));
    let returned = Instant::now();
    let killed = killer.join().unwrap();
    assert_eq!(
        r,
        Err(AckError::Unacknowledged { disconnected: true }),
        "{case}"
    );
    detected(&case, "send_acked", killed, returned);
}

/// The issue: "when every receiver has dropped or died, send reports disconnected
/// with the message". Here the receiver process died 100 ms before a `send` that
/// finds room. (Today only *blocked* calls check whether the peer process lives, so
/// this send enqueues into a channel nobody will read: see the `ignore` reasons.)
fn send_after_the_receiver_died_reports_disconnected<M: Msg>(flavor: Flavor, mode: WaitMode) {
    let case = label::<M>(flavor, mode);
    let (name, ch) = create::<M>(flavor, mode, 16);
    let mut tx = ch.sender().unwrap();
    let mut receiver = child::<M>("receive_then_hang", &name).spawn();
    receiver.wait_for("ready", CHILD_TIMEOUT);
    receiver.kill();
    thread::sleep(DETECT_WITHIN);
    assert_eq!(
        tx.send(M::make(0)),
        Err(SendError::Disconnected(M::make(0))),
        "{case}: sent into a channel whose receiver died {DETECT_WITHIN:?} ago"
    );
}

/// Written out rather than through `cases!`, to mark them.
mod send_after_the_receiver_died_reports_disconnected {
    use super::*;
    #[test]
    #[cfg_attr(miri, ignore = "spawns a process")]
    fn spsc_raw() {
        super::send_after_the_receiver_died_reports_disconnected::<Tick>(
            Flavor::Spsc,
            WaitMode::Blocking,
        );
    }
    #[test]
    #[cfg_attr(miri, ignore = "spawns a process")]
    fn mpmc_raw() {
        super::send_after_the_receiver_died_reports_disconnected::<Tick>(
            Flavor::Mpmc,
            WaitMode::Blocking,
        );
    }
    #[test]
    #[cfg_attr(miri, ignore = "spawns a process")]
    fn spsc_postcard() {
        super::send_after_the_receiver_died_reports_disconnected::<Note>(
            Flavor::Spsc,
            WaitMode::Blocking,
        );
    }
    #[test]
    #[cfg_attr(miri, ignore = "spawns a process")]
    fn mpmc_postcard() {
        super::send_after_the_receiver_died_reports_disconnected::<Note>(
            Flavor::Mpmc,
            WaitMode::Blocking,
        );
    }
}

/// Defect 5 of issue 11: an MPMC `send_acked` whose message is taken by a receiver
/// that dies before acknowledging it, while another receiver lives, used to wait
/// forever. It now ends with `AckError::Lost` within 100 ms of the death.
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn mpmc_send_acked_reports_a_message_lost_with_its_receiver() {
    for mode in [WaitMode::Blocking, WaitMode::Spin] {
        let (name, ch) = create::<Tick>(Flavor::Mpmc, mode, 16);
        // A live receiver that never receives: the channel stays connected.
        let _live = ch.receiver().unwrap();
        let mut tx = ch.sender().unwrap();
        let mut dying = child::<Tick>("receive_and_die_mid_pop", &name).spawn();
        dying.wait_for("ready", CHILD_TIMEOUT);
        let started = Instant::now();
        let err = tx
            .send_acked_timeout(Tick::make(7), Duration::from_secs(10))
            .unwrap_err();
        let returned = Instant::now();
        let status = dying.kill();
        assert!(!status.success(), "{mode:?}: the child was to die mid-pop");
        assert_eq!(err, AckError::Lost, "{mode:?}");
        let took = returned - started;
        println!("{mode:?}: send_acked reported the loss after {took:?}");
        assert!(
            took < DETECT_WITHIN,
            "{mode:?}: the loss was reported after {took:?}"
        );
    }
}

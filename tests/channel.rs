//! Channels within one process (threads), on the heap and in named segments: every
//! flavour with every message kind it supports (`Raw` for `u64` and a `#[repr(C)]`
//! struct, `Postcard` for a serde struct), in both wait modes.
//!
//! What is checked: FIFO order, `try_send` handing a message back when full, `send`
//! waiting for room, timeouts, the blocking and non-blocking iterators,
//! `len`/`is_empty`/`capacity`, disconnects in both directions (a dropped sender is
//! drained first; a dropped receiver fails sends at once, message handed back),
//! synchronous send (`send_acked` returns only once the receiver took the message),
//! serde specifics (a too-large message handed back unchanged, MPMC refused, garbage
//! bytes reported as `Decode`), role claims, type checks on open, and MPMC delivering
//! each item exactly once across many threads.
//!
//! Most properties are generic functions run by `cases!` for each supported
//! flavour × message kind; each loops over heap and named channels (and wait modes
//! where waiting is involved), naming the case in every assertion.

mod support;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmlink::channel::{
    self, AckError, Channel, ChannelError, Flavor, Options, Postcard, RecvError, RecvTimeoutError,
    SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use shmlink::ring::FrameRing;
use shmlink::segment::{self, OpenError, Segment};
use shmlink::sync::WaitMode;
use shmlink::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use support::messages::{Msg, Note, Tick};
use support::unique_name;

// ---- message kinds (see tests/support/messages.rs) ----

#[test]
fn note_encodes_to_about_100_bytes() {
    let len = postcard::to_allocvec(&Note::make(123_456)).unwrap().len();
    assert!((80..=120).contains(&len), "{len} bytes");
}

// ---- cases ----

/// Where a channel lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backing {
    Heap,
    Named,
}

const BACKINGS: [Backing; 2] = [Backing::Heap, Backing::Named];
const MODES: [WaitMode; 2] = [WaitMode::Blocking, WaitMode::Spin];

/// Options for a case: `capacity` messages; serde messages up to 256 bytes.
fn options(flavor: Flavor, mode: WaitMode, capacity: usize) -> Options {
    Options::new()
        .flavor(flavor)
        .wait_mode(mode)
        .capacity(capacity)
        .max_message(256)
}

/// A channel on the heap, or in a fresh named segment removed when the last clone
/// drops.
fn make_channel<M: Msg>(backing: Backing, opts: Options) -> Channel<M, M::C> {
    match backing {
        Backing::Heap => Channel::new(opts).expect("heap channel"),
        Backing::Named => {
            let name = unique_name("ch");
            Channel::create(Segment::builder(&name).unlink_on_drop(true), opts)
                .expect("named channel")
        }
    }
}

fn label<M: Msg>(flavor: Flavor, backing: Backing, mode: WaitMode) -> String {
    format!("{} {flavor:?} {backing:?} {mode:?}", M::NAME)
}

/// Runs the generic property `$prop::<M>(flavor)` as one test per supported flavour ×
/// message kind, in a module named after the property.
macro_rules! cases {
    ($($prop:ident),* $(,)?) => {$(
        mod $prop {
            use super::*;
            #[test]
            #[cfg_attr(miri, ignore = "maps a shared file")]
            fn spsc_u64() {
                super::$prop::<u64>(Flavor::Spsc);
            }
            #[test]
            #[cfg_attr(miri, ignore = "maps a shared file")]
            fn spsc_tick() {
                super::$prop::<Tick>(Flavor::Spsc);
            }
            #[test]
            #[cfg_attr(miri, ignore = "maps a shared file")]
            fn spsc_postcard() {
                super::$prop::<Note>(Flavor::Spsc);
            }
            #[test]
            #[cfg_attr(miri, ignore = "maps a shared file")]
            fn mpmc_u64() {
                super::$prop::<u64>(Flavor::Mpmc);
            }
            #[test]
            #[cfg_attr(miri, ignore = "maps a shared file")]
            fn mpmc_tick() {
                super::$prop::<Tick>(Flavor::Mpmc);
            }
            #[test]
            #[cfg_attr(miri, ignore = "maps a shared file")]
            fn mpmc_postcard() {
                super::$prop::<Note>(Flavor::Mpmc);
            }
        }
    )*};
}

cases!(
    fifo_across_threads,
    try_send_when_full_hands_the_message_back,
    send_waits_for_room,
    send_timeout_times_out_with_the_message,
    recv_timeout_times_out_then_delivers,
    iter_drains_then_ends_at_disconnect,
    try_iter_takes_what_is_waiting,
    len_is_empty_capacity,
    dropped_sender_is_drained_then_disconnected,
    blocked_recv_returns_when_the_sender_drops,
    dropped_receiver_fails_every_send_with_the_message,
    blocked_send_returns_when_the_receiver_drops,
    send_acked_returns_only_after_the_receiver_took_it,
    send_acked_covers_the_messages_before_it,
    send_acked_timeout_without_a_taker_is_unacknowledged,
    send_acked_is_unacknowledged_disconnected_when_the_receiver_drops,
    send_acked_many_times_through_a_small_channel,
);

/// Items streamed through 8 slots by a sender thread (blocking waits).
const STREAM: u64 = if cfg!(debug_assertions) {
    2_000
} else {
    20_000
};

/// Items streamed in spin mode: two spinning threads per test, with other tests
/// running beside them on a small machine, hand over slowly.
const SPIN_STREAM: u64 = 1_000;

fn fifo_across_threads<M: Msg>(flavor: Flavor) {
    for backing in BACKINGS {
        for mode in MODES {
            let case = label::<M>(flavor, backing, mode);
            let ch = make_channel::<M>(backing, options(flavor, mode, 8));
            assert_eq!(ch.flavor(), flavor, "{case}");
            let (mut tx, mut rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
            let count = if mode == WaitMode::Spin {
                SPIN_STREAM
            } else {
                STREAM
            };
            let sender = thread::spawn(move || {
                for i in 0..count {
                    tx.send(M::make(i)).expect("receiver alive");
                }
            });
            for i in 0..count {
                let v = rx
                    .recv_timeout(Duration::from_secs(20))
                    .unwrap_or_else(|e| panic!("{case}: stalled at {i}: {e}"));
                assert_eq!(v.seq(), i, "{case}: lost, duplicated or reordered");
            }
            sender.join().unwrap();
            assert_eq!(rx.recv(), Err(RecvError::Disconnected), "{case}");
        }
    }
}

/// Fills the channel with `try_send`; returns how many fit and the refused message.
fn fill<M: Msg>(tx: &mut channel::Sender<M, M::C>, case: &str) -> (u64, TrySendError<M>) {
    let mut n = 0;
    loop {
        match tx.try_send(M::make(n)) {
            Ok(()) => n += 1,
            Err(e) => return (n, e),
        }
        assert!(n <= 10_000, "{case}: never full");
    }
}

fn try_send_when_full_hands_the_message_back<M: Msg>(flavor: Flavor) {
    for backing in BACKINGS {
        let case = label::<M>(flavor, backing, WaitMode::Blocking);
        let ch = make_channel::<M>(backing, options(flavor, WaitMode::Blocking, 8));
        let (mut tx, mut rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
        let (n, err) = fill(&mut tx, &case);
        if M::SERDE {
            assert!(n >= ch.capacity() as u64, "{case}: {n} < {}", ch.capacity());
        } else {
            assert_eq!(n, 8, "{case}: exactly the capacity fits");
        }
        assert_eq!(err, TrySendError::Full(M::make(n)), "{case}");
        assert!(!err.is_disconnected(), "{case}");
        assert_eq!(err.into_inner(), M::make(n), "{case}: handed back intact");
        // Room for one more after one receive.
        assert_eq!(rx.try_recv().map(|v| v.seq()), Ok(0), "{case}");
        tx.try_send(M::make(n)).unwrap();
        for i in 1..=n {
            assert_eq!(rx.try_recv().map(|v| v.seq()), Ok(i), "{case}");
        }
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty), "{case}");
    }
}

fn send_waits_for_room<M: Msg>(flavor: Flavor) {
    for backing in BACKINGS {
        for mode in MODES {
            let case = label::<M>(flavor, backing, mode);
            let ch = make_channel::<M>(backing, options(flavor, mode, 8));
            let (mut tx, mut rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
            let (n, _) = fill(&mut tx, &case);
            let done = Arc::new(AtomicBool::new(false));
            let sender = thread::spawn({
                let done = done.clone();
                move || {
                    let r = tx.send(M::make(n));
                    done.store(true, Ordering::Release);
                    (tx, r)
                }
            });
            thread::sleep(Duration::from_millis(30));
            assert!(
                !done.load(Ordering::Acquire),
                "{case}: send returned while full"
            );
            assert_eq!(rx.recv().map(|v| v.seq()), Ok(0), "{case}");
            let (_tx, r) = sender.join().unwrap();
            assert_eq!(r, Ok(()), "{case}");
            for i in 1..=n {
                assert_eq!(rx.try_recv().map(|v| v.seq()), Ok(i), "{case}");
            }
        }
    }
}

fn send_timeout_times_out_with_the_message<M: Msg>(flavor: Flavor) {
    for backing in BACKINGS {
        for mode in MODES {
            let case = label::<M>(flavor, backing, mode);
            let ch = make_channel::<M>(backing, options(flavor, mode, 8));
            let (mut tx, mut rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
            let (n, _) = fill(&mut tx, &case);
            let t0 = Instant::now();
            let r = tx.send_timeout(M::make(n), Duration::from_millis(30));
            let took = t0.elapsed();
            assert_eq!(r, Err(SendTimeoutError::Timeout(M::make(n))), "{case}");
            assert!(took >= Duration::from_millis(30), "{case}: {took:?}");
            assert!(took < Duration::from_secs(2), "{case}: {took:?}");
            // With room, it returns at once.
            rx.recv().unwrap();
            tx.send_timeout(M::make(n), Duration::from_millis(30))
                .unwrap_or_else(|e| panic!("{case}: {e}"));
        }
    }
}

fn recv_timeout_times_out_then_delivers<M: Msg>(flavor: Flavor) {
    for backing in BACKINGS {
        for mode in MODES {
            let case = label::<M>(flavor, backing, mode);
            let ch = make_channel::<M>(backing, options(flavor, mode, 8));
            let (mut tx, mut rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty), "{case}");
            let t0 = Instant::now();
            assert_eq!(
                rx.recv_timeout(Duration::from_millis(30)),
                Err(RecvTimeoutError::Timeout),
                "{case}"
            );
            let took = t0.elapsed();
            assert!(took >= Duration::from_millis(30), "{case}: {took:?}");
            assert!(took < Duration::from_secs(2), "{case}: {took:?}");
            // A message sent while we wait ends the wait.
            let sender = thread::spawn(move || {
                thread::sleep(Duration::from_millis(20));
                tx.send(M::make(7)).unwrap();
                tx
            });
            let t0 = Instant::now();
            let v = rx.recv_timeout(Duration::from_secs(10));
            let took = t0.elapsed();
            assert_eq!(v, Ok(M::make(7)), "{case}");
            assert!(took < Duration::from_secs(5), "{case}: {took:?}");
            drop(sender.join().unwrap());
        }
    }
}

fn iter_drains_then_ends_at_disconnect<M: Msg>(flavor: Flavor) {
    for backing in BACKINGS {
        for mode in MODES {
            let case = label::<M>(flavor, backing, mode);
            let ch = make_channel::<M>(backing, options(flavor, mode, 8));
            let (mut tx, mut rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
            let sender = thread::spawn(move || {
                for i in 0..100 {
                    tx.send(M::make(i)).unwrap();
                }
                // Dropped here: the iterator ends after the last message.
            });
            let got: Vec<u64> = rx.iter().map(|v| v.seq()).collect();
            assert_eq!(got, (0..100).collect::<Vec<_>>(), "{case}");
            sender.join().unwrap();
            assert_eq!(rx.recv(), Err(RecvError::Disconnected), "{case}");
            assert_eq!(rx.iter().count(), 0, "{case}");
        }
    }
}

fn try_iter_takes_what_is_waiting<M: Msg>(flavor: Flavor) {
    for backing in BACKINGS {
        let case = label::<M>(flavor, backing, WaitMode::Blocking);
        let ch = make_channel::<M>(backing, options(flavor, WaitMode::Blocking, 8));
        let (mut tx, mut rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
        assert_eq!(rx.try_iter().count(), 0, "{case}");
        for i in 0..5 {
            tx.send(M::make(i)).unwrap();
        }
        let got: Vec<u64> = rx.try_iter().map(|v| v.seq()).collect();
        assert_eq!(got, [0, 1, 2, 3, 4], "{case}");
        // The sender is alive: just nothing waiting.
        assert_eq!(rx.try_iter().count(), 0, "{case}");
        tx.send(M::make(5)).unwrap();
        drop(tx);
        let got: Vec<u64> = rx.try_iter().map(|v| v.seq()).collect();
        assert_eq!(got, [5], "{case}");
        assert_eq!(rx.try_iter().count(), 0, "{case}");
    }
}

fn len_is_empty_capacity<M: Msg>(flavor: Flavor) {
    for backing in BACKINGS {
        let case = label::<M>(flavor, backing, WaitMode::Blocking);
        let ch = make_channel::<M>(backing, options(flavor, WaitMode::Blocking, 8));
        let (mut tx, mut rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
        if M::SERDE {
            assert!(ch.capacity() >= 8, "{case}: {}", ch.capacity());
        } else {
            assert_eq!(ch.capacity(), 8, "{case}");
        }
        assert_eq!(rx.capacity(), ch.capacity(), "{case}");
        assert!(ch.is_empty() && rx.is_empty(), "{case}");
        assert_eq!((ch.len(), rx.len()), (0, 0), "{case}");
        // Serde messages on SPSC travel as frames, and the channel only knows whether
        // any is in flight; on MPMC they are cells, counted exactly.
        let approximate = M::SERDE && flavor == Flavor::Spsc;
        for i in 0..5 {
            tx.send(M::make(i)).unwrap();
            let expected = if approximate { 1 } else { i as usize + 1 };
            assert_eq!((ch.len(), rx.len()), (expected, expected), "{case}");
            assert!(!ch.is_empty() && !rx.is_empty(), "{case}");
        }
        for i in 0..5 {
            rx.recv().unwrap();
            let left = 4 - i;
            let expected = if approximate {
                usize::from(left > 0)
            } else {
                left
            };
            assert_eq!((ch.len(), rx.len()), (expected, expected), "{case}");
        }
        assert!(ch.is_empty() && rx.is_empty(), "{case}");
        let clone = ch.clone();
        assert_eq!(clone.capacity(), ch.capacity(), "{case}");
        assert!(format!("{ch:?}").contains("capacity"), "{case}");
    }
}

fn dropped_sender_is_drained_then_disconnected<M: Msg>(flavor: Flavor) {
    for backing in BACKINGS {
        let case = label::<M>(flavor, backing, WaitMode::Blocking);
        let ch = make_channel::<M>(backing, options(flavor, WaitMode::Blocking, 8));
        let (mut tx, mut rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
        for i in 0..3 {
            tx.send(M::make(i)).unwrap();
        }
        drop(tx);
        for i in 0..3 {
            assert_eq!(rx.recv().map(|v| v.seq()), Ok(i), "{case}: drained first");
        }
        let t0 = Instant::now();
        assert_eq!(rx.recv(), Err(RecvError::Disconnected), "{case}");
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Err(RecvTimeoutError::Disconnected),
            "{case}"
        );
        assert!(t0.elapsed() < Duration::from_secs(1), "{case}: at once");
    }
}

fn try_recv_reports_disconnected_after_draining<M: Msg>(flavor: Flavor) {
    for backing in BACKINGS {
        let case = label::<M>(flavor, backing, WaitMode::Blocking);
        let ch = make_channel::<M>(backing, options(flavor, WaitMode::Blocking, 8));
        let (mut tx, mut rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
        tx.send(M::make(0)).unwrap();
        drop(tx);
        assert_eq!(rx.try_recv().map(|v| v.seq()), Ok(0), "{case}");
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected), "{case}");
    }
}

/// Written out rather than through `cases!`, to mark the MPMC cases.
mod try_recv_reports_disconnected_after_draining {
    use super::*;
    #[test]
    #[cfg_attr(miri, ignore = "maps a shared file")]
    fn spsc_u64() {
        super::try_recv_reports_disconnected_after_draining::<u64>(Flavor::Spsc);
    }
    #[test]
    #[cfg_attr(miri, ignore = "maps a shared file")]
    fn spsc_tick() {
        super::try_recv_reports_disconnected_after_draining::<Tick>(Flavor::Spsc);
    }
    #[test]
    #[cfg_attr(miri, ignore = "maps a shared file")]
    fn spsc_postcard() {
        super::try_recv_reports_disconnected_after_draining::<Note>(Flavor::Spsc);
    }
    #[test]
    #[cfg_attr(miri, ignore = "maps a shared file")]
    fn mpmc_u64() {
        super::try_recv_reports_disconnected_after_draining::<u64>(Flavor::Mpmc);
    }
    #[test]
    #[cfg_attr(miri, ignore = "maps a shared file")]
    fn mpmc_tick() {
        super::try_recv_reports_disconnected_after_draining::<Tick>(Flavor::Mpmc);
    }
}

fn blocked_recv_returns_when_the_sender_drops<M: Msg>(flavor: Flavor) {
    for backing in BACKINGS {
        for mode in MODES {
            let case = label::<M>(flavor, backing, mode);
            let ch = make_channel::<M>(backing, options(flavor, mode, 8));
            let (tx, mut rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
            let receiver = thread::spawn(move || {
                let r = rx.recv();
                (r, Instant::now())
            });
            thread::sleep(Duration::from_millis(20));
            let dropped = Instant::now();
            drop(tx);
            let (r, returned) = receiver.join().unwrap();
            assert_eq!(r, Err(RecvError::Disconnected), "{case}");
            let after = returned.saturating_duration_since(dropped);
            assert!(after < Duration::from_millis(100), "{case}: {after:?}");
        }
    }
}

fn dropped_receiver_fails_every_send_with_the_message<M: Msg>(flavor: Flavor) {
    for backing in BACKINGS {
        let case = label::<M>(flavor, backing, WaitMode::Blocking);
        let ch = make_channel::<M>(backing, options(flavor, WaitMode::Blocking, 8));
        let (mut tx, rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
        tx.send(M::make(0)).unwrap();
        drop(rx);
        // The channel has room, but nobody will ever receive: fail at once.
        let t0 = Instant::now();
        let m = || M::make(1);
        let err = tx.try_send(m()).unwrap_err();
        assert!(err.is_disconnected(), "{case}: {err:?}");
        assert_eq!(err.into_inner(), m(), "{case}");
        assert_eq!(tx.send(m()), Err(SendError::Disconnected(m())), "{case}");
        assert_eq!(
            tx.send_timeout(m(), Duration::from_secs(10)),
            Err(SendTimeoutError::Disconnected(m())),
            "{case}"
        );
        assert_eq!(
            tx.send_acked(m()),
            Err(AckError::NotSent(SendTimeoutError::Disconnected(m()))),
            "{case}"
        );
        assert_eq!(
            tx.send_acked_timeout(m(), Duration::from_secs(10)),
            Err(AckError::NotSent(SendTimeoutError::Disconnected(m()))),
            "{case}"
        );
        assert!(t0.elapsed() < Duration::from_secs(1), "{case}: at once");
    }
}

fn blocked_send_returns_when_the_receiver_drops<M: Msg>(flavor: Flavor) {
    for backing in BACKINGS {
        for mode in MODES {
            let case = label::<M>(flavor, backing, mode);
            let ch = make_channel::<M>(backing, options(flavor, mode, 8));
            let (mut tx, rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
            let (n, _) = fill(&mut tx, &case);
            let sender = thread::spawn(move || {
                let r = tx.send(M::make(n));
                (r, Instant::now())
            });
            thread::sleep(Duration::from_millis(20));
            let dropped = Instant::now();
            drop(rx);
            let (r, returned) = sender.join().unwrap();
            assert_eq!(r, Err(SendError::Disconnected(M::make(n))), "{case}");
            let after = returned.saturating_duration_since(dropped);
            assert!(after < Duration::from_millis(100), "{case}: {after:?}");
        }
    }
}

/// The receiver's delay before each `recv` in the acknowledgement tests.
const RECV_DELAY: Duration = Duration::from_millis(20);

fn send_acked_returns_only_after_the_receiver_took_it<M: Msg>(flavor: Flavor) {
    const K: u64 = 4;
    for backing in BACKINGS {
        for mode in MODES {
            let case = label::<M>(flavor, backing, mode);
            let ch = make_channel::<M>(backing, options(flavor, mode, 8));
            let (mut tx, mut rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
            // `started`: how many recv calls the receiver has begun (stored before
            // each call). After send_acked(k) returns, the receiver must have begun
            // the recv that took message k.
            let started = Arc::new(AtomicU64::new(0));
            let go = Arc::new(Barrier::new(2));
            let receiver = thread::spawn({
                let (started, go) = (started.clone(), go.clone());
                move || {
                    let mut got = Vec::new();
                    for k in 0..K {
                        go.wait();
                        thread::sleep(RECV_DELAY);
                        started.store(k + 1, Ordering::SeqCst);
                        got.push(rx.recv().expect("message").seq());
                    }
                    (got, rx)
                }
            });
            for k in 0..K {
                // The clock starts before the receiver's delay can.
                let t0 = Instant::now();
                go.wait();
                tx.send_acked(M::make(k))
                    .unwrap_or_else(|e| panic!("{case}: {e}"));
                let took = t0.elapsed();
                assert!(took >= RECV_DELAY, "{case}: acked after {took:?}");
                assert!(
                    started.load(Ordering::SeqCst) > k,
                    "{case}: acked before the receiver asked for message {k}"
                );
                assert!(ch.is_empty(), "{case}: message {k} still in the channel");
            }
            let (got, _rx) = receiver.join().unwrap();
            assert_eq!(got, (0..K).collect::<Vec<_>>(), "{case}");
        }
    }
}

fn send_acked_covers_the_messages_before_it<M: Msg>(flavor: Flavor) {
    for backing in BACKINGS {
        let case = label::<M>(flavor, backing, WaitMode::Blocking);
        let ch = make_channel::<M>(backing, options(flavor, WaitMode::Blocking, 8));
        let (mut tx, mut rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
        for i in 0..3 {
            tx.send(M::make(i)).unwrap();
        }
        let receiver = thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..4 {
                thread::sleep(Duration::from_millis(5));
                got.push(rx.recv().unwrap().seq());
            }
            (got, rx)
        });
        let t0 = Instant::now();
        tx.send_acked(M::make(3)).unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(20), "{case}");
        assert!(ch.is_empty(), "{case}: the backlog was taken first");
        let (got, _rx) = receiver.join().unwrap();
        assert_eq!(got, [0, 1, 2, 3], "{case}");
    }
}

fn send_acked_timeout_without_a_taker_is_unacknowledged<M: Msg>(flavor: Flavor) {
    for backing in BACKINGS {
        for mode in MODES {
            let case = label::<M>(flavor, backing, mode);
            // A receiver that never receives, and (second round) none at all.
            for with_receiver in [true, false] {
                let ch = make_channel::<M>(backing, options(flavor, mode, 8));
                let mut tx = ch.sender().unwrap();
                let rx = with_receiver.then(|| ch.receiver().unwrap());
                let t0 = Instant::now();
                let r = tx.send_acked_timeout(M::make(1), Duration::from_millis(30));
                let took = t0.elapsed();
                assert_eq!(
                    r,
                    Err(AckError::Unacknowledged {
                        disconnected: false
                    }),
                    "{case} receiver={with_receiver}"
                );
                assert!(took >= Duration::from_millis(30), "{case}: {took:?}");
                assert!(took < Duration::from_secs(2), "{case}: {took:?}");
                // It was sent: still there for a (late) receiver.
                assert!(!ch.is_empty(), "{case}");
                let mut rx = rx.unwrap_or_else(|| ch.receiver().unwrap());
                assert_eq!(rx.try_recv(), Ok(M::make(1)), "{case}");
            }
            // A channel that stays full: not even enqueued, handed back.
            let ch = make_channel::<M>(backing, options(flavor, mode, 8));
            let (mut tx, _rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
            let (n, _) = fill(&mut tx, &case);
            assert_eq!(
                tx.send_acked_timeout(M::make(n), Duration::from_millis(20)),
                Err(AckError::NotSent(SendTimeoutError::Timeout(M::make(n)))),
                "{case}"
            );
        }
    }
}

fn send_acked_is_unacknowledged_disconnected_when_the_receiver_drops<M: Msg>(flavor: Flavor) {
    for backing in BACKINGS {
        for mode in MODES {
            for timeout in [Some(Duration::from_secs(10)), None] {
                let case = format!("{} timeout={timeout:?}", label::<M>(flavor, backing, mode));
                let ch = make_channel::<M>(backing, options(flavor, mode, 8));
                let (mut tx, rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
                let dropper = thread::spawn(move || {
                    thread::sleep(Duration::from_millis(30));
                    let at = Instant::now();
                    drop(rx);
                    at
                });
                let r = match timeout {
                    Some(t) => tx.send_acked_timeout(M::make(1), t),
                    None => tx.send_acked(M::make(1)),
                };
                let returned = Instant::now();
                let dropped = dropper.join().unwrap();
                assert_eq!(
                    r,
                    Err(AckError::Unacknowledged { disconnected: true }),
                    "{case}"
                );
                assert!(returned >= dropped, "{case}: returned before the drop");
                let after = returned - dropped;
                assert!(after < Duration::from_millis(100), "{case}: {after:?}");
            }
        }
    }
}

fn send_acked_many_times_through_a_small_channel<M: Msg>(flavor: Flavor) {
    const N: u64 = 300;
    for backing in BACKINGS {
        for mode in MODES {
            let case = label::<M>(flavor, backing, mode);
            // Two slots: the positions wrap around the ring many times.
            let ch = make_channel::<M>(backing, options(flavor, mode, 2));
            let (mut tx, mut rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
            let receiver = thread::spawn(move || rx.iter().map(|m| m.seq()).collect::<Vec<_>>());
            for k in 0..N {
                tx.send_acked(M::make(k))
                    .unwrap_or_else(|e| panic!("{case}: message {k}: {e}"));
                assert!(
                    ch.is_empty(),
                    "{case}: message {k} acknowledged but not taken"
                );
            }
            drop(tx);
            let got = receiver.join().unwrap();
            assert_eq!(got, (0..N).collect::<Vec<_>>(), "{case}");
        }
    }
}

// ---- many threads on one MPMC channel ----

/// `senders` threads send `per` messages each (sender `s` sends `s * per ..`);
/// `receivers` threads take them until disconnected. Every message arrives exactly
/// once, and each receiver sees each sender's messages in the order sent.
fn mpmc_threads<M: Msg>(backing: Backing, mode: WaitMode, senders: u64, receivers: u64, per: u64) {
    let case = label::<M>(Flavor::Mpmc, backing, mode);
    let ch = make_channel::<M>(backing, options(Flavor::Mpmc, mode, 64));
    let txs: Vec<_> = (0..senders).map(|_| ch.sender().unwrap()).collect();
    let rxs: Vec<_> = (0..receivers).map(|_| ch.receiver().unwrap()).collect();
    let receiving: Vec<_> = rxs
        .into_iter()
        .map(|mut rx| {
            let case = case.clone();
            thread::spawn(move || {
                let mut last = vec![None::<u64>; senders as usize];
                let mut got = Vec::new();
                loop {
                    match rx.recv_timeout(Duration::from_secs(20)) {
                        Ok(v) => {
                            let seq = v.seq();
                            let s = (seq / per) as usize;
                            assert!(last[s].is_none_or(|l| l < seq), "{case}: out of order");
                            last[s] = Some(seq);
                            got.push(seq);
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                        Err(e) => panic!("{case}: {e}"),
                    }
                }
                got
            })
        })
        .collect();
    let sending: Vec<_> = txs
        .into_iter()
        .enumerate()
        .map(|(s, mut tx)| {
            thread::spawn(move || {
                let first = s as u64 * per;
                for seq in first..first + per {
                    tx.send(M::make(seq)).expect("receivers alive");
                }
            })
        })
        .collect();
    for t in sending {
        t.join().unwrap();
    }
    let mut all: Vec<u64> = receiving
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all.len() as u64, senders * per, "{case}: count");
    assert!(
        all.iter().copied().eq(0..senders * per),
        "{case}: every message exactly once"
    );
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn mpmc_many_threads_deliver_every_message_exactly_once() {
    let per = if cfg!(debug_assertions) {
        2_000
    } else {
        20_000
    };
    for backing in BACKINGS {
        mpmc_threads::<u64>(backing, WaitMode::Blocking, 4, 4, per);
        mpmc_threads::<Tick>(backing, WaitMode::Blocking, 3, 3, per);
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn mpmc_many_threads_in_spin_mode() {
    // Spinning threads share the machine's cores: fewer of them, fewer messages.
    for backing in BACKINGS {
        mpmc_threads::<u64>(backing, WaitMode::Spin, 2, 2, 500);
        mpmc_threads::<Tick>(backing, WaitMode::Spin, 2, 2, 500);
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn mpmc_send_acked_from_several_threads() {
    const PER: u64 = 200;
    for backing in BACKINGS {
        let ch = make_channel::<u64>(backing, options(Flavor::Mpmc, WaitMode::Blocking, 4));
        let rxs: Vec<_> = (0..2).map(|_| ch.receiver().unwrap()).collect();
        let txs: Vec<_> = (0..3).map(|_| ch.sender().unwrap()).collect();
        let receiving: Vec<_> = rxs
            .into_iter()
            .map(|mut rx| thread::spawn(move || rx.iter().collect::<Vec<u64>>()))
            .collect();
        let sending: Vec<_> = txs
            .into_iter()
            .enumerate()
            .map(|(s, mut tx)| {
                thread::spawn(move || {
                    for k in s as u64 * PER..(s as u64 + 1) * PER {
                        tx.send_acked(k).expect("acknowledged");
                    }
                })
            })
            .collect();
        for t in sending {
            t.join().unwrap();
        }
        let mut all: Vec<u64> = receiving
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort_unstable();
        assert!(
            all.iter().copied().eq(0..3 * PER),
            "{backing:?}: each exactly once"
        );
    }
}

#[test]
#[cfg_attr(miri, ignore = "opens a named segment")]
fn capacities_are_checked() {
    let bad = |opts: Options| matches!(Channel::<u64>::new(opts), Err(ChannelError::Build(_)));
    assert!(bad(Options::new().capacity(3)), "not a power of two");
    assert!(bad(Options::new().capacity(0)));
    assert!(
        bad(Options::new().capacity(1).flavor(Flavor::Mpmc)),
        "MPMC needs 2"
    );
    assert!(
        Channel::<u64>::new(Options::new().capacity(1)).is_ok(),
        "SPSC of one"
    );
    let name = unique_name("badcap");
    assert!(matches!(
        Channel::<u64>::create(
            Segment::builder(&name).unlink_on_drop(true),
            Options::new().capacity(6)
        ),
        Err(ChannelError::Build(_))
    ));
    assert!(matches!(segment::inspect(&name), Err(OpenError::NotFound)));
}

#[test]
fn handles_move_between_threads() {
    fn send<X: Send>() {}
    fn send_sync<X: Send + Sync>() {}
    send_sync::<Channel<u64>>();
    send_sync::<Channel<Tick>>();
    send_sync::<Channel<Note, Postcard>>();
    send::<channel::Sender<Tick>>();
    send::<channel::Receiver<Tick>>();
    send::<channel::Sender<Note, Postcard>>();
    send::<channel::Receiver<Note, Postcard>>();
}

// ---- roles ----

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn spsc_admits_one_sender_and_one_receiver_at_a_time() {
    fn check<M: Msg>(backing: Backing) {
        let case = label::<M>(Flavor::Spsc, backing, WaitMode::Blocking);
        let ch = make_channel::<M>(backing, options(Flavor::Spsc, WaitMode::Blocking, 8));
        let tx = ch.sender().unwrap();
        assert!(matches!(ch.sender(), Err(ChannelError::Claim(_))), "{case}");
        let rx = ch.receiver().unwrap();
        assert!(
            matches!(ch.receiver(), Err(ChannelError::Claim(_))),
            "{case}"
        );
        drop((tx, rx));
        let (mut tx, mut rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
        tx.send(M::make(1)).unwrap();
        assert_eq!(rx.recv(), Ok(M::make(1)), "{case}: new handles work");
    }
    for backing in BACKINGS {
        check::<u64>(backing);
        check::<Tick>(backing);
        check::<Note>(backing);
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn mpmc_admits_up_to_32_handles() {
    for backing in BACKINGS {
        let ch = make_channel::<u64>(backing, options(Flavor::Mpmc, WaitMode::Blocking, 8));
        let mut txs: Vec<_> = (0..16).map(|_| ch.sender().unwrap()).collect();
        let mut rxs: Vec<_> = (0..16).map(|_| ch.receiver().unwrap()).collect();
        assert!(
            matches!(ch.sender(), Err(ChannelError::Claim(_))),
            "{backing:?}"
        );
        assert!(
            matches!(ch.receiver(), Err(ChannelError::Claim(_))),
            "{backing:?}"
        );
        txs[3].send(9).unwrap();
        assert_eq!(rxs[11].recv(), Ok(9), "{backing:?}");
        drop(txs.pop());
        assert!(ch.receiver().is_ok(), "{backing:?}: a freed slot is reused");
    }
}

#[test]
fn bounded_is_a_heap_spsc_channel() {
    let (mut tx, mut rx) = channel::bounded::<Tick>(4).unwrap();
    for i in 0..4 {
        tx.try_send(Tick::make(i)).unwrap();
    }
    assert_eq!(
        tx.try_send(Tick::make(4)),
        Err(TrySendError::Full(Tick::make(4)))
    );
    assert_eq!(rx.capacity(), 4);
    drop(tx);
    let got: Vec<u64> = rx.iter().map(|t| t.seq()).collect();
    assert_eq!(got, [0, 1, 2, 3]);
    assert!(matches!(
        channel::bounded::<u64>(3),
        Err(ChannelError::Build(_))
    ));
}

// ---- named channels: opening ----

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn opening_a_named_channel_checks_flavour_and_message_type() {
    for flavor in [Flavor::Spsc, Flavor::Mpmc] {
        let name = unique_name("open");
        let ch = Channel::<Tick>::create(
            Segment::builder(&name).unlink_on_drop(true),
            options(flavor, WaitMode::Blocking, 8),
        )
        .unwrap();
        let mut tx = ch.sender().unwrap();
        // The right type opens, and the flavour comes from the segment.
        let same = Channel::<Tick>::open(Segment::builder(&name)).unwrap();
        assert_eq!(same.flavor(), flavor);
        assert_eq!(same.capacity(), 8);
        let mut rx = same.receiver().unwrap();
        tx.send(Tick::make(5)).unwrap();
        assert_eq!(rx.recv(), Ok(Tick::make(5)), "{flavor:?}");
        // Other Pod types, even of the same size, and serde messages do not.
        assert!(
            matches!(
                Channel::<u64>::open(Segment::builder(&name)),
                Err(ChannelError::Build(_))
            ),
            "{flavor:?}: u64"
        );
        assert!(
            matches!(
                Channel::<[u64; 3]>::open(Segment::builder(&name)),
                Err(ChannelError::Build(_))
            ),
            "{flavor:?}: [u64; 3] (same size as Tick)"
        );
        assert!(
            matches!(
                Channel::<Note, Postcard>::open(Segment::builder(&name)),
                Err(ChannelError::Build(_))
            ),
            "{flavor:?}: Note"
        );
    }
    // A serde channel is not a Raw one.
    let name = unique_name("open-pc");
    let _ch = Channel::<Note, Postcard>::create(
        Segment::builder(&name).unlink_on_drop(true),
        options(Flavor::Spsc, WaitMode::Blocking, 8),
    )
    .unwrap();
    assert!(matches!(
        Channel::<u64>::open(Segment::builder(&name)),
        Err(ChannelError::Build(_))
    ));
    assert!(Channel::<Note, Postcard>::open(Segment::builder(&name)).is_ok());
    // A missing one is an error too.
    assert!(matches!(
        Channel::<u64>::open(Segment::builder(&unique_name("missing"))),
        Err(ChannelError::Build(_))
    ));
}

/// Another serde type, to open a `Note` channel with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Other {
    id: u32,
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn opening_a_serde_channel_with_another_serde_type_fails() {
    let name = unique_name("open-pc2");
    let ch = Channel::<Note, Postcard>::create(
        Segment::builder(&name).unlink_on_drop(true),
        options(Flavor::Spsc, WaitMode::Blocking, 8),
    )
    .unwrap();
    // Channel::open's docs: "its flavour and message type are checked".
    if let Ok(wrong) = Channel::<Other, Postcard>::open(Segment::builder(&name)) {
        ch.sender().unwrap().send(Note::make(77)).unwrap();
        let got = wrong.receiver().unwrap().recv();
        panic!("a Note channel opened as Other; a Note then arrives as {got:?}");
    }
}

// ---- serde messages ----

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn postcard_too_large_hands_the_message_back_unchanged() {
    for backing in BACKINGS {
        let opts = Options::new().max_message(64).capacity(4);
        let ch = make_channel::<Note>(backing, opts);
        let (mut tx, mut rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
        let mut big = Note::make(1);
        big.text = "x".repeat(200);
        let err = tx.try_send(big.clone()).unwrap_err();
        assert!(
            matches!(&err, TrySendError::TooLarge { msg, max: 64 } if *msg == big),
            "{backing:?}: {err:?}"
        );
        assert_eq!(err.into_inner(), big, "{backing:?}");
        match tx.send(big.clone()) {
            Err(SendError::TooLarge { msg, max }) => {
                assert_eq!((msg, max), (big.clone(), 64), "{backing:?}");
            }
            other => panic!("{backing:?}: {other:?}"),
        }
        assert!(matches!(
            tx.send_timeout(big.clone(), Duration::from_secs(1)),
            Err(SendTimeoutError::TooLarge { max: 64, .. })
        ));
        match tx.send_acked(big.clone()) {
            Err(AckError::NotSent(e)) => assert_eq!(e.into_inner(), big, "{backing:?}"),
            other => panic!("{backing:?}: {other:?}"),
        }
        // Nothing was sent, and the channel still works.
        assert!(ch.is_empty(), "{backing:?}");
        let small = Note {
            seq: 2,
            urgent: false,
            text: "ok".into(),
            data: vec![1, 2, 3],
        };
        tx.send(small.clone()).unwrap();
        assert_eq!(rx.recv(), Ok(small), "{backing:?}");
    }
}

#[test]
fn postcard_maximum_is_inclusive() {
    // A String of n < 128 bytes encodes to n + 1 bytes (a one-byte length).
    let ch = Channel::<String, Postcard>::new(Options::new().max_message(16)).unwrap();
    let (mut tx, mut rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
    let fits = "y".repeat(15);
    tx.send(fits.clone()).unwrap();
    assert_eq!(rx.recv(), Ok(fits));
    let over = "z".repeat(16);
    assert_eq!(
        tx.try_send(over.clone()),
        Err(TrySendError::TooLarge { msg: over, max: 16 })
    );
}

/// MPMC serde channels carry messages in fixed cells of up to 16 KiB: a larger
/// maximum is refused before anything is created.
#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn postcard_on_mpmc_refuses_messages_beyond_the_largest_cell() {
    let opts = Options::new().flavor(Flavor::Mpmc).max_message(20_000);
    assert!(matches!(
        Channel::<Note, Postcard>::new(opts),
        Err(ChannelError::Unsupported(_))
    ));
    let name = unique_name("pc-mpmc");
    assert!(matches!(
        Channel::<Note, Postcard>::create(Segment::builder(&name).unlink_on_drop(true), opts),
        Err(ChannelError::Unsupported(_))
    ));
    // Refused before anything was created.
    assert!(matches!(segment::inspect(&name), Err(OpenError::NotFound)));
    // Up to the largest cell it works, heap and named, and opens by name.
    let opts = Options::new().flavor(Flavor::Mpmc).max_message(16_376);
    assert!(Channel::<Note, Postcard>::new(opts).is_ok());
    let ch = Channel::<Note, Postcard>::create(Segment::builder(&name).unlink_on_drop(true), opts)
        .unwrap();
    let other = Channel::<Note, Postcard>::open(Segment::builder(&name)).unwrap();
    assert_eq!(other.flavor(), Flavor::Mpmc);
    ch.sender().unwrap().send(Note::make(3)).unwrap();
    assert_eq!(other.receiver().unwrap().recv(), Ok(Note::make(3)));
    // Another serde type may not open it, nor may a Raw channel.
    assert!(Channel::<Other, Postcard>::open(Segment::builder(&name)).is_err());
    assert!(Channel::<u64>::open(Segment::builder(&name)).is_err());
}

/// A hostile (or differently built) sender: frames written straight into the
/// segment file, each a header word (`len | "FRM1" << 32`) and its bytes, stamped and
/// counted in `tail` as the frame producer does.
struct RawFrames {
    path: std::path::PathBuf,
    capacity: u64,
    tail: u64,
}

impl RawFrames {
    /// Segment header (128) + SPSC ring header (768): the area of 16-byte slots
    /// (stamp, value); the `tail` line is the ring header's third.
    const AREA: u64 = 128 + 768;
    const TAIL: u64 = 128 + 2 * 128;

    fn poke(&self, offset: u64, value: u64) {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .unwrap();
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.write_all(&value.to_le_bytes()).unwrap();
    }

    fn send(&mut self, bytes: &[u8]) {
        let mut words = vec![bytes.len() as u64 | 0x314d_5246 << 32];
        words.extend(bytes.chunks(8).map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        }));
        for w in words {
            let slot = Self::AREA + (self.tail % self.capacity) * 16;
            self.poke(slot + 8, w);
            self.poke(slot, self.tail + 1);
            self.tail += 1;
        }
        self.poke(Self::TAIL, self.tail);
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn postcard_garbage_bytes_are_a_decode_error_not_a_panic() {
    let name = unique_name("garbage");
    let ch = Channel::<Note, Postcard>::create(
        Segment::builder(&name).unlink_on_drop(true),
        options(Flavor::Spsc, WaitMode::Blocking, 8),
    )
    .unwrap();
    // A plain frame ring is another type: it may not attach to a Note channel.
    assert!(FrameRing::open(Segment::builder(&name)).is_err());
    let mut rx = ch.receiver().unwrap();
    let info = segment::inspect(&name).unwrap();
    let area_words = (info.file_size - RawFrames::AREA) / 16;
    let mut raw = RawFrames {
        path: info.name.path(),
        capacity: area_words.next_power_of_two().min(area_words.max(1)),
        tail: 0,
    };
    let mut truncated = postcard::to_allocvec(&Note::make(9)).unwrap();
    truncated.truncate(truncated.len() / 2);
    let mut trailing = postcard::to_allocvec(&Note::make(11)).unwrap();
    trailing.extend_from_slice(&[0, 0, 0]);
    let garbage: [&[u8]; 6] = [
        &[],                       // nothing at all
        &[0xff; 12],               // a varint that never ends
        &[1, 0, 200, b'a', b'b'],  // a String longer than the frame
        &[1, 0, 2, 0xc3, 0x28, 0], // a String that is not UTF-8
        &truncated,                // a valid message cut short
        &trailing,                 // a valid message with bytes after it
    ];
    for bytes in garbage {
        raw.send(bytes);
        match rx.try_recv() {
            Err(TryRecvError::Decode(reason)) => assert!(!reason.is_empty()),
            other => panic!("{bytes:?}: expected Decode, got {other:?}"),
        }
    }
    // Consumed: a valid message after them arrives.
    raw.send(&postcard::to_allocvec(&Note::make(10)).unwrap());
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(Note::make(10)));
    // recv reports it the same way.
    raw.send(&[0xff; 3]);
    assert!(matches!(rx.recv(), Err(RecvError::Decode(_))));
}

// ---- errors ----

#[test]
fn errors_display_and_hand_back() {
    let e: SendError<Vec<u8>> = SendError::TooLarge {
        msg: vec![1, 2],
        max: 1,
    };
    assert!(e.to_string().contains("1-byte"));
    assert_eq!(format!("{e:?}"), "TooLarge { max: 1, .. }");
    assert_eq!(e.into_inner(), [1, 2]);
    let ack = AckError::NotSent(SendTimeoutError::Timeout(3u8));
    assert!(ack.to_string().contains("stayed full"), "{ack}");
    // As crossbeam-channel's: a blocking operation's error converts into those of
    // the non-blocking and timed ones, and each names what failed.
    assert_eq!(
        TrySendError::from(SendError::Disconnected(1)),
        TrySendError::Disconnected(1)
    );
    assert_eq!(
        SendTimeoutError::from(SendError::Closed(2)),
        SendTimeoutError::Closed(2)
    );
    assert_eq!(TryRecvError::from(RecvError::Closed), TryRecvError::Closed);
    assert_eq!(
        RecvTimeoutError::from(RecvError::Disconnected),
        RecvTimeoutError::Disconnected
    );
    for shown in [
        TrySendError::Full(0).to_string(),
        SendTimeoutError::Timeout(0).to_string(),
        SendError::Disconnected(0).to_string(),
        TryRecvError::Empty.to_string(),
        RecvTimeoutError::Timeout.to_string(),
        RecvError::Closed.to_string(),
    ] {
        assert!(shown.starts_with("channel "), "{shown}");
    }
    assert_eq!(format!("{:?}", TrySendError::Full(vec![0u8])), "Full(..)");
    assert!(
        AckError::<u8>::Unacknowledged { disconnected: true }
            .to_string()
            .contains("left")
    );
    assert!(RecvError::Decode("bad".into()).to_string().contains("bad"));
    let unsupported =
        Channel::<Note, Postcard>::new(Options::new().flavor(Flavor::Mpmc).max_message(1 << 20));
    assert!(unsupported.unwrap_err().to_string().contains("MPMC"));
}

/// `close` (on the channel or a receiver) wakes every blocked call of the process with
/// `Closed`, for both flavours and both codecs: a receive on an empty channel, a send
/// on a full one (the message comes back), and a `select` over the channel.
#[test]
#[cfg_attr(miri, ignore = "real-time sleeps")]
fn close_wakes_blocked_sends_receives_and_selects() {
    for flavor in [Flavor::Spsc, Flavor::Mpmc] {
        let opts = Options::new().capacity(2).flavor(flavor);
        // Raw: a blocked receive, then a send on a full channel.
        let ch = Channel::<u64>::new(opts).unwrap();
        let (mut tx, mut rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
        let waiter = thread::spawn(move || (rx.recv(), rx));
        thread::sleep(Duration::from_millis(30));
        ch.close();
        let (got, mut rx) = waiter.join().unwrap();
        assert_eq!(got, Err(RecvError::Closed), "{flavor:?}");
        while tx.try_send(1).is_ok() {}
        assert_eq!(tx.send(9), Err(SendError::Closed(9)), "{flavor:?}");
        assert_eq!(
            rx.try_recv(),
            Ok(1),
            "{flavor:?}: what is there still comes out"
        );

        // Postcard: a blocked send on a full channel, closed through a receiver.
        let ch = Channel::<String, Postcard>::new(opts).unwrap();
        let (mut tx, rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
        while tx.try_send("x".to_owned()).is_ok() {}
        let sender = thread::spawn(move || tx.send("late".to_owned()));
        thread::sleep(Duration::from_millis(30));
        rx.close();
        let err = sender.join().unwrap().unwrap_err();
        assert!(
            matches!(&err, SendError::Closed(m) if m == "late"),
            "{flavor:?}: {err:?}"
        );

        // A select blocked on two channels wakes when one closes.
        let a = Channel::<u64>::new(opts).unwrap();
        let b = Channel::<u64>::new(opts).unwrap();
        let (_ta, ra) = (a.sender().unwrap(), a.receiver().unwrap());
        let (_tb, mut rb) = (b.sender().unwrap(), b.receiver().unwrap());
        let closer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(30));
            b.close();
        });
        let t0 = Instant::now();
        let ready = channel::select(&[&ra, &rb], Some(Duration::from_secs(10)));
        assert_eq!(ready, Ok(1), "{flavor:?}");
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert_eq!(rb.try_recv(), Err(TryRecvError::Closed), "{flavor:?}");
        closer.join().unwrap();
    }
}

//! loom models of the channels' acknowledged send (`Sender::send_acked`): the sender
//! enqueues, then waits until the receiver has taken that message, on the consumer's
//! `head` (SPSC, `Producer::wait_consumed`) or on the slot's stamp (MPMC,
//! `MpmcProducer::wait_taken`), through the `WaitWord::wait_until` handshake.
//!
//! What the models check:
//! - **Happens-before through the acknowledgement.** Before each `recv`, the receiver
//!   writes a note into a non-atomic loom cell; after the matching `send_acked`
//!   returns, the sender reads it. If the acknowledgement does not order the
//!   receiver's take before the sender's return (a Relaxed load where an Acquire is
//!   needed), loom reports the read as a race.
//! - **The message was taken.** After each acknowledgement the channel is empty.
//! - **No lost wake-up.** The futex mock ignores timeouts, so an acknowledgement whose
//!   wake-up is lost leaves the sender asleep for ever: a loom deadlock. The receiver
//!   stays registered until the sender is done, so the wake-up a leaving receiver
//!   sends cannot hide a lost one.
//! - **A receiver that leaves instead of receiving** ends the wait with
//!   `Unacknowledged { disconnected: true }`, never a hang; one that takes the
//!   message and then leaves acknowledged it.
//!
//! Each model's doc names the weakenings of the source it was seen to catch.
//!
//! Run with `RUSTFLAGS="--cfg shmlink_loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p
//! shmlink --release --test loom_channel --target-dir target/loom`. Every model has
//! two threads and runs with the full `LOOM_MAX_PREEMPTIONS` (no `Builder` cap): the
//! largest, `spsc_blocking_ack_orders_and_wakes`, explores about 48,000 executions at
//! 3 preemptions, and the whole file runs in about 4 s on one core.
#![cfg(shmlink_loom)]

use loom::sync::Arc;
use loom::thread;
use shmlink::channel::{AckError, Channel, Flavor, Options, SendTimeoutError, TryRecvError};
use shmlink::sync::WaitMode;
use shmlink::sync::cell::UnsafeCell;

/// Notes the receiver leaves before each receive: `cells[k - 1]` before it takes
/// message `k`. Non-atomic loom cells, so loom checks that the sender's read of
/// a note after the acknowledgement is ordered after the receiver's write.
struct Notes {
    /// One cell per message, written once by the receiver, read once by the sender.
    cells: [UnsafeCell<u64>; 2],
}

// SAFETY: each cell is written by the receiver only before it takes message `k`, and
// read by the sender only after `send_acked(k)` returned; the acknowledgement is what
// orders the two, and that is exactly what the model checks (loom's cell panics on
// any access it does not order).
unsafe impl Sync for Notes {}

impl Notes {
    /// Two notes, both 0.
    fn new() -> Self {
        Self {
            cells: [UnsafeCell::new(0), UnsafeCell::new(0)],
        }
    }

    /// The receiver, before it takes message `k`.
    fn write(&self, k: u64) {
        // SAFETY: see `unsafe impl Sync for Notes`: the sender reads this cell only
        // after message `k` was acknowledged, which happens after this write.
        self.cells[k as usize - 1].with_mut(|p| unsafe { *p = k });
    }

    /// The sender, after message `k` was acknowledged.
    fn read(&self, k: u64) -> u64 {
        // SAFETY: the receiver wrote this cell before taking message `k`, and nothing
        // writes it after; the acknowledgement orders that write before this read.
        self.cells[k as usize - 1].with(|p| unsafe { *p })
    }
}

/// Options for the models: capacity 2 (both messages fit, so only the
/// acknowledgement ever makes the sender wait), the given flavour and wait mode.
fn options(flavor: Flavor, mode: WaitMode) -> Options {
    Options::new().capacity(2).flavor(flavor).wait_mode(mode)
}

/// How the receiver of [`acked_pair`] takes messages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Take {
    /// `recv()`: in blocking mode it may sleep on the data futex too.
    Recv,
    /// `try_recv()` and a loom yield until a message comes: the receiver never
    /// sleeps, so the sender's acknowledgement wait is the only futex sleeper. A lost
    /// acknowledgement wake-up then shows as a deadlock (after the last message:
    /// the receiver waits in `join`) or as loom's branch limit (the receiver polls
    /// for a message the sleeping sender never sends).
    Poll,
}

/// Two acknowledged sends against two receives.
///
/// The sender (a spawned thread) does `send_acked(1)` then `send_acked(2)`; after
/// each it reads the receiver's note for that message (happens-before through the
/// acknowledgement) and checks the channel is empty (the message was taken). The
/// receiver (the model's main thread) writes note `k`, takes `k`, and keeps its
/// handle until the sender is done, so only the acknowledgement's own wake-up can
/// end the sender's wait.
fn acked_pair(flavor: Flavor, mode: WaitMode, take: Take) {
    let ch = Channel::<u64>::new(options(flavor, mode)).unwrap();
    let mut tx = ch.sender().unwrap();
    let mut rx = ch.receiver().unwrap();
    let notes = Arc::new(Notes::new());
    let sender = {
        let (ch, notes) = (ch.clone(), notes.clone());
        thread::spawn(move || {
            for k in 1..=2u64 {
                tx.send_acked(k).unwrap();
                assert_eq!(notes.read(k), k, "ack of {k} before the receiver took it");
                assert_eq!(ch.len(), 0, "message {k} acknowledged but still queued");
            }
        })
    };
    for k in 1..=2u64 {
        notes.write(k);
        let got = match take {
            Take::Recv => rx.recv().map_err(TryRecvError::from),
            Take::Poll => loop {
                match rx.try_recv() {
                    Err(TryRecvError::Empty) => thread::yield_now(),
                    other => break other,
                }
            },
        };
        assert_eq!(got, Ok(k));
    }
    sender.join().unwrap();
    drop(rx);
}

/// How the receiver of [`receiver_leaves`] leaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leave {
    /// Once the message is in the channel: the send must end `Unacknowledged`.
    AfterEnqueue,
    /// At any point: the send fails as `NotSent(Disconnected)` or ends
    /// `Unacknowledged`; either way it returns.
    Racing,
    /// After taking the message: the send is acknowledged (`Ok`), whichever the
    /// sender sees first, the take or the leaving (a waiter that sees the peer gone
    /// re-checks its condition).
    AfterTaking,
}

/// A receiver that drops its handle: `send_acked(1)` returns (never hangs), with a
/// disconnection if the receiver left without the message, `Ok` if it took it first.
/// The receiver is a spawned thread; the sender is the model's main thread.
fn receiver_leaves(flavor: Flavor, leave: Leave) {
    let ch = Channel::<u64>::new(options(flavor, WaitMode::Blocking)).unwrap();
    let mut tx = ch.sender().unwrap();
    let mut rx = ch.receiver().unwrap();
    let receiver = {
        let ch = ch.clone();
        thread::spawn(move || {
            match leave {
                Leave::AfterEnqueue => {
                    while ch.is_empty() {
                        thread::yield_now();
                    }
                }
                Leave::Racing => {}
                Leave::AfterTaking => assert_eq!(rx.recv(), Ok(1)),
            }
            drop(rx);
        })
    };
    let result = tx.send_acked(1);
    match (leave, result) {
        (Leave::AfterTaking, Ok(())) => {}
        (
            Leave::AfterEnqueue | Leave::Racing,
            Err(AckError::Unacknowledged { disconnected: true }),
        ) => {}
        (Leave::Racing, Err(AckError::NotSent(SendTimeoutError::Disconnected(1)))) => {}
        (_, other) => panic!("send_acked to a receiver that left: {other:?}"),
    }
    receiver.join().unwrap();
}

/// SPSC, blocking waits: two acknowledged sends, each ordered after the receiver's
/// take and woken by it.
///
/// Catches: `wait_consumed`'s `head` load Relaxed (a race on the note); no
/// `space.notify()` in the consumer's release, or no SeqCst fence in
/// `WaitWord::notify` (a deadlock, both threads asleep on the futex).
#[test]
fn spsc_blocking_ack_orders_and_wakes() {
    loom::model(|| acked_pair(Flavor::Spsc, WaitMode::Blocking, Take::Recv));
}

/// MPMC, blocking waits: as the SPSC model, through the slot stamps and the
/// `not_full` wake-ups.
///
/// Catches: `wait_taken`'s stamp load Relaxed (the channel not yet empty after the
/// acknowledgement: a stale `head`); no SeqCst fence in `WaitWord::notify` (a
/// deadlock).
#[test]
fn mpmc_blocking_ack_orders_and_wakes() {
    loom::model(|| acked_pair(Flavor::Mpmc, WaitMode::Blocking, Take::Recv));
}

/// SPSC, blocking waits, a receiver that polls instead of sleeping: the sender's
/// acknowledgement wait is the only sleeper, so a hang here is a lost
/// acknowledgement wake-up (the consumer's release must notify `space`).
///
/// Catches: no `space.notify()` in the consumer's release (loom's branch limit: the
/// receiver polls for message 2 while the sender sleeps on message 1); no SeqCst
/// fence in `WaitWord::notify` (a deadlock: the sender asleep, the receiver in
/// `join`); `wait_consumed`'s `head` load Relaxed (a race on the note).
#[test]
fn spsc_blocking_ack_wakes_for_a_polling_receiver() {
    loom::model(|| acked_pair(Flavor::Spsc, WaitMode::Blocking, Take::Poll));
}

/// MPMC, blocking waits, a polling receiver: as
/// `spsc_blocking_ack_wakes_for_a_polling_receiver` (`try_recv` must notify
/// `not_full`).
///
/// Catches: no SeqCst fence in `WaitWord::notify` (a deadlock: the sender asleep,
/// the receiver in `join`); `wait_taken`'s stamp load Relaxed (a stale `head`).
#[test]
fn mpmc_blocking_ack_wakes_for_a_polling_receiver() {
    loom::model(|| acked_pair(Flavor::Mpmc, WaitMode::Blocking, Take::Poll));
}

/// SPSC, spin waits: the acknowledgement is a poll of `head` (each poll a loom yield),
/// with no wake-up at all.
///
/// Catches: `wait_consumed`'s `head` load Relaxed (a race on the note).
#[test]
fn spsc_spin_ack_orders() {
    loom::model(|| acked_pair(Flavor::Spsc, WaitMode::Spin, Take::Recv));
}

/// MPMC, spin waits: the acknowledgement is a poll of the slot's stamp.
///
/// Catches: `wait_taken`'s stamp load Relaxed (a race on the note).
#[test]
fn mpmc_spin_ack_orders() {
    loom::model(|| acked_pair(Flavor::Mpmc, WaitMode::Spin, Take::Recv));
}

/// SPSC: a receiver that leaves once the message is queued ends the acknowledgement
/// wait with `Unacknowledged { disconnected: true }`.
#[test]
fn spsc_receiver_leaving_ends_the_ack_wait() {
    loom::model(|| receiver_leaves(Flavor::Spsc, Leave::AfterEnqueue));
}

/// SPSC: a receiver that leaves at any point makes `send_acked` fail, never hang.
#[test]
fn spsc_receiver_leaving_anytime_fails_the_send() {
    loom::model(|| receiver_leaves(Flavor::Spsc, Leave::Racing));
}

/// MPMC: as `spsc_receiver_leaving_ends_the_ack_wait` (no consumer registered left).
#[test]
fn mpmc_receiver_leaving_ends_the_ack_wait() {
    loom::model(|| receiver_leaves(Flavor::Mpmc, Leave::AfterEnqueue));
}

/// MPMC: as `spsc_receiver_leaving_anytime_fails_the_send`.
#[test]
fn mpmc_receiver_leaving_anytime_fails_the_send() {
    loom::model(|| receiver_leaves(Flavor::Mpmc, Leave::Racing));
}

/// SPSC: a receiver that takes the message, then leaves, acknowledged it: `Ok`, even
/// when the sender first sees the receiver gone.
///
/// Catches: `wait_until` returning `Disconnected` on a gone peer without trying
/// `ready` once more (`Unacknowledged` for a message that was taken); no SeqCst
/// fence in `WaitWord::notify` (a deadlock: a lost data wake-up).
#[test]
fn spsc_receiver_taking_then_leaving_acknowledges() {
    loom::model(|| receiver_leaves(Flavor::Spsc, Leave::AfterTaking));
}

/// MPMC: as `spsc_receiver_taking_then_leaving_acknowledges` (the registration
/// counter's Release/Acquire orders the take before "no consumer left"), and it
/// catches the same weakenings.
#[test]
fn mpmc_receiver_taking_then_leaving_acknowledges() {
    loom::model(|| receiver_leaves(Flavor::Mpmc, Leave::AfterTaking));
}

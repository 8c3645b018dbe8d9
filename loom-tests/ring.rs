//! loom models of the rings (heap-backed; slot copies are tracked by loom through the
//! region's shadow cells, so a missing Release/Acquire shows up as a data race).
//!
//! Run with `RUSTFLAGS="--cfg shmlink_loom" cargo test --release --test loom_ring`.
#![cfg(shmlink_loom)]

use loom::thread;
use shmlink::ring::{PopError, PushError, Spsc, WaitMode};

/// SPSC through a ring of 2 slots: 3 items wrap around; each arrives once, in order.
#[test]
fn spsc_wraps_around_in_order() {
    loom::model(|| {
        let ring = Spsc::<u64, _>::new(2, WaitMode::Spin).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let producer = thread::spawn(move || {
            for i in 1..=3u64 {
                let mut v = i;
                loop {
                    match tx.try_push(v) {
                        Ok(()) => break,
                        Err(PushError::Full(back)) => {
                            v = back;
                            thread::yield_now();
                        }
                        Err(e) => panic!("push: {e:?}"),
                    }
                }
            }
        });
        let mut next = 1u64;
        while next <= 3 {
            match rx.try_pop() {
                Ok(v) => {
                    assert_eq!(v, next);
                    next += 1;
                }
                Err(PopError::Empty) => thread::yield_now(),
                Err(e) => panic!("pop: {e:?}"),
            }
        }
        producer.join().unwrap();
    });
}

/// Blocking push and pop through one slot: both sides must sleep on the futex at
/// some point, and no wake-up may be lost (a lost one is a loom deadlock).
#[test]
fn spsc_blocking_never_loses_a_wakeup() {
    loom::model(|| {
        let ring = Spsc::<u64, _>::new(1, WaitMode::Blocking).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let producer = thread::spawn(move || {
            tx.push(1).unwrap();
            tx.push(2).unwrap();
            // Leave without the wake-up a dropped producer sends, so that only the
            // publication handshake can wake the consumer.
            std::mem::forget(tx);
        });
        assert_eq!(rx.pop(), Ok(1));
        assert_eq!(rx.pop(), Ok(2));
        producer.join().unwrap();
        std::mem::forget(rx);
    });
}

/// A producer that leaves wakes a sleeping consumer, which still gets everything that
/// was committed, then `Disconnected`.
#[test]
fn spsc_disconnect_wakes_the_consumer_after_delivery() {
    loom::model(|| {
        let ring = Spsc::<u64, _>::new(2, WaitMode::Blocking).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let producer = thread::spawn(move || {
            tx.try_push(7).unwrap();
            drop(tx);
        });
        assert_eq!(rx.pop(), Ok(7));
        assert_eq!(rx.pop(), Err(PopError::Disconnected));
        producer.join().unwrap();
    });
}

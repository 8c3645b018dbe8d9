//! loom models of the MPMC ring (heap-backed; stamps are loom atomics, values are
//! tracked through the region's shadow cells).
//!
//! Run with `RUSTFLAGS="--cfg shmlink_loom" cargo test --release --test loom_mpmc`.
#![cfg(shmlink_loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;
use shmlink::ring::{Mpmc, PopError, PushError};
use shmlink::sync::WaitMode;

/// Two producers and two consumers, one item each, through two slots: every item is
/// delivered exactly once (slot reuse across laps is in `mpmc_laps_deliver_in_order`).
#[test]
fn mpmc_two_by_two_delivers_each_item_once() {
    // Four threads: bounded to two preemptions whatever LOOM_MAX_PREEMPTIONS says.
    // Blocking mode, so waiting threads sleep on the (modelled) futex instead of
    // spinning, which also checks the ring's wake-ups.
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(builder.preemption_bound.map_or(2, |b| b.min(2)));
    builder.check(|| {
        let ring = Mpmc::<u64, _>::new(2, WaitMode::Blocking).unwrap();
        // Bit i set when item i was popped; a duplicate trips the assert.
        let seen = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for item in [1u64, 2] {
            let mut tx = ring.producer().unwrap();
            threads.push(thread::spawn(move || {
                tx.push(item).unwrap();
                // Stay registered (a leaving producer wakes everyone, which would
                // hide a lost wake-up).
                std::mem::forget(tx);
            }));
        }
        let popper = |seen: Arc<AtomicU64>, mut rx: shmlink::ring::MpmcConsumer<u64, _>| {
            move || {
                let v = rx.pop().unwrap();
                let bit = 1u64 << v;
                let before = seen.fetch_or(bit, Ordering::Relaxed);
                assert_eq!(before & bit, 0, "item {v} delivered twice");
                std::mem::forget(rx);
            }
        };
        threads.push(thread::spawn(popper(
            seen.clone(),
            ring.consumer().unwrap(),
        )));
        popper(seen.clone(), ring.consumer().unwrap())();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(seen.load(Ordering::Relaxed), 0b110, "every item delivered");
    });
}

/// One producer and one consumer through two slots, four items: slots are reused on
/// later laps and every item arrives once, in order (explored with the full bound).
#[test]
fn mpmc_laps_deliver_in_order() {
    loom::model(|| {
        let ring = Mpmc::<u64, _>::new(2, WaitMode::Spin).unwrap();
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

/// `close` from another thread wakes a consumer blocked on an empty MPMC ring and a
/// producer blocked on a full one with `Closed`, whatever the interleaving: a lost
/// wake-up is a loom deadlock (as it is with the wake-ups left out of `close`).
#[test]
fn mpmc_close_wakes_blocked_callers() {
    loom::model(|| {
        let ring = Mpmc::<u64, _>::new(2, WaitMode::Blocking).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let closer = {
            let ring = ring.clone();
            thread::spawn(move || ring.close())
        };
        assert_eq!(rx.pop(), Err(PopError::Closed));
        closer.join().unwrap();
        tx.try_push(1).unwrap();
        tx.try_push(2).unwrap();
        assert_eq!(tx.push(3), Err(PushError::Closed(3)));
        assert_eq!(rx.try_pop(), Ok(1), "what is there can still be drained");
        std::mem::forget((tx, rx));
    });
}

//! loom models of the rings (heap-backed; slot copies are tracked by loom through the
//! region's shadow cells, so a missing Release/Acquire shows up as a data race).
//!
//! Run with `RUSTFLAGS="--cfg shmlink_loom" cargo test --release --test loom_ring`.
#![cfg(shmlink_loom)]

use loom::thread;
use shmlink::ring::{PopError, PushError, Spsc};
use shmlink::sync::WaitMode;

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

/// `close` from another thread wakes a consumer blocked on an empty ring (its producer
/// alive and silent) with `Closed`, and a producer blocked on a full one with
/// `Closed` and its value, whatever the interleaving: a wake-up lost between the
/// waiter's last check and its sleep is a loom deadlock.
#[test]
fn spsc_close_wakes_blocked_callers() {
    loom::model(|| {
        let ring = Spsc::<u64, _>::new(1, WaitMode::Blocking).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let closer = {
            let ring = ring.clone();
            thread::spawn(move || ring.close())
        };
        assert_eq!(rx.pop(), Err(PopError::Closed));
        closer.join().unwrap();
        // Already closed: a call that would wait returns at once.
        tx.try_push(1).unwrap();
        assert_eq!(tx.push(2), Err(PushError::Closed(2)));
        assert_eq!(rx.try_pop(), Ok(1), "what is there can still be drained");
        std::mem::forget((tx, rx));
    });
}

/// A producer blocked on a full ring is woken by `close`.
#[test]
fn spsc_close_wakes_a_blocked_producer() {
    loom::model(|| {
        let ring = Spsc::<u64, _>::new(1, WaitMode::Blocking).unwrap();
        let mut tx = ring.producer().unwrap();
        let rx = ring.consumer().unwrap();
        tx.try_push(1).unwrap();
        let closer = {
            let ring = ring.clone();
            thread::spawn(move || ring.close())
        };
        assert_eq!(tx.push(2), Err(PushError::Closed(2)));
        closer.join().unwrap();
        std::mem::forget((tx, rx));
    });
}

/// Frames of several words through a frame ring of 8 words (16 bytes of payload at
/// most): the consumer polls the slots' stamps before `tail`, and must still see every
/// frame whole, in order, with its bytes (a frame published halfway, or read before
/// its stamps, is a loom data race or a wrong byte). The second frame wraps around.
#[test]
fn frames_arrive_whole_in_order() {
    use shmlink::ring::{FrameRecvError, FrameRing, FrameSendError};
    loom::model(|| {
        let ring = FrameRing::new(64, 16, WaitMode::Spin).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let frames: [&[u8]; 3] = [b"0123456789abcdef", b"xyz", b"ABCDEFGHIJ"];
        let producer = thread::spawn(move || {
            for f in frames {
                loop {
                    match tx.try_send(f) {
                        Ok(()) => break,
                        Err(FrameSendError::Full) => thread::yield_now(),
                        Err(e) => panic!("send: {e:?}"),
                    }
                }
            }
        });
        let mut buf = Vec::new();
        let mut next = 0;
        while next < frames.len() {
            match rx.try_recv(&mut buf) {
                Ok(len) => {
                    assert_eq!(&buf[..len], frames[next]);
                    next += 1;
                }
                Err(FrameRecvError::Empty) => thread::yield_now(),
                Err(e) => panic!("recv: {e:?}"),
            }
        }
        producer.join().unwrap();
    });
}

//! The SPSC ring: capacity checks, full/empty, FIFO order across wrap-arounds, roles,
//! disconnects, timeouts, batches and chunks, element types, named rings, corrupted
//! positions written from outside, and threaded streams, all within one process; and
//! waits on rings whose creator, a child process, dies before the other end is
//! claimed.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::fs::OpenOptions;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shmlink::process::{current_token, token_of};
use shmlink::region::Pod;
use shmlink::region::{HeapRegion, Region, layout_fingerprint};
use shmlink::ring::{
    BuildError, ChunkError, ClaimError, Corruption, PopError, PushError, Spsc, SpscHeader,
};
use shmlink::segment::{CreateError, MAX_PAYLOAD, OpenError, Segment, SegmentName};
use shmlink::sync::WaitMode;

use crate::support;
use crate::support::segfile::{file_offsets_of, peek_u64, poke_u64, seg_path};

type HeapSpsc<T> = Spsc<T, HeapRegion<SpscHeader>>;

/// A segment name unique to this process and test.
fn name(tag: &str) -> String {
    format!("t-spsc-{}-{}", std::process::id(), tag)
}

/// Deterministic pseudo-random numbers (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-ish in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Runs `f` on its own thread and fails the test if it does not finish within
/// `limit` (a lost wake-up must fail, not hang the suite).
fn within<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => {
            handle.join().unwrap();
            r
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The closure panicked: re-raise its panic.
            match handle.join() {
                Err(e) => std::panic::resume_unwind(e),
                Ok(()) => unreachable!("sender dropped without a panic"),
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("did not finish within {limit:?}"),
    }
}

/// Stream length for the threaded tests.
fn stream_len() -> u64 {
    if cfg!(miri) {
        1_000
    } else if cfg!(debug_assertions) {
        20_000
    } else {
        1_000_000
    }
}

// ---------------------------------------------------------------------------------
// Heap ring basics
// ---------------------------------------------------------------------------------

#[test]
fn invalid_capacities_are_rejected() {
    for cap in [
        0usize,
        3,
        5,
        6,
        7,
        12,
        1000,
        (1 << 32) + 1,
        1 << 33,
        usize::MAX,
    ] {
        assert_eq!(
            HeapSpsc::<u64>::new(cap, WaitMode::Blocking).unwrap_err(),
            BuildError::InvalidCapacity(cap as u64),
            "capacity {cap}"
        );
    }
    for cap in [1usize, 2, 4, 8, 1024] {
        let ring = HeapSpsc::<u64>::new(cap, WaitMode::Spin).unwrap();
        assert_eq!(ring.capacity(), cap);
        assert_eq!(ring.wait_mode(), WaitMode::Spin);
        assert!(ring.is_empty());
        assert_eq!(ring.len(), 0);
    }
    assert_eq!(
        HeapSpsc::<u8>::new(16, WaitMode::default())
            .unwrap()
            .wait_mode(),
        WaitMode::Blocking
    );
    // A named ring with a bad capacity fails before any segment is made.
    let n = name("badcap");
    assert_eq!(
        Spsc::<u64, _>::create(
            Segment::builder(&n).unlink_on_drop(true),
            3,
            WaitMode::Blocking
        )
        .unwrap_err(),
        BuildError::InvalidCapacity(3)
    );
    assert!(!SegmentName::new(&n).unwrap().path().exists());
    // A valid capacity whose slots exceed the segment limit is the segment's error.
    let n = name("toolarge");
    assert_eq!(
        Spsc::<[u8; 1024], _>::create(
            Segment::builder(&n).unlink_on_drop(true),
            1 << 32,
            WaitMode::Blocking
        )
        .unwrap_err(),
        BuildError::Create {
            name: n.clone(),
            error: CreateError::TooLarge {
                requested: 768 + (1 << 32) * (1024 + 8),
                max: MAX_PAYLOAD
            }
        }
    );
    assert!(!SegmentName::new(&n).unwrap().path().exists());
}

#[test]
fn try_push_until_full_then_try_pop_until_empty() {
    let ring = HeapSpsc::<u64>::new(8, WaitMode::Blocking).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    assert_eq!(tx.slots(), 8);
    assert_eq!(rx.slots(), 0);
    assert_eq!(rx.try_pop(), Err(PopError::Empty));
    for i in 0..8u64 {
        assert_eq!(ring.len(), i as usize);
        tx.try_push(i * 10).unwrap();
        assert!(!ring.is_empty());
    }
    assert_eq!(ring.len(), 8);
    assert_eq!(tx.slots(), 0);
    assert_eq!(rx.slots(), 8);
    let err = tx.try_push(999).unwrap_err();
    assert_eq!(err, PushError::Full(999));
    assert_eq!(err.into_inner(), 999);
    assert_eq!(tx.try_push(1000), Err(PushError::Full(1000)));
    for i in 0..8u64 {
        assert_eq!(rx.try_pop(), Ok(i * 10));
        assert_eq!(ring.len(), 7 - i as usize);
    }
    assert!(ring.is_empty());
    assert_eq!(rx.try_pop(), Err(PopError::Empty));
    assert_eq!(rx.try_pop(), Err(PopError::Empty));
    assert_eq!(tx.slots(), 8);
    assert_eq!(rx.slots(), 0);
    // The ring is usable again after a full cycle.
    tx.try_push(5).unwrap();
    assert_eq!(rx.try_pop(), Ok(5));
}

#[test]
fn capacity_one_alternates() {
    let ring = HeapSpsc::<u32>::new(1, WaitMode::Blocking).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    for i in 0..if cfg!(miri) { 100 } else { 1000u32 } {
        tx.try_push(i).unwrap();
        assert_eq!(tx.try_push(u32::MAX), Err(PushError::Full(u32::MAX)));
        assert_eq!(ring.len(), 1);
        assert_eq!(rx.try_pop(), Ok(i));
        assert_eq!(rx.try_pop(), Err(PopError::Empty));
    }
}

/// Random interleavings of try_push/try_pop against a model queue.
fn fifo_against_model(cap: usize, seed: u64, steps: usize) {
    let ring = HeapSpsc::<u64>::new(cap, WaitMode::Blocking).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    let mut model = VecDeque::new();
    let mut rng = Rng(seed);
    let mut next = 0u64;
    for _ in 0..steps {
        // Odd batch sizes, sometimes larger than the capacity.
        for _ in 0..rng.below(cap + 3) {
            match tx.try_push(next) {
                Ok(()) => {
                    assert!(model.len() < cap, "push into a full ring succeeded");
                    model.push_back(next);
                    next += 1;
                }
                Err(PushError::Full(v)) => {
                    assert_eq!(v, next);
                    assert_eq!(model.len(), cap, "Full with free slots");
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(ring.len(), model.len());
        assert_eq!(tx.slots(), cap - model.len());
        assert_eq!(rx.slots(), model.len());
        for _ in 0..rng.below(cap + 3) {
            match (rx.try_pop(), model.pop_front()) {
                (Ok(v), Some(m)) => assert_eq!(v, m),
                (Err(PopError::Empty), None) => {}
                (got, want) => panic!("ring gave {got:?}, model {want:?}"),
            }
        }
        assert_eq!(ring.is_empty(), model.is_empty());
    }
    while let Some(m) = model.pop_front() {
        assert_eq!(rx.try_pop(), Ok(m));
    }
    assert_eq!(rx.try_pop(), Err(PopError::Empty));
    // Many wrap-arounds happened.
    assert!(next > 50 * cap as u64, "only {next} elements went through");
}

#[test]
fn fifo_order_across_wraparounds_capacity_4() {
    fifo_against_model(
        4,
        0x9e37_79b9_7f4a_7c15,
        if cfg!(miri) { 150 } else { 5_000 },
    );
}

#[test]
fn fifo_order_across_wraparounds_capacity_8() {
    fifo_against_model(
        8,
        0x0123_4567_89ab_cdef,
        if cfg!(miri) { 150 } else { 5_000 },
    );
}

#[test]
fn fifo_order_fixed_odd_pattern() {
    // Push 3, pop 2 until full, then pop 1 / push 3 while draining: every slot index
    // is used at every phase.
    for cap in [4usize, 8] {
        let ring = HeapSpsc::<u64>::new(cap, WaitMode::Spin).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let (mut pushed, mut popped) = (0u64, 0u64);
        for round in 0..200 {
            let (p, q) = if round % 2 == 0 { (3, 2) } else { (1, 3) };
            for _ in 0..p {
                if tx.try_push(pushed).is_ok() {
                    pushed += 1;
                }
            }
            for _ in 0..q {
                if let Ok(v) = rx.try_pop() {
                    assert_eq!(v, popped);
                    popped += 1;
                }
            }
            assert_eq!(ring.len() as u64, pushed - popped);
        }
        assert!(pushed > 100);
    }
}

// ---------------------------------------------------------------------------------
// Roles
// ---------------------------------------------------------------------------------

#[test]
fn second_claim_is_taken_by_us() {
    let ring = HeapSpsc::<u64>::new(8, WaitMode::Blocking).unwrap();
    let me = std::process::id();
    let tx = ring.producer().unwrap();
    assert_eq!(ring.producer().unwrap_err(), ClaimError::Taken { pid: me });
    let rx = ring.consumer().unwrap();
    assert_eq!(ring.consumer().unwrap_err(), ClaimError::Taken { pid: me });
    // A clone of the ring is the same ring.
    let other = ring.clone();
    assert_eq!(other.producer().unwrap_err(), ClaimError::Taken { pid: me });
    assert_eq!(other.consumer().unwrap_err(), ClaimError::Taken { pid: me });
    drop((tx, rx));
    let _tx = other.producer().unwrap();
    let _rx = other.consumer().unwrap();
}

#[test]
fn reclaimed_roles_continue_at_the_right_position() {
    let ring = HeapSpsc::<u64>::new(4, WaitMode::Blocking).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    let mut expected = 0u64;
    let mut next = 0u64;
    for round in 0..50 {
        // Push up to 3, pop up to 2, then hand one of the roles to a new handle.
        for _ in 0..3 {
            if tx.try_push(next).is_ok() {
                next += 1;
            }
        }
        for _ in 0..2 {
            if let Ok(v) = rx.try_pop() {
                assert_eq!(v, expected);
                expected += 1;
            }
        }
        if round % 2 == 0 {
            drop(rx);
            rx = ring.consumer().expect("consumer role free again");
        } else {
            drop(tx);
            tx = ring.producer().expect("producer role free again");
        }
        assert_eq!(ring.len() as u64, next - expected);
        assert_eq!(tx.slots() as u64, 4 - (next - expected));
        assert_eq!(rx.slots() as u64, next - expected);
    }
    while let Ok(v) = rx.try_pop() {
        assert_eq!(v, expected);
        expected += 1;
    }
    assert_eq!(expected, next, "nothing lost");
    assert!(next > 50);
}

#[test]
fn new_producer_after_disconnect_reconnects_the_consumer() {
    let ring = HeapSpsc::<u64>::new(8, WaitMode::Blocking).unwrap();
    let mut rx = ring.consumer().unwrap();
    let mut tx = ring.producer().unwrap();
    tx.try_push(1).unwrap();
    drop(tx);
    assert!(rx.is_abandoned());
    assert_eq!(rx.try_pop(), Ok(1));
    assert_eq!(rx.try_pop(), Err(PopError::Disconnected));
    let mut tx = ring.producer().unwrap();
    assert!(!rx.is_abandoned());
    assert_eq!(rx.try_pop(), Err(PopError::Empty));
    tx.try_push(2).unwrap();
    assert_eq!(rx.try_pop(), Ok(2));
}

// ---------------------------------------------------------------------------------
// Disconnect
// ---------------------------------------------------------------------------------

#[test]
fn consumer_drains_then_sees_disconnected() {
    type Pop =
        fn(&mut shmlink::ring::Consumer<u64, HeapRegion<SpscHeader>>) -> Result<u64, PopError>;
    let ways: [(&str, Pop); 3] = [
        ("try_pop", |rx| rx.try_pop()),
        ("pop", |rx| rx.pop()),
        ("pop_timeout", |rx| rx.pop_timeout(Duration::from_secs(10))),
    ];
    for (what, pop) in ways {
        let ring = HeapSpsc::<u64>::new(8, WaitMode::Blocking).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        assert!(!rx.is_abandoned());
        assert!(!tx.is_abandoned());
        for i in 0..5 {
            tx.try_push(i).unwrap();
        }
        drop(tx);
        assert!(rx.is_abandoned(), "{what}");
        let start = Instant::now();
        for i in 0..5 {
            assert_eq!(pop(&mut rx), Ok(i), "{what}");
        }
        assert_eq!(pop(&mut rx), Err(PopError::Disconnected), "{what}");
        assert_eq!(pop(&mut rx), Err(PopError::Disconnected), "{what}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what} waited for a producer that is gone"
        );
    }
}

#[test]
fn blocked_pop_is_woken_by_the_producer_leaving() {
    for mode in [WaitMode::Blocking, WaitMode::Spin] {
        let ring = HeapSpsc::<u64>::new(8, mode).unwrap();
        let tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let waiter =
            std::thread::spawn(move || (rx.pop(), rx.pop_timeout(Duration::from_secs(30))));
        std::thread::sleep(Duration::from_millis(50));
        drop(tx);
        let (a, b) = within(Duration::from_secs(20), move || waiter.join().unwrap());
        assert_eq!(a, Err(PopError::Disconnected), "{mode:?}");
        assert_eq!(b, Err(PopError::Disconnected), "{mode:?}");
    }
}

#[test]
fn producer_sees_disconnected_when_full_and_consumer_gone() {
    let ring = HeapSpsc::<u64>::new(4, WaitMode::Blocking).unwrap();
    let mut tx = ring.producer().unwrap();
    let rx = ring.consumer().unwrap();
    for i in 0..4 {
        tx.try_push(i).unwrap();
    }
    assert_eq!(tx.try_push(4), Err(PushError::Full(4)));
    assert!(!tx.is_abandoned());
    drop(rx);
    assert!(tx.is_abandoned());
    assert_eq!(tx.try_push(5), Err(PushError::Disconnected(5)));
    let start = Instant::now();
    assert_eq!(tx.push(6), Err(PushError::Disconnected(6)));
    assert_eq!(
        tx.push_timeout(7, Duration::from_secs(10)),
        Err(PushError::Disconnected(7))
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(tx.push_slice(&[8, 9]), 0);
    assert_eq!(tx.write_chunk(1).unwrap_err(), ChunkError::TooFewSlots(0));
    // A new consumer finds every element the old one left.
    let mut rx = ring.consumer().unwrap();
    assert!(!tx.is_abandoned());
    for i in 0..4 {
        assert_eq!(rx.try_pop(), Ok(i));
    }
}

#[test]
fn blocked_push_is_woken_by_the_consumer_leaving() {
    for mode in [WaitMode::Blocking, WaitMode::Spin] {
        let ring = HeapSpsc::<u64>::new(2, mode).unwrap();
        let mut tx = ring.producer().unwrap();
        let rx = ring.consumer().unwrap();
        tx.try_push(0).unwrap();
        tx.try_push(1).unwrap();
        let waiter =
            std::thread::spawn(move || (tx.push(2), tx.push_timeout(3, Duration::from_secs(30))));
        std::thread::sleep(Duration::from_millis(50));
        drop(rx);
        let (a, b) = within(Duration::from_secs(20), move || waiter.join().unwrap());
        assert_eq!(a, Err(PushError::Disconnected(2)), "{mode:?}");
        assert_eq!(b, Err(PushError::Disconnected(3)), "{mode:?}");
    }
}

#[test]
fn never_attached_peer_is_not_a_disconnect() {
    let ring = HeapSpsc::<u64>::new(2, WaitMode::Blocking).unwrap();
    let mut rx = ring.consumer().unwrap();
    assert!(!rx.is_abandoned());
    assert_eq!(rx.try_pop(), Err(PopError::Empty));
    assert_eq!(
        rx.pop_timeout(Duration::from_millis(20)),
        Err(PopError::Timeout)
    );
    drop(rx);
    let ring = HeapSpsc::<u64>::new(2, WaitMode::Blocking).unwrap();
    let mut tx = ring.producer().unwrap();
    tx.try_push(0).unwrap();
    tx.try_push(1).unwrap();
    assert!(!tx.is_abandoned());
    assert_eq!(tx.try_push(2), Err(PushError::Full(2)));
}

// ---------------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------------

#[test]
fn pop_timeout_on_empty_ring_times_out() {
    for mode in [WaitMode::Blocking, WaitMode::Spin] {
        let ring = HeapSpsc::<u64>::new(8, mode).unwrap();
        let _tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let timeout = Duration::from_millis(100);
        let start = Instant::now();
        assert_eq!(rx.pop_timeout(timeout), Err(PopError::Timeout), "{mode:?}");
        let took = start.elapsed();
        assert!(took >= timeout, "{mode:?}: returned after {took:?}");
        assert!(took < Duration::from_secs(5), "{mode:?}: took {took:?}");
        // A zero timeout is a try.
        assert_eq!(rx.pop_timeout(Duration::ZERO), Err(PopError::Timeout));
    }
}

#[test]
fn push_timeout_on_full_ring_times_out_with_the_value() {
    for mode in [WaitMode::Blocking, WaitMode::Spin] {
        let ring = HeapSpsc::<u64>::new(4, mode).unwrap();
        let mut tx = ring.producer().unwrap();
        let _rx = ring.consumer().unwrap();
        for i in 0..4 {
            tx.try_push(i).unwrap();
        }
        let timeout = Duration::from_millis(100);
        let start = Instant::now();
        let err = tx.push_timeout(77, timeout).unwrap_err();
        let took = start.elapsed();
        assert_eq!(err, PushError::Timeout(77), "{mode:?}");
        assert_eq!(err.into_inner(), 77);
        assert!(took >= timeout, "{mode:?}: returned after {took:?}");
        assert!(took < Duration::from_secs(5), "{mode:?}: took {took:?}");
        assert_eq!(ring.len(), 4);
    }
}

#[test]
fn timeouts_succeed_when_the_peer_acts_in_time() {
    let ring = HeapSpsc::<u64>::new(1, WaitMode::Blocking).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        tx.push_timeout(1, Duration::from_secs(10)).unwrap();
        // Full now; the consumer frees the slot after a while.
        tx.push_timeout(2, Duration::from_secs(10)).unwrap();
        tx
    });
    assert_eq!(rx.pop_timeout(Duration::from_secs(10)), Ok(1));
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(rx.pop_timeout(Duration::from_secs(10)), Ok(2));
    let _tx = within(Duration::from_secs(20), move || t.join().unwrap());
}

// ---------------------------------------------------------------------------------
// Batches and chunks
// ---------------------------------------------------------------------------------

#[test]
fn push_slice_and_pop_slice_across_the_wrap_point() {
    let ring = HeapSpsc::<u64>::new(8, WaitMode::Blocking).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    assert_eq!(tx.push_slice(&[]), 0);
    assert_eq!(rx.pop_slice(&mut []), 0);
    assert_eq!(tx.push_slice(&[0, 1, 2, 3, 4]), 5);
    let mut out = [0u64; 3];
    assert_eq!(rx.pop_slice(&mut out), 3);
    assert_eq!(out, [0, 1, 2]);
    // Head at 3, tail at 5: 6 free, and the copy wraps after 3 slots.
    let items: Vec<u64> = (5..13).collect();
    assert_eq!(tx.push_slice(&items), 6, "partial fill");
    assert_eq!(ring.len(), 8);
    assert_eq!(tx.push_slice(&[99]), 0);
    let mut out = [u64::MAX; 10];
    assert_eq!(rx.pop_slice(&mut out), 8, "partial drain, wrapping");
    assert_eq!(&out[..8], &[3, 4, 5, 6, 7, 8, 9, 10]);
    assert_eq!(&out[8..], &[u64::MAX, u64::MAX], "untouched past n");
    assert_eq!(rx.pop_slice(&mut out), 0);

    // Random batch sizes against a model.
    let mut rng = Rng(42);
    let (mut next, mut expected) = (11u64, 11u64);
    for _ in 0..if cfg!(miri) { 100 } else { 3_000 } {
        let k = rng.below(11);
        let batch: Vec<u64> = (next..next + k as u64).collect();
        let free = 8 - ring.len();
        let pushed = tx.push_slice(&batch);
        assert_eq!(pushed, k.min(free));
        next += pushed as u64;
        let mut out = vec![0u64; rng.below(11)];
        let avail = ring.len();
        let popped = rx.pop_slice(&mut out);
        assert_eq!(popped, out.len().min(avail));
        for v in &out[..popped] {
            assert_eq!(*v, expected);
            expected += 1;
        }
    }
    assert!(next > if cfg!(miri) { 100 } else { 1000 });
}

#[test]
fn write_chunk_commit_partial_and_uncommitted() {
    let ring = HeapSpsc::<u64>::new(8, WaitMode::Blocking).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    // Move both positions to 3 so chunks wrap.
    for i in 0..3 {
        tx.try_push(i).unwrap();
        assert_eq!(rx.try_pop(), Ok(i));
    }
    assert_eq!(tx.write_chunk(9).unwrap_err(), ChunkError::TooFewSlots(8));
    let mut chunk = tx.write_chunk(6).unwrap();
    assert_eq!(chunk.len(), 6);
    assert!(!chunk.is_empty());
    for i in 0..6 {
        chunk.write(i, 100 + i as u64);
    }
    assert_eq!(ring.len(), 0, "nothing published before commit");
    chunk.commit(4);
    assert_eq!(ring.len(), 4);
    assert_eq!(rx.slots(), 4);
    assert_eq!(tx.write_chunk(5).unwrap_err(), ChunkError::TooFewSlots(4));

    // Dropped without commit: nothing published, the slots are reused.
    {
        let mut chunk = tx.write_chunk(4).unwrap();
        for i in 0..4 {
            chunk.write(i, 900 + i as u64);
        }
    } // dropped here, uncommitted
    assert_eq!(ring.len(), 4);
    assert_eq!(rx.slots(), 4);
    // commit(0) publishes nothing either.
    tx.write_chunk(2).unwrap().commit(0);
    assert_eq!(ring.len(), 4);
    let empty = tx.write_chunk(0).unwrap();
    assert!(empty.is_empty());
    empty.commit_all();

    let mut chunk = tx.write_chunk(2).unwrap();
    chunk.write(1, 201);
    // SAFETY: slot 0 of a reserved, uncommitted chunk; written once, no reference made.
    unsafe { chunk.slot_ptr(0).write_unaligned(200) };
    chunk.commit_all();
    assert_eq!(ring.len(), 6);
    let mut out = [0u64; 8];
    assert_eq!(rx.pop_slice(&mut out), 6);
    assert_eq!(&out[..6], &[100, 101, 102, 103, 200, 201]);
    assert_eq!(rx.try_pop(), Err(PopError::Empty));
}

#[test]
fn read_chunk_get_and_partial_release() {
    let ring = HeapSpsc::<u64>::new(8, WaitMode::Blocking).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    assert_eq!(rx.read_chunk(1).unwrap_err(), ChunkError::TooFewSlots(0));
    // Positions at 5 so chunks wrap.
    assert_eq!(tx.push_slice(&[0; 5]), 5);
    assert_eq!(rx.pop_slice(&mut [0; 5]), 5);
    assert_eq!(tx.push_slice(&[10, 11, 12, 13, 14, 15]), 6);
    assert_eq!(rx.read_chunk(7).unwrap_err(), ChunkError::TooFewSlots(6));
    let chunk = rx.read_chunk(4).unwrap();
    assert_eq!(chunk.len(), 4);
    assert!(!chunk.is_empty());
    let got: Vec<u64> = (0..4).map(|i| chunk.get(i)).collect();
    assert_eq!(got, [10, 11, 12, 13]);
    // SAFETY: element 3 is in the unreleased chunk; read once, no reference made.
    assert_eq!(unsafe { chunk.slot_ptr(3).read_unaligned() }, 13);
    chunk.release(2);
    assert_eq!(ring.len(), 4);
    assert_eq!(tx.slots(), 4);
    // Dropping a chunk releases nothing.
    {
        let chunk = rx.read_chunk(4).unwrap();
        assert_eq!(chunk.get(0), 12);
    } // dropped here, unreleased
    assert_eq!(ring.len(), 4);
    rx.read_chunk(1).unwrap().release(0);
    assert_eq!(ring.len(), 4);
    let chunk = rx.read_chunk(4).unwrap();
    assert_eq!(
        (chunk.get(0), chunk.get(1), chunk.get(2), chunk.get(3)),
        (12, 13, 14, 15)
    );
    chunk.release_all();
    assert!(ring.is_empty());
    assert_eq!(rx.read_chunk(1).unwrap_err(), ChunkError::TooFewSlots(0));
    assert!(rx.read_chunk(0).unwrap().is_empty());
}

#[test]
#[should_panic(expected = "commit of 3 slots, chunk has 2")]
fn commit_more_than_reserved_panics() {
    let ring = HeapSpsc::<u64>::new(8, WaitMode::Blocking).unwrap();
    let mut tx = ring.producer().unwrap();
    tx.write_chunk(2).unwrap().commit(3);
}

#[test]
#[should_panic(expected = "chunk index 2 out of range 0..2")]
fn write_chunk_index_out_of_range_panics() {
    let ring = HeapSpsc::<u64>::new(8, WaitMode::Blocking).unwrap();
    let mut tx = ring.producer().unwrap();
    tx.write_chunk(2).unwrap().write(2, 0);
}

#[test]
#[should_panic(expected = "chunk index 1 out of range 0..1")]
fn read_chunk_index_out_of_range_panics() {
    let ring = HeapSpsc::<u64>::new(8, WaitMode::Blocking).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    tx.try_push(1).unwrap();
    let _ = rx.read_chunk(1).unwrap().get(1);
}

// ---------------------------------------------------------------------------------
// Element types
// ---------------------------------------------------------------------------------

/// Pushes `values` through a ring of `cap` one by one and in slices, several laps.
fn round_trip<T: Pod + PartialEq + Debug>(values: &[T], cap: usize) {
    let ring = HeapSpsc::<T>::new(cap, WaitMode::Blocking).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    for _lap in 0..3 {
        for v in values {
            tx.try_push(*v).unwrap();
            assert_eq!(rx.try_pop().unwrap(), *v);
        }
        for chunk in values.chunks(cap - 1) {
            assert_eq!(tx.push_slice(chunk), chunk.len());
            let mut out = chunk.to_vec();
            out.fill(values[0]);
            assert_eq!(rx.pop_slice(&mut out), chunk.len());
            assert_eq!(out, chunk);
        }
    }
}

#[test]
fn element_kib_arrays() {
    let values: Vec<[u8; 1024]> = (0..10u8)
        .map(|k| core::array::from_fn(|i| (i as u8).wrapping_mul(31).wrapping_add(k)))
        .collect();
    round_trip(&values, 4);
}

#[test]
fn element_u8() {
    let values: Vec<u8> = (0..=255).collect();
    round_trip(&values, 16);
}

#[test]
fn element_u64_triples() {
    let values: Vec<[u64; 3]> = (0..40u64)
        .map(|i| [i, u64::MAX - i, i.rotate_left(32)])
        .collect();
    round_trip(&values, 8);
}

#[test]
fn element_f64_bits_preserved() {
    let specials = [
        0.0,
        -0.0,
        1.5,
        -1e300,
        f64::MIN_POSITIVE / 2.0, // subnormal
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        f64::from_bits(0x7ff0_0000_0000_0001), // signalling NaN payload
        f64::from_bits(0xfff8_dead_beef_0001), // negative NaN payload
    ];
    // NaN != NaN: compare the bit patterns.
    let ring = HeapSpsc::<f64>::new(4, WaitMode::Blocking).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    for _ in 0..3 {
        for chunk in specials.chunks(3) {
            for v in chunk {
                tx.try_push(*v).unwrap();
            }
            for v in chunk {
                assert_eq!(rx.try_pop().unwrap().to_bits(), v.to_bits());
            }
        }
        assert_eq!(tx.push_slice(&specials[..4]), 4);
        let mut out = [0.0; 4];
        assert_eq!(rx.pop_slice(&mut out), 4);
        for (a, b) in out.iter().zip(&specials[..4]) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
    }
    let finite: Vec<f64> = (0..50).map(|i| f64::from(i) * 0.1 - 2.0).collect();
    round_trip(&finite, 8);
}

// ---------------------------------------------------------------------------------
// Element alignment
// ---------------------------------------------------------------------------------

/// A cache line as one element, aligned to 64 like a zero-copy user lays one out.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(64))]
struct Line([u64; 8]);

// SAFETY: repr(C) array of u64: 64 bytes, aligned to 64, no padding, no pointers.
unsafe impl Pod for Line {
    const FINGERPRINT: u64 = layout_fingerprint("tests::spsc::Line", 1, 64, 64);
}

fn line(i: u64) -> Line {
    Line(core::array::from_fn(|k| {
        i.rotate_left(k as u32 * 8) ^ k as u64
    }))
}

fn wide(i: u64) -> u128 {
    (u128::from(i) << 64) | u128::from(!i)
}

/// Every path through a ring of over-aligned elements (chunks written and read in
/// place through `slot_ptr`, single pushes and pops, slices) over several laps: each
/// slot pointer is aligned for `T` (the documented `slot_ptr(i).write(v)` is UB
/// otherwise), and every value arrives.
fn aligned_slots<T, R>(ring: &Spsc<T, R>, make: impl Fn(u64) -> T)
where
    T: Pod + PartialEq + Debug,
    R: Region<Shared = SpscHeader>,
{
    let align = align_of::<T>();
    let cap = ring.capacity();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    let (mut next, mut expect) = (0u64, 0u64);
    for lap in 0..3 {
        // cap - 1 slots: the chunks start at another slot on every lap.
        let n = cap - 1;
        let mut chunk = tx.write_chunk(n).unwrap();
        for i in 0..n {
            // SAFETY: slot i is reserved until commit; one T is written, no reference.
            let p = unsafe { chunk.slot_ptr(i) };
            assert_eq!(p as usize % align, 0, "write slot {i}, lap {lap}");
            // SAFETY: as above; `p` is aligned (just checked).
            unsafe { p.write(make(next)) };
            next += 1;
        }
        chunk.commit_all();
        let chunk = rx.read_chunk(n).unwrap();
        for i in 0..n {
            // SAFETY: the chunk is not released yet; the value is copied out.
            let p = unsafe { chunk.slot_ptr(i) };
            assert_eq!(p as usize % align, 0, "read slot {i}, lap {lap}");
            // SAFETY: as above; `p` is aligned (just checked).
            assert_eq!(unsafe { p.read() }, make(expect));
            assert_eq!(chunk.get(i), make(expect));
            expect += 1;
        }
        chunk.release_all();
        tx.try_push(make(next)).unwrap();
        next += 1;
        assert_eq!(rx.try_pop(), Ok(make(expect)));
        expect += 1;
        let k = cap.min(2);
        let items: Vec<T> = (next..next + k as u64).map(&make).collect();
        assert_eq!(tx.push_slice(&items), k);
        next += k as u64;
        let mut out = vec![make(0); k];
        assert_eq!(rx.pop_slice(&mut out), k);
        assert_eq!(out, items);
        expect += k as u64;
    }
}

/// An element aligned above what a slot area guarantees (128). It breaks the `Pod`
/// contract on purpose: the ring must refuse it with a typed error, not misalign it.
#[derive(Clone, Copy)]
#[repr(C, align(256))]
struct TooAligned([u8; 256]);

// SAFETY: 256 bytes, no padding, no pointers; the alignment (256) is above what `Pod`
// allows, which the rings check (the test is that they refuse it).
unsafe impl Pod for TooAligned {
    const FINGERPRINT: u64 = layout_fingerprint("tests::spsc::TooAligned", 1, 256, 256);
}

#[test]
fn elements_aligned_above_the_area_are_refused() {
    let err = BuildError::UnsupportedAlignment {
        align: 256,
        max: 128,
    };
    assert_eq!(
        HeapSpsc::<TooAligned>::new(4, WaitMode::Spin).unwrap_err(),
        err
    );
    let n = name("align-256");
    assert_eq!(
        Spsc::<TooAligned, _>::create(Segment::builder(&n).unlink_on_drop(true), 4, WaitMode::Spin)
            .unwrap_err(),
        err
    );
    assert!(!seg_path(&n).exists(), "refused before any segment is made");
    assert_eq!(
        Spsc::<TooAligned, _>::open(Segment::builder(&n)).unwrap_err(),
        err
    );
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn u128_slots_are_aligned() {
    aligned_slots(&HeapSpsc::<u128>::new(4, WaitMode::Spin).unwrap(), wide);
    aligned_slots(&HeapSpsc::<u128>::new(1, WaitMode::Spin).unwrap(), wide);
    let n = name("align-u128");
    let ring = Spsc::<u128, _>::create(
        Segment::builder(&n).unlink_on_drop(true),
        8,
        WaitMode::Blocking,
    )
    .unwrap();
    aligned_slots(&ring, wide);
    // Values lie aligned in the mapping, as other processes see them: one distinctive
    // value in every slot.
    let vs: Vec<u128> = (0..8)
        .map(|k| 0x0123_4567_89ab_cdef_fedc_ba98_7654_3200u128 + k)
        .collect();
    let mut tx = ring.producer().unwrap();
    for v in &vs {
        tx.try_push(*v).unwrap();
        let at = file_offsets_of(&n, &v.to_ne_bytes());
        assert_eq!(at.len(), 1, "{at:?}");
        assert_eq!(at[0] % 16, 0, "value at file offset {}", at[0]);
    }
    let opened = Spsc::<u128, _>::open(Segment::builder(&n)).unwrap();
    let mut rx = opened.consumer().unwrap();
    for v in &vs {
        assert_eq!(rx.try_pop(), Ok(*v));
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn cache_line_aligned_slots_are_aligned() {
    aligned_slots(&HeapSpsc::<Line>::new(4, WaitMode::Spin).unwrap(), line);
    let n = name("align-line");
    let ring =
        Spsc::<Line, _>::create(Segment::builder(&n).unlink_on_drop(true), 4, WaitMode::Spin)
            .unwrap();
    aligned_slots(&ring, line);
    let mut tx = ring.producer().unwrap();
    for slot in 0..4u64 {
        let v = Line(core::array::from_fn(|k| {
            0xa5a5_0000_0000_0000 | slot << 8 | k as u64
        }));
        tx.try_push(v).unwrap();
        let needle: Vec<u8> = v.0.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let at = file_offsets_of(&n, &needle);
        assert_eq!(at.len(), 1, "{at:?}");
        assert_eq!(at[0] % 64, 0, "value at file offset {}", at[0]);
    }
}

// ---------------------------------------------------------------------------------
// Named rings
// ---------------------------------------------------------------------------------

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn named_ring_create_and_open_in_one_process() {
    let n = name("named");
    let path = SegmentName::new(&n).unwrap().path();
    let a = Spsc::<u64, _>::create(
        Segment::builder(&n).unlink_on_drop(true),
        64,
        WaitMode::Blocking,
    )
    .unwrap();
    assert!(path.exists());
    let b = Spsc::<u64, _>::open(Segment::builder(&n)).unwrap();
    assert_eq!(b.capacity(), 64);
    assert_eq!(b.wait_mode(), WaitMode::Blocking);
    let mut tx = a.producer().unwrap();
    let mut rx = b.consumer().unwrap();
    // Both handles see the same role words.
    let me = std::process::id();
    assert_eq!(b.producer().unwrap_err(), ClaimError::Taken { pid: me });
    assert_eq!(a.consumer().unwrap_err(), ClaimError::Taken { pid: me });
    for round in 0..20u64 {
        let batch: Vec<u64> = (round * 50..round * 50 + 50).collect();
        assert_eq!(tx.push_slice(&batch), 50);
        assert_eq!(a.len(), 50);
        assert_eq!(b.len(), 50);
        for v in batch {
            assert_eq!(rx.try_pop(), Ok(v));
        }
    }
    assert_eq!(rx.try_pop(), Err(PopError::Empty));
    drop(tx);
    assert!(rx.is_abandoned());
    assert_eq!(rx.pop(), Err(PopError::Disconnected));
    drop((rx, b));
    drop(a);
    assert!(!path.exists(), "creator unlinked on drop");
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn named_ring_open_checks_type_and_existence() {
    let n = name("types");
    let _a = Spsc::<u64, _>::create(
        Segment::builder(&n).unlink_on_drop(true),
        64,
        WaitMode::Spin,
    )
    .unwrap();
    let err = Spsc::<u32, _>::open(Segment::builder(&n)).unwrap_err();
    assert!(
        matches!(
            err,
            BuildError::Open {
                error: OpenError::TypeMismatch { .. },
                ..
            }
        ),
        "{err:?}"
    );
    // The fingerprint found is the one the creator recorded, and differs from u32's.
    let recorded = shmlink::segment::inspect(&n)
        .unwrap()
        .header
        .unwrap()
        .fingerprint;
    match err {
        BuildError::Open {
            error:
                OpenError::TypeMismatch {
                    expected,
                    found,
                    expected_type,
                    found_type,
                },
            ..
        } => {
            assert_eq!(found, recorded);
            assert_ne!(expected, found);
            // Both type names, not only fingerprints.
            assert_eq!(
                (found_type.as_str(), expected_type.as_str()),
                ("u64", "u32")
            );
            let text = err.to_string();
            assert!(
                text.contains("holds `u64`") && text.contains("expected `u32`"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Same size, other type: refused too.
    assert!(matches!(
        Spsc::<f64, _>::open(Segment::builder(&n)).unwrap_err(),
        BuildError::Open {
            error: OpenError::TypeMismatch { .. },
            ..
        }
    ));
    let ok = Spsc::<u64, _>::open(Segment::builder(&n)).unwrap();
    assert_eq!(ok.wait_mode(), WaitMode::Spin);
    let missing = name("missing");
    let err = Spsc::<u64, _>::open(Segment::builder(&missing)).unwrap_err();
    assert_eq!(err.open_error(), Some(&OpenError::NotFound));
    // The error names the segment.
    assert_eq!(
        err.to_string(),
        format!("cannot open segment `{missing}`: no such segment")
    );
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn named_ring_threads_stream() {
    let n = name("named-stream");
    let a = Spsc::<u64, _>::create(
        Segment::builder(&n).unlink_on_drop(true),
        64,
        WaitMode::Blocking,
    )
    .unwrap();
    let b = Spsc::<u64, _>::open(Segment::builder(&n)).unwrap();
    let count = stream_len() / 4;
    let tx = a.producer().unwrap();
    let rx = b.consumer().unwrap();
    within(Duration::from_secs(120), move || {
        stream_push_pop(tx, rx, count)
    });
}

// ---------------------------------------------------------------------------------
// Corruption written from outside
// ---------------------------------------------------------------------------------

/// Byte offset in the segment file of the ring header's line `line` (config 0,
/// roles 1, tail 2, head 3).
fn line_offset(line: u64) -> u64 {
    128 + 128 * line
}
const TAIL: u64 = 2;
const HEAD: u64 = 3;

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn header_offsets_are_as_documented() {
    let n = name("offsets");
    let ring = Spsc::<u64, _>::create(
        Segment::builder(&n).unlink_on_drop(true),
        8,
        WaitMode::Blocking,
    )
    .unwrap();
    assert_eq!(peek_u64(&n, line_offset(0)), 8, "capacity");
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    for i in 0..5 {
        tx.try_push(i).unwrap();
    }
    rx.try_pop().unwrap();
    rx.try_pop().unwrap();
    assert_eq!(peek_u64(&n, line_offset(TAIL)), 5);
    assert_eq!(peek_u64(&n, line_offset(HEAD)), 2);
    assert_eq!(peek_u64(&n, line_offset(1)) as u32, std::process::id());
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn impossible_tail_is_corruption_for_the_consumer() {
    let n = name("bad-tail");
    let ring = Spsc::<u64, _>::create(
        Segment::builder(&n).unlink_on_drop(true),
        8,
        WaitMode::Blocking,
    )
    .unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    for i in 0..3 {
        tx.try_push(i).unwrap();
    }
    for i in 0..3 {
        assert_eq!(rx.try_pop(), Ok(i));
    }
    let head = peek_u64(&n, line_offset(HEAD));
    assert_eq!(head, 3);
    let bad = head + 8 + 5;
    poke_u64(&n, line_offset(TAIL), bad);
    let corrupt = Corruption {
        what: "producer position (tail)",
        found: bad,
    };
    assert_eq!(rx.try_pop(), Err(PopError::Corrupted(corrupt)));
    assert_eq!(rx.try_pop(), Err(PopError::Corrupted(corrupt)));
    let start = Instant::now();
    assert_eq!(
        rx.pop_timeout(Duration::from_secs(10)),
        Err(PopError::Corrupted(corrupt))
    );
    assert_eq!(rx.pop(), Err(PopError::Corrupted(corrupt)));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "waited on corruption"
    );
    assert_eq!(
        rx.read_chunk(1).unwrap_err(),
        ChunkError::Corrupted(corrupt)
    );
    assert_eq!(rx.pop_slice(&mut [0; 4]), 0);
    assert_eq!(rx.slots(), 0);
    assert!(ring.len() <= 8, "len is clamped");

    // A tail that goes backwards reads as a stale view (the slot stamps can run ahead
    // of the tail store): nothing new, never an out-of-bounds read.
    poke_u64(&n, line_offset(TAIL), 2);
    assert_eq!(rx.try_pop(), Err(PopError::Empty));

    // A fresh consumer refuses to start on impossible positions, and leaves the role
    // free.
    poke_u64(&n, line_offset(TAIL), bad);
    drop(rx);
    assert!(matches!(
        ring.consumer().unwrap_err(),
        ClaimError::Corrupted(Corruption { found: 13, .. })
    ));
    // Repaired: everything works again.
    poke_u64(&n, line_offset(TAIL), 3);
    let mut rx = ring.consumer().unwrap();
    tx.try_push(3).unwrap();
    assert_eq!(rx.try_pop(), Ok(3));
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn impossible_head_is_corruption_for_the_producer() {
    let n = name("bad-head");
    let ring = Spsc::<u64, _>::create(
        Segment::builder(&n).unlink_on_drop(true),
        8,
        WaitMode::Blocking,
    )
    .unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    for i in 0..8 {
        tx.try_push(i).unwrap();
    }
    assert_eq!(rx.try_pop(), Ok(0));
    assert_eq!(rx.try_pop(), Ok(1));
    assert_eq!(tx.push_slice(&[8, 9]), 2);
    // Full: tail 10, head 2.
    assert_eq!(peek_u64(&n, line_offset(TAIL)), 10);
    let bad = 10 + 5;
    poke_u64(&n, line_offset(HEAD), bad);
    let corrupt = Corruption {
        what: "consumer position (head)",
        found: bad,
    };
    let err = tx.try_push(42).unwrap_err();
    assert_eq!(err, PushError::Corrupted(42, corrupt));
    assert_eq!(err.into_inner(), 42);
    let start = Instant::now();
    assert_eq!(
        tx.push_timeout(43, Duration::from_secs(10)),
        Err(PushError::Corrupted(43, corrupt))
    );
    assert_eq!(tx.push(44), Err(PushError::Corrupted(44, corrupt)));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "waited on corruption"
    );
    assert_eq!(
        tx.write_chunk(1).unwrap_err(),
        ChunkError::Corrupted(corrupt)
    );
    assert_eq!(tx.push_slice(&[1, 2]), 0);
    assert_eq!(tx.slots(), 0);

    // A head that goes backwards (behind what the producer saw) is refused too.
    poke_u64(&n, line_offset(HEAD), 1);
    assert_eq!(
        tx.try_push(45),
        Err(PushError::Corrupted(
            45,
            Corruption {
                what: "consumer position (head)",
                found: 1
            }
        ))
    );
    // Repaired.
    poke_u64(&n, line_offset(HEAD), 2);
    assert_eq!(tx.try_push(46), Err(PushError::Full(46)));
    assert_eq!(rx.try_pop(), Ok(2));
    tx.try_push(46).unwrap();
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn corrupted_config_is_refused_on_open() {
    let n = name("bad-config");
    let a = Spsc::<u64, _>::create(
        Segment::builder(&n).unlink_on_drop(true),
        8,
        WaitMode::Blocking,
    )
    .unwrap();
    let cfg = line_offset(0);
    let bad = |what, found| BuildError::BadConfig(Corruption { what, found });
    let open = || Spsc::<u64, _>::open(Segment::builder(&n)).unwrap_err();
    poke_u64(&n, cfg, 3);
    assert_eq!(open(), bad("capacity", 3));
    poke_u64(&n, cfg, 0);
    assert_eq!(open(), bad("capacity", 0));
    // 16 slots of 8 bytes do not fit the 64-byte area.
    poke_u64(&n, cfg, 16);
    assert_eq!(open(), bad("capacity for the area", 16));
    poke_u64(&n, cfg, 8);
    poke_u64(&n, cfg + 8, 4);
    assert_eq!(open(), bad("element size", 4));
    poke_u64(&n, cfg + 8, 8);
    poke_u64(&n, cfg + 16, 1);
    assert_eq!(open(), bad("element fingerprint", 1));
    poke_u64(&n, cfg + 16, <u64 as Pod>::FINGERPRINT);
    poke_u64(&n, cfg + 24, 7);
    assert_eq!(open(), bad("wait mode", 7));
    poke_u64(&n, cfg + 24, 1);
    let b = Spsc::<u64, _>::open(Segment::builder(&n)).unwrap();
    assert_eq!(b.wait_mode(), WaitMode::Spin);
    // The creator's handle keeps the configuration it validated.
    assert_eq!(a.wait_mode(), WaitMode::Blocking);
    assert_eq!(a.capacity(), 8);
}

/// Start time (clock ticks after boot) of a running process, from /proc.
fn start_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    // Field 22 of stat; `after` starts at field 3.
    after.split(' ').nth(19).unwrap().parse().unwrap()
}

/// File offsets of the producer and consumer role words (roles line, +0 and +8).
const PRODUCER_ROLE: u64 = 128 + 128;
const CONSUMER_ROLE: u64 = 128 + 128 + 8;

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn dead_producer_token_is_a_disconnect_and_can_be_taken_over() {
    let n = name("dead-producer");
    let ring = Spsc::<u64, _>::create(
        Segment::builder(&n).unlink_on_drop(true),
        8,
        WaitMode::Blocking,
    )
    .unwrap();
    let mut rx = ring.consumer().unwrap();
    let mut tx = ring.producer().unwrap();
    for i in 0..5 {
        tx.try_push(i).unwrap();
    }
    // The producer "dies": the role word names a process that no longer runs (our
    // pid with another start time: a reused pid). Dropping the handle then leaves the
    // word alone (it only releases a role that holds its own token).
    let dead = current_token() ^ (1 << 40);
    assert_eq!(peek_u64(&n, PRODUCER_ROLE), current_token());
    poke_u64(&n, PRODUCER_ROLE, dead);
    drop(tx);
    assert_eq!(peek_u64(&n, PRODUCER_ROLE), dead);
    assert!(rx.is_abandoned());
    for i in 0..3 {
        assert_eq!(rx.try_pop(), Ok(i));
    }
    let start = Instant::now();
    assert_eq!(rx.pop(), Ok(3));
    assert_eq!(rx.pop(), Ok(4));
    assert_eq!(rx.pop(), Err(PopError::Disconnected));
    assert_eq!(
        rx.pop_timeout(Duration::from_secs(10)),
        Err(PopError::Disconnected)
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    // A new producer takes the dead one's role and continues after its last element.
    let mut tx = ring.producer().unwrap();
    assert!(!rx.is_abandoned());
    tx.try_push(5).unwrap();
    assert_eq!(rx.try_pop(), Ok(5));
    assert_eq!(rx.try_pop(), Err(PopError::Empty));
}

/// A producer killed after stamping slots but before its `tail` store (and in the
/// middle of stamping a batch, which goes last slot first) is taken over cleanly: the
/// consumer got the slot published by its stamp, the new producer continues after it
/// (this used to fail with `Corrupted("tail - head")`, seen once in CI), and the stale
/// stamps of the half-published batch are never taken for the new producer's values.
#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn a_producer_killed_between_its_stamps_and_tail_is_taken_over_cleanly() {
    let n = name("killed-mid-publish");
    let ring = Spsc::<u64, _>::create(
        Segment::builder(&n).unlink_on_drop(true),
        8,
        WaitMode::Blocking,
    )
    .unwrap();
    let mut rx = ring.consumer().unwrap();
    let mut tx = ring.producer().unwrap();
    for i in 0..3 {
        tx.try_push(i).unwrap();
    }
    // Area after the 128-byte segment header and the 768-byte ring header; 16-byte
    // slots: stamp, then value.
    let slot = |p: u64| 128 + 768 + (p % 8) * 16;
    // Position 3 written and stamped, `tail` not yet stored.
    poke_u64(&n, slot(3) + 8, 33);
    poke_u64(&n, slot(3), 4);
    // A batch 4..7 stamped last-first, killed before stamping 4.
    poke_u64(&n, slot(5) + 8, 55);
    poke_u64(&n, slot(5), 6);
    poke_u64(&n, slot(6) + 8, 66);
    poke_u64(&n, slot(6), 7);
    poke_u64(&n, PRODUCER_ROLE, current_token() ^ (1 << 40)); // then it "dies"
    drop(tx);
    assert_eq!(peek_u64(&n, line_offset(TAIL)), 3);
    for i in 0..3 {
        assert_eq!(rx.try_pop(), Ok(i));
    }
    assert_eq!(rx.try_pop(), Ok(33), "published by its stamp");
    assert_eq!(
        rx.pop_timeout(Duration::from_secs(5)),
        Err(PopError::Disconnected)
    );
    let mut tx = ring.producer().expect("take over the dead producer's role");
    assert_eq!(peek_u64(&n, line_offset(TAIL)), 4, "tail catches up");
    for v in 100..104 {
        tx.try_push(v).unwrap();
    }
    for v in 100..104 {
        assert_eq!(rx.try_pop(), Ok(v), "never a stale value of the dead batch");
    }
    assert_eq!(rx.try_pop(), Err(PopError::Empty));
}

/// The stale stamps of a batch a dead producer left half stamped are voided lazily by
/// the new producer's publications (one slot ahead of each), whichever way it
/// publishes: one by one, in slices (no stamps of their own), or in chunks. After each
/// publication the consumer gets exactly what was published, never a stale slot.
#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn stale_stamps_of_a_dead_batch_never_pass_for_new_values() {
    for method in ["push", "slice", "chunk"] {
        let n = name(&format!("stale-{method}"));
        let ring = Spsc::<u64, _>::create(
            Segment::builder(&n).unlink_on_drop(true),
            8,
            WaitMode::Blocking,
        )
        .unwrap();
        let mut rx = ring.consumer().unwrap();
        let mut tx = ring.producer().unwrap();
        for i in 0..4 {
            tx.try_push(i).unwrap();
        }
        for i in 0..4 {
            assert_eq!(rx.try_pop(), Ok(i));
        }
        // A batch 4..8 stamped last-first (7, 6, 5), killed before stamping 4.
        let slot = |p: u64| 128 + 768 + (p % 8) * 16;
        for p in 5..8 {
            poke_u64(&n, slot(p) + 8, 1000 + p);
            poke_u64(&n, slot(p), p + 1);
        }
        poke_u64(&n, PRODUCER_ROLE, current_token() ^ (1 << 40));
        drop(tx);
        assert!(rx.is_abandoned(), "{method}");
        assert_eq!(
            rx.try_pop(),
            Err(PopError::Empty),
            "{method}: the gap holds"
        );
        let mut tx = ring.producer().unwrap();
        let mut next = 100u64;
        for k in [1usize, 2, 1, 3] {
            let values: Vec<u64> = (next..next + k as u64).collect();
            match method {
                "push" => values.iter().for_each(|v| tx.try_push(*v).unwrap()),
                "slice" => assert_eq!(tx.push_slice(&values), k),
                _ => {
                    let mut chunk = tx.write_chunk(k).unwrap();
                    for (i, v) in values.iter().enumerate() {
                        chunk.write(i, *v);
                    }
                    chunk.commit_all();
                }
            }
            for v in &values {
                assert_eq!(rx.try_pop(), Ok(*v), "{method}");
            }
            assert_eq!(rx.try_pop(), Err(PopError::Empty), "{method}: a stale slot");
            let mut out = [0; 8];
            assert_eq!(rx.pop_slice(&mut out), 0, "{method}");
            assert!(matches!(rx.read_chunk(1), Err(ChunkError::TooFewSlots(0))));
            next += k as u64;
        }
    }
}

/// Bytes of the segment file of `n` that are backed by memory (tmpfs allocates a page
/// when it is first touched, read or written).
fn backed_bytes(n: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(seg_path(n)).unwrap().blocks() * 512
}

/// Defect 9 (issue 11): a hostile creator forges a ring header whose capacity is huge,
/// over a file that is sized for it but not backed (a sparse tail). Claiming the
/// producer role after a dead producer used to read the stamp of every slot (voiding
/// stale stamps of a half-published batch), so one claim made tmpfs allocate the whole
/// ring (64 MiB here). The takeover now touches a bounded number of slots, whatever the
/// capacity says (or, once the segment checks its backing, the forged ring is refused).
#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn takeover_of_a_forged_huge_ring_touches_a_bounded_number_of_slots() {
    let n = name("forged-capacity");
    let ring = Spsc::<u64, _>::create(
        Segment::builder(&n).unlink_on_drop(true),
        8,
        WaitMode::Blocking,
    )
    .unwrap();
    let mut tx = ring.producer().unwrap();
    tx.try_push(1).unwrap();
    // The forgery: 2^22 slots of 16 bytes, and a file that long, sparse past the real
    // ring. Segment header: total_size at 32, payload_len at 48.
    let capacity = 1u64 << 22;
    let area = 768 + capacity * 16;
    let total = 128 + area;
    OpenOptions::new()
        .write(true)
        .open(seg_path(&n))
        .unwrap()
        .set_len(total)
        .unwrap();
    poke_u64(&n, 32, total);
    poke_u64(&n, 48, area);
    poke_u64(&n, line_offset(0), capacity);
    // The producer "dies" (a reused pid), leaving its role to be taken over.
    poke_u64(&n, PRODUCER_ROLE, current_token() ^ (1 << 40));
    drop(tx);
    let before = backed_bytes(&n);
    let forged = match Spsc::<u64, _>::open(Segment::builder(&n)) {
        Ok(r) => r,
        // Refused by a check of the file's backing: as good.
        Err(BuildError::Open { error: _, .. } | BuildError::BadConfig(_)) => return,
        Err(e) => panic!("unexpected {e:?}"),
    };
    let start = Instant::now();
    let mut tx = forged
        .producer()
        .expect("take over the dead producer's role");
    let took = start.elapsed();
    let touched = backed_bytes(&n) - before;
    assert!(
        touched <= 64 * 1024,
        "the takeover touched {touched} bytes of a {area}-byte forged ring in {took:?}"
    );
    // The ring still works where it is backed.
    let mut rx = forged.consumer().unwrap();
    tx.try_push(2).unwrap();
    assert_eq!(rx.try_pop(), Ok(1));
    assert_eq!(rx.try_pop(), Ok(2));
    assert!(backed_bytes(&n) - before <= 64 * 1024);
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn dead_consumer_token_is_a_disconnect_and_can_be_taken_over() {
    let n = name("dead-consumer");
    let ring = Spsc::<u64, _>::create(
        Segment::builder(&n).unlink_on_drop(true),
        4,
        WaitMode::Blocking,
    )
    .unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    for i in 0..4 {
        tx.try_push(i).unwrap();
    }
    assert_eq!(rx.try_pop(), Ok(0));
    // The consumer "dies" (see the producer case above).
    let dead = current_token() ^ (1 << 40);
    assert_eq!(peek_u64(&n, CONSUMER_ROLE), current_token());
    poke_u64(&n, CONSUMER_ROLE, dead);
    drop(rx);
    assert_eq!(peek_u64(&n, CONSUMER_ROLE), dead);
    tx.try_push(4).unwrap();
    assert!(tx.is_abandoned());
    let start = Instant::now();
    assert_eq!(
        tx.push_timeout(5, Duration::from_secs(10)),
        Err(PushError::Disconnected(5))
    );
    assert_eq!(tx.push(6), Err(PushError::Disconnected(6)));
    assert!(start.elapsed() < Duration::from_secs(5));
    let mut rx = ring.consumer().unwrap();
    for i in 1..5 {
        assert_eq!(rx.try_pop(), Ok(i));
    }
    assert_eq!(rx.try_pop(), Err(PopError::Empty));
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn role_held_by_another_live_process_is_taken_until_it_dies() {
    let n = name("foreign");
    let ring = Spsc::<u64, _>::create(
        Segment::builder(&n).unlink_on_drop(true),
        8,
        WaitMode::Blocking,
    )
    .unwrap();
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = child.id();
    let token = token_of(pid, start_ticks(pid));
    poke_u64(&n, PRODUCER_ROLE, token);
    assert_eq!(ring.producer().unwrap_err(), ClaimError::Taken { pid });
    let mut rx = ring.consumer().unwrap();
    assert!(!rx.is_abandoned());
    assert_eq!(
        rx.pop_timeout(Duration::from_millis(30)),
        Err(PopError::Timeout)
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(rx.is_abandoned());
    assert_eq!(rx.pop(), Err(PopError::Disconnected));
    let mut tx = ring.producer().expect("a dead holder's role is free");
    tx.try_push(1).unwrap();
    assert_eq!(rx.try_pop(), Ok(1));
}

// ---------------------------------------------------------------------------------
// A creator that dies before anyone claims the other end
// ---------------------------------------------------------------------------------

/// Child: creates an SPSC ring (`name`-spsc), a frame ring (`name`-frame) and a full
/// one-slot ring (`name`-full), claims no role of any, reports `ready`, and waits to
/// be killed.
pub(crate) fn create_rings_and_hang() {
    let n = support::arg("name");
    let mode = match support::arg("mode").as_str() {
        "spin" => WaitMode::Spin,
        _ => WaitMode::Blocking,
    };
    let _a = Spsc::<u64, _>::create(Segment::builder(&format!("{n}-spsc")), 8, mode).unwrap();
    let _b =
        shmlink::ring::FrameRing::create(Segment::builder(&format!("{n}-frame")), 256, 64, mode)
            .unwrap();
    let _c = Spsc::<u64, _>::create(Segment::builder(&format!("{n}-full")), 1, mode).unwrap();
    support::report("ready");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Removes the named segments when dropped (their creator is killed, so nobody else
/// does).
struct Unlink(Vec<String>);

impl Drop for Unlink {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = shmlink::segment::unlink(n);
        }
    }
}

/// Defect 8 (issue 11): the creator of a ring is SIGKILLed before the producer role
/// was ever claimed. A consumer waiting without a deadline (`pop`, a frame ring's
/// `recv`), and a producer waiting for room behind a consumer that never came, must
/// learn that nobody can come any more and report `Disconnected` (they used to wait
/// forever). While the creator lives, the same waits time out as before.
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn waits_end_when_the_creator_dies_before_the_peer_claims_its_role() {
    for mode in ["blocking", "spin"] {
        let n = support::unique_name("spsc-orphan");
        let _unlink = Unlink(vec![
            format!("{n}-spsc"),
            format!("{n}-frame"),
            format!("{n}-full"),
        ]);
        let mut child = support::Scenario::new("create_rings_and_hang")
            .arg("name", &n)
            .arg("mode", mode)
            .spawn();
        child.wait_for("ready", Duration::from_secs(30));
        let ring = Spsc::<u64, _>::open(Segment::builder(&format!("{n}-spsc"))).unwrap();
        let mut rx = ring.consumer().unwrap();
        let frames =
            shmlink::ring::FrameRing::open(Segment::builder(&format!("{n}-frame"))).unwrap();
        let mut frx = frames.consumer().unwrap();
        let full = Spsc::<u64, _>::open(Segment::builder(&format!("{n}-full"))).unwrap();
        let mut tx = full.producer().unwrap();
        tx.try_push(1).unwrap();
        // The creator is alive: it may still hand the roles over.
        assert!(!rx.is_abandoned(), "{mode}");
        assert!(!tx.is_abandoned(), "{mode}");
        assert_eq!(
            rx.pop_timeout(Duration::from_millis(30)),
            Err(PopError::Timeout),
            "{mode}"
        );
        assert_eq!(
            tx.push_timeout(2, Duration::from_millis(30)),
            Err(PushError::Timeout(2)),
            "{mode}"
        );
        let (started_tx, started) = mpsc::channel();
        let waiters = std::thread::spawn(move || {
            started_tx.send(()).unwrap();
            let popped = std::thread::scope(|s| {
                let a = s.spawn(|| rx.pop());
                let b = s.spawn(|| frx.recv(&mut Vec::new()));
                let c = s.spawn(|| tx.push(3));
                (a.join().unwrap(), b.join().unwrap(), c.join().unwrap())
            });
            (popped, rx, tx)
        });
        started.recv().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        child.kill();
        let ((a, b, c), mut rx, mut tx) =
            within(Duration::from_secs(30), move || waiters.join().unwrap());
        assert_eq!(a, Err(PopError::Disconnected), "pop, {mode}");
        assert_eq!(
            b,
            Err(shmlink::ring::FrameRecvError::Disconnected),
            "recv, {mode}"
        );
        assert_eq!(c, Err(PushError::Disconnected(3)), "push, {mode}");
        assert!(rx.is_abandoned(), "{mode}");
        assert!(tx.is_abandoned(), "{mode}");
        // The ring itself is fine: a producer may still claim the free role.
        let mut late = ring.producer().unwrap();
        late.try_push(7).unwrap();
        assert_eq!(rx.try_pop(), Ok(7));
        assert!(!rx.is_abandoned());
    }
}

#[test]
fn set_wait_mode_keeps_waits_working() {
    let ring = HeapSpsc::<u64>::new(4, WaitMode::Blocking).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    rx.set_wait_mode(WaitMode::Spin);
    tx.set_wait_mode(WaitMode::Spin);
    assert_eq!(
        rx.pop_timeout(Duration::from_millis(20)),
        Err(PopError::Timeout)
    );
    let t = std::thread::spawn(move || {
        for i in 0..1000 {
            tx.push(i).unwrap();
        }
    });
    for i in 0..1000 {
        assert_eq!(rx.pop(), Ok(i));
    }
    within(Duration::from_secs(20), move || t.join().unwrap());
    assert_eq!(rx.pop(), Err(PopError::Disconnected));
    // On a Spin ring a handle cannot choose to sleep (nobody would wake it): waits
    // still end on data.
    let ring = HeapSpsc::<u64>::new(4, WaitMode::Spin).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    rx.set_wait_mode(WaitMode::Blocking);
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        tx.push(9).unwrap();
        tx
    });
    assert_eq!(rx.pop_timeout(Duration::from_secs(10)), Ok(9));
    let _tx = within(Duration::from_secs(20), move || t.join().unwrap());
}

// ---------------------------------------------------------------------------------
// Threads
// ---------------------------------------------------------------------------------

/// Streams `0..count` with push/pop; the consumer checks order and the final
/// Disconnected.
fn stream_push_pop<R>(
    mut tx: shmlink::ring::Producer<u64, R>,
    mut rx: shmlink::ring::Consumer<u64, R>,
    count: u64,
) where
    R: Region<Shared = SpscHeader> + 'static,
{
    let producer = std::thread::spawn(move || {
        for i in 0..count {
            tx.push(i).unwrap();
        }
    });
    let consumer = std::thread::spawn(move || {
        let mut expected = 0u64;
        loop {
            match rx.pop() {
                Ok(v) => {
                    assert_eq!(v, expected, "out of order or duplicated");
                    expected += 1;
                }
                Err(PopError::Disconnected) => break,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(expected, count, "lost elements");
        assert_eq!(rx.try_pop(), Err(PopError::Disconnected));
    });
    producer.join().unwrap();
    consumer.join().unwrap();
}

fn stream_heap(mode: WaitMode) {
    let ring = HeapSpsc::<u64>::new(64, mode).unwrap();
    let tx = ring.producer().unwrap();
    let rx = ring.consumer().unwrap();
    let count = stream_len();
    within(Duration::from_secs(300), move || {
        stream_push_pop(tx, rx, count)
    });
    assert!(ring.is_empty());
}

#[test]
fn threads_stream_blocking() {
    stream_heap(WaitMode::Blocking);
}

#[test]
fn threads_stream_spin() {
    stream_heap(WaitMode::Spin);
}

#[test]
fn threads_stream_slices() {
    let ring = HeapSpsc::<u64>::new(64, WaitMode::Blocking).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    let count = stream_len();
    let producer = std::thread::spawn(move || {
        let mut rng = Rng(7);
        let mut next = 0u64;
        while next < count {
            let k = (1 + rng.below(100) as u64).min(count - next);
            let batch: Vec<u64> = (next..next + k).collect();
            let mut done = 0;
            while done < batch.len() {
                let n = tx.push_slice(&batch[done..]);
                if n == 0 {
                    // Full: wait for room by pushing one element blocking.
                    tx.push(batch[done]).unwrap();
                    done += 1;
                } else {
                    done += n;
                }
            }
            next += k;
        }
    });
    let consumer = std::thread::spawn(move || {
        let mut rng = Rng(11);
        let mut expected = 0u64;
        let mut buf = vec![0u64; 100];
        loop {
            let len = 1 + rng.below(100);
            let n = rx.pop_slice(&mut buf[..len]);
            for v in &buf[..n] {
                assert_eq!(*v, expected, "out of order or duplicated");
                expected += 1;
            }
            if n == 0 {
                // Empty: wait for data (or the end) with a blocking pop.
                match rx.pop() {
                    Ok(v) => {
                        assert_eq!(v, expected, "out of order or duplicated");
                        expected += 1;
                    }
                    Err(PopError::Disconnected) => break,
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
        }
        assert_eq!(expected, count, "lost elements");
        assert_eq!(rx.pop_slice(&mut buf), 0);
        assert_eq!(rx.try_pop(), Err(PopError::Disconnected));
    });
    within(Duration::from_secs(300), move || {
        producer.join().unwrap();
        consumer.join().unwrap();
    });
    assert!(ring.is_empty());
}

#[test]
fn threads_stream_chunks() {
    let ring = HeapSpsc::<u64>::new(64, WaitMode::Blocking).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    let count = stream_len() / 4;
    let producer = std::thread::spawn(move || {
        let mut rng = Rng(3);
        let mut next = 0u64;
        while next < count {
            let want = (1 + rng.below(64)).min((count - next) as usize);
            match tx.write_chunk(want) {
                Ok(mut chunk) => {
                    for i in 0..want {
                        chunk.write(i, next + i as u64);
                    }
                    // Sometimes publish only a prefix.
                    let k = if want > 1 && rng.below(3) == 0 {
                        want / 2
                    } else {
                        want
                    };
                    chunk.commit(k);
                    next += k as u64;
                }
                Err(ChunkError::TooFewSlots(free)) => {
                    assert!(free < want);
                    std::thread::yield_now();
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
    });
    let consumer = std::thread::spawn(move || {
        let mut rng = Rng(5);
        let mut expected = 0u64;
        loop {
            let want = 1 + rng.below(64);
            match rx.read_chunk(want) {
                Ok(chunk) => {
                    for i in 0..want {
                        assert_eq!(chunk.get(i), expected + i as u64);
                    }
                    let k = 1 + rng.below(want);
                    chunk.release(k);
                    expected += k as u64;
                }
                Err(ChunkError::TooFewSlots(avail)) => {
                    assert!(avail < want);
                    if avail == 0 && rx.is_abandoned() && rx.slots() == 0 {
                        break;
                    }
                    std::thread::yield_now();
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(expected, count, "lost elements");
        assert_eq!(rx.try_pop(), Err(PopError::Disconnected));
    });
    within(Duration::from_secs(300), move || {
        producer.join().unwrap();
        consumer.join().unwrap();
    });
}

//! The MPMC ring in one process: API, exactly-once delivery between threads, and the
//! repair of slots left unfinished by dead participants (simulated by writing a dead
//! process's claim into a named ring's segment).

use std::time::{Duration, Instant};

use shmlink::ring::{BuildError, ClaimError, Mpmc, PopError, PushError};
use shmlink::segment::Segment;
use shmlink::sync::WaitMode;
use shmlink::sync::atomic::{AtomicU64, Ordering};

use crate::support::segfile::{file_offsets_of, peek_u64, poke_u64};

fn name(tag: &str) -> String {
    format!("t-mpmc-{}-{tag}", std::process::id())
}

#[test]
fn capacity_must_be_a_power_of_two_of_at_least_two() {
    for bad in [0usize, 1, 3, 6] {
        assert!(matches!(
            Mpmc::<u64, _>::new(bad, WaitMode::Spin),
            Err(BuildError::InvalidCapacity(_))
        ));
    }
    assert_eq!(
        Mpmc::<u64, _>::new(2, WaitMode::Spin).unwrap().capacity(),
        2
    );
}

#[test]
fn fifo_full_empty_and_handles() {
    let ring = Mpmc::<u64, _>::new(4, WaitMode::Blocking).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    assert_eq!(rx.try_pop(), Err(PopError::Empty));
    for lap in 0..10u64 {
        for i in 0..4 {
            tx.try_push(lap * 4 + i).unwrap();
        }
        assert_eq!(tx.try_push(99), Err(PushError::Full(99)));
        assert_eq!(ring.len(), 4);
        for i in 0..4 {
            assert_eq!(rx.try_pop(), Ok(lap * 4 + i));
        }
        assert!(ring.is_empty());
    }
    // Participants: many handles per process, up to the table size.
    let mut more = Vec::new();
    loop {
        match ring.producer() {
            Ok(p) => more.push(p),
            Err(ClaimError::NoFreeSlot { max }) => {
                assert_eq!(more.len() + 2, max);
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    more.pop();
    assert!(ring.consumer().is_ok(), "a dropped handle frees its slot");
}

#[test]
fn blocking_waits_time_out_and_see_disconnects() {
    let ring = Mpmc::<u64, _>::new(2, WaitMode::Blocking).unwrap();
    let mut rx = ring.consumer().unwrap();
    let t = Instant::now();
    assert_eq!(
        rx.pop_timeout(Duration::from_millis(30)),
        Err(PopError::Timeout)
    );
    assert!(t.elapsed() >= Duration::from_millis(30));
    let mut tx = ring.producer().unwrap();
    tx.try_push(5).unwrap();
    drop(tx);
    assert_eq!(rx.pop_timeout(Duration::from_secs(5)), Ok(5));
    assert_eq!(
        rx.pop_timeout(Duration::from_secs(5)),
        Err(PopError::Disconnected)
    );

    let mut tx = ring.producer().unwrap();
    drop(rx);
    tx.try_push(1).unwrap();
    tx.try_push(2).unwrap();
    assert_eq!(
        tx.push_timeout(3, Duration::from_secs(5)),
        Err(PushError::Disconnected(3))
    );
}

/// Producers and consumers on threads: every item exactly once, each producer's items
/// in order as seen by any one consumer.
fn stress(mode: WaitMode, producers: u64, consumers: usize, per_producer: u64) {
    let ring = Mpmc::<u64, _>::new(64, mode).unwrap();
    let total = producers * per_producer;
    let seen: Vec<AtomicU64> = (0..total.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
    std::thread::scope(|s| {
        for p in 0..producers {
            let mut tx = ring.producer().unwrap();
            s.spawn(move || {
                for i in 0..per_producer {
                    tx.push_timeout(p * per_producer + i, Duration::from_secs(30))
                        .expect("push");
                }
            });
        }
        for _ in 0..consumers {
            let mut rx = ring.consumer().unwrap();
            let seen = &seen;
            s.spawn(move || {
                let mut last = vec![None::<u64>; producers as usize];
                loop {
                    match rx.pop_timeout(Duration::from_secs(30)) {
                        Ok(v) => {
                            let bit = 1u64 << (v % 64);
                            let before = seen[(v / 64) as usize].fetch_or(bit, Ordering::Relaxed);
                            assert_eq!(before & bit, 0, "{v} delivered twice");
                            let p = (v / per_producer) as usize;
                            assert!(last[p] < Some(v), "producer {p} reordered");
                            last[p] = Some(v);
                        }
                        Err(PopError::Disconnected) => break,
                        Err(e) => panic!("pop: {e}"),
                    }
                }
            });
        }
    });
    let delivered: u64 = seen
        .iter()
        .map(|w| u64::from(w.load(Ordering::Relaxed).count_ones()))
        .sum();
    assert_eq!(delivered, total, "{mode:?}: every item delivered");
}

#[test]
fn threads_deliver_every_item_exactly_once() {
    let n = if cfg!(miri) {
        200
    } else if cfg!(debug_assertions) {
        20_000
    } else {
        400_000
    };
    stress(WaitMode::Blocking, 2, 2, n);
    stress(WaitMode::Spin, 2, 2, n);
    stress(WaitMode::Blocking, 3, 1, n / 2);
}

// ---- repairs, with a dead participant's claim written into the segment ----

/// Layout of an MPMC ring segment of u64 (see src/ring/mpmc.rs): segment header 128 B,
/// then MpmcHeader lines: config, tail, head, not_empty, not_full, repairs, then
/// 32 participants of 128 B (token, role, pending_push, pending_pop); then the area of
/// 16-byte slots (stamp, value).
const PAYLOAD: u64 = 128;
const TAIL: u64 = PAYLOAD + 128;
const HEAD: u64 = PAYLOAD + 256;
const PARTICIPANTS: u64 = PAYLOAD + 768;
const AREA: u64 = PAYLOAD + 128 * (6 + 32);

/// A token whose process does not exist.
const DEAD: u64 = 0x0000_0001_7fff_fff0;

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn a_push_claimed_by_a_dead_producer_becomes_a_hole() {
    let n = name("hole");
    let ring = Mpmc::<u64, _>::create(Segment::builder(&n).unlink_on_drop(true), 4, WaitMode::Spin)
        .unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    tx.try_push(10).unwrap(); // position 0
    // A producer (participant 31) claimed position 1 and died before publishing.
    let rec = PARTICIPANTS + 31 * 128;
    poke_u64(&n, rec, DEAD);
    poke_u64(&n, rec + 8, 1);
    poke_u64(&n, rec + 16, 2); // pending_push = position 1 + 1
    poke_u64(&n, TAIL, 2);
    assert_eq!(peek_u64(&n, AREA + 16), 1, "slot 1 still free-stamped");
    tx.try_push(12).unwrap(); // position 2
    assert_eq!(rx.try_pop(), Ok(10));
    // Position 1 is stuck; the consumer finds the dead claimant, makes a hole, skips it.
    assert_eq!(rx.try_pop(), Ok(12));
    assert_eq!(ring.repairs().holes, 1);
    assert_eq!(ring.repairs().lost, 0);
    assert_eq!(peek_u64(&n, rec + 16), 0, "the dead claim is cleared");
    // The ring keeps working across laps.
    for i in 0..20 {
        tx.try_push(i).unwrap();
        assert_eq!(rx.try_pop(), Ok(i));
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn a_live_claimant_is_never_repaired() {
    let n = name("live");
    let ring = Mpmc::<u64, _>::create(Segment::builder(&n).unlink_on_drop(true), 4, WaitMode::Spin)
        .unwrap();
    let mut rx = ring.consumer().unwrap();
    // Position 0 claimed by a *live* participant (this process) that has not published.
    let me = {
        // Our own token is in the consumer's record (participant 0).
        peek_u64(&n, PARTICIPANTS)
    };
    let rec = PARTICIPANTS + 30 * 128;
    poke_u64(&n, rec, me);
    poke_u64(&n, rec + 8, 1);
    poke_u64(&n, rec + 16, 1);
    poke_u64(&n, TAIL, 1);
    assert_eq!(
        rx.try_pop(),
        Err(PopError::Empty),
        "waits for the live claimant"
    );
    assert_eq!(ring.repairs().holes, 0);
    assert_eq!(peek_u64(&n, AREA), 0, "slot untouched");
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn a_pop_claimed_by_a_dead_consumer_frees_the_slot_and_counts_the_loss() {
    let n = name("lost");
    let ring = Mpmc::<u64, _>::create(Segment::builder(&n).unlink_on_drop(true), 2, WaitMode::Spin)
        .unwrap();
    let mut tx = ring.producer().unwrap();
    tx.try_push(1).unwrap();
    tx.try_push(2).unwrap();
    // A consumer (participant 31) claimed position 0 (head moved) and died mid-read.
    let rec = PARTICIPANTS + 31 * 128;
    poke_u64(&n, rec, DEAD);
    poke_u64(&n, rec + 8, 2);
    poke_u64(&n, rec + 24, 1); // pending_pop = position 0 + 1
    poke_u64(&n, HEAD, 1);
    // The ring looks full; the push finds the dead consumer's slot and frees it.
    tx.try_push(3).unwrap();
    assert_eq!(ring.repairs().lost, 1);
    let mut rx = ring.consumer().unwrap();
    assert_eq!(rx.try_pop(), Ok(2));
    assert_eq!(rx.try_pop(), Ok(3));
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn named_ring_checks_the_element_type() {
    let n = name("type");
    let _ring =
        Mpmc::<u64, _>::create(Segment::builder(&n).unlink_on_drop(true), 8, WaitMode::Spin)
            .unwrap();
    assert!(matches!(
        Mpmc::<u32, _>::open(Segment::builder(&n)),
        Err(BuildError::Open {
            error: shmlink::segment::OpenError::TypeMismatch { .. },
            ..
        })
    ));
    let other = Mpmc::<u64, _>::open(Segment::builder(&n)).unwrap();
    assert_eq!(other.capacity(), 8);
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn positions_near_the_top_of_u64_never_panic() {
    let n = name("huge");
    let ring = Mpmc::<u64, _>::create(Segment::builder(&n).unlink_on_drop(true), 4, WaitMode::Spin)
        .unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    // A hostile peer sets both positions to the last u64: arithmetic must wrap, and
    // every call must come back with a value or a typed error.
    poke_u64(&n, TAIL, u64::MAX);
    poke_u64(&n, HEAD, u64::MAX);
    for i in 0..8 {
        let _ = tx.try_push(i);
        let _ = rx.try_pop();
    }
    assert!(ring.len() <= 4);
}

/// Defect 10 of issue 11: with a slot stamp overwritten by garbage, a 10 ms push or
/// pop used to return `Full`/`Empty`/`Timeout` after 250-270 ms (each poll spun 65,536
/// times between clock reads). Now such a stamp is reported as `Corrupted`, and a
/// timed call on a ring that is merely full or empty keeps its deadline.
#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn a_garbage_stamp_is_corrupted_and_deadlines_hold() {
    let n = name("garbage");
    let ring = Mpmc::<u64, _>::create(Segment::builder(&n).unlink_on_drop(true), 4, WaitMode::Spin)
        .unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    tx.try_push(1).unwrap(); // position 0
    // The slot of the next push (position 1): a stamp no state of the ring has.
    poke_u64(&n, AREA + 16, 0x5eed_0000_dead_beef);
    let t0 = Instant::now();
    let err = tx.push_timeout(2, Duration::from_millis(10)).unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(err, PushError::Corrupted(2, _)), "{err:?}");
    assert!(took < Duration::from_millis(100), "push took {took:?}");
    assert!(matches!(tx.try_push(2), Err(PushError::Corrupted(2, _))));
    // The value at position 0 still pops; position 1 is corrupted for the consumer too.
    assert_eq!(rx.try_pop(), Ok(1));
    let t0 = Instant::now();
    let err = rx.pop_timeout(Duration::from_millis(10)).unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(err, PopError::Corrupted(_)), "{err:?}");
    assert!(took < Duration::from_millis(100), "pop took {took:?}");
}

/// A timed pop on an empty ring and a timed push on a full one return within a few
/// milliseconds of their deadline (bounds, not speed: the machine may be loaded).
#[test]
#[cfg_attr(miri, ignore = "real-time deadlines; slow under Miri")]
fn timed_calls_keep_their_deadline() {
    let ring = Mpmc::<u64, _>::new(2, WaitMode::Spin).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    for (what, d) in [("pop", 10u64), ("pop", 1)] {
        let t0 = Instant::now();
        assert_eq!(
            rx.pop_timeout(Duration::from_millis(d)),
            Err(PopError::Timeout)
        );
        let took = t0.elapsed();
        assert!(
            took < Duration::from_millis(d + 50),
            "{what} {d} ms took {took:?}"
        );
    }
    tx.try_push(1).unwrap();
    tx.try_push(2).unwrap();
    let t0 = Instant::now();
    assert_eq!(
        tx.push_timeout(3, Duration::from_millis(10)),
        Err(PushError::Timeout(3))
    );
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(60), "push took {took:?}");
}

// ---------------------------------------------------------------------------------
// Element alignment
// ---------------------------------------------------------------------------------

/// A cache line as one element, aligned to 64.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(64))]
struct Line([u64; 8]);

// SAFETY: repr(C) array of u64: 64 bytes, aligned to 64, no padding, no pointers.
unsafe impl shmlink::region::Pod for Line {
    const FINGERPRINT: u64 = shmlink::region::layout_fingerprint("tests::mpmc::Line", 1, 64, 64);
}

/// Several laps of pushes and pops through a ring of `cap`.
fn laps<T, R>(ring: &Mpmc<T, R>, make: impl Fn(u64) -> T)
where
    T: shmlink::region::Pod + PartialEq + std::fmt::Debug,
    R: shmlink::region::Region<Shared = shmlink::ring::MpmcHeader>,
{
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    let cap = ring.capacity() as u64;
    for lap in 0..3 {
        for i in 0..cap - 1 {
            tx.try_push(make(lap * cap + i)).unwrap();
        }
        for i in 0..cap - 1 {
            assert_eq!(rx.try_pop(), Ok(make(lap * cap + i)));
        }
    }
}

/// Slots of over-aligned elements hold the value at an offset aligned for it (a
/// stamp word, then the value at `max(8, align_of::<T>())`).
#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn over_aligned_elements_lie_aligned_in_their_slots() {
    let wide = |i: u64| (u128::from(i) << 64) | u128::from(!i);
    let line = |i: u64| {
        Line(core::array::from_fn(|k| {
            i.rotate_left(8 * k as u32) ^ k as u64
        }))
    };
    laps(&Mpmc::<u128, _>::new(4, WaitMode::Spin).unwrap(), wide);
    laps(&Mpmc::<Line, _>::new(4, WaitMode::Spin).unwrap(), line);

    let n = name("align-u128");
    let ring =
        Mpmc::<u128, _>::create(Segment::builder(&n).unlink_on_drop(true), 4, WaitMode::Spin)
            .unwrap();
    laps(&ring, wide);
    // One distinctive value in every slot.
    let vs: Vec<u128> = (0..4)
        .map(|k| 0x0123_4567_89ab_cdef_fedc_ba98_7654_3200u128 + k)
        .collect();
    let mut tx = ring.producer().unwrap();
    for v in &vs {
        tx.try_push(*v).unwrap();
        let at = file_offsets_of(&n, &v.to_ne_bytes());
        assert_eq!(at.len(), 1, "{at:?}");
        assert_eq!(at[0] % 16, 0, "value at file offset {}", at[0]);
    }
    let opened = Mpmc::<u128, _>::open(Segment::builder(&n)).unwrap();
    let mut rx = opened.consumer().unwrap();
    for v in &vs {
        assert_eq!(rx.try_pop(), Ok(*v));
    }

    let n = name("align-line");
    let ring =
        Mpmc::<Line, _>::create(Segment::builder(&n).unlink_on_drop(true), 4, WaitMode::Spin)
            .unwrap();
    laps(&ring, line);
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

/// A consumer that polls with timeouts shorter than the liveness period (10 ms) used
/// never to learn that the only producer was killed: each wait ended before its first
/// liveness check. A wait now looks once before it reports a timeout.
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn short_polls_learn_that_the_producer_died() {
    let n = name("short-polls");
    let ring = Mpmc::<u64, _>::create(Segment::builder(&n).unlink_on_drop(true), 4, WaitMode::Spin)
        .unwrap();
    let mut rx = ring.consumer().unwrap();
    // SAFETY: the child only opens the ring, registers and leaves with _exit (a death:
    // no destructor runs, the producer record stays registered).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = match Mpmc::<u64, _>::open(Segment::builder(&n)) {
            Ok(r) => match r.producer() {
                Ok(p) => {
                    std::mem::forget(p);
                    0
                }
                Err(_) => 2,
            },
            Err(_) => 1,
        };
        // SAFETY: leave the forked child at once.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert_eq!(libc::WEXITSTATUS(status), 0, "child failed to register");
    let err = rx.pop_timeout(Duration::from_millis(2)).unwrap_err();
    assert_eq!(err, PopError::Disconnected);
}

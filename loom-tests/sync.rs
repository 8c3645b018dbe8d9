//! loom models of the process-shared primitives in `shmlink::sync` (heap-backed: the
//! Bakery slots and the seqlock words are loom atomics, the Bakery mutex's value is
//! tracked through the region's shadow cells, so a missing fence or Release/Acquire
//! pair shows up as a data race or a failed assertion, and a lost wake-up as a loom
//! deadlock through the futex mock).
//!
//! Run with `RUSTFLAGS="--cfg shmlink_loom" LOOM_MAX_PREEMPTIONS=3 cargo test
//! --release --test loom_sync --target-dir target/loom`.
#![cfg(shmlink_loom)]

use loom::sync::Arc;
use loom::thread;
use shmlink::lock::{BakeryMutex, LockError, Semaphore, SeqLock};
use shmlink::sync::atomic::{AtomicUsize, Ordering};
use shmlink::sync::cell::UnsafeCell;

/// A loom builder whose preemption bound is `LOOM_MAX_PREEMPTIONS`, capped at `cap`
/// (and `cap` when the variable is unset).
fn bounded(cap: usize) -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(builder.preemption_bound.map_or(cap, |b| b.min(cap)));
    builder
}

/// One critical section of a Bakery participant: nobody else may be inside, and the
/// protected counter goes up by one (a read-modify-write of the shared value, which
/// loom's race detector checks against the previous holder's write).
fn bakery_critical_section(mutex: &mut BakeryMutex<u64>, inside: &AtomicUsize) {
    let mut guard = mutex.lock().unwrap_or_else(|e| panic!("bakery lock: {e}"));
    let others = inside.fetch_add(1, Ordering::Relaxed);
    assert_eq!(others, 0, "two participants inside the critical section");
    guard.update(|n| *n += 1);
    inside.fetch_sub(1, Ordering::Relaxed);
}

/// Two Bakery participants lock twice each: mutual exclusion, an exact count, and no
/// lost wake-up (a waiter sleeps on the modelled futex until `unlock` wakes it).
/// Small enough to explore with the full preemption bound. Without either doorway
/// fence (F1, F2) it fails: F1 as a race on the value, F2 first as a lost wake-up
/// (F2 is also the fence of the doorway's notify).
#[test]
fn bakery_two_participants_exclude_each_other() {
    loom::model(|| {
        let mut first = BakeryMutex::new(2, 0u64).unwrap();
        let inside = Arc::new(AtomicUsize::new(0));
        let mut second = first.join().unwrap();
        let other = {
            let inside = inside.clone();
            thread::spawn(move || {
                for _ in 0..2 {
                    bakery_critical_section(&mut second, &inside);
                }
                // Stay registered: leaving wakes every sleeper, which would hide a
                // lost wake-up of `unlock`.
                std::mem::forget(second);
            })
        };
        for _ in 0..2 {
            bakery_critical_section(&mut first, &inside);
        }
        other.join().unwrap();
        let total = first
            .lock()
            .unwrap_or_else(|e| panic!("bakery lock: {e}"))
            .get();
        assert_eq!(total, 4, "an increment was lost");
    });
}

/// Three Bakery participants (the creator and two from `join`): the creator locks
/// twice, the others once: mutual exclusion, an exact count, and no lost wake-up
/// with two waiters on the one futex word.
///
/// Three threads through the doorway, the wait loop and the futex handshake is a
/// large state space, so this model is bounded to two preemptions whatever
/// `LOOM_MAX_PREEMPTIONS` says: about 15 s on a 2-core machine, where three
/// preemptions took about 5 minutes even with one lock per participant.
#[test]
fn bakery_three_participants_exclude_each_other() {
    bounded(2).check(|| {
        let mut first = BakeryMutex::new(3, 0u64).unwrap();
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let mut participant = first.join().unwrap();
                let inside = inside.clone();
                thread::spawn(move || {
                    bakery_critical_section(&mut participant, &inside);
                    // Stay registered (see the two-participant model).
                    std::mem::forget(participant);
                })
            })
            .collect();
        for _ in 0..2 {
            bakery_critical_section(&mut first, &inside);
        }
        for t in threads {
            t.join().unwrap();
        }
        let total = first
            .lock()
            .unwrap_or_else(|e| panic!("bakery lock: {e}"))
            .get();
        assert_eq!(total, 4, "an increment was lost");
    });
}

/// Two Bakery participants that only `try_lock` (retrying after a yield) lock twice
/// each: mutual exclusion without the futex, so the doorway fences are checked on
/// their own (a missing F2 otherwise shows first as a lost wake-up), and the
/// `try_lock` path (which backs out of the bakery when someone is ahead) with them.
#[test]
fn bakery_try_lock_excludes() {
    loom::model(|| {
        let mut first = BakeryMutex::new(2, 0u64).unwrap();
        let inside = Arc::new(AtomicUsize::new(0));
        let mut second = first.join().unwrap();
        let other = {
            let inside = inside.clone();
            thread::spawn(move || {
                for _ in 0..2 {
                    bakery_try_critical_section(&mut second, &inside);
                }
                // Stay registered, as in the other Bakery models.
                std::mem::forget(second);
            })
        };
        for _ in 0..2 {
            bakery_try_critical_section(&mut first, &inside);
        }
        other.join().unwrap();
        let total = first
            .lock()
            .unwrap_or_else(|e| panic!("bakery lock: {e}"))
            .get();
        assert_eq!(total, 4, "an increment was lost");
    });
}

/// [`bakery_critical_section`] through `try_lock`, yielding between tries.
fn bakery_try_critical_section(mutex: &mut BakeryMutex<u64>, inside: &AtomicUsize) {
    let mut guard = loop {
        match mutex.try_lock() {
            Ok(guard) => break guard,
            Err(LockError::WouldBlock) => thread::yield_now(),
            Err(e) => panic!("bakery try_lock: {e}"),
        }
    };
    let others = inside.fetch_add(1, Ordering::Relaxed);
    assert_eq!(others, 0, "two participants inside the critical section");
    guard.update(|n| *n += 1);
    inside.fetch_sub(1, Ordering::Relaxed);
}

/// Two sleepers on an empty semaphore, woken by two single releases: each acquire
/// completes (a lost wake-up is a loom deadlock, since the futex mock has no
/// timeout), and no permit is handed out before it was released.
#[test]
fn semaphore_releases_wake_every_sleeper() {
    loom::model(|| {
        let sem = Semaphore::new(0, 2).unwrap();
        // Permits released (bumped before each release) minus permits taken (dropped
        // after each acquire): below zero means a permit was handed out that no
        // release made. All RMWs of one word, Relaxed: the check adds no
        // synchronization, and it checks the counting only (the orderings are
        // checked by the cell in `semaphore_one_permit_excludes`).
        let balance = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (sem, balance) = (sem.clone(), balance.clone());
                thread::spawn(move || {
                    sem.acquire().unwrap();
                    let before = balance.fetch_sub(1, Ordering::Relaxed);
                    assert_ne!(before, 0, "a permit was taken before it was released");
                })
            })
            .collect();
        for _ in 0..2 {
            balance.fetch_add(1, Ordering::Relaxed);
            sem.release(1).unwrap();
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!((sem.value(), sem.waiters()), (0, 0));
        assert_eq!(balance.load(Ordering::Relaxed), 0);
    });
}

/// A counter that only the holder of a one-permit semaphore touches.
struct Guarded {
    /// The counter; a non-atomic cell, so loom reports any unordered access.
    count: UnsafeCell<u64>,
}

// SAFETY: `count` is only accessed while holding the semaphore's single permit, and
// that exclusion (with its happens-before edges) is exactly what the model checks;
// loom's cell panics on any access it does not order.
unsafe impl Sync for Guarded {}

/// A one-permit semaphore used as a lock by two threads, twice each: never two
/// holders, every critical section ordered after the previous one (loom's cell
/// checks the Release/Acquire pairing), and the sleeper always woken.
#[test]
fn semaphore_one_permit_excludes() {
    loom::model(|| {
        let sem = Semaphore::new(1, 1).unwrap();
        let shared = Arc::new(Guarded {
            count: UnsafeCell::new(0),
        });
        let inside = Arc::new(AtomicUsize::new(0));
        let body = {
            let (sem, shared, inside) = (sem.clone(), shared.clone(), inside.clone());
            move || {
                for _ in 0..2 {
                    sem.acquire().unwrap();
                    let others = inside.fetch_add(1, Ordering::Relaxed);
                    assert_eq!(others, 0, "two holders of one permit");
                    // SAFETY: we hold the only permit (checked just above and by
                    // loom's access tracking).
                    shared.count.with_mut(|n| unsafe { *n += 1 });
                    inside.fetch_sub(1, Ordering::Relaxed);
                    sem.release(1).unwrap();
                }
            }
        };
        let other = thread::spawn(body.clone());
        body();
        other.join().unwrap();
        // SAFETY: both threads are done (joined).
        let total = shared.count.with(|n| unsafe { *n });
        assert_eq!(total, 4, "an increment was lost");
        assert_eq!((sem.value(), sem.waiters()), (1, 0));
    });
}

/// One writer publishes `[1, 1]` then `[2, 2]`; one reader tries twice with
/// `try_read` (bounded, unlike `read`): an accepted snapshot is always one complete
/// write (never a mix), and a reader's snapshots never go back in time.
///
/// One reader: readers write nothing shared in `try_read`, so a second one adds
/// interleavings but no new interaction, and two readers of two tries each ran for
/// over 10 minutes.
#[test]
fn seqlock_readers_never_accept_a_torn_value() {
    loom::model(|| {
        let lock = SeqLock::new([0u64; 2]);
        let mut writer = lock.writer().unwrap();
        let reader = {
            let lock = lock.clone();
            thread::spawn(move || {
                let mut last = 0;
                for _ in 0..2 {
                    if let Ok(v) = lock.try_read() {
                        assert_eq!(v[0], v[1], "torn read: {v:?}");
                        assert!(v[0] <= 2, "never written: {v:?}");
                        assert!(v[0] >= last, "went back from {last} to {}", v[0]);
                        last = v[0];
                    }
                }
            })
        };
        for k in 1..=2u64 {
            writer.write([k, k]);
        }
        reader.join().unwrap();
        assert_eq!(lock.try_read(), Ok([2, 2]));
    });
}

/// A Bakery participant waits behind the holder; a closer in the holder's thread
/// closes the lock: the waiter returns `Closed`, whether it was about to sleep, asleep
/// or not yet waiting. A close that leaves out the notify deadlocks here (the sleeper
/// is never woken), and so does a wait whose `gone` check ignores the flag.
#[test]
fn bakery_close_wakes_a_blocked_locker() {
    loom::model(|| {
        let mut holder = BakeryMutex::new(2, 0u64).unwrap();
        let mut waiter = holder.join().unwrap();
        let closer = holder.closer();
        let guard = holder.lock().unwrap();
        let t = thread::spawn(move || {
            let got = waiter.lock().map(drop).map_err(LockError::without_guard);
            assert!(matches!(got, Err(LockError::Closed)), "{got:?}");
        });
        closer.close();
        t.join().unwrap();
        drop(guard);
    });
}

/// A semaphore waiter with no permit coming is woken by `close` with `Closed`, asleep
/// or not: a close that only sets the flag (no `wake_seq` bump and wake) deadlocks.
#[test]
fn semaphore_close_wakes_a_sleeper() {
    loom::model(|| {
        let sem = Semaphore::new(0, 1).unwrap();
        let t = {
            let sem = sem.clone();
            thread::spawn(move || {
                assert_eq!(sem.acquire(), Err(shmlink::lock::AcquireError::Closed));
            })
        };
        sem.close();
        t.join().unwrap();
    });
}

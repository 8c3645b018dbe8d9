//! loom models of the Bakery lock's recovery paths (`shmlink::sync::BakeryLock`): a
//! participant dies at a chosen step of its protocol (`sync::crash` points: its token
//! is marked dead and it unwinds, leaving its slot as a SIGKILL would), while
//! participants of other processes join, lock, leave and reclaim.
//!
//! Every model checks mutual exclusion with an atomic counter of the threads inside
//! the critical section (not the protected value: a dead process's writes reach the
//! next holder through the kernel, which loom does not see), and that a death while
//! holding is reported with `OwnerDied` exactly once.
//!
//! The locks are in [`WaitMode::Spin`]: a dead participant wakes nobody, and what
//! rescues a sleeping waiter in real life (a 10 ms sleep slice) is a timeout, which
//! the futex model ignores; spinning waiters check for dead slots at every poll.
//!
//! Run with `RUSTFLAGS="--cfg shmlink_loom" LOOM_MAX_PREEMPTIONS=3 cargo test
//! --release --test loom_bakery_recovery --target-dir target/loom`.
#![cfg(shmlink_loom)]

use loom::sync::Arc;
use loom::thread;
use shmlink::sync::atomic::{AtomicUsize, Ordering};
use shmlink::sync::crash::loom::{die_at, run};
use shmlink::sync::process::loom::{kill, set_current};
use shmlink::sync::{
    BakeryConfigError, BakeryControl, BakeryLock, HeapRegion, LockError, WaitMode,
};

type Lock = BakeryLock<HeapRegion<BakeryControl>>;
type SharedRegion = std::sync::Arc<HeapRegion<BakeryControl>>;

/// A loom builder whose preemption bound is `LOOM_MAX_PREEMPTIONS`, capped at `cap`
/// (and `cap` when the variable is unset).
fn bounded(cap: usize) -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(builder.preemption_bound.map_or(cap, |b| b.min(cap)));
    builder
}

/// How a lock call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Got {
    Clean,
    OwnerDied,
}

/// One critical section: locks, checks that nobody else is inside, unlocks; returns
/// whether the lock reported a dead holder.
fn critical_section(lock: &mut Lock, inside: &AtomicUsize) -> Got {
    let (guard, got) = match lock.lock() {
        Ok(g) => (g, Got::Clean),
        Err(LockError::OwnerDied(g)) => (g, Got::OwnerDied),
        Err(e) => panic!("bakery lock: {e}"),
    };
    let others = inside.fetch_add(1, Ordering::Relaxed);
    assert_eq!(others, 0, "two holders of the lock");
    inside.fetch_sub(1, Ordering::Relaxed);
    drop(guard);
    got
}

/// A lock with `participants` slots created by process 2 (the calling thread); the
/// creator's participant and the region, for others to open.
fn create(participants: usize) -> (Lock, SharedRegion) {
    set_current(2);
    let lock = BakeryLock::with_mode(participants, WaitMode::Spin).unwrap();
    let region = lock.region_arc();
    (lock, region)
}

/// Registers a participant of process `token`, which then dies without a trace (it
/// joined and never locked); the calling thread goes back to process 2.
fn dead_participant(region: &SharedRegion, token: u64) {
    set_current(token);
    std::mem::forget(BakeryLock::from_region(region.clone(), 0, 0).unwrap());
    kill(token);
    set_current(2);
}

/// Defect 2: two threads of one process (one token) reclaim the same dead slot. Both
/// join a full lock whose second slot belongs to a dead process; exactly one gets the
/// freed slot, locks and keeps the lock; afterwards the creator (another process)
/// must find it held.
///
/// Catches a reclaimer check that lets its own process through (`current != me`):
/// the second thread passes the reclaimer word while the first holds it, and after
/// the first has freed the slot, claimed it and locked, it clears the new holder's
/// ticket and active bit: loom finds two holders (the creator's `try_lock` gets in),
/// and a holder told of a death that did not happen.
#[test]
fn two_reclaimers_in_one_process_leave_the_new_participant_alone() {
    bounded(3).check(|| {
        let (mut first, region) = create(2);
        dead_participant(&region, 4);
        let joiner = || {
            let region = region.clone();
            thread::spawn(move || {
                set_current(3);
                match BakeryLock::from_region(region, 0, 0) {
                    Ok(mut lock) => {
                        match lock.lock() {
                            Ok(guard) => std::mem::forget(guard),
                            Err(LockError::OwnerDied(_)) => panic!("nobody died holding"),
                            Err(e) => panic!("bakery lock: {e}"),
                        }
                        std::mem::forget(lock);
                        true
                    }
                    Err(BakeryConfigError::Full { .. }) => false,
                    Err(e) => panic!("join: {e}"),
                }
            })
        };
        let (a, b) = (joiner(), joiner());
        let joined = u32::from(a.join().unwrap()) + u32::from(b.join().unwrap());
        assert_eq!(joined, 1, "one slot was freed, so exactly one join gets it");
        assert!(
            matches!(first.try_lock(), Err(LockError::WouldBlock)),
            "two holders: the joiner's lock was cleared"
        );
    });
}

/// Process 4 joins and dies holding the lock (after its holder record), in a setup
/// thread joined before the model's race starts.
fn dead_holder(region: &SharedRegion, step: u32) {
    let region = region.clone();
    thread::spawn(move || {
        set_current(4);
        let mut lock = BakeryLock::from_region(region, 0, 0).unwrap();
        die_at("bakery.lock", step);
        assert!(run(|| drop(lock.lock())), "never reached its crash point");
    })
    .join()
    .unwrap();
}

/// A join racing a reclaim: the second slot's owner died holding the lock; the
/// creator locks (and reclaims it, while waiting) as another process joins. The join
/// gets the freed slot and locks too; exactly one of the two is told of the death.
///
/// Catches a join that gives up while another process is reclaiming the only dead
/// slot (it reported `Full` when its own reclaim attempt found the reclaimer word
/// taken), and one that decides `Full` from a stale scan (the slot was freed between
/// its look for a free slot and its look for a dead one): loom finds the `Full`.
#[test]
fn a_join_racing_a_reclaim_waits_for_the_slot() {
    bounded(3).check(|| {
        let (mut first, region) = create(2);
        dead_holder(&region, 6);
        let inside = Arc::new(AtomicUsize::new(0));
        let joiner = {
            let (region, inside) = (region.clone(), inside.clone());
            thread::spawn(move || {
                set_current(5);
                let mut lock = BakeryLock::from_region(region, 0, 0)
                    .unwrap_or_else(|e| panic!("join while a slot is being freed: {e}"));
                let got = critical_section(&mut lock, &inside);
                std::mem::forget(lock);
                got
            })
        };
        let got = critical_section(&mut first, &inside);
        let told = [got, joiner.join().unwrap()]
            .iter()
            .filter(|&&g| g == Got::OwnerDied)
            .count();
        assert_eq!(told, 1, "the death is reported exactly once");
    });
}

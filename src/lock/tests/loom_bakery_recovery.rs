//! loom models of the Bakery lock's recovery paths (`crate::lock::BakeryLock`): a
//! participant dies at a chosen step of its protocol (`process::crash` points: its token
//! is marked dead and it unwinds, leaving its slot as a SIGKILL would), while
//! participants of other processes join, lock, leave and reclaim.
//!
//! Every model checks mutual exclusion with an atomic counter of the threads inside
//! the critical section (cheaper to model than a protected value), and that a death
//! while holding is reported with `OwnerDied` exactly once, to the first holder after
//! it. A liveness check that finds a token dead synchronizes with the death, as the
//! kernel's does (`process::loom::kill`).
//!
//! At most two live threads race at a time: with three, loom explores schedules in
//! which two waiters take turns yielding while the thread they wait for never runs,
//! and no bound on branches ends them.
//!
//! The locks are in [`WaitMode::Spin`]: a dead participant wakes nobody, and what
//! rescues a sleeping waiter in real life (a 10 ms sleep slice) is a timeout, which
//! the futex model ignores; spinning waiters check for dead slots at every poll.
//!
//! Run with `RUSTFLAGS="--cfg shmlink_loom" LOOM_MAX_PREEMPTIONS=3 cargo test
//! --release --lib loom_bakery_recovery --target-dir target/loom`.

use crate::lock::{BakeryConfigError, BakeryControl, BakeryLock, LockError};
use crate::process::crash::loom::{die_at, run};
use crate::process::loom::{kill, set_current};
use crate::region::HeapRegion;
use crate::sync::WaitMode;
use crate::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

type Lock = BakeryLock<HeapRegion<BakeryControl>>;
type SharedRegion = std::sync::Arc<HeapRegion<BakeryControl>>;

/// A loom builder whose preemption bound is `LOOM_MAX_PREEMPTIONS`, capped at `cap`
/// (and `cap` when the variable is unset).
fn bounded(cap: usize) -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(builder.preemption_bound.map_or(cap, |b| b.min(cap)));
    builder.max_branches = 20_000;
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
    enter(lock, inside, None).0
}

/// [`critical_section`], also counting the entries in `entries` (if given): returns
/// how many got in before (ordered by the lock itself).
fn enter(lock: &mut Lock, inside: &AtomicUsize, entries: Option<&AtomicUsize>) -> (Got, usize) {
    let (guard, got) = match lock.lock() {
        Ok(g) => (g, Got::Clean),
        Err(LockError::OwnerDied(g)) => (g, Got::OwnerDied),
        Err(e) => panic!("bakery lock: {e}"),
    };
    let others = inside.fetch_add(1, Ordering::Relaxed);
    assert_eq!(others, 0, "two holders of the lock");
    let before = entries.map_or(0, |e| e.fetch_add(1, Ordering::Relaxed));
    inside.fetch_sub(1, Ordering::Relaxed);
    drop(guard);
    (got, before)
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

/// Opens a participant of process `token` (as `open` in that process would); the
/// calling thread goes back to process 2.
fn participant(region: &SharedRegion, token: u64) -> Lock {
    set_current(token);
    let lock = BakeryLock::from_region(region.clone(), 0, 0).unwrap();
    set_current(2);
    lock
}

/// Runs `body` on a new model thread as process `token`.
fn spawn_as<T: 'static>(token: u64, body: impl FnOnce() -> T + 'static) -> thread::JoinHandle<T> {
    thread::spawn(move || {
        set_current(token);
        body()
    })
}

/// The crash point a model may plan inside its own critical section (after it left
/// the entry counter, before its guard unlocks).
const CRITICAL_SECTION: &str = "model.critical_section";

/// Every step of a participant's life, in order, with whether a death right after it
/// must be reported to the next holder (`OwnerDied`): it held the lock by then, as
/// the holder record says.
const LIFE: &[(&str, u32, bool)] = &[
    ("bakery.join", 1, false),
    ("bakery.join", 2, false),
    ("bakery.join", 3, false),
    ("bakery.lock", 1, false), // in the doorway, `choosing` set
    ("bakery.lock", 2, false), // ticket stored, still choosing
    ("bakery.lock", 3, false), // out of the doorway, waiting in line
    ("bakery.lock", 4, false), // ahead of everyone, not recorded as holder
    ("bakery.lock", 5, true),  // recorded as holder
    ("bakery.lock", 6, true),  // holding, the owner-died flag consumed
    (CRITICAL_SECTION, 1, true),
    ("bakery.unlock", 1, false), // holder record cleared, ticket still set
    ("bakery.unlock", 2, false),
    ("bakery.leave", 1, false),
    ("bakery.leave", 2, false),
    ("bakery.leave", 3, false),
];

/// Process 4's life on a new model thread: it joins, locks once and leaves, and dies
/// right after `step` of `protocol`; the thread panics if it never got there.
fn live_and_die(
    region: SharedRegion,
    inside: Arc<AtomicUsize>,
    protocol: &'static str,
    step: u32,
) -> thread::JoinHandle<()> {
    spawn_as(4, move || {
        die_at(protocol, step);
        let died = run(|| {
            let mut lock = BakeryLock::from_region(region, 0, 0).unwrap();
            let guard = match lock.lock() {
                Ok(g) => g,
                Err(e) => panic!("nobody died before: {e}"),
            };
            let others = inside.fetch_add(1, Ordering::Relaxed);
            assert_eq!(others, 0, "two holders of the lock");
            inside.fetch_sub(1, Ordering::Relaxed);
            crate::process::crash::point(CRITICAL_SECTION, 1);
            drop(guard);
            drop(lock);
        });
        assert!(died, "never reached {protocol}:{step}");
    })
}

/// How many of `got` were told of a dead holder.
fn told(got: &[Got]) -> usize {
    got.iter().filter(|&&g| g == Got::OwnerDied).count()
}

/// A death racing a live participant: process 4 lives and dies after `step` of
/// `protocol` ([`live_and_die`]) while the creator (process 2) locks once; then the
/// creator locks again and a newcomer (process 5) takes a slot of the full lock (the
/// dead one's, free or reclaimed) and locks. Everyone gets in, one at a time; returns
/// how many were told `OwnerDied`.
fn one_locks_while_one_dies(protocol: &'static str, step: u32) -> usize {
    let (mut first, region) = create(2);
    let inside = Arc::new(AtomicUsize::new(0));
    let victim = live_and_die(region.clone(), inside.clone(), protocol, step);
    let got = critical_section(&mut first, &inside);
    victim.join().unwrap();
    let again = critical_section(&mut first, &inside);
    let mut newcomer = participant(&region, 5);
    let last = critical_section(&mut newcomer, &inside);
    told(&[got, again, last])
}

/// Two reclaimers racing each other and a live locker: process 4 died after `step` of
/// `protocol` (in a setup thread, joined first); the creator and process 3 then lock
/// once each, both of them free to reclaim the dead slot, and process 3 leaves. Returns how many were told
/// `OwnerDied`.
fn two_lock_after_one_died(protocol: &'static str, step: u32) -> usize {
    let (mut first, region) = create(3);
    let inside = Arc::new(AtomicUsize::new(0));
    live_and_die(region.clone(), inside.clone(), protocol, step)
        .join()
        .unwrap();
    // Process 3 joins after the dead one: its slot is last, so whichever of the two
    // has the later ticket still looks at the dead slot first and may reclaim it while
    // the other is in line.
    let mut second = participant(&region, 3);
    // The order in which the two got in: whoever is told must be the first holder
    // after the death (a later report leaves the first working on broken data).
    let entries = Arc::new(AtomicUsize::new(0));
    let other = {
        let (inside, entries) = (inside.clone(), entries.clone());
        spawn_as(3, move || {
            let got = enter(&mut second, &inside, Some(&entries));
            drop(second); // leaves while the creator may still reclaim or lock
            got
        })
    };
    let got = enter(&mut first, &inside, Some(&entries));
    let both = [got, other.join().unwrap()];
    for (g, order) in both {
        assert!(
            g == Got::Clean || order == 0,
            "the death was reported to the second holder, not the first"
        );
    }
    told(&both.map(|(g, _)| g))
}

/// Checks both death models at every step of `LIFE` from `protocol`.
fn deaths_in(protocol: &str) {
    for &(p, step, holding) in LIFE.iter().filter(|(p, _, _)| *p == protocol) {
        let want = usize::from(holding);
        bounded(3).check(move || {
            assert_eq!(
                one_locks_while_one_dies(p, step),
                want,
                "died at {p}:{step}"
            );
        });
        bounded(3).check(move || {
            assert_eq!(two_lock_after_one_died(p, step), want, "died at {p}:{step}");
        });
    }
}

/// A participant dies joining, after each step: its half-claimed slot is reclaimed
/// by the next join that needs it, and nobody waits for it.
///
/// Catches a claim that sets the `active` bit before the slot is cleared (others
/// wait on garbage from the slot's last life) and a join that reports `Full` with a
/// dead process's slot on the table.
#[test]
fn dies_joining() {
    deaths_in("bakery.join");
}

/// A participant dies in `lock` after each step, holding or not: the others get in,
/// one at a time, once a waiter has cleared its slot; exactly one is told
/// `OwnerDied` if it died recorded as holder, nobody otherwise.
///
/// Catches a reclaim that leaves `choosing` set or the ticket (the others wait on the
/// dead slot forever: loom reports the spin), a waiter that never looks at the
/// owner of a slot it waits on, raising the owner-died flag after the ticket is
/// cleared (the first holder after the death may read the flag before it is raised
/// and go on unaware: the report goes to a later holder).
#[test]
fn dies_locking() {
    deaths_in("bakery.lock");
}

/// A participant dies in its critical section, a guard in hand: the guard's drop
/// unlocks nothing (a killed process releases nothing), the others get in and
/// exactly one is told `OwnerDied`.
///
/// Catches a guard that unlocks while its thread dies (`crash::dying` unchecked):
/// nobody is told.
#[test]
fn dies_in_the_critical_section() {
    deaths_in(CRITICAL_SECTION);
}

/// A participant dies unlocking or leaving, after each step: the others get in and
/// nobody is told (the holder record was cleared first), and its slot is free again
/// or reclaimed for a newcomer.
#[test]
fn dies_unlocking_or_leaving() {
    deaths_in("bakery.unlock");
    deaths_in("bakery.leave");
}

/// Process 3 locks behind a dead holder (process 4) and dies after `step` of its
/// reclaim of the holder's slot, while the creator locks twice: the creator replaces
/// the dead reclaimer, finishes the reclaim, clears process 3's slot too and gets in;
/// the holder's death is reported exactly once (to process 3, if it got in first
/// without reclaiming, or to the creator).
///
/// Catches a reclaimer word that is never given up by a dead reclaimer (the creator
/// waits forever) and a reclaim that starts over without raising the flag again when
/// the first reclaimer died between clearing the holder record and the ticket.
#[test]
fn a_reclaimer_dies_mid_reclaim() {
    static REACHED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    for step in 1..=6 {
        bounded(3).check(move || {
            let (mut first, region) = create(3);
            live_and_die(
                region.clone(),
                Arc::new(AtomicUsize::new(0)),
                "bakery.lock",
                6,
            )
            .join()
            .unwrap();
            let mut reclaimer = participant(&region, 3);
            let inside = Arc::new(AtomicUsize::new(0));
            let other = {
                let inside = inside.clone();
                spawn_as(3, move || {
                    die_at("bakery.reclaim", step);
                    let mut got = None;
                    if run(|| got = Some(critical_section(&mut reclaimer, &inside))) {
                        REACHED.fetch_or(1 << step, std::sync::atomic::Ordering::Relaxed);
                    } else {
                        std::mem::forget(reclaimer);
                    }
                    got
                })
            };
            let got = critical_section(&mut first, &inside);
            let theirs = other.join().unwrap();
            let again = critical_section(&mut first, &inside);
            let all: Vec<Got> = [Some(got), theirs, Some(again)]
                .into_iter()
                .flatten()
                .collect();
            assert_eq!(told(&all), 1, "the death is reported exactly once");
        });
    }
    assert_eq!(
        REACHED.load(std::sync::atomic::Ordering::Relaxed),
        0b111_1110,
        "some reclaim step was never died at"
    );
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
/// gets the freed slot, locks too and leaves; exactly one of the two is told of the death.
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
                drop(lock); // leaves while the creator may still reclaim or lock
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

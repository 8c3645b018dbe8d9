//! loom models of the semaphore's owned permits and their recovery
//! (`crate::lock::Permit`): a holder dies after each step of taking or giving back
//! its permit (`process::crash` points), while a live process takes permits and a
//! repairer returns the dead holder's; a repairer dies in turn.
//!
//! The semaphore starts with 1 permit of at most 2: a permit given back twice shows as
//! a final value of 2, one lost as 0. Exclusion is checked with a counter of the
//! threads holding a permit.
//!
//! A sleeping waiter is rescued from a dead holder by its 10 ms sleep slice in real
//! life, a timeout the futex model ignores: the models call `reclaim_dead` (what the
//! slice does) from a live thread instead.
//!
//! Run with `RUSTFLAGS="--cfg shmlink_loom" LOOM_MAX_PREEMPTIONS=3 cargo test
//! --release --lib loom_semaphore_recovery --target-dir target/loom`.

use crate::lock::Semaphore;
use crate::process::crash::loom::{die_at, run};
use crate::process::loom::set_current;
use crate::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

/// A loom builder whose preemption bound is `LOOM_MAX_PREEMPTIONS`, capped at `cap`.
fn bounded(cap: usize) -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(builder.preemption_bound.map_or(cap, |b| b.min(cap)));
    builder.max_branches = 20_000;
    builder
}

/// Every step of a holder's transfers, in order.
const STEPS: &[(&str, u32)] = &[
    ("semaphore.permit", 1), // ledger says TAKING, the permit has not moved
    ("semaphore.permit", 2), // the permit moved and the tag is set
    ("semaphore.permit", 3), // the ledger counts it, the tag is still set
    ("semaphore.return", 1), // ledger says RETURNING, the permit has not moved
    ("semaphore.return", 2), // the permit is back and the tag is set
    ("semaphore.return", 3), // the ledger settled, the tag is still set
];

/// Takes a permit (waiting), checks nobody else holds one, gives it back.
fn hold_once(sem: &Semaphore, inside: &AtomicUsize) {
    let permit = sem.permit().unwrap();
    let others = inside.fetch_add(1, Ordering::Relaxed);
    assert_eq!(others, 0, "two holders of one permit");
    inside.fetch_sub(1, Ordering::Relaxed);
    drop(permit);
}

/// Another process's handle of the same semaphore (clones share a holder slot, as
/// the threads of one process do).
fn handle(sem: &Semaphore) -> Semaphore {
    Semaphore::from_region(sem.region_arc()).unwrap()
}

/// On a new model thread, process `token` takes a permit and gives it back, dying
/// right after `protocol:step`; the thread panics if it never got there.
fn hold_and_die(
    sem: &Semaphore,
    inside: &Arc<AtomicUsize>,
    token: u64,
    protocol: &'static str,
    step: u32,
) -> thread::JoinHandle<()> {
    let (sem, inside) = (handle(sem), inside.clone());
    thread::spawn(move || {
        set_current(token);
        die_at(protocol, step);
        let died = run(move || hold_once(&sem, &inside));
        assert!(died, "never reached {protocol}:{step}");
    })
}

/// After everyone is done: the one permit is back, exactly once, and no holder slot
/// is left in use but the main thread's own (process 2, holding nothing).
fn settled(sem: &Semaphore) {
    sem.reclaim_dead();
    assert_eq!(sem.value(), 1, "permits lost (0) or given back twice (2)");
    let slots: Vec<_> = sem
        .holder_slots()
        .into_iter()
        .filter(|&(_, held, token)| token != 2 || held != 0)
        .collect();
    assert!(slots.is_empty(), "holder slots left: {slots:?}");
}

/// A holder dies after each step while a live process (the main thread) tries for
/// the permit, then repairs: the permit is never held twice, and comes back exactly
/// once.
///
/// Catches a repair that counts a pending take as not done (lost) or a pending
/// return as not done (given back twice), a take whose CAS does not set the tag (the
/// repairer cannot tell), and a try that waits for a dead tag holder (loom reports
/// the endless spin).
#[test]
fn a_holder_dies_at_each_step_while_another_tries() {
    for &(protocol, step) in STEPS {
        bounded(3).check(move || {
            set_current(2);
            let sem = Semaphore::new(1, 2).unwrap();
            let inside = Arc::new(AtomicUsize::new(0));
            let victim = hold_and_die(&sem, &inside, 3, protocol, step);
            if let Ok(permit) = sem.try_permit() {
                let others = inside.fetch_add(1, Ordering::Relaxed);
                assert_eq!(others, 0, "two holders of one permit");
                inside.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
            }
            victim.join().unwrap();
            settled(&sem);
        });
    }
}

/// A holder died after each step; then a repairer (`reclaim_dead`) races a live
/// process that waits for the permit (asleep, if it gets there first: the repair's
/// give-back must wake it).
///
/// Catches a repair that gives back without waking sleepers (loom deadlocks), two
/// repairers of one slot (given back twice), and a live holder's transfer confused
/// with the dead one's (the tag check).
#[test]
fn a_repairer_races_a_live_holder() {
    for &(protocol, step) in STEPS {
        bounded(3).check(move || {
            set_current(2);
            let sem = Semaphore::new(1, 2).unwrap();
            let inside = Arc::new(AtomicUsize::new(0));
            hold_and_die(&sem, &inside, 3, protocol, step)
                .join()
                .unwrap();
            let live = {
                let (sem, inside) = (handle(&sem), inside.clone());
                thread::spawn(move || {
                    set_current(4);
                    hold_once(&sem, &inside);
                })
            };
            sem.reclaim_dead();
            live.join().unwrap();
            settled(&sem);
        });
    }
}

/// A holder died holding its permit; a repairer dies after each step of the repair
/// (taking the slot over, settling, giving back): the next repairer finishes, and the
/// permit comes back exactly once.
///
/// Catches a repair that is not idempotent (given back twice by the second repairer)
/// and a dead repairer's slot that nobody frees.
#[test]
fn a_repairer_dies_at_each_step() {
    let steps = [
        ("semaphore.repair", 1),
        ("semaphore.repair", 2),
        ("semaphore.return", 1),
        ("semaphore.return", 2),
        ("semaphore.return", 3),
        ("semaphore.repair", 3),
    ];
    for (protocol, step) in steps {
        bounded(3).check(move || {
            set_current(2);
            let sem = Semaphore::new(1, 2).unwrap();
            let inside = Arc::new(AtomicUsize::new(0));
            // Process 3 dies holding (after its take, inside its critical section).
            hold_and_die(&sem, &inside, 3, "semaphore.permit", 3)
                .join()
                .unwrap();
            let repairer = {
                let sem = handle(&sem);
                thread::spawn(move || {
                    set_current(5);
                    die_at(protocol, step);
                    let died = run(move || {
                        sem.reclaim_dead();
                    });
                    assert!(died, "never reached {protocol}:{step}");
                })
            };
            let live = {
                let (sem, inside) = (handle(&sem), inside.clone());
                thread::spawn(move || {
                    set_current(4);
                    if let Ok(permit) = sem.try_permit() {
                        let others = inside.fetch_add(1, Ordering::Relaxed);
                        assert_eq!(others, 0, "two holders of one permit");
                        inside.fetch_sub(1, Ordering::Relaxed);
                        drop(permit);
                    }
                })
            };
            repairer.join().unwrap();
            live.join().unwrap();
            settled(&sem);
        });
    }
}

/// A waiter dies after each step of registering (1: registered in the word; 2: also
/// counted in its process's slot; 3: uncounted again, just before an attempt that
/// would deregister) while a live process's waiter sleeps; a repairer forgets the
/// dead waiter, then one permit is released.
///
/// Catches a slot count that runs ahead of the registrations (counted before the
/// word's CAS, or uncounted after the deregistering attempt): the repair then takes
/// the live sleeper off the count, the release wakes nobody and loom deadlocks. Also
/// a repair that forgets nothing (the count stays 2), or that runs twice.
#[test]
fn a_waiter_dies_at_each_step_while_another_sleeps() {
    for step in 1..=3 {
        bounded(3).check(move || {
            set_current(2);
            let sem = Semaphore::new(0, 1).unwrap();
            let live = {
                let sem = handle(&sem);
                thread::spawn(move || {
                    set_current(4);
                    sem.acquire().unwrap();
                })
            };
            let victim = {
                let sem = handle(&sem);
                thread::spawn(move || {
                    set_current(3);
                    die_at("semaphore.acquire", step);
                    let died = run(move || {
                        let _ = sem.acquire();
                    });
                    assert!(died, "never reached semaphore.acquire:{step}");
                })
            };
            victim.join().unwrap();
            sem.reclaim_dead(); // what a sleeper's slice does
            // Dead between the word and its slot (steps 1 and 3): counted still, a
            // wake call too many per release. Counted in its slot (2): forgotten.
            let left = u32::from(step != 2);
            assert!(sem.waiters() <= 1 + left, "the dead waiter counted twice");
            sem.release(1).unwrap();
            live.join().unwrap();
            assert_eq!((sem.value(), sem.waiters()), (0, left));
        });
    }
}

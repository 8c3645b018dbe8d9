//! loom models of the MPMC ring's recovery paths: a participant dies at a chosen step
//! (`process::crash` points) and a registrant repairs its record while live participants
//! keep pushing and popping.
//!
//! Run with `RUSTFLAGS="--cfg shmlink_loom" cargo test --release --lib loom_mpmc_recovery`.

use crate::process::crash;
use crate::process::loom::set_current;
use crate::ring::{Mpmc, PopError};
use crate::sync::WaitMode;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;

fn builder(max: usize) -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(b.preemption_bound.map_or(max, |x| x.min(max)));
    b
}

/// Pops until empty (bounded), returning the values.
fn drain(
    rx: &mut crate::ring::MpmcConsumer<u64, crate::region::HeapRegion<crate::ring::MpmcHeader>>,
) -> Vec<u64> {
    let mut out = Vec::new();
    for _ in 0..4 {
        match rx.try_pop() {
            Ok(v) => out.push(v),
            Err(PopError::Empty | PopError::Disconnected) => break,
            Err(e) => panic!("pop: {e:?}"),
        }
    }
    out
}

/// Defect 1, pop side. Consumer D announces the pop of position 0 and dies before its
/// `head` CAS; live consumer E pops position 0; a registrant R takes D's record over
/// (repairing it) and then pushes two more values, the second into E's slot.
///
/// With repair reading the live claims before `head`, R misses E's claim, frees E's
/// slot while E reads it, and the producer's write races E's read (loom: causality
/// violation) or E returns the overwritten value.
#[test]
fn repair_of_dead_consumer_spares_a_live_claimant() {
    builder(3).check(|| {
        let ring = Mpmc::<u64, _>::new(2, WaitMode::Spin).unwrap();
        let mut tx = ring.producer().unwrap();
        tx.try_push(7).unwrap();
        let got = Arc::new(AtomicU64::new(0));

        let r = ring.clone();
        let d = thread::spawn(move || {
            set_current(2);
            let mut rx = r.consumer().unwrap();
            crash::loom::die_at("mpmc.pop", 1);
            crash::loom::run(|| {
                if let Ok(v) = rx.try_pop() {
                    assert_eq!(v, 7);
                }
            });
        });
        let r = ring.clone();
        let g = got.clone();
        let e = thread::spawn(move || {
            set_current(3);
            let mut rx = r.consumer().unwrap();
            if let Ok(v) = rx.try_pop() {
                assert_eq!(v, 7, "a live consumer read a value overwritten under it");
                g.store(v, Ordering::Relaxed);
            }
            std::mem::forget(rx);
        });

        set_current(4);
        // Registering walks the table and repairs a dead record.
        let _tx2 = ring.producer().unwrap();
        let _ = tx.try_push(8);
        let _ = tx.try_push(9);
        d.join().unwrap();
        e.join().unwrap();
        std::mem::forget(tx);
    });
}

/// Defect 1, push side. Producer P announces the push of position 0 and dies before
/// its `tail` CAS; live producer E pushes 6 (its push returns `Ok`); a registrant R
/// repairs P's record and pops.
///
/// With repair reading the live claims before `tail`, R turns E's claimed slot into a
/// hole, consumes the hole, and E's publication then lands on a freed slot: 6 is lost
/// (and the slot jams on the next lap).
#[test]
fn repair_of_dead_producer_spares_a_live_claimant() {
    builder(3).check(|| {
        let ring = Mpmc::<u64, _>::new(2, WaitMode::Spin).unwrap();
        let pushed = Arc::new(AtomicU64::new(0));

        let r = ring.clone();
        let p = thread::spawn(move || {
            set_current(2);
            let mut tx = r.producer().unwrap();
            crash::loom::die_at("mpmc.push", 1);
            let died = crash::loom::run(|| tx.try_push(5).unwrap());
            assert!(died, "the push of 5 always reaches its first step");
        });
        let r = ring.clone();
        let pu = pushed.clone();
        let e = thread::spawn(move || {
            set_current(3);
            let mut tx = r.producer().unwrap();
            if tx.try_push(6).is_ok() {
                pu.store(1, Ordering::Relaxed);
            }
            std::mem::forget(tx);
        });

        set_current(4);
        let mut rx = ring.consumer().unwrap();
        let mut seen = drain(&mut rx);
        p.join().unwrap();
        e.join().unwrap();
        seen.extend(drain(&mut rx));
        if pushed.load(Ordering::Relaxed) == 1 {
            assert_eq!(seen, vec![6], "an acknowledged push was lost or duplicated");
        }
        // The ring still works: two laps' worth of slots take and give values.
        let mut tx = ring.producer().unwrap();
        for v in [10, 11] {
            tx.try_push(v).unwrap();
        }
        assert_eq!(drain(&mut rx), vec![10, 11]);
        std::mem::forget((tx, rx));
    });
}

/// Two registrants repair the same dead consumer at once. Consumer D took the value
/// (its `head` CAS, pop step 2) and died; registrants R1 and R2 race to repair its
/// record. The slot is freed once and the loss counted once, and the ring keeps
/// working. Catches a repair that frees with a plain store instead of a CAS (two
/// frees, or a free after the next lap's publication: the lost count or the final
/// round trip breaks).
#[test]
fn two_repairers_free_a_dead_consumers_slot_once() {
    builder(2).check(|| {
        let ring = Mpmc::<u64, _>::new(2, WaitMode::Spin).unwrap();
        let mut tx = ring.producer().unwrap();
        tx.try_push(7).unwrap();
        {
            set_current(2);
            let mut rx = ring.consumer().unwrap();
            crash::loom::die_at("mpmc.pop", 2);
            assert!(crash::loom::run(|| {
                let _ = rx.try_pop();
            }));
            std::mem::forget(rx);
            set_current(1);
        }
        let r = ring.clone();
        let r1 = thread::spawn(move || {
            set_current(3);
            std::mem::forget(r.consumer().unwrap());
        });
        set_current(4);
        let mut rx = ring.consumer().unwrap();
        r1.join().unwrap();
        assert_eq!(
            ring.repairs().lost,
            1,
            "the taken value is counted lost once"
        );
        for v in [8, 9] {
            tx.try_push(v).unwrap();
        }
        assert_eq!(drain(&mut rx), vec![8, 9]);
        std::mem::forget((tx, rx));
    });
}

/// A repairer that dies in the middle of a repair (after each of its steps) leaves the
/// record to the next registrant, who finishes it: the dead consumer's slot does not
/// stay jammed, and a live producer's value pushed meanwhile arrives once.
#[test]
fn a_repairer_dying_mid_repair_leaves_the_record_repairable() {
    for step in 1..=4 {
        builder(2).check(move || {
            let ring = Mpmc::<u64, _>::new(2, WaitMode::Spin).unwrap();
            let mut tx = ring.producer().unwrap();
            tx.try_push(7).unwrap();
            {
                set_current(2);
                let mut rx = ring.consumer().unwrap();
                crash::loom::die_at("mpmc.pop", 2);
                assert!(crash::loom::run(|| {
                    let _ = rx.try_pop();
                }));
                std::mem::forget(rx);
            }
            let r = ring.clone();
            let r1 = thread::spawn(move || {
                set_current(3);
                crash::loom::die_at("mpmc.repair", step);
                crash::loom::run(|| std::mem::forget(r.consumer().unwrap()));
            });
            set_current(1);
            let pushed = tx.try_push(8).is_ok();
            r1.join().unwrap();
            set_current(4);
            let mut rx = ring.consumer().unwrap();
            let got = drain(&mut rx);
            assert_eq!(got, if pushed { vec![8] } else { vec![] });
            assert!(ring.repairs().lost <= 1);
            for v in [10, 11] {
                tx.try_push(v).unwrap();
            }
            assert_eq!(drain(&mut rx), vec![10, 11], "the ring jammed");
            std::mem::forget((tx, rx));
        });
    }
}

/// Defect 8: a registrant killed between counting a dead holder's role out and
/// storing its own role. Producer D died; registrant R1 takes D's record and dies at
/// each step of registration; R2 takes R1's record. The live producer L still counts:
/// a consumer's `try_pop` on the empty ring says `Empty`, not `Disconnected`. With the
/// old order (count out, then store the role) R2 counted D's role out a second time
/// and the producer count reached 0 with L alive.
#[test]
fn a_registrant_killed_mid_registration_never_undercounts() {
    for step in 1..=3 {
        builder(1).check(move || {
            let ring = Mpmc::<u64, _>::new(2, WaitMode::Spin).unwrap();
            // Records in order: L, the consumer, D (dead); registrants take the first
            // free or dead record, D's.
            let live = ring.producer().unwrap(); // L, token 1
            let mut rx = ring.consumer().unwrap();
            set_current(2);
            std::mem::forget(ring.producer().unwrap()); // D
            crate::process::loom::kill(2);
            set_current(3);
            crash::loom::die_at("mpmc.register", step);
            crash::loom::run(|| std::mem::forget(ring.consumer().unwrap()));
            set_current(4);
            let r2 = ring.consumer();
            assert_eq!(rx.try_pop(), Err(PopError::Empty), "L is a live producer");
            std::mem::forget((live, rx, r2));
        });
    }
}

//! loom models of SPSC recovery: participants killed at each crash point of the
//! ring's protocols (`crate::process::crash`), and the handles that take their roles
//! over. Heap-backed: slot values are tracked through the region's shadow cells, so a
//! consumer reading a slot that a producer writes at the same time is a loom
//! causality report, not a silent wrong value.
//!
//! A killed participant is a model thread with its own process token that unwinds at
//! its planned step (its handle's `Drop` then leaves the role word as a SIGKILL
//! would). A liveness check that finds a token dead synchronizes with the death
//! (`process::loom::kill`), as the kernel shows a process dead only after its stores
//! are visible; whoever takes a role over also joins the dead thread first, which
//! keeps the models small.
//!
//! Run with `RUSTFLAGS="--cfg shmlink_loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release
//! --lib loom_spsc_recovery --target-dir target/loom`.

use crate::process::crash::loom::{die_at, run};
use crate::process::loom::{is_killed, set_current};
use crate::region::HeapRegion;
use crate::ring::{ClaimError, PopError, PushError, Spsc, SpscHeader};
use crate::sync::WaitMode;
use loom::thread;

type Ring = Spsc<u64, HeapRegion<SpscHeader>>;
type Producer = crate::ring::Producer<u64, HeapRegion<SpscHeader>>;

/// Tokens of the model's "processes".
const DYING: u64 = 2;
const CONSUMER: u64 = 3;
const TAKER: u64 = 4;

/// Pushes `v`, yielding while the ring is full.
fn push(tx: &mut Producer, v: u64) {
    let mut v = v;
    loop {
        match tx.try_push(v) {
            Ok(()) => return,
            Err(PushError::Full(back)) => {
                v = back;
                thread::yield_now();
            }
            Err(e) => panic!("push: {e:?}"),
        }
    }
}

/// Pops until the producer role is closed (cleanly left) and the ring is drained.
fn drain(rx: &mut crate::ring::Consumer<u64, HeapRegion<SpscHeader>>) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        match rx.try_pop() {
            Ok(v) => got.push(v),
            Err(PopError::Empty) => thread::yield_now(),
            Err(PopError::Disconnected) => return got,
            Err(e) => panic!("pop: {e:?}"),
        }
    }
}

/// How the dying producer publishes its elements.
#[derive(Clone, Copy, Debug)]
enum Publish {
    /// One `try_push` of 1.
    One,
    /// A chunk of 2 (1, 2), committed together: stamped last slot first.
    Chunk,
    /// `push_slice(&[1, 2])`: no stamps, one `tail` store.
    Slice,
    /// Nothing: it dies while claiming the role.
    Claim,
}

/// A producer (token 2) dies right after `step` of `protocol` while publishing as
/// `publish` says; a consumer (token 3) pops all along; a new producer (token 4) takes
/// the dead one's role over, pushes 10, then leaves. The consumer gets what the dead
/// producer had made visible (`committed`), once, then 10, and never anything else.
/// The ring has room for all of it (4 slots), so nobody waits for space: that keeps
/// the model small, and slot reuse is covered by the consumer model below.
fn producer_dies_then_is_taken_over(
    publish: Publish,
    protocol: &'static str,
    step: u32,
    committed: &'static [u64],
) {
    loom::model(move || {
        // Room for everything: nobody waits for space (keeps the model small).
        let ring: Ring = Spsc::new(4, WaitMode::Spin).unwrap();
        let (r_dying, r_consumer) = (ring.clone(), ring.clone());
        let consumer = thread::spawn(move || {
            set_current(CONSUMER);
            let mut rx = r_consumer.consumer().unwrap();
            drain(&mut rx)
        });
        let dying = thread::spawn(move || {
            set_current(DYING);
            die_at(protocol, step);
            run(|| {
                let mut tx = r_dying.producer().unwrap();
                match publish {
                    Publish::One => tx.try_push(1).unwrap(),
                    Publish::Chunk => {
                        let mut chunk = tx.write_chunk(2).unwrap();
                        chunk.write(0, 1);
                        chunk.write(1, 2);
                        chunk.commit_all();
                    }
                    Publish::Slice => assert_eq!(tx.push_slice(&[1, 2]), 2),
                    Publish::Claim => {}
                }
            })
        });
        assert!(dying.join().unwrap(), "{protocol}:{step} was never reached");
        set_current(TAKER);
        let mut tx = ring
            .producer()
            .expect("a dead producer's role is taken over");
        push(&mut tx, 10);
        drop(tx);
        let got = consumer.join().unwrap();
        assert_eq!(
            got,
            [committed, &[10]].concat(),
            "{publish:?} {protocol}:{step}"
        );
    });
}

/// A producer killed at each step of a single push. Steps 1-2 (value written, next
/// stamp checked) publish nothing; from step 3 (stamped, `tail` not yet stored) the
/// element is published and must be delivered exactly once.
///
/// Weakening caught: without the takeover's forward walk over stamped slots (the new
/// producer continuing at the stale `tail`), at step 3 the new producer writes 10
/// into the slot the consumer is reading 1 from (loom: causality violation on the
/// slot's cell).
#[test]
fn producer_killed_in_a_push_is_taken_over() {
    for (step, committed) in [(1, &[][..]), (2, &[]), (3, &[1]), (4, &[1]), (5, &[1])] {
        producer_dies_then_is_taken_over(Publish::One, "spsc.push", step, committed);
    }
}

/// A producer killed at each step of committing a chunk of two. At step 3 only the
/// chunk's last slot is stamped (stamps go last slot first): nothing is published,
/// and that stale stamp must never pass for a published element once the new
/// producer fills the gap.
///
/// Weakenings caught: without the lazy void of the next slot's stale stamp
/// (`void_stale_stamp`), at step 3 the consumer takes the dead chunk's 2 right after
/// the new producer's 10 (assertion: `[10, 2]` instead of `[10]`). With the
/// takeover's catch-up `tail` store Relaxed instead of Release, at step 4 the
/// consumer takes the chunk through that `tail` without the chunk's writes happening
/// before its reads (loom: causality violation).
#[test]
fn producer_killed_in_a_chunk_commit_is_taken_over() {
    for (step, committed) in [(1, &[][..]), (2, &[]), (3, &[]), (4, &[1, 2]), (5, &[1, 2])] {
        producer_dies_then_is_taken_over(Publish::Chunk, "spsc.push", step, committed);
    }
}

/// A producer killed at each step of a `push_slice` (no stamps: only `tail`
/// publishes).
///
/// Weakening caught: with the slice's `tail` store Relaxed instead of Release, the
/// consumer reads the slots without the values' writes happening before (loom:
/// causality violation on the slot cells, at step 3).
#[test]
fn producer_killed_in_a_slice_push_is_taken_over() {
    for (step, committed) in [(1, &[][..]), (2, &[]), (3, &[1, 2])] {
        producer_dies_then_is_taken_over(Publish::Slice, "spsc.push_slice", step, committed);
    }
}

/// A producer killed while claiming a free role: after taking the role word (step 1)
/// or after catching `tail` up (step 2). Its role is taken over as a dead holder's.
///
/// Weakening caught: a claim that treats every non-zero role word as taken (no
/// liveness check) leaves the role to the dead process for ever: `expect` fails.
#[test]
fn producer_killed_while_claiming_is_taken_over() {
    for step in [1, 2] {
        producer_dies_then_is_taken_over(Publish::Claim, "spsc.claim", step, &[]);
    }
}

/// A producer (token 2) is killed at `chunk_step` of committing a chunk of two, the
/// producer that takes its role over (token 4) is killed at `takeover_step` of the
/// takeover, and a third one (token 5) takes over again and pushes 10, while a
/// consumer pops all along: it gets `committed`, then 10.
fn taker_dies_then_is_taken_over(chunk_step: u32, takeover_step: u32, committed: &'static [u64]) {
    loom::model(move || {
        let ring: Ring = Spsc::new(4, WaitMode::Spin).unwrap();
        set_current(CONSUMER);
        let mut rx = ring.consumer().unwrap();
        let consumer = thread::spawn(move || {
            set_current(CONSUMER);
            drain(&mut rx)
        });
        let r = ring.clone();
        let first = thread::spawn(move || {
            set_current(DYING);
            die_at("spsc.push", chunk_step);
            run(|| {
                let mut tx = r.producer().unwrap();
                let mut chunk = tx.write_chunk(2).unwrap();
                chunk.write(0, 1);
                chunk.write(1, 2);
                chunk.commit_all();
            })
        });
        assert!(
            first.join().unwrap(),
            "spsc.push:{chunk_step} was never reached"
        );
        let r = ring.clone();
        let taker = thread::spawn(move || {
            set_current(TAKER);
            die_at("spsc.takeover", takeover_step);
            run(|| drop(r.producer().unwrap()))
        });
        assert!(
            taker.join().unwrap(),
            "spsc.takeover:{takeover_step} was never reached"
        );
        set_current(TAKER + 1);
        let mut tx = ring.producer().expect("taken over again");
        push(&mut tx, 10);
        drop(tx);
        let got = consumer.join().unwrap();
        assert_eq!(
            got,
            [committed, &[10]].concat(),
            "push:{chunk_step} takeover:{takeover_step}"
        );
    });
}

/// A producer killed in a chunk commit (step 3: only the last slot stamped; step 4:
/// every slot stamped, `tail` not stored), then the producer taking over killed after
/// taking the role word (step 1) or after catching `tail` up (step 2): the third
/// producer still continues after exactly what was published, and the dead chunk's
/// stale stamp never passes for its element.
///
/// Weakening caught: with the takeover's catch-up `tail` store Relaxed instead of
/// Release, a consumer that takes the chunk through the `tail` a taker stored reads
/// it without the chunk's writes happening before (loom: causality violation, at
/// chunk step 4).
#[test]
fn a_taker_killed_in_its_takeover_is_taken_over_again() {
    for (chunk_step, committed) in [(3, &[][..]), (4, &[1, 2])] {
        for takeover_step in [1, 2] {
            taker_dies_then_is_taken_over(chunk_step, takeover_step, committed);
        }
    }
}

/// A consumer (token 3) pops 1, then is killed at `step` of popping the next element;
/// the producer (token 2) keeps pushing 1, 2, 3 through two slots; a new consumer
/// (token 4) takes over. Killed after copying the value out but before storing `head`
/// (step 1), the element is delivered again to the new consumer; killed after `head`
/// (step 2), it went down with the dead consumer: the two consumers together get
/// `expected`.
///
/// Weakenings caught: with the consumer's `head` store Relaxed instead of Release, the
/// producer may write 3 into slot 0 while the consumer still reads 1 from it (loom:
/// causality violation on the slot's cell). Without the `crash::dying()` check in
/// `Consumer::drop`, the killed consumer's unwinding closes its role (a killed
/// process releases nothing), and the producer's wait for room ends with
/// `Disconnected` (assertion in `push`); the wake-up that follows in that `Drop`
/// would even abort the model (a loom call while unwinding).
fn consumer_dies_then_is_taken_over(step: u32, expected: &'static [u64]) {
    loom::model(move || {
        let ring: Ring = Spsc::new(2, WaitMode::Spin).unwrap();
        // Both roles claimed up front, each with its process's token.
        set_current(DYING);
        let mut tx = ring.producer().unwrap();
        set_current(CONSUMER);
        let rx = ring.consumer().unwrap();
        let producer = thread::spawn(move || {
            set_current(DYING);
            for v in 1..=3 {
                push(&mut tx, v);
            }
        });
        let dying = thread::spawn(move || {
            set_current(CONSUMER);
            let mut got = Vec::new();
            let died = run(|| {
                let mut rx = rx;
                loop {
                    match rx.try_pop() {
                        Ok(v) => {
                            got.push(v);
                            // Killed in the next pop.
                            die_at("spsc.pop", step);
                        }
                        Err(PopError::Empty) => thread::yield_now(),
                        Err(e) => panic!("pop: {e:?}"),
                    }
                }
            });
            (died, got)
        });
        let (died, mut got) = dying.join().unwrap();
        assert!(died, "spsc.pop:{step} was never reached");
        assert_eq!(got, [1]);
        set_current(TAKER);
        let mut rx = ring
            .consumer()
            .expect("a dead consumer's role is taken over");
        got.extend(drain(&mut rx));
        producer.join().unwrap();
        assert_eq!(got, expected, "spsc.pop:{step}");
    });
}

/// See [`consumer_dies_then_is_taken_over`].
#[test]
fn consumer_killed_in_a_pop_is_taken_over() {
    consumer_dies_then_is_taken_over(1, &[1, 2, 3]);
    consumer_dies_then_is_taken_over(2, &[1, 3]);
}

/// Two live processes race to claim a free producer role: exactly one wins, the other
/// is refused with `Taken` naming the winner, and only the winner's element arrives.
///
/// Weakening caught: with the claim's compare-exchange replaced by a load, the
/// liveness check and a plain store, both claimants win (assertion: two producers),
/// and their pushes race on slot 0 (loom: causality violation).
#[test]
fn two_claimants_of_a_free_role_one_wins() {
    loom::model(|| {
        let ring: Ring = Spsc::new(2, WaitMode::Spin).unwrap();
        set_current(TAKER);
        let mut rx = ring.consumer().unwrap();
        let claimant = |token: u64, other: u64| {
            let ring = ring.clone();
            thread::spawn(move || {
                set_current(token);
                match ring.producer() {
                    Ok(mut tx) => {
                        tx.try_push(token).unwrap();
                        // Stay the holder: a live process keeps its role.
                        std::mem::forget(tx);
                        Some(token)
                    }
                    Err(ClaimError::Taken { pid }) => {
                        assert_eq!(u64::from(pid), other, "refused for the other one");
                        None
                    }
                    Err(e) => panic!("claim: {e:?}"),
                }
            })
        };
        let a = claimant(DYING, CONSUMER);
        let b = claimant(CONSUMER, DYING);
        let winners: Vec<u64> = [a, b]
            .into_iter()
            .filter_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(winners.len(), 1, "one producer at a time: {winners:?}");
        assert_eq!(rx.try_pop(), Ok(winners[0]));
        assert_eq!(rx.try_pop(), Err(PopError::Empty));
    });
}

/// A live producer (token 2) holds its role and pushes 1 and 2 while another process
/// (token 3) tries to take the role over: it is refused (`Taken`, the holder's pid),
/// whatever the holder is doing at that moment, and the holder's elements arrive
/// untouched. (Liveness under loom is alive or dead; "unknown", which the claim also
/// treats as alive, is covered by `process`'s tests.)
///
/// Weakening caught: a claim that takes any role whose holder is not this process's
/// own token (no liveness check) takes the live holder's role: the contender's
/// `expect_err` fails, and its catch-up `tail` store races the holder's.
#[test]
fn a_live_holder_is_never_taken_over() {
    loom::model(|| {
        let ring: Ring = Spsc::new(2, WaitMode::Spin).unwrap();
        set_current(DYING);
        let mut tx = ring.producer().unwrap();
        set_current(TAKER);
        let mut rx = ring.consumer().unwrap();
        let holder = thread::spawn(move || {
            set_current(DYING);
            push(&mut tx, 1);
            push(&mut tx, 2);
            tx
        });
        let r_contender = ring.clone();
        let contender = thread::spawn(move || {
            set_current(CONSUMER);
            let err = r_contender.producer().map(drop).expect_err("a live holder");
            assert_eq!(err, ClaimError::Taken { pid: DYING as u32 });
        });
        contender.join().unwrap();
        let tx = holder.join().unwrap();
        assert!(!is_killed(DYING));
        assert_eq!(rx.try_pop(), Ok(1));
        assert_eq!(rx.try_pop(), Ok(2));
        drop(tx);
        assert_eq!(rx.try_pop(), Err(PopError::Disconnected));
    });
}

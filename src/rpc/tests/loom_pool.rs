//! loom models of the RPC server's job queue (`shmlink::rpc::pool`): readers push
//! calls, workers take them, each side woken one at a time (`notify_one`) and only
//! when it sleeps. A lost wake-up (a push that wakes nobody while a worker sleeps, a
//! pop that leaves a reader asleep on a full queue, a close that misses a sleeper)
//! shows up as a loom deadlock; a job run twice or never, as a failed assertion.
//!
//! Run with `RUSTFLAGS="--cfg shmlink_loom" cargo test --release --lib loom_pool`.

use crate::rpc::pool::JobQueue;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

/// Two workers drain a queue of room 1 that one reader fills with three jobs (so it
/// waits for room twice), then closes: every job runs exactly once, and every thread
/// ends. Catches: `pop` not waking the blocked reader (deadlock: the reader sleeps on
/// a full queue that workers emptied); `push` not waking a sleeping worker, or waking
/// only when none sleeps (deadlock); `close` not waking sleeping workers (deadlock at
/// join).
#[test]
fn every_job_runs_once_and_everyone_wakes() {
    loom::model(|| {
        let q = Arc::new(JobQueue::<usize>::new(1));
        let ran = Arc::new([
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        ]);
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (q, ran) = (q.clone(), ran.clone());
                thread::spawn(move || {
                    while let Some(j) = q.pop() {
                        ran[j].fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for j in 0..3 {
            q.push(j);
        }
        q.close();
        for w in workers {
            w.join().unwrap();
        }
        for r in ran.iter() {
            assert_eq!(r.load(Ordering::Relaxed), 1);
        }
    });
}

/// Two readers push into a full queue while one worker drains it: a pop wakes one
/// reader, never none while one sleeps, and both jobs run. Catches a pop that wakes a
/// reader only when the queue was exactly full, missing a second blocked reader
/// (deadlock).
#[test]
fn blocked_readers_each_get_room() {
    loom::model(|| {
        let q = Arc::new(JobQueue::<usize>::new(1));
        q.push(0);
        let readers: Vec<_> = (1..3)
            .map(|j| {
                let q = q.clone();
                thread::spawn(move || q.push(j))
            })
            .collect();
        let mut seen = [0; 3];
        for _ in 0..3 {
            let j = q.pop().expect("the queue is open");
            seen[j] += 1;
        }
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(seen, [1, 1, 1]);
    });
}

/// A reader blocked on a full queue is released by `abort` (the server tearing down
/// with nobody left to pop).
#[test]
fn abort_releases_a_blocked_reader() {
    loom::model(|| {
        let q = Arc::new(JobQueue::<usize>::new(1));
        q.push(0);
        let reader = {
            let q = q.clone();
            thread::spawn(move || q.push(1))
        };
        q.abort();
        reader.join().unwrap();
        q.close();
        assert_eq!((q.pop(), q.pop(), q.pop()), (Some(0), Some(1), None));
    });
}

//! loom models of the reading role (`shmlink::sync::handoff`), the RPC client's receive
//! path: callers wait for their own answers from one source that one of them reads at
//! a time. A lost wake-up shows up as a loom deadlock; a misdelivered answer as a failed
//! assertion.
//!
//! Run with `RUSTFLAGS="--cfg shmlink_loom" cargo test --release --test loom_handoff`.
#![cfg(shmlink_loom)]

use std::collections::{HashMap, VecDeque};

use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use shmlink::sync::handoff::{Handoff, Turn};

/// The connection: messages `(call id, value)`, or `None` when it fails.
#[derive(Default)]
struct Source {
    queue: Mutex<VecDeque<Option<(u64, u64)>>>,
    cv: Condvar,
}

impl Source {
    fn send(&self, m: Option<(u64, u64)>) {
        self.queue.lock().unwrap().push_back(m);
        self.cv.notify_all();
    }

    fn recv(&self) -> Option<(u64, u64)> {
        let mut q = self.queue.lock().unwrap();
        loop {
            if let Some(m) = q.pop_front() {
                return m;
            }
            q = self.cv.wait(q).unwrap();
        }
    }
}

/// The answers delivered so far, and whether the connection failed.
#[derive(Default)]
struct Table {
    answers: HashMap<u64, u64>,
    dead: bool,
}

/// One caller, as the RPC client does it: take its answer, or read, or sleep.
fn call(h: &Handoff<Table>, src: &Source, id: u64) -> Result<u64, ()> {
    let take = |t: &mut Table| match t.answers.remove(&id) {
        Some(v) => Some(Ok(v)),
        None if t.dead => Some(Err(())),
        None => None,
    };
    match h.wait_turn(None, take) {
        Turn::Ready(r) => r,
        Turn::TimedOut => unreachable!("no deadline"),
        Turn::Read => loop {
            let Some((from, v)) = src.recv() else {
                return h.give_up(|t| {
                    t.dead = true;
                    take(t).unwrap_or(Err(()))
                });
            };
            if let Some(r) = h.deliver(|t| {
                t.answers.insert(from, v);
                take(t)
            }) {
                return r;
            }
        },
    }
}

/// Two callers, answers in the opposite order: each gets its own, nobody hangs
/// (whichever reads first must hand the role over, or the other's answer over).
#[test]
fn answers_in_any_order_reach_their_callers() {
    loom::model(|| {
        let h = Arc::new(Handoff::new(Table::default()));
        let src = Arc::new(Source::default());
        let callers: Vec<_> = [1u64, 2]
            .into_iter()
            .map(|id| {
                let (h, src) = (h.clone(), src.clone());
                thread::spawn(move || call(&h, &src, id))
            })
            .collect();
        src.send(Some((2, 20)));
        src.send(Some((1, 10)));
        let got: Vec<_> = callers.into_iter().map(|c| c.join().unwrap()).collect();
        assert_eq!(got, [Ok(10), Ok(20)]);
    });
}

/// The connection fails after one answer: the caller that gets it returns it, the
/// other learns of the failure (from the reader that saw it, or by reading it itself),
/// and nobody hangs.
#[test]
fn a_failed_source_ends_every_wait() {
    loom::model(|| {
        let h = Arc::new(Handoff::new(Table::default()));
        let src = Arc::new(Source::default());
        let callers: Vec<_> = [1u64, 2]
            .into_iter()
            .map(|id| {
                let (h, src) = (h.clone(), src.clone());
                thread::spawn(move || call(&h, &src, id))
            })
            .collect();
        src.send(Some((1, 10)));
        src.send(None);
        let got: Vec<_> = callers.into_iter().map(|c| c.join().unwrap()).collect();
        assert_eq!(got, [Ok(10), Err(())]);
    });
}

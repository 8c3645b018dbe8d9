//! loom models of the reading role (`shmlink::rpc::handoff`), the RPC client's receive
//! path: callers wait for their own answers from one source that one of them reads at
//! a time. A lost wake-up shows up as a loom deadlock; a misdelivered answer as a failed
//! assertion.
//!
//! Run with `RUSTFLAGS="--cfg shmlink_loom" cargo test --release --test loom_handoff`.

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::rpc::handoff::{Handoff, Turn};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

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
    call_decoding(h, src, id, |v| v)
}

/// [`call`], with `decode` run on the answer as it is taken (the RPC client decodes
/// a response under the lock, and a user's `Deserialize` may panic).
fn call_decoding(
    h: &Handoff<Table>,
    src: &Source,
    id: u64,
    decode: impl Fn(u64) -> u64,
) -> Result<u64, ()> {
    let take = |t: &mut Table| match t.answers.remove(&id) {
        Some(v) => Some(Ok(decode(v))),
        None if t.dead => Some(Err(())),
        None => None,
    };
    match h.wait_turn(None, take) {
        Turn::Ready(r) => r,
        Turn::TimedOut => unreachable!("no deadline"),
        Turn::Read(mut reader) => loop {
            let Some((from, v)) = src.recv() else {
                return reader.give_up(|t| {
                    t.dead = true;
                    take(t).unwrap_or(Err(()))
                });
            };
            if let Some(r) = reader.deliver(|t| {
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

/// What the panicking decoder of [`a_reader_that_unwinds_mid_delivery_hands_the_role_on`]
/// says; its panics are expected, and not printed.
const DECODE_PANIC: &str = "cannot decode 10";

/// A panic hook that keeps quiet about [`DECODE_PANIC`] (loom runs the model many
/// times) and reports every other panic as usual.
fn quiet_decode_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied());
        if msg != Some(DECODE_PANIC) {
            default(info);
        }
    }));
}

/// Caller 1's answer panics as it is decoded (in the RPC client: a response whose
/// `Deserialize` panics). When caller 1 is the reader, the panic unwinds out of
/// `deliver`: the role must not stay taken, and caller 2, asleep by then or not, must
/// be able to read its own answer. Without the release on unwind (or without the
/// wake-up that goes with it), caller 2 sleeps forever: a loom deadlock.
#[test]
fn a_reader_that_unwinds_mid_delivery_hands_the_role_on() {
    quiet_decode_panics();
    loom::model(|| {
        let h = Arc::new(Handoff::new(Table::default()));
        let src = Arc::new(Source::default());
        let panicky = {
            let (h, src) = (h.clone(), src.clone());
            thread::spawn(move || {
                catch_unwind(AssertUnwindSafe(|| {
                    call_decoding(&h, &src, 1, |v| {
                        if v == 10 {
                            panic!("{DECODE_PANIC}");
                        }
                        v
                    })
                }))
                .is_err()
            })
        };
        let other = {
            let (h, src) = (h.clone(), src.clone());
            thread::spawn(move || call(&h, &src, 2))
        };
        src.send(Some((1, 10)));
        src.send(Some((2, 20)));
        assert!(panicky.join().unwrap(), "decoding 10 panics");
        assert_eq!(other.join().unwrap(), Ok(20));
    });
}

//! The reading role: many threads wait for their own messages from one source that
//! only one of them may read at a time (the RPC client's receive path).
//!
//! A [`Handoff`] guards a table `T` (the waiters' slots) with a mutex and a condition
//! variable. A waiter calls [`Handoff::wait_turn`]: it gets its message out of the
//! table if it is there; otherwise, if nobody reads, it becomes the *reader* and gets
//! the role as a guard, a [`Reader`]; otherwise it sleeps until woken (or its
//! deadline). The reader reads messages outside the lock and hands each to
//! [`Reader::deliver`], which stores it in the table; when one completes the reader's
//! own wait, the reading role is given up *in the same critical section* and a sleeper,
//! if any, is woken to take it over. [`Reader::give_up`] ends the role on a timeout or
//! failure, likewise waking a sleeper, and so does dropping the [`Reader`]: a reader
//! that unwinds (a panic in its own code, or in a closure it passed to `deliver`, such
//! as the RPC client's decoding of a response) never keeps the role. Sleepers are
//! counted, so nobody makes a wake-up system call while nobody sleeps, and no wake-up is
//! lost: every change a sleeper waits for happens under the lock it re-checks under
//! (modelled in `src/rpc/tests/loom_handoff.rs`).
//!
//! A panic in a closure run under the lock (`take`, or `deliver`'s and `give_up`'s
//! `f`) is caught, the lock released, and the panic resumed: the mutex is never
//! poisoned (the table is left as the closure left it).

use core::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::Instant;

use crate::sync::mutex::{Condvar, Mutex, MutexGuard};

struct State<T> {
    table: T,
    /// Someone holds the reading role (a [`Reader`] with `held`).
    reading: bool,
    /// Threads asleep on the condition variable.
    sleepers: usize,
}

/// A table of waiters' slots and the reading role over it (see the module docs).
pub struct Handoff<T> {
    state: Mutex<State<T>>,
    cv: Condvar,
}

/// What [`Handoff::wait_turn`] decided.
#[derive(Debug)]
pub enum Turn<'a, T, R> {
    /// The waiter's `take` got this.
    Ready(R),
    /// Nobody was reading: the caller now holds the reading role, and must read and
    /// [`deliver`](Reader::deliver) until it is done, or [`give_up`](Reader::give_up)
    /// (dropping the [`Reader`] gives up too).
    Read(Reader<'a, T>),
    /// The deadline passed first.
    TimedOut,
}

/// The reading role of a [`Handoff`], held by one waiter at a time. Dropping it while
/// it still holds the role (the reader returned early, or is unwinding from a panic)
/// gives the role up and wakes the sleepers, so one of them takes over.
#[must_use = "dropping the reader gives the reading role up"]
pub struct Reader<'a, T> {
    handoff: &'a Handoff<T>,
    /// Still holds the role: cleared when `deliver` completed the reader's own wait.
    held: bool,
}

/// Runs `f` on the state under the lock `s` and returns the lock with `f`'s result. If
/// `f` panics, the lock is released before the panic goes on, without poisoning the
/// mutex: later lockers (the unwinding reader's [`Reader`] among them) need no poison
/// check, and loom's mutex, which panics on any lock after a panic under it, can model
/// the unwinding reader.
fn run_locked<'m, S, R>(
    mut s: MutexGuard<'m, S>,
    f: impl FnOnce(&mut S) -> R,
) -> (MutexGuard<'m, S>, R) {
    match catch_unwind(AssertUnwindSafe(|| f(&mut s))) {
        Ok(r) => (s, r),
        Err(panic) => {
            drop(s);
            resume_unwind(panic)
        }
    }
}

impl<T> Handoff<T> {
    /// A hand-off over `table`.
    pub fn new(table: T) -> Self {
        Self {
            state: Mutex::new(State {
                table,
                reading: false,
                sleepers: 0,
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the table under the lock (to register or remove a slot).
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        run_locked(self.lock(), |st| f(&mut st.table)).1
    }

    /// Wakes the sleepers, if any.
    fn wake(&self, s: &State<T>) {
        if s.sleepers > 0 {
            self.cv.notify_all();
        }
    }

    /// Waits for `take` to get something from the table: returns it, or makes the
    /// caller the reader, or times out at `deadline`.
    ///
    /// # Panics
    ///
    /// If `take` panics (the panic goes on to the caller; the lock is released).
    ///
    /// # Examples
    ///
    /// See the [module docs](self).
    pub fn wait_turn<R>(
        &self,
        deadline: Option<Instant>,
        mut take: impl FnMut(&mut T) -> Option<R>,
    ) -> Turn<'_, T, R> {
        let mut s = self.lock();
        loop {
            let r;
            (s, r) = run_locked(s, |st| take(&mut st.table));
            if let Some(r) = r {
                return Turn::Ready(r);
            }
            if !s.reading {
                s.reading = true;
                return Turn::Read(Reader {
                    handoff: self,
                    held: true,
                });
            }
            let left = match deadline {
                None => None,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Turn::TimedOut;
                    }
                    Some(d - now)
                }
            };
            s.sleepers += 1;
            s = match left {
                None => self.cv.wait(s).unwrap_or_else(|p| p.into_inner()),
                Some(left) => {
                    self.cv
                        .wait_timeout(s, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            s.sleepers -= 1;
        }
    }
}

impl<T> Reader<'_, T> {
    /// Hands over one message: `f` stores it in the table and returns what the reader
    /// itself waited for, if this completed it; then the reader is done and the role
    /// passes on (deliver nothing more). Sleepers are woken either way (the message may
    /// be theirs).
    ///
    /// # Panics
    ///
    /// If `f` panics: the panic goes on to the caller, the lock is released, and the
    /// role is given up when this `Reader` is dropped on the way out (waking a sleeper
    /// to take it over).
    ///
    /// # Examples
    ///
    /// See the [module docs](self).
    pub fn deliver<R>(&mut self, f: impl FnOnce(&mut T) -> Option<R>) -> Option<R> {
        debug_assert!(self.held, "deliver after the reading role passed on");
        let h = self.handoff;
        let (mut s, r) = run_locked(h.lock(), |st| f(&mut st.table));
        if r.is_some() {
            s.reading = false;
            self.held = false;
        }
        h.wake(&s);
        r
    }

    /// Stops reading (the deadline passed, or the source failed: `f` records that in
    /// the table) and returns what `f` returns.
    ///
    /// # Panics
    ///
    /// If `f` panics; the role is given up all the same.
    pub fn give_up<R>(mut self, f: impl FnOnce(&mut T) -> R) -> R {
        let h = self.handoff;
        let mut s = h.lock();
        s.reading = false;
        self.held = false;
        // On a panic in `f` the role is given up already, but the sleepers must still
        // hear of it: wake them before the panic goes on.
        let r = catch_unwind(AssertUnwindSafe(|| f(&mut s.table)));
        h.wake(&s);
        drop(s);
        r.unwrap_or_else(|panic| resume_unwind(panic))
    }
}

impl<T> Drop for Reader<'_, T> {
    fn drop(&mut self) {
        if self.held {
            let h = self.handoff;
            let mut s = h.lock();
            s.reading = false;
            h.wake(&s);
        }
    }
}

impl<T> fmt::Debug for Reader<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader").field("held", &self.held).finish()
    }
}

impl<T: fmt::Debug> fmt::Debug for Handoff<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("Handoff")
            .field("table", &s.table)
            .field("reading", &s.reading)
            .field("sleepers", &s.sleepers)
            .finish()
    }
}

/// The examples of the items above, run as tests (the module is crate-private, so
/// they cannot be doctests).
#[cfg(all(test, not(shmlink_loom)))]
mod examples {
    #[test]
    fn a_waiter_reads_its_own_answer() {
        use crate::rpc::handoff::{Handoff, Turn};
        use std::collections::HashMap;

        // One thread, one message source: the waiter reads its own answer.
        let h = Handoff::new(HashMap::<u64, u64>::new());
        let mut source = vec![(7u64, 49u64)].into_iter();
        let answer = match h.wait_turn(None, |t| t.remove(&7)) {
            Turn::Ready(v) => v,
            Turn::Read(mut reader) => loop {
                let (id, v) = source.next().expect("a message");
                if let Some(v) = reader.deliver(|t| {
                    t.insert(id, v);
                    t.remove(&7)
                }) {
                    break v;
                }
            },
            Turn::TimedOut => unreachable!("no deadline"),
        };
        assert_eq!(answer, 49);
    }

    #[test]
    fn a_dropped_reader_passes_the_role_on() {
        use crate::rpc::handoff::{Handoff, Turn};

        let h = Handoff::new(Vec::<u32>::new());
        let Turn::Read(reader) = h.wait_turn(None, |v| v.pop()) else {
            unreachable!()
        };
        // Nothing to read after all (or a panic unwinds through here): the role passes on.
        drop(reader);
        assert!(matches!(h.wait_turn(None, |v| v.pop()), Turn::Read(_)));
    }

    #[test]
    fn handoff_new() {
        use crate::rpc::handoff::Handoff;

        let h = Handoff::new(vec![1u32]);
        assert_eq!(h.with(|t| t.len()), 1);
    }

    #[test]
    fn handoff_with() {
        use crate::rpc::handoff::Handoff;

        let h = Handoff::new(Vec::<u32>::new());
        h.with(|t| t.push(3));
        assert_eq!(h.with(|t| t.pop()), Some(3));
    }

    #[test]
    fn reader_give_up() {
        use crate::rpc::handoff::{Handoff, Turn};

        let h = Handoff::new(Vec::<u32>::new());
        let Turn::Read(reader) = h.wait_turn(None, |v| v.pop()) else {
            unreachable!()
        };
        // The source failed: say so to every waiter.
        assert_eq!(
            reader.give_up(|t| {
                t.push(0);
                t.len()
            }),
            1
        );
    }
}

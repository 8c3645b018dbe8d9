//! The reading role: many threads wait for their own messages from one source that
//! only one of them may read at a time (the RPC client's receive path).
//!
//! A [`Handoff`] guards a table `T` (the waiters' slots) with a mutex and a condition
//! variable. A waiter calls [`Handoff::wait_turn`]: it gets its message out of the
//! table if it is there; otherwise, if nobody reads, it becomes the *reader*; otherwise
//! it sleeps until woken (or its deadline). The reader reads messages outside the lock
//! and hands each to [`Handoff::deliver`], which stores it in the table; when one
//! completes the reader's own wait, the reading role is given up *in the same critical
//! section* and a sleeper, if any, is woken to take it over. [`Handoff::give_up`] ends
//! the role on a timeout or failure, likewise waking a sleeper. Sleepers are counted,
//! so nobody makes a wake-up system call while nobody sleeps, and no wake-up is lost:
//! every change a sleeper waits for happens under the lock it re-checks under
//! (modelled in `loom-tests/handoff.rs`).
//!
//! # Examples
//!
//! ```
//! use std::collections::HashMap;
//! use shmlink::sync::handoff::{Handoff, Turn};
//!
//! // One thread, one message source: the waiter reads its own answer.
//! let h = Handoff::new(HashMap::<u64, u64>::new());
//! let mut source = vec![(7u64, 49u64)].into_iter();
//! let answer = loop {
//!     match h.wait_turn(None, |t| t.remove(&7)) {
//!         Turn::Ready(v) => break v,
//!         Turn::Read => {
//!             let (id, v) = source.next().expect("a message");
//!             if let Some(v) = h.deliver(|t| { t.insert(id, v); t.remove(&7) }) {
//!                 break v;
//!             }
//!         }
//!         Turn::TimedOut => unreachable!("no deadline"),
//!     }
//! };
//! assert_eq!(answer, 49);
//! ```

use core::fmt;
use std::time::Instant;

use super::lock::{Condvar, Mutex, MutexGuard};

struct State<T> {
    table: T,
    /// Someone holds the reading role.
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
#[derive(Debug, PartialEq, Eq)]
pub enum Turn<R> {
    /// The waiter's `take` got this.
    Ready(R),
    /// Nobody was reading: the caller now holds the reading role, and must read and
    /// [`deliver`](Handoff::deliver) until it is done, or [`give_up`](Handoff::give_up).
    Read,
    /// The deadline passed first.
    TimedOut,
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
        f(&mut self.lock().table)
    }

    /// Wakes the sleepers, if any.
    fn wake(&self, s: &State<T>) {
        if s.sleepers > 0 {
            self.cv.notify_all();
        }
    }

    /// Waits for `take` to get something from the table: returns it, or makes the
    /// caller the reader, or times out at `deadline`.
    pub fn wait_turn<R>(
        &self,
        deadline: Option<Instant>,
        mut take: impl FnMut(&mut T) -> Option<R>,
    ) -> Turn<R> {
        let mut s = self.lock();
        loop {
            if let Some(r) = take(&mut s.table) {
                return Turn::Ready(r);
            }
            if !s.reading {
                s.reading = true;
                return Turn::Read;
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

    /// The reader hands over one message: `f` stores it in the table and returns what
    /// the reader itself waited for, if this completed it; then the reader is done and
    /// the role passes on. Sleepers are woken either way (the message may be theirs).
    pub fn deliver<R>(&self, f: impl FnOnce(&mut T) -> Option<R>) -> Option<R> {
        let mut s = self.lock();
        let r = f(&mut s.table);
        if r.is_some() {
            s.reading = false;
        }
        self.wake(&s);
        r
    }

    /// The reader stops reading (its deadline passed, or the source failed: `f`
    /// records that in the table) and returns what `f` returns.
    pub fn give_up<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut s = self.lock();
        s.reading = false;
        let r = f(&mut s.table);
        self.wake(&s);
        r
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

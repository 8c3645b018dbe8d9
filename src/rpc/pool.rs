//! The RPC server's job queue: connection readers push calls, a fixed pool of workers
//! takes them.
//!
//! A [`JobQueue`] is a bounded FIFO behind a mutex with two condition variables, one
//! per kind of sleeper: workers sleep on `work` until a job comes, readers sleep on
//! `room` while the queue is full (back-pressure on their clients). Each sleeper is
//! counted, and a change wakes **one** sleeper of the kind that waits for it, only
//! if one sleeps: a push wakes one idle worker, a pop wakes one blocked reader. (One
//! condition variable for both, woken with `notify_all` on every push and pop, woke
//! the whole pool for every call: with the 40-odd workers of a lock node's peer server,
//! each call paid for 40 context switches.) No wake-up is lost, because a sleeper
//! re-checks its condition under the lock every change is made under, before it
//! sleeps: a worker pops before it sleeps, a reader looks for room. Closing wakes
//! everyone. Modelled in `src/rpc/tests/loom_pool.rs`.

use std::collections::VecDeque;

use crate::sync::mutex::{Condvar, Mutex, MutexGuard};

struct State<J> {
    jobs: VecDeque<J>,
    closed: bool,
    /// Workers asleep on `work`.
    idle: usize,
    /// Readers asleep on `room`.
    blocked: usize,
    /// Set by [`JobQueue::abort`]: readers stop waiting for room.
    aborting: bool,
}

/// A bounded job queue shared by readers and workers (see the module docs).
pub(crate) struct JobQueue<J> {
    state: Mutex<State<J>>,
    work: Condvar,
    room: Condvar,
    cap: usize,
}

impl<J> JobQueue<J> {
    /// An open queue holding at most `cap` jobs (at least one) before a push waits.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                closed: false,
                idle: 0,
                blocked: 0,
                aborting: false,
            }),
            work: Condvar::new(),
            room: Condvar::new(),
            cap: cap.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<J>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `job`, first waiting while the queue is full, unless it is closed or
    /// aborting (then the job goes in regardless: it is answered by the worker that
    /// takes it, or dropped with the queue).
    pub(crate) fn push(&self, job: J) {
        let mut s = self.lock();
        while s.jobs.len() >= self.cap && !s.closed && !s.aborting {
            s.blocked += 1;
            s = self.room.wait(s).unwrap_or_else(|p| p.into_inner());
            s.blocked -= 1;
        }
        s.jobs.push_back(job);
        let wake = s.idle > 0;
        drop(s);
        if wake {
            self.work.notify_one();
        }
    }

    /// The next job, waiting for one; `None` once the queue is closed and empty.
    pub(crate) fn pop(&self) -> Option<J> {
        let mut s = self.lock();
        loop {
            if let Some(job) = s.jobs.pop_front() {
                let wake = s.blocked > 0;
                drop(s);
                if wake {
                    self.room.notify_one();
                }
                return Some(job);
            }
            if s.closed {
                return None;
            }
            s.idle += 1;
            s = self.work.wait(s).unwrap_or_else(|p| p.into_inner());
            s.idle -= 1;
        }
    }

    /// Readers stop waiting for room (the server is being torn down).
    pub(crate) fn abort(&self) {
        self.lock().aborting = true;
        self.room.notify_all();
    }

    /// Closes the queue: workers leave once it is empty, readers stop waiting.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.work.notify_all();
        self.room.notify_all();
    }
}

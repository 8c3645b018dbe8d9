//! The lock node's threads for blocking waits: reading a request stream from an
//! arbiter, waiting for the answers of a batch of calls to a peer.
//!
//! Such a wait lasts from microseconds (a fence call's answer) to two leases (a held
//! lock's request stream), and one starts for every acquisition, so a thread started
//! for each (tens of microseconds, on the path of every grant) is too slow, and a
//! fixed pool too small or too big. [`Tasks`] keeps the threads it started: a task
//! goes to an idle one if there is one, else to a new thread, which afterwards waits
//! for more work and ends after [`IDLE`] without any.
//!
//! A task goes to an idle thread only if one is idle and not yet claimed by an earlier
//! task (`idle > tasks.len()`): a task queued behind a long one (a stream that lasts a
//! lease) would wait for it. Modelled in `src/dlock/tests/loom_tasks.rs` (loom's
//! condition variable never times out, so the idle threads' ending is not).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::sync::mutex::{Condvar, Mutex, MutexGuard};

/// How long a thread waits for a task before it ends.
pub(crate) const IDLE: Duration = Duration::from_secs(10);

type Task = Box<dyn FnOnce() + Send>;

struct State {
    tasks: VecDeque<Task>,
    /// Threads waiting for a task (some may have been handed one already: those
    /// not yet claimed are `idle - tasks.len()`).
    idle: usize,
    closed: bool,
}

/// A growing set of threads for blocking waits (see the module docs).
pub(crate) struct Tasks {
    state: Mutex<State>,
    cv: Condvar,
    name: String,
}

impl Tasks {
    /// No threads yet; each one started is named `name`.
    pub(crate) fn new(name: String) -> Arc<Tasks> {
        Arc::new(Tasks {
            state: Mutex::new(State {
                tasks: VecDeque::new(),
                idle: 0,
                closed: false,
            }),
            cv: Condvar::new(),
            name,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `task` on an idle thread, or on a new one.
    ///
    /// # Errors
    ///
    /// The thread could not be started (the task is dropped unrun), or the set is
    /// closed.
    pub(crate) fn run(
        self: &Arc<Self>,
        task: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        let mut s = self.lock();
        if s.closed {
            return Err(std::io::Error::other("the node is shutting down"));
        }
        if s.idle > s.tasks.len() {
            s.tasks.push_back(Box::new(task));
            drop(s);
            self.cv.notify_one();
            return Ok(());
        }
        drop(s);
        let this = self.clone();
        spawn(&self.name, move || {
            task();
            this.serve();
        })
    }

    /// A thread's loop after its first task.
    fn serve(&self) {
        let mut s = self.lock();
        loop {
            if let Some(task) = s.tasks.pop_front() {
                drop(s);
                task();
                s = self.lock();
                continue;
            }
            if s.closed {
                return;
            }
            s.idle += 1;
            let (g, waited) = self
                .cv
                .wait_timeout(s, IDLE)
                .unwrap_or_else(|p| p.into_inner());
            s = g;
            s.idle -= 1;
            if waited.timed_out() && s.tasks.is_empty() {
                return;
            }
        }
    }

    /// No more tasks; idle threads end (running ones end with their task).
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.cv.notify_all();
    }
}

#[cfg(not(shmlink_loom))]
fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map(drop)
}

#[cfg(shmlink_loom)]
#[allow(clippy::unnecessary_wraps)]
fn spawn(_name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    loom::thread::spawn(f);
    Ok(())
}

#[cfg(all(test, not(shmlink_loom)))]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn tasks_reuse_idle_threads_and_start_new_ones_when_none_is_idle() {
        let tasks = Tasks::new("test-task".into());
        let (tx, rx) = mpsc::channel();
        // A long task holds its thread: the next one needs another thread.
        let (release, hold) = mpsc::channel::<()>();
        let t = tx.clone();
        tasks
            .run(move || {
                let _ = hold.recv();
                t.send(std::thread::current().id()).unwrap();
            })
            .unwrap();
        let t = tx.clone();
        tasks
            .run(move || t.send(std::thread::current().id()).unwrap())
            .unwrap();
        let second = rx.recv().unwrap();
        release.send(()).unwrap();
        let first = rx.recv().unwrap();
        assert_ne!(first, second);
        // Both are idle now (give them time to get there): sequential tasks reuse them.
        while tasks.lock().idle < 2 {
            std::thread::yield_now();
        }
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let t = tx.clone();
            tasks
                .run(move || t.send(std::thread::current().id()).unwrap())
                .unwrap();
            seen.insert(rx.recv().unwrap());
        }
        assert!(seen.iter().all(|id| *id == first || *id == second));
        tasks.close();
        assert!(tasks.run(|| {}).is_err());
    }
}

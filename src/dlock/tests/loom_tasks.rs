//! loom models of a lock node's threads for blocking waits (`shmlink::dlock::tasks`):
//! a task goes to an idle thread not yet claimed, else to a new one. A task left
//! waiting for a thread that is busy for good, an idle thread not woken, or one not
//! woken by `close` shows up as a loom deadlock.

use crate::dlock::tasks::Tasks;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::{Arc, Condvar, Mutex};

/// A count that a waiter can wait on.
#[derive(Default)]
struct Done {
    n: Mutex<usize>,
    cv: Condvar,
}

impl Done {
    fn add(&self) {
        *self.n.lock().unwrap() += 1;
        self.cv.notify_all();
    }
    fn wait_for(&self, want: usize) {
        let mut n = self.n.lock().unwrap();
        while *n < want {
            n = self.cv.wait(n).unwrap();
        }
    }
}

/// A first task ends (its thread goes idle, or is about to); then a long task that
/// lasts until a third one ran, and that third one, are given out. The third must not
/// be queued for the thread the long one holds: it gets the idle thread if that one is
/// free, else a new one. Every task runs once, and `close` ends every thread. Catches:
/// claiming an idle thread already claimed (`idle > 0` instead of `idle >
/// tasks.len()`: the third waits for the long one, which waits for it); no wake-up for
/// the idle thread a task is queued for; `close` that wakes nobody.
#[test]
fn a_task_never_waits_behind_a_long_one() {
    loom::model(|| {
        let tasks = Tasks::new("loom-task".into());
        let done = Arc::new(Done::default());
        let ran = Arc::new([
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        ]);
        let third_ran = Arc::new(AtomicBool::new(false));
        let third_done = Arc::new(Done::default());
        {
            let (done, ran) = (done.clone(), ran.clone());
            tasks
                .run(move || {
                    ran[0].fetch_add(1, Ordering::Relaxed);
                    done.add();
                })
                .unwrap();
        }
        done.wait_for(1);
        {
            let (done, ran, third_done) = (done.clone(), ran.clone(), third_done.clone());
            tasks
                .run(move || {
                    third_done.wait_for(1); // a stream that lasts until the third ran
                    ran[1].fetch_add(1, Ordering::Relaxed);
                    done.add();
                })
                .unwrap();
        }
        {
            let (done, ran, third_ran, third_done) = (
                done.clone(),
                ran.clone(),
                third_ran.clone(),
                third_done.clone(),
            );
            tasks
                .run(move || {
                    ran[2].fetch_add(1, Ordering::Relaxed);
                    third_ran.store(true, Ordering::Relaxed);
                    third_done.add();
                    done.add();
                })
                .unwrap();
        }
        done.wait_for(3);
        tasks.close();
        assert!(third_ran.load(Ordering::Relaxed));
        for r in ran.iter() {
            assert_eq!(r.load(Ordering::Relaxed), 1);
        }
    });
}

//! Closing a lock wakes every call of the process blocked on it with `Closed`: a
//! semaphore's `acquire` and `permit` (with and without a deadline, on the heap and by
//! name), and a Bakery lock's and mutex's `lock` in both wait modes. A seqlock `read`
//! waiting for a write to end is in the seqlock's unit tests (a write left in progress
//! needs its private state); the rings and channels have theirs in
//! `tests/ring/close.rs` and `tests/channel.rs`.

use std::time::{Duration, Instant};

use shmlink::lock::{AcquireError, BakeryLock, BakeryMutex, LockError, Semaphore};
use shmlink::segment::Segment;
use shmlink::sync::WaitMode;

/// Long enough for the callers to be asleep in their waits.
const SETTLE: Duration = Duration::from_millis(30);
/// A close must end the waits well before this (they would otherwise wait forever or
/// for [`LONG`]).
const WOKEN_WITHIN: Duration = Duration::from_secs(5);
/// The deadline of the waits that have one.
const LONG: Duration = Duration::from_secs(60);

#[test]
#[cfg_attr(miri, ignore = "maps a named segment; real-time sleeps")]
fn close_wakes_every_blocked_semaphore_call() {
    let name = format!("lock-close-sem-{}", std::process::id());
    let named = Semaphore::create(Segment::builder(&name).unlink_on_drop(true), 0, 4).unwrap();
    fn blocked_calls<R>(sem: &Semaphore<R>)
    where
        R: shmlink::region::Region<Shared = shmlink::lock::SemaphoreState> + Send + Sync + 'static,
    {
        type Call<R> = fn(&Semaphore<R>) -> Result<(), AcquireError>;
        let calls: Vec<Call<R>> = vec![
            |s| s.acquire(),
            |s| s.acquire_timeout(LONG),
            |s| s.permit().map(drop),
            |s| s.permit_timeout(LONG).map(drop),
        ];
        let t0 = Instant::now();
        let waiters: Vec<_> = calls
            .into_iter()
            .map(|call| {
                let sem = sem.clone();
                std::thread::spawn(move || call(&sem))
            })
            .collect();
        std::thread::sleep(SETTLE);
        assert_eq!(sem.waiters(), 4, "all four asleep");
        sem.close();
        for w in waiters {
            assert_eq!(w.join().unwrap(), Err(AcquireError::Closed));
        }
        assert!(t0.elapsed() < WOKEN_WITHIN);
        assert_eq!(sem.waiters(), 0, "the woken deregistered");
        // After the close: what would wait returns Closed at once; a permit that is
        // there is still taken.
        assert_eq!(sem.try_acquire(), Err(AcquireError::Closed));
        assert_eq!(sem.acquire(), Err(AcquireError::Closed));
        sem.release(1).unwrap();
        assert!(sem.try_permit().is_ok());
    }
    blocked_calls(&Semaphore::new(0, 4).unwrap());
    blocked_calls(&named);
    // Another handle of the same named semaphore is not closed: it takes the permit
    // given back above, then waits (and times out) for the next.
    let other = Semaphore::open(Segment::builder(&name)).unwrap();
    assert!(!other.is_closed());
    assert_eq!(other.acquire_timeout(Duration::from_millis(1)), Ok(()));
    assert_eq!(
        other.acquire_timeout(Duration::from_millis(1)),
        Err(AcquireError::Timeout)
    );
}

#[test]
#[cfg_attr(miri, ignore = "real-time sleeps")]
fn close_wakes_blocked_bakery_locks_in_both_wait_modes() {
    for mode in [WaitMode::Blocking, WaitMode::Spin] {
        let mut holder = BakeryLock::with_mode(3, mode).unwrap();
        let mut a = holder.join().unwrap();
        let mut b = holder.join().unwrap();
        let closer = holder.closer();
        let held = holder.lock().map_err(LockError::without_guard).unwrap();
        let t0 = Instant::now();
        let wa = std::thread::spawn(move || {
            let r = a.lock().map(drop).map_err(LockError::without_guard);
            (r, a)
        });
        let wb = std::thread::spawn(move || {
            let r = b
                .lock_timeout(LONG)
                .map(drop)
                .map_err(LockError::without_guard);
            (r, b)
        });
        std::thread::sleep(SETTLE);
        closer.close();
        let (ra, mut a) = wa.join().unwrap();
        let (rb, _b) = wb.join().unwrap();
        assert!(matches!(ra, Err(LockError::Closed)), "{mode:?}: {ra:?}");
        assert!(matches!(rb, Err(LockError::Closed)), "{mode:?}: {rb:?}");
        assert!(t0.elapsed() < WOKEN_WITHIN);
        // The holder still holds; once it lets go, a lock that need not wait works.
        assert!(held.still_held());
        drop(held);
        assert!(a.try_lock().is_ok(), "{mode:?}");
    }
}

#[test]
#[cfg_attr(miri, ignore = "real-time sleeps")]
fn close_wakes_a_blocked_bakery_mutex() {
    let mut m = BakeryMutex::new(2, 5u64).unwrap();
    let mut other = m.join().unwrap();
    let closer = other.closer();
    let guard = m.lock().map_err(LockError::without_guard).unwrap();
    let waiter = std::thread::spawn(move || {
        other
            .lock()
            .map(|g| g.get())
            .map_err(LockError::without_guard)
    });
    std::thread::sleep(SETTLE);
    closer.close();
    assert!(matches!(waiter.join().unwrap(), Err(LockError::Closed)));
    assert_eq!(guard.get(), 5);
}

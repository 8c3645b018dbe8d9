//! Process-shared futex wait and wake on an [`AtomicU32`] in shared memory.
//!
//! These use the **shared** futex operations (no `FUTEX_PRIVATE_FLAG`): the kernel keys
//! the word by its physical page, so a waiter in one process is woken by a waker in
//! another. (std and parking_lot use the private ops, which only work in-process.)
//!
//! A wait returns on a wake, on a signal, spuriously, or when the word no longer holds
//! `expected`: callers always loop and re-check their condition. Every wait takes a
//! timeout, because the process that should wake us may be dead.
//!
//! Under `--cfg shmlink_loom` the pair is modelled with one loom mutex and condvar:
//! the check of the word and the sleep are atomic with respect to `wake` (as in the
//! kernel), and the timeout is ignored, so a lost wake-up shows up as a deadlock.

use std::time::{Duration, Instant};

use super::atomic::AtomicU32;

/// Why [`wait`] returned.
///
/// # Examples
///
/// ```
/// use shmlink::sync::atomic::AtomicU32;
/// use shmlink::sync::futex::{self, WaitResult};
/// use std::time::Duration;
///
/// let word = AtomicU32::new(0);
/// match futex::wait(&word, 0, Duration::from_millis(1)) {
///     WaitResult::Woken => {}    // woken, or spurious: re-check the condition
///     WaitResult::TimedOut => {} // nobody woke us in time
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitResult {
    /// Woken, interrupted, spurious, or the word had already changed: re-check.
    Woken,
    /// The timeout elapsed.
    TimedOut,
}

/// Sleeps while `word` holds `expected`, for at most `timeout`.
///
/// # Examples
///
/// ```
/// use shmlink::sync::atomic::AtomicU32;
/// use shmlink::sync::futex;
/// use std::time::Duration;
///
/// let word = AtomicU32::new(1);
/// // The word is not 0, so this returns at once.
/// assert_eq!(futex::wait(&word, 0, Duration::from_secs(1)), futex::WaitResult::Woken);
/// assert_eq!(futex::wait(&word, 1, Duration::from_millis(1)), futex::WaitResult::TimedOut);
/// ```
#[cfg(not(shmlink_loom))]
pub fn wait(word: &AtomicU32, expected: u32, timeout: Duration) -> WaitResult {
    wait_until(word, expected, Instant::now().checked_add(timeout))
}

/// Sleeps while `word` holds `expected`, until `deadline` (`None`: until woken).
///
/// The deadline is absolute (CLOCK_MONOTONIC, `FUTEX_WAIT_BITSET`), so a wait that a
/// signal interrupts and the caller retries never waits past it. A deadline already
/// passed returns [`WaitResult::TimedOut`] without a system call.
///
/// # Examples
///
/// ```
/// use shmlink::sync::atomic::AtomicU32;
/// use shmlink::sync::futex::{self, WaitResult};
/// use std::time::{Duration, Instant};
///
/// let word = AtomicU32::new(0);
/// let deadline = Instant::now() + Duration::from_millis(5);
/// // Loop as callers do: re-check the condition after every return.
/// while word.load(shmlink::sync::atomic::Ordering::Acquire) == 0 {
///     if futex::wait_until(&word, 0, Some(deadline)) == WaitResult::TimedOut {
///         break;
///     }
/// }
/// assert!(Instant::now() >= deadline);
/// ```
#[cfg(not(shmlink_loom))]
pub fn wait_until(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> WaitResult {
    let abs = match deadline {
        None => None,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return WaitResult::TimedOut;
            }
            Some(monotonic_after(left))
        }
    };
    let ts_ptr = abs
        .as_ref()
        .map_or(core::ptr::null(), |ts| ts as *const libc::timespec);
    // SAFETY: `word` is a live, 4-byte aligned u32 for the duration of the call; the
    // timespec (if any) lives on our stack; FUTEX_WAIT_BITSET with a full bitset
    // reads only those, compares the word atomically with going to sleep, and takes an
    // absolute CLOCK_MONOTONIC deadline. No FUTEX_PRIVATE_FLAG: waiters and wakers may
    // be in different processes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT_BITSET,
            expected,
            ts_ptr,
            core::ptr::null::<u32>(),
            // The kernel reads val3 as `u32`; libc declares the constant as `c_int`.
            libc::FUTEX_BITSET_MATCH_ANY as u32,
        )
    };
    if r == 0 {
        return WaitResult::Woken;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ETIMEDOUT) => WaitResult::TimedOut,
        // EAGAIN: the word changed before we slept; EINTR: a signal. Both: re-check
        // (the absolute deadline does not move).
        errno => {
            debug_assert!(
                matches!(errno, Some(libc::EAGAIN | libc::EINTR)),
                "futex wait: {errno:?}"
            );
            WaitResult::Woken
        }
    }
}

/// Sleeps until any of `words` no longer holds its expected value (or a wake on
/// one of them), until `deadline`. At most 128 words.
///
/// Uses `futex_waitv` (Linux 5.16+; shared, not PRIVATE, 32-bit words, absolute
/// CLOCK_MONOTONIC deadline). On an older kernel it sleeps on the first word for at
/// most 1 ms at a time, so a wake on another word is seen within a millisecond.
///
/// # Examples
///
/// ```
/// use shmlink::sync::atomic::AtomicU32;
/// use shmlink::sync::futex::{self, WaitResult};
/// use std::time::{Duration, Instant};
///
/// let (a, b) = (AtomicU32::new(0), AtomicU32::new(7));
/// // `b` does not hold 0: returns at once.
/// assert_eq!(futex::wait_any(&[(&a, 0), (&b, 0)], None), WaitResult::Woken);
/// let deadline = Instant::now() + Duration::from_millis(2);
/// assert_eq!(futex::wait_any(&[(&a, 0), (&b, 7)], Some(deadline)), WaitResult::TimedOut);
/// ```
#[cfg(not(shmlink_loom))]
pub fn wait_any(words: &[(&AtomicU32, u32)], deadline: Option<Instant>) -> WaitResult {
    /// `struct futex_waitv` from `<linux/futex.h>`.
    #[repr(C)]
    struct FutexWaitv {
        val: u64,
        uaddr: u64,
        flags: u32,
        reserved: u32,
    }
    /// FUTEX2_SIZE_U32: 32-bit futex words (and no FUTEX2_PRIVATE).
    const FUTEX2_SIZE_U32: u32 = 2;
    static UNSUPPORTED: crate::sync::atomic::AtomicBool =
        crate::sync::atomic::AtomicBool::new(false);

    let Some(&(first, first_expected)) = words.first() else {
        return WaitResult::TimedOut;
    };
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    if left.is_some_and(|l| l.is_zero()) {
        return WaitResult::TimedOut;
    }
    if words.len() > 128 || UNSUPPORTED.load(core::sync::atomic::Ordering::Relaxed) {
        let slice = Instant::now() + Duration::from_millis(1);
        let until = deadline.map_or(slice, |d| d.min(slice));
        return match wait_until(first, first_expected, Some(until)) {
            WaitResult::TimedOut if deadline.is_some_and(|d| Instant::now() >= d) => {
                WaitResult::TimedOut
            }
            _ => WaitResult::Woken,
        };
    }
    let waiters: Vec<FutexWaitv> = words
        .iter()
        .map(|(w, expected)| FutexWaitv {
            val: u64::from(*expected),
            uaddr: w.as_ptr() as u64,
            flags: FUTEX2_SIZE_U32,
            reserved: 0,
        })
        .collect();
    let abs = left.map(monotonic_after);
    let ts_ptr = abs
        .as_ref()
        .map_or(core::ptr::null(), |ts| ts as *const libc::timespec);
    // SAFETY: `waiters` describes live, 4-byte aligned u32 words that outlive the call
    // (borrowed for its duration); the timespec (if any) is on our stack; the kernel
    // only reads both. Flags 0, clock CLOCK_MONOTONIC, absolute deadline.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            waiters.as_ptr(),
            waiters.len() as libc::c_uint,
            0 as libc::c_uint,
            ts_ptr,
            libc::CLOCK_MONOTONIC,
        )
    };
    if r >= 0 {
        return WaitResult::Woken;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ETIMEDOUT) => WaitResult::TimedOut,
        Some(libc::ENOSYS) => {
            UNSUPPORTED.store(true, core::sync::atomic::Ordering::Relaxed);
            WaitResult::Woken // the caller re-checks, then takes the fallback
        }
        // EAGAIN (a word changed), EINTR: re-check.
        _ => WaitResult::Woken,
    }
}

/// Sleeps until any of `words` changes (loom model: until a wake; no deadline).
#[cfg(shmlink_loom)]
pub fn wait_any(words: &[(&AtomicU32, u32)], _deadline: Option<Instant>) -> WaitResult {
    use super::atomic::Ordering;
    let f = &*model::FUTEXES;
    let guard = f.lock.lock().unwrap();
    if words
        .iter()
        .any(|(w, expected)| w.load(Ordering::SeqCst) != *expected)
    {
        return WaitResult::Woken;
    }
    drop(f.cv.wait(guard).unwrap());
    WaitResult::Woken
}

/// CLOCK_MONOTONIC now plus `d`, as a timespec.
#[cfg(not(shmlink_loom))]
fn monotonic_after(d: Duration) -> libc::timespec {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass; CLOCK_MONOTONIC always
    // exists on Linux.
    let _ = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0) + u64::from(d.subsec_nanos());
    let secs = i64::try_from(d.as_secs())
        .unwrap_or(i64::MAX / 2)
        .saturating_add(now.tv_sec)
        .saturating_add((nanos / 1_000_000_000) as i64);
    libc::timespec {
        tv_sec: secs,
        // Below 1e9, so it fits.
        tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
    }
}

/// Wakes at most `n` waiters sleeping on `word`; returns how many were woken.
///
/// # Examples
///
/// ```
/// # use shmlink::sync::atomic::{AtomicU32, Ordering};
/// # use shmlink::sync::futex;
/// # use std::{sync::Arc, time::Duration};
/// let word = Arc::new(AtomicU32::new(0));
/// let w = word.clone();
/// let sleeper = std::thread::spawn(move || {
///     while w.load(Ordering::Acquire) == 0 {
///         futex::wait(&w, 0, Duration::from_secs(1));
///     }
/// });
/// word.store(1, Ordering::Release);
/// futex::wake(&word, u32::MAX);
/// sleeper.join().unwrap();
/// ```
#[cfg(not(shmlink_loom))]
pub fn wake(word: &AtomicU32, n: u32) -> usize {
    // The kernel reads `val` as `u32` but then counts wake-ups in an `int`: a count
    // above `i32::MAX` would wake only one waiter, so clamp it, and pass a `u32`.
    let n = n.min(i32::MAX as u32);
    // SAFETY: FUTEX_WAKE only uses the address as a key (it never dereferences it in a
    // way that can fault for a live word); `word` is live and aligned.
    let r = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
    usize::try_from(r).unwrap_or(0)
}

#[cfg(shmlink_loom)]
mod model {
    use loom::sync::{Condvar, Mutex};

    pub(super) struct Futexes {
        pub lock: Mutex<()>,
        pub cv: Condvar,
    }

    loom::lazy_static! {
        pub(super) static ref FUTEXES: Futexes = Futexes { lock: Mutex::new(()), cv: Condvar::new() };
    }
}

/// Sleeps while `word` holds `expected` (loom model: until woken; no timeout).
#[cfg(shmlink_loom)]
pub fn wait(word: &AtomicU32, expected: u32, _timeout: Duration) -> WaitResult {
    wait_until(word, expected, None)
}

/// Sleeps while `word` holds `expected` (loom model: until woken; no deadline).
#[cfg(shmlink_loom)]
pub fn wait_until(word: &AtomicU32, expected: u32, _deadline: Option<Instant>) -> WaitResult {
    use super::atomic::Ordering;
    let f = &*model::FUTEXES;
    let guard = f.lock.lock().unwrap();
    // The kernel reads the word with a full barrier, atomically with queueing us.
    if word.load(Ordering::SeqCst) != expected {
        return WaitResult::Woken;
    }
    drop(f.cv.wait(guard).unwrap());
    WaitResult::Woken
}

/// Wakes waiters (loom model: all of them; extra wake-ups count as spurious).
#[cfg(shmlink_loom)]
pub fn wake(_word: &AtomicU32, _n: u32) -> usize {
    let f = &*model::FUTEXES;
    let _guard = f.lock.lock().unwrap();
    f.cv.notify_all();
    1
}

#[cfg(all(test, not(shmlink_loom)))]
mod tests {
    use super::*;
    use crate::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    #[cfg_attr(miri, ignore = "slow under miri")]
    fn wake_reaches_a_sleeper() {
        let word = Arc::new(AtomicU32::new(0));
        let w = word.clone();
        let t = std::thread::spawn(move || {
            let start = Instant::now();
            while w.load(Ordering::Acquire) == 0 {
                assert!(start.elapsed() < Duration::from_secs(10));
                let _ = wait(&w, 0, Duration::from_secs(1));
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        word.store(1, Ordering::Release);
        wake(&word, 1);
        t.join().unwrap();
    }

    #[test]
    #[cfg_attr(miri, ignore = "real clock")]
    fn absolute_deadlines() {
        let word = AtomicU32::new(3);
        let past = Instant::now();
        assert_eq!(wait_until(&word, 3, Some(past)), WaitResult::TimedOut);
        let deadline = Instant::now() + Duration::from_millis(20);
        while wait_until(&word, 3, Some(deadline)) != WaitResult::TimedOut {}
        assert!(Instant::now() >= deadline);
        assert_eq!(
            wait_until(&word, 2, None),
            WaitResult::Woken,
            "value differs"
        );
    }

    #[test]
    fn wait_times_out_and_returns_on_mismatch() {
        let word = AtomicU32::new(5);
        assert_eq!(wait(&word, 4, Duration::from_secs(5)), WaitResult::Woken);
        assert_eq!(
            wait(&word, 5, Duration::from_millis(2)),
            WaitResult::TimedOut
        );
        assert_eq!(wake(&word, 1), 0);
    }
}

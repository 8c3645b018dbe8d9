//! The stop signal of a running call: cancel and abort flags, a deadline, and stream
//! credits, shared between the thread that reads a connection and the call's handler
//! (the RPC server's per-call control block; public for its loom model).

use std::sync::Arc;
use std::time::Instant;

use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::mutex::{Condvar, Mutex, MutexGuard};

/// Why a handler should stop.
///
/// # Examples
///
/// ```
/// use shmlink::rpc::Stop;
///
/// assert_eq!(Stop::Cancelled.to_string(), "the caller cancelled the call");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The caller dropped the call, or its connection is gone.
    Cancelled,
    /// The call's deadline passed.
    DeadlineExceeded,
    /// The server is shutting down and its grace period ended.
    ShuttingDown,
}

impl core::fmt::Display for Stop {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Stop::Cancelled => "the caller cancelled the call",
            Stop::DeadlineExceeded => "the call's deadline passed",
            Stop::ShuttingDown => "the server is shutting down",
        })
    }
}

impl std::error::Error for Stop {}

/// Per-call control shared by an RPC server's connection reader (which sees cancels and
/// stream credits) and the call's handler. The flags are atomics, so the common checks
/// take no lock; a raised flag is followed by taking the lock and notifying, so a
/// handler waiting under the lock (credits, [`sleep_until`](Self::sleep_until)) never
/// misses it (modelled in `src/rpc/tests/loom_stop.rs`).
#[derive(Debug)]
pub struct StopSignal {
    cancelled: AtomicBool,
    aborted: AtomicBool,
    /// Streams are not paced by credits (inline calls: the transport paces them).
    unlimited: bool,
    credits: Mutex<u64>,
    cv: Condvar,
}

impl StopSignal {
    fn build(credits: u64, unlimited: bool) -> Arc<Self> {
        Arc::new(Self {
            cancelled: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            unlimited,
            credits: Mutex::new(credits),
            cv: Condvar::new(),
        })
    }

    /// A signal with `credits` stream credits to start with.
    pub fn new(credits: u64) -> Arc<Self> {
        Self::build(credits, false)
    }

    fn lock(&self) -> MutexGuard<'_, u64> {
        self.credits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets `flag` and wakes a handler waiting in `wait_for` (the
    /// lock orders the store before its re-check).
    fn raise(&self, flag: &AtomicBool) {
        flag.store(true, Ordering::Release);
        drop(self.lock());
        self.cv.notify_all();
    }

    /// The caller cancelled: wakes a waiting handler.
    pub fn cancel(&self) {
        self.raise(&self.cancelled);
    }

    /// The server aborts the call (shutdown): wakes a waiting handler.
    pub fn abort(&self) {
        self.raise(&self.aborted);
    }

    /// A control block whose streams need no credits.
    pub fn unlimited() -> Arc<Self> {
        Self::build(0, true)
    }

    /// Makes a reused control block ready for the next call.
    pub fn reset(&self) {
        self.cancelled.store(false, Ordering::Relaxed);
    }

    /// The client consumed `n` more stream items: wakes a handler waiting for credit.
    pub fn add_credits(&self, n: u64) {
        let mut c = self.lock();
        *c = c.saturating_add(n);
        drop(c);
        self.cv.notify_all();
    }

    /// Whether the caller cancelled (or the server aborted) the call.
    pub fn is_cancelled_flag(&self) -> bool {
        self.cancelled.load(Ordering::Acquire) || self.aborted.load(Ordering::Acquire)
    }

    /// Takes one stream credit, waiting for the client to grant more.
    ///
    /// # Errors
    ///
    /// The [`Stop`] reason if the call should stop first.
    pub fn take_credit(&self, deadline: Option<Instant>) -> Result<(), Stop> {
        if self.unlimited {
            return match self.stop_reason(deadline) {
                Some(stop) => Err(stop),
                None => Ok(()),
            };
        }
        self.wait_for(deadline, None, |c| {
            if *c > 0 {
                *c -= 1;
                true
            } else {
                false
            }
        })
        .map(|_| ())
    }

    /// Takes one stream credit if there is one, without waiting; `false` if none.
    pub fn try_take_credit(&self) -> bool {
        if self.unlimited {
            return true;
        }
        let mut c = self.lock();
        if *c > 0 {
            *c -= 1;
            true
        } else {
            false
        }
    }

    /// The flags' verdict (no clock read).
    fn flag_reason(&self) -> Option<Stop> {
        if self.aborted.load(Ordering::Acquire) {
            Some(Stop::ShuttingDown)
        } else if self.cancelled.load(Ordering::Acquire) {
            Some(Stop::Cancelled)
        } else {
            None
        }
    }

    /// Why the call should stop, if it should: a raised flag, or `deadline` passed.
    pub fn stop_reason(&self, deadline: Option<Instant>) -> Option<Stop> {
        self.flag_reason().or_else(|| {
            deadline
                .is_some_and(|d| Instant::now() >= d)
                .then_some(Stop::DeadlineExceeded)
        })
    }

    /// Sleeps until `until`, waking early with the reason once the call should stop
    /// (`Ok` if `until` came first).
    ///
    /// # Errors
    ///
    /// The [`Stop`] reason.
    pub fn sleep_until(
        &self,
        deadline: Option<Instant>,
        until: Option<Instant>,
    ) -> Result<(), Stop> {
        self.wait_for(deadline, until, |_| false).map(|_| ())
    }

    /// Waits until `ready(credits)` or a stop reason, or `until`.
    fn wait_for(
        &self,
        deadline: Option<Instant>,
        until: Option<Instant>,
        mut ready: impl FnMut(&mut u64) -> bool,
    ) -> Result<bool, Stop> {
        let mut c = self.lock();
        loop {
            if let Some(stop) = self.stop_reason(deadline) {
                return Err(stop);
            }
            if ready(&mut c) {
                return Ok(true);
            }
            let end = match (deadline, until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match end {
                None => c = self.cv.wait(c).unwrap_or_else(|p| p.into_inner()),
                Some(end) => {
                    let now = Instant::now();
                    if now >= end {
                        if until.is_some_and(|u| now >= u) {
                            return Ok(false);
                        }
                        continue; // the deadline: reported at the top
                    }
                    c = self
                        .cv
                        .wait_timeout(c, end - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }
}

/// The examples of the items above, run as tests (the module is crate-private, so
/// they cannot be doctests).
#[cfg(all(test, not(shmlink_loom)))]
mod examples {
    #[test]
    fn stop_signal_new() {
        use crate::rpc::stop::{Stop, StopSignal};

        let s = StopSignal::new(1);
        assert_eq!(s.take_credit(None), Ok(()));
        s.cancel(); // e.g. from the connection's reader: a waiting handler wakes
        assert_eq!(s.take_credit(None), Err(Stop::Cancelled));
    }
}

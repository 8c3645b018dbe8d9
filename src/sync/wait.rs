//! Waiting for the other side of a ring: spin, yield, then sleep on a shared futex,
//! with a sleepers count so that the waking side makes no system call while nobody
//! sleeps.
//!
//! The handshake (an "eventcount"):
//!
//! | waiter | waker |
//! |--------|-------|
//! | `seq0 = seq.load(Acquire)` | publish (e.g. `tail.store(Release)`) |
//! | `sleepers.fetch_add(1)` | `fence(SeqCst)` |
//! | `fence(SeqCst)` | `if sleepers.load() != 0 {` |
//! | re-check the condition and the peer; if met or gone, leave | `seq.fetch_add(1, Release); futex_wake(seq)` `}` |
//! | `futex_wait(seq, seq0, slice)` | |
//! | `sleepers.fetch_sub(1)` | |
//!
//! The two SeqCst fences order "announce sleeping, then check" against "publish, then
//! check sleepers" (a store-buffering pattern): either the waiter's re-check sees the
//! publication, or the waker sees the sleeper and bumps `seq`, which makes the futex
//! wait return (or not start). The loom model `loom_ring` checks that no wake-up is
//! lost.

use std::time::{Duration, Instant};

use crate::region::ShmSafe;
use crate::sync::atomic::{AtomicU32, Ordering, fence};
use crate::sync::futex;

/// How a ring handle waits when it has to.
///
/// # Examples
///
/// ```
/// use shmlink::ring::Spsc;
/// use shmlink::sync::WaitMode;
///
/// assert_eq!(WaitMode::default(), WaitMode::Blocking);
/// // Lowest latency, at the price of a busy core while waiting:
/// let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
/// assert_eq!(ring.wait_mode(), WaitMode::Spin);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitMode {
    /// Spin briefly, yield, then sleep on a futex (the default). Costs the publishing
    /// side one fence per publication.
    #[default]
    Blocking,
    /// Never sleep: spin (with `spin_loop` hints) until the deadline. Lowest latency;
    /// burns a core while waiting. A ring created in this mode never pays for
    /// wake-ups.
    Spin,
}

impl WaitMode {
    pub(crate) const fn code(self) -> u32 {
        match self {
            WaitMode::Blocking => 0,
            WaitMode::Spin => 1,
        }
    }

    pub(crate) const fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(WaitMode::Blocking),
            1 => Some(WaitMode::Spin),
            _ => None,
        }
    }
}

/// A futex word and the count of processes sleeping on it.
///
/// # Examples
///
/// ```
/// use shmlink::sync::WaitWord;
/// use shmlink::region::ShmSafe;
///
/// // Ring headers hold one per direction, each on its own cache line.
/// let word = WaitWord::new_zeroed();
/// assert_eq!(size_of_val(&word), 8);
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct WaitWord {
    /// Bumped by the waker when it wakes; the futex word.
    seq: AtomicU32,
    /// Waiters announced on `seq`.
    sleepers: AtomicU32,
}

// SAFETY: repr(C), two u32 atomics, no pointers, any bit pattern valid.
unsafe impl ShmSafe for WaitWord {
    const TYPE_NAME: &'static str = "shmlink::sync::WaitWord";
    fn new_zeroed() -> Self {
        Self {
            seq: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
        }
    }
}

/// How often a waiter checks that its peer process is still alive.
#[cfg(not(shmlink_loom))]
const LIVENESS_PERIOD: Duration = Duration::from_millis(10);
/// Longest single futex sleep, so liveness is re-checked even if nobody wakes us.
const SLEEP_SLICE: Duration = Duration::from_millis(10);
/// How long a blocking waiter polls before it starts yielding, then sleeping.
#[cfg_attr(shmlink_loom, allow(dead_code))]
pub const SPIN_FOR: Duration = Duration::from_micros(20);
/// Yields between spinning and sleeping.
const YIELDS: u32 = 4;

/// Why a wait ended without its condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(shmlink_loom, allow(dead_code))]
pub(crate) enum WaitError {
    Timeout,
    Disconnected,
}

impl WaitWord {
    /// Called by the publishing side after it published. No system call unless
    /// someone sleeps.
    #[inline]
    pub(crate) fn notify(&self) {
        // SYNC: SeqCst fence pairs with the waiter's fence after it announced itself
        // (store-buffering: publish; fence; load sleepers  vs  announce; fence; load).
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            self.wake_all();
        }
    }

    /// [`notify`](Self::notify) for a caller that executed a SeqCst fence after its
    /// publication already (the Bakery doorway): only the sleepers check.
    #[inline]
    pub(crate) fn notify_fenced(&self) {
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            self.wake_all();
        }
    }

    /// Announces one sleeper for a wait on several words (`select`); returns the value
    /// of the futex word to sleep against. The caller fences (SeqCst) after announcing
    /// on every word, re-checks its conditions, sleeps with
    /// [`futex::wait_any`](crate::sync::futex::wait_any), then [`retract`](Self::retract)s.
    pub(crate) fn announce(&self) -> (&AtomicU32, u32) {
        // SYNC: Acquire pairs with the waker's Release bump of `seq`, as in `wait_until`.
        let seq = self.seq.load(Ordering::Acquire);
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        (&self.seq, seq)
    }

    /// Withdraws a sleeper announced with [`announce`](Self::announce).
    pub(crate) fn retract(&self) {
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Wakes every sleeper unconditionally (after a disconnect, say).
    #[cold]
    /// Waiters announced now (a statistic for inspection: stale at once).
    pub(crate) fn sleepers(&self) -> u32 {
        self.sleepers.load(Ordering::Relaxed)
    }

    pub(crate) fn wake_all(&self) {
        crate::sync::slow_path!(TRACE, "wake: a futex wake-up system call");
        // SYNC: Release orders our publication before the new seq a sleeper's futex
        // check compares against.
        self.seq.fetch_add(1, Ordering::Release);
        futex::wake(&self.seq, u32::MAX);
    }

    /// Waits until `ready` yields a value, the peer is gone, or `deadline` passes.
    ///
    /// `gone(thorough)`: `false` asks for the cheap check (a closed flag in shared
    /// memory), `true` also checks that the peer process is alive (a `/proc` read,
    /// done every 10 ms at most). After the peer is seen gone, `ready` is tried once
    /// more, so nothing published before the peer left is lost.
    ///
    /// Polling is tight (one `spin_loop` hint between polls) so a spinning waiter sees
    /// a publication within a cache-line transfer; in [`WaitMode::Blocking`] it polls
    /// for [`SPIN_FOR`], yields a few times, then sleeps on the futex.
    #[cold]
    pub(crate) fn wait_until<X>(
        &self,
        mode: WaitMode,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> Option<X>,
        mut gone: impl FnMut(bool) -> bool,
    ) -> Result<X, WaitError> {
        // The clock is first read at the first periodic check, not on entry: most waits
        // end within a few polls, and a clock read costs as much as a message.
        #[cfg(not(shmlink_loom))]
        let mut started: Option<Instant> = None;
        #[cfg(not(shmlink_loom))]
        let mut next_liveness = None;
        // Whether this wait has looked for a dead peer yet: a wait shorter than the
        // liveness period looks once before it reports a timeout, so a caller polling
        // with short timeouts still learns of a death.
        #[cfg(not(shmlink_loom))]
        let mut looked = false;
        let mut polls: u32 = 0;
        let mut yields: u32 = 0;
        loop {
            if let Some(x) = ready() {
                return Ok(x);
            }
            polls = polls.wrapping_add(1);
            // Clock, peer and deadline checks every 64 polls (and on every pass once
            // sleeping, where a pass is already a system call). A poll is bounded (an
            // MPMC attempt looks at most a few hundred times), so a deadline is kept
            // within about a millisecond whatever the ring holds.
            if polls.is_multiple_of(64) || yields > 0 || cfg!(shmlink_loom) {
                if gone(false) {
                    return ready().ok_or(WaitError::Disconnected);
                }
                #[cfg(not(shmlink_loom))]
                {
                    let now = Instant::now();
                    let started = *started.get_or_insert(now);
                    let next = *next_liveness.get_or_insert(now + LIVENESS_PERIOD);
                    if deadline.is_some_and(|d| now >= d) {
                        if !looked && gone(true) {
                            return ready().ok_or(WaitError::Disconnected);
                        }
                        return ready().ok_or(WaitError::Timeout);
                    }
                    if now >= next {
                        next_liveness = Some(now + LIVENESS_PERIOD);
                        looked = true;
                        if gone(true) {
                            return ready().ok_or(WaitError::Disconnected);
                        }
                    }
                    if mode == WaitMode::Blocking && yields == 0 && now - started >= SPIN_FOR {
                        yields = 1;
                    }
                }
                #[cfg(shmlink_loom)]
                if mode == WaitMode::Blocking {
                    // Under loom, go straight to the sleep handshake.
                    yields = YIELDS;
                }
            }
            if mode == WaitMode::Spin || yields == 0 {
                crate::sync::spin_loop();
                continue;
            }
            if yields < YIELDS {
                yields += 1;
                crate::sync::yield_now();
                continue;
            }
            let seq = self.seq.load(Ordering::Acquire);
            self.sleepers.fetch_add(1, Ordering::Relaxed);
            // SYNC: pairs with the fence in `notify` (see module docs).
            fence(Ordering::SeqCst);
            if let Some(x) = ready() {
                self.sleepers.fetch_sub(1, Ordering::Relaxed);
                return Ok(x);
            }
            // A peer that leaves marks itself gone, then bumps `seq` and wakes. If
            // `seq` above already saw that bump, its Acquire makes the mark visible
            // here; otherwise the futex wait sees the new `seq` and returns. Checking
            // only `ready` here would sleep through a disconnect (found by the loom
            // model).
            if gone(false) {
                self.sleepers.fetch_sub(1, Ordering::Relaxed);
                return ready().ok_or(WaitError::Disconnected);
            }
            // Sleep until the caller's deadline, but at most one slice, so a dead peer
            // is noticed even if nobody wakes us.
            let slice_end = Instant::now() + SLEEP_SLICE;
            let until = deadline.map_or(slice_end, |d| d.min(slice_end));
            crate::sync::slow_path!(TRACE, "wait: asleep on the futex");
            futex::wait_until(&self.seq, seq, Some(until));
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

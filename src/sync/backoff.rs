//! Bounded spinning before blocking (after crossbeam's `Backoff` and parking_lot's
//! `SpinWait`), built on the facade so loom sees every spin as a yield point.

use super::{spin_loop, yield_now};

#[cfg(not(shmlink_loom))]
const SPIN_LIMIT: u32 = 6;
#[cfg(not(shmlink_loom))]
const YIELD_LIMIT: u32 = 10;
// Under loom every spin is a scheduling point: keep the model small.
#[cfg(shmlink_loom)]
const SPIN_LIMIT: u32 = 0;
#[cfg(shmlink_loom)]
const YIELD_LIMIT: u32 = 1;

/// Exponential spinning, then yielding, then "go block".
///
/// # Examples
///
/// ```
/// use shmlink::sync::Backoff;
///
/// let mut backoff = Backoff::new();
/// while !backoff.is_completed() {
///     backoff.snooze(); // condition not met yet
/// }
/// // Now sleep on a futex instead of burning the core.
/// ```
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    step: u32,
}

impl Backoff {
    /// A fresh backoff.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::sync::Backoff;
    ///
    /// let backoff = Backoff::new();
    /// assert!(!backoff.is_completed());
    /// ```
    #[inline]
    pub const fn new() -> Self {
        Self { step: 0 }
    }

    /// Starts over (after progress was made).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::sync::Backoff;
    ///
    /// let mut backoff = Backoff::new();
    /// while !backoff.is_completed() {
    ///     backoff.snooze();
    /// }
    /// backoff.reset(); // progress was made: spin again before blocking
    /// assert!(!backoff.is_completed());
    /// ```
    #[inline]
    pub fn reset(&mut self) {
        self.step = 0;
    }

    /// Spins (2^step times) while short, then yields the CPU.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::sync::Backoff;
    /// use shmlink::sync::atomic::{AtomicBool, Ordering};
    ///
    /// let ready = AtomicBool::new(false); // set by another thread, say
    /// let mut backoff = Backoff::new();
    /// while !ready.load(Ordering::Acquire) && !backoff.is_completed() {
    ///     backoff.snooze();
    /// }
    /// // Either `ready`, or time to block instead of spinning.
    /// ```
    #[inline]
    #[cfg_attr(shmlink_loom, allow(clippy::absurd_extreme_comparisons))] // SPIN_LIMIT is 0
    pub fn snooze(&mut self) {
        if self.step <= SPIN_LIMIT {
            for _ in 0..1u32 << self.step {
                spin_loop();
            }
        } else {
            yield_now();
        }
        if self.step <= YIELD_LIMIT {
            self.step += 1;
        }
    }

    /// `true` once spinning and yielding stopped paying: the caller should block.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::sync::Backoff;
    ///
    /// let mut backoff = Backoff::new();
    /// let mut snoozes = 0;
    /// while !backoff.is_completed() {
    ///     backoff.snooze();
    ///     snoozes += 1;
    /// }
    /// assert!(snoozes > 0); // spun and yielded a bounded number of times first
    /// ```
    #[inline]
    pub fn is_completed(&self) -> bool {
        // Under loom, go straight to blocking: the model then explores the sleep
        // handshake itself instead of spin iterations.
        cfg!(shmlink_loom) || self.step > YIELD_LIMIT
    }
}

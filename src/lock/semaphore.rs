//! A counting semaphore for threads and processes: [`Semaphore`].
//!
//! The permit count and the number of registered waiters share one 64-bit word (after
//! glibc's `new_sem`): the value in the low 32 bits, the waiters in the high 32. A
//! release and a waiter's registration are read-modify-writes of that one word, so
//! they are totally ordered and a release can never miss a waiter that registered
//! before it (splitting them into two words is the store-buffering bug musl had).
//!
//! Unlike glibc, sleepers do not wait on the value half of that word: a futex on half
//! of a 64-bit atomic is a mixed-size access that the Rust memory model does not
//! define (and loom cannot check). They sleep on a separate 32-bit `wake_seq`, read
//! before their last look at the value; a release that sees waiters bumps it (Release)
//! and wakes. A sleeper either sees the bump (and re-checks the value) or is queued in
//! the kernel before the wake, which compares the futex word under its own lock. The
//! loom model in `loom-tests/sync.rs` checks that no wake-up is lost.
//!
//! | step | operation | ordering | pairs with |
//! |------|-----------|----------|------------|
//! | take a permit | CAS `word` (value − 1) | Acquire | the release CAS |
//! | release | CAS `word` (value + n) | Release | the taking CAS |
//! | register / deregister a waiter | RMW `word` (± 1 << 32) | Relaxed | (same word: the release's RMW sees it) |
//! | before sleeping | load `wake_seq` | Acquire | the `wake_seq` bump |
//! | release with waiters | `wake_seq.fetch_add(1)` | Release | the sleeper's load |
//!
//! Nothing else is kept: a semaphore has no owner, so permits taken by a process that
//! dies are gone (release them from a supervisor if that matters), and a waiter that
//! dies leaves the waiter count one too high, which costs later releases a wake system
//! call that finds nobody.

use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::region::{HeapRegion, Region, ShmSafe};
use crate::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::sync::{Backoff, futex};

#[cfg(not(shmlink_loom))]
use super::ObjectError;
#[cfg(not(shmlink_loom))]
use crate::region::fingerprint;
#[cfg(not(shmlink_loom))]
use crate::segment::{Kind, SegmentBuilder, ShmRegion};

/// Longest sleep of a waiting `acquire` before it looks at the value again: a
/// releaser that died between adding its permit and waking the sleepers costs a
/// waiter at most this long.
const SLEEP_SLICE: Duration = Duration::from_millis(10);

const WAITER: u64 = 1 << 32;
const VALUE: u64 = WAITER - 1;

/// The shared state of a [`Semaphore`]: 128 bytes, all atomics.
///
/// # Examples
///
/// ```
/// use shmlink::lock::SemaphoreState;
///
/// assert_eq!(size_of::<SemaphoreState>(), 128);
/// ```
#[repr(C, align(128))]
#[derive(Debug)]
pub struct SemaphoreState {
    /// Low 32 bits: permits available. High 32 bits: waiters registered.
    word: AtomicU64,
    /// The futex word sleepers wait on; a release that sees waiters bumps it.
    wake_seq: AtomicU32,
    /// The most permits the semaphore may hold; fixed at creation.
    max: AtomicU32,
}

#[cfg(not(shmlink_loom))]
const _: () = assert!(size_of::<SemaphoreState>() == 128 && align_of::<SemaphoreState>() == 128);

// SAFETY: repr(C) of integer atomics and padding, no pointers; every bit pattern is a
// valid (if perhaps nonsensical) state, and every operation copes with any.
unsafe impl ShmSafe for SemaphoreState {
    const TYPE_NAME: &'static str = "shmlink::lock::SemaphoreState";
    fn new_zeroed() -> Self {
        Self {
            word: AtomicU64::new(0),
            wake_seq: AtomicU32::new(0),
            max: AtomicU32::new(0),
        }
    }
}

impl SemaphoreState {
    /// Sets the initial value and the maximum (creator only, before sharing).
    pub(crate) fn init(&self, initial: u32, max: u32) -> Result<(), SemaphoreConfigError> {
        check(initial, max)?;
        self.max.store(max, Ordering::Relaxed);
        self.word.store(u64::from(initial), Ordering::Relaxed);
        Ok(())
    }
}

fn check(initial: u32, max: u32) -> Result<(), SemaphoreConfigError> {
    if max == 0 {
        Err(SemaphoreConfigError::ZeroMax)
    } else if initial > max {
        Err(SemaphoreConfigError::InitialAboveMax { initial, max })
    } else {
        Ok(())
    }
}

/// Why a semaphore could not be built or opened.
///
/// # Examples
///
/// ```
/// use shmlink::lock::{Semaphore, SemaphoreConfigError};
///
/// assert_eq!(Semaphore::new(0, 0).unwrap_err(), SemaphoreConfigError::ZeroMax);
/// assert_eq!(
///     Semaphore::new(5, 4).unwrap_err(),
///     SemaphoreConfigError::InitialAboveMax { initial: 5, max: 4 }
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SemaphoreConfigError {
    /// A maximum of 0 permits.
    ZeroMax,
    /// More initial permits than the maximum.
    InitialAboveMax {
        /// The initial value asked for.
        initial: u32,
        /// The maximum asked for.
        max: u32,
    },
    /// The shared state holds a maximum of 0: not a semaphore anyone created.
    Corrupt,
    /// `open_or_create` found a live semaphore with another maximum.
    MaxMismatch {
        /// The maximum asked for.
        expected: u32,
        /// The existing semaphore's.
        found: u32,
    },
}

impl std::fmt::Display for SemaphoreConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ZeroMax => f.write_str("a semaphore needs a maximum of at least 1"),
            Self::InitialAboveMax { initial, max } => {
                write!(f, "initial value {initial} is above the maximum {max}")
            }
            Self::Corrupt => f.write_str("the semaphore's shared state is corrupt (maximum 0)"),
            Self::MaxMismatch { expected, found } => write!(
                f,
                "the semaphore has a maximum of {found} permits, not the {expected} asked for"
            ),
        }
    }
}

impl std::error::Error for SemaphoreConfigError {}

/// Why an acquire returned without a permit.
///
/// # Examples
///
/// ```
/// use shmlink::lock::{AcquireError, Semaphore};
/// use std::time::Duration;
///
/// let sem = Semaphore::new(0, 1)?;
/// assert_eq!(sem.try_acquire(), Err(AcquireError::WouldBlock));
/// assert_eq!(sem.acquire_timeout(Duration::from_millis(1)), Err(AcquireError::Timeout));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireError {
    /// No permit right now (`try_acquire`).
    WouldBlock,
    /// No permit before the deadline.
    Timeout,
}

impl std::fmt::Display for AcquireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::WouldBlock => "no permit available",
            Self::Timeout => "no permit before the deadline",
        })
    }
}

impl std::error::Error for AcquireError {}

/// A release that would take the value past the maximum; nothing was released.
///
/// # Examples
///
/// ```
/// use shmlink::lock::{ReleaseError, Semaphore};
///
/// let sem = Semaphore::new(3, 4)?;
/// assert_eq!(sem.release(2), Err(ReleaseError { value: 3, n: 2, max: 4 }));
/// assert_eq!(sem.value(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseError {
    /// The value when the release was refused.
    pub value: u32,
    /// Permits the release asked to add.
    pub n: u32,
    /// The semaphore's maximum.
    pub max: u32,
}

impl std::fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "releasing {} permits would take the value {} past the maximum {}",
            self.n, self.value, self.max
        )
    }
}

impl std::error::Error for ReleaseError {}

/// A counting semaphore in a [`Region`]: on the heap for threads
/// ([`Semaphore::new`]), or in a named segment for processes (`Semaphore::create` /
/// `Semaphore::open`, with [`ShmRegion`](crate::segment::ShmRegion)).
///
/// Acquiring takes one permit, waiting for one if none is left: a short spin, then a
/// sleep on a process-shared futex. Releasing adds permits, up to the maximum fixed at
/// creation, and makes a system call only if someone sleeps. Permits have no owner:
/// any handle may release.
///
/// # Examples
///
/// ```
/// use shmlink::lock::Semaphore;
///
/// let pool = Semaphore::new(2, 2)?; // two permits, at most two
/// pool.acquire();
/// pool.acquire();
/// assert!(pool.try_acquire().is_err());
/// pool.release(1)?;
/// assert_eq!(pool.value(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Semaphore<R: Region<Shared = SemaphoreState> = HeapRegion<SemaphoreState>> {
    region: Arc<R>,
    /// The state, cached: the region lives as long as `region`.
    state: NonNull<SemaphoreState>,
}

// SAFETY: `state` points into the region that `region` (an Arc) keeps alive; the state
// is all atomics (ShmSafe), so sending and sharing it is as safe as the region, which
// `R: Send + Sync` allows.
unsafe impl<R: Region<Shared = SemaphoreState> + Send + Sync> Send for Semaphore<R> {}
// SAFETY: as for Send.
unsafe impl<R: Region<Shared = SemaphoreState> + Send + Sync> Sync for Semaphore<R> {}

impl<R: Region<Shared = SemaphoreState>> Clone for Semaphore<R> {
    fn clone(&self) -> Self {
        Self {
            region: self.region.clone(),
            state: self.state,
        }
    }
}

impl Semaphore<HeapRegion<SemaphoreState>> {
    /// A semaphore on the heap with `initial` permits, at most `max`.
    ///
    /// # Errors
    ///
    /// [`SemaphoreConfigError`] for a zero maximum or an initial value above it.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::Semaphore;
    ///
    /// let sem = Semaphore::new(1, 8)?;
    /// assert_eq!((sem.value(), sem.max()), (1, 8));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(initial: u32, max: u32) -> Result<Self, SemaphoreConfigError> {
        let region = HeapRegion::<SemaphoreState>::new(0);
        region.shared().init(initial, max)?;
        Self::from_region(Arc::new(region))
    }
}

impl<R: Region<Shared = SemaphoreState>> Semaphore<R> {
    /// Wraps a region whose state was initialised, checking it.
    ///
    /// # Errors
    ///
    /// [`SemaphoreConfigError::Corrupt`] if the state's maximum is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::HeapRegion;
    /// use shmlink::lock::{Semaphore, SemaphoreConfigError, SemaphoreState};
    /// use std::sync::Arc;
    ///
    /// let blank = HeapRegion::<SemaphoreState>::new(0); // never initialised
    /// let err = Semaphore::from_region(Arc::new(blank)).err();
    /// assert_eq!(err, Some(SemaphoreConfigError::Corrupt));
    /// ```
    pub fn from_region(region: Arc<R>) -> Result<Self, SemaphoreConfigError> {
        if region.shared().max.load(Ordering::Relaxed) == 0 {
            return Err(SemaphoreConfigError::Corrupt);
        }
        Ok(Self {
            state: NonNull::from(region.shared()),
            region,
        })
    }

    #[inline(always)]
    fn state(&self) -> &SemaphoreState {
        // SAFETY: points into the region, which `self.region` keeps alive as long as
        // `self`; the state is ShmSafe (atomics only).
        unsafe { self.state.as_ref() }
    }

    /// Takes a permit if one is available, without waiting.
    ///
    /// # Errors
    ///
    /// [`AcquireError::WouldBlock`] if none is.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::{AcquireError, Semaphore};
    ///
    /// let sem = Semaphore::new(1, 1)?;
    /// assert_eq!(sem.try_acquire(), Ok(()));
    /// assert_eq!(sem.try_acquire(), Err(AcquireError::WouldBlock));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> Result<(), AcquireError> {
        let word = &self.state().word;
        let mut s = word.load(Ordering::Relaxed);
        while s & VALUE != 0 {
            // SYNC: Acquire pairs with the Release CAS of `release`: what the releaser
            // did before releasing is visible to the acquirer.
            match word.compare_exchange_weak(s, s - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(now) => s = now,
            }
        }
        Err(AcquireError::WouldBlock)
    }

    /// Takes a permit, waiting as long as it takes.
    ///
    /// A semaphore has no owner, so there is no peer whose death could end the wait:
    /// use [`acquire_timeout`](Self::acquire_timeout) when the releasing process may
    /// die.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::Semaphore;
    ///
    /// let sem = Semaphore::new(0, 1)?;
    /// let other = sem.clone();
    /// let t = std::thread::spawn(move || other.release(1));
    /// sem.acquire(); // sleeps until the other thread releases
    /// t.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acquire(&self) {
        // Without a deadline the only way out is a permit.
        let _ = self.acquire_until(None);
    }

    /// Takes a permit, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::{AcquireError, Semaphore};
    /// use std::time::Duration;
    ///
    /// let sem = Semaphore::new(1, 1)?;
    /// assert_eq!(sem.acquire_timeout(Duration::from_millis(5)), Ok(()));
    /// assert_eq!(sem.acquire_timeout(Duration::from_millis(5)), Err(AcquireError::Timeout));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), AcquireError> {
        self.acquire_until(Instant::now().checked_add(timeout))
    }

    /// Takes a permit, waiting until `deadline` (`None`: forever).
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::{AcquireError, Semaphore};
    /// use std::time::{Duration, Instant};
    ///
    /// let sem = Semaphore::new(0, 1)?;
    /// let deadline = Instant::now() + Duration::from_millis(2);
    /// assert_eq!(sem.acquire_until(Some(deadline)), Err(AcquireError::Timeout));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acquire_until(&self, deadline: Option<Instant>) -> Result<(), AcquireError> {
        if self.try_acquire().is_ok() {
            return Ok(());
        }
        let mut backoff = Backoff::new();
        while !backoff.is_completed() {
            backoff.snooze();
            if self.try_acquire().is_ok() {
                return Ok(());
            }
        }
        self.acquire_slow(deadline)
    }

    #[cold]
    fn acquire_slow(&self, deadline: Option<Instant>) -> Result<(), AcquireError> {
        let st = self.state();
        // Register: from here on every release sees us and bumps `wake_seq`.
        // Relaxed: ordering against releases comes from this being an RMW of `word`.
        st.word.fetch_add(WAITER, Ordering::Relaxed);
        crate::process::crash::point("semaphore.acquire", 1);
        loop {
            let s = st.word.load(Ordering::Relaxed);
            let expired = deadline.is_some_and(|d| Instant::now() >= d);
            if s & VALUE != 0 || expired {
                // Take a permit and deregister in one step; or, past the deadline with
                // none left, just deregister. Either way a release in between is
                // seen: a timed-out waiter never leaves a permit behind unclaimed.
                let (next, taken) = if s & VALUE != 0 {
                    (s.wrapping_sub(1 + WAITER), true)
                } else {
                    (s.wrapping_sub(WAITER), false)
                };
                // SYNC: Acquire pairs with the release's Release CAS.
                if st
                    .word
                    .compare_exchange_weak(s, next, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    crate::process::crash::point("semaphore.acquire", 2);
                    return if taken {
                        Ok(())
                    } else {
                        Err(AcquireError::Timeout)
                    };
                }
                continue;
            }
            // SYNC: Acquire pairs with the release's Release bump of `wake_seq`: if we
            // read the bumped value, the permit it announced is visible below.
            let seq = st.wake_seq.load(Ordering::Acquire);
            if st.word.load(Ordering::Relaxed) & VALUE != 0 {
                continue;
            }
            // A release after our `seq` read bumps `wake_seq`, so the kernel either
            // sees the change and returns at once, or queues us before the wake. A
            // releaser killed after adding its permit but before the bump or the wake
            // wakes nobody, so sleep at most one slice and look again: the permit is
            // found within `SLEEP_SLICE` (crash points `semaphore.release:1` and `:2`).
            let slice_end = Instant::now() + SLEEP_SLICE;
            let until = deadline.map_or(slice_end, |d| d.min(slice_end));
            futex::wait_until(&st.wake_seq, seq, Some(until));
        }
    }

    /// Adds `n` permits, waking up to `n` sleepers. No system call unless someone
    /// sleeps.
    ///
    /// # Errors
    ///
    /// [`ReleaseError`] if the value would pass the maximum; nothing is released.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::Semaphore;
    ///
    /// let sem = Semaphore::new(0, 4)?;
    /// sem.release(3)?;
    /// assert_eq!(sem.value(), 3);
    /// assert!(sem.release(2).is_err()); // 5 > 4
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn release(&self, n: u32) -> Result<(), ReleaseError> {
        let st = self.state();
        let max = st.max.load(Ordering::Relaxed);
        let mut s = st.word.load(Ordering::Relaxed);
        loop {
            let value = (s & VALUE) as u32;
            if u64::from(value) + u64::from(n) > u64::from(max) {
                return Err(ReleaseError { value, n, max });
            }
            // SYNC: Release pairs with the Acquire CAS that takes a permit.
            match st.word.compare_exchange_weak(
                s,
                s + u64::from(n),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        crate::process::crash::point("semaphore.release", 1);
        let waiters = (s >> 32) as u32;
        if waiters != 0 && n != 0 {
            // SYNC: Release pairs with the sleeper's Acquire load of `wake_seq`.
            st.wake_seq.fetch_add(1, Ordering::Release);
            crate::process::crash::point("semaphore.release", 2);
            futex::wake(&st.wake_seq, n.min(waiters));
            crate::process::crash::point("semaphore.release", 3);
        }
        Ok(())
    }

    /// Permits available right now.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::Semaphore;
    ///
    /// assert_eq!(Semaphore::new(3, 5)?.value(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn value(&self) -> u32 {
        (self.state().word.load(Ordering::Relaxed) & VALUE) as u32
    }

    /// The most permits the semaphore may hold.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::Semaphore;
    ///
    /// assert_eq!(Semaphore::new(3, 5)?.max(), 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max(&self) -> u32 {
        self.state().max.load(Ordering::Relaxed)
    }

    /// Waiters registered right now (sleeping or about to), including any that died
    /// while waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::Semaphore;
    ///
    /// assert_eq!(Semaphore::new(1, 1)?.waiters(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn waiters(&self) -> u32 {
        (self.state().word.load(Ordering::Relaxed) >> 32) as u32
    }

    /// The region the semaphore lives in.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::Region;
    /// use shmlink::lock::Semaphore;
    ///
    /// let sem = Semaphore::new(1, 1)?;
    /// assert_eq!(sem.region().area().len(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn region(&self) -> &R {
        &self.region
    }
}

impl<R: Region<Shared = SemaphoreState>> std::fmt::Debug for Semaphore<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .field("max", &self.max())
            .field("waiters", &self.waiters())
            .finish()
    }
}

#[cfg(not(shmlink_loom))]
impl Semaphore<ShmRegion<SemaphoreState>> {
    fn configure(builder: SegmentBuilder) -> SegmentBuilder {
        builder.typed_defaults(Kind::Semaphore, fingerprint::<SemaphoreState>())
    }

    /// Creates a named semaphore with `initial` permits, at most `max`.
    ///
    /// # Errors
    ///
    /// [`ObjectError::Config`] for a bad configuration (checked before anything is
    /// created), [`ObjectError::Create`] from the segment.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Segment;
    /// use shmlink::lock::Semaphore;
    /// # let name = format!("doc-sem-create-{}", std::process::id());
    ///
    /// let sem = Semaphore::create(Segment::builder(&name).unlink_on_drop(true), 2, 4)?;
    /// let other = Semaphore::open(Segment::builder(&name))?; // usually another process
    /// sem.acquire();
    /// assert_eq!(other.value(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(
        builder: SegmentBuilder,
        initial: u32,
        max: u32,
    ) -> Result<Self, ObjectError<SemaphoreConfigError>> {
        Semaphore::new(initial, max).map_err(ObjectError::Config)?; // validate first
        let region =
            ShmRegion::<SemaphoreState>::create_with(Self::configure(builder), 0, |s, _| {
                // Validated above; cannot fail.
                let _ = s.init(initial, max);
            })?;
        Self::from_region(Arc::new(region)).map_err(ObjectError::Config)
    }

    /// Opens a named semaphore.
    ///
    /// # Errors
    ///
    /// [`ObjectError::Open`] (`NotFound`, `WrongKind`, ...), or
    /// [`ObjectError::Config`] if its state is corrupt.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::ObjectError;
    /// use shmlink::segment::{OpenError, Segment};
    /// use shmlink::lock::Semaphore;
    /// # let name = format!("doc-sem-open-{}", std::process::id());
    /// # let _keep = Semaphore::create(Segment::builder(&name).unlink_on_drop(true), 1, 1)?;
    ///
    /// let sem = Semaphore::open(Segment::builder(&name))?;
    /// assert_eq!(sem.max(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(builder: SegmentBuilder) -> Result<Self, ObjectError<SemaphoreConfigError>> {
        let region = ShmRegion::<SemaphoreState>::open(Self::configure(builder))?;
        Self::from_region(Arc::new(region)).map_err(ObjectError::Config)
    }

    /// Opens the named semaphore, or creates it with `initial` permits, at most `max`,
    /// if the name holds none. One left stale by a crash is resumed with its count
    /// when its maximum is `max`, and replaced otherwise; a live one with another
    /// maximum is [`SemaphoreConfigError::MaxMismatch`]. (Permits a dead process held
    /// are not returned by resuming.)
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create) and [`open`](Self::open).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::Semaphore;
    /// use shmlink::segment::{Disposition, Segment};
    /// # let name = format!("doc-sem-open-or-create-{}", std::process::id());
    ///
    /// let builder = Segment::builder(&name).unlink_on_drop(true);
    /// let (a, how) = Semaphore::open_or_create(builder.clone(), 2, 4)?;
    /// assert_eq!(how, Disposition::Created);
    /// a.acquire();
    /// let (b, how) = Semaphore::open_or_create(builder, 2, 4)?; // `initial` is not applied
    /// assert_eq!((how, b.value()), (Disposition::Opened, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_or_create(
        builder: SegmentBuilder,
        initial: u32,
        max: u32,
    ) -> Result<(Self, crate::segment::Disposition), ObjectError<SemaphoreConfigError>> {
        Semaphore::new(initial, max).map_err(ObjectError::Config)?; // validate first
        super::open_or_create_in(
            &Self::configure(builder),
            0,
            |s: &SemaphoreState, _| {
                let _ = s.init(initial, max);
            },
            |region| {
                let sem = Self::from_region(region)?;
                if sem.max() == max {
                    Ok(sem)
                } else {
                    Err(SemaphoreConfigError::MaxMismatch {
                        expected: max,
                        found: sem.max(),
                    })
                }
            },
            |sem| sem.region.segment(),
        )
    }
}

#[cfg(all(test, not(shmlink_loom)))]
mod tests {
    use super::*;

    #[test]
    fn garbage_counts_never_panic() {
        let sem = Semaphore::new(0, 4).unwrap();
        // A hostile peer writes a value above the maximum and a huge waiter count.
        sem.state().word.store(u64::MAX, Ordering::Relaxed);
        assert_eq!(sem.value(), u32::MAX);
        assert!(sem.release(1).is_err());
        assert_eq!(sem.try_acquire(), Ok(()));
        assert_eq!(sem.acquire_timeout(Duration::ZERO), Ok(()));
        sem.state()
            .word
            .store(0xffff_ffff_0000_0000, Ordering::Relaxed);
        // Registering one more waiter wraps the count; the timed-out waiter undoes it.
        assert_eq!(
            sem.acquire_timeout(Duration::from_millis(1)),
            Err(AcquireError::Timeout)
        );
        assert_eq!(
            sem.state().word.load(Ordering::Relaxed),
            0xffff_ffff_0000_0000
        );
    }

    #[test]
    fn threads_never_exceed_the_permits() {
        let sem = Semaphore::new(2, 2).unwrap();
        let inside = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (sem, inside) = (sem.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..if cfg!(miri) { 10 } else { 2_000 } {
                        sem.acquire();
                        let now = inside.fetch_add(1, Ordering::Relaxed) + 1;
                        assert!(now <= 2, "{now} holders of 2 permits");
                        std::hint::spin_loop();
                        inside.fetch_sub(1, Ordering::Relaxed);
                        sem.release(1).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!((sem.value(), sem.waiters()), (2, 0));
    }
}

/// A named semaphore's state, read without acquiring anything (what `shmlink
/// inspect` shows); a snapshot, stale as soon as it is read.
#[cfg(not(shmlink_loom))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemaphoreStatus {
    /// Permits available.
    pub value: u32,
    /// The most permits it may hold.
    pub max: u32,
    /// Waiters registered (a waiter that died stays counted).
    pub waiters: u32,
}

/// Reads the state of the semaphore named `name`.
///
/// # Errors
///
/// As [`Semaphore::open`]'s segment errors (`WrongKind` for another object).
///
/// # Examples
///
/// ```
/// use shmlink::lock::{Semaphore, semaphore_status};
/// use shmlink::segment::Segment;
/// # let name = format!("doc-sem-status-{}", std::process::id());
///
/// let sem = Semaphore::create(Segment::builder(&name).unlink_on_drop(true), 3, 4)?;
/// sem.acquire();
/// let status = semaphore_status(&name)?;
/// assert_eq!((status.value, status.max, status.waiters), (2, 4, 0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(not(shmlink_loom))]
pub fn semaphore_status(name: &str) -> Result<SemaphoreStatus, crate::segment::OpenError> {
    let region = ShmRegion::<SemaphoreState>::open(
        Semaphore::<ShmRegion<SemaphoreState>>::configure(crate::segment::Segment::builder(name)),
    )?;
    let st = region.shared();
    let word = st.word.load(Ordering::Relaxed);
    Ok(SemaphoreStatus {
        value: word as u32,
        max: st.max.load(Ordering::Relaxed),
        waiters: (word >> 32) as u32,
    })
}

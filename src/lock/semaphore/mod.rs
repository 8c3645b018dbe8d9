//! A counting semaphore for threads and processes: [`Semaphore`].
//!
//! The permit count, the number of registered waiters and a *ledger tag* share one
//! 64-bit word (after glibc's `new_sem`): the value in the low 32 bits, the waiters in
//! the next 16 and the tag in the high 16. A release and a waiter's registration are
//! read-modify-writes of that one word, so they are totally ordered and a release can
//! never miss a waiter that registered before it (splitting them into two words is the
//! store-buffering bug musl had).
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
//! | register / deregister a waiter | CAS `word` (waiters ± 1) | Relaxed | (same word: the release's RMW sees it) |
//! | before sleeping | load `wake_seq` | Acquire | the `wake_seq` bump |
//! | release with waiters | `wake_seq.fetch_add(1)` | Release | the sleeper's load |
//!
//! # Owned permits
//!
//! [`Semaphore::acquire`] and [`Semaphore::release`] count permits that have no owner
//! (a semaphore used as a signal). A [`Permit`] ([`Semaphore::permit`]) is owned: the
//! process that holds it is recorded in one of [`HOLDER_SLOTS`] holder slots, with how
//! many permits it holds, and when that process dies its permits are returned to the
//! semaphore (by a waiter, which looks for dead holders when a 10 ms sleep slice runs
//! out and, at most once per slice, when a release wakes it; or by
//! [`Semaphore::reclaim_dead`]).
//!
//! Moving a permit between the value and a holder's count touches two words, so a
//! process killed between the two stores must leave enough behind to tell which side
//! the permit is on. The holder writes its intent in its slot's *ledger* first
//! (`TAKING`, or `RETURNING n`), then moves the permit with a CAS of `word` that also
//! sets the tag to its slot, then writes the ledger's outcome, then clears the tag:
//!
//! | step | what a repairer finds after a death there | it concludes |
//! |------|-------------------------------------------|--------------|
//! | 1: ledger says `TAKING` / `RETURNING n` | tag is not this slot | the permit did not move |
//! | 2: CAS `word` (value ∓ n, tag = slot) | tag is this slot, ledger still pending | it moved: apply it to the count |
//! | 3: ledger holds the new count | tag is this slot, ledger settled | clear the tag |
//! | 4: tag cleared | nothing pending | - |
//!
//! The tag is set only by a CAS that finds it clear, and only its setter (or the
//! repairer that took over the dead setter's slot) clears it, so at most one owned
//! transfer is between steps 2 and 4 at a time: a few instructions, during which other
//! owned transfers wait (a dead tag holder is repaired, never waited for). Unowned
//! `acquire`/`release` ignore the tag. The repairer takes a dead holder's slot over by
//! a CAS of its token, so exactly one repairer acts, finishes the dead process's step,
//! and returns its permits with the same four steps: a repairer that dies in turn
//! leaves the slot to the next. The loom models in `lock/tests/loom_semaphore_recovery.rs`
//! kill a holder after each step, with a repairer racing a live holder.
//!
//! A waiter that dies must not stay counted, or every later release makes a wake
//! system call that finds nobody. So a registered waiter is also counted in its
//! process's holder slot, and a repairer takes a dead process's count off `word`
//! (clearing the slot first). The slot never counts more than is registered: it is
//! counted after the registering CAS and uncounted before each attempt that would
//! deregister (counted again if the attempt fails). A repair therefore never takes a
//! live waiter off (which could leave it asleep until its slice ends); a process
//! killed between the two steps, a few instructions, stays counted. A waiter without
//! a slot (every one held by live processes) is not counted in one. The loom model
//! `a_waiter_dies_at_each_step_while_another_sleeps` kills a waiter after each step.

use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::region::{HeapRegion, Region, ShmSafe};
use crate::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use crate::sync::mutex::Mutex;
use crate::sync::{Backoff, futex};

#[cfg(not(shmlink_loom))]
use super::ObjectError;
#[cfg(not(shmlink_loom))]
use crate::region::fingerprint;
#[cfg(not(shmlink_loom))]
use crate::segment::{Kind, SegmentBuilder, ShmRegion};

mod permit;
pub use permit::Permit;

/// Longest sleep of a waiting `acquire` before it looks at the value again: a
/// releaser that died between adding its permit and waking the sleepers, or a holder
/// that died holding permits, costs a waiter at most this long.
const SLEEP_SLICE: Duration = Duration::from_millis(10);

/// [`SLEEP_SLICE`] in nanoseconds.
const SLICE_NS: u64 = SLEEP_SLICE.as_nanos() as u64;

/// How many processes may hold [`Permit`]s of one semaphore at a time.
///
/// # Examples
///
/// ```
/// assert_eq!(shmlink::lock::HOLDER_SLOTS, 64);
/// ```
#[cfg(not(shmlink_loom))]
pub const HOLDER_SLOTS: usize = 64;
/// How many processes may hold [`Permit`]s of one semaphore at a time (few under
/// loom, to keep models small).
#[cfg(shmlink_loom)]
pub const HOLDER_SLOTS: usize = 3;

/// Polls of a tag held by another holder between looks at that holder's liveness.
const BUSY_POLLS: u32 = if cfg!(shmlink_loom) { 1 } else { 64 };

const VALUE: u64 = 0xffff_ffff;
const WAITER: u64 = 1 << 32;
const WAITERS: u64 = 0xffff << 32;
const TAG_SHIFT: u32 = 48;

/// Permits available in a state word.
#[inline(always)]
const fn value_of(s: u64) -> u32 {
    (s & VALUE) as u32
}

/// Waiters registered in a state word.
#[inline(always)]
const fn waiters_of(s: u64) -> u32 {
    ((s & WAITERS) >> 32) as u32
}

/// The ledger tag of a state word: 0, or the holder slot + 1 mid-transfer.
#[inline(always)]
const fn tag_of(s: u64) -> usize {
    (s >> TAG_SHIFT) as usize
}

/// `s` with the tag replaced.
#[inline(always)]
const fn with_tag(s: u64, tag: usize) -> u64 {
    (s & !(u64::MAX << TAG_SHIFT)) | ((tag as u64) << TAG_SHIFT)
}

/// `s` with one waiter less (never borrowing from the tag, whatever a peer wrote).
#[inline(always)]
const fn less_one_waiter(s: u64) -> u64 {
    if s & WAITERS == 0 { s } else { s - WAITER }
}

/// One process's record of the permits it holds (its token and its ledger) and of
/// its threads registered as waiters.
#[repr(C)]
#[derive(Debug)]
struct Holder {
    /// The holding process's token (`process`), 0 for a free slot.
    token: AtomicU64,
    /// Low 32 bits: permits held. Bits 32..62: the amount of a pending transfer.
    /// Bits 62..64: the pending transfer (`NONE`, `TAKING`, `RETURNING`).
    ledger: AtomicU64,
    /// How many of the waiters registered in `word` are this process's threads, or
    /// fewer: counted after registering and uncounted before deregistering, so that a
    /// repairer that takes them off `word` never takes off a live process's waiter.
    waiters: AtomicU32,
    _reserved: AtomicU32,
}

impl Holder {
    fn new() -> Self {
        Self {
            token: AtomicU64::new(0),
            ledger: AtomicU64::new(0),
            waiters: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
        }
    }
}

/// A registered waiter's count in its process's holder slot (none without a slot).
struct WaiterMark<'a>(Option<&'a Holder>);

impl WaiterMark<'_> {
    fn count(&self) {
        if let Some(hd) = self.0 {
            hd.waiters.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn uncount(&self) {
        if let Some(hd) = self.0 {
            hd.waiters.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A ledger's pending transfer.
const NONE: u64 = 0;
const TAKING: u64 = 1;
const RETURNING: u64 = 2;
/// The most permits one ledger step moves.
const AMOUNT_MAX: u32 = (1 << 30) - 1;

const fn ledger(held: u32, op: u64, amount: u32) -> u64 {
    (op << 62) | (((amount & AMOUNT_MAX) as u64) << 32) | held as u64
}

/// `(held, op, amount)` of a ledger word.
const fn ledger_parts(l: u64) -> (u32, u64, u32) {
    (l as u32, l >> 62, ((l >> 32) as u32) & AMOUNT_MAX)
}

/// The holder slots, on cache lines of their own.
#[repr(C, align(128))]
#[derive(Debug)]
struct Holders([Holder; HOLDER_SLOTS]);

/// The shared state of a [`Semaphore`]: all atomics, 128 bytes of counters and then
/// [`HOLDER_SLOTS`] holder slots of 24 bytes.
///
/// # Examples
///
/// ```
/// use shmlink::lock::{HOLDER_SLOTS, SemaphoreState};
///
/// assert_eq!(size_of::<SemaphoreState>(), 128 + 24 * HOLDER_SLOTS);
/// ```
#[repr(C, align(128))]
#[derive(Debug)]
pub struct SemaphoreState {
    /// Low 32 bits: permits available. Next 16: waiters registered. High 16: the
    /// ledger tag (holder slot + 1 of an owned transfer in progress, or 0).
    word: AtomicU64,
    /// The futex word sleepers wait on; a release that sees waiters bumps it.
    wake_seq: AtomicU32,
    /// The most permits the semaphore may hold; fixed at creation.
    max: AtomicU32,
    /// Who holds owned permits.
    holders: Holders,
}

#[cfg(not(shmlink_loom))]
const _: () = assert!(
    size_of::<SemaphoreState>() == 128 + 24 * HOLDER_SLOTS
        && align_of::<SemaphoreState>() == 128
        && HOLDER_SLOTS < 0xffff
);

// SAFETY: repr(C) of integer atomics and padding, no pointers; every bit pattern is a
// valid (if perhaps nonsensical) state, and every operation copes with any.
unsafe impl ShmSafe for SemaphoreState {
    const TYPE_NAME: &'static str = "shmlink::lock::SemaphoreState";
    const VERSION: u32 = 3;
    fn new_zeroed() -> Self {
        Self {
            word: AtomicU64::new(0),
            wake_seq: AtomicU32::new(0),
            max: AtomicU32::new(0),
            holders: Holders(std::array::from_fn(|_| Holder::new())),
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
    /// The handle was closed ([`Semaphore::close`]), before or while waiting.
    Closed,
    /// An owned permit was asked for, and [`HOLDER_SLOTS`] live processes already
    /// hold permits of this semaphore.
    NoHolderSlot,
}

impl std::fmt::Display for AcquireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::WouldBlock => f.write_str("no permit available"),
            Self::Timeout => f.write_str("no permit before the deadline"),
            Self::Closed => f.write_str("the semaphore handle was closed"),
            Self::NoHolderSlot => write!(
                f,
                "all {HOLDER_SLOTS} holder slots are taken by live processes"
            ),
        }
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
/// creation, and makes a system call only if someone sleeps.
///
/// Permits come two ways:
///
/// - [`permit`](Self::permit) returns a [`Permit`] that gives the permit back when
///   dropped; the process is recorded as its holder, so if it dies holding it the
///   permit is returned to the semaphore;
/// - [`acquire`](Self::acquire) and [`release`](Self::release) count permits that
///   have no owner (any handle may release; a semaphore used as a signal).
///
/// [`close`](Self::close) wakes every call of this handle (and its clones) waiting in
/// other threads with [`AcquireError::Closed`].
///
/// # Examples
///
/// ```
/// use shmlink::lock::Semaphore;
///
/// let pool = Semaphore::new(2, 2)?; // two permits, at most two
/// let a = pool.permit()?;
/// let b = pool.permit()?;
/// assert!(pool.try_permit().is_err());
/// drop(a); // given back
/// assert_eq!(pool.value(), 1);
/// # drop(b);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Semaphore<R: Region<Shared = SemaphoreState> = HeapRegion<SemaphoreState>> {
    inner: Arc<Inner<R>>,
}

/// What the clones of one handle share.
struct Inner<R: Region<Shared = SemaphoreState>> {
    region: Arc<R>,
    /// The state, cached: the region lives as long as `region`.
    state: NonNull<SemaphoreState>,
    /// Set by `close`: waits of these handles end with `Closed`.
    closed: AtomicBool,
    /// The holder slot these handles record owned permits in, once they took one.
    /// Held across each ledger transfer, so the threads of a process take turns on
    /// their slot's ledger.
    holder: Mutex<Option<usize>>,
    /// When these handles' waiters next look for dead holders after a wake-up (ns
    /// since `epoch`): waiters woken again and again by releases never see a sleep
    /// slice run out.
    sweep_at: AtomicU64,
    epoch: Instant,
}

// SAFETY: `state` points into the region that `region` (an Arc) keeps alive; the state
// is all atomics (ShmSafe), so sending and sharing it is as safe as the region, which
// `R: Send + Sync` allows; the other fields are Send + Sync.
unsafe impl<R: Region<Shared = SemaphoreState> + Send + Sync> Send for Inner<R> {}
// SAFETY: as for Send.
unsafe impl<R: Region<Shared = SemaphoreState> + Send + Sync> Sync for Inner<R> {}

impl<R: Region<Shared = SemaphoreState>> Clone for Semaphore<R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<R: Region<Shared = SemaphoreState>> Drop for Inner<R> {
    fn drop(&mut self) {
        // A process that dies keeps its slot until a repairer frees it; one that
        // unwinds from a crash point in a model does the same.
        if crate::process::crash::dying() {
            return;
        }
        let slot = *self
            .holder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(i) = slot {
            // SAFETY: `state` points into `region`, alive until this drop returns.
            let hd = &unsafe { self.state.as_ref() }.holders.0[i];
            // Free the slot if it holds nothing (permits leaked with `mem::forget`
            // stay recorded, and are returned when this process dies).
            if hd.ledger.load(Ordering::Relaxed) == 0 && hd.waiters.load(Ordering::Relaxed) == 0 {
                let _ = hd.token.compare_exchange(
                    crate::process::current_token(),
                    0,
                    Ordering::Release,
                    Ordering::Relaxed,
                );
            }
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

/// What one attempt at taking a permit found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    Taken,
    /// No permit.
    Empty,
    /// A permit, but another holder's owned transfer is between its steps 2 and 4.
    Busy,
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
            inner: Arc::new(Inner {
                state: NonNull::from(region.shared()),
                region,
                closed: AtomicBool::new(false),
                holder: Mutex::new(None),
                sweep_at: AtomicU64::new(SLICE_NS),
                epoch: Instant::now(),
            }),
        })
    }

    #[inline(always)]
    fn state(&self) -> &SemaphoreState {
        // SAFETY: points into the region, which `self.inner.region` keeps alive as
        // long as `self`; the state is ShmSafe (atomics only).
        unsafe { self.inner.state.as_ref() }
    }

    /// Takes a permit if one is available, without waiting.
    ///
    /// # Errors
    ///
    /// [`AcquireError::WouldBlock`] if none is ([`AcquireError::Closed`] if none is
    /// and the handle was closed).
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
        match self.attempt(None, false) {
            Attempt::Taken => Ok(()),
            _ => Err(self.would_block()),
        }
    }

    /// `WouldBlock`, or `Closed` once the handle is closed.
    fn would_block(&self) -> AcquireError {
        if self.is_closed() {
            AcquireError::Closed
        } else {
            AcquireError::WouldBlock
        }
    }

    /// One CAS loop at taking a permit: unowned (`slot` None), or for holder `slot`,
    /// setting the tag (step 2 of an owned transfer). `registered`: deregister the
    /// waiter in the same step.
    #[inline]
    fn attempt(&self, slot: Option<usize>, registered: bool) -> Attempt {
        let word = &self.state().word;
        let mut s = word.load(Ordering::Relaxed);
        loop {
            if value_of(s) == 0 {
                return Attempt::Empty;
            }
            let mut next = s - 1;
            if registered {
                next = less_one_waiter(next);
            }
            if let Some(i) = slot {
                if tag_of(s) != 0 {
                    return Attempt::Busy;
                }
                next = with_tag(next, i + 1);
            }
            // SYNC: Acquire pairs with the Release CAS of a release: what the releaser
            // did before releasing is visible to the acquirer.
            match word.compare_exchange_weak(s, next, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Attempt::Taken,
                Err(now) => s = now,
            }
        }
    }

    /// Takes an unowned permit, waiting as long as it takes (or until the handle is
    /// closed). Give it back with [`release`](Self::release); prefer
    /// [`permit`](Self::permit), which gives it back when dropped and when the
    /// process dies.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Closed`] if the handle is closed before a permit comes.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::Semaphore;
    ///
    /// let sem = Semaphore::new(0, 1)?;
    /// let other = sem.clone();
    /// let t = std::thread::spawn(move || other.release(1));
    /// sem.acquire()?; // sleeps until the other thread releases
    /// t.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acquire(&self) -> Result<(), AcquireError> {
        self.acquire_until(None)
    }

    /// Takes an unowned permit, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`], or [`AcquireError::Closed`].
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

    /// Takes an unowned permit, waiting until `deadline` (`None`: forever).
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`], or [`AcquireError::Closed`].
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
        // The fast path inlined here, not behind `take_until`'s `dyn` call.
        if self.attempt(None, false) == Attempt::Taken {
            return Ok(());
        }
        self.take_until(deadline, &mut |registered| self.attempt(None, registered))
    }

    /// Waits for `attempt` to take a permit: a spin, then sleeps on the futex (each
    /// at most [`SLEEP_SLICE`], after which dead holders are looked for).
    fn take_until(
        &self,
        deadline: Option<Instant>,
        attempt: &mut dyn FnMut(bool) -> Attempt,
    ) -> Result<(), AcquireError> {
        if attempt(false) == Attempt::Taken {
            return Ok(());
        }
        let mut backoff = Backoff::new();
        while !backoff.is_completed() {
            backoff.snooze();
            if attempt(false) == Attempt::Taken {
                return Ok(());
            }
        }
        if self.is_closed() {
            return Err(AcquireError::Closed);
        }
        self.take_slow(deadline, attempt)
    }

    #[cold]
    fn take_slow(
        &self,
        deadline: Option<Instant>,
        attempt: &mut dyn FnMut(bool) -> Attempt,
    ) -> Result<(), AcquireError> {
        let st = self.state();
        // This process's holder slot, where its registered waiters are counted for a
        // repairer should it die (without one, a dead waiter stays counted).
        let mark = WaiterMark(self.waiter_slot());
        // Register: from here on every release sees us and bumps `wake_seq`. With
        // the count full (a hostile peer, or 65535 waiters) wait unregistered, looking
        // every slice. Relaxed: ordering against releases comes from this being an RMW
        // of `word`.
        let mut s = st.word.load(Ordering::Relaxed);
        let registered = loop {
            if s & WAITERS == WAITERS {
                break false;
            }
            match st
                .word
                .compare_exchange_weak(s, s + WAITER, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break true,
                Err(now) => s = now,
            }
        };
        crate::process::crash::point("semaphore.acquire", 1);
        let mark = if registered { mark } else { WaiterMark(None) };
        mark.count();
        crate::process::crash::point("semaphore.acquire", 2);
        let mut busy = 0u32;
        loop {
            let expired = deadline.is_some_and(|d| Instant::now() >= d);
            let closed = self.is_closed();
            // A taking attempt deregisters in its CAS: uncount first.
            mark.uncount();
            crate::process::crash::point("semaphore.acquire", 3);
            let got = attempt(registered);
            if got != Attempt::Taken {
                mark.count();
            }
            match got {
                Attempt::Taken => {
                    crate::process::crash::point("semaphore.acquire", 4);
                    return Ok(());
                }
                Attempt::Busy if !expired && !closed => {
                    // Another holder's transfer, a few instructions long unless its
                    // process died there: look at it now and then.
                    busy += 1;
                    if busy.is_multiple_of(BUSY_POLLS) {
                        self.repair_tag_holder(0);
                    }
                    crate::sync::yield_now();
                    continue;
                }
                _ => {}
            }
            if expired || closed {
                // Deregister, unless a permit came in between (then take it: a
                // leaving waiter never leaves a permit behind unclaimed).
                mark.uncount();
                if self.deregister_if_empty(registered) {
                    let why = if closed {
                        AcquireError::Closed
                    } else {
                        AcquireError::Timeout
                    };
                    crate::sync::slow_path!(DEBUG, why = %why, "semaphore: a wait ended without a permit");
                    return Err(why);
                }
                mark.count();
                continue;
            }
            // SYNC: Acquire pairs with the release's Release bump of `wake_seq`: if we
            // read the bumped value, the permit it announced is visible below.
            let seq = st.wake_seq.load(Ordering::Acquire);
            if value_of(st.word.load(Ordering::Relaxed)) != 0 || self.is_closed() {
                continue;
            }
            // A release after our `seq` read bumps `wake_seq`, so the kernel either
            // sees the change and returns at once, or queues us before the wake. A
            // releaser killed after adding its permit but before the bump or the wake
            // wakes nobody, and a holder killed holding permits returns none, so sleep
            // at most one slice and look again: the permit is found within
            // `SLEEP_SLICE` (crash points `semaphore.release:1` and `:2`).
            let slice_end = Instant::now() + SLEEP_SLICE;
            let until = deadline.map_or(slice_end, |d| d.min(slice_end));
            let woke = futex::wait_until(&st.wake_seq, seq, Some(until));
            if (woke == futex::WaitResult::TimedOut && until == slice_end) || self.sweep_due() {
                self.reclaim(false);
            }
        }
    }

    /// Whether a waiter of these handles, just woken, should look for dead holders:
    /// once per [`SLEEP_SLICE`] at most. Without it, a holder that died holding a
    /// permit while the others kept the semaphore busy would keep it for good (every
    /// waiter is woken by a release before its slice runs out), and so would a dead
    /// waiter's count.
    fn sweep_due(&self) -> bool {
        let inner = &self.inner;
        let now = u64::try_from(inner.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let at = inner.sweep_at.load(Ordering::Relaxed);
        now >= at
            && inner
                .sweep_at
                .compare_exchange(
                    at,
                    now.saturating_add(SLICE_NS),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Deregisters a leaving waiter if no permit is available (or every available
    /// one is mid-transfer); `false` if one is, to be taken instead.
    fn deregister_if_empty(&self, registered: bool) -> bool {
        let word = &self.state().word;
        let mut s = word.load(Ordering::Relaxed);
        loop {
            if value_of(s) != 0 && tag_of(s) == 0 {
                return false;
            }
            if !registered {
                return true;
            }
            match word.compare_exchange_weak(
                s,
                less_one_waiter(s),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
    }

    /// Adds `n` unowned permits, waking up to `n` sleepers. No system call unless
    /// someone sleeps.
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
            let value = value_of(s);
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
        self.wake(waiters_of(s), n, "semaphore.release", 2);
        Ok(())
    }

    /// Wakes up to `n` of `waiters` sleepers (none if either is 0); its two steps are
    /// crash points `step` and `step + 1` of `protocol`.
    fn wake(&self, waiters: u32, n: u32, protocol: &'static str, step: u32) {
        if waiters != 0 && n != 0 {
            let st = self.state();
            // SYNC: Release pairs with the sleeper's Acquire load of `wake_seq`.
            st.wake_seq.fetch_add(1, Ordering::Release);
            crate::process::crash::point(protocol, step);
            futex::wake(&st.wake_seq, n.min(waiters));
            crate::process::crash::point(protocol, step + 1);
        }
    }

    /// Closes this handle and its clones: every call of theirs waiting for a permit in
    /// another thread wakes with [`AcquireError::Closed`], and so does every later
    /// call that would wait. Other handles (other processes, other `open`s) are not
    /// affected; permits held stay held until their [`Permit`]s drop.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::{AcquireError, Semaphore};
    ///
    /// let sem = Semaphore::new(0, 1)?;
    /// let waiter = {
    ///     let sem = sem.clone();
    ///     std::thread::spawn(move || sem.permit().map(drop))
    /// };
    /// sem.close();
    /// assert_eq!(waiter.join().unwrap(), Err(AcquireError::Closed));
    /// assert!(sem.is_closed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) {
        // SYNC: SeqCst store, then the bump: a waiter that read `wake_seq` before the
        // bump is woken by it; one that reads it after sees the flag on its next look.
        self.inner.closed.store(true, Ordering::SeqCst);
        let st = self.state();
        st.wake_seq.fetch_add(1, Ordering::SeqCst);
        futex::wake(&st.wake_seq, u32::MAX);
    }

    /// Whether [`close`](Self::close) was called on this handle or a clone.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::Semaphore;
    ///
    /// let sem = Semaphore::new(1, 1)?;
    /// assert!(!sem.is_closed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
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
        value_of(self.state().word.load(Ordering::Relaxed))
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
        waiters_of(self.state().word.load(Ordering::Relaxed))
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
        &self.inner.region
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
    /// let permit = sem.permit()?;
    /// assert_eq!(other.value(), 1);
    /// # drop(permit);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(
        builder: SegmentBuilder,
        initial: u32,
        max: u32,
    ) -> Result<Self, ObjectError<SemaphoreConfigError>> {
        Semaphore::new(initial, max).map_err(ObjectError::Config)?; // validate first
        let region = ShmRegion::<SemaphoreState>::create_with(
            Self::configure(builder.clone()),
            0,
            |s, _| {
                // Validated above; cannot fail.
                let _ = s.init(initial, max);
            },
        )
        .map_err(|e| ObjectError::create(&builder, e))?;
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
        let region = ShmRegion::<SemaphoreState>::open(Self::configure(builder.clone()))
            .map_err(|e| ObjectError::open(&builder, e))?;
        Self::from_region(Arc::new(region)).map_err(ObjectError::Config)
    }

    /// Opens the named semaphore, or creates it with `initial` permits, at most `max`,
    /// if the name holds none. One left stale by a crash is resumed with its count
    /// when its maximum is `max`, and replaced otherwise; a live one with another
    /// maximum is [`SemaphoreConfigError::MaxMismatch`]. The [`Permit`]s of holders
    /// that died are returned ([`reclaim_dead`](Self::reclaim_dead)); unowned permits
    /// taken with `acquire` stay taken.
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
    /// a.acquire()?;
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
                sem.reclaim_dead();
                if sem.max() == max {
                    Ok(sem)
                } else {
                    Err(SemaphoreConfigError::MaxMismatch {
                        expected: max,
                        found: sem.max(),
                    })
                }
            },
            |sem| sem.inner.region.segment(),
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
                        let permit = sem.permit().unwrap();
                        let now = inside.fetch_add(1, Ordering::Relaxed) + 1;
                        assert!(now <= 2, "{now} holders of 2 permits");
                        std::hint::spin_loop();
                        inside.fetch_sub(1, Ordering::Relaxed);
                        drop(permit);
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemaphoreStatus {
    /// Permits available.
    pub value: u32,
    /// The most permits it may hold.
    pub max: u32,
    /// Waiters registered (a dead process's waiters are taken off when its slot is
    /// repaired).
    pub waiters: u32,
    /// The processes with a holder slot: those holding [`Permit`]s or waiting (a
    /// process that took its slot and holds none right now is listed with 0).
    pub holders: Vec<PermitHolder>,
}

/// A process recorded as a holder of a semaphore's [`Permit`]s.
#[cfg(not(shmlink_loom))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermitHolder {
    /// Its pid.
    pub pid: u32,
    /// The permits it holds.
    pub permits: u32,
    /// Its threads counted as waiting for a permit.
    pub waiting: u32,
    /// Whether it still runs (a dead one's permits are returned by the next waiter).
    pub liveness: crate::process::Liveness,
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
/// let permit = sem.permit()?;
/// let status = semaphore_status(&name)?;
/// assert_eq!((status.value, status.max, status.waiters), (2, 4, 0));
/// assert_eq!(status.holders[0].pid, std::process::id());
/// assert_eq!(status.holders[0].permits, 1);
/// # drop(permit);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(not(shmlink_loom))]
pub fn semaphore_status(name: &str) -> Result<SemaphoreStatus, crate::segment::OpenError> {
    let region = ShmRegion::<SemaphoreState>::open_inspecting(Semaphore::<
        ShmRegion<SemaphoreState>,
    >::configure(
        crate::segment::Segment::builder(name),
    ))?;
    let st = region.shared();
    let word = st.word.load(Ordering::Relaxed);
    let holders = Semaphore::<ShmRegion<SemaphoreState>>::holders_of(st)
        .into_iter()
        .map(|(pid, permits, waiting, token)| PermitHolder {
            pid,
            permits,
            waiting,
            liveness: crate::process::liveness(token),
        })
        .collect();
    Ok(SemaphoreStatus {
        value: value_of(word),
        max: st.max.load(Ordering::Relaxed),
        waiters: waiters_of(word),
        holders,
    })
}

//! A seqlock for a plain-old-data value: one writer, any number of readers, in any
//! process: [`SeqLock`].
//!
//! The value is stored as 64-bit atomic words, written and read with Relaxed atomic
//! accesses between the sequence-counter accesses, so a reader that races a writer
//! reads stale or mixed words (and throws them away), never undefined behaviour (a
//! `read_volatile` of the payload would be a data race). After Boehm, "Can Seqlocks
//! Get Along With Programming Language Memory Models?" (2012):
//!
//! | side | operation | ordering | pairs with |
//! |------|-----------|----------|------------|
//! | writer | `seq = odd` | Relaxed | — |
//! | writer | fence | Release | the reader's Acquire fence (via the word it read) |
//! | writer | word stores | Relaxed | — |
//! | writer | `seq = odd + 1` | Release | the reader's first `seq` load |
//! | reader | `s1 = seq` | Acquire | the writer's final `seq` store |
//! | reader | word loads | Relaxed | — |
//! | reader | fence | Acquire | the writer's Release fence |
//! | reader | `s2 = seq` | Relaxed | accept only if `s1 == s2` and even |
//!
//! The counter is 64-bit, so it cannot wrap under a preempted reader.
//!
//! A reader that finds a write in progress retries: it spins through [`READ_TRIES`]
//! tries, then yields a few times, then naps (50 µs, doubling up to 1 ms): a writer
//! does not wake readers, and one that stays mid-write that long was preempted (or
//! stopped), so the reader gives the CPU away instead of burning it. Every time the
//! writer makes progress the reader starts over with spinning. [`SeqLock::read`] waits
//! as long as the writer lives; [`SeqLock::read_timeout`] and [`SeqLock::read_until`]
//! give up with [`ReadError::Timeout`] at their deadline (within a nap, 1 ms, of it);
//! [`SeqLock::try_read`] tries once.
//!
//! A writer that dies mid-write leaves the counter odd: readers give up with
//! [`ReadError::WriterDied`] once its process is gone (checked when they start
//! backing off, then every 10 ms), and a new writer (it may claim the role from the
//! dead one) repairs the counter with its first write. A new writer that leaves
//! before writing hands the role back to the dead one, so readers keep being told.
//!
//! A writer that writes back to back can starve readers (each copy overlaps the next
//! write). A reader that fails 16 tries in a row raises a `starving` flag; the writer
//! checks it (one load, on its own line) after each write and, when set, clears it and
//! pauses 2 µs, so readers finish. The writer never waits for readers
//! longer than that.

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::process::{current_token, token_dead, token_pid};
use crate::region::Pod;
use crate::region::{CacheLine, HeapRegion, RawArea, Region, ShmSafe};
use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};

#[cfg(not(shmlink_loom))]
use super::ObjectError;
#[cfg(not(shmlink_loom))]
use crate::region::{combine_fingerprints, fingerprint};
#[cfg(not(shmlink_loom))]
use crate::segment::{Kind, SegmentBuilder, ShmRegion};

/// Failed read attempts a reader spins through (one spin-loop hint each, about 15 µs
/// in all) before it reads the clock and starts backing off: yielding, then napping.
/// While writes keep getting in its way, a reader also checks its deadline once per
/// this many tries.
pub const READ_TRIES: u32 = 1 << 8;
/// A reader facing a write in progress checks its writer's liveness this often.
#[cfg(not(shmlink_loom))]
const LIVENESS_PERIOD: Duration = Duration::from_millis(10);
/// Yields between spinning and napping.
#[cfg(not(shmlink_loom))]
const YIELDS: u32 = 4;
/// A reader's first nap; each next one is twice as long, up to [`MAX_NAP`].
#[cfg(not(shmlink_loom))]
const FIRST_NAP: Duration = Duration::from_micros(50);
/// A reader's longest nap: it notices a finished write, and its deadline, within this.
#[cfg(not(shmlink_loom))]
const MAX_NAP: Duration = Duration::from_millis(1);
/// After this many failed tries a reader asks the writer for a pause.
const STARVING_AFTER: u32 = 16;
/// Writer pause for a starving reader: long enough for a few reads of a large value.
#[cfg(not(shmlink_loom))]
const PAUSE: std::time::Duration = std::time::Duration::from_micros(2);

/// Who writes, and what the value is.
#[repr(C)]
#[derive(Debug)]
struct Meta {
    /// The writer's process token; 0 when nobody holds the role.
    writer: AtomicU64,
    /// `size_of::<T>()`.
    size: AtomicU64,
    /// `T::FINGERPRINT`.
    fingerprint: AtomicU64,
}

// SAFETY: repr(C), integer atomics, no pointers; any bit pattern is validated on use.
unsafe impl ShmSafe for Meta {
    const TYPE_NAME: &'static str = "shmlink::sync::seqlock::Meta";
    fn new_zeroed() -> Self {
        Self {
            writer: AtomicU64::new(0),
            size: AtomicU64::new(0),
            fingerprint: AtomicU64::new(0),
        }
    }
}

/// The control block of a [`SeqLock`] (384 bytes); the value's words follow in the
/// region's area.
///
/// # Examples
///
/// ```
/// use shmlink::lock::SeqLockControl;
///
/// assert_eq!(size_of::<SeqLockControl>(), 384);
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct SeqLockControl {
    /// Even: stable; odd: a write is in progress. Bumped twice per write.
    seq: CacheLine<AtomicU64>,
    meta: CacheLine<Meta>,
    /// Set by a reader that keeps losing to the writer; the writer then pauses once,
    /// briefly, after a write, and clears it.
    starving: CacheLine<AtomicU64>,
}

#[cfg(not(shmlink_loom))]
const _: () = assert!(size_of::<SeqLockControl>() == 384);

// SAFETY: repr(C) of ShmSafe cache lines of atomics, no pointers.
unsafe impl ShmSafe for SeqLockControl {
    const TYPE_NAME: &'static str = "shmlink::lock::SeqLockControl";
    fn new_zeroed() -> Self {
        Self {
            seq: CacheLine::new_zeroed(),
            meta: CacheLine::new_zeroed(),
            starving: CacheLine::new_zeroed(),
        }
    }
}

/// Words of `T`.
const fn words<T>() -> usize {
    size_of::<T>().div_ceil(8)
}

/// Area bytes for a `T`.
pub(crate) const fn area_len<T>() -> usize {
    words::<T>() * 8
}

/// Why a seqlock could not be built or opened.
///
/// # Examples
///
/// ```
/// use shmlink::lock::{SeqLock, SeqLockConfigError};
///
/// let lock = SeqLock::new(0u64);
/// let err = SeqLock::<u32, _>::from_region(lock.region_arc()).unwrap_err();
/// assert!(matches!(err, SeqLockConfigError::Corrupt { what: "value size", .. }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqLockConfigError {
    /// The configuration is not one for this `T`, or does not fit the region.
    Corrupt {
        /// Which field.
        what: &'static str,
        /// The value found.
        found: u64,
    },
}

impl std::fmt::Display for SeqLockConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Corrupt { what, found } => write!(f, "corrupt seqlock: {what} = {found}"),
        }
    }
}

impl std::error::Error for SeqLockConfigError {}

/// Why a read returned no value.
///
/// # Examples
///
/// ```
/// use shmlink::lock::{ReadError, SeqLock};
///
/// let lock = SeqLock::new(1u64);
/// assert_eq!(lock.try_read(), Ok(1));
/// # let _ = ReadError::Contended;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// A write is in progress ([`SeqLock::try_read`], which tries once).
    Contended,
    /// Writes were in progress until the deadline ([`SeqLock::read_timeout`],
    /// [`SeqLock::read_until`]): the writer stayed in the middle of a write (it was
    /// preempted or stopped), or wrote faster than a read completes.
    Timeout,
    /// A write was left half done by a writer process that is gone; the value stays
    /// unreadable until a new writer writes it.
    WriterDied {
        /// The dead writer's pid.
        pid: u32,
    },
    /// The seqlock was closed in this process ([`SeqLock::close`]) while this read
    /// waited for a write to end.
    Closed,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Contended => f.write_str("a write was in progress"),
            Self::Timeout => f.write_str("a write was in progress until the deadline"),
            Self::WriterDied { pid } => {
                write!(f, "writer process {pid} died in the middle of a write")
            }
            Self::Closed => f.write_str("the seqlock was closed in this process"),
        }
    }
}

impl std::error::Error for ReadError {}

/// The writer role is held by a live process.
///
/// # Examples
///
/// ```
/// use shmlink::lock::{SeqLock, WriterTaken};
///
/// let lock = SeqLock::new(0u32);
/// let _w = lock.writer()?;
/// assert_eq!(lock.writer().unwrap_err(), WriterTaken { pid: std::process::id() });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterTaken {
    /// The holder's pid.
    pub pid: u32,
}

impl std::fmt::Display for WriterTaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the writer role is held by process {}", self.pid)
    }
}

impl std::error::Error for WriterTaken {}

/// A seqlock-protected `T` in a [`Region`]: on the heap ([`SeqLock::new`]) or in a
/// named segment (`SeqLock::create`/`open`). Readers copy the value out without
/// writing shared memory, so they never slow the writer or each other; the one writer
/// ([`SeqLock::writer`]) never waits for readers.
///
/// # Examples
///
/// ```
/// use shmlink::lock::SeqLock;
///
/// let quote = SeqLock::new([100u64, 101]);
/// let mut w = quote.writer()?;
/// w.write([102, 103]);
/// assert_eq!(quote.read()?, [102, 103]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SeqLock<T: Pod, R: Region<Shared = SeqLockControl> = HeapRegion<SeqLockControl>> {
    region: Arc<R>,
    /// The control block, cached: the region lives as long as `region`.
    ctl: NonNull<SeqLockControl>,
    area: RawArea,
    _value: PhantomData<fn(T) -> T>,
    /// Set by `close`: shared by this handle's clones.
    closed: Arc<AtomicBool>,
}

// SAFETY: `ctl` points into the region that `region` (an Arc) keeps alive; the control
// block is all atomics (ShmSafe), so sharing and sending it across threads is as safe
// as sharing the region, which `R: Send + Sync` allows.
unsafe impl<T: Pod, R: Region<Shared = SeqLockControl> + Send + Sync> Send for SeqLock<T, R> {}
// SAFETY: as for Send.
unsafe impl<T: Pod, R: Region<Shared = SeqLockControl> + Send + Sync> Sync for SeqLock<T, R> {}

impl<T: Pod, R: Region<Shared = SeqLockControl>> Clone for SeqLock<T, R> {
    fn clone(&self) -> Self {
        Self {
            region: self.region.clone(),
            ctl: self.ctl,
            area: self.area,
            _value: PhantomData,
            closed: self.closed.clone(),
        }
    }
}

impl<T: Pod> SeqLock<T, HeapRegion<SeqLockControl>> {
    /// A seqlock on the heap holding `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::SeqLock;
    ///
    /// assert_eq!(SeqLock::new(7u8).read()?, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(value: T) -> Self {
        let region = HeapRegion::<SeqLockControl>::new(area_len::<T>());
        init(region.shared(), region.area(), value);
        // The configuration was just written for T: validation cannot fail.
        match Self::from_region(Arc::new(region)) {
            Ok(lock) => lock,
            Err(e) => unreachable!("fresh seqlock: {e}"),
        }
    }
}

/// Writes the configuration and first value into a fresh region (creator only).
pub(crate) fn init<T: Pod>(ctl: &SeqLockControl, area: RawArea, value: T) {
    ctl.meta
        .size
        .store(size_of::<T>() as u64, Ordering::Relaxed);
    ctl.meta
        .fingerprint
        .store(T::FINGERPRINT, Ordering::Relaxed);
    store_words(area, &value);
}

/// Relaxed stores of the words of `value` into `area` (bounds validated by callers).
fn store_words<T: Pod>(area: RawArea, value: &T) {
    let bytes = (value as *const T).cast::<u8>();
    for k in 0..words::<T>() {
        let mut word = [0u8; 8];
        let n = (size_of::<T>() - 8 * k).min(8);
        // SAFETY: bytes 8k..8k+n lie inside `value` (n <= size - 8k); T is Pod, so it
        // has no padding and every byte is initialised.
        unsafe { core::ptr::copy_nonoverlapping(bytes.add(8 * k), word.as_mut_ptr(), n) };
        // SAFETY: 8k + 8 <= area length (area_len::<T>(), validated), 8-aligned; the
        // region outlives this call (callers hold it); accessed atomically only.
        let w = unsafe { area.atomic_u64(8 * k) };
        w.store(u64::from_ne_bytes(word), Ordering::Relaxed);
    }
}

/// A reader's state while writes keep it from reading ([`SeqLock::read_until`]).
struct Retry {
    /// Failed attempts so far.
    failures: u32,
    /// Failed attempts since the counter last changed (`seq`): how long the writer
    /// has been stuck, as far as this reader can tell.
    stuck: u32,
    /// The counter the last failed attempt saw.
    seq: u64,
    /// The next nap.
    #[cfg(not(shmlink_loom))]
    nap: Duration,
    /// When to check the writer's liveness next (`None`: at the first chance).
    #[cfg(not(shmlink_loom))]
    next_liveness: Option<Instant>,
}

impl Retry {
    #[inline(always)]
    fn new() -> Self {
        Self {
            failures: 0,
            stuck: 0,
            // Never an attempt's: the first failure starts the count.
            seq: u64::MAX,
            #[cfg(not(shmlink_loom))]
            nap: FIRST_NAP,
            #[cfg(not(shmlink_loom))]
            next_liveness: None,
        }
    }
}

impl<T: Pod, R: Region<Shared = SeqLockControl>> SeqLock<T, R> {
    /// Wraps a region initialised for `T`, validating it.
    ///
    /// # Errors
    ///
    /// [`SeqLockConfigError::Corrupt`] if the size or fingerprint is not `T`'s or the
    /// area is too short.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::SeqLock;
    ///
    /// let a = SeqLock::new(5u64);
    /// let b = SeqLock::<u64, _>::from_region(a.region_arc())?;
    /// assert_eq!(b.read()?, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_region(region: Arc<R>) -> Result<Self, SeqLockConfigError> {
        let ctl = region.shared();
        let corrupt = |what, found| SeqLockConfigError::Corrupt { what, found };
        let size = ctl.meta.size.load(Ordering::Relaxed);
        if size != size_of::<T>() as u64 {
            return Err(corrupt("value size", size));
        }
        let fp = ctl.meta.fingerprint.load(Ordering::Relaxed);
        if fp != T::FINGERPRINT {
            return Err(corrupt("value fingerprint", fp));
        }
        let area = region.area();
        if area.len() < area_len::<T>() {
            return Err(corrupt("area length", area.len() as u64));
        }
        Ok(Self {
            ctl: NonNull::from(region.shared()),
            region,
            area,
            _value: PhantomData,
            closed: Arc::new(AtomicBool::new(false)),
        })
    }

    #[inline(always)]
    fn ctl(&self) -> &SeqLockControl {
        // SAFETY: points into the region, which `self.region` keeps alive for as long
        // as `self`; the control block is ShmSafe (atomics only).
        unsafe { self.ctl.as_ref() }
    }

    /// One read attempt.
    #[inline(always)]
    fn attempt(&self) -> Result<T, u64> {
        let seq = &self.ctl().seq;
        // SYNC: Acquire pairs with the writer's Release store of the even `seq`: the
        // words of that write are visible.
        let s1 = seq.load(Ordering::Acquire);
        if s1 & 1 != 0 {
            return Err(s1);
        }
        let mut out = MaybeUninit::<T>::uninit();
        let dst = out.as_mut_ptr().cast::<u8>();
        for k in 0..words::<T>() {
            // SAFETY: 8k + 8 <= area length (validated in from_region), 8-aligned; the
            // region lives as long as self; accessed atomically only.
            let w = unsafe { self.area.atomic_u64(8 * k) }.load(Ordering::Relaxed);
            let n = (size_of::<T>() - 8 * k).min(8);
            // SAFETY: bytes 8k..8k+n lie inside `out`.
            unsafe { core::ptr::copy_nonoverlapping(w.to_ne_bytes().as_ptr(), dst.add(8 * k), n) };
        }
        // SYNC: Acquire fence pairs with the writer's Release fence: if any word above
        // came from a write that started after s1, the odd `seq` of that write is
        // visible to the load below.
        fence(Ordering::Acquire);
        let s2 = seq.load(Ordering::Relaxed);
        if s1 != s2 {
            return Err(s2);
        }
        // SAFETY: every byte of `out` was written above; T is Pod, so any bytes are a
        // valid T; and s1 == s2 (even) means no write overlapped the copy.
        Ok(unsafe { out.assume_init() })
    }

    /// Copies the value out, waiting while a write is in progress for as long as the
    /// writer process lives (see [`read_until`](Self::read_until) for how it waits).
    ///
    /// A writer is never in the middle of a write for long unless it was preempted or
    /// stopped (`SIGSTOP`, a debugger): use [`read_timeout`](Self::read_timeout) where
    /// a stopped writer must not hold the reader up. (A live writer that took the role
    /// over from a dead one, and has not written yet, also counts as one in the middle
    /// of a write: the value is unreadable until it writes.)
    ///
    /// # Errors
    ///
    /// [`ReadError::WriterDied`] if a dead writer left a write half done.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::SeqLock;
    ///
    /// let lock = SeqLock::new(3u32);
    /// assert_eq!(lock.read()?, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn read(&self) -> Result<T, ReadError> {
        self.read_until(None)
    }

    /// Copies the value out, waiting at most `timeout` while a write is in progress.
    ///
    /// # Errors
    ///
    /// [`ReadError::Timeout`] if a write was still in progress after `timeout` (give
    /// or take a millisecond); [`ReadError::WriterDied`] if a dead writer left a write
    /// half done.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::SeqLock;
    /// use std::time::Duration;
    ///
    /// let lock = SeqLock::new(3u32);
    /// assert_eq!(lock.read_timeout(Duration::from_millis(5))?, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn read_timeout(&self, timeout: Duration) -> Result<T, ReadError> {
        self.read_until(Instant::now().checked_add(timeout))
    }

    /// Copies the value out, waiting until `deadline` (`None`: as long as the writer
    /// lives) while a write is in progress.
    ///
    /// A write in progress is usually over within a few tries. If it is not, the
    /// reader spins through [`READ_TRIES`] tries, then yields a few times, then naps
    /// (50 µs, doubling up to 1 ms, and never past `deadline`): a writer does not wake
    /// readers, and one that stays in the middle of a write that long was preempted,
    /// so the reader gives its CPU away. Whenever the writer gets on, the reader
    /// spins again. A deadline already past still gets the tries before the reader
    /// would back off (a few microseconds).
    ///
    /// # Errors
    ///
    /// [`ReadError::Timeout`] if a write was still in progress at `deadline` (give or
    /// take a millisecond); [`ReadError::WriterDied`] if a dead writer left a write
    /// half done.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::SeqLock;
    /// use std::time::{Duration, Instant};
    ///
    /// let lock = SeqLock::new([1u64, 2]);
    /// let deadline = Instant::now() + Duration::from_millis(5);
    /// assert_eq!(lock.read_until(Some(deadline))?, [1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn read_until(&self, deadline: Option<Instant>) -> Result<T, ReadError> {
        // The loop is inlined and the value never leaves registers on the way out;
        // everything rare is in `after_failure`, which returns no `T` (a `T` merged
        // from two paths goes through memory, and reading it back stalls on store
        // forwarding: 5x the cost of the copy).
        let mut retry = Retry::new();
        loop {
            match self.attempt() {
                Ok(v) => return Ok(v),
                Err(seq) => self.after_failure(&mut retry, seq, deadline)?,
            }
        }
    }

    /// After a failed attempt that saw `seq`: spins, yields or naps (see the module
    /// docs), asks the writer for a pause, checks a stuck writer's liveness, or gives
    /// up at `deadline`.
    #[cold]
    #[inline(never)]
    fn after_failure(
        &self,
        retry: &mut Retry,
        seq: u64,
        deadline: Option<Instant>,
    ) -> Result<(), ReadError> {
        retry.failures = retry.failures.saturating_add(1);
        if retry.failures == STARVING_AFTER {
            // A writer that writes back to back would starve us: ask it for one short
            // pause (it clears the flag, so a reader that dies here costs it one pause,
            // not one per write).
            self.ctl().starving.store(1, Ordering::Relaxed);
        }
        if seq != retry.seq {
            // The writer got on (or this is the first failure): spin again.
            retry.seq = seq;
            retry.stuck = 0;
        }
        retry.stuck = retry.stuck.saturating_add(1);
        // Under loom there is no clock and nobody dies: every failure is a yield point.
        #[cfg(shmlink_loom)]
        {
            let _ = deadline;
            if self.is_closed() {
                return Err(ReadError::Closed);
            }
            crate::sync::spin_loop();
            Ok(())
        }
        #[cfg(not(shmlink_loom))]
        {
            // Spin without reading the clock, except once per READ_TRIES failures (a
            // writer that keeps writing must not keep us past the deadline).
            if retry.stuck <= READ_TRIES && !retry.failures.is_multiple_of(READ_TRIES) {
                crate::sync::spin_loop();
                return Ok(());
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(ReadError::Timeout);
            }
            if self.is_closed() {
                return Err(ReadError::Closed);
            }
            // Liveness only once stuck: a writer that gets on is alive.
            let stuck = retry.stuck > READ_TRIES;
            if stuck && seq & 1 != 0 && retry.next_liveness.is_none_or(|t| now >= t) {
                retry.next_liveness = Some(now + LIVENESS_PERIOD);
                self.check_writer()?;
            }
            if !stuck {
                crate::sync::spin_loop();
            } else if retry.stuck <= READ_TRIES + YIELDS {
                crate::sync::yield_now();
            } else {
                // A writer does not wake readers: nap, at most until the deadline.
                let nap = match deadline {
                    Some(d) => retry.nap.min(d - now),
                    None => retry.nap,
                };
                std::thread::sleep(nap);
                retry.nap = (retry.nap * 2).min(MAX_NAP);
            }
            Ok(())
        }
    }

    /// Closes this handle and its clones: a `read` of theirs waiting for a write to
    /// end, in any thread, returns [`ReadError::Closed`] within a nap (1 ms). Reads
    /// that need not wait, other handles and other processes are not affected.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::{ReadError, SeqLock};
    ///
    /// let lock = SeqLock::new(7u64);
    /// lock.close();
    /// assert!(lock.is_closed());
    /// assert_eq!(lock.read(), Ok(7)); // no write in progress: no wait
    /// # let _ = ReadError::Closed;
    /// ```
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Whether [`close`](Self::close) was called on this handle or a clone.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::SeqLock;
    ///
    /// assert!(!SeqLock::new(0u8).is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// For a reader that found a write in progress: `WriterDied` if its writer is gone
    /// and the write is still half done.
    #[cfg(not(shmlink_loom))]
    #[cold]
    fn check_writer(&self) -> Result<(), ReadError> {
        let writer = self.ctl().meta.writer.load(Ordering::Relaxed);
        // Still mid-write, and its writer is gone (a new writer may have repaired it
        // meanwhile: then the next attempt succeeds).
        if writer != 0 && token_dead(writer) && self.ctl().seq.load(Ordering::Relaxed) & 1 != 0 {
            return Err(ReadError::WriterDied {
                pid: token_pid(writer),
            });
        }
        Ok(())
    }

    /// One read attempt.
    ///
    /// # Errors
    ///
    /// [`ReadError::Contended`] if a write was in progress.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::SeqLock;
    ///
    /// assert_eq!(SeqLock::new(1i8).try_read(), Ok(1));
    /// ```
    pub fn try_read(&self) -> Result<T, ReadError> {
        self.attempt().map_err(|_| ReadError::Contended)
    }

    /// Writes completed so far (the counter / 2).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::SeqLock;
    ///
    /// let lock = SeqLock::new(0u64);
    /// lock.writer()?.write(1);
    /// assert_eq!(lock.version(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn version(&self) -> u64 {
        self.ctl().seq.load(Ordering::Relaxed) / 2
    }

    /// Claims the writer role (taking it over from a dead process if need be).
    ///
    /// # Errors
    ///
    /// [`WriterTaken`] if a live process holds it.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::SeqLock;
    ///
    /// let lock = SeqLock::new(0u64);
    /// let w = lock.writer()?;
    /// assert!(lock.writer().is_err());
    /// drop(w);
    /// assert!(lock.writer().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn writer(&self) -> Result<SeqWriter<T, R>, WriterTaken> {
        let me = current_token();
        let role = &self.ctl().meta.writer;
        let mut current = role.load(Ordering::Relaxed);
        loop {
            if current != 0 && !token_dead(current) {
                return Err(WriterTaken {
                    pid: token_pid(current),
                });
            }
            // SYNC: Acquire pairs with the previous writer's Release when it left: its
            // `seq` is the one we continue from.
            match role.compare_exchange(current, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => {
                    return Ok(SeqWriter {
                        lock: self.clone(),
                        token: me,
                        predecessor: current,
                    });
                }
                Err(now) => current = now,
            }
        }
    }

    /// The writer's pid, if the role is held.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::SeqLock;
    ///
    /// let lock = SeqLock::new(0u64);
    /// let _w = lock.writer()?;
    /// assert_eq!(lock.writer_pid(), Some(std::process::id()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn writer_pid(&self) -> Option<u32> {
        let w = self.ctl().meta.writer.load(Ordering::Relaxed);
        (w != 0).then(|| token_pid(w))
    }

    /// A new reference to the region, e.g. to wrap it again.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::SeqLock;
    ///
    /// let lock = SeqLock::new(0u16);
    /// assert!(SeqLock::<u16, _>::from_region(lock.region_arc()).is_ok());
    /// ```
    pub fn region_arc(&self) -> Arc<R> {
        self.region.clone()
    }
}

impl<T: Pod, R: Region<Shared = SeqLockControl>> std::fmt::Debug for SeqLock<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeqLock")
            .field("version", &self.version())
            .field("writer", &self.writer_pid())
            .finish()
    }
}

/// The writer of a [`SeqLock`]; gives the role back on drop.
///
/// # Examples
///
/// ```
/// use shmlink::lock::SeqLock;
///
/// let lock = SeqLock::new([0u32; 4]);
/// let mut w = lock.writer()?;
/// w.update(|v| v[2] = 9);
/// assert_eq!(lock.read()?, [0, 0, 9, 0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SeqWriter<T: Pod, R: Region<Shared = SeqLockControl> = HeapRegion<SeqLockControl>> {
    lock: SeqLock<T, R>,
    token: u64,
    /// The (dead) writer the role was taken over from; 0 if it was free.
    predecessor: u64,
}

impl<T: Pod, R: Region<Shared = SeqLockControl>> SeqWriter<T, R> {
    /// Publishes `value`. Never waits.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::SeqLock;
    ///
    /// let lock = SeqLock::new(0u64);
    /// lock.writer()?.write(42);
    /// assert_eq!(lock.read()?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write(&mut self, value: T) {
        let seq = &self.lock.ctl().seq;
        // Odd: a write is in progress. If a dead writer left it odd already, continue
        // from there; the next even value repairs it.
        let odd = seq.load(Ordering::Relaxed) | 1;
        seq.store(odd, Ordering::Relaxed);
        // SYNC: Release fence pairs with the reader's Acquire fence: a reader that
        // reads any word stored below sees `seq == odd` (or later) and retries.
        fence(Ordering::Release);
        crate::process::crash::point("seqlock.write", 1);
        store_words(self.lock.area, &value);
        crate::process::crash::point("seqlock.write", 2);
        // SYNC: Release pairs with the reader's Acquire load of `seq`.
        seq.store(odd.wrapping_add(1), Ordering::Release);
        crate::process::crash::point("seqlock.write", 3);
        let starving = &self.lock.ctl().starving;
        if starving.load(Ordering::Relaxed) != 0 {
            self.pause(starving);
        }
    }

    /// Gives a starving reader a window of a few microseconds, then clears its flag.
    #[cold]
    fn pause(&self, starving: &AtomicU64) {
        starving.store(0, Ordering::Relaxed);
        #[cfg(not(shmlink_loom))]
        {
            let until = std::time::Instant::now() + PAUSE;
            while std::time::Instant::now() < until {
                crate::sync::spin_loop();
            }
        }
        #[cfg(shmlink_loom)]
        crate::sync::spin_loop();
    }

    /// The current value (the writer's own reads never race).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::SeqLock;
    ///
    /// let lock = SeqLock::new(3u64);
    /// assert_eq!(lock.writer()?.get(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self) -> T {
        let mut out = MaybeUninit::<T>::uninit();
        let dst = out.as_mut_ptr().cast::<u8>();
        for k in 0..words::<T>() {
            // SAFETY: as in `SeqLock::attempt`.
            let w = unsafe { self.lock.area.atomic_u64(8 * k) }.load(Ordering::Relaxed);
            let n = (size_of::<T>() - 8 * k).min(8);
            // SAFETY: bytes 8k..8k+n lie inside `out`.
            unsafe { core::ptr::copy_nonoverlapping(w.to_ne_bytes().as_ptr(), dst.add(8 * k), n) };
        }
        // SAFETY: every byte written; T is Pod.
        unsafe { out.assume_init() }
    }

    /// Copies the value out, lets `f` change it, and publishes the result.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::SeqLock;
    ///
    /// let lock = SeqLock::new(1u64);
    /// lock.writer()?.update(|v| *v += 1);
    /// assert_eq!(lock.read()?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn update(&mut self, f: impl FnOnce(&mut T)) {
        let mut value = self.get();
        f(&mut value);
        self.write(value);
    }
}

impl<T: Pod, R: Region<Shared = SeqLockControl>> Drop for SeqWriter<T, R> {
    fn drop(&mut self) {
        let ctl = self.lock.ctl();
        // Our writes leave `seq` even: odd means a dead writer's half-done write that
        // we took over and never repaired. Hand the role back to that writer, so
        // readers keep being told it died (rather than waiting for a writer that is
        // not there), and the next writer takes it over as we did.
        let next = if ctl.seq.load(Ordering::Relaxed) & 1 != 0 {
            self.predecessor
        } else {
            0
        };
        // SYNC: Release pairs with the next writer's Acquire claim.
        let _ = ctl.meta.writer.compare_exchange(
            self.token,
            next,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

impl<T: Pod, R: Region<Shared = SeqLockControl>> std::fmt::Debug for SeqWriter<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeqWriter")
            .field("version", &self.lock.version())
            .finish()
    }
}

#[cfg(not(shmlink_loom))]
impl<T: Pod> SeqLock<T, ShmRegion<SeqLockControl>> {
    fn configure(builder: SegmentBuilder) -> SegmentBuilder {
        builder
            .typed_defaults(
                Kind::SeqLock,
                combine_fingerprints(fingerprint::<SeqLockControl>(), T::FINGERPRINT),
            )
            .type_name_default(std::any::type_name::<T>())
    }

    /// Creates a named seqlock holding `value`.
    ///
    /// # Errors
    ///
    /// [`ObjectError::Create`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Segment;
    /// use shmlink::lock::SeqLock;
    /// # let name = format!("doc-seqlock-create-{}", std::process::id());
    ///
    /// let quote = SeqLock::create(Segment::builder(&name).unlink_on_drop(true), [0u64; 4])?;
    /// let reader = SeqLock::<[u64; 4], _>::open(Segment::builder(&name))?; // another process
    /// quote.writer()?.write([1, 2, 3, 4]);
    /// assert_eq!(reader.read()?, [1, 2, 3, 4]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(
        builder: SegmentBuilder,
        value: T,
    ) -> Result<Self, ObjectError<SeqLockConfigError>> {
        let region = ShmRegion::<SeqLockControl>::create_with(
            Self::configure(builder.clone()),
            super::seqlock::area_len::<T>(),
            |ctl, area| super::seqlock::init(ctl, area, value),
        )
        .map_err(|e| ObjectError::create(&builder, e))?;
        Self::from_region(Arc::new(region)).map_err(ObjectError::Config)
    }

    /// Opens a named seqlock of `T`.
    ///
    /// # Errors
    ///
    /// [`ObjectError::Open`] (`TypeMismatch` for another `T`), [`ObjectError::Config`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::ObjectError;
    /// use shmlink::segment::{OpenError, Segment};
    /// use shmlink::lock::SeqLock;
    /// # let name = format!("doc-seqlock-open-{}", std::process::id());
    /// let _a = SeqLock::create(Segment::builder(&name).unlink_on_drop(true), 0u64)?;
    ///
    /// let wrong = SeqLock::<u32, _>::open(Segment::builder(&name)).unwrap_err();
    /// assert!(matches!(wrong, ObjectError::Open { error: OpenError::TypeMismatch { .. }, .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(builder: SegmentBuilder) -> Result<Self, ObjectError<SeqLockConfigError>> {
        let region = ShmRegion::<SeqLockControl>::open(Self::configure(builder.clone()))
            .map_err(|e| ObjectError::open(&builder, e))?;
        Self::from_region(Arc::new(region)).map_err(ObjectError::Config)
    }

    /// Opens the named seqlock, or creates it holding `value` if the name holds none.
    /// One left stale by a crash is resumed with the value it holds (a write the dead
    /// writer left half done is reported to readers as usual, until a new writer
    /// writes), and replaced if it does not validate.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create) and [`open`](Self::open).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::SeqLock;
    /// use shmlink::segment::{Disposition, Segment};
    /// # let name = format!("doc-seqlock-open-or-create-{}", std::process::id());
    ///
    /// let builder = Segment::builder(&name).unlink_on_drop(true);
    /// let (a, how) = SeqLock::open_or_create(builder.clone(), 1u64)?;
    /// assert_eq!(how, Disposition::Created);
    /// let (b, how) = SeqLock::open_or_create(builder, 2u64)?; // `value` is not applied
    /// assert_eq!((how, b.read()?), (Disposition::Opened, 1));
    /// # drop(a);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_or_create(
        builder: SegmentBuilder,
        value: T,
    ) -> Result<(Self, crate::segment::Disposition), ObjectError<SeqLockConfigError>> {
        super::open_or_create_in(
            &Self::configure(builder),
            super::seqlock::area_len::<T>(),
            |ctl, area| super::seqlock::init(ctl, area, value),
            Self::from_region,
            |l| l.region.segment(),
        )
    }
}

#[cfg(all(test, not(shmlink_loom)))]
mod tests {
    use super::*;

    /// A read waiting for a write to end (a live writer stuck mid-write: `seq` odd,
    /// writer token ours) returns `Closed` once the lock is closed from another
    /// thread, with and without a deadline; a read that need not wait still reads.
    #[test]
    #[cfg_attr(miri, ignore = "sleeps")]
    fn close_ends_a_read_waiting_for_a_write() {
        let lock = SeqLock::new(3u64);
        let writer = lock.writer().unwrap();
        lock.ctl().seq.fetch_add(1, Ordering::Relaxed); // a write begun, never ended
        let t0 = Instant::now();
        let readers: Vec<_> = [None, Some(Duration::from_secs(60))]
            .into_iter()
            .map(|timeout| {
                let lock = lock.clone();
                std::thread::spawn(move || match timeout {
                    None => lock.read(),
                    Some(t) => lock.read_timeout(t),
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(30));
        lock.clone().close(); // through a clone: the same handle
        for r in readers {
            assert_eq!(r.join().unwrap(), Err(ReadError::Closed));
        }
        assert!(t0.elapsed() < Duration::from_secs(5));
        lock.ctl().seq.fetch_add(1, Ordering::Relaxed); // the write ends
        assert_eq!(lock.read(), Ok(3));
        drop(writer);
    }

    #[test]
    fn odd_sizes_round_trip() {
        let lock = SeqLock::new([1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        lock.writer()
            .unwrap()
            .write([11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(lock.read().unwrap(), [11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads /proc")]
    fn a_half_done_write_by_a_dead_writer_is_reported_then_repaired() {
        let lock = SeqLock::new(5u64);
        let dead = current_token() ^ (1 << 40);
        lock.ctl().meta.writer.store(dead, Ordering::Relaxed);
        lock.ctl().seq.store(7, Ordering::Relaxed); // odd: mid-write
        assert_eq!(
            lock.read(),
            Err(ReadError::WriterDied {
                pid: std::process::id()
            })
        );
        // A writer that takes over and leaves without writing: still reported.
        drop(lock.writer().expect("the dead writer's role is taken over"));
        assert_eq!(
            lock.read(),
            Err(ReadError::WriterDied {
                pid: std::process::id()
            })
        );
        let mut w = lock.writer().expect("the dead writer's role is taken over");
        w.write(6);
        assert_eq!(lock.read(), Ok(6));
        assert_eq!(lock.version(), 4);
    }

    /// Makes `seq` odd as the live writer's write would, as if that writer were
    /// preempted between its first and last store.
    fn stall_mid_write<T: Pod>(lock: &SeqLock<T>) {
        let seq = lock.ctl().seq.load(Ordering::Relaxed);
        lock.ctl().seq.store(seq | 1, Ordering::Relaxed);
    }

    /// A reader facing a write that stays half done for a long time (its writer was
    /// preempted: alive, and it finishes) waits for it and reads the new value. (It
    /// gave up with `Contended` after 2^20 tries, 60-300 ms here depending on the
    /// load.)
    #[test]
    #[cfg_attr(miri, ignore = "sleeps for real time")]
    fn a_reader_waits_out_a_writer_preempted_mid_write() {
        let lock = SeqLock::new(1u64);
        let mut w = lock.writer().unwrap();
        stall_mid_write(&lock);
        let reader = {
            let lock = lock.clone();
            std::thread::spawn(move || lock.read())
        };
        // The reader is in its retry loop once it asks the writer for a pause.
        let t0 = std::time::Instant::now();
        while lock.ctl().starving.load(Ordering::Relaxed) == 0 {
            assert!(t0.elapsed() < std::time::Duration::from_secs(10), "no read");
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
        w.write(2); // the preempted write runs on and completes
        assert_eq!(reader.join().unwrap(), Ok(2));
    }

    /// A reader with a deadline facing a writer stuck mid-write gives up at its
    /// deadline, not before, and soon after (the bound is loose: the machine may be
    /// loaded). A deadline already past gets `Timeout` too; `try_read` says
    /// `Contended` at once.
    #[test]
    #[cfg_attr(miri, ignore = "sleeps for real time")]
    fn a_reader_with_a_deadline_gives_up_on_a_stuck_writer() {
        use std::time::{Duration, Instant};
        let lock = SeqLock::new(1u64);
        let _w = lock.writer().unwrap();
        stall_mid_write(&lock);
        assert_eq!(lock.try_read(), Err(ReadError::Contended));
        let t0 = Instant::now();
        assert_eq!(
            lock.read_timeout(Duration::from_millis(5)),
            Err(ReadError::Timeout)
        );
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(5), "gave up early: {took:?}");
        // Late only by scheduling (bounds loose for a loaded 2-core CI machine): a
        // reader that waited for the writer would never return.
        assert!(took < Duration::from_millis(500), "gave up late: {took:?}");
        let t0 = Instant::now();
        assert_eq!(lock.read_until(Some(t0)), Err(ReadError::Timeout));
        assert!(t0.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn readers_never_see_a_torn_value() {
        let lock = SeqLock::new([0u64; 8]);
        let mut w = lock.writer().unwrap();
        let reader = {
            let lock = lock.clone();
            std::thread::spawn(move || {
                let mut seen = 0;
                for _ in 0..if cfg!(miri) { 50 } else { 20_000 } {
                    let v = lock.read().unwrap();
                    assert!(v.iter().all(|&x| x == v[0]), "torn: {v:?}");
                    seen = seen.max(v[0]);
                }
                seen
            })
        };
        let mut i = 0u64;
        while !reader.is_finished() {
            i += 1;
            w.write([i; 8]);
        }
        reader.join().unwrap();
    }
}

/// A named seqlock's state, read without reading the value (what `shmlink inspect`
/// shows); a snapshot.
#[cfg(not(shmlink_loom))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqLockStatus {
    /// The sequence number: twice the writes completed, plus one during a write.
    pub seq: u64,
    /// The writer's pid and liveness, if a process holds the writer role (a write
    /// in progress whose writer is dead is reported to readers as `WriterDied`).
    pub writer: Option<(u32, crate::process::Liveness)>,
    /// Size of the protected value in bytes.
    pub size: u64,
}

/// Reads the state of the seqlock named `name`, whatever the type it protects.
///
/// # Errors
///
/// As [`crate::segment::inspect`] and the segment's open (`WrongKind` for another
/// object).
///
/// # Examples
///
/// ```
/// use shmlink::lock::{SeqLock, seqlock_status};
/// use shmlink::segment::Segment;
/// # let name = format!("doc-seqlock-status-{}", std::process::id());
///
/// let lock = SeqLock::create(Segment::builder(&name).unlink_on_drop(true), 0u64)?;
/// let mut writer = lock.writer()?;
/// writer.write(5);
/// let status = seqlock_status(&name)?;
/// assert_eq!(status.seq, 2); // one write
/// assert_eq!(status.writer.map(|(pid, _)| pid), Some(std::process::id()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(not(shmlink_loom))]
pub fn seqlock_status(name: &str) -> Result<SeqLockStatus, crate::segment::OpenError> {
    use crate::segment::{Kind, OpenError, Segment};
    let info = crate::segment::inspect(name)?;
    let header = info.header.ok_or(OpenError::NotInitialized {
        waited: std::time::Duration::ZERO,
    })?;
    let builder = Segment::builder(name)
        .kind(Kind::SeqLock)
        .fingerprint(header.fingerprint);
    let region = ShmRegion::<SeqLockControl>::open_inspecting(builder)?;
    let ctl = region.shared();
    let writer = ctl.meta.writer.load(Ordering::Relaxed);
    Ok(SeqLockStatus {
        seq: ctl.seq.load(Ordering::Relaxed),
        writer: (writer != 0).then(|| {
            (
                crate::process::token_pid(writer),
                crate::process::liveness(writer),
            )
        }),
        size: ctl.meta.size.load(Ordering::Relaxed),
    })
}

//! The producer end of an SPSC ring and its write chunks.

use core::cell::Cell;
use core::fmt;
use std::time::{Duration, Instant};

use super::{RawGone, RawHandle, Spsc, SpscHeader, deadline_after};
use crate::process::crash;
use crate::region::{Pod, Region};
use crate::ring::{ChunkError, Corruption, PushError};
use crate::sync::atomic::Ordering;
use crate::sync::{WaitError, WaitMode};

/// The producer end. `Send`, used through `&mut self`.
///
/// # Examples
///
/// ```
/// use shmlink::ring::Spsc;
/// use shmlink::sync::WaitMode;
///
/// let ring = Spsc::<u64, _>::new(8, WaitMode::Blocking)?;
/// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
/// // 100 elements through 8 slots: each side waits for the other.
/// let sender = std::thread::spawn(move || (0..100).try_for_each(|i| tx.push(i)));
/// for i in 0..100 {
///     assert_eq!(rx.pop()?, i);
/// }
/// sender.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Producer<T: Pod, R: Region<Shared = SpscHeader>> {
    pub(super) raw: RawHandle,
    /// Our position (authoritative: only we write `tail`).
    pub(super) tail: u64,
    /// Last `head` we read; the real one is never behind it.
    pub(super) cached_head: Cell<u64>,
    /// Stamps of positions below this may be stale "published" marks of a batch a
    /// dead producer left half stamped (see [`Spsc::producer`]): each publication
    /// ending below it voids the stamp of the slot after it first.
    pub(super) repair_until: u64,
    pub(super) ring: Spsc<T, R>,
}

impl<T: Pod, R: Region<Shared = SpscHeader>> Producer<T, R> {
    /// Whether the ring was closed in this process ([`Spsc::close`](super::Spsc::close)).
    pub(crate) fn is_closed(&self) -> bool {
        self.raw.is_closed()
    }

    /// Re-reads `head`, validating it: `cached_head <= head <= tail`.
    #[cold]
    fn refresh_head(&mut self) -> Result<(), Corruption> {
        // SYNC: Acquire pairs with the consumer's Release store of `head`: the slots
        // it released are no longer read.
        let head = self.raw.header().head.load(Ordering::Acquire);
        if head < self.cached_head.get() || head > self.tail {
            return Err(Corruption {
                what: "consumer position (head)",
                found: head,
            });
        }
        self.cached_head.set(head);
        Ok(())
    }

    #[inline(always)]
    fn free(&self) -> u64 {
        self.raw.capacity - (self.tail - self.cached_head.get())
    }

    #[cold]
    fn full_error(&mut self, value: T) -> PushError<T> {
        if self.raw.is_closed() {
            return PushError::Closed(value);
        }
        if self.raw.peer_gone(&self.raw.header().roles.consumer, false) {
            PushError::Disconnected(value)
        } else {
            PushError::Full(value)
        }
    }

    /// Makes sure the stamp of `end`, the slot after the publication we are about to
    /// make, does not read "published for `end`": a producer that died stamping a
    /// batch may have left it so, and the consumer polls that stamp once it has taken
    /// what we publish. Relaxed: the publication that follows (Release) orders it
    /// before any consumer read of the stamp.
    #[inline]
    fn void_stale_stamp(&self, end: u64) {
        if end < self.repair_until {
            let stamp = self.raw.stamp::<T>(end);
            if stamp.load(Ordering::Relaxed) == end + 1 {
                // The previous lap's value: never "published" for a position the
                // consumer still asks about.
                stamp.store(
                    (end + 1).saturating_sub(self.raw.capacity),
                    Ordering::Relaxed,
                );
            }
        }
    }

    /// Publishes the `n` written slots from `tail`: stamps (last slot first), then
    /// `tail`.
    #[inline(always)]
    fn publish(&mut self, n: u64) {
        crash::point("spsc.push", 1);
        self.void_stale_stamp(self.tail + n);
        crash::point("spsc.push", 2);
        // Last slot first: a consumer that sees the first slot's stamp then sees every
        // stamp of the batch (a chunk or frame is never seen half published).
        for pos in (self.tail..self.tail + n).rev() {
            // SYNC: Release pairs with the consumer's Acquire load of the stamp: the
            // value written before is visible once the stamp reads `pos + 1`.
            self.raw.stamp::<T>(pos).store(pos + 1, Ordering::Release);
            if pos + 1 == self.tail + n {
                crash::point("spsc.push", 3);
            }
        }
        crash::point("spsc.push", 4);
        self.tail += n;
        let h = self.raw.header();
        // SYNC: Release pairs with the consumer's Acquire load of `tail`: the slot
        // writes above are visible to it before the new tail is.
        h.tail.store(self.tail, Ordering::Release);
        crash::point("spsc.push", 5);
        if self.raw.notify {
            h.data.notify();
        }
    }

    /// Pushes `value` if there is room.
    ///
    /// While there is room a push succeeds even if no consumer is attached (one may
    /// claim the role later and read it); once the ring is full and the consumer left
    /// or died, pushes fail with `Disconnected`.
    ///
    /// # Errors
    ///
    /// `Full` (value returned), `Disconnected` (full, and the consumer left or died),
    /// `Corrupted` if its position is impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{PushError, Spsc};
    /// use shmlink::sync::WaitMode;
    ///
    /// let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// let mut tx = ring.producer()?;
    /// for i in 0..8 {
    ///     tx.try_push(i)?;
    /// }
    /// assert_eq!(tx.try_push(8), Err(PushError::Full(8)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_push(&mut self, value: T) -> Result<(), PushError<T>> {
        if self.free() == 0 {
            if let Err(c) = self.refresh_head() {
                return Err(PushError::Corrupted(value, c));
            }
            if self.free() == 0 {
                return Err(self.full_error(value));
            }
        }
        let off = self.raw.offset::<T>(self.tail);
        // SAFETY: the slot of `tail` is free (tail - head < capacity) so the consumer
        // does not read it, it is in bounds (offset), and T is Pod.
        unsafe { self.raw.area.write_value(off, value) };
        self.publish(1);
        Ok(())
    }

    /// Pushes `value`, waiting for room until `timeout` passes.
    ///
    /// # Errors
    ///
    /// `Timeout`, `Disconnected`, `Corrupted`, each with the value.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{PushError, Spsc};
    /// use shmlink::sync::WaitMode;
    /// use std::time::Duration;
    ///
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let (mut tx, _rx) = (ring.producer()?, ring.consumer()?);
    /// tx.push_timeout(1, Duration::from_millis(10))?;
    /// tx.push_slice(&[0; 7]); // now full, and nobody pops
    /// let err = tx.push_timeout(2, Duration::from_millis(1)).unwrap_err();
    /// assert_eq!(err, PushError::Timeout(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push_timeout(&mut self, value: T, timeout: Duration) -> Result<(), PushError<T>> {
        self.push_until(value, deadline_after(timeout))
    }

    /// Pushes `value`, waiting for room as long as the consumer is alive (or, while
    /// no consumer ever claimed the role, as long as the ring's creator is alive).
    ///
    /// # Errors
    ///
    /// `Disconnected` once the consumer left or died, `Corrupted`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{PushError, Spsc};
    /// use shmlink::sync::WaitMode;
    ///
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let (mut tx, rx) = (ring.producer()?, ring.consumer()?);
    /// tx.push(1)?; // there is room: returns at once
    /// drop(rx);
    /// tx.push_slice(&[0; 7]);
    /// // Full, and the consumer is gone: waiting would never end.
    /// assert_eq!(tx.push(2), Err(PushError::Disconnected(2)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push(&mut self, value: T) -> Result<(), PushError<T>> {
        self.push_until(value, None)
    }

    pub(crate) fn push_until(
        &mut self,
        value: T,
        deadline: Option<Instant>,
    ) -> Result<(), PushError<T>> {
        match self.try_push(value) {
            Err(PushError::Full(v)) => match self.wait_for_space(1, deadline) {
                Ok(()) => self.try_push(v),
                Err(WaitError::Timeout) => Err(PushError::Timeout(v)),
                Err(WaitError::Disconnected) => Err(PushError::Disconnected(v)),
            },
            other => other,
        }
    }

    #[cold]
    pub(crate) fn wait_for_space(
        &mut self,
        n: u64,
        deadline: Option<Instant>,
    ) -> Result<(), WaitError> {
        let h = self.raw.header();
        let mode = self.raw.wait_mode;
        let creator = self.raw.creator;
        let mut corrupt = false;
        let result = {
            let this = &*self;
            let ready = || -> Option<()> {
                // Closed in this process: stop waiting (the caller's retry reports it).
                if this.raw.is_closed() {
                    return Some(());
                }
                // Re-read head through the raw pointer; validation as in refresh_head.
                let head = h.head.load(Ordering::Acquire);
                if head < this.cached_head.get() || head > this.tail {
                    corrupt = true;
                    return Some(());
                }
                this.cached_head.set(head);
                (this.free() >= n).then_some(())
            };
            let mut raw_gone = RawGone {
                role: &h.roles.consumer,
                creator,
            };
            h.space
                .wait_until(mode, deadline, ready, |t| raw_gone.gone(t))
        };
        if corrupt {
            // Surface the corruption through the next try_push.
            return Ok(());
        }
        result
    }

    /// Pushes as many of `items` as fit, with one publication; returns how many.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Spsc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let mut tx = ring.producer()?;
    ///
    /// assert_eq!(tx.push_slice(&[1, 2, 3]), 3);
    /// assert_eq!(tx.push_slice(&[0; 10]), 5); // only 5 slots were left
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push_slice(&mut self, items: &[T]) -> usize {
        if (self.free() as usize) < items.len() {
            let _ = self.refresh_head();
        }
        let n = items.len().min(self.free() as usize);
        if n == 0 {
            return 0;
        }
        // Values only, then one `tail` store. Slot stamps are a latency hint for a
        // consumer waiting on one element; `tail` is authoritative, and a consumer that
        // finds no fresh stamp reads it. Skipping the stamps halves the stores of a
        // batch. (An old stamp never reads `p + 1` for a position `p` it was not
        // written for, so skipping cannot fake a publication.)
        for (i, item) in items[..n].iter().enumerate() {
            let pos = self.tail + i as u64;
            // SAFETY: the n slots from tail are free (n <= free) and in bounds; T is
            // Pod.
            unsafe { self.raw.area.write_value(self.raw.offset::<T>(pos), *item) };
        }
        crash::point("spsc.push_slice", 1);
        self.void_stale_stamp(self.tail + n as u64);
        crash::point("spsc.push_slice", 2);
        self.tail += n as u64;
        let h = self.raw.header();
        // SYNC: Release pairs with the consumer's Acquire load of `tail`.
        h.tail.store(self.tail, Ordering::Release);
        crash::point("spsc.push_slice", 3);
        if self.raw.notify {
            h.data.notify();
        }
        n
    }

    /// Reserves `n` free slots to be written in place and then committed together.
    ///
    /// # Errors
    ///
    /// [`ChunkError::TooFewSlots`] with the number available.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{ChunkError, Spsc};
    /// use shmlink::sync::WaitMode;
    ///
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// let mut chunk = tx.write_chunk(3)?;
    /// for i in 0..3 {
    ///     chunk.write(i, 10 * i as u64);
    /// }
    /// chunk.commit_all();
    /// assert_eq!(rx.try_pop(), Ok(0));
    /// assert!(matches!(tx.write_chunk(7), Err(ChunkError::TooFewSlots(6))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_chunk(&mut self, n: usize) -> Result<WriteChunk<'_, T, R>, ChunkError> {
        if (self.free() as usize) < n {
            self.refresh_head().map_err(ChunkError::Corrupted)?;
        }
        let free = self.free() as usize;
        if free < n {
            return Err(ChunkError::TooFewSlots(free));
        }
        Ok(WriteChunk { producer: self, n })
    }

    /// Free slots right now.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Spsc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let mut tx = ring.producer()?;
    ///
    /// assert_eq!(tx.slots(), 8);
    /// tx.try_push(1)?;
    /// assert_eq!(tx.slots(), 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn slots(&mut self) -> usize {
        let _ = self.refresh_head();
        self.free() as usize
    }

    /// Elements pushed so far: the position the next push takes.
    pub(crate) fn position(&self) -> u64 {
        self.tail
    }

    /// Waits until the consumer has popped every element before position `pos` (an
    /// acknowledgement: the consumer released them). A spinning wait polls `head`,
    /// which the consumer writes anyway; a sleeping one is woken by the consumer's
    /// release (blocking mode), so no extra traffic is needed for acknowledgements.
    #[cold]
    pub(crate) fn wait_taken(
        &mut self,
        pos: u64,
        deadline: Option<Instant>,
    ) -> Result<(), WaitError> {
        let h = self.raw.header();
        let mode = self.raw.wait_mode;
        let tail = self.tail;
        let mut cached = self.cached_head.get();
        let ready = || -> Option<()> {
            // SYNC: Acquire pairs with the consumer's Release store of `head`: its
            // reads of the acknowledged slots happened before.
            let head = h.head.load(Ordering::Acquire);
            if head < cached || head > tail {
                return Some(()); // corrupt: let the next push report it
            }
            cached = head;
            (head >= pos).then_some(())
        };
        let mut raw_gone = RawGone {
            role: &h.roles.consumer,
            creator: self.raw.creator,
        };
        let result = h
            .space
            .wait_until(mode, deadline, ready, |t| raw_gone.gone(t));
        self.cached_head.set(self.cached_head.get().max(cached));
        result
    }

    /// Cheap, rate-limited form of [`is_abandoned`](Self::is_abandoned) for polling
    /// paths.
    pub(crate) fn peer_left(&mut self) -> bool {
        self.raw.peer_gone(&self.raw.header().roles.consumer, false)
    }

    /// Whether the consumer is gone: it left (seen at once), or (`thorough`) its
    /// process died; the name the MPMC producer uses too.
    pub(crate) fn consumers_gone(&mut self, thorough: bool) -> bool {
        if thorough {
            self.is_abandoned()
        } else {
            self.peer_left()
        }
    }

    /// [`try_push`](Self::try_push), returning the position the value took (what an
    /// acknowledgement waits for with [`wait_taken`](Self::wait_taken)).
    #[inline]
    pub(crate) fn try_push_at(&mut self, value: T) -> Result<u64, PushError<T>> {
        self.try_push(value)?;
        Ok(self.tail)
    }

    /// [`push_until`](Self::push_until), returning the position as `try_push_at`.
    pub(crate) fn push_until_at(
        &mut self,
        value: T,
        deadline: Option<Instant>,
    ) -> Result<u64, PushError<T>> {
        self.push_until(value, deadline)?;
        Ok(self.tail)
    }

    /// `true` if the consumer left or its process died (or it never claimed the role
    /// and the process that created the named ring died: nobody can hand the role
    /// over any more).
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Spsc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    ///
    /// assert!(!tx.is_abandoned());
    /// drop(rx);
    /// assert!(tx.is_abandoned());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_abandoned(&mut self) -> bool {
        self.raw.peer_gone(&self.raw.header().roles.consumer, true)
    }

    /// The ring.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Spsc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    ///
    /// let tx = ring.producer()?;
    /// assert_eq!(tx.ring().capacity(), 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ring(&self) -> &Spsc<T, R> {
        &self.ring
    }

    /// Chooses how this handle waits. A ring created in [`WaitMode::Spin`] never
    /// sleeps (nobody would wake it), so there this is a no-op.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{PushError, Spsc};
    /// use shmlink::sync::WaitMode;
    /// use std::time::Duration;
    ///
    /// let ring = Spsc::<u64, _>::new(8, WaitMode::Blocking)?;
    /// let mut tx = ring.producer()?;
    /// tx.set_wait_mode(WaitMode::Spin); // this handle polls instead of sleeping
    /// tx.push_slice(&[0; 8]);
    /// let full = tx.push_timeout(1, Duration::from_millis(1));
    /// assert_eq!(full, Err(PushError::Timeout(1)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_wait_mode(&mut self, mode: WaitMode) {
        if self.ring.mode == WaitMode::Blocking {
            self.raw.wait_mode = mode;
        }
    }
}

impl<T: Pod, R: Region<Shared = SpscHeader>> Drop for Producer<T, R> {
    fn drop(&mut self) {
        if crash::dying() {
            return; // killed at a crash point: a killed process releases nothing
        }
        let h = self.raw.header();
        self.raw.release_role(&h.roles.producer);
        // A sleeping consumer must learn that nothing more will come.
        h.data.wake_all();
    }
}

impl<T: Pod, R: Region<Shared = SpscHeader>> fmt::Debug for Producer<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("tail", &self.tail)
            .field("capacity", &self.raw.capacity)
            .finish_non_exhaustive()
    }
}

/// `n` reserved slots, written in place, then published with one store.
///
/// # Examples
///
/// ```
/// # use shmlink::ring::Spsc;
/// # use shmlink::sync::WaitMode;
/// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
/// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
///
/// let mut chunk = tx.write_chunk(2)?;
/// chunk.write(0, 1);
/// chunk.write(1, 2);
/// chunk.commit_all(); // both become visible at once
/// let mut out = [0; 2];
/// assert_eq!(rx.pop_slice(&mut out), 2);
/// assert_eq!(out, [1, 2]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct WriteChunk<'a, T: Pod, R: Region<Shared = SpscHeader>> {
    producer: &'a mut Producer<T, R>,
    n: usize,
}

impl<T: Pod, R: Region<Shared = SpscHeader>> WriteChunk<'_, T, R> {
    /// Slots in the chunk.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Spsc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let mut tx = ring.producer()?;
    ///
    /// let chunk = tx.write_chunk(4)?;
    /// assert_eq!(chunk.len(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.n
    }

    /// `true` for an empty chunk.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Spsc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let mut tx = ring.producer()?;
    ///
    /// assert!(tx.write_chunk(0)?.is_empty());
    /// assert!(!tx.write_chunk(1)?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Writes slot `i` of the chunk.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Spsc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    ///
    /// let mut chunk = tx.write_chunk(1)?;
    /// chunk.write(0, 42);
    /// chunk.commit_all();
    /// assert_eq!(rx.try_pop(), Ok(42));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write(&mut self, i: usize, value: T) {
        assert!(i < self.n, "chunk index {i} out of range 0..{}", self.n);
        let p = &mut *self.producer;
        let off = p.raw.offset::<T>(p.tail + i as u64);
        // SAFETY: slot tail + i is reserved (i < n <= free): the consumer does not
        // read it until commit; in bounds by `offset`.
        unsafe { p.raw.area.write_value(off, value) };
    }

    /// Raw pointer to slot `i`, aligned for `T`, to build a message in place
    /// (zero-copy).
    ///
    /// # Safety
    ///
    /// Write through it only before `commit`, at most `size_of::<T>()` bytes, and do
    /// not create a reference to the slot (another process maps it).
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Spsc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    ///
    /// let mut chunk = tx.write_chunk(1)?;
    /// // SAFETY: slot 0 is ours until `commit`; one `u64` is written, no reference made.
    /// unsafe { chunk.slot_ptr(0).write(99) };
    /// chunk.commit_all();
    /// assert_eq!(rx.try_pop(), Ok(99));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn slot_ptr(&mut self, i: usize) -> *mut T {
        assert!(i < self.n, "chunk index {i} out of range 0..{}", self.n);
        let p = &*self.producer;
        let off = p.raw.offset::<T>(p.tail + i as u64);
        // SAFETY: in bounds by `offset`.
        let ptr = unsafe { p.raw.area.as_ptr().add(off).cast::<T>() };
        debug_assert!(ptr.is_aligned(), "slot values are aligned (see `offset`)");
        ptr
    }

    /// Publishes the first `k` slots (`k <= len()`).
    ///
    /// # Panics
    ///
    /// If `k > len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Spsc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let mut tx = ring.producer()?;
    ///
    /// let mut chunk = tx.write_chunk(3)?;
    /// chunk.write(0, 1);
    /// chunk.write(1, 2);
    /// chunk.commit(2); // the third slot stays free
    /// assert_eq!(ring.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit(self, k: usize) {
        assert!(k <= self.n, "commit of {k} slots, chunk has {}", self.n);
        if k > 0 {
            self.producer.publish(k as u64);
        }
    }

    /// Publishes every slot of the chunk.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Spsc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let mut tx = ring.producer()?;
    ///
    /// let mut chunk = tx.write_chunk(2)?;
    /// chunk.write(0, 1);
    /// chunk.write(1, 2);
    /// chunk.commit_all();
    /// assert_eq!(ring.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit_all(self) {
        let n = self.n;
        self.commit(n);
    }
}

impl<T: Pod, R: Region<Shared = SpscHeader>> fmt::Debug for WriteChunk<'_, T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteChunk").field("len", &self.n).finish()
    }
}

//! The consumer end of an SPSC ring and its read chunks.

use core::cell::Cell;
use core::fmt;
use std::time::{Duration, Instant};

use super::{RawGone, RawHandle, Spsc, SpscHeader, deadline_after};
use crate::process::crash;
use crate::region::{Pod, Region};
use crate::ring::{ChunkError, Corruption, PopError};
use crate::sync::atomic::Ordering;
use crate::sync::{WaitError, WaitMode};

/// The consumer end. `Send`, used through `&mut self`.
///
/// # Examples
///
/// ```
/// # use shmlink::ring::Spsc;
/// # use shmlink::sync::WaitMode;
/// let ring = Spsc::<u64, _>::new(8, WaitMode::Blocking)?;
/// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
/// let receiver = std::thread::spawn(move || {
///     let mut sum = 0;
///     while let Ok(v) = rx.pop() {
///         sum += v;
///     }
///     sum // `pop` failed with `Disconnected`: the producer is gone
/// });
/// (1..=100).try_for_each(|i| tx.push(i))?;
/// drop(tx);
/// assert_eq!(receiver.join().unwrap(), 5050);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Consumer<T: Pod, R: Region<Shared = SpscHeader>> {
    pub(super) raw: RawHandle,
    /// Our position (authoritative: only we write `head`).
    pub(super) head: u64,
    /// Last `tail` we read; the real one is never behind it.
    pub(super) cached_tail: Cell<u64>,
    pub(super) ring: Spsc<T, R>,
}

impl<T: Pod, R: Region<Shared = SpscHeader>> Consumer<T, R> {
    /// Whether the ring was closed in this process ([`Spsc::close`](super::Spsc::close)).
    pub(crate) fn is_closed(&self) -> bool {
        self.raw.is_closed()
    }

    /// Re-reads `tail`, validating it (`tail <= head + capacity`; a stale, smaller
    /// value keeps the cached one).
    #[cold]
    fn refresh_tail(&mut self) -> Result<(), Corruption> {
        // SYNC: Acquire pairs with the producer's Release store of `tail`: the slots
        // it published are visible.
        let tail = self.raw.header().tail.load(Ordering::Acquire);
        self.cached_tail.set(validate_tail(
            tail,
            self.cached_tail.get(),
            self.head,
            self.raw.capacity,
        )?);
        Ok(())
    }

    #[inline(always)]
    fn available(&self) -> u64 {
        self.cached_tail.get() - self.head
    }

    /// Counts slots as available by their stamps, up to `want` (the `tail` store that
    /// follows the stamps may not be visible yet).
    fn extend_by_stamps(&mut self, want: u64) {
        let limit = self.head + want.min(self.raw.capacity);
        while self.cached_tail.get() < limit {
            // SYNC: Acquire pairs with the producer's Release stamp store.
            if self
                .raw
                .stamp::<T>(self.cached_tail.get())
                .load(Ordering::Acquire)
                != self.cached_tail.get() + 1
            {
                break;
            }
            self.cached_tail.set(self.cached_tail.get() + 1);
        }
    }

    /// Polls the stamp of the slot at `head` (one cache line, with the value in it);
    /// if it is published, counts it as available without reading `tail`.
    #[inline(always)]
    fn next_is_published(&self) -> bool {
        // SYNC: Acquire pairs with the producer's Release store of the stamp.
        if self.raw.stamp::<T>(self.head).load(Ordering::Acquire) == self.head + 1 {
            // The producer stores the stamp before `tail`, so tail >= head + 1.
            self.cached_tail
                .set(self.cached_tail.get().max(self.head + 1));
            true
        } else {
            false
        }
    }

    /// Releases the `n` slots from `head`, whose values were copied out.
    #[inline(always)]
    fn release(&mut self, n: u64) {
        crash::point("spsc.pop", 1);
        self.head += n;
        let h = self.raw.header();
        // SYNC: Release pairs with the producer's Acquire load of `head`: our reads
        // of the released slots happen before it overwrites them.
        h.head.store(self.head, Ordering::Release);
        crash::point("spsc.pop", 2);
        if self.raw.notify {
            h.space.notify();
        }
    }

    /// The ring looked empty: `Ok(())` if elements arrived after all (published just
    /// before the producer left), else why not.
    #[cold]
    fn empty_error(&mut self) -> Result<(), PopError> {
        if self.raw.is_closed() {
            return Err(PopError::Closed);
        }
        if self.raw.peer_gone(&self.raw.header().roles.producer, false) {
            // Take anything committed before the producer left.
            self.refresh_tail().map_err(PopError::Corrupted)?;
            if self.available() > 0 {
                Ok(())
            } else {
                Err(PopError::Disconnected)
            }
        } else {
            Err(PopError::Empty)
        }
    }

    /// Pops the oldest element if there is one.
    ///
    /// # Errors
    ///
    /// `Empty`, `Disconnected` (empty and the producer left or died), `Corrupted`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{PopError, Spsc};
    /// use shmlink::sync::WaitMode;
    ///
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// assert_eq!(rx.try_pop(), Err(PopError::Empty));
    /// tx.try_push(5)?;
    /// assert_eq!(rx.try_pop(), Ok(5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_pop(&mut self) -> Result<T, PopError> {
        if self.available() == 0 && !self.next_is_published() {
            self.refresh_tail().map_err(PopError::Corrupted)?;
            if self.available() == 0 {
                self.empty_error()?;
            }
        }
        let off = self.raw.offset::<T>(self.head);
        // SAFETY: the slot of `head` was published (head < tail, read with Acquire)
        // and the producer does not write it until we release it; in bounds; T is
        // Pod, so whatever bytes are there form a valid T.
        let value = unsafe { self.raw.area.read_value::<T>(off) };
        self.release(1);
        Ok(value)
    }

    /// Pops, waiting until `timeout` passes.
    ///
    /// # Errors
    ///
    /// `Timeout`, `Disconnected`, `Corrupted`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{PopError, Spsc};
    /// use shmlink::sync::WaitMode;
    /// use std::time::Duration;
    ///
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// assert_eq!(rx.pop_timeout(Duration::from_millis(1)), Err(PopError::Timeout));
    /// tx.try_push(5)?;
    /// assert_eq!(rx.pop_timeout(Duration::from_secs(1)), Ok(5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pop_timeout(&mut self, timeout: Duration) -> Result<T, PopError> {
        self.pop_until(deadline_after(timeout))
    }

    /// Pops, waiting as long as the producer is alive (or, while no producer ever
    /// claimed the role, as long as the process that created the named ring is alive:
    /// a ring whose creator died before anyone claimed the producer role reports
    /// `Disconnected` instead of waiting forever).
    ///
    /// # Errors
    ///
    /// `Disconnected` once the ring is empty and the producer left or died;
    /// `Corrupted`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{PopError, Spsc};
    /// use shmlink::sync::WaitMode;
    ///
    /// let ring = Spsc::<u64, _>::new(8, WaitMode::Blocking)?;
    /// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// let sender = std::thread::spawn(move || tx.push(7));
    /// assert_eq!(rx.pop(), Ok(7)); // waits for the other thread
    /// sender.join().unwrap()?;
    /// // Empty, and the producer is gone: nothing more will come.
    /// assert_eq!(rx.pop(), Err(PopError::Disconnected));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pop(&mut self) -> Result<T, PopError> {
        self.pop_until(None)
    }

    pub(crate) fn pop_until(&mut self, deadline: Option<Instant>) -> Result<T, PopError> {
        match self.try_pop() {
            Err(PopError::Empty) => match self.wait_for_data(1, deadline) {
                Ok(()) => self.try_pop(),
                Err(WaitError::Timeout) => Err(PopError::Timeout),
                Err(WaitError::Disconnected) => Err(PopError::Disconnected),
            },
            other => other,
        }
    }

    #[cold]
    pub(crate) fn wait_for_data(
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
            let mut polls = 0u32;
            let ready = || -> Option<()> {
                // Closed in this process: stop waiting (the caller's retry reports it).
                if this.raw.is_closed() {
                    return Some(());
                }
                // One element: poll the slot's stamp (stamp and value share a line), and
                // `tail` only every 8th poll: the producer stores `tail` on every push,
                // so reading it on every poll would bounce its line between the cores
                // once per message. (Batches from `push_slice` carry no stamps; they are
                // seen through `tail`, at most 8 polls late.)
                if n == 1 {
                    if this.next_is_published() {
                        return Some(());
                    }
                    polls = polls.wrapping_add(1);
                    // (Every poll under loom, to keep the models small.)
                    if polls % 8 != 1 && !cfg!(shmlink_loom) {
                        return None;
                    }
                }
                let tail = h.tail.load(Ordering::Acquire);
                match validate_tail(tail, this.cached_tail.get(), this.head, this.raw.capacity) {
                    Ok(t) => this.cached_tail.set(t),
                    Err(_) => {
                        corrupt = true;
                        return Some(());
                    }
                }
                (this.available() >= n).then_some(())
            };
            let mut raw_gone = RawGone {
                role: &h.roles.producer,
                creator,
            };
            h.data
                .wait_until(mode, deadline, ready, |t| raw_gone.gone(t))
        };
        if corrupt {
            return Ok(()); // surfaced by the next try_pop
        }
        result
    }

    /// Pops up to `out.len()` elements with one release; returns how many.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Spsc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    ///
    /// tx.push_slice(&[1, 2, 3]);
    /// let mut out = [0; 8];
    /// let n = rx.pop_slice(&mut out);
    /// assert_eq!(&out[..n], &[1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pop_slice(&mut self, out: &mut [T]) -> usize {
        if (self.available() as usize) < out.len() {
            let _ = self.refresh_tail();
            if self.available() == 0 {
                self.extend_by_stamps(out.len() as u64);
            }
        }
        let n = out.len().min(self.available() as usize);
        if n == 0 {
            return 0;
        }
        for (i, slot) in out[..n].iter_mut().enumerate() {
            let off = self.raw.offset::<T>(self.head + i as u64);
            // SAFETY: the n slots from head are published and not written by the
            // producer until released; in bounds; T is Pod.
            *slot = unsafe { self.raw.area.read_value::<T>(off) };
        }
        self.release(n as u64);
        n
    }

    /// Borrows `n` published elements to read in place, released together.
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
    /// tx.push_slice(&[1, 2, 3]);
    /// let chunk = rx.read_chunk(2)?;
    /// assert_eq!((chunk.get(0), chunk.get(1)), (1, 2));
    /// chunk.release_all();
    /// assert_eq!(rx.try_pop(), Ok(3));
    /// assert!(matches!(rx.read_chunk(1), Err(ChunkError::TooFewSlots(0))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_chunk(&mut self, n: usize) -> Result<ReadChunk<'_, T, R>, ChunkError> {
        if (self.available() as usize) < n {
            // The slots' own stamps first: they arrive with the values, in the same
            // cache lines, while `tail` lives on a line of its own (as in `try_pop`).
            self.extend_by_stamps(n as u64);
            if (self.available() as usize) < n {
                self.refresh_tail().map_err(ChunkError::Corrupted)?;
                self.extend_by_stamps(n as u64);
            }
        }
        let avail = self.available() as usize;
        if avail < n {
            return Err(ChunkError::TooFewSlots(avail));
        }
        Ok(ReadChunk { consumer: self, n })
    }

    /// Elements ready right now.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Spsc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    ///
    /// assert_eq!(rx.slots(), 0);
    /// tx.push_slice(&[1, 2]);
    /// assert_eq!(rx.slots(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn slots(&mut self) -> usize {
        let _ = self.refresh_tail();
        self.available() as usize
    }

    /// Cheap, rate-limited form of [`is_abandoned`](Self::is_abandoned) for polling
    /// paths.
    pub(crate) fn peer_left(&mut self) -> bool {
        self.raw.peer_gone(&self.raw.header().roles.producer, false)
    }

    /// `true` if the producer left or its process died, or it never claimed the role
    /// and the process that created the named ring died (there may still be elements
    /// to pop).
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Spsc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    ///
    /// tx.try_push(1)?;
    /// assert!(!rx.is_abandoned());
    /// drop(tx);
    /// assert!(rx.is_abandoned());
    /// assert_eq!(rx.try_pop(), Ok(1)); // what was pushed before is still there
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_abandoned(&mut self) -> bool {
        self.raw.peer_gone(&self.raw.header().roles.producer, true)
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
    /// let rx = ring.consumer()?;
    /// assert_eq!(rx.ring().capacity(), 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ring(&self) -> &Spsc<T, R> {
        &self.ring
    }

    /// Chooses how this handle waits (see [`Producer::set_wait_mode`](super::Producer::set_wait_mode)).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{PopError, Spsc};
    /// use shmlink::sync::WaitMode;
    /// use std::time::Duration;
    ///
    /// let ring = Spsc::<u64, _>::new(8, WaitMode::Blocking)?;
    /// let mut rx = ring.consumer()?;
    /// rx.set_wait_mode(WaitMode::Spin); // this handle polls instead of sleeping
    /// assert_eq!(rx.pop_timeout(Duration::from_millis(1)), Err(PopError::Timeout));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_wait_mode(&mut self, mode: WaitMode) {
        if self.ring.mode == WaitMode::Blocking {
            self.raw.wait_mode = mode;
        }
    }
}

/// Checks a `tail` read from shared memory and returns the new cached tail.
///
/// A `tail` behind what we know is not corruption: the stamps can show a slot as
/// published before the producer's later `tail` store is visible, so a stale read is
/// normal and we keep the larger value. A `tail` more than a ring ahead of `head` is
/// impossible.
fn validate_tail(tail: u64, cached_tail: u64, head: u64, capacity: u64) -> Result<u64, Corruption> {
    if tail >= 1 << 62 || (tail > head && tail - head > capacity) {
        Err(Corruption {
            what: "producer position (tail)",
            found: tail,
        })
    } else {
        Ok(tail.max(cached_tail))
    }
}

impl<T: Pod, R: Region<Shared = SpscHeader>> Drop for Consumer<T, R> {
    fn drop(&mut self) {
        if crash::dying() {
            return; // killed at a crash point: a killed process releases nothing
        }
        let h = self.raw.header();
        self.raw.release_role(&h.roles.consumer);
        h.space.wake_all();
    }
}

impl<T: Pod, R: Region<Shared = SpscHeader>> fmt::Debug for Consumer<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("head", &self.head)
            .field("capacity", &self.raw.capacity)
            .finish_non_exhaustive()
    }
}

/// `n` published elements, read in place, then released with one store.
///
/// # Examples
///
/// ```
/// # use shmlink::ring::Spsc;
/// # use shmlink::sync::WaitMode;
/// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
/// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
///
/// tx.push_slice(&[10, 20, 30]);
/// let chunk = rx.read_chunk(3)?;
/// let sum: u64 = (0..chunk.len()).map(|i| chunk.get(i)).sum();
/// chunk.release_all(); // one store frees all three slots
/// assert_eq!(sum, 60);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ReadChunk<'a, T: Pod, R: Region<Shared = SpscHeader>> {
    consumer: &'a mut Consumer<T, R>,
    n: usize,
}

impl<T: Pod, R: Region<Shared = SpscHeader>> ReadChunk<'_, T, R> {
    /// Elements in the chunk.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Spsc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    ///
    /// tx.push_slice(&[1, 2, 3]);
    /// assert_eq!(rx.read_chunk(2)?.len(), 2);
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
    /// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    ///
    /// assert!(rx.read_chunk(0)?.is_empty());
    /// tx.try_push(1)?;
    /// assert!(!rx.read_chunk(1)?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Copies element `i` out.
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
    /// tx.push_slice(&[4, 5]);
    /// let chunk = rx.read_chunk(2)?;
    /// assert_eq!(chunk.get(1), 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, i: usize) -> T {
        assert!(i < self.n, "chunk index {i} out of range 0..{}", self.n);
        let c = &*self.consumer;
        let off = c.raw.offset::<T>(c.head + i as u64);
        // SAFETY: slot head + i is published and ours until released; in bounds; Pod.
        unsafe { c.raw.area.read_value::<T>(off) }
    }

    /// Raw pointer to element `i`, aligned for `T`, to read it in place (zero-copy).
    ///
    /// # Safety
    ///
    /// Read through it only before the chunk is released, and do not create a
    /// reference to the slot (another process maps it).
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
    /// tx.try_push(7)?;
    /// let chunk = rx.read_chunk(1)?;
    /// // SAFETY: the chunk is not released yet; the value is copied out, no reference made.
    /// let v = unsafe { chunk.slot_ptr(0).read() };
    /// chunk.release_all();
    /// assert_eq!(v, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn slot_ptr(&self, i: usize) -> *const T {
        assert!(i < self.n, "chunk index {i} out of range 0..{}", self.n);
        let c = &*self.consumer;
        let off = c.raw.offset::<T>(c.head + i as u64);
        // SAFETY: in bounds by `offset`.
        let ptr = unsafe { c.raw.area.as_ptr().add(off).cast::<T>().cast_const() };
        debug_assert!(ptr.is_aligned(), "slot values are aligned (see `offset`)");
        ptr
    }

    /// Releases the first `k` elements (`k <= len()`).
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
    /// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    ///
    /// tx.push_slice(&[1, 2, 3]);
    /// let chunk = rx.read_chunk(3)?;
    /// chunk.release(1); // 2 and 3 stay in the ring
    /// assert_eq!(rx.try_pop(), Ok(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn release(self, k: usize) {
        assert!(k <= self.n, "release of {k} slots, chunk has {}", self.n);
        if k > 0 {
            self.consumer.release(k as u64);
        }
    }

    /// Releases every element of the chunk.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Spsc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    ///
    /// tx.push_slice(&[1, 2]);
    /// rx.read_chunk(2)?.release_all();
    /// assert!(ring.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn release_all(self) {
        let n = self.n;
        self.release(n);
    }
}

impl<T: Pod, R: Region<Shared = SpscHeader>> fmt::Debug for ReadChunk<'_, T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadChunk").field("len", &self.n).finish()
    }
}

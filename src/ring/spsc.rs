//! A lock-free single-producer single-consumer ring of [`Pod`] elements, on the heap or
//! in a named segment (the same code).
//!
//! Design (see `docs/orderings.md` for every atomic and what it pairs with):
//! - power-of-two capacity; `tail` (elements ever pushed) and `head` (ever popped) are
//!   monotonic `u64` positions, each on its own 128-byte line; slot = position & mask;
//! - each handle keeps its own position and a cached copy of the other side's, and
//!   re-reads the shared one (Acquire) only when the cache says full/empty
//!   (rigtorp/SPSCQueue, rtrb);
//! - the producer writes a slot, then publishes `tail` with Release; the consumer reads
//!   `tail` with Acquire, copies the slot out, then publishes `head` with Release;
//! - every position read from shared memory is read once and checked
//!   (`head <= tail <= head + capacity`, monotonic) before it is used;
//! - roles are claimed at run time with a CAS on a role word holding the holder's
//!   process token; a role whose holder died can be claimed again;
//! - a peer is gone once its role word says it left, names a dead process, or was
//!   never claimed while the ring's creator is dead (nobody is left to hand the role
//!   to a process: waits end with `Disconnected` instead of lasting forever);
//! - blocking waits spin, yield, then sleep on a shared futex ([`WaitMode`]).
//!
//! Crash points (`process::crash::point`): the steps after which a participant killed there
//! leaves shared state half changed (a `Drop` during such a death releases nothing):
//!
//! | protocol | step 1 | step 2 | step 3 | step 4 | step 5 |
//! |---|---|---|---|---|---|
//! | `spsc.claim` (a free role) | role word taken | producer: `tail` caught up | | | |
//! | `spsc.takeover` (a dead holder's role) | role word taken | producer: `tail` caught up | | | |
//! | `spsc.push` (push, chunk commit) | values written | next slot's stale stamp voided | batch's last slot stamped | every slot stamped | `tail` stored |
//! | `spsc.push_slice` | values written | next slot's stale stamp voided | `tail` stored | | |
//! | `spsc.pop` (pop, slice, chunk release) | values copied out | `head` stored | | | |

use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{BuildError, ChunkError, ClaimError, Corruption, PopError, PushError};
use crate::process::crash;
use crate::process::{current_token, token_alive, token_dead, token_pid};
use crate::region::Pod;
use crate::region::{AREA_ALIGN, CacheLine, HeapRegion, RawArea, Region, ShmSafe};
use crate::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::sync::{WaitError, WaitMode, WaitWord};

/// Largest capacity (slots).
///
/// # Examples
///
/// ```
/// use shmlink::ring::spsc::MAX_CAPACITY;
/// use shmlink::ring::{BuildError, Spsc};
/// use shmlink::sync::WaitMode;
///
/// let too_big = MAX_CAPACITY * 2;
/// let err = Spsc::<u64, _>::new(too_big as usize, WaitMode::Spin).unwrap_err();
/// assert_eq!(err, BuildError::InvalidCapacity(too_big));
/// ```
pub const MAX_CAPACITY: u64 = 1 << 32;

/// Role word value of a holder that left cleanly.
const CLOSED: u64 = u64::MAX;

/// Configuration written once by the creator, copied and validated by every handle.
///
/// # Examples
///
/// ```
/// use shmlink::ring::spsc::RingConfig;
/// use shmlink::region::ShmSafe;
///
/// // Part of every SPSC header; all zeroes until the creator fills it in.
/// let config = RingConfig::new_zeroed();
/// assert_eq!(size_of_val(&config), 32);
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct RingConfig {
    capacity: AtomicU64,
    elem_size: AtomicU64,
    elem_fingerprint: AtomicU64,
    mode: AtomicU32,
    /// Kind-specific: the maximum frame length of a frame ring.
    aux: AtomicU32,
}

// SAFETY: repr(C), integer atomics only, no pointers.
unsafe impl ShmSafe for RingConfig {
    const TYPE_NAME: &'static str = "shmlink::ring::RingConfig";
    fn new_zeroed() -> Self {
        Self {
            capacity: AtomicU64::new(0),
            elem_size: AtomicU64::new(0),
            elem_fingerprint: AtomicU64::new(0),
            mode: AtomicU32::new(0),
            aux: AtomicU32::new(0),
        }
    }
}

/// Who holds the producer and consumer roles: 0 nobody yet, a process token, or
/// `u64::MAX` (left cleanly).
///
/// # Examples
///
/// ```
/// use shmlink::ring::spsc::Roles;
/// use shmlink::region::ShmSafe;
///
/// // Part of every SPSC header: one role word per end, 0 while nobody holds it.
/// let roles = Roles::new_zeroed();
/// assert_eq!(size_of_val(&roles), 16);
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct Roles {
    producer: AtomicU64,
    consumer: AtomicU64,
}

// SAFETY: repr(C), integer atomics only, no pointers.
unsafe impl ShmSafe for Roles {
    const TYPE_NAME: &'static str = "shmlink::ring::Roles";
    fn new_zeroed() -> Self {
        Self {
            producer: AtomicU64::new(0),
            consumer: AtomicU64::new(0),
        }
    }
}

/// The control block of an SPSC ring (768 bytes, six 128-byte lines).
///
/// # Examples
///
/// ```
/// use shmlink::ring::SpscHeader;
///
/// assert_eq!(size_of::<SpscHeader>(), 768);
/// assert_eq!(align_of::<SpscHeader>(), 128);
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct SpscHeader {
    config: CacheLine<RingConfig>,
    roles: CacheLine<Roles>,
    /// Elements ever pushed. Written by the producer only (Release).
    tail: CacheLine<AtomicU64>,
    /// Elements ever popped. Written by the consumer only (Release).
    head: CacheLine<AtomicU64>,
    /// The consumer sleeps here waiting for data; the producer notifies.
    data: CacheLine<WaitWord>,
    /// The producer sleeps here waiting for space; the consumer notifies.
    space: CacheLine<WaitWord>,
}

#[cfg(not(shmlink_loom))]
const _: () = assert!(size_of::<SpscHeader>() == 768 && align_of::<SpscHeader>() == 128);

// SAFETY: repr(C) of ShmSafe fields (CacheLine of atomics-only structs), no pointers.
unsafe impl ShmSafe for SpscHeader {
    const TYPE_NAME: &'static str = "shmlink::ring::SpscHeader";
    // 2: slots carry a stamp word before the value.
    // 3: values aligned for their type in the slot (`value_offset`, `slot_size`).
    const VERSION: u32 = 3;
    fn new_zeroed() -> Self {
        Self {
            config: CacheLine::new_zeroed(),
            roles: CacheLine::new_zeroed(),
            tail: CacheLine::new_zeroed(),
            head: CacheLine::new_zeroed(),
            data: CacheLine::new_zeroed(),
            space: CacheLine::new_zeroed(),
        }
    }
}

/// Alignment of a slot: the element's, and at least 8 for the stamp.
const fn slot_align<T>() -> usize {
    if align_of::<T>() > 8 {
        align_of::<T>()
    } else {
        8
    }
}

/// Offset of the value in its slot: after the 8-byte stamp, aligned for `T` (8 for
/// every `T` aligned to 8 or less, `align_of::<T>()` above).
pub(crate) const fn value_offset<T>() -> usize {
    slot_align::<T>()
}

/// Bytes per slot: an 8-byte stamp, then the value at [`value_offset`], rounded up to
/// the slot's alignment, so that every slot of an area aligned to [`AREA_ALIGN`] has
/// its stamp aligned to 8 and its value aligned for `T` (a `u128` or a
/// `#[repr(align(64))]` element can be used in place through `slot_ptr`).
///
/// The stamp of position `p` reads `p + 1` once the value is published, so a consumer
/// that finds its cached view empty polls the slot itself: stamp and value arrive in
/// one cache-line transfer instead of two (`tail`, then the slot).
pub(crate) const fn slot_size<T>() -> usize {
    (value_offset::<T>() + size_of::<T>()).next_multiple_of(slot_align::<T>())
}

/// Refuses an element type aligned above what the slot area guarantees
/// ([`AREA_ALIGN`]; [`Pod`] promises at most that, this is the check).
pub(crate) fn check_align<T>() -> Result<(), BuildError> {
    if align_of::<T>() > AREA_ALIGN {
        Err(BuildError::UnsupportedAlignment {
            align: align_of::<T>(),
            max: AREA_ALIGN,
        })
    } else {
        Ok(())
    }
}

pub(crate) fn check_capacity(capacity: u64) -> Result<(), BuildError> {
    if capacity == 0 || capacity > MAX_CAPACITY || !capacity.is_power_of_two() {
        Err(BuildError::InvalidCapacity(capacity))
    } else {
        Ok(())
    }
}

pub(crate) fn init_header<T: Pod>(h: &SpscHeader, capacity: u64, mode: WaitMode, aux: u32) {
    h.config.aux.store(aux, Ordering::Relaxed);
    // Relaxed: published by the segment's ready flag (Release) or, on the heap, by
    // the Arc that hands the region to other threads.
    h.config.capacity.store(capacity, Ordering::Relaxed);
    h.config
        .elem_size
        .store(size_of::<T>() as u64, Ordering::Relaxed);
    h.config
        .elem_fingerprint
        .store(T::FINGERPRINT, Ordering::Relaxed);
    h.config.mode.store(mode.code(), Ordering::Relaxed);
}

/// An SPSC ring of `T` in region `R`: a cheap, clonable reference from which the
/// producer and consumer roles are claimed.
///
/// # Examples
///
/// In-process, on the heap:
///
/// ```
/// use shmlink::ring::Spsc;
/// use shmlink::sync::WaitMode;
///
/// let ring = Spsc::<u64, _>::new(8, WaitMode::Blocking)?;
/// let mut tx = ring.producer()?;
/// let mut rx = ring.consumer()?;
/// tx.try_push(1).unwrap();
/// tx.push_slice(&[2, 3]);
/// assert_eq!(rx.try_pop(), Ok(1));
/// let mut out = [0; 4];
/// assert_eq!(rx.pop_slice(&mut out), 2);
/// assert_eq!(&out[..2], &[2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Across processes, in a named segment:
///
/// ```
/// use shmlink::ring::Spsc;
/// use shmlink::sync::WaitMode;
/// use shmlink::segment::Segment;
/// # let name = format!("doc-spsc-{}", std::process::id());
///
/// // Process A
/// let ring = Spsc::<u64, _>::create(Segment::builder(&name).unlink_on_drop(true), 1024, WaitMode::Blocking)?;
/// let mut tx = ring.producer()?;
/// tx.try_push(7).unwrap();
///
/// // Process B
/// let ring_b = Spsc::<u64, _>::open(Segment::builder(&name))?;
/// let mut rx = ring_b.consumer()?;
/// assert_eq!(rx.pop_timeout(std::time::Duration::from_secs(1)), Ok(7));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Spsc<T: Pod, R: Region<Shared = SpscHeader>> {
    region: Arc<R>,
    capacity: u64,
    mode: WaitMode,
    /// Token of the process that created the ring's segment (from the segment
    /// header, read once when created or opened by name), or 0 when unknown (heap
    /// rings: their creator is the process using them). See [`unclaimed_and_orphaned`].
    creator: u64,
    _elem: PhantomData<fn() -> T>,
}

impl<T: Pod, R: Region<Shared = SpscHeader>> Clone for Spsc<T, R> {
    fn clone(&self) -> Self {
        Self {
            region: self.region.clone(),
            capacity: self.capacity,
            mode: self.mode,
            creator: self.creator,
            _elem: PhantomData,
        }
    }
}

impl<T: Pod> Spsc<T, HeapRegion<SpscHeader>> {
    /// A ring on the heap, for use between threads.
    ///
    /// # Errors
    ///
    /// [`BuildError::InvalidCapacity`] unless `capacity` is a power of two in
    /// `1..=2^32`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{BuildError, Spsc};
    /// use shmlink::sync::WaitMode;
    ///
    /// let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// assert_eq!(ring.capacity(), 8);
    /// let err = Spsc::<u64, _>::new(6, WaitMode::Spin).unwrap_err();
    /// assert_eq!(err, BuildError::InvalidCapacity(6));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(capacity: usize, mode: WaitMode) -> Result<Self, BuildError> {
        Self::new_tagged(capacity, mode, 0)
    }

    /// `new` for rings built on this one (aux word).
    pub(crate) fn new_tagged(
        capacity: usize,
        mode: WaitMode,
        aux: u32,
    ) -> Result<Self, BuildError> {
        check_align::<T>()?;
        let capacity = capacity as u64;
        check_capacity(capacity)?;
        let area = usize::try_from(capacity)
            .ok()
            .and_then(|c| c.checked_mul(slot_size::<T>()))
            .ok_or(BuildError::InvalidCapacity(capacity))?;
        let region = HeapRegion::<SpscHeader>::try_new(area)
            .ok_or(BuildError::OutOfMemory { bytes: area })?;
        init_header::<T>(region.shared(), capacity, mode, aux);
        Self::from_region(Arc::new(region))
    }
}

#[cfg(not(shmlink_loom))]
impl<T: Pod> Spsc<T, crate::segment::ShmRegion<SpscHeader>> {
    fn configure(
        builder: crate::segment::SegmentBuilder,
        kind: crate::segment::Kind,
        tag: u64,
    ) -> crate::segment::SegmentBuilder {
        builder
            .kind(kind)
            .fingerprint(crate::region::combine_fingerprints(
                crate::region::combine_fingerprints(
                    crate::region::fingerprint::<SpscHeader>(),
                    T::FINGERPRINT,
                ),
                tag,
            ))
    }

    /// Creates a ring in the named segment that `builder` describes.
    ///
    /// # Errors
    ///
    /// [`BuildError::InvalidCapacity`], or [`BuildError::Create`] with the segment
    /// error.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::Spsc;
    /// use shmlink::sync::WaitMode;
    /// use shmlink::segment::Segment;
    /// # let name = format!("doc-spsc-create-{}", std::process::id());
    ///
    /// let builder = Segment::builder(&name).unlink_on_drop(true);
    /// let ring = Spsc::<u64, _>::create(builder, 1024, WaitMode::Blocking)?;
    /// assert_eq!(ring.capacity(), 1024);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(
        builder: crate::segment::SegmentBuilder,
        capacity: usize,
        mode: WaitMode,
    ) -> Result<Self, BuildError> {
        Self::create_tagged(
            builder,
            capacity,
            mode,
            crate::segment::Kind::SpscRing,
            0,
            0,
        )
    }

    /// `create` for rings built on this one (kind, fingerprint tag, aux word).
    pub(crate) fn create_tagged(
        builder: crate::segment::SegmentBuilder,
        capacity: usize,
        mode: WaitMode,
        kind: crate::segment::Kind,
        tag: u64,
        aux: u32,
    ) -> Result<Self, BuildError> {
        check_align::<T>()?;
        let capacity = capacity as u64;
        check_capacity(capacity)?;
        let area = usize::try_from(capacity)
            .ok()
            .and_then(|c| c.checked_mul(slot_size::<T>()))
            .ok_or(BuildError::InvalidCapacity(capacity))?;
        let region = crate::segment::ShmRegion::<SpscHeader>::create_with(
            Self::configure(builder, kind, tag),
            area,
            |h, _| init_header::<T>(h, capacity, mode, aux),
        )?;
        Self::with_creator(region)
    }

    /// Wraps a named ring's region, remembering the process that created its segment
    /// (see [`unclaimed_and_orphaned`]).
    fn with_creator(region: crate::segment::ShmRegion<SpscHeader>) -> Result<Self, BuildError> {
        let creator = region.segment().creator();
        let mut ring = Self::from_region(Arc::new(region))?;
        ring.creator = if creator.pid == 0 {
            0 // not a process: no rule
        } else {
            crate::process::token_of(creator.pid, creator.start_ticks)
        };
        Ok(ring)
    }

    /// Opens the ring in the named segment that `builder` describes; the segment's
    /// kind and element type are checked.
    ///
    /// # Errors
    ///
    /// [`BuildError::Open`] with the segment error (e.g. `TypeMismatch` for another
    /// element type), or [`BuildError::BadConfig`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{BuildError, Spsc};
    /// use shmlink::sync::WaitMode;
    /// use shmlink::segment::Segment;
    /// # let name = format!("doc-spsc-open-{}", std::process::id());
    /// # let _a = Spsc::<u64, _>::create(Segment::builder(&name).unlink_on_drop(true), 64, WaitMode::Spin)?;
    ///
    /// // In another process: attach by name.
    /// let ring = Spsc::<u64, _>::open(Segment::builder(&name))?;
    /// assert_eq!(ring.capacity(), 64);
    /// // The element type is checked.
    /// let wrong = Spsc::<u32, _>::open(Segment::builder(&name));
    /// assert!(matches!(wrong, Err(BuildError::Open(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(builder: crate::segment::SegmentBuilder) -> Result<Self, BuildError> {
        Self::open_tagged(builder, crate::segment::Kind::SpscRing, 0)
    }

    /// `open` for rings built on this one.
    pub(crate) fn open_tagged(
        builder: crate::segment::SegmentBuilder,
        kind: crate::segment::Kind,
        tag: u64,
    ) -> Result<Self, BuildError> {
        check_align::<T>()?;
        let region =
            crate::segment::ShmRegion::<SpscHeader>::open(Self::configure(builder, kind, tag))?;
        Self::with_creator(region)
    }
}

impl<T: Pod, R: Region<Shared = SpscHeader>> Spsc<T, R> {
    /// Wraps a region whose header was initialised for `T`, validating it.
    ///
    /// # Errors
    ///
    /// [`BuildError::BadConfig`] if the configuration is not one for `T` or does not
    /// fit the region.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use shmlink::ring::{BuildError, Spsc, SpscHeader};
    /// use shmlink::region::HeapRegion;
    ///
    /// // A zeroed header holds no ring configuration: it is rejected, not trusted.
    /// let region = Arc::new(HeapRegion::<SpscHeader>::new(16 * 8));
    /// let err = Spsc::<u64, _>::from_region(region).unwrap_err();
    /// assert!(matches!(err, BuildError::BadConfig(_)));
    /// ```
    pub fn from_region(region: Arc<R>) -> Result<Self, BuildError> {
        check_align::<T>()?;
        let cfg = &region.shared().config;
        // Read each field once, then validate the copies.
        let raw = super::RawConfig {
            capacity: cfg.capacity.load(Ordering::Relaxed),
            elem_size: cfg.elem_size.load(Ordering::Relaxed),
            fingerprint: cfg.elem_fingerprint.load(Ordering::Relaxed),
            slot_size: slot_size::<T>() as u64,
            mode: cfg.mode.load(Ordering::Relaxed),
        };
        let mode = raw.validate::<T>(1, slot_size::<T>(), region.area().len())?;
        let capacity = raw.capacity;
        Ok(Self {
            region,
            capacity,
            mode,
            creator: 0,
            _elem: PhantomData,
        })
    }

    /// Number of slots.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Spsc;
    /// # use shmlink::sync::WaitMode;
    ///
    /// let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// assert_eq!(ring.capacity(), 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// The wait mode chosen at creation.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Spsc;
    /// # use shmlink::sync::WaitMode;
    ///
    /// let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// assert_eq!(ring.wait_mode(), WaitMode::Spin);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_mode(&self) -> WaitMode {
        self.mode
    }

    /// The kind-specific configuration word (read once; validate before use).
    #[cfg_attr(shmlink_loom, allow(dead_code))]
    pub(crate) fn aux(&self) -> u32 {
        self.region.shared().config.aux.load(Ordering::Relaxed)
    }

    /// Elements in the ring right now (a snapshot; clamped to the capacity).
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Spsc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let mut tx = ring.producer()?;
    ///
    /// tx.push_slice(&[1, 2, 3]);
    /// assert_eq!(ring.len(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        let h = self.region.shared();
        let head = h.head.load(Ordering::Acquire);
        let tail = h.tail.load(Ordering::Acquire);
        // `tail` may trail `head` for a moment (the consumer takes by the slot stamps,
        // which the producer stores before `tail`): that is empty, not full.
        tail.saturating_sub(head).min(self.capacity) as usize
    }

    /// `true` if [`len`](Self::len) is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Spsc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    ///
    /// assert!(ring.is_empty());
    /// ring.producer()?.try_push(1)?;
    /// assert!(!ring.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the role `word` if it is free: never claimed, left cleanly, or held by a
    /// process that is certainly dead (an unknown liveness counts as alive). Returns
    /// our token and the crash-point protocol of the claim (`spsc.takeover` when a
    /// dead holder's role was taken, else `spsc.claim`).
    fn claim(&self, word: &AtomicU64) -> Result<(u64, &'static str), ClaimError> {
        let me = current_token();
        let mut current = word.load(Ordering::Acquire);
        loop {
            let takeover = current != 0 && current != CLOSED;
            if takeover && token_alive(current) {
                return Err(ClaimError::Taken {
                    pid: token_pid(current),
                });
            }
            // SYNC: AcqRel: Acquire pairs with the Release with which the previous
            // holder left (its last position store happened before); Release
            // publishes our claim.
            match word.compare_exchange(current, me, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    let protocol = if takeover {
                        "spsc.takeover"
                    } else {
                        "spsc.claim"
                    };
                    crash::point(protocol, 1);
                    return Ok((me, protocol));
                }
                Err(seen) => current = seen,
            }
        }
    }

    /// Reads both positions once and checks them.
    fn positions(&self) -> Result<(u64, u64), Corruption> {
        let h = self.region.shared();
        // SYNC: Acquire pairs with the peers' Release stores of their positions.
        let head = h.head.load(Ordering::Acquire);
        let tail = h.tail.load(Ordering::Acquire);
        // Positions count elements ever moved: far below 2^62 in any real run. Larger
        // ones come from a corrupt or hostile peer and would overflow our arithmetic.
        if tail >= 1 << 62 || head >= 1 << 62 {
            return Err(Corruption {
                what: "position beyond 2^62",
                found: tail.max(head),
            });
        }
        if head > tail {
            // A producer that died between its stamp stores and its `tail` store
            // leaves `tail` behind what the consumer took by the stamps: stale, not
            // corrupt, as long as it is within one ring.
            if head - tail > self.capacity {
                return Err(Corruption {
                    what: "head - tail",
                    found: head - tail,
                });
            }
            return Ok((head, head));
        }
        if tail - head > self.capacity {
            return Err(Corruption {
                what: "tail - head",
                found: tail - head,
            });
        }
        Ok((head, tail))
    }

    /// Whether the producer left (`thorough`: or its process died, or it never came
    /// and the ring's creator is dead, see [`unclaimed_and_orphaned`]).
    pub(crate) fn producer_gone(&self, thorough: bool) -> bool {
        let role = &self.region.shared().roles.producer;
        let holder = role.load(Ordering::Acquire);
        holder == CLOSED
            || (thorough
                && if holder == 0 {
                    unclaimed_and_orphaned(role, self.creator)
                } else {
                    !token_alive(holder)
                })
    }

    /// The word the consumer sleeps on waiting for data.
    pub(crate) fn data_word(&self) -> &WaitWord {
        &self.region.shared().data
    }

    /// Claims the producer role. A role whose holder died is taken over; the new
    /// producer continues after the last element the dead one committed.
    ///
    /// # Errors
    ///
    /// [`ClaimError::Taken`] while a live process (this one included) holds it;
    /// [`ClaimError::Corrupted`] if the ring's positions are impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{ClaimError, Spsc};
    /// use shmlink::sync::WaitMode;
    ///
    /// let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// let tx = ring.producer()?;
    /// // One producer at a time: the role is taken until `tx` is dropped.
    /// assert!(matches!(ring.producer(), Err(ClaimError::Taken { .. })));
    /// drop(tx);
    /// assert!(ring.producer().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn producer(&self) -> Result<Producer<T, R>, ClaimError> {
        let (token, protocol) = self.claim(&self.region.shared().roles.producer)?;
        let (head, tail) = self.positions().map_err(|c| {
            self.region
                .shared()
                .roles
                .producer
                .store(CLOSED, Ordering::Release);
            ClaimError::Corrupted(c)
        })?;
        let raw = RawHandle::new(self, token);
        // Slots a dead producer stamped but never counted in `tail` are published (the
        // consumer may be reading them): continue after them, and make `tail` say so.
        // The walk ends at the first slot not stamped for its position: it reads at
        // most the one batch the dead producer was publishing (and never more than
        // `capacity` slots, validated against the mapping), never the whole ring.
        let mut tail = tail;
        while tail - head < self.capacity
            && raw.stamp::<T>(tail).load(Ordering::Acquire) == tail + 1
        {
            tail += 1;
        }
        // A batch is stamped last slot first, so a producer killed while stamping one
        // leaves a stamped suffix after an unstamped slot. The consumer stops at the
        // gap, but once we fill it, it would take those stale slots as ours. They all
        // lie before `tail + capacity` (the dead batch started at or before `tail`);
        // instead of scanning for them here (a walk over the whole ring, whose size a
        // hostile header chooses), each of our publications voids the stamp of the
        // slot right after it before making it visible (`void_stale_stamp`), so the
        // consumer, which only ever reads the stamp of the slot after the last one it
        // took, never meets one. `repair_until` bounds that check to our first lap.
        // SYNC: Release, as every `tail` store (the slots below it are published).
        raw.header().tail.store(tail, Ordering::Release);
        crash::point(protocol, 2);
        Ok(Producer {
            raw,
            tail,
            cached_head: head,
            repair_until: tail + self.capacity,
            ring: self.clone(),
        })
    }

    /// Claims the consumer role. A role whose holder died is taken over; the new
    /// consumer continues after the last element the dead one released.
    ///
    /// # Errors
    ///
    /// [`ClaimError::Taken`] while a live process (this one included) holds it;
    /// [`ClaimError::Corrupted`] if the ring's positions are impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{ClaimError, Spsc};
    /// use shmlink::sync::WaitMode;
    ///
    /// let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// ring.producer()?.try_push(7)?;
    /// let mut rx = ring.consumer()?;
    /// assert_eq!(rx.try_pop(), Ok(7));
    /// assert!(matches!(ring.consumer(), Err(ClaimError::Taken { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn consumer(&self) -> Result<Consumer<T, R>, ClaimError> {
        let (token, _) = self.claim(&self.region.shared().roles.consumer)?;
        let (head, tail) = self.positions().map_err(|c| {
            self.region
                .shared()
                .roles
                .consumer
                .store(CLOSED, Ordering::Release);
            ClaimError::Corrupted(c)
        })?;
        Ok(Consumer {
            raw: RawHandle::new(self, token),
            head,
            cached_tail: tail,
            ring: self.clone(),
        })
    }
}

impl<T: Pod, R: Region<Shared = SpscHeader>> fmt::Debug for Spsc<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spsc")
            .field("capacity", &self.capacity)
            .field("mode", &self.mode)
            .field("len", &self.len())
            .finish()
    }
}

/// What both handles cache: the header pointer, the area, capacity, mask, modes.
struct RawHandle {
    header: NonNull<SpscHeader>,
    area: RawArea,
    capacity: u64,
    mask: u64,
    /// Whether the ring's mode makes publications notify sleepers.
    notify: bool,
    /// How this handle waits.
    wait_mode: WaitMode,
    token: u64,
    /// The ring's creator ([`Spsc::creator`]).
    creator: u64,
    /// Empty/full polls seen, to space out liveness checks.
    polls: u32,
}

/// A polling handle checks its peer's process once per this many empty/full polls.
const LIVENESS_POLLS: u32 = 1 << 16;

impl RawHandle {
    fn new<T: Pod, R: Region<Shared = SpscHeader>>(ring: &Spsc<T, R>, token: u64) -> Self {
        Self {
            header: NonNull::from(ring.region.shared()),
            area: ring.region.area(),
            capacity: ring.capacity,
            mask: ring.capacity - 1,
            notify: ring.mode == WaitMode::Blocking,
            wait_mode: ring.mode,
            token,
            creator: ring.creator,
            polls: 0,
        }
    }

    #[inline(always)]
    fn header(&self) -> &SpscHeader {
        // SAFETY: the header lives in the region, which the handle's `ring` (an Arc)
        // keeps alive for as long as this RawHandle (both are fields of the handle).
        unsafe { self.header.as_ref() }
    }

    /// Byte offset of the value in the slot of `pos`.
    #[inline(always)]
    fn offset<T>(&self, pos: u64) -> usize {
        // (pos & mask) < capacity, and capacity * slot_size::<T>() <= area length
        // (validated in from_region), so this is in bounds and fits a usize. Aligned
        // for T: slot sizes are multiples of the slot alignment, value_offset is the
        // slot alignment, and the area is AREA_ALIGN-aligned (>= align_of::<T>(),
        // checked in from_region).
        ((pos & self.mask) as usize) * slot_size::<T>() + value_offset::<T>()
    }

    /// The stamp word of the slot of `pos`.
    #[inline(always)]
    fn stamp<T>(&self, pos: u64) -> &AtomicU64 {
        let off = ((pos & self.mask) as usize) * slot_size::<T>();
        // SAFETY: in bounds (as for `offset`) and 8-aligned (slot sizes are multiples
        // of the slot alignment, itself a multiple of 8; the area is 128-aligned); stamps are only accessed atomically; the
        // region lives as long as this handle (see `header`).
        unsafe { self.area.atomic_u64(off) }
    }

    /// Whether the peer holding `role` left or died (or never came and cannot come
    /// any more, see [`unclaimed_and_orphaned`]). The liveness check (a `/proc` read)
    /// runs when `thorough`, and otherwise once every 65536 calls, so polling
    /// `try_pop`/`try_push` users also learn of a dead peer without paying for it on
    /// every empty or full poll.
    fn peer_gone(&mut self, role: &AtomicU64, thorough: bool) -> bool {
        let holder = role.load(Ordering::Acquire);
        if holder == CLOSED {
            return true;
        }
        if holder == 0 && self.creator == 0 {
            return false; // not attached yet, and no creator to watch: wait for it
        }
        self.polls = self.polls.wrapping_add(1);
        if !thorough && self.polls % LIVENESS_POLLS != 0 {
            return false;
        }
        if holder == 0 {
            unclaimed_and_orphaned(role, self.creator)
        } else {
            !token_alive(holder)
        }
    }

    fn release_role(&self, role: &AtomicU64) {
        // SYNC: Release: our last position store happens before a new holder's
        // Acquire of the role word.
        let _ = role.compare_exchange(self.token, CLOSED, Ordering::Release, Ordering::Relaxed);
    }
}

// SAFETY: a RawHandle is only a cache of pointers into a region that is Send + Sync
// (Region: Send + Sync), kept alive by the Arc next to it; moving it to another thread
// moves exclusive use of the role with it.
unsafe impl Send for RawHandle {}

fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

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
    raw: RawHandle,
    /// Our position (authoritative: only we write `tail`).
    tail: u64,
    /// Last `head` we read; the real one is never behind it.
    cached_head: u64,
    /// Stamps of positions below this may be stale "published" marks of a batch a
    /// dead producer left half stamped (see [`Spsc::producer`]): each publication
    /// ending below it voids the stamp of the slot after it first.
    repair_until: u64,
    ring: Spsc<T, R>,
}

impl<T: Pod, R: Region<Shared = SpscHeader>> Producer<T, R> {
    /// Re-reads `head`, validating it: `cached_head <= head <= tail`.
    #[cold]
    fn refresh_head(&mut self) -> Result<(), Corruption> {
        // SYNC: Acquire pairs with the consumer's Release store of `head`: the slots
        // it released are no longer read.
        let head = self.raw.header().head.load(Ordering::Acquire);
        if head < self.cached_head || head > self.tail {
            return Err(Corruption {
                what: "consumer position (head)",
                found: head,
            });
        }
        self.cached_head = head;
        Ok(())
    }

    #[inline(always)]
    fn free(&self) -> u64 {
        self.raw.capacity - (self.tail - self.cached_head)
    }

    #[cold]
    fn full_error(&mut self, value: T) -> PushError<T> {
        let role = NonNull::from(&self.raw.header().roles.consumer);
        // SAFETY: the role word lives in the header, alive while self is.
        if self.raw.peer_gone(unsafe { role.as_ref() }, false) {
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
        let header = self.raw.header;
        let mode = self.raw.wait_mode;
        let creator = self.raw.creator;
        let mut corrupt = false;
        // SAFETY: the header lives while self does (see RawHandle::header).
        let h = unsafe { header.as_ref() };
        let result = {
            let this = &mut *self;
            let ready = || -> Option<()> {
                // Re-read head through the raw pointer; validation as in refresh_head.
                let head = h.head.load(Ordering::Acquire);
                if head < this.cached_head || head > this.tail {
                    corrupt = true;
                    return Some(());
                }
                this.cached_head = head;
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
    pub(crate) fn wait_consumed(
        &mut self,
        pos: u64,
        deadline: Option<Instant>,
    ) -> Result<(), WaitError> {
        let header = self.raw.header;
        let mode = self.raw.wait_mode;
        // SAFETY: the header lives while self does (see RawHandle::header).
        let h = unsafe { header.as_ref() };
        let tail = self.tail;
        let mut cached = self.cached_head;
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
        self.cached_head = self.cached_head.max(cached);
        result
    }

    /// Cheap, rate-limited form of [`is_abandoned`](Self::is_abandoned) for polling
    /// paths.
    pub(crate) fn peer_left(&mut self) -> bool {
        let role = NonNull::from(&self.raw.header().roles.consumer);
        // SAFETY: the role word lives in the header, alive while self is.
        self.raw.peer_gone(unsafe { role.as_ref() }, false)
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
        let role = NonNull::from(&self.raw.header().roles.consumer);
        // SAFETY: the role word lives in the header, alive while self is.
        self.raw.peer_gone(unsafe { role.as_ref() }, true)
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

/// The peer liveness check used inside waits (no borrow of the handle).
struct RawGone<'a> {
    role: &'a AtomicU64,
    /// The ring's creator ([`Spsc::creator`]).
    creator: u64,
}

impl RawGone<'_> {
    fn gone(&mut self, thorough: bool) -> bool {
        let holder = self.role.load(Ordering::Acquire);
        if holder == CLOSED {
            return true;
        }
        if !thorough {
            return false;
        }
        if holder == 0 {
            unclaimed_and_orphaned(self.role, self.creator)
        } else {
            !token_alive(holder)
        }
    }
}

/// Whether the role word `role`, read as 0 (never claimed), can never be claimed any
/// more: the ring's `creator` (0: unknown) is certainly dead, and the role is still
/// unclaimed after that was found.
///
/// The rule: only a process that opens the ring can claim a role, and one that never
/// was claimed is, by the ring's protocol, waiting for whoever its creator hands it to.
/// Once the creator is dead (positive evidence only: an unknown liveness counts as
/// alive) and the role is still free, a waiter on the other end reports
/// `Disconnected` instead of waiting forever. A process that opens the ring by name
/// later can still claim the role, and the waits that follow see it; a deployment
/// whose creator exits on purpose before handing the roles over (a launcher) must have
/// the other end wait with a deadline.
fn unclaimed_and_orphaned(role: &AtomicU64, creator: u64) -> bool {
    // Re-read after the liveness check (a `/proc` read): a claim made meanwhile wins.
    creator != 0 && token_dead(creator) && role.load(Ordering::Acquire) == 0
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
    raw: RawHandle,
    /// Our position (authoritative: only we write `head`).
    head: u64,
    /// Last `tail` we read; the real one is never behind it.
    cached_tail: u64,
    ring: Spsc<T, R>,
}

impl<T: Pod, R: Region<Shared = SpscHeader>> Consumer<T, R> {
    /// Re-reads `tail`, validating it (`tail <= head + capacity`; a stale, smaller
    /// value keeps the cached one).
    #[cold]
    fn refresh_tail(&mut self) -> Result<(), Corruption> {
        // SYNC: Acquire pairs with the producer's Release store of `tail`: the slots
        // it published are visible.
        let tail = self.raw.header().tail.load(Ordering::Acquire);
        self.cached_tail = validate_tail(tail, self.cached_tail, self.head, self.raw.capacity)?;
        Ok(())
    }

    #[inline(always)]
    fn available(&self) -> u64 {
        self.cached_tail - self.head
    }

    /// Counts slots as available by their stamps, up to `want` (the `tail` store that
    /// follows the stamps may not be visible yet).
    fn extend_by_stamps(&mut self, want: u64) {
        let limit = self.head + want.min(self.raw.capacity);
        while self.cached_tail < limit {
            // SYNC: Acquire pairs with the producer's Release stamp store.
            if self
                .raw
                .stamp::<T>(self.cached_tail)
                .load(Ordering::Acquire)
                != self.cached_tail + 1
            {
                break;
            }
            self.cached_tail += 1;
        }
    }

    /// Polls the stamp of the slot at `head` (one cache line, with the value in it);
    /// if it is published, counts it as available without reading `tail`.
    #[inline(always)]
    fn next_is_published(&mut self) -> bool {
        // SYNC: Acquire pairs with the producer's Release store of the stamp.
        if self.raw.stamp::<T>(self.head).load(Ordering::Acquire) == self.head + 1 {
            // The producer stores the stamp before `tail`, so tail >= head + 1.
            self.cached_tail = self.cached_tail.max(self.head + 1);
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
        let role = NonNull::from(&self.raw.header().roles.producer);
        // SAFETY: the role word lives in the header, alive while self is.
        if self.raw.peer_gone(unsafe { role.as_ref() }, false) {
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
        let header = self.raw.header;
        let mode = self.raw.wait_mode;
        let creator = self.raw.creator;
        // SAFETY: the header lives while self does (see RawHandle::header).
        let h = unsafe { header.as_ref() };
        let mut corrupt = false;
        let result = {
            let this = &mut *self;
            let mut polls = 0u32;
            let ready = || -> Option<()> {
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
                match validate_tail(tail, this.cached_tail, this.head, this.raw.capacity) {
                    Ok(t) => this.cached_tail = t,
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
        let role = NonNull::from(&self.raw.header().roles.producer);
        // SAFETY: the role word lives in the header, alive while self is.
        self.raw.peer_gone(unsafe { role.as_ref() }, false)
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
        let role = NonNull::from(&self.raw.header().roles.producer);
        // SAFETY: the role word lives in the header, alive while self is.
        self.raw.peer_gone(unsafe { role.as_ref() }, true)
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

    /// Chooses how this handle waits (see [`Producer::set_wait_mode`]).
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

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

use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{BuildError, ClaimError, Corruption};
use crate::process::crash;
use crate::process::{current_token, token_alive, token_dead, token_pid};
use crate::region::Pod;
use crate::region::{AREA_ALIGN, CacheLine, HeapRegion, RawArea, Region, ShmSafe};
use crate::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use crate::sync::{WaitMode, WaitWord};

mod consumer;
mod producer;

pub use consumer::{Consumer, ReadChunk};
pub use producer::{Producer, WriteChunk};

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
    /// Set by [`close`](Spsc::close): shared by this handle, its clones and every
    /// producer and consumer made from them (this process only).
    closed: Arc<AtomicBool>,
    _elem: PhantomData<fn() -> T>,
}

impl<T: Pod, R: Region<Shared = SpscHeader>> Clone for Spsc<T, R> {
    fn clone(&self) -> Self {
        Self {
            region: self.region.clone(),
            capacity: self.capacity,
            mode: self.mode,
            creator: self.creator,
            closed: self.closed.clone(),
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
}

/// Checks a ring of `capacity` `T`s; the capacity and the area bytes it needs.
fn area_for<T>(capacity: usize) -> Result<(u64, usize), BuildError> {
    check_align::<T>()?;
    let capacity = capacity as u64;
    check_capacity(capacity)?;
    let area = usize::try_from(capacity)
        .ok()
        .and_then(|c| c.checked_mul(slot_size::<T>()))
        .ok_or(BuildError::InvalidCapacity(capacity))?;
    Ok((capacity, area))
}

/// The kind, and a fingerprint of the header, `T` and `tag`.
#[cfg(not(shmlink_loom))]
fn configure<T: Pod>(
    builder: crate::segment::SegmentBuilder,
    kind: crate::segment::Kind,
    tag: u64,
) -> crate::segment::SegmentBuilder {
    builder
        .kind(kind)
        .type_name_default(std::any::type_name::<T>())
        .fingerprint(crate::region::combine_fingerprints(
            crate::region::combine_fingerprints(
                crate::region::fingerprint::<SpscHeader>(),
                T::FINGERPRINT,
            ),
            tag,
        ))
}

#[cfg(not(shmlink_loom))]
impl<T: Pod> Spsc<T, crate::segment::ShmRegion<SpscHeader>> {
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
    /// assert!(matches!(wrong, Err(BuildError::Open { error: _, .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(builder: crate::segment::SegmentBuilder) -> Result<Self, BuildError> {
        Self::open_tagged(builder, crate::segment::Kind::SpscRing, 0)
    }

    /// Opens the ring, or creates it with `capacity` and `mode` if the name holds
    /// none: the call every process of an application can make, whichever starts
    /// first and however often it restarts.
    ///
    /// A ring left **stale** by a crash (a process attached to it was killed) is
    /// resumed when it is a ring of `T` with this capacity and its configuration
    /// validates ([`Disposition::Resumed`](crate::segment::Disposition::Resumed)):
    /// every value committed to it and not yet consumed is still there, and a role
    /// whose holder died can be claimed again. Anything else stale under the name is
    /// replaced by a fresh ring ([`Disposition::Replaced`](crate::segment::Disposition::Replaced));
    /// [`OnStale::Replace`](crate::segment::OnStale::Replace) asks for that always. A
    /// live ring of another type or capacity is an error, never replaced.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create) and [`open`](Self::open).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::Spsc;
    /// use shmlink::segment::{Disposition, Segment};
    /// use shmlink::sync::WaitMode;
    /// # let name = format!("doc-spsc-open-or-create-{}", std::process::id());
    ///
    /// // Producer and consumer run the same line, in either order.
    /// let builder = Segment::builder(&name).unlink_on_drop(true);
    /// let (a, how) = Spsc::<u64, _>::open_or_create(builder.clone(), 64, WaitMode::Blocking)?;
    /// assert_eq!(how, Disposition::Created);
    /// let (b, how) = Spsc::<u64, _>::open_or_create(builder, 64, WaitMode::Blocking)?;
    /// assert_eq!(how, Disposition::Opened);
    /// a.producer()?.push(7).unwrap();
    /// assert_eq!(b.consumer()?.try_pop(), Ok(7));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_or_create(
        builder: crate::segment::SegmentBuilder,
        capacity: usize,
        mode: WaitMode,
    ) -> Result<(Self, crate::segment::Disposition), BuildError> {
        Self::open_or_create_tagged(
            builder,
            capacity,
            mode,
            crate::segment::Kind::SpscRing,
            0,
            0,
        )
    }

    /// The ring's segment.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::Spsc;
    /// use shmlink::segment::Segment;
    /// use shmlink::sync::WaitMode;
    /// # let name = format!("doc-spsc-segment-{}", std::process::id());
    ///
    /// let ring = Spsc::<u64, _>::create(Segment::builder(&name), 64, WaitMode::Spin)?;
    /// assert_eq!(ring.segment().name().as_str(), name);
    /// ring.segment().unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn segment(&self) -> &crate::segment::Segment {
        self.region.segment()
    }

    /// Whether the ring's name still refers to this ring (see
    /// [`Segment::is_current`](crate::segment::Segment::is_current)).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::Spsc;
    /// use shmlink::segment::Segment;
    /// use shmlink::sync::WaitMode;
    /// # let name = format!("doc-spsc-is-current-{}", std::process::id());
    ///
    /// let ring = Spsc::<u64, _>::create(Segment::builder(&name), 64, WaitMode::Spin)?;
    /// assert!(ring.is_current());
    /// ring.segment().unlink()?; // e.g. `shmlink rm` from another process
    /// assert!(!ring.is_current());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn is_current(&self) -> bool {
        self.segment().is_current()
    }
}

/// Constructors for any region that a heap or named region converts into (the
/// public `new`, `create` and `open` are these, for one region type each).
impl<T: Pod, R: Region<Shared = SpscHeader>> Spsc<T, R> {
    /// `new` for rings built on this one (aux word).
    pub(crate) fn new_tagged(capacity: usize, mode: WaitMode, aux: u32) -> Result<Self, BuildError>
    where
        R: From<HeapRegion<SpscHeader>>,
    {
        let (capacity, area) = area_for::<T>(capacity)?;
        let region = HeapRegion::<SpscHeader>::try_new(area)
            .ok_or(BuildError::OutOfMemory { bytes: area })?;
        init_header::<T>(region.shared(), capacity, mode, aux);
        Self::from_region(Arc::new(R::from(region)))
    }

    #[cfg(not(shmlink_loom))]
    /// `create` for rings built on this one (kind, fingerprint tag, aux word).
    pub(crate) fn create_tagged(
        builder: crate::segment::SegmentBuilder,
        capacity: usize,
        mode: WaitMode,
        kind: crate::segment::Kind,
        tag: u64,
        aux: u32,
    ) -> Result<Self, BuildError>
    where
        R: From<crate::segment::ShmRegion<SpscHeader>>,
    {
        let (capacity, area) = area_for::<T>(capacity)?;
        let builder = configure::<T>(builder, kind, tag);
        let region =
            crate::segment::ShmRegion::<SpscHeader>::create_with(builder.clone(), area, |h, _| {
                init_header::<T>(h, capacity, mode, aux)
            })
            .map_err(|e| BuildError::create(&builder, e))?;
        Self::with_creator(region)
    }

    #[cfg(not(shmlink_loom))]
    /// Wraps a named ring's region, remembering the process that created its segment
    /// (see [`unclaimed_and_orphaned`]).
    fn with_creator(region: crate::segment::ShmRegion<SpscHeader>) -> Result<Self, BuildError>
    where
        R: From<crate::segment::ShmRegion<SpscHeader>>,
    {
        let creator = region.segment().creator();
        let mut ring = Self::from_region(Arc::new(R::from(region)))?;
        ring.creator = if creator.pid == 0 {
            0 // not a process: no rule
        } else {
            crate::process::token_of(creator.pid, creator.start_ticks)
        };
        Ok(ring)
    }

    #[cfg(not(shmlink_loom))]
    /// `open_or_create` for rings built on this one.
    pub(crate) fn open_or_create_tagged(
        builder: crate::segment::SegmentBuilder,
        capacity: usize,
        mode: WaitMode,
        kind: crate::segment::Kind,
        tag: u64,
        aux: u32,
    ) -> Result<(Self, crate::segment::Disposition), BuildError>
    where
        R: From<crate::segment::ShmRegion<SpscHeader>> + crate::segment::NamedRegion,
    {
        check_align::<T>()?;
        let (capacity, area) = area_for::<T>(capacity)?;
        let builder = configure::<T>(builder, kind, tag);
        crate::segment::resume_or_replace(
            builder.wait_limit(),
            || {
                let (region, how) = crate::segment::ShmRegion::<SpscHeader>::open_or_create_staged(
                    builder.clone(),
                    area,
                    |h, _| init_header::<T>(h, capacity, mode, aux),
                )
                .map_err(|e| {
                    (
                        BuildError::open(&builder, e),
                        crate::segment::Disposition::Opened,
                    )
                })?;
                match Self::with_creator(region) {
                    Ok(ring) if ring.aux() == aux => Ok((ring, how)),
                    Ok(ring) => Err((
                        BuildError::Mismatch {
                            what: "largest frame",
                            expected: u64::from(aux),
                            found: u64::from(ring.aux()),
                        },
                        how,
                    )),
                    Err(e) => Err((e, how)),
                }
            },
            |ring: &Self| ring.region.named_segment(),
            |e| BuildError::open(&builder, e),
        )
    }

    #[cfg(not(shmlink_loom))]
    /// `open` for rings built on this one.
    pub(crate) fn open_tagged(
        builder: crate::segment::SegmentBuilder,
        kind: crate::segment::Kind,
        tag: u64,
    ) -> Result<Self, BuildError>
    where
        R: From<crate::segment::ShmRegion<SpscHeader>>,
    {
        check_align::<T>()?;
        let builder = configure::<T>(builder, kind, tag);
        let region = crate::segment::ShmRegion::<SpscHeader>::open(builder.clone())
            .map_err(|e| BuildError::open(&builder, e))?;
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
            closed: Arc::new(AtomicBool::new(false)),
            _elem: PhantomData,
        })
    }

    /// Closes the ring **in this process**, for a clean shutdown: every push and pop
    /// of a producer or consumer made from this handle or its clones that waits, or
    /// would have to wait, returns `Closed` ([`PushError::Closed`](super::PushError::Closed) with the value,
    /// [`PopError::Closed`](super::PopError::Closed)) at once, and calls blocked in other threads wake up and
    /// return it too. A call that can complete at once still does (values already
    /// pushed can be drained with `try_pop`). Other processes, and handles opened
    /// separately by name, are not affected: for them the ring goes on. Closing is
    /// final for these handles. A wait for an acknowledgement (the consumer's
    /// progress past a pushed value, as a channel's `send_acked` waits) is not ended
    /// by `close`: ending it would have to report an acknowledgement that did not
    /// come; it ends at its deadline or when the consumer moves on or leaves.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmlink::ring::{PopError, Spsc};
    /// use shmlink::sync::WaitMode;
    ///
    /// let ring = Spsc::<u64, _>::new(8, WaitMode::Blocking)?;
    /// let (_tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// let waiter = std::thread::spawn(move || rx.pop()); // blocks: nothing comes
    /// std::thread::sleep(Duration::from_millis(20));
    /// ring.close(); // e.g. from a Ctrl-C handler
    /// assert_eq!(waiter.join().unwrap(), Err(PopError::Closed));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) {
        // SYNC: SeqCst store, then the waits' words are bumped (Release) and woken: a
        // waiter that announced itself and did not see the flag in its last check
        // read the word's old value before it, so its futex wait returns (see
        // `WaitWord::wait_until`). loom: `spsc_close_wakes_blocked_callers` and
        // `spsc_close_wakes_a_blocked_producer` (loom-tests/ring.rs).
        self.closed.store(true, Ordering::SeqCst);
        let h = self.region.shared();
        h.data.wake_all();
        h.space.wake_all();
    }

    /// Whether [`close`](Self::close) was called on this handle or a clone.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
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
                        crate::sync::slow_path!(
                            INFO,
                            dead_pid = token_pid(current),
                            "spsc: took over the role of a dead process"
                        );
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
    pub(crate) fn producers_gone(&self, thorough: bool) -> bool {
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
            cached_head: Cell::new(head),
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
            cached_tail: Cell::new(tail),
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
    polls: Cell<u32>,
    /// The ring's [`close`](Spsc::close) flag.
    closed: Arc<AtomicBool>,
}

/// A polling handle checks its peer's process once per this many empty/full polls.
const LIVENESS_POLLS: u32 = 1 << 16;

impl RawHandle {
    /// Whether the ring was closed in this process (Acquire: pairs with the store in
    /// [`Spsc::close`]).
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

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
            polls: Cell::new(0),
            closed: ring.closed.clone(),
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
    fn peer_gone(&self, role: &AtomicU64, thorough: bool) -> bool {
        let holder = role.load(Ordering::Acquire);
        if holder == CLOSED {
            return true;
        }
        if holder == 0 && self.creator == 0 {
            return false; // not attached yet, and no creator to watch: wait for it
        }
        let polls = self.polls.get().wrapping_add(1);
        self.polls.set(polls);
        if !thorough && !polls.is_multiple_of(LIVENESS_POLLS) {
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

/// What `shmlink inspect` shows of an SPSC or frame ring (see
/// [`ring_status`](super::ring_status)).
#[cfg(not(shmlink_loom))]
pub(crate) fn status_of(h: &SpscHeader) -> super::RingStatus {
    let role = |w: &AtomicU64| {
        let t = w.load(Ordering::Relaxed);
        (t != 0 && t != CLOSED).then(|| super::RoleHolder {
            pid: token_pid(t),
            liveness: crate::process::liveness(t),
        })
    };
    super::RingStatus {
        capacity: h.config.capacity.load(Ordering::Relaxed),
        head: h.head.load(Ordering::Relaxed),
        tail: h.tail.load(Ordering::Relaxed),
        mode: WaitMode::from_code(h.config.mode.load(Ordering::Relaxed)),
        producers: role(&h.roles.producer).into_iter().collect(),
        consumers: role(&h.roles.consumer).into_iter().collect(),
        waiting_for_data: h.data.sleepers(),
        waiting_for_space: h.space.sleepers(),
        holes: 0,
        lost: 0,
    }
}

//! A bounded multi-producer multi-consumer ring of [`Pod`] elements (Vyukov's bounded
//! queue with per-slot stamps, as in crossbeam's `ArrayQueue`), on the heap or in a
//! named segment, that survives participants dying mid-operation.
//!
//! Slots hold an atomic *stamp* and the value. With monotonic `u64` positions:
//! - slot of position `p` is free for a push when `stamp == p`;
//! - it holds a published value for the pop at `p` when `stamp == p + 1`;
//! - the pop at `p` frees it for the next lap with `stamp = p + capacity`.
//!
//! A producer claims `p` by a CAS on `tail`, writes the value, then publishes with a
//! Release store of the stamp; a consumer claims `p` by a CAS on `head`, copies the value
//! out, then frees the slot with a Release store.
//!
//! **Dying participants** (documented choice: *repair*, not fail). Each handle owns a
//! participant record holding its process token and the position it is claiming
//! (`pending_push`/`pending_pop`, written *before* the claiming CAS). A claimed but never
//! finished slot blocks the ring at that slot; whoever gets stuck behind it for a while
//! looks for the claimant and, only if its process is definitively dead (pid and start
//! time, never a timeout alone) and no live participant claims the same position:
//! - a push that was claimed but never published becomes a **hole** (tombstone) that
//!   consumers skip: nothing was lost, because that push never returned `Ok`;
//! - a pop that was claimed but never finished has its slot freed: the value went down
//!   with the consumer that had taken it, and is counted in [`RepairStats::lost`].
//!
//! Repairs are CASes on the stamp, so concurrent repairers cannot both act.

use core::fmt;
use core::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{BuildError, ClaimError, Corruption, PopError, PushError};
use crate::process::crash;
use crate::process::{current_token, token_alive, token_pid};
use crate::region::Pod;
use crate::region::{CacheLine, HeapRegion, RawArea, Region, ShmSafe};
use crate::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use crate::sync::{WaitError, WaitMode, WaitWord};

/// Largest capacity (slots).
///
/// # Examples
///
/// ```
/// use shmlink::ring::mpmc::MAX_CAPACITY;
/// use shmlink::ring::{BuildError, Mpmc};
/// use shmlink::sync::WaitMode;
///
/// let too_big = MAX_CAPACITY * 2;
/// let err = Mpmc::<u64, _>::new(too_big as usize, WaitMode::Spin).unwrap_err();
/// assert_eq!(err, BuildError::InvalidCapacity(too_big));
/// ```
pub const MAX_CAPACITY: u64 = 1 << 32;
/// How many handles (producers and consumers together) a ring has room for.
///
/// # Examples
///
/// ```
/// use shmlink::ring::mpmc::MAX_PARTICIPANTS;
/// use shmlink::ring::{ClaimError, Mpmc};
/// use shmlink::sync::WaitMode;
///
/// let ring = Mpmc::<u64, _>::new(8, WaitMode::Spin)?;
/// let producers = (0..MAX_PARTICIPANTS)
///     .map(|_| ring.producer())
///     .collect::<Result<Vec<_>, _>>()?;
/// let err = ring.consumer().unwrap_err();
/// assert_eq!(err, ClaimError::NoFreeSlot { max: MAX_PARTICIPANTS });
/// # drop(producers);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(not(shmlink_loom))]
pub const MAX_PARTICIPANTS: usize = 32;
/// How many handles a ring has room for (small under loom to keep models small).
#[cfg(shmlink_loom)]
pub const MAX_PARTICIPANTS: usize = 4;

/// Stamp bit marking a hole left by a producer that died before publishing.
const HOLE: u64 = 1 << 63;
/// Role bits of a participant.
const ROLE_PRODUCER: u64 = 1;
const ROLE_CONSUMER: u64 = 2;
/// Spins on an unfinished slot before looking for a dead claimant.
#[cfg(not(shmlink_loom))]
const STUCK_SPINS: u32 = 1 << 6;
#[cfg(shmlink_loom)]
const STUCK_SPINS: u32 = 1;
/// Consecutive looks at a stamp that fits no state of the ring while the position
/// word stands still, before the slot is reported corrupted. (A real race moves the
/// position word: whoever moved the stamp on had moved it first.)
#[cfg(not(shmlink_loom))]
const FROZEN_LOOKS: u32 = 64;
#[cfg(shmlink_loom)]
const FROZEN_LOOKS: u32 = 3;
/// Most looks of one attempt (a bound on one poll, so that a waiting caller reads its
/// clock often enough to keep its deadline whatever the ring holds).
#[cfg(not(shmlink_loom))]
const MAX_LOOKS: u32 = 1 << 8;
#[cfg(shmlink_loom)]
const MAX_LOOKS: u32 = 8;

/// Configuration written once by the creator.
///
/// # Examples
///
/// ```
/// use shmlink::ring::mpmc::MpmcConfig;
/// use shmlink::region::ShmSafe;
///
/// // Part of every MPMC header; all zeroes until the creator fills it in.
/// let config = MpmcConfig::new_zeroed();
/// assert_eq!(size_of_val(&config), 40);
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct MpmcConfig {
    capacity: AtomicU64,
    elem_size: AtomicU64,
    elem_fingerprint: AtomicU64,
    slot_size: AtomicU64,
    mode: AtomicU32,
    _reserved: AtomicU32,
}

// SAFETY: repr(C), integer atomics only, no pointers.
unsafe impl ShmSafe for MpmcConfig {
    const TYPE_NAME: &'static str = "shmlink::ring::MpmcConfig";
    fn new_zeroed() -> Self {
        Self {
            capacity: AtomicU64::new(0),
            elem_size: AtomicU64::new(0),
            elem_fingerprint: AtomicU64::new(0),
            slot_size: AtomicU64::new(0),
            mode: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
        }
    }
}

/// One handle's record: who it is and what it is in the middle of.
///
/// # Examples
///
/// ```
/// use shmlink::ring::mpmc::Participant;
/// use shmlink::region::ShmSafe;
///
/// // A free record: no holder, nothing pending.
/// let record = Participant::new_zeroed();
/// assert_eq!(size_of_val(&record), 48);
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct Participant {
    /// Process token of the holder, 0 if free.
    token: AtomicU64,
    /// Role bits (producer 1, consumer 2).
    role: AtomicU64,
    /// `p + 1` while claiming or filling the push at position `p`, else 0.
    pending_push: AtomicU64,
    /// `p + 1` while claiming or draining the pop at position `p`, else 0.
    pending_pop: AtomicU64,
    /// `p + 1` of this producer's last push, written before its publication: a
    /// producer waiting for the acknowledgement of `p` is found by it.
    last_push: AtomicU64,
    /// `p + 1` when the value this producer pushed at `p` was taken by a consumer that
    /// died before finishing its pop (written by the repairer before it frees the slot).
    ack_lost: AtomicU64,
}

// SAFETY: repr(C), integer atomics only, no pointers.
unsafe impl ShmSafe for Participant {
    const TYPE_NAME: &'static str = "shmlink::ring::Participant";
    fn new_zeroed() -> Self {
        Self {
            token: AtomicU64::new(0),
            role: AtomicU64::new(0),
            pending_push: AtomicU64::new(0),
            pending_pop: AtomicU64::new(0),
            last_push: AtomicU64::new(0),
            ack_lost: AtomicU64::new(0),
        }
    }
}

/// Repair counters and registration counts.
///
/// # Examples
///
/// ```
/// use shmlink::ring::mpmc::Repairs;
/// use shmlink::region::ShmSafe;
///
/// let counters = Repairs::new_zeroed();
/// assert_eq!(size_of_val(&counters), 32);
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct Repairs {
    holes: AtomicU64,
    lost: AtomicU64,
    /// Role bits of every participant that ever registered.
    roles_seen: AtomicU64,
    /// Registered producers (live or dead, until their record is taken over).
    producers: AtomicU32,
    /// Registered consumers (idem).
    consumers: AtomicU32,
}

// SAFETY: repr(C), integer atomics only, no pointers.
unsafe impl ShmSafe for Repairs {
    const TYPE_NAME: &'static str = "shmlink::ring::Repairs";
    fn new_zeroed() -> Self {
        Self {
            holes: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            roles_seen: AtomicU64::new(0),
            producers: AtomicU32::new(0),
            consumers: AtomicU32::new(0),
        }
    }
}

/// The control block of an MPMC ring.
///
/// # Examples
///
/// ```
/// use shmlink::ring::MpmcHeader;
/// use shmlink::ring::mpmc::MAX_PARTICIPANTS;
///
/// // Six 128-byte lines, then one line per participant.
/// assert_eq!(size_of::<MpmcHeader>(), 128 * (6 + MAX_PARTICIPANTS));
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct MpmcHeader {
    config: CacheLine<MpmcConfig>,
    /// Next position to push. CAS by producers.
    tail: CacheLine<AtomicU64>,
    /// Next position to pop. CAS by consumers.
    head: CacheLine<AtomicU64>,
    not_empty: CacheLine<WaitWord>,
    not_full: CacheLine<WaitWord>,
    repairs: CacheLine<Repairs>,
    participants: [CacheLine<Participant>; MAX_PARTICIPANTS],
}

#[cfg(not(shmlink_loom))]
const _: () = assert!(size_of::<MpmcHeader>() == 128 * (6 + MAX_PARTICIPANTS));

// SAFETY: repr(C) of ShmSafe fields, no pointers.
unsafe impl ShmSafe for MpmcHeader {
    const TYPE_NAME: &'static str = "shmlink::ring::MpmcHeader";
    // 2: registration counters in the repairs line; 3: acknowledgement words in the
    // participant records.
    const VERSION: u32 = 3;
    fn new_zeroed() -> Self {
        Self {
            config: CacheLine::new_zeroed(),
            tail: CacheLine::new_zeroed(),
            head: CacheLine::new_zeroed(),
            not_empty: CacheLine::new_zeroed(),
            not_full: CacheLine::new_zeroed(),
            repairs: CacheLine::new_zeroed(),
            participants: core::array::from_fn(|_| CacheLine::new_zeroed()),
        }
    }
}

/// What repairs found so far.
///
/// # Examples
///
/// ```
/// # use shmlink::ring::Mpmc;
/// # use shmlink::sync::WaitMode;
///
/// use shmlink::ring::RepairStats;
///
/// let ring = Mpmc::<u64, _>::new(8, WaitMode::Spin)?;
/// // Nobody died: nothing to repair.
/// assert_eq!(ring.repairs(), RepairStats { holes: 0, lost: 0 });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RepairStats {
    /// Pushes claimed by a dead producer and turned into holes (nothing lost).
    pub holes: u64,
    /// Values taken by a consumer that died before finishing its pop.
    pub lost: u64,
}

/// Bytes per slot: the 8-byte stamp at offset 0, the value at `spsc::value_offset`
/// (aligned for `T`), rounded up to the slot's alignment (the SPSC slot layout).
const fn slot_size<T>() -> usize {
    super::spsc::slot_size::<T>()
}

/// Capacity must be at least 2: with one slot, "published for position p" (`p + 1`)
/// and "free for the next lap" (`p + capacity`) would be the same stamp (the loom
/// model found this).
fn check_capacity(capacity: u64) -> Result<(), BuildError> {
    if !(2..=MAX_CAPACITY).contains(&capacity) || !capacity.is_power_of_two() {
        Err(BuildError::InvalidCapacity(capacity))
    } else {
        Ok(())
    }
}

fn area_len<T>(capacity: u64) -> Result<usize, BuildError> {
    usize::try_from(capacity)
        .ok()
        .and_then(|c| c.checked_mul(slot_size::<T>()))
        .ok_or(BuildError::InvalidCapacity(capacity))
}

/// Writes the configuration and the initial stamps (`stamp[i] = i`).
fn init<T: Pod>(h: &MpmcHeader, area: RawArea, capacity: u64, mode: WaitMode) {
    h.config.capacity.store(capacity, Ordering::Relaxed);
    h.config
        .elem_size
        .store(size_of::<T>() as u64, Ordering::Relaxed);
    h.config
        .elem_fingerprint
        .store(T::FINGERPRINT, Ordering::Relaxed);
    h.config
        .slot_size
        .store(slot_size::<T>() as u64, Ordering::Relaxed);
    h.config.mode.store(mode.code(), Ordering::Relaxed);
    for i in 0..capacity {
        // SAFETY: i < capacity and the area holds capacity slots (sized by the
        // caller); stamps are only accessed atomically; the area is alive.
        unsafe { area.atomic_u64(i as usize * slot_size::<T>()) }.store(i, Ordering::Relaxed);
    }
}

/// A bounded MPMC ring of `T` in region `R`; producers and consumers are handles
/// registered in the ring's participant table.
///
/// # Examples
///
/// ```
/// use shmlink::ring::Mpmc;
/// use shmlink::sync::WaitMode;
///
/// let ring = Mpmc::<u64, _>::new(8, WaitMode::Blocking)?;
/// let mut tx1 = ring.producer()?;
/// let mut tx2 = ring.producer()?;
/// let mut rx = ring.consumer()?;
/// tx1.try_push(1).unwrap();
/// tx2.try_push(2).unwrap();
/// assert_eq!(rx.try_pop(), Ok(1));
/// assert_eq!(rx.try_pop(), Ok(2));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Mpmc<T: Pod, R: Region<Shared = MpmcHeader>> {
    region: Arc<R>,
    capacity: u64,
    mode: WaitMode,
    /// Set by [`close`](Mpmc::close): shared by this handle, its clones and every
    /// producer and consumer made from them (this process only).
    closed: Arc<crate::sync::atomic::AtomicBool>,
    _elem: PhantomData<fn() -> T>,
}

impl<T: Pod, R: Region<Shared = MpmcHeader>> Clone for Mpmc<T, R> {
    fn clone(&self) -> Self {
        Self {
            region: self.region.clone(),
            capacity: self.capacity,
            mode: self.mode,
            closed: self.closed.clone(),
            _elem: PhantomData,
        }
    }
}

impl<T: Pod> Mpmc<T, HeapRegion<MpmcHeader>> {
    /// A ring on the heap, for threads.
    ///
    /// # Errors
    ///
    /// [`BuildError::InvalidCapacity`] unless `capacity` is a power of two in
    /// `2..=2^32`; [`BuildError::OutOfMemory`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{BuildError, Mpmc};
    /// use shmlink::sync::WaitMode;
    ///
    /// let ring = Mpmc::<u64, _>::new(8, WaitMode::Spin)?;
    /// assert_eq!(ring.capacity(), 8);
    /// // One slot is not enough for an MPMC ring.
    /// let err = Mpmc::<u64, _>::new(1, WaitMode::Spin).unwrap_err();
    /// assert_eq!(err, BuildError::InvalidCapacity(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(capacity: usize, mode: WaitMode) -> Result<Self, BuildError> {
        Self::new_in(capacity, mode)
    }
}

#[cfg(not(shmlink_loom))]
/// The kind, and a fingerprint of the header, `T` and (unless 0) a `tag` naming
/// what the elements carry (the message type of a serde channel's cells).
fn configure_tagged<T: Pod>(
    builder: crate::segment::SegmentBuilder,
    tag: u64,
) -> crate::segment::SegmentBuilder {
    builder
        .kind(crate::segment::Kind::MpmcRing)
        .type_name_default(std::any::type_name::<T>())
        .fingerprint(tagged_fingerprint::<T>(tag))
}

/// The segment fingerprint of a ring of `T` with fingerprint tag `tag` (0: none).
pub(crate) fn tagged_fingerprint<T: Pod>(tag: u64) -> u64 {
    let fp = crate::region::combine_fingerprints(
        crate::region::fingerprint::<MpmcHeader>(),
        T::FINGERPRINT,
    );
    if tag == 0 {
        fp
    } else {
        crate::region::combine_fingerprints(fp, tag)
    }
}

#[cfg(not(shmlink_loom))]
impl<T: Pod> Mpmc<T, crate::segment::ShmRegion<MpmcHeader>> {
    /// Creates a ring in the named segment `builder` describes.
    ///
    /// # Errors
    ///
    /// [`BuildError::InvalidCapacity`] or [`BuildError::Create`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::Mpmc;
    /// use shmlink::sync::WaitMode;
    /// use shmlink::segment::Segment;
    /// # let name = format!("doc-mpmc-create-{}", std::process::id());
    ///
    /// let builder = Segment::builder(&name).unlink_on_drop(true);
    /// let ring = Mpmc::<u64, _>::create(builder, 1024, WaitMode::Blocking)?;
    /// ring.producer()?.try_push(1)?;
    /// assert_eq!(ring.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(
        builder: crate::segment::SegmentBuilder,
        capacity: usize,
        mode: WaitMode,
    ) -> Result<Self, BuildError> {
        Self::create_tagged(builder, capacity, mode, 0)
    }

    /// Opens the ring in the named segment `builder` describes.
    ///
    /// # Errors
    ///
    /// [`BuildError::Open`] (e.g. `TypeMismatch` for another element type) or
    /// [`BuildError::BadConfig`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{BuildError, Mpmc};
    /// use shmlink::sync::WaitMode;
    /// use shmlink::segment::Segment;
    /// # let name = format!("doc-mpmc-open-{}", std::process::id());
    /// # let a = Mpmc::<u64, _>::create(Segment::builder(&name).unlink_on_drop(true), 64, WaitMode::Spin)?;
    /// # a.producer()?.try_push(5)?;
    ///
    /// // In another process: attach by name.
    /// let ring = Mpmc::<u64, _>::open(Segment::builder(&name))?;
    /// assert_eq!(ring.consumer()?.try_pop(), Ok(5));
    /// // The element type is checked.
    /// let wrong = Mpmc::<u32, _>::open(Segment::builder(&name));
    /// assert!(matches!(wrong, Err(BuildError::Open { error: _, .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(builder: crate::segment::SegmentBuilder) -> Result<Self, BuildError> {
        Self::open_tagged(builder, 0)
    }

    /// Opens the ring, or creates it with `capacity` and `mode` if the name holds
    /// none; a ring left stale by a crash is resumed with the values committed to it
    /// when it is a ring of `T` with this capacity, and replaced otherwise (see
    /// [`Spsc::open_or_create`](super::Spsc::open_or_create), which works the same).
    /// Registrations of dead processes are repaired as usual, and a value a dead
    /// consumer had taken is counted in [`repairs`](Self::repairs).
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create) and [`open`](Self::open).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::Mpmc;
    /// use shmlink::segment::{Disposition, Segment};
    /// use shmlink::sync::WaitMode;
    /// # let name = format!("doc-mpmc-open-or-create-{}", std::process::id());
    ///
    /// let builder = Segment::builder(&name).unlink_on_drop(true);
    /// let (a, how) = Mpmc::<u64, _>::open_or_create(builder.clone(), 64, WaitMode::Blocking)?;
    /// assert_eq!(how, Disposition::Created);
    /// let (b, how) = Mpmc::<u64, _>::open_or_create(builder, 64, WaitMode::Blocking)?;
    /// assert_eq!(how, Disposition::Opened);
    /// a.producer()?.try_push(3)?;
    /// assert_eq!(b.consumer()?.try_pop(), Ok(3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_or_create(
        builder: crate::segment::SegmentBuilder,
        capacity: usize,
        mode: WaitMode,
    ) -> Result<(Self, crate::segment::Disposition), BuildError> {
        Self::open_or_create_tagged(builder, capacity, mode, 0)
    }

    /// The segment the ring lives in.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::Mpmc;
    /// use shmlink::segment::Segment;
    /// use shmlink::sync::WaitMode;
    /// # let name = format!("doc-mpmc-segment-{}", std::process::id());
    ///
    /// let ring = Mpmc::<u64, _>::create(Segment::builder(&name), 64, WaitMode::Spin)?;
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
    /// use shmlink::ring::Mpmc;
    /// use shmlink::segment::Segment;
    /// use shmlink::sync::WaitMode;
    /// # let name = format!("doc-mpmc-is-current-{}", std::process::id());
    ///
    /// let ring = Mpmc::<u64, _>::create(Segment::builder(&name), 64, WaitMode::Spin)?;
    /// assert!(ring.is_current());
    /// ring.segment().unlink()?;
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
impl<T: Pod, R: Region<Shared = MpmcHeader>> Mpmc<T, R> {
    /// `new` for any region a heap region converts into.
    pub(crate) fn new_in(capacity: usize, mode: WaitMode) -> Result<Self, BuildError>
    where
        R: From<HeapRegion<MpmcHeader>>,
    {
        const { assert!(align_of::<T>() <= 128) };
        let capacity = capacity as u64;
        check_capacity(capacity)?;
        let bytes = area_len::<T>(capacity)?;
        let region =
            HeapRegion::<MpmcHeader>::try_new(bytes).ok_or(BuildError::OutOfMemory { bytes })?;
        init::<T>(region.shared(), region.area(), capacity, mode);
        Self::from_region(Arc::new(R::from(region)))
    }

    #[cfg(not(shmlink_loom))]
    /// `create` with a fingerprint `tag` (see `configure_tagged`).
    pub(crate) fn create_tagged(
        builder: crate::segment::SegmentBuilder,
        capacity: usize,
        mode: WaitMode,
        tag: u64,
    ) -> Result<Self, BuildError>
    where
        R: From<crate::segment::ShmRegion<MpmcHeader>>,
    {
        const { assert!(align_of::<T>() <= 128) };
        let capacity = capacity as u64;
        check_capacity(capacity)?;
        let bytes = area_len::<T>(capacity)?;
        let builder = configure_tagged::<T>(builder, tag);
        let region = crate::segment::ShmRegion::<MpmcHeader>::create_with(
            builder.clone(),
            bytes,
            |h, area| init::<T>(h, area, capacity, mode),
        )
        .map_err(|e| BuildError::create(&builder, e))?;
        Self::from_region(Arc::new(R::from(region)))
    }

    #[cfg(not(shmlink_loom))]
    /// `open_or_create` with a fingerprint `tag` (see `configure_tagged`).
    pub(crate) fn open_or_create_tagged(
        builder: crate::segment::SegmentBuilder,
        capacity: usize,
        mode: WaitMode,
        tag: u64,
    ) -> Result<(Self, crate::segment::Disposition), BuildError>
    where
        R: From<crate::segment::ShmRegion<MpmcHeader>> + crate::segment::NamedRegion,
    {
        const { assert!(align_of::<T>() <= 128) };
        let capacity = capacity as u64;
        check_capacity(capacity)?;
        let bytes = area_len::<T>(capacity)?;
        let builder = configure_tagged::<T>(builder, tag);
        crate::segment::resume_or_replace(
            builder.wait_limit(),
            || {
                let (region, how) = crate::segment::ShmRegion::<MpmcHeader>::open_or_create_staged(
                    builder.clone(),
                    bytes,
                    |h, area| init::<T>(h, area, capacity, mode),
                )
                .map_err(|e| {
                    (
                        BuildError::open(&builder, e),
                        crate::segment::Disposition::Opened,
                    )
                })?;
                Self::from_region(Arc::new(R::from(region)))
                    .map(|ring| (ring, how))
                    .map_err(|e| (e, how))
            },
            |ring: &Self| ring.region.named_segment(),
            |e| BuildError::open(&builder, e),
        )
    }

    #[cfg(not(shmlink_loom))]
    /// `open` with a fingerprint `tag` (see `configure_tagged`).
    pub(crate) fn open_tagged(
        builder: crate::segment::SegmentBuilder,
        tag: u64,
    ) -> Result<Self, BuildError>
    where
        R: From<crate::segment::ShmRegion<MpmcHeader>>,
    {
        const { assert!(align_of::<T>() <= 128) };
        let builder = configure_tagged::<T>(builder, tag);
        let region = crate::segment::ShmRegion::<MpmcHeader>::open(builder.clone())
            .map_err(|e| BuildError::open(&builder, e))?;
        Self::from_region(Arc::new(R::from(region)))
    }
}

impl<T: Pod, R: Region<Shared = MpmcHeader>> Mpmc<T, R> {
    /// Wraps a region initialised for `T`, validating its configuration.
    ///
    /// # Errors
    ///
    /// [`BuildError::BadConfig`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use shmlink::ring::{BuildError, Mpmc, MpmcHeader};
    /// use shmlink::region::HeapRegion;
    ///
    /// // A zeroed header holds no ring configuration: it is rejected, not trusted.
    /// let region = Arc::new(HeapRegion::<MpmcHeader>::new(16 * 8));
    /// let err = Mpmc::<u64, _>::from_region(region).unwrap_err();
    /// assert!(matches!(err, BuildError::BadConfig(_)));
    /// ```
    pub fn from_region(region: Arc<R>) -> Result<Self, BuildError> {
        let cfg = &region.shared().config;
        // Read each field once, then validate the copies.
        let raw = super::RawConfig {
            capacity: cfg.capacity.load(Ordering::Relaxed),
            elem_size: cfg.elem_size.load(Ordering::Relaxed),
            fingerprint: cfg.elem_fingerprint.load(Ordering::Relaxed),
            slot_size: cfg.slot_size.load(Ordering::Relaxed),
            mode: cfg.mode.load(Ordering::Relaxed),
        };
        let mode = raw.validate::<T>(2, slot_size::<T>(), region.area().len())?;
        let capacity = raw.capacity;
        Ok(Self {
            region,
            capacity,
            mode,
            closed: Arc::new(crate::sync::atomic::AtomicBool::new(false)),
            _elem: PhantomData,
        })
    }

    /// Closes the ring **in this process**, for a clean shutdown: every push and pop
    /// of the producers and consumers made from this handle or its clones that waits,
    /// or would have to wait, returns `Closed` ([`PushError::Closed`] with the value,
    /// [`PopError::Closed`]) at once, and calls blocked in other threads wake up and
    /// return it. A call that can complete at once still does. Other processes, and
    /// handles opened separately by name, are not affected. A wait for an
    /// acknowledgement is not ended (see [`Spsc::close`](super::Spsc::close)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmlink::ring::{Mpmc, PopError};
    /// use shmlink::sync::WaitMode;
    ///
    /// let ring = Mpmc::<u64, _>::new(8, WaitMode::Blocking)?;
    /// let (_tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// let waiter = std::thread::spawn(move || rx.pop());
    /// std::thread::sleep(Duration::from_millis(20));
    /// ring.close();
    /// assert_eq!(waiter.join().unwrap(), Err(PopError::Closed));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) {
        // SYNC: as `Spsc::close`: SeqCst flag, then both wait words bumped and woken.
        // loom: `mpmc_close_wakes_blocked_callers` (loom-tests/mpmc.rs).
        self.closed.store(true, Ordering::SeqCst);
        let h = self.region.shared();
        h.not_empty.wake_all();
        h.not_full.wake_all();
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
    /// # use shmlink::ring::Mpmc;
    /// # use shmlink::sync::WaitMode;
    ///
    /// let ring = Mpmc::<u64, _>::new(8, WaitMode::Spin)?;
    /// assert_eq!(ring.capacity(), 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Elements in the ring right now (a snapshot, clamped to the capacity).
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Mpmc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Mpmc::<u64, _>::new(8, WaitMode::Spin)?;
    ///
    /// let mut tx = ring.producer()?;
    /// tx.try_push(1)?;
    /// tx.try_push(2)?;
    /// assert_eq!(ring.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        let h = self.region.shared();
        let head = h.head.load(Ordering::Acquire);
        let tail = h.tail.load(Ordering::Acquire);
        tail.saturating_sub(head).min(self.capacity) as usize
    }

    /// `true` if [`len`](Self::len) is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Mpmc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Mpmc::<u64, _>::new(8, WaitMode::Spin)?;
    ///
    /// assert!(ring.is_empty());
    /// ring.producer()?.try_push(1)?;
    /// assert!(!ring.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What repairs of dead participants found so far.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Mpmc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Mpmc::<u64, _>::new(8, WaitMode::Spin)?;
    ///
    /// let stats = ring.repairs();
    /// assert_eq!((stats.holes, stats.lost), (0, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn repairs(&self) -> RepairStats {
        let r = &self.region.shared().repairs;
        RepairStats {
            holes: r.holes.load(Ordering::Relaxed),
            lost: r.lost.load(Ordering::Relaxed),
        }
    }

    /// Whether the participants with `role` are gone: one registered once, and none
    /// is registered now (`thorough`: none is alive). Before the first one registers,
    /// waiters wait for it.
    fn none_with(&self, role: u64, thorough: bool) -> bool {
        let h = self.region.shared();
        if h.repairs.roles_seen.load(Ordering::Acquire) & role == 0 {
            return false;
        }
        if !thorough {
            // One load instead of a scan of every record: the count of registered
            // handles with the role (records of dead ones included, so this only sees
            // handles that were dropped; the thorough scan below sees deaths).
            return self
                .counter(role)
                .is_some_and(|c| c.load(Ordering::Acquire) == 0);
        }
        h.participants.iter().all(|p| {
            let token = p.token.load(Ordering::Acquire);
            token == 0
                || p.role.load(Ordering::Relaxed) & role == 0
                || (thorough && !token_alive(token))
        })
    }

    /// The registration counter of `role`.
    fn counter(&self, role: u64) -> Option<&AtomicU32> {
        let r = &self.region.shared().repairs;
        match role {
            ROLE_PRODUCER => Some(&r.producers),
            ROLE_CONSUMER => Some(&r.consumers),
            _ => None,
        }
    }

    /// Counts a handle of `role` in (`add`) or out.
    fn count(&self, role: u64, add: bool) {
        if let Some(c) = self.counter(role) {
            // SYNC: Release (and Acquire in `none_with`): a receiver that sees the last
            // producer counted out sees everything that producer published.
            if add {
                c.fetch_add(1, Ordering::Release);
            } else {
                // Saturating: a corrupted count must not wrap to "many".
                let _ = c.fetch_update(Ordering::Release, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
            }
        }
    }

    /// Whether every producer left (`thorough`: or died).
    pub(crate) fn producers_gone(&self, thorough: bool) -> bool {
        self.none_with(ROLE_PRODUCER, thorough)
    }

    /// The word consumers sleep on waiting for data.
    pub(crate) fn data_word(&self) -> &WaitWord {
        &self.region.shared().not_empty
    }

    /// The ring's wait mode.
    pub(crate) fn wait_mode(&self) -> WaitMode {
        self.mode
    }

    fn register(&self, role: u64) -> Result<Core<T, R>, ClaimError> {
        let me = current_token();
        let h = self.region.shared();
        let mut core = Core {
            ring: self.clone(),
            area: self.region.area(),
            index: usize::MAX,
            mask: self.capacity - 1,
        };
        for (i, p) in h.participants.iter().enumerate() {
            let cur = p.token.load(Ordering::Acquire);
            let free = cur == 0 || !token_alive(cur);
            if !free {
                continue;
            }
            if cur != 0 {
                // A dead holder's unfinished operation must be repaired first.
                let _ = core.repair_participant(p);
                if p.pending_push.load(Ordering::Acquire) != 0
                    || p.pending_pop.load(Ordering::Acquire) != 0
                {
                    continue;
                }
            }
            // SYNC: AcqRel: see the previous holder's records; publish our claim.
            if p.token
                .compare_exchange(cur, me, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                crash::point("mpmc.register", 1);
                // Count in first, then swap the role, then count the old role out: a
                // registrant killed in between leaves the count too high (the
                // thorough, liveness-based check still sees the death), never too
                // low (a live producer reported gone). Whoever swaps a role out of
                // the record counts it out, so it is counted out once.
                self.count(role, true);
                crash::point("mpmc.register", 2);
                let old = p.role.swap(role, Ordering::AcqRel);
                crash::point("mpmc.register", 3);
                self.count(old, false);
                p.pending_push.store(0, Ordering::Relaxed);
                p.pending_pop.store(0, Ordering::Relaxed);
                p.last_push.store(0, Ordering::Relaxed);
                p.ack_lost.store(0, Ordering::Relaxed);
                h.repairs.roles_seen.fetch_or(role, Ordering::Release);
                core.index = i;
                return Ok(core);
            }
        }
        Err(ClaimError::NoFreeSlot {
            max: MAX_PARTICIPANTS,
        })
    }

    /// Registers a producer.
    ///
    /// # Errors
    ///
    /// [`ClaimError::NoFreeSlot`] when [`MAX_PARTICIPANTS`] live handles exist.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Mpmc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Mpmc::<u64, _>::new(8, WaitMode::Spin)?;
    ///
    /// // Any number of producers, up to the participant table's size.
    /// let mut a = ring.producer()?;
    /// let mut b = ring.producer()?;
    /// a.try_push(1)?;
    /// b.try_push(2)?;
    /// assert_eq!(ring.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn producer(&self) -> Result<MpmcProducer<T, R>, ClaimError> {
        Ok(MpmcProducer {
            core: self.register(ROLE_PRODUCER)?,
        })
    }

    /// Registers a consumer.
    ///
    /// # Errors
    ///
    /// [`ClaimError::NoFreeSlot`] when [`MAX_PARTICIPANTS`] live handles exist.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Mpmc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Mpmc::<u64, _>::new(8, WaitMode::Spin)?;
    ///
    /// ring.producer()?.try_push(1)?;
    /// let mut a = ring.consumer()?;
    /// let mut b = ring.consumer()?;
    /// assert_eq!(a.try_pop(), Ok(1));
    /// assert!(b.try_pop().is_err()); // each element goes to one consumer
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn consumer(&self) -> Result<MpmcConsumer<T, R>, ClaimError> {
        Ok(MpmcConsumer {
            core: self.register(ROLE_CONSUMER)?,
        })
    }
}

impl<T: Pod, R: Region<Shared = MpmcHeader>> fmt::Debug for Mpmc<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mpmc")
            .field("capacity", &self.capacity)
            .field("mode", &self.mode)
            .field("len", &self.len())
            .finish()
    }
}

/// What both handle kinds share.
struct Core<T: Pod, R: Region<Shared = MpmcHeader>> {
    ring: Mpmc<T, R>,
    area: RawArea,
    index: usize,
    mask: u64,
}

/// Outcome of one push attempt.
enum TryPush {
    /// Published at this position.
    Done(u64),
    Full,
    Stuck(u64),
    /// The slot of this position holds a stamp that can never become valid.
    Corrupted(u64, u64),
}

/// Outcome of one pop attempt.
enum TryPop<T> {
    Value(T),
    Empty,
    Stuck(u64),
    /// As for push.
    Corrupted(u64, u64),
}

/// The error of a stamp `found` that fits no state of the slot of `pos`.
#[cold]
fn corrupted_stamp(pos: u64, found: u64) -> Corruption {
    let _ = pos;
    Corruption {
        what: "MPMC slot stamp",
        found,
    }
}

impl<T: Pod, R: Region<Shared = MpmcHeader>> Core<T, R> {
    #[inline(always)]
    fn header(&self) -> &MpmcHeader {
        self.ring.region.shared()
    }

    #[inline(always)]
    fn me(&self) -> &Participant {
        &self.header().participants[self.index]
    }

    #[inline(always)]
    fn stamp(&self, pos: u64) -> &AtomicU64 {
        let off = (pos & self.mask) as usize * slot_size::<T>();
        // SAFETY: (pos & mask) < capacity and the area holds capacity slots
        // (validated in from_region); slot offsets are multiples of 8; stamps are only
        // accessed atomically; the region lives as long as self (Arc in `ring`).
        unsafe { self.area.atomic_u64(off) }
    }

    #[inline(always)]
    fn value_offset(&self, pos: u64) -> usize {
        (pos & self.mask) as usize * slot_size::<T>() + super::spsc::value_offset::<T>()
    }

    fn try_push_once(&self, value: T) -> TryPush {
        let h = self.header();
        let me = self.me();
        let mut pos = h.tail.load(Ordering::Relaxed);
        let mut spins = 0u32;
        let mut frozen = 0u32;
        loop {
            // SYNC: Acquire pairs with the Release store that freed the slot (a pop's
            // `stamp = p + capacity`), so its read of the old value is done.
            let stamp = self.stamp(pos).load(Ordering::Acquire);
            if stamp == pos {
                // Announce the claim before making it, so a repairer can find it.
                me.pending_push
                    .store(pos.wrapping_add(1), Ordering::Relaxed);
                crash::point("mpmc.push", 1);
                // SYNC: SeqCst CAS (Release part publishes the announcement to anyone
                // who later reads `tail`; SeqCst orders it against the full check).
                match h.tail.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        crash::point("mpmc.push", 2);
                        // SAFETY: we own the slot of `pos` until we publish it; the
                        // value bytes are in bounds; T is Pod.
                        unsafe { self.area.write_value(self.value_offset(pos), value) };
                        // Before the publication: a repairer that frees this slot
                        // after a consumer died with it finds who waits for it.
                        me.last_push.store(pos.wrapping_add(1), Ordering::Relaxed);
                        crash::point("mpmc.push", 3);
                        // SYNC: Release pairs with a consumer's Acquire stamp load.
                        self.stamp(pos)
                            .store(pos.wrapping_add(1), Ordering::Release);
                        crash::point("mpmc.push", 4);
                        // SYNC: Release: a repairer that sees the announcement cleared
                        // also sees the publication (so its stamp CAS fails).
                        me.pending_push.store(0, Ordering::Release);
                        return TryPush::Done(pos);
                    }
                    Err(current) => {
                        me.pending_push.store(0, Ordering::Relaxed);
                        pos = current;
                    }
                }
            } else if stamp.wrapping_add(self.ring.capacity) == pos.wrapping_add(1)
                || stamp & HOLE != 0
                    && (stamp & !HOLE).wrapping_add(self.ring.capacity) == pos.wrapping_add(1)
            {
                // The slot still holds the value (or hole) of the previous lap.
                // SYNC: SeqCst fence, as in crossbeam, orders this check of `head`
                // after the stamp load.
                fence(Ordering::SeqCst);
                let head = h.head.load(Ordering::Relaxed);
                if head.wrapping_add(self.ring.capacity) == pos {
                    return TryPush::Full;
                }
                // A consumer claimed that value and has not finished: wait a bit,
                // then suspect it.
                spins += 1;
                if spins >= STUCK_SPINS {
                    return TryPush::Stuck(pos.wrapping_sub(self.ring.capacity));
                }
                crate::sync::spin_loop();
                pos = h.tail.load(Ordering::Relaxed);
            } else {
                // Another producer got there first: catch up (`tail` has moved on).
                // A stamp that fits no state while `tail` stands still is corrupted,
                // except one lap behind: the previous lap's push is still being
                // written, and the ring is full.
                spins += 1;
                crate::sync::spin_loop();
                let now = h.tail.load(Ordering::Relaxed);
                frozen = if now == pos { frozen + 1 } else { 0 };
                if frozen >= FROZEN_LOOKS {
                    if stamp.wrapping_add(self.ring.capacity) == pos {
                        return TryPush::Full;
                    }
                    return TryPush::Corrupted(pos, stamp);
                }
                if spins >= MAX_LOOKS {
                    return TryPush::Full;
                }
                pos = now;
            }
        }
    }

    fn try_pop_once(&self) -> TryPop<T> {
        let h = self.header();
        let me = self.me();
        let mut pos = h.head.load(Ordering::Relaxed);
        let mut spins = 0u32;
        let mut frozen = 0u32;
        loop {
            // SYNC: Acquire pairs with the producer's Release stamp store: the value
            // bytes are visible.
            let stamp = self.stamp(pos).load(Ordering::Acquire);
            if stamp & !HOLE == pos.wrapping_add(1) {
                me.pending_pop.store(pos.wrapping_add(1), Ordering::Relaxed);
                crash::point("mpmc.pop", 1);
                // SYNC: SeqCst CAS, as for push.
                match h.head.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        crash::point("mpmc.pop", 2);
                        let value = (stamp & HOLE == 0).then(|| {
                            // SAFETY: we own the published slot of `pos` until we free
                            // it; in bounds; T is Pod (any bytes are a valid T).
                            unsafe { self.area.read_value::<T>(self.value_offset(pos)) }
                        });
                        crash::point("mpmc.pop", 3);
                        // SYNC: Release pairs with a producer's Acquire stamp load: our
                        // read of the value happens before it is overwritten.
                        self.stamp(pos)
                            .store(pos.wrapping_add(self.ring.capacity), Ordering::Release);
                        crash::point("mpmc.pop", 4);
                        // SYNC: Release, as for push: the free happens before.
                        me.pending_pop.store(0, Ordering::Release);
                        match value {
                            Some(v) => return TryPop::Value(v),
                            // A hole: skip it and try the next position.
                            None => {
                                pos = h.head.load(Ordering::Relaxed);
                                continue;
                            }
                        }
                    }
                    Err(current) => {
                        me.pending_pop.store(0, Ordering::Relaxed);
                        pos = current;
                    }
                }
            } else if stamp == pos {
                // Not published yet: empty, or a producer is filling it.
                // SYNC: SeqCst fence, as in crossbeam, before checking `tail`.
                fence(Ordering::SeqCst);
                let tail = h.tail.load(Ordering::Relaxed);
                if tail == pos {
                    return TryPop::Empty;
                }
                spins += 1;
                if spins >= STUCK_SPINS {
                    return TryPop::Stuck(pos);
                }
                crate::sync::spin_loop();
                pos = h.head.load(Ordering::Relaxed);
            } else {
                // Another consumer got there first: catch up (bounded, as for push).
                // One lap behind (the previous lap's value is still being read) is a
                // state of the ring; anything else while `head` stands still is not.
                spins += 1;
                crate::sync::spin_loop();
                let now = h.head.load(Ordering::Relaxed);
                frozen = if now == pos { frozen + 1 } else { 0 };
                if frozen >= FROZEN_LOOKS {
                    if (stamp & !HOLE).wrapping_add(self.ring.capacity) == pos.wrapping_add(1) {
                        return TryPop::Empty;
                    }
                    return TryPop::Corrupted(pos, stamp);
                }
                if spins >= MAX_LOOKS {
                    return TryPop::Empty;
                }
                pos = now;
            }
        }
    }

    /// Looks for a dead participant that claimed `pos` (as push or pop) and repairs
    /// the slot. Returns whether anything was repaired.
    #[cold]
    fn repair_position(&self, pos: u64, pop: bool) -> bool {
        // Under loom, scanning the table at every stuck poll multiplies the states to
        // explore: only models where a participant died (crash points) do it.
        #[cfg(shmlink_loom)]
        if !crate::process::loom::any_killed() {
            return false;
        }
        let h = self.header();
        let dead = h.participants.iter().find(|p| {
            let token = p.token.load(Ordering::Acquire);
            let pending = if pop { &p.pending_pop } else { &p.pending_push };
            token != 0
                && pending.load(Ordering::Acquire) == pos.wrapping_add(1)
                && !token_alive(token)
        });
        match dead {
            Some(p) => self.repair_participant(p),
            None => false,
        }
    }

    /// Whether a live participant has announced `pending` (`pos + 1`) for a push
    /// (`pop == false`) or a pop: then that position is its to finish.
    fn live_claim(&self, pending: u64, pop: bool) -> bool {
        self.header().participants.iter().any(|p| {
            let token = p.token.load(Ordering::Acquire);
            let field = if pop { &p.pending_pop } else { &p.pending_push };
            token != 0 && field.load(Ordering::Acquire) == pending && token_alive(token)
        })
    }

    /// Finishes (or undoes) the unfinished operations of a dead participant `p`;
    /// returns whether a slot was repaired.
    ///
    /// An announcement (`pending_*`) is written before the claiming CAS, so it does not
    /// prove that its writer made the claim: a live participant may have announced the
    /// same position and won the CAS. The proof that no live participant holds the
    /// slot is the order of three reads: first the position word (`tail`/`head`,
    /// Acquire), then the live participants' announcements, then a CAS on the stamp.
    /// Whoever moved the position word past `pos` announced `pos` before its CAS
    /// (Release), so the Acquire load makes that announcement visible to the scan, or
    /// its later Release clear, which comes after the claimant finished the slot (and
    /// then the stamp CAS fails). Positions a live (or unknown) participant announced
    /// are left alone. Repairs are CASes on the stamp, so concurrent repairers cannot
    /// both act, and a repairer that dies mid-repair leaves the record for the next.
    /// (loom: `loom_mpmc_recovery`, both sides, two repairers, a dying repairer.)
    #[cold]
    fn repair_participant(&self, p: &Participant) -> bool {
        let h = self.header();
        let cap = self.ring.capacity;
        let mut repaired = false;
        let push = p.pending_push.load(Ordering::Acquire);
        if push != 0 {
            let pos = push - 1;
            // SYNC: Acquire before the scan (see above). Only if the claim was made
            // (tail moved past pos); otherwise the dead producer died before its CAS
            // and the slot is simply free.
            let claimed = h.tail.load(Ordering::Acquire) > pos;
            if claimed
                && !self.live_claim(push, false)
                && self
                    .stamp(pos)
                    .compare_exchange(
                        pos,
                        pos.wrapping_add(1) | HOLE,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                crash::point("mpmc.repair", 1);
                h.repairs.holes.fetch_add(1, Ordering::Relaxed);
                crate::sync::slow_path!(
                    INFO,
                    pos,
                    "mpmc: a dead producer's push repaired into a hole"
                );
                h.not_empty.wake_all();
                repaired = true;
            }
            let _ = p
                .pending_push
                .compare_exchange(push, 0, Ordering::AcqRel, Ordering::Relaxed);
            crash::point("mpmc.repair", 2);
        }
        let pop = p.pending_pop.load(Ordering::Acquire);
        if pop != 0 {
            let pos = pop - 1;
            // SYNC: Acquire before the scan, as for push. Only if the claim was made
            // (head moved past pos): otherwise the value is still there for the next
            // consumer.
            let claimed = h.head.load(Ordering::Acquire) > pos;
            if claimed && !self.live_claim(pop, true) {
                // SYNC: Acquire pairs with the publication: the producer's `last_push`
                // is visible.
                let stamp = self.stamp(pos).load(Ordering::Acquire);
                if stamp == pos.wrapping_add(1) {
                    // The value is lost: tell a producer waiting for its
                    // acknowledgement, before the free it will see (Release; only
                    // repairers of this same dead claim write the same word).
                    for q in &h.participants {
                        if q.last_push.load(Ordering::Relaxed) == pop {
                            q.ack_lost.store(pop, Ordering::Release);
                        }
                    }
                }
                if stamp & !HOLE == pos.wrapping_add(1)
                    && self
                        .stamp(pos)
                        .compare_exchange(
                            stamp,
                            pos.wrapping_add(cap),
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                {
                    crash::point("mpmc.repair", 3);
                    if stamp & HOLE == 0 {
                        h.repairs.lost.fetch_add(1, Ordering::Relaxed);
                        crate::sync::slow_path!(
                            WARN,
                            "mpmc: a value a dead consumer had taken is lost"
                        );
                    }
                    h.not_full.wake_all();
                    repaired = true;
                }
            }
            let _ = p
                .pending_pop
                .compare_exchange(pop, 0, Ordering::AcqRel, Ordering::Relaxed);
            crash::point("mpmc.repair", 4);
        }
        repaired
    }

    /// Whether the other side is gone: a participant with `role` registered once, and
    /// none is registered now (`thorough`: none is alive). Before the first one
    /// registers, waiters wait for it.
    fn none_with(&self, role: u64, thorough: bool) -> bool {
        self.ring.none_with(role, thorough)
    }

    fn release(&self) {
        let me = self.me();
        me.pending_push.store(0, Ordering::Relaxed);
        me.pending_pop.store(0, Ordering::Relaxed);
        let role = me.role.swap(0, Ordering::Relaxed);
        self.ring.count(role, false);
        // SYNC: Release: a new holder of this record sees it cleared.
        me.token.store(0, Ordering::Release);
        // Sleepers re-check whether the other side still has live members.
        self.header().not_empty.wake_all();
        self.header().not_full.wake_all();
    }
}

/// Why [`MpmcProducer::wait_taken`] ended without an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TakenError {
    /// The deadline passed or every consumer left.
    Wait(WaitError),
    /// A consumer took the value and died before finishing its pop.
    Lost,
}

fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// A producer handle of an MPMC ring.
///
/// # Examples
///
/// ```
/// # use shmlink::ring::Mpmc;
/// # use shmlink::sync::WaitMode;
/// let ring = Mpmc::<u64, _>::new(8, WaitMode::Blocking)?;
/// let mut rx = ring.consumer()?;
/// let (mut tx1, mut tx2) = (ring.producer()?, ring.producer()?);
/// let t1 = std::thread::spawn(move || tx1.push(1));
/// let t2 = std::thread::spawn(move || tx2.push(2));
/// assert_eq!(rx.pop()? + rx.pop()?, 3); // in whichever order they came
/// t1.join().unwrap()?;
/// t2.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MpmcProducer<T: Pod, R: Region<Shared = MpmcHeader>> {
    core: Core<T, R>,
}

impl<T: Pod, R: Region<Shared = MpmcHeader>> MpmcProducer<T, R> {
    /// Pushes `value` if there is room.
    ///
    /// # Errors
    ///
    /// `Full` (value returned; the blocking variants report `Disconnected` once every
    /// consumer is gone). A slot held up by a consumer that died mid-pop is repaired
    /// here, then the push is retried.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{Mpmc, PushError};
    /// use shmlink::sync::WaitMode;
    ///
    /// # let ring = Mpmc::<u64, _>::new(8, WaitMode::Spin)?;
    /// let mut tx = ring.producer()?;
    /// for i in 0..8 {
    ///     tx.try_push(i)?;
    /// }
    /// assert_eq!(tx.try_push(8), Err(PushError::Full(8)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_push(&mut self, value: T) -> Result<(), PushError<T>> {
        self.try_push_at(value).map(drop)
    }

    /// `try_push`, returning the position the value took (for
    /// [`wait_taken`](Self::wait_taken)).
    pub(crate) fn try_push_at(&mut self, value: T) -> Result<u64, PushError<T>> {
        loop {
            match self.core.try_push_once(value) {
                TryPush::Done(pos) => {
                    if self.core.ring.mode == WaitMode::Blocking {
                        self.core.header().not_empty.notify();
                    }
                    return Ok(pos);
                }
                TryPush::Full if self.core.ring.is_closed() => {
                    return Err(PushError::Closed(value));
                }
                TryPush::Full => return Err(PushError::Full(value)),
                TryPush::Stuck(pos) => {
                    if !self.core.repair_position(pos, true) {
                        return Err(PushError::Full(value));
                    }
                }
                TryPush::Corrupted(pos, found) => {
                    return Err(PushError::Corrupted(value, corrupted_stamp(pos, found)));
                }
            }
        }
    }

    /// Pushes, waiting for room until `timeout` passes.
    ///
    /// # Errors
    ///
    /// `Timeout`, or `Disconnected` when no live consumer is registered and the ring is
    /// full.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{Mpmc, PushError};
    /// use shmlink::sync::WaitMode;
    /// use std::time::Duration;
    ///
    /// # let ring = Mpmc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let (mut tx, _rx) = (ring.producer()?, ring.consumer()?);
    /// for i in 0..8 {
    ///     tx.push_timeout(i, Duration::from_millis(10))?;
    /// }
    /// let err = tx.push_timeout(8, Duration::from_millis(1)).unwrap_err();
    /// assert_eq!(err, PushError::Timeout(8));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push_timeout(&mut self, value: T, timeout: Duration) -> Result<(), PushError<T>> {
        self.push_until(value, deadline_after(timeout))
    }

    /// Pushes, waiting for room while a live consumer is registered.
    ///
    /// # Errors
    ///
    /// `Disconnected` when no live consumer is registered and the ring is full.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{Mpmc, PushError};
    /// use shmlink::sync::WaitMode;
    ///
    /// # let ring = Mpmc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let (mut tx, rx) = (ring.producer()?, ring.consumer()?);
    /// tx.push(1)?; // there is room: returns at once
    /// drop(rx);
    /// for i in 0..7 {
    ///     tx.push(i)?;
    /// }
    /// // Full, and no consumer is left: waiting would never end.
    /// assert_eq!(tx.push(9), Err(PushError::Disconnected(9)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push(&mut self, value: T) -> Result<(), PushError<T>> {
        self.push_until(value, None)
    }

    fn push_until(&mut self, value: T, deadline: Option<Instant>) -> Result<(), PushError<T>> {
        self.push_until_at(value, deadline).map(drop)
    }

    /// `push_until`, returning the position the value took.
    pub(crate) fn push_until_at(
        &mut self,
        value: T,
        deadline: Option<Instant>,
    ) -> Result<u64, PushError<T>> {
        let mode = self.core.ring.mode;
        let core = &self.core;
        // `Err(None)`: closed in this process.
        let mut attempt = || match core.try_push_once(value) {
            TryPush::Done(pos) => Some(Ok(pos)),
            TryPush::Full if core.ring.is_closed() => Some(Err(None)),
            TryPush::Full => None,
            TryPush::Stuck(pos) => {
                core.repair_position(pos, true);
                None
            }
            TryPush::Corrupted(pos, found) => Some(Err(Some(corrupted_stamp(pos, found)))),
        };
        let result = core
            .header()
            .not_full
            .wait_until(mode, deadline, &mut attempt, |thorough| {
                core.none_with(ROLE_CONSUMER, thorough)
            });
        match result {
            Ok(Ok(pos)) => {
                if mode == WaitMode::Blocking {
                    core.header().not_empty.notify();
                }
                Ok(pos)
            }
            Ok(Err(Some(c))) => Err(PushError::Corrupted(value, c)),
            Ok(Err(None)) => Err(PushError::Closed(value)),
            Err(WaitError::Timeout) => Err(PushError::Timeout(value)),
            Err(WaitError::Disconnected) => Err(PushError::Disconnected(value)),
        }
    }

    /// Waits until the value pushed at `pos` was popped (its slot's stamp moved on
    /// from "published"): an acknowledgement. Consumers notify `not_full` after each
    /// pop in blocking mode, which wakes this wait too. A consumer that took the value
    /// and died before finishing its pop is looked for at every liveness check (about
    /// every 10 ms); its slot is repaired and the wait ends with [`TakenError::Lost`]
    /// (the loss is counted in [`RepairStats::lost`]).
    #[cold]
    pub(crate) fn wait_taken(
        &mut self,
        pos: u64,
        deadline: Option<Instant>,
    ) -> Result<(), TakenError> {
        let core = &self.core;
        let published = pos.wrapping_add(1);
        let ready = || {
            // SYNC: Acquire pairs with the consumer's Release stamp store after its
            // read of the value, or with the repairer's CAS after its `ack_lost`.
            (core.stamp(pos).load(Ordering::Acquire) != published).then_some(())
        };
        let result =
            core.header()
                .not_full
                .wait_until(core.ring.mode, deadline, ready, |thorough| {
                    if thorough
                        && core.header().head.load(Ordering::Acquire) > pos
                        && core.stamp(pos).load(Ordering::Acquire) == published
                    {
                        // Taken but not finished: by a dead consumer?
                        core.repair_position(pos, true);
                    }
                    core.none_with(ROLE_CONSUMER, thorough)
                });
        match result {
            Ok(()) if core.me().ack_lost.load(Ordering::Acquire) == published => {
                Err(TakenError::Lost)
            }
            Ok(()) => Ok(()),
            Err(e) => Err(TakenError::Wait(e)),
        }
    }

    /// Whether every consumer left (`thorough`: or died); `false` before the first
    /// consumer registered.
    pub(crate) fn consumers_gone(&self, thorough: bool) -> bool {
        self.core.none_with(ROLE_CONSUMER, thorough)
    }

    /// The ring.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Mpmc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Mpmc::<u64, _>::new(8, WaitMode::Spin)?;
    ///
    /// let tx = ring.producer()?;
    /// assert_eq!(tx.ring().capacity(), 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ring(&self) -> &Mpmc<T, R> {
        &self.core.ring
    }
}

impl<T: Pod, R: Region<Shared = MpmcHeader>> Drop for MpmcProducer<T, R> {
    fn drop(&mut self) {
        // A killed process releases nothing (crash points in tests).
        if crash::dying() {
            return;
        }
        self.core.release();
    }
}

impl<T: Pod, R: Region<Shared = MpmcHeader>> fmt::Debug for MpmcProducer<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpmcProducer")
            .field("participant", &self.core.index)
            .finish_non_exhaustive()
    }
}

/// A consumer handle of an MPMC ring.
///
/// # Examples
///
/// ```
/// # use shmlink::ring::Mpmc;
/// # use shmlink::sync::WaitMode;
/// let ring = Mpmc::<u64, _>::new(8, WaitMode::Blocking)?;
/// let mut tx = ring.producer()?;
/// let (mut rx1, mut rx2) = (ring.consumer()?, ring.consumer()?);
/// let t1 = std::thread::spawn(move || rx1.pop());
/// let t2 = std::thread::spawn(move || rx2.pop());
/// tx.push(1)?;
/// tx.push(2)?;
/// // Each consumer got one of the two, in either order.
/// assert_eq!(t1.join().unwrap()? + t2.join().unwrap()?, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MpmcConsumer<T: Pod, R: Region<Shared = MpmcHeader>> {
    core: Core<T, R>,
}

impl<T: Pod, R: Region<Shared = MpmcHeader>> MpmcConsumer<T, R> {
    /// Pops the oldest element if there is one.
    ///
    /// # Errors
    ///
    /// `Empty`; `Disconnected` when empty and every producer dropped its handle (a
    /// producer whose process died is seen by the blocking variants). A slot held up
    /// by a producer that died mid-push is repaired (it becomes a hole that is
    /// skipped), then the pop is retried.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{Mpmc, PopError};
    /// use shmlink::sync::WaitMode;
    ///
    /// # let ring = Mpmc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// assert_eq!(rx.try_pop(), Err(PopError::Empty));
    /// tx.try_push(5)?;
    /// assert_eq!(rx.try_pop(), Ok(5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_pop(&mut self) -> Result<T, PopError> {
        loop {
            match self.core.try_pop_once() {
                TryPop::Value(v) => {
                    if self.core.ring.mode == WaitMode::Blocking {
                        self.core.header().not_full.notify();
                    }
                    return Ok(v);
                }
                TryPop::Empty if self.core.ring.is_closed() => return Err(PopError::Closed),
                TryPop::Empty => {
                    // Every producer dropped its handle: one more look for anything
                    // published just before, then report the disconnect.
                    if self.core.none_with(ROLE_PRODUCER, false) {
                        if let TryPop::Value(v) = self.core.try_pop_once() {
                            return Ok(v);
                        }
                        return Err(PopError::Disconnected);
                    }
                    return Err(PopError::Empty);
                }
                TryPop::Stuck(pos) => {
                    if !self.core.repair_position(pos, false) {
                        return Err(PopError::Empty);
                    }
                }
                TryPop::Corrupted(pos, found) => {
                    return Err(PopError::Corrupted(corrupted_stamp(pos, found)));
                }
            }
        }
    }

    /// Pops, waiting until `timeout` passes.
    ///
    /// # Errors
    ///
    /// `Timeout`, or `Disconnected` when empty and no live producer is registered.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{Mpmc, PopError};
    /// use shmlink::sync::WaitMode;
    /// use std::time::Duration;
    ///
    /// # let ring = Mpmc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// assert_eq!(rx.pop_timeout(Duration::from_millis(1)), Err(PopError::Timeout));
    /// tx.try_push(5)?;
    /// assert_eq!(rx.pop_timeout(Duration::from_secs(1)), Ok(5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pop_timeout(&mut self, timeout: Duration) -> Result<T, PopError> {
        self.pop_until(deadline_after(timeout))
    }

    /// Pops, waiting while a live producer is registered.
    ///
    /// # Errors
    ///
    /// `Disconnected` when empty and no live producer is registered.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{Mpmc, PopError};
    /// use shmlink::sync::WaitMode;
    ///
    /// let ring = Mpmc::<u64, _>::new(8, WaitMode::Blocking)?;
    /// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// let sender = std::thread::spawn(move || tx.push(7));
    /// assert_eq!(rx.pop(), Ok(7)); // waits for the other thread
    /// sender.join().unwrap()?;
    /// // Empty, and every producer is gone: nothing more will come.
    /// assert_eq!(rx.pop(), Err(PopError::Disconnected));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pop(&mut self) -> Result<T, PopError> {
        self.pop_until(None)
    }

    pub(crate) fn pop_until(&mut self, deadline: Option<Instant>) -> Result<T, PopError> {
        let mode = self.core.ring.mode;
        let core = &self.core;
        // `Err(None)`: closed in this process.
        let mut attempt = || match core.try_pop_once() {
            TryPop::Value(v) => Some(Ok(v)),
            TryPop::Empty if core.ring.is_closed() => Some(Err(None)),
            TryPop::Empty => None,
            TryPop::Stuck(pos) => {
                core.repair_position(pos, false);
                None
            }
            TryPop::Corrupted(pos, found) => Some(Err(Some(corrupted_stamp(pos, found)))),
        };
        let result = core
            .header()
            .not_empty
            .wait_until(mode, deadline, &mut attempt, |thorough| {
                core.none_with(ROLE_PRODUCER, thorough)
            });
        match result {
            Ok(Ok(v)) => {
                if mode == WaitMode::Blocking {
                    core.header().not_full.notify();
                }
                Ok(v)
            }
            Ok(Err(Some(c))) => Err(PopError::Corrupted(c)),
            Ok(Err(None)) => Err(PopError::Closed),
            Err(WaitError::Timeout) => Err(PopError::Timeout),
            Err(WaitError::Disconnected) => Err(PopError::Disconnected),
        }
    }

    /// The ring.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Mpmc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Mpmc::<u64, _>::new(8, WaitMode::Spin)?;
    ///
    /// let rx = ring.consumer()?;
    /// assert_eq!(rx.ring().capacity(), 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ring(&self) -> &Mpmc<T, R> {
        &self.core.ring
    }
}

impl<T: Pod, R: Region<Shared = MpmcHeader>> Drop for MpmcConsumer<T, R> {
    fn drop(&mut self) {
        if crash::dying() {
            return;
        }
        self.core.release();
    }
}

impl<T: Pod, R: Region<Shared = MpmcHeader>> fmt::Debug for MpmcConsumer<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpmcConsumer")
            .field("participant", &self.core.index)
            .finish_non_exhaustive()
    }
}

// SAFETY: a Core caches a RawArea into the region that its own `ring` (an Arc) keeps
// alive; the region is Send + Sync; handles are used through &mut self.
unsafe impl<T: Pod, R: Region<Shared = MpmcHeader>> Send for Core<T, R> {}

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<X: Send>() {}
    is_send::<MpmcProducer<u64, HeapRegion<MpmcHeader>>>();
    let _ = token_pid(0);
}

/// What `shmlink inspect` shows of an MPMC ring (see
/// [`ring_status`](super::ring_status)): registered participants by role, with
/// their processes' liveness.
#[cfg(not(shmlink_loom))]
pub(crate) fn status_of(h: &MpmcHeader) -> super::RingStatus {
    let (mut producers, mut consumers) = (Vec::new(), Vec::new());
    for p in &h.participants {
        let token = p.token.load(Ordering::Relaxed);
        if token == 0 {
            continue;
        }
        let holder = super::RoleHolder {
            pid: token_pid(token),
            liveness: crate::process::liveness(token),
        };
        let role = p.role.load(Ordering::Relaxed);
        if role & ROLE_PRODUCER != 0 {
            producers.push(holder);
        }
        if role & ROLE_CONSUMER != 0 {
            consumers.push(holder);
        }
    }
    super::RingStatus {
        capacity: h.config.capacity.load(Ordering::Relaxed),
        head: h.head.load(Ordering::Relaxed),
        tail: h.tail.load(Ordering::Relaxed),
        mode: WaitMode::from_code(h.config.mode.load(Ordering::Relaxed)),
        producers,
        consumers,
        waiting_for_data: h.not_empty.sleepers(),
        waiting_for_space: h.not_full.sleepers(),
        holes: h.repairs.holes.load(Ordering::Relaxed),
        lost: h.repairs.lost.load(Ordering::Relaxed),
    }
}

//! Two frame rings in one region, one per direction: a bidirectional link between two
//! ends (what a shared-memory transport connection is made of).
//!
//! The region's control block is a [`DuplexHeader`] (two [`SpscHeader`]s); its area
//! is split in two halves, each the word area of one [`FrameRing`]. End
//! [`End::A`] sends on ring 0 and receives on ring 1; [`End::B`] the other way round.
//! Each ring keeps its own roles, so a dead end is seen by the other as a
//! disconnected peer, exactly as with a single frame ring.

use core::fmt;
use std::sync::Arc;

use super::error::{BuildError, ClaimError};
use super::frame::{
    FrameConsumer, FrameProducer, FrameRing, check_frame_sizes, frame_area_len, init_frame_header,
};
use super::spsc::SpscHeader;
use crate::region::{AREA_ALIGN, HeapRegion, RawArea, Region, ShmSafe};
use crate::sync::WaitMode;

/// The control block of a [`Duplex`]: one ring header per direction.
///
/// # Examples
///
/// ```
/// use shmlink::ring::DuplexHeader;
///
/// assert_eq!(size_of::<DuplexHeader>(), 2 * 768);
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct DuplexHeader {
    sides: [SpscHeader; 2],
}

const _: () = assert!(
    size_of::<DuplexHeader>() == 2 * size_of::<SpscHeader>()
        && align_of::<DuplexHeader>() == align_of::<SpscHeader>()
);

// SAFETY: repr(C) array of ShmSafe headers (atomics only), no pointers, valid for any
// bit pattern.
unsafe impl ShmSafe for DuplexHeader {
    const TYPE_NAME: &'static str = "shmlink::ring::DuplexHeader";
    const VERSION: u32 = 1;
    fn new_zeroed() -> Self {
        Self {
            sides: [SpscHeader::new_zeroed(), SpscHeader::new_zeroed()],
        }
    }
}

/// One direction of a [`Duplex`]: a [`Region`] whose control block is one of the two
/// ring headers and whose area is one half of the duplex area.
///
/// # Examples
///
/// ```
/// use shmlink::ring::{Duplex, End};
/// use shmlink::sync::WaitMode;
///
/// let link = Duplex::new(4096, 512, WaitMode::Spin)?;
/// // Each direction is an ordinary frame ring over a `Half` region.
/// assert_eq!(link.ring(0).max_frame(), 512);
/// assert_eq!(link.ring(1).capacity_bytes(), 4096);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Half<R: Region<Shared = DuplexHeader>> {
    region: Arc<R>,
    side: usize,
    area: RawArea,
}

// SAFETY: `shared` is a field of the parent's control block and `area` a checked
// sub-range of the parent's area (disjoint from the other half's, 128-aligned); both
// live as long as the parent region, which `self.region` keeps alive.
unsafe impl<R: Region<Shared = DuplexHeader>> Region for Half<R> {
    type Shared = SpscHeader;

    fn shared(&self) -> &SpscHeader {
        &self.region.shared().sides[self.side]
    }

    fn area(&self) -> RawArea {
        self.area
    }
}

impl<R: Region<Shared = DuplexHeader>> fmt::Debug for Half<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Half")
            .field("side", &self.side)
            .field("area_len", &self.area.len())
            .finish()
    }
}

/// Which end of a [`Duplex`] a process plays.
///
/// # Examples
///
/// ```
/// use shmlink::ring::End;
///
/// assert_eq!(End::A.peer(), End::B);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Sends on ring 0, receives on ring 1 (by convention, whoever created the link).
    A,
    /// Sends on ring 1, receives on ring 0.
    B,
}

impl End {
    /// The other end.
    pub fn peer(self) -> End {
        match self {
            End::A => End::B,
            End::B => End::A,
        }
    }

    fn sends_on(self) -> usize {
        match self {
            End::A => 0,
            End::B => 1,
        }
    }
}

/// Bytes of one half's area for `slots` words, rounded up so the second half starts
/// aligned.
const fn half_len(slots: usize) -> usize {
    frame_area_len(slots).next_multiple_of(AREA_ALIGN)
}

/// Two frame rings in region `R`, one per direction.
///
/// # Examples
///
/// ```
/// use shmlink::ring::{Duplex, End};
/// use shmlink::sync::WaitMode;
///
/// let link = Duplex::new(4096, 512, WaitMode::Blocking)?;
/// let (mut a_tx, mut a_rx) = link.end(End::A)?;
/// let (mut b_tx, mut b_rx) = link.end(End::B)?;
/// let mut buf = Vec::new();
/// a_tx.try_send(b"ping")?;
/// b_rx.try_recv(&mut buf)?;
/// assert_eq!(buf, b"ping");
/// b_tx.try_send(b"pong")?;
/// a_rx.try_recv(&mut buf)?;
/// assert_eq!(buf, b"pong");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Duplex<R: Region<Shared = DuplexHeader>> {
    region: Arc<R>,
    rings: [FrameRing<Half<R>>; 2],
}

/// The sending and receiving ends one side of a [`Duplex`] holds.
pub type EndPair<R> = (FrameProducer<Half<R>>, FrameConsumer<Half<R>>);

impl Duplex<HeapRegion<DuplexHeader>> {
    /// A duplex link on the heap, each direction a frame ring of `capacity_bytes` (a
    /// power of two) for frames of at most `max_frame` bytes.
    ///
    /// # Errors
    ///
    /// As [`FrameRing::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::Duplex;
    /// use shmlink::sync::WaitMode;
    ///
    /// assert!(Duplex::new(4096, 256, WaitMode::Spin).is_ok());
    /// assert!(Duplex::new(4000, 256, WaitMode::Spin).is_err());
    /// ```
    pub fn new(
        capacity_bytes: usize,
        max_frame: usize,
        mode: WaitMode,
    ) -> Result<Self, BuildError> {
        Self::new_in(capacity_bytes, max_frame, mode)
    }
}

/// The kind and fingerprint of a duplex segment.
#[cfg(not(shmlink_loom))]
fn configure(builder: crate::segment::SegmentBuilder) -> crate::segment::SegmentBuilder {
    builder
        .kind(crate::segment::Kind::Duplex)
        .type_name_default(<DuplexHeader as crate::region::ShmSafe>::TYPE_NAME)
        .fingerprint(crate::region::fingerprint::<DuplexHeader>())
}

#[cfg(not(shmlink_loom))]
impl Duplex<crate::segment::ShmRegion<DuplexHeader>> {
    /// Creates a duplex link in the named segment `builder` describes.
    ///
    /// # Errors
    ///
    /// As [`Duplex::new`], or [`BuildError::Create`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{Duplex, End};
    /// use shmlink::sync::WaitMode;
    /// use shmlink::segment::Segment;
    /// # let name = format!("doc-duplex-create-{}", std::process::id());
    ///
    /// let link = Duplex::create(Segment::builder(&name).unlink_on_drop(true), 4096, 512, WaitMode::Blocking)?;
    /// let (mut tx, _rx) = link.end(End::A)?;
    /// tx.try_send(b"hello")?;
    ///
    /// // Another process opens it by name and plays the other end.
    /// let other = Duplex::open(Segment::builder(&name))?;
    /// let (_tx, mut rx) = other.end(End::B)?;
    /// let mut buf = Vec::new();
    /// rx.try_recv(&mut buf)?;
    /// assert_eq!(buf, b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(
        builder: crate::segment::SegmentBuilder,
        capacity_bytes: usize,
        max_frame: usize,
        mode: WaitMode,
    ) -> Result<Self, BuildError> {
        Self::create_in(builder, capacity_bytes, max_frame, mode)
    }

    /// Opens the duplex link in the named segment `builder` describes; both ring
    /// configurations are validated.
    ///
    /// # Errors
    ///
    /// [`BuildError::Open`] (e.g. `KindMismatch` for a segment of another kind) or
    /// [`BuildError::BadConfig`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{BuildError, Duplex, FrameRing};
    /// use shmlink::sync::WaitMode;
    /// use shmlink::segment::Segment;
    /// # let name = format!("doc-duplex-open-{}", std::process::id());
    ///
    /// let _ring = FrameRing::create(Segment::builder(&name).unlink_on_drop(true), 4096, 256, WaitMode::Spin)?;
    /// // A frame ring is not a duplex link.
    /// assert!(matches!(Duplex::open(Segment::builder(&name)), Err(BuildError::Open { error: _, .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(builder: crate::segment::SegmentBuilder) -> Result<Self, BuildError> {
        Self::open_in(builder)
    }

    /// Opens the duplex, or creates it if the name holds none; one left stale by a
    /// crash is resumed with the frames committed to either ring when its capacity
    /// and largest frame are these, and replaced otherwise (as
    /// [`Spsc::open_or_create`](super::Spsc::open_or_create)). A live one with another
    /// largest frame is [`BuildError::Mismatch`].
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create) and [`open`](Self::open).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::Duplex;
    /// use shmlink::segment::{Disposition, Segment};
    /// use shmlink::sync::WaitMode;
    /// # let name = format!("doc-duplex-open-or-create-{}", std::process::id());
    ///
    /// let builder = Segment::builder(&name).unlink_on_drop(true);
    /// let (_a, how) = Duplex::open_or_create(builder.clone(), 4096, 256, WaitMode::Blocking)?;
    /// assert_eq!(how, Disposition::Created);
    /// let (_b, how) = Duplex::open_or_create(builder, 4096, 256, WaitMode::Blocking)?;
    /// assert_eq!(how, Disposition::Opened);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_or_create(
        builder: crate::segment::SegmentBuilder,
        capacity_bytes: usize,
        max_frame: usize,
        mode: WaitMode,
    ) -> Result<(Self, crate::segment::Disposition), BuildError> {
        let slots = check_frame_sizes(capacity_bytes, max_frame)?;
        let builder = configure(builder);
        crate::segment::resume_or_replace(
            builder.wait_limit(),
            || {
                let (region, how) =
                    crate::segment::ShmRegion::<DuplexHeader>::open_or_create_staged(
                        builder.clone(),
                        2 * half_len(slots),
                        |h, _| {
                            for side in &h.sides {
                                init_frame_header(side, capacity_bytes, max_frame, mode);
                            }
                        },
                    )
                    .map_err(|e| {
                        (
                            BuildError::open(&builder, e),
                            crate::segment::Disposition::Opened,
                        )
                    })?;
                match Self::from_region(Arc::new(region)) {
                    Ok(d) if d.max_frame() == max_frame => Ok((d, how)),
                    Ok(d) => Err((
                        BuildError::Mismatch {
                            what: "largest frame",
                            expected: max_frame as u64,
                            found: d.max_frame() as u64,
                        },
                        how,
                    )),
                    Err(e) => Err((e, how)),
                }
            },
            |d: &Self| Some(d.segment()),
            |e| BuildError::open(&builder, e),
        )
    }

    /// The segment the link lives in.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::Duplex;
    /// use shmlink::sync::WaitMode;
    /// use shmlink::segment::{Kind, Segment};
    /// # let name = format!("doc-duplex-segment-{}", std::process::id());
    ///
    /// let link = Duplex::create(Segment::builder(&name).unlink_on_drop(true), 4096, 256, WaitMode::Spin)?;
    /// assert_eq!(link.segment().kind(), Some(Kind::Duplex));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn segment(&self) -> &crate::segment::Segment {
        self.region.segment()
    }
}

#[cfg(not(shmlink_loom))]
impl Duplex<crate::segment::AnyRegion<DuplexHeader>> {
    /// The segment the link lives in, if it is named.
    pub(crate) fn segment(&self) -> Option<&crate::segment::Segment> {
        self.region.segment()
    }
}

/// Constructors for any region that a heap or named region converts into (the
/// public `new`, `create` and `open` are these, for one region type each).
impl<R: Region<Shared = DuplexHeader>> Duplex<R> {
    /// `new` for any region a heap region converts into.
    pub(crate) fn new_in(
        capacity_bytes: usize,
        max_frame: usize,
        mode: WaitMode,
    ) -> Result<Self, BuildError>
    where
        R: From<HeapRegion<DuplexHeader>>,
    {
        let slots = check_frame_sizes(capacity_bytes, max_frame)?;
        let area = 2 * half_len(slots);
        let region = HeapRegion::<DuplexHeader>::try_new(area)
            .ok_or(BuildError::OutOfMemory { bytes: area })?;
        for h in &region.shared().sides {
            init_frame_header(h, capacity_bytes, max_frame, mode);
        }
        Self::from_region(Arc::new(R::from(region)))
    }

    /// `create` for any region a named region converts into.
    #[cfg(not(shmlink_loom))]
    pub(crate) fn create_in(
        builder: crate::segment::SegmentBuilder,
        capacity_bytes: usize,
        max_frame: usize,
        mode: WaitMode,
    ) -> Result<Self, BuildError>
    where
        R: From<crate::segment::ShmRegion<DuplexHeader>>,
    {
        let slots = check_frame_sizes(capacity_bytes, max_frame)?;
        let builder = configure(builder);
        let region = crate::segment::ShmRegion::<DuplexHeader>::create_with(
            builder.clone(),
            2 * half_len(slots),
            |h, _| {
                for side in &h.sides {
                    init_frame_header(side, capacity_bytes, max_frame, mode);
                }
            },
        )
        .map_err(|e| BuildError::create(&builder, e))?;
        Self::from_region(Arc::new(R::from(region)))
    }

    /// `open` for any region a named region converts into.
    #[cfg(not(shmlink_loom))]
    pub(crate) fn open_in(builder: crate::segment::SegmentBuilder) -> Result<Self, BuildError>
    where
        R: From<crate::segment::ShmRegion<DuplexHeader>>,
    {
        let builder = configure(builder);
        let region = crate::segment::ShmRegion::<DuplexHeader>::open(builder.clone())
            .map_err(|e| BuildError::open(&builder, e))?;
        Self::from_region(Arc::new(R::from(region)))
    }
}

impl<R: Region<Shared = DuplexHeader>> Duplex<R> {
    /// Wraps a region whose two headers hold frame ring configurations, validating
    /// both and splitting the area between them.
    ///
    /// # Errors
    ///
    /// [`BuildError::BadConfig`] if either header holds no valid frame ring or the
    /// area cannot hold both.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use shmlink::ring::{BuildError, Duplex, DuplexHeader};
    /// use shmlink::region::HeapRegion;
    ///
    /// let zeroed = Arc::new(HeapRegion::<DuplexHeader>::new(8192));
    /// assert!(matches!(Duplex::from_region(zeroed), Err(BuildError::BadConfig(_))));
    /// ```
    pub fn from_region(region: Arc<R>) -> Result<Self, BuildError> {
        let area = region.area();
        let bad = |found: usize| {
            BuildError::BadConfig(super::error::Corruption {
                what: "duplex area length",
                found: found as u64,
            })
        };
        // Each half gets the same share: the larger ring decides nothing, the area
        // does. Both configurations are then validated against their half.
        let half = (area.len() / 2) / AREA_ALIGN * AREA_ALIGN;
        if half == 0 {
            return Err(bad(area.len()));
        }
        let make = |side: usize| -> Result<FrameRing<Half<R>>, BuildError> {
            let sub = area.sub(side * half, half).map_err(|_| bad(area.len()))?;
            FrameRing::from_region(Arc::new(Half {
                region: region.clone(),
                side,
                area: sub,
            }))
        };
        let rings = [make(0)?, make(1)?];
        Ok(Self { region, rings })
    }

    /// The frame ring of direction `index` (0: from end A to end B, 1: back).
    ///
    /// # Panics
    ///
    /// If `index > 1`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::Duplex;
    /// use shmlink::sync::WaitMode;
    ///
    /// let link = Duplex::new(4096, 256, WaitMode::Spin)?;
    /// assert_eq!(link.ring(0).capacity_bytes(), 4096);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ring(&self, index: usize) -> &FrameRing<Half<R>> {
        &self.rings[index]
    }

    /// Longest frame in either direction.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::Duplex;
    /// use shmlink::sync::WaitMode;
    ///
    /// assert_eq!(Duplex::new(4096, 256, WaitMode::Spin)?.max_frame(), 256);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_frame(&self) -> usize {
        self.rings[0].max_frame().min(self.rings[1].max_frame())
    }

    /// Claims the roles of `end`: the producer of its outgoing ring and the consumer
    /// of its incoming one.
    ///
    /// # Errors
    ///
    /// [`ClaimError::Taken`] while a live process holds either role (nothing stays
    /// claimed then).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{ClaimError, Duplex, End};
    /// use shmlink::sync::WaitMode;
    ///
    /// let link = Duplex::new(4096, 256, WaitMode::Spin)?;
    /// let a = link.end(End::A)?;
    /// assert!(matches!(link.end(End::A), Err(ClaimError::Taken { .. })));
    /// drop(a);
    /// assert!(link.end(End::A).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn end(&self, end: End) -> Result<EndPair<R>, ClaimError> {
        let out = end.sends_on();
        let tx = self.rings[out].producer()?;
        let rx = self.rings[1 - out].consumer()?;
        Ok((tx, rx))
    }
}

impl<R: Region<Shared = DuplexHeader>> Clone for Duplex<R> {
    fn clone(&self) -> Self {
        Self {
            region: self.region.clone(),
            rings: self.rings.clone(),
        }
    }
}

impl<R: Region<Shared = DuplexHeader>> fmt::Debug for Duplex<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Duplex")
            .field("max_frame", &self.max_frame())
            .field("capacity_bytes", &self.rings[0].capacity_bytes())
            .finish_non_exhaustive()
    }
}

//! [`ShmRegion`]: a [`Region`] in a named segment.

use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

use super::error::{CreateError, OpenError};
use super::header::Kind;
use super::region::{RawArea, Region, ShmSafe, area_offset, fingerprint};
use super::shm::{Disposition, Segment, SegmentBuilder};

/// A [`Region`] in a named segment: a `T` control block at the start of the payload,
/// then a byte area of a length fixed at creation.
///
/// The same algorithm code that runs on a [`HeapRegion`](super::HeapRegion) runs on
/// this, across processes.
///
/// # Examples
///
/// ```
/// use shmlink::segment::{Region, Segment, ShmRegion};
/// use shmlink::sync::atomic::{AtomicU64, Ordering};
///
/// # let name = format!("doc-region-{}", std::process::id());
/// let a = ShmRegion::<AtomicU64>::create(Segment::builder(&name).unlink_on_drop(true), 0)?;
/// let b = ShmRegion::<AtomicU64>::open(Segment::builder(&name))?; // another process, usually
/// a.shared().store(42, Ordering::Release);
/// assert_eq!(b.shared().load(Ordering::Acquire), 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ShmRegion<T: ShmSafe> {
    segment: Segment,
    area_len: usize,
    _shared: PhantomData<T>,
}

impl<T: ShmSafe> ShmRegion<T> {
    /// Fills in kind ([`Kind::Typed`] unless the builder set another) and fingerprint
    /// (of `T` unless set).
    fn configure(builder: SegmentBuilder, area_len: Option<usize>) -> SegmentBuilder {
        let mut b = builder.typed_defaults(Kind::Typed, fingerprint::<T>());
        if let Some(len) = area_len {
            b = b.payload_len((area_offset::<T>() as u64).saturating_add(len as u64));
        }
        b
    }

    /// Creates the segment configured by `builder` with a zeroed `T` and an area of
    /// `area_len` bytes.
    ///
    /// # Errors
    ///
    /// As [`SegmentBuilder::create`].
    pub fn create(builder: SegmentBuilder, area_len: usize) -> Result<Self, CreateError> {
        Self::create_with(builder, area_len, |_, _| ())
    }

    /// Like [`create`](Self::create), running `init` on the control block and the area
    /// before any other process can open the segment.
    ///
    /// # Errors
    ///
    /// As [`SegmentBuilder::create`].
    pub fn create_with(
        builder: SegmentBuilder,
        area_len: usize,
        init: impl FnOnce(&T, RawArea),
    ) -> Result<Self, CreateError> {
        let segment = Self::configure(builder, Some(area_len))
            .create_with(|seg| init(shared_of::<T>(seg), area_of::<T>(seg, area_len)))?;
        Ok(Self {
            segment,
            area_len,
            _shared: PhantomData,
        })
    }

    /// Opens the segment configured by `builder` and checks that it holds a `T`.
    ///
    /// # Errors
    ///
    /// As [`SegmentBuilder::open`]; [`OpenError::SizeMismatch`] if the payload cannot
    /// hold a `T`.
    pub fn open(builder: SegmentBuilder) -> Result<Self, OpenError> {
        Self::from_segment(Self::configure(builder, None).open()?)
    }

    /// Opens the segment, or creates it with an area of `area_len` bytes.
    ///
    /// # Errors
    ///
    /// As [`SegmentBuilder::open_or_create`].
    pub fn open_or_create(
        builder: SegmentBuilder,
        area_len: usize,
    ) -> Result<(Self, Disposition), OpenError> {
        let (segment, how) = Self::configure(builder, Some(area_len)).open_or_create()?;
        Ok((Self::from_segment(segment)?, how))
    }

    fn from_segment(segment: Segment) -> Result<Self, OpenError> {
        let offset = area_offset::<T>();
        let area_len =
            segment
                .payload_len()
                .checked_sub(offset)
                .ok_or(OpenError::SizeMismatch {
                    what: "payload length",
                    expected: offset as u64,
                    found: segment.payload_len() as u64,
                })?;
        Ok(Self {
            segment,
            area_len,
            _shared: PhantomData,
        })
    }

    /// The underlying segment.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Unwraps the underlying segment.
    pub fn into_segment(self) -> Segment {
        self.segment
    }
}

/// The `T` at the start of `seg`'s payload.
///
/// Callers guarantee `seg.payload_len() >= area_offset::<T>()` (checked in
/// `from_segment`, set by `configure` on create).
fn shared_of<T: ShmSafe>(seg: &Segment) -> &T {
    debug_assert!(seg.payload_len() >= area_offset::<T>());
    // SAFETY: the payload is 128-byte aligned (align_of::<T>() <= 128 by the ShmSafe
    // contract) and holds at least area_offset::<T>() >= size_of::<T>() bytes, mapped
    // for as long as `seg` lives; T is ShmSafe (valid for every bit pattern, all
    // interior-mutable), so a shared reference over memory that other processes write
    // is sound.
    unsafe { &*seg.payload().as_ptr().cast::<T>() }
}

/// The area of `area_len` bytes behind the `T` in `seg`'s payload.
///
/// Callers guarantee `area_offset::<T>() + area_len <= seg.payload_len()`.
fn area_of<T: ShmSafe>(seg: &Segment, area_len: usize) -> RawArea {
    let payload = seg.payload();
    let ptr = payload
        .range(area_offset::<T>(), area_len)
        .expect("area inside the payload (checked when the region was built)");
    // SAFETY: ptr is inside a live mapping, hence non-null; it is 128-aligned because
    // the payload is and area_offset is a multiple of 128; area_len bytes follow it
    // inside the payload (range checked above); the mapping lives as long as `seg`.
    unsafe { RawArea::new(NonNull::new_unchecked(ptr), area_len) }
}

// SAFETY: shared() and area() come from shared_of/area_of, whose bounds hold by
// construction (create sizes the payload as area_offset + area_len; from_segment checks
// payload_len >= area_offset and derives area_len from it); both live as long as the
// segment mapping owned by self, and the area is 128-aligned.
unsafe impl<T: ShmSafe> Region for ShmRegion<T> {
    type Shared = T;

    fn shared(&self) -> &T {
        shared_of::<T>(&self.segment)
    }

    fn area(&self) -> RawArea {
        area_of::<T>(&self.segment, self.area_len)
    }
}

impl<T: ShmSafe> fmt::Debug for ShmRegion<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmRegion")
            .field("type", &T::TYPE_NAME)
            .field("segment", &self.segment)
            .field("area_len", &self.area_len)
            .finish()
    }
}

//! [`ShmRegion`]: a [`Region`] in a named segment.

use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

use super::error::{CreateError, OpenError};
use super::header::Kind;
use super::{Disposition, Segment, SegmentBuilder};
use crate::region::{RawArea, Region, ShmSafe, area_offset, fingerprint};

/// A [`Region`] in a named segment: a `T` control block at the start of the payload,
/// then a byte area of a length fixed at creation.
///
/// The same algorithm code that runs on a [`HeapRegion`](crate::region::HeapRegion) runs on
/// this, across processes.
///
/// # Examples
///
/// ```
/// use shmlink::region::Region;
/// use shmlink::segment::{Segment, ShmRegion};
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
        let mut b = builder
            .typed_defaults(Kind::Typed, fingerprint::<T>())
            .type_name_default(T::TYPE_NAME);
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
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{Kind, Segment, ShmRegion};
    /// use shmlink::region::Region;
    /// use shmlink::sync::atomic::AtomicU64;
    ///
    /// # let name = format!("doc-region-create-{}", std::process::id());
    /// let builder = Segment::builder(&name).unlink_on_drop(true);
    /// let region = ShmRegion::<AtomicU64>::create(builder, 1024)?;
    /// assert_eq!(region.area().len(), 1024);
    /// assert_eq!(region.segment().kind(), Some(Kind::Typed));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(builder: SegmentBuilder, area_len: usize) -> Result<Self, CreateError> {
        Self::create_with(builder, area_len, |_, _| ())
    }

    /// Like [`create`](Self::create), running `init` on the control block and the area
    /// before any other process can open the segment.
    ///
    /// # Errors
    ///
    /// As [`SegmentBuilder::create`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::Region;
    /// use shmlink::segment::{Segment, ShmRegion};
    /// use shmlink::sync::atomic::{AtomicU64, Ordering};
    ///
    /// # let name = format!("doc-region-create-with-{}", std::process::id());
    /// let builder = Segment::builder(&name).unlink_on_drop(true);
    /// let _a = ShmRegion::<AtomicU64>::create_with(builder, 64, |counter, area| {
    ///     counter.store(1, Ordering::Relaxed);
    ///     // SAFETY: not published yet, so no other process can reach the area.
    ///     unsafe { area.write(0, b"init").unwrap() };
    /// })?;
    /// let b = ShmRegion::<AtomicU64>::open(Segment::builder(&name))?;
    /// assert_eq!(b.shared().load(Ordering::Acquire), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{OpenError, Segment, ShmRegion};
    /// use shmlink::region::Region;
    /// use shmlink::sync::atomic::{AtomicU32, AtomicU64};
    ///
    /// # let name = format!("doc-region-open-{}", std::process::id());
    /// let _a = ShmRegion::<AtomicU64>::create(Segment::builder(&name).unlink_on_drop(true), 256)?;
    /// let b = ShmRegion::<AtomicU64>::open(Segment::builder(&name))?;
    /// assert_eq!(b.area().len(), 256); // learnt from the segment
    /// // A different control-block type is refused.
    /// let err = ShmRegion::<AtomicU32>::open(Segment::builder(&name)).unwrap_err();
    /// assert!(matches!(err, OpenError::TypeMismatch { .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(builder: SegmentBuilder) -> Result<Self, OpenError> {
        Self::from_segment(Self::configure(builder, None).open()?)
    }

    /// [`open`](Self::open) for status readers: a stale segment is read as the crash
    /// left it (see [`SegmentBuilder::open_inspecting`]).
    pub(crate) fn open_inspecting(builder: SegmentBuilder) -> Result<Self, OpenError> {
        Self::from_segment(Self::configure(builder, None).open_inspecting()?)
    }

    /// Opens the segment, or creates it with an area of `area_len` bytes.
    ///
    /// # Errors
    ///
    /// As [`SegmentBuilder::open_or_create`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{Disposition, Segment, ShmRegion};
    /// use shmlink::sync::atomic::AtomicU64;
    ///
    /// # let name = format!("doc-region-open-or-create-{}", std::process::id());
    /// let builder = Segment::builder(&name).unlink_on_drop(true);
    /// let (_a, how) = ShmRegion::<AtomicU64>::open_or_create(builder.clone(), 256)?;
    /// assert_eq!(how, Disposition::Created);
    /// let (_b, how) = ShmRegion::<AtomicU64>::open_or_create(builder, 256)?;
    /// assert_eq!(how, Disposition::Opened);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_or_create(
        builder: SegmentBuilder,
        area_len: usize,
    ) -> Result<(Self, Disposition), OpenError> {
        let (segment, how) = Self::configure(builder, Some(area_len)).open_or_create()?;
        Ok((Self::from_segment(segment)?, how))
    }

    /// `open_or_create` for the objects built on a region, with `init` run on a
    /// region this call creates: a [`Disposition::Resumed`] region is still held
    /// exclusively, for the object to check (see
    /// [`resume_or_replace`](super::builder::resume_or_replace)).
    pub(crate) fn open_or_create_staged(
        builder: SegmentBuilder,
        area_len: usize,
        mut init: impl FnMut(&T, RawArea),
    ) -> Result<(Self, Disposition), OpenError> {
        let (segment, how) =
            Self::configure(builder, Some(area_len)).open_or_create_staged(&mut |seg| {
                init(shared_of::<T>(seg), area_of::<T>(seg, area_len))
            })?;
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
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{Segment, ShmRegion};
    /// use shmlink::region::area_offset;
    /// use shmlink::sync::atomic::AtomicU64;
    ///
    /// # let name = format!("doc-region-segment-{}", std::process::id());
    /// let builder = Segment::builder(&name).unlink_on_drop(true);
    /// let region = ShmRegion::<AtomicU64>::create(builder, 256)?;
    /// // The payload holds the control block, padded to 128 bytes, then the area.
    /// assert_eq!(region.segment().payload_len(), area_offset::<AtomicU64>() + 256);
    /// assert_eq!(region.segment().name().as_str(), name);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Unwraps the underlying segment.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{Segment, ShmRegion};
    /// use shmlink::sync::atomic::AtomicU64;
    ///
    /// # let name = format!("doc-region-into-segment-{}", std::process::id());
    /// let builder = Segment::builder(&name).unlink_on_drop(true);
    /// let region = ShmRegion::<AtomicU64>::create(builder, 0)?;
    /// let segment = region.into_segment(); // keeps the mapping, the lock and unlink-on-drop
    /// assert!(segment.is_creator());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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

impl<T: ShmSafe> super::NamedRegion for ShmRegion<T> {
    fn named_segment(&self) -> Option<&Segment> {
        Some(&self.segment)
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

//! [`AnyRegion`]: a region on the heap or in a named segment, chosen at run time.

use core::fmt;

use crate::region::{HeapRegion, RawArea, Region, ShmSafe};

#[cfg(not(shmlink_loom))]
use super::ShmRegion;

/// A [`Region`] that is either on the heap or in a named segment, for code that
/// holds objects of both kinds in one type (a channel made by `new` or by `create`,
/// a connection in-process or across processes). Each access is one predictable
/// branch.
///
/// In loom builds only the heap variant exists.
///
/// # Examples
///
/// ```
/// use shmlink::region::{HeapRegion, Region};
/// use shmlink::segment::{AnyRegion, Segment, ShmRegion};
/// use shmlink::sync::atomic::{AtomicU64, Ordering};
/// # let name = format!("doc-any-region-{}", std::process::id());
///
/// let heap = AnyRegion::from(HeapRegion::<AtomicU64>::new(64));
/// let named = AnyRegion::from(ShmRegion::<AtomicU64>::create(
///     Segment::builder(&name).unlink_on_drop(true),
///     64,
/// )?);
/// for region in [&heap, &named] {
///     region.shared().store(1, Ordering::Relaxed);
///     assert_eq!(region.area().len(), 64);
/// }
/// assert!(named.is_named() && !heap.is_named());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
// A region is built once and kept (in an Arc, by every object); boxing the segment
// would add a pointer chase to every access for nothing.
#[allow(clippy::large_enum_variant)]
pub enum AnyRegion<T: ShmSafe> {
    /// On the heap: in-process use, loom, Miri.
    Heap(HeapRegion<T>),
    /// In a named segment, shared with other processes.
    #[cfg(not(shmlink_loom))]
    Named(ShmRegion<T>),
}

#[cfg(not(shmlink_loom))]
impl<T: ShmSafe> super::NamedRegion for AnyRegion<T> {
    fn named_segment(&self) -> Option<&super::Segment> {
        self.segment()
    }
}

impl<T: ShmSafe> AnyRegion<T> {
    /// Whether the region is in a named segment.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::HeapRegion;
    /// use shmlink::segment::AnyRegion;
    /// use shmlink::sync::atomic::AtomicU64;
    ///
    /// assert!(!AnyRegion::from(HeapRegion::<AtomicU64>::new(0)).is_named());
    /// ```
    pub fn is_named(&self) -> bool {
        match self {
            Self::Heap(_) => false,
            #[cfg(not(shmlink_loom))]
            Self::Named(_) => true,
        }
    }

    /// The segment the region lives in, if it is named.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::HeapRegion;
    /// use shmlink::segment::AnyRegion;
    /// use shmlink::sync::atomic::AtomicU64;
    ///
    /// assert!(AnyRegion::from(HeapRegion::<AtomicU64>::new(0)).segment().is_none());
    /// ```
    #[cfg(not(shmlink_loom))]
    pub fn segment(&self) -> Option<&super::Segment> {
        match self {
            Self::Heap(_) => None,
            Self::Named(r) => Some(r.segment()),
        }
    }
}

// SAFETY: both variants are Regions; this forwards to the one it holds, so their
// guarantees (a live control block and area for as long as `self`) carry over.
unsafe impl<T: ShmSafe> Region for AnyRegion<T> {
    type Shared = T;

    #[inline(always)]
    fn shared(&self) -> &T {
        match self {
            Self::Heap(r) => r.shared(),
            #[cfg(not(shmlink_loom))]
            Self::Named(r) => r.shared(),
        }
    }

    #[inline(always)]
    fn area(&self) -> RawArea {
        match self {
            Self::Heap(r) => r.area(),
            #[cfg(not(shmlink_loom))]
            Self::Named(r) => r.area(),
        }
    }
}

impl<T: ShmSafe> From<HeapRegion<T>> for AnyRegion<T> {
    fn from(r: HeapRegion<T>) -> Self {
        Self::Heap(r)
    }
}

#[cfg(not(shmlink_loom))]
impl<T: ShmSafe> From<ShmRegion<T>> for AnyRegion<T> {
    fn from(r: ShmRegion<T>) -> Self {
        Self::Named(r)
    }
}

impl<T: ShmSafe> fmt::Debug for AnyRegion<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Heap(r) => r.fmt(f),
            #[cfg(not(shmlink_loom))]
            Self::Named(r) => r.fmt(f),
        }
    }
}

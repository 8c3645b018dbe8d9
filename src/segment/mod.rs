//! Named shared-memory segments, the only code in the crate that maps memory.
//!
//! A segment is a POSIX shared-memory object `/dev/shm/shmlink.<uid>.<name>` holding a
//! [`SegmentHeader`] and a payload. One process [creates](SegmentBuilder::create) it,
//! others [open](SegmentBuilder::open) it by name; both sides check the header's magic,
//! layout version, kind, type fingerprint and sizes, and every way this can fail is an
//! [`OpenError`] or [`CreateError`].
//!
//! Algorithms do not use segments directly: they run on a
//! [`Region`](crate::region::Region), which is either a [`ShmRegion`] in a segment or a
//! [`HeapRegion`](crate::region::HeapRegion) on the heap (in-process use, loom, Miri).
//! Each object's module creates and opens its own kind by name (`Spsc::create`,
//! `Semaphore::create`, ...) through [`SegmentBuilder`] and [`ShmRegion`].
//! [`AnyRegion`] is either, chosen at run time, for code that holds objects of both
//! kinds in one type (channels, shared-memory connections).
//!
//! Liveness: every process that has a segment open holds a shared `flock` on it, which
//! the kernel releases when the process exits or is killed. A segment nobody holds,
//! whose creator died before publishing it or whose users died while attached, is
//! **stale** ([`Status::Stale`]); see [`SegmentBuilder::open`] for what `open` and
//! `open_or_create` do with it.
//!
//! In loom builds (`--cfg shmlink_loom`) only the region and header types exist: loom's
//! atomics cannot be laid over mapped bytes.

mod any;
mod error;
pub mod header;
mod name;

#[cfg(not(shmlink_loom))]
mod builder;
#[cfg(not(shmlink_loom))]
mod create;
#[cfg(not(shmlink_loom))]
mod handle;
#[cfg(not(shmlink_loom))]
mod open;
#[cfg(not(shmlink_loom))]
mod stale;
#[cfg(not(shmlink_loom))]
mod sys;
#[cfg(not(shmlink_loom))]
mod typed;

pub use any::AnyRegion;
#[cfg(not(shmlink_loom))]
pub(crate) use builder::resume_or_replace;
#[cfg(not(shmlink_loom))]
pub use builder::{DEFAULT_OPEN_TIMEOUT, Disposition, MAX_PAYLOAD, OnStale, SegmentBuilder};
pub use error::{CreateError, NameError, OpenError, OsError, StaleInfo, StaleReason};
#[cfg(not(shmlink_loom))]
pub use handle::Segment;
pub use header::{Kind, ProcessId, SegmentHeader};
pub use name::{MAX_NAME_LEN, PREFIX, SegmentName};
#[cfg(not(shmlink_loom))]
pub(crate) use stale::remove_stale_prefixed;
#[cfg(not(shmlink_loom))]
pub use stale::{SegmentInfo, Status, inspect, list, remove_idle, remove_stale, unlink};
#[cfg(not(shmlink_loom))]
pub use typed::ShmRegion;

/// A region that may be in a named segment: how an object's `open_or_create` reaches
/// the segment it resumed, whatever region type it is generic over.
#[cfg(not(shmlink_loom))]
pub(crate) trait NamedRegion {
    /// The segment, for a region in one.
    fn named_segment(&self) -> Option<&Segment>;
}

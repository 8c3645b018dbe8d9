//! # shmlink
//!
//! Fast, checked communication and synchronization between processes on one Linux
//! machine, over named shared-memory segments.
//!
//! The crate is built in layers, each using only the ones below it; the table is in
//! `docs/architecture.md` ("Layers").
//!
//! # Example
//!
//! One process creates a named segment holding a shared control block; another opens
//! it by name and sees what the first wrote.
//!
//! ```
//! use shmlink::region::{Region, ShmSafe};
//! use shmlink::segment::{Segment, ShmRegion};
//! use shmlink::sync::atomic::{AtomicU64, Ordering};
//!
//! #[repr(C)]
//! struct Board {
//!     value: AtomicU64,
//!     version: AtomicU64,
//! }
//!
//! // SAFETY: repr(C), only integer atomics, valid for any bit pattern, no pointers.
//! unsafe impl ShmSafe for Board {
//!     const TYPE_NAME: &'static str = "example::Board";
//!     fn new_zeroed() -> Self {
//!         Board { value: AtomicU64::new(0), version: AtomicU64::new(0) }
//!     }
//! }
//!
//! # let name = format!("doc-lib-{}", std::process::id());
//! // Process A.
//! let writer = ShmRegion::<Board>::create(Segment::builder(&name).unlink_on_drop(true), 0)?;
//! writer.shared().value.store(42, Ordering::Relaxed);
//! writer.shared().version.store(1, Ordering::Release);
//!
//! // Process B (here the same process, for the doctest).
//! let reader = ShmRegion::<Board>::open(Segment::builder(&name))?;
//! if reader.shared().version.load(Ordering::Acquire) == 1 {
//!     assert_eq!(reader.shared().value.load(Ordering::Relaxed), 42);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
// Loom builds leave out the mapping code and the layers above `channel`, and so the
// users of some helpers.
#![cfg_attr(shmlink_loom, allow(dead_code))]
#![warn(missing_docs)]

#[cfg(not(all(target_os = "linux", target_has_atomic = "64")))]
compile_error!("shmlink supports Linux with 64-bit atomics only");

pub mod sync;

pub mod process;
pub mod region;

pub mod segment;

pub mod lock;

pub mod ring;

pub mod channel;

#[cfg(not(shmlink_loom))]
pub mod transport;

#[cfg(not(shmlink_loom))]
pub mod rpc;

#[cfg(not(shmlink_loom))]
pub mod dlock;

/// Under loom, only the lock node's outgoing queue and wait threads, for their models.
#[cfg(shmlink_loom)]
mod dlock {
    pub(crate) mod outbox;
    pub(crate) mod tasks;
    #[cfg(test)]
    mod tests;
}

/// Under loom, only the RPC layer's in-process primitives, for their models.
#[cfg(shmlink_loom)]
mod rpc {
    pub(crate) mod handoff;
    pub(crate) mod pool;
    pub(crate) mod stop;
    #[cfg(test)]
    mod tests;
}

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

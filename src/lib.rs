//! # shmlink
//!
//! Fast, checked communication and synchronization between processes on one Linux
//! machine, over named shared-memory segments.
//!
//! The crate is built in layers; a module uses only the layers below it:
//!
//! | layer | module | what it holds |
//! |------:|--------|---------------|
//! | 0 | [`sync`] | the std/loom facade for atomics and cells; futex, semaphore, Bakery lock, seqlock |
//! | 1 | [`segment`] | named shared-memory segments and the [`Region`](segment::Region) abstraction; the only code that maps memory |
//! | 2 | [`ring`] | lock-free SPSC, MPMC, frame and duplex rings |
//! | 3 | [`channel`] | typed channels, asynchronous and synchronous send |
//! | 4 | [`transport`] | shared-memory, Unix-socket and TCP transports behind one API |
//! | 5 | [`rpc`] | request/response over any transport, services declared with [`service!`] |
//!
//! # Example
//!
//! One process creates a named segment holding a shared control block; another opens
//! it by name and sees what the first wrote.
//!
//! ```
//! use shmlink::segment::{Region, Segment, ShmRegion, ShmSafe};
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
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(not(all(target_os = "linux", target_has_atomic = "64")))]
compile_error!("shmlink supports Linux with 64-bit atomics only");

pub mod channel;
pub mod ring;
#[cfg(not(shmlink_loom))]
pub mod rpc;
pub mod segment;
pub mod sync;
#[cfg(not(shmlink_loom))]
pub mod transport;

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

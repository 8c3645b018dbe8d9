//! Locks shared between processes, each an algorithm over a
//! [`Region`](crate::region::Region) (on the heap, or in a named segment through its
//! `create`/`open`).
//!
//! - [`Semaphore`]: a counting semaphore on a futex.
//! - [`BakeryLock`] and [`BakeryMutex`]: Lamport's Bakery lock for up to
//!   [`MAX_PARTICIPANTS`] processes, which survives the death of any of them and tells
//!   the next holder ([`LockError::OwnerDied`]).
//! - [`SeqLock`]: one writer, any number of readers that never block it.
//!
//! # Examples
//!
//! ```
//! use shmlink::lock::{BakeryLock, Semaphore};
//! use shmlink::segment::Segment;
//!
//! # let name = format!("doc-lock-{}", std::process::id());
//! let sem = Semaphore::create(Segment::builder(&name).unlink_on_drop(true), 1, 1)?;
//! sem.try_acquire()?;
//! sem.release(1)?;
//! let mut lock = BakeryLock::new(2)?; // on the heap, for threads
//! assert!(lock.lock().is_ok()); // the guard unlocks when dropped
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bakery;
#[cfg(not(shmlink_loom))]
mod error;
mod semaphore;
mod seqlock;
#[cfg(all(test, shmlink_loom))]
mod tests;

pub use bakery::{
    BakeryCloser, BakeryConfigError, BakeryControl, BakeryGuard, BakeryLock, BakeryMutex,
    LockError, MAX_PARTICIPANTS, MutexGuard, Participant, SLOT_SIZE,
};
#[cfg(not(shmlink_loom))]
pub use bakery::{BakeryStatus, bakery_status};
#[cfg(not(shmlink_loom))]
pub use error::ObjectError;
#[cfg(not(shmlink_loom))]
pub(crate) use error::open_or_create_in;
pub use semaphore::{
    AcquireError, HOLDER_SLOTS, Permit, ReleaseError, Semaphore, SemaphoreConfigError,
    SemaphoreState,
};
#[cfg(not(shmlink_loom))]
pub use semaphore::{PermitHolder, SemaphoreStatus, semaphore_status};
pub use seqlock::{
    READ_TRIES, ReadError, SeqLock, SeqLockConfigError, SeqLockControl, SeqWriter, WriterTaken,
};
#[cfg(not(shmlink_loom))]
pub use seqlock::{SeqLockStatus, seqlock_status};

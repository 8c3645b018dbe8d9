//! Lock-free rings over a [`Region`](crate::region::Region), so the same code
//! runs on the heap (threads, loom, Miri) and in a named segment (processes).
//!
//! - [`spsc`]: single producer, single consumer, fixed-size [`Pod`] elements, with
//!   batches that are written or read in place and published with one store.
//! - [`frame`]: variable-length byte frames up to a maximum fixed at creation, on
//!   the SPSC ring (what channels and RPC carry serialized messages on).
//! - [`duplex`]: two frame rings in one region, one per direction (a connection of
//!   the shared-memory transport).
//! - [`mpmc`]: bounded multi-producer multi-consumer (per-slot stamps), which repairs
//!   slots left unfinished by participants that died.
//!
//! Waiting is chosen per ring ([`WaitMode`]): spin, or spin-then-sleep on a shared
//! futex with a sleepers count, so that nobody makes a system call while nobody
//! sleeps. Every wait has a deadline or ends when the peer process is gone.

#[cfg(not(shmlink_loom))]
pub mod duplex;
mod error;
pub mod frame;
pub mod mpmc;
pub mod spsc;
#[cfg(all(test, shmlink_loom))]
mod tests;

/// A ring configuration as read (once) from shared memory.
pub(crate) struct RawConfig {
    pub capacity: u64,
    pub elem_size: u64,
    pub fingerprint: u64,
    pub slot_size: u64,
    pub mode: u32,
}

impl RawConfig {
    /// Validates the copy for element type `T`, a ring whose slots are
    /// `slot_size` bytes, a capacity of at least `min_capacity`, and an area of
    /// `area_len` bytes; returns the wait mode.
    pub(crate) fn validate<T: Pod>(
        &self,
        min_capacity: u64,
        slot_size: usize,
        area_len: usize,
    ) -> Result<WaitMode, BuildError> {
        let bad = |what, found| BuildError::BadConfig(Corruption { what, found });
        let cap = self.capacity;
        if cap < min_capacity || cap > 1 << 32 || !cap.is_power_of_two() {
            return Err(bad("capacity", cap));
        }
        if self.elem_size != size_of::<T>() as u64 {
            return Err(bad("element size", self.elem_size));
        }
        if self.fingerprint != T::FINGERPRINT {
            return Err(bad("element fingerprint", self.fingerprint));
        }
        if self.slot_size != slot_size as u64 {
            return Err(bad("slot size", self.slot_size));
        }
        let mode = WaitMode::from_code(self.mode).ok_or(bad("wait mode", u64::from(self.mode)))?;
        if cap
            .checked_mul(self.slot_size)
            .is_none_or(|n| n > area_len as u64)
        {
            return Err(bad("capacity for the area", cap));
        }
        Ok(mode)
    }
}

pub(crate) use crate::region::Pod;
pub(crate) use crate::sync::WaitMode;
#[cfg(not(shmlink_loom))]
pub use duplex::{Duplex, DuplexHeader, End, EndPair, Half};
pub use error::{
    BuildError, ChunkError, ClaimError, Corruption, FrameRecvError, FrameSendError, PopError,
    PushError,
};
pub use frame::{FrameConsumer, FrameProducer, FrameRing};
pub use mpmc::{Mpmc, MpmcConsumer, MpmcHeader, MpmcProducer, RepairStats};
pub use spsc::{Consumer, Producer, ReadChunk, Spsc, SpscHeader, WriteChunk};

/// A process holding a ring role, and whether it lives.
#[cfg(not(shmlink_loom))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleHolder {
    /// Its pid.
    pub pid: u32,
    /// Whether it lives (a dead one's role can be taken over).
    pub liveness: crate::process::Liveness,
}

/// A named ring's state, read without claiming a role (what `shmlink inspect` shows).
/// Every field is a snapshot, stale as soon as it is read.
#[cfg(not(shmlink_loom))]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RingStatus {
    /// Slots (for a frame ring: 8-byte words).
    pub capacity: u64,
    /// Positions popped so far.
    pub head: u64,
    /// Positions pushed so far.
    pub tail: u64,
    /// The wait mode chosen at creation (`None`: not a valid one).
    pub mode: Option<WaitMode>,
    /// Processes holding the producer role (SPSC: at most one).
    pub producers: Vec<RoleHolder>,
    /// Processes holding the consumer role.
    pub consumers: Vec<RoleHolder>,
    /// Receivers asleep waiting for data.
    pub waiting_for_data: u32,
    /// Senders asleep waiting for room.
    pub waiting_for_space: u32,
    /// MPMC: pushes a dead producer claimed, turned into holes.
    pub holes: u64,
    /// MPMC: values a dead consumer had taken.
    pub lost: u64,
}

#[cfg(not(shmlink_loom))]
impl RingStatus {
    /// Values pushed and not yet popped.
    #[must_use]
    pub fn depth(&self) -> u64 {
        self.tail.saturating_sub(self.head).min(self.capacity)
    }
}

/// Reads the state of the ring (SPSC, MPMC or frame ring, listeners' accept queues
/// included) named `name`, without claiming a role: the segment is attached for the
/// duration of the call.
///
/// # Errors
///
/// As [`inspect`](crate::segment::inspect) and
/// [`SegmentBuilder::open`](crate::segment::SegmentBuilder::open); `WrongKind` for a
/// segment that is not one of these rings.
///
/// # Examples
///
/// ```
/// use shmlink::ring::{Spsc, ring_status};
/// use shmlink::segment::Segment;
/// use shmlink::sync::WaitMode;
/// # let name = format!("doc-ring-status-{}", std::process::id());
///
/// let ring = Spsc::<u64, _>::create(Segment::builder(&name).unlink_on_drop(true), 64, WaitMode::Blocking)?;
/// let mut tx = ring.producer()?;
/// tx.push(1)?;
/// tx.push(2)?;
/// let status = ring_status(&name)?;
/// assert_eq!((status.capacity, status.depth()), (64, 2));
/// assert_eq!(status.producers[0].pid, std::process::id());
/// assert!(status.consumers.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(not(shmlink_loom))]
pub fn ring_status(name: &str) -> Result<RingStatus, crate::segment::OpenError> {
    use crate::segment::{Kind, OpenError, Segment, ShmRegion};
    let info = crate::segment::inspect(name)?;
    let header = info.header.ok_or(OpenError::NotInitialized {
        waited: std::time::Duration::ZERO,
    })?;
    let kind = Kind::from_code(header.kind);
    let builder = Segment::builder(name).fingerprint(header.fingerprint);
    match kind {
        Some(k @ (Kind::SpscRing | Kind::FrameRing)) => {
            let region = ShmRegion::<SpscHeader>::open_inspecting(builder.kind(k))?;
            Ok(spsc::status_of(crate::region::Region::shared(&region)))
        }
        Some(k @ Kind::MpmcRing) => {
            let region = ShmRegion::<MpmcHeader>::open_inspecting(builder.kind(k))?;
            Ok(mpmc::status_of(crate::region::Region::shared(&region)))
        }
        _ => Err(OpenError::WrongKind {
            expected: Kind::SpscRing,
            found: header.kind,
        }),
    }
}

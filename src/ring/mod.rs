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
    BuildError, ChunkError, ClaimError, Corruption, PopError, PushError, RecvError, SendError,
};
pub use frame::{FrameConsumer, FrameProducer, FrameRing};
pub use mpmc::{Mpmc, MpmcConsumer, MpmcHeader, MpmcProducer, RepairStats};
pub use spsc::{Consumer, Producer, ReadChunk, Spsc, SpscHeader, WriteChunk};

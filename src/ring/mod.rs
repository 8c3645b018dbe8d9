//! Layer 2: lock-free rings over a [`Region`](crate::segment::Region), so the same code
//! runs on the heap (threads, loom, Miri) and in a named segment (processes).
//!
//! - [`spsc`]: single producer, single consumer, fixed-size [`Pod`] elements, with
//!   batches that are written or read in place and published with one store.
//! - [`frame`]: variable-length byte frames up to a maximum fixed at creation, on
//!   the SPSC ring (what channels and RPC carry serialized messages on).
//! - [`mpmc`]: bounded multi-producer multi-consumer (per-slot stamps), which repairs
//!   slots left unfinished by participants that died.
//!
//! Waiting is chosen per ring ([`WaitMode`]): spin, or spin-then-sleep on a shared
//! futex with a sleepers count, so that nobody makes a system call while nobody
//! sleeps. Every wait has a deadline or ends when the peer process is gone.

mod error;
pub mod frame;
pub mod mpmc;
mod pod;
pub mod spsc;
mod wait;

pub use error::{BuildError, ChunkError, ClaimError, Corruption, PopError, PushError};
pub use frame::{FrameConsumer, FrameProducer, FrameRing, RecvError, SendError};
pub use mpmc::{Mpmc, MpmcConsumer, MpmcHeader, MpmcProducer, RepairStats};
pub use pod::Pod;
pub use spsc::{Consumer, Producer, ReadChunk, Spsc, SpscHeader, WriteChunk};
pub use wait::{WaitMode, WaitWord};

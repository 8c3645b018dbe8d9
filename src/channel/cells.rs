//! Encoded messages on an MPMC ring: fixed-size cells of `K` words, `Mpmc<[u64; K]>`.
//!
//! A cell is a length word, then the message bytes. The cell size is the smallest
//! power of two that holds the channel's maximum message (64 B to 16 KiB), chosen at
//! creation; a push copies the whole cell, so an MPMC serde channel should be given a
//! maximum close to its messages' real size. The handles are boxed trait objects: one
//! virtual call per operation, small next to encoding a message.

use std::sync::Arc;
use std::time::Instant;

use super::codec::AckWait;
use crate::region::{HeapRegion, Region};
use crate::ring::{BuildError, ClaimError, Mpmc, MpmcConsumer, MpmcHeader, MpmcProducer};
use crate::ring::{PopError, PushError};
use crate::sync::{WaitMode, WaitWord};

#[cfg(not(shmlink_loom))]
use crate::segment::{OpenError, SegmentBuilder, ShmRegion};

/// Cell sizes in words, smallest first.
const CELL_WORDS: [usize; 9] = [8, 16, 32, 64, 128, 256, 512, 1024, 2048];

/// The largest message an MPMC serde channel carries.
pub(crate) const MAX_CELL_MESSAGE: usize = (2048 - 1) * 8;

/// A ring of cells of some size.
#[doc(hidden)]
pub trait CellRing: Send + Sync + std::fmt::Debug {
    fn sender(&self) -> Result<Box<dyn CellTx>, ClaimError>;
    fn receiver(&self) -> Result<Box<dyn CellRx>, ClaimError>;
    fn capacity(&self) -> usize;
    fn len(&self) -> usize;
    fn max_message(&self) -> usize;
    fn ready(&self, thorough: bool) -> bool;
    fn senders_gone(&self, thorough: bool) -> bool;
    fn data_word(&self) -> Option<&WaitWord>;
}

/// The sending side of a cell ring.
#[doc(hidden)]
pub trait CellTx: Send + std::fmt::Debug {
    fn try_push(&mut self, bytes: &[u8]) -> Result<u64, PushError<()>>;
    fn push_until(&mut self, bytes: &[u8], deadline: Option<Instant>)
    -> Result<u64, PushError<()>>;
    fn wait_taken(&mut self, pos: u64, deadline: Option<Instant>) -> Result<(), AckWait>;
    fn consumers_gone(&mut self, thorough: bool) -> bool;
}

/// The receiving side: copies a message's bytes into `out`.
#[doc(hidden)]
pub trait CellRx: Send + std::fmt::Debug {
    fn try_pop(&mut self, out: &mut Vec<u8>) -> Result<(), CellPopError>;
    fn pop_until(
        &mut self,
        out: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<(), CellPopError>;
}

/// A pop that failed, or popped a cell whose length word is impossible.
#[doc(hidden)]
#[derive(Debug)]
pub enum CellPopError {
    Pop(PopError),
    BadLength(u64),
}

struct Cells<const K: usize, R: Region<Shared = MpmcHeader>> {
    ring: Mpmc<[u64; K], R>,
}

impl<const K: usize, R: Region<Shared = MpmcHeader>> std::fmt::Debug for Cells<K, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cells")
            .field("cell_bytes", &(K * 8))
            .field("ring", &self.ring)
            .finish()
    }
}

fn to_cell<const K: usize>(bytes: &[u8]) -> [u64; K] {
    let mut cell = [0u64; K];
    cell[0] = bytes.len() as u64;
    for (w, chunk) in cell[1..].iter_mut().zip(bytes.chunks(8)) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        *w = u64::from_le_bytes(b);
    }
    cell
}

fn from_cell<const K: usize>(cell: &[u64; K], out: &mut Vec<u8>) -> Result<(), CellPopError> {
    // The length word comes from another process: check it before use.
    let len = cell[0];
    if len > ((K - 1) * 8) as u64 {
        return Err(CellPopError::BadLength(len));
    }
    let len = len as usize;
    out.clear();
    for w in &cell[1..1 + len.div_ceil(8)] {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.truncate(len);
    Ok(())
}

impl<const K: usize, R: Region<Shared = MpmcHeader> + 'static> CellRing for Cells<K, R> {
    fn sender(&self) -> Result<Box<dyn CellTx>, ClaimError> {
        Ok(Box::new(self.ring.producer()?))
    }

    fn receiver(&self) -> Result<Box<dyn CellRx>, ClaimError> {
        Ok(Box::new(self.ring.consumer()?))
    }

    fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    fn len(&self) -> usize {
        self.ring.len()
    }

    fn max_message(&self) -> usize {
        (K - 1) * 8
    }

    fn ready(&self, thorough: bool) -> bool {
        !self.ring.is_empty() || self.ring.producers_gone(thorough)
    }

    fn senders_gone(&self, thorough: bool) -> bool {
        self.ring.producers_gone(thorough)
    }

    fn data_word(&self) -> Option<&WaitWord> {
        (self.ring.mode() == WaitMode::Blocking).then(|| self.ring.data_word())
    }
}

impl<const K: usize, R: Region<Shared = MpmcHeader>> CellTx for MpmcProducer<[u64; K], R> {
    fn try_push(&mut self, bytes: &[u8]) -> Result<u64, PushError<()>> {
        self.try_push_at(to_cell::<K>(bytes)).map_err(forget)
    }

    fn push_until(
        &mut self,
        bytes: &[u8],
        deadline: Option<Instant>,
    ) -> Result<u64, PushError<()>> {
        self.push_until_at(to_cell::<K>(bytes), deadline)
            .map_err(forget)
    }

    fn wait_taken(&mut self, pos: u64, deadline: Option<Instant>) -> Result<(), AckWait> {
        MpmcProducer::wait_taken(self, pos, deadline).map_err(AckWait::from)
    }

    fn consumers_gone(&mut self, thorough: bool) -> bool {
        MpmcProducer::consumers_gone(self, thorough)
    }
}

impl<const K: usize, R: Region<Shared = MpmcHeader>> CellRx for MpmcConsumer<[u64; K], R> {
    fn try_pop(&mut self, out: &mut Vec<u8>) -> Result<(), CellPopError> {
        let cell = MpmcConsumer::try_pop(self).map_err(CellPopError::Pop)?;
        from_cell(&cell, out)
    }

    fn pop_until(
        &mut self,
        out: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<(), CellPopError> {
        let cell = MpmcConsumer::pop_until(self, deadline).map_err(CellPopError::Pop)?;
        from_cell(&cell, out)
    }
}

/// The message travels as bytes; the caller still holds it.
fn forget<X>(e: PushError<X>) -> PushError<()> {
    match e {
        PushError::Full(_) => PushError::Full(()),
        PushError::Timeout(_) => PushError::Timeout(()),
        PushError::Disconnected(_) => PushError::Disconnected(()),
        PushError::Corrupted(_, c) => PushError::Corrupted((), c),
    }
}

/// Calls `$body` with the const `$k` set to each cell size in turn until it returns
/// `Some`.
macro_rules! for_cell_sizes {
    ($words:ident, $k:ident => $body:expr) => {
        match $words {
            8 => {
                const $k: usize = 8;
                $body
            }
            16 => {
                const $k: usize = 16;
                $body
            }
            32 => {
                const $k: usize = 32;
                $body
            }
            64 => {
                const $k: usize = 64;
                $body
            }
            128 => {
                const $k: usize = 128;
                $body
            }
            256 => {
                const $k: usize = 256;
                $body
            }
            512 => {
                const $k: usize = 512;
                $body
            }
            1024 => {
                const $k: usize = 1024;
                $body
            }
            _ => {
                const $k: usize = 2048;
                $body
            }
        }
    };
}

/// The cell size, in words, for messages of up to `max_message` bytes.
fn cell_words(max_message: usize) -> Result<usize, BuildError> {
    CELL_WORDS
        .iter()
        .copied()
        .find(|k| (k - 1) * 8 >= max_message)
        .ok_or(BuildError::InvalidCapacity(max_message as u64))
}

/// A heap ring of cells for messages of up to `max_message` bytes.
pub(crate) fn heap(
    capacity: usize,
    max_message: usize,
    mode: WaitMode,
) -> Result<Arc<dyn CellRing>, BuildError> {
    let words = cell_words(max_message)?;
    for_cell_sizes!(words, K => {
        let ring = Mpmc::<[u64; K], HeapRegion<MpmcHeader>>::new(capacity, mode)?;
        Ok(Arc::new(Cells { ring }))
    })
}

/// A named ring of cells; `tag` names the message type in the segment fingerprint.
#[cfg(not(shmlink_loom))]
pub(crate) fn create(
    builder: SegmentBuilder,
    capacity: usize,
    max_message: usize,
    mode: WaitMode,
    tag: u64,
) -> Result<Arc<dyn CellRing>, BuildError> {
    let words = cell_words(max_message)?;
    for_cell_sizes!(words, K => {
        let ring = Mpmc::<[u64; K], ShmRegion<MpmcHeader>>::create_tagged(builder, capacity, mode, tag)?;
        Ok(Arc::new(Cells { ring }))
    })
}

/// Opens a named ring of cells of whatever size it was created with.
#[cfg(not(shmlink_loom))]
pub(crate) fn open(builder: SegmentBuilder, tag: u64) -> Result<Arc<dyn CellRing>, BuildError> {
    let mut last = None;
    for words in CELL_WORDS {
        let attempt: Result<Arc<dyn CellRing>, BuildError> = for_cell_sizes!(words, K => {
            Mpmc::<[u64; K], ShmRegion<MpmcHeader>>::open_tagged(builder.clone(), tag)
                .map(|ring| Arc::new(Cells { ring }) as Arc<dyn CellRing>)
        });
        match attempt {
            // Another cell size (or message type): try the next size.
            Err(BuildError::Open(e @ OpenError::TypeMismatch { .. })) => {
                last = Some(BuildError::Open(e));
            }
            other => return other,
        }
    }
    Err(last.unwrap_or(BuildError::InvalidCapacity(0)))
}

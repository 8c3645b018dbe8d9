//! Encoded messages on an MPMC ring: fixed-size cells of `K` words, `Mpmc<[u64; K]>`.
//!
//! A cell is a length word, then the message bytes. The cell size is the smallest
//! power of two that holds the channel's maximum message (64 B to 16 KiB), chosen at
//! creation; a push copies the whole cell, so an MPMC serde channel should be given a
//! maximum close to its messages' real size.
//!
//! The ring element type fixes the cell size, so [`Cells`], [`CellSender`] and
//! [`CellReceiver`] are enums with one variant per size, dispatched by the
//! `by_size!` match like every other flavour enum of the channel.

use std::time::Instant;

use crate::ring::mpmc::TakenError;
use crate::ring::{BuildError, ClaimError, Mpmc, MpmcConsumer, MpmcHeader, MpmcProducer};
use crate::ring::{PopError, PushError};
use crate::segment::AnyRegion;
use crate::sync::{WaitMode, WaitWord};

#[cfg(not(shmlink_loom))]
use crate::segment::{OpenError, SegmentBuilder};

type Region = AnyRegion<MpmcHeader>;

/// Cell sizes in words, smallest first.
const CELL_WORDS: [usize; 9] = [8, 16, 32, 64, 128, 256, 512, 1024, 2048];

/// The largest message an MPMC serde channel carries.
pub(crate) const MAX_CELL_MESSAGE: usize = (2048 - 1) * 8;

/// Declares an enum with one variant per cell size, each holding `$handle<[u64; K]>`.
macro_rules! sized_enum {
    ($(#[$m:meta])* $name:ident, $handle:ident) => {
        $(#[$m])*
        #[derive(Debug)]
        pub enum $name {
            W8($handle<[u64; 8], Region>),
            W16($handle<[u64; 16], Region>),
            W32($handle<[u64; 32], Region>),
            W64($handle<[u64; 64], Region>),
            W128($handle<[u64; 128], Region>),
            W256($handle<[u64; 256], Region>),
            W512($handle<[u64; 512], Region>),
            W1024($handle<[u64; 1024], Region>),
            W2048($handle<[u64; 2048], Region>),
        }
    };
}

/// Runs `$body` with `$h` bound to the handle of whichever size `$e` holds; with a
/// target enum, wraps the result in its variant of the same size.
macro_rules! by_size {
    ($e:expr, $ty:ident, $h:ident => $body:expr) => {
        match $e {
            $ty::W8($h) => $body,
            $ty::W16($h) => $body,
            $ty::W32($h) => $body,
            $ty::W64($h) => $body,
            $ty::W128($h) => $body,
            $ty::W256($h) => $body,
            $ty::W512($h) => $body,
            $ty::W1024($h) => $body,
            $ty::W2048($h) => $body,
        }
    };
    ($e:expr, $ty:ident => $to:ident, $h:ident => $body:expr) => {
        match $e {
            $ty::W8($h) => $to::W8($body),
            $ty::W16($h) => $to::W16($body),
            $ty::W32($h) => $to::W32($body),
            $ty::W64($h) => $to::W64($body),
            $ty::W128($h) => $to::W128($body),
            $ty::W256($h) => $to::W256($body),
            $ty::W512($h) => $to::W512($body),
            $ty::W1024($h) => $to::W1024($body),
            $ty::W2048($h) => $to::W2048($body),
        }
    };
}

sized_enum!(
    /// A ring of cells of one size.
    Cells,
    Mpmc
);
sized_enum!(
    /// The sending side of a cell ring.
    CellSender,
    MpmcProducer
);
sized_enum!(
    /// The receiving side of a cell ring: copies a message's bytes out.
    CellReceiver,
    MpmcConsumer
);

impl Clone for Cells {
    fn clone(&self) -> Self {
        by_size!(self, Cells => Cells, r => r.clone())
    }
}

/// A pop that failed, or popped a cell whose length word is impossible.
#[derive(Debug)]
pub(crate) enum CellPopError {
    Pop(PopError),
    BadLength(u64),
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

/// The message travels as bytes; the caller still holds it.
fn forget<X>(e: PushError<X>) -> PushError<()> {
    match e {
        PushError::Full(_) => PushError::Full(()),
        PushError::Timeout(_) => PushError::Timeout(()),
        PushError::Disconnected(_) => PushError::Disconnected(()),
        PushError::Corrupted(_, c) => PushError::Corrupted((), c),
        PushError::Closed(_) => PushError::Closed(()),
    }
}

/// The cell size, in words, for messages of up to `max_message` bytes.
fn cell_words(max_message: usize) -> Result<usize, BuildError> {
    CELL_WORDS
        .iter()
        .copied()
        .find(|k| (k - 1) * 8 >= max_message)
        .ok_or(BuildError::InvalidCapacity(max_message as u64))
}

/// Calls `$make` (generic over the ring's element type) for the cell size `$words`,
/// wrapping the ring it returns in that size's variant.
macro_rules! for_size {
    // `$make` returns the ring with something else: the pair, with the ring wrapped.
    (pair $words:expr, $make:ident ( $($arg:expr),* )) => {
        match $words {
            8 => $make::<8>($($arg),*).map(|(r, x)| (Cells::W8(r), x)),
            16 => $make::<16>($($arg),*).map(|(r, x)| (Cells::W16(r), x)),
            32 => $make::<32>($($arg),*).map(|(r, x)| (Cells::W32(r), x)),
            64 => $make::<64>($($arg),*).map(|(r, x)| (Cells::W64(r), x)),
            128 => $make::<128>($($arg),*).map(|(r, x)| (Cells::W128(r), x)),
            256 => $make::<256>($($arg),*).map(|(r, x)| (Cells::W256(r), x)),
            512 => $make::<512>($($arg),*).map(|(r, x)| (Cells::W512(r), x)),
            1024 => $make::<1024>($($arg),*).map(|(r, x)| (Cells::W1024(r), x)),
            _ => $make::<2048>($($arg),*).map(|(r, x)| (Cells::W2048(r), x)),
        }
    };
    ($words:expr, $make:ident ( $($arg:expr),* )) => {
        match $words {
            8 => $make::<8>($($arg),*).map(Cells::W8),
            16 => $make::<16>($($arg),*).map(Cells::W16),
            32 => $make::<32>($($arg),*).map(Cells::W32),
            64 => $make::<64>($($arg),*).map(Cells::W64),
            128 => $make::<128>($($arg),*).map(Cells::W128),
            256 => $make::<256>($($arg),*).map(Cells::W256),
            512 => $make::<512>($($arg),*).map(Cells::W512),
            1024 => $make::<1024>($($arg),*).map(Cells::W1024),
            _ => $make::<2048>($($arg),*).map(Cells::W2048),
        }
    };
}

fn heap_ring<const K: usize>(
    capacity: usize,
    mode: WaitMode,
) -> Result<Mpmc<[u64; K], Region>, BuildError> {
    Mpmc::new_in(capacity, mode)
}

#[cfg(not(shmlink_loom))]
fn create_ring<const K: usize>(
    builder: SegmentBuilder,
    capacity: usize,
    mode: WaitMode,
    tag: u64,
) -> Result<Mpmc<[u64; K], Region>, BuildError> {
    Mpmc::create_tagged(builder, capacity, mode, tag)
}

#[cfg(not(shmlink_loom))]
fn open_or_create_ring<const K: usize>(
    builder: SegmentBuilder,
    capacity: usize,
    mode: WaitMode,
    tag: u64,
) -> Result<(Mpmc<[u64; K], Region>, crate::segment::Disposition), BuildError> {
    Mpmc::open_or_create_tagged(builder, capacity, mode, tag)
}

#[cfg(not(shmlink_loom))]
fn open_ring<const K: usize>(
    builder: SegmentBuilder,
    tag: u64,
) -> Result<Mpmc<[u64; K], Region>, BuildError> {
    Mpmc::open_tagged(builder, tag)
}

impl Cells {
    /// A heap ring of cells for messages of up to `max_message` bytes.
    pub(crate) fn new(
        capacity: usize,
        max_message: usize,
        mode: WaitMode,
    ) -> Result<Self, BuildError> {
        for_size!(cell_words(max_message)?, heap_ring(capacity, mode))
    }

    /// A named ring of cells; `tag` names the message type in the segment fingerprint.
    #[cfg(not(shmlink_loom))]
    pub(crate) fn create(
        builder: SegmentBuilder,
        capacity: usize,
        max_message: usize,
        mode: WaitMode,
        tag: u64,
    ) -> Result<Self, BuildError> {
        for_size!(
            cell_words(max_message)?,
            create_ring(builder, capacity, mode, tag)
        )
    }

    /// Opens the named ring of cells for messages of up to `max_message` bytes, or
    /// creates it (see [`Mpmc::open_or_create`]). A live ring of another cell size
    /// fails with `TypeMismatch` (the size is part of the fingerprint).
    #[cfg(not(shmlink_loom))]
    pub(crate) fn open_or_create(
        builder: SegmentBuilder,
        capacity: usize,
        max_message: usize,
        mode: WaitMode,
        tag: u64,
    ) -> Result<(Self, crate::segment::Disposition), BuildError> {
        for_size!(
            pair cell_words(max_message)?,
            open_or_create_ring(builder, capacity, mode, tag)
        )
    }

    /// Opens a named ring of cells of whatever size it was created with (the size is
    /// part of the element type, hence of the fingerprint: each is tried in turn).
    #[cfg(not(shmlink_loom))]
    pub(crate) fn open(builder: SegmentBuilder, tag: u64) -> Result<Self, BuildError> {
        let mut last = BuildError::InvalidCapacity(0);
        for words in CELL_WORDS {
            match for_size!(words, open_ring(builder.clone(), tag)) {
                // Another cell size (or message type): try the next size.
                Err(
                    e @ BuildError::Open {
                        error: OpenError::TypeMismatch { .. },
                        ..
                    },
                ) => last = e,
                other => return other,
            }
        }
        Err(last)
    }

    pub(crate) fn sender(&self) -> Result<CellSender, ClaimError> {
        Ok(by_size!(self, Cells => CellSender, r => r.producer()?))
    }

    pub(crate) fn receiver(&self) -> Result<CellReceiver, ClaimError> {
        Ok(by_size!(self, Cells => CellReceiver, r => r.consumer()?))
    }

    pub(crate) fn capacity(&self) -> usize {
        by_size!(self, Cells, r => r.capacity())
    }

    /// [`Mpmc::close`].
    pub(crate) fn close(&self) {
        by_size!(self, Cells, r => r.close());
    }

    /// [`Mpmc::is_closed`].
    pub(crate) fn is_closed(&self) -> bool {
        by_size!(self, Cells, r => r.is_closed())
    }

    pub(crate) fn len(&self) -> usize {
        by_size!(self, Cells, r => r.len())
    }

    pub(crate) fn is_empty(&self) -> bool {
        by_size!(self, Cells, r => r.is_empty())
    }

    /// The longest message a cell holds.
    pub(crate) fn max_message(&self) -> usize {
        fn of<const K: usize>(_: &Mpmc<[u64; K], Region>) -> usize {
            (K - 1) * 8
        }
        by_size!(self, Cells, r => of(r))
    }

    pub(crate) fn producers_gone(&self, thorough: bool) -> bool {
        by_size!(self, Cells, r => r.producers_gone(thorough))
    }

    pub(crate) fn wait_mode(&self) -> WaitMode {
        by_size!(self, Cells, r => r.wait_mode())
    }

    pub(crate) fn data_word(&self) -> &WaitWord {
        by_size!(self, Cells, r => r.data_word())
    }
}

impl CellSender {
    pub(crate) fn try_push_at(&mut self, bytes: &[u8]) -> Result<u64, PushError<()>> {
        by_size!(self, CellSender, p => p.try_push_at(to_cell(bytes)).map_err(forget))
    }

    pub(crate) fn push_until_at(
        &mut self,
        bytes: &[u8],
        deadline: Option<Instant>,
    ) -> Result<u64, PushError<()>> {
        by_size!(self, CellSender, p => p.push_until_at(to_cell(bytes), deadline).map_err(forget))
    }

    pub(crate) fn wait_taken(
        &mut self,
        pos: u64,
        deadline: Option<Instant>,
    ) -> Result<(), TakenError> {
        by_size!(self, CellSender, p => p.wait_taken(pos, deadline))
    }

    pub(crate) fn consumers_gone(&mut self, thorough: bool) -> bool {
        by_size!(self, CellSender, p => p.consumers_gone(thorough))
    }
}

impl CellReceiver {
    pub(crate) fn try_pop(&mut self, out: &mut Vec<u8>) -> Result<(), CellPopError> {
        by_size!(self, CellReceiver, c => {
            let cell = c.try_pop().map_err(CellPopError::Pop)?;
            from_cell(&cell, out)
        })
    }

    pub(crate) fn pop_until(
        &mut self,
        out: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<(), CellPopError> {
        by_size!(self, CellReceiver, c => {
            let cell = c.pop_until(deadline).map_err(CellPopError::Pop)?;
            from_cell(&cell, out)
        })
    }
}

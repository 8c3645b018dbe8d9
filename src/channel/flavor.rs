//! The ring behind a channel and its handles, one enum each, in the shape of
//! crossbeam-channel's `SenderFlavor`: a variant per ring kind, every operation one
//! `match`.
//!
//! | variant  | flavour | codec      | ring                                   |
//! |----------|---------|------------|----------------------------------------|
//! | `Spsc`   | SPSC    | [`Raw`]    | `Spsc<T>`: the message as it is         |
//! | `Mpmc`   | MPMC    | [`Raw`]    | `Mpmc<T>`                               |
//! | `Frames` | SPSC    | [`Postcard`] | `FrameRing`: variable-length frames   |
//! | `Cells`  | MPMC    | [`Postcard`] | fixed-size cells (`cells.rs`)         |
//!
//! Every ring lives in an [`AnyRegion`]: on the heap or in a named segment. The
//! handles use the same names on every ring: `consumers_gone`, `producers_gone`,
//! `try_push_at`/`push_until_at` (returning the position an acknowledgement waits
//! for), `wait_taken`, `data_word`.
//!
//! [`Raw`]: super::Raw
//! [`Postcard`]: super::Postcard

use std::time::Instant;

use super::Flavor;
use super::cells::{CellReceiver, CellSender, Cells};
use super::codec::AckWait;
use super::error::ChannelError;
use crate::region::Pod;
use crate::ring::{
    Consumer, FrameConsumer, FrameProducer, FrameRing, Mpmc, MpmcConsumer, MpmcHeader,
    MpmcProducer, Producer, Spsc, SpscHeader,
};
use crate::segment::AnyRegion;
use crate::sync::{WaitMode, WaitWord};

/// The region of an SPSC or frame ring.
pub(crate) type SpscRegion = AnyRegion<SpscHeader>;
/// The region of an MPMC or cell ring.
pub(crate) type MpmcRegion = AnyRegion<MpmcHeader>;

/// The ring of a channel whose ring slots hold `U` (for [`Raw`](super::Raw), the
/// message type; frames and cells hold bytes).
#[derive(Debug)]
pub enum RingFlavor<U: Pod> {
    Spsc(Spsc<U, SpscRegion>),
    Mpmc(Mpmc<U, MpmcRegion>),
    Frames(FrameRing<SpscRegion>),
    Cells(Cells),
}

/// The sending handle on a [`RingFlavor`].
#[derive(Debug)]
pub enum SenderFlavor<U: Pod> {
    Spsc(Producer<U, SpscRegion>),
    Mpmc(MpmcProducer<U, MpmcRegion>),
    Frames(FrameProducer<SpscRegion>),
    Cells(CellSender),
}

/// The receiving handle on a [`RingFlavor`].
#[derive(Debug)]
pub enum ReceiverFlavor<U: Pod> {
    Spsc(Consumer<U, SpscRegion>),
    Mpmc(MpmcConsumer<U, MpmcRegion>),
    Frames(FrameConsumer<SpscRegion>),
    Cells(CellReceiver),
}

impl<U: Pod> Clone for RingFlavor<U> {
    fn clone(&self) -> Self {
        match self {
            Self::Spsc(r) => Self::Spsc(r.clone()),
            Self::Mpmc(r) => Self::Mpmc(r.clone()),
            Self::Frames(r) => Self::Frames(r.clone()),
            Self::Cells(r) => Self::Cells(r.clone()),
        }
    }
}

impl<U: Pod> RingFlavor<U> {
    pub(crate) fn sender(&self) -> Result<SenderFlavor<U>, ChannelError> {
        Ok(match self {
            Self::Spsc(r) => SenderFlavor::Spsc(r.producer()?),
            Self::Mpmc(r) => SenderFlavor::Mpmc(r.producer()?),
            Self::Frames(r) => SenderFlavor::Frames(r.producer()?),
            Self::Cells(r) => SenderFlavor::Cells(r.sender()?),
        })
    }

    pub(crate) fn receiver(&self) -> Result<ReceiverFlavor<U>, ChannelError> {
        Ok(match self {
            Self::Spsc(r) => ReceiverFlavor::Spsc(r.consumer()?),
            Self::Mpmc(r) => ReceiverFlavor::Mpmc(r.consumer()?),
            Self::Frames(r) => ReceiverFlavor::Frames(r.consumer()?),
            Self::Cells(r) => ReceiverFlavor::Cells(r.receiver()?),
        })
    }

    /// Closes the ring in this process (see [`Spsc::close`], [`Mpmc::close`]).
    pub(crate) fn close(&self) {
        match self {
            Self::Spsc(r) => r.close(),
            Self::Mpmc(r) => r.close(),
            Self::Frames(r) => r.close(),
            Self::Cells(r) => r.close(),
        }
    }

    pub(crate) fn flavor(&self) -> Flavor {
        match self {
            Self::Spsc(_) | Self::Frames(_) => Flavor::Spsc,
            Self::Mpmc(_) | Self::Cells(_) => Flavor::Mpmc,
        }
    }

    /// Messages the ring holds (for frames: frames of the maximum size).
    pub(crate) fn capacity(&self) -> usize {
        match self {
            Self::Spsc(r) => r.capacity(),
            Self::Mpmc(r) => r.capacity(),
            Self::Frames(r) => r.capacity_bytes() / (r.max_frame().div_ceil(8) * 8 + 8),
            Self::Cells(r) => r.capacity(),
        }
    }

    /// Messages waiting (for frames, which only know words in flight cheaply:
    /// whether any).
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Spsc(r) => r.len(),
            Self::Mpmc(r) => r.len(),
            Self::Frames(r) => usize::from(!r.is_empty()),
            Self::Cells(r) => r.len(),
        }
    }

    /// The longest encoded message (0 for rings of `U`).
    pub(crate) fn max_message(&self) -> usize {
        match self {
            Self::Spsc(_) | Self::Mpmc(_) => 0,
            Self::Frames(r) => r.max_frame(),
            Self::Cells(r) => r.max_message(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Self::Spsc(r) => r.is_empty(),
            Self::Mpmc(r) => r.is_empty(),
            Self::Frames(r) => r.is_empty(),
            Self::Cells(r) => r.is_empty(),
        }
    }

    /// Whether every sender is gone (`thorough`: also checks that their processes
    /// live, a `/proc` read).
    pub(crate) fn producers_gone(&self, thorough: bool) -> bool {
        match self {
            Self::Spsc(r) => r.producers_gone(thorough),
            Self::Mpmc(r) => r.producers_gone(thorough),
            Self::Frames(r) => r.words().producers_gone(thorough),
            Self::Cells(r) => r.producers_gone(thorough),
        }
    }

    /// A message is waiting, or the senders are gone.
    pub(crate) fn ready(&self, thorough: bool) -> bool {
        !self.is_empty() || self.is_closed() || self.producers_gone(thorough)
    }

    /// Whether the ring was closed in this process.
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Self::Spsc(r) => r.is_closed(),
            Self::Mpmc(r) => r.is_closed(),
            Self::Frames(r) => r.words().is_closed(),
            Self::Cells(r) => r.is_closed(),
        }
    }

    /// The word receivers sleep on, if senders notify it (blocking mode).
    pub(crate) fn data_word(&self) -> Option<&WaitWord> {
        let (word, mode) = match self {
            Self::Spsc(r) => (r.data_word(), r.wait_mode()),
            Self::Mpmc(r) => (r.data_word(), r.wait_mode()),
            Self::Frames(r) => (r.words().data_word(), r.words().wait_mode()),
            Self::Cells(r) => (r.data_word(), r.wait_mode()),
        };
        (mode == WaitMode::Blocking).then_some(word)
    }
}

impl<U: Pod> SenderFlavor<U> {
    /// Whether every receiver is gone (`thorough`: also checks that their processes
    /// live).
    pub(crate) fn consumers_gone(&mut self, thorough: bool) -> bool {
        match self {
            Self::Spsc(p) => p.consumers_gone(thorough),
            Self::Mpmc(p) => p.consumers_gone(thorough),
            Self::Frames(p) => p.consumers_gone(thorough),
            Self::Cells(p) => p.consumers_gone(thorough),
        }
    }

    /// Waits until the message sent at `pos` was taken.
    pub(crate) fn wait_taken(
        &mut self,
        pos: u64,
        deadline: Option<Instant>,
    ) -> Result<(), AckWait> {
        match self {
            Self::Spsc(p) => p.wait_taken(pos, deadline).map_err(AckWait::from),
            Self::Mpmc(p) => p.wait_taken(pos, deadline).map_err(AckWait::from),
            Self::Frames(p) => p.wait_taken(pos, deadline).map_err(AckWait::from),
            Self::Cells(p) => p.wait_taken(pos, deadline).map_err(AckWait::from),
        }
    }
}

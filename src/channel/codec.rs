//! How messages travel: [`Raw`] copies plain-old-data values into a ring of `T`;
//! [`Postcard`] encodes serde values into a frame ring (SPSC) or a ring of fixed-size
//! cells (MPMC, see `cells.rs`). The [`Codec`] trait ties a
//! message type to its rings and handles; it is sealed.

use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Flavor;
use super::cells::{self, CellPopError, CellRing, CellRx, CellTx};
use super::error::{ChannelError, RecvError, SendError};
use crate::region::{HeapRegion, Pod};
use crate::ring::{
    self, Consumer, FrameConsumer, FrameProducer, FrameRing, Mpmc, MpmcConsumer, MpmcHeader,
    MpmcProducer, PopError, Producer, PushError, Spsc, SpscHeader,
};
use crate::sync::{WaitMode, WaitWord};
use std::sync::Arc;

/// Why an acknowledgement wait ended without one.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckWait {
    Timeout,
    Disconnected,
    /// The receiver that took the message died before acknowledging it.
    Lost,
}

impl From<crate::ring::mpmc::TakenError> for AckWait {
    fn from(e: crate::ring::mpmc::TakenError) -> Self {
        match e {
            crate::ring::mpmc::TakenError::Wait(w) => w.into(),
            crate::ring::mpmc::TakenError::Lost => Self::Lost,
        }
    }
}

impl From<crate::sync::WaitError> for AckWait {
    fn from(e: crate::sync::WaitError) -> Self {
        match e {
            crate::sync::WaitError::Timeout => Self::Timeout,
            crate::sync::WaitError::Disconnected => Self::Disconnected,
        }
    }
}

#[cfg(not(shmlink_loom))]
use crate::segment::{OpenError, SegmentBuilder, ShmRegion};

mod sealed {
    pub trait Sealed {}
}

/// What a channel needs to know to build its ring (see [`Options`](super::Options)).
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub capacity: usize,
    pub flavor: Flavor,
    pub mode: WaitMode,
    pub max_message: usize,
}

/// How messages of type `T` travel through a channel. Implemented by [`Raw`] (for
/// [`Pod`] types) and [`Postcard`] (for serde types); not implementable outside the
/// crate. The items are the channel's internals.
pub trait Codec<T>: sealed::Sealed + Sized + 'static {
    #[doc(hidden)]
    type Ring: Clone + Send + Sync;
    #[doc(hidden)]
    type Tx: Send;
    #[doc(hidden)]
    type Rx: Send;

    #[doc(hidden)]
    fn heap(spec: Spec) -> Result<Self::Ring, ChannelError>;
    #[doc(hidden)]
    #[cfg(not(shmlink_loom))]
    fn create(builder: SegmentBuilder, spec: Spec) -> Result<Self::Ring, ChannelError>;
    #[doc(hidden)]
    #[cfg(not(shmlink_loom))]
    fn open(builder: SegmentBuilder) -> Result<Self::Ring, ChannelError>;
    #[doc(hidden)]
    fn sender(ring: &Self::Ring) -> Result<Self::Tx, ChannelError>;
    #[doc(hidden)]
    fn receiver(ring: &Self::Ring) -> Result<Self::Rx, ChannelError>;
    #[doc(hidden)]
    fn flavor(ring: &Self::Ring) -> Flavor;
    #[doc(hidden)]
    fn capacity(ring: &Self::Ring) -> usize;
    #[doc(hidden)]
    fn len(ring: &Self::Ring) -> usize;

    /// Enqueues without waiting; on success, the position its acknowledgement waits
    /// for.
    #[doc(hidden)]
    fn try_send(tx: &mut Self::Tx, msg: T) -> Result<u64, SendError<T>>;
    /// Enqueues, waiting for room until `deadline` (`None`: while receivers live).
    #[doc(hidden)]
    fn send_until(
        tx: &mut Self::Tx,
        msg: T,
        deadline: Option<Instant>,
    ) -> Result<u64, SendError<T>>;
    /// Waits until the message sent at `pos` was taken.
    #[doc(hidden)]
    fn wait_taken(tx: &mut Self::Tx, pos: u64, deadline: Option<Instant>) -> Result<(), AckWait>;
    /// Whether every receiver is gone (`thorough`: also checks that their processes
    /// live; a `/proc` read).
    #[doc(hidden)]
    fn receivers_gone(tx: &mut Self::Tx, thorough: bool) -> bool;
    /// Whether every sender is gone (`thorough`: also checks that their processes
    /// live).
    #[doc(hidden)]
    fn senders_gone(ring: &Self::Ring, thorough: bool) -> bool;
    /// A message is waiting, or the senders are gone (`thorough`: also checks that
    /// their processes live).
    #[doc(hidden)]
    fn ready(ring: &Self::Ring, thorough: bool) -> bool;
    /// The word receivers sleep on, if senders notify it (blocking mode).
    #[doc(hidden)]
    fn data_word(ring: &Self::Ring) -> Option<&WaitWord>;
    #[doc(hidden)]
    fn try_recv(rx: &mut Self::Rx) -> Result<T, RecvError>;
    #[doc(hidden)]
    fn recv_until(rx: &mut Self::Rx, deadline: Option<Instant>) -> Result<T, RecvError>;
}

/// Plain-old-data messages, copied as they are into a ring of `T` (the default
/// codec). Any [`Pod`] type; nothing is encoded, nothing allocated.
///
/// # Examples
///
/// ```
/// use shmlink::channel::{self, Raw, Sender};
///
/// let (mut tx, mut rx) = channel::bounded::<[u32; 4]>(16)?;
/// let _: &Sender<[u32; 4], Raw> = &tx; // Raw is the default
/// tx.send([1, 2, 3, 4])?;
/// assert_eq!(rx.recv()?, [1, 2, 3, 4]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Raw;

impl sealed::Sealed for Raw {}

/// Serde messages, encoded with [postcard](https://docs.rs/postcard) into a frame
/// ring (SPSC flavour: variable-length frames) or a ring of fixed-size cells (MPMC
/// flavour: the smallest power-of-two cell, 64 B to 16 KiB, that holds the maximum
/// message; a send copies the whole cell, so keep the maximum close to real sizes).
/// The message type is part of the segment's fingerprint, so a channel cannot be
/// opened with another message type.
///
/// Why postcard: its wire format is specified and stable since 1.0 (so two builds of
/// a program agree on it), it is compact (varints, no field names), needs no schema
/// step, and encodes into a caller's buffer, so a message larger than the channel's
/// maximum is detected while encoding, without allocating, and handed back. bincode
/// is as fast but its 1.x and 2.x formats and APIs differ; JSON-like formats are
/// several times larger and slower.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use shmlink::channel::{Channel, Options, Postcard};
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// struct Order {
///     id: u64,
///     symbol: String,
/// }
///
/// let ch = Channel::<Order, Postcard>::new(Options::new().max_message(256))?;
/// let (mut tx, mut rx) = (ch.sender()?, ch.receiver()?);
/// tx.send(Order { id: 1, symbol: "ACME".into() })?;
/// assert_eq!(rx.recv()?, Order { id: 1, symbol: "ACME".into() });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Postcard;

impl sealed::Sealed for Postcard {}

type HeapSpsc = HeapRegion<SpscHeader>;
type HeapMpmc = HeapRegion<MpmcHeader>;
#[cfg(not(shmlink_loom))]
type ShmSpsc = ShmRegion<SpscHeader>;
#[cfg(not(shmlink_loom))]
type ShmMpmc = ShmRegion<MpmcHeader>;

/// The ring of a [`Raw`] channel.
#[doc(hidden)]
#[derive(Debug)]
pub enum RawRing<T: Pod> {
    SpscHeap(Spsc<T, HeapSpsc>),
    MpmcHeap(Mpmc<T, HeapMpmc>),
    #[cfg(not(shmlink_loom))]
    SpscShm(Spsc<T, ShmSpsc>),
    #[cfg(not(shmlink_loom))]
    MpmcShm(Mpmc<T, ShmMpmc>),
}

impl<T: Pod> Clone for RawRing<T> {
    fn clone(&self) -> Self {
        match self {
            Self::SpscHeap(r) => Self::SpscHeap(r.clone()),
            Self::MpmcHeap(r) => Self::MpmcHeap(r.clone()),
            #[cfg(not(shmlink_loom))]
            Self::SpscShm(r) => Self::SpscShm(r.clone()),
            #[cfg(not(shmlink_loom))]
            Self::MpmcShm(r) => Self::MpmcShm(r.clone()),
        }
    }
}

/// The sending handle of a [`Raw`] channel.
#[doc(hidden)]
#[derive(Debug)]
pub enum RawTx<T: Pod> {
    Spsc(SpscTx<T>),
    Mpmc(MpmcTx<T>),
}

/// The receiving handle of a [`Raw`] channel.
#[doc(hidden)]
#[derive(Debug)]
pub enum RawRx<T: Pod> {
    SpscHeap(Consumer<T, HeapSpsc>),
    MpmcHeap(MpmcConsumer<T, HeapMpmc>),
    #[cfg(not(shmlink_loom))]
    SpscShm(Consumer<T, ShmSpsc>),
    #[cfg(not(shmlink_loom))]
    MpmcShm(MpmcConsumer<T, ShmMpmc>),
}

#[doc(hidden)]
#[derive(Debug)]
pub enum SpscTx<T: Pod> {
    Heap(Producer<T, HeapSpsc>),
    #[cfg(not(shmlink_loom))]
    Shm(Producer<T, ShmSpsc>),
}

#[doc(hidden)]
#[derive(Debug)]
pub enum MpmcTx<T: Pod> {
    Heap(MpmcProducer<T, HeapMpmc>),
    #[cfg(not(shmlink_loom))]
    Shm(MpmcProducer<T, ShmMpmc>),
}

/// Runs `$body` with `$p` bound to the handle inside any variant of a two-region
/// enum (heap, and shared memory outside loom builds).
macro_rules! each {
    ($e:expr, $ty:ident, $p:ident => $body:expr) => {
        match $e {
            $ty::Heap($p) => $body,
            #[cfg(not(shmlink_loom))]
            $ty::Shm($p) => $body,
        }
    };
    ($e:expr, $ty:ident, $p:ident => $body:expr, cells $c:ident => $cells:expr) => {
        match $e {
            $ty::Heap($p) => $body,
            #[cfg(not(shmlink_loom))]
            $ty::Shm($p) => $body,
            $ty::Cells($c) => $cells,
        }
    };
}

fn push_error<T>(e: PushError<T>) -> SendError<T> {
    match e {
        PushError::Full(v) => SendError::Full(v),
        PushError::Timeout(v) => SendError::Timeout(v),
        PushError::Disconnected(v) => SendError::Disconnected(v),
        PushError::Corrupted(v, c) => SendError::Corrupted(v, c),
    }
}

fn pop_error(e: PopError) -> RecvError {
    match e {
        PopError::Empty => RecvError::Empty,
        PopError::Timeout => RecvError::Timeout,
        PopError::Disconnected => RecvError::Disconnected,
        PopError::Corrupted(c) => RecvError::Corrupted(c),
    }
}

impl<T: Pod> SpscTx<T> {
    fn try_send(&mut self, msg: T) -> Result<u64, SendError<T>> {
        each!(self, SpscTx, p => {
            // Receivers that left are seen at once (a role word); dead ones through
            // the producer's rate-limited liveness check.
            if p.peer_left() {
                return Err(SendError::Disconnected(msg));
            }
            p.try_push(msg).map_err(push_error)?;
            Ok(p.position())
        })
    }

    fn send_until(&mut self, msg: T, deadline: Option<Instant>) -> Result<u64, SendError<T>> {
        each!(self, SpscTx, p => {
            if p.peer_left() {
                return Err(SendError::Disconnected(msg));
            }
            p.push_until(msg, deadline).map_err(push_error)?;
            Ok(p.position())
        })
    }

    fn wait_taken(&mut self, pos: u64, deadline: Option<Instant>) -> Result<(), AckWait> {
        each!(self, SpscTx, p => p.wait_consumed(pos, deadline).map_err(AckWait::from))
    }
}

impl<T: Pod> MpmcTx<T> {
    fn try_send(&mut self, msg: T) -> Result<u64, SendError<T>> {
        each!(self, MpmcTx, p => {
            if p.consumers_gone(false) {
                return Err(SendError::Disconnected(msg));
            }
            p.try_push_at(msg).map_err(push_error)
        })
    }

    fn send_until(&mut self, msg: T, deadline: Option<Instant>) -> Result<u64, SendError<T>> {
        each!(self, MpmcTx, p => {
            if p.consumers_gone(false) {
                return Err(SendError::Disconnected(msg));
            }
            p.push_until_at(msg, deadline).map_err(push_error)
        })
    }

    fn wait_taken(&mut self, pos: u64, deadline: Option<Instant>) -> Result<(), AckWait> {
        each!(self, MpmcTx, p => p.wait_taken(pos, deadline).map_err(AckWait::from))
    }
}

fn spsc_capacity(spec: &Spec) -> Result<(), ChannelError> {
    if spec.flavor == Flavor::Spsc || spec.capacity >= 2 {
        Ok(())
    } else {
        Err(ChannelError::Build(ring::BuildError::InvalidCapacity(
            spec.capacity as u64,
        )))
    }
}

impl<T: Pod> Codec<T> for Raw {
    type Ring = RawRing<T>;
    type Tx = RawTx<T>;
    type Rx = RawRx<T>;

    fn heap(spec: Spec) -> Result<RawRing<T>, ChannelError> {
        spsc_capacity(&spec)?;
        Ok(match spec.flavor {
            Flavor::Spsc => RawRing::SpscHeap(Spsc::new(spec.capacity, spec.mode)?),
            Flavor::Mpmc => RawRing::MpmcHeap(Mpmc::new(spec.capacity, spec.mode)?),
        })
    }

    #[cfg(not(shmlink_loom))]
    fn create(builder: SegmentBuilder, spec: Spec) -> Result<RawRing<T>, ChannelError> {
        Ok(match spec.flavor {
            Flavor::Spsc => RawRing::SpscShm(Spsc::create(builder, spec.capacity, spec.mode)?),
            Flavor::Mpmc => RawRing::MpmcShm(Mpmc::create(builder, spec.capacity, spec.mode)?),
        })
    }

    #[cfg(not(shmlink_loom))]
    fn open(builder: SegmentBuilder) -> Result<RawRing<T>, ChannelError> {
        // The segment's kind says the flavour.
        match Spsc::open(builder.clone()) {
            Ok(r) => Ok(RawRing::SpscShm(r)),
            Err(ring::BuildError::Open(OpenError::WrongKind { .. })) => {
                Ok(RawRing::MpmcShm(Mpmc::open(builder)?))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn sender(ring: &RawRing<T>) -> Result<RawTx<T>, ChannelError> {
        Ok(match ring {
            RawRing::SpscHeap(r) => RawTx::Spsc(SpscTx::Heap(r.producer()?)),
            RawRing::MpmcHeap(r) => RawTx::Mpmc(MpmcTx::Heap(r.producer()?)),
            #[cfg(not(shmlink_loom))]
            RawRing::SpscShm(r) => RawTx::Spsc(SpscTx::Shm(r.producer()?)),
            #[cfg(not(shmlink_loom))]
            RawRing::MpmcShm(r) => RawTx::Mpmc(MpmcTx::Shm(r.producer()?)),
        })
    }

    fn receiver(ring: &RawRing<T>) -> Result<RawRx<T>, ChannelError> {
        Ok(match ring {
            RawRing::SpscHeap(r) => RawRx::SpscHeap(r.consumer()?),
            RawRing::MpmcHeap(r) => RawRx::MpmcHeap(r.consumer()?),
            #[cfg(not(shmlink_loom))]
            RawRing::SpscShm(r) => RawRx::SpscShm(r.consumer()?),
            #[cfg(not(shmlink_loom))]
            RawRing::MpmcShm(r) => RawRx::MpmcShm(r.consumer()?),
        })
    }

    fn flavor(ring: &RawRing<T>) -> Flavor {
        match ring {
            RawRing::SpscHeap(_) => Flavor::Spsc,
            RawRing::MpmcHeap(_) => Flavor::Mpmc,
            #[cfg(not(shmlink_loom))]
            RawRing::SpscShm(_) => Flavor::Spsc,
            #[cfg(not(shmlink_loom))]
            RawRing::MpmcShm(_) => Flavor::Mpmc,
        }
    }

    fn capacity(ring: &RawRing<T>) -> usize {
        match ring {
            RawRing::SpscHeap(r) => r.capacity(),
            RawRing::MpmcHeap(r) => r.capacity(),
            #[cfg(not(shmlink_loom))]
            RawRing::SpscShm(r) => r.capacity(),
            #[cfg(not(shmlink_loom))]
            RawRing::MpmcShm(r) => r.capacity(),
        }
    }

    fn len(ring: &RawRing<T>) -> usize {
        match ring {
            RawRing::SpscHeap(r) => r.len(),
            RawRing::MpmcHeap(r) => r.len(),
            #[cfg(not(shmlink_loom))]
            RawRing::SpscShm(r) => r.len(),
            #[cfg(not(shmlink_loom))]
            RawRing::MpmcShm(r) => r.len(),
        }
    }

    #[inline]
    fn try_send(tx: &mut RawTx<T>, msg: T) -> Result<u64, SendError<T>> {
        match tx {
            RawTx::Spsc(p) => p.try_send(msg),
            RawTx::Mpmc(p) => p.try_send(msg),
        }
    }

    fn send_until(
        tx: &mut RawTx<T>,
        msg: T,
        deadline: Option<Instant>,
    ) -> Result<u64, SendError<T>> {
        match tx {
            RawTx::Spsc(p) => p.send_until(msg, deadline),
            RawTx::Mpmc(p) => p.send_until(msg, deadline),
        }
    }

    fn wait_taken(tx: &mut RawTx<T>, pos: u64, deadline: Option<Instant>) -> Result<(), AckWait> {
        match tx {
            RawTx::Spsc(p) => p.wait_taken(pos, deadline),
            RawTx::Mpmc(p) => p.wait_taken(pos, deadline),
        }
    }

    fn receivers_gone(tx: &mut RawTx<T>, thorough: bool) -> bool {
        match tx {
            RawTx::Spsc(p) => {
                each!(p, SpscTx, p => if thorough { p.is_abandoned() } else { p.peer_left() })
            }
            RawTx::Mpmc(p) => each!(p, MpmcTx, p => p.consumers_gone(thorough)),
        }
    }

    fn senders_gone(ring: &RawRing<T>, thorough: bool) -> bool {
        match ring {
            RawRing::SpscHeap(r) => r.producer_gone(thorough),
            RawRing::MpmcHeap(r) => r.producers_gone(thorough),
            #[cfg(not(shmlink_loom))]
            RawRing::SpscShm(r) => r.producer_gone(thorough),
            #[cfg(not(shmlink_loom))]
            RawRing::MpmcShm(r) => r.producers_gone(thorough),
        }
    }

    fn ready(ring: &RawRing<T>, thorough: bool) -> bool {
        match ring {
            RawRing::SpscHeap(r) => !r.is_empty() || r.producer_gone(thorough),
            RawRing::MpmcHeap(r) => !r.is_empty() || r.producers_gone(thorough),
            #[cfg(not(shmlink_loom))]
            RawRing::SpscShm(r) => !r.is_empty() || r.producer_gone(thorough),
            #[cfg(not(shmlink_loom))]
            RawRing::MpmcShm(r) => !r.is_empty() || r.producers_gone(thorough),
        }
    }

    fn data_word(ring: &RawRing<T>) -> Option<&WaitWord> {
        let (word, mode) = match ring {
            RawRing::SpscHeap(r) => (r.data_word(), r.wait_mode()),
            RawRing::MpmcHeap(r) => (r.data_word(), r.mode()),
            #[cfg(not(shmlink_loom))]
            RawRing::SpscShm(r) => (r.data_word(), r.wait_mode()),
            #[cfg(not(shmlink_loom))]
            RawRing::MpmcShm(r) => (r.data_word(), r.mode()),
        };
        (mode == WaitMode::Blocking).then_some(word)
    }

    #[inline]
    fn try_recv(rx: &mut RawRx<T>) -> Result<T, RecvError> {
        match rx {
            RawRx::SpscHeap(c) => c.try_pop(),
            RawRx::MpmcHeap(c) => c.try_pop(),
            #[cfg(not(shmlink_loom))]
            RawRx::SpscShm(c) => c.try_pop(),
            #[cfg(not(shmlink_loom))]
            RawRx::MpmcShm(c) => c.try_pop(),
        }
        .map_err(pop_error)
    }

    fn recv_until(rx: &mut RawRx<T>, deadline: Option<Instant>) -> Result<T, RecvError> {
        match rx {
            RawRx::SpscHeap(c) => c.pop_until(deadline),
            RawRx::MpmcHeap(c) => c.pop_until(deadline),
            #[cfg(not(shmlink_loom))]
            RawRx::SpscShm(c) => c.pop_until(deadline),
            #[cfg(not(shmlink_loom))]
            RawRx::MpmcShm(c) => c.pop_until(deadline),
        }
        .map_err(pop_error)
    }
}

/// The ring of a [`Postcard`] channel.
#[doc(hidden)]
#[derive(Debug)]
pub enum FrameAny {
    Heap(FrameRing<HeapSpsc>),
    #[cfg(not(shmlink_loom))]
    Shm(FrameRing<ShmSpsc>),
    /// MPMC: a ring of fixed-size cells.
    Cells(Arc<dyn CellRing>),
}

impl Clone for FrameAny {
    fn clone(&self) -> Self {
        match self {
            Self::Heap(r) => Self::Heap(r.clone()),
            #[cfg(not(shmlink_loom))]
            Self::Shm(r) => Self::Shm(r.clone()),
            Self::Cells(r) => Self::Cells(r.clone()),
        }
    }
}

impl From<FrameRing<HeapSpsc>> for FrameAny {
    fn from(r: FrameRing<HeapSpsc>) -> Self {
        Self::Heap(r)
    }
}

#[cfg(not(shmlink_loom))]
impl From<FrameRing<ShmSpsc>> for FrameAny {
    fn from(r: FrameRing<ShmSpsc>) -> Self {
        Self::Shm(r)
    }
}

#[doc(hidden)]
#[derive(Debug)]
pub enum FrameTxAny {
    Heap(FrameProducer<HeapSpsc>),
    #[cfg(not(shmlink_loom))]
    Shm(FrameProducer<ShmSpsc>),
    Cells(Box<dyn CellTx>),
}

#[doc(hidden)]
#[derive(Debug)]
pub enum FrameRxAny {
    Heap(FrameConsumer<HeapSpsc>),
    #[cfg(not(shmlink_loom))]
    Shm(FrameConsumer<ShmSpsc>),
    Cells(Box<dyn CellRx>),
}

/// The sending handle of a [`Postcard`] channel: the frame producer and the buffer
/// messages are encoded into.
#[doc(hidden)]
#[derive(Debug)]
pub struct PostcardTx {
    link: FrameTxAny,
    buf: Vec<u8>,
}

/// The receiving handle of a [`Postcard`] channel.
#[doc(hidden)]
#[derive(Debug)]
pub struct PostcardRx {
    link: FrameRxAny,
    buf: Vec<u8>,
}

/// Ring capacity in 8-byte words (the caller asks for bytes) for a frame channel: `capacity` frames of the
/// maximum size (header word included), rounded up to a power of two.
fn frame_words(spec: &Spec) -> Result<usize, ChannelError> {
    let per = spec.max_message.div_ceil(8) + 1;
    spec.capacity
        .checked_mul(per)
        .and_then(usize::checked_next_power_of_two)
        .ok_or(ChannelError::Build(ring::BuildError::InvalidCapacity(
            spec.capacity as u64,
        )))
}

fn frame_spec(spec: &Spec) -> Result<(usize, u32), ChannelError> {
    let max = u32::try_from(spec.max_message).map_err(|_| {
        ChannelError::Build(ring::BuildError::InvalidCapacity(spec.max_message as u64))
    })?;
    Ok((frame_words(spec)? * 8, max))
}

fn frame_send_error<T>(e: ring::SendError, msg: T, max: usize) -> SendError<T> {
    match e {
        ring::SendError::Full => SendError::Full(msg),
        ring::SendError::Timeout => SendError::Timeout(msg),
        ring::SendError::Disconnected => SendError::Disconnected(msg),
        ring::SendError::TooLarge { .. } => SendError::TooLarge { msg, max },
        ring::SendError::Corrupted(c) => SendError::Corrupted(msg, c),
    }
}

fn cell_push_error<T>(e: PushError<()>, msg: T) -> SendError<T> {
    match e {
        PushError::Full(()) => SendError::Full(msg),
        PushError::Timeout(()) => SendError::Timeout(msg),
        PushError::Disconnected(()) => SendError::Disconnected(msg),
        PushError::Corrupted((), c) => SendError::Corrupted(msg, c),
    }
}

fn cell_pop_error(e: CellPopError) -> RecvError {
    match e {
        CellPopError::Pop(e) => pop_error(e),
        CellPopError::BadLength(n) => {
            RecvError::Decode(format!("cell length {n} is beyond the cell"))
        }
    }
}

/// An MPMC serde channel's maximum, checked before building (cells hold up to
/// 16 KiB).
fn cells_spec(spec: &Spec) -> Result<(), ChannelError> {
    if spec.max_message > cells::MAX_CELL_MESSAGE {
        return Err(ChannelError::Unsupported(
            "serde messages longer than 16376 bytes on an MPMC channel (use SPSC)",
        ));
    }
    Ok(())
}

fn frame_recv_error(e: ring::RecvError) -> RecvError {
    match e {
        ring::RecvError::Empty => RecvError::Empty,
        ring::RecvError::Timeout => RecvError::Timeout,
        ring::RecvError::Disconnected => RecvError::Disconnected,
        ring::RecvError::Corrupted(c) => RecvError::Corrupted(c),
    }
}

impl PostcardTx {
    /// Encodes `msg` into the buffer; its length.
    fn encode<T: Serialize>(&mut self, msg: &T) -> Result<usize, Option<String>> {
        match postcard::to_slice(msg, &mut self.buf) {
            Ok(bytes) => Ok(bytes.len()),
            Err(postcard::Error::SerializeBufferFull) => Err(None),
            Err(e) => Err(Some(e.to_string())),
        }
    }

    fn send<T: Serialize>(
        &mut self,
        msg: T,
        deadline: Option<Option<Instant>>,
    ) -> Result<u64, SendError<T>> {
        let max = self.buf.len();
        let len = match self.encode(&msg) {
            Ok(n) => n,
            Err(None) => return Err(SendError::TooLarge { msg, max }),
            Err(Some(reason)) => return Err(SendError::Encode { msg, reason }),
        };
        let frame = &self.buf[..len];
        each!(&mut self.link, FrameTxAny, p => {
            if p.peer_left() {
                return Err(SendError::Disconnected(msg));
            }
            let sent = match deadline {
                None => p.try_send(frame),
                Some(d) => p.send_until(frame, d),
            };
            match sent {
                Ok(()) => Ok(p.position()),
                Err(e) => Err(frame_send_error(e, msg, max)),
            }
        }, cells c => {
            if c.consumers_gone(false) {
                return Err(SendError::Disconnected(msg));
            }
            let sent = match deadline {
                None => c.try_push(frame),
                Some(d) => c.push_until(frame, d),
            };
            sent.map_err(|e| cell_push_error(e, msg))
        })
    }
}

impl PostcardRx {
    fn decode<T: DeserializeOwned>(&self, n: usize) -> Result<T, RecvError> {
        match postcard::take_from_bytes(&self.buf[..n]) {
            // A frame holds exactly one message: bytes left over mean it was not one
            // of ours.
            Ok((v, [])) => Ok(v),
            Ok((_, rest)) => Err(RecvError::Decode(format!(
                "{} bytes left after the message",
                rest.len()
            ))),
            Err(e) => Err(RecvError::Decode(e.to_string())),
        }
    }
}

/// Identifies a serde message type across processes, for the segment fingerprint: a
/// hash of its type name and in-memory size and alignment. Two builds that name the type alike but change its fields
/// still match; postcard then reports a decode error, or trailing bytes, for most such
/// changes.
#[cfg(not(shmlink_loom))]
fn type_tag<T>() -> u64 {
    crate::region::layout_fingerprint(
        std::any::type_name::<T>(),
        1,
        size_of::<T>(),
        align_of::<T>(),
    )
}

impl<T: Serialize + DeserializeOwned + 'static> Codec<T> for Postcard {
    type Ring = FrameAny;
    type Tx = PostcardTx;
    type Rx = PostcardRx;

    fn heap(spec: Spec) -> Result<FrameAny, ChannelError> {
        if spec.flavor == Flavor::Mpmc {
            cells_spec(&spec)?;
            let ring = cells::heap(spec.capacity, spec.max_message, spec.mode)?;
            return Ok(FrameAny::Cells(ring));
        }
        let (bytes, max) = frame_spec(&spec)?;
        Ok(FrameRing::new(bytes, max as usize, spec.mode)?.into())
    }

    #[cfg(not(shmlink_loom))]
    fn create(builder: SegmentBuilder, spec: Spec) -> Result<FrameAny, ChannelError> {
        if spec.flavor == Flavor::Mpmc {
            cells_spec(&spec)?;
            let tag = type_tag::<T>();
            let ring = cells::create(builder, spec.capacity, spec.max_message, spec.mode, tag)?;
            return Ok(FrameAny::Cells(ring));
        }
        let (bytes, max) = frame_spec(&spec)?;
        Ok(
            FrameRing::create_typed(builder, bytes, max as usize, spec.mode, type_tag::<T>())?
                .into(),
        )
    }

    #[cfg(not(shmlink_loom))]
    fn open(builder: SegmentBuilder) -> Result<FrameAny, ChannelError> {
        // The segment's kind says the flavour: frames (SPSC) or cells (MPMC).
        match FrameRing::open_typed(builder.clone(), type_tag::<T>()) {
            Ok(r) => Ok(r.into()),
            Err(ring::BuildError::Open(OpenError::WrongKind { .. })) => {
                Ok(FrameAny::Cells(cells::open(builder, type_tag::<T>())?))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn sender(ring: &FrameAny) -> Result<PostcardTx, ChannelError> {
        let (link, max) = match ring {
            FrameAny::Heap(r) => (FrameTxAny::Heap(r.producer()?), r.max_frame()),
            #[cfg(not(shmlink_loom))]
            FrameAny::Shm(r) => (FrameTxAny::Shm(r.producer()?), r.max_frame()),
            FrameAny::Cells(r) => (FrameTxAny::Cells(r.sender()?), r.max_message()),
        };
        Ok(PostcardTx {
            link,
            buf: vec![0; max],
        })
    }

    fn receiver(ring: &FrameAny) -> Result<PostcardRx, ChannelError> {
        let (link, max) = match ring {
            FrameAny::Heap(r) => (FrameRxAny::Heap(r.consumer()?), r.max_frame()),
            #[cfg(not(shmlink_loom))]
            FrameAny::Shm(r) => (FrameRxAny::Shm(r.consumer()?), r.max_frame()),
            FrameAny::Cells(r) => (FrameRxAny::Cells(r.receiver()?), r.max_message()),
        };
        Ok(PostcardRx {
            link,
            buf: Vec::with_capacity(max),
        })
    }

    fn flavor(ring: &FrameAny) -> Flavor {
        match ring {
            FrameAny::Cells(_) => Flavor::Mpmc,
            _ => Flavor::Spsc,
        }
    }

    fn capacity(ring: &FrameAny) -> usize {
        // In frames of the maximum size.
        each!(ring, FrameAny, r => r.capacity_bytes() / (r.max_frame().div_ceil(8) * 8 + 8).max(1),
            cells c => c.capacity())
    }

    fn len(ring: &FrameAny) -> usize {
        // Words in flight is all a frame ring knows cheaply: report whether any.
        each!(ring, FrameAny, r => usize::from(!r.is_empty()), cells c => c.len())
    }

    fn try_send(tx: &mut PostcardTx, msg: T) -> Result<u64, SendError<T>> {
        tx.send(msg, None)
    }

    fn send_until(
        tx: &mut PostcardTx,
        msg: T,
        deadline: Option<Instant>,
    ) -> Result<u64, SendError<T>> {
        tx.send(msg, Some(deadline))
    }

    fn wait_taken(tx: &mut PostcardTx, pos: u64, deadline: Option<Instant>) -> Result<(), AckWait> {
        each!(&mut tx.link, FrameTxAny, p => p.wait_consumed(pos, deadline).map_err(AckWait::from),
            cells c => c.wait_taken(pos, deadline))
    }

    fn receivers_gone(tx: &mut PostcardTx, thorough: bool) -> bool {
        each!(&mut tx.link, FrameTxAny, p => if thorough { p.is_abandoned() } else { p.peer_left() },
            cells c => c.consumers_gone(thorough))
    }

    fn senders_gone(ring: &FrameAny, thorough: bool) -> bool {
        each!(ring, FrameAny, r => r.words().producer_gone(thorough),
            cells c => c.senders_gone(thorough))
    }

    fn ready(ring: &FrameAny, thorough: bool) -> bool {
        each!(ring, FrameAny, r => !r.is_empty() || r.words().producer_gone(thorough),
            cells c => c.ready(thorough))
    }

    fn data_word(ring: &FrameAny) -> Option<&WaitWord> {
        each!(ring, FrameAny, r => {
            let words = r.words();
            (words.wait_mode() == WaitMode::Blocking).then_some(words.data_word())
        }, cells c => c.data_word())
    }

    fn try_recv(rx: &mut PostcardRx) -> Result<T, RecvError> {
        let n = each!(&mut rx.link, FrameRxAny, c => c.try_recv(&mut rx.buf).map_err(frame_recv_error),
            cells c => c.try_pop(&mut rx.buf).map(|()| rx.buf.len()).map_err(cell_pop_error))?;
        rx.decode(n)
    }

    fn recv_until(rx: &mut PostcardRx, deadline: Option<Instant>) -> Result<T, RecvError> {
        let n = each!(&mut rx.link, FrameRxAny, c => c.recv_until(&mut rx.buf, deadline).map_err(frame_recv_error),
            cells c => c.pop_until(&mut rx.buf, deadline).map(|()| rx.buf.len()).map_err(cell_pop_error))?;
        rx.decode(n)
    }
}

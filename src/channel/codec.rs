//! How messages travel: [`Raw`] copies plain-old-data values into a ring of `T`;
//! [`Postcard`] encodes serde values into a frame ring (SPSC) or a ring of fixed-size
//! cells (MPMC, see `cells.rs`). A [`Codec`] builds its channel's ring and moves a
//! message in and out of it; everything else a channel does is the same for both
//! codecs and lives on the flavour enums (`flavor.rs`). The trait is sealed.

use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Flavor;
use super::cells::{CellPopError, Cells, MAX_CELL_MESSAGE};
use super::error::{ChannelError, RecvFailure, SendFailure};
use super::flavor::{ReceiverFlavor, RingFlavor, SenderFlavor};
use crate::region::Pod;
use crate::ring::{self, FrameRing, Mpmc, PopError, PushError, Spsc};
use crate::sync::WaitMode;

#[cfg(not(shmlink_loom))]
use crate::segment::{OpenError, SegmentBuilder};

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

/// How long a send or receive may wait.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Wait {
    /// Not at all.
    No,
    /// For room or a message, until the deadline (`None`: while the peers live).
    Until(Option<Instant>),
}

/// How messages of type `T` travel through a channel. Implemented by [`Raw`] (for
/// [`Pod`] types) and [`Postcard`] (for serde types); not implementable outside the
/// crate. The items are the channel's internals: which ring the codec builds, and
/// how a message goes in and comes out.
pub trait Codec<T>: sealed::Sealed + Sized + 'static {
    /// What a ring slot holds: the message itself ([`Raw`]), or a placeholder for
    /// codecs whose rings carry bytes.
    #[doc(hidden)]
    type Unit: Pod;

    #[doc(hidden)]
    fn heap(spec: Spec) -> Result<RingFlavor<Self::Unit>, ChannelError>;
    #[doc(hidden)]
    #[cfg(not(shmlink_loom))]
    fn create(builder: SegmentBuilder, spec: Spec) -> Result<RingFlavor<Self::Unit>, ChannelError>;
    #[doc(hidden)]
    #[cfg(not(shmlink_loom))]
    fn open(builder: SegmentBuilder) -> Result<RingFlavor<Self::Unit>, ChannelError>;
    #[doc(hidden)]
    #[cfg(not(shmlink_loom))]
    fn open_or_create(
        builder: SegmentBuilder,
        spec: Spec,
    ) -> Result<(RingFlavor<Self::Unit>, crate::segment::Disposition), ChannelError>;

    /// Enqueues `msg` (encoding it into `buf` first, if the codec encodes); on
    /// success, the position its acknowledgement waits for.
    #[doc(hidden)]
    fn send(
        tx: &mut SenderFlavor<Self::Unit>,
        buf: &mut [u8],
        msg: T,
        wait: Wait,
    ) -> Result<u64, SendFailure<T>>;

    /// Takes a message (receiving it into `buf` first, if the codec decodes).
    #[doc(hidden)]
    fn recv(
        rx: &mut ReceiverFlavor<Self::Unit>,
        buf: &mut Vec<u8>,
        wait: Wait,
    ) -> Result<T, RecvFailure>;
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

fn push_error<T>(e: PushError<T>) -> SendFailure<T> {
    match e {
        PushError::Full(v) => SendFailure::Full(v),
        PushError::Timeout(v) => SendFailure::Timeout(v),
        PushError::Disconnected(v) => SendFailure::Disconnected(v),
        PushError::Corrupted(v, c) => SendFailure::Corrupted(v, c),
        PushError::Closed(v) => SendFailure::Closed(v),
    }
}

fn pop_error(e: PopError) -> RecvFailure {
    match e {
        PopError::Empty => RecvFailure::Empty,
        PopError::Timeout => RecvFailure::Timeout,
        PopError::Disconnected => RecvFailure::Disconnected,
        PopError::Corrupted(c) => RecvFailure::Corrupted(c),
        PopError::Closed => RecvFailure::Closed,
    }
}

/// A handle on a ring its codec never builds (a raw ring under a serde codec, or the
/// reverse): impossible by construction, reported rather than trusted.
const OTHER_CODEC: &str = "the channel's ring belongs to another codec";

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
    type Unit = T;

    fn heap(spec: Spec) -> Result<RingFlavor<T>, ChannelError> {
        spsc_capacity(&spec)?;
        Ok(match spec.flavor {
            Flavor::Spsc => RingFlavor::Spsc(Spsc::new_tagged(spec.capacity, spec.mode, 0)?),
            Flavor::Mpmc => RingFlavor::Mpmc(Mpmc::new_in(spec.capacity, spec.mode)?),
        })
    }

    #[cfg(not(shmlink_loom))]
    fn create(builder: SegmentBuilder, spec: Spec) -> Result<RingFlavor<T>, ChannelError> {
        Ok(match spec.flavor {
            Flavor::Spsc => RingFlavor::Spsc(Spsc::create_tagged(
                builder,
                spec.capacity,
                spec.mode,
                crate::segment::Kind::SpscRing,
                0,
                0,
            )?),
            Flavor::Mpmc => {
                RingFlavor::Mpmc(Mpmc::create_tagged(builder, spec.capacity, spec.mode, 0)?)
            }
        })
    }

    #[cfg(not(shmlink_loom))]
    fn open_or_create(
        builder: SegmentBuilder,
        spec: Spec,
    ) -> Result<(RingFlavor<T>, crate::segment::Disposition), ChannelError> {
        spsc_capacity(&spec)?;
        Ok(match spec.flavor {
            Flavor::Spsc => {
                let (ring, how) = Spsc::open_or_create_tagged(
                    builder,
                    spec.capacity,
                    spec.mode,
                    crate::segment::Kind::SpscRing,
                    0,
                    0,
                )?;
                (RingFlavor::Spsc(ring), how)
            }
            Flavor::Mpmc => {
                let (ring, how) =
                    Mpmc::open_or_create_tagged(builder, spec.capacity, spec.mode, 0)?;
                (RingFlavor::Mpmc(ring), how)
            }
        })
    }

    #[cfg(not(shmlink_loom))]
    fn open(builder: SegmentBuilder) -> Result<RingFlavor<T>, ChannelError> {
        // The segment's kind says the flavour.
        match Spsc::open_tagged(builder.clone(), crate::segment::Kind::SpscRing, 0) {
            Ok(r) => Ok(RingFlavor::Spsc(r)),
            Err(ring::BuildError::Open {
                error: OpenError::WrongKind { .. },
                ..
            }) => Ok(RingFlavor::Mpmc(Mpmc::open_tagged(builder, 0)?)),
            Err(e) => Err(e.into()),
        }
    }

    #[inline]
    fn send(
        tx: &mut SenderFlavor<T>,
        _buf: &mut [u8],
        msg: T,
        wait: Wait,
    ) -> Result<u64, SendFailure<T>> {
        match (tx, wait) {
            (SenderFlavor::Spsc(p), Wait::No) => p.try_push_at(msg),
            (SenderFlavor::Spsc(p), Wait::Until(d)) => p.push_until_at(msg, d),
            (SenderFlavor::Mpmc(p), Wait::No) => p.try_push_at(msg),
            (SenderFlavor::Mpmc(p), Wait::Until(d)) => p.push_until_at(msg, d),
            (SenderFlavor::Frames(_) | SenderFlavor::Cells(_), _) => {
                return Err(SendFailure::Encode {
                    msg,
                    reason: OTHER_CODEC.into(),
                });
            }
        }
        .map_err(push_error)
    }

    #[inline]
    fn recv(rx: &mut ReceiverFlavor<T>, _buf: &mut Vec<u8>, wait: Wait) -> Result<T, RecvFailure> {
        match (rx, wait) {
            (ReceiverFlavor::Spsc(c), Wait::No) => c.try_pop(),
            (ReceiverFlavor::Spsc(c), Wait::Until(d)) => c.pop_until(d),
            (ReceiverFlavor::Mpmc(c), Wait::No) => c.try_pop(),
            (ReceiverFlavor::Mpmc(c), Wait::Until(d)) => c.pop_until(d),
            (ReceiverFlavor::Frames(_) | ReceiverFlavor::Cells(_), _) => {
                return Err(RecvFailure::Decode(OTHER_CODEC.into()));
            }
        }
        .map_err(pop_error)
    }
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

fn frame_send_error<T>(e: ring::FrameSendError, msg: T, max: usize) -> SendFailure<T> {
    match e {
        ring::FrameSendError::Full => SendFailure::Full(msg),
        ring::FrameSendError::Timeout => SendFailure::Timeout(msg),
        ring::FrameSendError::Disconnected => SendFailure::Disconnected(msg),
        ring::FrameSendError::TooLarge { .. } => SendFailure::TooLarge { msg, max },
        ring::FrameSendError::Corrupted(c) => SendFailure::Corrupted(msg, c),
        ring::FrameSendError::Closed => SendFailure::Closed(msg),
    }
}

fn cell_push_error<T>(e: PushError<()>, msg: T) -> SendFailure<T> {
    match e {
        PushError::Full(()) => SendFailure::Full(msg),
        PushError::Timeout(()) => SendFailure::Timeout(msg),
        PushError::Disconnected(()) => SendFailure::Disconnected(msg),
        PushError::Corrupted((), c) => SendFailure::Corrupted(msg, c),
        PushError::Closed(()) => SendFailure::Closed(msg),
    }
}

fn cell_pop_error(e: CellPopError) -> RecvFailure {
    match e {
        CellPopError::Pop(e) => pop_error(e),
        CellPopError::BadLength(n) => {
            RecvFailure::Decode(format!("cell length {n} is beyond the cell"))
        }
    }
}

/// An MPMC serde channel's maximum, checked before building (cells hold up to
/// 16 KiB).
fn cells_spec(spec: &Spec) -> Result<(), ChannelError> {
    if spec.max_message > MAX_CELL_MESSAGE {
        return Err(ChannelError::Unsupported(
            "serde messages longer than 16376 bytes on an MPMC channel (use SPSC)",
        ));
    }
    Ok(())
}

fn frame_recv_error(e: ring::FrameRecvError) -> RecvFailure {
    match e {
        ring::FrameRecvError::Empty => RecvFailure::Empty,
        ring::FrameRecvError::Timeout => RecvFailure::Timeout,
        ring::FrameRecvError::Disconnected => RecvFailure::Disconnected,
        ring::FrameRecvError::Corrupted(c) => RecvFailure::Corrupted(c),
        ring::FrameRecvError::Closed => RecvFailure::Closed,
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RecvFailure> {
    match postcard::take_from_bytes(bytes) {
        // A frame holds exactly one message: bytes left over mean it was not one of
        // ours.
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(RecvFailure::Decode(format!(
            "{} bytes left after the message",
            rest.len()
        ))),
        Err(e) => Err(RecvFailure::Decode(e.to_string())),
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
    /// Frames and cells carry bytes: no ring of units is ever built.
    type Unit = u64;

    fn heap(spec: Spec) -> Result<RingFlavor<u64>, ChannelError> {
        if spec.flavor == Flavor::Mpmc {
            cells_spec(&spec)?;
            let ring = Cells::new(spec.capacity, spec.max_message, spec.mode)?;
            return Ok(RingFlavor::Cells(ring));
        }
        let (bytes, max) = frame_spec(&spec)?;
        Ok(RingFlavor::Frames(FrameRing::new_in(
            bytes,
            max as usize,
            spec.mode,
        )?))
    }

    #[cfg(not(shmlink_loom))]
    fn create(builder: SegmentBuilder, spec: Spec) -> Result<RingFlavor<u64>, ChannelError> {
        let tag = type_tag::<T>();
        if spec.flavor == Flavor::Mpmc {
            cells_spec(&spec)?;
            let ring = Cells::create(builder, spec.capacity, spec.max_message, spec.mode, tag)?;
            return Ok(RingFlavor::Cells(ring));
        }
        let (bytes, max) = frame_spec(&spec)?;
        Ok(RingFlavor::Frames(FrameRing::create_typed(
            builder,
            bytes,
            max as usize,
            spec.mode,
            tag,
        )?))
    }

    #[cfg(not(shmlink_loom))]
    fn open_or_create(
        builder: SegmentBuilder,
        spec: Spec,
    ) -> Result<(RingFlavor<u64>, crate::segment::Disposition), ChannelError> {
        let tag = type_tag::<T>();
        if spec.flavor == Flavor::Mpmc {
            cells_spec(&spec)?;
            let (ring, how) =
                Cells::open_or_create(builder, spec.capacity, spec.max_message, spec.mode, tag)?;
            return Ok((RingFlavor::Cells(ring), how));
        }
        let (bytes, max) = frame_spec(&spec)?;
        let (ring, how) =
            FrameRing::open_or_create_typed(builder, bytes, max as usize, spec.mode, tag)?;
        Ok((RingFlavor::Frames(ring), how))
    }

    #[cfg(not(shmlink_loom))]
    fn open(builder: SegmentBuilder) -> Result<RingFlavor<u64>, ChannelError> {
        // The segment's kind says the flavour: frames (SPSC) or cells (MPMC).
        match FrameRing::open_typed(builder.clone(), type_tag::<T>()) {
            Ok(r) => Ok(RingFlavor::Frames(r)),
            Err(ring::BuildError::Open {
                error: OpenError::WrongKind { .. },
                ..
            }) => Ok(RingFlavor::Cells(Cells::open(builder, type_tag::<T>())?)),
            Err(e) => Err(e.into()),
        }
    }

    fn send(
        tx: &mut SenderFlavor<u64>,
        buf: &mut [u8],
        msg: T,
        wait: Wait,
    ) -> Result<u64, SendFailure<T>> {
        let max = buf.len();
        let len = match postcard::to_slice(&msg, buf) {
            Ok(bytes) => bytes.len(),
            Err(postcard::Error::SerializeBufferFull) => {
                return Err(SendFailure::TooLarge { msg, max });
            }
            Err(e) => {
                return Err(SendFailure::Encode {
                    msg,
                    reason: e.to_string(),
                });
            }
        };
        let frame = &buf[..len];
        match tx {
            SenderFlavor::Frames(p) => match wait {
                Wait::No => p.try_send_at(frame),
                Wait::Until(d) => p.send_until_at(frame, d),
            }
            .map_err(|e| frame_send_error(e, msg, max)),
            SenderFlavor::Cells(c) => match wait {
                Wait::No => c.try_push_at(frame),
                Wait::Until(d) => c.push_until_at(frame, d),
            }
            .map_err(|e| cell_push_error(e, msg)),
            SenderFlavor::Spsc(_) | SenderFlavor::Mpmc(_) => Err(SendFailure::Encode {
                msg,
                reason: OTHER_CODEC.into(),
            }),
        }
    }

    fn recv(rx: &mut ReceiverFlavor<u64>, buf: &mut Vec<u8>, wait: Wait) -> Result<T, RecvFailure> {
        let n = match rx {
            ReceiverFlavor::Frames(c) => match wait {
                Wait::No => c.try_recv(buf),
                Wait::Until(d) => c.recv_until(buf, d),
            }
            .map_err(frame_recv_error)?,
            ReceiverFlavor::Cells(c) => {
                match wait {
                    Wait::No => c.try_pop(buf),
                    Wait::Until(d) => c.pop_until(buf, d),
                }
                .map_err(cell_pop_error)?;
                buf.len()
            }
            ReceiverFlavor::Spsc(_) | ReceiverFlavor::Mpmc(_) => {
                return Err(RecvFailure::Decode(OTHER_CODEC.into()));
            }
        };
        decode(&buf[..n])
    }
}

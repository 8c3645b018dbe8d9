//! Errors of the ring operations, all ring kinds together (SPSC and MPMC share
//! `PushError`, `PopError`, `ClaimError`, `ChunkError`; the frame ring adds
//! `FrameSendError` and `FrameRecvError`).

use core::fmt;

use crate::segment::{CreateError, OpenError};

/// A value read from shared memory that no correct peer writes: the ring is corrupt
/// (or the peer hostile). The operation is refused; nothing out of bounds is touched.
///
/// # Examples
///
/// ```
/// use shmlink::ring::Corruption;
///
/// let c = Corruption { what: "tail - head", found: 99 };
/// assert_eq!(c.to_string(), "ring corrupted: tail - head = 99");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corruption {
    /// What was read.
    pub what: &'static str,
    /// The value found.
    pub found: u64,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ring corrupted: {} = {}", self.what, self.found)
    }
}

impl std::error::Error for Corruption {}

/// Errors of creating or opening a ring.
///
/// # Examples
///
/// ```
/// use shmlink::ring::{BuildError, Spsc};
/// use shmlink::sync::WaitMode;
///
/// let err = Spsc::<u64, _>::new(100, WaitMode::Spin).unwrap_err();
/// assert_eq!(err, BuildError::InvalidCapacity(100));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// Capacity must be a power of two from 1 (2 for MPMC rings) to 2^32.
    InvalidCapacity(u64),
    /// The ring's segment could not be created.
    Create {
        /// The segment's name.
        name: String,
        /// Why.
        error: CreateError,
    },
    /// The ring's segment could not be opened.
    Open {
        /// The segment's name.
        name: String,
        /// Why.
        error: OpenError,
    },
    /// The ring's configuration in shared memory is invalid or does not match the
    /// element type.
    BadConfig(Corruption),
    /// The heap allocation for the slots failed.
    OutOfMemory {
        /// Bytes requested.
        bytes: usize,
    },
    /// The element type is aligned above what a ring's slot area guarantees (its
    /// values could not be aligned in their slots).
    ///
    /// ```
    /// use shmlink::ring::BuildError;
    ///
    /// let e = BuildError::UnsupportedAlignment { align: 256, max: 128 };
    /// assert_eq!(e.to_string(), "element alignment 256 is above the supported 128");
    /// ```
    UnsupportedAlignment {
        /// `align_of` the element type.
        align: usize,
        /// The largest alignment supported ([`AREA_ALIGN`](crate::region::AREA_ALIGN)).
        max: usize,
    },
    /// `open_or_create` found a live ring configured otherwise than asked (a frame
    /// ring's largest frame, say); a stale one would have been replaced.
    ///
    /// ```
    /// use shmlink::ring::BuildError;
    ///
    /// let e = BuildError::Mismatch { what: "largest frame", expected: 256, found: 1024 };
    /// assert_eq!(e.to_string(), "the ring's largest frame is 1024, not the 256 asked for");
    /// ```
    Mismatch {
        /// What differs.
        what: &'static str,
        /// What was asked for.
        expected: u64,
        /// What the ring has.
        found: u64,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::InvalidCapacity(c) => write!(
                f,
                "ring capacity {c} is not a power of two between 1 and 2^32"
            ),
            BuildError::Create { name, error } => error.fmt_for(name, f),
            BuildError::Open { name, error } => error.fmt_for(name, f),
            BuildError::BadConfig(c) => write!(f, "bad ring configuration: {c}"),
            BuildError::OutOfMemory { bytes } => {
                write!(f, "cannot allocate {bytes} bytes for the ring")
            }
            BuildError::UnsupportedAlignment { align, max } => {
                write!(f, "element alignment {align} is above the supported {max}")
            }
            BuildError::Mismatch {
                what,
                expected,
                found,
            } => write!(
                f,
                "the ring's {what} is {found}, not the {expected} asked for"
            ),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Create { error, .. } => Some(error),
            BuildError::Open { error, .. } => Some(error),
            BuildError::BadConfig(e) => Some(e),
            BuildError::InvalidCapacity(_)
            | BuildError::OutOfMemory { .. }
            | BuildError::UnsupportedAlignment { .. }
            | BuildError::Mismatch { .. } => None,
        }
    }
}

impl BuildError {
    /// `error` of creating the segment `builder` names.
    #[cfg(not(shmlink_loom))]
    pub(crate) fn create(builder: &crate::segment::SegmentBuilder, error: CreateError) -> Self {
        BuildError::Create {
            name: builder.raw_name().to_owned(),
            error,
        }
    }

    /// `error` of opening the segment `builder` names.
    #[cfg(not(shmlink_loom))]
    pub(crate) fn open(builder: &crate::segment::SegmentBuilder, error: OpenError) -> Self {
        BuildError::Open {
            name: builder.raw_name().to_owned(),
            error,
        }
    }

    /// The segment-layer error underneath, if any (to match on its kind).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::Spsc;
    /// use shmlink::segment::{OpenError, Segment};
    ///
    /// let err = Spsc::<u64, _>::open(Segment::builder("no-such-ring")).unwrap_err();
    /// assert_eq!(err.open_error(), Some(&OpenError::NotFound));
    /// assert_eq!(
    ///     err.to_string(),
    ///     "cannot open segment `no-such-ring`: no such segment"
    /// );
    /// ```
    pub fn open_error(&self) -> Option<&OpenError> {
        match self {
            BuildError::Open { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Errors of claiming a producer or consumer role.
///
/// # Examples
///
/// ```
/// use shmlink::ring::{ClaimError, Spsc};
/// use shmlink::sync::WaitMode;
///
/// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
/// let _tx = ring.producer()?;
/// match ring.producer() {
///     Err(ClaimError::Taken { pid }) => assert_eq!(pid, std::process::id()),
///     other => panic!("unexpected: {other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClaimError {
    /// A live process (possibly this one) holds the role.
    Taken {
        /// Its pid.
        pid: u32,
    },
    /// The ring's positions are inconsistent.
    Corrupted(Corruption),
    /// Every participant slot of an MPMC ring is held by a live process.
    NoFreeSlot {
        /// How many participants a ring has room for.
        max: usize,
    },
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClaimError::Taken { pid } => write!(f, "role held by live process {pid}"),
            ClaimError::Corrupted(c) => write!(f, "{c}"),
            ClaimError::NoFreeSlot { max } => {
                write!(f, "all {max} participant slots are held by live processes")
            }
        }
    }
}

impl std::error::Error for ClaimError {}

/// Errors of pushing; each gives the value back.
///
/// `try_push` returns `Full`; `push_timeout` returns `Timeout`; all return
/// `Disconnected` once the consumer has left or died, and `Corrupted` when the
/// consumer's position is impossible.
///
/// # Examples
///
/// ```
/// use shmlink::ring::{PushError, Spsc};
/// use shmlink::sync::WaitMode;
///
/// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
/// # let mut tx = ring.producer()?;
/// tx.push_slice(&[0; 8]);
/// match tx.try_push(42) {
///     Err(PushError::Full(v)) => assert_eq!(v, 42), // the value comes back
///     other => panic!("unexpected: {other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PushError<T> {
    /// The ring is full.
    Full(T),
    /// The ring stayed full until the deadline.
    Timeout(T),
    /// The consumer left or died.
    Disconnected(T),
    /// The consumer's position is impossible.
    Corrupted(T, Corruption),
    /// The ring was closed in this process ([`Spsc::close`](super::Spsc::close),
    /// [`Mpmc::close`](super::Mpmc::close)).
    Closed(T),
}

impl<T> PushError<T> {
    /// The value that was not pushed.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::Spsc;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
    /// # let mut tx = ring.producer()?;
    /// tx.push_slice(&[0; 8]);
    /// let err = tx.try_push(42).unwrap_err();
    /// assert_eq!(err.into_inner(), 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            PushError::Full(v)
            | PushError::Timeout(v)
            | PushError::Disconnected(v)
            | PushError::Closed(v)
            | PushError::Corrupted(v, _) => v,
        }
    }
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full(_) => f.write_str("Full(..)"),
            PushError::Timeout(_) => f.write_str("Timeout(..)"),
            PushError::Disconnected(_) => f.write_str("Disconnected(..)"),
            PushError::Corrupted(_, c) => write!(f, "Corrupted(.., {c:?})"),
            PushError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full(_) => f.write_str("ring is full"),
            PushError::Timeout(_) => f.write_str("ring stayed full until the deadline"),
            PushError::Disconnected(_) => f.write_str("consumer disconnected"),
            PushError::Corrupted(_, c) => write!(f, "{c}"),
            PushError::Closed(_) => f.write_str("ring closed in this process"),
        }
    }
}

impl<T> std::error::Error for PushError<T> {}

/// Errors of popping.
///
/// # Examples
///
/// ```
/// use shmlink::ring::{PopError, Spsc};
/// use shmlink::sync::WaitMode;
///
/// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
/// # let (tx, mut rx) = (ring.producer()?, ring.consumer()?);
/// assert_eq!(rx.try_pop(), Err(PopError::Empty));
/// drop(tx);
/// assert_eq!(rx.try_pop(), Err(PopError::Disconnected));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopError {
    /// The ring is empty.
    Empty,
    /// The ring stayed empty until the deadline.
    Timeout,
    /// The ring is empty and the producer left or died: nothing more will come.
    Disconnected,
    /// The producer's position is impossible.
    Corrupted(Corruption),
    /// The ring was closed in this process ([`Spsc::close`](super::Spsc::close),
    /// [`Mpmc::close`](super::Mpmc::close)).
    Closed,
}

impl fmt::Display for PopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PopError::Empty => f.write_str("ring is empty"),
            PopError::Timeout => f.write_str("ring stayed empty until the deadline"),
            PopError::Disconnected => f.write_str("ring is empty and the producer is gone"),
            PopError::Corrupted(c) => write!(f, "{c}"),
            PopError::Closed => f.write_str("ring closed in this process"),
        }
    }
}

impl std::error::Error for PopError {}

/// Not enough slots for a chunk.
///
/// # Examples
///
/// ```
/// use shmlink::ring::{ChunkError, Spsc};
/// use shmlink::sync::WaitMode;
///
/// # let ring = Spsc::<u64, _>::new(8, WaitMode::Spin)?;
/// # let mut tx = ring.producer()?;
/// tx.push_slice(&[0; 5]);
/// assert!(matches!(tx.write_chunk(4), Err(ChunkError::TooFewSlots(3))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// Only this many slots are available.
    TooFewSlots(usize),
    /// The peer's position is impossible.
    Corrupted(Corruption),
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::TooFewSlots(n) => write!(f, "only {n} slots available"),
            ChunkError::Corrupted(c) => write!(f, "{c}"),
        }
    }
}

impl std::error::Error for ChunkError {}

/// Errors of sending a frame.
///
/// # Examples
///
/// ```
/// use shmlink::ring::{FrameRing, FrameSendError};
/// use shmlink::sync::WaitMode;
///
/// # let ring = FrameRing::new(4096, 256, WaitMode::Spin)?;
/// # let mut tx = ring.producer()?;
/// let err = tx.try_send(&[0; 300]).unwrap_err();
/// assert_eq!(err, FrameSendError::TooLarge { len: 300, max: 256 });
/// assert_eq!(err.to_string(), "frame of 300 bytes exceeds the maximum of 256");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameSendError {
    /// The frame is longer than the ring's maximum.
    TooLarge {
        /// Its length.
        len: usize,
        /// The ring's maximum.
        max: usize,
    },
    /// Not enough room right now.
    Full,
    /// Still not enough room at the deadline.
    Timeout,
    /// The consumer left or died (and the ring is full).
    Disconnected,
    /// The consumer's position is impossible.
    Corrupted(Corruption),
    /// The ring was closed in this process ([`Spsc::close`](super::Spsc::close),
    /// [`FrameRing::close`](super::FrameRing::close)).
    Closed,
}

impl fmt::Display for FrameSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameSendError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max}")
            }
            FrameSendError::Full => f.write_str("frame ring is full"),
            FrameSendError::Timeout => f.write_str("frame ring stayed full until the deadline"),
            FrameSendError::Disconnected => f.write_str("consumer disconnected"),
            FrameSendError::Corrupted(c) => write!(f, "{c}"),
            FrameSendError::Closed => f.write_str("frame ring closed in this process"),
        }
    }
}

impl std::error::Error for FrameSendError {}

/// Errors of receiving a frame.
///
/// # Examples
///
/// ```
/// use shmlink::ring::{FrameRing, FrameRecvError};
/// use shmlink::sync::WaitMode;
///
/// # let ring = FrameRing::new(4096, 256, WaitMode::Spin)?;
/// # let (tx, mut rx) = (ring.producer()?, ring.consumer()?);
/// let mut buf = Vec::new();
/// assert_eq!(rx.try_recv(&mut buf), Err(FrameRecvError::Empty));
/// drop(tx);
/// assert_eq!(rx.try_recv(&mut buf), Err(FrameRecvError::Disconnected));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameRecvError {
    /// No frame right now.
    Empty,
    /// Still no frame at the deadline.
    Timeout,
    /// No frame, and the producer left or died.
    Disconnected,
    /// A header or position no correct producer writes.
    Corrupted(Corruption),
    /// The ring was closed in this process ([`FrameRing::close`](super::FrameRing::close)).
    Closed,
}

impl fmt::Display for FrameRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameRecvError::Empty => f.write_str("no frame"),
            FrameRecvError::Timeout => f.write_str("no frame until the deadline"),
            FrameRecvError::Disconnected => f.write_str("no frame, and the producer is gone"),
            FrameRecvError::Corrupted(c) => write!(f, "{c}"),
            FrameRecvError::Closed => f.write_str("frame ring closed in this process"),
        }
    }
}

impl std::error::Error for FrameRecvError {}

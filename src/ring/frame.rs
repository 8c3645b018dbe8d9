//! A ring of variable-length byte frames, up to a maximum length fixed at creation:
//! what channels and RPC carry serialized messages on.
//!
//! Built on the [`Spsc`] ring of 8-byte words. A frame is one header word
//! (`length | FRAME_TAG << 32`) followed by `ceil(length / 8)` payload words (the last
//! one zero-padded), written into reserved slots and published with one store, so the
//! consumer always sees whole frames. Frames may wrap around the end of the ring. The
//! consumer reads the header once, checks the tag, the length against the maximum and
//! against what is published, and only then copies the payload out: a corrupted or
//! hostile producer gets a typed error, never an out-of-bounds access.

use core::fmt;
use std::time::{Duration, Instant};

use super::error::{BuildError, ChunkError, ClaimError, Corruption};
use super::spsc::{Consumer, Producer, Spsc, SpscHeader};
use super::wait::{WaitError, WaitMode};
use crate::segment::{HeapRegion, Region};

/// High half of every frame header word: `b"FRM1"`.
const FRAME_TAG: u64 = 0x314d_5246;
/// Fingerprint tag that keeps a frame ring from being opened as a plain `Spsc<u64>`.
#[cfg(not(shmlink_loom))]
const RING_TAG: u64 = 0x4652_414d_4552_494e; // "FRAMERIN"

/// Words a frame of `len` bytes occupies (header included).
const fn words(len: usize) -> usize {
    1 + len.div_ceil(8)
}

/// Errors of sending a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
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
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max}")
            }
            SendError::Full => f.write_str("frame ring is full"),
            SendError::Timeout => f.write_str("frame ring stayed full until the deadline"),
            SendError::Disconnected => f.write_str("consumer disconnected"),
            SendError::Corrupted(c) => write!(f, "{c}"),
        }
    }
}

impl std::error::Error for SendError {}

/// Errors of receiving a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// No frame right now.
    Empty,
    /// Still no frame at the deadline.
    Timeout,
    /// No frame, and the producer left or died.
    Disconnected,
    /// A header or position no correct producer writes.
    Corrupted(Corruption),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Empty => f.write_str("no frame"),
            RecvError::Timeout => f.write_str("no frame until the deadline"),
            RecvError::Disconnected => f.write_str("no frame, and the producer is gone"),
            RecvError::Corrupted(c) => write!(f, "{c}"),
        }
    }
}

impl std::error::Error for RecvError {}

fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// A ring of byte frames in region `R`.
///
/// # Examples
///
/// ```
/// use shmlink::ring::{FrameRing, WaitMode};
///
/// let ring = FrameRing::new(4096, 1024, WaitMode::Blocking)?;
/// let mut tx = ring.producer()?;
/// let mut rx = ring.consumer()?;
/// tx.try_send(b"hello")?;
/// tx.try_send(&[7u8; 1000])?;
/// let mut buf = Vec::new();
/// rx.try_recv(&mut buf)?;
/// assert_eq!(buf, b"hello");
/// rx.try_recv(&mut buf)?;
/// assert_eq!(buf.len(), 1000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FrameRing<R: Region<Shared = SpscHeader>> {
    words: Spsc<u64, R>,
    max_frame: usize,
}

impl<R: Region<Shared = SpscHeader>> Clone for FrameRing<R> {
    fn clone(&self) -> Self {
        Self {
            words: self.words.clone(),
            max_frame: self.max_frame,
        }
    }
}

fn check_sizes(capacity_bytes: usize, max_frame: usize) -> Result<usize, BuildError> {
    let bad = || BuildError::InvalidCapacity(capacity_bytes as u64);
    if capacity_bytes % 8 != 0 || !(capacity_bytes / 8).is_power_of_two() {
        return Err(bad());
    }
    // A maximal frame must fit with room to spare, and its length in the header.
    if max_frame > u32::MAX as usize || words(max_frame) > capacity_bytes / 8 {
        return Err(BuildError::BadConfig(Corruption {
            what: "maximum frame length for the capacity",
            found: max_frame as u64,
        }));
    }
    Ok(capacity_bytes / 8)
}

impl FrameRing<HeapRegion<SpscHeader>> {
    /// A frame ring on the heap of `capacity_bytes` (a power of two, at least 16) for
    /// frames of at most `max_frame` bytes.
    ///
    /// # Errors
    ///
    /// [`BuildError::InvalidCapacity`], or [`BuildError::BadConfig`] if a frame of
    /// `max_frame` bytes cannot fit.
    pub fn new(
        capacity_bytes: usize,
        max_frame: usize,
        mode: WaitMode,
    ) -> Result<Self, BuildError> {
        let slots = check_sizes(capacity_bytes, max_frame)?;
        let words = Spsc::<u64, _>::new_tagged(slots, mode, max_frame as u32)?;
        Ok(Self { words, max_frame })
    }
}

#[cfg(not(shmlink_loom))]
impl FrameRing<crate::segment::ShmRegion<SpscHeader>> {
    /// Creates a frame ring in the named segment `builder` describes.
    ///
    /// # Errors
    ///
    /// As [`FrameRing::new`], or [`BuildError::Create`].
    pub fn create(
        builder: crate::segment::SegmentBuilder,
        capacity_bytes: usize,
        max_frame: usize,
        mode: WaitMode,
    ) -> Result<Self, BuildError> {
        let slots = check_sizes(capacity_bytes, max_frame)?;
        let words = Spsc::<u64, _>::create_tagged(
            builder,
            slots,
            mode,
            crate::segment::Kind::FrameRing,
            RING_TAG,
            max_frame as u32,
        )?;
        Ok(Self { words, max_frame })
    }

    /// Opens the frame ring in the named segment `builder` describes.
    ///
    /// # Errors
    ///
    /// [`BuildError::Open`] or [`BuildError::BadConfig`].
    pub fn open(builder: crate::segment::SegmentBuilder) -> Result<Self, BuildError> {
        let words =
            Spsc::<u64, _>::open_tagged(builder, crate::segment::Kind::FrameRing, RING_TAG)?;
        let max_frame = words.aux() as usize;
        check_sizes(words.capacity() * 8, max_frame)?;
        Ok(Self { words, max_frame })
    }
}

impl<R: Region<Shared = SpscHeader>> FrameRing<R> {
    /// Longest frame, in bytes.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Capacity in bytes (frames take 8 bytes of header plus their length rounded up
    /// to 8).
    pub fn capacity_bytes(&self) -> usize {
        self.words.capacity() * 8
    }

    /// Claims the producer role (see [`Spsc::producer`]).
    ///
    /// # Errors
    ///
    /// [`ClaimError::Taken`] while a live process holds it.
    pub fn producer(&self) -> Result<FrameProducer<R>, ClaimError> {
        Ok(FrameProducer {
            inner: self.words.producer()?,
            max_frame: self.max_frame,
        })
    }

    /// Claims the consumer role (see [`Spsc::consumer`]).
    ///
    /// # Errors
    ///
    /// [`ClaimError::Taken`] while a live process holds it.
    pub fn consumer(&self) -> Result<FrameConsumer<R>, ClaimError> {
        Ok(FrameConsumer {
            inner: self.words.consumer()?,
            max_frame: self.max_frame,
        })
    }
}

impl<R: Region<Shared = SpscHeader>> fmt::Debug for FrameRing<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameRing")
            .field("capacity_bytes", &self.capacity_bytes())
            .field("max_frame", &self.max_frame)
            .finish()
    }
}

/// Sends frames.
pub struct FrameProducer<R: Region<Shared = SpscHeader>> {
    inner: Producer<u64, R>,
    max_frame: usize,
}

impl<R: Region<Shared = SpscHeader>> FrameProducer<R> {
    /// Sends `frame` if there is room.
    ///
    /// # Errors
    ///
    /// `TooLarge`, `Full`, `Disconnected` (full, and the consumer is gone),
    /// `Corrupted`.
    pub fn try_send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        if frame.len() > self.max_frame {
            return Err(SendError::TooLarge {
                len: frame.len(),
                max: self.max_frame,
            });
        }
        let n = words(frame.len());
        let mut chunk = match self.inner.write_chunk(n) {
            Ok(c) => c,
            Err(ChunkError::Corrupted(c)) => return Err(SendError::Corrupted(c)),
            Err(ChunkError::TooFewSlots(_)) => {
                return Err(if self.inner.peer_left() {
                    SendError::Disconnected
                } else {
                    SendError::Full
                });
            }
        };
        chunk.write(0, frame.len() as u64 | FRAME_TAG << 32);
        for (i, bytes) in frame.chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word[..bytes.len()].copy_from_slice(bytes);
            chunk.write(1 + i, u64::from_le_bytes(word));
        }
        chunk.commit_all();
        Ok(())
    }

    /// Sends `frame`, waiting for room until `timeout` passes.
    ///
    /// # Errors
    ///
    /// As [`try_send`](Self::try_send), with `Timeout` instead of `Full`.
    pub fn send_timeout(&mut self, frame: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.send_until(frame, deadline_after(timeout))
    }

    /// Sends `frame`, waiting for room while the consumer is alive.
    ///
    /// # Errors
    ///
    /// `TooLarge`, `Disconnected`, `Corrupted`.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.send_until(frame, None)
    }

    fn send_until(&mut self, frame: &[u8], deadline: Option<Instant>) -> Result<(), SendError> {
        loop {
            match self.try_send(frame) {
                Err(SendError::Full) => {}
                other => return other,
            }
            match self
                .inner
                .wait_for_space(words(frame.len()) as u64, deadline)
            {
                Ok(()) => {}
                Err(WaitError::Timeout) => return Err(SendError::Timeout),
                Err(WaitError::Disconnected) => return Err(SendError::Disconnected),
            }
        }
    }

    /// Longest frame, in bytes.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }
}

impl<R: Region<Shared = SpscHeader>> fmt::Debug for FrameProducer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameProducer")
            .field("max_frame", &self.max_frame)
            .finish_non_exhaustive()
    }
}

/// Receives frames.
pub struct FrameConsumer<R: Region<Shared = SpscHeader>> {
    inner: Consumer<u64, R>,
    max_frame: usize,
}

impl<R: Region<Shared = SpscHeader>> FrameConsumer<R> {
    /// Receives the next frame into `buf` (replacing its contents); returns its
    /// length.
    ///
    /// # Errors
    ///
    /// `Empty`, `Disconnected` (no frame and the producer is gone), `Corrupted` for a
    /// header with a bad tag, a length over the maximum, or a frame that is not wholly
    /// published.
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        let header = match self.inner.read_chunk(1) {
            Ok(chunk) => chunk.get(0),
            Err(ChunkError::Corrupted(c)) => return Err(RecvError::Corrupted(c)),
            Err(ChunkError::TooFewSlots(_)) => {
                return Err(if self.inner.peer_left() && self.inner.slots() == 0 {
                    RecvError::Disconnected
                } else {
                    RecvError::Empty
                });
            }
        };
        // Read once, validate, then use only the local copy.
        let corrupt = |what, found| RecvError::Corrupted(Corruption { what, found });
        if header >> 32 != FRAME_TAG {
            return Err(corrupt("frame header tag", header >> 32));
        }
        let len = (header & 0xffff_ffff) as usize;
        if len > self.max_frame {
            return Err(corrupt("frame length", len as u64));
        }
        let n = words(len);
        let chunk = match self.inner.read_chunk(n) {
            Ok(chunk) => chunk,
            Err(ChunkError::Corrupted(c)) => return Err(RecvError::Corrupted(c)),
            // Producers publish whole frames: a partial one is corruption.
            Err(ChunkError::TooFewSlots(have)) => {
                return Err(corrupt("published words of a frame", have as u64));
            }
        };
        buf.clear();
        buf.reserve(len);
        for i in 1..n {
            let word = chunk.get(i).to_le_bytes();
            let take = (len - (i - 1) * 8).min(8);
            buf.extend_from_slice(&word[..take]);
        }
        chunk.release_all();
        Ok(len)
    }

    /// Receives, waiting until `timeout` passes.
    ///
    /// # Errors
    ///
    /// As [`try_recv`](Self::try_recv), with `Timeout` instead of `Empty`.
    pub fn recv_timeout(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<usize, RecvError> {
        self.recv_until(buf, deadline_after(timeout))
    }

    /// Receives, waiting while the producer is alive.
    ///
    /// # Errors
    ///
    /// `Disconnected`, `Corrupted`.
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        self.recv_until(buf, None)
    }

    fn recv_until(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<usize, RecvError> {
        loop {
            match self.try_recv(buf) {
                Err(RecvError::Empty) => {}
                other => return other,
            }
            match self.inner.wait_for_data(1, deadline) {
                Ok(()) => {}
                Err(WaitError::Timeout) => return Err(RecvError::Timeout),
                Err(WaitError::Disconnected) => return Err(RecvError::Disconnected),
            }
        }
    }

    /// Longest frame, in bytes.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }
}

impl<R: Region<Shared = SpscHeader>> fmt::Debug for FrameConsumer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameConsumer")
            .field("max_frame", &self.max_frame)
            .finish_non_exhaustive()
    }
}

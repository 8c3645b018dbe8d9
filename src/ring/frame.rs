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

use super::error::{
    BuildError, ChunkError, ClaimError, Corruption, FrameRecvError, FrameSendError,
};
use super::spsc::{Consumer, Producer, Spsc, SpscHeader};
use crate::region::{HeapRegion, Region};
use crate::sync::{WaitError, WaitMode};

/// High half of every frame header word: `b"FRM1"`.
const FRAME_TAG: u64 = 0x314d_5246;
/// Fingerprint tag that keeps a frame ring from being opened as a plain `Spsc<u64>`.
#[cfg(not(shmlink_loom))]
const RING_TAG: u64 = 0x4652_414d_4552_494e; // "FRAMERIN"

/// Words a frame of `len` bytes occupies (header included).
const fn words(len: usize) -> usize {
    1 + len.div_ceil(8)
}

fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// A ring of byte frames in region `R`.
///
/// # Examples
///
/// ```
/// use shmlink::ring::FrameRing;
/// use shmlink::sync::WaitMode;
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
    if !capacity_bytes.is_multiple_of(8) || !(capacity_bytes / 8).is_power_of_two() {
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
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::FrameRing;
    /// use shmlink::sync::WaitMode;
    ///
    /// let ring = FrameRing::new(4096, 256, WaitMode::Spin)?;
    /// assert_eq!((ring.capacity_bytes(), ring.max_frame()), (4096, 256));
    /// // Not a power of two; a maximal frame that cannot fit.
    /// assert!(FrameRing::new(4000, 256, WaitMode::Spin).is_err());
    /// assert!(FrameRing::new(256, 4096, WaitMode::Spin).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(
        capacity_bytes: usize,
        max_frame: usize,
        mode: WaitMode,
    ) -> Result<Self, BuildError> {
        Self::new_in(capacity_bytes, max_frame, mode)
    }
}

#[cfg(not(shmlink_loom))]
impl FrameRing<crate::segment::ShmRegion<SpscHeader>> {
    /// Creates a frame ring in the named segment `builder` describes.
    ///
    /// # Errors
    ///
    /// As [`FrameRing::new`], or [`BuildError::Create`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::FrameRing;
    /// use shmlink::sync::WaitMode;
    /// use shmlink::segment::Segment;
    /// # let name = format!("doc-frame-create-{}", std::process::id());
    ///
    /// let builder = Segment::builder(&name).unlink_on_drop(true);
    /// let ring = FrameRing::create(builder, 64 * 1024, 4096, WaitMode::Blocking)?;
    /// ring.producer()?.try_send(b"hello")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(
        builder: crate::segment::SegmentBuilder,
        capacity_bytes: usize,
        max_frame: usize,
        mode: WaitMode,
    ) -> Result<Self, BuildError> {
        Self::create_typed(builder, capacity_bytes, max_frame, mode, 0)
    }

    /// Opens the frame ring in the named segment `builder` describes.
    ///
    /// # Errors
    ///
    /// [`BuildError::Open`] or [`BuildError::BadConfig`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{FrameRing, Spsc};
    /// use shmlink::sync::WaitMode;
    /// use shmlink::segment::Segment;
    /// # let name = format!("doc-frame-open-{}", std::process::id());
    /// # let a = FrameRing::create(Segment::builder(&name).unlink_on_drop(true), 4096, 256, WaitMode::Spin)?;
    /// # a.producer()?.try_send(b"hello")?;
    ///
    /// // In another process: attach by name; the maximum comes from the segment.
    /// let ring = FrameRing::open(Segment::builder(&name))?;
    /// assert_eq!(ring.max_frame(), 256);
    /// let mut buf = Vec::new();
    /// ring.consumer()?.try_recv(&mut buf)?;
    /// assert_eq!(buf, b"hello");
    /// // A frame ring is not a plain ring of words.
    /// assert!(Spsc::<u64, _>::open(Segment::builder(&name)).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(builder: crate::segment::SegmentBuilder) -> Result<Self, BuildError> {
        Self::open_typed(builder, 0)
    }

    /// Opens the ring, or creates it if the name holds none; a ring left stale by a
    /// crash is resumed with the frames committed to it when its capacity and largest
    /// frame are these, and replaced otherwise (as
    /// [`Spsc::open_or_create`](super::Spsc::open_or_create)). A live ring with another
    /// largest frame is [`BuildError::Mismatch`].
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create) and [`open`](Self::open).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::FrameRing;
    /// use shmlink::segment::{Disposition, Segment};
    /// use shmlink::sync::WaitMode;
    /// # let name = format!("doc-frames-open-or-create-{}", std::process::id());
    ///
    /// let builder = Segment::builder(&name).unlink_on_drop(true);
    /// let (_a, how) = FrameRing::open_or_create(builder.clone(), 4096, 256, WaitMode::Blocking)?;
    /// assert_eq!(how, Disposition::Created);
    /// let (_b, how) = FrameRing::open_or_create(builder, 4096, 256, WaitMode::Blocking)?;
    /// assert_eq!(how, Disposition::Opened);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_or_create(
        builder: crate::segment::SegmentBuilder,
        capacity_bytes: usize,
        max_frame: usize,
        mode: WaitMode,
    ) -> Result<(Self, crate::segment::Disposition), BuildError> {
        Self::open_or_create_typed(builder, capacity_bytes, max_frame, mode, 0)
    }
}

/// Writes the configuration of a frame ring of `capacity_bytes` for frames up to
/// `max_frame` into a zeroed header (before the region is shared); returns the area
/// length the ring needs.
#[cfg_attr(shmlink_loom, allow(dead_code))] // used by `duplex`, which loom builds leave out
pub(crate) fn init_frame_header(
    h: &SpscHeader,
    capacity_bytes: usize,
    max_frame: usize,
    mode: WaitMode,
) -> usize {
    let slots = capacity_bytes / 8;
    super::spsc::init_header::<u64>(h, slots as u64, mode, max_frame as u32);
    frame_area_len(slots)
}

/// Area bytes of a frame ring with `slots` words.
#[cfg_attr(shmlink_loom, allow(dead_code))] // used by `duplex`, which loom builds leave out
pub(crate) const fn frame_area_len(slots: usize) -> usize {
    slots * super::spsc::slot_size::<u64>()
}

/// Checks a frame ring configuration before creating it; returns the slot count.
#[cfg_attr(shmlink_loom, allow(dead_code))] // used by `duplex`, which loom builds leave out
pub(crate) fn check_frame_sizes(
    capacity_bytes: usize,
    max_frame: usize,
) -> Result<usize, BuildError> {
    let slots = check_sizes(capacity_bytes, max_frame)?;
    super::spsc::check_capacity(slots as u64)?;
    Ok(slots)
}

/// The fingerprint tag of a frame ring carrying message type `tag` (0: untyped).
#[cfg(not(shmlink_loom))]
fn typed_tag(tag: u64) -> u64 {
    if tag == 0 {
        RING_TAG
    } else {
        crate::region::combine_fingerprints(RING_TAG, tag)
    }
}

/// Constructors for any region that a heap or named region converts into.
impl<R: Region<Shared = SpscHeader>> FrameRing<R> {
    /// `new` for any region a heap region converts into.
    pub(crate) fn new_in(
        capacity_bytes: usize,
        max_frame: usize,
        mode: WaitMode,
    ) -> Result<Self, BuildError>
    where
        R: From<crate::region::HeapRegion<SpscHeader>>,
    {
        let slots = check_sizes(capacity_bytes, max_frame)?;
        let words = Spsc::<u64, R>::new_tagged(slots, mode, max_frame as u32)?;
        Ok(Self { words, max_frame })
    }

    #[cfg(not(shmlink_loom))]
    /// `create` for a ring whose frames carry one message type, identified by `tag`
    /// (part of the segment's fingerprint, so another message type fails to open it
    /// with `TypeMismatch`); 0 is a plain frame ring.
    pub(crate) fn create_typed(
        builder: crate::segment::SegmentBuilder,
        capacity_bytes: usize,
        max_frame: usize,
        mode: WaitMode,
        tag: u64,
    ) -> Result<Self, BuildError>
    where
        R: From<crate::segment::ShmRegion<SpscHeader>>,
    {
        let slots = check_sizes(capacity_bytes, max_frame)?;
        let words = Spsc::<u64, R>::create_tagged(
            builder,
            slots,
            mode,
            crate::segment::Kind::FrameRing,
            typed_tag(tag),
            max_frame as u32,
        )?;
        Ok(Self { words, max_frame })
    }

    #[cfg(not(shmlink_loom))]
    /// `open_or_create` for [`create_typed`](Self::create_typed) rings.
    pub(crate) fn open_or_create_typed(
        builder: crate::segment::SegmentBuilder,
        capacity_bytes: usize,
        max_frame: usize,
        mode: WaitMode,
        tag: u64,
    ) -> Result<(Self, crate::segment::Disposition), BuildError>
    where
        R: From<crate::segment::ShmRegion<SpscHeader>> + crate::segment::NamedRegion,
    {
        let slots = check_sizes(capacity_bytes, max_frame)?;
        let (words, how) = Spsc::<u64, R>::open_or_create_tagged(
            builder,
            slots,
            mode,
            crate::segment::Kind::FrameRing,
            typed_tag(tag),
            max_frame as u32,
        )?;
        Ok((Self { words, max_frame }, how))
    }

    #[cfg(not(shmlink_loom))]
    /// `open` for a ring created with [`create_typed`](Self::create_typed).
    pub(crate) fn open_typed(
        builder: crate::segment::SegmentBuilder,
        tag: u64,
    ) -> Result<Self, BuildError>
    where
        R: From<crate::segment::ShmRegion<SpscHeader>>,
    {
        let words =
            Spsc::<u64, R>::open_tagged(builder, crate::segment::Kind::FrameRing, typed_tag(tag))?;
        let max_frame = words.aux() as usize;
        check_sizes(words.capacity() * 8, max_frame)?;
        Ok(Self { words, max_frame })
    }
}

impl<R: Region<Shared = SpscHeader>> FrameRing<R> {
    /// Wraps a region whose header holds a frame ring configuration, validating it
    /// (the maximum frame length comes from the header).
    ///
    /// # Errors
    ///
    /// [`BuildError::BadConfig`] if the header holds no valid frame ring.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use shmlink::ring::{BuildError, FrameRing, SpscHeader};
    /// use shmlink::region::HeapRegion;
    ///
    /// // A zeroed header is rejected, not trusted.
    /// let region = Arc::new(HeapRegion::<SpscHeader>::new(4096));
    /// assert!(matches!(FrameRing::from_region(region), Err(BuildError::BadConfig(_))));
    /// ```
    pub fn from_region(region: std::sync::Arc<R>) -> Result<Self, BuildError> {
        let words = Spsc::<u64, R>::from_region(region)?;
        let max_frame = words.aux() as usize;
        check_sizes(words.capacity() * 8, max_frame)?;
        Ok(Self { words, max_frame })
    }

    /// Closes the ring in this process: sends and receives that wait, or would have
    /// to, return `Closed` (see [`Spsc::close`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{FrameRing, FrameRecvError};
    /// use shmlink::sync::WaitMode;
    ///
    /// let ring = FrameRing::new(4096, 256, WaitMode::Blocking)?;
    /// let (_tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// ring.close();
    /// assert_eq!(rx.recv(&mut Vec::new()), Err(FrameRecvError::Closed));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) {
        self.words.close();
    }

    /// Longest frame, in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::FrameRing;
    /// # use shmlink::sync::WaitMode;
    ///
    /// let ring = FrameRing::new(4096, 256, WaitMode::Spin)?;
    /// assert_eq!(ring.max_frame(), 256);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Capacity in bytes (frames take 8 bytes of header plus their length rounded up
    /// to 8).
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::FrameRing;
    /// # use shmlink::sync::WaitMode;
    ///
    /// let ring = FrameRing::new(4096, 256, WaitMode::Spin)?;
    /// assert_eq!(ring.capacity_bytes(), 4096);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn capacity_bytes(&self) -> usize {
        self.words.capacity() * 8
    }

    /// Claims the producer role (see [`Spsc::producer`]).
    ///
    /// # Errors
    ///
    /// [`ClaimError::Taken`] while a live process holds it;
    /// [`ClaimError::Corrupted`] if the ring's positions are impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{ClaimError, FrameRing};
    /// use shmlink::sync::WaitMode;
    ///
    /// # let ring = FrameRing::new(4096, 256, WaitMode::Spin)?;
    /// let mut tx = ring.producer()?;
    /// tx.try_send(b"hi")?;
    /// assert!(matches!(ring.producer(), Err(ClaimError::Taken { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    /// [`ClaimError::Taken`] while a live process holds it;
    /// [`ClaimError::Corrupted`] if the ring's positions are impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{ClaimError, FrameRing};
    /// use shmlink::sync::WaitMode;
    ///
    /// # let ring = FrameRing::new(4096, 256, WaitMode::Spin)?;
    /// # ring.producer()?.try_send(b"hi")?;
    /// let mut rx = ring.consumer()?;
    /// let mut buf = Vec::new();
    /// assert_eq!(rx.try_recv(&mut buf)?, 2);
    /// assert!(matches!(ring.consumer(), Err(ClaimError::Taken { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn consumer(&self) -> Result<FrameConsumer<R>, ClaimError> {
        Ok(FrameConsumer {
            inner: self.words.consumer()?,
            max_frame: self.max_frame,
        })
    }
}

impl<R: Region<Shared = SpscHeader>> FrameRing<R> {
    /// Whether no frame is in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The word ring underneath.
    pub(crate) fn words(&self) -> &Spsc<u64, R> {
        &self.words
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
///
/// # Examples
///
/// ```
/// use shmlink::ring::FrameRing;
/// use shmlink::sync::WaitMode;
///
/// let ring = FrameRing::new(4096, 256, WaitMode::Blocking)?;
/// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
/// // 100 frames of 200 bytes: more than the ring holds at once.
/// let sender = std::thread::spawn(move || (0..100).try_for_each(|_| tx.send(&[1; 200])));
/// let mut buf = Vec::new();
/// for _ in 0..100 {
///     assert_eq!(rx.recv(&mut buf)?, 200);
/// }
/// sender.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{FrameRing, FrameSendError};
    /// use shmlink::sync::WaitMode;
    ///
    /// # let ring = FrameRing::new(4096, 256, WaitMode::Spin)?;
    /// # let mut tx = ring.producer()?;
    /// // A 256-byte frame takes 33 of the ring's 512 words: 15 fit.
    /// for _ in 0..15 {
    ///     tx.try_send(&[0; 256])?;
    /// }
    /// assert_eq!(tx.try_send(&[0; 256]), Err(FrameSendError::Full));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_send(&mut self, frame: &[u8]) -> Result<(), FrameSendError> {
        if frame.len() > self.max_frame {
            return Err(FrameSendError::TooLarge {
                len: frame.len(),
                max: self.max_frame,
            });
        }
        let n = words(frame.len());
        let mut chunk = match self.inner.write_chunk(n) {
            Ok(c) => c,
            Err(ChunkError::Corrupted(c)) => return Err(FrameSendError::Corrupted(c)),
            Err(ChunkError::TooFewSlots(_)) => {
                return Err(if self.inner.peer_left() {
                    FrameSendError::Disconnected
                } else {
                    FrameSendError::Full
                });
            }
        };
        chunk.write(0, frame.len() as u64 | FRAME_TAG << 32);
        crate::process::crash::point("frame.publish", 1);
        for (i, bytes) in frame.chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word[..bytes.len()].copy_from_slice(bytes);
            chunk.write(1 + i, u64::from_le_bytes(word));
        }
        crate::process::crash::point("frame.publish", 2);
        chunk.commit_all();
        crate::process::crash::point("frame.publish", 3);
        Ok(())
    }

    /// Waits until the consumer has taken every frame before word position `pos`.
    pub(crate) fn wait_taken(
        &mut self,
        pos: u64,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), crate::sync::WaitError> {
        self.inner.wait_taken(pos, deadline)
    }

    /// Whether the consumer is gone: it left (seen at once), or (`thorough`) its
    /// process died.
    pub(crate) fn consumers_gone(&mut self, thorough: bool) -> bool {
        self.inner.consumers_gone(thorough)
    }

    /// [`try_send`](Self::try_send), returning the word position an acknowledgement
    /// waits for with [`wait_taken`](Self::wait_taken).
    #[inline]
    pub(crate) fn try_send_at(&mut self, frame: &[u8]) -> Result<u64, FrameSendError> {
        self.try_send(frame)?;
        Ok(self.inner.position())
    }

    /// `send_until`, returning the position as `try_send_at`.
    pub(crate) fn send_until_at(
        &mut self,
        frame: &[u8],
        deadline: Option<Instant>,
    ) -> Result<u64, FrameSendError> {
        self.send_until(frame, deadline)?;
        Ok(self.inner.position())
    }

    /// Sends `frame`, waiting for room until `timeout` passes.
    ///
    /// # Errors
    ///
    /// As [`try_send`](Self::try_send), with `Timeout` instead of `Full`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{FrameRing, FrameSendError};
    /// use shmlink::sync::WaitMode;
    /// use std::time::Duration;
    ///
    /// # let ring = FrameRing::new(4096, 256, WaitMode::Spin)?;
    /// # let (mut tx, _rx) = (ring.producer()?, ring.consumer()?);
    /// let wait = Duration::from_millis(1);
    /// for _ in 0..15 {
    ///     tx.send_timeout(&[0; 256], wait)?;
    /// }
    /// assert_eq!(tx.send_timeout(&[0; 256], wait), Err(FrameSendError::Timeout));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_timeout(&mut self, frame: &[u8], timeout: Duration) -> Result<(), FrameSendError> {
        self.send_until(frame, deadline_after(timeout))
    }

    /// Sends `frame`, waiting for room while the consumer is alive.
    ///
    /// # Errors
    ///
    /// `TooLarge`, `Disconnected`, `Corrupted`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{FrameRing, FrameSendError};
    /// use shmlink::sync::WaitMode;
    ///
    /// # let ring = FrameRing::new(4096, 256, WaitMode::Spin)?;
    /// # let (mut tx, rx) = (ring.producer()?, ring.consumer()?);
    /// tx.send(b"hello")?; // there is room: returns at once
    /// drop(rx);
    /// while tx.try_send(&[0; 256]).is_ok() {}
    /// // Full, and the consumer is gone: waiting would never end.
    /// assert_eq!(tx.send(&[0; 256]), Err(FrameSendError::Disconnected));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send(&mut self, frame: &[u8]) -> Result<(), FrameSendError> {
        self.send_until(frame, None)
    }

    pub(crate) fn send_until(
        &mut self,
        frame: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), FrameSendError> {
        loop {
            match self.try_send(frame) {
                Err(FrameSendError::Full) => {}
                other => return other,
            }
            match self
                .inner
                .wait_for_space(words(frame.len()) as u64, deadline)
            {
                Ok(()) if self.inner.is_closed() => return Err(FrameSendError::Closed),
                Ok(()) => {}
                Err(WaitError::Timeout) => return Err(FrameSendError::Timeout),
                Err(WaitError::Disconnected) => return Err(FrameSendError::Disconnected),
            }
        }
    }

    /// Longest frame, in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::FrameRing;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = FrameRing::new(4096, 256, WaitMode::Spin)?;
    ///
    /// let tx = ring.producer()?;
    /// assert_eq!(tx.max_frame(), 256);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
///
/// # Examples
///
/// ```
/// # use shmlink::ring::FrameRing;
/// # use shmlink::sync::WaitMode;
/// let ring = FrameRing::new(4096, 256, WaitMode::Blocking)?;
/// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
/// let receiver = std::thread::spawn(move || {
///     let mut buf = Vec::new();
///     // Frame lengths, until `recv` fails with `Disconnected` (the producer left).
///     std::iter::from_fn(|| rx.recv(&mut buf).ok()).sum::<usize>()
/// });
/// tx.send(b"one")?;
/// tx.send(b"three")?;
/// drop(tx);
/// assert_eq!(receiver.join().unwrap(), 8);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{FrameRing, FrameRecvError};
    /// use shmlink::sync::WaitMode;
    ///
    /// # let ring = FrameRing::new(4096, 256, WaitMode::Spin)?;
    /// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// let mut buf = Vec::new();
    /// assert_eq!(rx.try_recv(&mut buf), Err(FrameRecvError::Empty));
    /// tx.try_send(b"ping")?;
    /// assert_eq!(rx.try_recv(&mut buf), Ok(4));
    /// assert_eq!(buf, b"ping");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, FrameRecvError> {
        let header = match self.inner.read_chunk(1) {
            Ok(chunk) => chunk.get(0),
            Err(ChunkError::Corrupted(c)) => return Err(FrameRecvError::Corrupted(c)),
            Err(ChunkError::TooFewSlots(_)) => {
                return Err(if self.inner.peer_left() && self.inner.slots() == 0 {
                    FrameRecvError::Disconnected
                } else {
                    FrameRecvError::Empty
                });
            }
        };
        // Read once, validate, then use only the local copy.
        let corrupt = |what, found| FrameRecvError::Corrupted(Corruption { what, found });
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
            Err(ChunkError::Corrupted(c)) => return Err(FrameRecvError::Corrupted(c)),
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
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{FrameRing, FrameRecvError};
    /// use shmlink::sync::WaitMode;
    /// use std::time::Duration;
    ///
    /// # let ring = FrameRing::new(4096, 256, WaitMode::Spin)?;
    /// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// let mut buf = Vec::new();
    /// let wait = Duration::from_millis(1);
    /// assert_eq!(rx.recv_timeout(&mut buf, wait), Err(FrameRecvError::Timeout));
    /// tx.try_send(b"ping")?;
    /// assert_eq!(rx.recv_timeout(&mut buf, wait), Ok(4));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_timeout(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<usize, FrameRecvError> {
        self.recv_until(buf, deadline_after(timeout))
    }

    /// Receives, waiting while the producer is alive.
    ///
    /// # Errors
    ///
    /// `Disconnected`, `Corrupted`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::ring::{FrameRing, FrameRecvError};
    /// use shmlink::sync::WaitMode;
    ///
    /// # let ring = FrameRing::new(4096, 256, WaitMode::Spin)?;
    /// # let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// tx.try_send(b"last")?;
    /// drop(tx);
    /// let mut buf = Vec::new();
    /// assert_eq!(rx.recv(&mut buf), Ok(4)); // sent before the producer left
    /// assert_eq!(rx.recv(&mut buf), Err(FrameRecvError::Disconnected));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, FrameRecvError> {
        self.recv_until(buf, None)
    }

    pub(crate) fn recv_until(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<usize, FrameRecvError> {
        loop {
            match self.try_recv(buf) {
                Err(FrameRecvError::Empty) => {}
                other => return other,
            }
            match self.inner.wait_for_data(1, deadline) {
                Ok(()) if self.inner.is_closed() => return Err(FrameRecvError::Closed),
                Ok(()) => {}
                Err(WaitError::Timeout) => return Err(FrameRecvError::Timeout),
                Err(WaitError::Disconnected) => return Err(FrameRecvError::Disconnected),
            }
        }
    }

    /// Longest frame, in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmlink::ring::FrameRing;
    /// # use shmlink::sync::WaitMode;
    /// # let ring = FrameRing::new(4096, 256, WaitMode::Spin)?;
    ///
    /// let rx = ring.consumer()?;
    /// assert_eq!(rx.max_frame(), 256);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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

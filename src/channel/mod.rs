//! Typed channels over the rings, shaped like `std::sync::mpsc` and
//! crossbeam-channel, within a process (on the heap) or between processes (in a named
//! segment).
//!
//! - **Flavours** ([`Flavor`]): SPSC (one sender, one receiver: the fastest) or MPMC
//!   (up to 32 handles, any mix), chosen at creation. An MPMC channel **shares the
//!   work**: each message goes to exactly one of its receivers (whichever takes it
//!   first), never to all of them; for every receiver to see every message, use one
//!   channel per receiver (publish-subscribe is a later layer). An SPSC channel's two
//!   ends are unique (`sender`/`receiver` refuse a second one while the first lives):
//!   its ring has one producer and one consumer position, each written by one owner
//!   with no atomic read-modify-write, which is what makes it the fastest; a second
//!   sender would race the first on the same position.
//! - **Shared ends** ([`SharedSender`], [`SharedReceiver`], [`bounded_mpmc`]): an
//!   MPMC channel's ends shaped like crossbeam-channel's, `Clone + Send + Sync` with
//!   `&self` operations (each keeps a small pool of the channel's handles); `Sender`
//!   and `Receiver` take `&mut self` and work for both flavours.
//! - **Messages** ([`Codec`]): [`Raw`] copies a plain-old-data `T` into the ring;
//!   [`Postcard`] encodes any serde type into a frame ring (SPSC) or fixed-size cells
//!   (MPMC), up to a maximum size
//!   fixed at creation (a larger message is handed back in
//!   [`SendError::TooLarge`]).
//! - **Asynchronous send** ([`Sender::send`], `try_send`, `send_timeout`) returns once
//!   the message is enqueued. **Synchronous send** ([`Sender::send_acked`],
//!   `send_acked_timeout`) returns once a receiver has taken that message: the sender
//!   waits on the receiver's consumption position (SPSC) or the slot's stamp (MPMC),
//!   words the receiver writes anyway, so a spinning receiver acknowledges without a
//!   system call.
//! - **Select** ([`select`]): wait until any of several receivers is ready, with a
//!   deadline (one `futex_waitv` sleep across all of them).
//! - **Disconnection**: when every sender is gone (dropped, or its process died),
//!   receivers drain what was sent and then get [`RecvError::Disconnected`]; when every
//!   receiver is gone, sends fail with [`SendError::Disconnected`] and the message
//!   back. A dropped handle is seen at once; a killed process within about 10 ms,
//!   by a blocked call and by a non-blocking one alike (a liveness check on its pid and
//!   start time, at most every 10 ms, rate-limited with a coarse clock read per call).
//! - **Errors**, one type per operation as in crossbeam-channel: [`TrySendError`]
//!   (`Full`), [`SendError`], [`SendTimeoutError`] (`Timeout`), [`TryRecvError`]
//!   (`Empty`), [`RecvError`], [`RecvTimeoutError`] (`Timeout`). Each also has
//!   `Disconnected` and what a shared-memory channel adds (`Closed`, `Corrupted`,
//!   and for serde messages `TooLarge`/`Encode` or `Decode`); a send's error hands
//!   the message back (`into_inner`), and a blocking operation's error converts
//!   into those of the non-blocking and timed ones with `From`.
//!
//! # Examples
//!
//! Within a process:
//!
//! ```
//! use shmlink::channel;
//!
//! let (mut tx, mut rx) = channel::bounded::<u64>(1024)?;
//! let t = std::thread::spawn(move || {
//!     for i in 0..100 {
//!         tx.send(i).expect("receiver alive");
//!     }
//! });
//! let got: Vec<u64> = rx.iter().collect(); // ends when the sender is dropped
//! assert_eq!(got, (0..100).collect::<Vec<_>>());
//! t.join().unwrap();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Between processes, by name (both ends shown in one process here):
//!
//! ```
//! use shmlink::channel::{Channel, Flavor, Options};
//! use shmlink::segment::Segment;
//! # let name = format!("doc-channel-{}", std::process::id());
//!
//! let opts = Options::new().capacity(256).flavor(Flavor::Mpmc);
//! let ch = Channel::<u64>::create(Segment::builder(&name).unlink_on_drop(true), opts)?;
//! let mut tx = ch.sender()?;
//! // In another process:
//! let ch2 = Channel::<u64>::open(Segment::builder(&name))?;
//! let mut rx = ch2.receiver()?;
//! tx.send(7)?;
//! assert_eq!(rx.recv()?, 7);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_code)]

use std::marker::PhantomData;
use std::time::{Duration, Instant};

mod cells;
mod codec;
mod error;
mod flavor;
mod select;
mod shared;

pub use codec::{Codec, Postcard, Raw};
pub use error::{
    AckError, ChannelError, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
    TrySendError,
};
use error::{RecvFailure, SendFailure};
pub use select::{SelectError, Selectable, select, select_until};
pub use shared::{SharedIntoIter, SharedIter, SharedReceiver, SharedSender, bounded_mpmc};

use crate::region::Pod;
use crate::sync::WaitMode;
use codec::{AckWait, Spec, Wait};
use flavor::{ReceiverFlavor, RingFlavor, SenderFlavor};

#[cfg(not(shmlink_loom))]
use crate::segment::SegmentBuilder;

/// How many handles a channel admits.
///
/// # Examples
///
/// ```
/// use shmlink::channel::{Channel, Flavor, Options};
///
/// let ch = Channel::<u64>::new(Options::new().flavor(Flavor::Mpmc))?;
/// let (_a, _b) = (ch.sender()?, ch.sender()?); // several senders
/// assert_eq!(ch.flavor(), Flavor::Mpmc);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// One sender and one receiver at a time (the fastest; the default).
    Spsc,
    /// Up to 32 senders and receivers in any mix, in any processes.
    Mpmc,
}

/// How to build a channel: capacity, flavour, wait strategy, maximum message size.
///
/// # Examples
///
/// ```
/// use shmlink::channel::{Flavor, Options};
/// use shmlink::sync::WaitMode;
///
/// let opts = Options::new()
///     .capacity(4096)
///     .flavor(Flavor::Spsc)
///     .wait_mode(WaitMode::Spin)
///     .max_message(1024);
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Options {
    spec: Spec,
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

impl Options {
    /// 1024 messages, SPSC, blocking waits, 4 KiB serde messages at most.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{Channel, Options};
    ///
    /// assert_eq!(Channel::<u8>::new(Options::new())?.capacity(), 1024);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const fn new() -> Self {
        Self {
            spec: Spec {
                capacity: 1024,
                flavor: Flavor::Spsc,
                mode: WaitMode::Blocking,
                max_message: 4096,
            },
        }
    }

    /// Messages the channel holds (a power of two). For serde messages, the ring is
    /// sized for this many messages of the maximum size; `capacity()` then reports how
    /// many such messages fit, which can be a little more.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{Channel, Options};
    ///
    /// assert_eq!(Channel::<u8>::new(Options::new().capacity(8))?.capacity(), 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const fn capacity(mut self, capacity: usize) -> Self {
        self.spec.capacity = capacity;
        self
    }

    /// SPSC or MPMC.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{Channel, Flavor, Options};
    ///
    /// let ch = Channel::<u8>::new(Options::new().flavor(Flavor::Mpmc))?;
    /// assert_eq!(ch.flavor(), Flavor::Mpmc);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const fn flavor(mut self, flavor: Flavor) -> Self {
        self.spec.flavor = flavor;
        self
    }

    /// How blocked calls wait: [`WaitMode::Blocking`] (spin, yield, then sleep on a
    /// futex; the default) or [`WaitMode::Spin`] (never sleep: lowest latency, a core
    /// each).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{self, Channel, Options};
    /// use shmlink::sync::WaitMode;
    ///
    /// let ch = Channel::<u64>::new(Options::new().wait_mode(WaitMode::Spin))?;
    /// # let _ = ch;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const fn wait_mode(mut self, mode: WaitMode) -> Self {
        self.spec.mode = mode;
        self
    }

    /// The longest encoded message, in bytes, for serde channels ([`Postcard`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{Channel, Options, Postcard, TrySendError};
    ///
    /// let ch = Channel::<String, Postcard>::new(Options::new().max_message(16))?;
    /// let mut tx = ch.sender()?;
    /// let long = "x".repeat(100);
    /// let err = tx.try_send(long.clone()).unwrap_err();
    /// assert!(matches!(err, TrySendError::TooLarge { max: 16, .. }));
    /// assert_eq!(err.into_inner(), long); // handed back
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const fn max_message(mut self, bytes: usize) -> Self {
        self.spec.max_message = bytes;
        self
    }
}

/// A channel: on the heap, or in a named segment. Cheap to clone; senders and
/// receivers are claimed from it.
///
/// # Examples
///
/// ```
/// use shmlink::channel::{Channel, Options};
///
/// let ch = Channel::<u32>::new(Options::new().capacity(16))?;
/// let (mut tx, mut rx) = (ch.sender()?, ch.receiver()?);
/// tx.send(5)?;
/// assert_eq!((ch.len(), ch.capacity()), (1, 16));
/// assert_eq!(rx.recv()?, 5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Channel<T, C: Codec<T> = Raw> {
    ring: RingFlavor<C::Unit>,
    _msg: PhantomData<fn(T) -> T>,
}

impl<T, C: Codec<T>> Clone for Channel<T, C> {
    fn clone(&self) -> Self {
        Self {
            ring: self.ring.clone(),
            _msg: PhantomData,
        }
    }
}

/// A heap SPSC channel of `capacity` plain-old-data messages (blocking waits): the
/// sender and the receiver.
///
/// # Errors
///
/// [`ChannelError::Build`] for a capacity that is not a power of two.
///
/// # Examples
///
/// ```
/// use shmlink::channel;
///
/// let (mut tx, mut rx) = channel::bounded::<u64>(8)?;
/// tx.send(1)?;
/// assert_eq!(rx.recv()?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn bounded<T: Pod>(capacity: usize) -> Result<(Sender<T>, Receiver<T>), ChannelError> {
    let ch = Channel::<T>::new(Options::new().capacity(capacity))?;
    Ok((ch.sender()?, ch.receiver()?))
}

impl<T, C: Codec<T>> Channel<T, C> {
    /// A channel on the heap, for threads of one process.
    ///
    /// # Errors
    ///
    /// [`ChannelError::Build`] (capacity), [`ChannelError::Unsupported`] (serde
    /// messages longer than 16376 bytes on MPMC).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{Channel, Options};
    ///
    /// let ch = Channel::<u64>::new(Options::new())?;
    /// assert!(ch.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(options: Options) -> Result<Self, ChannelError> {
        Ok(Self {
            ring: C::heap(options.spec)?,
            _msg: PhantomData,
        })
    }

    /// Creates a channel in the named segment `builder` describes.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), and [`ChannelError::Build`] with the segment's error.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{Channel, Options};
    /// use shmlink::segment::Segment;
    /// # let name = format!("doc-channel-create-{}", std::process::id());
    ///
    /// let ch = Channel::<u64>::create(Segment::builder(&name).unlink_on_drop(true), Options::new())?;
    /// assert_eq!(ch.capacity(), 1024);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(shmlink_loom))]
    pub fn create(builder: SegmentBuilder, options: Options) -> Result<Self, ChannelError> {
        Ok(Self {
            ring: C::create(
                builder.type_name_default(std::any::type_name::<T>()),
                options.spec,
            )?,
            _msg: PhantomData,
        })
    }

    /// Opens the named channel; its flavour and message type are checked (a wrong
    /// type is `TypeMismatch`).
    ///
    /// # Errors
    ///
    /// [`ChannelError::Build`] with the segment's error.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{Channel, ChannelError, Options};
    /// use shmlink::segment::Segment;
    /// # let name = format!("doc-channel-open-{}", std::process::id());
    /// # let _a = Channel::<u64>::create(Segment::builder(&name).unlink_on_drop(true), Options::new())?;
    ///
    /// assert!(Channel::<u64>::open(Segment::builder(&name)).is_ok());
    /// assert!(matches!(Channel::<u32>::open(Segment::builder(&name)), Err(ChannelError::Build(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(shmlink_loom))]
    pub fn open(builder: SegmentBuilder) -> Result<Self, ChannelError> {
        Ok(Self {
            ring: C::open(builder.type_name_default(std::any::type_name::<T>()))?,
            _msg: PhantomData,
        })
    }

    /// Opens the named channel, or creates it with `options` if the name holds none:
    /// the call both ends can make, in either order, however often they restart.
    ///
    /// A channel left stale by a crash (every process using it died) is resumed with
    /// the messages committed to it and not yet received, when its flavour, message
    /// type and sizes are these ([`Disposition::Resumed`](crate::segment::Disposition::Resumed));
    /// the roles of dead senders and receivers can be claimed again. Anything else
    /// stale under the name is replaced ([`Disposition::Replaced`](crate::segment::Disposition::Replaced)).
    /// A live channel of another flavour, type or size is an error, never replaced.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create) and [`open`](Self::open).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{Channel, Options};
    /// use shmlink::segment::{Disposition, Segment};
    /// # let name = format!("doc-channel-open-or-create-{}", std::process::id());
    ///
    /// let builder = Segment::builder(&name).unlink_on_drop(true);
    /// let (a, how) = Channel::<u64>::open_or_create(builder.clone(), Options::new())?;
    /// assert_eq!(how, Disposition::Created);
    /// let (b, how) = Channel::<u64>::open_or_create(builder, Options::new())?;
    /// assert_eq!(how, Disposition::Opened);
    /// a.sender()?.send(5)?;
    /// assert_eq!(b.receiver()?.recv()?, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(shmlink_loom))]
    pub fn open_or_create(
        builder: SegmentBuilder,
        options: Options,
    ) -> Result<(Self, crate::segment::Disposition), ChannelError> {
        let builder = builder.type_name_default(std::any::type_name::<T>());
        let (ring, how) = C::open_or_create(builder, options.spec)?;
        Ok((
            Self {
                ring,
                _msg: PhantomData,
            },
            how,
        ))
    }

    /// Closes the channel **in this process**, for a clean shutdown: every send and
    /// receive of its senders and receivers that waits, or would have to wait,
    /// returns `Closed` ([`SendError::Closed`] with the message, [`RecvError::Closed`])
    /// at once, blocked calls in other threads included. A call that can complete at
    /// once still does (what was sent can be drained with `try_recv`). Other
    /// processes, and channels opened separately by name, are not affected. A
    /// `send_acked` already waiting for its acknowledgement is not ended (that would
    /// report an acknowledgement that did not come); it ends at its deadline, or when
    /// a receiver takes the message or leaves. [`Receiver::close`] does the same.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmlink::channel::{Channel, Flavor, Options, RecvError};
    ///
    /// for flavor in [Flavor::Spsc, Flavor::Mpmc] {
    ///     let ch = Channel::<u64>::new(Options::new().flavor(flavor))?;
    ///     let (_tx, mut rx) = (ch.sender()?, ch.receiver()?);
    ///     let waiter = std::thread::spawn(move || rx.recv());
    ///     std::thread::sleep(Duration::from_millis(20));
    ///     ch.close(); // e.g. on SIGTERM
    ///     assert_eq!(waiter.join().unwrap(), Err(RecvError::Closed));
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) {
        self.ring.close();
    }

    /// A sending handle.
    ///
    /// # Errors
    ///
    /// [`ChannelError::Claim`]: an SPSC channel's sender role is held by a live
    /// process, or an MPMC channel has no free handle slot.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{Channel, ChannelError, Options};
    ///
    /// let ch = Channel::<u64>::new(Options::new())?;
    /// let tx = ch.sender()?;
    /// assert!(matches!(ch.sender(), Err(ChannelError::Claim(_)))); // SPSC: one sender
    /// drop(tx);
    /// assert!(ch.sender().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sender(&self) -> Result<Sender<T, C>, ChannelError> {
        Ok(Sender {
            tx: self.ring.sender()?,
            buf: vec![0; self.ring.max_message()],
            liveness: Liveness::default(),
            _msg: PhantomData,
        })
    }

    /// A receiving handle.
    ///
    /// # Errors
    ///
    /// As [`sender`](Self::sender), for the receiver role.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{Channel, Options};
    ///
    /// let ch = Channel::<u64>::new(Options::new())?;
    /// let mut rx = ch.receiver()?;
    /// assert!(rx.try_recv().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn receiver(&self) -> Result<Receiver<T, C>, ChannelError> {
        Ok(Receiver {
            rx: self.ring.receiver()?,
            ring: self.ring.clone(),
            buf: Vec::with_capacity(self.ring.max_message()),
            liveness: Liveness::default(),
            _msg: PhantomData,
        })
    }

    /// The flavour.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{Channel, Flavor, Options};
    ///
    /// assert_eq!(Channel::<u64>::new(Options::new())?.flavor(), Flavor::Spsc);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn flavor(&self) -> Flavor {
        self.ring.flavor()
    }

    /// Messages the channel holds.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{Channel, Options};
    ///
    /// assert_eq!(Channel::<u64>::new(Options::new().capacity(64))?.capacity(), 64);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// Messages in flight right now (for serde channels: 1 if any, else 0).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{Channel, Options};
    ///
    /// let ch = Channel::<u64>::new(Options::new())?;
    /// ch.sender()?.send(1)?;
    /// assert_eq!(ch.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether no message is in flight.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{Channel, Options};
    ///
    /// assert!(Channel::<u64>::new(Options::new())?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T, C: Codec<T>> std::fmt::Debug for Channel<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("flavor", &self.flavor())
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// The sending half of a channel.
///
/// # Examples
///
/// ```
/// use shmlink::channel;
///
/// let (mut tx, mut rx) = channel::bounded::<u64>(4)?;
/// tx.send(1)?; // enqueued
/// let t = std::thread::spawn(move || rx.recv());
/// # let _ = t.join();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Sender<T, C: Codec<T> = Raw> {
    tx: SenderFlavor<C::Unit>,
    /// Where a message is encoded (empty for codecs that do not encode).
    buf: Vec<u8>,
    liveness: Liveness,
    _msg: PhantomData<fn(T) -> T>,
}

/// How often a call that does not block checks that the peer processes live.
const LIVENESS_PERIOD_NS: u64 = 10_000_000;

/// When a handle next checks its peers' liveness on a non-blocking path (a coarse
/// clock read per call, a `/proc` read every 10 ms at most): so a `try_send` or
/// `send` into a channel with room, or a `try_recv`, notices a killed peer too.
#[derive(Debug, Default)]
struct Liveness {
    next_ns: u64,
}

impl Liveness {
    #[inline]
    fn due(&mut self) -> bool {
        let now = crate::sync::coarse_now_ns();
        if now < self.next_ns {
            return false;
        }
        self.next_ns = now.saturating_add(LIVENESS_PERIOD_NS);
        // Under loom (and Miri) the coarse clock is constant: check once only.
        now != 0 || self.next_ns == LIVENESS_PERIOD_NS
    }
}

impl<T, C: Codec<T>> Sender<T, C> {
    /// Enqueues `msg` if there is room; never waits.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`], [`TrySendError::Disconnected`], `TooLarge`, `Encode`,
    /// `Corrupted`: each with the message.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{self, TrySendError};
    ///
    /// let (mut tx, _rx) = channel::bounded::<u64>(1)?;
    /// tx.try_send(1)?;
    /// assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_send(&mut self, msg: T) -> Result<(), TrySendError<T>> {
        self.try_enqueue(msg).map(drop).map_err(Into::into)
    }

    /// `try_send`, after the periodic liveness check of the receivers.
    #[inline]
    fn try_enqueue(&mut self, msg: T) -> Result<u64, SendFailure<T>> {
        if self.liveness.due() && self.tx.consumers_gone(true) {
            return Err(SendFailure::Disconnected(msg));
        }
        self.push(msg, Wait::No)
    }

    /// Hands `msg` to the codec, unless the receivers left (seen at once: a role
    /// word; dead ones are found by the periodic check above and by waits).
    #[inline]
    fn push(&mut self, msg: T, wait: Wait) -> Result<u64, SendFailure<T>> {
        if self.tx.consumers_gone(false) {
            return Err(SendFailure::Disconnected(msg));
        }
        C::send(&mut self.tx, &mut self.buf, msg, wait)
    }

    /// Enqueues `msg`, waiting for room while a receiver lives (asynchronous send:
    /// returns once enqueued).
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] with the message once every receiver is gone;
    /// `TooLarge`, `Encode`, `Corrupted`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel;
    ///
    /// let (mut tx, mut rx) = channel::bounded::<u64>(1)?;
    /// tx.send(1)?;
    /// let t = std::thread::spawn(move || tx.send(2)); // waits for room
    /// assert_eq!(rx.recv()?, 1);
    /// t.join().unwrap()?;
    /// assert_eq!(rx.recv()?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn send(&mut self, msg: T) -> Result<(), SendError<T>> {
        self.enqueue(msg, None).map(drop).map_err(Into::into)
    }

    /// The fast path first (no clock read), then the wait.
    #[inline]
    fn enqueue(&mut self, msg: T, timeout: Option<Duration>) -> Result<u64, SendFailure<T>> {
        match self.try_enqueue(msg) {
            Err(SendFailure::Full(msg)) => {
                self.push(msg, Wait::Until(timeout.and_then(deadline_after)))
            }
            other => other,
        }
    }

    /// Enqueues `msg`, waiting for room at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] with the message, or as [`send`](Self::send).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{self, SendTimeoutError};
    /// use std::time::Duration;
    ///
    /// let (mut tx, _rx) = channel::bounded::<u64>(1)?;
    /// tx.send(1)?;
    /// let err = tx.send_timeout(2, Duration::from_millis(2));
    /// assert_eq!(err, Err(SendTimeoutError::Timeout(2)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_timeout(&mut self, msg: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.enqueue(msg, Some(timeout))
            .map(drop)
            .map_err(Into::into)
    }

    /// Synchronous send: enqueues `msg` and returns once a receiver has taken it.
    /// Messages are taken in order, so its acknowledgement also covers every message
    /// sent before it.
    ///
    /// # Errors
    ///
    /// [`AckError::NotSent`] with the message (as [`send`](Self::send));
    /// [`AckError::Unacknowledged`] with `disconnected: true` if every receiver left
    /// before taking it.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel;
    ///
    /// let (mut tx, mut rx) = channel::bounded::<u64>(8)?;
    /// let t = std::thread::spawn(move || {
    ///     let v = rx.recv().unwrap();
    ///     (v, rx) // keep the receiver alive until joined
    /// });
    /// tx.send_acked(42)?; // returns once the other thread has it
    /// assert_eq!(t.join().unwrap().0, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_acked(&mut self, msg: T) -> Result<(), AckError<T>> {
        let pos = self.enqueue(msg, None)?;
        self.await_ack(pos, None)
    }

    /// Synchronous send with a deadline for both the enqueue and the
    /// acknowledgement.
    ///
    /// # Errors
    ///
    /// [`AckError::NotSent`] (including `Timeout` while the channel stayed full);
    /// [`AckError::Unacknowledged`] if it was enqueued but not taken in time (it may
    /// still be taken later) or the receivers left.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{self, AckError};
    /// use std::time::Duration;
    ///
    /// let (mut tx, _rx) = channel::bounded::<u64>(8)?;
    /// let err = tx.send_acked_timeout(1, Duration::from_millis(2)).unwrap_err();
    /// assert_eq!(err, AckError::Unacknowledged { disconnected: false });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_acked_timeout(&mut self, msg: T, timeout: Duration) -> Result<(), AckError<T>> {
        // One deadline for both steps, read from the clock once.
        let deadline = deadline_after(timeout);
        let pos = match self.try_enqueue(msg) {
            Err(SendFailure::Full(msg)) => self.push(msg, Wait::Until(deadline))?,
            other => other?,
        };
        self.await_ack(pos, deadline)
    }

    fn await_ack(&mut self, pos: u64, deadline: Option<Instant>) -> Result<(), AckError<T>> {
        match self.tx.wait_taken(pos, deadline) {
            Ok(()) => Ok(()),
            Err(AckWait::Timeout) => Err(AckError::Unacknowledged {
                disconnected: false,
            }),
            Err(AckWait::Disconnected) => Err(AckError::Unacknowledged { disconnected: true }),
            Err(AckWait::Lost) => Err(AckError::Lost),
        }
    }
}

impl<T, C: Codec<T>> std::fmt::Debug for Sender<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

/// The receiving half of a channel.
///
/// # Examples
///
/// ```
/// use shmlink::channel;
///
/// let (mut tx, mut rx) = channel::bounded::<u64>(4)?;
/// tx.send(3)?;
/// drop(tx);
/// assert_eq!(rx.try_iter().collect::<Vec<_>>(), [3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Receiver<T, C: Codec<T> = Raw> {
    rx: ReceiverFlavor<C::Unit>,
    ring: RingFlavor<C::Unit>,
    /// Where a message is received before decoding.
    buf: Vec<u8>,
    liveness: Liveness,
    _msg: PhantomData<fn(T) -> T>,
}

impl<T, C: Codec<T>> Receiver<T, C> {
    /// Takes a message if one is waiting.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`]; [`TryRecvError::Disconnected`] once every sender is
    /// gone and everything is received; `Decode`, `Corrupted`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{self, TryRecvError};
    ///
    /// let (mut tx, mut rx) = channel::bounded::<u64>(4)?;
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// tx.send(1)?;
    /// assert_eq!(rx.try_recv(), Ok(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        match C::recv(&mut self.rx, &mut self.buf, Wait::No) {
            Ok(v) => Ok(v),
            Err(RecvFailure::Empty) if !self.liveness.due() => Err(TryRecvError::Empty),
            Err(RecvFailure::Empty) => self.empty_or_disconnected().map_err(Into::into),
            Err(e) => Err(e.into()),
        }
    }

    /// Empty, and the periodic liveness check is due: if every sender is gone (its
    /// process died), take anything left, else report the disconnect. (Only the
    /// senders' state decides: another receiver may take a message between our looks.)
    #[cold]
    fn empty_or_disconnected(&mut self) -> Result<T, RecvFailure> {
        if !self.ring.producers_gone(true) {
            return Err(RecvFailure::Empty);
        }
        match C::recv(&mut self.rx, &mut self.buf, Wait::No) {
            Err(RecvFailure::Empty) => Err(RecvFailure::Disconnected),
            other => other,
        }
    }

    /// Takes a message, waiting while a sender lives.
    ///
    /// # Errors
    ///
    /// [`RecvError::Disconnected`] once every sender is gone and everything is
    /// received; `Decode`, `Corrupted`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{self, RecvError};
    ///
    /// let (mut tx, mut rx) = channel::bounded::<u64>(4)?;
    /// tx.send(9)?;
    /// drop(tx);
    /// assert_eq!(rx.recv(), Ok(9)); // drained first
    /// assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv(&mut self) -> Result<T, RecvError> {
        // A message is returned as the codec hands it over; only errors are converted.
        match C::recv(&mut self.rx, &mut self.buf, Wait::No) {
            Ok(v) => Ok(v),
            Err(RecvFailure::Empty) => {
                C::recv(&mut self.rx, &mut self.buf, Wait::Until(None)).map_err(Into::into)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes a message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`], or as [`recv`](Self::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{self, RecvTimeoutError};
    /// use std::time::Duration;
    ///
    /// let (_tx, mut rx) = channel::bounded::<u64>(4)?;
    /// let err = rx.recv_timeout(Duration::from_millis(2));
    /// assert_eq!(err, Err(RecvTimeoutError::Timeout));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        match C::recv(&mut self.rx, &mut self.buf, Wait::No) {
            Ok(v) => Ok(v),
            Err(RecvFailure::Empty) => C::recv(
                &mut self.rx,
                &mut self.buf,
                Wait::Until(deadline_after(timeout)),
            )
            .map_err(Into::into),
            Err(e) => Err(e.into()),
        }
    }

    /// A blocking iterator: messages until every sender is gone (or an error).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel;
    ///
    /// let (mut tx, mut rx) = channel::bounded::<u64>(4)?;
    /// tx.send(1)?;
    /// tx.send(2)?;
    /// drop(tx);
    /// assert_eq!(rx.iter().sum::<u64>(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&mut self) -> Iter<'_, T, C> {
        Iter { rx: self }
    }

    /// A non-blocking iterator: the messages waiting right now.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel;
    ///
    /// let (mut tx, mut rx) = channel::bounded::<u64>(4)?;
    /// tx.send(1)?;
    /// assert_eq!(rx.try_iter().count(), 1);
    /// assert_eq!(rx.try_iter().count(), 0); // tx still alive: just empty
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_iter(&mut self) -> TryIter<'_, T, C> {
        TryIter { rx: self }
    }

    /// Messages waiting (for serde channels: 1 if any, else 0).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel;
    ///
    /// let (mut tx, rx) = channel::bounded::<u64>(4)?;
    /// tx.send(1)?;
    /// assert_eq!(rx.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether no message is waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel;
    ///
    /// let (_tx, rx) = channel::bounded::<u64>(4)?;
    /// assert!(rx.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages the channel holds.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel;
    ///
    /// let (_tx, rx) = channel::bounded::<u64>(4)?;
    /// assert_eq!(rx.capacity(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// Closes this receiver's channel in this process (see [`Channel::close`]): for
    /// channels made by [`bounded`], which hand out no `Channel`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{self, RecvError, SendError};
    ///
    /// let (mut tx, mut rx) = channel::bounded::<u64>(1)?;
    /// tx.send(1)?;
    /// rx.close();
    /// assert_eq!(tx.send(2), Err(SendError::Closed(2))); // full: it would wait
    /// assert_eq!(rx.try_recv(), Ok(1)); // what is there still comes out
    /// assert_eq!(rx.recv(), Err(RecvError::Closed));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) {
        self.ring.close();
    }
}

impl<T, C: Codec<T>> std::fmt::Debug for Receiver<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// `for msg in &mut rx`: as [`Receiver::iter`].
impl<'a, T, C: Codec<T>> IntoIterator for &'a mut Receiver<T, C> {
    type Item = T;
    type IntoIter = Iter<'a, T, C>;

    fn into_iter(self) -> Iter<'a, T, C> {
        self.iter()
    }
}

/// `for msg in rx`: blocks for each message and ends once the channel is
/// disconnected and drained (or on any other receive error), consuming the receiver.
///
/// # Examples
///
/// ```
/// use shmlink::channel;
///
/// let (mut tx, rx) = channel::bounded::<u64>(8)?;
/// let producer = std::thread::spawn(move || {
///     for i in 0..5 {
///         tx.send(i).unwrap();
///     }
/// });
/// let got: Vec<u64> = rx.into_iter().collect();
/// assert_eq!(got, [0, 1, 2, 3, 4]);
/// producer.join().unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl<T, C: Codec<T>> IntoIterator for Receiver<T, C> {
    type Item = T;
    type IntoIter = IntoIter<T, C>;

    fn into_iter(self) -> IntoIter<T, C> {
        IntoIter { rx: self }
    }
}

/// The iterator of an owned [`Receiver`] (see its `IntoIterator`).
pub struct IntoIter<T, C: Codec<T> = Raw> {
    rx: Receiver<T, C>,
}

impl<T, C: Codec<T>> Iterator for IntoIter<T, C> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<T, C: Codec<T>> std::fmt::Debug for IntoIter<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntoIter").finish_non_exhaustive()
    }
}

/// Blocking iterator over a [`Receiver`] (see [`Receiver::iter`]).
///
/// # Examples
///
/// ```
/// use shmlink::channel;
///
/// let (mut tx, mut rx) = channel::bounded::<u8>(2)?;
/// tx.send(1)?;
/// drop(tx);
/// for v in rx.iter() {
///     assert_eq!(v, 1);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Iter<'a, T, C: Codec<T> = Raw> {
    rx: &'a mut Receiver<T, C>,
}

impl<T, C: Codec<T>> Iterator for Iter<'_, T, C> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<T, C: Codec<T>> std::fmt::Debug for Iter<'_, T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}

/// Non-blocking iterator over a [`Receiver`] (see [`Receiver::try_iter`]).
///
/// # Examples
///
/// ```
/// use shmlink::channel;
///
/// let (mut tx, mut rx) = channel::bounded::<u8>(2)?;
/// tx.send(1)?;
/// assert_eq!(rx.try_iter().next(), Some(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TryIter<'a, T, C: Codec<T> = Raw> {
    rx: &'a mut Receiver<T, C>,
}

impl<T, C: Codec<T>> Iterator for TryIter<'_, T, C> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

impl<T, C: Codec<T>> std::fmt::Debug for TryIter<'_, T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TryIter").finish_non_exhaustive()
    }
}

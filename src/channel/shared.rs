//! The ends of an MPMC channel shaped like crossbeam-channel's: [`SharedSender`] and
//! [`SharedReceiver`] are `Clone + Send + Sync` and every operation takes `&self`.
//!
//! An MPMC ring admits a handle per participant slot, and a participant runs one
//! operation at a time (it announces the position it works on in its slot, which is
//! what lets a survivor repair a slot its process died in). A shared end therefore
//! keeps a small pool of participants: an operation takes an idle one (registering a
//! new one if none is idle), runs, and puts it back. Clones share the pool, so as many
//! participants exist as operations ever ran at once; the pool's participants leave
//! when the last clone is dropped (that is what disconnects the other side).

use std::sync::Arc;
use std::time::Duration;

use super::{
    AckError, Channel, ChannelError, Codec, Flavor, Raw, RecvError, RecvTimeoutError, SendError,
    SendTimeoutError, TryRecvError, TrySendError,
};
use super::{Receiver, Sender};
use crate::region::Pod;
use crate::sync::mutex::{Condvar, Mutex};

/// Idle participants of one end, and how to make another.
struct Pool<T, C: Codec<T>, H> {
    channel: Channel<T, C>,
    idle: Mutex<Vec<H>>,
    /// Signalled when a participant comes back (for an operation that could register
    /// none: the channel's slots are all taken).
    returned: Condvar,
    make: fn(&Channel<T, C>) -> Result<H, ChannelError>,
}

impl<T, C: Codec<T>, H> Pool<T, C, H> {
    fn new(
        channel: &Channel<T, C>,
        make: fn(&Channel<T, C>) -> Result<H, ChannelError>,
    ) -> Result<Self, ChannelError> {
        if channel.flavor() != Flavor::Mpmc {
            return Err(ChannelError::Unsupported(
                "shared (clone-able) ends of an SPSC channel: its ends are unique",
            ));
        }
        // One participant up front: the end exists (and counts as connected) from
        // now on, and a later operation can always wait for it to come back.
        let first = make(channel)?;
        Ok(Self {
            channel: channel.clone(),
            idle: Mutex::new(vec![first]),
            returned: Condvar::new(),
            make,
        })
    }

    /// An idle participant or a new one; `None` if none is idle and no slot is free.
    fn try_take(&self) -> Option<H> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        idle.or_else(|| (self.make)(&self.channel).ok())
    }

    /// An idle participant, a new one, or the next to come back.
    fn take(&self) -> H {
        if let Some(h) = self.try_take() {
            return h;
        }
        // Every slot is taken, some by this end's own participants (there is at least
        // the first), busy in other threads: the first back is ours.
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if let Some(h) = idle.pop() {
                return h;
            }
            idle = self
                .returned
                .wait(idle)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn put(&self, h: H) {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(h);
        self.returned.notify_one();
    }

    /// Runs `f` on a participant, waiting for one if need be.
    fn run<R>(&self, f: impl FnOnce(&mut H) -> R) -> R {
        let mut h = self.take();
        let r = f(&mut h);
        self.put(h);
        r
    }
}

/// The sending end of an MPMC channel shaped like crossbeam-channel's: `Clone`,
/// `Send + Sync`, and every operation takes `&self` (see the module docs for how).
/// The other side sees it disconnected once every clone is dropped.
///
/// # Examples
///
/// ```
/// use shmlink::channel;
///
/// let (tx, rx) = channel::bounded_mpmc::<u64>(64)?;
/// let workers: Vec<_> = (0..4)
///     .map(|w| {
///         let tx = tx.clone();
///         std::thread::spawn(move || tx.send(w).unwrap())
///     })
///     .collect();
/// drop(tx);
/// for w in workers {
///     w.join().unwrap();
/// }
/// let mut got: Vec<u64> = rx.iter().collect(); // ends once every sender is gone
/// got.sort_unstable();
/// assert_eq!(got, [0, 1, 2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedSender<T, C: Codec<T> = Raw> {
    pool: Arc<Pool<T, C, Sender<T, C>>>,
}

impl<T, C: Codec<T>> Clone for SharedSender<T, C> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
        }
    }
}

impl<T, C: Codec<T>> std::fmt::Debug for SharedSender<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSender")
            .field("channel", &self.pool.channel)
            .finish()
    }
}

impl<T, C: Codec<T>> SharedSender<T, C> {
    /// A shared sending end of `channel` (registers its first participant).
    ///
    /// # Errors
    ///
    /// [`ChannelError::Unsupported`] for an SPSC channel; [`ChannelError::Claim`] if
    /// every handle slot is taken.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{Channel, ChannelError, Flavor, Options, SharedSender};
    ///
    /// let mpmc = Channel::<u64>::new(Options::new().flavor(Flavor::Mpmc))?;
    /// assert!(SharedSender::new(&mpmc).is_ok());
    /// let spsc = Channel::<u64>::new(Options::new())?;
    /// assert!(matches!(SharedSender::new(&spsc), Err(ChannelError::Unsupported(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(channel: &Channel<T, C>) -> Result<Self, ChannelError> {
        Ok(Self {
            pool: Arc::new(Pool::new(channel, Channel::sender)?),
        })
    }

    /// Enqueues `msg` if there is room; never waits.
    ///
    /// # Errors
    ///
    /// As [`Sender::try_send`]; also [`TrySendError::Full`] when every handle slot of
    /// the channel is taken and this end's participants are all busy.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{self, TrySendError};
    ///
    /// let (tx, _rx) = channel::bounded_mpmc::<u64>(2)?;
    /// tx.try_send(1)?;
    /// tx.try_send(2)?;
    /// assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
        match self.pool.try_take() {
            Some(mut tx) => {
                let r = tx.try_send(msg);
                self.pool.put(tx);
                r
            }
            None => Err(TrySendError::Full(msg)),
        }
    }

    /// Enqueues `msg`, waiting for room (see [`Sender::send`]).
    ///
    /// # Errors
    ///
    /// As [`Sender::send`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel;
    ///
    /// let (tx, rx) = channel::bounded_mpmc::<u64>(8)?;
    /// tx.send(7)?;
    /// assert_eq!(rx.recv()?, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send(&self, msg: T) -> Result<(), SendError<T>> {
        self.with(|tx| tx.send(msg))
    }

    /// Enqueues `msg`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// As [`Sender::send_timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{self, SendTimeoutError};
    /// use std::time::Duration;
    ///
    /// let (tx, _rx) = channel::bounded_mpmc::<u64>(2)?;
    /// tx.send(1)?;
    /// tx.send(2)?;
    /// let late = tx.send_timeout(3, Duration::from_millis(5));
    /// assert_eq!(late, Err(SendTimeoutError::Timeout(3)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_timeout(&self, msg: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.with(|tx| tx.send_timeout(msg, timeout))
    }

    /// Enqueues `msg` and waits until a receiver took it (see [`Sender::send_acked`]).
    ///
    /// # Errors
    ///
    /// As [`Sender::send_acked`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel;
    ///
    /// let (tx, rx) = channel::bounded_mpmc::<u64>(8)?;
    /// let t = std::thread::spawn(move || rx.recv());
    /// tx.send_acked(3)?; // returns once the other thread has it
    /// assert_eq!(t.join().unwrap()?, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_acked(&self, msg: T) -> Result<(), AckError<T>> {
        self.with(|tx| tx.send_acked(msg))
    }

    /// [`send_acked`](Self::send_acked) with a deadline.
    ///
    /// # Errors
    ///
    /// As [`Sender::send_acked_timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{self, AckError};
    /// use std::time::Duration;
    ///
    /// let (tx, _rx) = channel::bounded_mpmc::<u64>(8)?;
    /// let r = tx.send_acked_timeout(3, Duration::from_millis(5)); // nobody receives
    /// assert!(matches!(r, Err(AckError::Unacknowledged { disconnected: false })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_acked_timeout(&self, msg: T, timeout: Duration) -> Result<(), AckError<T>> {
        self.with(|tx| tx.send_acked_timeout(msg, timeout))
    }

    /// The channel this end sends on.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel;
    ///
    /// let (tx, _rx) = channel::bounded_mpmc::<u64>(8)?;
    /// assert_eq!(tx.channel().capacity(), 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn channel(&self) -> &Channel<T, C> {
        &self.pool.channel
    }

    fn with<R>(&self, f: impl FnOnce(&mut Sender<T, C>) -> R) -> R {
        self.pool.run(f)
    }
}

/// The receiving end of an MPMC channel shaped like crossbeam-channel's: `Clone`,
/// `Send + Sync`, every operation takes `&self`, and each message goes to one of the
/// receivers (work sharing). `&SharedReceiver` and `SharedReceiver` iterate.
///
/// # Examples
///
/// ```
/// use shmlink::channel;
///
/// let (tx, rx) = channel::bounded_mpmc::<u64>(64)?;
/// for i in 0..10 {
///     tx.send(i)?;
/// }
/// drop(tx);
/// let other = rx.clone();
/// let t = std::thread::spawn(move || other.iter().count());
/// let here = (&rx).into_iter().count();
/// assert_eq!(here + t.join().unwrap(), 10); // each message once, to one of them
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedReceiver<T, C: Codec<T> = Raw> {
    pool: Arc<Pool<T, C, Receiver<T, C>>>,
}

impl<T, C: Codec<T>> Clone for SharedReceiver<T, C> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
        }
    }
}

impl<T, C: Codec<T>> std::fmt::Debug for SharedReceiver<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedReceiver")
            .field("channel", &self.pool.channel)
            .finish()
    }
}

impl<T, C: Codec<T>> SharedReceiver<T, C> {
    /// A shared receiving end of `channel` (registers its first participant).
    ///
    /// # Errors
    ///
    /// As [`SharedSender::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{Channel, Flavor, Options, SharedReceiver};
    ///
    /// let ch = Channel::<u64>::new(Options::new().flavor(Flavor::Mpmc))?;
    /// let rx = SharedReceiver::new(&ch)?;
    /// assert!(rx.try_recv().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(channel: &Channel<T, C>) -> Result<Self, ChannelError> {
        Ok(Self {
            pool: Arc::new(Pool::new(channel, Channel::receiver)?),
        })
    }

    /// Takes a message if one is there; never waits.
    ///
    /// # Errors
    ///
    /// As [`Receiver::try_recv`]; also [`TryRecvError::Empty`] when every handle slot of
    /// the channel is taken and this end's participants are all busy.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{self, TryRecvError};
    ///
    /// let (tx, rx) = channel::bounded_mpmc::<u64>(8)?;
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// tx.send(1)?;
    /// assert_eq!(rx.try_recv(), Ok(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        match self.pool.try_take() {
            Some(mut rx) => {
                let r = rx.try_recv();
                self.pool.put(rx);
                r
            }
            None => Err(TryRecvError::Empty),
        }
    }

    /// Takes a message, waiting for one (see [`Receiver::recv`]).
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel;
    ///
    /// let (tx, rx) = channel::bounded_mpmc::<u64>(8)?;
    /// std::thread::spawn(move || tx.send(4));
    /// assert_eq!(rx.recv()?, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv(&self) -> Result<T, RecvError> {
        self.with(Receiver::recv)
    }

    /// Takes a message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv_timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{self, RecvTimeoutError};
    /// use std::time::Duration;
    ///
    /// let (_tx, rx) = channel::bounded_mpmc::<u64>(8)?;
    /// let err = rx.recv_timeout(Duration::from_millis(5));
    /// assert_eq!(err, Err(RecvTimeoutError::Timeout));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.with(|rx| rx.recv_timeout(timeout))
    }

    /// A blocking iterator: yields messages until every sender is gone (or the
    /// channel is closed).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel;
    ///
    /// let (tx, rx) = channel::bounded_mpmc::<u64>(8)?;
    /// tx.send(1)?;
    /// drop(tx);
    /// assert_eq!(rx.iter().collect::<Vec<_>>(), [1]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&self) -> SharedIter<'_, T, C> {
        SharedIter { rx: self }
    }

    /// The channel this end receives from.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel;
    ///
    /// let (_tx, rx) = channel::bounded_mpmc::<u64>(8)?;
    /// assert!(rx.channel().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn channel(&self) -> &Channel<T, C> {
        &self.pool.channel
    }

    fn with<R>(&self, f: impl FnOnce(&mut Receiver<T, C>) -> R) -> R {
        self.pool.run(f)
    }
}

/// The blocking iterator of a [`SharedReceiver`] ([`SharedReceiver::iter`]).
pub struct SharedIter<'a, T, C: Codec<T> = Raw> {
    rx: &'a SharedReceiver<T, C>,
}

impl<T, C: Codec<T>> Iterator for SharedIter<'_, T, C> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<T, C: Codec<T>> std::fmt::Debug for SharedIter<'_, T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedIter").finish_non_exhaustive()
    }
}

impl<'a, T, C: Codec<T>> IntoIterator for &'a SharedReceiver<T, C> {
    type Item = T;
    type IntoIter = SharedIter<'a, T, C>;
    fn into_iter(self) -> SharedIter<'a, T, C> {
        self.iter()
    }
}

/// The owning blocking iterator of a [`SharedReceiver`].
pub struct SharedIntoIter<T, C: Codec<T> = Raw> {
    rx: SharedReceiver<T, C>,
}

impl<T, C: Codec<T>> Iterator for SharedIntoIter<T, C> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<T, C: Codec<T>> std::fmt::Debug for SharedIntoIter<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedIntoIter").finish_non_exhaustive()
    }
}

impl<T, C: Codec<T>> IntoIterator for SharedReceiver<T, C> {
    type Item = T;
    type IntoIter = SharedIntoIter<T, C>;
    fn into_iter(self) -> SharedIntoIter<T, C> {
        SharedIntoIter { rx: self }
    }
}

/// A heap MPMC channel of `capacity` plain-old-data messages (blocking waits), with
/// clone-able ends whose operations take `&self` (as crossbeam-channel's `bounded`).
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
/// let (tx, rx) = channel::bounded_mpmc::<u64>(16)?;
/// let tx2 = tx.clone();
/// std::thread::spawn(move || tx2.send(2));
/// tx.send(1)?;
/// let mut got = [rx.recv()?, rx.recv()?];
/// got.sort_unstable();
/// assert_eq!(got, [1, 2]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn bounded_mpmc<T: Pod>(
    capacity: usize,
) -> Result<(SharedSender<T>, SharedReceiver<T>), ChannelError> {
    let ch = Channel::<T>::new(
        super::Options::new()
            .capacity(capacity)
            .flavor(Flavor::Mpmc),
    )?;
    Ok((SharedSender::new(&ch)?, SharedReceiver::new(&ch)?))
}

//! Errors of channel operations. A failed send always gives the message back.

use std::fmt;

use crate::ring::{BuildError, Corruption};

/// Why the codec did not enqueue a message, whatever the operation (internal:
/// each public operation has its own error type, as crossbeam-channel's).
#[doc(hidden)]
#[derive(Clone, PartialEq, Eq)]
pub enum SendFailure<T> {
    /// See [`TrySendError::Full`].
    Full(T),
    /// See [`SendTimeoutError::Timeout`].
    Timeout(T),
    /// See [`SendError::Disconnected`].
    Disconnected(T),
    /// See [`SendError::TooLarge`].
    TooLarge {
        /// The message.
        msg: T,
        /// The maximum.
        max: usize,
    },
    /// See [`SendError::Encode`].
    Encode {
        /// The message.
        msg: T,
        /// What the codec said.
        reason: String,
    },
    /// See [`SendError::Corrupted`].
    Corrupted(T, Corruption),
    /// See [`SendError::Closed`].
    Closed(T),
}

impl<T> fmt::Debug for SendFailure<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Timeout(_) => f.write_str("Timeout(..)"),
            Self::Disconnected(_) => f.write_str("Disconnected(..)"),
            Self::TooLarge { max, .. } => write!(f, "TooLarge {{ max: {max}, .. }}"),
            Self::Encode { reason, .. } => write!(f, "Encode {{ reason: {reason:?}, .. }}"),
            Self::Corrupted(_, c) => write!(f, "Corrupted(.., {c:?})"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// Defines a public send error: the variants every send shares, plus `Full` or
/// `Timeout` for the operations that can end that way (as crossbeam-channel's
/// `SendError`, `TrySendError` and `SendTimeoutError`).
macro_rules! send_error {
    (
        $(#[$doc:meta])*
        $name:ident { $( $(#[$vdoc:meta])* $extra:ident => $msg:literal ),* }
    ) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub enum $name<T> {
            $( $(#[$vdoc])* $extra(T), )*
            /// Every receiver dropped its handle or died.
            Disconnected(T),
            /// The encoded message is longer than the channel's maximum.
            TooLarge {
                /// The message.
                msg: T,
                /// The channel's maximum, in bytes.
                max: usize,
            },
            /// The message could not be encoded (a serde error).
            Encode {
                /// The message.
                msg: T,
                /// What the codec said.
                reason: String,
            },
            /// The ring's shared state is impossible (a corrupt or hostile peer).
            Corrupted(T, Corruption),
            /// The channel was closed in this process
            /// ([`Channel::close`](super::Channel::close)): a send that would wait gives
            /// the message back.
            Closed(T),
        }

        impl<T> $name<T> {
            /// The message that was not sent.
            pub fn into_inner(self) -> T {
                match self {
                    $( Self::$extra(m) )|*
                    | Self::Disconnected(m)
                    | Self::TooLarge { msg: m, .. }
                    | Self::Encode { msg: m, .. }
                    | Self::Closed(m)
                    | Self::Corrupted(m, _) => m,
                }
            }

            /// Whether the receivers are gone (no later send can succeed).
            pub fn is_disconnected(&self) -> bool {
                matches!(self, Self::Disconnected(_))
            }
        }

        impl<T> From<SendFailure<T>> for $name<T> {
            fn from(e: SendFailure<T>) -> Self {
                match e {
                    $( SendFailure::$extra(m) => Self::$extra(m), )*
                    SendFailure::Disconnected(m) => Self::Disconnected(m),
                    SendFailure::TooLarge { msg, max } => Self::TooLarge { msg, max },
                    SendFailure::Encode { msg, reason } => Self::Encode { msg, reason },
                    SendFailure::Corrupted(m, c) => Self::Corrupted(m, c),
                    SendFailure::Closed(m) => Self::Closed(m),
                    #[allow(unreachable_patterns)]
                    SendFailure::Full(m) | SendFailure::Timeout(m) => {
                        // Not an outcome of this operation: it waits without a
                        // deadline, or never waits. Had a wait given up, the message
                        // was not sent: say so without claiming a reason.
                        debug_assert!(false, "a send ended in an outcome it cannot have");
                        Self::Closed(m)
                    }
                }
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // The message itself is left out: it need not be Debug.
                match self {
                    $( Self::$extra(_) => f.write_str(concat!(stringify!($extra), "(..)")), )*
                    Self::Disconnected(_) => f.write_str("Disconnected(..)"),
                    Self::TooLarge { max, .. } => write!(f, "TooLarge {{ max: {max}, .. }}"),
                    Self::Encode { reason, .. } => {
                        write!(f, "Encode {{ reason: {reason:?}, .. }}")
                    }
                    Self::Corrupted(_, c) => write!(f, "Corrupted(.., {c:?})"),
                    Self::Closed(_) => f.write_str("Closed(..)"),
                }
            }
        }

        impl<T> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $( Self::$extra(_) => f.write_str($msg), )*
                    Self::Disconnected(_) => {
                        f.write_str("channel send failed: every receiver is gone")
                    }
                    Self::TooLarge { max, .. } => write!(
                        f,
                        "channel send failed: the encoded message is longer than the \
                         channel's {max}-byte maximum"
                    ),
                    Self::Encode { reason, .. } => {
                        write!(f, "channel send failed: cannot encode the message: {reason}")
                    }
                    Self::Corrupted(_, c) => write!(f, "channel send failed: corrupted channel: {c}"),
                    Self::Closed(_) => {
                        f.write_str("channel send failed: the channel was closed in this process")
                    }
                }
            }
        }

        impl<T> std::error::Error for $name<T> {}
    };
}

send_error! {
    /// Why [`send`](super::Sender::send) (which waits for room as long as a
    /// receiver lives) did not send; the message is handed back in every case.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{self, SendError};
    ///
    /// let (mut tx, rx) = channel::bounded::<u64>(2)?;
    /// drop(rx);
    /// let err = tx.send(4).unwrap_err();
    /// assert_eq!(err, SendError::Disconnected(4));
    /// assert!(err.is_disconnected());
    /// assert_eq!(err.into_inner(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    SendError {}
}

send_error! {
    /// Why [`try_send`](super::Sender::try_send) did not send; the message is
    /// handed back in every case.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{self, TrySendError};
    ///
    /// let (mut tx, rx) = channel::bounded::<u64>(2)?;
    /// tx.try_send(1)?;
    /// tx.try_send(2)?;
    /// assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
    /// drop(rx);
    /// assert_eq!(tx.try_send(4), Err(TrySendError::Disconnected(4)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    TrySendError {
        /// No room right now.
        Full => "channel send failed: the channel is full"
    }
}

send_error! {
    /// Why [`send_timeout`](super::Sender::send_timeout) did not send, and why a
    /// synchronous send did not enqueue ([`AckError::NotSent`]); the message is handed
    /// back in every case.
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
    SendTimeoutError {
        /// No room before the deadline.
        Timeout => "channel send failed: the channel stayed full until the deadline"
    }
}

impl<T> From<SendError<T>> for TrySendError<T> {
    fn from(e: SendError<T>) -> Self {
        SendFailure::from(e).into()
    }
}

impl<T> From<SendError<T>> for SendTimeoutError<T> {
    fn from(e: SendError<T>) -> Self {
        SendFailure::from(e).into()
    }
}

impl<T> From<SendError<T>> for SendFailure<T> {
    fn from(e: SendError<T>) -> Self {
        match e {
            SendError::Disconnected(m) => Self::Disconnected(m),
            SendError::TooLarge { msg, max } => Self::TooLarge { msg, max },
            SendError::Encode { msg, reason } => Self::Encode { msg, reason },
            SendError::Corrupted(m, c) => Self::Corrupted(m, c),
            SendError::Closed(m) => Self::Closed(m),
        }
    }
}

/// Why a synchronous send (`send_acked`) did not return an acknowledgement.
///
/// # Examples
///
/// ```
/// use shmlink::channel::{self, AckError};
/// use std::time::Duration;
///
/// let (mut tx, _rx) = channel::bounded::<u64>(4)?;
/// // Enqueued, but nobody takes it within the timeout.
/// let err = tx.send_acked_timeout(1, Duration::from_millis(5)).unwrap_err();
/// assert_eq!(err, AckError::Unacknowledged { disconnected: false });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub enum AckError<T> {
    /// The message was not enqueued; it is handed back.
    NotSent(SendTimeoutError<T>),
    /// The message was enqueued but not taken: before the deadline
    /// (`disconnected: false`; it may still be taken later) or before every receiver
    /// left (`disconnected: true`; it never will be).
    Unacknowledged {
        /// Whether the receivers are gone.
        disconnected: bool,
    },
    /// The message was enqueued and taken by a receiver that died before it finished
    /// taking it (MPMC channels, where other receivers live on): it is lost, and
    /// counted in the ring's `repairs().lost`. Reported within about 10 ms of the
    /// death.
    Lost,
}

impl<T> fmt::Debug for AckError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSent(e) => write!(f, "NotSent({e:?})"),
            Self::Unacknowledged { disconnected } => {
                write!(f, "Unacknowledged {{ disconnected: {disconnected} }}")
            }
            Self::Lost => f.write_str("Lost"),
        }
    }
}

impl<T> fmt::Display for AckError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSent(e) => write!(f, "not sent: {e}"),
            Self::Unacknowledged {
                disconnected: false,
            } => f.write_str("sent, but not taken before the deadline"),
            Self::Unacknowledged { disconnected: true } => {
                f.write_str("sent, but every receiver left before taking it")
            }
            Self::Lost => {
                f.write_str("sent, but the receiver that took it died before acknowledging it")
            }
        }
    }
}

impl<T> std::error::Error for AckError<T> {}

impl<T> From<SendFailure<T>> for AckError<T> {
    fn from(e: SendFailure<T>) -> Self {
        Self::NotSent(e.into())
    }
}

/// Why the codec returned no message, whatever the operation (internal: each
/// public operation has its own error type, as crossbeam-channel's).
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecvFailure {
    /// See [`TryRecvError::Empty`].
    Empty,
    /// See [`RecvTimeoutError::Timeout`].
    Timeout,
    /// See [`RecvError::Disconnected`].
    Disconnected,
    /// See [`RecvError::Decode`].
    Decode(String),
    /// See [`RecvError::Corrupted`].
    Corrupted(Corruption),
    /// See [`RecvError::Closed`].
    Closed,
}

/// Defines a public receive error: the variants every receive shares, plus `Empty`
/// or `Timeout` for the operations that can end that way (as crossbeam-channel's
/// `RecvError`, `TryRecvError` and `RecvTimeoutError`).
macro_rules! recv_error {
    (
        $(#[$doc:meta])*
        $name:ident { $( $(#[$vdoc:meta])* $extra:ident => $msg:literal ),* }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $name {
            $( $(#[$vdoc])* $extra, )*
            /// Every sender dropped its handle or died, and everything sent was
            /// received.
            Disconnected,
            /// A message could not be decoded (a serde error, or bytes that are not a
            /// message of this type); it was consumed.
            Decode(String),
            /// The ring's shared state is impossible (a corrupt or hostile peer).
            Corrupted(Corruption),
            /// The channel was closed in this process
            /// ([`Channel::close`](super::Channel::close)): a receive that would wait
            /// returns this.
            Closed,
        }

        impl $name {
            /// Whether the senders are gone and everything sent was received.
            pub fn is_disconnected(&self) -> bool {
                matches!(self, Self::Disconnected)
            }
        }

        impl From<RecvFailure> for $name {
            fn from(e: RecvFailure) -> Self {
                match e {
                    $( RecvFailure::$extra => Self::$extra, )*
                    RecvFailure::Disconnected => Self::Disconnected,
                    RecvFailure::Decode(e) => Self::Decode(e),
                    RecvFailure::Corrupted(c) => Self::Corrupted(c),
                    RecvFailure::Closed => Self::Closed,
                    #[allow(unreachable_patterns)]
                    RecvFailure::Empty | RecvFailure::Timeout => {
                        // Not an outcome of this operation (see `send_error!`).
                        debug_assert!(false, "a receive ended in an outcome it cannot have");
                        Self::Closed
                    }
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $( Self::$extra => f.write_str($msg), )*
                    Self::Disconnected => f.write_str(
                        "channel receive failed: every sender is gone and the channel is drained",
                    ),
                    Self::Decode(e) => write!(f, "channel receive failed: cannot decode a message: {e}"),
                    Self::Corrupted(c) => write!(f, "channel receive failed: corrupted channel: {c}"),
                    Self::Closed => {
                        f.write_str("channel receive failed: the channel was closed in this process")
                    }
                }
            }
        }

        impl std::error::Error for $name {}
    };
}

recv_error! {
    /// Why [`recv`](super::Receiver::recv) (which waits as long as a sender lives)
    /// returned no message.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{self, RecvError};
    ///
    /// let (tx, mut rx) = channel::bounded::<u64>(2)?;
    /// drop(tx);
    /// assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    RecvError {}
}

recv_error! {
    /// Why [`try_recv`](super::Receiver::try_recv) returned no message.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{self, TryRecvError};
    ///
    /// let (tx, mut rx) = channel::bounded::<u64>(2)?;
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// drop(tx);
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    TryRecvError {
        /// Nothing to receive right now.
        Empty => "channel receive failed: the channel is empty"
    }
}

recv_error! {
    /// Why [`recv_timeout`](super::Receiver::recv_timeout) returned no message.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::{self, RecvTimeoutError};
    /// use std::time::Duration;
    ///
    /// let (_tx, mut rx) = channel::bounded::<u64>(2)?;
    /// let err = rx.recv_timeout(Duration::from_millis(2));
    /// assert_eq!(err, Err(RecvTimeoutError::Timeout));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    RecvTimeoutError {
        /// Nothing arrived before the deadline.
        Timeout => "channel receive failed: nothing arrived before the deadline"
    }
}

impl From<RecvError> for TryRecvError {
    fn from(e: RecvError) -> Self {
        RecvFailure::from(e).into()
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(e: RecvError) -> Self {
        RecvFailure::from(e).into()
    }
}

impl From<RecvError> for RecvFailure {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => Self::Disconnected,
            RecvError::Decode(e) => Self::Decode(e),
            RecvError::Corrupted(c) => Self::Corrupted(c),
            RecvError::Closed => Self::Closed,
        }
    }
}

/// Why a channel could not be built, created or opened.
///
/// # Examples
///
/// ```
/// use shmlink::channel::{self, ChannelError};
///
/// assert!(matches!(channel::bounded::<u64>(3), Err(ChannelError::Build(_))));
/// ```
#[derive(Debug)]
pub enum ChannelError {
    /// The ring underneath could not be built, created or opened.
    Build(BuildError),
    /// A handle could not be claimed (e.g. a second sender on an SPSC channel).
    Claim(crate::ring::ClaimError),
    /// This combination is not available (e.g. serde messages longer than the largest
    /// MPMC cell).
    Unsupported(&'static str),
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Build(e) => write!(f, "{e}"),
            Self::Claim(e) => write!(f, "{e}"),
            Self::Unsupported(what) => write!(f, "not supported: {what}"),
        }
    }
}

impl std::error::Error for ChannelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Build(e) => Some(e),
            Self::Claim(e) => Some(e),
            Self::Unsupported(_) => None,
        }
    }
}

impl From<BuildError> for ChannelError {
    fn from(e: BuildError) -> Self {
        Self::Build(e)
    }
}

impl From<crate::ring::ClaimError> for ChannelError {
    fn from(e: crate::ring::ClaimError) -> Self {
        Self::Claim(e)
    }
}

//! Errors of channel operations. A failed send always gives the message back.

use std::fmt;

use crate::ring::{BuildError, Corruption};

/// Why a message was not sent; the message is handed back in every case.
///
/// # Examples
///
/// ```
/// use shmlink::channel::{self, SendError};
///
/// let (mut tx, rx) = channel::bounded::<u64>(2)?;
/// tx.try_send(1)?;
/// tx.try_send(2)?;
/// assert_eq!(tx.try_send(3), Err(SendError::Full(3)));
/// drop(rx);
/// assert_eq!(tx.try_send(4), Err(SendError::Disconnected(4)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub enum SendError<T> {
    /// No room right now (`try_send`).
    Full(T),
    /// No room before the deadline (`send_timeout`).
    Timeout(T),
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
    /// The channel was closed in this process ([`Channel::close`](super::Channel::close)):
    /// a send that would wait gives the message back.
    Closed(T),
}

impl<T> SendError<T> {
    /// The message that was not sent.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::SendError;
    ///
    /// assert_eq!(SendError::Full(7).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(m)
            | Self::Timeout(m)
            | Self::Disconnected(m)
            | Self::TooLarge { msg: m, .. }
            | Self::Encode { msg: m, .. }
            | Self::Closed(m)
            | Self::Corrupted(m, _) => m,
        }
    }

    /// Whether the receivers are gone (no later send can succeed).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::channel::SendError;
    ///
    /// assert!(SendError::Disconnected(1).is_disconnected());
    /// assert!(!SendError::Full(1).is_disconnected());
    /// ```
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected(_))
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message itself is left out: it need not be Debug.
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

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("the channel is full"),
            Self::Timeout(_) => f.write_str("the channel stayed full until the deadline"),
            Self::Disconnected(_) => f.write_str("every receiver is gone"),
            Self::TooLarge { max, .. } => {
                write!(
                    f,
                    "the encoded message is longer than the channel's {max}-byte maximum"
                )
            }
            Self::Encode { reason, .. } => write!(f, "cannot encode the message: {reason}"),
            Self::Corrupted(_, c) => write!(f, "corrupted channel: {c}"),
            Self::Closed(_) => f.write_str("the channel was closed in this process"),
        }
    }
}

impl<T> std::error::Error for SendError<T> {}

/// Why a synchronous send (`send_acked`) did not return an acknowledgement.
///
/// # Examples
///
/// ```
/// use shmlink::channel::{self, AckError, SendError};
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
    NotSent(SendError<T>),
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

impl<T> From<SendError<T>> for AckError<T> {
    fn from(e: SendError<T>) -> Self {
        Self::NotSent(e)
    }
}

/// Why a receive returned no message.
///
/// # Examples
///
/// ```
/// use shmlink::channel::{self, RecvError};
///
/// let (tx, mut rx) = channel::bounded::<u64>(2)?;
/// assert_eq!(rx.try_recv(), Err(RecvError::Empty));
/// drop(tx);
/// assert_eq!(rx.try_recv(), Err(RecvError::Disconnected));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecvError {
    /// Nothing to receive right now (`try_recv`).
    Empty,
    /// Nothing arrived before the deadline (`recv_timeout`).
    Timeout,
    /// Every sender dropped its handle or died, and everything sent was received.
    Disconnected,
    /// A message could not be decoded (a serde error, or bytes that are not a
    /// message of this type); it was consumed.
    Decode(String),
    /// The ring's shared state is impossible (a corrupt or hostile peer).
    Corrupted(Corruption),
    /// The channel was closed in this process ([`Channel::close`](super::Channel::close)):
    /// a receive that would wait returns this.
    Closed,
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the channel is empty"),
            Self::Timeout => f.write_str("nothing arrived before the deadline"),
            Self::Disconnected => f.write_str("every sender is gone and the channel is drained"),
            Self::Decode(e) => write!(f, "cannot decode a message: {e}"),
            Self::Corrupted(c) => write!(f, "corrupted channel: {c}"),
            Self::Closed => f.write_str("the channel was closed in this process"),
        }
    }
}

impl std::error::Error for RecvError {}

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

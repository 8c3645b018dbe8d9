//! Errors of the transport operations, one enum per operation.

use core::fmt;
use std::io;

use crate::ring::BuildError;

/// An OS-level failure: which call, and the error it returned.
///
/// # Examples
///
/// ```
/// use shmlink::transport::IoFailure;
///
/// let e = IoFailure::new("bind", &std::io::Error::from_raw_os_error(98));
/// assert_eq!(e.errno, Some(98));
/// assert!(e.to_string().starts_with("bind: "));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoFailure {
    /// The operation that failed.
    pub op: &'static str,
    /// The error kind.
    pub kind: io::ErrorKind,
    /// The OS error number, if there was one.
    pub errno: Option<i32>,
    /// The error's message.
    pub message: String,
}

impl IoFailure {
    /// Records `err` from operation `op`.
    pub fn new(op: &'static str, err: &io::Error) -> Self {
        Self {
            op,
            kind: err.kind(),
            errno: err.raw_os_error(),
            message: err.to_string(),
        }
    }
}

impl fmt::Display for IoFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.op, self.message)
    }
}

impl std::error::Error for IoFailure {}

/// A URL that names no transport endpoint.
///
/// # Examples
///
/// ```
/// use shmlink::transport::Address;
///
/// let err = Address::parse("http://example.com").unwrap_err();
/// assert_eq!(err.url, "http://example.com");
/// assert!(err.to_string().contains("shm://NAME"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressError {
    /// The URL given.
    pub url: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad address {:?}: {}", self.url, self.why)
    }
}

impl std::error::Error for AddressError {}

/// A failed hello exchange.
///
/// # Examples
///
/// ```
/// use shmlink::transport::HandshakeError;
///
/// let e = HandshakeError::Version { ours: 1, theirs: 2 };
/// assert_eq!(e.to_string(), "peer speaks protocol version 2, we speak 1");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer's first bytes are not a shmlink hello.
    NotShmlink,
    /// The peer speaks another protocol version.
    Version {
        /// Ours.
        ours: u16,
        /// Theirs.
        theirs: u16,
    },
    /// The peer set flags this version does not know.
    UnknownFlags(u16),
    /// The peer offered a maximum frame of 0 bytes.
    ZeroMaxFrame,
    /// The peer did not finish the hello in time.
    Timeout,
    /// The peer went away during the hello.
    Disconnected,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::NotShmlink => f.write_str("peer is not a shmlink endpoint (bad hello)"),
            HandshakeError::Version { ours, theirs } => {
                write!(f, "peer speaks protocol version {theirs}, we speak {ours}")
            }
            HandshakeError::UnknownFlags(x) => write!(f, "peer set unknown hello flags {x:#x}"),
            HandshakeError::ZeroMaxFrame => f.write_str("peer offered a maximum frame of 0"),
            HandshakeError::Timeout => f.write_str("peer did not complete the hello in time"),
            HandshakeError::Disconnected => f.write_str("peer left during the hello"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Errors of [`listen`](super::listen).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenError {
    /// The URL is not a transport address.
    BadAddress(AddressError),
    /// A live listener already has the address.
    InUse {
        /// The URL.
        url: String,
    },
    /// Building the shared-memory accept queue failed.
    Shm(BuildError),
    /// The OS refused.
    Io {
        /// The URL.
        url: String,
        /// The failure.
        error: IoFailure,
    },
}

impl ListenError {
    /// [`InUse`](Self::InUse), its URL filled in by [`at`](Self::at).
    pub(crate) fn in_use() -> Self {
        Self::InUse { url: String::new() }
    }

    /// [`Io`](Self::Io), its URL filled in by [`at`](Self::at).
    pub(crate) fn io(error: IoFailure) -> Self {
        Self::Io {
            url: String::new(),
            error,
        }
    }

    /// The error of listening at `at`: fills in the URL where it is not yet set.
    pub(crate) fn at(mut self, at: &str) -> Self {
        if let Self::InUse { url } | Self::Io { url, .. } = &mut self
            && url.is_empty()
        {
            at.clone_into(url);
        }
        self
    }
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenError::BadAddress(e) => write!(f, "{e}"),
            ListenError::InUse { url } => {
                write!(f, "cannot listen at {url}: in use by a live listener")
            }
            ListenError::Shm(e) => write!(f, "shared-memory listener: {e}"),
            ListenError::Io { url, error } => write!(f, "cannot listen at {url}: {error}"),
        }
    }
}

impl std::error::Error for ListenError {}

impl From<AddressError> for ListenError {
    fn from(e: AddressError) -> Self {
        ListenError::BadAddress(e)
    }
}

/// Errors of [`connect`](super::connect). Each names what it failed to reach: the
/// URL, or the segment.
///
/// # Examples
///
/// ```
/// use shmlink::transport::{self, ConnectError, TransportOptions};
///
/// let err = transport::connect("tcp://127.0.0.1:1", &TransportOptions::default()).unwrap_err();
/// assert!(matches!(err, ConnectError::NoListener { .. }));
/// assert_eq!(err.to_string(), "cannot connect to tcp://127.0.0.1:1: nothing listens there");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is not a transport address.
    BadAddress(AddressError),
    /// Nothing listens at the address (no socket, connection refused, no listener
    /// segment, or the listener's process died).
    NoListener {
        /// The URL.
        url: String,
    },
    /// The connection or its handshake did not complete in time.
    Timeout {
        /// The URL.
        url: String,
    },
    /// The peer failed the hello.
    Handshake {
        /// The URL.
        url: String,
        /// How.
        error: HandshakeError,
    },
    /// Building or opening the shared-memory connection failed.
    Shm(BuildError),
    /// The OS refused.
    Io {
        /// The URL.
        url: String,
        /// The failure.
        error: IoFailure,
    },
    /// The shared-memory name holds another kind of object (a ring, a lock), not a
    /// listener: a wrong name, most likely.
    NotAListener {
        /// The name.
        name: String,
        /// What it holds (a segment kind, e.g. `spsc`; `another type` for a ring
        /// of another element type).
        found: String,
    },
}

impl ConnectError {
    /// [`NoListener`](Self::NoListener), its URL filled in by [`at`](Self::at).
    pub(crate) fn no_listener() -> Self {
        Self::NoListener { url: String::new() }
    }

    /// [`Timeout`](Self::Timeout), its URL filled in by [`at`](Self::at).
    pub(crate) fn timeout() -> Self {
        Self::Timeout { url: String::new() }
    }

    /// [`Handshake`](Self::Handshake), its URL filled in by [`at`](Self::at).
    pub(crate) fn handshake(error: HandshakeError) -> Self {
        Self::Handshake {
            url: String::new(),
            error,
        }
    }

    /// [`Io`](Self::Io), its URL filled in by [`at`](Self::at).
    pub(crate) fn io(error: IoFailure) -> Self {
        Self::Io {
            url: String::new(),
            error,
        }
    }

    /// The error of connecting to `to`: fills in the URL where it is not yet set.
    pub(crate) fn at(mut self, to: &str) -> Self {
        if let Self::NoListener { url }
        | Self::Timeout { url }
        | Self::Handshake { url, .. }
        | Self::Io { url, .. } = &mut self
            && url.is_empty()
        {
            to.clone_into(url);
        }
        self
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::BadAddress(e) => write!(f, "{e}"),
            ConnectError::NoListener { url } => {
                write!(f, "cannot connect to {url}: nothing listens there")
            }
            ConnectError::Timeout { url } => write!(f, "cannot connect to {url}: timed out"),
            ConnectError::Handshake { url, error } => {
                write!(f, "cannot connect to {url}: handshake failed: {error}")
            }
            ConnectError::Shm(e) => write!(f, "shared-memory connection: {e}"),
            ConnectError::Io { url, error } => write!(f, "cannot connect to {url}: {error}"),
            ConnectError::NotAListener { name, found } => {
                write!(f, "shm://{name} holds a {found}, not a listener")
            }
        }
    }
}

impl std::error::Error for ConnectError {}

impl From<AddressError> for ConnectError {
    fn from(e: AddressError) -> Self {
        ConnectError::BadAddress(e)
    }
}

/// Errors of [`Listener::accept`](super::Listener::accept).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcceptError {
    /// No client until the deadline.
    Timeout,
    /// A client failed the hello (the listener stays usable).
    Handshake(HandshakeError),
    /// A client's shared-memory connection could not be opened (the listener stays
    /// usable).
    Shm(BuildError),
    /// The OS refused.
    Io(IoFailure),
}

impl fmt::Display for AcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcceptError::Timeout => f.write_str("no client until the deadline"),
            AcceptError::Handshake(e) => write!(f, "client failed the handshake: {e}"),
            AcceptError::Shm(e) => write!(f, "client connection segment: {e}"),
            AcceptError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for AcceptError {}

/// Errors of [`FrameSend::send`](super::FrameSend::send).
///
/// # Examples
///
/// ```
/// use shmlink::transport::{self, TransportOptions, TransportSendError};
///
/// let opts = TransportOptions { max_frame: 1024, ..TransportOptions::default() };
/// let (a, _b) = transport::pair(&opts)?;
/// let (mut tx, _rx) = a.split();
/// assert_eq!(tx.send(&[0; 2000], None), Err(TransportSendError::TooLarge { len: 2000, max: 1024 }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportSendError {
    /// The frame is longer than the agreed maximum (nothing was sent).
    TooLarge {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// No room until the deadline (nothing was sent).
    Timeout,
    /// The peer closed the connection or died.
    Disconnected,
    /// An earlier failure left the connection unusable (e.g. a frame half written
    /// when its deadline passed, or a corrupted ring).
    Broken,
    /// The OS refused.
    Io(IoFailure),
}

impl fmt::Display for TransportSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportSendError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max}")
            }
            TransportSendError::Timeout => f.write_str("no room to send until the deadline"),
            TransportSendError::Disconnected => f.write_str("peer disconnected"),
            TransportSendError::Broken => f.write_str("connection broken by an earlier failure"),
            TransportSendError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TransportSendError {}

/// Errors of [`FrameRecv::recv`](super::FrameRecv::recv).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportRecvError {
    /// No whole frame until the deadline (a partly read frame is kept for the next
    /// call).
    Timeout,
    /// The peer closed the connection or died, and every frame it sent was received.
    Disconnected,
    /// The peer announced a frame over the agreed maximum (nothing was allocated for
    /// it; the connection is broken).
    TooLarge {
        /// Announced length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The peer wrote something no correct peer writes (the connection is broken).
    Malformed(&'static str),
    /// An earlier failure left the connection unusable.
    Broken,
    /// The OS refused.
    Io(IoFailure),
}

impl fmt::Display for TransportRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportRecvError::Timeout => f.write_str("no frame until the deadline"),
            TransportRecvError::Disconnected => f.write_str("peer disconnected"),
            TransportRecvError::TooLarge { len, max } => {
                write!(
                    f,
                    "peer announced a frame of {len} bytes, over the maximum of {max}"
                )
            }
            TransportRecvError::Malformed(what) => {
                write!(f, "malformed data from the peer: {what}")
            }
            TransportRecvError::Broken => f.write_str("connection broken by an earlier failure"),
            TransportRecvError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TransportRecvError {}

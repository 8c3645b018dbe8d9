//! Framed, bidirectional messages between two endpoints, with deadlines, over
//! shared memory, Unix domain sockets or TCP, all behind one API.
//!
//! An endpoint is named by a URL:
//!
//! | URL | transport | listener | connection |
//! |-----|-----------|----------|------------|
//! | `shm://NAME` | [`shm`] | a named accept queue (MPMC ring) | a [`Duplex`](crate::ring::Duplex) of frame rings in a per-connection segment |
//! | `unix:///PATH` | [`socket`] | a Unix domain socket at `PATH` | the stream, length-prefixed frames |
//! | `tcp://HOST:PORT` | [`socket`] | a TCP listener (`TCP_NODELAY` on every connection) | the stream, length-prefixed frames |
//!
//! [`listen`] and [`connect`] take the URL; the [`Connection`] they yield is split into
//! a [`Sender`] and a [`Receiver`] that work from different threads. Every operation
//! takes a deadline (`None`: wait as long as it takes, but a dead peer still ends the
//! wait with [`TransportRecvError::Disconnected`]).
//!
//! # Handshake
//!
//! Each side sends a 16-byte hello: the magic `b"shmlink\0"`, the protocol version
//! (u16 LE, [`PROTOCOL_VERSION`]), flags (u16, zero) and the largest frame it accepts
//! (u32 LE). A peer that is not shmlink, speaks another version or offers a maximum of
//! 0 is refused with a typed [`HandshakeError`]. Both sides then use the smaller of the
//! two maxima: a longer frame is refused on send ([`TransportSendError::TooLarge`]) and on
//! receive ([`TransportRecvError::TooLarge`], read from the length prefix before anything is
//! allocated).
//!
//! # Examples
//!
//! ```
//! use std::time::{Duration, Instant};
//! use shmlink::transport::{self, TransportOptions};
//!
//! # let url = format!("shm://doc-transport-{}", std::process::id());
//! let listener = transport::listen(&url, &TransportOptions::default())?;
//! let client = std::thread::spawn({
//!     let url = url.clone();
//!     move || -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
//!         let (mut tx, mut rx) = transport::connect(&url, &TransportOptions::default())?.split();
//!         tx.send(b"ping", None)?;
//!         let mut buf = Vec::new();
//!         rx.recv(&mut buf, Some(Instant::now() + Duration::from_secs(5)))?;
//!         Ok(buf)
//!     }
//! });
//! let (mut tx, mut rx) = listener.accept(Some(Instant::now() + Duration::from_secs(5)))?.split();
//! let mut buf = Vec::new();
//! rx.recv(&mut buf, None)?;
//! assert_eq!(buf, b"ping");
//! tx.send(b"pong", None)?;
//! assert_eq!(client.join().unwrap().unwrap(), b"pong");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]

mod error;
pub mod shm;
pub mod socket;
mod url;

use std::time::{Duration, Instant};

pub use error::{
    AcceptError, AddressError, ConnectError, HandshakeError, IoFailure, ListenError,
    TransportRecvError, TransportSendError,
};
pub use url::Address;

/// The protocol version both ends announce in the hello.
pub const PROTOCOL_VERSION: u16 = 1;

/// Length of the hello each side sends first.
pub const HELLO_LEN: usize = 16;

const HELLO_MAGIC: &[u8; 8] = b"shmlink\0";

/// Default largest frame: 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// Settings for [`listen`] and [`connect`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shmlink::transport::TransportOptions;
///
/// let opts = TransportOptions {
///     max_frame: 64 * 1024,
///     connect_timeout: Duration::from_secs(2),
///     ..TransportOptions::default()
/// };
/// assert_eq!(opts.max_frame, 65536);
/// ```
#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// Largest frame this side accepts (and proposes in the hello).
    pub max_frame: usize,
    /// How long [`connect`] may take, handshake included, when no earlier deadline
    /// is given.
    pub connect_timeout: Duration,
    /// How long an accepted peer has to complete its hello.
    pub handshake_timeout: Duration,
    /// Bytes of each direction's ring of a shared-memory connection (a power of two;
    /// rounded up to hold two maximal frames).
    pub shm_capacity: usize,
    /// Whether shared-memory waits spin only ([`WaitMode::Spin`](crate::sync::WaitMode::Spin): lowest latency,
    /// burns a core while idle) or spin then sleep on a futex (the default).
    pub shm_spin: bool,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(2),
            shm_capacity: 256 * 1024,
            shm_spin: false,
        }
    }
}

/// The hello one side sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hello {
    pub version: u16,
    pub max_frame: u32,
}

impl Hello {
    pub(crate) fn ours(max_frame: usize) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            max_frame: u32::try_from(max_frame).unwrap_or(u32::MAX),
        }
    }

    pub(crate) fn encode(self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[..8].copy_from_slice(HELLO_MAGIC);
        b[8..10].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.max_frame.to_le_bytes());
        b
    }

    /// Decodes and checks a peer's hello.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, HandshakeError> {
        if bytes.len() != HELLO_LEN || &bytes[..8] != HELLO_MAGIC {
            return Err(HandshakeError::NotShmlink);
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        let flags = u16::from_le_bytes([bytes[10], bytes[11]]);
        let max_frame = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        if version != PROTOCOL_VERSION {
            return Err(HandshakeError::Version {
                ours: PROTOCOL_VERSION,
                theirs: version,
            });
        }
        if flags != 0 {
            return Err(HandshakeError::UnknownFlags(flags));
        }
        if max_frame == 0 {
            return Err(HandshakeError::ZeroMaxFrame);
        }
        Ok(Self { version, max_frame })
    }

    /// The maximum both sides use.
    pub(crate) fn agree(ours: usize, theirs: Hello) -> usize {
        ours.min(theirs.max_frame as usize)
    }
}

/// The sending half of a connection.
pub trait FrameSend: Send + 'static {
    /// Sends one frame, waiting for room until `deadline` (`None`: as long as the peer
    /// lives).
    ///
    /// # Errors
    ///
    /// [`TransportSendError`]: too large, timed out, peer gone, or the connection broke.
    fn send(&mut self, frame: &[u8], deadline: Option<Instant>) -> Result<(), TransportSendError>;

    /// Largest frame both ends agreed on.
    fn max_frame(&self) -> usize;
}

/// The receiving half of a connection.
pub trait FrameRecv: Send + 'static {
    /// Receives the next frame into `buf` (replacing its contents), waiting until
    /// `deadline` (`None`: as long as the peer lives).
    ///
    /// A timeout never loses data: a frame that was partly read when the deadline
    /// passed is completed by the next call.
    ///
    /// # Errors
    ///
    /// [`TransportRecvError`]: timed out, peer gone, a frame over the maximum or malformed, or
    /// the connection broke.
    fn recv(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<(), TransportRecvError>;

    /// Largest frame both ends agreed on.
    fn max_frame(&self) -> usize;
}

/// A connection that can be split into halves used from different threads.
pub trait Transport: Send + 'static {
    /// The sending half.
    type Sender: FrameSend;
    /// The receiving half.
    type Receiver: FrameRecv;
    /// Splits the connection.
    fn split(self) -> (Self::Sender, Self::Receiver);
}

/// A connection over any of the transports.
///
/// # Examples
///
/// ```
/// use shmlink::transport::{self, FrameRecv, FrameSend, TransportOptions, Transport};
///
/// // An in-process pair, as used in tests.
/// let (a, b) = transport::pair(&TransportOptions::default())?;
/// let ((mut a_tx, _a_rx), (_b_tx, mut b_rx)) = (a.split(), b.split());
/// a_tx.send(b"hi", None)?;
/// let mut buf = Vec::new();
/// b_rx.recv(&mut buf, None)?;
/// assert_eq!(buf, b"hi");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub enum Connection {
    /// Shared memory (a named duplex segment, or an in-process pair).
    Shm(shm::ShmConnection),
    /// A Unix domain or TCP socket.
    Socket(socket::SocketConnection),
}

/// The sending half of a [`Connection`].
#[derive(Debug)]
pub enum Sender {
    /// Shared memory.
    Shm(shm::ShmSender),
    /// Socket.
    Socket(socket::SocketSender),
}

/// The receiving half of a [`Connection`].
#[derive(Debug)]
pub enum Receiver {
    /// Shared memory.
    Shm(shm::ShmReceiver),
    /// Socket.
    Socket(socket::SocketReceiver),
}

impl Connection {
    /// Splits the connection into halves (see [`Transport::split`]).
    pub fn split(self) -> (Sender, Receiver) {
        Transport::split(self)
    }

    /// Largest frame both ends agreed on.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::transport::{self, TransportOptions};
    ///
    /// let opts = TransportOptions { max_frame: 4096, ..TransportOptions::default() };
    /// let (a, _b) = transport::pair(&opts)?;
    /// assert_eq!(a.max_frame(), 4096);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_frame(&self) -> usize {
        match self {
            Connection::Shm(c) => c.max_frame(),
            Connection::Socket(c) => c.max_frame(),
        }
    }

    /// What kind of transport carries it: `"shm"`, `"unix"` or `"tcp"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Connection::Shm(_) => "shm",
            Connection::Socket(c) => c.kind(),
        }
    }
}

impl Transport for Connection {
    type Sender = Sender;
    type Receiver = Receiver;
    fn split(self) -> (Sender, Receiver) {
        match self {
            Connection::Shm(c) => {
                let (t, r) = c.split();
                (Sender::Shm(t), Receiver::Shm(r))
            }
            Connection::Socket(c) => {
                let (t, r) = c.split();
                (Sender::Socket(t), Receiver::Socket(r))
            }
        }
    }
}

impl Sender {
    /// See [`FrameSend::send`].
    ///
    /// # Errors
    ///
    /// As [`FrameSend::send`].
    pub fn send(
        &mut self,
        frame: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), TransportSendError> {
        FrameSend::send(self, frame, deadline)
    }
}

impl FrameSend for Sender {
    #[inline]
    fn send(&mut self, frame: &[u8], deadline: Option<Instant>) -> Result<(), TransportSendError> {
        match self {
            Sender::Shm(s) => s.send(frame, deadline),
            Sender::Socket(s) => s.send(frame, deadline),
        }
    }

    fn max_frame(&self) -> usize {
        match self {
            Sender::Shm(s) => s.max_frame(),
            Sender::Socket(s) => s.max_frame(),
        }
    }
}

impl Receiver {
    /// See [`FrameRecv::recv`].
    ///
    /// # Errors
    ///
    /// As [`FrameRecv::recv`].
    pub fn recv(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<(), TransportRecvError> {
        FrameRecv::recv(self, buf, deadline)
    }

    /// Receives a frame only if one is already there (a socket is read once without
    /// waiting).
    ///
    /// # Errors
    ///
    /// [`TransportRecvError::Timeout`] if no whole frame is there; otherwise as
    /// [`FrameRecv::recv`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::transport::{self, TransportOptions, TransportRecvError};
    ///
    /// let (a, b) = transport::pair(&TransportOptions::default())?;
    /// let ((mut tx, _), (_, mut rx)) = (a.split(), b.split());
    /// let mut buf = Vec::new();
    /// assert_eq!(rx.try_recv(&mut buf), Err(TransportRecvError::Timeout));
    /// tx.send(b"now", None)?;
    /// rx.try_recv(&mut buf)?;
    /// assert_eq!(buf, b"now");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<(), TransportRecvError> {
        match self {
            Receiver::Shm(r) => r.try_recv(buf),
            Receiver::Socket(r) => r.recv(buf, Some(Instant::now())),
        }
    }
}

impl FrameRecv for Receiver {
    #[inline]
    fn recv(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<(), TransportRecvError> {
        match self {
            Receiver::Shm(r) => r.recv(buf, deadline),
            Receiver::Socket(r) => r.recv(buf, deadline),
        }
    }

    fn max_frame(&self) -> usize {
        match self {
            Receiver::Shm(r) => r.max_frame(),
            Receiver::Socket(r) => r.max_frame(),
        }
    }
}

/// A listener on any of the transports.
#[derive(Debug)]
pub enum Listener {
    /// A named shared-memory accept queue.
    Shm(shm::ShmListener),
    /// A Unix domain or TCP socket listener.
    Socket(socket::SocketListener),
}

impl Listener {
    /// Waits for the next client until `deadline` and completes its handshake.
    ///
    /// # Errors
    ///
    /// [`AcceptError::Timeout`] at the deadline; [`AcceptError::Handshake`] if a client
    /// failed the handshake (the listener stays usable: accept again).
    pub fn accept(&self, deadline: Option<Instant>) -> Result<Connection, AcceptError> {
        match self {
            Listener::Shm(l) => l.accept(deadline).map(Connection::Shm),
            Listener::Socket(l) => l.accept(deadline).map(Connection::Socket),
        }
    }

    /// Waits for the next client until `deadline`; the hello of a socket client is
    /// left to [`Incoming::handshake`], so a server can run it on the client's own
    /// thread and a slow or silent client holds up nobody else. (A shared-memory
    /// client wrote its hello before asking to connect: it is checked here.)
    ///
    /// # Errors
    ///
    /// As [`accept`](Self::accept).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use shmlink::transport::{self, TransportOptions};
    ///
    /// let listener = transport::listen("tcp://127.0.0.1:0", &TransportOptions::default())?;
    /// let url = listener.url();
    /// let client = std::thread::spawn(move || transport::connect(&url, &TransportOptions::default()).map(|_| ()));
    /// let incoming = listener.accept_incoming(Instant::now().checked_add(Duration::from_secs(5)))?;
    /// let conn = incoming.handshake()?; // e.g. on a thread of its own
    /// assert_eq!(conn.kind(), "tcp");
    /// client.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn accept_incoming(&self, deadline: Option<Instant>) -> Result<Incoming, AcceptError> {
        match self {
            Listener::Shm(l) => l.accept(deadline).map(|c| Incoming::Ready(Box::new(c))),
            Listener::Socket(l) => l.accept_incoming(deadline).map(Incoming::Socket),
        }
    }

    /// The address clients connect to (with the actual port for `tcp://HOST:0`).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::transport::{self, TransportOptions};
    ///
    /// let listener = transport::listen("tcp://127.0.0.1:0", &TransportOptions::default())?;
    /// assert!(listener.url().starts_with("tcp://127.0.0.1:"));
    /// assert!(!listener.url().ends_with(":0"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn url(&self) -> String {
        match self {
            Listener::Shm(l) => l.url(),
            Listener::Socket(l) => l.url(),
        }
    }
}

/// A client [`Listener::accept_incoming`] accepted, before or after its hello.
#[derive(Debug)]
pub enum Incoming {
    /// Hello done (shared memory).
    Ready(Box<shm::ShmConnection>),
    /// Hello still to read (sockets).
    Socket(socket::SocketIncoming),
}

impl Incoming {
    /// Completes the hello.
    ///
    /// # Errors
    ///
    /// [`AcceptError::Handshake`] if the client failed it.
    pub fn handshake(self) -> Result<Connection, AcceptError> {
        match self {
            Incoming::Ready(c) => Ok(Connection::Shm(*c)),
            Incoming::Socket(i) => i.handshake().map(Connection::Socket),
        }
    }
}

/// Listens at `url` (`shm://NAME`, `unix:///PATH` or `tcp://HOST:PORT`).
///
/// # Errors
///
/// [`ListenError::BadAddress`], [`ListenError::InUse`] if a live listener has the
/// address, or the OS error.
///
/// # Examples
///
/// ```
/// use shmlink::transport::{self, ListenError, TransportOptions};
///
/// # let url = format!("shm://doc-listen-{}", std::process::id());
/// let first = transport::listen(&url, &TransportOptions::default())?;
/// assert!(matches!(transport::listen(&url, &TransportOptions::default()), Err(ListenError::InUse { .. })));
/// assert!(matches!(transport::listen("http://x", &TransportOptions::default()), Err(ListenError::BadAddress(_))));
/// # drop(first);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn listen(url: &str, opts: &TransportOptions) -> Result<Listener, ListenError> {
    match Address::parse(url)? {
        Address::Shm(name) => shm::ShmListener::bind(&name, opts).map(Listener::Shm),
        addr => socket::SocketListener::bind(&addr, opts).map(Listener::Socket),
    }
    .map_err(|e| e.at(url))
}

/// Connects to `url`, waiting at most [`TransportOptions::connect_timeout`].
///
/// # Errors
///
/// [`ConnectError::NoListener`] if nothing listens there, [`ConnectError::Timeout`],
/// [`ConnectError::Handshake`], or the OS error.
///
/// # Examples
///
/// ```
/// use shmlink::transport::{self, ConnectError, TransportOptions};
///
/// let err = transport::connect("shm://nobody-listens-here", &TransportOptions::default()).unwrap_err();
/// assert!(matches!(err, ConnectError::NoListener { .. }));
/// let err = transport::connect("unix:///nonexistent/sock", &TransportOptions::default()).unwrap_err();
/// assert!(matches!(err, ConnectError::NoListener { .. }));
/// ```
pub fn connect(url: &str, opts: &TransportOptions) -> Result<Connection, ConnectError> {
    let deadline = Instant::now().checked_add(opts.connect_timeout);
    match Address::parse(url)? {
        Address::Shm(name) => shm::connect(&name, opts, deadline).map(Connection::Shm),
        addr => socket::connect(&addr, opts, deadline).map(Connection::Socket),
    }
    .map_err(|e| e.at(url))
}

/// Two connected in-process endpoints over a heap [`Duplex`](crate::ring::Duplex) (for
/// tests, and for running a service in the same process as its clients).
///
/// # Errors
///
/// [`ConnectError::Shm`] if the ring cannot be built for [`TransportOptions::max_frame`].
pub fn pair(opts: &TransportOptions) -> Result<(Connection, Connection), ConnectError> {
    let (a, b) = shm::pair(opts)?;
    Ok((Connection::Shm(a), Connection::Shm(b)))
}

/// A TCP port on `ip` that nothing listens on now and that the kernel does not hand
/// out to `bind(port 0)` or `connect`: it is taken below the ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`). For configurations that must name
/// every address before anything listens (a [`dlock`](crate::dlock) cluster's
/// members in a test or a demo). A port picked with `bind(port 0)` and released is in
/// the ephemeral range, so the next listener or outgoing connection of the same
/// process can take it first.
///
/// Calls in one process return distinct ports (up to 16384 of them); another
/// process may still bind the port first, which only a listener that holds it rules
/// out.
///
/// # Errors
///
/// The OS error of the last bind tried, if 64 candidates were all in use.
///
/// # Examples
///
/// ```
/// use shmlink::transport::unused_tcp_port;
/// use std::net::{Ipv4Addr, TcpListener};
///
/// let port = unused_tcp_port(Ipv4Addr::LOCALHOST.into())?;
/// let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
/// assert_ne!(unused_tcp_port(Ipv4Addr::LOCALHOST.into())?, port);
/// # drop(listener);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn unused_tcp_port(ip: std::net::IpAddr) -> std::io::Result<u16> {
    use crate::sync::atomic::{AtomicU32, Ordering};
    /// Ports handed out by this process so far (a stride apart, from a random start).
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const SPAN: u32 = 1 << 14;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    if low < 1024 + SPAN {
        // No room below the ephemeral range: the kernel's pick is the best there is.
        return Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port());
    }
    /// Where this process's sequence starts: differs between processes.
    static START: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        (std::process::id() ^ nanos).wrapping_mul(2_654_435_761)
    });
    let mut last = std::io::Error::from(std::io::ErrorKind::AddrInUse);
    for _ in 0..64 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // 7919 is odd, so the stride visits all SPAN offsets before repeating.
        let port = low - SPAN + start.wrapping_add(n.wrapping_mul(7919)) % SPAN;
        let port = u16::try_from(port).unwrap_or(u16::MAX);
        match std::net::TcpListener::bind((ip, port)) {
            Ok(_) => return Ok(port),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Time left until `deadline`, `None` for no deadline; `Some(ZERO)` once it passed.
pub(crate) fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trip_and_rejections() {
        let h = Hello::ours(4096);
        assert_eq!(Hello::decode(&h.encode()), Ok(h));
        assert_eq!(
            Hello::decode(b"GET / HTTP/1.1\r\n"),
            Err(HandshakeError::NotShmlink)
        );
        let mut v2 = h.encode();
        v2[8] = 2;
        assert_eq!(
            Hello::decode(&v2),
            Err(HandshakeError::Version {
                ours: PROTOCOL_VERSION,
                theirs: 2
            })
        );
        let mut zero = h.encode();
        zero[12..16].fill(0);
        assert_eq!(Hello::decode(&zero), Err(HandshakeError::ZeroMaxFrame));
        assert_eq!(Hello::agree(1000, h), 1000);
        assert_eq!(Hello::agree(10_000, h), 4096);
    }
}

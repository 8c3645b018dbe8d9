//! The shared-memory transport: `shm://NAME`.
//!
//! # Rendezvous
//!
//! The server's [`ShmListener`] creates the segment `NAME`: an accept queue (an MPMC
//! ring of connection ids, tagged so no other ring passes for one). A client:
//!
//! 1. opens the accept queue by name (none, or one left by a dead server:
//!    [`ConnectError::NoListener`]);
//! 2. creates its connection segment `NAME.PID.SEQ`, a [`Duplex`] of two frame rings
//!    sized for the agreed maximum frame, claims end A and writes its hello into it;
//! 3. pushes the connection id `PID << 32 | SEQ` into the accept queue;
//! 4. waits for the server's hello, checking every 20 ms that the listener's process
//!    is alive (a dead server is `NoListener`, not a hang), until the connect deadline;
//! 5. unlinks the connection segment's name: from here on nothing is left in
//!    `/dev/shm` whatever happens, and the memory goes away when both ends unmap it
//!    (on drop, or when the kernel reaps a killed process).
//!
//! The server's `accept` pops an id, opens `NAME.PID.SEQ`, claims end B, checks the
//! client's hello and answers with its own. The client's segment is opened like any
//! segment, with every check of [`SegmentBuilder::open`](crate::segment::SegmentBuilder::open):
//! one that is not ours, too large, or sparse (a header claiming memory the file
//! does not have) is an [`AcceptError::Shm`] before end B is claimed or a ring
//! touched, and the listener stays usable. An id whose segment is gone (the client
//! gave up) is skipped; one left by a client killed before it was accepted is stale and
//! removed. Stale `NAME.*` leftovers are also swept when a listener binds, and
//! `shmlink rm --stale` clears them at any time.
//!
//! A peer that dies is seen through the rings' role words: its end's roles name a dead
//! process, so a receive reports [`TransportRecvError::Disconnected`] once everything it sent
//! was taken.

use core::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::{
    AcceptError, ConnectError, HandshakeError, IoFailure, ListenError, TransportRecvError,
    TransportSendError,
};
use super::{Hello, TransportOptions, remaining};

use crate::process::{token_alive, token_of};
use crate::ring::{
    self, BuildError, Duplex, DuplexHeader, End, FrameConsumer, FrameProducer, Half, Mpmc,
    MpmcConsumer, MpmcHeader, MpmcProducer, PopError, PushError,
};
use crate::segment::{AnyRegion, CreateError, OpenError, Segment, ShmRegion};
use crate::sync::WaitMode;
use crate::sync::atomic::{AtomicU32, Ordering};

/// Fingerprint tag of an accept queue (`b"SHMLISTN"`).
const LISTENER_TAG: u64 = 0x4e54_5349_4c4d_4853;

/// The segment fingerprint of a shared-memory listener's accept queue (an MPMC ring
/// of `u64`s tagged as a listener's): how `shmlink ls` tells a listener from a ring.
///
/// # Examples
///
/// ```
/// use shmlink::segment;
/// use shmlink::transport::{self, TransportOptions, shm::listener_fingerprint};
/// # let name = format!("doc-listener-fp-{}", std::process::id());
///
/// let _listener = transport::listen(&format!("shm://{name}"), &TransportOptions::default())?;
/// let info = segment::inspect(&name)?;
/// assert_eq!(info.header.unwrap().fingerprint, listener_fingerprint());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn listener_fingerprint() -> u64 {
    crate::ring::mpmc::tagged_fingerprint::<u64>(LISTENER_TAG)
}
/// Slots of the accept queue.
const BACKLOG: usize = 64;
/// How often a connecting client checks that the listener's process lives.
const LIVENESS_SLICE: Duration = Duration::from_millis(20);

/// One direction of a connection, on the heap (`pair`) or in a named segment.
type Link = Half<AnyRegion<DuplexHeader>>;

/// Connection ids of this process.
static NEXT_SEQ: AtomicU32 = AtomicU32::new(1);

/// A shared-memory connection: the two halves of one end of a [`Duplex`].
pub struct ShmConnection {
    tx: ShmSender,
    rx: ShmReceiver,
}

impl ShmConnection {
    fn new(tx: FrameProducer<Link>, rx: FrameConsumer<Link>, max: usize) -> Self {
        Self {
            tx: ShmSender::new(tx, max),
            rx: ShmReceiver::new(rx, max),
        }
    }

    /// Splits the connection into its halves.
    pub fn split(self) -> (ShmSender, ShmReceiver) {
        (self.tx, self.rx)
    }

    /// Largest frame both ends agreed on.
    pub fn max_frame(&self) -> usize {
        self.tx.max
    }
}

impl fmt::Debug for ShmConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmConnection")
            .field("max_frame", &self.tx.max)
            .finish_non_exhaustive()
    }
}

/// The sending half of a shared-memory connection.
pub struct ShmSender {
    tx: FrameProducer<Link>,
    max: usize,
    broken: bool,
}

/// The receiving half of a shared-memory connection.
pub struct ShmReceiver {
    rx: FrameConsumer<Link>,
    max: usize,
    broken: bool,
}

impl fmt::Debug for ShmSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmSender")
            .field("max_frame", &self.max)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ShmReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmReceiver")
            .field("max_frame", &self.max)
            .finish_non_exhaustive()
    }
}

impl ShmSender {
    fn new(tx: FrameProducer<Link>, max: usize) -> Self {
        Self {
            tx,
            max,
            broken: false,
        }
    }

    /// See [`FrameSend::send`](super::FrameSend::send).
    ///
    /// # Errors
    ///
    /// As [`FrameSend::send`](super::FrameSend::send).
    #[inline]
    pub fn send(
        &mut self,
        frame: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), TransportSendError> {
        if self.broken {
            return Err(TransportSendError::Broken);
        }
        if frame.len() > self.max {
            return Err(TransportSendError::TooLarge {
                len: frame.len(),
                max: self.max,
            });
        }
        // Tries first and reads the clock only if it has to wait.
        self.tx.send_until(frame, deadline).map_err(|e| match e {
            ring::FrameSendError::TooLarge { len, max } => {
                TransportSendError::TooLarge { len, max }
            }
            ring::FrameSendError::Full | ring::FrameSendError::Timeout => {
                TransportSendError::Timeout
            }
            ring::FrameSendError::Disconnected => TransportSendError::Disconnected,
            _ => {
                self.broken = true;
                TransportSendError::Broken
            }
        })
    }

    /// Largest frame both ends agreed on.
    pub fn max_frame(&self) -> usize {
        self.max
    }
}

impl ShmReceiver {
    fn new(rx: FrameConsumer<Link>, max: usize) -> Self {
        Self {
            rx,
            max,
            broken: false,
        }
    }

    /// See [`FrameRecv::recv`](super::FrameRecv::recv).
    ///
    /// # Errors
    ///
    /// As [`FrameRecv::recv`](super::FrameRecv::recv).
    #[inline]
    pub fn recv(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<(), TransportRecvError> {
        if self.broken {
            return Err(TransportRecvError::Broken);
        }
        let r = self.rx.recv_until(buf, deadline);
        self.settle(r, buf)
    }

    /// Largest frame both ends agreed on.
    pub fn max_frame(&self) -> usize {
        self.max
    }

    /// Receives a frame only if one is there (`Timeout` otherwise).
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<(), TransportRecvError> {
        if self.broken {
            return Err(TransportRecvError::Broken);
        }
        let r = self.rx.try_recv(buf);
        self.settle(r, buf)
    }

    fn settle(
        &mut self,
        r: Result<usize, ring::FrameRecvError>,
        buf: &mut Vec<u8>,
    ) -> Result<(), TransportRecvError> {
        match r {
            Ok(len) if len > self.max => {
                // The ring allows up to its own maximum, which may exceed the agreed
                // one: a peer that ignores the agreement is broken.
                self.broken = true;
                buf.clear();
                Err(TransportRecvError::TooLarge { len, max: self.max })
            }
            Ok(_) => Ok(()),
            Err(ring::FrameRecvError::Empty | ring::FrameRecvError::Timeout) => {
                Err(TransportRecvError::Timeout)
            }
            Err(ring::FrameRecvError::Disconnected) => Err(TransportRecvError::Disconnected),
            Err(_) => {
                self.broken = true;
                Err(TransportRecvError::Malformed(
                    "shared-memory ring corrupted",
                ))
            }
        }
    }
}

impl super::FrameSend for ShmSender {
    #[inline]
    fn send(&mut self, frame: &[u8], deadline: Option<Instant>) -> Result<(), TransportSendError> {
        ShmSender::send(self, frame, deadline)
    }
    fn max_frame(&self) -> usize {
        self.max
    }
}

impl super::FrameRecv for ShmReceiver {
    #[inline]
    fn recv(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<(), TransportRecvError> {
        ShmReceiver::recv(self, buf, deadline)
    }
    fn max_frame(&self) -> usize {
        self.max
    }
}

impl super::Transport for ShmConnection {
    type Sender = ShmSender;
    type Receiver = ShmReceiver;
    fn split(self) -> (ShmSender, ShmReceiver) {
        (self.tx, self.rx)
    }
}

/// Ring bytes per direction for `opts`: the configured size, grown to hold two
/// maximal frames.
fn ring_capacity(opts: &TransportOptions) -> usize {
    let need = 2 * (ring_max(opts) + 8) + 16;
    opts.shm_capacity.max(need).next_power_of_two()
}

/// The rings' own maximum: room for the hello even when the agreed maximum is
/// smaller (the agreed one is enforced by the sender and receiver).
fn ring_max(opts: &TransportOptions) -> usize {
    opts.max_frame.max(super::HELLO_LEN)
}

fn mode(opts: &TransportOptions) -> WaitMode {
    if opts.shm_spin {
        WaitMode::Spin
    } else {
        WaitMode::Blocking
    }
}

/// An in-process connected pair over a heap duplex.
pub(crate) fn pair(
    opts: &TransportOptions,
) -> Result<(ShmConnection, ShmConnection), ConnectError> {
    let link = Duplex::<AnyRegion<_>>::new_in(ring_capacity(opts), ring_max(opts), mode(opts))
        .map_err(ConnectError::Shm)?;
    let claim = |end| {
        link.end(end)
            .map_err(|e| ConnectError::Shm(BuildError::BadConfig(claim_corruption(e))))
    };
    let (a_tx, a_rx) = claim(End::A)?;
    let (b_tx, b_rx) = claim(End::B)?;
    let max = opts.max_frame;
    let conn = |tx, rx| ShmConnection::new(tx, rx, max);
    Ok((conn(a_tx, a_rx), conn(b_tx, b_rx)))
}

fn claim_corruption(e: ring::ClaimError) -> ring::Corruption {
    match e {
        ring::ClaimError::Corrupted(c) => c,
        _ => ring::Corruption {
            what: "role of a fresh connection already taken",
            found: 0,
        },
    }
}

fn conn_name(listener: &str, id: u64) -> String {
    format!("{listener}.{}.{}", id >> 32, id & 0xffff_ffff)
}

/// A shared-memory listener: the accept queue `NAME`.
pub struct ShmListener {
    name: String,
    queue: Mpmc<u64, ShmRegion<MpmcHeader>>,
    rx: Mutex<MpmcConsumer<u64, ShmRegion<MpmcHeader>>>,
    /// Held so the queue never looks abandoned by every producer (clients come and
    /// go; the server must keep waiting, not see "disconnected").
    _keep: MpmcProducer<u64, ShmRegion<MpmcHeader>>,
    opts: TransportOptions,
}

impl fmt::Debug for ShmListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmListener")
            .field("name", &self.name)
            .field("pending", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl ShmListener {
    pub(crate) fn bind(name: &str, opts: &TransportOptions) -> Result<Self, ListenError> {
        let create = || {
            Mpmc::<u64, _>::create_tagged(
                Segment::builder(name).unlink_on_drop(true),
                BACKLOG,
                WaitMode::Blocking,
                LISTENER_TAG,
            )
        };
        let queue = match create() {
            Ok(q) => q,
            Err(BuildError::Create {
                error: CreateError::AlreadyExists,
                ..
            }) => {
                // A listener killed without cleaning up leaves a stale queue: take
                // the name over. A live (or merely idle) one keeps it.
                match crate::segment::remove_stale(name) {
                    Ok(true) => create().map_err(map_listen)?,
                    _ => return Err(ListenError::in_use()),
                }
            }
            Err(e) => return Err(map_listen(e)),
        };
        sweep_stale(name);
        let rx = queue
            .consumer()
            .map_err(|e| ListenError::Shm(BuildError::BadConfig(claim_corruption(e))))?;
        let keep = queue
            .producer()
            .map_err(|e| ListenError::Shm(BuildError::BadConfig(claim_corruption(e))))?;
        Ok(Self {
            name: name.to_string(),
            queue,
            rx: Mutex::new(rx),
            _keep: keep,
            opts: opts.clone(),
        })
    }

    /// `shm://NAME`.
    pub fn url(&self) -> String {
        format!("shm://{}", self.name)
    }

    /// Waits for a client until `deadline` and completes its hello.
    ///
    /// # Errors
    ///
    /// As [`Listener::accept`](super::Listener::accept).
    pub fn accept(&self, deadline: Option<Instant>) -> Result<ShmConnection, AcceptError> {
        let mut rx = self.rx.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let id = match remaining(deadline) {
                None => rx.pop(),
                Some(left) => rx.pop_timeout(left),
            };
            let id = match id {
                Ok(id) => id,
                Err(PopError::Timeout | PopError::Empty) => return Err(AcceptError::Timeout),
                Err(PopError::Disconnected) => {
                    // Cannot happen while `_keep` lives; wait out the deadline rather
                    // than spin.
                    std::thread::sleep(
                        remaining(deadline)
                            .unwrap_or(LIVENESS_SLICE)
                            .min(LIVENESS_SLICE),
                    );
                    continue;
                }
                Err(_) => return Err(AcceptError::Timeout),
            };
            crate::process::crash::point("shm.accept", 1);
            if let Some(conn) = self.open_conn(id)? {
                return Ok(conn);
            }
        }
    }

    /// Opens the connection of `id`; `None` if its client is gone.
    fn open_conn(&self, id: u64) -> Result<Option<ShmConnection>, AcceptError> {
        let name = conn_name(&self.name, id);
        let link = match Duplex::<AnyRegion<_>>::open_in(
            Segment::builder(&name).timeout(self.opts.handshake_timeout),
        ) {
            Ok(link) => link,
            Err(BuildError::Open {
                error: OpenError::NotFound | OpenError::InvalidName(_),
                ..
            }) => {
                return Ok(None);
            }
            Err(BuildError::Open {
                error: OpenError::Stale(_),
                ..
            }) => {
                let _ = crate::segment::remove_stale(&name);
                return Ok(None);
            }
            Err(e) => return Err(AcceptError::Shm(e)),
        };
        let Ok((mut tx, mut rx)) = link.end(End::B) else {
            return Ok(None); // someone else holds it: not ours to serve
        };
        crate::process::crash::point("shm.accept", 2);
        let mut hello = Vec::new();
        let deadline = Instant::now().checked_add(self.opts.handshake_timeout);
        let theirs = match rx.recv_until(&mut hello, deadline) {
            Ok(_) => Hello::decode(&hello),
            Err(ring::FrameRecvError::Disconnected) => Err(HandshakeError::Disconnected),
            Err(ring::FrameRecvError::Timeout | ring::FrameRecvError::Empty) => {
                Err(HandshakeError::Timeout)
            }
            Err(_) => Err(HandshakeError::NotShmlink),
        };
        crate::process::crash::point("shm.accept", 3);
        let ours = self.opts.max_frame.min(link.max_frame());
        // Answer even a bad hello, so the client can say what went wrong.
        let _ = tx.try_send(&Hello::ours(ours).encode());
        crate::process::crash::point("shm.accept", 4);
        let theirs = theirs.map_err(AcceptError::Handshake)?;
        let max = Hello::agree(ours, theirs);
        Ok(Some(ShmConnection::new(tx, rx, max)))
    }
}

/// Removes stale `NAME.*` connection segments (left by clients killed before they
/// were accepted, or by a killed server). Other segments are not looked at.
fn sweep_stale(name: &str) {
    crate::segment::remove_stale_prefixed(&format!("{name}."));
}

fn map_listen(e: BuildError) -> ListenError {
    match e {
        BuildError::Create {
            error: CreateError::AlreadyExists,
            ..
        } => ListenError::in_use(),
        e => ListenError::Shm(e),
    }
}

fn map_open(name: &str, e: BuildError) -> ConnectError {
    match e {
        BuildError::Open {
            error: OpenError::NotFound | OpenError::Stale(_),
            ..
        } => ConnectError::no_listener(),
        // A segment of that name that is not an accept queue: say what it is.
        BuildError::Open {
            error: OpenError::WrongKind { found, .. },
            ..
        } => ConnectError::NotAListener {
            name: name.to_owned(),
            found: crate::segment::Kind::from_code(found)
                .map_or_else(|| format!("segment of kind #{found}"), |k| k.to_string()),
        },
        BuildError::Open {
            error: OpenError::TypeMismatch { .. },
            ..
        } => ConnectError::NotAListener {
            name: name.to_owned(),
            found: "ring of another type".to_owned(),
        },
        e => ConnectError::Shm(e),
    }
}

/// Connects to the listener `name` (see the module docs for the steps).
pub(crate) fn connect(
    name: &str,
    opts: &TransportOptions,
    deadline: Option<Instant>,
) -> Result<ShmConnection, ConnectError> {
    let queue = Mpmc::<u64, _>::open_tagged(Segment::builder(name), LISTENER_TAG)
        .map_err(|e| map_open(name, e))?;
    let creator = queue.segment().creator();
    let server = token_of(creator.pid, creator.start_ticks);
    if !token_alive(server) {
        return Err(ConnectError::no_listener());
    }
    crate::process::crash::point("shm.connect", 1);
    let seq = NEXT_SEQ.fetch_add(1, Ordering::Relaxed);
    let id = (u64::from(std::process::id()) << 32) | u64::from(seq);
    let conn = conn_name(name, id);
    let link = Duplex::<AnyRegion<_>>::create_in(
        Segment::builder(&conn).unlink_on_drop(true),
        ring_capacity(opts),
        ring_max(opts),
        mode(opts),
    )
    .map_err(ConnectError::Shm)?;
    let (mut tx, mut rx) = link
        .end(End::A)
        .map_err(|e| ConnectError::Shm(BuildError::BadConfig(claim_corruption(e))))?;
    tx.try_send(&Hello::ours(opts.max_frame).encode())
        .map_err(|_| {
            ConnectError::Shm(BuildError::BadConfig(ring::Corruption {
                what: "room for the hello in a fresh ring",
                found: 0,
            }))
        })?;
    crate::process::crash::point("shm.connect", 2);
    let mut producer = queue
        .producer()
        .map_err(|e| ConnectError::Shm(BuildError::BadConfig(claim_corruption(e))))?;
    let pushed = match remaining(deadline) {
        None => producer.push(id),
        Some(left) => producer.push_timeout(id, left),
    };
    match pushed {
        Ok(()) => {}
        Err(PushError::Disconnected(_)) => return Err(ConnectError::no_listener()),
        Err(_) => return Err(ConnectError::timeout()),
    }
    crate::process::crash::point("shm.connect", 3);
    drop(producer);
    // Wait for the server's hello, checking that the server lives.
    let mut hello = Vec::new();
    loop {
        let slice = Instant::now() + LIVENESS_SLICE;
        let until = match deadline {
            Some(d) if d < slice => d,
            _ => slice,
        };
        match rx.recv_until(&mut hello, Some(until)) {
            Ok(_) => break,
            Err(ring::FrameRecvError::Timeout | ring::FrameRecvError::Empty) => {
                if !token_alive(server) {
                    return Err(ConnectError::no_listener());
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(ConnectError::timeout());
                }
            }
            Err(ring::FrameRecvError::Disconnected) => {
                return Err(ConnectError::handshake(HandshakeError::Disconnected));
            }
            Err(_) => return Err(ConnectError::handshake(HandshakeError::NotShmlink)),
        }
    }
    let theirs = Hello::decode(&hello).map_err(ConnectError::handshake)?;
    crate::process::crash::point("shm.connect", 4);
    // Both ends have it mapped: the name is no longer needed by anyone.
    if let Some(segment) = link.segment() {
        segment.unlink().map_err(|e| {
            ConnectError::io(IoFailure::new(
                "shm_unlink",
                &std::io::Error::other(e.to_string()),
            ))
        })?;
    }
    crate::process::crash::point("shm.connect", 5);
    let max = Hello::agree(opts.max_frame, theirs);
    Ok(ShmConnection::new(tx, rx, max))
}

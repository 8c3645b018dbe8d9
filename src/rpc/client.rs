//! The client: calls in flight keyed by id, and a leader/follower receive path.
//!
//! There is no background thread. Every caller that waits for an answer either reads
//! the connection itself (one at a time: the *reader*) or sleeps on a condition
//! variable. The reader delivers each frame to its call's slot, wakes sleepers only if
//! there are any, and gives up the reading role as soon as its own answer arrived (or
//! its deadline passed), waking a sleeper to take over. A single caller thus reads its
//! own answer with no thread hand-off at all. The role is a guard ([`Reader`]): a
//! reader that unwinds (say, the `Deserialize` of its response panicked) gives it up
//! and wakes a sleeper on the way out.

use core::fmt;
use core::marker::PhantomData;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{ConnectError, RpcError, TransportFailure};
use super::wire::{self, Code, Kind};
use super::{DEFAULT_CALL_TIMEOUT, IdMap, STREAM_WINDOW};
use crate::rpc::handoff::{Handoff, Reader, Turn};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::transport::{
    self, ConnectError as TransportConnectError, Connection, TransportRecvError, TransportSendError,
};

/// Settings of an RPC client.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shmlink::rpc::ClientOptions;
///
/// let opts = ClientOptions { timeout: Duration::from_secs(2), ..ClientOptions::default() };
/// assert_eq!(opts.timeout, Duration::from_secs(2));
/// ```
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Transport settings (maximum frame, connect timeout, shm ring size).
    pub transport: transport::TransportOptions,
    /// Time budget of each call unless a handle says otherwise.
    pub timeout: Duration,
    /// Connect again after the connection failed (the server stopped, died or
    /// restarted): calls in flight on the failed connection fail with a typed error
    /// ([`RpcError::ServerGone`] if the server went), and the next call dials the URL
    /// again, at most once per backoff interval (1 ms, doubling up to 1 s, while the
    /// server is away; calls meanwhile fail at once). Only for clients made from a URL
    /// (`connect`, `connect_with`, `connect_timeout`). Default `false`.
    pub reconnect: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            transport: transport::TransportOptions::default(),
            timeout: DEFAULT_CALL_TIMEOUT,
            reconnect: false,
        }
    }
}

/// The end of a call as the server sent it.
struct Reply {
    code: Code,
    payload: Vec<u8>,
}

enum Slot {
    Unary(Option<Reply>),
    /// A unary call nobody waits for ([`Call::detach`]): its answer is dropped.
    Detached,
    Stream {
        items: VecDeque<Vec<u8>>,
        end: Option<Reply>,
    },
}

/// The calls in flight, under the reading role's lock ([`Handoff`]).
struct Table {
    calls: IdMap<Slot>,
    /// The connection failed: every call fails with this.
    dead: Option<RpcError<()>>,
}

struct TxState {
    tx: transport::Sender,
    buf: Vec<u8>,
}

struct RxState {
    rx: transport::Receiver,
    buf: Vec<u8>,
}

struct Shared {
    tx: Mutex<TxState>,
    rx: Mutex<RxState>,
    table: Handoff<Table>,
    next_id: AtomicU64,
    max_frame: usize,
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Clone, Copy)]
enum Budget {
    Timeout(Duration),
    Deadline(Instant),
}

impl Budget {
    /// The deadline of a call starting now, and its budget in ns for the wire
    /// (`u64::MAX`: none), from one clock read.
    fn start(self) -> (Option<Instant>, u64) {
        let now = Instant::now();
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1);
        match self {
            Budget::Timeout(t) => match now.checked_add(t) {
                Some(d) => (Some(d), ns(t)),
                None => (None, u64::MAX),
            },
            Budget::Deadline(d) => (Some(d), ns(d.saturating_duration_since(now))),
        }
    }
}

/// A generic RPC client over one connection: what the stubs [`service!`](crate::service)
/// generates are built on. Cheap to clone; clones share the connection.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shmlink::rpc::{Client, ClientOptions, ConnectError};
///
/// // Nothing serves there.
/// let err = Client::connect("unix:///nonexistent/rpc.sock", 42, &ClientOptions::default());
/// assert!(matches!(err, Err(ConnectError::Transport(_))));
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    /// With [`ClientOptions::reconnect`]: the connection of the moment, shared by
    /// every clone (`shared` is then the first one, unused).
    redial: Option<Arc<Redial>>,
    budget: Budget,
}

/// What a reconnecting client dials, and its connection of the moment.
struct Redial {
    url: String,
    service_id: u64,
    opts: ClientOptions,
    state: Mutex<RedialState>,
}

struct RedialState {
    current: Arc<Shared>,
    /// No dialing before this (backoff while the server is away).
    next_try: Option<Instant>,
    pause: Duration,
}

/// The first pause between two dials of a server that is away, and the longest.
const REDIAL_FIRST: Duration = Duration::from_millis(1);
const REDIAL_MAX: Duration = Duration::from_secs(1);

impl Redial {
    /// The connection to use now: the current one, or, once it failed, a new one if
    /// the backoff allows a dial and the dial succeeds (otherwise the failed one, on
    /// which a call fails at once with the connection's error).
    fn current(&self) -> Arc<Shared> {
        let mut st = relock(&self.state);
        if st.current.table.with(|t| t.dead.is_none()) {
            return st.current.clone();
        }
        let now = Instant::now();
        if st.next_try.is_some_and(|t| now < t) {
            return st.current.clone();
        }
        let opts = ClientOptions {
            reconnect: false,
            ..self.opts.clone()
        };
        match Client::connect(&self.url, self.service_id, &opts) {
            Ok(c) => {
                crate::sync::slow_path!(INFO, url = %self.url, "rpc: reconnected");
                st.current = c.shared;
                st.next_try = None;
                st.pause = REDIAL_FIRST;
            }
            Err(_e) => {
                crate::sync::slow_path!(WARN, url = %self.url, error = %_e, "rpc: reconnect failed");
                st.next_try = Some(now + st.pause);
                st.pause = (st.pause * 2).min(REDIAL_MAX);
            }
        }
        st.current.clone()
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.conn();
        let (in_flight, dead) = shared.table.with(|t| (t.calls.len(), t.dead.clone()));
        f.debug_struct("Client")
            .field("in_flight", &in_flight)
            .field("dead", &dead)
            .field("budget", &self.budget)
            .finish()
    }
}

fn send_failure<E>(e: TransportSendError) -> RpcError<E> {
    match e {
        TransportSendError::TooLarge { .. } => RpcError::TooLarge,
        TransportSendError::Timeout => RpcError::DeadlineExceeded,
        TransportSendError::Disconnected => RpcError::ServerGone,
        e => RpcError::Transport(TransportFailure::Send(e)),
    }
}

impl Client {
    /// Connects to `url` and presents `service_id` (see the generated `SERVICE_ID`).
    ///
    /// # Errors
    ///
    /// [`ConnectError`].
    pub fn connect(
        url: &str,
        service_id: u64,
        opts: &ClientOptions,
    ) -> Result<Client, ConnectError> {
        let conn = transport::connect(url, &opts.transport)?;
        Self::new(conn, service_id, opts)
            .map(|c| c.redialing(url, service_id, opts))
            .map_err(|e| e.at(url))
    }

    /// With [`ClientOptions::reconnect`], makes this client dial `url` again after
    /// its connection fails.
    fn redialing(mut self, url: &str, service_id: u64, opts: &ClientOptions) -> Client {
        if opts.reconnect {
            self.redial = Some(Arc::new(Redial {
                url: url.to_owned(),
                service_id,
                opts: opts.clone(),
                state: Mutex::new(RedialState {
                    current: self.shared.clone(),
                    next_try: None,
                    pause: REDIAL_FIRST,
                }),
            }));
        }
        self
    }

    /// The connection calls go on now.
    fn conn(&self) -> Arc<Shared> {
        match &self.redial {
            None => self.shared.clone(),
            Some(r) => r.current(),
        }
    }

    /// Like [`connect`](Self::connect), but while nothing listens at `url` (no socket
    /// yet, connection refused, no listener segment, or a dead server's), tries again
    /// until `timeout` has passed: for a client that may start before its server, or
    /// while the server restarts. It tries every millisecond at first, then backs off
    /// to every 50 ms.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Timeout`] if nothing listened in time; any other
    /// [`ConnectError`] at once (a wrong service, a refused handshake, a bad URL).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use shmlink::rpc::{Client, ClientOptions, ConnectError};
    ///
    /// // Nothing ever listens here: the call gives up after the timeout.
    /// let started = Instant::now();
    /// let err = Client::connect_timeout(
    ///     "unix:///nonexistent/rpc.sock",
    ///     42,
    ///     &ClientOptions::default(),
    ///     Duration::from_millis(30),
    /// );
    /// assert!(matches!(err, Err(ConnectError::Timeout { .. })));
    /// assert!(started.elapsed() >= Duration::from_millis(30));
    /// ```
    pub fn connect_timeout(
        url: &str,
        service_id: u64,
        opts: &ClientOptions,
        timeout: Duration,
    ) -> Result<Client, ConnectError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut pause = Duration::from_millis(1);
        loop {
            match transport::connect(url, &opts.transport) {
                Ok(conn) => {
                    return Self::new(conn, service_id, opts)
                        .map(|c| c.redialing(url, service_id, opts))
                        .map_err(|e| e.at(url));
                }
                Err(TransportConnectError::NoListener { .. }) => {
                    let now = Instant::now();
                    let Some(left) =
                        deadline.map_or(Some(pause), |d| d.checked_duration_since(now))
                    else {
                        return Err(ConnectError::timeout().at(url));
                    };
                    if left.is_zero() {
                        return Err(ConnectError::timeout().at(url));
                    }
                    std::thread::sleep(pause.min(left));
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// An RPC client over `conn`: sends the hello with `service_id` and waits for the
    /// server to accept it.
    ///
    /// # Errors
    ///
    /// [`ConnectError::WrongService`] if the server runs another service,
    /// [`ConnectError::Timeout`] or [`ConnectError::ServerGone`].
    pub fn new(
        conn: Connection,
        service_id: u64,
        opts: &ClientOptions,
    ) -> Result<Client, ConnectError> {
        let max_frame = conn.max_frame();
        let (mut tx, mut rx) = conn.split();
        let deadline = Instant::now().checked_add(opts.transport.connect_timeout);
        let mut buf = Vec::with_capacity(64);
        wire::encode_header(&mut buf, Kind::Hello, Code::Ok, 0, service_id, 0);
        tx.send(&buf, deadline).map_err(|e| match e {
            TransportSendError::Timeout => ConnectError::timeout(),
            _ => ConnectError::server_gone(),
        })?;
        rx.recv(&mut buf, deadline).map_err(|e| match e {
            TransportRecvError::Timeout => ConnectError::timeout(),
            TransportRecvError::Disconnected => ConnectError::server_gone(),
            _ => ConnectError::protocol("transport failed during the hello"),
        })?;
        let f =
            wire::decode(&buf).map_err(|_| ConnectError::protocol("undecodable hello reply"))?;
        if f.kind != Kind::HelloReply {
            return Err(ConnectError::protocol("expected a hello reply"));
        }
        match f.code {
            Code::Ok if f.method == service_id => {}
            Code::Ok | Code::WrongService => {
                return Err(ConnectError::WrongService {
                    url: String::new(),
                    ours: service_id,
                    theirs: f.method,
                });
            }
            _ => return Err(ConnectError::protocol("unexpected hello reply code")),
        }
        Ok(Client {
            shared: Arc::new(Shared {
                tx: Mutex::new(TxState {
                    tx,
                    buf: Vec::with_capacity(256),
                }),
                rx: Mutex::new(RxState {
                    rx,
                    buf: Vec::with_capacity(256),
                }),
                table: Handoff::new(Table {
                    calls: IdMap::default(),
                    dead: None,
                }),
                next_id: AtomicU64::new(1),
                max_frame,
            }),
            redial: None,
            budget: Budget::Timeout(opts.timeout),
        })
    }

    /// A handle on the same connection whose calls get `timeout` as their budget.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client {
            shared: self.shared.clone(),
            redial: self.redial.clone(),
            budget: Budget::Timeout(timeout),
        }
    }

    /// A handle on the same connection whose calls end at `deadline`.
    pub fn with_deadline(&self, deadline: Instant) -> Client {
        Client {
            shared: self.shared.clone(),
            redial: self.redial.clone(),
            budget: Budget::Deadline(deadline),
        }
    }

    /// Largest frame of the connection (requests and responses must fit, with a
    /// header of up to [`wire::MAX_HEADER_LEN`] bytes).
    pub fn max_frame(&self) -> usize {
        self.conn().max_frame
    }

    /// Calls in flight on this connection.
    pub fn in_flight(&self) -> usize {
        self.conn().table.with(|t| t.calls.len())
    }

    /// Sends a request for `method` and returns the pending call.
    pub fn call<Req: Serialize, Resp: DeserializeOwned, E: DeserializeOwned>(
        &self,
        method: u64,
        req: &Req,
    ) -> Call<Resp, E> {
        let (deadline, budget) = self.budget.start();
        let shared = self.conn();
        match Self::start(&shared, method, req, deadline, budget, Slot::Unary(None)) {
            Ok(id) => Call {
                shared: Some(shared),
                id,
                deadline,
                failed: None,
                _t: PhantomData,
            },
            Err(e) => Call {
                shared: None,
                id: 0,
                deadline,
                failed: Some(e),
                _t: PhantomData,
            },
        }
    }

    /// Sends a request for streaming `method` and returns the stream of its items.
    pub fn call_stream<Req: Serialize, T: DeserializeOwned, E: DeserializeOwned>(
        &self,
        method: u64,
        req: &Req,
    ) -> CallStream<T, E> {
        let (deadline, budget) = self.budget.start();
        let slot = Slot::Stream {
            items: VecDeque::new(),
            end: None,
        };
        let conn = self.conn();
        let (shared, id, failed) = match Self::start(&conn, method, req, deadline, budget, slot) {
            Ok(id) => (Some(conn), id, None),
            Err(e) => (None, 0, Some(e)),
        };
        CallStream {
            shared,
            id,
            deadline,
            failed,
            finished: false,
            consumed: 0,
            _t: PhantomData,
        }
    }

    fn start<Req: Serialize>(
        s: &Shared,
        method: u64,
        req: &Req,
        deadline: Option<Instant>,
        budget: u64,
        slot: Slot,
    ) -> Result<u64, RpcError<()>> {
        let id = s.next_id.fetch_add(1, Ordering::Relaxed);
        // Registered before the request leaves, so the answer always has a slot.
        s.table.with(|t| match &t.dead {
            Some(dead) => Err(dead.clone()),
            None => {
                t.calls.insert(id, slot);
                Ok(())
            }
        })?;
        let mut tx = relock(&s.tx);
        let TxState { tx, buf } = &mut *tx;
        wire::encode_header(buf, Kind::Request, Code::Ok, id, method, budget);
        let encoded = postcard::to_extend(req, std::mem::take(buf));
        let sent = match encoded {
            Ok(b) => {
                *buf = b;
                tx.send(buf, deadline).map_err(send_failure)
            }
            Err(_) => Err(RpcError::Protocol("the request could not be encoded")),
        };
        if let Err(e) = sent {
            s.table.with(|t| t.calls.remove(&id));
            return Err(e);
        }
        Ok(id)
    }
}

impl Shared {
    /// Waits until `take` gets something for call `id` out of the table, reading the
    /// connection when nobody else does (the reading role: [`Handoff`]). `take`
    /// removes the slot when the call is over; `Err(Protocol)` if the call has no slot.
    fn wait<R>(
        &self,
        id: u64,
        deadline: Option<Instant>,
        mut take: impl FnMut(&mut IdMap<Slot>, Option<&wire::Frame<'_>>) -> Option<R>,
    ) -> Result<R, RpcError<()>> {
        let turn = self.table.wait_turn(deadline, |t| {
            if !t.calls.contains_key(&id) {
                return Some(Err(RpcError::Protocol("call is not in flight")));
            }
            if let Some(r) = take(&mut t.calls, None) {
                return Some(Ok(r));
            }
            t.dead.clone().map(Err)
        });
        match turn {
            Turn::Ready(r) => r,
            Turn::TimedOut => Err(RpcError::DeadlineExceeded),
            Turn::Read(reader) => self.read_until(reader, id, deadline, take),
        }
    }

    /// The reader's loop: reads frames and delivers each to its call until `take`
    /// gets something for call `id` (`Ok`), the deadline passes, or the connection
    /// fails (`Err`, and every call fails with it). The reading role passes on when
    /// it returns or unwinds (`take` decodes the reader's own response, and a user's
    /// `Deserialize` may panic).
    fn read_until<R>(
        &self,
        mut reader: Reader<'_, Table>,
        id: u64,
        deadline: Option<Instant>,
        mut take: impl FnMut(&mut IdMap<Slot>, Option<&wire::Frame<'_>>) -> Option<R>,
    ) -> Result<R, RpcError<()>> {
        let mut rx = relock(&self.rx);
        let RxState { rx, buf } = &mut *rx;
        let failure: Option<RpcError<()>> = loop {
            match rx.recv(buf, deadline) {
                Ok(()) => {}
                Err(TransportRecvError::Timeout) => break None,
                Err(TransportRecvError::Disconnected) => break Some(RpcError::ServerGone),
                Err(e) => break Some(RpcError::Transport(TransportFailure::Recv(e))),
            }
            let f = match wire::decode(buf) {
                Ok(f) => f,
                Err(_) => break Some(RpcError::Protocol("undecodable frame")),
            };
            let mut bad = None;
            let done = reader.deliver(|t| {
                if f.id == id {
                    // Our own answer, taken straight from the receive buffer.
                    if let Some(r) = take(&mut t.calls, Some(&f)) {
                        return Some(r);
                    }
                }
                bad = match f.kind {
                    Kind::Reply if matches!(t.calls.get(&f.id), Some(Slot::Detached)) => {
                        t.calls.remove(&f.id);
                        None
                    }
                    Kind::Reply => {
                        let reply = Reply {
                            code: f.code,
                            payload: f.payload.to_vec(),
                        };
                        match t.calls.get_mut(&f.id) {
                            Some(Slot::Unary(r)) => *r = Some(reply),
                            Some(Slot::Stream { end, .. }) => *end = Some(reply),
                            // A call given up on: drop the late answer.
                            Some(Slot::Detached) | None => {}
                        }
                        None
                    }
                    Kind::Item => match t.calls.get_mut(&f.id) {
                        Some(Slot::Stream { items, .. }) => {
                            items.push_back(f.payload.to_vec());
                            None
                        }
                        Some(Slot::Unary(_) | Slot::Detached) => {
                            Some("stream item for a unary call")
                        }
                        None => None,
                    },
                    _ => Some("unexpected frame kind from the server"),
                };
                if bad.is_none() && f.id == id {
                    take(&mut t.calls, None)
                } else {
                    None
                }
            });
            if let Some(r) = done {
                return Ok(r);
            }
            if let Some(what) = bad {
                break Some(RpcError::Protocol(what));
            }
        };
        reader.give_up(|t| match failure {
            Some(e) => {
                t.dead = Some(e.clone());
                Err(e)
            }
            // The deadline passed; the answer may still have come meanwhile.
            None => match take(&mut t.calls, None) {
                Some(r) => Ok(r),
                None => {
                    crate::sync::slow_path!(DEBUG, call = id, "rpc: a call passed its deadline");
                    Err(RpcError::DeadlineExceeded)
                }
            },
        })
    }

    /// Forgets call `id`; tells the server if it was still running.
    fn abandon(&self, id: u64) {
        let running = self.table.with(|t| {
            let running = match t.calls.remove(&id) {
                Some(Slot::Unary(r)) => r.is_none(),
                Some(Slot::Detached) => true,
                Some(Slot::Stream { end, .. }) => end.is_none(),
                None => false,
            };
            running && t.dead.is_none()
        });
        if running {
            self.send_control(Kind::Cancel, id, 0);
        }
    }

    /// Sends a cancel or credit frame, best effort (bounded wait).
    fn send_control(&self, kind: Kind, id: u64, arg: u64) {
        let mut tx = relock(&self.tx);
        let TxState { tx, buf } = &mut *tx;
        wire::encode_header(buf, kind, Code::Ok, id, 0, arg);
        let _ = tx.send(buf, Instant::now().checked_add(Duration::from_millis(100)));
    }
}

fn finish<T: DeserializeOwned, E: DeserializeOwned>(reply: Reply) -> Result<T, RpcError<E>> {
    finish_bytes(reply.code, &reply.payload)
}

fn finish_bytes<T: DeserializeOwned, E: DeserializeOwned>(
    code: Code,
    payload: &[u8],
) -> Result<T, RpcError<E>> {
    match code {
        Code::Ok => {
            postcard::from_bytes(payload).map_err(|_| RpcError::Protocol("undecodable response"))
        }
        Code::ServiceError => match postcard::from_bytes(payload) {
            Ok(e) => Err(RpcError::Service(e)),
            Err(_) => Err(RpcError::Protocol("undecodable service error")),
        },
        code => Err(status_error(code)),
    }
}

fn status_error<E>(code: Code) -> RpcError<E> {
    match code {
        Code::DeadlineExceeded => RpcError::DeadlineExceeded,
        Code::UnknownMethod => RpcError::UnknownMethod,
        Code::BadRequest => RpcError::BadRequest,
        Code::Unavailable => RpcError::Unavailable,
        Code::Internal => RpcError::Internal,
        Code::ResponseTooLarge => RpcError::TooLarge,
        _ => RpcError::Protocol("unexpected reply code"),
    }
}

/// A call in flight: [`wait`](Call::wait) for its answer. Dropping it unanswered
/// cancels it on the server.
///
/// # Examples
///
/// See the [module docs](crate::rpc).
#[must_use = "a call is cancelled when dropped; wait() for its answer"]
pub struct Call<T, E> {
    shared: Option<Arc<Shared>>,
    id: u64,
    deadline: Option<Instant>,
    failed: Option<RpcError<()>>,
    _t: PhantomData<fn() -> (T, E)>,
}

impl<T, E> fmt::Debug for Call<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("id", &self.id)
            .field("deadline", &self.deadline)
            .field("failed", &self.failed)
            .finish()
    }
}

impl<T: DeserializeOwned, E: DeserializeOwned> Call<T, E> {
    /// Waits for the answer until the call's deadline.
    ///
    /// # Errors
    ///
    /// [`RpcError`]: the service's error, or what went wrong on the way.
    ///
    /// # Panics
    ///
    /// If the `Deserialize` of the response (`T`) or of the service's error (`E`)
    /// panics: the panic goes on to the caller, as a direct `postcard::from_bytes`
    /// would let it (it is a bug in that impl, not something the service or the
    /// connection did, so it is not turned into an [`RpcError`]). The client stays
    /// usable: the call is over (its answer arrived, nothing is cancelled), and the
    /// other calls on the connection, those already waiting and later ones, get their
    /// answers as usual.
    pub fn wait(mut self) -> Result<T, RpcError<E>> {
        if let Some(e) = self.failed.take() {
            return Err(e.cast());
        }
        let Some(shared) = self.shared.as_ref() else {
            return Err(RpcError::Protocol("call already finished"));
        };
        let id = self.id;
        let result = shared.wait(id, self.deadline, |calls, frame| match frame {
            // Our reply, straight from the receive buffer: no copy.
            Some(f) if f.kind == Kind::Reply => {
                calls.remove(&id);
                Some(finish_bytes::<T, E>(f.code, f.payload))
            }
            Some(_) => None,
            None => match calls.get_mut(&id) {
                Some(Slot::Unary(r)) if r.is_some() => {
                    let reply = r.take();
                    calls.remove(&id);
                    reply.map(|r| finish_bytes::<T, E>(r.code, &r.payload))
                }
                _ => None,
            },
        });
        match result {
            Ok(result) => {
                self.shared = None;
                result
            }
            Err(e) => Err(e.cast()), // Drop removes the slot and cancels
        }
    }

    /// The call's deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Stops waiting for the answer without cancelling the call: the server runs it,
    /// and its answer is dropped when it comes, by whichever caller reads the
    /// connection then. For a notification whose answer does not matter: no thread
    /// waits for it, and no cancel goes out. (The answer is read only when some other
    /// call on the connection is waited for; until then it waits in the transport.)
    ///
    /// # Errors
    ///
    /// What kept the request from going out (the connection failed before it, say).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::rpc::{Context, Server};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// shmlink::service! {
    ///     pub trait Tally {
    ///         client TallyClient;
    ///         server TallyServer;
    ///         error String;
    ///         /// Adds `n`.
    ///         fn add(n: u64) -> ();
    ///         /// The sum so far.
    ///         fn sum(unit: ()) -> u64;
    ///     }
    /// }
    /// #[derive(Default)]
    /// struct Sum(AtomicU64);
    /// impl Tally for Sum {
    ///     fn add(&self, _: &Context, n: u64) -> Result<(), String> {
    ///         self.0.fetch_add(n, Ordering::Relaxed);
    ///         Ok(())
    ///     }
    ///     fn sum(&self, _: &Context, (): ()) -> Result<u64, String> {
    ///         Ok(self.0.load(Ordering::Relaxed))
    ///     }
    /// }
    /// let server = Server::new(TallyServer(Sum::default())).workers(0).serve("tcp://127.0.0.1:0")?;
    /// let client = TallyClient::connect(server.url().unwrap())?;
    /// for n in 1..=10 {
    ///     client.add(n).detach()?; // sent; nobody waits for its answer
    /// }
    /// // One connection, handlers inline: the adds ran before this call.
    /// assert_eq!(client.sum(()).wait()?, 55);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn detach(mut self) -> Result<(), RpcError<E>> {
        if let Some(e) = self.failed.take() {
            return Err(e.cast());
        }
        let Some(shared) = self.shared.take() else {
            return Ok(());
        };
        let id = self.id;
        shared.table.with(|t| {
            if matches!(t.calls.get(&id), Some(Slot::Unary(Some(_)))) {
                t.calls.remove(&id); // already answered
            } else if let Some(slot @ Slot::Unary(None)) = t.calls.get_mut(&id) {
                *slot = Slot::Detached;
            }
        });
        Ok(())
    }
}

impl<T, E> Drop for Call<T, E> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.abandon(self.id);
        }
    }
}

/// The items of a server-streaming call, as an iterator. Dropping it before the end
/// cancels the call on the server.
#[must_use = "a stream is cancelled when dropped"]
pub struct CallStream<T, E> {
    shared: Option<Arc<Shared>>,
    id: u64,
    deadline: Option<Instant>,
    failed: Option<RpcError<()>>,
    finished: bool,
    consumed: u64,
    _t: PhantomData<fn() -> (T, E)>,
}

impl<T, E> fmt::Debug for CallStream<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallStream")
            .field("id", &self.id)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

enum Next {
    Item(Vec<u8>),
    End(Reply),
}

impl<T: DeserializeOwned, E: DeserializeOwned> CallStream<T, E> {
    /// The next item, waiting at most until `until` (or the stream's own deadline, if
    /// earlier). As [`Iterator::next`], except that when `until` passes first it
    /// returns `Some(Err(RpcError::DeadlineExceeded))` and the stream goes on: the
    /// call is not cancelled, and a later `next` or `next_until` reads on.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use shmlink::rpc::{Context, RpcError, Server, Sink};
    ///
    /// shmlink::service! {
    ///     pub trait Ticks {
    ///         client TicksClient;
    ///         server TicksServer;
    ///         error String;
    ///         /// One item now, one after 50 ms.
    ///         stream fn two(n: u64) -> u64;
    ///     }
    /// }
    /// struct Slow;
    /// impl Ticks for Slow {
    ///     fn two(&self, _: &Context, n: u64, sink: &mut Sink<'_, u64>) -> Result<(), String> {
    ///         sink.send(&n).map_err(|e| e.to_string())?;
    ///         std::thread::sleep(Duration::from_millis(50));
    ///         sink.send(&(n + 1)).map_err(|e| e.to_string())
    ///     }
    /// }
    /// let server = Server::new(TicksServer(Slow)).serve("tcp://127.0.0.1:0")?;
    /// let client = TicksClient::connect(server.url().unwrap())?;
    /// let mut items = client.two(7);
    /// assert_eq!(items.next_until(Instant::now() + Duration::from_secs(5)).unwrap()?, 7);
    /// // The second item is not there yet: the wait ends, the stream does not.
    /// let soon = Instant::now() + Duration::from_millis(1);
    /// assert!(matches!(items.next_until(soon), Some(Err(RpcError::DeadlineExceeded))));
    /// assert_eq!(items.next().unwrap()?, 8);
    /// assert!(items.next().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn next_until(&mut self, until: Instant) -> Option<Result<T, RpcError<E>>> {
        self.next_before(Some(until))
    }

    fn next_before(&mut self, until: Option<Instant>) -> Option<Result<T, RpcError<E>>> {
        if self.finished {
            return None;
        }
        if let Some(e) = self.failed.take() {
            self.finished = true;
            return Some(Err(e.cast()));
        }
        let shared = self.shared.clone()?;
        let id = self.id;
        let early = until.is_some_and(|u| self.deadline.is_none_or(|d| u < d));
        let deadline = if early { until } else { self.deadline };
        let next = shared.wait(id, deadline, |calls, frame| {
            if frame.is_some() {
                return None; // items and the end go through the slot
            }
            match calls.get_mut(&id) {
                Some(Slot::Stream { items, end }) => match items.pop_front() {
                    Some(item) => Some(Next::Item(item)),
                    None => {
                        let end = end.take().map(Next::End);
                        if end.is_some() {
                            calls.remove(&id);
                        }
                        end
                    }
                },
                _ => None,
            }
        });
        match next {
            Ok(Next::Item(bytes)) => {
                self.consumed += 1;
                if self.consumed >= STREAM_WINDOW / 2 {
                    shared.send_control(Kind::Credit, self.id, self.consumed);
                    self.consumed = 0;
                }
                Some(
                    postcard::from_bytes(&bytes)
                        .map_err(|_| RpcError::Protocol("undecodable stream item")),
                )
            }
            Ok(Next::End(reply)) => {
                self.finished = true;
                self.shared = None;
                match finish::<(), E>(reply) {
                    Ok(()) => None,
                    Err(e) => Some(Err(e)),
                }
            }
            // The caller's own deadline passed: the stream goes on.
            Err(RpcError::DeadlineExceeded) if early => Some(Err(RpcError::DeadlineExceeded)),
            Err(e) => {
                self.finished = true;
                Some(Err(e.cast()))
            }
        }
    }
}

impl<T: DeserializeOwned, E: DeserializeOwned> Iterator for CallStream<T, E> {
    type Item = Result<T, RpcError<E>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_before(None)
    }
}

impl<T, E> Drop for CallStream<T, E> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.abandon(self.id);
        }
    }
}

//! The server: an accept thread, one reader thread per connection, and a worker pool
//! (or inline execution on the reader threads).

use core::fmt;
use core::marker::PhantomData;
use std::cell::Cell;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::pool::JobQueue;
use super::wire::{self, Code, Kind};
use super::{CallCtl, Context, IdMap, STREAM_WINDOW, Service, Stop};
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::transport::{self, Connection, ListenError, Listener};

/// How often idle readers and the accept loop look at the shutdown flag.
const POLL: Duration = Duration::from_millis(100);
/// Least time an answer waits for room when its call's deadline already passed.
const ANSWER_GRACE: Duration = Duration::from_millis(100);
/// Most requests an inline reader keeps read ahead of the call it runs.
const READ_AHEAD_LIMIT: usize = 1024;
/// Most time an answer of a call without a deadline waits for room.
const ANSWER_LIMIT: Duration = Duration::from_secs(30);

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counters of a running server.
///
/// # Examples
///
/// ```
/// use shmlink::rpc::ServerStats;
///
/// let s = ServerStats::default();
/// assert_eq!(s.completed, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted (hello completed).
    pub connections: u64,
    /// Calls whose handler ran to the end and whose answer was sent.
    pub completed: u64,
    /// Calls cancelled by their caller (before or while running).
    pub cancelled: u64,
    /// Calls not started, or stopped, because their deadline passed.
    pub deadline_exceeded: u64,
    /// Calls refused because the server was shutting down.
    pub refused: u64,
    /// Handlers that panicked.
    pub panicked: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    deadline_exceeded: AtomicU64,
    refused: AtomicU64,
    panicked: AtomicU64,
}

impl Counters {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ServerStats {
        ServerStats {
            connections: self.connections.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            deadline_exceeded: self.deadline_exceeded.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            panicked: self.panicked.load(Ordering::Relaxed),
        }
    }
}

/// A server for one [`Service`], before it runs.
///
/// # Examples
///
/// See the [module docs](crate::rpc).
pub struct Server<S: Service> {
    service: S,
    workers: usize,
    inline_unary: bool,
    opts: transport::TransportOptions,
    stop_when_alone: bool,
}

impl<S: Service> fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("service", &self.service.name())
            .field("workers", &self.workers)
            .finish()
    }
}

impl<S: Service> Server<S> {
    /// A server for `service` with a pool of 4 workers.
    pub fn new(service: S) -> Self {
        Self {
            service,
            workers: 4,
            inline_unary: false,
            opts: transport::TransportOptions::default(),
            stop_when_alone: false,
        }
    }

    /// Stops the server once its last client has left (after a first one came): for
    /// a child process that serves one parent, which then exits with
    /// [`ServerHandle::wait`] instead of being told to.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::rpc::{Context, Server};
    ///
    /// shmlink::service! {
    ///     pub trait Echo {
    ///         client EchoClient;
    ///         server EchoServer;
    ///         error String;
    ///         fn echo(x: u64) -> u64;
    ///     }
    /// }
    /// struct Me;
    /// impl Echo for Me {
    ///     fn echo(&self, _: &Context, x: u64) -> Result<u64, String> {
    ///         Ok(x)
    ///     }
    /// }
    /// let server = Server::new(EchoServer(Me))
    ///     .stop_after_last_client(true)
    ///     .serve("tcp://127.0.0.1:0")?;
    /// let client = EchoClient::connect(server.url().unwrap())?;
    /// assert_eq!(client.echo(7).wait()?, 7);
    /// drop(client); // the only client leaves...
    /// let stats = server.wait(); // ...so this returns
    /// assert_eq!(stats.connections, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stop_after_last_client(mut self, yes: bool) -> Self {
        self.stop_when_alone = yes;
        self
    }

    /// Runs handlers on a pool of `n` threads shared by all connections: calls of one
    /// connection run concurrently and answer in any order, and a reader sees cancels
    /// while handlers run.
    ///
    /// `0` runs each call inline on its connection's reader thread instead: no thread
    /// hand-off (the lowest latency), but one call at a time per connection (calls of
    /// different connections still run in parallel), and a running call learns of a
    /// cancel only through its deadline.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// With a pool (`workers` > 0), runs **unary** calls inline on their connection's
    /// reader thread, as `workers(0)` runs every call, and only streaming calls on the
    /// pool: a unary call then costs no thread hand-off (tens of microseconds on a
    /// busy host). For services whose unary handlers return quickly and never wait
    /// for another call: one that blocks holds up the other calls of its connection,
    /// and learns of a cancel only through its deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::rpc::{Context, Server, Sink};
    ///
    /// shmlink::service! {
    ///     pub trait Feed {
    ///         client FeedClient;
    ///         server FeedServer;
    ///         error String;
    ///         /// Quick: runs on the reader.
    ///         fn name(unit: ()) -> String;
    ///         /// Long-lived: runs on a worker.
    ///         stream fn ticks(n: u32) -> u32;
    ///     }
    /// }
    /// struct Ticker;
    /// impl Feed for Ticker {
    ///     fn name(&self, _: &Context, (): ()) -> Result<String, String> {
    ///         Ok(std::thread::current().name().unwrap_or("").to_owned())
    ///     }
    ///     fn ticks(&self, _: &Context, n: u32, sink: &mut Sink<'_, u32>) -> Result<(), String> {
    ///         (0..n).try_for_each(|i| sink.send(&i)).map_err(|e| e.to_string())
    ///     }
    /// }
    /// let server = Server::new(FeedServer(Ticker))
    ///     .inline_unary(true)
    ///     .serve("tcp://127.0.0.1:0")?;
    /// let client = FeedClient::connect(server.url().unwrap())?;
    /// assert_eq!(client.name(()).wait()?, "shmlink-rpc-conn"); // the reader thread
    /// assert_eq!(client.ticks(3).collect::<Result<Vec<_>, _>>()?, [0, 1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn inline_unary(mut self, inline: bool) -> Self {
        self.inline_unary = inline;
        self
    }

    /// Transport settings for the listener.
    pub fn options(mut self, opts: transport::TransportOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Listens at `url` and serves in background threads.
    ///
    /// # Errors
    ///
    /// [`ListenError`] from the transport.
    pub fn serve(self, url: &str) -> Result<ServerHandle, ListenError> {
        let listener = transport::listen(url, &self.opts)?;
        Ok(self.serve_listener(listener))
    }

    /// Serves clients of `listener` in background threads.
    pub fn serve_listener(self, listener: Listener) -> ServerHandle {
        let url = listener.url();
        let handle = self.start(Some(url));
        let shared = handle.shared.clone();
        shared.live.fetch_add(1, Ordering::AcqRel);
        let spawned = std::thread::Builder::new()
            .name("shmlink-rpc-accept".into())
            .spawn({
                let shared = shared.clone();
                move || {
                    accept_loop(&shared, &listener);
                    drop(listener);
                    shared.exit();
                }
            });
        if spawned.is_err() {
            shared.exit();
        }
        handle
    }

    /// Starts the worker pool without a listener: feed it connections with
    /// [`ServerHandle::serve_connection`] (e.g. one end of [`transport::pair`]).
    pub fn start_detached(self) -> ServerHandle {
        self.start(None)
    }

    fn start(self, url: Option<String>) -> ServerHandle {
        let shared = Arc::new(ServerShared {
            service: Box::new(self.service),
            closing: AtomicBool::new(false),
            aborting: AtomicBool::new(false),
            inline: self.workers == 0,
            inline_unary: self.inline_unary,
            workers: self.workers,
            pool: JobQueue::new(self.workers.max(1) * 64),
            conns: Mutex::new(Vec::new()),
            live: AtomicUsize::new(0),
            exit_lock: Mutex::new(()),
            exit_cv: Condvar::new(),
            stats: Counters::default(),
            handshake_timeout: self.opts.handshake_timeout,
            stop_when_alone: self.stop_when_alone,
            clients: AtomicUsize::new(0),
        });
        for i in 0..self.workers {
            shared.live.fetch_add(1, Ordering::AcqRel);
            let s = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("shmlink-rpc-worker-{i}"))
                .spawn(move || {
                    worker_loop(&s);
                    s.exit();
                });
            if spawned.is_err() {
                shared.exit();
            }
        }
        ServerHandle {
            shared,
            url,
            stopped: false,
        }
    }
}

struct Job {
    conn: Arc<Conn>,
    id: u64,
    method: u64,
    deadline: Option<Instant>,
    ctl: Arc<CallCtl>,
    payload: Vec<u8>,
}

struct ServerShared {
    service: Box<dyn Service>,
    closing: AtomicBool,
    aborting: AtomicBool,
    inline: bool,
    /// Unary calls run on the reader ([`Server::inline_unary`]).
    inline_unary: bool,
    workers: usize,
    pool: JobQueue<Job>,
    conns: Mutex<Vec<std::sync::Weak<Conn>>>,
    /// Threads still running (accept, readers, workers).
    live: AtomicUsize,
    exit_lock: Mutex<()>,
    exit_cv: Condvar,
    stats: Counters,
    handshake_timeout: Duration,
    /// [`Server::stop_after_last_client`].
    stop_when_alone: bool,
    /// Connections past their hello and not yet closed.
    clients: AtomicUsize,
}

/// One client counted in [`ServerShared::clients`] while it lives; the last one to go
/// stops a server that asked for it.
struct ClientCount<'a>(&'a ServerShared);

impl<'a> ClientCount<'a> {
    fn new(shared: &'a ServerShared) -> Self {
        shared.clients.fetch_add(1, Ordering::AcqRel);
        ClientCount(shared)
    }
}

impl Drop for ClientCount<'_> {
    fn drop(&mut self) {
        let s = self.0;
        if s.clients.fetch_sub(1, Ordering::AcqRel) == 1 && s.stop_when_alone {
            let _g = relock(&s.exit_lock);
            s.closing.store(true, Ordering::Release);
            s.exit_cv.notify_all();
        }
    }
}

impl ServerShared {
    fn exit(&self) {
        let _g = relock(&self.exit_lock);
        self.live.fetch_sub(1, Ordering::AcqRel);
        self.exit_cv.notify_all();
    }
}

/// One connection's shared state: its sender and its calls in flight.
struct Conn {
    tx: Mutex<(transport::Sender, Vec<u8>)>,
    /// Calls handed to the pool, by id (for cancels and credits).
    calls: Mutex<IdMap<Arc<CallCtl>>>,
    /// The control block of the call running inline, reused call after call.
    inline_ctl: Arc<CallCtl>,
    gone: AtomicBool,
}

impl Conn {
    /// Sends an answer frame (header + payload written by `body`); `false` if the
    /// client is gone.
    fn send(
        &self,
        kind: Kind,
        code: Code,
        id: u64,
        deadline: Option<Instant>,
        body: impl FnOnce(&mut Vec<u8>) -> bool,
    ) -> bool {
        if self.gone.load(Ordering::Relaxed) {
            return false;
        }
        let mut g = relock(&self.tx);
        let (tx, buf) = &mut *g;
        wire::encode_header(buf, kind, code, id, 0, 0);
        if !body(buf) {
            wire::encode_header(buf, Kind::Reply, Code::ResponseTooLarge, id, 0, 0);
        }
        // Tries first (the clock is read only if the client is behind), then waits for
        // room until the call's deadline; a client that is behind gets at least
        // ANSWER_GRACE, and at most ANSWER_LIMIT when the call had no deadline.
        let mut r = tx.send(
            buf,
            deadline.or_else(|| Instant::now().checked_add(ANSWER_LIMIT)),
        );
        if r == Err(transport::TransportSendError::Timeout) {
            r = tx.send(buf, Instant::now().checked_add(ANSWER_GRACE));
        }
        if let Err(transport::TransportSendError::TooLarge { .. }) = r {
            wire::encode_header(buf, Kind::Reply, Code::ResponseTooLarge, id, 0, 0);
            r = tx.send(buf, Instant::now().checked_add(ANSWER_GRACE));
        }
        match r {
            Ok(()) => true,
            // A client that stopped reading loses this answer, not the connection.
            Err(transport::TransportSendError::Timeout) => false,
            Err(_) => {
                self.gone.store(true, Ordering::Relaxed);
                false
            }
        }
    }

    fn reply_code(&self, id: u64, code: Code) {
        self.send(Kind::Reply, code, id, None, |_| true);
    }

    fn finish_call(&self, id: u64) {
        relock(&self.calls).remove(&id);
    }
}

/// A running server.
///
/// # Examples
///
/// See the [module docs](crate::rpc).
///
/// Dropping the handle shuts the server down as [`shutdown`](Self::shutdown) does,
/// with a grace of one second: keep it for as long as the server should run.
pub struct ServerHandle {
    shared: Arc<ServerShared>,
    url: Option<String>,
    stopped: bool,
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("service", &self.shared.service.name())
            .field("url", &self.url)
            .field("stats", &self.stats())
            .finish()
    }
}

impl ServerHandle {
    /// The URL clients connect to (`None` for a detached server).
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// The counters so far.
    pub fn stats(&self) -> ServerStats {
        self.shared.stats.snapshot()
    }

    /// Serves one more connection (e.g. from [`transport::pair`]) on a reader thread
    /// of its own.
    pub fn serve_connection(&self, conn: Connection) {
        spawn_reader(&self.shared, move || Some(conn));
    }

    /// Waits until the server stops on its own, which it does once its last client
    /// has left if it was built with
    /// [`stop_after_last_client`](Server::stop_after_last_client) (otherwise it
    /// serves, and this waits, until the process ends); then finishes as
    /// [`shutdown`](Self::shutdown) does, with a grace of one second. Returns the
    /// final counters.
    pub fn wait(mut self) -> ServerStats {
        {
            let s = &self.shared;
            let mut g = relock(&s.exit_lock);
            while !s.closing.load(Ordering::Acquire) {
                g = s
                    .exit_cv
                    .wait_timeout(g, POLL)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        self.stop(Duration::from_secs(1))
    }

    /// Stops gracefully: no new connections, new calls are refused with
    /// [`RpcError::Unavailable`](super::RpcError::Unavailable), calls in flight get
    /// until `grace` to finish; then running handlers are told to stop
    /// ([`Stop::ShuttingDown`]) and connections close. Returns the final counters.
    pub fn shutdown(mut self, grace: Duration) -> ServerStats {
        self.stop(grace)
    }

    fn stop(&mut self, grace: Duration) -> ServerStats {
        self.stopped = true;
        let s = &self.shared;
        s.closing.store(true, Ordering::Release);
        let deadline = Instant::now() + grace;
        // Readers leave once their connection has no call in flight.
        self.wait_threads(deadline, s.pool_threads());
        if s.live.load(Ordering::Acquire) > s.pool_threads() {
            s.aborting.store(true, Ordering::Release);
            s.pool.abort();
            for c in relock(&s.conns).iter().filter_map(std::sync::Weak::upgrade) {
                c.inline_ctl.abort();
                for ctl in relock(&c.calls).values() {
                    ctl.abort();
                }
            }
            self.wait_threads(Instant::now() + Duration::from_secs(1), s.pool_threads());
        }
        s.pool.close();
        self.wait_threads(Instant::now() + Duration::from_secs(1), 0);
        s.stats.snapshot()
    }

    fn wait_threads(&self, deadline: Instant, down_to: usize) {
        let s = &self.shared;
        let mut g = relock(&s.exit_lock);
        while s.live.load(Ordering::Acquire) > down_to {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            g = s
                .exit_cv
                .wait_timeout(g, (deadline - now).min(POLL))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if !self.stopped {
            self.stop(Duration::from_secs(1));
        }
    }
}

impl ServerShared {
    fn pool_threads(&self) -> usize {
        // Workers count as live until the pool closes.
        self.workers
    }
}

fn accept_loop(shared: &Arc<ServerShared>, listener: &Listener) {
    while !shared.closing.load(Ordering::Acquire) {
        // Sockets' hellos are read on the client's own thread: a slow or silent
        // client holds up nobody else.
        match listener.accept_incoming(Instant::now().checked_add(POLL)) {
            Ok(incoming) => spawn_reader(shared, move || incoming.handshake().ok()),
            Err(transport::AcceptError::Timeout) => {}
            // A client that failed its hello, or a transient OS error: keep serving
            // the others.
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// Runs a connection's reader on a thread of its own; `conn` makes the connection
/// there (e.g. completes a socket client's hello).
fn spawn_reader(
    shared: &Arc<ServerShared>,
    conn: impl FnOnce() -> Option<Connection> + Send + 'static,
) {
    shared.live.fetch_add(1, Ordering::AcqRel);
    let s = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("shmlink-rpc-conn".into())
        .spawn(move || {
            if let Some(conn) = conn() {
                serve_conn(&s, conn);
            }
            s.exit();
        });
    if spawned.is_err() {
        shared.exit();
    }
}

fn serve_conn(shared: &Arc<ServerShared>, conn: Connection) {
    let (tx, mut rx) = conn.split();
    let mut buf = Vec::with_capacity(256);
    // The hello: the client must ask for our service.
    let hello_deadline = Instant::now().checked_add(shared.handshake_timeout);
    if rx.recv(&mut buf, hello_deadline).is_err() {
        return;
    }
    let ours = shared.service.service_id();
    let accepted = match wire::decode(&buf) {
        Ok(f) if f.kind == Kind::Hello => f.method == ours,
        _ => return,
    };
    let c = Arc::new(Conn {
        tx: Mutex::new((tx, Vec::with_capacity(256))),
        calls: Mutex::new(IdMap::default()),
        inline_ctl: CallCtl::unlimited(),
        gone: AtomicBool::new(false),
    });
    {
        let mut g = relock(&c.tx);
        let (tx, b) = &mut *g;
        let code = if accepted {
            Code::Ok
        } else {
            Code::WrongService
        };
        wire::encode_header(b, Kind::HelloReply, code, 0, ours, 0);
        if tx.send(b, hello_deadline).is_err() || !accepted {
            return;
        }
    }
    Counters::bump(&shared.stats.connections);
    let _client = ClientCount::new(shared);
    {
        let mut conns = relock(&shared.conns);
        conns.retain(|w| w.strong_count() > 0);
        conns.push(Arc::downgrade(&c));
    }
    // The wake-up deadline is renewed only when it passes, so a busy connection reads
    // no clock here (a receive tries before it waits).
    let mut poll_until = Instant::now().checked_add(POLL);
    // Inline: requests read ahead while looking for cancels (see `read_ahead`).
    let mut backlog: VecDeque<Vec<u8>> = VecDeque::new();
    let mut ahead = Vec::new();
    loop {
        if shared.aborting.load(Ordering::Acquire) {
            break;
        }
        if shared.closing.load(Ordering::Acquire) && relock(&c.calls).is_empty() {
            break;
        }
        if let Some(next) = backlog.pop_front() {
            buf = next;
        } else {
            match rx.recv(&mut buf, poll_until) {
                Ok(()) => {}
                Err(transport::TransportRecvError::Timeout) => {
                    poll_until = Instant::now().checked_add(POLL);
                    continue;
                }
                Err(_) => break, // the client left, died, or broke the protocol
            }
        }
        let Ok(f) = wire::decode(&buf) else {
            break; // protocol violation: close the connection
        };
        match f.kind {
            Kind::Request if shared.inline => {
                match read_ahead(&mut rx, &mut ahead, &mut backlog, f.id) {
                    Ok(true) => Counters::bump(&shared.stats.cancelled),
                    Ok(false) => on_request(shared, &c, f.id, f.method, f.arg, f.payload),
                    Err(()) => break,
                }
            }
            Kind::Request => on_request(shared, &c, f.id, f.method, f.arg, f.payload),
            Kind::Cancel => {
                if let Some(ctl) = relock(&c.calls).get(&f.id) {
                    ctl.cancel();
                }
            }
            Kind::Credit => {
                if let Some(ctl) = relock(&c.calls).get(&f.id) {
                    ctl.add_credits(f.arg);
                }
            }
            _ => break,
        }
    }
    // The connection is over: whatever still runs for it has no one to answer.
    c.gone.store(true, Ordering::Relaxed);
    c.inline_ctl.cancel();
    for ctl in relock(&c.calls).values() {
        ctl.cancel();
    }
}

/// Before an inline call runs, reads whatever frames are already there without
/// waiting: requests are kept for later, and a cancel removes its request from the
/// backlog, so a call whose caller gave up while it queued behind a slow one is not
/// run. Returns whether call `current` itself was cancelled; `Err` on a protocol
/// violation.
fn read_ahead(
    rx: &mut transport::Receiver,
    ahead: &mut Vec<u8>,
    backlog: &mut VecDeque<Vec<u8>>,
    current: u64,
) -> Result<bool, ()> {
    let mut cancelled = false;
    // Bounded: past it, the client is paced by the transport again.
    while backlog.len() < READ_AHEAD_LIMIT {
        if rx.try_recv(ahead).is_err() {
            break;
        }
        let f = wire::decode(ahead).map_err(|_| ())?;
        match f.kind {
            Kind::Request => backlog.push_back(ahead.clone()),
            Kind::Cancel if f.id == current => cancelled = true,
            Kind::Cancel => {
                backlog.retain(|r| !matches!(wire::decode(r), Ok(g) if g.id == f.id));
            }
            Kind::Credit => {} // inline streams are not paced by credits
            _ => return Err(()),
        }
    }
    // A failed receive shows again on the next `recv` of the read loop.
    Ok(cancelled)
}

fn on_request(
    shared: &Arc<ServerShared>,
    c: &Arc<Conn>,
    id: u64,
    method: u64,
    budget: u64,
    payload: &[u8],
) {
    if shared.closing.load(Ordering::Acquire) {
        Counters::bump(&shared.stats.refused);
        c.reply_code(id, Code::Unavailable);
        return;
    }
    let deadline = if budget == u64::MAX {
        None
    } else {
        Instant::now().checked_add(Duration::from_nanos(budget))
    };
    if budget == 0 {
        Counters::bump(&shared.stats.deadline_exceeded);
        c.reply_code(id, Code::DeadlineExceeded);
        return;
    }
    if shared.inline || (shared.inline_unary && shared.service.is_unary(method)) {
        // No copy, no registration: the reader runs the call itself. Streams get
        // unlimited credits (the reader cannot read credits while it runs the
        // handler; the transport's own back-pressure paces the stream instead).
        c.inline_ctl.reset();
        run_call(
            shared,
            c,
            id,
            method,
            deadline,
            &c.inline_ctl,
            payload,
            false,
        );
        return;
    }
    let ctl = CallCtl::new(STREAM_WINDOW);
    relock(&c.calls).insert(id, ctl.clone());
    let job = Job {
        conn: c.clone(),
        id,
        method,
        deadline,
        ctl,
        payload: payload.to_vec(),
    };
    // A full queue holds the reader back, and with it the client (back-pressure).
    shared.pool.push(job);
}

fn worker_loop(shared: &Arc<ServerShared>) {
    while let Some(job) = shared.pool.pop() {
        let detached = run_call(
            shared,
            &job.conn,
            job.id,
            job.method,
            job.deadline,
            &job.ctl,
            &job.payload,
            true,
        );
        if !detached {
            job.conn.finish_call(job.id);
        }
    }
}

/// Runs one call and answers it. `queued`: it waited in the pool's queue, so its
/// deadline may have passed before it starts (an inline call was just checked).
#[allow(clippy::too_many_arguments)]
fn run_call(
    shared: &ServerShared,
    conn: &Arc<Conn>,
    id: u64,
    method: u64,
    deadline: Option<Instant>,
    ctl: &Arc<CallCtl>,
    payload: &[u8],
    queued: bool,
) -> bool {
    let ctx = Context::new(id, deadline, ctl.clone());
    let before = if queued { ctx.check() } else { Ok(()) };
    match before {
        Err(Stop::Cancelled) | Err(Stop::ShuttingDown) => {
            Counters::bump(&shared.stats.cancelled);
            return false;
        }
        Err(Stop::DeadlineExceeded) => {
            Counters::bump(&shared.stats.deadline_exceeded);
            conn.reply_code(id, Code::DeadlineExceeded);
            return false;
        }
        Ok(()) => {}
    }
    let mut responder = Responder {
        conn,
        id,
        ctx: &ctx,
        ended: false,
        answered: false,
        detached: Cell::new(false),
    };
    let run = catch_unwind(AssertUnwindSafe(|| {
        shared
            .service
            .dispatch(method, &ctx, payload, &mut responder);
    }));
    let ended = responder.ended;
    let answered = responder.answered;
    let detached = responder.detached.get();
    if run.is_err() {
        Counters::bump(&shared.stats.panicked);
        if !ended && !detached {
            conn.reply_code(id, Code::Internal);
        }
        return detached;
    }
    if detached {
        // Goes on through its `StreamSender`.
        Counters::bump(&shared.stats.completed);
        return true;
    }
    if !ended {
        conn.reply_code(id, Code::Internal);
    }
    // (After the answer went out: the clock read is off the caller's path.) A call
    // answered before its caller left (or before the shutdown) was served, whatever
    // happened next.
    match ctx.check() {
        Err(Stop::Cancelled | Stop::ShuttingDown) if !answered => {
            Counters::bump(&shared.stats.cancelled);
        }
        Err(Stop::DeadlineExceeded) => Counters::bump(&shared.stats.deadline_exceeded),
        Ok(()) | Err(Stop::Cancelled | Stop::ShuttingDown) => {
            Counters::bump(&shared.stats.completed);
        }
    }
    false
}

/// How a handler's outcome goes back to the caller; used by the code
/// [`service!`](crate::service) generates.
pub struct Responder<'a> {
    conn: &'a Arc<Conn>,
    id: u64,
    ctx: &'a Context,
    ended: bool,
    /// The answer went out (the call was not cancelled when it ended).
    answered: bool,
    /// Set by [`Sink::detach`]: the stream ends when its [`StreamSender`] does.
    detached: Cell<bool>,
}

impl fmt::Debug for Responder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("id", &self.id)
            .field("ended", &self.ended)
            .finish()
    }
}

fn append<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> bool {
    match postcard::to_extend(value, std::mem::take(buf)) {
        Ok(b) => {
            *buf = b;
            true
        }
        Err(_) => false,
    }
}

impl Responder<'_> {
    fn end(&mut self, code: Code, body: impl FnOnce(&mut Vec<u8>) -> bool) {
        if self.ended {
            return;
        }
        self.ended = true;
        if self.detached.get() {
            return; // the stream's sender ends it
        }
        if self.ctx.ctl().is_cancelled_flag() {
            return; // nobody waits for it
        }
        self.conn
            .send(Kind::Reply, code, self.id, self.ctx.deadline(), body);
        self.answered = true;
    }

    /// Sends a unary call's result.
    pub fn finish<T: Serialize, E: Serialize>(&mut self, result: Result<T, E>) {
        match result {
            Ok(v) => self.end(Code::Ok, |b| append(b, &v)),
            Err(e) => self.end(Code::ServiceError, |b| append(b, &e)),
        }
    }

    /// Ends a streaming call.
    pub fn finish_stream<E: Serialize>(&mut self, result: Result<(), E>) {
        match result {
            Ok(()) => self.end(Code::Ok, |_| true),
            Err(e) => self.end(Code::ServiceError, |b| append(b, &e)),
        }
    }

    /// The request could not be decoded.
    pub fn bad_request(&mut self) {
        self.end(Code::BadRequest, |_| true);
    }

    /// No such method.
    pub fn unknown_method(&mut self) {
        self.end(Code::UnknownMethod, |_| true);
    }

    /// The sink of a streaming call's items.
    pub fn sink<T: Serialize>(&self) -> Sink<'_, T> {
        Sink {
            conn: self.conn,
            id: self.id,
            ctx: self.ctx,
            detached: &self.detached,
            _t: PhantomData,
        }
    }
}

/// Why a stream item could not be sent: the call should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamClosed(pub Stop);

impl fmt::Display for StreamClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream closed: {}", self.0)
    }
}

impl std::error::Error for StreamClosed {}

/// Where a streaming handler sends its items.
pub struct Sink<'a, T> {
    conn: &'a Arc<Conn>,
    id: u64,
    ctx: &'a Context,
    detached: &'a Cell<bool>,
    _t: PhantomData<fn(&T)>,
}

impl<T> fmt::Debug for Sink<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sink").field("id", &self.id).finish()
    }
}

impl<T: Serialize> Sink<'_, T> {
    /// Sends one item, waiting while the client is [`STREAM_WINDOW`] items behind.
    ///
    /// # Errors
    ///
    /// [`StreamClosed`] when the call should stop (cancelled, deadline, client gone,
    /// server shutting down): the handler should return.
    pub fn send(&mut self, item: &T) -> Result<(), StreamClosed> {
        self.ctx
            .ctl()
            .take_credit(self.ctx.deadline())
            .map_err(StreamClosed)?;
        if self
            .conn
            .send(Kind::Item, Code::Ok, self.id, self.ctx.deadline(), |b| {
                append(b, item)
            })
        {
            Ok(())
        } else {
            // The item could not go out: the deadline passed while the client was
            // behind, or the client is gone (then the call counts as cancelled).
            let why = self.ctx.check().err().unwrap_or(Stop::Cancelled);
            if why == Stop::Cancelled {
                self.ctx.ctl().cancel();
            }
            Err(StreamClosed(why))
        }
    }
}

impl<T: Serialize> Sink<'_, T> {
    /// Detaches the stream from the handler: the call goes on after the handler
    /// returns, and the returned [`StreamSender`] sends its items, from any thread,
    /// until it is [finished](StreamSender::finish) or dropped (which ends the stream
    /// as `Ok`). The handler's own result is then not sent. For streams fed by events
    /// elsewhere (a subscription, a lock's grants): no thread waits for them, so a
    /// handler of a server with [`inline_unary`](Server::inline_unary) or without
    /// workers can return at once. A cancel, the client leaving or the server shutting
    /// down close the sender ([`StreamSender::is_closed`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use shmlink::rpc::{Context, Server, Sink, StreamSender};
    ///
    /// shmlink::service! {
    ///     pub trait News {
    ///         client NewsClient;
    ///         server NewsServer;
    ///         error String;
    ///         /// Subscribes: the stream gets what `publish` publishes.
    ///         stream fn subscribe(unit: ()) -> String;
    ///         /// Publishes to every subscriber, then ends their streams if `last`.
    ///         fn publish(args: (String, bool)) -> ();
    ///     }
    /// }
    /// #[derive(Default)]
    /// struct Hub(Mutex<Vec<StreamSender<String>>>);
    /// impl News for Hub {
    ///     fn subscribe(&self, _: &Context, (): (), sink: &mut Sink<'_, String>) -> Result<(), String> {
    ///         self.0.lock().unwrap().push(sink.detach());
    ///         Ok(()) // returns at once; the stream stays open
    ///     }
    ///     fn publish(&self, _: &Context, (text, last): (String, bool)) -> Result<(), String> {
    ///         let mut subs = self.0.lock().unwrap();
    ///         subs.retain(|s| s.try_send(&text).is_ok());
    ///         if last {
    ///             subs.clear(); // dropping a sender ends its stream
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// let server = Server::new(NewsServer(Hub::default())).workers(0).serve("tcp://127.0.0.1:0")?;
    /// let url = server.url().unwrap();
    /// let (reader, writer) = (NewsClient::connect(url)?, NewsClient::connect(url)?);
    /// let mut news = reader.subscribe(());
    /// while server.stats().completed == 0 {
    ///     std::thread::yield_now(); // until the subscription is in
    /// }
    /// writer.publish(("hello".into(), false)).wait()?;
    /// writer.publish(("bye".into(), true)).wait()?;
    /// assert_eq!(news.next().unwrap()?, "hello");
    /// assert_eq!(news.next().unwrap()?, "bye");
    /// assert!(news.next().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn detach(&mut self) -> StreamSender<T> {
        self.detached.set(true);
        // A call run inline shares the reader's reused control block: give the
        // detached stream one of its own, where the reader finds it (cancels).
        let ctl = if Arc::ptr_eq(self.ctx.ctl(), &self.conn.inline_ctl) {
            let ctl = CallCtl::unlimited();
            relock(&self.conn.calls).insert(self.id, ctl.clone());
            ctl
        } else {
            self.ctx.ctl().clone()
        };
        StreamSender {
            conn: self.conn.clone(),
            id: self.id,
            deadline: self.ctx.deadline(),
            ctl,
            _t: PhantomData,
        }
    }
}

/// Why [`StreamSender::try_send`] did not send an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryStreamError {
    /// The client is [`STREAM_WINDOW`] items behind, or the transport has no room
    /// now: the item was not sent, the stream goes on.
    Full,
    /// The stream is over (cancelled, deadline passed, client gone, server shutting
    /// down): stop sending.
    Closed(Stop),
}

impl fmt::Display for TryStreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("stream item not sent: the client is behind"),
            Self::Closed(stop) => write!(f, "stream closed: {stop}"),
        }
    }
}

impl std::error::Error for TryStreamError {}

/// The sending end of a detached stream ([`Sink::detach`]): sends items from any
/// thread, and ends the stream when finished or dropped. It never waits: an item
/// goes out now or not at all.
pub struct StreamSender<T> {
    conn: Arc<Conn>,
    id: u64,
    deadline: Option<Instant>,
    ctl: Arc<CallCtl>,
    _t: PhantomData<fn(&T)>,
}

impl<T> fmt::Debug for StreamSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSender")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<T> StreamSender<T> {
    /// Why the stream is over, if it is.
    pub fn closed(&self) -> Option<Stop> {
        if self.conn.gone.load(Ordering::Relaxed) {
            return Some(Stop::Cancelled);
        }
        self.ctl.stop_reason(self.deadline)
    }

    /// Whether the stream is over ([`closed`](Self::closed)).
    pub fn is_closed(&self) -> bool {
        self.closed().is_some()
    }

    /// Ends the stream with `result` (as a handler's result ends it).
    pub fn finish<E: Serialize>(self, result: Result<(), E>) {
        match result {
            Ok(()) => self.end(Code::Ok, |_| true),
            Err(e) => self.end(Code::ServiceError, |b| append(b, &e)),
        }
    }

    fn end(&self, code: Code, body: impl FnOnce(&mut Vec<u8>) -> bool) {
        if relock(&self.conn.calls).remove(&self.id).is_none() {
            return; // already ended
        }
        if !self.ctl.is_cancelled_flag() {
            // Now or never: a client too far behind to take it learns of the end from
            // its deadline.
            self.conn
                .send(Kind::Reply, code, self.id, Some(Instant::now()), body);
        }
    }
}

impl<T: Serialize> StreamSender<T> {
    /// Sends one item if it can go out now.
    ///
    /// # Errors
    ///
    /// [`TryStreamError::Full`] if the client is behind (the item is not sent),
    /// [`TryStreamError::Closed`] once the stream is over.
    pub fn try_send(&self, item: &T) -> Result<(), TryStreamError> {
        if let Some(stop) = self.closed() {
            return Err(TryStreamError::Closed(stop));
        }
        if !self.ctl.try_take_credit() {
            return Err(TryStreamError::Full);
        }
        if self
            .conn
            .send(Kind::Item, Code::Ok, self.id, Some(Instant::now()), |b| {
                append(b, item)
            })
        {
            Ok(())
        } else if let Some(stop) = self.closed() {
            Err(TryStreamError::Closed(stop))
        } else {
            Err(TryStreamError::Full)
        }
    }
}

impl<T> Drop for StreamSender<T> {
    fn drop(&mut self) {
        self.end(Code::Ok, |_| true);
    }
}

//! The RPC layer (`shmlink::rpc`): one test service, declared with `shmlink::service!`,
//! and one conformance suite of generic cases run over every transport (an in-process
//! `transport::pair`, `shm://`, `unix://`, `tcp://`) and, where it matters, both server
//! modes (a worker pool, `workers(4)`, and inline on the reader, `workers(0)`). Each
//! case × transport × mode is one `#[test]`, named `case::transport_mode`.
//!
//! What is checked:
//! - calls, the service's own error (`RpcError::Service`), unknown methods, undecodable
//!   requests, requests and responses over the maximum frame; a panicking handler is
//!   `RpcError::Internal` and the server keeps serving;
//! - 64 calls in flight on one connection, waited in reverse order; with the pool, a
//!   call started first is answered after calls started later (out of order);
//! - deadlines travel to the server (the handler sees `Stop::DeadlineExceeded` and a
//!   budget no larger than the caller's), the caller gets `DeadlineExceeded` long
//!   before the call's nominal duration, a call whose budget already ran out is never
//!   run, and neither a handler that answers after its deadline nor a stream that
//!   runs out of time breaks the connection;
//! - dropping a `Call` or a `CallStream` cancels the handler (pool mode);
//! - streams of 1000 items (flow-control credits), two streams interleaved, a stream
//!   ending with the service error;
//! - 8 threads with a connection each, and 8 threads sharing one client;
//! - a client of another service (or another version of this one) is refused with
//!   `ConnectError::WrongService`;
//! - graceful shutdown: calls in flight finish within the grace, new calls are refused,
//!   the endpoint disappears; a short grace stops a cooperative handler
//!   (`Stop::ShuttingDown`) and returns promptly;
//! - across processes (a child serves, see `tests/support`): calls and streams over shm,
//!   unix and tcp; a SIGKILLed server fails every waiting caller with `ServerGone` long
//!   before its deadline, and later calls at once;
//! - a response whose `Deserialize` panics: the panic reaches its caller's `wait`, and
//!   the client keeps working, for later calls and for a caller already waiting;
//! - proptests: `wire::decode` on random bytes never panics and re-encodes what it
//!   accepts byte for byte (and `encode_header` output decodes to its fields); a server
//!   fed random frames after a proper hello either answers every request or closes the
//!   connection, and then serves a proper client.
//!
//! Regressions: these cases failed when the suite was written, and the same commit
//! (e8c0378) fixed `src/rpc` and `src/transport/socket.rs` (the doc comments of the
//! tests say what went wrong):
//! - `late_answer_keeps_the_connection_working::{unix,tcp}_*`,
//!   `stream_deadline_stops_the_handler::{unix,tcp}_pool`,
//!   `deadline_is_carried_to_the_server::{unix,tcp}_inline`: an answer sent after its
//!   call's deadline failed on sockets, and the server then dropped every later answer
//!   on that connection;
//! - `stream_deadline_stops_the_handler::*_inline`,
//!   `random_frames_regression_stream_past_its_deadline` (and, depending on the
//!   random cases, `server_survives_random_frames_inline`): an inline streaming
//!   handler was never told its deadline passed;
//! - `call_whose_deadline_passed_while_queued_is_not_run::*`: inline, a request's
//!   budget started when the reader read it, not when it was sent;
//! - `call_stopped_by_its_deadline_is_counted_as_such`: it was counted as `completed`.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde::{Deserialize, Serialize};
use shmlink::rpc::wire::{self, Code, DecodeError, Kind, decode, encode_header};
use shmlink::rpc::{
    ClientOptions, ConnectError, Context, RpcError, STREAM_WINDOW, Server, ServerHandle,
    ServerStats, Sink, Stop, StreamClosed,
};
use shmlink::segment::OpenError;
use shmlink::sync::atomic::{AtomicU64, Ordering};
use shmlink::transport::{self, Connection, RecvError};
use support::{Scenario, arg, report, unique_name};

scenarios!(serve_kv);

// ---- the service under test ----

/// The service's own error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvError {
    /// `get` of a key never `put`.
    NotFound(String),
    /// `check` of a negative number.
    Negative(i64),
    /// `add` overflowed.
    Overflow,
    /// `slow` was told to stop (the `Stop` as text).
    Stopped(String),
    /// A gated `slow` call was never released.
    GateTimeout,
    /// `count_then_fail(n)` after its `n` items.
    StreamFailed(u32),
}

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// A slow call: waits `ms` (cooperatively, through its `Context`), or, `gated`, until
/// the test releases `tag` (at most `ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slow {
    pub tag: u64,
    pub ms: u64,
    pub gated: bool,
}

shmlink::service! {
    /// A small key-value store and calculator.
    pub trait Kv {
        client KvClient;
        server KvServer;
        error KvError;
        /// `a + b`, or `Overflow`.
        fn add(args: (i64, i64)) -> i64;
        /// The argument.
        fn echo(s: String) -> String;
        /// Stores a value; the previous one.
        fn put(kv: (String, String)) -> Option<String>;
        /// A stored value, or `NotFound`.
        fn get(key: String) -> String;
        /// `n`, or the service error `Negative(n)`.
        fn check(n: i64) -> i64;
        /// `n` bytes (a response over the maximum frame).
        fn big(n: u32) -> Vec<u8>;
        /// See [`Slow`]; records what happened under its tag.
        fn slow(req: Slow) -> u64;
        /// Sleeps `req.ms` ignoring its context (a handler that overruns its
        /// deadline), then records `Finished`.
        fn nap(req: Slow) -> u64;
        /// Panics.
        fn boom(n: u32) -> u32;
        /// `0, 1, .., n - 1`.
        stream fn count(n: u32) -> u32;
        /// `0, 1, .., n - 1`, then the service error `StreamFailed(n)`.
        stream fn count_then_fail(n: u32) -> u32;
        /// `0, 1, 2, ..` until the sink refuses; records why under `tag` and ends
        /// with `Stopped`.
        stream fn endless(tag: u64) -> u64;
    }
}

/// Method ids as the stub computes them (checked by `basic_calls_and_errors`), for
/// raw calls and raw frames.
const ADD_ID: u64 = wire::method_id(&["Kv", "add", "(i64, i64)", "i64"]);
const ECHO_ID: u64 = wire::method_id(&["Kv", "echo", "String", "String"]);
const CHECK_ID: u64 = wire::method_id(&["Kv", "check", "i64", "i64"]);
const COUNT_ID: u64 = wire::method_id(&["Kv", "stream", "count", "u32", "u32"]);

/// Another service, for `WrongService`.
#[allow(dead_code)]
mod other {
    use super::KvError;
    shmlink::service! {
        pub trait Other {
            client OtherClient;
            server OtherServer;
            error KvError;
            fn ping(n: u32) -> u32;
        }
    }
}

/// The same service name with other method types: another version.
#[allow(dead_code)]
mod v2 {
    use super::KvError;
    shmlink::service! {
        pub trait Kv {
            client KvClient;
            server KvServer;
            error KvError;
            fn add(args: (i32, i32)) -> i32;
        }
    }
}

/// What a handler did, per tag.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// The handler began; the time left until its deadline then.
    Started { budget: Option<Duration> },
    /// It ran to the end.
    Finished,
    /// A gated call was never released.
    GateTimeout,
    /// It was told to stop.
    Stopped(Stop),
    /// A streaming handler's sink refused an item after `sent` items.
    SinkClosed { sent: u64, why: Stop },
}

#[derive(Default)]
struct Log {
    events: HashMap<u64, Vec<Event>>,
    released: HashSet<u64>,
}

/// The server's state, shared with the test that runs it.
#[derive(Default)]
struct State {
    kv: Mutex<HashMap<String, String>>,
    log: Mutex<Log>,
    cv: Condvar,
    /// In a child process: report `started=TAG` to the parent.
    report_starts: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long a test waits for something the server does.
const WAIT: Duration = Duration::from_secs(10);
/// How long a `slow` handler stopped by its deadline waits for the caller's cancel
/// before answering (see `Svc::slow`).
const LINGER: Duration = Duration::from_secs(1);

impl State {
    fn record(&self, tag: u64, ev: Event) {
        lock(&self.log).events.entry(tag).or_default().push(ev);
        self.cv.notify_all();
    }

    fn events(&self, tag: u64) -> Vec<Event> {
        lock(&self.log)
            .events
            .get(&tag)
            .cloned()
            .unwrap_or_default()
    }

    fn release(&self, tag: u64) {
        lock(&self.log).released.insert(tag);
        self.cv.notify_all();
    }

    fn is_released(&self, tag: u64) -> bool {
        lock(&self.log).released.contains(&tag)
    }

    /// Waits (at most [`WAIT`]) until `pred` holds for the events of `tag`.
    fn wait_until(&self, tag: u64, what: &str, pred: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let deadline = Instant::now() + WAIT;
        let mut log = lock(&self.log);
        loop {
            let evs = log.events.get(&tag).map(Vec::as_slice).unwrap_or(&[]);
            if pred(evs) {
                return evs.to_vec();
            }
            let now = Instant::now();
            if now >= deadline {
                let evs = evs.to_vec();
                drop(log);
                panic!("call {tag}: no {what} within {WAIT:?}; events so far: {evs:?}");
            }
            log = self
                .cv
                .wait_timeout(log, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn wait_started(&self, tag: u64) -> Vec<Event> {
        self.wait_until(tag, "start", |e| {
            e.iter().any(|e| matches!(e, Event::Started { .. }))
        })
    }

    fn wait_stopped(&self, tag: u64) -> Stop {
        let evs = self.wait_until(tag, "stop", |e| stop_of(e).is_some());
        stop_of(&evs).unwrap()
    }
}

fn stop_of(evs: &[Event]) -> Option<Stop> {
    evs.iter().find_map(|e| match e {
        Event::Stopped(s) | Event::SinkClosed { why: s, .. } => Some(*s),
        _ => None,
    })
}

fn budget_of(evs: &[Event]) -> Option<Duration> {
    evs.iter().find_map(|e| match e {
        Event::Started { budget } => *budget,
        _ => None,
    })
}

/// Tags for `slow` and `endless` calls, unique in this process.
fn next_tag() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

struct Svc(Arc<State>);

impl Kv for Svc {
    fn add(&self, _ctx: &Context, (a, b): (i64, i64)) -> Result<i64, KvError> {
        a.checked_add(b).ok_or(KvError::Overflow)
    }

    fn echo(&self, _ctx: &Context, s: String) -> Result<String, KvError> {
        Ok(s)
    }

    fn put(&self, _ctx: &Context, (k, v): (String, String)) -> Result<Option<String>, KvError> {
        Ok(lock(&self.0.kv).insert(k, v))
    }

    fn get(&self, _ctx: &Context, key: String) -> Result<String, KvError> {
        lock(&self.0.kv)
            .get(&key)
            .cloned()
            .ok_or(KvError::NotFound(key))
    }

    fn check(&self, _ctx: &Context, n: i64) -> Result<i64, KvError> {
        if n < 0 {
            Err(KvError::Negative(n))
        } else {
            Ok(n)
        }
    }

    fn big(&self, _ctx: &Context, n: u32) -> Result<Vec<u8>, KvError> {
        Ok(vec![7; n.min(1 << 24) as usize])
    }

    fn slow(&self, ctx: &Context, req: Slow) -> Result<u64, KvError> {
        let st = &self.0;
        let budget = ctx
            .deadline()
            .map(|d| d.saturating_duration_since(Instant::now()));
        st.record(req.tag, Event::Started { budget });
        if st.report_starts {
            report(format!("started={}", req.tag));
        }
        let nominal = Duration::from_millis(req.ms);
        let outcome = if req.gated {
            let end = Instant::now() + nominal;
            loop {
                if st.is_released(req.tag) {
                    break Ok(());
                }
                if Instant::now() >= end {
                    break Err(None);
                }
                if let Err(stop) = ctx.sleep(Duration::from_millis(5)) {
                    break Err(Some(stop));
                }
            }
        } else {
            ctx.sleep(nominal).map_err(Some)
        };
        match outcome {
            Ok(()) => {
                st.record(req.tag, Event::Finished);
                Ok(req.tag)
            }
            Err(None) => {
                st.record(req.tag, Event::GateTimeout);
                Err(KvError::GateTimeout)
            }
            Err(Some(stop)) => {
                st.record(req.tag, Event::Stopped(stop));
                if stop == Stop::DeadlineExceeded {
                    // The server sends whatever a handler returns, even after the
                    // deadline; returning at once would race that answer against the
                    // caller's own deadline. Wait (a bounded while) for the caller's
                    // cancel instead, which suppresses the answer.
                    let until = Instant::now() + LINGER;
                    while ctx.check() == Err(Stop::DeadlineExceeded) && Instant::now() < until {
                        thread::sleep(Duration::from_millis(2));
                    }
                }
                Err(KvError::Stopped(stop.to_string()))
            }
        }
    }

    fn nap(&self, ctx: &Context, req: Slow) -> Result<u64, KvError> {
        let budget = ctx
            .deadline()
            .map(|d| d.saturating_duration_since(Instant::now()));
        self.0.record(req.tag, Event::Started { budget });
        thread::sleep(Duration::from_millis(req.ms));
        self.0.record(req.tag, Event::Finished);
        Ok(req.tag)
    }

    fn boom(&self, _ctx: &Context, n: u32) -> Result<u32, KvError> {
        panic!("boom {n} (a deliberate panic in a handler)")
    }

    fn count(&self, _ctx: &Context, n: u32, sink: &mut Sink<'_, u32>) -> Result<(), KvError> {
        for i in 0..n {
            if sink.send(&i).is_err() {
                break;
            }
        }
        Ok(())
    }

    fn count_then_fail(
        &self,
        _ctx: &Context,
        n: u32,
        sink: &mut Sink<'_, u32>,
    ) -> Result<(), KvError> {
        for i in 0..n {
            if sink.send(&i).is_err() {
                return Ok(());
            }
        }
        Err(KvError::StreamFailed(n))
    }

    fn endless(&self, _ctx: &Context, tag: u64, sink: &mut Sink<'_, u64>) -> Result<(), KvError> {
        self.0.record(tag, Event::Started { budget: None });
        let mut sent = 0u64;
        loop {
            match sink.send(&sent) {
                Ok(()) => sent += 1,
                Err(StreamClosed(why)) => {
                    self.0.record(tag, Event::SinkClosed { sent, why });
                    return Err(KvError::Stopped(why.to_string()));
                }
            }
        }
    }
}

// ---- fixtures ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tr {
    /// `transport::pair` + `Server::start_detached` + `serve_connection`.
    Pair,
    Shm,
    Unix,
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `workers(4)`.
    Pool,
    /// `workers(0)`.
    Inline,
}

impl Mode {
    fn workers(self) -> usize {
        match self {
            Mode::Pool => 4,
            Mode::Inline => 0,
        }
    }
}

/// The maximum frame of the tests' connections (small rings: many connections run at
/// once).
const MAX_FRAME: usize = 64 * 1024;

fn topts() -> transport::Options {
    transport::Options {
        max_frame: MAX_FRAME,
        ..transport::Options::default()
    }
}

/// Client options: no call of a test waits more than 20 s.
fn copts() -> ClientOptions {
    ClientOptions {
        transport: topts(),
        timeout: Duration::from_secs(20),
    }
}

/// A fresh address to listen at.
fn listen_url(tr: Tr) -> String {
    match tr {
        Tr::Shm => format!("shm://{}", unique_name("rpc")),
        Tr::Unix => {
            let path = std::env::temp_dir().join(format!("{}.sock", unique_name("rpc")));
            format!("unix://{}", path.display())
        }
        Tr::Tcp => "tcp://127.0.0.1:0".to_owned(),
        Tr::Pair => unreachable!("a pair has no address"),
    }
}

/// A server of [`Svc`] on one transport, in one mode.
struct Fixture {
    tr: Tr,
    mode: Mode,
    state: Arc<State>,
    server: Option<ServerHandle>,
    url: Option<String>,
}

impl Fixture {
    fn new(tr: Tr, mode: Mode) -> Self {
        let state = Arc::new(State::default());
        let server = Server::new(KvServer(Svc(state.clone())))
            .workers(mode.workers())
            .options(topts());
        let server = match tr {
            Tr::Pair => server.start_detached(),
            _ => server.serve(&listen_url(tr)).expect("serve"),
        };
        let url = server.url().map(str::to_owned);
        match tr {
            Tr::Pair => assert_eq!(url, None, "a detached server has no URL"),
            Tr::Tcp => {
                let u = url.as_deref().expect("listener URL");
                assert!(
                    u.starts_with("tcp://127.0.0.1:") && !u.ends_with(":0"),
                    "{u}"
                );
            }
            _ => assert!(url.is_some()),
        }
        Self {
            tr,
            mode,
            state,
            server: Some(server),
            url,
        }
    }

    fn label(&self) -> String {
        format!("{:?}/{:?}", self.tr, self.mode)
    }

    fn handle(&self) -> &ServerHandle {
        self.server.as_ref().expect("server running")
    }

    fn stats(&self) -> ServerStats {
        self.handle().stats()
    }

    /// A transport connection that the server serves.
    fn connection(&self) -> Connection {
        match (&self.url, self.tr) {
            (None, Tr::Pair) => {
                let (mine, theirs) = transport::pair(&topts()).expect("pair");
                self.handle().serve_connection(theirs);
                mine
            }
            (Some(url), _) => transport::connect(url, &topts()).expect("connect"),
            _ => unreachable!(),
        }
    }

    /// A new client on its own connection.
    fn client(&self) -> KvClient {
        match &self.url {
            None => KvClient::from_connection(self.connection(), &copts()).expect("rpc hello"),
            Some(url) => KvClient::connect_with(url, &copts()).expect("connect"),
        }
    }

    fn take_server(&mut self) -> ServerHandle {
        self.server.take().expect("server running")
    }

    /// Waits (at most [`WAIT`]) until the server's counters satisfy `pred`.
    fn wait_stats(&self, what: &str, pred: impl Fn(&ServerStats) -> bool) -> ServerStats {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.stats();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{}: counters never showed {what}: {s:?}",
                self.label()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown(Duration::ZERO);
        }
    }
}

/// After a server at `url` stopped: connecting fails in the transport, and the shm
/// listener segment or the Unix socket file is gone.
fn assert_endpoint_gone(url: &str, case: &str) {
    let err = KvClient::connect_with(url, &copts()).expect_err("connect after shutdown");
    assert!(
        matches!(err, ConnectError::Transport(_)),
        "{case}: connect to {url} after shutdown: {err:?}"
    );
    if let Some(name) = url.strip_prefix("shm://") {
        let found = shmlink::segment::inspect(name);
        assert!(
            matches!(found, Err(OpenError::NotFound)),
            "{case}: listener segment {name} still there: {found:?}"
        );
    }
    if let Some(path) = url.strip_prefix("unix://") {
        assert!(
            !Path::new(path).exists(),
            "{case}: socket file {path} still there"
        );
    }
}

/// One `#[test]` per transport × server mode for `$case(tr, mode)`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::{Mode, Tr};
            #[test]
            #[cfg_attr(miri, ignore = "real-time deadlines; slow under Miri")]
            fn pair_pool() {
                super::$case(Tr::Pair, Mode::Pool);
            }
            #[test]
            #[cfg_attr(miri, ignore = "real-time deadlines; slow under Miri")]
            fn pair_inline() {
                super::$case(Tr::Pair, Mode::Inline);
            }
            #[test]
            #[cfg_attr(miri, ignore = "maps a shared file")]
            fn shm_pool() {
                super::$case(Tr::Shm, Mode::Pool);
            }
            #[test]
            #[cfg_attr(miri, ignore = "maps a shared file")]
            fn shm_inline() {
                super::$case(Tr::Shm, Mode::Inline);
            }
            #[test]
            #[cfg_attr(miri, ignore = "opens sockets")]
            fn unix_pool() {
                super::$case(Tr::Unix, Mode::Pool);
            }
            #[test]
            #[cfg_attr(miri, ignore = "opens sockets")]
            fn unix_inline() {
                super::$case(Tr::Unix, Mode::Inline);
            }
            #[test]
            #[cfg_attr(miri, ignore = "opens sockets")]
            fn tcp_pool() {
                super::$case(Tr::Tcp, Mode::Pool);
            }
            #[test]
            #[cfg_attr(miri, ignore = "opens sockets")]
            fn tcp_inline() {
                super::$case(Tr::Tcp, Mode::Inline);
            }
        }
    )*};
}

/// One `#[test]` per transport, for `$case(tr, $mode)` in one server mode only.
macro_rules! conformance_in {
    ($mode:ident: $($case:ident),* $(,)?) => {$(
        mod $case {
            use super::{Mode, Tr};
            #[test]
            #[cfg_attr(miri, ignore = "real-time deadlines; slow under Miri")]
            fn pair() {
                super::$case(Tr::Pair, Mode::$mode);
            }
            #[test]
            #[cfg_attr(miri, ignore = "maps a shared file")]
            fn shm() {
                super::$case(Tr::Shm, Mode::$mode);
            }
            #[test]
            #[cfg_attr(miri, ignore = "opens sockets")]
            fn unix() {
                super::$case(Tr::Unix, Mode::$mode);
            }
            #[test]
            #[cfg_attr(miri, ignore = "opens sockets")]
            fn tcp() {
                super::$case(Tr::Tcp, Mode::$mode);
            }
        }
    )*};
}

conformance!(
    basic_calls_and_errors,
    panicking_handler_is_internal_and_server_keeps_serving,
    many_calls_in_flight_on_one_connection,
    deadline_is_carried_to_the_server,
    expired_budget_is_never_run,
    late_answer_keeps_the_connection_working,
    stream_deadline_stops_the_handler,
    long_stream_arrives_in_order_with_flow_control,
    stream_ending_with_the_service_error,
    concurrent_clients_each_on_own_connection,
    concurrent_threads_share_one_client,
    wrong_service_is_refused,
    graceful_shutdown_lets_calls_in_flight_finish,
    short_grace_aborts_cooperative_handlers,
);

conformance_in!(Pool:
    answers_come_out_of_order,
    dropping_a_call_cancels_its_handler,
    dropping_a_stream_stops_its_handler,
);

conformance_in!(Inline:
    call_whose_deadline_passed_while_queued_is_not_run,
);

// ---- 1. calls and errors ----

fn basic_calls_and_errors(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    assert_eq!(c.add((2, 3)).wait(), Ok(5), "{case}");
    assert_eq!(c.add((-7, 7)).wait(), Ok(0), "{case}");
    let text = "héllo, wörld ✓".to_owned();
    assert_eq!(c.echo(text.clone()).wait(), Ok(text), "{case}");
    assert_eq!(c.echo(String::new()).wait(), Ok(String::new()), "{case}");
    assert_eq!(c.put(("k".into(), "v1".into())).wait(), Ok(None), "{case}");
    assert_eq!(
        c.put(("k".into(), "v2".into())).wait(),
        Ok(Some("v1".into())),
        "{case}"
    );
    assert_eq!(c.get("k".into()).wait(), Ok("v2".into()), "{case}");

    // The service's own errors.
    let missing = c.get("nope".into()).wait();
    assert_eq!(
        missing,
        Err(RpcError::Service(KvError::NotFound("nope".into()))),
        "{case}"
    );
    assert_eq!(
        missing.unwrap_err().service_error(),
        Some(&KvError::NotFound("nope".into()))
    );
    assert_eq!(c.check(7).wait(), Ok(7), "{case}");
    assert_eq!(
        c.check(-3).wait(),
        Err(RpcError::Service(KvError::Negative(-3))),
        "{case}"
    );
    assert_eq!(
        c.add((i64::MAX, 1)).wait(),
        Err(RpcError::Service(KvError::Overflow)),
        "{case}"
    );

    // Raw calls with the ids the stub uses (the proptest below relies on them).
    let raw = c.raw();
    assert_eq!(
        raw.call::<_, i64, KvError>(ADD_ID, &(20i64, 22i64)).wait(),
        Ok(42),
        "{case}"
    );
    assert_eq!(
        raw.call::<_, String, KvError>(ECHO_ID, &"raw".to_owned())
            .wait(),
        Ok("raw".into()),
        "{case}"
    );
    assert_eq!(
        raw.call::<_, i64, KvError>(CHECK_ID, &-1i64).wait(),
        Err(RpcError::Service(KvError::Negative(-1))),
        "{case}"
    );
    let items: Result<Vec<u32>, RpcError<KvError>> = raw
        .call_stream::<_, u32, KvError>(COUNT_ID, &3u32)
        .collect();
    assert_eq!(items, Ok(vec![0, 1, 2]), "{case}");

    // The machinery's errors.
    assert_eq!(
        raw.call::<_, u32, KvError>(0xdead_beef, &1u32).wait(),
        Err(RpcError::UnknownMethod),
        "{case}"
    );
    assert_eq!(
        raw.call::<_, i64, KvError>(ADD_ID, &()).wait(),
        Err(RpcError::BadRequest),
        "{case}: `add` with an empty request"
    );
    assert!(c.raw().max_frame() <= MAX_FRAME, "{case}");
    assert_eq!(
        c.echo("x".repeat(MAX_FRAME)).wait(),
        Err(RpcError::TooLarge),
        "{case}: request over the maximum frame"
    );
    assert_eq!(
        c.big(MAX_FRAME as u32).wait(),
        Err(RpcError::TooLarge),
        "{case}: response over the maximum frame"
    );
    assert_eq!(
        c.big(1000).wait().map(|v| v.len()),
        Ok(1000),
        "{case}: a response that fits"
    );

    // The connection survived all of that.
    assert_eq!(c.add((40, 2)).wait(), Ok(42), "{case}");
    assert_eq!(c.raw().in_flight(), 0, "{case}");
    let stats = fix.stats();
    assert_eq!(stats.connections, 1, "{case}: {stats:?}");
    assert_eq!(stats.panicked, 0, "{case}: {stats:?}");
}

fn panicking_handler_is_internal_and_server_keeps_serving(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    assert_eq!(c.boom(1).wait(), Err(RpcError::Internal), "{case}");
    assert_eq!(
        c.add((20, 22)).wait(),
        Ok(42),
        "{case}: same connection after a panic"
    );
    assert_eq!(c.boom(2).wait(), Err(RpcError::Internal), "{case}");
    let items: Result<Vec<u32>, _> = c.count(5).collect();
    assert_eq!(items, Ok(vec![0, 1, 2, 3, 4]), "{case}");
    let other = fix.client();
    assert_eq!(
        other.echo("still here".into()).wait(),
        Ok("still here".into()),
        "{case}: a new connection after a panic"
    );
    assert_eq!(fix.stats().panicked, 2, "{case}");
}

// ---- 2. many calls in flight ----

fn many_calls_in_flight_on_one_connection(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    let calls: Vec<_> = (0..64i64).map(|i| c.add((i, 1000))).collect();
    assert_eq!(c.raw().in_flight(), 64, "{case}");
    for (i, call) in calls.into_iter().enumerate().rev() {
        assert_eq!(call.wait(), Ok(i as i64 + 1000), "{case}: call {i}");
    }
    assert_eq!(c.raw().in_flight(), 0, "{case}");

    // Calls of every kind in flight at once, waited in another order.
    let a = c.echo("a".into());
    let b = c.check(-1);
    let d = c.get("nope".into());
    let e = c.add((1, 1));
    let mut s = c.count(3);
    assert_eq!(e.wait(), Ok(2), "{case}");
    assert_eq!(s.next(), Some(Ok(0)), "{case}");
    assert_eq!(
        d.wait(),
        Err(RpcError::Service(KvError::NotFound("nope".into()))),
        "{case}"
    );
    assert_eq!(s.next(), Some(Ok(1)), "{case}");
    assert_eq!(
        b.wait(),
        Err(RpcError::Service(KvError::Negative(-1))),
        "{case}"
    );
    assert_eq!(a.wait(), Ok("a".into()), "{case}");
    assert_eq!(s.collect::<Vec<_>>(), vec![Ok(2)], "{case}");
    assert_eq!(c.raw().in_flight(), 0, "{case}");
}

/// With the pool, a call started first (held on a gate) is answered after calls
/// started later.
fn answers_come_out_of_order(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    let tag = next_tag();
    let held = c.slow(Slow {
        tag,
        ms: 20_000,
        gated: true,
    });
    fix.state.wait_started(tag);
    let fast: Vec<_> = (0..16i64).map(|i| c.add((i, i))).collect();
    for (i, call) in fast.into_iter().enumerate() {
        assert_eq!(call.wait(), Ok(2 * i as i64), "{case}: fast call {i}");
    }
    assert_eq!(
        fix.state.events(tag).len(),
        1,
        "{case}: the first call is still running"
    );
    assert_eq!(c.raw().in_flight(), 1, "{case}");
    fix.state.release(tag);
    assert_eq!(held.wait(), Ok(tag), "{case}");
    assert_eq!(
        fix.state.events(tag).last(),
        Some(&Event::Finished),
        "{case}"
    );
}

// ---- 3. deadlines ----

/// (Inline on unix and tcp this used to fail at the check that the connection still
/// answers: the handler stopped by its deadline answers after it, see
/// `late_answer_keeps_the_connection_working`.)
fn deadline_is_carried_to_the_server(tr: Tr, mode: Mode) {
    const BUDGET: Duration = Duration::from_millis(50);
    const NOMINAL_MS: u64 = 20_000;
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();

    // Held, not waited: no cancel can reach the server, so only the deadline stops it.
    let tag = next_tag();
    let t0 = Instant::now();
    let call = c.with_timeout(BUDGET).slow(Slow {
        tag,
        ms: NOMINAL_MS,
        gated: false,
    });
    let stop = fix.state.wait_stopped(tag);
    assert_eq!(
        stop,
        Stop::DeadlineExceeded,
        "{case}: the handler saw the caller's deadline"
    );
    let budget = budget_of(&fix.state.events(tag));
    assert!(
        budget.is_some_and(|b| b <= BUDGET),
        "{case}: the handler's time left {budget:?} is within the caller's {BUDGET:?}"
    );
    assert_eq!(call.wait(), Err(RpcError::DeadlineExceeded), "{case}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "{case}: took {:?} for a {BUDGET:?} budget on a {NOMINAL_MS} ms call",
        t0.elapsed()
    );

    // Waited: the caller gives up at its deadline, and the handler stops early (by the
    // deadline, or by the cancel that follows the caller's giving up).
    let tag = next_tag();
    let t0 = Instant::now();
    let r = c
        .with_timeout(BUDGET)
        .slow(Slow {
            tag,
            ms: NOMINAL_MS,
            gated: false,
        })
        .wait();
    let took = t0.elapsed();
    assert_eq!(r, Err(RpcError::DeadlineExceeded), "{case}");
    assert!(took >= BUDGET, "{case}: gave up after {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "{case}: gave up after {took:?}"
    );
    if mode.workers() == 0 {
        // Inline, the reader was still busy with the first call (which lingers after
        // its deadline), so this one queued; its caller's cancel was read before it
        // started, and it never ran.
        fix.wait_stats("the queued call counted as cancelled", |s| s.cancelled >= 1);
        assert_eq!(
            fix.state.events(tag),
            [],
            "{case}: the given-up call never ran"
        );
    } else {
        let stop = fix.state.wait_stopped(tag);
        assert!(
            matches!(stop, Stop::DeadlineExceeded | Stop::Cancelled),
            "{case}: {stop:?}"
        );
    }

    // The connection is fine afterwards, with the client's default budget.
    assert_eq!(
        c.with_timeout(Duration::from_secs(5)).add((1, 2)).wait(),
        Ok(3),
        "{case}: the connection after calls that ran out of time"
    );
    let tag = next_tag();
    assert_eq!(
        c.slow(Slow {
            tag,
            ms: 1,
            gated: false
        })
        .wait(),
        Ok(tag),
        "{case}"
    );
    let budget = budget_of(&fix.state.events(tag));
    assert!(
        budget.is_some_and(|b| b > Duration::from_secs(5) && b <= copts().timeout),
        "{case}: the default budget reached the server: {budget:?}"
    );
}

fn expired_budget_is_never_run(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    let (t1, t2) = (next_tag(), next_tag());
    let slow = |tag| Slow {
        tag,
        ms: 1,
        gated: false,
    };
    assert_eq!(
        c.with_deadline(Instant::now()).slow(slow(t1)).wait(),
        Err(RpcError::DeadlineExceeded),
        "{case}: deadline now"
    );
    assert_eq!(
        c.with_timeout(Duration::ZERO).slow(slow(t2)).wait(),
        Err(RpcError::DeadlineExceeded),
        "{case}: zero budget"
    );
    // The server reads a connection's frames in order: once a later call on it was
    // answered, the expired ones were seen (or never sent).
    assert_eq!(c.add((1, 2)).wait(), Ok(3), "{case}");
    assert_eq!(fix.state.events(t1), vec![], "{case}: expired call ran");
    assert_eq!(fix.state.events(t2), vec![], "{case}: expired call ran");
    assert_eq!(c.raw().in_flight(), 0, "{case}");
}

/// Inline mode: a call whose deadline passes while it waits in the connection behind
/// a running handler (its caller gave up and cancelled) must not be run once the
/// reader gets to it: "the server does not start a call whose deadline passed".
///
/// Before e8c0378 this failed: the deadline travels as a budget that the server
/// started counting when it *read* the request (`on_request`, src/rpc/server.rs), so
/// time spent queued in the transport was not charged, and the cancel that follows
/// the request was only read after the call ran.
fn call_whose_deadline_passed_while_queued_is_not_run(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    let gate = next_tag();
    let held = c.slow(Slow {
        tag: gate,
        ms: 20_000,
        gated: true,
    });
    fix.state.wait_started(gate);
    let tag = next_tag();
    let r = c
        .with_timeout(Duration::from_millis(100))
        .slow(Slow {
            tag,
            ms: 1,
            gated: false,
        })
        .wait();
    assert_eq!(r, Err(RpcError::DeadlineExceeded), "{case}");
    fix.state.release(gate);
    assert_eq!(held.wait(), Ok(gate), "{case}");
    assert_eq!(c.add((1, 2)).wait(), Ok(3), "{case}");
    assert_eq!(
        fix.state.events(tag),
        vec![],
        "{case}: the server ran a call whose deadline had passed (and whose caller had \
         cancelled it) while it waited behind the inline handler"
    );
}

/// A handler stopped by its call's deadline is counted as `deadline_exceeded` ("calls
/// not started, or stopped, because their deadline passed"), not `completed`.
///
/// Before e8c0378 this failed: `run_call` (src/rpc/server.rs) looked only at the
/// cancel/abort flags after the handler returned, so such a call counted as
/// `completed`.
#[test]
#[cfg_attr(miri, ignore = "real-time deadlines; slow under Miri")]
fn call_stopped_by_its_deadline_is_counted_as_such() {
    for mode in [Mode::Pool, Mode::Inline] {
        let fix = Fixture::new(Tr::Pair, mode);
        let case = fix.label();
        let c = fix.client();
        let tag = next_tag();
        // Held, not waited: no cancel; the handler lingers, then answers.
        let call = c.with_timeout(Duration::from_millis(50)).slow(Slow {
            tag,
            ms: 20_000,
            gated: false,
        });
        assert_eq!(
            fix.state.wait_stopped(tag),
            Stop::DeadlineExceeded,
            "{case}"
        );
        let stats = fix.wait_stats("the call", |s| {
            s.completed + s.cancelled + s.deadline_exceeded >= 1
        });
        drop(call);
        assert_eq!(
            (stats.deadline_exceeded, stats.completed),
            (1, 0),
            "{case}: {stats:?}"
        );
    }
}

/// A handler that overruns its deadline (ignoring its context) answers late, with
/// nobody having cancelled the call: the caller may take or drop that answer, but the
/// connection must keep working.
///
/// Before e8c0378 this failed on unix and tcp: `Conn::send` (src/rpc/server.rs) sends
/// the answer with the call's deadline, which has passed; the socket sender refused a
/// passed deadline before trying (`plan_timeout` in src/transport/socket.rs), and
/// `Conn::send` then marked the whole connection gone: the server kept reading and
/// running requests but dropped every later answer.
fn late_answer_keeps_the_connection_working(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    let tag = next_tag();
    let call = c.with_timeout(Duration::from_millis(50)).nap(Slow {
        tag,
        ms: 200,
        gated: false,
    });
    fix.state
        .wait_until(tag, "finish", |e| e.contains(&Event::Finished));
    // Counted once its answer went out (or failed to).
    fix.wait_stats("the late call", |s| {
        s.completed + s.cancelled + s.deadline_exceeded >= 1
    });
    let r = call.wait();
    assert!(
        r == Ok(tag) || r == Err(RpcError::DeadlineExceeded),
        "{case}: {r:?}"
    );
    assert_eq!(
        c.with_timeout(Duration::from_secs(5)).add((1, 2)).wait(),
        Ok(3),
        "{case}: the connection after a late answer"
    );
    let other = fix.client();
    assert_eq!(other.add((2, 2)).wait(), Ok(4), "{case}: a new connection");
}

/// A stream whose deadline passes while the client keeps reading: the handler's
/// `Sink::send` reports `Stop::DeadlineExceeded`, the client's stream ends (with the
/// deadline, or the handler's error), and the connection keeps working.
///
/// Before e8c0378 this failed inline: an inline call's control block has unlimited
/// credits, and `CallCtl::take_credit` (src/rpc/mod.rs) then checked only the cancel
/// and abort flags, never the deadline; the handler streamed on until the transport
/// was full, where `Conn::send` timed out and marked the connection gone
/// (`Stop::Cancelled`, and later answers were dropped). On unix and tcp with the pool,
/// the handler's end goes out after the deadline: see
/// `late_answer_keeps_the_connection_working`.
fn stream_deadline_stops_the_handler(tr: Tr, mode: Mode) {
    const BUDGET: Duration = Duration::from_millis(300);
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    let tag = next_tag();
    let t0 = Instant::now();
    let mut s = c.with_timeout(BUDGET).endless(tag);
    let mut n = 0u64;
    let end = loop {
        if t0.elapsed() > BUDGET + Duration::from_secs(3) {
            panic!("{case}: the stream still ran 3 s past its {BUDGET:?} deadline ({n} items)");
        }
        match s.next() {
            Some(Ok(i)) => {
                assert_eq!(i, n, "{case}");
                n += 1;
            }
            other => break other,
        }
    };
    assert!(n > 0, "{case}: no item before the deadline");
    assert!(
        matches!(
            end,
            Some(Err(
                RpcError::DeadlineExceeded | RpcError::Service(KvError::Stopped(_))
            ))
        ),
        "{case}: the stream ended with {end:?} after {n} items"
    );
    // `s` is still held: no cancel was sent, only the deadline can stop the handler.
    let evs = fix
        .state
        .wait_until(tag, "closed sink", |e| stop_of(e).is_some());
    assert_eq!(
        stop_of(&evs),
        Some(Stop::DeadlineExceeded),
        "{case}: why the handler's sink refused: {evs:?}"
    );
    // Counted once the handler's end went out (or failed to); only then cancel.
    fix.wait_stats("the stream's end", |s| {
        s.completed + s.cancelled + s.deadline_exceeded >= 1
    });
    drop(s);
    assert_eq!(
        c.with_timeout(Duration::from_secs(5)).add((1, 2)).wait(),
        Ok(3),
        "{case}: the connection after a stream that ran out of time"
    );
}

// ---- 4. cancellation (pool) ----

fn dropping_a_call_cancels_its_handler(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    let tag = next_tag();
    let call = c.slow(Slow {
        tag,
        ms: 20_000,
        gated: false,
    });
    fix.state.wait_started(tag);
    let t0 = Instant::now();
    drop(call);
    let stop = fix.state.wait_stopped(tag);
    assert_eq!(stop, Stop::Cancelled, "{case}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "{case}: stopped {:?} after the drop",
        t0.elapsed()
    );
    fix.wait_stats("a cancelled call", |s| s.cancelled >= 1);
    assert_eq!(c.raw().in_flight(), 0, "{case}");
    assert_eq!(c.add((2, 3)).wait(), Ok(5), "{case}");

    // A call dropped before the server got to it is cancelled as well (or answered
    // and dropped); either way the connection stays usable.
    let calls: Vec<_> = (0..8i64).map(|i| c.add((i, i))).collect();
    drop(calls);
    assert_eq!(c.raw().in_flight(), 0, "{case}");
    assert_eq!(c.add((3, 4)).wait(), Ok(7), "{case}");
}

fn dropping_a_stream_stops_its_handler(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    let tag = next_tag();
    let mut s = c.endless(tag);
    for i in 0..10u64 {
        assert_eq!(s.next(), Some(Ok(i)), "{case}");
    }
    let t0 = Instant::now();
    drop(s);
    let evs = fix
        .state
        .wait_until(tag, "closed sink", |e| stop_of(e).is_some());
    let Some(Event::SinkClosed { sent, why }) = evs.last().cloned() else {
        panic!("{case}: {evs:?}");
    };
    assert_eq!(why, Stop::Cancelled, "{case}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "{case}: stopped {:?} after the drop",
        t0.elapsed()
    );
    // Flow control: we consumed 10 (no credit returned yet), so the handler never ran
    // more than the window ahead.
    assert!(
        (10..=STREAM_WINDOW).contains(&sent),
        "{case}: the handler sent {sent} items"
    );
    assert_eq!(c.raw().in_flight(), 0, "{case}");
    let items: Result<Vec<u32>, _> = c.count(3).collect();
    assert_eq!(items, Ok(vec![0, 1, 2]), "{case}");
}

// ---- 5. streaming ----

/// (Inline, the handler runs on the reader, which cannot read credits meanwhile: the
/// server must pace such a stream some other way.)
fn long_stream_arrives_in_order_with_flow_control(tr: Tr, mode: Mode) {
    const N: u32 = 1000;
    const _: () = assert!(N as u64 > 2 * STREAM_WINDOW, "more than the window");
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client().with_timeout(Duration::from_secs(10));
    let mut got = Vec::with_capacity(N as usize);
    let mut s = c.count(N);
    for item in s.by_ref() {
        match item {
            Ok(i) => got.push(i),
            Err(e) => panic!("{case}: stream failed after {} items: {e:?}", got.len()),
        }
    }
    assert_eq!(s.next(), None, "{case}: a finished stream stays finished");
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "{case}");

    // Two streams interleaved on one connection, each with its own credits.
    let mut a = c.count(300);
    let mut b = c.count(300);
    for i in 0..300 {
        assert_eq!(a.next(), Some(Ok(i)), "{case}: stream a");
        assert_eq!(b.next(), Some(Ok(i)), "{case}: stream b");
    }
    assert_eq!((a.next(), b.next()), (None, None), "{case}");
    assert_eq!(c.raw().in_flight(), 0, "{case}");
}

fn stream_ending_with_the_service_error(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    let mut s = c.count_then_fail(5);
    for i in 0..5 {
        assert_eq!(s.next(), Some(Ok(i)), "{case}");
    }
    assert_eq!(
        s.next(),
        Some(Err(RpcError::Service(KvError::StreamFailed(5)))),
        "{case}"
    );
    assert_eq!(s.next(), None, "{case}");
    let mut s = c.count_then_fail(0);
    assert_eq!(
        s.next(),
        Some(Err(RpcError::Service(KvError::StreamFailed(0)))),
        "{case}"
    );
    assert_eq!(s.next(), None, "{case}");
    assert_eq!(c.count(0).next(), None, "{case}: an empty stream");
    assert_eq!(c.raw().in_flight(), 0, "{case}");
    assert_eq!(c.add((1, 1)).wait(), Ok(2), "{case}");
}

// ---- 6. concurrency ----

const THREADS: usize = 8;
const CALLS: usize = 200;

/// Thread `t`'s calls: distinct arguments, two calls in flight at a time, and (when
/// `streams`) a short stream now and then.
fn work(case: &str, t: usize, c: &KvClient, streams: bool) {
    for i in 0..CALLS {
        let a = (t * 1_000_000 + i) as i64;
        let sum = c.add((a, i as i64));
        let text = format!("t{t}-{i}");
        let echo = c.echo(text.clone());
        assert_eq!(sum.wait(), Ok(a + i as i64), "{case}: thread {t} call {i}");
        assert_eq!(echo.wait(), Ok(text), "{case}: thread {t} call {i}");
        if i % 20 == 0 {
            let key = format!("key-{t}-{i}");
            let value = format!("value-{t}-{i}");
            assert_eq!(
                c.put((key.clone(), value.clone())).wait(),
                Ok(None),
                "{case}"
            );
            assert_eq!(c.get(key).wait(), Ok(value), "{case}");
        }
        if streams && i % 50 == 0 {
            let n = 40 + t as u32;
            let items: Result<Vec<u32>, _> = c.count(n).collect();
            assert_eq!(
                items,
                Ok((0..n).collect()),
                "{case}: thread {t} stream at {i}"
            );
        }
    }
}

fn concurrent_clients_each_on_own_connection(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let clients: Vec<KvClient> = (0..THREADS).map(|_| fix.client()).collect();
    thread::scope(|s| {
        for (t, c) in clients.iter().enumerate() {
            let case = &case;
            s.spawn(move || work(case, t, c, false));
        }
    });
    let stats = fix.stats();
    assert_eq!(stats.connections, THREADS as u64, "{case}: {stats:?}");
    assert!(
        stats.completed >= (THREADS * CALLS * 2) as u64,
        "{case}: {stats:?}"
    );
}

fn concurrent_threads_share_one_client(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let client = fix.client();
    thread::scope(|s| {
        for t in 0..THREADS {
            let c = client.clone();
            let case = &case;
            s.spawn(move || work(case, t, &c, true));
        }
    });
    assert_eq!(client.raw().in_flight(), 0, "{case}");
    let stats = fix.stats();
    assert_eq!(stats.connections, 1, "{case}: {stats:?}");
    assert!(
        stats.completed >= (THREADS * CALLS * 2) as u64,
        "{case}: {stats:?}"
    );
}

// ---- 7. wrong service ----

fn wrong_service_is_refused(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    assert_ne!(other::OtherClient::SERVICE_ID, KvClient::SERVICE_ID);
    assert_ne!(
        v2::KvClient::SERVICE_ID,
        KvClient::SERVICE_ID,
        "another version of the service has another id"
    );
    let err = other::OtherClient::from_connection(fix.connection(), &copts()).unwrap_err();
    assert_eq!(
        err,
        ConnectError::WrongService {
            ours: other::OtherClient::SERVICE_ID,
            theirs: KvClient::SERVICE_ID
        },
        "{case}"
    );
    let err = v2::KvClient::from_connection(fix.connection(), &copts()).unwrap_err();
    assert_eq!(
        err,
        ConnectError::WrongService {
            ours: v2::KvClient::SERVICE_ID,
            theirs: KvClient::SERVICE_ID
        },
        "{case}"
    );
    if let Some(url) = &fix.url {
        let err = other::OtherClient::connect_with(url, &copts()).unwrap_err();
        assert!(
            matches!(err, ConnectError::WrongService { .. }),
            "{case}: {err:?}"
        );
    }
    // The server is unharmed, and counted only the accepted connection.
    let c = fix.client();
    assert_eq!(c.add((1, 1)).wait(), Ok(2), "{case}");
    assert_eq!(fix.stats().connections, 1, "{case}");
}

// ---- 8. shutdown ----

fn graceful_shutdown_lets_calls_in_flight_finish(tr: Tr, mode: Mode) {
    const GRACE: Duration = Duration::from_secs(5);
    let mut fix = Fixture::new(tr, mode);
    let case = fix.label();
    let busy = fix.client();
    let idle = fix.client();
    assert_eq!(idle.add((1, 1)).wait(), Ok(2), "{case}");
    let tag = next_tag();
    let held = busy.slow(Slow {
        tag,
        ms: 20_000,
        gated: true,
    });
    fix.state.wait_started(tag);

    let server = fix.take_server();
    let stopper = thread::spawn(move || {
        let t0 = Instant::now();
        let stats = server.shutdown(GRACE);
        (stats, t0.elapsed())
    });

    // Once the shutdown began, calls on the idle connection fail: refused while its
    // reader still runs, or the connection closed.
    let until = Instant::now() + GRACE / 2;
    let refused = loop {
        match idle.add((2, 2)).wait() {
            Ok(4) if Instant::now() < until => thread::sleep(Duration::from_millis(2)),
            other => break other,
        }
    };
    assert!(
        matches!(refused, Err(RpcError::Unavailable | RpcError::ServerGone)),
        "{case}: a new call during shutdown: {refused:?}"
    );
    // The busy connection: with the pool its reader still reads (a call is in flight)
    // and refuses new calls; inline, the reader is busy running the held call.
    let late = busy.add((3, 3));
    let late = if mode == Mode::Pool {
        assert_eq!(
            late.wait(),
            Err(RpcError::Unavailable),
            "{case}: a new call next to one in flight"
        );
        None
    } else {
        Some(late)
    };

    fix.state.release(tag);
    assert_eq!(
        held.wait(),
        Ok(tag),
        "{case}: the call in flight finished within the grace"
    );
    if let Some(late) = late {
        let r = late.wait();
        assert!(
            matches!(r, Err(RpcError::Unavailable | RpcError::ServerGone)),
            "{case}: a call sent during shutdown: {r:?}"
        );
    }
    let (stats, took) = stopper.join().expect("shutdown thread");
    assert!(took < GRACE, "{case}: shutdown took {took:?}");
    assert_eq!(
        fix.state.events(tag).last(),
        Some(&Event::Finished),
        "{case}"
    );
    assert!(
        stats.completed >= 2,
        "{case}: both calls that ran completed: {stats:?}"
    );
    if mode == Mode::Pool {
        assert!(stats.refused >= 1, "{case}: {stats:?}");
    }

    // After the shutdown: the connections are closed, and the endpoint is gone.
    assert_eq!(busy.add((4, 4)).wait(), Err(RpcError::ServerGone), "{case}");
    assert_eq!(idle.add((4, 4)).wait(), Err(RpcError::ServerGone), "{case}");
    if let Some(url) = &fix.url {
        assert_endpoint_gone(url, &case);
    }
}

/// (The counters: a call stopped by the shutdown, whose answer was never sent, is not
/// `completed`.)
fn short_grace_aborts_cooperative_handlers(tr: Tr, mode: Mode) {
    let mut fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    let tag = next_tag();
    let call = c.slow(Slow {
        tag,
        ms: 20_000,
        gated: true,
    });
    fix.state.wait_started(tag);
    let server = fix.take_server();
    let t0 = Instant::now();
    let stats = server.shutdown(Duration::from_millis(100));
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "{case}: shutdown with a 100 ms grace took {took:?}"
    );
    assert_eq!(
        fix.state.wait_stopped(tag),
        Stop::ShuttingDown,
        "{case}: the handler was told why"
    );
    let t1 = Instant::now();
    assert_eq!(call.wait(), Err(RpcError::ServerGone), "{case}");
    assert!(
        t1.elapsed() < Duration::from_secs(5),
        "{case}: the caller learned after {:?}",
        t1.elapsed()
    );
    assert_eq!(c.add((1, 1)).wait(), Err(RpcError::ServerGone), "{case}");
    if let Some(url) = &fix.url {
        assert_endpoint_gone(url, &case);
    }
    assert_eq!(
        stats.completed, 0,
        "{case}: the only call was stopped by the shutdown and never answered: {stats:?}"
    );
}

// ---- 9. across processes ----

const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

/// Child: serves the service at `url` with `workers` workers, reports `url=`, and
/// serves until the file `quit` exists (at most 60 s); then shuts down and reports
/// its counters.
fn serve_kv() {
    let state = Arc::new(State {
        report_starts: true,
        ..State::default()
    });
    let workers: usize = arg("workers").parse().unwrap();
    let server = Server::new(KvServer(Svc(state)))
        .workers(workers)
        .options(topts())
        .serve(&arg("url"))
        .expect("serve");
    report(format!("url={}", server.url().expect("listener URL")));
    let quit = PathBuf::from(arg("quit"));
    let until = Instant::now() + Duration::from_secs(60);
    while !quit.exists() && Instant::now() < until {
        thread::sleep(Duration::from_millis(10));
    }
    let stats = server.shutdown(Duration::from_secs(2));
    report(format!("completed={}", stats.completed));
    report(format!("panicked={}", stats.panicked));
}

/// Starts a `serve_kv` child on `tr`; its URL and the quit file.
fn spawn_server(tr: Tr) -> (support::Child, String, PathBuf) {
    let quit = std::env::temp_dir().join(unique_name("rpc-quit"));
    let mut child = Scenario::new("serve_kv")
        .arg("url", listen_url(tr))
        .arg("workers", 4)
        .arg("quit", quit.display())
        .spawn();
    let line = child.wait_for("url=", CHILD_TIMEOUT);
    let url = line["url=".len()..].to_owned();
    (child, url, quit)
}

macro_rules! cross_process {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::Tr;
            #[test]
            #[cfg_attr(miri, ignore = "spawns a process")]
            fn shm() {
                super::$case(Tr::Shm);
            }
            #[test]
            #[cfg_attr(miri, ignore = "spawns a process")]
            fn unix() {
                super::$case(Tr::Unix);
            }
            #[test]
            #[cfg_attr(miri, ignore = "spawns a process")]
            fn tcp() {
                super::$case(Tr::Tcp);
            }
        }
    )*};
}

cross_process!(
    cross_process_calls_and_streams,
    sigkilled_server_fails_waiting_callers,
);

fn cross_process_calls_and_streams(tr: Tr) {
    let case = format!("{tr:?} across processes");
    let (child, url, quit) = spawn_server(tr);
    // Default options once; the tests' small frames after.
    let c = KvClient::connect(&url).expect("connect with defaults");
    assert_eq!(c.add((2, 40)).wait(), Ok(42), "{case}");
    drop(c);
    let c = KvClient::connect_with(&url, &copts()).expect("connect");
    let mut completed = 0;
    assert_eq!(c.echo("über".into()).wait(), Ok("über".into()), "{case}");
    assert_eq!(c.put(("a".into(), "1".into())).wait(), Ok(None), "{case}");
    assert_eq!(c.get("a".into()).wait(), Ok("1".into()), "{case}");
    assert_eq!(
        c.get("b".into()).wait(),
        Err(RpcError::Service(KvError::NotFound("b".into()))),
        "{case}"
    );
    assert_eq!(
        c.check(-5).wait(),
        Err(RpcError::Service(KvError::Negative(-5))),
        "{case}"
    );
    completed += 5;
    assert_eq!(c.boom(1).wait(), Err(RpcError::Internal), "{case}");
    let items: Result<Vec<u32>, _> = c.count(500).collect();
    assert_eq!(items, Ok((0..500).collect()), "{case}");
    let mut s = c.count_then_fail(3);
    assert_eq!(
        (&mut s).take(3).collect::<Vec<_>>(),
        vec![Ok(0), Ok(1), Ok(2)],
        "{case}"
    );
    assert_eq!(
        s.next(),
        Some(Err(RpcError::Service(KvError::StreamFailed(3)))),
        "{case}"
    );
    completed += 2;
    let calls: Vec<_> = (0..32i64).map(|i| c.add((i, -i))).collect();
    for call in calls.into_iter().rev() {
        assert_eq!(call.wait(), Ok(0), "{case}");
    }
    completed += 32;
    let t0 = Instant::now();
    let r = c
        .with_timeout(Duration::from_millis(50))
        .slow(Slow {
            tag: 1,
            ms: 20_000,
            gated: false,
        })
        .wait();
    assert_eq!(r, Err(RpcError::DeadlineExceeded), "{case}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{case}");
    // A second client, from another thread, at the same time as this one.
    let second = thread::spawn({
        let url = url.clone();
        move || {
            let c = KvClient::connect_with(&url, &copts()).expect("second connect");
            (0..100i64).all(|i| c.add((i, 1)).wait() == Ok(i + 1))
        }
    });
    for i in 0..100i64 {
        assert_eq!(c.add((i, 2)).wait(), Ok(i + 2), "{case}");
    }
    assert!(second.join().unwrap(), "{case}: the second client");
    completed += 200;

    std::fs::write(&quit, b"").unwrap();
    let done = child.success(CHILD_TIMEOUT);
    let _ = std::fs::remove_file(quit);
    let values = done.values();
    let served: u64 = values["completed"].parse().unwrap();
    assert!(
        served >= completed,
        "{case}: the child completed {served} calls, we made {completed}"
    );
    assert_eq!(values["panicked"], "1", "{case}");
    assert_eq!(c.add((1, 1)).wait(), Err(RpcError::ServerGone), "{case}");
    assert_endpoint_gone(&url, &case);
}

fn sigkilled_server_fails_waiting_callers(tr: Tr) {
    const CALLERS: u64 = 4;
    const DEADLINE: Duration = Duration::from_secs(10);
    let case = format!("{tr:?} server SIGKILLed");
    let (mut child, url, quit) = spawn_server(tr);
    let c = KvClient::connect_with(&url, &copts()).expect("connect");
    assert_eq!(c.add((1, 2)).wait(), Ok(3), "{case}");
    let callers: Vec<_> = (0..CALLERS)
        .map(|tag| {
            let c = c.with_timeout(DEADLINE);
            thread::spawn(move || {
                let r = c
                    .slow(Slow {
                        tag,
                        ms: 60_000,
                        gated: false,
                    })
                    .wait();
                (r, Instant::now())
            })
        })
        .collect();
    for _ in 0..CALLERS {
        child.wait_for("started=", CHILD_TIMEOUT);
    }
    let killed = Instant::now();
    child.kill();
    for (i, caller) in callers.into_iter().enumerate() {
        let (r, at) = caller.join().expect("caller thread");
        let after = at.saturating_duration_since(killed);
        println!("{case}: caller {i} got {r:?} {after:?} after the kill");
        assert_eq!(r, Err(RpcError::ServerGone), "{case}: caller {i}");
        assert!(
            after < Duration::from_secs(5),
            "{case}: caller {i} learned {after:?} after the kill"
        );
    }
    let t0 = Instant::now();
    assert_eq!(c.add((1, 1)).wait(), Err(RpcError::ServerGone), "{case}");
    assert_eq!(c.count(3).next(), Some(Err(RpcError::ServerGone)), "{case}");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "{case}: later calls took {:?}",
        t0.elapsed()
    );
    let err = KvClient::connect_with(&url, &copts()).expect_err("connect to a dead server");
    assert_eq!(
        err,
        ConnectError::Transport(transport::ConnectError::NoListener),
        "{case}"
    );
    // What the killed server left behind.
    if let Some(name) = url.strip_prefix("shm://") {
        let _ = shmlink::segment::remove_stale(name);
    }
    if let Some(path) = url.strip_prefix("unix://") {
        let _ = std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(quit);
}

// ---- 10. proptests ----

const KINDS: [Kind; 7] = [
    Kind::Hello,
    Kind::HelloReply,
    Kind::Request,
    Kind::Reply,
    Kind::Item,
    Kind::Cancel,
    Kind::Credit,
];
const CODES: [Code; 9] = [
    Code::Ok,
    Code::ServiceError,
    Code::DeadlineExceeded,
    Code::UnknownMethod,
    Code::BadRequest,
    Code::Unavailable,
    Code::Internal,
    Code::ResponseTooLarge,
    Code::WrongService,
];

/// A well-formed frame, mostly what a client sends (requests of `methods` or any
/// 32-bit id, cancels, credits), with payloads that often decode as a method's request.
fn arb_valid_frame(methods: Vec<u64>) -> BoxedStrategy<Vec<u8>> {
    let kind = prop_oneof![
        6 => Just(Kind::Request),
        2 => Just(Kind::Cancel),
        2 => Just(Kind::Credit),
        1 => proptest::sample::select(KINDS.to_vec()),
    ];
    let code = prop_oneof![4 => Just(Code::Ok), 1 => proptest::sample::select(CODES.to_vec())];
    let method = prop_oneof![
        4 => proptest::sample::select(methods),
        1 => any::<u32>().prop_map(u64::from),
        1 => any::<u64>(),
    ];
    let arg = prop_oneof![
        Just(u64::MAX),
        Just(0u64),
        1u64..2_000_000_000,
        any::<u64>(),
    ];
    let payload = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..24),
        any::<(i64, i64)>().prop_map(|v| postcard::to_allocvec(&v).unwrap()),
        (0u32..300).prop_map(|n| postcard::to_allocvec(&n).unwrap()),
        any::<i64>().prop_map(|n| postcard::to_allocvec(&n).unwrap()),
        proptest::collection::vec(any::<char>(), 0..12)
            .prop_map(|cs| postcard::to_allocvec(&cs.into_iter().collect::<String>()).unwrap()),
    ];
    (kind, code, 0u64..16, method, arg, payload)
        .prop_map(|(kind, code, id, method, arg, payload)| {
            let mut b = Vec::new();
            encode_header(&mut b, kind, code, id, method, arg);
            b.extend_from_slice(&payload);
            b
        })
        .boxed()
}

/// Frame bytes: mostly well-formed, else with one byte changed, cut short, or anything.
fn arb_frame(methods: Vec<u64>) -> impl Strategy<Value = Vec<u8>> {
    use proptest::sample::Index;
    let valid = arb_valid_frame(methods);
    prop_oneof![
        6 => valid.clone(),
        2 => (valid.clone(), any::<Index>(), any::<u8>()).prop_map(|(mut b, i, v)| {
            let i = i.index(b.len());
            b[i] = v;
            b
        }),
        1 => (valid, any::<Index>()).prop_map(|(b, i)| b[..i.index(b.len() + 1)].to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..48),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the bytes, `decode` returns; what it accepts re-encodes byte for byte.
    #[test]
    #[cfg_attr(miri, ignore = "proptest; slow under Miri")]
    fn wire_decode_never_panics_and_round_trips(
        bytes in arb_frame(vec![ADD_ID, COUNT_ID, KvClient::SERVICE_ID])
    ) {
        match decode(&bytes) {
            Err(e) => {
                if bytes.is_empty() {
                    prop_assert_eq!(e, DecodeError::Truncated);
                }
            }
            Ok(f) => {
                prop_assert!(
                    f.code == Code::Ok || matches!(f.kind, Kind::Reply | Kind::HelloReply),
                    "a status code on a {:?}", f.kind
                );
                let mut again = Vec::new();
                encode_header(&mut again, f.kind, f.code, f.id, f.method, f.arg);
                prop_assert!(again.len() <= wire::MAX_HEADER_LEN);
                again.extend_from_slice(f.payload);
                prop_assert_eq!(&again, &bytes);
            }
        }
    }

    /// Every header `encode_header` writes decodes to the fields its kind carries.
    #[test]
    #[cfg_attr(miri, ignore = "proptest; slow under Miri")]
    fn wire_encode_then_decode_round_trips(
        kind in proptest::sample::select(KINDS.to_vec()),
        code in proptest::sample::select(CODES.to_vec()),
        id in any::<u64>(),
        method in any::<u64>(),
        arg in any::<u64>(),
        payload in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut b = Vec::new();
        encode_header(&mut b, kind, code, id, method, arg);
        prop_assert!(b.len() <= wire::MAX_HEADER_LEN);
        b.extend_from_slice(&payload);
        let f = decode(&b);
        prop_assert!(f.is_ok(), "{f:?}");
        let f = f.unwrap();
        let has_code = matches!(kind, Kind::Reply | Kind::HelloReply);
        let want_method = match kind {
            Kind::Hello | Kind::HelloReply => method,
            Kind::Request => method & 0xffff_ffff,
            _ => 0,
        };
        let want_arg = if matches!(kind, Kind::Request | Kind::Credit) { arg } else { 0 };
        prop_assert_eq!(f.kind, kind);
        prop_assert_eq!(f.code, if has_code { code } else { Code::Ok });
        prop_assert_eq!((f.id, f.method, f.arg), (id, want_method, want_arg));
        prop_assert_eq!(f.payload, &payload[..]);
    }
}

/// Transport options of the fuzzed connections: small frames, small rings.
fn fuzz_opts() -> transport::Options {
    transport::Options {
        max_frame: 4096,
        shm_capacity: 16 * 1024,
        ..transport::Options::default()
    }
}

/// A call id the generated frames never use.
const PROBE: u64 = u64::MAX;
/// How long a fed connection has to answer (or close).
const FUZZ_WAIT: Duration = Duration::from_secs(3);

/// Feeds `frames` to `server` on a new connection after a proper hello, then a proper
/// probe call. A protocol violation must close the connection; otherwise every request
/// not cancelled is answered (an item or a reply), and the probe is answered
/// correctly. Then a proper client on a new connection is served.
fn feed_random_frames(server: &ServerHandle, frames: &[Vec<u8>]) -> Result<(), TestCaseError> {
    let (mine, theirs) = transport::pair(&fuzz_opts()).expect("pair");
    server.serve_connection(theirs);
    let (mut tx, mut rx) = mine.split();
    let soon = || Some(Instant::now() + Duration::from_secs(5));
    let mut buf = Vec::new();
    encode_header(&mut buf, Kind::Hello, Code::Ok, 0, KvClient::SERVICE_ID, 0);
    tx.send(&buf, soon()).expect("send hello");
    rx.recv(&mut buf, soon()).expect("hello reply");
    let hello = decode(&buf).expect("decodable hello reply");
    prop_assert_eq!(
        (hello.kind, hello.code, hello.method),
        (Kind::HelloReply, Code::Ok, KvClient::SERVICE_ID)
    );

    let mut fatal = false;
    let mut requests = HashSet::new();
    let mut cancelled = HashSet::new();
    for f in frames {
        match decode(f) {
            Ok(d) if d.kind == Kind::Request => {
                requests.insert(d.id);
            }
            Ok(d) if d.kind == Kind::Cancel => {
                cancelled.insert(d.id);
            }
            Ok(d) if d.kind == Kind::Credit => {}
            _ => fatal = true,
        }
        let sent = tx.send(f, soon());
        prop_assert!(sent.is_ok(), "send {f:?}: {sent:?}");
        if fatal {
            break; // the server stops reading here
        }
    }
    if !fatal {
        encode_header(&mut buf, Kind::Request, Code::Ok, PROBE, ADD_ID, u64::MAX);
        buf.extend_from_slice(&postcard::to_allocvec(&(20i64, 22i64)).unwrap());
        tx.send(&buf, soon()).expect("send probe");
    }
    let must_answer: HashSet<u64> = requests.difference(&cancelled).copied().collect();
    let mut answered = HashSet::new();
    let mut probe_ok = false;
    let mut closed = false;
    let end = Instant::now() + FUZZ_WAIT;
    while fatal || !probe_ok || !must_answer.is_subset(&answered) {
        // (Frames that keep coming, e.g. an endless stream, must not keep us here.)
        if Instant::now() >= end {
            return Err(TestCaseError::fail(format!(
                "within {FUZZ_WAIT:?} the server neither answered everything nor closed \
                 the connection; probe answered: {probe_ok}, answered {answered:?} of \
                 {must_answer:?}"
            )));
        }
        match rx.recv(&mut buf, Some(end)) {
            Ok(()) => {}
            Err(RecvError::Disconnected) => {
                closed = true;
                break;
            }
            Err(e) => {
                return Err(TestCaseError::fail(format!(
                    "the server neither answered nor closed within {FUZZ_WAIT:?} ({e}); \
                     answered {answered:?} of {must_answer:?}"
                )));
            }
        }
        let f = decode(&buf);
        prop_assert!(f.is_ok(), "undecodable frame from the server: {buf:?}");
        let f = f.unwrap();
        prop_assert!(
            matches!(f.kind, Kind::Reply | Kind::Item),
            "{:?} from the server",
            f.kind
        );
        prop_assert!(
            f.id == PROBE || requests.contains(&f.id),
            "an answer to call {} that was never made",
            f.id
        );
        if f.id == PROBE {
            prop_assert_eq!((f.kind, f.code), (Kind::Reply, Code::Ok));
            prop_assert_eq!(postcard::from_bytes::<i64>(f.payload).ok(), Some(42));
            probe_ok = true;
        }
        answered.insert(f.id);
    }
    if fatal {
        prop_assert!(closed, "a protocol violation must close the connection");
    } else {
        prop_assert!(!closed, "the server closed a connection that broke no rule");
    }
    drop((tx, rx));

    let (mine, theirs) = transport::pair(&fuzz_opts()).expect("pair");
    server.serve_connection(theirs);
    let c = KvClient::from_connection(mine, &copts());
    prop_assert!(c.is_ok(), "a proper client after random frames: {c:?}");
    prop_assert_eq!(c.unwrap().add((2, 3)).wait(), Ok(5));
    Ok(())
}

fn server_survives_random_frames(mode: Mode, methods: Vec<u64>) {
    let state = Arc::new(State::default());
    let server = Server::new(KvServer(Svc(state)))
        .workers(mode.workers())
        .start_detached();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        // A failing case waits out its `FUZZ_WAIT`: keep shrinking short.
        max_shrink_iters: 8,
        ..ProptestConfig::default()
    });
    let strategy = proptest::collection::vec(arb_frame(methods), 1..6);
    if let Err(e) = runner.run(&strategy, |frames| feed_random_frames(&server, &frames)) {
        panic!("{mode:?}: {e}");
    }
    let t0 = Instant::now();
    let stats = server.shutdown(Duration::from_secs(1));
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "{mode:?}: shutdown took {:?}",
        t0.elapsed()
    );
    assert_eq!(
        stats.panicked, 0,
        "{mode:?}: no handler panics on any input"
    );
    assert!(stats.connections >= 256, "{mode:?}: {stats:?}");
}

/// What the proptest found (shrunk): a streaming request whose budget (100 ms) runs
/// out long before its items do. The server must stop the stream at the deadline and
/// answer the next request.
///
/// Before e8c0378 this failed inline: see `stream_deadline_stops_the_handler`.
#[test]
#[cfg_attr(miri, ignore = "real-time deadlines; slow under Miri")]
fn random_frames_regression_stream_past_its_deadline() {
    let mut frame = Vec::new();
    encode_header(
        &mut frame,
        Kind::Request,
        Code::Ok,
        0,
        COUNT_ID,
        100_000_000,
    );
    frame.extend_from_slice(&postcard::to_allocvec(&u32::MAX).unwrap());
    for mode in [Mode::Pool, Mode::Inline] {
        let state = Arc::new(State::default());
        let server = Server::new(KvServer(Svc(state)))
            .workers(mode.workers())
            .start_detached();
        let outcome = feed_random_frames(&server, std::slice::from_ref(&frame));
        server.shutdown(Duration::from_secs(1));
        if let Err(e) = outcome {
            panic!("{mode:?}: {e}");
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "proptest; slow under Miri")]
fn server_survives_random_frames_pool() {
    server_survives_random_frames(Mode::Pool, vec![ADD_ID, ECHO_ID, CHECK_ID, COUNT_ID]);
}

/// Inline without the stream: a random `count(n)` with no deadline streams up to 2^32
/// items on the reader thread, and an inline connection runs one call at a time, so
/// the probe behind it would wait for all of them (by design; the pool variant covers
/// streams, whose credits stop a handler whose client does not read).
#[test]
#[cfg_attr(miri, ignore = "proptest; slow under Miri")]
fn server_survives_random_frames_inline() {
    server_survives_random_frames(Mode::Inline, vec![ADD_ID, ECHO_ID, CHECK_ID]);
}

/// A socket client that connects and never sends its hello does not hold up the next
/// client: the server reads each hello on the client's own thread. (The silent
/// client's hello would time out after 10 s; the good client is served long before.)
#[test]
#[cfg_attr(miri, ignore = "opens sockets")]
fn silent_socket_client_does_not_hold_up_others() {
    for tr in [Tr::Unix, Tr::Tcp] {
        let state = Arc::new(State::default());
        let server = Server::new(KvServer(Svc(state)))
            .options(transport::Options {
                handshake_timeout: Duration::from_secs(10),
                ..topts()
            })
            .serve(&listen_url(tr))
            .expect("serve");
        let url = server.url().expect("url").to_owned();
        let _silent: Box<dyn std::any::Any> = match url.strip_prefix("unix://") {
            Some(path) => Box::new(std::os::unix::net::UnixStream::connect(path).expect("raw")),
            None => Box::new(
                std::net::TcpStream::connect(url.strip_prefix("tcp://").expect("tcp"))
                    .expect("raw"),
            ),
        };
        std::thread::sleep(Duration::from_millis(50)); // let the server accept it first
        let t0 = Instant::now();
        let client = KvClient::connect_with(&url, &copts()).expect("connect");
        assert_eq!(client.add((1, 2)).wait(), Ok(3), "{tr:?}");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{tr:?}: the good client waited {:?} behind a silent one",
            t0.elapsed()
        );
        drop(client);
        server.shutdown(Duration::from_secs(1));
    }
}

// ---- 11. a response whose decoding panics ----

/// A response whose `Deserialize` panics when it holds 13: a bug in user code, run by
/// the client while it holds the connection's reading role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Touchy(pub u32);

impl<'de> Deserialize<'de> for Touchy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        assert_ne!(n, 13, "Touchy cannot decode 13");
        Ok(Touchy(n))
    }
}

/// A service answering with [`Touchy`].
#[allow(dead_code)]
mod picky {
    use super::{KvError, Touchy};
    shmlink::service! {
        pub trait Picky {
            client PickyClient;
            server PickyServer;
            error KvError;
            /// `Touchy(n)` after `ms` milliseconds.
            fn after(req: (u32, u64)) -> Touchy;
        }
    }
}

struct PickySvc;

impl picky::Picky for PickySvc {
    fn after(&self, _ctx: &Context, (n, ms): (u32, u64)) -> Result<Touchy, KvError> {
        thread::sleep(Duration::from_millis(ms));
        Ok(Touchy(n))
    }
}

/// A call whose response panics while it is decoded panics in its caller's `wait`
/// (the panic is the caller's own bug; it is not turned into an error), and the client
/// stays usable: a later call on it, and a call another thread was already waiting
/// for, both get their answers. (The reader that panicked gives the reading role up
/// and wakes a sleeper to take it over; before, the role stayed taken and every later
/// call slept until its deadline: `DeadlineExceeded` after 5 s here.)
#[test]
#[cfg_attr(miri, ignore = "real-time deadlines; slow under Miri")]
fn panicking_response_decoder_leaves_the_client_usable() {
    let server = Server::new(picky::PickyServer(PickySvc))
        .workers(4)
        .options(topts())
        .start_detached();
    let (mine, theirs) = transport::pair(&topts()).expect("pair");
    server.serve_connection(theirs);
    let opts = ClientOptions {
        timeout: Duration::from_secs(5),
        ..copts()
    };
    let c = picky::PickyClient::from_connection(mine, &opts).expect("rpc hello");
    let decode_13 = |c: &picky::PickyClient, ms: u64| {
        let call = c.after((13, ms));
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call.wait()))
    };

    // One caller: the call panics, the next one is answered.
    assert!(decode_13(&c, 0).is_err(), "decoding 13 must panic");
    let t0 = Instant::now();
    assert_eq!(c.after((1, 0)).wait(), Ok(Touchy(1)), "after the panic");
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());

    // Two callers: this thread reads (its answer comes after 100 ms, and panics);
    // the other one starts waiting meanwhile, for an answer due after 300 ms, which
    // nobody reads unless the role is handed over.
    let other = {
        let c = c.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(30));
            c.after((2, 300)).wait()
        })
    };
    assert!(decode_13(&c, 100).is_err(), "decoding 13 must panic");
    assert_eq!(other.join().expect("other caller"), Ok(Touchy(2)));
    assert_eq!(c.after((3, 0)).wait(), Ok(Touchy(3)));
    assert_eq!(c.raw().in_flight(), 0);
    drop(c);
    server.shutdown(Duration::from_secs(1));
}

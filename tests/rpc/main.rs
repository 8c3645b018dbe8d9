//! The RPC layer (`shmlink::rpc`): one test service (`Kv`, in `tests/support/kv.rs`)
//! and one conformance suite of generic cases run over every transport (an in-process
//! `transport::pair`, `shm://`, `unix://`, `tcp://`) and, where it matters, both server
//! modes (a worker pool, `workers(4)`, and inline on the reader, `workers(0)`). Each
//! case × transport × mode is one `#[test]`, named `topic::case::transport_mode`.
//!
//! This file is the harness: the transports and modes, a server of the service on one
//! of them (`Fixture`), and the macros that generate one test per transport and mode.
//! The cases live in `tests/rpc/`, one module per topic:
//! - `calls`: calls and errors, many calls in flight on one connection, answers out of
//!   order, a panic in a handler or in a response's decoder;
//! - `deadlines`: deadlines carried to the server, expired budgets, late answers, a
//!   stream past its deadline;
//! - `cancel`: dropping a call or a stream stops its handler;
//! - `streams`: long streams under flow control, a stream ending with an error;
//! - `concurrency`: threads with a connection each, and threads sharing one client;
//! - `connect`: a client of another service is refused, a silent socket client holds
//!   up nobody;
//! - `shutdown`: graceful shutdown, and a short grace;
//! - `cross_process`: a server in a child process, and that server SIGKILLed;
//! - `fuzz`: the wire codec on random bytes, and a server fed random frames.
//!
//! Regressions: these cases failed when the suite was written, and the same commit
//! (e8c0378) fixed `src/rpc` and `src/transport/socket.rs` (the doc comments of the
//! tests say what went wrong):
//! - `deadlines::late_answer_keeps_the_connection_working::{unix,tcp}_*`,
//!   `deadlines::stream_deadline_stops_the_handler::{unix,tcp}_pool`,
//!   `deadlines::deadline_is_carried_to_the_server::{unix,tcp}_inline`: an answer sent
//!   after its call's deadline failed on sockets, and the server then dropped every
//!   later answer on that connection;
//! - `deadlines::stream_deadline_stops_the_handler::*_inline`,
//!   `fuzz::random_frames_regression_stream_past_its_deadline` (and, depending on the
//!   random cases, `fuzz::server_survives_random_frames_inline`): an inline streaming
//!   handler was never told its deadline passed;
//! - `deadlines::call_whose_deadline_passed_while_queued_is_not_run::*`: inline, a
//!   request's budget started when the reader read it, not when it was sent;
//! - `deadlines::call_stopped_by_its_deadline_is_counted_as_such`: it was counted as
//!   `completed`.

#[path = "../support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use shmlink::rpc::{ClientOptions, ConnectError, Server, ServerHandle, ServerStats};
use shmlink::segment::OpenError;
use shmlink::transport::{self, Connection};
use support::kv::{KvClient, KvServer, State, Svc, WAIT};
use support::unique_name;

// The scenario a child process runs (see tests/support) is in `cross_process`.
use cross_process::serve_kv;

scenarios!(serve_kv);

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

fn topts() -> transport::TransportOptions {
    transport::TransportOptions {
        max_frame: MAX_FRAME,
        ..transport::TransportOptions::default()
    }
}

/// Client options: no call of a test waits more than 20 s.
fn copts() -> ClientOptions {
    ClientOptions {
        transport: topts(),
        timeout: Duration::from_secs(20),
        reconnect: false,
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
            use $crate::{Mode, Tr};
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
            use $crate::{Mode, Tr};
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

// ---- the topics (after the macros, which they use) ----

mod calls;
mod cancel;
mod concurrency;
mod connect;
mod cross_process;
mod deadlines;
mod detached;
mod fuzz;
mod shutdown;
mod streams;

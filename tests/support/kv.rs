//! The service of the RPC tests (`tests/rpc.rs`): `Kv`, a small key-value store and
//! calculator declared with `shmlink::service!`, and its implementation [`Svc`], which
//! records what its handlers saw (start, budget, finish, why they stopped) per call tag
//! in a [`State`] that the test running the server can wait on.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmlink::rpc::wire;
use shmlink::rpc::{Context, Sink, Stop, StreamClosed};
use shmlink::sync::atomic::{AtomicU64, Ordering};

use super::report;

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

/// Method ids as the stub computes them (checked by `calls::basic_calls_and_errors` in
/// tests/rpc), for raw calls and raw frames.
pub const ADD_ID: u64 = wire::method_id(&["Kv", "add", "(i64, i64)", "i64"]);
pub const ECHO_ID: u64 = wire::method_id(&["Kv", "echo", "String", "String"]);
pub const CHECK_ID: u64 = wire::method_id(&["Kv", "check", "i64", "i64"]);
pub const COUNT_ID: u64 = wire::method_id(&["Kv", "stream", "count", "u32", "u32"]);

/// What a handler did, per tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
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
pub struct State {
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
pub const WAIT: Duration = Duration::from_secs(10);
/// How long a `slow` handler stopped by its deadline waits for the caller's cancel
/// before answering (see `Svc::slow`).
const LINGER: Duration = Duration::from_secs(1);

impl State {
    /// The state of a server in a child process: `slow` reports `started=TAG` to the
    /// parent when it begins.
    pub fn reporting_starts() -> Self {
        State {
            report_starts: true,
            ..State::default()
        }
    }

    fn record(&self, tag: u64, ev: Event) {
        lock(&self.log).events.entry(tag).or_default().push(ev);
        self.cv.notify_all();
    }

    pub fn events(&self, tag: u64) -> Vec<Event> {
        lock(&self.log)
            .events
            .get(&tag)
            .cloned()
            .unwrap_or_default()
    }

    pub fn release(&self, tag: u64) {
        lock(&self.log).released.insert(tag);
        self.cv.notify_all();
    }

    fn is_released(&self, tag: u64) -> bool {
        lock(&self.log).released.contains(&tag)
    }

    /// Waits (at most [`WAIT`]) until `pred` holds for the events of `tag`.
    pub fn wait_until(&self, tag: u64, what: &str, pred: impl Fn(&[Event]) -> bool) -> Vec<Event> {
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

    pub fn wait_started(&self, tag: u64) -> Vec<Event> {
        self.wait_until(tag, "start", |e| {
            e.iter().any(|e| matches!(e, Event::Started { .. }))
        })
    }

    pub fn wait_stopped(&self, tag: u64) -> Stop {
        let evs = self.wait_until(tag, "stop", |e| stop_of(e).is_some());
        stop_of(&evs).unwrap()
    }
}

pub fn stop_of(evs: &[Event]) -> Option<Stop> {
    evs.iter().find_map(|e| match e {
        Event::Stopped(s) | Event::SinkClosed { why: s, .. } => Some(*s),
        _ => None,
    })
}

pub fn budget_of(evs: &[Event]) -> Option<Duration> {
    evs.iter().find_map(|e| match e {
        Event::Started { budget } => *budget,
        _ => None,
    })
}

/// Tags for `slow` and `endless` calls, unique in this process.
pub fn next_tag() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The service: [`Kv`] over a [`State`].
pub struct Svc(pub Arc<State>);

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

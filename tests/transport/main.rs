//! Conformance suite of the transport layer (`shmlink::transport`): one set of generic
//! cases, each run over `shm://`, `unix://` and `tcp://` (one `#[test]` per case and
//! transport, named `topic::case::transport`), plus what is specific to one family.
//!
//! This file is the harness: the transports (`Kind`), options, a connected pair of
//! endpoints, patterned frames, an echoing peer, hellos and frames written by hand, and
//! the macros that generate one test per transport. The cases live in
//! `tests/transport/`, one module per topic:
//! - `round_trips`: frames of every size cross whole, both ways, in order, and several
//!   clients are kept apart;
//! - `deadlines`: a receive that times out loses nothing, and a deadline already past
//!   still receives or sends what it can at once;
//! - `max_frame`: a frame over the agreed maximum is refused, and both ends agree on
//!   the smaller maximum;
//! - `disconnects`: a peer that drops its connection, or only its sending half;
//! - `addresses`: listening twice, connecting to nothing, bad URLs, accept and connect
//!   timeouts;
//! - `cross_process`: echo peers in child processes, SIGKILLed peers, and TCP between
//!   two network namespaces;
//! - `shm`: what is specific to shared memory (stale listeners, connection segments);
//! - `socket`: what is specific to sockets (raw peers that break the protocol, socket
//!   files);
//! - `fuzz`: random bytes in random chunks at a Unix-socket receiver.

#[path = "../support/mod.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use shmlink::transport::{
    self, Connection, HELLO_LEN, Listener, PROTOCOL_VERSION, Receiver, Sender, TransportOptions,
    TransportRecvError,
};
use support::unique_name;

// The scenarios child processes run (see tests/support) are in `cross_process` and
// `shm`.
use cross_process::{connect_then_hang, echo_client, echo_server};
use shm::shm_listen_then_hang;

scenarios!(
    echo_server,
    echo_client,
    connect_then_hang,
    shm_listen_then_hang
);

// ---- allocation tracking (to show an oversized length prefix allocates nothing) ----

/// The system allocator, recording the largest single allocation per thread.
struct Tracking;

thread_local! {
    static LARGEST_ALLOC: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    // `try_with`: allocations during thread teardown are not recorded.
    let _ = LARGEST_ALLOC.try_with(|c| {
        if size > c.get() {
            c.set(size);
        }
    });
}

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping only touches
// a const-initialized thread-local `Cell` (no allocation, no destructor).
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc(new_size);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Runs `f` and returns its result with the largest allocation it made on this thread.
fn largest_alloc_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST_ALLOC.with(|c| c.set(0));
    let out = f();
    (out, LARGEST_ALLOC.with(Cell::get))
}

// ---- the transports ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Shm,
    Unix,
    Tcp,
}

impl Kind {
    /// What [`Connection::kind`] says.
    fn name(self) -> &'static str {
        match self {
            Kind::Shm => "shm",
            Kind::Unix => "unix",
            Kind::Tcp => "tcp",
        }
    }

    /// A fresh address to listen on (TCP: an ephemeral loopback port; the listener's
    /// `url()` has the real one).
    fn listen_url(self) -> String {
        match self {
            Kind::Shm => format!("shm://{}", unique_name("tp")),
            Kind::Unix => format!("unix://{}", sock_path("tp").display()),
            Kind::Tcp => "tcp://127.0.0.1:0".to_owned(),
        }
    }
}

/// A fresh Unix socket path under the temporary directory.
fn sock_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{}.sock", unique_name(tag)))
}

/// Removes what a listener killed at `url` left behind: its Unix socket file, or its
/// shared-memory accept queue (which must be recognized as stale).
fn remove_killed_listener(url: &str) {
    if let Some(path) = url.strip_prefix("unix://") {
        let _ = std::fs::remove_file(path);
    } else if let Some(name) = url.strip_prefix("shm://") {
        assert_eq!(
            shmlink::segment::remove_stale(name),
            Ok(true),
            "the accept queue of a killed listener is stale"
        );
    }
}

/// Generous waits: a stall fails the test instead of hanging it.
const LONG: Duration = Duration::from_secs(20);
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);
/// The deadline of a `recv` blocked while its peer is killed, and how long after the
/// `recv` began it must have noticed.
const KILL_RECV_DEADLINE: Duration = Duration::from_secs(10);
const KILL_NOTICED_WITHIN: Duration = Duration::from_secs(5);

fn soon() -> Option<Instant> {
    Some(Instant::now() + LONG)
}

fn after(d: Duration) -> Option<Instant> {
    Some(Instant::now() + d)
}

/// TransportOptions with generous connect and handshake timeouts (tests run in parallel on
/// small machines).
fn opts() -> TransportOptions {
    TransportOptions {
        connect_timeout: LONG,
        handshake_timeout: LONG,
        ..TransportOptions::default()
    }
}

fn opts_max(max_frame: usize) -> TransportOptions {
    TransportOptions {
        max_frame,
        ..opts()
    }
}

fn listen(kind: Kind, opts: &TransportOptions) -> Listener {
    let url = kind.listen_url();
    transport::listen(&url, opts).unwrap_or_else(|e| panic!("listen {url}: {e}"))
}

/// Connects a client with `client_opts` to `listener` (from another thread: connect
/// waits for the server's hello) and accepts it. Returns (server end, client end).
fn connect_pair(listener: &Listener, client_opts: &TransportOptions) -> (Connection, Connection) {
    let url = listener.url();
    let client_opts = client_opts.clone();
    let client = thread::spawn(move || transport::connect(&url, &client_opts));
    // An accept error first (the client would only time out waiting for it).
    let server = listener
        .accept(soon())
        .unwrap_or_else(|e| panic!("accept {}: {e}", listener.url()));
    let client = client.join().expect("connect thread");
    let client = client.unwrap_or_else(|e| panic!("connect {}: {e}", listener.url()));
    (server, client)
}

/// Frame `seq` of `len` bytes: its sequence number first (if it fits), then a pattern
/// that depends on both.
fn pattern(seq: u64, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len)
        .map(|i| (seq.wrapping_mul(131) as usize ^ i.wrapping_mul(7) ^ (i >> 8)) as u8)
        .collect();
    if len >= 8 {
        v[..8].copy_from_slice(&seq.to_le_bytes());
    }
    v
}

/// A mix of frame lengths up to 200 000 bytes (over the 64 KiB socket receive buffer).
fn varied_len(seq: u64) -> usize {
    let s = seq as usize;
    match seq % 10 {
        0 => 0,
        1 => 1,
        2..=5 => s.wrapping_mul(37) % 512,
        6 => 8 + s % 9,
        7 => 4096 + s % 100,
        8 => 65_536 + s % 300,
        _ => s.wrapping_mul(7919) % 200_000,
    }
}

#[track_caller]
fn assert_frame(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: got {} bytes, want {} (first difference at {at:?})",
            got.len(),
            want.len()
        );
    }
}

/// Echoes every frame back until the peer leaves; returns how many it echoed.
fn echo_loop(conn: Connection) -> Result<u64, String> {
    let (mut tx, mut rx) = conn.split();
    let mut buf = Vec::new();
    let mut n = 0u64;
    loop {
        match rx.recv(&mut buf, soon()) {
            Ok(()) => {
                tx.send(&buf, soon())
                    .map_err(|e| format!("echo send after {n}: {e}"))?;
                n += 1;
            }
            Err(TransportRecvError::Disconnected) => return Ok(n),
            Err(e) => return Err(format!("echo recv after {n}: {e}")),
        }
    }
}

fn echo(conn: Connection) -> thread::JoinHandle<Result<u64, String>> {
    thread::spawn(move || echo_loop(conn))
}

/// Sends frame `seq` of `len` bytes and checks the echo.
fn round_trip(tx: &mut Sender, rx: &mut Receiver, buf: &mut Vec<u8>, seq: u64, len: usize) {
    let frame = pattern(seq, len);
    tx.send(&frame, soon())
        .unwrap_or_else(|e| panic!("send frame {seq} ({len} bytes): {e}"));
    rx.recv(buf, soon())
        .unwrap_or_else(|e| panic!("recv echo of frame {seq} ({len} bytes): {e}"));
    assert_frame(buf, &frame, &format!("echo of frame {seq}"));
}

/// Declares `mod case { shm, unix, tcp }`, each calling `case(Kind::..)`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use $crate::Kind;
            #[test]
            #[cfg_attr(miri, ignore = "maps a shared file")]
            fn shm() {
                super::$case(Kind::Shm);
            }
            #[test]
            #[cfg_attr(miri, ignore = "opens sockets")]
            fn unix() {
                super::$case(Kind::Unix);
            }
            #[test]
            #[cfg_attr(miri, ignore = "opens sockets")]
            fn tcp() {
                super::$case(Kind::Tcp);
            }
        }
    )*};
}

/// Declares `mod case { unix, tcp }` for the socket-only cases.
macro_rules! socket_cases {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use $crate::Kind;
            #[test]
            #[cfg_attr(miri, ignore = "opens sockets")]
            fn unix() {
                super::$case(Kind::Unix);
            }
            #[test]
            #[cfg_attr(miri, ignore = "opens sockets")]
            fn tcp() {
                super::$case(Kind::Tcp);
            }
        }
    )*};
}

// ---- segments (shm) ----

/// Whether the segment `name` exists.
fn segment_exists(name: &str) -> bool {
    shmlink::segment::list()
        .expect("list segments")
        .iter()
        .any(|info| info.name.as_str() == name)
}

/// Names of the segments (of this user) that start with `prefix`.
fn segments_named(prefix: &str) -> Vec<String> {
    shmlink::segment::list()
        .expect("list segments")
        .into_iter()
        .map(|info| info.name.as_str().to_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

// ---- the wire format by hand ----

/// A hello as the protocol defines it.
fn hello_bytes(version: u16, flags: u16, max: u32) -> [u8; HELLO_LEN] {
    let mut h = [0u8; HELLO_LEN];
    h[..8].copy_from_slice(b"shmlink\0");
    h[8..10].copy_from_slice(&version.to_le_bytes());
    h[10..12].copy_from_slice(&flags.to_le_bytes());
    h[12..16].copy_from_slice(&max.to_le_bytes());
    h
}

fn good_hello(max: u32) -> [u8; HELLO_LEN] {
    hello_bytes(PROTOCOL_VERSION, 0, max)
}

fn frame_bytes(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

// ---- the topics (after the macros, which they use) ----

mod addresses;
mod cross_process;
mod deadlines;
mod disconnects;
mod fuzz;
mod max_frame;
mod round_trips;
mod shm;
mod socket;

//! Conformance suite of the transport layer (`shmlink::transport`): one set of generic
//! cases, each run over `shm://`, `unix://` and `tcp://` (one `#[test]` per case and
//! transport, named `case::transport`), plus what is specific to one family.
//!
//! What is checked, for every transport:
//! - frames of 0, 1, 7, 8, 4096 bytes and exactly the maximum cross whole, both ways;
//!   2000 frames each way at once keep their order; several clients are kept apart;
//! - a receive that times out loses nothing (also in the middle of a large frame), and
//!   a deadline already past still takes a frame that has arrived / sends into room;
//! - a frame over the agreed maximum is refused on send; both ends agree on the smaller
//!   maximum (1000 vs 1 MiB either way, and a tiny maximum of 1 byte);
//! - a peer that drops its connection: every frame it sent arrives, then
//!   `Disconnected`, and sends fail with `Disconnected`; a peer that drops only its
//!   sending half ends our stream the same way (half-close), its receiving half works on;
//! - listening twice is `InUse`, connecting to nothing is `NoListener`, bad URLs are
//!   `BadAddress`, accept and connect time out;
//! - across processes: an echo server in a child, an echo client in a child, and a
//!   SIGKILLed server or client ends the blocked `recv` of the parent long before its
//!   deadline (and the killed peer's frames are drained first).
//!
//! Shared memory: a SIGKILLed listener is `NoListener` and its name is taken over; no
//! `NAME.*` connection segment outlives connection set-up or a client killed before
//! it was accepted. Sockets: raw peers that send a bad hello, an oversized length
//! prefix, half a frame; a stale Unix socket file; a proptest throwing random bytes in
//! random chunks at a Unix-socket receiver. TCP also runs between two network
//! namespaces joined by a veth pair (when `ip netns` is available).

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use proptest::prelude::*;
use shmlink::transport::{
    self, AcceptError, ConnectError, Connection, FrameRecv, FrameSend, HELLO_LEN, HandshakeError,
    ListenError, Listener, Options, PROTOCOL_VERSION, Receiver, RecvError, SendError, Sender,
};
use support::{Child, Scenario, arg, report, unique_name};

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

/// Options with generous connect and handshake timeouts (tests run in parallel on
/// small machines).
fn opts() -> Options {
    Options {
        connect_timeout: LONG,
        handshake_timeout: LONG,
        ..Options::default()
    }
}

fn opts_max(max_frame: usize) -> Options {
    Options {
        max_frame,
        ..opts()
    }
}

fn listen(kind: Kind, opts: &Options) -> Listener {
    let url = kind.listen_url();
    transport::listen(&url, opts).unwrap_or_else(|e| panic!("listen {url}: {e}"))
}

/// Connects a client with `client_opts` to `listener` (from another thread: connect
/// waits for the server's hello) and accepts it. Returns (server end, client end).
fn connect_pair(listener: &Listener, client_opts: &Options) -> (Connection, Connection) {
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
            Err(RecvError::Disconnected) => return Ok(n),
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
            use super::Kind;
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
            use super::Kind;
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

conformance!(
    round_trip_sizes_both_ways,
    many_frames_keep_order_both_ways,
    several_clients_are_kept_apart,
    recv_timeout_loses_nothing,
    recv_timeouts_inside_a_large_frame_lose_nothing,
    past_deadline_still_takes_an_arrived_frame,
    past_deadline_still_sends_into_room,
    over_max_send_is_too_large,
    max_frame_agreement,
    tiny_max_frame,
    peer_drop_is_drained_then_disconnected,
    dropping_the_sender_half_ends_the_peers_stream,
    listen_twice_is_in_use,
    connect_to_nothing_is_no_listener,
    accept_and_connect_time_out,
    cross_process_echo_server,
    cross_process_echo_client,
    killed_server_ends_blocked_recv,
    killed_client_ends_blocked_recv,
    killed_peer_frames_are_drained,
);

socket_cases!(
    bad_hellos_are_typed_and_the_listener_survives,
    client_refuses_a_bad_server_hello,
    oversized_length_prefix_is_too_large_at_once,
    half_frame_then_close_is_malformed,
    half_frame_then_reset_is_malformed,
    partial_frame_survives_a_timeout,
);

// ---- 1. round trips and order ----

fn round_trip_sizes_both_ways(kind: Kind) {
    let opts = opts();
    let max = opts.max_frame;
    let listener = listen(kind, &opts);
    // After the maximum, 0 and 1: `recv` replaces the buffer's contents.
    let sizes = [0, 1, 7, 8, 4096, max, 0, 1];
    for client_initiates in [false, true] {
        let (server, client) = connect_pair(&listener, &opts);
        for c in [&server, &client] {
            assert_eq!(c.max_frame(), max, "{kind:?}");
            assert_eq!(c.kind(), kind.name());
        }
        let (mine, theirs) = if client_initiates {
            (client, server)
        } else {
            (server, client)
        };
        let echoer = echo(theirs);
        let (mut tx, mut rx) = mine.split();
        assert_eq!(FrameSend::max_frame(&tx), max);
        assert_eq!(FrameRecv::max_frame(&rx), max);
        let mut buf = Vec::new();
        for (seq, &len) in sizes.iter().enumerate() {
            round_trip(&mut tx, &mut rx, &mut buf, seq as u64, len);
            assert_eq!(buf.len(), len, "{kind:?}: frame {seq}");
        }
        drop((tx, rx));
        assert_eq!(
            echoer.join().unwrap(),
            Ok(sizes.len() as u64),
            "{kind:?}: the echoing side (client initiates: {client_initiates})"
        );
    }
}

/// Sends frames `0..count` (salted) from a thread; returns the sender when done.
fn send_stream(mut tx: Sender, count: u64, salt: u64) -> thread::JoinHandle<Sender> {
    thread::spawn(move || {
        for seq in 0..count {
            let frame = pattern(salt + seq, stream_len(seq));
            tx.send(&frame, soon())
                .unwrap_or_else(|e| panic!("stream send {seq}: {e}"));
        }
        tx
    })
}

fn stream_len(seq: u64) -> usize {
    if seq % 97 == 13 {
        70_000 + seq as usize % 50 // over the socket receiver's 64 KiB buffer
    } else {
        seq as usize % 300
    }
}

/// Receives frames `0..count` (salted), checking each; returns the receiver.
fn check_stream(mut rx: Receiver, count: u64, salt: u64) -> thread::JoinHandle<Receiver> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        for seq in 0..count {
            rx.recv(&mut buf, soon())
                .unwrap_or_else(|e| panic!("stream recv {seq}: {e}"));
            assert_frame(
                &buf,
                &pattern(salt + seq, stream_len(seq)),
                &format!("frame {seq}: lost, reordered or damaged"),
            );
        }
        rx
    })
}

fn many_frames_keep_order_both_ways(kind: Kind) {
    const COUNT: u64 = 2000;
    let opts = opts();
    let listener = listen(kind, &opts);
    let (server, client) = connect_pair(&listener, &opts);
    let (s_tx, s_rx) = server.split();
    let (c_tx, c_rx) = client.split();
    // Both directions at once, each half on its own thread.
    let up = send_stream(c_tx, COUNT, 1_000_000);
    let down = send_stream(s_tx, COUNT, 2_000_000);
    let up_check = check_stream(s_rx, COUNT, 1_000_000);
    let down_check = check_stream(c_rx, COUNT, 2_000_000);
    let (c_tx, s_tx) = (up.join().unwrap(), down.join().unwrap());
    let (mut s_rx, mut c_rx) = (up_check.join().unwrap(), down_check.join().unwrap());
    // Nothing extra arrived.
    let mut buf = Vec::new();
    let short = after(Duration::from_millis(50));
    assert_eq!(s_rx.recv(&mut buf, short), Err(RecvError::Timeout));
    assert_eq!(c_rx.recv(&mut buf, short), Err(RecvError::Timeout));
    drop((c_tx, s_tx));
}

fn several_clients_are_kept_apart(kind: Kind) {
    const CLIENTS: u64 = 4;
    const FRAMES: u64 = 50;
    let opts = opts();
    let listener = listen(kind, &opts);
    let url = listener.url();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let url = url.clone();
            let opts = opts.clone();
            thread::spawn(move || {
                let conn = transport::connect(&url, &opts)
                    .unwrap_or_else(|e| panic!("client {id} connect: {e}"));
                let (mut tx, mut rx) = conn.split();
                let mut buf = Vec::new();
                for k in 0..FRAMES {
                    round_trip(&mut tx, &mut rx, &mut buf, id * 1000 + k, 10 + k as usize);
                }
            })
        })
        .collect();
    let servers: Vec<_> = (0..CLIENTS)
        .map(|k| {
            echo(
                listener
                    .accept(soon())
                    .unwrap_or_else(|e| panic!("accept {k}: {e}")),
            )
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
    for s in servers {
        assert_eq!(
            s.join().unwrap(),
            Ok(FRAMES),
            "{kind:?}: each server end echoed its client"
        );
    }
}

// ---- 2. deadlines ----

fn recv_timeout_loses_nothing(kind: Kind) {
    let opts = opts();
    let listener = listen(kind, &opts);
    let (server, client) = connect_pair(&listener, &opts);
    let (mut s_tx, mut s_rx) = server.split();
    let (mut c_tx, mut c_rx) = client.split();
    let mut buf = b"left over".to_vec();
    for _ in 0..3 {
        assert_eq!(
            s_rx.recv(&mut buf, after(Duration::from_millis(30))),
            Err(RecvError::Timeout),
            "{kind:?}: no data yet"
        );
    }
    let frame = pattern(1, 5000);
    c_tx.send(&frame, soon()).unwrap();
    s_rx.recv(&mut buf, soon()).unwrap();
    assert_frame(&buf, &frame, "frame sent after a timed-out recv");
    // The other direction too.
    assert_eq!(
        c_rx.recv(&mut buf, after(Duration::from_millis(30))),
        Err(RecvError::Timeout)
    );
    let frame = pattern(2, 3);
    s_tx.send(&frame, soon()).unwrap();
    c_rx.recv(&mut buf, soon()).unwrap();
    assert_frame(&buf, &frame, "frame to the client after a timed-out recv");
}

fn recv_timeouts_inside_a_large_frame_lose_nothing(kind: Kind) {
    let opts = opts();
    let max = opts.max_frame;
    let listener = listen(kind, &opts);
    let (server, client) = connect_pair(&listener, &opts);
    let (_s_tx, mut s_rx) = server.split();
    let (c_tx, _c_rx) = client.split();
    // Whole frames of the maximum size, sent while the receiver keeps timing out after
    // a millisecond (sockets time out in the middle of a frame and resume later).
    let lens = [max, 3, max - 1, 0, 100_000];
    let sender = thread::spawn(move || {
        let mut tx = c_tx;
        for (seq, &len) in lens.iter().enumerate() {
            tx.send(&pattern(seq as u64, len), soon()).expect("send");
        }
        tx
    });
    let mut buf = Vec::new();
    let mut timeouts = 0u64;
    let started = Instant::now();
    for (seq, &len) in lens.iter().enumerate() {
        loop {
            match s_rx.recv(&mut buf, after(Duration::from_millis(1))) {
                Ok(()) => break,
                Err(RecvError::Timeout) => timeouts += 1,
                Err(e) => panic!("{kind:?}: frame {seq}: {e}"),
            }
            assert!(started.elapsed() < LONG, "{kind:?}: stalled at frame {seq}");
        }
        assert_frame(&buf, &pattern(seq as u64, len), &format!("frame {seq}"));
    }
    println!("{kind:?}: {timeouts} timeouts while receiving");
    drop(sender.join().unwrap());
}

/// Receives with a deadline that already passed, retrying (with pauses) until the frame
/// that was sent is taken; `None` if it never is.
fn recv_with_past_deadline(rx: &mut Receiver, buf: &mut Vec<u8>) -> Option<Result<(), RecvError>> {
    for _ in 0..200 {
        match rx.recv(buf, Some(Instant::now())) {
            Err(RecvError::Timeout) => thread::sleep(Duration::from_millis(10)),
            other => return Some(other),
        }
    }
    None
}

fn past_deadline_still_takes_an_arrived_frame(kind: Kind) {
    let opts = opts();
    let listener = listen(kind, &opts);
    let (server, client) = connect_pair(&listener, &opts);
    let (_s_tx, mut s_rx) = server.split();
    let (mut c_tx, _c_rx) = client.split();
    let mut buf = Vec::new();
    assert_eq!(
        s_rx.recv(&mut buf, Some(Instant::now())),
        Err(RecvError::Timeout),
        "{kind:?}: nothing sent yet"
    );
    let frame = pattern(7, 100);
    c_tx.send(&frame, soon()).unwrap();
    // A deadline in the past is a non-blocking receive: it must still take a frame
    // that is there (two seconds of retries: the frame has long arrived).
    let got = recv_with_past_deadline(&mut s_rx, &mut buf);
    assert_eq!(
        got,
        Some(Ok(())),
        "{kind:?}: recv with a past deadline never took a frame that had arrived"
    );
    assert_frame(&buf, &frame, "frame taken with a past deadline");
}

fn past_deadline_still_sends_into_room(kind: Kind) {
    let opts = opts();
    let listener = listen(kind, &opts);
    let (server, client) = connect_pair(&listener, &opts);
    let (_s_tx, mut s_rx) = server.split();
    let (mut c_tx, _c_rx) = client.split();
    // An idle connection has room for a small frame: a send whose deadline already
    // passed is a non-blocking send and must go through.
    let frame = pattern(9, 64);
    assert_eq!(
        c_tx.send(&frame, Some(Instant::now())),
        Ok(()),
        "{kind:?}: send with a past deadline into an empty connection"
    );
    let mut buf = Vec::new();
    s_rx.recv(&mut buf, soon()).unwrap();
    assert_frame(&buf, &frame, "frame sent with a past deadline");
}

// ---- 3. maximum frame ----

fn over_max_send_is_too_large(kind: Kind) {
    let opts = opts();
    let max = opts.max_frame;
    let listener = listen(kind, &opts);
    let (server, client) = connect_pair(&listener, &opts);
    let (mut s_tx, mut s_rx) = server.split();
    let (mut c_tx, mut c_rx) = client.split();
    let big = vec![0xAB; max + 1];
    let too_large = Err(SendError::TooLarge { len: max + 1, max });
    assert_eq!(c_tx.send(&big, soon()), too_large, "{kind:?}: client");
    assert_eq!(s_tx.send(&big, soon()), too_large, "{kind:?}: server");
    // Nothing was sent: the connection carries on.
    let mut buf = Vec::new();
    c_tx.send(b"after", soon()).unwrap();
    s_rx.recv(&mut buf, soon()).unwrap();
    assert_eq!(buf, b"after");
    s_tx.send(b"back", soon()).unwrap();
    c_rx.recv(&mut buf, soon()).unwrap();
    assert_eq!(buf, b"back");
}

/// Both ends of a connection between a listener with `server_max` and a client with
/// `client_max` use `want`, and enforce it both ways.
fn check_agreement(kind: Kind, server_max: usize, client_max: usize, want: usize) {
    let listener = listen(kind, &opts_max(server_max));
    let (server, client) = connect_pair(&listener, &opts_max(client_max));
    let case = format!("{kind:?} server {server_max} client {client_max}");
    assert_eq!(server.max_frame(), want, "{case}: server");
    assert_eq!(client.max_frame(), want, "{case}: client");
    let (mut s_tx, mut s_rx) = server.split();
    let (mut c_tx, mut c_rx) = client.split();
    for m in [
        FrameSend::max_frame(&s_tx),
        FrameRecv::max_frame(&s_rx),
        FrameSend::max_frame(&c_tx),
        FrameRecv::max_frame(&c_rx),
    ] {
        assert_eq!(m, want, "{case}: halves");
    }
    let over = vec![1u8; want + 1];
    let refused = Err(SendError::TooLarge {
        len: want + 1,
        max: want,
    });
    assert_eq!(c_tx.send(&over, soon()), refused, "{case}: client send");
    assert_eq!(s_tx.send(&over, soon()), refused, "{case}: server send");
    let mut buf = Vec::new();
    for len in [0, want] {
        let frame = pattern(len as u64, len);
        c_tx.send(&frame, soon()).unwrap();
        s_rx.recv(&mut buf, soon()).unwrap();
        assert_frame(&buf, &frame, &format!("{case}: {len} bytes up"));
        s_tx.send(&frame, soon()).unwrap();
        c_rx.recv(&mut buf, soon()).unwrap();
        assert_frame(&buf, &frame, &format!("{case}: {len} bytes down"));
    }
}

fn max_frame_agreement(kind: Kind) {
    check_agreement(kind, 1 << 20, 1000, 1000);
    check_agreement(kind, 1000, 1 << 20, 1000);
}

fn tiny_max_frame(kind: Kind) {
    // The hello (16 bytes) is longer than the frames: it must still get across.
    check_agreement(kind, 1 << 20, 1, 1);
    check_agreement(kind, 1, 1 << 20, 1);
    check_agreement(kind, 15, 15, 15);
}

// ---- 4. disconnects ----

fn peer_drop_is_drained_then_disconnected(kind: Kind) {
    const FRAMES: u64 = 100;
    let opts = opts();
    let listener = listen(kind, &opts);
    for server_drops in [false, true] {
        let case = format!("{kind:?}, server drops: {server_drops}");
        let (server, client) = connect_pair(&listener, &opts);
        let (dropper, survivor) = if server_drops {
            (server, client)
        } else {
            (client, server)
        };
        let leaver = thread::spawn(move || {
            let (mut tx, rx) = dropper.split();
            for seq in 0..FRAMES {
                tx.send(&pattern(seq, varied_len(seq) % 5000), soon())
                    .expect("send before leaving");
            }
            drop((tx, rx));
        });
        let (mut tx, mut rx) = survivor.split();
        let mut buf = Vec::new();
        for seq in 0..FRAMES {
            rx.recv(&mut buf, soon())
                .unwrap_or_else(|e| panic!("{case}: frame {seq} sent before the drop: {e}"));
            assert_frame(&buf, &pattern(seq, varied_len(seq) % 5000), &case);
        }
        leaver.join().unwrap();
        assert_eq!(
            rx.recv(&mut buf, soon()),
            Err(RecvError::Disconnected),
            "{case}"
        );
        assert_eq!(
            rx.recv(&mut buf, soon()),
            Err(RecvError::Disconnected),
            "{case}: again"
        );
        // Sends fail too, once buffers (socket buffers, the shared-memory ring) are
        // full at the latest.
        let chunk = vec![5u8; 64 * 1024];
        let mut sent = 0;
        let err = loop {
            match tx.send(&chunk, soon()) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(
                sent < 2000,
                "{case}: 2000 sends to a departed peer succeeded"
            );
        };
        assert_eq!(err, SendError::Disconnected, "{case}: after {sent} sends");
    }
}

fn dropping_the_sender_half_ends_the_peers_stream(kind: Kind) {
    let opts = opts();
    let listener = listen(kind, &opts);
    let (server, client) = connect_pair(&listener, &opts);
    let (mut s_tx, mut s_rx) = server.split();
    let (mut c_tx, mut c_rx) = client.split();
    c_tx.send(b"last words", soon()).unwrap();
    // The client stops sending but keeps receiving.
    drop(c_tx);
    let mut buf = Vec::new();
    s_rx.recv(&mut buf, soon()).unwrap();
    assert_eq!(buf, b"last words");
    // Nothing more can come: the wait ends (it must not last until the deadline).
    assert_eq!(
        s_rx.recv(&mut buf, after(Duration::from_secs(3))),
        Err(RecvError::Disconnected),
        "{kind:?}: the peer dropped its sending half"
    );
    // The other direction still works.
    s_tx.send(b"still here", soon()).unwrap();
    c_rx.recv(&mut buf, soon()).unwrap();
    assert_eq!(buf, b"still here");
}

// ---- 5. addresses ----

fn listen_twice_is_in_use(kind: Kind) {
    let opts = opts();
    let first = listen(kind, &opts);
    let url = first.url();
    assert_eq!(
        transport::listen(&url, &opts).unwrap_err(),
        ListenError::InUse,
        "{url}"
    );
    // The first listener is unharmed.
    let (server, client) = connect_pair(&first, &opts);
    let echoer = echo(server);
    let (mut tx, mut rx) = client.split();
    round_trip(&mut tx, &mut rx, &mut Vec::new(), 1, 10);
    drop((tx, rx));
    assert_eq!(echoer.join().unwrap(), Ok(1));
    if kind != Kind::Tcp {
        // The name is ours: free again once the listener is gone. (Not for TCP: the
        // ephemeral port may be reused by anyone meanwhile.)
        drop(first);
        let again = transport::listen(&url, &opts).expect("listen again after drop");
        assert_eq!(again.url(), url);
    }
}

fn connect_to_nothing_is_no_listener(kind: Kind) {
    let opts = Options {
        connect_timeout: Duration::from_secs(5),
        ..opts()
    };
    if kind != Kind::Tcp {
        // A name nobody ever listened on.
        let url = kind.listen_url();
        assert_eq!(
            transport::connect(&url, &opts).unwrap_err(),
            ConnectError::NoListener,
            "{url}"
        );
    }
    // An address whose listener is gone.
    let listener = listen(kind, &opts);
    let url = listener.url();
    drop(listener);
    assert_eq!(
        transport::connect(&url, &opts).unwrap_err(),
        ConnectError::NoListener,
        "{url} after its listener was dropped"
    );
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn bad_urls_are_bad_address() {
    let long = format!("shm://{}", "x".repeat(161));
    let bad = [
        "",
        "http://example.com",
        "shm://",
        "shm://bad/name",
        "shm://.hidden",
        "shm://spa ce",
        long.as_str(),
        "unix://",
        "unix://relative/path",
        "unix:///",
        "tcp://nohost",
        "tcp://127.0.0.1:99999",
        "tcp://:80",
        "tcp://127.0.0.1:",
        "tcp://127.0.0.1:80/path",
        "SHM://upper",
    ];
    let opts = opts();
    for url in bad {
        match transport::listen(url, &opts) {
            Err(ListenError::BadAddress(e)) => assert_eq!(e.url, url),
            other => panic!("listen {url:?}: {other:?}"),
        }
        match transport::connect(url, &opts) {
            Err(ConnectError::BadAddress(e)) => assert_eq!(e.url, url),
            other => panic!("connect {url:?}: {other:?}"),
        }
    }
    // The longest valid shm name is accepted.
    let name = unique_name("max");
    let url = format!("shm://{name}{}", "x".repeat(160 - name.len()));
    let listener = transport::listen(&url, &opts).expect("160-byte shm name");
    assert_eq!(listener.url(), url);
}

fn accept_and_connect_time_out(kind: Kind) {
    let opts = opts();
    let listener = listen(kind, &opts);
    assert_eq!(
        listener
            .accept(after(Duration::from_millis(50)))
            .unwrap_err(),
        AcceptError::Timeout,
        "{kind:?}: no client"
    );
    // A client whose server never accepts gives up at its connect timeout.
    let impatient = Options {
        connect_timeout: Duration::from_millis(300),
        ..opts.clone()
    };
    assert_eq!(
        transport::connect(&listener.url(), &impatient).unwrap_err(),
        ConnectError::Timeout,
        "{kind:?}: nobody accepts"
    );
    // The listener survives the client that gave up: accept either skips it or hands
    // out a connection that is already disconnected; a real client then works.
    if let Ok(conn) = listener.accept(after(Duration::from_millis(200))) {
        let (_tx, mut rx) = conn.split();
        assert_eq!(
            rx.recv(&mut Vec::new(), soon()),
            Err(RecvError::Disconnected),
            "{kind:?}: connection of the client that gave up"
        );
    }
    let (server, client) = connect_pair(&listener, &opts);
    let echoer = echo(server);
    let (mut tx, mut rx) = client.split();
    round_trip(&mut tx, &mut rx, &mut Vec::new(), 3, 33);
    drop((tx, rx));
    assert_eq!(echoer.join().unwrap(), Ok(1));
}

// ---- 6. across processes ----

/// Child: listens on `url`, reports `listening=URL` and its network namespace, echoes
/// one connection until the client leaves, reports `echoed=N`.
fn echo_server() {
    let listener = transport::listen(&arg("url"), &opts()).expect("listen");
    report(format!("netns={}", netns_id()));
    report(format!("listening={}", listener.url()));
    let conn = listener
        .accept(Some(Instant::now() + CHILD_TIMEOUT))
        .expect("accept");
    let n = echo_loop(conn).expect("echo");
    report(format!("echoed={n}"));
}

/// Child: connects to `url`, round-trips `count` frames of varied sizes, reports
/// `ok=N`, the connection's kind and maximum frame, and its network namespace.
fn echo_client() {
    let count: u64 = arg("count").parse().unwrap();
    report(format!("netns={}", netns_id()));
    let conn = transport::connect(&arg("url"), &opts()).expect("connect");
    report(format!("kind={}", conn.kind()));
    report(format!("max_frame={}", conn.max_frame()));
    let (mut tx, mut rx) = conn.split();
    let mut buf = Vec::new();
    for seq in 0..count {
        round_trip(&mut tx, &mut rx, &mut buf, seq, varied_len(seq));
    }
    report(format!("ok={count}"));
}

/// The frames a `connect_then_hang` child sends: small, so that all of them fit in the
/// socket buffers while nobody reads.
fn hang_frame(seq: u64) -> Vec<u8> {
    pattern(seq, varied_len(seq) % 2000)
}

/// Child: reports `connecting`, connects to `url` (with `connect_timeout_ms`), sends
/// frames `hang_frame(0..count)`, reports `sent`, then waits to be killed.
fn connect_then_hang() {
    let count: u64 = arg("count").parse().unwrap();
    let opts = Options {
        connect_timeout: Duration::from_millis(arg("connect_timeout_ms").parse().unwrap()),
        ..opts()
    };
    report("connecting");
    let conn = transport::connect(&arg("url"), &opts).expect("connect");
    let (mut tx, rx) = conn.split();
    for seq in 0..count {
        tx.send(&hang_frame(seq), soon()).expect("send");
    }
    report("sent");
    thread::sleep(Duration::from_secs(120));
    drop((tx, rx));
}

/// Child: listens on `url`, reports `ready`, waits to be killed.
fn shm_listen_then_hang() {
    let listener = transport::listen(&arg("url"), &opts()).expect("listen");
    report("ready");
    thread::sleep(Duration::from_secs(120));
    drop(listener);
}

/// This process's network namespace (`net:[INODE]`).
fn netns_id() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// Starts an echo server child on a fresh address of `kind`; returns it and its URL.
fn spawn_echo_server(kind: Kind) -> (Child, String) {
    let mut server = Scenario::new("echo_server")
        .arg("url", kind.listen_url())
        .spawn();
    let line = server.wait_for("listening=", CHILD_TIMEOUT);
    let url = line["listening=".len()..].to_owned();
    (server, url)
}

fn cross_process_echo_server(kind: Kind) {
    const FRAMES: u64 = 1000;
    let (server, url) = spawn_echo_server(kind);
    let conn = transport::connect(&url, &opts()).expect("connect to the child");
    assert_eq!(conn.kind(), kind.name());
    let (mut tx, mut rx) = conn.split();
    let mut buf = Vec::new();
    for seq in 0..FRAMES {
        round_trip(&mut tx, &mut rx, &mut buf, seq, varied_len(seq));
    }
    drop((tx, rx));
    let done = server.success(CHILD_TIMEOUT);
    if kind == Kind::Shm {
        let name = url.trim_start_matches("shm://");
        assert!(!segment_exists(name), "the child's listener cleaned up");
    }
    assert_eq!(
        done.values().get("echoed").map(String::as_str),
        Some("1000"),
        "{kind:?}: {:?}",
        done.reports
    );
}

fn cross_process_echo_client(kind: Kind) {
    const FRAMES: u64 = 300;
    let opts = opts();
    let listener = listen(kind, &opts);
    let mut client = Scenario::new("echo_client")
        .arg("url", listener.url())
        .arg("count", FRAMES)
        .spawn();
    let conn = listener.accept(soon()).expect("accept the child");
    if kind == Kind::Shm {
        // Connection set up (the child's connect returned, it reports the kind): no
        // connection segment is left named.
        client.wait_for("kind=", CHILD_TIMEOUT);
        let prefix = format!("{}.", listener.url().trim_start_matches("shm://"));
        assert_eq!(segments_named(&prefix), Vec::<String>::new());
    }
    let echoer = echo(conn);
    let done = client.success(CHILD_TIMEOUT);
    let values = done.values();
    assert_eq!(values.get("ok").map(String::as_str), Some("300"));
    assert_eq!(values.get("kind").map(String::as_str), Some(kind.name()));
    assert_eq!(
        values.get("max_frame"),
        Some(&opts.max_frame.to_string()),
        "{kind:?}"
    );
    assert_eq!(
        echoer.join().unwrap(),
        Ok(FRAMES),
        "{kind:?}: parent echoed"
    );
}

/// SIGKILLs `pid` after `delay` from another thread; joining gives when.
fn sigkill_after(pid: u32, delay: Duration) -> thread::JoinHandle<Instant> {
    thread::spawn(move || {
        thread::sleep(delay);
        let at = Instant::now();
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill");
        at
    })
}

/// Blocks in `recv` (deadline [`KILL_RECV_DEADLINE`]) while the peer process `child` is
/// SIGKILLed; the `recv` must end with `Disconnected` well before the deadline.
fn recv_while_peer_killed(kind: Kind, rx: &mut Receiver, child: Child, who: &str) {
    let killer = sigkill_after(child.pid(), Duration::from_millis(300));
    let began = Instant::now();
    let got = rx.recv(&mut Vec::new(), Some(began + KILL_RECV_DEADLINE));
    let took = began.elapsed();
    let killed_at = killer.join().unwrap();
    println!(
        "{kind:?}: recv noticed the killed {who} {:?} after the SIGKILL",
        Instant::now().saturating_duration_since(killed_at)
    );
    assert_eq!(got, Err(RecvError::Disconnected), "{kind:?}: {who} killed");
    assert!(
        took < KILL_NOTICED_WITHIN,
        "{kind:?}: recv took {took:?} to notice the killed {who}"
    );
    let done = child.wait(CHILD_TIMEOUT);
    assert_eq!(done.status.signal(), Some(Signal::SIGKILL as i32), "{who}");
}

fn killed_server_ends_blocked_recv(kind: Kind) {
    let (server, url) = spawn_echo_server(kind);
    let conn = transport::connect(&url, &opts()).expect("connect to the child");
    let (mut tx, mut rx) = conn.split();
    // The child is serving (and then blocked in its own recv).
    round_trip(&mut tx, &mut rx, &mut Vec::new(), 1, 100);
    recv_while_peer_killed(kind, &mut rx, server, "server");
    remove_killed_listener(&url);
}

/// Starts a `connect_then_hang` child on `listener` that sends `count` frames.
fn spawn_hanging_client(listener: &Listener, count: u64) -> Child {
    Scenario::new("connect_then_hang")
        .arg("url", listener.url())
        .arg("count", count)
        .arg("connect_timeout_ms", CHILD_TIMEOUT.as_millis())
        .spawn()
}

fn killed_client_ends_blocked_recv(kind: Kind) {
    let listener = listen(kind, &opts());
    let mut client = spawn_hanging_client(&listener, 1);
    let conn = listener.accept(soon()).expect("accept the child");
    let (_tx, mut rx) = conn.split();
    let mut buf = Vec::new();
    rx.recv(&mut buf, soon()).expect("the child's frame");
    assert_frame(&buf, &hang_frame(0), "child's frame");
    client.wait_for("sent", CHILD_TIMEOUT);
    recv_while_peer_killed(kind, &mut rx, client, "client");
}

fn killed_peer_frames_are_drained(kind: Kind) {
    const FRAMES: u64 = 20;
    let opts = opts();
    let listener = listen(kind, &opts);
    let mut client = spawn_hanging_client(&listener, FRAMES);
    let conn = listener.accept(soon()).expect("accept the child");
    let (_tx, mut rx) = conn.split();
    client.wait_for("sent", CHILD_TIMEOUT);
    let status = client.kill();
    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
    // Everything it sent before it died arrives, then the end.
    let mut buf = Vec::new();
    for seq in 0..FRAMES {
        rx.recv(&mut buf, soon())
            .unwrap_or_else(|e| panic!("{kind:?}: frame {seq} of the killed client: {e}"));
        assert_frame(&buf, &hang_frame(seq), "frame of the killed client");
    }
    assert_eq!(
        rx.recv(&mut buf, soon()),
        Err(RecvError::Disconnected),
        "{kind:?}"
    );
}

// ---- 7. shared memory specifics ----

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

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn shm_killed_listener_is_no_listener_and_taken_over() {
    let name = unique_name("stale-listener");
    let url = format!("shm://{name}");
    let mut child = Scenario::new("shm_listen_then_hang")
        .arg("url", &url)
        .spawn();
    child.wait_for("ready", CHILD_TIMEOUT);
    // While it lives, the name is taken.
    assert_eq!(
        transport::listen(&url, &opts()).unwrap_err(),
        ListenError::InUse
    );
    let status = child.kill();
    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
    assert!(segment_exists(&name), "the queue is left behind");
    assert_eq!(
        transport::connect(&url, &opts()).unwrap_err(),
        ConnectError::NoListener,
        "connect to a killed listener"
    );
    let listener = transport::listen(&url, &opts()).expect("take over the stale name");
    assert_eq!(listener.url(), url);
    let (server, client) = connect_pair(&listener, &opts());
    let echoer = echo(server);
    let (mut tx, mut rx) = client.split();
    round_trip(&mut tx, &mut rx, &mut Vec::new(), 5, 500);
    drop((tx, rx));
    assert_eq!(echoer.join().unwrap(), Ok(1));
    drop(listener);
    assert!(!segment_exists(&name), "listener dropped");
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn shm_no_connection_segment_outlives_set_up() {
    let opts = opts();
    let listener = listen(Kind::Shm, &opts);
    let name = listener.url().trim_start_matches("shm://").to_owned();
    let prefix = format!("{name}.");
    assert!(segment_exists(&name), "the accept queue");
    let (server, client) = connect_pair(&listener, &opts);
    assert_eq!(
        segments_named(&prefix),
        Vec::<String>::new(),
        "after set-up"
    );
    let (server2, client2) = connect_pair(&listener, &opts);
    assert_eq!(
        segments_named(&prefix),
        Vec::<String>::new(),
        "after a second one"
    );
    // The connections work without their names.
    for (s, c) in [(server, client), (server2, client2)] {
        let echoer = echo(s);
        let (mut tx, mut rx) = c.split();
        round_trip(&mut tx, &mut rx, &mut Vec::new(), 8, 8000);
        drop((tx, rx));
        assert_eq!(echoer.join().unwrap(), Ok(1));
    }
    drop(listener);
    assert!(
        !segment_exists(&name),
        "the accept queue is gone with its listener"
    );
    assert_eq!(segments_named(&prefix), Vec::<String>::new(), "all gone");
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn shm_client_killed_before_accept_leaves_nothing() {
    let opts = opts();
    let listener = listen(Kind::Shm, &opts);
    let url = listener.url();
    let name = url.trim_start_matches("shm://").to_owned();
    let prefix = format!("{name}.");
    let mut client = spawn_hanging_client(&listener, 0);
    client.wait_for("connecting", CHILD_TIMEOUT);
    // Wait until the child's connection segment exists (it then waits for an accept
    // that does not come), then kill it.
    let began = Instant::now();
    while !shmlink::segment::list().unwrap().iter().any(|i| {
        i.name.as_str().starts_with(&prefix) && i.status == shmlink::segment::Status::Alive
    }) {
        assert!(
            began.elapsed() < LONG,
            "the child never created its connection"
        );
        thread::sleep(Duration::from_millis(5));
    }
    client.kill();
    // The dead client's request is skipped: no connection comes out of it.
    match listener.accept(after(Duration::from_millis(500))) {
        Err(AcceptError::Timeout) => {}
        other => panic!("accept of a killed client: {other:?}"),
    }
    // Whatever it left is gone once the listener is bound again (if the accept above
    // did not already remove it).
    drop(listener);
    let listener = transport::listen(&url, &opts).expect("listen again");
    assert_eq!(segments_named(&prefix), Vec::<String>::new());
    // And the listener serves.
    let (server, client) = connect_pair(&listener, &opts);
    let echoer = echo(server);
    let (mut tx, mut rx) = client.split();
    round_trip(&mut tx, &mut rx, &mut Vec::new(), 4, 44);
    drop((tx, rx));
    assert_eq!(echoer.join().unwrap(), Ok(1));
}

// ---- 8. socket specifics: raw peers ----

/// A plain socket speaking (or not) the protocol by hand.
#[derive(Debug)]
enum RawPeer {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl RawPeer {
    fn connect(url: &str) -> RawPeer {
        if let Some(path) = url.strip_prefix("unix://") {
            RawPeer::Unix(UnixStream::connect(path).expect("raw unix connect"))
        } else if let Some(hp) = url.strip_prefix("tcp://") {
            RawPeer::Tcp(TcpStream::connect(hp).expect("raw tcp connect"))
        } else {
            panic!("not a socket URL: {url}")
        }
    }

    fn shutdown_write(&self) {
        let _ = match self {
            RawPeer::Unix(s) => s.shutdown(Shutdown::Write),
            RawPeer::Tcp(s) => s.shutdown(Shutdown::Write),
        };
    }

    /// Waits until `n` bytes can be read, without reading them.
    fn wait_readable(&self, n: usize) {
        let fd = match self {
            RawPeer::Unix(s) => s.as_raw_fd(),
            RawPeer::Tcp(s) => s.as_raw_fd(),
        };
        let mut buf = vec![0u8; n];
        let began = Instant::now();
        loop {
            let got = nix::sys::socket::recv(
                fd,
                &mut buf,
                nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            )
            .unwrap_or(0);
            if got >= n {
                return;
            }
            assert!(began.elapsed() < LONG, "{n} bytes never arrived");
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Reads the peer's hello and checks it offers `max`.
    fn expect_hello(&mut self, max: usize) {
        let mut h = [0u8; HELLO_LEN];
        self.read_exact(&mut h).expect("the endpoint's hello");
        assert_eq!(&h[..8], b"shmlink\0", "magic");
        assert_eq!(
            u16::from_le_bytes([h[8], h[9]]),
            PROTOCOL_VERSION,
            "version"
        );
        assert_eq!(u16::from_le_bytes([h[10], h[11]]), 0, "flags");
        assert_eq!(
            u32::from_le_bytes([h[12], h[13], h[14], h[15]]) as usize,
            max,
            "max frame offered"
        );
    }
}

impl Read for RawPeer {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            RawPeer::Unix(s) => s.read(buf),
            RawPeer::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for RawPeer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            RawPeer::Unix(s) => s.write(buf),
            RawPeer::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A plain listening socket standing in for a server.
enum RawListener {
    Unix(UnixListener, PathBuf),
    Tcp(TcpListener),
}

impl RawListener {
    fn bind(kind: Kind) -> RawListener {
        match kind {
            Kind::Unix => {
                let path = sock_path("raw");
                RawListener::Unix(UnixListener::bind(&path).expect("bind"), path)
            }
            Kind::Tcp => RawListener::Tcp(TcpListener::bind("127.0.0.1:0").expect("bind")),
            Kind::Shm => unreachable!("sockets only"),
        }
    }

    fn url(&self) -> String {
        match self {
            RawListener::Unix(_, p) => format!("unix://{}", p.display()),
            RawListener::Tcp(l) => format!("tcp://{}", l.local_addr().unwrap()),
        }
    }

    fn accept(&self) -> RawPeer {
        match self {
            RawListener::Unix(l, _) => RawPeer::Unix(l.accept().expect("raw accept").0),
            RawListener::Tcp(l) => RawPeer::Tcp(l.accept().expect("raw accept").0),
        }
    }
}

impl Drop for RawListener {
    fn drop(&mut self) {
        if let RawListener::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

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

/// A raw client that sent its hello (and `then`, in the same write) and was accepted.
fn raw_client(kind: Kind, server_opts: &Options, then: &[u8]) -> (Listener, RawPeer, Connection) {
    let listener = listen(kind, server_opts);
    let mut raw = RawPeer::connect(&listener.url());
    let mut first = good_hello(server_opts.max_frame as u32).to_vec();
    first.extend_from_slice(then);
    raw.write_all(&first).unwrap();
    let conn = listener.accept(soon()).expect("accept the raw client");
    (listener, raw, conn)
}

fn bad_hellos_are_typed_and_the_listener_survives(kind: Kind) {
    let opts = Options {
        handshake_timeout: Duration::from_millis(300),
        ..opts()
    };
    let listener = listen(kind, &opts);
    let url = listener.url();
    let other_version = PROTOCOL_VERSION.wrapping_add(1);
    let cases: Vec<(&str, Vec<u8>, bool, HandshakeError)> = vec![
        (
            "http",
            b"GET / HTTP/1.1\r\nHost: shmlink\r\n\r\n".to_vec(),
            false,
            HandshakeError::NotShmlink,
        ),
        (
            "zeros",
            vec![0; HELLO_LEN],
            false,
            HandshakeError::NotShmlink,
        ),
        (
            "version",
            hello_bytes(other_version, 0, 4096).to_vec(),
            false,
            HandshakeError::Version {
                ours: PROTOCOL_VERSION,
                theirs: other_version,
            },
        ),
        (
            "flags",
            hello_bytes(PROTOCOL_VERSION, 4, 4096).to_vec(),
            false,
            HandshakeError::UnknownFlags(4),
        ),
        (
            "zero max",
            hello_bytes(PROTOCOL_VERSION, 0, 0).to_vec(),
            false,
            HandshakeError::ZeroMaxFrame,
        ),
        (
            "short then close",
            good_hello(4096)[..10].to_vec(),
            true,
            HandshakeError::Disconnected,
        ),
        ("silent", Vec::new(), false, HandshakeError::Timeout),
    ];
    for (what, bytes, close, want) in cases {
        let mut raw = RawPeer::connect(&url);
        raw.write_all(&bytes).unwrap();
        if close {
            raw.shutdown_write();
        }
        assert_eq!(
            listener.accept(soon()).unwrap_err(),
            AcceptError::Handshake(want),
            "{kind:?}: {what}"
        );
        if want != HandshakeError::Timeout {
            // The server answers even a bad hello, so the peer can tell what is wrong.
            raw.expect_hello(opts.max_frame);
        }
    }
    // The listener still serves a proper client.
    let (server, client) = connect_pair(&listener, &opts);
    let echoer = echo(server);
    let (mut tx, mut rx) = client.split();
    round_trip(&mut tx, &mut rx, &mut Vec::new(), 6, 600);
    drop((tx, rx));
    assert_eq!(echoer.join().unwrap(), Ok(1));
}

fn client_refuses_a_bad_server_hello(kind: Kind) {
    let other_version = PROTOCOL_VERSION.wrapping_add(1);
    let cases: Vec<(&str, Vec<u8>, ConnectError)> = vec![
        (
            "http",
            b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
            ConnectError::Handshake(HandshakeError::NotShmlink),
        ),
        (
            "version",
            hello_bytes(other_version, 0, 4096).to_vec(),
            ConnectError::Handshake(HandshakeError::Version {
                ours: PROTOCOL_VERSION,
                theirs: other_version,
            }),
        ),
        (
            "zero max",
            hello_bytes(PROTOCOL_VERSION, 0, 0).to_vec(),
            ConnectError::Handshake(HandshakeError::ZeroMaxFrame),
        ),
        (
            "short then close",
            good_hello(64)[..5].to_vec(),
            ConnectError::Handshake(HandshakeError::Disconnected),
        ),
    ];
    let raw_server = RawListener::bind(kind);
    for (what, answer, want) in cases {
        let url = raw_server.url();
        let client = thread::spawn(move || transport::connect(&url, &opts_max(5000)));
        let mut raw = raw_server.accept();
        raw.expect_hello(5000);
        raw.write_all(&answer).unwrap();
        drop(raw);
        assert_eq!(
            client.join().unwrap().unwrap_err(),
            want,
            "{kind:?}: {what}"
        );
    }
}

fn oversized_length_prefix_is_too_large_at_once(kind: Kind) {
    const HUGE: u32 = 0xFFFF_FFF0;
    let opts = opts();
    let max = opts.max_frame;
    // A raw client: hello and the oversized prefix in one write, before the accept.
    let (_listener, mut raw, conn) = raw_client(kind, &opts, &HUGE.to_le_bytes());
    raw.expect_hello(max);
    assert_eq!(conn.max_frame(), max);
    let (_tx, mut rx) = conn.split();
    let mut buf = Vec::new();
    let (got, largest) = largest_alloc_during(|| rx.recv(&mut buf, soon()));
    assert_eq!(
        got,
        Err(RecvError::TooLarge {
            len: HUGE as usize,
            max
        }),
        "{kind:?}: server side"
    );
    assert!(
        largest < max,
        "{kind:?}: recv allocated {largest} bytes for a refused frame"
    );
    assert_eq!(
        rx.recv(&mut buf, soon()),
        Err(RecvError::Broken),
        "{kind:?}"
    );
    // A raw server doing the same to a client, with the maximum as the prefix plus one.
    let raw_server = RawListener::bind(kind);
    let url = raw_server.url();
    let client = thread::spawn(move || transport::connect(&url, &opts_max(1000)));
    let mut raw = raw_server.accept();
    raw.expect_hello(1000);
    let mut answer = good_hello(1 << 20).to_vec();
    answer.extend_from_slice(&1001u32.to_le_bytes());
    answer.extend_from_slice(&[0; 1001]);
    raw.write_all(&answer).unwrap();
    let conn = client.join().unwrap().expect("connect to the raw server");
    assert_eq!(conn.max_frame(), 1000);
    let (_tx, mut rx) = conn.split();
    assert_eq!(
        rx.recv(&mut buf, soon()),
        Err(RecvError::TooLarge {
            len: 1001,
            max: 1000
        }),
        "{kind:?}: client side"
    );
}

fn half_frame_then_close_is_malformed(kind: Kind) {
    let opts = opts();
    let body = pattern(3, 100);
    let whole = frame_bytes(&body);
    // (what to send after a whole frame, then close)
    let cuts: [(&str, &[u8]); 3] = [
        ("half a body", &whole[..54]),
        ("half a prefix", &whole[..2]),
        ("a prefix alone", &whole[..4]),
    ];
    for (what, cut) in cuts {
        let mut tail = whole.clone();
        tail.extend_from_slice(cut);
        let (_listener, mut raw, conn) = raw_client(kind, &opts, &tail);
        // A well-behaved peer: it reads what it was sent before it leaves.
        raw.expect_hello(opts.max_frame);
        drop(raw);
        let (_tx, mut rx) = conn.split();
        let mut buf = Vec::new();
        rx.recv(&mut buf, soon())
            .expect("the whole frame before the cut");
        assert_frame(&buf, &body, what);
        match rx.recv(&mut buf, soon()) {
            Err(RecvError::Malformed(_)) => {}
            other => panic!("{kind:?}: {what} then close: {other:?}"),
        }
        assert_eq!(rx.recv(&mut buf, soon()), Err(RecvError::Broken), "{what}");
    }
}

fn half_frame_then_reset_is_malformed(kind: Kind) {
    // The peer leaves mid-frame without reading what it was sent (the server's hello):
    // the kernel resets the connection (ECONNRESET) instead of a clean end of stream.
    // A frame was still cut short: that is `Malformed`, not a clean `Disconnected`
    // ("every frame it sent was received").
    let opts = opts();
    let body = pattern(4, 100);
    let mut tail = frame_bytes(&body);
    tail.extend_from_slice(&frame_bytes(&pattern(5, 100))[..54]);
    let (_listener, raw, conn) = raw_client(kind, &opts, &tail);
    raw.wait_readable(HELLO_LEN); // the server's hello is there, unread
    drop(raw);
    let (_tx, mut rx) = conn.split();
    let mut buf = Vec::new();
    rx.recv(&mut buf, soon())
        .expect("the whole frame before the cut");
    assert_frame(&buf, &body, "whole frame");
    match rx.recv(&mut buf, soon()) {
        Err(RecvError::Malformed(_)) => {}
        other => panic!("{kind:?}: half a frame then a reset: {other:?}"),
    }
}

fn partial_frame_survives_a_timeout(kind: Kind) {
    let opts = opts();
    let (_listener, mut raw, conn) = raw_client(kind, &opts, &[]);
    raw.expect_hello(opts.max_frame);
    let (_tx, mut rx) = conn.split();
    let mut buf = Vec::new();
    let first = frame_bytes(&pattern(1, 10));
    let second = frame_bytes(&pattern(2, 70_000));
    let mut stream = first.clone();
    stream.extend_from_slice(&second);
    // Cut inside the first prefix, inside the first body, between the frames, inside
    // the second prefix, inside the second body.
    let cuts = [
        0,
        2,
        7,
        first.len(),
        first.len() + 3,
        first.len() + 30_000,
        stream.len(),
    ];
    let mut got = Vec::new();
    let mut timeouts = 0;
    for w in cuts.windows(2) {
        raw.write_all(&stream[w[0]..w[1]]).unwrap();
        // Take what is there, until a receive times out (mid-frame, usually).
        loop {
            match rx.recv(&mut buf, after(Duration::from_millis(30))) {
                Ok(()) => got.push(buf.clone()),
                Err(RecvError::Timeout) => {
                    timeouts += 1;
                    break;
                }
                Err(e) => panic!("{kind:?}: after {} bytes: {e}", w[1]),
            }
        }
    }
    while got.len() < 2 {
        rx.recv(&mut buf, soon()).expect("the rest");
        got.push(buf.clone());
    }
    println!("{kind:?}: {timeouts} timeouts");
    assert_eq!(got.len(), 2, "{kind:?}: two frames");
    assert_frame(&got[0], &pattern(1, 10), "first");
    assert_frame(&got[1], &pattern(2, 70_000), "second");
    raw.shutdown_write();
    assert_eq!(rx.recv(&mut buf, soon()), Err(RecvError::Disconnected));
}

#[test]
#[cfg_attr(miri, ignore = "opens sockets")]
fn unix_stale_socket_file_is_no_listener_and_taken_over() {
    let path = sock_path("stale");
    let url = format!("unix://{}", path.display());
    // A socket file with nobody behind it (std's listener leaves its file).
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    assert_eq!(
        transport::connect(&url, &opts()).unwrap_err(),
        ConnectError::NoListener
    );
    let listener = transport::listen(&url, &opts()).expect("take over the stale file");
    let (server, client) = connect_pair(&listener, &opts());
    let echoer = echo(server);
    let (mut tx, mut rx) = client.split();
    round_trip(&mut tx, &mut rx, &mut Vec::new(), 2, 20);
    drop((tx, rx));
    assert_eq!(echoer.join().unwrap(), Ok(1));
    drop(listener);
    assert!(!path.exists(), "the listener removes its socket file");
}

// ---- 9. random bytes at a Unix-socket receiver ----

/// How a stream of bytes after the hello must end, per the framing rules.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Disconnected,
    TooLarge { len: usize, max: usize },
    Malformed,
}

/// What a correct receiver with maximum `max` makes of `bytes`: the frames, then how it
/// ends.
fn model(bytes: &[u8], max: usize) -> (Vec<Vec<u8>>, End) {
    let mut frames = Vec::new();
    let mut rest = bytes;
    loop {
        if rest.is_empty() {
            return (frames, End::Disconnected);
        }
        if rest.len() < 4 {
            return (frames, End::Malformed);
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len > max {
            return (frames, End::TooLarge { len, max });
        }
        if rest.len() - 4 < len {
            return (frames, End::Malformed);
        }
        frames.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
}

/// A raw Unix-socket client sends a hello offering `client_max`, then `bytes`, cut into
/// writes of the sizes in `chunks` (cycled), and leaves after reading the server's
/// hello. The server (maximum `server_max`) receives, with short deadlines, until the
/// first error. Returns the frames and how it ended.
fn feed_uds(
    bytes: &[u8],
    chunks: &[usize],
    server_max: usize,
    client_max: u32,
) -> (Vec<Vec<u8>>, End) {
    let opts = opts_max(server_max);
    let listener = listen(Kind::Unix, &opts);
    let mut raw = UnixStream::connect(listener.url().trim_start_matches("unix://")).unwrap();
    let mut all = good_hello(client_max).to_vec();
    all.extend_from_slice(bytes);
    let chunks = chunks.to_vec();
    let writer = thread::spawn(move || {
        let mut at = 0;
        for &n in chunks.iter().cycle() {
            if at == all.len() {
                break;
            }
            let end = (at + n.max(1)).min(all.len());
            // Each write is its own buffer in the kernel: many tiny ones fill the socket
            // buffer, and block until the receiver reads. A receiver that stopped (at
            // an error) and closed makes the rest fail: stop there.
            if raw.write_all(&all[at..end]).is_err() {
                return;
            }
            at = end;
            thread::yield_now();
        }
        let mut hello = [0u8; HELLO_LEN];
        // Read what the server sent before leaving (else the close is a reset).
        let _ = raw.read_exact(&mut hello);
    });
    let conn = listener.accept(soon()).expect("accept");
    let max = server_max.min(client_max as usize);
    assert_eq!(conn.max_frame(), max, "agreed maximum");
    let (tx, mut rx) = conn.split();
    let mut frames = Vec::new();
    let mut buf = Vec::new();
    let began = Instant::now();
    let mut k = 0u64;
    let end = loop {
        k += 1;
        let wait = Duration::from_micros(200 + 300 * (k % 4));
        match rx.recv(&mut buf, after(wait)) {
            Ok(()) => {
                assert!(
                    buf.len() <= max,
                    "a frame of {} over the maximum {max}",
                    buf.len()
                );
                frames.push(buf.clone());
            }
            Err(RecvError::Timeout) => {
                assert!(began.elapsed() < LONG, "receiver stalled");
            }
            Err(RecvError::Disconnected) => break End::Disconnected,
            Err(RecvError::TooLarge { len, max }) => break End::TooLarge { len, max },
            Err(RecvError::Malformed(_)) => break End::Malformed,
            Err(e) => panic!("unexpected error {e:?}"),
        }
    };
    // Close, so that a writer blocked on a full socket buffer gets an error and ends.
    drop((tx, rx));
    writer.join().expect("writer");
    (frames, end)
}

#[derive(Debug, Clone)]
enum Piece {
    Frame(Vec<u8>),
    Raw(Vec<u8>),
    Prefix(u32),
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        6 => prop::collection::vec(any::<u8>(), 0..80).prop_map(Piece::Frame),
        1 => prop::collection::vec(any::<u8>(), 0..6).prop_map(Piece::Raw),
        1 => any::<u32>().prop_map(Piece::Prefix),
    ]
}

fn encode(pieces: &[Piece]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pieces {
        match p {
            Piece::Frame(body) => out.extend_from_slice(&frame_bytes(body)),
            Piece::Raw(bytes) => out.extend_from_slice(bytes),
            Piece::Prefix(len) => out.extend_from_slice(&len.to_le_bytes()),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random bytes (frames, garbage, bare length prefixes) in random chunks: the
    /// receiver never panics or stalls, every frame is within the maximum, and the
    /// outcome is exactly what the framing rules say.
    #[test]
    #[cfg_attr(miri, ignore = "opens sockets")]
    fn uds_receiver_takes_random_bytes_in_random_chunks(
        pieces in prop::collection::vec(piece(), 0..10),
        chunks in prop::collection::vec(1usize..40, 1..8),
        server_max in 1usize..96,
        client_max in 1u32..96,
    ) {
        let bytes = encode(&pieces);
        let max = server_max.min(client_max as usize);
        let got = feed_uds(&bytes, &chunks, server_max, client_max);
        prop_assert_eq!(got, model(&bytes, max));
    }

    /// A valid sequence of frames comes out exactly, then `Disconnected`.
    #[test]
    #[cfg_attr(miri, ignore = "opens sockets")]
    fn uds_receiver_returns_valid_frames_exactly(
        frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..=64), 0..16),
        chunks in prop::collection::vec(1usize..70, 1..8),
        server_max in 64usize..128,
        client_max in 64u32..128,
    ) {
        let bytes: Vec<u8> = frames.iter().flat_map(|f| frame_bytes(f)).collect();
        let got = feed_uds(&bytes, &chunks, server_max, client_max);
        prop_assert_eq!(got, (frames, End::Disconnected));
    }
}

// ---- 10. TCP between two network namespaces ----

/// Two network namespaces joined by a veth pair; removed on drop.
struct NetnsPair {
    a: String,
    b: String,
    created: Vec<String>,
    a_ip: String,
    b_ip: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetnsPair {
    /// `None` if namespaces cannot be created here (not root, no `ip`); panics if they
    /// can but the link between them cannot be set up.
    fn create() -> Option<NetnsPair> {
        let pid = std::process::id();
        let mut pair = NetnsPair {
            a: format!("shmlink-a-{pid}"),
            b: format!("shmlink-b-{pid}"),
            created: Vec::new(),
            a_ip: format!("10.{}.{}.1", (pid >> 8) & 0xff, pid & 0xff),
            b_ip: format!("10.{}.{}.2", (pid >> 8) & 0xff, pid & 0xff),
        };
        for ns in [pair.a.clone(), pair.b.clone()] {
            if let Err(e) = ip(&["netns", "add", &ns]) {
                println!("{e}");
                return None; // drop removes what was created
            }
            pair.created.push(ns);
        }
        let (va, vb) = (format!("shla{pid}"), format!("shlb{pid}"));
        let (a, b) = (pair.a.clone(), pair.b.clone());
        let (a_cidr, b_cidr) = (format!("{}/24", pair.a_ip), format!("{}/24", pair.b_ip));
        let steps: [&[&str]; 7] = [
            &[
                "link", "add", &va, "netns", &a, "type", "veth", "peer", "name", &vb, "netns", &b,
            ],
            &["-n", &a, "addr", "add", &a_cidr, "dev", &va],
            &["-n", &b, "addr", "add", &b_cidr, "dev", &vb],
            &["-n", &a, "link", "set", &va, "up"],
            &["-n", &b, "link", "set", &vb, "up"],
            &["-n", &a, "link", "set", "lo", "up"],
            &["-n", &b, "link", "set", "lo", "up"],
        ];
        for step in steps {
            if let Err(e) = ip(step) {
                panic!("setting up the namespaces: {e}");
            }
        }
        Some(pair)
    }

    fn exec_prefix(ns: &str) -> [&str; 4] {
        ["ip", "netns", "exec", ns]
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace also deletes its end of the veth pair (and so both).
        for ns in &self.created {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn tcp_between_network_namespaces() {
    let Some(ns) = NetnsPair::create() else {
        println!("netns unavailable; TCP tested on loopback only");
        return;
    };
    const FRAMES: u64 = 300;
    let mut server = Scenario::new("echo_server")
        .arg("url", format!("tcp://{}:0", ns.a_ip))
        .spawn_under(&NetnsPair::exec_prefix(&ns.a));
    let line = server.wait_for("listening=", CHILD_TIMEOUT);
    let url = line["listening=".len()..].to_owned();
    assert!(
        url.starts_with(&format!("tcp://{}:", ns.a_ip)) && !url.ends_with(":0"),
        "{url}"
    );
    let client = Scenario::new("echo_client")
        .arg("url", &url)
        .arg("count", FRAMES)
        .spawn_under(&NetnsPair::exec_prefix(&ns.b));
    let client_done = client.success(CHILD_TIMEOUT);
    let server_done = server.success(CHILD_TIMEOUT);
    let (c, s) = (client_done.values(), server_done.values());
    assert_eq!(
        c.get("ok").map(String::as_str),
        Some("300"),
        "{:?}",
        client_done.reports
    );
    assert_eq!(c.get("kind").map(String::as_str), Some("tcp"));
    assert_eq!(
        c.get("max_frame"),
        Some(&Options::default().max_frame.to_string())
    );
    assert_eq!(
        s.get("echoed").map(String::as_str),
        Some("300"),
        "{:?}",
        server_done.reports
    );
    // Each ran in its own namespace, neither in ours: the frames crossed the veth.
    let ours = netns_id();
    let (c_ns, s_ns) = (&c["netns"], &s["netns"]);
    assert!(
        c_ns.starts_with("net:[") && s_ns.starts_with("net:["),
        "{c_ns} {s_ns}"
    );
    assert_ne!(c_ns, s_ns);
    assert_ne!(c_ns, &ours);
    assert_ne!(s_ns, &ours);
    println!(
        "{ns_a} ({s_ns}) <-> {ns_b} ({c_ns}) over {url}",
        ns_a = ns.a,
        ns_b = ns.b
    );
}

// ---- issue 11, defect 9: the accept side validates a client's connection segment ----

/// A client's connection segment whose memory was handed back (holes punched into a
/// real one, so its header and rings still look right) is refused at accept with a
/// typed error, before the server claims its end or touches a ring, and the listener
/// keeps serving. The client is played by hand, as the `transport::shm` module docs
/// describe it: a `Duplex` named `NAME.PID.SEQ`, end A claimed, the hello written,
/// the id `PID << 32 | SEQ` pushed into the accept queue.
#[test]
#[cfg_attr(miri, ignore = "opens sockets")]
fn shm_accept_refuses_a_sparse_connection_segment() {
    use nix::fcntl::{FallocateFlags, fallocate};
    use shmlink::ring::{BuildError, Duplex, End, Mpmc, MpmcHeader};
    use shmlink::segment::{OpenError, Segment, SegmentName, ShmRegion};
    use shmlink::sync::WaitMode;
    use std::sync::Arc;

    let opts = opts();
    let listener = listen(Kind::Shm, &opts);
    let name = listener.url().trim_start_matches("shm://").to_owned();
    let seq: u32 = 0xffff_fff0; // far from the ids this process's real clients use
    let pid = std::process::id();
    let conn = format!("{name}.{pid}.{seq}");
    let link = Duplex::create(
        Segment::builder(&conn).unlink_on_drop(true),
        1 << 20,
        64 * 1024,
        WaitMode::Blocking,
    )
    .unwrap();
    let (mut tx, _rx) = link.end(End::A).unwrap();
    tx.try_send(&good_hello(opts.max_frame as u32)).unwrap();
    // Give the last 256 KiB back: the size and the header stay, the memory goes.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(SegmentName::new(&conn).unwrap().path())
        .unwrap();
    let len = file.metadata().unwrap().len();
    let hole = 256 * 1024;
    fallocate(
        &file,
        FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
        (len - hole) as i64,
        hole as i64,
    )
    .unwrap();
    // Push the id as a client would (the queue's fingerprint read from its header).
    let fp = shmlink::segment::inspect(&name)
        .unwrap()
        .header
        .unwrap()
        .fingerprint;
    let queue_region = ShmRegion::<MpmcHeader>::open(
        Segment::builder(&name)
            .kind(shmlink::segment::Kind::MpmcRing)
            .fingerprint(fp),
    )
    .unwrap();
    let queue = Mpmc::<u64, _>::from_region(Arc::new(queue_region)).unwrap();
    let id = (u64::from(pid) << 32) | u64::from(seq);
    queue.producer().unwrap().push(id).unwrap();

    let began = Instant::now();
    match listener.accept(after(Duration::from_secs(5))) {
        Err(AcceptError::Shm(BuildError::Open(OpenError::NotBacked { len: l, allocated }))) => {
            assert_eq!(l, len);
            assert!(allocated < len, "{allocated} of {len}");
        }
        Err(e) => panic!("refused for another reason: {e:?}"),
        Ok(c) => panic!("a sparse connection segment was accepted: {c:?}"),
    }
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
    drop((tx, link, queue));
    // The listener still serves real clients.
    let (server, client) = connect_pair(&listener, &opts);
    let echoer = echo(server);
    let (mut tx, mut rx) = client.split();
    round_trip(&mut tx, &mut rx, &mut Vec::new(), 3, 300);
    drop((tx, rx));
    assert_eq!(echoer.join().unwrap(), Ok(1));
}

// ---- issue 11, defect 12: Unix socket files are 0600 whatever the umask ----

fn socket_file_mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(path).unwrap();
    assert!(meta.file_type().is_socket(), "{meta:?}");
    meta.permissions().mode() & 0o7777
}

/// A listener started with umask 000 (a child run through `sh -c 'umask 000; exec
/// ...'`) still creates its socket file 0600: no other local user can connect (on
/// Linux, connecting needs write permission on the socket file).
#[test]
#[cfg_attr(miri, ignore = "opens sockets")]
fn unix_socket_file_is_0600_even_with_umask_000() {
    let path = sock_path("umask");
    let url = format!("unix://{}", path.display());
    let mut server = Scenario::new("echo_server").arg("url", &url).spawn_under(&[
        "sh",
        "-c",
        "umask 000 && exec \"$0\" \"$@\"",
    ]);
    server.wait_for("listening=", CHILD_TIMEOUT);
    let mode = socket_file_mode(&path);
    drop(server); // killed
    let _ = std::fs::remove_file(&path);
    assert_eq!(mode, 0o600, "socket file mode {mode:o} under umask 000");
}

/// The same in this process (whatever its umask), and the listener can widen the mode
/// on purpose (e.g. for a group of clients).
#[test]
#[cfg_attr(miri, ignore = "opens sockets")]
fn unix_socket_file_is_0600_and_can_be_widened() {
    let listener = listen(Kind::Unix, &opts());
    let url = listener.url();
    let path = PathBuf::from(url.trim_start_matches("unix://"));
    assert_eq!(socket_file_mode(&path), 0o600);
    let Listener::Socket(socket) = &listener else {
        panic!("a unix listener is a socket listener")
    };
    socket.set_mode(0o660).unwrap();
    assert_eq!(socket_file_mode(&path), 0o660);
    // It still serves.
    let (server, client) = connect_pair(&listener, &opts());
    let echoer = echo(server);
    let (mut tx, mut rx) = client.split();
    round_trip(&mut tx, &mut rx, &mut Vec::new(), 4, 40);
    drop((tx, rx));
    assert_eq!(echoer.join().unwrap(), Ok(1));
    // A TCP listener has no file to change.
    let tcp = listen(Kind::Tcp, &opts());
    let Listener::Socket(tcp) = &tcp else {
        panic!("a tcp listener is a socket listener")
    };
    assert!(tcp.set_mode(0o600).is_err());
}

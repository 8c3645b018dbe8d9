//! Sockets only: raw peers that send a bad hello, an oversized length prefix (refused
//! without allocating it), half a frame then a close or a reset, a frame in pieces
//! across timeouts; a stale Unix socket file is taken over; Unix socket files are 0600
//! whatever the umask.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use shmlink::transport::{
    self, AcceptError, ConnectError, Connection, HELLO_LEN, HandshakeError, Listener,
    PROTOCOL_VERSION, TransportOptions, TransportRecvError,
};

use crate::support::Scenario;
use crate::{
    CHILD_TIMEOUT, Kind, LONG, after, assert_frame, connect_pair, echo, frame_bytes, good_hello,
    hello_bytes, largest_alloc_during, listen, opts, opts_max, pattern, round_trip, sock_path,
    soon,
};

socket_cases!(
    bad_hellos_are_typed_and_the_listener_survives,
    client_refuses_a_bad_server_hello,
    oversized_length_prefix_is_too_large_at_once,
    half_frame_then_close_is_malformed,
    half_frame_then_reset_is_malformed,
    partial_frame_survives_a_timeout,
);

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

/// A raw client that sent its hello (and `then`, in the same write) and was accepted.
fn raw_client(
    kind: Kind,
    server_opts: &TransportOptions,
    then: &[u8],
) -> (Listener, RawPeer, Connection) {
    let listener = listen(kind, server_opts);
    let mut raw = RawPeer::connect(&listener.url());
    let mut first = good_hello(server_opts.max_frame as u32).to_vec();
    first.extend_from_slice(then);
    raw.write_all(&first).unwrap();
    let conn = listener.accept(soon()).expect("accept the raw client");
    (listener, raw, conn)
}

fn bad_hellos_are_typed_and_the_listener_survives(kind: Kind) {
    let opts = TransportOptions {
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
    let cases: Vec<(&str, Vec<u8>, HandshakeError)> = vec![
        (
            "http",
            b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
            HandshakeError::NotShmlink,
        ),
        (
            "version",
            hello_bytes(other_version, 0, 4096).to_vec(),
            HandshakeError::Version {
                ours: PROTOCOL_VERSION,
                theirs: other_version,
            },
        ),
        (
            "zero max",
            hello_bytes(PROTOCOL_VERSION, 0, 0).to_vec(),
            HandshakeError::ZeroMaxFrame,
        ),
        (
            "short then close",
            good_hello(64)[..5].to_vec(),
            HandshakeError::Disconnected,
        ),
    ];
    let raw_server = RawListener::bind(kind);
    for (what, answer, want) in cases {
        let url = raw_server.url();
        let want = ConnectError::Handshake {
            url: url.clone(),
            error: want,
        };
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
        Err(TransportRecvError::TooLarge {
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
        Err(TransportRecvError::Broken),
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
        Err(TransportRecvError::TooLarge {
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
            Err(TransportRecvError::Malformed(_)) => {}
            other => panic!("{kind:?}: {what} then close: {other:?}"),
        }
        assert_eq!(
            rx.recv(&mut buf, soon()),
            Err(TransportRecvError::Broken),
            "{what}"
        );
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
        Err(TransportRecvError::Malformed(_)) => {}
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
                Err(TransportRecvError::Timeout) => {
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
    assert_eq!(
        rx.recv(&mut buf, soon()),
        Err(TransportRecvError::Disconnected)
    );
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
        ConnectError::NoListener { url: url.clone() }
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

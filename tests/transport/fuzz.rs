//! Random bytes at a Unix-socket receiver: frames, garbage and bare length prefixes in
//! random chunks; the receiver never panics or stalls, and ends exactly as the framing
//! rules say.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use shmlink::transport::{HELLO_LEN, TransportRecvError};

use crate::{Kind, LONG, after, frame_bytes, good_hello, listen, opts_max, soon};

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
            Err(TransportRecvError::Timeout) => {
                assert!(began.elapsed() < LONG, "receiver stalled");
            }
            Err(TransportRecvError::Disconnected) => break End::Disconnected,
            Err(TransportRecvError::TooLarge { len, max }) => break End::TooLarge { len, max },
            Err(TransportRecvError::Malformed(_)) => break End::Malformed,
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

//! The frame ring: round trips of many sizes, wrap-around, limits, and corrupted
//! headers written into a named ring's segment.

use std::time::Duration;

use shmlink::ring::{BuildError, FrameRecvError, FrameRing, FrameSendError};
use shmlink::segment::Segment;
use shmlink::sync::WaitMode;

use crate::support::segfile::poke_u64;

fn name(tag: &str) -> String {
    format!("t-frame-{}-{tag}", std::process::id())
}

/// Deterministic pseudo-random bytes (xorshift).
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn sizes_and_limits() {
    assert!(matches!(
        FrameRing::new(100, 8, WaitMode::Spin),
        Err(BuildError::InvalidCapacity(100))
    ));
    assert!(matches!(
        FrameRing::new(64, 64, WaitMode::Spin),
        Err(BuildError::BadConfig(_))
    ));
    let ring = FrameRing::new(256, 100, WaitMode::Spin).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    assert_eq!(
        tx.try_send(&[0; 101]),
        Err(FrameSendError::TooLarge { len: 101, max: 100 })
    );
    let mut buf = vec![1, 2, 3];
    assert_eq!(rx.try_recv(&mut buf), Err(FrameRecvError::Empty));
    tx.try_send(&[]).unwrap();
    assert_eq!(rx.try_recv(&mut buf), Ok(0));
    assert!(buf.is_empty());
    // Fill: each 100-byte frame takes 8 + 104 bytes; two fit in 256.
    tx.try_send(&[9; 100]).unwrap();
    tx.try_send(&[8; 100]).unwrap();
    assert_eq!(tx.try_send(&[7; 100]), Err(FrameSendError::Full));
    assert_eq!(rx.try_recv(&mut buf), Ok(100));
    assert_eq!(buf, vec![9; 100]);
}

#[test]
fn every_length_round_trips_across_wrap_arounds() {
    let ring = FrameRing::new(512, 200, WaitMode::Spin).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    let mut buf = Vec::new();
    for round in 0..if cfg!(miri) { 1 } else { 5u64 } {
        for len in 0..=200usize {
            let frame = bytes(round * 1000 + len as u64, len);
            tx.try_send(&frame).unwrap();
            assert_eq!(rx.try_recv(&mut buf), Ok(len));
            assert_eq!(buf, frame, "round {round} len {len}");
        }
    }
}

#[test]
fn threads_stream_random_frames_with_checksums() {
    let count = if cfg!(miri) {
        40
    } else if cfg!(debug_assertions) {
        5_000
    } else {
        100_000
    };
    let ring = FrameRing::new(8192, 1500, WaitMode::Blocking).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            for i in 0..count {
                let len = (i * 7919) % 1500;
                tx.send_timeout(&bytes(i, len as usize), Duration::from_secs(20))
                    .unwrap();
            }
        });
        s.spawn(move || {
            let mut buf = Vec::new();
            for i in 0..count {
                let len = rx.recv_timeout(&mut buf, Duration::from_secs(20)).unwrap();
                assert_eq!(len, ((i * 7919) % 1500) as usize);
                assert_eq!(buf, bytes(i, len), "frame {i}");
            }
            assert_eq!(
                rx.recv_timeout(&mut buf, Duration::from_secs(20)),
                Err(FrameRecvError::Disconnected)
            );
        });
    });
}

/// Segment header (128) + SpscHeader (768): the first slot of the area. Slots are
/// 16 bytes: a stamp, then the word.
const AREA: u64 = 128 + 768;

fn word_offset(k: u64) -> u64 {
    AREA + (k % 32) * 16 + 8
}
const TAG: u64 = 0x314d_5246 << 32;

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn corrupted_headers_are_typed_errors() {
    let n = name("corrupt");
    let ring = FrameRing::create(
        Segment::builder(&n).unlink_on_drop(true),
        256,
        64,
        WaitMode::Spin,
    )
    .unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    let mut buf = Vec::new();
    let cases = [
        (0xdead_beef_0000_0004u64, "frame header tag"),
        (TAG | 65, "frame length"),
        (TAG | 64, "published words of a frame"),
    ];
    for (header, what) in cases {
        tx.try_send(b"abcd").unwrap();
        // Rewrite the header of the frame just published (slot of position 0 of this
        // lap is wherever the consumer is; the ring is empty before each send, and
        // each frame takes 2 words, so its header is at word (2 * k) % 32).
        let k = cases.iter().position(|c| c.1 == what).unwrap() as u64;
        poke_u64(&n, word_offset(2 * k), header);
        match rx.try_recv(&mut buf) {
            Err(FrameRecvError::Corrupted(c)) => assert_eq!(c.what, what),
            other => panic!("{what}: expected Corrupted, got {other:?}"),
        }
        // Repair and drain, so the next case starts clean.
        poke_u64(&n, word_offset(2 * k), TAG | 4);
        assert_eq!(rx.try_recv(&mut buf), Ok(4));
        assert_eq!(buf, b"abcd");
    }
    // Opening as a plain SPSC ring of u64 is refused (different fingerprint).
    assert!(shmlink::ring::Spsc::<u64, _>::open(Segment::builder(&n)).is_err());
    let again = FrameRing::open(Segment::builder(&n)).unwrap();
    assert_eq!((again.capacity_bytes(), again.max_frame()), (256, 64));
}

//! Deadlines: a receive that times out loses nothing (also in the middle of a large
//! frame), and a deadline already past still takes a frame that has arrived, and still
//! sends into room.

use std::thread;
use std::time::{Duration, Instant};

use shmlink::transport::{Receiver, TransportRecvError};

use crate::{Kind, LONG, after, assert_frame, connect_pair, listen, opts, pattern, soon};

conformance!(
    recv_timeout_loses_nothing,
    recv_timeouts_inside_a_large_frame_lose_nothing,
    past_deadline_still_takes_an_arrived_frame,
    past_deadline_still_sends_into_room,
);

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
            Err(TransportRecvError::Timeout),
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
        Err(TransportRecvError::Timeout)
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
                Err(TransportRecvError::Timeout) => timeouts += 1,
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
fn recv_with_past_deadline(
    rx: &mut Receiver,
    buf: &mut Vec<u8>,
) -> Option<Result<(), TransportRecvError>> {
    for _ in 0..200 {
        match rx.recv(buf, Some(Instant::now())) {
            Err(TransportRecvError::Timeout) => thread::sleep(Duration::from_millis(10)),
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
        Err(TransportRecvError::Timeout),
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

//! Round trips: frames of 0, 1, 7, 8, 4096 bytes and exactly the maximum cross whole,
//! both ways; 2000 frames each way at once keep their order; several clients are kept
//! apart.

use std::thread;
use std::time::Duration;

use shmlink::transport::{self, FrameRecv, FrameSend, Receiver, Sender, TransportRecvError};

use crate::{
    Kind, after, assert_frame, connect_pair, echo, listen, opts, pattern, round_trip, soon,
};

conformance!(
    round_trip_sizes_both_ways,
    many_frames_keep_order_both_ways,
    several_clients_are_kept_apart,
);

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
    assert_eq!(s_rx.recv(&mut buf, short), Err(TransportRecvError::Timeout));
    assert_eq!(c_rx.recv(&mut buf, short), Err(TransportRecvError::Timeout));
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

//! Disconnects: a peer that drops its connection: every frame it sent arrives, then
//! `Disconnected`, and sends fail with `Disconnected`; a peer that drops only its
//! sending half ends our stream the same way (half-close), its receiving half works on.

use std::thread;
use std::time::Duration;

use shmlink::transport::{TransportRecvError, TransportSendError};

use crate::{Kind, after, assert_frame, connect_pair, listen, opts, pattern, soon, varied_len};

conformance!(
    peer_drop_is_drained_then_disconnected,
    dropping_the_sender_half_ends_the_peers_stream,
);

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
            Err(TransportRecvError::Disconnected),
            "{case}"
        );
        assert_eq!(
            rx.recv(&mut buf, soon()),
            Err(TransportRecvError::Disconnected),
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
        assert_eq!(
            err,
            TransportSendError::Disconnected,
            "{case}: after {sent} sends"
        );
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
        Err(TransportRecvError::Disconnected),
        "{kind:?}: the peer dropped its sending half"
    );
    // The other direction still works.
    s_tx.send(b"still here", soon()).unwrap();
    c_rx.recv(&mut buf, soon()).unwrap();
    assert_eq!(buf, b"still here");
}

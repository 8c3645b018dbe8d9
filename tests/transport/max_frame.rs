//! The maximum frame: a frame over the agreed maximum is refused on send; both ends agree
//! on the smaller maximum (1000 vs 1 MiB either way, and a tiny maximum of 1 byte).

use shmlink::transport::{FrameRecv, FrameSend, TransportSendError};

use crate::{Kind, assert_frame, connect_pair, listen, opts, opts_max, pattern, soon};

conformance!(
    over_max_send_is_too_large,
    max_frame_agreement,
    tiny_max_frame
);

fn over_max_send_is_too_large(kind: Kind) {
    let opts = opts();
    let max = opts.max_frame;
    let listener = listen(kind, &opts);
    let (server, client) = connect_pair(&listener, &opts);
    let (mut s_tx, mut s_rx) = server.split();
    let (mut c_tx, mut c_rx) = client.split();
    let big = vec![0xAB; max + 1];
    let too_large = Err(TransportSendError::TooLarge { len: max + 1, max });
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
    let refused = Err(TransportSendError::TooLarge {
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

//! Server streaming: a stream of 1000 items (more than twice the flow-control window)
//! arrives in order, two streams interleave on one connection, and a stream may end
//! with the service's error.

use std::time::Duration;

use shmlink::rpc::{RpcError, STREAM_WINDOW};

use crate::support::kv::KvError;
use crate::{Fixture, Mode, Tr};

conformance!(
    long_stream_arrives_in_order_with_flow_control,
    stream_ending_with_the_service_error,
);

/// (Inline, the handler runs on the reader, which cannot read credits meanwhile: the
/// server must pace such a stream some other way.)
fn long_stream_arrives_in_order_with_flow_control(tr: Tr, mode: Mode) {
    const N: u32 = 1000;
    const _: () = assert!(N as u64 > 2 * STREAM_WINDOW, "more than the window");
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client().with_timeout(Duration::from_secs(10));
    let mut got = Vec::with_capacity(N as usize);
    let mut s = c.count(N);
    for item in s.by_ref() {
        match item {
            Ok(i) => got.push(i),
            Err(e) => panic!("{case}: stream failed after {} items: {e:?}", got.len()),
        }
    }
    assert_eq!(s.next(), None, "{case}: a finished stream stays finished");
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "{case}");

    // Two streams interleaved on one connection, each with its own credits.
    let mut a = c.count(300);
    let mut b = c.count(300);
    for i in 0..300 {
        assert_eq!(a.next(), Some(Ok(i)), "{case}: stream a");
        assert_eq!(b.next(), Some(Ok(i)), "{case}: stream b");
    }
    assert_eq!((a.next(), b.next()), (None, None), "{case}");
    assert_eq!(c.raw().in_flight(), 0, "{case}");
}

fn stream_ending_with_the_service_error(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    let mut s = c.count_then_fail(5);
    for i in 0..5 {
        assert_eq!(s.next(), Some(Ok(i)), "{case}");
    }
    assert_eq!(
        s.next(),
        Some(Err(RpcError::Service(KvError::StreamFailed(5)))),
        "{case}"
    );
    assert_eq!(s.next(), None, "{case}");
    let mut s = c.count_then_fail(0);
    assert_eq!(
        s.next(),
        Some(Err(RpcError::Service(KvError::StreamFailed(0)))),
        "{case}"
    );
    assert_eq!(s.next(), None, "{case}");
    assert_eq!(c.count(0).next(), None, "{case}: an empty stream");
    assert_eq!(c.raw().in_flight(), 0, "{case}");
    assert_eq!(c.add((1, 1)).wait(), Ok(2), "{case}");
}

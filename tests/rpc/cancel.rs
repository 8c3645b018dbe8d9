//! Cancellation (pool mode): dropping a `Call` or a `CallStream` stops its handler, and
//! a stream's handler never runs more than the flow-control window ahead.

use std::time::{Duration, Instant};

use shmlink::rpc::{STREAM_WINDOW, Stop};

use crate::support::kv::{Event, Slow, next_tag, stop_of};
use crate::{Fixture, Mode, Tr};

conformance_in!(Pool:
    dropping_a_call_cancels_its_handler,
    dropping_a_stream_stops_its_handler,
    a_call_hung_up_on_after_its_answer_counts_as_served,
);

fn dropping_a_call_cancels_its_handler(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    let tag = next_tag();
    let call = c.slow(Slow {
        tag,
        ms: 20_000,
        gated: false,
    });
    fix.state.wait_started(tag);
    let t0 = Instant::now();
    drop(call);
    let stop = fix.state.wait_stopped(tag);
    assert_eq!(stop, Stop::Cancelled, "{case}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "{case}: stopped {:?} after the drop",
        t0.elapsed()
    );
    fix.wait_stats("a cancelled call", |s| s.cancelled >= 1);
    assert_eq!(c.raw().in_flight(), 0, "{case}");
    assert_eq!(c.add((2, 3)).wait(), Ok(5), "{case}");

    // A call dropped before the server got to it is cancelled as well (or answered
    // and dropped); either way the connection stays usable.
    let calls: Vec<_> = (0..8i64).map(|i| c.add((i, i))).collect();
    drop(calls);
    assert_eq!(c.raw().in_flight(), 0, "{case}");
    assert_eq!(c.add((3, 4)).wait(), Ok(7), "{case}");
}

fn dropping_a_stream_stops_its_handler(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    let tag = next_tag();
    let mut s = c.endless(tag);
    for i in 0..10u64 {
        assert_eq!(s.next(), Some(Ok(i)), "{case}");
    }
    let t0 = Instant::now();
    drop(s);
    let evs = fix
        .state
        .wait_until(tag, "closed sink", |e| stop_of(e).is_some());
    let Some(Event::SinkClosed { sent, why }) = evs.last().cloned() else {
        panic!("{case}: {evs:?}");
    };
    assert_eq!(why, Stop::Cancelled, "{case}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "{case}: stopped {:?} after the drop",
        t0.elapsed()
    );
    // Flow control: we consumed 10 (no credit returned yet), so the handler never ran
    // more than the window ahead.
    assert!(
        (10..=STREAM_WINDOW).contains(&sent),
        "{case}: the handler sent {sent} items"
    );
    assert_eq!(c.raw().in_flight(), 0, "{case}");
    let items: Result<Vec<u32>, _> = c.count(3).collect();
    assert_eq!(items, Ok(vec![0, 1, 2]), "{case}");
}

/// Defect: the server classified a call after its answer went out, so a caller that
/// hung up right after reading the answer could make it count as cancelled (CI saw
/// 238 of 239 calls served in `cross_process_calls_and_streams`). A call answered
/// before its caller left counts as served.
fn a_call_hung_up_on_after_its_answer_counts_as_served(tr: Tr, mode: Mode) {
    const CALLS: u64 = 200;
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let before = fix.stats();
    for i in 0..CALLS {
        let i = i64::try_from(i).unwrap();
        let c = fix.client();
        assert_eq!(c.add((i, 1)).wait(), Ok(i + 1), "{case}");
        drop(c); // hangs up at once
    }
    let s = fix.wait_stats("every call served", |s| {
        s.completed + s.cancelled >= before.completed + before.cancelled + CALLS
    });
    assert_eq!(s.completed - before.completed, CALLS, "{case}: {s:?}");
    assert_eq!(s.cancelled, before.cancelled, "{case}: {s:?}");
}

//! Graceful shutdown: calls in flight finish within the grace, new calls are refused,
//! the endpoint disappears; a short grace stops a cooperative handler
//! (`Stop::ShuttingDown`) and returns promptly.

use std::thread;
use std::time::{Duration, Instant};

use shmlink::rpc::{RpcError, Stop};

use crate::support::kv::{Event, Slow, next_tag};
use crate::{Fixture, Mode, Tr, assert_endpoint_gone};

conformance!(
    graceful_shutdown_lets_calls_in_flight_finish,
    short_grace_aborts_cooperative_handlers,
);

fn graceful_shutdown_lets_calls_in_flight_finish(tr: Tr, mode: Mode) {
    const GRACE: Duration = Duration::from_secs(5);
    let mut fix = Fixture::new(tr, mode);
    let case = fix.label();
    let busy = fix.client();
    let idle = fix.client();
    assert_eq!(idle.add((1, 1)).wait(), Ok(2), "{case}");
    let tag = next_tag();
    let held = busy.slow(Slow {
        tag,
        ms: 20_000,
        gated: true,
    });
    fix.state.wait_started(tag);

    let server = fix.take_server();
    let stopper = thread::spawn(move || {
        let t0 = Instant::now();
        let stats = server.shutdown(GRACE);
        (stats, t0.elapsed())
    });

    // Once the shutdown began, calls on the idle connection fail: refused while its
    // reader still runs, or the connection closed.
    let until = Instant::now() + GRACE / 2;
    let refused = loop {
        match idle.add((2, 2)).wait() {
            Ok(4) if Instant::now() < until => thread::sleep(Duration::from_millis(2)),
            other => break other,
        }
    };
    assert!(
        matches!(refused, Err(RpcError::Unavailable | RpcError::ServerGone)),
        "{case}: a new call during shutdown: {refused:?}"
    );
    // The busy connection: with the pool its reader still reads (a call is in flight)
    // and refuses new calls; inline, the reader is busy running the held call.
    let late = busy.add((3, 3));
    let late = if mode == Mode::Pool {
        assert_eq!(
            late.wait(),
            Err(RpcError::Unavailable),
            "{case}: a new call next to one in flight"
        );
        None
    } else {
        Some(late)
    };

    fix.state.release(tag);
    assert_eq!(
        held.wait(),
        Ok(tag),
        "{case}: the call in flight finished within the grace"
    );
    if let Some(late) = late {
        let r = late.wait();
        assert!(
            matches!(r, Err(RpcError::Unavailable | RpcError::ServerGone)),
            "{case}: a call sent during shutdown: {r:?}"
        );
    }
    let (stats, took) = stopper.join().expect("shutdown thread");
    assert!(took < GRACE, "{case}: shutdown took {took:?}");
    assert_eq!(
        fix.state.events(tag).last(),
        Some(&Event::Finished),
        "{case}"
    );
    assert!(
        stats.completed >= 2,
        "{case}: both calls that ran completed: {stats:?}"
    );
    if mode == Mode::Pool {
        assert!(stats.refused >= 1, "{case}: {stats:?}");
    }

    // After the shutdown: the connections are closed, and the endpoint is gone.
    assert_eq!(busy.add((4, 4)).wait(), Err(RpcError::ServerGone), "{case}");
    assert_eq!(idle.add((4, 4)).wait(), Err(RpcError::ServerGone), "{case}");
    if let Some(url) = &fix.url {
        assert_endpoint_gone(url, &case);
    }
}

/// (The counters: a call stopped by the shutdown, whose answer was never sent, is not
/// `completed`.)
fn short_grace_aborts_cooperative_handlers(tr: Tr, mode: Mode) {
    let mut fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    let tag = next_tag();
    let call = c.slow(Slow {
        tag,
        ms: 20_000,
        gated: true,
    });
    fix.state.wait_started(tag);
    let server = fix.take_server();
    let t0 = Instant::now();
    let stats = server.shutdown(Duration::from_millis(100));
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "{case}: shutdown with a 100 ms grace took {took:?}"
    );
    assert_eq!(
        fix.state.wait_stopped(tag),
        Stop::ShuttingDown,
        "{case}: the handler was told why"
    );
    let t1 = Instant::now();
    assert_eq!(call.wait(), Err(RpcError::ServerGone), "{case}");
    assert!(
        t1.elapsed() < Duration::from_secs(5),
        "{case}: the caller learned after {:?}",
        t1.elapsed()
    );
    assert_eq!(c.add((1, 1)).wait(), Err(RpcError::ServerGone), "{case}");
    if let Some(url) = &fix.url {
        assert_endpoint_gone(url, &case);
    }
    assert_eq!(
        stats.completed, 0,
        "{case}: the only call was stopped by the shutdown and never answered: {stats:?}"
    );
}

//! Deadlines: they travel to the server (the handler sees `Stop::DeadlineExceeded` and
//! a budget no larger than the caller's), the caller gets `DeadlineExceeded` long
//! before the call's nominal duration, a call whose budget already ran out is never
//! run (nor, inline, one whose deadline passed while it was queued), a call stopped by
//! its deadline is counted as such, and neither a handler that answers after its
//! deadline nor a stream that runs out of time breaks the connection.

use std::time::{Duration, Instant};

use shmlink::rpc::{RpcError, Stop};

use crate::support::kv::{Event, KvError, Slow, budget_of, next_tag, stop_of};
use crate::{Fixture, Mode, Tr, copts};

conformance!(
    deadline_is_carried_to_the_server,
    expired_budget_is_never_run,
    late_answer_keeps_the_connection_working,
    stream_deadline_stops_the_handler,
);

conformance_in!(Inline: call_whose_deadline_passed_while_queued_is_not_run);

/// (Inline on unix and tcp this used to fail at the check that the connection still
/// answers: the handler stopped by its deadline answers after it, see
/// `late_answer_keeps_the_connection_working`.)
fn deadline_is_carried_to_the_server(tr: Tr, mode: Mode) {
    const BUDGET: Duration = Duration::from_millis(50);
    const NOMINAL_MS: u64 = 20_000;
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();

    // Held, not waited: no cancel can reach the server, so only the deadline stops it.
    let tag = next_tag();
    let t0 = Instant::now();
    let call = c.with_timeout(BUDGET).slow(Slow {
        tag,
        ms: NOMINAL_MS,
        gated: false,
    });
    let stop = fix.state.wait_stopped(tag);
    assert_eq!(
        stop,
        Stop::DeadlineExceeded,
        "{case}: the handler saw the caller's deadline"
    );
    let budget = budget_of(&fix.state.events(tag));
    assert!(
        budget.is_some_and(|b| b <= BUDGET),
        "{case}: the handler's time left {budget:?} is within the caller's {BUDGET:?}"
    );
    assert_eq!(call.wait(), Err(RpcError::DeadlineExceeded), "{case}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "{case}: took {:?} for a {BUDGET:?} budget on a {NOMINAL_MS} ms call",
        t0.elapsed()
    );

    // Waited: the caller gives up at its deadline, and the handler stops early (by the
    // deadline, or by the cancel that follows the caller's giving up).
    let tag = next_tag();
    let t0 = Instant::now();
    let r = c
        .with_timeout(BUDGET)
        .slow(Slow {
            tag,
            ms: NOMINAL_MS,
            gated: false,
        })
        .wait();
    let took = t0.elapsed();
    assert_eq!(r, Err(RpcError::DeadlineExceeded), "{case}");
    assert!(took >= BUDGET, "{case}: gave up after {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "{case}: gave up after {took:?}"
    );
    if mode.workers() == 0 {
        // Inline, the reader was still busy with the first call (which lingers after
        // its deadline), so this one queued; its caller's cancel was read before it
        // started, and it never ran.
        fix.wait_stats("the queued call counted as cancelled", |s| s.cancelled >= 1);
        assert_eq!(
            fix.state.events(tag),
            [],
            "{case}: the given-up call never ran"
        );
    } else {
        let stop = fix.state.wait_stopped(tag);
        assert!(
            matches!(stop, Stop::DeadlineExceeded | Stop::Cancelled),
            "{case}: {stop:?}"
        );
    }

    // The connection is fine afterwards, with the client's default budget.
    assert_eq!(
        c.with_timeout(Duration::from_secs(5)).add((1, 2)).wait(),
        Ok(3),
        "{case}: the connection after calls that ran out of time"
    );
    let tag = next_tag();
    assert_eq!(
        c.slow(Slow {
            tag,
            ms: 1,
            gated: false
        })
        .wait(),
        Ok(tag),
        "{case}"
    );
    let budget = budget_of(&fix.state.events(tag));
    assert!(
        budget.is_some_and(|b| b > Duration::from_secs(5) && b <= copts().timeout),
        "{case}: the default budget reached the server: {budget:?}"
    );
}

fn expired_budget_is_never_run(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    let (t1, t2) = (next_tag(), next_tag());
    let slow = |tag| Slow {
        tag,
        ms: 1,
        gated: false,
    };
    assert_eq!(
        c.with_deadline(Instant::now()).slow(slow(t1)).wait(),
        Err(RpcError::DeadlineExceeded),
        "{case}: deadline now"
    );
    assert_eq!(
        c.with_timeout(Duration::ZERO).slow(slow(t2)).wait(),
        Err(RpcError::DeadlineExceeded),
        "{case}: zero budget"
    );
    // The server reads a connection's frames in order: once a later call on it was
    // answered, the expired ones were seen (or never sent).
    assert_eq!(c.add((1, 2)).wait(), Ok(3), "{case}");
    assert_eq!(fix.state.events(t1), vec![], "{case}: expired call ran");
    assert_eq!(fix.state.events(t2), vec![], "{case}: expired call ran");
    assert_eq!(c.raw().in_flight(), 0, "{case}");
}

/// Inline mode: a call whose deadline passes while it waits in the connection behind
/// a running handler (its caller gave up and cancelled) must not be run once the
/// reader gets to it: "the server does not start a call whose deadline passed".
///
/// Before e8c0378 this failed: the deadline travels as a budget that the server
/// started counting when it *read* the request (`on_request`, src/rpc/server.rs), so
/// time spent queued in the transport was not charged, and the cancel that follows
/// the request was only read after the call ran.
fn call_whose_deadline_passed_while_queued_is_not_run(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    let gate = next_tag();
    let held = c.slow(Slow {
        tag: gate,
        ms: 20_000,
        gated: true,
    });
    fix.state.wait_started(gate);
    let tag = next_tag();
    let r = c
        .with_timeout(Duration::from_millis(100))
        .slow(Slow {
            tag,
            ms: 1,
            gated: false,
        })
        .wait();
    assert_eq!(r, Err(RpcError::DeadlineExceeded), "{case}");
    fix.state.release(gate);
    assert_eq!(held.wait(), Ok(gate), "{case}");
    assert_eq!(c.add((1, 2)).wait(), Ok(3), "{case}");
    assert_eq!(
        fix.state.events(tag),
        vec![],
        "{case}: the server ran a call whose deadline had passed (and whose caller had \
         cancelled it) while it waited behind the inline handler"
    );
}

/// A handler stopped by its call's deadline is counted as `deadline_exceeded` ("calls
/// not started, or stopped, because their deadline passed"), not `completed`.
///
/// Before e8c0378 this failed: `run_call` (src/rpc/server.rs) looked only at the
/// cancel/abort flags after the handler returned, so such a call counted as
/// `completed`.
#[test]
#[cfg_attr(miri, ignore = "real-time deadlines; slow under Miri")]
fn call_stopped_by_its_deadline_is_counted_as_such() {
    for mode in [Mode::Pool, Mode::Inline] {
        let fix = Fixture::new(Tr::Pair, mode);
        let case = fix.label();
        let c = fix.client();
        let tag = next_tag();
        // Held, not waited: no cancel; the handler lingers, then answers.
        let call = c.with_timeout(Duration::from_millis(50)).slow(Slow {
            tag,
            ms: 20_000,
            gated: false,
        });
        assert_eq!(
            fix.state.wait_stopped(tag),
            Stop::DeadlineExceeded,
            "{case}"
        );
        let stats = fix.wait_stats("the call", |s| {
            s.completed + s.cancelled + s.deadline_exceeded >= 1
        });
        drop(call);
        assert_eq!(
            (stats.deadline_exceeded, stats.completed),
            (1, 0),
            "{case}: {stats:?}"
        );
    }
}

/// A handler that overruns its deadline (ignoring its context) answers late, with
/// nobody having cancelled the call: the caller may take or drop that answer, but the
/// connection must keep working.
///
/// Before e8c0378 this failed on unix and tcp: `Conn::send` (src/rpc/server.rs) sends
/// the answer with the call's deadline, which has passed; the socket sender refused a
/// passed deadline before trying (`plan_timeout` in src/transport/socket.rs), and
/// `Conn::send` then marked the whole connection gone: the server kept reading and
/// running requests but dropped every later answer.
fn late_answer_keeps_the_connection_working(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    let tag = next_tag();
    let call = c.with_timeout(Duration::from_millis(50)).nap(Slow {
        tag,
        ms: 200,
        gated: false,
    });
    fix.state
        .wait_until(tag, "finish", |e| e.contains(&Event::Finished));
    // Counted once its answer went out (or failed to).
    fix.wait_stats("the late call", |s| {
        s.completed + s.cancelled + s.deadline_exceeded >= 1
    });
    let r = call.wait();
    assert!(
        r == Ok(tag) || r == Err(RpcError::DeadlineExceeded),
        "{case}: {r:?}"
    );
    assert_eq!(
        c.with_timeout(Duration::from_secs(5)).add((1, 2)).wait(),
        Ok(3),
        "{case}: the connection after a late answer"
    );
    let other = fix.client();
    assert_eq!(other.add((2, 2)).wait(), Ok(4), "{case}: a new connection");
}

/// A stream whose deadline passes while the client keeps reading: the handler's
/// `Sink::send` reports `Stop::DeadlineExceeded`, the client's stream ends (with the
/// deadline, or the handler's error), and the connection keeps working.
///
/// Before e8c0378 this failed inline: an inline call's control block has unlimited
/// credits, and `CallCtl::take_credit` (src/rpc/mod.rs) then checked only the cancel
/// and abort flags, never the deadline; the handler streamed on until the transport
/// was full, where `Conn::send` timed out and marked the connection gone
/// (`Stop::Cancelled`, and later answers were dropped). On unix and tcp with the pool,
/// the handler's end goes out after the deadline: see
/// `late_answer_keeps_the_connection_working`.
fn stream_deadline_stops_the_handler(tr: Tr, mode: Mode) {
    const BUDGET: Duration = Duration::from_millis(300);
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    let tag = next_tag();
    let t0 = Instant::now();
    let mut s = c.with_timeout(BUDGET).endless(tag);
    let mut n = 0u64;
    let end = loop {
        if t0.elapsed() > BUDGET + Duration::from_secs(3) {
            panic!("{case}: the stream still ran 3 s past its {BUDGET:?} deadline ({n} items)");
        }
        match s.next() {
            Some(Ok(i)) => {
                assert_eq!(i, n, "{case}");
                n += 1;
            }
            other => break other,
        }
    };
    assert!(n > 0, "{case}: no item before the deadline");
    assert!(
        matches!(
            end,
            Some(Err(
                RpcError::DeadlineExceeded | RpcError::Service(KvError::Stopped(_))
            ))
        ),
        "{case}: the stream ended with {end:?} after {n} items"
    );
    // `s` is still held: no cancel was sent, only the deadline can stop the handler.
    let evs = fix
        .state
        .wait_until(tag, "closed sink", |e| stop_of(e).is_some());
    assert_eq!(
        stop_of(&evs),
        Some(Stop::DeadlineExceeded),
        "{case}: why the handler's sink refused: {evs:?}"
    );
    // Counted once the handler's end went out (or failed to); only then cancel.
    fix.wait_stats("the stream's end", |s| {
        s.completed + s.cancelled + s.deadline_exceeded >= 1
    });
    drop(s);
    assert_eq!(
        c.with_timeout(Duration::from_secs(5)).add((1, 2)).wait(),
        Ok(3),
        "{case}: the connection after a stream that ran out of time"
    );
}

//! Calls and errors: calls of every method, the service's own error
//! (`RpcError::Service`), unknown methods, undecodable requests, requests and responses
//! over the maximum frame; a panicking handler is `RpcError::Internal` and the server
//! keeps serving; 64 calls in flight on one connection, waited in reverse order; with
//! the pool, a call started first is answered after calls started later (out of
//! order); a response whose `Deserialize` panics: the panic reaches its caller's
//! `wait`, and the client keeps working, for later calls and for a caller already
//! waiting.

use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmlink::rpc::{ClientOptions, Context, RpcError, Server};
use shmlink::transport;

use crate::support::kv::{ADD_ID, CHECK_ID, COUNT_ID, ECHO_ID, Event, KvError, Slow, next_tag};
use crate::{Fixture, MAX_FRAME, Mode, Tr, copts, topts};

conformance!(
    basic_calls_and_errors,
    panicking_handler_is_internal_and_server_keeps_serving,
    many_calls_in_flight_on_one_connection,
);

conformance_in!(Pool: answers_come_out_of_order);

// ---- calls and errors ----

fn basic_calls_and_errors(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    assert_eq!(c.add((2, 3)).wait(), Ok(5), "{case}");
    assert_eq!(c.add((-7, 7)).wait(), Ok(0), "{case}");
    let text = "héllo, wörld ✓".to_owned();
    assert_eq!(c.echo(text.clone()).wait(), Ok(text), "{case}");
    assert_eq!(c.echo(String::new()).wait(), Ok(String::new()), "{case}");
    assert_eq!(c.put(("k".into(), "v1".into())).wait(), Ok(None), "{case}");
    assert_eq!(
        c.put(("k".into(), "v2".into())).wait(),
        Ok(Some("v1".into())),
        "{case}"
    );
    assert_eq!(c.get("k".into()).wait(), Ok("v2".into()), "{case}");

    // The service's own errors.
    let missing = c.get("nope".into()).wait();
    assert_eq!(
        missing,
        Err(RpcError::Service(KvError::NotFound("nope".into()))),
        "{case}"
    );
    assert_eq!(
        missing.unwrap_err().service_error(),
        Some(&KvError::NotFound("nope".into()))
    );
    assert_eq!(c.check(7).wait(), Ok(7), "{case}");
    assert_eq!(
        c.check(-3).wait(),
        Err(RpcError::Service(KvError::Negative(-3))),
        "{case}"
    );
    assert_eq!(
        c.add((i64::MAX, 1)).wait(),
        Err(RpcError::Service(KvError::Overflow)),
        "{case}"
    );

    // Raw calls with the ids the stub uses (the proptest below relies on them).
    let raw = c.raw();
    assert_eq!(
        raw.call::<_, i64, KvError>(ADD_ID, &(20i64, 22i64)).wait(),
        Ok(42),
        "{case}"
    );
    assert_eq!(
        raw.call::<_, String, KvError>(ECHO_ID, &"raw".to_owned())
            .wait(),
        Ok("raw".into()),
        "{case}"
    );
    assert_eq!(
        raw.call::<_, i64, KvError>(CHECK_ID, &-1i64).wait(),
        Err(RpcError::Service(KvError::Negative(-1))),
        "{case}"
    );
    let items: Result<Vec<u32>, RpcError<KvError>> = raw
        .call_stream::<_, u32, KvError>(COUNT_ID, &3u32)
        .collect();
    assert_eq!(items, Ok(vec![0, 1, 2]), "{case}");

    // The machinery's errors.
    assert_eq!(
        raw.call::<_, u32, KvError>(0xdead_beef, &1u32).wait(),
        Err(RpcError::UnknownMethod),
        "{case}"
    );
    assert_eq!(
        raw.call::<_, i64, KvError>(ADD_ID, &()).wait(),
        Err(RpcError::BadRequest),
        "{case}: `add` with an empty request"
    );
    assert!(c.raw().max_frame() <= MAX_FRAME, "{case}");
    assert_eq!(
        c.echo("x".repeat(MAX_FRAME)).wait(),
        Err(RpcError::TooLarge),
        "{case}: request over the maximum frame"
    );
    assert_eq!(
        c.big(MAX_FRAME as u32).wait(),
        Err(RpcError::TooLarge),
        "{case}: response over the maximum frame"
    );
    assert_eq!(
        c.big(1000).wait().map(|v| v.len()),
        Ok(1000),
        "{case}: a response that fits"
    );

    // The connection survived all of that.
    assert_eq!(c.add((40, 2)).wait(), Ok(42), "{case}");
    assert_eq!(c.raw().in_flight(), 0, "{case}");
    let stats = fix.stats();
    assert_eq!(stats.connections, 1, "{case}: {stats:?}");
    assert_eq!(stats.panicked, 0, "{case}: {stats:?}");
}

fn panicking_handler_is_internal_and_server_keeps_serving(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    assert_eq!(c.boom(1).wait(), Err(RpcError::Internal), "{case}");
    assert_eq!(
        c.add((20, 22)).wait(),
        Ok(42),
        "{case}: same connection after a panic"
    );
    assert_eq!(c.boom(2).wait(), Err(RpcError::Internal), "{case}");
    let items: Result<Vec<u32>, _> = c.count(5).collect();
    assert_eq!(items, Ok(vec![0, 1, 2, 3, 4]), "{case}");
    let other = fix.client();
    assert_eq!(
        other.echo("still here".into()).wait(),
        Ok("still here".into()),
        "{case}: a new connection after a panic"
    );
    assert_eq!(fix.stats().panicked, 2, "{case}");
}

// ---- many calls in flight ----

fn many_calls_in_flight_on_one_connection(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    let calls: Vec<_> = (0..64i64).map(|i| c.add((i, 1000))).collect();
    assert_eq!(c.raw().in_flight(), 64, "{case}");
    for (i, call) in calls.into_iter().enumerate().rev() {
        assert_eq!(call.wait(), Ok(i as i64 + 1000), "{case}: call {i}");
    }
    assert_eq!(c.raw().in_flight(), 0, "{case}");

    // Calls of every kind in flight at once, waited in another order.
    let a = c.echo("a".into());
    let b = c.check(-1);
    let d = c.get("nope".into());
    let e = c.add((1, 1));
    let mut s = c.count(3);
    assert_eq!(e.wait(), Ok(2), "{case}");
    assert_eq!(s.next(), Some(Ok(0)), "{case}");
    assert_eq!(
        d.wait(),
        Err(RpcError::Service(KvError::NotFound("nope".into()))),
        "{case}"
    );
    assert_eq!(s.next(), Some(Ok(1)), "{case}");
    assert_eq!(
        b.wait(),
        Err(RpcError::Service(KvError::Negative(-1))),
        "{case}"
    );
    assert_eq!(a.wait(), Ok("a".into()), "{case}");
    assert_eq!(s.collect::<Vec<_>>(), vec![Ok(2)], "{case}");
    assert_eq!(c.raw().in_flight(), 0, "{case}");
}

/// With the pool, a call started first (held on a gate) is answered after calls
/// started later.
fn answers_come_out_of_order(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let c = fix.client();
    let tag = next_tag();
    let held = c.slow(Slow {
        tag,
        ms: 20_000,
        gated: true,
    });
    fix.state.wait_started(tag);
    let fast: Vec<_> = (0..16i64).map(|i| c.add((i, i))).collect();
    for (i, call) in fast.into_iter().enumerate() {
        assert_eq!(call.wait(), Ok(2 * i as i64), "{case}: fast call {i}");
    }
    assert_eq!(
        fix.state.events(tag).len(),
        1,
        "{case}: the first call is still running"
    );
    assert_eq!(c.raw().in_flight(), 1, "{case}");
    fix.state.release(tag);
    assert_eq!(held.wait(), Ok(tag), "{case}");
    assert_eq!(
        fix.state.events(tag).last(),
        Some(&Event::Finished),
        "{case}"
    );
}

// ---- a response whose decoding panics ----

/// A response whose `Deserialize` panics when it holds 13: a bug in user code, run by
/// the client while it holds the connection's reading role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Touchy(pub u32);

impl<'de> Deserialize<'de> for Touchy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        assert_ne!(n, 13, "Touchy cannot decode 13");
        Ok(Touchy(n))
    }
}

/// A service answering with [`Touchy`].
#[allow(dead_code)]
mod picky {
    use super::{KvError, Touchy};
    shmlink::service! {
        pub trait Picky {
            client PickyClient;
            server PickyServer;
            error KvError;
            /// `Touchy(n)` after `ms` milliseconds.
            fn after(req: (u32, u64)) -> Touchy;
        }
    }
}

struct PickySvc;

impl picky::Picky for PickySvc {
    fn after(&self, _ctx: &Context, (n, ms): (u32, u64)) -> Result<Touchy, KvError> {
        thread::sleep(Duration::from_millis(ms));
        Ok(Touchy(n))
    }
}

/// A call whose response panics while it is decoded panics in its caller's `wait`
/// (the panic is the caller's own bug; it is not turned into an error), and the client
/// stays usable: a later call on it, and a call another thread was already waiting
/// for, both get their answers. (The reader that panicked gives the reading role up
/// and wakes a sleeper to take it over; before, the role stayed taken and every later
/// call slept until its deadline: `DeadlineExceeded` after 5 s here.)
#[test]
#[cfg_attr(miri, ignore = "real-time deadlines; slow under Miri")]
fn panicking_response_decoder_leaves_the_client_usable() {
    let server = Server::new(picky::PickyServer(PickySvc))
        .workers(4)
        .options(topts())
        .start_detached();
    let (mine, theirs) = transport::pair(&topts()).expect("pair");
    server.serve_connection(theirs);
    let opts = ClientOptions {
        timeout: Duration::from_secs(5),
        ..copts()
    };
    let c = picky::PickyClient::from_connection(mine, &opts).expect("rpc hello");
    let decode_13 = |c: &picky::PickyClient, ms: u64| {
        let call = c.after((13, ms));
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call.wait()))
    };

    // One caller: the call panics, the next one is answered.
    assert!(decode_13(&c, 0).is_err(), "decoding 13 must panic");
    let t0 = Instant::now();
    assert_eq!(c.after((1, 0)).wait(), Ok(Touchy(1)), "after the panic");
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());

    // Two callers: this thread reads (its answer comes after 100 ms, and panics);
    // the other one starts waiting meanwhile, for an answer due after 300 ms, which
    // nobody reads unless the role is handed over.
    let other = {
        let c = c.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(30));
            c.after((2, 300)).wait()
        })
    };
    assert!(decode_13(&c, 100).is_err(), "decoding 13 must panic");
    assert_eq!(other.join().expect("other caller"), Ok(Touchy(2)));
    assert_eq!(c.after((3, 0)).wait(), Ok(Touchy(3)));
    assert_eq!(c.raw().in_flight(), 0);
    drop(c);
    server.shutdown(Duration::from_secs(1));
}

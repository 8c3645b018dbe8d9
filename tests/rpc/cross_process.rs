//! Across processes (a child serves, see `tests/support`): calls and streams over shm,
//! unix and tcp; a SIGKILLed server fails every waiting caller with `ServerGone` long
//! before its deadline, and later calls at once.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use shmlink::rpc::{ConnectError, RpcError, Server};
use shmlink::transport;

use crate::support::kv::{KvClient, KvError, KvServer, Slow, State, Svc};
use crate::support::{self, Scenario, arg, report, unique_name};
use crate::{Tr, assert_endpoint_gone, copts, listen_url, topts};

const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

/// Child: serves the service at `url` with `workers` workers, reports `url=`, and
/// serves until the file `quit` exists (at most 60 s); then shuts down and reports
/// its counters.
pub(crate) fn serve_kv() {
    let state = Arc::new(State::reporting_starts());
    let workers: usize = arg("workers").parse().unwrap();
    let server = Server::new(KvServer(Svc(state)))
        .workers(workers)
        .options(topts())
        .serve(&arg("url"))
        .expect("serve");
    report(format!("url={}", server.url().expect("listener URL")));
    let quit = PathBuf::from(arg("quit"));
    let until = Instant::now() + Duration::from_secs(60);
    while !quit.exists() && Instant::now() < until {
        thread::sleep(Duration::from_millis(10));
    }
    let stats = server.shutdown(Duration::from_secs(2));
    report(format!("completed={}", stats.completed));
    report(format!("cancelled={}", stats.cancelled));
    report(format!("panicked={}", stats.panicked));
}

/// Starts a `serve_kv` child on `tr`; its URL and the quit file.
fn spawn_server(tr: Tr) -> (support::Child, String, PathBuf) {
    let quit = std::env::temp_dir().join(unique_name("rpc-quit"));
    let mut child = Scenario::new("serve_kv")
        .arg("url", listen_url(tr))
        .arg("workers", 4)
        .arg("quit", quit.display())
        .spawn();
    let line = child.wait_for("url=", CHILD_TIMEOUT);
    let url = line["url=".len()..].to_owned();
    (child, url, quit)
}

macro_rules! cross_process {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::Tr;
            #[test]
            #[cfg_attr(miri, ignore = "spawns a process")]
            fn shm() {
                super::$case(Tr::Shm);
            }
            #[test]
            #[cfg_attr(miri, ignore = "spawns a process")]
            fn unix() {
                super::$case(Tr::Unix);
            }
            #[test]
            #[cfg_attr(miri, ignore = "spawns a process")]
            fn tcp() {
                super::$case(Tr::Tcp);
            }
        }
    )*};
}

cross_process!(
    cross_process_calls_and_streams,
    sigkilled_server_fails_waiting_callers,
);

fn cross_process_calls_and_streams(tr: Tr) {
    let case = format!("{tr:?} across processes");
    let (child, url, quit) = spawn_server(tr);
    // Default options once; the tests' small frames after.
    let c = KvClient::connect(&url).expect("connect with defaults");
    assert_eq!(c.add((2, 40)).wait(), Ok(42), "{case}");
    drop(c);
    let c = KvClient::connect_with(&url, &copts()).expect("connect");
    let mut completed = 0;
    assert_eq!(c.echo("über".into()).wait(), Ok("über".into()), "{case}");
    assert_eq!(c.put(("a".into(), "1".into())).wait(), Ok(None), "{case}");
    assert_eq!(c.get("a".into()).wait(), Ok("1".into()), "{case}");
    assert_eq!(
        c.get("b".into()).wait(),
        Err(RpcError::Service(KvError::NotFound("b".into()))),
        "{case}"
    );
    assert_eq!(
        c.check(-5).wait(),
        Err(RpcError::Service(KvError::Negative(-5))),
        "{case}"
    );
    completed += 5;
    assert_eq!(c.boom(1).wait(), Err(RpcError::Internal), "{case}");
    let items: Result<Vec<u32>, _> = c.count(500).collect();
    assert_eq!(items, Ok((0..500).collect()), "{case}");
    let mut s = c.count_then_fail(3);
    assert_eq!(
        (&mut s).take(3).collect::<Vec<_>>(),
        vec![Ok(0), Ok(1), Ok(2)],
        "{case}"
    );
    assert_eq!(
        s.next(),
        Some(Err(RpcError::Service(KvError::StreamFailed(3)))),
        "{case}"
    );
    completed += 2;
    let calls: Vec<_> = (0..32i64).map(|i| c.add((i, -i))).collect();
    for call in calls.into_iter().rev() {
        assert_eq!(call.wait(), Ok(0), "{case}");
    }
    completed += 32;
    let t0 = Instant::now();
    let r = c
        .with_timeout(Duration::from_millis(50))
        .slow(Slow {
            tag: 1,
            ms: 20_000,
            gated: false,
        })
        .wait();
    assert_eq!(r, Err(RpcError::DeadlineExceeded), "{case}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{case}");
    // A second client, from another thread, at the same time as this one.
    let second = thread::spawn({
        let url = url.clone();
        move || {
            let c = KvClient::connect_with(&url, &copts()).expect("second connect");
            (0..100i64).all(|i| c.add((i, 1)).wait() == Ok(i + 1))
        }
    });
    for i in 0..100i64 {
        assert_eq!(c.add((i, 2)).wait(), Ok(i + 2), "{case}");
    }
    assert!(second.join().unwrap(), "{case}: the second client");
    completed += 200;

    std::fs::write(&quit, b"").unwrap();
    let done = child.success(CHILD_TIMEOUT);
    let _ = std::fs::remove_file(quit);
    let values = done.values();
    // Every call answered counts as served, also one hung up on right after its
    // answer (the second client's last, say).
    let served: u64 = values["completed"].parse().unwrap();
    assert!(
        served >= completed,
        "{case}: the child completed {served} calls (cancelled: {}), we made {completed}",
        values["cancelled"]
    );
    assert_eq!(values["panicked"], "1", "{case}");
    assert_eq!(c.add((1, 1)).wait(), Err(RpcError::ServerGone), "{case}");
    assert_endpoint_gone(&url, &case);
}

fn sigkilled_server_fails_waiting_callers(tr: Tr) {
    const CALLERS: u64 = 4;
    const DEADLINE: Duration = Duration::from_secs(10);
    let case = format!("{tr:?} server SIGKILLed");
    let (mut child, url, quit) = spawn_server(tr);
    let c = KvClient::connect_with(&url, &copts()).expect("connect");
    assert_eq!(c.add((1, 2)).wait(), Ok(3), "{case}");
    let callers: Vec<_> = (0..CALLERS)
        .map(|tag| {
            let c = c.with_timeout(DEADLINE);
            thread::spawn(move || {
                let r = c
                    .slow(Slow {
                        tag,
                        ms: 60_000,
                        gated: false,
                    })
                    .wait();
                (r, Instant::now())
            })
        })
        .collect();
    for _ in 0..CALLERS {
        child.wait_for("started=", CHILD_TIMEOUT);
    }
    let killed = Instant::now();
    child.kill();
    for (i, caller) in callers.into_iter().enumerate() {
        let (r, at) = caller.join().expect("caller thread");
        let after = at.saturating_duration_since(killed);
        println!("{case}: caller {i} got {r:?} {after:?} after the kill");
        assert_eq!(r, Err(RpcError::ServerGone), "{case}: caller {i}");
        assert!(
            after < Duration::from_secs(5),
            "{case}: caller {i} learned {after:?} after the kill"
        );
    }
    let t0 = Instant::now();
    assert_eq!(c.add((1, 1)).wait(), Err(RpcError::ServerGone), "{case}");
    assert_eq!(c.count(3).next(), Some(Err(RpcError::ServerGone)), "{case}");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "{case}: later calls took {:?}",
        t0.elapsed()
    );
    let err = KvClient::connect_with(&url, &copts()).expect_err("connect to a dead server");
    assert_eq!(
        err,
        ConnectError::Transport(transport::ConnectError::NoListener { url: url.clone() }),
        "{case}"
    );
    // What the killed server left behind.
    if let Some(name) = url.strip_prefix("shm://") {
        let _ = shmlink::segment::remove_stale(name);
    }
    if let Some(path) = url.strip_prefix("unix://") {
        let _ = std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(quit);
}

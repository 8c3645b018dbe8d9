//! Concurrency: 8 threads with a connection each, and 8 threads sharing one client,
//! each with two calls in flight at a time (and short streams on the shared client).

use std::thread;

use crate::support::kv::KvClient;
use crate::{Fixture, Mode, Tr};

conformance!(
    concurrent_clients_each_on_own_connection,
    concurrent_threads_share_one_client,
);

const THREADS: usize = 8;
const CALLS: usize = 200;

/// Thread `t`'s calls: distinct arguments, two calls in flight at a time, and (when
/// `streams`) a short stream now and then.
fn work(case: &str, t: usize, c: &KvClient, streams: bool) {
    for i in 0..CALLS {
        let a = (t * 1_000_000 + i) as i64;
        let sum = c.add((a, i as i64));
        let text = format!("t{t}-{i}");
        let echo = c.echo(text.clone());
        assert_eq!(sum.wait(), Ok(a + i as i64), "{case}: thread {t} call {i}");
        assert_eq!(echo.wait(), Ok(text), "{case}: thread {t} call {i}");
        if i % 20 == 0 {
            let key = format!("key-{t}-{i}");
            let value = format!("value-{t}-{i}");
            assert_eq!(
                c.put((key.clone(), value.clone())).wait(),
                Ok(None),
                "{case}"
            );
            assert_eq!(c.get(key).wait(), Ok(value), "{case}");
        }
        if streams && i % 50 == 0 {
            let n = 40 + t as u32;
            let items: Result<Vec<u32>, _> = c.count(n).collect();
            assert_eq!(
                items,
                Ok((0..n).collect()),
                "{case}: thread {t} stream at {i}"
            );
        }
    }
}

fn concurrent_clients_each_on_own_connection(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let clients: Vec<KvClient> = (0..THREADS).map(|_| fix.client()).collect();
    thread::scope(|s| {
        for (t, c) in clients.iter().enumerate() {
            let case = &case;
            s.spawn(move || work(case, t, c, false));
        }
    });
    let stats = fix.stats();
    assert_eq!(stats.connections, THREADS as u64, "{case}: {stats:?}");
    assert!(
        stats.completed >= (THREADS * CALLS * 2) as u64,
        "{case}: {stats:?}"
    );
}

fn concurrent_threads_share_one_client(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    let client = fix.client();
    thread::scope(|s| {
        for t in 0..THREADS {
            let c = client.clone();
            let case = &case;
            s.spawn(move || work(case, t, &c, true));
        }
    });
    assert_eq!(client.raw().in_flight(), 0, "{case}");
    let stats = fix.stats();
    assert_eq!(stats.connections, 1, "{case}: {stats:?}");
    assert!(
        stats.completed >= (THREADS * CALLS * 2) as u64,
        "{case}: {stats:?}"
    );
}

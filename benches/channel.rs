//! In-process channel throughput between two threads (heap channels): asynchronous
//! `send` against synchronous `send_acked`, for a plain-old-data `u64` and a serde
//! struct of about 100 encoded bytes, with crossbeam-channel as the same-run baseline
//! (bounded for `send`, zero-capacity rendezvous for `send_acked`). The cross-process
//! numbers, against ipc-channel and the rings, come from `shmlink bench channels`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use shmlink::channel::{Channel, Codec, Flavor, Options, Postcard, Raw};
use shmlink::sync::WaitMode;

/// Messages per run of an asynchronous case.
const ITEMS: u64 = 1 << 20;
/// Messages per run of an acknowledged case (each one is a round trip).
const ACKED: u64 = 1 << 15;
/// Messages per run of a serde case.
const QUOTES: u64 = 1 << 17;

/// The serde message: about 100 bytes in postcard (as in `shmlink bench channels`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Quote {
    id: u64,
    sent_ns: u64,
    exchange_ns: u64,
    symbol: String,
    price: f64,
    quantity: u32,
    levels: Vec<u32>,
}

impl Quote {
    fn new(id: u64) -> Self {
        const EPOCH_NS: u64 = 1_780_000_000_000_000_000;
        Self {
            id,
            sent_ns: EPOCH_NS + id * 1_000,
            exchange_ns: EPOCH_NS + id * 1_000 - 250,
            symbol: "ACME.XNAS".to_owned(),
            price: 101.25 + (id % 100) as f64 * 0.01,
            quantity: 100 + (id % 900) as u32,
            levels: (0..16)
                .map(|k| 2_500_000 + 1_000 * k + (id % 1_000) as u32)
                .collect(),
        }
    }
}

/// The sender and receiver bodies of one run.
type Pair = (Box<dyn FnOnce() + Send>, Box<dyn FnOnce() + Send>);

/// Runs the sender and receiver of `make()` on two threads `iters` times; returns the
/// time spent.
fn two_threads(iters: u64, mut make: impl FnMut() -> Pair) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let (send, recv) = make();
        let start = Instant::now();
        std::thread::scope(|s| {
            s.spawn(send);
            s.spawn(recv);
        });
        total += start.elapsed();
    }
    total
}

/// `n` messages made by `make` through a heap channel built with `opts`; acknowledged
/// sends if `acked`.
fn channel<T, C>(opts: Options, n: u64, acked: bool, make: fn(u64) -> T) -> Pair
where
    T: Send + 'static,
    C: Codec<T>,
{
    let ch = Channel::<T, C>::new(opts).unwrap();
    let mut tx = ch.sender().unwrap();
    let mut rx = ch.receiver().unwrap();
    (
        Box::new(move || {
            for i in 0..n {
                if acked {
                    tx.send_acked(make(i)).unwrap();
                } else {
                    tx.send(make(i)).unwrap();
                }
            }
        }),
        Box::new(move || {
            for _ in 0..n {
                black_box(rx.recv().unwrap());
            }
        }),
    )
}

/// As [`channel`] through crossbeam-channel `bounded(capacity)` (0: a rendezvous, whose
/// send returns once the receiver took the message).
fn crossbeam<T: Send + 'static>(capacity: usize, n: u64, make: fn(u64) -> T) -> Pair {
    let (tx, rx) = crossbeam_channel::bounded::<T>(capacity);
    (
        Box::new(move || {
            for i in 0..n {
                tx.send(make(i)).unwrap();
            }
        }),
        Box::new(move || {
            for _ in 0..n {
                black_box(rx.recv().unwrap());
            }
        }),
    )
}

fn pod(opts: Options, n: u64, acked: bool) -> Pair {
    channel::<u64, Raw>(opts, n, acked, |i| i)
}

fn quote(opts: Options, n: u64, acked: bool) -> Pair {
    channel::<Quote, Postcard>(opts, n, acked, Quote::new)
}

/// Functional check before timing: messages arrive in order, and an acknowledged send
/// returns after the other thread took its message.
fn check() {
    let ch = Channel::<Quote, Postcard>::new(Options::new().max_message(128)).unwrap();
    let (mut tx, mut rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
    tx.send(Quote::new(1)).unwrap();
    tx.send(Quote::new(2)).unwrap();
    assert_eq!(rx.recv().unwrap(), Quote::new(1));
    assert_eq!(rx.recv().unwrap(), Quote::new(2));
    let t = std::thread::spawn(move || (rx.recv().unwrap(), rx));
    tx.send_acked(Quote::new(3)).unwrap();
    assert!(ch.is_empty());
    assert_eq!(t.join().unwrap().0, Quote::new(3));
}

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
    n: u64,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    g
}

fn throughput(c: &mut Criterion) {
    check();
    let u64s = Options::new().capacity(4096);
    let spin = u64s.wait_mode(WaitMode::Spin);
    let quotes = Options::new().capacity(256).max_message(128);
    let quotes_spin = quotes.wait_mode(WaitMode::Spin);

    let mut g = group(c, "channel u64 send, 2 threads", ITEMS);
    g.bench_function("SPSC spin", |b| {
        b.iter_custom(|n| two_threads(n, || pod(spin, ITEMS, false)))
    });
    g.bench_function("SPSC blocking", |b| {
        b.iter_custom(|n| two_threads(n, || pod(u64s, ITEMS, false)))
    });
    g.bench_function("MPMC spin", |b| {
        b.iter_custom(|n| two_threads(n, || pod(spin.flavor(Flavor::Mpmc), ITEMS, false)))
    });
    g.bench_function("crossbeam bounded (baseline)", |b| {
        b.iter_custom(|n| two_threads(n, || crossbeam(4096, ITEMS, |i| i)))
    });
    g.finish();

    let mut g = group(c, "channel u64 send_acked, 2 threads", ACKED);
    g.bench_function("SPSC spin", |b| {
        b.iter_custom(|n| two_threads(n, || pod(spin, ACKED, true)))
    });
    g.bench_function("SPSC blocking", |b| {
        b.iter_custom(|n| two_threads(n, || pod(u64s, ACKED, true)))
    });
    g.bench_function("MPMC spin", |b| {
        b.iter_custom(|n| two_threads(n, || pod(spin.flavor(Flavor::Mpmc), ACKED, true)))
    });
    g.bench_function("crossbeam rendezvous (baseline)", |b| {
        b.iter_custom(|n| two_threads(n, || crossbeam(0, ACKED, |i| i)))
    });
    g.finish();

    let mut g = group(c, "channel serde Quote send, 2 threads", QUOTES);
    g.bench_function("SPSC spin", |b| {
        b.iter_custom(|n| two_threads(n, || quote(quotes_spin, QUOTES, false)))
    });
    g.bench_function("SPSC blocking", |b| {
        b.iter_custom(|n| two_threads(n, || quote(quotes, QUOTES, false)))
    });
    g.bench_function("crossbeam bounded, by value (baseline)", |b| {
        b.iter_custom(|n| two_threads(n, || crossbeam(1024, QUOTES, Quote::new)))
    });
    g.finish();

    let mut g = group(c, "channel serde Quote send_acked, 2 threads", ACKED);
    g.bench_function("SPSC spin", |b| {
        b.iter_custom(|n| two_threads(n, || quote(quotes_spin, ACKED, true)))
    });
    g.bench_function("SPSC blocking", |b| {
        b.iter_custom(|n| two_threads(n, || quote(quotes, ACKED, true)))
    });
    g.bench_function("crossbeam rendezvous, by value (baseline)", |b| {
        b.iter_custom(|n| two_threads(n, || crossbeam(0, ACKED, Quote::new)))
    });
    g.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);

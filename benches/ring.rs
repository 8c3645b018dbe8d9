//! In-process ring throughput between two threads, with same-run baselines (rtrb,
//! crossbeam-channel bounded). The cross-process numbers come from `shmlink bench rings`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shmlink::ring::Spsc;
use shmlink::sync::WaitMode;

const ITEMS: u64 = 1 << 20;
const CAPACITY: usize = 4096;

/// The producer and consumer bodies of one run.
type Pair = (Box<dyn FnOnce() + Send>, Box<dyn FnOnce() + Send>);

/// Runs `produce` and `consume` on two threads `iters` times; returns the time spent.
fn two_threads(iters: u64, mut make: impl FnMut() -> Pair) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let (produce, consume) = make();
        let start = Instant::now();
        std::thread::scope(|s| {
            s.spawn(produce);
            s.spawn(consume);
        });
        total += start.elapsed();
    }
    total
}

fn shmlink_single(mode: WaitMode) -> Pair {
    let ring = Spsc::<u64, _>::new(CAPACITY, mode).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    (
        Box::new(move || {
            for i in 0..ITEMS {
                let mut v = i;
                while let Err(e) = tx.try_push(v) {
                    v = e.into_inner();
                    std::hint::spin_loop();
                }
            }
        }),
        Box::new(move || {
            let mut n = 0;
            while n < ITEMS {
                if let Ok(v) = rx.try_pop() {
                    black_box(v);
                    n += 1;
                } else {
                    std::hint::spin_loop();
                }
            }
        }),
    )
}

fn shmlink_batched(batch: usize) -> Pair {
    let ring = Spsc::<u64, _>::new(CAPACITY, WaitMode::Spin).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    (
        Box::new(move || {
            let items: Vec<u64> = (0..batch as u64).collect();
            let mut sent = 0u64;
            while sent < ITEMS {
                let want = (ITEMS - sent).min(batch as u64) as usize;
                let n = tx.push_slice(&items[..want]);
                if n == 0 {
                    std::hint::spin_loop();
                }
                sent += n as u64;
            }
        }),
        Box::new(move || {
            let mut buf = vec![0u64; batch];
            let mut n = 0u64;
            while n < ITEMS {
                let got = rx.pop_slice(&mut buf);
                if got == 0 {
                    std::hint::spin_loop();
                }
                black_box(&buf);
                n += got as u64;
            }
        }),
    )
}

fn rtrb_single() -> Pair {
    let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(CAPACITY);
    (
        Box::new(move || {
            for i in 0..ITEMS {
                let mut v = i;
                while let Err(rtrb::PushError::Full(back)) = tx.push(v) {
                    v = back;
                    std::hint::spin_loop();
                }
            }
        }),
        Box::new(move || {
            let mut n = 0;
            while n < ITEMS {
                if let Ok(v) = rx.pop() {
                    black_box(v);
                    n += 1;
                } else {
                    std::hint::spin_loop();
                }
            }
        }),
    )
}

fn crossbeam_bounded() -> Pair {
    let (tx, rx) = crossbeam_channel::bounded::<u64>(CAPACITY);
    (
        Box::new(move || {
            for i in 0..ITEMS {
                tx.send(i).unwrap();
            }
        }),
        Box::new(move || {
            for _ in 0..ITEMS {
                black_box(rx.recv().unwrap());
            }
        }),
    )
}

fn throughput(c: &mut Criterion) {
    // Functional check before timing: the rings deliver in order.
    {
        let ring = Spsc::<u64, _>::new(8, WaitMode::Spin).unwrap();
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        tx.push_slice(&[1, 2, 3]);
        assert_eq!((rx.try_pop(), rx.try_pop()), (Ok(1), Ok(2)));
    }
    let mut g = c.benchmark_group("spsc u64 throughput, 2 threads");
    g.throughput(Throughput::Elements(ITEMS));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("shmlink single (spin)", |b| {
        b.iter_custom(|n| two_threads(n, || shmlink_single(WaitMode::Spin)))
    });
    g.bench_function("shmlink single (blocking)", |b| {
        b.iter_custom(|n| two_threads(n, || shmlink_single(WaitMode::Blocking)))
    });
    g.bench_function("shmlink batched 64", |b| {
        b.iter_custom(|n| two_threads(n, || shmlink_batched(64)))
    });
    g.bench_function("rtrb single (baseline)", |b| {
        b.iter_custom(|n| two_threads(n, rtrb_single))
    });
    g.bench_function("crossbeam bounded (baseline)", |b| {
        b.iter_custom(|n| two_threads(n, crossbeam_bounded))
    });
    g.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);

//! In-process costs of the `sync` objects (heap regions, one thread), with std
//! baselines. The cross-process numbers, against `pthread_mutex_t`, `sem_t` and
//! parking_lot, come from `shmlink bench sync`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shmlink::lock::{BakeryLock, LockError, Semaphore, SeqLock};

/// The seqlock payload: 64 bytes.
type Value = [u64; 8];

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));
    g
}

fn locks(c: &mut Criterion) {
    // Functional check before timing: the second participant is shut out while the
    // first holds the lock.
    let mut lock = BakeryLock::new(2).unwrap();
    let mut idle = lock.join().unwrap();
    {
        let _held = lock.lock().map_err(LockError::without_guard).unwrap();
        assert!(matches!(idle.try_lock(), Err(LockError::WouldBlock)));
    }
    let mutex = std::sync::Mutex::new(0u64);

    let mut g = group(c, "lock+unlock, uncontended");
    // The idle participant keeps its slot: the doorway scans it, as with two processes.
    g.bench_function("BakeryLock (2 slots)", |b| {
        b.iter(|| {
            drop(black_box(
                lock.lock().map_err(LockError::without_guard).unwrap(),
            ))
        })
    });
    g.bench_function("std Mutex (baseline)", |b| {
        b.iter(|| drop(black_box(mutex.lock().unwrap())))
    });
    g.finish();
    drop(idle);
}

fn semaphore(c: &mut Criterion) {
    let sem = Semaphore::new(1, 1).unwrap();
    sem.acquire().unwrap();
    assert!(sem.try_acquire().is_err());
    sem.release(1).unwrap();
    assert!(sem.release(1).is_err(), "the maximum is 1");

    let mut g = group(c, "semaphore acquire+release, uncontended");
    g.bench_function("Semaphore", |b| {
        b.iter(|| {
            sem.acquire().unwrap();
            sem.release(black_box(1)).unwrap();
        })
    });
    g.bench_function("Semaphore permit (owned), taken and dropped", |b| {
        b.iter(|| drop(black_box(sem.permit().unwrap())))
    });
    g.finish();
}

fn seqlock(c: &mut Criterion) {
    let lock = SeqLock::new(Value::default());
    let mut writer = lock.writer().unwrap();
    writer.write([7; 8]);
    assert_eq!(lock.read().unwrap(), [7; 8]);
    let rw = std::sync::RwLock::new([7u64; 8]);

    let mut g = group(c, "64 B read, no writer");
    g.bench_function("SeqLock read", |b| {
        b.iter(|| black_box(lock.read().unwrap()))
    });
    g.bench_function("SeqLock try_read", |b| {
        b.iter(|| black_box(lock.try_read().unwrap()))
    });
    g.bench_function("std RwLock read+copy (baseline)", |b| {
        b.iter(|| black_box(*rw.read().unwrap()))
    });
    g.finish();

    let mut g = group(c, "64 B write, no reader");
    let mut i = 0u64;
    g.bench_function("SeqLock write", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            writer.write(black_box([i; 8]));
        })
    });
    g.bench_function("std RwLock write (baseline)", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            *rw.write().unwrap() = black_box([i; 8]);
        })
    });
    g.finish();
}

criterion_group!(benches, locks, semaphore, seqlock);
criterion_main!(benches);

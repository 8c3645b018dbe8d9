//! The demo's shared-memory synchronization phase: a counter under a Bakery lock, a
//! semaphore-bounded pool of workers, and seqlock snapshots, with the parent and the
//! child process working on the same named objects.

use std::time::{Duration, Instant};

use shmlink::lock::{BakeryControl, BakeryMutex, LockError, Semaphore, SeqLock, SeqLockControl};
use shmlink::region::Region;
use shmlink::segment::ShmRegion;
use shmlink::sync::atomic::{AtomicU64, Ordering};

use super::{SPIN_LIMIT, builder};
use crate::Result;

/// Pool permits, and workers per process competing for them.
const PERMITS: u32 = 2;
const WORKERS: usize = 3;
/// Jobs per worker in the pool phase.
const JOBS: u64 = 200;
/// Snapshot words: a sequence number, six payload words, a checksum.
type Snapshot = [u64; 8];

/// Shared words of the pool phase and the seqlock phase: workers inside the pool now,
/// the most ever inside, and the reader's verified-snapshot count (0 until done).
type Board = [AtomicU64; 3];
const INSIDE: usize = 0;
const MAX_INSIDE: usize = 1;
const READER_DONE: usize = 2;

fn names(base: &str) -> [String; 4] {
    [
        format!("{base}.counter"),
        format!("{base}.pool"),
        format!("{base}.board"),
        format!("{base}.snapshot"),
    ]
}

/// The objects, created by the parent before the child starts.
pub struct Objects {
    counter: BakeryMutex<u64, ShmRegion<BakeryControl>>,
    pool: Semaphore<ShmRegion<shmlink::lock::SemaphoreState>>,
    board: ShmRegion<Board>,
    snapshot: SeqLock<Snapshot, ShmRegion<SeqLockControl>>,
}

/// Creates the phase's named objects (parent, before the child starts).
pub fn create(base: &str) -> Result<Objects> {
    let [counter, pool, board, snapshot] = names(base);
    let b = |n: &str| builder(n).unlink_on_drop(true);
    Ok(Objects {
        counter: BakeryMutex::create(b(&counter), 8, 0u64)?,
        pool: Semaphore::create(b(&pool), PERMITS, PERMITS)?,
        board: ShmRegion::<Board>::create(b(&board), 0)?,
        snapshot: SeqLock::create(b(&snapshot), checksummed(0))?,
    })
}

/// A snapshot whose last word checks the others.
fn checksummed(seq: u64) -> Snapshot {
    let mut s = [0u64; 8];
    s[0] = seq;
    for (k, word) in s.iter_mut().enumerate().take(7).skip(1) {
        *word = seq
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(k as u32 * 7);
    }
    s[7] = checksum(&s);
    s
}

fn checksum(s: &Snapshot) -> u64 {
    s[..7].iter().fold(0xcbf2_9ce4_8422_2325, |h, w| {
        (h ^ w).wrapping_mul(0x100_0000_01b3)
    })
}

/// Adds 1 to the shared counter `n` times under the Bakery lock; returns the time.
fn count(counter: &mut BakeryMutex<u64, ShmRegion<BakeryControl>>, n: u64) -> Result<Duration> {
    let started = Instant::now();
    for _ in 0..n {
        let mut guard = counter.lock().map_err(LockError::without_guard)?;
        guard.update(|v| *v += 1);
    }
    Ok(started.elapsed())
}

/// `WORKERS` threads each run `JOBS` jobs, each holding one of the pool's permits
/// for a few microseconds; records the most workers ever inside at once.
fn pool_jobs(pool: &Semaphore<ShmRegion<shmlink::lock::SemaphoreState>>, board: &Board) -> Result {
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                s.spawn(|| -> std::result::Result<(), String> {
                    for _ in 0..JOBS {
                        pool.acquire_timeout(SPIN_LIMIT)
                            .map_err(|e| e.to_string())?;
                        let now = board[INSIDE].fetch_add(1, Ordering::AcqRel) + 1;
                        board[MAX_INSIDE].fetch_max(now, Ordering::Relaxed);
                        let until = Instant::now() + Duration::from_micros(20);
                        while Instant::now() < until {
                            std::hint::spin_loop();
                        }
                        board[INSIDE].fetch_sub(1, Ordering::AcqRel);
                        pool.release(1).map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| "pool worker panicked")??;
        }
        Ok(())
    })
}

/// The parent's side, while the child runs [`child_phase`].
pub fn parent_phase(objs: &mut Objects, n: u64, child: &mut std::process::Child) -> Result {
    let me = std::process::id();
    let took = count(&mut objs.counter, n)?;
    println!(
        "[parent {me}] added {n} to a shared counter under the Bakery lock in {:.1} ms ({:.0} ns per lock+add+unlock, while the child does the same)",
        took.as_secs_f64() * 1e3,
        took.as_nanos() as f64 / n as f64
    );

    let started = Instant::now();
    pool_jobs(&objs.pool, objs.board.shared())?;
    println!(
        "[parent {me}] {WORKERS} worker threads ran {} jobs through a pool of {PERMITS} semaphore permits in {:.1} ms",
        WORKERS as u64 * JOBS,
        started.elapsed().as_secs_f64() * 1e3
    );

    // Seqlock: publish snapshots until the child's reader has verified its share.
    let mut writer = objs.snapshot.writer()?;
    let board = objs.board.shared();
    let started = Instant::now();
    let mut seq = 0u64;
    while board[READER_DONE].load(Ordering::Acquire) == 0 {
        seq += 1;
        writer.write(checksummed(seq));
        if seq.is_multiple_of(1024) {
            if let Some(status) = child.try_wait()? {
                return Err(format!("child exited early ({status}) in the seqlock phase").into());
            }
            if started.elapsed() > SPIN_LIMIT {
                return Err("seqlock reader never finished".into());
            }
        }
    }
    let elapsed = started.elapsed();
    println!(
        "[parent {me}] seqlock: published {seq} snapshots of 64 B ({:.1} M/s) while the child read them",
        seq as f64 / elapsed.as_secs_f64() / 1e6
    );
    Ok(())
}

/// After the child exited: checks the counter and the pool's high-water mark.
pub fn parent_finish(mut objs: Objects, n: u64) -> Result {
    let me = std::process::id();
    let board = objs.board.shared();
    let total = objs.counter.lock().map_err(LockError::without_guard)?.get();
    println!(
        "[parent {me}] counter = {total} (expected {}: no update lost); most workers ever inside the pool at once: {} of {PERMITS} permits",
        2 * n,
        board[MAX_INSIDE].load(Ordering::Relaxed)
    );
    if total != 2 * n {
        return Err(format!("Bakery counter is {total}, expected {}", 2 * n).into());
    }
    if board[MAX_INSIDE].load(Ordering::Relaxed) > u64::from(PERMITS) {
        return Err("the semaphore let too many workers in".into());
    }
    Ok(())
}

/// The child's side of the phase.
pub fn child_phase(base: &str, n: u64) -> Result {
    let me = std::process::id();
    let [counter, pool, board, snapshot] = names(base);
    let mut counter = BakeryMutex::<u64, _>::open(builder(&counter))?;
    let pool = Semaphore::open(builder(&pool))?;
    let board = ShmRegion::<Board>::open(builder(&board))?;
    let snapshot = SeqLock::<Snapshot, _>::open(builder(&snapshot))?;

    let took = count(&mut counter, n)?;
    println!(
        "[child {me}] added {n} to the counter under the Bakery lock (slot {}) in {:.1} ms",
        counter.as_lock().slot(),
        took.as_secs_f64() * 1e3
    );
    pool_jobs(&pool, board.shared())?;
    println!(
        "[child {me}] {WORKERS} more worker threads ran their {} jobs through the same pool",
        WORKERS as u64 * JOBS
    );

    // Read snapshots for a while, verifying each.
    let started = Instant::now();
    let (mut verified, mut last) = (0u64, 0u64);
    let mut read_time = Duration::ZERO;
    while started.elapsed() < Duration::from_millis(50) {
        let t = Instant::now();
        let s = snapshot.read()?;
        read_time += t.elapsed();
        if s[7] != checksum(&s) {
            return Err(format!("torn snapshot {s:?}").into());
        }
        if s[0] < last {
            return Err(format!("snapshot went back from {last} to {}", s[0]).into());
        }
        last = s[0];
        verified += 1;
    }
    board.shared()[READER_DONE].store(verified.max(1), Ordering::Release);
    println!(
        "[child {me}] seqlock: read and verified {verified} snapshots (checksums all good, never going back; last #{last}), {:.0} ns per read while the parent writes",
        read_time.as_nanos() as f64 / verified.max(1) as f64
    );
    Ok(())
}

//! `shmlink bench sync`: the `sync` objects against same-run baselines.
//!
//! The parent pins itself to core 0 and its child processes (this binary,
//! `bench-child --case sync-*`) to core 1, where the machine allows it, and measures,
//! in one run:
//! - uncontended lock+unlock of a [`BakeryLock`] in a named segment (blocking and spin
//!   mode), against a process-shared `pthread_mutex_t` in a shared mapping (plain and
//!   robust) and `parking_lot::Mutex`;
//! - a [`BakeryMutex`] counter incremented by two processes at once, against the same
//!   with a process-shared `pthread_mutex_t`: ns per acquisition, acquisitions/s, and
//!   how often the lock changed hands (the final count is checked);
//! - acquire+release of a [`Semaphore`], and an owned permit taken and dropped,
//!   against glibc's process-shared `sem_t`;
//! - a 64 B [`SeqLock`] read against a plain 64 B copy and a `std::sync::RwLock` read,
//!   and the same read while a writer process writes back to back (with the writer's
//!   rate alone and during the reads; the values read are checked for tearing).
//!
//! The uncontended numbers are medians of several batches of many calls, with the
//! cases interleaved batch by batch so that a slow spell of the machine (frequency,
//! neighbours) hits every case alike.

use std::hint::black_box;
use std::io;
use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

use shmlink::lock::{BakeryControl, BakeryLock, BakeryMutex, LockError, Semaphore, SeqLock};
use shmlink::lock::{SeqLockControl, SeqWriter};
use shmlink::region::{RawArea, Region};
use shmlink::segment::ShmRegion;
use shmlink::sync::WaitMode;
use shmlink::sync::atomic::{AtomicU64, Ordering};

use super::{
    Case, Goal, LIMIT, Measurement, Runner, builder, finish, interleaved, median, pin,
    print_goal_table, print_json, spin_until,
};
use crate::Result;

/// Control word states of the start/stop handshake with a child.
const READY: u64 = 1;
const GO: u64 = 2;
const DONE: u64 = 3;

/// Area bytes of a region holding a libc object at offset 0 and a counter word.
const OBJECT_AREA: usize = 256;
/// Offset of the [`Tally`] words (their own line, away from the lock word).
const COUNTER_AT: usize = 128;

/// What the contended cases keep under the lock: `[count, last holder, handoffs]`.
type Tally = [u64; 3];

/// Counts one acquisition by participant `me` (1 or 2) into `t`.
#[inline(always)]
fn tally(t: &mut Tally, me: u64) {
    t[0] += 1;
    if t[1] != me {
        t[1] = me;
        t[2] += 1;
    }
}

/// The value the seqlock cases read: 64 bytes.
type Value = [u64; 8];
const VALUE: Value = [1, 2, 3, 4, 5, 6, 7, 8];

/// Iteration counts of one run.
struct Plan {
    /// Interleaved batches per uncontended case (after one warm-up batch).
    rounds: usize,
    /// Calls per batch of the lock and semaphore cases.
    lock_iters: u64,
    /// Calls per batch of the read cases.
    read_iters: u64,
    /// Acquisitions per process in the contended cases.
    contended: u64,
    /// Repetitions of each contended case (interleaved; medians reported).
    reps: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                rounds: 5,
                lock_iters: 20_000,
                read_iters: 100_000,
                contended: 50_000,
                reps: 1,
            }
        } else {
            Self {
                rounds: 21,
                lock_iters: 500_000,
                read_iters: 2_000_000,
                contended: 500_000,
                reps: 5,
            }
        }
    }
}

fn os_error(call: &str, rc: libc::c_int) -> Box<dyn std::error::Error> {
    format!("{call}: {}", io::Error::from_raw_os_error(rc)).into()
}

/// Initialises a process-shared (and, if `robust`, robust) `pthread_mutex_t` at `m`.
///
/// # Safety
///
/// `m` is valid for writes of a `pthread_mutex_t`, aligned for it, and not in use by
/// anyone (not yet shared).
unsafe fn init_pthread_mutex(m: *mut libc::pthread_mutex_t, robust: bool) -> libc::c_int {
    let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    let a = attr.as_mut_ptr();
    // SAFETY: `a` points to writable attribute storage on this frame, initialised by
    // the first call and destroyed by the last; `m` is valid and unused (our contract).
    unsafe {
        let mut rc = libc::pthread_mutexattr_init(a);
        if rc != 0 {
            return rc;
        }
        rc = libc::pthread_mutexattr_setpshared(a, libc::PTHREAD_PROCESS_SHARED);
        if rc == 0 && robust {
            rc = libc::pthread_mutexattr_setrobust(a, libc::PTHREAD_MUTEX_ROBUST);
        }
        if rc == 0 {
            rc = libc::pthread_mutex_init(m, a);
        }
        libc::pthread_mutexattr_destroy(a);
        rc
    }
}

/// A process-shared `pthread_mutex_t` at offset 0 of a named region's area, a counter
/// word at [`COUNTER_AT`], and the region's control word for the start handshake.
struct PthreadMutex {
    region: ShmRegion<AtomicU64>,
    area: RawArea,
    creator: bool,
}

impl PthreadMutex {
    fn create(name: &str, robust: bool) -> Result<Self> {
        let mut rc = 0;
        let region = ShmRegion::<AtomicU64>::create_with(
            builder(name).unlink_on_drop(true),
            OBJECT_AREA,
            |_, area| {
                // SAFETY: the area is OBJECT_AREA (256) bytes, 128-aligned, so it holds
                // a pthread_mutex_t (40 bytes, align 8) at offset 0; nobody else can
                // open the segment before this closure returns.
                rc = unsafe { init_pthread_mutex(area.as_ptr().cast(), robust) };
            },
        )?;
        if rc != 0 {
            return Err(os_error("pthread_mutex_init", rc));
        }
        let area = region.area();
        Ok(Self {
            region,
            area,
            creator: true,
        })
    }

    fn open(name: &str) -> Result<Self> {
        let region = ShmRegion::<AtomicU64>::open(builder(name))?;
        let area = region.area();
        if area.len() < OBJECT_AREA {
            return Err("pthread mutex segment too small".into());
        }
        Ok(Self {
            region,
            area,
            creator: false,
        })
    }

    fn ptr(&self) -> *mut libc::pthread_mutex_t {
        self.area.as_ptr().cast()
    }

    #[inline]
    fn lock(&self) -> Result {
        // SAFETY: the creator initialised the mutex before publishing the segment; the
        // mapping lives as long as self.
        let rc = unsafe { libc::pthread_mutex_lock(self.ptr()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(os_error("pthread_mutex_lock", rc))
        }
    }

    #[inline]
    fn unlock(&self) -> Result {
        // SAFETY: as in `lock`; only called by the thread that locked it.
        let rc = unsafe { libc::pthread_mutex_unlock(self.ptr()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(os_error("pthread_mutex_unlock", rc))
        }
    }

    /// Word `k` of the [`Tally`] protected by the mutex.
    fn tally_word(&self, k: usize) -> &AtomicU64 {
        debug_assert!(k < 3);
        // SAFETY: COUNTER_AT + 24 <= OBJECT_AREA <= area length (checked at open), and
        // 8-aligned; the region lives as long as self; the words are only accessed
        // atomically.
        unsafe { self.area.atomic_u64(COUNTER_AT + 8 * k) }
    }

    /// A copy of the [`Tally`] (meaningful while holding the lock or once alone).
    fn tally(&self) -> Tally {
        core::array::from_fn(|k| self.tally_word(k).load(Ordering::Relaxed))
    }

    fn set_tally(&self, t: &Tally) {
        for (k, v) in t.iter().enumerate() {
            self.tally_word(k).store(*v, Ordering::Relaxed);
        }
    }

    fn control(&self) -> &AtomicU64 {
        self.region.shared()
    }
}

impl Drop for PthreadMutex {
    fn drop(&mut self) {
        if self.creator {
            // SAFETY: initialised at creation; the bench children have exited (or been
            // killed) by the time the creator drops it, so nobody uses it any more.
            unsafe { libc::pthread_mutex_destroy(self.ptr()) };
        }
    }
}

/// A glibc `sem_t` initialised with `pshared = 1` at offset 0 of a named region.
struct PosixSem {
    _region: ShmRegion<AtomicU64>,
    area: RawArea,
}

impl PosixSem {
    fn create(name: &str, initial: u32) -> Result<Self> {
        let mut rc = 0;
        let region = ShmRegion::<AtomicU64>::create_with(
            builder(name).unlink_on_drop(true),
            OBJECT_AREA,
            |_, area| {
                // SAFETY: the area holds a sem_t (32 bytes, align 8) at offset 0 and is
                // not published yet.
                rc = unsafe { libc::sem_init(area.as_ptr().cast(), 1, initial) };
            },
        )?;
        if rc != 0 {
            return Err(format!("sem_init: {}", io::Error::last_os_error()).into());
        }
        let area = region.area();
        Ok(Self {
            _region: region,
            area,
        })
    }

    fn ptr(&self) -> *mut libc::sem_t {
        self.area.as_ptr().cast()
    }

    #[inline]
    fn wait(&self) -> Result {
        loop {
            // SAFETY: initialised at creation; the mapping lives as long as self.
            if unsafe { libc::sem_wait(self.ptr()) } == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(format!("sem_wait: {e}").into());
            }
        }
    }

    #[inline]
    fn post(&self) -> Result {
        // SAFETY: as in `wait`.
        if unsafe { libc::sem_post(self.ptr()) } == 0 {
            Ok(())
        } else {
            Err(format!("sem_post: {}", io::Error::last_os_error()).into())
        }
    }
}

impl Drop for PosixSem {
    fn drop(&mut self) {
        // SAFETY: initialised at creation; only this process ever used it.
        unsafe { libc::sem_destroy(self.ptr()) };
    }
}

/// Nanoseconds per call of `op`, over `iters` calls.
#[inline(always)]
fn per_call(iters: u64, mut op: impl FnMut() -> Result) -> Result<f64> {
    let started = Instant::now();
    for _ in 0..iters {
        op()?;
    }
    Ok(started.elapsed().as_nanos() as f64 / iters as f64)
}

/// Bakery (idle second participant), Bakery in spin mode (idem)]`.
fn locks_uncontended(r: &mut Runner, p: &Plan) -> Result<[f64; 5]> {
    let mut bakery = BakeryLock::create(builder(&r.name("bakery")).unlink_on_drop(true), 2)?;
    // The usual two-process layout: another participant holds a slot but does not
    // lock, so the doorway scans its slot (one shared, unchanging line).
    let _idle = bakery.join()?;
    let mut spin = BakeryLock::create_with_mode(
        builder(&r.name("bakery-spin")).unlink_on_drop(true),
        2,
        WaitMode::Spin,
    )?;
    let _idle_spin = spin.join()?;
    let pthread = PthreadMutex::create(&r.name("pmx"), false)?;
    let robust = PthreadMutex::create(&r.name("pmxr"), true)?;
    let pl = parking_lot::Mutex::new(0u64);
    let mut cases: [Case<'_>; 5] = [
        Box::new(|n| {
            per_call(n, || {
                pthread.lock()?;
                pthread.unlock()
            })
        }),
        Box::new(|n| {
            per_call(n, || {
                robust.lock()?;
                robust.unlock()
            })
        }),
        Box::new(|n| {
            per_call(n, || {
                drop(black_box(pl.lock()));
                Ok(())
            })
        }),
        Box::new(|n| {
            per_call(n, || {
                drop(black_box(bakery.lock().map_err(LockError::without_guard)?));
                Ok(())
            })
        }),
        Box::new(|n| {
            per_call(n, || {
                drop(black_box(spin.lock().map_err(LockError::without_guard)?));
                Ok(())
            })
        }),
    ];
    let m = interleaved(p.rounds, p.lock_iters, &mut cases)?;
    Ok([m[0], m[1], m[2], m[3], m[4]])
}

/// Uncontended acquire+release, ns per pair: `[sem_t, Semaphore, Semaphore permit
/// taken and dropped (owned)]`.
fn semaphores(r: &mut Runner, p: &Plan) -> Result<[f64; 3]> {
    let posix = PosixSem::create(&r.name("psem"), 1)?;
    let sem = Semaphore::create(builder(&r.name("sem")).unlink_on_drop(true), 1, 1)?;
    let mut cases: [Case<'_>; 3] = [
        Box::new(|n| {
            per_call(n, || {
                posix.wait()?;
                posix.post()
            })
        }),
        Box::new(|n| {
            per_call(n, || {
                sem.acquire()?;
                Ok(sem.release(1)?)
            })
        }),
        Box::new(|n| {
            per_call(n, || {
                drop(sem.permit()?);
                Ok(())
            })
        }),
    ];
    let m = interleaved(p.rounds, p.lock_iters, &mut cases)?;
    Ok([m[0], m[1], m[2]])
}

/// 64 B reads with no writer, ns per read: `[plain copy, RwLock read, SeqLock read,
/// SeqLock try_read]`.
fn reads(r: &mut Runner, p: &Plan) -> Result<[f64; 4]> {
    let lock = SeqLock::create(builder(&r.name("seq")).unlink_on_drop(true), [0u64; 8])?;
    lock.writer()?.write(VALUE);
    let plain: Box<Value> = Box::new(VALUE);
    let rw = std::sync::RwLock::new(VALUE);
    let mut cases: [Case<'_>; 4] = [
        // black_box on the reference: the compiler must load the 64 bytes each time;
        // black_box on the copy: and must materialise it.
        Box::new(|n| {
            per_call(n, || {
                black_box(*black_box(&*plain));
                Ok(())
            })
        }),
        Box::new(|n| {
            per_call(n, || {
                black_box(*rw.read().map_err(|_| "RwLock poisoned")?);
                Ok(())
            })
        }),
        Box::new(|n| {
            per_call(n, || {
                black_box(lock.read()?);
                Ok(())
            })
        }),
        Box::new(|n| {
            per_call(n, || {
                black_box(lock.try_read()?);
                Ok(())
            })
        }),
    ];
    let m = interleaved(p.rounds, p.read_iters, &mut cases)?;
    if lock.read()? != VALUE {
        return Err("seqlock read a wrong value".into());
    }
    Ok([m[0], m[1], m[2], m[3]])
}

/// 64 B seqlock reads while a child process writes back to back: `[ns per read,
/// writes/s while nobody reads, writes/s during the reads]`; every value read is
/// checked for tearing after the timed batches.
fn reads_with_writer(r: &mut Runner, p: &Plan) -> Result<[f64; 3]> {
    let (name, ctl) = (r.name("seqw"), r.name("ctl"));
    let lock = SeqLock::create(builder(&name).unlink_on_drop(true), [0u64; 8])?;
    let control = ShmRegion::<AtomicU64>::create(builder(&ctl).unlink_on_drop(true), 0)?;
    let child = r.child("sync-seqlock-writer", &format!("{name},{ctl}"), 0)?;
    let word = control.shared();
    let measured = (|| -> Result<[f64; 3]> {
        spin_until(word, READY)?;
        let (v0, t0) = (lock.version(), Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let alone = (lock.version() - v0) as f64 / t0.elapsed().as_secs_f64();
        let iters = (p.read_iters / 10).max(1);
        let (v0, t0) = (lock.version(), Instant::now());
        let mut samples = Vec::with_capacity(p.rounds);
        for _ in 0..p.rounds {
            samples.push(per_call(iters, || {
                black_box(lock.read()?);
                Ok(())
            })?);
        }
        let writes = (lock.version() - v0) as f64 / t0.elapsed().as_secs_f64();
        for _ in 0..iters {
            let v = lock.read()?;
            if v.iter().any(|&x| x != v[0]) {
                return Err(format!("seqlock: torn read {v:?}").into());
            }
        }
        Ok([median(samples), alone, writes])
    })();
    // Stop the writer whatever happened (GO doubles as "stop" for this case).
    word.store(GO, Ordering::Release);
    finish(child)?;
    measured
}

/// The parent side of the start handshake on `word`: waits for the child's READY,
/// says GO, runs `body`, waits for the child's DONE; returns the wall time from GO to
/// both sides done.
fn race(word: &AtomicU64, body: impl FnOnce() -> Result) -> Result<Duration> {
    spin_until(word, READY)?;
    let started = Instant::now();
    word.store(GO, Ordering::Release);
    body()?;
    spin_until(word, DONE)?;
    Ok(started.elapsed())
}

/// The child side of [`race`].
fn race_child(word: &AtomicU64, body: impl FnOnce() -> Result) -> Result {
    word.store(READY, Ordering::Release);
    spin_until(word, GO)?;
    body()?;
    word.store(DONE, Ordering::Release);
    Ok(())
}

type ShmBakeryMutex = BakeryMutex<Tally, ShmRegion<BakeryControl>>;

fn bakery_increments(m: &mut ShmBakeryMutex, me: u64, n: u64) -> Result {
    for _ in 0..n {
        m.lock()
            .map_err(LockError::without_guard)?
            .update(|t| tally(t, me));
    }
    Ok(())
}

fn pthread_increments(m: &PthreadMutex, me: u64, n: u64) -> Result {
    for _ in 0..n {
        m.lock()?;
        let mut t = m.tally();
        tally(&mut t, me);
        m.set_tally(&t);
        m.unlock()?;
    }
    Ok(())
}

/// A contended run: ns per acquisition (wall time / 2n) and the fraction of
/// acquisitions that took the lock from the other process.
struct Contended {
    ns: f64,
    handoffs: f64,
}

impl Contended {
    fn check(what: &str, t: Tally, n: u64, elapsed: Duration) -> Result<Self> {
        if t[0] != 2 * n {
            return Err(format!("{what}: counted {}, expected {}", t[0], 2 * n).into());
        }
        Ok(Self {
            ns: elapsed.as_nanos() as f64 / (2 * n) as f64,
            handoffs: t[2] as f64 / (2 * n) as f64,
        })
    }
}

/// Two processes count `n` acquisitions each into a [`BakeryMutex`].
fn bakery_contended(r: &mut Runner, n: u64) -> Result<Contended> {
    let (mx, ctl) = (r.name("bmx"), r.name("ctl"));
    let mut m = BakeryMutex::create(builder(&mx).unlink_on_drop(true), 2, Tally::default())?;
    let control = ShmRegion::<AtomicU64>::create(builder(&ctl).unlink_on_drop(true), 0)?;
    let child = r.child("sync-bakery", &format!("{mx},{ctl}"), n)?;
    let elapsed = race(control.shared(), || bakery_increments(&mut m, 1, n))?;
    finish(child)?;
    let t = m.lock().map_err(LockError::without_guard)?.get();
    Contended::check("bakery", t, n, elapsed)
}

/// As [`bakery_contended`], with a process-shared `pthread_mutex_t`.
fn pthread_contended(r: &mut Runner, n: u64) -> Result<Contended> {
    let name = r.name("pmxc");
    let m = PthreadMutex::create(&name, false)?;
    let child = r.child("sync-pthread", &name, n)?;
    let elapsed = race(m.control(), || pthread_increments(&m, 1, n))?;
    finish(child)?;
    Contended::check("pthread", m.tally(), n, elapsed)
}

/// Prints the table, with each goal (a ratio ceiling) next to its line.
fn print_table(results: &[Measurement], goals: &[Option<f64>], r: &Runner) {
    let goals: Vec<Option<Goal>> = goals.iter().map(|g| g.map(Goal::AtMost)).collect();
    print_goal_table(
        &format!("shmlink bench sync ({})", r.placement("parent", "child")),
        "lower is better for ns, higher for /s",
        results,
        &goals,
    );
}

/// Runs the `sync` suite.
pub fn sync(json: bool, quick: bool) -> Result {
    let mut r = Runner::start("bench-sync");
    let p = Plan::new(quick);
    let mut out: Vec<(Measurement, Option<f64>)> = Vec::new();

    let [pthread, robust, pl, bakery, spin] = locks_uncontended(&mut r, &p)?;
    let pthread = Measurement::new(
        "pthread_mutex_t pshared lock+unlock (baseline)",
        "ns",
        pthread,
    );
    let robust = Measurement::new(
        "pthread_mutex_t pshared+robust lock+unlock (reference)",
        "ns",
        robust,
    );
    let pl = Measurement::new("parking_lot::Mutex lock+unlock (baseline)", "ns", pl);
    let bakery_name = "BakeryLock lock+unlock uncontended (2 slots)";
    let bakery_pl =
        Measurement::new(format!("{bakery_name} vs parking_lot"), "ns", bakery).against(&pl);
    let bakery_robust =
        Measurement::new(format!("{bakery_name} vs robust"), "ns", bakery).against(&robust);
    let spin = Measurement::new(
        "BakeryLock lock+unlock uncontended (2 slots), spin mode",
        "ns",
        spin,
    )
    .against(&pthread);
    let bakery = Measurement::new(bakery_name, "ns", bakery).against(&pthread);
    out.extend([
        (pthread, None),
        (robust, None),
        (pl, None),
        (bakery, Some(1.5)),
        (bakery_pl, None),
        (bakery_robust, None),
        (spin, None),
    ]);

    let mut samples: [Vec<f64>; 4] = Default::default();
    for _ in 0..p.reps {
        let c = pthread_contended(&mut r, p.contended)?;
        samples[0].push(c.ns);
        samples[1].push(c.handoffs);
        let c = bakery_contended(&mut r, p.contended)?;
        samples[2].push(c.ns);
        samples[3].push(c.handoffs);
    }
    let [pthread_c, pthread_h, bakery_c, bakery_h] = samples.map(median);
    let name_c = "pthread_mutex_t pshared, 2 processes contended (baseline)";
    let pthread_c_ns = Measurement::new(name_c, "ns/acq", pthread_c);
    let pthread_c_rate = Measurement::new(
        "pthread_mutex_t pshared, 2 processes contended, rate (baseline)",
        "acq/s",
        1e9 / pthread_c,
    );
    let pthread_h = Measurement::new(
        "pthread_mutex_t pshared, 2 processes contended, handoffs",
        "% of acq",
        100.0 * pthread_h,
    );
    let name_c = "BakeryMutex counter, 2 processes contended";
    let bakery_c_ns = Measurement::new(name_c, "ns/acq", bakery_c).against(&pthread_c_ns);
    let bakery_c_rate = Measurement::new(
        "BakeryMutex counter, 2 processes contended, rate",
        "acq/s",
        1e9 / bakery_c,
    )
    .against(&pthread_c_rate);
    let bakery_h = Measurement::new(
        "BakeryMutex counter, 2 processes contended, handoffs",
        "% of acq",
        100.0 * bakery_h,
    );
    out.extend([
        (pthread_c_ns, None),
        (pthread_c_rate, None),
        (pthread_h, None),
        (bakery_c_ns, None),
        (bakery_c_rate, None),
        (bakery_h, None),
    ]);

    let [posix, sem, permit] = semaphores(&mut r, &p)?;
    let posix = Measurement::new("sem_t pshared sem_wait+sem_post (baseline)", "ns", posix);
    let sem = Measurement::new("Semaphore acquire+release", "ns", sem).against(&posix);
    let permit = Measurement::new(
        "Semaphore permit taken and dropped (owned, returned if its process dies)",
        "ns",
        permit,
    )
    .against(&posix);
    out.extend([(posix, None), (sem, Some(1.0)), (permit, None)]);

    let [plain, rw, seq, seq_try] = reads(&mut r, &p)?;
    let [seq_w, alone, writes] = reads_with_writer(&mut r, &p)?;
    let plain = Measurement::new("plain 64 B copy (baseline)", "ns", plain);
    let rw = Measurement::new("std RwLock<[u64; 8]> read+copy (baseline)", "ns", rw);
    let seq_name = "SeqLock<[u64; 8]> read, no writer";
    let seq_rw = Measurement::new(format!("{seq_name} vs RwLock"), "ns", seq).against(&rw);
    let seq = Measurement::new(seq_name, "ns", seq).against(&plain);
    let seq_try = Measurement::new(
        "SeqLock<[u64; 8]> try_read (one inlined attempt), no writer",
        "ns",
        seq_try,
    )
    .against(&plain);
    let seq_w = Measurement::new(
        "SeqLock<[u64; 8]> read, writer process writing back to back",
        "ns",
        seq_w,
    )
    .against(&seq);
    let alone = Measurement::new(
        "SeqLock<[u64; 8]> writes by that writer, nobody reading",
        "writes/s",
        alone,
    );
    let writes = Measurement::new(
        "SeqLock<[u64; 8]> writes by that writer during the reads",
        "writes/s",
        writes,
    )
    .against(&alone);
    out.extend([
        (plain, None),
        (rw, None),
        (seq, Some(2.0)),
        (seq_rw, None),
        (seq_try, None),
        (seq_w, None),
        (alone, None),
        (writes, None),
    ]);

    let (results, goals): (Vec<_>, Vec<_>) = out.into_iter().unzip();
    if json {
        print_json(&results);
    } else {
        print_table(&results, &goals, &r);
    }
    Ok(())
}

/// Splits the `a,b` names of a two-segment case.
fn two_names(names: &str) -> Result<(&str, &str)> {
    names.split_once(',').ok_or_else(|| "bad names".into())
}

/// The child side of a `sync-*` case.
pub fn child(case: &str, name: &str, iters: u64) -> Result {
    pin(1);
    match case {
        "sync-bakery" => {
            let (mx, ctl) = two_names(name)?;
            let mut m = ShmBakeryMutex::open(builder(mx))?;
            let control = ShmRegion::<AtomicU64>::open(builder(ctl))?;
            race_child(control.shared(), || bakery_increments(&mut m, 2, iters))
        }
        "sync-pthread" => {
            let m = PthreadMutex::open(name)?;
            race_child(m.control(), || pthread_increments(&m, 2, iters))
        }
        "sync-seqlock-writer" => {
            let (seq, ctl) = two_names(name)?;
            let lock = SeqLock::<Value, ShmRegion<SeqLockControl>>::open(builder(seq))?;
            let control = ShmRegion::<AtomicU64>::open(builder(ctl))?;
            let mut w: SeqWriter<Value, _> = lock.writer()?;
            let word = control.shared();
            word.store(READY, Ordering::Release);
            let started = Instant::now();
            let mut i = 0u64;
            while word.load(Ordering::Acquire) != GO {
                i += 1;
                w.write([i; 8]);
                if i.is_multiple_of(1 << 16) && started.elapsed() > LIMIT {
                    return Err("seqlock writer: never told to stop".into());
                }
            }
            Ok(())
        }
        other => Err(format!("unknown bench case {other}").into()),
    }
}

//! The process-shared locks (`shmlink::lock`) between real processes: a Bakery mutex
//! counting from four processes, a holder and a waiter killed with SIGKILL, a semaphore
//! bounding how many processes are inside, and a seqlock read by other processes while
//! it is written.
//!
//! Every test re-executes this binary as child processes (see `tests/support`); the
//! children report what they saw with `@@ key=value` lines, and the parent asserts on
//! those reports and on the shared state. Times that cross processes (the moment of a
//! kill, the moment a waiter got the lock) are `CLOCK_MONOTONIC` nanoseconds, which
//! every process on the machine reads alike.

mod support;

use std::time::{Duration, Instant};

use shmlink::lock::{
    BakeryControl, BakeryLock, BakeryMutex, LockError, Participant, Semaphore, SeqLock,
};
use shmlink::region::{Region, ShmSafe};
use shmlink::segment::ShmRegion;
use shmlink::sync::atomic::{AtomicU64, Ordering};
use support::{Scenario, arg, builder, now_ns, report, unique_name};

scenarios!(
    bakery_count,
    bakery_hold_forever,
    bakery_create_and_hold,
    bakery_wait_then_add,
    bakery_lock_once,
    semaphore_take_turns,
    semaphore_hold_permits,
    semaphore_wait_forever,
    seqlock_write_for,
    seqlock_read_until_done,
);

/// How long any child may run before the test fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

/// How soon after a holder's (or waiter's) death the others must have the lock. The
/// lock notices a dead owner with a liveness check every 10 ms, so this leaves ample
/// room even on a loaded machine; debug builds get no extra slack.
const AFTER_DEATH: Duration = Duration::from_millis(100);

/// Polls (without sleeping for long) until `done` holds, panicking with `what` after
/// [`CHILD_TIMEOUT`].
fn poll_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + CHILD_TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Polls the lock's slot table until every process in `pids` holds a ticket, that is,
/// stands in line inside `lock()`; returns the table.
fn wait_in_line(lock: &BakeryLock<ShmRegion<BakeryControl>>, pids: &[u32]) -> Vec<Participant> {
    let mut table = Vec::new();
    poll_until("every waiter holds a ticket", || {
        table = lock.participants();
        pids.iter()
            .all(|&pid| table.iter().any(|p| p.pid == pid && p.ticket != 0))
    });
    table
}

/// The entry of `pid` in a participant table.
fn entry(table: &[Participant], pid: u32) -> Participant {
    *table
        .iter()
        .find(|p| p.pid == pid)
        .unwrap_or_else(|| panic!("pid {pid} not among {table:?}"))
}

/// Parses the report `key` of a finished child.
fn value<T: std::str::FromStr>(values: &std::collections::HashMap<String, String>, key: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    values
        .get(key)
        .unwrap_or_else(|| panic!("no report {key:?} in {values:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("report {key:?}: {e:?}"))
}

// ---- 1. a Bakery mutex counting from four processes ----

/// Increments per process: the full 10,000 in release; fewer in debug, which CI runs
/// with the whole workspace, because each increment is a lock hand-off between
/// processes and costs up to half a millisecond on a loaded 2-core machine.
const INCREMENTS: u64 = if cfg!(debug_assertions) {
    2_500
} else {
    10_000
};

/// Processes that count.
const COUNTERS: u64 = 4;

/// Child: adds 1 to the shared counter `count` times, each a separate read, pause and
/// write under the lock, so a second process inside would lose updates.
fn bakery_count() {
    let mut counter = BakeryMutex::<u64, _>::open(builder(&arg("name"))).expect("open mutex");
    let count: u64 = arg("count").parse().unwrap();
    report("ready");
    for i in 0..count {
        let mut guard = counter.lock().expect("lock");
        let seen = guard.get();
        // Widen the window between read and write: spin, and now and then give the
        // core away, so another process would run right here if it could get in.
        for _ in 0..32 {
            std::hint::spin_loop();
        }
        if i % 128 == 0 {
            std::thread::yield_now();
        }
        guard.set(seen + 1);
    }
    report("done");
}

/// Four processes each add 1 to a `u64` under a named [`BakeryMutex`] 10,000 times
/// (fewer in debug); no update is lost.
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn bakery_mutex_counts_exactly_across_four_processes() {
    let name = unique_name("bakery-count");
    let mut counter = BakeryMutex::create(builder(&name).unlink_on_drop(true), 8, 0u64).unwrap();
    // Hold the lock while the children start, so they all begin at once, in line.
    let gate = counter.lock().expect("gate");
    let mut children: Vec<_> = (0..COUNTERS)
        .map(|_| {
            Scenario::new("bakery_count")
                .arg("name", &name)
                .arg("count", INCREMENTS)
                .spawn()
        })
        .collect();
    for c in &mut children {
        c.wait_for("ready", CHILD_TIMEOUT);
    }
    let started = Instant::now();
    drop(gate);
    for c in children {
        c.success(CHILD_TIMEOUT);
    }
    let elapsed = started.elapsed();
    let total = counter.lock().expect("lock after the children").get();
    assert_eq!(total, COUNTERS * INCREMENTS, "lost or extra updates");
    eprintln!(
        "bakery count: {total} increments from {COUNTERS} processes in {elapsed:?} \
         ({:.2} µs each)",
        elapsed.as_secs_f64() * 1e6 / total as f64
    );
    // Every child gave its slot back on exit: only ours is left, and nobody holds it.
    let table = counter.as_lock().participants();
    assert_eq!(table.len(), 1, "{table:?}");
    assert_eq!(table[0].pid, std::process::id());
    assert_eq!(counter.as_lock().holder(), None);
}

// ---- 2. a holder killed while holding the lock ----

/// What the holder leaves in the protected value: a half-done update that the next
/// holder (told with `OwnerDied`) must repair.
const DIRTY: u64 = 0xdead;

/// Child: locks, leaves the value half updated, reports `locked` and sleeps holding
/// the lock until it is killed.
fn bakery_hold_forever() {
    let mut mutex = BakeryMutex::<u64, _>::open(builder(&arg("name"))).expect("open mutex");
    let mut guard = mutex.lock().expect("lock");
    guard.set(DIRTY);
    report("locked");
    std::thread::sleep(Duration::from_secs(60));
    panic!("the holder was never killed");
}

/// Child: creates the mutex (so its death leaves the segment stale), locks it, and
/// sleeps holding it until it is killed.
fn bakery_create_and_hold() {
    let (mut mutex, _) =
        BakeryMutex::open_or_create(builder(&arg("name")), 4, 0u64).expect("open_or_create mutex");
    let mut guard = mutex.lock().expect("lock");
    guard.set(DIRTY);
    report("locked");
    std::thread::sleep(Duration::from_secs(60));
    panic!("the holder was never killed");
}

/// Defect: `shmlink ls` and `inspect` showed "(lock state unreadable)" for a lock whose
/// every user died, exactly when its state matters: the status readers opened it
/// like any user, and `open` refuses a stale segment. They now read a stale segment
/// as the crash left it (held exclusively meanwhile, never attached or changed), so
/// the dead holder shows, and a restart still resumes it afterwards.
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn a_stale_lock_shows_its_dead_holder_and_is_left_as_it_was() {
    use shmlink::process::Liveness;
    use shmlink::segment::{Disposition, Status, inspect};
    let name = unique_name("bakery-stale-status");
    let mut holder = Scenario::new("bakery_create_and_hold")
        .arg("name", &name)
        .spawn();
    holder.wait_for("locked", CHILD_TIMEOUT);
    let pid = holder.pid();
    holder.kill();
    let before = inspect(&name).unwrap();
    assert!(matches!(before.status, Status::Stale(_)), "{before:?}");
    let status = shmlink::lock::bakery_status(&name).expect("the state a crash left");
    assert_eq!(status.holder, Some(pid));
    let slot = status.participants.iter().find(|p| p.pid == pid).unwrap();
    assert!(slot.holding, "{status:?}");
    assert_eq!(slot.liveness, Liveness::Dead, "{status:?}");
    // Read, not touched: still stale, with the same header.
    let after = inspect(&name).unwrap();
    assert!(matches!(after.status, Status::Stale(_)), "{after:?}");
    assert_eq!(after.header, before.header);
    // A restart resumes it, and the next locker is told its holder died.
    let (mut mutex, how) =
        BakeryMutex::<u64, _>::open_or_create(builder(&name).unlink_on_drop(true), 4, 0).unwrap();
    assert_eq!(how, Disposition::Resumed);
    match mutex.lock() {
        Err(LockError::OwnerDied(guard)) => assert_eq!(guard.get(), DIRTY),
        other => panic!("expected OwnerDied, got {:?}", other.map(|g| g.get())),
    }
}

/// Child: waits for the lock; repairs the value if told its holder died, then adds 1.
/// Reports how it got the lock (`how=clean|owner_died`), when (`acquired_ns`), and
/// who the lock said held it meanwhile (`holder`).
fn bakery_wait_then_add() {
    let mut mutex = BakeryMutex::<u64, _>::open(builder(&arg("name"))).expect("open mutex");
    report("waiting");
    let (mut guard, how) = match mutex.lock() {
        Ok(guard) => (guard, "clean"),
        Err(LockError::OwnerDied(guard)) => (guard, "owner_died"),
        Err(e) => panic!("lock: {e}"),
    };
    let acquired_ns = now_ns();
    let found = guard.get();
    if how == "owner_died" {
        assert_eq!(
            found, DIRTY,
            "told of a dead holder: its half update is there"
        );
        guard.set(0); // repair
    } else {
        assert_ne!(
            found, DIRTY,
            "not told, yet the dead holder's update is there"
        );
    }
    guard.update(|v| *v += 1);
    let holder = guard.as_guard().holder();
    drop(guard);
    report(format!("how={how}"));
    report(format!("acquired_ns={acquired_ns}"));
    report(format!("holder={}", holder.unwrap_or(0)));
}

/// A holder SIGKILLed while holding a named [`BakeryMutex`]: the three processes
/// waiting behind it all get the lock within [`AFTER_DEATH`] of the kill, exactly one
/// of them is told with [`LockError::OwnerDied`] (and repairs the value), and the dead
/// holder's slot is freed.
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn bakery_holder_killed_is_reported_once_and_the_waiters_go_on() {
    const WAITERS: usize = 3;
    let name = unique_name("bakery-kill-holder");
    let mut mutex = BakeryMutex::create(builder(&name).unlink_on_drop(true), 8, 0u64).unwrap();
    let me = std::process::id();

    let mut holder = Scenario::new("bakery_hold_forever")
        .arg("name", &name)
        .spawn();
    holder.wait_for("locked", CHILD_TIMEOUT);
    let holder_pid = holder.pid();
    assert_eq!(mutex.as_lock().holder(), Some(holder_pid));

    let mut waiters: Vec<_> = (0..WAITERS)
        .map(|_| {
            Scenario::new("bakery_wait_then_add")
                .arg("name", &name)
                .spawn()
        })
        .collect();
    for w in &mut waiters {
        w.wait_for("waiting", CHILD_TIMEOUT);
    }
    let pids: Vec<u32> = waiters.iter().map(|w| w.pid()).collect();
    let table = wait_in_line(mutex.as_lock(), &pids);
    assert_eq!(table.len(), 2 + WAITERS, "{table:?}");
    let held = entry(&table, holder_pid);
    assert!(held.holding && held.ticket != 0, "{table:?}");
    for &pid in &pids {
        let waiting = entry(&table, pid);
        assert!(
            !waiting.holding && waiting.ticket > held.ticket,
            "{table:?}"
        );
    }
    assert!(!entry(&table, me).holding);

    let killed_ns = now_ns();
    holder.kill();
    let results: Vec<_> = waiters
        .into_iter()
        .map(|w| w.success(CHILD_TIMEOUT).values())
        .collect();

    let told = results.iter().filter(|v| v["how"] == "owner_died").count();
    assert_eq!(
        told, 1,
        "exactly one waiter is told of the death: {results:?}"
    );
    assert!(
        results
            .iter()
            .all(|v| v["how"] == "owner_died" || v["how"] == "clean"),
        "{results:?}"
    );
    let mut latencies: Vec<Duration> = results
        .iter()
        .map(|v| Duration::from_nanos(value::<u64>(v, "acquired_ns") - killed_ns))
        .collect();
    latencies.sort();
    eprintln!("holder killed: waiters got the lock {latencies:?} after the kill");
    let last = *latencies.last().unwrap();
    assert!(
        last <= AFTER_DEATH,
        "the last waiter got the lock {last:?} after the kill (limit {AFTER_DEATH:?})"
    );
    for (v, pid) in results.iter().zip(&pids) {
        assert_eq!(value::<u32>(v, "holder"), *pid, "holder() while holding");
    }

    // The dead holder's slot was reclaimed and the waiters left theirs: only ours is
    // left, nobody holds the lock, and the death is not reported a second time.
    let table = mutex.as_lock().participants();
    assert_eq!(table.len(), 1, "{table:?}");
    assert_eq!((table[0].pid, table[0].holding), (me, false));
    assert_eq!(mutex.as_lock().holder(), None);
    let guard = mutex.lock().expect("a clean lock after the repair");
    assert_eq!(
        guard.get(),
        WAITERS as u64,
        "repaired once, then one add each"
    );
}

// ---- 3. a semaphore bounding how many processes are inside ----

/// Permits of the semaphore.
const PERMITS: u32 = 2;
/// Processes that take turns.
const TAKERS: usize = 4;
/// Acquire/release rounds per process.
const ROUNDS: u64 = if cfg!(debug_assertions) {
    2_000
} else {
    10_000
};

/// The shared gauge of the semaphore test.
#[repr(C)]
struct Gauge {
    /// Processes between `acquire` and `release` right now.
    inside: AtomicU64,
    /// The most ever seen inside.
    max_inside: AtomicU64,
}

// SAFETY: repr(C), only integer atomics (any bit pattern valid), no pointers.
unsafe impl ShmSafe for Gauge {
    const TYPE_NAME: &'static str = "tests::sync::Gauge";
    fn new_zeroed() -> Self {
        Gauge {
            inside: AtomicU64::new(0),
            max_inside: AtomicU64::new(0),
        }
    }
}

/// Child: `rounds` times acquires a permit, counts itself in, lingers, counts itself
/// out and releases. Reports the most it saw inside (`max`) and how often the
/// semaphore was full (`full`).
fn semaphore_take_turns() {
    let sem = Semaphore::open(builder(&arg("sem"))).expect("open semaphore");
    let gauge = ShmRegion::<Gauge>::open(builder(&arg("gauge"))).expect("open gauge");
    let rounds: u64 = arg("rounds").parse().unwrap();
    let g = gauge.shared();
    report("ready");
    let (mut max, mut full) = (0, 0u64);
    for i in 0..rounds {
        sem.acquire().unwrap();
        // Relaxed: the semaphore's Acquire/Release keep these inside the permit.
        let now = g.inside.fetch_add(1, Ordering::Relaxed) + 1;
        g.max_inside.fetch_max(now, Ordering::Relaxed);
        max = max.max(now);
        full += u64::from(now == u64::from(PERMITS));
        for _ in 0..64 {
            std::hint::spin_loop();
        }
        if i % 16 == 0 {
            std::thread::yield_now();
        }
        g.inside.fetch_sub(1, Ordering::Relaxed);
        sem.release(1).expect("release");
    }
    report(format!("max={max}"));
    report(format!("full={full}"));
    report(format!("rounds={rounds}"));
}

/// Four processes share a named [`Semaphore`] of 2 permits: never more than 2 are
/// inside, at least 1 is, everyone finishes, and all permits come back.
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn semaphore_never_admits_more_processes_than_permits() {
    let sem_name = unique_name("sem");
    let gauge_name = unique_name("sem-gauge");
    // No permits at first: the children queue up, and the first release starts them.
    let sem = Semaphore::create(builder(&sem_name).unlink_on_drop(true), 0, PERMITS).unwrap();
    let gauge = ShmRegion::<Gauge>::create(builder(&gauge_name).unlink_on_drop(true), 0).unwrap();
    let mut children: Vec<_> = (0..TAKERS)
        .map(|_| {
            Scenario::new("semaphore_take_turns")
                .arg("sem", &sem_name)
                .arg("gauge", &gauge_name)
                .arg("rounds", ROUNDS)
                .spawn()
        })
        .collect();
    for c in &mut children {
        c.wait_for("ready", CHILD_TIMEOUT);
    }
    let started = Instant::now();
    sem.release(PERMITS).unwrap();
    let results: Vec<_> = children
        .into_iter()
        .map(|c| c.success(CHILD_TIMEOUT).values())
        .collect();
    let elapsed = started.elapsed();

    let limit = u64::from(PERMITS);
    let maxes: Vec<u64> = results.iter().map(|v| value(v, "max")).collect();
    let full: u64 = results.iter().map(|v| value::<u64>(v, "full")).sum();
    assert!(maxes.iter().all(|&m| (1..=limit).contains(&m)), "{maxes:?}");
    let shared_max = gauge.shared().max_inside.load(Ordering::Relaxed);
    assert!((1..=limit).contains(&shared_max), "max inside {shared_max}");
    let rounds: u64 = results.iter().map(|v| value::<u64>(v, "rounds")).sum();
    assert_eq!(rounds, TAKERS as u64 * ROUNDS, "every process completed");
    assert_eq!(gauge.shared().inside.load(Ordering::Relaxed), 0);
    assert_eq!(
        (sem.value(), sem.waiters()),
        (PERMITS, 0),
        "all permits back"
    );
    eprintln!(
        "semaphore: {rounds} rounds in {elapsed:?}, max inside {shared_max} of {PERMITS} \
         (per process {maxes:?}), full {full} times"
    );
}

/// Child: takes `permits` owned permits and holds them until killed.
fn semaphore_hold_permits() {
    let sem = Semaphore::open(builder(&arg("sem"))).expect("open semaphore");
    let n: usize = arg("permits").parse().unwrap();
    let held: Vec<_> = (0..n)
        .map(|_| sem.permit_timeout(CHILD_TIMEOUT).expect("permit"))
        .collect();
    report(format!("holding={}", held.len()));
    std::thread::sleep(CHILD_TIMEOUT);
}

/// Three processes take all 5 permits of a named semaphore through [`Permit`]s and
/// are killed with SIGKILL while a waiter of the parent sleeps for a permit: the
/// permits of the dead come back (the waiter gets one within [`AFTER_DEATH`]), no
/// more than were taken, and the holder slots are freed.
///
/// [`Permit`]: shmlink::lock::Permit
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn permits_of_killed_holders_are_returned() {
    let name = unique_name("sem-killed");
    let sem = Semaphore::create(builder(&name).unlink_on_drop(true), 5, 5).unwrap();
    let mut children: Vec<_> = [2, 2, 1]
        .iter()
        .map(|n| {
            let mut c = Scenario::new("semaphore_hold_permits")
                .arg("sem", &name)
                .arg("permits", n)
                .spawn();
            c.wait_for("holding=", CHILD_TIMEOUT);
            c
        })
        .collect();
    assert_eq!(sem.value(), 0);
    let status = shmlink::lock::semaphore_status(&name).unwrap();
    let mut held: Vec<u32> = status.holders.iter().map(|h| h.permits).collect();
    held.sort_unstable();
    assert_eq!(held, [1, 2, 2], "{status:?}");

    // A waiter asleep for a permit when the first holder dies.
    let waiter = {
        let sem = sem.clone();
        std::thread::spawn(move || {
            let got = sem.permit_timeout(CHILD_TIMEOUT).map(|p| p.forget());
            (got, Instant::now())
        })
    };
    poll_until("the waiter sleeps", || sem.waiters() == 1);
    let killed_at = Instant::now();
    children.remove(0).kill();
    let (got, at) = waiter.join().unwrap();
    assert_eq!(got, Ok(()));
    assert!(
        at - killed_at < AFTER_DEATH,
        "the waiter got the dead holder's permit after {:?}",
        at - killed_at
    );
    sem.release(1).unwrap(); // the permit the waiter kept (forgotten)

    for c in children {
        c.kill();
    }
    // Nobody waits now: the explicit call returns the rest at once.
    let back = sem.reclaim_dead();
    assert_eq!(back, 3, "the two later victims held 3 permits");
    assert_eq!(sem.value(), 5, "every permit back, none twice");
    let status = shmlink::lock::semaphore_status(&name).unwrap();
    assert!(
        status.holders.iter().all(|h| h.pid == std::process::id()),
        "dead holders' slots are freed: {status:?}"
    );
    let all: Vec<_> = (0..5).map(|_| sem.try_permit().unwrap()).collect();
    assert_eq!((all.len(), sem.value()), (5, 0));
}

/// Child: `threads` threads wait for an unowned permit until the process is killed.
fn semaphore_wait_forever() {
    let sem = Semaphore::open(builder(&arg("sem"))).expect("open semaphore");
    let n: usize = arg("threads").parse().unwrap();
    let waiters: Vec<_> = (0..n)
        .map(|_| {
            let sem = sem.clone();
            std::thread::spawn(move || sem.acquire_timeout(CHILD_TIMEOUT))
        })
        .collect();
    for w in waiters {
        let _ = w.join();
    }
}

/// Defect: a process killed while its threads waited for a permit left them counted
/// as registered waiters for good, so every later release made a futex wake system
/// call that found nobody. Its waiters are now counted in its holder slot and taken
/// off the count when the slot is repaired (here by the parent's own sleeper, after
/// one sleep slice); the parent's live waiter stays counted and is woken.
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn waiters_of_killed_processes_are_forgotten() {
    let name = unique_name("sem-dead-waiters");
    let sem = Semaphore::create(builder(&name).unlink_on_drop(true), 0, 4).unwrap();
    let live = {
        let sem = sem.clone();
        std::thread::spawn(move || sem.acquire_timeout(CHILD_TIMEOUT))
    };
    poll_until("our waiter sleeps", || sem.waiters() == 1);
    let child = Scenario::new("semaphore_wait_forever")
        .arg("sem", &name)
        .arg("threads", 2)
        .spawn();
    poll_until("the child's two waiters sleep", || sem.waiters() == 3);
    let status = shmlink::lock::semaphore_status(&name).unwrap();
    let mut waiting: Vec<u32> = status.holders.iter().map(|h| h.waiting).collect();
    waiting.sort_unstable();
    assert_eq!(waiting, [1, 2], "counted per process: {status:?}");
    child.kill();
    poll_until("the dead waiters are forgotten", || sem.waiters() == 1);
    sem.release(1).unwrap();
    assert_eq!(live.join().unwrap(), Ok(()), "the live waiter was woken");
    assert_eq!((sem.value(), sem.waiters()), (0, 0));
    let status = shmlink::lock::semaphore_status(&name).unwrap();
    assert!(
        status.holders.iter().all(|h| h.pid == std::process::id()),
        "the dead process's slot is freed: {status:?}"
    );
}

/// Defect: waiters looked for dead holders only when a 10 ms sleep slice ran out. A
/// process killed holding one of two permits, while two threads kept passing the other
/// one between them (each woken by the other's release well within a slice), kept
/// its permit for good, and its dead waiters stayed counted. A woken waiter now looks
/// once per slice as well.
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn a_dead_holders_permit_comes_back_while_the_others_keep_the_semaphore_busy() {
    let name = unique_name("sem-busy-dead");
    let sem = Semaphore::create(builder(&name).unlink_on_drop(true), 2, 2).unwrap();
    let mut child = Scenario::new("semaphore_hold_permits")
        .arg("sem", &name)
        .arg("permits", 1)
        .spawn();
    child.wait_for("holding=", CHILD_TIMEOUT);
    let stop = std::sync::Arc::new(shmlink::sync::atomic::AtomicBool::new(false));
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let (sem, stop) = (sem.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let permit = sem.permit_timeout(CHILD_TIMEOUT).expect("permit");
                    std::thread::sleep(Duration::from_millis(1));
                    drop(permit);
                }
            })
        })
        .collect();
    poll_until("one of ours waits", || sem.waiters() >= 1);
    child.kill();
    // The busy threads never time out a slice, yet one of them repairs.
    poll_until("the dead holder's permit is back", || {
        shmlink::lock::semaphore_status(&name)
            .is_ok_and(|s| s.holders.iter().all(|h| h.pid == std::process::id()))
    });
    stop.store(true, Ordering::Relaxed);
    for t in busy {
        t.join().unwrap();
    }
    assert_eq!(
        (sem.value(), sem.waiters()),
        (2, 0),
        "both permits back, no waiter left"
    );
}

// ---- 4. a seqlock written in one process and read in others ----

/// The seqlock's value: `[counter, 5 words derived from it, done flag, checksum]`.
type Snapshot = [u64; 8];

/// The writer writes at least this long...
const WRITE_AT_LEAST: Duration = Duration::from_millis(300);
/// ...and then until every reader has seen this many distinct values (so readers and
/// writer really ran side by side, whatever else the machine is doing)...
const MIN_DISTINCT: u64 = 1_000;
/// ...but no longer than this.
const WRITE_AT_MOST: Duration = Duration::from_secs(10);
/// Reader processes.
const READERS: u64 = 2;

/// splitmix64's finaliser: a well-mixed function of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Checksum of the first seven words.
fn checksum(words: &[u64]) -> u64 {
    words.iter().fold(0xcbf2_9ce4_8422_2325, |h, &w| mix(h ^ w))
}

/// The value the writer publishes for `counter`.
fn snapshot(counter: u64, done: bool) -> Snapshot {
    let mut s = [0; 8];
    s[0] = counter;
    for (k, w) in s[1..6].iter_mut().enumerate() {
        *w = mix(counter.wrapping_mul(k as u64 + 1));
    }
    s[6] = u64::from(done);
    s[7] = checksum(&s[..7]);
    s
}

/// Child: claims the writer role and publishes counters 1, 2, ... (see
/// [`WRITE_AT_LEAST`] for how long), then one last value marked done. Reports the
/// writes (`writes`) and how long it wrote (`wrote_ms`).
fn seqlock_write_for() {
    let lock = SeqLock::<Snapshot, _>::open(builder(&arg("name"))).expect("open seqlock");
    let satisfied = ShmRegion::<AtomicU64>::open(builder(&arg("progress"))).expect("progress");
    let mut writer = lock.writer().expect("claim the writer role");
    let started = Instant::now();
    let mut counter = 0;
    loop {
        counter += 1;
        writer.write(snapshot(counter, false));
        if counter % 1024 == 0 {
            let elapsed = started.elapsed();
            let readers_done = satisfied.shared().load(Ordering::Relaxed) >= READERS;
            if elapsed >= WRITE_AT_MOST || (elapsed >= WRITE_AT_LEAST && readers_done) {
                break;
            }
            // On a machine with fewer cores than processes, let a reader run.
            std::thread::yield_now();
        }
    }
    counter += 1;
    writer.write(snapshot(counter, true));
    report(format!("writes={counter}"));
    report(format!("wrote_ms={}", started.elapsed().as_millis()));
}

/// Child: reads until it sees the done value, checking every snapshot (checksum, and
/// every word against the counter) and that the counter never goes backwards.
/// Reports the snapshots verified (`verified`), the distinct counters seen
/// (`distinct`), and the last counter (`last`). A read that finds the writer in the
/// way waits for it (the writer is alive), so every read returns a snapshot.
fn seqlock_read_until_done() {
    let lock = SeqLock::<Snapshot, _>::open(builder(&arg("name"))).expect("open seqlock");
    let satisfied = ShmRegion::<AtomicU64>::open(builder(&arg("progress"))).expect("progress");
    report("ready");
    let (mut verified, mut distinct) = (0u64, 0u64);
    let mut last = 0;
    loop {
        let s = lock.read().unwrap_or_else(|e| panic!("read: {e}"));
        assert_eq!(s[7], checksum(&s[..7]), "torn snapshot {s:x?}");
        assert_eq!(s, snapshot(s[0], s[6] != 0), "torn snapshot {s:x?}");
        assert!(s[0] >= last, "counter went back from {last} to {}", s[0]);
        if s[0] != last {
            distinct += 1;
            if distinct == MIN_DISTINCT {
                satisfied.shared().fetch_add(1, Ordering::Relaxed);
            }
        }
        last = s[0];
        verified += 1;
        if s[6] != 0 {
            break;
        }
        if verified % 256 == 0 {
            // On a machine with fewer cores than processes, let the writer run.
            std::thread::yield_now();
        }
    }
    report(format!("verified={verified}"));
    report(format!("distinct={distinct}"));
    report(format!("last={last}"));
}

/// A writer process publishes checksummed `[u64; 8]` values while two reader
/// processes read continuously: every snapshot is whole, counters never go back, and
/// each reader verifies many snapshots and sees at least [`MIN_DISTINCT`] distinct
/// values.
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn seqlock_readers_in_other_processes_never_see_torn_values() {
    let name = unique_name("seqlock");
    let progress = unique_name("seqlock-progress");
    let lock = SeqLock::create(builder(&name).unlink_on_drop(true), snapshot(0, false)).unwrap();
    // Readers that have seen MIN_DISTINCT values.
    let satisfied =
        ShmRegion::<AtomicU64>::create(builder(&progress).unlink_on_drop(true), 0).unwrap();
    let mut readers: Vec<_> = (0..READERS)
        .map(|_| {
            Scenario::new("seqlock_read_until_done")
                .arg("name", &name)
                .arg("progress", &progress)
                .spawn()
        })
        .collect();
    for r in &mut readers {
        r.wait_for("ready", CHILD_TIMEOUT);
    }
    let writer = Scenario::new("seqlock_write_for")
        .arg("name", &name)
        .arg("progress", &progress)
        .spawn()
        .success(CHILD_TIMEOUT)
        .values();
    let writes: u64 = value(&writer, "writes");
    let results: Vec<_> = readers
        .into_iter()
        .map(|r| r.success(CHILD_TIMEOUT).values())
        .collect();

    assert_eq!(lock.version(), writes, "one version per write");
    assert_eq!(lock.read(), Ok(snapshot(writes, true)));
    assert_eq!(lock.writer_pid(), None, "the writer gave the role back");
    assert_eq!(satisfied.shared().load(Ordering::Relaxed), READERS);
    for v in &results {
        let verified: u64 = value(v, "verified");
        let distinct: u64 = value(v, "distinct");
        assert_eq!(value::<u64>(v, "last"), writes, "{v:?}");
        assert!(distinct >= MIN_DISTINCT, "{v:?}");
        assert!(verified >= distinct, "{v:?}");
    }
    eprintln!(
        "seqlock: {writes} writes in {} ms; readers {:?}",
        writer["wrote_ms"],
        results
            .iter()
            .map(|v| format!("verified={} distinct={}", v["verified"], v["distinct"]))
            .collect::<Vec<_>>()
    );
}

// ---- 5. a waiter killed while standing in line ----

/// Child: waits for the lock once; reports how it got it (`how`) and when
/// (`acquired_ns`).
fn bakery_lock_once() {
    let mut lock = BakeryLock::open(builder(&arg("name"))).expect("open lock");
    report("waiting");
    let how = match lock.lock() {
        Ok(_guard) => "clean",
        Err(LockError::OwnerDied(_guard)) => "owner_died",
        Err(e) => panic!("lock: {e}"),
    };
    let acquired_ns = now_ns();
    report(format!("how={how}"));
    report(format!("acquired_ns={acquired_ns}"));
}

/// A participant SIGKILLed while merely waiting (ahead of another waiter) does not
/// block the lock: its slot is reclaimed, the waiter behind it gets the lock within
/// [`AFTER_DEATH`] of the release, and nobody is told of a dead owner.
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn bakery_waiter_killed_in_line_does_not_block_the_others() {
    let name = unique_name("bakery-kill-waiter");
    let me = std::process::id();
    let mut lock = BakeryLock::create(builder(&name).unlink_on_drop(true), 8).unwrap();
    // A second participant that never locks, to read the table while we hold the lock.
    let observer = BakeryLock::open(builder(&name)).unwrap();
    let guard = lock.lock().map_err(LockError::without_guard).unwrap();

    let mut victim = Scenario::new("bakery_lock_once").arg("name", &name).spawn();
    victim.wait_for("waiting", CHILD_TIMEOUT);
    let victim_pid = victim.pid();
    wait_in_line(&observer, &[victim_pid]);
    let mut survivor = Scenario::new("bakery_lock_once").arg("name", &name).spawn();
    survivor.wait_for("waiting", CHILD_TIMEOUT);
    let survivor_pid = survivor.pid();
    let table = wait_in_line(&observer, &[victim_pid, survivor_pid]);
    let (ahead, behind) = (entry(&table, victim_pid), entry(&table, survivor_pid));
    assert!(
        ahead.ticket < behind.ticket,
        "victim first in line: {table:?}"
    );
    assert_eq!(observer.holder(), Some(me));

    victim.kill();
    let released_ns = now_ns();
    drop(guard);
    let done = survivor.success(CHILD_TIMEOUT).values();
    assert_eq!(done["how"], "clean", "a dead waiter is no dead owner");
    let latency = Duration::from_nanos(value::<u64>(&done, "acquired_ns") - released_ns);
    eprintln!("waiter killed: the next waiter got the lock {latency:?} after the release");
    assert!(
        latency <= AFTER_DEATH,
        "the waiter behind the dead one got the lock {latency:?} after the release \
         (limit {AFTER_DEATH:?})"
    );

    // The victim's slot was reclaimed and the survivor left: only our two remain.
    let table = observer.participants();
    assert_eq!(table.len(), 2, "{table:?}");
    assert!(table.iter().all(|p| p.pid == me && !p.holding), "{table:?}");
    assert_eq!(observer.holder(), None);
    assert!(lock.lock().is_ok(), "no owner died, so nobody is told so");
}

//! Crash-point exploration (issue 11): every multi-step shared-memory protocol is run
//! against a named object by a child process that SIGKILLs itself right after step k
//! (`SHMLINK_CRASH_AT=PROTOCOL:k`, see `shmlink::process::crash`), for k = 1, 2, ...
//! until a child runs to completion; meanwhile the parent runs the other side and
//! then checks what the survivors see:
//!
//! - nothing acknowledged is lost or duplicated: the child reports each acknowledged
//!   operation on its stdout pipe (`@@ pushed=7`) right after it returned `Ok`; the
//!   parent drains and compares (acknowledged items arrive exactly once, the one in
//!   flight at most once, FIFO order kept);
//! - mutual exclusion holds (Bakery), semaphore permits are not lost beyond what the
//!   dead process could hold, a seqlock reader sees a consistent value or
//!   `WriterDied`, a segment's `open_or_create` succeeds or fails with a typed error;
//! - no wait of the parent outlives its deadline (all have one; a watchdog ends the
//!   test if an attempt hangs), and the survivor recovers within [`RECOVERY`] of the
//!   moment the child's death became observable (its `waitid` returned).
//!
//! The protocols are the table [`PROTOCOLS`] of `(name, child, survivor)`: a point
//! placed later in the library is explored without changing this file, and a protocol
//! with no point placed yet explores 0 points (the table shows it). Defects found and
//! not fixed yet are listed in [`KNOWN_DEFECTS`]: they are printed, do not fail the
//! run, and the `known_defects` test (ignored) reproduces them.
//!
//! `SHMLINK_CRASH_TRIALS` (default 3 in release, 1 in debug builds) repeats the whole exploration; the table goes to
//! stderr whether or not libtest captures output.

mod support;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shmlink::lock::{BakeryMutex, LockError, ReadError, Semaphore, SeqLock};
use shmlink::region::{Region, ShmSafe};
use shmlink::ring::{FrameRecvError, FrameRing, Mpmc, PopError, Spsc};
use shmlink::segment::{Disposition, OpenError, Segment, ShmRegion};
use shmlink::sync::WaitMode;
use shmlink::sync::atomic::{AtomicU64, Ordering};
use shmlink::transport::{self, AcceptError, TransportOptions};
use support::watch::{Ended, ExitWatch};
use support::{Child, Scenario, arg, report, unique_name};

scenarios!(crash_child);

/// The bound on recovery after a death (issue 11).
const RECOVERY: Duration = Duration::from_millis(100);
/// Deadline of every single wait, in the parent and in the children.
const WAIT: Duration = Duration::from_secs(3);
/// A child still running after this is killed and the attempt fails (a hang).
const CHILD_LIMIT: Duration = Duration::from_secs(15);
/// One attempt (one protocol, one step) taking longer than this ends the test.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(120);
/// Polling slice of the parent's waits for data. Longer than the rings' liveness
/// period (10 ms): a wait is only checked for a dead peer 10 ms into it, so shorter
/// polls would never see a dead producer (see the `drain` docs).
const SLICE: Duration = Duration::from_millis(25);
/// Steps tried per protocol at most (a child that dies at every step is a bug).
const MAX_STEP: u32 = 32;
const CRASH_ENV: &str = "SHMLINK_CRASH_AT";
const TRIALS_ENV: &str = "SHMLINK_CRASH_TRIALS";
const ONLY_ENV: &str = "SHMLINK_CRASH_ONLY";

/// One protocol: the armed child runs `child` (and dies at the chosen step); the parent
/// runs `survivor`, which spawns that child ([`Trial::spawn_armed`]) when it is ready
/// and returns what it found wrong.
struct Protocol {
    name: &'static str,
    child: fn(),
    survivor: fn(&mut Trial) -> Result<(), String>,
}

const PROTOCOLS: &[Protocol] = &[
    Protocol {
        name: "segment.create",
        child: segment_creator,
        survivor: segment_create,
    },
    Protocol {
        name: "spsc.claim",
        child: spsc_producer,
        survivor: spsc_producer_dies,
    },
    Protocol {
        name: "spsc.push",
        child: spsc_producer,
        survivor: spsc_producer_dies,
    },
    Protocol {
        name: "spsc.pop",
        child: spsc_consumer,
        survivor: spsc_consumer_dies,
    },
    Protocol {
        name: "spsc.takeover",
        child: spsc_producer,
        survivor: spsc_takeover_dies,
    },
    Protocol {
        name: "mpmc.register",
        child: mpmc_producer,
        survivor: mpmc_producer_dies,
    },
    Protocol {
        name: "mpmc.push",
        child: mpmc_producer,
        survivor: mpmc_producer_dies,
    },
    Protocol {
        name: "mpmc.pop",
        child: mpmc_consumer,
        survivor: mpmc_consumer_dies,
    },
    Protocol {
        name: "mpmc.repair",
        child: mpmc_repairer,
        survivor: mpmc_repairer_dies,
    },
    Protocol {
        name: "frame.publish",
        child: frame_sender,
        survivor: frame_sender_dies,
    },
    Protocol {
        name: "bakery.join",
        child: bakery_worker,
        survivor: bakery_worker_dies,
    },
    Protocol {
        name: "bakery.lock",
        child: bakery_worker,
        survivor: bakery_worker_dies,
    },
    Protocol {
        name: "bakery.unlock",
        child: bakery_worker,
        survivor: bakery_worker_dies,
    },
    Protocol {
        name: "bakery.leave",
        child: bakery_worker,
        survivor: bakery_worker_dies,
    },
    Protocol {
        name: "bakery.reclaim",
        child: bakery_worker,
        survivor: bakery_reclaimer_dies,
    },
    Protocol {
        name: "semaphore.acquire",
        child: semaphore_acquirer,
        survivor: semaphore_acquirer_dies,
    },
    Protocol {
        name: "semaphore.release",
        child: semaphore_releaser,
        survivor: semaphore_releaser_dies,
    },
    Protocol {
        name: "semaphore.permit",
        child: semaphore_holder,
        survivor: semaphore_holder_dies,
    },
    Protocol {
        name: "semaphore.return",
        child: semaphore_holder,
        survivor: semaphore_holder_dies,
    },
    Protocol {
        name: "semaphore.repair",
        child: semaphore_repairer,
        survivor: semaphore_repairer_dies,
    },
    Protocol {
        name: "seqlock.write",
        child: seqlock_writer,
        survivor: seqlock_writer_dies,
    },
    Protocol {
        name: "shm.connect",
        child: shm_client,
        survivor: shm_client_dies,
    },
    Protocol {
        name: "shm.accept",
        child: shm_server,
        survivor: shm_server_dies,
    },
];

/// Children that set the scene for a protocol (the dead peer a takeover or a reclaim
/// meets); they are not the armed side.
const HELPERS: &[(&str, fn())] = &[
    ("spsc_victim", spsc_victim),
    ("bakery_holder", bakery_holder),
    ("semaphore_victim", semaphore_victim),
];

/// Defects found by this driver and not fixed yet: `(protocol, step, what happens)`.
/// A failure at one of these steps is printed but does not fail the run; the ignored
/// test `known_defects` runs exactly these steps and fails while they reproduce.
const KNOWN_DEFECTS: &[(&str, u32, &str)] = &[];

// ---------------------------------------------------------------------------------
// The driver.

fn crash_child() {
    let who = arg("who");
    if let Some(p) = PROTOCOLS.iter().find(|p| p.name == who) {
        (p.child)();
    } else if let Some((_, f)) = HELPERS.iter().find(|(n, _)| *n == who) {
        f();
    } else {
        panic!("no crash-point child {who:?}");
    }
}

/// A child of a trial: the process and the watch on its exit.
struct Peer {
    child: Option<Child>,
    watch: ExitWatch,
    who: String,
    /// Armed at this trial's step.
    armed: bool,
    /// Armed at all (a helper may be armed at another protocol's step).
    may_crash: bool,
    pid: u32,
    /// How the trial's armed children ended (shared with the [`Trial`]).
    record: Rc<Cell<Armed>>,
}

impl Peer {
    /// Waits at most `timeout` for a report starting with `prefix`.
    fn report(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        self.child.as_mut()?.next_report(prefix, timeout)
    }

    /// Whether the child has reported a line starting with `prefix` so far.
    fn has_reported(&mut self, prefix: &str) -> bool {
        self.child.as_mut().is_some_and(|c| c.has_reported(prefix))
    }

    /// When its death (or exit) became observable, if it did.
    fn died(&self) -> Option<Instant> {
        self.watch.at()
    }
}

impl Drop for Peer {
    /// A peer the survivor did not [`end`](Trial::end) (it failed first) is killed;
    /// whether it had reached its crash point is still recorded.
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let ended = child.end(Duration::ZERO, &self.watch);
            if self.armed {
                let how = if ended.crashed {
                    Armed::Crashed
                } else if ended.timed_out {
                    Armed::Unknown
                } else {
                    Armed::Completed
                };
                self.record.set(self.record.get().merge(how));
            }
        }
        forget_pid(self.pid);
    }
}

/// How the armed child(ren) of a trial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Armed {
    /// No armed child ran (nothing to arm in this trial).
    NotRun,
    /// At least one died at the crash point.
    Crashed,
    /// Every one ran to completion: the step does not exist.
    Completed,
    /// One was killed by us before it could end (the survivor failed first).
    Unknown,
}

impl Armed {
    /// The outcome of a trial with one more armed child that ended as `other`.
    fn merge(self, other: Armed) -> Armed {
        use Armed::*;
        match (self, other) {
            (Crashed, _) | (_, Crashed) => Crashed,
            (Unknown, _) | (_, Unknown) => Unknown,
            (Completed, _) | (_, Completed) => Completed,
            (NotRun, NotRun) => NotRun,
        }
    }
}

/// One attempt: a protocol, a step, a unique object name, and what was seen.
struct Trial {
    protocol: &'static str,
    step: u32,
    name: String,
    armed: Rc<Cell<Armed>>,
    recovery: Option<Duration>,
    notes: Vec<String>,
}

impl Trial {
    fn new(protocol: &'static str, step: u32) -> Self {
        Self {
            protocol,
            step,
            name: unique_name(&format!("cp-{}", protocol.replace('.', "-"))),
            armed: Rc::new(Cell::new(Armed::NotRun)),
            recovery: None,
            notes: Vec::new(),
        }
    }

    /// Starts child `who` (a protocol's child or a helper), armed at `crash_at`
    /// (`"PROTOCOL:STEP"`) if given, with the object name and `args`.
    fn spawn(&mut self, who: &str, crash_at: Option<String>, args: &[(&str, String)]) -> Peer {
        let mut s = Scenario::new("crash_child")
            .arg("who", who)
            .arg("name", &self.name);
        for (k, v) in args {
            s = s.arg(k, v);
        }
        let armed = crash_at.as_deref().is_some_and(|c| {
            c.rsplit_once(':')
                .is_some_and(|(p, k)| p == self.protocol && k == self.step.to_string())
        });
        if let Some(c) = &crash_at {
            s = s.env(CRASH_ENV, c);
        }
        let may_crash = crash_at.is_some();
        let child = s.spawn();
        let pid = child.pid();
        remember_pid(pid);
        let watch = child.watch_exit();
        Peer {
            child: Some(child),
            watch,
            who: who.to_owned(),
            armed,
            may_crash,
            pid,
            record: self.armed.clone(),
        }
    }

    /// Starts this protocol's child, armed at this trial's step.
    fn spawn_armed(&mut self, args: &[(&str, String)]) -> Peer {
        let at = format!("{}:{}", self.protocol, self.step);
        self.spawn(self.protocol, Some(at), args)
    }

    /// Waits for `peer` to end: it must have died at its crash point or exited
    /// successfully (a hang, a panic or an error exit is a failure).
    fn end(&mut self, mut peer: Peer) -> Result<Ended, String> {
        let child = peer.child.take().expect("not ended twice");
        let ended = child.end(CHILD_LIMIT, &peer.watch);
        if ended.timed_out {
            return Err(format!(
                "child {} still running after {CHILD_LIMIT:?} (hang), killed; output:\n{}",
                peer.who, ended.finished.output
            ));
        }
        if !ended.crashed && !ended.finished.status.success() {
            return Err(format!(
                "child {} failed ({}); output:\n{}",
                peer.who, ended.finished.status, ended.finished.output
            ));
        }
        if peer.armed {
            let how = if ended.crashed {
                Armed::Crashed
            } else {
                Armed::Completed
            };
            self.armed.set(self.armed.get().merge(how));
        } else if ended.crashed && !peer.may_crash {
            return Err(format!(
                "child {} was killed without being armed; output:\n{}",
                peer.who, ended.finished.output
            ));
        }
        Ok(ended)
    }

    /// Kills a helper child (the dead peer of a takeover or reclaim) and reaps it.
    fn kill(&mut self, mut peer: Peer) -> Ended {
        // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped
        // child (the exit watch waits with WNOWAIT), so it names no other process.
        unsafe { libc::kill(peer.pid as libc::pid_t, libc::SIGKILL) };
        let child = peer.child.take().expect("not ended twice");
        child.end(CHILD_LIMIT, &peer.watch)
    }

    /// Records a recovery (from `death` to `at`) and checks it against [`RECOVERY`].
    fn recovered(&mut self, death: Instant, at: Instant, what: &str) -> Result<(), String> {
        let took = at.saturating_duration_since(death);
        self.recovery = Some(self.recovery.map_or(took, |r| r.max(took)));
        if took > RECOVERY {
            return Err(format!(
                "{what}: recovered {took:?} after the child's death (bound {RECOVERY:?})"
            ));
        }
        Ok(())
    }

    fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }
}

/// Values of the reports `key=value` (in order).
fn values(reports: &[String], key: &str) -> Vec<u64> {
    reports
        .iter()
        .filter_map(|r| r.strip_prefix(key)?.strip_prefix('='))
        .filter_map(|v| v.parse().ok())
        .collect()
}

fn has(reports: &[String], line: &str) -> bool {
    reports.iter().any(|r| r == line)
}

/// What one poll of the survivor's receiving side gave.
enum Got {
    Item(u64),
    /// Nothing yet; the sender is known to have attached, so a disconnect is due
    /// once it died: keep waiting (up to [`WAIT`] after the death).
    Nothing,
    /// Nothing, and the sender may never have attached (a disconnect is not due):
    /// stop [`RECOVERY`] after the death.
    Idle,
    Disconnected,
    Broken(String),
}

struct Drained {
    items: Vec<u64>,
    disconnected: Option<Instant>,
}

/// Receives until a disconnect, or until the child is dead and nothing more comes.
///
/// `next` polls for at most [`SLICE`]. (With polls shorter than the rings' 10 ms
/// liveness period, a consumer whose producer was SIGKILLed is not told
/// `Disconnected` for minutes: each wait schedules its first liveness check 10 ms in,
/// and `try_pop`/`try_recv` check once per 65536 empty polls. This driver found it
/// with 5 ms polls.)
fn drain(watch: &ExitWatch, mut next: impl FnMut(Duration) -> Got) -> Result<Drained, String> {
    let limit = Instant::now() + CHILD_LIMIT;
    let mut items = Vec::new();
    loop {
        match next(SLICE) {
            Got::Item(v) => items.push(v),
            Got::Disconnected => {
                return Ok(Drained {
                    items,
                    disconnected: Some(Instant::now()),
                });
            }
            Got::Broken(e) => return Err(format!("receiving side broke: {e}")),
            got @ (Got::Nothing | Got::Idle) => {
                let now = Instant::now();
                let grace = if matches!(got, Got::Idle) {
                    RECOVERY
                } else {
                    WAIT
                };
                if watch.at().is_some_and(|d| now >= d + grace) {
                    return Ok(Drained {
                        items,
                        disconnected: None,
                    });
                }
                if now >= limit {
                    return Err(format!("neither data nor a disconnect for {CHILD_LIMIT:?}"));
                }
            }
        }
    }
}

/// `items` must be `start, start + 1, ...`: every acknowledged one (`acked`, from
/// `start`) exactly once, then at most `in_flight` unacknowledged ones, in order.
fn check_sequence(items: &[u64], start: u64, acked: u64, in_flight: u64) -> Result<(), String> {
    for (i, &v) in items.iter().enumerate() {
        if v != start + i as u64 {
            return Err(format!(
                "item {i} is {v}, expected {} (lost, duplicated or reordered): {items:?}",
                start + i as u64
            ));
        }
    }
    let n = items.len() as u64;
    if n < acked {
        return Err(format!(
            "only {n} items arrived, {acked} were acknowledged: {items:?}"
        ));
    }
    if n > acked + in_flight {
        return Err(format!(
            "{n} items arrived, only {acked} acknowledged and {in_flight} in flight"
        ));
    }
    Ok(())
}

/// A consumer died: `got` (what it reported, in order) and `drained` (what the
/// survivor found after it) must together be `0..total` in order, except for at most
/// `lost` items right after the last reported one (taken by the dead consumer).
/// Returns how many were lost.
fn check_split(got: &[u64], drained: &[u64], total: u64, lost: u64) -> Result<u64, String> {
    let ctx = || format!("reported {got:?}, drained {drained:?}");
    for (i, &v) in got.iter().enumerate() {
        if v != i as u64 {
            return Err(format!("the consumer got {v} as item {i}: {}", ctx()));
        }
    }
    let first = drained.first().copied().unwrap_or(total);
    let a = got.len() as u64;
    if first < a {
        return Err(format!("item {first} delivered twice: {}", ctx()));
    }
    if first - a > lost {
        return Err(format!(
            "{} items lost, at most {lost} in flight: {}",
            first - a,
            ctx()
        ));
    }
    for (i, &v) in drained.iter().enumerate() {
        if v != first + i as u64 {
            return Err(format!(
                "drained {v} as item {}: {}",
                first + i as u64,
                ctx()
            ));
        }
    }
    if first + drained.len() as u64 != total {
        return Err(format!("items missing at the end: {}", ctx()));
    }
    Ok(first - a)
}

/// Waits (polling) until `cond` holds; `false` at the deadline.
fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    true
}

fn builder(name: &str) -> shmlink::segment::SegmentBuilder {
    Segment::builder(name).timeout(WAIT)
}

/// Removes every segment of a trial (the object and `NAME.*`, e.g. connections).
fn cleanup(name: &str) {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for entry in dir.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix("shmlink.")) else {
            continue;
        };
        let Some((_uid, seg)) = rest.split_once('.') else {
            continue;
        };
        if seg == name || seg.starts_with(&format!("{name}.")) {
            let _ = shmlink::segment::unlink(seg);
        }
    }
}

// ---- the watchdog: an attempt that hangs ends the test, children included ----

struct Watchdog {
    attempt: Option<(String, Instant)>,
    pids: Vec<u32>,
    table: String,
}

static WATCHDOG: Mutex<Watchdog> = Mutex::new(Watchdog {
    attempt: None,
    pids: Vec::new(),
    table: String::new(),
});

fn watchdog() -> std::sync::MutexGuard<'static, Watchdog> {
    WATCHDOG.lock().unwrap_or_else(|e| e.into_inner())
}

fn remember_pid(pid: u32) {
    watchdog().pids.push(pid);
}

fn forget_pid(pid: u32) {
    watchdog().pids.retain(|&p| p != pid);
}

fn start_watchdog() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(|| {
            loop {
                std::thread::sleep(Duration::from_millis(200));
                let w = watchdog();
                let Some((what, since)) = &w.attempt else {
                    continue;
                };
                if since.elapsed() < ATTEMPT_LIMIT {
                    continue;
                }
                for &pid in &w.pids {
                    // SAFETY: kill has no memory-safety preconditions; these are
                    // our children, not reaped yet.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                }
                let _ = writeln!(
                    std::io::stderr(),
                    "crash_points watchdog: {what} still running after {ATTEMPT_LIMIT:?}; \
                     children killed, test aborted.\n{}",
                    w.table
                );
                std::process::exit(101);
            }
        });
    });
}

// ---- exploration and the table ----

#[derive(Default)]
struct Row {
    points: u32,
    runs: u32,
    failures: Vec<String>,
    /// Known defects that reproduced: step, how often, the last failure.
    known: BTreeMap<u32, (u32, String)>,
    recovery: Option<Duration>,
    notes: BTreeMap<u32, BTreeSet<String>>,
    fixed: Vec<u32>,
}

fn known_defect(protocol: &str, step: u32) -> Option<&'static str> {
    KNOWN_DEFECTS
        .iter()
        .find(|(p, k, _)| *p == protocol && *k == step)
        .map(|(_, _, what)| *what)
}

fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".to_owned())
}

/// Runs one attempt of `p` at `step`; returns how its armed child ended.
fn attempt(p: &Protocol, step: u32, row: &mut Row) -> Armed {
    watchdog().attempt = Some((format!("{}:{step}", p.name), Instant::now()));
    let mut trial = Trial::new(p.name, step);
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (p.survivor)(&mut trial)))
            .unwrap_or_else(|e| Err(format!("survivor panicked: {}", panic_text(&*e))));
    cleanup(&trial.name);
    watchdog().attempt = None;
    row.runs += 1;
    if let Some(r) = trial.recovery {
        row.recovery = Some(row.recovery.map_or(r, |m| m.max(r)));
    }
    let armed = trial.armed.get();
    let label = if matches!(armed, Armed::Crashed | Armed::Unknown) {
        step
    } else {
        0 // ran to completion: notes under "done"
    };
    row.notes
        .entry(label)
        .or_default()
        .extend(trial.notes.iter().cloned());
    match (result, known_defect(p.name, step)) {
        (Ok(()), None) => {}
        (Ok(()), Some(_)) => row.fixed.push(step),
        (Err(e), None) => row.failures.push(format!("{}:{step}: {e}", p.name)),
        (Err(e), Some(_)) => {
            let seen = row.known.entry(step).or_insert((0, String::new()));
            *seen = (seen.0 + 1, e);
        }
    }
    armed
}

/// Explores every step of `p`, or only `only`.
fn explore(p: &Protocol, only: Option<u32>, row: &mut Row) {
    if let Some(step) = only {
        attempt(p, step, row);
        return;
    }
    let mut unknown = 0;
    for step in 1..=MAX_STEP {
        match attempt(p, step, row) {
            Armed::Crashed => {
                row.points = row.points.max(step);
                unknown = 0;
            }
            // The survivor failed before the child ended: maybe there are more
            // steps; give up after two such attempts in a row.
            Armed::Unknown if unknown < 1 => unknown += 1,
            Armed::Unknown => {
                row.failures.push(format!(
                    "{}: exploration stopped at step {step} (the survivor keeps failing \
                     before the child ends)",
                    p.name
                ));
                return;
            }
            Armed::Completed | Armed::NotRun => return,
        }
    }
    row.failures.push(format!(
        "{}: the child died at every step up to {MAX_STEP}",
        p.name
    ));
}

fn table(rows: &[(&str, Row)], trials: u32, elapsed: Duration) -> String {
    let mut out = format!(
        "crash points: {trials} trial(s) in {:.1} s (recovery bound {RECOVERY:?})\n\
         {:<18} {:>6} {:>5} {:>8} {:>5} {:>12}\n",
        elapsed.as_secs_f64(),
        "protocol",
        "points",
        "runs",
        "failures",
        "known",
        "max recovery",
    );
    for (name, row) in rows {
        let rec = row.recovery.map_or_else(
            || "-".to_owned(),
            |r| format!("{:.1} ms", r.as_secs_f64() * 1e3),
        );
        out += &format!(
            "{:<18} {:>6} {:>5} {:>8} {:>5} {:>12}\n",
            name,
            row.points,
            row.runs,
            row.failures.len(),
            row.known.values().map(|(n, _)| n).sum::<u32>(),
            rec
        );
    }
    let mut details = String::new();
    for (name, row) in rows {
        for (step, notes) in &row.notes {
            if notes.is_empty() {
                continue;
            }
            let at = if *step == 0 {
                "done".to_owned()
            } else {
                step.to_string()
            };
            let notes: Vec<_> = notes.iter().map(String::as_str).collect();
            details += &format!("  {name}:{at}: {}\n", notes.join("; "));
        }
        if !row.fixed.is_empty() {
            details += &format!(
                "  {name}: known defect at step(s) {:?} did not reproduce (fixed?)\n",
                row.fixed
            );
        }
    }
    if !details.is_empty() {
        out += "outcomes:\n";
        out += &details;
    }
    for (name, row) in rows {
        for (step, (n, last)) in &row.known {
            out += &format!(
                "KNOWN   {name}:{step} ({n} run(s)): {}\n        last: {last}\n",
                known_defect(name, *step).unwrap_or("?")
            );
        }
    }
    for (_, row) in rows {
        for f in &row.failures {
            out += &format!("FAILED  {f}\n");
        }
    }
    out
}

fn run(only_known: bool) {
    start_watchdog();
    let trials: u32 = std::env::var(TRIALS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 1 } else { 3 })
        .max(1);
    // `SHMLINK_CRASH_ONLY=semaphore.` explores the protocols named so only.
    let only = std::env::var(ONLY_ENV).unwrap_or_default();
    let started = Instant::now();
    let mut rows: Vec<(&str, Row)> = PROTOCOLS.iter().map(|p| (p.name, Row::default())).collect();
    for _ in 0..trials {
        for (i, p) in PROTOCOLS.iter().enumerate() {
            if !p.name.starts_with(&only) {
                continue;
            }
            let row = &mut rows[i].1;
            if only_known {
                for (_, step, _) in KNOWN_DEFECTS.iter().filter(|(n, _, _)| *n == p.name) {
                    explore(p, Some(*step), row);
                }
            } else {
                explore(p, None, row);
            }
            watchdog().table = table(&rows, trials, started.elapsed());
        }
    }
    let text = table(&rows, trials, started.elapsed());
    let _ = writeln!(std::io::stderr(), "{text}");
    let failed = rows.iter().any(|(_, r)| !r.failures.is_empty())
        || (only_known && rows.iter().any(|(_, r)| !r.known.is_empty()));
    assert!(!failed, "crash-point exploration failed:\n{text}");
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn crash_points() {
    run(false);
}

#[test]
#[ignore = "defect: reproduces KNOWN_DEFECTS (see the table printed by crash_points)"]
fn known_defects() {
    run(true);
}

// ---------------------------------------------------------------------------------
// segment.create: a creator dies at each step; a survivor's `open_or_create`
// succeeds (with the published contents, or a fresh segment) or gives a typed error.

/// What the survivor's `open_or_create` may wait for a dead creator.
const SEGMENT_TIMEOUT: Duration = Duration::from_millis(500);
const BOARD_VALUE: u64 = 0x5eed_cafe;

#[repr(C)]
struct Board {
    value: AtomicU64,
    spare: AtomicU64,
}

// SAFETY: repr(C), only integer atomics (any bit pattern valid), no pointers.
unsafe impl ShmSafe for Board {
    const TYPE_NAME: &'static str = "tests::crash_points::Board";
    fn new_zeroed() -> Self {
        Board {
            value: AtomicU64::new(0),
            spare: AtomicU64::new(0),
        }
    }
}

fn segment_creator() {
    let board = ShmRegion::<Board>::create_with(builder(&arg("name")), 64, |b, _| {
        b.value.store(BOARD_VALUE, Ordering::Relaxed);
    })
    .expect("create");
    report("created");
    drop(board);
}

fn segment_create(t: &mut Trial) -> Result<(), String> {
    let peer = t.spawn_armed(&[]);
    let ended = t.end(peer)?;
    let started = Instant::now();
    let got =
        ShmRegion::<Board>::open_or_create(Segment::builder(&t.name).timeout(SEGMENT_TIMEOUT), 64);
    let took = started.elapsed();
    if took > SEGMENT_TIMEOUT + Duration::from_secs(1) {
        return Err(format!(
            "open_or_create took {took:?} (its timeout is {SEGMENT_TIMEOUT:?})"
        ));
    }
    match got {
        Ok((board, how)) => {
            let value = board.shared().value.load(Ordering::Acquire);
            let want = match how {
                Disposition::Created | Disposition::Replaced => 0,
                // Published before the creator died: what it wrote is kept.
                Disposition::Opened | Disposition::Resumed => BOARD_VALUE,
            };
            if value != want {
                return Err(format!(
                    "{how:?} a segment holding {value:#x}, not {want:#x}"
                ));
            }
            t.note(format!("{how:?}"));
            t.recovered(ended.at, Instant::now(), "open_or_create")
        }
        // Documented: a stale segment is resumed or replaced, never returned as an error.
        Err(OpenError::Stale(info)) => Err(format!(
            "open_or_create returned Stale({:?}) after {took:?} instead of replacing the \
             stale segment",
            info.reason
        )),
        // Documented: a creator between shm_open and flock gets a grace period.
        Err(e) => {
            let debug = format!("{e:?}");
            let variant = debug.split([' ', '(', '{']).next().unwrap_or("?");
            t.note(format!("typed error {variant}"));
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------
// SPSC: a producer dies claiming or pushing (or taking over from a dead one), or a
// consumer dies popping.

const SPSC_PUSHES: u64 = 24;
const SPSC_VICTIM_PUSHES: u64 = 8;
const SENTINEL: u64 = 0xdead_beef;

fn spsc_producer() {
    let ring = Spsc::<u64, _>::open(builder(&arg("name"))).expect("open");
    let start: u64 = arg("start").parse().expect("start");
    let mut tx = ring.producer().expect("claim");
    report("claimed");
    for i in start..start + SPSC_PUSHES {
        tx.push_timeout(i, WAIT).expect("push");
        report(format!("pushed={i}"));
    }
}

/// Pushes a few, then holds the producer role until killed.
fn spsc_victim() {
    let ring = Spsc::<u64, _>::open(builder(&arg("name"))).expect("open");
    let mut tx = ring.producer().expect("claim");
    for i in 0..SPSC_VICTIM_PUSHES {
        tx.push_timeout(i, WAIT).expect("push");
    }
    report("holding");
    std::thread::sleep(CHILD_LIMIT);
}

fn spsc_producer_dies(t: &mut Trial) -> Result<(), String> {
    spsc_producer_run(t, false)
}

fn spsc_takeover_dies(t: &mut Trial) -> Result<(), String> {
    spsc_producer_run(t, true)
}

fn spsc_producer_run(t: &mut Trial, victim: bool) -> Result<(), String> {
    let ring = Spsc::<u64, _>::create(
        builder(&t.name).unlink_on_drop(true),
        16,
        WaitMode::Blocking,
    )
    .map_err(|e| format!("create: {e}"))?;
    let mut rx = ring.consumer().map_err(|e| format!("consumer: {e}"))?;
    let mut start = 0;
    if victim {
        // A producer that dies holding the role: the armed child takes it over.
        let mut v = t.spawn("spsc_victim", None, &[]);
        if v.report("holding", WAIT).is_none() {
            return Err("the victim producer never held the role".into());
        }
        t.kill(v);
        start = SPSC_VICTIM_PUSHES;
    }
    let mut peer = t.spawn_armed(&[("start", start.to_string())]);
    if victim {
        // Until the child has taken the role over, the role names the dead victim
        // and a consumer rightly reports Disconnected: drain only after that.
        wait_until(WAIT, || {
            peer.has_reported("claimed") || peer.died().is_some()
        });
    }
    let drained = drain(&peer.watch.clone(), |slice| match rx.pop_timeout(slice) {
        Ok(v) => Got::Item(v),
        Err(PopError::Timeout | PopError::Empty) if rx.is_abandoned() => Got::Nothing,
        Err(PopError::Timeout | PopError::Empty) => Got::Idle,
        Err(PopError::Disconnected) => Got::Disconnected,
        Err(e) => Got::Broken(e.to_string()),
    });
    let claimed = peer.has_reported("claimed");
    let ended = t.end(peer)?;
    let drained = drained?;
    let acked = values(&ended.finished.reports, "pushed").len() as u64;
    check_sequence(&drained.items, 0, start + acked, 1)?;
    match drained.disconnected {
        Some(at) => t.recovered(ended.at, at, "consumer sees the producer gone")?,
        None if claimed || rx.is_abandoned() => {
            return Err("the producer claimed the role and died, but the consumer \
                        never saw Disconnected"
                .into());
        }
        None => t.note("no producer attached: the consumer keeps waiting"),
    }
    // The role is free again: a new producer continues after what was published.
    let t0 = Instant::now();
    let mut tx = ring
        .producer()
        .map_err(|e| format!("producer role not taken over: {e}"))?;
    tx.try_push(SENTINEL)
        .map_err(|e| format!("push after takeover: {e}"))?;
    match rx.pop_timeout(WAIT) {
        Ok(SENTINEL) => {}
        other => return Err(format!("after takeover, popped {other:?}")),
    }
    t.recovered(ended.at.max(t0), Instant::now(), "producer role taken over")
}

fn spsc_consumer() {
    let ring = Spsc::<u64, _>::open(builder(&arg("name"))).expect("open");
    let mut rx = ring.consumer().expect("claim");
    report("claimed");
    for _ in 0..SPSC_PUSHES {
        let v = rx.pop_timeout(WAIT).expect("pop");
        report(format!("got={v}"));
    }
}

fn spsc_consumer_dies(t: &mut Trial) -> Result<(), String> {
    let ring = Spsc::<u64, _>::create(
        builder(&t.name).unlink_on_drop(true),
        32,
        WaitMode::Blocking,
    )
    .map_err(|e| format!("create: {e}"))?;
    let mut tx = ring.producer().map_err(|e| format!("producer: {e}"))?;
    for i in 0..SPSC_PUSHES {
        tx.try_push(i).map_err(|e| format!("push: {e}"))?;
    }
    let peer = t.spawn_armed(&[]);
    let ended = t.end(peer)?;
    let got = values(&ended.finished.reports, "got");
    let t0 = Instant::now();
    let mut rx = ring
        .consumer()
        .map_err(|e| format!("consumer role not taken over: {e}"))?;
    let mut drained = Vec::new();
    loop {
        match rx.try_pop() {
            Ok(v) => drained.push(v),
            Err(PopError::Empty) => break,
            Err(e) => return Err(format!("drain after takeover: {e}")),
        }
    }
    t.recovered(ended.at.max(t0), Instant::now(), "consumer role taken over")?;
    let lost = check_split(&got, &drained, SPSC_PUSHES, 1)?;
    if lost > 0 {
        t.note(format!("{lost} item(s) taken by the dead consumer"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// MPMC: a producer dies registering or pushing, a consumer dies popping, a repairer
// dies repairing the record of a producer that died mid-push.

const MPMC_PUSHES: u64 = 24;
const MPMC_CAPACITY: u64 = 16;

fn mpmc_producer() {
    let ring = Mpmc::<u64, _>::open(builder(&arg("name"))).expect("open");
    let start: u64 = arg("start").parse().expect("start");
    let count: u64 = arg("count").parse().expect("count");
    let mut tx = ring.producer().expect("register");
    report("registered");
    for i in start..start + count {
        tx.push_timeout(i, WAIT).expect("push");
        report(format!("pushed={i}"));
    }
}

fn mpmc_create(t: &Trial) -> Result<Mpmc<u64, ShmRegion<shmlink::ring::MpmcHeader>>, String> {
    Mpmc::<u64, _>::create(
        builder(&t.name).unlink_on_drop(true),
        MPMC_CAPACITY as usize,
        WaitMode::Blocking,
    )
    .map_err(|e| format!("create: {e}"))
}

fn mpmc_producer_dies(t: &mut Trial) -> Result<(), String> {
    let ring = mpmc_create(t)?;
    let mut rx = ring.consumer().map_err(|e| format!("consumer: {e}"))?;
    let mut peer = t.spawn_armed(&[
        ("start", "0".to_owned()),
        ("count", MPMC_PUSHES.to_string()),
    ]);
    let drained = drain(&peer.watch.clone(), |slice| match rx.pop_timeout(slice) {
        Ok(v) => Got::Item(v),
        Err(PopError::Timeout | PopError::Empty) => Got::Idle,
        Err(PopError::Disconnected) => Got::Disconnected,
        Err(e) => Got::Broken(e.to_string()),
    });
    let registered = peer.has_reported("registered");
    let ended = t.end(peer)?;
    let drained = drained?;
    let acked = values(&ended.finished.reports, "pushed").len() as u64;
    check_sequence(&drained.items, 0, acked, 1)?;
    match drained.disconnected {
        Some(at) => t.recovered(ended.at, at, "consumer sees every producer gone")?,
        None if registered => {
            return Err(format!(
                "the producer registered and died, but the consumer saw no Disconnected \
                 within {RECOVERY:?}"
            ));
        }
        None => t.note("no producer registered: the consumer keeps waiting"),
    }
    mpmc_usable(t, &ring, ended.at, 1)
}

/// The ring still works after a death: every record but the `held` ones we hold can
/// be registered (the dead child's is reclaimed), and a value goes through.
fn mpmc_usable(
    t: &mut Trial,
    ring: &Mpmc<u64, ShmRegion<shmlink::ring::MpmcHeader>>,
    death: Instant,
    held: usize,
) -> Result<(), String> {
    use shmlink::ring::mpmc::MAX_PARTICIPANTS;
    let t0 = Instant::now();
    let mut producers = Vec::new();
    while producers.len() <= MAX_PARTICIPANTS {
        match ring.producer() {
            Ok(p) => producers.push(p),
            Err(_) => break,
        }
    }
    if producers.len() != MAX_PARTICIPANTS - held {
        return Err(format!(
            "registered {} handles, expected {} (a dead record was not reclaimed)",
            producers.len(),
            MAX_PARTICIPANTS - held
        ));
    }
    producers.truncate(1);
    let mut rx = ring
        .consumer()
        .map_err(|e| format!("consumer after the death: {e}"))?;
    producers[0]
        .push_timeout(SENTINEL, WAIT)
        .map_err(|e| format!("push after the death: {e}"))?;
    loop {
        match rx.pop_timeout(WAIT) {
            Ok(SENTINEL) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("pop after the death: {e}")),
        }
    }
    let stats = ring.repairs();
    if stats.holes + stats.lost > 0 {
        t.note(format!(
            "repairs: {} hole(s), {} lost",
            stats.holes, stats.lost
        ));
    }
    t.recovered(death.max(t0), Instant::now(), "ring usable again")
}

fn mpmc_consumer() {
    let ring = Mpmc::<u64, _>::open(builder(&arg("name"))).expect("open");
    let mut rx = ring.consumer().expect("register");
    report("registered");
    for _ in 0..MPMC_CAPACITY {
        let v = rx.pop_timeout(WAIT).expect("pop");
        report(format!("got={v}"));
    }
}

fn mpmc_consumer_dies(t: &mut Trial) -> Result<(), String> {
    let ring = mpmc_create(t)?;
    let mut tx = ring.producer().map_err(|e| format!("producer: {e}"))?;
    for i in 0..MPMC_CAPACITY {
        tx.try_push(i).map_err(|e| format!("push: {e}"))?;
    }
    let peer = t.spawn_armed(&[]);
    let ended = t.end(peer)?;
    let got = values(&ended.finished.reports, "got");
    let t0 = Instant::now();
    let mut rx = ring.consumer().map_err(|e| format!("consumer: {e}"))?;
    let mut drained = Vec::new();
    let limit = Instant::now() + WAIT;
    loop {
        match rx.try_pop() {
            Ok(v) => drained.push(v),
            Err(PopError::Empty) => break,
            Err(e) => return Err(format!("drain: {e}")),
        }
        if Instant::now() > limit {
            return Err("drain does not end".into());
        }
    }
    let lost = check_split(&got, &drained, MPMC_CAPACITY, 1)?;
    if lost > 0 {
        t.note(format!("{lost} item(s) taken by the dead consumer"));
    }
    // A slot the dead consumer claimed blocks producers one lap later: push a lap.
    for i in 0..MPMC_CAPACITY {
        tx.push_timeout(1000 + i, WAIT)
            .map_err(|e| format!("push {i} of the next lap: {e}"))?;
        match rx.try_pop() {
            Ok(v) if v == 1000 + i => {}
            other => return Err(format!("next lap: popped {other:?}, pushed {}", 1000 + i)),
        }
    }
    let stats = ring.repairs();
    if stats.lost > 1 || stats.holes > 0 {
        return Err(format!("repairs {stats:?} after one consumer died"));
    }
    t.recovered(ended.at.max(t0), Instant::now(), "a lap through the ring")
}

fn mpmc_repairer() {
    let ring = Mpmc::<u64, _>::open(builder(&arg("name"))).expect("open");
    let mut rx = ring.consumer().expect("register");
    report("registered");
    loop {
        match rx.pop_timeout(Duration::from_millis(30)) {
            Ok(v) => report(format!("got={v}")),
            Err(PopError::Timeout | PopError::Disconnected) => break,
            Err(e) => panic!("pop: {e}"),
        }
    }
}

/// A victim producer dies at each `mpmc.push` step (once those points exist); after
/// each death the armed child meets its record (register repairs it) and dies at
/// this trial's `mpmc.repair` step.
fn mpmc_repairer_dies(t: &mut Trial) -> Result<(), String> {
    let ring = mpmc_create(t)?;
    let mut seen = BTreeSet::new();
    let mut situations = 0;
    for v in 1..=MAX_STEP {
        let value = 1000 * u64::from(v);
        let victim = t.spawn(
            "mpmc.push",
            Some(format!("mpmc.push:{v}")),
            &[("start", value.to_string()), ("count", "1".to_owned())],
        );
        let victim = t.end(victim)?;
        if !victim.crashed {
            // No push step `v`: the victim pushed and left; take its value out.
            break;
        }
        situations += 1;
        let victim_acked = !values(&victim.finished.reports, "pushed").is_empty();
        let peer = t.spawn_armed(&[]);
        let ended = t.end(peer)?;
        let mut got = values(&ended.finished.reports, "got");
        // The ring works again, and the victim's value came out at most once
        // (exactly once if acknowledged).
        let t0 = Instant::now();
        let mut rx = ring.consumer().map_err(|e| format!("consumer: {e}"))?;
        let mut tx = ring.producer().map_err(|e| format!("producer: {e}"))?;
        tx.push_timeout(SENTINEL, WAIT)
            .map_err(|e| format!("push after repair: {e}"))?;
        loop {
            match rx.pop_timeout(WAIT) {
                Ok(SENTINEL) => break,
                Ok(x) => got.push(x),
                Err(e) => return Err(format!("pop after repair: {e}")),
            }
        }
        t.recovered(ended.at.max(t0), Instant::now(), "ring usable after repair")?;
        for x in got {
            if !seen.insert(x) {
                return Err(format!("value {x} delivered twice"));
            }
        }
        if victim_acked && !seen.contains(&value) {
            return Err(format!("acknowledged value {value} lost"));
        }
    }
    t.note(format!("{situations} dead producer(s) repaired"));
    Ok(())
}

// ---------------------------------------------------------------------------------
// frame.publish: a frame producer dies mid-frame; the consumer never sees a partial
// frame, gets every acknowledged one, then Disconnected.

const FRAMES: u64 = 24;

fn frame_bytes(i: u64) -> Vec<u8> {
    let len = 8 + (i as usize * 37) % 200;
    let mut v = i.to_le_bytes().to_vec();
    v.extend((8..len).map(|j| (i as u8).wrapping_mul(31).wrapping_add(j as u8)));
    v
}

fn frame_sender() {
    let ring = FrameRing::open(builder(&arg("name"))).expect("open");
    let mut tx = ring.producer().expect("claim");
    report("claimed");
    for i in 0..FRAMES {
        tx.send_timeout(&frame_bytes(i), WAIT).expect("send");
        report(format!("sent={i}"));
    }
}

fn frame_sender_dies(t: &mut Trial) -> Result<(), String> {
    let ring = FrameRing::create(
        builder(&t.name).unlink_on_drop(true),
        2048,
        256,
        WaitMode::Blocking,
    )
    .map_err(|e| format!("create: {e}"))?;
    let mut rx = ring.consumer().map_err(|e| format!("consumer: {e}"))?;
    let peer = t.spawn_armed(&[]);
    let mut buf = Vec::new();
    // The producer claims its role before any frame step: a disconnect is due.
    let drained = drain(&peer.watch.clone(), |slice| {
        match rx.recv_timeout(&mut buf, slice) {
            Ok(_) => {
                let Some(i) = buf
                    .get(..8)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                else {
                    return Got::Broken(format!("a frame of {} bytes", buf.len()));
                };
                if buf != frame_bytes(i) {
                    return Got::Broken(format!("frame {i} torn: {} bytes", buf.len()));
                }
                Got::Item(i)
            }
            Err(FrameRecvError::Timeout | FrameRecvError::Empty) => Got::Nothing,
            Err(FrameRecvError::Disconnected) => Got::Disconnected,
            Err(e) => Got::Broken(e.to_string()),
        }
    });
    let ended = t.end(peer)?;
    let drained = drained?;
    let acked = values(&ended.finished.reports, "sent").len() as u64;
    check_sequence(&drained.items, 0, acked, 1)?;
    match drained.disconnected {
        Some(at) => t.recovered(ended.at, at, "consumer sees the producer gone"),
        None => Err("the producer died, but the consumer never saw Disconnected".into()),
    }
}

// ---------------------------------------------------------------------------------
// Bakery: a participant dies joining, locking or unlocking (or reclaiming the slot of
// one that died holding the lock). The protected value is `[counter, marker]`: inside
// the critical section the marker names who is in it, so a second process inside, or
// a dead holder's half-done section, is seen.

type Guarded = [u64; 2];
const BAKERY_PARTICIPANTS: usize = 3;
const BAKERY_ITERS: u64 = 12;
const PARENT_MARK: u64 = u64::MAX;

/// One critical section: check and set the marker, increment. `Err` on a violation.
fn bakery_section(
    m: &mut BakeryMutex<Guarded, ShmRegion<shmlink::lock::BakeryControl>>,
    me: u64,
) -> Result<bool, String> {
    let (mut g, died) = match m.lock_timeout(WAIT) {
        Ok(g) => (g, false),
        Err(LockError::OwnerDied(g)) => (g, true),
        Err(e) => return Err(format!("lock: {e}")),
    };
    let [count, marker] = g.get();
    if marker != 0 && !died {
        return Err(format!(
            "entered with marker {marker:#x} in the data and no OwnerDied"
        ));
    }
    g.set([count, me]);
    std::thread::yield_now();
    if g.get() != [count, me] {
        return Err(format!("value changed under the lock: {:?}", g.get()));
    }
    g.set([count + 1, 0]);
    Ok(died)
}

fn bakery_worker() {
    let mut m = BakeryMutex::<Guarded, _>::open(builder(&arg("name"))).expect("join");
    report("joined");
    let me = u64::from(std::process::id());
    for i in 0..BAKERY_ITERS {
        match bakery_section(&mut m, me) {
            Ok(died) => {
                if died {
                    report("ownerdied");
                }
                report(format!("inc={i}"));
            }
            Err(e) => {
                report(format!("violation={e}"));
                return;
            }
        }
    }
}

/// Takes the lock, marks the data, and holds it until killed.
fn bakery_holder() {
    let mut m = BakeryMutex::<Guarded, _>::open(builder(&arg("name"))).expect("join");
    let mut g = match m.lock_timeout(WAIT) {
        Ok(g) => g,
        Err(LockError::OwnerDied(g)) => g,
        Err(e) => panic!("lock: {e}"),
    };
    let [count, _] = g.get();
    g.set([count, u64::from(std::process::id())]);
    report("holding");
    std::thread::sleep(CHILD_LIMIT);
}

fn bakery_worker_dies(t: &mut Trial) -> Result<(), String> {
    bakery_run(t, false)
}

fn bakery_reclaimer_dies(t: &mut Trial) -> Result<(), String> {
    bakery_run(t, true)
}

fn bakery_run(t: &mut Trial, reclaim: bool) -> Result<(), String> {
    let mut m = BakeryMutex::<Guarded, _>::create(
        builder(&t.name).unlink_on_drop(true),
        BAKERY_PARTICIPANTS,
        [0, 0],
    )
    .map_err(|e| format!("create: {e}"))?;
    let victim = if reclaim {
        let mut v = t.spawn("bakery_holder", None, &[]);
        if v.report("holding", WAIT).is_none() {
            return Err("the holder never took the lock".into());
        }
        Some(v)
    } else {
        None
    };
    let mut peer = t.spawn_armed(&[]);
    if let Some(v) = victim {
        // The armed child queues behind the holder; then the holder dies and the
        // child reclaims its slot. We stay out until the child got in or died.
        if peer.report("joined", WAIT).is_some() {
            std::thread::sleep(Duration::from_millis(5));
        }
        t.kill(v);
        wait_until(WAIT, || peer.has_reported("inc=") || peer.died().is_some());
    }
    let limit = Instant::now() + CHILD_LIMIT;
    let (mut mine, mut owner_died) = (0u64, 0u64);
    let mut measured = false;
    loop {
        let died = bakery_section(&mut m, PARENT_MARK).map_err(|e| format!("parent: {e}"))?;
        let at = Instant::now();
        mine += 1;
        owner_died += u64::from(died);
        if let Some(death) = peer.died() {
            if !measured {
                measured = true;
                t.recovered(death, at, "lock taken after the death")?;
            }
            if mine >= BAKERY_ITERS {
                break;
            }
        }
        if at > limit {
            return Err("the child never ended".into());
        }
        std::thread::sleep(Duration::from_micros(300));
    }
    let ended = t.end(peer)?;
    let reports = &ended.finished.reports;
    if let Some(v) = reports.iter().find(|r| r.starts_with("violation=")) {
        return Err(format!("child: {v}"));
    }
    let theirs = values(reports, "inc").len() as u64;
    let child_died = reports.iter().filter(|r| *r == "ownerdied").count() as u64;
    let count = match m.lock_timeout(WAIT) {
        Ok(g) => g.get()[0],
        Err(LockError::OwnerDied(g)) => {
            owner_died += 1;
            g.get()[0]
        }
        Err(e) => return Err(format!("final lock: {e}")),
    };
    // Our sections and the child's acknowledged ones, plus at most its one in flight.
    if count < mine + theirs || count > mine + theirs + 1 {
        return Err(format!(
            "counter {count}: we did {mine}, the child acknowledged {theirs}"
        ));
    }
    let deaths = u64::from(reclaim) + u64::from(ended.crashed);
    if owner_died + child_died > deaths {
        return Err(format!(
            "OwnerDied told {} time(s), {deaths} process(es) died",
            owner_died + child_died
        ));
    }
    if reclaim && owner_died + child_died == 0 {
        return Err("the holder died holding the lock, and nobody was told".into());
    }
    if owner_died > 0 {
        t.note("parent told OwnerDied");
    }
    // The dead processes' slots are reclaimed: both other slots can be joined.
    let a = m.join().map_err(|e| format!("join after the death: {e}"))?;
    let b = m
        .join()
        .map_err(|e| format!("second join after the death: {e}"))?;
    drop((a, b));
    Ok(())
}

// ---------------------------------------------------------------------------------
// Semaphore: a waiter dies registering or taking a permit; a releaser dies between
// adding the permit and waking the sleeper.

fn semaphore_acquirer() {
    let sem = Semaphore::open(builder(&arg("name"))).expect("open");
    sem.acquire_timeout(WAIT).expect("permit");
    report("took");
    sem.release(1).expect("release");
    report("released");
}

fn semaphore_acquirer_dies(t: &mut Trial) -> Result<(), String> {
    let sem = Semaphore::create(builder(&t.name).unlink_on_drop(true), 0, 4)
        .map_err(|e| format!("create: {e}"))?;
    let peer = t.spawn_armed(&[]);
    // Release one permit once the child waits for it (or died trying).
    if !wait_until(WAIT, || sem.waiters() >= 1 || peer.died().is_some()) {
        return Err("the child never waited for a permit".into());
    }
    std::thread::sleep(Duration::from_millis(2));
    sem.release(1).map_err(|e| format!("release: {e}"))?;
    let ended = t.end(peer)?;
    // The child takes at most one permit: only that one may be gone with it.
    let held = u32::from(!has(&ended.finished.reports, "released"));
    let value = sem.value();
    if value > 1 || 1 - value > held {
        return Err(format!(
            "value {value} after 1 permit released; the dead child could hold {held}"
        ));
    }
    // The dead waiter is forgotten by a repair, except when it died between its
    // registration and its slot's count (steps 1 and 3: documented).
    sem.reclaim_dead();
    let counted = sem.waiters();
    if counted > 0 {
        if ended.crashed && !matches!(t.step, 1 | 3) {
            return Err(format!(
                "the dead waiter is still counted after a repair (died after step {})",
                t.step
            ));
        }
        t.note(format!("{counted} dead waiter(s) still counted"));
    }
    if value == 0 {
        t.note("the permit died with its holder (documented)");
        return Ok(());
    }
    let t0 = Instant::now();
    sem.acquire_timeout(WAIT)
        .map_err(|e| format!("the permit left is not acquirable: {e}"))?;
    t.recovered(ended.at.max(t0), Instant::now(), "permit acquired")
}

fn semaphore_releaser() {
    let sem = Semaphore::open(builder(&arg("name"))).expect("open");
    assert!(
        wait_until(WAIT, || sem.waiters() >= 1),
        "nobody waits for a permit"
    );
    // The waiter is asleep in the kernel by now.
    std::thread::sleep(Duration::from_millis(20));
    sem.release(1).expect("release");
    report("released");
}

// Owned permits: a holder dies taking or giving back its permit, or a repairer dies
// giving back a dead holder's. The semaphore starts with 1 permit of at most 2, so a
// permit given back twice shows (the value would end at 2), and so does one lost (0).

fn semaphore_holder() {
    let sem = Semaphore::open(builder(&arg("name"))).expect("open");
    let permit = sem.permit_timeout(WAIT).expect("permit");
    report("took");
    drop(permit);
    report("returned");
}

fn semaphore_victim() {
    let sem = Semaphore::open(builder(&arg("name"))).expect("open");
    let _permit = sem.permit_timeout(WAIT).expect("permit");
    report("holding");
    std::thread::sleep(CHILD_LIMIT);
}

fn semaphore_repairer() {
    let sem = Semaphore::open(builder(&arg("name"))).expect("open");
    let mut back = 0;
    assert!(
        wait_until(WAIT, || {
            back += sem.reclaim_dead();
            back > 0
        }),
        "no dead holder to repair"
    );
    report(format!("reclaimed={back}"));
}

/// After the child's death: the parent gets the permit within [`RECOVERY`], and once
/// it gave it back, the semaphore holds exactly its 1 permit and no dead holder.
fn semaphore_owned_outcome(
    t: &mut Trial,
    sem: &Semaphore<ShmRegion<shmlink::lock::SemaphoreState>>,
    died: Instant,
) -> Result<(), String> {
    let permit = sem
        .permit_timeout(WAIT)
        .map_err(|e| format!("no permit after the death: {e} (value {})", sem.value()))?;
    t.recovered(died, Instant::now(), "permit taken")?;
    drop(permit);
    sem.reclaim_dead();
    if sem.value() != 1 {
        return Err(format!(
            "value {} after every holder is gone; 1 permit was out (0: lost, 2: given back twice)",
            sem.value()
        ));
    }
    let status = shmlink::lock::semaphore_status(&t.name).map_err(|e| e.to_string())?;
    let me = std::process::id();
    if let Some(h) = status
        .holders
        .iter()
        .find(|h| h.pid != me || h.permits != 0)
    {
        return Err(format!("a holder slot is left: {h:?}"));
    }
    Ok(())
}

fn semaphore_holder_dies(t: &mut Trial) -> Result<(), String> {
    let sem = Semaphore::create(builder(&t.name).unlink_on_drop(true), 1, 2)
        .map_err(|e| format!("create: {e}"))?;
    let peer = t.spawn_armed(&[]);
    let ended = t.end(peer)?;
    semaphore_owned_outcome(t, &sem, ended.at)
}

fn semaphore_repairer_dies(t: &mut Trial) -> Result<(), String> {
    let sem = Semaphore::create(builder(&t.name).unlink_on_drop(true), 1, 2)
        .map_err(|e| format!("create: {e}"))?;
    let mut victim = t.spawn("semaphore_victim", None, &[]);
    if victim.report("holding", WAIT).is_none() {
        return Err("the victim never took its permit".into());
    }
    t.kill(victim);
    let peer = t.spawn_armed(&[]);
    let ended = t.end(peer)?;
    semaphore_owned_outcome(t, &sem, ended.at)
}

/// How long the parent's sleeping waiter waits for the dying releaser's permit.
const SLEEPER_WAIT: Duration = Duration::from_secs(1);

fn semaphore_releaser_dies(t: &mut Trial) -> Result<(), String> {
    let sem = Semaphore::create(builder(&t.name).unlink_on_drop(true), 0, 4)
        .map_err(|e| format!("create: {e}"))?;
    let waiter = {
        let sem = sem.clone();
        std::thread::spawn(move || {
            let r = sem.acquire_timeout(SLEEPER_WAIT);
            (r, Instant::now())
        })
    };
    let peer = t.spawn_armed(&[]);
    let ended = t.end(peer)?;
    let (got, at) = waiter.join().map_err(|_| "waiter panicked".to_owned())?;
    // Every step of the release comes after the permit was added.
    match got {
        Ok(()) => {}
        Err(_) => {
            return Err(format!(
                "the waiter got no permit in {SLEEPER_WAIT:?} (value now {})",
                sem.value()
            ));
        }
    }
    if sem.value() != 0 {
        return Err(format!(
            "value {} after the only permit was taken",
            sem.value()
        ));
    }
    t.recovered(ended.at, at, "sleeping waiter gets the released permit")
}

// ---------------------------------------------------------------------------------
// seqlock.write: the writer dies mid-write; readers see a consistent value or
// WriterDied, and a new writer takes the role over.

type Words = [u64; 8];
const SEQ_WRITES: u64 = 16;

fn seqlock_writer() {
    let lock = SeqLock::<Words, _>::open(builder(&arg("name"))).expect("open");
    let mut w = lock.writer().expect("writer");
    report("writer");
    for i in 1..=SEQ_WRITES {
        w.write([i; 8]);
        report(format!("wrote={i}"));
    }
}

fn uniform(v: &Words) -> Result<u64, String> {
    if v.iter().all(|&x| x == v[0]) && v[0] <= SEQ_WRITES {
        Ok(v[0])
    } else {
        Err(format!("torn or foreign value {v:?}"))
    }
}

fn seqlock_writer_dies(t: &mut Trial) -> Result<(), String> {
    let lock = SeqLock::<Words, _>::create(builder(&t.name).unlink_on_drop(true), [0; 8])
        .map_err(|e| format!("create: {e}"))?;
    let peer = t.spawn_armed(&[]);
    let limit = Instant::now() + CHILD_LIMIT;
    while peer.died().is_none() && Instant::now() < limit {
        match lock.read() {
            Ok(v) => {
                uniform(&v)?;
            }
            Err(ReadError::WriterDied { .. }) => break,
            Err(e) => return Err(format!("read while the writer lives: {e}")),
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    let ended = t.end(peer)?;
    let acked = values(&ended.finished.reports, "wrote")
        .last()
        .copied()
        .unwrap_or(0);
    match lock.read() {
        Ok(v) => {
            let v = uniform(&v)?;
            if v < acked || v > acked + 1 {
                return Err(format!("read {v}, the writer acknowledged {acked}"));
            }
        }
        Err(ReadError::WriterDied { pid }) => {
            if !ended.crashed {
                return Err(format!("WriterDied ({pid}) but the writer left cleanly"));
            }
            t.note("readers told WriterDied");
        }
        Err(e) => return Err(format!("read after the death: {e}")),
    }
    t.recovered(ended.at, Instant::now(), "read after the death")?;
    let mut w = lock
        .writer()
        .map_err(|e| format!("writer role not taken over: {e}"))?;
    w.write([SENTINEL; 8]);
    match lock.read() {
        Ok(v) if v == [SENTINEL; 8] => {}
        other => return Err(format!("after the takeover, read {other:?}")),
    }
    t.recovered(ended.at, Instant::now(), "writer role taken over")
}

// ---------------------------------------------------------------------------------
// shm transport: a client dies connecting, or a server dies accepting.

fn transport_opts() -> TransportOptions {
    TransportOptions {
        max_frame: 4096,
        connect_timeout: WAIT,
        handshake_timeout: Duration::from_secs(1),
        shm_capacity: 16 * 1024,
        ..TransportOptions::default()
    }
}

fn url(name: &str) -> String {
    format!("shm://{name}")
}

fn deadline() -> Option<Instant> {
    Some(Instant::now() + WAIT)
}

fn shm_client() {
    let conn = transport::connect(&url(&arg("name")), &transport_opts()).expect("connect");
    report("connected");
    let (mut tx, mut rx) = conn.split();
    tx.send(b"ping", deadline()).expect("send");
    let mut buf = Vec::new();
    rx.recv(&mut buf, deadline()).expect("answer");
    assert_eq!(buf, b"pong");
    report("answered");
}

/// Serves one connection: answers its ping, then waits for it to go away. Returns
/// when the peer's disconnect was seen (`None`: it never disconnected in time).
fn serve_one(conn: transport::Connection) -> Result<Option<Instant>, String> {
    let (mut tx, mut rx) = conn.split();
    let mut buf = Vec::new();
    match rx.recv(&mut buf, deadline()) {
        Ok(()) if buf == b"ping" => {
            tx.send(b"pong", deadline())
                .map_err(|e| format!("answer: {e}"))?;
        }
        Ok(()) => return Err(format!("unexpected frame {buf:?}")),
        Err(transport::TransportRecvError::Disconnected) => return Ok(Some(Instant::now())),
        Err(e) => return Err(format!("no ping and no disconnect: {e}")),
    }
    match rx.recv(&mut buf, deadline()) {
        Err(transport::TransportRecvError::Disconnected) => Ok(Some(Instant::now())),
        Err(transport::TransportRecvError::Timeout) => Ok(None),
        other => Err(format!("after the answer: {other:?}")),
    }
}

fn shm_client_dies(t: &mut Trial) -> Result<(), String> {
    let opts = transport_opts();
    let listener = transport::listen(&url(&t.name), &opts).map_err(|e| format!("listen: {e}"))?;
    let peer = t.spawn_armed(&[]);
    let limit = Instant::now() + CHILD_LIMIT;
    let mut disconnect = None;
    while peer.died().is_none() && disconnect.is_none() {
        match listener.accept(Some(Instant::now() + Duration::from_millis(20))) {
            Ok(conn) => {
                disconnect = Some(serve_one(conn)?.ok_or("the client never disconnected")?);
                t.note("accepted, then the client's disconnect");
            }
            Err(AcceptError::Timeout) => {}
            Err(e) => t.note(format!("accept: {e}")),
        }
        if Instant::now() > limit {
            return Err("the client never ended".into());
        }
    }
    let ended = t.end(peer)?;
    if let Some(at) = disconnect {
        t.recovered(ended.at, at, "server sees the client gone")?;
    }
    // The listener still serves: whatever the dead client left in its queue is
    // skipped, and a live client is accepted.
    let t0 = Instant::now();
    let name = t.name.clone();
    let client = std::thread::spawn(move || {
        let conn = transport::connect(&url(&name), &transport_opts())?;
        let (mut tx, _rx) = conn.split();
        tx.send(b"ping", deadline())
            .map_err(|_| transport::ConnectError::Timeout { url: url(&name) })?;
        Ok::<_, transport::ConnectError>(())
    });
    let conn = listener
        .accept(deadline())
        .map_err(|e| format!("accept after the death: {e}"))?;
    let accepted = Instant::now();
    let (_tx, mut rx) = conn.split();
    let mut buf = Vec::new();
    rx.recv(&mut buf, deadline())
        .map_err(|e| format!("recv from the new client: {e}"))?;
    client
        .join()
        .map_err(|_| "client thread panicked".to_owned())?
        .map_err(|e| format!("new client: {e}"))?;
    t.recovered(ended.at.max(t0), accepted, "listener accepts a new client")
}

fn shm_server() {
    let listener = transport::listen(&url(&arg("name")), &transport_opts()).expect("listen");
    report("listening");
    let conn = listener.accept(deadline()).expect("accept");
    report("accepted");
    let (mut tx, mut rx) = conn.split();
    let mut buf = Vec::new();
    rx.recv(&mut buf, deadline()).expect("ping");
    tx.send(b"pong", deadline()).expect("answer");
    report("answered");
    // Until the client leaves.
    let _ = rx.recv(&mut buf, deadline());
}

fn shm_server_dies(t: &mut Trial) -> Result<(), String> {
    let mut peer = t.spawn_armed(&[]);
    if peer.report("listening", WAIT).is_none() {
        let ended = t.end(peer)?;
        return Err(format!(
            "the server never listened; output:\n{}",
            ended.finished.output
        ));
    }
    let outcome = match transport::connect(&url(&t.name), &transport_opts()) {
        Ok(conn) => {
            let (mut tx, mut rx) = conn.split();
            let mut buf = Vec::new();
            let sent = tx.send(b"ping", deadline());
            match (sent, rx.recv(&mut buf, deadline())) {
                (Ok(()), Ok(())) if buf == b"pong" => "answered".to_owned(),
                (_, Err(transport::TransportRecvError::Disconnected)) => {
                    "connected, then Disconnected".to_owned()
                }
                (s, r) => return Err(format!("connected, then send {s:?}, recv {r:?}")),
            }
        }
        Err(e) => format!("connect: {e:?}"),
    };
    let done = Instant::now();
    let ended = t.end(peer)?;
    if ended.crashed {
        t.recovered(ended.at, done, "client sees the server gone")?;
    }
    t.note(outcome);
    // The address can be listened on again (a dead server's queue is taken over).
    let t0 = Instant::now();
    let listener = transport::listen(&url(&t.name), &transport_opts())
        .map_err(|e| format!("listen after the death: {e}"))?;
    t.recovered(
        ended.at.max(t0),
        Instant::now(),
        "address listened on again",
    )?;
    drop(listener);
    Ok(())
}

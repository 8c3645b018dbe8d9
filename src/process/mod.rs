//! Process tokens: a process identity packed in one `u64`, for role words in shared
//! memory (who holds the producer role, ...), with a liveness check that has three
//! answers.
//!
//! A token holds the pid in its low 32 bits and the low 32 bits of the process start
//! time (clock ticks after boot) in the high 32, so a recycled pid does not pass for
//! the process that died. `0` means "nobody".
//!
//! **Liveness is alive, dead or unknown** ([`Liveness`]), and every caller in the crate
//! treats *unknown* as *alive*: a process is declared dead only on positive evidence
//! (`kill(pid, 0)` says there is no such process, `/proc/PID/stat` is gone, shows a
//! zombie, or shows another start time). An error on the way (a busy server out of file
//! descriptors, an unreadable `/proc`) never turns into "dead", because acting on a
//! wrong "dead" (taking over a live producer's role, reclaiming a live lock holder's
//! ticket) breaks safety, while a wrong "alive" only delays a repair.
//!
//! Under `--cfg shmlink_loom` each model thread has a token of its own
//! (`process::loom::set_current`) and a participant killed by a crash point
//! (`crash`) is dead from then on, so recovery paths can be
//! model-checked.

pub(crate) mod crash;

/// What is known of a token's process.
///
/// # Examples
///
/// ```
/// use shmlink::process::{Liveness, current_token, liveness};
///
/// assert_eq!(liveness(current_token()), Liveness::Alive);
/// assert_eq!(liveness(current_token() ^ (1 << 40)), Liveness::Dead); // pid reused
/// assert!(!Liveness::Unknown.is_dead()); // unknown is treated as alive
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// The process runs (or ran a moment ago).
    Alive,
    /// The process has certainly exited, is a zombie, or its pid now names another
    /// process. `0` ("nobody") is reported as dead too.
    Dead,
    /// It could not be told (an error reading `/proc`, say). Treated as alive.
    Unknown,
}

impl Liveness {
    /// Whether this is positive evidence of death (only [`Liveness::Dead`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::process::Liveness;
    ///
    /// assert!(Liveness::Dead.is_dead());
    /// assert!(!Liveness::Unknown.is_dead());
    /// ```
    #[must_use]
    pub const fn is_dead(self) -> bool {
        matches!(self, Liveness::Dead)
    }
}

/// Packs a pid and a start time into a token.
///
/// # Examples
///
/// ```
/// use shmlink::process::{token_of, token_pid};
///
/// let token = token_of(4242, 123_456);
/// assert_eq!(token_pid(token), 4242);
/// assert_ne!(token_of(4242, 999), token); // same pid, another process
/// assert_ne!(token_of(0, 0), 0); // never mistaken for "nobody"
/// ```
pub const fn token_of(pid: u32, start_ticks: u64) -> u64 {
    ((start_ticks & 0xffff_ffff) << 32) | pid as u64 | if pid == 0 { 1 << 63 } else { 0 }
}

/// The pid packed in a token.
///
/// # Examples
///
/// ```
/// use shmlink::process::{token_of, token_pid};
///
/// assert_eq!(token_pid(token_of(77, 5)), 77);
/// ```
pub const fn token_pid(token: u64) -> u32 {
    token as u32
}

/// Whether the process a token names may still be running: not [`Liveness::Dead`].
/// An unknown answer counts as alive (see the module docs); `0` (nobody) is not alive.
///
/// # Examples
///
/// ```
/// use shmlink::process::{current_token, token_alive};
///
/// let me = current_token();
/// assert!(token_alive(me));
/// assert!(!token_alive(me ^ (1 << 40))); // same pid, other start time: a reused pid
/// assert!(!token_alive(0)); // nobody
/// ```
pub fn token_alive(token: u64) -> bool {
    !liveness(token).is_dead()
}

/// Whether the process `token` names has certainly exited (or its pid was reused):
/// [`Liveness::Dead`]. Callers that act on a death (clearing a lock slot, say) never
/// act on a guess. `0` (nobody) is not dead.
///
/// # Examples
///
/// ```
/// use shmlink::process::{current_token, token_dead};
///
/// let me = current_token();
/// assert!(!token_dead(me));
/// assert!(token_dead(me ^ (1 << 40))); // same pid, other start time
/// assert!(!token_dead(0));
/// ```
pub fn token_dead(token: u64) -> bool {
    token != 0 && liveness(token).is_dead()
}

#[cfg(not(shmlink_loom))]
mod os {
    use super::{Liveness, token_of, token_pid};
    use crate::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, Once};
    use std::time::{Duration, Instant};

    /// The calling process's token once computed with a known start time (0: not
    /// yet). A forked child's copy is reset by [`forget_token`], so it computes its
    /// own; no `getpid` on the way (a permit's take and give-back each ask).
    static TOKEN: AtomicU64 = AtomicU64::new(0);

    /// `pthread_atfork` child handler: the child is another process.
    extern "C" fn forget_token() {
        TOKEN.store(0, Ordering::Relaxed);
    }

    /// The calling process's token (never 0). Cached until a fork; if the start time
    /// cannot be read (no file descriptor left, say), the token carries start time 0,
    /// which [`liveness`] reads as "identity unknown" (such a token is only ever found
    /// dead when its pid is gone), and is computed again at the next call.
    pub fn current_token() -> u64 {
        match TOKEN.load(Ordering::Relaxed) {
            0 => compute_token(),
            token => token,
        }
    }

    #[cold]
    fn compute_token() -> u64 {
        static AT_FORK: Once = Once::new();
        AT_FORK.call_once(|| {
            // SAFETY: registers a handler that only stores to an atomic, which is
            // async-signal-safe, as a forked child's handlers must be. Registered
            // before the first store below, so no child keeps a parent's token.
            // A failure (ENOMEM) leaves the cache off: tokens are computed each time.
            if unsafe { libc::pthread_atfork(None, None, Some(forget_token)) } != 0 {
                NO_CACHE.store(1, Ordering::Relaxed);
            }
        });
        let pid = std::process::id();
        let token = token_of(pid, start_ticks_of(pid).unwrap_or(0));
        if token >> 32 != 0 && NO_CACHE.load(Ordering::Relaxed) == 0 {
            TOKEN.store(token, Ordering::Relaxed);
        }
        token
    }

    /// 1 if the fork handler could not be registered.
    static NO_CACHE: AtomicU64 = AtomicU64::new(0);

    /// How long a full check that found a process alive stands in for the next
    /// ones, as long as its pid still exists (see [`liveness`]).
    const RECHECK: Duration = Duration::from_millis(20);

    /// Tokens a full check found alive, and when (the few peers a process waits on),
    /// and the slot to replace next (round-robin).
    struct Recent {
        slots: [(u64, Option<Instant>); 8],
        next: usize,
    }

    static RECENT: Mutex<Recent> = Mutex::new(Recent {
        slots: [(0, None); 8],
        next: 0,
    });

    fn recently_alive(token: u64) -> bool {
        let recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
        recent
            .slots
            .iter()
            .any(|&(t, at)| t == token && at.is_some_and(|at| at.elapsed() < RECHECK))
    }

    fn remember_alive(token: u64) {
        let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
        let Recent { slots, next } = &mut *recent;
        let now = Some(Instant::now());
        if let Some(slot) = slots.iter_mut().find(|(t, _)| *t == token) {
            slot.1 = now;
            return;
        }
        slots[*next] = (token, now);
        *next = (*next + 1) % slots.len();
    }

    /// The three-way liveness of `token` (see the module docs).
    ///
    /// The calling process's own token is alive without a look. For another, a pid
    /// that no longer exists is dead at once; a pid that exists is checked against
    /// the token's start time in `/proc/PID/stat`, whose cost grows with the threads of
    /// that process (tens of microseconds for a lock node's), so a process found alive
    /// that way is taken as alive, while its pid exists, for 20 ms more. That
    /// errs only towards "alive" (a pid reused, or a zombie, within those 20 ms is
    /// found out at the next full check), which delays a repair by as much and never
    /// breaks safety.
    pub fn liveness(token: u64) -> Liveness {
        let pid = token_pid(token);
        if token == 0 || pid == 0 {
            return Liveness::Dead;
        }
        if token == current_token() {
            return Liveness::Alive;
        }
        // No file descriptor needed: "no such process" is positive evidence.
        #[cfg(not(miri))]
        {
            // SAFETY: kill with signal 0 only checks for existence and permission.
            let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
            if rc != 0 {
                match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::ESRCH) => return Liveness::Dead,
                    Some(libc::EPERM) => {} // exists, another user's: check its identity
                    _ => return Liveness::Unknown,
                }
            }
        }
        if recently_alive(token) {
            return Liveness::Alive;
        }
        let want = token >> 32;
        match proc_stat(pid) {
            Ok(Some((b'Z' | b'X', _))) => Liveness::Dead,
            // Start time 0: the token was made without one; the pid exists.
            Ok(Some(_)) if want == 0 => Liveness::Alive,
            Ok(Some((_, start))) if start & 0xffff_ffff == want => {
                remember_alive(token);
                Liveness::Alive
            }
            Ok(Some(_)) => Liveness::Dead,
            Ok(None) => Liveness::Unknown,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Liveness::Dead,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Liveness::Dead,
            Err(_) => Liveness::Unknown,
        }
    }

    /// State byte and start time (field 22) of `/proc/PID/stat`, `Ok(None)` if it
    /// cannot be parsed.
    pub(crate) fn proc_stat(pid: u32) -> std::io::Result<Option<(u8, u64)>> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // The command name is in parentheses and may itself contain ") ", so split at
        // the last one. Field 3 (state) follows; field 22 (starttime) is 19 fields later.
        let Some((_, rest)) = text.rsplit_once(')') else {
            return Ok(None);
        };
        let mut fields = rest.split_ascii_whitespace();
        let state = fields.next().and_then(|s| s.bytes().next());
        let start = fields.nth(18).and_then(|s| s.parse().ok());
        Ok(state.zip(start))
    }

    /// Start time of a running (not zombie) process.
    pub(crate) fn start_ticks_of(pid: u32) -> Option<u64> {
        match proc_stat(pid) {
            Ok(Some((state, start))) if !matches!(state, b'Z' | b'X') => Some(start),
            _ => None,
        }
    }
}

#[cfg(not(shmlink_loom))]
pub use os::{current_token, liveness};
#[cfg(not(shmlink_loom))]
#[allow(unused_imports)]
pub(crate) use os::{proc_stat, start_ticks_of};

/// Under loom: the calling model thread's token ([`loom::set_current`]; 1 unless set).
///
/// # Examples
///
/// ```
/// use shmlink::process::{current_token, token_alive};
///
/// assert!(token_alive(current_token()));
/// ```
#[cfg(shmlink_loom)]
pub fn current_token() -> u64 {
    loom::current()
}

/// Under loom: dead once [`loom::kill`]ed (a crash point does it), else alive.
///
/// # Examples
///
/// ```
/// use shmlink::process::{Liveness, liveness};
///
/// assert_eq!(liveness(0), Liveness::Dead);
/// ```
#[cfg(shmlink_loom)]
pub fn liveness(token: u64) -> Liveness {
    if token == 0 || loom::is_killed(token) {
        Liveness::Dead
    } else {
        Liveness::Alive
    }
}

/// Model-checking support: per-thread tokens and killed "processes" (loom builds only).
///
/// A kill and a liveness check that finds it synchronize, as they do through the
/// kernel: once a process is seen dead, everything it did before it died is visible
/// (a reclaimer reads the dead holder's last stores, not stale ones).
#[cfg(shmlink_loom)]
pub(crate) mod loom {
    use std::cell::Cell;
    use std::sync::Mutex;

    use ::loom::sync::atomic::{AtomicUsize, Ordering};

    ::loom::thread_local! {
        static TOKEN: Cell<u64> = Cell::new(1);
    }
    ::loom::lazy_static! {
        // Which tokens are dead: outside the model, so looking is not a branch point.
        static ref KILLED: Mutex<Vec<u64>> = Mutex::new(Vec::new());
        // What the kernel orders: a kill's Release, then a finder's AcqRel RMW (an RMW
        // reads the newest value, so a finder that saw the kill syncs with it).
        static ref DEATHS: AtomicUsize = AtomicUsize::new(0);
    }

    /// Gives the calling model thread its own process token (never 0).
    pub fn set_current(token: u64) {
        assert_ne!(token, 0, "token 0 means nobody");
        TOKEN.with(|t| t.set(token));
    }

    /// The calling model thread's token.
    pub fn current() -> u64 {
        TOKEN.with(Cell::get)
    }

    /// Marks `token`'s "process" dead from now on (what a SIGKILL does); what the
    /// calling thread did before happens before any check that finds it dead.
    pub fn kill(token: u64) {
        DEATHS.fetch_add(1, Ordering::Release);
        KILLED.lock().unwrap_or_else(|e| e.into_inner()).push(token);
    }

    /// Whether any token was killed in this execution (recovery code that only a death
    /// makes necessary can skip its scans otherwise, keeping models small).
    pub fn any_killed() -> bool {
        !KILLED.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// Whether `token` was killed in this execution (if so, the kill happens before
    /// the return).
    pub fn is_killed(token: u64) -> bool {
        let killed = KILLED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&token);
        if killed {
            DEATHS.fetch_add(0, Ordering::AcqRel);
        }
        killed
    }
}

#[cfg(all(test, not(shmlink_loom)))]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "reads /proc")]
    fn own_token_is_alive_and_others_are_not() {
        let t = current_token();
        assert_eq!(token_pid(t), std::process::id());
        assert!(token_alive(t));
        assert!(!token_alive(t ^ (1 << 40)), "other start time: pid reused");
        assert!(!token_alive(0));
    }

    /// The token is cached without `getpid`: a forked child must still compute its
    /// own (else it would act as its parent, and its parent's death would not be
    /// seen in what it holds).
    #[test]
    #[cfg_attr(miri, ignore = "forks and reads /proc")]
    fn a_forked_child_has_its_own_token() {
        let parent = current_token();
        // SAFETY: fork in a test; the child computes its token (reads /proc) and
        // leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let child = current_token();
            let code = if child == parent {
                1
            } else if token_pid(child) != std::process::id() {
                2
            } else if current_token() != child {
                3
            } else {
                0
            };
            // SAFETY: leave the forked child without running the harness's atexit.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status));
        assert_eq!(libc::WEXITSTATUS(status), 0, "1: the parent's token");
        assert_eq!(current_token(), parent);
    }

    /// Defect: with file descriptors exhausted, `/proc` cannot be read, and liveness
    /// used to answer "dead" for a live process (so its ring roles were taken over).
    #[test]
    #[cfg_attr(miri, ignore = "changes RLIMIT_NOFILE and reads /proc")]
    fn no_file_descriptor_left_is_unknown_not_dead() {
        let me = current_token();
        // A child process: changing our own fd limit would disturb the test harness.
        // SAFETY: fork in a test; the child only calls async-signal-safe-enough code
        // (rlimit, open, liveness) and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = (|| {
                let mut fds = Vec::new();
                // Exhaust the descriptors under a small limit.
                let lim = libc::rlimit {
                    rlim_cur: 64,
                    rlim_max: 64,
                };
                // SAFETY: setrlimit with a valid struct.
                if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
                    return 10;
                }
                while let Ok(f) = std::fs::File::open("/dev/null") {
                    fds.push(f);
                }
                if std::fs::read_to_string("/proc/self/stat").is_ok() {
                    return 11; // not exhausted: the test proves nothing
                }
                // The parent is alive: unknown or alive, never dead.
                match liveness(me) {
                    Liveness::Dead => 1,
                    _ if token_alive(me) && !token_dead(me) => 0,
                    _ => 2,
                }
            })();
            // SAFETY: leave the forked child without running the harness's atexit.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status));
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "1: a live process read as dead; 10/11: setup failed"
        );
    }

    /// A process found alive is remembered as alive for a while, but only while its
    /// pid exists: once reaped it is dead at once, and a zombie (killed, not reaped) is
    /// found dead at the next full check.
    #[test]
    #[cfg_attr(miri, ignore = "spawns processes and reads /proc")]
    fn a_child_found_alive_is_dead_once_it_is_gone() {
        for reap in [true, false] {
            let mut child = std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap();
            let pid = child.id();
            let token = token_of(pid, start_ticks_of(pid).unwrap());
            assert_eq!(liveness(token), Liveness::Alive);
            assert_eq!(liveness(token), Liveness::Alive); // remembered
            child.kill().unwrap();
            if reap {
                child.wait().unwrap();
                assert_eq!(liveness(token), Liveness::Dead, "reaped: no such pid");
            } else {
                let t0 = std::time::Instant::now();
                while liveness(token) != Liveness::Dead {
                    assert!(t0.elapsed() < std::time::Duration::from_secs(5), "zombie");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                child.wait().unwrap();
            }
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads /proc")]
    fn a_finished_child_is_dead() {
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let token = token_of(pid, start_ticks_of(pid).unwrap_or(0));
        let mut child = child;
        child.wait().unwrap();
        assert_eq!(liveness(token), Liveness::Dead);
    }
}

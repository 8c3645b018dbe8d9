//! Children that may die at any moment (crash-point tests): raw environment
//! variables, report waits that do not panic, the instant a child's death became
//! observable, and a wait that tells a crash (SIGKILL) from a timeout.

use std::os::unix::process::ExitStatusExt;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{Child, Finished, LINE_PREFIX, Scenario};

impl Scenario {
    /// Sets the environment variable `key` of the child, as is (not a scenario
    /// argument), e.g. `SHMLINK_CRASH_AT`.
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_owned(), value.to_string()));
        self
    }
}

/// When a child's exit became observable: set by a thread blocked in `waitid` with
/// `WNOWAIT` (the child is not reaped, so its pid stays valid for `kill`).
#[derive(Clone, Debug)]
pub struct ExitWatch {
    at: Arc<(Mutex<Option<Instant>>, Condvar)>,
}

impl ExitWatch {
    /// The instant the exit was seen, if it was.
    pub fn at(&self) -> Option<Instant> {
        *self.at.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits at most `timeout` for the exit; the instant it was seen.
    pub fn wait(&self, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        let mut at = self.at.0.lock().unwrap_or_else(|e| e.into_inner());
        while at.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            at = self
                .at
                .1
                .wait_timeout(at, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *at
    }
}

/// How a watched child ended.
#[derive(Debug)]
pub struct Ended {
    /// Status, reports and output.
    pub finished: Finished,
    /// It was killed by SIGKILL that we did not send (a crash point).
    pub crashed: bool,
    /// We killed it: it outlived the timeout of [`Child::end`].
    pub timed_out: bool,
    /// When its exit was observed.
    pub at: Instant,
}

impl Child {
    /// Waits at most `timeout` for a report starting with `prefix`; `None` if the
    /// child exits (or the time runs out) first. Never kills the child.
    pub fn next_report(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(r) = line.strip_prefix(LINE_PREFIX)
                        && r.starts_with(prefix)
                    {
                        return Some(r.to_owned());
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Whether the child has reported a line starting with `prefix` so far (reads
    /// what arrived without waiting).
    pub fn has_reported(&mut self, prefix: &str) -> bool {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen
            .iter()
            .filter_map(|l| l.strip_prefix(LINE_PREFIX))
            .any(|r| r.starts_with(prefix))
    }

    /// Starts watching for the child's exit (see [`ExitWatch`]).
    pub fn watch_exit(&self) -> ExitWatch {
        let watch = ExitWatch {
            at: Arc::new((Mutex::new(None), Condvar::new())),
        };
        let pid = self.pid();
        let shared = watch.clone();
        std::thread::spawn(move || {
            loop {
                // SAFETY: waitid only writes the siginfo_t we pass; all-zero bytes are a
                // valid siginfo_t.
                let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                // SAFETY: `info` is a valid, writable siginfo_t; WNOWAIT leaves the child
                // unreaped (its owner reaps it), so this never races a reused pid.
                let rc = unsafe {
                    libc::waitid(
                        libc::P_PID,
                        pid as libc::id_t,
                        &mut info,
                        libc::WEXITED | libc::WNOWAIT,
                    )
                };
                if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    // Exited (or already reaped by its owner: ECHILD): observable now.
                    break;
                }
            }
            let now = Instant::now();
            let mut at = shared.at.0.lock().unwrap_or_else(|e| e.into_inner());
            at.get_or_insert(now);
            shared.at.1.notify_all();
        });
        watch
    }

    /// Waits at most `timeout` for the child to exit (killing it after that) and
    /// tells how it ended. Never panics.
    pub fn end(mut self, timeout: Duration, watch: &ExitWatch) -> Ended {
        let mut timed_out = false;
        if watch.wait(timeout).is_none() {
            timed_out = true;
            if let Some(child) = self.child.as_mut() {
                let _ = child.kill();
            }
        }
        let mut child = self.child.take().expect("running");
        let status = child.wait().expect("wait for a child");
        let at = watch
            .wait(Duration::from_secs(5))
            .unwrap_or_else(Instant::now);
        let output = self.collect();
        let reports = self
            .seen
            .iter()
            .filter_map(|l| l.strip_prefix(LINE_PREFIX))
            .map(str::to_owned)
            .collect();
        Ended {
            crashed: !timed_out && status.signal() == Some(libc::SIGKILL),
            timed_out,
            at,
            finished: Finished {
                status,
                reports,
                output,
            },
        }
    }
}

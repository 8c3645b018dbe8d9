//! What the integration test binaries share (`mod support;` in a one-file binary,
//! `#[path = "../support/mod.rs"] mod support;` in a `tests/NAME/main.rs` one): this
//! file, the child-process helper; [`watch`], children that may die at any moment
//! (crash points); [`kv`], the service of the RPC tests; [`messages`], the message
//! types of the channel tests; [`segfile`], a segment's file read and written from
//! outside.
//!
//! A test spawns a child process that re-executes the current test binary and runs one
//! named *scenario* there: the binary declares its scenarios with [`scenarios!`], which
//! defines one `#[ignore]`d test that the child runs with `--ignored --exact`. The
//! parent passes arguments through environment variables, reads the child's `@@ `
//! lines as they come, and waits for it with a timeout; a child that outlives the
//! timeout is killed and the test fails with the child's output.
#![allow(dead_code)]

use shmlink::sync::atomic::{AtomicU32, Ordering};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub mod kv;
pub mod messages;
pub mod segfile;
pub mod watch;

/// Environment variable naming the scenario a child runs.
pub const SCENARIO_ENV: &str = "SHMLINK_TEST_SCENARIO";
const ARG_PREFIX: &str = "SHMLINK_TEST_ARG_";
/// Prefix of the lines a scenario reports to its parent.
pub const LINE_PREFIX: &str = "@@ ";

/// Declares the scenarios of a test binary: each `name` is a `fn()` in scope that runs
/// in a child process. Use once per binary, at its root.
#[macro_export]
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        #[test]
        #[ignore = "entry point of child processes; see tests/support"]
        fn __shmlink_scenario() {
            // Outside a child (e.g. `--include-ignored`) there is nothing to run.
            let Ok(scenario) = std::env::var($crate::support::SCENARIO_ENV) else {
                return;
            };
            match scenario.as_str() {
                $(stringify!($name) => $name(),)*
                other => panic!("unknown scenario {other:?}"),
            }
        }
    };
}

/// A segment builder with a 5 s open timeout (a child opening what its parent created
/// does not wait long for a parent that failed).
pub fn builder(name: &str) -> shmlink::segment::SegmentBuilder {
    shmlink::segment::Segment::builder(name).timeout(Duration::from_secs(5))
}

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process, so times can be
/// compared across processes (the moment of a kill, a start line for racers).
pub fn now_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock_gettime");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// A unique segment name for one test: tag, pid and a counter.
pub fn unique_name(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "test-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// In a child: the argument `key` the parent passed.
pub fn arg(key: &str) -> String {
    std::env::var(format!("{ARG_PREFIX}{key}"))
        .unwrap_or_else(|_| panic!("scenario argument {key:?} missing"))
}

/// In a child: reports `line` to the parent (flushed at once).
pub fn report(line: impl AsRef<str>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{LINE_PREFIX}{}", line.as_ref());
    let _ = out.flush();
}

/// A child process to be started.
pub struct Scenario {
    name: String,
    args: Vec<(String, String)>,
    /// Raw environment variables (see [`watch`]).
    env: Vec<(String, String)>,
}

impl Scenario {
    /// The scenario `name` (declared with [`scenarios!`]).
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Passes `key = value` to the child.
    pub fn arg(mut self, key: &str, value: impl ToString) -> Self {
        self.args.push((key.to_owned(), value.to_string()));
        self
    }

    /// Starts the child.
    pub fn spawn(self) -> Child {
        self.spawn_under(&[])
    }

    /// Starts the child under a command prefix: runs `prefix[0] prefix[1..] <test
    /// binary> <scenario arguments>` (e.g. `["ip", "netns", "exec", "NS"]`), passing the
    /// scenario's environment as [`spawn`](Self::spawn) does. An empty prefix is
    /// [`spawn`](Self::spawn). The prefix command must run the rest of its arguments
    /// with the environment it was given.
    pub fn spawn_under(self, prefix: &[&str]) -> Child {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = match prefix.split_first() {
            None => Command::new(exe),
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(exe);
                cmd
            }
        };
        cmd.args([
            "__shmlink_scenario",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(SCENARIO_ENV, &self.name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        for (k, v) in &self.args {
            cmd.env(format!("{ARG_PREFIX}{k}"), v);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd.spawn().expect("spawn scenario child");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Child {
            name: self.name,
            child: Some(child),
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
        }
    }
}

/// What a finished child left behind.
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Every `@@ ` line, prefix removed, in order.
    pub reports: Vec<String>,
    /// Everything else it printed (stdout then stderr), for diagnostics.
    pub output: String,
}

impl Finished {
    /// The `key=value` pairs among the reports.
    pub fn values(&self) -> HashMap<String, String> {
        self.reports
            .iter()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

/// A running child. Dropping it kills the child (so a failing test leaves none behind).
pub struct Child {
    name: String,
    child: Option<std::process::Child>,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Child {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Waits until the child reports a line starting with `prefix`; returns the line.
    /// Panics with the child's output if it does not within `timeout`.
    pub fn wait_for(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(r) = line.strip_prefix(LINE_PREFIX)
                        && r.starts_with(prefix)
                    {
                        return r.to_owned();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let out = self.kill_and_collect();
                    panic!(
                        "scenario {} did not report {prefix:?} within {timeout:?}; output:\n{out}",
                        self.name
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let out = self.kill_and_collect();
                    panic!(
                        "scenario {} exited before reporting {prefix:?}; output:\n{out}",
                        self.name
                    );
                }
            }
        }
    }

    /// Like [`wait_for`](Self::wait_for), but gives up quietly: `None` if no line
    /// starting with `prefix` came within `timeout` or the child's output ended. For a
    /// test that waits on several children in turn (with a short `timeout` each).
    pub fn try_wait_for(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            self.seen.push(line.clone());
            if let Some(r) = line.strip_prefix(LINE_PREFIX)
                && r.starts_with(prefix)
            {
                return Some(r.to_owned());
            }
        }
    }

    /// Sends SIGKILL and reaps the child.
    pub fn kill(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        child.wait().expect("wait after kill")
    }

    /// Waits for the child to exit within `timeout` (killing it otherwise).
    pub fn wait(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let mut child = self.child.take().expect("running");
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                let out = self.collect();
                panic!(
                    "scenario {} still running after {timeout:?}, killed; output:\n{out}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let output = self.collect();
        let reports = self
            .seen
            .iter()
            .filter_map(|l| l.strip_prefix(LINE_PREFIX))
            .map(str::to_owned)
            .collect();
        Finished {
            status,
            reports,
            output,
        }
    }

    /// Waits like [`wait`](Self::wait) and panics, with the child's output, unless it
    /// exited successfully.
    pub fn success(self, timeout: Duration) -> Finished {
        let name = self.name.clone();
        let done = self.wait(timeout);
        assert!(
            done.status.success(),
            "scenario {name} failed with {}; output:\n{}",
            done.status,
            done.output
        );
        done
    }

    fn kill_and_collect(&mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.collect()
    }

    /// Drains the remaining output (the child has exited).
    fn collect(&mut self) -> String {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        format!("{}\n--- stderr ---\n{stderr}", self.seen.join("\n"))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

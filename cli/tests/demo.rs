//! `shmlink demo` cleans up after itself: a run stopped with SIGINT or SIGTERM removes
//! its names, and a run removes what earlier runs killed with SIGKILL left (its own
//! names only).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_shmlink");

/// A demo run in its own process group, its output lines as they come.
struct Run {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Run {
    fn start() -> Run {
        let mut child = Command::new(BIN)
            .arg("demo")
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for stream in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Run { child, lines }
    }

    /// Waits (at most 60 s) for a line containing `what`; returns it.
    fn wait_for(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(e) => panic!("no line with {what:?} from the demo: {e}"),
            }
        }
    }

    /// Sends `signal` to the whole group (the run, its child and its nodes).
    fn signal_group(&self, signal: &str) {
        let group = format!("-{}", self.child.id());
        let ok = Command::new("kill")
            .args([signal, "--", &group])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

/// Names in /dev/shm of the run with pid `pid`.
fn names_of(pid: u32) -> Vec<String> {
    let prefix = format!("demo-{pid}");
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            n.split_once('.')
                .and_then(|(_, rest)| rest.split_once('.'))
                .is_some_and(|(_, name)| {
                    name.strip_prefix(&prefix)
                        .is_some_and(|r| r.is_empty() || r.starts_with(['.', '-']))
                })
        })
        .collect()
}

#[test]
fn the_demo_removes_what_killed_runs_left_and_its_own_names_on_sigint() {
    // A run killed, with its child, while it has made its rings.
    let mut killed = Run::start();
    killed.wait_for("created five SPSC rings");
    killed.signal_group("-KILL");
    let _ = killed.child.wait();
    let left = names_of(killed.child.id());
    assert!(!left.is_empty(), "a SIGKILLed run leaves its names");

    // The next run removes them first, then is stopped with SIGINT.
    let mut next = Run::start();
    let swept = next.wait_for("name(s) left by earlier runs");
    assert!(swept.contains("removed"), "{swept}");
    assert_eq!(names_of(killed.child.id()), Vec::<String>::new(), "{swept}");
    next.wait_for("created five SPSC rings");
    next.signal_group("-INT");
    let status = next.child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    next.wait_for("removed");
    assert_eq!(names_of(next.child.id()), Vec::<String>::new());
}

//! `shmlink ls` tells the living from the dead: a Bakery lock whose holder was
//! SIGKILLed shows the holder as dead and the attachment count with its dead, and a
//! shared-memory listener shows as one.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use shmlink::lock::BakeryLock;
use shmlink::segment::Segment;
use shmlink::transport::{self, TransportOptions};

const BIN: &str = env!("CARGO_BIN_EXE_shmlink");
const HOLD_ENV: &str = "SHMLINK_LS_TEST_HOLD";

#[test]
fn ls_marks_dead_holders_dead_attachments_and_listeners() {
    if let Ok(name) = std::env::var(HOLD_ENV) {
        // The child: take the lock and wait to be killed.
        let (mut lock, _) = BakeryLock::open_or_create(Segment::builder(&name), 4).unwrap();
        let _guard = lock.lock().map_err(|e| e.without_guard()).unwrap();
        println!("holding");
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    let me = std::process::id();
    let lock_name = format!("cli-ls-lock-{me}");
    let listener_name = format!("cli-ls-listener-{me}");
    let (_lock, _) =
        BakeryLock::open_or_create(Segment::builder(&lock_name).unlink_on_drop(true), 4).unwrap();
    let _listener = transport::listen(
        &format!("shm://{listener_name}"),
        &TransportOptions::default(),
    )
    .unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "ls_marks_dead_holders_dead_attachments_and_listeners",
            "--exact",
            "--nocapture",
            "-q",
        ])
        .env(HOLD_ENV, &lock_name)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The test harness prints its own lines first.
    let held = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("holding"));
    assert!(held, "the child never held the lock");
    let pid = child.id();
    child.kill().unwrap();
    child.wait().unwrap();

    let out = Command::new(BIN).arg("ls").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().skip_while(|l| !l.starts_with(&lock_name));
    let row = lines
        .next()
        .unwrap_or_else(|| panic!("no row for {lock_name}:\n{text}"));
    assert!(row.contains("2 (1 dead)"), "{row}");
    let detail = lines.next().unwrap_or_default();
    assert!(
        detail.contains(&format!("lock held by pid {pid} (dead)")),
        "{detail}"
    );
    let listener = text
        .lines()
        .find(|l| l.starts_with(&listener_name))
        .unwrap_or_else(|| panic!("no row for {listener_name}:\n{text}"));
    assert!(listener.contains("listener"), "{listener}");
}

/// `shmlink inspect` shows a ring's depth and role holders, a semaphore's value and
/// a seqlock's version, as text and as JSON.
#[test]
fn inspect_shows_each_kinds_state() {
    use shmlink::lock::{Semaphore, SeqLock};
    use shmlink::ring::Spsc;
    use shmlink::sync::WaitMode;
    let me = std::process::id();
    let ring_name = format!("cli-inspect-ring-{me}");
    let ring = Spsc::<u64, _>::create(
        Segment::builder(&ring_name).unlink_on_drop(true),
        64,
        WaitMode::Blocking,
    )
    .unwrap();
    let mut tx = ring.producer().unwrap();
    for i in 0..3 {
        tx.push(i).unwrap();
    }
    // A second handle in the same process: a second live attachment, not a dead one
    // (the defect: live attachments were counted by process).
    let _again = Spsc::<u64, _>::open(Segment::builder(&ring_name)).unwrap();
    let sem_name = format!("cli-inspect-sem-{me}");
    let sem = Semaphore::create(Segment::builder(&sem_name).unlink_on_drop(true), 3, 5).unwrap();
    let _permit = sem.permit().unwrap();
    let seq_name = format!("cli-inspect-seq-{me}");
    let seq = SeqLock::create(Segment::builder(&seq_name).unlink_on_drop(true), 0u64).unwrap();
    let mut writer = seq.writer().unwrap();
    writer.write(9);

    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = run(&["inspect", &ring_name]);
    for want in [
        "attached: 2\n",
        "attached_alive: 2\n",
        "kind: spsc",
        "capacity: 64",
        "depth: 3",
        &format!("pid {me}, alive yes"),
        "consumers: none",
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }
    let json = run(&["inspect", &ring_name, "--json"]);
    assert!(
        json.starts_with('{') && json.trim_end().ends_with('}'),
        "{json}"
    );
    assert!(json.contains("\"depth\": 3"), "{json}");
    let text = run(&["inspect", &sem_name]);
    assert!(
        text.contains("value: 2")
            && text.contains("max: 5")
            && text.contains("type: shmlink::lock::SemaphoreState")
            && text.contains(&format!("pid {me}, permits 1, waiting 0, alive yes")),
        "{text}"
    );
    let text = run(&["inspect", &seq_name]);
    assert!(
        text.contains("version: 2") && text.contains(&format!("writer_pid: {me}")),
        "{text}"
    );
}

/// `shmlink watch` prints a ring's rates, and says so when the ring is removed.
#[test]
fn watch_prints_a_rings_rates() {
    use shmlink::ring::Spsc;
    use shmlink::sync::WaitMode;
    let name = format!("cli-watch-ring-{}", std::process::id());
    let ring = Spsc::<u64, _>::create(
        Segment::builder(&name).unlink_on_drop(true),
        1024,
        WaitMode::Blocking,
    )
    .unwrap();
    let mut tx = ring.producer().unwrap();
    for i in 0..100 {
        tx.push(i).unwrap();
    }
    let out = Command::new(BIN)
        .args(["watch", &name, "--every", "0.05", "--count", "2"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two rows:\n{text}");
    assert!(
        lines[0].contains("PUSHED/s") && lines[1].contains("100"),
        "{text}"
    );
    let missing = Command::new(BIN)
        .args(["watch", "cli-watch-nothing-here"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("cli-watch-nothing-here"),
        "the error names the ring: {err}"
    );
}

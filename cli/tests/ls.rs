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

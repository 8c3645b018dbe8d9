//! `shmlink lockd`, `shmlink lock` and `shmlink ls` as a user runs them: three node
//! processes on loopback TCP, commands run under the lock with the fencing token in
//! their environment.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_shmlink");

/// Node processes and their files, stopped and removed on drop.
struct Cluster {
    dir: PathBuf,
    nodes: Vec<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGTERM first: a node that stops removes its listener (a SIGKILLed one
        // leaves it stale in /dev/shm); SIGKILL what is left after 2 s.
        for n in &self.nodes {
            let _ = Command::new("kill").arg(n.id().to_string()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        for n in &mut self.nodes {
            while matches!(n.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = n.kill();
            let _ = n.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    fn config(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node{i}.conf"))
    }
}

fn start(n: usize) -> Cluster {
    let dir = std::env::temp_dir().join(format!("shmlink-cli-lockd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ports: Vec<u16> = (0..n)
        .map(|_| shmlink::transport::unused_tcp_port(std::net::Ipv4Addr::LOCALHOST.into()).unwrap())
        .collect();
    let members: Vec<String> = ports
        .iter()
        .map(|p| format!("tcp://127.0.0.1:{p}"))
        .collect();
    let mut cluster = Cluster {
        dir: dir.clone(),
        nodes: Vec::new(),
    };
    for i in 0..n {
        let text = format!(
            "epoch = 1\nnode = {i}\nmembers = {}\nlease = 600ms\nretransmit = 30ms\n\
             state = {}\nlocal = shm://cli-lockd-{}-{i}\n",
            members.join(", "),
            dir.join(format!("node{i}.state")).display(),
            std::process::id()
        );
        std::fs::write(cluster.config(i), text).unwrap();
        let child = Command::new(BIN)
            .args(["lockd", "--config"])
            .arg(cluster.config(i))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        cluster.nodes.push(child);
    }
    // Each node prints its first line once it listens.
    for child in &mut cluster.nodes {
        let mut line = String::new();
        let out = child.stdout.as_mut().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).unwrap();
        assert!(line.starts_with("lockd: node"), "lockd said {line:?}");
    }
    cluster
}

fn run_locked(config: &Path, name: &str, script: &str) -> Output {
    Command::new(BIN)
        .args(["lock", name, "--timeout", "20", "--config"])
        .arg(config)
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap()
}

fn token_of(out: &Output) -> u64 {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "shmlink lock failed: {out:?}");
    text.trim()
        .strip_prefix("token=")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no token in {text:?}"))
}

#[test]
fn commands_run_under_the_lock_with_rising_tokens_and_ls_shows_the_holder() {
    let cluster = start(3);
    let script = "echo token=$SHMLINK_FENCING_TOKEN";
    let mut last = 0;
    for i in [0, 1, 2, 0] {
        let token = token_of(&run_locked(&cluster.config(i), "jobs", script));
        assert!(token > last, "token {token} after {last} (node {i})");
        last = token;
    }

    // A holder sleeping under the lock: ls on its node shows it, a second command
    // with a short timeout fails, and the exit code of the command comes through.
    let mut holder = Command::new(BIN)
        .args(["lock", "jobs", "--config"])
        .arg(cluster.config(1))
        .args(["--", "sh", "-c", "echo held; sleep 1; exit 3"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = std::io::BufReader::new(holder.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "held");
    let ls = Command::new(BIN)
        .args(["ls", "--config"])
        .arg(cluster.config(1))
        .output()
        .unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(
        ls.lines()
            .any(|l| l.contains("jobs") && l.contains("held") && l.contains("token")),
        "shmlink ls does not show the held lock:\n{ls}"
    );
    let t0 = Instant::now();
    let refused = Command::new(BIN)
        .args(["lock", "jobs", "--timeout", "0.2", "--config"])
        .arg(cluster.config(2))
        .args(["--", "true"])
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "a second holder got the lock: {refused:?}"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not granted in time"));
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(holder.wait().unwrap().code(), Some(3));
    let after = token_of(&run_locked(&cluster.config(2), "jobs", script));
    assert!(after > last);
}

#[test]
fn a_bad_configuration_is_reported_with_its_file_and_line() {
    let dir = std::env::temp_dir().join(format!("shmlink-cli-badconf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.conf");
    std::fs::write(
        &path,
        "epoch = 1\nnode = 0\nmembers = tcp://127.0.0.1:1\nleese = 1s\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["lockd", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("bad.conf") && err.contains("leese"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

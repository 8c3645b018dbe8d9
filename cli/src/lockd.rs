//! `shmlink lockd` (run a lock node), `shmlink lock` (run a command holding a
//! distributed lock, like `flock(1)`), and the lock-node part of `shmlink ls`.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::Pid;
use shmlink::dlock::service::{LocalClient, NodeStatus};
use shmlink::dlock::{DistLock, Lock, LockGuard, LockNode, NodeConfig, NodeOptions};

use crate::Result;

/// The environment variable that carries the fencing token to the command.
pub const TOKEN_VAR: &str = "SHMLINK_FENCING_TOKEN";
/// The environment variable that carries the lock's name to the command.
pub const LOCK_VAR: &str = "SHMLINK_LOCK";

/// Runs a node until SIGINT or SIGTERM.
pub fn lockd(config: &Path) -> Result {
    let cfg = NodeConfig::load(config)?;
    // Block the signals before any thread starts, so that every thread inherits the
    // mask and the main thread takes them with sigwait.
    let mut stop = SigSet::empty();
    stop.add(Signal::SIGINT);
    stop.add(Signal::SIGTERM);
    stop.thread_block()?;
    watch_parent();
    let node = LockNode::start(NodeOptions::from_config(&cfg)?)?;
    let status = node.status();
    println!(
        "lockd: node {} of {} (epoch {}, incarnation {}), peers at {}, local clients at {}",
        cfg.node,
        cfg.members.len(),
        cfg.epoch,
        status.incarnation,
        node.peer_url(),
        node.local_url().unwrap_or("-"),
    );
    println!(
        "lockd: quorum {}, lease {:?}, state file {}",
        cfg.quorum,
        cfg.lease,
        cfg.state_file.display()
    );
    let signal = stop.wait()?;
    println!("lockd: {signal:?}: stopping (held locks lapse with their leases)");
    node.shutdown();
    Ok(())
}

/// Environment variable naming a process whose end stops the node, as a SIGTERM
/// would: set by `shmlink demo` for its nodes, so that a demo killed with SIGKILL
/// leaves no node running (and no listener behind).
pub const PARENT_ENV: &str = "SHMLINK_LOCKD_PARENT";

/// If [`PARENT_ENV`] names our parent, a thread that sends us SIGTERM once the
/// parent is gone (we are then re-parented), checking every 100 ms.
fn watch_parent() {
    let Some(parent) = std::env::var(PARENT_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    if nix::unistd::getppid().as_raw() != parent {
        return;
    }
    std::thread::spawn(move || {
        while nix::unistd::getppid().as_raw() == parent {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = kill(nix::unistd::getpid(), Signal::SIGTERM);
    });
}

/// Runs `command` while holding `name`; its exit code is the command's.
pub fn lock(
    name: &str,
    config: &Path,
    command: &[String],
    timeout: Option<f64>,
) -> Result<ExitCode> {
    let cfg = NodeConfig::load(config)?;
    let Some((program, args)) = command.split_first() else {
        return Err("name a command to run after --".into());
    };
    let mut lock = DistLock::open(&cfg.local, name)?;
    let guard = match timeout {
        Some(secs) => lock.try_lock_for(Duration::from_secs_f64(secs))?,
        None => lock.lock()?,
    };
    let token = guard.token();
    eprintln!("shmlink lock: {name} held with fencing token {token}");
    let mut child = Command::new(program)
        .args(args)
        .env(TOKEN_VAR, token.0.to_string())
        .env(LOCK_VAR, name)
        .spawn()
        .map_err(|e| format!("run {program}: {e}"))?;
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    loop {
        if let Some(status) = child.try_wait()? {
            drop(guard);
            return Ok(match status.code() {
                Some(0) => ExitCode::SUCCESS,
                Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
                None => ExitCode::from(128 + 1),
            });
        }
        if let Err(lost) = guard.check() {
            // The command may no longer act under the lock: stop it, as the lease
            // promised the next holder (its writes are fenced anyway).
            eprintln!("shmlink lock: {lost}; terminating {program}");
            let _ = kill(pid, Signal::SIGTERM);
            for _ in 0..20 {
                if child.try_wait()?.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if child.try_wait()?.is_none() {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = child.wait();
            }
            return Err(lost.into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The lock-node lines of `shmlink ls` for the default local URL, only if a node
/// answers there.
pub fn ls_default_node() {
    let url = NodeConfig::new(0, Vec::new(), "").local;
    if let Ok(c) = LocalClient::connect(&url)
        && let Ok(s) = c.with_timeout(Duration::from_secs(1)).status(()).wait()
    {
        print_status(&url, &s);
    }
}

/// The lock-node lines of `shmlink ls`, if a node answers at `url`.
pub fn ls_node(url: &str) {
    let status = LocalClient::connect(url)
        .map_err(|e| e.to_string())
        .and_then(|c| {
            c.with_timeout(Duration::from_secs(1))
                .status(())
                .wait()
                .map_err(|e| e.to_string())
        });
    match status {
        Ok(s) => print_status(url, &s),
        Err(e) => println!("lock node at {url}: not answering ({e})"),
    }
}

fn print_status(url: &str, s: &NodeStatus) {
    println!(
        "lock node {} at {url}: epoch {}, incarnation {}, high-water token {}, \
         {} granted, {} lost, messages {} sent / {} received / {} undelivered",
        s.node,
        s.epoch,
        s.incarnation,
        s.high_water,
        s.granted,
        s.lost,
        s.sent,
        s.received,
        s.undelivered
    );
    if s.locks.is_empty() {
        println!("    no locks held or waited for");
    }
    for l in &s.locks {
        let pid = l.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let detail = match (l.token, l.votes, l.valid_for_ns) {
            (Some(t), _, Some(v)) => format!("token {t}, valid for {} ms", v / 1_000_000),
            (Some(t), _, None) => format!("token {t}"),
            (None, Some((have, need)), _) => format!("{have} of {need} votes"),
            _ => String::new(),
        };
        println!("    {:<24} {:<8} pid {pid:<8} {detail}", l.name, l.state);
    }
}

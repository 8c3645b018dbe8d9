//! The demo's distributed-lock phase: three `shmlink lockd` processes (each in a
//! network namespace of its own on a bridge when running as root, on loopback
//! otherwise), the lock taken through each in turn with its fencing token, then the
//! holder's node killed and the lock taken elsewhere after the lease, with the stale
//! token refused by a fenced resource.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmlink::dlock::{DistLock, FencedResource, Lock, LockGuard};

use crate::Result;

const NODES: usize = 3;

/// The lock the demo takes.
const LOCK: &str = "demo";

/// Where the run `base` writes its nodes' configuration and state files.
pub fn config_dir(base: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("shmlink-{base}-dlock"))
}

/// The local URL of node `i` of the demo run whose names start with `base`.
fn local_url(base: &str, i: usize) -> String {
    format!("shm://{base}-lockd-{i}")
}

/// The host segments the demo run `base` makes (one per node it takes the lock
/// through), named by hashes rather than by `base`.
pub fn host_segments(base: &str) -> Vec<String> {
    (0..NODES)
        .map(|i| DistLock::host_segment_name(&local_url(base, i), LOCK))
        .collect()
}
const LEASE_MS: u64 = 500;

/// What the phase made, undone on drop: node processes, namespaces, files.
struct Setup {
    dir: PathBuf,
    nodes: Vec<Option<Child>>,
    namespaces: Vec<String>,
    /// The nodes' local listeners (a killed node leaves its segment stale).
    locals: Vec<String>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        // SIGTERM: a node shuts down and removes its listener.
        for child in self.nodes.iter_mut().flatten() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        for child in self.nodes.iter_mut().flatten() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for url in &self.locals {
            if let Some(name) = url.strip_prefix("shm://") {
                let _ = shmlink::segment::remove_stale(name);
            }
        }
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ip(args: &[&str]) -> Result {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into())
    }
}

/// A bridge in a namespace of its own, and one namespace per node with a veth port on
/// it; the node namespaces' addresses, or `Err` if namespaces are not available.
fn namespaces(setup: &mut Setup, tag: &str) -> Result<Vec<String>> {
    let bridge = format!("{tag}b");
    ip(&["netns", "add", &bridge])?;
    setup.namespaces.push(bridge.clone());
    ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &bridge, "link", "set", "br0", "up"])?;
    let mut addrs = Vec::new();
    for i in 0..NODES {
        let ns = format!("{tag}n{i}");
        ip(&["netns", "add", &ns])?;
        setup.namespaces.push(ns.clone());
        let port = format!("p{i}");
        ip(&[
            "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port, "netns",
            &bridge,
        ])?;
        let addr = format!("10.231.0.{}", i + 1);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&["-n", &bridge, "link", "set", &port, "master", "br0"])?;
        ip(&["-n", &bridge, "link", "set", &port, "up"])?;
        addrs.push(addr);
    }
    Ok(addrs)
}

fn free_port() -> Result<u16> {
    Ok(shmlink::transport::unused_tcp_port(
        std::net::Ipv4Addr::LOCALHOST.into(),
    )?)
}

pub fn parent_phase(base: &str) -> Result {
    let me = std::process::id();
    let mut setup = Setup {
        dir: config_dir(base),
        nodes: Vec::new(),
        namespaces: Vec::new(),
        locals: Vec::new(),
    };
    std::fs::create_dir_all(&setup.dir)?;
    let tag = format!("sd{}", me % 100_000);
    let root = nix::unistd::Uid::effective().is_root();
    let netns = if root {
        namespaces(&mut setup, &tag).map_err(|e| {
            println!("[parent {me}] network namespaces unavailable ({e}): using loopback");
        })
    } else {
        Err(())
    };
    let members: Vec<String> = match &netns {
        Ok(addrs) => addrs.iter().map(|a| format!("tcp://{a}:7100")).collect(),
        Err(()) => (0..NODES)
            .map(|_| free_port().map(|p| format!("tcp://127.0.0.1:{p}")))
            .collect::<Result<_>>()?,
    };
    let exe = std::env::current_exe()?;
    let mut locals = Vec::new();
    for i in 0..NODES {
        let config = setup.dir.join(format!("node{i}.conf"));
        let local = local_url(base, i);
        std::fs::write(
            &config,
            format!(
                "epoch = 1\nnode = {i}\nmembers = {}\nlease = {LEASE_MS}ms\nretransmit = 30ms\n\
                 state = {}\nlocal = {local}\n",
                members.join(", "),
                setup.dir.join(format!("node{i}.state")).display()
            ),
        )?;
        let mut cmd = if netns.is_ok() {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &format!("{tag}n{i}")]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let child = cmd
            .env(crate::lockd::PARENT_ENV, me.to_string())
            .args(["lockd", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()?;
        setup.nodes.push(Some(child));
        setup.locals.push(local.clone());
        locals.push(local);
    }
    let place = if netns.is_ok() {
        "each in its own network namespace on a bridge"
    } else {
        "on loopback TCP"
    };
    println!(
        "[parent {me}] started {NODES} lock nodes ({place}): {}; lease {LEASE_MS} ms",
        members.join(", ")
    );

    // The lock taken through each node in turn: tokens rise across holders.
    let counter = FencedResource::new("demo counter", 0u64);
    let mut locks = Vec::new();
    for url in &locals {
        let started = Instant::now();
        let mut lock = open_when_up(url)?;
        let guard = lock.try_lock_for(Duration::from_secs(10))?;
        let value = counter.apply(guard.token(), |v| {
            *v += 1;
            *v
        })?;
        println!(
            "[parent {me}] lock \"demo\" taken through {url} in {:.1} ms: fencing token {}, counter {value}",
            started.elapsed().as_secs_f64() * 1e3,
            guard.token()
        );
        drop(guard);
        locks.push(lock);
    }

    // A holder whose node dies: its votes lapse with the lease, another node takes the
    // lock with a higher token, and the old token is refused.
    let mut first = locks.remove(0);
    let held = first.lock()?;
    let old = held.token();
    if let Some(mut node) = setup.nodes[0].take() {
        node.kill()?;
        node.wait()?;
    }
    let killed = Instant::now();
    println!("[parent {me}] holding token {old} through node 0, then killed node 0 (SIGKILL)");
    let next = locks[0].try_lock_for(Duration::from_secs(10))?;
    println!(
        "[parent {me}] node 1 took the lock {:.0} ms later with token {} (votes lapse after the lease)",
        killed.elapsed().as_secs_f64() * 1e3,
        next.token()
    );
    counter.apply(next.token(), |v| *v += 1)?;
    match counter.apply(old, |v| *v += 1) {
        Err(e) => println!("[parent {me}] the old holder's late write was refused: {e}"),
        Ok(()) => return Err("a stale token was accepted".into()),
    }
    println!(
        "[parent {me}] old guard check: {}",
        held.check()
            .map_or_else(|e| e.to_string(), |()| "still valid?!".into())
    );
    drop(next);
    drop(held); // its node is gone: the release fails quickly and is ignored
    // The host's Bakery locks outlive their users (other processes of the host may
    // open them); this demo's are its own, so it removes them.
    locks.insert(0, first);
    for lock in locks {
        let name = lock.host_segment().to_owned();
        drop(lock);
        let _ = shmlink::segment::unlink(&name);
    }
    Ok(())
}

/// Opens the lock through `url`, waiting for its node to listen.
fn open_when_up(url: &str) -> Result<DistLock> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match DistLock::open(url, LOCK) {
            Ok(l) => return Ok(l),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

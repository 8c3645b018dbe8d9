//! Across processes (children re-executing this binary, see `tests/support`): an echo
//! server in a child, an echo client in a child, and a SIGKILLed server or client ends
//! the blocked `recv` of the parent long before its deadline (and the killed peer's
//! frames are drained first). TCP also runs between two network namespaces joined by a
//! veth pair (when `ip netns` is available).

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use shmlink::transport::{self, Listener, Receiver, TransportOptions, TransportRecvError};

use crate::support::{Child, Scenario, arg, report};
use crate::{
    CHILD_TIMEOUT, KILL_NOTICED_WITHIN, KILL_RECV_DEADLINE, Kind, assert_frame, echo, echo_loop,
    listen, opts, pattern, remove_killed_listener, round_trip, segment_exists, segments_named,
    soon, varied_len,
};

conformance!(
    cross_process_echo_server,
    cross_process_echo_client,
    killed_server_ends_blocked_recv,
    killed_client_ends_blocked_recv,
    killed_peer_frames_are_drained,
);

/// Child: listens on `url`, reports `listening=URL` and its network namespace, echoes
/// one connection until the client leaves, reports `echoed=N`.
pub(crate) fn echo_server() {
    let listener = transport::listen(&arg("url"), &opts()).expect("listen");
    report(format!("netns={}", netns_id()));
    report(format!("listening={}", listener.url()));
    let conn = listener
        .accept(Some(Instant::now() + CHILD_TIMEOUT))
        .expect("accept");
    let n = echo_loop(conn).expect("echo");
    report(format!("echoed={n}"));
}

/// Child: connects to `url`, round-trips `count` frames of varied sizes, reports
/// `ok=N`, the connection's kind and maximum frame, and its network namespace.
pub(crate) fn echo_client() {
    let count: u64 = arg("count").parse().unwrap();
    report(format!("netns={}", netns_id()));
    let conn = transport::connect(&arg("url"), &opts()).expect("connect");
    report(format!("kind={}", conn.kind()));
    report(format!("max_frame={}", conn.max_frame()));
    let (mut tx, mut rx) = conn.split();
    let mut buf = Vec::new();
    for seq in 0..count {
        round_trip(&mut tx, &mut rx, &mut buf, seq, varied_len(seq));
    }
    report(format!("ok={count}"));
}

/// The frames a `connect_then_hang` child sends: small, so that all of them fit in the
/// socket buffers while nobody reads.
fn hang_frame(seq: u64) -> Vec<u8> {
    pattern(seq, varied_len(seq) % 2000)
}

/// Child: reports `connecting`, connects to `url` (with `connect_timeout_ms`), sends
/// frames `hang_frame(0..count)`, reports `sent`, then waits to be killed.
pub(crate) fn connect_then_hang() {
    let count: u64 = arg("count").parse().unwrap();
    let opts = TransportOptions {
        connect_timeout: Duration::from_millis(arg("connect_timeout_ms").parse().unwrap()),
        ..opts()
    };
    report("connecting");
    let conn = transport::connect(&arg("url"), &opts).expect("connect");
    let (mut tx, rx) = conn.split();
    for seq in 0..count {
        tx.send(&hang_frame(seq), soon()).expect("send");
    }
    report("sent");
    thread::sleep(Duration::from_secs(120));
    drop((tx, rx));
}

/// This process's network namespace (`net:[INODE]`).
fn netns_id() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// Starts an echo server child on a fresh address of `kind`; returns it and its URL.
fn spawn_echo_server(kind: Kind) -> (Child, String) {
    let mut server = Scenario::new("echo_server")
        .arg("url", kind.listen_url())
        .spawn();
    let line = server.wait_for("listening=", CHILD_TIMEOUT);
    let url = line["listening=".len()..].to_owned();
    (server, url)
}

fn cross_process_echo_server(kind: Kind) {
    const FRAMES: u64 = 1000;
    let (server, url) = spawn_echo_server(kind);
    let conn = transport::connect(&url, &opts()).expect("connect to the child");
    assert_eq!(conn.kind(), kind.name());
    let (mut tx, mut rx) = conn.split();
    let mut buf = Vec::new();
    for seq in 0..FRAMES {
        round_trip(&mut tx, &mut rx, &mut buf, seq, varied_len(seq));
    }
    drop((tx, rx));
    let done = server.success(CHILD_TIMEOUT);
    if kind == Kind::Shm {
        let name = url.trim_start_matches("shm://");
        assert!(!segment_exists(name), "the child's listener cleaned up");
    }
    assert_eq!(
        done.values().get("echoed").map(String::as_str),
        Some("1000"),
        "{kind:?}: {:?}",
        done.reports
    );
}

fn cross_process_echo_client(kind: Kind) {
    const FRAMES: u64 = 300;
    let opts = opts();
    let listener = listen(kind, &opts);
    let mut client = Scenario::new("echo_client")
        .arg("url", listener.url())
        .arg("count", FRAMES)
        .spawn();
    let conn = listener.accept(soon()).expect("accept the child");
    if kind == Kind::Shm {
        // Connection set up (the child's connect returned, it reports the kind): no
        // connection segment is left named.
        client.wait_for("kind=", CHILD_TIMEOUT);
        let prefix = format!("{}.", listener.url().trim_start_matches("shm://"));
        assert_eq!(segments_named(&prefix), Vec::<String>::new());
    }
    let echoer = echo(conn);
    let done = client.success(CHILD_TIMEOUT);
    let values = done.values();
    assert_eq!(values.get("ok").map(String::as_str), Some("300"));
    assert_eq!(values.get("kind").map(String::as_str), Some(kind.name()));
    assert_eq!(
        values.get("max_frame"),
        Some(&opts.max_frame.to_string()),
        "{kind:?}"
    );
    assert_eq!(
        echoer.join().unwrap(),
        Ok(FRAMES),
        "{kind:?}: parent echoed"
    );
}

/// SIGKILLs `pid` after `delay` from another thread; joining gives when.
fn sigkill_after(pid: u32, delay: Duration) -> thread::JoinHandle<Instant> {
    thread::spawn(move || {
        thread::sleep(delay);
        let at = Instant::now();
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill");
        at
    })
}

/// Blocks in `recv` (deadline [`KILL_RECV_DEADLINE`]) while the peer process `child` is
/// SIGKILLed; the `recv` must end with `Disconnected` well before the deadline.
fn recv_while_peer_killed(kind: Kind, rx: &mut Receiver, child: Child, who: &str) {
    let killer = sigkill_after(child.pid(), Duration::from_millis(300));
    let began = Instant::now();
    let got = rx.recv(&mut Vec::new(), Some(began + KILL_RECV_DEADLINE));
    let took = began.elapsed();
    let killed_at = killer.join().unwrap();
    println!(
        "{kind:?}: recv noticed the killed {who} {:?} after the SIGKILL",
        Instant::now().saturating_duration_since(killed_at)
    );
    assert_eq!(
        got,
        Err(TransportRecvError::Disconnected),
        "{kind:?}: {who} killed"
    );
    assert!(
        took < KILL_NOTICED_WITHIN,
        "{kind:?}: recv took {took:?} to notice the killed {who}"
    );
    let done = child.wait(CHILD_TIMEOUT);
    assert_eq!(done.status.signal(), Some(Signal::SIGKILL as i32), "{who}");
}

fn killed_server_ends_blocked_recv(kind: Kind) {
    let (server, url) = spawn_echo_server(kind);
    let conn = transport::connect(&url, &opts()).expect("connect to the child");
    let (mut tx, mut rx) = conn.split();
    // The child is serving (and then blocked in its own recv).
    round_trip(&mut tx, &mut rx, &mut Vec::new(), 1, 100);
    recv_while_peer_killed(kind, &mut rx, server, "server");
    remove_killed_listener(&url);
}

/// Starts a `connect_then_hang` child on `listener` that sends `count` frames.
pub(crate) fn spawn_hanging_client(listener: &Listener, count: u64) -> Child {
    Scenario::new("connect_then_hang")
        .arg("url", listener.url())
        .arg("count", count)
        .arg("connect_timeout_ms", CHILD_TIMEOUT.as_millis())
        .spawn()
}

fn killed_client_ends_blocked_recv(kind: Kind) {
    let listener = listen(kind, &opts());
    let mut client = spawn_hanging_client(&listener, 1);
    let conn = listener.accept(soon()).expect("accept the child");
    let (_tx, mut rx) = conn.split();
    let mut buf = Vec::new();
    rx.recv(&mut buf, soon()).expect("the child's frame");
    assert_frame(&buf, &hang_frame(0), "child's frame");
    client.wait_for("sent", CHILD_TIMEOUT);
    recv_while_peer_killed(kind, &mut rx, client, "client");
}

fn killed_peer_frames_are_drained(kind: Kind) {
    const FRAMES: u64 = 20;
    let opts = opts();
    let listener = listen(kind, &opts);
    let mut client = spawn_hanging_client(&listener, FRAMES);
    let conn = listener.accept(soon()).expect("accept the child");
    let (_tx, mut rx) = conn.split();
    client.wait_for("sent", CHILD_TIMEOUT);
    let status = client.kill();
    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
    // Everything it sent before it died arrives, then the end.
    let mut buf = Vec::new();
    for seq in 0..FRAMES {
        rx.recv(&mut buf, soon())
            .unwrap_or_else(|e| panic!("{kind:?}: frame {seq} of the killed client: {e}"));
        assert_frame(&buf, &hang_frame(seq), "frame of the killed client");
    }
    assert_eq!(
        rx.recv(&mut buf, soon()),
        Err(TransportRecvError::Disconnected),
        "{kind:?}"
    );
}

/// Two network namespaces joined by a veth pair; removed on drop.
struct NetnsPair {
    a: String,
    b: String,
    created: Vec<String>,
    a_ip: String,
    b_ip: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetnsPair {
    /// `None` if namespaces cannot be created here (not root, no `ip`); panics if they
    /// can but the link between them cannot be set up.
    fn create() -> Option<NetnsPair> {
        let pid = std::process::id();
        let mut pair = NetnsPair {
            a: format!("shmlink-a-{pid}"),
            b: format!("shmlink-b-{pid}"),
            created: Vec::new(),
            a_ip: format!("10.{}.{}.1", (pid >> 8) & 0xff, pid & 0xff),
            b_ip: format!("10.{}.{}.2", (pid >> 8) & 0xff, pid & 0xff),
        };
        for ns in [pair.a.clone(), pair.b.clone()] {
            if let Err(e) = ip(&["netns", "add", &ns]) {
                println!("{e}");
                return None; // drop removes what was created
            }
            pair.created.push(ns);
        }
        let (va, vb) = (format!("shla{pid}"), format!("shlb{pid}"));
        let (a, b) = (pair.a.clone(), pair.b.clone());
        let (a_cidr, b_cidr) = (format!("{}/24", pair.a_ip), format!("{}/24", pair.b_ip));
        let steps: [&[&str]; 7] = [
            &[
                "link", "add", &va, "netns", &a, "type", "veth", "peer", "name", &vb, "netns", &b,
            ],
            &["-n", &a, "addr", "add", &a_cidr, "dev", &va],
            &["-n", &b, "addr", "add", &b_cidr, "dev", &vb],
            &["-n", &a, "link", "set", &va, "up"],
            &["-n", &b, "link", "set", &vb, "up"],
            &["-n", &a, "link", "set", "lo", "up"],
            &["-n", &b, "link", "set", "lo", "up"],
        ];
        for step in steps {
            if let Err(e) = ip(step) {
                panic!("setting up the namespaces: {e}");
            }
        }
        Some(pair)
    }

    fn exec_prefix(ns: &str) -> [&str; 4] {
        ["ip", "netns", "exec", ns]
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace also deletes its end of the veth pair (and so both).
        for ns in &self.created {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn tcp_between_network_namespaces() {
    let Some(ns) = NetnsPair::create() else {
        println!("netns unavailable; TCP tested on loopback only");
        return;
    };
    const FRAMES: u64 = 300;
    let mut server = Scenario::new("echo_server")
        .arg("url", format!("tcp://{}:0", ns.a_ip))
        .spawn_under(&NetnsPair::exec_prefix(&ns.a));
    let line = server.wait_for("listening=", CHILD_TIMEOUT);
    let url = line["listening=".len()..].to_owned();
    assert!(
        url.starts_with(&format!("tcp://{}:", ns.a_ip)) && !url.ends_with(":0"),
        "{url}"
    );
    let client = Scenario::new("echo_client")
        .arg("url", &url)
        .arg("count", FRAMES)
        .spawn_under(&NetnsPair::exec_prefix(&ns.b));
    let client_done = client.success(CHILD_TIMEOUT);
    let server_done = server.success(CHILD_TIMEOUT);
    let (c, s) = (client_done.values(), server_done.values());
    assert_eq!(
        c.get("ok").map(String::as_str),
        Some("300"),
        "{:?}",
        client_done.reports
    );
    assert_eq!(c.get("kind").map(String::as_str), Some("tcp"));
    assert_eq!(
        c.get("max_frame"),
        Some(&TransportOptions::default().max_frame.to_string())
    );
    assert_eq!(
        s.get("echoed").map(String::as_str),
        Some("300"),
        "{:?}",
        server_done.reports
    );
    // Each ran in its own namespace, neither in ours: the frames crossed the veth.
    let ours = netns_id();
    let (c_ns, s_ns) = (&c["netns"], &s["netns"]);
    assert!(
        c_ns.starts_with("net:[") && s_ns.starts_with("net:["),
        "{c_ns} {s_ns}"
    );
    assert_ne!(c_ns, s_ns);
    assert_ne!(c_ns, &ours);
    assert_ne!(s_ns, &ours);
    println!(
        "{ns_a} ({s_ns}) <-> {ns_b} ({c_ns}) over {url}",
        ns_a = ns.a,
        ns_b = ns.b
    );
}

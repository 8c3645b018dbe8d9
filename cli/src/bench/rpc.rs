//! `shmlink bench rpc`: RPC calls across processes over each transport, against
//! same-run baselines.
//!
//! The parent (the client) pins itself to core 0 and a child server process (this
//! binary, `bench-child --case rpc-serve`) to core 1, where the machine allows it, and
//! measures in one run:
//! - the round trip of a small call (`echo(u64) -> u64`) over shared memory (spinning
//!   and blocking rings), Unix domain sockets and TCP on loopback, with the server
//!   running handlers inline on its connection reader, and over shared memory also with
//!   the worker pool (one thread hand-off more);
//! - pipelined calls per second: windows of 64 calls sent before the first answer is
//!   awaited, over each transport;
//! - baselines: the raw two-atomic ping-pong across processes (the cache-line floor),
//!   a raw Unix-socket ping-pong and a raw TCP ping-pong of 8 bytes (blocking
//!   reads and writes, no framing, no encoding).
//!
//! Round-trip cases and their baselines are repeated and interleaved, and the median
//! of the repetitions is reported, so a slow spell of the machine hits every case alike.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use shmlink::rpc::{ClientOptions, Context, Server};
use shmlink::transport::{self, TransportOptions};

use super::rings::{raw_floor, uds_round_trips};
use super::{
    Goal, LIMIT, Measurement, Runner, finish, median, percentiles, pin, print_goal_table,
    print_json,
};
use crate::Result;

/// The benchmark service's error (it never fails).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

shmlink::service! {
    /// What the RPC benchmarks call.
    pub trait BenchSvc {
        client BenchClient;
        server BenchServer;
        error Never;
        /// Returns its argument.
        fn echo(x: u64) -> u64;
        /// Asks the server process to exit.
        fn quit(x: u64) -> u64;
    }
}

struct Echo {
    quit: std::sync::mpsc::SyncSender<()>,
}

impl BenchSvc for Echo {
    fn echo(&self, _ctx: &Context, x: u64) -> std::result::Result<u64, Never> {
        Ok(x)
    }

    fn quit(&self, _ctx: &Context, x: u64) -> std::result::Result<u64, Never> {
        let _ = self.quit.try_send(());
        Ok(x)
    }
}

/// Calls per pipelined window.
const WINDOW: u64 = 64;

/// Where a case's server listens and how the client connects.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    ShmSpin,
    ShmBlocking,
    Unix,
    Tcp,
}

impl Via {
    fn label(self) -> &'static str {
        match self {
            Via::ShmSpin => "shm (spinning rings)",
            Via::ShmBlocking => "shm (blocking rings)",
            Via::Unix => "unix socket",
            Via::Tcp => "tcp loopback",
        }
    }

    fn url(self, r: &mut Runner) -> String {
        match self {
            Via::ShmSpin | Via::ShmBlocking => format!("shm://{}", r.name("rpc")),
            Via::Unix => format!(
                "unix://{}",
                std::env::temp_dir()
                    .join(format!("{}.sock", r.name("rpc")))
                    .display()
            ),
            // The child reports nothing back, so pick a free port here (outside the
            // ephemeral range, where this process's own connections cannot take it).
            Via::Tcp => match shmlink::transport::unused_tcp_port(Ipv4Addr::LOCALHOST.into()) {
                Ok(port) => format!("tcp://127.0.0.1:{port}"),
                Err(_) => "tcp://127.0.0.1:7878".to_string(),
            },
        }
    }
}

/// Starts a server child at `url` (`workers` 0: inline) and connects to it.
fn start(r: &mut Runner, via: Via, workers: u64) -> Result<(std::process::Child, BenchClient)> {
    let url = via.url(r);
    let child = r.child("rpc-serve", &url, workers)?;
    let opts = ClientOptions {
        transport: TransportOptions {
            shm_spin: via == Via::ShmSpin,
            max_frame: 4096,
            ..TransportOptions::default()
        },
        timeout: LIMIT,
        reconnect: false,
    };
    let started = Instant::now();
    loop {
        match BenchClient::connect_with(&url, &opts) {
            Ok(c) => return Ok((child, c)),
            Err(e) if started.elapsed() > LIMIT => return Err(format!("connect {url}: {e}").into()),
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

fn stop(child: std::process::Child, client: BenchClient) -> Result {
    client.quit(0).wait().map_err(|e| format!("quit: {e:?}"))?;
    drop(client);
    finish(child)
}

fn rpc_round_trips(r: &mut Runner, via: Via, workers: u64, iters: u64) -> Result<[f64; 3]> {
    let (child, client) = start(r, via, workers)?;
    let mut samples = Vec::with_capacity(iters as usize);
    for i in 0..iters {
        let t = Instant::now();
        let v = client.echo(i).wait().map_err(|e| format!("echo: {e:?}"))?;
        samples.push(t.elapsed());
        if v != i {
            return Err(format!("echo({i}) returned {v}").into());
        }
    }
    stop(child, client)?;
    Ok(percentiles(samples))
}

fn rpc_pipelined(r: &mut Runner, via: Via, calls: u64) -> Result<f64> {
    let (child, client) = start(r, via, 0)?;
    let mut pending = std::collections::VecDeque::with_capacity(WINDOW as usize);
    let t = Instant::now();
    for i in 0..calls {
        if pending.len() as u64 == WINDOW {
            let (want, call): (u64, shmlink::rpc::Call<u64, Never>) =
                pending.pop_front().ok_or("window")?;
            let got = call.wait().map_err(|e| format!("echo: {e:?}"))?;
            if got != want {
                return Err(format!("echo({want}) returned {got}").into());
            }
        }
        pending.push_back((i, client.echo(i)));
    }
    for (want, call) in pending {
        let got = call.wait().map_err(|e| format!("echo: {e:?}"))?;
        if got != want {
            return Err(format!("echo({want}) returned {got}").into());
        }
    }
    let rate = calls as f64 / t.elapsed().as_secs_f64();
    stop(child, client)?;
    Ok(rate)
}

/// Round trips of 16-byte frames over a bare transport connection (no RPC layer): the
/// part of an RPC round trip the transport itself costs.
fn transport_round_trips(r: &mut Runner, via: Via, iters: u64) -> Result<[f64; 3]> {
    let url = via.url(r);
    let child = r.child("rpc-transport-echo", &url, iters)?;
    let opts = TransportOptions {
        shm_spin: via == Via::ShmSpin,
        max_frame: 4096,
        ..TransportOptions::default()
    };
    let started = Instant::now();
    let conn = loop {
        match transport::connect(&url, &opts) {
            Ok(c) => break c,
            Err(e) if started.elapsed() > LIMIT => return Err(format!("connect {url}: {e}").into()),
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    let (mut tx, mut rx) = conn.split();
    let deadline = Instant::now().checked_add(LIMIT * 3);
    let mut frame = [0u8; 16];
    let mut buf = Vec::with_capacity(64);
    let mut samples = Vec::with_capacity(iters as usize);
    for i in 0..iters {
        frame[..8].copy_from_slice(&i.to_le_bytes());
        let t = Instant::now();
        tx.send(&frame, deadline)?;
        rx.recv(&mut buf, deadline)?;
        samples.push(t.elapsed());
        if buf[..] != frame[..] {
            return Err("transport echo returned another frame".into());
        }
    }
    drop((tx, rx));
    finish(child)?;
    Ok(percentiles(samples))
}

fn tcp_round_trips(r: &mut Runner, iters: u64) -> Result<[f64; 3]> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?.to_string();
    let child = r.child("rpc-tcp-raw", &addr, iters)?;
    let (mut sock, _) = listener.accept()?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(LIMIT))?;
    let mut buf = [0u8; 8];
    let mut samples = Vec::with_capacity(iters as usize);
    for i in 0..iters {
        buf.copy_from_slice(&i.to_le_bytes());
        let t = Instant::now();
        sock.write_all(&buf)?;
        sock.read_exact(&mut buf)?;
        samples.push(t.elapsed());
    }
    finish(child)?;
    Ok(percentiles(samples))
}

/// Runs the `rpc` suite.
pub fn rpc(json: bool, quick: bool) -> Result {
    let mut r = Runner::start("bench-rpc");
    let scale = if quick { 10 } else { 1 };
    let rt_spin = 100_000 / scale;
    let rt_block = 20_000 / scale;
    let piped = 200_000 / scale;
    let reps = if quick { 1 } else { 3 };

    // Round trips: [floor, uds raw, tcp raw, shm spin, shm spin pool, shm block, uds, tcp,
    // bare shm transport]
    let mut rts: [Vec<[f64; 3]>; 9] = Default::default();
    for _ in 0..reps {
        rts[0].push(raw_floor(&mut r, rt_spin)?);
        rts[1].push(uds_round_trips(&mut r, 8, rt_block)?);
        rts[2].push(tcp_round_trips(&mut r, rt_block)?);
        rts[3].push(rpc_round_trips(&mut r, Via::ShmSpin, 0, rt_spin)?);
        rts[4].push(rpc_round_trips(&mut r, Via::ShmSpin, 2, rt_block)?);
        rts[5].push(rpc_round_trips(&mut r, Via::ShmBlocking, 0, rt_block)?);
        rts[6].push(rpc_round_trips(&mut r, Via::Unix, 0, rt_block)?);
        rts[7].push(rpc_round_trips(&mut r, Via::Tcp, 0, rt_block)?);
        rts[8].push(transport_round_trips(&mut r, Via::ShmSpin, rt_spin)?);
    }
    let med = |v: &Vec<[f64; 3]>, k: usize| median(v.iter().map(|p| p[k]).collect());
    let mut out = Vec::new();
    let mut goals = Vec::new();
    let rows = [
        ("raw atomic ping-pong (floor)", 0, None, None),
        ("raw UDS ping-pong 8 B (baseline)", 1, None, None),
        ("raw TCP ping-pong 8 B (baseline)", 2, None, None),
        (
            "bare shm transport 16 B frames, spin (no RPC)",
            8,
            Some(0),
            None,
        ),
        (
            "rpc echo round trip, shm spin, inline",
            3,
            Some(0),
            Some(2.0),
        ),
        ("rpc echo round trip, shm spin, pool of 2", 4, Some(0), None),
        (
            "rpc echo round trip, shm blocking, inline",
            5,
            Some(1),
            None,
        ),
        (
            "rpc echo round trip, unix socket, inline",
            6,
            Some(1),
            Some(1.2),
        ),
        (
            "rpc echo round trip, tcp loopback, inline",
            7,
            Some(2),
            Some(1.2),
        ),
    ];
    for (name, at, base, goal) in rows {
        for (k, q) in ["median", "p99"].iter().enumerate() {
            let mut m = Measurement::new(format!("{name} {q}"), "ns", med(&rts[at], k));
            if let Some(b) = base {
                let bm = Measurement::new(format!("{} {q}", rows[b].0), "ns", med(&rts[b], k));
                m = m.against(&bm);
            }
            out.push(m);
            goals.push(if k == 0 { goal.map(Goal::AtMost) } else { None });
        }
    }
    for via in [Via::ShmSpin, Via::ShmBlocking, Via::Unix, Via::Tcp] {
        let mut v = Vec::new();
        for _ in 0..reps {
            v.push(rpc_pipelined(&mut r, via, piped)?);
        }
        out.push(Measurement::new(
            format!("rpc pipelined echo ({WINDOW} in flight), {}", via.label()),
            "calls/s",
            median(v),
        ));
        goals.push(None);
    }
    if json {
        print_json(&out);
    } else {
        print_goal_table(
            &format!("shmlink bench rpc ({})", r.placement("client", "server")),
            "lower is better for ns, higher for calls/s",
            &out,
            &goals,
        );
    }
    Ok(())
}

/// The child side: `rpc-serve` serves the bench service at `name` (a URL) with
/// `iters` workers (0: inline) until asked to quit; `rpc-tcp-raw` echoes `iters`
/// 8-byte messages over TCP to `name` (an address).
pub fn child(case: &str, name: &str, iters: u64) -> Result {
    pin(1);
    match case {
        "rpc-serve" => {
            let (quit, wait) = std::sync::mpsc::sync_channel(1);
            let server = Server::new(BenchServer(Echo { quit }))
                .workers(iters as usize)
                .options(transport::TransportOptions {
                    max_frame: 4096,
                    ..transport::TransportOptions::default()
                })
                .serve(name)?;
            wait.recv_timeout(Duration::from_secs(600))
                .map_err(|_| "never asked to quit")?;
            server.shutdown(Duration::from_secs(1));
            Ok(())
        }
        "rpc-transport-echo" => {
            let listener = transport::listen(
                name,
                &TransportOptions {
                    max_frame: 4096,
                    ..TransportOptions::default()
                },
            )?;
            let deadline = Instant::now().checked_add(LIMIT * 3);
            let (mut tx, mut rx) = listener.accept(deadline)?.split();
            let mut buf = Vec::with_capacity(64);
            for _ in 0..iters {
                rx.recv(&mut buf, deadline)?;
                tx.send(&buf, deadline)?;
            }
            Ok(())
        }
        "rpc-tcp-raw" => {
            let mut sock = TcpStream::connect(name)?;
            sock.set_nodelay(true)?;
            sock.set_read_timeout(Some(LIMIT))?;
            let mut buf = [0u8; 8];
            for _ in 0..iters {
                sock.read_exact(&mut buf)?;
                sock.write_all(&buf)?;
            }
            Ok(())
        }
        other => Err(format!("unknown bench case {other}").into()),
    }
}

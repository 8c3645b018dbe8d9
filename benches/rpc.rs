//! RPC between two threads of one process: the round trip of a small call and
//! pipelined calls per second, over an in-process shared-memory pair (a heap duplex,
//! spinning), a Unix socket and TCP on loopback, with the bare transport round trip
//! (no RPC layer) as the same-run baseline of each. The cross-process numbers, against
//! the raw two-atomic floor and raw socket ping-pongs, come from `shmlink bench rpc`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shmlink::rpc::{ClientOptions, Context, Server, ServerHandle};
use shmlink::transport::{self, Connection, TransportOptions};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Never;

shmlink::service! {
    /// What the benchmarks call.
    trait Echo {
        client EchoClient;
        server EchoServer;
        error Never;
        fn echo(x: u64) -> u64;
    }
}

struct Svc;

impl Echo for Svc {
    fn echo(&self, _: &Context, x: u64) -> Result<u64, Never> {
        Ok(x)
    }
}

/// Calls in flight in the pipelined cases.
const WINDOW: usize = 64;

fn opts() -> TransportOptions {
    TransportOptions {
        shm_spin: true,
        max_frame: 4096,
        ..TransportOptions::default()
    }
}

/// A connected (client, server) pair of connections over `kind`.
fn connections(kind: &str) -> (Connection, Connection) {
    match kind {
        "shm" => transport::pair(&opts()).expect("pair"),
        _ => {
            let url = if kind == "unix" {
                format!(
                    "unix://{}",
                    std::env::temp_dir()
                        .join(format!("shmlink-bench-rpc-{}.sock", std::process::id()))
                        .display()
                )
            } else {
                "tcp://127.0.0.1:0".to_string()
            };
            let listener = transport::listen(&url, &opts()).expect("listen");
            let url = listener.url();
            let accept = std::thread::spawn(move || {
                listener
                    .accept(Instant::now().checked_add(Duration::from_secs(10)))
                    .expect("accept")
            });
            let client = transport::connect(&url, &opts()).expect("connect");
            (client, accept.join().expect("accept thread"))
        }
    }
}

fn rpc_pair(kind: &str) -> (EchoClient, ServerHandle) {
    let (c, s) = connections(kind);
    let server = Server::new(EchoServer(Svc)).workers(0).start_detached();
    server.serve_connection(s);
    let client = EchoClient::from_connection(c, &ClientOptions::default()).expect("hello");
    (client, server)
}

fn round_trips(c: &mut Criterion) {
    let mut g = c.benchmark_group("rpc round trip (threads)");
    g.measurement_time(Duration::from_secs(3));
    for kind in ["shm", "unix", "tcp"] {
        // Baseline: a bare transport echo of a 16-byte frame.
        let (client, server) = connections(kind);
        let (mut tx, mut rx) = client.split();
        let (mut stx, mut srx) = server.split();
        let echo = std::thread::spawn(move || {
            let mut buf = Vec::new();
            while srx.recv(&mut buf, None).is_ok() {
                if stx.send(&buf, None).is_err() {
                    break;
                }
            }
        });
        let mut buf = Vec::new();
        g.bench_function(
            format!("{kind}: bare transport 16 B echo (baseline)"),
            |b| {
                b.iter(|| {
                    tx.send(black_box(&[7u8; 16]), None).expect("send");
                    rx.recv(&mut buf, None).expect("recv");
                })
            },
        );
        drop((tx, rx));
        echo.join().expect("echo thread");

        let (client, server) = rpc_pair(kind);
        g.bench_function(format!("{kind}: rpc echo(u64)"), |b| {
            let mut i = 0u64;
            b.iter(|| {
                i += 1;
                black_box(client.echo(i).wait().expect("echo"))
            })
        });
        drop(client);
        server.shutdown(Duration::from_secs(1));
    }
    g.finish();
}

fn pipelined(c: &mut Criterion) {
    let mut g = c.benchmark_group("rpc pipelined (threads)");
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(WINDOW as u64));
    for kind in ["shm", "unix", "tcp"] {
        let (client, server) = rpc_pair(kind);
        g.bench_function(format!("{kind}: {WINDOW} calls in flight"), |b| {
            b.iter(|| {
                let calls: Vec<_> = (0..WINDOW as u64).map(|i| client.echo(i)).collect();
                for c in calls {
                    black_box(c.wait().expect("echo"));
                }
            })
        });
        drop(client);
        server.shutdown(Duration::from_secs(1));
    }
    g.finish();
}

criterion_group!(benches, round_trips, pipelined);
criterion_main!(benches);

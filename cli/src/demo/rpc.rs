//! The demo's RPC phase: the child serves one key-value service over shared memory, a
//! Unix socket and TCP at once; the parent finds the socket addresses by calling the
//! service over shared memory, then calls it over each transport and times the round
//! trips, pipelined calls, a server stream and a typed service error.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmlink::rpc::{Call, Context, RpcError, Server, Sink};

use super::print_latency;
use crate::Result;

/// The store's own error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StoreError {
    /// An addition would overflow.
    Overflow { key: String, value: u64 },
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Overflow { key, value } => write!(f, "{key} = {value} would overflow"),
        }
    }
}

shmlink::service! {
    /// The demo's key-value store.
    pub trait Store {
        client StoreClient;
        server StoreServer;
        error StoreError;
        /// Sets a key; returns the old value.
        fn put(kv: (String, u64)) -> Option<u64>;
        /// Reads a key.
        fn get(key: String) -> Option<u64>;
        /// Adds to a key (missing: 0); returns the new value.
        fn add(kv: (String, u64)) -> u64;
        /// Where else the store is served.
        fn endpoints(unit: ()) -> Vec<String>;
        /// Says goodbye on one transport; returns how many said it.
        fn bye(unit: ()) -> u32;
        /// Every key with the prefix, in order.
        stream fn scan(prefix: String) -> (String, u64);
    }
}

struct Shop {
    map: Mutex<BTreeMap<String, u64>>,
    endpoints: Mutex<Vec<String>>,
    byes: std::sync::mpsc::SyncSender<()>,
    said: Mutex<u32>,
}

impl Store for std::sync::Arc<Shop> {
    fn put(
        &self,
        _ctx: &Context,
        (k, v): (String, u64),
    ) -> std::result::Result<Option<u64>, StoreError> {
        Ok(self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(k, v))
    }

    fn get(&self, _ctx: &Context, key: String) -> std::result::Result<Option<u64>, StoreError> {
        Ok(self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .copied())
    }

    fn add(&self, _ctx: &Context, (k, v): (String, u64)) -> std::result::Result<u64, StoreError> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let slot = map.entry(k.clone()).or_insert(0);
        *slot = slot.checked_add(v).ok_or(StoreError::Overflow {
            key: k,
            value: *slot,
        })?;
        Ok(*slot)
    }

    fn endpoints(&self, _ctx: &Context, _: ()) -> std::result::Result<Vec<String>, StoreError> {
        Ok(self
            .endpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone())
    }

    fn bye(&self, _ctx: &Context, _: ()) -> std::result::Result<u32, StoreError> {
        let mut said = self.said.lock().unwrap_or_else(|p| p.into_inner());
        *said += 1;
        let _ = self.byes.try_send(());
        Ok(*said)
    }

    fn scan(
        &self,
        _ctx: &Context,
        prefix: String,
        sink: &mut Sink<'_, (String, u64)>,
    ) -> std::result::Result<(), StoreError> {
        let items: Vec<(String, u64)> = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for item in &items {
            if sink.send(item).is_err() {
                break; // the caller went away
            }
        }
        Ok(())
    }
}

/// The file name of the RPC phase's Unix socket (in the temporary directory).
pub fn socket_file(base: &str) -> String {
    format!("{base}.rpc.sock")
}

fn shm_url(base: &str) -> String {
    format!("shm://{base}.rpc")
}

/// The child's side: serve over all three transports until the parent said bye on
/// each.
pub fn child_phase(base: &str) -> Result {
    let me = std::process::id();
    let (byes, said) = std::sync::mpsc::sync_channel(8);
    let shop = std::sync::Arc::new(Shop {
        map: Mutex::new(BTreeMap::new()),
        endpoints: Mutex::new(Vec::new()),
        byes,
        said: Mutex::new(0),
    });
    let unix = format!(
        "unix://{}",
        std::env::temp_dir().join(socket_file(base)).display()
    );
    let mut servers = Vec::new();
    for url in [unix.as_str(), "tcp://127.0.0.1:0"] {
        let server = Server::new(StoreServer(shop.clone()))
            .workers(0)
            .serve(url)?;
        let at = server.url().unwrap_or(url).to_string();
        shop.endpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(at);
        servers.push(server);
    }
    // Last, so that a parent that reached it can ask for the others.
    servers.push(
        Server::new(StoreServer(shop.clone()))
            .workers(0)
            .serve(&shm_url(base))?,
    );
    let endpoints = shop
        .endpoints
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    println!(
        "[child {me}] serving the Store service (inline handlers) at {} and {}",
        shm_url(base),
        endpoints.join(" and ")
    );
    for _ in 0..3 {
        said.recv_timeout(Duration::from_secs(60))
            .map_err(|_| "the parent never said bye")?;
    }
    let mut calls = 0;
    for s in servers {
        calls += s.shutdown(Duration::from_secs(1)).completed;
    }
    println!("[child {me}] shut the three servers down gracefully after {calls} calls");
    Ok(())
}

fn connect(url: &str) -> Result<StoreClient> {
    let started = Instant::now();
    loop {
        match StoreClient::connect(url) {
            Ok(c) => return Ok(c),
            Err(e) if started.elapsed() > Duration::from_secs(10) => {
                return Err(format!("connect {url}: {e}").into());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

fn rpc_err(e: RpcError<StoreError>) -> Box<dyn std::error::Error> {
    e.to_string().into()
}

/// The parent's side: call the store over each transport.
pub fn parent_phase(base: &str, round_trips: u64) -> Result {
    let me = std::process::id();
    let shm = connect(&shm_url(base))?;
    let mut urls = vec![shm_url(base)];
    urls.extend(shm.endpoints(()).wait().map_err(rpc_err)?);
    for url in &urls {
        let client = if url.starts_with("shm://") {
            shm.clone()
        } else {
            connect(url)?
        };
        let n = if url.starts_with("shm://") {
            round_trips
        } else {
            round_trips / 10
        }
        .max(100);
        let mut samples = Vec::with_capacity(n as usize);
        let started = Instant::now();
        for i in 0..n {
            let t = Instant::now();
            let v = client.add(("hits".into(), 1)).wait().map_err(rpc_err)?;
            samples.push(t.elapsed());
            if i == 0 && v == 0 {
                return Err("add returned 0".into());
            }
        }
        print_latency(
            &format!("[parent {me}] rpc add() over {url}"),
            &mut samples,
            started.elapsed(),
        );
        // Pipelined: up to 64 calls in flight on one connection.
        let piped = n * 2;
        let t = Instant::now();
        let mut window: std::collections::VecDeque<Call<Option<u64>, StoreError>> =
            std::collections::VecDeque::new();
        for _ in 0..piped {
            if window.len() == 64
                && let Some(c) = window.pop_front()
            {
                c.wait().map_err(rpc_err)?;
            }
            window.push_back(client.get("hits".into()));
        }
        for c in window {
            c.wait().map_err(rpc_err)?;
        }
        println!(
            "    pipelined get(), 64 in flight: {:.0} calls/s",
            piped as f64 / t.elapsed().as_secs_f64()
        );
    }
    // A stream and a typed error, over shared memory.
    for i in 0..200u64 {
        shm.put((format!("sensor/{i:03}"), i * i))
            .wait()
            .map_err(rpc_err)?;
    }
    let t = Instant::now();
    let mut count = 0u64;
    let mut sum = 0u64;
    for item in shm.scan("sensor/".into()) {
        let (_, v) = item.map_err(rpc_err)?;
        count += 1;
        sum += v;
    }
    println!(
        "[parent {me}] streamed scan(\"sensor/\"): {count} items (sum {sum}) in {:.0} µs",
        t.elapsed().as_secs_f64() * 1e6
    );
    shm.put(("big".into(), u64::MAX)).wait().map_err(rpc_err)?;
    match shm.add(("big".into(), 1)).wait() {
        Err(RpcError::Service(e)) => {
            println!("[parent {me}] add(big, 1) failed with the service's own error: {e}")
        }
        other => return Err(format!("expected an overflow error, got {other:?}").into()),
    }
    match shm.with_timeout(Duration::ZERO).get("hits".into()).wait() {
        Err(RpcError::DeadlineExceeded) => {
            println!("[parent {me}] a call with a zero budget: deadline exceeded, never run")
        }
        other => return Err(format!("expected a deadline error, got {other:?}").into()),
    }
    for url in &urls {
        let client = if url.starts_with("shm://") {
            shm.clone()
        } else {
            connect(url)?
        };
        client.bye(()).wait().map_err(rpc_err)?;
    }
    Ok(())
}

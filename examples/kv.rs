//! A key-value service over RPC: one server program and one client program (the same
//! binary), runnable in two terminals, or on two hosts over TCP.
//!
//! ```text
//! # terminal 1 (any of shm://NAME, unix:///PATH, tcp://HOST:PORT)
//! cargo run --release --example kv -- server tcp://0.0.0.0:7070
//! # terminal 2 (on this host or another one)
//! cargo run --release --example kv -- client tcp://SERVER:7070 put color blue
//! cargo run --release --example kv -- client tcp://SERVER:7070 get color
//! cargo run --release --example kv -- client tcp://SERVER:7070 scan c
//! cargo run --release --example kv -- client tcp://SERVER:7070 bench
//! cargo run --release --example kv -- client tcp://SERVER:7070 shutdown
//! # or both at once, over shared memory, as CI runs it:
//! cargo run --release --example kv
//! ```
//!
//! The service is declared once with `shmlink::service!`; the same server and client
//! code runs over every transport, only the URL changes.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmlink::rpc::{Context, RpcError, Server, Sink};

/// The store's own errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum KvError {
    /// Keys are 1 to 256 bytes.
    BadKey(usize),
    /// `del` of a key that is not there.
    NotFound(String),
}

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvError::BadKey(len) => write!(f, "keys are 1 to 256 bytes, not {len}"),
            KvError::NotFound(k) => write!(f, "no key {k:?}"),
        }
    }
}

shmlink::service! {
    /// A key-value store.
    pub trait Kv {
        client KvClient;
        server KvServer;
        error KvError;
        /// Sets `key` to `value`; returns the previous value.
        fn put(kv: (String, String)) -> Option<String>;
        /// The value of `key`.
        fn get(key: String) -> Option<String>;
        /// Removes `key`; returns its value.
        fn del(key: String) -> String;
        /// Every pair whose key starts with `prefix`, in key order.
        stream fn scan(prefix: String) -> (String, String);
        /// Stops the server gracefully.
        fn shutdown(unit: ()) -> ();
    }
}

struct Store {
    map: Mutex<BTreeMap<String, String>>,
    stop: SyncSender<()>,
}

fn check(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > 256 {
        Err(KvError::BadKey(key.len()))
    } else {
        Ok(())
    }
}

impl Kv for Store {
    fn put(&self, _: &Context, (k, v): (String, String)) -> Result<Option<String>, KvError> {
        check(&k)?;
        Ok(self.map.lock().unwrap().insert(k, v))
    }

    fn get(&self, _: &Context, key: String) -> Result<Option<String>, KvError> {
        Ok(self.map.lock().unwrap().get(&key).cloned())
    }

    fn del(&self, _: &Context, key: String) -> Result<String, KvError> {
        self.map
            .lock()
            .unwrap()
            .remove(&key)
            .ok_or(KvError::NotFound(key))
    }

    fn scan(
        &self,
        _: &Context,
        prefix: String,
        sink: &mut Sink<'_, (String, String)>,
    ) -> Result<(), KvError> {
        let items: Vec<_> = self
            .map
            .lock()
            .unwrap()
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for item in &items {
            if sink.send(item).is_err() {
                break; // the client went away or gave up
            }
        }
        Ok(())
    }

    fn shutdown(&self, _: &Context, _: ()) -> Result<(), KvError> {
        let _ = self.stop.try_send(());
        Ok(())
    }
}

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn serve(url: &str) -> Res {
    let (stop, stopped) = sync_channel(1);
    let store = Store {
        map: Mutex::new(BTreeMap::new()),
        stop,
    };
    let server = Server::new(KvServer(store)).workers(4).serve(url)?;
    println!("kv server listening at {}", server.url().unwrap_or(url));
    stopped.recv()?;
    let stats = server.shutdown(Duration::from_secs(2));
    println!(
        "kv server stopped: {} connections, {} calls completed",
        stats.connections, stats.completed
    );
    Ok(())
}

fn connect(url: &str) -> Res<KvClient> {
    let started = Instant::now();
    loop {
        match KvClient::connect(url) {
            Ok(c) => return Ok(c),
            Err(e) if started.elapsed() > Duration::from_secs(10) => return Err(e.into()),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn run(client: &KvClient, args: &[String]) -> Res {
    let arg = |i: usize| -> Res<String> {
        args.get(i)
            .cloned()
            .ok_or_else(|| format!("missing argument {i} of {:?}", args[0]).into())
    };
    match args.first().map(String::as_str) {
        Some("put") => {
            let old = client.put((arg(1)?, arg(2)?)).wait()?;
            println!("put {} (was {old:?})", arg(1)?);
        }
        Some("get") => println!("{:?}", client.get(arg(1)?).wait()?),
        Some("del") => match client.del(arg(1)?).wait() {
            Ok(v) => println!("deleted {} = {v:?}", arg(1)?),
            Err(RpcError::Service(e)) => println!("the store says: {e}"),
            Err(e) => return Err(e.into()),
        },
        Some("scan") => {
            for item in client.scan(arg(1).unwrap_or_default()) {
                let (k, v) = item?;
                println!("{k} = {v}");
            }
        }
        Some("bench") => {
            let n = 20_000;
            let t = Instant::now();
            for i in 0..n {
                client.get(format!("key{}", i % 100)).wait()?;
            }
            let rt = t.elapsed() / n;
            let t = Instant::now();
            let calls: Vec<_> = (0..n)
                .map(|i| client.get(format!("key{}", i % 100)))
                .collect();
            for c in calls {
                c.wait()?;
            }
            let piped = f64::from(n) / t.elapsed().as_secs_f64();
            println!("{n} get() calls: {rt:?} per round trip; pipelined {piped:.0} calls/s");
        }
        Some("shutdown") => {
            client.shutdown(()).wait()?;
            println!("asked the server to stop");
        }
        _ => {
            return Err(
                "commands: put K V | get K | del K | scan PREFIX | bench | shutdown".into(),
            );
        }
    }
    Ok(())
}

fn main() -> Res {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("server") => serve(args.get(1).ok_or("server URL")?),
        Some("client") => {
            let client = connect(args.get(1).ok_or("client URL COMMAND ...")?)?;
            run(&client, &args[2..])
        }
        Some(_) => Err("usage: kv [server URL | client URL COMMAND ...]".into()),
        None => {
            // Both roles, two processes, over shared memory.
            let url = format!("shm://kv-example-{}", std::process::id());
            let mut server = std::process::Command::new(std::env::current_exe()?)
                .args(["server", &url])
                .spawn()?;
            let client = connect(&url)?;
            let script: &[&[&str]] = &[
                &["put", "color", "blue"],
                &["put", "colour", "red"],
                &["put", "shape", "round"],
                &["get", "color"],
                &["scan", "col"],
                &["del", "nothing"],
                &["bench"],
                &["shutdown"],
            ];
            for cmd in script {
                println!("> {}", cmd.join(" "));
                run(
                    &client,
                    &cmd.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                )?;
            }
            let status = server.wait()?;
            if !status.success() {
                return Err(format!("server exited with {status}").into());
            }
            Ok(())
        }
    }
}

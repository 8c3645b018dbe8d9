//! A market-data feed streaming quotes to two strategy processes (`strategy.rs`), with
//! an RPC control plane: run the three in three terminals, in any order, and stop or
//! `kill -9` any of them and start it again; nothing needs cleaning up.
//!
//! ```sh
//! cargo run --release --example feed                 # terminal 1
//! cargo run --release --example strategy -- 1        # terminal 2
//! cargo run --release --example strategy -- 2        # terminal 3
//! ```
//!
//! The feed sends a quote every 50 µs to each strategy's channel without waiting: a
//! strategy that falls behind (or is not running) has quotes dropped, counted, and the
//! feed goes on. Ctrl-C (or SIGTERM) closes the channels and the server and exits.

#[path = "feed_common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Control, ControlServer, Quote, now_ns, quotes};
use shmlink::channel::TrySendError;
use shmlink::rpc::{Context, NoError, Server};
use shmlink::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    dropped: AtomicU64,
}

impl Control for Arc<Stats> {
    fn stats(&self, _: &Context) -> Result<(u64, u64), NoError> {
        Ok((
            self.sent.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        ))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    common::on_signal(move || flag.store(true, Ordering::Relaxed));
    let me = std::process::id();
    let channels = [quotes(1)?, quotes(2)?];
    let mut senders = Vec::new();
    for ch in &channels {
        senders.push(ch.sender()?); // a dead feed's role is taken over
    }
    let stats = Arc::new(Stats::default());
    // A listener a killed feed left is taken over.
    let server = Server::new(ControlServer(stats.clone())).serve(common::CONTROL)?;
    println!(
        "[feed {me}] streaming to two strategies; control at {}",
        common::CONTROL
    );
    let until = common::run_for().map(|d| Instant::now() + d);
    let mut price = 10_000u64;
    while !stop.load(Ordering::Relaxed) && until.is_none_or(|u| Instant::now() < u) {
        price = price.wrapping_add(now_ns() % 7).wrapping_sub(3);
        let q = Quote {
            sent_ns: now_ns(),
            price,
            qty: 100,
            symbol: 1,
        };
        for tx in &mut senders {
            match tx.try_send(q) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) => return Err(format!("send: {e}").into()),
            }
            stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    for ch in &channels {
        ch.close();
    }
    server.shutdown(Duration::from_millis(100));
    println!(
        "[feed {me}] stopped: {} quotes sent, {} dropped",
        stats.sent.load(Ordering::Relaxed),
        stats.dropped.load(Ordering::Relaxed)
    );
    Ok(())
}

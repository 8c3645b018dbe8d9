//! A strategy: reads its quote channel from the `feed` example, places "orders"
//! against a limit shared by all strategies (a Bakery mutex in shared memory), and asks
//! the feed's control plane for its counters once a second, reconnecting when the feed
//! restarts. See `feed.rs` for how to run them.
//!
//! ```sh
//! cargo run --release --example strategy -- 1 [--for SECONDS]
//! ```

#[path = "feed_common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{ControlClient, quotes};
use shmlink::channel::RecvTimeoutError;
use shmlink::lock::{BakeryMutex, LockError};
use shmlink::rpc::ClientOptions;
use shmlink::segment::Segment;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let me = std::process::id();
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("usage: strategy N [--for SECONDS] (N = 1 or 2)")?;
    let ch = quotes(n)?;
    let mut rx = ch.receiver()?; // a dead strategy's role is taken over
    let stop = std::sync::Arc::new(shmlink::sync::atomic::AtomicBool::new(false));
    let (flag, ring) = (stop.clone(), quotes(n)?);
    common::on_signal(move || {
        flag.store(true, shmlink::sync::atomic::Ordering::Relaxed);
        ring.close(); // wakes a blocked receive in this process
    });
    let (mut limit, _) = BakeryMutex::open_or_create(Segment::builder(common::LIMIT), 8, 0u64)?;
    let opts = ClientOptions {
        reconnect: true,
        ..ClientOptions::default()
    };
    // Waits for a feed that is not up yet, and follows it across its restarts.
    let control =
        ControlClient::connect_timeout_with(common::CONTROL, &opts, Duration::from_secs(10))?;
    println!("[strategy {n} {me}] reading quotes");
    let until = common::run_for().map(|d| Instant::now() + d);
    let (mut seen, mut orders, mut last_ns) = (0u64, 0u64, 0u64);
    let mut next_report = Instant::now() + Duration::from_secs(1);
    while !stop.load(shmlink::sync::atomic::Ordering::Relaxed)
        && until.is_none_or(|u| Instant::now() < u)
    {
        let q = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(q) => q,
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => continue, // feed away
            Err(RecvTimeoutError::Closed) => break,
            Err(e) => return Err(format!("receive: {e}").into()),
        };
        if q.sent_ns < last_ns {
            return Err(format!("quote from the past: {} after {last_ns}", q.sent_ns).into());
        }
        last_ns = q.sent_ns;
        seen += 1;
        if q.price % 10 == 0 {
            // An order, within the limit shared with the other strategy.
            let mut g = match limit.lock() {
                Ok(g) => g,
                // A strategy died holding it: the count is whole (one store), go on.
                Err(LockError::OwnerDied(g)) => g,
                Err(e) => return Err(format!("limit: {}", e.without_guard()).into()),
            };
            if g.get() < common::MAX_ORDERS {
                g.update(|v| *v += 1);
                orders += 1;
            }
        }
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(1);
            match control.stats().wait() {
                Ok((sent, dropped)) => println!(
                    "[strategy {n} {me}] {seen} quotes, {orders} orders; feed: {sent} sent, {dropped} dropped"
                ),
                Err(e) => println!("[strategy {n} {me}] control plane: {e}"),
            }
        }
    }
    println!("[strategy {n} {me}] stopped after {seen} quotes and {orders} orders");
    Ok(())
}

//! The demo's channel phase: the child sends over two named channels, a plain-old-data
//! one and a serde one, first asynchronously (returns once enqueued) and then
//! synchronously (returns once the parent has taken the message).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmlink::channel::{Channel, Options, Postcard};
use shmlink::sync::WaitMode;

use super::{SPIN_LIMIT, builder};
use crate::Result;

/// A serde message of about 100 bytes encoded.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Order {
    id: u64,
    symbol: String,
    side: bool,
    price: f64,
    quantities: Vec<u32>,
}

fn order(id: u64) -> Order {
    Order {
        id,
        symbol: "ACME.XNAS".into(),
        side: id.is_multiple_of(2),
        price: 101.25 + id as f64 / 100.0,
        quantities: (0..16).map(|k| (id as u32).wrapping_mul(31) ^ k).collect(),
    }
}

/// Acknowledged sends per channel.
const ACKED: u64 = 10_000;

fn names(base: &str) -> [String; 2] {
    [format!("{base}.pod-chan"), format!("{base}.serde-chan")]
}

/// The phase's channels, created by the parent before the child starts.
pub struct Objects {
    pod: Channel<u64>,
    serde: Channel<Order, Postcard>,
}

/// Creates the phase's named channels (spin waits: the demo pins nothing, but both
/// processes are busy for the phase's few milliseconds).
pub fn create(base: &str) -> Result<Objects> {
    let [pod, serde] = names(base);
    let opts = Options::new().capacity(1024).wait_mode(WaitMode::Spin);
    Ok(Objects {
        pod: Channel::create(builder(&pod).unlink_on_drop(true), opts)?,
        serde: Channel::create(builder(&serde).unlink_on_drop(true), opts.max_message(256))?,
    })
}

/// The parent's side: receive and check everything, print rates.
pub fn parent_phase(objs: &Objects, items: u64) -> Result {
    let me = std::process::id();
    let mut rx = objs.pod.receiver()?;
    let started = Instant::now();
    for i in 0..items + ACKED {
        let v = rx.recv_timeout(SPIN_LIMIT)?;
        if v != i {
            return Err(format!("pod channel: got {v}, expected {i}").into());
        }
        if i + 1 == items {
            let t = started.elapsed();
            println!(
                "[parent {me}] channel<u64>: {items} messages sent with send() (returns once enqueued): {:.1} M msgs/s",
                items as f64 / t.as_secs_f64() / 1e6
            );
        }
    }
    let mut rx = objs.serde.receiver()?;
    let started = Instant::now();
    let orders = items / 10;
    for i in 0..orders + ACKED {
        let o = rx.recv_timeout(SPIN_LIMIT)?;
        if o != order(i) {
            return Err(format!("serde channel: order {i} came back as {o:?}").into());
        }
        if i + 1 == orders {
            let t = started.elapsed();
            println!(
                "[parent {me}] channel<Order> (serde, postcard, ~100 B): {orders} orders with send(): {:.2} M msgs/s",
                orders as f64 / t.as_secs_f64() / 1e6
            );
        }
    }
    Ok(())
}

/// The child's side: send, asynchronously then acknowledged, and time both.
pub fn child_phase(base: &str, items: u64) -> Result {
    let me = std::process::id();
    let [pod, serde] = names(base);
    let ch = Channel::<u64>::open(builder(&pod))?;
    let mut tx = ch.sender()?;
    for i in 0..items {
        tx.send_timeout(i, SPIN_LIMIT)?;
    }
    let acked = time_acked(ACKED, |i| Ok(tx.send_acked_timeout(items + i, SPIN_LIMIT)?))?;
    println!(
        "[child {me}] channel<u64>: {ACKED} sends with send_acked() (returns once the parent took it): median {} ns each",
        acked.as_nanos()
    );
    let ch = Channel::<Order, Postcard>::open(builder(&serde))?;
    let mut tx = ch.sender()?;
    let orders = items / 10;
    for i in 0..orders {
        tx.send_timeout(order(i), SPIN_LIMIT)?;
    }
    let acked = time_acked(ACKED, |i| {
        Ok(tx.send_acked_timeout(order(orders + i), SPIN_LIMIT)?)
    })?;
    println!(
        "[child {me}] channel<Order>: {ACKED} orders with send_acked(): median {} ns each",
        acked.as_nanos()
    );
    Ok(())
}

/// Runs `send(i)` for `0..n`; the median time of one.
fn time_acked(n: u64, mut send: impl FnMut(u64) -> Result) -> Result<Duration> {
    let mut samples = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t = Instant::now();
        send(i)?;
        samples.push(t.elapsed());
    }
    samples.sort_unstable();
    Ok(samples[samples.len() / 2])
}

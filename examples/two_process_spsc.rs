//! Two processes and one named SPSC ring: the parent creates the ring and consumes,
//! a child (this program re-executed with `child NAME`) opens it by name and produces.
//!
//! ```sh
//! cargo run --release --example two_process_spsc
//! ```

use std::process::Command;
use std::time::{Duration, Instant};

use shmlink::ring::{PopError, Spsc};
use shmlink::segment::{OnStale, Segment};
use shmlink::sync::WaitMode;

const COUNT: u64 = 1_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, role, name] = args.as_slice()
        && role == "child"
    {
        // Producer: open the ring by name, claim the producer role, push.
        let ring = Spsc::<u64, _>::open(Segment::builder(name))?;
        let mut tx = ring.producer()?;
        for i in 0..COUNT {
            tx.push_timeout(i, Duration::from_secs(10))
                .map_err(|e| format!("push {i}: {e}"))?;
        }
        return Ok(()); // dropping `tx` tells the consumer nothing more will come
    }

    // One fixed name: a ring a killed run left is replaced by a fresh one (this
    // example counts from 0; `OnStale::Resume`, the default, would keep its numbers).
    let name = "example-spsc".to_owned();
    let (ring, _) = Spsc::<u64, _>::open_or_create(
        Segment::builder(&name)
            .on_stale(OnStale::Replace)
            .unlink_on_drop(true),
        4096,
        WaitMode::Blocking,
    )?;
    let mut rx = ring.consumer()?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["child", &name])
        .spawn()?;

    let started = Instant::now();
    let mut expected = 0;
    loop {
        match rx.pop_timeout(Duration::from_secs(10)) {
            Ok(v) => {
                assert_eq!(v, expected, "in order, nothing lost");
                expected += 1;
            }
            // The producer left (or died) and everything it committed was read.
            Err(PopError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let status = child.wait()?;
    println!(
        "received {expected} numbers from process {} in {:?} (child {status})",
        child.id(),
        started.elapsed()
    );
    Ok(())
}

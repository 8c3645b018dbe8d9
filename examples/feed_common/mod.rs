//! What the `feed` and `strategy` examples share (each uses part of it): the quote type, the names, the
//! control service, and the shutdown on SIGINT/SIGTERM.

#![allow(dead_code)] // each example uses part of this module

use std::time::Duration;

use shmlink::channel::{Channel, ChannelError, Flavor, Options};
use shmlink::region::Pod;
use shmlink::segment::{Disposition, Segment};

/// One quote: plain old data, copied as is through shared memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod)]
#[repr(C)]
pub struct Quote {
    /// When the feed sent it (CLOCK_MONOTONIC, ns): rises across feed restarts.
    pub sent_ns: u64,
    /// Price in ticks.
    pub price: u64,
    pub qty: u32,
    pub symbol: u32,
}

/// The control plane's address.
pub const CONTROL: &str = "shm://example-feed-control";

/// The shared limit: orders placed by all strategies together.
pub const LIMIT: &str = "example-feed-limit";

/// The most orders all strategies may place together.
pub const MAX_ORDERS: u64 = 1_000_000;

shmlink::service! {
    /// The feed's control plane.
    pub trait Control {
        client ControlClient;
        server ControlServer;
        /// Quotes sent and quotes dropped (a strategy's channel was full) so far.
        fn stats() -> (u64, u64);
    }
}

/// The quote channel of strategy `n` (one per strategy: every strategy sees every
/// quote; an MPMC channel would share them out instead). Either side may create it;
/// after a crash of both sides it is resumed with the quotes not yet read.
pub fn quotes(n: u32) -> Result<Channel<Quote>, ChannelError> {
    let name = format!("example-feed-quotes-{n}");
    let opts = Options::new().capacity(4096).flavor(Flavor::Spsc);
    let (ch, how) = Channel::open_or_create(Segment::builder(&name), opts)?;
    if matches!(how, Disposition::Resumed | Disposition::Replaced) {
        println!(
            "[{}] {name}: {how:?} (left by an earlier run)",
            std::process::id()
        );
    }
    Ok(ch)
}

/// CLOCK_MONOTONIC in ns (the same clock in every process).
pub fn now_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// Blocks SIGINT and SIGTERM in this thread (call first: threads started later inherit
/// it) and runs `on_signal` on a thread of its own when one arrives.
pub fn on_signal(on_signal: impl FnOnce() + Send + 'static) {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGINT);
    set.add(nix::sys::signal::Signal::SIGTERM);
    set.thread_block().expect("block signals");
    std::thread::spawn(move || {
        if set.wait().is_ok() {
            on_signal();
        }
    });
}

/// `--for SECS` from the command line (default: run until interrupted).
pub fn run_for() -> Option<Duration> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--for")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
}

//! `shmlink bench SUITE`: cross-process measurements with same-run baselines.
//!
//! Each suite lives in a file of its own ([`rings`], [`sync`], [`channels`], [`rpc`]);
//! this module holds what they share: the child processes they run (this binary,
//! `bench-child --case CASE`), the measurement type, medians and percentiles of
//! repeated runs, and the JSON and table output.

mod channels;
mod rings;
mod rpc;
mod sync;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use shmlink::segment::{Segment, SegmentBuilder};
use shmlink::sync::atomic::{AtomicU64, Ordering};

use crate::Result;

/// The suites of `shmlink bench` (the doc lines are clap's help for each value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Suite {
    /// SPSC and MPMC rings against raw atomics, Unix sockets, rtrb, crossbeam
    Rings,
    /// Bakery lock, semaphore, seqlock against pthread, sem_t, parking_lot, RwLock
    Sync,
    /// Typed channels against ipc-channel and crossbeam-channel
    Channels,
    /// RPC over shm, Unix sockets and TCP against raw ping-pongs
    Rpc,
}

/// Runs one suite.
pub fn run(suite: Suite, json: bool, quick: bool) -> Result {
    match suite {
        Suite::Rings => rings::rings(json, quick),
        Suite::Sync => sync::sync(json, quick),
        Suite::Channels => channels::channels(json, quick),
        Suite::Rpc => rpc::rpc(json, quick),
    }
}

/// The child side of case `case`, dispatched to its suite by the case's prefix.
pub fn child(case: &str, name: &str, iters: u64) -> Result {
    if case.starts_with("sync-") {
        sync::child(case, name, iters)
    } else if case.starts_with("rpc-") {
        rpc::child(case, name, iters)
    } else if case.starts_with("chan-") {
        channels::child(case, name, iters)
    } else {
        rings::child(case, name, iters)
    }
}

/// How long a bench waits for a peer before it calls the run failed.
pub(crate) const LIMIT: Duration = Duration::from_secs(20);

/// One result line.
pub struct Measurement {
    pub(crate) name: String,
    pub(crate) metric: &'static str,
    pub(crate) value: f64,
    pub(crate) baseline: Option<(String, f64)>,
}

impl Measurement {
    pub(crate) fn new(name: impl Into<String>, metric: &'static str, value: f64) -> Self {
        Self {
            name: name.into(),
            metric,
            value,
            baseline: None,
        }
    }

    pub(crate) fn against(mut self, baseline: &Measurement) -> Self {
        self.baseline = Some((baseline.name.clone(), baseline.value));
        self
    }

    pub(crate) fn ratio(&self) -> Option<f64> {
        self.baseline.as_ref().map(|(_, b)| self.value / b)
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(crate) fn print_json(results: &[Measurement]) {
    let rows: Vec<String> = results
        .iter()
        .map(|m| {
            let mut row = format!(
                "{{\"name\": {}, \"metric\": {}, \"value\": {:.3}",
                json_string(&m.name),
                json_string(m.metric),
                m.value
            );
            if let (Some((b, _)), Some(r)) = (&m.baseline, m.ratio()) {
                row.push_str(&format!(
                    ", \"baseline\": {}, \"ratio\": {:.3}",
                    json_string(b),
                    r
                ));
            }
            row.push('}');
            row
        })
        .collect();
    println!("[\n  {}\n]", rows.join(",\n  "));
}

/// A goal on a measurement's ratio to its baseline.
#[derive(Clone, Copy)]
pub(crate) enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    pub(crate) fn describe(self, ratio: f64) -> String {
        let (sign, g, met) = match self {
            Self::AtLeast(g) => (">=", g, ratio >= g),
            Self::AtMost(g) => ("<=", g, ratio <= g),
        };
        format!(
            "  [goal {sign} {g:.1}x: {} at {ratio:.3}x]",
            if met { "met" } else { "MISSED" }
        )
    }
}

/// Prints `title`, then one row per measurement with its ratio and, where `goals`
/// has one, whether the goal was met.
pub(crate) fn print_goal_table(title: &str, results: &[Measurement], goals: &[Option<Goal>]) {
    println!("{title}");
    let width = results
        .iter()
        .map(|m| m.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<width$} {:<8} {:>14}  ratio vs baseline",
        "name", "metric", "value"
    );
    for (i, m) in results.iter().enumerate() {
        let ratio = match (&m.baseline, m.ratio()) {
            (Some((b, _)), Some(r)) => format!("{r:.2}x {b}"),
            _ => String::new(),
        };
        let goal = match (goals.get(i).copied().flatten(), m.ratio()) {
            (Some(g), Some(r)) => g.describe(r),
            _ => String::new(),
        };
        println!(
            "{:<width$} {:<8} {:>14.1}  {ratio}{goal}",
            m.name, m.metric, m.value
        );
    }
}

/// Pins the calling process to `cpu` if the machine has it; returns whether it did.
pub fn pin(cpu: usize) -> bool {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_err() {
        return false;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_ok()
}

pub(crate) fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub(crate) fn builder(name: &str) -> SegmentBuilder {
    Segment::builder(name).timeout(Duration::from_secs(5))
}

/// Latency percentiles (ns) after dropping the first tenth as warm-up.
pub(crate) fn percentiles(mut samples: Vec<Duration>) -> [f64; 3] {
    let warm = samples.len() / 10;
    samples.drain(..warm);
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize].as_nanos() as f64;
    [at(0.5), at(0.99), at(0.999)]
}

pub(crate) struct Runner {
    pub(crate) base: String,
    pub(crate) seq: u32,
    pub(crate) pinned: bool,
}

impl Runner {
    pub(crate) fn name(&mut self, tag: &str) -> String {
        self.seq += 1;
        format!("{}.{}.{tag}", self.base, self.seq)
    }

    pub(crate) fn child(&self, case: &str, name: &str, iters: u64) -> Result<Child> {
        Ok(Command::new(std::env::current_exe()?)
            .args([
                "bench-child",
                "--case",
                case,
                "--name",
                name,
                "--iters",
                &iters.to_string(),
            ])
            .spawn()?)
    }
}

pub(crate) fn finish(mut child: Child) -> Result {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return if status.success() {
                Ok(())
            } else {
                Err(format!("bench child failed: {status}").into())
            };
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            return Err("bench child hung".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub(crate) fn spin_until(word: &AtomicU64, want: u64) -> Result {
    let started = Instant::now();
    let mut polls = 0u32;
    while word.load(Ordering::Acquire) != want {
        std::hint::spin_loop();
        polls = polls.wrapping_add(1);
        if polls % (1 << 20) == 0 && started.elapsed() > LIMIT {
            return Err("peer stopped answering".into());
        }
    }
    Ok(())
}

/// The median of a non-empty sample set.
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// In-process two-thread throughput of a baseline queue (pinned like the processes).
pub(crate) fn in_process(items: u64, run: fn(u64) -> Box<dyn FnOnce() + Send>) -> f64 {
    let consumer = run(items);
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            pin(1);
            consumer();
        });
    });
    items as f64 / started.elapsed().as_secs_f64()
}

/// One batch of a case: `iters` calls, returning ns per call.
type Case<'a> = Box<dyn FnMut(u64) -> Result<f64> + 'a>;

/// Runs one warm-up batch of every case, then `rounds` rounds of one batch each, and
/// returns every case's median.
fn interleaved(rounds: usize, iters: u64, cases: &mut [Case<'_>]) -> Result<Vec<f64>> {
    for case in cases.iter_mut() {
        case(iters)?;
    }
    let mut samples = vec![Vec::with_capacity(rounds); cases.len()];
    for _ in 0..rounds {
        for (case, s) in cases.iter_mut().zip(&mut samples) {
            s.push(case(iters)?);
        }
    }
    Ok(samples.into_iter().map(median).collect())
}

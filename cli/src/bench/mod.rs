//! `shmlink bench SUITE`: cross-process measurements with same-run baselines.
//!
//! Each suite lives in a file of its own ([`rings`], [`sync`], [`channels`], [`rpc`],
//! [`dlock`]); this module holds what they share: the child processes they run (this
//! binary, `bench-child --case CASE`), the measurement type, medians and percentiles of
//! repeated runs, and the JSON and table output.

mod channels;
mod dlock;
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
    /// Distributed lock, 3/5/9 nodes in one process, against a central server and Bakery
    Dlock,
}

/// Runs one suite.
pub fn run(suite: Suite, json: bool, quick: bool) -> Result {
    match suite {
        Suite::Rings => rings::rings(json, quick),
        Suite::Sync => sync::sync(json, quick),
        Suite::Channels => channels::channels(json, quick),
        Suite::Rpc => rpc::rpc(json, quick),
        Suite::Dlock => dlock::dlock(json, quick),
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

// Running the cases: child processes, pinning, segments, time limits.

/// How long a bench waits for a peer before it calls the run failed.
pub(crate) const LIMIT: Duration = Duration::from_secs(20);

/// One suite's run: names for its segments and child processes to spawn.
pub(crate) struct Runner {
    /// `{prefix}-{pid}`: the start of every segment name of the run.
    base: String,
    /// The number of the last name handed out.
    seq: u32,
    /// Whether this process is pinned to core 0 (its children pin themselves to 1).
    pinned: bool,
}

impl Runner {
    /// Pins this process to core 0 if the machine has two cores or more, and names
    /// the run's segments `{prefix}-{pid}.{seq}.{tag}`.
    pub(crate) fn start(prefix: &str) -> Self {
        let pinned = online_cpus() >= 2 && pin(0);
        Self {
            base: format!("{prefix}-{}", std::process::id()),
            seq: 0,
            pinned,
        }
    }

    /// Where the table says the processes ran.
    pub(crate) fn placement(&self, parent: &str, child: &str) -> String {
        if self.pinned {
            format!("{parent} on core 0, {child} on core 1")
        } else {
            "processes not pinned".to_owned()
        }
    }

    /// A name no other segment of the run has, ending in `tag`.
    pub(crate) fn name(&mut self, tag: &str) -> String {
        self.seq += 1;
        format!("{}.{}.{tag}", self.base, self.seq)
    }

    /// Spawns this binary as `bench-child` running `case` on `name` for `iters`.
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

/// Waits for `child` to exit, for at most [`LIMIT`] (then kills it); an error unless
/// it exited successfully.
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

/// Spins until `word` reads `want` (Acquire: pairs with the peer's Release store),
/// for at most [`LIMIT`].
pub(crate) fn spin_until(word: &AtomicU64, want: u64) -> Result {
    let started = Instant::now();
    let mut polls = 0u32;
    while word.load(Ordering::Acquire) != want {
        std::hint::spin_loop();
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(1 << 20) && started.elapsed() > LIMIT {
            return Err("peer stopped answering".into());
        }
    }
    Ok(())
}

/// Pins the calling process to `cpu` if the machine has it; returns whether it did.
pub fn pin(cpu: usize) -> bool {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_err() {
        return false;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_ok()
}

/// The CPUs this process may run on.
fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A segment builder for `name` that waits up to 5 s for a creator to finish.
pub(crate) fn builder(name: &str) -> SegmentBuilder {
    Segment::builder(name).timeout(Duration::from_secs(5))
}

// Statistics of repeated runs.

/// Latency percentiles (ns) after dropping the first tenth as warm-up.
pub(crate) fn percentiles(mut samples: Vec<Duration>) -> [f64; 3] {
    let warm = samples.len() / 10;
    samples.drain(..warm);
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize].as_nanos() as f64;
    [at(0.5), at(0.99), at(0.999)]
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

// Output: the measurements, as JSON or as a table.

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

/// `s` as a JSON string literal.
pub(crate) fn json_string(s: &str) -> String {
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

/// Prints `results` as a JSON array of `{name, metric, value}` objects, with
/// `baseline` (its name) and `ratio` where a measurement has a baseline.
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

/// The widest line a bench table prints (the goals and the long explanations are in
/// docs/benchmarks.md; the JSON keeps every name whole).
const COLUMNS: usize = 100;

/// A goal on a measurement's ratio to its baseline (docs/benchmarks.md says what each
/// suite's goals are and where they come from).
#[derive(Clone, Copy)]
pub(crate) enum Goal {
    AtLeast(f64),
    AtMost(f64),
    /// Between the two bounds, both included.
    Within(f64, f64),
}

impl Goal {
    /// One line on the goal of row `row` (right-aligned to `width`): the bound, met or
    /// missed, at what ratio.
    fn describe(self, row: usize, width: usize, ratio: f64) -> String {
        let (bound, met) = match self {
            Self::AtLeast(g) => (format!(">= {g:.1}x"), ratio >= g),
            Self::AtMost(g) => (format!("<= {g:.1}x"), ratio <= g),
            Self::Within(lo, hi) => (format!("in {lo:.1}x..{hi:.1}x"), (lo..=hi).contains(&ratio)),
        };
        format!(
            "  row {row:>width$}: ratio {bound}, {} at {ratio:.3}x",
            if met { "met" } else { "MISSED" }
        )
    }
}

/// Prints `title` and `legend` (what is better), then one numbered row per measurement
/// (see [`table`]), then, for every row that `goals` gives one, whether the goal was
/// met.
pub(crate) fn print_goal_table(
    title: &str,
    legend: &str,
    results: &[Measurement],
    goals: &[Option<Goal>],
) {
    for line in table(title, legend, results, goals) {
        println!("{line}");
    }
}

/// The lines [`print_goal_table`] prints: a row per measurement with its name,
/// metric, value and, against a baseline, the ratio and the baseline's row number.
///
/// Lines stay within [`COLUMNS`]: a name too long for its column goes on a line of
/// its own, the row's numbers on the next, and a baseline that is not a row of the
/// table is named on a line under its row.
fn table(
    title: &str,
    legend: &str,
    results: &[Measurement],
    goals: &[Option<Goal>],
) -> Vec<String> {
    let mut out = vec![
        title.to_owned(),
        format!("{legend}; ratio = value / value of the row under \"vs\""),
    ];
    let values: Vec<String> = results.iter().map(|m| format!("{:.1}", m.value)).collect();
    let ratios: Vec<String> = results
        .iter()
        .map(|m| m.ratio().map_or_else(String::new, |r| format!("{r:.2}x")))
        .collect();
    let row_of = |name: &str| results.iter().position(|m| m.name == name).map(|i| i + 1);
    // Column widths: the widest cell or the heading; the name takes what is left.
    let widest = |cells: &mut dyn Iterator<Item = usize>, heading: &str| {
        cells.max().unwrap_or(0).max(heading.len())
    };
    let iw = results.len().to_string().len().max(2);
    let mw = widest(&mut results.iter().map(|m| m.metric.len()), "metric");
    let vw = widest(&mut values.iter().map(String::len), "value");
    let rw = widest(&mut ratios.iter().map(String::len), "ratio");
    let fixed = iw + 1 + 1 + mw + 1 + vw + 2 + rw + 1 + iw;
    let nw = widest(&mut results.iter().map(|m| m.name.len()), "name")
        .min(COLUMNS.saturating_sub(fixed).max("name".len()));
    let line = |i: &str, name: &str, metric: &str, value: &str, ratio: &str, vs: &str| {
        format!("{i:>iw$} {name:<nw$} {metric:<mw$} {value:>vw$}  {ratio:>rw$} {vs:>iw$}")
            .trim_end()
            .to_owned()
    };
    out.push(line("#", "name", "metric", "value", "ratio", "vs"));
    for (k, m) in results.iter().enumerate() {
        let i = (k + 1).to_string();
        let (vs, stray) = match &m.baseline {
            Some((b, _)) => match row_of(b) {
                Some(row) => (row.to_string(), None),
                None => ("*".to_owned(), Some(b)),
            },
            None => (String::new(), None),
        };
        if m.name.len() > nw {
            out.push(format!("{i:>iw$} {}", m.name));
            out.push(line("", "", m.metric, &values[k], &ratios[k], &vs));
        } else {
            out.push(line(&i, &m.name, m.metric, &values[k], &ratios[k], &vs));
        }
        if let Some(b) = stray {
            out.push(format!("{:iw$}   * vs {b}", ""));
        }
    }
    let goals: Vec<String> = goals
        .iter()
        .zip(results)
        .enumerate()
        .filter_map(|(k, (g, m))| Some(g.as_ref()?.describe(k + 1, iw, m.ratio()?)))
        .collect();
    if !goals.is_empty() {
        out.push("goals (docs/benchmarks.md):".to_owned());
        out.extend(goals);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 66-character names of `bench channels` (the longest any suite prints) fit
    /// on their rows next to values and ratios of realistic widths.
    #[test]
    fn longest_names_fit_on_their_rows() {
        let base = Measurement::new("ipc-channel, 8 B (baseline)", "msgs/s", 262_144.0);
        let long = "channel throughput Quote 100 B SPSC spin, send_acked vs ipc stream";
        let measured = Measurement::new(long, "msgs/s", 32_123_456.7).against(&base);
        let results = [base, measured];
        let lines = table(
            "title",
            "legend",
            &results,
            &[None, Some(Goal::AtLeast(10.0))],
        );
        for l in &lines {
            assert!(l.len() <= COLUMNS, "{} columns: {l}", l.len());
        }
        let row = lines
            .iter()
            .find(|l| l.contains(long))
            .expect("the long row");
        assert!(
            row.starts_with(" 2 ") && row.ends_with("122.54x  1"),
            "{row}"
        );
        let last = lines.last().map(String::as_str);
        assert_eq!(last, Some("  row  2: ratio >= 10.0x, met at 122.541x"));
    }

    /// Every line fits [`COLUMNS`] whatever the names and values: a name too long for
    /// its column goes on a line of its own, a baseline outside the table under its
    /// row.
    #[test]
    fn every_line_fits_the_columns() {
        let base = Measurement::new("a baseline (baseline)", "msgs/s", 1.0);
        let outside = Measurement::new("x".repeat(80), "msgs/s", 3.0);
        let results = vec![
            Measurement::new("n".repeat(66), "% of acq", 123_456_789_012.5).against(&base),
            Measurement::new("m".repeat(95), "writes/s", 1e12).against(&outside),
            base,
        ];
        let goals = [Some(Goal::AtLeast(10.0)), Some(Goal::AtMost(1.2)), None];
        let lines = table("title", "lower is better for ns", &results, &goals);
        for l in &lines {
            assert!(l.len() <= COLUMNS, "{} columns: {l}", l.len());
        }
        assert!(lines.iter().any(|l| l == &format!(" 1 {}", "n".repeat(66))));
        assert!(
            lines.iter().any(|l| l.ends_with(" 3")),
            "row 1 is against row 3"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.trim_start() == format!("* vs {}", "x".repeat(80)))
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("row  1: ratio >= 10.0x, met at"))
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("row  2: ratio <= 1.2x, MISSED at"))
        );
    }

    /// A range goal says which bounds and whether the ratio fell between them.
    #[test]
    fn range_goals_name_both_bounds() {
        let k = Measurement::new("quorum size K", "nodes", 3.0);
        let results = vec![
            Measurement::new("messages, uncontended", "msgs/CS", 15.0).against(&k),
            Measurement::new("messages, contended", "msgs/CS", 21.0).against(&k),
            k,
        ];
        let goal = Some(Goal::Within(3.0, 6.0));
        let lines = table("title", "legend", &results, &[goal, goal, None]);
        let n = lines.len();
        assert_eq!(lines[n - 2], "  row  1: ratio in 3.0x..6.0x, met at 5.000x");
        assert_eq!(
            lines[n - 1],
            "  row  2: ratio in 3.0x..6.0x, MISSED at 7.000x"
        );
    }
}

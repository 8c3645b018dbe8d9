//! `shmlink`: the demo, segment listing and cleanup, benches, and the lock node.

mod bench;
mod demo;
mod inspect;
mod lockd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shmlink::segment::{self, Kind, Status};

#[derive(Parser)]
#[command(
    name = "shmlink",
    version,
    about = "Inter-process communication over named shared memory"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Two processes talking over a named segment: what they did and how fast.
    Demo {
        /// Ping-pong round trips to time.
        #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u32).range(1..))]
        round_trips: u32,
        /// Sequence numbers to stream through the SPSC ring.
        #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
        stream_items: u64,
    },
    /// List every shmlink segment: name, kind, size, creator, alive/idle/stale; and
    /// the locks held and waited for on this host's lock node, if one runs.
    Ls {
        /// The host's lock node (its `local` URL); default: the one in --config, or
        /// the default local URL.
        #[arg(long)]
        node: Option<String>,
        /// A lock node configuration file naming the node's local URL.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run a distributed-lock node (Maekawa's quorum algorithm with leases and fencing
    /// tokens) until SIGINT or SIGTERM.
    Lockd {
        /// The node's configuration file (see docs/dlock.md).
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a command while holding a distributed lock, like flock(1); the command gets
    /// the fencing token in SHMLINK_FENCING_TOKEN, and is terminated if the lock is lost.
    Lock {
        /// The lock's name.
        name: String,
        /// The configuration file of this host's node.
        #[arg(long)]
        config: PathBuf,
        /// Give up after this many seconds (default: wait as long as it takes).
        #[arg(long)]
        timeout: Option<f64>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// One object's state: ring positions, depth, role holders and their liveness;
    /// a lock's holder and waiters; a semaphore's value; a seqlock's version.
    Inspect {
        /// The segment name.
        name: String,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A ring's rates, refreshed every second until interrupted, like `top`:
    /// messages per second pushed and popped, depth, lag, role holders.
    Watch {
        /// The ring's segment name.
        name: String,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0)]
        every: f64,
        /// Stop after this many refreshes (default: until interrupted).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Remove a segment by name (processes attached keep their mapping).
    Rm {
        /// Segment names.
        names: Vec<String>,
        /// Remove only if stale; with no names, remove every stale segment.
        #[arg(long)]
        stale: bool,
    },
    /// Cross-process measurements with same-run baselines.
    Bench {
        /// The suite to run.
        #[arg(value_enum)]
        suite: bench::Suite,
        /// Print a JSON array of {name, metric, value, baseline, ratio}.
        #[arg(long)]
        json: bool,
        /// A tenth of the iterations (smoke runs).
        #[arg(long)]
        quick: bool,
    },
    /// Internal: the child side of `bench`.
    #[command(hide = true)]
    BenchChild {
        #[arg(long)]
        case: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        iters: u64,
    },
    /// Internal: the child side of `demo`.
    #[command(hide = true)]
    DemoChild {
        #[arg(long)]
        name: String,
        #[arg(long)]
        round_trips: u32,
        #[arg(long)]
        stream_items: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo {
            round_trips,
            stream_items,
        } => demo::parent(round_trips, stream_items),
        Command::DemoChild {
            name,
            round_trips,
            stream_items,
        } => demo::child(&name, round_trips, stream_items),
        Command::Bench { suite, json, quick } => bench::run(suite, json, quick),
        Command::BenchChild { case, name, iters } => bench::child(&case, &name, iters),
        Command::Ls { node, config } => ls(node, config),
        Command::Lockd { config } => lockd::lockd(&config),
        Command::Lock {
            name,
            config,
            timeout,
            command,
        } => {
            return match lockd::lock(&name, &config, &command, timeout) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("shmlink lock: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Rm { names, stale } => rm(&names, stale),
        Command::Inspect { name, json } => inspect::inspect(&name, json),
        Command::Watch { name, every, count } => {
            match std::time::Duration::try_from_secs_f64(every) {
                Ok(every) if !every.is_zero() => inspect::watch(&name, every, count),
                _ => Err(format!("--every {every}: not a positive number of seconds").into()),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmlink: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn ls(node: Option<String>, config: Option<PathBuf>) -> Result {
    let url = match (node, config) {
        (Some(url), _) => Some(url),
        (None, Some(path)) => Some(shmlink::dlock::NodeConfig::load(path)?.local),
        (None, None) => None,
    };
    segments()?;
    match url {
        Some(url) => lockd::ls_node(&url),
        // The default node shows only if one answers there.
        None => lockd::ls_default_node(),
    }
    Ok(())
}

fn segments() -> Result {
    let all = segment::list()?;
    if all.is_empty() {
        println!("no shmlink segments in /dev/shm");
        return Ok(());
    }
    println!(
        "{:<32} {:>6} {:<12} {:>12} {:>8} {:>8}  STATUS",
        "NAME", "OWNER", "KIND", "BYTES", "CREATOR", "ATTACHED"
    );
    let holders = flock_holders();
    for info in all {
        let (kind, creator, attached) = match &info.header {
            Some(h) => (
                kind_label(h.kind, h.fingerprint),
                h.creator.pid.to_string(),
                attached_label(h.attached, live_attached(&holders, info.name.path())),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let status = match &info.status {
            Status::Stale(s) => format!("stale ({s})"),
            Status::Invalid(e) => format!("invalid ({e})"),
            other => other.label().to_owned(),
        };
        println!(
            "{:<32} {:>6} {:<12} {:>12} {:>8} {:>8}  {status}",
            info.name.as_str(),
            info.owner_uid,
            kind,
            info.file_size,
            creator,
            attached
        );
        let is_lock = info.header.as_ref().is_some_and(|h| {
            matches!(
                Kind::from_code(h.kind),
                Some(Kind::BakeryLock | Kind::BakeryMutex)
            )
        });
        // A stale lock too: read as the crash left it, never changed.
        if is_lock && matches!(info.status, Status::Alive | Status::Idle | Status::Stale(_)) {
            match shmlink::lock::bakery_status(info.name.as_str()) {
                Ok(lock) => println!("    {}", describe_lock(&lock)),
                Err(e) => println!("    (lock state unreadable: {e})"),
            }
        }
    }
    Ok(())
}

/// The KIND column: the segment kind, or `listener` for a shared-memory RPC or
/// transport listener (an MPMC accept queue with the listener's fingerprint).
pub(crate) fn kind_label(kind: u32, fingerprint: u64) -> String {
    match Kind::from_code(kind) {
        Some(Kind::MpmcRing) if fingerprint == shmlink::transport::shm::listener_fingerprint() => {
            "listener".to_owned()
        }
        Some(k) => k.to_string(),
        None => format!("#{kind}"),
    }
}

/// The ATTACHED column: the header's count of processes attached and not cleanly
/// detached, and how many of them are gone, when that is known (`live`: processes
/// holding the segment's lock, from `/proc/locks`).
fn attached_label(counted: u32, live: Option<usize>) -> String {
    match live {
        Some(live) if (counted as usize) > live => {
            format!("{counted} ({} dead)", counted as usize - live)
        }
        _ => counted.to_string(),
    }
}

/// The `flock` locks held on every file: (device, inode) -> the holding pid of each,
/// from `/proc/locks` (empty if it cannot be read). One lock per attachment: a process
/// attached twice (two handles) holds two, and is listed twice.
pub(crate) fn flock_holders() -> std::collections::HashMap<(u64, u64), Vec<u32>> {
    let mut out: std::collections::HashMap<_, Vec<u32>> = std::collections::HashMap::new();
    let Ok(text) = std::fs::read_to_string("/proc/locks") else {
        return out;
    };
    for line in text.lines() {
        // "1: FLOCK  ADVISORY  READ  1234 00:19:5678 0 EOF" (a blocked waiter has
        // "->" after the number: it holds nothing yet).
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"FLOCK") {
            continue;
        }
        let (Some(pid), Some(place)) = (fields.get(4), fields.get(5)) else {
            continue;
        };
        let mut parts = place.split(':');
        let (Some(major), Some(minor), Some(ino)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (Ok(major), Ok(minor), Ok(ino), Ok(pid)) = (
            u64::from_str_radix(major, 16),
            u64::from_str_radix(minor, 16),
            ino.parse::<u64>(),
            pid.parse::<u32>(),
        ) else {
            continue;
        };
        out.entry((nix::sys::stat::makedev(major, minor), ino))
            .or_default()
            .push(pid);
    }
    out
}

/// How many live attachments the segment at `path` has (`None` if unknown): the
/// file locks held on it, one per attachment, so that it compares with the header's
/// count (a process attached twice is two, not one).
pub(crate) fn live_attached(
    holders: &std::collections::HashMap<(u64, u64), Vec<u32>>,
    path: std::path::PathBuf,
) -> Option<usize> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(holders.get(&(meta.dev(), meta.ino())).map_or(0, Vec::len))
}

/// What a Bakery participant is doing: `holding`, `waiting` (it has a ticket) or
/// `idle`.
pub(crate) fn participant_state(p: &shmlink::lock::Participant) -> &'static str {
    if p.holding {
        "holding"
    } else if p.ticket != 0 {
        "waiting"
    } else {
        "idle"
    }
}

/// One line on a Bakery lock: holder and participants by pid, dead ones marked.
fn describe_lock(lock: &shmlink::lock::BakeryStatus) -> String {
    let dead = |p: &shmlink::lock::Participant| {
        if p.liveness.is_dead() { " (dead)" } else { "" }
    };
    let holder = match lock.participants.iter().find(|p| p.holding) {
        Some(p) => format!("lock held by pid {}{}", p.pid, dead(p)),
        None => lock.holder.map_or_else(
            || "lock free".to_owned(),
            |pid| format!("lock held by pid {pid}"),
        ),
    };
    let parts: Vec<String> = lock
        .participants
        .iter()
        .map(|p| {
            let state = participant_state(p);
            format!("slot {} pid {} {state}{}", p.slot, p.pid, dead(p))
        })
        .collect();
    if parts.is_empty() {
        return format!("{holder}; no participants");
    }
    format!("{holder}; participants: {}", parts.join(", "))
}

fn nix_euid() -> u32 {
    // Segment names live in the namespace of the effective uid.
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(u32::MAX)
}

fn rm(names: &[String], stale_only: bool) -> Result {
    if names.is_empty() {
        if !stale_only {
            return Err(
                "name a segment to remove, or pass --stale to remove every stale one".into(),
            );
        }
        let me = nix_euid();
        let mut removed = 0;
        for info in segment::list()? {
            if !matches!(info.status, Status::Stale(_)) {
                continue;
            }
            if info.owner_uid != me {
                println!("skipped stale {} of uid {}", info.name, info.owner_uid);
                continue;
            }
            match segment::remove_stale(info.name.as_str()) {
                Ok(true) => {
                    println!("removed stale {}", info.name);
                    removed += 1;
                }
                Ok(false) => println!("kept {}: no longer stale", info.name),
                Err(e) => eprintln!("shmlink: {}: {e}", info.name),
            }
        }
        println!("{removed} stale segment(s) removed");
        return Ok(());
    }
    for name in names {
        if stale_only {
            if segment::remove_stale(name)? {
                println!("removed stale {name}");
            } else {
                println!("kept {name}: not stale");
            }
        } else {
            let alive = matches!(segment::inspect(name).map(|i| i.status), Ok(Status::Alive));
            segment::unlink(name)?;
            if alive {
                println!("removed {name} (still attached processes keep their mapping)");
            } else {
                println!("removed {name}");
            }
        }
    }
    Ok(())
}

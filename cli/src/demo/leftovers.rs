//! What a demo run leaves in `/dev/shm`, and its removal: the demo's own names only.
//!
//! Every name a run makes starts with `demo-PID` (then nothing, `.` or `-`), except
//! the distributed lock's host segments, which are named by hashes of the run's node
//! URLs ([`super::dlock::host_segments`]). A run removes its names when it ends or is
//! stopped with SIGINT or SIGTERM; one killed with SIGKILL cannot, so each run first
//! removes the names of earlier runs whose process is gone.

use std::collections::BTreeSet;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::Pid;
use shmlink::segment;

/// The pid of the run that made segment `name`, if the demo made it.
fn run_of(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("demo-")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let pid = rest[..digits].parse().ok()?;
    match rest.as_bytes().get(digits) {
        None | Some(b'.' | b'-') => Some(pid),
        Some(_) => None,
    }
}

/// Whether process `pid` is gone (alive or unknown: not gone).
fn gone(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    kill(Pid::from_raw(raw), None) == Err(Errno::ESRCH)
}

/// Removes every name of the runs `pids`; the number removed.
fn remove_runs(pids: &BTreeSet<u32>) -> usize {
    let Ok(all) = segment::list() else {
        return 0;
    };
    let mut removed = 0;
    let names = all.iter().map(|info| info.name.as_str().to_owned());
    for name in names.filter(|n| run_of(n).is_some_and(|p| pids.contains(&p))) {
        removed += usize::from(segment::unlink(&name).is_ok());
    }
    for pid in pids {
        let base = format!("demo-{pid}");
        for name in super::dlock::host_segments(&base) {
            removed += usize::from(segment::unlink(&name).is_ok());
        }
        // The RPC phase's Unix socket, and the lock phase's configuration directory.
        let socket = std::env::temp_dir().join(super::rpc::socket_file(&base));
        removed += usize::from(std::fs::remove_file(socket).is_ok());
        let _ = std::fs::remove_dir_all(super::dlock::config_dir(&base));
    }
    removed
}

/// Removes what earlier demo runs that are gone (killed with SIGKILL, say) left;
/// the number of names removed.
pub fn sweep_dead_runs() -> usize {
    let Ok(all) = segment::list() else {
        return 0;
    };
    let me = std::process::id();
    // Runs known by a segment, a socket or a configuration directory of theirs.
    let files: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    let dead: BTreeSet<u32> = all
        .iter()
        .map(|info| info.name.as_str())
        .chain(
            files
                .iter()
                .map(|f| f.strip_prefix("shmlink-").unwrap_or(f)),
        )
        .filter_map(run_of)
        .filter(|&p| p != me && gone(p))
        .collect();
    remove_runs(&dead)
}

/// Removes this run's names when SIGINT or SIGTERM arrives, then exits with status
/// 130 (the nodes, watching this process, stop on their own). Call before any thread
/// starts: the signals are blocked in the calling thread, every thread started later
/// inherits that, and one thread takes them with `sigwait`.
pub fn remove_on_signal() -> crate::Result {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block()?;
    std::thread::Builder::new()
        .name("demo-signals".into())
        .spawn(move || {
            let Ok(signal) = set.wait() else { return };
            let removed = remove_runs(&BTreeSet::from([std::process::id()]));
            eprintln!("shmlink demo: {signal:?}: removed {removed} name(s) of this run");
            std::process::exit(130);
        })?;
    Ok(())
}

/// For the demo's child: once its parent (the run) is gone, removes the run's names
/// and exits, rather than wait for a parent that will never come (checked every
/// 100 ms).
pub fn exit_with_parent() -> crate::Result {
    let parent = nix::unistd::getppid();
    std::thread::Builder::new()
        .name("demo-parent-watch".into())
        .spawn(move || {
            while nix::unistd::getppid() == parent {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let Ok(pid) = u32::try_from(parent.as_raw()) else {
                std::process::exit(1)
            };
            let removed = remove_runs(&BTreeSet::from([pid]));
            eprintln!("shmlink demo-child: the demo ({pid}) is gone: removed {removed} name(s)");
            std::process::exit(1);
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::run_of;

    #[test]
    fn only_the_demos_names_are_its_own() {
        assert_eq!(run_of("demo-42"), Some(42));
        assert_eq!(run_of("demo-42.stream"), Some(42));
        assert_eq!(run_of("demo-42-lockd-0"), Some(42));
        assert_eq!(run_of("demo-42x"), None);
        assert_eq!(run_of("demo-"), None);
        assert_eq!(run_of("demox-42"), None);
        assert_eq!(run_of("shmlink-dlock-1-2"), None);
    }
}

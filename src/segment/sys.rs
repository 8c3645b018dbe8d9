//! Thin wrappers over the system calls behind named segments (POSIX shm, flock, mmap,
//! /proc). The only file of the crate besides `sync` that talks to the OS for segments.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, SystemTime};

use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::{Mode, fchmod, fstat};

use super::header::ProcessId;
use super::name::SegmentName;

/// The result of `fstat` on a segment's descriptor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileInfo {
    pub size: u64,
    /// Bytes of storage allocated to the file (`st_blocks * 512`); on tmpfs, the
    /// memory behind it.
    pub allocated: u64,
    pub uid: u32,
    pub nlink: u64,
    pub dev: u64,
    pub ino: u64,
    /// Time since the last status change (creation or truncation).
    pub age: Duration,
}

fn owner_only() -> Mode {
    Mode::S_IRUSR | Mode::S_IWUSR
}

/// `shm_open(O_CREAT | O_EXCL | O_RDWR, 0600)` (in a private directory: `open` with
/// the same flags and `O_NOFOLLOW`), then `fchmod(0600)` so the mode does not depend on
/// the umask.
pub(crate) fn create_exclusive(name: &SegmentName) -> Result<File, Errno> {
    let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_CLOEXEC;
    let fd: OwnedFd = match name.dir() {
        None => nix::sys::mman::shm_open(name.os_name(), flags, owner_only())?,
        Some(_) => nix::fcntl::open(&name.path(), flags | OFlag::O_NOFOLLOW, owner_only())?,
    };
    if let Err(e) = fchmod(fd.as_fd(), owner_only()) {
        let _ = unlink(name);
        return Err(e);
    }
    Ok(File::from(fd))
}

/// `shm_open(O_RDWR)` of an existing object (in a private directory: `open` with
/// `O_NOFOLLOW`).
pub(crate) fn open_existing(name: &SegmentName) -> Result<File, Errno> {
    let flags = OFlag::O_RDWR | OFlag::O_CLOEXEC;
    let fd = match name.dir() {
        None => nix::sys::mman::shm_open(name.os_name(), flags, Mode::empty())?,
        Some(_) => nix::fcntl::open(&name.path(), flags | OFlag::O_NOFOLLOW, Mode::empty())?,
    };
    Ok(File::from(fd))
}

pub(crate) fn unlink(name: &SegmentName) -> Result<(), Errno> {
    match name.dir() {
        None => nix::sys::mman::shm_unlink(name.os_name()),
        Some(_) => nix::unistd::unlink(&name.path()),
    }
}

/// Owner of the object the name refers to right now, if any (`lstat`: a symlink
/// counts as the object).
pub(crate) fn owner_of(name: &SegmentName) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(name.path()).ok().map(|m| m.uid())
}

/// Owner and permission bits of the directory `dir` (following symlinks);
/// `ENOTDIR` if it is something else.
pub(crate) fn dir_owner_mode(dir: &std::path::Path) -> Result<(u32, u32), Errno> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    if !meta.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    Ok((meta.uid(), meta.mode() & 0o7777))
}

pub(crate) fn file_info(file: &File) -> Result<FileInfo, Errno> {
    let st = fstat(file.as_fd())?;
    let ctime = SystemTime::UNIX_EPOCH
        + Duration::new(
            u64::try_from(st.st_ctime).unwrap_or(0),
            u32::try_from(st.st_ctime_nsec).unwrap_or(0),
        );
    Ok(FileInfo {
        size: u64::try_from(st.st_size).unwrap_or(0),
        allocated: u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512),
        uid: st.st_uid,
        nlink: st.st_nlink,
        dev: st.st_dev,
        ino: st.st_ino,
        age: SystemTime::now().duration_since(ctime).unwrap_or_default(),
    })
}

/// `(dev, ino)` of the object the name refers to right now, if any.
pub(crate) fn name_identity(name: &SegmentName) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(name.path())
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Sizes the object and allocates every page of it, so that a full `/dev/shm` is an
/// `ENOSPC` here rather than a SIGBUS at the first write, and so that openers can
/// check that a segment is fully backed (`FileInfo::allocated`): a sparse one was
/// not made by us. `Err(op, errno)` names the call that failed.
pub(crate) fn size_and_reserve(file: &File, len: u64) -> Result<(), (&'static str, Errno)> {
    let len = i64::try_from(len).map_err(|_| ("ftruncate", Errno::EFBIG))?;
    nix::unistd::ftruncate(file.as_fd(), len).map_err(|e| ("ftruncate", e))?;
    if len > 0 {
        // No fallback for filesystems that cannot allocate (glibc emulates it where
        // the kernel lacks it): a lazily backed segment would be refused by every
        // opener anyway.
        loop {
            match nix::fcntl::posix_fallocate(file.as_fd(), 0, len) {
                // tmpfs stops a long allocation for a signal; what it did is kept.
                Err(Errno::EINTR) => continue,
                r => break r.map_err(|e| ("posix_fallocate", e))?,
            }
        }
    }
    Ok(())
}

/// Maps `len` bytes of `file`, shared and read-write.
pub(crate) fn map(file: &File, len: usize) -> std::io::Result<MmapRaw> {
    MmapOptions::new().len(len).map_raw(file)
}

/// Non-blocking `flock`. `Err((file, EWOULDBLOCK))` means someone holds a conflicting
/// lock.
pub(crate) fn try_lock(file: File, exclusive: bool) -> Result<Flock<File>, (File, Errno)> {
    let arg = if exclusive {
        FlockArg::LockExclusiveNonblock
    } else {
        FlockArg::LockSharedNonblock
    };
    let mut file = file;
    loop {
        match Flock::lock(file, arg) {
            Err((f, Errno::EINTR)) => file = f,
            other => return other,
        }
    }
}

pub(crate) fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Wall-clock nanoseconds since the Unix epoch.
pub(crate) fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

use crate::process::proc_stat;

/// Identity of the calling process.
pub(crate) fn current_process() -> ProcessId {
    let pid = std::process::id();
    let start_ticks = proc_stat(pid).ok().flatten().map_or(0, |(_, t)| t);
    ProcessId {
        pid,
        uid: euid(),
        start_ticks,
    }
}

/// Whether the process `id` names still runs (same pid *and* start time; a zombie
/// counts as dead).
pub(crate) fn is_alive(id: &ProcessId) -> bool {
    match proc_stat(id.pid) {
        Ok(Some((state, start))) => {
            !matches!(state, b'Z' | b'X') && (id.start_ticks == 0 || start == id.start_ticks)
        }
        Ok(None) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        // /proc unreadable for another reason: fall back to signal 0.
        Err(_) => {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(id.pid).unwrap_or(i32::MAX));
            !matches!(nix::sys::signal::kill(pid, None), Err(Errno::ESRCH))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "reads /proc")]
    fn self_is_alive_and_pid_reuse_is_seen() {
        let me = current_process();
        assert!(me.start_ticks > 0);
        assert!(is_alive(&me));
        let reused = ProcessId {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(!is_alive(&reused));
        let gone = ProcessId {
            pid: u32::MAX - 1,
            ..me
        };
        assert!(!is_alive(&gone));
    }
}

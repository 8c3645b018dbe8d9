//! Looking at segments without attaching, and removing them: status, stale judgement,
//! `inspect`, `list`, `unlink`, `remove_stale`.

use std::fs::File;
use std::time::{Duration, Instant};

use memmap2::MmapRaw;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::builder::{EMPTY_GRACE, name_error};
use super::error::{OpenError, OsError, StaleInfo, StaleReason};
use super::header::{Expect, HEADER_SIZE, HeaderSnapshot, HeaderState};
use super::name::SegmentName;
use super::open::{Backoff, check_file, header_of, open_error};
use super::sys::{self, FileInfo};

/// The state of a named segment, as [`inspect`] sees it without attaching.
///
/// # Examples
///
/// ```
/// use shmlink::segment::{Segment, Status, inspect};
///
/// # let name = format!("doc-seg-status-{}", std::process::id());
/// let seg = Segment::builder(&name).create()?;
/// assert_eq!(inspect(&name)?.status, Status::Alive);
/// drop(seg); // detaches cleanly; the name stays
/// match inspect(&name)?.status {
///     Status::Idle => {}
///     Status::Stale(info) => panic!("left behind by a crash: {info}"),
///     other => panic!("unexpected: {}", other.label()),
/// }
/// # shmlink::segment::unlink(&name)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// At least one live process has it open.
    Alive,
    /// Being created by a live process.
    Initializing,
    /// Published, nobody attached, every process detached cleanly.
    Idle,
    /// Left behind by a crash.
    Stale(StaleInfo),
    /// Not a valid segment (the error says why).
    Invalid(OpenError),
}

impl Status {
    /// One word for `shmlink ls`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{Segment, inspect};
    ///
    /// # let name = format!("doc-seg-status-label-{}", std::process::id());
    /// let _seg = Segment::builder(&name).unlink_on_drop(true).create()?;
    /// assert_eq!(inspect(&name)?.status.label(), "alive");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn label(&self) -> &'static str {
        match self {
            Status::Alive => "alive",
            Status::Initializing => "initializing",
            Status::Idle => "idle",
            Status::Stale(_) => "stale",
            Status::Invalid(_) => "invalid",
        }
    }
}

/// What [`inspect`] and [`list`] report about a segment.
///
/// # Examples
///
/// ```
/// use shmlink::segment::header::HEADER_SIZE;
/// use shmlink::segment::{Segment, inspect};
///
/// # let name = format!("doc-seg-info-{}", std::process::id());
/// let _seg = Segment::builder(&name).payload_len(64).unlink_on_drop(true).create()?;
/// let info = inspect(&name)?;
/// assert_eq!(info.name.as_str(), name);
/// assert_eq!(info.file_size, HEADER_SIZE as u64 + 64);
/// assert_eq!(info.header.map(|h| h.creator.uid), Some(info.owner_uid));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    /// The name.
    pub name: SegmentName,
    /// Owner uid.
    pub owner_uid: u32,
    /// File size in bytes.
    pub file_size: u64,
    /// The header, if it was published and readable.
    pub header: Option<HeaderSnapshot>,
    /// Live, idle, stale, ...
    pub status: Status,
}

/// Looks at a segment without attaching to it (the `shmlink ls` view).
///
/// # Errors
///
/// [`OpenError::NotFound`], [`OpenError::PermissionDenied`], invalid name or an OS
/// error; a segment with a bad header is reported as [`Status::Invalid`].
///
/// # Examples
///
/// ```
/// use shmlink::segment::{OpenError, Segment, Status, inspect};
///
/// # let name = format!("doc-seg-inspect-{}", std::process::id());
/// assert_eq!(inspect(&name).unwrap_err(), OpenError::NotFound);
/// let _seg = Segment::builder(&name).payload_len(64).unlink_on_drop(true).create()?;
/// let info = inspect(&name)?; // does not attach
/// assert_eq!(info.status, Status::Alive);
/// assert_eq!(info.header.map(|h| h.payload_len), Some(64));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn inspect(name: &str) -> Result<SegmentInfo, OpenError> {
    let name = SegmentName::new(name)?;
    inspect_named(&name)
}

fn inspect_named(name: &SegmentName) -> Result<SegmentInfo, OpenError> {
    let file = sys::open_existing(name).map_err(|e| name_error(name, "shm_open", e))?;
    let info = sys::file_info(&file).map_err(|e| open_error("fstat", e))?;
    let mut out = SegmentInfo {
        name: name.clone(),
        owner_uid: info.uid,
        file_size: info.size,
        header: None,
        status: Status::Initializing,
    };
    let map = if info.size >= HEADER_SIZE as u64 {
        Some(
            sys::map(&file, HEADER_SIZE)
                .map_err(|e| OpenError::Os(OsError::from_io("mmap", &e)))?,
        )
    } else {
        None
    };
    // Hold the exclusive lock (if we get it) while judging, so nobody attaches
    // between "nobody holds it" and reading `attached`.
    let hold = lock_to_judge(file).map_err(|e| OpenError::Os(OsError::new("flock", e)))?;
    let held = matches!(hold, Hold::Held);
    out.status = judge(map.as_ref(), &info, held, &mut out.header);
    Ok(out)
}

/// How long a judge waits out another one (a status reader, a remover, a resumer)
/// that holds the segment exclusively; judging takes microseconds.
const JUDGE_WAIT: Duration = Duration::from_millis(50);

/// The file lock of a segment being judged.
enum Hold {
    /// Exclusively ours: nobody else has the segment open.
    Alone(Flock<File>),
    /// Held by others: attached users (shared, for as long as they are attached), or
    /// an exclusive holder that kept it for longer than [`JUDGE_WAIT`].
    Held,
}

/// Takes the exclusive lock to judge a segment. Attached users hold the shared lock;
/// other judges hold the exclusive one, briefly: a segment held only by a judge is
/// waited for, so that two status readers (or `ls` and `remove_stale`) running at
/// once do not take each other for users.
fn lock_to_judge(file: File) -> Result<Hold, Errno> {
    let deadline = Instant::now() + JUDGE_WAIT;
    let mut backoff = Backoff::new();
    let mut file = file;
    loop {
        let f = match sys::try_lock(file, true) {
            Ok(lock) => return Ok(Hold::Alone(lock)),
            Err((f, Errno::EWOULDBLOCK)) => f,
            Err((_, e)) => return Err(e),
        };
        match sys::try_lock(f, false) {
            // Users hold it shared, or the exclusive holder has just left: converting
            // tells which (a failed conversion leaves nothing held).
            Ok(shared) => {
                return match shared.relock(FlockArg::LockExclusiveNonblock) {
                    Ok(()) => Ok(Hold::Alone(shared)),
                    Err(Errno::EWOULDBLOCK) => Ok(Hold::Held),
                    Err(e) => Err(e),
                };
            }
            // Held exclusively: another judge. Wait it out.
            Err((f, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                file = f;
                backoff.sleep();
            }
            Err((_, Errno::EWOULDBLOCK)) => return Ok(Hold::Held),
            Err((_, e)) => return Err(e),
        }
    }
}

/// Classifies a segment. `held`: someone else holds its file lock.
fn judge(
    map: Option<&MmapRaw>,
    info: &FileInfo,
    held: bool,
    header_out: &mut Option<HeaderSnapshot>,
) -> Status {
    let Some(map) = map else {
        return if info.size > 0 {
            Status::Invalid(OpenError::SizeMismatch {
                what: "file size",
                expected: HEADER_SIZE as u64,
                found: info.size,
            })
        } else if held || info.age <= EMPTY_GRACE {
            Status::Initializing
        } else {
            Status::Stale(StaleInfo {
                creator: None,
                reason: StaleReason::DiedBeforeReady,
            })
        };
    };
    let header = header_of(map);
    let state = match header.state() {
        Ok(s) => s,
        Err(e) => return Status::Invalid(e),
    };
    let snap = header.snapshot();
    match state {
        HeaderState::Creating => {
            // A live process holds it (a creator's lock dies with it): still being
            // created. Nobody holds a sized, unpublished object: its creator died.
            if held {
                Status::Initializing
            } else {
                Status::Stale(StaleInfo {
                    creator: header.creator(),
                    reason: StaleReason::DiedBeforeReady,
                })
            }
        }
        HeaderState::Ready => {
            *header_out = Some(snap);
            if let Err(e) = snap
                .validate(&Expect::default(), info.size)
                .and_then(|()| check_file(info, info.size))
            {
                Status::Invalid(e)
            } else if held {
                Status::Alive
            } else if snap.attached > 0 {
                Status::Stale(StaleInfo {
                    creator: Some(snap.creator),
                    reason: StaleReason::CrashedWhileAttached {
                        attached: snap.attached,
                    },
                })
            } else {
                Status::Idle
            }
        }
    }
}

/// Every shmlink segment in `/dev/shm` (of every user), sorted by name.
///
/// # Errors
///
/// The OS error of reading `/dev/shm`.
///
/// # Examples
///
/// ```
/// use shmlink::segment::{Segment, list};
///
/// # let name = format!("doc-seg-list-{}", std::process::id());
/// let _seg = Segment::builder(&name).unlink_on_drop(true).create()?;
/// let all = list()?;
/// for info in &all {
///     println!("{:<30} {:>10} {}", info.name, info.file_size, info.status.label());
/// }
/// assert!(all.iter().any(|info| info.name.as_str() == name));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn list() -> Result<Vec<SegmentInfo>, OsError> {
    let mut out = Vec::new();
    for (name, entry) in names()? {
        match inspect_named(&name) {
            Ok(info) => out.push(info),
            Err(OpenError::NotFound) => {}
            Err(e) => {
                use std::os::unix::fs::MetadataExt;
                let meta = entry.metadata().ok();
                out.push(SegmentInfo {
                    name,
                    owner_uid: meta.as_ref().map_or(0, |m| m.uid()),
                    file_size: meta.as_ref().map_or(0, |m| m.size()),
                    header: None,
                    status: Status::Invalid(e),
                });
            }
        }
    }
    out.sort_by(|a, b| a.name.os_name().cmp(b.name.os_name()));
    Ok(out)
}

/// The shmlink segment names in `/dev/shm`, unsorted, without looking inside.
fn names() -> Result<impl Iterator<Item = (SegmentName, std::fs::DirEntry)>, OsError> {
    let dir = std::fs::read_dir("/dev/shm").map_err(|e| OsError::from_io("read_dir", &e))?;
    Ok(dir.flatten().filter_map(|entry| {
        let (_, name) = entry
            .file_name()
            .to_str()
            .and_then(SegmentName::parse_file_name)?;
        Some((name, entry))
    }))
}

/// Removes every stale segment whose name starts with `prefix`; returns how many.
/// Looks only at those names: other segments are not even inspected.
pub(crate) fn remove_stale_prefixed(prefix: &str) -> usize {
    let Ok(names) = names() else { return 0 };
    names
        .filter(|(name, _)| name.as_str().starts_with(prefix))
        .filter(|(name, _)| remove_stale_named(name).unwrap_or(false))
        .count()
}

/// Removes the name `name` whatever its state (like `rm`): processes attached keep
/// their mapping, new opens fail with [`OpenError::NotFound`].
///
/// # Errors
///
/// [`OpenError::NotFound`], [`OpenError::PermissionDenied`], invalid name, or an OS
/// error.
///
/// # Examples
///
/// ```
/// use shmlink::segment::{OpenError, Segment, unlink};
///
/// # let name = format!("doc-seg-unlink-fn-{}", std::process::id());
/// let seg = Segment::builder(&name).payload_len(64).create()?;
/// unlink(&name)?;
/// assert_eq!(unlink(&name), Err(OpenError::NotFound));
/// assert_eq!(seg.payload().len(), 64); // still mapped until dropped
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn unlink(name: &str) -> Result<(), OpenError> {
    let name = SegmentName::new(name)?;
    sys::unlink(&name).map_err(|e| name_error(&name, "shm_unlink", e))
}

/// Removes `name` if, and only if, it is stale; returns whether it did.
///
/// The check and the unlink happen under an exclusive file lock, so a process that is
/// attaching concurrently either keeps the segment alive or sees it removed and
/// starts over.
///
/// # Errors
///
/// As [`inspect`]; a missing segment is `Ok(false)`.
///
/// # Examples
///
/// ```
/// use shmlink::segment::{Segment, Status, inspect, remove_stale};
///
/// # let name = format!("doc-seg-remove-stale-{}", std::process::id());
/// let seg = Segment::builder(&name).create()?;
/// assert!(!remove_stale(&name)?); // alive: left alone
/// seg.header().attach(); // as if a second process had attached and then crashed
/// drop(seg);
/// assert!(matches!(inspect(&name)?.status, Status::Stale(_)));
/// assert!(remove_stale(&name)?);
/// assert!(!remove_stale(&name)?); // already gone
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn remove_stale(name: &str) -> Result<bool, OpenError> {
    let name = SegmentName::new(name)?;
    remove_stale_named(&name)
}

/// Removes `name` if, and only if, no process has it open and every process that had
/// it left cleanly ([`Status::Idle`]); returns whether it did. For the last user of a
/// segment that others may open again at any time (a lock per name, say): the check and
/// the unlink happen under an exclusive file lock, as in [`remove_stale`], so a
/// process opening it meanwhile either keeps it or sees it removed and creates a new
/// one.
///
/// # Errors
///
/// As [`inspect`]; a missing segment is `Ok(false)`.
///
/// # Examples
///
/// ```
/// use shmlink::segment::{Segment, remove_idle};
///
/// # let name = format!("doc-seg-remove-idle-{}", std::process::id());
/// let seg = Segment::builder(&name).create()?;
/// assert!(!remove_idle(&name)?); // open here: left alone
/// drop(seg);
/// assert!(remove_idle(&name)?); // nobody has it open: removed
/// assert!(!remove_idle(&name)?); // already gone
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn remove_idle(name: &str) -> Result<bool, OpenError> {
    let name = SegmentName::new(name)?;
    remove_named_if(&name, |s| matches!(s, Status::Idle))
}

pub(super) fn remove_stale_named(name: &SegmentName) -> Result<bool, OpenError> {
    remove_named_if(name, |s| matches!(s, Status::Stale(_)))
}

/// Removes `name` if nobody has it open and its status passes `remove`.
fn remove_named_if(name: &SegmentName, remove: fn(&Status) -> bool) -> Result<bool, OpenError> {
    let file = match sys::open_existing(name) {
        Ok(f) => f,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(name_error(name, "shm_open", e)),
    };
    let lock = match lock_to_judge(file) {
        Ok(Hold::Alone(lock)) => lock,
        Ok(Hold::Held) => return Ok(false),
        Err(e) => return Err(OpenError::Os(OsError::new("flock", e))),
    };
    let info = sys::file_info(&lock).map_err(|e| open_error("fstat", e))?;
    let map = if info.size >= HEADER_SIZE as u64 {
        Some(
            sys::map(&lock, HEADER_SIZE)
                .map_err(|e| OpenError::Os(OsError::from_io("mmap", &e)))?,
        )
    } else {
        None
    };
    let mut header = None;
    if !remove(&judge(map.as_ref(), &info, false, &mut header)) {
        return Ok(false);
    }
    if sys::name_identity(name) != Some((info.dev, info.ino)) {
        return Ok(false);
    }
    match sys::unlink(name) {
        Ok(()) | Err(Errno::ENOENT) => {
            crate::sync::slow_path!(INFO, name = %name, "segment: removed a stale or idle segment");
            Ok(true)
        }
        Err(e) => Err(name_error(name, "shm_unlink", e)),
    }
}

#[cfg(all(test, not(shmlink_loom)))]
mod tests {
    use super::super::Segment;
    use super::*;

    /// Holds `name` exclusively, as another judge would (a status reader, a remover),
    /// for `hold`, from another thread.
    fn judged_for(name: &str, hold: Duration) -> std::thread::JoinHandle<()> {
        let name = SegmentName::new(name).unwrap();
        let file = sys::open_existing(&name).unwrap();
        let lock = sys::try_lock(file, true).map_err(|(_, e)| e).unwrap();
        std::thread::spawn(move || {
            std::thread::sleep(hold);
            drop(lock);
        })
    }

    /// Defect (CI, in the `remove_idle` doctest): a remover that found the segment
    /// held exclusively by another judge (a concurrent `list()`, which inspects every
    /// segment) took it for a user and returned `Ok(false)`, and `inspect` called it
    /// alive. Both now wait the judge out.
    #[test]
    #[cfg_attr(miri, ignore = "named segments")]
    fn a_concurrent_judge_is_waited_out_not_taken_for_a_user() {
        let name = format!("test-judge-vs-judge-{}", std::process::id());
        drop(Segment::builder(&name).create().unwrap()); // idle
        let judge = judged_for(&name, Duration::from_millis(5));
        assert_eq!(inspect(&name).unwrap().status, Status::Idle);
        judge.join().unwrap();
        let judge = judged_for(&name, Duration::from_millis(5));
        assert!(remove_idle(&name).unwrap(), "removed once the judge left");
        judge.join().unwrap();
        assert_eq!(inspect(&name).unwrap_err(), OpenError::NotFound);
    }

    /// A user (shared lock) keeps the segment; a judge that does not let go is waited
    /// for only [`JUDGE_WAIT`].
    #[test]
    #[cfg_attr(miri, ignore = "named segments")]
    fn users_are_left_alone_and_a_stuck_judge_only_delays() {
        let name = format!("test-judge-stuck-{}", std::process::id());
        let seg = Segment::builder(&name).create().unwrap();
        assert!(!remove_idle(&name).unwrap());
        assert_eq!(inspect(&name).unwrap().status, Status::Alive);
        drop(seg);
        let judge = judged_for(&name, Duration::from_secs(1));
        let started = Instant::now();
        assert!(!remove_idle(&name).unwrap(), "busy: left alone");
        assert!(started.elapsed() >= JUDGE_WAIT);
        judge.join().unwrap();
        assert!(remove_idle(&name).unwrap());
    }
}

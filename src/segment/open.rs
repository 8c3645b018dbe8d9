//! Opening a segment: waiting for its creator to publish, judging an unpublished one,
//! validating the file and the header.

use std::fs::File;
use std::time::{Duration, Instant};

use memmap2::MmapRaw;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::builder::{EMPTY_GRACE, MAX_FILE, name_error};
use super::error::{OpenError, OsError, StaleInfo, StaleReason};
use super::handle::Segment;
use super::header::{Expect, HEADER_SIZE, HeaderState, ProcessId, SegmentHeader};
use super::name::SegmentName;
use super::sys::{self, FileInfo};
use crate::sync::atomic::AtomicBool;

/// Takes the shared (attached) lock, waiting out an exclusive lock held by a cleanup.
pub(super) fn lock_shared(file: File, deadline: Instant) -> Result<Flock<File>, Errno> {
    let mut file = file;
    let mut backoff = Backoff::new();
    loop {
        match sys::try_lock(file, false) {
            Ok(lock) => return Ok(lock),
            Err((f, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                file = f;
                backoff.sleep();
            }
            Err((_, e)) => return Err(e),
        }
    }
}

/// Sleep-based backoff for waits on another process: 20 µs doubling to 2 ms.
pub(super) struct Backoff(Duration);

impl Backoff {
    pub(super) fn new() -> Self {
        Self(Duration::from_micros(20))
    }
    pub(super) fn sleep(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(Duration::from_millis(2));
    }
}

pub(super) fn open_error(op: &'static str, e: Errno) -> OpenError {
    match e {
        Errno::ENOENT => OpenError::NotFound,
        Errno::EACCES | Errno::EPERM => OpenError::PermissionDenied,
        e => OpenError::Os(OsError::new(op, e)),
    }
}

/// What [`open_mapped`] found.
struct Mapped {
    file: File,
    map: MmapRaw,
}

/// Opens `name` and waits until its header is published; no lock taken yet.
fn open_mapped(name: &SegmentName, deadline: Instant) -> Result<Mapped, OpenError> {
    let started = Instant::now();
    let file = sys::open_existing(name).map_err(|e| name_error(name, "shm_open", e))?;
    let mut backoff = Backoff::new();
    let mut map: Option<MmapRaw> = None;
    loop {
        let info = sys::file_info(&file).map_err(|e| open_error("fstat", e))?;
        // Squatted (or handed over with chown): never use another user's object.
        if info.uid != name.uid() {
            return Err(OpenError::ForeignOwner {
                owner_uid: info.uid,
                expected_uid: name.uid(),
            });
        }
        if info.nlink == 0 {
            return Err(OpenError::NotFound);
        }
        if info.size == 0 {
            // The creator has not sized it yet (or died before doing so).
            if Instant::now() >= deadline {
                return Err(judge_unpublished(file, &info, None, started.elapsed()));
            }
            backoff.sleep();
            continue;
        }
        if info.size < HEADER_SIZE as u64 {
            // Creators size the object in one step; a shorter file was truncated.
            return Err(OpenError::SizeMismatch {
                what: "file size",
                expected: HEADER_SIZE as u64,
                found: info.size,
            });
        }
        // Whatever its header will say, a file no creator can make is not mapped.
        let too_large = OpenError::TooLarge {
            len: info.size,
            max: MAX_FILE,
        };
        if info.size > MAX_FILE {
            return Err(too_large);
        }
        let len = usize::try_from(info.size).map_err(|_| too_large)?;
        let mapping = match map.take() {
            Some(m) if m.len() == len => m,
            _ => sys::map(&file, len).map_err(|e| OpenError::Os(OsError::from_io("mmap", &e)))?,
        };
        let header = header_of(&mapping);
        match header.state()? {
            HeaderState::Ready => return Ok(Mapped { file, map: mapping }),
            HeaderState::Creating => {
                // A creator takes its lock before it sizes the file, so a sized file
                // that nobody holds lost its creator, whether or not it got as far as
                // writing its pid (crash point `segment.create:2`: waiting out the
                // deadline would make every `open_or_create` of the name fail).
                let creator = header.creator();
                if creator.is_none_or(|c| !sys::is_alive(&c)) && nobody_holds(&file) {
                    return Err(OpenError::Stale(StaleInfo {
                        creator,
                        reason: StaleReason::DiedBeforeReady,
                    }));
                }
                if Instant::now() >= deadline {
                    let creator = header.creator();
                    return Err(judge_unpublished(file, &info, creator, started.elapsed()));
                }
            }
        }
        map = Some(mapping);
        backoff.sleep();
    }
}

/// Whether no process holds `file`'s lock (we hold none on this description).
fn nobody_holds(file: &File) -> bool {
    file.try_clone()
        .is_ok_and(|dup| sys::try_lock(dup, true).is_ok())
}

/// The creator did not publish in time: stale if nobody holds the object, otherwise a
/// live creator is just slow.
fn judge_unpublished(
    file: File,
    info: &FileInfo,
    creator: Option<ProcessId>,
    waited: Duration,
) -> OpenError {
    let nobody = sys::try_lock(file, true).is_ok();
    let abandoned = nobody && (info.size > 0 || info.age > EMPTY_GRACE);
    if abandoned {
        OpenError::Stale(StaleInfo {
            creator,
            reason: StaleReason::DiedBeforeReady,
        })
    } else {
        OpenError::NotInitialized { waited }
    }
}

/// Checks the file of a published segment before anything past its header is
/// touched: no larger than a segment may be, and every one of the `len` bytes we map
/// backed by allocated memory. Creators allocate every page (`posix_fallocate`)
/// before they publish, so a sparse file was made by hand or had holes punched in
/// it; its header may claim anything (a ring of 2^32 slots), and walking the holes
/// would allocate that much memory on our account, or raise SIGBUS once `/dev/shm`
/// is full. tmpfs counts allocated pages in `st_blocks`.
pub(super) fn check_file(info: &FileInfo, len: u64) -> Result<(), OpenError> {
    if len > MAX_FILE {
        return Err(OpenError::TooLarge { len, max: MAX_FILE });
    }
    if info.allocated < len {
        return Err(OpenError::NotBacked {
            len,
            allocated: info.allocated,
        });
    }
    Ok(())
}

pub(super) fn header_of(map: &MmapRaw) -> &SegmentHeader {
    debug_assert!(map.len() >= HEADER_SIZE);
    // SAFETY: the mapping is at least HEADER_SIZE bytes (checked by every caller) and
    // page-aligned; SegmentHeader is ShmSafe (repr(C), only integer atomics, valid for
    // any bit pattern, interior-mutable), so a shared reference to bytes that other
    // processes write concurrently is sound. The reference borrows `map`, which keeps
    // the mapping alive.
    unsafe { &*map.as_ptr().cast::<SegmentHeader>() }
}

/// What [`open_validated`] does with a stale segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IfStale {
    /// Refuse it: `OpenError::Stale`.
    Refuse,
    /// Take it over when it matches: see [`open_validated`].
    Resume,
    /// Read it as it is, when it matches: it comes back held exclusively for as long
    /// as the handle lives (nobody attaches or cleans it meanwhile), and is left
    /// exactly as it was (no attach, no creator written): for status readers.
    Inspect,
}

/// Opens and attaches the published segment `name`, checked against `expect`.
///
/// A stale segment (a process died attached to it) is `OpenError::Stale`, unless
/// `if_stale` says otherwise and its header matches `expect`: to resume, it comes back
/// still held exclusively, marked pending ([`Segment::finish_resume`]), with this
/// process as its creator of record; to inspect, see [`IfStale::Inspect`].
pub(super) fn open_validated(
    name: &SegmentName,
    expect: &Expect,
    deadline: Instant,
    if_stale: IfStale,
) -> Result<Segment, OpenError> {
    let started = Instant::now();
    loop {
        let Mapped { file, map } = open_mapped(name, deadline)?;
        let header = header_of(&map);
        // Attach: an exclusive lock that succeeds means nobody else holds the
        // segment, which is when staleness is decided; otherwise a shared lock.
        let lock = match sys::try_lock(file, true) {
            Ok(lock) => {
                let snap = header.snapshot();
                if snap.attached > 0 {
                    let stale = OpenError::Stale(StaleInfo {
                        creator: Some(snap.creator),
                        reason: StaleReason::CrashedWhileAttached {
                            attached: snap.attached,
                        },
                    });
                    return match if_stale {
                        IfStale::Refuse => Err(stale),
                        IfStale::Resume => resume_stale(name, expect, map, lock, stale, true),
                        IfStale::Inspect => resume_stale(name, expect, map, lock, stale, false),
                    };
                }
                match lock.relock(FlockArg::LockSharedNonblock) {
                    Ok(()) => lock,
                    // Conversion is unlock-then-lock; someone slipped in: start over.
                    Err(Errno::EWOULDBLOCK) if Instant::now() < deadline => continue,
                    Err(Errno::EWOULDBLOCK) => {
                        return Err(OpenError::Busy {
                            waited: started.elapsed(),
                        });
                    }
                    Err(e) => return Err(OpenError::Os(OsError::new("flock", e))),
                }
            }
            // Others hold it: live users (shared), or someone judging it (exclusive:
            // a cleanup, a resumer, a status reader). Join live users at once; after
            // waiting out an exclusive holder, judge again, since a status reader
            // leaves a stale segment stale.
            Err((file, Errno::EWOULDBLOCK)) => match sys::try_lock(file, false) {
                Ok(lock) => lock,
                Err((file, Errno::EWOULDBLOCK)) => match lock_shared(file, deadline) {
                    Ok(_waited_out) => continue,
                    Err(Errno::EWOULDBLOCK) => {
                        return Err(OpenError::Busy {
                            waited: started.elapsed(),
                        });
                    }
                    Err(e) => return Err(OpenError::Os(OsError::new("flock", e))),
                },
                Err((_, e)) => return Err(OpenError::Os(OsError::new("flock", e))),
            },
            Err((_, e)) => return Err(OpenError::Os(OsError::new("flock", e))),
        };
        let info = sys::file_info(&lock).map_err(|e| open_error("fstat", e))?;
        if info.nlink == 0 {
            // Removed (by a cleanup) while we were opening: look the name up again.
            if Instant::now() >= deadline {
                return Err(OpenError::NotFound);
            }
            continue;
        }
        // Published (Acquire of `state` above), so the creator finished allocating.
        check_file(&info, map.len() as u64)?;
        let snapshot = header.snapshot();
        snapshot.validate(expect, map.len() as u64)?;
        header.attach();
        return Ok(Segment {
            map,
            lock,
            name: name.clone(),
            snapshot,
            identity: (info.dev, info.ino),
            unlink_on_drop: false,
            created: false,
            pending_resume: AtomicBool::new(false),
            inspecting: false,
        });
    }
}

/// A stale segment held under our exclusive lock (nobody else holds it: every process
/// that was attached is dead): checked like any opened segment and, if it matches,
/// handed back pending, with this process written in as its creator (`resume`), or
/// untouched for reading ([`IfStale::Inspect`]). `stale` is returned when it does not
/// match, for the caller to replace it.
fn resume_stale(
    name: &SegmentName,
    expect: &Expect,
    map: MmapRaw,
    lock: Flock<File>,
    stale: OpenError,
    resume: bool,
) -> Result<Segment, OpenError> {
    let info = sys::file_info(&lock).map_err(|e| open_error("fstat", e))?;
    if info.nlink == 0 {
        return Err(OpenError::NotFound);
    }
    let header = header_of(&map);
    let snapshot = header.snapshot();
    if check_file(&info, map.len() as u64).is_err()
        || snapshot.validate(expect, map.len() as u64).is_err()
    {
        return Err(stale);
    }
    if resume {
        header.write_creator(&sys::current_process());
    }
    Ok(Segment {
        snapshot: header.snapshot(),
        map,
        lock,
        name: name.clone(),
        identity: (info.dev, info.ino),
        unlink_on_drop: false,
        created: resume,
        pending_resume: AtomicBool::new(resume),
        inspecting: !resume,
    })
}

#[cfg(all(test, not(shmlink_loom)))]
mod tests {
    use super::super::{OpenError, Segment};
    use std::time::Duration;

    /// A segment left stale: one attachment counted, nobody holding its lock (as a
    /// process that died attached leaves it).
    fn stale(name: &str) {
        let seg = Segment::builder(name).payload_len(64).create().unwrap();
        seg.header().attach(); // the "dead" attachment
        drop(seg);
    }

    /// Defect: an opener that found the segment held exclusively waited for a shared
    /// lock and then attached without judging it; when the exclusive holder was a
    /// status reader (which leaves a stale segment stale), it attached to a stale
    /// segment as if it were live. It now judges again after waiting.
    #[test]
    #[cfg_attr(miri, ignore = "named segments")]
    fn an_opener_that_waited_out_a_status_reader_still_finds_the_segment_stale() {
        let name = format!("test-open-after-inspect-{}", std::process::id());
        stale(&name);
        let builder = Segment::builder(&name).payload_len(64);
        let reader = builder.open_inspecting().expect("read the stale segment");
        let opener = {
            let builder = builder.clone();
            std::thread::spawn(move || builder.open().map(drop))
        };
        std::thread::sleep(Duration::from_millis(50)); // the opener waits on the lock
        drop(reader);
        let got = opener.join().unwrap();
        assert!(matches!(got, Err(OpenError::Stale(_))), "{got:?}");
        // Left as it was: stale, its one (dead) attachment still counted.
        let info = super::super::inspect(&name).unwrap();
        assert!(
            matches!(info.status, super::super::Status::Stale(_)),
            "{info:?}"
        );
        assert_eq!(info.header.map(|h| h.attached), Some(1));
        super::super::unlink(&name).unwrap();
    }
}

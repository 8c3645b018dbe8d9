//! One attempt at creating a segment: the file, its size, the header, the publish.

use std::time::Instant;

use nix::errno::Errno;

use super::builder::foreign_owner;
use super::error::{CreateError, OsError};
use super::handle::Segment;
use super::header::{HEADER_SIZE, HeaderSnapshot, HeaderSpec};
use super::name::SegmentName;
use super::open::{header_of, lock_shared};
use super::sys;

/// One creation attempt. `Ok(None)`: our object was removed by a concurrent cleanup
/// before we locked it; the caller retries.
pub(super) fn create_once(
    name: &SegmentName,
    spec: &HeaderSpec,
    deadline: Instant,
    unlink_on_drop: bool,
) -> Result<Option<Segment>, CreateError> {
    let file = sys::create_exclusive(name).map_err(|e| match e {
        Errno::EEXIST | Errno::EACCES | Errno::EPERM => match foreign_owner(name) {
            // Squatted: someone else created our name first.
            Some((owner_uid, expected_uid)) => CreateError::ForeignOwner {
                owner_uid,
                expected_uid,
            },
            None if e == Errno::EEXIST => CreateError::AlreadyExists,
            None => CreateError::PermissionDenied,
        },
        e => CreateError::Os(OsError::new("shm_open", e)),
    })?;
    crate::process::crash::point("segment.create", 1);
    // From here on the name is ours: remove it again if anything below fails, but
    // only while it still names this object (a cleanup may have replaced it).
    let identity = sys::file_info(&file).map(|i| (i.dev, i.ino)).map_err(|e| {
        let _ = sys::unlink(name);
        CreateError::Os(OsError::new("fstat", e))
    })?;
    let fail = |e: CreateError| {
        if sys::name_identity(name) == Some(identity) {
            let _ = sys::unlink(name);
        }
        e
    };
    let os = |op, e| fail(CreateError::Os(OsError::new(op, e)));
    let lock = lock_shared(file, deadline).map_err(|e| os("flock", e))?;
    let info = sys::file_info(&lock).map_err(|e| os("fstat", e))?;
    if info.nlink == 0 {
        return Ok(None);
    }
    let total = spec.total_size().expect("payload bounded by MAX_PAYLOAD");
    sys::size_and_reserve(&lock, total).map_err(|(op, e)| match e {
        Errno::ENOSPC => fail(CreateError::NoSpace { requested: total }),
        e => os(op, e),
    })?;
    crate::process::crash::point("segment.create", 2);
    let len = usize::try_from(total).map_err(|_| os("mmap", Errno::EFBIG))?;
    let map =
        sys::map(&lock, len).map_err(|e| fail(CreateError::Os(OsError::from_io("mmap", &e))))?;
    let creator = sys::current_process();
    let header = header_of(&map);
    header.write_creator(&creator);
    header.write_layout(spec);
    crate::process::crash::point("segment.create", 3);
    // The creator's view comes from what it wrote, never from reading the shared
    // header back (another process could change it before we publish).
    let snapshot = HeaderSnapshot {
        magic: super::header::MAGIC,
        layout_version: super::header::LAYOUT_VERSION,
        header_size: HEADER_SIZE as u32,
        kind: spec.kind.code(),
        fingerprint: spec.fingerprint,
        total_size: total,
        payload_offset: HEADER_SIZE as u64,
        payload_len: spec.payload_len,
        creator,
        created_unix_ns: spec.created_unix_ns,
        attached: 1,
        type_name: spec.type_name,
    };
    Ok(Some(Segment {
        map,
        lock,
        name: name.clone(),
        snapshot,
        identity: (info.dev, info.ino),
        unlink_on_drop,
        created: true,
        pending_resume: crate::sync::atomic::AtomicBool::new(false),
        inspecting: false,
    }))
}

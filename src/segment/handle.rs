//! [`Segment`]: a named segment, mapped and attached.

use core::fmt;
use core::ptr::NonNull;
use std::fs::File;

use memmap2::MmapRaw;
use nix::errno::Errno;
use nix::fcntl::Flock;

use super::builder::SegmentBuilder;
use super::error::OsError;
use super::header::{HEADER_SIZE, HeaderSnapshot, Kind, ProcessId, SegmentHeader};
use super::name::SegmentName;
use super::open::header_of;
use super::sys;
use crate::region::RawArea;
use crate::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::error::OpenError;

/// A named shared-memory segment, mapped and attached.
///
/// The segment is a header ([`SegmentHeader`]) followed by a payload of
/// [`payload_len`](Self::payload_len) bytes, reached only through raw pointers
/// ([`payload`](Self::payload)); no reference to bytes another process may write is
/// ever handed out. While the handle lives, this process holds a shared `flock` on the
/// object, which the kernel releases if the process dies: that is how stale segments
/// are told from live ones.
///
/// # Examples
///
/// ```
/// use shmlink::segment::Segment;
///
/// # let name = format!("doc-segment-{}", std::process::id());
/// let created = Segment::builder(&name).payload_len(64).unlink_on_drop(true).create()?;
/// let opened = Segment::builder(&name).payload_len(64).open()?;
/// // SAFETY: no other party writes these bytes concurrently in this example.
/// unsafe {
///     created.payload().write(0, b"hello")?;
///     let mut buf = [0u8; 5];
///     opened.payload().read(0, &mut buf)?;
///     assert_eq!(&buf, b"hello");
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Segment {
    pub(super) map: MmapRaw,
    pub(super) lock: Flock<File>,
    pub(super) name: SegmentName,
    pub(super) snapshot: HeaderSnapshot,
    pub(super) identity: (u64, u64),
    pub(super) unlink_on_drop: bool,
    pub(super) created: bool,
    /// Resumed from a stale segment and still held exclusively, until
    /// [`finish_resume`](Self::finish_resume); dropped before that, the segment is
    /// removed (its object refused its contents).
    pub(super) pending_resume: AtomicBool,
    /// A stale segment opened only to be read: held exclusively while this handle
    /// lives, and left as it was when dropped (no detach, no unlink).
    pub(super) inspecting: bool,
}

impl Segment {
    /// Starts configuring a segment named `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Segment;
    ///
    /// # let name = format!("doc-seg-builder-fn-{}", std::process::id());
    /// let seg = Segment::builder(&name).payload_len(64).unlink_on_drop(true).create()?;
    /// assert_eq!(seg.payload_len(), 64);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(name: &str) -> SegmentBuilder {
        SegmentBuilder::new(name)
    }

    /// The segment's name.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Segment;
    ///
    /// # let name = format!("doc-seg-name-{}", std::process::id());
    /// let seg = Segment::builder(&name).unlink_on_drop(true).create()?;
    /// assert_eq!(seg.name().as_str(), name);
    /// assert!(seg.name().path().exists()); // /dev/shm/shmlink.<uid>.<name>
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn name(&self) -> &SegmentName {
        &self.name
    }

    /// The header in shared memory.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Segment;
    ///
    /// # let name = format!("doc-seg-header-{}", std::process::id());
    /// let seg = Segment::builder(&name).payload_len(64).unlink_on_drop(true).create()?;
    /// let snapshot = seg.header().snapshot();
    /// assert_eq!(snapshot.payload_len, 64);
    /// assert_eq!(seg.header().attached(), 1); // the creator
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn header(&self) -> &SegmentHeader {
        header_of(&self.map)
    }

    /// The kind recorded in the header when the segment was opened.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{Kind, Segment};
    ///
    /// # let name = format!("doc-seg-kind-{}", std::process::id());
    /// let _created = Segment::builder(&name).kind(Kind::Typed).unlink_on_drop(true).create()?;
    /// let opened = Segment::builder(&name).kind(Kind::Typed).open()?;
    /// assert_eq!(opened.kind(), Some(Kind::Typed));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn kind(&self) -> Option<Kind> {
        Kind::from_code(self.snapshot.kind)
    }

    /// The payload's type fingerprint.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Segment;
    /// use shmlink::region::fingerprint;
    /// use shmlink::sync::atomic::AtomicU64;
    ///
    /// # let name = format!("doc-seg-fingerprint-{}", std::process::id());
    /// let fp = fingerprint::<AtomicU64>();
    /// let seg = Segment::builder(&name).fingerprint(fp).unlink_on_drop(true).create()?;
    /// assert_eq!(seg.fingerprint(), fp);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fingerprint(&self) -> u64 {
        self.snapshot.fingerprint
    }

    /// Payload length in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Segment;
    ///
    /// # let name = format!("doc-seg-payload-len-{}", std::process::id());
    /// let _created = Segment::builder(&name).payload_len(4096).unlink_on_drop(true).create()?;
    /// let opened = Segment::builder(&name).open()?; // no length set: accepts any
    /// assert_eq!(opened.payload_len(), 4096);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn payload_len(&self) -> usize {
        // Validated against the mapping's length on open, so it fits a usize.
        self.snapshot.payload_len as usize
    }

    /// The payload, as a raw area (128-byte aligned).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Segment;
    ///
    /// # let name = format!("doc-seg-payload-{}", std::process::id());
    /// let seg = Segment::builder(&name).payload_len(256).unlink_on_drop(true).create()?;
    /// let area = seg.payload();
    /// assert_eq!((area.len(), area.as_ptr() as usize % 128), (256, 0));
    /// // SAFETY: `seg` is alive, 0 + 8 <= 256, and no other process uses the segment.
    /// let value = unsafe {
    ///     area.write_value(0, 7_u64);
    ///     area.read_value::<u64>(0)
    /// };
    /// assert_eq!(value, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn payload(&self) -> RawArea {
        // SAFETY: the mapping is page-aligned and HEADER_SIZE + payload_len bytes long
        // (validated on open, set on create), so base + HEADER_SIZE is in bounds and
        // non-null.
        let ptr = unsafe { NonNull::new_unchecked(self.map.as_mut_ptr().add(HEADER_SIZE)) };
        // SAFETY: the payload lies inside the mapping, which lives as long as self, and
        // HEADER_SIZE (128) keeps it 128-byte aligned.
        unsafe { RawArea::new(ptr, self.payload_len()) }
    }

    /// Who created the segment.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Segment;
    ///
    /// # let name = format!("doc-seg-creator-{}", std::process::id());
    /// let _created = Segment::builder(&name).unlink_on_drop(true).create()?;
    /// let opened = Segment::builder(&name).open()?;
    /// assert_eq!(opened.creator().pid, std::process::id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn creator(&self) -> ProcessId {
        self.snapshot.creator
    }

    /// `true` if this handle created the segment.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Segment;
    ///
    /// # let name = format!("doc-seg-is-creator-{}", std::process::id());
    /// let created = Segment::builder(&name).unlink_on_drop(true).create()?;
    /// let opened = Segment::builder(&name).open()?;
    /// assert!(created.is_creator());
    /// assert!(!opened.is_creator());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_creator(&self) -> bool {
        self.created
    }

    /// Changes whether dropping this handle removes the name (creator handles only;
    /// ignored for handles that opened an existing segment).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Segment;
    ///
    /// # let name = format!("doc-seg-set-unlink-on-drop-{}", std::process::id());
    /// let mut seg = Segment::builder(&name).unlink_on_drop(true).create()?;
    /// seg.set_unlink_on_drop(false); // keep the segment for processes that come later
    /// drop(seg);
    /// assert!(Segment::builder(&name).open().is_ok());
    /// # shmlink::segment::unlink(&name)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_unlink_on_drop(&mut self, yes: bool) {
        self.unlink_on_drop = yes && self.created;
    }

    /// Removes the name now, if it still refers to this segment. Mappings stay valid;
    /// new `open`s get [`OpenError::NotFound`](super::OpenError::NotFound).
    ///
    /// # Errors
    ///
    /// The OS error of `shm_unlink`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{OpenError, Segment};
    ///
    /// # let name = format!("doc-seg-unlink-method-{}", std::process::id());
    /// let seg = Segment::builder(&name).payload_len(64).create()?;
    /// seg.unlink()?;
    /// assert_eq!(Segment::builder(&name).open().unwrap_err(), OpenError::NotFound);
    /// assert_eq!(seg.payload().len(), 64); // the mapping stays valid
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unlink(&self) -> Result<(), OsError> {
        if sys::name_identity(&self.name) != Some(self.identity) {
            return Ok(());
        }
        match sys::unlink(&self.name) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(OsError::new("shm_unlink", e)),
        }
    }
}

impl Segment {
    /// Whether the name still refers to this segment: `false` once it was removed
    /// (and perhaps created again by someone else), so that a long-running process
    /// can tell that others no longer find it.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Segment;
    ///
    /// # let name = format!("doc-seg-is-current-{}", std::process::id());
    /// let old = Segment::builder(&name).payload_len(64).create()?;
    /// assert!(old.is_current());
    /// old.unlink()?;
    /// let new = Segment::builder(&name).payload_len(64).unlink_on_drop(true).create()?;
    /// assert!(!old.is_current()); // the name now holds another segment
    /// assert!(new.is_current());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn is_current(&self) -> bool {
        sys::name_identity(&self.name) == Some(self.identity)
    }

    /// Whether this segment was resumed and its resumption is not finished.
    pub(crate) fn is_pending_resume(&self) -> bool {
        self.pending_resume.load(Ordering::Relaxed)
    }

    /// Ends the resumption of a stale segment (nothing to do for any other): every
    /// process that was attached is dead, so the attach count starts again from
    /// this process, and the exclusive lock becomes the shared one every attached
    /// process holds, letting other openers in.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`] if a cleanup removed the segment in the moment the lock
    /// was converted (start over); [`OpenError::Busy`] if the shared lock could not be
    /// had by `deadline`.
    pub(crate) fn finish_resume(&self, deadline: Instant) -> Result<(), OpenError> {
        if !self.pending_resume.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        self.header().clear_attached();
        let started = Instant::now();
        let mut backoff = super::open::Backoff::new();
        // Conversion is unlock-then-lock: another opener may slip in meanwhile (it
        // finds a segment nobody is attached to, which opens normally).
        loop {
            match self.lock.relock(nix::fcntl::FlockArg::LockSharedNonblock) {
                Ok(()) => break,
                Err(Errno::EWOULDBLOCK) if Instant::now() < deadline => backoff.sleep(),
                Err(Errno::EWOULDBLOCK) => {
                    return Err(OpenError::Busy {
                        waited: started.elapsed(),
                    });
                }
                Err(e) => return Err(OpenError::Os(OsError::new("flock", e))),
            }
        }
        self.header().attach();
        match sys::file_info(&self.lock) {
            Ok(info) if info.nlink == 0 => Err(OpenError::NotFound),
            Ok(_) => Ok(()),
            Err(e) => Err(super::open::open_error("fstat", e)),
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.inspecting {
            // Never attached: the lock's release is all there is to undo.
            return;
        }
        if self.pending_resume.load(Ordering::Relaxed) {
            // A stale segment whose object refused its contents, still held
            // exclusively: nobody else is attached, so it can go.
            let _ = self.unlink();
            return;
        }
        self.header().detach();
        if self.unlink_on_drop {
            let _ = self.unlink();
        }
        // Fields drop next: the mapping, then the lock (LOCK_UN, close).
        let _ = &self.lock;
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("kind", &self.snapshot.kind)
            .field("payload_len", &self.snapshot.payload_len)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

//! Named segments: create, open, open-or-create, inspect, unlink.

use core::fmt;
use core::ptr::NonNull;
use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use memmap2::MmapRaw;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::error::{CreateError, NameError, OpenError, OsError, StaleInfo, StaleReason};
use super::header::{
    Expect, HEADER_SIZE, HeaderSnapshot, HeaderSpec, HeaderState, Kind, ProcessId, SegmentHeader,
};
use super::name::SegmentName;
use super::sys::{self, FileInfo};
use crate::region::RawArea;

/// Largest payload a segment may have (1 TiB).
///
/// # Examples
///
/// ```
/// use shmlink::segment::{CreateError, MAX_PAYLOAD, Segment};
///
/// # let name = format!("doc-seg-max-payload-{}", std::process::id());
/// let err = Segment::builder(&name).payload_len(MAX_PAYLOAD + 1).create().unwrap_err();
/// assert_eq!(err, CreateError::TooLarge { requested: MAX_PAYLOAD + 1, max: MAX_PAYLOAD });
/// ```
pub const MAX_PAYLOAD: u64 = 1 << 40;

/// Default time `open` waits for a creator to publish, or for a cleanup to finish.
///
/// # Examples
///
/// ```
/// use shmlink::segment::{DEFAULT_TIMEOUT, Segment};
///
/// // Give a creator that is known to initialise slowly more time.
/// let builder = Segment::builder("slow-init").timeout(DEFAULT_TIMEOUT * 5);
/// # drop(builder);
/// ```
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest file a segment may have: the header plus [`MAX_PAYLOAD`].
const MAX_FILE: u64 = MAX_PAYLOAD + HEADER_SIZE as u64;

/// A zero-length object that nobody has locked is only judged abandoned after this
/// long: its creator may be between `shm_open` and `flock`.
const EMPTY_GRACE: Duration = Duration::from_secs(5);

/// How [`SegmentBuilder::open_or_create`] obtained the segment.
///
/// # Examples
///
/// ```
/// use shmlink::segment::{Disposition, Segment};
///
/// # let name = format!("doc-seg-disposition-{}", std::process::id());
/// let builder = Segment::builder(&name).unlink_on_drop(true);
/// let (_first, how) = builder.open_or_create()?;
/// assert_eq!(how, Disposition::Created);
/// let (_second, how) = builder.open_or_create()?;
/// assert_eq!(how, Disposition::Opened);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// This call created it.
    Created,
    /// It existed and was opened.
    Opened,
}

/// Configures and then creates or opens a named [`Segment`].
///
/// # Examples
///
/// ```
/// use shmlink::segment::{Disposition, Kind, Segment};
///
/// # let name = format!("doc-builder-{}", std::process::id());
/// let builder = Segment::builder(&name).kind(Kind::Raw).payload_len(4096).unlink_on_drop(true);
/// let (created, how) = builder.open_or_create()?;
/// assert_eq!(how, Disposition::Created);
/// let opened = builder.open()?; // e.g. in another process
/// assert_eq!(opened.payload_len(), 4096);
/// # drop(opened);
/// # drop(created);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SegmentBuilder {
    name: String,
    kind: Option<Kind>,
    fingerprint: Option<u64>,
    payload_len: Option<u64>,
    timeout: Duration,
    unlink_on_drop: bool,
    dir: Option<PathBuf>,
}

impl SegmentBuilder {
    /// A builder for the segment `name` (validated when used, see [`SegmentName`]).
    /// Defaults: kind [`Kind::Raw`], fingerprint 0, payload 0 bytes, timeout
    /// [`DEFAULT_TIMEOUT`], no unlink on drop.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{Kind, SegmentBuilder};
    ///
    /// # let name = format!("doc-seg-builder-new-{}", std::process::id());
    /// let segment = SegmentBuilder::new(&name).unlink_on_drop(true).create()?;
    /// assert_eq!(segment.kind(), Some(Kind::Raw));
    /// assert_eq!(segment.payload_len(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            kind: None,
            fingerprint: None,
            payload_len: None,
            timeout: DEFAULT_TIMEOUT,
            unlink_on_drop: false,
            dir: None,
        }
    }

    /// The kind of object the segment holds; checked on open.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{Kind, OpenError, Segment};
    ///
    /// # let name = format!("doc-seg-builder-kind-{}", std::process::id());
    /// let _seg = Segment::builder(&name).kind(Kind::Typed).unlink_on_drop(true).create()?;
    /// let err = Segment::builder(&name).kind(Kind::Raw).open().unwrap_err();
    /// assert!(matches!(err, OpenError::WrongKind { expected: Kind::Raw, .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// The payload's type fingerprint; checked on open.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{OpenError, Segment};
    ///
    /// # let name = format!("doc-seg-builder-fingerprint-{}", std::process::id());
    /// let _seg = Segment::builder(&name).fingerprint(0xfeed).unlink_on_drop(true).create()?;
    /// let err = Segment::builder(&name).fingerprint(0xbeef).open().unwrap_err();
    /// assert_eq!(err, OpenError::TypeMismatch { expected: 0xbeef, found: 0xfeed });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fingerprint(mut self, fingerprint: u64) -> Self {
        self.fingerprint = Some(fingerprint);
        self
    }

    /// Payload length: the size to create, and (when set) the size required on open.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{OpenError, Segment};
    ///
    /// # let name = format!("doc-seg-builder-payload-len-{}", std::process::id());
    /// let seg = Segment::builder(&name).payload_len(4096).unlink_on_drop(true).create()?;
    /// assert_eq!(seg.payload_len(), 4096);
    /// // An opener that sets a length accepts only that length.
    /// let err = Segment::builder(&name).payload_len(8192).open().unwrap_err();
    /// assert!(matches!(err, OpenError::SizeMismatch { what: "payload length", .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn payload_len(mut self, len: u64) -> Self {
        self.payload_len = Some(len);
        self
    }

    /// How long `open` waits for the creator to publish (and for a cleanup holding the
    /// segment to finish) before it gives up.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmlink::segment::{OpenError, Segment};
    ///
    /// # let name = format!("doc-seg-builder-timeout-{}", std::process::id());
    /// let builder = Segment::builder(&name).timeout(Duration::from_millis(100));
    /// // A missing segment fails at once; the timeout bounds waits for a slow creator.
    /// assert_eq!(builder.open().unwrap_err(), OpenError::NotFound);
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether the creating handle removes the name when dropped. Handles that opened
    /// an existing segment never unlink on drop.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{OpenError, Segment};
    ///
    /// # let name = format!("doc-seg-builder-unlink-on-drop-{}", std::process::id());
    /// let seg = Segment::builder(&name).unlink_on_drop(true).create()?;
    /// drop(seg);
    /// assert_eq!(Segment::builder(&name).open().unwrap_err(), OpenError::NotFound);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unlink_on_drop(mut self, yes: bool) -> Self {
        self.unlink_on_drop = yes;
        self
    }

    /// Places the segment in the directory `dir`, as the file
    /// `dir/shmlink.<euid>.<name>`, instead of in `/dev/shm`: the way out of
    /// squatting.
    ///
    /// `/dev/shm` is writable by every local user, so anyone can create the name
    /// `shmlink.<our uid>.<name>` before we do; `create`, `open` and `open_or_create`
    /// then fail with `ForeignOwner` ([`CreateError::ForeignOwner`],
    /// [`OpenError::ForeignOwner`]) and only the squatter or root can free the name.
    /// In a directory that only we can write nobody else can create anything, so no
    /// name in it can be taken. The directory must be owned by our effective uid and
    /// not writable by group or others (else `DirectoryNotPrivate`); it should be on a
    /// memory filesystem (tmpfs), such as `$XDG_RUNTIME_DIR` (`/run/user/<uid>`, mode
    /// 0700, made by systemd-logind for each logged-in user) or a 0700 directory of
    /// our own in `/dev/shm`; on a disk filesystem the segment works but its pages are
    /// written back to disk. Every process using the segment must name the same
    /// directory.
    ///
    /// Creating, opening, `unlink_on_drop`, [`Segment::unlink`] and the stale-segment
    /// handling of `open_or_create` work in the directory; the free functions
    /// [`inspect`], [`list`], [`unlink`] and [`remove_stale`] look in `/dev/shm` only.
    ///
    /// We chose a directory over an alternative prefix because a prefix does not
    /// stop squatting: `/dev/shm` can be listed by everyone, so any name we use, or
    /// will use again after a restart, can be created by someone else first.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::unix::fs::DirBuilderExt;
    /// use shmlink::segment::Segment;
    ///
    /// # let name = format!("doc-seg-builder-dir-{}", std::process::id());
    /// // A directory only we can write, on tmpfs.
    /// let dir = std::path::PathBuf::from(format!("/dev/shm/doc-private-{}", std::process::id()));
    /// std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    /// let seg = Segment::builder(&name).dir(&dir).payload_len(64).unlink_on_drop(true).create()?;
    /// assert!(seg.name().path().starts_with(&dir));
    /// let opened = Segment::builder(&name).dir(&dir).open()?; // same directory
    /// assert_eq!(opened.payload_len(), 64);
    /// # drop((seg, opened));
    /// # std::fs::remove_dir(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// The validated name, in the builder's directory if it has one (which must be
    /// private: owned by us, writable by nobody else).
    fn place(&self) -> Result<SegmentName, Place> {
        let name = SegmentName::new(&self.name)
            .map_err(Place::Name)?
            .in_dir(self.dir.as_deref());
        if let Some(dir) = name.dir() {
            let (owner_uid, mode) = sys::dir_owner_mode(dir).map_err(Place::Os)?;
            if owner_uid != name.uid() || mode & 0o022 != 0 {
                return Err(Place::NotPrivate { owner_uid, mode });
            }
        }
        Ok(name)
    }

    /// Sets kind and fingerprint where the user did not.
    pub(crate) fn typed_defaults(mut self, kind: Kind, fingerprint: u64) -> Self {
        self.kind.get_or_insert(kind);
        self.fingerprint.get_or_insert(fingerprint);
        self
    }

    fn expect(&self) -> Expect {
        Expect {
            kind: Some(self.kind.unwrap_or(Kind::Raw)),
            fingerprint: Some(self.fingerprint.unwrap_or(0)),
            payload_len: self.payload_len,
        }
    }

    /// Creates the segment; fails if the name exists.
    ///
    /// The object is created with `O_EXCL` and mode 0600 (whatever the umask), sized,
    /// every page of it allocated (`posix_fallocate`: a full `/dev/shm` is
    /// [`CreateError::NoSpace`] here, not a `SIGBUS` later), mapped, its header
    /// written, and then the ready flag is published with Release.
    ///
    /// # Errors
    ///
    /// [`CreateError`]: invalid name, already exists, permission denied, too large, or
    /// an OS error with its errno.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{CreateError, Segment};
    ///
    /// # let name = format!("doc-seg-builder-create-{}", std::process::id());
    /// let builder = Segment::builder(&name).payload_len(256).unlink_on_drop(true);
    /// let seg = builder.create()?;
    /// assert!(seg.is_creator());
    /// assert_eq!(builder.create().unwrap_err(), CreateError::AlreadyExists);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(&self) -> Result<Segment, CreateError> {
        self.create_with(|_| ())
    }

    /// Like [`create`](Self::create), but runs `init` on the segment before it is
    /// published, so no opener ever sees the payload before `init` is done.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Segment;
    ///
    /// # let name = format!("doc-seg-builder-create-with-{}", std::process::id());
    /// let builder = Segment::builder(&name).payload_len(64).unlink_on_drop(true);
    /// let _seg = builder.create_with(|seg| {
    ///     // SAFETY: not published yet, so no other process can reach the payload.
    ///     unsafe { seg.payload().write(0, b"ready").unwrap() }
    /// })?;
    /// let opened = builder.open()?;
    /// let mut buf = [0u8; 5];
    /// // SAFETY: the segment is alive and nobody writes the payload any more.
    /// unsafe { opened.payload().read(0, &mut buf)? };
    /// assert_eq!(&buf, b"ready");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_with(&self, init: impl FnOnce(&Segment)) -> Result<Segment, CreateError> {
        let name = self.place()?;
        let payload_len = self.payload_len.unwrap_or(0);
        if payload_len > MAX_PAYLOAD {
            return Err(CreateError::TooLarge {
                requested: payload_len,
                max: MAX_PAYLOAD,
            });
        }
        let spec = HeaderSpec {
            kind: self.kind.unwrap_or(Kind::Raw),
            fingerprint: self.fingerprint.unwrap_or(0),
            payload_len,
            created_unix_ns: sys::unix_now_ns(),
        };
        let deadline = Instant::now() + self.timeout;
        loop {
            match create_once(&name, &spec, deadline, self.unlink_on_drop)? {
                Some(segment) => {
                    init(&segment);
                    segment.header().publish();
                    crate::process::crash::point("segment.create", 4);
                    return Ok(segment);
                }
                // A cleanup judged our fresh object abandoned and removed it: retry.
                None if Instant::now() < deadline => continue,
                None => return Err(CreateError::Os(OsError::new("flock", Errno::EWOULDBLOCK))),
            }
        }
    }

    /// Opens an existing segment and checks it against this builder.
    ///
    /// Steps: `shm_open`; `fstat` (owner must be us; a file larger than a segment may
    /// be is [`OpenError::TooLarge`]); wait, at most the timeout, until the creator has
    /// sized the object and published the ready flag (Acquire); take a shared file
    /// lock that marks us attached (the kernel drops it if we die); check the object
    /// was not unlinked meanwhile and that every byte of it is backed by allocated
    /// memory (creators allocate every page; a sparse file is
    /// [`OpenError::NotBacked`], refused before anything past the header is touched);
    /// then validate one snapshot of the header: magic, layout version, sizes (against
    /// the mapped file), kind, fingerprint and, if set, payload length.
    ///
    /// **Stale segments.** A segment is stale when no live process holds it and a crash
    /// left it behind: its creator died before publishing it, or a process attached to
    /// it died without detaching (the contents may be half-updated). `open` never
    /// attaches to a stale segment: it returns [`OpenError::Stale`] and leaves it in
    /// place for inspection ([`inspect`], `shmlink ls`); [`remove_stale`] or
    /// [`open_or_create`](Self::open_or_create) clear it. A segment whose processes all
    /// detached cleanly is not stale and opens normally.
    ///
    /// # Errors
    ///
    /// Every [`OpenError`] variant but `Create`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{OpenError, Segment};
    ///
    /// # let name = format!("doc-seg-builder-open-{}", std::process::id());
    /// let builder = Segment::builder(&name).payload_len(128);
    /// assert_eq!(builder.open().unwrap_err(), OpenError::NotFound);
    /// let _created = builder.clone().unlink_on_drop(true).create()?;
    /// let opened = builder.open()?; // usually in another process
    /// assert!(!opened.is_creator());
    /// assert_eq!(opened.payload_len(), 128);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(&self) -> Result<Segment, OpenError> {
        let name = self.place()?;
        open_validated(&name, &self.expect(), Instant::now() + self.timeout)
    }

    /// Opens the segment, or creates it if it does not exist. When several processes
    /// race, exactly one creates (`O_EXCL`) and the others open what it publishes.
    ///
    /// A **stale** segment of that name (see [`open`](Self::open)) is removed and a
    /// fresh one created in its place: its contents came from a crash and are not
    /// trusted. A live segment that does not match the builder (kind, fingerprint,
    /// size) is an error, never silently replaced.
    ///
    /// # Errors
    ///
    /// [`OpenError`], with [`OpenError::Create`] if the create step failed.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{Disposition, Segment};
    ///
    /// # let name = format!("doc-seg-builder-open-or-create-{}", std::process::id());
    /// // Every process runs the same code; exactly one of them creates.
    /// let builder = Segment::builder(&name).payload_len(1024).unlink_on_drop(true);
    /// let (seg, how) = builder.open_or_create()?;
    /// match how {
    ///     Disposition::Created => assert!(seg.is_creator()),
    ///     Disposition::Opened => assert!(!seg.is_creator()),
    /// }
    /// assert_eq!(seg.payload_len(), 1024);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_or_create(&self) -> Result<(Segment, Disposition), OpenError> {
        let name = self.place()?;
        let deadline = Instant::now() + self.timeout;
        let mut backoff = Backoff::new();
        loop {
            match self.create() {
                Ok(segment) => return Ok((segment, Disposition::Created)),
                Err(CreateError::AlreadyExists) => {}
                Err(e) => return Err(e.into()),
            }
            match open_validated(&name, &self.expect(), deadline) {
                Ok(segment) => return Ok((segment, Disposition::Opened)),
                // Removed between our create and open: try to create again.
                Err(OpenError::NotFound) if Instant::now() < deadline => {}
                Err(OpenError::Stale(_)) if Instant::now() < deadline => {
                    if !remove_stale_named(&name)? {
                        backoff.sleep();
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Why [`SegmentBuilder::place`] failed.
enum Place {
    Name(NameError),
    NotPrivate { owner_uid: u32, mode: u32 },
    Os(Errno),
}

impl From<Place> for CreateError {
    fn from(p: Place) -> Self {
        match p {
            Place::Name(e) => CreateError::InvalidName(e),
            Place::NotPrivate { owner_uid, mode } => {
                CreateError::DirectoryNotPrivate { owner_uid, mode }
            }
            Place::Os(Errno::EACCES | Errno::EPERM) => CreateError::PermissionDenied,
            Place::Os(e) => CreateError::Os(OsError::new("stat", e)),
        }
    }
}

impl From<Place> for OpenError {
    fn from(p: Place) -> Self {
        match p {
            Place::Name(e) => OpenError::InvalidName(e),
            Place::NotPrivate { owner_uid, mode } => {
                OpenError::DirectoryNotPrivate { owner_uid, mode }
            }
            Place::Os(e) => open_error("stat", e),
        }
    }
}

/// The object named `name` exists and belongs to someone other than the user whose
/// namespace the name is in: a squatter's. `None` if it is gone or is ours.
fn foreign_owner(name: &SegmentName) -> Option<(u32, u32)> {
    sys::owner_of(name)
        .filter(|&owner| owner != name.uid())
        .map(|owner| (owner, name.uid()))
}

/// The error of a failed operation on the name itself (`shm_open`, `shm_unlink`):
/// access refused because someone else owns the object is [`OpenError::ForeignOwner`].
fn name_error(name: &SegmentName, op: &'static str, e: Errno) -> OpenError {
    match e {
        Errno::EACCES | Errno::EPERM => match foreign_owner(name) {
            Some((owner_uid, expected_uid)) => OpenError::ForeignOwner {
                owner_uid,
                expected_uid,
            },
            None => OpenError::PermissionDenied,
        },
        e => open_error(op, e),
    }
}

/// One creation attempt. `Ok(None)`: our object was removed by a concurrent cleanup
/// before we locked it; the caller retries.
fn create_once(
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
    };
    Ok(Some(Segment {
        map,
        lock,
        name: name.clone(),
        snapshot,
        identity: (info.dev, info.ino),
        unlink_on_drop,
        created: true,
    }))
}

/// Takes the shared (attached) lock, waiting out an exclusive lock held by a cleanup.
fn lock_shared(file: File, deadline: Instant) -> Result<Flock<File>, Errno> {
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
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_micros(20))
    }
    fn sleep(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(Duration::from_millis(2));
    }
}

fn open_error(op: &'static str, e: Errno) -> OpenError {
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
fn check_file(info: &FileInfo, len: u64) -> Result<(), OpenError> {
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

fn header_of(map: &MmapRaw) -> &SegmentHeader {
    debug_assert!(map.len() >= HEADER_SIZE);
    // SAFETY: the mapping is at least HEADER_SIZE bytes (checked by every caller) and
    // page-aligned; SegmentHeader is ShmSafe (repr(C), only integer atomics, valid for
    // any bit pattern, interior-mutable), so a shared reference to bytes that other
    // processes write concurrently is sound. The reference borrows `map`, which keeps
    // the mapping alive.
    unsafe { &*map.as_ptr().cast::<SegmentHeader>() }
}

fn open_validated(
    name: &SegmentName,
    expect: &Expect,
    deadline: Instant,
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
                    return Err(OpenError::Stale(StaleInfo {
                        creator: Some(snap.creator),
                        reason: StaleReason::CrashedWhileAttached {
                            attached: snap.attached,
                        },
                    }));
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
            Err((file, Errno::EWOULDBLOCK)) => match lock_shared(file, deadline) {
                Ok(lock) => lock,
                Err(Errno::EWOULDBLOCK) => {
                    return Err(OpenError::Busy {
                        waited: started.elapsed(),
                    });
                }
                Err(e) => return Err(OpenError::Os(OsError::new("flock", e))),
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
        });
    }
}

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
    map: MmapRaw,
    lock: Flock<File>,
    name: SegmentName,
    snapshot: HeaderSnapshot,
    identity: (u64, u64),
    unlink_on_drop: bool,
    created: bool,
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
    /// new `open`s get [`OpenError::NotFound`].
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

impl Drop for Segment {
    fn drop(&mut self) {
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
    let (held, _lock) = match sys::try_lock(file, true) {
        Ok(lock) => (false, Some(lock)),
        Err((_, Errno::EWOULDBLOCK)) => (true, None),
        Err((_, e)) => return Err(OpenError::Os(OsError::new("flock", e))),
    };
    out.status = judge(map.as_ref(), &info, held, &mut out.header);
    Ok(out)
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
    let dir = std::fs::read_dir("/dev/shm").map_err(|e| OsError::from_io("read_dir", &e))?;
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let file_name = entry.file_name();
        let Some((_, name)) = file_name.to_str().and_then(SegmentName::parse_file_name) else {
            continue;
        };
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

fn remove_stale_named(name: &SegmentName) -> Result<bool, OpenError> {
    let file = match sys::open_existing(name) {
        Ok(f) => f,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(name_error(name, "shm_open", e)),
    };
    let lock = match sys::try_lock(file, true) {
        Ok(lock) => lock,
        Err((_, Errno::EWOULDBLOCK)) => return Ok(false),
        Err((_, e)) => return Err(OpenError::Os(OsError::new("flock", e))),
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
    if !matches!(
        judge(map.as_ref(), &info, false, &mut header),
        Status::Stale(_)
    ) {
        return Ok(false);
    }
    if sys::name_identity(name) != Some((info.dev, info.ino)) {
        return Ok(false);
    }
    match sys::unlink(name) {
        Ok(()) | Err(Errno::ENOENT) => Ok(true),
        Err(e) => Err(name_error(name, "shm_unlink", e)),
    }
}

//! Typed errors of the segment operations.

use core::fmt;
use std::time::Duration;

use super::header::{Kind, ProcessId};

/// Why a segment name was refused.
///
/// # Examples
///
/// ```
/// use shmlink::segment::{NameError, SegmentName};
///
/// match SegmentName::new("a/b") {
///     Err(NameError::InvalidByte { byte, index }) => assert_eq!((byte, index), (b'/', 1)),
///     other => panic!("unexpected: {other:?}"),
/// }
/// assert_eq!(SegmentName::new(""), Err(NameError::Empty));
/// assert_eq!(SegmentName::new(".hidden"), Err(NameError::LeadingDot));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// Longer than [`MAX_NAME_LEN`](super::MAX_NAME_LEN) bytes.
    TooLong {
        /// Length given.
        len: usize,
    },
    /// A byte outside `[A-Za-z0-9._-]`.
    InvalidByte {
        /// The byte.
        byte: u8,
        /// Where it is.
        index: usize,
    },
    /// Starts with `.` (hidden, and `.`/`..` are not names).
    LeadingDot,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("segment name is empty"),
            NameError::TooLong { len } => write!(
                f,
                "segment name is {len} bytes long, at most {} allowed",
                super::MAX_NAME_LEN
            ),
            NameError::InvalidByte { byte, index } => write!(
                f,
                "segment name has byte {byte:#04x} at {index}; allowed are A-Z a-z 0-9 . _ -"
            ),
            NameError::LeadingDot => f.write_str("segment name starts with '.'"),
        }
    }
}

impl std::error::Error for NameError {}

/// An operating-system error: the failing call and its errno.
///
/// # Examples
///
/// ```
/// use shmlink::segment::OsError;
///
/// let e = OsError { op: "ftruncate", errno: 28 }; // ENOSPC
/// assert_eq!(e.to_io_error().kind(), std::io::ErrorKind::StorageFull);
/// assert!(e.to_string().starts_with("ftruncate failed: "));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsError {
    /// The call that failed (`"shm_open"`, `"mmap"`, ...).
    pub op: &'static str,
    /// The raw errno.
    pub errno: i32,
}

impl OsError {
    #[cfg(not(shmlink_loom))]
    pub(crate) fn new(op: &'static str, errno: nix::errno::Errno) -> Self {
        Self {
            op,
            errno: errno as i32,
        }
    }

    #[cfg(not(shmlink_loom))]
    pub(crate) fn from_io(op: &'static str, e: &std::io::Error) -> Self {
        Self {
            op,
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        }
    }

    /// The error as a `std::io::Error`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::list;
    ///
    /// // Fit into code that speaks `std::io`.
    /// fn segment_count() -> std::io::Result<usize> {
    ///     Ok(list().map_err(|e| e.to_io_error())?.len())
    /// }
    /// # segment_count()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn to_io_error(&self) -> std::io::Error {
        std::io::Error::from_raw_os_error(self.errno)
    }
}

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.op, self.to_io_error())
    }
}

impl std::error::Error for OsError {}

/// Why a segment counts as stale: left behind by a process that died.
///
/// # Examples
///
/// ```
/// use shmlink::segment::{OpenError, Segment, StaleReason};
///
/// # let name = format!("doc-error-stale-reason-{}", std::process::id());
/// let seg = Segment::builder(&name).create()?;
/// seg.header().attach(); // as if a second process had attached and then crashed
/// drop(seg);
/// match Segment::builder(&name).open() {
///     Err(OpenError::Stale(info)) => match info.reason {
///         StaleReason::CrashedWhileAttached { attached } => assert_eq!(attached, 1),
///         StaleReason::DiedBeforeReady => panic!("the creator did publish it"),
///     },
///     other => panic!("unexpected: {other:?}"),
/// }
/// # shmlink::segment::remove_stale(&name)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    /// The creator died before it published the ready flag.
    DiedBeforeReady,
    /// Nobody is attached, but `attached` processes never detached cleanly: they died
    /// while attached, so the contents may be half-updated.
    CrashedWhileAttached {
        /// Attachments that were never released.
        attached: u32,
    },
}

/// A stale segment: no live process holds it and a crash left it behind.
///
/// # Examples
///
/// ```
/// use shmlink::segment::{OpenError, Segment, remove_stale};
///
/// # let name = format!("doc-error-stale-info-{}", std::process::id());
/// let seg = Segment::builder(&name).create()?;
/// seg.header().attach(); // as if a second process had attached and then crashed
/// drop(seg);
/// let Err(OpenError::Stale(info)) = Segment::builder(&name).open() else { panic!("not stale") };
/// assert_eq!(info.creator.map(|c| c.pid), Some(std::process::id()));
/// eprintln!("removing stale segment {name}: {info}");
/// assert!(remove_stale(&name)?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleInfo {
    /// Who created it (`None` if it died before recording itself).
    pub creator: Option<ProcessId>,
    /// Why it is stale.
    pub reason: StaleReason,
}

impl fmt::Display for StaleInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.creator {
            Some(c) => write!(f, "creator pid {}", c.pid)?,
            None => f.write_str("unknown creator")?,
        }
        match self.reason {
            StaleReason::DiedBeforeReady => f.write_str(" died before publishing it"),
            StaleReason::CrashedWhileAttached { attached } => write!(
                f,
                "; nobody is attached but {attached} attachment(s) ended without detaching"
            ),
        }
    }
}

/// Errors of [`SegmentBuilder::create`](super::SegmentBuilder::create).
///
/// # Examples
///
/// ```
/// use shmlink::segment::{CreateError, Segment};
///
/// # let name = format!("doc-error-create-{}", std::process::id());
/// let _first = Segment::builder(&name).unlink_on_drop(true).create()?;
/// match Segment::builder(&name).create() {
///     Err(CreateError::AlreadyExists) => {} // someone else was first: open it instead
///     Err(CreateError::NoSpace { requested }) => panic!("/dev/shm is full ({requested} B)"),
///     Err(e) => return Err(e.into()),
///     Ok(_) => unreachable!("the name is taken"),
/// }
/// assert!(matches!(Segment::builder("a/b").create(), Err(CreateError::InvalidName(_))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CreateError {
    /// The name is not valid.
    InvalidName(NameError),
    /// A segment of that name exists.
    AlreadyExists,
    /// An object of that name exists and belongs to another user: someone who can
    /// write `/dev/shm` created it in our namespace first (squatting). Only its owner
    /// or root can remove it; until then use another name or a private directory
    /// ([`SegmentBuilder::dir`](super::SegmentBuilder::dir)).
    ForeignOwner {
        /// Owner of the object found.
        owner_uid: u32,
        /// The uid whose namespace the name is in (ours).
        expected_uid: u32,
    },
    /// The directory chosen with [`SegmentBuilder::dir`](super::SegmentBuilder::dir)
    /// is not private: owned by another user, or writable by group or others, so
    /// someone else could squat on names in it.
    DirectoryNotPrivate {
        /// Owner of the directory.
        owner_uid: u32,
        /// Its permission bits.
        mode: u32,
    },
    /// The OS refused access (EACCES/EPERM).
    PermissionDenied,
    /// Not enough room in `/dev/shm` for the segment (ENOSPC).
    NoSpace {
        /// Bytes requested (header included).
        requested: u64,
    },
    /// The payload is larger than the crate allows.
    TooLarge {
        /// Bytes requested.
        requested: u64,
        /// The limit.
        max: u64,
    },
    /// Another system call failed.
    Os(OsError),
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("")?;
        self.fmt_reason(f)
    }
}

impl CreateError {
    /// The error, naming the segment `name`: "cannot create segment `name`: why".
    pub(crate) fn fmt_for(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot create segment `{name}`: ")?;
        self.fmt_reason(f)
    }

    /// Why, without the prefix.
    fn fmt_reason(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::InvalidName(e) => write!(f, "{e}"),
            CreateError::AlreadyExists => f.write_str("it already exists"),
            CreateError::ForeignOwner {
                owner_uid,
                expected_uid,
            } => write!(f, "{}", ForeignOwnerText(*owner_uid, *expected_uid)),
            CreateError::DirectoryNotPrivate { owner_uid, mode } => {
                write!(f, "{}", DirectoryText(*owner_uid, *mode))
            }
            CreateError::PermissionDenied => f.write_str("permission denied"),
            CreateError::NoSpace { requested } => {
                write!(f, "no room for {requested} bytes in /dev/shm")
            }
            CreateError::TooLarge { requested, max } => {
                write!(f, "payload of {requested} bytes exceeds the limit of {max}")
            }
            CreateError::Os(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CreateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CreateError::InvalidName(e) => Some(e),
            CreateError::Os(e) => Some(e),
            _ => None,
        }
    }
}

/// Errors of [`SegmentBuilder::open`](super::SegmentBuilder::open) and
/// [`SegmentBuilder::open_or_create`](super::SegmentBuilder::open_or_create).
///
/// Whatever bytes a segment holds, opening it ends in one of these, never in a panic
/// or undefined behaviour.
///
/// # Examples
///
/// ```
/// use shmlink::segment::{OpenError, Segment};
///
/// # let name = format!("doc-error-open-{}", std::process::id());
/// match Segment::builder(&name).open() {
///     Ok(segment) => println!("opened {}", segment.name()),
///     Err(OpenError::NotFound) => println!("not created yet: try again later"),
///     Err(OpenError::Stale(info)) => println!("left behind by a crash: {info}"),
///     Err(e @ (OpenError::WrongKind { .. } | OpenError::TypeMismatch { .. })) => {
///         println!("built from another version: {e}")
///     }
///     Err(e) => return Err(e.into()),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// The name is not valid.
    InvalidName(NameError),
    /// No segment of that name exists.
    NotFound,
    /// The OS refused access (EACCES/EPERM).
    PermissionDenied,
    /// The object of that name belongs to another user, not to the one whose
    /// namespace the name is in: someone who can write `/dev/shm` created it first
    /// (squatting). It is never opened; only its owner or root can remove it. Use
    /// another name, or a private directory
    /// ([`SegmentBuilder::dir`](super::SegmentBuilder::dir)).
    ForeignOwner {
        /// Owner of the object found.
        owner_uid: u32,
        /// The uid whose namespace the name is in (ours, for names we open).
        expected_uid: u32,
    },
    /// The directory chosen with [`SegmentBuilder::dir`](super::SegmentBuilder::dir)
    /// is not private: owned by another user, or writable by group or others.
    DirectoryNotPrivate {
        /// Owner of the directory.
        owner_uid: u32,
        /// Its permission bits.
        mode: u32,
    },
    /// Its creator is alive but did not publish the ready flag within the timeout.
    NotInitialized {
        /// How long we waited.
        waited: Duration,
    },
    /// Another process kept the segment locked exclusively (a cleanup in progress)
    /// for the whole timeout.
    Busy {
        /// How long we waited.
        waited: Duration,
    },
    /// The segment was left behind by a process that died; see
    /// [`SegmentBuilder::open`](super::SegmentBuilder::open) for what is done with it.
    Stale(StaleInfo),
    /// The header is not one this build understands (wrong magic, layout version,
    /// header size or payload offset).
    IncompatibleLayout {
        /// Which field.
        field: &'static str,
        /// What this build expects.
        expected: u64,
        /// What the segment holds.
        found: u64,
    },
    /// The segment holds a different kind of object.
    WrongKind {
        /// Kind asked for.
        expected: Kind,
        /// Kind code found.
        found: u32,
    },
    /// The payload type's fingerprint differs (another type or layout version).
    TypeMismatch {
        /// Fingerprint asked for.
        expected: u64,
        /// Fingerprint found.
        found: u64,
        /// The type asked for.
        expected_type: super::header::TypeName,
        /// The type the creator recorded (empty if it recorded none).
        found_type: super::header::TypeName,
    },
    /// A size disagrees: the file against the header, or the payload against what the
    /// opener asked for.
    SizeMismatch {
        /// Which size.
        what: &'static str,
        /// Size expected.
        expected: u64,
        /// Size found.
        found: u64,
    },
    /// The file is larger than any segment may be (header plus
    /// [`MAX_PAYLOAD`](super::MAX_PAYLOAD)); refused before it is mapped.
    TooLarge {
        /// File size in bytes.
        len: u64,
        /// Largest file a segment may have.
        max: u64,
    },
    /// The file has fewer bytes of memory allocated than its size: it is sparse,
    /// which no shmlink creator leaves behind (every page is allocated at creation).
    /// Touching the holes would allocate memory on our account (and fail with
    /// `SIGBUS` once `/dev/shm` is full), so the segment is refused before any byte
    /// past the header is touched.
    NotBacked {
        /// File size (and mapped length) in bytes.
        len: u64,
        /// Bytes of memory allocated to it (`st_blocks * 512`).
        allocated: u64,
    },
    /// A header field holds a value no writer produces.
    Corrupt {
        /// Which field.
        field: &'static str,
        /// The value found.
        found: u64,
    },
    /// `open_or_create` had to create the segment, and that failed.
    Create(CreateError),
    /// Another system call failed.
    Os(OsError),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let OpenError::Create(e) = self {
            // open_or_create's create step: say that, not "open".
            return write!(f, "{e}");
        }
        f.write_str("cannot open segment: ")?;
        self.fmt_reason(f)
    }
}

impl OpenError {
    /// The error, naming the segment `name`: "cannot open segment `name`: why".
    pub(crate) fn fmt_for(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let OpenError::Create(e) = self {
            return e.fmt_for(name, f);
        }
        write!(f, "cannot open segment `{name}`: ")?;
        self.fmt_reason(f)
    }

    /// Why, without the prefix.
    fn fmt_reason(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::InvalidName(e) => write!(f, "{e}"),
            OpenError::NotFound => f.write_str("no such segment"),
            OpenError::PermissionDenied => f.write_str("permission denied"),
            OpenError::ForeignOwner {
                owner_uid,
                expected_uid,
            } => write!(f, "{}", ForeignOwnerText(*owner_uid, *expected_uid)),
            OpenError::DirectoryNotPrivate { owner_uid, mode } => {
                write!(f, "{}", DirectoryText(*owner_uid, *mode))
            }
            OpenError::NotInitialized { waited } => {
                write!(
                    f,
                    "creator did not finish initialising it within {waited:?}"
                )
            }
            OpenError::Busy { waited } => {
                write!(f, "locked by a cleanup for longer than {waited:?}")
            }
            OpenError::Stale(info) => write!(f, "stale segment: {info}"),
            OpenError::IncompatibleLayout {
                field,
                expected,
                found,
            } => write!(
                f,
                "incompatible layout: {field} is {found:#x}, expected {expected:#x}"
            ),
            OpenError::WrongKind { expected, found } => match Kind::from_code(*found) {
                Some(k) => write!(f, "holds a {k} object, expected {expected}"),
                None => write!(f, "holds unknown kind {found}, expected {expected}"),
            },
            OpenError::TypeMismatch {
                expected,
                found,
                expected_type,
                found_type,
            } => {
                let name = |t: &super::header::TypeName| {
                    if t.is_empty() {
                        "a type of unrecorded name".to_owned()
                    } else {
                        format!("`{t}`")
                    }
                };
                write!(
                    f,
                    "holds {} (fingerprint {found:#018x}), expected {} \
                     (fingerprint {expected:#018x})",
                    name(found_type),
                    name(expected_type)
                )?;
                if expected_type == found_type && !found_type.is_empty() {
                    f.write_str(": same name, another layout or version")?;
                }
                Ok(())
            }
            OpenError::SizeMismatch {
                what,
                expected,
                found,
            } => write!(f, "{what} is {found}, expected {expected}"),
            OpenError::TooLarge { len, max } => write!(
                f,
                "file of {len} bytes is larger than a segment may be ({max} bytes)"
            ),
            OpenError::NotBacked { len, allocated } => write!(
                f,
                "file of {len} bytes has only {allocated} bytes of memory behind it \
                 (sparse: not created by shmlink, or holes punched since)"
            ),
            OpenError::Corrupt { field, found } => {
                write!(f, "corrupt header: {field} = {found:#x}")
            }
            OpenError::Create(e) => write!(f, "{e}"),
            OpenError::Os(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::InvalidName(e) => Some(e),
            OpenError::Create(e) => Some(e),
            OpenError::Os(e) => Some(e),
            _ => None,
        }
    }
}

impl From<NameError> for OpenError {
    fn from(e: NameError) -> Self {
        OpenError::InvalidName(e)
    }
}

impl From<NameError> for CreateError {
    fn from(e: NameError) -> Self {
        CreateError::InvalidName(e)
    }
}

impl From<CreateError> for OpenError {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::InvalidName(n) => OpenError::InvalidName(n),
            CreateError::PermissionDenied => OpenError::PermissionDenied,
            CreateError::ForeignOwner {
                owner_uid,
                expected_uid,
            } => OpenError::ForeignOwner {
                owner_uid,
                expected_uid,
            },
            CreateError::DirectoryNotPrivate { owner_uid, mode } => {
                OpenError::DirectoryNotPrivate { owner_uid, mode }
            }
            other => OpenError::Create(other),
        }
    }
}

/// The text of a `ForeignOwner` error, shared by both enums.
struct ForeignOwnerText(u32, u32);

impl fmt::Display for ForeignOwnerText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the name is taken by an object of uid {}, in the namespace of uid {} \
             (squatted: only its owner or root can remove it; use another name or a \
             private directory)",
            self.0, self.1
        )
    }
}

/// The text of a `DirectoryNotPrivate` error, shared by both enums.
struct DirectoryText(u32, u32);

impl fmt::Display for DirectoryText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "directory owned by uid {} with mode {:04o} is not private (it must be ours \
             and writable by nobody else)",
            self.0, self.1
        )
    }
}

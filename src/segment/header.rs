//! The segment header: the first [`HEADER_SIZE`] bytes of every shmlink segment.
//!
//! Byte layout (all fields little-endian, all accessed as atomics because another
//! process may write them at any time):
//!
//! | offset | size | field            | meaning                                              |
//! |-------:|-----:|------------------|------------------------------------------------------|
//! | 0      | 8    | `magic`          | [`MAGIC`], `b"shmlink\0"`                            |
//! | 8      | 4    | `layout_version` | [`LAYOUT_VERSION`] of this header                    |
//! | 12     | 4    | `state`          | 0 = being created, 1 = ready (published with Release) |
//! | 16     | 4    | `header_size`    | [`HEADER_SIZE`]                                      |
//! | 20     | 4    | `kind`           | [`Kind`] code of the object in the payload           |
//! | 24     | 8    | `fingerprint`    | type fingerprint of the payload                      |
//! | 32     | 8    | `total_size`     | header + payload bytes; must equal the file size     |
//! | 40     | 8    | `payload_offset` | [`HEADER_SIZE`]                                      |
//! | 48     | 8    | `payload_len`    | payload bytes                                        |
//! | 56     | 4    | `creator_pid`    | pid of the creator (written first)                   |
//! | 60     | 4    | `creator_uid`    | effective uid of the creator                         |
//! | 64     | 8    | `creator_start`  | creator's start time, clock ticks after boot         |
//! | 72     | 8    | `created_unix_ns`| creation wall-clock time                             |
//! | 80     | 4    | `attached`       | processes attached and not yet cleanly detached      |
//! | 84     | 4    | reserved         | zero                                                 |
//! | 88     | 32   | `type_name`      | the payload type's name (its last 32 bytes, UTF-8, zero-padded), for messages only |
//! | 120    | 8    | reserved         | zero                                                 |
//!
//! Protocol: the creator writes `creator_uid` and `creator_start` (Relaxed), then
//! `creator_pid` with a **Release** store (an opener that loads a non-zero pid with
//! **Acquire** sees the whole identity), then every other field with Relaxed
//! stores, then `state = READY` with a **Release** store. An opener loads `state` with
//! **Acquire**; once it reads READY, every field written before is visible, and it
//! [`snapshot`](SegmentHeader::snapshot)s each field exactly once and validates the
//! snapshot, never the live header.

use core::fmt;

use super::error::OpenError;
use crate::region::ShmSafe;
use crate::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// `b"shmlink\0"` read as a little-endian u64.
///
/// # Examples
///
/// ```
/// use shmlink::segment::header::MAGIC;
///
/// assert_eq!(&MAGIC.to_le_bytes(), b"shmlink\0");
/// ```
pub const MAGIC: u64 = u64::from_le_bytes(*b"shmlink\0");
/// Version of the header layout described in this module.
///
/// # Examples
///
/// ```
/// use shmlink::segment::Segment;
/// use shmlink::segment::header::LAYOUT_VERSION;
///
/// # let name = format!("doc-header-layout-version-{}", std::process::id());
/// let seg = Segment::builder(&name).unlink_on_drop(true).create()?;
/// assert_eq!(seg.header().snapshot().layout_version, LAYOUT_VERSION);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const LAYOUT_VERSION: u32 = 1;
/// Size of the header; the payload starts right after it (128-byte aligned).
///
/// # Examples
///
/// ```
/// use shmlink::segment::header::{HEADER_SIZE, SegmentHeader};
///
/// assert_eq!(size_of::<SegmentHeader>(), HEADER_SIZE);
/// assert_eq!(HEADER_SIZE % 128, 0); // keeps the payload 128-byte aligned
/// ```
pub const HEADER_SIZE: usize = 128;

const STATE_CREATING: u32 = 0;
const STATE_READY: u32 = 1;

/// What a segment holds. Stored as a `u32` code in the header and checked on open.
///
/// # Examples
///
/// ```
/// use shmlink::segment::Kind;
///
/// let kind = Kind::SpscRing;
/// assert_eq!(Kind::from_code(kind.code()), Some(kind));
/// assert_eq!(kind.to_string(), "spsc");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// Untyped bytes managed by the user.
    Raw,
    /// A [`ShmSafe`] control block plus a byte area ([`ShmRegion`](super::ShmRegion)).
    Typed,
    /// A single-producer single-consumer ring ([`crate::ring::spsc`]).
    SpscRing,
    /// A multi-producer multi-consumer ring ([`crate::ring::mpmc`]).
    MpmcRing,
    /// A ring of variable-length frames ([`crate::ring::frame`]).
    FrameRing,
    /// A counting semaphore ([`crate::lock::Semaphore`]).
    Semaphore,
    /// A Bakery lock ([`crate::lock::BakeryLock`]).
    BakeryLock,
    /// A Bakery lock with its protected value ([`crate::lock::BakeryMutex`]).
    BakeryMutex,
    /// A seqlock-protected value ([`crate::lock::SeqLock`]).
    SeqLock,
    /// Two frame rings, one per direction ([`crate::ring::duplex`]): a connection of
    /// the shared-memory transport.
    Duplex,
}

impl Kind {
    /// The code stored in the header.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Kind;
    ///
    /// assert_eq!(Kind::Raw.code(), 1);
    /// assert_eq!(Kind::Typed.code(), 2); // 0 is never a kind: a zeroed header has none
    /// ```
    pub const fn code(self) -> u32 {
        match self {
            Kind::Raw => 1,
            Kind::Typed => 2,
            Kind::SpscRing => 3,
            Kind::MpmcRing => 4,
            Kind::FrameRing => 5,
            Kind::Semaphore => 6,
            Kind::BakeryLock => 7,
            Kind::BakeryMutex => 8,
            Kind::SeqLock => 9,
            Kind::Duplex => 10,
        }
    }

    /// The kind for a header code, if it is one this build knows.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Kind;
    ///
    /// assert_eq!(Kind::from_code(4), Some(Kind::MpmcRing));
    /// assert_eq!(Kind::from_code(0), None);
    /// assert_eq!(Kind::from_code(999), None); // e.g. written by a newer build
    /// ```
    pub const fn from_code(code: u32) -> Option<Kind> {
        match code {
            1 => Some(Kind::Raw),
            2 => Some(Kind::Typed),
            3 => Some(Kind::SpscRing),
            4 => Some(Kind::MpmcRing),
            5 => Some(Kind::FrameRing),
            6 => Some(Kind::Semaphore),
            7 => Some(Kind::BakeryLock),
            8 => Some(Kind::BakeryMutex),
            9 => Some(Kind::SeqLock),
            10 => Some(Kind::Duplex),
            _ => None,
        }
    }

    /// Short lowercase name, as `shmlink ls` prints it.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Kind;
    ///
    /// assert_eq!(Kind::FrameRing.name(), "frames");
    /// assert_eq!(Kind::Typed.to_string(), Kind::Typed.name()); // Display prints the name
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::Typed => "typed",
            Kind::SpscRing => "spsc",
            Kind::MpmcRing => "mpmc",
            Kind::FrameRing => "frames",
            Kind::Semaphore => "semaphore",
            Kind::BakeryLock => "bakery",
            Kind::BakeryMutex => "bakery-mutex",
            Kind::SeqLock => "seqlock",
            Kind::Duplex => "duplex",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Identity of a process: pid, effective uid and start time (clock ticks after boot,
/// field 22 of `/proc/PID/stat`). Pid plus start time tells a live process from a
/// different one that reused the pid.
///
/// # Examples
///
/// ```
/// use shmlink::segment::Segment;
/// use shmlink::process::{current_token, token_of};
///
/// # let name = format!("doc-header-process-id-{}", std::process::id());
/// let seg = Segment::builder(&name).unlink_on_drop(true).create()?;
/// let creator = seg.creator();
/// assert_eq!(creator.pid, std::process::id());
/// assert_eq!(token_of(creator.pid, creator.start_ticks), current_token());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    /// Process id.
    pub pid: u32,
    /// Effective user id.
    pub uid: u32,
    /// Start time in clock ticks after boot.
    pub start_ticks: u64,
}

/// What the creator writes into a new header.
///
/// # Examples
///
/// ```
/// use shmlink::segment::header::{HeaderSpec, SegmentHeader};
/// use shmlink::segment::Kind;
/// use shmlink::region::ShmSafe;
///
/// let spec = HeaderSpec {
///     kind: Kind::Raw,
///     fingerprint: 0,
///     payload_len: 64,
///     created_unix_ns: 0,
///     type_name: Default::default(),
/// };
/// let header = SegmentHeader::new_zeroed();
/// header.write_layout(&spec);
/// assert_eq!(header.snapshot().payload_len, 64);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderSpec {
    /// Object kind.
    pub kind: Kind,
    /// Type fingerprint of the payload.
    pub fingerprint: u64,
    /// Payload length in bytes.
    pub payload_len: u64,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_unix_ns: u64,
    /// The payload type's name (for messages).
    pub type_name: TypeName,
}

impl HeaderSpec {
    /// Header plus payload, or `None` if it overflows a u64.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Kind;
    /// use shmlink::segment::header::{HEADER_SIZE, HeaderSpec};
    ///
    /// let mut spec =
    ///     HeaderSpec {
    ///     kind: Kind::Raw,
    ///     fingerprint: 0,
    ///     payload_len: 64,
    ///     created_unix_ns: 0,
    ///     type_name: Default::default(),
    /// };
    /// assert_eq!(spec.total_size(), Some(HEADER_SIZE as u64 + 64));
    /// spec.payload_len = u64::MAX;
    /// assert_eq!(spec.total_size(), None);
    /// ```
    pub const fn total_size(&self) -> Option<u64> {
        self.payload_len.checked_add(HEADER_SIZE as u64)
    }
}

/// The header as it sits in shared memory.
///
/// # Examples
///
/// The creator's protocol, on a header on the heap (in a segment it is the first
/// [`HEADER_SIZE`] bytes of the mapping, see [`Segment::header`](super::Segment::header)):
///
/// ```
/// use shmlink::segment::header::{HeaderSpec, HeaderState, SegmentHeader};
/// use shmlink::segment::{Kind, ProcessId};
/// use shmlink::region::ShmSafe;
///
/// let header = SegmentHeader::new_zeroed();
/// header.write_creator(&ProcessId { pid: 42, uid: 1000, start_ticks: 7 });
/// let spec = HeaderSpec {
///     kind: Kind::Raw,
///     fingerprint: 0,
///     payload_len: 64,
///     created_unix_ns: 0,
///     type_name: Default::default(),
/// };
/// header.write_layout(&spec);
/// assert_eq!(header.state()?, HeaderState::Creating);
/// header.publish();
/// assert_eq!(header.state()?, HeaderState::Ready);
/// # Ok::<(), shmlink::segment::OpenError>(())
/// ```
#[repr(C)]
pub struct SegmentHeader {
    magic: AtomicU64,
    layout_version: AtomicU32,
    state: AtomicU32,
    header_size: AtomicU32,
    kind: AtomicU32,
    fingerprint: AtomicU64,
    total_size: AtomicU64,
    payload_offset: AtomicU64,
    payload_len: AtomicU64,
    creator_pid: AtomicU32,
    creator_uid: AtomicU32,
    creator_start: AtomicU64,
    created_unix_ns: AtomicU64,
    attached: AtomicU32,
    _reserved0: AtomicU32,
    type_name: [AtomicU64; 4],
    _reserved: AtomicU64,
}

#[cfg(not(shmlink_loom))]
const _: () = {
    assert!(size_of::<SegmentHeader>() == HEADER_SIZE);
    assert!(align_of::<SegmentHeader>() == 8);
    assert!(core::mem::offset_of!(SegmentHeader, state) == 12);
    assert!(core::mem::offset_of!(SegmentHeader, creator_pid) == 56);
    assert!(core::mem::offset_of!(SegmentHeader, attached) == 80);
    assert!(core::mem::offset_of!(SegmentHeader, type_name) == 88);
};

// SAFETY: repr(C), only integer atomics (any bit pattern valid, interior-mutable), no
// pointers, align 8, size asserted above.
unsafe impl ShmSafe for SegmentHeader {
    const TYPE_NAME: &'static str = "shmlink::SegmentHeader";
    const VERSION: u32 = LAYOUT_VERSION;
    fn new_zeroed() -> Self {
        Self {
            magic: AtomicU64::new(0),
            layout_version: AtomicU32::new(0),
            state: AtomicU32::new(0),
            header_size: AtomicU32::new(0),
            kind: AtomicU32::new(0),
            fingerprint: AtomicU64::new(0),
            total_size: AtomicU64::new(0),
            payload_offset: AtomicU64::new(0),
            payload_len: AtomicU64::new(0),
            creator_pid: AtomicU32::new(0),
            creator_uid: AtomicU32::new(0),
            creator_start: AtomicU64::new(0),
            created_unix_ns: AtomicU64::new(0),
            attached: AtomicU32::new(0),
            _reserved0: AtomicU32::new(0),
            type_name: core::array::from_fn(|_| AtomicU64::new(0)),
            _reserved: AtomicU64::new(0),
        }
    }
}

/// Publication state of a header as seen by an opener.
///
/// # Examples
///
/// ```
/// use shmlink::segment::header::{HeaderState, SegmentHeader};
/// use shmlink::region::ShmSafe;
///
/// let header = SegmentHeader::new_zeroed();
/// match header.state()? {
///     HeaderState::Creating => {} // an opener waits, or judges the creator dead
///     HeaderState::Ready => unreachable!("nobody published it"),
/// }
/// # Ok::<(), shmlink::segment::OpenError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderState {
    /// The creator has not published the header yet.
    Creating,
    /// Published: every field is initialised and visible.
    Ready,
}

impl SegmentHeader {
    /// Creator, step 1: records who creates the segment, so that an opener waiting for
    /// the ready flag can tell a slow creator from a dead one.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::header::SegmentHeader;
    /// use shmlink::segment::ProcessId;
    /// use shmlink::region::ShmSafe;
    ///
    /// let header = SegmentHeader::new_zeroed();
    /// assert_eq!(header.creator(), None);
    /// let me = ProcessId { pid: 42, uid: 1000, start_ticks: 7 };
    /// header.write_creator(&me);
    /// assert_eq!(header.creator(), Some(me));
    /// ```
    pub fn write_creator(&self, creator: &ProcessId) {
        // Relaxed: published by the `creator_pid` store below.
        self.creator_uid.store(creator.uid, Ordering::Relaxed);
        self.creator_start
            .store(creator.start_ticks, Ordering::Relaxed);
        // SYNC: Release pairs with the Acquire load in `creator()`: an opener that
        // sees the pid sees the uid and start time with it, so its liveness check is
        // about this process and not any process that reuses the pid (a start time
        // of 0 is accepted for any process with the pid). loom:
        // `opener_never_sees_a_half_written_creator`.
        self.creator_pid.store(creator.pid, Ordering::Release);
    }

    /// Creator, step 2: writes the layout. Relaxed: made visible by [`publish`](Self::publish).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::header::{HeaderSpec, SegmentHeader};
    /// use shmlink::segment::Kind;
    /// use shmlink::region::ShmSafe;
    ///
    /// let header = SegmentHeader::new_zeroed();
    /// let spec =
    ///     HeaderSpec {
    ///         kind: Kind::Typed,
    ///         fingerprint: 0xab,
    ///         payload_len: 64,
    ///         created_unix_ns: 1,
    ///         type_name: Default::default(),
    ///     };
    /// header.write_layout(&spec);
    /// let snap = header.snapshot();
    /// assert_eq!((snap.kind, snap.fingerprint), (Kind::Typed.code(), 0xab));
    /// assert_eq!(snap.total_size, 128 + 64); // header + payload
    /// assert_eq!(snap.attached, 1); // the creator counts as attached
    /// ```
    pub fn write_layout(&self, spec: &HeaderSpec) {
        self.magic.store(MAGIC, Ordering::Relaxed);
        self.layout_version.store(LAYOUT_VERSION, Ordering::Relaxed);
        self.header_size
            .store(HEADER_SIZE as u32, Ordering::Relaxed);
        self.kind.store(spec.kind.code(), Ordering::Relaxed);
        self.fingerprint.store(spec.fingerprint, Ordering::Relaxed);
        self.total_size
            .store(spec.total_size().unwrap_or(u64::MAX), Ordering::Relaxed);
        self.payload_offset
            .store(HEADER_SIZE as u64, Ordering::Relaxed);
        self.payload_len.store(spec.payload_len, Ordering::Relaxed);
        self.created_unix_ns
            .store(spec.created_unix_ns, Ordering::Relaxed);
        self.write_type_name(&spec.type_name);
        // The creator counts as attached from the start.
        self.attached.store(1, Ordering::Relaxed);
    }

    /// Creator, with the layout: records the payload type's name (for error messages
    /// and `shmlink ls`; the fingerprint is what is checked).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::header::{SegmentHeader, TypeName};
    /// use shmlink::region::ShmSafe;
    ///
    /// let header = SegmentHeader::new_zeroed();
    /// header.write_type_name(&TypeName::new("my_app::Quote"));
    /// assert_eq!(header.snapshot().type_name.as_str(), "my_app::Quote");
    /// ```
    pub fn write_type_name(&self, name: &TypeName) {
        for (i, word) in self.type_name.iter().enumerate() {
            let mut chunk = [0u8; 8];
            chunk.copy_from_slice(&name.bytes[i * 8..i * 8 + 8]);
            word.store(u64::from_le_bytes(chunk), Ordering::Relaxed);
        }
    }

    /// Creator, last step: publishes the header and everything the creator wrote into
    /// the payload before it.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::header::{HeaderState, SegmentHeader};
    /// use shmlink::region::ShmSafe;
    ///
    /// let header = SegmentHeader::new_zeroed();
    /// // ... write_creator, write_layout, initialise the payload ...
    /// header.publish();
    /// assert_eq!(header.state()?, HeaderState::Ready);
    /// # Ok::<(), shmlink::segment::OpenError>(())
    /// ```
    pub fn publish(&self) {
        // SYNC: Release pairs with the Acquire load in `state()`: an opener that reads
        // READY sees every field written above and the initialised payload.
        self.state.store(STATE_READY, Ordering::Release);
    }

    /// Opener: the publication state.
    ///
    /// # Errors
    ///
    /// [`OpenError::IncompatibleLayout`] if a non-zero magic is wrong (not a shmlink
    /// segment), [`OpenError::Corrupt`] if the state word holds an unknown value.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::header::{HeaderState, SegmentHeader};
    /// use shmlink::segment::Segment;
    /// use shmlink::region::ShmSafe;
    ///
    /// # let name = format!("doc-header-state-{}", std::process::id());
    /// let seg = Segment::builder(&name).unlink_on_drop(true).create()?;
    /// assert_eq!(seg.header().state()?, HeaderState::Ready);
    /// assert_eq!(SegmentHeader::new_zeroed().state()?, HeaderState::Creating);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn state(&self) -> Result<HeaderState, OpenError> {
        // SYNC: Acquire pairs with the Release store in `publish()`.
        let state = self.state.load(Ordering::Acquire);
        let magic = self.magic.load(Ordering::Relaxed);
        if magic != 0 && magic != MAGIC {
            return Err(OpenError::IncompatibleLayout {
                field: "magic",
                expected: MAGIC,
                found: magic,
            });
        }
        match state {
            STATE_CREATING => Ok(HeaderState::Creating),
            STATE_READY => Ok(HeaderState::Ready),
            other => Err(OpenError::Corrupt {
                field: "state",
                found: u64::from(other),
            }),
        }
    }

    /// The creator as recorded so far (`None` until the creator wrote its pid).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::header::SegmentHeader;
    /// use shmlink::segment::Segment;
    /// use shmlink::region::ShmSafe;
    ///
    /// # let name = format!("doc-header-creator-{}", std::process::id());
    /// let seg = Segment::builder(&name).unlink_on_drop(true).create()?;
    /// assert_eq!(seg.header().creator().map(|c| c.pid), Some(std::process::id()));
    /// assert_eq!(SegmentHeader::new_zeroed().creator(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn creator(&self) -> Option<ProcessId> {
        // SYNC: Acquire pairs with the Release in `write_creator`: the uid and start
        // time loaded next are the ones written before the pid.
        let pid = self.creator_pid.load(Ordering::Acquire);
        (pid != 0).then(|| ProcessId {
            pid,
            uid: self.creator_uid.load(Ordering::Relaxed),
            start_ticks: self.creator_start.load(Ordering::Relaxed),
        })
    }

    /// Reads every field once. Validate the snapshot, never the live header.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::header::HEADER_SIZE;
    /// use shmlink::segment::{Kind, Segment};
    ///
    /// # let name = format!("doc-header-snapshot-{}", std::process::id());
    /// let builder = Segment::builder(&name).kind(Kind::Typed).payload_len(64);
    /// let seg = builder.unlink_on_drop(true).create()?;
    /// let snap = seg.header().snapshot(); // a plain copy: later writes do not change it
    /// assert_eq!(Kind::from_code(snap.kind), Some(Kind::Typed));
    /// assert_eq!(snap.total_size, HEADER_SIZE as u64 + 64);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot(&self) -> HeaderSnapshot {
        HeaderSnapshot {
            magic: self.magic.load(Ordering::Relaxed),
            layout_version: self.layout_version.load(Ordering::Relaxed),
            header_size: self.header_size.load(Ordering::Relaxed),
            kind: self.kind.load(Ordering::Relaxed),
            fingerprint: self.fingerprint.load(Ordering::Relaxed),
            total_size: self.total_size.load(Ordering::Relaxed),
            payload_offset: self.payload_offset.load(Ordering::Relaxed),
            payload_len: self.payload_len.load(Ordering::Relaxed),
            creator: ProcessId {
                pid: self.creator_pid.load(Ordering::Relaxed),
                uid: self.creator_uid.load(Ordering::Relaxed),
                start_ticks: self.creator_start.load(Ordering::Relaxed),
            },
            created_unix_ns: self.created_unix_ns.load(Ordering::Relaxed),
            attached: self.attached.load(Ordering::Relaxed),
            type_name: {
                let mut bytes = [0u8; TypeName::MAX];
                for (i, word) in self.type_name.iter().enumerate() {
                    bytes[i * 8..i * 8 + 8]
                        .copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
                }
                TypeName::from_bytes(bytes)
            },
        }
    }

    /// Records one more attached process.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::header::SegmentHeader;
    /// use shmlink::region::ShmSafe;
    ///
    /// let header = SegmentHeader::new_zeroed();
    /// header.attach();
    /// header.attach();
    /// assert_eq!(header.attached(), 2);
    /// ```
    pub fn attach(&self) {
        // Relaxed: a statistic read by stale detection only while nobody is attached
        // (under the exclusive file lock, which orders it).
        self.attached.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a clean detach; never underflows, even over a corrupted count.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::header::SegmentHeader;
    /// use shmlink::region::ShmSafe;
    ///
    /// let header = SegmentHeader::new_zeroed();
    /// header.attach();
    /// header.detach();
    /// header.detach(); // saturates at zero
    /// assert_eq!(header.attached(), 0);
    /// ```
    pub fn detach(&self) {
        let _ = self
            .attached
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Starts the attach count again from zero: for the resumer of a stale segment,
    /// which holds it exclusively, so that every process counted is dead.
    pub(super) fn clear_attached(&self) {
        // Relaxed: as `attach`, ordered by the exclusive file lock.
        self.attached.store(0, Ordering::Relaxed);
    }

    /// Number of processes attached and not cleanly detached.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Segment;
    ///
    /// # let name = format!("doc-header-attached-{}", std::process::id());
    /// let a = Segment::builder(&name).unlink_on_drop(true).create()?;
    /// let b = Segment::builder(&name).open()?;
    /// assert_eq!(a.header().attached(), 2);
    /// drop(b); // a clean detach
    /// assert_eq!(a.header().attached(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn attached(&self) -> u32 {
        self.attached.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for SegmentHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.snapshot(), f)
    }
}

/// Every header field, read once.
///
/// # Examples
///
/// ```
/// use shmlink::segment::{Segment, inspect};
///
/// # let name = format!("doc-header-header-snapshot-{}", std::process::id());
/// let _seg = Segment::builder(&name).payload_len(64).unlink_on_drop(true).create()?;
/// let snap = inspect(&name)?.header.expect("published");
/// assert_eq!(snap.payload_len, 64);
/// assert_eq!(snap.creator.pid, std::process::id());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderSnapshot {
    /// Magic number.
    pub magic: u64,
    /// Header layout version.
    pub layout_version: u32,
    /// Header size.
    pub header_size: u32,
    /// Raw kind code.
    pub kind: u32,
    /// Type fingerprint.
    pub fingerprint: u64,
    /// Header plus payload.
    pub total_size: u64,
    /// Offset of the payload.
    pub payload_offset: u64,
    /// Payload length.
    pub payload_len: u64,
    /// The creator.
    pub creator: ProcessId,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_unix_ns: u64,
    /// Attached processes that have not detached cleanly.
    pub attached: u32,
    /// The payload type's name, as the creator recorded it (empty if it did not).
    pub type_name: TypeName,
}

/// A type's name as a segment header records it: its last [`TypeName::MAX`] bytes
/// (the end of a path names the type; the start is its crate and modules), cut at a
/// character boundary. For messages only: a segment's type is checked by fingerprint.
///
/// # Examples
///
/// ```
/// use shmlink::segment::header::TypeName;
///
/// assert_eq!(TypeName::new("my_app::Quote").to_string(), "my_app::Quote");
/// let long = TypeName::new("a_very_long_crate_name::with::many::modules::Quote");
/// assert!(long.is_truncated());
/// assert_eq!(long.to_string(), "…name::with::many::modules::Quote");
/// assert!(TypeName::default().is_empty());
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TypeName {
    /// UTF-8, zero-padded.
    bytes: [u8; TypeName::MAX],
    truncated: bool,
}

impl TypeName {
    /// The most bytes recorded.
    pub const MAX: usize = 32;

    /// No name (what a segment made before names were recorded holds).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::header::TypeName;
    ///
    /// assert!(TypeName::EMPTY.is_empty());
    /// ```
    pub const EMPTY: TypeName = TypeName {
        bytes: [0; TypeName::MAX],
        truncated: false,
    };

    /// The last [`MAX`](Self::MAX) bytes of `name`.
    pub fn new(name: &str) -> Self {
        let mut start = name.len().saturating_sub(Self::MAX);
        while !name.is_char_boundary(start) {
            start += 1;
        }
        let tail = &name.as_bytes()[start..];
        let mut bytes = [0u8; Self::MAX];
        bytes[..tail.len()].copy_from_slice(tail);
        Self {
            bytes,
            truncated: start > 0,
        }
    }

    /// The name of `T` (`std::any::type_name`).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::header::TypeName;
    ///
    /// assert_eq!(TypeName::of::<u64>().as_str(), "u64");
    /// ```
    pub fn of<T: ?Sized>() -> Self {
        Self::new(std::any::type_name::<T>())
    }

    /// From a header's bytes: up to the first zero, and only if UTF-8 (anything else
    /// a peer wrote reads as empty). A full field may be a cut name.
    fn from_bytes(raw: [u8; Self::MAX]) -> Self {
        let len = raw.iter().position(|&b| b == 0).unwrap_or(Self::MAX);
        if std::str::from_utf8(&raw[..len]).is_err() {
            return Self::default();
        }
        let mut bytes = [0u8; Self::MAX];
        bytes[..len].copy_from_slice(&raw[..len]);
        Self {
            bytes,
            truncated: len == Self::MAX,
        }
    }

    /// The recorded bytes as text.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::header::TypeName;
    ///
    /// assert_eq!(TypeName::new("Quote").as_str(), "Quote");
    /// ```
    pub fn as_str(&self) -> &str {
        let len = self.bytes.iter().position(|&b| b == 0).unwrap_or(Self::MAX);
        std::str::from_utf8(&self.bytes[..len]).unwrap_or_default()
    }

    /// Whether no name was recorded.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::header::TypeName;
    ///
    /// assert!(!TypeName::new("Quote").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.bytes[0] == 0
    }

    /// Whether the start of the name was cut off (or may have been).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::header::TypeName;
    ///
    /// assert!(!TypeName::new("Quote").is_truncated());
    /// ```
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl fmt::Display for TypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.truncated {
            f.write_str("…")?;
        }
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// What an opener requires of a segment; `None` accepts anything.
///
/// # Examples
///
/// ```
/// use shmlink::segment::header::Expect;
/// use shmlink::segment::{Kind, Segment};
///
/// # let name = format!("doc-header-expect-{}", std::process::id());
/// let builder = Segment::builder(&name).kind(Kind::Typed).payload_len(64);
/// let seg = builder.unlink_on_drop(true).create()?;
/// let snap = seg.header().snapshot();
/// snap.validate(&Expect::default(), snap.total_size)?; // accepts any kind and size
/// let typed = Expect { kind: Some(Kind::Typed), payload_len: Some(64), ..Expect::default() };
/// snap.validate(&typed, snap.total_size)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expect {
    /// Required kind.
    pub kind: Option<Kind>,
    /// Required type fingerprint.
    pub fingerprint: Option<u64>,
    /// Required payload length.
    pub payload_len: Option<u64>,
    /// The payload type's name, for the message of a fingerprint mismatch.
    pub type_name: TypeName,
}

impl HeaderSnapshot {
    /// Checks a published header against the format, the file it was read from and
    /// the opener's expectations. Pure: touches nothing but `self`.
    ///
    /// # Errors
    ///
    /// The first mismatch found, in this order: magic, layout version, header size,
    /// payload offset ([`OpenError::IncompatibleLayout`]); payload end and file size
    /// ([`OpenError::SizeMismatch`], [`OpenError::Corrupt`] on overflow); kind
    /// ([`OpenError::WrongKind`]); fingerprint ([`OpenError::TypeMismatch`]); payload
    /// length ([`OpenError::SizeMismatch`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::header::Expect;
    /// use shmlink::segment::{Kind, OpenError, Segment};
    ///
    /// # let name = format!("doc-header-validate-{}", std::process::id());
    /// let seg = Segment::builder(&name).kind(Kind::Typed).unlink_on_drop(true).create()?;
    /// let snap = seg.header().snapshot();
    /// let raw = Expect { kind: Some(Kind::Raw), ..Expect::default() };
    /// let err = snap.validate(&raw, snap.total_size).unwrap_err();
    /// assert_eq!(err, OpenError::WrongKind { expected: Kind::Raw, found: Kind::Typed.code() });
    /// // A file shorter than the header claims is refused too.
    /// let err = snap.validate(&Expect::default(), 100).unwrap_err();
    /// assert!(matches!(err, OpenError::SizeMismatch { what: "file size", .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn validate(&self, expect: &Expect, file_size: u64) -> Result<(), OpenError> {
        let layout = |field, expected: u64, found: u64| {
            if expected == found {
                Ok(())
            } else {
                Err(OpenError::IncompatibleLayout {
                    field,
                    expected,
                    found,
                })
            }
        };
        layout("magic", MAGIC, self.magic)?;
        layout(
            "layout_version",
            LAYOUT_VERSION.into(),
            self.layout_version.into(),
        )?;
        layout("header_size", HEADER_SIZE as u64, self.header_size.into())?;
        layout("payload_offset", HEADER_SIZE as u64, self.payload_offset)?;
        let end = self
            .payload_offset
            .checked_add(self.payload_len)
            .ok_or(OpenError::Corrupt {
                field: "payload_len",
                found: self.payload_len,
            })?;
        if end != self.total_size {
            return Err(OpenError::SizeMismatch {
                what: "header total_size",
                expected: end,
                found: self.total_size,
            });
        }
        if self.total_size != file_size {
            return Err(OpenError::SizeMismatch {
                what: "file size",
                expected: self.total_size,
                found: file_size,
            });
        }
        if let Some(kind) = expect.kind
            && kind.code() != self.kind
        {
            return Err(OpenError::WrongKind {
                expected: kind,
                found: self.kind,
            });
        }
        if let Some(fp) = expect.fingerprint
            && fp != self.fingerprint
        {
            return Err(OpenError::TypeMismatch {
                expected: fp,
                found: self.fingerprint,
                expected_type: expect.type_name,
                found_type: self.type_name,
            });
        }
        if let Some(len) = expect.payload_len
            && len != self.payload_len
        {
            return Err(OpenError::SizeMismatch {
                what: "payload length",
                expected: len,
                found: self.payload_len,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(spec: &HeaderSpec) -> SegmentHeader {
        let h = SegmentHeader::new_zeroed();
        h.write_creator(&ProcessId {
            pid: 42,
            uid: 1000,
            start_ticks: 7,
        });
        h.write_layout(spec);
        h.publish();
        h
    }

    const SPEC: HeaderSpec = HeaderSpec {
        kind: Kind::Typed,
        fingerprint: 0xfeed,
        payload_len: 4096,
        created_unix_ns: 1,
        type_name: TypeName::EMPTY,
    };

    /// A type name is recorded and read back; garbage (not UTF-8) reads as empty,
    /// and a full field as possibly cut.
    #[test]
    fn type_names_round_trip_and_garbage_reads_empty() {
        let h = published(&SPEC);
        h.write_type_name(&TypeName::new("app::Quote"));
        assert_eq!(h.snapshot().type_name.as_str(), "app::Quote");
        assert!(!h.snapshot().type_name.is_truncated());
        h.type_name[0].store(u64::MAX, Ordering::Relaxed); // 0xff bytes: not UTF-8
        assert!(h.snapshot().type_name.is_empty());
        let full = TypeName::new(&"é".repeat(40)); // cut at a character boundary
        assert_eq!(full.as_str(), "é".repeat(16));
        assert!(full.is_truncated());
        h.write_type_name(&full);
        assert_eq!(h.snapshot().type_name, full);
    }

    #[test]
    fn round_trip() {
        let h = published(&SPEC);
        assert_eq!(h.state().unwrap(), HeaderState::Ready);
        let s = h.snapshot();
        let expect = Expect {
            kind: Some(Kind::Typed),
            fingerprint: Some(0xfeed),
            payload_len: Some(4096),
            type_name: TypeName::default(),
        };
        s.validate(&expect, 4096 + 128).unwrap();
        assert_eq!(s.creator.pid, 42);
        assert_eq!(s.attached, 1);
        h.detach();
        h.detach();
        assert_eq!(h.attached(), 0, "detach saturates at zero");
    }

    #[test]
    fn mismatches_are_typed() {
        let s = published(&SPEC).snapshot();
        let e = |x: Expect, size| s.validate(&x, size).unwrap_err();
        assert!(matches!(
            e(Expect::default(), 100),
            OpenError::SizeMismatch {
                what: "file size",
                ..
            }
        ));
        assert!(matches!(
            e(
                Expect {
                    kind: Some(Kind::Raw),
                    ..Expect::default()
                },
                4224
            ),
            OpenError::WrongKind { found: 2, .. }
        ));
        assert!(matches!(
            e(
                Expect {
                    fingerprint: Some(1),
                    ..Expect::default()
                },
                4224
            ),
            OpenError::TypeMismatch {
                expected: 1,
                found: 0xfeed,
                ..
            }
        ));
        let mut bad = s;
        bad.payload_len = u64::MAX;
        assert!(matches!(
            bad.validate(&Expect::default(), 4224),
            Err(OpenError::Corrupt { .. })
        ));
    }

    #[test]
    fn unpublished_and_garbage_states() {
        let h = SegmentHeader::new_zeroed();
        assert_eq!(h.state().unwrap(), HeaderState::Creating);
        assert_eq!(h.creator(), None);
        h.state.store(7, Ordering::Relaxed);
        assert!(matches!(
            h.state(),
            Err(OpenError::Corrupt {
                field: "state",
                found: 7
            })
        ));
        h.magic.store(1, Ordering::Relaxed);
        assert!(matches!(
            h.state(),
            Err(OpenError::IncompatibleLayout { field: "magic", .. })
        ));
    }
}

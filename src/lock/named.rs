//! The locks in named segments: `create` and `open` by name for [`Semaphore`],
//! [`BakeryLock`], [`BakeryMutex`] and [`SeqLock`].
//!
//! The algorithms only know a [`Region`](crate::region::Region); this
//! module puts them in a [`ShmRegion`], with the segment kind and a fingerprint of the
//! object (and of the protected type) checked at open.

use std::sync::Arc;

use crate::lock::{
    BakeryConfigError, BakeryControl, BakeryLock, BakeryMutex, Participant, Semaphore,
    SemaphoreConfigError, SemaphoreState, SeqLock, SeqLockConfigError, SeqLockControl,
};
use crate::region::{Pod, Region, combine_fingerprints, fingerprint};
use crate::segment::{CreateError, Kind, OpenError, SegmentBuilder, ShmRegion};
use crate::sync::WaitMode;

/// Why a named `sync` object could not be created or opened.
///
/// # Examples
///
/// ```
/// use shmlink::lock::ObjectError;
/// use shmlink::segment::{OpenError, Segment};
/// use shmlink::lock::Semaphore;
///
/// let err = Semaphore::open(Segment::builder("no-such-semaphore")).unwrap_err();
/// assert!(matches!(err, ObjectError::Open(OpenError::NotFound)));
/// ```
#[derive(Debug)]
pub enum ObjectError<C> {
    /// Creating the segment failed.
    Create(CreateError),
    /// Opening the segment failed (including a wrong kind or protected type).
    Open(OpenError),
    /// The configuration was refused, or the shared state is not a valid one.
    Config(C),
}

impl<C: std::fmt::Display> std::fmt::Display for ObjectError<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Create(e) => write!(f, "create: {e}"),
            Self::Open(e) => write!(f, "open: {e}"),
            Self::Config(e) => write!(f, "{e}"),
        }
    }
}

impl<C: std::error::Error + 'static> std::error::Error for ObjectError<C> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Create(e) => Some(e),
            Self::Open(e) => Some(e),
            Self::Config(e) => Some(e),
        }
    }
}

impl<C> From<CreateError> for ObjectError<C> {
    fn from(e: CreateError) -> Self {
        Self::Create(e)
    }
}

impl<C> From<OpenError> for ObjectError<C> {
    fn from(e: OpenError) -> Self {
        Self::Open(e)
    }
}

impl Semaphore<ShmRegion<SemaphoreState>> {
    fn configure(builder: SegmentBuilder) -> SegmentBuilder {
        builder.typed_defaults(Kind::Semaphore, fingerprint::<SemaphoreState>())
    }

    /// Creates a named semaphore with `initial` permits, at most `max`.
    ///
    /// # Errors
    ///
    /// [`ObjectError::Config`] for a bad configuration (checked before anything is
    /// created), [`ObjectError::Create`] from the segment.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Segment;
    /// use shmlink::lock::Semaphore;
    /// # let name = format!("doc-sem-create-{}", std::process::id());
    ///
    /// let sem = Semaphore::create(Segment::builder(&name).unlink_on_drop(true), 2, 4)?;
    /// let other = Semaphore::open(Segment::builder(&name))?; // usually another process
    /// sem.acquire();
    /// assert_eq!(other.value(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(
        builder: SegmentBuilder,
        initial: u32,
        max: u32,
    ) -> Result<Self, ObjectError<SemaphoreConfigError>> {
        Semaphore::new(initial, max).map_err(ObjectError::Config)?; // validate first
        let region =
            ShmRegion::<SemaphoreState>::create_with(Self::configure(builder), 0, |s, _| {
                // Validated above; cannot fail.
                let _ = s.init(initial, max);
            })?;
        Self::from_region(Arc::new(region)).map_err(ObjectError::Config)
    }

    /// Opens a named semaphore.
    ///
    /// # Errors
    ///
    /// [`ObjectError::Open`] (`NotFound`, `WrongKind`, ...), or
    /// [`ObjectError::Config`] if its state is corrupt.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::ObjectError;
    /// use shmlink::segment::{OpenError, Segment};
    /// use shmlink::lock::Semaphore;
    /// # let name = format!("doc-sem-open-{}", std::process::id());
    /// # let _keep = Semaphore::create(Segment::builder(&name).unlink_on_drop(true), 1, 1)?;
    ///
    /// let sem = Semaphore::open(Segment::builder(&name))?;
    /// assert_eq!(sem.max(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(builder: SegmentBuilder) -> Result<Self, ObjectError<SemaphoreConfigError>> {
        let region = ShmRegion::<SemaphoreState>::open(Self::configure(builder))?;
        Self::from_region(Arc::new(region)).map_err(ObjectError::Config)
    }
}

impl BakeryLock<ShmRegion<BakeryControl>> {
    fn configure(builder: SegmentBuilder) -> SegmentBuilder {
        builder.typed_defaults(Kind::BakeryLock, fingerprint::<BakeryControl>())
    }

    /// Creates a named Bakery lock for up to `participants` processes and claims the
    /// first slot for this process.
    ///
    /// # Errors
    ///
    /// [`ObjectError::Config`] (`InvalidParticipants`), [`ObjectError::Create`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::LockError;
    /// use shmlink::segment::Segment;
    /// use shmlink::lock::BakeryLock;
    /// # let name = format!("doc-bakery-create-{}", std::process::id());
    ///
    /// let mut lock = BakeryLock::create(Segment::builder(&name).unlink_on_drop(true), 16)?;
    /// let other = BakeryLock::open(Segment::builder(&name))?; // usually another process
    /// let guard = lock.lock().map_err(LockError::without_guard)?;
    /// assert_eq!(other.holder(), Some(std::process::id()));
    /// # drop(guard);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(
        builder: SegmentBuilder,
        participants: usize,
    ) -> Result<Self, ObjectError<BakeryConfigError>> {
        Self::create_with_mode(builder, participants, WaitMode::Blocking)
    }

    /// [`create`](Self::create) with a choice of wait mode (see
    /// [`BakeryLock::with_mode`]).
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Segment;
    /// use shmlink::lock::BakeryLock;
    /// use shmlink::sync::WaitMode;
    /// # let name = format!("doc-bakery-create-mode-{}", std::process::id());
    ///
    /// let builder = Segment::builder(&name).unlink_on_drop(true);
    /// let lock = BakeryLock::create_with_mode(builder, 4, WaitMode::Spin)?;
    /// assert_eq!(BakeryLock::open(Segment::builder(&name))?.mode(), WaitMode::Spin);
    /// # drop(lock);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_with_mode(
        builder: SegmentBuilder,
        participants: usize,
        mode: WaitMode,
    ) -> Result<Self, ObjectError<BakeryConfigError>> {
        BakeryLock::new(participants).map_err(ObjectError::Config)?; // validate first
        let region = ShmRegion::<BakeryControl>::create_with(
            Self::configure(builder),
            BakeryControl::area_len(participants, 0),
            |ctl, _| {
                let _ = ctl.init(participants, 0, 0, mode);
            },
        )?;
        Self::from_region(Arc::new(region), 0, 0).map_err(ObjectError::Config)
    }

    /// Opens a named Bakery lock and claims a slot for this process.
    ///
    /// # Errors
    ///
    /// [`ObjectError::Open`]; [`ObjectError::Config`] with
    /// [`BakeryConfigError::Full`] if every slot is held by a live process.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::ObjectError;
    /// use shmlink::segment::Segment;
    /// use shmlink::lock::{BakeryConfigError, BakeryLock};
    /// # let name = format!("doc-bakery-open-{}", std::process::id());
    /// let _first = BakeryLock::create(Segment::builder(&name).unlink_on_drop(true), 1)?;
    ///
    /// let full = BakeryLock::open(Segment::builder(&name)).unwrap_err();
    /// assert!(matches!(full, ObjectError::Config(BakeryConfigError::Full { participants: 1 })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(builder: SegmentBuilder) -> Result<Self, ObjectError<BakeryConfigError>> {
        let region = ShmRegion::<BakeryControl>::open(Self::configure(builder))?;
        Self::from_region(Arc::new(region), 0, 0).map_err(ObjectError::Config)
    }
}

impl<T: Pod> BakeryMutex<T, ShmRegion<BakeryControl>> {
    fn configure(builder: SegmentBuilder) -> SegmentBuilder {
        builder.typed_defaults(
            Kind::BakeryMutex,
            combine_fingerprints(fingerprint::<BakeryControl>(), T::FINGERPRINT),
        )
    }

    /// Creates a named Bakery mutex holding `value`, for up to `participants`
    /// processes, and claims the first slot.
    ///
    /// # Errors
    ///
    /// [`ObjectError::Config`] (`InvalidParticipants`), [`ObjectError::Create`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::LockError;
    /// use shmlink::segment::Segment;
    /// use shmlink::lock::BakeryMutex;
    /// # let name = format!("doc-bmutex-create-{}", std::process::id());
    ///
    /// let mut a = BakeryMutex::create(Segment::builder(&name).unlink_on_drop(true), 8, 0u64)?;
    /// let mut b = BakeryMutex::<u64, _>::open(Segment::builder(&name))?; // another process
    /// a.lock().map_err(LockError::without_guard)?.update(|n| *n += 2);
    /// assert_eq!(b.lock().map_err(LockError::without_guard)?.get(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(
        builder: SegmentBuilder,
        participants: usize,
        value: T,
    ) -> Result<Self, ObjectError<BakeryConfigError>> {
        Self::create_with_mode(builder, participants, value, WaitMode::Blocking)
    }

    /// [`create`](Self::create) with a choice of wait mode (see
    /// [`BakeryLock::with_mode`]).
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Segment;
    /// use shmlink::lock::BakeryMutex;
    /// use shmlink::sync::WaitMode;
    /// # let name = format!("doc-bmutex-create-mode-{}", std::process::id());
    ///
    /// let builder = Segment::builder(&name).unlink_on_drop(true);
    /// let m = BakeryMutex::create_with_mode(builder, 4, 0u32, WaitMode::Spin)?;
    /// assert_eq!(m.as_lock().mode(), WaitMode::Spin);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_with_mode(
        builder: SegmentBuilder,
        participants: usize,
        value: T,
        mode: WaitMode,
    ) -> Result<Self, ObjectError<BakeryConfigError>> {
        BakeryLock::new(participants).map_err(ObjectError::Config)?; // validate first
        let mut failed = None;
        let region = ShmRegion::<BakeryControl>::create_with(
            Self::configure(builder),
            BakeryControl::area_len(participants, size_of::<T>()),
            |ctl, area| {
                failed = BakeryMutex::<T, ShmRegion<BakeryControl>>::init_parts(
                    ctl,
                    area,
                    participants,
                    value,
                    mode,
                )
                .err();
            },
        )?;
        if let Some(e) = failed {
            return Err(ObjectError::Config(e));
        }
        Self::from_region(Arc::new(region)).map_err(ObjectError::Config)
    }

    /// Opens a named Bakery mutex of `T` and claims a slot.
    ///
    /// # Errors
    ///
    /// [`ObjectError::Open`] (`TypeMismatch` for another `T`), [`ObjectError::Config`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::ObjectError;
    /// use shmlink::segment::{OpenError, Segment};
    /// use shmlink::lock::BakeryMutex;
    /// # let name = format!("doc-bmutex-open-{}", std::process::id());
    /// let _a = BakeryMutex::create(Segment::builder(&name).unlink_on_drop(true), 2, 0u64)?;
    ///
    /// let wrong = BakeryMutex::<u32, _>::open(Segment::builder(&name)).unwrap_err();
    /// assert!(matches!(wrong, ObjectError::Open(OpenError::TypeMismatch { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(builder: SegmentBuilder) -> Result<Self, ObjectError<BakeryConfigError>> {
        let region = ShmRegion::<BakeryControl>::open(Self::configure(builder))?;
        Self::from_region(Arc::new(region)).map_err(ObjectError::Config)
    }
}

impl<T: Pod> SeqLock<T, ShmRegion<SeqLockControl>> {
    fn configure(builder: SegmentBuilder) -> SegmentBuilder {
        builder.typed_defaults(
            Kind::SeqLock,
            combine_fingerprints(fingerprint::<SeqLockControl>(), T::FINGERPRINT),
        )
    }

    /// Creates a named seqlock holding `value`.
    ///
    /// # Errors
    ///
    /// [`ObjectError::Create`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Segment;
    /// use shmlink::lock::SeqLock;
    /// # let name = format!("doc-seqlock-create-{}", std::process::id());
    ///
    /// let quote = SeqLock::create(Segment::builder(&name).unlink_on_drop(true), [0u64; 4])?;
    /// let reader = SeqLock::<[u64; 4], _>::open(Segment::builder(&name))?; // another process
    /// quote.writer()?.write([1, 2, 3, 4]);
    /// assert_eq!(reader.read()?, [1, 2, 3, 4]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(
        builder: SegmentBuilder,
        value: T,
    ) -> Result<Self, ObjectError<SeqLockConfigError>> {
        let region = ShmRegion::<SeqLockControl>::create_with(
            Self::configure(builder),
            super::seqlock::area_len::<T>(),
            |ctl, area| super::seqlock::init(ctl, area, value),
        )?;
        Self::from_region(Arc::new(region)).map_err(ObjectError::Config)
    }

    /// Opens a named seqlock of `T`.
    ///
    /// # Errors
    ///
    /// [`ObjectError::Open`] (`TypeMismatch` for another `T`), [`ObjectError::Config`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::ObjectError;
    /// use shmlink::segment::{OpenError, Segment};
    /// use shmlink::lock::SeqLock;
    /// # let name = format!("doc-seqlock-open-{}", std::process::id());
    /// let _a = SeqLock::create(Segment::builder(&name).unlink_on_drop(true), 0u64)?;
    ///
    /// let wrong = SeqLock::<u32, _>::open(Segment::builder(&name)).unwrap_err();
    /// assert!(matches!(wrong, ObjectError::Open(OpenError::TypeMismatch { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(builder: SegmentBuilder) -> Result<Self, ObjectError<SeqLockConfigError>> {
        let region = ShmRegion::<SeqLockControl>::open(Self::configure(builder))?;
        Self::from_region(Arc::new(region)).map_err(ObjectError::Config)
    }
}

/// Who holds a named Bakery lock or mutex and who takes part (the `shmlink ls` view).
///
/// # Examples
///
/// ```
/// use shmlink::segment::Segment;
/// use shmlink::lock::bakery_status;
/// use shmlink::lock::{BakeryLock, LockError};
/// # let name = format!("doc-bakery-status-{}", std::process::id());
///
/// let mut lock = BakeryLock::create(Segment::builder(&name).unlink_on_drop(true), 4)?;
/// let _guard = lock.lock().map_err(LockError::without_guard)?;
/// let status = bakery_status(&name)?;
/// assert_eq!(status.holder, Some(std::process::id()));
/// assert_eq!(status.participants.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BakeryStatus {
    /// The pid holding the lock, if any.
    pub holder: Option<u32>,
    /// The claimed slots.
    pub participants: Vec<Participant>,
}

/// Reads the holder and participants of the Bakery lock or mutex `name`, without
/// claiming a slot (the segment is attached for the duration of the call).
///
/// # Errors
///
/// As [`inspect`](crate::segment::inspect) and [`SegmentBuilder::open`]; `WrongKind` if the
/// segment is not a Bakery lock or mutex.
///
/// # Examples
///
/// ```
/// use shmlink::segment::{OpenError, Segment};
/// use shmlink::lock::bakery_status;
/// use shmlink::lock::Semaphore;
/// # let name = format!("doc-bakery-status-kind-{}", std::process::id());
///
/// let _sem = Semaphore::create(Segment::builder(&name).unlink_on_drop(true), 1, 1)?;
/// assert!(matches!(bakery_status(&name), Err(OpenError::WrongKind { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn bakery_status(name: &str) -> Result<BakeryStatus, OpenError> {
    let info = crate::segment::inspect(name)?;
    let header = info.header.ok_or(OpenError::NotInitialized {
        waited: std::time::Duration::ZERO,
    })?;
    let kind = match Kind::from_code(header.kind) {
        Some(k @ (Kind::BakeryLock | Kind::BakeryMutex)) => k,
        _ => {
            return Err(OpenError::WrongKind {
                expected: Kind::BakeryLock,
                found: header.kind,
            });
        }
    };
    let builder = crate::segment::Segment::builder(name)
        .kind(kind)
        .fingerprint(header.fingerprint);
    let region = ShmRegion::<BakeryControl>::open(builder)?;
    Ok(BakeryStatus {
        holder: super::bakery::holder_pid(region.shared()),
        participants: super::bakery::participants(region.shared(), region.area()),
    })
}

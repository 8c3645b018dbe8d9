//! [`BakeryMutex`]: a value of a `Pod` type guarded by a Bakery lock, and its guard.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::{
    BakeryConfigError, BakeryControl, BakeryGuard, BakeryLock, LockError, SLOT_SIZE,
    check_participants,
};
use crate::region::{HeapRegion, Pod, RawArea, Region};
use crate::sync::WaitMode;

#[cfg(not(shmlink_loom))]
use crate::lock::ObjectError;
#[cfg(not(shmlink_loom))]
use crate::region::{combine_fingerprints, fingerprint};
#[cfg(not(shmlink_loom))]
use crate::segment::{Kind, SegmentBuilder, ShmRegion};

/// A [`BakeryLock`] with a plain-old-data `T` stored beside it (in the same region),
/// reachable only through the guard, by copy: another process may hold the lock
/// next, so no reference into the shared bytes is ever handed out.
///
/// # Examples
///
/// ```
/// use shmlink::lock::LockError;
/// use shmlink::lock::BakeryMutex;
///
/// let mut counter = BakeryMutex::new(4, 0u64)?;
/// let mut other = counter.join()?;
/// counter.lock().map_err(LockError::without_guard)?.update(|n| *n += 1);
/// assert_eq!(other.lock().map_err(LockError::without_guard)?.get(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BakeryMutex<T: Pod, R: Region<Shared = BakeryControl> = HeapRegion<BakeryControl>> {
    lock: BakeryLock<R>,
    _data: PhantomData<fn(T) -> T>,
}

impl<T: Pod> BakeryMutex<T, HeapRegion<BakeryControl>> {
    /// A mutex on the heap holding `value`, for up to `participants` participants.
    ///
    /// # Errors
    ///
    /// [`BakeryConfigError::InvalidParticipants`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::LockError;
    /// use shmlink::lock::BakeryMutex;
    ///
    /// let mut m = BakeryMutex::new(2, [1u32, 2, 3])?;
    /// assert_eq!(m.lock().map_err(LockError::without_guard)?.get(), [1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(participants: usize, value: T) -> Result<Self, BakeryConfigError> {
        Self::with_mode(participants, value, WaitMode::Blocking)
    }

    /// [`new`](Self::new) with a choice of wait mode (see [`BakeryLock::with_mode`]).
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::BakeryMutex;
    /// use shmlink::sync::WaitMode;
    ///
    /// let m = BakeryMutex::with_mode(2, 0u64, WaitMode::Spin)?;
    /// assert_eq!(m.as_lock().mode(), WaitMode::Spin);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_mode(
        participants: usize,
        value: T,
        mode: WaitMode,
    ) -> Result<Self, BakeryConfigError> {
        check_participants(participants as u64)?;
        let region =
            HeapRegion::<BakeryControl>::new(BakeryControl::area_len(participants, size_of::<T>()));
        Self::init_parts(region.shared(), region.area(), participants, value, mode)?;
        Self::from_region(Arc::new(region))
    }
}

impl<T: Pod, R: Region<Shared = BakeryControl>> BakeryMutex<T, R> {
    /// Writes the configuration and the initial value into a fresh control block and
    /// area (creator only, before sharing).
    pub(crate) fn init_parts(
        ctl: &BakeryControl,
        area: RawArea,
        participants: usize,
        value: T,
        mode: WaitMode,
    ) -> Result<(), BakeryConfigError> {
        ctl.init(participants, size_of::<T>(), T::FINGERPRINT, mode)?;
        let off = participants * SLOT_SIZE;
        if area.len() < off + size_of::<T>() {
            return Err(BakeryConfigError::Corrupt {
                what: "area length",
                found: area.len() as u64,
            });
        }
        // SAFETY: in bounds (checked); nobody else sees the region yet; T is Pod.
        unsafe { area.write_value(off, value) };
        Ok(())
    }

    /// Validates a region initialised for `T` and claims a slot.
    ///
    /// # Errors
    ///
    /// As [`BakeryLock::from_region`]; `Corrupt { what: "data size" | "data
    /// fingerprint" }` if the region holds another type.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::{BakeryConfigError, BakeryMutex};
    ///
    /// let m = BakeryMutex::new(2, 7u64)?;
    /// let region = m.region_arc();
    /// assert!(BakeryMutex::<u64, _>::from_region(region.clone()).is_ok());
    /// assert!(matches!(
    ///     BakeryMutex::<u32, _>::from_region(region),
    ///     Err(BakeryConfigError::Corrupt { what: "data size", .. })
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_region(region: Arc<R>) -> Result<Self, BakeryConfigError> {
        Ok(Self {
            lock: BakeryLock::from_region(region, size_of::<T>(), T::FINGERPRINT)?,
            _data: PhantomData,
        })
    }

    /// Another participant (a new slot) of the same mutex.
    ///
    /// # Errors
    ///
    /// [`BakeryConfigError::Full`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::BakeryMutex;
    ///
    /// let m = BakeryMutex::new(2, 0u8)?;
    /// let _second = m.join()?;
    /// assert!(m.join().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join(&self) -> Result<Self, BakeryConfigError> {
        Ok(Self {
            lock: self.lock.join()?,
            _data: PhantomData,
        })
    }

    /// A handle that closes this mutex in this process from another thread: waiting
    /// `lock`s end with [`LockError::Closed`] (see [`BakeryCloser`](crate::lock::BakeryCloser)).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::{BakeryMutex, LockError};
    ///
    /// let mut a = BakeryMutex::new(2, 0u64)?;
    /// let mut b = a.join()?;
    /// let closer = b.closer();
    /// let held = a.lock().map_err(LockError::without_guard)?;
    /// let waiter = std::thread::spawn(move || b.lock().map(drop).map_err(LockError::without_guard));
    /// closer.close();
    /// assert!(matches!(waiter.join().unwrap(), Err(LockError::Closed)));
    /// # drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn closer(&self) -> super::BakeryCloser<R> {
        self.lock.closer()
    }

    /// Locks (see [`BakeryLock::lock`]).
    ///
    /// # Errors
    ///
    /// As [`BakeryLock::lock`]; after a holder died, `OwnerDied` carries the guard so
    /// the value can be checked and repaired.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::{BakeryMutex, LockError};
    ///
    /// let mut m = BakeryMutex::new(2, 0u64)?;
    /// let mut guard = match m.lock() {
    ///     Ok(g) => g,
    ///     Err(LockError::OwnerDied(g)) => g, // a holder died: repair the value here
    ///     Err(e) => return Err(e.to_string().into()),
    /// };
    /// guard.set(5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lock(&mut self) -> Result<MutexGuard<'_, T, R>, LockError<MutexGuard<'_, T, R>>> {
        wrap(self.lock.lock())
    }

    /// Locks if nobody holds the lock or is ahead (see [`BakeryLock::try_lock`]).
    ///
    /// # Errors
    ///
    /// As [`BakeryLock::try_lock`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::LockError;
    /// use shmlink::lock::BakeryMutex;
    ///
    /// let mut m = BakeryMutex::new(1, 1u8)?;
    /// assert_eq!(m.try_lock().map_err(LockError::without_guard)?.get(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_lock(&mut self) -> Result<MutexGuard<'_, T, R>, LockError<MutexGuard<'_, T, R>>> {
        wrap(self.lock.try_lock())
    }

    /// Locks, waiting at most `timeout` (see [`BakeryLock::lock_timeout`]).
    ///
    /// # Errors
    ///
    /// As [`BakeryLock::lock_timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::LockError;
    /// use shmlink::lock::BakeryMutex;
    /// use std::time::Duration;
    ///
    /// let mut m = BakeryMutex::new(1, 1u8)?;
    /// assert_eq!(m.lock_timeout(Duration::from_millis(10)).map_err(LockError::without_guard)?.get(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lock_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<MutexGuard<'_, T, R>, LockError<MutexGuard<'_, T, R>>> {
        wrap(self.lock.lock_timeout(timeout))
    }

    /// The lock participant underneath (slot, holder, participants).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::BakeryMutex;
    ///
    /// let m = BakeryMutex::new(3, 0u8)?;
    /// assert_eq!(m.as_lock().capacity(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn as_lock(&self) -> &BakeryLock<R> {
        &self.lock
    }

    /// A new reference to the region, e.g. to open another handle on it.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::BakeryMutex;
    ///
    /// let m = BakeryMutex::new(2, 0u8)?;
    /// let second = BakeryMutex::<u8, _>::from_region(m.region_arc())?;
    /// assert_eq!(second.as_lock().slot(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn region_arc(&self) -> Arc<R> {
        self.lock.region.clone()
    }
}

impl<T: Pod, R: Region<Shared = BakeryControl>> std::fmt::Debug for BakeryMutex<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BakeryMutex")
            .field("lock", &self.lock)
            .finish()
    }
}

type GuardResult<'a, T, R> = Result<MutexGuard<'a, T, R>, LockError<MutexGuard<'a, T, R>>>;

fn wrap<'a, T: Pod, R: Region<Shared = BakeryControl>>(
    r: Result<BakeryGuard<'a, R>, LockError<BakeryGuard<'a, R>>>,
) -> GuardResult<'a, T, R> {
    let make = |guard: BakeryGuard<'a, R>| MutexGuard {
        guard,
        _data: PhantomData,
    };
    r.map(make).map_err(|e| e.map(make))
}

/// Holds a [`BakeryMutex`]: read and write the value by copy; unlocks on drop.
///
/// # Examples
///
/// ```
/// use shmlink::lock::LockError;
/// use shmlink::lock::BakeryMutex;
///
/// let mut m = BakeryMutex::new(1, 0u32)?;
/// let mut g = m.lock().map_err(LockError::without_guard)?;
/// g.set(3);
/// g.update(|v| *v *= 2);
/// assert_eq!(g.get(), 6);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MutexGuard<'a, T: Pod, R: Region<Shared = BakeryControl> = HeapRegion<BakeryControl>> {
    guard: BakeryGuard<'a, R>,
    _data: PhantomData<fn(T) -> T>,
}

impl<T: Pod, R: Region<Shared = BakeryControl>> MutexGuard<'_, T, R> {
    fn offset(&self) -> usize {
        self.guard.lock.n * SLOT_SIZE
    }

    /// A copy of the value.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::LockError;
    /// use shmlink::lock::BakeryMutex;
    ///
    /// let mut m = BakeryMutex::new(1, 9u16)?;
    /// assert_eq!(m.lock().map_err(LockError::without_guard)?.get(), 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self) -> T {
        // SAFETY: the value lies in bounds (validated with the configuration); we hold
        // the lock, so no participant writes it; T is Pod, so any bytes are a value.
        unsafe { self.guard.lock.area.read_value(self.offset()) }
    }

    /// Replaces the value.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::LockError;
    /// use shmlink::lock::BakeryMutex;
    ///
    /// let mut m = BakeryMutex::new(1, 0i64)?;
    /// m.lock().map_err(LockError::without_guard)?.set(-4);
    /// assert_eq!(m.lock().map_err(LockError::without_guard)?.get(), -4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set(&mut self, value: T) {
        // SAFETY: as in `get`; we hold the lock, so nobody reads or writes it.
        unsafe { self.guard.lock.area.write_value(self.offset(), value) }
    }

    /// Copies the value out, lets `f` change the copy, writes it back; returns what `f`
    /// returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::LockError;
    /// use shmlink::lock::BakeryMutex;
    ///
    /// let mut m = BakeryMutex::new(1, [0u8; 4])?;
    /// let old = m.lock().map_err(LockError::without_guard)?.update(|v| std::mem::replace(&mut v[0], 7));
    /// assert_eq!((old, m.lock().map_err(LockError::without_guard)?.get()), (0, [7, 0, 0, 0]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn update<X>(&mut self, f: impl FnOnce(&mut T) -> X) -> X {
        let mut value = self.get();
        let out = f(&mut value);
        self.set(value);
        out
    }

    /// The lock guard underneath.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::LockError;
    /// use shmlink::lock::BakeryMutex;
    ///
    /// let mut m = BakeryMutex::new(1, 0u8)?;
    /// assert!(m.lock().map_err(LockError::without_guard)?.as_guard().participant().holding);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn as_guard(&self) -> &BakeryGuard<'_, R> {
        &self.guard
    }
}

impl<T: Pod + std::fmt::Debug, R: Region<Shared = BakeryControl>> std::fmt::Debug
    for MutexGuard<'_, T, R>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MutexGuard")
            .field("value", &self.get())
            .finish()
    }
}

#[cfg(not(shmlink_loom))]
impl<T: Pod> BakeryMutex<T, ShmRegion<BakeryControl>> {
    fn configure(builder: SegmentBuilder) -> SegmentBuilder {
        builder
            .typed_defaults(
                Kind::BakeryMutex,
                combine_fingerprints(fingerprint::<BakeryControl>(), T::FINGERPRINT),
            )
            .type_name_default(std::any::type_name::<T>())
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
            Self::configure(builder.clone()),
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
        )
        .map_err(|e| ObjectError::create(&builder, e))?;
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
    /// assert!(matches!(wrong, ObjectError::Open { error: OpenError::TypeMismatch { .. }, .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(builder: SegmentBuilder) -> Result<Self, ObjectError<BakeryConfigError>> {
        let region = ShmRegion::<BakeryControl>::open(Self::configure(builder.clone()))
            .map_err(|e| ObjectError::open(&builder, e))?;
        Self::from_region(Arc::new(region)).map_err(ObjectError::Config)
    }

    /// Opens the named mutex, or creates it with `participants` slots holding `value`
    /// if the name holds none. One left stale by a crash is resumed with the value it
    /// holds when it has `participants` slots and validates (the next holder after a
    /// holder died is told, to repair the value: [`LockError::OwnerDied`]); anything
    /// else stale is replaced.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create) and [`open`](Self::open).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::BakeryMutex;
    /// use shmlink::segment::{Disposition, Segment};
    /// # let name = format!("doc-bakery-mutex-open-or-create-{}", std::process::id());
    ///
    /// let builder = Segment::builder(&name).unlink_on_drop(true);
    /// let (mut a, how) = BakeryMutex::open_or_create(builder.clone(), 4, 0u64)?;
    /// assert_eq!(how, Disposition::Created);
    /// a.lock().map_err(|e| e.without_guard())?.set(5);
    /// let (mut b, how) = BakeryMutex::open_or_create(builder, 4, 0u64)?; // `value` not applied
    /// let value = b.lock().map_err(|e| e.without_guard())?.get();
    /// assert_eq!((how, value), (Disposition::Opened, 5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_or_create(
        builder: SegmentBuilder,
        participants: usize,
        value: T,
    ) -> Result<(Self, crate::segment::Disposition), ObjectError<BakeryConfigError>> {
        BakeryLock::new(participants).map_err(ObjectError::Config)?; // validate first
        crate::lock::open_or_create_in(
            &Self::configure(builder),
            BakeryControl::area_len(participants, size_of::<T>()),
            |ctl, area| {
                let _ = BakeryMutex::<T, ShmRegion<BakeryControl>>::init_parts(
                    ctl,
                    area,
                    participants,
                    value,
                    WaitMode::Blocking,
                );
            },
            Self::from_region,
            |m| m.lock.region.segment(),
        )
    }
}

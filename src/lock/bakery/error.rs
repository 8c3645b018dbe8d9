//! Errors of the Bakery lock: configuration (create, join, open) and locking.

use super::MAX_PARTICIPANTS;

/// Why a Bakery lock could not be built, opened or joined.
///
/// # Examples
///
/// ```
/// use shmlink::lock::{BakeryConfigError, BakeryLock};
///
/// let lock = BakeryLock::new(1)?; // one participant: this handle
/// assert_eq!(lock.join().unwrap_err(), BakeryConfigError::Full { participants: 1 });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BakeryConfigError {
    /// A participant count of 0 or above [`MAX_PARTICIPANTS`].
    InvalidParticipants(u64),
    /// Every slot is held by a live process (a slot being reclaimed from a dead one
    /// is waited for, up to a second).
    Full {
        /// The lock's participant count.
        participants: u32,
    },
    /// The shared configuration does not describe this lock (or is garbage).
    Corrupt {
        /// Which field.
        what: &'static str,
        /// The value found.
        found: u64,
    },
}

impl std::fmt::Display for BakeryConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidParticipants(n) => {
                write!(f, "{n} participants (1 to {MAX_PARTICIPANTS} allowed)")
            }
            Self::Full { participants } => {
                write!(f, "all {participants} slots of the lock are taken")
            }
            Self::Corrupt { what, found } => write!(f, "corrupt lock: {what} = {found}"),
        }
    }
}

impl std::error::Error for BakeryConfigError {}

/// Why a lock call returned without a clean guard.
///
/// # Examples
///
/// ```
/// use shmlink::lock::{BakeryLock, LockError};
///
/// let mut a = BakeryLock::new(2)?;
/// let mut b = a.join()?;
/// let held = a.lock().map_err(LockError::without_guard)?;
/// assert!(matches!(b.try_lock(), Err(LockError::WouldBlock)));
/// drop(held);
/// assert!(b.try_lock().is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub enum LockError<G> {
    /// The lock is held, and its previous holder died while holding it: the protected
    /// data may be half updated. This caller holds the lock now (the guard) and is
    /// the only one told; repair the data, then carry on.
    OwnerDied(G),
    /// `try_lock`: another participant holds the lock or is ahead in line.
    WouldBlock,
    /// `lock_timeout`: the deadline passed first.
    Timeout,
    /// This handle's slot was taken from it (its process was taken for dead, or the
    /// shared memory was overwritten); the handle cannot lock any more.
    SlotLost,
    /// The lock was closed in this process ([`BakeryCloser::close`]) before or while
    /// this call waited.
    ///
    /// [`BakeryCloser::close`]: crate::lock::BakeryCloser::close
    Closed,
    /// A value in shared memory is impossible (e.g. a ticket above 2^62).
    Corrupt {
        /// Which value.
        what: &'static str,
        /// The value found.
        found: u64,
    },
}

impl<G> LockError<G> {
    /// The same error without the guard (unlocking, for `OwnerDied`), so it can leave
    /// the function with `?`: the guard borrows the lock, so an error holding it
    /// cannot become a `Box<dyn Error>`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::{BakeryLock, LockError};
    ///
    /// let mut lock = BakeryLock::new(1)?;
    /// let guard = lock.lock().map_err(LockError::without_guard)?;
    /// # drop(guard);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn without_guard(self) -> LockError<()> {
        self.map(drop)
    }

    /// Maps the guard of [`OwnerDied`](Self::OwnerDied).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::LockError;
    ///
    /// let e: LockError<u8> = LockError::OwnerDied(1);
    /// assert!(matches!(e.map(|g| g * 2), LockError::OwnerDied(2)));
    /// ```
    pub fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            Self::OwnerDied(g) => LockError::OwnerDied(f(g)),
            Self::WouldBlock => LockError::WouldBlock,
            Self::Timeout => LockError::Timeout,
            Self::SlotLost => LockError::SlotLost,
            Self::Closed => LockError::Closed,
            Self::Corrupt { what, found } => LockError::Corrupt { what, found },
        }
    }
}

impl<G> std::fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OwnerDied(_) => f.write_str("the previous holder died holding the lock"),
            Self::WouldBlock => f.write_str("the lock is held"),
            Self::Timeout => f.write_str("timed out waiting for the lock"),
            Self::SlotLost => f.write_str("this participant's slot was taken from it"),
            Self::Closed => f.write_str("the lock was closed in this process"),
            Self::Corrupt { what, found } => write!(f, "corrupt lock: {what} = {found}"),
        }
    }
}

impl<G: std::fmt::Debug> std::error::Error for LockError<G> {}

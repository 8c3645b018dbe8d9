//! One interface for a lock on one host and a lock across hosts.
//!
//! [`Lock`] is what [`BakeryLock`] (processes on one host) and the distributed lock
//! both implement, so code written against it moves from one host to many by changing
//! the constructor. A guard gives a [`FencingToken`] and says whether it still holds
//! ([`LockGuard::check`]): a local lock holds until dropped; a distributed lock holds
//! while its lease does.

use std::fmt;
use std::time::Duration;

use super::FencingToken;
use crate::lock::{BakeryControl, BakeryGuard, BakeryLock, LockError};
use crate::region::Region;

/// Why a guard no longer protects anything.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockLost {
    /// The lock's name, or its kind for an unnamed one.
    pub lock: String,
    /// What happened.
    pub reason: LostReason,
}

/// How a lock was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LostReason {
    /// The lease ran out before a renewal was acknowledged (a partition, a pause, an
    /// overloaded arbiter): another holder may have the lock now.
    LeaseExpired,
    /// The holder's place in the lock was taken from it (a local lock whose process
    /// was judged dead, or whose shared memory was overwritten).
    SlotTaken,
    /// An arbiter said it no longer holds the vote (it restarted, or the vote lapsed
    /// while the holder could not reach it).
    Revoked,
}

impl fmt::Display for LockLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason {
            LostReason::LeaseExpired => "its lease ran out before a renewal was acknowledged",
            LostReason::SlotTaken => "its slot was taken from this holder",
            LostReason::Revoked => "an arbiter no longer holds its vote",
        };
        write!(f, "lock {} lost: {why}", self.lock)
    }
}

impl std::error::Error for LockLost {}

/// What holding a lock gives. Dropping the guard releases the lock.
pub trait LockGuard {
    /// This acquisition's fencing token: greater than every earlier holder's. Pass it
    /// with every operation on the protected resource (see
    /// [`FencedResource`](super::FencedResource)).
    fn token(&self) -> FencingToken;

    /// `Ok` while the lock still protects this holder.
    ///
    /// # Errors
    ///
    /// [`LockLost`] once it may not: from then on another holder may act, and only a
    /// fenced resource is safe.
    fn check(&self) -> Result<(), LockLost>;

    /// Whether the previous holder died holding the lock, so the protected state may
    /// be half updated.
    fn previous_holder_died(&self) -> bool;
}

/// A mutual-exclusion lock, local or distributed.
///
/// # Examples
///
/// Code written against the trait:
///
/// ```
/// use std::time::Duration;
/// use shmlink::dlock::{Lock, LockGuard};
/// use shmlink::lock::BakeryLock;
///
/// fn bump<L: Lock>(lock: &mut L, counter: &mut u64) -> Result<u64, L::Error> {
///     let guard = lock.try_lock_for(Duration::from_secs(1))?;
///     *counter += 1;
///     Ok(guard.token().0)
/// }
///
/// let mut lock = BakeryLock::new(2)?; // one host; the distributed lock is the same to `bump`
/// let mut counter = 0;
/// let a = bump(&mut lock, &mut counter)?;
/// let b = bump(&mut lock, &mut counter)?;
/// assert!(b > a && counter == 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Lock {
    /// What holding the lock gives.
    type Guard<'a>: LockGuard
    where
        Self: 'a;
    /// Why taking the lock failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Takes the lock, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// The implementation's error (never a timeout).
    fn lock(&mut self) -> Result<Self::Guard<'_>, Self::Error>;

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// The implementation's error, including its timeout.
    fn try_lock_for(&mut self, timeout: Duration) -> Result<Self::Guard<'_>, Self::Error>;
}

/// A held [`BakeryLock`] seen through [`LockGuard`].
///
/// # Examples
///
/// ```
/// use shmlink::dlock::{Lock, LockGuard};
/// use shmlink::lock::BakeryLock;
///
/// let mut lock = BakeryLock::new(1)?;
/// let guard = Lock::lock(&mut lock)?;
/// assert!(guard.check().is_ok() && !guard.previous_holder_died());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LocalGuard<'a, R: Region<Shared = BakeryControl>> {
    guard: BakeryGuard<'a, R>,
    owner_died: bool,
}

impl<'a, R: Region<Shared = BakeryControl>> LocalGuard<'a, R> {
    /// The Bakery guard inside.
    pub fn bakery(&self) -> &BakeryGuard<'a, R> {
        &self.guard
    }
}

impl<R: Region<Shared = BakeryControl>> fmt::Debug for LocalGuard<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalGuard")
            .field("token", &self.token())
            .field("owner_died", &self.owner_died)
            .finish()
    }
}

impl<R: Region<Shared = BakeryControl>> LockGuard for LocalGuard<'_, R> {
    fn token(&self) -> FencingToken {
        FencingToken(self.guard.acquisition())
    }

    fn check(&self) -> Result<(), LockLost> {
        if self.guard.still_held() {
            Ok(())
        } else {
            Err(LockLost {
                lock: "bakery".into(),
                reason: LostReason::SlotTaken,
            })
        }
    }

    fn previous_holder_died(&self) -> bool {
        self.owner_died
    }
}

fn local<'a, R: Region<Shared = BakeryControl>>(
    taken: Result<BakeryGuard<'a, R>, LockError<BakeryGuard<'a, R>>>,
) -> Result<LocalGuard<'a, R>, LockError<()>> {
    match taken {
        Ok(guard) => Ok(LocalGuard {
            guard,
            owner_died: false,
        }),
        Err(LockError::OwnerDied(guard)) => Ok(LocalGuard {
            guard,
            owner_died: true,
        }),
        Err(e) => Err(e.without_guard()),
    }
}

impl<R: Region<Shared = BakeryControl>> Lock for BakeryLock<R> {
    type Guard<'a>
        = LocalGuard<'a, R>
    where
        R: 'a;
    type Error = LockError<()>;

    fn lock(&mut self) -> Result<LocalGuard<'_, R>, LockError<()>> {
        local(BakeryLock::lock(self))
    }

    fn try_lock_for(&mut self, timeout: Duration) -> Result<LocalGuard<'_, R>, LockError<()>> {
        local(self.lock_timeout(timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successive_holders_get_increasing_tokens_and_a_wait_can_time_out() {
        let mut a = BakeryLock::new(2).unwrap();
        let mut b = a.join().unwrap();
        let first = Lock::lock(&mut a).unwrap().token();
        let second = b.try_lock_for(Duration::from_millis(100)).unwrap().token();
        assert!(second > first);
        let held = Lock::lock(&mut a).unwrap();
        let timed_out = b.try_lock_for(Duration::from_millis(5));
        assert!(matches!(timed_out, Err(LockError::Timeout)));
        assert!(held.check().is_ok());
    }
}

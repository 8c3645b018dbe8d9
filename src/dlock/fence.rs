//! Fencing tokens and a resource that refuses stale ones.
//!
//! A lease-based lock cannot promise that a holder paused past its lease (a long GC,
//! `SIGSTOP`, a swapped-out page) does not still act as a holder when it wakes. A
//! fencing token makes such a holder harmless: every acquisition carries a number
//! that strictly increases across holders, and the protected resource refuses any
//! operation carrying a smaller one than it has already seen.

use std::fmt;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// A fencing token: strictly increases across the successive holders of one lock.
///
/// # Examples
///
/// ```
/// use shmlink::dlock::FencingToken;
///
/// assert!(FencingToken(7) > FencingToken(6));
/// assert_eq!(FencingToken(7).to_string(), "7");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FencingToken(pub u64);

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An operation refused by a [`FencedResource`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FenceError {
    /// The operation carried a token older than one the resource has seen: its
    /// holder lost the lock (its lease ran out) and someone else took it since.
    Stale {
        /// The resource's name.
        resource: &'static str,
        /// The token the operation carried.
        token: FencingToken,
        /// The highest token the resource has seen.
        highest: FencingToken,
    },
}

impl fmt::Display for FenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stale {
                resource,
                token,
                highest,
            } => write!(
                f,
                "{resource}: fencing token {token} is stale (token {highest} was seen), \
                 the lock was lost"
            ),
        }
    }
}

impl std::error::Error for FenceError {}

/// A value guarded by fencing tokens: [`apply`](Self::apply) runs an operation only if
/// its token is at least the highest the resource has seen, and raises that mark. The
/// same holder may apply several operations with one token; a holder whose token was
/// overtaken is refused. Thread-safe; for a resource in another process, keep one of
/// these in the process that owns the resource (the tests' fenced counter server does).
///
/// # Examples
///
/// ```
/// use shmlink::dlock::{FenceError, FencedResource, FencingToken};
///
/// let counter = FencedResource::new("counter", 0u64);
/// counter.apply(FencingToken(1), |c| *c += 1)?;
/// counter.apply(FencingToken(3), |c| *c += 1)?; // the next holder
/// // The first holder wakes up after losing its lease: refused.
/// let late = counter.apply(FencingToken(1), |c| *c += 1);
/// assert!(matches!(late, Err(FenceError::Stale { .. })));
/// assert_eq!(counter.get(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FencedResource<T> {
    name: &'static str,
    state: Mutex<(Option<FencingToken>, T)>,
}

impl<T> FencedResource<T> {
    /// A resource called `name` (in errors) holding `value`, no token seen yet.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::FencedResource;
    ///
    /// let r = FencedResource::new("queue", Vec::<u8>::new());
    /// assert_eq!(r.highest(), None);
    /// ```
    pub fn new(name: &'static str, value: T) -> Self {
        Self {
            name,
            state: Mutex::new((None, value)),
        }
    }

    /// Runs `op` on the value if `token` is not older than any seen, and records it.
    ///
    /// # Errors
    ///
    /// [`FenceError::Stale`] if a newer token was seen; `op` does not run.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::{FencedResource, FencingToken};
    ///
    /// let r = FencedResource::new("log", Vec::new());
    /// r.apply(FencingToken(4), |v| v.push("a"))?;
    /// r.apply(FencingToken(4), |v| v.push("b"))?; // same holder, same token
    /// assert!(r.apply(FencingToken(3), |v| v.push("late")).is_err());
    /// assert_eq!(r.get_with(|v| v.len()), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn apply<R>(
        &self,
        token: FencingToken,
        op: impl FnOnce(&mut T) -> R,
    ) -> Result<R, FenceError> {
        let mut state = self.lock();
        if let Some(highest) = state.0
            && token < highest
        {
            return Err(FenceError::Stale {
                resource: self.name,
                token,
                highest,
            });
        }
        state.0 = Some(token);
        Ok(op(&mut state.1))
    }

    /// The highest token seen.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::{FencedResource, FencingToken};
    ///
    /// let r = FencedResource::new("flag", false);
    /// r.apply(FencingToken(9), |f| *f = true)?;
    /// assert_eq!(r.highest(), Some(FencingToken(9)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn highest(&self) -> Option<FencingToken> {
        self.lock().0
    }

    /// Reads the value through `f` (no token needed to read).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::FencedResource;
    ///
    /// let r = FencedResource::new("name", String::from("a"));
    /// assert_eq!(r.get_with(|s| s.len()), 1);
    /// ```
    pub fn get_with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.lock().1)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Option<FencingToken>, T)> {
        // A panic inside `op` leaves the value as `op` left it; the token was
        // recorded first, so a poisoned lock holds a consistent mark.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<T: Copy> FencedResource<T> {
    /// A copy of the value.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::FencedResource;
    ///
    /// assert_eq!(FencedResource::new("n", 5u32).get(), 5);
    /// ```
    pub fn get(&self) -> T {
        self.lock().1
    }
}

impl<T: fmt::Debug> fmt::Debug for FencedResource<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("FencedResource")
            .field("name", &self.name)
            .field("highest", &state.0)
            .field("value", &state.1)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn tokens_from_many_threads_never_go_backwards() {
        let r = Arc::new(FencedResource::new("seq", Vec::new()));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for i in 0..500u64 {
                        let tok = FencingToken(i * 4 + t);
                        let _ = r.apply(tok, |v| v.push(tok));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let applied = r.get_with(Clone::clone);
        assert!(!applied.is_empty());
        assert!(
            applied.windows(2).all(|w| w[0] <= w[1]),
            "a token went backwards"
        );
    }

    #[test]
    fn a_stale_error_names_the_resource_and_both_tokens() {
        let r = FencedResource::new("counter", 0);
        r.apply(FencingToken(5), |c| *c += 1).unwrap();
        let e = r.apply(FencingToken(2), |c| *c += 1).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("counter") && text.contains('2') && text.contains('5'),
            "{text}"
        );
        assert_eq!(r.get(), 1);
    }
}

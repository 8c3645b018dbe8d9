//! An `UnsafeCell` with loom's closure API.
//!
//! Accesses go through [`UnsafeCell::with`] and [`UnsafeCell::with_mut`], so under
//! `--cfg shmlink_loom` loom sees (and checks) every non-atomic read and write; in
//! normal builds the closures compile down to a raw pointer access.
#![allow(clippy::disallowed_types)] // the one place that wraps std's UnsafeCell

#[cfg(shmlink_loom)]
pub use loom::cell::UnsafeCell;

/// `core::cell::UnsafeCell` behind loom's `with`/`with_mut` API.
///
/// # Examples
///
/// ```
/// use shmlink::sync::cell::UnsafeCell;
///
/// let cell = UnsafeCell::new(1_u32);
/// // SAFETY: nothing else accesses the cell.
/// cell.with_mut(|p| unsafe { *p = 2 });
/// // SAFETY: nothing writes the cell concurrently.
/// assert_eq!(cell.with(|p| unsafe { *p }), 2);
/// ```
#[cfg(not(shmlink_loom))]
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct UnsafeCell<T: ?Sized>(core::cell::UnsafeCell<T>);

#[cfg(not(shmlink_loom))]
impl<T> UnsafeCell<T> {
    /// Wraps `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::sync::cell::UnsafeCell;
    ///
    /// let cell = UnsafeCell::new(5_u64);
    /// assert_eq!(cell.into_inner(), 5);
    /// ```
    #[inline]
    pub const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    /// Unwraps the value.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::sync::cell::UnsafeCell;
    ///
    /// let cell = UnsafeCell::new(vec![1, 2]);
    /// // SAFETY: nothing else accesses the cell.
    /// cell.with_mut(|v| unsafe { (*v).push(3) });
    /// assert_eq!(cell.into_inner(), [1, 2, 3]);
    /// ```
    #[inline]
    pub fn into_inner(self) -> T {
        self.0.into_inner()
    }
}

#[cfg(not(shmlink_loom))]
impl<T: ?Sized> UnsafeCell<T> {
    /// Runs `f` with a shared raw pointer to the value. Dereferencing it is the
    /// caller's responsibility (no concurrent writer).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::sync::cell::UnsafeCell;
    ///
    /// let cell = UnsafeCell::new([1_u8, 2, 3]);
    /// // SAFETY: nobody writes the cell while it is read.
    /// let sum: u8 = cell.with(|p| unsafe { (*p).iter().sum() });
    /// assert_eq!(sum, 6);
    /// ```
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a mutable raw pointer to the value. Dereferencing it is the
    /// caller's responsibility (no concurrent reader or writer).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::sync::cell::UnsafeCell;
    ///
    /// let cell = UnsafeCell::new(0_u32);
    /// for _ in 0..3 {
    ///     // SAFETY: no other pointer to the value is in use.
    ///     cell.with_mut(|p| unsafe { *p += 1 });
    /// }
    /// assert_eq!(cell.into_inner(), 3);
    /// ```
    #[inline]
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

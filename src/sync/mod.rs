//! The memory-model facade and the operating system's wait primitives.
//!
//! Every atomic, cell, fence and spin hint in the crate comes from here ([`atomic`],
//! [`cell`], [`spin_loop`], [`yield_now`]), and so do the waits built directly on
//! them: the futex calls ([`futex`]) and the wait/wake handshake on a shared word
//! ([`WaitWord`]). Under `--cfg shmlink_loom` the atomics and cells resolve to
//! [loom]'s model-checked types, so the algorithms in the higher layers run unchanged
//! inside `loom::model`. Nothing else in the crate names `std::sync::atomic` or
//! `std::cell::UnsafeCell` (clippy's `disallowed-types`, see `clippy.toml`).
//!
//! Types that live in shared memory ([`ShmSafe`](crate::region::ShmSafe)) are built
//! from the atomics in [`atomic`]. Under loom those are loom's types, which are not
//! layout-compatible with the real ones, so the code that reinterprets mapped bytes as
//! atomics (`segment`'s mapping) is compiled out in loom builds and models run on the
//! heap instead ([`HeapRegion`](crate::region::HeapRegion)).
//!
//! [loom]: https://docs.rs/loom

mod backoff;
pub mod cell;
pub mod futex;
mod wait;

pub use backoff::Backoff;

/// A coarse monotonic clock, in nanoseconds: `CLOCK_MONOTONIC_COARSE`, a few ns to
/// read (`Instant::now` can cost 50 ns on a VM) and ticking every few milliseconds.
/// For rate-limiting liveness checks on fast paths. Constant under loom.
#[inline]
pub(crate) fn coarse_now_ns() -> u64 {
    #[cfg(any(shmlink_loom, miri))]
    {
        0
    }
    #[cfg(not(any(shmlink_loom, miri)))]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec we pass; the coarse monotonic
        // clock exists on every Linux the crate supports.
        let _ = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
        (ts.tv_sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec as u64)
    }
}
pub(crate) use wait::WaitError;

/// A `tracing` event (target `shmlink`) on a slow or rare path, with the `tracing`
/// feature; without it, nothing at all (the arguments are not even evaluated). Its
/// arguments are those of `tracing::event!` after the level: `slow_path!(DEBUG,
/// name = %n, "resumed")`.
#[cfg(feature = "tracing")]
macro_rules! slow_path {
    ($level:ident, $($arg:tt)+) => {
        ::tracing::event!(target: "shmlink", ::tracing::Level::$level, $($arg)+)
    };
}
#[cfg(not(feature = "tracing"))]
macro_rules! slow_path {
    ($level:ident, $($arg:tt)+) => {};
}
pub(crate) use slow_path;
pub use wait::{SPIN_FOR, WaitMode, WaitWord};

/// Atomics and fences: thin `#[repr(transparent)]` wrappers over `core::sync::atomic`,
/// or over loom's atomics under `--cfg shmlink_loom`.
///
/// They are newtypes (not re-exports) so that clippy's `disallowed-types` can tell them
/// from the std types, which only this module may name. In normal builds each wrapper
/// has exactly the size, alignment and bit validity of its integer, which is what lets
/// [`ShmSafe`](crate::region::ShmSafe) types built from them live in shared memory.
///
/// # Examples
///
/// ```
/// use shmlink::sync::atomic::{AtomicU64, Ordering};
///
/// let counter = AtomicU64::new(0);
/// counter.fetch_add(1, Ordering::Relaxed);
/// assert_eq!(counter.load(Ordering::Relaxed), 1);
/// ```
#[allow(clippy::disallowed_types, clippy::disallowed_methods)] // the one place that wraps them
pub mod atomic {
    #[cfg(not(shmlink_loom))]
    use core::sync::atomic as imp;
    #[cfg(shmlink_loom)]
    use loom::sync::atomic as imp;

    pub use core::sync::atomic::Ordering;

    /// A memory fence (`core::sync::atomic::fence`, or loom's).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::sync::atomic::{AtomicU64, Ordering, fence};
    ///
    /// let (data, flag) = (AtomicU64::new(0), AtomicU64::new(0));
    /// data.store(42, Ordering::Relaxed);
    /// fence(Ordering::Release); // orders the data store before the flag store
    /// flag.store(1, Ordering::Relaxed);
    /// if flag.load(Ordering::Relaxed) == 1 {
    ///     fence(Ordering::Acquire); // pairs with the Release fence
    ///     assert_eq!(data.load(Ordering::Relaxed), 42);
    /// }
    /// ```
    #[inline]
    pub fn fence(order: Ordering) {
        imp::fence(order)
    }

    /// A compiler-only fence. loom has none (tokio-rs/loom#117); there a full fence
    /// stands in, which is stronger and keeps the model sound.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::sync::atomic::{AtomicU32, Ordering, compiler_fence};
    ///
    /// let word = AtomicU32::new(0);
    /// word.store(1, Ordering::Relaxed);
    /// // Keeps the compiler from moving accesses across this point; emits no CPU fence.
    /// compiler_fence(Ordering::SeqCst);
    /// assert_eq!(word.load(Ordering::Relaxed), 1);
    /// ```
    #[inline]
    pub fn compiler_fence(order: Ordering) {
        #[cfg(not(shmlink_loom))]
        core::sync::atomic::compiler_fence(order);
        #[cfg(shmlink_loom)]
        imp::fence(order);
    }

    macro_rules! common_ops {
        ($name:ident, $t:ty) => {
            /// Loads the value.
            #[inline]
            pub fn load(&self, order: Ordering) -> $t {
                self.0.load(order)
            }
            /// Stores `val`.
            #[inline]
            pub fn store(&self, val: $t, order: Ordering) {
                self.0.store(val, order)
            }
            /// Stores `val`, returning the previous value.
            #[inline]
            pub fn swap(&self, val: $t, order: Ordering) -> $t {
                self.0.swap(val, order)
            }
            /// Stores `new` if the value is `current`; returns the previous value.
            #[inline]
            pub fn compare_exchange(
                &self,
                current: $t,
                new: $t,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$t, $t> {
                self.0.compare_exchange(current, new, success, failure)
            }
            /// Like `compare_exchange`, but may fail spuriously.
            #[inline]
            pub fn compare_exchange_weak(
                &self,
                current: $t,
                new: $t,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$t, $t> {
                self.0.compare_exchange_weak(current, new, success, failure)
            }
            /// Applies `f` in a CAS loop until it returns `None` or the CAS succeeds.
            #[inline]
            pub fn fetch_update(
                &self,
                set_order: Ordering,
                fetch_order: Ordering,
                f: impl FnMut($t) -> Option<$t>,
            ) -> Result<$t, $t> {
                self.0.fetch_update(set_order, fetch_order, f)
            }
            /// Bitwise and; returns the previous value.
            #[inline]
            pub fn fetch_and(&self, val: $t, order: Ordering) -> $t {
                self.0.fetch_and(val, order)
            }
            /// Bitwise or; returns the previous value.
            #[inline]
            pub fn fetch_or(&self, val: $t, order: Ordering) -> $t {
                self.0.fetch_or(val, order)
            }
            /// Bitwise xor; returns the previous value.
            #[inline]
            pub fn fetch_xor(&self, val: $t, order: Ordering) -> $t {
                self.0.fetch_xor(val, order)
            }
        };
    }

    macro_rules! atomic_type {
        ($(#[$doc:meta])* $name:ident, $t:ty, int) => {
            atomic_type!(@def $(#[$doc])* $name, $t);
            impl $name {
                common_ops!($name, $t);
                /// Wrapping add; returns the previous value.
                #[inline]
                pub fn fetch_add(&self, val: $t, order: Ordering) -> $t {
                    self.0.fetch_add(val, order)
                }
                /// Wrapping subtract; returns the previous value.
                #[inline]
                pub fn fetch_sub(&self, val: $t, order: Ordering) -> $t {
                    self.0.fetch_sub(val, order)
                }
                /// Maximum; returns the previous value.
                #[inline]
                pub fn fetch_max(&self, val: $t, order: Ordering) -> $t {
                    self.0.fetch_max(val, order)
                }
                /// Minimum; returns the previous value.
                #[inline]
                pub fn fetch_min(&self, val: $t, order: Ordering) -> $t {
                    self.0.fetch_min(val, order)
                }
            }
        };
        ($(#[$doc:meta])* $name:ident, $t:ty, bool) => {
            atomic_type!(@def $(#[$doc])* $name, $t);
            impl $name {
                common_ops!($name, $t);
            }
        };
        (@def $(#[$doc:meta])* $name:ident, $t:ty) => {
            $(#[$doc])*
            #[repr(transparent)]
            #[derive(Default)]
            pub struct $name(imp::$name);

            impl $name {
                /// A new atomic holding `val`.
                #[cfg(not(shmlink_loom))]
                #[inline]
                pub const fn new(val: $t) -> Self {
                    Self(imp::$name::new(val))
                }

                /// A new atomic holding `val`.
                #[cfg(shmlink_loom)]
                #[track_caller]
                pub fn new(val: $t) -> Self {
                    Self(imp::$name::new(val))
                }

                /// Address of the value, e.g. for a futex call. Normal builds only.
                #[cfg(not(shmlink_loom))]
                #[inline]
                pub const fn as_ptr(&self) -> *mut $t {
                    self.0.as_ptr()
                }
            }

            impl core::fmt::Debug for $name {
                fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                    core::fmt::Debug::fmt(&self.0, f)
                }
            }

            #[cfg(not(shmlink_loom))]
            const _: () = {
                assert!(size_of::<$name>() == size_of::<$t>());
                assert!(align_of::<$name>() == size_of::<$t>());
            };
        };
    }

    atomic_type!(
        /// An atomic `bool`.
        AtomicBool, bool, bool
    );
    atomic_type!(
        /// An atomic `u8`.
        AtomicU8, u8, int
    );
    atomic_type!(
        /// An atomic `u16`.
        AtomicU16, u16, int
    );
    atomic_type!(
        /// An atomic `u32` (also the futex word type).
        AtomicU32, u32, int
    );
    atomic_type!(
        /// An atomic `u64`.
        AtomicU64, u64, int
    );
    atomic_type!(
        /// An atomic `i32`.
        AtomicI32, i32, int
    );
    atomic_type!(
        /// An atomic `i64`.
        AtomicI64, i64, int
    );
    atomic_type!(
        /// An atomic `usize` (process-local use only: its width is not fixed).
        AtomicUsize, usize, int
    );
}

/// Spin-loop hint: `core::hint::spin_loop`, or a loom yield point under the loom cfg
/// (loom's scheduler must see every spin iteration or it explores forever).
///
/// # Examples
///
/// ```
/// use shmlink::sync::atomic::{AtomicBool, Ordering};
/// use shmlink::sync::spin_loop;
///
/// let ready = AtomicBool::new(false);
/// std::thread::scope(|s| {
///     s.spawn(|| ready.store(true, Ordering::Release));
///     while !ready.load(Ordering::Acquire) {
///         spin_loop();
///     }
/// });
/// ```
#[inline]
pub fn spin_loop() {
    #[cfg(not(shmlink_loom))]
    core::hint::spin_loop();
    #[cfg(shmlink_loom)]
    loom::thread::yield_now();
}

/// Give the CPU away: `std::thread::yield_now`, or loom's yield under the loom cfg.
///
/// # Examples
///
/// ```
/// use shmlink::sync::atomic::{AtomicU32, Ordering};
/// use shmlink::sync::yield_now;
///
/// let done = AtomicU32::new(0);
/// std::thread::scope(|s| {
///     s.spawn(|| done.store(1, Ordering::Release));
///     while done.load(Ordering::Acquire) == 0 {
///         yield_now(); // let the other thread run
///     }
/// });
/// ```
#[inline]
pub fn yield_now() {
    #[cfg(not(shmlink_loom))]
    std::thread::yield_now();
    #[cfg(shmlink_loom)]
    loom::thread::yield_now();
}

/// Pads and aligns a value to the length of a cache line (128 bytes on x86_64 and
/// aarch64, where the adjacent-line prefetcher and big cores work in 128-byte units).
///
/// # Examples
///
/// ```
/// use shmlink::sync::CachePadded;
/// use shmlink::sync::atomic::{AtomicU64, Ordering};
///
/// let head = CachePadded::new(AtomicU64::new(0));
/// head.store(1, Ordering::Relaxed); // derefs to the value
/// assert_eq!(size_of_val(&head), align_of_val(&head)); // padded to a whole line
/// ```
pub use crossbeam_utils::CachePadded;

/// The mutex, guard and condition variable of the in-process blocking code (the RPC
/// client's reading role and a call's stop signal): std's, or loom's under the loom
/// cfg, so that code can be model-checked. (parking_lot's are not used: loom cannot
/// see into them.)
pub(crate) mod mutex {
    #[cfg(shmlink_loom)]
    pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
    #[cfg(not(shmlink_loom))]
    pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};
}

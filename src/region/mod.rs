//! Memory regions: where an algorithm's shared state lives.
//!
//! Algorithms in the higher layers (rings, locks, seqlocks) are written once against
//! [`Region`] and run unchanged on the heap ([`HeapRegion`]: in-process use, loom models,
//! Miri) and in a named segment ([`ShmRegion`](crate::segment::ShmRegion)).
//!
//! A region holds one control block of a [`ShmSafe`] type (all interior-mutable atomics,
//! so a `&T` to it is sound even while another process writes it) followed by a raw byte
//! area ([`RawArea`]) that is only ever reached through raw pointers and copies.

mod pod;

pub use pod::Pod;
/// `#[derive(Pod)]`: see [`Pod`](trait@Pod).
pub use shmlink_derive::Pod;

use core::fmt;
use core::ptr::NonNull;
use std::alloc::{self, Layout};

use crate::sync::atomic::{AtomicU32, AtomicU64};

/// Alignment of the byte area that follows a region's control block: one cache-line
/// pair, so slot arrays never share a line with the control block.
///
/// # Examples
///
/// ```
/// use shmlink::region::{AREA_ALIGN, area_offset};
/// use shmlink::sync::atomic::AtomicU64;
///
/// // An 8-byte control block still has its area start one line pair later.
/// assert_eq!(area_offset::<AtomicU64>(), AREA_ALIGN);
/// ```
pub const AREA_ALIGN: usize = 128;

/// Types that may be placed in memory shared with other processes.
///
/// # Safety
///
/// An implementor guarantees that the type
/// - is `#[repr(C)]` (or a primitive atomic), and every field is itself `ShmSafe`;
/// - is valid for **every** bit pattern, including all zeroes, because another process
///   may write anything into it (integer atomics qualify; `bool`, enums, references do
///   not);
/// - is interior-mutable in every byte (only atomics, no plain integers), so that a
///   `&Self` to memory another process writes is sound;
/// - contains no pointers, no `Drop` glue, and has an alignment of at most
///   [`AREA_ALIGN`];
/// - has the same layout in every process using the same `TYPE_NAME` and `VERSION`.
///
/// # Examples
///
/// ```
/// use shmlink::region::ShmSafe;
/// use shmlink::sync::atomic::AtomicU64;
///
/// #[repr(C)]
/// struct Counters {
///     hits: AtomicU64,
///     misses: AtomicU64,
/// }
///
/// // SAFETY: repr(C), only integer atomics, valid for any bit pattern, no pointers.
/// unsafe impl ShmSafe for Counters {
///     const TYPE_NAME: &'static str = "example::Counters";
///     fn new_zeroed() -> Self {
///         Counters { hits: AtomicU64::new(0), misses: AtomicU64::new(0) }
///     }
/// }
/// ```
pub unsafe trait ShmSafe: Sized + Send + Sync + 'static {
    /// A name that identifies the layout across processes (part of the fingerprint).
    const TYPE_NAME: &'static str;
    /// Bump when the layout changes incompatibly (part of the fingerprint).
    const VERSION: u32 = 1;
    /// The value whose bytes are all zero: what a freshly created segment holds.
    /// Used to build the control block on the heap (and under loom).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::ShmSafe;
    /// use shmlink::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let counters = <[AtomicU64; 4]>::new_zeroed();
    /// assert!(counters.iter().all(|c| c.load(Ordering::Relaxed) == 0));
    /// ```
    fn new_zeroed() -> Self;
}

// SAFETY: a primitive integer atomic: any bit pattern is valid, interior-mutable,
// no pointers, align 4.
unsafe impl ShmSafe for AtomicU32 {
    const TYPE_NAME: &'static str = "AtomicU32";
    fn new_zeroed() -> Self {
        AtomicU32::new(0)
    }
}

// SAFETY: a primitive integer atomic: any bit pattern is valid, interior-mutable,
// no pointers, align 8.
unsafe impl ShmSafe for AtomicU64 {
    const TYPE_NAME: &'static str = "AtomicU64";
    fn new_zeroed() -> Self {
        AtomicU64::new(0)
    }
}

// SAFETY: an array of ShmSafe elements is laid out contiguously with no extra
// padding and inherits every property of its element.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {
    const TYPE_NAME: &'static str = T::TYPE_NAME;
    const VERSION: u32 = T::VERSION ^ (N as u32).rotate_left(16);
    fn new_zeroed() -> Self {
        core::array::from_fn(|_| T::new_zeroed())
    }
}

/// FNV-1a over `bytes`, continuing from `hash`.
const fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Fingerprint of a [`ShmSafe`] type: a hash of its name, version, size and alignment.
///
/// It is stored in the segment header by the creator and compared by every opener, so
/// a process built with a different layout gets
/// [`OpenError::TypeMismatch`](crate::segment::OpenError::TypeMismatch) instead of
/// reading garbage.
///
/// # Examples
///
/// ```
/// use shmlink::region::fingerprint;
/// use shmlink::sync::atomic::{AtomicU32, AtomicU64};
///
/// assert_ne!(fingerprint::<AtomicU64>(), fingerprint::<AtomicU32>());
/// assert_eq!(fingerprint::<AtomicU64>(), fingerprint::<AtomicU64>());
/// ```
pub const fn fingerprint<T: ShmSafe>() -> u64 {
    layout_fingerprint(T::TYPE_NAME, T::VERSION, size_of::<T>(), align_of::<T>())
}

/// Fingerprint of a layout given by name, version, size and alignment.
///
/// # Examples
///
/// ```
/// use shmlink::region::{fingerprint, layout_fingerprint};
/// use shmlink::sync::atomic::AtomicU64;
///
/// // Name, version, size and alignment: what `fingerprint` hashes for a type.
/// assert_eq!(layout_fingerprint("AtomicU64", 1, 8, 8), fingerprint::<AtomicU64>());
/// assert_ne!(layout_fingerprint("AtomicU64", 2, 8, 8), fingerprint::<AtomicU64>());
/// ```
pub const fn layout_fingerprint(name: &str, version: u32, size: usize, align: usize) -> u64 {
    let mut h = fnv1a(FNV_OFFSET, name.as_bytes());
    h = fnv1a(h, &version.to_le_bytes());
    h = fnv1a(h, &(size as u64).to_le_bytes());
    fnv1a(h, &(align as u64).to_le_bytes())
}

/// Combines two fingerprints (e.g. a ring's with its element type's), order-sensitive.
///
/// # Examples
///
/// ```
/// use shmlink::region::{combine_fingerprints, fingerprint};
/// use shmlink::sync::atomic::{AtomicU32, AtomicU64};
///
/// let ring = fingerprint::<AtomicU64>();
/// let element = fingerprint::<AtomicU32>();
/// let both = combine_fingerprints(ring, element);
/// assert_eq!(both, combine_fingerprints(ring, element));
/// assert_ne!(both, combine_fingerprints(element, ring)); // order matters
/// ```
pub const fn combine_fingerprints(a: u64, b: u64) -> u64 {
    fnv1a(fnv1a(FNV_OFFSET, &a.to_le_bytes()), &b.to_le_bytes())
}

/// Offset of the byte area behind a control block of type `T`.
///
/// # Examples
///
/// ```
/// use shmlink::region::area_offset;
/// use shmlink::sync::atomic::AtomicU64;
///
/// assert_eq!(area_offset::<AtomicU64>(), 128); // 8 bytes, padded to 128
/// assert_eq!(area_offset::<[AtomicU64; 17]>(), 256); // 136 bytes, padded to 256
/// ```
pub const fn area_offset<T>() -> usize {
    size_of::<T>().next_multiple_of(AREA_ALIGN)
}

/// A value alone on its own 128-byte line pair (no false sharing), for [`ShmSafe`]
/// control blocks. `#[repr(C, align(128))]`: the padding after the value is never read.
///
/// # Examples
///
/// ```
/// use shmlink::region::CacheLine;
/// use shmlink::sync::atomic::{AtomicU64, Ordering};
///
/// assert_eq!(size_of::<CacheLine<AtomicU64>>(), 128);
/// let head = CacheLine(AtomicU64::new(3));
/// assert_eq!(head.load(Ordering::Relaxed), 3); // derefs to the value
/// ```
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct CacheLine<T>(pub T);

impl<T> core::ops::Deref for CacheLine<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

// SAFETY: repr(C) around one ShmSafe field, aligned to 128 (== AREA_ALIGN); the
// padding is never read, so any bytes there are fine.
unsafe impl<T: ShmSafe> ShmSafe for CacheLine<T> {
    const TYPE_NAME: &'static str = T::TYPE_NAME;
    const VERSION: u32 = T::VERSION ^ 0x1280_0000;
    fn new_zeroed() -> Self {
        CacheLine(T::new_zeroed())
    }
}

/// A raw byte area inside a region: a pointer and a length, never a reference.
///
/// Another process may write these bytes at any time, so the area hands out raw
/// pointers and bounds-checked copies only; making a `&[u8]` over it would be unsound.
/// A `RawArea` does not keep its region alive: every unsafe method requires that the
/// region (heap allocation or mapping) it came from is still alive.
///
/// Copies are plain `memcpy`s. That is race-free between peers that follow the
/// owning protocol (a ring only hands a slot to one side at a time); against a peer
/// that writes a range *while* it is copied on purpose, the bytes read are garbage
/// (element types are [`Pod`], so garbage is still a valid value) and
/// every index or length derived from them must be validated, as the rings do.
///
/// Under `--cfg shmlink_loom` a heap area also carries one loom cell per 8-byte granule,
/// and every copy through [`read`](Self::read), [`write`](Self::write),
/// [`read_value`](Self::read_value) and [`write_value`](Self::write_value) is reported
/// to loom, which then checks that the protocol orders it against the other side's
/// accesses.
///
/// # Examples
///
/// ```
/// use shmlink::region::{HeapRegion, Region};
/// use shmlink::sync::atomic::AtomicU64;
///
/// let region = HeapRegion::<AtomicU64>::new(64);
/// let area = region.area(); // a copyable pointer and length
/// let mut out = [0u8; 3];
/// // SAFETY: `region` is alive and no other thread touches the area.
/// unsafe {
///     area.write(10, b"abc")?;
///     area.read(10, &mut out)?;
/// }
/// assert_eq!(&out, b"abc");
/// # Ok::<(), shmlink::region::OutOfBounds>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RawArea {
    ptr: NonNull<u8>,
    len: usize,
    #[cfg(shmlink_loom)]
    shadow: Option<NonNull<[crate::sync::cell::UnsafeCell<()>]>>,
    #[cfg(shmlink_loom)]
    shadow_atomics: Option<NonNull<[crate::sync::atomic::AtomicU64]>>,
}

// SAFETY: RawArea is a pointer + length with no ownership; all access through it is
// via unsafe methods whose contracts the caller upholds.
unsafe impl Send for RawArea {}
// SAFETY: as above; sharing the descriptor shares nothing but the address.
unsafe impl Sync for RawArea {}

/// An access outside a [`RawArea`].
///
/// # Examples
///
/// ```
/// use shmlink::region::{HeapRegion, OutOfBounds, Region};
/// use shmlink::sync::atomic::AtomicU64;
///
/// let region = HeapRegion::<AtomicU64>::new(16);
/// let err = region.area().range(12, 8).unwrap_err();
/// assert_eq!(err, OutOfBounds { offset: 12, len: 8, area_len: 16 });
/// assert_eq!(err.to_string(), "access of 8 bytes at offset 12 is outside an area of 16 bytes");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBounds {
    /// Requested start offset.
    pub offset: usize,
    /// Requested length.
    pub len: usize,
    /// Length of the area.
    pub area_len: usize,
}

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "access of {} bytes at offset {} is outside an area of {} bytes",
            self.len, self.offset, self.area_len
        )
    }
}

impl std::error::Error for OutOfBounds {}

impl RawArea {
    /// # Safety
    ///
    /// `ptr..ptr+len` must stay valid for reads and writes, aligned to [`AREA_ALIGN`],
    /// for as long as any copy of the returned value is used.
    pub(crate) unsafe fn new(ptr: NonNull<u8>, len: usize) -> Self {
        debug_assert_eq!(ptr.as_ptr() as usize % AREA_ALIGN, 0);
        Self {
            ptr,
            len,
            #[cfg(shmlink_loom)]
            shadow: None,
            #[cfg(shmlink_loom)]
            shadow_atomics: None,
        }
    }

    /// The part of this area from `offset` for `len` bytes, as an area of its own (for
    /// regions that hold several objects side by side). `offset` must be a multiple of
    /// [`AREA_ALIGN`].
    ///
    /// Not available under loom: a loom area keeps shadow state per byte that a
    /// sub-area would have to share.
    ///
    /// # Errors
    ///
    /// [`OutOfBounds`] if the range is not inside this area or `offset` is not
    /// aligned.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::{AREA_ALIGN, HeapRegion, Region};
    /// use shmlink::sync::atomic::AtomicU64;
    ///
    /// let region = HeapRegion::<AtomicU64>::new(1024);
    /// let second = region.area().sub(512, 512)?;
    /// assert_eq!(second.len(), 512);
    /// assert!(region.area().sub(512, 513).is_err()); // past the end
    /// assert!(region.area().sub(AREA_ALIGN / 2, 8).is_err()); // misaligned
    /// # Ok::<(), shmlink::region::OutOfBounds>(())
    /// ```
    #[cfg(not(shmlink_loom))]
    pub fn sub(&self, offset: usize, len: usize) -> Result<RawArea, OutOfBounds> {
        let err = OutOfBounds {
            offset,
            len,
            area_len: self.len,
        };
        if !offset.is_multiple_of(AREA_ALIGN) {
            return Err(err);
        }
        let start = self.range(offset, len).map_err(|_| err)?;
        let ptr = NonNull::new(start).ok_or(err)?;
        // SAFETY: `ptr..ptr+len` lies inside this area (checked by `range`), which the
        // caller of this area's constructor keeps valid for as long as it is used; the
        // sub-area is used under the same terms. `offset` is a multiple of AREA_ALIGN
        // and so is this area's start, so the alignment requirement holds.
        Ok(unsafe { RawArea::new(ptr, len) })
    }

    /// The 8-byte word at `offset` as an atomic (stamps, sequence words in slots).
    ///
    /// Under loom a heap area hands out a loom atomic kept beside the bytes instead
    /// (loom atomics cannot be laid over memory), so algorithms must not also copy
    /// those bytes as plain data.
    ///
    /// # Safety
    ///
    /// The region is alive for `'a`; `offset` is a multiple of 8 and
    /// `offset + 8 <= self.len()`; the word is only ever accessed atomically (by every
    /// process).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::{HeapRegion, Region};
    /// use shmlink::sync::atomic::AtomicU64;
    /// use shmlink::sync::atomic::Ordering;
    ///
    /// let region = HeapRegion::<AtomicU64>::new(64);
    /// let area = region.area();
    /// // SAFETY: `region` outlives `stamp`; offset 8 is a multiple of 8 and 8 + 8 <= 64; the
    /// // word is only ever accessed atomically.
    /// let stamp = unsafe { area.atomic_u64(8) };
    /// stamp.store(5, Ordering::Release);
    /// assert_eq!(stamp.fetch_add(1, Ordering::AcqRel), 5);
    /// ```
    #[inline(always)]
    #[allow(clippy::needless_lifetimes)] // the lifetime is the point of the contract
    pub unsafe fn atomic_u64<'a>(&'a self, offset: usize) -> &'a crate::sync::atomic::AtomicU64 {
        debug_assert!(offset.is_multiple_of(8) && offset + 8 <= self.len);
        #[cfg(shmlink_loom)]
        if let Some(atomics) = self.shadow_atomics {
            // SAFETY: the shadow array lives as long as the HeapRegion, which outlives
            // 'a by the caller's contract; offset / 8 is in bounds because the array
            // has one atomic per 8-byte granule of the area.
            return unsafe { &atomics.as_ref()[offset / 8] };
        }
        // SAFETY: in bounds and 8-aligned (area base is 128-aligned, offset % 8 == 0);
        // the facade's AtomicU64 is repr(transparent) over a u64-sized atomic, every
        // bit pattern is valid, and all accesses to the word are atomic, so a shared
        // reference is sound even while other processes write it.
        unsafe {
            &*self
                .ptr
                .as_ptr()
                .add(offset)
                .cast::<crate::sync::atomic::AtomicU64>()
        }
    }

    /// Reports an access of `offset..offset+len` to loom (no-op in normal builds).
    #[inline(always)]
    fn track(&self, offset: usize, len: usize, write: bool) {
        #[cfg(shmlink_loom)]
        if let Some(shadow) = self.shadow
            && len > 0
        {
            // SAFETY: the shadow slice lives as long as the HeapRegion that made this
            // area, which outlives every use of the area (Region contract).
            let cells = unsafe { shadow.as_ref() };
            for cell in &cells[offset / 8..(offset + len).div_ceil(8).min(cells.len())] {
                if write {
                    cell.with_mut(|_| ());
                } else {
                    cell.with(|_| ());
                }
            }
        }
        #[cfg(not(shmlink_loom))]
        let _ = (offset, len, write);
    }

    /// Reads a `T` at `offset` (unaligned reads are fine).
    ///
    /// # Safety
    ///
    /// The region is alive; `offset + size_of::<T>() <= self.len()`; any bit pattern must be a valid `T`;
    /// and no one writes the range concurrently (the owning protocol hands it to the
    /// caller).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::{HeapRegion, Region};
    /// use shmlink::sync::atomic::AtomicU64;
    ///
    /// let region = HeapRegion::<AtomicU64>::new(16);
    /// let area = region.area();
    /// // SAFETY: `region` is alive, 3 + 4 <= 16 (unaligned is fine), every bit pattern is a
    /// // valid u32, and no other thread touches the area.
    /// let value = unsafe {
    ///     area.write_value(3, 0x0102_0304_u32);
    ///     area.read_value::<u32>(3)
    /// };
    /// assert_eq!(value, 0x0102_0304);
    /// ```
    #[inline(always)]
    pub unsafe fn read_value<T: Copy>(&self, offset: usize) -> T {
        debug_assert!(
            offset
                .checked_add(size_of::<T>())
                .is_some_and(|e| e <= self.len)
        );
        self.track(offset, size_of::<T>(), false);
        // SAFETY: in bounds and unshared per the caller's contract; every bit pattern
        // is a valid T.
        unsafe { self.ptr.as_ptr().add(offset).cast::<T>().read_unaligned() }
    }

    /// Writes a `T` at `offset` (unaligned writes are fine).
    ///
    /// # Safety
    ///
    /// The region is alive; `offset + size_of::<T>() <= self.len()`, and no one else reads or writes the
    /// range concurrently.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::{HeapRegion, Region};
    /// use shmlink::sync::atomic::AtomicU64;
    ///
    /// let region = HeapRegion::<AtomicU64>::new(16);
    /// let area = region.area();
    /// let mut bytes = [0u8; 8];
    /// // SAFETY: `region` is alive, 8 + 8 <= 16, and no other thread touches the area.
    /// unsafe {
    ///     area.write_value(8, u64::MAX);
    ///     area.read(8, &mut bytes)?;
    /// }
    /// assert_eq!(bytes, [0xff; 8]);
    /// # Ok::<(), shmlink::region::OutOfBounds>(())
    /// ```
    #[inline(always)]
    pub unsafe fn write_value<T: Copy>(&self, offset: usize, value: T) {
        debug_assert!(
            offset
                .checked_add(size_of::<T>())
                .is_some_and(|e| e <= self.len)
        );
        self.track(offset, size_of::<T>(), true);
        // SAFETY: in bounds and exclusively ours per the caller's contract.
        unsafe {
            self.ptr
                .as_ptr()
                .add(offset)
                .cast::<T>()
                .write_unaligned(value)
        }
    }

    /// Copies `len` bytes from the area at `offset` to `dst`.
    ///
    /// # Safety
    ///
    /// As [`read`](Self::read), with `offset + len <= self.len()` and `dst` valid for
    /// `len` bytes of writes, not overlapping the area.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::{HeapRegion, Region};
    /// use shmlink::sync::atomic::AtomicU64;
    ///
    /// let region = HeapRegion::<AtomicU64>::new(32);
    /// let area = region.area();
    /// let mut dst = [0u8; 4];
    /// // SAFETY: `region` is alive, 4 + 4 <= 32, `dst` is a private 4-byte buffer, and no
    /// // other thread touches the area.
    /// unsafe {
    ///     area.write(4, &[9, 8, 7, 6])?;
    ///     area.copy_out(4, dst.as_mut_ptr(), dst.len());
    /// }
    /// assert_eq!(dst, [9, 8, 7, 6]);
    /// # Ok::<(), shmlink::region::OutOfBounds>(())
    /// ```
    #[inline(always)]
    pub unsafe fn copy_out(&self, offset: usize, dst: *mut u8, len: usize) {
        debug_assert!(offset.checked_add(len).is_some_and(|e| e <= self.len));
        self.track(offset, len, false);
        // SAFETY: per the caller's contract.
        unsafe { core::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(offset), dst, len) }
    }

    /// Copies `len` bytes from `src` into the area at `offset`.
    ///
    /// # Safety
    ///
    /// As [`write`](Self::write), with `offset + len <= self.len()` and `src` valid
    /// for `len` bytes of reads, not overlapping the area.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::{HeapRegion, Region};
    /// use shmlink::sync::atomic::AtomicU64;
    ///
    /// let region = HeapRegion::<AtomicU64>::new(32);
    /// let area = region.area();
    /// let (src, mut dst) = ([7u8; 8], [0u8; 8]);
    /// // SAFETY: `region` is alive, 16 + 8 <= 32, `src` is a private 8-byte buffer, and no
    /// // other thread touches the area.
    /// unsafe {
    ///     area.copy_in(16, src.as_ptr(), src.len());
    ///     area.read(16, &mut dst)?;
    /// }
    /// assert_eq!(dst, src);
    /// # Ok::<(), shmlink::region::OutOfBounds>(())
    /// ```
    #[inline(always)]
    pub unsafe fn copy_in(&self, offset: usize, src: *const u8, len: usize) {
        debug_assert!(offset.checked_add(len).is_some_and(|e| e <= self.len));
        self.track(offset, len, true);
        // SAFETY: per the caller's contract.
        unsafe { core::ptr::copy_nonoverlapping(src, self.ptr.as_ptr().add(offset), len) }
    }

    /// Base address of the area.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::{AREA_ALIGN, HeapRegion, Region};
    /// use shmlink::sync::atomic::AtomicU64;
    ///
    /// let region = HeapRegion::<AtomicU64>::new(64);
    /// let area = region.area();
    /// assert_eq!(area.as_ptr() as usize % AREA_ALIGN, 0);
    /// assert_eq!(area.range(8, 8), Ok(area.as_ptr().wrapping_add(8)));
    /// ```
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::{HeapRegion, Region};
    /// use shmlink::sync::atomic::AtomicU64;
    ///
    /// let region = HeapRegion::<AtomicU64>::new(64);
    /// assert_eq!(region.area().len(), 64);
    /// ```
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` for an area of zero bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::{HeapRegion, Region};
    /// use shmlink::sync::atomic::AtomicU64;
    ///
    /// assert!(HeapRegion::<AtomicU64>::new(0).area().is_empty());
    /// assert!(!HeapRegion::<AtomicU64>::new(8).area().is_empty());
    /// ```
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Checks that `offset..offset+len` is inside the area and returns its address.
    ///
    /// # Errors
    ///
    /// [`OutOfBounds`] if `offset + len` overflows or exceeds [`len`](Self::len).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::{HeapRegion, Region};
    /// use shmlink::sync::atomic::AtomicU64;
    ///
    /// let region = HeapRegion::<AtomicU64>::new(16);
    /// let area = region.area();
    /// let p = area.range(8, 8)?; // the address of bytes 8..16
    /// assert_eq!(p, area.as_ptr().wrapping_add(8));
    /// assert!(area.range(9, 8).is_err());
    /// assert!(area.range(usize::MAX, 2).is_err()); // overflow is caught too
    /// # Ok::<(), shmlink::region::OutOfBounds>(())
    /// ```
    #[inline]
    pub fn range(&self, offset: usize, len: usize) -> Result<*mut u8, OutOfBounds> {
        match offset.checked_add(len) {
            // wrapping_add: computing the address is safe arithmetic even if the
            // memory behind the area is gone; only dereferencing needs it alive.
            Some(end) if end <= self.len => Ok(self.ptr.as_ptr().wrapping_add(offset)),
            _ => Err(OutOfBounds {
                offset,
                len,
                area_len: self.len,
            }),
        }
    }

    /// Copies `dst.len()` bytes starting at `offset` out of the area.
    ///
    /// # Errors
    ///
    /// [`OutOfBounds`] if the range does not fit in the area.
    ///
    /// # Safety
    ///
    /// The region is alive, and no one may write the range while it is copied (the protocol that owns the area
    /// must hand this range to the caller, e.g. a slot between the ring's positions).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::{HeapRegion, Region};
    /// use shmlink::sync::atomic::AtomicU64;
    ///
    /// let region = HeapRegion::<AtomicU64>::new(16);
    /// let area = region.area();
    /// let mut buf = [0u8; 4];
    /// // SAFETY: `region` is alive and no other thread touches the area.
    /// unsafe {
    ///     area.write(12, &[1, 2, 3, 4])?;
    ///     area.read(12, &mut buf)?;
    ///     assert!(area.read(13, &mut buf).is_err()); // 13 + 4 > 16
    /// }
    /// assert_eq!(buf, [1, 2, 3, 4]);
    /// # Ok::<(), shmlink::region::OutOfBounds>(())
    /// ```
    pub unsafe fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        self.range(offset, dst.len())?;
        // SAFETY: the range is inside the area (checked above), dst is a distinct
        // private buffer, and the caller guarantees no concurrent writer.
        unsafe { self.copy_out(offset, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    /// Copies `src` into the area at `offset`.
    ///
    /// # Errors
    ///
    /// [`OutOfBounds`] if the range does not fit in the area.
    ///
    /// # Safety
    ///
    /// The region is alive, and no one else may read or write the range while it is
    /// copied.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::{HeapRegion, Region};
    /// use shmlink::sync::atomic::AtomicU64;
    ///
    /// let region = HeapRegion::<AtomicU64>::new(8);
    /// let area = region.area();
    /// // SAFETY: `region` is alive and no other thread touches the area.
    /// unsafe {
    ///     area.write(0, b"12345678")?;
    ///     assert!(area.write(4, b"12345678").is_err()); // nothing is written
    /// }
    /// # Ok::<(), shmlink::region::OutOfBounds>(())
    /// ```
    pub unsafe fn write(&self, offset: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        self.range(offset, src.len())?;
        // SAFETY: the range is inside the area (checked above), src is a distinct
        // private buffer, and the caller guarantees exclusive access to the range.
        unsafe { self.copy_in(offset, src.as_ptr(), src.len()) };
        Ok(())
    }
}

impl fmt::Debug for RawArea {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawArea")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

/// Memory that holds an algorithm's shared state: a control block and a byte area.
///
/// # Safety
///
/// An implementor guarantees that [`Region::shared`] and the memory behind
/// [`Region::area`] stay valid (mapped, aligned, not overlapping each other) for as long
/// as the region value lives, and that the area is aligned to [`AREA_ALIGN`].
///
/// # Examples
///
/// ```
/// use shmlink::region::{HeapRegion, Region};
/// use shmlink::sync::atomic::{AtomicU64, Ordering};
///
/// // Written once, runs on the heap and in a named segment alike.
/// fn bump<R: Region<Shared = AtomicU64>>(region: &R) -> u64 {
///     region.shared().fetch_add(1, Ordering::AcqRel) + 1
/// }
///
/// let region = HeapRegion::<AtomicU64>::new(0);
/// assert_eq!(bump(&region), 1);
/// assert_eq!(bump(&region), 2);
/// ```
pub unsafe trait Region: Send + Sync {
    /// The control block's type.
    type Shared: ShmSafe;

    /// The control block.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::{HeapRegion, Region};
    /// use shmlink::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let region = HeapRegion::<[AtomicU64; 2]>::new(0);
    /// region.shared()[1].store(5, Ordering::Relaxed);
    /// assert_eq!(region.shared()[1].load(Ordering::Relaxed), 5);
    /// ```
    fn shared(&self) -> &Self::Shared;

    /// The byte area behind the control block.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::{HeapRegion, Region};
    /// use shmlink::sync::atomic::AtomicU64;
    ///
    /// let region = HeapRegion::<AtomicU64>::new(4096);
    /// let area = region.area();
    /// assert_eq!(area.len(), 4096);
    /// ```
    fn area(&self) -> RawArea;
}

/// A [`Region`] on the heap: for in-process use, loom models and Miri.
///
/// # Examples
///
/// ```
/// use shmlink::region::{HeapRegion, Region};
/// use shmlink::sync::atomic::{AtomicU64, Ordering};
///
/// let region = HeapRegion::<AtomicU64>::new(256);
/// region.shared().store(7, Ordering::Release);
/// assert_eq!(region.area().len(), 256);
/// assert_eq!(region.shared().load(Ordering::Acquire), 7);
/// ```
pub struct HeapRegion<T: ShmSafe> {
    shared: Box<T>,
    area: NonNull<u8>,
    area_len: usize,
    #[cfg(shmlink_loom)]
    shadow: Box<[crate::sync::cell::UnsafeCell<()>]>,
    #[cfg(shmlink_loom)]
    shadow_atomics: Box<[crate::sync::atomic::AtomicU64]>,
}

// SAFETY: the control block is Send + Sync (ShmSafe bound) and the area is a private
// allocation only reached through RawArea's unsafe, contract-bearing methods.
unsafe impl<T: ShmSafe> Send for HeapRegion<T> {}
// SAFETY: as above.
unsafe impl<T: ShmSafe> Sync for HeapRegion<T> {}

impl<T: ShmSafe> HeapRegion<T> {
    /// A zeroed control block and a zeroed byte area of `area_len` bytes.
    ///
    /// # Panics
    ///
    /// If `area_len` overflows `isize`; aborts if the allocation fails (like `Vec`).
    /// [`try_new`](Self::try_new) returns `None` instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::{HeapRegion, Region};
    /// use shmlink::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let region = HeapRegion::<AtomicU64>::new(1024);
    /// assert_eq!(region.area().len(), 1024);
    /// assert_eq!(region.shared().load(Ordering::Relaxed), 0); // zeroed
    /// ```
    pub fn new(area_len: usize) -> Self {
        Self::try_new(area_len)
            .unwrap_or_else(|| alloc::handle_alloc_error(Self::area_layout(area_len.max(1))))
    }

    /// Like [`new`](Self::new), but `None` if the area cannot be allocated.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::region::HeapRegion;
    /// use shmlink::sync::atomic::AtomicU64;
    ///
    /// assert!(HeapRegion::<AtomicU64>::try_new(64).is_some());
    /// assert!(HeapRegion::<AtomicU64>::try_new(usize::MAX).is_none()); // too large
    /// ```
    pub fn try_new(area_len: usize) -> Option<Self> {
        let area = if area_len == 0 {
            // An aligned dangling pointer: never dereferenced (every range check fails
            // for a non-empty access).
            NonNull::<u8>::dangling()
                .with_addr(const { core::num::NonZeroUsize::new(AREA_ALIGN).unwrap() })
        } else {
            let layout = Layout::from_size_align(area_len, AREA_ALIGN).ok()?;
            // SAFETY: layout has a non-zero size.
            NonNull::new(unsafe { alloc::alloc_zeroed(layout) })?
        };
        Some(Self {
            shared: Box::new(T::new_zeroed()),
            area,
            area_len,
            #[cfg(shmlink_loom)]
            shadow: (0..area_len.div_ceil(8))
                .map(|_| crate::sync::cell::UnsafeCell::new(()))
                .collect(),
            #[cfg(shmlink_loom)]
            shadow_atomics: (0..area_len.div_ceil(8))
                .map(|_| crate::sync::atomic::AtomicU64::new(0))
                .collect(),
        })
    }

    fn area_layout(area_len: usize) -> Layout {
        Layout::from_size_align(area_len, AREA_ALIGN).expect("area length overflows isize")
    }
}

impl<T: ShmSafe> Drop for HeapRegion<T> {
    fn drop(&mut self) {
        if self.area_len != 0 {
            // SAFETY: allocated in `new` with exactly this layout and not freed before.
            unsafe { alloc::dealloc(self.area.as_ptr(), Self::area_layout(self.area_len)) };
        }
    }
}

// SAFETY: `shared` lives in a Box owned by self; the area is owned by self, aligned
// to AREA_ALIGN, and freed only on drop.
unsafe impl<T: ShmSafe> Region for HeapRegion<T> {
    type Shared = T;

    fn shared(&self) -> &T {
        &self.shared
    }

    fn area(&self) -> RawArea {
        // SAFETY: the allocation lives as long as self and is AREA_ALIGN-aligned.
        #[allow(unused_mut)]
        let mut area = unsafe { RawArea::new(self.area, self.area_len) };
        #[cfg(shmlink_loom)]
        {
            area.shadow = Some(NonNull::from(&*self.shadow));
            area.shadow_atomics = Some(NonNull::from(&*self.shadow_atomics));
        }
        area
    }
}

impl<T: ShmSafe> fmt::Debug for HeapRegion<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeapRegion")
            .field("type", &T::TYPE_NAME)
            .field("area_len", &self.area_len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_area_bounds() {
        let r = HeapRegion::<AtomicU64>::new(16);
        let a = r.area();
        let mut buf = [0u8; 4];
        // SAFETY: single-threaded test, nobody else touches the area.
        unsafe {
            a.write(12, &[1, 2, 3, 4]).unwrap();
            a.read(12, &mut buf).unwrap();
            assert_eq!(buf, [1, 2, 3, 4]);
            assert_eq!(
                a.read(13, &mut buf),
                Err(OutOfBounds {
                    offset: 13,
                    len: 4,
                    area_len: 16
                })
            );
            assert!(a.write(usize::MAX, &[1]).is_err());
        }
    }

    #[test]
    fn empty_area_rejects_access() {
        let r = HeapRegion::<AtomicU32>::new(0);
        assert!(r.area().is_empty());
        assert_eq!(r.area().as_ptr() as usize % AREA_ALIGN, 0);
        assert!(r.area().range(0, 1).is_err());
        assert!(r.area().range(0, 0).is_ok());
    }

    #[test]
    fn fingerprints_differ_by_layout() {
        assert_ne!(
            fingerprint::<[AtomicU64; 2]>(),
            fingerprint::<[AtomicU64; 3]>()
        );
        assert_ne!(fingerprint::<AtomicU64>(), fingerprint::<[AtomicU64; 1]>());
        assert_ne!(combine_fingerprints(1, 2), combine_fingerprints(2, 1));
        assert_eq!(area_offset::<AtomicU64>(), 128);
        assert_eq!(area_offset::<[AtomicU64; 17]>(), 256);
    }
}

//! [`Pod`]: element types that can be copied through shared memory as raw bytes.

use crate::region::{combine_fingerprints, layout_fingerprint};

/// Plain old data: a `Copy` type with no padding, no pointers and no invalid bit
/// patterns, so it can be copied byte for byte into shared memory and back, and any
/// bytes a peer writes read back as *some* valid value.
///
/// # Safety
///
/// An implementor guarantees that every bit pattern of `size_of::<Self>()` bytes is a
/// valid value, that the type has no padding and holds no pointers or references, that
/// its layout is the same in every process that uses the same `FINGERPRINT`, and that
/// its alignment is at most 128.
///
/// # Deriving it
///
/// `#[derive(Pod)]` implements it without `unsafe`, after checking at compile time
/// that the type is a struct with `#[repr(C)]` (or `#[repr(transparent)]`), has no
/// generic parameters, no padding (its size is the sum of its fields'), only `Pod`
/// fields and an alignment of at most 128. Its fingerprint comes from the type's name, a layout version
/// (`#[pod(version = N)]`, default 1), its size and alignment, and each field's name
/// and fingerprint: renaming, retyping or reordering a field changes it, so a program
/// built with the old layout fails to open a ring of the new one (`TypeMismatch`).
///
/// ```
/// use shmlink::region::Pod;
///
/// #[derive(Clone, Copy, Debug, PartialEq, Pod)]
/// #[repr(C)]
/// struct Quote {
///     price: u64,
///     qty: u32,
///     venue: u32,
///     levels: [u64; 4],
/// }
///
/// #[derive(Clone, Copy, Pod)]
/// #[repr(C)]
/// #[pod(version = 2)]
/// struct QuoteV2 {
///     price: u64,
///     qty: u32,
///     venue: u32,
///     levels: [u64; 4],
/// }
/// assert_ne!(Quote::FINGERPRINT, QuoteV2::FINGERPRINT);
/// ```
///
/// What it refuses, each at compile time:
///
/// ```compile_fail
/// # use shmlink::region::Pod;
/// #[derive(Clone, Copy, Pod)] // no #[repr(C)]: the layout may change between builds
/// struct A { x: u64 }
/// ```
///
/// ```compile_fail
/// # use shmlink::region::Pod;
/// #[derive(Clone, Copy, Pod)]
/// #[repr(C)]
/// struct Padded { x: u8, y: u64 } // 7 bytes of padding after `x`
/// ```
///
/// ```compile_fail
/// # use shmlink::region::Pod;
/// #[derive(Clone, Copy, Pod)]
/// #[repr(C)]
/// struct Flag { set: bool } // `bool` is not Pod: 2 to 255 are invalid
/// ```
///
/// ```compile_fail
/// # use shmlink::region::Pod;
/// #[derive(Clone, Copy, Pod)]
/// #[repr(C)]
/// struct Ptr { p: &'static u64 } // a pointer means nothing in another process
/// ```
///
/// ```compile_fail
/// # use shmlink::region::Pod;
/// #[derive(Clone, Copy, Pod)]
/// #[repr(C, align(256))]
/// struct Wide { x: [u64; 32] } // no padding, but aligned above a ring slot's 128
/// ```
///
/// ```compile_fail
/// # use shmlink::region::Pod;
/// #[derive(Clone, Copy, Pod)]
/// #[repr(u8)]
/// enum Side { Buy, Sell } // an enum has invalid bit patterns
/// ```
///
/// # Examples
///
/// By hand, for what the derive does not take (generic types, say):
///
/// ```
/// use shmlink::region::Pod;
/// use shmlink::region::layout_fingerprint;
///
/// #[derive(Clone, Copy)]
/// #[repr(C)]
/// struct Tick {
///     price: u64,
///     qty: u32,
///     venue: u32,
/// }
///
/// // SAFETY: repr(C), integer fields only, no padding (8 + 4 + 4), no pointers.
/// unsafe impl Pod for Tick {
///     const FINGERPRINT: u64 = layout_fingerprint("example::Tick", 1, 16, 8);
/// }
/// ```
pub unsafe trait Pod: Copy + Send + 'static {
    /// Identifies the layout across processes; checked when a ring is opened.
    const FINGERPRINT: u64;
}

macro_rules! pod {
    ($($t:ty),*) => {$(
        // SAFETY: a primitive number: every bit pattern is valid, no padding, no
        // pointers, fixed layout.
        unsafe impl Pod for $t {
            const FINGERPRINT: u64 =
                layout_fingerprint(stringify!($t), 1, size_of::<$t>(), align_of::<$t>());
        }
    )*};
}

pod!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128, f32, f64);

// SAFETY: an array of Pod elements has no padding between elements and inherits every
// property of the element.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {
    const FINGERPRINT: u64 = combine_fingerprints(T::FINGERPRINT, N as u64);
}

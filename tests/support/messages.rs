//! The message types of the channel tests (`tests/channel.rs`, in one process, and
//! `tests/channel_cross_process.rs`): `u64` and [`Tick`] for the `Raw` codec, [`Note`]
//! for `Postcard`, and [`Msg`], what the generic properties need of them.

use serde::{Deserialize, Serialize};
use shmlink::channel::{Codec, Postcard, Raw};
use shmlink::region::{Pod, layout_fingerprint};

/// A plain-old-data message (the `Raw` codec): 24 bytes, no padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Tick {
    pub seq: u64,
    pub price: u64,
    pub qty: u32,
    pub venue: u32,
}

const _: () = assert!(size_of::<Tick>() == 24 && align_of::<Tick>() == 8);

// SAFETY: repr(C), integer fields only (8 + 8 + 4 + 4 bytes, no padding), no pointers;
// every bit pattern is a valid Tick.
unsafe impl Pod for Tick {
    const FINGERPRINT: u64 = layout_fingerprint("tests::channel::Tick", 1, 24, 8);
}

/// A serde message (the `Postcard` codec) of about 100 encoded bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub seq: u64,
    pub urgent: bool,
    pub text: String,
    pub data: Vec<u32>,
}

/// What the generic properties need of a message type.
pub trait Msg: Clone + PartialEq + std::fmt::Debug + Send + 'static {
    type C: Codec<Self>;
    /// The type's name: in case labels, and how a parent tells a child which type to
    /// use.
    const NAME: &'static str;
    /// Serde messages: `len` only says "any or none", and `capacity` counts frames of
    /// the maximum size (smaller messages fit more).
    const SERDE: bool;
    /// Message number `seq`; distinct for distinct `seq`.
    fn make(seq: u64) -> Self;
    /// The number it was made from (panics if the contents do not match it).
    fn seq(&self) -> u64;
}

impl Msg for u64 {
    type C = Raw;
    const NAME: &'static str = "u64";
    const SERDE: bool = false;
    fn make(seq: u64) -> Self {
        seq
    }
    fn seq(&self) -> u64 {
        *self
    }
}

impl Msg for Tick {
    type C = Raw;
    const NAME: &'static str = "Tick";
    const SERDE: bool = false;
    fn make(seq: u64) -> Self {
        Tick {
            seq,
            price: seq.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            qty: seq as u32 ^ 0x5555_5555,
            venue: (seq % 7) as u32,
        }
    }
    fn seq(&self) -> u64 {
        assert_eq!(*self, Tick::make(self.seq), "Tick contents intact");
        self.seq
    }
}

impl Msg for Note {
    type C = Postcard;
    const NAME: &'static str = "Note";
    const SERDE: bool = true;
    fn make(seq: u64) -> Self {
        Note {
            seq,
            urgent: seq.is_multiple_of(3),
            text: format!("note {seq:>10} from the channel tests"),
            data: (0..12).map(|k| (seq as u32).wrapping_mul(31) ^ k).collect(),
        }
    }
    fn seq(&self) -> u64 {
        assert_eq!(*self, Note::make(self.seq), "Note contents intact");
        self.seq
    }
}

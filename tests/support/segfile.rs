//! A segment's file read and written from outside, as a hostile or buggy process
//! would: what the tests of corrupted headers, forged rings and slot alignment use.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use shmlink::segment::SegmentName;

/// The file of the segment `name` (of this user, in `/dev/shm`).
pub fn seg_path(name: &str) -> PathBuf {
    SegmentName::new(name).unwrap().path()
}

/// Overwrites `bytes` at `offset` of the segment file of `name`.
pub fn poke(name: &str, offset: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(seg_path(name)).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

/// Overwrites the little-endian word at `offset` of the segment file of `name`.
pub fn poke_u64(name: &str, offset: u64, value: u64) {
    poke(name, offset, &value.to_le_bytes());
}

/// The little-endian word at `offset` of the segment file of `name`.
pub fn peek_u64(name: &str, offset: u64) -> u64 {
    let mut f = OpenOptions::new().read(true).open(seg_path(name)).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut b = [0u8; 8];
    f.read_exact(&mut b).unwrap();
    u64::from_le_bytes(b)
}

/// File offsets at which `needle` occurs in the segment file of `name` (the file is
/// mapped at a page boundary, so an offset's alignment is the address's).
pub fn file_offsets_of(name: &str, needle: &[u8]) -> Vec<usize> {
    let bytes = std::fs::read(seg_path(name)).unwrap();
    bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

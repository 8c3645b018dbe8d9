//! loom models of the segment header protocol (heap-backed: loom's atomics cannot be
//! laid over mapped memory, so the same header code runs in a `HeapRegion`).
//!
//! Run with `RUSTFLAGS="--cfg shmlink_loom" cargo test --release --test loom_segment`.
#![cfg(shmlink_loom)]

use loom::sync::Arc;
use loom::thread;
use shmlink::region::{HeapRegion, Region};
use shmlink::segment::header::{
    Expect, HEADER_SIZE, HeaderSpec, HeaderState, Kind, ProcessId, SegmentHeader, TypeName,
};

const CREATOR: ProcessId = ProcessId {
    pid: 1234,
    uid: 1000,
    start_ticks: 99,
};

const SPEC: HeaderSpec = HeaderSpec {
    kind: Kind::Typed,
    fingerprint: 0x5eed,
    payload_len: 64,
    created_unix_ns: 1,
    type_name: TypeName::EMPTY,
};

const EXPECT: Expect = Expect {
    kind: Some(Kind::Typed),
    fingerprint: Some(0x5eed),
    payload_len: Some(64),
    type_name: TypeName::EMPTY,
};

/// An opener that sees the ready flag sees the whole header the creator wrote before
/// publishing it (Release store of `state` / Acquire load).
#[test]
fn opener_that_sees_ready_sees_the_whole_header() {
    loom::model(|| {
        let region = Arc::new(HeapRegion::<SegmentHeader>::new(0));
        let creator = {
            let region = region.clone();
            thread::spawn(move || {
                let h = region.shared();
                h.write_creator(&CREATOR);
                h.write_layout(&SPEC);
                h.publish();
            })
        };
        let h = region.shared();
        // The opener's bounded wait, reduced to its core: poll until ready.
        loop {
            match h.state().expect("never corrupt") {
                HeaderState::Ready => break,
                HeaderState::Creating => {
                    // A creator recorded mid-initialisation is always the whole real
                    // one: an opener judges it alive or dead by pid *and* start time,
                    // so a pid seen with a start time still 0 would let any process
                    // that reuses the pid pass for the creator (`creator_pid` is
                    // stored with Release, loaded with Acquire).
                    if let Some(c) = h.creator() {
                        assert_eq!(c, CREATOR, "creator identity seen half written");
                    }
                    thread::yield_now();
                }
            }
        }
        let snap = h.snapshot();
        snap.validate(&EXPECT, HEADER_SIZE as u64 + 64)
            .expect("published header is complete");
        assert_eq!(snap.creator, CREATOR);
        assert_eq!(snap.attached, 1);
        creator.join().unwrap();
    });
}

/// An opener that sees the creator's pid sees the creator's start time with it (the
/// `creator_pid` Release store / Acquire load in `write_creator` / `creator()`), so
/// liveness is always judged on the whole identity. With a Relaxed pid store the
/// opener can read pid 1234 with start time 0, which `is_alive` accepts for any
/// process that has pid 1234.
#[test]
fn opener_never_sees_a_half_written_creator() {
    loom::model(|| {
        let region = Arc::new(HeapRegion::<SegmentHeader>::new(0));
        let creator = {
            let region = region.clone();
            thread::spawn(move || region.shared().write_creator(&CREATOR))
        };
        if let Some(c) = region.shared().creator() {
            assert_eq!(c, CREATOR, "pid seen without the rest of the identity");
        }
        creator.join().unwrap();
        assert_eq!(region.shared().creator(), Some(CREATOR));
    });
}

/// Concurrent attach and detach keep an exact count, and detach never underflows.
#[test]
fn attach_detach_count_is_exact() {
    loom::model(|| {
        let region = Arc::new(HeapRegion::<SegmentHeader>::new(0));
        region.shared().write_layout(&SPEC); // attached = 1 (the creator)
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let region = region.clone();
                thread::spawn(move || {
                    region.shared().attach();
                    region.shared().detach();
                })
            })
            .collect();
        region.shared().detach(); // the creator leaves
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(region.shared().attached(), 0);
        region.shared().detach();
        assert_eq!(region.shared().attached(), 0);
    });
}

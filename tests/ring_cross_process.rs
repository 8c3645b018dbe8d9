//! Rings between real processes (children re-executing this binary, see
//! `tests/support`): an SPSC stream without loss, an SPSC producer killed mid-stream
//! (committed items arrive, then `Disconnected`, and its role can be taken over), MPMC
//! with two producer and two consumer processes delivering each item once, an MPMC
//! producer killed mid-stream leaving no stuck slot, and a frame ring carrying
//! random-sized frames with checksums.

mod support;

use std::time::Duration;

use shmlink::region::Region;
use shmlink::ring::{FrameRecvError, FrameRing, Mpmc, PopError, Spsc};
use shmlink::segment::ShmRegion;
use shmlink::sync::WaitMode;
use shmlink::sync::atomic::{AtomicU64, Ordering};
use support::{Scenario, arg, builder, report, unique_name};

scenarios!(
    spsc_produce_sequence,
    spsc_produce_until_killed,
    mpmc_produce_range,
    mpmc_consume_into_bitmap,
    mpmc_produce_forever,
    frames_send_random,
);

const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

// ---- SPSC ring between processes ----

/// Items streamed through the ring: 10 million in release, fewer in debug builds.
const STREAM: u64 = if cfg!(debug_assertions) {
    200_000
} else {
    10_000_000
};

fn spsc_produce_sequence() {
    let ring = Spsc::<u64, _>::open(builder(&arg("name"))).expect("open ring");
    let count: u64 = arg("count").parse().unwrap();
    let mut tx = ring.producer().expect("claim producer");
    for i in 0..count {
        tx.push(i).expect("push");
    }
    report("done");
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn spsc_streams_a_sequence_between_processes_without_loss() {
    for mode in [WaitMode::Blocking, WaitMode::Spin] {
        let name = unique_name("spsc-stream");
        let ring = Spsc::<u64, _>::create(builder(&name).unlink_on_drop(true), 4096, mode).unwrap();
        let mut rx = ring.consumer().unwrap();
        let child = Scenario::new("spsc_produce_sequence")
            .arg("name", &name)
            .arg("count", STREAM)
            .spawn();
        let mut expected = 0u64;
        let mut buf = vec![0u64; 512];
        while expected < STREAM {
            let n = rx.pop_slice(&mut buf);
            if n == 0 {
                // Nothing ready: block for the next one (or learn the producer died).
                let v = rx
                    .pop_timeout(Duration::from_secs(20))
                    .unwrap_or_else(|e| panic!("{mode:?}: stalled at {expected}: {e}"));
                assert_eq!(v, expected, "{mode:?}");
                expected += 1;
                continue;
            }
            for &v in &buf[..n] {
                assert_eq!(v, expected, "{mode:?}: lost, duplicated or reordered");
                expected += 1;
            }
        }
        child.success(CHILD_TIMEOUT);
        assert_eq!(rx.pop(), Err(PopError::Disconnected), "{mode:?}");
    }
}

fn spsc_produce_until_killed() {
    let ring = Spsc::<u64, _>::open(builder(&arg("name"))).expect("open ring");
    let mut tx = ring.producer().expect("claim producer");
    report("producing");
    for i in 0.. {
        if tx.push(i).is_err() {
            break;
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn spsc_producer_killed_mid_stream_leaves_committed_items_then_disconnect() {
    let name = unique_name("spsc-kill");
    let ring = Spsc::<u64, _>::create(
        builder(&name).unlink_on_drop(true),
        1024,
        WaitMode::Blocking,
    )
    .unwrap();
    let mut rx = ring.consumer().unwrap();
    let mut child = Scenario::new("spsc_produce_until_killed")
        .arg("name", &name)
        .spawn();
    child.wait_for("producing", CHILD_TIMEOUT);
    let mut expected = 0u64;
    while expected < 50_000 {
        assert_eq!(rx.pop_timeout(Duration::from_secs(20)), Ok(expected));
        expected += 1;
    }
    // The producer keeps the ring (about) full; kill it mid-stream.
    child.kill();
    let before = expected;
    loop {
        match rx.pop_timeout(Duration::from_secs(20)) {
            Ok(v) => {
                assert_eq!(v, expected, "committed items arrive in order, once");
                expected += 1;
            }
            Err(PopError::Disconnected) => break,
            Err(e) => panic!("expected Disconnected after the kill, got {e}"),
        }
    }
    assert!(
        expected - before <= 1024,
        "at most a ringful was committed after we stopped popping"
    );
    // A new producer can take over the dead one's role and continue the sequence.
    let mut tx = ring.producer().expect("reclaim the dead producer's role");
    tx.try_push(expected).unwrap();
    assert_eq!(rx.try_pop(), Ok(expected));
}

// ---- MPMC ring between processes ----

/// Items per producer process.
const MPMC_ITEMS: u64 = if cfg!(debug_assertions) {
    50_000
} else {
    1_000_000
};

fn mpmc_produce_range() {
    let ring = Mpmc::<u64, _>::open(builder(&arg("name"))).expect("open ring");
    let first: u64 = arg("first").parse().unwrap();
    let count: u64 = arg("count").parse().unwrap();
    let mut tx = ring.producer().expect("register producer");
    for v in first..first + count {
        tx.push_timeout(v, Duration::from_secs(20)).expect("push");
    }
}

fn mpmc_consume_into_bitmap() {
    let ring = Mpmc::<u64, _>::open(builder(&arg("name"))).expect("open ring");
    let seen = ShmRegion::<AtomicU64>::open(builder(&arg("bitmap"))).expect("open bitmap");
    let total: u64 = arg("total").parse().unwrap();
    let mut rx = ring.consumer().expect("register consumer");
    let area = seen.area();
    report("consuming");
    let mut got = 0u64;
    loop {
        match rx.pop_timeout(Duration::from_secs(20)) {
            Ok(v) => {
                assert!(v < total, "value {v} out of range");
                let word = (v / 64) as usize * 8;
                // SAFETY: word < bitmap length (checked by the range assert above and
                // the bitmap's size); bitmap words are only accessed atomically.
                let bits = unsafe { area.atomic_u64(word) };
                let bit = 1u64 << (v % 64);
                let before = bits.fetch_or(bit, Ordering::AcqRel);
                assert_eq!(before & bit, 0, "{v} delivered twice");
                got += 1;
            }
            Err(PopError::Disconnected) => break,
            Err(e) => panic!("pop: {e}"),
        }
    }
    report(format!("got={got}"));
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn mpmc_two_producer_and_two_consumer_processes_deliver_each_item_once() {
    let name = unique_name("mpmc");
    let bitmap = unique_name("mpmc-bits");
    let total = 2 * MPMC_ITEMS;
    let ring = Mpmc::<u64, _>::create(
        builder(&name).unlink_on_drop(true),
        1024,
        WaitMode::Blocking,
    )
    .unwrap();
    let bits = ShmRegion::<AtomicU64>::create(
        builder(&bitmap).unlink_on_drop(true),
        (total.div_ceil(64) * 8) as usize,
    )
    .unwrap();
    let mut consumers: Vec<_> = (0..2)
        .map(|_| {
            Scenario::new("mpmc_consume_into_bitmap")
                .arg("name", &name)
                .arg("bitmap", &bitmap)
                .arg("total", total)
                .spawn()
        })
        .collect();
    for c in &mut consumers {
        c.wait_for("consuming", CHILD_TIMEOUT);
    }
    let producers: Vec<_> = (0..2)
        .map(|p| {
            Scenario::new("mpmc_produce_range")
                .arg("name", &name)
                .arg("first", p * MPMC_ITEMS)
                .arg("count", MPMC_ITEMS)
                .spawn()
        })
        .collect();
    for p in producers {
        p.success(CHILD_TIMEOUT);
    }
    let got: u64 = consumers
        .into_iter()
        .map(|c| {
            c.success(CHILD_TIMEOUT).values()["got"]
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(got, total, "consumers together got every item");
    let area = bits.area();
    let mut delivered = 0u64;
    for w in 0..total.div_ceil(64) as usize {
        // SAFETY: w * 8 + 8 <= area length; words are only accessed atomically.
        delivered += u64::from(
            unsafe { area.atomic_u64(w * 8) }
                .load(Ordering::Acquire)
                .count_ones(),
        );
    }
    assert_eq!(delivered, total, "every item exactly once");
    assert_eq!(ring.repairs().lost + ring.repairs().holes, 0);
}

fn mpmc_produce_forever() {
    let ring = Mpmc::<u64, _>::open(builder(&arg("name"))).expect("open ring");
    let base: u64 = arg("base").parse().unwrap();
    let mut tx = ring.producer().expect("register producer");
    report("producing");
    for i in 0.. {
        if tx.push_timeout(base + i, Duration::from_secs(20)).is_err() {
            break;
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn mpmc_producer_killed_mid_stream_leaves_no_stuck_slot() {
    const BASE: u64 = 1 << 40;
    let name = unique_name("mpmc-kill");
    let ring = Mpmc::<u64, _>::create(builder(&name).unlink_on_drop(true), 256, WaitMode::Blocking)
        .unwrap();
    let mut rx = ring.consumer().unwrap();
    let mut victim = Scenario::new("mpmc_produce_forever")
        .arg("name", &name)
        .arg("base", 0)
        .spawn();
    victim.wait_for("producing", CHILD_TIMEOUT);
    let survivor = Scenario::new("mpmc_produce_range")
        .arg("name", &name)
        .arg("first", BASE)
        .arg("count", MPMC_ITEMS)
        .spawn();
    let (mut next_victim, mut next_survivor) = (0u64, BASE);
    let check = |v: u64, nv: &mut u64, ns: &mut u64| {
        if v >= BASE {
            assert_eq!(v, *ns, "survivor's items once, in order");
            *ns += 1;
        } else {
            assert_eq!(v, *nv, "victim's items once, in order, no gap");
            *nv += 1;
        }
    };
    while next_victim < 20_000 {
        let v = rx.pop_timeout(Duration::from_secs(20)).unwrap();
        check(v, &mut next_victim, &mut next_survivor);
    }
    victim.kill();
    loop {
        match rx.pop_timeout(Duration::from_secs(20)) {
            Ok(v) => check(v, &mut next_victim, &mut next_survivor),
            Err(PopError::Disconnected) => break,
            Err(e) => panic!("after the kill: {e} (a stuck slot would time out here)"),
        }
    }
    survivor.success(CHILD_TIMEOUT);
    assert_eq!(
        next_survivor,
        BASE + MPMC_ITEMS,
        "every survivor item arrived"
    );
    // The victim may have died between claiming a slot and publishing it: that slot
    // became a hole, and its value was never acknowledged.
    assert!(ring.repairs().holes <= 1, "{:?}", ring.repairs());
    assert_eq!(ring.repairs().lost, 0);
}

// ---- frame ring between processes ----

const FRAMES: u64 = if cfg!(debug_assertions) {
    20_000
} else {
    300_000
};

/// FNV-1a of `data`.
fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn frames_send_random() {
    let ring = FrameRing::open(builder(&arg("name"))).expect("open frame ring");
    let mut tx = ring.producer().expect("claim producer");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut frame = Vec::new();
    for i in 0..FRAMES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = 16 + (x % 2000) as usize;
        frame.clear();
        frame.extend_from_slice(&i.to_le_bytes());
        frame.extend_from_slice(&[0; 8]);
        frame.extend((0..len - 16).map(|k| (x >> (k % 56)) as u8));
        let sum = checksum(&frame[16..]);
        frame[8..16].copy_from_slice(&sum.to_le_bytes());
        tx.send_timeout(&frame, Duration::from_secs(20))
            .expect("send");
    }
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn frame_ring_carries_random_sized_messages_with_checksums() {
    let name = unique_name("frames");
    let ring = FrameRing::create(
        builder(&name).unlink_on_drop(true),
        1 << 16,
        4096,
        WaitMode::Blocking,
    )
    .unwrap();
    let mut rx = ring.consumer().unwrap();
    let child = Scenario::new("frames_send_random")
        .arg("name", &name)
        .spawn();
    let mut buf = Vec::new();
    for i in 0..FRAMES {
        let len = rx
            .recv_timeout(&mut buf, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("frame {i}: {e}"));
        assert!((16..2016).contains(&len));
        assert_eq!(
            u64::from_le_bytes(buf[..8].try_into().unwrap()),
            i,
            "in order"
        );
        let sum = u64::from_le_bytes(buf[8..16].try_into().unwrap());
        assert_eq!(checksum(&buf[16..]), sum, "frame {i} intact");
    }
    child.success(CHILD_TIMEOUT);
    assert_eq!(
        rx.recv_timeout(&mut buf, Duration::from_secs(20)),
        Err(FrameRecvError::Disconnected)
    );
}

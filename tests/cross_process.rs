//! Segments shared between real processes: create/open across a fork+exec, racing
//! `open_or_create`, and creators killed with SIGKILL before and after publishing.

mod support;

use std::time::Duration;

use shmlink::region::{Region, ShmSafe};
use shmlink::ring::{FrameRing, Mpmc, PopError, RecvError, Spsc};
use shmlink::segment::{
    self, Disposition, OpenError, Segment, SegmentBuilder, ShmRegion, StaleReason, Status,
};
use shmlink::sync::WaitMode;
use shmlink::sync::atomic::{AtomicU64, Ordering};
use support::{Scenario, arg, report, unique_name};

scenarios!(
    read_what_parent_wrote,
    race_open_or_create,
    create_then_hang_in_init,
    create_then_hang,
    create_then_exit_cleanly,
    spsc_produce_sequence,
    spsc_produce_until_killed,
    mpmc_produce_range,
    mpmc_consume_into_bitmap,
    frames_send_random,
    mpmc_produce_forever,
    open_without_file_descriptors,
);

const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

/// The shared control block of these tests.
#[repr(C)]
struct Board {
    value: AtomicU64,
    token: AtomicU64,
    reply: AtomicU64,
    attached: AtomicU64,
}

// SAFETY: repr(C), only integer atomics (any bit pattern valid), no pointers.
unsafe impl ShmSafe for Board {
    const TYPE_NAME: &'static str = "tests::Board";
    fn new_zeroed() -> Self {
        Board {
            value: AtomicU64::new(0),
            token: AtomicU64::new(0),
            reply: AtomicU64::new(0),
            attached: AtomicU64::new(0),
        }
    }
}

fn builder(name: &str) -> SegmentBuilder {
    Segment::builder(name).timeout(Duration::from_secs(5))
}

// ---- create in one process, open in another ----

fn read_what_parent_wrote() {
    let board = ShmRegion::<Board>::open(builder(&arg("name"))).expect("child open");
    let value = board.shared().value.load(Ordering::Acquire);
    let mut text = [0u8; 5];
    // SAFETY: the parent wrote the area before spawning us and does not write it again.
    unsafe { board.area().read(0, &mut text).unwrap() };
    report(format!("value={value}"));
    report(format!("text={}", String::from_utf8_lossy(&text)));
    report(format!("creator={}", board.segment().creator().pid));
    board.shared().reply.store(value * 2, Ordering::Release);
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn child_opens_by_name_and_reads_what_parent_wrote() {
    let name = unique_name("xread");
    let board = ShmRegion::<Board>::create(builder(&name).unlink_on_drop(true), 64).unwrap();
    board.shared().value.store(21, Ordering::Relaxed);
    // SAFETY: no other process has the segment yet.
    unsafe { board.area().write(0, b"hello").unwrap() };
    board.shared().token.store(1, Ordering::Release);

    let done = Scenario::new("read_what_parent_wrote")
        .arg("name", &name)
        .spawn()
        .success(CHILD_TIMEOUT);
    let v = done.values();
    assert_eq!(v["value"], "21");
    assert_eq!(v["text"], "hello");
    assert_eq!(v["creator"], std::process::id().to_string());
    assert_eq!(board.shared().reply.load(Ordering::Acquire), 42);
}

// ---- racing open_or_create ----

fn race_open_or_create() {
    let name = arg("name");
    let start_at: u64 = arg("start_at_ns").parse().unwrap();
    let racers: u64 = arg("racers").parse().unwrap();
    // Line up with the other racers, then go at the same instant.
    while now_ns() < start_at {
        std::hint::spin_loop();
    }
    let my_token = u64::from(std::process::id());
    let (board, how) = ShmRegion::<Board>::open_or_create(builder(&name), 0).unwrap();
    if how == Disposition::Created {
        // Only the creator writes the token.
        board.shared().token.store(my_token, Ordering::Release);
    }
    // Stay attached until every racer is: a creator that left early would let a late
    // racer create the segment a second time.
    board.shared().attached.fetch_add(1, Ordering::AcqRel);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while board.shared().attached.load(Ordering::Acquire) < racers
        || board.shared().token.load(Ordering::Acquire) == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "racers never lined up"
        );
        std::thread::sleep(Duration::from_micros(100));
    }
    report(format!("how={how:?}"));
    report(format!(
        "token={}",
        board.shared().token.load(Ordering::Acquire)
    ));
    report(format!("me={my_token}"));
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn racing_open_or_create_creates_exactly_once() {
    const RACERS: usize = 3;
    let rounds = if cfg!(debug_assertions) { 4 } else { 12 };
    for round in 0..rounds {
        let name = unique_name("race");
        let start_at = now_ns() + 500_000_000;
        let children: Vec<_> = (0..RACERS)
            .map(|_| {
                Scenario::new("race_open_or_create")
                    .arg("name", &name)
                    .arg("start_at_ns", start_at)
                    .arg("racers", RACERS)
                    .spawn()
            })
            .collect();
        let results: Vec<_> = children
            .into_iter()
            .map(|c| c.success(CHILD_TIMEOUT).values())
            .collect();
        let creators: Vec<_> = results.iter().filter(|v| v["how"] == "Created").collect();
        assert_eq!(creators.len(), 1, "round {round}: {results:?}");
        let token = &creators[0]["me"];
        for v in &results {
            assert_eq!(&v["token"], token, "round {round}: all agree on contents");
        }
        // Everyone detached cleanly: the segment is idle, not stale; remove it.
        let info = segment::inspect(&name).unwrap();
        assert_eq!(info.status, Status::Idle, "round {round}");
        segment::unlink(&name).unwrap();
    }
}

// ---- creators killed with SIGKILL ----

fn create_then_hang_in_init() {
    let name = arg("name");
    let _ = ShmRegion::<Board>::create_with(builder(&name), 0, |_, _| {
        report("initializing");
        std::thread::sleep(Duration::from_secs(60));
    });
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn creator_killed_before_ready_leaves_a_stale_segment() {
    let name = unique_name("kill-init");
    let mut child = Scenario::new("create_then_hang_in_init")
        .arg("name", &name)
        .spawn();
    child.wait_for("initializing", CHILD_TIMEOUT);
    let pid = child.pid();

    // While the creator lives, opening waits and then reports it as not ready.
    let err =
        ShmRegion::<Board>::open(builder(&name).timeout(Duration::from_millis(50))).unwrap_err();
    assert!(matches!(err, OpenError::NotInitialized { .. }), "{err:?}");
    assert_eq!(
        segment::inspect(&name).unwrap().status,
        Status::Initializing
    );

    child.kill();
    let err = ShmRegion::<Board>::open(builder(&name)).unwrap_err();
    match err {
        OpenError::Stale(info) => {
            assert_eq!(info.reason, StaleReason::DiedBeforeReady);
            assert_eq!(info.creator.map(|c| c.pid), Some(pid));
        }
        other => panic!("expected Stale, got {other:?}"),
    }
    assert!(matches!(
        segment::inspect(&name).unwrap().status,
        Status::Stale(_)
    ));

    // open_or_create replaces the stale segment with a fresh one.
    let (fresh, how) =
        ShmRegion::<Board>::open_or_create(builder(&name).unlink_on_drop(true), 0).unwrap();
    assert_eq!(how, Disposition::Created);
    assert_eq!(fresh.segment().creator().pid, std::process::id());
}

fn create_then_hang() {
    let name = arg("name");
    let board = ShmRegion::<Board>::create(builder(&name), 0).unwrap();
    board.shared().value.store(7, Ordering::Release);
    report("ready");
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn creator_killed_after_ready_is_recognised_as_stale() {
    let name = unique_name("kill-ready");
    let mut child = Scenario::new("create_then_hang").arg("name", &name).spawn();
    child.wait_for("ready", CHILD_TIMEOUT);

    // Alive: opens fine, and a handle we hold keeps it alive.
    {
        let live = ShmRegion::<Board>::open(builder(&name)).unwrap();
        assert_eq!(live.shared().value.load(Ordering::Acquire), 7);
        assert_eq!(segment::inspect(&name).unwrap().status, Status::Alive);
    }

    child.kill();
    match ShmRegion::<Board>::open(builder(&name)).unwrap_err() {
        OpenError::Stale(info) => assert_eq!(
            info.reason,
            StaleReason::CrashedWhileAttached { attached: 1 }
        ),
        other => panic!("expected Stale, got {other:?}"),
    }
    let listed = segment::list().unwrap();
    let mine = listed
        .iter()
        .find(|i| i.name.as_str() == name)
        .expect("listed");
    assert!(matches!(mine.status, Status::Stale(_)), "{:?}", mine.status);

    assert!(segment::remove_stale(&name).unwrap());
    assert_eq!(
        ShmRegion::<Board>::open(builder(&name)).unwrap_err(),
        OpenError::NotFound
    );
}

fn create_then_exit_cleanly() {
    let name = arg("name");
    let board = ShmRegion::<Board>::create(builder(&name), 0).unwrap();
    board.shared().value.store(99, Ordering::Release);
    // Dropped without unlinking: a persistent segment.
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn segment_left_by_a_clean_exit_is_idle_and_opens() {
    let name = unique_name("clean");
    Scenario::new("create_then_exit_cleanly")
        .arg("name", &name)
        .spawn()
        .success(CHILD_TIMEOUT);
    assert_eq!(segment::inspect(&name).unwrap().status, Status::Idle);
    assert!(!segment::remove_stale(&name).unwrap(), "idle is not stale");
    let board = ShmRegion::<Board>::open(builder(&name)).unwrap();
    assert_eq!(board.shared().value.load(Ordering::Acquire), 99);
    drop(board);
    segment::unlink(&name).unwrap();
}

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
        Err(RecvError::Disconnected)
    );
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

// ---- OS errors keep their errno ----

fn open_without_file_descriptors() {
    let name = arg("name");
    // Allow no new descriptor at all (existing ones keep working), so shm_open fails
    // with EMFILE.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass; setrlimit reads it; lowering our
    // own soft limit (keeping the hard one) is always allowed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = 0;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    let err = Segment::builder(&name).open().unwrap_err();
    report(format!("err={err:?}"));
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn os_errors_keep_their_errno() {
    let name = unique_name("emfile");
    let _seg = Segment::builder(&name)
        .unlink_on_drop(true)
        .create()
        .unwrap();
    let done = Scenario::new("open_without_file_descriptors")
        .arg("name", &name)
        .spawn()
        .success(CHILD_TIMEOUT);
    assert_eq!(
        done.values()["err"],
        format!(
            "{:?}",
            OpenError::Os(shmlink::segment::OsError {
                op: "shm_open",
                errno: libc::EMFILE
            })
        )
    );
}

//! Segments shared between real processes (children re-executing this binary, see
//! `tests/support`): a child opens by name what its parent created and wrote, racing
//! `open_or_create` creates exactly once, creators killed with SIGKILL before and after
//! publishing leave stale segments, a clean exit leaves an idle one, and OS errors keep
//! their errno.

mod support;

use std::time::Duration;

use shmlink::region::{Region, ShmSafe};
use shmlink::segment::{self, Disposition, OpenError, Segment, ShmRegion, StaleReason, Status};
use shmlink::sync::atomic::{AtomicU64, Ordering};
use support::{Scenario, arg, builder, now_ns, report, unique_name};

scenarios!(
    read_what_parent_wrote,
    race_open_or_create,
    create_then_hang_in_init,
    create_then_hang,
    create_then_exit_cleanly,
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
    assert_eq!(how, Disposition::Replaced);
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

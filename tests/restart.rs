//! Crash-only restarts (issue 14): processes that use a named object are SIGKILLed,
//! and whoever starts again calls `open_or_create` with no cleanup in between. A
//! stale object that validates is resumed with what it holds; one that does not is
//! replaced, and the caller is told which.

mod support;

use std::time::Duration;

use shmlink::channel::{Channel, Flavor, Options, Postcard};
use shmlink::lock::{BakeryMutex, LockError, Semaphore, SeqLock};
use shmlink::ring::{Mpmc, PopError, Spsc};
use shmlink::segment::{Disposition, OnStale};
use shmlink::sync::WaitMode;
use support::{Scenario, arg, builder, report, unique_name};

scenarios!(
    spsc_produce_and_hang,
    spsc_consume_and_hang,
    spsc_produce_more,
    locks_use_and_hang,
    mpmc_produce_and_hang,
    channels_send_and_hang,
);

const CHILD_TIMEOUT: Duration = Duration::from_secs(30);
const CAPACITY: usize = 64;

fn ring(
    name: &str,
) -> (
    Spsc<u64, shmlink::segment::ShmRegion<shmlink::ring::SpscHeader>>,
    Disposition,
) {
    Spsc::<u64, _>::open_or_create(builder(name), CAPACITY, WaitMode::Blocking)
        .expect("open_or_create")
}

/// Pushes `0..count`, then waits to be killed.
fn spsc_produce_and_hang() {
    let (ring, how) = ring(&arg("name"));
    let count: u64 = arg("count").parse().unwrap();
    let mut tx = ring.producer().expect("claim producer");
    for i in 0..count {
        tx.push(i).expect("push");
    }
    report(format!("pushed how={how:?}"));
    std::thread::sleep(Duration::from_secs(600));
}

/// Pops `count` values, checks they are `0..count`, then waits to be killed.
fn spsc_consume_and_hang() {
    let (ring, how) = ring(&arg("name"));
    let count: u64 = arg("count").parse().unwrap();
    let mut rx = ring.consumer().expect("claim consumer");
    for i in 0..count {
        let v = rx.pop_timeout(Duration::from_secs(10)).expect("pop");
        assert_eq!(v, i);
    }
    report(format!("popped how={how:?}"));
    std::thread::sleep(Duration::from_secs(600));
}

/// A restarted producer: pushes `from..to` and exits.
fn spsc_produce_more() {
    let (ring, how) = ring(&arg("name"));
    let from: u64 = arg("from").parse().unwrap();
    let to: u64 = arg("to").parse().unwrap();
    let mut tx = ring
        .producer()
        .expect("claim the producer role of a dead process");
    for i in from..to {
        tx.push(i).expect("push");
    }
    report(format!("pushed how={how:?}"));
}

/// Both sides of an SPSC ring are killed; a restarted consumer resumes the ring and
/// receives every value committed before the deaths, in order, then a restarted
/// producer's.
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn a_consumer_restarted_after_both_sides_died_reads_what_was_committed() {
    let name = unique_name("restart-spsc");
    let mut producer = Scenario::new("spsc_produce_and_hang")
        .arg("name", &name)
        .arg("count", 40)
        .spawn();
    assert_eq!(
        producer.wait_for("pushed", CHILD_TIMEOUT),
        "pushed how=Created"
    );
    let mut consumer = Scenario::new("spsc_consume_and_hang")
        .arg("name", &name)
        .arg("count", 10)
        .spawn();
    assert_eq!(
        consumer.wait_for("popped", CHILD_TIMEOUT),
        "popped how=Opened"
    );
    producer.kill();
    consumer.kill();

    // The restarted consumer: no cleanup, the same call as the first time.
    let (ring, how) = ring(&name);
    assert_eq!(how, Disposition::Resumed);
    let mut rx = ring
        .consumer()
        .expect("claim the consumer role of a dead process");
    for i in 10..40 {
        assert_eq!(
            rx.pop_timeout(Duration::from_secs(5)),
            Ok(i),
            "committed before the crash"
        );
    }
    // The producer is dead, which a waiting receive sees: nothing more comes until
    // one is started again.
    assert_eq!(
        rx.pop_timeout(Duration::from_secs(5)),
        Err(PopError::Disconnected)
    );
    let more = Scenario::new("spsc_produce_more")
        .arg("name", &name)
        .arg("from", 40)
        .arg("to", 50)
        .spawn();
    let done = more.success(CHILD_TIMEOUT);
    assert_eq!(done.reports, ["pushed how=Opened"]);
    for i in 40..50 {
        assert_eq!(
            rx.pop_timeout(Duration::from_secs(5)),
            Ok(i),
            "from the new producer"
        );
    }
    ring.segment().unlink().unwrap();
}

/// Kills a producer that pushed `count` values into ring `name`.
fn leave_stale_ring(name: &str, count: u64) {
    let mut producer = Scenario::new("spsc_produce_and_hang")
        .arg("name", name)
        .arg("count", count)
        .spawn();
    producer.wait_for("pushed", CHILD_TIMEOUT);
    producer.kill();
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn a_stale_ring_is_replaced_when_asked_or_when_it_does_not_match() {
    // Asked: `OnStale::Replace`.
    let name = unique_name("restart-replace");
    leave_stale_ring(&name, 5);
    let (ring, how) = Spsc::<u64, _>::open_or_create(
        builder(&name)
            .on_stale(OnStale::Replace)
            .unlink_on_drop(true),
        CAPACITY,
        WaitMode::Blocking,
    )
    .unwrap();
    assert_eq!(how, Disposition::Replaced);
    assert_eq!(
        ring.consumer().unwrap().try_pop(),
        Err(PopError::Empty),
        "a fresh ring"
    );
    drop(ring);

    // Another capacity, another element type: not the ring asked for.
    let name = unique_name("restart-mismatch");
    leave_stale_ring(&name, 5);
    let (ring, how) = Spsc::<u64, _>::open_or_create(
        builder(&name).unlink_on_drop(true),
        2 * CAPACITY,
        WaitMode::Blocking,
    )
    .unwrap();
    assert_eq!(how, Disposition::Replaced);
    assert_eq!(ring.capacity(), 2 * CAPACITY);
    drop(ring);
    leave_stale_ring(&name, 5);
    let (ring, how) = Spsc::<u32, _>::open_or_create(
        builder(&name).unlink_on_drop(true),
        CAPACITY,
        WaitMode::Blocking,
    )
    .unwrap();
    assert_eq!(how, Disposition::Replaced);
    drop(ring);
}

/// A stale ring whose header matches but whose own configuration is garbage (written
/// from outside after its users died) is refused by the ring's check while still held
/// exclusively, removed, and a fresh one created.
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn a_stale_ring_whose_contents_do_not_validate_is_replaced() {
    let name = unique_name("restart-garbage");
    leave_stale_ring(&name, 5);
    // The ring's configuration is the first line of the payload, after the header.
    support::segfile::poke(&name, 128, &[0xff; 32]);
    let (ring, how) = Spsc::<u64, _>::open_or_create(
        builder(&name).unlink_on_drop(true),
        CAPACITY,
        WaitMode::Blocking,
    )
    .unwrap();
    assert_eq!(how, Disposition::Replaced);
    assert_eq!(ring.capacity(), CAPACITY);
    assert_eq!(ring.consumer().unwrap().try_pop(), Err(PopError::Empty));
    assert!(ring.is_current());
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn a_live_ring_is_never_replaced() {
    let name = unique_name("restart-live");
    let (ring, how) = ring(&name);
    assert_eq!(how, Disposition::Created);
    // Another capacity: refused, and the live ring keeps its name.
    let err = Spsc::<u64, _>::open_or_create(builder(&name), 2 * CAPACITY, WaitMode::Blocking)
        .unwrap_err();
    assert!(
        err.to_string().contains("size") || err.to_string().contains("length"),
        "{err}"
    );
    assert!(ring.segment().is_current());
    ring.segment().unlink().unwrap();
}

/// Several processes restart at once on a stale ring: exactly one resumes it, the
/// others open what it resumed, and all see the committed values.
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn of_racing_restarts_exactly_one_resumes() {
    let name = unique_name("restart-race");
    leave_stale_ring(&name, 20);
    let hows: Vec<Disposition> = std::thread::scope(|s| {
        let racers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let (ring, how) = ring(&name);
                    (ring.segment().is_current(), how, ring)
                })
            })
            .collect();
        let got: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        assert!(got.iter().all(|(current, _, _)| *current));
        let mut rx = got[0].2.consumer().unwrap();
        for i in 0..20 {
            assert_eq!(rx.try_pop(), Ok(i));
        }
        got.into_iter().map(|(_, how, _)| how).collect()
    });
    let resumed = hows.iter().filter(|h| **h == Disposition::Resumed).count();
    let opened = hows.iter().filter(|h| **h == Disposition::Opened).count();
    assert_eq!((resumed, opened), (1, 3), "{hows:?}");
    shmlink::segment::unlink(&name).unwrap();
}

/// Takes one permit of a semaphore, writes a seqlock, and sets a Bakery mutex's value
/// while holding it, then waits to be killed (holding the mutex).
fn locks_use_and_hang() {
    let name = arg("name");
    let (sem, _) = Semaphore::open_or_create(builder(&format!("{name}-sem")), 3, 3).unwrap();
    sem.acquire().unwrap();
    let (seq, _) = SeqLock::open_or_create(builder(&format!("{name}-seq")), 0u64).unwrap();
    seq.writer().expect("writer").write(42);
    let (mut m, _) =
        BakeryMutex::open_or_create(builder(&format!("{name}-mutex")), 4, 0u64).unwrap();
    let mut guard = m.lock().map_err(|e| e.without_guard()).unwrap();
    guard.set(9);
    report("holding");
    std::thread::sleep(Duration::from_secs(600));
    drop(guard);
}

/// Each lock's user is killed (the mutex while held); the restarted process gets each
/// one back with its state: the semaphore's count, the seqlock's value, the mutex's
/// value and the news that its holder died.
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn locks_restarted_after_their_user_died_keep_their_state() {
    let name = unique_name("restart-locks");
    let mut user = Scenario::new("locks_use_and_hang")
        .arg("name", &name)
        .spawn();
    user.wait_for("holding", CHILD_TIMEOUT);
    user.kill();

    let (sem, how) =
        Semaphore::open_or_create(builder(&format!("{name}-sem")).unlink_on_drop(true), 3, 3)
            .unwrap();
    assert_eq!((how, sem.value()), (Disposition::Resumed, 2));
    let (seq, how) =
        SeqLock::open_or_create(builder(&format!("{name}-seq")).unlink_on_drop(true), 0u64)
            .unwrap();
    assert_eq!((how, seq.read().unwrap()), (Disposition::Resumed, 42));
    let (mut m, how) = BakeryMutex::open_or_create(
        builder(&format!("{name}-mutex")).unlink_on_drop(true),
        4,
        0u64,
    )
    .unwrap();
    assert_eq!(how, Disposition::Resumed);
    match m.lock() {
        Err(LockError::OwnerDied(g)) => assert_eq!(g.get(), 9),
        other => panic!("expected OwnerDied, got {:?}", other.map(|g| g.get())),
    }
}

/// The same for an MPMC ring: values committed before the producer died are there.
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn an_mpmc_ring_is_resumed_with_its_values() {
    let name = unique_name("restart-mpmc");
    let mut producer = Scenario::new("mpmc_produce_and_hang")
        .arg("name", &name)
        .spawn();
    producer.wait_for("pushed", CHILD_TIMEOUT);
    producer.kill();
    let (ring, how) = Mpmc::<u64, _>::open_or_create(
        builder(&name).unlink_on_drop(true),
        CAPACITY,
        WaitMode::Blocking,
    )
    .unwrap();
    assert_eq!(how, Disposition::Resumed);
    let mut rx = ring.consumer().unwrap();
    for i in 0..20 {
        assert_eq!(rx.try_pop(), Ok(i));
    }
}

/// Pushes `0..20` into an MPMC ring, then waits to be killed.
fn mpmc_produce_and_hang() {
    let (ring, _) =
        Mpmc::<u64, _>::open_or_create(builder(&arg("name")), CAPACITY, WaitMode::Blocking)
            .unwrap();
    let mut tx = ring.producer().unwrap();
    for i in 0..20 {
        tx.try_push(i).unwrap();
    }
    report("pushed");
    std::thread::sleep(Duration::from_secs(600));
}

/// The four kinds of named channel a test restarts: raw and postcard, SPSC and MPMC.
fn channel_options() -> [(&'static str, Options); 2] {
    [
        ("spsc", Options::new().capacity(64).flavor(Flavor::Spsc)),
        ("mpmc", Options::new().capacity(64).flavor(Flavor::Mpmc)),
    ]
}

/// Sends `0..20` (raw) and their decimal strings (postcard) into each kind of
/// channel, then waits to be killed.
fn channels_send_and_hang() {
    let name = arg("name");
    let mut keep = Vec::new();
    for (flavor, options) in channel_options() {
        let (raw, _) =
            Channel::<u64>::open_or_create(builder(&format!("{name}-raw-{flavor}")), options)
                .unwrap();
        let mut tx = raw.sender().unwrap();
        let (text, _) = Channel::<String, Postcard>::open_or_create(
            builder(&format!("{name}-text-{flavor}")),
            options,
        )
        .unwrap();
        let mut text_tx = text.sender().unwrap();
        for i in 0..20u64 {
            tx.send(i).unwrap();
            text_tx.send(i.to_string()).unwrap();
        }
        keep.push((raw, tx, text, text_tx));
    }
    report("sent");
    std::thread::sleep(Duration::from_secs(600));
    drop(keep);
}

/// Every kind of named channel keeps what was sent into it when its sender dies
/// before anyone received: the restarted receiver resumes it and gets it all.
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn channels_restarted_after_their_sender_died_deliver_what_was_sent() {
    let name = unique_name("restart-channels");
    let mut sender = Scenario::new("channels_send_and_hang")
        .arg("name", &name)
        .spawn();
    sender.wait_for("sent", CHILD_TIMEOUT);
    sender.kill();
    for (flavor, options) in channel_options() {
        let (raw, how) = Channel::<u64>::open_or_create(
            builder(&format!("{name}-raw-{flavor}")).unlink_on_drop(true),
            options,
        )
        .unwrap();
        assert_eq!(how, Disposition::Resumed, "raw {flavor}");
        let mut rx = raw.receiver().unwrap();
        let (text, how) = Channel::<String, Postcard>::open_or_create(
            builder(&format!("{name}-text-{flavor}")).unlink_on_drop(true),
            options,
        )
        .unwrap();
        assert_eq!(how, Disposition::Resumed, "postcard {flavor}");
        let mut text_rx = text.receiver().unwrap();
        for i in 0..20u64 {
            assert_eq!(rx.try_recv().unwrap(), i, "raw {flavor}");
            assert_eq!(
                text_rx.try_recv().unwrap(),
                i.to_string(),
                "postcard {flavor}"
            );
        }
    }
}

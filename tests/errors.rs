//! Errors name what failed (issue 14, item 7): every named object's open and create
//! errors name its segment, type mismatches name both types, connect and listen
//! errors name the URL, and connecting RPC to a name that holds something else says
//! what it holds.

mod support;

use shmlink::channel::Channel;
use shmlink::lock::{BakeryLock, BakeryMutex, Semaphore, SeqLock};
use shmlink::region::HeapRegion;
use shmlink::ring::{Duplex, FrameRing, Mpmc, Spsc};
use shmlink::rpc::{Client, ClientOptions};
use shmlink::segment::{OpenError, ShmRegion};
use shmlink::sync::WaitMode;
use shmlink::transport::{self, TransportOptions};
use support::{builder, unique_name};

/// Asserts that `shown` (an error's `Display`) names `name`, and says `what`.
#[track_caller]
fn says(shown: String, name: &str, what: &str) {
    assert!(
        shown.contains(&format!("`{name}`")) || shown.contains(name),
        "does not name {name}: {shown}"
    );
    assert!(shown.contains(what), "does not say {what:?}: {shown}");
}

#[test]
#[cfg_attr(miri, ignore = "named segments")]
fn opening_a_missing_object_names_it_whatever_its_kind() {
    let n = unique_name("errors-missing");
    let missing = "no such segment";
    says(
        Spsc::<u64, ShmRegion<_>>::open(builder(&n))
            .unwrap_err()
            .to_string(),
        &n,
        missing,
    );
    says(
        Mpmc::<u64, ShmRegion<_>>::open(builder(&n))
            .unwrap_err()
            .to_string(),
        &n,
        missing,
    );
    says(
        FrameRing::<ShmRegion<_>>::open(builder(&n))
            .unwrap_err()
            .to_string(),
        &n,
        missing,
    );
    says(
        Duplex::<ShmRegion<_>>::open(builder(&n))
            .unwrap_err()
            .to_string(),
        &n,
        missing,
    );
    says(
        Channel::<u64>::open(builder(&n)).unwrap_err().to_string(),
        &n,
        missing,
    );
    says(
        Semaphore::open(builder(&n)).unwrap_err().to_string(),
        &n,
        missing,
    );
    says(
        BakeryLock::open(builder(&n)).unwrap_err().to_string(),
        &n,
        missing,
    );
    says(
        BakeryMutex::<u64, _>::open(builder(&n))
            .unwrap_err()
            .to_string(),
        &n,
        missing,
    );
    says(
        SeqLock::<u64, _>::open(builder(&n))
            .unwrap_err()
            .to_string(),
        &n,
        missing,
    );
}

#[test]
#[cfg_attr(miri, ignore = "named segments")]
fn a_name_holding_another_kind_or_type_is_named_with_what_it_holds() {
    let n = unique_name("errors-kind");
    let _sem = Semaphore::create(builder(&n).unlink_on_drop(true), 1, 1).unwrap();
    let err = Spsc::<u64, ShmRegion<_>>::open(builder(&n)).unwrap_err();
    assert!(matches!(
        err.open_error(),
        Some(OpenError::WrongKind { .. })
    ));
    says(err.to_string(), &n, "holds a semaphore object");
    // Creating it again: the name is taken.
    says(
        Semaphore::create(builder(&n), 1, 1)
            .unwrap_err()
            .to_string(),
        &n,
        "already exists",
    );
    // A ring of u64 opened as one of u32: both type names.
    let r = unique_name("errors-type");
    let _ring =
        Spsc::<u64, _>::create(builder(&r).unlink_on_drop(true), 8, WaitMode::Spin).unwrap();
    let shown = Spsc::<u32, ShmRegion<_>>::open(builder(&r))
        .unwrap_err()
        .to_string();
    says(shown.clone(), &r, "holds `u64`");
    assert!(shown.contains("expected `u32`"), "{shown}");
    // The same through a channel over that ring.
    let shown = SeqLock::<u32, _>::open(builder(&r))
        .unwrap_err()
        .to_string();
    says(shown, &r, "holds a spsc object");
    // Heap objects have no name, and their errors say what was wrong.
    let heap = Spsc::<u64, HeapRegion<_>>::new(3, WaitMode::Spin).unwrap_err();
    assert!(heap.to_string().contains("capacity 3"), "{heap}");
}

#[test]
#[cfg_attr(miri, ignore = "sockets and segments")]
fn connect_and_listen_errors_name_the_url() {
    let opts = TransportOptions::default();
    let tcp = "tcp://127.0.0.1:1";
    says(
        transport::connect(tcp, &opts).unwrap_err().to_string(),
        tcp,
        "nothing listens there",
    );
    let shm = format!("shm://{}", unique_name("errors-nobody"));
    says(
        Client::connect(&shm, 7, &ClientOptions::default())
            .unwrap_err()
            .to_string(),
        &shm,
        "nothing listens there",
    );
    // A listener's address taken twice.
    let first = transport::listen("tcp://127.0.0.1:0", &opts).unwrap();
    let url = first.url();
    says(
        transport::listen(&url, &opts).unwrap_err().to_string(),
        &url,
        "in use",
    );
    // RPC to a name that holds a ring: says so.
    let n = unique_name("errors-ring");
    let _ring =
        Spsc::<u64, _>::create(builder(&n).unlink_on_drop(true), 8, WaitMode::Spin).unwrap();
    says(
        Client::connect(&format!("shm://{n}"), 7, &ClientOptions::default())
            .unwrap_err()
            .to_string(),
        &n,
        "not a listener",
    );
}

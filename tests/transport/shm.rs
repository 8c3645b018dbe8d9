//! Shared memory only: a SIGKILLed listener is `NoListener` and its name is taken over;
//! no `NAME.*` connection segment outlives connection set-up or a client killed before
//! it was accepted; a client's connection segment without memory behind it is refused
//! at accept.

use std::os::unix::process::ExitStatusExt;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use shmlink::transport::{self, AcceptError, ConnectError, ListenError};

use crate::cross_process::spawn_hanging_client;
use crate::support::{Scenario, arg, report, unique_name};
use crate::{
    CHILD_TIMEOUT, Kind, LONG, after, connect_pair, echo, good_hello, listen, opts, round_trip,
    segment_exists, segments_named,
};

/// Child: listens on `url`, reports `ready`, waits to be killed.
pub(crate) fn shm_listen_then_hang() {
    let listener = transport::listen(&arg("url"), &opts()).expect("listen");
    report("ready");
    thread::sleep(Duration::from_secs(120));
    drop(listener);
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn shm_killed_listener_is_no_listener_and_taken_over() {
    let name = unique_name("stale-listener");
    let url = format!("shm://{name}");
    let mut child = Scenario::new("shm_listen_then_hang")
        .arg("url", &url)
        .spawn();
    child.wait_for("ready", CHILD_TIMEOUT);
    // While it lives, the name is taken.
    assert_eq!(
        transport::listen(&url, &opts()).unwrap_err(),
        ListenError::InUse { url: url.clone() }
    );
    let status = child.kill();
    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
    assert!(segment_exists(&name), "the queue is left behind");
    assert_eq!(
        transport::connect(&url, &opts()).unwrap_err(),
        ConnectError::NoListener { url: url.clone() },
        "connect to a killed listener"
    );
    let listener = transport::listen(&url, &opts()).expect("take over the stale name");
    assert_eq!(listener.url(), url);
    let (server, client) = connect_pair(&listener, &opts());
    let echoer = echo(server);
    let (mut tx, mut rx) = client.split();
    round_trip(&mut tx, &mut rx, &mut Vec::new(), 5, 500);
    drop((tx, rx));
    assert_eq!(echoer.join().unwrap(), Ok(1));
    drop(listener);
    assert!(!segment_exists(&name), "listener dropped");
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn shm_no_connection_segment_outlives_set_up() {
    let opts = opts();
    let listener = listen(Kind::Shm, &opts);
    let name = listener.url().trim_start_matches("shm://").to_owned();
    let prefix = format!("{name}.");
    assert!(segment_exists(&name), "the accept queue");
    let (server, client) = connect_pair(&listener, &opts);
    assert_eq!(
        segments_named(&prefix),
        Vec::<String>::new(),
        "after set-up"
    );
    let (server2, client2) = connect_pair(&listener, &opts);
    assert_eq!(
        segments_named(&prefix),
        Vec::<String>::new(),
        "after a second one"
    );
    // The connections work without their names.
    for (s, c) in [(server, client), (server2, client2)] {
        let echoer = echo(s);
        let (mut tx, mut rx) = c.split();
        round_trip(&mut tx, &mut rx, &mut Vec::new(), 8, 8000);
        drop((tx, rx));
        assert_eq!(echoer.join().unwrap(), Ok(1));
    }
    drop(listener);
    assert!(
        !segment_exists(&name),
        "the accept queue is gone with its listener"
    );
    assert_eq!(segments_named(&prefix), Vec::<String>::new(), "all gone");
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn shm_client_killed_before_accept_leaves_nothing() {
    let opts = opts();
    let listener = listen(Kind::Shm, &opts);
    let url = listener.url();
    let name = url.trim_start_matches("shm://").to_owned();
    let prefix = format!("{name}.");
    let mut client = spawn_hanging_client(&listener, 0);
    client.wait_for("connecting", CHILD_TIMEOUT);
    // Wait until the child's connection segment exists (it then waits for an accept
    // that does not come), then kill it.
    let began = Instant::now();
    while !shmlink::segment::list().unwrap().iter().any(|i| {
        i.name.as_str().starts_with(&prefix) && i.status == shmlink::segment::Status::Alive
    }) {
        assert!(
            began.elapsed() < LONG,
            "the child never created its connection"
        );
        thread::sleep(Duration::from_millis(5));
    }
    client.kill();
    // The dead client's request is skipped: no connection comes out of it.
    match listener.accept(after(Duration::from_millis(500))) {
        Err(AcceptError::Timeout) => {}
        other => panic!("accept of a killed client: {other:?}"),
    }
    // Whatever it left is gone once the listener is bound again (if the accept above
    // did not already remove it).
    drop(listener);
    let listener = transport::listen(&url, &opts).expect("listen again");
    assert_eq!(segments_named(&prefix), Vec::<String>::new());
    // And the listener serves.
    let (server, client) = connect_pair(&listener, &opts);
    let echoer = echo(server);
    let (mut tx, mut rx) = client.split();
    round_trip(&mut tx, &mut rx, &mut Vec::new(), 4, 44);
    drop((tx, rx));
    assert_eq!(echoer.join().unwrap(), Ok(1));
}

// ---- issue 11, defect 9: the accept side validates a client's connection segment ----

/// A client's connection segment whose memory was handed back (holes punched into a
/// real one, so its header and rings still look right) is refused at accept with a
/// typed error, before the server claims its end or touches a ring, and the listener
/// keeps serving. The client is played by hand, as the `transport::shm` module docs
/// describe it: a `Duplex` named `NAME.PID.SEQ`, end A claimed, the hello written,
/// the id `PID << 32 | SEQ` pushed into the accept queue.
#[test]
#[cfg_attr(miri, ignore = "opens sockets")]
fn shm_accept_refuses_a_sparse_connection_segment() {
    use nix::fcntl::{FallocateFlags, fallocate};
    use shmlink::ring::{BuildError, Duplex, End, Mpmc, MpmcHeader};
    use shmlink::segment::{OpenError, Segment, SegmentName, ShmRegion};
    use shmlink::sync::WaitMode;
    use std::sync::Arc;

    let opts = opts();
    let listener = listen(Kind::Shm, &opts);
    let name = listener.url().trim_start_matches("shm://").to_owned();
    let seq: u32 = 0xffff_fff0; // far from the ids this process's real clients use
    let pid = std::process::id();
    let conn = format!("{name}.{pid}.{seq}");
    let link = Duplex::create(
        Segment::builder(&conn).unlink_on_drop(true),
        1 << 20,
        64 * 1024,
        WaitMode::Blocking,
    )
    .unwrap();
    let (mut tx, _rx) = link.end(End::A).unwrap();
    tx.try_send(&good_hello(opts.max_frame as u32)).unwrap();
    // Give the last 256 KiB back: the size and the header stay, the memory goes.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(SegmentName::new(&conn).unwrap().path())
        .unwrap();
    let len = file.metadata().unwrap().len();
    let hole = 256 * 1024;
    fallocate(
        &file,
        FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
        (len - hole) as i64,
        hole as i64,
    )
    .unwrap();
    // Push the id as a client would (the queue's fingerprint read from its header).
    let fp = shmlink::segment::inspect(&name)
        .unwrap()
        .header
        .unwrap()
        .fingerprint;
    let queue_region = ShmRegion::<MpmcHeader>::open(
        Segment::builder(&name)
            .kind(shmlink::segment::Kind::MpmcRing)
            .fingerprint(fp),
    )
    .unwrap();
    let queue = Mpmc::<u64, _>::from_region(Arc::new(queue_region)).unwrap();
    let id = (u64::from(pid) << 32) | u64::from(seq);
    queue.producer().unwrap().push(id).unwrap();

    let began = Instant::now();
    match listener.accept(after(Duration::from_secs(5))) {
        Err(AcceptError::Shm(BuildError::Open {
            error: OpenError::NotBacked { len: l, allocated },
            ..
        })) => {
            assert_eq!(l, len);
            assert!(allocated < len, "{allocated} of {len}");
        }
        Err(e) => panic!("refused for another reason: {e:?}"),
        Ok(c) => panic!("a sparse connection segment was accepted: {c:?}"),
    }
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
    drop((tx, link, queue));
    // The listener still serves real clients.
    let (server, client) = connect_pair(&listener, &opts);
    let echoer = echo(server);
    let (mut tx, mut rx) = client.split();
    round_trip(&mut tx, &mut rx, &mut Vec::new(), 3, 300);
    drop((tx, rx));
    assert_eq!(echoer.join().unwrap(), Ok(1));
}

//! Addresses: listening twice is `InUse`, connecting to nothing is `NoListener`, bad
//! URLs are `BadAddress`, accept and connect time out.

use std::time::Duration;

use shmlink::transport::{
    self, AcceptError, ConnectError, ListenError, TransportOptions, TransportRecvError,
};

use crate::support::unique_name;
use crate::{Kind, after, connect_pair, echo, listen, opts, round_trip, soon};

conformance!(
    listen_twice_is_in_use,
    connect_to_nothing_is_no_listener,
    accept_and_connect_time_out,
);

fn listen_twice_is_in_use(kind: Kind) {
    let opts = opts();
    let first = listen(kind, &opts);
    let url = first.url();
    assert_eq!(
        transport::listen(&url, &opts).unwrap_err(),
        ListenError::InUse { url: url.clone() },
        "{url}"
    );
    // The first listener is unharmed.
    let (server, client) = connect_pair(&first, &opts);
    let echoer = echo(server);
    let (mut tx, mut rx) = client.split();
    round_trip(&mut tx, &mut rx, &mut Vec::new(), 1, 10);
    drop((tx, rx));
    assert_eq!(echoer.join().unwrap(), Ok(1));
    if kind != Kind::Tcp {
        // The name is ours: free again once the listener is gone. (Not for TCP: the
        // ephemeral port may be reused by anyone meanwhile.)
        drop(first);
        let again = transport::listen(&url, &opts).expect("listen again after drop");
        assert_eq!(again.url(), url);
    }
}

fn connect_to_nothing_is_no_listener(kind: Kind) {
    let opts = TransportOptions {
        connect_timeout: Duration::from_secs(5),
        ..opts()
    };
    if kind != Kind::Tcp {
        // A name nobody ever listened on.
        let url = kind.listen_url();
        assert_eq!(
            transport::connect(&url, &opts).unwrap_err(),
            ConnectError::NoListener { url: url.clone() },
            "{url}"
        );
    }
    // An address whose listener is gone.
    let listener = listen(kind, &opts);
    let url = listener.url();
    drop(listener);
    assert_eq!(
        transport::connect(&url, &opts).unwrap_err(),
        ConnectError::NoListener { url: url.clone() },
        "{url} after its listener was dropped"
    );
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn bad_urls_are_bad_address() {
    let long = format!("shm://{}", "x".repeat(161));
    let bad = [
        "",
        "http://example.com",
        "shm://",
        "shm://bad/name",
        "shm://.hidden",
        "shm://spa ce",
        long.as_str(),
        "unix://",
        "unix://relative/path",
        "unix:///",
        "tcp://nohost",
        "tcp://127.0.0.1:99999",
        "tcp://:80",
        "tcp://127.0.0.1:",
        "tcp://127.0.0.1:80/path",
        "SHM://upper",
    ];
    let opts = opts();
    for url in bad {
        match transport::listen(url, &opts) {
            Err(ListenError::BadAddress(e)) => assert_eq!(e.url, url),
            other => panic!("listen {url:?}: {other:?}"),
        }
        match transport::connect(url, &opts) {
            Err(ConnectError::BadAddress(e)) => assert_eq!(e.url, url),
            other => panic!("connect {url:?}: {other:?}"),
        }
    }
    // The longest valid shm name is accepted.
    let name = unique_name("max");
    let url = format!("shm://{name}{}", "x".repeat(160 - name.len()));
    let listener = transport::listen(&url, &opts).expect("160-byte shm name");
    assert_eq!(listener.url(), url);
}

fn accept_and_connect_time_out(kind: Kind) {
    let opts = opts();
    let listener = listen(kind, &opts);
    assert_eq!(
        listener
            .accept(after(Duration::from_millis(50)))
            .unwrap_err(),
        AcceptError::Timeout,
        "{kind:?}: no client"
    );
    // A client whose server never accepts gives up at its connect timeout.
    let impatient = TransportOptions {
        connect_timeout: Duration::from_millis(300),
        ..opts.clone()
    };
    assert_eq!(
        transport::connect(&listener.url(), &impatient).unwrap_err(),
        ConnectError::Timeout {
            url: listener.url()
        },
        "{kind:?}: nobody accepts"
    );
    // The listener survives the client that gave up: accept either skips it or hands
    // out a connection that is already disconnected; a real client then works.
    if let Ok(conn) = listener.accept(after(Duration::from_millis(200))) {
        let (_tx, mut rx) = conn.split();
        assert_eq!(
            rx.recv(&mut Vec::new(), soon()),
            Err(TransportRecvError::Disconnected),
            "{kind:?}: connection of the client that gave up"
        );
    }
    let (server, client) = connect_pair(&listener, &opts);
    let echoer = echo(server);
    let (mut tx, mut rx) = client.split();
    round_trip(&mut tx, &mut rx, &mut Vec::new(), 3, 33);
    drop((tx, rx));
    assert_eq!(echoer.join().unwrap(), Ok(1));
}

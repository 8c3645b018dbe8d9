//! Connection set-up: a client of another service (or another version of this one) is
//! refused with `ConnectError::WrongService`, and a socket client that never sends its
//! hello does not hold up the next one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shmlink::rpc::{ConnectError, Server};
use shmlink::transport;

use crate::support::kv::{KvClient, KvError, KvServer, State, Svc};
use crate::{Fixture, Mode, Tr, copts, listen_url, topts};

conformance!(wrong_service_is_refused);

/// Another service, for `WrongService`.
#[allow(dead_code)]
mod other {
    use super::KvError;
    shmlink::service! {
        pub trait Other {
            client OtherClient;
            server OtherServer;
            error KvError;
            fn ping(n: u32) -> u32;
        }
    }
}

/// The same service name with other method types: another version.
#[allow(dead_code)]
mod v2 {
    use super::KvError;
    shmlink::service! {
        pub trait Kv {
            client KvClient;
            server KvServer;
            error KvError;
            fn add(args: (i32, i32)) -> i32;
        }
    }
}

fn wrong_service_is_refused(tr: Tr, mode: Mode) {
    let fix = Fixture::new(tr, mode);
    let case = fix.label();
    assert_ne!(other::OtherClient::SERVICE_ID, KvClient::SERVICE_ID);
    assert_ne!(
        v2::KvClient::SERVICE_ID,
        KvClient::SERVICE_ID,
        "another version of the service has another id"
    );
    let err = other::OtherClient::from_connection(fix.connection(), &copts()).unwrap_err();
    assert_eq!(
        err,
        ConnectError::WrongService {
            url: String::new(), // a connection made by hand
            ours: other::OtherClient::SERVICE_ID,
            theirs: KvClient::SERVICE_ID
        },
        "{case}"
    );
    let err = v2::KvClient::from_connection(fix.connection(), &copts()).unwrap_err();
    assert_eq!(
        err,
        ConnectError::WrongService {
            url: String::new(), // a connection made by hand
            ours: v2::KvClient::SERVICE_ID,
            theirs: KvClient::SERVICE_ID
        },
        "{case}"
    );
    if let Some(url) = &fix.url {
        let err = other::OtherClient::connect_with(url, &copts()).unwrap_err();
        assert!(
            matches!(err, ConnectError::WrongService { .. }),
            "{case}: {err:?}"
        );
    }
    // The server is unharmed, and counted only the accepted connection.
    let c = fix.client();
    assert_eq!(c.add((1, 1)).wait(), Ok(2), "{case}");
    assert_eq!(fix.stats().connections, 1, "{case}");
}

/// A socket client that connects and never sends its hello does not hold up the next
/// client: the server reads each hello on the client's own thread. (The silent
/// client's hello would time out after 10 s; the good client is served long before.)
#[test]
#[cfg_attr(miri, ignore = "opens sockets")]
fn silent_socket_client_does_not_hold_up_others() {
    for tr in [Tr::Unix, Tr::Tcp] {
        let state = Arc::new(State::default());
        let server = Server::new(KvServer(Svc(state)))
            .options(transport::TransportOptions {
                handshake_timeout: Duration::from_secs(10),
                ..topts()
            })
            .serve(&listen_url(tr))
            .expect("serve");
        let url = server.url().expect("url").to_owned();
        let _silent: Box<dyn std::any::Any> = match url.strip_prefix("unix://") {
            Some(path) => Box::new(std::os::unix::net::UnixStream::connect(path).expect("raw")),
            None => Box::new(
                std::net::TcpStream::connect(url.strip_prefix("tcp://").expect("tcp"))
                    .expect("raw"),
            ),
        };
        std::thread::sleep(Duration::from_millis(50)); // let the server accept it first
        let t0 = Instant::now();
        let client = KvClient::connect_with(&url, &copts()).expect("connect");
        assert_eq!(client.add((1, 2)).wait(), Ok(3), "{tr:?}");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{tr:?}: the good client waited {:?} behind a silent one",
            t0.elapsed()
        );
        drop(client);
        server.shutdown(Duration::from_secs(1));
    }
}

/// A fresh URL that nothing listens at yet, on any socket or shm transport (a TCP
/// port outside the ephemeral range, so that the client's own connection attempts
/// cannot take it as their source port).
fn future_url(tr: Tr) -> String {
    match tr {
        Tr::Tcp => {
            let port = shmlink::transport::unused_tcp_port(std::net::Ipv4Addr::LOCALHOST.into())
                .expect("a free port");
            format!("tcp://127.0.0.1:{port}")
        }
        tr => listen_url(tr),
    }
}

/// `connect_timeout` waits for a server that starts after the client, and finds the
/// next one after a restart; a server built with `stop_after_last_client` stops once
/// its client leaves, and `wait` returns.
#[test]
#[cfg_attr(miri, ignore = "opens sockets")]
fn a_client_waits_for_its_server_and_a_one_client_server_stops_with_it() {
    for tr in [Tr::Shm, Tr::Unix, Tr::Tcp] {
        let url = future_url(tr);
        let start_later = |url: String| {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                Server::new(KvServer(Svc(Arc::new(State::default()))))
                    .stop_after_last_client(true)
                    .serve(&url)
                    .expect("serve")
            })
        };
        // Nothing listens yet: a plain connect fails at once, one that waits does not.
        assert!(KvClient::connect(&url).is_err(), "{tr:?}");
        let server = start_later(url.clone());
        let client = KvClient::connect_timeout(&url, Duration::from_secs(10)).expect("connect");
        assert_eq!(client.add((2, 3)).wait(), Ok(5), "{tr:?}");
        let server = server.join().expect("server thread");
        drop(client);
        let stats = server.wait();
        assert_eq!(stats.connections, 1, "{tr:?}");

        // A restart: the next server comes up after the client started waiting.
        let server = start_later(url.clone());
        let client = KvClient::connect_timeout(&url, Duration::from_secs(10)).expect("reconnect");
        assert_eq!(client.add((4, 5)).wait(), Ok(9), "{tr:?}");
        drop(client);
        server.join().expect("server thread").wait();

        // And nobody, ever: a typed timeout, not a hang.
        let t0 = Instant::now();
        let err = KvClient::connect_timeout(&url, Duration::from_millis(50)).unwrap_err();
        assert_eq!(err, ConnectError::Timeout { url: url.clone() }, "{tr:?}");
        assert!(err.to_string().contains(&url), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(5), "{tr:?}");
    }
}

/// With `reconnect`, a client outlives its server: a call in flight when the server
/// stops fails with a typed error, and once a server listens at the URL again the
/// next calls go to it, on the same client (and its clones).
#[test]
#[cfg_attr(miri, ignore = "opens sockets")]
fn a_reconnecting_client_outlives_a_server_restart() {
    use crate::support::kv::Slow;
    use shmlink::rpc::{ClientOptions, RpcError};
    for tr in [Tr::Shm, Tr::Unix, Tr::Tcp] {
        let url = future_url(tr);
        let serve = |url: &str| {
            Server::new(KvServer(Svc(Arc::new(State::default()))))
                .serve(url)
                .expect("serve")
        };
        let first = serve(&url);
        let opts = ClientOptions {
            reconnect: true,
            ..copts()
        };
        let client = KvClient::connect_with(&url, &opts).expect("connect");
        let clone = client.clone();
        assert_eq!(client.add((1, 1)).wait(), Ok(2), "{tr:?}");
        let in_flight = client.slow(Slow {
            tag: 1,
            ms: 10_000,
            gated: false,
        });
        std::thread::sleep(Duration::from_millis(50));
        first.shutdown(Duration::ZERO);
        let failed = in_flight.wait();
        assert!(
            matches!(
                failed,
                Err(RpcError::ServerGone | RpcError::Unavailable | RpcError::Transport(_))
            ),
            "{tr:?}: {failed:?}"
        );
        // Away: calls fail at once, typed.
        let away = client.add((2, 2)).wait();
        assert!(away.is_err(), "{tr:?}: {away:?}");

        let _second = serve(&url);
        let deadline = Instant::now() + Duration::from_secs(10);
        let answer = loop {
            match clone.add((3, 4)).wait() {
                Ok(v) => break v,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("{tr:?}: no reconnection: {e:?}"),
            }
        };
        assert_eq!(answer, 7, "{tr:?}");
        assert_eq!(
            client.add((5, 5)).wait(),
            Ok(10),
            "{tr:?}: the other clone too"
        );
    }
}

/// A shared-memory name that holds a ring, not a listener: the error says so and
/// names both, at once (a client waiting for a server does not wait on it).
#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn connecting_to_a_name_that_holds_a_ring_says_so() {
    use shmlink::ring::Spsc;
    use shmlink::segment::Segment;
    use shmlink::sync::WaitMode;
    let name = crate::support::unique_name("not-a-listener");
    let _ring = Spsc::<u64, _>::create(
        Segment::builder(&name).unlink_on_drop(true),
        8,
        WaitMode::Spin,
    )
    .expect("ring");
    let url = format!("shm://{name}");
    let want = ConnectError::Transport(transport::ConnectError::NotAListener {
        name: name.clone(),
        found: "spsc".to_owned(),
    });
    let err = KvClient::connect(&url).unwrap_err();
    assert_eq!(err, want);
    let text = err.to_string();
    assert!(text.contains(&name) && text.contains("spsc"), "{text}");
    let t0 = Instant::now();
    assert_eq!(
        KvClient::connect_timeout(&url, Duration::from_secs(10)).unwrap_err(),
        want
    );
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "no waiting on a ring"
    );
}

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
            ours: other::OtherClient::SERVICE_ID,
            theirs: KvClient::SERVICE_ID
        },
        "{case}"
    );
    let err = v2::KvClient::from_connection(fix.connection(), &copts()).unwrap_err();
    assert_eq!(
        err,
        ConnectError::WrongService {
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

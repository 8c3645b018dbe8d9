//! Detached streams (`Sink::detach`, `StreamSender`): a handler returns at once and
//! the stream goes on, fed from other calls; a cancel or a client that leaves closes
//! the sender, and dropping the sender ends the stream. (A shutdown too.)

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shmlink::rpc::{
    Context, STREAM_WINDOW, Server, ServerHandle, Sink, StreamSender, TryStreamError,
};
use shmlink::transport;

use crate::support::kv::WAIT;
use crate::{Mode, Tr, copts, listen_url, topts};

shmlink::service! {
    /// Subscribers and a publisher.
    pub trait Feed {
        client FeedClient;
        server FeedServer;
        error String;
        /// A stream of what `publish` sends, until `end_all`.
        stream fn subscribe(unit: ()) -> u64;
        /// Sends `n` to every open subscriber; how many took it.
        fn publish(n: u64) -> u32;
        /// Subscribers whose sender is not closed.
        fn open(unit: ()) -> u32;
        /// Ends every subscriber's stream.
        fn end_all(unit: ()) -> ();
    }
}

#[derive(Default)]
struct Hub(Mutex<Vec<StreamSender<u64>>>);

impl Feed for Arc<Hub> {
    fn subscribe(&self, _: &Context, (): (), sink: &mut Sink<'_, u64>) -> Result<(), String> {
        self.0.lock().unwrap().push(sink.detach());
        Ok(())
    }
    fn publish(&self, _: &Context, n: u64) -> Result<u32, String> {
        let subs = self.0.lock().unwrap();
        let mut took = 0;
        for s in subs.iter() {
            match s.try_send(&n) {
                Ok(()) => took += 1,
                Err(TryStreamError::Full | TryStreamError::Closed(_)) => {}
            }
        }
        Ok(took)
    }
    fn open(&self, _: &Context, (): ()) -> Result<u32, String> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| !s.is_closed())
            .count() as u32)
    }
    fn end_all(&self, _: &Context, (): ()) -> Result<(), String> {
        self.0.lock().unwrap().clear();
        Ok(())
    }
}

/// A server of a [`Hub`] on one transport, in one mode.
struct Fx {
    hub: Arc<Hub>,
    server: Option<ServerHandle>,
    url: Option<String>,
}

impl Fx {
    fn new(tr: Tr, mode: Mode) -> Fx {
        let hub = Arc::new(Hub::default());
        let server = Server::new(FeedServer(hub.clone()))
            .workers(mode.workers())
            .options(topts());
        let server = match tr {
            Tr::Pair => server.start_detached(),
            _ => server.serve(&listen_url(tr)).expect("serve"),
        };
        let url = server.url().map(str::to_owned);
        Fx {
            hub,
            server: Some(server),
            url,
        }
    }

    fn client(&self) -> FeedClient {
        match &self.url {
            Some(url) => FeedClient::connect_with(url, &copts()).expect("connect"),
            None => {
                let (mine, theirs) = transport::pair(&topts()).expect("pair");
                self.server
                    .as_ref()
                    .expect("running")
                    .serve_connection(theirs);
                FeedClient::from_connection(mine, &copts()).expect("hello")
            }
        }
    }
}

/// Calls `open` until it answers `want` (at most [`WAIT`]).
fn wait_open(c: &FeedClient, want: u32, case: &str) {
    let end = Instant::now() + WAIT;
    loop {
        let n = c.open(()).wait().expect("open");
        if n == want {
            return;
        }
        assert!(
            Instant::now() < end,
            "{case}: {n} open subscribers, not {want}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

conformance!(
    detached_stream_carries_items_sent_after_the_handler_returned,
    a_cancel_or_a_shutdown_closes_the_detached_sender,
);

fn detached_stream_carries_items_sent_after_the_handler_returned(tr: Tr, mode: Mode) {
    let case = format!("{tr:?}/{mode:?}");
    let fx = Fx::new(tr, mode);
    let (sub, publisher) = (fx.client(), fx.client());
    let mut items = sub.subscribe(());
    wait_open(&publisher, 1, &case);
    // Nobody reads: with a pool, the sender takes what the client's credits allow and
    // then reports `Full` (inline, the transport paces the stream instead: small items
    // all fit).
    let mut took = 0u64;
    for i in 0..100 {
        took += u64::from(publisher.publish(i).wait().expect("publish"));
    }
    let want = if mode == Mode::Pool {
        STREAM_WINDOW
    } else {
        100
    };
    assert_eq!(took, want, "{case}: items taken while the client read none");
    for i in 0..took {
        assert_eq!(items.next(), Some(Ok(i)), "{case}");
    }
    // Read as they come: every item published (again while `Full`) arrives, in order.
    let reader = std::thread::spawn(move || {
        let got: Vec<u64> = items.by_ref().take(200).map(Result::unwrap).collect();
        (got, items)
    });
    for i in 1000..1200 {
        let end = Instant::now() + WAIT;
        while publisher.publish(i).wait().expect("publish") == 0 {
            assert!(Instant::now() < end, "{case}: item {i} never taken");
            std::thread::yield_now();
        }
    }
    let (got, mut items) = reader.join().unwrap();
    assert_eq!(got, (1000..1200).collect::<Vec<_>>(), "{case}");
    publisher.end_all(()).wait().expect("end_all");
    assert_eq!(
        items.next(),
        None,
        "{case}: dropping the sender ends the stream"
    );
}

fn a_cancel_or_a_shutdown_closes_the_detached_sender(tr: Tr, mode: Mode) {
    let case = format!("{tr:?}/{mode:?}");
    let mut fx = Fx::new(tr, mode);
    let (sub, publisher) = (fx.client(), fx.client());
    // Cancelled: the client drops the stream.
    let items = sub.subscribe(());
    wait_open(&publisher, 1, &case);
    drop(items);
    wait_open(&publisher, 0, &case);
    assert_eq!(publisher.publish(7).wait().expect("publish"), 0, "{case}");
    // The server shuts down with a stream open: its sender closes.
    publisher.end_all(()).wait().expect("end_all");
    let _open = sub.subscribe(());
    wait_open(&publisher, 1, &case);
    fx.server.take().expect("running").shutdown(Duration::ZERO);
    let senders = fx.hub.0.lock().unwrap();
    assert_eq!(senders.len(), 1, "{case}");
    assert!(senders[0].is_closed(), "{case}: open after the shutdown");
}

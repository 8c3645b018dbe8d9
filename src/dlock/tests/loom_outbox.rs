//! loom models of a lock node's outgoing queue (`shmlink::dlock::outbox`): threads
//! that deliver messages to the core push what it outputs and send it themselves,
//! one sender at a time. A message stranded in the queue (pushed while another thread
//! sent, and not seen by it before it stopped) shows up as a failed "queue empty"
//! assertion; a message sent twice, lost or out of its pusher's order, as a failed
//! log assertion.

use crate::dlock::outbox::{Flush, Outbox};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// What the peer received, batch by batch.
type Log = Arc<Mutex<Vec<(u8, u8)>>>;

fn send(log: &Log) -> impl FnMut(&(), Vec<(u8, u8)>) -> bool + '_ {
    move |(), batch| {
        log.lock().unwrap().extend(batch);
        true
    }
}

/// Checks that every pushed message arrived once, each pusher's in order.
fn check(log: &Log, pushers: u8, each: u8) {
    let log = log.lock().unwrap();
    assert_eq!(log.len(), usize::from(pushers * each), "{log:?}");
    for p in 0..pushers {
        let mine: Vec<u8> = log.iter().filter(|m| m.0 == p).map(|m| m.1).collect();
        assert_eq!(mine, (0..each).collect::<Vec<_>>(), "{log:?}");
    }
}

/// Two threads push two messages each, flushing after each push, on a connected
/// outbox: when both are done, nothing is left queued and the peer got every message
/// once, in each pusher's order. Catches a sender that gives up the role without
/// looking at the queue again under the lock (a message pushed meanwhile is
/// stranded), and one that takes the role while another holds it (order, duplicates).
#[test]
fn concurrent_pushers_strand_nothing_and_keep_order() {
    loom::model(|| {
        let out = Arc::new(Outbox::<(u8, u8), ()>::new(16));
        out.end_connect(Some(()));
        let log: Log = Arc::new(Mutex::new(Vec::new()));
        let pushers: Vec<_> = (0..2u8)
            .map(|p| {
                let (out, log) = (out.clone(), log.clone());
                thread::spawn(move || {
                    for i in 0..2u8 {
                        assert!(out.push((p, i)));
                        assert_eq!(out.flush(send(&log)), Flush::Done);
                    }
                })
            })
            .collect();
        for t in pushers {
            t.join().unwrap();
        }
        assert!(!out.is_pending(), "a message was stranded");
        check(&log, 2, 2);
    });
}

/// A pusher races the link's thread connecting: messages pushed before the connect
/// are sent by the first flush after it (the link's or the pusher's), none twice, and
/// a flush before the connect reports `NotConnected` instead of sending.
#[test]
fn a_connect_racing_a_pusher_loses_nothing_it_keeps() {
    loom::model(|| {
        let out = Arc::new(Outbox::<(u8, u8), ()>::new(16));
        let log: Log = Arc::new(Mutex::new(Vec::new()));
        assert!(out.push((0, 0)));
        let pusher = {
            let (out, log) = (out.clone(), log.clone());
            thread::spawn(move || {
                assert!(out.push((0, 1)));
                let _ = out.flush(send(&log));
            })
        };
        // The link's thread: connect if it should, then send what waits.
        if out.begin_connect() {
            assert_eq!(out.end_connect(Some(())), 0);
        }
        let _ = out.flush(send(&log));
        pusher.join().unwrap();
        // Whatever the interleaving, the connect happened (a message always waited
        // for it), and a last flush leaves nothing behind.
        assert_eq!(out.flush(send(&log)), Flush::Done);
        assert!(!out.is_pending(), "a message was stranded");
        check(&log, 1, 2);
    });
}

//! The `tracing` feature: events on the slow and rare paths (run with
//! `cargo test --features tracing --test tracing`; without the feature this binary
//! checks nothing and says so).

#![cfg(feature = "tracing")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shmlink::ring::Spsc;
use shmlink::segment::Disposition;
use shmlink::sync::WaitMode;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Records the message of every `shmlink` event.
#[derive(Clone, Default)]
struct Messages(Arc<Mutex<Vec<String>>>);

struct Message<'a>(&'a mut String);

impl Visit for Message<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            *self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Messages {
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        meta.target() == "shmlink"
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut text = String::new();
        event.record(&mut Message(&mut text));
        self.0.lock().unwrap().push(text);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn name(tag: &str) -> String {
    format!("trace-{tag}-{}", std::process::id())
}

/// A blocking wait that sleeps, the wake-up that ends it, and a stale ring replaced
/// (a resume needs a dead process: tests/restart.rs has those) are each reported;
/// a fast path (a push and pop that never wait) reports nothing.
#[test]
fn slow_paths_report_and_fast_paths_do_not() {
    let log = Messages::default();
    // Global: the waking push runs on another thread. (The only test of this binary
    // that uses the global subscriber.)
    tracing::subscriber::set_global_default(log.clone()).unwrap();
    {
        let ring = Spsc::<u64, _>::new(8, WaitMode::Blocking).unwrap();
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        for i in 0..100 {
            tx.push(i).unwrap();
            assert_eq!(rx.try_pop(), Ok(i));
        }
        assert!(
            log.0.lock().unwrap().is_empty(),
            "{:?}",
            log.0.lock().unwrap()
        );

        // A consumer that waits long enough to sleep, woken by a push.
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                tx.push(7).unwrap();
            });
            assert_eq!(rx.pop_timeout(Duration::from_secs(5)), Ok(7));
        });
    }
    let seen = log.0.lock().unwrap().clone();
    assert!(seen.iter().any(|m| m.contains("asleep")), "{seen:?}");
    assert!(seen.iter().any(|m| m.contains("wake")), "{seen:?}");

    // OnStale::Replace on a name that holds nothing stale: no event; the events of
    // resuming and replacing are covered where processes die (tests/restart.rs).
    let log = Messages::default();
    let n = name("create");
    tracing::subscriber::with_default(log.clone(), || {
        let (_ring, how) = Spsc::<u64, _>::open_or_create(
            shmlink::segment::Segment::builder(&n).unlink_on_drop(true),
            8,
            WaitMode::Blocking,
        )
        .unwrap();
        assert_eq!(how, Disposition::Created);
    });
    assert!(log.0.lock().unwrap().is_empty());
}

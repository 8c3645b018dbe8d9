//! loom models of the stop signal of a running RPC call (`shmlink::rpc::stop`): the
//! connection's reader raises cancel/abort flags and grants stream credits while the
//! handler waits for credit under the signal's lock. A wake-up lost between the
//! handler's check and its sleep shows up as a loom deadlock.
//!
//! Run with `RUSTFLAGS="--cfg shmlink_loom" cargo test --release --test loom_stop`.

use crate::rpc::stop::{Stop, StopSignal};
use loom::thread;

/// A handler out of credits waits; the reader cancels: the handler stops with
/// `Cancelled`, whichever runs first.
#[test]
fn cancel_wakes_a_handler_waiting_for_credit() {
    loom::model(|| {
        let s = StopSignal::new(0);
        let reader = {
            let s = s.clone();
            thread::spawn(move || s.cancel())
        };
        assert_eq!(s.take_credit(None), Err(Stop::Cancelled));
        reader.join().unwrap();
    });
}

/// Credits granted while the handler waits are taken; a later abort still stops it.
#[test]
fn credits_then_abort_reach_the_handler() {
    loom::model(|| {
        let s = StopSignal::new(0);
        let reader = {
            let s = s.clone();
            thread::spawn(move || {
                s.add_credits(1);
                s.abort();
            })
        };
        // The credit arrives before the abort, but the handler may look only after
        // both: either it sends one item and then stops, or it stops at once.
        match s.take_credit(None) {
            Ok(()) => assert_eq!(s.take_credit(None), Err(Stop::ShuttingDown)),
            Err(stop) => assert_eq!(stop, Stop::ShuttingDown),
        }
        reader.join().unwrap();
    });
}

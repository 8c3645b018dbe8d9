//! `Spsc::close` and `FrameRing::close`: a clean shutdown wakes every blocked call of
//! the process with `Closed` (the loom models in loom-tests/ring.rs check the
//! handshake; these check real threads in both wait modes).

use std::time::{Duration, Instant};

use shmlink::ring::{FrameRecvError, FrameRing, FrameSendError, PopError, PushError, Spsc};
use shmlink::sync::WaitMode;

#[test]
fn close_wakes_blocked_pops_and_pushes_in_other_threads() {
    for mode in [WaitMode::Blocking, WaitMode::Spin] {
        let ring = Spsc::<u64, _>::new(1, mode).unwrap();
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        let t0 = Instant::now();
        let popper = std::thread::spawn(move || (rx.pop(), rx));
        std::thread::sleep(Duration::from_millis(30));
        ring.close();
        let (got, mut rx) = popper.join().unwrap();
        assert_eq!(got, Err(PopError::Closed), "{mode:?}");
        assert!(t0.elapsed() < Duration::from_secs(5), "{mode:?}");
        assert!(ring.is_closed());
        // After: what can complete does; what would wait does not.
        tx.try_push(1).unwrap();
        assert_eq!(
            tx.push_timeout(2, Duration::from_secs(10)),
            Err(PushError::Closed(2))
        );
        assert_eq!(rx.try_pop(), Ok(1));
        assert_eq!(rx.try_pop(), Err(PopError::Closed));

        // A producer blocked on a full ring.
        let ring = Spsc::<u64, _>::new(1, mode).unwrap();
        let (mut tx, _rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        tx.try_push(1).unwrap();
        let pusher = std::thread::spawn(move || tx.push(2));
        std::thread::sleep(Duration::from_millis(30));
        ring.clone().close(); // through a clone: the same ring
        assert_eq!(
            pusher.join().unwrap(),
            Err(PushError::Closed(2)),
            "{mode:?}"
        );
    }
}

#[test]
fn close_wakes_a_blocked_frame_receive_and_send() {
    let ring = FrameRing::new(64, 32, WaitMode::Blocking).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    let receiver = std::thread::spawn(move || (rx.recv(&mut Vec::new()), rx));
    std::thread::sleep(Duration::from_millis(30));
    ring.close();
    let (got, _rx) = receiver.join().unwrap(); // kept: a gone consumer is another error
    assert_eq!(got, Err(FrameRecvError::Closed));
    while tx.try_send(&[7; 24]).is_ok() {}
    assert_eq!(tx.send(&[7; 24]), Err(FrameSendError::Closed));
}

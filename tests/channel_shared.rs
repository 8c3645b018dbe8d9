//! The crossbeam-shaped ends of an MPMC channel (`SharedSender`, `SharedReceiver`):
//! `Clone + Send + Sync`, `&self` operations, each message delivered once, more
//! threads than the channel has handle slots, disconnection once every clone is gone.

use std::collections::HashSet;
use std::time::Duration;

use shmlink::channel::{
    self, Channel, ChannelError, Flavor, Options, Postcard, RecvError, RecvTimeoutError, SendError,
    SendTimeoutError, SharedReceiver, SharedSender, TryRecvError, TrySendError,
};
use shmlink::segment::Segment;

fn shared<T: Clone + Send + Sync>() {}

#[test]
fn shared_ends_are_clone_send_and_sync() {
    shared::<SharedSender<u64>>();
    shared::<SharedReceiver<u64>>();
    shared::<SharedSender<String, Postcard>>();
    shared::<SharedReceiver<String, Postcard>>();
}

/// Four threads send through clones of one sender, three receive through clones of
/// one receiver, all by `&self`: every message arrives exactly once.
#[test]
#[cfg_attr(miri, ignore = "too slow under Miri")]
fn clones_in_many_threads_deliver_each_message_once() {
    const PER: u64 = 2_000;
    let (tx, rx) = channel::bounded_mpmc::<u64>(64).unwrap();
    let senders: Vec<_> = (0..4u64)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..PER {
                    tx.send(t * PER + i).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let receivers: Vec<_> = (0..3)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || rx.iter().collect::<Vec<u64>>())
        })
        .collect();
    let here: Vec<u64> = (&rx).into_iter().collect();
    for s in senders {
        s.join().unwrap();
    }
    let mut seen = HashSet::new();
    for got in receivers
        .into_iter()
        .map(|r| r.join().unwrap())
        .chain([here])
    {
        for v in got {
            assert!(seen.insert(v), "{v} delivered twice");
        }
    }
    assert_eq!(seen.len() as u64, 4 * PER, "every message delivered");
}

/// More sending threads (40) than the channel has handle slots (32, one taken by
/// the receiver): the ones that find every slot busy wait for a participant of their
/// own end to come back, and all messages arrive.
#[test]
#[cfg_attr(miri, ignore = "too slow under Miri")]
fn more_threads_than_handle_slots_take_turns() {
    let (tx, rx) = channel::bounded_mpmc::<u64>(4).unwrap();
    let senders: Vec<_> = (0..40u64)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    tx.send(t * 50 + i).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let mut got: Vec<u64> = rx.into_iter().collect();
    for s in senders {
        s.join().unwrap();
    }
    got.sort_unstable();
    assert_eq!(got, (0..2_000).collect::<Vec<_>>());
}

#[test]
#[cfg_attr(miri, ignore = "real-time deadlines")]
fn disconnection_timeouts_and_full() {
    let (tx, rx) = channel::bounded_mpmc::<u64>(2).unwrap();
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(2)),
        Err(RecvTimeoutError::Timeout)
    );
    tx.try_send(1).unwrap();
    tx.send(2).unwrap();
    assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
    assert_eq!(
        tx.send_timeout(3, Duration::from_millis(2)),
        Err(SendTimeoutError::Timeout(3))
    );
    let tx2 = tx.clone();
    drop(tx);
    assert_eq!(rx.recv(), Ok(1)); // one clone is still alive
    drop(tx2);
    assert_eq!(rx.recv(), Ok(2)); // drained first
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    // The other way round: sends fail once every receiver clone is gone.
    let (tx, rx) = channel::bounded_mpmc::<u64>(2).unwrap();
    drop(rx);
    assert_eq!(tx.send(5), Err(SendError::Disconnected(5)));
}

#[test]
#[cfg_attr(miri, ignore = "maps a named segment")]
fn spsc_channels_have_no_shared_ends_and_named_mpmc_ones_do() {
    let spsc = Channel::<u64>::new(Options::new()).unwrap();
    assert!(matches!(
        SharedSender::new(&spsc),
        Err(ChannelError::Unsupported(_))
    ));
    assert!(matches!(
        SharedReceiver::new(&spsc),
        Err(ChannelError::Unsupported(_))
    ));

    let name = format!("channel-shared-{}", std::process::id());
    let opts = Options::new()
        .capacity(16)
        .flavor(Flavor::Mpmc)
        .max_message(64);
    let ch =
        Channel::<String, Postcard>::create(Segment::builder(&name).unlink_on_drop(true), opts)
            .unwrap();
    let other = Channel::<String, Postcard>::open(Segment::builder(&name)).unwrap();
    let tx = SharedSender::new(&ch).unwrap();
    let rx = SharedReceiver::new(&other).unwrap();
    let t = {
        let tx = tx.clone();
        std::thread::spawn(move || tx.send_acked("acked".to_owned()))
    };
    assert_eq!(rx.recv().unwrap(), "acked");
    t.join().unwrap().unwrap();
    assert_eq!(tx.channel().flavor(), Flavor::Mpmc);
}

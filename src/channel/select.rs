//! Waiting on several receivers at once: [`select`].
//!
//! Polling first (a receiver is ready when a message waits or its senders are gone),
//! for [`SPIN_FOR`](crate::sync::SPIN_FOR), then a few yields. Then, if every receiver
//! is in blocking mode, the waiter announces itself on each receiver's data word
//! (the same sleepers count their senders check after each publication), fences,
//! re-checks, and sleeps on all the words at once with `futex_waitv`, so the first
//! publication on any of them wakes it. Receivers in spin mode are never notified, so
//! with any of those in the set the waiter keeps polling instead of sleeping.
//! Senders' liveness is checked every 10 ms, so a killed sender process makes its
//! receiver ready (disconnected) promptly.

use std::time::{Duration, Instant};

use super::{Codec, Receiver};
use crate::sync::WaitWord;
use crate::sync::atomic::{Ordering, fence};

/// A receiver that [`select`] can wait on. Implemented by [`Receiver`]; sealed.
pub trait Selectable: sealed::Sealed {
    /// Whether a message waits, every sender is gone (`thorough`: also checks that
    /// their processes live), or the channel was closed in this process.
    #[doc(hidden)]
    fn is_ready(&self, thorough: bool) -> bool;
    /// The futex word its senders notify, if they do (blocking mode).
    #[doc(hidden)]
    fn data_word(&self) -> Option<&WaitWord>;
}

mod sealed {
    pub trait Sealed {}
}

impl<T, C: Codec<T>> sealed::Sealed for Receiver<T, C> {}

impl<T, C: Codec<T>> Selectable for Receiver<T, C> {
    fn is_ready(&self, thorough: bool) -> bool {
        self.ring.ready(thorough)
    }

    fn data_word(&self) -> Option<&WaitWord> {
        self.ring.data_word()
    }
}

/// Why [`select`] returned no index.
///
/// # Examples
///
/// ```
/// use shmlink::channel::{self, SelectError};
/// use std::time::Duration;
///
/// let (_tx, rx) = channel::bounded::<u64>(4)?;
/// let err = channel::select(&[&rx], Some(Duration::from_millis(1)));
/// assert_eq!(err, Err(SelectError::Timeout));
/// assert_eq!(channel::select(&[], None), Err(SelectError::NoReceivers));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectError {
    /// No receiver became ready before the deadline.
    Timeout,
    /// The set was empty (or held more than 128 receivers).
    NoReceivers,
}

impl std::fmt::Display for SelectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Timeout => "no receiver became ready before the deadline",
            Self::NoReceivers => "select needs 1 to 128 receivers",
        })
    }
}

impl std::error::Error for SelectError {}

/// How often a sleeping select re-checks senders' liveness.
const LIVENESS_PERIOD: Duration = Duration::from_millis(10);
/// Yields between polling and sleeping.
const YIELDS: u32 = 4;

/// Waits until one of `receivers` is ready (a message waits, or its senders are all
/// gone so `recv` would report the disconnect) and returns its index; `timeout`
/// `None` waits as long as it takes. Receive from it next (`try_recv` then returns
/// the message or the disconnect).
///
/// # Errors
///
/// [`SelectError::Timeout`]; [`SelectError::NoReceivers`] for an empty set or more
/// than 128 receivers.
///
/// # Examples
///
/// ```
/// use shmlink::channel;
/// use std::time::Duration;
///
/// let (mut tx_a, mut rx_a) = channel::bounded::<u64>(4)?;
/// let (mut tx_b, mut rx_b) = channel::bounded::<u64>(4)?;
/// let t = std::thread::spawn(move || tx_b.send(2));
/// match channel::select(&[&rx_a, &rx_b], Some(Duration::from_secs(5)))? {
///     0 => println!("a: {:?}", rx_a.try_recv()),
///     _ => assert_eq!(rx_b.try_recv(), Ok(2)),
/// }
/// t.join().unwrap()?;
/// # tx_a.send(1)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn select(
    receivers: &[&dyn Selectable],
    timeout: Option<Duration>,
) -> Result<usize, SelectError> {
    select_until(
        receivers,
        timeout.and_then(|t| Instant::now().checked_add(t)),
    )
}

/// [`select`] with an absolute deadline.
///
/// # Errors
///
/// As [`select`].
///
/// # Examples
///
/// ```
/// use shmlink::channel::{self, SelectError};
/// use std::time::{Duration, Instant};
///
/// let (mut tx, rx) = channel::bounded::<u64>(4)?;
/// tx.send(1)?;
/// let deadline = Instant::now() + Duration::from_secs(1);
/// assert_eq!(channel::select_until(&[&rx], Some(deadline)), Ok(0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn select_until(
    receivers: &[&dyn Selectable],
    deadline: Option<Instant>,
) -> Result<usize, SelectError> {
    if receivers.is_empty() || receivers.len() > 128 {
        return Err(SelectError::NoReceivers);
    }
    let ready = |thorough| receivers.iter().position(|r| r.is_ready(thorough));
    if let Some(i) = ready(false) {
        return Ok(i);
    }
    let started = Instant::now();
    let mut next_liveness = started + LIVENESS_PERIOD;
    let words: Option<Vec<&WaitWord>> = receivers.iter().map(|r| r.data_word()).collect();
    let mut yields = 0u32;
    let mut polls = 0u32;
    loop {
        polls = polls.wrapping_add(1);
        let check_clock = polls.is_multiple_of(64) || yields > 0;
        if check_clock {
            let now = Instant::now();
            let thorough = now >= next_liveness;
            if thorough {
                next_liveness = now + LIVENESS_PERIOD;
            }
            if let Some(i) = ready(thorough) {
                return Ok(i);
            }
            if deadline.is_some_and(|d| now >= d) {
                return Err(SelectError::Timeout);
            }
            if yields == 0 && now - started >= crate::sync::SPIN_FOR {
                yields = 1;
            }
        } else if let Some(i) = ready(false) {
            return Ok(i);
        }
        if yields == 0 {
            crate::sync::spin_loop();
            continue;
        }
        let Some(words) = &words else {
            // A spin-mode receiver is never notified: keep polling, politely.
            crate::sync::yield_now();
            continue;
        };
        if yields < YIELDS {
            yields += 1;
            crate::sync::yield_now();
            continue;
        }
        // Announce on every word, fence, re-check, sleep on all of them.
        let futexes: Vec<_> = words.iter().map(|w| w.announce()).collect();
        // SYNC: pairs with the fence in `WaitWord::notify` (store-buffering: announce;
        // fence; re-check  vs  publish; fence; check sleepers).
        fence(Ordering::SeqCst);
        let found = ready(false);
        if found.is_none() {
            let slice = Instant::now() + LIVENESS_PERIOD;
            let until = deadline.map_or(slice, |d| d.min(slice));
            crate::sync::futex::wait_any(&futexes, Some(until));
        }
        for w in words {
            w.retract();
        }
        if let Some(i) = found {
            return Ok(i);
        }
    }
}

#[cfg(all(test, not(shmlink_loom)))]
mod tests {
    use super::*;
    use crate::channel;

    #[test]
    #[cfg_attr(miri, ignore = "futex_waitv and real clocks")]
    fn a_sleeping_select_wakes_on_the_second_channel() {
        let (_tx_a, rx_a) = channel::bounded::<u64>(4).unwrap();
        let (mut tx_b, mut rx_b) = channel::bounded::<u64>(4).unwrap();
        let t = std::thread::spawn(move || {
            // Long enough for the select to be asleep on both words.
            std::thread::sleep(Duration::from_millis(50));
            tx_b.send(9).unwrap();
            tx_b
        });
        let started = Instant::now();
        assert_eq!(
            select(&[&rx_a, &rx_b], Some(Duration::from_secs(10))),
            Ok(1)
        );
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(40), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert_eq!(rx_b.try_recv(), Ok(9));
        drop(t.join().unwrap());
    }

    #[test]
    #[cfg_attr(miri, ignore = "futex_waitv and real clocks")]
    fn a_dropped_sender_makes_its_receiver_ready() {
        let (_tx_a, rx_a) = channel::bounded::<u64>(4).unwrap();
        let (tx_b, mut rx_b) = channel::bounded::<u64>(4).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            drop(tx_b);
        });
        assert_eq!(
            select(&[&rx_a, &rx_b], Some(Duration::from_secs(10))),
            Ok(1)
        );
        assert_eq!(rx_b.try_recv(), Err(channel::TryRecvError::Disconnected));
        t.join().unwrap();
    }

    #[test]
    #[cfg_attr(miri, ignore = "real clocks")]
    fn spin_mode_receivers_are_polled_and_time_out() {
        let ch = channel::Channel::<u64>::new(
            channel::Options::new().wait_mode(crate::sync::WaitMode::Spin),
        )
        .unwrap();
        let (_tx, rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
        let started = Instant::now();
        assert_eq!(
            select(&[&rx], Some(Duration::from_millis(20))),
            Err(SelectError::Timeout)
        );
        assert!(started.elapsed() >= Duration::from_millis(20));
    }
}

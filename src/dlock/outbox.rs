//! A lock node's queue of messages for one peer, sent by whichever thread put them
//! there: no thread hand-off on a message's way, and still one sender at a time, so
//! messages leave in the order they were queued.
//!
//! [`Outbox::flush`] makes the calling thread the sender if nobody sends and the peer
//! is connected; it sends batches until the queue is empty, looking at the queue again
//! **under the lock** before it stops being the sender. A thread that finds another
//! sending leaves its messages to it: since the sender's last look and its giving up the
//! role happen in one critical section, a message pushed before that look is sent by
//! it, and one pushed after finds nobody sending and is sent by its own pusher. No
//! message is stranded (modelled in `src/dlock/tests/loom_outbox.rs`).
//!
//! Connecting is done by the link's own thread ([`Outbox::begin_connect`] /
//! [`Outbox::end_connect`]); it holds the sender's role meanwhile, so nobody sends on a
//! connection being replaced.

use std::collections::VecDeque;
use std::time::Duration;

use crate::sync::mutex::{Condvar, Mutex, MutexGuard};

/// Most messages in one batch.
const BATCH: usize = 256;

struct State<T, C> {
    queue: VecDeque<T>,
    client: Option<C>,
    /// A thread sends (or connects).
    sending: bool,
}

/// What [`Outbox::flush`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// The queue is empty, or another thread sends it.
    Done,
    /// Messages wait and the peer is not connected: the link's thread must connect.
    NotConnected,
}

/// One peer's outgoing queue and connection (see the module docs).
pub(crate) struct Outbox<T, C> {
    state: Mutex<State<T, C>>,
    /// The link's thread waits here ([`Outbox::wait`]).
    wake: Condvar,
    cap: usize,
}

impl<T, C: Clone> Outbox<T, C> {
    /// An empty queue holding at most `cap` messages, not connected.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                client: None,
                sending: false,
            }),
            wake: Condvar::new(),
            cap,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T, C>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item`; `false` if the queue is full.
    pub(crate) fn push(&self, item: T) -> bool {
        let mut s = self.lock();
        if s.queue.len() >= self.cap {
            return false;
        }
        s.queue.push_back(item);
        true
    }

    /// Whether messages wait.
    pub(crate) fn is_pending(&self) -> bool {
        !self.lock().queue.is_empty()
    }

    /// Sends the queue from this thread with `send` (a batch in queue order, on the
    /// connection; `false`: the connection failed, and is dropped), unless another
    /// thread sends. `send` runs without the lock.
    pub(crate) fn flush(&self, mut send: impl FnMut(&C, Vec<T>) -> bool) -> Flush {
        let mut s = self.lock();
        loop {
            if s.sending || s.queue.is_empty() {
                return Flush::Done;
            }
            let Some(client) = s.client.clone() else {
                return Flush::NotConnected;
            };
            s.sending = true;
            let n = s.queue.len().min(BATCH);
            let batch: Vec<T> = s.queue.drain(..n).collect();
            drop(s);
            let ok = send(&client, batch);
            s = self.lock();
            s.sending = false;
            if !ok {
                s.client = None;
            }
        }
    }

    /// Drops the connection (it failed): the next flush reports
    /// [`Flush::NotConnected`].
    pub(crate) fn disconnect(&self) {
        self.lock().client = None;
    }

    /// For the link's thread: whether it should connect now (messages wait, nobody
    /// sends, no connection). If so, it holds the sender's role until
    /// [`end_connect`](Self::end_connect).
    pub(crate) fn begin_connect(&self) -> bool {
        let mut s = self.lock();
        if s.sending || s.queue.is_empty() || s.client.is_some() {
            return false;
        }
        s.sending = true;
        true
    }

    /// Ends a [`begin_connect`](Self::begin_connect): keeps `client`, or, if the
    /// connect failed, drops what was queued (the sender sends it again) and returns
    /// how many messages that was.
    pub(crate) fn end_connect(&self, client: Option<C>) -> usize {
        let mut s = self.lock();
        s.sending = false;
        if client.is_some() {
            s.client = client;
            return 0;
        }
        let lost = s.queue.len();
        s.queue.clear();
        lost
    }

    /// Drops what is queued while the peer is known to be down; how many messages.
    pub(crate) fn drop_queued(&self) -> usize {
        let mut s = self.lock();
        if s.sending || s.client.is_some() {
            return 0;
        }
        let lost = s.queue.len();
        s.queue.clear();
        lost
    }

    /// For the link's thread: waits until [`wake`](Self::wake)d or `timeout`, unless
    /// messages wait with nobody sending them (then it returns at once).
    pub(crate) fn wait(&self, timeout: Duration) {
        let s = self.lock();
        if !s.sending && !s.queue.is_empty() {
            return;
        }
        let _ = self.wake.wait_timeout(s, timeout);
    }

    /// Wakes the link's thread (after taking the lock, so that a thread between its
    /// look at the queue and its wait is not missed).
    pub(crate) fn wake(&self) {
        drop(self.lock());
        self.wake.notify_all();
    }
}

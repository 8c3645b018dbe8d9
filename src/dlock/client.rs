//! The distributed lock as a process of a host sees it: [`DistLock`], a [`Lock`] taken
//! through the host's [`LockNode`](super::LockNode), after the host's Bakery lock of
//! the same name, so that only one process per host contends across hosts.

use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::fmt;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::FencingToken;
use super::lock::{Lock, LockGuard, LockLost, LostReason};
use super::node::monotonic_now;
use super::protocol::LockName;
use super::service::{AcquireArgs, LocalClient, LockEvent, NodeError, NodeStatus, ReleaseArgs};
use crate::lock::{BakeryGuard, BakeryLock, LockError};
use crate::rpc::{CallStream, ConnectError, RpcError};
use crate::segment::ShmRegion;
use crate::segment::{self, Segment};

/// How long [`DistLock`] waits before it asks again when the node is busy with another
/// attempt of this host on the lock ([`NodeError::Busy`]).
const BUSY_RETRY: Duration = Duration::from_millis(5);

/// Slots of the host's Bakery lock per lock name: processes of one host that may
/// wait for the same distributed lock at once.
pub const HOST_PARTICIPANTS: usize = 64;

/// Why taking or opening a [`DistLock`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum DistLockError {
    /// The host's node could not be reached (the error names its URL).
    Connect {
        /// Why.
        source: ConnectError,
    },
    /// The host's Bakery lock for the name could not be opened, created or taken.
    Host {
        /// The lock.
        lock: String,
        /// What went wrong.
        reason: String,
    },
    /// The node refused the attempt.
    Node {
        /// The lock.
        lock: String,
        /// Why.
        source: NodeError,
    },
    /// The call to the node failed (the node stopped or died).
    Rpc {
        /// The lock.
        lock: String,
        /// Why.
        source: RpcError<NodeError>,
    },
    /// The lock was not granted in time.
    Timeout {
        /// The lock.
        lock: String,
    },
    /// The lock was granted and lost before it could be handed over.
    Lost(LockLost),
}

impl fmt::Display for DistLockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect { source } => write!(f, "lock node: {source}"),
            Self::Host { lock, reason } => write!(f, "host lock of {lock}: {reason}"),
            Self::Node { lock, source } => write!(f, "lock {lock}: {source}"),
            Self::Rpc { lock, source } => write!(f, "lock {lock}: the node call failed: {source}"),
            Self::Timeout { lock } => write!(f, "lock {lock}: not granted in time"),
            Self::Lost(l) => write!(f, "{l}"),
        }
    }
}

impl std::error::Error for DistLockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect { source, .. } => Some(source),
            Self::Node { source, .. } => Some(source),
            Self::Rpc { source, .. } => Some(source),
            Self::Lost(l) => Some(l),
            _ => None,
        }
    }
}

/// The segment name of the host's Bakery lock for a distributed lock taken through
/// the node at `node_url` (one per node, so that nodes sharing a host in tests do
/// not share it).
fn host_segment(node_url: &str, name: &str) -> String {
    let node = LockName::new(node_url).0;
    format!("shmlink-dlock-{node:016x}-{:016x}", LockName::new(name).0)
}

/// Opens the host's Bakery lock for `name`, creating it if there is none, and resuming
/// one a crashed process left (its dead participants' slots are reclaimed).
fn host_lock(
    node_url: &str,
    name: &str,
) -> Result<BakeryLock<ShmRegion<crate::lock::BakeryControl>>, DistLockError> {
    let seg = host_segment(node_url, name);
    BakeryLock::open_or_create(Segment::builder(&seg), HOST_PARTICIPANTS)
        .map(|(lock, _)| lock)
        .map_err(|e| DistLockError::Host {
            lock: name.to_owned(),
            reason: format!("open or create {seg}: {e}"),
        })
}

/// A distributed lock, taken through this host's lock node.
///
/// [`lock`](Lock::lock) first takes the host's Bakery lock of the same name (so only
/// one process of the host asks the cluster), then asks the node, which runs Maekawa's
/// algorithm with the other nodes. The guard holds while the node renews the lease;
/// [`LockGuard::check`] says whether it still does, and the [`FencingToken`] makes a
/// holder that lost it harmless to a [`FencedResource`](super::FencedResource).
///
/// # Examples
///
/// See [`LockNode`](super::LockNode).
pub struct DistLock {
    name: String,
    segment: String,
    url: String,
    client: LocalClient,
    /// `None` only while dropping.
    host: Option<BakeryLock<ShmRegion<crate::lock::BakeryControl>>>,
    keys: AtomicU64,
    /// The guard thread, from the first acquisition on.
    watcher: Option<Watcher>,
}

impl fmt::Debug for DistLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DistLock")
            .field("name", &self.name)
            .field("node", &self.url)
            .finish_non_exhaustive()
    }
}

impl DistLock {
    /// The lock `name`, taken through the node serving this host at `node_url`.
    ///
    /// # Errors
    ///
    /// [`DistLockError::Connect`], [`DistLockError::Host`].
    pub fn open(node_url: &str, name: &str) -> Result<DistLock, DistLockError> {
        let client =
            LocalClient::connect(node_url).map_err(|source| DistLockError::Connect { source })?;
        let host = host_lock(node_url, name)?;
        let segment = host_segment(node_url, name);
        let seed = u64::from(std::process::id()) << 32 ^ monotonic_now().0;
        Ok(DistLock {
            name: name.to_owned(),
            segment,
            url: node_url.to_owned(),
            client,
            host: Some(host),
            keys: AtomicU64::new(seed),
            watcher: None,
        })
    }

    /// The name of the host's Bakery lock segment that a [`DistLock`] of lock `name`
    /// through the node at `node_url` uses (see [`host_segment`](Self::host_segment)),
    /// for a program that cleans up after itself.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::DistLock;
    ///
    /// let seg = DistLock::host_segment_name("shm://shmlink-lockd", "orders");
    /// assert!(seg.starts_with("shmlink-dlock-"));
    /// ```
    #[must_use]
    pub fn host_segment_name(node_url: &str, name: &str) -> String {
        host_segment(node_url, name)
    }

    /// The lock's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of the host's Bakery lock for this lock and node: a named segment that
    /// every process of the host taking the lock through the node opens, and the last
    /// one to drop its `DistLock` removes (a crashed process leaves it stale, for
    /// `shmlink rm --stale`).
    #[must_use]
    pub fn host_segment(&self) -> &str {
        &self.segment
    }

    /// The node's state (what `shmlink ls` shows).
    ///
    /// # Errors
    ///
    /// [`DistLockError::Rpc`] if the node does not answer.
    pub fn node_status(&self) -> Result<NodeStatus, DistLockError> {
        self.client
            .status(())
            .wait()
            .map_err(|source| DistLockError::Rpc {
                lock: self.name.clone(),
                source,
            })
    }

    fn take(&mut self, deadline: Option<Instant>) -> Result<DistGuard<'_>, DistLockError> {
        let DistLock {
            name,
            client,
            host,
            keys,
            watcher,
            ..
        } = self;
        let (name, client): (&String, &LocalClient) = (name, client);
        let Some(host) = host.as_mut() else {
            unreachable!("the host lock is taken only by drop")
        };
        let remaining = || deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let host_taken = match remaining() {
            None => host.lock(),
            Some(left) => host.lock_timeout(left),
        };
        let (host_guard, previous_died) = match host_taken {
            Ok(g) => (g, false),
            Err(LockError::OwnerDied(g)) => (g, true),
            Err(LockError::Timeout) => return Err(DistLockError::Timeout { lock: name.clone() }),
            Err(e) => {
                return Err(DistLockError::Host {
                    lock: name.clone(),
                    reason: e.without_guard().to_string(),
                });
            }
        };
        let watcher = match watcher {
            Some(w) => w,
            None => watcher.insert(Watcher::start().map_err(|e| DistLockError::Host {
                lock: name.clone(),
                reason: format!("start the guard thread: {e}"),
            })?),
        };
        let key = keys.fetch_add(1, Ordering::Relaxed);
        let open = || {
            client.with_timeout(Duration::MAX).acquire(AcquireArgs {
                name: name.clone(),
                pid: std::process::id(),
                key,
            })
        };
        let mut stream = open();
        let release = |client: &LocalClient| {
            let _ = client
                .with_timeout(Duration::from_secs(1))
                .release(ReleaseArgs {
                    name: name.clone(),
                    key,
                })
                .wait();
        };
        // This thread reads what the node says until the grant; the guard thread reads
        // the rest (renewals, a loss) and answers each report with a keep-alive.
        let granted = loop {
            let event = match deadline {
                None => stream.next(),
                Some(d) => stream.next_until(d),
            };
            match event {
                Some(Ok(LockEvent::Granted { token, valid_until })) => {
                    break Ok((token, valid_until));
                }
                // Renewals come only after a grant.
                Some(Ok(LockEvent::Renewed { .. })) => {}
                Some(Err(RpcError::DeadlineExceeded))
                    if deadline.is_some_and(|d| Instant::now() >= d) =>
                {
                    break Err(DistLockError::Timeout { lock: name.clone() });
                }
                // Another attempt of this host is still on (one that just left, whose
                // lock runs out within a lease): ask again shortly.
                Some(Err(RpcError::Service(NodeError::Busy { .. }))) => {
                    let retry = Instant::now() + BUSY_RETRY;
                    if deadline.is_some_and(|d| retry >= d) {
                        break Err(DistLockError::Timeout { lock: name.clone() });
                    }
                    std::thread::sleep(BUSY_RETRY);
                    stream = open();
                }
                Some(Err(RpcError::Service(source))) => {
                    break Err(DistLockError::Node {
                        lock: name.clone(),
                        source,
                    });
                }
                Some(Err(source)) => {
                    break Err(DistLockError::Rpc {
                        lock: name.clone(),
                        source,
                    });
                }
                // The node failed the attempt (it stopped), or the stream ended.
                Some(Ok(LockEvent::Lost { .. })) | None => {
                    break Err(DistLockError::Rpc {
                        lock: name.clone(),
                        source: RpcError::ServerGone,
                    });
                }
            }
        };
        let (token, valid_until) = match granted {
            Ok(g) => g,
            Err(e) => {
                // Withdraw the attempt at once (the node also does when the stream
                // ends, which dropping it does, but only at its next look).
                release(client);
                return Err(e);
            }
        };
        let state = Arc::new(Held {
            valid_until: AtomicU64::new(valid_until),
            lost: AtomicBool::new(false),
            expired: AtomicBool::new(false),
        });
        let watch = Watch {
            stream,
            held: state.clone(),
            pinger: client.with_timeout(Duration::from_secs(1)),
            alive: ReleaseArgs {
                name: name.clone(),
                key,
            },
        };
        if let Err(mpsc::SendError(watch)) = watcher.tx.send(watch) {
            // The guard thread is gone (it cannot be: it ends when this lock drops).
            drop(watch);
            release(client);
            return Err(DistLockError::Host {
                lock: name.clone(),
                reason: "the guard thread is gone".into(),
            });
        }
        Ok(DistGuard {
            name,
            client,
            key,
            token,
            state,
            previous_died,
            _host: host_guard,
        })
    }
}

/// One lock's guard thread: it reads the node's reports on each held lock (renewals,
/// a loss), records them for [`DistGuard::check`], and answers each with a keep-alive,
/// so that the node goes on renewing only while this process runs. It is started at
/// the first acquisition and serves every later one, and ends once the [`DistLock`]
/// is dropped and the last lock's stream has ended.
struct Watcher {
    tx: mpsc::Sender<Watch>,
}

/// A granted lock, handed to the guard thread.
struct Watch {
    stream: CallStream<LockEvent, NodeError>,
    held: Arc<Held>,
    pinger: LocalClient,
    alive: ReleaseArgs,
}

impl Watcher {
    fn start() -> std::io::Result<Watcher> {
        let (tx, rx) = mpsc::channel::<Watch>();
        std::thread::Builder::new()
            .name("shmlink-dlock-guard".into())
            .spawn(move || {
                for Watch {
                    stream,
                    held,
                    pinger,
                    alive,
                } in rx
                {
                    let keepalive = || {
                        let _ = pinger.keepalive(alive.clone()).wait();
                    };
                    // Answers the grant's report.
                    keepalive();
                    for event in stream {
                        match event {
                            Ok(LockEvent::Renewed { valid_until }) => {
                                held.valid_until.fetch_max(valid_until, Ordering::AcqRel);
                                keepalive();
                            }
                            Ok(LockEvent::Lost { expired }) => {
                                held.expired.store(expired, Ordering::Relaxed);
                                held.lost.store(true, Ordering::Release);
                            }
                            Ok(LockEvent::Granted { .. }) => {}
                            Err(_) => break,
                        }
                    }
                    // The stream ended (released, or the node or the connection went):
                    // no more reports, so whatever happens at the node now goes
                    // unheard. Stop counting on the lock.
                    held.lost.store(true, Ordering::Release);
                }
            })?;
        Ok(Watcher { tx })
    }
}

/// What the guard thread records.
struct Held {
    valid_until: AtomicU64,
    lost: AtomicBool,
    expired: AtomicBool,
}

/// A held [`DistLock`]. Dropping it releases the lock, then the host's Bakery lock.
pub struct DistGuard<'a> {
    name: &'a String,
    client: &'a LocalClient,
    key: u64,
    token: FencingToken,
    state: Arc<Held>,
    previous_died: bool,
    _host: BakeryGuard<'a, ShmRegion<crate::lock::BakeryControl>>,
}

impl fmt::Debug for DistGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DistGuard")
            .field("lock", self.name)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl DistGuard<'_> {
    /// Until when the lock is valid, on the host's monotonic clock (see
    /// [`monotonic_now`](super::monotonic_now)); renewals move it.
    #[must_use]
    pub fn valid_until(&self) -> u64 {
        self.state.valid_until.load(Ordering::Acquire)
    }
}

impl LockGuard for DistGuard<'_> {
    fn token(&self) -> FencingToken {
        self.token
    }

    fn check(&self) -> Result<(), LockLost> {
        let lost = |reason| {
            Err(LockLost {
                lock: self.name.clone(),
                reason,
            })
        };
        if self.state.lost.load(Ordering::Acquire) {
            return lost(if self.state.expired.load(Ordering::Relaxed) {
                LostReason::LeaseExpired
            } else {
                LostReason::Revoked
            });
        }
        if monotonic_now().0 >= self.valid_until() {
            return lost(LostReason::LeaseExpired);
        }
        Ok(())
    }

    fn previous_holder_died(&self) -> bool {
        self.previous_died
    }
}

impl Drop for DistGuard<'_> {
    fn drop(&mut self) {
        let _ = self
            .client
            .with_timeout(Duration::from_secs(1))
            .release(ReleaseArgs {
                name: self.name.clone(),
                key: self.key,
            })
            .wait();
    }
}

impl Lock for DistLock {
    type Guard<'a> = DistGuard<'a>;
    type Error = DistLockError;

    fn lock(&mut self) -> Result<DistGuard<'_>, DistLockError> {
        self.take(None)
    }

    fn try_lock_for(&mut self, timeout: Duration) -> Result<DistGuard<'_>, DistLockError> {
        self.take(Instant::now().checked_add(timeout))
    }
}

impl Drop for DistLock {
    fn drop(&mut self) {
        // Leave the host's Bakery lock, then remove its segment if no other process of
        // the host has it open (a process opening it meanwhile keeps it, or sees it
        // removed and creates another).
        drop(self.host.take());
        let _ = segment::remove_idle(&self.segment);
    }
}

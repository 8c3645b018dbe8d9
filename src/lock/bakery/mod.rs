//! Lamport's Bakery lock for up to 64 participants across processes:
//! [`BakeryLock`], and [`BakeryMutex`] for a plain-old-data value beside it.
//!
//! # Algorithm
//!
//! Each participant owns a slot (one 128-byte line) with a `choosing` flag and a
//! `ticket`. To lock, it takes a ticket one above every ticket it sees (the doorway),
//! then waits, for every other slot, until that slot is not choosing and holds no
//! ticket or a later one (ties broken by slot index). Unlocking clears the ticket.
//!
//! Lamport's proof assumes sequential consistency; two store→load edges need a SeqCst
//! fence each (`docs/orderings.md` has the table, and the loom model in
//! `loom-tests/sync.rs` fails without either):
//! - F1, after `choosing = 1` and before reading the tickets;
//! - F2, after storing the ticket (and `choosing = 0`) and before reading the other
//!   slots' `choosing` and tickets.
//!
//! Tickets are `u64`: at one lock a nanosecond they last five centuries, so overflow
//! is not handled (a ticket above 2^62 read from shared memory is reported as
//! corruption).
//!
//! Only slots whose bit is set in an `active` bitmap are scanned, so an uncontended
//! lock with few participants reads a couple of lines, not 64. A joiner sets its bit
//! (an RMW) before its first doorway; a locker re-reads the bitmap after F2, so either
//! it sees the joiner or the joiner's doorway sees its ticket.
//!
//! # Waiting
//!
//! In [`WaitMode::Blocking`] (the default) a waiter polls for
//! [`SPIN_FOR`](crate::sync::SPIN_FOR), yields, then sleeps on one process-shared futex word
//! (a [`WaitWord`]) that unlock, a doorway exit and a reclaim wake only when someone
//! sleeps. Checking for sleepers costs unlock a third SeqCst fence (the wait/wake
//! handshake is a store-buffering pattern too), so a lock+unlock pair runs three full
//! barriers where a futex mutex runs two locked instructions. In [`WaitMode::Spin`]
//! (chosen at creation) waiters never sleep and unlock skips the check: for
//! participants that each have a core.
//!
//! # Death of a participant
//!
//! A waiter that has waited on a slot checks, every 10 ms, whether the slot's owner
//! process has exited (pid and start time, see [`token_dead`]). If so, it claims the
//! slot's reclaim word (one reclaimer at a time, even among the threads of one
//! process; a dead reclaimer is replaced), and if the dead process held the lock it
//! raises the lock's owner-died flag; then it clears the slot's `choosing` and ticket
//! (Lamport's failure model: a failed process's variables read as zero), drops its
//! bit and, last, frees it. A join that finds no free slot reclaims the same way, and
//! waits for a slot that someone else is reclaiming. The next process to acquire
//! the lock is told, once, with [`LockError::OwnerDied`], so it can repair the
//! protected data. A slot is never cleared because of a timeout alone: a slow owner is
//! not a dead one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::process::crash;
use crate::process::{current_token, token_dead, token_pid};
use crate::region::{CacheLine, HeapRegion, RawArea, Region, ShmSafe};
use crate::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};
use crate::sync::{WaitError, WaitMode, WaitWord};

#[cfg(not(shmlink_loom))]
use super::ObjectError;
#[cfg(not(shmlink_loom))]
use crate::region::fingerprint;
#[cfg(not(shmlink_loom))]
use crate::segment::{Kind, OpenError, SegmentBuilder, ShmRegion};

mod error;
mod mutex;

pub use error::{BakeryConfigError, LockError};

pub use mutex::{BakeryMutex, MutexGuard};

/// The most participants a Bakery lock can have.
///
/// # Examples
///
/// ```
/// use shmlink::lock::{BakeryConfigError, BakeryLock, MAX_PARTICIPANTS};
///
/// assert_eq!(MAX_PARTICIPANTS, 64);
/// let err = BakeryLock::new(65).unwrap_err();
/// assert_eq!(err, BakeryConfigError::InvalidParticipants(65));
/// ```
pub const MAX_PARTICIPANTS: usize = 64;

/// Bytes per participant slot (one slot per 128-byte line).
pub const SLOT_SIZE: usize = 128;

/// How long `join` waits for another process's reclaim of a dead slot before it
/// reports [`BakeryConfigError::Full`] (a reclaim takes a few stores; this only
/// bounds a reclaimer whose liveness cannot be told).
#[cfg(not(shmlink_loom))]
const RECLAIM_WAIT: Duration = Duration::from_secs(1);

/// Tickets above this are corruption, not contention.
const TICKET_LIMIT: u64 = 1 << 62;

// Word offsets inside a slot.
const OWNER: usize = 0;
const GENERATION: usize = 8;
const CHOOSING: usize = 16;
const TICKET: usize = 24;
const RECLAIMER: usize = 32;

/// Configuration, written by the creator before the lock is shared.
#[repr(C)]
#[derive(Debug)]
struct BakeryConfig {
    participants: AtomicU32,
    data_size: AtomicU32,
    data_fingerprint: AtomicU64,
    /// How waiters wait ([`WaitMode`] code).
    mode: AtomicU32,
}

/// Who holds the lock (for reclaim and for `shmlink ls`) and the owner-died flag.
#[repr(C)]
#[derive(Debug)]
struct Holder {
    token: AtomicU64,
    /// Slot index + 1; 0 while unlocked.
    slot: AtomicU32,
    /// 1 after a holder died, until the next acquirer is told.
    owner_died: AtomicU32,
    /// Lock acquisitions, for statistics.
    acquisitions: AtomicU64,
}

/// The control block of a Bakery lock (512 bytes); the participant slots follow it in
/// the region's area, one 128-byte line each.
///
/// # Examples
///
/// ```
/// use shmlink::lock::BakeryControl;
///
/// assert_eq!(size_of::<BakeryControl>(), 512);
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct BakeryControl {
    config: CacheLine<BakeryConfig>,
    /// Bit j set: slot j is claimed and must be scanned.
    active: CacheLine<AtomicU64>,
    holder: CacheLine<Holder>,
    wake: CacheLine<WaitWord>,
}

#[cfg(not(shmlink_loom))]
const _: () = assert!(size_of::<BakeryControl>() == 512 && align_of::<BakeryControl>() == 128);

macro_rules! zeroed_atomics {
    ($name:ident { $($field:ident : $t:ident),* }, $type_name:literal) => {
        // SAFETY: repr(C) of integer atomics, no pointers; any bit pattern is a valid
        // (possibly corrupt) value that every reader validates.
        unsafe impl ShmSafe for $name {
            const TYPE_NAME: &'static str = $type_name;
            fn new_zeroed() -> Self {
                Self { $($field: $t::new(0)),* }
            }
        }
    };
}

zeroed_atomics!(
    BakeryConfig {
        participants: AtomicU32,
        data_size: AtomicU32,
        data_fingerprint: AtomicU64,
        mode: AtomicU32
    },
    "shmlink::sync::bakery::Config"
);
zeroed_atomics!(
    Holder {
        token: AtomicU64,
        slot: AtomicU32,
        owner_died: AtomicU32,
        acquisitions: AtomicU64
    },
    "shmlink::sync::bakery::Holder"
);

// SAFETY: repr(C) of ShmSafe fields (cache lines of atomics), no pointers.
unsafe impl ShmSafe for BakeryControl {
    const TYPE_NAME: &'static str = "shmlink::lock::BakeryControl";
    fn new_zeroed() -> Self {
        Self {
            config: CacheLine::new_zeroed(),
            active: CacheLine::new_zeroed(),
            holder: CacheLine::new_zeroed(),
            wake: CacheLine::new_zeroed(),
        }
    }
}

impl BakeryControl {
    /// Area bytes for `participants` slots and `data_size` bytes of protected data.
    pub(crate) fn area_len(participants: usize, data_size: usize) -> usize {
        participants * SLOT_SIZE + data_size
    }

    /// Writes the configuration (creator only, before sharing).
    pub(crate) fn init(
        &self,
        participants: usize,
        data_size: usize,
        data_fingerprint: u64,
        mode: WaitMode,
    ) -> Result<(), BakeryConfigError> {
        check_participants(participants as u64)?;
        self.config.mode.store(mode.code(), Ordering::Relaxed);
        self.config
            .participants
            .store(participants as u32, Ordering::Relaxed);
        self.config
            .data_size
            .store(data_size as u32, Ordering::Relaxed);
        self.config
            .data_fingerprint
            .store(data_fingerprint, Ordering::Relaxed);
        Ok(())
    }
}

fn check_participants(n: u64) -> Result<(), BakeryConfigError> {
    if n == 0 || n > MAX_PARTICIPANTS as u64 {
        Err(BakeryConfigError::InvalidParticipants(n))
    } else {
        Ok(())
    }
}

/// What `lock` found: clean, or after a dead holder.
enum Acquired {
    Clean,
    OwnerDied,
}

/// One participant slot as a [`BakeryLock`] reports it.
///
/// # Examples
///
/// ```
/// use shmlink::lock::BakeryLock;
///
/// let lock = BakeryLock::new(4)?;
/// let me = &lock.participants()[0];
/// assert_eq!((me.slot, me.pid, me.holding), (0, std::process::id(), false));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Participant {
    /// Slot index.
    pub slot: usize,
    /// Process id of the owner.
    pub pid: u32,
    /// How many times the slot has been claimed.
    pub generation: u64,
    /// Current ticket (0: not locking).
    pub ticket: u64,
    /// Whether this participant holds the lock.
    pub holding: bool,
    /// Whether its process lives (a dead one's slot is reclaimed by the next waiter
    /// that finds it in the way, or by an `open` that finds the table full).
    pub liveness: crate::process::Liveness,
}

/// Shared access to the control block and slots of one lock.
struct Table<'a> {
    ctl: &'a BakeryControl,
    area: RawArea,
    n: usize,
}

impl<'a> Table<'a> {
    #[inline(always)]
    fn word(&self, slot: usize, field: usize) -> &'a AtomicU64 {
        debug_assert!(slot < self.n);
        // SAFETY: slot < n and n * SLOT_SIZE <= area length (validated when the handle
        // was built), field < SLOT_SIZE and 8-aligned; the area is 128-aligned; the
        // region outlives 'a (the handle holds it); the words are only accessed
        // atomically.
        unsafe { &*(self.area.atomic_u64(slot * SLOT_SIZE + field) as *const AtomicU64) }
    }

    #[inline(always)]
    fn mask(&self) -> u64 {
        if self.n == 64 {
            u64::MAX
        } else {
            (1 << self.n) - 1
        }
    }

    #[inline(always)]
    fn active(&self) -> u64 {
        self.ctl.active.load(Ordering::Relaxed) & self.mask()
    }

    /// Claims a free slot for `token` (reclaiming slots of dead processes if none is
    /// free); returns the slot and its generation.
    ///
    /// A slot of a dead process that someone else is reclaiming is about to be free:
    /// the claim waits for it (yielding) rather than report [`BakeryConfigError::Full`],
    /// for at most [`RECLAIM_WAIT`] (a reclaimer whose liveness cannot be told is
    /// taken for alive, and might never finish).
    fn claim(&self, token: u64) -> Result<(usize, u64), BakeryConfigError> {
        #[cfg(not(shmlink_loom))]
        let mut give_up: Option<Instant> = None;
        loop {
            if let Some(claimed) = self.claim_free(token) {
                return Ok(claimed);
            }
            // None free: free the slots of dead processes. Go round again if one was
            // freed meanwhile (by its owner, or by a reclaimer that finished since).
            let (mut again, mut busy) = (false, false);
            for j in 0..self.n {
                let owner = self.word(j, OWNER).load(Ordering::Relaxed);
                if owner == 0 {
                    again = true;
                } else if token_dead(owner) {
                    again = true;
                    busy |= !self.reclaim(j, owner, token);
                }
            }
            if !again {
                return Err(BakeryConfigError::Full {
                    participants: self.n as u32,
                });
            }
            if busy {
                // Another reclaimer is on a slot (maybe another thread of ours).
                #[cfg(not(shmlink_loom))]
                {
                    let now = Instant::now();
                    if now >= *give_up.get_or_insert(now + RECLAIM_WAIT) {
                        return Err(BakeryConfigError::Full {
                            participants: self.n as u32,
                        });
                    }
                }
                crate::sync::yield_now();
            }
        }
    }

    /// One pass over the slots: claims the first free one.
    fn claim_free(&self, token: u64) -> Option<(usize, u64)> {
        for j in 0..self.n {
            let owner = self.word(j, OWNER);
            if owner.load(Ordering::Relaxed) != 0 {
                continue;
            }
            // SYNC: Acquire pairs with the Release store that freed the slot: the
            // previous owner's (or reclaimer's) clearing of the slot and of its
            // `active` bit happen before our claim.
            if owner
                .compare_exchange(0, token, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                crash::point("bakery.join", 1);
                let generation = self.word(j, GENERATION).fetch_add(1, Ordering::Relaxed) + 1;
                // A free slot already reads as idle; make sure of it (garbage left
                // by a hostile writer would otherwise block everyone).
                self.word(j, CHOOSING).store(0, Ordering::Relaxed);
                self.word(j, TICKET).store(0, Ordering::Relaxed);
                crash::point("bakery.join", 2);
                // SYNC: SeqCst RMW: ordered before our first doorway's fences, so a
                // locker that misses this bit is seen by our doorway (module docs).
                self.ctl.active.fetch_or(1 << j, Ordering::SeqCst);
                crash::point("bakery.join", 3);
                return Some((j, generation));
            }
        }
        None
    }

    /// Gives slot `j` back (its owner is not locking).
    fn leave(&self, j: usize, token: u64) {
        self.word(j, CHOOSING).store(0, Ordering::Relaxed);
        self.word(j, TICKET).store(0, Ordering::Release);
        crash::point("bakery.leave", 1);
        self.ctl.active.fetch_and(!(1 << j), Ordering::Release);
        crash::point("bakery.leave", 2);
        // SYNC: Release pairs with the next claimer's Acquire CAS (see `claim`).
        let _ =
            self.word(j, OWNER)
                .compare_exchange(token, 0, Ordering::Release, Ordering::Relaxed);
        crash::point("bakery.leave", 3);
        self.ctl.wake.notify();
    }

    /// Clears slot `j`, whose owner `dead` has exited; `me` is the reclaimer's
    /// process token. Returns `false` if another reclaimer is on the slot (the slot
    /// may still be `dead`'s), `true` once the slot is no longer `dead`'s.
    ///
    /// One reclaim of a slot at a time: the reclaimer word holds the token of the
    /// process reclaiming, and a word set by a live process turns everyone else away,
    /// **this process included**. Handles of one process share its token, so the word
    /// cannot tell this handle from another thread's; letting "our own" token through
    /// let a second thread clear the slot after the first had freed it and a new
    /// participant had claimed it and locked: two holders. The token serves only to
    /// replace a reclaimer that died mid-reclaim.
    #[cold]
    fn reclaim(&self, j: usize, dead: u64, me: u64) -> bool {
        let reclaimer = self.word(j, RECLAIMER);
        let current = reclaimer.load(Ordering::Acquire);
        if current != 0 && !token_dead(current) {
            return false; // a live reclaimer (maybe another thread of ours) is on it
        }
        if reclaimer
            .compare_exchange(current, me, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        crash::point("bakery.reclaim", 1);
        if self.word(j, OWNER).load(Ordering::Acquire) == dead {
            let holder = &self.ctl.holder;
            if holder.slot.load(Ordering::Acquire) == j as u32 + 1 {
                // It died holding the lock. Raise the flag before the ticket clears:
                // whoever gets in next synchronizes with the ticket (or bit) store
                // below and so sees the flag.
                holder.owner_died.store(1, Ordering::Relaxed);
                holder.token.store(0, Ordering::Relaxed);
                holder.slot.store(0, Ordering::Relaxed);
            }
            crash::point("bakery.reclaim", 2);
            self.word(j, CHOOSING).store(0, Ordering::Release);
            // SYNC: Release pairs with a waiter's load of the ticket (+ Acquire fence).
            self.word(j, TICKET).store(0, Ordering::Release);
            crash::point("bakery.reclaim", 3);
            self.ctl.active.fetch_and(!(1 << j), Ordering::AcqRel);
            crash::point("bakery.reclaim", 4);
            // SYNC: Release pairs with the next claimer's Acquire CAS.
            let _ =
                self.word(j, OWNER)
                    .compare_exchange(dead, 0, Ordering::Release, Ordering::Relaxed);
            crash::point("bakery.reclaim", 5);
        }
        reclaimer.store(0, Ordering::Release);
        crash::point("bakery.reclaim", 6);
        self.ctl.wake.wake_all();
        true
    }
}

/// One participant of a Bakery lock: a claimed slot, released on drop.
///
/// Across processes, each process opens the lock by name
/// (`BakeryLock::create`/`open`, see [`crate::segment`]); within a process, each
/// thread that locks needs its own participant ([`join`](Self::join)). Locking takes
/// `&mut self`, so one participant cannot lock twice.
///
/// # Examples
///
/// ```
/// use shmlink::lock::LockError;
/// use shmlink::lock::BakeryLock;
///
/// let mut lock = BakeryLock::new(8)?;
/// let mut other = lock.join()?; // e.g. for another thread
/// let t = std::thread::spawn(move || {
///     let _guard = other.lock().expect("lock");
///     // critical section
/// });
/// {
///     let _guard = lock.lock().map_err(LockError::without_guard)?;
///     // critical section
/// }
/// t.join().unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BakeryLock<R: Region<Shared = BakeryControl> = HeapRegion<BakeryControl>> {
    region: Arc<R>,
    area: RawArea,
    n: usize,
    slot: usize,
    token: u64,
    generation: u64,
    mode: WaitMode,
    /// Set by a [`BakeryCloser`]: shared by the participants joined from this one.
    closed: Arc<AtomicBool>,
}

/// Closes a Bakery lock in this process, from any thread: every `lock` of its
/// participants (the handle it came from and those joined from it) that waits, or
/// would wait, ends with [`LockError::Closed`]. Other processes are not affected; a
/// holder keeps its guard until it drops it.
///
/// # Examples
///
/// ```
/// use shmlink::lock::{BakeryLock, LockError};
///
/// let mut a = BakeryLock::new(2)?;
/// let mut b = a.join()?;
/// let closer = b.closer();
/// let held = a.lock().map_err(LockError::without_guard)?;
/// let waiter = std::thread::spawn(move || b.lock().map(drop).map_err(LockError::without_guard));
/// closer.close();
/// assert!(matches!(waiter.join().unwrap(), Err(LockError::Closed)));
/// # drop(held);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BakeryCloser<R: Region<Shared = BakeryControl> = HeapRegion<BakeryControl>> {
    region: Arc<R>,
    closed: Arc<AtomicBool>,
}

impl<R: Region<Shared = BakeryControl>> Clone for BakeryCloser<R> {
    fn clone(&self) -> Self {
        Self {
            region: self.region.clone(),
            closed: self.closed.clone(),
        }
    }
}

impl<R: Region<Shared = BakeryControl>> std::fmt::Debug for BakeryCloser<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BakeryCloser")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<R: Region<Shared = BakeryControl>> BakeryCloser<R> {
    /// Closes the lock in this process and wakes its waiters here (see the type).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::{BakeryLock, LockError};
    ///
    /// let mut lock = BakeryLock::new(1)?;
    /// lock.closer().close();
    /// assert!(lock.closer().is_closed());
    /// assert!(lock.try_lock().is_ok()); // a call that need not wait still succeeds
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) {
        // SYNC: SeqCst store, then `notify`'s SeqCst fence: a sleeper that announced
        // itself before our fence is woken; one after it sees the flag in `gone`.
        self.closed.store(true, Ordering::SeqCst);
        self.region.shared().wake.notify();
    }

    /// Whether the lock was closed in this process.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::BakeryLock;
    ///
    /// assert!(!BakeryLock::new(1)?.closer().is_closed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

impl BakeryLock<HeapRegion<BakeryControl>> {
    /// A lock on the heap for up to `participants` participants; this handle is the
    /// first.
    ///
    /// # Errors
    ///
    /// [`BakeryConfigError::InvalidParticipants`] for 0 or more than 64.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::BakeryLock;
    ///
    /// let lock = BakeryLock::new(3)?;
    /// assert_eq!((lock.capacity(), lock.slot()), (3, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(participants: usize) -> Result<Self, BakeryConfigError> {
        Self::with_mode(participants, WaitMode::Blocking)
    }

    /// [`new`](Self::new) with a choice of how waiters wait: [`WaitMode::Blocking`]
    /// (spin, yield, then sleep on a futex; the default) or [`WaitMode::Spin`] (waiters
    /// never sleep, so unlocking skips the sleeper check and its fence: for
    /// participants that each have a core of their own).
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::BakeryLock;
    /// use shmlink::sync::WaitMode;
    ///
    /// let lock = BakeryLock::with_mode(2, WaitMode::Spin)?;
    /// assert_eq!(lock.mode(), WaitMode::Spin);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_mode(participants: usize, mode: WaitMode) -> Result<Self, BakeryConfigError> {
        check_participants(participants as u64)?;
        let region = HeapRegion::<BakeryControl>::new(BakeryControl::area_len(participants, 0));
        region.shared().init(participants, 0, 0, mode)?;
        Self::from_region(Arc::new(region), 0, 0)
    }
}

impl<R: Region<Shared = BakeryControl>> BakeryLock<R> {
    /// Validates the region's configuration (participants, protected data of
    /// `data_size` bytes with fingerprint `data_fingerprint`) and claims a slot.
    ///
    /// # Errors
    ///
    /// [`BakeryConfigError::Corrupt`] if the configuration does not match or does not
    /// fit the region; [`BakeryConfigError::Full`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::{BakeryConfigError, BakeryControl, BakeryLock};
    /// use shmlink::region::HeapRegion;
    /// use std::sync::Arc;
    ///
    /// let blank = Arc::new(HeapRegion::<BakeryControl>::new(128)); // never initialised
    /// let err = BakeryLock::from_region(blank, 0, 0).err();
    /// assert!(matches!(err, Some(BakeryConfigError::Corrupt { what: "participants", .. })));
    /// ```
    pub fn from_region(
        region: Arc<R>,
        data_size: usize,
        data_fingerprint: u64,
    ) -> Result<Self, BakeryConfigError> {
        let ctl = region.shared();
        let corrupt = |what, found| BakeryConfigError::Corrupt { what, found };
        let n = u64::from(ctl.config.participants.load(Ordering::Relaxed));
        if n == 0 || n > MAX_PARTICIPANTS as u64 {
            return Err(corrupt("participants", n));
        }
        let n = n as usize;
        let size = ctl.config.data_size.load(Ordering::Relaxed);
        if size as usize != data_size {
            return Err(corrupt("data size", u64::from(size)));
        }
        let fp = ctl.config.data_fingerprint.load(Ordering::Relaxed);
        if fp != data_fingerprint {
            return Err(corrupt("data fingerprint", fp));
        }
        let area = region.area();
        if area.len() < BakeryControl::area_len(n, data_size) {
            return Err(corrupt("area length", area.len() as u64));
        }
        let code = ctl.config.mode.load(Ordering::Relaxed);
        let mode = WaitMode::from_code(code).ok_or(corrupt("wait mode", u64::from(code)))?;
        let token = current_token();
        let table = Table { ctl, area, n };
        let (slot, generation) = table.claim(token)?;
        Ok(Self {
            region,
            area,
            n,
            slot,
            token,
            generation,
            mode,
            closed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// A handle that closes this lock in this process from another thread (see
    /// [`BakeryCloser`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::BakeryLock;
    ///
    /// let lock = BakeryLock::new(1)?;
    /// let closer = lock.closer();
    /// closer.close();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn closer(&self) -> BakeryCloser<R> {
        BakeryCloser {
            region: self.region.clone(),
            closed: self.closed.clone(),
        }
    }

    fn table(&self) -> Table<'_> {
        Table {
            ctl: self.region.shared(),
            area: self.area,
            n: self.n,
        }
    }

    /// Another participant of the same lock (a new slot), e.g. for another thread.
    ///
    /// # Errors
    ///
    /// [`BakeryConfigError::Full`] if every slot is taken by a live process.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::BakeryLock;
    ///
    /// let lock = BakeryLock::new(2)?;
    /// let other = lock.join()?;
    /// assert_eq!(other.slot(), 1);
    /// assert!(lock.join().is_err()); // both slots taken
    /// drop(other);
    /// assert!(lock.join().is_ok()); // its slot was given back
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join(&self) -> Result<Self, BakeryConfigError> {
        let (slot, generation) = self.table().claim(self.token)?;
        Ok(Self {
            region: self.region.clone(),
            area: self.area,
            n: self.n,
            slot,
            token: self.token,
            generation,
            mode: self.mode,
            closed: self.closed.clone(),
        })
    }

    /// Locks, waiting as long as the holder is alive.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] with the guard if the previous holder died holding the
    /// lock; [`LockError::SlotLost`], [`LockError::Corrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::LockError;
    /// use shmlink::lock::BakeryLock;
    ///
    /// let mut lock = BakeryLock::new(2)?;
    /// let guard = lock.lock().map_err(LockError::without_guard)?;
    /// assert!(guard.participant().holding);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lock(&mut self) -> Result<BakeryGuard<'_, R>, LockError<BakeryGuard<'_, R>>> {
        self.acquire(Wait::Forever)
    }

    /// Locks if no other participant holds the lock or is ahead in line.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`], or as [`lock`](Self::lock).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::{BakeryLock, LockError};
    ///
    /// let mut a = BakeryLock::new(2)?;
    /// let mut b = a.join()?;
    /// let _held = a.try_lock().map_err(LockError::without_guard)?;
    /// assert!(matches!(b.try_lock(), Err(LockError::WouldBlock)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_lock(&mut self) -> Result<BakeryGuard<'_, R>, LockError<BakeryGuard<'_, R>>> {
        self.acquire(Wait::No)
    }

    /// Locks, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`], or as [`lock`](Self::lock).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::{BakeryLock, LockError};
    /// use std::time::Duration;
    ///
    /// let mut a = BakeryLock::new(2)?;
    /// let mut b = a.join()?;
    /// let _held = a.lock().map_err(LockError::without_guard)?;
    /// let waited = b.lock_timeout(Duration::from_millis(5));
    /// assert!(matches!(waited, Err(LockError::Timeout)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lock_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<BakeryGuard<'_, R>, LockError<BakeryGuard<'_, R>>> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.acquire(Wait::Until(deadline)),
            None => self.acquire(Wait::Forever),
        }
    }

    fn acquire(&mut self, wait: Wait) -> Result<BakeryGuard<'_, R>, LockError<BakeryGuard<'_, R>>> {
        match self.acquire_raw(wait) {
            Ok(Acquired::Clean) => Ok(BakeryGuard { lock: self }),
            Ok(Acquired::OwnerDied) => Err(LockError::OwnerDied(BakeryGuard { lock: self })),
            Err(e) => Err(e.map(|never: Never| match never {})),
        }
    }

    fn acquire_raw(&mut self, wait: Wait) -> Result<Acquired, LockError<Never>> {
        let t = self.table();
        let me = self.slot;
        if t.word(me, OWNER).load(Ordering::Relaxed) != self.token {
            return Err(LockError::SlotLost);
        }
        let choosing = t.word(me, CHOOSING);
        let ticket_word = t.word(me, TICKET);

        // Doorway.
        choosing.store(1, Ordering::Relaxed);
        crash::point("bakery.lock", 1);
        // SYNC: F1, SeqCst: orders `choosing = 1` before the ticket reads below against
        // another doorway's ticket store before its choosing reads (store-buffering).
        fence(Ordering::SeqCst);
        let mut max = 0;
        let mut active = t.active() & !(1 << me);
        while active != 0 {
            let j = active.trailing_zeros() as usize;
            active &= active - 1;
            max = max.max(t.word(j, TICKET).load(Ordering::Relaxed));
        }
        if max >= TICKET_LIMIT {
            choosing.store(0, Ordering::Release);
            return Err(LockError::Corrupt {
                what: "ticket",
                found: max,
            });
        }
        let ticket = max + 1;
        ticket_word.store(ticket, Ordering::Relaxed);
        crash::point("bakery.lock", 2);
        // SYNC: Release pairs with a waiter's Acquire fence after it sees `choosing == 0`:
        // our ticket is visible to it.
        choosing.store(0, Ordering::Release);
        crash::point("bakery.lock", 3);
        // SYNC: F2, SeqCst: orders our ticket store before the reads of the other
        // slots' `choosing`/tickets against their doorways (store-buffering); it also
        // serves as the notify fence for sleepers waiting on our `choosing`.
        fence(Ordering::SeqCst);
        if self.mode == WaitMode::Blocking {
            t.ctl.wake.notify_fenced();
        }

        // Wait for everyone ahead of us.
        let mut active = t.active() & !(1 << me);
        while active != 0 {
            let j = active.trailing_zeros() as usize;
            active &= active - 1;
            if let Err(e) = self.wait_for(&t, j, ticket, wait) {
                ticket_word.store(0, Ordering::Release);
                t.ctl.wake.notify();
                return Err(e);
            }
        }
        // SYNC: Acquire pairs with the Release ticket store of the previous holder's
        // unlock (read Relaxed in `wait_for`): its critical section happens before ours.
        fence(Ordering::Acquire);
        // Ahead of everyone: ours, but not recorded (a death here leaves nothing to
        // repair, so nobody is told).
        crash::point("bakery.lock", 4);

        let holder = &t.ctl.holder;
        holder.slot.store(me as u32 + 1, Ordering::Relaxed);
        holder.token.store(self.token, Ordering::Relaxed);
        crash::point("bakery.lock", 5);
        // Only the holder writes the count: a load and a store, not a locked RMW
        // (which would cost as much as a third fence).
        let n = holder.acquisitions.load(Ordering::Relaxed);
        holder
            .acquisitions
            .store(n.wrapping_add(1), Ordering::Relaxed);
        let died = holder.owner_died.load(Ordering::Relaxed) != 0
            && holder.owner_died.swap(0, Ordering::Relaxed) != 0;
        // Holding, the flag consumed (a death from here on is reported again: the
        // holder record names us).
        crash::point("bakery.lock", 6);
        Ok(if died {
            Acquired::OwnerDied
        } else {
            Acquired::Clean
        })
    }

    /// Waits until slot `j` is out of the doorway and not ahead of `ticket`.
    fn wait_for(
        &self,
        t: &Table<'_>,
        j: usize,
        ticket: u64,
        wait: Wait,
    ) -> Result<(), LockError<Never>> {
        let me = self.slot;
        let (choosing, their) = (t.word(j, CHOOSING), t.word(j, TICKET));
        let corrupt = std::cell::Cell::new(None);
        let mut ahead = || -> Option<()> {
            if choosing.load(Ordering::Relaxed) != 0 {
                return None;
            }
            // SYNC: Acquire pairs with the Release `choosing = 0` of j's doorway: its
            // ticket is visible.
            fence(Ordering::Acquire);
            let tj = their.load(Ordering::Relaxed);
            if tj >= TICKET_LIMIT {
                corrupt.set(Some(tj));
                return Some(());
            }
            (tj == 0 || (tj, j) > (ticket, me)).then_some(())
        };
        if ahead().is_some() {
            return match corrupt.get() {
                Some(found) => Err(LockError::Corrupt {
                    what: "ticket",
                    found,
                }),
                None => Ok(()),
            };
        }
        let deadline = match wait {
            Wait::No => return Err(LockError::WouldBlock),
            Wait::Forever => None,
            Wait::Until(d) => Some(d),
        };
        if self.closed.load(Ordering::SeqCst) {
            return Err(LockError::Closed);
        }
        let token = self.token;
        let owner = t.word(j, OWNER);
        let closed = &*self.closed;
        let gone = |thorough: bool| {
            // Closed ends the wait (the only "gone" reported: a dead slot is cleared
            // and waited past).
            if closed.load(Ordering::SeqCst) {
                return true;
            }
            // Under loom a liveness check is a lookup and the model has no clock: check
            // at every poll, so a death is noticed within the model.
            if thorough || cfg!(shmlink_loom) {
                let o = owner.load(Ordering::Relaxed);
                if o != 0 && token_dead(o) {
                    t.reclaim(j, o, token);
                }
            }
            false
        };
        let result = t.ctl.wake.wait_until(self.mode, deadline, &mut ahead, gone);
        match (result, corrupt.get()) {
            (_, Some(found)) => Err(LockError::Corrupt {
                what: "ticket",
                found,
            }),
            (Ok(()), None) => Ok(()),
            (Err(WaitError::Timeout), None) => Err(LockError::Timeout),
            // `gone` reports only a close: a dead slot is cleared and waited past.
            (Err(WaitError::Disconnected), None) => Err(LockError::Closed),
        }
    }

    fn unlock(&mut self) {
        let t = self.table();
        let holder = &t.ctl.holder;
        holder.slot.store(0, Ordering::Relaxed);
        holder.token.store(0, Ordering::Relaxed);
        crash::point("bakery.unlock", 1);
        // SYNC: Release pairs with the Acquire fence at the end of the next locker's
        // wait: our critical section happens before its.
        t.word(self.slot, TICKET).store(0, Ordering::Release);
        crash::point("bakery.unlock", 2);
        if self.mode == WaitMode::Blocking {
            t.ctl.wake.notify();
        }
    }

    /// How this lock's waiters wait (fixed at creation).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::BakeryLock;
    /// use shmlink::sync::WaitMode;
    ///
    /// assert_eq!(BakeryLock::new(1)?.mode(), WaitMode::Blocking);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn mode(&self) -> WaitMode {
        self.mode
    }

    /// This participant's slot index.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::BakeryLock;
    ///
    /// assert_eq!(BakeryLock::new(1)?.slot(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// How many times this participant's slot has been claimed, this claim included.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::BakeryLock;
    ///
    /// let lock = BakeryLock::new(2)?;
    /// drop(lock.join()?);
    /// assert_eq!(lock.join()?.generation(), 2); // slot 1, claimed a second time
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The participant count fixed at creation.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::BakeryLock;
    ///
    /// assert_eq!(BakeryLock::new(5)?.capacity(), 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.n
    }

    /// The claimed slots, with their owners' pids and whether they hold the lock.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::BakeryLock;
    ///
    /// let lock = BakeryLock::new(4)?;
    /// let _other = lock.join()?;
    /// assert_eq!(lock.participants().len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn participants(&self) -> Vec<Participant> {
        participants(self.region.shared(), self.area)
    }

    /// The pid of the process holding the lock, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::LockError;
    /// use shmlink::lock::BakeryLock;
    ///
    /// let mut lock = BakeryLock::new(1)?;
    /// assert_eq!(lock.holder(), None);
    /// let guard = lock.lock().map_err(LockError::without_guard)?;
    /// assert_eq!(guard.holder(), Some(std::process::id()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn holder(&self) -> Option<u32> {
        holder_pid(self.region.shared())
    }

    /// The region the lock lives in.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::BakeryLock;
    /// use shmlink::region::Region;
    ///
    /// let lock = BakeryLock::new(2)?;
    /// assert_eq!(lock.region().area().len(), 2 * 128);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn region(&self) -> &R {
        &self.region
    }

    /// A new reference to the region, e.g. to open another participant on it with
    /// [`from_region`](Self::from_region) (as another process would).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::BakeryLock;
    ///
    /// let lock = BakeryLock::new(2)?;
    /// let second = BakeryLock::from_region(lock.region_arc(), 0, 0)?;
    /// assert_eq!(second.slot(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn region_arc(&self) -> Arc<R> {
        self.region.clone()
    }
}

/// The claimed slots of the lock whose control block and area these are (any bit
/// pattern is handled; impossible participant counts give an empty list).
pub(crate) fn participants(ctl: &BakeryControl, area: RawArea) -> Vec<Participant> {
    let n = ctl.config.participants.load(Ordering::Relaxed) as usize;
    if n == 0 || n > MAX_PARTICIPANTS || area.len() < n * SLOT_SIZE {
        return Vec::new();
    }
    let t = Table { ctl, area, n };
    let holding = ctl.holder.slot.load(Ordering::Relaxed) as usize;
    (0..n)
        .filter_map(|j| {
            let owner = t.word(j, OWNER).load(Ordering::Relaxed);
            (owner != 0).then(|| Participant {
                slot: j,
                pid: token_pid(owner),
                generation: t.word(j, GENERATION).load(Ordering::Relaxed),
                ticket: t.word(j, TICKET).load(Ordering::Relaxed),
                holding: holding == j + 1,
                liveness: crate::process::liveness(owner),
            })
        })
        .collect()
}

/// The pid of the holder recorded in `ctl`, if any.
pub(crate) fn holder_pid(ctl: &BakeryControl) -> Option<u32> {
    let token = ctl.holder.token.load(Ordering::Relaxed);
    (ctl.holder.slot.load(Ordering::Relaxed) != 0 && token != 0).then(|| token_pid(token))
}

impl<R: Region<Shared = BakeryControl>> Drop for BakeryLock<R> {
    fn drop(&mut self) {
        if crash::dying() {
            return; // a killed process gives nothing back: its slot is reclaimed
        }
        self.table().leave(self.slot, self.token);
    }
}

impl<R: Region<Shared = BakeryControl>> std::fmt::Debug for BakeryLock<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BakeryLock")
            .field("slot", &self.slot)
            .field("participants", &self.n)
            .field("holder", &self.holder())
            .finish()
    }
}

#[derive(Clone, Copy)]
enum Wait {
    No,
    Forever,
    Until(Instant),
}

/// Uninhabited: internal lock errors carry no guard.
enum Never {}

/// Holds a [`BakeryLock`]; unlocks on drop.
///
/// # Examples
///
/// ```
/// use shmlink::lock::LockError;
/// use shmlink::lock::BakeryLock;
///
/// let mut lock = BakeryLock::new(1)?;
/// let guard = lock.lock().map_err(LockError::without_guard)?;
/// drop(guard); // unlocked
/// assert!(lock.try_lock().is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BakeryGuard<'a, R: Region<Shared = BakeryControl> = HeapRegion<BakeryControl>> {
    lock: &'a mut BakeryLock<R>,
}

impl<R: Region<Shared = BakeryControl>> BakeryGuard<'_, R> {
    /// This participant, as [`BakeryLock::participants`] lists it.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::LockError;
    /// use shmlink::lock::BakeryLock;
    ///
    /// let mut lock = BakeryLock::new(1)?;
    /// let guard = lock.lock().map_err(LockError::without_guard)?;
    /// assert!(guard.participant().ticket > 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn participant(&self) -> Participant {
        let t = self.lock.table();
        let j = self.lock.slot;
        Participant {
            slot: j,
            pid: token_pid(self.lock.token),
            generation: self.lock.generation,
            ticket: t.word(j, TICKET).load(Ordering::Relaxed),
            holding: true,
            liveness: crate::process::Liveness::Alive, // this process
        }
    }

    /// The holder's pid (this process).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::LockError;
    /// use shmlink::lock::BakeryLock;
    ///
    /// let mut lock = BakeryLock::new(1)?;
    /// assert_eq!(lock.lock().map_err(LockError::without_guard)?.holder(), Some(std::process::id()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn holder(&self) -> Option<u32> {
        self.lock.holder()
    }

    /// This acquisition's number: one more than the previous holder's, so it strictly
    /// increases across holders and serves as a fencing token (a holder that died
    /// before it was counted got no guard, so never used its number).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::{BakeryLock, LockError};
    ///
    /// let mut lock = BakeryLock::new(1)?;
    /// let first = lock.lock().map_err(LockError::without_guard)?.acquisition();
    /// let second = lock.lock().map_err(LockError::without_guard)?.acquisition();
    /// assert!(second > first);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acquisition(&self) -> u64 {
        // Only the holder writes the count, and we hold the lock.
        self.lock
            .table()
            .ctl
            .holder
            .acquisitions
            .load(Ordering::Relaxed)
    }

    /// Whether the holder record still names this handle: `false` if its slot was
    /// taken from it (its process was judged dead, or the shared memory was
    /// overwritten), when the lock no longer protects anything for this caller.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::{BakeryLock, LockError};
    ///
    /// let mut lock = BakeryLock::new(1)?;
    /// assert!(lock.lock().map_err(LockError::without_guard)?.still_held());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn still_held(&self) -> bool {
        let t = self.lock.table();
        let holder = &t.ctl.holder;
        holder.slot.load(Ordering::Relaxed) == self.lock.slot as u32 + 1
            && holder.token.load(Ordering::Relaxed) == self.lock.token
            && t.word(self.lock.slot, OWNER).load(Ordering::Relaxed) == self.lock.token
    }
}

impl<R: Region<Shared = BakeryControl>> Drop for BakeryGuard<'_, R> {
    fn drop(&mut self) {
        if crash::dying() {
            return; // a killed holder unlocks nothing: its slot is reclaimed
        }
        self.lock.unlock();
    }
}

impl<R: Region<Shared = BakeryControl>> std::fmt::Debug for BakeryGuard<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BakeryGuard")
            .field("slot", &self.lock.slot)
            .finish()
    }
}

#[cfg(not(shmlink_loom))]
impl BakeryLock<ShmRegion<BakeryControl>> {
    fn configure(builder: SegmentBuilder) -> SegmentBuilder {
        builder.typed_defaults(Kind::BakeryLock, fingerprint::<BakeryControl>())
    }

    /// Creates a named Bakery lock for up to `participants` processes and claims the
    /// first slot for this process.
    ///
    /// # Errors
    ///
    /// [`ObjectError::Config`] (`InvalidParticipants`), [`ObjectError::Create`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::LockError;
    /// use shmlink::segment::Segment;
    /// use shmlink::lock::BakeryLock;
    /// # let name = format!("doc-bakery-create-{}", std::process::id());
    ///
    /// let mut lock = BakeryLock::create(Segment::builder(&name).unlink_on_drop(true), 16)?;
    /// let other = BakeryLock::open(Segment::builder(&name))?; // usually another process
    /// let guard = lock.lock().map_err(LockError::without_guard)?;
    /// assert_eq!(other.holder(), Some(std::process::id()));
    /// # drop(guard);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(
        builder: SegmentBuilder,
        participants: usize,
    ) -> Result<Self, ObjectError<BakeryConfigError>> {
        Self::create_with_mode(builder, participants, WaitMode::Blocking)
    }

    /// [`create`](Self::create) with a choice of wait mode (see
    /// [`BakeryLock::with_mode`]).
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Segment;
    /// use shmlink::lock::BakeryLock;
    /// use shmlink::sync::WaitMode;
    /// # let name = format!("doc-bakery-create-mode-{}", std::process::id());
    ///
    /// let builder = Segment::builder(&name).unlink_on_drop(true);
    /// let lock = BakeryLock::create_with_mode(builder, 4, WaitMode::Spin)?;
    /// assert_eq!(BakeryLock::open(Segment::builder(&name))?.mode(), WaitMode::Spin);
    /// # drop(lock);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_with_mode(
        builder: SegmentBuilder,
        participants: usize,
        mode: WaitMode,
    ) -> Result<Self, ObjectError<BakeryConfigError>> {
        BakeryLock::new(participants).map_err(ObjectError::Config)?; // validate first
        let region = ShmRegion::<BakeryControl>::create_with(
            Self::configure(builder.clone()),
            BakeryControl::area_len(participants, 0),
            |ctl, _| {
                let _ = ctl.init(participants, 0, 0, mode);
            },
        )
        .map_err(|e| ObjectError::create(&builder, e))?;
        Self::from_region(Arc::new(region), 0, 0).map_err(ObjectError::Config)
    }

    /// Opens a named Bakery lock and claims a slot for this process.
    ///
    /// # Errors
    ///
    /// [`ObjectError::Open`]; [`ObjectError::Config`] with
    /// [`BakeryConfigError::Full`] if every slot is held by a live process.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::ObjectError;
    /// use shmlink::segment::Segment;
    /// use shmlink::lock::{BakeryConfigError, BakeryLock};
    /// # let name = format!("doc-bakery-open-{}", std::process::id());
    /// let _first = BakeryLock::create(Segment::builder(&name).unlink_on_drop(true), 1)?;
    ///
    /// let full = BakeryLock::open(Segment::builder(&name)).unwrap_err();
    /// assert!(matches!(full, ObjectError::Config(BakeryConfigError::Full { participants: 1 })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(builder: SegmentBuilder) -> Result<Self, ObjectError<BakeryConfigError>> {
        let region = ShmRegion::<BakeryControl>::open(Self::configure(builder.clone()))
            .map_err(|e| ObjectError::open(&builder, e))?;
        Self::from_region(Arc::new(region), 0, 0).map_err(ObjectError::Config)
    }

    /// Opens the named lock, or creates it with `participants` slots (blocking waits)
    /// if the name holds none. One left stale by a crash is resumed when it has
    /// `participants` slots and validates: the slots of dead processes are reclaimed
    /// as usual, and if one of them held the lock, the next holder is told
    /// ([`LockError::OwnerDied`]). Anything else stale is replaced.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create) and [`open`](Self::open).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::BakeryLock;
    /// use shmlink::segment::{Disposition, Segment};
    /// # let name = format!("doc-bakery-open-or-create-{}", std::process::id());
    ///
    /// let builder = Segment::builder(&name).unlink_on_drop(true);
    /// let (mut a, how) = BakeryLock::open_or_create(builder.clone(), 4)?;
    /// assert_eq!(how, Disposition::Created);
    /// let (_b, how) = BakeryLock::open_or_create(builder, 4)?;
    /// assert_eq!(how, Disposition::Opened);
    /// a.lock().map(drop).map_err(|e| e.without_guard())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_or_create(
        builder: SegmentBuilder,
        participants: usize,
    ) -> Result<(Self, crate::segment::Disposition), ObjectError<BakeryConfigError>> {
        BakeryLock::new(participants).map_err(ObjectError::Config)?; // validate first
        crate::lock::open_or_create_in(
            &Self::configure(builder),
            BakeryControl::area_len(participants, 0),
            |ctl: &BakeryControl, _| {
                let _ = ctl.init(participants, 0, 0, WaitMode::Blocking);
            },
            |region| Self::from_region(region, 0, 0),
            |l| l.region.segment(),
        )
    }
}

/// Who holds a named Bakery lock or mutex and who takes part (the `shmlink ls` view).
///
/// # Examples
///
/// ```
/// use shmlink::segment::Segment;
/// use shmlink::lock::bakery_status;
/// use shmlink::lock::{BakeryLock, LockError};
/// # let name = format!("doc-bakery-status-{}", std::process::id());
///
/// let mut lock = BakeryLock::create(Segment::builder(&name).unlink_on_drop(true), 4)?;
/// let _guard = lock.lock().map_err(LockError::without_guard)?;
/// let status = bakery_status(&name)?;
/// assert_eq!(status.holder, Some(std::process::id()));
/// assert_eq!(status.participants.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(not(shmlink_loom))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BakeryStatus {
    /// The pid holding the lock, if any.
    pub holder: Option<u32>,
    /// The claimed slots.
    pub participants: Vec<Participant>,
}

/// Reads the holder and participants of the Bakery lock or mutex `name`, without
/// claiming a slot (the segment is attached for the duration of the call; a stale one
/// is read as the crash left it, held exclusively meanwhile and never changed).
///
/// # Errors
///
/// As [`inspect`](crate::segment::inspect) and [`SegmentBuilder::open`]; `WrongKind` if the
/// segment is not a Bakery lock or mutex.
///
/// # Examples
///
/// ```
/// use shmlink::segment::{OpenError, Segment};
/// use shmlink::lock::bakery_status;
/// use shmlink::lock::Semaphore;
/// # let name = format!("doc-bakery-status-kind-{}", std::process::id());
///
/// let _sem = Semaphore::create(Segment::builder(&name).unlink_on_drop(true), 1, 1)?;
/// assert!(matches!(bakery_status(&name), Err(OpenError::WrongKind { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(not(shmlink_loom))]
pub fn bakery_status(name: &str) -> Result<BakeryStatus, OpenError> {
    let info = crate::segment::inspect(name)?;
    let header = info.header.ok_or(OpenError::NotInitialized {
        waited: std::time::Duration::ZERO,
    })?;
    let kind = match Kind::from_code(header.kind) {
        Some(k @ (Kind::BakeryLock | Kind::BakeryMutex)) => k,
        _ => {
            return Err(OpenError::WrongKind {
                expected: Kind::BakeryLock,
                found: header.kind,
            });
        }
    };
    let builder = crate::segment::Segment::builder(name)
        .kind(kind)
        .fingerprint(header.fingerprint);
    let region = ShmRegion::<BakeryControl>::open_inspecting(builder)?;
    Ok(BakeryStatus {
        holder: super::bakery::holder_pid(region.shared()),
        participants: super::bakery::participants(region.shared(), region.area()),
    })
}

#[cfg(all(test, not(shmlink_loom)))]
mod tests {
    use super::*;
    use crate::process::{start_ticks_of, token_of};

    #[test]
    fn threads_count_exactly() {
        let n: u64 = if cfg!(miri) { 20 } else { 3_000 };
        let mut m = BakeryMutex::new(4, 0u64).unwrap();
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let mut p = m.join().unwrap();
                std::thread::spawn(move || {
                    for _ in 0..n {
                        p.lock().unwrap().update(|v| *v += 1);
                    }
                })
            })
            .collect();
        for _ in 0..n {
            m.lock().unwrap().update(|v| *v += 1);
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.lock().unwrap().get(), 4 * n);
    }

    #[test]
    fn garbage_tickets_are_corruption_not_panics() {
        let mut a = BakeryLock::new(2).unwrap();
        let b = a.join().unwrap();
        b.table()
            .word(b.slot, TICKET)
            .store(u64::MAX, Ordering::Relaxed);
        assert!(matches!(
            a.lock(),
            Err(LockError::Corrupt { what: "ticket", .. })
        ));
        // The failed doorway left nothing behind.
        assert_eq!(a.table().word(a.slot, TICKET).load(Ordering::Relaxed), 0);
        b.table().word(b.slot, TICKET).store(0, Ordering::Relaxed);
        assert!(a.try_lock().is_ok());
    }

    #[test]
    fn a_stolen_slot_is_reported() {
        let mut a = BakeryLock::new(1).unwrap();
        a.table().word(0, OWNER).store(12345, Ordering::Relaxed);
        assert!(matches!(a.lock(), Err(LockError::SlotLost)));
    }

    /// The table of a heap lock with `n` slots, for a thread that holds no handle.
    fn table_of(region: &HeapRegion<BakeryControl>, n: usize) -> Table<'_> {
        Table {
            ctl: region.shared(),
            area: region.area(),
            n,
        }
    }

    /// The rest of a reclaim of `slot` by someone who claimed its reclaimer word and
    /// saw it owned by `dead`: clear the slot, free it, release the word.
    fn finish_reclaim(t: &Table<'_>, slot: usize, dead: u64) {
        t.word(slot, CHOOSING).store(0, Ordering::Relaxed);
        t.word(slot, TICKET).store(0, Ordering::Release);
        t.ctl.active.fetch_and(!(1 << slot), Ordering::AcqRel);
        let _ = t
            .word(slot, OWNER)
            .compare_exchange(dead, 0, Ordering::Release, Ordering::Relaxed);
        t.word(slot, RECLAIMER).store(0, Ordering::Release);
    }

    /// Defect 2 (issue 11): handles of one process share its token, and the reclaimer
    /// check let that token through. A join passed the reclaimer word while another
    /// thread of the process was mid-reclaim, freed and claimed the slot and locked;
    /// then the first reclaim went on and cleared the new holder's ticket and active
    /// bit, and a third participant got the lock too. Now the join waits for the
    /// other thread's reclaim.
    #[test]
    #[cfg_attr(miri, ignore = "reads /proc")]
    fn a_join_waits_for_another_threads_reclaim() {
        let mut a = BakeryLock::new(2).unwrap();
        let slot = {
            let b = a.join().unwrap();
            let slot = b.slot;
            std::mem::forget(b);
            slot
        };
        let dead = current_token() ^ (1 << 40); // our pid, another start time
        let t = a.table();
        t.word(slot, OWNER).store(dead, Ordering::Relaxed);
        // Another thread of ours has claimed the reclaimer word and seen `dead`.
        t.word(slot, RECLAIMER)
            .store(current_token(), Ordering::Relaxed);
        let region = a.region_arc();
        let locked = AtomicU32::new(0);
        std::thread::scope(|s| {
            let first = s.spawn(|| {
                // That reclaim goes on once the join below holds the lock (or after
                // 200 ms, if the join waits for it).
                let until = Instant::now() + Duration::from_millis(200);
                while locked.load(Ordering::Acquire) == 0 && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(1));
                }
                finish_reclaim(&table_of(&region, 2), slot, dead);
            });
            let mut c = a.join().expect("join");
            assert_eq!(c.slot, slot);
            let guard = c.lock().map_err(LockError::without_guard).expect("lock");
            locked.store(1, Ordering::Release);
            first.join().unwrap();
            assert!(
                matches!(a.try_lock(), Err(LockError::WouldBlock)),
                "two holders: the first reclaim cleared the new holder's slot"
            );
            drop(guard);
        });
    }

    /// Defect (issue 11): a join that found no free slot while another process was
    /// reclaiming a dead one reported `Full`; it waits for the slot now.
    #[test]
    #[cfg_attr(miri, ignore = "reads /proc")]
    fn a_join_waits_for_another_processs_reclaim() {
        let a = BakeryLock::new(2).unwrap();
        let slot = {
            let b = a.join().unwrap();
            let slot = b.slot;
            std::mem::forget(b);
            slot
        };
        let dead = current_token() ^ (1 << 40);
        let t = a.table();
        t.word(slot, OWNER).store(dead, Ordering::Relaxed);
        // A live process (our parent) is reclaiming the slot.
        let ppid = std::os::unix::process::parent_id();
        let parent = token_of(ppid, start_ticks_of(ppid).expect("parent's start time"));
        t.word(slot, RECLAIMER).store(parent, Ordering::Relaxed);
        let region = a.region_arc();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                finish_reclaim(&table_of(&region, 2), slot, dead);
            });
            let c = a.join().expect("the slot being freed is claimed, not Full");
            assert_eq!(c.slot, slot);
        });
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads /proc")]
    fn a_dead_holders_slot_is_reclaimed_and_reported_once() {
        let mut a = BakeryLock::new(2).unwrap();
        let b = a.join().unwrap();
        // Make slot b look like a dead process that holds the lock.
        let dead = current_token() ^ (1 << 40); // our pid, another start time
        let t = b.table();
        t.word(b.slot, OWNER).store(dead, Ordering::Relaxed);
        t.word(b.slot, TICKET).store(1, Ordering::Relaxed);
        t.ctl
            .holder
            .slot
            .store(b.slot as u32 + 1, Ordering::Relaxed);
        t.ctl.holder.token.store(dead, Ordering::Relaxed);
        let started = Instant::now();
        match a.lock_timeout(Duration::from_secs(5)) {
            Err(LockError::OwnerDied(g)) => drop(g),
            other => panic!("expected OwnerDied, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_millis(500));
        assert!(a.lock().is_ok(), "told once only");
        assert_eq!(a.participants().len(), 1, "the dead slot was freed");
        std::mem::forget(b); // its slot is no longer its own
    }
}

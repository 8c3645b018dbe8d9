//! Owned permits: [`Permit`], the holder slots, their ledger transfers and the repair
//! of a dead holder's slot (the protocol is described in the parent module's docs).

use std::time::{Duration, Instant};

use super::{
    AMOUNT_MAX, AcquireError, Attempt, HOLDER_SLOTS, Holder, NONE, RETURNING, Semaphore,
    SemaphoreState, TAKING, ledger, ledger_parts, tag_of, value_of, waiters_of, with_tag,
};
use crate::process::{current_token, token_dead};
use crate::region::Region;
use crate::sync::atomic::Ordering;
use crate::sync::{Backoff, yield_now};

/// An owned permit of a [`Semaphore`], given back when dropped.
///
/// The process holding it is recorded in the semaphore (one holder slot per handle
/// and its clones), so if it dies holding the permit, the permit is returned: by a
/// waiter of another process within a 10 ms sleep slice, or by
/// [`Semaphore::reclaim_dead`].
///
/// # Examples
///
/// ```
/// use shmlink::lock::Semaphore;
///
/// let sem = Semaphore::new(1, 1)?;
/// {
///     let _permit = sem.permit()?;
///     assert_eq!(sem.value(), 0);
/// } // dropped: given back
/// assert_eq!(sem.value(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a permit is given back as soon as it is dropped"]
pub struct Permit<'a, R: Region<Shared = SemaphoreState>> {
    sem: &'a Semaphore<R>,
    slot: usize,
}

impl<R: Region<Shared = SemaphoreState>> std::fmt::Debug for Permit<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit").field("slot", &self.slot).finish()
    }
}

impl<R: Region<Shared = SemaphoreState>> Permit<'_, R> {
    /// Keeps the permit taken without an owner: it is no longer given back on drop
    /// or on the process's death (give it back with [`Semaphore::release`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::Semaphore;
    ///
    /// let sem = Semaphore::new(1, 1)?;
    /// sem.permit()?.forget();
    /// assert_eq!(sem.value(), 0);
    /// sem.release(1)?;
    /// assert_eq!(sem.value(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn forget(self) {
        let this = std::mem::ManuallyDrop::new(self);
        let _turn = this.sem.turn();
        let hd = this.sem.holder(this.slot);
        if hd.token.load(Ordering::Relaxed) == current_token() {
            // One store: the held count goes down, and nothing moves in `word`.
            let (held, _, _) = ledger_parts(hd.ledger.load(Ordering::Relaxed));
            hd.ledger
                .store(ledger(held.saturating_sub(1), NONE, 0), Ordering::Relaxed);
        }
    }

    /// The semaphore the permit belongs to.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::Semaphore;
    ///
    /// let sem = Semaphore::new(1, 1)?;
    /// let permit = sem.permit()?;
    /// assert_eq!(permit.semaphore().value(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn semaphore(&self) -> &Semaphore<R> {
        self.sem
    }
}

impl<R: Region<Shared = SemaphoreState>> Drop for Permit<'_, R> {
    fn drop(&mut self) {
        // A killed process gives nothing back (its repairer will).
        if crate::process::crash::dying() {
            return;
        }
        let _turn = self.sem.turn();
        // A forked child's copy of the handle finds another process's slot: the
        // permit is the parent's to give back.
        if self.sem.holder(self.slot).token.load(Ordering::Relaxed) == current_token() {
            self.sem.give_back(self.slot, 1, 0);
        }
    }
}

/// This process's turn at its holder slot (the slot's index, once claimed).
type Turn<'a> = crate::sync::mutex::MutexGuard<'a, Option<usize>>;

/// A dead holder's slot that this thread took over, freed (token 0) when dropped:
/// on every path out of a repair, including a repairer's own death under loom.
struct Repairing<'a> {
    holder: &'a Holder,
}

impl Drop for Repairing<'_> {
    fn drop(&mut self) {
        if crate::process::crash::dying() {
            return;
        }
        self.holder.token.store(0, Ordering::Release);
    }
}

/// How deep a repair may go into the repairs of other dead slots it finds holding
/// the tag.
const MAX_REPAIR_DEPTH: u32 = 4;

impl<R: Region<Shared = SemaphoreState>> Semaphore<R> {
    /// Takes an owned permit, waiting as long as it takes (or until the handle is
    /// closed). The permit is given back when the [`Permit`] drops, or when this
    /// process dies.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Closed`], or [`AcquireError::NoHolderSlot`] if
    /// [`HOLDER_SLOTS`] other live processes hold permits.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::Semaphore;
    ///
    /// let sem = Semaphore::new(0, 1)?;
    /// let other = sem.clone();
    /// let t = std::thread::spawn(move || other.release(1));
    /// let permit = sem.permit()?; // sleeps until the other thread releases
    /// # drop(permit);
    /// t.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn permit(&self) -> Result<Permit<'_, R>, AcquireError> {
        self.permit_until(None)
    }

    /// Takes an owned permit if one is available, without waiting.
    ///
    /// # Errors
    ///
    /// [`AcquireError::WouldBlock`] ([`AcquireError::Closed`] once closed), or
    /// [`AcquireError::NoHolderSlot`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::{AcquireError, Semaphore};
    ///
    /// let sem = Semaphore::new(1, 1)?;
    /// let permit = sem.try_permit()?;
    /// assert_eq!(sem.try_permit().err(), Some(AcquireError::WouldBlock));
    /// # drop(permit);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_permit(&self) -> Result<Permit<'_, R>, AcquireError> {
        let (slot, turn) = self.own_slot()?;
        let mut got = self.take_owned(slot, false, &turn);
        drop(turn);
        let mut backoff = Backoff::new();
        loop {
            match got {
                Attempt::Taken => return Ok(Permit { sem: self, slot }),
                Attempt::Empty => return Err(self.would_block()),
                // A transfer of another holder's is in progress: a few instructions.
                Attempt::Busy if !backoff.is_completed() => backoff.snooze(),
                Attempt::Busy => {
                    self.repair_tag_holder(0);
                    yield_now();
                }
            }
            got = self.take_owned(slot, false, &self.turn());
        }
    }

    /// Takes an owned permit, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`], [`AcquireError::Closed`] or
    /// [`AcquireError::NoHolderSlot`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::{AcquireError, Semaphore};
    /// use std::time::Duration;
    ///
    /// let sem = Semaphore::new(1, 1)?;
    /// let permit = sem.permit_timeout(Duration::from_millis(5))?;
    /// let late = sem.permit_timeout(Duration::from_millis(5));
    /// assert_eq!(late.err(), Some(AcquireError::Timeout));
    /// # drop(permit);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn permit_timeout(&self, timeout: Duration) -> Result<Permit<'_, R>, AcquireError> {
        self.permit_until(Instant::now().checked_add(timeout))
    }

    /// Takes an owned permit, waiting until `deadline` (`None`: forever).
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`], [`AcquireError::Closed`] or
    /// [`AcquireError::NoHolderSlot`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::{AcquireError, Semaphore};
    /// use std::time::{Duration, Instant};
    ///
    /// let sem = Semaphore::new(0, 1)?;
    /// let deadline = Instant::now() + Duration::from_millis(2);
    /// assert_eq!(sem.permit_until(Some(deadline)).err(), Some(AcquireError::Timeout));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn permit_until(&self, deadline: Option<Instant>) -> Result<Permit<'_, R>, AcquireError> {
        let (slot, turn) = self.own_slot()?;
        // The first attempt in the same turn as the slot's look-up: one lock less.
        if self.take_owned(slot, false, &turn) != Attempt::Taken {
            drop(turn);
            self.take_until(deadline, &mut |registered| {
                self.take_owned(slot, registered, &self.turn())
            })?;
        }
        Ok(Permit { sem: self, slot })
    }

    /// Returns the permits of holders whose process died, and frees their slots
    /// (also those holding nothing); the number of permits returned. Waiters do this on their own after each 10 ms sleep
    /// slice; call it to have them back at once (after a supervisor saw a child
    /// die, say).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::lock::Semaphore;
    ///
    /// let sem = Semaphore::new(1, 1)?;
    /// assert_eq!(sem.reclaim_dead(), 0); // nobody died
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reclaim_dead(&self) -> u32 {
        self.reclaim(true)
    }

    /// Repairs dead holders: those with something recorded (`all`: every dead one,
    /// freeing their slots). Returns the permits given back.
    pub(super) fn reclaim(&self, all: bool) -> u32 {
        let me = current_token();
        let tag = tag_of(self.state().word.load(Ordering::Relaxed));
        let mut returned = 0u32;
        for (i, hd) in self.state().holders.0.iter().enumerate() {
            let token = hd.token.load(Ordering::Relaxed);
            if token == 0 || token == me {
                continue;
            }
            if all
                || hd.ledger.load(Ordering::Relaxed) != 0
                || hd.waiters.load(Ordering::Relaxed) != 0
                || tag == i + 1
            {
                returned = returned.saturating_add(self.repair(i, 0));
            }
        }
        returned
    }

    /// The holder slot of index `i` (in bounds: callers pass indices they chose).
    fn holder(&self, i: usize) -> &Holder {
        &self.state().holders.0[i % HOLDER_SLOTS]
    }

    /// This process's turn at its slot's ledger.
    fn turn(&self) -> Turn<'_> {
        self.inner
            .holder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// This process's holder slot, to count its registered waiters in; `None` if
    /// live processes hold every slot.
    pub(super) fn waiter_slot(&self) -> Option<&Holder> {
        self.own_slot().ok().map(|(i, _turn)| self.holder(i))
    }

    /// This handle's holder slot, claimed on first use, and the turn at it.
    fn own_slot(&self) -> Result<(usize, Turn<'_>), AcquireError> {
        let mut slot = self.turn();
        let me = current_token();
        if let Some(i) = *slot
            && self.holder(i).token.load(Ordering::Relaxed) == me
        {
            return Ok((i, slot));
        }
        for pass in 0..2 {
            for (i, hd) in self.state().holders.0.iter().enumerate() {
                if hd.token.load(Ordering::Relaxed) == 0
                    && hd
                        .token
                        .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    // A free slot's ledger is 0; clear whatever a peer wrote there.
                    hd.ledger.store(0, Ordering::Relaxed);
                    hd.waiters.store(0, Ordering::Relaxed);
                    *slot = Some(i);
                    return Ok((i, slot));
                }
            }
            if pass == 0 {
                self.reclaim(true); // free the slots of dead holders
            }
        }
        Err(AcquireError::NoHolderSlot)
    }

    /// An owned take for slot `i` (steps 1 to 4 of the module docs), or nothing
    /// changed if there is no permit or the tag is busy.
    fn take_owned(&self, i: usize, registered: bool, _turn: &Turn<'_>) -> Attempt {
        let hd = self.holder(i);
        let (held, _, _) = ledger_parts(hd.ledger.load(Ordering::Relaxed));
        hd.ledger.store(ledger(held, TAKING, 1), Ordering::Relaxed);
        crate::process::crash::point("semaphore.permit", 1);
        let got = self.attempt(Some(i), registered);
        if got != Attempt::Taken {
            hd.ledger.store(ledger(held, NONE, 0), Ordering::Relaxed);
            return got;
        }
        crate::process::crash::point("semaphore.permit", 2);
        hd.ledger
            .store(ledger(held.saturating_add(1), NONE, 0), Ordering::Relaxed);
        crate::process::crash::point("semaphore.permit", 3);
        self.clear_tag(i, 0, "semaphore.permit");
        Attempt::Taken
    }

    /// Gives `n` permits of slot `i` back (steps 1 to 4), waiting for the tag; the
    /// caller owns the slot (and holds its process's turn, or repairs it).
    fn give_back(&self, i: usize, n: u32, depth: u32) {
        let st = self.state();
        let hd = self.holder(i);
        let (held, _, _) = ledger_parts(hd.ledger.load(Ordering::Relaxed));
        let n = n.min(held).min(AMOUNT_MAX);
        hd.ledger
            .store(ledger(held, RETURNING, n), Ordering::Relaxed);
        crate::process::crash::point("semaphore.return", 1);
        let max = st.max.load(Ordering::Relaxed);
        let mut backoff = Backoff::new();
        let mut s = st.word.load(Ordering::Relaxed);
        loop {
            if tag_of(s) != 0 {
                // Another holder's transfer: wait it out, repairing a dead one.
                if backoff.is_completed() {
                    self.repair_tag_holder(depth);
                    yield_now();
                } else {
                    backoff.snooze();
                }
                s = st.word.load(Ordering::Relaxed);
                continue;
            }
            // More than the maximum can only come from over-releasing peers: cap.
            let value = u64::from(value_of(s))
                .saturating_add(u64::from(n))
                .min(u64::from(max));
            let next = with_tag((s & !super::VALUE) | value, i + 1);
            // SYNC: Release pairs with the Acquire CAS that takes the permit: the
            // holder's critical section happens before the next holder's.
            match st
                .word
                .compare_exchange_weak(s, next, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        crate::process::crash::point("semaphore.return", 2);
        hd.ledger
            .store(ledger(held - n, NONE, 0), Ordering::Relaxed);
        crate::process::crash::point("semaphore.return", 3);
        self.clear_tag(i, n, "semaphore.return");
    }

    /// Step 4: clears slot `i`'s tag, then wakes up to `wake` sleepers (crash points
    /// 4 and 5 of `protocol`).
    fn clear_tag(&self, i: usize, wake: u32, protocol: &'static str) {
        let word = &self.state().word;
        let mut s = word.load(Ordering::Relaxed);
        while tag_of(s) == i + 1 {
            // SYNC: Release: the ledger's outcome (step 3) is stored before the tag
            // goes; only a repairer after a death reads it (and the death orders it).
            match word.compare_exchange_weak(
                s,
                with_tag(s, 0),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.wake(waiters_of(s), wake.min(value_of(s)), protocol, 4);
                    return;
                }
                Err(now) => s = now,
            }
        }
    }

    /// If the tag's holder is dead, repairs its slot (which clears the tag).
    pub(super) fn repair_tag_holder(&self, depth: u32) {
        let tag = tag_of(self.state().word.load(Ordering::Relaxed));
        if tag == 0 {
            return;
        }
        if tag > HOLDER_SLOTS {
            // Not a slot: a peer's garbage. Nobody will clear it but us.
            let word = &self.state().word;
            let s = word.load(Ordering::Relaxed);
            if tag_of(s) == tag {
                let _ =
                    word.compare_exchange(s, with_tag(s, 0), Ordering::Relaxed, Ordering::Relaxed);
            }
            return;
        }
        self.repair(tag - 1, depth);
    }

    /// Repairs slot `i` if its holder is dead: takes the slot over (one repairer
    /// wins), settles the dead holder's pending step, gives its permits back and frees
    /// the slot. Returns the permits given back.
    fn repair(&self, i: usize, depth: u32) -> u32 {
        if depth >= MAX_REPAIR_DEPTH {
            return 0;
        }
        let hd = self.holder(i);
        let token = hd.token.load(Ordering::Relaxed);
        let me = current_token();
        if token == 0 || token == me || !token_dead(token) {
            return 0;
        }
        // SYNC: Acquire: the liveness check above ordered the dead holder's stores
        // before us; the CAS makes us the only repairer.
        if hd
            .token
            .compare_exchange(token, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return 0;
        }
        let slot = Repairing { holder: hd };
        self.forget_waiters(hd);
        crate::process::crash::point("semaphore.repair", 1);
        // Settle the pending step: the tag says whether its CAS happened.
        let (held, op, n) = ledger_parts(hd.ledger.load(Ordering::Relaxed));
        let tagged = tag_of(self.state().word.load(Ordering::Relaxed)) == i + 1;
        let held = match op {
            TAKING if tagged => held.saturating_add(1),
            RETURNING if tagged => held.saturating_sub(n),
            _ => held,
        };
        hd.ledger.store(ledger(held, NONE, 0), Ordering::Relaxed);
        crate::process::crash::point("semaphore.repair", 2);
        if tagged {
            let n = if op == RETURNING { n } else { 0 };
            self.clear_tag(i, n, "semaphore.repair.wake");
        }
        // Give its permits back with its own protocol; a count above the maximum is
        // a peer's garbage (the value is capped anyway), so this ends in a few rounds.
        let held = held.min(self.max());
        let mut rounds = 0;
        while rounds < 4 {
            let (left, _, _) = ledger_parts(hd.ledger.load(Ordering::Relaxed));
            if left == 0 {
                break;
            }
            self.give_back(i, left, depth + 1);
            rounds += 1;
        }
        crate::process::crash::point("semaphore.repair", 3);
        hd.ledger.store(0, Ordering::Relaxed);
        crate::sync::slow_path!(
            INFO,
            dead_pid = crate::process::token_pid(token),
            permits = held,
            "semaphore: returned the permits of a dead holder"
        );
        drop(slot);
        held
    }

    /// Takes a dead process's registered waiters off the waiter count. Those counted
    /// in its slot are all registered (see [`Holder::waiters`]), so no live waiter is
    /// taken off; the slot is cleared first, so a repairer that dies here leaves the
    /// count too high (a wake system call too many per release), never too low.
    fn forget_waiters(&self, hd: &Holder) {
        let dead = hd.waiters.swap(0, Ordering::Relaxed);
        if dead == 0 {
            return;
        }
        let word = &self.state().word;
        let mut s = word.load(Ordering::Relaxed);
        loop {
            let n = u64::from(dead.min(waiters_of(s)));
            // Relaxed: an RMW of `word`, ordered against releases as registration is.
            match word.compare_exchange_weak(
                s,
                s - n * super::WAITER,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        crate::sync::slow_path!(
            INFO,
            waiters = dead,
            "semaphore: forgot the waiters of a dead process"
        );
    }

    /// `(pid, permits held, token)` of every holder slot in use (for models).
    #[cfg(all(test, shmlink_loom))]
    pub(crate) fn holder_slots(&self) -> Vec<(u32, u32, u64)> {
        Self::holders_of(self.state())
            .into_iter()
            .map(|(pid, held, _, token)| (pid, held, token))
            .collect()
    }

    /// The region, shared (for models: another "process" builds its own handle).
    #[cfg(all(test, shmlink_loom))]
    pub(crate) fn region_arc(&self) -> std::sync::Arc<R> {
        self.inner.region.clone()
    }

    /// `(pid, permits held, waiters counted, token)` of every holder slot in use.
    pub(super) fn holders_of(state: &SemaphoreState) -> Vec<(u32, u32, u32, u64)> {
        state
            .holders
            .0
            .iter()
            .filter_map(|hd| {
                let token = hd.token.load(Ordering::Relaxed);
                let (held, _, _) = ledger_parts(hd.ledger.load(Ordering::Relaxed));
                let waiting = hd.waiters.load(Ordering::Relaxed);
                (token != 0).then(|| (crate::process::token_pid(token), held, waiting, token))
            })
            .collect()
    }
}

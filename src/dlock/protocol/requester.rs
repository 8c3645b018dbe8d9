//! The requester role: collect the quorum's votes, fence a token, hold and renew the
//! lease, release; suspect members that stop answering, and move a waiting attempt to
//! a quorum believed up.

use std::collections::BTreeMap;

use super::msg::{Body, LockName, RequestId};
use super::{AcquireError, Core, LostReason, Nanos, NotHeld, Out, RequestState};
use crate::dlock::quorum::NodeId;

/// A grant of an arbiter: (its incarnation, its stamp), in the order it made them.
type At = (u64, u64);

/// What one arbiter's vote is, as far as the requester knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vote {
    /// No answer yet.
    None,
    /// Waiting behind a higher priority (or the vote was lost).
    Failed,
    /// Voted for us as grant `at`, with its high-water mark.
    Granted { at: At, hw: u64 },
    /// Given back (grant `at`); queued again.
    Yielded { at: At },
}

/// The requester's view of one member of its quorum.
#[derive(Debug)]
struct Slot {
    arbiter: NodeId,
    /// When the arbiter joined the attempt's quorum.
    since: Nanos,
    /// When the attempt first asked the arbiter something (`Request`, `Fence`,
    /// `Renew`) since it last heard from it (any message, about anything): the arbiter
    /// is suspected `suspect_after` later. `None` while nothing is unanswered.
    asked: Option<Nanos>,
    /// The newest (arbiter incarnation, stamp) acted on: older answers are stale.
    last: At,
    vote: Vote,
    /// An `Inquire` (for grant `at`) deferred until we learn we cannot complete.
    inquired: Option<At>,
    /// Whether the current `Fence` or `Renew` is acknowledged.
    acked: bool,
    /// When the current `Fence` or `Renew` was first sent to this arbiter.
    sent_at: Option<Nanos>,
    /// The send time of the newest acknowledged `Fence`/`Renew` for the token: the
    /// arbiter's lease runs at least `L` past it.
    credit: Option<Nanos>,
    /// When to send again.
    next_tx: Nanos,
    /// The current retransmission interval.
    backoff: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Fencing { token: u64 },
    Held { token: u64 },
}

#[derive(Debug)]
struct Req {
    id: RequestId,
    ts: u64,
    phase: Phase,
    /// The quorum the attempt asks, sorted: `slots[i]` is `quorum[i]`'s.
    quorum: Vec<NodeId>,
    slots: Vec<Slot>,
    /// The token of an earlier fencing of this attempt that did not complete: a new
    /// one is never lower (an arbiter that acknowledged it keeps it as the vote's
    /// token, and would refuse renewals of a lower one).
    floor: u64,
    /// The view ([`Core::view`]) the attempt was last rerouted under; `None` when it
    /// must be looked at again (it started, or started fencing).
    routed: Option<u64>,
    /// The confirmation round: raised at every fencing attempt and every renewal, so
    /// that only acknowledgements of the current one count.
    round: u64,
    /// When the current round started.
    round_sent: Nanos,
    valid_until: Nanos,
    /// Whether renewals go on (see [`Requester::stop_renewing`]).
    renew: bool,
}

#[derive(Debug, Default)]
pub(super) struct Requester {
    seq: u64,
    reqs: BTreeMap<LockName, Req>,
}

impl Slot {
    fn new(arbiter: NodeId, now: Nanos, retransmit: u64) -> Slot {
        Slot {
            arbiter,
            since: now,
            asked: None,
            last: (0, 0),
            vote: Vote::None,
            inquired: None,
            acked: false,
            sent_at: None,
            credit: None,
            next_tx: now,
            backoff: retransmit,
        }
    }

    /// Sends the slot's next message now, then backs off.
    fn rearm(&mut self, core: &Core, now: Nanos) {
        self.acked = false;
        self.sent_at = None;
        self.next_tx = now;
        self.backoff = core.retransmit;
    }

    /// Answered: only keep-alives from now on.
    fn answered(&mut self, core: &Core, now: Nanos) {
        self.backoff = core.keepalive;
        self.next_tx = now.after(core.keepalive);
    }
}

impl Req {
    fn slot(&mut self, arbiter: NodeId) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.arbiter == arbiter)
    }

    /// Whether this attempt cannot complete soon, so gives back votes when asked: it
    /// waits behind a higher priority somewhere, gave a vote back already, or has heard
    /// nothing from an arbiter for a third of the lease since it joined the quorum
    /// (which may be down).
    fn should_yield(&self, core: &Core, now: Nanos) -> bool {
        self.slots.iter().any(|s| match s.vote {
            Vote::Failed | Vote::Yielded { .. } => true,
            Vote::None => now >= s.since.after(core.third),
            Vote::Granted { .. } => false,
        })
    }

    fn all_granted(&self) -> bool {
        self.slots
            .iter()
            .all(|s| matches!(s.vote, Vote::Granted { .. }))
    }

    fn state(&self) -> RequestState {
        match self.phase {
            Phase::Waiting => RequestState::Waiting {
                votes: self
                    .slots
                    .iter()
                    .filter(|s| matches!(s.vote, Vote::Granted { .. }))
                    .count(),
                quorum: self.slots.len(),
            },
            Phase::Fencing { token } => RequestState::Fencing { token },
            Phase::Held { token } => RequestState::Held {
                token,
                valid_until: self.valid_until,
            },
        }
    }

    /// Sends what is due: requests (and keep-alives) while waiting, the fence or the
    /// renewal to arbiters that have not acknowledged it.
    fn transmit(&mut self, core: &mut Core, lock: LockName, now: Nanos) {
        let id = self.id;
        for s in &mut self.slots {
            let body = match self.phase {
                Phase::Waiting => Body::Request { id, ts: self.ts },
                Phase::Fencing { token } if !s.acked => Body::Fence {
                    id,
                    token,
                    round: self.round,
                },
                Phase::Held { token } if !s.acked => Body::Renew {
                    id,
                    token,
                    round: self.round,
                },
                _ => continue,
            };
            if now < s.next_tx {
                continue;
            }
            if self.phase != Phase::Waiting && s.sent_at.is_none() {
                s.sent_at = Some(now);
            }
            if s.arbiter != core.node {
                s.asked.get_or_insert(now);
            }
            core.send(s.arbiter, lock, body);
            s.next_tx = now.after(s.backoff);
            if s.backoff < core.third {
                s.backoff = (s.backoff * 2).min(core.third);
            }
        }
    }

    /// Every vote is in: fence `1 + max(high-water marks)` with the whole quorum.
    fn start_fencing(&mut self, core: &Core, now: Nanos) {
        let max = self
            .slots
            .iter()
            .map(|s| match s.vote {
                Vote::Granted { hw, .. } => hw,
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        self.round += 1;
        self.routed = None;
        self.phase = Phase::Fencing {
            token: max.saturating_add(1).max(self.floor),
        };
        for s in &mut self.slots {
            s.inquired = None;
            s.credit = None;
            s.rearm(core, now);
        }
    }

    /// Gives back the vote `slot` granted as `at`.
    fn relinquish(
        core: &mut Core,
        lock: LockName,
        id: RequestId,
        s: &mut Slot,
        at: At,
        now: Nanos,
    ) {
        core.send(s.arbiter, lock, Body::Relinquish { id, stamp: at.1 });
        s.vote = Vote::Yielded { at };
        s.inquired = None;
        s.answered(core, now);
    }

    /// Gives back the votes asked for while we thought we could complete, if we no
    /// longer can.
    fn yield_deferred(&mut self, core: &mut Core, lock: LockName, now: Nanos) {
        if !self.should_yield(core, now) {
            return;
        }
        let id = self.id;
        for s in &mut self.slots {
            if let Some(at) = s.inquired {
                Self::relinquish(core, lock, id, s, at, now);
            }
        }
    }

    /// Tells the whole quorum this attempt is over.
    fn withdraw(&self, core: &mut Core, lock: LockName) {
        for s in &self.slots {
            core.send(s.arbiter, lock, Body::Release { id: self.id });
        }
    }

    /// Fencing stops (an arbiter refused the fence, or a member that has not
    /// acknowledged it is suspected): back to collecting votes, keeping those held
    /// except `drop`'s, and the token as the floor of the next one.
    fn unfence(&mut self, core: &Core, now: Nanos, drop: NodeId) {
        if let Phase::Fencing { token } = self.phase {
            self.floor = self.floor.max(token);
        }
        self.phase = Phase::Waiting;
        for s in &mut self.slots {
            s.acked = false;
            s.sent_at = None;
            if s.arbiter == drop {
                s.next_tx = now;
                s.backoff = core.keepalive;
            } else {
                s.answered(core, now);
            }
        }
    }

    /// Moves the waiting attempt to quorum `q`: `Release` to the members it leaves
    /// (freeing a vote they gave it, or its place in their queue), `Request` (same id,
    /// same priority) to those it joins; the votes of members in both are kept.
    fn move_to(&mut self, core: &mut Core, lock: LockName, q: Vec<NodeId>, now: Nanos) {
        debug_assert_eq!(self.phase, Phase::Waiting);
        let id = self.id;
        let mut old = std::mem::take(&mut self.slots);
        for s in &old {
            if !q.contains(&s.arbiter) {
                core.send(s.arbiter, lock, Body::Release { id });
            }
        }
        self.slots = q
            .iter()
            .map(|&a| match old.iter().position(|s| s.arbiter == a) {
                Some(i) => old.swap_remove(i),
                None => Slot::new(a, now, core.retransmit),
            })
            .collect();
        self.quorum = q;
        core.stats.moves += 1;
        if self.all_granted() {
            self.start_fencing(core, now);
        }
    }
}

impl Requester {
    pub(super) fn acquire(
        &mut self,
        core: &mut Core,
        lock: LockName,
        now: Nanos,
    ) -> Result<RequestId, AcquireError> {
        if let Some(r) = self.reqs.get(&lock) {
            return Err(AcquireError { pending: r.id });
        }
        self.seq += 1;
        core.clock = core.clock.saturating_add(1);
        let id = RequestId {
            node: core.node,
            incarnation: core.incarnation,
            seq: self.seq,
        };
        // A quorum believed up, else the own one (and wait: its members answer when
        // they come back, and a member that answers is no longer suspected).
        let mut asked = self.asked(core);
        for &m in &core.quorum {
            asked[usize::from(m)] = true;
        }
        let quorum = core
            .choose_quorum(&asked)
            .unwrap_or_else(|| core.quorum.clone());
        let slots = quorum
            .iter()
            .map(|&a| Slot::new(a, now, core.retransmit))
            .collect();
        let mut req = Req {
            id,
            ts: core.clock,
            phase: Phase::Waiting,
            quorum,
            slots,
            floor: 0,
            routed: None,
            round: 0,
            round_sent: now,
            valid_until: now,
            renew: true,
        };
        req.transmit(core, lock, now);
        self.reqs.insert(lock, req);
        Ok(id)
    }

    pub(super) fn release(&mut self, core: &mut Core, lock: LockName) -> Result<(), NotHeld> {
        match self.reqs.get(&lock) {
            Some(r) if matches!(r.phase, Phase::Held { .. }) => {
                let r = self.reqs.remove(&lock).expect("just found");
                r.withdraw(core, lock);
                Ok(())
            }
            _ => Err(NotHeld),
        }
    }

    pub(super) fn cancel(&mut self, core: &mut Core, lock: LockName) -> Option<RequestId> {
        let r = self.reqs.remove(&lock)?;
        r.withdraw(core, lock);
        Some(r.id)
    }

    /// Starts no more renewals of `lock`: the lock runs out at the end of its current
    /// validity and is lost then (the votes are not freed early, since the holder may
    /// act until that moment). Whether there was an attempt on `lock`.
    pub(super) fn stop_renewing(&mut self, lock: LockName) -> bool {
        self.reqs.get_mut(&lock).map(|r| r.renew = false).is_some()
    }

    pub(super) fn state(&self, lock: LockName) -> Option<(RequestId, RequestState)> {
        self.reqs.get(&lock).map(|r| (r.id, r.state()))
    }

    pub(super) fn states(&self) -> impl Iterator<Item = (LockName, RequestId, RequestState)> + '_ {
        self.reqs.iter().map(|(&l, r)| (l, r.id, r.state()))
    }

    pub(super) fn quorum(&self, lock: LockName) -> Option<&[NodeId]> {
        self.reqs.get(&lock).map(|r| r.quorum.as_slice())
    }

    /// The members of this node's attempts (by node): the nodes it asks.
    fn asked(&self, core: &Core) -> Vec<bool> {
        let mut asked = vec![false; core.known.len()];
        for s in self.reqs.values().flat_map(|r| &r.slots) {
            asked[usize::from(s.arbiter)] = true;
        }
        asked
    }

    /// A message from `node` arrived: whatever the attempts asked it is answered, as
    /// far as suspicion goes.
    pub(super) fn heard(&mut self, node: NodeId) {
        for s in self.reqs.values_mut().flat_map(|r| &mut r.slots) {
            if s.arbiter == node {
                s.asked = None;
            }
        }
    }

    /// Suspects the members that left an attempt's question unanswered for
    /// `suspect_after`.
    fn suspect(&self, core: &mut Core, now: Nanos) {
        for s in self.reqs.values().flat_map(|r| &r.slots) {
            if let Some(t) = s.asked
                && now >= t.after(core.suspect_after)
            {
                core.suspect(s.arbiter);
            }
        }
    }

    /// Takes waiting attempts off suspected members: a fencing attempt that waits for
    /// a suspected member's acknowledgement goes back to waiting (its token was not
    /// acknowledged by the whole quorum, so nobody relies on it), and a waiting attempt
    /// with a suspected member moves to the quorum [`Core::choose_quorum`] gives, if it
    /// is another. A held attempt never moves: its renewals fail, and the lease ends it.
    pub(super) fn reroute(&mut self, core: &mut Core, now: Nanos) {
        if !core.suspected.contains(&true) {
            return;
        }
        if self.reqs.values().all(|r| r.routed == Some(core.view)) {
            return;
        }
        let asked = self.asked(core);
        for (&lock, r) in &mut self.reqs {
            if r.routed == Some(core.view) {
                continue;
            }
            r.routed = Some(core.view);
            if let Phase::Fencing { .. } = r.phase
                && let Some(s) = r
                    .slots
                    .iter()
                    .find(|s| !s.acked && core.is_suspected(s.arbiter))
            {
                let drop = s.arbiter;
                r.unfence(core, now, drop);
                // Its vote may be gone with it; if it answers, it is a vote again.
                r.slot(drop).expect("a member").vote = Vote::None;
            }
            if r.phase != Phase::Waiting || !r.slots.iter().any(|s| core.is_suspected(s.arbiter)) {
                continue;
            }
            if let Some(q) = core.choose_quorum(&asked)
                && q != r.quorum
            {
                r.move_to(core, lock, q, now);
                r.transmit(core, lock, now);
            }
            // Whether it moved or not, it is settled under the view as it is now (which
            // the search may have changed).
            r.routed = Some(core.view);
        }
    }

    /// The held lock is gone: say so, and free the votes.
    fn lose(core: &mut Core, lock: LockName, r: &Req, reason: LostReason) {
        core.stats.lost += 1;
        core.out.push(Out::Lost {
            lock,
            id: r.id,
            reason,
        });
        r.withdraw(core, lock);
    }

    /// The attempt this message is about, if it is the current one on `lock` and `from`
    /// is in its quorum; otherwise the message is stale, and (if `answer`) the arbiter is
    /// told to free what it holds for it (a vote of an attempt that moved on, whose
    /// `Release` was lost, comes back here).
    fn current(
        &mut self,
        core: &mut Core,
        from: NodeId,
        lock: LockName,
        id: RequestId,
        answer: bool,
    ) -> Option<&mut Req> {
        match self.reqs.get_mut(&lock) {
            Some(r) if r.id == id && r.quorum.contains(&from) => Some(r),
            _ => {
                core.stats.stale += 1;
                if answer {
                    core.send(from, lock, Body::Release { id });
                }
                None
            }
        }
    }

    #[allow(clippy::too_many_arguments)] // the message's fields, unpacked
    pub(super) fn on_locked(
        &mut self,
        core: &mut Core,
        now: Nanos,
        from: NodeId,
        incarnation: u64,
        lock: LockName,
        id: RequestId,
        hw: u64,
        stamp: u64,
    ) {
        let Some(r) = self.current(core, from, lock, id, true) else {
            return;
        };
        let phase = r.phase;
        let Some(s) = r.slot(from) else { return };
        let at = (incarnation, stamp);
        if at < s.last {
            core.stats.stale += 1;
            return;
        }
        s.last = at;
        match (phase, s.vote) {
            // A duplicate or a probe.
            (_, Vote::Granted { at: had, .. }) if had == at => {}
            // A vote we gave back, sent again: give it back again.
            (Phase::Waiting, Vote::Yielded { at: gave }) if gave == at => {
                core.send(from, lock, Body::Relinquish { id, stamp });
            }
            (Phase::Waiting, _) => {
                s.vote = Vote::Granted { at, hw };
                if s.inquired.is_some_and(|i| i != at) {
                    s.inquired = None;
                }
                s.answered(core, now);
                if r.all_granted() {
                    r.start_fencing(core, now);
                }
            }
            // A new vote while fencing (the arbiter lost the old one): fence again.
            (Phase::Fencing { .. }, _) => {
                s.vote = Vote::Granted { at, hw };
                r.start_fencing(core, now);
            }
            // Held: the renewals tell whether the fenced vote still stands.
            (Phase::Held { .. }, _) => {}
        }
        r.transmit(core, lock, now);
    }

    #[allow(clippy::too_many_arguments)] // the message's fields, unpacked
    pub(super) fn on_failed(
        &mut self,
        core: &mut Core,
        now: Nanos,
        from: NodeId,
        incarnation: u64,
        lock: LockName,
        id: RequestId,
        stamp: u64,
    ) {
        let Some(r) = self.current(core, from, lock, id, false) else {
            return;
        };
        let phase = r.phase;
        let Some(s) = r.slot(from) else { return };
        if (incarnation, stamp) < s.last {
            core.stats.stale += 1;
            return;
        }
        s.last = (incarnation, stamp);
        let had_vote = matches!(s.vote, Vote::Granted { .. });
        match phase {
            Phase::Waiting => {
                s.vote = Vote::Failed;
                s.inquired = None;
                s.answered(core, now);
                if had_vote {
                    // The arbiter dropped us with the vote: ask again now.
                    s.next_tx = now;
                }
                r.yield_deferred(core, lock, now);
            }
            Phase::Fencing { .. } => {
                // The vote lapsed before the fence arrived: back to waiting for it.
                s.vote = Vote::Failed;
                r.unfence(core, now, from);
            }
            Phase::Held { .. } => {
                let r = self.reqs.remove(&lock).expect("current");
                Self::lose(core, lock, &r, LostReason::Revoked);
                return;
            }
        }
        r.transmit(core, lock, now);
    }

    #[allow(clippy::too_many_arguments)] // the message's fields, unpacked
    pub(super) fn on_inquire(
        &mut self,
        core: &mut Core,
        now: Nanos,
        from: NodeId,
        incarnation: u64,
        lock: LockName,
        id: RequestId,
        stamp: u64,
    ) {
        let Some(r) = self.current(core, from, lock, id, true) else {
            return;
        };
        if r.phase != Phase::Waiting {
            // Holding every vote: the release answers it.
            return;
        }
        let can_yield = r.should_yield(core, now);
        let Some(s) = r.slot(from) else { return };
        let at = (incarnation, stamp);
        if at < s.last {
            core.stats.stale += 1;
            return;
        }
        s.last = at;
        match s.vote {
            Vote::Yielded { at: gave } if gave == at => {
                core.send(from, lock, Body::Relinquish { id, stamp });
            }
            // About the newest grant (seen or not yet): give it back, or later.
            _ if can_yield => Req::relinquish(core, lock, id, s, at, now),
            _ => s.inquired = Some(at),
        }
        // Giving one vote back means we cannot complete: give back the others asked for.
        r.yield_deferred(core, lock, now);
    }

    #[allow(clippy::too_many_arguments)] // the message's fields, unpacked
    pub(super) fn on_fence_ack(
        &mut self,
        core: &mut Core,
        now: Nanos,
        from: NodeId,
        lock: LockName,
        id: RequestId,
        token: u64,
        round: u64,
    ) {
        let Some(r) = self.current(core, from, lock, id, false) else {
            return;
        };
        let current_round = r.round;
        let phase = r.phase;
        let Some(s) = r.slot(from) else { return };
        let ours = match phase {
            Phase::Fencing { token: t } | Phase::Held { token: t } => {
                t == token && round == current_round
            }
            Phase::Waiting => false,
        };
        let Some(sent_at) = s.sent_at.filter(|_| ours && !s.acked) else {
            core.stats.stale += 1;
            return;
        };
        s.acked = true;
        s.credit = s.credit.max(Some(sent_at));
        let Some(from_time) = r.slots.iter().map(|s| s.credit).min().flatten() else {
            return;
        };
        let valid_until = from_time.after(core.holder_lease);
        match phase {
            Phase::Fencing { token } if r.slots.iter().all(|s| s.acked) => {
                if valid_until <= now {
                    // Acknowledged too late to be of use: fence again.
                    r.round += 1;
                    for s in &mut r.slots {
                        s.rearm(core, now);
                    }
                    r.transmit(core, lock, now);
                    return;
                }
                r.phase = Phase::Held { token };
                r.round_sent = from_time;
                r.valid_until = valid_until;
                core.stats.granted += 1;
                core.out.push(Out::Granted {
                    lock,
                    id,
                    token,
                    valid_until,
                });
            }
            Phase::Held { .. } => r.valid_until = r.valid_until.max(valid_until),
            _ => {}
        }
    }

    /// Suspicions and moves, lost leases, renewals, retransmissions.
    pub(super) fn advance(&mut self, core: &mut Core, now: Nanos) {
        self.suspect(core, now);
        self.reroute(core, now);
        let mut lost = Vec::new();
        for (&lock, r) in &mut self.reqs {
            if let Phase::Held { .. } = r.phase {
                if now >= r.valid_until {
                    lost.push(lock);
                    continue;
                }
                if r.renew && now >= r.round_sent.after(core.third) {
                    r.round += 1;
                    r.round_sent = now;
                    for s in &mut r.slots {
                        s.rearm(core, now);
                    }
                }
            }
            r.transmit(core, lock, now);
        }
        for lock in lost {
            let r = self.reqs.remove(&lock).expect("just seen");
            Self::lose(core, lock, &r, LostReason::Expired);
        }
    }

    pub(super) fn next_deadline(&self, core: &Core) -> Option<Nanos> {
        let mut at: Option<Nanos> = None;
        let mut at_least = |t: Nanos| at = Some(at.map_or(t, |a| a.min(t)));
        for r in self.reqs.values() {
            for s in &r.slots {
                if r.phase == Phase::Waiting || !s.acked {
                    at_least(s.next_tx);
                }
                if let Some(t) = s.asked
                    && !core.is_suspected(s.arbiter)
                {
                    at_least(t.after(core.suspect_after));
                }
            }
            if let Phase::Held { .. } = r.phase {
                at_least(r.valid_until);
                if r.renew {
                    at_least(r.round_sent.after(core.third));
                }
            }
        }
        at
    }
}

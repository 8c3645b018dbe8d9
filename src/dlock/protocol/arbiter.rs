//! The arbiter role: one vote per lock, a queue by priority, leases, and the fencing
//! high-water mark.

use std::collections::BTreeMap;

use super::msg::{Body, LockName, RequestId};
use super::{Core, Nanos, Out};
use crate::dlock::quorum::NodeId;

/// The high-water mark is persisted in reservations of this many tokens: a restarted
/// node resumes from the reserved ceiling, which never lowers the mark, and persists
/// again only every this many tokens.
pub const HIGH_WATER_BLOCK: u64 = 1024;

/// The highest fencing token an arbiter acknowledges (so that reservations never
/// overflow); far beyond any real use.
pub const MAX_TOKEN: u64 = u64::MAX - 2 * HIGH_WATER_BLOCK;

/// A request's priority: lower is first. The attempt id breaks ties between equal
/// Lamport timestamps (by node first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Prio {
    ts: u64,
    id: RequestId,
}

/// The vote of one lock, given to `prio.id`.
#[derive(Debug)]
struct Grant {
    prio: Prio,
    /// The grant's number (the arbiter's counter when it voted).
    stamp: u64,
    /// The high-water mark sent with the vote: a fence must carry a higher token.
    hw_at_grant: u64,
    /// The highest token fenced under this vote.
    fenced: Option<u64>,
    /// When the vote lapses unless the holder renews (or, unfenced, is heard from).
    expires: Nanos,
    /// Whether `Inquire` was sent for this vote.
    inquired: bool,
    /// When to re-send `Inquire` (from the retransmission interval, backing off to
    /// `L / 3`) or `Locked` (as a probe, every `L / 3`) while others wait.
    next_probe: Nanos,
    probe_every: u64,
}

/// A queued request.
#[derive(Debug)]
struct Waiter {
    /// When the requester was last heard from; a waiter silent for a lease is dropped.
    last_heard: Nanos,
    /// Whether it was told `Failed` (it waits behind a higher priority).
    failed_sent: bool,
}

#[derive(Debug, Default)]
struct ArbLock {
    grant: Option<Grant>,
    waiters: BTreeMap<Prio, Waiter>,
}

/// The node-wide part of the arbiter's state.
#[derive(Debug)]
struct Marks {
    /// The highest token acknowledged (or the restored reservation).
    hw: u64,
    /// The persisted ceiling: `hw <= reserved`.
    reserved: u64,
    /// The grant counter, raised at every vote given (all locks).
    stamp: u64,
}

#[derive(Debug)]
pub(super) struct Arbiter {
    locks: BTreeMap<LockName, ArbLock>,
    marks: Marks,
}

impl Marks {
    /// Raises the high-water mark to `token`, persisting a new reservation first if it
    /// passes the old one.
    fn raise(&mut self, core: &mut Core, token: u64) {
        self.hw = self.hw.max(token);
        if self.hw > self.reserved {
            // hw <= MAX_TOKEN (or a restored value): no overflow.
            self.reserved = self
                .hw
                .saturating_add(HIGH_WATER_BLOCK - self.hw % HIGH_WATER_BLOCK);
            core.stats.persists += 1;
            core.out.push(Out::Persist {
                high_water: self.reserved,
            });
        }
    }
}

impl ArbLock {
    fn idle(&self) -> bool {
        self.grant.is_none() && self.waiters.is_empty()
    }

    fn waiter(&self, id: RequestId) -> Option<Prio> {
        self.waiters.keys().find(|p| p.id == id).copied()
    }

    /// Gives the vote to the first waiter, if the vote is free and the lock-delay over;
    /// the other waiters, now behind a higher priority, learn it (once).
    fn grant_next(&mut self, marks: &mut Marks, core: &mut Core, now: Nanos, lock: LockName) {
        if self.grant.is_some() || core.in_lock_delay(now) {
            return;
        }
        // Waiters not heard from for a lease are gone (their keep-alives come every
        // third of one).
        self.waiters
            .retain(|_, w| now < w.last_heard.after(core.lease));
        let Some((prio, _)) = self.waiters.pop_first() else {
            return;
        };
        marks.stamp += 1;
        let stamp = marks.stamp;
        core.send(
            prio.id.node,
            lock,
            Body::Locked {
                id: prio.id,
                high_water: marks.hw,
                stamp,
            },
        );
        for (p, w) in &mut self.waiters {
            if !w.failed_sent {
                w.failed_sent = true;
                core.send(p.id.node, lock, Body::Failed { id: p.id, stamp });
            }
        }
        self.grant = Some(Grant {
            prio,
            stamp,
            hw_at_grant: marks.hw,
            fenced: None,
            expires: now.after(core.lease),
            inquired: false,
            next_probe: now.after(core.third),
            probe_every: core.third,
        });
    }
}

impl Arbiter {
    pub(super) fn new(restored_high_water: u64) -> Arbiter {
        Arbiter {
            locks: BTreeMap::new(),
            marks: Marks {
                hw: restored_high_water,
                reserved: restored_high_water,
                stamp: 0,
            },
        }
    }

    pub(super) fn high_water(&self) -> u64 {
        self.marks.hw
    }

    pub(super) fn on_request(
        &mut self,
        core: &mut Core,
        now: Nanos,
        lock: LockName,
        id: RequestId,
        ts: u64,
    ) {
        let l = self.locks.entry(lock).or_default();
        let marks = &mut self.marks;
        // One attempt per node and lock: a newer one supersedes the older (whose
        // Release may have been lost), and an older one is stale.
        let newer = |a: RequestId, b: RequestId| (a.incarnation, a.seq) > (b.incarnation, b.seq);
        let mut freed = false;
        if let Some(g) = &l.grant
            && g.prio.id.node == id.node
            && g.prio.id != id
        {
            if newer(g.prio.id, id) {
                core.stats.stale += 1;
                return;
            }
            l.grant = None;
            freed = true;
        }
        let mut stale = false;
        l.waiters.retain(|p, _| {
            if p.id.node != id.node || p.id == id {
                true
            } else if newer(p.id, id) {
                stale = true;
                true
            } else {
                false
            }
        });
        if stale {
            core.stats.stale += 1;
            if freed {
                l.grant_next(marks, core, now, lock);
            }
            return;
        }

        // A duplicate from the holder of the vote: it is alive; answer again.
        if let Some(g) = &mut l.grant
            && g.prio.id == id
        {
            g.expires = g.expires.max(now.after(core.lease));
            let (hw, stamp) = (g.hw_at_grant, g.stamp);
            core.send(
                id.node,
                lock,
                Body::Locked {
                    id,
                    high_water: hw,
                    stamp,
                },
            );
            return;
        }

        let (prio, new) = match l.waiter(id) {
            Some(p) => (p, false),
            None => (Prio { ts, id }, true),
        };
        let was_empty = l.waiters.is_empty();
        l.waiters.insert(
            prio,
            Waiter {
                last_heard: now,
                failed_sent: false,
            },
        );
        let first = *l.waiters.keys().next().expect("just inserted");
        let Some(g) = &mut l.grant else {
            if core.in_lock_delay(now) {
                // Starting: no vote for anyone yet. Say so, so that the requester knows
                // this node is up (a member silent for a lease is suspected) and gives
                // back what others ask for meanwhile.
                let w = l.waiters.get_mut(&prio).expect("just inserted");
                w.failed_sent = true;
                core.send(
                    id.node,
                    lock,
                    Body::Failed {
                        id,
                        stamp: marks.stamp,
                    },
                );
                return;
            }
            l.grant_next(marks, core, now, lock);
            return;
        };
        if was_empty {
            // Probing starts when someone waits.
            g.next_probe = now.after(core.third);
            g.probe_every = core.third;
        }
        if g.prio < prio || first < prio {
            // Behind a higher priority.
            let w = l.waiters.get_mut(&prio).expect("just inserted");
            w.failed_sent = true;
            core.send(
                id.node,
                lock,
                Body::Failed {
                    id,
                    stamp: marks.stamp,
                },
            );
            return;
        }
        // The first waiter, and it outranks the vote's holder: ask for the vote back.
        if new
            && let Some((p, w)) = l.waiters.iter_mut().nth(1)
            && !w.failed_sent
        {
            // The previous first waiter is now behind a higher priority.
            w.failed_sent = true;
            core.send(
                p.id.node,
                lock,
                Body::Failed {
                    id: p.id,
                    stamp: marks.stamp,
                },
            );
        }
        if !g.inquired {
            g.inquired = true;
            g.next_probe = now.after(core.retransmit);
            g.probe_every = core.retransmit;
            core.send(
                g.prio.id.node,
                lock,
                Body::Inquire {
                    id: g.prio.id,
                    stamp: g.stamp,
                },
            );
        }
        if g.fenced.is_some() {
            // The holder fenced a token: it keeps the vote until it releases (or the
            // lease ends), whatever its priority. This request waits behind it, and
            // hears so: otherwise it would hear nothing for as long as the holder
            // holds, and suspect this node of being down.
            let w = l.waiters.get_mut(&prio).expect("just inserted");
            w.failed_sent = true;
            core.send(
                id.node,
                lock,
                Body::Failed {
                    id,
                    stamp: marks.stamp,
                },
            );
        }
    }

    pub(super) fn on_relinquish(
        &mut self,
        core: &mut Core,
        now: Nanos,
        lock: LockName,
        id: RequestId,
        stamp: u64,
    ) {
        let Some(l) = self.locks.get_mut(&lock) else {
            core.stats.stale += 1;
            return;
        };
        match &l.grant {
            Some(g) if g.prio.id == id && g.stamp == stamp => {
                let prio = g.prio;
                l.grant = None;
                // It waits again, and knows it waits behind a higher priority.
                l.waiters.insert(
                    prio,
                    Waiter {
                        last_heard: now,
                        failed_sent: true,
                    },
                );
                l.grant_next(&mut self.marks, core, now, lock);
            }
            _ => core.stats.stale += 1,
        }
    }

    pub(super) fn on_release(
        &mut self,
        core: &mut Core,
        now: Nanos,
        lock: LockName,
        id: RequestId,
    ) {
        let Some(l) = self.locks.get_mut(&lock) else {
            core.stats.stale += 1;
            return;
        };
        let mut found = false;
        if l.grant.as_ref().is_some_and(|g| g.prio.id == id) {
            l.grant = None;
            found = true;
        }
        if let Some(p) = l.waiter(id) {
            l.waiters.remove(&p);
            found = true;
        }
        if !found {
            core.stats.stale += 1;
        }
        l.grant_next(&mut self.marks, core, now, lock);
        if l.idle() {
            self.locks.remove(&lock);
        }
    }

    pub(super) fn on_fence(
        &mut self,
        core: &mut Core,
        now: Nanos,
        lock: LockName,
        id: RequestId,
        token: u64,
        round: u64,
    ) {
        if token == 0 || token > MAX_TOKEN {
            core.stats.invalid += 1;
            return;
        }
        let grant = self.locks.get_mut(&lock).and_then(|l| l.grant.as_mut());
        match grant {
            Some(g) if g.prio.id == id => {
                if token > g.hw_at_grant {
                    self.marks.raise(core, token);
                    g.fenced = g.fenced.max(Some(token));
                    g.expires = g.expires.max(now.after(core.lease));
                    core.send(id.node, lock, Body::FenceAck { id, token, round });
                } else {
                    // Computed from an older vote: send the current one.
                    let (hw, stamp) = (g.hw_at_grant, g.stamp);
                    core.send(
                        id.node,
                        lock,
                        Body::Locked {
                            id,
                            high_water: hw,
                            stamp,
                        },
                    );
                }
            }
            _ => {
                let stamp = self.marks.stamp;
                core.send(id.node, lock, Body::Failed { id, stamp });
            }
        }
    }

    pub(super) fn on_renew(
        &mut self,
        core: &mut Core,
        now: Nanos,
        lock: LockName,
        id: RequestId,
        token: u64,
        round: u64,
    ) {
        let grant = self.locks.get_mut(&lock).and_then(|l| l.grant.as_mut());
        match grant {
            Some(g) if g.prio.id == id && g.fenced == Some(token) => {
                g.expires = g.expires.max(now.after(core.lease));
                core.send(id.node, lock, Body::FenceAck { id, token, round });
            }
            // A renewal overtaken by a later fence of the same vote.
            Some(g) if g.prio.id == id && g.fenced > Some(token) => core.stats.stale += 1,
            _ => {
                let stamp = self.marks.stamp;
                core.send(id.node, lock, Body::Failed { id, stamp });
            }
        }
    }

    /// `node` restarted as `incarnation`: drop its older attempts.
    pub(super) fn purge(&mut self, core: &mut Core, node: NodeId, incarnation: u64, now: Nanos) {
        let old = |id: RequestId| id.node == node && id.incarnation < incarnation;
        for (&lock, l) in &mut self.locks {
            l.waiters.retain(|p, _| !old(p.id));
            if l.grant.as_ref().is_some_and(|g| old(g.prio.id)) {
                l.grant = None;
                l.grant_next(&mut self.marks, core, now, lock);
            }
        }
        self.locks.retain(|_, l| !l.idle());
    }

    /// Lapses votes at the end of their lease, grants after the lock-delay, probes.
    pub(super) fn advance(&mut self, core: &mut Core, now: Nanos) {
        for (&lock, l) in &mut self.locks {
            if l.grant.as_ref().is_some_and(|g| g.expires <= now) {
                l.grant = None;
                core.stats.lapsed += 1;
            }
            l.grant_next(&mut self.marks, core, now, lock);
            if let Some(g) = &mut l.grant
                && let Some(first) = l.waiters.keys().next()
                && g.next_probe <= now
            {
                if *first < g.prio {
                    g.inquired = true;
                    core.send(
                        g.prio.id.node,
                        lock,
                        Body::Inquire {
                            id: g.prio.id,
                            stamp: g.stamp,
                        },
                    );
                } else {
                    // Still using it? (A requester that is not answers Release, which
                    // recovers a lost Release before the lease ends.)
                    let body = Body::Locked {
                        id: g.prio.id,
                        high_water: g.hw_at_grant,
                        stamp: g.stamp,
                    };
                    core.send(g.prio.id.node, lock, body);
                }
                g.probe_every = (g.probe_every * 2).min(core.third).max(core.retransmit);
                g.next_probe = now.after(g.probe_every);
            }
            l.waiters
                .retain(|_, w| now < w.last_heard.after(core.lease));
        }
        self.locks.retain(|_, l| !l.idle());
    }

    pub(super) fn next_deadline(&self, core: &Core) -> Option<Nanos> {
        let mut at: Option<Nanos> = None;
        let mut at_least = |t: Nanos| at = Some(at.map_or(t, |a| a.min(t)));
        for l in self.locks.values() {
            match &l.grant {
                Some(g) => {
                    at_least(g.expires);
                    if !l.waiters.is_empty() {
                        at_least(g.next_probe);
                    }
                }
                None if !l.waiters.is_empty() => at_least(core.started.after(core.lease)),
                None => {}
            }
        }
        at
    }
}

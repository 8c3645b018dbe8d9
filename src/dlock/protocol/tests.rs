//! Unit tests of the protocol core over a hand-driven in-memory network.

use std::collections::VecDeque;

use super::*;

/// Node `i`'s quorum: itself and the next `n / 2` nodes, cyclically.
#[derive(Debug)]
struct Majority(Vec<Vec<NodeId>>);

impl Majority {
    fn new(n: usize) -> Arc<Majority> {
        let q = (0..n)
            .map(|i| {
                let mut q: Vec<NodeId> = (0..=n / 2).map(|k| ((i + k) % n) as NodeId).collect();
                q.sort_unstable();
                q
            })
            .collect();
        Arc::new(Majority(q))
    }
}

impl QuorumSystem for Majority {
    fn nodes(&self) -> usize {
        self.0.len()
    }
    fn quorum(&self, node: NodeId) -> &[NodeId] {
        &self.0[usize::from(node)]
    }
    fn name(&self) -> &'static str {
        "majority"
    }
}

const MS: u64 = 1_000_000;
const LEASE: u64 = 1_000 * MS;
const EPOCH: u64 = 7;

fn config(n: usize, node: NodeId) -> Config {
    let mut c = Config::new(EPOCH, node, Majority::new(n));
    c.lease = Duration::from_nanos(LEASE);
    c.retransmit = Duration::from_millis(50);
    c
}

fn lock() -> LockName {
    LockName::new("test")
}

/// A network that delivers in FIFO order, all nodes sharing one clock.
struct Net {
    nodes: Vec<Node>,
    queue: VecDeque<Msg>,
    now: Nanos,
    granted: Vec<(NodeId, RequestId, u64)>,
    lost: Vec<(NodeId, LostReason)>,
    persisted: Vec<u64>,
    /// Messages to drop rather than deliver.
    drop: Box<dyn FnMut(&Msg) -> bool>,
}

impl Net {
    fn new(n: usize) -> Net {
        let nodes = (0..n)
            .map(|i| Node::new(config(n, i as NodeId), 1, 0, Nanos(0)).unwrap())
            .collect();
        Net {
            nodes,
            queue: VecDeque::new(),
            now: Nanos(0),
            granted: Vec::new(),
            lost: Vec::new(),
            persisted: vec![0; n],
            drop: Box::new(|_| false),
        }
    }

    /// A network past the lock-delay of its nodes.
    fn started(n: usize) -> Net {
        let mut net = Net::new(n);
        net.now = Nanos(LEASE);
        net
    }

    fn collect(&mut self, i: usize) {
        let outs: Vec<Out> = self.nodes[i].drain().collect();
        for out in outs {
            match out {
                Out::Send(m) => self.queue.push_back(m),
                Out::Granted { id, token, .. } => self.granted.push((i as NodeId, id, token)),
                Out::Lost { reason, .. } => self.lost.push((i as NodeId, reason)),
                Out::Persist { high_water } => self.persisted[i] = high_water,
            }
        }
    }

    fn acquire(&mut self, i: usize) -> RequestId {
        let id = self.nodes[i].acquire(lock(), self.now).unwrap();
        self.collect(i);
        id
    }

    fn release(&mut self, i: usize) {
        self.nodes[i].release(lock(), self.now).unwrap();
        self.collect(i);
    }

    fn deliver(&mut self, m: Msg) {
        let to = usize::from(m.to);
        self.nodes[to].handle(m, self.now);
        self.collect(to);
    }

    /// Delivers everything queued, and what it causes.
    fn run(&mut self) {
        for _ in 0..10_000 {
            let Some(m) = self.queue.pop_front() else {
                return;
            };
            if !(self.drop)(&m) {
                self.deliver(m);
            }
        }
        panic!("the network did not settle");
    }

    /// Moves the clock to `t` and ticks every node.
    fn tick(&mut self, t: Nanos) {
        self.now = t;
        for i in 0..self.nodes.len() {
            self.nodes[i].tick(t);
            self.collect(i);
        }
    }

    /// Delivers messages and runs the timers due up to `limit`, until `done`; returns
    /// whether it is.
    fn run_until(&mut self, limit: Nanos, done: impl Fn(&Net) -> bool) -> bool {
        for _ in 0..10_000 {
            self.run();
            if done(self) {
                return true;
            }
            let next = self.nodes.iter().filter_map(Node::next_deadline).min();
            match next {
                Some(t) if t <= limit => self.tick(t.max(self.now)),
                _ => return false,
            }
        }
        panic!("the timers did not settle");
    }

    /// Messages of `kind` node `i` sent to `to` (looped back, if `to` is `i`).
    fn sent(&self, i: usize, kind: MsgKind) -> u64 {
        self.nodes[i].stats().sent.get(kind)
    }

    fn holders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].valid_until(lock()).is_some())
            .collect()
    }
}

#[test]
fn single_node_flow_and_uncontended_cost() {
    // Three nodes, only node 0 asks: K = 2, so 5K = 10 messages (one of each kind to
    // itself, looped back, and one to node 1).
    let mut net = Net::started(3);
    let id = net.acquire(0);
    net.run();
    assert_eq!(net.granted, vec![(0, id, 1)]);
    net.release(0);
    net.run();
    let mut total = KindCounts::default();
    for n in &net.nodes {
        total += n.stats().sent;
        total += n.stats().looped;
    }
    let k = 2;
    for kind in [
        MsgKind::Request,
        MsgKind::Locked,
        MsgKind::Fence,
        MsgKind::FenceAck,
        MsgKind::Release,
    ] {
        assert_eq!(total.get(kind), k, "{}", kind.name());
    }
    assert_eq!(total.total(), 5 * k);
    // The next holder's token is higher.
    net.acquire(1);
    net.run();
    assert_eq!(net.granted[1].2, 2);
}

#[test]
fn inquire_and_relinquish_resolve_the_three_node_deadlock() {
    // Quorums {0,1}, {1,2}, {0,2}: each node votes for itself at once (loopback), so
    // node 0 waits for 1's vote, 1 for 2's, 2 for 0's: the cycle of the 1985 algorithm.
    let mut net = Net::started(3);
    for i in 0..3 {
        net.acquire(i);
    }
    for i in 0..3 {
        assert!(matches!(
            net.nodes[i].request(lock()),
            Some((
                _,
                RequestState::Waiting {
                    votes: 1,
                    quorum: 2
                }
            ))
        ));
    }
    // Each holder releases as soon as it is granted; nobody holds alongside another.
    let mut done = 0;
    for _ in 0..10 {
        net.run();
        let holders = net.holders();
        assert!(holders.len() <= 1, "two holders: {holders:?}");
        for i in holders {
            net.release(i);
            done += 1;
        }
    }
    assert_eq!(done, 3);
    let tokens: Vec<u64> = net.granted.iter().map(|g| g.2).collect();
    assert_eq!(tokens, vec![1, 2, 3]);
    let count = |kind| -> u64 {
        net.nodes
            .iter()
            .map(|n| n.stats().sent.get(kind) + n.stats().looped.get(kind))
            .sum()
    };
    let (inquires, yields) = (count(MsgKind::Inquire), count(MsgKind::Relinquish));
    assert!(
        inquires >= 1 && yields >= 1,
        "inquires {inquires}, yields {yields}"
    );
}

#[test]
fn duplicate_requests_are_idempotent() {
    let mut net = Net::started(3);
    net.acquire(0);
    // Node 0 asks node 1 (and itself). Deliver node 1's request twice.
    let req = net.queue.iter().copied().find(|m| m.to == 1).unwrap();
    net.queue.push_back(req);
    net.run();
    assert_eq!(net.granted.len(), 1);
    // The duplicate got the same vote again (same stamp), and one fence went out.
    assert_eq!(net.nodes[1].stats().sent.get(MsgKind::Locked), 2);
    assert_eq!(net.nodes[0].stats().sent.get(MsgKind::Fence), 1);
    // A duplicate after the grant changes nothing either.
    net.queue.push_back(req);
    net.run();
    assert_eq!(net.granted.len(), 1);
    assert!(net.nodes[0].valid_until(lock()).is_some());
    // Node 2 (quorum {0, 2}) waits behind node 0 at node 0, which says Failed; a
    // duplicate of its request gets the same answer, and nothing else.
    net.acquire(2);
    let req2 = net.queue.iter().copied().find(|m| m.to == 0).unwrap();
    net.run();
    let sent = net.nodes[0].stats().sent;
    assert_eq!(sent.get(MsgKind::Failed), 1);
    net.queue.push_back(req2);
    net.run();
    assert_eq!(net.nodes[0].stats().sent.get(MsgKind::Failed), 2);
    assert_eq!(net.nodes[0].stats().sent.total(), sent.total() + 1);
}

#[test]
fn stale_messages_are_dropped_or_answered_with_release() {
    let mut net = Net::started(3);
    let first = net.acquire(0);
    net.run();
    net.release(0);
    net.run();
    let second = net.acquire(0);
    net.run();
    assert_eq!(net.granted.len(), 2);
    // A Locked for the first attempt (delayed in the network): node 0 answers Release,
    // and node 1 ignores that Release (its vote is the second attempt's).
    let stale = Msg {
        epoch: EPOCH,
        from: 1,
        incarnation: 1,
        to: 0,
        clock: 1,
        lock: lock(),
        body: Body::Locked {
            id: first,
            high_water: 0,
            stamp: 1,
        },
    };
    let before = net.nodes[0].stats().stale;
    net.deliver(stale);
    assert_eq!(net.nodes[0].stats().stale, before + 1);
    assert!(matches!(net.queue.back().unwrap().body, Body::Release { id } if id == first));
    net.run();
    assert!(net.nodes[0].valid_until(lock()).is_some());
    // A Failed for the current attempt with an older stamp than the vote: dropped.
    let old_failed = Msg {
        body: Body::Failed {
            id: second,
            stamp: 0,
        },
        ..stale
    };
    let before = net.nodes[0].stats().stale;
    net.deliver(old_failed);
    assert_eq!(net.nodes[0].stats().stale, before + 1);
    assert!(net.nodes[0].valid_until(lock()).is_some());
    // A Relinquish of a vote that is not the current one: ignored.
    let relinquish = Msg {
        from: 0,
        to: 1,
        body: Body::Relinquish {
            id: second,
            stamp: 999,
        },
        ..stale
    };
    let before = net.nodes[1].stats().stale;
    net.deliver(relinquish);
    assert_eq!(net.nodes[1].stats().stale, before + 1);
    assert!(net.queue.is_empty());
    // A message from an older incarnation of the sender.
    net.nodes[1] = Node::new(config(3, 1), 2, 0, net.now).unwrap();
    let m = Msg {
        from: 1,
        to: 2,
        incarnation: 2,
        ..stale
    };
    let m = Msg {
        body: Body::Release {
            id: RequestId {
                node: 1,
                incarnation: 2,
                seq: 9,
            },
        },
        ..m
    };
    net.deliver(m);
    let old = Msg {
        incarnation: 1,
        body: Body::Release {
            id: RequestId {
                node: 1,
                incarnation: 1,
                seq: 9,
            },
        },
        ..m
    };
    let before = net.nodes[2].stats().stale;
    net.deliver(old);
    assert_eq!(net.nodes[2].stats().stale, before + 1);
}

#[test]
fn other_epochs_and_garbage_are_counted_and_dropped() {
    let mut net = Net::started(3);
    let id = RequestId {
        node: 1,
        incarnation: 1,
        seq: 1,
    };
    let good = Msg {
        epoch: EPOCH,
        from: 1,
        incarnation: 1,
        to: 0,
        clock: 5,
        lock: lock(),
        body: Body::Request { id, ts: 1 },
    };
    net.deliver(Msg {
        epoch: EPOCH + 1,
        ..good
    });
    assert_eq!(net.nodes[0].stats().other_epoch, 1);
    assert!(net.queue.is_empty());
    let garbage = [
        Msg { from: 3, ..good },
        Msg {
            from: NodeId::MAX,
            ..good
        },
        Msg { to: 2, ..good },
        // An id that is not the sender's.
        Msg { from: 2, ..good },
        Msg {
            body: Body::Request {
                id: RequestId {
                    incarnation: 2,
                    ..id
                },
                ts: 1,
            },
            ..good
        },
        // Answers about someone else's attempt.
        Msg {
            from: 1,
            body: Body::Locked {
                id,
                high_water: 0,
                stamp: 1,
            },
            ..good
        },
        Msg {
            from: 2,
            body: Body::FenceAck {
                id,
                token: 1,
                round: 0,
            },
            ..good
        },
    ];
    for m in garbage {
        let before = net.nodes[0].stats().invalid;
        net.nodes[0].handle(m, net.now);
        net.collect(0);
        assert_eq!(net.nodes[0].stats().invalid, before + 1, "{m:?}");
    }
    assert_eq!(net.nodes[0].stats().invalid, garbage.len() as u64);
    assert!(net.queue.is_empty());
    assert_eq!(net.nodes[0].stats().received.total(), 0);
    // Tokens out of range from a real quorum member.
    let id2 = RequestId {
        node: 2,
        incarnation: 1,
        seq: 1,
    };
    for token in [0, u64::MAX, MAX_TOKEN + 1] {
        net.deliver(Msg {
            from: 2,
            body: Body::Fence {
                id: id2,
                token,
                round: 1,
            },
            ..good
        });
    }
    assert_eq!(net.nodes[0].stats().invalid, garbage.len() as u64 + 3);
}

#[test]
fn random_messages_never_panic() {
    // splitmix64
    let mut x: u64 = 0x1234_5678;
    let mut next = move || {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut net = Net::started(5);
    net.acquire(0);
    net.run();
    for step in 0..20_000u64 {
        let small = |v: u64| v % 7;
        let id = RequestId {
            node: small(next()) as NodeId,
            incarnation: small(next()),
            seq: small(next()),
        };
        let body = match next() % 9 {
            0 => Body::Request { id, ts: next() % 4 },
            1 => Body::Locked {
                id,
                high_water: next(),
                stamp: small(next()),
            },
            2 => Body::Failed {
                id,
                stamp: small(next()),
            },
            3 => Body::Inquire {
                id,
                stamp: small(next()),
            },
            4 => Body::Relinquish {
                id,
                stamp: small(next()),
            },
            5 => Body::Fence {
                id,
                token: if next() % 2 == 0 {
                    next()
                } else {
                    small(next())
                },
                round: small(next()),
            },
            6 => Body::FenceAck {
                id,
                token: small(next()),
                round: small(next()),
            },
            7 => Body::Renew {
                id,
                token: small(next()),
                round: small(next()),
            },
            _ => Body::Release { id },
        };
        let m = Msg {
            epoch: if next() % 50 == 0 { 1 } else { EPOCH },
            from: small(next()) as NodeId,
            incarnation: small(next()),
            to: (next() % 5) as NodeId,
            clock: next(),
            lock: LockName(next() % 3),
            body,
        };
        net.now = Nanos(net.now.0 + next() % (10 * MS));
        net.deliver(m);
        if step % 100 == 0 {
            let _ = net.nodes[(next() % 5) as usize].acquire(LockName(next() % 3), net.now);
            net.queue.clear();
        }
        if net.queue.len() > 1000 {
            net.queue.clear();
        }
    }
}

#[test]
fn lock_delay_after_restart() {
    let mut net = Net::started(3);
    // Node 0 restarts (incarnation 2) at 10 s; node 2 (quorum {0, 2}) asks at once.
    let restart = Nanos(10 * LEASE);
    net.nodes[0] = Node::new(config(3, 0), 2, 0, restart).unwrap();
    net.now = restart;
    net.acquire(2);
    net.run();
    assert!(net.granted.is_empty());
    assert!(matches!(
        net.nodes[2].request(lock()),
        Some((
            _,
            RequestState::Waiting {
                votes: 1,
                quorum: 2
            }
        ))
    ));
    // Node 0 grants when its lock-delay ends, not before.
    assert_eq!(net.nodes[0].next_deadline(), Some(restart.after(LEASE)));
    net.tick(restart.after(LEASE - 1));
    net.run();
    assert!(net.granted.is_empty());
    net.tick(restart.after(LEASE));
    net.run();
    assert_eq!(net.granted.len(), 1);
}

#[test]
fn a_restart_never_lowers_the_fencing_mark() {
    let mut net = Net::started(3);
    net.acquire(0);
    net.run();
    assert_eq!(net.granted[0].2, 1);
    // Both arbiters persisted a reservation covering token 1.
    assert_eq!(net.persisted[0], HIGH_WATER_BLOCK);
    assert_eq!(net.persisted[1], HIGH_WATER_BLOCK);
    net.release(0);
    net.run();
    // Node 1 restarts from its reservation; node 0 asks {0, 1} again.
    let t = Nanos(10 * LEASE);
    net.nodes[1] = Node::new(config(3, 1), 2, net.persisted[1], t).unwrap();
    net.tick(t.after(LEASE));
    net.acquire(0);
    net.run();
    assert_eq!(net.granted[1].2, HIGH_WATER_BLOCK + 1);
}

#[test]
fn an_expired_vote_goes_to_the_next_request() {
    let mut net = Net::started(3);
    // Node 0 (quorum {0, 1}) gets node 1's vote, then goes silent: nothing it sends
    // reaches anyone any more.
    net.acquire(0);
    let silent = net
        .queue
        .iter()
        .copied()
        .filter(|m| m.to == 1)
        .collect::<Vec<_>>();
    net.queue.clear();
    for m in silent {
        net.deliver(m);
    }
    net.queue.clear(); // node 0 never hears the vote
    net.drop = Box::new(|m| m.from == 0);
    // Node 1 (quorum {1, 2}) asks; node 1's vote is node 0's.
    net.acquire(1);
    net.run();
    assert!(net.granted.is_empty());
    // The vote lapses a lease after node 1 last heard node 0.
    let t0 = net.now;
    net.tick(t0.after(LEASE - 1));
    net.run();
    assert!(net.granted.is_empty());
    net.tick(t0.after(LEASE));
    net.run();
    assert_eq!(net.granted.len(), 1);
    assert_eq!(net.granted[0].0, 1);
    assert_eq!(net.nodes[1].stats().lapsed, 1);
}

#[test]
fn renewals_keep_the_lock_and_their_loss_loses_it() {
    let mut net = Net::started(3);
    net.acquire(0);
    net.run();
    let first = net.nodes[0].valid_until(lock()).unwrap();
    assert!(first <= net.now.after(LEASE));
    // Renewals every third of the lease keep it valid well past one lease.
    let mut t = net.now;
    for _ in 0..12 {
        t = t.after(LEASE / 6);
        net.tick(t);
        net.run();
    }
    let renewed = net.nodes[0].valid_until(lock()).unwrap();
    assert!(renewed > first.after(LEASE), "{renewed:?} vs {first:?}");
    assert!(net.lost.is_empty());
    // Node 1 stops answering: the lock is lost when the validity runs out.
    net.drop = Box::new(|m| m.from == 1);
    while net.lost.is_empty() {
        t = t.after(LEASE / 10);
        net.tick(t);
        net.run();
        assert!(t <= renewed.after(LEASE), "never lost");
    }
    assert_eq!(net.lost, vec![(0, LostReason::Expired)]);
    assert!(t >= renewed);
    assert_eq!(net.nodes[0].valid_until(lock()), None);
    assert_eq!(net.nodes[0].stats().lost, 1);
}

#[test]
fn a_renewal_refused_by_a_restarted_arbiter_loses_the_lock() {
    let mut net = Net::started(3);
    net.acquire(0);
    net.run();
    // Node 1 restarts: it forgot the vote, and answers the next renewal with Failed.
    net.nodes[1] = Node::new(config(3, 1), 2, net.persisted[1], net.now).unwrap();
    let t = net.now.after(LEASE / 3);
    net.tick(t);
    net.run();
    assert_eq!(net.lost, vec![(0, LostReason::Revoked)]);
}

#[test]
fn cancel_withdraws_a_queued_request() {
    let mut net = Net::started(3);
    net.acquire(0);
    net.run();
    // Node 1 (quorum {1, 2}) waits: node 0 holds node 1's vote.
    net.acquire(1);
    net.run();
    assert!(net.nodes[1].valid_until(lock()).is_none());
    assert!(net.nodes[1].cancel(lock(), net.now).is_some());
    net.collect(1);
    net.run();
    assert_eq!(net.nodes[1].request(lock()), None);
    // Node 0 releases; nobody gets the lock, and node 1 can ask again.
    net.release(0);
    net.run();
    assert_eq!(net.granted.len(), 1);
    net.acquire(1);
    net.run();
    assert_eq!(net.granted.len(), 2);
    assert_eq!(
        net.nodes[1].acquire(lock(), net.now).unwrap_err().pending,
        net.granted[1].1
    );
    assert_eq!(net.nodes[2].release(lock(), net.now), Err(NotHeld));
}

#[test]
fn config_is_checked() {
    let bad = |f: &dyn Fn(&mut Config)| {
        let mut c = config(3, 0);
        f(&mut c);
        Node::new(c, 1, 0, Nanos(0)).unwrap_err()
    };
    assert_eq!(
        bad(&|c| c.node = 3),
        ConfigError::NodeOutOfRange { node: 3, nodes: 3 }
    );
    assert_eq!(
        bad(&|c| c.retransmit = Duration::ZERO),
        ConfigError::RetransmitOutOfRange
    );
    assert_eq!(
        bad(&|c| c.retransmit = c.lease),
        ConfigError::RetransmitOutOfRange
    );
    assert_eq!(
        bad(&|c| c.epsilon_ppm = 200_000),
        ConfigError::EpsilonTooLarge { ppm: 200_000 }
    );
    assert_eq!(
        bad(&|c| c.lease = Duration::ZERO),
        ConfigError::LeaseTooShort
    );
}

#[test]
fn an_acknowledgement_of_an_earlier_fencing_attempt_does_not_count() {
    // Found by the simulator: a requester fenced token T, lost a vote and fenced T
    // again later; the first attempt's delayed FenceAck, from an arbiter whose vote had
    // lapsed meanwhile, completed the second attempt. Rounds tell them apart.
    let mut net = Net::started(3);
    let id = net.acquire(0); // quorum {0, 1}; node 0 votes for itself at once
    let request = net.queue.pop_front().unwrap();
    net.deliver(request);
    let locked = net.queue.pop_front().unwrap();
    net.deliver(locked);
    let fence = net.queue.pop_front().unwrap();
    assert!(matches!(
        fence.body,
        Body::Fence {
            token: 1,
            round: 1,
            ..
        }
    ));
    net.deliver(fence);
    let old_ack = net.queue.pop_front().unwrap();
    assert!(matches!(
        old_ack.body,
        Body::FenceAck {
            token: 1,
            round: 1,
            ..
        }
    ));
    // A new vote from node 1 (as after a lapse and a new grant): fence again, same
    // token, next round.
    let Body::Locked { stamp, .. } = locked.body else {
        unreachable!()
    };
    let new_vote = Msg {
        body: Body::Locked {
            id,
            high_water: 0,
            stamp: stamp + 5,
        },
        ..locked
    };
    net.deliver(new_vote);
    assert!(matches!(
        net.queue.back().unwrap().body,
        Body::Fence {
            token: 1,
            round: 2,
            ..
        }
    ));
    net.queue.clear();
    let before = net.nodes[0].stats().stale;
    net.deliver(old_ack);
    assert!(net.granted.is_empty());
    assert_eq!(net.nodes[0].stats().stale, before + 1);
    assert!(matches!(
        net.nodes[0].request(lock()),
        Some((_, RequestState::Fencing { token: 1 }))
    ));
}

#[test]
fn an_arbiter_votes_for_a_node_outside_its_quorums() {
    // Node 1's own quorum is {1, 2}, but a requester asks whichever quorum it believes
    // up: node 0 votes for it like for anyone.
    let mut net = Net::started(3);
    assert!(!Majority::new(3).quorum(1).contains(&0));
    let id = RequestId {
        node: 1,
        incarnation: 1,
        seq: 1,
    };
    let request = Msg {
        epoch: EPOCH,
        from: 1,
        incarnation: 1,
        to: 0,
        clock: 5,
        lock: lock(),
        body: Body::Request { id, ts: 5 },
    };
    net.deliver(request);
    assert_eq!(net.nodes[0].stats().invalid, 0);
    assert_eq!(net.nodes[0].stats().received.get(MsgKind::Request), 1);
    let answer = net.queue.pop_front().expect("an answer");
    assert_eq!((answer.from, answer.to), (0, 1));
    assert!(matches!(answer.body, Body::Locked { id: a, .. } if a == id));
    // The vote is node 1's: node 0's own attempt waits behind it.
    net.acquire(0);
    net.run();
    assert!(net.granted.is_empty());
    assert_eq!(net.nodes[0].stats().looped.get(MsgKind::Failed), 1);
}

#[test]
fn a_waiting_attempt_moves_off_a_dead_member() {
    // Node 1 is down: nothing reaches it or comes from it. Node 0's own quorum {0, 1}
    // holds it.
    let mut net = Net::started(3);
    net.drop = Box::new(|m| m.to == 1 || m.from == 1);
    let id = net.acquire(0);
    let t0 = net.now;
    assert_eq!(net.nodes[0].request_quorum(lock()), Some(&[0, 1][..]));
    // Short of a lease, it waits (with its own vote) and suspects nobody.
    assert!(!net.run_until(t0.after(LEASE - 1), |n| !n.granted.is_empty()));
    assert!(net.now >= t0.after(LEASE / 2), "{:?}", net.now);
    assert!(!net.nodes[0].is_suspected(1));
    assert!(matches!(
        net.nodes[0].request(lock()),
        Some((
            _,
            RequestState::Waiting {
                votes: 1,
                quorum: 2
            }
        ))
    ));
    // A lease after its first unanswered request, node 1 is suspected, and the attempt
    // moves to {0, 2}: Release to node 1, Request to node 2, node 0's vote kept.
    let releases = net.sent(0, MsgKind::Release);
    assert!(net.run_until(t0.after(2 * LEASE), |n| !n.granted.is_empty()));
    assert!(net.now >= t0.after(LEASE));
    assert_eq!(net.granted, vec![(0, id, 1)]);
    assert!(net.nodes[0].is_suspected(1));
    assert_eq!(net.nodes[0].request_quorum(lock()), Some(&[0, 2][..]));
    let stats = net.nodes[0].stats();
    assert_eq!((stats.moves, stats.suspicions), (1, 1));
    // Its own vote was kept (never released).
    assert_eq!(stats.looped.get(MsgKind::Release), 0);
    assert_eq!(net.sent(0, MsgKind::Release), releases + 1);
    assert!(net.nodes[2].stats().received.get(MsgKind::Request) >= 1);
    // The next attempt goes straight to the live quorum.
    net.release(0);
    net.run();
    net.acquire(0);
    assert_eq!(net.nodes[0].request_quorum(lock()), Some(&[0, 2][..]));
    net.run();
    assert_eq!(net.granted.len(), 2);
    assert_eq!(net.nodes[0].stats().moves, 1);
}

#[test]
fn a_held_attempt_never_moves() {
    let mut net = Net::started(3);
    let id = net.acquire(0);
    net.run();
    assert_eq!(net.granted, vec![(0, id, 1)]);
    // The driver says node 1 is down: the holder keeps its quorum (the token was
    // acknowledged there) and sends nothing.
    net.nodes[0].set_alive(1, false, net.now);
    net.collect(0);
    assert!(net.nodes[0].is_suspected(1));
    assert!(net.queue.is_empty());
    assert_eq!(net.nodes[0].request_quorum(lock()), Some(&[0, 1][..]));
    // Node 1 really is down: renewals fail and the lease ends the lock; it never moved.
    net.drop = Box::new(|m| m.to == 1 || m.from == 1);
    let t = net.now;
    let lost = net.run_until(t.after(2 * LEASE), |n| {
        if n.lost.is_empty() {
            assert_eq!(n.nodes[0].request_quorum(lock()), Some(&[0, 1][..]));
            assert!(n.nodes[0].valid_until(lock()).is_some());
        }
        !n.lost.is_empty()
    });
    assert!(lost);
    assert_eq!(net.lost, vec![(0, LostReason::Expired)]);
    assert_eq!(net.nodes[0].stats().moves, 0);
    // The next attempt starts on a quorum without the suspected node, and its token is
    // higher (node 0 is in both quorums).
    net.acquire(0);
    assert_eq!(net.nodes[0].request_quorum(lock()), Some(&[0, 2][..]));
    net.run();
    assert_eq!(net.granted.len(), 2);
    assert_eq!(net.granted[1].2, 2);
}

#[test]
fn a_message_from_a_suspected_node_clears_the_suspicion() {
    let mut net = Net::started(3);
    net.drop = Box::new(|m| m.to == 1 || m.from == 1);
    net.acquire(0);
    let t0 = net.now;
    assert!(net.run_until(t0.after(2 * LEASE), |n| n.nodes[0].is_suspected(1)));
    net.queue.clear();
    let from_1 = Msg {
        epoch: EPOCH,
        from: 1,
        incarnation: 1,
        to: 0,
        clock: 1,
        lock: lock(),
        body: Body::Release {
            id: RequestId {
                node: 1,
                incarnation: 1,
                seq: 9,
            },
        },
    };
    // A malformed message proves nothing...
    net.nodes[0].handle(Msg { to: 2, ..from_1 }, net.now);
    net.collect(0);
    assert_eq!(net.nodes[0].stats().invalid, 1);
    assert!(net.nodes[0].is_suspected(1));
    // ...but any well-formed one does, even one about nothing node 0 knows.
    let stale = net.nodes[0].stats().stale;
    net.deliver(from_1);
    assert_eq!(net.nodes[0].stats().stale, stale + 1);
    assert!(!net.nodes[0].is_suspected(1));
    // Node 0 holds on {0, 2} meanwhile; its next attempt asks its own quorum again.
    net.drop = Box::new(|_| false);
    net.run();
    net.release(0);
    net.run();
    net.acquire(0);
    assert_eq!(net.nodes[0].request_quorum(lock()), Some(&[0, 1][..]));
    net.run();
    assert_eq!(net.granted.len(), 2);
    // The driver can say so too.
    net.nodes[0].set_alive(2, false, net.now);
    assert!(net.nodes[0].is_suspected(2));
    net.nodes[0].set_alive(2, true, net.now);
    assert!(!net.nodes[0].is_suspected(2));
    net.nodes[0].set_alive(0, false, net.now);
    assert!(!net.nodes[0].is_suspected(0), "never itself");
}

#[test]
fn a_fencing_attempt_whose_member_dies_falls_back_and_moves() {
    // Node 1 votes for node 0, then dies before it acknowledges the fence.
    let mut net = Net::started(3);
    let id = net.acquire(0);
    let request = net.queue.pop_front().unwrap();
    assert_eq!(request.to, 1);
    net.deliver(request);
    let locked = net.queue.pop_front().unwrap();
    net.deliver(locked);
    assert!(matches!(
        net.nodes[0].request(lock()),
        Some((_, RequestState::Fencing { token: 1 }))
    ));
    net.drop = Box::new(|m| m.to == 1 || m.from == 1);
    let t0 = net.now;
    assert!(net.run_until(t0.after(3 * LEASE), |n| !n.granted.is_empty()));
    // A lease after the unanswered fence: back to waiting, off to {0, 2}, fenced there.
    // Node 0's own vote, fenced at 1, lapsed meanwhile (a fencing attempt does not keep
    // the votes that acknowledged alive), so it was granted again over a mark of 1.
    assert!(net.now >= t0.after(LEASE));
    assert_eq!(net.granted, vec![(0, id, 2)]);
    assert_eq!(net.nodes[0].request_quorum(lock()), Some(&[0, 2][..]));
    assert_eq!(net.nodes[0].stats().moves, 1);
    // Renewals work on the new quorum.
    let valid = net.nodes[0].valid_until(lock()).unwrap();
    let t = net.now;
    net.tick(t.after(LEASE / 2));
    net.run();
    assert!(net.nodes[0].valid_until(lock()).unwrap() > valid);
    assert!(net.lost.is_empty());
}

#[test]
fn arbiters_answer_requests_they_cannot_grant_yet() {
    // A requester that hears nothing from a member for a lease suspects it, so an
    // arbiter answers even when it has no vote to give: during its lock-delay, and to a
    // request that outranks a holder that fenced (and will not give the vote back).
    let mut net = Net::new(3); // at 0: in the lock-delay
    net.acquire(2); // quorum {0, 2}
    net.run();
    assert_eq!(net.sent(0, MsgKind::Failed), 1);
    assert!(net.granted.is_empty());
    net.nodes[2].cancel(lock(), net.now);
    net.collect(2);
    net.run();

    let mut net = Net::started(3);
    net.acquire(0);
    net.run();
    assert_eq!(net.granted.len(), 1);
    // Node 2's request with an older timestamp than the holder's outranks it.
    let id = RequestId {
        node: 2,
        incarnation: 1,
        seq: 1,
    };
    let failed = net.nodes[0].stats().looped.get(MsgKind::Failed) + net.sent(0, MsgKind::Failed);
    net.deliver(Msg {
        epoch: EPOCH,
        from: 2,
        incarnation: 1,
        to: 0,
        clock: 0,
        lock: lock(),
        body: Body::Request { id, ts: 0 },
    });
    let to_2: Vec<Msg> = net.queue.iter().copied().filter(|m| m.to == 2).collect();
    assert!(
        matches!(to_2[..], [Msg { body: Body::Failed { id: a, .. }, .. }] if a == id),
        "{to_2:?}"
    );
    assert_eq!(
        net.nodes[0].stats().looped.get(MsgKind::Failed) + net.sent(0, MsgKind::Failed),
        failed + 1
    );
    // The holder keeps the lock.
    net.queue.retain(|m| m.to != 2);
    net.run();
    assert!(net.nodes[0].valid_until(lock()).is_some());
}

#[test]
fn a_lock_no_longer_renewed_runs_out_without_freeing_votes_early() {
    let mut net = Net::started(3);
    net.acquire(0);
    net.run();
    let valid = net.nodes[0].valid_until(lock()).unwrap();
    assert!(net.nodes[0].stop_renewing(lock(), net.now));
    assert!(
        !net.nodes[1].stop_renewing(lock(), net.now),
        "node 1 has no attempt"
    );
    let renews = net.nodes[0].stats().sent.get(MsgKind::Renew);
    // Node 1 asks while node 0 still holds: it waits, however long node 0 holds.
    net.acquire(1);
    net.run();
    let mut t = net.now;
    while net.lost.is_empty() {
        t = t.after(LEASE / 20);
        assert!(t <= valid.after(LEASE), "never lost");
        net.tick(t);
        net.run();
        if t < valid {
            assert_eq!(net.holders(), vec![0], "at {t:?}, valid until {valid:?}");
        }
    }
    assert_eq!(net.lost, vec![(0, LostReason::Expired)]);
    assert!(
        t >= valid,
        "lost at {t:?} before the validity ended at {valid:?}"
    );
    assert_eq!(
        net.nodes[0].stats().sent.get(MsgKind::Renew),
        renews,
        "renewed anyway"
    );
    // Then the votes go to node 1.
    for _ in 0..40 {
        t = t.after(LEASE / 10);
        net.tick(t);
        net.run();
    }
    assert_eq!(net.holders(), vec![1]);
}

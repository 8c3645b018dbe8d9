//! Distributed locking across hosts: Maekawa's quorum algorithm with leases and
//! fencing tokens (work in progress, issue 13).
//!
//! - [`quorum`]: quorum systems (majority, grid, finite projective plane), each checked
//!   at construction so that every two quorums intersect.
//! - [`protocol`]: the sans-IO protocol core, a state machine fed messages and clock
//!   readings, so that the same code runs in the simulator and over real transports.
//! - [`FencingToken`] and [`FencedResource`]: what makes a holder that lost its lease
//!   harmless.
//! - [`Lock`]: one interface for the Bakery lock (one host) and the distributed lock.
//! - [`NodeState`]: a node's incarnation and token reservation across restarts.
//! - [`LockNode`]: the protocol core driven over RPC ([`service`]: the peer and local
//!   services), and [`DistLock`]: the lock as a process of a host takes it.
//! - [`NodeConfig`]: a node's configuration file (members, quorum system, timing,
//!   state file), parsed and checked.

#![deny(unsafe_code)]

mod client;
mod config;
mod fence;
mod lock;
mod node;
mod outbox;
pub mod protocol;
pub mod quorum;
pub mod service;
mod state;
mod tasks;

pub use client::{DistGuard, DistLock, DistLockError, HOST_PARTICIPANTS};
pub use config::{ConfigFileError, NodeConfig, QuorumChoice};
pub use fence::{FenceError, FencedResource, FencingToken};
pub use lock::{LocalGuard, Lock, LockGuard, LockLost, LostReason};
pub use node::{LockNode, NodeOptions, StartError, monotonic_now};
pub use state::{NodeState, StateError};

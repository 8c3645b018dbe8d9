//! The rings (`shmlink::ring`) within one process, one module per ring as in
//! `src/ring/`:
//! - `spsc`: capacity checks, full/empty, FIFO order across wrap-arounds, roles,
//!   disconnects, timeouts, batches and chunks, element types, named rings, corrupted
//!   positions written from outside, dead role holders, and threaded streams (one case
//!   kills a child process that created rings before anyone claimed their other end);
//! - `mpmc`: API, exactly-once delivery between threads, and the repair of slots left
//!   unfinished by dead participants (a dead process's claim written into a named
//!   ring's segment);
//! - `frame`: round trips of many sizes, wrap-around, limits, and corrupted headers
//!   written into a named ring's segment.
//!
//! Rings between processes are in `tests/ring_cross_process.rs`.

#[path = "../support/mod.rs"]
mod support;

mod close;
mod frame;
mod mpmc;
mod spsc;

// The scenario a child process runs (see tests/support) is in `spsc`.
use spsc::create_rings_and_hang;

scenarios!(create_rings_and_hang);

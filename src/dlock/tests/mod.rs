//! loom models of the lock node's in-process primitives (crate-private, so they run
//! from inside the crate): `RUSTFLAGS="--cfg shmlink_loom" cargo test --release --lib
//! loom_ --target-dir target/loom`.

mod loom_outbox;
mod loom_tasks;

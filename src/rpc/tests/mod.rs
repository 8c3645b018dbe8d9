//! loom models of the RPC layer's in-process primitives (crate-private, so they run
//! from inside the crate): `RUSTFLAGS="--cfg shmlink_loom" cargo test --release --lib
//! loom_ --target-dir target/loom`.

mod loom_handoff;
mod loom_pool;
mod loom_stop;

//! loom models of the Bakery lock's recovery paths (see `loom_bakery_recovery`): they
//! use the crate-private death controls, so they run from inside the crate.

mod loom_bakery_recovery;
mod loom_semaphore_recovery;

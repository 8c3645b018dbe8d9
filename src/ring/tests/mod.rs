//! loom models of the rings' recovery paths: a participant dies at a chosen step
//! (`process::crash`), and the survivors and repairers race on. They use the
//! crate-private death controls, so they run from inside the crate.

mod loom_mpmc_recovery;
mod loom_spsc_recovery;

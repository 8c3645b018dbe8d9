//! Crash points: the named steps of the crate's multi-step shared-memory protocols,
//! where a test can stop a participant as if its process had been killed there.
//!
//! Every protocol that leaves shared state half-changed between two stores (claiming a
//! ring role, publishing a slot, taking a Bakery ticket, ...) calls [`point`] after
//! each such step, with the protocol's name and the step's number (1, 2, ... in program
//! order). In normal builds [`point`] is an empty inline function and [`dying`] is
//! `false`: nothing is left in the code.
//!
//! - Under `--cfg shmlink_loom`, a model thread given a plan with `crash::loom::die_at`
//!   marks its token dead (`process::loom::kill`) when it
//!   reaches that step and unwinds; `crash::loom::run` catches the unwind. Drop impls that
//!   would release shared state check [`dying`] and leave it as a killed process would.
//! - With the `crash-points` feature (tests only, outside semver), a process started
//!   with `SHMLINK_CRASH_AT=PROTOCOL:STEP` sends itself `SIGKILL` right after that step
//!   (the first time it is reached); a driver tries STEP = 1, 2, ... until a child
//!   finishes without dying (`tests/crash_points.rs`).

/// Marks the end of step `step` of `protocol` (see the module docs).
#[inline(always)]
pub(crate) fn point(protocol: &'static str, step: u32) {
    #[cfg(shmlink_loom)]
    loom::reached(protocol, step);
    #[cfg(all(feature = "crash-points", not(shmlink_loom)))]
    armed::reached(protocol, step);
    let _ = (protocol, step);
}

/// Whether the calling thread is unwinding from a crash point: Drop impls that release
/// shared state must then leave it as it is (a killed process releases nothing).
#[inline(always)]
pub(crate) fn dying() -> bool {
    #[cfg(shmlink_loom)]
    {
        loom::is_dying()
    }
    #[cfg(not(shmlink_loom))]
    {
        false
    }
}

/// Crash points under loom: a participant dies at a chosen step.
#[cfg(shmlink_loom)]
pub mod loom {
    use std::cell::Cell;

    ::loom::thread_local! {
        static PLAN: Cell<Option<(&'static str, u32)>> = Cell::new(None);
        static DYING: Cell<bool> = Cell::new(false);
    }

    /// The unwind payload of a crash point.
    #[derive(Debug)]
    pub struct Died;

    /// Plans the calling model thread's death right after `step` of `protocol`.
    pub fn die_at(protocol: &'static str, step: u32) {
        PLAN.with(|p| p.set(Some((protocol, step))));
    }

    pub(super) fn reached(protocol: &'static str, step: u32) {
        if PLAN.with(Cell::get) == Some((protocol, step)) {
            PLAN.with(|p| p.set(None));
            DYING.with(|d| d.set(true));
            crate::process::loom::kill(crate::process::current_token());
            std::panic::resume_unwind(Box::new(Died));
        }
    }

    pub(super) fn is_dying() -> bool {
        DYING.with(Cell::get)
    }

    /// Runs `f`, which may die at its planned crash point: `true` if it died there,
    /// `false` if it returned (the plan was not reached). Any other panic propagates.
    pub fn run(f: impl FnOnce()) -> bool {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(()) => {
                PLAN.with(|p| p.set(None));
                false
            }
            Err(e) if e.is::<Died>() => true,
            Err(e) => std::panic::resume_unwind(e),
        }
    }
}

/// Crash points in a process (the `crash-points` feature): `SIGKILL` at a chosen step.
#[cfg(all(feature = "crash-points", not(shmlink_loom)))]
mod armed {
    use std::sync::OnceLock;

    /// `(protocol, step)` from `SHMLINK_CRASH_AT`, if set and well formed.
    fn plan() -> &'static Option<(String, u32)> {
        static PLAN: OnceLock<Option<(String, u32)>> = OnceLock::new();
        PLAN.get_or_init(|| {
            let v = std::env::var("SHMLINK_CRASH_AT").ok()?;
            let (p, s) = v.rsplit_once(':')?;
            Some((p.to_owned(), s.parse().ok()?))
        })
    }

    pub(super) fn reached(protocol: &'static str, step: u32) {
        if let Some((p, s)) = plan()
            && p == protocol
            && *s == step
        {
            // SAFETY: kill and getpid have no memory-safety preconditions.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
    }
}

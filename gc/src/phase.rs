//! Whether a collection cycle is in progress, and waiting for its end.
//!
//! A concurrent cycle is *busy* from its initial-mark pause until its compaction has finished
//! and its statistics are recorded; a stop-the-world cycle is never busy outside its own pause.
//! Collections, verification and `fork` wait for the busy cycle to end ([`CycleGate::wait_idle`])
//! before they stop the world, so two cycles never overlap.
//!
//! Invariants:
//! - `idle` (behind its mutex) is false exactly while a cycle is busy; it is set false only in
//!   a pause (the initial mark) and set true only by the thread running that cycle, after the
//!   cycle is recorded;
//! - waiters block on the condition variable (no polling); every transition to idle notifies
//!   all of them.

use std::sync::{Condvar, Mutex, PoisonError};

/// The busy/idle state of the heap's collection cycle.
#[derive(Debug)]
pub(crate) struct CycleGate {
    idle: Mutex<bool>,
    idle_cv: Condvar,
}

impl Default for CycleGate {
    fn default() -> Self {
        CycleGate {
            idle: Mutex::new(true),
            idle_cv: Condvar::new(),
        }
    }
}

impl CycleGate {
    /// Block until no cycle is in progress.
    pub(crate) fn wait_idle(&self) {
        let mut g = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while !*g {
            g = self.idle_cv.wait(g).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Whether a cycle is in progress.
    pub(crate) fn is_busy(&self) -> bool {
        !*self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A cycle begins (its initial mark): collections and verification wait for its end.
    pub(crate) fn set_busy(&self) {
        *self.idle.lock().unwrap_or_else(PoisonError::into_inner) = false;
    }

    /// The cycle is over (and recorded).
    pub(crate) fn set_idle(&self) {
        *self.idle.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.idle_cv.notify_all();
    }
}

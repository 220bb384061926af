//! Whether a collection cycle is in progress, and waiting for its end.
//!
//! A concurrent cycle is *busy* from its initial-mark pause until its compaction has finished
//! and its statistics are recorded; a stop-the-world cycle is never busy outside its own pause.
//! Collections, verification and `fork` wait for the busy cycle to end
//! ([`CycleGate::wait_idle`]) before they stop the world, so two cycles never overlap.
//!
//! Invariants:
//! - the state is one atomic word: `BUSY` exactly while a cycle is in progress; it is set busy
//!   only in a pause (the initial mark) and set idle only by the thread running that cycle,
//!   after the cycle is recorded;
//! - waiters sleep on the word with a futex (no lock): a thread waiting here holds nothing, so
//!   a `fork` at any moment leaves the child a consistent gate (a mutex that a native thread
//!   held at the fork would stay locked in the child forever); every transition to idle wakes
//!   all of them.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::pagestate::{Futex, Sleeper};

const IDLE: u32 = 0;
const BUSY: u32 = 1;

/// The busy/idle state of the heap's collection cycle.
#[derive(Debug, Default)]
pub(crate) struct CycleGate {
    state: AtomicU32,
}

impl CycleGate {
    /// Block until no cycle is in progress.
    pub(crate) fn wait_idle(&self) {
        while self.state.load(Ordering::Acquire) == BUSY {
            Futex::sleep(&self.state, BUSY);
        }
    }

    /// Whether a cycle is in progress.
    pub(crate) fn is_busy(&self) -> bool {
        self.state.load(Ordering::Acquire) == BUSY
    }

    /// A cycle begins (its initial mark): collections and verification wait for its end.
    pub(crate) fn set_busy(&self) {
        self.state.store(BUSY, Ordering::Release);
    }

    /// The cycle is over (and recorded).
    pub(crate) fn set_idle(&self) {
        self.state.store(IDLE, Ordering::Release);
        Futex::wake_all(&self.state);
    }
}

//! Whether a collection cycle is in progress, which phase it is in, and waiting for its end.
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
//!   all of them;
//! - `phase` is informational (a relaxed atomic written by the thread running the cycle, read
//!   by [`crate::Heap::phase`]): it is [`CyclePhase::Idle`] whenever the gate is idle, except
//!   inside a stop-the-world cycle's own pause.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use crate::pagestate::{Futex, Sleeper};

const IDLE: u32 = 0;
const BUSY: u32 = 1;

/// Where the heap's collection cycle is ([`crate::Heap::phase`]).
///
/// A stop-the-world cycle goes through `Marking` and `Compacting` inside its one pause (only
/// threads that are not attached can observe it); a concurrent cycle is `Marking` from its
/// initial-mark pause, `Remark` in its remark+flip pause, `Compacting` after its flip until
/// the cycle is recorded, then `Idle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CyclePhase {
    /// No cycle is running.
    Idle,
    /// Marking (concurrently, or inside a stop-the-world pause).
    Marking,
    /// The remark (+ plan + flip) pause of a concurrent cycle.
    Remark,
    /// Compaction: concurrent after the flip, or inside a stop-the-world pause.
    Compacting,
}

impl CyclePhase {
    fn from_u8(v: u8) -> CyclePhase {
        match v {
            1 => CyclePhase::Marking,
            2 => CyclePhase::Remark,
            3 => CyclePhase::Compacting,
            _ => CyclePhase::Idle,
        }
    }
    fn to_u8(self) -> u8 {
        match self {
            CyclePhase::Idle => 0,
            CyclePhase::Marking => 1,
            CyclePhase::Remark => 2,
            CyclePhase::Compacting => 3,
        }
    }
}

impl core::fmt::Display for CyclePhase {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            CyclePhase::Idle => "idle",
            CyclePhase::Marking => "marking",
            CyclePhase::Remark => "remark",
            CyclePhase::Compacting => "compacting",
        })
    }
}

/// The busy/idle state of the heap's collection cycle.
#[derive(Debug, Default)]
pub(crate) struct CycleGate {
    state: AtomicU32,
    phase: AtomicU8,
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
        self.set_phase(CyclePhase::Marking);
    }

    /// The cycle is over (and recorded).
    pub(crate) fn set_idle(&self) {
        self.set_phase(CyclePhase::Idle);
        self.state.store(IDLE, Ordering::Release);
        Futex::wake_all(&self.state);
    }

    /// The running cycle enters `p`.
    pub(crate) fn set_phase(&self, p: CyclePhase) {
        self.phase.store(p.to_u8(), Ordering::Relaxed);
    }

    /// The phase of the running cycle.
    pub(crate) fn phase(&self) -> CyclePhase {
        CyclePhase::from_u8(self.phase.load(Ordering::Relaxed))
    }
}

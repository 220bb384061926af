//! The heap's shared data ([`HeapInner`]) and the public handle to it ([`Heap`]).
//!
//! `HeapInner` is plain data: one field per subsystem, each owning its own invariants (see the
//! module of its type). Code that runs a phase of the cycle receives the pieces it needs from
//! [`crate::cycle`]; only the cycle driver, the mutator API and the fork handlers see the whole.
//!
//! Fields and what guards them:
//! - `config`, `mode`: immutable after creation;
//! - `arena`, `moving`, `large`: see `faultline_heap::arena` and [`crate::space`];
//! - `sp`: the safepoint handshake; `gc_active` in it guards every field written in a pause;
//! - `gate`: whether a cycle is in progress ([`crate::phase`]);
//! - `marking`: the concurrent marker's shared state ([`crate::marking`]);
//! - `compaction`: the concurrent compaction's shared state ([`crate::compaction`]);
//! - `tables`: the mark and live-words bitmaps, written by marking and read by the plan of the
//!   same cycle (cycles never overlap: `gate`);
//! - `scratch`: the stop-the-world compaction buffer, behind its mutex (held by the cycle);
//! - `types`: the current registry snapshot, behind its lock (snapshots share append-only
//!   storage: a mutator keeps the snapshots it has borrowed from until its next `&mut self`
//!   point, see `Mutator::types_for`); `structs`: the heap structs
//!   registered (each once), behind its mutex (held while registering);
//! - `roots`: heap-wide roots ([`crate::roots`]), behind their own mutexes;
//! - `id`: unique per process, never reused (handles carry it to detect use with another heap);
//! - `trigger_bytes`, `cycles` (flips), `completed`: atomics written by the cycle (concurrent
//!   mode: the trigger is the pacer's decision);
//! - `pacer`: allocation and marking rates, the assist budget ([`crate::pacer`]);
//! - `history`, `fault_hist`, `release`, `waits`: statistics, behind a mutex or atomic;
//! - `plumbing`: the fault delivery, set once after creation and dropped first;
//! - `cards`, `gen`: the generational mode ([`crate::generational`]), set at creation; the
//!   old generation inside `gen` changes only with the world stopped.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The next heap id (ids are never reused within a process).
static NEXT_HEAP_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh heap id.
pub(crate) fn next_heap_id() -> u64 {
    NEXT_HEAP_ID.fetch_add(1, Ordering::Relaxed)
}
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use faultline_heap::fault::reader::FaultReader;
use faultline_heap::fault::sigbus::RegionGuard;
use faultline_heap::object::TypeRegistry;
use faultline_heap::VolatileArena;

use crate::compaction::Compaction;
use crate::config::HeapConfig;
use crate::marking::MarkingState;
use crate::mode::ResolvedMode;
use crate::pacer::Pacer;
use crate::phase::CycleGate;
use crate::plan::SideTables;
use crate::release::ReleaseState;
use crate::roots::HeapRoots;
use crate::safepoint::{Me, Safepoint};
use crate::space::{LargeSpace, MovingSpace};
use crate::stats::{AtomicHistogram, CycleStats};

/// Destination pages filled per COPY in stop-the-world compaction.
pub(crate) const BATCH_PAGES: usize = 64;

/// How faults reach the compactor; kept alive as long as the heap.
pub(crate) enum Plumbing {
    /// The SIGBUS region of the moving space.
    Sigbus(#[allow(dead_code)] RegionGuard),
    /// A handler thread reading the userfaultfd.
    Thread(#[allow(dead_code)] FaultReader),
}

/// Everything a heap is made of (see the module documentation for what guards each field).
pub(crate) struct HeapInner {
    /// Unique per process, never reused.
    pub id: u64,
    /// Fault plumbing (the SIGBUS region or the handler thread); dropped first.
    pub plumbing: OnceLock<Plumbing>,
    /// The validated configuration.
    pub config: HeapConfig,
    /// What runs (resolved once at creation).
    pub mode: ResolvedMode,
    /// Concurrent compaction state.
    pub compaction: Compaction,
    /// Concurrent marking state.
    pub marking: MarkingState,
    /// Whether a cycle is in progress.
    pub gate: CycleGate,
    /// The volatile arena.
    pub arena: VolatileArena,
    /// The moving space.
    pub moving: MovingSpace,
    /// The large-object space.
    pub large: LargeSpace,
    /// Mark and live-words bitmaps.
    pub tables: Arc<SideTables>,
    /// Stop-the-world compaction buffer (also serialises the cycle's pause work).
    pub scratch: Mutex<Vec<u8>>,
    /// The current type registry.
    pub types: RwLock<Arc<TypeRegistry>>,
    /// Heap structs registered so far ([`crate::Heap::register_struct`]): the Rust type's id
    /// to its type id here (registration is once per struct).
    pub structs:
        Mutex<std::collections::HashMap<core::any::TypeId, faultline_heap::object::TypeId>>,
    /// The safepoint handshake.
    pub sp: Safepoint,
    /// Heap-wide roots.
    pub roots: HeapRoots,
    /// Identity hash codes of the objects asked for one (rewritten in the flip pause).
    pub hashes: crate::hashes::IdentityHashes,
    /// Occupancy at which the next cycle starts.
    pub trigger_bytes: AtomicUsize,
    /// The pacer (concurrent mode).
    pub pacer: Pacer,
    /// Fresh memory made present ahead of the allocators (concurrent mode).
    pub prefill: crate::prefill::Prefill,
    /// The GC thread, kept between concurrent cycles, and the cycles handed to it.
    pub gc_thread: crate::gcthread::Runner<GcJob, crate::background::SchedKey>,
    /// The helper threads of stop-the-world cycles' parallel phases, kept between cycles and
    /// lent to the thread that stopped the world ([`crate::crew::lend`]).
    pub pause_crew: Mutex<crate::crew::Crew>,
    /// Cycles that reached their flip (a stop-the-world cycle flips at its end).
    pub cycles: AtomicU64,
    /// Cycles completed and recorded (a concurrent cycle counts when its compaction is done).
    pub completed: AtomicU64,
    /// Next mutator id.
    pub next_mutator_id: AtomicU64,
    /// Recorded cycles (bounded by `config.history_limit`).
    pub history: Mutex<Vec<CycleStats>>,
    /// Mutator fault stalls (recorded by the fault resolver, possibly in signal context).
    pub fault_hist: AtomicHistogram,
    /// Released-half bookkeeping (failed releases, poisoning).
    pub release: ReleaseState,
    /// Every mutator's waits by cause ([`crate::waits`]).
    pub waits: crate::waits::WaitRegistry,
    /// Generational mode: the card table the store barrier marks (`None` otherwise, and with
    /// a remembered set that needs no barrier).
    pub cards: Option<Arc<crate::remset::CardTable>>,
    /// Generational mode: the old generation and the remembered set (`None` otherwise).
    pub gen: Option<crate::generational::GenState>,
}

/// A concurrent cycle handed to the GC thread ([`crate::gcthread`]); it holds the heap (a
/// strong reference) until it has run, as the thread running it does.
pub(crate) type GcJob = Box<dyn FnOnce() + Send>;

impl Drop for HeapInner {
    fn drop(&mut self) {
        // The parked GC thread finds the heap gone and ends.
        self.gc_thread.wake();
        // Stop fault delivery before the arena (a field dropped later) is unmapped. In a forked
        // child the handler thread does not exist: joining it would hang (see `fork`).
        match self.plumbing.take() {
            Some(p @ Plumbing::Thread(_)) if self.arena.is_forked() => std::mem::forget(p),
            p => drop(p),
        }
    }
}

impl HeapInner {
    /// Concurrent compaction is in effect in this process (never in a forked child: see
    /// [`crate::fork`]).
    pub(crate) fn concurrent_now(&self) -> bool {
        self.mode.concurrent() && !self.arena.is_forked()
    }

    /// This heap's identity within the process (for the per-thread attachment registry):
    /// its id, never reused, so a registry entry can never match a later heap.
    pub(crate) fn key(&self) -> u64 {
        self.id
    }

    /// A snapshot of the type registry.
    pub(crate) fn types(&self) -> Arc<TypeRegistry> {
        self.types
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Wait for the running cycle (if any) to end. A mutator waits in native state, so the
    /// cycle's pauses do not wait for it.
    pub(crate) fn wait_idle_as(&self, me: Me<'_>) {
        if !self.gate.is_busy() {
            return;
        }
        let _wait = crate::waits::Span::begin(crate::waits::WaitCause::CycleEnd);
        let _boost = crate::background::boost_while_waiting();
        self.sp.wait_native(me, || self.gate.wait_idle());
    }

    /// Whether `a` lies in heap memory that holds objects: the current half's used part, the
    /// large-object space, the old generation, or a stranded pinned object. A value whose era
    /// is current names such an address; the accessors check it before reading a header.
    /// The common case (the moving space's used part) is inlined into the accessors; the
    /// rest is out of line.
    #[inline(always)]
    pub(crate) fn holds_objects_at(&self, a: usize) -> bool {
        self.moving.contains_used(a) || self.holds_objects_elsewhere(a)
    }

    /// [`HeapInner::holds_objects_at`] outside the moving space's used part.
    #[inline(never)]
    fn holds_objects_elsewhere(&self, a: usize) -> bool {
        self.large.contains(a) || self.moving.contains_old(a) || self.roots.pins.is_stranded(a)
    }

    /// Bytes in use (moving space + large objects).
    pub(crate) fn used(&self) -> usize {
        self.moving.used() + self.large.used()
    }

    /// The occupancy trigger for the bytes in use after a cycle: `max(min_trigger_bytes,
    /// used x (1 + growth))` (the concurrent pacer's goal). Generational mode: `used` is the
    /// window's, and the old generation below it counts toward the goal as well
    /// ([`crate::generational::window_goal`]).
    pub(crate) fn occupancy_goal(&self, used: usize) -> usize {
        let (lo, hi) = self.moving.old_range();
        crate::generational::window_goal(
            used,
            hi - lo,
            self.config.growth,
            self.config.min_trigger_bytes,
        )
    }

    /// Bytes the mutators may allocate before the next flip, about: up to the occupancy goal
    /// for the bytes in use now (the next stop-the-world trigger; a concurrent cycle starts
    /// earlier, at its paced trigger, but frees nothing before its flip, near the goal). What
    /// recycling ([`crate::release`]) covers: no more, so a heap that shrank keeps no more
    /// pages than it will use.
    pub(crate) fn fresh_headroom(&self) -> usize {
        let used = self.used();
        self.occupancy_goal(used).saturating_sub(used)
    }

    /// Set the next occupancy trigger from the bytes in use after a cycle (stop-the-world).
    /// While pinned objects narrow the current half's window ([`crate::pins`]), the trigger
    /// stays an eighth of the window below its end, so that a collection is triggered before
    /// the window is exhausted (as the goal's trigger is, before a whole half is). (The
    /// generational old generation below the window narrows nothing here: young objects are
    /// counted from the window's start, and the generational policy bounds the old one.)
    pub(crate) fn set_trigger(&self, used: usize) {
        let mut goal = self.occupancy_goal(used);
        let (lo, hi) = self.moving.old_range();
        let (base, end) = (self.moving.base(), self.moving.end());
        let old_below = if hi == base { hi - lo } else { 0 };
        let window = end - base + old_below;
        if window < self.moving.half_bytes {
            goal = goal.min(self.large.used() + window - window / 8);
        }
        self.trigger_bytes.store(goal, Ordering::Relaxed);
    }

    /// Bytes mutators can hold before an allocation fails: the current half's window (the
    /// whole half unless pinned objects narrow it, see [`crate::pins`]) plus the large objects
    /// in use (the pacer's capacity).
    pub(crate) fn capacity(&self) -> usize {
        // The current half's window (the whole half unless pinned objects narrow it), and in
        // generational mode at most what the old generation leaves of a half: the young
        // objects alternate halves, and the next cycle may compact into the old one.
        let (lo, hi) = self.moving.old_range();
        let window = self.moving.end() - self.moving.base();
        window.min(self.moving.half_bytes - (hi - lo)) + self.large.used()
    }
}

/// A handle to a heap. Cheap to clone; the heap lives until the last clone and the last
/// mutator are gone.
#[derive(Clone)]
pub struct Heap {
    pub(crate) inner: Arc<HeapInner>,
}

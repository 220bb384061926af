//! # faultline-gc
//!
//! Faultline's collector, and the embedding API a language runtime programs against.
//!
//! ## The embedding API (public)
//!
//! - [`Heap`] (built from a [`HeapConfig`]) owns the volatile arena and its spaces; types are
//!   registered with [`Heap::register_type`].
//! - A thread attaches with [`Heap::attach`] and gets a [`Mutator`]: allocation
//!   ([`Mutator::alloc`]), the safepoint poll, native sections, handles ([`Root`]), a precise
//!   value stack, and object access through [`Local`]s that cannot outlive a safepoint.
//! - Heap memory and system calls: [`Mutator::read_into`] and its family (any rooted byte
//!   array, every mode), [`Mutator::alloc_pinned`] and [`Pin`] (non-moving, always present).
//! - Typed layouts: [`heap_struct!`] declares a heap type from a Rust struct;
//!   [`Heap::register_struct`] registers it (a [`HeapType`]), whose [`HeapType::view`] gives a
//!   [`Typed`] view reading and writing fields by name, type-checked (module `typed`).
//! - Runtimes report their own root slots ([`RootSlot`]s) through [`RootSource`];
//!   [`GlobalRoot`]s are usable from any thread.
//! - A [`Value`] records the era it was read in and is checked on every conversion back to an
//!   object: a stale or foreign value is refused, never read as whatever lies at its address
//!   (module `value`).
//! - Handles know their owner: a [`Root`] belongs to its mutator, a [`GlobalRoot`] to its heap
//!   (heaps have process-unique ids, [`Heap::id`]); misuse panics naming the mistake, and a
//!   reference of another heap is refused on every store. One mutator per heap per thread, and
//!   one heap per thread at a time ([`Heap::try_attach`], [`AttachError`]; [`Heap::with_mutator`]
//!   lends one that cannot be leaked; a wait on another
//!   heap while the thread's mutator runs is refused: [`CollectError::AttachedElsewhere`]).
//! - Weak references: [`Mutator::new_weak`] / [`Mutator::weak_get`] (cleared in the pause
//!   that finds the referent dead), ephemerons ([`Mutator::new_ephemeron`],
//!   [`Mutator::ephemeron_value`]) for weak tables, and [`FinalizationQueue`] (post-mortem
//!   cleanup: a dead target's held value is delivered to the queue); counts in
//!   [`CycleStats::weak`] and [`Heap::weak_stats`] ([`WeakStats`]).
//! - Cycle control: [`Mutator::collect`] / [`Heap::collect`] run a whole cycle and wait for
//!   it; [`Mutator::start_collection`] returns after the initial mark in concurrent mode;
//!   [`Heap::wait_for_cycle`], [`Heap::phase`] ([`CyclePhase`]), [`Heap::cycles`] (completed)
//!   and [`Heap::flips`].
//! - Errors: [`CollectError`] (re-entrant requests from a [`Callback`] are refused with
//!   [`CollectError::Reentrant`], never left to deadlock), wrapped by [`AllocError`].
//! - Telemetry: [`CycleStats`] per cycle ([`Heap::history`], the `on_cycle` hook) with the
//!   time to safepoint of every mutator ([`MutatorTts`]; name them with
//!   [`Heap::attach_named`]), [`FaultStats`], [`ModeInfo`] (what runs and why), and the mutators' own waits by
//!   cause ([`Heap::mutator_waits`], [`Heap::mutator_wait_log`]).
//!
//! ## Where things live (all internal modules are private to the crate)
//!
//! | concern | module |
//! |---|---|
//! | the cycle: its numbered phases, both collectors, who runs what | `cycle` |
//! | safepoint handshake: stop / resume, thread states, per-mutator shared state | `safepoint` |
//! | roots: handles, value stack, global roots, root sources | `roots` |
//! | identity hash codes that survive moves (a side table re-keyed at the flip) | `hashes` |
//! | typed layouts: `heap_struct!`, `HeapType`, `Typed` views | `typed` |
//! | `Value` and its era (stale and foreign values refused), `RootSlot` | `value` |
//! | marking: the shared tracer (plain / atomic slot access) | `trace` |
//! | concurrent marking: SATB queue, precleaning, remark, barrier-free rescans | `marking` |
//! | the gray objects shared by markers and assists (work-stealing deques) | `graypool` |
//! | mark assists: a bounded slice of marking in the allocation slow path | `assist` |
//! | planning: rank-based new addresses, page pieces, page filling | `plan` |
//! | concurrent compaction: page filling and mapping (copy / move / minor), workers | `compaction` |
//! | the page state machine (claim / publish / wait by futex) | `pagestate` |
//! | the fault path, SIGBUS and handler thread, to a mapped page | `fault` |
//! | releasing the old half, poisoning, a clean destination | `release` |
//! | per-cycle register / mremap / unregister baseline | `choreography` |
//! | whether a cycle is in progress, and its phase | `phase` |
//! | pacing: when a concurrent cycle starts, mark assists owed, the GC CPU budget | `pacer` |
//! | which user callback the thread is inside (re-entrancy refusals) | `reentry` |
//! | collection and attach errors | `error` |
//! | the moving space (two halves) and the large-object space | `space` |
//! | the arena itself, the uffd layer, the kernel interface | crate `faultline-heap` |
//! | modes requested and resolved (one probe run) | `mode` |
//! | configuration; debug, stress and test knobs | `config`, `debug` |
//! | the heap's data, and the public handle | `inner`, `heap` |
//! | mutators, `Root`, `Local`, allocation | `mutator` |
//! | heap memory and system calls: pinned objects, safe reads and writes of byte arrays | `io` |
//! | fork handling | `fork` |
//! | verification, checkmark | `verify` |
//! | weak references, ephemerons, finalization: the weak table, fix-point, the flip's sweep | `weak` |
//! | their embedding API (`Mutator::new_weak`, `FinalizationQueue`) | `weakref` |
//! | statistics, the pause timeline | `stats`, `timeline` |
//! | mutator waits by cause, per-mutator interval logs, mutator-side MMU | `waits` |
//! | the background GC threads' scheduling priority | `background` |
//!
//! Module layering (no circles): `io` → `heap` → (`mutator`, `weakref`) → (`cycle`, `assist`) →
//! (`marking`, `compaction`, `fault`, `verify`, `release`, `choreography`, `plan`, `trace`) →
//! `inner` → (`safepoint`, `roots` → `weak`, `space`, `phase`, `pacer`, `graypool`, `stats`,
//! `config`, `mode`, `debug`, `waits`) → (`error`, `reentry`, `value`); `typed` sits on
//! `mutator` and `inner`.
//!
//! Invariants of the crate: the public API is safe; `unsafe` appears only where raw heap
//! memory, a kernel call or a cross-thread handoff is touched, each block with its `SAFETY`
//! comment:
//! - raw heap memory: `trace` (slot and header reads), `plan` (page filling), `compaction`
//!   (staging pages, the armed plan), `cycle` (large-object slots at the flip), `verify`,
//!   `mutator` (object access, allocation), `typed` (field access, checked at compile time);
//! - per-mutator roots read by the collector with the world stopped: `safepoint`, `marking`
//!   (the remark);
//! - kernel plumbing: `fault` (the SIGBUS resolver's context), `pagestate` (futex),
//!   `choreography` (unmapping the detached pages), `fork` (the atfork handlers), `io`
//!   (read / write system calls on pinned byte arrays and on the I/O buffer), `background`
//!   (the GC threads' own nice value and slice).

mod assist;
mod background;
mod catchup;
mod choreography;
mod compaction;
mod config;
mod cputime;
mod crew;
mod cycle;
mod debug;
mod dense;
mod error;
mod fault;
mod faultbatch;
mod fork;
mod forkgate;
mod gcthread;
mod generational;
mod graypool;
mod handover;
mod hashes;
mod heap;
mod inner;
mod io;
mod marking;
mod mode;
mod mutator;
mod pacer;
mod pagestate;
mod phase;
mod pins;
mod plan;
mod prefill;
mod prefiller;
mod reentry;
mod release;
mod remset;
mod remset_wp;
mod roots;
mod safepoint;
mod space;
mod spinwait;
mod stats;
mod timeline;
mod trace;
mod ttsdiag;
mod typed;
mod unchecked;
mod value;
mod verify;
mod waits;
mod weak;
mod weakref;
mod youngpace;

pub use background::{
    gc_thread_boosts, gc_thread_idle_stats, gc_thread_yields, gc_threads_batched,
    gc_threads_lowered,
};
pub use catchup::gc_catchup_stats;
pub use config::{
    default_dense_runs, default_fault_group_pages, default_first_cycle_promotion,
    default_first_survival_promotion, default_gc_catchup_nice, default_gc_compact_nice,
    default_gc_thread_batch, default_gc_thread_boost, default_gc_thread_idle,
    default_gc_thread_nice, default_gc_thread_slice_us, default_gc_threads,
    default_keep_fresh_bytes, default_prefill_yield_us, default_refill_wait_rounds,
    default_young_cost_max, default_young_slots_max, ConfigError, CycleHook, HeapConfig,
    DEFAULT_DENSE_RUNS, DEFAULT_FAULT_GROUP_PAGES, DEFAULT_FIRST_SURVIVAL_PROMOTION,
    DEFAULT_GC_CATCHUP_NICE, DEFAULT_GC_COMPACT_NICE, DEFAULT_GC_CPU_BUDGET,
    DEFAULT_GC_THREAD_BATCH, DEFAULT_GC_THREAD_BOOST, DEFAULT_GC_THREAD_IDLE,
    DEFAULT_GC_THREAD_NICE, DEFAULT_GEN_KEEP_FRESH, DEFAULT_PREFILL_YIELD_US,
    DEFAULT_REFILL_WAIT_ROUNDS, DEFAULT_YOUNG_COST_MAX, DEFAULT_YOUNG_SLOTS_MAX,
    MAX_PAUSE_SLIDE_THREADS,
};
pub use crew::collector_threads_started;
pub use debug::{DebugConfig, MarkHook, MarkPoint, Phase, StressRandom};
pub use error::{AttachError, CollectError};
pub use fault::count_fault_context_switches;
pub use fork::FORKED_REASON;
pub use heap::{GlobalRoot, Heap, HeapError};
pub use io::{Pin, PinError, PinStats};
pub use mode::{
    measured_kernel_costs, Barrier, Choreography, FaultMode, GcMode, Generational, KernelCosts,
    ModeInfo, Strategy, StwCompaction,
};
pub use mutator::{AllocError, Local, Mutator, Root};
pub use phase::CyclePhase;
pub use prefill::{PrefillShare, PrefillStats};
pub use reentry::Callback;
pub use release::ReleaseStats;
pub use remset::ScanStats;
pub use remset::CARD_BYTES;
pub use remset_wp::RemsetError;
pub use roots::RootSource;
pub use stats::{
    CpuSplit, CycleStats, FaultBreakdown, FaultStats, GenStats, MutatorTts, PaceStats, Pause,
    Percentiles, SatbSwitch, SwitchReason, Trigger,
};
pub use typed::{Field, FieldInfo, FieldKey, HeapStruct, HeapType, Ref, Typed, WrongType};
pub use unchecked::{Layout, Obj};
pub use value::{RootSlot, Value};
pub use verify::{VerifyError, VerifyReport};
pub use waits::{
    merge_intervals, mmu_from_intervals, thread_wait_totals, MutatorWaitLog, MutatorWaits,
    ShortBucket, WaitCause, WaitInterval, WaitStats, WorstWindow, SHORT_BUCKET,
};
pub use weak::WeakStats;
pub use weakref::FinalizationQueue;

/// Internals that the workspace's own tests and the loom model need. Not part of the API:
/// no stability, no documentation promises.
#[doc(hidden)]
pub mod testing {
    /// The calling thread's CPU time (for the examples' measurements).
    pub use crate::cputime::thread_cpu;
    pub use crate::debug::Breakage;
    pub use crate::fork::{child_finish_counts, last_fork_prepare};
    /// The page state machine (for the loom model).
    pub mod pagestate {
        pub use crate::pagestate::*;
    }
}

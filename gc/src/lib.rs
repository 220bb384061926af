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
//! - Runtimes report their own root slots through [`RootSource`]; [`GlobalRoot`]s are usable
//!   from any thread.
//! - Handles know their owner: a [`Root`] belongs to its mutator, a [`GlobalRoot`] to its heap
//!   (heaps have process-unique ids, [`Heap::id`]); misuse panics naming the mistake, and a
//!   reference of another heap is refused on every store. One mutator per heap per thread
//!   ([`Heap::try_attach`], [`AttachError`]).
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
//! | fork handling | `fork` |
//! | verification, checkmark | `verify` |
//! | statistics, the pause timeline | `stats`, `timeline` |
//! | mutator waits by cause, per-mutator interval logs, mutator-side MMU | `waits` |
//!
//! Module layering (no circles): `heap` → `mutator` → (`cycle`, `assist`) → (`marking`,
//! `compaction`, `fault`, `verify`, `release`, `choreography`, `plan`, `trace`) → `inner` →
//! (`safepoint`, `roots`, `space`, `phase`, `pacer`, `graypool`, `stats`, `config`, `mode`,
//! `debug`, `waits`) → (`error`, `reentry`).
//!
//! Invariants of the crate: the public API is safe; `unsafe` appears only where raw heap
//! memory, a kernel call or a cross-thread handoff is touched, each block with its `SAFETY`
//! comment:
//! - raw heap memory: `trace` (slot and header reads), `plan` (page filling), `compaction`
//!   (staging pages, the armed plan), `cycle` (large-object slots at the flip), `verify`,
//!   `mutator` (object access, allocation), `heap` (global-root values);
//! - per-mutator roots read by the collector with the world stopped: `safepoint`, `marking`
//!   (the remark);
//! - kernel plumbing: `fault` (the SIGBUS resolver's context), `pagestate` (futex),
//!   `choreography` (unmapping the detached pages), `fork` (the atfork handlers).

mod assist;
mod choreography;
mod compaction;
mod config;
mod cycle;
mod debug;
mod error;
mod fault;
mod fork;
mod graypool;
mod heap;
mod inner;
mod marking;
mod mode;
mod mutator;
mod pacer;
mod pagestate;
mod phase;
mod plan;
mod reentry;
mod release;
mod roots;
mod safepoint;
mod space;
mod stats;
mod timeline;
mod trace;
mod verify;
mod waits;

pub use config::{default_gc_threads, ConfigError, CycleHook, HeapConfig, DEFAULT_GC_CPU_BUDGET};
pub use debug::{DebugConfig, MarkHook, MarkPoint, Phase, StressRandom};
pub use error::{AttachError, CollectError};
pub use fork::FORKED_REASON;
pub use heap::{GlobalRoot, Heap, HeapError};
pub use mode::{Barrier, Choreography, FaultMode, GcMode, ModeInfo, Strategy, StwCompaction};
pub use mutator::{AllocError, Local, Mutator, Root};
pub use phase::CyclePhase;
pub use reentry::Callback;
pub use release::ReleaseStats;
pub use roots::RootSource;
pub use stats::{CycleStats, FaultStats, MutatorTts, PaceStats, Pause, Percentiles, Trigger};
pub use verify::{VerifyError, VerifyReport};
pub use waits::{
    merge_intervals, mmu_from_intervals, MutatorWaitLog, MutatorWaits, WaitCause, WaitInterval,
    WaitStats,
};

/// Internals that the workspace's own tests and the loom model need. Not part of the API:
/// no stability, no documentation promises.
#[doc(hidden)]
pub mod testing {
    pub use crate::debug::Breakage;
    /// The page state machine (for the loom model).
    pub mod pagestate {
        pub use crate::pagestate::*;
    }
}

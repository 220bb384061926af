//! # Faultline
//!
//! A managed heap for Rust-hosted language runtimes whose collector compacts the heap, using
//! Linux userfaultfd as its read barrier for concurrent compaction. This facade names the
//! embedding API in one place: everything an embedder touches, and nothing else.
//!
//! ```
//! use faultline::{Heap, HeapConfig, TypeInfo, Value};
//! let heap = Heap::new(HeapConfig::with_heap_size(4 << 20)).unwrap();
//! let pair = heap.register_type(TypeInfo::fixed("pair", 16, &[0, 8])).unwrap();
//! let mut m = heap.attach();
//! let a = m.alloc(pair, 0).unwrap();
//! let root = m.root(a);                      // survives collections
//! m.collect().unwrap();                      // `a` may have moved; the root followed it
//! let obj = root.get(&m).unwrap();           // a Local: valid until the next safepoint
//! obj.set(1, Value::immediate(0x2a1).unwrap());
//! assert_eq!(obj.get(1).bits(), 0x2a1);
//! ```
//!
//! Where the machinery lives: the cycle (both collectors, as one numbered list of phases) in
//! `gc/src/cycle.rs`; the fault path (SIGBUS or handler thread to a mapped page) in
//! `gc/src/fault.rs`, page filling and mapping in `gc/src/compaction.rs`, the page state
//! machine in `gc/src/pagestate.rs`; marking in `gc/src/trace.rs` (the tracer) and
//! `gc/src/marking.rs` (concurrent marking); planning in `gc/src/plan.rs`; the safepoint
//! handshake in `gc/src/safepoint.rs`; the volatile arena in `heap/src/arena.rs` and the
//! userfaultfd layer in `heap/src/uffd/`. The README's layout table has the rest.
//!
//! Invariant: nothing here adds behaviour; it only names the public API in one place.

/// Threads the collector started for its concurrent cycles and parallel phases (a heap's GC
/// thread and its helpers are kept between cycles).
pub use faultline_gc::collector_threads_started;
pub use faultline_gc::count_fault_context_switches;
/// Background GC threads whose priority, time slice or policy was set
/// ([`HeapConfig::gc_thread_nice`], [`HeapConfig::gc_thread_slice_us`],
/// [`HeapConfig::gc_thread_batch`]), and the boosts of lowered threads while mutators wait
/// ([`HeapConfig::gc_thread_boost`]) or while a collector is behind its schedule
/// ([`HeapConfig::gc_thread_idle`]), and the prefill thread's yields
/// ([`HeapConfig::prefill_yield_us`]).
pub use faultline_gc::{
    gc_thread_boosts, gc_thread_idle_stats, gc_thread_yields, gc_threads_batched,
    gc_threads_lowered,
};
/// Typed layouts: a heap type declared from a Rust struct ([`heap_struct!`]), its registration
/// ([`Heap::register_struct`], a [`HeapType`]) and views reading fields by name ([`Typed`]).
pub use faultline_gc::{
    heap_struct, Field, FieldInfo, FieldKey, HeapStruct, HeapType, Ref, Typed, WrongType,
};
/// The kernel measurements `Strategy::Auto` and `FaultMode::Auto` chose by (taken once per
/// process).
pub use faultline_gc::{measured_kernel_costs, KernelCosts};
/// Mutator waits by cause ([`Heap::mutator_waits`], [`Heap::mutator_wait_log`]).
pub use faultline_gc::{
    merge_intervals, mmu_from_intervals, thread_wait_totals, MutatorWaitLog, MutatorWaits,
    ShortBucket, WaitCause, WaitInterval, WaitStats, WorstWindow, SHORT_BUCKET,
};
pub use faultline_gc::{
    AllocError, AttachError, Barrier, Callback, Choreography, CollectError, ConfigError, CpuSplit,
    CycleHook, CyclePhase, CycleStats, DebugConfig, FaultBreakdown, FaultMode, FaultStats,
    FinalizationQueue, GcMode, GenStats, Generational, GlobalRoot, Heap, HeapConfig, HeapError,
    Local, MarkHook, MarkPoint, ModeInfo, Mutator, MutatorTts, PaceStats, Pause, Percentiles,
    Phase, Pin, PinError, PinStats, PrefillStats, ReleaseStats, Root, RootSlot, RootSource,
    SatbSwitch, Strategy, StressRandom, StwCompaction, SwitchReason, Trigger, Value, VerifyError,
    VerifyReport, WeakStats, CARD_BYTES, FORKED_REASON,
};
pub use faultline_gc::{Layout, Obj};
pub use faultline_gc::{RemsetError, ScanStats};
/// The cost types those measurements report.
pub use faultline_heap::calibrate::{FaultCost, MappingCost};
pub use faultline_heap::object::{ObjectRef, TypeError, TypeId, TypeInfo, TypeKind, TypeRegistry};
pub use faultline_heap::sys::{Call, CallSnapshot};
pub use faultline_heap::{ArenaError, ArenaStats, Capability, Probe, PAGE_SIZE};

/// Internals for the workspace's own tests and benches (the kernel layer, fault injection, the
/// collector's test hooks). Not part of the API: no stability, no documentation promises.
#[doc(hidden)]
pub mod testing {
    pub use faultline_gc::testing::*;
    pub use faultline_heap as heap;
}

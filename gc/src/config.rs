//! Heap configuration and its validation.
//!
//! Invariant: a [`HeapConfig`] that passed [`HeapConfig::validate`] describes a heap that can be
//! built: sizes are page multiples, the allocation buffer fits in a half, the large-object
//! threshold fits in an allocation buffer, and every option named is implemented (options that
//! are not yet are rejected with [`ConfigError::Unsupported`], never silently ignored).

use std::sync::Arc;

use faultline_heap::PAGE_SIZE;

use crate::debug::DebugConfig;
use crate::mode::{
    Barrier, Choreography, FaultMode, GcMode, Generational, Strategy, StwCompaction,
};
use crate::stats::CycleStats;

/// A callback invoked after every collection cycle (the GC log hook; see
/// [`HeapConfig::on_cycle`] for what it may not do).
pub type CycleHook = Arc<dyn Fn(&CycleStats) + Send + Sync>;

/// Heap configuration.
///
/// Build one with [`HeapConfig::with_heap_size`] (or `default()`), then set fields directly
/// or with the builder methods ([`HeapConfig::mode`], [`HeapConfig::with`], ...); the struct
/// is `#[non_exhaustive]`, so new options never break an embedder's code.
#[derive(Clone)]
#[non_exhaustive]
pub struct HeapConfig {
    /// Capacity of the moving space in bytes (one half of the arena; the arena reserves twice
    /// this in virtual address space; resident memory follows the data in use, plus the
    /// collector's side tables, which are sized by this capacity).
    pub max_heap_bytes: usize,
    /// Capacity of the non-moving large-object space in bytes.
    pub large_object_space_bytes: usize,
    /// Objects of at least this many bytes that hold no references (byte arrays) go to the
    /// non-moving large-object space; so do those that hold references if
    /// `pin_large_ref_objects` is set.
    pub large_object_threshold: usize,
    /// Put large objects that hold references in the non-moving large-object space too. Their
    /// reference fields must then be rewritten inside the flip pause, which makes that pause
    /// proportional to the reference slots of live large objects (about 10-20 ns a slot). Off
    /// by default: such objects are bump-allocated in the moving space and compacted
    /// concurrently, page by page, like every other object.
    pub pin_large_ref_objects: bool,
    /// Thread-local allocation buffer size.
    pub tlab_bytes: usize,
    /// Fresh memory is made present in batches of this many bytes (one COPY of zeroes).
    pub populate_batch_bytes: usize,
    /// Concurrent mode: a background thread keeps up to this many bytes (at most a sixteenth
    /// of the moving half) of fresh memory present above the allocation pointer, so that
    /// allocation-buffer refills find their pages present instead of making them present
    /// themselves (0: off; refills do it all, as in stop-the-world mode). Default 4 MiB.
    pub prefill_bytes: usize,
    /// Recycle the old half's pages as the new half's fresh memory (on by default): at the end
    /// of a cycle, up to the allocation headroom before the next trigger, the pages the old
    /// half still holds are moved (`UFFDIO_MOVE`, in runs) above the new half's populated end
    /// instead of being released, and each allocation-buffer refill zeroes its own part in user
    /// space; the rest is released as before. (An in-place slide keeps that much of its free
    /// tail present instead, zeroed the same way: no kernel call.) Moving pages needs an
    /// anonymous arena registered with userfaultfd and `UFFDIO_MOVE`; elsewhere (memfd
    /// backing, plain memory, a forked child, `debug.poison_released`), and off, every fresh
    /// page is a `UFFDIO_COPY` of zeroes.
    pub recycle_old_half: bool,
    /// Keep the old half's pages mapped at the end of a concurrent cycle (arena choreography,
    /// with `recycle_old_half`): the pages above where the next compaction into that half is
    /// predicted to end stay, and become fresh memory at the next flip into it, zeroed by the
    /// refills that hand them out, instead of being released and made present again
    /// (`MADV_DONTNEED` and a `UFFDIO_COPY` of zeroes, or a `UFFDIO_MOVE`: 1-2 µs a page on
    /// this machine, against 0.1-0.2 for the zeroing). They stay resident between the two
    /// flips. `None` (the default): the minor strategy keeps up to the allocation headroom (its
    /// memfd cannot move pages); the copy strategy keeps up to [`DEFAULT_GEN_KEEP_FRESH`] of
    /// a generational heap's young windows, with no early recycling while it keeps (at 4 GiB
    /// tree-replace the young cycles' mean fell to 1.02-1.09 s), and recycles otherwise
    /// (keeping measured no better for whole-heap cycles and cost 20-60 MiB of peak RSS at
    /// 64 MiB live: BENCHMARKS.md, s17); `Some(n)`: both keep up to `n` bytes (0: neither).
    /// `FAULTLINE_KEEP_FRESH_MIB` sets it from the environment.
    pub keep_fresh_bytes: Option<usize>,
    /// Stop-the-world: a collection starts when the heap reaches `max(min_trigger_bytes, live
    /// after the last collection * (1 + growth))`. Concurrent mode: that is the heap-growth
    /// goal, and the pacer starts a cycle earlier when the measured allocation rate and
    /// marking speed say the cycle would otherwise not reach its flip before the moving space
    /// runs out (see [`crate::PaceStats`]).
    pub growth: f64,
    /// The lowest occupancy trigger (goal, in concurrent mode).
    pub min_trigger_bytes: usize,
    /// Threads that mark: in a stop-the-world cycle (1: the collecting thread alone; more:
    /// work-stealing parallel marking) and in a concurrent cycle (the GC thread and
    /// `gc_threads - 1` helpers share the gray objects by work stealing, as do mutators'
    /// mark assists). Also the default number of compaction workers (see
    /// `compaction_workers`). Default: [`default_gc_threads`]: `ceil(gc_cpu_budget x CPUs)`
    /// with the default budget (1 on up to 4 CPUs, 2 on 8, 4 on 16), or
    /// `FAULTLINE_GC_THREADS` from the environment.
    pub gc_threads: usize,
    /// The share of the machine's CPUs that concurrent marking may use on its own, in
    /// (0, 1]; default 0.25 (Go's figure). It sets the default `gc_threads`, and the pacer
    /// plans with the marking speed those threads reach; mutators that allocate faster than
    /// those markers mark pay **mark assists** on top of the budget (counted in
    /// [`crate::PaceStats`]).
    pub gc_cpu_budget: f64,
    /// Concurrent mode: allocating mutators do mark assists when they outrun marking (on by
    /// default). Off: they only wait for the flip when the space is exhausted (the behaviour
    /// before pacing; for comparisons).
    pub mark_assists: bool,
    /// Concurrent mode: the background GC threads (the heap's GC thread, its helper markers
    /// and compaction workers, the prefill thread) run this many nice steps below the thread
    /// that started them (capped at nice 19; 0: the same priority; the GC thread and its
    /// helpers are started by the first mutator that starts a concurrent cycle and kept, and
    /// a cycle started by a thread of other scheduling settings runs on a thread of its own
    /// started from it: `gc/src/gcthread.rs`), so that a mutator waking up gets the CPU before
    /// them; a mutator that outruns them pays mark assists. Only ever lowers a priority
    /// (needs no privilege). Beware: a mutator that faults on a page a
    /// compaction worker is filling waits for that worker, so under CPU contention from other
    /// processes a lowered worker can make fault stalls longer (priority inversion). In
    /// [0, 19]; default [`DEFAULT_GC_THREAD_NICE`] (0), or `FAULTLINE_GC_THREAD_NICE` from the
    /// environment.
    pub gc_thread_nice: u8,
    /// Concurrent mode, with `gc_thread_nice` above 0: the lowered GC threads are boosted back
    /// to the priority they started with while any mutator waits on the collector (for a
    /// flip, for the end of a cycle, in the cycle's pauses, or for a page a compaction worker
    /// claimed), and dropped again when the last waiter is done, so a lowered thread never
    /// keeps a waiting mutator waiting longer (no priority inversion). Boosting needs
    /// `CAP_SYS_NICE` or a large enough `RLIMIT_NICE`; without either the GC threads are not
    /// lowered at all ([`crate::Heap::mode_info`] says which). Default
    /// [`DEFAULT_GC_THREAD_BOOST`], or `FAULTLINE_GC_THREAD_BOOST` (0 or 1) from the
    /// environment.
    pub gc_thread_boost: bool,
    /// Concurrent mode: while concurrent marking is behind the pacer's schedule (mutators owe
    /// mark assists), the GC thread runs this many nice steps above the priority it started
    /// marking at, and drops back once marking is on schedule and when it ends (the `catchup`
    /// module): the marking the mutators would do as assists, mostly waiting on a run queue
    /// inside them, goes to the GC thread instead. 0: off. Raising a priority needs
    /// `CAP_SYS_NICE` or a large enough `RLIMIT_NICE`; without either nothing changes
    /// (counted, [`crate::gc_catchup_stats`]). Not applied to a thread registered for
    /// `gc_thread_boost`. In [0, 19]; default [`DEFAULT_GC_CATCHUP_NICE`], or
    /// `FAULTLINE_GC_CATCHUP_NICE` from the environment.
    pub gc_catchup_nice: u8,
    /// Concurrent mode: the compaction workers run this many nice steps above the priority
    /// their GC thread has, from their start to their end (the `catchup` module): from the
    /// flip on, every destination page a worker has not filled yet is one a mutator may
    /// touch and then fill itself in a fault, at several times a worker's cost per page. It
    /// trades latency for throughput: a mutator's own fault then waits for its CPU behind the
    /// raised worker (see [`DEFAULT_GC_COMPACT_NICE`]). 0: off (the workers keep their GC
    /// thread's priority). Raising a priority needs `CAP_SYS_NICE` or a large
    /// enough `RLIMIT_NICE`; without either nothing changes (counted,
    /// [`crate::gc_catchup_stats`]; [`crate::Heap::mode_info`] says so). Not applied to a
    /// thread registered for `gc_thread_boost`. In [0, 19]; default
    /// [`DEFAULT_GC_COMPACT_NICE`], or `FAULTLINE_GC_COMPACT_NICE` from the environment.
    pub gc_compact_nice: u8,
    /// Concurrent mode: the background GC threads' scheduler time slice in microseconds
    /// (Linux 6.12 and later, `sched_setattr`'s `sched_runtime` for a normal thread; the kernel
    /// clamps it to [100, 100 000]); 0 keeps the kernel's default. A slice longer than the
    /// mutators' lets a waking mutator preempt a GC thread at once (the kernel lets a thread
    /// with a shorter slice cut a longer one's) without lowering the GC threads' share of the
    /// CPU. In [0, 100 000]; default 0, or `FAULTLINE_GC_THREAD_SLICE_US` from the
    /// environment.
    pub gc_thread_slice_us: u32,
    /// Concurrent mode: the background GC threads (the cycle's GC thread, the compaction
    /// workers and marker helpers it starts, which inherit its policy, and the prefill
    /// thread) run in the `SCHED_BATCH` policy: a GC thread that wakes up never preempts a
    /// running mutator (its preemption is left to the tick), while its share of the CPU and
    /// its nice value stay as they are. Without it a refill that woke the prefill thread, or a
    /// mutator that woke the GC thread, could lose its CPU at once to the thread it woke and
    /// wait a scheduler tick or more to get it back, inside its wait. Default
    /// [`DEFAULT_GC_THREAD_BATCH`], or `FAULTLINE_GC_THREAD_BATCH` (0 or 1) from the
    /// environment.
    pub gc_thread_batch: bool,
    /// Concurrent mode: the background GC threads run in the `SCHED_IDLE` policy while the
    /// collector keeps to its pacer's schedule, so that a mutator that wakes up preempts them
    /// at once, and in their normal policy (`SCHED_BATCH` with `gc_thread_batch`) while it
    /// does not: while the markers alone are behind the marking schedule, or the compaction
    /// behind the allocation (what would make the mutators assist), or the prefill thread
    /// behind the refills (a refill that finds its new buffer not yet present makes it present
    /// itself), or one of them starved of the CPU (runnable for 10 ms with little CPU time:
    /// the mutators keep every CPU busy), and while any mutator waits on the collector (see
    /// the `background` module).
    /// A thread in `SCHED_IDLE` gets the CPU only when nothing else wants it, which is why falling behind must switch it
    /// back before the mutators wait. Taking a thread out of `SCHED_IDLE` needs
    /// `CAP_SYS_NICE` or a large enough `RLIMIT_NICE`; without either the threads stay in
    /// their normal policy ([`crate::Heap::mode_info`] says so). Replaces `gc_thread_nice`'s
    /// lowering when on. Default [`DEFAULT_GC_THREAD_IDLE`], or `FAULTLINE_GC_THREAD_IDLE`
    /// (0 or 1) from the environment.
    pub gc_thread_idle: bool,
    /// Concurrent mode: the prefill thread offers its CPU (`sched_yield`) between chunks once
    /// it has worked this many microseconds since it last did, while the present memory above
    /// the allocation pointer is at least half of `prefill_bytes`, so a mutator that wakes up
    /// on its CPU runs within about one chunk instead of waiting for the scheduler's next tick
    /// (nobody waits for the prefill thread: a refill that finds no present memory makes its
    /// own). Its share of the CPU is not lowered (but see `gc_thread_idle`). 0: never yields. In [0, 100 000]; default
    /// [`DEFAULT_PREFILL_YIELD_US`], or `FAULTLINE_PREFILL_YIELD_US` from the environment.
    pub prefill_yield_us: u32,
    /// Concurrent mode: how many microseconds an allocation-buffer refill spins while pages
    /// of its buffer are being made present by another populator (the prefill thread's chunk,
    /// another refill's batch, a recycling step), before it makes them present itself (the
    /// kernel steps over pages already present). It spins and never calls `sched_yield`, which
    /// on Linux's EEVDF scheduler hands the CPU to any other runnable thread for a tick or
    /// more (the `spinwait` module). 0: never waits (the refill does the work at once).
    /// In [0, 4096]; default [`DEFAULT_REFILL_WAIT_ROUNDS`], or `FAULTLINE_REFILL_WAIT_ROUNDS`
    /// from the environment.
    pub refill_wait_rounds: u32,
    /// Concurrent mode, copy strategy: destination pages are grouped in aligned groups of this
    /// many; a mutator fault that claims its page also claims the pages around it in its group
    /// that nobody has claimed yet (the contiguous run of them around its page), fills them
    /// with its own in one pass and maps them with one `UFFDIO_COPY`, so a mutator touching
    /// them later finds them mapped instead of faulting on each. 0 or 1: a fault fills its own
    /// page only. In [0, 16]; default [`DEFAULT_FAULT_GROUP_PAGES`], or
    /// `FAULTLINE_FAULT_GROUP_PAGES` from the environment.
    pub fault_group_pages: u32,
    /// Threads that fill destination pages in a concurrent compaction (mutator faults fill
    /// pages too), and that slide a stop-the-world cycle's half in place (the calling thread
    /// and `compaction_workers - 1` helpers; 1: the calling thread alone). `None`: as many as
    /// `gc_threads` in a concurrent compaction, and the machine's CPUs (at most
    /// [`MAX_PAUSE_SLIDE_THREADS`]) for the stop-the-world slide, whose world is stopped so
    /// the CPUs are free.
    pub compaction_workers: Option<usize>,
    /// Collector mode.
    pub mode: GcMode,
    /// Page-mapping strategy (concurrent mode).
    pub strategy: Strategy,
    /// Fault delivery (concurrent mode).
    pub faults: FaultMode,
    /// Marking barrier (concurrent mode).
    pub barrier: Barrier,
    /// How stop-the-world cycles compact: in place (`Slide`) or into the other half (`Copy`);
    /// the default (`Auto`) slides unless `debug.poison_released`; see [`StwCompaction`].
    pub stw_compaction: StwCompaction,
    /// Stop-the-world slide ([`StwCompaction::Slide`]): the leading pages of the half whose
    /// live density (live words over their words) is, as a whole, at least this threshold,
    /// ending on a page itself that dense, stay where they are (a *dense prefix*,
    /// `gc/src/dense.rs`): their objects keep their addresses, their dead gaps become filler
    /// objects, and the slide moves only what lies after them. It saves moving the prefix at
    /// the price of the dead bytes left in it (at most `1 - threshold` of it; reported per
    /// cycle as [`CycleStats::dense_dead_bytes`]). A value in (0, 1]; 0.95 is the measured
    /// choice (BENCHMARKS.md); `None` (the default) or 1.0 (only fully live pages, which a
    /// slide never moves anyway) is off. Cycles that compact into the other half
    /// (concurrent, `Copy`, pinned objects, generational) ignore it.
    pub dense_prefix: Option<f64>,
    /// Concurrent cycles with the copy strategy (arena choreography, `UFFDIO_MOVE` offered,
    /// not generational, no pinned objects): the objects allocated during marking compact to
    /// the page offsets they have in the old half (each dead gap among them keeps less than a
    /// page as a filler, `gc/src/dense.rs`), and the compaction updates each of their fully
    /// live pages in place and moves it into the new half in runs, instead of filling a copy
    /// and mapping it with `UFFDIO_COPY` (a page that a move refuses is copied). Their share of
    /// the flip pause is bounded (`dense::align_runs` skips chunks counted fully live and scans
    /// at most a few others): plan+flip 0.02-0.05 ms for binary-trees at 64 MiB and 1 GiB
    /// alike (session s11). Default off: they do not lower the collector's CPU per cycle
    /// (same binary, on against off, 64 MiB, heap factor 3, work factor 8, 3 alternated
    /// rounds at load 4-7: compaction µs per page binary-trees 2.74 / 3.84 / 3.11 against
    /// 2.53 / 2.93 / 2.86, gcbench 4.18 / 3.15 / 3.65 against 2.81 / 3.41 / 3.16; BENCHMARKS.md,
    /// session s11 helper `dense`; s8 lead's quiet runs found the same). Default
    /// [`DEFAULT_DENSE_RUNS`], or `FAULTLINE_DENSE_RUNS` (0 or 1) from the environment.
    pub dense_runs: bool,
    /// Kernel choreography per cycle (concurrent mode): the volatile arena, or the per-cycle
    /// register / mremap / unregister baseline.
    pub choreography: Choreography,
    /// Keep at most about this many cycles in [`crate::Heap::history`] (the oldest are
    /// dropped; [`crate::Heap::cycles`] still counts them all). Default 16,384 (about 8 MiB at
    /// most). `None` keeps every cycle: about half a KiB per cycle, forever, which a
    /// long-running process sees as resident-set growth (the 10-minute soak found it).
    pub history_limit: Option<usize>,
    /// Use userfaultfd at all (false forces the unregistered stop-the-world arena).
    pub use_userfaultfd: bool,
    /// Called after every cycle, once it is recorded and before it counts as over: on the
    /// thread that collected (stop-the-world) or on the collector's thread (concurrent; the
    /// heap's GC thread is kept between cycles, so what the hook leaves in that thread's
    /// thread-locals or scheduling settings is there at the next cycle's hook). A
    /// collection, verification or wait for the cycle requested from inside it is refused
    /// with [`crate::CollectError::Reentrant`] (it would wait for itself); so is `attach`
    /// ([`crate::AttachError::InsideCallback`]: a mutator kept past the hook would hold up every
    /// later collection), while [`crate::Heap::with_mutator`] works; an allocation in it
    /// that needs a collection defers an occupancy trigger and is refused on exhaustion. A
    /// panic in it reaches the caller of the collection (stop-the-world); on the collector's
    /// thread (concurrent), where nobody could catch it, it is reported on standard error and
    /// the heap continues (the cycle is complete either way).
    pub on_cycle: Option<CycleHook>,
    /// Generational mode (off by default): young cycles that mark from the roots plus a
    /// remembered set and compact only the young objects, full cycles when the old
    /// generation has grown; see [`Generational`].
    pub generational: Generational,
    /// Generational mode: a full cycle runs when the old generation has grown by this factor
    /// over its size after the last full cycle, or at its first promotion since then if that
    /// is larger (and is at least `min_trigger_bytes / 2`).
    pub old_growth: f64,
    /// Generational mode: a young cycle promotes an object into the old generation once it has
    /// survived this many cycles (1 to 1024; 2 by default, as the Android runtime's
    /// collector). Promotion happens only in cycles that compact into the old generation's
    /// half, so an object that reaches the age in the other half is promoted one cycle later
    /// (see `generational.rs`).
    pub promotion_age: u32,
    /// Generational mode: promotion at the first survival, by measurement. Each young cycle
    /// measures which share of the survivors the previous cycle *traced* (found live by
    /// marking, not allocated during it) survives it again; while that share (smoothed) is at
    /// least this, a promoting young cycle promotes every survivor it traced, whatever its
    /// age (the survivors allocated during its marking stay young: they were never tested).
    /// Long-lived survivors are then copied once instead of `promotion_age` times. Above 1:
    /// never (promotion by `promotion_age` only). Default
    /// [`DEFAULT_FIRST_SURVIVAL_PROMOTION`], or `FAULTLINE_FIRST_SURVIVAL_PROMOTION` from the
    /// environment.
    pub first_survival_promotion: f64,
    /// Generational mode: a young cycle that starts with the old generation empty (the heap's
    /// first cycle; after a full cycle the next young cycle) traces every live object, as a
    /// full cycle does: it compacts into the half it makes the old half and promotes every
    /// survivor it traced (those allocated during its marking stay young). Without it, the
    /// first cycle kept every survivor young in the other half and the second copied them all
    /// back to promote them: the whole live set copied twice before the first cheap young
    /// cycle. A full cycle (nothing pinned) likewise promotes what it traced into the half it
    /// compacts into. Default on, or `FAULTLINE_FIRST_CYCLE_PROMOTION` (0 or 1) from the
    /// environment.
    pub first_cycle_promotion: bool,
    /// Generational mode: full cycles instead of young ones while young cycles do not pay.
    /// A cycle's work is what it traces: a young cycle its window's survivors, a full cycle
    /// the whole live set (found by the last cycle that traced everything: a full cycle, or a
    /// young cycle with nothing old). Young cycles come at least as often as full ones would
    /// (the window's goal is what the old generation leaves of the whole heap's), so a young
    /// cycle that traces this share of the live set or more costs at least this share of a
    /// full cycle's work per allocated byte, and it also copies what it promotes once more and
    /// scans the remembered set. Each young cycle with an old generation measures the share;
    /// above this, the next `generational::FALLBACK_FULL_CYCLES` cycles are full, then young
    /// cycles are tried again. Churn, whose live set is replaced within about a cycle,
    /// measured 0.83-0.96 at 256 MiB; tree-replace 0.2-0.5, binary-trees and gcbench under
    /// 0.05. Off by default ([`DEFAULT_YOUNG_COST_MAX`]): at 0.75 churn's GC CPU did not fall
    /// measurably (BENCHMARKS.md, helper `gen`, s13); `FAULTLINE_YOUNG_COST_MAX` from the
    /// environment sets it.
    pub young_cost_max: f64,
    /// Generational, concurrent: the most old-to-young references a young cycle may have to
    /// forward. A young cycle forwards every old slot that refers to a young object in its
    /// flip pause, and rescans the cards written since its precleaning in its remark pause:
    /// both pauses grow with those slots (churn at 1 GiB: a table of 2.7 M slots, every one
    /// rewritten within a cycle, 2.0-2.6 M old slots, remark+flip pauses of 285-660 ms;
    /// BENCHMARKS.md, helper `genpace`, s15), while a full cycle forwards them concurrently,
    /// page by page. So at the end of a concurrent cycle whose successor would be young, the
    /// old slots with a young reference are counted in the remembered set's dirty ranges (the
    /// card table; the written-pages set cannot be read without clearing it) and, for a young
    /// cycle just ended, in its own flip; over this bound the next
    /// `generational::FALLBACK_FULL_CYCLES` cycles are full. Default
    /// [`DEFAULT_YOUNG_SLOTS_MAX`], or `FAULTLINE_YOUNG_SLOTS_MAX` from the environment;
    /// `usize::MAX`: no bound.
    pub young_slots_max: usize,
    /// Generational, concurrent: once young cycles are measured, a young cycle's allocation
    /// budget is the young window (`youngpace`): its marking is paced to it, and mutators
    /// that allocate past it take a compaction-assist slice at each buffer refill while its
    /// compaction runs. At 4 GiB tree-replace this ended the back-to-back young cycles with
    /// windows of GBs (young cycles of 0.6-1.0 s instead of 8-11 s, the run 17 % shorter);
    /// at 1 GiB churn (a mostly young live set) the mutators once spent 10x the assist time
    /// (BENCHMARKS.md, helper `young`, s10), which ended when such young cycles gave way to
    /// full ones (`young_slots_max`): binary-trees, gcbench and churn at 1 GiB now run the
    /// same with it or without (BENCHMARKS.md, s16). Default on, or `FAULTLINE_YOUNG_BUDGET`
    /// (0 or 1) from the environment.
    pub young_budget: bool,
    /// Debug, stress and test knobs (all off by default).
    pub debug: DebugConfig,
}

impl core::fmt::Debug for HeapConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HeapConfig")
            .field("max_heap_bytes", &self.max_heap_bytes)
            .field("large_object_space_bytes", &self.large_object_space_bytes)
            .field("large_object_threshold", &self.large_object_threshold)
            .field("tlab_bytes", &self.tlab_bytes)
            .field("recycle_old_half", &self.recycle_old_half)
            .field("keep_fresh_bytes", &self.keep_fresh_bytes)
            .field("prefill_bytes", &self.prefill_bytes)
            .field("mode", &self.mode)
            .field("gc_threads", &self.gc_threads)
            .field("gc_cpu_budget", &self.gc_cpu_budget)
            .field("mark_assists", &self.mark_assists)
            .field("gc_thread_nice", &self.gc_thread_nice)
            .field("gc_thread_boost", &self.gc_thread_boost)
            .field("gc_catchup_nice", &self.gc_catchup_nice)
            .field("gc_compact_nice", &self.gc_compact_nice)
            .field("gc_thread_batch", &self.gc_thread_batch)
            .field("gc_thread_idle", &self.gc_thread_idle)
            .field("prefill_yield_us", &self.prefill_yield_us)
            .field("refill_wait_rounds", &self.refill_wait_rounds)
            .field("fault_group_pages", &self.fault_group_pages)
            .field("compaction_workers", &self.compaction_workers)
            .field("strategy", &self.strategy)
            .field("faults", &self.faults)
            .field("barrier", &self.barrier)
            .field("stw_compaction", &self.stw_compaction)
            .field("dense_prefix", &self.dense_prefix)
            .field("dense_runs", &self.dense_runs)
            .field("choreography", &self.choreography)
            .field("history_limit", &self.history_limit)
            .field("generational", &self.generational)
            .field("old_growth", &self.old_growth)
            .field("promotion_age", &self.promotion_age)
            .field("first_survival_promotion", &self.first_survival_promotion)
            .field("first_cycle_promotion", &self.first_cycle_promotion)
            .field("young_cost_max", &self.young_cost_max)
            .field("young_slots_max", &self.young_slots_max)
            .field("young_budget", &self.young_budget)
            .field("debug", &self.debug)
            .finish_non_exhaustive()
    }
}

impl Default for HeapConfig {
    fn default() -> Self {
        HeapConfig {
            max_heap_bytes: 256 << 20,
            large_object_space_bytes: 256 << 20,
            large_object_threshold: 8 << 10,
            pin_large_ref_objects: false,
            tlab_bytes: 32 << 10,
            populate_batch_bytes: 256 << 10,
            prefill_bytes: 4 << 20,
            recycle_old_half: true,
            keep_fresh_bytes: default_keep_fresh_bytes(),
            growth: 1.0,
            min_trigger_bytes: 4 << 20,
            gc_threads: default_gc_threads(DEFAULT_GC_CPU_BUDGET),
            gc_cpu_budget: DEFAULT_GC_CPU_BUDGET,
            mark_assists: true,
            gc_thread_nice: default_gc_thread_nice(),
            gc_thread_boost: default_gc_thread_boost(),
            gc_catchup_nice: default_gc_catchup_nice(),
            gc_compact_nice: default_gc_compact_nice(),
            gc_thread_slice_us: default_gc_thread_slice_us(),
            gc_thread_batch: default_gc_thread_batch(),
            gc_thread_idle: default_gc_thread_idle(),
            prefill_yield_us: default_prefill_yield_us(),
            refill_wait_rounds: default_refill_wait_rounds(),
            fault_group_pages: default_fault_group_pages(),
            compaction_workers: None,
            mode: GcMode::StopTheWorld,
            strategy: Strategy::Auto,
            faults: FaultMode::Auto,
            barrier: Barrier::Satb,
            stw_compaction: StwCompaction::Auto,
            dense_prefix: None,
            dense_runs: default_dense_runs(),
            choreography: Choreography::Arena,
            history_limit: Some(16_384),
            use_userfaultfd: true,
            on_cycle: None,
            generational: Generational::Off,
            old_growth: 1.0,
            promotion_age: 2,
            first_survival_promotion: default_first_survival_promotion(),
            first_cycle_promotion: default_first_cycle_promotion(),
            young_cost_max: default_young_cost_max(),
            young_slots_max: default_young_slots_max(),
            young_budget: default_young_budget(),
            debug: DebugConfig::default(),
        }
    }
}

/// A configuration that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value out of its range.
    #[error("invalid heap configuration: {0}")]
    Invalid(String),
    /// An option that is not implemented (yet).
    #[error("unsupported heap configuration: {0}")]
    Unsupported(String),
}

/// The default GC CPU budget ([`HeapConfig::gc_cpu_budget`]).
pub const DEFAULT_GC_CPU_BUDGET: f64 = 0.25;

/// Marking threads for a CPU budget: `ceil(budget x CPUs)` (CPUs from
/// `std::thread::available_parallelism`), at least 1 and at most 64. The environment variable
/// `FAULTLINE_GC_THREADS`, if set to a number in [1, 64], overrides it (for benchmarks and
/// deployments that cannot change the embedder's configuration).
pub fn default_gc_threads(budget: f64) -> usize {
    if let Some(n) = env_number::<usize>("FAULTLINE_GC_THREADS", |n| (1..=64).contains(n)) {
        return n;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    ((budget * cpus as f64).ceil() as usize).clamp(1, 64)
}

/// The largest [`HeapConfig::gc_thread_nice`], [`HeapConfig::gc_catchup_nice`] and
/// [`HeapConfig::gc_compact_nice`] (and their `FAULTLINE_*` variables).
const MAX_GC_THREAD_NICE: u64 = 19;
/// The largest microsecond knob: [`HeapConfig::gc_thread_slice_us`] and
/// [`HeapConfig::prefill_yield_us`] (and their `FAULTLINE_*` variables).
const MAX_US_KNOB: u64 = 100_000;
/// The largest [`HeapConfig::refill_wait_rounds`] (and `FAULTLINE_REFILL_WAIT_ROUNDS`).
const MAX_REFILL_WAIT_ROUNDS: u64 = 4096;

/// The longest stress delay ([`DebugConfig`]'s `phase_delay`, `compaction_delay`,
/// `worker_stall`): the tests use up to a few seconds.
const MAX_DEBUG_DELAY: std::time::Duration = std::time::Duration::from_secs(60);

/// The largest [`HeapConfig::promotion_age`]: the generational mode keeps one age class (a
/// word) per survival below it, allocated when the heap is created.
const MAX_PROMOTION_AGE: u64 = 1024;

/// The largest [`HeapConfig::fault_group_pages`] (and `FAULTLINE_FAULT_GROUP_PAGES`): a
/// fault's run is at most one run buffer.
const MAX_FAULT_GROUP_PAGES: u64 = crate::faultbatch::MAX_FAULT_RUN as u64;

/// The default [`HeapConfig::gc_thread_nice`].
pub const DEFAULT_GC_THREAD_NICE: u8 = 0;

/// [`DEFAULT_GC_THREAD_NICE`], or `FAULTLINE_GC_THREAD_NICE` from the environment if it is a
/// number in [0, 19].
pub fn default_gc_thread_nice() -> u8 {
    env_at_most(
        "FAULTLINE_GC_THREAD_NICE",
        MAX_GC_THREAD_NICE,
        DEFAULT_GC_THREAD_NICE,
    )
}

/// The default [`HeapConfig::gc_catchup_nice`]: off. Measured in s9, when this knob raised the
/// compaction workers too (now [`HeapConfig::gc_compact_nice`]'s job): at 10 it cut what the
/// churn's mutators marked in assists from 17-36 MiB to 2-8 MiB a run (load 12-17); on a quiet
/// machine (64 MiB, two rounds) it raised tree-replace's mutator MMU at 100 ms from 0.43-0.44
/// to 0.56-0.72 and churn's from 0.15-0.21 to 0.20-0.31, but made the longest waits 1.5-5x
/// longer (tree-replace 5.3 -> 7.9-28.3 ms, churn 8-12 -> 16-40 ms): BENCHMARKS.md, session
/// s9. The marker's raise alone (6 steps, s12, 4 alternated rounds at load 1.6-2.7 with other
/// jobs building) moved no figure of churn, tree-replace or fragmentation outside its spread.
pub const DEFAULT_GC_CATCHUP_NICE: u8 = 0;

/// [`DEFAULT_GC_CATCHUP_NICE`], or `FAULTLINE_GC_CATCHUP_NICE` from the environment if it is
/// a number in [0, 19].
pub fn default_gc_catchup_nice() -> u8 {
    env_at_most(
        "FAULTLINE_GC_CATCHUP_NICE",
        MAX_GC_THREAD_NICE,
        DEFAULT_GC_CATCHUP_NICE,
    )
}

/// The default [`HeapConfig::gc_compact_nice`]: off. Quiet A/B, 64 MiB, copy/sigbus, 6 and 8
/// alternated rounds (BENCHMARKS.md, "Session of 2026-12-05 (s12, lead)"), medians at 6 against
/// 0: churn's total time over stop-the-world's 1.46 -> 1.12, its mutator faults 33-41 k ->
/// 12-21 k, its peak RSS 2.77 -> 2.19x stop-the-world's, fragmentation's total 1.38 -> 1.29;
/// but churn's longest wait 10.2 -> 17.6 ms (0.078 -> 0.126 of the stop-the-world pause; goal
/// 0.1), its MMU@100 0.28 -> 0.23 and tree-replace's 0.55 -> 0.50 (a mutator's fault waits for
/// its CPU behind the raised worker), gcbench's total 0.77 -> 0.82. Stepping down while a
/// mutator is in the fault path kept the latency and lost the gains (churn's total 1.43). The
/// mutators' latency comes first: off. A runtime that values throughput and memory over its
/// longest waits can set it (it needs `CAP_SYS_NICE` or `RLIMIT_NICE`).
pub const DEFAULT_GC_COMPACT_NICE: u8 = 0;

/// [`DEFAULT_GC_COMPACT_NICE`], or `FAULTLINE_GC_COMPACT_NICE` from the environment if it is
/// a number in [0, 19].
pub fn default_gc_compact_nice() -> u8 {
    env_at_most(
        "FAULTLINE_GC_COMPACT_NICE",
        MAX_GC_THREAD_NICE,
        DEFAULT_GC_COMPACT_NICE,
    )
}

/// The stop-the-world slide's threads when `compaction_workers` is unset: the CPUs, at most
/// this many (beyond it the slide is bound by memory bandwidth).
pub const MAX_PAUSE_SLIDE_THREADS: usize = 8;

/// The default [`HeapConfig::gc_thread_boost`].
pub const DEFAULT_GC_THREAD_BOOST: bool = false;

/// [`DEFAULT_GC_THREAD_BOOST`], or `FAULTLINE_GC_THREAD_BOOST` from the environment if it is 0
/// or 1.
pub fn default_gc_thread_boost() -> bool {
    match std::env::var("FAULTLINE_GC_THREAD_BOOST")
        .as_deref()
        .map(str::trim)
    {
        Ok("1") => true,
        Ok("0") => false,
        _ => DEFAULT_GC_THREAD_BOOST,
    }
}

/// The default [`HeapConfig::gc_thread_batch`]: on. Quiet A/Bs at 64 MiB, copy/sigbus
/// (BENCHMARKS.md, "Session of 2026-12-05 (s10, lead)", 9 alternated rounds in two runs):
/// gcbench's mutator MMU@100 0.82-0.93 off against 0.91-0.98 on in every round, binary-trees
/// 0.83-0.98 against 0.86-0.96; the cost: churn's median 0.35 against 0.32 (15 rounds, ranges
/// overlapping), fragmentation within its spread.
pub const DEFAULT_GC_THREAD_BATCH: bool = true;

/// [`DEFAULT_GC_THREAD_BATCH`], or `FAULTLINE_GC_THREAD_BATCH` from the environment if it is 0
/// or 1.
pub fn default_gc_thread_batch() -> bool {
    env_flag("FAULTLINE_GC_THREAD_BATCH", DEFAULT_GC_THREAD_BATCH)
}

/// The default [`HeapConfig::gc_thread_idle`]: off (not yet measured to win).
pub const DEFAULT_GC_THREAD_IDLE: bool = false;

/// [`DEFAULT_GC_THREAD_IDLE`], or `FAULTLINE_GC_THREAD_IDLE` from the environment if it is 0
/// or 1.
pub fn default_gc_thread_idle() -> bool {
    env_flag("FAULTLINE_GC_THREAD_IDLE", DEFAULT_GC_THREAD_IDLE)
}

/// 0, or `FAULTLINE_GC_THREAD_SLICE_US` from the environment if it is a number in
/// [0, 100 000] (the default [`HeapConfig::gc_thread_slice_us`]).
pub fn default_gc_thread_slice_us() -> u32 {
    env_at_most("FAULTLINE_GC_THREAD_SLICE_US", MAX_US_KNOB, 0)
}

/// The default [`HeapConfig::prefill_yield_us`]: off. With 50 us the request threads' run-queue
/// delay charged to the prefill thread fell 5-20x (scheduler traces, s7), and on a quiet machine
/// the request workload's metered p99 at 64 MiB fell from a median of 0.31 to 0.18 ms (lower
/// in 9 of 12 alternated rounds, session s11); but the allocation-heavy workloads' refills then
/// make more of their memory present themselves: tree-replace's mutator-side MMU at 100 ms fell
/// from a median of 0.66 to 0.56 (lower in 8 of the same 12 rounds; churn's was 0.20 -> 0.18 over
/// 30 quiet runs in s9, 0.36 -> 0.38 in s11). A runtime serving requests at a modest allocation
/// rate should turn it on (BENCHMARKS.md, "Session of 2026-12-05 (s11, lead)").
pub const DEFAULT_PREFILL_YIELD_US: u32 = 0;

/// [`DEFAULT_PREFILL_YIELD_US`], or `FAULTLINE_PREFILL_YIELD_US` from the environment if it
/// is a number in [0, 100 000] (the default [`HeapConfig::prefill_yield_us`]).
pub fn default_prefill_yield_us() -> u32 {
    env_at_most(
        "FAULTLINE_PREFILL_YIELD_US",
        MAX_US_KNOB,
        DEFAULT_PREFILL_YIELD_US,
    )
}

/// The default [`HeapConfig::refill_wait_rounds`]: 0, a refill never waits for another
/// populator (64 microseconds of spinning from session s9 to s30, 64 `sched_yield`s before).
/// When the prefill thread falls behind the allocation (a fresh page costing more to map than
/// a mutator takes to fill it, after a cycle released the old half), a refill that met its
/// chunk in flight spun its 64 µs and then made the pages present itself all the same: at
/// 1 GiB live (one quiet alternated set of two rounds, session s30), binary-trees' and
/// gcbench's refills spun in 6,000-8,500 refills a run, their allocation stalls fell from
/// 447-826 and 618-689 ms to 166-313 and 385-432 ms without the wait, and the wait MMU at 100
/// ms rose from 0.57-0.69 and 0.44-0.57 to 0.72-0.87 and 0.64-0.65; when the prefill thread
/// keeps up, no refill meets a chunk and both settings measure the same; at 64 MiB nothing
/// moved outside the rounds' spread (BENCHMARKS.md, s30 `mmu1g`; in s8, on a loaded machine,
/// neither had on the request workload).
pub const DEFAULT_REFILL_WAIT_ROUNDS: u32 = crate::space::DEFAULT_WAIT_ROUNDS as u32;

/// [`DEFAULT_REFILL_WAIT_ROUNDS`], or `FAULTLINE_REFILL_WAIT_ROUNDS` from the environment if
/// it is a number in [0, 4096] (the default [`HeapConfig::refill_wait_rounds`]).
pub fn default_refill_wait_rounds() -> u32 {
    env_at_most(
        "FAULTLINE_REFILL_WAIT_ROUNDS",
        MAX_REFILL_WAIT_ROUNDS,
        DEFAULT_REFILL_WAIT_ROUNDS,
    )
}

/// The default [`HeapConfig::fault_group_pages`]: 1, one page a fault. Reading 700-940 pages
/// that only the reader's faults fill (`examples/fault_group.rs`), groups of 4 took 4x fewer
/// faults and 19-26 % less of the reader's CPU in them, the faults' p99 (not preempted) rising
/// from 7-8 to 29-33 µs (groups of 8: 27-33 % less CPU, p99 49-66 µs). In the suite (64 MiB,
/// churn and fragmentation, copy/sigbus, 3 alternated rounds at load 11-22) groups of 4 made
/// mutators fill more of the to-space themselves, their faults' p99 not preempted rose to
/// 20-66 µs and no wait figure improved; at 1 GiB churn (one run each) the fault stalls'
/// total halved. Quietly (64 MiB, two rounds) groups of 4 halved fragmentation's mutator MMU at
/// 100 ms (0.58-0.60 -> 0.26) and left churn's where it was: off (BENCHMARKS.md, session s9).
pub const DEFAULT_FAULT_GROUP_PAGES: u32 = 1;

/// [`DEFAULT_FAULT_GROUP_PAGES`], or `FAULTLINE_FAULT_GROUP_PAGES` from the environment if it
/// is a number in [0, 16] (the default [`HeapConfig::fault_group_pages`]).
pub fn default_fault_group_pages() -> u32 {
    env_at_most(
        "FAULTLINE_FAULT_GROUP_PAGES",
        MAX_FAULT_GROUP_PAGES,
        DEFAULT_FAULT_GROUP_PAGES,
    )
}

/// The default [`HeapConfig::first_survival_promotion`].
pub const DEFAULT_FIRST_SURVIVAL_PROMOTION: f64 = 0.5;

/// [`DEFAULT_FIRST_SURVIVAL_PROMOTION`], or `FAULTLINE_FIRST_SURVIVAL_PROMOTION` from the
/// environment if it is a finite non-negative number.
pub fn default_first_survival_promotion() -> f64 {
    env_number::<f64>("FAULTLINE_FIRST_SURVIVAL_PROMOTION", |x| {
        x.is_finite() && *x >= 0.0
    })
    .unwrap_or(DEFAULT_FIRST_SURVIVAL_PROMOTION)
}

/// The default [`HeapConfig::dense_runs`]: off (see there).
pub const DEFAULT_DENSE_RUNS: bool = false;

/// [`DEFAULT_DENSE_RUNS`], or `FAULTLINE_DENSE_RUNS` from the environment if it is 0 or 1.
pub fn default_dense_runs() -> bool {
    env_flag("FAULTLINE_DENSE_RUNS", DEFAULT_DENSE_RUNS)
}

/// The default [`HeapConfig::first_cycle_promotion`]: on, or off where
/// `FAULTLINE_FIRST_CYCLE_PROMOTION` is 0.
pub fn default_first_cycle_promotion() -> bool {
    env_flag("FAULTLINE_FIRST_CYCLE_PROMOTION", true)
}

/// The default [`HeapConfig::young_cost_max`]: off (no young cycle traces more than the
/// largest finite share).
pub const DEFAULT_YOUNG_COST_MAX: f64 = f64::MAX;

/// [`DEFAULT_YOUNG_COST_MAX`], or `FAULTLINE_YOUNG_COST_MAX` from the environment if it is
/// a finite non-negative number.
pub fn default_young_cost_max() -> f64 {
    env_number::<f64>("FAULTLINE_YOUNG_COST_MAX", |x| x.is_finite() && *x >= 0.0)
        .unwrap_or(DEFAULT_YOUNG_COST_MAX)
}

/// The default [`HeapConfig::young_slots_max`]: 256 Ki old slots, about 15 ms of forwarding
/// in a flip pause at the ~57 ns a slot churn's flips took at 1 GiB, and as much again for
/// rescanning them in the remark when every one was written since the precleaning (churn:
/// 2.3 M slots, 133 ms of forwarding and 245 ms of remark). Tree-replace's young cycles
/// forwarded 20-32 K slots at 1 GiB and 68-122 K at 4 GiB (BENCHMARKS.md, s10 helper `cards`):
/// under it.
pub const DEFAULT_YOUNG_SLOTS_MAX: usize = 256 << 10;

/// [`DEFAULT_YOUNG_SLOTS_MAX`], or `FAULTLINE_YOUNG_SLOTS_MAX` from the environment if it is
/// a number.
pub fn default_young_slots_max() -> usize {
    env_number::<usize>("FAULTLINE_YOUNG_SLOTS_MAX", |_| true).unwrap_or(DEFAULT_YOUNG_SLOTS_MAX)
}

/// What the copy strategy keeps of a generational heap's young windows by default
/// ([`HeapConfig::keep_fresh_bytes`]): 512 MiB (a young window at 4 GiB live holds 0.4-0.5 GB,
/// of which the kept pages are what the next compaction into it will not fill).
pub const DEFAULT_GEN_KEEP_FRESH: usize = 512 << 20;

/// The default [`HeapConfig::keep_fresh_bytes`]: `None`, or `FAULTLINE_KEEP_FRESH_MIB` MiB.
pub fn default_keep_fresh_bytes() -> Option<usize> {
    env_number::<usize>("FAULTLINE_KEEP_FRESH_MIB", |n| *n <= 1 << 30).map(|m| m << 20)
}

/// The default [`HeapConfig::young_budget`]: on, or off where `FAULTLINE_YOUNG_BUDGET` is 0.
pub fn default_young_budget() -> bool {
    env_flag("FAULTLINE_YOUNG_BUDGET", true)
}

/// The environment variable `name` read as a `T` (surrounding blanks ignored), if it parses
/// and `ok` accepts it: the one rule behind every `FAULTLINE_*` number override.
pub(crate) fn env_number<T: std::str::FromStr>(name: &str, ok: impl Fn(&T) -> bool) -> Option<T> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<T>().ok())
        .filter(ok)
}

/// The number `name` holds in the environment if it is at most `max`, else `default`.
fn env_at_most<T: std::str::FromStr + Copy + Into<u64>>(name: &str, max: u64, default: T) -> T {
    env_number::<T>(name, |n| (*n).into() <= max).unwrap_or(default)
}

/// The switch `name` holds in the environment if it is 0 or 1, else `default`.
fn env_flag(name: &str, default: bool) -> bool {
    env_at_most::<u8>(name, 1, u8::from(default)) == 1
}

/// `x` rounded up to a multiple of `to`; `None` where that does not fit a `usize` (a size near
/// `usize::MAX` would otherwise wrap to 0 and pass every later check).
fn round_up(x: usize, to: usize) -> Option<usize> {
    x.div_ceil(to).checked_mul(to)
}

impl HeapConfig {
    /// A configuration with a moving space of `bytes`. Every size derived from the default is
    /// scaled down for small heaps so that the result is valid for any `bytes` from the
    /// 64 KiB minimum up: the allocation buffer (`tlab_bytes`) is at most a quarter of the
    /// space, the large-object threshold at most half an allocation buffer.
    pub fn with_heap_size(bytes: usize) -> Self {
        let d = HeapConfig::default();
        // A multiple of 8, at least the 1 KiB minimum, at most a quarter of the space; the
        // default for heaps of 128 KiB and up.
        let tlab_bytes = (bytes / 4 / 8 * 8).clamp(1024, d.tlab_bytes);
        HeapConfig {
            max_heap_bytes: bytes,
            large_object_space_bytes: bytes.max(1 << 20),
            min_trigger_bytes: (bytes / 4).clamp(64 << 10, 4 << 20),
            tlab_bytes,
            large_object_threshold: d.large_object_threshold.min(tlab_bytes / 2),
            ..d
        }
    }

    /// Apply `f` to the configuration (for setting several fields in one expression):
    /// `HeapConfig::with_heap_size(1 << 20).with(|c| c.debug.verify = true)`.
    pub fn with(mut self, f: impl FnOnce(&mut HeapConfig)) -> Self {
        f(&mut self);
        self
    }

    /// Set the collector mode.
    pub fn mode(mut self, mode: GcMode) -> Self {
        self.mode = mode;
        self
    }

    /// Concurrent mode with the given strategy and fault delivery.
    pub fn concurrent(mut self, strategy: Strategy, faults: FaultMode) -> Self {
        self.mode = GcMode::Concurrent;
        self.strategy = strategy;
        self.faults = faults;
        self
    }

    /// Set the concurrent-marking barrier.
    pub fn barrier(mut self, barrier: Barrier) -> Self {
        self.barrier = barrier;
        self
    }

    /// Set the GC-log hook, called after every cycle.
    pub fn on_cycle(mut self, hook: CycleHook) -> Self {
        self.on_cycle = Some(hook);
        self
    }

    /// Set the debug, stress and test knobs.
    pub fn debug(mut self, debug: DebugConfig) -> Self {
        self.debug = debug;
        self
    }

    /// Compaction workers in effect (`compaction_workers`, or `gc_threads` when unset).
    pub(crate) fn workers(&self) -> usize {
        self.compaction_workers.unwrap_or(self.gc_threads).max(1)
    }

    /// Threads of the stop-the-world slide (`compaction_workers`, or the CPUs this process may
    /// run on, at most [`MAX_PAUSE_SLIDE_THREADS`], when unset).
    pub(crate) fn pause_slide_threads(&self) -> usize {
        self.compaction_workers
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .min(MAX_PAUSE_SLIDE_THREADS)
            })
            .max(1)
    }

    /// Check the configuration and round sizes to pages.
    pub fn validate(mut self) -> Result<HeapConfig, ConfigError> {
        let bad = |s: String| Err(ConfigError::Invalid(s));
        if self.max_heap_bytes < 64 << 10 {
            return bad(format!(
                "max_heap_bytes (the size given to with_heap_size) = {} is below the 64 KiB minimum",
                self.max_heap_bytes
            ));
        }
        // The live-words prefix sums are 32-bit: at most 2^32 words (32 GiB) per half.
        if self.max_heap_bytes > 32 << 30 {
            return bad(format!(
                "max_heap_bytes = {} is above the 32 GiB maximum",
                self.max_heap_bytes
            ));
        }
        self.max_heap_bytes = round_up(self.max_heap_bytes, PAGE_SIZE).expect("at most 32 GiB");
        match round_up(self.large_object_space_bytes, PAGE_SIZE) {
            Some(b) if b <= 1 << 40 => self.large_object_space_bytes = b,
            _ => {
                return bad(format!(
                    "large_object_space_bytes = {} is above the 1 TiB maximum",
                    self.large_object_space_bytes
                ))
            }
        }
        if self.tlab_bytes < 1024 || !self.tlab_bytes.is_multiple_of(8) {
            return bad(format!(
                "tlab_bytes = {} must be a multiple of 8 and at least 1 KiB",
                self.tlab_bytes
            ));
        }
        if self.tlab_bytes > self.max_heap_bytes / 4 {
            return bad(format!(
                "tlab_bytes = {} must be at most a quarter of max_heap_bytes ({})",
                self.tlab_bytes, self.max_heap_bytes
            ));
        }
        if self.large_object_threshold < 64 || self.large_object_threshold > self.tlab_bytes / 2 {
            return bad(format!(
                "large_object_threshold = {} must lie in [64, tlab_bytes / 2 = {}]",
                self.large_object_threshold,
                self.tlab_bytes / 2
            ));
        }
        match round_up(self.populate_batch_bytes, PAGE_SIZE) {
            Some(b) if self.populate_batch_bytes >= PAGE_SIZE => self.populate_batch_bytes = b,
            _ => {
                return bad(format!(
                    "populate_batch_bytes = {} must be at least one page and at most {} (a whole number of pages)",
                    self.populate_batch_bytes,
                    usize::MAX / PAGE_SIZE * PAGE_SIZE
                ))
            }
        }
        if !(self.growth.is_finite() && self.growth >= 0.0) {
            return bad(format!(
                "growth = {} must be a finite non-negative number",
                self.growth
            ));
        }
        if !(self.gc_cpu_budget > 0.0 && self.gc_cpu_budget <= 1.0) {
            return bad(format!(
                "gc_cpu_budget = {} must lie in (0, 1]",
                self.gc_cpu_budget
            ));
        }
        if let Some(t) = self.dense_prefix {
            if !(t > 0.0 && t <= 1.0) {
                return bad(format!("dense_prefix = {t} must lie in (0, 1]"));
            }
        }
        if self.compaction_workers == Some(0) || self.compaction_workers.is_some_and(|n| n > 64) {
            return bad(format!(
                "compaction_workers = {:?} must lie in [1, 64]",
                self.compaction_workers
            ));
        }
        for (name, value, max) in [
            (
                "gc_thread_nice",
                u64::from(self.gc_thread_nice),
                MAX_GC_THREAD_NICE,
            ),
            (
                "gc_catchup_nice",
                u64::from(self.gc_catchup_nice),
                MAX_GC_THREAD_NICE,
            ),
            (
                "gc_compact_nice",
                u64::from(self.gc_compact_nice),
                MAX_GC_THREAD_NICE,
            ),
            (
                "gc_thread_slice_us",
                u64::from(self.gc_thread_slice_us),
                MAX_US_KNOB,
            ),
            (
                "refill_wait_rounds",
                u64::from(self.refill_wait_rounds),
                MAX_REFILL_WAIT_ROUNDS,
            ),
            (
                "prefill_yield_us",
                u64::from(self.prefill_yield_us),
                MAX_US_KNOB,
            ),
            (
                "fault_group_pages",
                u64::from(self.fault_group_pages),
                MAX_FAULT_GROUP_PAGES,
            ),
        ] {
            if value > max {
                return bad(format!("{name} = {value} must lie in [0, {max}]"));
            }
        }
        if self.gc_threads == 0 || self.gc_threads > 64 {
            return bad(format!(
                "gc_threads = {} must lie in [1, 64]",
                self.gc_threads
            ));
        }
        if self.debug.stress_every == Some(0) {
            return bad("stress_every must be at least 1".into());
        }
        if self.choreography == Choreography::PerCycle {
            if self.mode != GcMode::Concurrent {
                return bad("choreography = PerCycle needs mode = Concurrent".into());
            }
            if self.strategy == Strategy::Minor {
                return Err(ConfigError::Unsupported(
                    "choreography = PerCycle with the minor strategy (its memfd arena is registered MINOR once)".into(),
                ));
            }
            if self.barrier == Barrier::WpAsync {
                return Err(ConfigError::Unsupported(
                    "choreography = PerCycle with the wp_async barrier (it needs the whole arena registered WP)".into(),
                ));
            }
        }
        if !(self.old_growth.is_finite() && self.old_growth >= 0.0) {
            return bad(format!(
                "old_growth = {} must be a finite non-negative number",
                self.old_growth
            ));
        }
        for (name, v) in [
            ("first_survival_promotion", self.first_survival_promotion),
            ("young_cost_max", self.young_cost_max),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{name} = {v} must be a finite non-negative number"));
            }
        }
        if self.promotion_age == 0 {
            return bad(
                "promotion_age = 0: an object is promoted after at least one survival".into(),
            );
        }
        if u64::from(self.promotion_age) > MAX_PROMOTION_AGE {
            return bad(format!(
                "promotion_age = {} must lie in [1, {MAX_PROMOTION_AGE}] (the young generation keeps one age class per survival)",
                self.promotion_age
            ));
        }
        match self.generational {
            Generational::Off => {}
            Generational::Cards if self.choreography == Choreography::PerCycle => {
                return Err(ConfigError::Unsupported(
                    "generational = Cards with choreography = PerCycle (it detaches the old generation's half)".into(),
                ));
            }
            Generational::Cards => {}
            // The barrier-free remembered set needs the whole arena registered WP_ASYNC (the
            // heap refuses it at creation where the kernel cannot: `remset_wp::check_arena`).
            Generational::WrittenPages => {
                if self.choreography == Choreography::PerCycle {
                    return Err(ConfigError::Unsupported(
                        "generational = WrittenPages with choreography = PerCycle (it needs the whole arena registered WP)".into(),
                    ));
                }
                if !self.use_userfaultfd {
                    return Err(ConfigError::Unsupported(
                        "generational = WrittenPages without userfaultfd (its write tracking is UFFD_FEATURE_WP_ASYNC)".into(),
                    ));
                }
            }
        }
        if matches!(self.debug.stress_random, Some(r) if r.one_in == 0) {
            return bad("stress_random.one_in must be at least 1".into());
        }
        for (name, delay) in [
            ("debug.phase_delay", self.debug.phase_delay),
            ("debug.compaction_delay", self.debug.compaction_delay),
            ("debug.worker_stall", self.debug.worker_stall),
        ] {
            if let Some(d) = delay.filter(|&d| d > MAX_DEBUG_DELAY) {
                return bad(format!(
                    "{name} = {d:?} is above the {MAX_DEBUG_DELAY:?} maximum (a stress delay; longer ones only hang every collection)"
                ));
            }
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_slide_uses_the_set_workers_or_the_cpus() {
        let mut c = HeapConfig::with_heap_size(1 << 20);
        c.compaction_workers = Some(3);
        assert_eq!(c.pause_slide_threads(), 3);
        c.compaction_workers = Some(0);
        assert_eq!(c.pause_slide_threads(), 1);
        c.compaction_workers = None;
        c.gc_threads = 1;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(c.pause_slide_threads(), cpus.min(MAX_PAUSE_SLIDE_THREADS));
        // The concurrent compaction's workers still follow gc_threads.
        assert_eq!(c.workers(), 1);
    }

    #[test]
    fn with_heap_size_is_valid_for_every_size_from_the_minimum() {
        for kib in (64..=1024).step_by(4) {
            let c = HeapConfig::with_heap_size(kib << 10);
            if let Err(e) = c.validate() {
                panic!("with_heap_size({kib} KiB) is refused: {e}");
            }
        }
        let e = HeapConfig::with_heap_size(32 << 10).validate().unwrap_err();
        assert!(e.to_string().contains("with_heap_size"), "{e}");
    }

    #[test]
    fn bad_values_are_rejected_with_their_name() {
        let cases: Vec<(HeapConfig, &str)> = vec![
            (
                HeapConfig {
                    max_heap_bytes: 1000,
                    ..Default::default()
                },
                "max_heap_bytes",
            ),
            (
                HeapConfig {
                    tlab_bytes: 100,
                    ..Default::default()
                },
                "tlab_bytes",
            ),
            (
                HeapConfig {
                    large_object_threshold: 1 << 30,
                    ..Default::default()
                },
                "large_object_threshold",
            ),
            (
                HeapConfig {
                    gc_threads: 0,
                    ..Default::default()
                },
                "gc_threads",
            ),
            (
                HeapConfig {
                    growth: f64::NAN,
                    ..Default::default()
                },
                "growth",
            ),
            (
                HeapConfig::default().with(|c| c.gc_thread_nice = 20),
                "gc_thread_nice = 20 must lie in [0, 19]",
            ),
            (
                HeapConfig::default().with(|c| c.gc_catchup_nice = 20),
                "gc_catchup_nice = 20 must lie in [0, 19]",
            ),
            (
                HeapConfig::default().with(|c| c.gc_compact_nice = 20),
                "gc_compact_nice = 20 must lie in [0, 19]",
            ),
            (
                HeapConfig::default().with(|c| c.gc_thread_slice_us = 100_001),
                "gc_thread_slice_us = 100001 must lie in [0, 100000]",
            ),
            (
                HeapConfig::default().with(|c| c.refill_wait_rounds = 4097),
                "refill_wait_rounds = 4097 must lie in [0, 4096]",
            ),
            (
                HeapConfig::default().with(|c| c.prefill_yield_us = 100_001),
                "prefill_yield_us = 100001 must lie in [0, 100000]",
            ),
            (
                HeapConfig::default().with(|c| c.fault_group_pages = 17),
                "fault_group_pages = 17 must lie in [0, 16]",
            ),
            (
                HeapConfig::default().with(|c| c.debug.stress_every = Some(0)),
                "stress_every",
            ),
            (
                HeapConfig::default().with(|c| c.compaction_workers = Some(0)),
                "compaction_workers",
            ),
            (
                HeapConfig::default().with(|c| c.gc_cpu_budget = 0.0),
                "gc_cpu_budget",
            ),
            (
                HeapConfig::default().with(|c| c.dense_prefix = Some(0.0)),
                "dense_prefix",
            ),
            (
                HeapConfig::default().with(|c| c.dense_prefix = Some(1.5)),
                "dense_prefix",
            ),
            (
                HeapConfig::default().with(|c| c.dense_prefix = Some(f64::NAN)),
                "dense_prefix",
            ),
        ];
        let wp = HeapConfig::default().with(|c| c.generational = Generational::WrittenPages);
        assert!(wp.clone().validate().is_ok());
        let no_uffd = wp.with(|c| c.use_userfaultfd = false);
        assert!(matches!(
            no_uffd.validate(),
            Err(ConfigError::Unsupported(_))
        ));
        for (c, needle) in cases {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        let ok = HeapConfig {
            max_heap_bytes: (1 << 20) + 1,
            ..HeapConfig::with_heap_size(1 << 20)
        }
        .validate()
        .unwrap();
        assert_eq!(ok.max_heap_bytes % PAGE_SIZE, 0);
    }
}

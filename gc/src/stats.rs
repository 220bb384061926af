//! Collection telemetry: one record per cycle, and summaries over them.
//!
//! Invariant: every figure in a [`CycleStats`] is measured (clock readings, counter deltas of
//! the arena's kernel handle, `/proc/self/maps`), never derived from configuration.

use std::time::Duration;

use faultline_heap::sys::{Call, CallSnapshot};

use crate::mode::GcMode;

/// Why a cycle ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `collect()` was called.
    Explicit,
    /// Occupancy reached the trigger.
    Occupancy,
    /// An allocation did not fit.
    Exhausted,
    /// Stress mode (every N allocations).
    Stress,
}

impl Trigger {
    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Explicit => "explicit",
            Trigger::Occupancy => "occupancy",
            Trigger::Exhausted => "exhausted",
            Trigger::Stress => "stress",
        }
    }
}

/// One pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    /// Its name ("stw", later "initial-mark", "remark", "flip").
    pub kind: &'static str,
    /// How long mutators were stopped.
    pub duration: Duration,
}

/// One mutator's time to safepoint in a cycle: from the request to stop the world until it
/// stopped (parked at a poll or entered a native section); the worst over the cycle's pauses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutatorTts {
    /// The mutator's id ([`crate::Mutator::id`]).
    pub mutator: u64,
    /// Its name, if it was attached with [`crate::Heap::attach_named`].
    pub name: Option<String>,
    /// How long the pause waited for it (zero if it was already stopped, or requested the
    /// pause itself).
    pub time: Duration,
}

impl MutatorTts {
    /// `name #id`, or `#id` for an unnamed mutator.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} #{}", self.mutator),
            None => format!("#{}", self.mutator),
        }
    }
}

/// Merge two per-mutator time-to-safepoint lists (the worst of each mutator).
pub(crate) fn merge_tts(mut a: Vec<MutatorTts>, b: Vec<MutatorTts>) -> Vec<MutatorTts> {
    for t in b {
        match a.iter_mut().find(|x| x.mutator == t.mutator) {
            Some(x) => x.time = x.time.max(t.time),
            None => a.push(t),
        }
    }
    a
}

/// A cycle's CPU time by phase, each from the thread CPU clock of the threads doing it
/// (`CLOCK_THREAD_CPUTIME_ID`): what the collector cost, whatever the machine's load.
/// Not included: parallel marking helpers and mutator mark assists, the initial-mark pause,
/// and what mutators' faults spend filling pages (see [`crate::FaultBreakdown`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSplit {
    /// Marking, on the thread that marks: inside the pause (stop-the-world), or the GC
    /// thread's concurrent marking with its SATB handshakes and ephemerons (concurrent).
    pub mark: Duration,
    /// The pause that ends marking, on the thread that runs it: the whole stop-the-world
    /// cycle (so `mark`, `compact` and `finish` are parts of it; the in-place slide's helper
    /// threads are added); the remark+flip pause of a
    /// concurrent cycle (its planning, root updates and weak sweep included).
    pub pause: Duration,
    /// Compaction: inside the pause (stop-the-world; an in-place slide on several threads,
    /// summed over them), or the compaction workers' CPU summed
    /// over the workers (concurrent; their fills, mapping calls, early releases and recycling).
    pub compact: Duration,
    /// Giving the old half back (recycled or released) and releasing dead large objects:
    /// inside the pause (stop-the-world), or on the GC thread after the compaction.
    pub finish: Duration,
}

impl CpuSplit {
    /// The collector CPU the split accounts for: the pause, plus, in a concurrent cycle, the
    /// phases outside it (concurrent marking, the workers, the finish).
    pub fn total(&self, mode: GcMode) -> Duration {
        match mode {
            GcMode::StopTheWorld => self.pause,
            GcMode::Concurrent => self.mark + self.pause + self.compact + self.finish,
        }
    }
}

/// What one collection cycle did.
#[derive(Debug, Clone)]
pub struct CycleStats {
    /// 1-based cycle number.
    pub cycle: u64,
    /// Collector mode.
    pub mode: GcMode,
    /// Why it ran.
    pub trigger: Trigger,
    /// Pauses of the cycle.
    pub pauses: Vec<Pause>,
    /// Time to stop the world (from the request to the last mutator parking).
    pub time_to_safepoint: Duration,
    /// Marking time.
    pub mark: Duration,
    /// Planning time inside the pause (stop-the-world: all of it; concurrent: finishing the
    /// plan made before the pause).
    pub plan: Duration,
    /// Concurrent mode: planning done before the remark+flip pause, beside the mutators.
    pub plan_ahead: Duration,
    /// Chunks (512 KiB of heap each) whose prefix sums were computed inside the pause:
    /// every chunk for stop-the-world, only those marking changed after the concurrent
    /// planning for concurrent mode.
    pub plan_chunks_redone: usize,
    /// Compaction (page filling) time.
    pub compact: Duration,
    /// The part of the compaction spent filling destination pages (copying live words and
    /// rewriting references), summed over the threads that fill batches of pages: the pausing
    /// thread (stop-the-world) or the compaction workers (concurrent). Pages filled one at a
    /// time by mutator faults and assists are not timed (they are not clock-read per page).
    pub compact_fill: Duration,
    /// The part of the compaction spent in the calls that map filled pages (`UFFDIO_COPY`,
    /// `UFFDIO_MOVE`, `UFFDIO_CONTINUE`), summed as [`CycleStats::compact_fill`] is.
    pub compact_map: Duration,
    /// Where the collector's threads spent CPU time in this cycle, by phase (thread CPU
    /// clocks: load-independent, unlike the wall times above).
    pub cpu: CpuSplit,
    /// Whole cycle.
    pub total: Duration,
    /// Moving-space bytes in use before / after.
    pub moving_before: usize,
    /// After.
    pub moving_after: usize,
    /// Large-object bytes before / after.
    pub large_before: usize,
    /// After.
    pub large_after: usize,
    /// Live objects found by marking.
    pub live_objects: usize,
    /// Of those (SATB marking), the objects mutators marked themselves when they retired
    /// their allocation buffers during the mark (see `crate::assist::mark_own_buffer`).
    pub mutator_black_objects: usize,
    /// Destination pages filled.
    pub pages_filled: usize,
    /// Kernel calls made by the arena during the cycle.
    pub calls: CallSnapshot,
    /// VMAs covering the arena at heap creation and after the cycle.
    pub vmas: (usize, usize),
    /// Mutators attached.
    pub mutators: usize,
    /// Time to safepoint of every mutator stopped by the cycle's pauses (the worst over its
    /// pauses); see [`CycleStats::slowest_mutator`].
    pub mutator_tts: Vec<MutatorTts>,
    /// Concurrent mode: the part of the remark+flip pause spent finishing marking (the rest is
    /// planning and the flip).
    pub remark: Duration,
    /// Time inside the pause spent updating the reference fields of live large objects (they
    /// do not move, so their references are rewritten at the flip; proportional to the
    /// reference slots they hold).
    pub large_refs: Duration,
    /// Reference slots of live large objects updated in the pause.
    pub large_ref_slots: usize,
    /// Large objects the pause examined (a mark bit or a header read): every large object in
    /// a stop-the-world cycle; in a concurrent one only those allocated since the GC thread
    /// sorted them before the pause, those it could not sort (unwritten header), and those
    /// that may hold references (see `cycle::LargePrescan`).
    pub large_examined: usize,
    /// Objects with an identity hash that survived this cycle (their table entries were
    /// re-keyed in the flip pause).
    pub hashed_objects: usize,
    /// Time spent re-keying the identity-hash table in the flip pause.
    pub rekey_hashes: Duration,
    /// Barrier-free (`wp_async`) marking: precleaning rounds run before the remark pause.
    pub preclean_rounds: usize,
    /// Barrier-free marking: pages the last precleaning round found written.
    pub preclean_last_dirty: usize,
    /// Barrier-free marking: written pages the remark pause rescanned (its bound: pages written
    /// since the last precleaning round).
    pub remark_dirty_pages: usize,
    /// SATB mode: (mutators running when the flat remark's handshake began, those that handed
    /// their SATB buffer over before the remark).
    pub handshake: (usize, usize),
    /// SATB mode: entries the remark took from mutators' unflushed SATB buffers (its bound:
    /// what was logged since each mutator's handshake answer).
    pub remark_satb_entries: usize,
    /// Barrier-free (`wp_async`) marking only: the cycle fell back to the SATB barrier for its
    /// last stretch, because the writes outran precleaning (see [`SwitchReason`]): a
    /// `satb-switch` pause (O(roots)) switched the barrier on, and the remark was SATB's flat
    /// remark instead of a rescan of the pages written since the last precleaning round.
    /// `None`: no fallback.
    pub satb_switch: Option<SatbSwitch>,
    /// Concurrent mode, part of [`Self::remark`]: draining the mutators' unflushed SATB
    /// buffers and walking their allocation buffers in use (black objects).
    pub remark_buffers: Duration,
    /// Concurrent mode, part of [`Self::remark`]: the global SATB queue and the allocation
    /// buffers retired since the last precleaning (barrier-free: the roots and the written
    /// pages rescanned), before tracing.
    pub remark_queues: Duration,
    /// Concurrent mode, part of [`Self::remark`]: tracing from what the buffers and queues
    /// shaded, to completion.
    pub remark_trace: Duration,
    /// Concurrent mode, part of [`Self::remark`]: the ephemeron fix-point and (generational)
    /// the remembered set's old slots written since the precleaning.
    pub remark_weak_remset: Duration,
    /// Concurrent mode: entries the remark took from the global SATB queue (flushed since the
    /// last precleaning; [`Self::remark_satb_entries`] counts the mutators' unflushed ones).
    pub remark_queue_entries: usize,
    /// Concurrent mode: bytes of allocation buffers (retired since the last precleaning, and
    /// in use) whose black objects the remark walked.
    pub remark_buffer_bytes: usize,
    /// Concurrent mode: objects the remark scanned (traced) in the pause.
    pub remark_traced: usize,
    /// SATB mode: bytes of allocation buffers retired during marking whose black objects the
    /// last handshake, right before the pause, walked (instead of the remark).
    pub handshake_buffer_bytes: usize,
    /// Concurrent mode, part of the remark+flip pause after the remark: making sure the
    /// destination half is clean (`prepare_destination`).
    pub flip_prepare: Duration,
    /// Concurrent mode, part of the remark+flip pause after the remark: waiting for a prefill
    /// chunk in flight to finish (`crate::prefill::Prefill::quiesce`).
    pub flip_quiesce: Duration,
    /// Concurrent mode, part of the remark+flip pause after the remark: the roots forwarded,
    /// the weak table swept, the identity hashes re-keyed, the large objects' fields forwarded.
    pub flip_refs: Duration,
    /// Concurrent mode, part of the remark+flip pause after the remark: switching halves and
    /// arming the compaction.
    pub flip_arm: Duration,
    /// Concurrent mode: destination pages filled by mutator faults (the rest by workers).
    pub pages_by_fault: u64,
    /// Dense pages (exactly one fully live old page at the same page offset) updated in place
    /// and moved with no copy: the move strategy's, and the copy strategy's dense runs
    /// ([`crate::HeapConfig::dense_runs`]).
    pub pages_in_place: u64,
    /// Pages of the old half recycled as the new half's fresh memory (`UFFDIO_MOVE`; see
    /// [`crate::HeapConfig::recycle_old_half`]) at the end of this cycle; after an in-place
    /// slide ([`crate::StwCompaction::Slide`]), the pages of its free tail kept present as
    /// fresh memory instead of being released. Copy strategy: the old pages recycled during
    /// the compaction, instead of being released early, count here too.
    pub pages_recycled: usize,
    /// Copy strategy: of [`Self::pages_recycled`], those the compaction workers recycled
    /// (the rest, the end of the cycle).
    pub pages_recycled_early: usize,
    /// Of [`Self::pages_recycled`], the old half's pages kept mapped for the next flip into
    /// it ([`crate::HeapConfig::keep_fresh_bytes`]) instead of being moved or released.
    pub pages_kept: usize,
    /// Concurrent mode: the fresh memory the prefill thread made present, and its CPU, between
    /// the previous cycle's end (the heap's creation for the first) and this cycle's initial
    /// mark, then during this cycle (the prefill thread's `UFFDIO_COPY`s of zeroes are
    /// collector-thread CPU, which a stop-the-world heap's mutators spend in their refills).
    pub prefilled: [crate::PrefillShare; 2],
    /// Concurrent mode: bytes of objects the markers and mark assists scanned (traced) in this
    /// cycle, as published to the pacer: the black objects walked but not scanned are not
    /// counted (compare with the live bytes a stop-the-world mark finds).
    pub scanned_bytes: usize,
    /// Move strategy: pages filled into a staging page and moved.
    pub pages_staged: u64,
    /// Copy strategy, part of [`CpuSplit::compact`]: the workers' thread CPU in releasing and
    /// recycling the old pages nobody reads any more during the compaction (`MADV_DONTNEED`,
    /// `UFFDIO_MOVE` and their bookkeeping).
    pub cpu_release: Duration,
    /// Part of [`CpuSplit::compact`]: the workers' thread CPU after their last batch (waiting
    /// for the pages mutator faults claimed, filling those whose fill failed).
    pub cpu_tail: Duration,
    /// Pages mapped by `UFFDIO_COPY` (every page under the copy strategy; fallbacks otherwise).
    pub pages_copied: u64,
    /// Copy strategy: old-half pages released during the compaction, as soon as every page
    /// reading them was mapped (the rest are released when it ends); those recycled as fresh
    /// memory instead (up to the headroom, see [`Self::pages_recycled`]) included.
    pub pages_released_early: u64,
    /// Concurrent mode: the pacer's decision for this cycle, how it turned out, and what the
    /// mutators paid (assists, waits for the flip). All zero for stop-the-world cycles.
    pub pacing: PaceStats,
    /// Weak references, ephemerons and finalization: what this cycle cleared and delivered,
    /// and its pause time for them.
    pub weak: crate::weak::WeakStats,
    /// Generational mode: what this cycle was and did (all zero/`None` otherwise).
    pub gen: GenStats,
    /// Stop-the-world slide with [`crate::HeapConfig::dense_prefix`]: pages of the half's
    /// dense prefix left in place (their objects kept their addresses; 0 otherwise).
    pub dense_kept_pages: usize,
    /// The dead bytes left in those pages as filler objects (the fragmentation the dense
    /// prefix costs until a later cycle moves those pages). Concurrent copy cycles with
    /// [`crate::HeapConfig::dense_runs`]: the dead bytes kept as fillers to align the black
    /// objects' pages (less than a page per gap).
    pub dense_dead_bytes: usize,
    /// The thread CPU time spent choosing the dense prefix and turning its gaps into fillers,
    /// or aligning the dense runs (with the prefix sums that give the black boundary's rank;
    /// part of [`CycleStats::plan`]).
    pub dense_cpu: Duration,
    /// A stop-the-world cycle that slid in place: the threads that slid (the pausing one and
    /// its helpers, [`crate::HeapConfig::compaction_workers`]); 0 when the cycle did not slide.
    pub slide_threads: usize,
    /// Pieces of a slide on several threads whose copy waited for an earlier piece to be
    /// read (its destination held that piece's source words).
    pub slide_waits: usize,
}

/// What a cycle of a generational heap did ([`crate::Generational`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GenStats {
    /// `Some(true)`: a young cycle; `Some(false)`: a full cycle; `None`: not generational.
    pub young: Option<bool>,
    /// Bytes promoted into the old generation by this cycle.
    pub promoted_bytes: usize,
    /// Remembered-set units (cards, or written pages) this cycle scanned.
    pub dirty_cards: usize,
    /// Old reference slots found in them holding a reference outside the old generation (roots
    /// of the young cycle, forwarded at its flip).
    pub old_slots: usize,
    /// Old-generation bytes after the cycle.
    pub old_bytes: usize,
    /// Survivor bytes allocated during marking (black: compacted without being traced).
    pub black_bytes: usize,
    /// Whether young cycles pay (`HeapConfig::young_cost_max`), measured at this young
    /// cycle's flip: what it traced over the live bytes of the last cycle that traced
    /// everything, in thousandths. `None`: not measured (a full cycle, or a young cycle with
    /// nothing old).
    pub young_cost_pm: Option<u32>,
    /// Full cycles still owed after this one because a young cycle's measured cost exceeded
    /// `HeapConfig::young_cost_max`, or because too many old slots held young references
    /// (`young_slots_over`, `HeapConfig::young_slots_max`); 0: none.
    pub fallback: u32,
    /// Whether the full cycles of `fallback` are owed for too many old-to-young slots (else
    /// for the young cost); false when `fallback` is 0.
    pub fallback_old_slots: bool,
    /// The old slots with a young reference counted at this cycle's end (or forwarded by this
    /// young cycle) when they exceeded `HeapConfig::young_slots_max`: the next cycles are full
    /// (`None`: not over the bound, or not counted).
    pub young_slots_over: Option<usize>,
    /// How many times so far a concurrent cycle about to start counted those slots, with the
    /// world running and with it stopped (the second 0 unless another thread was stopping the
    /// world meanwhile: the count runs before the initial-mark pause, which it lengthened by
    /// up to 0.6 ms at 1 GiB and 2.6 ms on tree-replace at 64 MiB when it ran inside).
    pub young_slots_start_counts: (u64, u64),
    /// After the cycle: the old-generation bytes, and the large-object bytes, past which the
    /// next full cycle runs (set by a full cycle from what it left live: the old generation,
    /// and the large objects it found live; kept by a young cycle).
    pub next_full_at: (usize, usize),
    /// A young cycle that began with an unpinned stranded object (`crate::pins`): it scanned
    /// the whole old generation, so that its flip could let such objects leave (counted in
    /// `PinStats::young_cycles_stranded_left` when they did).
    pub stranded_leave: bool,
    /// Such a young cycle had no room for them beside the compacted objects in its destination
    /// window: they stayed stranded, and leave at a later cycle with the room.
    pub stranded_stayed: bool,
}

/// A barrier-free cycle's fallback to SATB ([`CycleStats::satb_switch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SatbSwitch {
    /// Why the cycle fell back.
    pub reason: SwitchReason,
    /// Written pages the concurrent rescan after the switch found (what the remark would
    /// otherwise have rescanned inside the pause, plus what was written meanwhile).
    pub dirty_pages: usize,
}

/// Why a barrier-free cycle fell back to SATB before its remark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchReason {
    /// The last precleaning round, right before the remark, still found this many written
    /// pages (more than 32): the writes outran precleaning.
    Outrun {
        /// Written pages found.
        pages: usize,
    },
    /// The previous cycle's remark rescanned (or its switch found) this many written pages
    /// (more than 32): the mutators write faster than a remark may rescan.
    WriteRate {
        /// Written pages.
        pages: usize,
    },
    /// Forced by `DebugConfig::force_satb_switch` (tests).
    Forced,
}

impl core::fmt::Display for SwitchReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SwitchReason::Outrun { pages } => write!(
                f,
                "precleaning outrun: its last round found {pages} written pages"
            ),
            SwitchReason::WriteRate { pages } => write!(
                f,
                "write rate: the previous remark rescanned {pages} written pages"
            ),
            SwitchReason::Forced => write!(f, "forced (test)"),
        }
    }
}

/// The pacer's record of one concurrent cycle (see `gc/src/pacer.rs`).
///
/// Assists and flip waits are counted from the previous cycle's record to this one's, so a
/// wait that began during one cycle and ended after its flip is counted in the next record.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PaceStats {
    /// Bytes in use at which this cycle was set to start (0: the occupancy trigger).
    pub trigger_bytes: usize,
    /// Predicted time from the initial mark to the flip (zero: nothing measured yet).
    pub predicted_to_flip: Duration,
    /// Actual time from the initial mark to the flip.
    pub actual_to_flip: Duration,
    /// Smoothed allocation rate, bytes/s, at this cycle's start.
    pub alloc_rate: f64,
    /// Smoothed marking speed of all markers (and assists) together, bytes/s.
    pub mark_rate: f64,
    /// Smoothed compaction speed, bytes/s.
    pub compact_rate: f64,
    /// The trigger decided for the next cycle.
    pub next_trigger_bytes: usize,
    /// The mark work (bytes) the next cycle was paced for: what this cycle left live, and in
    /// generational mode, when the next cycle is full, the old generation's live bytes too.
    pub next_mark_bytes: usize,
    /// Concurrent markers that traced this cycle (the GC thread included).
    pub markers: usize,
    /// Mark assists done by allocating mutators.
    pub assists: u64,
    /// Their total time.
    pub assist_time: Duration,
    /// The longest one.
    pub assist_max: Duration,
    /// Of `assists`, those the pacer called urgent (run whatever the mutator's budget; see
    /// `faultline_gc::pacer::plan_assist`).
    pub assists_urgent: u64,
    /// Bytes of objects they scanned.
    pub assist_bytes: u64,
    /// Assists a mutator owed but did not do, because its assists had already taken their
    /// share of the current window (see `faultline_gc::assist`; the debt stays and is paid
    /// later, or by anyone once the space is nearly exhausted).
    pub assists_deferred: u64,
    /// Allocations that found the space exhausted and waited for a flip (the last resort).
    pub flip_waits: u64,
    /// Their total waiting time.
    pub flip_wait_time: Duration,
    /// Compaction assists: slices of page filling done by mutators whose allocation found the
    /// space exhausted after the flip (instead of sleeping until the compaction ends), or, in
    /// a young cycle, had spent its allocation budget (`HeapConfig::young_budget`).
    pub compaction_assists: u64,
    /// Their total time.
    pub compaction_assist_time: Duration,
    /// Destination pages they took.
    pub compaction_assist_pages: u64,
    /// Idle-mode GC threads (`HeapConfig::gc_thread_idle`): times a refill found this
    /// heap's collector behind its schedule, or its prefill thread behind the refills, and
    /// switched them to their normal policy, since the previous cycle was recorded (switches
    /// made between cycles count with the next cycle).
    pub behind_switches: u64,
    /// Idle-mode GC threads: schedule checks (a refill's, or the prefill thread's once its
    /// target is met) that found one of them starved of the CPU (runnable at two checks 10 ms
    /// apart with little CPU time in between), which counts as behind, since the previous
    /// cycle was recorded.
    pub starved_refills: u64,
}

impl Default for CycleStats {
    fn default() -> Self {
        CycleStats {
            cycle: 0,
            mode: GcMode::StopTheWorld,
            trigger: Trigger::Explicit,
            pauses: Vec::new(),
            time_to_safepoint: Duration::ZERO,
            mark: Duration::ZERO,
            plan: Duration::ZERO,
            plan_ahead: Duration::ZERO,
            plan_chunks_redone: 0,
            large_refs: Duration::ZERO,
            large_ref_slots: 0,
            large_examined: 0,
            hashed_objects: 0,
            rekey_hashes: Duration::ZERO,
            preclean_rounds: 0,
            preclean_last_dirty: 0,
            remark_dirty_pages: 0,
            handshake: (0, 0),
            satb_switch: None,
            remark_satb_entries: 0,
            remark_buffers: Duration::ZERO,
            remark_queues: Duration::ZERO,
            remark_trace: Duration::ZERO,
            remark_weak_remset: Duration::ZERO,
            remark_queue_entries: 0,
            remark_buffer_bytes: 0,
            remark_traced: 0,
            handshake_buffer_bytes: 0,
            flip_prepare: Duration::ZERO,
            flip_quiesce: Duration::ZERO,
            flip_refs: Duration::ZERO,
            flip_arm: Duration::ZERO,
            compact: Duration::ZERO,
            compact_fill: Duration::ZERO,
            compact_map: Duration::ZERO,
            cpu: CpuSplit::default(),
            total: Duration::ZERO,
            moving_before: 0,
            moving_after: 0,
            large_before: 0,
            large_after: 0,
            live_objects: 0,
            mutator_black_objects: 0,
            pages_filled: 0,
            calls: CallSnapshot::default(),
            vmas: (0, 0),
            mutators: 0,
            mutator_tts: Vec::new(),
            remark: Duration::ZERO,
            pages_by_fault: 0,
            pages_in_place: 0,
            pages_recycled: 0,
            pages_staged: 0,
            pages_copied: 0,
            pages_released_early: 0,
            cpu_release: Duration::ZERO,
            pages_recycled_early: 0,
            pages_kept: 0,
            prefilled: [crate::PrefillShare::default(); 2],
            scanned_bytes: 0,
            cpu_tail: Duration::ZERO,
            pacing: PaceStats::default(),
            weak: crate::weak::WeakStats::default(),
            gen: GenStats::default(),
            dense_kept_pages: 0,
            dense_dead_bytes: 0,
            dense_cpu: Duration::ZERO,
            slide_threads: 0,
            slide_waits: 0,
        }
    }
}

impl CycleStats {
    /// Bytes in use before the cycle.
    pub fn heap_before(&self) -> usize {
        self.moving_before + self.large_before
    }
    /// Bytes in use after the cycle.
    pub fn heap_after(&self) -> usize {
        self.moving_after + self.large_after
    }
    /// Sum of the pauses.
    pub fn pause_total(&self) -> Duration {
        self.pauses.iter().map(|p| p.duration).sum()
    }
    /// Longest pause.
    pub fn pause_max(&self) -> Duration {
        self.pauses
            .iter()
            .map(|p| p.duration)
            .max()
            .unwrap_or_default()
    }
    /// mmap + munmap + mremap + mprotect during the cycle.
    pub fn mmap_family(&self) -> u64 {
        self.calls.mmap_family()
    }
    /// REGISTER + UNREGISTER during the cycle.
    pub fn registrations(&self) -> u64 {
        self.calls.get(Call::UffdRegister) + self.calls.get(Call::UffdUnregister)
    }

    /// The mutator that held the cycle's pauses up longest (the largest time to safepoint),
    /// if any mutator was stopped.
    pub fn slowest_mutator(&self) -> Option<&MutatorTts> {
        self.mutator_tts.iter().max_by_key(|t| t.time)
    }

    /// One GC-log line, in the spirit of the JVM's unified logging.
    pub fn log_line(&self) -> String {
        let pauses: Vec<String> = self
            .pauses
            .iter()
            .map(|p| {
                if p.kind == "remark+flip" {
                    format!(
                        "{} {:.3}ms (remark {:.3}ms, plan+flip {:.3}ms; planned ahead {:.3}ms, {} chunks redone; large-object refs {:.3}ms for {} slots, {} objects examined)",
                        p.kind,
                        p.duration.as_secs_f64() * 1e3,
                        self.remark.as_secs_f64() * 1e3,
                        p.duration.saturating_sub(self.remark).as_secs_f64() * 1e3,
                        self.plan_ahead.as_secs_f64() * 1e3,
                        self.plan_chunks_redone,
                        self.large_refs.as_secs_f64() * 1e3,
                        self.large_ref_slots,
                        self.large_examined
                    ) + &format!(
                        " {{remark: buffers {:.3}ms, queues {:.3}ms ({} entries, {}K of buffers), trace {:.3}ms ({} objs), weak+remset {:.3}ms; flip: quiesce {:.3}ms, plan {:.3}ms, prepare {:.3}ms, refs {:.3}ms, arm {:.3}ms}}",
                        self.remark_buffers.as_secs_f64() * 1e3,
                        self.remark_queues.as_secs_f64() * 1e3,
                        self.remark_queue_entries,
                        self.remark_buffer_bytes / 1024,
                        self.remark_trace.as_secs_f64() * 1e3,
                        self.remark_traced,
                        self.remark_weak_remset.as_secs_f64() * 1e3,
                        self.flip_quiesce.as_secs_f64() * 1e3,
                        self.plan.as_secs_f64() * 1e3,
                        self.flip_prepare.as_secs_f64() * 1e3,
                        self.flip_refs.as_secs_f64() * 1e3,
                        self.flip_arm.as_secs_f64() * 1e3,
                    ) + &if let Some(sw) = self.satb_switch {
                        format!(
                            " [wp_async -> satb ({}): {} preclean rounds; switch rescanned {} concurrently; satb handshake {}/{} mutators; remark took {} entries]",
                            sw.reason,
                            self.preclean_rounds,
                            sw.dirty_pages,
                            self.handshake.1,
                            self.handshake.0,
                            self.remark_satb_entries
                        )
                    } else if self.preclean_rounds > 0 {
                        format!(
                            " [wp_async: {} preclean rounds, last found {} written pages; remark rescanned {}]",
                            self.preclean_rounds, self.preclean_last_dirty, self.remark_dirty_pages
                        )
                    } else {
                        format!(
                            " [satb handshake {}/{} mutators, walked {}K of buffers; remark took {} entries]",
                            self.handshake.1,
                            self.handshake.0,
                            self.handshake_buffer_bytes / 1024,
                            self.remark_satb_entries
                        )
                    }
                } else {
                    format!("{} {:.3}ms", p.kind, p.duration.as_secs_f64() * 1e3)
                }
            })
            .collect();
        let p = &self.pacing;
        let pacing = if self.mode == GcMode::Concurrent {
            format!(
                " | pace: trigger {}K, to flip predicted {:.3}ms actual {:.3}ms, alloc {:.1}MB/s, mark {:.1}MB/s x{} markers, next trigger {}K for {}K of marking | assists {} ({:.3}ms, max {:.3}ms, {}K scanned, {} urgent, {} deferred), compaction assists {} ({:.3}ms, {} pages), flip waits {} ({:.3}ms){}",
                p.trigger_bytes / 1024,
                p.predicted_to_flip.as_secs_f64() * 1e3,
                p.actual_to_flip.as_secs_f64() * 1e3,
                p.alloc_rate / 1e6,
                p.mark_rate / 1e6,
                p.markers,
                p.next_trigger_bytes / 1024,
                p.next_mark_bytes / 1024,
                p.assists,
                p.assist_time.as_secs_f64() * 1e3,
                p.assist_max.as_secs_f64() * 1e3,
                p.assist_bytes / 1024,
                p.assists_urgent,
                p.assists_deferred,
                p.compaction_assists,
                p.compaction_assist_time.as_secs_f64() * 1e3,
                p.compaction_assist_pages,
                p.flip_waits,
                p.flip_wait_time.as_secs_f64() * 1e3,
                if p.behind_switches > 0 {
                    format!(
                        ", behind {} (starved {})",
                        p.behind_switches, p.starved_refills
                    )
                } else {
                    String::new()
                },
            )
        } else {
            String::new()
        };
        format!(
            "[gc] #{} {} ({}) pause: {} | tts {:.3}ms{} | heap {}K->{}K | live {} objs | pages {} (by faults {}) | mmap-family {} register {} | vmas {}->{} | cycle {:.3}ms{}",
            self.cycle,
            match self.mode {
                GcMode::StopTheWorld => "stw",
                GcMode::Concurrent => "concurrent",
            },
            self.trigger.name(),
            pauses.join(", "),
            self.time_to_safepoint.as_secs_f64() * 1e3,
            match self.slowest_mutator() {
                Some(t) if !t.time.is_zero() => format!(
                    " (longest: mutator {} {:.3}ms)",
                    t.label(),
                    t.time.as_secs_f64() * 1e3
                ),
                _ => String::new(),
            },
            self.heap_before() / 1024,
            self.heap_after() / 1024,
            self.live_objects,
            self.pages_filled,
            self.pages_by_fault,
            self.mmap_family(),
            self.registrations(),
            self.vmas.0,
            self.vmas.1,
            self.total.as_secs_f64() * 1e3,
            pacing
        ) + &self.cpu_log()
            + &self.weak_log()
            + &self.gen_log()
            + &self.dense_log()
    }

    /// The GC-log part on the collector's thread CPU by phase ([`CpuSplit`]) and, for a
    /// concurrent cycle, where its pages went: destination pages mapped by `UFFDIO_COPY`, old
    /// pages released early or recycled as fresh memory (`UFFDIO_MOVE`, during the compaction
    /// and at its end), and the compaction's wall time in page fills and mapping calls.
    fn cpu_log(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let c = &self.cpu;
        // The workers' release and tail CPU are parts of the compaction's: said beside it.
        let compact_parts = if self.mode == GcMode::Concurrent {
            format!(
                " (of it releases {:.1}ms, tail {:.1}ms)",
                ms(self.cpu_release),
                ms(self.cpu_tail)
            )
        } else {
            String::new()
        };
        let split = format!(
            " | cpu: mark {:.1}ms, pause {:.1}ms, compact {:.1}ms{compact_parts}, finish {:.1}ms",
            ms(c.mark),
            ms(c.pause),
            ms(c.compact),
            ms(c.finish)
        );
        if self.mode != GcMode::Concurrent {
            return split;
        }
        format!(
            "{split}; pages copied {}, released early {}, recycled {} ({} early, {} kept), fill {:.1}ms, map {:.1}ms; prefilled {}K before ({:.1}ms), {}K during ({:.1}ms); scanned {}K",
            self.pages_copied,
            self.pages_released_early,
            self.pages_recycled,
            self.pages_recycled_early,
            self.pages_kept,
            ms(self.compact_fill),
            ms(self.compact_map),
            self.prefilled[0].bytes >> 10,
            ms(self.prefilled[0].cpu),
            self.prefilled[1].bytes >> 10,
            ms(self.prefilled[1].cpu),
            self.scanned_bytes >> 10
        )
    }

    /// The GC-log part on the slide's dense prefix (empty when it kept nothing).
    fn dense_log(&self) -> String {
        if self.mode == GcMode::Concurrent && (self.pages_in_place > 0 || self.dense_dead_bytes > 0)
        {
            return format!(
                " | dense runs: {} pages moved in place, {} B of fillers, aligned in {:.3}ms",
                self.pages_in_place,
                self.dense_dead_bytes,
                self.dense_cpu.as_secs_f64() * 1e3
            );
        }
        if self.dense_kept_pages == 0 {
            return String::new();
        }
        format!(
            " | dense prefix: {} pages kept, {} B dead in them",
            self.dense_kept_pages, self.dense_dead_bytes
        )
    }

    /// The GC-log part on the generational mode (empty when the heap is not generational).
    fn gen_log(&self) -> String {
        let g = &self.gen;
        match g.young {
            None => String::new(),
            Some(young) => format!(
                " | gen: {} cycle{}, {} B promoted, {} dirty cards, {} old slots, old {} B | window {} B at start, survivors {} B of which {} B allocated while marking; mark {:.0}ms (cpu {:.0}ms), compaction {:.0}ms (cpu {:.0}ms)",
                if young { "young" } else { "full" },
                match (g.young_cost_pm, g.fallback, g.fallback_old_slots) {
                    (Some(pm), f, slots) => format!(
                        " (traced {:.2}x the live set; {})",
                        f64::from(pm) / 1e3,
                        match (f > 0, slots) {
                            (false, _) => "young cycles pay",
                            (true, false) => "young cycles do not pay, full cycles next",
                            (true, true) => "too many old-to-young slots, full cycles next",
                        }
                    ),
                    (None, f, false) if f > 0 => format!(" ({f} more full: young cycles did not pay)"),
                    (None, f, true) if f > 0 => format!(" ({f} more full: too many old-to-young slots)"),
                    (None, _, _) => String::new(),
                } + &g.young_slots_over.map_or(String::new(), |n| format!(
                    " ({n} old-to-young slots over young_slots_max: full cycles next)"
                )) + match (g.stranded_leave, g.stranded_stayed) {
                    (true, false) => " (whole old generation scanned: unpinned stranded objects leave)",
                    (true, true) => " (whole old generation scanned; unpinned stranded objects stay: no room beside the pins)",
                    _ => "",
                },
                g.promoted_bytes,
                g.dirty_cards,
                g.old_slots,
                g.old_bytes,
                self.moving_before,
                self.moving_after + g.promoted_bytes,
                g.black_bytes,
                self.mark.as_secs_f64() * 1e3,
                self.cpu.mark.as_secs_f64() * 1e3,
                self.compact.as_secs_f64() * 1e3,
                self.cpu.compact.as_secs_f64() * 1e3,
            ),
        }
    }

    /// The GC-log part on weak processing (empty when the heap has no weak references).
    fn weak_log(&self) -> String {
        let w = &self.weak;
        if w.entries + w.registrations + w.boxes_freed + w.finalized == 0 {
            return String::new();
        }
        format!(
            " | weak: {} entries, cleared {} weak + {} ephemerons, {} boxes freed, {} finalized ({} pending), ephemeron rounds {} ({} values), {:.3}ms in pause",
            w.entries,
            w.weak_cleared,
            w.ephemerons_cleared,
            w.boxes_freed,
            w.finalized,
            w.registrations,
            w.ephemeron_rounds,
            w.ephemeron_values_marked,
            w.pause_time.as_secs_f64() * 1e3
        )
    }
}

/// Percentile summary of durations.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Percentiles {
    /// Count.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Maximum.
    pub max: Duration,
    /// Sum.
    pub total: Duration,
}

impl Percentiles {
    /// Summarise `xs` (nearest-rank percentiles).
    pub fn of(mut xs: Vec<Duration>) -> Self {
        if xs.is_empty() {
            return Percentiles::default();
        }
        xs.sort_unstable();
        let rank = |p: f64| {
            let r = ((p * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
            xs[r - 1]
        };
        Percentiles {
            count: xs.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            max: *xs.last().unwrap_or(&Duration::ZERO),
            total: xs.iter().sum(),
        }
    }
}

/// Drop the oldest recorded cycles beyond `limit`, in batches (amortised O(1) per cycle: the
/// history holds between `limit` and `2 * limit` entries).
pub(crate) fn trim_history(h: &mut Vec<CycleStats>, limit: Option<usize>) {
    if let Some(limit) = limit {
        let limit = limit.max(1);
        if h.len() >= 2 * limit {
            h.drain(..h.len() - limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The full cycles owed say why: for too many old-to-young slots (`young_slots_max`), not
    /// "young cycles did not pay" (`young_cost_max`, which may be off), as every owed full
    /// cycle said before.
    #[test]
    fn the_gc_log_says_why_full_cycles_are_owed() {
        let full = |f, slots| CycleStats {
            gen: GenStats {
                young: Some(false),
                fallback: f,
                fallback_old_slots: slots,
                ..GenStats::default()
            },
            ..CycleStats::default()
        };
        assert!(full(2, true)
            .gen_log()
            .contains("(2 more full: too many old-to-young slots)"));
        assert!(full(2, false)
            .gen_log()
            .contains("(2 more full: young cycles did not pay)"));
        assert!(!full(0, true).gen_log().contains("more full"));
        let young = CycleStats {
            gen: GenStats {
                young: Some(true),
                young_cost_pm: Some(400),
                fallback: 3,
                fallback_old_slots: true,
                ..GenStats::default()
            },
            ..CycleStats::default()
        };
        assert!(young
            .gen_log()
            .contains("0.40x the live set; too many old-to-young slots"));
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let xs: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(xs);
        assert_eq!(p.p50, Duration::from_millis(50));
        assert_eq!(p.p99, Duration::from_millis(99));
        assert_eq!(p.max, Duration::from_millis(100));
        assert_eq!(p.count, 100);
        assert_eq!(Percentiles::of(vec![]).count, 0);
    }
}

/// A lock-free, allocation-free histogram of durations in nanoseconds, safe to record into from
/// a signal handler: log-linear buckets (4 per power of two, so a reported percentile is within
/// 25 % of the true value, always rounded down to its bucket's lower bound).
#[derive(Debug)]
pub struct AtomicHistogram {
    buckets: [core::sync::atomic::AtomicU64; 256],
    max: core::sync::atomic::AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        AtomicHistogram {
            buckets: core::array::from_fn(|_| core::sync::atomic::AtomicU64::new(0)),
            max: core::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl AtomicHistogram {
    fn bucket(ns: u64) -> usize {
        if ns < 4 {
            return ns as usize;
        }
        let lz = 63 - ns.leading_zeros() as usize;
        let sub = ((ns >> (lz - 2)) & 3) as usize;
        (lz * 4 + sub).min(255)
    }
    fn lower_bound(b: usize) -> u64 {
        if b < 4 {
            return b as u64;
        }
        let lz = b / 4;
        let sub = (b % 4) as u64;
        (1u64 << lz) | (sub << (lz - 2))
    }
    /// Record one duration (async-signal-safe).
    pub fn record(&self, ns: u64) {
        use core::sync::atomic::Ordering::Relaxed;
        self.buckets[Self::bucket(ns)].fetch_add(1, Relaxed);
        self.max.fetch_max(ns, Relaxed);
    }
    /// Count, p50, p99 and max.
    pub fn summary(&self) -> FaultStats {
        use core::sync::atomic::Ordering::Relaxed;
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let n: u64 = counts.iter().sum();
        let at = |q: f64| -> Duration {
            if n == 0 {
                return Duration::ZERO;
            }
            let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
            let mut acc = 0;
            for (b, &c) in counts.iter().enumerate() {
                acc += c;
                if acc >= rank {
                    return Duration::from_nanos(Self::lower_bound(b));
                }
            }
            Duration::ZERO
        };
        FaultStats {
            count: n,
            p50: at(0.5),
            p99: at(0.99),
            max: Duration::from_nanos(self.max.load(Relaxed)),
        }
    }
}

/// Mutator fault stalls: how often mutators waited on a page, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultStats {
    /// Faults taken by mutators.
    pub count: u64,
    /// Median stall (bucket lower bound).
    pub p50: Duration,
    /// 99th percentile stall (bucket lower bound).
    pub p99: Duration,
    /// Longest stall (exact).
    pub max: Duration,
}

/// Where mutator faults spent their time, summed over the heap's life (both deliveries; see
/// `Heap::fault_breakdown`). Every fault the resolver made present is one of: it filled the
/// page itself (`filled`), it waited for another thread's claim (`waited`, of which
/// `rescued` stopped waiting and filled a copy itself), or it found the page mapped already
/// (`found_mapped`). Signal delivery is not in these figures: it is the part of a mutator's
/// stall outside the resolver (see `benches/suite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultBreakdown {
    /// Faults the resolver made present (or found present).
    pub faults: u64,
    /// Faults that won their page's claim and filled and mapped it.
    pub filled: u64,
    /// Their time filling the page (copying live words, rewriting references).
    pub fill: Duration,
    /// Their time in the mapping call (`UFFDIO_COPY` / `MOVE` / `CONTINUE`).
    pub map: Duration,
    /// The longest fill and map of one such fault.
    pub own_max: Duration,
    /// Faults that found their page claimed by another thread and waited.
    pub waited: u64,
    /// Their total wait (including a rescue's fill and map).
    pub wait: Duration,
    /// The longest single wait.
    pub wait_max: Duration,
    /// Waits whose page was in a compaction worker's current batch.
    pub waited_on_worker: u64,
    /// Their total wait.
    pub wait_on_worker: Duration,
    /// Waits that outlasted the spin (30 µs): then rescued, or asleep on the page's futex
    /// where a rescue is not possible (the rest ended while spinning).
    pub slept: u64,
    /// Waits that outlasted the bound and filled and mapped a copy of the page themselves
    /// (the claimer's own mapping call then found the page present).
    pub rescued: u64,
    /// Faults that found the page mapped already (a race with its filler).
    pub found_mapped: u64,
    /// Faults whose thread the scheduler switched out while it resolved them (an involuntary
    /// context switch, `getrusage`): CPU contention, whatever the fault path did. Counted only
    /// while `faultline::count_fault_context_switches(true)` is in force (two `getrusage`
    /// calls a fault, ~0.3 µs); otherwise 0, like `blocked`, and every fault counts in
    /// `unpreempted`.
    pub preempted: u64,
    /// Their total stall.
    pub preempted_time: Duration,
    /// Faults whose thread gave the CPU up itself while it resolved them (a voluntary context
    /// switch: a futex sleep on a claimed page, a yield, or a sleep inside a kernel call, such
    /// as a lock the mapping call waited for). They may be preempted too.
    pub blocked: u64,
    /// Their total stall.
    pub blocked_time: Duration,
    /// Faults whose stall reached 1 ms.
    pub over_1ms: u64,
    /// Page-table lookups (`mincore`, or a pagemap read for a memfd arena: both take the mmap
    /// lock for reading, so a thread that maps or unmaps memory can hold them up for
    /// milliseconds) the fault resolver made itself, where the compaction's state could not
    /// answer: a fault that raced with the end of a compaction on a page outside its
    /// destination range. Expected 0.
    pub presence_checks: u64,
    /// Pages faults filled and mapped besides their own: the unclaimed pages around it in its
    /// group that a fault took in the same fill and mapping call (copy strategy,
    /// `HeapConfig::fault_group_pages`). Faults that did so count once in `filled`.
    pub neighbours: u64,
    /// Over the heap's life, by any thread: EEXISTs from mapping calls (faults, workers,
    /// populating refills and the prefiller) believed without a page-table lookup because the
    /// page was recorded as mapped recently: populated, or mapped by a fault's rescue racing
    /// its claimer (`ArenaStats::exists_recorded`).
    pub exists_recorded: u64,
    /// Over the heap's life, by any thread: EEXISTs from mapping calls checked against the
    /// page tables (`ArenaStats::exists_checked`): a racing mapping whose record was
    /// overwritten first, or one nobody records (a worker's or a claiming fault's).
    pub exists_checked: u64,
    /// The stalls of the other faults (not preempted): what the fault path itself costs,
    /// load or no load.
    pub unpreempted: FaultStats,
}

#[cfg(test)]
mod histogram_tests {
    use super::*;

    #[test]
    fn histogram_percentiles_are_within_a_bucket() {
        let h = AtomicHistogram::default();
        for ns in 1..=10_000u64 {
            h.record(ns * 100);
        }
        let s = h.summary();
        assert_eq!(s.count, 10_000);
        let p50 = s.p50.as_nanos() as f64;
        assert!((375_000.0..=500_000.0).contains(&p50), "{p50}");
        assert!(s.p99.as_nanos() as f64 >= 0.75 * 990_000.0);
        assert_eq!(s.max, Duration::from_nanos(1_000_000));
        assert_eq!(AtomicHistogram::default().summary().count, 0);
    }
}

#[cfg(test)]
mod history_tests {
    use super::*;

    #[test]
    fn history_is_trimmed_to_its_limit_keeping_the_newest() {
        let mut h = Vec::new();
        for cycle in 1..=1000u64 {
            h.push(CycleStats {
                cycle,
                ..CycleStats::default()
            });
            trim_history(&mut h, Some(10));
            assert!(h.len() < 20);
            assert_eq!(h.last().unwrap().cycle, cycle);
        }
        assert!(h.len() >= 10);
        assert!(h.windows(2).all(|w| w[1].cycle == w[0].cycle + 1));
        let mut unbounded = vec![CycleStats::default(); 50];
        trim_history(&mut unbounded, None);
        assert_eq!(unbounded.len(), 50);
    }
}

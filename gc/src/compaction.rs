//! Concurrent compaction: the shared state of one compaction (destination page states, the
//! move strategy's staging pages) and the code that fills and maps destination pages, for the
//! compaction workers and for mutator faults alike.
//!
//! After the flip pause every reference already holds its object's new address; destination
//! pages are filled while mutators run, and a mutator that touches a page before it is filled
//! takes a userfault that fills exactly that page ([`crate::fault`]). Whoever wins a page's
//! claim ([`crate::pagestate`]) fills it from the intact old half and maps it; others wait on
//! the page's futex.
//!
//! # Strategies
//!
//! - **copy**: fill a buffer, `UFFDIO_COPY` (workers batch contiguous claimed pages into one
//!   call). A run of *dense* pages (each exactly one fully live old page at the same page
//!   offset: the black objects, which the plan aligns for it, `crate::dense::align_runs`) is
//!   taken whole by a worker ([`Compaction::dense_run`]): its references are forwarded in
//!   place in the old pages, which are then moved into the new half with one `UFFDIO_MOVE`
//!   (no fill, no kernel copy or page allocation, nothing to release), the old pages locked
//!   meanwhile as the move strategy's dense page is; a page the move refuses is copied from
//!   its updated old page;
//! - **move**: fill a *staging page* — an old-half page no destination page still reads (its
//!   reader count fell to zero, or it held no live data) — and `UFFDIO_MOVE` it into place: no
//!   kernel allocation, no second copy. A *dense* page (the destination page is exactly one
//!   fully live old page at the same page offset) is updated in place and moved with no copy at
//!   all. With no staging page free, the page is copied. Unread old pages beyond what the
//!   compaction can ever stage into are released right after the flip
//!   ([`Compaction::staging_surplus`]), so the old half's garbage does not stay resident
//!   through the compaction. Workers claim runs of up to 16
//!   contiguous pages and, when as many contiguous staging pages are free, map the run with one
//!   MOVE. The reader counts are built by the compaction thread right after the flip
//!   ([`Compaction::plan_readers`], O(pages), out of the pause); pages filled before they are
//!   ready are copied and keep their reads (their old pages never become staging pages).
//! - **minor**: the arena is a memfd mapped twice; the page is filled through the unregistered
//!   view (allocating the page-cache page) and mapped with `UFFDIO_CONTINUE`.
//!
//! Invariants:
//! - `plan` is written only in the flip pause ([`Compaction::arm`]) while `active` is false and
//!   `users` is zero; while `active`, it is read-only, and the side tables it holds are not
//!   touched (the next cycle starts only after this compaction has finished);
//! - the old half is never written while `active`, except a staging page or a dense page whose
//!   reader count proved that no destination page will read it again (a dense page is locked
//!   for its in-place update by swapping its count 1 for `IN_PLACE`, so no fault's rescue
//!   reads it meanwhile; a page holding a kept, pinned object has one reader more, which
//!   never finishes: it is never staged, moved, updated in place or released early; its
//!   pinned objects are written by their owners as usual);
//! - a fault may map a page whose claimer is still filling it (its *rescue*, from the intact
//!   old half into its own buffer); it never touches the page's state word, and it reads only
//!   old pages it holds (reader counts raised while non-zero) or old pages nothing releases;
//! - everything a fault calls (`ensure_page` and what it calls) allocates nothing and takes no
//!   lock: page buffers are on the stack, waits are futex waits, errors are `Copy` data;
//! - a page is MAPPED only after its contents are complete and mapped (see `pagestate`).

use core::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use faultline_heap::bitmap::{Bitmap, LiveWords};
use faultline_heap::object::WORD;
use faultline_heap::{ArenaOffset, VolatileArena, PAGE_SIZE};

use crate::faultbatch::{BatchBuffers, MAX_FAULT_RUN};
use crate::mode::MapStrategy;
use crate::pagestate::{self, Futex, Waited, MAPPED};
use crate::plan::{DestPage, OldPage, Plan, PAGE_WORDS};
use crate::release::recycle_run;
use crate::space::{AtomicRange, MovingSpace};

/// Pages a worker fills per COPY (and the longest run mapped with one MOVE).
const WORKER_BATCH: usize = 16;
/// Copy strategy: a worker releases (or recycles) the old pages nobody reads any more once
/// per this many destination pages it covered, so each call gives back longer runs (the old
/// half keeps about this many pages per worker more than it would: 1-2 MiB).
const RELEASE_EVERY_PAGES: usize = 256;
/// Copy strategy: once the recycling budget is spent, a worker releases a run of unread old
/// pages during the compaction only once it holds at least this many pages (see
/// [`Compaction::release_unread`]); the move strategy likewise releases its surplus after the
/// flip in runs this long. Unbatched, every `MADV_DONTNEED` call flushes the TLB of every CPU
/// running the process (an IPI per call); mutator faults fill destination pages out of order,
/// so their old pages fall unread in scattered order: churn at 64 MiB made about 3,000
/// `madvise` calls per cycle, most of them for a page or two. Batched
/// ([`VolatileArena::release_many`]) the runs cost little, but a shorter run still waits: a
/// page still present at the end of the cycle may be recycled as fresh memory there, which is
/// cheaper than releasing it and populating a fresh one (releasing every run showed no GC CPU
/// gain at 64 MiB, and higher medians on churn and tree-replace over six rounds, within this
/// machine's run-to-run spread; at 4 GiB its young cycles were 0.92-0.94 s mean against
/// 0.96-1.02; BENCHMARKS.md, s18).
const MIN_RELEASE_RUN: usize = 16;
/// Copy strategy: during the compaction, old pages nobody reads any more are recycled as the
/// current half's fresh memory only while the mutators have less than this much of it ahead
/// of their allocation pointer ([`MovingSpace::fresh_ahead`]); the rest are released at once.
/// Recycling every such page up to the allocation headroom kept the old half's pages resident
/// in the new half instead of releasing them: the two halves' footprint never fell during the
/// compaction, and the new half ended the cycle fully resident (1 GiB suite runs, BENCHMARKS.md
/// "Peak RSS at 1 GiB"). Fresh memory needed beyond it comes from the prefiller. 128 MiB, not
/// the first 32: with 32, fragmentation at 64 MiB paid 25-55 % more GC CPU per cycle (the
/// prefiller populating, at ~1 µs a page, what recycling had provided) for 50 MiB less RSS,
/// while at 1 GiB the two bounds' peak RSS differed by at most 4 % (BENCHMARKS.md, session s9
/// lead).
const RECYCLE_AHEAD: usize = 128 << 20;
/// Move strategy: unread old pages kept free as staging pages when the rest of the surplus
/// is released right after the flip ([`Compaction::staging_surplus`]): the fills that run
/// before the old pages they read are free take these (16 MiB).
const MOVE_STAGING_RESERVE: usize = 4096;
/// Destination pages a compaction assist takes at a time.
const ASSIST_BATCH: usize = 4;
/// A fault waiting on another thread's claim spins this long (announced, so that a worker
/// maps its run early; a claimed page is normally mapped within one page fill and one mapping
/// call), then stops waiting and fills a copy of the page itself (copy and move strategies,
/// see [`Compaction::rescue`]): the claimer is most likely descheduled. No futex sleep before
/// the bound: a timed futex wait sleeps at least the thread's timer slack (50 µs by default).
const FAULT_SPIN_NS: u64 = 30_000;
/// The bound itself (where a rescue is not possible, the fault then sleeps on the futex).
const FAULT_RESCUE_NS: u64 = FAULT_SPIN_NS;
/// Move strategy: the reader count of an old page locked by its dense page's claimer for an
/// in-place update (no reader count comes near it).
const IN_PLACE: u32 = u32::MAX;
/// Worker batches published for fault attribution (workers beyond this are not attributed).
const RUN_SLOTS: usize = 16;

/// Cumulative attribution of mutator faults (never reset; see [`crate::FaultBreakdown`]).
/// Atomic counters only: updated from signal handlers.
#[derive(Debug, Default)]
pub(crate) struct FaultAttrib {
    faults: AtomicU64,
    filled: AtomicU64,
    fill_ns: AtomicU64,
    map_ns: AtomicU64,
    own_max_ns: AtomicU64,
    waited: AtomicU64,
    wait_ns: AtomicU64,
    wait_max_ns: AtomicU64,
    waited_worker: AtomicU64,
    wait_worker_ns: AtomicU64,
    slept: AtomicU64,
    rescued: AtomicU64,
    found_mapped: AtomicU64,
    preempted: AtomicU64,
    preempted_ns: AtomicU64,
    blocked: AtomicU64,
    blocked_ns: AtomicU64,
    /// Faults whose stall reached 1 ms.
    over_1ms: AtomicU64,
    /// Page-table lookups (`VolatileArena::page_mapped`) made by the resolver itself where
    /// the compaction's state could not answer (see [`Compaction::finished_page`]).
    presence_checks: AtomicU64,
    /// Pages faults filled and mapped besides their own, in the runs around it
    /// ([`crate::HeapConfig::fault_group_pages`]).
    neighbours: AtomicU64,
    /// Stalls of the faults whose thread was not preempted while resolving them.
    unpreempted: crate::stats::AtomicHistogram,
}

impl FaultAttrib {
    /// Count one fault the resolver made present in `ns`; `preempted`: the resolving thread
    /// was switched out meanwhile (CPU contention); `blocked`: it gave the CPU up itself.
    pub(crate) fn count_fault(&self, ns: u64, preempted: bool, blocked: bool) {
        self.faults.fetch_add(1, Ordering::Relaxed);
        if ns >= 1_000_000 {
            self.over_1ms.fetch_add(1, Ordering::Relaxed);
        }
        if blocked {
            self.blocked.fetch_add(1, Ordering::Relaxed);
            self.blocked_ns.fetch_add(ns, Ordering::Relaxed);
        }
        if preempted {
            self.preempted.fetch_add(1, Ordering::Relaxed);
            self.preempted_ns.fetch_add(ns, Ordering::Relaxed);
        } else {
            self.unpreempted.record(ns);
        }
    }

    /// A copy of the counters.
    pub(crate) fn snapshot(&self) -> crate::stats::FaultBreakdown {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let d = |a: &AtomicU64| std::time::Duration::from_nanos(a.load(Ordering::Relaxed));
        crate::stats::FaultBreakdown {
            faults: l(&self.faults),
            filled: l(&self.filled),
            fill: d(&self.fill_ns),
            map: d(&self.map_ns),
            own_max: d(&self.own_max_ns),
            waited: l(&self.waited),
            wait: d(&self.wait_ns),
            wait_max: d(&self.wait_max_ns),
            waited_on_worker: l(&self.waited_worker),
            wait_on_worker: d(&self.wait_worker_ns),
            slept: l(&self.slept),
            rescued: l(&self.rescued),
            found_mapped: l(&self.found_mapped),
            preempted: l(&self.preempted),
            preempted_time: d(&self.preempted_ns),
            blocked: l(&self.blocked),
            blocked_time: d(&self.blocked_ns),
            over_1ms: l(&self.over_1ms),
            presence_checks: l(&self.presence_checks),
            neighbours: l(&self.neighbours),
            exists_recorded: 0,
            exists_checked: 0,
            unpreempted: self.unpreempted.summary(),
        }
    }
}

/// Where a page fill's time went (the fault path times its own fills).
#[derive(Debug, Default, Clone, Copy)]
struct Split {
    fill_ns: u64,
    map_ns: u64,
}

impl Split {
    /// Account a fill from `t_fill` and a mapping call from `t_map` until now.
    fn add(&mut self, t_fill: Instant, t_map: Instant) {
        let now = Instant::now();
        self.fill_ns += (t_map - t_fill).as_nanos() as u64;
        self.map_ns += (now - t_map).as_nanos() as u64;
    }
}

/// Per-cycle counters of how pages were mapped.
#[derive(Debug, Default)]
pub(crate) struct PageCounters {
    /// Pages mapped by compaction workers.
    pub by_worker: AtomicU64,
    /// Pages mapped by mutator faults.
    pub by_fault: AtomicU64,
    /// Dense pages updated in place and moved (move strategy).
    pub in_place: AtomicU64,
    /// Pages filled into a staging page and moved (move strategy).
    pub staged: AtomicU64,
    /// Pages copied.
    pub copied: AtomicU64,
    /// Copy strategy: old-half pages released during the compaction (every reader mapped),
    /// recycled ones included.
    pub released_early: AtomicU64,
    /// Copy strategy: of those, pages recycled (moved to the current half's claimed end as
    /// fresh memory) instead of released.
    pub recycled_early: AtomicU64,
    /// Nanoseconds workers spent filling batches of pages (see `CycleStats::compact_fill`).
    pub fill_ns: AtomicU64,
    /// Nanoseconds workers spent mapping batches of pages.
    pub map_ns: AtomicU64,
    /// The workers' thread CPU time, summed (see `CpuSplit::compact`).
    pub cpu_ns: AtomicU64,
    /// Copy strategy: of it, the workers' CPU in releasing and recycling the old pages nobody
    /// reads any more (`MADV_DONTNEED`, `UFFDIO_MOVE`; see `CycleStats::cpu_release`).
    pub release_cpu_ns: AtomicU64,
    /// Of it, the workers' CPU after their last batch: waiting for the pages mutator faults
    /// claimed, and filling those whose fill failed (see `CycleStats::cpu_tail`).
    pub tail_cpu_ns: AtomicU64,
}

impl PageCounters {
    /// Account a batch filled from `t_fill` and mapped from `t_map` until now.
    fn time(&self, t_fill: Instant, t_map: Instant) {
        let now = Instant::now();
        let ns = |d: std::time::Duration| d.as_nanos() as u64;
        self.fill_ns
            .fetch_add(ns(t_map - t_fill), Ordering::Relaxed);
        self.map_ns.fetch_add(ns(now - t_map), Ordering::Relaxed);
    }

    /// Account a batch's fill and mapping call, timed by `split`.
    fn add_split(&self, split: &Split) {
        self.fill_ns.fetch_add(split.fill_ns, Ordering::Relaxed);
        self.map_ns.fetch_add(split.map_ns, Ordering::Relaxed);
    }

    fn reset(&self) {
        for c in [
            &self.by_worker,
            &self.by_fault,
            &self.in_place,
            &self.staged,
            &self.copied,
            &self.released_early,
            &self.recycled_early,
            &self.fill_ns,
            &self.map_ns,
            &self.cpu_ns,
            &self.release_cpu_ns,
            &self.tail_cpu_ns,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// The shared state of concurrent compaction (see the module invariants).
pub(crate) struct Compaction {
    /// A compaction is in progress: faults in the destination range are ours.
    pub active: AtomicBool,
    /// Resolvers inside the fault path (the plan may not be replaced while non-zero).
    pub users: AtomicU32,
    plan: UnsafeCell<Option<Plan>>,
    /// Per destination page: UNPROCESSED / CLAIMED / MAPPED (see `pagestate`).
    states: Vec<AtomicU32>,
    /// Move strategy: per old page, how many destination pages still read it.
    readers: Vec<AtomicU32>,
    /// Move strategy: per destination page, the first and last old page it reads (packed
    /// `first << 32 | last`); valid once `readers_ready` is set.
    src: Vec<AtomicU64>,
    /// Move strategy: `readers`, `src` and the free list are built (by the compaction thread,
    /// after the flip). Until then every page is copied, and such pages never give their
    /// reads back (their old pages simply never become staging pages).
    readers_ready: AtomicBool,
    /// Per destination page (valid once `readers_ready` is set): it is exactly one fully live
    /// old page at the same page offset (a *dense* page, see [`Compaction::dense_page`]).
    dense: Bitmap,
    /// Copy strategy: dense pages are moved in place in this compaction (set in the pause
    /// that arms it, where the plan aligned them: `HeapConfig::dense_runs`).
    pub dense_runs: AtomicBool,
    /// Destination page states already reset to UNPROCESSED before the pause
    /// ([`Compaction::prepare`]).
    prepared: AtomicUsize,
    free: PageStack,
    /// [`Compaction::plan_readers`]' table of first source words, kept between cycles (no
    /// allocation per cycle: a large one would be mapped and unmapped each time).
    starts: std::sync::Mutex<Vec<usize>>,
    /// The page-mapping strategy.
    pub strategy: MapStrategy,
    /// How pages were mapped in this compaction.
    pub counters: PageCounters,
    /// Where mutator faults spent their time (cumulative over the heap's life).
    pub attrib: FaultAttrib,
    /// Per worker: the batch `[start, end)` of destination pages it is claiming and filling
    /// (packed `start << 32 | end`, 0 when none), so a fault can tell that it waits on a
    /// worker. Statistics only.
    runs: [AtomicU64; RUN_SLOTS],
    /// Test knob (`DebugConfig::worker_stall`), ns: the worker that claims destination page 0
    /// sleeps this long holding the claim.
    worker_stall_ns: AtomicU64,
    cursor: AtomicUsize,
    /// The destination pages of the armed plan ([`Compaction::progress`]).
    armed_pages: AtomicUsize,
    /// Copy strategy: old pages the workers may still recycle as fresh memory in this
    /// compaction instead of releasing them (set by [`Compaction::run_workers`]).
    recycle_budget: AtomicUsize,
    /// Copy strategy: old pages (absolute) the end of the cycle keeps
    /// mapped for the next flip into the old half ([`crate::release::flip_watermarks`]): never
    /// released or recycled early (set by [`Compaction::run_workers`]; 0, 0: none).
    keep: AtomicRange,
    /// Copy strategy: the size of the aligned groups of destination pages a fault fills the
    /// unclaimed pages of around its own ([`crate::HeapConfig::fault_group_pages`]; 1 for
    /// the other strategies: its own page only).
    fault_group: usize,
    /// The buffers those runs are filled in.
    run_bufs: BatchBuffers,
    /// The destination range `[lo, hi)` (addresses) of the last compaction that finished, all
    /// of whose pages were MAPPED when it was disarmed; empty while one is active (see
    /// [`Compaction::finished_page`]).
    done: [AtomicUsize; 2],
}

// SAFETY: `plan` follows the discipline in the module invariants (written only while no
// reader can exist); everything else is atomic.
unsafe impl Sync for Compaction {}
// SAFETY: as above; the plan holds only `Arc`s and plain data.
unsafe impl Send for Compaction {}

#[repr(C, align(4096))]
struct PageBuf([u8; PAGE_SIZE]);

impl Compaction {
    /// State for a half of `half_pages` pages (every page MAPPED: no compaction); copy
    /// strategy: a fault fills the unclaimed pages of its group of `fault_group` around its own.
    pub(crate) fn new(half_pages: usize, strategy: MapStrategy, fault_group: usize) -> Self {
        let fault_group = if strategy == MapStrategy::Copy {
            fault_group.clamp(1, MAX_FAULT_RUN)
        } else {
            1
        };
        // Page filling asks whether the CPU has `popcnt` (`Plan::fill_pages`); the answer is
        // cached by the standard library after the first question. Ask it here, outside any
        // signal handler, so a fault's fill only ever reads the cached answer.
        #[cfg(target_arch = "x86_64")]
        let _ = std::arch::is_x86_feature_detected!("popcnt");
        Compaction {
            active: AtomicBool::new(false),
            users: AtomicU32::new(0),
            plan: UnsafeCell::new(None),
            states: (0..half_pages).map(|_| AtomicU32::new(MAPPED)).collect(),
            readers: (0..half_pages).map(|_| AtomicU32::new(0)).collect(),
            src: (0..half_pages).map(|_| AtomicU64::new(0)).collect(),
            readers_ready: AtomicBool::new(false),
            dense: Bitmap::new(half_pages.max(1)),
            dense_runs: AtomicBool::new(false),
            prepared: AtomicUsize::new(0),
            free: PageStack::new(half_pages),
            starts: std::sync::Mutex::new(Vec::new()),
            strategy,
            counters: PageCounters::default(),
            attrib: FaultAttrib::default(),
            runs: core::array::from_fn(|_| AtomicU64::new(0)),
            worker_stall_ns: AtomicU64::new(0),
            cursor: AtomicUsize::new(0),
            armed_pages: AtomicUsize::new(0),
            recycle_budget: AtomicUsize::new(0),
            keep: AtomicRange::default(),
            fault_group,
            run_bufs: BatchBuffers::new(fault_group > 1),
            done: [AtomicUsize::new(0), AtomicUsize::new(0)],
        }
    }

    /// The plan of the active compaction.
    ///
    /// # Safety
    /// Only while `active` with the use announced in `users`, or by the thread that armed it
    /// until it clears `active`.
    pub(crate) unsafe fn plan(&self) -> &Plan {
        // SAFETY: by the caller's contract no writer exists, and `arm` installed a plan.
        unsafe { (*self.plan.get()).as_ref() }.expect("a compaction is armed")
    }

    /// Install the plan of a new compaction and arm it. Called in the pause, with the world
    /// stopped and the previous compaction finished.
    ///
    /// # Safety
    /// No compaction may be active and no resolver may be inside (`users == 0`).
    pub(crate) unsafe fn arm(&self, plan: Plan) {
        debug_assert!(!self.active.load(Ordering::SeqCst));
        while self.users.load(Ordering::SeqCst) != 0 {
            std::hint::spin_loop();
        }
        // Only the pages the plan grew by since `prepare` (black allocations and the objects
        // the remark marked) are reset here.
        let ready = self.prepared.swap(0, Ordering::Relaxed).min(plan.pages);
        for s in &self.states[ready..plan.pages] {
            s.store(pagestate::UNPROCESSED, Ordering::Relaxed);
        }
        self.free.clear();
        self.forget_finished();
        self.readers_ready.store(false, Ordering::Relaxed);
        self.cursor.store(0, Ordering::Relaxed);
        self.armed_pages.store(plan.pages, Ordering::Relaxed);
        self.counters.reset();
        // SAFETY: no reader exists (caller's contract).
        unsafe { *self.plan.get() = Some(plan) };
        self.active.store(true, Ordering::SeqCst);
    }

    /// Every page is mapped: disarm, and wait until no resolver is inside.
    pub(crate) fn disarm(&self) {
        self.note_finished();
        self.active.store(false, Ordering::SeqCst);
        while self.users.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
    }

    /// Before the pause (concurrent planning): reset the states of the first `pages`
    /// destination pages, the plan's lower bound (marking only adds live words), so that the
    /// pause resets only the rest. Nothing reads the states while no compaction is active.
    pub(crate) fn prepare(&self, pages: usize) {
        debug_assert!(!self.active.load(Ordering::SeqCst));
        let pages = pages.min(self.states.len());
        for s in &self.states[..pages] {
            s.store(pagestate::UNPROCESSED, Ordering::Relaxed);
        }
        self.prepared.store(pages, Ordering::Relaxed);
    }

    /// Right after the flip, on the compaction thread: build the reader tables of the move
    /// strategy (staging) and of the copy strategy (early release); a no-op for minor.
    /// `old_pages` is the number of present old-half pages.
    pub(crate) fn after_flip(&self, arena: &VolatileArena, old_pages: usize) {
        // SAFETY: active (armed by this cycle's flip) until the caller disarms it.
        let pd = unsafe { self.plan() };
        if self.strategy == MapStrategy::Move || self.releases_early(pd) {
            self.plan_readers(arena, pd, old_pages);
        }
    }

    /// Copy strategy, arena choreography: an old-half page is released as soon as every
    /// destination page that reads it is mapped (workers release them in batches), so the two
    /// halves are never both fully resident; up to the allocation headroom, and while the
    /// mutators have less than [`RECYCLE_AHEAD`] of fresh memory ahead, such pages are
    /// recycled as the current half's fresh memory instead (moved, not released: see
    /// [`Self::run_workers`]). (The move strategy recycles those pages as staging pages
    /// instead; with the per-cycle choreography the old pages are detached elsewhere.)
    fn releases_early(&self, pd: &Plan) -> bool {
        self.strategy == MapStrategy::Copy && pd.src == pd.from
    }

    /// Release the old pages nobody reads any more (copy strategy, see `releases_early`), in
    /// runs of contiguous pages; or, while the recycling budget lasts (`moving` given, see
    /// [`Self::run_workers`]) and the mutators have less than [`RECYCLE_AHEAD`] of fresh
    /// memory ahead, recycle them instead: move each run to the current half's
    /// claimed end as fresh memory ([`recycle_run`]). The pages are collected in the worker's
    /// `pending` set; when none is recycled, only runs of at least [`MIN_RELEASE_RUN`] pages
    /// are released here, all of a call's runs together ([`VolatileArena::release_many`]: one
    /// `process_madvise` for up to a few hundred runs): a shorter run waits for its neighbours,
    /// and what is left of such runs when the compaction ends is released (or recycled) by the
    /// end of the cycle with the rest of the old half ([`crate::release::finish_old_half`]). A
    /// failed release is likewise left to the end of the cycle. Not for signal context.
    fn release_unread(
        &self,
        arena: &VolatileArena,
        pd: &Plan,
        moving: Option<&MovingSpace>,
        pending: &mut Unreleased,
    ) {
        while let Some(j) = self.free.pop() {
            pending.insert(j.index());
        }
        // While pages are still recycled, every run is (a move flushes the TLB once per page
        // on this kernel however long the run, and a page recycled now is fresh memory the
        // prefiller need not populate); only releases wait for long runs.
        let moving = moving.filter(|mv| {
            self.recycle_budget.load(Ordering::Relaxed) > 0 && mv.fresh_ahead() < RECYCLE_AHEAD
        });
        let min = if moving.is_some() { 1 } else { MIN_RELEASE_RUN };
        let mut batch = std::mem::take(&mut pending.batch);
        pending.take_runs(min, |first, n| {
            self.release_run(arena, pd, moving, OldPage(first as u32), n, &mut batch)
        });
        self.release_batch(arena, &mut batch);
        pending.batch = batch;
    }

    /// Release the runs of old pages in `batch` (one `process_madvise` per few hundred runs,
    /// [`VolatileArena::release_many`]), count the pages of the runs released, and empty it.
    /// A failed release leaves its run and the runs after it to the end of the cycle.
    fn release_batch(&self, arena: &VolatileArena, batch: &mut Vec<(ArenaOffset, usize)>) {
        if batch.is_empty() {
            return;
        }
        let (released, _) = arena.release_leading(batch);
        let pages = batch[..released]
            .iter()
            .map(|&(_, len)| len / PAGE_SIZE)
            .sum::<usize>();
        self.counters
            .released_early
            .fetch_add(pages as u64, Ordering::Relaxed);
        batch.clear();
    }

    /// [`Self::release_unread`] on a worker, its thread CPU added to the counters.
    fn timed_release(
        &self,
        arena: &VolatileArena,
        pd: &Plan,
        moving: Option<&MovingSpace>,
        pending: &mut Unreleased,
    ) {
        let cpu0 = crate::cputime::thread_cpu();
        self.release_unread(arena, pd, moving, pending);
        let ns = crate::cputime::since(cpu0).as_nanos() as u64;
        self.counters
            .release_cpu_ns
            .fetch_add(ns, Ordering::Relaxed);
    }

    /// Recycle (while the budget lasts) the `n` unread old pages from `first` on, but those
    /// the end of the cycle keeps, and add the rest to `batch` for release.
    fn release_run(
        &self,
        arena: &VolatileArena,
        pd: &Plan,
        moving: Option<&MovingSpace>,
        first: OldPage,
        n: usize,
        batch: &mut Vec<(ArenaOffset, usize)>,
    ) {
        let old = pd.old_page_addr(first);
        let end = old + n * PAGE_SIZE;
        let (klo, khi) = self.keep.raw();
        let (klo, khi) = (klo.clamp(old, end), khi.clamp(old, end));
        if khi > klo {
            for (s, e) in [(old, klo), (khi, end)] {
                if e > s {
                    self.release_pages(arena, moving, s, (e - s) / PAGE_SIZE, batch);
                }
            }
            return;
        }
        self.release_pages(arena, moving, old, n, batch);
    }

    /// [`Self::release_run`] for `n` old pages from `old` on, none of which is kept.
    fn release_pages(
        &self,
        arena: &VolatileArena,
        moving: Option<&MovingSpace>,
        old: usize,
        n: usize,
        batch: &mut Vec<(ArenaOffset, usize)>,
    ) {
        let moved = match moving {
            Some(mv) => self.recycle_unread(arena, mv, old, n),
            None => 0,
        };
        if moved > 0 {
            self.counters
                .released_early
                .fetch_add(moved as u64, Ordering::Relaxed);
        }
        if moved < n {
            batch.push((
                arena.offset_of(old + moved * PAGE_SIZE),
                (n - moved) * PAGE_SIZE,
            ));
        }
    }

    /// Recycle up to `n` old pages from `old` on, as far as the budget and [`RECYCLE_AHEAD`]
    /// allow; returns how many moved (a prefix of the run).
    fn recycle_unread(
        &self,
        arena: &VolatileArena,
        mv: &MovingSpace,
        old: usize,
        n: usize,
    ) -> usize {
        let n = n.min(RECYCLE_AHEAD.saturating_sub(mv.fresh_ahead()) / PAGE_SIZE);
        let take = self
            .recycle_budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b > 0 && n > 0).then(|| b - b.min(n))
            })
            .map_or(0, |b| b.min(n));
        if take == 0 {
            return 0;
        }
        // SAFETY: every destination page that read these old pages is mapped (their reader
        // counts fell to zero, so they were pushed on the free list), no fault's rescue holds
        // them (it would hold a reader count), and no reference points into the old half:
        // nothing reads them again, as for the early release this replaces.
        let (moved, stop) = unsafe { recycle_run(arena, mv, old, take) };
        // (Kept pages in the way stop this run only: recycling resumes above them once the
        // refills have claimed them.)
        if stop && !mv.kept_in_the_way() {
            self.recycle_budget.store(0, Ordering::Relaxed);
        } else if moved < take {
            self.recycle_budget
                .fetch_add(take - moved, Ordering::Relaxed);
        }
        self.counters
            .recycled_early
            .fetch_add(moved as u64, Ordering::Relaxed);
        moved
    }

    /// Set the test knob `DebugConfig::worker_stall` for the next [`Self::run_workers`].
    pub(crate) fn set_worker_stall(&self, d: Option<std::time::Duration>) {
        let ns = d.map_or(0, |d| d.as_nanos().min(u64::MAX as u128) as u64);
        self.worker_stall_ns.store(ns, Ordering::Relaxed);
    }

    /// Test knob: a worker that just claimed page `k` sleeps if it is page 0.
    fn stall_test(&self, k: DestPage) {
        let ns = self.worker_stall_ns.load(Ordering::Relaxed);
        if k.0 == 0 && ns > 0 {
            std::thread::sleep(std::time::Duration::from_nanos(ns));
        }
    }

    /// Fill and map every destination page with `threads` workers (mutator faults fill pages
    /// meanwhile); returns when every page is MAPPED. On the compaction thread, while active.
    /// With `recycle` (the current half and a number of pages; copy strategy, pages released
    /// early, an arena that can move pages), the workers recycle up to that many of the old
    /// pages they would release early as fresh memory instead ([`recycle_run`]). The workers
    /// run `compact_nice` nice steps raised ([`crate::HeapConfig::gc_compact_nice`]). Returns
    /// the pages recycled. The old pages `keep` (absolute `[start, end)`) are neither released
    /// nor recycled: the end of the cycle keeps them ([`crate::release`]).
    pub(crate) fn run_workers(
        &self,
        arena: &VolatileArena,
        threads: usize,
        recycle: Option<(&MovingSpace, usize)>,
        keep: Option<(usize, usize)>,
        compact_nice: u8,
    ) -> usize {
        // SAFETY: active (armed by this cycle's flip) until the caller disarms it.
        let pd = unsafe { self.plan() };
        let (klo, khi) = keep.unwrap_or((0, 0));
        self.keep.set(klo, khi);
        let moving = recycle.and_then(|(mv, pages)| {
            (pages > 0 && self.releases_early(pd) && arena.can_move()).then(|| {
                self.recycle_budget.store(pages, Ordering::Relaxed);
                mv
            })
        });
        // The workers run on the GC thread's crew ([`crate::crew`]); the caller waits.
        crate::crew::fan_out(
            "faultline-compact",
            threads.max(1),
            |slot| worker(self, arena, pd, slot, moving, compact_nice),
            || (),
        );
        self.recycle_budget.store(0, Ordering::Relaxed);
        self.keep.set(0, 0);
        self.counters.recycled_early.load(Ordering::Relaxed) as usize
    }

    /// The running compaction's progress: destination pages claimed in order by its workers
    /// and compaction assists (pages mutators' faults filled out of order are not counted),
    /// and its destination pages; `None` when no compaction is active.
    pub(crate) fn progress(&self) -> Option<(usize, usize)> {
        if !self.active.load(Ordering::Acquire) {
            return None;
        }
        let total = self.armed_pages.load(Ordering::Relaxed);
        Some((self.cursor.load(Ordering::Relaxed).min(total), total))
    }

    /// Make every destination page of `[addr, addr+len)` present (for memory handed to a
    /// system call). Not for signal context (it may wait).
    pub(crate) fn ensure_range(&self, arena: &VolatileArena, addr: usize, len: usize) {
        self.users.fetch_add(1, Ordering::SeqCst);
        if self.active.load(Ordering::SeqCst) {
            // SAFETY: active, and our use is announced.
            let pd = unsafe { self.plan() };
            let end = (addr + len).min(pd.to + pd.pages * PAGE_SIZE);
            let mut a = addr.max(pd.to) & !(PAGE_SIZE - 1);
            while a < end {
                if let Some(k) = pd.dest_page_at(a) {
                    self.ensure_page(arena, pd, k);
                }
                a += PAGE_SIZE;
            }
        }
        self.users.fetch_sub(1, Ordering::SeqCst);
    }

    /// A compaction assist (a mutator whose allocation found the space exhausted while this
    /// compaction runs, so that it helps the cycle end instead of sleeping): fill destination
    /// pages from the workers' cursor, a batch at a time, until `budget` has passed or no batch
    /// is left. Returns the pages taken. Not for signal context (it may wait on a page).
    /// Pages of a batch this call took and did not finish are filled by the workers' final
    /// pass, which waits for every page.
    pub(crate) fn assist(&self, arena: &VolatileArena, budget: std::time::Duration) -> usize {
        self.users.fetch_add(1, Ordering::SeqCst);
        let mut taken = 0;
        if self.active.load(Ordering::SeqCst) {
            // SAFETY: active, and our use is announced (`disarm` waits for `users == 0`).
            let pd = unsafe { self.plan() };
            let t0 = std::time::Instant::now();
            while t0.elapsed() < budget {
                let start = self.cursor.fetch_add(ASSIST_BATCH, Ordering::Relaxed);
                if start >= pd.pages {
                    break;
                }
                for k in start..(start + ASSIST_BATCH).min(pd.pages) {
                    self.ensure_page(arena, pd, DestPage(k));
                    taken += 1;
                }
            }
        }
        self.users.fetch_sub(1, Ordering::SeqCst);
        taken
    }

    /// Move strategy: which old pages each destination page reads, how many readers each old
    /// page has, and the initially free (unread, present) old pages. Runs on the compaction
    /// thread after the flip (O(pages), kept out of the pause); until it is done, pages are
    /// copied.
    fn plan_readers(&self, arena: &VolatileArena, pd: &Plan, old_pages: usize) {
        let (live, mark) = (pd.live(), pd.mark());
        for r in &self.readers[..old_pages] {
            r.store(0, Ordering::Relaxed);
        }
        // First source word of every destination page in one linear pass; the last source word
        // of page k is the live word just before the first of page k+1.
        let mut starts = self
            .starts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        starts.clear();
        starts.reserve(pd.pages);
        live.select_every(PAGE_WORDS, pd.live_words, pd.bitmap_words, |_, w| {
            starts.push(w)
        });
        let end_word = (pd.from_top - pd.from) / WORD;
        // Dense pages only matter to a cycle whose plan aligned them (`dense_page` checks the
        // flag before the bit).
        if self.dense_runs.load(Ordering::Relaxed) {
            self.dense.clear_words(pd.pages.div_ceil(64));
            for (k, &w0) in starts.iter().enumerate() {
                if (k + 1) * PAGE_WORDS <= pd.live_words && fully_live_page(live, w0) {
                    self.dense.set(k);
                }
            }
        }
        for k in 0..pd.pages {
            let first = OldPage::of_word(
                mark.prev_set(starts[k])
                    .expect("every live word belongs to a marked object"),
            );
            let last_word = match starts.get(k + 1) {
                Some(&next) => live.bits.prev_set(next - 1),
                None => live.bits.prev_set(end_word.saturating_sub(1)),
            }
            .expect("a live word for every destination word");
            let last = OldPage::of_word(last_word);
            self.src[k].store(((first.0 as u64) << 32) | last.0 as u64, Ordering::Relaxed);
            for j in (first.0..=last.0)
                .map(OldPage)
                .filter(|&j| holds_live(pd, j))
            {
                self.readers(j).fetch_add(1, Ordering::Relaxed);
            }
        }
        // Pages holding kept (pinned) objects have a reader that never finishes: they are
        // never staged, moved in place or released early.
        for (a, b) in pd.kept_pages() {
            for r in &self.readers[a.index()..=b.index().min(old_pages.max(1) - 1)] {
                r.fetch_add(1, Ordering::Relaxed);
            }
        }
        let unread = |j: usize| self.readers[j].load(Ordering::Relaxed) == 0;
        let surplus =
            self.staging_surplus(pd, old_pages, (0..old_pages).filter(|&j| unread(j)).count());
        if surplus == 0 {
            for j in (0..old_pages).filter(|&j| unread(j)) {
                self.free.push(OldPage(j as u32));
            }
        } else {
            let mut set = Unreleased::new(old_pages);
            for j in (0..old_pages).filter(|&j| unread(j)) {
                set.insert(j);
            }
            self.release_surplus(arena, pd, set, surplus);
        }
        self.readers_ready.store(true, Ordering::Release);
    }

    /// Move strategy, arena choreography: how many of the `unread` old pages (no destination
    /// page reads them) the compaction will never need as staging pages. Every destination
    /// page takes one staging page, and every old page a destination page reads is free once
    /// that page is mapped, so `old_pages - pages` of the old pages are never needed; of the
    /// unread ones, [`MOVE_STAGING_RESERVE`] stay free for the fills that run before the old
    /// pages they read are free. 0 for the other strategies.
    fn staging_surplus(&self, pd: &Plan, old_pages: usize, unread: usize) -> usize {
        if self.strategy != MapStrategy::Move || pd.src != pd.from {
            return 0;
        }
        old_pages
            .saturating_sub(pd.pages)
            .min(unread.saturating_sub(MOVE_STAGING_RESERVE))
    }

    /// Move strategy: release up to `surplus` of the unread old pages in `set` (runs of at
    /// least [`MIN_RELEASE_RUN`] pages; nothing reads them, and nobody can take them as staging
    /// pages before they are on the free list) and put the rest on the free list as staging
    /// pages. On the compaction thread, before `readers_ready`.
    fn release_surplus(
        &self,
        arena: &VolatileArena,
        pd: &Plan,
        mut set: Unreleased,
        surplus: usize,
    ) {
        let mut left = surplus;
        set.take_runs(1, |first, n| {
            let m = if n >= MIN_RELEASE_RUN { n.min(left) } else { 0 };
            let at = arena.offset_of(pd.old_page_addr(OldPage(first as u32)));
            let released = m > 0 && arena.release(at, m * PAGE_SIZE).is_ok();
            let m = if released { m } else { 0 };
            left -= m;
            self.counters
                .released_early
                .fetch_add(m as u64, Ordering::Relaxed);
            for j in first + m..first + n {
                self.free.push(OldPage(j as u32));
            }
        });
    }

    /// Destination page `k` is done: drop its claims on old pages, freeing those nobody reads
    /// any more (except `moved`, which is no longer present and whose count its mover reset).
    fn release_readers(&self, k: DestPage, moved: Option<OldPage>) {
        // SAFETY: called for a page of the active compaction, which announced its use.
        let pd = unsafe { self.plan() };
        let v = self.src[k.0].load(Ordering::Relaxed);
        let (a, b) = ((v >> 32) as u32, v as u32);
        for j in (a..=b).map(OldPage).filter(|&j| holds_live(pd, j)) {
            if Some(j) != moved && self.readers(j).fetch_sub(1, Ordering::AcqRel) == 1 {
                self.free.push(j);
            }
        }
    }

    /// The reader count of old page `j`.
    #[inline]
    fn readers(&self, j: OldPage) -> &AtomicU32 {
        &self.readers[j.index()]
    }

    /// The state word of destination page `k`.
    #[inline]
    pub(crate) fn state(&self, k: DestPage) -> &AtomicU32 {
        &self.states[k.0]
    }

    /// If destination page `k` is exactly one fully live old page at the same page offset,
    /// that page's index.
    fn dense_source(&self, pd: &Plan, k: DestPage) -> Option<OldPage> {
        let r0 = k.first_rank();
        if r0 + PAGE_WORDS > pd.live_words {
            return None;
        }
        let w0 = pd.live().select(r0, pd.bitmap_words)?;
        fully_live_page(pd.live(), w0).then(|| OldPage::of_word(w0))
    }

    /// Copy strategy with early release, MOVE available, reader tables built: whether
    /// destination page `k` is a dense page (exactly one fully live old page at the same page
    /// offset, [`crate::dense::align_runs`]; see [`Self::dense_run`]) whose old page the end
    /// of the cycle does not keep. (Such a page may lie anywhere in the old half, not only
    /// among the black pages: a kept page moved away would be a hole in the fresh memory of
    /// the next flip into the half; it is copied instead.)
    fn dense_page(&self, arena: &VolatileArena, pd: &Plan, k: DestPage) -> bool {
        self.dense.get(k.0)
            && self.dense_runs.load(Ordering::Relaxed)
            && self.readers_ready.load(Ordering::Acquire)
            && self.releases_early(pd)
            && arena.can_move()
            && !self.keeps(pd.old_page_addr(self.src_pages(k).1))
    }

    /// Whether the old page at `old` is one the end of the cycle keeps (see `keep`).
    #[inline]
    fn keeps(&self, old: usize) -> bool {
        self.keep
            .get()
            .is_some_and(|(lo, hi)| old >= lo && old < hi)
    }

    /// The first and last old page destination page `k` reads.
    #[inline]
    fn src_pages(&self, k: DestPage) -> (OldPage, OldPage) {
        let v = self.src[k.0].load(Ordering::Relaxed);
        (OldPage((v >> 32) as u32), OldPage(v as u32))
    }

    /// Copy strategy, worker side: a run of dense pages from `k` on (before `end`), the old
    /// pages `j0, j0 + 1, ...` (each dense page's last, and only whole, old page; an object
    /// may straddle into the run's first page from the page before, whose header it then
    /// reads, and from each page of the run into the next). The run ends on a page whose old
    /// page the next destination page does not read (no object straddles out of it), so the
    /// run's old pages are read by the run's pages alone: claim each page, lock each old page
    /// (its reader count, the run's reads of it, -> `IN_PLACE`, as the move strategy's dense
    /// page: a fault's rescue then waits instead of reading it), forward their references in
    /// place ([`Plan::update_in_place`]) and move the run into the new half with one
    /// `UFFDIO_MOVE`: no page filled, no kernel copy or page allocation, and nothing to
    /// release afterwards. A page the move left behind (a kernel error part way) is copied
    /// from its updated old page, which is then released as any other. Publishes every page
    /// it claimed; returns how many (0: it took none, page `k` is to be copied).
    fn dense_run(&self, arena: &VolatileArena, pd: &Plan, k: DestPage, end: DestPage) -> usize {
        if !self.dense_page(arena, pd, k) {
            return 0;
        }
        let j0 = self.src_pages(k).1;
        let j = |i: usize| OldPage(j0.0 + i as u32);
        // Whether page `k + i`'s old page is read by `k + i + 1` (an object straddles out).
        let straddles =
            |i: usize| k.0 + i + 1 < pd.pages && self.src_pages(k.plus(i + 1)).0 == j(i);
        let mut m = 0;
        while k.plus(m) < end
            && (m == 0 || self.dense_page(arena, pd, k.plus(m)))
            && self.src_pages(k.plus(m)).1 == j(m)
        {
            m += 1;
        }
        // Claim pages while they are claimable, then end the run on the last page with no
        // object straddling out of it.
        let mut claimed = 0;
        while claimed < m && pagestate::claim(self.state(k.plus(claimed))) == pagestate::Claim::Won
        {
            claimed += 1;
        }
        let n = (0..claimed)
            .rev()
            .find(|&i| !straddles(i))
            .map_or(0, |i| i + 1);
        for i in n..claimed {
            pagestate::unclaim::<_, Futex>(self.state(k.plus(i)));
        }
        if n == 0 {
            return 0;
        }
        // The run's reads of old page `j(i)`: its own page's, and the next page's if an
        // object straddles into it.
        let reads = |i: usize| 1 + u32::from(i + 1 < n && straddles(i));
        for i in 0..n {
            if self
                .readers(j(i))
                .compare_exchange(reads(i), IN_PLACE, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                // Another reader (a fault's rescue holds it, or a pinned object's page):
                // copy these pages as usual.
                for h in 0..i {
                    self.readers(j(h)).store(reads(h), Ordering::Release);
                }
                for h in 0..n {
                    pagestate::unclaim::<_, Futex>(self.state(k.plus(h)));
                }
                return 0;
            }
            self.stall_test(k.plus(i));
        }
        let t_fill = Instant::now();
        // SAFETY: the old pages `j0 ..` are dense pages `k ..` (fully live, same offsets),
        // present, and locked: only this call reads or writes them.
        unsafe { pd.update_run_in_place(k, n, j0) };
        let t_map = Instant::now();
        let src = pd.old_page_addr(j0);
        // SAFETY: old pages `j0 .. j0 + n` are read by no destination page but the run's,
        // whose claims we hold, and are locked against rescues: nothing reads them in the old
        // half again; they vanish from it.
        let r = unsafe { arena.resolve_move_from(pd.dest_offset(k), src, n * PAGE_SIZE, false) };
        self.counters.time(t_fill, t_map);
        for i in 0..n {
            let kk = k.plus(i);
            // After a failed MOVE a page is either in place (moved before the failure) or
            // still in its old page (updated): copy those, until it succeeds (nothing else can
            // fill this page from the old half any more).
            if r.is_ok() || arena.page_mapped(pd.dest_addr(kk)) {
                self.counters.in_place.fetch_add(1, Ordering::Relaxed);
            } else {
                let old = src + i * PAGE_SIZE;
                retry_or_abort(kk, || self.copy_from(arena, old, pd.dest_offset(kk)));
                self.free.push(j(i));
            }
            // Moved (gone from the old half) or copied (pushed free above): nobody reads it.
            self.readers(j(i)).store(0, Ordering::Release);
        }
        // The run's first page also read the page an object straddles in from.
        let (first, _) = self.src_pages(k);
        if first != j0 && self.readers(first).fetch_sub(1, Ordering::AcqRel) == 1 {
            self.free.push(first);
        }
        for i in 0..n {
            pagestate::publish::<_, Futex>(self.state(k.plus(i)));
        }
        self.counters
            .by_worker
            .fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Fill and map destination page `k` (the caller won its claim), adding the time spent
    /// filling and in the mapping call to `split`. Async-signal-safe.
    fn fill_and_map(
        &self,
        arena: &VolatileArena,
        pd: &Plan,
        k: DestPage,
        split: &mut Split,
    ) -> bool {
        let plan = pd;
        let dst = pd.dest_offset(k);
        match self.strategy {
            MapStrategy::Copy => {
                // Only a page filled after the reader tables were built gives its reads back.
                let counted = self.readers_ready.load(Ordering::Acquire) && self.releases_early(pd);
                let ok = self.copy_page(arena, plan, k, split);
                if ok && counted {
                    self.release_readers(k, None);
                }
                ok
            }
            MapStrategy::Minor => {
                let Ok(view) = arena.fill_view_addr(dst) else {
                    return false;
                };
                let t_fill = Instant::now();
                // SAFETY: the fill view page aliases destination page `k`, which we claimed; it
                // is unregistered, so writing it only allocates its page-cache page.
                let out = unsafe { core::slice::from_raw_parts_mut(view as *mut u8, PAGE_SIZE) };
                plan.fill_page(k, out);
                let t_map = Instant::now();
                let ok = arena.resolve_continue(dst, PAGE_SIZE).is_ok();
                split.add(t_fill, t_map);
                ok
            }
            MapStrategy::Move if !self.readers_ready.load(Ordering::Acquire) => {
                self.copy_page(arena, plan, k, split)
            }
            MapStrategy::Move => {
                if let Some(j) = self.dense_source(pd, k) {
                    // Only this page still reads old page j: update it in place and move it.
                    // Lock j for that (reader count 1 -> IN_PLACE): a rescuer's hold, which
                    // would read j, then fails; one that came first makes this fail instead.
                    if self
                        .readers(j)
                        .compare_exchange(1, IN_PLACE, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        let t_fill = Instant::now();
                        plan.update_in_place(k, j);
                        let src = pd.old_page_addr(j);
                        let t_map = Instant::now();
                        // SAFETY: old page j is read by no other destination page.
                        let r = unsafe { arena.resolve_move_from(dst, src, PAGE_SIZE, false) };
                        split.add(t_fill, t_map);
                        if r.is_ok() {
                            self.counters.in_place.fetch_add(1, Ordering::Relaxed);
                            // j is gone from the old half: nobody reads it.
                            self.readers(j).store(0, Ordering::Release);
                            self.release_readers(k, Some(j));
                            return true;
                        }
                        // The page stayed where it was (updated); copy it instead.
                        self.readers(j).store(1, Ordering::Release);
                        let ok = self.copy_from(arena, src, dst);
                        if ok {
                            self.release_readers(k, None);
                        }
                        return ok;
                    }
                }
                if let Some(s) = self.free.pop() {
                    let stage = pd.old_page_addr(s);
                    let t_fill = Instant::now();
                    // SAFETY: staging page `s` is a present old-half page that no destination
                    // page reads; we popped it, so it is ours alone.
                    let out =
                        unsafe { core::slice::from_raw_parts_mut(stage as *mut u8, PAGE_SIZE) };
                    plan.fill_page(k, out);
                    let t_map = Instant::now();
                    // SAFETY: the staging page is ours; it vanishes from the old half.
                    let r = unsafe { arena.resolve_move_from(dst, stage, PAGE_SIZE, false) };
                    split.add(t_fill, t_map);
                    let ok = if r.is_ok() {
                        self.counters.staged.fetch_add(1, Ordering::Relaxed);
                        true
                    } else {
                        // MOVE refused (e.g. EBUSY after a fork): copy the filled staging page.
                        self.copy_from(arena, stage, dst)
                    };
                    if ok {
                        self.release_readers(k, None);
                    }
                    return ok;
                }
                let ok = self.copy_page(arena, plan, k, split);
                if ok {
                    self.release_readers(k, None);
                }
                ok
            }
        }
    }

    /// Copy strategy, worker side: claim the destination pages from `k` on (before `end`)
    /// while they are claimable, fill them into `buf` with one [`Plan::fill_pages`] and map
    /// the run with one COPY. A fault that waits on one of them rescues its page after
    /// [`FAULT_RESCUE_NS`] instead of waiting for the run. Publishes or unclaims every page it
    /// claimed; returns how many it claimed (0 if page `k` was not claimable). The old pages
    /// it stops reading are released (or recycled) by the worker, in batches
    /// ([`RELEASE_EVERY_PAGES`]).
    fn copy_run(
        &self,
        arena: &VolatileArena,
        pd: &Plan,
        k: DestPage,
        end: DestPage,
        buf: &mut [u8],
    ) -> usize {
        let dense = self.dense_run(arena, pd, k, end);
        if dense > 0 {
            return dense;
        }
        if pagestate::claim(self.state(k)) != pagestate::Claim::Won {
            return 0;
        }
        self.stall_test(k);
        let mut split = Split::default();
        let (_, n, ok) = self.copy_claimed_run(arena, pd, k, k, end, buf, &mut split);
        self.counters.add_split(&split);
        if ok {
            self.counters
                .by_worker
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        n
    }

    /// Copy strategy: page `k` is claimed by the caller; claim the pages after it (before
    /// `end`), then the pages before it (from `lo` on), while they are claimable and not
    /// dense pages, at most as many in all as `buf` holds; fill the run into `buf` with one
    /// [`Plan::fill_pages`], map it with one COPY, and publish every page (or unclaim every
    /// page if the COPY failed). Adds the fill and the mapping call to `split`. Returns the
    /// run's first page, its length and whether it was mapped. Async-signal-safe (`buf` is
    /// the caller's).
    #[allow(clippy::too_many_arguments)]
    fn copy_claimed_run(
        &self,
        arena: &VolatileArena,
        pd: &Plan,
        lo: DestPage,
        k: DestPage,
        end: DestPage,
        buf: &mut [u8],
        split: &mut Split,
    ) -> (DestPage, usize, bool) {
        let counted = self.readers_ready.load(Ordering::Acquire) && self.releases_early(pd);
        let t_fill = Instant::now();
        // Claim the run first, then fill it with one call: filling page by page costs the
        // per-page object lookup and breaks the run's single memcpy per stretch of live words
        // (gcbench at 64 MiB, copy: 3x the total time). A fault that finds one of these pages
        // claimed waits at most [`FAULT_RESCUE_NS`] before it fills its own copy
        // ([`Self::rescue`]), so a long run does not hold it up.
        let max = buf.len() / PAGE_SIZE;
        let end = DestPage(end.0.min(k.0 + max));
        let mut n = 1;
        while k.plus(n) < end
            && !self.dense_page(arena, pd, k.plus(n))
            && pagestate::claim(self.state(k.plus(n))) == pagestate::Claim::Won
        {
            self.stall_test(k.plus(n));
            n += 1;
        }
        let mut k = k;
        while k > lo
            && n < max
            && !self.dense_page(arena, pd, DestPage(k.0 - 1))
            && pagestate::claim(self.state(DestPage(k.0 - 1))) == pagestate::Claim::Won
        {
            k = DestPage(k.0 - 1);
            n += 1;
        }
        pd.fill_pages(k, &mut buf[..n * PAGE_SIZE]);
        let t_map = Instant::now();
        // SAFETY: `buf` holds `n` filled pages.
        let ok =
            unsafe { arena.resolve_copy(pd.dest_offset(k), buf.as_ptr(), n * PAGE_SIZE) }.is_ok();
        split.add(t_fill, t_map);
        for i in 0..n {
            if ok {
                if counted {
                    self.release_readers(k.plus(i), None);
                }
                pagestate::publish::<_, Futex>(self.state(k.plus(i)));
            } else {
                pagestate::unclaim::<_, Futex>(self.state(k.plus(i)));
            }
        }
        if ok {
            self.counters.copied.fetch_add(n as u64, Ordering::Relaxed);
        }
        (k, n, ok)
    }

    /// Move strategy, worker side (reader tables built): take free staging pages for the
    /// pages from `k` on (before `end`), and over their contiguous prefix claim the pages, fill
    /// them in the staging pages with one [`Plan::fill_pages`] and map the run with one MOVE
    /// (one TLB flush for the run, not one per page). As in [`Self::copy_run`], a fault that
    /// waits on the run rescues its page instead. A dense page (moved with no copy at all by
    /// [`Self::fill_and_map`]) ends a run. Publishes or unclaims every page it claimed; returns
    /// how many it claimed (0: handle page `k` alone).
    fn move_run(&self, arena: &VolatileArena, pd: &Plan, k: DestPage, end: DestPage) -> usize {
        let want = end.0 - k.0;
        if want < 2 {
            return 0;
        }
        let mut stage = [OldPage(0); WORKER_BATCH];
        let mut got = 0;
        while got < want.min(WORKER_BATCH) {
            match self.free.pop() {
                Some(s) => {
                    stage[got] = s;
                    got += 1;
                }
                None => break,
            }
        }
        stage[..got].sort_unstable();
        let mut run = got.min(1);
        while run < got && stage[run].0 == stage[run - 1].0 + 1 {
            run += 1;
        }
        let mut n = 0;
        if run >= 2 {
            let first = pd.old_page_addr(stage[0]);
            // Claim the run first, then fill it with one call (see [`Self::copy_run`]).
            while n < run {
                let kk = k.plus(n);
                if self
                    .dense_source(pd, kk)
                    .is_some_and(|j| self.readers(j).load(Ordering::Acquire) == 1)
                {
                    break;
                }
                if pagestate::claim(self.state(kk)) != pagestate::Claim::Won {
                    break;
                }
                self.stall_test(kk);
                n += 1;
            }
            let t_fill = Instant::now();
            if n > 0 {
                // SAFETY: staging pages `stage[0] .. stage[0] + n` (the run is contiguous) are
                // present old-half pages that no destination page reads; we popped them, so
                // they are ours alone.
                let out =
                    unsafe { core::slice::from_raw_parts_mut(first as *mut u8, n * PAGE_SIZE) };
                pd.fill_pages(k, out);
            }
            if n > 0 {
                let t_map = Instant::now();
                let dst = pd.dest_offset(k);
                // SAFETY: the staging pages are ours; they vanish from the old half.
                let r = unsafe { arena.resolve_move_from(dst, first, n * PAGE_SIZE, false) };
                self.counters.time(t_fill, t_map);
                let mut mapped = 0;
                for i in 0..n {
                    let d = pd.dest_addr(k.plus(i));
                    // After a failed MOVE a page is either in place (moved before the failure)
                    // or still in its staging page (not moved): copy those.
                    let ok = r.is_ok()
                        || arena.page_mapped(d)
                        || self.copy_from(arena, first + i * PAGE_SIZE, arena.offset_of(d));
                    if ok {
                        if r.is_ok() {
                            self.counters.staged.fetch_add(1, Ordering::Relaxed);
                        }
                        self.release_readers(k.plus(i), None);
                        pagestate::publish::<_, Futex>(self.state(k.plus(i)));
                        mapped += 1;
                    } else {
                        pagestate::unclaim::<_, Futex>(self.state(k.plus(i)));
                    }
                }
                self.counters.by_worker.fetch_add(mapped, Ordering::Relaxed);
            }
        }
        for &s in &stage[n..got] {
            self.free.push(s);
        }
        n
    }

    fn copy_page(
        &self,
        arena: &VolatileArena,
        plan: &Plan,
        k: DestPage,
        split: &mut Split,
    ) -> bool {
        let mut buf = PageBuf([0; PAGE_SIZE]);
        let t_fill = Instant::now();
        plan.fill_page(k, &mut buf.0);
        let t_map = Instant::now();
        let ok = self.copy_from(arena, buf.0.as_ptr() as usize, plan.dest_offset(k));
        split.add(t_fill, t_map);
        ok
    }

    fn copy_from(&self, arena: &VolatileArena, src: usize, dst_offset: ArenaOffset) -> bool {
        self.counters.copied.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `src` is a readable page (a filled buffer or a present heap page).
        unsafe { arena.resolve_copy(dst_offset, src as *const u8, PAGE_SIZE) }.is_ok()
    }

    /// In a forked child, in its atfork handler (the only thread; every heap's world stopped;
    /// a memfd arena already replaced by its private copy, so plain writes stay in the child):
    /// fill every destination page of the active compaction that is not MAPPED straight from
    /// the intact old half, on plain memory (the child's arena is no longer registered: an
    /// absent page simply faults in as a zero page), then disarm. The parent brought every
    /// fill in flight to a boundary first ([`crate::forkgate`]), so such a page is absent
    /// and every old page it reads is intact (see the module invariants). Returns the pages
    /// filled here, or `None` if no compaction was active.
    pub(crate) fn finish_in_child(&self, arena: &VolatileArena) -> Option<usize> {
        if !self.active.load(Ordering::SeqCst) {
            return None;
        }
        // Resolvers of threads that do not exist here never leave.
        self.users.store(0, Ordering::SeqCst);
        // SAFETY: active, and no other thread exists in this process to replace the plan.
        let pd = unsafe { self.plan() };
        debug_assert!(arena.is_forked());
        let mut filled = 0;
        let mut k = 0;
        while k < pd.pages {
            if self.states[k].load(Ordering::Acquire) == MAPPED {
                k += 1;
                continue;
            }
            // A run of unmapped pages, filled with one call.
            let mut n = 1;
            while k + n < pd.pages
                && n < WORKER_BATCH
                && self.states[k + n].load(Ordering::Acquire) != MAPPED
            {
                n += 1;
            }
            let dst = pd.dest_addr(DestPage(k));
            // SAFETY: `[dst, dst + n pages)` lies in the destination half of this plan, which
            // no other thread exists to touch; the child's arena is plain private memory, so
            // writing it only faults zero pages in. The plan reads only the old half.
            let out = unsafe { core::slice::from_raw_parts_mut(dst as *mut u8, n * PAGE_SIZE) };
            pd.fill_pages(DestPage(k), out);
            for s in &self.states[k..k + n] {
                s.store(MAPPED, Ordering::Release);
            }
            filled += n;
            k += n;
        }
        self.active.store(false, Ordering::SeqCst);
        Some(filled)
    }

    /// Make destination page `k` mapped (claim and fill, or wait). Async-signal-safe.
    pub(crate) fn ensure_page(&self, arena: &VolatileArena, pd: &Plan, k: DestPage) -> bool {
        let mut split = Split::default();
        pagestate::ensure::<_, Futex>(self.state(k), || {
            self.fill_and_map(arena, pd, k, &mut split)
        })
    }

    /// Whether destination page `k` is in a compaction worker's current batch.
    fn in_worker_run(&self, k: DestPage) -> bool {
        self.runs.iter().any(|r| {
            let v = r.load(Ordering::Relaxed);
            v != 0 && (v >> 32) as usize <= k.0 && k.0 < (v as u32) as usize
        })
    }

    /// The fault path's [`Self::ensure_page`]: make destination page `k` present for a
    /// faulting thread. Claim and fill it; or wait for its claimer, spinning for
    /// [`FAULT_SPIN_NS`], and after [`FAULT_RESCUE_NS`] fill a copy of the page itself
    /// ([`Self::rescue`]; where that is not possible, sleep on the futex). Returns whether the page is present (false: a fill
    /// failed, try again). Attributes its time to [`Self::attrib`]. Async-signal-safe.
    pub(crate) fn fault_page(&self, arena: &VolatileArena, pd: &Plan, k: DestPage) -> bool {
        let w = self.state(k);
        let a = &self.attrib;
        loop {
            match pagestate::claim(w) {
                pagestate::Claim::Mapped => {
                    a.found_mapped.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                pagestate::Claim::Won => {
                    let mut split = Split::default();
                    let (n, ok) = self.fault_fill(arena, pd, k, &mut split);
                    if ok {
                        self.counters
                            .by_fault
                            .fetch_add(n as u64, Ordering::Relaxed);
                        a.neighbours.fetch_add(n as u64 - 1, Ordering::Relaxed);
                        a.filled.fetch_add(1, Ordering::Relaxed);
                        a.fill_ns.fetch_add(split.fill_ns, Ordering::Relaxed);
                        a.map_ns.fetch_add(split.map_ns, Ordering::Relaxed);
                        a.own_max_ns
                            .fetch_max(split.fill_ns + split.map_ns, Ordering::Relaxed);
                    }
                    return ok;
                }
                pagestate::Claim::Busy => {
                    let t0 = Instant::now();
                    let on_worker = self.in_worker_run(k);
                    let el = || t0.elapsed().as_nanos() as u64;
                    let present = match pagestate::wait_mapped_for::<_, Futex>(
                        w,
                        FAULT_SPIN_NS,
                        FAULT_RESCUE_NS,
                        el,
                    ) {
                        Waited::Mapped => true,
                        Waited::Unclaimed => false,
                        Waited::TimedOut => {
                            if self.rescue(arena, pd, k) {
                                a.rescued.fetch_add(1, Ordering::Relaxed);
                                true
                            } else {
                                // Waiting on the claimer now: run it at its full priority.
                                let _boost = crate::background::boost_while_waiting();
                                pagestate::wait_mapped::<_, Futex>(w)
                            }
                        }
                    };
                    let ns = el();
                    a.waited.fetch_add(1, Ordering::Relaxed);
                    a.wait_ns.fetch_add(ns, Ordering::Relaxed);
                    a.wait_max_ns.fetch_max(ns, Ordering::Relaxed);
                    if ns > FAULT_SPIN_NS {
                        a.slept.fetch_add(1, Ordering::Relaxed);
                    }
                    if on_worker {
                        a.waited_worker.fetch_add(1, Ordering::Relaxed);
                        a.wait_worker_ns.fetch_add(ns, Ordering::Relaxed);
                    }
                    if present {
                        return true;
                    }
                    // The claim was given back: claim the page ourselves.
                }
            }
        }
    }

    /// A fault won destination page `k`'s claim: fill and map it, and publish it (or unclaim
    /// it if that failed). Copy strategy with a [`Self::fault_group`] above 1 and a run buffer
    /// free: with the unclaimed pages around it in its aligned group of that many pages (the
    /// pages after it first, then those before it: a walk that meets the group's first page
    /// takes the pages after it, one walking down through memory, as down a list built from
    /// its tail, the pages before it; [`Self::copy_claimed_run`] stops at a claimed page or a
    /// dense one, left to the workers' in-place runs). Returns the pages mapped (or claimed,
    /// if that failed) and whether they were. Async-signal-safe.
    fn fault_fill(
        &self,
        arena: &VolatileArena,
        pd: &Plan,
        k: DestPage,
        split: &mut Split,
    ) -> (usize, bool) {
        let group = self.fault_group;
        let lo = DestPage(k.0 - k.0 % group);
        let end = DestPage((lo.0 + group).min(pd.pages));
        if group > 1 && end.0 > lo.0 + 1 {
            if let Some(mut buf) = self.run_bufs.take() {
                let (_, n, ok) = self.copy_claimed_run(arena, pd, lo, k, end, buf.pages(), split);
                return (n, ok);
            }
        }
        let w = self.state(k);
        let ok = self.fill_and_map(arena, pd, k, split);
        if ok {
            pagestate::publish::<_, Futex>(w);
        } else {
            pagestate::unclaim::<_, Futex>(w);
        }
        (1, ok)
    }

    /// A fault gave up waiting for page `k`'s claimer (most likely descheduled): fill a copy
    /// of the page from the intact old half into a buffer on this stack and map it with
    /// `UFFDIO_COPY` ([`VolatileArena::resolve_copy_racing`]). The claimer's own mapping call
    /// then finds the page present (an EEXIST the arena believes on this call's record, with
    /// no page-table lookup) and publishes as usual: this never touches the state word. An
    /// EEXIST met here is the claimer's mapping. Returns whether the page is present. No
    /// page-table lookup (`mincore`, which waits for the mmap lock) anywhere on this path.
    ///
    /// Not for the minor strategy (its claimer writes the page-cache page the mapping shows),
    /// nor for a dense page of the move strategy whose claimer has locked its old page for an
    /// in-place update (`IN_PLACE`: the hold fails, and the fault waits).
    /// Where old pages are released or reused as staging pages during the compaction (copy with
    /// early release, move), only once the reader tables are built, and with the page's old
    /// pages *held*: their reader counts raised while non-zero. A count once zero stays zero
    /// (it leaves zero only from `IN_PLACE`), so a held page was never seen unread: nothing
    /// releases it, reuses it, or updates it in place until the hold is dropped. A hold
    /// refused on a zero count proves page `k` mapped (every old page holding a live word in
    /// its range counts `k`'s read, given back only after `k` is mapped; pages without one,
    /// [`holds_live`], are neither held nor read). With every page held, a page whose
    /// state is MAPPED needs nothing more; any other is filled from the held pages, and the
    /// copy is either mapped here (the page was absent: nobody wrote it yet) or refused with
    /// EEXIST (the claimer mapped it). Async-signal-safe.
    fn rescue(&self, arena: &VolatileArena, pd: &Plan, k: DestPage) -> bool {
        let releasing = match self.strategy {
            MapStrategy::Minor => return false,
            MapStrategy::Move => true,
            MapStrategy::Copy => self.releases_early(pd),
        };
        let mut held = None;
        if releasing {
            if !self.readers_ready.load(Ordering::Acquire) {
                return false;
            }
            let v = self.src[k.0].load(Ordering::Relaxed);
            let (a, b) = ((v >> 32) as u32, v as u32);
            let mut got = a;
            let mut refused = Hold::Held;
            while got <= b {
                if !holds_live(pd, OldPage(got)) {
                    got += 1;
                    continue;
                }
                match self.hold(OldPage(got)) {
                    Hold::Held => got += 1,
                    r => {
                        refused = r;
                        break;
                    }
                }
            }
            if got <= b {
                // An old page nobody reads any more: page k gave its reads back, which it does
                // only once mapped (every old page holding a live word in its range counts k's
                // read). Locked in place: its claimer is updating it for page k (then wait).
                self.unhold(pd, a, got);
                return refused == Hold::Unread;
            }
            if self.state(k).load(Ordering::Acquire) == MAPPED {
                self.unhold(pd, a, got);
                return true;
            }
            held = Some((a, got));
        }
        let mut buf = PageBuf([0; PAGE_SIZE]);
        pd.fill_page(k, &mut buf.0);
        // The claimer may map the page meanwhile: an EEXIST is its mapping (believed without a
        // page-table lookup), and a page mapped here is recorded for the claimer's EEXIST.
        // SAFETY: `buf` is a filled page on this stack.
        let ok = unsafe { arena.resolve_copy_racing(pd.dest_offset(k), buf.0.as_ptr(), PAGE_SIZE) }
            .is_ok();
        if let Some((a, end)) = held {
            self.unhold(pd, a, end);
        }
        ok
    }

    /// Raise old page `j`'s reader count unless it is zero (nothing reads it) or locked for
    /// an in-place update (its dense page's claimer rewrites it).
    fn hold(&self, j: OldPage) -> Hold {
        let r = self.readers(j);
        let mut v = r.load(Ordering::Acquire);
        loop {
            match v {
                0 => return Hold::Unread,
                IN_PLACE => return Hold::InPlace,
                _ => match r.compare_exchange_weak(v, v + 1, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return Hold::Held,
                    Err(x) => v = x,
                },
            }
        }
    }

    /// Drop the holds on old pages `[a, end)` (those holding a live word: the others were not
    /// held), freeing those nobody reads any more.
    fn unhold(&self, pd: &Plan, a: u32, end: u32) {
        for j in (a..end).map(OldPage).filter(|&j| holds_live(pd, j)) {
            if self.readers(j).fetch_sub(1, Ordering::AcqRel) == 1 {
                self.free.push(j);
            }
        }
    }

    /// At the end of a compaction (every destination page MAPPED), before `active` is
    /// cleared: remember its destination range for [`Self::finished_page`].
    fn note_finished(&self) {
        // SAFETY: called by the thread that armed the compaction, before it clears `active`:
        // no writer exists.
        let Some(pd) = (unsafe { (*self.plan.get()).as_ref() }) else {
            return;
        };
        let lo = pd.dest_addr(DestPage(0));
        self.done[0].store(lo, Ordering::SeqCst);
        self.done[1].store(lo + pd.pages * PAGE_SIZE, Ordering::SeqCst);
    }

    /// In the pause that arms a compaction: forget the last one's range. Only its end is
    /// cleared: a reader loads the end first (an end of 0 is an empty range), and
    /// [`Self::note_finished`] stores the start before the end, so a reader that sees an end
    /// sees its start.
    fn forget_finished(&self) {
        self.done[1].store(0, Ordering::SeqCst);
    }

    /// Whether `addr` lies on a destination page of the last compaction that finished (and
    /// no other is active): a fault there raced with the end of that compaction, and the page
    /// is mapped (its state went MAPPED after its mapping call, and nothing releases it
    /// before the next compaction is armed: not while the faulting thread, which is not at a
    /// safepoint, waits for this answer). Answers from the compaction's own state, without
    /// the page tables. Async-signal-safe.
    pub(crate) fn finished_page(&self, addr: usize) -> bool {
        let hi = self.done[1].load(Ordering::SeqCst);
        let lo = self.done[0].load(Ordering::SeqCst);
        addr >= lo && addr < hi
    }

    /// Count a page-table lookup the fault resolver made itself (`presence_checks`).
    pub(crate) fn count_presence_check(&self) {
        self.attrib.presence_checks.fetch_add(1, Ordering::Relaxed);
    }
}

/// What [`Compaction::hold`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// The reader count was raised.
    Held,
    /// The count was zero: no destination page reads the old page any more.
    Unread,
    /// The old page is locked for its dense page's in-place update.
    InPlace,
}

fn worker(
    c: &Compaction,
    arena: &VolatileArena,
    pd: &Plan,
    slot: usize,
    moving: Option<&MovingSpace>,
    compact_nice: u8,
) {
    let cpu0 = crate::cputime::thread_cpu();
    let mut buf = vec![0u8; WORKER_BATCH * PAGE_SIZE];
    let run = c.runs.get(slot);
    // Copy strategy with early release: destination pages this worker covered since it last
    // released the old pages nobody reads any more.
    let early = c.strategy == MapStrategy::Copy && c.releases_early(pd);
    let mut pending = Unreleased::new(if early { c.readers.len() } else { 0 });
    let mut since_release = 0;
    // Raised for the whole compaction (`gc_compact_nice`, [`crate::catchup`]); back when the
    // worker ends.
    let _catchup = crate::catchup::Catchup::compacting(compact_nice);
    loop {
        // A fork waits for the batch in hand, never for the compaction ([`crate::forkgate`]):
        // every page this batch claims is mapped and published, or unclaimed, before it ends.
        let _batch = crate::forkgate::Region::enter();
        let start = c.cursor.fetch_add(WORKER_BATCH, Ordering::Relaxed);
        if start >= pd.pages {
            break;
        }
        let end = (start + WORKER_BATCH).min(pd.pages);
        if let Some(r) = run {
            r.store(((start as u64) << 32) | end as u64, Ordering::Relaxed);
        }
        let mut k = DestPage(start);
        let end = DestPage(end);
        while k < end {
            let n = match c.strategy {
                MapStrategy::Copy => c.copy_run(arena, pd, k, end, &mut buf),
                MapStrategy::Move if c.readers_ready.load(Ordering::Acquire) => {
                    c.move_run(arena, pd, k, end)
                }
                _ => 0,
            };
            if n > 0 {
                k = k.plus(n);
                continue;
            }
            // One page alone. A page another thread claimed is skipped, not waited for: the
            // final pass below waits for it.
            if pagestate::claim(c.state(k)) == pagestate::Claim::Won {
                c.stall_test(k);
                let mut split = Split::default();
                if c.fill_and_map(arena, pd, k, &mut split) {
                    pagestate::publish::<_, Futex>(c.state(k));
                    c.counters.by_worker.fetch_add(1, Ordering::Relaxed);
                } else {
                    pagestate::unclaim::<_, Futex>(c.state(k));
                }
            }
            k = k.plus(1);
        }
        if let Some(r) = run {
            r.store(0, Ordering::Relaxed);
        }
        // Copy strategy: give the old pages nobody reads any more back, a few batches at a
        // time (each `process_madvise`, `MADV_DONTNEED` or `UFFDIO_MOVE` call flushes the TLB
        // of every CPU running the process: more pages per call, fewer flushes).
        since_release += end.0 - start;
        if early && since_release >= RELEASE_EVERY_PAGES {
            c.timed_release(arena, pd, moving, &mut pending);
            since_release = 0;
        }
    }
    if early {
        let _batch = crate::forkgate::Region::enter();
        c.timed_release(arena, pd, moving, &mut pending);
    }
    let tail0 = crate::cputime::thread_cpu();
    // Pages claimed by mutators may still be in flight: wait for all of them, and fill any
    // whose fill failed (a transient kernel error) ourselves, backing off between tries.
    for k in (0..pd.pages).map(DestPage) {
        retry_or_abort(k, || {
            pagestate::wait_mapped::<_, Futex>(c.state(k)) || {
                let _page = crate::forkgate::Region::enter();
                c.ensure_page(arena, pd, k);
                false
            }
        });
    }
    let tail = crate::cputime::since(tail0).as_nanos() as u64;
    c.counters.tail_cpu_ns.fetch_add(tail, Ordering::Relaxed);
    let cpu = crate::cputime::since(cpu0).as_nanos() as u64;
    c.counters.cpu_ns.fetch_add(cpu, Ordering::Relaxed);
}

/// Run `mapped` until it returns true (destination page `k` is mapped), backing off after
/// the first tries; abort the process after 10,000: references already point at this page,
/// and the heap cannot continue without it. Not for signal context.
fn retry_or_abort(k: DestPage, mut mapped: impl FnMut() -> bool) {
    let mut tries = 0u32;
    while !mapped() {
        tries += 1;
        if tries > 10_000 {
            eprintln!(
                "faultline: destination page {} could not be mapped after {tries} attempts; aborting",
                k.0
            );
            std::process::abort();
        }
        if tries > 10 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// Copy strategy, one per worker (and the move strategy's surplus release after the flip,
/// [`Compaction::release_surplus`]): the unread old pages the worker took off the free list and
/// has not given back yet (one bit per old page), waiting to form runs of
/// [`MIN_RELEASE_RUN`] pages. Pages left in it when the compaction ends are released by the
/// end of the cycle with the rest of the old half.
struct Unreleased {
    bits: Bitmap,
    /// The runs [`Compaction::release_unread`] releases together (kept between calls so its
    /// buffer is allocated once per worker).
    batch: Vec<(ArenaOffset, usize)>,
    /// Bitmap words `[lo, hi)` set since the last [`Unreleased::take_runs`].
    lo: usize,
    hi: usize,
}

impl Unreleased {
    /// An empty set of old pages `[0, pages)`.
    fn new(pages: usize) -> Self {
        Unreleased {
            bits: Bitmap::new(pages),
            batch: Vec::new(),
            lo: usize::MAX,
            hi: 0,
        }
    }

    /// Add old page `j` (below the `pages` given to [`Unreleased::new`]).
    fn insert(&mut self, j: usize) {
        self.bits.set(j);
        self.lo = self.lo.min(j / 64);
        self.hi = self.hi.max(j / 64 + 1);
    }

    /// Hand every run of at least `min` pages that holds a page added since the last call to
    /// `f(first, pages)` and remove it from the set; shorter runs stay.
    fn take_runs(&mut self, min: usize, mut f: impl FnMut(usize, usize)) {
        if self.lo >= self.hi {
            return;
        }
        let limit = self.hi * 64;
        let mut i = self.lo * 64;
        while let Some(s) = self.bits.next_set(i, limit) {
            let mut a = s;
            while a > 0 && self.bits.get(a - 1) {
                a -= 1;
            }
            let b = self.bits.next_clear(s, self.bits.len_bits());
            if b - a >= min {
                f(a, b - a);
                self.bits.clear_range(a, b);
            }
            i = b;
        }
        self.lo = usize::MAX;
        self.hi = 0;
    }
}

/// Whether old page `j` holds a live word, i.e. whether a destination page reads it. A
/// destination page's range of old pages (`Compaction::src`, its first to its last live word)
/// may span pages without any (garbage between two objects that land on the same destination
/// page: a long-lived structure below, a young one above): nobody reads those, so they count
/// no reader and are unread from the flip on (released or staged at once), and the reader
/// counts, holds and give-backs all skip them alike. Async-signal-safe (reads the plan's
/// live-words bitmap, read-only while the compaction is active).
#[inline]
fn holds_live(pd: &Plan, j: OldPage) -> bool {
    let w = j.index() * PAGE_WORDS;
    let bits = &pd.live().bits;
    bits.next_set(w, (w + PAGE_WORDS).min(bits.len_bits()))
        .is_some()
}

/// A lock-free stack of page indices (Treiber stack with an ABA tag), async-signal-safe.
struct PageStack {
    head: AtomicU64,
    next: Vec<AtomicU32>,
}

const NIL: u32 = u32::MAX;

impl PageStack {
    fn new(n: usize) -> Self {
        PageStack {
            head: AtomicU64::new(NIL as u64),
            next: (0..n).map(|_| AtomicU32::new(NIL)).collect(),
        }
    }
    fn clear(&self) {
        self.head.store(NIL as u64, Ordering::SeqCst);
    }
    fn push(&self, page: OldPage) {
        let i = page.0;
        let mut h = self.head.load(Ordering::Acquire);
        loop {
            self.next[i as usize].store(h as u32, Ordering::Relaxed);
            let new = ((h >> 32).wrapping_add(1) << 32) | i as u64;
            match self
                .head
                .compare_exchange_weak(h, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(a) => h = a,
            }
        }
    }
    fn pop(&self) -> Option<OldPage> {
        let mut h = self.head.load(Ordering::Acquire);
        loop {
            let i = h as u32;
            if i == NIL {
                return None;
            }
            let next = self.next[i as usize].load(Ordering::Relaxed);
            let new = ((h >> 32).wrapping_add(1) << 32) | next as u64;
            match self
                .head
                .compare_exchange_weak(h, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(OldPage(i)),
                Err(a) => h = a,
            }
        }
    }
}

/// Whether old word `w0` starts a page (page aligned) whose words are all live.
fn fully_live_page(live: &LiveWords, w0: usize) -> bool {
    w0.is_multiple_of(PAGE_WORDS)
        && (w0 / 64..(w0 + PAGE_WORDS) / 64).all(|i| live.bits.word(i) == u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(u: &mut Unreleased, min: usize) -> Vec<(usize, usize)> {
        let mut runs = Vec::new();
        u.take_runs(min, |a, n| runs.push((a, n)));
        runs
    }

    /// A batch of early releases that fails part-way counts the pages of the runs released
    /// before the error, no more and no less (batching refused by an injected
    /// `process_madvise` EINVAL, the second run's `madvise` fails).
    #[test]
    fn a_batch_failing_part_way_counts_the_runs_it_released() {
        use crate::space::tests::{injected_arena, second_release_fails};
        use faultline_heap::arena::FaultDelivery;
        use faultline_heap::sys::Call;
        let inj = second_release_fails();
        let arena = injected_arena(16 * PAGE_SIZE, FaultDelivery::Unregistered, &inj);
        arena.populate(ArenaOffset(0), 16 * PAGE_SIZE).unwrap();
        let c = Compaction::new(8, MapStrategy::Copy, 1);
        // Runs of 3, 2 and 1 pages: the first is released, the second fails.
        let mut batch = vec![
            (ArenaOffset(0), 3 * PAGE_SIZE),
            (ArenaOffset(4 * PAGE_SIZE), 2 * PAGE_SIZE),
            (ArenaOffset(8 * PAGE_SIZE), PAGE_SIZE),
        ];
        inj.arm();
        c.release_batch(&arena, &mut batch);
        inj.disarm();
        assert_eq!(inj.injected(Call::Madvise), 1);
        assert!(batch.is_empty());
        assert_eq!(c.counters.released_early.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn only_runs_of_the_minimum_length_are_given_back() {
        let mut u = Unreleased::new(300);
        for j in [3, 4, 5, 10] {
            u.insert(j);
        }
        assert_eq!(take(&mut u, 4), vec![], "runs of 3 and 1 pages wait");
        // Page 6 joins the run 3..6: now 4 pages long; 10 still waits.
        u.insert(6);
        assert_eq!(take(&mut u, 4), vec![(3, 4)]);
        assert!(!u.bits.get(3) && !u.bits.get(6) && u.bits.get(10));
        // A run across a bitmap word boundary, completed from either side.
        for j in 60..64 {
            u.insert(j);
        }
        assert_eq!(take(&mut u, 8), vec![]);
        for j in 64..67 {
            u.insert(j);
        }
        assert_eq!(take(&mut u, 8), vec![]);
        u.insert(59);
        assert_eq!(take(&mut u, 8), vec![(59, 8)]);
        // Runs found only through a page added next to them, at the set's end too.
        for j in 290..299 {
            u.insert(j);
        }
        u.insert(299);
        u.insert(11);
        assert_eq!(take(&mut u, 2), vec![(10, 2), (290, 10)]);
        assert_eq!(u.bits.count_ones(u.bits.num_words()), 0);
        assert_eq!(take(&mut u, 1), vec![], "nothing added since the last call");
    }

    #[test]
    fn every_page_is_given_back_once_or_kept() {
        // Pages fall unread in a scattered order (xorshift permutation of 0..n): every page is
        // either handed back once, in a run of at least the minimum, or still in the set (a
        // short run between runs already given back, left to the end of the cycle).
        let n = 1000;
        let mut order: Vec<usize> = (0..n).collect();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in (1..n).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut u = Unreleased::new(n);
        let mut seen = vec![0u8; n];
        for chunk in order.chunks(37) {
            for &j in chunk {
                u.insert(j);
            }
            u.take_runs(16, |a, len| {
                assert!(len >= 16);
                for s in &mut seen[a..a + len] {
                    *s += 1;
                }
            });
        }
        for (j, &s) in seen.iter().enumerate() {
            assert_eq!(
                s + u8::from(u.bits.get(j)),
                1,
                "page {j}: given back {s} times"
            );
        }
        let left = n - seen.iter().filter(|&&s| s == 1).count();
        assert!(left < n / 4, "{left} of {n} pages never given back");
    }
}

//! One measured run, inside a fresh child process: a workload at one live size under one
//! collector mode (or the bystander alone, the baseline), written as one JSON record.
//!
//! What is measured and how:
//! - the mutators' waits (the headline): the heap's own record (`Heap::mutator_waits`: count,
//!   total, max per cause; the longest wait of any cause) and a mutator-side MMU at 1, 10,
//!   100 ms and a curve from the logged wait intervals (`Heap::mutator_wait_log`, per mutator
//!   over its attached life, the lowest over the mutators); the footprint (peak RSS, the
//!   configured heap); the request workload's metered latency (`request.rs`);
//! - pauses: the collector's own `CycleStats::pauses` of every cycle (all triggers), and the
//!   world-stopped intervals of `Heap::pause_timeline` (start = stop requested, end = world
//!   released) for MMU; the mutator's own view is its longest unit of work between two
//!   safepoint polls (`longest_unit_ms`), which also contains fault stalls, TLAB refills and
//!   waits inside allocation (for a previous cycle to end), and a mutator-side MMU over the
//!   work phase that counts every unit longer than 5 ms as lost (a lower bound);
//! - total time: from the first allocation of the workload to its end plus the end of any
//!   cycle still running (`wait_for_compaction`), so GC work left over is included;
//! - GC CPU time: process CPU (`getrusage(RUSAGE_SELF)`, exited GC threads included) over the
//!   run minus the mutator threads' own CPU (`CLOCK_THREAD_CPUTIME_ID`, read by each mutator)
//!   minus the bystander's, plus the pauses that run on a mutator thread (`stw`, by its thread
//!   CPU, `CpuSplit::pause`, and `initial-mark`, by its wall time: the triggering mutator
//!   collects). SIGBUS fault resolution runs
//!   on the mutator and counts as mutator time; a handler thread's resolution counts as GC;
//! - peak RSS: `VmHWM` of this child process (fresh per run);
//! - syscalls per cycle: `CycleStats::calls` (the arena's own counted kernel calls);
//! - bystander: see `bystander.rs`; its samples are split by whether they started inside a
//!   GC cycle (`[end - total, end]` of each cycle, end taken in the `on_cycle` hook).
//!
//! Invariant: a run reports `status = "ok"` only if the heap ran the requested mode and the
//! workload's end-of-run check passed; otherwise the status says why.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use faultline::testing::heap::sys::Call;
use faultline::{CycleStats, Heap};
use serde::{Deserialize, Serialize};

use super::bystander::{self, Op, Sample};
use super::metrics::{self, Pct};
use super::{modes, workloads};

/// Bystander latency split (µs).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ByStats {
    pub map_all: Option<Pct>,
    pub touch_all: Option<Pct>,
    pub map_in_gc: Option<Pct>,
    pub touch_in_gc: Option<Pct>,
    pub map_outside: Option<Pct>,
    pub touch_outside: Option<Pct>,
    pub errors: u64,
    pub cpu_s: f64,
}

/// One cause's waits in a run (every mutator).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WaitRow {
    pub count: u64,
    pub total_ms: f64,
    pub max_ms: f64,
}

/// One row of the report (ours, or a peer's). Fields missing from a stored record (written by
/// an older version of the suite) read as their defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunResult {
    pub workload: String,
    pub live_mib: u64,
    pub mode: String,
    /// "ok", or why not.
    pub status: String,
    /// What ran (the heap's own mode info), or the peer's note.
    pub info: String,
    pub peer: bool,
    pub cycles: u64,
    pub triggers: BTreeMap<String, u64>,
    /// Every pause, ms.
    pub pauses_ms: Vec<f64>,
    pub pause_kinds: Vec<String>,
    pub pause: Option<Pct>,
    /// Largest pause of each kind, ms.
    pub pause_max_by_kind: BTreeMap<String, f64>,
    /// Longest remark part of a remark+flip pause (`CycleStats::remark`) and longest time to
    /// safepoint of any cycle, ms.
    pub remark_max_ms: Option<f64>,
    /// Barrier-free cycles that fell back to SATB before their remark
    /// (`CycleStats::satb_switch`), and the most written pages a remark rescanned.
    pub satb_switches: u64,
    pub remark_dirty_max: u64,
    /// The longest remark share of a remark+flip pause less the cycle's time to safepoint
    /// (the longest of its pauses'): the remark's own work, ms.
    pub remark_work_max_ms: Option<f64>,
    pub ttsp_max_ms: Option<f64>,
    /// World-stopped intervals on the timeline (count) and MMU at 1, 10, 100 ms.
    pub timeline_pauses: u64,
    pub mmu_1ms: Option<f64>,
    pub mmu_10ms: Option<f64>,
    pub mmu_100ms: Option<f64>,
    pub mmu_curve: Vec<(f64, f64)>,
    /// The mutators' own view: MMU over each mutator's work phase with its units of work
    /// longer than 5 ms counted as not mutator time (the lowest over the mutator threads).
    pub mutator_mmu_10ms: Option<f64>,
    pub mutator_mmu_100ms: Option<f64>,
    pub total_s: f64,
    pub gc_cpu_s: Option<f64>,
    pub mutator_cpu_s: Option<f64>,
    pub peak_rss_kib: Option<u64>,
    pub faults: u64,
    pub fault_p50_us: f64,
    pub fault_p99_us: f64,
    pub fault_max_us: f64,
    /// Per cycle, mean: uffd ioctls, mmap-family calls, REGISTER + UNREGISTER, madvise,
    /// process_madvise (one batch of releases each, `VolatileArena::release_many`).
    pub uffd_per_cycle: Option<f64>,
    pub mmap_family_per_cycle: Option<f64>,
    pub register_per_cycle: Option<f64>,
    pub madvise_per_cycle: Option<f64>,
    pub process_madvise_per_cycle: Option<f64>,
    pub longest_unit_ms: Option<f64>,
    /// Allocation stalls of the mutators (out of memory: waited for a cycle, retried).
    pub alloc_stalls: u64,
    pub alloc_stall_s: f64,
    pub measured_live_mib: Option<f64>,
    pub allocated_mib: Option<f64>,
    pub threads: usize,
    pub bystander: Option<ByStats>,
    /// The mutators' waits as the heap recorded them (`Heap::mutator_waits`), by cause name
    /// (`WaitCause::name`): count, total (exclusive of nested waits) and longest, ms.
    pub waits: BTreeMap<String, WaitRow>,
    /// The longest single wait of any mutator, of any cause (inclusive), ms, and its cause.
    pub longest_wait_ms: Option<f64>,
    pub longest_wait_cause: Option<String>,
    /// Mutator-side MMU from the heap's wait logs (`Heap::mutator_wait_log`: the logged
    /// intervals and the short waits' buckets): per mutator over its attached life, the
    /// lowest over the mutators; and its curve. Directories written before the short waits
    /// were counted hold the logged intervals' MMU only.
    pub wait_mmu_1ms: Option<f64>,
    pub wait_mmu_10ms: Option<f64>,
    pub wait_mmu_100ms: Option<f64>,
    pub wait_mmu_curve: Vec<(f64, f64)>,
    /// The same MMU from the logged intervals alone (the figure before short waits were
    /// counted), for comparison.
    #[serde(default)]
    pub wait_mmu_logged_1ms: Option<f64>,
    #[serde(default)]
    pub wait_mmu_logged_10ms: Option<f64>,
    #[serde(default)]
    pub wait_mmu_logged_100ms: Option<f64>,
    /// The worst 100 ms window of the mutator with the lowest MMU at 100 ms: what it waited
    /// for in it, ms by cause name (each instant to the innermost logged wait covering it;
    /// `short`: the waits under `LOG_MIN`, whose causes are not kept).
    #[serde(default)]
    pub wait_worst_100ms: BTreeMap<String, f64>,
    /// When that window began, seconds from the workload's start (its build phase included),
    /// to be read against `cycle_spans_s`.
    #[serde(default)]
    pub wait_worst_100ms_at_s: Option<f64>,
    /// Each collection's span (start, end), seconds from the workload's start: where the waits
    /// fell relative to the cycles.
    #[serde(default)]
    pub cycle_spans_s: Vec<(f64, f64)>,
    /// Waits too short to log (< `faultline::waits::LOG_MIN`): count and total ms; intervals
    /// lost from the rings.
    pub waits_unlogged: u64,
    pub waits_unlogged_ms: f64,
    pub waits_dropped: u64,
    /// Short-wait time lost from the logs' buckets (a ring wrapped, a log forgotten), ms.
    #[serde(default)]
    pub waits_unlogged_dropped_ms: f64,
    /// Footprint: the configured heap (`HeapConfig::max_heap_bytes`, one half of the moving
    /// space, plus the large-object space), MiB; the peak RSS is `peak_rss_kib`.
    pub heap_mib: Option<f64>,
    /// The configured heap over the nominal live size (`--heap-factor`).
    pub heap_factor: Option<f64>,
    pub large_space_mib: Option<f64>,
    /// The request workload's metered latency (ms) and rates.
    pub metered: Option<super::request::MeteredResult>,
    /// Equal-memory runs (`--footprints`): the bound (peak RSS over live) this run was
    /// calibrated to, and how many runs the calibration took (this one is the last).
    pub footprint_bound: Option<f64>,
    pub footprint_tries: Option<u32>,
    /// Footprint over time: (seconds from the start, RSS MiB, PSS MiB), sampled from
    /// `/proc/self/smaps_rollup`; the peak PSS (memfd pages counted once), KiB.
    pub footprint_timeline: Vec<(f64, f64, f64)>,
    pub peak_pss_kib: Option<u64>,
    /// Where the fault resolver's time went (`Heap::fault_breakdown`), both deliveries.
    pub fault_attr: Option<FaultAttrRow>,
    /// The collector's CPU by phase, summed over the run's cycles (`CycleStats::cpu`), ms.
    pub cpu_split: Option<CpuSplitRow>,
    /// Fresh memory made present ahead of the allocators (`Heap::prefill_stats`): MiB, and the
    /// allocation-buffer refills that found all their pages present / all refills.
    #[serde(default)]
    pub prefill_mib: f64,
    #[serde(default)]
    pub refills_ready: u64,
    #[serde(default)]
    pub refills: u64,
    /// Refills that met pages claimed by a populator in flight and made them present
    /// themselves, and those of them that yielded first (`PrefillStats::refills_overlapped`,
    /// `refills_waited`).
    #[serde(default)]
    pub refills_overlapped: u64,
    #[serde(default)]
    pub refills_waited: u64,
    /// Generational modes (`CycleStats::gen`): young and full cycles, bytes promoted (MiB),
    /// remembered-set cards scanned, old slots scanned, and the longest remark of a young
    /// cycle (ms).
    pub young_cycles: u64,
    pub full_cycles: u64,
    pub promoted_mib: f64,
    pub dirty_cards: u64,
    pub old_slots: u64,
    pub young_remark_max_ms: Option<f64>,
    /// Generational modes: the wall time (s) of the young cycles that left an old generation
    /// alone (they measured what they traced against it), mean and longest, and the mean of
    /// the cycles that traced everything (full cycles, and young ones with nothing old: the
    /// heap's first). Issue 15's "mean time per young cycle" is the first.
    #[serde(default)]
    pub young_wall_mean_s: Option<f64>,
    #[serde(default)]
    pub young_wall_max_s: Option<f64>,
    #[serde(default)]
    pub whole_wall_mean_s: Option<f64>,
    /// The `auto` mode's picks and calibration figures, beside the same suite run's fixed
    /// modes (`auto.rs`).
    pub auto: Option<super::auto::AutoRow>,
}

/// A run's collector CPU by phase (`faultline::CpuSplit`, summed over its cycles), ms, and the
/// cycles it covers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuSplitRow {
    pub cycles: u64,
    pub concurrent_cycles: u64,
    pub mark_ms: f64,
    pub pause_ms: f64,
    pub compact_ms: f64,
    pub finish_ms: f64,
    /// `CpuSplit::total` summed: what the split accounts for.
    pub total_ms: f64,
    /// Destination pages filled (`CycleStats::pages_filled`), summed.
    pub pages: u64,
    /// The prefill thread's CPU making fresh memory present (`CycleStats::prefilled`):
    /// before the first cycle's initial mark (the heap's first fill, which a stop-the-world
    /// heap's mutators do in their refills), and in the rest of the run. Part of the run's GC
    /// CPU (collector threads), not of `total_ms`.
    #[serde(default)]
    pub prefill_first_ms: f64,
    #[serde(default)]
    pub prefill_rest_ms: f64,
}

/// A run's fault attribution (`faultline::FaultBreakdown`): counts, and times in ms.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultAttrRow {
    pub faults: u64,
    pub filled: u64,
    pub fill_ms: f64,
    pub map_ms: f64,
    pub own_max_us: f64,
    pub waited: u64,
    pub wait_ms: f64,
    pub wait_max_us: f64,
    pub waited_on_worker: u64,
    pub wait_on_worker_ms: f64,
    pub slept: u64,
    pub rescued: u64,
    pub found_mapped: u64,
    /// Faults whose thread was preempted while resolving them, their total ms; the stalls of
    /// the others (p50 / p99 / max µs).
    pub preempted: u64,
    pub preempted_ms: f64,
    /// Faults whose thread blocked (a voluntary context switch) while resolving them, ms.
    pub blocked: u64,
    pub blocked_ms: f64,
    /// Faults that stalled 1 ms or more; page-table lookups by the resolver itself; EEXISTs
    /// believed on a racing resolver's record / checked against the page tables (any thread).
    pub over_1ms: u64,
    pub presence_checks: u64,
    /// Pages faults filled and mapped besides their own (`FaultBreakdown::neighbours`).
    pub neighbours: u64,
    pub exists_recorded: u64,
    pub exists_checked: u64,
    pub unpreempted: u64,
    pub unpreempted_p50_us: f64,
    pub unpreempted_p99_us: f64,
    pub unpreempted_max_us: f64,
}

/// Footprint samples: (seconds from the start, RSS MiB, PSS MiB).
type FootprintSamples = Vec<(f64, f64, f64)>;

/// Sample the footprint (RSS and PSS) until `stop`: every 50 ms up to 64 MiB live, every 200
/// ms above. A `smaps_rollup` read walks the page tables under the mmap lock (for reading, but
/// every `mmap`/`munmap`/`mremap` of the process queues behind it, and every later reader
/// behind those: at 1 GiB live one read held it 0.5 s under load), so it is made only where
/// PSS and the kernel's RSS counter can differ (`exact`: the minor strategy's memfd, mapped
/// twice, and move, whose moved pages the counter can miss); elsewhere both figures come from
/// `/proc/self/statm`, which takes no lock. Returns the samples and the sampler thread's own
/// CPU seconds (not counted as GC CPU).
fn footprint_sampler(
    start: Instant,
    live: usize,
    exact: bool,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(FootprintSamples, f64)> {
    let every = if live <= 64 << 20 {
        Duration::from_millis(50)
    } else {
        Duration::from_millis(200)
    };
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let cpu0 = metrics::thread_cpu();
        loop {
            let sample = if exact {
                metrics::rss_pss_kib()
            } else {
                metrics::rss_kib().map(|k| (k, k))
            };
            if let Some((rss, pss)) = sample {
                out.push((
                    start.elapsed().as_secs_f64(),
                    rss as f64 / 1024.0,
                    pss as f64 / 1024.0,
                ));
            }
            if stop.load(Ordering::Relaxed) {
                return (out, metrics::thread_cpu() - cpu0);
            }
            std::thread::sleep(every);
        }
    })
}

fn is_uffd(c: Call) -> bool {
    matches!(
        c,
        Call::UffdApi
            | Call::UffdRegister
            | Call::UffdUnregister
            | Call::UffdWake
            | Call::UffdCopy
            | Call::UffdZeropage
            | Call::UffdMove
            | Call::UffdWriteprotect
            | Call::UffdContinue
            | Call::UffdPoison
    )
}

fn split_bystander(samples: &[Sample], cycles: &[(f64, f64)], errors: u64, cpu_s: f64) -> ByStats {
    let in_gc = |s: &Sample| {
        let t = s.at_ns as f64 * 1e-9;
        cycles.iter().any(|&(a, b)| t >= a && t <= b)
    };
    let pick = |op: Op, f: &dyn Fn(&Sample) -> bool| {
        metrics::percentiles_ns_as_us(samples.iter().filter(|s| s.op == op && f(s)).map(|s| s.ns))
    };
    ByStats {
        map_all: pick(Op::Map, &|_| true),
        touch_all: pick(Op::Touch, &|_| true),
        map_in_gc: pick(Op::Map, &|s| in_gc(s)),
        touch_in_gc: pick(Op::Touch, &|s| in_gc(s)),
        map_outside: pick(Op::Map, &|s| !in_gc(s)),
        touch_outside: pick(Op::Touch, &|s| !in_gc(s)),
        errors,
        cpu_s,
    }
}

/// Set (to anything) in a child's environment by the parent's `--no-bystander`: the workload
/// runs without the bystander thread, and its record has no bystander figures.
pub const NO_BYSTANDER_ENV: &str = "FAULTLINE_SUITE_NO_BYSTANDER";

/// The baseline: the bystander alone in this process for `secs`.
pub fn bystander_alone(live_mib: u64, secs: f64) -> RunResult {
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let h = bystander::spawn(start, stop.clone());
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let out = h.join().expect("bystander thread");
    let by = split_bystander(&out.samples, &[], out.errors, out.cpu_s);
    RunResult {
        workload: "-".into(),
        live_mib,
        mode: "bystander-alone".into(),
        status: if out.errors == 0 && by.map_all.is_some() {
            "ok".into()
        } else {
            format!("failed: {} bystander errors", out.errors)
        },
        info: "no heap in the process".into(),
        total_s: start.elapsed().as_secs_f64(),
        peak_rss_kib: metrics::status_kib("VmHWM"),
        bystander: Some(by),
        ..RunResult::default()
    }
}

/// Run `workload` at `live` bytes under the mode labelled `mode_label`.
pub fn measure(
    workload: &str,
    live: usize,
    mode_label: &str,
    work_factor: f64,
    threads: usize,
) -> RunResult {
    let mut r = RunResult {
        workload: workload.into(),
        live_mib: (live >> 20) as u64,
        mode: mode_label.into(),
        ..RunResult::default()
    };
    let Some(mode) = modes::by_label(mode_label) else {
        r.status = format!("failed: unknown mode {mode_label}");
        return r;
    };
    let ends: Arc<Mutex<Vec<(Instant, Duration)>>> = Arc::default();
    let ends2 = ends.clone();
    let mut cfg = modes::heap_config(&mode, live);
    cfg.on_cycle = Some(Arc::new(move |s: &CycleStats| {
        ends2
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((Instant::now(), s.total));
    }));
    r.heap_mib = Some(cfg.max_heap_bytes as f64 / (1 << 20) as f64);
    r.heap_factor = Some(modes::heap_factor());
    r.large_space_mib = Some(cfg.large_object_space_bytes as f64 / (1 << 20) as f64);
    // The fault attribution's preempted / blocked split (two getrusage calls a fault).
    faultline::count_fault_context_switches(true);
    let heap = match Heap::new(cfg) {
        Ok(h) => h,
        Err(e) => {
            r.status = format!("not available: {e}");
            return r;
        }
    };
    match modes::check_running(&mode, &heap) {
        Ok(info) => r.info = info,
        Err(e) => {
            r.status = format!("not available: {e}");
            return r;
        }
    }
    r.auto = super::auto::record(&mode, &heap);
    let start = Instant::now();
    let cpu0 = metrics::process_cpu();
    let stop = Arc::new(AtomicBool::new(false));
    let by = std::env::var_os(NO_BYSTANDER_ENV)
        .is_none()
        .then(|| bystander::spawn(start, stop.clone()));
    let exact = matches!(
        heap.mode_info().strategy,
        Some(faultline::Strategy::Minor | faultline::Strategy::Move)
    );
    let sampler = footprint_sampler(start, live, exact, stop.clone());
    let work = workloads::run(workload, &heap, live, work_factor, threads, start);
    heap.wait_for_compaction();
    let total = start.elapsed();
    let cpu = metrics::process_cpu() - cpu0;
    stop.store(true, Ordering::Relaxed);
    let by = by.map(|h| h.join().expect("bystander thread"));
    let (by_cpu_s, by_errors) = by.as_ref().map_or((0.0, 0), |b| (b.cpu_s, b.errors));
    let (timeline, sampler_cpu_s) = sampler.join().expect("footprint sampler");
    r.footprint_timeline = timeline;
    r.peak_pss_kib = r
        .footprint_timeline
        .iter()
        .map(|&(_, _, pss)| (pss * 1024.0) as u64)
        .max();
    r.total_s = total.as_secs_f64();
    let history = heap.history();
    let (timeline, dropped) = heap.pause_timeline();
    // Cycle intervals for the bystander split, in seconds from the start.
    let cycles: Vec<(f64, f64)> = ends
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|&(end, tot)| {
            let e = end.saturating_duration_since(start).as_secs_f64();
            (e - tot.as_secs_f64(), e)
        })
        .collect();
    r.bystander = by
        .as_ref()
        .map(|b| split_bystander(&b.samples, &cycles, b.errors, b.cpu_s));
    r.cycle_spans_s = cycles;
    r.cycles = history.len() as u64;
    let (mut young_walls, mut whole_walls) = (Vec::new(), Vec::new());
    for c in &history {
        *r.triggers.entry(c.trigger.name().to_string()).or_default() += 1;
        let remark = c.remark.as_secs_f64() * 1e3;
        let ttsp = c.time_to_safepoint.as_secs_f64() * 1e3;
        r.remark_max_ms = Some(r.remark_max_ms.map_or(remark, |x| x.max(remark)));
        r.ttsp_max_ms = Some(r.ttsp_max_ms.map_or(ttsp, |x| x.max(ttsp)));
        if c.satb_switch.is_some() {
            r.satb_switches += 1;
        }
        r.remark_dirty_max = r.remark_dirty_max.max(c.remark_dirty_pages as u64);
        // (A young cycle measured what it traced against the live set only when it had an old
        // generation to leave alone; else, as a full cycle, it traced everything.)
        let wall = c.total.as_secs_f64();
        match c.gen.young {
            Some(true) => {
                r.young_cycles += 1;
                if c.mode == faultline::GcMode::Concurrent {
                    r.young_remark_max_ms =
                        Some(r.young_remark_max_ms.map_or(remark, |x| x.max(remark)));
                }
                if c.gen.young_cost_pm.is_some() {
                    young_walls.push(wall);
                } else {
                    whole_walls.push(wall);
                }
            }
            Some(false) => {
                r.full_cycles += 1;
                whole_walls.push(wall);
            }
            None => {}
        }
        r.promoted_mib += c.gen.promoted_bytes as f64 / (1 << 20) as f64;
        r.dirty_cards += c.gen.dirty_cards as u64;
        r.old_slots += c.gen.old_slots as u64;
        if c.mode == faultline::GcMode::Concurrent {
            let work = c.remark.saturating_sub(c.time_to_safepoint).as_secs_f64() * 1e3;
            r.remark_work_max_ms = Some(r.remark_work_max_ms.map_or(work, |x| x.max(work)));
        }
        for p in &c.pauses {
            let ms = p.duration.as_secs_f64() * 1e3;
            r.pauses_ms.push(ms);
            r.pause_kinds.push(p.kind.to_string());
            let e = r.pause_max_by_kind.entry(p.kind.to_string()).or_default();
            *e = e.max(ms);
        }
    }
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    r.young_wall_mean_s = mean(&young_walls);
    r.young_wall_max_s = young_walls.iter().copied().reduce(f64::max);
    r.whole_wall_mean_s = mean(&whole_walls);
    r.pause = metrics::percentiles_ms(&r.pauses_ms);
    let iv: Vec<(f64, f64)> = timeline
        .iter()
        .map(|&(a, b)| {
            (
                a.saturating_duration_since(start).as_secs_f64(),
                b.saturating_duration_since(start).as_secs_f64(),
            )
        })
        .collect();
    r.timeline_pauses = iv.len() as u64 + dropped;
    let run = r.total_s;
    r.mmu_1ms = metrics::mmu(&iv, run, 1e-3);
    r.mmu_10ms = metrics::mmu(&iv, run, 1e-2);
    r.mmu_100ms = metrics::mmu(&iv, run, 1e-1);
    r.mmu_curve = metrics::mmu_curve(&iv, run);
    r.peak_rss_kib = metrics::status_kib("VmHWM");
    mutator_waits(&heap, &mut r, start);
    let p = heap.prefill_stats();
    r.prefill_mib = p.bytes as f64 / (1 << 20) as f64;
    r.refills_ready = p.refills_ready;
    r.refills = p.refills;
    r.refills_overlapped = p.refills_overlapped;
    r.refills_waited = p.refills_waited;
    let f = heap.fault_stats();
    r.faults = f.count;
    r.fault_p50_us = f.p50.as_secs_f64() * 1e6;
    r.fault_p99_us = f.p99.as_secs_f64() * 1e6;
    r.fault_max_us = f.max.as_secs_f64() * 1e6;
    let b = heap.fault_breakdown();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    r.fault_attr = Some(FaultAttrRow {
        faults: b.faults,
        filled: b.filled,
        fill_ms: ms(b.fill),
        map_ms: ms(b.map),
        own_max_us: b.own_max.as_secs_f64() * 1e6,
        waited: b.waited,
        wait_ms: ms(b.wait),
        wait_max_us: b.wait_max.as_secs_f64() * 1e6,
        waited_on_worker: b.waited_on_worker,
        wait_on_worker_ms: ms(b.wait_on_worker),
        slept: b.slept,
        rescued: b.rescued,
        found_mapped: b.found_mapped,
        preempted: b.preempted,
        preempted_ms: ms(b.preempted_time),
        blocked: b.blocked,
        blocked_ms: ms(b.blocked_time),
        over_1ms: b.over_1ms,
        presence_checks: b.presence_checks,
        neighbours: b.neighbours,
        exists_recorded: b.exists_recorded,
        exists_checked: b.exists_checked,
        unpreempted: b.unpreempted.count,
        unpreempted_p50_us: b.unpreempted.p50.as_secs_f64() * 1e6,
        unpreempted_p99_us: b.unpreempted.p99.as_secs_f64() * 1e6,
        unpreempted_max_us: b.unpreempted.max.as_secs_f64() * 1e6,
    });
    if !history.is_empty() {
        let n = history.len() as f64;
        let sum = |f: &dyn Fn(&CycleStats) -> u64| history.iter().map(f).sum::<u64>() as f64 / n;
        r.uffd_per_cycle = Some(sum(&|c| {
            Call::ALL
                .iter()
                .filter(|&&k| is_uffd(k))
                .map(|&k| c.calls.get(k))
                .sum()
        }));
        r.mmap_family_per_cycle = Some(sum(&|c| c.mmap_family()));
        r.register_per_cycle = Some(sum(&|c| c.registrations()));
        r.madvise_per_cycle = Some(sum(&|c| c.calls.get(Call::Madvise)));
        r.process_madvise_per_cycle = Some(sum(&|c| c.calls.get(Call::ProcessMadvise)));
        // The bytes in use after the last cycle, the old generation included (a generational
        // cycle's `heap_after` is the window and the large space only; after a full cycle,
        // which promotes what it traced, the old generation is the live set).
        r.measured_live_mib = history
            .last()
            .map(|c| (c.heap_after() + c.gen.old_bytes) as f64 / (1 << 20) as f64);
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let mut row = CpuSplitRow {
            cycles: history.len() as u64,
            ..CpuSplitRow::default()
        };
        for c in history.iter() {
            row.concurrent_cycles += u64::from(c.mode == faultline::GcMode::Concurrent);
            row.mark_ms += ms(c.cpu.mark);
            row.pause_ms += ms(c.cpu.pause);
            row.compact_ms += ms(c.cpu.compact);
            row.finish_ms += ms(c.cpu.finish);
            row.total_ms += ms(c.cpu.total(c.mode));
            row.pages += c.pages_filled as u64;
            row.prefill_rest_ms += ms(c.prefilled[1].cpu);
        }
        if let Some((first, rest)) = history.split_first() {
            row.prefill_first_ms = ms(first.prefilled[0].cpu);
            row.prefill_rest_ms += rest.iter().map(|c| ms(c.prefilled[0].cpu)).sum::<f64>();
        }
        r.cpu_split = Some(row);
    }
    match work {
        Ok(w) => {
            // Pauses that run on the mutator thread that triggered them (a whole stop-the-world
            // cycle, an initial mark) are GC work inside a mutator's CPU time: moved over, a
            // stop-the-world cycle by its pause's thread CPU (`CpuSplit::pause`: wall time would
            // count the time the thread waited for a CPU on a loaded machine), an initial mark
            // by its wall time (short; its CPU is not measured).
            let on_mutator: f64 = history
                .iter()
                .map(|c| {
                    c.pauses
                        .iter()
                        .map(|p| match p.kind {
                            "stw" => c.cpu.pause.as_secs_f64(),
                            "initial-mark" => p.duration.as_secs_f64(),
                            _ => 0.0,
                        })
                        .sum::<f64>()
                })
                .sum();
            let mutator = (w.mutator_cpu_s - on_mutator).max(0.0);
            r.mutator_cpu_s = Some(mutator);
            r.gc_cpu_s = Some((cpu - mutator - by_cpu_s - sampler_cpu_s).max(0.0));
            r.longest_unit_ms = Some(w.longest_unit_ms);
            r.allocated_mib = Some(w.allocated as f64 / (1 << 20) as f64);
            r.threads = w.threads;
            let view_mmu = |win: f64| -> Option<f64> {
                w.views
                    .iter()
                    .filter_map(|v| {
                        let iv: Vec<(f64, f64)> = v
                            .long_units
                            .iter()
                            .map(|&(a, b)| (a - v.from, b - v.from))
                            .collect();
                        metrics::mmu(&iv, v.to - v.from, win)
                    })
                    .reduce(f64::min)
            };
            r.mutator_mmu_10ms = view_mmu(1e-2);
            r.mutator_mmu_100ms = view_mmu(1e-1);
            r.alloc_stalls = w.alloc_stalls;
            r.alloc_stall_s = w.alloc_stall_s;
            r.metered = w.metered;
            r.status = match w.check {
                Ok(()) if by_errors == 0 => "ok".into(),
                Ok(()) => format!("failed: {by_errors} bystander errors"),
                Err(e) => format!("failed: check: {e}"),
            };
        }
        Err(e) => r.status = format!("failed: {e}"),
    }
    r
}

/// The heap's own record of the mutators' waits: by cause, the longest, and a mutator-side MMU
/// from the logged intervals (the lowest over the mutators that lived at least a window).
fn mutator_waits(heap: &Heap, r: &mut RunResult, start: Instant) {
    let w = heap.mutator_waits();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (cause, s) in &w.by_cause {
        r.waits.insert(
            cause.name().to_string(),
            WaitRow {
                count: s.count,
                total_ms: ms(s.total),
                max_ms: ms(s.max),
            },
        );
    }
    r.longest_wait_ms = Some(ms(w.longest));
    r.longest_wait_cause = w.longest_cause.map(|c| c.name().to_string());
    r.waits_unlogged = w.unlogged;
    r.waits_unlogged_ms = ms(w.unlogged_time);
    r.waits_dropped = w.dropped;
    r.waits_unlogged_dropped_ms = ms(w.unlogged_dropped);
    let logs = heap.mutator_wait_log();
    let now = Instant::now();
    let lowest = |logs: &[faultline::MutatorWaitLog], win: f64| -> Option<f64> {
        logs.iter()
            .filter_map(|l| l.mmu(Duration::from_secs_f64(win), now))
            .reduce(f64::min)
    };
    let at = |win: f64| lowest(&logs, win);
    r.wait_mmu_1ms = at(1e-3);
    r.wait_mmu_10ms = at(1e-2);
    r.wait_mmu_100ms = at(1e-1);
    let logged_only: Vec<faultline::MutatorWaitLog> = logs
        .iter()
        .map(|l| faultline::MutatorWaitLog {
            short: Vec::new(),
            short_from: None,
            ..l.clone()
        })
        .collect();
    r.wait_mmu_logged_1ms = lowest(&logged_only, 1e-3);
    r.wait_mmu_logged_10ms = lowest(&logged_only, 1e-2);
    r.wait_mmu_logged_100ms = lowest(&logged_only, 1e-1);
    let worst = logs
        .iter()
        .filter_map(|l| l.worst_window(Duration::from_millis(100), now))
        .max_by_key(|w| w.waited);
    if let Some(w) = worst {
        r.wait_worst_100ms_at_s = Some(w.start.saturating_duration_since(start).as_secs_f64());
        for (cause, d) in w.by_cause {
            if !d.is_zero() {
                r.wait_worst_100ms.insert(cause.name().to_string(), ms(d));
            }
        }
        if !w.short.is_zero() {
            r.wait_worst_100ms.insert("short".to_string(), ms(w.short));
        }
    }
    let mut win = 1e-4;
    while let Some(u) = at(win) {
        r.wait_mmu_curve.push((win, u));
        win *= 1.25;
    }
}

//! Section 1's measurements: the collectors it compares ([`modes`]), and one heap per
//! collector and live size ([`run_mode`]): build the structure, run the explicit cycles with
//! the mutator working around and during them, attribute its steps to phases, check the
//! structure, and keep the collector's own figures ([`ModeData`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faultline::FaultStats;
use faultline::{CycleStats, GcMode, Heap, HeapConfig, Trigger};

use super::common::modes::{Mode, CONCURRENT, STW};
use super::common::rng::SplitMix;
use super::common::MIB;
use super::hist::LogHist;
use super::opts::Opts;
use super::progress::{stage, tick, START};
use super::report::{count, us};
use super::world::{build_world, check_world, register, step, Shape};

/// Diagnostics: with `FAULTLINE_PAUSES_SLOW_US=N`, every mutator step (or safepoint poll)
/// slower than N µs is printed to stderr with its phase, kind and time since the run started.
pub struct SlowLog {
    pub threshold: Option<Duration>,
    pub label: &'static str,
    pub live: usize,
}

impl SlowLog {
    pub fn new(label: &'static str, live: usize) -> SlowLog {
        SlowLog {
            threshold: std::env::var("FAULTLINE_PAUSES_SLOW_US")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_micros),
            label,
            live,
        }
    }
    pub fn check(&self, step: Duration, poll: Duration, kind: &str, phase: &str, cycle: usize) {
        let Some(th) = self.threshold else { return };
        if step > th || poll > th {
            let t = START.get().map_or(0.0, |t| t.elapsed().as_secs_f64());
            eprintln!(
                "slow: {} @ {} MiB cycle {} {phase}: {kind} step {} µs, safepoint poll {} µs (at {t:.3} s)",
                self.label,
                self.live / MIB,
                cycle + 1,
                us(step),
                us(poll)
            );
        }
    }
}

/// Mutator work attributed to one phase.
#[derive(Default)]
pub struct PhaseAcc {
    pub steps: u64,
    /// Wall time of the steps and the safepoint polls after them.
    pub wall: Duration,
    /// Step latencies (excluding the explicit safepoint poll; an allocation inside a step may
    /// still park in a pause).
    pub hist: LogHist,
}

impl PhaseAcc {
    pub fn rate(&self) -> f64 {
        if self.wall.is_zero() {
            0.0
        } else {
            self.steps as f64 / self.wall.as_secs_f64()
        }
    }
}

/// The collectors of section 1, in report order: stop-the-world with 1 and 2 marking threads,
/// then every concurrent strategy with every fault delivery.
pub fn modes() -> Vec<Mode> {
    let mut modes = vec![
        STW,
        Mode {
            label: "stw-2t",
            gc_threads: 2,
            ..STW
        },
    ];
    modes.extend(CONCURRENT);
    modes
}

/// `cfg` with an `on_cycle` hook that counts the cycles the heap has recorded, and that count
/// (a concurrent cycle is over, compaction included, when it moves).
pub fn count_cycles(cfg: HeapConfig) -> (HeapConfig, Arc<AtomicU64>) {
    let recorded = Arc::new(AtomicU64::new(0));
    let hook_count = recorded.clone();
    let cfg = cfg.on_cycle(Arc::new(move |_: &CycleStats| {
        hook_count.fetch_add(1, Ordering::SeqCst);
    }));
    (cfg, recorded)
}

/// What one configuration measured.
pub struct ModeData {
    pub info: String,
    pub cycles: Vec<CycleStats>,
    pub other_cycles: Vec<String>,
    pub faults: FaultStats,
    pub idle: PhaseAcc,
    pub mark: PhaseAcc,
    pub compact: PhaseAcc,
    pub build: Duration,
    pub check: Result<(), String>,
    pub arena: faultline::testing::heap::ArenaStats,
    /// Per cycle: how long the mutator's `collect()` call took (stw: the whole pause as the
    /// mutator saw it; concurrent: the initial-mark pause and starting the GC thread).
    pub collect_calls: Vec<Duration>,
    /// Per concurrent cycle: the mutator's longest safepoint poll (it parked there for the
    /// remark+flip pause), i.e. that pause as the mutator saw it, minus the time it took to
    /// reach the safepoint.
    pub parks: Vec<Duration>,
}

pub struct ModeRun {
    pub spec: Mode,
    pub live: usize,
    pub shape: Shape,
    pub outcome: Result<ModeData, String>,
}

pub fn run_mode(opts: &Opts, spec: Mode, live: usize) -> ModeRun {
    let shape = Shape::for_live(live);
    let outcome = run_mode_inner(opts, spec, live, shape);
    ModeRun {
        spec,
        live,
        shape,
        outcome,
    }
}

pub fn run_mode_inner(
    opts: &Opts,
    spec: Mode,
    live: usize,
    shape: Shape,
) -> Result<ModeData, String> {
    let half = (2 * shape.live_bytes()).max(4 * MIB);
    let (cfg, recorded) = count_cycles(HeapConfig::with_heap_size(half).with(|c| {
        c.mode = spec.gc;
        c.strategy = spec.strategy;
        c.faults = spec.faults;
        c.gc_threads = spec.gc_threads;
        // No occupancy-triggered cycles: only the explicit ones are measured.
        c.min_trigger_bytes = half;
    }));
    let heap = Heap::new(cfg).map_err(|e| format!("Heap::new failed: {e}"))?;
    let mi = heap.mode_info();
    if mi.mode != spec.gc {
        return Err(format!(
            "not available: fell back to {:?} ({})",
            mi.mode,
            mi.fallback_reason.unwrap_or_default()
        ));
    }
    let info = format!(
        "{:?} strategy={} faults={} barrier={} uffd={}{}",
        mi.mode,
        mi.strategy.map_or("-", |s| s.name()),
        mi.faults.map_or("-", |f| f.name()),
        mi.barrier.map_or("-", |b| b.name()),
        heap.uses_userfaultfd(),
        mi.fallback_reason
            .map(|r| format!(" (note: {r})"))
            .unwrap_or_default()
    );
    let t = register(&heap);
    let mut m = heap.attach();
    stage(format!(
        "{} @ {} MiB: building {} entries (trees of depth {}, lists of {} cells), {} objects",
        spec.label,
        live / MIB,
        shape.entries,
        shape.depth,
        shape.list_len,
        count(shape.objects())
    ));
    let tb = Instant::now();
    let w = build_world(&mut m, t, shape).map_err(|e| format!("building: {e}"))?;
    let build = tb.elapsed();
    if heap.flips() != 0 {
        return Err(format!("{} cycle(s) ran while building", heap.flips()));
    }
    let concurrent = spec.gc == GcMode::Concurrent;
    let mut rng = SplitMix(0x5eed ^ live as u64);
    let (mut idle, mut mark, mut compact) = (
        PhaseAcc::default(),
        PhaseAcc::default(),
        PhaseAcc::default(),
    );
    let n_cycles = opts.cycles(live);
    let slow = SlowLog::new(spec.label, live);
    let mut collect_calls = Vec::new();
    let mut parks = Vec::new();
    for c in 0..n_cycles {
        stage(format!(
            "{} @ {} MiB: cycle {}/{n_cycles}",
            spec.label,
            live / MIB,
            c + 1
        ));
        let mut budget = live / 16;
        // Idle window.
        let end = Instant::now() + opts.idle_window();
        let mut t0 = Instant::now();
        while t0 < end {
            let kind = step(&mut m, &w, &mut rng, &mut budget);
            let t1 = Instant::now();
            m.safepoint();
            let t2 = Instant::now();
            slow.check(t1 - t0, t2 - t1, kind, "idle", c);
            idle.hist.record(t1 - t0);
            idle.wall += t2 - t0;
            idle.steps += 1;
            t0 = t2;
            tick();
        }
        let recorded_before = recorded.load(Ordering::SeqCst);
        let flips_before = heap.flips();
        let tc = Instant::now();
        m.start_collection().map_err(|e| format!("collect: {e}"))?;
        collect_calls.push(tc.elapsed());
        let mut park = Duration::ZERO;
        if concurrent {
            let mut t0 = Instant::now();
            while recorded.load(Ordering::SeqCst) == recorded_before {
                let (acc, phase) = if heap.flips() == flips_before {
                    (&mut mark, "marking")
                } else {
                    (&mut compact, "compacting")
                };
                let kind = step(&mut m, &w, &mut rng, &mut budget);
                let t1 = Instant::now();
                m.safepoint();
                let t2 = Instant::now();
                slow.check(t1 - t0, t2 - t1, kind, phase, c);
                park = park.max(t2 - t1);
                acc.hist.record(t1 - t0);
                acc.wall += t2 - t0;
                acc.steps += 1;
                t0 = t2;
                tick();
            }
            m.wait_for_cycle().unwrap();
            parks.push(park);
        }
    }
    stage(format!(
        "{} @ {} MiB: checking the structure",
        spec.label,
        live / MIB
    ));
    heap.wait_for_compaction();
    let check = check_world(&m, &w);
    let history = heap.history();
    let mut cycles = Vec::new();
    let mut other_cycles = Vec::new();
    for s in history {
        if s.trigger == Trigger::Explicit {
            cycles.push(s);
        } else {
            other_cycles.push(format!("#{} {}", s.cycle, s.trigger.name()));
        }
    }
    let faults = heap.fault_stats();
    let arena = heap.arena_stats();
    drop(w);
    drop(m);
    Ok(ModeData {
        info,
        cycles,
        other_cycles,
        faults,
        idle,
        mark,
        compact,
        build,
        check,
        arena,
        collect_calls,
        parks,
    })
}

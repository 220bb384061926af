//! Section 3, barrier cost: a store-only workload ([`StoreWorld`]) on four heaps side by side
//! (stop-the-world, SATB, SATB with logging off, `wp_async`), each on its own thread, taking
//! turns in interleaved rounds; stores per second per phase, and the table.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use faultline::{
    AllocError, Barrier, CycleStats, FaultMode, GcMode, Heap, HeapConfig, Mutator, Percentiles,
    Root, Strategy, Trigger,
};

use super::common::rng::SplitMix;
use super::common::types::{fix, PAIR_BYTES};
use super::common::MIB;
use super::measure::count_cycles;
use super::opts::Opts;
use super::progress::{stage, tick};
use super::report::{count, ms, rate, Report};
use super::world::{register, Types};

/// Elements per array of the store workload (8 KiB arrays stay below the large-object
/// threshold, so they live, and move, in the moving space).
pub const VEC: usize = 1000;
/// Groups per middle table.
pub const MID: usize = 64;
/// Stores per batch (one safepoint poll per batch).
pub const BATCH: usize = 512;
/// Bytes of one group: the group pair, arrays A and B, and the 1000 pairs A holds.
pub const GROUP_BYTES: usize = PAIR_BYTES + 2 * (8 + 8 * VEC) + VEC * PAIR_BYTES;

/// Store workload: top table -> middle tables of [`MID`] groups -> group pair (A, B).
pub struct StoreWorld {
    pub top: Root,
    pub groups: usize,
}

pub fn build_store_world(
    m: &mut Mutator,
    t: &Types,
    live: usize,
) -> Result<StoreWorld, AllocError> {
    let groups = (live / GROUP_BYTES).max(1);
    let mids = groups.div_ceil(MID);
    let top_v = m.alloc(t.table, mids)?;
    let top = m.root(top_v);
    for g in 0..groups {
        if g % MID == 0 {
            let mid = m.alloc(t.table, MID)?;
            top.get(m).expect("top").set(g / MID, mid);
        }
        let a = m.alloc(t.table, VEC)?;
        m.push(a);
        let sa = m.stack_len() - 1;
        for i in 0..VEC {
            let p = m.alloc(t.pair, 0)?;
            m.local(p).expect("pair").set(0, fix((g * VEC + i) as u64));
            m.local(m.stack_get(sa)).expect("A").set(i, p);
        }
        let b = m.alloc(t.table, VEC)?;
        {
            let al = m.local(m.stack_get(sa)).expect("A");
            let bl = m.local(b).expect("B");
            for i in 0..VEC {
                bl.set(i, al.get((i * 7 + 3) % VEC));
            }
        }
        m.push(b);
        let grp = m.alloc(t.pair, 0)?;
        let b = m.pop().expect("B");
        let a = m.pop().expect("A");
        let gl = m.local(grp).expect("group");
        gl.set(0, a);
        gl.set(1, b);
        let mid = m.local(top.get(m).expect("top").get(g / MID)).expect("mid");
        mid.set(g % MID, grp);
        tick();
    }
    Ok(StoreWorld { top, groups })
}

/// [`BATCH`] stores `B[i] = A[j]` in one random group.
pub fn store_batch(m: &Mutator, w: &StoreWorld, rng: &mut SplitMix) {
    let g = rng.below(w.groups);
    let mid = m
        .local(w.top.get(m).expect("top").get(g / MID))
        .expect("mid");
    let grp = m.local(mid.get(g % MID)).expect("group");
    let a = m.local(grp.get(0)).expect("A");
    let b = m.local(grp.get(1)).expect("B");
    let (mut i, mut j) = (rng.below(VEC), rng.below(VEC));
    for _ in 0..BATCH {
        b.set(i, a.get(j));
        i += 7;
        if i >= VEC {
            i -= VEC;
        }
        j += 13;
        if j >= VEC {
            j -= VEC;
        }
    }
}

#[derive(Clone, Copy)]
pub struct BarrierSpec {
    pub label: &'static str,
    pub mode: GcMode,
    pub barrier: Barrier,
    pub disable_logging: bool,
}

/// Stores and wall time per phase.
#[derive(Default, Clone, Copy)]
pub struct StoreAcc {
    pub stores: u64,
    pub wall: Duration,
}

impl StoreAcc {
    pub fn rate(&self) -> Option<f64> {
        (!self.wall.is_zero()).then(|| self.stores as f64 / self.wall.as_secs_f64())
    }
}

pub struct BarrierRun {
    pub spec: BarrierSpec,
    pub outcome: Result<BarrierData, String>,
}

pub struct BarrierData {
    pub info: String,
    pub idle: StoreAcc,
    pub mark: StoreAcc,
    pub compact: StoreAcc,
    pub cycles: Vec<CycleStats>,
}

/// One heap of the barrier comparison, kept alive across the interleaved rounds.
pub struct BarrierHeap {
    // Field order is drop order: the roots, then the mutator, then the heap.
    pub w: StoreWorld,
    pub m: Mutator,
    pub heap: Heap,
    pub recorded: Arc<AtomicU64>,
    pub rng: SplitMix,
    pub info: String,
    pub idle: StoreAcc,
    pub mark: StoreAcc,
    pub compact: StoreAcc,
}

pub fn setup_barrier(spec: BarrierSpec, live: usize) -> Result<BarrierHeap, String> {
    let half = (2 * live).max(4 * MIB);
    let (cfg, recorded) = count_cycles(HeapConfig::with_heap_size(half).with(|c| {
        c.mode = spec.mode;
        c.barrier = spec.barrier;
        c.strategy = Strategy::Auto;
        c.faults = FaultMode::Auto;
        // SAFETY: the workload's stores never drop the last reference to an object (array `A`
        // holds every object), so the barrier has nothing to log and the collector loses
        // nothing without it (see the module documentation, section 3).
        unsafe { c.debug.set_disable_barrier(spec.disable_logging) };
        c.min_trigger_bytes = half;
    }));
    let heap = Heap::new(cfg).map_err(|e| format!("`Heap::new` refused it: {e}"))?;
    let mi = heap.mode_info();
    if mi.mode != spec.mode {
        return Err(format!(
            "fell back to {:?}: {}",
            mi.mode,
            mi.fallback_reason.unwrap_or_default()
        ));
    }
    let info = format!(
        "{:?}, barrier {}, strategy {}, faults {}{}",
        mi.mode,
        mi.barrier.map_or("none", |b| b.name()),
        mi.strategy.map_or("-", |s| s.name()),
        mi.faults.map_or("-", |f| f.name()),
        mi.fallback_reason
            .map(|r| format!(" (note: {r})"))
            .unwrap_or_default()
    );
    let t = register(&heap);
    let mut m = heap.attach();
    stage(format!(
        "barrier {}: building {} MiB",
        spec.label,
        live / MIB
    ));
    let w = build_store_world(&mut m, &t, live).map_err(|e| format!("building: {e}"))?;
    Ok(BarrierHeap {
        w,
        m,
        heap,
        recorded,
        rng: SplitMix(0xba5e),
        info,
        idle: StoreAcc::default(),
        mark: StoreAcc::default(),
        compact: StoreAcc::default(),
    })
}

/// One round on one heap: an idle window, then (concurrent heaps) cycles back to back for
/// `cyc`; returns with no cycle running, so the other heaps' rounds never wait for this one.
pub fn barrier_round(bh: &mut BarrierHeap, idle: Duration, cyc: Duration) -> Result<(), String> {
    let end = Instant::now() + idle;
    let mut t0 = Instant::now();
    while t0 < end {
        store_batch(&bh.m, &bh.w, &mut bh.rng);
        bh.m.safepoint();
        let t1 = Instant::now();
        bh.idle.stores += BATCH as u64;
        bh.idle.wall += t1 - t0;
        t0 = t1;
        tick();
    }
    if bh.heap.mode_info().mode != GcMode::Concurrent || cyc.is_zero() {
        return Ok(());
    }
    let end = Instant::now() + cyc;
    let mut in_cycle: Option<(u64, u64)> = None;
    let mut t0 = Instant::now();
    loop {
        if let Some((rec, _)) = in_cycle {
            if bh.recorded.load(Ordering::SeqCst) != rec {
                in_cycle = None;
            }
        }
        let flips = match in_cycle {
            Some((_, flips)) => flips,
            None => {
                if Instant::now() >= end {
                    break;
                }
                bh.m.wait_for_cycle().unwrap();
                let rec = bh.recorded.load(Ordering::SeqCst);
                let flips = bh.heap.flips();
                bh.m.start_collection()
                    .map_err(|e| format!("collect: {e}"))?;
                in_cycle = Some((rec, flips));
                t0 = Instant::now();
                flips
            }
        };
        let acc = if bh.heap.flips() == flips {
            &mut bh.mark
        } else {
            &mut bh.compact
        };
        store_batch(&bh.m, &bh.w, &mut bh.rng);
        bh.m.safepoint();
        let t1 = Instant::now();
        acc.stores += BATCH as u64;
        acc.wall += t1 - t0;
        t0 = t1;
        tick();
    }
    bh.m.wait_for_cycle().unwrap();
    Ok(())
}

/// What the coordinator asks of one heap's thread.
enum Cmd {
    Build,
    Round(Duration, Duration),
}

/// The coordinator's end of one heap's thread.
struct HeapThread<'s> {
    spec: BarrierSpec,
    /// `None` once the thread has ended (with an error its join reports).
    cmds: Option<mpsc::Sender<Cmd>>,
    answers: mpsc::Receiver<Result<(), String>>,
    handle: std::thread::ScopedJoinHandle<'s, Result<BarrierData, String>>,
}

impl<'s> HeapThread<'s> {
    /// Start the thread of heap `spec`; it builds the heap when told to, and keeps it (a
    /// thread may hold a mutator of one heap only).
    fn spawn(s: &'s std::thread::Scope<'s, '_>, spec: BarrierSpec, live: usize) -> Self {
        let (cmd_tx, cmd_rx) = mpsc::channel::<Cmd>();
        let (done_tx, done_rx) = mpsc::channel::<Result<(), String>>();
        let handle = std::thread::Builder::new()
            .name(format!("barrier {}", spec.label))
            .spawn_scoped(s, move || -> Result<BarrierData, String> {
                let mut bh: Option<BarrierHeap> = None;
                // The loop ends when the coordinator drops its sender.
                for cmd in cmd_rx {
                    let r = match (cmd, bh.as_mut()) {
                        (Cmd::Build, _) => setup_barrier(spec, live).map(|h| bh = Some(h)),
                        (Cmd::Round(idle, cyc), Some(h)) => barrier_round(h, idle, cyc),
                        (Cmd::Round(..), None) => Err("not built".into()),
                    };
                    let _ = done_tx.send(r.clone());
                    r?;
                }
                let bh = bh.ok_or("not built")?;
                Ok(BarrierData {
                    info: bh.info.clone(),
                    idle: bh.idle,
                    mark: bh.mark,
                    compact: bh.compact,
                    cycles: bh
                        .heap
                        .history()
                        .into_iter()
                        .filter(|c| c.trigger == Trigger::Explicit)
                        .collect(),
                })
            })
            .expect("spawn a barrier heap's thread");
        HeapThread {
            spec,
            cmds: Some(cmd_tx),
            answers: done_rx,
            handle,
        }
    }

    /// Send `cmd` and wait for its answer; a thread that failed is asked nothing more.
    fn ask(&mut self, cmd: Cmd) {
        let Some(tx) = &self.cmds else { return };
        if !(tx.send(cmd).is_ok() && matches!(self.answers.recv(), Ok(Ok(())))) {
            // The thread has ended with its error; its join reports it.
            self.cmds = None;
        }
    }

    /// Let the thread end and take its result. A panic is a bug in the harness or the heap,
    /// not a setting's result: it ends the run (a non-zero exit), as when the heaps ran on
    /// one thread.
    fn finish(self) -> BarrierRun {
        drop(self.cmds);
        let outcome = self
            .handle
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        BarrierRun {
            spec: self.spec,
            outcome,
        }
    }
}

/// Builds the heaps and runs the interleaved rounds. Each heap lives on its own thread
/// ([`HeapThread`]), and the threads take turns: the coordinator sends one command at a time
/// and waits for its answer, so no two heaps ever run at once.
fn interleave(
    specs: &[BarrierSpec],
    live: usize,
    rounds: usize,
    idle: Duration,
    cyc: Duration,
) -> Vec<BarrierRun> {
    std::thread::scope(|s| {
        let mut heaps: Vec<HeapThread<'_>> = specs
            .iter()
            .map(|&spec| HeapThread::spawn(s, spec, live))
            .collect();
        for h in heaps.iter_mut() {
            h.ask(Cmd::Build);
        }
        for round in 0..rounds {
            for h in heaps.iter_mut() {
                if h.cmds.is_some() {
                    stage(format!(
                        "barrier {}: round {}/{rounds}",
                        h.spec.label,
                        round + 1
                    ));
                }
                h.ask(Cmd::Round(idle, cyc));
            }
        }
        heaps.into_iter().map(HeapThread::finish).collect()
    })
}

pub fn barrier_section(opts: &Opts, rep: &mut Report) {
    let live = if opts.quick { 16 * MIB } else { 256 * MIB };
    let specs = [
        BarrierSpec {
            label: "stw (barrier never on)",
            mode: GcMode::StopTheWorld,
            barrier: Barrier::Satb,
            disable_logging: false,
        },
        BarrierSpec {
            label: "concurrent, satb",
            mode: GcMode::Concurrent,
            barrier: Barrier::Satb,
            disable_logging: false,
        },
        BarrierSpec {
            label: "concurrent, satb, logging off (control)",
            mode: GcMode::Concurrent,
            barrier: Barrier::Satb,
            disable_logging: true,
        },
        BarrierSpec {
            label: "concurrent, wp_async",
            mode: GcMode::Concurrent,
            barrier: Barrier::WpAsync,
            disable_logging: false,
        },
    ];
    let (rounds, idle, cyc) = if opts.quick {
        (2, Duration::from_millis(300), Duration::from_millis(1500))
    } else {
        (4, Duration::from_secs(1), Duration::from_secs(4))
    };
    let runs = interleave(&specs, live, rounds, idle, cyc);
    rep.line("## Barrier cost (same run)");
    rep.line("");
    rep.line(&format!(
        "Store-only workload on {} MiB of live data ({} groups: two 1000-element reference arrays A and B plus the 1000 pairs A holds): batches of {BATCH} stores `B[i] = A[j]` (`Local::set`) in a random group, one safepoint poll per batch. Every overwritten value is a reference, so with SATB on every store logs. All four heaps are built first and kept; then {rounds} rounds, each giving every heap in turn an idle window of {} s and (concurrent heaps) {} s of cycles back to back, so load from other jobs on the machine falls on all settings alike. The stw heap never collects. A batch counts in the phase it started in. Ratios are against the stw heap's idle stores/s.",
        live / MIB,
        count((live / GROUP_BYTES) as u64),
        idle.as_secs_f64(),
        cyc.as_secs_f64()
    ));
    rep.line("");
    rep.line("| setting | what ran | stores/s idle | stores/s marking | stores/s compacting | marking / stw | marking / own idle | marking share of cycle time | cycles | remark+flip p50 / max ms | wp_async: preclean rounds / last round's written pages / remark's written pages (p50) |");
    rep.line("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let base = runs
        .first()
        .and_then(|r| r.outcome.as_ref().ok())
        .and_then(|d| d.idle.rate());
    for r in &runs {
        let d = match &r.outcome {
            Ok(d) => d,
            Err(e) => {
                eprintln!("pauses: barrier setting \"{}\": {e}", r.spec.label);
                rep.line(&format!("| {} | **{e}** | | | | | | | | | |", r.spec.label));
                continue;
            }
        };
        let f = |x: Option<f64>| x.map_or("-".into(), rate);
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        let total = d.mark.wall + d.compact.wall;
        let share = if total.is_zero() {
            "-".into()
        } else {
            format!(
                "{:.0} %",
                100.0 * d.mark.wall.as_secs_f64() / total.as_secs_f64()
            )
        };
        let remark = {
            let xs: Vec<Duration> = d
                .cycles
                .iter()
                .flat_map(|c| c.pauses.iter())
                .filter(|p| p.kind != "initial-mark" && p.kind != "stw")
                .map(|p| p.duration)
                .collect();
            if xs.is_empty() {
                "-".into()
            } else {
                let p = Percentiles::of(xs);
                format!("{} / {}", ms(p.p50), ms(p.max))
            }
        };
        let wp = if d.cycles.iter().any(|c| c.preclean_rounds > 0) {
            let p50 = |f: &dyn Fn(&CycleStats) -> usize| {
                let mut xs: Vec<usize> = d.cycles.iter().map(f).collect();
                xs.sort_unstable();
                xs[xs.len() / 2]
            };
            format!(
                "{} / {} / {}",
                p50(&|c| c.preclean_rounds),
                p50(&|c| c.preclean_last_dirty),
                p50(&|c| c.remark_dirty_pages)
            )
        } else {
            "-".into()
        };
        rep.line(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.spec.label,
            d.info,
            f(d.idle.rate()),
            f(d.mark.rate()),
            f(d.compact.rate()),
            ratio(d.mark.rate(), base),
            ratio(d.mark.rate(), d.idle.rate()),
            share,
            d.cycles.len(),
            remark,
            wp
        ));
    }
    rep.line("");
}

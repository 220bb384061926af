//! The pause of one stop-the-world collection of a full heap (256 MiB of objects by default) at
//! 10 %, 50 % and 90 % live, with its mark / plan / compact breakdown from [`CycleStats`]; each
//! compacting into the other half (`StwCompaction::Copy`), and again sliding in place
//! (`StwCompaction::Slide`, what the default `StwCompaction::Auto` does), on one thread and on
//! two (`compaction_workers`, column *workers*; marking stays on one thread).
//!
//! A plain `main` (no criterion): one sample is one collection of a freshly built heap, which
//! takes a second or more to build, so each case runs a fixed number of times (5 by default)
//! and the table gives the median pause with its min and max. The breakdown columns are those
//! of the run whose pause is the median, so they add up.
//!
//! One run:
//! 1. a heap whose moving half holds the objects (`with_heap_size(objects + 1 MiB)`), with the
//!    occupancy trigger at the whole half so that no collection starts by itself;
//! 2. **warm-up**: fill the half with garbage and collect it, so the measured cycle is a
//!    steady-state one (collector tables already touched once, destination half released by a
//!    previous cycle, as in a long-running program);
//! 3. **build**: a root table (a `RefArray` of 1000 slots, rooted by a `Root` handle), then
//!    32-byte nodes `{next, other, data}` until the objects fill the target size. Each node is
//!    live with probability `live` (fixed-seed generator, so live and dead objects interleave at
//!    random); `data` holds its allocation number; dead nodes are never linked. The i-th live
//!    node is pushed on one of the table's 1000 chains (`next` = the chain's previous head), in
//!    one of two shapes:
//!    - `local`: runs of 64 consecutive live nodes go to the same chain (chain `i / 64 mod
//!      1000`), and `other` points two nodes back in that chain: almost every reference points
//!      at a neighbour in memory, as in lists and trees built in allocation order;
//!    - `scattered`: chain `i mod 1000`, and `other` points at the head of a random chain: every
//!      reference jumps about 1000 live nodes (tens to hundreds of KiB) away, so nearly every
//!      step of marking is a cache and TLB miss. A worst case for the marker's locality;
//! 4. **measure**: one `Mutator::collect()`; the figures are that cycle's [`CycleStats`];
//! 5. **check** (untimed): the cycle marked exactly the live nodes + the table, and walking
//!    every chain finds every live node, with decreasing allocation numbers and `other` fields
//!    that are nodes.
//!
//! Columns: pause (`CycleStats::pause_total`); mark, plan, compact (`compact` includes the root
//! update, step 4 of the cycle); other = pause - mark - plan - compact (stopping the world,
//! releasing the old half with `MADV_DONTNEED`, the large-object sweep); live MiB =
//! `moving_after`; heap MiB = `moving_before`; MiB/s = those divided by the pause; compact
//! MiB/s = live MiB / compact, with its split (`CycleStats::compact_fill`: filling pages,
//! `compact_map`: the `UFFDIO_COPY` calls), and its ratio to the `memcpy` bandwidth of the same run (a copy
//! between two resident buffers as large as the heap, median of 5, measured before and after
//! the cases; the table's ratio uses the mean of the two); pause / mark = the whole
//! collection over its mark phase. The same by CPU time, which the machine's load does not
//! inflate: the compaction's thread CPU (`CycleStats::cpu`, `CpuSplit::compact`) against the
//! `memcpy`'s (both `CLOCK_THREAD_CPUTIME_ID`, the compaction's summed over the slide's
//! threads; memcpy MiB per CPU second, median of 5, before
//! and after the cases, mean of the two), and the whole pause's CPU over the mark phase's.
//!
//! Environment: `FAULTLINE_STW_CASES` keeps only some cases (see `main`);
//! `FAULTLINE_BENCH_QUICK=1` shrinks the heap to 32 MiB and runs each case 3 times
//! (a smoke run); `FAULTLINE_BENCH_RUNS=n` overrides the number of runs. Without `--bench` on
//! the command line (`cargo test --benches`) it runs the smoke configuration once per case.
//!
//! Invariants: no collection happens except the warm-up and the measured one (asserted with the
//! cycle counter); every value is used only between two safepoints (everything that must survive
//! an allocation is in the rooted table); the memory footprint stays below about three times
//! the object size (the two halves, of which only the live part of the destination is
//! resident, plus bitmaps).

use std::hint::black_box;
use std::time::{Duration, Instant};

use faultline::{CycleStats, Heap, HeapConfig, StwCompaction, Value};

#[path = "common/mod.rs"]
mod common;

use common::rng::SplitMix;
use common::types::{node_type, ref_array_type, NODE_BYTES};
use common::{loadavg, mib, quick_env, runs_env};

/// Slots of the root table (8008 bytes: below the large-object threshold, so it lives, and
/// moves, in the moving space like everything else).
const CHAINS: usize = 1000;
/// Consecutive live nodes per chain in the `local` shape.
const RUN: usize = 64;

/// How live nodes are linked (see the module documentation).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Local,
    Scattered,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Local => "local",
            Shape::Scattered => "scattered",
        }
    }
}

/// One measured collection.
struct Sample {
    stats: CycleStats,
}

impl Sample {
    fn pause(&self) -> Duration {
        self.stats.pause_total()
    }
}

/// This thread's CPU time, seconds.
fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` that we own.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0, "clock_gettime");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// memcpy MiB/s between two resident buffers of `bytes` (median of `reps`), by wall time and
/// by this thread's CPU time.
fn memcpy_bandwidth(bytes: usize, reps: usize) -> (f64, f64) {
    let src = vec![0x5au8; bytes];
    let mut dst = vec![0xa5u8; bytes];
    let (mut wall, mut cpu): (Vec<f64>, Vec<f64>) = (0..reps)
        .map(|_| {
            let (t, c) = (Instant::now(), thread_cpu_s());
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
            let (dt, dc) = (t.elapsed().as_secs_f64(), thread_cpu_s() - c);
            (mib(bytes) / dt, mib(bytes) / dc.max(1e-9))
        })
        .unzip();
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    (wall[wall.len() / 2], cpu[cpu.len() / 2])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Build a heap of `object_bytes` of objects with a fraction `live` reachable, collect it once.
fn run_once(
    object_bytes: usize,
    shape: Shape,
    live: f64,
    gc_threads: usize,
    compaction: StwCompaction,
    workers: usize,
    seed: u64,
) -> Sample {
    let half = object_bytes + (1 << 20);
    let cfg = HeapConfig::with_heap_size(half).with(|c| {
        c.min_trigger_bytes = half;
        c.gc_threads = gc_threads;
        c.stw_compaction = compaction;
        c.compaction_workers = Some(workers);
    });
    let heap = Heap::new(cfg).expect("heap");
    if let Some(r) = heap.fallback_reason() {
        eprintln!("stw bench: heap without userfaultfd: {r}");
    }
    let node = node_type(&heap);
    let table_ty = ref_array_type(&heap, "root-table");
    let mut m = heap.attach();

    // 2. Warm-up: a full heap of garbage, collected.
    for _ in 0..object_bytes / NODE_BYTES {
        m.alloc(node, 0).expect("alloc");
    }
    m.start_collection().expect("warm-up collection");
    assert_eq!(heap.flips(), 1);

    // 3. Build.
    let mut rng = SplitMix(seed);
    let t = m.alloc(table_ty, CHAINS).expect("table");
    let table = m.root(t);
    let nodes = (object_bytes - (CHAINS + 1) * 8) / NODE_BYTES;
    let mut n_live = 0usize;
    for seq in 1..=nodes as u64 {
        let v = m.alloc(node, 0).expect("alloc");
        if rng.chance(live) {
            let tab = table.get(&m).expect("table");
            let n = m.local(v).expect("node");
            let (chain, other) = match shape {
                Shape::Local => {
                    let chain = (n_live / RUN) % CHAINS;
                    let two_back = m.local(tab.get(chain)).map_or(Value::NULL, |p| p.get(0));
                    (chain, two_back)
                }
                Shape::Scattered => (n_live % CHAINS, tab.get(rng.below(CHAINS))),
            };
            n.set(0, tab.get(chain));
            n.set(1, other);
            n.set_word(2, seq);
            tab.set(chain, v);
            n_live += 1;
        }
    }
    assert_eq!(heap.flips(), 1, "a collection ran while building");

    // 4. Measure.
    m.start_collection().expect("collection");
    let stats = heap.history().last().expect("a cycle").clone();
    assert_eq!(stats.cycle, 2);

    // 5. Check.
    assert_eq!(stats.live_objects, n_live + 1, "marked objects");
    let mut found = 0usize;
    let tab = table.get(&m).expect("table");
    for c in 0..CHAINS {
        let mut v = tab.get(c);
        let mut prev = u64::MAX;
        while let Some(n) = m.local(v) {
            assert_eq!(n.type_id(), node);
            let seq = n.word(2);
            assert!(seq < prev, "chain {c} out of order");
            prev = seq;
            if let Some(o) = m.local(n.get(1)) {
                assert_eq!(o.type_id(), node);
            }
            found += 1;
            v = n.get(0);
        }
    }
    assert_eq!(found, n_live, "live nodes reachable after the collection");
    Sample { stats }
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let quick = !bench_mode || quick_env();
    let object_bytes: usize = if quick { 32 << 20 } else { 256 << 20 };
    let default_runs = match (bench_mode, quick) {
        (false, _) => 1,
        (true, true) => 3,
        (true, false) => 5,
    };
    let runs = runs_env(default_runs);
    let mut cases = Vec::new();
    for shape in [Shape::Local, Shape::Scattered] {
        for live in [0.1, 0.5, 0.9] {
            cases.push((shape, live, 1, StwCompaction::Copy, 1));
        }
        cases.push((shape, 0.5, 2, StwCompaction::Copy, 1));
        for workers in [1, 2] {
            for live in [0.1, 0.5, 0.9] {
                cases.push((shape, live, 1, StwCompaction::Slide, workers));
            }
        }
    }
    // `FAULTLINE_STW_CASES=local/50/1/slide,scattered/90` (comma-separated prefixes of
    // `shape/live %/gc threads/compaction/compaction workers`) keeps only the matching cases
    // (for profiling one).
    if let Ok(filter) = std::env::var("FAULTLINE_STW_CASES") {
        let keep: Vec<&str> = filter.split(',').filter(|f| !f.is_empty()).collect();
        cases.retain(|&(shape, live, threads, compaction, workers)| {
            let id = format!(
                "{}/{:.0}/{threads}/{}/{workers}",
                shape.name(),
                live * 100.0,
                compaction.name()
            );
            keep.is_empty() || keep.iter().any(|f| id.starts_with(f))
        });
    }

    println!(
        "stop-the-world collection of {} MiB of 32-byte nodes, {runs} run(s) per case (load average {})",
        object_bytes >> 20,
        loadavg()
    );
    println!(
        "pause ms: median [min, max]; breakdown (ms) of the median run; MiB/s = MiB / median pause"
    );
    let (memcpy_before, memcpy_cpu_before) = memcpy_bandwidth(object_bytes, 5);
    println!();
    println!(
        "| shape | live | gc threads | compaction | workers | pause ms (median [min, max]) | mark | plan | compact | other | pause / mark | live MiB | heap MiB | live MiB/s | heap MiB/s | pages filled | fill | map | slide threads (waits) | compact MiB/s | / memcpy |"
    );
    println!(
        "|---|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut rows = Vec::new();
    for (ci, &(shape, live, threads, compaction, workers)) in cases.iter().enumerate() {
        let mut samples: Vec<Sample> = (0..runs)
            .map(|r| {
                let seed = 0x5eed + (ci * 100 + r) as u64;
                run_once(
                    object_bytes,
                    shape,
                    live,
                    threads,
                    compaction,
                    workers,
                    seed,
                )
            })
            .collect();
        samples.sort_by_key(Sample::pause);
        let med = &samples[samples.len() / 2].stats;
        let pause = med.pause_total();
        let other = pause.saturating_sub(med.mark + med.plan + med.compact);
        let (lo, hi) = (samples[0].pause(), samples[samples.len() - 1].pause());
        let secs = pause.as_secs_f64();
        let compact_bw = mib(med.moving_after) / med.compact.as_secs_f64();
        let row = format!(
            "| {} | {:.0} % | {} | {} | {workers} | {:.1} [{:.1}, {:.1}] | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {:.0} | {:.0} | {} | {:.1} | {:.1} | {} ({}) | {:.0} |",
            shape.name(),
            live * 100.0,
            threads,
            compaction.name(),
            ms(pause),
            ms(lo),
            ms(hi),
            ms(med.mark),
            ms(med.plan),
            ms(med.compact),
            ms(other),
            secs / med.mark.as_secs_f64(),
            mib(med.moving_after),
            mib(med.moving_before),
            mib(med.moving_after) / secs,
            mib(med.moving_before) / secs,
            med.pages_filled,
            ms(med.compact_fill),
            ms(med.compact_map),
            med.slide_threads,
            med.slide_waits,
            compact_bw,
        );
        println!(
            "{row} {:.2} (vs {memcpy_before:.0}) |",
            compact_bw / memcpy_before
        );
        let cpu = &med.cpu;
        let compact_cpu_bw = mib(med.moving_after) / cpu.compact.as_secs_f64();
        let cpu_ratio = cpu.pause.as_secs_f64() / cpu.mark.as_secs_f64();
        rows.push((row, compact_bw, compact_cpu_bw, cpu_ratio, *cpu));
    }
    let (memcpy_after, memcpy_cpu_after) = memcpy_bandwidth(object_bytes, 5);
    let memcpy = (memcpy_before + memcpy_after) / 2.0;
    let memcpy_cpu = (memcpy_cpu_before + memcpy_cpu_after) / 2.0;
    println!();
    println!(
        "memcpy of {} MiB: {memcpy_before:.0} MiB/s before the cases, {memcpy_after:.0} MiB/s after (mean {memcpy:.0}); compaction against the mean:",
        object_bytes >> 20
    );
    println!();
    println!("| shape | live | gc threads | compaction | workers | compact MiB/s | / memcpy |");
    println!("|---|---:|---:|---|---:|---:|---:|");
    for (&(shape, live, threads, compaction, workers), (_, bw, ..)) in cases.iter().zip(&rows) {
        println!(
            "| {} | {:.0} % | {threads} | {} | {workers} | {bw:.0} | {:.2} |",
            shape.name(),
            live * 100.0,
            compaction.name(),
            bw / memcpy
        );
    }
    println!();
    println!(
        "By CPU time (thread clocks: the collecting thread's, plus the slide's helpers' in the compaction; median runs as above): memcpy {memcpy_cpu_before:.0} MiB per CPU s before the cases, {memcpy_cpu_after:.0} after (mean {memcpy_cpu:.0})"
    );
    println!();
    println!("| shape | live | gc threads | compaction | workers | pause CPU ms | mark CPU ms | compact CPU ms | finish CPU ms | pause / mark (CPU) | compact MiB per CPU s | / memcpy (CPU) |");
    println!("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (&(shape, live, threads, compaction, workers), (_, _, cbw, ratio, cpu)) in
        cases.iter().zip(&rows)
    {
        println!(
            "| {} | {:.0} % | {threads} | {} | {workers} | {:.1} | {:.1} | {:.1} | {:.1} | {ratio:.2} | {cbw:.0} | {:.2} |",
            shape.name(),
            live * 100.0,
            compaction.name(),
            ms(cpu.pause),
            ms(cpu.mark),
            ms(cpu.compact),
            ms(cpu.finish),
            cbw / memcpy_cpu
        );
    }
    println!();
    println!("load average at the end: {}", loadavg());
}

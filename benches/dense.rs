//! The stop-the-world slide's dense prefix (`HeapConfig::dense_prefix`, issue 15 item 3): what
//! each threshold saves in compaction and costs in memory, on heaps whose old data lies at the
//! start of the half.
//!
//! A plain `main` (no criterion). Every run builds a fresh heap whose half holds about
//! `objects` bytes (256 MiB by default) and slides it (`StwCompaction::Slide`, the default's
//! choice) with each threshold in turn (off, 0.99, 0.95, 0.9, 0.8), the thresholds interleaved
//! within each run index so that a change in the machine's load hits them alike:
//!
//! - **uniform**: the tables and nodes fill 7/8 of the half, then 10 % of the nodes die at
//!   random (as the stw bench's 90 %-live case: every page about 90 % live) and the first
//!   collection slides it;
//! - **aged**: an old generation (about 5/8 of the half: 32-byte nodes `{table, fixnum, data}`
//!   held by 4096-slot tables under one rooted top table) is built and collected once, so it
//!   lies compacted at the start of the half; then 2 % of the old nodes die at random, young
//!   nodes are allocated until the half is full (1 in 10 lives, taking a dead old node's
//!   slot), and the measured collection slides it: the old pages are about 98 % live, the
//!   young ones about 10 %;
//! - **churn**: the same old generation; then 6 cycles, each replacing 5 % of the old nodes
//!   (chosen at random, so dead words spread over every old page) among garbage allocation
//!   until the half is full: the dense prefix's fillers accumulate as long as a page stays
//!   above the threshold. The figures are the means over cycles 2..6, and the heap after the
//!   last cycle.
//!
//! Columns: pause (wall) and pause CPU (the collecting thread's CPU clock over the whole
//! pause: marking, planning, compaction), compact (the slide's wall time) and compact CPU (the collecting
//! thread's CPU clock in the slide: what the load does not inflate), plan (wall: the prefix's
//! choice and its fillers are part of planning) and dense prefix CPU (the thread CPU of that
//! part, `CycleStats::dense_cpu`), kept pages (the dense prefix),
//! dead MiB (fragmentation: dead bytes left in it as fillers) and their share of the heap
//! after, heap after (MiB in use after the cycle: the slide's free tail starts there).
//!
//! Environment: `FAULTLINE_BENCH_QUICK=1` shrinks the heap to 32 MiB and runs once;
//! `FAULTLINE_BENCH_RUNS=n` overrides the number of runs (3 by default). Without `--bench`
//! it runs the quick configuration.
//!
//! Invariants: no collection happens but those asked for (the trigger is the whole half); each
//! case's heap is checked after its last cycle (every slot's node holds its own index).

use std::time::Duration;

use faultline::{CycleStats, Heap, HeapConfig, Mutator, Root, StwCompaction, TypeId, Value};

#[path = "common/mod.rs"]
mod common;

use common::rng::SplitMix;
use common::types::{fix, node_type, ref_array_type, unfix, NODE_BYTES};
use common::{loadavg, mib, quick_env, runs_env};

/// Slots of a second-level table (32 KiB: an ordinary moving-space object).
const SLOTS: usize = 4096;

const THRESHOLDS: [Option<f64>; 5] = [None, Some(0.99), Some(0.95), Some(0.9), Some(0.8)];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    Uniform,
    Aged,
    Churn,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Uniform => "uniform",
            Workload::Aged => "aged",
            Workload::Churn => "churn",
        }
    }
}

/// The old generation: `n` nodes in tables of `SLOTS` under a rooted top table.
struct Old {
    top: Root,
    n: usize,
    node: TypeId,
}

impl Old {
    fn build(m: &mut Mutator, bytes: usize) -> Old {
        let heap = m.heap().clone();
        let node = node_type(&heap);
        let table = ref_array_type(&heap, "table");
        let n = bytes / (NODE_BYTES + 8);
        let tables = n.div_ceil(SLOTS);
        let t = m.alloc(table, tables).expect("top table");
        let top = m.root(t);
        for k in 0..tables {
            let s = m.alloc(table, SLOTS).expect("table");
            top.get(m).expect("top").set(k, s);
            for j in 0..SLOTS.min(n - k * SLOTS) {
                Old::put(m, &top, node, k * SLOTS + j);
            }
        }
        Old { top, n, node }
    }

    /// A new node for slot `i` (`data` = `i`, `next` = its table: a reference that moves when
    /// the table does, and keeps no other node alive).
    fn put(m: &mut Mutator, top: &Root, node: TypeId, i: usize) {
        let v = m.alloc(node, 0).expect("node");
        let tab = m
            .local(top.get(m).expect("top").get(i / SLOTS))
            .expect("table");
        let l = m.local(v).expect("node");
        l.set(0, top.get(m).expect("top").get(i / SLOTS));
        l.set_word(2, i as u64);
        l.set(1, fix(i as u64));
        tab.set(i % SLOTS, v);
    }

    fn kill(&self, m: &Mutator, i: usize) {
        m.local(self.top.get(m).expect("top").get(i / SLOTS))
            .expect("table")
            .set(i % SLOTS, Value::NULL);
    }

    fn check(&self, m: &Mutator) -> usize {
        let mut live = 0;
        for i in 0..self.n {
            let tab = m
                .local(self.top.get(m).expect("top").get(i / SLOTS))
                .expect("table");
            if let Some(l) = m.local(tab.get(i % SLOTS)) {
                assert_eq!(l.word(2), i as u64, "slot {i}");
                assert_eq!(unfix(l.get(1)), i as u64, "slot {i}");
                live += 1;
            }
        }
        live
    }
}

/// Allocate garbage nodes (and, with probability `p`, a node for one of `slots`, in order)
/// until the half has about `room` bytes left.
fn fill(m: &mut Mutator, heap: &Heap, old: &Old, slots: &[usize], p: f64, rng: &mut SplitMix) {
    let half = heap.config().max_heap_bytes;
    let room = 2 << 20;
    let mut next = 0;
    // (Room is left for the slots not refilled yet: they are refilled at the end.)
    while heap.used_bytes() + room + (slots.len() - next) * NODE_BYTES < half {
        for _ in 0..1024 {
            if next < slots.len() && rng.chance(p) {
                Old::put(m, &old.top, old.node, slots[next]);
                next += 1;
            } else {
                m.alloc(old.node, 0).expect("garbage");
            }
        }
    }
    // Slots not refilled by now get their node at the end (still young, all live).
    for &i in &slots[next..] {
        Old::put(m, &old.top, old.node, i);
    }
}

/// One case: the cycles it measures.
fn run(objects: usize, w: Workload, threshold: Option<f64>, seed: u64) -> Vec<CycleStats> {
    let half = objects + (8 << 20);
    let heap = Heap::new(HeapConfig::with_heap_size(half).with(|c| {
        c.min_trigger_bytes = half;
        c.gc_threads = 1;
        c.stw_compaction = StwCompaction::Slide;
        c.dense_prefix = threshold;
    }))
    .expect("heap");
    let mut m = heap.attach();
    let mut rng = SplitMix(seed);
    if w == Workload::Uniform {
        // The stw bench's 90 %-live heap: no old data at the start, dead nodes everywhere.
        let old = Old::build(&mut m, objects / 8 * 7);
        for i in 0..old.n {
            if rng.chance(0.1) {
                old.kill(&m, i);
            }
        }
        m.collect().expect("collection");
        let st = heap.history().last().expect("a cycle").clone();
        assert!(old.check(&m) < old.n);
        return vec![st];
    }
    let old = Old::build(&mut m, objects / 8 * 5);
    m.collect().expect("collection");
    let cycles = match w {
        Workload::Uniform | Workload::Aged => 1,
        Workload::Churn => 6,
    };
    let share = match w {
        Workload::Uniform | Workload::Aged => 0.02,
        Workload::Churn => 0.05,
    };
    let p = match w {
        Workload::Uniform | Workload::Aged => 0.1,
        Workload::Churn => 0.05,
    };
    let mut out = Vec::new();
    for _ in 0..cycles {
        let mut slots: Vec<usize> = (0..old.n).filter(|_| rng.chance(share)).collect();
        for &i in &slots {
            old.kill(&m, i);
        }
        // Refilled in a random order.
        for k in (1..slots.len()).rev() {
            slots.swap(k, rng.below(k + 1));
        }
        fill(&mut m, &heap, &old, &slots, p, &mut rng);
        m.collect().expect("collection");
        out.push(heap.history().last().expect("a cycle").clone());
    }
    assert_eq!(old.check(&m), old.n, "every slot holds its node");
    assert_eq!(heap.flips(), 1 + cycles as u64, "no collection but ours");
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A case's figures: means over its measured cycles (churn: cycles 2..), and the heap after
/// the last.
#[derive(Default, Clone, Copy)]
struct Row {
    pause: f64,
    pause_cpu: f64,
    compact: f64,
    compact_cpu: f64,
    plan: f64,
    dense_cpu: f64,
    kept: f64,
    dead: f64,
    after: f64,
    last_after: f64,
    last_dead: f64,
}

fn row(cycles: &[CycleStats]) -> Row {
    let c = if cycles.len() > 1 {
        &cycles[1..]
    } else {
        cycles
    };
    let n = c.len() as f64;
    let mean = |f: &dyn Fn(&CycleStats) -> f64| c.iter().map(f).sum::<f64>() / n;
    let last = cycles.last().expect("a cycle");
    Row {
        pause: mean(&|s| ms(s.pause_total())),
        pause_cpu: mean(&|s| ms(s.cpu.pause)),
        compact: mean(&|s| ms(s.compact)),
        compact_cpu: mean(&|s| ms(s.cpu.compact)),
        plan: mean(&|s| ms(s.plan)),
        dense_cpu: mean(&|s| ms(s.dense_cpu)),
        kept: mean(&|s| s.dense_kept_pages as f64),
        dead: mean(&|s| mib(s.dense_dead_bytes)),
        after: mean(&|s| mib(s.moving_after)),
        last_after: mib(last.moving_after),
        last_dead: mib(last.dense_dead_bytes),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let quick = !bench_mode || quick_env();
    let objects: usize = if quick { 32 << 20 } else { 256 << 20 };
    let runs = runs_env(if quick { 1 } else { 3 });
    println!(
        "dense prefix of the stop-the-world slide, {} MiB heap, {runs} run(s) per case (load average {})",
        objects >> 20,
        loadavg()
    );
    for w in [Workload::Uniform, Workload::Aged, Workload::Churn] {
        let mut rows: Vec<Vec<Row>> = vec![Vec::new(); THRESHOLDS.len()];
        for r in 0..runs {
            for (ti, &t) in THRESHOLDS.iter().enumerate() {
                rows[ti].push(row(&run(objects, w, t, 0xde75 + r as u64)));
            }
        }
        println!();
        println!(
            "{} (medians of {runs} runs; load average now {})",
            w.name(),
            loadavg()
        );
        println!();
        println!("| threshold | pause ms | pause CPU ms | compact ms | compact CPU ms | plan ms | dense prefix CPU ms | kept pages | dead MiB | dead / heap after | heap after MiB | last heap after MiB | last dead MiB |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (ti, &t) in THRESHOLDS.iter().enumerate() {
            let med = |f: &dyn Fn(&Row) -> f64| median(rows[ti].iter().map(f).collect());
            let (dead, after) = (med(&|r| r.dead), med(&|r| r.after));
            println!(
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.2} | {:.2} % | {:.1} | {:.1} | {:.2} |",
                t.map_or("off".to_string(), |t| format!("{t}")),
                med(&|r| r.pause),
                med(&|r| r.pause_cpu),
                med(&|r| r.compact),
                med(&|r| r.compact_cpu),
                med(&|r| r.plan),
                med(&|r| r.dense_cpu),
                med(&|r| r.kept),
                dead,
                100.0 * dead / after,
                after,
                med(&|r| r.last_after),
                med(&|r| r.last_dead),
            );
        }
    }
    println!();
    println!("load average at the end: {}", loadavg());
}

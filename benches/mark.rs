//! Marking alone: the collector threads' mark CPU per cycle (`CycleStats::cpu`, `CpuSplit::mark`)
//! of the same heap, stop-the-world against concurrent, with the one mutator idle (waiting in
//! `Mutator::collect`), so that only the marker's own code differs: no mutator allocates, writes
//! or competes for the caches while it marks.
//!
//! Shapes (each built once per mode, then collected `runs` times; the first collection is a
//! warm-up, not counted):
//! - `tree`: a complete binary tree of 32-byte nodes (two references each), built depth first,
//!   as binary-trees and gcbench build theirs: 2^depth - 1 nodes;
//! - `list`: one linked list of 24-byte pairs: each object's successor is known only once it is
//!   loaded (nothing to prefetch early), 2^depth pairs;
//! - `array`: a reference array of 2^(depth - 2) slots to byte arrays of 8-207 bytes, half of
//!   them replaced once at random (a table of scattered leaves, as fragmentation's),
//!   2^(depth - 2) + 1 objects live.
//!
//! Each row: the median and lowest mark CPU per cycle and ns per traced object, per mode; the
//! check asserts that every counted cycle traced exactly the objects the shape holds (the
//! collector's `live_objects`), so a marker that loses or repeats objects fails the bench.
//!
//! `--bench`: depth 21 (2 M nodes, 64 MiB of tree), 9 counted cycles per mode; without it
//! (`cargo test --benches`) or with `FAULTLINE_BENCH_QUICK=1`: depth 14, 2 cycles.
//! `FAULTLINE_BENCH_RUNS=n` overrides the cycles; `FAULTLINE_MARK_SHAPES=tree,list` keeps only
//! those shapes. Concurrent rows need userfaultfd; where it is
//! unavailable the heap falls back to stop-the-world and the row says so.
//!
//! Invariants: no collection happens except the measured ones (the trigger is above the heap);
//! every value is rooted (the mutator's stack or a `Root`) across allocations.

#[path = "common/mod.rs"]
mod common;

use common::rng::SplitMix;
use common::types::{node_type, pair_type, ref_array_type};
use common::{loadavg, quick_env, runs_env};
use faultline::{GcMode, Heap, HeapConfig, Mutator, TypeId, TypeInfo, Value};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Tree,
    List,
    Array,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Tree => "tree",
            Shape::List => "list",
            Shape::Array => "array",
        }
    }
}

/// A complete binary tree of depth `d` on the mutator's stack top (null for depth 0).
fn tree(m: &mut Mutator, node: TypeId, d: u32) {
    if d == 0 {
        m.push(Value::NULL);
        return;
    }
    tree(m, node, d - 1);
    tree(m, node, d - 1);
    let n = m.alloc(node, 0).expect("a node");
    let right = m.pop().expect("the right subtree");
    let left = m.pop().expect("the left subtree");
    let l = m.local(n).expect("the new node");
    l.set(0, left);
    l.set(1, right);
    m.push(n);
}

/// Build `shape` at `depth`, kept alive by the mutator; returns the objects it holds.
fn build(heap: &Heap, m: &mut Mutator, shape: Shape, depth: u32) -> usize {
    let n = 1usize << depth;
    match shape {
        Shape::Tree => {
            tree(m, node_type(heap), depth);
            n - 1
        }
        Shape::List => {
            let pair = pair_type(heap);
            m.push(Value::NULL);
            for _ in 0..n {
                let p = m.alloc(pair, 0).expect("a pair");
                let next = m.pop().expect("the list");
                m.local(p).expect("the new pair").set(1, next);
                m.push(p);
            }
            n
        }
        Shape::Array => {
            let n = n / 4;
            let refs = ref_array_type(heap, "refs");
            let bytes = heap
                .register_type(TypeInfo::byte_array("bytes"))
                .expect("bytes type");
            let t = m.alloc(refs, n).expect("the table");
            let table = m.root(t);
            let mut rng = SplitMix(0x3a7c);
            let fill = |m: &mut Mutator, i: usize, rng: &mut SplitMix| {
                let o = m.alloc(bytes, 8 + rng.below(200)).expect("a leaf");
                table.get(m).expect("the table").set(i, o);
            };
            for i in 0..n {
                fill(m, i, &mut rng);
            }
            for _ in 0..n / 2 {
                let i = rng.below(n);
                fill(m, i, &mut rng);
            }
            m.push(table.value(m));
            n + 1
        }
    }
}

/// Mark CPU per counted cycle, ns; and whether the heap ran concurrent cycles.
fn run(mode: GcMode, shape: Shape, depth: u32, runs: usize) -> (Vec<u64>, usize, bool) {
    // Four times what the shape allocates (the array's replaced leaves included).
    let per_object = match shape {
        Shape::Tree => 32,
        Shape::List => 24,
        Shape::Array => 50,
    };
    let bytes = (4 * per_object) << depth;
    let heap = Heap::new(HeapConfig::with_heap_size(bytes.max(4 << 20)).with(|c| {
        c.mode = mode;
        c.min_trigger_bytes = bytes.max(4 << 20);
    }))
    .expect("a heap");
    let mut m = heap.attach();
    let objects = build(&heap, &mut m, shape, depth);
    for _ in 0..=runs {
        m.collect().expect("a collection");
    }
    let history = heap.history();
    assert_eq!(history.len(), runs + 1, "a collection started by itself");
    let mut cpu = Vec::new();
    let mut concurrent = false;
    for c in &history[1..] {
        assert_eq!(
            c.live_objects,
            objects,
            "{} {:?}: the cycle traced {} objects, the shape holds {objects}",
            shape.name(),
            mode,
            c.live_objects
        );
        concurrent |= c.mode == GcMode::Concurrent;
        cpu.push(c.cpu.mark.as_nanos() as u64);
    }
    cpu.sort_unstable();
    (cpu, objects, concurrent)
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let quick = !bench_mode || quick_env();
    let depth = if quick { 14 } else { 21 };
    let runs = runs_env(if quick { 2 } else { 9 });
    println!(
        "mark CPU per cycle, mutator idle, depth {depth}, {runs} counted cycles per mode (load average {})",
        loadavg()
    );
    println!();
    println!("| shape | objects | stw median ms | stw min ms | stw ns/object | concurrent median ms | concurrent min ms | concurrent ns/object | concurrent / stw |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let only = std::env::var("FAULTLINE_MARK_SHAPES").ok();
    for shape in [Shape::Tree, Shape::List, Shape::Array] {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|s| s == shape.name()))
        {
            continue;
        }
        let (stw, objects, _) = run(GcMode::StopTheWorld, shape, depth, runs);
        let (conc, _, concurrent) = run(GcMode::Concurrent, shape, depth, runs);
        let med = |v: &[u64]| v[v.len() / 2] as f64;
        let ms = |ns: f64| ns / 1e6;
        let per = |ns: f64| ns / objects as f64;
        println!(
            "| {} | {objects} | {:.1} | {:.1} | {:.1} | {:.1}{} | {:.1} | {:.1} | {:.2} |",
            shape.name(),
            ms(med(&stw)),
            ms(stw[0] as f64),
            per(med(&stw)),
            ms(med(&conc)),
            if concurrent {
                ""
            } else {
                " (stop-the-world: no userfaultfd)"
            },
            ms(conc[0] as f64),
            per(med(&conc)),
            med(&conc) / med(&stw).max(1.0),
        );
    }
}

//! The suite's workloads, written against the public embedding API only.
//!
//! - `binary-trees`: a long-lived complete binary tree of ~`live` bytes, then short-lived
//!   trees of depth 4..=14 built bottom-up and walked, until the allocation budget is spent.
//! - `gcbench`: GCBench's shape: a long-lived tree plus a long-lived array of doubles (a byte
//!   array in the large-object space), then trees built top-down and bottom-up at depths
//!   4, 6, ..., 16.
//! - `fragmentation`: a table of slots holding a stable live set of mixed-size objects
//!   (24 B to 2 KiB, a few 12 KiB large ones; byte arrays and small reference arrays that point
//!   at other slots' byte arrays); every step replaces a random slot (so lifetimes are random,
//!   geometric) and drops a short-lived temporary.
//! - `request`: request-style, metered latency (see `request.rs`): threads serve requests at a
//!   fixed arrival rate against a shared cache (a FIFO-evicted table of entries, each a node
//!   with a 1-4 KiB byte array and a short list), latency from each request's scheduled start.
//! - `churn`: several mutator threads, each owning a table of short lists (its share of the
//!   live set); each step builds a fresh list, replaces a random one of its lists with it and
//!   makes a short-lived garbage list.
//! - `tree-replace`: one large long-lived complete binary tree of ~`live` bytes (issue 15's
//!   embedding: objects old and dense, and stores into them all the time), then two mutator
//!   threads, each replacing random subtrees (depth 6, 8 or 10) of its half of the tree with
//!   freshly built ones: every replacement stores a young subtree into an old node and makes
//!   an old subtree garbage. The node count is checked at the end.
//!   `FAULTLINE_SUITE_REPLACE_EVERY=N` stores only one fresh subtree in N (the rest are
//!   garbage at once): a lower replacement rate for the same allocation.
//!
//! Every workload works until it has allocated `work_factor x live` bytes (the same amount of
//! work in every mode, so total times compare), polling `safepoint()` after every unit of
//! work; the longest unit (from one poll to the end of the next) is the mutator's own view of
//! its longest stall. At the end it checks what it built (node counts, checksums, slot tags)
//! and reports a mismatch as a failure of the run.
//!
//! When the heap runs out of memory, the workload stalls and retries (see [`alloc`]); the
//! stalls are counted and reported, never hidden.
//!
//! Invariants: no `Value` is held across an allocation or a safepoint (anything that must
//! survive is on the mutator's value stack or in a `Root`); randomness is a fixed-seed
//! SplitMix64, so every mode runs the same sequence of operations.

use std::time::Instant;

use faultline::{AllocError, GlobalRoot, Heap, Mutator, Root, TypeId, TypeInfo, Value};

use super::common::rng::SplitMix;
use super::common::types;
use super::common::types::{fix, node_type, pair_type, ref_array_type, unfix};
use super::metrics::thread_cpu;

/// The workloads, in report order.
pub const WORKLOADS: [&str; 6] = [
    "binary-trees",
    "gcbench",
    "fragmentation",
    "churn",
    "request",
    "tree-replace",
];

/// What a workload measured about its mutators.
#[derive(Debug, Clone)]
pub struct WorkResult {
    /// Sum of the mutator threads' CPU time, seconds.
    pub mutator_cpu_s: f64,
    /// Longest unit of work of any mutator, ms (includes pauses and fault stalls).
    pub longest_unit_ms: f64,
    /// Bytes the workload allocated.
    pub allocated: u64,
    /// Mutator threads.
    pub threads: usize,
    /// Per mutator thread: its work phase and its long units of work.
    pub views: Vec<MutatorView>,
    /// Allocation stalls (out of memory: waited for a cycle and retried) and their total time.
    pub alloc_stalls: u64,
    pub alloc_stall_s: f64,
    /// The request workload's metered latency (`None` for the others).
    pub metered: Option<super::request::MeteredResult>,
    /// The end-of-run check.
    pub check: Result<(), String>,
}

impl WorkResult {
    /// The aggregate of `threads` mutator threads, before any thread's result is folded in.
    pub(super) fn empty(threads: usize) -> WorkResult {
        WorkResult {
            mutator_cpu_s: 0.0,
            longest_unit_ms: 0.0,
            allocated: 0,
            threads,
            views: Vec::new(),
            alloc_stalls: 0,
            alloc_stall_s: 0.0,
            metered: None,
            check: Ok(()),
        }
    }

    /// Fold one mutator thread's result in: its CPU, allocation and stalls add up, the longest
    /// unit is the longest of any thread, and the first failed check is kept.
    pub(super) fn absorb(&mut self, r: WorkResult) {
        self.mutator_cpu_s += r.mutator_cpu_s;
        self.longest_unit_ms = self.longest_unit_ms.max(r.longest_unit_ms);
        self.allocated += r.allocated;
        self.alloc_stalls += r.alloc_stalls;
        self.alloc_stall_s += r.alloc_stall_s;
        self.views.extend(r.views);
        if self.check.is_ok() {
            self.check = r.check;
        }
    }

    /// One mutator thread's result: its CPU time since `cpu0`, its units of work, what it
    /// allocated, its allocation stalls (this thread's counters) and its end-of-run check.
    pub(super) fn one_thread(
        cpu0: f64,
        units: &Units,
        allocated: u64,
        check: Result<(), String>,
    ) -> WorkResult {
        let (alloc_stalls, alloc_stall_s) = stalls();
        WorkResult {
            mutator_cpu_s: thread_cpu() - cpu0,
            longest_unit_ms: units.longest,
            allocated,
            threads: 1,
            views: vec![units.view()],
            alloc_stalls,
            alloc_stall_s,
            metered: None,
            check,
        }
    }
}

/// Registered types.
#[derive(Clone, Copy)]
pub(super) struct Types {
    pub(super) node: TypeId,
    pub(super) pair: TypeId,
    pub(super) refs: TypeId,
    pub(super) bytes: TypeId,
}

fn register(heap: &Heap) -> Types {
    Types {
        node: node_type(heap),
        pair: pair_type(heap),
        refs: ref_array_type(heap, "refs"),
        bytes: heap
            .register_type(TypeInfo::byte_array("bytes"))
            .expect("byte array type"),
    }
}

const NODE_BYTES: u64 = types::NODE_BYTES as u64;

thread_local! {
    /// Allocation stalls of this thread: (count, total seconds).
    static STALLS: std::cell::Cell<(u64, f64)> = const { std::cell::Cell::new((0, 0.0)) };
}

/// Allocate, and when the heap is out of memory, stall like a runtime would: wait for the
/// running cycle to finish and retry, then run one more whole cycle and retry, before giving
/// up. (A concurrent heap returns from an exhausted allocation's `collect()` after the
/// initial mark, before anything is reclaimed.) Every stall is counted and timed. Nothing is
/// held across this call by the callers, so waiting here is safe.
pub(super) fn alloc(m: &mut Mutator, ty: TypeId, len: usize) -> Result<Value, AllocError> {
    if *TIME_ALLOCS {
        let t = Instant::now();
        let r = alloc_inner(m, ty, len);
        let d = t.elapsed().as_secs_f64();
        if d > 1e-3 {
            SLOW_ALLOCS.with(|s| {
                let (n, secs, max) = s.get();
                s.set((n + 1, secs + d, max.max(d)));
            });
        }
        return r;
    }
    alloc_inner(m, ty, len)
}

/// Diagnosis (`FAULTLINE_SUITE_TIME_ALLOCS=1`): time every allocation and report those over
/// 1 ms (count, total, longest) on stderr. Off by default: two clock reads per allocation
/// would slow the mutators measurably.
static TIME_ALLOCS: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
    std::env::var("FAULTLINE_SUITE_TIME_ALLOCS").is_ok_and(|v| v == "1")
});

thread_local! {
    static SLOW_ALLOCS: std::cell::Cell<(u64, f64, f64)> = const { std::cell::Cell::new((0, 0.0, 0.0)) };
}

/// Print this thread's slow allocations (diagnosis mode only).
pub fn report_slow_allocs(who: &str) {
    if *TIME_ALLOCS {
        let (n, secs, max) = SLOW_ALLOCS.with(|s| s.get());
        eprintln!(
            "suite diagnosis: {who}: {n} allocations over 1 ms, {secs:.3} s in total, longest {:.1} ms",
            max * 1e3
        );
    }
}

fn alloc_inner(m: &mut Mutator, ty: TypeId, len: usize) -> Result<Value, AllocError> {
    let mut attempt = 0;
    loop {
        match m.alloc(ty, len) {
            Err(AllocError::OutOfMemory { .. }) if attempt < 2 => {
                let t = Instant::now();
                if attempt == 1 {
                    m.start_collection()?;
                }
                m.wait_for_cycle().unwrap();
                attempt += 1;
                STALLS.with(|s| {
                    let (n, secs) = s.get();
                    s.set((n + 1, secs + t.elapsed().as_secs_f64()));
                });
            }
            r => return r,
        }
    }
}

pub(super) fn stalls() -> (u64, f64) {
    STALLS.with(|s| s.get())
}

/// Times units of work between safepoint polls.
///
/// Units longer than [`LONG_UNIT`] are kept as intervals (seconds from the run's start): the
/// mutator's own view of when it was held up, for a mutator-side MMU. A long unit is counted
/// whole, its own work included, so that MMU is a lower bound.
pub(super) struct Units {
    start: Instant,
    first: Instant,
    last: Instant,
    pub(super) longest: f64,
    long: Vec<(f64, f64)>,
}

/// Units of work at least this long are recorded as intervals (no unit of these workloads
/// does this much work between two polls when nothing holds it up; GCBench's largest tree is
/// built between two polls and takes ~3 ms of work, so the threshold is above that).
const LONG_UNIT: f64 = 5e-3;

impl Units {
    pub(super) fn new(start: Instant) -> Units {
        let now = Instant::now();
        Units {
            start,
            first: now,
            last: now,
            longest: 0.0,
            long: Vec::new(),
        }
    }
    pub(super) fn poll(&mut self, m: &mut Mutator) {
        m.safepoint();
        let now = Instant::now();
        let d = (now - self.last).as_secs_f64();
        self.longest = self.longest.max(d * 1e3);
        if d >= LONG_UNIT {
            let at = |t: Instant| (t - self.start).as_secs_f64();
            self.long.push((at(self.last), at(now)));
        }
        self.last = now;
    }
    /// The work phase (first, last poll) and its long units, seconds from the run's start.
    pub(super) fn view(&self) -> MutatorView {
        MutatorView {
            from: (self.first - self.start).as_secs_f64(),
            to: (self.last - self.start).as_secs_f64(),
            long_units: self.long.clone(),
        }
    }
}

/// One mutator thread's view of its work phase.
#[derive(Debug, Clone, Default)]
pub struct MutatorView {
    pub from: f64,
    pub to: f64,
    pub long_units: Vec<(f64, f64)>,
}

/// Run `name` on `heap` for a live set of `live` bytes and `work_factor x live` allocated.
pub fn run(
    name: &str,
    heap: &Heap,
    live: usize,
    work_factor: f64,
    threads: usize,
    start: Instant,
) -> Result<WorkResult, String> {
    let t = register(heap);
    let budget = (live as f64 * work_factor) as u64;
    let err = |e: AllocError| format!("{name}: allocation failed: {e}");
    match name {
        "binary-trees" => binary_trees(heap, t, live, budget, start).map_err(err),
        "gcbench" => gcbench(heap, t, live, budget, start).map_err(err),
        "fragmentation" => fragmentation(heap, t, live, budget, start).map_err(err),
        "churn" => churn(heap, t, live, budget, threads, start),
        "request" => super::request::run(heap, t, live, budget, threads, start),
        "tree-replace" => tree_replace(heap, t, live, budget, start),
        other => Err(format!("unknown workload {other}")),
    }
}

/// Bottom-up: pushes the tree's root on the value stack. Returns the node count.
fn bottom_up(m: &mut Mutator, t: &Types, d: u32) -> Result<u64, AllocError> {
    if d == 0 {
        m.push(Value::NULL);
        return Ok(0);
    }
    let a = bottom_up(m, t, d - 1)?;
    let b = bottom_up(m, t, d - 1)?;
    let n = alloc(m, t.node, 0)?;
    let right = m.pop().expect("right subtree");
    let left = m.pop().expect("left subtree");
    let l = m.local(n).expect("fresh node");
    l.set(0, left);
    l.set(1, right);
    l.set_word(2, d as u64);
    m.push(n);
    Ok(a + b + 1)
}

/// Top-down (GCBench's `Populate`): the node at stack index `at` gets two fresh children,
/// recursively. Returns the nodes allocated.
fn top_down(m: &mut Mutator, t: &Types, at: usize, d: u32) -> Result<u64, AllocError> {
    if d == 0 {
        return Ok(0);
    }
    let mut n = 0;
    for side in 0..2 {
        let c = alloc(m, t.node, 0)?;
        m.local(c).expect("fresh node").set_word(2, d as u64 - 1);
        let parent = m.local(m.stack_get(at)).expect("parent node");
        parent.set(side, c);
        m.push(c);
        let child_at = m.stack_len() - 1;
        n += 1 + top_down(m, t, child_at, d - 1)?;
        m.pop();
    }
    Ok(n)
}

/// Count the nodes of the tree on top of the value stack (popping it), on the mutator's value
/// stack so that the walk can poll the safepoint every 1024 nodes (a long walk would
/// otherwise hold up every pause's time to safepoint).
fn count_nodes(m: &mut Mutator, t: &Types) -> Result<u64, String> {
    let base = m.stack_len() - 1;
    let mut n = 0u64;
    let mut bad = false;
    while m.stack_len() > base {
        let v = m.pop().expect("walk stack");
        if let Some(node) = m.local(v) {
            if node.type_id() != t.node {
                bad = true;
                continue;
            }
            let (l, r) = (node.get(0), node.get(1));
            n += 1;
            m.push(l);
            m.push(r);
            if n.is_multiple_of(1024) {
                m.safepoint();
            }
        }
    }
    if bad {
        return Err("a tree holds a non-node object".into());
    }
    Ok(n)
}

fn depth_for(bytes: u64) -> u32 {
    let mut d = 1;
    while NODE_BYTES * ((1u64 << (d + 1)) - 1) <= bytes {
        d += 1;
    }
    d
}

fn binary_trees(
    heap: &Heap,
    t: Types,
    live: usize,
    budget: u64,
    start: Instant,
) -> Result<WorkResult, AllocError> {
    let mut m = heap.attach();
    let cpu0 = thread_cpu();
    let long_depth = depth_for(live as u64);
    let long_nodes = bottom_up(&mut m, &t, long_depth)?;
    let long = m.root(m.pop().expect("long-lived tree"));
    let mut units = Units::new(start);
    let mut allocated = long_nodes * NODE_BYTES;
    let mut check = Ok(());
    let mut d = 4;
    while allocated < budget {
        let n = bottom_up(&mut m, &t, d)?;
        match count_nodes(&mut m, &t) {
            Ok(c) if c == n => {}
            Ok(c) => check = Err(format!("a depth-{d} tree has {c} nodes, built {n}")),
            Err(e) => check = Err(e),
        }
        allocated += n * NODE_BYTES;
        d = if d >= 14 { 4 } else { d + 2 };
        units.poll(&mut m);
    }
    m.push(long.value(&m));
    let got = count_nodes(&mut m, &t);
    if check.is_ok() {
        check = match got {
            Ok(c) if c == long_nodes => Ok(()),
            Ok(c) => Err(format!("long-lived tree: {c} nodes, built {long_nodes}")),
            Err(e) => Err(e),
        };
    }
    report_slow_allocs(&format!("{:?}", std::thread::current().name()));
    Ok(WorkResult::one_thread(cpu0, &units, allocated, check))
}

fn gcbench(
    heap: &Heap,
    t: Types,
    live: usize,
    budget: u64,
    start: Instant,
) -> Result<WorkResult, AllocError> {
    let mut m = heap.attach();
    let cpu0 = thread_cpu();
    // The long-lived array of doubles: 1/16 of the live size on top of it (large-object
    // space, not moved).
    let doubles = (live / 16 / 8).max(1024);
    let arr = alloc(&mut m, t.bytes, doubles * 8)?;
    {
        let l = m.local(arr).expect("fresh array");
        let buf: Vec<u8> = (0..doubles)
            .flat_map(|i| (1.0 / (i as f64 + 1.0)).to_le_bytes())
            .collect();
        l.write_bytes(0, &buf);
    }
    let arr = m.root(arr);
    // The long-lived tree, built top-down as GCBench does.
    let long_depth = depth_for(live as u64);
    let r = alloc(&mut m, t.node, 0)?;
    m.push(r);
    let at = m.stack_len() - 1;
    let long_nodes = 1 + top_down(&mut m, &t, at, long_depth - 1)?;
    let long = m.root(m.pop().expect("long-lived tree"));
    let mut units = Units::new(start);
    let mut allocated = long_nodes * NODE_BYTES + doubles as u64 * 8;
    let mut check = Ok(());
    let mut d = 4u32;
    'outer: loop {
        // GCBench: 2 x size(16) / size(d) trees of depth d, each way.
        let iters = (2u64 << 16) / (1u64 << d);
        for _ in 0..iters.max(1) {
            // Top-down.
            let r = alloc(&mut m, t.node, 0)?;
            m.push(r);
            let at = m.stack_len() - 1;
            let n = 1 + top_down(&mut m, &t, at, d)?;
            m.pop();
            allocated += n * NODE_BYTES;
            units.poll(&mut m);
            // Bottom-up, then walked.
            let n = bottom_up(&mut m, &t, d + 1)?;
            match count_nodes(&mut m, &t) {
                Ok(c) if c == n => {}
                Ok(c) => check = Err(format!("a depth-{d} tree has {c} nodes, built {n}")),
                Err(e) => check = Err(e),
            }
            allocated += n * NODE_BYTES;
            units.poll(&mut m);
            if allocated >= budget {
                break 'outer;
            }
        }
        d = if d >= 16 { 4 } else { d + 2 };
    }
    if check.is_ok() {
        m.push(long.value(&m));
        let got = count_nodes(&mut m, &t);
        check = match got {
            Ok(c) if c == long_nodes => Ok(()),
            Ok(c) => Err(format!("long-lived tree: {c} nodes, built {long_nodes}")),
            Err(e) => Err(e),
        };
    }
    if check.is_ok() {
        let l = arr.get(&m).expect("array root");
        let mut b = [0u8; 8];
        for i in (0..doubles).step_by(97) {
            l.read_bytes(8 * i, &mut b);
            if b != (1.0 / (i as f64 + 1.0)).to_le_bytes() {
                check = Err(format!("array of doubles: element {i} changed"));
                break;
            }
        }
    }
    report_slow_allocs(&format!("{:?}", std::thread::current().name()));
    Ok(WorkResult::one_thread(cpu0, &units, allocated, check))
}

/// A random object size for the fragmentation workload: log-uniform 24 B .. 2 KiB, and one
/// in 200 a 12 KiB object (large-object space).
fn frag_size(rng: &mut SplitMix) -> usize {
    if rng.below(200) == 0 {
        return 12 << 10;
    }
    let bits = 3 + rng.below(7); // 8 .. 1024 bytes of payload, times 1..2
    (1usize << bits) + rng.below(1usize << bits)
}

/// Average object size of `frag_size` (estimated once, for sizing the table).
fn frag_avg() -> usize {
    let mut r = SplitMix(1);
    let n = 10_000;
    (0..n).map(|_| frag_size(&mut r) + 8).sum::<usize>() / n
}

/// Allocate the object for slot `slot` (generation `gen`): a byte array whose first word is
/// the tag, or (one in four) a ref array of up to 4 references to other slots' byte arrays
/// (then the tag is in the last element as a fixnum). Returns the bytes allocated.
fn frag_alloc(
    m: &mut Mutator,
    t: &Types,
    table: &Root,
    rng: &mut SplitMix,
    slot: usize,
    tag: u64,
) -> Result<usize, AllocError> {
    let size = frag_size(rng);
    let nslots = table.get(m).expect("table").len();
    if rng.below(4) == 0 {
        let k = 1 + rng.below(4);
        let v = alloc(m, t.refs, k + 1)?;
        let tab = table.get(m).expect("table");
        let l = m.local(v).expect("fresh refs");
        for i in 0..k {
            let other = tab.get(rng.below(nslots));
            // Only byte arrays are pointed at, so chains of ref arrays never form.
            if m.local(other).is_some_and(|o| o.type_id() == t.bytes) {
                l.set(i, other);
            }
        }
        l.set(k, fix(tag));
        tab.set(slot, v);
        Ok(8 * (k + 2))
    } else {
        let v = alloc(m, t.bytes, size)?;
        let l = m.local(v).expect("fresh bytes");
        l.write_bytes(0, &tag.to_le_bytes());
        table.get(m).expect("table").set(slot, v);
        Ok(size + 8)
    }
}

fn frag_tag_of(m: &Mutator, t: &Types, v: Value) -> Option<u64> {
    let l = m.local(v)?;
    if l.type_id() == t.bytes {
        let mut b = [0u8; 8];
        l.read_bytes(0, &mut b);
        Some(u64::from_le_bytes(b))
    } else if l.type_id() == t.refs {
        Some(unfix(l.get(l.len() - 1)))
    } else {
        None
    }
}

fn fragmentation(
    heap: &Heap,
    t: Types,
    live: usize,
    budget: u64,
    start: Instant,
) -> Result<WorkResult, AllocError> {
    let mut m = heap.attach();
    let cpu0 = thread_cpu();
    let slots = (live / frag_avg()).max(64);
    let tv = alloc(&mut m, t.refs, slots)?;
    let table = m.root(tv);
    let mut rng = SplitMix(0xf4a9);
    let mut tags = vec![0u64; slots];
    let mut allocated = 8 * slots as u64;
    let mut gen = 1u64;
    for (s, tag) in tags.iter_mut().enumerate() {
        *tag = (gen << 24) | s as u64;
        allocated += frag_alloc(&mut m, &t, &table, &mut rng, s, *tag)? as u64;
    }
    let mut units = Units::new(start);
    let mut step = 0u64;
    while allocated < budget {
        gen += 1;
        let s = rng.below(slots);
        tags[s] = (gen << 24) | s as u64;
        allocated += frag_alloc(&mut m, &t, &table, &mut rng, s, tags[s])? as u64;
        // A short-lived temporary.
        let sz = frag_size(&mut rng).min(1024);
        alloc(&mut m, t.bytes, sz)?;
        allocated += sz as u64 + 8;
        step += 1;
        if step.is_multiple_of(16) {
            units.poll(&mut m);
        }
    }
    let mut check = Ok(());
    for (s, &want) in tags.iter().enumerate() {
        if s % 4096 == 0 {
            m.safepoint();
        }
        let got = frag_tag_of(&m, &t, table.get(&m).expect("table").get(s));
        if got != Some(want) {
            check = Err(format!("slot {s}: tag {got:?}, expected {want}"));
            break;
        }
    }
    report_slow_allocs(&format!("{:?}", std::thread::current().name()));
    Ok(WorkResult::one_thread(cpu0, &units, allocated, check))
}

/// Build a list of `len` fixnums `base..base+len` on the value stack top; returns the bytes.
fn build_list(m: &mut Mutator, t: &Types, base: u64, len: u64) -> Result<u64, AllocError> {
    m.push(Value::NULL);
    for i in (0..len).rev() {
        let p = alloc(m, t.pair, 0)?;
        let tail = m.pop().expect("tail");
        let l = m.local(p).expect("fresh pair");
        l.set(0, fix(base + i));
        l.set(1, tail);
        m.push(p);
    }
    Ok(len * 24)
}

fn list_sum(m: &Mutator, v: Value) -> (u64, u64) {
    let (mut n, mut s) = (0, 0u64);
    let mut v = v;
    while let Some(p) = m.local(v) {
        n += 1;
        s = s.wrapping_add(unfix(p.get(0)));
        v = p.get(1);
    }
    (n, s)
}

fn churn(
    heap: &Heap,
    t: Types,
    live: usize,
    budget: u64,
    threads: usize,
    start: Instant,
) -> Result<WorkResult, String> {
    let per_thread_live = live / threads;
    let per_thread_budget = budget / threads as u64;
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let heap = heap.clone();
            std::thread::Builder::new()
                .name(format!("churn-{i}"))
                .spawn(move || {
                    churn_thread(&heap, t, i, per_thread_live, per_thread_budget, start)
                        .map_err(|e| format!("churn thread {i}: allocation failed: {e}"))
                })
                .expect("spawn a churn thread")
        })
        .collect();
    let mut out = WorkResult::empty(threads);
    for h in handles {
        let r = h
            .join()
            .map_err(|_| "a churn thread panicked".to_string())??;
        out.absorb(r);
    }
    Ok(out)
}

fn churn_thread(
    heap: &Heap,
    t: Types,
    id: usize,
    live: usize,
    budget: u64,
    start: Instant,
) -> Result<WorkResult, AllocError> {
    let mut m = heap.attach();
    let cpu0 = thread_cpu();
    // Lists of 4..=28 cells (avg 16 x 24 B), plus the table.
    let slots = (live / (16 * 24 + 8)).max(16);
    let tv = alloc(&mut m, t.refs, slots)?;
    let table = m.root(tv);
    let mut rng = SplitMix(0xc4u64 + id as u64);
    let mut expect = vec![(0u64, 0u64); slots];
    let mut allocated = 8 * slots as u64;
    let mut base = 0u64;
    let mut fill = |m: &mut Mutator, rng: &mut SplitMix, s: usize, expect: &mut [(u64, u64)]| {
        let len = 4 + rng.below(25) as u64;
        let bytes = build_list(m, &t, base, len)?;
        let v = m.pop().expect("list");
        table.get(m).expect("table").set(s, v);
        expect[s] = (len, (base..base + len).fold(0u64, |a, x| a.wrapping_add(x)));
        base += len;
        Ok::<u64, AllocError>(bytes)
    };
    for s in 0..slots {
        allocated += fill(&mut m, &mut rng, s, &mut expect)?;
    }
    let mut units = Units::new(start);
    while allocated < budget {
        let s = rng.below(slots);
        allocated += fill(&mut m, &mut rng, s, &mut expect)?;
        // Short-lived garbage.
        allocated += build_list(&mut m, &t, 0, 8)?;
        m.pop();
        units.poll(&mut m);
    }
    let mut check = Ok(());
    for (s, &want) in expect.iter().enumerate() {
        if s % 1024 == 0 {
            m.safepoint();
        }
        let got = list_sum(&m, table.get(&m).expect("table").get(s));
        if got != want {
            check = Err(format!(
                "thread {id} slot {s}: list {got:?}, expected {want:?}"
            ));
            break;
        }
    }
    report_slow_allocs(&format!("{:?}", std::thread::current().name()));
    Ok(WorkResult::one_thread(cpu0, &units, allocated, check))
}

/// `tree-replace`: the long-lived tree, then two threads replacing its subtrees.
fn tree_replace(
    heap: &Heap,
    t: Types,
    live: usize,
    budget: u64,
    start: Instant,
) -> Result<WorkResult, String> {
    const THREADS: usize = 2;
    let err = |e: AllocError| format!("tree-replace: allocation failed: {e}");
    let cpu0 = thread_cpu();
    let long_depth = depth_for(live as u64);
    let (tree, long_nodes) = {
        let mut m = heap.attach();
        let n = bottom_up(&mut m, &t, long_depth).map_err(err)?;
        let v = m.pop().expect("long-lived tree");
        (GlobalRoot::new(heap, v), n)
    };
    let build_cpu = thread_cpu() - cpu0;
    let per_thread_budget = budget.saturating_sub(long_nodes * NODE_BYTES) / THREADS as u64;
    let every = replace_every();
    if every > 1 {
        eprintln!("tree-replace: one fresh subtree in {every} replaces one of the tree's");
    }
    let tree = std::sync::Arc::new(tree);
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let heap = heap.clone();
            let tree = tree.clone();
            std::thread::Builder::new()
                .name(format!("tree-replace-{i}"))
                .spawn(move || {
                    let work = (long_depth, per_thread_budget, every);
                    replace_thread(&heap, t, &tree, i, work, start)
                        .map_err(|e| format!("tree-replace thread {i}: allocation failed: {e}"))
                })
                .expect("spawn a tree-replace thread")
        })
        .collect();
    let mut out = WorkResult::empty(THREADS);
    out.mutator_cpu_s = build_cpu;
    out.allocated = long_nodes * NODE_BYTES;
    for h in handles {
        let r = h
            .join()
            .map_err(|_| "a tree-replace thread panicked".to_string())??;
        out.absorb(r);
    }
    let cpu1 = thread_cpu();
    let mut m = heap.attach();
    m.push(tree.get(&m));
    let got = count_nodes(&mut m, &t);
    if out.check.is_ok() {
        out.check = match got {
            Ok(c) if c == long_nodes => Ok(()),
            Ok(c) => Err(format!("long-lived tree: {c} nodes, built {long_nodes}")),
            Err(e) => Err(e),
        };
    }
    out.mutator_cpu_s += thread_cpu() - cpu1;
    Ok(out)
}

/// `tree-replace`'s replacement rate: one fresh subtree in this many replaces a subtree of
/// the tree, the others are dropped at once (`FAULTLINE_SUITE_REPLACE_EVERY`, default 1:
/// every one). Above 1, a cycle replaces that much less of the tree for the same allocation,
/// as in an embedding that replaces a few subtrees per cycle among short-lived garbage
/// (issue 15's 4 GiB run).
fn replace_every() -> u32 {
    std::env::var("FAULTLINE_SUITE_REPLACE_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &u32| n >= 1)
        .unwrap_or(1)
}

/// One `tree-replace` mutator: replaces random subtrees under the root's child `id` (each
/// thread its own half) until it has allocated `budget` bytes; `work` is (the tree's depth,
/// `budget`, one fresh subtree in how many is stored: [`replace_every`]).
fn replace_thread(
    heap: &Heap,
    t: Types,
    tree: &GlobalRoot,
    id: usize,
    (long_depth, budget, every): (u32, u64, u32),
    start: Instant,
) -> Result<WorkResult, AllocError> {
    let mut m = heap.attach();
    let cpu0 = thread_cpu();
    let mut rng = SplitMix(0x7ee0u64 + id as u64);
    let mut units = Units::new(start);
    let mut allocated = 0u64;
    let mut check = Ok(());
    let mut step = 0u32;
    while allocated < budget {
        // A subtree of depth d replaces the child of a node at depth long_depth - 1 - d.
        let d = [6, 8, 10][step as usize % 3].min(long_depth.saturating_sub(2));
        step = step.wrapping_add(1);
        if d == 0 {
            break;
        }
        let n = bottom_up(&mut m, &t, d)?;
        allocated += n * NODE_BYTES;
        // The walk: no allocation or safepoint until the store.
        let fresh = m.pop().expect("fresh subtree");
        if !step.is_multiple_of(every) {
            // Garbage at once (a lower replacement rate).
            units.poll(&mut m);
            continue;
        }
        let mut v = m.local(tree.get(&m)).expect("tree root").get(id % 2);
        for _ in 1..long_depth - 1 - d {
            v = m.local(v).expect("inner node").get(rng.below(2));
        }
        let parent = m.local(v).expect("parent node");
        let side = rng.below(2);
        let want = d as u64;
        if let Some(old) = m.local(parent.get(side)) {
            if old.word(2) != want {
                check = Err(format!(
                    "thread {id}: replaced a depth-{} subtree, expected depth {want}",
                    old.word(2)
                ));
            }
        }
        parent.set(side, fresh);
        units.poll(&mut m);
    }
    report_slow_allocs(&format!("{:?}", std::thread::current().name()));
    Ok(WorkResult::one_thread(cpu0, &units, allocated, check))
}

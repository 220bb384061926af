//! Pause-time harness: concurrent compaction against stop-the-world, on the same heap shapes,
//! in one run.
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/target-pause cargo bench -p faultline --bench pauses            # full
//! CARGO_TARGET_DIR=/tmp/target-pause cargo bench -p faultline --bench pauses -- --quick # quick
//! ```
//!
//! (`FAULTLINE_BENCH_QUICK=1` is the same as `--quick`.) Tables go to stdout and to
//! `target/pauses-report.md` (under the workspace root); progress goes to stderr. The full run
//! takes about 4 minutes on an idle 2-CPU machine, the quick one about 30 s. For diagnosis:
//! `FAULTLINE_PAUSES_SIZES_MIB=64,256` (live sizes of section 1), `FAULTLINE_PAUSES_MODES=stw,
//! copy/sigbus` (collector labels), `FAULTLINE_PAUSES_SECTIONS=pauses,floor,barrier` and
//! `FAULTLINE_PAUSES_SLOW_US=N` (print every mutator step slower than N µs).
//!
//! Sections:
//!
//! 1. **Pauses, phases, fault stalls, compaction throughput.** For each live size (64 MiB and
//!    1 GiB; quick: 4 and 16 MiB) and each collector (stop-the-world with 1 and 2 marking
//!    threads; concurrent x {copy, move, minor} x {sigbus, thread}) a fresh heap
//!    (`max_heap_bytes` = 2 x live) gets the same live structure: a root table of ~256
//!    entries, alternately a complete binary tree of 32-byte nodes and a list of 24-byte pairs
//!    built with one garbage pair after every cell (so the first cycle compacts holes away).
//!    Then several explicit cycles run. Around each cycle the mutator (the main thread) works:
//!    a *step* is either a random root-to-leaf walk down a tree swapping the children of about
//!    half the nodes on the path (two reference stores each), or a 16-cell walk along a list
//!    from a per-list cursor (a `Root`) followed by a rotation of the next two cells (three
//!    reference stores) or, within an allocation budget of live/16 bytes per cycle, the
//!    replacement of the next cell by a fresh copy. It polls `safepoint()` after every step.
//!    Before each cycle it works for a fixed idle window; in concurrent mode it keeps working
//!    from `collect()` (which returns after the initial-mark pause) until the cycle is
//!    recorded (an `on_cycle` hook), then calls `wait_for_cycle()`. Steps are attributed to
//!    the phase they started in: idle, concurrent marking (until `Heap::cycles()` moves, which
//!    happens in the remark+flip pause) or concurrent compaction (until the hook fires).
//!    After the last cycle the whole structure is walked and checked (node count and id sum
//!    per tree, cell count and value sum per list: the mutations preserve both). Besides the
//!    collector's own `CycleStats`, the mutator times its `collect()` calls and its safepoint
//!    polls: the longest poll of a concurrent cycle is the remark+flip pause as it saw it.
//! 2. **Physical floor.** A raw SIGBUS + `UFFDIO_COPY` round trip (a `VolatileArena` with
//!    SIGBUS delivery and a resolver registered with `register_region` that COPYs a prepared
//!    page; every fault timed on its own), the same through a handler thread
//!    (`FaultReader`), `UFFDIO_COPY` throughput in 1-, 16- and 64-page calls, one-page COPY
//!    and MOVE with and without a second thread of the process running (MOVE must flush the
//!    source page's TLB entry on every CPU running the process), `memcpy` bandwidth, and a
//!    scheduler-noise probe (how long a busy loop is kept off the CPU).
//! 3. **Barrier cost.** A store-only workload (`B[i] = A[j]` on pairs of 1000-element
//!    reference arrays; `A` holds every object, so no store ever drops the last reference to
//!    anything) measured as stores/s: in a stop-the-world heap (barrier never on), and in
//!    concurrent heaps with the SATB barrier, with the SATB logging switched off (the
//!    `debug_disable_barrier` test knob: a control that keeps the marker running but logs
//!    nothing, safe for this workload for the reason just given) and with `Barrier::WpAsync`
//!    (reported as unsupported if `Heap::new` refuses it, or as the barrier that actually ran
//!    if it falls back). The four heaps live side by side and take turns in interleaved
//!    rounds (an idle window, then collections back to back), so load from other jobs falls
//!    on all of them alike; each batch of stores is attributed to its phase.
//!
//! Invariants:
//! - one heap per collector configuration and size (`Heap::fault_stats` is cumulative per
//!   heap); section 1 drops each heap before building the next;
//! - a heap whose mutator stops polling (section 3 switching to another heap) has no cycle
//!   running: every round ends with `wait_for_cycle()`, so no pause waits on an idle mutator;
//! - no `Value` is held across a safepoint: everything that survives one is in a `Root` or on
//!   the value stack (the borrow checker enforces this for `Local`s);
//! - every cycle measured is an explicit one; cycles with another trigger are counted and
//!   reported, not mixed in;
//! - a watchdog aborts the run with a message naming the stage if nothing progresses for
//!   several minutes, so a collector hang shows up as a failure instead of a stuck job.

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use faultline::gc::FaultStats;
use faultline::heap::fault::reader::FaultReader;
use faultline::heap::fault::sigbus::{register_region, FaultOutcome};
use faultline::heap::uffd::UffdEvent;
use faultline::heap::{ArenaConfig, FaultDelivery, PAGE_SIZE};
use faultline::{
    AllocError, Barrier, CycleStats, FaultMode, GcMode, Heap, HeapConfig, Mutator, Percentiles,
    Root, Strategy, Trigger, TypeId, TypeInfo, Value, VolatileArena,
};

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Options, progress and the watchdog.

/// Run-time options.
struct Opts {
    quick: bool,
    /// Live sizes of section 1, bytes.
    sizes: Vec<usize>,
    /// Only these mode labels (all if empty).
    modes: Vec<String>,
    /// Sections to run ("pauses", "floor", "barrier").
    sections: Vec<String>,
}

impl Opts {
    fn parse() -> Opts {
        let env_quick =
            std::env::var("FAULTLINE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let quick = env_quick || std::env::args().any(|a| a == "--quick");
        let list = |name: &str| -> Vec<String> {
            std::env::var(name)
                .ok()
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut sizes: Vec<usize> = list("FAULTLINE_PAUSES_SIZES_MIB")
            .iter()
            .filter_map(|s| s.parse::<usize>().ok())
            .map(|m| m * MIB)
            .collect();
        if sizes.is_empty() {
            sizes = if quick {
                vec![4 * MIB, 16 * MIB]
            } else {
                vec![64 * MIB, 1024 * MIB]
            };
        }
        let mut sections = list("FAULTLINE_PAUSES_SECTIONS");
        if sections.is_empty() {
            sections = vec!["pauses".into(), "floor".into(), "barrier".into()];
        }
        Opts {
            quick,
            sizes,
            modes: list("FAULTLINE_PAUSES_MODES"),
            sections,
        }
    }
    fn section(&self, s: &str) -> bool {
        self.sections.iter().any(|x| x == s)
    }
    /// Explicit cycles measured per heap.
    fn cycles(&self, live: usize) -> usize {
        if live >= 512 * MIB {
            3
        } else {
            5
        }
    }
    /// Mutator work before each cycle.
    fn idle_window(&self) -> Duration {
        Duration::from_millis(if self.quick { 60 } else { 200 })
    }
}

static PROGRESS: AtomicU64 = AtomicU64::new(0);
static STAGE: Mutex<String> = Mutex::new(String::new());
static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn tick() {
    PROGRESS.fetch_add(1, Ordering::Relaxed);
}

/// Name the current stage (for the watchdog) and print it.
fn stage(s: String) {
    let t = START.get().map_or(0.0, |t| t.elapsed().as_secs_f64());
    eprintln!("[pauses {t:7.1}s] {s}");
    *STAGE.lock().unwrap_or_else(PoisonError::into_inner) = s;
    tick();
}

fn spawn_watchdog(limit: Duration) {
    std::thread::Builder::new()
        .name("pauses-watchdog".into())
        .spawn(move || {
            let mut last = PROGRESS.load(Ordering::Relaxed);
            let mut since = Instant::now();
            loop {
                std::thread::sleep(Duration::from_secs(2));
                let now = PROGRESS.load(Ordering::Relaxed);
                if now != last {
                    last = now;
                    since = Instant::now();
                } else if since.elapsed() > limit {
                    let s = STAGE.lock().unwrap_or_else(PoisonError::into_inner).clone();
                    eprintln!(
                        "pauses watchdog: no progress for {:?} during \"{s}\": the collector (or the benchmark) is stuck; aborting",
                        limit
                    );
                    std::process::abort();
                }
            }
        })
        .expect("spawn the watchdog thread");
}

// ---------------------------------------------------------------------------------------------
// Small helpers: random numbers, histograms, formatting.

/// SplitMix64: a small, fixed-seed generator.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
}

/// A log-linear histogram of nanoseconds (4 buckets per power of two: a percentile is
/// reported as its bucket's lower bound, within 25 % below the true value).
struct LogHist {
    buckets: Vec<u64>,
    max: u64,
    n: u64,
}

impl Default for LogHist {
    fn default() -> Self {
        LogHist {
            buckets: vec![0; 256],
            max: 0,
            n: 0,
        }
    }
}

impl LogHist {
    fn bucket(ns: u64) -> usize {
        if ns < 4 {
            return ns as usize;
        }
        let lz = 63 - ns.leading_zeros() as usize;
        ((lz * 4) + ((ns >> (lz - 2)) & 3) as usize).min(255)
    }
    fn lower(b: usize) -> u64 {
        if b < 4 {
            return b as u64;
        }
        (1u64 << (b / 4)) | (((b % 4) as u64) << (b / 4 - 2))
    }
    fn record(&mut self, d: Duration) {
        let ns = d.as_nanos().min(u64::MAX as u128) as u64;
        self.buckets[Self::bucket(ns)] += 1;
        self.max = self.max.max(ns);
        self.n += 1;
    }
    fn quantile(&self, q: f64) -> Duration {
        if self.n == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut acc = 0;
        for (b, &c) in self.buckets.iter().enumerate() {
            acc += c;
            if acc >= rank {
                return Duration::from_nanos(Self::lower(b));
            }
        }
        Duration::from_nanos(self.max)
    }
}

/// Diagnostics: with `FAULTLINE_PAUSES_SLOW_US=N`, every mutator step (or safepoint poll)
/// slower than N µs is printed to stderr with its phase, kind and time since the run started.
struct SlowLog {
    threshold: Option<Duration>,
    label: &'static str,
    live: usize,
}

impl SlowLog {
    fn new(label: &'static str, live: usize) -> SlowLog {
        SlowLog {
            threshold: std::env::var("FAULTLINE_PAUSES_SLOW_US")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_micros),
            label,
            live,
        }
    }
    fn check(&self, step: Duration, poll: Duration, kind: &str, phase: &str, cycle: usize) {
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
struct PhaseAcc {
    steps: u64,
    /// Wall time of the steps and the safepoint polls after them.
    wall: Duration,
    /// Step latencies (excluding the explicit safepoint poll; an allocation inside a step may
    /// still park in a pause).
    hist: LogHist,
}

impl PhaseAcc {
    fn rate(&self) -> f64 {
        if self.wall.is_zero() {
            0.0
        } else {
            self.steps as f64 / self.wall.as_secs_f64()
        }
    }
}

fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1e3;
    if v == 0.0 {
        "0".into()
    } else if v < 1.0 {
        format!("{v:.3}")
    } else if v < 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

fn us(d: Duration) -> String {
    let v = d.as_secs_f64() * 1e6;
    if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn mib(b: usize) -> f64 {
    b as f64 / MIB as f64
}

/// Thousands separators for big counts.
fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.1} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.0} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn loadavg() -> String {
    read_trim("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

/// Markdown output: printed as it is produced and kept for the report file.
struct Report {
    text: String,
    path: std::path::PathBuf,
}

impl Report {
    fn line(&mut self, s: &str) {
        println!("{s}");
        self.text.push_str(s);
        self.text.push('\n');
    }
    fn save(&self) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = std::fs::write(&self.path, &self.text) {
            eprintln!("pauses: writing {}: {e}", self.path.display());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Section 1: the live structure and the mutator.

/// The mock runtime's types.
#[derive(Clone, Copy)]
struct Types {
    /// 24 bytes: header, car, cdr (both reference slots).
    pair: TypeId,
    /// 32 bytes: header, left, right (references), id (data).
    node: TypeId,
    /// Reference array.
    table: TypeId,
}

fn register(heap: &Heap) -> Types {
    Types {
        pair: heap
            .register_type(TypeInfo::fixed("pair", 16, &[0, 8]))
            .expect("pair type"),
        node: heap
            .register_type(TypeInfo::fixed("node", 24, &[0, 8]))
            .expect("node type"),
        table: heap
            .register_type(TypeInfo::ref_array("table"))
            .expect("table type"),
    }
}

fn fix(n: u64) -> Value {
    Value::immediate(((n as usize) << 3) | 1).expect("a tagged fixnum")
}

fn unfix(v: Value) -> u64 {
    (v.bits() >> 3) as u64
}

const NODE_BYTES: usize = 32;
const PAIR_BYTES: usize = 24;
/// List cells a list step walks before it mutates.
const LIST_WALK: usize = 16;

/// The shape for a live size: `entries` root-table slots, alternately a tree of `depth` and
/// a list of `list_len` cells of about the same size.
#[derive(Clone, Copy)]
struct Shape {
    entries: usize,
    depth: u32,
    list_len: usize,
}

impl Shape {
    fn for_live(live: usize) -> Shape {
        let mut depth = 2;
        while NODE_BYTES * ((1usize << depth) - 1) * 512 < live {
            depth += 1;
        }
        let tree_bytes = NODE_BYTES * ((1usize << depth) - 1);
        let entries = (live / tree_bytes).clamp(2, 1000) & !1;
        Shape {
            entries,
            depth,
            list_len: tree_bytes / PAIR_BYTES,
        }
    }
    fn tree_nodes(&self) -> u64 {
        (1u64 << self.depth) - 1
    }
    fn live_bytes(&self) -> usize {
        let half = self.entries / 2;
        half * self.tree_nodes() as usize * NODE_BYTES
            + half * self.list_len * PAIR_BYTES
            + 8 * (self.entries + 1)
    }
    fn objects(&self) -> u64 {
        let half = (self.entries / 2) as u64;
        half * self.tree_nodes() + half * self.list_len as u64 + 1
    }
}

/// The structure as the mutator sees it: everything reachable from `table`.
struct World {
    t: Types,
    shape: Shape,
    table: Root,
    /// One per list (entry `2 i + 1`): the cell the next list step starts from.
    cursors: Vec<Root>,
    /// Per entry: (objects, sum of ids or values) at build time.
    expect: Vec<(u64, u64)>,
}

fn build_tree(
    m: &mut Mutator,
    t: &Types,
    d: u32,
    next_id: &mut u64,
    sum: &mut u64,
) -> Result<(), AllocError> {
    if d == 0 {
        m.push(Value::NULL);
        return Ok(());
    }
    build_tree(m, t, d - 1, next_id, sum)?;
    build_tree(m, t, d - 1, next_id, sum)?;
    let n = m.alloc(t.node, 0)?;
    let right = m.pop().expect("right subtree");
    let left = m.pop().expect("left subtree");
    let l = m.local(n).expect("fresh node");
    l.set(0, left);
    l.set(1, right);
    *next_id += 1;
    l.set_word(2, *next_id);
    *sum = sum.wrapping_add(*next_id);
    m.push(n);
    Ok(())
}

/// A list of `len` cells holding `0..len` (head first), one garbage pair after every cell.
fn build_list(m: &mut Mutator, t: &Types, len: usize, sum: &mut u64) -> Result<(), AllocError> {
    m.push(Value::NULL);
    for i in (0..len as u64).rev() {
        let p = m.alloc(t.pair, 0)?;
        let tail = m.pop().expect("list tail");
        let l = m.local(p).expect("fresh pair");
        l.set(0, fix(i));
        l.set(1, tail);
        *sum = sum.wrapping_add(i);
        m.push(p);
        m.alloc(t.pair, 0)?; // garbage
    }
    Ok(())
}

fn build_world(m: &mut Mutator, t: Types, shape: Shape) -> Result<World, AllocError> {
    let tab = m.alloc(t.table, shape.entries)?;
    let table = m.root(tab);
    let mut expect = Vec::with_capacity(shape.entries);
    let mut next_id = 0u64;
    for e in 0..shape.entries {
        let mut sum = 0u64;
        let n = if e % 2 == 0 {
            build_tree(m, &t, shape.depth, &mut next_id, &mut sum)?;
            shape.tree_nodes()
        } else {
            build_list(m, &t, shape.list_len, &mut sum)?;
            shape.list_len as u64
        };
        let v = m.pop().expect("built entry");
        table.get(m).expect("table").set(e, v);
        expect.push((n, sum));
        tick();
    }
    let cursors = (0..shape.entries / 2)
        .map(|i| {
            let head = table.get(m).expect("table").get(2 * i + 1);
            m.root(head)
        })
        .collect();
    Ok(World {
        t,
        shape,
        table,
        cursors,
        expect,
    })
}

/// One mutator step (see the module documentation). `budget`: bytes it may still allocate.
/// Returns what kind of step it was (for the slow-step log).
fn step(m: &mut Mutator, w: &World, rng: &mut SplitMix, budget: &mut usize) -> &'static str {
    let e = rng.below(w.shape.entries);
    if e % 2 == 0 {
        let bits = rng.next();
        let tab = w.table.get(m).expect("table");
        let mut v = tab.get(e);
        let mut level = 0;
        while let Some(n) = m.local(v) {
            let (l, r) = (n.get(0), n.get(1));
            black_box(n.word(2));
            if bits >> (2 * level) & 1 == 1 {
                n.set(0, r);
                n.set(1, l);
            }
            v = if bits >> (2 * level + 1) & 1 == 1 {
                l
            } else {
                r
            };
            level = (level + 1) % 32;
        }
        return "tree";
    }
    let li = e / 2;
    let fresh = if *budget >= PAIR_BYTES && rng.next() & 1 == 1 {
        *budget -= PAIR_BYTES;
        Some(m.alloc(w.t.pair, 0).expect("allocation within the budget"))
    } else {
        None
    };
    // No safepoint from here on: Locals and `fresh` stay valid.
    let cursor = &w.cursors[li];
    let mut c = cursor.get(m).expect("list cursor");
    for _ in 0..LIST_WALK {
        match m.local(c.get(1)) {
            Some(n) => c = n,
            None => {
                c = m
                    .local(w.table.get(m).expect("table").get(e))
                    .expect("list head")
            }
        }
    }
    if let Some(b) = m.local(c.get(1)) {
        match fresh.and_then(|p| m.local(p)) {
            Some(p) => {
                // Replace b by a fresh copy of it.
                p.set(0, b.get(0));
                p.set(1, b.get(1));
                c.set(1, p.value());
            }
            None => {
                if let Some(d) = m.local(b.get(1)) {
                    // c -> b -> d -> x  becomes  c -> d -> b -> x.
                    c.set(1, d.value());
                    b.set(1, d.get(1));
                    d.set(1, b.value());
                }
            }
        }
    }
    cursor.set(m, c.value());
    if fresh.is_some() {
        "list+alloc"
    } else {
        "list"
    }
}

/// Walk everything and compare with the build-time counts and sums.
fn check_world(m: &Mutator, w: &World) -> Result<(), String> {
    let tab = w.table.get(m).ok_or("table root is null")?;
    let mut stack = Vec::new();
    for e in 0..w.shape.entries {
        let (mut n, mut sum) = (0u64, 0u64);
        if e % 2 == 0 {
            stack.push(tab.get(e));
            while let Some(v) = stack.pop() {
                if let Some(node) = m.local(v) {
                    if node.type_id() != w.t.node {
                        return Err(format!("tree {e}: a non-node object"));
                    }
                    n += 1;
                    sum = sum.wrapping_add(node.word(2));
                    stack.push(node.get(0));
                    stack.push(node.get(1));
                }
            }
        } else {
            let mut v = tab.get(e);
            while let Some(p) = m.local(v) {
                if p.type_id() != w.t.pair {
                    return Err(format!("list {e}: a non-pair cell"));
                }
                n += 1;
                sum = sum.wrapping_add(unfix(p.get(0)));
                v = p.get(1);
            }
        }
        if (n, sum) != w.expect[e] {
            return Err(format!(
                "entry {e}: {n} objects with sum {sum}, expected {:?}",
                w.expect[e]
            ));
        }
    }
    Ok(())
}

/// One collector configuration of section 1.
#[derive(Clone, Copy)]
struct ModeSpec {
    label: &'static str,
    mode: GcMode,
    strategy: Strategy,
    faults: FaultMode,
    gc_threads: usize,
}

const MODES: [ModeSpec; 8] = {
    const fn c(label: &'static str, strategy: Strategy, faults: FaultMode) -> ModeSpec {
        ModeSpec {
            label,
            mode: GcMode::Concurrent,
            strategy,
            faults,
            gc_threads: 1,
        }
    }
    [
        ModeSpec {
            label: "stw",
            mode: GcMode::StopTheWorld,
            strategy: Strategy::Auto,
            faults: FaultMode::Auto,
            gc_threads: 1,
        },
        ModeSpec {
            label: "stw-2t",
            mode: GcMode::StopTheWorld,
            strategy: Strategy::Auto,
            faults: FaultMode::Auto,
            gc_threads: 2,
        },
        c("copy/sigbus", Strategy::Copy, FaultMode::Sigbus),
        c("copy/thread", Strategy::Copy, FaultMode::Thread),
        c("move/sigbus", Strategy::Move, FaultMode::Sigbus),
        c("move/thread", Strategy::Move, FaultMode::Thread),
        c("minor/sigbus", Strategy::Minor, FaultMode::Sigbus),
        c("minor/thread", Strategy::Minor, FaultMode::Thread),
    ]
};

/// What one configuration measured.
struct ModeData {
    info: String,
    cycles: Vec<CycleStats>,
    other_cycles: Vec<String>,
    faults: FaultStats,
    idle: PhaseAcc,
    mark: PhaseAcc,
    compact: PhaseAcc,
    build: Duration,
    check: Result<(), String>,
    arena: faultline::heap::ArenaStats,
    /// Per cycle: how long the mutator's `collect()` call took (stw: the whole pause as the
    /// mutator saw it; concurrent: the initial-mark pause and starting the GC thread).
    collect_calls: Vec<Duration>,
    /// Per concurrent cycle: the mutator's longest safepoint poll (it parked there for the
    /// remark+flip pause), i.e. that pause as the mutator saw it, minus the time it took to
    /// reach the safepoint.
    parks: Vec<Duration>,
}

struct ModeRun {
    spec: ModeSpec,
    live: usize,
    shape: Shape,
    outcome: Result<ModeData, String>,
}

fn run_mode(opts: &Opts, spec: ModeSpec, live: usize) -> ModeRun {
    let shape = Shape::for_live(live);
    let outcome = run_mode_inner(opts, spec, live, shape);
    ModeRun {
        spec,
        live,
        shape,
        outcome,
    }
}

fn run_mode_inner(
    opts: &Opts,
    spec: ModeSpec,
    live: usize,
    shape: Shape,
) -> Result<ModeData, String> {
    let half = (2 * shape.live_bytes()).max(4 * MIB);
    let recorded = Arc::new(AtomicU64::new(0));
    let hook_count = recorded.clone();
    let cfg = HeapConfig {
        mode: spec.mode,
        strategy: spec.strategy,
        faults: spec.faults,
        gc_threads: spec.gc_threads,
        // No occupancy-triggered cycles: only the explicit ones are measured.
        min_trigger_bytes: half,
        on_cycle: Some(Arc::new(move |_: &CycleStats| {
            hook_count.fetch_add(1, Ordering::SeqCst);
        })),
        ..HeapConfig::with_heap_size(half)
    };
    let heap = Heap::new(cfg).map_err(|e| format!("Heap::new failed: {e}"))?;
    let mi = heap.mode_info();
    if mi.mode != spec.mode {
        return Err(format!(
            "not available: fell back to {:?} ({})",
            mi.mode,
            mi.fallback_reason.unwrap_or_default()
        ));
    }
    let info = format!(
        "{:?} strategy={} faults={} barrier={} uffd={}{}",
        mi.mode,
        mi.strategy.unwrap_or("-"),
        mi.faults.unwrap_or("-"),
        mi.barrier.unwrap_or("-"),
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
    if heap.cycles() != 0 {
        return Err(format!("{} cycle(s) ran while building", heap.cycles()));
    }
    let concurrent = spec.mode == GcMode::Concurrent;
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
        let flips_before = heap.cycles();
        let tc = Instant::now();
        m.collect().map_err(|e| format!("collect: {e}"))?;
        collect_calls.push(tc.elapsed());
        let mut park = Duration::ZERO;
        if concurrent {
            let mut t0 = Instant::now();
            while recorded.load(Ordering::SeqCst) == recorded_before {
                let (acc, phase) = if heap.cycles() == flips_before {
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
            m.wait_for_cycle();
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

// ---------------------------------------------------------------------------------------------
// Section 1: tables.

/// p50 and max of the pauses of `kind` over the cycles.
fn pause_of(d: &ModeData, kind: &str) -> Option<Percentiles> {
    let xs: Vec<Duration> = d
        .cycles
        .iter()
        .flat_map(|c| c.pauses.iter())
        .filter(|p| p.kind == kind)
        .map(|p| p.duration)
        .collect();
    (!xs.is_empty()).then(|| Percentiles::of(xs))
}

fn p50_max(p: Option<Percentiles>) -> String {
    p.map_or("-".into(), |p| format!("{} / {}", ms(p.p50), ms(p.max)))
}

fn pct<F: Fn(&CycleStats) -> Duration>(d: &ModeData, f: F) -> Percentiles {
    Percentiles::of(d.cycles.iter().map(f).collect())
}

fn max_pause(d: &ModeData) -> Duration {
    d.cycles
        .iter()
        .map(|c| c.pause_max())
        .max()
        .unwrap_or_default()
}

/// Bytes compacted per second of compaction time (median over cycles).
fn compaction_rate(d: &ModeData) -> f64 {
    let mut xs: Vec<f64> = d
        .cycles
        .iter()
        .filter(|c| !c.compact.is_zero())
        .map(|c| mib(c.pages_filled * PAGE_SIZE) / c.compact.as_secs_f64())
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

fn pause_tables(rep: &mut Report, runs: &[ModeRun]) {
    rep.line("### Pauses (ms, p50 / max over the cycles)");
    rep.line("");
    rep.line("`stw`: the whole cycle in one pause. Concurrent: `initial-mark` (roots) and `remark+flip` (SATB drain, planning, root update, arming the compaction). Every pause includes its time to safepoint. `plan` is the planning part of the pause (p50); the split of the remark+flip pause (p50 of each part) is: time to safepoint, remark (SATB drain, active-buffer walks, in wp_async mode the root and dirty-page rescans), then plan+flip (finishing the plan made before the pause, root and large-object updates, arming the compaction); `planned ahead` is the concurrent planning done before the pause (p50); `ttsp` the longest time to safepoint. All of these are the collector's own figures (`CycleStats`). The last two columns are the mutator's view, timed by the benchmark: how long its `collect()` call blocked (stw: the whole pause; concurrent: the initial-mark pause plus starting the GC thread), and its longest safepoint poll per concurrent cycle (where it parked for the remark+flip pause: that pause from the mutator's side, minus the time the mutator took to reach the poll).");
    rep.line("");
    rep.line("| live MiB | collector | cycles | stw | initial-mark | remark+flip | remark+flip split: ttsp / remark / plan+flip | plan in pause | planned ahead | ttsp max | longest pause | other pause kinds | mutator: collect() call | mutator: longest park |");
    rep.line("|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|");
    for r in runs {
        let d = match &r.outcome {
            Ok(d) => d,
            Err(e) => {
                rep.line(&format!(
                    "| {} | {} | - | {e} | | | | | | | | | | |",
                    r.live / MIB,
                    r.spec.label
                ));
                continue;
            }
        };
        let mut kinds: Vec<&str> = d
            .cycles
            .iter()
            .flat_map(|c| c.pauses.iter().map(|p| p.kind))
            .filter(|k| !["stw", "initial-mark", "remark+flip"].contains(k))
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        let others: Vec<String> = kinds
            .iter()
            .map(|k| format!("{k}: {}", p50_max(pause_of(d, k))))
            .collect();
        let ttsp = d
            .cycles
            .iter()
            .map(|c| c.time_to_safepoint)
            .max()
            .unwrap_or_default();
        let of = |xs: &[Duration]| (!xs.is_empty()).then(|| Percentiles::of(xs.to_vec()));
        let rf = |c: &CycleStats| {
            c.pauses
                .iter()
                .find(|p| p.kind == "remark+flip")
                .map(|p| p.duration)
        };
        let split = if d.cycles.iter().any(|c| rf(c).is_some()) {
            let conc: Vec<&CycleStats> = d.cycles.iter().filter(|c| rf(c).is_some()).collect();
            let p50 = |f: &dyn Fn(&CycleStats) -> Duration| {
                ms(Percentiles::of(conc.iter().map(|c| f(c)).collect()).p50)
            };
            format!(
                "{} / {} / {}",
                p50(&|c| c.time_to_safepoint.min(c.remark)),
                p50(&|c| c.remark.saturating_sub(c.time_to_safepoint)),
                p50(&|c| rf(c).unwrap_or_default().saturating_sub(c.remark)),
            )
        } else {
            "-".to_string()
        };
        rep.line(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.live / MIB,
            r.spec.label,
            d.cycles.len(),
            p50_max(pause_of(d, "stw")),
            p50_max(pause_of(d, "initial-mark")),
            p50_max(pause_of(d, "remark+flip")),
            split,
            ms(pct(d, |c| c.plan).p50),
            ms(pct(d, |c| c.plan_ahead).p50),
            ms(ttsp),
            ms(max_pause(d)),
            others.join("; "),
            p50_max(of(&d.collect_calls)),
            p50_max(of(&d.parks)),
        ));
    }
    rep.line("");

    rep.line("### Every cycle");
    rep.line("");
    rep.line("Per cycle: moving-space MiB before the cycle, then its pauses in ms as the collector recorded them (`im` initial-mark, `rf` remark+flip, `stw`), and in brackets what the mutator saw (stw: its `collect()` call; concurrent: its longest park).");
    rep.line("");
    rep.line("| live MiB | collector | cycles |");
    rep.line("|---:|---|---|");
    for r in runs {
        let Ok(d) = &r.outcome else { continue };
        let cells: Vec<String> = d
            .cycles
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let p: Vec<String> = c
                    .pauses
                    .iter()
                    .map(|p| {
                        let k = match p.kind {
                            "initial-mark" => "im",
                            "remark+flip" => "rf",
                            k => k,
                        };
                        format!("{k} {}", ms(p.duration))
                    })
                    .collect();
                let seen = if r.spec.mode == GcMode::Concurrent {
                    d.parks.get(i)
                } else {
                    d.collect_calls.get(i)
                };
                format!(
                    "{:.0} MiB: {} [{}]",
                    mib(c.moving_before),
                    p.join(" + "),
                    seen.map_or("-".into(), |&s| ms(s))
                )
            })
            .collect();
        rep.line(&format!(
            "| {} | {} | {} |",
            r.live / MIB,
            r.spec.label,
            cells.join("; ")
        ));
    }
    rep.line("");

    rep.line("### Concurrent phases and compaction throughput (p50 over the cycles)");
    rep.line("");
    rep.line("`mark`: concurrent marking (stw: marking inside the pause). `compaction`: from the flip to the last page mapped, while the mutator runs (stw: the compaction part of the pause). MiB/s = destination pages x 4 KiB / compaction time. Pages: destination pages per cycle, filled by mutator faults vs by the GC worker; move strategy: pages moved in place / staged / copied. mmap-family and REGISTER+UNREGISTER calls: the maximum over the cycles (must be 0).");
    rep.line("");
    rep.line("| live MiB | collector | mark ms | compaction ms | compaction MiB/s | pages/cycle | by faults | by worker | in place / staged / copied | mmap-family | register | VMAs |");
    rep.line("|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|");
    for r in runs {
        let Ok(d) = &r.outcome else { continue };
        let n = d.cycles.len().max(1) as u64;
        let pages: u64 = d.cycles.iter().map(|c| c.pages_filled as u64).sum::<u64>() / n;
        let by_fault: u64 = d.cycles.iter().map(|c| c.pages_by_fault).sum::<u64>() / n;
        let concurrent = r.spec.mode == GcMode::Concurrent;
        let sum = |f: fn(&CycleStats) -> u64| d.cycles.iter().map(f).sum::<u64>() / n;
        let placement = if r.spec.strategy == Strategy::Move {
            format!(
                "{} / {} / {}",
                count(sum(|c| c.pages_in_place)),
                count(sum(|c| c.pages_staged)),
                count(sum(|c| c.pages_copied))
            )
        } else {
            "-".into()
        };
        let mmap = d.cycles.iter().map(|c| c.mmap_family()).max().unwrap_or(0);
        let reg = d
            .cycles
            .iter()
            .map(|c| c.registrations())
            .max()
            .unwrap_or(0);
        let vmas = d
            .cycles
            .last()
            .map_or("-".into(), |c| format!("{} -> {}", c.vmas.0, c.vmas.1));
        rep.line(&format!(
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            r.live / MIB,
            r.spec.label,
            ms(pct(d, |c| c.mark).p50),
            ms(pct(d, |c| c.compact).p50),
            compaction_rate(d),
            count(pages),
            if concurrent {
                count(by_fault)
            } else {
                "-".into()
            },
            if concurrent {
                count(pages.saturating_sub(by_fault))
            } else {
                "-".into()
            },
            placement,
            mmap,
            reg,
            vmas
        ));
    }
    rep.line("");

    rep.line("### Mutator fault stalls and mutator progress");
    rep.line("");
    rep.line("Fault stalls: `Heap::fault_stats()` over all cycles of the heap (time inside the fault resolver; with handler-thread delivery that is the handler's time, not the mutator's whole wait). Steps/s: mutator steps per second of wall time in each phase (idle = no cycle running). Step p99 / max: latency of one step as the mutator saw it (includes fault stalls, and a pause if an allocation in the step parked).");
    rep.line("");
    rep.line("| live MiB | collector | faults | stall p50 µs | p99 µs | max µs | steps/s idle | marking | compacting | step p99 idle µs | step p99 / max marking µs | step p99 / max compacting µs |");
    rep.line("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        let Ok(d) = &r.outcome else { continue };
        let concurrent = r.spec.mode == GcMode::Concurrent;
        let pm = |a: &PhaseAcc| {
            if a.steps == 0 {
                "-".to_string()
            } else {
                format!(
                    "{} / {}",
                    us(a.hist.quantile(0.99)),
                    us(Duration::from_nanos(a.hist.max))
                )
            }
        };
        rep.line(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.live / MIB,
            r.spec.label,
            count(d.faults.count),
            us(d.faults.p50),
            us(d.faults.p99),
            us(d.faults.max),
            rate(d.idle.rate()),
            if concurrent {
                rate(d.mark.rate())
            } else {
                "-".into()
            },
            if concurrent {
                rate(d.compact.rate())
            } else {
                "-".into()
            },
            us(d.idle.hist.quantile(0.99)),
            pm(&d.mark),
            pm(&d.compact),
        ));
    }
    rep.line("");

    rep.line("### Per heap: build, check, arena accounting");
    rep.line("");
    rep.line("| live MiB | collector | what ran | shape | objects | measured live MiB | build s | check | arena REGISTER total | mmap-family since creation | other cycles |");
    rep.line("|---:|---|---|---|---:|---:|---:|---|---:|---:|---|");
    for r in runs {
        let Ok(d) = &r.outcome else { continue };
        let live_measured = d
            .cycles
            .last()
            .map_or(0, |c| c.moving_after + c.large_after);
        rep.line(&format!(
            "| {} | {} | {} | {} trees (depth {}) + {} lists ({} cells) | {} | {:.1} | {:.2} | {} | {} | {} | {} |",
            r.live / MIB,
            r.spec.label,
            d.info,
            r.shape.entries / 2,
            r.shape.depth,
            r.shape.entries / 2,
            r.shape.list_len,
            count(r.shape.objects()),
            mib(live_measured),
            d.build.as_secs_f64(),
            match &d.check {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("**FAILED: {e}**"),
            },
            d.arena.registers,
            d.arena.mmap_family_since_creation,
            if d.other_cycles.is_empty() {
                "none".into()
            } else {
                d.other_cycles.join(", ")
            }
        ));
    }
    rep.line("");
}

fn summary_table(rep: &mut Report, runs: &[ModeRun], sizes: &[usize]) {
    rep.line("### Summary: concurrent pauses against stop-the-world");
    rep.line("");
    rep.line("| live MiB | stw pause p50 ms (1 / 2 marking threads) | concurrent longest pause ms: best (collector) | worst (collector) | stw p50 (1 thread) / worst concurrent longest | worst concurrent park seen by the mutator ms (collector) | stw p50 / median of the concurrent remark+flip p50s |");
    rep.line("|---:|---|---|---|---:|---|---:|");
    for &size in sizes {
        let at: Vec<(&ModeRun, &ModeData)> = runs
            .iter()
            .filter(|r| r.live == size)
            .filter_map(|r| r.outcome.as_ref().ok().map(|d| (r, d)))
            .collect();
        let stw = |label: &str| {
            at.iter()
                .find(|(r, _)| r.spec.label == label)
                .and_then(|(_, d)| pause_of(d, "stw"))
                .map(|p| p.p50)
        };
        let conc: Vec<(Duration, &str)> = at
            .iter()
            .filter(|(r, _)| r.spec.mode == GcMode::Concurrent)
            .map(|(r, d)| (max_pause(d), r.spec.label))
            .collect();
        let best = conc.iter().min();
        let worst = conc.iter().max();
        let worst_park = at
            .iter()
            .filter(|(r, _)| r.spec.mode == GcMode::Concurrent)
            .filter_map(|(r, d)| d.parks.iter().max().map(|&p| (p, r.spec.label)))
            .max();
        let s1 = stw("stw");
        let mut rf: Vec<Duration> = at
            .iter()
            .filter_map(|(_, d)| pause_of(d, "remark+flip").map(|p| p.p50))
            .collect();
        rf.sort_unstable();
        let typical = match (s1, rf.get(rf.len() / 2)) {
            (Some(s), Some(r)) if !r.is_zero() => {
                format!("{:.0}x", s.as_secs_f64() / r.as_secs_f64())
            }
            _ => "-".into(),
        };
        rep.line(&format!(
            "| {} | {} / {} | {} | {} | {} | {} | {typical} |",
            size / MIB,
            s1.map_or("-".into(), ms),
            stw("stw-2t").map_or("-".into(), ms),
            best.map_or("-".into(), |(d, l)| format!("{} ({l})", ms(*d))),
            worst.map_or("-".into(), |(d, l)| format!("{} ({l})", ms(*d))),
            match (s1, worst) {
                (Some(s), Some((w, _))) if !w.is_zero() => {
                    format!("{:.0}x", s.as_secs_f64() / w.as_secs_f64())
                }
                _ => "-".into(),
            },
            worst_park.map_or("-".into(), |(d, l)| format!("{} ({l})", ms(d)))
        ));
    }
    rep.line("");
    if sizes.len() >= 2 {
        let (lo, hi) = (sizes[0], sizes[sizes.len() - 1]);
        rep.line(&format!(
            "Growth of each pause from {} MiB to {} MiB of live data ({}x the live data): p50 at each size and the ratio.",
            lo / MIB,
            hi / MIB,
            hi / lo
        ));
        rep.line("");
        rep.line("| collector | pause kind | p50 small | p50 large | ratio | of which plan: small / large |");
        rep.line("|---|---|---:|---:|---:|---|");
        for spec in MODES {
            let get = |size: usize| {
                runs.iter()
                    .find(|r| r.live == size && r.spec.label == spec.label)
                    .and_then(|r| r.outcome.as_ref().ok())
            };
            let (Some(a), Some(b)) = (get(lo), get(hi)) else {
                continue;
            };
            let kinds: &[&str] = if spec.mode == GcMode::Concurrent {
                &["initial-mark", "remark+flip"]
            } else {
                &["stw"]
            };
            for &k in kinds {
                let (Some(pa), Some(pb)) = (pause_of(a, k), pause_of(b, k)) else {
                    continue;
                };
                let plan = if k == "initial-mark" {
                    "-".to_string()
                } else {
                    format!(
                        "{} / {}",
                        ms(pct(a, |c| c.plan).p50),
                        ms(pct(b, |c| c.plan).p50)
                    )
                };
                rep.line(&format!(
                    "| {} | {k} | {} | {} | {:.1}x | {plan} |",
                    spec.label,
                    ms(pa.p50),
                    ms(pb.p50),
                    pb.p50.as_secs_f64() / pa.p50.as_secs_f64().max(1e-9)
                ));
            }
        }
        rep.line("");
    }
}

// ---------------------------------------------------------------------------------------------
// Section 2: the physical floor.

/// One page-aligned page.
#[repr(C, align(4096))]
struct PageBuf([u8; PAGE_SIZE]);

const PATTERN: u8 = 0xA5;
/// Pages per round of the round-trip measurement.
const ROUND_PAGES: usize = 512;

/// What the SIGBUS resolver needs; lives (boxed) until the region guard is dropped.
struct SigbusCtx {
    arena: VolatileArena,
    page: Box<PageBuf>,
}

/// Resolve the faulting page by COPY of the prepared page. Async-signal-safe: one ioctl and
/// atomic counters; nothing allocated.
///
/// # Safety
/// `ctx` points to a live [`SigbusCtx`] (it does while the region guard lives).
unsafe fn resolve_by_copy(ctx: *const (), addr: usize) -> FaultOutcome {
    // SAFETY: the caller's contract; the context is only read.
    let ctx = unsafe { &*ctx.cast::<SigbusCtx>() };
    if !ctx.arena.contains(addr) {
        return FaultOutcome::NotMine;
    }
    let offset = (addr - ctx.arena.base()) & !(PAGE_SIZE - 1);
    // SAFETY: `page` is one live, readable page.
    match unsafe {
        ctx.arena
            .resolve_copy(offset, ctx.page.0.as_ptr(), PAGE_SIZE)
    } {
        Ok(_) => FaultOutcome::Resolved,
        // Chaining crashes the process with the default SIGBUS: loud, not a hang.
        Err(_) => FaultOutcome::NotMine,
    }
}

fn read_at(addr: usize) -> u8 {
    // SAFETY: callers pass an address inside a live arena whose absent pages are resolved (by
    // the SIGBUS resolver or the handler thread) before the read completes.
    unsafe { core::ptr::read_volatile(addr as *const u8) }
}

/// Time `n` reads of absent pages of `arena` one by one (after one untimed round); ns.
fn fault_latencies(arena: &VolatileArena, n: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    let mut warm = true;
    while out.len() < n {
        let k_max = if warm {
            ROUND_PAGES
        } else {
            (n - out.len()).min(ROUND_PAGES)
        };
        for k in 0..k_max {
            let addr = arena.base() + k * PAGE_SIZE;
            let t = Instant::now();
            let v = read_at(addr);
            let dt = t.elapsed();
            assert_eq!(v, PATTERN, "a resolved page holds the prepared pattern");
            if !warm {
                out.push(dt.as_nanos() as u64);
            }
        }
        arena
            .release(0, k_max * PAGE_SIZE)
            .expect("release the round's pages");
        warm = false;
        tick();
    }
    out
}

struct Spread {
    n: usize,
    mean: u64,
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

fn spread(mut ns: Vec<u64>) -> Spread {
    ns.sort_unstable();
    let q = |p: f64| ns[((ns.len() as f64 * p).ceil() as usize).clamp(1, ns.len()) - 1];
    Spread {
        n: ns.len(),
        mean: ns.iter().sum::<u64>() / ns.len().max(1) as u64,
        p50: q(0.5),
        p99: q(0.99),
        p999: q(0.999),
        max: ns[ns.len() - 1],
    }
}

fn sigbus_roundtrip(n: usize) -> Result<Spread, String> {
    let ctx = Box::new(SigbusCtx {
        arena: VolatileArena::new(
            ArenaConfig::new(ROUND_PAGES * PAGE_SIZE).delivery(FaultDelivery::Sigbus),
        )
        .map_err(|e| format!("creating a SIGBUS arena: {e}"))?,
        page: Box::new(PageBuf([PATTERN; PAGE_SIZE])),
    });
    // SAFETY: `ctx` outlives `guard` (dropped first, below), and `resolve_by_copy` is
    // async-signal-safe.
    let guard = unsafe {
        register_region(
            ctx.arena.base(),
            ctx.arena.size(),
            resolve_by_copy,
            (&*ctx as *const SigbusCtx).cast(),
        )
    }
    .map_err(|e| format!("registering the SIGBUS region: {e}"))?;
    let ns = fault_latencies(&ctx.arena, n);
    drop(guard);
    drop(ctx);
    Ok(spread(ns))
}

fn thread_roundtrip(n: usize) -> Result<Spread, String> {
    let arena = Arc::new(
        VolatileArena::new(
            ArenaConfig::new(ROUND_PAGES * PAGE_SIZE).delivery(FaultDelivery::Thread),
        )
        .map_err(|e| format!("creating a handler-thread arena: {e}"))?,
    );
    let uffd = arena.uffd().ok_or("the arena has no userfaultfd")?.clone();
    let page = Arc::new(PageBuf([PATTERN; PAGE_SIZE]));
    let a2 = arena.clone();
    let mut reader = FaultReader::spawn(uffd, "pauses-faults", move |ev| {
        if let UffdEvent::PageFault { address, .. } = *ev {
            let offset = (address - a2.base()) & !(PAGE_SIZE - 1);
            // SAFETY: `page` is one live, readable page.
            let _ = unsafe { a2.resolve_copy(offset, page.0.as_ptr(), PAGE_SIZE) };
        }
    })
    .map_err(|e| format!("spawning the fault reader: {e}"))?;
    let ns = fault_latencies(&arena, n);
    reader.stop();
    drop(reader);
    Ok(spread(ns))
}

/// MiB/s of `UFFDIO_COPY` into `bytes` of absent arena memory, in calls of `pages` pages
/// (best of `reps`), and ns per page.
fn copy_throughput(bytes: usize, pages: usize, reps: usize) -> Result<(f64, f64), String> {
    let arena = VolatileArena::new(ArenaConfig::new(bytes).delivery(FaultDelivery::Sigbus))
        .map_err(|e| format!("creating an arena: {e}"))?;
    let src = vec![PATTERN; pages * PAGE_SIZE];
    let mut best = Duration::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        let mut off = 0;
        while off < bytes {
            // SAFETY: `src` is readable for `pages` pages.
            unsafe { arena.resolve_copy(off, src.as_ptr(), pages * PAGE_SIZE) }
                .map_err(|e| format!("UFFDIO_COPY: {e}"))?;
            off += pages * PAGE_SIZE;
        }
        best = best.min(t.elapsed());
        arena
            .release(0, bytes)
            .map_err(|e| format!("release: {e}"))?;
        tick();
    }
    let s = best.as_secs_f64();
    Ok((mib(bytes) / s, s * 1e9 / (bytes / PAGE_SIZE) as f64))
}

/// ns per page of one-page `UFFDIO_COPY` and `UFFDIO_MOVE` calls into absent memory (best of
/// `reps`), alone or with a second thread of this process spinning (on the other CPU, if the
/// scheduler keeps it there). A MOVE takes its source page out of the page table, so the
/// kernel must flush that TLB entry on every CPU running this address space; a COPY into an
/// absent entry flushes nothing.
fn copy_move_per_page(pages: usize, spinner: bool, reps: usize) -> Result<(f64, f64), String> {
    let len = pages * PAGE_SIZE;
    let arena = VolatileArena::new(ArenaConfig::new(2 * len).delivery(FaultDelivery::Sigbus))
        .map_err(|e| format!("creating an arena: {e}"))?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spin = spinner.then(|| {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
    });
    if spin.is_some() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let page = PageBuf([PATTERN; PAGE_SIZE]);
    let (mut copy, mut mv) = (Duration::MAX, Duration::MAX);
    let result = (|| {
        for _ in 0..reps {
            let t = Instant::now();
            for i in 0..pages {
                // SAFETY: `page` is one readable page.
                unsafe { arena.resolve_copy(len + i * PAGE_SIZE, page.0.as_ptr(), PAGE_SIZE) }
                    .map_err(|e| format!("UFFDIO_COPY: {e}"))?;
            }
            copy = copy.min(t.elapsed());
            arena
                .release(len, len)
                .map_err(|e| format!("release: {e}"))?;
            arena
                .populate(0, len)
                .map_err(|e| format!("populate: {e}"))?;
            let t = Instant::now();
            for i in 0..pages {
                // SAFETY: the source pages are ours, present, and never read again before
                // the release below.
                unsafe { arena.resolve_move(len + i * PAGE_SIZE, i * PAGE_SIZE, PAGE_SIZE, false) }
                    .map_err(|e| format!("UFFDIO_MOVE: {e}"))?;
            }
            mv = mv.min(t.elapsed());
            arena
                .release(0, 2 * len)
                .map_err(|e| format!("release: {e}"))?;
            tick();
        }
        Ok::<(), String>(())
    })();
    stop.store(true, Ordering::Relaxed);
    if let Some(h) = spin {
        let _ = h.join();
    }
    result?;
    let per = |d: Duration| d.as_secs_f64() * 1e9 / pages as f64;
    Ok((per(copy), per(mv)))
}

/// memcpy MiB/s between two resident buffers of `bytes` (median of `reps`).
fn memcpy_bandwidth(bytes: usize, reps: usize) -> f64 {
    let src = vec![0x5au8; bytes];
    let mut dst = vec![0xa5u8; bytes];
    let mut xs: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
            tick();
            mib(bytes) / t.elapsed().as_secs_f64()
        })
        .collect();
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Scheduler noise: a busy loop reads the clock for `secs`; returns (gaps over 1 ms, the
/// longest gap). Nothing else of this process runs meanwhile, so the gaps are time the thread
/// was not on a CPU: what every tail latency in this report is exposed to.
fn sched_noise(secs: f64) -> (u64, Duration) {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut last = Instant::now();
    let (mut n, mut longest) = (0u64, Duration::ZERO);
    while last < end {
        let now = Instant::now();
        let gap = now - last;
        if gap > Duration::from_millis(1) {
            n += 1;
            longest = longest.max(gap);
            tick();
        }
        last = now;
    }
    (n, longest)
}

fn floor_section(opts: &Opts, rep: &mut Report) {
    rep.line("## Physical floor (same run)");
    rep.line("");
    let n = if opts.quick { 5_000 } else { 20_000 };
    stage(format!("floor: {n} SIGBUS round trips"));
    let sig = sigbus_roundtrip(n);
    stage(format!("floor: {n} handler-thread round trips"));
    let thr = thread_roundtrip(n);
    rep.line("Fault round trip: a read of an absent arena page until it returns, the page resolved by one `UFFDIO_COPY` of a prepared page; every fault timed on its own (µs). The handler thread is not pinned.");
    rep.line("");
    rep.line("| delivery | faults | mean | p50 | p99 | p99.9 | max |");
    rep.line("|---|---:|---:|---:|---:|---:|---:|");
    for (name, r) in [
        ("SIGBUS, resolved in the faulting thread", sig),
        ("handler thread (`FaultReader`)", thr),
    ] {
        match r {
            Ok(s) => {
                let f = |ns: u64| us(Duration::from_nanos(ns));
                rep.line(&format!(
                    "| {name} | {} | {} | {} | {} | {} | {} |",
                    count(s.n as u64),
                    f(s.mean),
                    f(s.p50),
                    f(s.p99),
                    f(s.p999),
                    f(s.max)
                ));
            }
            Err(e) => rep.line(&format!("| {name} | unavailable: {e} | | | | | |")),
        }
    }
    rep.line("");
    let copy_bytes = if opts.quick { 16 * MIB } else { 64 * MIB };
    let mem_bytes = if opts.quick { 64 * MIB } else { 256 * MIB };
    rep.line(&format!(
        "Bandwidth: `UFFDIO_COPY` of {} MiB into absent arena memory (best of 3), `memcpy` of a {} MiB resident buffer (median of 5).",
        copy_bytes / MIB,
        mem_bytes / MIB
    ));
    rep.line("");
    rep.line("| operation | MiB/s | ns per 4 KiB page |");
    rep.line("|---|---:|---:|");
    for pages in [1, 16, 64] {
        stage(format!("floor: UFFDIO_COPY throughput, {pages}-page calls"));
        match copy_throughput(copy_bytes, pages, 3) {
            Ok((r, ns)) => rep.line(&format!(
                "| `UFFDIO_COPY`, {pages} page(s) per call | {r:.0} | {ns:.0} |"
            )),
            Err(e) => rep.line(&format!(
                "| `UFFDIO_COPY`, {pages} page(s) per call | {e} | |"
            )),
        }
    }
    let pages = if opts.quick { 1024 } else { 4096 };
    for spinner in [false, true] {
        stage(format!(
            "floor: one-page COPY and MOVE, {}",
            if spinner {
                "second thread spinning"
            } else {
                "alone"
            }
        ));
        let what = if spinner {
            "another thread of the process running"
        } else {
            "the process's only running thread"
        };
        match copy_move_per_page(pages, spinner, 3) {
            Ok((c, m)) => {
                let r = |ns: f64| PAGE_SIZE as f64 / ns * 1e9 / MIB as f64;
                rep.line(&format!(
                    "| `UFFDIO_COPY`, 1 page per call, {what} | {:.0} | {c:.0} |",
                    r(c)
                ));
                rep.line(&format!(
                    "| `UFFDIO_MOVE`, 1 page per call, {what} | {:.0} | {m:.0} |",
                    r(m)
                ));
            }
            Err(e) => rep.line(&format!("| one-page COPY / MOVE, {what} | {e} | |")),
        }
    }
    let noise_secs = if opts.quick { 2.0 } else { 10.0 };
    stage(format!("floor: scheduler noise ({noise_secs} s busy loop)"));
    let (gaps, longest) = sched_noise(noise_secs);
    stage("floor: memcpy bandwidth".into());
    let bw = memcpy_bandwidth(mem_bytes, 5);
    rep.line(&format!(
        "| `memcpy` ({} MiB) | {bw:.0} | {:.0} |",
        mem_bytes / MIB,
        PAGE_SIZE as f64 / (bw * MIB as f64) * 1e9
    ));
    rep.line("");
    rep.line(&format!(
        "Scheduler noise: a busy loop reading the clock for {noise_secs:.0} s (nothing else of this process running) was off the CPU {gaps} times for more than 1 ms, the longest for {} ms. Every tail latency in this report is exposed to this.",
        ms(longest)
    ));
    rep.line("");
}

// ---------------------------------------------------------------------------------------------
// Section 3: barrier cost.

/// Elements per array of the store workload (8 KiB arrays stay below the large-object
/// threshold, so they live, and move, in the moving space).
const VEC: usize = 1000;
/// Groups per middle table.
const MID: usize = 64;
/// Stores per batch (one safepoint poll per batch).
const BATCH: usize = 512;
/// Bytes of one group: the group pair, arrays A and B, and the 1000 pairs A holds.
const GROUP_BYTES: usize = PAIR_BYTES + 2 * (8 + 8 * VEC) + VEC * PAIR_BYTES;

/// Store workload: top table -> middle tables of [`MID`] groups -> group pair (A, B).
struct StoreWorld {
    top: Root,
    groups: usize,
}

fn build_store_world(m: &mut Mutator, t: &Types, live: usize) -> Result<StoreWorld, AllocError> {
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
fn store_batch(m: &Mutator, w: &StoreWorld, rng: &mut SplitMix) {
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
struct BarrierSpec {
    label: &'static str,
    mode: GcMode,
    barrier: Barrier,
    disable_logging: bool,
}

/// Stores and wall time per phase.
#[derive(Default, Clone, Copy)]
struct StoreAcc {
    stores: u64,
    wall: Duration,
}

impl StoreAcc {
    fn rate(&self) -> Option<f64> {
        (!self.wall.is_zero()).then(|| self.stores as f64 / self.wall.as_secs_f64())
    }
}

struct BarrierRun {
    spec: BarrierSpec,
    outcome: Result<BarrierData, String>,
}

struct BarrierData {
    info: String,
    idle: StoreAcc,
    mark: StoreAcc,
    compact: StoreAcc,
    cycles: Vec<CycleStats>,
}

/// One heap of the barrier comparison, kept alive across the interleaved rounds.
struct BarrierHeap {
    // Field order is drop order: the roots, then the mutator, then the heap.
    w: StoreWorld,
    m: Mutator,
    heap: Heap,
    recorded: Arc<AtomicU64>,
    rng: SplitMix,
    info: String,
    idle: StoreAcc,
    mark: StoreAcc,
    compact: StoreAcc,
}

fn setup_barrier(spec: BarrierSpec, live: usize) -> Result<BarrierHeap, String> {
    let half = (2 * live).max(4 * MIB);
    let recorded = Arc::new(AtomicU64::new(0));
    let hook_count = recorded.clone();
    let cfg = HeapConfig {
        mode: spec.mode,
        barrier: spec.barrier,
        strategy: Strategy::Auto,
        faults: FaultMode::Auto,
        debug_disable_barrier: spec.disable_logging,
        min_trigger_bytes: half,
        on_cycle: Some(Arc::new(move |_: &CycleStats| {
            hook_count.fetch_add(1, Ordering::SeqCst);
        })),
        ..HeapConfig::with_heap_size(half)
    };
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
        mi.barrier.unwrap_or("none"),
        mi.strategy.unwrap_or("-"),
        mi.faults.unwrap_or("-"),
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
fn barrier_round(bh: &mut BarrierHeap, idle: Duration, cyc: Duration) -> Result<(), String> {
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
                bh.m.wait_for_cycle();
                let rec = bh.recorded.load(Ordering::SeqCst);
                let flips = bh.heap.cycles();
                bh.m.collect().map_err(|e| format!("collect: {e}"))?;
                in_cycle = Some((rec, flips));
                t0 = Instant::now();
                flips
            }
        };
        let acc = if bh.heap.cycles() == flips {
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
    bh.m.wait_for_cycle();
    Ok(())
}

fn barrier_section(opts: &Opts, rep: &mut Report) {
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
    let mut heaps: Vec<(BarrierSpec, Result<BarrierHeap, String>)> = specs
        .iter()
        .map(|&spec| (spec, setup_barrier(spec, live)))
        .collect();
    for round in 0..rounds {
        for (spec, h) in heaps.iter_mut() {
            let Ok(bh) = h else { continue };
            stage(format!(
                "barrier {}: round {}/{rounds}",
                spec.label,
                round + 1
            ));
            if let Err(e) = barrier_round(bh, idle, cyc) {
                *h = Err(e);
            }
        }
    }
    let runs: Vec<BarrierRun> = heaps
        .into_iter()
        .map(|(spec, h)| BarrierRun {
            spec,
            outcome: h.map(|bh| BarrierData {
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
            }),
        })
        .collect();
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

// ---------------------------------------------------------------------------------------------

fn main() {
    START.get_or_init(Instant::now);
    let opts = Opts::parse();
    spawn_watchdog(Duration::from_secs(if opts.quick { 120 } else { 300 }));
    let mut rep = Report {
        text: String::new(),
        path: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pauses-report.md"),
    };
    let t_run = Instant::now();
    let load0 = loadavg();
    rep.line(&format!(
        "<!-- faultline pauses benchmark, {} run -->",
        if opts.quick { "quick" } else { "full" }
    ));
    rep.line("");
    rep.line(&format!(
        "Machine: {} CPUs ({}), kernel {}, load average at start {load0}. Mode: {}.",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        read_trim("/proc/sys/kernel/osrelease"),
        if opts.quick { "quick" } else { "full" }
    ));
    rep.line("");
    if opts.section("pauses") {
        let mut runs = Vec::new();
        for &size in &opts.sizes {
            for spec in MODES {
                if !opts.modes.is_empty() && !opts.modes.iter().any(|l| l == spec.label) {
                    continue;
                }
                let r = run_mode(&opts, spec, size);
                match &r.outcome {
                    Ok(d) => {
                        eprintln!(
                            "  {} @ {} MiB: {} cycles, longest pause {} ms, faults {}, check {}",
                            spec.label,
                            size / MIB,
                            d.cycles.len(),
                            ms(max_pause(d)),
                            d.faults.count,
                            if d.check.is_ok() { "ok" } else { "FAILED" }
                        );
                        if let Err(e) = &d.check {
                            eprintln!("  CHECK FAILED: {e}");
                        }
                    }
                    Err(e) => eprintln!("  {} @ {} MiB: {e}", spec.label, size / MIB),
                }
                runs.push(r);
            }
        }
        rep.line("## Pauses, phases, fault stalls, compaction throughput");
        rep.line("");
        let mut shapes = String::new();
        for &s in &opts.sizes {
            let sh = Shape::for_live(s);
            let _ = write!(
                shapes,
                "{} MiB: {} trees of depth {} + {} lists of {} cells, {} objects, {:.1} MiB; ",
                s / MIB,
                sh.entries / 2,
                sh.depth,
                sh.entries / 2,
                sh.list_len,
                count(sh.objects()),
                mib(sh.live_bytes())
            );
        }
        rep.line(&format!(
            "Heap shapes: {}max_heap_bytes = 2 x live; every list cell was followed by a garbage pair when built. Cycles per heap: {} ({} for 512 MiB and more). Concurrent heaps use 1 GC thread (plus one compaction worker; with `thread` delivery also the fault handler thread); `stw-2t` marks with 2 threads.",
            shapes,
            opts.cycles(0),
            opts.cycles(1 << 30)
        ));
        rep.line("");
        summary_table(&mut rep, &runs, &opts.sizes);
        pause_tables(&mut rep, &runs);
        rep.save();
    }
    if opts.section("floor") {
        floor_section(&opts, &mut rep);
        rep.save();
    }
    if opts.section("barrier") {
        barrier_section(&opts, &mut rep);
    }
    rep.line(&format!(
        "Run time {:.0} s; load average at start {load0}, at end {}.",
        t_run.elapsed().as_secs_f64(),
        loadavg()
    ));
    rep.save();
    eprintln!("pauses: report written to {}", rep.path.display());
}

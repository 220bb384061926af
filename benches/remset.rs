//! Remembered sets (issue 15, item 2, "Must show"): what a reference store costs with a card
//! table kept by a write barrier, with the barrier-free written-pages set (WP_ASYNC write
//! protection read back by `PAGEMAP_SCAN`), and with no generational mode; and what one harvest
//! of the written pages costs.
//!
//! Model benchmarks (group `remset_store`): a 64 MiB "old" region of 8-byte slots, stores of
//! values that name a "young" address, `S` stores per simulated young cycle, three ways:
//! - `plain`: the store alone (relaxed atomic, as `Local::set` stores outside marking): no
//!   generational mode;
//! - `card`: a card-marking barrier as a generational mode adds to the store path: a relaxed
//!   load of the mode flag, then one byte store to the slot's 512-byte card, then the store;
//! - `wp`: the plain store into pages write-protected with WP_ASYNC; between two cycles (not
//!   timed) a harvest re-protects the pages written, so the first store to a page in each cycle
//!   takes the kernel's write-protect fault (resolved in the kernel, no signal, no barrier code).
//!
//! Store patterns per cycle: `dense_64k` (65 536 consecutive slots: 128 pages), `random_16k`
//! (16 384 slots drawn uniformly from all 16 384 pages: most stores hit a page of their own,
//! the worst case for `wp`), `random_256k` (262 144 uniform slots: about 16 per page).
//! Criterion's elements are stores (throughput = stores per second).
//!
//! `harvest/written_<k>`: one harvest (`PAGEMAP_SCAN` with `PM_SCAN_WP_MATCHING` over the
//! 16 384-page region) after `k` pages were written (untimed); elements are pages walked.
//!
//! Heap table (printed after the criterion groups; `FAULTLINE_REMSET=model` or `=heap` runs one
//! part): a 64 MiB heap per mode (stop-the-world, and concurrent copy/sigbus; not
//! generational, `Cards`, `WrittenPages`),
//! 32 768 long-lived reference arrays of 32 slots (promoted to the old generation by two young
//! cycles in the generational modes), then 12 rounds of: 8 192 fresh young arrays, 65 536
//! `Local::set` stores of young references into random old objects (all of them, or
//! `clustered`: 1/64 of them), 65 536 into young objects (timed separately), and one young
//! cycle (a full cycle when not generational), whose longest pause, remembered-set units
//! (cards or pages), old slots visited and (written pages) harvest and re-protection times are
//! reported; medians over the rounds.
//!
//! Invariants: every stored value comes through `black_box`; the `plain` and `card` variants
//! run on an arena without write tracking (no protection, so no fault); every variant writes
//! the same slots in the same order; the `wp` variant is skipped, with a notice, where WP_ASYNC
//! write tracking is unavailable.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use faultline::testing::heap::arena::{ArenaConfig, ArenaOffset, VolatileArena};
use faultline::testing::heap::pagemap::PagemapScanner;
use faultline::{
    Capability, FaultMode, GcMode, Generational, Heap, HeapConfig, Local, Mutator, Probe, Root,
    Strategy, TypeId, TypeInfo, Value, PAGE_SIZE,
};

#[path = "common/mod.rs"]
mod common;

/// The old region: 64 MiB.
const OLD_BYTES: usize = 64 << 20;
const PAGES: usize = OLD_BYTES / PAGE_SIZE;
const SLOTS: usize = OLD_BYTES / 8;
/// Card size (bytes) of the modelled card table.
const CARD_SHIFT: u32 = 9;
/// A "young" address the stored values point at (never dereferenced).
const YOUNG: usize = 0x7000_0000_0000;

/// One region of slots in its own arena (present, zeroed).
struct Region {
    arena: VolatileArena,
    scanner: Option<PagemapScanner>,
}

impl Region {
    fn new(tracking: bool) -> Region {
        let arena = VolatileArena::new(ArenaConfig::new(OLD_BYTES).write_tracking(tracking))
            .expect("arena");
        arena.populate(ArenaOffset(0), OLD_BYTES).expect("populate");
        let scanner = tracking.then(|| PagemapScanner::open(arena.sys()).expect("pagemap"));
        let r = Region { arena, scanner };
        r.harvest();
        r
    }

    fn base(&self) -> usize {
        self.arena.base()
    }

    /// Re-protect the pages written since the last harvest; returns how many.
    fn harvest(&self) -> usize {
        match &self.scanner {
            // SAFETY: the bench's own arena: no one else tracks its writes.
            Some(sc) => unsafe { sc.written_pages(self.base(), OLD_BYTES, true, |_, _| {}) }
                .expect("PAGEMAP_SCAN"),
            None => 0,
        }
    }

    #[inline(always)]
    fn slot(&self, i: usize) -> &AtomicUsize {
        // SAFETY: `i < SLOTS`, so the word is inside the region's arena, which is present,
        // readable and writable for the region's life, and only accessed atomically here.
        unsafe { AtomicUsize::from_ptr((self.base() + i * 8) as *mut usize) }
    }
}

/// The slot indices of one cycle's stores.
fn pattern(name: &str) -> Vec<usize> {
    let mut rng = common::rng::SplitMix(0x5eed_0015);
    match name {
        "dense_64k" => (0..65_536).collect(),
        "random_16k" => (0..16_384).map(|_| rng.below(SLOTS)).collect(),
        "random_256k" => (0..262_144).map(|_| rng.below(SLOTS)).collect(),
        _ => unreachable!(),
    }
}

/// The modelled card table and its mode flag.
struct Cards {
    on: AtomicBool,
    table: Vec<AtomicU8>,
}

#[inline(always)]
fn store_plain(r: &Region, i: usize, v: usize) {
    r.slot(i).store(v, Ordering::Relaxed);
}

#[inline(always)]
fn store_card(r: &Region, c: &Cards, i: usize, v: usize) {
    if c.on.load(Ordering::Relaxed) {
        c.table[(i * 8) >> CARD_SHIFT].store(1, Ordering::Relaxed);
    }
    r.slot(i).store(v, Ordering::Relaxed);
}

fn stores(c: &mut Criterion) {
    let wp_ok = Probe::run().supports(Capability::WpAsync);
    if !wp_ok {
        eprintln!("SKIPPED: remset_store/wp and harvest: WP_ASYNC write tracking unavailable here");
    }
    eprintln!("load average at start: {}", common::loadavg());
    let plain = Region::new(false);
    let tracked = wp_ok.then(|| Region::new(true));
    let cards = Cards {
        on: AtomicBool::new(true),
        table: (0..OLD_BYTES >> CARD_SHIFT)
            .map(|_| AtomicU8::new(0))
            .collect(),
    };
    let mut g = c.benchmark_group("remset_store");
    for name in ["dense_64k", "random_16k", "random_256k"] {
        let idx = pattern(name);
        g.throughput(Throughput::Elements(idx.len() as u64));
        let mut cycle = 0usize;
        g.bench_function(BenchmarkId::new("plain", name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    cycle += 1;
                    let t = Instant::now();
                    for &i in &idx {
                        store_plain(&plain, i, black_box(YOUNG + cycle * 8));
                    }
                    total += t.elapsed();
                }
                total
            })
        });
        g.bench_function(BenchmarkId::new("card", name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    cycle += 1;
                    // A young cycle clears the cards it scanned (untimed).
                    for k in &cards.table {
                        k.store(0, Ordering::Relaxed);
                    }
                    let t = Instant::now();
                    for &i in &idx {
                        store_card(&plain, &cards, i, black_box(YOUNG + cycle * 8));
                    }
                    total += t.elapsed();
                }
                total
            })
        });
        if let Some(r) = &tracked {
            g.bench_function(BenchmarkId::new("wp", name), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        cycle += 1;
                        // A young cycle's harvest re-protects what the last one wrote (untimed).
                        r.harvest();
                        let t = Instant::now();
                        for &i in &idx {
                            store_plain(r, i, black_box(YOUNG + cycle * 8));
                        }
                        total += t.elapsed();
                    }
                    total
                })
            });
        }
    }
    g.finish();

    let Some(r) = &tracked else { return };
    let mut g = c.benchmark_group("harvest");
    g.throughput(Throughput::Elements(PAGES as u64));
    for k in [0usize, 128, 4096, PAGES] {
        let step = PAGES / k.max(1);
        g.bench_function(BenchmarkId::new("written", k), |b| {
            b.iter_custom(|iters| {
                // Start from a fully protected region (earlier benchmarks wrote to it).
                r.harvest();
                let mut total = Duration::ZERO;
                for n in 0..iters {
                    for p in 0..k {
                        store_plain(r, p * step * (PAGE_SIZE / 8), black_box(n as usize));
                    }
                    let t = Instant::now();
                    let got = r.harvest();
                    total += t.elapsed();
                    assert_eq!(got, k, "the harvest reports exactly the pages written");
                }
                total
            })
        });
    }
    g.finish();
    eprintln!("load average at end: {}", common::loadavg());
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = stores }

// ---------------------------------------------------------------------------------------
// The heap: `Local::set` stores and young-cycle pauses with each remembered set.
// ---------------------------------------------------------------------------------------

/// Old (long-lived) objects: reference arrays of `OLD_SLOTS` slots (264 bytes each).
const OLD_OBJS: usize = 32_768;
const OLD_SLOTS: usize = 32;
/// Entries per directory array (the roots hold directories of objects).
const DIR: usize = 256;
/// Fresh (young) objects allocated per round.
const YOUNG_OBJS: usize = 8_192;
/// Stores per round into old objects and into young objects.
const HEAP_STORES: usize = 65_536;
/// Rounds (one young cycle after each).
const ROUNDS: usize = 12;

/// Root directories of `n` objects of `len` slots: `Root`s of reference arrays of [`DIR`].
fn alloc_objects(m: &mut Mutator, node: TypeId, n: usize, len: usize) -> Vec<Root> {
    let mut dirs = Vec::new();
    for d in 0..n.div_ceil(DIR) {
        let dir = m.alloc(node, DIR).unwrap();
        let dir = m.root(dir);
        for j in 0..DIR.min(n - d * DIR) {
            let o = m.alloc(node, len).unwrap();
            dir.get(m).unwrap().set(j, o);
        }
        dirs.push(dir);
    }
    dirs
}

fn values(m: &Mutator, dirs: &[Root], n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| dirs[i / DIR].get(m).unwrap().get(i % DIR))
        .collect()
}

/// One round's store script: (object index, slot, value index).
fn script(rng: &mut common::rng::SplitMix, objs: usize, slots: usize) -> Vec<(u32, u32, u32)> {
    (0..HEAP_STORES)
        .map(|_| {
            (
                rng.below(objs) as u32,
                rng.below(slots) as u32,
                rng.below(YOUNG_OBJS) as u32,
            )
        })
        .collect()
}

/// One mode's run: per round, the store time into old and into young objects, and the young
/// cycle that follows.
struct HeapRun {
    label: String,
    old_ns: Vec<f64>,
    young_ns: Vec<f64>,
    pause_us: Vec<f64>,
    units: Vec<usize>,
    old_slots: Vec<usize>,
    harvest_us: Vec<f64>,
    protect_us: Vec<f64>,
    walked: usize,
    old_bytes: usize,
}

fn heap_run(mode: GcMode, gen: Generational, clustered: bool) -> HeapRun {
    let half = 64 << 20;
    let heap = Heap::new(HeapConfig::with_heap_size(half).with(|c| {
        c.mode = mode;
        c.strategy = Strategy::Copy;
        c.faults = FaultMode::Sigbus;
        c.generational = gen;
        c.min_trigger_bytes = half;
    }))
    .expect("heap");
    let node = heap.register_type(TypeInfo::ref_array("node")).unwrap();
    let mut m = heap.attach();
    let old = alloc_objects(&mut m, node, OLD_OBJS, OLD_SLOTS);
    // Two young cycles: the first keeps the objects young, the second promotes them.
    m.collect().unwrap();
    m.collect().unwrap();
    let old_bytes = heap.old_generation().map_or(0, |g| g.1);
    let mut rng = common::rng::SplitMix(0x01d_5eed);
    // Clustered: the stores into old objects go to 1/64 of them (about 33 pages).
    let old_targets = if clustered { OLD_OBJS / 64 } else { OLD_OBJS };
    let mut run = HeapRun {
        label: format!(
            "{}{}",
            heap.mode_info().label(),
            if clustered { " clustered" } else { "" }
        ),
        old_ns: vec![],
        young_ns: vec![],
        pause_us: vec![],
        units: vec![],
        old_slots: vec![],
        harvest_us: vec![],
        protect_us: vec![],
        walked: 0,
        old_bytes,
    };
    for _ in 0..ROUNDS {
        let young = alloc_objects(&mut m, node, YOUNG_OBJS, 4);
        let to_old = script(&mut rng, old_targets, OLD_SLOTS);
        let to_young = script(&mut rng, YOUNG_OBJS, 4);
        {
            let olds = values(&m, &old, OLD_OBJS);
            let youngs = values(&m, &young, YOUNG_OBJS);
            let old_l: Vec<Local<'_>> = olds.iter().map(|&v| m.local(v).unwrap()).collect();
            let young_l: Vec<Local<'_>> = youngs.iter().map(|&v| m.local(v).unwrap()).collect();
            let t = Instant::now();
            for &(o, k, v) in &to_old {
                old_l[o as usize].set(k as usize, black_box(youngs[v as usize]));
            }
            run.old_ns
                .push(t.elapsed().as_nanos() as f64 / HEAP_STORES as f64);
            let t = Instant::now();
            for &(o, k, v) in &to_young {
                young_l[o as usize].set(k as usize, black_box(youngs[v as usize]));
            }
            run.young_ns
                .push(t.elapsed().as_nanos() as f64 / HEAP_STORES as f64);
        }
        let flips = heap.flips();
        m.collect().unwrap();
        assert_eq!(heap.flips(), flips + 1);
        heap.wait_for_compaction();
        let c = heap.history().last().unwrap().clone();
        // The cycle's longest pause: stop-the-world, or the concurrent remark + flip.
        run.pause_us.push(
            c.pauses
                .iter()
                .map(|p| p.duration.as_secs_f64())
                .fold(0.0, f64::max)
                * 1e6,
        );
        run.units.push(c.gen.dirty_cards);
        run.old_slots.push(c.gen.old_slots);
        if let Some((_, last)) = heap.written_pages_stats() {
            run.harvest_us.push(last.scan_ns as f64 / 1e3);
            run.protect_us.push(last.protect_ns as f64 / 1e3);
            run.walked = last.pages_walked as usize;
        }
        drop(young);
    }
    run
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn median_u(v: &[usize]) -> usize {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Print the heap table (medians over the rounds).
fn heap_table() {
    let wp_ok = Probe::run().supports(Capability::WpAsync);
    println!(
        "\n## remset heap: {OLD_OBJS} old arrays of {OLD_SLOTS} slots, {YOUNG_OBJS} young arrays per round, {HEAP_STORES} Local::set stores into old and into young objects per round, then one young cycle (a full one when not generational); medians of {ROUNDS} rounds; load {}",
        common::loadavg()
    );
    println!(
        "| mode | old gen | ns/store old | ns/store young | longest pause µs | units scanned | old slots | harvest µs (pages walked) | re-protect µs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut gens = vec![Generational::Off, Generational::Cards];
    if wp_ok {
        gens.push(Generational::WrittenPages);
    } else {
        println!("(written_pages skipped: WP_ASYNC unavailable here)");
    }
    let mut modes = Vec::new();
    for mode in [GcMode::StopTheWorld, GcMode::Concurrent] {
        for &g in &gens {
            for clustered in [false, true] {
                modes.push((mode, g, clustered));
            }
        }
    }
    for (mode, g, clustered) in modes {
        let r = heap_run(mode, g, clustered);
        println!(
            "| {} | {:.1} MiB | {:.2} | {:.2} | {:.0} | {} | {} | {} | {} |",
            r.label,
            common::mib(r.old_bytes),
            median(&r.old_ns),
            median(&r.young_ns),
            median(&r.pause_us),
            median_u(&r.units),
            median_u(&r.old_slots),
            if r.harvest_us.is_empty() {
                "-".to_string()
            } else {
                format!("{:.0} ({})", median(&r.harvest_us), r.walked)
            },
            if r.protect_us.is_empty() {
                "-".to_string()
            } else {
                format!("{:.0}", median(&r.protect_us))
            },
        );
    }
    println!("load at end: {}", common::loadavg());
}

fn main() {
    // FAULTLINE_REMSET=model | heap chooses one part (both by default).
    let part = std::env::var("FAULTLINE_REMSET").unwrap_or_default();
    if part != "heap" {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    if part != "model" {
        heap_table();
    }
}

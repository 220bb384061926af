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
//! Invariants: every stored value comes through `black_box`; the `plain` and `card` variants
//! run on an arena without write tracking (no protection, so no fault); every variant writes
//! the same slots in the same order; the `wp` variant is skipped, with a notice, where WP_ASYNC
//! write tracking is unavailable.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use faultline::testing::heap::arena::{ArenaConfig, ArenaOffset, VolatileArena};
use faultline::testing::heap::pagemap::PagemapScanner;
use faultline::{Capability, Probe, PAGE_SIZE};

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
            Some(sc) => sc
                .written_pages(self.base(), OLD_BYTES, true, |_, _| {})
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
criterion_main!(benches);

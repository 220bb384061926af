//! Allocation cost per object: Faultline's [`Mutator::alloc`] against the system allocator
//! (glibc `malloc` behind Rust's `System`) and Boehm's collector (`GC_malloc`,
//! `GC_malloc_atomic`), for objects of 16, 32 and 64 bytes *total* size, in the same run.
//!
//! A Faultline object's size includes its 8-byte header, so the types registered here are
//! `TypeInfo::fixed(name, 8 | 24 | 56, &[])`; the system allocator is asked for the same total
//! size, `Box::new([0u64; 2 | 4 | 8])` (zero-filled, like a fresh Faultline object).
//!
//! Benchmarks (one criterion *iteration* = one object):
//!
//! 1. `faultline/{16,32,64}`: `m.alloc(ty, 0)` in a loop on the default configuration. The
//!    timed loop includes everything the mutator pays per object apart from collections: the
//!    bump-pointer fast path, the allocation-buffer (TLAB, 32 KiB) refill every 32 KiB, and
//!    the refill's fresh memory: the default stop-the-world collection slides in place
//!    (`StwCompaction::Auto`) and keeps its free tail present, up to the headroom, which the
//!    refill zeroes in user space (`HeapConfig::recycle_old_half`, the default): no kernel
//!    call at all;
//! 2. `faultline_move/{16,32,64}`: the same, compacting into the other half
//!    (`StwCompaction::Copy`): the old half's pages are recycled by the collection
//!    (`UFFDIO_MOVE`d to the new half, untimed, inside the collection), and the refill zeroes
//!    them in user space (the default before the slide was);
//! 3. `faultline_copyzeros/{16,32,64}`: the default with `recycle_old_half` off (the way
//!    before it): the refill makes fresh memory present in 256 KiB batches (`UFFDIO_COPY` of
//!    zeroes) when it crosses the populated watermark;
//! 4. `faultline_prepopulated/{16,32,64}`: the same loop, but the whole moving half is made
//!    present *outside* the timed region (`populate_batch_bytes` = the half, recycling off, so
//!    the first refill after a collection, done untimed, populates all of it): the bump fast
//!    path plus TLAB refills, no system call;
//!
//!    Beside it, `faultline_minor/{16,32,64}` and `faultline_minor_copyzeros/{16,32,64}`: the minor
//!    strategy (concurrent, memfd arena, SIGBUS delivery) with the prefill thread off, so the
//!    refills pay for fresh memory in the timed loop; with `recycle_old_half` on (the old
//!    half's page-cache pages kept mapped for the next flip, [`faultline`]'s `release.rs`) and
//!    off (a `UFFDIO_COPY` of zeroes per refill batch). `measure_fresh_memfd` prints each
//!    way's kernel cost per page on a scratch memfd arena first;
//! 5. `system_alloc_free/{16,32,64}`: `Box::new` immediately dropped: a `malloc` + `free` pair
//!    that reuses one hot chunk of glibc's per-thread cache (the allocator's best case);
//! 6. `system_alloc_only/{16,32,64}`: `Box::new` of as many objects as one Faultline epoch
//!    holds, kept in a pre-sized `Vec` (one 8-byte store per object is timed with them); the
//!    frees run outside the timed region, so the next round reuses freed chunks (glibc's
//!    fastbins and tcache), as a program with a steady live size would;
//! 7. `boehm_gc_malloc/{16,32,64}`: `GC_malloc(size)` (zeroed, like a Faultline object), the
//!    result dropped at once, libgc in its default configuration. Its collections (each finds
//!    nothing live) run inside the timed loop, amortised, as Faultline's refills do; with
//!    nothing live its heap stays at 128-192 KiB (cache-resident), so it collects about once
//!    per 100 KiB allocated. The number of collections per row is printed. libgc's
//!    `GC_all_interior_pointers` (on by default) adds one byte per object before rounding to
//!    its 16-byte granules, so a 16-byte request takes 32 bytes;
//! 8. `boehm_gc_malloc_atomic/{16,32,64}`: the same with `GC_malloc_atomic` (not zeroed, never
//!    scanned);
//! 9. `boehm_gc_malloc_64m/...`, `boehm_gc_malloc_atomic_64m/...`: rows 7 and 8 again after
//!    libgc's heap is grown to Faultline's half (64 MiB, `GC_expand_hp`): the same memory as
//!    Faultline, collections hundreds of times rarer, but the heap no longer fits in the caches.
//!    The Boehm rows run after all the others (growing the heap cannot be undone).
//!
//! After rows 1-4 of each size the bench prints the cost of fresh memory per 4 KiB page
//! (issue 16 item 3): the net cost each way, (row 1, 2 or 3 - row 4) x objects per page from
//! the mean of all their timed loops (minus the cache misses row 4 pays writing pages
//! populated long before), the pages rows 1 and 2's collections kept or recycled, and the
//! direct cost of the COPY of zeroes, the time of row 4's untimed populating refills over the
//! pages they made resident (`/proc/self/statm`). Before the rows it prints
//! `calibrate::measure_fresh` (each way's kernel and zeroing cost per page on a scratch
//! arena, alone and with another thread running), which includes what row 2 does not time:
//! the move inside the collection.
//!
//! The Boehm rows need `libgc.so.1` (Debian's `libgc1`, loaded at run time, see
//! `common/boehm.rs`); without it they are left out with a note on stderr.
//!
//! Invariants:
//! - no collection runs inside a timed region: the heap's occupancy trigger is set to the whole
//!   half, the benchmark empties the heap with `collect()` (untimed) before an epoch could
//!   overflow, and it asserts that the cycle counter did not move across each timed loop;
//! - nothing is rooted, so every collection finds the heap empty and compacts nothing;
//! - every allocated value goes through `black_box`, so no allocation can be elided.

use std::hint::black_box;
use std::time::{Duration, Instant};

use core::ffi::c_void;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use faultline::{
    FaultMode, GcMode, Heap, HeapConfig, Mutator, Strategy, StwCompaction, TypeId, TypeInfo,
};

#[path = "common/mod.rs"]
mod common;

use common::boehm::Boehm;

/// Bytes per moving half.
const HALF: usize = 64 << 20;
/// Bytes an epoch may allocate before the heap is emptied (leaves room for a last refill).
const EPOCH_BYTES: usize = HALF - (1 << 20);

/// A heap, its mutator and one fixed-size type of `size` bytes (header included).
struct Subject {
    heap: Heap,
    m: Mutator,
    ty: TypeId,
    size: usize,
    prepopulate: bool,
    /// Concurrent mode with the minor strategy (memfd arena; collections wait for the end).
    minor: bool,
    /// Pages recycled by this subject's collections.
    recycled_pages: usize,
    /// Bytes allocated since the last collection.
    epoch_used: usize,
    /// Every timed loop so far (warm-up included): time and allocations.
    timed: Duration,
    timed_allocs: u64,
    /// Pre-populated subjects: time in the populating refills, and the pages they made
    /// resident.
    populate_time: Duration,
    populated_pages: u64,
}

impl Subject {
    fn new(size: usize, prepopulate: bool, recycle: bool, compaction: StwCompaction) -> Subject {
        Self::with(size, prepopulate, recycle, compaction, false)
    }

    /// The minor strategy (concurrent, memfd arena, SIGBUS delivery) with the prefill thread
    /// off, so that the refills pay for their fresh memory inside the timed loops.
    fn minor(size: usize, recycle: bool) -> Subject {
        Self::with(size, false, recycle, StwCompaction::Auto, true)
    }

    fn with(
        size: usize,
        prepopulate: bool,
        recycle: bool,
        compaction: StwCompaction,
        minor: bool,
    ) -> Subject {
        let base = HeapConfig::with_heap_size(HALF);
        let batch = if prepopulate {
            HALF
        } else {
            base.populate_batch_bytes
        };
        let cfg = base.with(|c| {
            c.min_trigger_bytes = HALF;
            c.populate_batch_bytes = batch;
            c.recycle_old_half = recycle && !prepopulate;
            c.stw_compaction = compaction;
            if minor {
                c.mode = GcMode::Concurrent;
                c.strategy = Strategy::Minor;
                c.faults = FaultMode::Sigbus;
                c.prefill_bytes = 0;
            }
        });
        let heap = Heap::new(cfg).expect("heap");
        if let Some(r) = heap.fallback_reason() {
            eprintln!("alloc bench: heap without userfaultfd: {r}");
        }
        let ty = heap
            .register_type(TypeInfo::fixed("obj", size - 8, &[]))
            .expect("type");
        let m = heap.attach();
        let mut s = Subject {
            heap,
            m,
            ty,
            size,
            prepopulate,
            minor,
            recycled_pages: 0,
            epoch_used: 0,
            timed: Duration::ZERO,
            timed_allocs: 0,
            populate_time: Duration::ZERO,
            populated_pages: 0,
        };
        s.new_epoch();
        s
    }

    /// Empty the heap (untimed) and, if asked, make the whole half present.
    fn new_epoch(&mut self) {
        if self.minor {
            self.m.collect().expect("collect");
        } else {
            self.m.start_collection().expect("collect");
        }
        if let Some(c) = self.heap.history().last() {
            self.recycled_pages += c.pages_recycled;
        }
        if self.prepopulate {
            // The first allocation refills the TLAB, which populates up to the next multiple of
            // `populate_batch_bytes` = the whole half. Timed apart, with the pages it made
            // resident, for the direct cost of populating a page.
            let rss = resident_pages();
            let t = Instant::now();
            black_box(self.m.alloc(self.ty, 0).expect("alloc"));
            self.populate_time += t.elapsed();
            self.populated_pages += resident_pages().saturating_sub(rss);
            self.epoch_used = self.size;
        } else {
            self.epoch_used = 0;
        }
    }

    /// Time `iters` allocations, in loops that each fit in the current epoch.
    fn run(&mut self, iters: u64) -> Duration {
        let per_epoch = (EPOCH_BYTES / self.size) as u64;
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let room = ((EPOCH_BYTES - self.epoch_used) / self.size) as u64;
            if room == 0 {
                self.new_epoch();
                continue;
            }
            let n = left.min(room).min(per_epoch);
            let cycles = self.heap.flips();
            let (m, ty) = (&mut self.m, self.ty);
            let t = Instant::now();
            for _ in 0..n {
                black_box(m.alloc(ty, 0).expect("alloc"));
            }
            let dt = t.elapsed();
            total += dt;
            self.timed += dt;
            self.timed_allocs += n;
            assert_eq!(
                self.heap.flips(),
                cycles,
                "a collection ran inside the timed region"
            );
            self.epoch_used += n as usize * self.size;
            left -= n;
        }
        total
    }

    /// Mean ns per allocation over every timed loop so far.
    fn mean_ns(&self) -> f64 {
        self.timed.as_nanos() as f64 / self.timed_allocs.max(1) as f64
    }
}

/// Resident pages of this process (`/proc/self/statm`), 0 if unreadable.
fn resident_pages() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// `Box::new` of `W` zeroed words, kept until outside the timed region.
fn system_alloc_only<const W: usize>(iters: u64, keep: &mut Vec<Box<[u64; W]>>) -> Duration {
    let per_round = keep.capacity() as u64;
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(per_round);
        let t = Instant::now();
        for _ in 0..n {
            keep.push(black_box(Box::new([0u64; W])));
        }
        total += t.elapsed();
        keep.clear(); // the frees: untimed
        left -= n;
    }
    total
}

/// One Boehm row: `alloc(size)` per iteration, the object dropped at once; prints how many
/// collections libgc ran during the row.
fn boehm_row(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    size: usize,
    gc: &Boehm,
    alloc: impl Fn(usize) -> *mut c_void,
) {
    let before = gc.collections();
    g.bench_function(BenchmarkId::new(name, size), |b| {
        b.iter(|| {
            let p = alloc(black_box(size));
            assert!(!p.is_null(), "libgc out of memory");
            black_box(p)
        })
    });
    eprintln!(
        "alloc bench: {name}/{size}: {} libgc collections during the row, libgc heap {} KiB",
        gc.collections() - before,
        gc.heap_size() >> 10
    );
}

fn bench_size<const W: usize>(c: &mut Criterion) {
    let size = W * 8;
    let mut g = c.benchmark_group("alloc");
    g.throughput(Throughput::Elements(1));

    let mut s = Subject::new(size, false, true, StwCompaction::Auto);
    g.bench_function(BenchmarkId::new("faultline", size), |b| {
        b.iter_custom(|iters| s.run(iters))
    });
    let fresh = s.mean_ns();
    let recycled = s.recycled_pages;
    drop(s);

    let mut s = Subject::new(size, false, true, StwCompaction::Copy);
    g.bench_function(BenchmarkId::new("faultline_move", size), |b| {
        b.iter_custom(|iters| s.run(iters))
    });
    let fresh_move = s.mean_ns();
    let moved = s.recycled_pages;
    drop(s);

    let mut s = Subject::new(size, false, false, StwCompaction::Auto);
    g.bench_function(BenchmarkId::new("faultline_copyzeros", size), |b| {
        b.iter_custom(|iters| s.run(iters))
    });
    let fresh_copy = s.mean_ns();
    drop(s);

    let mut s = Subject::new(size, true, false, StwCompaction::Auto);
    g.bench_function(BenchmarkId::new("faultline_prepopulated", size), |b| {
        b.iter_custom(|iters| s.run(iters))
    });
    let present = s.mean_ns();
    if s.populated_pages > 0 {
        eprintln!(
            "alloc bench: populating (untimed refills of the pre-populated row, UFFDIO_COPY of \
             zeroes): {:.0} ns per 4 KiB page over {} pages",
            s.populate_time.as_nanos() as f64 / s.populated_pages as f64,
            s.populated_pages
        );
    }
    drop(s);
    // Issue 16 item 3: what fresh memory adds, per page (means over all timed loops, warm-up
    // included, so close to but not the medians criterion prints).
    eprintln!(
        "alloc bench: fresh memory at {size} B, kept by the slide (default): {fresh:.2} - \
         {present:.2} ns per object = {:.0} ns per 4 KiB page (default config minus \
         pre-populated, mean of all loops; {recycled} pages kept by its collections, no kernel \
         call)",
        (fresh - present) * (4096 / size) as f64
    );
    eprintln!(
        "alloc bench: fresh memory at {size} B, recycled by UFFDIO_MOVE (StwCompaction::Copy): \
         {fresh_move:.2} - {present:.2} ns per object = {:.0} ns per 4 KiB page ({moved} pages \
         recycled by its collections, their move untimed: see measure_fresh)",
        (fresh_move - present) * (4096 / size) as f64
    );
    eprintln!(
        "alloc bench: fresh memory at {size} B, CopyZeros: {fresh_copy:.2} - {present:.2} ns per \
         object = {:.0} ns per 4 KiB page (recycle_old_half off minus pre-populated)",
        (fresh_copy - present) * (4096 / size) as f64
    );

    // The minor strategy (issue 16 item 3): its fresh memory is a memfd's; with recycling on
    // (the default) the old half's page-cache pages are kept mapped for the next flip,
    // without, every refill makes its pages present with a COPY of zeroes.
    let mut minor_rows = Vec::new();
    for (name, recycle) in [
        ("faultline_minor", true),
        ("faultline_minor_copyzeros", false),
    ] {
        let mut s = Subject::minor(size, recycle);
        if s.heap.mode_info().strategy != Some(Strategy::Minor) {
            eprintln!("alloc bench: {name}: the minor strategy is unavailable here");
            continue;
        }
        g.bench_function(BenchmarkId::new(name, size), |b| {
            b.iter_custom(|iters| s.run(iters))
        });
        minor_rows.push((name, s.mean_ns(), s.recycled_pages));
    }
    for (name, mean, kept) in minor_rows {
        eprintln!(
            "alloc bench: fresh memory at {size} B, {name}: {mean:.2} - {present:.2} ns per \
             object = {:.0} ns per 4 KiB page (minus the pre-populated row; {kept} pages kept by \
             its collections)",
            (mean - present) * (4096 / size) as f64
        );
    }

    g.bench_function(BenchmarkId::new("system_alloc_free", size), |b| {
        b.iter(|| drop(black_box(Box::new([0u64; W]))))
    });

    let mut keep: Vec<Box<[u64; W]>> = Vec::with_capacity(EPOCH_BYTES / size);
    g.bench_function(BenchmarkId::new("system_alloc_only", size), |b| {
        b.iter_custom(|iters| system_alloc_only::<W>(iters, &mut keep))
    });
    drop(keep);

    g.finish();
}

/// The Boehm rows of every size: first with libgc's default heap, then with its heap grown to
/// `HALF` (growing cannot be undone, so each configuration runs for all sizes in turn).
fn bench_boehm(c: &mut Criterion) {
    let gc = match Boehm::get() {
        Ok(gc) => gc,
        Err(e) => {
            eprintln!("alloc bench: Boehm rows left out: {e}");
            return;
        }
    };
    let mut g = c.benchmark_group("alloc");
    g.throughput(Throughput::Elements(1));
    for suffix in ["", "_64m"] {
        if !suffix.is_empty() {
            assert!(gc.expand_heap_to(HALF), "GC_expand_hp failed");
        }
        for size in [16, 32, 64] {
            let name = format!("boehm_gc_malloc{suffix}");
            boehm_row(&mut g, &name, size, &gc, |n| gc.malloc(n));
            let name = format!("boehm_gc_malloc_atomic{suffix}");
            boehm_row(&mut g, &name, size, &gc, |n| gc.malloc_atomic(n));
        }
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    for with_thread in [false, true] {
        match faultline::testing::heap::calibrate::measure_fresh(
            &faultline::testing::heap::Sys::real(),
            with_thread,
        ) {
            Ok(f) => eprintln!("alloc bench: measure_fresh: {f}"),
            Err(e) => eprintln!("alloc bench: measure_fresh unavailable: {e}"),
        }
    }
    match faultline::testing::heap::calibrate::measure_fresh_memfd(
        &faultline::testing::heap::Sys::real(),
    ) {
        Ok(f) => eprintln!("alloc bench: measure_fresh_memfd: {f}"),
        Err(e) => eprintln!("alloc bench: measure_fresh_memfd unavailable: {e}"),
    }
    bench_size::<2>(c);
    bench_size::<4>(c);
    bench_size::<8>(c);
    bench_boehm(c);
}

criterion_group! {
    name = alloc;
    config = common::criterion_config();
    targets = benches
}
criterion_main!(alloc);

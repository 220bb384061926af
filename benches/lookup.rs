//! Cost of the collector's new-address lookup, measured on [`LiveWords`] directly.
//!
//! The compaction plan (`Plan::forward`, private to `faultline-gc`) computes an object's new
//! address as `to + 8 * rank(word)` after a range check: [`LiveWords::rank`] is the whole
//! lookup apart from a compare and a multiply-add. [`LiveWords::select`] (the inverse, used once
//! per destination page while planning) is measured too.
//!
//! Setup, outside every timed region: a live-words bitmap over `words` heap words (1M words = an
//! 8 MiB heap, whose bitmap and prefix sums fit in L2; 32M words = a 256 MiB heap, 4 MiB of
//! bitmap + 2 MiB of prefix sums) filled with a realistic pattern: consecutive objects of 2 to
//! 8 words (uniform), each live with probability 1/2, from a fixed-seed generator; then
//! [`LiveWords::compute_prefix`]; then 1M random query indices (uniform word indices for
//! `rank`, uniform ranks below the live total for `select`).
//!
//! Benchmarks (one criterion iteration = one lookup; the loop also loads the query index from a
//! sequentially read array):
//! - `rank_random/{words}`: independent lookups at random words (the results are summed), so
//!   the CPU overlaps their cache misses: the throughput compaction sees when it forwards the
//!   references of many objects;
//! - `rank_random_dependent/{words}`: each query index is xor-ed with `rank & zero` of the
//!   previous lookup (`zero` is an opaque 0), so the lookups cannot overlap: the latency;
//! - `rank_sequential/{words}`: word indices increasing by 5 (the average object size), as
//!   when compaction walks the source objects in address order;
//! - `select_random/{words}`: independent `select` at random ranks (binary search over the
//!   prefix sums, then a walk over the bits of one bitmap word).
//!
//! Invariants: the bitmap is not modified after `compute_prefix` (the prefix sums stay valid);
//! every result feeds a value passed to `black_box`, so no lookup can be elided; the `rank`
//! and `select` results are cross-checked once (`select(rank(w)) == w` at live words) before
//! anything is timed.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use faultline::testing::heap::bitmap::LiveWords;

#[path = "common/mod.rs"]
mod common;

use common::rng::SplitMix;

/// Queries per index array (a power of two).
const QUERIES: usize = 1 << 20;

/// A live-words bitmap over `words` words: objects of 2..=8 words, each live with p = 1/2.
fn build(words: usize, rng: &mut SplitMix) -> (LiveWords, usize) {
    let lw = LiveWords::new(words);
    let mut w = 0;
    while w < words {
        let end = (w + 2 + rng.below(7)).min(words);
        if rng.next() & 1 == 0 {
            lw.mark_range(w, end);
        }
        w = end;
    }
    let n = lw.bits.num_words();
    let total = lw.compute_prefix(n);
    (lw, total)
}

fn bench_words(c: &mut Criterion, words: usize) {
    let mut rng = SplitMix(0x5eed ^ words as u64);
    let (lw, total) = build(words, &mut rng);
    let bitmap_words = lw.bits.num_words();
    let idx: Vec<u32> = (0..QUERIES).map(|_| rng.below(words) as u32).collect();
    let ranks: Vec<u32> = (0..QUERIES).map(|_| rng.below(total) as u32).collect();

    // Cross-check before timing anything.
    for &w in idx.iter().take(10_000) {
        let w = w as usize;
        if lw.bits.get(w) {
            assert_eq!(lw.select(lw.rank(w), bitmap_words), Some(w));
        }
    }
    assert_eq!(lw.select(total, bitmap_words), None);
    assert_eq!(lw.rank(words - 1) + lw.bits.get(words - 1) as usize, total);

    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(1));
    let lw = &lw;
    let mask = QUERIES - 1;

    g.bench_function(BenchmarkId::new("rank_random", words), |b| {
        b.iter_custom(|iters| {
            let mut acc = 0usize;
            let t = Instant::now();
            for k in 0..iters as usize {
                acc = acc.wrapping_add(lw.rank(idx[k & mask] as usize));
            }
            let e = t.elapsed();
            black_box(acc);
            e
        })
    });

    g.bench_function(BenchmarkId::new("rank_random_dependent", words), |b| {
        b.iter_custom(|iters| {
            let zero = black_box(0usize);
            let mut r = 0usize;
            let t = Instant::now();
            for k in 0..iters as usize {
                r = lw.rank(idx[k & mask] as usize ^ (r & zero));
            }
            let e = t.elapsed();
            black_box(r);
            e
        })
    });

    g.bench_function(BenchmarkId::new("rank_sequential", words), |b| {
        let mut w = 0usize;
        b.iter_custom(|iters| {
            let mut acc = 0usize;
            let t = Instant::now();
            for _ in 0..iters {
                w += 5;
                if w >= words {
                    w -= words;
                }
                acc = acc.wrapping_add(lw.rank(w));
            }
            let e = t.elapsed();
            black_box(acc);
            e
        })
    });

    g.bench_function(BenchmarkId::new("select_random", words), |b| {
        b.iter_custom(|iters| {
            let mut acc = 0usize;
            let t = Instant::now();
            for k in 0..iters as usize {
                acc = acc.wrapping_add(
                    lw.select(ranks[k & mask] as usize, bitmap_words)
                        .unwrap_or(0),
                );
            }
            let e = t.elapsed();
            black_box(acc);
            e
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_words(c, 1 << 20);
    bench_words(c, 32 << 20);
}

criterion_group! {
    name = lookup;
    config = common::criterion_config();
    targets = benches
}
criterion_main!(lookup);

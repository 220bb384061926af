//! Shadow-model stress of the stop-the-world collector: at least 10,000 collections in the
//! default run (stress mode: a collection every few allocations, small heap, verification
//! before and after every collection), 100x more under `FAULTLINE_STRESS=long`; and a
//! four-thread variant with parallel marking where every thread mutates its own graph while
//! any of them triggers collections. Both run again with in-place sliding
//! (`StwCompaction::Slide`), the second time with some of the free-tail releases failing, and
//! once more with a dense prefix left in place (`HeapConfig::dense_prefix`).

mod common;
use common::shadow::{self, drive, Shadow};
use common::stress_scale;
use faultline::testing::heap::inject::{FaultInjector, Rule, Trigger};
use faultline::testing::heap::sys::{Call, Errno, Sys};
use faultline::{Heap, HeapConfig, StwCompaction};
use std::sync::Arc;

fn config(stress_every: u64, gc_threads: usize) -> HeapConfig {
    HeapConfig::with_heap_size(2 << 20).with(|c| {
        c.debug.stress_every = Some(stress_every);
        c.debug.verify = true;
        c.gc_threads = gc_threads;
        // The big reference arrays stay in the large-object space here, so its reference
        // updating is stressed too (the concurrent stresses move them with the heap).
        c.pin_large_ref_objects = true;
    })
}

#[test]
fn ten_thousand_verified_collections_match_the_shadow_model() {
    let heap = Heap::new(config(8, 1)).unwrap();
    let t = shadow::register(&heap);
    let mut m = heap.attach();
    let mut sh = Shadow::new(&mut m, t, 0x5eed, 1);
    let target = stress_scale(10_000);
    drive(&mut m, &mut sh, target, u64::MAX);
    assert!(heap.flips() >= target);
    assert!(
        sh.checks >= target,
        "a model comparison after every collection"
    );
    assert!(
        sh.objects_checked > target * 10,
        "the graph is not trivially small"
    );
    let h = heap.history();
    assert!(h
        .iter()
        .all(|c| c.mmap_family() == 0 && c.registrations() == 0));
    assert!(
        h.iter().any(|c| c.large_after > 0),
        "large objects took part"
    );
    eprintln!(
        "shadow stress: {} verified collections, {} model checks, {} objects compared",
        heap.flips(),
        sh.checks,
        sh.objects_checked
    );
}

#[test]
fn four_threads_with_parallel_marking_match_their_shadow_models() {
    let heap = Heap::new(config(16, 2)).unwrap();
    let t = shadow::register(&heap);
    let target = stress_scale(1_500);
    let totals: Vec<(u64, u64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4u64)
            .map(|i| {
                let heap = heap.clone();
                s.spawn(move || {
                    let mut m = heap.attach();
                    let mut sh = Shadow::new(&mut m, t, 0xabc + i, i + 1);
                    drive(&mut m, &mut sh, target, u64::MAX);
                    (sh.checks, sh.objects_checked)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(heap.flips() >= target);
    assert!(
        totals.iter().all(|&(c, o)| c > 100 && o > 1000),
        "{totals:?}"
    );
    assert!(heap.history().iter().any(|c| c.mutators == 4));
}

/// One shadow-model mutator driving `target` verified collections of `heap`.
fn drive_one(heap: &Heap, seed: u64, target: u64) -> (u64, u64) {
    let t = shadow::register(heap);
    let mut m = heap.attach();
    let mut sh = Shadow::new(&mut m, t, seed, 1);
    drive(&mut m, &mut sh, target, u64::MAX);
    (sh.checks, sh.objects_checked)
}

#[test]
fn sliding_in_place_matches_the_shadow_model() {
    for (threads, pinned) in [(1, true), (2, false)] {
        let heap = Heap::new(config(8, threads).with(|c| {
            c.stw_compaction = StwCompaction::Slide;
            // Unpinned: the big reference arrays slide with everything else.
            c.pin_large_ref_objects = pinned;
        }))
        .unwrap();
        let target = stress_scale(3_000);
        let (checks, objects) = drive_one(&heap, 0x51de + threads as u64, target);
        assert!(heap.flips() >= target);
        assert!(
            checks >= target,
            "a model comparison after every collection"
        );
        assert!(objects > target * 10, "the graph is not trivially small");
        let h = heap.history();
        assert!(h
            .iter()
            .all(|c| c.mmap_family() == 0 && c.registrations() == 0));
        // Every cycle slid in place: nothing was mapped.
        assert!(h
            .iter()
            .all(|c| c.compact_map.is_zero() && c.pages_copied == 0));
        heap.verify().expect("the heap verifies");
    }
}

#[test]
fn sliding_with_a_dense_prefix_matches_the_shadow_model() {
    // A low threshold, so that most slides keep a prefix with dead gaps in it (fillers the
    // verifier walks before and after every collection).
    for (threads, threshold) in [(1, 0.8), (2, 0.95)] {
        let heap = Heap::new(config(8, threads).with(|c| {
            c.stw_compaction = StwCompaction::Slide;
            c.pin_large_ref_objects = false;
            c.dense_prefix = Some(threshold);
        }))
        .unwrap();
        let target = stress_scale(3_000);
        let (checks, objects) = drive_one(&heap, 0xde5e + threads as u64, target);
        assert!(heap.flips() >= target);
        assert!(checks >= target);
        assert!(objects > target * 10, "the graph is not trivially small");
        let h = heap.history();
        let with_gaps = h.iter().filter(|c| c.dense_dead_bytes > 0).count();
        assert!(
            with_gaps * 10 >= h.len(),
            "threshold {threshold}: only {with_gaps} of {} slides kept dead gaps",
            h.len()
        );
        eprintln!(
            "dense prefix {threshold}: {with_gaps} of {} slides kept dead gaps",
            h.len()
        );
        for c in &h {
            assert!(
                c.dense_dead_bytes as f64 <= (1.0 - threshold) * (c.dense_kept_pages * 4096) as f64,
                "cycle {}: {} dead bytes in {} pages",
                c.cycle,
                c.dense_dead_bytes,
                c.dense_kept_pages
            );
        }
        heap.verify().expect("the heap verifies");
    }
}

#[test]
fn sliding_survives_failed_tail_releases() {
    // Three `madvise` calls in a row fail, twice: a tail release (which tries 3 times)
    // gives up, the slid half keeps its free tail, zeroed, and the allocator hands it out
    // again (what the shadow model and the verifier check). Unpinned, so that the only
    // releases are tail releases; and the whole tail is released (none kept as fresh memory).
    let inj = Arc::new(
        FaultInjector::new(
            vec![
                Rule::new(
                    Call::Madvise,
                    Errno::EIO,
                    Trigger::Range { start: 2, count: 3 },
                ),
                Rule::new(
                    Call::Madvise,
                    Errno::EIO,
                    Trigger::Range { start: 9, count: 3 },
                ),
            ],
            0x7a11,
        )
        .disarmed(),
    );
    let heap = Heap::new(config(8, 1).with(|c| {
        c.stw_compaction = StwCompaction::Slide;
        c.pin_large_ref_objects = false;
        c.recycle_old_half = false;
        c.debug.sys = Sys::new(inj.clone());
    }))
    .unwrap();
    inj.arm();
    let target = stress_scale(1_500);
    let (checks, _) = drive_one(&heap, 0xfa11, target);
    inj.disarm();
    assert!(heap.flips() >= target);
    assert!(checks >= target);
    assert_eq!(
        inj.injected(Call::Madvise),
        6,
        "two tail releases failed ({} madvise calls)",
        inj.seen(Call::Madvise)
    );
    heap.verify()
        .expect("the heap verifies after failed releases");
}

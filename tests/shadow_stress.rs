//! Shadow-model stress of the stop-the-world collector: at least 10,000 collections in the
//! default run (stress mode: a collection every few allocations, small heap, verification
//! before and after every collection), 100x more under `FAULTLINE_STRESS=long`; and a
//! four-thread variant with parallel marking where every thread mutates its own graph while
//! any of them triggers collections.

mod common;
use common::shadow::{self, drive, Shadow};
use common::stress_scale;
use faultline::{Heap, HeapConfig};

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

//! The prefill thread's yields (`HeapConfig::prefill_yield_us`): with an interval of 1 µs it
//! yields between chunks while it is ahead of the allocators; with 0 it never yields. Counts
//! only (`faultline::gc_thread_yields`, process-wide: one test in this binary, so no other
//! heap yields meanwhile), no timing.

mod common;
use common::*;
use faultline::{gc_thread_yields, GcMode, Heap, HeapConfig};

/// Run a concurrent heap with prefill and the given yield interval; the prefill stats' chunks
/// and the yields counted meanwhile. None where concurrent mode is unavailable.
fn run(yield_us: u32) -> Option<(u64, u64)> {
    let h = Heap::new(HeapConfig::with_heap_size(64 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.prefill_bytes = 4 << 20;
        c.prefill_yield_us = yield_us;
        c.debug.verify = true;
    }))
    .unwrap();
    if h.mode_info().mode != GcMode::Concurrent {
        return None;
    }
    let t = register(&h);
    let before = gc_thread_yields();
    ring_churn(&h, &t, 96);
    h.wait_for_compaction();
    let chunks = h.prefill_stats().chunks;
    drop(h);
    // The prefill thread ends within 50 ms of the heap's drop; it makes no chunk (and so
    // never yields) once the heap is gone.
    std::thread::sleep(std::time::Duration::from_millis(200));
    Some((chunks, gc_thread_yields() - before))
}

#[test]
fn the_prefill_thread_yields_between_chunks_only_when_asked() {
    let Some((chunks, yields)) = run(1) else {
        eprintln!("skipped: no concurrent mode here");
        return;
    };
    assert!(chunks > 0, "no chunk was prefilled");
    assert!(
        yields > 0,
        "{chunks} chunks, no yield with prefill_yield_us = 1"
    );
    assert!(yields <= chunks, "{yields} yields for {chunks} chunks");
    let (chunks, yields) = run(0).expect("concurrent mode");
    assert!(chunks > 0, "no chunk was prefilled");
    assert_eq!(yields, 0, "prefill_yield_us = 0 yielded ({chunks} chunks)");
}

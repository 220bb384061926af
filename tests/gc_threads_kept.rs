//! A concurrent cycle starts no thread once its heap's GC thread and that thread's crew of
//! helpers exist, nor does a stop-the-world cycle once its heap's pause helpers exist (each
//! thread start and end maps and unmaps memory under the `mmap_lock` held for writing);
//! dropping the heap ends them.

mod common;
use common::*;
use faultline::{collector_threads_started, GcMode, Heap, HeapConfig};

/// This process's threads.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The ids of this process's threads named `name`, sorted (`faultline-gc`: a concurrent heap's
/// GC thread and its helpers, which carry its name; `faultline-pause`: the helpers of a
/// stop-the-world heap's parallel phases).
fn named(name: &str) -> Vec<u32> {
    let mut tids: Vec<u32> = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    tids
}

/// One test (the count of threads started is process-wide): a concurrent heap (its GC thread
/// and at least two helpers: markers and compaction workers), then a stop-the-world one (its
/// pause helpers: parallel marking and slide).
#[test]
fn cycles_reuse_the_collectors_threads() {
    if !uffd_or_skip("cycles_reuse_the_collectors_threads") {
        return;
    }
    nine_cycles_reuse_the_threads_of_the_first_three(GcMode::Concurrent, "faultline-gc", 3);
    nine_cycles_reuse_the_threads_of_the_first_three(GcMode::StopTheWorld, "faultline-pause", 1);
}

/// Nine cycles of a heap in `mode` with two GC threads and two compaction workers: after the
/// first three, the threads named `name` (at least `kept_min` of them) run the rest, and no
/// thread is started or ended; dropping the heap ends its threads.
fn nine_cycles_reuse_the_threads_of_the_first_three(mode: GcMode, name: &str, kept_min: usize) {
    let before = threads();
    let heap = Heap::new(HeapConfig::with_heap_size(32 << 20).with(|c| {
        c.mode = mode;
        // Helpers in both phases (marking, compaction).
        c.gc_threads = 2;
        c.compaction_workers = Some(2);
        // (Not `debug.verify`: a verification at a concurrent cycle's end keeps the GC thread
        // busy while the next cycle may start, which then runs on a thread of its own.)
    }))
    .unwrap();
    assert_eq!(heap.mode_info().mode, mode);
    let t = register(&heap);
    let mut m = heap.attach();
    let cycle = |m: &mut faultline::Mutator| {
        m.stack_truncate(0);
        tree(m, &t, 14, 7);
        list(m, &t, 5000);
        m.collect().unwrap();
        assert_eq!(check_tree(m, m.stack_get(0), 14, 7), (1 << 14) - 1);
    };
    for _ in 0..3 {
        cycle(&mut m);
    }
    let (started, running, kept) = (collector_threads_started(), threads(), named(name));
    assert!(
        kept.len() >= kept_min,
        "{mode:?}: at least {kept_min} threads named {name} outlive the cycles: {kept:?}"
    );
    for _ in 0..6 {
        cycle(&mut m);
    }
    assert_eq!(
        collector_threads_started(),
        started,
        "{mode:?}: six more cycles started no thread"
    );
    assert_eq!(threads(), running, "{mode:?}: and ended none");
    assert_eq!(named(name), kept, "{mode:?}: the same threads ran them");
    let h = heap.history();
    assert_eq!(h.len(), 9);
    assert!(h.iter().all(|c| c.mode == mode));
    m.verify().unwrap();
    drop(m);
    drop(heap);
    // Dropping the heap wakes its GC thread, which ends with its crew; the pause helpers are
    // ended with the heap.
    let t0 = std::time::Instant::now();
    while threads() > before && t0.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        threads(),
        before,
        "{mode:?}: the heap's threads ended with it"
    );
}

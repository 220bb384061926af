//! `HeapConfig::gc_thread_batch`: the background GC threads run in the `SCHED_BATCH` policy
//! (a thread that wakes up never preempts a running mutator), and only when it is on. The GC
//! thread reports its own policy from the mark hook (it runs there); the prefill thread takes
//! the same path (`background::enter`). The mode info states the policy.

mod common;
use common::*;
use faultline::{GcMode, Heap, HeapConfig, MarkPoint};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Run one concurrent cycle with `batch`; return the GC thread's policy at the mark hook and
/// the mode info's GC-threads line.
fn gc_thread_policy(batch: bool) -> (i32, String) {
    let (tx, rx) = mpsc::channel::<i32>();
    let tx = Mutex::new(tx);
    let hook = Arc::new(move |p: MarkPoint| {
        if p == MarkPoint::BeforeRemark {
            let _ = tx.lock().unwrap().send(policy_of(0));
        }
    });
    let heap = Heap::new(HeapConfig::with_heap_size(4 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.gc_thread_batch = batch;
        c.gc_thread_idle = false;
        c.debug.mark_hook = Some(hook);
    }))
    .unwrap();
    let line = gc_threads_line(&heap);
    let t = register(&heap);
    let mut m = heap.attach();
    list(&mut m, &t, 2000);
    let _root = m.pop().unwrap();
    m.start_collection().unwrap();
    let policy = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    m.wait_for_cycle().unwrap();
    heap.wait_for_compaction();
    heap.verify().unwrap();
    drop(m);
    (policy, line)
}

#[test]
fn the_gc_thread_runs_batch_only_when_asked() {
    if !uffd_or_skip("the_gc_thread_runs_batch_only_when_asked") {
        return;
    }
    // SCHED_OTHER is this thread's policy (the test harness's); the GC thread starts from it.
    assert_eq!(policy_of(0), libc::SCHED_OTHER);
    let batched0 = faultline::gc_threads_batched();
    let (on, line_on) = gc_thread_policy(true);
    assert_eq!(on, libc::SCHED_BATCH, "gc_thread_batch on: {line_on}");
    assert!(line_on.contains("SCHED_BATCH"), "{line_on}");
    assert!(faultline::gc_threads_batched() > batched0);
    let (off, line_off) = gc_thread_policy(false);
    assert_eq!(off, libc::SCHED_OTHER, "gc_thread_batch off: {line_off}");
    assert!(!line_off.contains("SCHED_BATCH"), "{line_off}");
}

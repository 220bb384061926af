//! `HeapConfig::gc_catchup_nice`: the GC thread runs raised while the markers alone are behind
//! the pacer's schedule. The GC thread is held in the mark hook at its first traced object
//! while the mutator allocates a quarter of the cycle's headroom (no assists: they are off),
//! so that marking is behind when it resumes; the hook reads the GC thread's nice value again
//! after it has traced past the catch-up check. With the knob at 0 it must stay unchanged.

mod common;
use common::*;
use faultline::{GcMode, Heap, HeapConfig, MarkPoint};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Whether this process may set a nice value below the one a thread started with.
fn may_raise() -> bool {
    std::thread::spawn(|| {
        let tid = gettid();
        let n = nice_of(tid);
        // SAFETY: setpriority on this thread's own id.
        n > -20
            && unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, n - 1) } == 0
            && unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, n) } == 0
    })
    .join()
    .unwrap()
}

/// The GC thread's nice value at the start of marking and after 3,000 objects traced, with
/// marking behind between the two, under `catchup_nice`.
fn nice_while_behind(catchup_nice: u8) -> (i32, i32) {
    let (at_hook_tx, at_hook_rx) = mpsc::channel::<i32>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (at_hook_tx, release_rx) = (Mutex::new(at_hook_tx), Mutex::new(release_rx));
    let hook = Arc::new(move |p: MarkPoint| {
        if p == MarkPoint::Traced(1) || p == MarkPoint::Traced(3000) {
            let _ = at_hook_tx.lock().unwrap().send(nice_of(gettid()));
        }
        if p == MarkPoint::Traced(1) {
            let _ = release_rx
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(60));
        }
    });
    let heap = Heap::new(HeapConfig::with_heap_size(64 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        // Only the requested cycle.
        c.min_trigger_bytes = 64 << 20;
        c.gc_threads = 1;
        c.gc_thread_nice = 0;
        c.mark_assists = false;
        c.gc_catchup_nice = catchup_nice;
        c.debug.mark_hook = Some(hook);
    }))
    .unwrap();
    let t = register(&heap);
    let mut m = heap.attach();
    // 10,000 live pairs to trace, and 8 MiB of garbage in use: the mark goal of a first cycle
    // is half of what is in use.
    list(&mut m, &t, 10_000);
    let root = m.root(m.pop().unwrap());
    for _ in 0..(8 << 20) / 24 {
        m.alloc(t.pair, 0).unwrap();
    }
    m.start_collection().unwrap();
    let at_start = at_hook_rx.recv_timeout(Duration::from_secs(60)).unwrap();
    // Marking is held at its first object: allocate 4 MiB, a quarter of the deadline.
    for i in 0..(4 << 20) / 24 {
        m.alloc(t.pair, 0).unwrap();
        if i % 4096 == 0 {
            m.safepoint();
        }
    }
    release_tx.send(()).unwrap();
    let later = at_hook_rx.recv_timeout(Duration::from_secs(60)).unwrap();
    m.wait_for_cycle().unwrap();
    assert_eq!(read_list(&m, root.value(&m)).len(), 10_000);
    (at_start, later)
}

#[test]
fn a_gc_thread_behind_schedule_is_raised() {
    if !uffd_or_skip("a_gc_thread_behind_schedule_is_raised") {
        return;
    }
    let raise = may_raise();
    let (start, behind) = nice_while_behind(5);
    if raise {
        assert_eq!(
            behind,
            start - 5,
            "behind schedule: raised by gc_catchup_nice"
        );
    } else {
        println!("SKIPPED: raising a nice value needs CAP_SYS_NICE or RLIMIT_NICE");
        assert_eq!(behind, start);
    }
    let (start, behind) = nice_while_behind(0);
    assert_eq!(behind, start, "gc_catchup_nice 0: never raised");
}

//! `HeapConfig::gc_thread_boost`: a lowered GC thread runs at its low priority while no
//! mutator waits on it, and at the priority it started with while one does (no priority
//! inversion). The GC thread is held in the mark hook (before the remark) so that both states
//! are observed deterministically: first with nobody waiting, then while the mutator waits for
//! the end of the cycle (`Mutator::wait_for_cycle`). Nice values are read back with
//! `getpriority` on the GC thread's id.

mod common;
use common::*;
use faultline::{GcMode, Heap, HeapConfig, MarkPoint};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether this process may lower a nice value it raised (what boosting needs), probed on a
/// throwaway thread.
fn may_boost() -> bool {
    std::thread::spawn(|| {
        let tid = gettid();
        let n = nice_of(tid);
        // SAFETY: setpriority on this thread's own id.
        n < 19
            && unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, n + 1) } == 0
            && unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, n) } == 0
    })
    .join()
    .unwrap()
}

#[test]
fn a_waiting_mutator_boosts_the_lowered_gc_thread() {
    if !uffd_or_skip("a_waiting_mutator_boosts_the_lowered_gc_thread") {
        return;
    }
    let base = nice_of(gettid());
    let boostable = may_boost();
    // The GC thread reports its id and nice value at the hook, then waits for `release`.
    let (at_hook_tx, at_hook_rx) = mpsc::channel::<(libc::id_t, i32)>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (at_hook_tx, release_rx) = (Mutex::new(at_hook_tx), Mutex::new(release_rx));
    let hook = Arc::new(move |p: MarkPoint| {
        if p == MarkPoint::BeforeRemark {
            let tid = gettid();
            let _ = at_hook_tx.lock().unwrap().send((tid, nice_of(tid)));
            let _ = release_rx
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(60));
        }
    });
    let heap = Heap::new(HeapConfig::with_heap_size(4 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.gc_threads = 1;
        c.gc_thread_nice = 5;
        c.gc_thread_boost = true;
        c.debug.mark_hook = Some(hook);
    }))
    .unwrap();
    let info = heap.mode_info();
    let line = info
        .reasons
        .iter()
        .find(|r| r.starts_with("gc threads:"))
        .expect("the mode info states the GC threads' priority");
    assert_eq!(line.contains("boosted back"), boostable, "{line}");
    let t = register(&heap);
    let mut m = heap.attach();
    list(&mut m, &t, 2000);
    let _root = m.pop().unwrap();
    let (boosts0, _, failed0) = faultline::gc_thread_boosts();
    m.start_collection().unwrap();
    let (gc_tid, nice_unwaited) = at_hook_rx.recv_timeout(Duration::from_secs(60)).unwrap();
    let low = if boostable { (base + 5).min(19) } else { base };
    assert_eq!(
        nice_unwaited, low,
        "no mutator waits: the GC thread runs lowered"
    );
    // A watcher reads the GC thread's nice value while the mutator waits for the cycle, then
    // lets the GC thread go on.
    let watcher = std::thread::spawn(move || {
        let t0 = Instant::now();
        let mut seen = nice_of(gc_tid);
        while seen != base && t0.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(1));
            seen = nice_of(gc_tid);
        }
        release_tx.send(()).unwrap();
        seen
    });
    m.wait_for_cycle().unwrap();
    let seen_waiting = watcher.join().unwrap();
    assert_eq!(
        seen_waiting, base,
        "a mutator waits: the GC thread runs at its starting priority"
    );
    let (boosts1, registered, failed1) = faultline::gc_thread_boosts();
    if boostable {
        assert!(boosts1 > boosts0, "boosted at least once");
    }
    assert_eq!(failed1, failed0, "no failed setpriority");
    let _ = registered;
    drop(m);
}

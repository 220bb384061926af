//! `HeapConfig::gc_catchup_nice`: the GC thread runs raised while the markers alone are behind
//! the pacer's schedule. The GC thread is held in the mark hook at its first traced object
//! while the mutator allocates a quarter of the cycle's headroom (no assists: they are off),
//! so that marking is behind when it resumes; the hook reads the GC thread's nice value again
//! after it has traced past the catch-up check. With the knob at 0 it must stay unchanged.
//!
//! `HeapConfig::gc_compact_nice`: the compaction workers run raised while they fill pages. A
//! worker is held on its first claimed page (`DebugConfig::worker_stall`) while the test reads
//! the nice values of the collector's threads from `/proc/self/task`.

mod common;
use common::*;
use faultline::{CyclePhase, GcMode, Heap, HeapConfig, MarkPoint};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
        c.gc_thread_idle = false; // idle-mode threads are the registry's (not raised)
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

/// `measure(steps)` is a thread's nice value before and while `steps` should raise it: raised by
/// `steps` where this process may raise a nice value (else left alone, said as a skip), and
/// never raised at 0 steps.
fn check_raise(measure: impl Fn(u8) -> (i32, i32), steps: u8, knob: &str) {
    let (start, seen) = measure(steps);
    if may_raise() {
        assert_eq!(seen, start - i32::from(steps), "raised by {knob}");
    } else {
        println!("SKIPPED: raising a nice value needs CAP_SYS_NICE or RLIMIT_NICE");
        assert_eq!(seen, start, "a refused raise leaves the priority alone");
    }
    let (start, seen) = measure(0);
    assert_eq!(seen, start, "{knob} 0: never raised");
}

#[test]
fn a_gc_thread_behind_schedule_is_raised() {
    if !uffd_or_skip("a_gc_thread_behind_schedule_is_raised") {
        return;
    }
    check_raise(nice_while_behind, 5, "gc_catchup_nice");
}

/// The lowest nice value of this process's threads named `faultline-gc` (the heap's GC thread
/// and the helpers of its crew, compaction workers among them, which carry its name), if any.
fn lowest_gc_nice() -> Option<i32> {
    let mut lowest = None;
    for e in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "tid (comm) state ppid ...": nice is the 19th field, the 17th after the comm.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != "faultline-gc" {
            continue;
        }
        let nice = stat[close + 1..]
            .split_whitespace()
            .nth(16)
            .and_then(|f| f.parse::<i32>().ok());
        if let Some(n) = nice {
            lowest = Some(lowest.map_or(n, |l: i32| l.min(n)));
        }
    }
    lowest
}

/// The lowest nice value of the collector's threads while a compaction worker is held on its
/// first page, under `compact_nice`; and the nice value the test thread (whose priority the
/// GC thread inherits) has.
fn nice_while_compacting(compact_nice: u8) -> (i32, i32) {
    let heap = Heap::new(HeapConfig::with_heap_size(64 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.min_trigger_bytes = 64 << 20;
        c.gc_threads = 1;
        c.compaction_workers = Some(1);
        c.gc_thread_nice = 0;
        c.gc_thread_idle = false; // idle-mode threads are the registry's (not raised)
        c.gc_catchup_nice = 0;
        c.gc_compact_nice = compact_nice;
        c.debug.worker_stall = Some(Duration::from_millis(600));
    }))
    .unwrap();
    let t = register(&heap);
    let mut m = heap.attach();
    list(&mut m, &t, 20_000);
    let root = m.root(m.pop().unwrap());
    let start = nice_of(gettid());
    m.start_collection().unwrap();
    // The mutator takes no fault (it reads nothing), so the worker holds page 0 for its stall.
    let t0 = Instant::now();
    let mut lowest = i32::MAX;
    while t0.elapsed() < Duration::from_secs(30) {
        if heap.phase() == CyclePhase::Compacting {
            // Inside the worker's stall: sample for a while.
            let t1 = Instant::now();
            while t1.elapsed() < Duration::from_millis(200) {
                lowest = lowest.min(lowest_gc_nice().expect("the GC threads' nice values"));
                std::thread::sleep(Duration::from_millis(5));
            }
            break;
        }
        m.safepoint();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_ne!(lowest, i32::MAX, "the cycle never reached its compaction");
    m.wait_for_cycle().unwrap();
    assert_eq!(read_list(&m, root.value(&m)).len(), 20_000);
    (start, lowest)
}

#[test]
fn compaction_workers_run_raised() {
    if !uffd_or_skip("compaction_workers_run_raised") {
        return;
    }
    check_raise(nice_while_compacting, 6, "gc_compact_nice");
}

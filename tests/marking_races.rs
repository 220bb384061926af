//! The classic lost-object races of concurrent marking, forced with a hook that parks the
//! marker at chosen points while the mutator mutates:
//! 1. a reference moved from an unscanned object into an already-scanned one;
//! 2. a reference held only in a root while its last heap copy is overwritten;
//! 3. objects (small and large) allocated during marking.
//!
//! Each scenario runs repeatedly at several park points, for both barriers (SATB and the
//! barrier-free wp_async mode), with checkmark and verification on, with one concurrent
//! marker and with two sharing the mark by work stealing (`gc_threads = 2`: the helper keeps
//! marking while the GC thread's marker is parked). With the barrier disabled (a test-only
//! switch), checkmark catches scenarios 1 and 2 (one marker, so that the parked marker
//! really leaves the race window open): run in a child process, which must die reporting it.

mod common;
use common::gate::Gate;
use common::*;
use faultline::MarkPoint;
use faultline::{Barrier, GcMode, Heap, HeapConfig, Mutator, Value};
use std::cell::Cell;
use std::sync::Arc;

thread_local! {
    /// `gc_threads` of the heaps this test thread builds (each test runs on its own thread).
    static THREADS: Cell<usize> = const { Cell::new(1) };
}

/// Run `f` once with one concurrent marker and once with two.
fn with_markers(mut f: impl FnMut(usize)) {
    for n in [1, 2] {
        THREADS.with(|t| t.set(n));
        f(n);
    }
}

fn heap(gate: &Arc<Gate>, broken: bool, barrier: Barrier) -> Heap {
    heap_pinning(gate, broken, barrier, true)
}

fn heap_pinning(gate: &Arc<Gate>, broken: bool, barrier: Barrier, pin: bool) -> Heap {
    Heap::new(HeapConfig::with_heap_size(4 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        // Large vectors in the non-moving space (by default): the scenarios cover its barrier
        // paths too.
        c.pin_large_ref_objects = pin;
        c.barrier = barrier;
        c.debug.checkmark = true;
        c.debug.verify = true;
        c.debug.mark_hook = Some(gate.hook());
        // SAFETY: `broken` runs only prove that checkmark catches the lost objects; those heaps
        // are never read after the check fails.
        unsafe { c.debug.set_disable_barrier(broken) };
        c.gc_threads = if broken { 1 } else { THREADS.with(Cell::get) };
    }))
    .unwrap()
}

/// Start a cycle and run `mutate` while the marker is parked at `at`.
fn during_marking(m: &mut Mutator, gate: &Gate, at: MarkPoint, mutate: impl FnOnce(&mut Mutator)) {
    gate.arm(at);
    m.start_collection().unwrap(); // the initial-mark pause; marking continues on the GC thread
    gate.wait_parked();
    mutate(m);
    gate.release();
    m.wait_for_cycle().unwrap();
}

const BARRIERS: [Barrier; 2] = [Barrier::Satb, Barrier::WpAsync];

/// Scenario 1. Returns the value read back through A.
fn moved_into_scanned(broken: bool, at: MarkPoint, barrier: Barrier) -> i64 {
    let gate = Arc::new(Gate::default());
    let heap = heap(&gate, broken, barrier);
    assert_eq!(heap.mode_info().barrier, Some(barrier));
    let t = register(&heap);
    let mut m = heap.attach();
    let c = pair(&mut m, &t, fix(42), Value::NULL);
    m.push(c);
    let c = m.pop().unwrap();
    let b = pair(&mut m, &t, c, Value::NULL);
    m.push(b); // stack[0] = B
    let a = pair(&mut m, &t, Value::NULL, Value::NULL);
    m.push(a); // stack[1] = A: the last root, so the marker scans it first
    during_marking(&mut m, &gate, at, |m| {
        let (b, a) = (m.stack_get(0), m.stack_get(1));
        let c = m.local(b).unwrap().get(0);
        m.local(a).unwrap().set(0, c); // into the scanned object
        m.local(b).unwrap().set(0, Value::NULL); // deleted from the unscanned one
    });
    let a = m.local(m.stack_get(1)).unwrap();
    let c = m.local(a.get(0)).expect("C survived");
    unfix(c.get(0))
}

/// Scenario 1 with a large object (non-moving space, its own dirty tracking in wp_async mode)
/// as the already-scanned holder.
fn moved_into_scanned_large(at: MarkPoint, barrier: Barrier, pin: bool) -> i64 {
    let gate = Arc::new(Gate::default());
    let heap = heap_pinning(&gate, false, barrier, pin);
    let t = register(&heap);
    let mut m = heap.attach();
    let c = pair(&mut m, &t, fix(43), Value::NULL);
    let b = pair(&mut m, &t, c, Value::NULL);
    m.push(b); // stack[0] = B -> C
    let a = m.alloc(t.vector, 3000).unwrap(); // 24 KB: several pages
    m.push(a); // stack[1] = A: the last root, so the marker scans it first
    during_marking(&mut m, &gate, at, |m| {
        let (b, a) = (m.stack_get(0), m.stack_get(1));
        let c = m.local(b).unwrap().get(0);
        m.local(a).unwrap().set(2999, c); // into the scanned large object (its last page)
        m.local(b).unwrap().set(0, Value::NULL); // deleted from the unscanned one
    });
    let a = m.local(m.stack_get(1)).unwrap();
    let c = m.local(a.get(2999)).expect("C survived");
    unfix(c.get(0))
}

/// Scenario 2.
fn root_only(broken: bool, at: MarkPoint, barrier: Barrier) -> i64 {
    let gate = Arc::new(Gate::default());
    let heap = heap(&gate, broken, barrier);
    let t = register(&heap);
    let mut m = heap.attach();
    let c = pair(&mut m, &t, fix(7), Value::NULL);
    let a = pair(&mut m, &t, c, Value::NULL);
    m.push(a); // stack[0] = A -> C
    during_marking(&mut m, &gate, at, |m| {
        let a = m.stack_get(0);
        let c = m.local(a).unwrap().get(0);
        m.push(c); // C now only in a root...
        m.local(a).unwrap().set(0, Value::NULL); // ...its last heap copy overwritten
    });
    unfix(m.local(m.stack_get(1)).expect("C survived").get(0))
}

#[test]
fn a_reference_moved_into_a_scanned_object_is_not_lost() {
    if !uffd_or_skip("a_reference_moved_into_a_scanned_object_is_not_lost") {
        return;
    }
    with_markers(|n| {
        for barrier in BARRIERS {
            for round in 0..10 {
                for at in [
                    MarkPoint::Started,
                    MarkPoint::Traced(1),
                    MarkPoint::Traced(2),
                ] {
                    let got = moved_into_scanned(false, at, barrier);
                    assert_eq!(got, 42, "{barrier:?} x{n} round {round} at {at:?}");
                }
            }
        }
    });
}

#[test]
fn a_reference_moved_into_a_scanned_large_object_is_not_lost() {
    if !uffd_or_skip("a_reference_moved_into_a_scanned_large_object_is_not_lost") {
        return;
    }
    with_markers(|n| {
        for barrier in BARRIERS {
            for round in 0..10 {
                for at in [MarkPoint::Started, MarkPoint::Traced(1)] {
                    // Pinned (large-object space) and moving (a multi-page array in the moving
                    // space, whose written page alone is rescanned in wp_async mode).
                    for pin in [true, false] {
                        let got = moved_into_scanned_large(at, barrier, pin);
                        assert_eq!(
                            got, 43,
                            "{barrier:?} x{n} pin {pin} round {round} at {at:?}"
                        );
                    }
                }
            }
        }
    });
}

#[test]
fn a_reference_held_only_in_a_root_is_not_lost() {
    if !uffd_or_skip("a_reference_held_only_in_a_root_is_not_lost") {
        return;
    }
    with_markers(|n| {
        for barrier in BARRIERS {
            for round in 0..10 {
                for at in [MarkPoint::Started, MarkPoint::Traced(1)] {
                    assert_eq!(
                        root_only(false, at, barrier),
                        7,
                        "{barrier:?} x{n} round {round} at {at:?}"
                    );
                }
            }
        }
    });
}

#[test]
fn objects_allocated_during_marking_survive() {
    if !uffd_or_skip("objects_allocated_during_marking_survive") {
        return;
    }
    for round in 0..40 {
        // Rounds 20..40 with two markers.
        THREADS.with(|t| t.set(1 + round / 20));
        let gate = Arc::new(Gate::default());
        let heap = heap(&gate, false, BARRIERS[round % 2]);
        let t = register(&heap);
        let mut m = heap.attach();
        tree(&mut m, &t, 8, 1); // stack[0]: old data for the marker to chew on
        let at = if round % 2 == 0 {
            MarkPoint::Started
        } else {
            MarkPoint::Traced(50)
        };
        during_marking(&mut m, &gate, at, |m| {
            // Enough allocation to retire several buffers (the black-buffer walk) ...
            list(m, &t, 5000); // stack[1]
            for _ in 0..20_000 {
                m.alloc(t.pair, 0).unwrap();
            }
            // ... a large object allocated black ...
            let big = m.alloc(t.vector, 4000).unwrap();
            let l1 = m.stack_get(1);
            m.local(big).unwrap().set(3999, l1);
            m.push(big); // stack[2]
                         // ... and a new object stored into an old one.
            let n = pair(m, &t, fix(99), Value::NULL);
            let root = m.local(m.stack_get(0)).unwrap();
            root.set(0, n);
        });
        m.start_collection().unwrap(); // and one more full cycle over the result
        m.wait_for_cycle().unwrap();
        let big = m.local(m.stack_get(2)).unwrap();
        assert_eq!(read_list(&m, big.get(3999)), (0..5000).collect::<Vec<_>>());
        let root = m.local(m.stack_get(0)).unwrap();
        assert_eq!(unfix(m.local(root.get(0)).unwrap().get(0)), 99);
        assert_eq!(read_list(&m, m.stack_get(1)).len(), 5000);
        m.verify().unwrap();
    }
}

/// Runs only in a child process: scenario 1 or 2 with the barrier disabled.
#[test]
fn broken_barrier_child() {
    let Ok(which) = std::env::var("FAULTLINE_BROKEN_BARRIER") else {
        return;
    };
    let barrier = if which.ends_with("wp") {
        Barrier::WpAsync
    } else {
        Barrier::Satb
    };
    if which.starts_with("moved") {
        moved_into_scanned(true, MarkPoint::Traced(1), barrier);
    } else {
        root_only(true, MarkPoint::Started, barrier);
    }
}

#[test]
fn without_the_barrier_checkmark_catches_the_loss() {
    if !uffd_or_skip("without_the_barrier_checkmark_catches_the_loss") {
        return;
    }
    if std::env::var_os("FAULTLINE_BROKEN_BARRIER").is_some() {
        return;
    }
    for which in ["moved", "root", "moved-wp", "root-wp"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "broken_barrier_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FAULTLINE_BROKEN_BARRIER", which)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{which}: a lost object must not go unnoticed"
        );
        assert!(
            err.contains("checkmark"),
            "{which}: checkmark reports it: {err}"
        );
    }
}

//! Misuse of the embedding API, one test per case of issue 13's "Why" that has a defined
//! outcome: a returned error, or a panic whose message names the mistake; never a hang, never
//! another object.
//!
//! Every case runs in a child process (this test binary re-executed with `MISUSE_CASE` naming
//! the case, `--exact` selecting the test): the parent checks the child's exit status and, for
//! panics, the message on its stderr. A watchdog kills a child that runs longer than
//! [`WATCHDOG`], so a hang fails the test instead of stalling CI. Cases whose outcome is an
//! error are checked inside the child (a failed assertion fails its exit status).
//!

mod common;
use common::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faultline::{
    AttachError, Callback, CollectError, CyclePhase, GcMode, GlobalRoot, Heap, HeapConfig,
    RootSlot, RootSource, Value,
};

/// The environment variable naming the case a child process runs.
const CASE_VAR: &str = "MISUSE_CASE";
/// A child running longer than this is killed: the case hangs.
const WATCHDOG: Duration = Duration::from_secs(30);

/// How a child ended.
struct Child {
    status: std::process::ExitStatus,
    stderr: String,
}

/// Run `case` (the name of a test of this binary) in a child process under the watchdog.
fn run_child(case: &str) -> Child {
    let (status, stderr) = child::run_case(case, CASE_VAR, WATCHDOG);
    Child { status, stderr }
}

/// In the child (this process runs `case`): run `body`, say on stderr that it returned if it
/// was expected not to (`unexpected`: "panicking", "aborting"), and return `None`. In the
/// parent: run the child under the watchdog and return how it ended.
fn in_child(case: &str, body: impl FnOnce(), unexpected: Option<&str>) -> Option<Child> {
    if std::env::var(CASE_VAR).as_deref() == Ok(case) {
        body();
        if let Some(what) = unexpected {
            eprintln!("MISUSE: {case} returned without {what}");
        }
        return None;
    }
    Some(run_child(case))
}

/// In the child: run `body`. In the parent: run the child and require that it panicked with a
/// message containing every one of `needles`.
fn expect_panic(case: &str, needles: &[&str], body: impl FnOnce()) {
    let Some(c) = in_child(case, body, Some("panicking")) else {
        return;
    };
    assert!(
        !c.status.success(),
        "{case}: expected a panic, the child succeeded; stderr:\n{}",
        c.stderr
    );
    assert!(
        c.stderr.contains("panicked"),
        "{case}: the child failed without a panic ({}); stderr:\n{}",
        c.status,
        c.stderr
    );
    for n in needles {
        assert!(
            c.stderr.contains(n),
            "{case}: the panic message does not say {n:?}; stderr:\n{}",
            c.stderr
        );
    }
}

/// In the child: run `body` (its assertions check the defined outcome). In the parent: require
/// that the child succeeded within the watchdog.
fn expect_ok(case: &str, body: impl FnOnce()) {
    let _ = run_ok(case, body);
}

/// In the child: run `body` and return `None`. In the parent: run the child, require that it
/// succeeded within the watchdog, and return it.
fn run_ok(case: &str, body: impl FnOnce()) -> Option<Child> {
    let c = in_child(case, body, None)?;
    assert!(
        c.status.success(),
        "{case}: the child failed ({}); stderr:\n{}",
        c.status,
        c.stderr
    );
    Some(c)
}

/// Whether `case` can run: always in its child (the parent checked), in the parent only where
/// userfaultfd works (otherwise it says why it skips).
fn uffd_here(case: &str) -> bool {
    std::env::var(CASE_VAR).is_ok() || uffd_or_skip(case)
}

fn stw(bytes: usize) -> HeapConfig {
    HeapConfig::with_heap_size(bytes).mode(GcMode::StopTheWorld)
}

fn concurrent(bytes: usize) -> HeapConfig {
    HeapConfig::with_heap_size(bytes).mode(GcMode::Concurrent)
}

// ---------------------------------------------------------------------------------------------
// Handles with no owner.

#[test]
fn root_used_after_its_mutator_was_dropped() {
    expect_panic(
        "root_used_after_its_mutator_was_dropped",
        &["Root::get", "was dropped", "a Root dies with its Mutator"],
        || {
            let heap = heap(4 << 20);
            let t = register(&heap);
            let mut m = heap.attach();
            let a = m.alloc(t.pair, 0).unwrap();
            let r = m.root(a);
            drop(m);
            let mut m2 = heap.attach();
            // Garbage over the old object's place, then a collection: the old root is not
            // scanned any more.
            for _ in 0..1000 {
                m2.alloc(t.pair, 0).unwrap();
            }
            m2.collect().unwrap();
            let _ = r.get(&m2);
        },
    );
}

/// A `Root` of heap A used with a mutator of heap B: a `Root` stays on its thread and a thread
/// is attached to one heap at a time, so A's mutator has been dropped by then, and the root is
/// refused as a dropped mutator's (before s13, both mutators could live on one thread and the
/// refusal said "belongs to heap #").
#[test]
fn root_used_with_a_mutator_of_another_heap() {
    expect_panic(
        "root_used_with_a_mutator_of_another_heap",
        &["Root::value", "was dropped", "a Root dies with its Mutator"],
        || {
            let a = heap(4 << 20);
            let b = heap(4 << 20);
            let ta = register(&a);
            let mut ma = a.attach();
            let v = ma.alloc(ta.pair, 0).unwrap();
            let r = ma.root(v);
            // A `Root` stays on its thread, and a thread is attached to one heap at a time.
            drop(ma);
            let mb = b.attach();
            let _ = r.value(&mb);
        },
    );
}

#[test]
fn root_of_a_dropped_heap_used_with_a_new_heap() {
    expect_panic(
        "root_of_a_dropped_heap_used_with_a_new_heap",
        &["Root::get", "was dropped"],
        || {
            let a = heap(4 << 20);
            let t = register(&a);
            let mut m = a.attach();
            let v = m.alloc(t.pair, 0).unwrap();
            let r = m.root(v);
            drop(m);
            drop(a);
            // A new heap of the same size: often mapped at the same address.
            let b = heap(4 << 20);
            let tb = register(&b);
            let mut mb = b.attach();
            mb.alloc(tb.pair, 0).unwrap();
            let _ = r.get(&mb);
        },
    );
}

#[test]
fn global_root_used_with_a_mutator_of_another_heap() {
    expect_panic(
        "global_root_used_with_a_mutator_of_another_heap",
        &["GlobalRoot::get", "belongs to heap #", "mutator of heap #"],
        || {
            let a = heap(4 << 20);
            let t = register(&a);
            let mut m = a.attach();
            let v = m.alloc(t.pair, 0).unwrap();
            let g = GlobalRoot::new(&a, v);
            drop(m);
            // The last handle of heap A is dropped, but the global root keeps it alive; the
            // new heap is a different one, and the global root says so.
            drop(a);
            let b = heap(4 << 20);
            let mb = b.attach();
            let _ = g.get(&mb);
        },
    );
}

#[test]
fn global_root_keeps_its_heap_alive() {
    expect_ok("global_root_keeps_its_heap_alive", || {
        let a = heap(4 << 20);
        let t = register(&a);
        let mut m = a.attach();
        let v = m.alloc(t.pair, 0).unwrap();
        m.local(v).unwrap().set(0, fix(42));
        let g = GlobalRoot::new(&a, v);
        drop(m);
        let id = a.id();
        drop(a);
        let b = heap(4 << 20);
        assert_ne!(b.id(), id, "heap ids are never reused");
        drop(b);
        // Heap A still lives (through the global root's handle): a new mutator of it would
        // need a Heap handle, which the embedder dropped; the object stays rooted.
        drop(g);
    });
}

/// Run `f` on a thread of its own and wait for it (a panic there is raised here again): for
/// cases that need mutators of two heaps, as a thread is attached to one heap at a time.
fn on_other_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// An object of `heap` allocated by a mutator on another thread (nothing collects `heap`
/// meanwhile, so the value stays current).
fn alloc_on_other_thread(heap: &Heap, ty: faultline::TypeId) -> Value {
    on_other_thread(|| heap.attach().alloc(ty, 0).unwrap())
}

#[test]
fn local_set_storing_a_reference_of_another_heap() {
    expect_panic(
        "local_set_storing_a_reference_of_another_heap",
        &[
            "Local::set",
            "is a reference of heap #",
            "references cannot cross heaps",
        ],
        || {
            let a = heap(4 << 20);
            let b = heap(4 << 20);
            let (ta, tb) = (register(&a), register(&b));
            let pb = alloc_on_other_thread(&b, tb.pair);
            let mut ma = a.attach();
            let pa = ma.alloc(ta.pair, 0).unwrap();
            ma.local(pa).unwrap().set(0, pb);
        },
    );
}

#[test]
fn root_set_and_push_refuse_references_of_another_heap() {
    expect_panic(
        "root_set_and_push_refuse_references_of_another_heap",
        &["Mutator::push", "references cannot cross heaps"],
        || {
            let a = heap(4 << 20);
            let b = heap(4 << 20);
            let (ta, tb) = (register(&a), register(&b));
            let pb = alloc_on_other_thread(&b, tb.pair);
            let mut ma = a.attach();
            let pa = ma.alloc(ta.pair, 0).unwrap();
            let r = ma.root(pa);
            let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                r.set(&ma, pb);
            }));
            assert!(
                refused.is_err(),
                "Root::set accepted another heap's reference"
            );
            ma.push(pb);
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Hangs instead of errors.

/// Collect (and friends) from inside the `on_cycle` hook: refused with `Reentrant`.
fn collect_in_on_cycle(config: HeapConfig) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let slot: Arc<Mutex<Option<Heap>>> = Arc::default();
    let (s2, h2) = (seen.clone(), slot.clone());
    let heap = Heap::new(config.on_cycle(Arc::new(move |_| {
        let Some(h) = h2.lock().unwrap().clone() else {
            return;
        };
        let mut out = s2.lock().unwrap();
        match h.collect() {
            Err(CollectError::Reentrant {
                request: "collect",
                callback: Callback::OnCycle,
            }) => out.push("collect refused".into()),
            other => out.push(format!("collect: {other:?}")),
        }
        match h.start_collection() {
            Err(CollectError::Reentrant { .. }) => out.push("start refused".into()),
            other => out.push(format!("start_collection: {other:?}")),
        }
        match h.wait_for_cycle() {
            Err(CollectError::Reentrant { .. }) => out.push("wait refused".into()),
            other => out.push(format!("wait_for_cycle: {other:?}")),
        }
        match h.verify() {
            Err(e) if e.to_string().contains("on_cycle") => out.push("verify refused".into()),
            other => out.push(format!("verify: {other:?}")),
        }
    })))
    .unwrap();
    *slot.lock().unwrap() = Some(heap.clone());
    let t = register(&heap);
    let mut m = heap.attach();
    list(&mut m, &t, 100);
    m.collect().unwrap();
    m.collect().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 8, "{seen:?}");
    for chunk in seen.chunks(4) {
        assert_eq!(
            chunk,
            [
                "collect refused",
                "start refused",
                "wait refused",
                "verify refused"
            ],
            "{seen:?}"
        );
    }
    assert_eq!(heap.cycles(), 2, "no cycle ran from the hook");
    assert_eq!(read_list(&m, m.stack_get(0)), (0..100).collect::<Vec<_>>());
    *slot.lock().unwrap() = None;
}

#[test]
fn collect_inside_on_cycle_stop_the_world() {
    expect_ok("collect_inside_on_cycle_stop_the_world", || {
        collect_in_on_cycle(stw(4 << 20))
    });
}

#[test]
fn collect_inside_on_cycle_concurrent() {
    expect_ok("collect_inside_on_cycle_concurrent", || {
        collect_in_on_cycle(concurrent(4 << 20))
    });
}

#[test]
fn mutator_requests_inside_on_cycle_on_the_gc_thread() {
    if !uffd_here("mutator_requests_inside_on_cycle_on_the_gc_thread") {
        return;
    }
    expect_ok("mutator_requests_inside_on_cycle_on_the_gc_thread", || {
        // Concurrent mode: the hook runs on the collector's thread, which may use a scoped
        // mutator (`with_mutator`), not attach one it could keep.
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let slot: Arc<Mutex<Option<(Heap, faultline::TypeId)>>> = Arc::default();
        let (s2, h2) = (seen.clone(), slot.clone());
        let heap = Heap::new(concurrent(4 << 20).on_cycle(Arc::new(move |_| {
            let Some((h, pair)) = h2.lock().unwrap().clone() else {
                return;
            };
            let mut out = s2.lock().unwrap();
            // A mutator kept past the hook would hold up every later collection: `attach`
            // is refused here, `with_mutator` (detached when its closure returns) works.
            out.push(format!("{:?}", h.try_attach().map(|_| ())));
            h.with_mutator(|hm| {
                out.push(format!("{:?}", hm.collect()));
                out.push(format!("{:?}", hm.wait_for_cycle()));
                // An allocation that fits does not need a collection: it works.
                out.push(format!("alloc ok: {}", hm.alloc(pair, 0).is_ok()));
            })
            .unwrap();
        })))
        .unwrap();
        assert_eq!(heap.mode_info().mode, GcMode::Concurrent);
        let t = register(&heap);
        *slot.lock().unwrap() = Some((heap.clone(), t.pair));
        let mut m = heap.attach();
        m.collect().unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert_eq!(seen[0], "Err(InsideCallback(OnCycle))", "{seen:?}");
        assert!(
            seen[1].contains("Reentrant") && seen[1].contains("OnCycle"),
            "{seen:?}"
        );
        assert!(
            seen[2].contains("Reentrant") && seen[2].contains("wait_for_cycle"),
            "{seen:?}"
        );
        assert_eq!(seen[3], "alloc ok: true", "{seen:?}");
        assert_eq!(heap.cycles(), 1);
        *slot.lock().unwrap() = None;
    });
}

#[test]
fn collect_inside_the_mark_hook() {
    if !uffd_here("collect_inside_the_mark_hook") {
        return;
    }
    expect_ok("collect_inside_the_mark_hook", || {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let slot: Arc<Mutex<Option<Heap>>> = Arc::default();
        let (s2, h2) = (seen.clone(), slot.clone());
        let heap = Heap::new(concurrent(4 << 20).with(|c| {
            c.debug.mark_hook = Some(Arc::new(move |_| {
                if let Some(h) = h2.lock().unwrap().clone() {
                    s2.lock().unwrap().push(format!("{:?}", h.collect()));
                }
            }))
        }))
        .unwrap();
        *slot.lock().unwrap() = Some(heap.clone());
        let t = register(&heap);
        let mut m = heap.attach();
        list(&mut m, &t, 100);
        m.collect().unwrap();
        let seen = seen.lock().unwrap().clone();
        assert!(!seen.is_empty());
        for s in &seen {
            assert!(
                s.contains("Reentrant") && s.contains("MarkHook"),
                "{seen:?}"
            );
        }
        *slot.lock().unwrap() = None;
    });
}

#[test]
fn wait_for_compaction_inside_on_cycle_panics() {
    expect_panic(
        "wait_for_compaction_inside_on_cycle_panics",
        &["wait_for_compaction", "on_cycle", "refused"],
        || {
            let slot: Arc<Mutex<Option<Heap>>> = Arc::default();
            let h2 = slot.clone();
            let heap = Heap::new(stw(4 << 20).on_cycle(Arc::new(move |_| {
                if let Some(h) = h2.lock().unwrap().clone() {
                    h.wait_for_compaction();
                }
            })))
            .unwrap();
            *slot.lock().unwrap() = Some(heap.clone());
            let mut m = heap.attach();
            m.collect().unwrap();
        },
    );
}

/// A root source that asks for a collection (and a verification) while it is visited.
struct Greedy {
    heap: Mutex<Option<Heap>>,
    slot: RootSlot,
    outcomes: Mutex<Vec<String>>,
}

impl RootSource for Greedy {
    fn for_each_root(&self, visit: &mut dyn FnMut(&RootSlot)) {
        visit(&self.slot);
        let Some(h) = self.heap.lock().unwrap().clone() else {
            return;
        };
        let mut out = self.outcomes.lock().unwrap();
        match h.collect() {
            Err(CollectError::Reentrant {
                callback: Callback::RootSource,
                ..
            }) => out.push("collect refused".into()),
            other => out.push(format!("collect: {other:?}")),
        }
        match h.verify() {
            Err(e) if e.to_string().contains("RootSource::for_each_root") => {
                out.push("verify refused".into())
            }
            other => out.push(format!("verify: {other:?}")),
        }
    }
}

fn collect_in_root_source(config: HeapConfig) {
    let heap = Heap::new(config).unwrap();
    let t = register(&heap);
    let src = Arc::new(Greedy {
        heap: Mutex::new(Some(heap.clone())),
        slot: RootSlot::new(),
        outcomes: Mutex::default(),
    });
    heap.add_root_source(src.clone());
    let mut m = heap.attach();
    let v = m.alloc(t.pair, 0).unwrap();
    m.local(v).unwrap().set(0, fix(7));
    m.store(&src.slot, v);
    m.collect().unwrap();
    let out = src.outcomes.lock().unwrap().clone();
    assert!(!out.is_empty());
    for pair in out.chunks(2) {
        assert_eq!(pair, ["collect refused", "verify refused"], "{out:?}");
    }
    // The slot was updated and the object kept.
    let v = m.load(&src.slot);
    assert_eq!(unfix(m.local(v).unwrap().get(0)), 7);
    *src.heap.lock().unwrap() = None;
}

#[test]
fn collect_inside_root_source_stop_the_world() {
    expect_ok("collect_inside_root_source_stop_the_world", || {
        collect_in_root_source(stw(4 << 20))
    });
}

#[test]
fn collect_inside_root_source_concurrent() {
    expect_ok("collect_inside_root_source_concurrent", || {
        collect_in_root_source(concurrent(4 << 20))
    });
}

/// A root source that takes the safepoint lock while visited (attach).
struct Attacher(Heap);
impl RootSource for Attacher {
    fn for_each_root(&self, _: &mut dyn FnMut(&RootSlot)) {
        let r = self.0.try_attach();
        assert!(
            matches!(r, Err(AttachError::Reentrant(Callback::RootSource))),
            "{r:?}"
        );
        // Anything else that needs the safepoint lock panics naming the mistake.
        let _ = self.0.mutator_count();
    }
}

#[test]
fn safepoint_calls_inside_root_source_panic() {
    expect_panic(
        "safepoint_calls_inside_root_source_panic",
        &["RootSource::for_each_root", "world stopped", "deadlock"],
        || {
            let heap = heap(4 << 20);
            heap.add_root_source(Arc::new(Attacher(heap.clone())));
            let mut m = heap.attach();
            m.collect().unwrap();
        },
    );
}

#[test]
fn two_mutators_of_one_heap_on_one_thread() {
    expect_panic(
        "two_mutators_of_one_heap_on_one_thread",
        &[
            "Heap::attach",
            "already has mutator #",
            "one mutator per heap per thread",
        ],
        || {
            let heap = heap(4 << 20);
            let m1 = heap.attach();
            match heap.try_attach() {
                Err(AttachError::AlreadyAttached { heap: h, mutator }) => {
                    assert_eq!((h, mutator), (heap.id(), m1.id()));
                }
                other => panic!("try_attach: {other:?}"),
            }
            // After the first detaches, attaching again is fine.
            drop(m1);
            let m2 = heap.attach();
            let _second = heap.attach(); // panics
            drop(m2);
        },
    );
}

/// A thread is attached to one heap at a time: blocked in one heap's call it could not reach a
/// safepoint of the other (see `two_threads_waiting_on_each_others_heap_are_refused`).
#[test]
fn a_second_heap_on_one_thread_is_refused() {
    expect_panic(
        "a_second_heap_on_one_thread_is_refused",
        &[
            "Heap::attach",
            "already has mutator #",
            "one heap at a time",
        ],
        || {
            let a = heap(4 << 20);
            let b = heap(4 << 20);
            let ma = a.attach();
            match b.try_attach() {
                Err(AttachError::OtherHeap {
                    heap,
                    other_heap,
                    mutator,
                }) => assert_eq!((heap, other_heap, mutator), (b.id(), a.id(), ma.id())),
                other => panic!("try_attach: {other:?}"),
            }
            // After it detaches, the other heap may be attached.
            drop(ma);
            let mb = b.attach();
            assert_eq!(mb.heap().id(), b.id());
            let _ma = a.attach(); // panics
        },
    );
}

/// Two threads, each attached to its own heap, each collecting (or waiting for, or verifying)
/// the other's heap while its own mutator runs: each stop waited for the other thread's
/// mutator, whose thread waited for the other stop (a deadlock, found by the s12 audit; the
/// watchdog kills a hanging child). Refused now, with an error naming both heaps; inside the
/// mutator's `native` section the same calls are fine (its pauses no longer wait for it), even
/// when both threads make them at once.
#[test]
fn two_threads_waiting_on_each_others_heap_are_refused() {
    expect_ok(
        "two_threads_waiting_on_each_others_heap_are_refused",
        || {
            for config in [stw(4 << 20), concurrent(4 << 20)] {
                let a = Heap::new(config.clone()).unwrap();
                let b = Heap::new(config).unwrap();
                let both = Arc::new(std::sync::Barrier::new(2));
                let side = |mine: Heap, theirs: Heap, both: Arc<std::sync::Barrier>| {
                    std::thread::spawn(move || {
                        let t = register(&mine);
                        let mut m = mine.attach();
                        let v = m.alloc(t.pair, 0).unwrap();
                        let _keep = m.root(v);
                        both.wait();
                        let refused = [
                            theirs.collect(),
                            theirs.start_collection(),
                            theirs.wait_for_cycle(),
                        ];
                        for r in refused {
                            match r {
                                Err(CollectError::AttachedElsewhere {
                                    heap, other_heap, ..
                                }) => assert_eq!((heap, other_heap), (theirs.id(), mine.id())),
                                other => panic!("expected AttachedElsewhere, got {other:?}"),
                            }
                        }
                        let v = theirs.verify().expect_err("verify is refused too");
                        assert!(v.to_string().contains("is running"), "{v}");
                        // Inside `native`, this thread's own heap does not wait for it.
                        both.wait();
                        let theirs2 = theirs.clone();
                        m.native(move || {
                            theirs2.collect().expect("collect from native");
                            theirs2.verify().expect("verify from native");
                        });
                        m.collect().expect("its own heap");
                    })
                };
                let t1 = side(a.clone(), b.clone(), both.clone());
                let t2 = side(b, a, both);
                t1.join().expect("thread 1");
                t2.join().expect("thread 2");
            }
        },
    );
}

/// Registering a type waits for a running cycle to end: from a thread whose mutator of
/// another heap runs, that wait is refused like `collect` (the cycle's pauses could wait for
/// this thread); inside the mutator's `native` section it waits and registers.
#[test]
fn registering_a_type_on_another_heap_mid_cycle_is_refused() {
    if !uffd_or_skip("registering_a_type_on_another_heap_mid_cycle_is_refused") {
        return;
    }
    expect_ok(
        "registering_a_type_on_another_heap_mid_cycle_is_refused",
        || {
            let a = heap(4 << 20);
            let b = Heap::new(concurrent(4 << 20).with(|c| {
                c.debug.phase_delay = Some(Duration::from_millis(1000));
            }))
            .unwrap();
            let mut ma = a.attach();
            on_other_thread(|| b.attach().start_collection().expect("start"));
            assert_ne!(b.phase(), CyclePhase::Idle, "the cycle runs");
            match b.register_type(faultline::TypeInfo::ref_array("late")) {
                Err(faultline::TypeError::WaitRefused(why)) => {
                    assert!(why.contains("is running"), "{why}")
                }
                other => panic!("expected WaitRefused, got {other:?}"),
            }
            let b2 = b.clone();
            let id = ma.native(move || b2.register_type(faultline::TypeInfo::ref_array("late")));
            id.expect("registered from native");
        },
    );
}

#[test]
fn heap_collect_from_an_attached_thread_is_its_mutators_collect() {
    expect_ok(
        "heap_collect_from_an_attached_thread_is_its_mutators_collect",
        || {
            for config in [stw(4 << 20), concurrent(4 << 20)] {
                let heap = Heap::new(config).unwrap();
                let t = register(&heap);
                let mut m = heap.attach();
                list(&mut m, &t, 50);
                heap.collect().unwrap();
                heap.verify().unwrap();
                heap.wait_for_cycle().unwrap();
                assert_eq!(heap.cycles(), 1);
                assert_eq!(read_list(&m, m.stack_get(0)), (0..50).collect::<Vec<_>>());
            }
        },
    );
}

#[test]
fn a_failed_collection_is_a_typed_error() {
    use faultline::testing::heap::inject::{FaultInjector, Rule, Trigger};
    use faultline::testing::heap::sys::{Call, Errno, Sys};
    use faultline::{AllocError, ArenaError};
    expect_ok("a_failed_collection_is_a_typed_error", || {
        // Every release of a half fails: the first cycle records its old half as dirty, the
        // second must clean it before its flip (its destination) and cannot: the collection
        // fails before any reference changes, with the call and errno. (Compacting into the
        // other half: a slide has no destination half to clean.)
        let inj = Arc::new(
            FaultInjector::new(
                vec![Rule::new(Call::Madvise, Errno::EINVAL, Trigger::Always)],
                1,
            )
            .disarmed(),
        );
        let heap = Heap::new(stw(4 << 20).with(|c| {
            c.debug.sys = Sys::new(inj.clone());
            c.stw_compaction = faultline::StwCompaction::Copy;
        }))
        .unwrap();
        let t = register(&heap);
        let mut m = heap.attach();
        list(&mut m, &t, 100);
        inj.arm();
        let mut errors = Vec::new();
        for _ in 0..3 {
            if let Err(e) = m.collect() {
                errors.push(e);
            }
        }
        inj.disarm();
        let e = errors.first().expect("a collection failed");
        assert!(
            matches!(e, CollectError::Kernel(ArenaError::Sys { call, errno }) if call.starts_with("madvise") && *errno == Errno::EINVAL),
            "{e:?}"
        );
        // Allocation wraps the same typed error.
        let a: AllocError = e.clone().into();
        assert!(
            matches!(a, AllocError::Collect(CollectError::Kernel(_))),
            "{a}"
        );
        // Nothing was lost, and collections work again.
        m.collect().unwrap();
        assert_eq!(read_list(&m, m.stack_get(0)), (0..100).collect::<Vec<_>>());
        m.verify().unwrap();
    });
}

// ---------------------------------------------------------------------------------------------
// Cycle control and diagnostics.

#[test]
fn collect_waits_for_the_whole_cycle_and_start_collection_does_not() {
    if !uffd_here("collect_waits_for_the_whole_cycle_and_start_collection_does_not") {
        return;
    }
    expect_ok(
        "collect_waits_for_the_whole_cycle_and_start_collection_does_not",
        || {
            let heap = Heap::new(
                concurrent(8 << 20)
                    .with(|c| c.debug.compaction_delay = Some(Duration::from_millis(300))),
            )
            .unwrap();
            let t = register(&heap);
            let mut m = heap.attach();
            list(&mut m, &t, 1000);
            assert_eq!(heap.phase(), CyclePhase::Idle);
            m.collect().unwrap();
            assert_eq!(heap.phase(), CyclePhase::Idle);
            assert_eq!((heap.cycles(), heap.flips()), (1, 1));
            assert_eq!(heap.history().len(), 1);

            m.start_collection().unwrap();
            let mut seen = vec![heap.phase()];
            let t0 = Instant::now();
            while heap.phase() != CyclePhase::Idle && t0.elapsed() < Duration::from_secs(10) {
                m.safepoint();
                let p = heap.phase();
                if seen.last() != Some(&p) {
                    seen.push(p);
                }
            }
            assert!(seen.contains(&CyclePhase::Compacting), "{seen:?}");
            m.wait_for_cycle().unwrap();
            assert_eq!((heap.cycles(), heap.flips()), (2, 2));
            assert_eq!(read_list(&m, m.stack_get(0)), (0..1000).collect::<Vec<_>>());
        },
    );
}

#[test]
fn the_mutator_that_held_a_pause_up_is_named() {
    expect_ok("the_mutator_that_held_a_pause_up_is_named", || {
        let heap = heap(4 << 20);
        let ready = Arc::new(AtomicBool::new(false));
        let spinner = {
            let (heap, ready) = (heap.clone(), ready.clone());
            std::thread::spawn(move || {
                let mut m = heap.attach_named("verify-loop");
                ready.store(true, Ordering::SeqCst);
                // A loop without safepoint polls holds every pause up.
                let t0 = Instant::now();
                while t0.elapsed() < Duration::from_millis(300) {
                    std::hint::spin_loop();
                }
                m.safepoint();
            })
        };
        let mut m = heap.attach_named("main");
        while !ready.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        m.collect().unwrap();
        spinner.join().unwrap();
        let h = heap.history();
        let s = h.last().unwrap();
        let slow = s.slowest_mutator().expect("a mutator was stopped");
        assert_eq!(slow.name.as_deref(), Some("verify-loop"), "{s:?}");
        assert!(slow.time >= Duration::from_millis(150), "{slow:?}");
        assert!(s.time_to_safepoint >= slow.time);
        let line = s.log_line();
        assert!(line.contains("longest: mutator verify-loop #"), "{line}");
    });
}

#[test]
fn with_heap_size_accepts_the_minimum() {
    expect_ok("with_heap_size_accepts_the_minimum", || {
        let heap = Heap::new(HeapConfig::with_heap_size(64 << 10)).unwrap();
        let t = register(&heap);
        let mut m = heap.attach();
        list(&mut m, &t, 100);
        m.collect().unwrap();
        assert_eq!(read_list(&m, m.stack_get(0)), (0..100).collect::<Vec<_>>());
    });
}

// ---------------------------------------------------------------------------------------------
// Stale and forged values: refused by the era check, whatever now lies at their address.

/// Hold an unrooted value across two collections (so its half is in use again), then fill that
/// half with what `fill` allocates until an allocation covers the stale address; `fill`
/// returns the new object's value and whether it covers. Then use the stale value.
fn stale_value_over(
    config: HeapConfig,
    fill: impl Fn(&mut faultline::Mutator, &Types, Value) -> (Value, bool),
) {
    let heap = Heap::new(config).unwrap();
    let t = register(&heap);
    let mut m = heap.attach();
    for _ in 0..10 {
        m.alloc(t.pair, 0).unwrap();
    }
    let stale = m.alloc(t.pair, 0).unwrap();
    m.local(stale).unwrap().set(0, fix(1));
    m.collect().unwrap();
    m.collect().unwrap();
    loop {
        let (v, covers) = fill(&mut m, &t, stale);
        if covers {
            break;
        }
        if v.bits() > stale.bits() + (64 << 10) {
            eprintln!("SETUP: no allocation covered {stale:?} (last {v:?})");
            std::process::exit(3);
        }
    }
    // The old heuristic accepted this: a plausible header of a known type lies there.
    let l = m.local(stale).unwrap();
    l.set(0, Value::NULL);
}

/// A byte array whose every word reads as a pair's header, covering `stale`.
fn header_like_bytes(m: &mut faultline::Mutator, t: &Types, stale: Value) -> (Value, bool) {
    const N: usize = 256;
    let s = m.alloc(t.string, N).unwrap();
    let word = (t.pair.0 as u64).to_le_bytes();
    let bytes: Vec<u8> = word.iter().copied().cycle().take(N).collect();
    m.local(s).unwrap().write_bytes(0, &bytes);
    let payload = s.bits() + 8;
    (s, (payload..payload + N).contains(&stale.bits()))
}

/// A new pair starting exactly where `stale` pointed.
fn pair_at(m: &mut faultline::Mutator, t: &Types, stale: Value) -> (Value, bool) {
    let p = m.alloc(t.pair, 0).unwrap();
    m.local(p).unwrap().set(0, fix(99));
    (p, p.bits() == stale.bits())
}

const STALE: &[&str] = &[
    "Mutator::local",
    "stale reference",
    "held across a safepoint",
];

#[test]
fn stale_value_inside_a_live_byte_array_stop_the_world() {
    expect_panic(
        "stale_value_inside_a_live_byte_array_stop_the_world",
        STALE,
        || stale_value_over(stw(4 << 20), header_like_bytes),
    );
}

#[test]
fn stale_value_inside_a_live_byte_array_concurrent() {
    expect_panic(
        "stale_value_inside_a_live_byte_array_concurrent",
        STALE,
        || stale_value_over(concurrent(4 << 20), header_like_bytes),
    );
}

#[test]
fn stale_value_on_a_new_objects_start_stop_the_world() {
    expect_panic(
        "stale_value_on_a_new_objects_start_stop_the_world",
        STALE,
        || stale_value_over(stw(4 << 20), pair_at),
    );
}

#[test]
fn stale_value_on_a_new_objects_start_concurrent() {
    expect_panic(
        "stale_value_on_a_new_objects_start_concurrent",
        STALE,
        || stale_value_over(concurrent(4 << 20), pair_at),
    );
}

#[test]
fn stale_value_stored_into_a_field() {
    expect_panic(
        "stale_value_stored_into_a_field",
        &["Local::set", "stale reference"],
        || {
            let heap = heap(4 << 20);
            let t = register(&heap);
            let mut m = heap.attach();
            let stale = m.alloc(t.pair, 0).unwrap();
            let holder = m.alloc(t.pair, 0).unwrap();
            let holder = m.root(holder);
            m.collect().unwrap();
            holder.get(&m).unwrap().set(0, stale);
        },
    );
}

#[test]
fn stale_value_given_to_a_global_root() {
    expect_panic(
        "stale_value_given_to_a_global_root",
        &["GlobalRoot::new", "stale"],
        || {
            let heap = heap(4 << 20);
            let t = register(&heap);
            let mut m = heap.attach();
            let stale = m.alloc(t.pair, 0).unwrap();
            m.collect().unwrap();
            let _ = GlobalRoot::new(&heap, stale);
        },
    );
}

#[test]
fn a_root_slot_no_source_presents_goes_stale() {
    expect_panic(
        "a_root_slot_no_source_presents_goes_stale",
        &["Mutator::load", "stale reference"],
        || {
            let heap = heap(4 << 20);
            let t = register(&heap);
            let mut m = heap.attach();
            let slot = RootSlot::new();
            let v = m.alloc(t.pair, 0).unwrap();
            m.store(&slot, v);
            assert_eq!(m.load(&slot), v, "current until a collection");
            m.collect().unwrap();
            let _ = m.load(&slot);
        },
    );
}

/// A value held, unrooted, across a concurrent cycle's initial-mark pause: the object it names
/// may be missing from the marking snapshot (nothing reached it there), and SATB marking never
/// sees a reference stored after the snapshot, so the flip would free the object under the
/// field or root the value was stored in. The initial mark starts a new era: every such store
/// is refused as stale (before, each was accepted and the field named another object after the
/// cycle). `how` stores it.
fn held_across_initial_mark(how: fn(&faultline::Mutator, &faultline::Root, Value)) {
    let heap = Heap::new(concurrent(8 << 20)).unwrap();
    assert_eq!(heap.mode_info().mode, GcMode::Concurrent);
    let t = register(&heap);
    let mut m = heap.attach();
    let holder = m.alloc(t.pair, 0).unwrap();
    let holder = m.root(holder);
    let x = m.alloc(t.pair, 0).unwrap();
    m.local(x).unwrap().set(0, fix(7));
    m.start_collection().unwrap();
    assert_ne!(
        heap.phase(),
        CyclePhase::Idle,
        "start_collection returns after the initial mark, with the cycle running"
    );
    how(&m, &holder, x);
}

#[test]
fn a_value_held_across_the_initial_mark_is_stale_in_a_field() {
    if !uffd_here("a_value_held_across_the_initial_mark_is_stale_in_a_field") {
        return;
    }
    expect_panic(
        "a_value_held_across_the_initial_mark_is_stale_in_a_field",
        &["Local::set", "stale reference"],
        || held_across_initial_mark(|m, holder, x| holder.get(m).unwrap().set(0, x)),
    );
}

#[test]
fn a_value_held_across_the_initial_mark_is_stale_as_a_root() {
    if !uffd_here("a_value_held_across_the_initial_mark_is_stale_as_a_root") {
        return;
    }
    expect_panic(
        "a_value_held_across_the_initial_mark_is_stale_as_a_root",
        &["Mutator::root", "stale reference"],
        || {
            held_across_initial_mark(|m, _, x| {
                let _ = m.root(x);
            })
        },
    );
}

#[test]
fn a_value_held_across_the_initial_mark_is_stale_on_the_value_stack() {
    if !uffd_here("a_value_held_across_the_initial_mark_is_stale_on_the_value_stack") {
        return;
    }
    expect_panic(
        "a_value_held_across_the_initial_mark_is_stale_on_the_value_stack",
        &["Mutator::push", "stale reference"],
        || held_across_initial_mark(|m, _, x| m.push(x)),
    );
}

/// What a root source presents stays current across the initial mark (its slot is stamped
/// with the new era there) and across the flip (forwarded), and keeps naming its object.
#[test]
fn a_root_slot_a_source_presents_stays_current_across_a_concurrent_cycle() {
    if !uffd_here("a_root_slot_a_source_presents_stays_current_across_a_concurrent_cycle") {
        return;
    }
    expect_ok(
        "a_root_slot_a_source_presents_stays_current_across_a_concurrent_cycle",
        || {
            struct One(RootSlot);
            impl RootSource for One {
                fn for_each_root(&self, visit: &mut dyn FnMut(&RootSlot)) {
                    visit(&self.0);
                }
            }
            let heap = Heap::new(concurrent(8 << 20)).unwrap();
            let t = register(&heap);
            let mut m = heap.attach();
            let src = Arc::new(One(RootSlot::new()));
            m.add_root_source(src.clone());
            let v = m.alloc(t.pair, 0).unwrap();
            m.local(v).unwrap().set(0, fix(42));
            m.store(&src.0, v);
            m.start_collection().unwrap();
            let during = m.load(&src.0);
            assert_eq!(during.bits(), v.bits(), "nothing moves at the initial mark");
            assert_eq!(unfix(m.local(during).unwrap().get(0)), 42);
            m.wait_for_cycle().unwrap();
            let after = m.load(&src.0);
            assert_eq!(unfix(m.local(after).unwrap().get(0)), 42);
        },
    );
}

/// A `Local` borrows its mutator, which keeps the mutator's own safepoints away; but
/// `Heap::collect` (and the other heap-level calls that stop or wait as this thread's mutator)
/// take only `&Heap`. After one, the `Local`'s object may have moved: every accessor panics
/// (before, `set_word` wrote where the object used to be).
#[test]
fn a_local_held_across_a_heap_level_collect_panics() {
    expect_panic(
        "a_local_held_across_a_heap_level_collect_panics",
        &["Local", "a collection has run since"],
        || {
            let heap = Heap::new(stw(4 << 20)).unwrap();
            let t = register(&heap);
            let mut m = heap.attach();
            for _ in 0..100 {
                m.alloc(t.pair, 0).unwrap();
            }
            let v = m.alloc(t.node, 0).unwrap();
            let _keep = m.root(v);
            let l = m.local(v).unwrap();
            heap.collect().unwrap();
            l.set_word(2, 7);
        },
    );
}

/// A root source that, at its first visit (inside a collection's pause), tells another thread
/// to go and then holds the pause a while.
struct HoldsThePause {
    go: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}
impl RootSource for HoldsThePause {
    fn for_each_root(&self, _: &mut dyn FnMut(&RootSlot)) {
        if let Some(go) = self.go.lock().unwrap().take() {
            go.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// `GlobalRoot::new` from a thread with no mutator, in the middle of a pause (after its
/// marking, before its flip): it waits for the pause to end, and then the value held across
/// the collection is stale. Before, the value passed the era check (the era changes only at the
/// flip), the slot was added, and the flip forwarded it to wherever the dead object's rank
/// led: another object.
#[test]
fn a_global_root_made_during_a_pause_waits_for_it() {
    expect_ok("a_global_root_made_during_a_pause_waits_for_it", || {
        let heap = Heap::new(stw(4 << 20)).unwrap();
        let t = register(&heap);
        let mut m = heap.attach();
        let x = m.alloc(t.pair, 0).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        heap.add_root_source(Arc::new(HoldsThePause {
            go: Mutex::new(Some(tx)),
        }));
        let h2 = heap.clone();
        let other = std::thread::spawn(move || {
            rx.recv().unwrap();
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                GlobalRoot::new(&h2, x);
            }))
            .map_err(|p| p.downcast_ref::<String>().cloned().unwrap_or_default())
        });
        m.collect().unwrap();
        let outcome = other.join().unwrap();
        let msg = outcome.expect_err("rooted a value held across the collection");
        assert!(msg.contains("stale"), "{msg}");
    });
}

faultline::heap_struct! {
    /// A struct registered before the race below.
    struct Looked { b: u64 }
}
faultline::heap_struct! {
    /// A struct registered while a concurrent cycle runs.
    struct Late { a: faultline::Ref }
}

/// `register_struct` of a new struct waits for a running cycle to end; it used to wait holding
/// the heap's struct map, so another running mutator looking a struct up blocked on the map,
/// never reached the safepoint the cycle's remark waited for, and the three waited for each
/// other forever (the watchdog's hang).
#[test]
fn register_struct_during_a_cycle_beside_a_running_lookup() {
    if !uffd_here("register_struct_during_a_cycle_beside_a_running_lookup") {
        return;
    }
    expect_ok(
        "register_struct_during_a_cycle_beside_a_running_lookup",
        || {
            let heap = Heap::new(concurrent(8 << 20)).unwrap();
            let t = register(&heap);
            let looked = heap.register_struct::<Looked>().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let lookups = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let (h2, st2, n2) = (heap.clone(), stop.clone(), lookups.clone());
            let b = std::thread::spawn(move || {
                let mut m = h2.attach_named("lookups");
                let mut n = 0u64;
                while !st2.load(Ordering::Relaxed) {
                    let s = h2.register_struct::<Looked>().unwrap();
                    assert_eq!(s.type_id(), looked.type_id(), "a lookup, the same type");
                    let v = s.alloc(&mut m).unwrap();
                    s.view(m.local(v).unwrap()).unwrap().set(Looked::b, n);
                    n += 1;
                    n2.store(n, Ordering::Relaxed);
                }
                n
            });
            let mut m = heap.attach_named("registers");
            for round in 0..3 {
                // Each round starts with the other thread looking structs up (it may not
                // have started yet, or been descheduled): the race needs it running.
                let seen = lookups.load(Ordering::Relaxed);
                while lookups.load(Ordering::Relaxed) == seen {
                    m.safepoint();
                    std::thread::yield_now();
                }
                for _ in 0..2000 {
                    m.alloc(t.vector, 10).unwrap();
                }
                m.start_collection().unwrap();
                if round == 0 {
                    heap.register_struct::<Late>().unwrap();
                } else {
                    heap.register_struct::<Looked>().unwrap();
                }
                m.wait_for_cycle().unwrap();
            }
            stop.store(true, Ordering::Relaxed);
            let n = b.join().unwrap();
            assert!(n > 0, "the other thread made progress");
            assert!(heap.cycles() >= 3, "cycles: {}", heap.cycles());
        },
    );
}

#[test]
fn a_reference_forged_in_a_data_word_names_no_object() {
    expect_panic(
        "a_reference_forged_in_a_data_word_names_no_object",
        &[
            "Mutator::local",
            "does not name an object",
            "non-reference word",
        ],
        || {
            let heap = heap(4 << 20);
            let t = register(&heap);
            let mut m = heap.attach();
            let p = m.alloc(t.pair, 0).unwrap();
            let n = m.alloc(t.node, 0).unwrap();
            let node = m.local(n).unwrap();
            // Word 2 of a node is data: an address stored there is only a number.
            node.set_word(2, p.bits() as u64 + 8);
            let forged = node.get(2);
            assert!(forged.is_ref(), "looks like a reference");
            let _ = m.local(forged);
        },
    );
}

#[test]
fn a_value_read_from_a_field_is_current_and_usable() {
    expect_ok("a_value_read_from_a_field_is_current_and_usable", || {
        let heap = heap(4 << 20);
        let t = register(&heap);
        let mut m = heap.attach();
        let inner = m.alloc(t.pair, 0).unwrap();
        m.local(inner).unwrap().set(0, fix(5));
        let outer = m.alloc(t.pair, 0).unwrap();
        m.local(outer).unwrap().set(1, inner);
        let outer = m.root(outer);
        m.collect().unwrap();
        let v = outer.get(&m).unwrap().get(1);
        assert_eq!(unfix(m.local(v).unwrap().get(0)), 5);
        // Values of one era compare equal; immediates never go stale.
        assert_eq!(outer.get(&m).unwrap().get(1), v);
        let five = m.local(v).unwrap().get(0);
        m.collect().unwrap();
        assert_eq!(unfix(five), 5);
        m.push(five);
    });
}

// ---------------------------------------------------------------------------------------------
// I/O into heap memory while compaction runs has a safe pattern now (the mutator's
// `read_into` / `pread_into` family and pinned arrays): tests/pinned_io.rs. The raw route
// (`Local::byte_ptr` handed to the kernel by `unsafe` code) still gets EFAULT on an absent
// page, as tests/ensure_present_syscall.rs shows.

/// A root source holding one slot, registered when the test says.
struct OneSlot(RootSlot);
impl RootSource for OneSlot {
    fn for_each_root(&self, visit: &mut dyn FnMut(&RootSlot)) {
        visit(&self.0);
    }
}

#[test]
fn a_root_slot_registered_after_it_went_stale_stays_stale() {
    expect_panic(
        "a_root_slot_registered_after_it_went_stale_stays_stale",
        &["Mutator::load", "stale reference"],
        || {
            let heap = heap(4 << 20);
            let t = register(&heap);
            let mut m = heap.attach();
            let src = Arc::new(OneSlot(RootSlot::new()));
            let v = m.alloc(t.pair, 0).unwrap();
            m.store(&src.0, v);
            m.collect().unwrap(); // not registered yet: the slot goes stale
            heap.add_root_source(src.clone());
            // Later collections neither trace nor rewrite the stale word...
            for _ in 0..3 {
                for _ in 0..2000 {
                    m.alloc(t.pair, 0).unwrap();
                }
                m.collect().unwrap();
            }
            m.verify().unwrap();
            // ...and reading it is refused.
            let _ = m.load(&src.0);
        },
    );
}

#[test]
fn a_root_slot_of_one_heap_presented_to_another() {
    expect_panic(
        "a_root_slot_of_one_heap_presented_to_another",
        &[
            "Mutator::load",
            "is a reference of heap #",
            "cannot cross heaps",
        ],
        || {
            let a = heap(4 << 20);
            let b = heap(4 << 20);
            let (ta, _) = (register(&a), register(&b));
            let mut ma = a.attach();
            let src = Arc::new(OneSlot(RootSlot::new()));
            let v = ma.alloc(ta.pair, 0).unwrap();
            ma.local(v).unwrap().set(0, fix(3));
            ma.store(&src.0, v);
            // Heap B's collections see a reference that is not theirs and leave it alone (B's
            // mutator on a thread of its own: a thread is attached to one heap at a time).
            b.add_root_source(src.clone());
            on_other_thread(|| {
                let mut mb = b.attach();
                mb.collect().unwrap();
                mb.verify().unwrap();
            });
            // Heap A still reads it (A never collected).
            assert_eq!(unfix(ma.local(ma.load(&src.0)).unwrap().get(0)), 3);
            on_other_thread(|| {
                let _ = b.attach().load(&src.0);
            });
        },
    );
}

/// Registering a type while a concurrent cycle runs waits for the cycle to end (the cycle
/// parses objects with the types it began with; a type it did not know made it misparse the
/// new objects: "mark/live bitmaps disagree"), from an attached thread without holding up the
/// cycle's pauses; the new type's objects then survive verified collections.
#[test]
fn registering_a_type_while_a_concurrent_cycle_runs() {
    if !uffd_or_skip("registering_a_type_while_a_concurrent_cycle_runs") {
        return;
    }
    expect_ok("registering_a_type_while_a_concurrent_cycle_runs", || {
        let heap = Heap::new(concurrent(8 << 20).with(|c| {
            c.debug.verify = true;
            c.debug.compaction_delay = Some(Duration::from_millis(200));
        }))
        .unwrap();
        let t = register(&heap);
        let mut m = heap.attach();
        for _ in 0..5000 {
            m.alloc(t.pair, 0).unwrap();
        }
        m.start_collection().unwrap();
        let cycles = heap.cycles();
        assert_ne!(heap.phase(), CyclePhase::Idle, "the cycle is running");
        // From the attached thread: waits (in native state) for the cycle's end.
        let late = heap
            .register_type(faultline::TypeInfo::fixed("late", 24, &[0]))
            .unwrap();
        assert!(heap.cycles() > cycles, "registration waited for the cycle");
        let keep = m.root(Value::NULL);
        for i in 0..20_000 {
            let v = m.alloc(late, 0).unwrap();
            m.local(v).unwrap().set(0, keep.value(&m));
            keep.set(&m, v);
            if i % 5000 == 0 {
                let _ = m.start_collection();
                // And from another thread, while this cycle may run.
                let h = heap.clone();
                let other = std::thread::spawn(move || {
                    h.register_type(faultline::TypeInfo::fixed("later", 8, &[]))
                        .unwrap()
                });
                // Joined in a native section: the cycle's pauses must not wait for us.
                m.native(|| other.join().unwrap());
            }
        }
        m.collect().unwrap();
        m.verify().unwrap();
    });
}

/// A heap-level wait (`Heap::wait_for_cycle`, `Heap::collect`) made inside the calling
/// thread's own native section while a concurrent cycle runs (review of s27): the wait left
/// the mutator RUNNING inside the section, where it never polls, so another thread's next
/// collection waited for it while it waited for that collection to leave its section: a
/// deadlock (the child hung until the watchdog). It stays NATIVE now, and the other thread's
/// collection finishes while the section goes on.
#[test]
fn a_heap_wait_inside_a_native_section_keeps_the_mutator_native() {
    if !uffd_or_skip("a_heap_wait_inside_a_native_section_keeps_the_mutator_native") {
        return;
    }
    expect_ok(
        "a_heap_wait_inside_a_native_section_keeps_the_mutator_native",
        || {
            let heap = Heap::new(concurrent(8 << 20).with(|c| {
                c.debug.compaction_delay = Some(Duration::from_millis(200));
            }))
            .unwrap();
            let t = register(&heap);
            let mut m = heap.attach();
            list(&mut m, &t, 1000);
            let root = m.root(m.pop().unwrap());
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
            let other = {
                let heap = heap.clone();
                std::thread::spawn(move || {
                    go_rx.recv().unwrap();
                    let mut m2 = heap.attach();
                    m2.collect().unwrap();
                    drop(m2);
                    done_tx.send(()).unwrap();
                })
            };
            m.start_collection().unwrap();
            let h = heap.clone();
            let finished_inside = m.native(move || {
                assert_ne!(h.phase(), CyclePhase::Idle, "the cycle is still compacting");
                h.wait_for_cycle().unwrap();
                // And a collection of its own, from inside the section.
                h.collect().unwrap();
                go_tx.send(()).unwrap();
                done_rx.recv_timeout(Duration::from_secs(10)).is_ok()
            });
            other.join().unwrap();
            assert!(
                finished_inside,
                "another thread's collection could not finish while this thread was in its native \
             section after a heap-level wait"
            );
            assert_eq!(read_list(&m, root.value(&m)).len(), 1000);
            m.verify().unwrap();
        },
    );
}

// Cases of the soundness audit of 2026-12-05 (docs/soundness-audit.md).

/// A panic inside a native section, caught by the caller: the mutator is running again
/// afterwards, so a collection from another thread waits for its next safepoint instead of
/// moving the objects under a `Local` it holds (the mutator stayed NATIVE: the collection ran,
/// and the `Local` named the object's old place).
#[test]
fn a_panic_inside_native_leaves_the_mutator_running() {
    expect_ok("a_panic_inside_native_leaves_the_mutator_running", || {
        let heap = Heap::new(stw(4 << 20)).unwrap();
        let t = register(&heap);
        let mut m = heap.attach();
        let v = m.alloc(t.pair, 0).unwrap();
        m.local(v).unwrap().set(0, fix(7));
        let r = m.root(v);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            m.native(|| panic!("a panic inside a native section"))
        }));
        assert!(caught.is_err());
        let cycles = heap.cycles();
        {
            let l = r.get(&m).unwrap();
            let h = heap.clone();
            let other = std::thread::spawn(move || h.collect());
            // Hold the Local, with no safepoint, while the other thread asks for a collection
            // (up to two seconds): it must not complete.
            let t0 = Instant::now();
            while heap.cycles() == cycles && t0.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(
                heap.cycles(),
                cycles,
                "a collection completed while this running mutator held a Local"
            );
            assert_eq!(unfix(l.get(0)), 7);
            while !other.is_finished() {
                m.safepoint();
                std::thread::sleep(Duration::from_millis(1));
            }
            other.join().unwrap().unwrap();
        }
        assert_eq!(heap.cycles(), cycles + 1);
        assert_eq!(unfix(r.get(&m).unwrap().get(0)), 7);
    });
}

/// A fixed type whose size overflows the address arithmetic is refused at registration: one
/// of `usize::MAX - 7` payload bytes was registered, its objects took 0 bytes (the size wrapped)
/// and a `Local` over one wrote 800 MB past it (SIGSEGV). The filler kind is refused too.
#[test]
fn a_fixed_type_too_large_for_any_space_is_refused() {
    expect_ok("a_fixed_type_too_large_for_any_space_is_refused", || {
        use faultline::{TypeError, TypeInfo, TypeKind};
        let heap = Heap::new(stw(4 << 20)).unwrap();
        let mut m = heap.attach();
        for bytes in [usize::MAX, usize::MAX - 7, (1 << 40) + 8] {
            match heap.register_type(TypeInfo::fixed("huge", bytes, &[])) {
                Err(TypeError::TooLarge { payload_bytes, .. }) => assert!(payload_bytes >= bytes),
                Err(e) => panic!("{bytes}: {e}"),
                Ok(ty) => {
                    // What the refusal prevents: an object of a wrapped size.
                    let v = m.alloc(ty, 0).unwrap();
                    m.local(v).unwrap().set_word(100_000_000, 7);
                    panic!("{bytes}-byte fixed type registered");
                }
            }
        }
        // The largest accepted one is merely too large to allocate here.
        let big = heap
            .register_type(TypeInfo::fixed("big", 1 << 40, &[]))
            .unwrap();
        assert!(matches!(
            m.alloc(big, 0),
            Err(faultline::AllocError::OutOfMemory { .. })
        ));
        let filler = TypeInfo {
            name: "my filler".into(),
            kind: TypeKind::Filler,
        };
        assert!(matches!(
            heap.register_type(filler),
            Err(TypeError::Filler(_))
        ));
    });
}

thread_local! {
    /// A mutator kept in a thread-local, as a runtime that attaches each thread lazily does.
    static THREAD_MUTATOR: std::cell::RefCell<Option<faultline::Mutator>> =
        const { std::cell::RefCell::new(None) };
}

/// A `Mutator` kept in a thread-local is dropped at thread exit, possibly after the crate's own
/// thread-locals: it detaches cleanly (before, the drop touched a destroyed thread-local, and
/// the panic inside a thread-local destructor aborted the process).
#[test]
fn a_mutator_kept_in_a_thread_local_detaches_at_thread_exit() {
    expect_ok(
        "a_mutator_kept_in_a_thread_local_detaches_at_thread_exit",
        || {
            let heap = heap(4 << 20);
            let t = register(&heap);
            let h = heap.clone();
            std::thread::spawn(move || {
                THREAD_MUTATOR.with(|c| *c.borrow_mut() = Some(h.attach()));
                THREAD_MUTATOR.with(|c| {
                    let mut c = c.borrow_mut();
                    let m = c.as_mut().expect("attached");
                    list(m, &t, 10);
                    m.collect().unwrap();
                });
            })
            .join()
            .unwrap();
            assert_eq!(heap.mutator_count(), 0);
            heap.collect().unwrap();
            heap.verify().unwrap();
        },
    );
}

/// A root source that presents its slot only at every second call: to the flip's forwarding
/// but not to marking (a stop-the-world cycle calls it once for each).
struct EverySecondCall {
    calls: std::sync::atomic::AtomicUsize,
    slot: RootSlot,
}

impl RootSource for EverySecondCall {
    fn for_each_root(&self, visit: &mut dyn FnMut(&RootSlot)) {
        if self.calls.fetch_add(1, Ordering::SeqCst) % 2 == 1 {
            visit(&self.slot);
        }
    }
}

/// A root source presents at the flip a slot it did not present to marking: its object was
/// not marked (it died), and forwarding the slot gave it another live object's new address
/// (it read that object's data). Now the slot is left stale and refused on read.
#[test]
fn a_root_slot_presented_only_to_the_flip_goes_stale() {
    expect_panic(
        "a_root_slot_presented_only_to_the_flip_goes_stale",
        &["Mutator::load", "stale reference"],
        || {
            let heap = Heap::new(stw(4 << 20)).unwrap();
            let t = register(&heap);
            let mut m = heap.attach();
            let src = Arc::new(EverySecondCall {
                calls: Default::default(),
                slot: RootSlot::new(),
            });
            heap.add_root_source(src.clone());
            let dead = m.alloc(t.pair, 0).unwrap();
            m.local(dead).unwrap().set(0, fix(1));
            m.store(&src.slot, dead);
            let live = m.alloc(t.pair, 0).unwrap();
            m.local(live).unwrap().set(0, fix(2));
            let live = m.root(live);
            m.collect().unwrap();
            let v = m.load(&src.slot); // panics: stale
            let l = m.local(v).unwrap();
            panic!(
                "the slot reads {v:?} (the live object is {:?}), whose word 0 is {}",
                live.value(&m),
                unfix(l.get(0))
            );
        },
    );
}

/// A root source that panics.
struct PanickingSource;

impl RootSource for PanickingSource {
    fn for_each_root(&self, _visit: &mut dyn FnMut(&RootSlot)) {
        panic!("a root source failed");
    }
}

/// In the child: `body`. In the parent: the child must abort (SIGABRT, not hang: the watchdog)
/// with the panic's message and a line naming `needle`.
fn expect_abort(case: &str, needle: &str, body: impl FnOnce()) {
    let Some(c) = in_child(case, body, Some("aborting")) else {
        return;
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        c.status.signal(),
        Some(libc::SIGABRT),
        "{case}: expected an abort ({}); stderr:\n{}",
        c.status,
        c.stderr
    );
    assert!(
        c.stderr.contains("panicked") && c.stderr.contains(needle),
        "{case}: the abort does not say {needle:?} after the panic; stderr:\n{}",
        c.stderr
    );
}

/// A panic inside a root source, with the world stopped and its roots half visited: the
/// process aborts, saying why. Before, the panic unwound out of `collect` leaving the world
/// stopped: the caller that caught it, and every other mutator, then waited forever.
fn panic_in_root_source(case: &str, config: HeapConfig) {
    expect_abort(
        case,
        "RootSource::for_each_root panicked during a collection",
        || {
            let heap = Heap::new(config).unwrap();
            let mut m = heap.attach();
            heap.add_root_source(Arc::new(PanickingSource));
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.collect()));
            assert!(caught.is_err());
            // Unreachable now; before, this waited forever (the world was never resumed).
            m.safepoint();
            m.collect().unwrap();
        },
    );
}

#[test]
fn a_panic_inside_a_root_source_stop_the_world() {
    panic_in_root_source("a_panic_inside_a_root_source_stop_the_world", stw(4 << 20));
}

#[test]
fn a_panic_inside_a_root_source_concurrent() {
    panic_in_root_source(
        "a_panic_inside_a_root_source_concurrent",
        concurrent(4 << 20),
    );
}

/// A panic of the `on_cycle` hook on the concurrent collector's thread: reported, and the heap
/// goes on (before, the GC thread's panic aborted the process as a collector failure).
/// Stop-the-world, the panic reaches the caller of `collect`, and the heap goes on too.
#[test]
fn a_panic_inside_on_cycle() {
    if !uffd_or_skip("a_panic_inside_on_cycle") {
        return;
    }
    expect_ok("a_panic_inside_on_cycle", || {
        let hook: faultline::CycleHook =
            Arc::new(|_: &faultline::CycleStats| panic!("the on_cycle hook failed"));
        for config in [stw(8 << 20), concurrent(8 << 20)] {
            let concurrent = config.mode == GcMode::Concurrent;
            let heap = Heap::new(config.on_cycle(hook.clone())).unwrap();
            let t = register(&heap);
            let mut m = heap.attach();
            list(&mut m, &t, 2000);
            for round in 0..3 {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.collect()));
                if concurrent {
                    // On the GC thread: the collection completes; nothing to catch.
                    r.expect("no panic reaches the caller").unwrap();
                } else {
                    assert!(r.is_err(), "the hook's panic reaches the caller");
                }
                assert_eq!(heap.cycles(), round + 1);
                assert_eq!(heap.phase(), CyclePhase::Idle);
                m.verify().unwrap();
                assert_eq!(read_list(&m, m.stack_get(0)), (0..2000).collect::<Vec<_>>());
            }
        }
    });
}

thread_local! {
    /// A mutator kept in a thread-local, reached from inside a root source.
    static SOURCE_MUTATOR: std::cell::RefCell<Option<faultline::Mutator>> =
        const { std::cell::RefCell::new(None) };
}

/// A root source that reads an object through the collecting thread's own mutator (kept in a
/// thread-local) at its second call (the flip, in a stop-the-world cycle).
struct ReadsThroughTheMutator(std::sync::atomic::AtomicUsize);

impl RootSource for ReadsThroughTheMutator {
    fn for_each_root(&self, _visit: &mut dyn FnMut(&RootSlot)) {
        if self.0.fetch_add(1, Ordering::SeqCst) == 1 {
            SOURCE_MUTATOR.with(|c| {
                let c = c.borrow();
                let m = c.as_ref().expect("attached");
                let v = m.stack_get(0);
                let l = m.local(v).unwrap();
                eprintln!("MISUSE: read word 0 = {:?} at the flip", l.get(0));
            });
        }
    }
}

/// Inside a root source the world is stopped mid-collection: at the flip the value stack was
/// already forwarded but nothing had moved, so a `Local` reached through a mutator kept in a
/// thread-local read another (dead) object's data. Every mutator access is refused there (the
/// refusal's panic aborts: see `RootSource`).
#[test]
fn a_mutator_used_inside_a_root_source_is_refused() {
    expect_abort(
        "a_mutator_used_inside_a_root_source_is_refused",
        "called from inside RootSource::for_each_root",
        || {
            let heap = Heap::new(stw(4 << 20)).unwrap();
            let t = register(&heap);
            SOURCE_MUTATOR.with(|c| *c.borrow_mut() = Some(heap.attach()));
            SOURCE_MUTATOR.with(|c| {
                let mut c = c.borrow_mut();
                let m = c.as_mut().expect("attached");
                let dead = m.alloc(t.pair, 0).unwrap();
                m.local(dead).unwrap().set(0, fix(1));
                let live = m.alloc(t.pair, 0).unwrap();
                m.local(live).unwrap().set(0, fix(2));
                m.push(live);
            });
            heap.add_root_source(Arc::new(ReadsThroughTheMutator(Default::default())));
            // Through the heap: the thread-local's mutator is not borrowed meanwhile.
            heap.collect().unwrap();
        },
    );
}

// ---------------------------------------------------------------------------------------------
// A leaked mutator: every collection of its heap waits for it (the library cannot tell it from
// a busy one), and says so.

/// In the child: run `body`, which must end the process with status 0 itself. In the parent:
/// require that, and that the child's stderr says every one of `needles`.
fn expect_stderr(case: &str, needles: &[&str], body: impl FnOnce()) {
    let Some(c) = run_ok(case, body) else {
        return;
    };
    for n in needles {
        assert!(
            c.stderr.contains(n),
            "{case}: stderr does not say {n:?}; stderr:\n{}",
            c.stderr
        );
    }
}

#[test]
fn a_leaked_mutator_holding_a_collection_is_named() {
    expect_stderr(
        "a_leaked_mutator_holding_a_collection_is_named",
        &[
            "has waited",
            "'leaked-one'",
            "std::mem::forget",
            "keeps waiting",
            "Heap::with_mutator",
        ],
        || {
            // Read once, at the first stop: before any heap exists here.
            std::env::set_var("FAULTLINE_STALL_REPORT_MS", "300");
            let heap = heap(4 << 20);
            let h2 = heap.clone();
            let (leaked, wait_leaked) = std::sync::mpsc::channel();
            // The thread lives on (blocked outside the heap): its mutator may still be used.
            std::thread::spawn(move || {
                let m = h2.attach_named("leaked-one");
                std::mem::forget(m);
                leaked.send(()).unwrap();
                std::thread::park();
            });
            wait_leaked.recv().unwrap();
            let h3 = heap.clone();
            // The collection never ends (the leaked mutator never polls): run it on a thread
            // of its own and leave the process from here once the report had time to appear.
            std::thread::spawn(move || {
                let _ = h3.collect();
            });
            std::thread::sleep(Duration::from_millis(2000));
            std::process::exit(0);
        },
    );
}

/// A thread that exits with its `Mutator` leaked: no code can reach that mutator any more (it
/// is neither `Send` nor `Sync`), so the next stop counts it as stopped (and says so once)
/// instead of waiting for it forever (every collection of its heap hung). Its roots stay roots.
#[test]
fn a_mutator_leaked_by_an_exited_thread_no_longer_holds_collections() {
    expect_stderr(
        "a_mutator_leaked_by_an_exited_thread_no_longer_holds_collections",
        &["mutator #", "'gone'", "has exited", "counted as stopped"],
        || {
            for config in [stw(4 << 20), concurrent(4 << 20)] {
                let heap = Heap::new(config).unwrap();
                let t = register(&heap);
                let h2 = heap.clone();
                let kept = std::thread::spawn(move || {
                    let mut m = h2.attach_named("gone");
                    let v = m.alloc(t.pair, 0).unwrap();
                    m.push(v);
                    let g = GlobalRoot::new(&h2, v);
                    std::mem::forget(m);
                    g
                })
                .join()
                .unwrap();
                let mut m = heap.attach();
                for _ in 0..3 {
                    m.collect().expect("collect");
                }
                heap.verify().expect("verify");
                // The object the leaked mutator's stack held is still there (its roots are
                // roots), and the global root to it still reads it.
                let v = kept.get(&m);
                assert_eq!(m.local(v).expect("live").type_id(), t.pair);
                assert!(heap.cycles() >= 3);
            }
        },
    );
}

/// `Heap::with_mutator` lends a mutator that cannot be leaked: inside the scope this thread can
/// get no other `Mutator` to swap it out with (every attach is refused), and the scope detaches
/// it on return and on unwind, so a collection from another thread afterwards does not wait
/// for it (with a `Mutator` forgotten instead, `a_leaked_mutator_holding_a_collection_is_named`
/// hangs).
#[test]
fn a_scoped_mutator_cannot_be_leaked() {
    expect_ok("a_scoped_mutator_cannot_be_leaked", || {
        for config in [stw(4 << 20), concurrent(4 << 20)] {
            let other = heap(4 << 20);
            let heap = Heap::new(config).unwrap();
            let t = register(&heap);
            let kept = heap
                .with_mutator(|m| {
                    // No second mutator to swap with: of this heap, of another, nested.
                    assert!(matches!(
                        heap.try_attach(),
                        Err(AttachError::AlreadyAttached { .. })
                    ));
                    assert!(matches!(
                        other.try_attach(),
                        Err(AttachError::OtherHeap { .. })
                    ));
                    assert!(matches!(
                        heap.with_mutator(|_| ()),
                        Err(AttachError::AlreadyAttached { .. })
                    ));
                    let v = m.alloc(t.pair, 0).unwrap();
                    GlobalRoot::new(&heap, v)
                })
                .expect("attach");
            assert_eq!(heap.mutator_count(), 0);
            // A panic inside the scope detaches too.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                heap.with_mutator(|_| panic!("inside the scope")).unwrap()
            }));
            assert!(r.is_err());
            assert_eq!(heap.mutator_count(), 0);
            // Nothing holds a collection up, and the thread may attach elsewhere now.
            let h2 = heap.clone();
            std::thread::spawn(move || h2.collect().expect("collect"))
                .join()
                .unwrap();
            other
                .with_mutator(|_| ())
                .expect("the other heap, after the scope");
            heap.with_mutator(|m| {
                let v = kept.get(m);
                assert_eq!(m.local(v).expect("live").type_id(), t.pair);
            })
            .unwrap();
        }
    });
}
// ---------------------------------------------------------------------------------------------
// Round two of the soundness audit (session s13, docs/soundness-audit.md).

/// The modes the round-two cases run in: stop-the-world, concurrent, generational (cards).
fn round2_modes(bytes: usize) -> Vec<(String, HeapConfig)> {
    vec![
        ("stw".into(), stw(bytes)),
        ("concurrent".into(), concurrent(bytes)),
        (
            "gen".into(),
            concurrent(bytes).with(|c| c.generational = faultline::Generational::Cards),
        ),
    ]
}

/// In each of `modes`: a heap, the mock runtime's types and an attached mutator for `body`;
/// then the heap is verified and the mode named on stderr.
fn each_mode(
    modes: Vec<(String, HeapConfig)>,
    mut body: impl FnMut(&str, &Heap, &Types, &mut faultline::Mutator),
) {
    for (name, c) in modes {
        let heap = Heap::new(c).unwrap();
        let t = register(&heap);
        let mut m = heap.attach();
        body(&name, &heap, &t, &mut m);
        m.verify().unwrap();
        eprintln!("{name}: ok");
    }
}

/// A workload touching every allocation path: a list, a tree, large byte and reference arrays,
/// collections, then the data checked and the heap verified.
fn round2_workload(heap: &Heap) {
    let t = register(heap);
    let mut m = heap.attach();
    list(&mut m, &t, 500);
    tree(&mut m, &t, 8, 1);
    // Large objects: in the large-object space unless it is too small (a configured capacity
    // below the request: `OutOfMemory` naming that space, a defined outcome).
    let large = |m: &mut faultline::Mutator, ty, len| match m.alloc(ty, len) {
        Err(faultline::AllocError::OutOfMemory {
            space, capacity, ..
        }) if space == "large-object space" && capacity < len * 8 => {
            eprintln!("large-object space of {capacity} bytes: OutOfMemory, as configured");
            m.alloc(ty, 1000).unwrap()
        }
        r => r.unwrap(),
    };
    let big = large(&mut m, t.string, 100_000);
    let n = m.local(big).unwrap().len();
    m.local(big).unwrap().write_bytes(n - 10, b"0123456789");
    m.push(big);
    let vec = large(&mut m, t.vector, 20_000);
    m.push(vec);
    for i in 0..3 {
        for _ in 0..2000 {
            m.alloc(t.pair, 0).unwrap();
        }
        let v = m.stack_get(3);
        let p = pair(&mut m, &t, fix(i), Value::NULL);
        m.local(m.stack_get(3)).unwrap().set(i as usize, p);
        let _ = v;
        m.collect().unwrap();
    }
    assert_eq!(read_list(&m, m.stack_get(0)), (0..500).collect::<Vec<_>>());
    assert_eq!(check_tree(&m, m.stack_get(1), 8, 1), 255);
    let mut b = [0u8; 10];
    let n = m.local(m.stack_get(2)).unwrap().len();
    m.local(m.stack_get(2)).unwrap().read_bytes(n - 10, &mut b);
    assert_eq!(&b, b"0123456789");
    for i in 0..3 {
        let p = m.local(m.stack_get(3)).unwrap().get(i);
        assert_eq!(unfix(m.local(p).unwrap().get(0)), i as i64);
    }
    m.verify().unwrap();
}

/// Each mode with `f` applied to the configuration: the heap is refused with a `ConfigError`,
/// or the workload runs and checks out.
fn config_extreme(f: impl Fn(&mut HeapConfig)) {
    for (name, c) in round2_modes(4 << 20) {
        match Heap::new(c.with(&f)) {
            Err(e) => eprintln!("{name}: refused: {e}"),
            Ok(heap) => {
                round2_workload(&heap);
                eprintln!(
                    "{name}: ran, {} cycles, fallback {:?}",
                    heap.cycles(),
                    heap.fallback_reason()
                );
            }
        }
    }
}

macro_rules! config_extremes {
    ($($name:ident: $f:expr;)*) => {$(
        #[test]
        fn $name() {
            expect_ok(stringify!($name), || config_extreme($f));
        }
    )*};
}

config_extremes! {
    cfg_large_space_0: |c| c.large_object_space_bytes = 0;
    cfg_large_space_1: |c| c.large_object_space_bytes = 1;
    cfg_large_space_1tib: |c| c.large_object_space_bytes = 1 << 40;
    cfg_populate_batch_odd: |c| c.populate_batch_bytes = 4097;
    cfg_prefill_max: |c| c.prefill_bytes = usize::MAX;
    cfg_prefill_1: |c| c.prefill_bytes = 1;
    cfg_min_trigger_0: |c| c.min_trigger_bytes = 0;
    cfg_min_trigger_max: |c| c.min_trigger_bytes = usize::MAX;
    cfg_growth_huge: |c| c.growth = 1e300;
    cfg_growth_0: |c| c.growth = 0.0;
    cfg_budget_tiny: |c| c.gc_cpu_budget = 1e-300;
    cfg_dense_tiny: |c| c.dense_prefix = Some(1e-300);
    cfg_dense_1: |c| c.dense_prefix = Some(1.0);
    cfg_history_0: |c| c.history_limit = Some(0);
    cfg_old_growth_huge: |c| c.old_growth = 1e300;
    cfg_old_growth_0: |c| c.old_growth = 0.0;
    cfg_first_survival_huge: |c| c.first_survival_promotion = 1e300;
    cfg_fault_group_max: |c| c.fault_group_pages = u32::MAX;
    cfg_refill_rounds_max: |c| c.refill_wait_rounds = u32::MAX;
    cfg_threshold_min: |c| c.large_object_threshold = 64;
    cfg_tlab_max: |c| { c.tlab_bytes = c.max_heap_bytes / 4; c.large_object_threshold = c.tlab_bytes / 2; };
    cfg_workers_64: |c| { c.compaction_workers = Some(64); c.gc_threads = 64; };
    cfg_slice_max: |c| c.gc_thread_slice_us = u32::MAX;
    cfg_heap_odd: |c| { c.max_heap_bytes = (4 << 20) + 1; };
    cfg_pin_large_refs: |c| c.pin_large_ref_objects = true;
    cfg_populate_batch_huge: |c| c.populate_batch_bytes = 1 << 62;
    cfg_promotion_age_limit: |c| c.promotion_age = 1024;
    cfg_no_recycle: |c| c.recycle_old_half = false;
}

/// Sizes that wrapped to 0 when rounded up to pages (then passed every check: a large-object
/// space of 0 bytes; a population batch of 0 bytes, a division by zero in the allocation path)
/// and a promotion age whose age table could not be allocated (an abort): refused, naming the
/// field.
#[test]
fn config_values_that_wrap_or_cannot_be_allocated_are_refused() {
    expect_ok(
        "config_values_that_wrap_or_cannot_be_allocated_are_refused",
        || {
            type Set = fn(&mut HeapConfig);
            let cases: [(&str, Set); 5] = [
                ("large_object_space_bytes", |c| {
                    c.large_object_space_bytes = usize::MAX
                }),
                ("large_object_space_bytes", |c| {
                    c.large_object_space_bytes = usize::MAX - 4094
                }),
                ("populate_batch_bytes", |c| {
                    c.populate_batch_bytes = usize::MAX
                }),
                ("populate_batch_bytes", |c| {
                    c.populate_batch_bytes = usize::MAX - 4094
                }),
                ("promotion_age", |c| c.promotion_age = u32::MAX),
            ];
            for (field, f) in cases {
                for (name, c) in round2_modes(4 << 20) {
                    match Heap::new(c.with(f)) {
                        Err(e) => assert!(
                            e.to_string().contains(field),
                            "{name}: the error does not name {field}: {e}"
                        ),
                        Ok(h) => panic!(
                            "{name}: {field} accepted: large_object_space_bytes = {}, populate_batch_bytes = {}",
                            h.config().large_object_space_bytes,
                            h.config().populate_batch_bytes
                        ),
                    }
                }
            }
        },
    );
}

/// Safe code allocating an object of the built-in weak-box type by its type id (round one:
/// allocated; a box with no table entry, refused on every use): refused with
/// `AllocError::BuiltinType`, on the fast and the slow path, moving and pinned.
#[test]
fn alloc_of_the_weak_box_type_is_refused() {
    expect_ok("alloc_of_the_weak_box_type_is_refused", || {
        each_mode(round2_modes(4 << 20), |name, heap, t, m| {
            // The built-in weak-box type, found by its name in the registry.
            let types = heap.types();
            let weak_box = (0..types.len() as u32)
                .map(faultline::TypeId)
                .find(|&i| types.get(i).unwrap().name == "faultline.weak-box")
                .unwrap();
            for _ in 0..3 {
                for r in [m.alloc(weak_box, 0), m.alloc_pinned(weak_box, 0)] {
                    match r {
                        Err(e @ faultline::AllocError::BuiltinType(_)) => {
                            assert!(e.to_string().contains("Mutator::new_weak"), "{e}")
                        }
                        other => panic!("{name}: allocating a weak box by type id: {other:?}"),
                    }
                }
                m.collect().unwrap();
            }
            // The API's own boxes are still made.
            let p = m.alloc(t.pair, 0).unwrap();
            let w = m.new_weak(p).unwrap();
            assert!(m.is_weak_box(w) && m.weak_get(w) == p);
        });
    });
}

/// Zero-payload objects (a header only) among others, through collections of every mode.
#[test]
fn zero_payload_objects_survive_collections() {
    expect_ok("zero_payload_objects_survive_collections", || {
        for (_, c) in round2_modes(4 << 20) {
            let heap = Heap::new(c).unwrap();
            let t = register(&heap);
            let empty = heap
                .register_type(faultline::TypeInfo::fixed("empty", 0, &[]))
                .unwrap();
            let mut m = heap.attach();
            let keep = m.alloc(t.vector, 2000).unwrap();
            let keep = m.root(keep);
            for round in 0..4 {
                for i in 0..2000 {
                    let e = m.alloc(empty, 0).unwrap();
                    let b = m.alloc(t.string, 0).unwrap();
                    let _ = b;
                    if i % 3 == round % 3 {
                        keep.get(&m).unwrap().set(i, e);
                    }
                    let p = m.alloc(t.pair, 0).unwrap();
                    m.local(p).unwrap().set(0, fix(i as i64));
                    if i % 2 == 0 {
                        keep.get(&m).unwrap().set(i, p);
                    }
                }
                m.collect().unwrap();
                m.verify().unwrap();
            }
        }
    });
}

/// A value held across a young collection of the generational mode: refused as stale.
#[test]
fn stale_value_across_a_young_cycle() {
    expect_panic(
        "stale_value_across_a_young_cycle",
        &["stale reference"],
        || {
            let heap = Heap::new(
                concurrent(8 << 20).with(|c| c.generational = faultline::Generational::Cards),
            )
            .unwrap();
            let t = register(&heap);
            let mut m = heap.attach();
            let v = m.alloc(t.pair, 0).unwrap();
            m.local(v).unwrap().set(0, fix(5));
            let _r = m.root(v);
            m.collect().unwrap();
            heap.wait_for_compaction();
            let young = heap.history().last().unwrap().gen.young;
            eprintln!("young: {young:?}");
            let _ = m.local(v);
        },
    );
}

/// Weak references and ephemerons across young cycles: a surviving referent is returned with
/// its own data, a dead one reads null.
#[test]
fn weak_references_across_young_cycles() {
    expect_ok("weak_references_across_young_cycles", || {
        each_mode(round2_modes(8 << 20), |name, _, t, m| {
            let kept = m.root(Value::NULL);
            let boxes = m.root(Value::NULL);
            let b = m.alloc(t.vector, 200).unwrap();
            boxes.set(m, b);
            let k = m.alloc(t.vector, 100).unwrap();
            kept.set(m, k);
            for i in 0..100usize {
                let p = m.alloc(t.pair, 0).unwrap();
                m.local(p).unwrap().set(0, fix(i as i64));
                m.push(p);
                let w = m.new_weak(p).unwrap();
                boxes.get(m).unwrap().set(2 * i, w);
                let p = m.pop().unwrap();
                let e = m.new_ephemeron(p, fix(1000 + i as i64)).unwrap();
                boxes.get(m).unwrap().set(2 * i + 1, e);
                // A weak box of a weak box.
                if i % 2 == 0 {
                    let p = m.local(boxes.value(m)).unwrap().get(2 * i);
                    let _ = p;
                    let p = m.weak_get(m.local(boxes.value(m)).unwrap().get(2 * i));
                    kept.get(m).unwrap().set(i, p);
                }
            }
            for cycle in 0..5 {
                for _ in 0..3000 {
                    m.alloc(t.pair, 0).unwrap();
                }
                m.collect().unwrap();
                for i in 0..100usize {
                    let bx = m.local(boxes.value(m)).unwrap();
                    let w = bx.get(2 * i);
                    let e = bx.get(2 * i + 1);
                    let got = m.weak_get(w);
                    let key = m.weak_get(e);
                    let val = m.ephemeron_value(e);
                    if i % 2 == 0 {
                        let l = m.local(got).unwrap_or_else(|| {
                            panic!("{name} cycle {cycle}: kept referent {i} cleared")
                        });
                        assert_eq!(unfix(l.get(0)), i as i64, "{name}: referent {i}");
                        assert_eq!(key, got);
                        assert_eq!(unfix(val), 1000 + i as i64);
                    } else {
                        assert!(
                            got.is_null(),
                            "{name} cycle {cycle}: dead referent {i}: {got:?}"
                        );
                        assert!(key.is_null() && val.is_null());
                    }
                }
                m.verify().unwrap();
            }
        });
    });
}

/// The collecting thread's own mutator (kept in a thread-local) used inside the `on_cycle` hook
/// of a stop-the-world collection started with `Heap::collect`.
#[test]
fn own_mutator_used_inside_on_cycle_stop_the_world() {
    expect_ok("own_mutator_used_inside_on_cycle_stop_the_world", || {
        use std::cell::RefCell;
        thread_local! {
            static M: RefCell<Option<(faultline::Mutator, faultline::Root)>> = const { RefCell::new(None) };
        }
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let s2 = seen.clone();
        let heap = Heap::new(stw(4 << 20).on_cycle(Arc::new(move |_| {
            let r = M.with(|m| {
                let Ok(mut b) = m.try_borrow_mut() else {
                    return "borrowed".to_string();
                };
                let Some((m, root)) = b.as_mut() else {
                    return "none".to_string();
                };
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let v = root.value(m);
                    let l = m.local(v).unwrap();
                    let x = unfix(l.get(0));
                    let p = m.alloc(m.local(root.value(m)).unwrap().type_id(), 0);
                    format!("read {x}, alloc {}", p.is_ok())
                }));
                r.unwrap_or_else(|_| "panicked".into())
            });
            s2.lock().unwrap().push(r);
        })))
        .unwrap();
        let t = register(&heap);
        let mut m = heap.attach();
        for _ in 0..1000 {
            m.alloc(t.pair, 0).unwrap();
        }
        let v = m.alloc(t.pair, 0).unwrap();
        m.local(v).unwrap().set(0, fix(42));
        let r = m.root(v);
        M.with(|s| *s.borrow_mut() = Some((m, r)));
        heap.collect().unwrap();
        heap.collect().unwrap();
        M.with(|s| {
            let b = s.borrow();
            let (m, r) = b.as_ref().unwrap();
            assert_eq!(unfix(m.local(r.value(m)).unwrap().get(0)), 42);
        });
        eprintln!("{:?}", seen.lock().unwrap());
        M.with(|s| {
            let (mut m, _r) = s.borrow_mut().take().unwrap();
            m.verify().unwrap();
        });
    });
}

/// A process spawned (std's fork path: `PATH` set in the child's environment) from inside the
/// `on_cycle` hook, in every mode.
#[test]
fn spawn_inside_on_cycle() {
    expect_ok("spawn_inside_on_cycle", || {
        for (name, c) in round2_modes(4 << 20) {
            let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let n2 = n.clone();
            let heap = Heap::new(c.on_cycle(Arc::new(move |_| {
                let st = std::process::Command::new("true")
                    .env("PATH", "/usr/bin:/bin")
                    .status()
                    .unwrap();
                assert!(st.success());
                n2.fetch_add(1, Ordering::SeqCst);
            })))
            .unwrap();
            round2_workload(&heap);
            assert!(n.load(Ordering::SeqCst) > 0, "{name}: the hook ran");
            // The atfork handlers ran: std forked (its posix_spawn path runs none).
            assert_ne!(
                faultline::testing::last_fork_prepare().0,
                Duration::ZERO,
                "{name}: std spawned without fork"
            );
            eprintln!("{name}: {} spawns", n.load(Ordering::SeqCst));
        }
    });
}

/// Processes spawned through std's fork path from another thread while cycles run.
#[test]
fn spawn_while_cycles_run() {
    expect_ok("spawn_while_cycles_run", || {
        for (name, c) in round2_modes(4 << 20) {
            let heap = Heap::new(c).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let s2 = stop.clone();
            let spawner = std::thread::spawn(move || {
                let mut n = 0;
                while !s2.load(Ordering::SeqCst) {
                    let st = std::process::Command::new("true")
                        .env("PATH", "/usr/bin:/bin")
                        .status()
                        .unwrap();
                    assert!(st.success());
                    n += 1;
                }
                n
            });
            round2_workload(&heap);
            round2_workload(&heap);
            stop.store(true, Ordering::SeqCst);
            eprintln!("{name}: {} spawns", spawner.join().unwrap());
        }
    });
}

/// More modes: both stop-the-world compactions, every strategy x delivery, the generational
/// mode with both remembered sets (where the kernel has what they need), stop-the-world
/// generational.
fn round2_all_modes(bytes: usize) -> Vec<(String, HeapConfig)> {
    use faultline::{FaultMode, Generational, Strategy, StwCompaction};
    let mut v = vec![
        ("stw".to_string(), stw(bytes)),
        (
            "stw/slide".to_string(),
            stw(bytes).with(|c| c.stw_compaction = StwCompaction::Slide),
        ),
        (
            "stw/gen".to_string(),
            stw(bytes).with(|c| c.generational = Generational::Cards),
        ),
    ];
    for strategy in [Strategy::Copy, Strategy::Move, Strategy::Minor] {
        for faults in [FaultMode::Sigbus, FaultMode::Thread] {
            v.push((
                format!("{strategy:?}/{faults:?}"),
                HeapConfig::with_heap_size(bytes).concurrent(strategy, faults),
            ));
        }
    }
    for g in [Generational::Cards, Generational::WrittenPages] {
        let c = concurrent(bytes).with(|c| c.generational = g);
        if Heap::new(c.clone()).is_ok() {
            v.push((format!("gen/{g:?}"), c));
        }
    }
    v
}

/// Churn: `n` garbage pairs and a collection, `times` times.
fn churn_and_collect(m: &mut faultline::Mutator, t: &Types, n: usize, times: usize) {
    for _ in 0..times {
        for _ in 0..n {
            m.alloc(t.pair, 0).unwrap();
        }
        m.collect().unwrap();
    }
}

/// One object pinned twice: I/O through either pin, one pin dropped, collections of every
/// kind (young ones included); the object stays put while a pin lives, its bytes are intact,
/// and it moves again once unpinned.
#[test]
fn an_object_pinned_twice_across_collections() {
    expect_ok("an_object_pinned_twice_across_collections", || {
        use std::io::Write;
        each_mode(round2_all_modes(8 << 20), |name, _, t, m| {
            churn_and_collect(m, t, 3000, 1);
            let v = m.alloc(t.string, 3000).unwrap();
            let p1 = m.pin(v).unwrap();
            let p2 = m.pin(p1.value(m)).unwrap();
            assert_eq!(p1.as_ptr(), p2.as_ptr());
            let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
            let (r, mut w) = std::io::pipe().unwrap();
            w.write_all(&data[..1500]).unwrap();
            assert_eq!(p1.read(r.as_fd(), 0, 1500).unwrap(), 1500);
            w.write_all(&data[1500..]).unwrap();
            assert_eq!(p2.read(r.as_fd(), 1500, 1500).unwrap(), 1500);
            let at = p2.as_ptr();
            drop(p1);
            churn_and_collect(m, t, 3000, 4);
            let v = p2.value(m);
            assert_eq!(m.local(v).unwrap().to_bytes(), data, "{name}: pinned bytes");
            assert_eq!(
                m.local(v).unwrap().object().address() + 8,
                at as usize,
                "{name}: moved while pinned"
            );
            let keep = m.root(v);
            drop(p2);
            churn_and_collect(m, t, 3000, 3);
            assert_eq!(
                keep.get(m).unwrap().to_bytes(),
                data,
                "{name}: unpinned bytes"
            );
        });
    });
}

use std::os::fd::AsFd;

/// A `Pin` outliving the mutator that made it: another thread's mutator collects, the pin's
/// I/O still reaches the object, the pin is dropped on a third thread while cycles run.
#[test]
fn a_pin_outliving_its_mutator() {
    expect_ok("a_pin_outliving_its_mutator", || {
        use std::io::Write;
        for (name, c) in round2_all_modes(8 << 20) {
            let heap = Heap::new(c).unwrap();
            let t = register(&heap);
            let mut m = heap.attach();
            let v = m.alloc(t.string, 2000).unwrap();
            let pin = m.pin(v).unwrap();
            drop(m);
            let h = heap.clone();
            let pin = std::thread::spawn(move || {
                let t = register(&h);
                let mut m2 = h.attach();
                churn_and_collect(&mut m2, &t, 3000, 3);
                pin
            })
            .join()
            .unwrap();
            let (r, mut w) = std::io::pipe().unwrap();
            w.write_all(&[0xab; 2000]).unwrap();
            assert_eq!(pin.read(r.as_fd(), 0, 2000).unwrap(), 2000);
            let mut m = heap.attach();
            let v = pin.value(&m);
            assert!(m.local(v).unwrap().to_bytes().iter().all(|&b| b == 0xab));
            let keep = m.root(v);
            let dropper = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(2));
                drop(pin)
            });
            for _ in 0..4 {
                churn_and_collect(&mut m, &t, 3000, 1);
            }
            m.native(|| dropper.join().unwrap());
            churn_and_collect(&mut m, &t, 3000, 2);
            assert!(keep.get(&m).unwrap().to_bytes().iter().all(|&b| b == 0xab));
            m.verify().unwrap();
            eprintln!("{name}: ok");
        }
    });
}

/// Finalization in every mode: targets dying in young cycles are delivered, held objects move
/// with their data, one target in two queues, a queue dropped on another thread while cycles
/// run, an ephemeron whose key only its own value reaches is cleared.
#[test]
fn finalization_and_ephemerons_in_every_mode() {
    expect_ok("finalization_and_ephemerons_in_every_mode", || {
        each_mode(round2_all_modes(8 << 20), |name, heap, t, m| {
            let q1 = faultline::FinalizationQueue::new(heap);
            let q2 = faultline::FinalizationQueue::new(heap);
            let q3 = faultline::FinalizationQueue::new(heap);
            let eph = m.root(Value::NULL);
            for i in 0..50i64 {
                let target = m.alloc(t.pair, 0).unwrap();
                m.push(target);
                let held = m.alloc(t.pair, 0).unwrap();
                m.local(held).unwrap().set(0, fix(i));
                let target = m.pop().unwrap();
                q1.register(m, target, held);
                q2.register(m, target, fix(100 + i));
                q3.register(m, target, fix(200 + i));
                // Key reachable only from its own ephemeron's value.
                if i == 0 {
                    m.push(target);
                    let val = m.alloc(t.pair, 0).unwrap();
                    let target = m.pop().unwrap();
                    m.local(val).unwrap().set(0, target);
                    let e = m.new_ephemeron(target, val).unwrap();
                    eph.set(m, e);
                }
            }
            let h3 = q3;
            let dropper = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(1));
                drop(h3)
            });
            let mut got1 = Vec::new();
            let mut got2 = Vec::new();
            for _ in 0..6 {
                churn_and_collect(m, t, 2000, 1);
                for v in q1.take(m) {
                    got1.push(unfix(m.local(v).unwrap().get(0)));
                }
                got2.extend(q2.take(m).into_iter().map(unfix));
            }
            m.native(|| dropper.join().unwrap());
            got1.sort();
            got2.sort();
            assert_eq!(got1, (0..50).collect::<Vec<_>>(), "{name}: queue 1");
            assert_eq!(got2, (100..150).collect::<Vec<_>>(), "{name}: queue 2");
            let e = eph.value(m);
            assert!(
                m.weak_get(e).is_null() && m.ephemeron_value(e).is_null(),
                "{name}"
            );
        });
    });
}

/// Many threads attaching and detaching at once while another thread collects in a loop.
#[test]
fn many_threads_attach_and_detach_while_collections_run() {
    expect_ok(
        "many_threads_attach_and_detach_while_collections_run",
        || {
            for (name, c) in round2_modes(8 << 20) {
                let heap = Heap::new(c).unwrap();
                let t = register(&heap);
                let stop = Arc::new(AtomicBool::new(false));
                let collector = {
                    let (h, stop) = (heap.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let mut n = 0;
                        while !stop.load(Ordering::SeqCst) {
                            h.collect().unwrap();
                            n += 1;
                        }
                        n
                    })
                };
                let workers: Vec<_> = (0..8)
                    .map(|k| {
                        let h = heap.clone();
                        let pair = t.pair;
                        std::thread::spawn(move || {
                            for i in 0..60 {
                                let mut m = h.attach();
                                let v = m.alloc(pair, 0).unwrap();
                                m.local(v).unwrap().set(0, fix(k * 1000 + i));
                                let r = m.root(v);
                                for _ in 0..200 {
                                    m.alloc(pair, 0).unwrap();
                                }
                                assert_eq!(unfix(r.get(&m).unwrap().get(0)), k * 1000 + i);
                            }
                        })
                    })
                    .collect();
                for w in workers {
                    w.join().unwrap();
                }
                stop.store(true, Ordering::SeqCst);
                let n = collector.join().unwrap();
                heap.verify().unwrap();
                eprintln!("{name}: {n} collections");
            }
        },
    );
}

faultline::heap_struct! {
    /// Every field kind, odd sizes, nested byte arrays, references last.
    struct Odd {
        a: u8,
        b: bool,
        c: [u8; 3],
        d: u16,
        e: i32,
        f: f64,
        g: [u8; 9],
        h: faultline::Ref,
        i: [u8; 1],
        j: faultline::Ref,
    }
}

faultline::heap_struct! {
    /// Larger than the large-object threshold, with references at both ends.
    struct Huge {
        first: faultline::Ref,
        blob: [u8; 20000],
        last: faultline::Ref,
    }
}

faultline::heap_struct! {
    /// No fields: a header-only object.
    struct Nothing {}
}

/// Typed layouts with unusual shapes through collections of every mode.
#[test]
fn typed_layouts_with_unusual_shapes() {
    expect_ok("typed_layouts_with_unusual_shapes", || {
        for (name, c) in round2_all_modes(8 << 20) {
            let heap = Heap::new(c).unwrap();
            let t = register(&heap);
            let odd = heap.register_struct::<Odd>().unwrap();
            let huge = heap.register_struct::<Huge>().unwrap();
            let nothing = heap.register_struct::<Nothing>().unwrap();
            assert_eq!(
                heap.register_struct::<Odd>().unwrap().type_id(),
                odd.type_id()
            );
            let mut m = heap.attach();
            let keep = m.alloc(t.vector, 300).unwrap();
            let keep = m.root(keep);
            for i in 0..100usize {
                let o = odd.alloc(&mut m).unwrap();
                keep.get(&m).unwrap().set(3 * i, o);
                let n = nothing.alloc(&mut m).unwrap();
                keep.get(&m).unwrap().set(3 * i + 1, n);
                if i % 10 == 0 {
                    let hg = huge.alloc(&mut m).unwrap();
                    keep.get(&m).unwrap().set(3 * i + 2, hg);
                }
                let k = keep.get(&m).unwrap();
                let o = odd.view(m.local(k.get(3 * i)).unwrap()).unwrap();
                o.set(Odd::a, i as u8);
                o.set(Odd::b, true);
                o.set(Odd::c, [1, 2, i as u8]);
                o.set(Odd::d, 0xbeef);
                o.set(Odd::e, -(i as i32));
                o.set(Odd::f, i as f64 / 2.0);
                o.set(Odd::g, [i as u8; 9]);
                o.set(Odd::h, k.get(3 * i + 1));
                o.set(Odd::i, [0x5a]);
                o.set(Odd::j, fix(i as i64));
                if i % 10 == 0 {
                    let hg = huge.view(m.local(k.get(3 * i + 2)).unwrap()).unwrap();
                    hg.set(Huge::first, k.get(3 * i));
                    hg.set(Huge::last, k.get(3 * i + 1));
                    let mut blob = [0u8; 20000];
                    blob[19999] = i as u8;
                    hg.set(Huge::blob, blob);
                }
            }
            churn_and_collect(&mut m, &t, 3000, 4);
            for i in 0..100usize {
                let k = keep.get(&m).unwrap();
                let o = odd.view(m.local(k.get(3 * i)).unwrap()).unwrap();
                assert_eq!(o.get(Odd::a), i as u8, "{name}");
                assert!(o.get(Odd::b));
                assert_eq!(o.get(Odd::c), [1, 2, i as u8]);
                assert_eq!(o.get(Odd::d), 0xbeef);
                assert_eq!(o.get(Odd::e), -(i as i32));
                assert_eq!(o.get(Odd::f), i as f64 / 2.0);
                assert_eq!(o.get(Odd::g), [i as u8; 9]);
                assert_eq!(o.get(Odd::h), k.get(3 * i + 1));
                assert!(nothing.is(&m.local(o.get(Odd::h)).unwrap()));
                assert_eq!(o.get(Odd::i), [0x5a]);
                assert_eq!(unfix(o.get(Odd::j)), i as i64);
                if i % 10 == 0 {
                    let hg = huge.view(m.local(k.get(3 * i + 2)).unwrap()).unwrap();
                    assert_eq!(hg.get(Huge::first), k.get(3 * i));
                    assert_eq!(hg.get(Huge::last), k.get(3 * i + 1));
                    assert_eq!(hg.get(Huge::blob)[19999], i as u8);
                }
            }
            m.verify().unwrap();
            eprintln!("{name}: ok");
        }
    });
}

/// Reference arrays in the non-moving space (`alloc_pinned`, and large ones with
/// `pin_large_ref_objects`) holding the only references to young objects, through young and
/// full cycles: every element still names its own object.
#[test]
fn non_moving_reference_arrays_keep_young_objects() {
    expect_ok("non_moving_reference_arrays_keep_young_objects", || {
        let mut modes = round2_all_modes(8 << 20);
        modes.extend(round2_all_modes(8 << 20).into_iter().map(|(n, c)| {
            (
                format!("{n}/pin_large"),
                c.with(|c| c.pin_large_ref_objects = true),
            )
        }));
        each_mode(modes, |name, _, t, m| {
            let a = m.alloc_pinned(t.vector, 64).unwrap();
            let a = m.root(a);
            let b = m.alloc(t.vector, 4000).unwrap();
            let b = m.root(b);
            let mut tag = 0i64;
            for round in 0..6 {
                for i in 0..64 {
                    let p = m.alloc(t.pair, 0).unwrap();
                    m.local(p).unwrap().set(0, fix(tag + i as i64));
                    a.get(m).unwrap().set(i, p);
                    let q = m.alloc(t.pair, 0).unwrap();
                    m.local(q).unwrap().set(0, fix(tag + i as i64));
                    b.get(m).unwrap().set(i * 60, q);
                }
                for _ in 0..3000 {
                    m.alloc(t.pair, 0).unwrap();
                }
                m.collect().unwrap();
                for i in 0..64 {
                    let p = a.get(m).unwrap().get(i);
                    assert_eq!(
                        unfix(m.local(p).unwrap().get(0)),
                        tag + i as i64,
                        "{name} round {round}: pinned array element {i}"
                    );
                    let q = b.get(m).unwrap().get(i * 60);
                    assert_eq!(
                        unfix(m.local(q).unwrap().get(0)),
                        tag + i as i64,
                        "{name} round {round}: large array element {i}"
                    );
                }
                tag += 1000;
            }
        });
    });
}

/// Identity hash codes across collections of every kind (young, slide, pinned objects).
#[test]
fn identity_hashes_survive_every_kind_of_collection() {
    expect_ok("identity_hashes_survive_every_kind_of_collection", || {
        each_mode(round2_all_modes(8 << 20), |name, _, t, m| {
            let keep = m.alloc(t.vector, 200).unwrap();
            let keep = m.root(keep);
            let mut hashes = Vec::new();
            let mut pins = Vec::new();
            for i in 0..200 {
                for _ in 0..20 {
                    m.alloc(t.pair, 0).unwrap();
                }
                let p = m.alloc(t.pair, 0).unwrap();
                keep.get(m).unwrap().set(i, p);
                hashes.push(m.identity_hash(p).unwrap());
                if i % 50 == 0 {
                    pins.push(m.pin(p).unwrap());
                }
            }
            for round in 0..5 {
                churn_and_collect(m, t, 3000, 1);
                if round == 2 {
                    pins.clear();
                }
                for (i, &h) in hashes.iter().enumerate() {
                    let p = keep.get(m).unwrap().get(i);
                    assert_eq!(
                        m.identity_hash(p),
                        Some(h),
                        "{name} round {round}: hash {i}"
                    );
                }
            }
            let mut uniq = hashes.clone();
            uniq.sort();
            uniq.dedup();
            eprintln!("{name}: ok ({} distinct of {})", uniq.len(), hashes.len());
        });
    });
}

/// One `RootSlot` written by mutators of two heaps at once: a read must never return one
/// heap's object as current in the other heap (a store writes the bits and the era; two
/// stores interleaved left the bits of one with the era of the other).
#[test]
fn a_root_slot_written_by_two_heaps_at_once_never_mixes_them() {
    expect_ok(
        "a_root_slot_written_by_two_heaps_at_once_never_mixes_them",
        || {
            std::panic::set_hook(Box::new(|_| {}));
            let slot = Arc::new(RootSlot::new());
            let stop = Arc::new(AtomicBool::new(false));
            let writer = |heap: Heap, stop: Arc<AtomicBool>, slot: Arc<RootSlot>| {
                std::thread::spawn(move || {
                    let t = register(&heap);
                    let mut m = heap.attach();
                    let mine = m.alloc(t.pair, 0).unwrap();
                    let mine = m.root(mine);
                    let (mut loads, mut refused, mut mixed) = (0u64, 0u64, 0u64);
                    let t0 = Instant::now();
                    while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(10) {
                        let v = mine.value(&m);
                        m.store(&slot, v);
                        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            m.load(&slot)
                        }));
                        loads += 1;
                        match got {
                            Ok(g) if g.is_ref() && g != mine.value(&m) => {
                                mixed += 1;
                                stop.store(true, Ordering::Relaxed);
                            }
                            Ok(_) => {}
                            Err(_) => refused += 1,
                        }
                    }
                    (loads, refused, mixed)
                })
            };
            let a = writer(heap(4 << 20), stop.clone(), slot.clone());
            let b = writer(heap(4 << 20), stop.clone(), slot.clone());
            let (a, b) = (a.join().unwrap(), b.join().unwrap());
            let _ = std::panic::take_hook();
            eprintln!("a: {a:?}, b: {b:?}");
            assert_eq!(
                (a.2, b.2),
                (0, 0),
                "a load returned the other heap's object as current"
            );
        },
    );
}

/// A root source that runs `f` (with the heap) at every visit.
struct CallsInside(Heap, fn(&Heap));
impl RootSource for CallsInside {
    fn for_each_root(&self, _visit: &mut dyn FnMut(&RootSlot)) {
        (self.1)(&self.0)
    }
}

/// Run `f` inside a root source of a stop-the-world collection and of a concurrent one.
fn inside_a_root_source(f: fn(&Heap)) {
    for c in [stw(4 << 20), concurrent(4 << 20)] {
        let heap = Heap::new(c).unwrap();
        let t = register(&heap);
        {
            let mut m = heap.attach();
            list(&mut m, &t, 100);
        }
        heap.add_root_source(Arc::new(CallsInside(heap.clone(), f)));
        heap.collect().unwrap();
    }
}

/// The heap's read-only queries and the finalization queue's lock-only calls from inside a
/// root source (the world stopped by the calling thread): they answer (none takes a lock the
/// stop holds). The calls that would need the safepoint or touch roots are refused there
/// (round one).
#[test]
fn heap_queries_inside_a_root_source() {
    expect_ok("heap_queries_inside_a_root_source", || {
        inside_a_root_source(|h| {
            let q = faultline::FinalizationQueue::new(h);
            eprintln!(
                "{} {} {} {:?} {} {} {:?}",
                h.history().len(),
                h.weak_stats().weak_cleared,
                h.mutator_waits().total().as_nanos(),
                h.phase(),
                q.registered(),
                q.unregister(5),
                h.mutator_wait_log().len(),
            );
            let _ = h.types();
            let _ = h.fault_stats();
            let _ = h.pin_stats();
            let _ = h.mode_info();
            let _ = h.release_stats();
            let _ = h.prefill_stats();
        })
    });
}

/// A panic inside the (public) mark hook of a concurrent heap: before, it unwound into the GC
/// thread's guard, which aborted the process ("the GC thread failed"); now it is reported,
/// marking continues, and the heap and its data are intact.
#[test]
fn a_panic_inside_the_mark_hook() {
    // The mark hook runs in concurrent cycles only (without userfaultfd the heap falls back
    // to stop-the-world and never calls it).
    if !uffd_here("a_panic_inside_the_mark_hook") {
        return;
    }
    let c = run_ok("a_panic_inside_the_mark_hook", || {
        std::panic::set_hook(Box::new(|_| {}));
        let heap = Heap::new(concurrent(4 << 20).with(|c| {
            c.debug.mark_hook = Some(Arc::new(|p| {
                if matches!(
                    p,
                    faultline::MarkPoint::Started | faultline::MarkPoint::Traced(5)
                ) {
                    panic!("a panic inside the mark hook")
                }
            }))
        }))
        .unwrap();
        let t = register(&heap);
        let mut m = heap.attach();
        list(&mut m, &t, 300);
        churn_and_collect(&mut m, &t, 2000, 3);
        assert_eq!(read_list(&m, m.stack_get(0)), (0..300).collect::<Vec<_>>());
        assert!(heap.cycles() >= 3);
        m.verify().unwrap();
    });
    if let Some(c) = c {
        assert!(
            c.stderr.contains("the mark hook panicked"),
            "the panic is reported: {}",
            c.stderr
        );
    }
}

/// A stress delay of `Duration::MAX` (the debug knobs are public configuration): before, the
/// heap was built and every concurrent collection slept for good; now refused, naming the
/// field.
#[test]
fn a_stress_delay_that_would_hang_every_collection_is_refused() {
    expect_ok(
        "a_stress_delay_that_would_hang_every_collection_is_refused",
        || {
            type Set = fn(&mut HeapConfig);
            let cases: [(&str, Set); 3] = [
                ("phase_delay", |c| c.debug.phase_delay = Some(Duration::MAX)),
                ("compaction_delay", |c| {
                    c.debug.compaction_delay = Some(Duration::from_secs(3600))
                }),
                ("worker_stall", |c| {
                    c.debug.worker_stall = Some(Duration::MAX)
                }),
            ];
            for (field, f) in cases {
                match Heap::new(concurrent(4 << 20).with(f)) {
                    Err(e) => assert!(e.to_string().contains(field), "{e}"),
                    Ok(_) => panic!("{field}: accepted"),
                }
            }
            // The delays the tests use still work.
            let heap = Heap::new(
                concurrent(4 << 20).with(|c| c.debug.phase_delay = Some(Duration::from_millis(1))),
            )
            .unwrap();
            round2_workload(&heap);
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Round three (session s14).

/// A field of `/proc/self/status` in bytes (`VmRSS`: resident memory).
fn status_bytes(field: &str) -> usize {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: usize = s
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    kib * 1024
}

/// Registering many types (a runtime with thousands of classes), with a mutator allocating and
/// reading an object of each new type: resident memory grows linearly. Before s14 every
/// registration kept a full copy of the registry (mutators held plain references into every
/// version): 1000 types took 117 MiB, 2000 445 MiB, 10 000 about 10 GiB. Run in a child
/// process, so the resident memory measured is this case's alone.
#[test]
fn registering_many_types_keeps_memory_linear() {
    expect_ok("registering_many_types_keeps_memory_linear", || {
        const TYPES: usize = 20_000;
        // One type's memory: its `TypeInfo`, its scan layout and reference-word list (three
        // words each), three small heap blocks (name, offsets, reference words: 32 bytes from
        // malloc) and one 40-byte object with its fast-path size entry (8 bytes); the registry's
        // buffers hold an entry at most twice (a full buffer is kept when the next one is
        // made), and twice that again for allocator rounding and the doubling of the
        // mutator's size table.
        let entry = std::mem::size_of::<faultline::TypeInfo>() + 2 * 3 * 8 + 3 * 32 + 48;
        let per_type = 4 * entry;
        // Page granularity, the allocator's arenas, the heap's side structures.
        let slack = 8 << 20;
        let heap = heap(16 << 20);
        let mut m = heap.attach();
        let rss0 = status_bytes("VmRSS");
        for i in 1..=TYPES {
            let t = heap
                .register_type(faultline::TypeInfo::fixed(
                    &format!("class{i}"),
                    32,
                    &[0, 16],
                ))
                .unwrap();
            let v = m.alloc(t, 0).unwrap();
            assert!(m.local(v).unwrap().get(0).is_null());
            if i % 1000 == 0 {
                let grown = status_bytes("VmRSS").saturating_sub(rss0);
                assert!(
                    grown <= i * per_type + slack,
                    "{i} types: resident memory grew by {} KiB, more than {} KiB ({per_type} bytes a type + {} KiB)",
                    grown >> 10,
                    (i * per_type + slack) >> 10,
                    slack >> 10
                );
            }
        }
    });
}

/// Round four of the audit (s25, helper `audit4`), case 1: a mutator lent by
/// `Heap::with_mutator` inside the mark hook or the `on_cycle` hook of a concurrent heap,
/// allocating until the space is exhausted. It waited for the running cycle's flip (the last
/// resort of an exhausted allocation) on the very thread that runs that cycle: forever. Now
/// the allocation is refused (`collect_for` answers `Reentrant`, naming the hook) and the heap
/// goes on.
fn exhaust_inside_a_hook(on_cycle: bool) {
    static HEAP: Mutex<Option<(Heap, faultline::TypeId)>> = Mutex::new(None);
    static ONCE: AtomicBool = AtomicBool::new(false);
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    fn fill() {
        let Some((heap, vector)) = HEAP.lock().unwrap().clone() else {
            return;
        };
        let r = heap.with_mutator(|m| {
            let mut n = 0usize;
            let err = loop {
                match m.alloc(vector, 500) {
                    Ok(v) => {
                        m.push(v); // kept: the space runs out
                        n += 1;
                    }
                    Err(e) => break e.to_string(),
                }
            };
            SEEN.lock()
                .unwrap()
                .push(format!("{n} allocated, then: {err}"));
        });
        assert!(r.is_ok(), "{r:?}");
    }
    let heap = Heap::new(concurrent(8 << 20).with(|c| {
        if on_cycle {
            c.on_cycle = Some(Arc::new(|_| {
                if !ONCE.swap(true, Ordering::SeqCst) {
                    fill();
                }
            }));
        } else {
            c.debug.mark_hook = Some(Arc::new(|p| {
                if p == faultline::MarkPoint::Started && !ONCE.swap(true, Ordering::SeqCst) {
                    fill();
                }
            }));
        }
    }))
    .unwrap();
    assert_eq!(heap.mode_info().mode, GcMode::Concurrent);
    let t = register(&heap);
    *HEAP.lock().unwrap() = Some((heap.clone(), t.vector));
    let mut m = heap.attach();
    list(&mut m, &t, 1000);
    let head = m.pop().unwrap();
    let root = m.root(head);
    m.collect().unwrap();
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "the hook ran its fill once: {seen:?}");
    assert!(
        seen[0].contains("inside") && !seen[0].starts_with("0 "),
        "refused once the space ran out, naming the hook: {seen:?}"
    );
    // The heap goes on: what the hook's mutator kept is garbage now.
    m.collect().unwrap();
    assert_eq!(read_list(&m, root.value(&m)), (0..1000).collect::<Vec<_>>());
    heap.verify().unwrap();
    *HEAP.lock().unwrap() = None;
}

#[test]
fn exhausting_the_space_inside_the_mark_hook_is_refused() {
    if !uffd_here("exhausting_the_space_inside_the_mark_hook_is_refused") {
        return;
    }
    expect_ok(
        "exhausting_the_space_inside_the_mark_hook_is_refused",
        || exhaust_inside_a_hook(false),
    );
}

#[test]
fn exhausting_the_space_inside_on_cycle_is_refused() {
    if !uffd_here("exhausting_the_space_inside_on_cycle_is_refused") {
        return;
    }
    expect_ok("exhausting_the_space_inside_on_cycle_is_refused", || {
        exhaust_inside_a_hook(true)
    });
}

/// Round four, case 2: a mutator leaked (`std::mem::forget`) on a thread that then exited no
/// longer holds collections (`a_leaked_mutator_of_an_exited_thread...`), unless its thread id
/// was handed to a later thread first: that thread looked alive, and every collection waited
/// for the leaked mutator forever. Now the thread's start time, recorded at attach, tells the
/// two apart. Cycles thread ids until one comes back (about `pid_max` threads: skipped where
/// `pid_max` is above 65 536, where that takes too long).
#[test]
fn a_leaked_mutator_whose_thread_id_was_reused_does_not_hold_collections() {
    const CASE: &str = "a_leaked_mutator_whose_thread_id_was_reused_does_not_hold_collections";
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u64::MAX);
    if pid_max > 65_536 {
        eprintln!("SKIPPED: {CASE}: pid_max is {pid_max}: reusing a thread id takes too long");
        return;
    }
    expect_ok(CASE, || {
        let heap = Heap::new(stw(4 << 20)).unwrap();
        let h = heap.clone();
        let leaked = std::thread::spawn(move || {
            std::mem::forget(h.attach());
            gettid()
        })
        .join()
        .unwrap();
        // Threads until one gets the leaked thread's id; it stays alive during the collection.
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let mut keeper = None;
        for _ in 0..4 * pid_max {
            let tid_tx = tid_tx.clone();
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let t = std::thread::spawn(move || {
                let tid = gettid();
                tid_tx.send(tid).unwrap();
                if tid == leaked {
                    let _ = go_rx.recv();
                }
            });
            if tid_rx.recv().unwrap() == leaked {
                keeper = Some((t, go_tx));
                break;
            }
            t.join().unwrap();
        }
        let (t, go) = keeper.expect("the thread id came back");
        heap.collect().unwrap(); // waited forever before the fix (the watchdog's hang)
        assert_eq!(heap.cycles(), 1);
        drop(go);
        t.join().unwrap();
    });
}

//! Soundness audit, round eight (docs/soundness-audit.md): safe code across two heaps (calls
//! on one heap from a thread whose mutator of another runs), and the other surfaces the round
//! lists.
//!
//! Invariant: each test checks a defined outcome of safe code (a value read back, an error, or
//! a panic naming the mistake); a case that could hang runs in a child process (this binary
//! re-executed with [`CASE_VAR`] naming the test) under a watchdog that turns the hang into a
//! failure, so a hung case leaves no stopped heap behind in the parent.

mod common;
use common::*;

use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use faultline::{GcMode, GlobalRoot, Heap, HeapConfig, Value};

/// The environment variable naming the case a child process runs.
const CASE_VAR: &str = "AUDIT8_CASE";
/// A child running longer than this is killed: the case hangs.
const WATCHDOG: Duration = Duration::from_secs(30);

fn stw(bytes: usize) -> HeapConfig {
    HeapConfig::with_heap_size(bytes).mode(GcMode::StopTheWorld)
}

/// In the child (this process runs `case`): run `body`. In the parent: run the child under
/// the watchdog and require that it exited 0 (its assertions check the outcome).
fn in_child(case: &str, body: impl FnOnce()) {
    child::in_child(case, CASE_VAR, WATCHDOG, body)
}

/// Two heaps A and B; thread T's mutator of A and thread W's mutator of B run (busy, not
/// polling) while an unattached thread collects each heap, so each heap's stop waits for
/// its running mutator. Then T roots a value in B (`GlobalRoot::new(&b, ..)`) and W one in A.
/// `GlobalRoot::new` from a thread with no running mutator of the heap waited for that
/// heap's pause to end, and did so while the thread's mutator of the other heap ran: T waited
/// for B's stop, which waited for W, which waited for A's stop, which waited for T (a deadlock:
/// the watchdog's hang). Rooting null (or an immediate) needs no wait; rooting a reference
/// from such a thread is refused with a panic naming the mistake (as `Heap::collect` is
/// refused there), and inside the mutator's `native` section it waits as before.
#[test]
fn global_roots_made_on_each_others_heap_while_both_stop_do_not_deadlock() {
    in_child(
        "global_roots_made_on_each_others_heap_while_both_stop_do_not_deadlock",
        || {
            let a = Heap::new(stw(4 << 20)).unwrap();
            let b = Heap::new(stw(4 << 20)).unwrap();
            let attached = Arc::new(Barrier::new(3));
            let go = Arc::new(Barrier::new(3));
            let side = |mine: Heap, theirs: Heap, attached: Arc<Barrier>, go: Arc<Barrier>| {
                std::thread::spawn(move || {
                    let t = register(&mine);
                    let mut m = mine.attach();
                    let v = m.alloc(t.pair, 0).unwrap();
                    let _keep = m.root(v);
                    attached.wait();
                    // Busy (no poll) until the other heap's stop is under way.
                    go.wait();
                    let null = GlobalRoot::new(&theirs, Value::NULL);
                    let imm = GlobalRoot::new(&theirs, fix(7));
                    drop((null, imm));
                    m.safepoint();
                })
            };
            let t = side(a.clone(), b.clone(), attached.clone(), go.clone());
            let w = side(b.clone(), a.clone(), attached.clone(), go.clone());
            attached.wait();
            let (ca, cb) = (a.clone(), b.clone());
            let xa = std::thread::spawn(move || ca.collect().unwrap());
            let xb = std::thread::spawn(move || cb.collect().unwrap());
            // Both stops begin and wait for their running mutator.
            std::thread::sleep(Duration::from_millis(300));
            go.wait();
            for h in [t, w, xa, xb] {
                h.join().unwrap();
            }
            assert_eq!((a.cycles(), b.cycles()), (1, 1));
        },
    );
}

/// The refusal of the case above, with no pause in progress (so it does not depend on
/// timing): a reference of heap B rooted from a thread whose mutator of heap A runs panics
/// naming both heaps; inside that mutator's native section it is rooted, and reads back.
#[test]
fn a_reference_rooted_on_another_heap_from_a_running_mutator_is_refused() {
    let a = Heap::new(stw(4 << 20)).unwrap();
    let b = Heap::new(stw(4 << 20)).unwrap();
    let tb = register(&b);
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let holder = {
        let b = b.clone();
        std::thread::spawn(move || {
            let mut m = b.attach();
            let v = pair(&mut m, &tb, fix(1), fix(2));
            let _keep = m.root(v);
            tx.send(v).unwrap();
            // Stays attached (no collection of B meanwhile: `v` stays current).
            m.native(move || done_rx.recv().unwrap());
        })
    };
    let v = rx.recv().unwrap();
    let mut ma = a.attach();
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        GlobalRoot::new(&b, v);
    }))
    .expect_err("rooting a reference of B while A's mutator runs is refused");
    let msg = refused
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        msg.contains("is running") && msg.contains(&format!("heap #{}", a.id())),
        "{msg}"
    );
    let b2 = b.clone();
    let root = ma.native(move || GlobalRoot::new(&b2, v));
    done_tx.send(()).unwrap();
    holder.join().unwrap();
    drop(ma);
    let mut mb = b.attach();
    mb.collect().unwrap();
    let v = root.get(&mb);
    let l = mb.local(v).unwrap();
    assert_eq!((unfix(l.get(0)), unfix(l.get(1))), (1, 2));
}

/// A fork (here std's fork path: `Command` with `PATH` set, safe code) while a thread whose
/// mutator of heap A runs queries heap B (`mutator_count`, `pause_timeline`: they take B's
/// safepoint lock). *prepare* stopped the heaps one after the other and kept each one's
/// safepoint lock from its stop to the fork: holding B's (made first) while it waited for A's
/// running mutator, whose thread waited for B's lock in the query: the forking thread and that
/// thread waited for each other forever (the watchdog's hang). Every spawn must return, and
/// the querying thread must go on.
#[test]
fn a_fork_while_a_running_mutator_queries_another_heap_does_not_deadlock() {
    in_child(
        "a_fork_while_a_running_mutator_queries_another_heap_does_not_deadlock",
        || {
            use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
            let b = Heap::new(stw(4 << 20)).unwrap();
            let a = Heap::new(stw(4 << 20)).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let queries = Arc::new(AtomicU64::new(0));
            let querier = {
                let (a, b, stop, queries) = (a.clone(), b.clone(), stop.clone(), queries.clone());
                std::thread::spawn(move || {
                    let mut m = a.attach();
                    while !stop.load(Ordering::Relaxed) {
                        // Running (no poll) for a while, querying B.
                        for _ in 0..2000 {
                            assert_eq!(b.mutator_count(), 0);
                            let _ = b.pause_timeline();
                        }
                        queries.fetch_add(1, Ordering::Relaxed);
                        m.safepoint();
                    }
                })
            };
            while queries.load(Ordering::Relaxed) == 0 {
                std::thread::yield_now();
            }
            for _ in 0..30 {
                let st = Command::new("true")
                    .env("PATH", "/usr/bin:/bin")
                    .status()
                    .expect("spawn");
                assert!(st.success());
            }
            let before = queries.load(Ordering::Relaxed);
            while queries.load(Ordering::Relaxed) == before {
                std::thread::yield_now();
            }
            stop.store(true, Ordering::Relaxed);
            querier.join().unwrap();
        },
    );
}

/// Run `true` through std's fork path (`PATH` set: the atfork handlers run); whether it
/// succeeded.
fn spawn_by_fork() -> bool {
    Command::new("true")
        .env("PATH", "/usr/bin:/bin")
        .status()
        .is_ok_and(|s| s.success())
}

/// A thread-local whose destructor uses the heap (a runtime flushing per-thread state at
/// thread exit: `Heap::with_mutator`, `GlobalRoot::new`, `Heap::collect`, a fork), on a
/// thread that touched it before it first attached, collected and forked: thread-locals are
/// destroyed in the reverse order of their first use, so the heap's own thread-locals (the
/// list of the thread's mutators, the pause crew, the fork handlers' list) were destroyed
/// first, and the heap call in the later destructor panicked reaching them ("cannot access a
/// Thread Local Storage value during or after destruction"): a panic in a thread-local
/// destructor aborts the process. The calls must work there.
#[test]
fn the_heap_used_from_a_thread_local_destructor_at_thread_exit() {
    in_child(
        "the_heap_used_from_a_thread_local_destructor_at_thread_exit",
        || {
            use std::cell::RefCell;
            use std::sync::Mutex;
            struct Flush(Option<(Heap, Arc<Mutex<Option<GlobalRoot>>>)>);
            impl Drop for Flush {
                fn drop(&mut self) {
                    let Some((heap, out)) = self.0.take() else {
                        return;
                    };
                    let t = register(&heap);
                    let kept = heap
                        .with_mutator(|m| {
                            let v = pair(m, &t, fix(41), fix(42));
                            m.push(v);
                            m.collect().unwrap();
                            let v = m.pop().unwrap();
                            GlobalRoot::new(m.heap(), v)
                        })
                        .expect("with_mutator at thread exit");
                    heap.collect().expect("collect at thread exit");
                    assert!(spawn_by_fork(), "a fork at thread exit");
                    *out.lock().unwrap() = Some(kept);
                }
            }
            thread_local! {
                static FLUSH: RefCell<Flush> = const { RefCell::new(Flush(None)) };
            }
            for config in [stw(4 << 20), HeapConfig::with_heap_size(4 << 20)] {
                let heap = Heap::new(config).unwrap();
                let out = Arc::new(Mutex::new(None));
                let (h, o) = (heap.clone(), out.clone());
                std::thread::spawn(move || {
                    // First use of the thread-local, before the heap's own.
                    FLUSH.with(|f| f.borrow_mut().0 = Some((h.clone(), o)));
                    let mut m = h.attach();
                    list(&mut m, &register(&h), 10);
                    m.collect().unwrap();
                    drop(m);
                    h.collect().unwrap();
                    assert!(spawn_by_fork());
                })
                .join()
                .expect("the thread exits");
                let kept = out.lock().unwrap().take().expect("the destructor ran");
                let m = heap.attach();
                let l = m.local(kept.get(&m)).unwrap();
                assert_eq!((unfix(l.get(0)), unfix(l.get(1))), (41, 42));
            }
        },
    );
}

/// Review of round eight: a reference of heap B passed to `GlobalRoot::new` of heap A by a
/// thread whose mutator of B runs is refused as a reference of another heap (what it is), not
/// with the advice to root it inside a native section, where it would be refused all the
/// same.
#[test]
fn another_heaps_reference_from_a_running_mutator_is_refused_as_foreign() {
    let a = Heap::new(stw(4 << 20)).unwrap();
    let b = Heap::new(stw(4 << 20)).unwrap();
    let tb = register(&b);
    let mut mb = b.attach();
    let v = pair(&mut mb, &tb, fix(1), fix(2));
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        GlobalRoot::new(&a, v);
    }))
    .expect_err("a reference of B is refused by A");
    let msg = refused
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        msg.contains("cannot cross heaps") && !msg.contains("native section"),
        "{msg}"
    );
    drop(mb);
}

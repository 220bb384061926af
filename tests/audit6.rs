//! Soundness audit, round six (docs/soundness-audit.md): the safe API under fork with
//! generational heaps, hooks' lent mutators and native sections, weak boxes across forks,
//! generational large objects through young and full cycles, panics of the `on_cycle` hook
//! unwinding out of an allocation, and attach requests inside native sections and lent
//! scopes. `libc::fork` is the one `unsafe` call (fork is supported with live heaps).
//!
//! Invariant: every test of this binary takes the fork guard (`common::forking::serial`): a
//! fork stops every heap of the process and runs the child's fork handler over each of them,
//! so no other test's heap may be in use by a thread that is not a mutator at that moment.

mod common;
use common::forking::{serial, wait_child};
use common::*;
use faultline::{GcMode, Generational, Heap, HeapConfig, Value};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A gate the `on_cycle` hook blocks on: armed by the test, the hook says it is inside and
/// waits until released.
#[derive(Default)]
struct HookGate {
    st: Mutex<(bool, bool, bool)>, // armed, inside, release
    cv: Condvar,
}

impl HookGate {
    fn hook(&self) {
        let mut g = self.st.lock().unwrap();
        if !g.0 {
            return;
        }
        g.0 = false;
        g.1 = true;
        self.cv.notify_all();
        while !g.2 {
            g = self.cv.wait(g).unwrap();
        }
        g.1 = false;
        g.2 = false;
        self.cv.notify_all();
    }
    fn arm(&self) {
        self.st.lock().unwrap().0 = true;
    }
    fn wait_inside(&self) {
        let mut g = self.st.lock().unwrap();
        while !g.1 {
            g = self.cv.wait(g).unwrap();
        }
    }
    fn release(&self) {
        let mut g = self.st.lock().unwrap();
        g.2 = true;
        self.cv.notify_all();
        while g.1 {
            g = self.cv.wait(g).unwrap();
        }
    }
}

fn fork_child(child: impl FnOnce()) -> i32 {
    // SAFETY: the child runs heap code (fork-aware) and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).is_ok();
        // SAFETY: ends the child without the parent's destructors.
        unsafe { libc::_exit(if ok { 0 } else { 3 }) };
    }
    wait_child(pid)
}

/// Generational (cards), concurrent: fork during each of several cycles after its flip,
/// either while its `on_cycle` hook runs (`hook`: the compaction is over, the cycle not yet
/// idle) or while its compaction workers are held back. Every other young cycle does not
/// promote: it compacts the window out of the old half and leaves the old generation there,
/// in the half that is no longer current. The child must still read its old generation
/// (before the fix its fork handler released that whole half: the promoted list read as
/// zeroes, "names no object of this heap").
fn fork_after_generational_flips(hook: bool) {
    let _s = serial();
    let gate = Arc::new(HookGate::default());
    let g2 = gate.clone();
    let mut config = HeapConfig::with_heap_size(16 << 20)
        .mode(GcMode::Concurrent)
        .with(|c| c.generational = Generational::Cards);
    if hook {
        config = config.on_cycle(Arc::new(move |_| g2.hook()));
    } else {
        config.debug.compaction_delay = Some(Duration::from_millis(50));
    }
    let heap = Heap::new(config).unwrap();
    let t = register(&heap);
    let mut m = heap.attach();
    list(&mut m, &t, 3000);
    let head = m.pop().unwrap();
    let root = m.root(head);
    let mut young = Vec::new();
    for round in 0..8 {
        garbage(&mut m, t.vector, 256 << 10);
        list(&mut m, &t, 100);
        let y = m.pop().unwrap();
        young.push(m.root(y));
        let flips = heap.flips();
        if hook {
            gate.arm();
        }
        m.start_collection().unwrap();
        if hook {
            m.native(|| gate.wait_inside());
        } else {
            while heap.flips() == flips {
                m.safepoint();
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        let code = fork_child(|| {
            let v = root.value(&m);
            assert_eq!(read_list(&m, v), (0..3000).collect::<Vec<_>>());
            for y in &young {
                let v = y.value(&m);
                assert_eq!(read_list(&m, v), (0..100).collect::<Vec<_>>());
            }
            m.collect().unwrap();
            heap.verify().unwrap();
            let v = root.value(&m);
            assert_eq!(read_list(&m, v).len(), 3000);
        });
        if hook {
            m.native(|| gate.release());
        }
        heap.wait_for_compaction();
        assert_eq!(code, 0, "round {round}: the forked child failed");
        let v = root.value(&m);
        assert_eq!(read_list(&m, v).len(), 3000);
    }
    heap.verify().unwrap();
}

#[test]
fn a_fork_inside_on_cycle_of_a_young_cycle_keeps_the_old_generation() {
    if uffd_or_skip("a_fork_inside_on_cycle_of_a_young_cycle_keeps_the_old_generation") {
        fork_after_generational_flips(true);
    }
}

#[test]
fn a_fork_during_a_young_compaction_keeps_the_old_generation() {
    if uffd_or_skip("a_fork_during_a_young_compaction_keeps_the_old_generation") {
        fork_after_generational_flips(false);
    }
}

/// Generational (cards or written pages; concurrent or stop-the-world), large objects (byte
/// arrays, and with `pin_large_ref_objects` reference arrays too) allocated, filled, dropped and
/// re-read by two mutators while a third thread requests collections back to back (young
/// and full cycles: the large space's growth makes cycles full). Every table entry must keep
/// its own contents.
fn gen_large_stress(secs: u64, pin_refs: bool, barrier_cards: bool, mode: GcMode) {
    let _s = serial();
    let heap = Heap::new(HeapConfig::with_heap_size(16 << 20).mode(mode).with(|c| {
        c.generational = if barrier_cards {
            Generational::Cards
        } else {
            Generational::WrittenPages
        };
        c.pin_large_ref_objects = pin_refs;
        c.large_object_threshold = 8 << 10;
        c.large_object_space_bytes = 8 << 20;
        c.min_trigger_bytes = 1 << 20;
    }))
    .unwrap();
    let t = register(&heap);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    let mut threads = Vec::new();
    for id in 0..2u64 {
        let heap = heap.clone();
        let t = (t.vector, t.string, t.pair);
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            let (vector, string, pair) = t;
            let mut m = heap.attach();
            let n = 24;
            let table = m.alloc(vector, n).unwrap();
            let table = m.root(table);
            let mut expect: Vec<Option<(bool, u64)>> = vec![None; n];
            let mut rng = 0x9e3779b97f4a7c15u64 ^ id;
            let mut next = || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let mut seq = 0u64;
            let mut ooms = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let i = (next() % n as u64) as usize;
                // check the old entry
                if let Some((is_bytes, tag)) = expect[i] {
                    let v = table.get(&m).unwrap().get(i);
                    let l = m.local(v).unwrap();
                    if is_bytes {
                        let b = l.to_bytes();
                        assert!(
                            b.iter()
                                .enumerate()
                                .all(|(k, &x)| x == (tag as u8).wrapping_add(k as u8)),
                            "thread {id}: byte array {i} (tag {tag}) changed"
                        );
                    } else {
                        for k in 0..l.len().min(64) {
                            let e = l.get(k);
                            let p = m.local(e).unwrap();
                            assert_eq!(
                                unfix(p.get(0)),
                                (tag * 1000 + k as u64) as i64,
                                "thread {id}: ref array {i} element {k}"
                            );
                        }
                    }
                }
                seq += 1;
                let tag = id * 1_000_000 + seq;
                let pages = 3 + (next() % 5) as usize;
                if next() % 2 == 0 {
                    let len = pages * 4096;
                    let b = match m.alloc(string, len) {
                        Ok(b) => b,
                        // Accepted: the large space fills with garbage between full cycles,
                        // and another thread may take what a full cycle freed (round six's
                        // "seen" note in docs/soundness-audit.md).
                        Err(faultline::AllocError::OutOfMemory { .. }) => {
                            ooms += 1;
                            continue;
                        }
                        Err(e) => panic!("thread {id}: {e:?}"),
                    };
                    let l = m.local(b).unwrap();
                    let bytes: Vec<u8> = (0..len)
                        .map(|k| (tag as u8).wrapping_add(k as u8))
                        .collect();
                    l.write_bytes(0, &bytes);
                    table.get(&m).unwrap().set(i, b);
                    expect[i] = Some((true, tag));
                } else {
                    let len = pages * 512;
                    let a = match m.alloc(vector, len) {
                        Ok(b) => b,
                        // Accepted: the large space fills with garbage between full cycles,
                        // and another thread may take what a full cycle freed (round six's
                        // "seen" note in docs/soundness-audit.md).
                        Err(faultline::AllocError::OutOfMemory { .. }) => {
                            ooms += 1;
                            continue;
                        }
                        Err(e) => panic!("thread {id}: {e:?}"),
                    };
                    table.get(&m).unwrap().set(i, a);
                    expect[i] = None;
                    for k in 0..len.min(64) {
                        let p = m.alloc(pair, 0).unwrap();
                        m.local(p)
                            .unwrap()
                            .set(0, fix((tag * 1000 + k as u64) as i64));
                        let arr = table.get(&m).unwrap().get(i);
                        m.local(arr).unwrap().set(k, p);
                    }
                    // only the first 64 are set: shrink the check to them
                    let arr = table.get(&m).unwrap().get(i);
                    let l = m.local(arr).unwrap();
                    for k in 64..l.len() {
                        l.set(k, Value::NULL);
                    }
                    expect[i] = Some((false, tag));
                }
                // garbage
                for _ in 0..4 {
                    m.alloc(pair, 0).unwrap();
                }
                m.safepoint();
            }
            eprintln!("thread {id}: {seq} rounds, {ooms} large-object OutOfMemory");
        }));
    }
    let collector = {
        let heap = heap.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                heap.collect().unwrap();
                n += 1;
                if n % 20 == 0 {
                    heap.verify().unwrap();
                }
            }
        })
    };
    while std::time::Instant::now() < deadline && !threads.iter().any(|t| t.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    collector.join().unwrap();
    heap.verify().unwrap();
    let full = heap
        .history()
        .iter()
        .filter(|c| c.gen.young == Some(false))
        .count();
    eprintln!("cycles {} full {full}", heap.cycles());
}

#[test]
fn generational_large_objects_through_young_and_full_cycles_cards() {
    if uffd_or_skip("generational_large_objects") {
        gen_large_stress(5, true, true, GcMode::Concurrent);
    }
}

#[test]
fn generational_large_objects_through_young_and_full_cycles_written_pages() {
    if uffd_or_skip("generational_large_objects")
        && faultline::Probe::run().supports(faultline::Capability::WpAsync)
    {
        gen_large_stress(5, false, false, GcMode::Concurrent);
    }
}

/// Fork while the `on_cycle` hook's lent mutator (`Heap::with_mutator` on the GC thread) is
/// running (it parks at the fork's stop), with another thread's mutator inside a native
/// section; the child collects, verifies and reads everything; the parent goes on.
fn fork_with_lent_and_native_mutators(generational: bool) {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
    let _s = serial();
    let armed = Arc::new(AtomicBool::new(false));
    let inside = Arc::new(AtomicU32::new(0));
    let stop_hook = Arc::new(AtomicBool::new(false));
    let cell: Arc<std::sync::OnceLock<(Heap, faultline::TypeId)>> =
        Arc::new(std::sync::OnceLock::new());
    let (a2, i2, s2, c2) = (
        armed.clone(),
        inside.clone(),
        stop_hook.clone(),
        cell.clone(),
    );
    let hook: faultline::CycleHook = Arc::new(move |_| {
        if !a2.swap(false, SeqCst) {
            return;
        }
        let (heap, pair) = c2.get().unwrap().clone();
        heap.with_mutator(|lm| {
            let keep = lm.alloc(pair, 0).unwrap();
            let keep = lm.root(keep);
            lm.local(keep.value(lm)).unwrap().set(0, fix(77));
            let mut n = 0u32;
            while !s2.load(SeqCst) {
                let p = lm.alloc(pair, 0).unwrap();
                lm.local(p).unwrap().set(0, fix(n as i64));
                assert_eq!(unfix(lm.local(p).unwrap().get(0)), n as i64);
                assert_eq!(unfix(keep.get(lm).unwrap().get(0)), 77);
                n += 1;
                i2.store(n, SeqCst);
                lm.safepoint();
                std::thread::sleep(Duration::from_micros(200));
            }
        })
        .unwrap();
    });
    let heap = Heap::new(
        HeapConfig::with_heap_size(16 << 20)
            .mode(GcMode::Concurrent)
            .on_cycle(hook)
            .with(|c| {
                if generational {
                    c.generational = Generational::Cards;
                }
            }),
    )
    .unwrap();
    let t = register(&heap);
    cell.set((heap.clone(), t.pair)).ok().unwrap();
    let mut m = heap.attach();
    list(&mut m, &t, 2000);
    let head = m.pop().unwrap();
    let root = m.root(head);
    // Another thread: a mutator parked in a native section for the whole test.
    let stop_native = Arc::new(AtomicBool::new(false));
    let native = {
        let heap = heap.clone();
        let stop = stop_native.clone();
        let pair = t.pair;
        std::thread::spawn(move || {
            let mut m2 = heap.attach();
            let x = m2.alloc(pair, 0).unwrap();
            m2.local(x).unwrap().set(0, fix(5));
            let x = m2.root(x);
            m2.native(|| {
                while !stop.load(SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
            assert_eq!(unfix(x.get(&m2).unwrap().get(0)), 5);
        })
    };
    for round in 0..4 {
        garbage(&mut m, t.vector, 512 << 10);
        inside.store(0, SeqCst);
        stop_hook.store(false, SeqCst);
        armed.store(true, SeqCst);
        m.start_collection().unwrap();
        m.native(|| {
            while inside.load(SeqCst) < 3 {
                std::thread::sleep(Duration::from_micros(100));
            }
        });
        let code = fork_child(|| {
            let v = root.value(&m);
            assert_eq!(read_list(&m, v), (0..2000).collect::<Vec<_>>());
            for _ in 0..3 {
                garbage(&mut m, t.vector, 1 << 20);
                m.collect().unwrap();
                heap.verify().unwrap();
            }
            let v = root.value(&m);
            assert_eq!(read_list(&m, v), (0..2000).collect::<Vec<_>>());
        });
        stop_hook.store(true, SeqCst);
        heap.wait_for_compaction();
        m.collect().unwrap();
        assert_eq!(code, 0, "round {round}: the forked child failed");
        let v = root.value(&m);
        assert_eq!(read_list(&m, v), (0..2000).collect::<Vec<_>>());
        heap.verify().unwrap();
    }
    stop_native.store(true, SeqCst);
    native.join().unwrap();
}

#[test]
fn a_fork_while_a_hooks_lent_mutator_runs_and_another_is_native() {
    if uffd_or_skip("a_fork_while_a_hooks_lent_mutator_runs") {
        fork_with_lent_and_native_mutators(false);
    }
}

#[test]
fn a_fork_while_a_hooks_lent_mutator_runs_and_another_is_native_generational() {
    if uffd_or_skip("a_fork_while_a_hooks_lent_mutator_runs") {
        fork_with_lent_and_native_mutators(true);
    }
}

#[test]
fn attach_requests_inside_native_sections_and_lent_scopes_are_refused() {
    let _s = serial();
    let heap = Heap::new(HeapConfig::with_heap_size(4 << 20)).unwrap();
    let other = Heap::new(HeapConfig::with_heap_size(4 << 20)).unwrap();
    let t = register(&heap);
    let mut m = heap.attach();
    let x = m.alloc(t.pair, 0).unwrap();
    let x = m.root(x);
    let (h1, h2) = (heap.clone(), other.clone());
    // Inside a native section the thread's mutator still counts as attached: a lent mutator
    // of the same heap, or any mutator of another heap, is refused; a collection runs.
    let (same, other_attach, other_lent) = m.native(move || {
        let a = h1.with_mutator(|_| ()).is_err();
        let b = h2.try_attach().is_err();
        let c = h2.with_mutator(|_| ()).is_err();
        h1.collect().unwrap();
        (a, b, c)
    });
    assert!(same && other_attach && other_lent);
    assert!(heap.with_mutator(|_| ()).is_err());
    assert!(x.get(&m).is_some());
    drop(m);
    // Inside a lent scope, every other attach is refused; the lent mutator works.
    let (nested, elsewhere) = heap
        .with_mutator(|m1| {
            let y = m1.alloc(t.pair, 0).unwrap();
            let y = m1.root(y);
            let nested = heap.with_mutator(|_| ()).is_err();
            let elsewhere = other.with_mutator(|_| ()).is_err();
            m1.collect().unwrap();
            assert!(y.get(m1).is_some());
            (nested, elsewhere)
        })
        .unwrap();
    assert!(nested && elsewhere);
}

/// Stop-the-world (and generational stop-the-world): the `on_cycle` hook panics every few
/// cycles, so the panic unwinds out of an allocation's slow path (its collection); the
/// mutator catches it and goes on. Every list must stay intact and the heap verify.
fn hook_panics_through_alloc(gen: bool) {
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    let _s = serial();
    let n = Arc::new(AtomicU64::new(0));
    let n2 = n.clone();
    let heap = Heap::new(
        HeapConfig::with_heap_size(4 << 20)
            .mode(GcMode::StopTheWorld)
            .on_cycle(Arc::new(move |_| {
                if n2.fetch_add(1, SeqCst) % 3 == 1 {
                    panic!("audit6: hook panic");
                }
            }))
            .with(|c| {
                if gen {
                    c.generational = Generational::Cards;
                }
            }),
    )
    .unwrap();
    let t = register(&heap);
    let mut m = heap.attach();
    list(&mut m, &t, 500);
    let head = m.pop().unwrap();
    let root = m.root(head);
    let mut caught = 0;
    for round in 0..30000 {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            m.push(fix(round));
            m.push(Value::NULL);
            cons(&mut m, &t);
            let g = m.alloc(t.vector, 400).unwrap();
            let p = m.pop().unwrap();
            m.local(g).unwrap().set(0, p);
            assert_eq!(unfix(m.local(p).unwrap().get(0)), round);
        }));
        if r.is_err() {
            caught += 1;
            m.stack_truncate(0);
        }
        if round % 500 == 0 {
            let v = root.value(&m);
            assert_eq!(read_list(&m, v), (0..500).collect::<Vec<_>>());
        }
    }
    let v = root.value(&m);
    assert_eq!(read_list(&m, v), (0..500).collect::<Vec<_>>());
    heap.verify().unwrap();
    eprintln!("caught {caught} hook panics in {} cycles", heap.cycles());
    assert!(caught > 0);
}

#[test]
fn an_on_cycle_panic_unwinding_out_of_an_allocation() {
    hook_panics_through_alloc(false);
}

#[test]
fn an_on_cycle_panic_unwinding_out_of_an_allocation_generational() {
    hook_panics_through_alloc(true);
}

/// Generational heaps (cards, written pages): a worker keeps a promoted tree and an old table
/// whose slots it keeps pointing at fresh young pairs (old-to-young references), runs cycles
/// back to back, and reads everything while compactions fault pages in; the main thread forks
/// at arbitrary moments. Each child checks the tree and the table, collects (young and full),
/// verifies and checks again. (Before round six's first fix the first or second fork's child
/// already failed: its fork handler had released the old generation.)
fn gen_forks_anywhere(kind: Generational) {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    let _s = serial();
    let heap = Heap::new(HeapConfig::with_heap_size(8 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.generational = kind;
        c.min_trigger_bytes = 1 << 20;
        c.debug.compaction_delay = Some(Duration::from_millis(2));
    }))
    .unwrap();
    let t = Arc::new(register(&heap));
    let (root, table) = {
        let mut m = heap.attach();
        tree(&mut m, &t, 10, 5);
        let r = faultline::GlobalRoot::new(&heap, m.pop().unwrap());
        let tb = m.alloc(t.vector, 64).unwrap();
        (Arc::new(r), Arc::new(faultline::GlobalRoot::new(&heap, tb)))
    };
    let check_table = |m: &faultline::Mutator, table: &faultline::GlobalRoot| {
        let tb = m.local(table.get(m)).unwrap();
        for i in 0..64 {
            let v = tb.get(i);
            if let Some(p) = m.local(v) {
                let car = unfix(p.get(0));
                assert_eq!(car % 64, i as i64, "slot {i}");
                assert_eq!(unfix(p.get(1)), car / 64, "slot {i}");
            }
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (heap, t, stop, root, table) = (
            heap.clone(),
            t.clone(),
            stop.clone(),
            root.clone(),
            table.clone(),
        );
        std::thread::spawn(move || {
            let mut m = heap.attach();
            let mut seq = 0i64;
            let mut cycles = 0;
            while !stop.load(Relaxed) {
                for _ in 0..200 {
                    seq += 1;
                    let i = seq % 64;
                    let p = m.alloc(t.pair, 0).unwrap();
                    let l = m.local(p).unwrap();
                    l.set(0, fix(seq * 64 + i));
                    l.set(1, fix(seq));
                    m.local(table.get(&m)).unwrap().set(i as usize, p);
                    for _ in 0..10 {
                        m.alloc(t.pair, 0).unwrap();
                    }
                }
                m.start_collection().unwrap();
                assert_eq!(check_tree(&m, root.get(&m), 10, 5), (1 << 10) - 1);
                check_table(&m, &table);
                cycles += 1;
            }
            cycles
        })
    };
    for i in 0..40u64 {
        std::thread::sleep(Duration::from_millis(2 + 3 * (i % 7)));
        let code = fork_child(|| {
            let mut m = heap.attach();
            assert_eq!(check_tree(&m, root.get(&m), 10, 5), (1 << 10) - 1);
            check_table(&m, &table);
            for _ in 0..3 {
                garbage(&mut m, t.vector, 1 << 20);
                m.collect().unwrap();
                assert_eq!(check_tree(&m, root.get(&m), 10, 5), (1 << 10) - 1);
                check_table(&m, &table);
                m.verify().unwrap();
            }
        });
        assert_eq!(code, 0, "{kind:?}: fork {i}: the child failed");
    }
    stop.store(true, Relaxed);
    let cycles = worker.join().unwrap();
    heap.wait_for_compaction();
    heap.verify().unwrap();
    eprintln!(
        "{kind:?}: {cycles} worker cycles, {} old bytes",
        heap.old_generation().unwrap().1
    );
}

#[test]
fn forks_land_anywhere_in_generational_cycles_cards() {
    if uffd_or_skip("forks_land_anywhere_in_generational_cycles") {
        gen_forks_anywhere(Generational::Cards);
    }
}

#[test]
fn forks_land_anywhere_in_generational_cycles_written_pages() {
    if uffd_or_skip("forks_land_anywhere_in_generational_cycles")
        && faultline::Probe::run().supports(faultline::Capability::WpAsync)
    {
        gen_forks_anywhere(Generational::WrittenPages);
    }
}

/// Weak boxes and ephemerons under random forks (concurrent, plain and
/// generational): a worker keeps 32 rooted tagged objects and 32 unrooted ones, each with a
/// weak box (and an ephemeron whose value carries the same tag) in a rooted table, recreating
/// the unrooted ones as they die, and runs cycles back to back; each child checks every box
/// (a live referent has its own tag; a rooted one is never cleared), collects and checks again.
fn weak_forks_anywhere(gen: bool) {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    let _s = serial();
    let heap = Heap::new(HeapConfig::with_heap_size(8 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        if gen {
            c.generational = Generational::Cards;
        }
        c.debug.compaction_delay = Some(Duration::from_millis(2));
    }))
    .unwrap();
    let t = Arc::new(register(&heap));
    let (keep, boxes) = {
        let mut m = heap.attach();
        let k = m.alloc(t.vector, 64).unwrap();
        let k = faultline::GlobalRoot::new(&heap, k);
        let b = m.alloc(t.vector, 128).unwrap();
        (Arc::new(k), Arc::new(faultline::GlobalRoot::new(&heap, b)))
    };
    let check =
        |m: &faultline::Mutator, keep: &faultline::GlobalRoot, boxes: &faultline::GlobalRoot| {
            let bx = m.local(boxes.get(m)).unwrap();
            let kp = m.local(keep.get(m)).unwrap();
            for i in 0..64 {
                let w = bx.get(2 * i);
                let e = bx.get(2 * i + 1);
                if w.is_null() {
                    continue;
                }
                let r = m.weak_get(w);
                let key = m.weak_get(e);
                if i < 32 && !kp.get(i).is_null() {
                    assert!(!r.is_null(), "rooted referent {i} cleared");
                }
                if let Some(o) = m.local(r) {
                    assert_eq!(unfix(o.get(0)) % 64, i as i64, "weak box {i}");
                }
                if let Some(o) = m.local(key) {
                    assert_eq!(unfix(o.get(0)) % 64, i as i64, "ephemeron key {i}");
                    let v = m.ephemeron_value(e);
                    let vo = m.local(v).expect("a live key keeps its value");
                    assert_eq!(unfix(vo.get(0)), unfix(o.get(0)), "ephemeron value {i}");
                }
            }
        };
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (heap, t, stop, keep, boxes) = (
            heap.clone(),
            t.clone(),
            stop.clone(),
            keep.clone(),
            boxes.clone(),
        );
        std::thread::spawn(move || {
            let mut m = heap.attach();
            let mut seq = 0i64;
            let mut cycles = 0;
            while !stop.load(Relaxed) {
                for i in 0..64usize {
                    let bx = m.local(boxes.get(&m)).unwrap();
                    let w = bx.get(2 * i);
                    let live = !w.is_null() && !m.weak_get(w).is_null();
                    if live && (i < 32 || seq % 3 != 0) {
                        continue;
                    }
                    seq += 1;
                    let tag = seq * 64 + i as i64;
                    let o = m.alloc(t.pair, 0).unwrap();
                    m.local(o).unwrap().set(0, fix(tag));
                    m.push(o);
                    let val = m.alloc(t.pair, 0).unwrap();
                    let o = m.stack_get(m.stack_len() - 1);
                    m.local(val).unwrap().set(0, fix(tag));
                    m.push(val);
                    let w = m.new_weak(o).unwrap();
                    m.push(w);
                    let (o, val) = (
                        m.stack_get(m.stack_len() - 3),
                        m.stack_get(m.stack_len() - 2),
                    );
                    let e = m.new_ephemeron(o, val).unwrap();
                    let w = m.pop().unwrap();
                    let _val = m.pop().unwrap();
                    let o = m.pop().unwrap();
                    let bx = m.local(boxes.get(&m)).unwrap();
                    bx.set(2 * i, w);
                    bx.set(2 * i + 1, e);
                    if i < 32 {
                        m.local(keep.get(&m)).unwrap().set(i, o);
                    }
                }
                garbage(&mut m, t.vector, 256 << 10);
                m.start_collection().unwrap();
                check(&m, &keep, &boxes);
                cycles += 1;
            }
            cycles
        })
    };
    for i in 0..30u64 {
        std::thread::sleep(Duration::from_millis(2 + 3 * (i % 7)));
        let code = fork_child(|| {
            let mut m = heap.attach();
            check(&m, &keep, &boxes);
            for _ in 0..2 {
                garbage(&mut m, t.vector, 1 << 20);
                m.collect().unwrap();
                check(&m, &keep, &boxes);
                m.verify().unwrap();
            }
        });
        assert_eq!(code, 0, "gen {gen}: fork {i}: the child failed");
    }
    stop.store(true, Relaxed);
    let cycles = worker.join().unwrap();
    heap.wait_for_compaction();
    heap.verify().unwrap();
    eprintln!("weak forks gen {gen}: {cycles} worker cycles");
}

#[test]
fn forks_land_anywhere_among_weak_boxes_and_ephemerons() {
    if uffd_or_skip("forks_land_anywhere_among_weak_boxes") {
        weak_forks_anywhere(false);
    }
}

#[test]
fn forks_land_anywhere_among_weak_boxes_and_ephemerons_generational() {
    if uffd_or_skip("forks_land_anywhere_among_weak_boxes") {
        weak_forks_anywhere(true);
    }
}

#[test]
fn generational_large_objects_through_young_and_full_cycles_stop_the_world() {
    gen_large_stress(5, true, true, GcMode::StopTheWorld);
}

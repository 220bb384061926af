//! The type registry under concurrency: threads register types while others allocate objects
//! of the newest types, read each other's objects (of types registered after their own cached
//! registry, while they hold a `Local` into it) and collections run. Each cycle parses objects
//! with the registry it started with; a mutator refreshes its cached registry through `&self`
//! when it meets a type beyond it. Every object keeps its type, its data and its links, and the
//! heap verifies (every cycle, and at the end).

mod common;
use common::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use faultline::{GcMode, GlobalRoot, Heap, HeapConfig, Mutator, TypeId, TypeInfo, Value};

const REGISTRARS: usize = 2;
const TYPES_EACH: usize = 200;
const ALLOCATORS: usize = 2;
/// Objects an allocator keeps on its list before dropping it (bounds the live data).
const LIST_LIMIT: usize = 3000;

/// The payload words of registrar `r`'s type `i`: 2 to 81, so some types have a reference slot
/// at word 64 or beyond (the tracer's slot-list path).
fn payload_words(i: usize) -> usize {
    2 + i % 80
}

/// A registered type, and whether its last payload word is a second reference slot.
type Registered = (TypeId, bool);

/// Register `TYPES_EACH` types: word 0 is the list link, word 1 a tag, and odd types have a
/// second reference slot in their last word (which holds the link again).
fn register_many(heap: &Heap, r: usize, types: &Mutex<Vec<Registered>>) {
    for i in 0..TYPES_EACH {
        let words = payload_words(i);
        let two = i % 2 == 1;
        let refs: &[usize] = if two { &[0, (words - 1) * 8] } else { &[0] };
        let t = heap
            .register_type(TypeInfo::fixed(&format!("r{r}t{i}"), words * 8, refs))
            .unwrap();
        types.lock().unwrap().push((t, two));
        // Spread the registrations over the allocators' rounds and the collections.
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// An object's tag: its type, whether its last word is a reference, and its allocator's
/// sequence number.
fn tag((t, two): Registered, n: u64) -> u64 {
    ((t.0 as u64) << 32) | (two as u64) << 31 | (n & 0x7fff_ffff)
}

/// Walk the list at `head` and check every object's type against its tag; returns its length.
fn check_list(m: &Mutator, head: Value) -> usize {
    let mut n = 0;
    let mut v = head;
    while let Some(o) = m.local(v) {
        let t = o.type_id();
        let tag = o.word(1);
        assert_eq!(tag >> 32, t.0 as u64, "object {n}: type {t:?}");
        let last = o.payload_words() - 1;
        if tag & 1 << 31 != 0 {
            assert_eq!(o.get(last), o.get(0), "type {t:?}: its last slot");
        } else if last > 1 {
            assert_eq!(o.word(last), 0, "type {t:?}: its last word");
        }
        v = o.get(0);
        n += 1;
    }
    n
}

fn run(heap: Heap) {
    let types: Arc<Mutex<Vec<Registered>>> = Arc::default();
    let registered_before = heap.types().len();
    let registering = Arc::new(AtomicBool::new(true));
    let heads: Arc<Vec<GlobalRoot>> = Arc::new(
        (0..ALLOCATORS)
            .map(|_| GlobalRoot::new(&heap, Value::NULL))
            .collect(),
    );
    let allocators: Vec<_> = (0..ALLOCATORS)
        .map(|a| {
            let (heap, types, registering, heads) = (
                heap.clone(),
                types.clone(),
                registering.clone(),
                heads.clone(),
            );
            std::thread::spawn(move || {
                let mut m = heap.attach_named(&format!("alloc{a}"));
                let mut n = 0u64;
                let mut rounds = 0;
                while registering.load(Ordering::Acquire) || rounds < 20 {
                    let newest: Vec<Registered> = types
                        .lock()
                        .unwrap()
                        .iter()
                        .rev()
                        .take(8)
                        .copied()
                        .collect();
                    for &(t, two) in &newest {
                        let v = m.alloc(t, 0).unwrap();
                        let o = m.local(v).unwrap();
                        assert_eq!(o.type_id(), t);
                        let next = heads[a].get(&m);
                        o.set(0, next);
                        if two {
                            o.set(o.payload_words() - 1, next);
                        }
                        o.set_word(1, tag((t, two), n));
                        heads[a].set(&m, v);
                        n += 1;
                    }
                    // Hold a Local of our own list while reading the other allocator's, whose
                    // objects may have types beyond this mutator's cached registry.
                    if let Some(mine) = m.local(heads[a].get(&m)) {
                        check_list(&m, heads[(a + 1) % ALLOCATORS].get(&m));
                        assert_eq!(mine.word(1) >> 32, mine.type_id().0 as u64);
                    }
                    if check_list(&m, heads[a].get(&m)) >= LIST_LIMIT {
                        heads[a].set(&m, Value::NULL);
                    }
                    rounds += 1;
                    if rounds % 25 == 0 {
                        let _ = m.start_collection();
                    }
                }
                m.verify().unwrap();
                n
            })
        })
        .collect();
    let registrars: Vec<_> = (0..REGISTRARS)
        .map(|r| {
            let (heap, types) = (heap.clone(), types.clone());
            std::thread::spawn(move || register_many(&heap, r, &types))
        })
        .collect();
    // Collections from an unattached thread too.
    let collector = {
        let (heap, registering) = (heap.clone(), registering.clone());
        std::thread::spawn(move || {
            let mut cycles = 0;
            while registering.load(Ordering::Acquire) {
                heap.collect().unwrap();
                cycles += 1;
                // A gap between cycles, in which registrations (which wait for a running
                // cycle) get their turn.
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            cycles
        })
    };
    for r in registrars {
        r.join().unwrap();
    }
    registering.store(false, Ordering::Release);
    let cycles = collector.join().unwrap();
    let allocated: Vec<u64> = allocators.into_iter().map(|a| a.join().unwrap()).collect();
    assert_eq!(
        heap.types().len(),
        registered_before + REGISTRARS * TYPES_EACH
    );
    heap.with_mutator(|m| {
        m.collect().unwrap();
        m.verify().unwrap();
        for h in heads.iter() {
            check_list(m, h.get(m));
        }
    })
    .unwrap();
    eprintln!(
        "{:?}: {} types, {cycles} collections from the unattached thread, {} cycles in all, objects allocated {allocated:?}",
        heap.mode_info().mode,
        heap.types().len(),
        heap.cycles()
    );
}

fn config(mode: GcMode) -> HeapConfig {
    HeapConfig::with_heap_size(32 << 20).with(|c| {
        c.mode = mode;
        c.debug.verify = true;
    })
}

#[test]
fn registering_while_allocating_and_collecting_stop_the_world() {
    run(Heap::new(config(GcMode::StopTheWorld)).unwrap());
}

#[test]
fn registering_while_allocating_and_collecting_concurrently() {
    if !uffd_or_skip("registering_while_allocating_and_collecting_concurrently") {
        return;
    }
    let heap = Heap::new(config(GcMode::Concurrent)).unwrap();
    assert_eq!(heap.mode_info().mode, GcMode::Concurrent);
    run(heap);
}

/// A clone of a heap's registry is a value: registering into it changes neither the heap's
/// registry nor the heap's next registration (which then copies its types to storage of its
/// own), and the clone keeps its own type.
#[test]
fn registering_into_a_clone_of_the_heap_registry_leaves_the_heap_alone() {
    let heap = heap(4 << 20);
    let t = register(&heap);
    let mut mine = (*heap.types()).clone();
    let n = mine.len();
    let own = mine.register(TypeInfo::fixed("mine", 8, &[])).unwrap();
    assert_eq!(own.0 as usize, n);
    assert_eq!(heap.types().len(), n, "the heap's registry did not change");
    let late = heap
        .register_type(TypeInfo::fixed("late", 16, &[0]))
        .unwrap();
    assert_eq!(late, own, "the heap's next type takes the same id");
    assert_eq!(heap.types().get(late).unwrap().name, "late");
    assert_eq!(mine.get(own).unwrap().name, "mine");
    let mut m = heap.attach();
    let a = m.alloc(t.pair, 0).unwrap();
    m.push(a);
    let b = m.alloc(late, 0).unwrap();
    let o = m.local(b).unwrap();
    o.set(0, m.stack_get(0));
    m.collect().unwrap();
    m.verify().unwrap();
}

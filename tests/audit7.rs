//! Soundness audit, round seven (docs/soundness-audit.md): the safe API where a type's
//! layout is built by hand (`TypeInfo`'s public fields) and read through the checked-once
//! `Layout` / `Obj` path, and fork while another thread's native section drops pins.
//!
//! Invariant: each test checks a defined outcome of safe code (a value read back, an error, or
//! a panic naming the mistake); a case that could hang runs under a watchdog that turns the
//! hang into a failure. A test that forks takes the binary's fork guard
//! (`common::forking::serial`): a fork stops every heap of the process, so no other test's
//! heap may be in use by a thread that is not a mutator at that moment. `libc::fork` is the
//! one `unsafe` call (fork is supported with live heaps).

mod common;
use common::forking::forks_each_checked;
use common::*;
use faultline::{GcMode, Heap, HeapConfig, TypeInfo, TypeKind};

fn stw(bytes: usize) -> HeapConfig {
    HeapConfig::with_heap_size(bytes).mode(GcMode::StopTheWorld)
}

/// A fixed type built with the public fields of `TypeInfo` (not `TypeInfo::fixed`, which
/// rounds the payload up to whole words) and a payload that is not a whole number of words.
/// The allocator and `Local` sized its objects `1 + payload_bytes / 8` words (rounded down),
/// while `Heap::layout` gave `Obj` `payload_bytes.div_ceil(8)` payload words: the `Obj`'s
/// last word was the next object's header, which `Obj::word` read and `Obj::set_word`
/// overwrote (the next object then "names no object of this heap"; a collection parsing it
/// would go astray). Every view of the type must agree on its size, and writing every word an
/// `Obj` offers must leave the neighbouring object intact.
#[test]
fn a_hand_built_fixed_type_with_a_partial_last_word_keeps_obj_inside_its_object() {
    for payload_bytes in [1usize, 4, 12, 20, 63] {
        let heap = Heap::new(stw(4 << 20)).unwrap();
        let odd = heap
            .register_type(TypeInfo {
                name: "odd".into(),
                kind: TypeKind::Fixed {
                    payload_bytes,
                    ref_offsets: vec![],
                },
            })
            .unwrap();
        let t = register(&heap);
        let layout = heap.layout(odd).unwrap();
        let mut m = heap.attach();
        let a = m.alloc(odd, 0).unwrap();
        m.push(a);
        let b = pair(&mut m, &t, fix(7), fix(8));
        let a = m.pop().unwrap();
        m.push(b);
        let local_words = m.local(a).unwrap().payload_words();
        let o = m.obj(a, &layout).unwrap();
        assert_eq!(
            o.payload_words(),
            local_words,
            "payload {payload_bytes}: Obj and Local disagree on the object's size"
        );
        for i in 0..o.payload_words() {
            assert_eq!(
                o.word(i),
                0,
                "payload {payload_bytes}: word {i} of a fresh object"
            );
            o.set_word(i, 0xdead_beef_0000 + i as u64);
        }
        let b = m.stack_get(0);
        let lb = m.local(b).unwrap();
        assert_eq!(
            lb.type_id(),
            t.pair,
            "payload {payload_bytes}: the neighbour's header"
        );
        assert_eq!((unfix(lb.get(0)), unfix(lb.get(1))), (7, 8));
        // And the heap still parses through a collection.
        m.collect().unwrap();
        let b = m.pop().unwrap();
        let lb = m.local(b).unwrap();
        assert_eq!((unfix(lb.get(0)), unfix(lb.get(1))), (7, 8));
        m.verify().unwrap();
    }
}

/// Fork while another thread's mutator, inside its native section (where a `Pin` is meant to
/// be used, and dropped), drops pins: `Pin::drop` takes the heap's pin table and global-root
/// table locks, and *prepare* does not wait for a native mutator. A child forked while that
/// thread held one of them inherits it locked, and the thread that would unlock it does not
/// exist there: the child's first collection (which plans around pins and visits the global
/// roots) waits forever.
#[test]
fn a_fork_while_a_native_section_drops_pins_leaves_the_childs_tables_usable() {
    use common::forking::serial;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let _s = serial();
    let heap = Heap::new(stw(8 << 20)).unwrap();
    let t = register(&heap);
    let stop = Arc::new(AtomicBool::new(false));
    let dropper = {
        let (heap, stop) = (heap.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut m = heap.attach();
            let v = m.alloc(t.string, 64).unwrap();
            let r = m.root(v);
            while !stop.load(Ordering::Relaxed) {
                let v = r.value(&m);
                let pins: Vec<_> = (0..2000).map(|_| m.pin(v).unwrap()).collect();
                m.native(move || drop(pins));
            }
        })
    };
    forks_each_checked(&heap, 300, |_, _| {}, |_, _| {});
    stop.store(true, Ordering::Relaxed);
    dropper.join().unwrap();
}

/// Round seven's review: the type registry's lock, like the handle tables'. A thread that is
/// not a running mutator (here an unattached one; a native section's is the same) registers
/// types while another thread forks: *prepare* does not wait for it, and a child forked while
/// it held the registry's write lock inherited it held; the child's next registration (and a
/// collection, which reads the registry) waited forever. The child must register a type,
/// collect and read its data back.
#[test]
fn a_fork_while_another_thread_registers_types_leaves_the_childs_registry_usable() {
    use common::forking::serial;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let _s = serial();
    let heap = Heap::new(stw(8 << 20)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let registrar = {
        let (heap, stop) = (heap.clone(), stop.clone());
        std::thread::spawn(move || {
            // Every 16th attempt registers a type (up to 20 000 of them); the others are
            // refused for their size, which the registry checks under the same write lock.
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                if n.is_multiple_of(16) && n / 16 < 20_000 {
                    heap.register_type(TypeInfo::fixed(&format!("reg{n}"), 8, &[]))
                        .unwrap();
                } else {
                    let too_big = TypeInfo::fixed("too big", usize::MAX / 2, &[]);
                    assert!(heap.register_type(too_big).is_err());
                }
                n += 1;
            }
            n
        })
    };
    forks_each_checked(
        &heap,
        300,
        |m, i| {
            let own = m
                .heap()
                .register_type(TypeInfo::fixed(&format!("child{i}"), 16, &[]))
                .unwrap();
            let v = m.alloc(own, 0).unwrap();
            m.push(v);
        },
        |_, _| {},
    );
    stop.store(true, Ordering::Relaxed);
    assert!(
        registrar.join().unwrap() > 0,
        "the other thread made no registration"
    );
}

//! Typed layouts (issue 13, item 6): heap types declared from Rust structs with
//! `heap_struct!`, registered once per heap, allocated and viewed with their fields read and
//! written by name; no word indices and no `unsafe` here. Covers every field kind, refused
//! views, misuse across heaps, root sources, and typed objects surviving many collections in
//! stop-the-world and every concurrent strategy x delivery (a shadow-model stress).

mod common;
use common::shadow::Rng;
use common::*;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use faultline::{
    heap_struct, FaultMode, GcMode, Heap, HeapConfig, HeapStruct, Mutator, Ref, RootSlot,
    RootSource, Strategy, TypeInfo, TypeKind, Value, WrongType,
};

heap_struct! {
    /// Every field kind, in an order that makes `repr(C)` pack the small ones.
    pub struct Every {
        pub a: Ref,
        pub small: u32,
        pub flag: bool,
        pub byte: u8,
        pub half: u16,
        pub b: Ref,
        pub count: u64,
        pub delta: i64,
        pub ratio: f64,
        pub single: f32,
        pub signed: i32,
        pub size: usize,
        pub offset: isize,
        pub tiny: i8,
        pub short: i16,
        pub name: [u8; 13],
        pub c: Ref,
    }
}

heap_struct! {
    /// A cons cell with a count, as in the issue.
    pub struct Pair {
        pub car: Ref,
        pub cdr: Ref,
        pub count: u64,
        pub ratio: f64,
    }
}

heap_struct! {
    /// A struct with the same layout as `Pair`, but another type.
    struct Twin {
        car: Ref,
        cdr: Ref,
        count: u64,
        ratio: f64,
    }
}

#[test]
fn registration_is_once_per_heap_and_matches_the_struct() {
    let heap = heap(4 << 20);
    let pairs = heap.register_struct::<Pair>().unwrap();
    assert_eq!(
        heap.register_struct::<Pair>().unwrap().type_id(),
        pairs.type_id()
    );
    let twins = heap.register_struct::<Twin>().unwrap();
    assert_ne!(twins.type_id(), pairs.type_id());
    assert_eq!(pairs.heap_id(), heap.id());

    let types = heap.types();
    let info = types.get(pairs.type_id()).unwrap();
    assert_eq!(info.name, "Pair");
    assert_eq!(
        info.kind,
        TypeKind::Fixed {
            payload_bytes: 32,
            ref_offsets: vec![0, 8]
        }
    );
    assert_eq!(types.ref_words(pairs.type_id()), &[1, 2]);
    assert_eq!(Pair::SIZE, 32);
    assert_eq!(Pair::count.offset(), 16);
    assert_eq!(Pair::count.name(), "count");

    // Every: references at the offsets `offset_of!` gives, small fields packed.
    let every = heap.register_struct::<Every>().unwrap();
    let types = heap.types();
    let refs: Vec<u32> = [Every::a.offset(), Every::b.offset(), Every::c.offset()]
        .iter()
        .map(|&o| 1 + o as u32 / 8)
        .collect();
    assert_eq!(types.ref_words(every.type_id()), &refs[..]);
    assert_eq!(Every::small.offset(), 8);
    assert_eq!(Every::flag.offset(), 12);
    assert_eq!(Every::byte.offset(), 13);
    assert_eq!(Every::half.offset(), 14);
    assert_eq!(Every::b.offset(), 16);
    assert_eq!(
        Every::FIELDS.iter().filter(|f| f.is_ref()).count(),
        3,
        "{:?}",
        Every::FIELDS
    );
    assert_eq!(
        types.get(every.type_id()).unwrap().size_words(0),
        1 + core::mem::size_of::<Every>() / 8
    );

    // A second heap registers its own type.
    let other = self::heap(4 << 20);
    other.register_type(TypeInfo::byte_array("pad")).unwrap();
    let p2 = other.register_struct::<Pair>().unwrap();
    assert_eq!(p2.heap_id(), other.id());
    assert_ne!(p2.type_id(), pairs.type_id());
}

#[test]
fn every_field_kind_reads_back_and_starts_zeroed() {
    let heap = heap(4 << 20);
    let every = heap.register_struct::<Every>().unwrap();
    let pairs = heap.register_struct::<Pair>().unwrap();
    let mut m = heap.attach();
    let target = pairs.alloc(&mut m).unwrap();
    m.push(target);
    let v = every.alloc(&mut m).unwrap();
    let target = m.pop().unwrap();
    let e = every.view(m.local(v).unwrap()).unwrap();

    // Zero-filled.
    assert!(e.get(Every::a).is_null());
    assert_eq!(e.get(Every::small), 0);
    assert!(!e.get(Every::flag));
    assert_eq!(e.get(Every::ratio), 0.0);
    assert_eq!(e.get(Every::name), [0; 13]);

    let imm = fix(-5);
    e.set(Every::a, target);
    e.set(Every::b, imm);
    e.set(Every::c, e.value()); // a self-reference
    e.set(Every::small, 0xdead_beef);
    e.set(Every::flag, true);
    e.set(Every::byte, 0xab);
    e.set(Every::half, 0xcdef);
    e.set(Every::count, u64::MAX - 1);
    e.set(Every::delta, -42);
    e.set(Every::ratio, -1.25);
    e.set(Every::single, 3.5);
    e.set(Every::signed, i32::MIN);
    e.set(Every::size, usize::MAX);
    e.set(Every::offset, isize::MIN + 1);
    e.set(Every::tiny, -1);
    e.set(Every::short, -300);
    e.set(Every::name, *b"hello, world!");

    assert_eq!(e.get(Every::a), target);
    assert_eq!(unfix(e.get(Every::b)), -5);
    assert_eq!(e.get(Every::c), v);
    assert_eq!(e.get(Every::small), 0xdead_beef);
    assert!(e.get(Every::flag));
    assert_eq!(e.get(Every::byte), 0xab);
    assert_eq!(e.get(Every::half), 0xcdef);
    assert_eq!(e.get(Every::count), u64::MAX - 1);
    assert_eq!(e.get(Every::delta), -42);
    assert_eq!(e.get(Every::ratio), -1.25);
    assert_eq!(e.get(Every::single), 3.5);
    assert_eq!(e.get(Every::signed), i32::MIN);
    assert_eq!(e.get(Every::size), usize::MAX);
    assert_eq!(e.get(Every::offset), isize::MIN + 1);
    assert_eq!(e.get(Every::tiny), -1);
    assert_eq!(e.get(Every::short), -300);
    assert_eq!(&e.get(Every::name), b"hello, world!");

    // The word-index path sees the same words (payload word = offset / 8).
    let l = e.local();
    assert_eq!(l.get(Every::a.offset() / 8), target);
    assert_eq!(
        l.word(Every::small.offset() / 8),
        0xdead_beef | 1 << 32 | 0xab << 40 | 0xcdef << 48
    );
    assert_eq!(l.word(Every::count.offset() / 8), u64::MAX - 1);
    assert_eq!(l.word(Every::ratio.offset() / 8), (-1.25f64).to_bits());

    // A bool written as any non-zero byte through the word path reads as true.
    l.set_word(Every::small.offset() / 8, 0x7f << 32 | 0xdead_beef);
    assert!(e.get(Every::flag));
    assert_eq!(e.get(Every::small), 0xdead_beef);
    l.set_word(Every::small.offset() / 8, 0);
    assert!(!e.get(Every::flag));
    m.verify().unwrap();
}

#[test]
fn a_view_of_another_type_is_refused() {
    let heap = heap(4 << 20);
    let pairs = heap.register_struct::<Pair>().unwrap();
    let twins = heap.register_struct::<Twin>().unwrap();
    let bytes = heap.register_type(TypeInfo::byte_array("bytes")).unwrap();
    let vector = heap.register_type(TypeInfo::ref_array("vector")).unwrap();
    let mut m = heap.attach();
    let t = twins.alloc(&mut m).unwrap();
    m.push(t);
    let b = m.alloc(bytes, 24).unwrap();
    m.push(b);
    let vec = m.alloc(vector, 4).unwrap();
    let b = m.pop().unwrap();
    let t = m.pop().unwrap();

    let err = pairs.view(m.local(t).unwrap()).unwrap_err();
    assert_eq!(
        err,
        WrongType {
            expected: "Pair",
            expected_id: pairs.type_id(),
            found: twins.type_id(),
            found_name: "Twin".into(),
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "object of type Twin ({:?}) is not a Pair ({:?})",
            twins.type_id(),
            pairs.type_id()
        )
    );
    assert!(pairs.view(m.local(b).unwrap()).is_err());
    assert!(pairs.view(m.local(vec).unwrap()).is_err());
    assert!(!pairs.is(&m.local(t).unwrap()));
    assert!(twins.is(&m.local(t).unwrap()));
    assert!(twins.view(m.local(t).unwrap()).is_ok());
    // Null and immediates have no object to view: `Mutator::local` already says `None`.
    assert!(m.local(Value::NULL).is_none());
}

/// Whether `f` panics with a message containing `needle`.
fn panics_with(needle: &str, f: impl FnOnce()) {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(
        msg.contains(needle),
        "panic message {msg:?} lacks {needle:?}"
    );
}

#[test]
fn misuse_across_heaps_and_eras_panics_naming_it() {
    let a = heap(4 << 20);
    let b = heap(4 << 20);
    let pa = a.register_struct::<Pair>().unwrap();
    let pb = b.register_struct::<Pair>().unwrap();
    // Heap B's mutator on a thread of its own (a thread is attached to one heap at a time).
    let vb = std::thread::scope(|s| {
        s.spawn(|| {
            let mut mb = b.attach();
            // A registration of heap A with a mutator of heap B.
            panics_with("was registered in heap", || {
                let _ = pa.alloc(&mut mb);
            });
            let vb = pb.alloc(&mut mb).unwrap();
            panics_with("was registered in heap", || {
                let _ = pa.view(mb.local(vb).unwrap());
            });
            vb
        })
        .join()
        .unwrap()
    });
    let mut ma = a.attach();
    // A reference of heap B stored into a field of an object of heap A.
    let va = pa.alloc(&mut ma).unwrap();
    let p = pa.view(ma.local(va).unwrap()).unwrap();
    panics_with("references cannot cross heaps", || p.set(Pair::car, vb));
    assert!(p.get(Pair::car).is_null());
    // A stale reference stored through a typed view.
    let r = ma.root(va);
    let stale = pa.alloc(&mut ma).unwrap();
    ma.collect().unwrap();
    let p = pa.view(r.get(&ma).unwrap()).unwrap();
    panics_with("stale reference", || p.set(Pair::cdr, stale));
    assert!(p.get(Pair::cdr).is_null());
}

/// A runtime's globals table: typed objects kept in root-source slots, read back with no
/// `unsafe`.
struct Globals(Vec<RootSlot>);
impl RootSource for Globals {
    fn for_each_root(&self, visit: &mut dyn FnMut(&RootSlot)) {
        self.0.iter().for_each(visit);
    }
}

#[test]
fn root_sources_compose_with_typed_views() {
    let heap = heap(4 << 20);
    let pairs = heap.register_struct::<Pair>().unwrap();
    let globals = Arc::new(Globals((0..16).map(|_| RootSlot::new()).collect()));
    heap.add_root_source(globals.clone());
    let mut m = heap.attach();
    for (i, slot) in globals.0.iter().enumerate() {
        let v = pairs.alloc(&mut m).unwrap();
        let p = pairs.view(m.local(v).unwrap()).unwrap();
        p.set(Pair::count, i as u64);
        p.set(Pair::car, fix(i as i64));
        if i > 0 {
            p.set(Pair::cdr, m.load(&globals.0[i - 1]));
        }
        m.store(slot, v);
        for _ in 0..200 {
            pairs.alloc(&mut m).unwrap(); // garbage
        }
    }
    for _ in 0..3 {
        m.collect().unwrap();
        for (i, slot) in globals.0.iter().enumerate() {
            let p = pairs.view(m.local(m.load(slot)).unwrap()).unwrap();
            assert_eq!(p.get(Pair::count), i as u64);
            assert_eq!(unfix(p.get(Pair::car)), i as i64);
            if i > 0 {
                assert_eq!(p.get(Pair::cdr), m.load(&globals.0[i - 1]));
            }
        }
    }
}

/// A shadow model of a graph of `Pair`s held in a rooted vector: per object, its car (the
/// index of another object, or a fixnum), and its count and ratio.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Car {
    Obj(usize),
    Fix(i64),
}

struct Model {
    car: Vec<Car>,
    count: Vec<u64>,
    ratio: Vec<f64>,
    name: Vec<[u8; 13]>,
}

/// Typed objects across many collections: `n` objects of `Every` in a rooted vector, mutated
/// at random (references among them, every data field) with garbage allocated between, the
/// whole graph checked against the model after every few steps. Returns the cycles run.
fn typed_stress(heap: &Heap, n: usize, steps: u64, seed: u64) -> u64 {
    let every = heap.register_struct::<Every>().unwrap();
    let vector = heap.register_type(TypeInfo::ref_array("vector")).unwrap();
    let bytes = heap.register_type(TypeInfo::byte_array("bytes")).unwrap();
    let mut m = heap.attach();
    let vec = m.alloc(vector, n).unwrap();
    let table = m.root(vec);
    let mut model = Model {
        car: vec![Car::Fix(0); n],
        count: vec![0; n],
        ratio: vec![0.0; n],
        name: vec![[0; 13]; n],
    };
    for i in 0..n {
        let v = every.alloc(&mut m).unwrap();
        let e = every.view(m.local(v).unwrap()).unwrap();
        e.set(Every::a, fix(0));
        table.get(&m).unwrap().set(i, v);
    }
    let get = |m: &Mutator, i: usize| table.get(m).unwrap().get(i);
    let mut rng = Rng::new(seed);
    let start = heap.cycles();
    for step in 0..steps {
        let i = rng.below(n as u64) as usize;
        match rng.below(6) {
            0 => {
                // Replace object i with a fresh one (the old one becomes garbage unless
                // another object's car points at it: those are redirected to the new one,
                // which the model then says).
                let v = every.alloc(&mut m).unwrap();
                let old = get(&m, i);
                let e = every.view(m.local(v).unwrap()).unwrap();
                let o = every.view(m.local(old).unwrap()).unwrap();
                e.set(Every::a, o.get(Every::a));
                e.set(Every::count, o.get(Every::count));
                e.set(Every::ratio, o.get(Every::ratio));
                e.set(Every::name, o.get(Every::name));
                e.set(Every::c, old); // keeps the old one alive through the new one
                table.get(&m).unwrap().set(i, v);
                for j in 0..n {
                    if model.car[j] == Car::Obj(i) {
                        let ej = every.view(m.local(get(&m, j)).unwrap()).unwrap();
                        ej.set(Every::a, v);
                    }
                }
            }
            1 => {
                let j = rng.below(n as u64) as usize;
                let target = get(&m, j);
                let e = every.view(m.local(get(&m, i)).unwrap()).unwrap();
                e.set(Every::a, target);
                model.car[i] = Car::Obj(j);
            }
            2 => {
                let x = rng.next() as i64 >> 8;
                let e = every.view(m.local(get(&m, i)).unwrap()).unwrap();
                e.set(Every::a, fix(x));
                model.car[i] = Car::Fix(x);
            }
            3 => {
                let c = rng.next();
                let r = (rng.next() >> 11) as f64 / 7.0;
                let e = every.view(m.local(get(&m, i)).unwrap()).unwrap();
                e.set(Every::count, c);
                e.set(Every::ratio, r);
                model.count[i] = c;
                model.ratio[i] = r;
            }
            4 => {
                let mut name = [0u8; 13];
                name.iter_mut().for_each(|b| *b = (rng.next() % 251) as u8);
                let e = every.view(m.local(get(&m, i)).unwrap()).unwrap();
                e.set(Every::name, name);
                model.name[i] = name;
            }
            _ => {
                // Garbage, some of it large, to drive collections.
                for _ in 0..rng.below(40) {
                    every.alloc(&mut m).unwrap();
                }
                m.alloc(bytes, rng.below(3000) as usize).unwrap();
            }
        }
        if step % 64 == 0 {
            check_model(&m, &table, &every, &model);
        }
        m.safepoint();
    }
    m.collect().unwrap();
    check_model(&m, &table, &every, &model);
    m.verify().unwrap();
    heap.cycles() - start
}

fn check_model(
    m: &Mutator,
    table: &faultline::Root,
    every: &faultline::HeapType<Every>,
    model: &Model,
) {
    let t = table.get(m).unwrap();
    for i in 0..model.car.len() {
        let e = every.view(m.local(t.get(i)).unwrap()).expect("an Every");
        match model.car[i] {
            Car::Obj(j) => assert_eq!(e.get(Every::a), t.get(j), "car of {i}"),
            Car::Fix(x) => assert_eq!(unfix(e.get(Every::a)), x, "car of {i}"),
        }
        assert_eq!(e.get(Every::count), model.count[i], "count of {i}");
        assert_eq!(
            e.get(Every::ratio).to_bits(),
            model.ratio[i].to_bits(),
            "ratio of {i}"
        );
        assert_eq!(e.get(Every::name), model.name[i], "name of {i}");
    }
}

#[test]
fn typed_objects_survive_stop_the_world_collections() {
    let heap = Heap::new(HeapConfig::with_heap_size(2 << 20).with(|c| {
        c.debug.verify = true;
    }))
    .unwrap();
    let cycles = typed_stress(&heap, 200, stress_scale(20_000), 0x7e57);
    eprintln!("stop-the-world: {cycles} cycles");
    assert!(cycles >= 10, "only {cycles} cycles");
}

#[test]
fn typed_objects_survive_concurrent_collections() {
    if !uffd_or_skip("typed_objects_survive_concurrent_collections") {
        return;
    }
    for (k, strategy) in [Strategy::Copy, Strategy::Move, Strategy::Minor]
        .into_iter()
        .enumerate()
    {
        for faults in [FaultMode::Sigbus, FaultMode::Thread] {
            let heap = Heap::new(
                HeapConfig::with_heap_size(2 << 20)
                    .mode(GcMode::Concurrent)
                    .concurrent(strategy, faults)
                    .with(|c| c.debug.verify = true),
            )
            .unwrap();
            assert_eq!(heap.mode_info().mode, GcMode::Concurrent);
            let cycles = typed_stress(&heap, 200, stress_scale(60_000), 0xc0c0 ^ k as u64);
            heap.wait_for_compaction();
            eprintln!("concurrent {strategy:?}/{faults:?}: {cycles} cycles");
            assert!(
                cycles >= 15,
                "{strategy:?}/{faults:?}: only {cycles} cycles"
            );
        }
    }
}

#[test]
fn typed_objects_survive_stress_collections() {
    // A collection every 50 allocations: objects move under nearly every step.
    let heap = Heap::new(HeapConfig::with_heap_size(4 << 20).with(|c| {
        c.debug.stress_every = Some(50);
    }))
    .unwrap();
    let cycles = typed_stress(&heap, 64, stress_scale(5_000), 0x5eed);
    eprintln!("stress: {cycles} cycles");
    assert!(cycles >= 50, "only {cycles} cycles");
}

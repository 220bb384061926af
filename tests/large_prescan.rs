//! The concurrent flip does not walk every large object in its pause: the GC thread sorts
//! them just before it (`cycle::LargePrescan`): the marked ones without references need
//! nothing at the flip, the marked ones with references are forwarded, the unmarked ones
//! without references are decided when the cycle ends, and only those allocated since (and
//! unmarked ones that may hold references) are decided in the pause.
//!
//! The marker is parked right after that examination (`MarkPoint::BeforeRemark`); meanwhile
//! the mutator allocates large objects (with references to fresh moving-space objects, and
//! without). Everything must survive exactly (checkmark, verification, contents read back),
//! the dead large objects must be released when the cycle ends, and the statistics (counts,
//! not timings) must show the pause examining only the new and the reference-holding large
//! objects.

mod common;
use common::park::Park;
use common::*;
use faultline::{CycleStats, GcMode, Heap, HeapConfig, MarkPoint, Mutator, Root, Strategy};

const STRING: usize = 20_000;
const VECTOR: usize = 5_000;

fn pattern(k: usize) -> Vec<u8> {
    (0..STRING).map(|i| ((i * 7 + k) % 251) as u8).collect()
}

/// Run a whole cycle (its compaction included) and return its statistics.
fn collect(heap: &Heap, m: &mut Mutator) -> CycleStats {
    m.start_collection().unwrap();
    m.wait_for_cycle().unwrap();
    heap.wait_for_compaction();
    heap.history().last().unwrap().clone()
}

/// A rooted large vector of `VECTOR` lists of `len` cells each (0, 1, ...).
fn vector_of_lists(m: &mut Mutator, t: &Types, len: i64) -> Root {
    let v = m.alloc(t.vector, VECTOR).unwrap();
    let v = m.root(v);
    for i in 0..VECTOR {
        list(m, t, len);
        let l = m.pop().unwrap();
        v.get(m).unwrap().set(i, l);
    }
    v
}

#[test]
fn the_flip_examines_only_dead_new_and_reference_holding_large_objects() {
    if !uffd_or_skip("the_flip_examines_only_dead_new_and_reference_holding_large_objects") {
        return;
    }
    let park = Park::armed(MarkPoint::BeforeRemark);
    let heap = Heap::new(HeapConfig::with_heap_size(64 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = Strategy::Copy;
        c.pin_large_ref_objects = true;
        c.debug.checkmark = true;
        c.debug.verify = true;
        c.debug.mark_hook = Some(park.hook());
        c.min_trigger_bytes = 60 << 20;
    }))
    .unwrap();
    assert_eq!(heap.mode_info().mode, GcMode::Concurrent);
    let t = register(&heap);
    let mut m = heap.attach();
    // Before the cycle: 20 live strings, 5 dead ones, one live vector of lists.
    let mut live = Vec::new();
    for k in 0..20 {
        let s = m.alloc(t.string, STRING).unwrap();
        m.local(s).unwrap().write_bytes(0, &pattern(k));
        live.push(m.root(s));
    }
    for _ in 0..5 {
        m.alloc(t.string, STRING).unwrap();
    }
    let old_vec = vector_of_lists(&mut m, &t, 3);
    let flips = heap.flips();
    m.start_collection().unwrap();
    park.wait(&mut m);
    // Parked after the examination: a new vector referring to fresh lists, a new string.
    let new_vec = vector_of_lists(&mut m, &t, 2);
    let s = m.alloc(t.string, STRING).unwrap();
    m.local(s).unwrap().write_bytes(0, &pattern(99));
    let new_string = m.root(s);
    park.release();
    m.wait_for_cycle().unwrap();
    heap.wait_for_compaction();
    assert_eq!(heap.flips(), flips + 1);
    let c = heap.history().last().unwrap().clone();
    eprintln!("{}", c.log_line());
    assert_eq!(c.mode, GcMode::Concurrent);
    // Both vectors' slots were forwarded at the flip, the lists moved.
    assert_eq!(c.large_ref_slots, 2 * VECTOR);
    for i in (0..VECTOR).step_by(97) {
        assert_eq!(
            read_list(&m, old_vec.get(&m).unwrap().get(i)),
            vec![0, 1, 2]
        );
        assert_eq!(read_list(&m, new_vec.get(&m).unwrap().get(i)), vec![0, 1]);
    }
    for (k, r) in live.iter().enumerate() {
        assert_eq!(r.get(&m).unwrap().to_bytes(), pattern(k));
    }
    assert_eq!(new_string.get(&m).unwrap().to_bytes(), pattern(99));
    // The pause examined the two new objects and the old vector: not the 20 live strings, nor
    // the 5 dead ones (without references: decided when the cycle ends).
    assert_eq!(c.large_examined, 2 + 1, "{}", c.log_line());
    m.verify().unwrap();
    // A second cycle (nothing parked): the dead strings were released after the first one's
    // compaction, and the string dropped now dies in this one.
    let string_bytes = (STRING + 8).div_ceil(4096) * 4096;
    let vector_bytes = (8 * VECTOR + 8).div_ceil(4096) * 4096;
    drop(new_string);
    let c = collect(&heap, &mut m);
    assert_eq!(
        c.large_before,
        21 * string_bytes + 2 * vector_bytes,
        "{c:?}"
    );
    assert_eq!(c.large_examined, 2, "the two vectors");
    // A third: the string dropped before the second was released at its end.
    let c = collect(&heap, &mut m);
    assert_eq!(
        c.large_before,
        20 * string_bytes + 2 * vector_bytes,
        "{c:?}"
    );
    for (k, r) in live.iter().enumerate() {
        assert_eq!(r.get(&m).unwrap().to_bytes(), pattern(k));
    }
    for i in (0..VECTOR).step_by(101) {
        assert_eq!(read_list(&m, new_vec.get(&m).unwrap().get(i)), vec![0, 1]);
    }
    m.verify().unwrap();
}

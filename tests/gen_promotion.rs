//! The generational mode's promotion age (`HeapConfig::promotion_age`): an object is promoted
//! (its address lies in the old generation, `Heap::old_generation_range`) after exactly the
//! configured number of survivals, and not before, when that many cycles end in the old
//! generation's half; a younger object compacted by the same promoting cycle stays young,
//! and the old-to-young reference the partial promotion makes (from the promoted object to
//! it) is in the remembered set: the young object survives further young cycles referenced
//! only from the old one. Cards and written pages, stop-the-world and concurrent.
//!
//! Invariant: every scenario verifies the heap after every cycle.

mod common;
use common::gen::{alloc_with_ballast, young_cycle};
use common::{fix, unfix};
use faultline::{GcMode, Generational, Heap, HeapConfig, Mutator, Root, TypeInfo};

fn config(kind: Generational, mode: GcMode, age: u32) -> HeapConfig {
    HeapConfig::with_heap_size(8 << 20).with(|c| {
        c.generational = kind;
        c.mode = mode;
        c.promotion_age = age;
        // Promotion by age only (not at the first survival when survivors are measured
        // long-lived: `tests/gen_first_survival.rs`).
        c.first_survival_promotion = 2.0;
        // ... nor at the first cycle, which would make the second half the old one
        // (`tests/gen_first_cycle.rs`).
        c.first_cycle_promotion = false;
        c.min_trigger_bytes = 2 << 20;
    })
}

fn is_old(heap: &Heap, m: &Mutator, r: &Root) -> bool {
    let (lo, hi) = heap.old_generation_range().unwrap();
    let a = r.value(m).bits();
    a >= lo && a < hi
}

fn promoted_after(kind: Generational, mode: GcMode, age: u32) {
    let heap = Heap::new(config(kind, mode, age)).unwrap();
    let node = heap.register_type(TypeInfo::ref_array("node")).unwrap();
    let mut m = heap.attach();
    // Young cycles alternate halves; promotion happens in those that end in the old
    // generation's half (the first half: cycles 2, 4, ...). Allocate `x` so that its
    // `age`-th survival is such a cycle.
    let skip = (age % 2) as usize;
    for _ in 0..skip {
        young_cycle(&heap, &mut m);
    }
    let (x, _ballast) = alloc_with_ballast(&mut m, node, 7);
    for survival in 1..=age {
        // Before the promoting cycle: a younger object `y`, referenced only from `x`.
        let y = (survival == age).then(|| {
            let y = m.alloc(node, 4).unwrap();
            m.local(y).unwrap().set(0, fix(99));
            x.get(&m).unwrap().set(1, y);
        });
        let c = young_cycle(&heap, &mut m);
        let old = is_old(&heap, &m, &x);
        assert_eq!(
            old,
            survival == age,
            "{kind:?}/{mode:?} age {age}: after {survival} survivals old = {old} ({:?})",
            c.gen
        );
        if y.is_some() {
            assert!(c.gen.promoted_bytes > 0, "{:?}", c.gen);
            // `y` survived once: it stays young (unless the age is 1), referenced only by
            // the promoted `x`.
            let yv = x.get(&m).unwrap().get(1);
            let (lo, hi) = heap.old_generation_range().unwrap();
            let y_old = yv.bits() >= lo && yv.bits() < hi;
            assert_eq!(y_old, age == 1, "the younger object's promotion");
        }
    }
    // Young cycles more: `y` (referenced only from the old `x`) survives them, so the
    // remembered set held the reference the partial promotion made.
    for _ in 0..3 {
        young_cycle(&heap, &mut m);
        let xl = x.get(&m).unwrap();
        assert_eq!(unfix(xl.get(0)), 7);
        let y = xl.get(1);
        assert_eq!(unfix(m.local(y).unwrap().get(0)), 99);
    }
    assert!(is_old(&heap, &m, &x));
}

fn modes() -> Vec<GcMode> {
    let mut v = vec![GcMode::StopTheWorld];
    if common::uffd_or_skip("promotion age, concurrent") {
        v.push(GcMode::Concurrent);
    }
    v
}

#[test]
fn cards_promote_after_exactly_the_promotion_age() {
    for mode in modes() {
        for age in [1, 2, 3, 4] {
            promoted_after(Generational::Cards, mode, age);
        }
    }
}

#[test]
fn written_pages_promote_after_exactly_the_promotion_age() {
    if !common::uffd_or_skip("promotion age, written pages") {
        return;
    }
    for mode in modes() {
        for age in [2, 3] {
            promoted_after(Generational::WrittenPages, mode, age);
        }
    }
}

/// The default is two survivals.
#[test]
fn the_default_promotion_age_is_two() {
    assert_eq!(HeapConfig::default().promotion_age, 2);
    let bad = HeapConfig::default().with(|c| {
        c.generational = Generational::Cards;
        c.promotion_age = 0;
    });
    assert!(Heap::new(bad).is_err());
}

/// Long-lived data larger than the first full-cycle limit (`min_trigger_bytes / 2`, 1 MiB
/// here): once promoted, it sets the old generation's baseline, so the next cycles stay young
/// (before, the cycle right after the promotion was full: it emptied the old generation and
/// the data had to be copied and promoted all over again).
fn large_first_promotion_keeps_young_cycles(kind: Generational, mode: GcMode) {
    let heap = Heap::new(config(kind, mode, 2)).unwrap();
    let node = heap.register_type(TypeInfo::ref_array("node")).unwrap();
    let mut m = heap.attach();
    // ~2 MiB: 800 arrays of 320 slots, held by one rooted table; 1.5 MiB or more promoted.
    let table = m.alloc(node, 800).unwrap();
    let table = m.root(table);
    for i in 0..800 {
        let a = m.alloc(node, 320).unwrap();
        m.local(a).unwrap().set(0, fix(i as i64));
        table.get(&m).unwrap().set(i, a);
    }
    // Young cycles until all of it is old (allocating it may have run cycles already).
    for _ in 0..6 {
        if heap.old_generation().unwrap().1 >= 3 << 19 {
            break;
        }
        young_cycle(&heap, &mut m);
    }
    let old = heap.old_generation().unwrap().1;
    assert!(old >= 3 << 19, "{kind:?}/{mode:?}: {old} bytes promoted");
    assert!(is_old(&heap, &m, &table));
    // `young_cycle` asserts that each cycle is young.
    for _ in 0..4 {
        young_cycle(&heap, &mut m);
    }
    assert!(is_old(&heap, &m, &table));
    for i in 0..800 {
        let a = table.get(&m).unwrap().get(i);
        assert_eq!(unfix(m.local(a).unwrap().get(0)), i as i64);
    }
}

#[test]
fn a_large_first_promotion_is_followed_by_young_cycles() {
    for mode in modes() {
        large_first_promotion_keeps_young_cycles(Generational::Cards, mode);
    }
    if common::uffd_or_skip("first promotion, written pages") {
        for mode in modes() {
            large_first_promotion_keeps_young_cycles(Generational::WrittenPages, mode);
        }
    }
}

//! Promotion at the first survival, by measurement (`HeapConfig::first_survival_promotion`):
//! once young cycles have measured that the survivors they traced survive the next cycle, a
//! promoting young cycle promotes every survivor it traced, whatever its age, and keeps young
//! the objects allocated during its marking (black: never tested). While the traced survivors
//! are measured to die, promotion stays by age.
//!
//! - `long_lived`: a long-lived object `a` makes the measurement; then `x`, allocated just
//!   before a promoting cycle, is old after its first survival. Concurrent: while that cycle is
//!   parked right before its remark (after its remembered-set scan and precleaning), a fresh
//!   object `b` is stored into `x` (its only reference): `b` is black, stays young, and the
//!   reference from the promoted `x` to it must be remembered (`b` reads back through `x`
//!   after more young cycles, the heap verifies with checkmark on).
//! - `short_lived`: every cycle's survivors are dropped before the next; `x` stays young after
//!   its first survival in the same promoting cycle position.
//!
//! Invariant: every scenario verifies the heap after every cycle.

mod common;
use common::gen::{
    alloc_with_ballast, cycle_storing_black, in_old, promoting_cycle_keeps_black, young_cycle,
};
use common::park::Park;
use common::unfix;
use faultline::{GcMode, Generational, Heap, HeapConfig, TypeInfo};
use std::sync::Arc;

fn heap(kind: Generational, mode: GcMode, park: &Arc<Park>) -> Heap {
    Heap::new(HeapConfig::with_heap_size(8 << 20).with(|c| {
        c.generational = kind;
        c.mode = mode;
        c.promotion_age = 2;
        c.first_survival_promotion = 0.5;
        // The cycles' halves as counted below (the first cycle's promotion of everything it
        // traced, `tests/gen_first_cycle.rs`, would make the second half the old one).
        c.first_cycle_promotion = false;
        c.min_trigger_bytes = 2 << 20;
        c.debug.checkmark = true;
        c.debug.mark_hook = Some(park.hook());
    }))
    .unwrap()
}

fn long_lived(kind: Generational, mode: GcMode) {
    let park = Arc::new(Park::default());
    let heap = heap(kind, mode, &park);
    let node = heap.register_type(TypeInfo::ref_array("node")).unwrap();
    let mut m = heap.attach();
    let (a, _ab) = alloc_with_ballast(&mut m, node, 1);
    // Cycle 1 traces `a`; cycle 2 (promoting) measures that it survived again.
    for _ in 0..3 {
        young_cycle(&heap, &mut m);
    }
    assert!(in_old(&heap, a.value(&m).bits()), "{kind:?}/{mode:?}: a");
    let (x, _xb) = alloc_with_ballast(&mut m, node, 7);
    // The promoting cycle (the fourth: cycles into the first half promote) with `x` allocated
    // just before it; concurrent: `b` stored into `x` while it is parked before its remark.
    let concurrent = mode == GcMode::Concurrent;
    let what = format!("{kind:?}/{mode:?}, at its first survival");
    promoting_cycle_keeps_black(&heap, &mut m, &park, node, &x, 7, concurrent, &what);
}

fn short_lived(kind: Generational, mode: GcMode) {
    let park = Arc::new(Park::default());
    let heap = heap(kind, mode, &park);
    let node = heap.register_type(TypeInfo::ref_array("node")).unwrap();
    let mut m = heap.attach();
    // Each of cycles 1-3 traces a fresh set that is dropped before the next cycle.
    for i in 0..3 {
        let set = alloc_with_ballast(&mut m, node, i);
        young_cycle(&heap, &mut m);
        drop(set);
    }
    let (x, _xb) = alloc_with_ballast(&mut m, node, 7);
    let concurrent = mode == GcMode::Concurrent;
    let c = cycle_storing_black(&heap, &mut m, &park, node, &x, concurrent);
    assert_eq!(c.gen.young, Some(true), "a young cycle: {:?}", c.gen);
    assert!(
        !in_old(&heap, x.value(&m).bits()),
        "{kind:?}/{mode:?}: x was promoted at its first survival though survivors die ({:?})",
        c.gen
    );
    // Its second survival is into the other half, its third promotes it (by age).
    young_cycle(&heap, &mut m);
    young_cycle(&heap, &mut m);
    assert!(in_old(&heap, x.value(&m).bits()), "{kind:?}/{mode:?}");
    assert_eq!(unfix(x.get(&m).unwrap().get(0)), 7);
}

fn modes() -> Vec<GcMode> {
    let mut v = vec![GcMode::StopTheWorld];
    if common::uffd_or_skip("first-survival promotion, concurrent") {
        v.push(GcMode::Concurrent);
    }
    v
}

/// `scenario` with cards in every mode, and with written pages where userfaultfd runs.
fn each_remembered_set(scenario: fn(Generational, GcMode)) {
    for mode in modes() {
        scenario(Generational::Cards, mode);
    }
    if common::uffd_or_skip("first-survival promotion, written pages") {
        for mode in modes() {
            scenario(Generational::WrittenPages, mode);
        }
    }
}

#[test]
fn long_lived_survivors_are_promoted_at_their_first_survival() {
    each_remembered_set(long_lived);
}

#[test]
fn short_lived_survivors_are_promoted_by_age() {
    each_remembered_set(short_lived);
}

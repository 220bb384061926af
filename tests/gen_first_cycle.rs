//! The generational mode's first cycle:
//!
//! - **The first cycle promotes what it traced** (`HeapConfig::first_cycle_promotion`, on by
//!   default): a young cycle that starts with nothing old traces every live object, as a full
//!   cycle does, so it compacts into the half it makes the old half and promotes its traced
//!   survivors at once (before, they stayed young in the other half and the second cycle
//!   copied them all back to promote them). `x`, allocated before the first cycle, is old
//!   after it; concurrent: `b`, allocated while that cycle is parked before its remark and
//!   stored into `x` (its only reference), is black, stays young, and the reference from the
//!   promoted `x` to it must be remembered (`b` reads back after more young cycles, the heap
//!   verifies with checkmark on). With the policy off, `x` is still young after the first
//!   cycle.
//!
//! Invariant: every scenario verifies the heap after every cycle.

mod common;
use common::gen::{
    alloc_with_ballast, check_promoted_keeps_black, cycle_storing_black, in_old, young_cycle,
};
use common::park::Park;
use faultline::{GcMode, Generational, Heap, HeapConfig, TypeInfo};
use std::sync::Arc;

fn heap(
    kind: Generational,
    mode: GcMode,
    park: &Arc<Park>,
    f: impl FnOnce(&mut HeapConfig),
) -> Heap {
    Heap::new(HeapConfig::with_heap_size(8 << 20).with(|c| {
        c.generational = kind;
        c.mode = mode;
        c.min_trigger_bytes = 2 << 20;
        c.debug.checkmark = true;
        c.debug.mark_hook = Some(park.hook());
        f(c);
    }))
    .unwrap()
}

fn first_cycle_promotes(kind: Generational, mode: GcMode) {
    let park = Arc::new(Park::default());
    let heap = heap(kind, mode, &park, |_| {});
    let node = heap.register_type(TypeInfo::ref_array("node")).unwrap();
    let mut m = heap.attach();
    let (x, _xb) = alloc_with_ballast(&mut m, node, 7);
    let concurrent = mode == GcMode::Concurrent;
    let c = cycle_storing_black(&heap, &mut m, &park, node, &x, concurrent);
    assert_eq!(c.gen.young, Some(true), "{kind:?}/{mode:?}: {:?}", c.gen);
    assert!(c.gen.promoted_bytes > 0, "{kind:?}/{mode:?}: {:?}", c.gen);
    let what = format!("{kind:?}/{mode:?}, first cycle {:?}", c.gen);
    check_promoted_keeps_black(&heap, &mut m, &x, 7, concurrent, &what);
}

fn first_cycle_keeps_young_when_off(kind: Generational, mode: GcMode) {
    let park = Arc::new(Park::default());
    let heap = heap(kind, mode, &park, |c| c.first_cycle_promotion = false);
    let node = heap.register_type(TypeInfo::ref_array("node")).unwrap();
    let mut m = heap.attach();
    let (x, _xb) = alloc_with_ballast(&mut m, node, 7);
    let c = young_cycle(&heap, &mut m);
    assert_eq!(c.gen.promoted_bytes, 0, "{kind:?}/{mode:?}: {:?}", c.gen);
    assert!(!in_old(&heap, x.value(&m).bits()), "{kind:?}/{mode:?}");
}

#[test]
fn a_cycle_with_nothing_old_promotes_what_it_traced() {
    let mut modes = vec![GcMode::StopTheWorld];
    if common::uffd_or_skip("first-cycle promotion, concurrent") {
        modes.push(GcMode::Concurrent);
    }
    for &mode in &modes {
        first_cycle_promotes(Generational::Cards, mode);
        first_cycle_keeps_young_when_off(Generational::Cards, mode);
    }
    if common::uffd_or_skip("first-cycle promotion, written pages") {
        for &mode in &modes {
            first_cycle_promotes(Generational::WrittenPages, mode);
            first_cycle_keeps_young_when_off(Generational::WrittenPages, mode);
        }
    }
}

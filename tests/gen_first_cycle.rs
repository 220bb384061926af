//! Two cycle policies of the generational mode:
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
//! - **Full cycles when young cycles do not pay** (`HeapConfig::young_cost_max`): when every
//!   object of the live set is replaced between cycles, a young cycle traces about the whole
//!   live set; it records the share, and a full cycle follows within two cycles (the next
//!   cycle may start in the half without the old generation: a young cycle that promotes
//!   everything runs first). When only a few objects are replaced, the share is small and every
//!   cycle stays young; with the bound off, the replacing scenario stays young too.
//!
//! Invariant: every scenario verifies the heap after every cycle.

mod common;
use common::gen::{
    alloc_with_ballast, cycle_storing_black, in_old, promoting_cycle_keeps_black, young_cycle,
};
use common::park::Park;
use common::{fix, unfix};
use faultline::{
    Capability, CycleStats, GcMode, Generational, Heap, HeapConfig, Mutator, Probe, TypeInfo,
};
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
    let what = format!("{kind:?}/{mode:?}, first cycle");
    promoting_cycle_keeps_black(&heap, &mut m, &park, node, &x, 7, concurrent, &what);
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

/// One cycle (young or full) to its end, verified; returns its record.
fn cycle(heap: &Heap, m: &mut Mutator) -> CycleStats {
    m.collect().unwrap();
    heap.wait_for_compaction();
    heap.verify().unwrap();
    heap.history().last().unwrap().clone()
}

/// A rooted table of `n` slots, each holding a fresh 4-slot node; before each of `cycles`
/// cycles, `replace` of its slots get fresh nodes. Returns the cycles' records.
fn replacing(young_cost_max: f64, n: usize, replace: usize, cycles: usize) -> Vec<CycleStats> {
    let park = Arc::new(Park::default());
    let heap = heap(Generational::Cards, GcMode::StopTheWorld, &park, |c| {
        c.young_cost_max = young_cost_max;
    });
    let node = heap.register_type(TypeInfo::ref_array("node")).unwrap();
    let mut m = heap.attach();
    let t = m.alloc(node, n).unwrap();
    let table = m.root(t);
    let fill = |m: &mut Mutator, i: usize, tag: i64| {
        let v = m.alloc(node, 4).unwrap();
        m.local(v).unwrap().set(0, fix(tag));
        table.get(m).unwrap().set(i, v);
    };
    for i in 0..n {
        fill(&mut m, i, i as i64);
    }
    let mut out = Vec::new();
    for k in 0..cycles {
        for i in 0..replace {
            fill(&mut m, (i * 7 + k) % n, (i * 7 + k) as i64);
        }
        out.push(cycle(&heap, &mut m));
    }
    for i in 0..n {
        let v = table.get(&m).unwrap().get(i);
        assert!(unfix(m.local(v).unwrap().get(0)) >= 0);
    }
    out
}

fn kinds(h: &[CycleStats]) -> String {
    h.iter()
        .map(|c| match (c.gen.young, c.gen.young_cost_pm) {
            (Some(true), Some(pm)) => format!("y({pm})"),
            (Some(true), None) => "y".into(),
            _ => "F".into(),
        })
        .collect::<Vec<_>>()
        .join(" ")
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

#[test]
fn young_cycles_that_trace_most_of_the_live_set_give_way_to_full_cycles() {
    // Every slot replaced before every cycle: the young cycles trace the whole live set.
    let h = replacing(0.5, 2000, 2000, 5);
    let k = kinds(&h);
    let measured = h[1].gen.young_cost_pm.expect(&k);
    assert!(measured > 500, "{k}");
    assert!(h[1].gen.fallback > 0, "{k}: {:?}", h[1].gen);
    assert!(
        h[2..4].iter().any(|c| c.gen.young == Some(false)),
        "{k}: no full cycle after young cycles that did not pay"
    );
    // The bound off: the same scenario stays young (the test fails without the policy).
    let off = replacing(2.0, 2000, 2000, 5);
    assert!(
        off.iter().all(|c| c.gen.young == Some(true)),
        "{}",
        kinds(&off)
    );
    // Few objects replaced: young cycles pay, no full cycle.
    let few = replacing(0.5, 2000, 20, 5);
    let k = kinds(&few);
    assert!(few.iter().all(|c| c.gen.young == Some(true)), "{k}");
    assert!(
        few[1..]
            .iter()
            .all(|c| c.gen.young_cost_pm.is_some_and(|pm| pm < 100)),
        "{k}"
    );
}

/// A full cycle promotes what it traced (`first_cycle_promotion`, nothing pinned), as the first
/// cycle does: young cycles that trace the whole live set (every slot of a table replaced)
/// make the next cycles full (after one young cycle into the old half); the first of them,
/// concurrent: with a black `b` stored into the
/// old `x` while it is parked before its remark, promotes (`x` old after it, `b` young), and
/// the first young cycle after the full ones has an old generation to leave alone (it
/// measures what it traced against the whole live set; before, the old generation was empty
/// after a full cycle and that cycle traced and copied everything again to promote it).
/// `b` reads back through every cycle (checkmark on, verified after each).
fn full_cycle_promotes(kind: Generational, mode: GcMode) {
    let park = Arc::new(Park::default());
    let heap = heap(kind, mode, &park, |c| c.young_cost_max = 0.5);
    let node = heap.register_type(TypeInfo::ref_array("node")).unwrap();
    let mut m = heap.attach();
    let (x, _xb) = alloc_with_ballast(&mut m, node, 7);
    let n = 2000;
    let t = m.alloc(node, n).unwrap();
    let table = m.root(t);
    let refill = |m: &mut Mutator| {
        for i in 0..n {
            let v = m.alloc(node, 4).unwrap();
            table.get(m).unwrap().set(i, v);
        }
    };
    refill(&mut m);
    let concurrent = mode == GcMode::Concurrent;
    let what = format!("{kind:?}/{mode:?}");
    let first = cycle(&heap, &mut m);
    assert!(first.gen.promoted_bytes > 0, "{what}: {:?}", first.gen);
    refill(&mut m);
    let y = cycle(&heap, &mut m);
    assert!(y.gen.fallback > 0, "{what}: young cycles pay: {:?}", y.gen);
    // That cycle compacted into the half without the old generation: the next one promotes
    // every survivor into the old half (a full cycle runs from there only).
    let p = cycle(&heap, &mut m);
    assert_eq!(p.gen.young, Some(true), "{what}: {:?}", p.gen);
    let f = cycle_storing_black(&heap, &mut m, &park, node, &x, concurrent);
    assert_eq!(
        f.gen.young,
        Some(false),
        "{what}: a full cycle: {:?}",
        f.gen
    );
    assert!(
        f.gen.promoted_bytes > 0,
        "{what}: the full cycle promoted nothing: {:?}",
        f.gen
    );
    assert!(in_old(&heap, x.value(&m).bits()), "{what}: x not old");
    if concurrent {
        let b = x.get(&m).unwrap().get(1);
        assert!(!in_old(&heap, b.bits()), "{what}: b (black) was promoted");
    }
    let check = |m: &mut Mutator| {
        let xl = x.get(m).unwrap();
        assert_eq!(unfix(xl.get(0)), 7, "{what}");
        if concurrent {
            assert_eq!(unfix(m.local(xl.get(1)).unwrap().get(0)), 99, "{what}");
        }
    };
    check(&mut m);
    let mut kinds = vec![first, y, p, f];
    for _ in 0..8 {
        let c = cycle(&heap, &mut m);
        check(&mut m);
        let young = c.gen.young == Some(true);
        kinds.push(c);
        if young {
            break;
        }
    }
    let last = kinds.last().unwrap();
    assert_eq!(
        last.gen.young,
        Some(true),
        "{what}: {}",
        self::kinds(&kinds)
    );
    assert!(
        last.gen.young_cost_pm.is_some_and(|pm| pm < 500),
        "{what}: the young cycle after the full ones found nothing old: {:?}",
        last.gen
    );
}

#[test]
fn a_full_cycle_promotes_what_it_traced() {
    full_cycle_promotes(Generational::Cards, GcMode::StopTheWorld);
    if common::uffd_or_skip("full-cycle promotion, concurrent") {
        full_cycle_promotes(Generational::Cards, GcMode::Concurrent);
    }
    // The barrier-free remembered set: the old range moves to the other half at the full
    // cycle's flip (its pages are reported once as joined, the promoted `x`'s reference to
    // the black `b` is kept), stop-the-world and concurrent.
    if common::uffd_or_skip("full-cycle promotion, written pages")
        && Probe::run().supports(Capability::WpAsync)
    {
        full_cycle_promotes(Generational::WrittenPages, GcMode::StopTheWorld);
        full_cycle_promotes(Generational::WrittenPages, GcMode::Concurrent);
    }
}

//! The generational mode (`Generational::Cards`), stop-the-world young and full cycles:
//! - a scenario of one old object whose only reference to a young object is the remembered
//!   set's: the young object survives young cycles, moves, is promoted, and a store into an
//!   old object dirties exactly one card;
//! - the broken collector (`Breakage::SkipDirtyCard`: a young cycle drops one dirty card) is
//!   caught by the verifier, while the same scenario unbroken verifies;
//! - the shadow-model stress with verification before and after every collection, which must
//!   see young and full cycles, promotion and dirty cards (one thread, and four threads with
//!   parallel marking).

mod common;
use common::gen_stress;
use common::shadow;
use faultline::testing::Breakage;
use faultline::{
    Barrier, FaultMode, GcMode, Generational, Heap, HeapConfig, Mutator, Strategy, TypeInfo,
};

fn gen_config() -> HeapConfig {
    HeapConfig::with_heap_size(4 << 20).with(|c| {
        c.generational = Generational::Cards;
        c.min_trigger_bytes = 1 << 20;
        // The scenarios count on the second cycle promoting (not the first: see
        // `tests/gen_first_cycle.rs`); the stress scenarios (`common::gen_stress`) run with it.
        c.first_cycle_promotion = false;
    })
}

/// Run one cycle to its end, returning its stats.
fn young_cycle(heap: &Heap, m: &mut Mutator) -> faultline::CycleStats {
    m.collect().unwrap();
    heap.wait_for_compaction();
    heap.history().last().unwrap().clone()
}

/// One old object `old` (promoted), then a young object stored only into `old`'s slot 0.
/// Returns the heap's verification result after one more young cycle and whether the young
/// object's payload survived.
fn old_to_young(
    mode: GcMode,
    breakage: Option<Breakage>,
) -> (Result<(), String>, Vec<faultline::CycleStats>) {
    let heap = Heap::new(gen_config().with(|c| {
        // SAFETY: a broken run only shows that the verifier catches the missed card; its heap
        // is verified, not used, afterwards.
        unsafe { c.debug.set_breakage(breakage) };
        c.mode = mode;
    }))
    .unwrap();
    if mode == GcMode::StopTheWorld {
        assert_eq!(heap.mode_info().label(), "stw/gen");
    }
    let node = heap.register_type(TypeInfo::ref_array("node")).unwrap();
    let mut m = heap.attach();
    let old = m.alloc(node, 4).unwrap();
    let old = m.root(old);
    // Two young cycles: the first keeps it young in the other half, the second promotes it.
    let c1 = young_cycle(&heap, &mut m);
    assert_eq!(c1.gen.young, Some(true));
    assert_eq!(c1.gen.promoted_bytes, 0, "{c1:?}");
    let c2 = young_cycle(&heap, &mut m);
    assert_eq!(c2.gen.young, Some(true));
    assert!(c2.gen.promoted_bytes >= 40, "{:?}", c2.gen);
    let (_, old_bytes, _) = heap.old_generation().unwrap();
    assert!(old_bytes >= 4096, "the old generation holds a page");
    // A young object, referenced only from the old one (slot 2: after the id words).
    let young = m.alloc(node, 4).unwrap();
    m.local(young).unwrap().set(0, shadow::fix(4242));
    old.get(&m).unwrap().set(1, young);
    let c3 = young_cycle(&heap, &mut m);
    assert_eq!(c3.gen.young, Some(true));
    assert_eq!(c3.gen.dirty_cards, 1, "one store, one card: {:?}", c3.gen);
    let r = heap.verify().map(|_| ()).map_err(|e| e.to_string());
    if r.is_ok() {
        let y = old.get(&m).unwrap().get(1);
        assert_eq!(m.local(y).unwrap().get(0), shadow::fix(4242));
        // Another young cycle: the slot was kept dirty (it still refers to a young object).
        let c4 = young_cycle(&heap, &mut m);
        assert_eq!(c4.gen.dirty_cards, 1, "kept dirty: {:?}", c4.gen);
        heap.verify().unwrap();
        let y = old.get(&m).unwrap().get(1);
        assert_eq!(m.local(y).unwrap().get(0), shadow::fix(4242));
    }
    (r, heap.history())
}

#[test]
fn an_old_to_young_reference_keeps_its_target_through_young_cycles() {
    let mut modes = vec![GcMode::StopTheWorld];
    if common::uffd_or_skip("old-to-young, concurrent") {
        modes.push(GcMode::Concurrent);
    }
    for mode in modes {
        let (r, h) = old_to_young(mode, None);
        r.unwrap();
        assert!(h
            .iter()
            .all(|c| c.gen.young == Some(true) && c.mode == mode));
    }
}

#[test]
fn a_missed_dirty_card_is_caught_by_the_verifier() {
    let mut modes = vec![GcMode::StopTheWorld];
    if common::uffd_or_skip("a missed dirty card, concurrent") {
        modes.push(GcMode::Concurrent);
    }
    for mode in modes {
        let (r, _) = old_to_young(mode, Some(Breakage::SkipDirtyCard));
        let e = r.expect_err("the verifier must catch the lost young object");
        assert!(
            e.contains("released half") || e.contains("not an object start"),
            "{mode:?}: {e}"
        );
    }
}

fn check_generations(heap: &Heap) {
    let (young, full, promoted, cards) = gen_stress::generations(heap);
    eprintln!(
        "generational shadow stress: {} cycles ({young} young, {full} full), {promoted} B promoted, {cards} dirty cards scanned",
        heap.history().len()
    );
    assert!(cards > 0, "dirty cards were scanned");
}

#[test]
fn generational_collections_match_the_shadow_model() {
    gen_stress::one_thread(Generational::Cards, 0x9e4, check_generations);
}

#[test]
fn four_threads_generational_match_their_shadow_models() {
    gen_stress::four_threads(Generational::Cards, 0x9e40, check_generations);
}

fn concurrent(strategy: Strategy, faults: FaultMode, barrier: Barrier) {
    if !common::uffd_or_skip(&format!(
        "generational shadow stress {strategy:?}/{faults:?}"
    )) {
        return;
    }
    gen_stress::concurrent(
        Generational::Cards,
        "/gen",
        (strategy, faults, barrier),
        0x6e40,
        check_generations,
    );
}

gen_stress::concurrent_tests!(concurrent);

//! The generational mode with the barrier-free remembered set (`Generational::WrittenPages`:
//! the old pages written since the last young cycle, from WP_ASYNC + PAGEMAP_SCAN, no store
//! barrier), stop-the-world and concurrent young and full cycles; the scenarios of
//! `gen_shadow_stress.rs` with this remembered set:
//! - one old object whose only reference to a young object is the remembered set's: the
//!   young object survives young cycles; the store into the old object makes exactly its page
//!   written, and the page is reported again while the slot still refers young (kept);
//! - the broken collector (`Breakage::SkipDirtyCard`: a young cycle drops the first range the
//!   remembered set reports, here a written page) is caught by the verifier;
//! - the shadow-model stress with verification before and after every collection, which must
//!   see young and full cycles, promotion and written pages (one thread, and four threads
//!   with parallel marking), stop-the-world, and concurrent in every strategy x delivery and
//!   with the barrier-free (wp_async) marking too, with checkmark.
//!
//! Every test skips with a notice where WP_ASYNC is unavailable (the heap refuses the mode).

mod common;
use common::gen_stress;
use common::shadow;
use faultline::testing::Breakage;
use faultline::{
    Barrier, Capability, FaultMode, GcMode, Generational, Heap, HeapConfig, Mutator, Probe,
    Strategy, TypeInfo,
};

fn available() -> bool {
    let ok = Probe::run().supports(Capability::WpAsync);
    if !ok {
        eprintln!("SKIPPED: WP_ASYNC write tracking unavailable here");
    }
    ok
}

fn gen_config() -> HeapConfig {
    HeapConfig::with_heap_size(4 << 20).with(|c| {
        c.generational = Generational::WrittenPages;
        c.min_trigger_bytes = 1 << 20;
        // The scenarios count on the second cycle promoting (not the first: see
        // `tests/gen_first_cycle.rs`); the stress scenarios (`common::gen_stress`) run with it.
        c.first_cycle_promotion = false;
    })
}

fn young_cycle(heap: &Heap, m: &mut Mutator) -> faultline::CycleStats {
    m.collect().unwrap();
    heap.history().last().unwrap().clone()
}

/// One old object `old` (promoted), then a young object stored only into `old`'s slot 1.
/// Returns the heap's verification result after one more young cycle.
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
    assert!(heap.mode_info().label().ends_with("/gen-wp"));
    let node = heap.register_type(TypeInfo::ref_array("node")).unwrap();
    let mut m = heap.attach();
    let old = m.alloc(node, 4).unwrap();
    let old = m.root(old);
    let c1 = young_cycle(&heap, &mut m);
    assert_eq!((c1.gen.young, c1.gen.promoted_bytes), (Some(true), 0));
    let c2 = young_cycle(&heap, &mut m);
    assert!(c2.gen.promoted_bytes >= 40, "{:?}", c2.gen);
    let (kind, old_bytes, _) = heap.old_generation().unwrap();
    assert_eq!(kind, Generational::WrittenPages);
    assert_eq!(old_bytes, 4096, "the old generation is one page");
    // Nothing refers young from the old page yet; the promoted page is reported once (it
    // joined the old generation) by the next young cycle, then no more.
    let c = young_cycle(&heap, &mut m);
    assert_eq!(c.gen.dirty_cards, 1, "the joined page: {:?}", c.gen);
    let c = young_cycle(&heap, &mut m);
    assert_eq!(c.gen.dirty_cards, 0, "nothing written: {:?}", c.gen);
    let (_, last) = heap.written_pages_stats().unwrap();
    // (One harvest per stop-the-world young cycle, three per concurrent one: at the initial
    // mark, before the remark and in it; each walks the one old page.)
    let harvests = if mode == GcMode::StopTheWorld { 1 } else { 3 };
    assert_eq!(last.harvests, harvests, "{last:?}");
    assert_eq!(
        (last.pages_walked, last.written, last.kept),
        (harvests, 0, 0)
    );
    // A young object, referenced only from the old one.
    let young = m.alloc(node, 4).unwrap();
    m.local(young).unwrap().set(0, shadow::fix(4242));
    old.get(&m).unwrap().set(1, young);
    let c3 = young_cycle(&heap, &mut m);
    assert_eq!(c3.gen.young, Some(true));
    assert_eq!(
        c3.gen.dirty_cards, 1,
        "one store, one written page: {:?}",
        c3.gen
    );
    let r = heap.verify().map(|_| ()).map_err(|e| e.to_string());
    if r.is_ok() {
        let (_, last) = heap.written_pages_stats().unwrap();
        assert_eq!((last.written, last.kept), (1, 0));
        let y = old.get(&m).unwrap().get(1);
        assert_eq!(m.local(y).unwrap().get(0), shadow::fix(4242));
        // Another young cycle: no store, but the page was kept (its slot still refers young).
        let c4 = young_cycle(&heap, &mut m);
        assert_eq!(c4.gen.dirty_cards, 1, "kept: {:?}", c4.gen);
        let (_, last) = heap.written_pages_stats().unwrap();
        assert_eq!((last.written, last.kept), (0, 1));
        heap.verify().unwrap();
        let y = old.get(&m).unwrap().get(1);
        assert_eq!(m.local(y).unwrap().get(0), shadow::fix(4242));
    }
    (r, heap.history())
}

#[test]
fn an_old_to_young_reference_keeps_its_target_through_young_cycles() {
    if !available() {
        return;
    }
    for mode in [GcMode::StopTheWorld, GcMode::Concurrent] {
        let (r, h) = old_to_young(mode, None);
        r.unwrap();
        assert!(h
            .iter()
            .all(|c| c.gen.young == Some(true) && c.mode == mode));
    }
}

#[test]
fn a_dropped_written_page_is_caught_by_the_verifier() {
    if !available() {
        return;
    }
    for mode in [GcMode::StopTheWorld, GcMode::Concurrent] {
        let (r, _) = old_to_young(mode, Some(Breakage::SkipDirtyCard));
        let e = r.expect_err("the verifier must catch the lost young object");
        assert!(
            e.contains("released half") || e.contains("not an object start"),
            "{mode:?}: {e}"
        );
    }
}

/// A store into an old page during a concurrent young cycle's compaction (after its flip), on
/// a page that cycle harvested: the page must be reported by the next young cycle (the
/// re-protection of the harvested pages belongs in the flip pause; done after compaction it
/// would erase this store, and the young object referenced only from it would be lost).
#[test]
fn a_store_after_the_flip_into_a_harvested_page_is_reported_next_time() {
    if !available() {
        return;
    }
    let heap = Heap::new(gen_config().with(|c| {
        c.mode = GcMode::Concurrent;
        c.debug.phase_delay = Some(std::time::Duration::from_millis(30));
        c.debug.verify = true;
    }))
    .unwrap();
    let node = heap.register_type(TypeInfo::ref_array("node")).unwrap();
    let mut m = heap.attach();
    let old = m.alloc(node, 4).unwrap();
    let old = m.root(old);
    for _ in 0..4 {
        m.collect().unwrap();
    }
    assert_eq!(heap.old_generation().unwrap().1, 4096);
    // The old page is written before the cycle (so the cycle harvests it).
    let z = m.alloc(node, 4).unwrap();
    old.get(&m).unwrap().set(0, z);
    let y = m.alloc(node, 4).unwrap();
    m.local(y).unwrap().set(0, shadow::fix(777));
    let y = m.root(y);
    let flips = heap.flips();
    m.start_collection().unwrap();
    // Run (polling) until the flip; the cycle then sleeps before compacting.
    while heap.flips() == flips {
        m.alloc(node, 4).unwrap();
        m.safepoint();
    }
    let yv = y.value(&m);
    old.get(&m).unwrap().set(1, yv);
    drop(y);
    heap.wait_for_compaction();
    let (_, last) = heap.written_pages_stats().unwrap();
    assert!(
        last.returned >= 1,
        "the cycle harvested the old page: {last:?}"
    );
    m.collect().unwrap();
    let (_, last) = heap.written_pages_stats().unwrap();
    assert!(
        last.written >= 1,
        "the store after the flip is reported: {last:?}"
    );
    heap.verify().unwrap();
    let v = old.get(&m).unwrap().get(1);
    assert_eq!(m.local(v).unwrap().get(0), shadow::fix(777));
}

fn check_generations(heap: &Heap) {
    let (young, full, promoted, pages) = gen_stress::generations(heap);
    let (total, _) = heap.written_pages_stats().unwrap();
    eprintln!(
        "written-pages shadow stress: {} cycles ({young} young, {full} full), {promoted} B promoted, {pages} old pages visited; harvests {total:?}",
        heap.history().len()
    );
    assert!(total.written > 0, "written pages were reported");
    assert!(total.kept > 0, "pages were kept for a later cycle");
    assert_eq!(total.fallbacks, 0, "every scan succeeded");
}

#[test]
fn generational_collections_with_written_pages_match_the_shadow_model() {
    if !available() {
        return;
    }
    gen_stress::one_thread(Generational::WrittenPages, 0x9e5, check_generations);
}

#[test]
fn four_threads_with_written_pages_match_their_shadow_models() {
    if !available() {
        return;
    }
    gen_stress::four_threads(Generational::WrittenPages, 0x9e50, check_generations);
}

fn concurrent(strategy: Strategy, faults: FaultMode, barrier: Barrier) {
    if !available() {
        return;
    }
    gen_stress::concurrent(
        Generational::WrittenPages,
        "/gen-wp",
        (strategy, faults, barrier),
        0x6e50,
        check_generations,
    );
}

gen_stress::concurrent_tests!(concurrent);
#[test]
fn concurrent_move_sigbus_wp_async_marking() {
    concurrent(Strategy::Move, FaultMode::Sigbus, Barrier::WpAsync);
}

/// The young/full choice with one live large object is the cards mode's: before, the written
/// pages' old generation started with no large-object budget (the cards mode's is
/// `min_trigger_bytes / 2`), so until the first full cycle any large object made every cycle
/// full.
#[test]
fn a_live_large_object_leaves_young_cycles_young_as_with_cards() {
    if !available() || !common::uffd_or_skip("a_live_large_object_leaves_young_cycles_young") {
        return;
    }
    let kinds = |kind: Generational| -> Vec<Option<bool>> {
        let heap = Heap::new(gen_config().with(|c| {
            c.mode = GcMode::StopTheWorld;
            c.generational = kind;
        }))
        .unwrap();
        let bytes = heap.register_type(TypeInfo::byte_array("bytes")).unwrap();
        let mut m = heap.attach();
        let big = m.alloc(bytes, 64 << 10).unwrap(); // large: the non-moving space
        let _big = m.root(big);
        for _ in 0..4 {
            m.collect().unwrap();
        }
        heap.verify().unwrap();
        heap.history().iter().map(|c| c.gen.young).collect()
    };
    let cards = kinds(Generational::Cards);
    assert!(
        cards.iter().filter(|y| **y == Some(true)).count() >= 2,
        "the cards mode runs young cycles here: {cards:?}"
    );
    assert_eq!(kinds(Generational::WrittenPages), cards);
}

//! Pacing of the generational mode (concurrent, card table) against its pauses and its space:
//!
//! - **Young cycles whose old-to-young references would make their pauses long give way to
//!   full cycles** (`HeapConfig::young_slots_max`). A young cycle forwards every old slot that
//!   refers to a young object in its flip pause (and rescans the cards written since its
//!   precleaning in its remark pause); a full cycle moves the same references concurrently,
//!   page by page. Scenario: a rooted table of [`SLOTS`] slots, promoted by the first cycle;
//!   every slot gets a fresh object while that cycle's compaction is held back
//!   (`compaction_delay`), so at the cycle's end the dirty cards hold [`SLOTS`] old-to-young
//!   references, over the bound: the cycle's record says so and the next cycle is full. With
//!   the bound off, the same scenario's next cycle is young and forwards them all (what churn
//!   at 1 GiB did: 2.0-2.6 M old slots, remark+flip pauses of 285-660 ms). When the slots are
//!   written after the cycle's end instead, they are counted before the next cycle's
//!   initial-mark pause (the world running), in the old half: it is full. Written after a
//!   young cycle that compacted into the other half, the next cycle (from there) is young,
//!   promotes and forwards them all, and the one after it is full.
//! - **A full cycle is paced for the old generation too**: the record of the cycle before it
//!   says the next cycle's marking was paced for the old generation's live bytes (here the
//!   promoted table and objects) as well as what the window keeps. Paced for the window alone,
//!   the full cycles that followed young ones promoting GBs started with the space nearly full
//!   and the mutators waited for their flips (churn at 1 GiB, BENCHMARKS.md s15 `genpace`).
//! - **The old generation counts at its estimated live bytes when a full cycle is due**: a
//!   live set replaced within a cycle (the request workload's cache: every entry lives about
//!   one cycle) leaves the promoted objects dead in the old generation, and the young cycle
//!   that finds them replaced traces about the whole live set. Scenario: the last above
//!   (every slot rewritten after the second cycle, so the third forwards them all and full
//!   cycles are due, the promoted nodes dead): its record says the next cycle was paced for
//!   what the window keeps and the table, not for the dead nodes of the old generation as
//!   well (before, its size: at 1 GiB the request's heap grew to the old generation plus
//!   twice itself, 4.2 GiB, before the young cycle that must promote everything ahead of a
//!   full one).
//!
//! No timing is asserted. Every cycle verifies the heap (checkmark on) and every slot is read
//! back at the end.

mod common;
use common::{fix, uffd_or_skip, unfix};
use faultline::{CycleStats, GcMode, Generational, Heap, HeapConfig, Mutator, Root, TypeId};
use std::time::Duration;

/// Slots of the table (each rewritten once: that many old-to-young references).
const SLOTS: usize = 16_384;
/// The bound the scenarios run with.
const BOUND: usize = 4096;

fn heap(young_slots_max: usize) -> Heap {
    Heap::new(HeapConfig::with_heap_size(64 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.generational = Generational::Cards;
        // No cycle but the scenario's own.
        c.min_trigger_bytes = 48 << 20;
        c.young_slots_max = young_slots_max;
        c.debug.verify = true;
        c.debug.checkmark = true;
        c.debug.compaction_delay = Some(Duration::from_millis(300));
    }))
    .unwrap()
}

/// Give every slot of `table` a fresh 4-slot node tagged `round * SLOTS + i`.
fn rewrite(m: &mut Mutator, node: TypeId, table: &Root, round: usize) {
    for i in 0..SLOTS {
        let v = m.alloc(node, 4).unwrap();
        m.local(v).unwrap().set(0, fix((round * SLOTS + i) as i64));
        table.get(m).unwrap().set(i, v);
    }
}

fn check(m: &Mutator, table: &Root, round: usize) {
    for i in 0..SLOTS {
        let v = table.get(m).unwrap().get(i);
        assert_eq!(
            unfix(m.local(v).unwrap().get(0)),
            (round * SLOTS + i) as i64
        );
    }
}

/// One cycle to its end; `during` runs on this mutator once the cycle has flipped (its
/// compaction held back). Returns the cycle's record.
fn cycle(heap: &Heap, m: &mut Mutator, during: impl FnOnce(&mut Mutator)) -> CycleStats {
    common::start_and_wait_for_flip(heap, m);
    during(m);
    m.wait_for_cycle().unwrap();
    heap.wait_for_compaction();
    heap.verify().unwrap();
    let c = heap.history().last().unwrap().clone();
    eprintln!("{}", c.log_line());
    c
}

/// A heap with the given bound, its mutator, and a rooted table of `SLOTS` slots, each
/// referring to a fresh node (generation 0); returns them and the table's type.
fn heap_with_table(young_slots_max: usize) -> (Heap, Mutator, Root, TypeId) {
    let heap = heap(young_slots_max);
    let node = heap
        .register_type(faultline::TypeInfo::ref_array("node"))
        .unwrap();
    let mut m = heap.attach();
    let t = m.alloc(node, SLOTS).unwrap();
    let table = m.root(t);
    rewrite(&mut m, node, &table, 0);
    (heap, m, table, node)
}

/// The table built and promoted by the first cycle, its slots rewritten during that cycle's
/// compaction. Returns the heap, its mutator, the table and the first cycle's record.
fn promoted_table_written_during_compaction(
    young_slots_max: usize,
) -> (Heap, Mutator, Root, TypeId, CycleStats) {
    let (heap, mut m, table, node) = heap_with_table(young_slots_max);
    let c1 = cycle(&heap, &mut m, |m| rewrite(m, node, &table, 1));
    assert_eq!(c1.gen.young, Some(true), "{}", c1.log_line());
    assert!(c1.gen.promoted_bytes > SLOTS * 8, "{}", c1.log_line());
    (heap, m, table, node, c1)
}

/// The next cycle, which must be full (it forwards no old slot), then every slot read back
/// (round 1). Returns its record.
fn full_cycle_then_check(heap: &Heap, m: &mut Mutator, table: &Root) -> CycleStats {
    let c = cycle(heap, m, |_| {});
    assert_eq!(c.gen.young, Some(false), "{}", c.log_line());
    assert_eq!(c.gen.old_slots, 0, "{}", c.log_line());
    check(m, table, 1);
    m.verify().unwrap();
    c
}

#[test]
fn young_cycles_with_too_many_old_to_young_references_give_way_to_full_cycles() {
    if !uffd_or_skip("young_cycles_with_too_many_old_to_young_references") {
        return;
    }
    let (heap, mut m, table, _node, c1) = promoted_table_written_during_compaction(BOUND);
    // Counted at the cycle's end in the dirty cards: every rewritten slot (the count stops
    // once past the bound).
    let n = c1.gen.young_slots_over.unwrap_or_else(|| {
        panic!(
            "the old-to-young slots were not found over the bound: {}",
            c1.log_line()
        )
    });
    assert!(n > BOUND, "{}", c1.log_line());
    // The next cycle is full, and was paced for the promoted table and objects too.
    assert!(
        c1.pacing.next_mark_bytes >= c1.heap_after() + c1.gen.promoted_bytes,
        "paced for {} B: {}",
        c1.pacing.next_mark_bytes,
        c1.log_line()
    );
    full_cycle_then_check(&heap, &mut m, &table);
}

#[test]
fn without_the_bound_the_young_cycle_forwards_every_old_to_young_reference() {
    if !uffd_or_skip("without_the_bound_the_young_cycle_forwards") {
        return;
    }
    let (heap, mut m, table, _node, c1) = promoted_table_written_during_compaction(usize::MAX);
    assert_eq!(c1.gen.young_slots_over, None, "{}", c1.log_line());
    // A young cycle next: paced for what the window keeps.
    assert_eq!(
        c1.pacing.next_mark_bytes,
        c1.heap_after(),
        "{}",
        c1.log_line()
    );
    let c2 = cycle(&heap, &mut m, |_| {});
    assert_eq!(c2.gen.young, Some(true), "{}", c2.log_line());
    assert!(c2.gen.old_slots >= SLOTS, "{}", c2.log_line());
    check(&m, &table, 1);
    m.verify().unwrap();
}

#[test]
fn old_to_young_references_written_since_the_last_cycle_make_the_next_cycle_full() {
    if !uffd_or_skip("old_to_young_references_written_since_the_last_cycle") {
        return;
    }
    let (heap, mut m, table, node) = heap_with_table(BOUND);
    // Nothing written into the promoted table before the first cycle's end: young expected.
    let c1 = cycle(&heap, &mut m, |_| {});
    assert_eq!(c1.gen.young, Some(true), "{}", c1.log_line());
    assert_eq!(c1.gen.young_slots_over, None, "{}", c1.log_line());
    // Every slot rewritten since: counted at the next cycle's start (in the old half), which
    // is full, rather than a young cycle forwarding them all.
    rewrite(&mut m, node, &table, 1);
    let c2 = full_cycle_then_check(&heap, &mut m, &table);
    // Counted before its initial-mark pause, the world running (in the pause, the count
    // lengthened it by up to 0.6 ms on a 1 GiB old generation).
    let (running, stopped) = c2.gen.young_slots_start_counts;
    assert!(running >= 1 && stopped == 0, "{c2:?}");
}

#[test]
fn a_young_cycle_that_forwarded_too_many_old_slots_is_followed_by_full_cycles() {
    if !uffd_or_skip("a_young_cycle_that_forwarded_too_many_old_slots") {
        return;
    }
    let (heap, mut m, table, node) = heap_with_table(BOUND);
    // Nothing written into the promoted table before the second cycle's end: that one is
    // young and compacts into the half without the old generation.
    for _ in 0..2 {
        let c = cycle(&heap, &mut m, |_| {});
        assert_eq!(c.gen.young, Some(true), "{}", c.log_line());
        assert_eq!(c.gen.young_slots_over, None, "{}", c.log_line());
    }
    // Every slot rewritten: the next cycle starts in that half, so it is young (it promotes)
    // and forwards them all.
    rewrite(&mut m, node, &table, 1);
    let c3 = cycle(&heap, &mut m, |_| {});
    assert_eq!(c3.gen.young, Some(true), "{}", c3.log_line());
    assert!(c3.gen.old_slots >= SLOTS, "{}", c3.log_line());
    assert_eq!(
        c3.gen.young_slots_over,
        Some(c3.gen.old_slots),
        "{}",
        c3.log_line()
    );
    // The promoted nodes were all replaced: full cycles due, paced for what the window keeps
    // and the old generation's live part (the table, about a sixth of it here), not for its
    // size (which counted the dead nodes as live).
    assert!(
        c3.pacing.next_mark_bytes <= c3.heap_after() + c3.gen.old_bytes / 2,
        "paced for {} B with {} B kept and {} B old: {}",
        c3.pacing.next_mark_bytes,
        c3.heap_after(),
        c3.gen.old_bytes,
        c3.log_line()
    );
    // Full next (this cycle compacted into the old half).
    let c4 = cycle(&heap, &mut m, |_| {});
    assert_eq!(c4.gen.young, Some(false), "{}", c4.log_line());
    // Owed for the old-to-young slots, and said so (the log said "young cycles did not pay").
    assert!(c4.gen.fallback_old_slots, "{}", c4.log_line());
    assert!(
        c4.log_line().contains("too many old-to-young slots"),
        "{}",
        c4.log_line()
    );
    check(&m, &table, 1);
    m.verify().unwrap();
}

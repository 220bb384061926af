//! Helpers of the generational scenario tests (`tests/gen_*.rs`): one young cycle run to its
//! end and checked, an object followed by rooted ballast, and a cycle that stores a black object
//! into a promoted one.
//!
//! Invariant: the helpers hold no `Value` across an allocation or a cycle.

use faultline::{Heap, MarkPoint, Mutator, Root, TypeId};

use super::park::Park;
use super::{fix, unfix};

/// Run one young cycle to its end (asserting it was young), verifying the heap after it.
pub fn young_cycle(heap: &Heap, m: &mut Mutator) -> faultline::CycleStats {
    m.collect().unwrap();
    heap.wait_for_compaction();
    let c = heap.history().last().unwrap().clone();
    assert_eq!(c.gen.young, Some(true), "a young cycle: {:?}", c.gen);
    heap.verify().unwrap();
    c
}

/// An object `x` (a 4-slot `node`, slot 0 tagged `tag`) with `16 KiB` of rooted companions
/// allocated right after it (so that the page boundary the old generation ends on lies above
/// `x`). Returns `x`'s root and the ballast's.
pub fn alloc_with_ballast(m: &mut Mutator, node: TypeId, tag: i64) -> (Root, Root) {
    let x = m.alloc(node, 4).unwrap();
    m.local(x).unwrap().set(0, fix(tag));
    let x = m.root(x);
    let ballast = m.alloc(node, 400).unwrap();
    let ballast = m.root(ballast);
    for i in 0..400 {
        let b = m.alloc(node, 4).unwrap();
        ballast.get(m).unwrap().set(i, b);
    }
    (x, ballast)
}

/// Whether address `a` lies in `heap`'s old generation.
pub fn in_old(heap: &Heap, a: usize) -> bool {
    let (lo, hi) = heap.old_generation_range().unwrap();
    a >= lo && a < hi
}

/// One cycle run to its end and verified; concurrent: while it is parked right before its
/// remark (after its remembered-set scan and precleaning), a fresh object `b` (slot 0 tagged
/// 99) is stored into `x`'s slot 1, its only reference (`b` is black). Returns its record.
pub fn cycle_storing_black(
    heap: &Heap,
    m: &mut Mutator,
    park: &Park,
    node: TypeId,
    x: &Root,
    concurrent: bool,
) -> faultline::CycleStats {
    if !concurrent {
        m.collect().unwrap();
    } else {
        park.arm(MarkPoint::BeforeRemark);
        m.start_collection().unwrap();
        park.wait(m);
        let b = m.alloc(node, 2).unwrap();
        m.local(b).unwrap().set(0, fix(99));
        x.get(m).unwrap().set(1, b);
        park.disarm();
        m.wait_for_cycle().unwrap();
    }
    heap.wait_for_compaction();
    heap.verify().unwrap();
    heap.history().last().unwrap().clone()
}

/// After [`cycle_storing_black`] promoted `x` (slot 0 tagged `tag`): `x` is old; concurrent,
/// `b` is young and survives three more young cycles referenced only from the old `x`.
pub fn check_promoted_keeps_black(
    heap: &Heap,
    m: &mut Mutator,
    x: &Root,
    tag: i64,
    concurrent: bool,
    what: &str,
) {
    assert!(
        in_old(heap, x.value(m).bits()),
        "{what}: x was not promoted"
    );
    if concurrent {
        let b = x.get(m).unwrap().get(1);
        assert!(
            !in_old(heap, b.bits()),
            "{what}: an object allocated during the cycle's marking was promoted"
        );
    }
    for _ in 0..3 {
        young_cycle(heap, m);
        let xl = x.get(m).unwrap();
        assert_eq!(unfix(xl.get(0)), tag, "{what}");
        if concurrent {
            assert_eq!(unfix(m.local(xl.get(1)).unwrap().get(0)), 99, "{what}");
        }
    }
    assert!(in_old(heap, x.value(m).bits()), "{what}");
}

/// [`cycle_storing_black`] where that cycle must be a young cycle that promotes `x` (slot 0
/// tagged `tag`); then [`check_promoted_keeps_black`]. `what` names the case in failures.
#[allow(clippy::too_many_arguments)]
pub fn promoting_cycle_keeps_black(
    heap: &Heap,
    m: &mut Mutator,
    park: &Park,
    node: TypeId,
    x: &Root,
    tag: i64,
    concurrent: bool,
    what: &str,
) {
    let c = cycle_storing_black(heap, m, park, node, x, concurrent);
    assert_eq!(
        c.gen.young,
        Some(true),
        "{what}: a young cycle: {:?}",
        c.gen
    );
    assert!(c.gen.promoted_bytes > 0, "{what}: {:?}", c.gen);
    let what = format!("{what} {:?}", c.gen);
    check_promoted_keeps_black(heap, m, x, tag, concurrent, &what);
}

/// The remembered sets to test: cards, and written pages where WP_ASYNC write tracking is
/// available (otherwise a skip notice naming `test`).
pub fn remembered_sets(test: &str) -> Vec<faultline::Generational> {
    use faultline::{Capability, Probe};
    let mut kinds = vec![faultline::Generational::Cards];
    if Probe::run().supports(Capability::WpAsync) {
        kinds.push(faultline::Generational::WrittenPages);
    } else {
        eprintln!("SKIPPED: {test}: written pages (WP_ASYNC unavailable)");
    }
    kinds
}

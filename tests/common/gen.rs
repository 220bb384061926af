//! Helpers of the generational scenario tests (`tests/gen_*.rs`): one young cycle run to its
//! end and checked, and an object followed by rooted ballast.
//!
//! Invariant: the helpers hold no `Value` across an allocation or a cycle.

use faultline::{Heap, Mutator, Root, TypeId};

use super::fix;

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

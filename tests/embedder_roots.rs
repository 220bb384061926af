//! A runtime's own roots: a globals table reported through `RootSource` (heap-wide and
//! per-mutator), the mutator's value stack, and `GlobalRoot` handles usable from any thread.
//! The collector keeps what they hold alive and rewrites them when objects move; the slots
//! of a root source are read back through the mutator, with no `unsafe`.

mod common;
use common::*;
use faultline::{GlobalRoot, RootSlot, RootSource};
use std::sync::Arc;

struct Globals(Vec<RootSlot>);
impl RootSource for Globals {
    fn for_each_root(&self, visit: &mut dyn FnMut(&RootSlot)) {
        self.0.iter().for_each(visit);
    }
}

#[test]
fn root_sources_stacks_and_global_roots_are_updated() {
    // Compacting into the other half, so that every object moves (a slide leaves the dense
    // start of the half in place).
    let heap = faultline::Heap::new(
        faultline::HeapConfig::with_heap_size(8 << 20)
            .with(|c| c.stw_compaction = faultline::StwCompaction::Copy),
    )
    .unwrap();
    let t = register(&heap);
    let globals = Arc::new(Globals((0..8).map(|_| RootSlot::new()).collect()));
    heap.add_root_source(globals.clone());
    let locals = Arc::new(Globals((0..2).map(|_| RootSlot::new()).collect()));
    let mut m = heap.attach();
    m.add_root_source(locals.clone());
    for g in 0..8 {
        list(&mut m, &t, 10 + g);
        let v = m.pop().unwrap();
        m.store(&globals.0[g as usize], v);
    }
    list(&mut m, &t, 5);
    let v = m.pop().unwrap();
    m.store(&locals.0[1], v);
    m.store(&locals.0[0], fix(77)); // an immediate: left alone
    list(&mut m, &t, 3);
    let global = GlobalRoot::new(&heap, m.pop().unwrap());
    list(&mut m, &t, 4); // stays on the value stack
    let old: Vec<usize> = globals.0.iter().map(|a| m.load(a).bits()).collect();
    for _ in 0..3 {
        for _ in 0..5000 {
            m.alloc(t.pair, 0).unwrap(); // garbage
        }
        m.start_collection().unwrap();
    }
    let load = |a: &RootSlot| m.load(a);
    for g in 0..8 {
        assert_eq!(
            read_list(&m, load(&globals.0[g])),
            (0..10 + g as i64).collect::<Vec<_>>()
        );
    }
    assert_ne!(
        old[0],
        load(&globals.0[0]).bits(),
        "objects moved; roots followed"
    );
    assert_eq!(read_list(&m, load(&locals.0[1])), vec![0, 1, 2, 3, 4]);
    assert_eq!(unfix(load(&locals.0[0])), 77);
    assert_eq!(read_list(&m, global.get(&m)), vec![0, 1, 2]);
    assert_eq!(read_list(&m, m.stack_get(0)), vec![0, 1, 2, 3]);
    // A GlobalRoot can be dropped from another thread.
    std::thread::spawn(move || drop(global)).join().unwrap();
    m.verify().unwrap();
}

//! Barrier-free (`wp_async`) marking falls back to the SATB barrier for the last stretch of a
//! cycle whose precleaning the writes outran (`CycleStats::satb_switch`): a short pause takes
//! the roots and switches the barrier on, one concurrent rescan covers the pages written so
//! far, and the remark is SATB's flat remark. Nothing reachable may be lost across the switch:
//! 1. the lost-object races of `marking_races.rs`, forced with the mark hook while the marker
//!    is parked before the switch, with the switch forced (`DebugConfig::force_satb_switch`);
//! 2. a writer that keeps rewriting references spread over many pages while cycles run (more
//!    pages between two safepoint polls than a remark may rescan), so that the cycles switch
//!    on their own (`SwitchReason::Outrun` or `WriteRate`); checkmark and verification on, and
//!    the writer's shadow of the structure checked after every cycle.

mod common;
use common::gate::Gate;
use common::*;
use faultline::{Barrier, GcMode, Heap, HeapConfig, MarkPoint, SwitchReason, Value};
use std::sync::Arc;

fn heap(gate: Option<&Arc<Gate>>, force: bool) -> Heap {
    Heap::new(HeapConfig::with_heap_size(16 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.barrier = Barrier::WpAsync;
        c.debug.checkmark = true;
        c.debug.verify = true;
        c.debug.force_satb_switch = force;
        c.debug.mark_hook = gate.map(|g| g.hook());
    }))
    .unwrap()
}

/// Scenario 1 of `marking_races.rs` (a reference moved from an unscanned object into a
/// scanned one) and scenario 2 (a reference left only in a root), with the switch forced.
fn races(at: MarkPoint) -> (i64, i64) {
    let gate = Arc::new(Gate::default());
    let heap = heap(Some(&gate), true);
    assert_eq!(heap.mode_info().barrier, Some(Barrier::WpAsync));
    let t = register(&heap);
    let mut m = heap.attach();
    let c = pair(&mut m, &t, fix(42), Value::NULL);
    let b = pair(&mut m, &t, c, Value::NULL);
    m.push(b); // stack[0] = B -> C
    let d = pair(&mut m, &t, fix(7), Value::NULL);
    let e = pair(&mut m, &t, d, Value::NULL);
    m.push(e); // stack[1] = E -> D
    let a = pair(&mut m, &t, Value::NULL, Value::NULL);
    m.push(a); // stack[2] = A: the last root, so the marker scans it first
    gate.arm(at);
    m.start_collection().unwrap();
    gate.wait_parked();
    {
        let (b, e, a) = (m.stack_get(0), m.stack_get(1), m.stack_get(2));
        let c = m.local(b).unwrap().get(0);
        m.local(a).unwrap().set(0, c); // into the scanned object
        m.local(b).unwrap().set(0, Value::NULL); // deleted from the unscanned one
        let d = m.local(e).unwrap().get(0);
        m.push(d); // D now only in a root (stack[3])...
        m.local(e).unwrap().set(0, Value::NULL); // ...its last heap copy overwritten
    }
    gate.release();
    m.wait_for_cycle().unwrap();
    let last = heap.history().last().cloned().expect("a cycle");
    assert!(
        last.satb_switch.is_some(),
        "the switch was forced: {last:?}"
    );
    assert!(
        last.pauses.iter().any(|p| p.kind == "satb-switch"),
        "{:?}",
        last.pauses
    );
    let a = m.local(m.stack_get(2)).unwrap();
    let c = m.local(a.get(0)).expect("C survived");
    let d = m.local(m.stack_get(3)).expect("D survived");
    (unfix(c.get(0)), unfix(d.get(0)))
}

#[test]
fn nothing_is_lost_across_a_forced_switch() {
    if !uffd_or_skip("nothing_is_lost_across_a_forced_switch") {
        return;
    }
    for round in 0..10 {
        for at in [
            MarkPoint::Started,
            MarkPoint::Traced(1),
            MarkPoint::Traced(2),
        ] {
            assert_eq!(races(at), (42, 7), "round {round} at {at:?}");
        }
    }
}

/// Scenario 2: a writer outruns precleaning; the cycles switch on their own.
#[test]
fn a_writer_that_outruns_precleaning_makes_the_cycle_switch() {
    if !uffd_or_skip("a_writer_that_outruns_precleaning_makes_the_cycle_switch") {
        return;
    }
    let heap = heap(None, false);
    let t = register(&heap);
    let mut m = heap.attach();
    // N cells spread over many pages (garbage between them), each holding a fixnum; a vector
    // of them; the writer rotates references between the vector's slots and the cells.
    const N: usize = 20_000;
    let v = m.alloc(t.vector, N).unwrap();
    let root = m.root(v);
    for i in 0..N {
        m.alloc(t.pair, 0).unwrap();
        let c = pair(&mut m, &t, fix(i as i64), Value::NULL);
        m.local(root.value(&m)).unwrap().set(i, c);
    }
    // shadow[i]: the fixnum of the cell in slot i.
    let mut shadow: Vec<i64> = (0..N as i64).collect();
    let mut switched = 0;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut cycles = 0;
    while cycles < 12 && switched < 2 {
        m.start_collection().unwrap();
        let n0 = heap.history().len();
        // Write while the cycle runs: swap the cells of two random slots, and link a cell to
        // another one (through the cell's second field), over and over.
        while heap.history().len() == n0 {
            for _ in 0..2_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let (i, j) = ((x % N as u64) as usize, ((x >> 32) % N as u64) as usize);
                let vv = m.local(root.value(&m)).unwrap();
                let (ci, cj) = (vv.get(i), vv.get(j));
                vv.set(i, cj);
                vv.set(j, ci);
                shadow.swap(i, j);
                m.local(ci).unwrap().set(1, cj);
            }
            m.safepoint();
        }
        m.wait_for_cycle().unwrap();
        cycles += 1;
        let last = heap.history().last().cloned().unwrap();
        if let Some(sw) = last.satb_switch {
            switched += 1;
            match sw.reason {
                SwitchReason::Outrun { pages } | SwitchReason::WriteRate { pages } => {
                    assert!(pages > 32, "{sw:?}")
                }
                SwitchReason::Forced => panic!("not forced here: {sw:?}"),
            }
            assert!(last.pauses.iter().any(|p| p.kind == "satb-switch"));
            assert_eq!(
                last.remark_dirty_pages, 0,
                "a switched remark rescans no page"
            );
        } else {
            assert!(!last.pauses.iter().any(|p| p.kind == "satb-switch"));
        }
        let vv = m.local(root.value(&m)).unwrap();
        for (i, &want) in shadow.iter().enumerate() {
            let c = m.local(vv.get(i)).expect("a cell survived");
            assert_eq!(unfix(c.get(0)), want, "slot {i} after cycle {cycles}");
            // The link, if any, leads to a live cell.
            if let Some(l) = m.local(c.get(1)) {
                let _ = unfix(l.get(0));
            }
        }
    }
    eprintln!(
        "{switched} of {cycles} cycles switched; last: {}",
        heap.history().last().unwrap().log_line()
    );
    assert!(
        switched >= 1,
        "no cycle switched to SATB in {cycles} cycles of a writer rewriting {N} slots"
    );
    drop(root);
}

//! Identity hash codes (issue 13 item 5): stable for an object while it lives, wherever the
//! collector moves it, in every mode; distinct among live objects; entries of dead objects
//! dropped at the next flip (the table does not grow with garbage).

mod common;
use common::*;

use std::collections::HashSet;

use faultline::{FaultMode, GcMode, Heap, HeapConfig, Strategy};

fn check(label: &str, config: HeapConfig) {
    let heap = Heap::new(config).unwrap();
    let t = register(&heap);
    let mut m = heap.attach();
    const N: usize = 2000;
    let vec = m.alloc(t.vector, N).unwrap();
    let vec = m.root(vec);
    let big = m.alloc(t.string, 64 << 10).unwrap(); // the non-moving space
    let big = m.root(big);
    let mut hashes = vec![0u64; N];
    for (i, h) in hashes.iter_mut().enumerate() {
        let p = m.alloc(t.pair, 0).unwrap();
        m.local(p).unwrap().set(0, fix(i as i64));
        vec.get(&m).unwrap().set(i, p);
        for _ in 0..20 {
            m.alloc(t.pair, 0).unwrap(); // garbage between them, so they move
        }
        *h = m.identity_hash(vec.get(&m).unwrap().get(i)).unwrap();
    }
    let big_hash = m.identity_hash(big.value(&m)).unwrap();
    assert_eq!(m.identity_hash(fix(1)), None);
    let distinct: HashSet<u64> = hashes.iter().copied().collect();
    assert_eq!(distinct.len(), N, "{label}: live objects share no hash");
    let addr1 = vec.get(&m).unwrap().get(1).bits();
    for round in 0..4 {
        m.collect().unwrap();
        let v = vec.get(&m).unwrap();
        if round == 0 {
            assert_ne!(v.get(1).bits(), addr1, "{label}: the objects moved");
        }
        for (i, &h) in hashes.iter().enumerate() {
            let p = v.get(i);
            if p.is_null() {
                continue;
            }
            assert_eq!(unfix(m.local(p).unwrap().get(0)), i as i64);
            assert_eq!(
                m.identity_hash(p),
                Some(h),
                "{label}: round {round}, object {i}"
            );
        }
        assert_eq!(m.identity_hash(big.value(&m)), Some(big_hash));
        if round == 1 {
            // Half of them die.
            for i in (0..N).step_by(2) {
                v.set(i, faultline::Value::NULL);
            }
        }
    }
    heap.wait_for_compaction();
    let last = heap.history().last().unwrap().clone();
    // The vector's survivors (N/2) and the big array: the dead half's entries were dropped.
    assert_eq!(last.hashed_objects, N / 2 + 1, "{label}");
    eprintln!(
        "{label}: {} hashed objects re-keyed in {:?} at the last flip",
        last.hashed_objects, last.rekey_hashes
    );
    m.verify().unwrap();
}

#[test]
fn identity_hashes_survive_stop_the_world_collections() {
    check(
        "stw",
        HeapConfig::with_heap_size(8 << 20).mode(GcMode::StopTheWorld),
    );
}

#[test]
fn identity_hashes_survive_concurrent_cycles() {
    if !uffd_or_skip("identity_hashes_survive_concurrent_cycles") {
        return;
    }
    for strategy in [Strategy::Copy, Strategy::Move, Strategy::Minor] {
        for faults in [FaultMode::Sigbus, FaultMode::Thread] {
            check(
                &format!("{strategy:?}/{faults:?}"),
                HeapConfig::with_heap_size(8 << 20).with(|c| {
                    c.mode = GcMode::Concurrent;
                    c.strategy = strategy;
                    c.faults = faults;
                }),
            );
        }
    }
}

#[test]
fn identity_hashes_survive_sliding_collections() {
    check(
        "stw/slide",
        HeapConfig::with_heap_size(8 << 20).with(|c| {
            c.mode = GcMode::StopTheWorld;
            c.stw_compaction = faultline::StwCompaction::Slide;
        }),
    );
}

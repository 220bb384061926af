//! The generational shadow-model stress, shared by both remembered sets
//! (`tests/gen_shadow_stress.rs` for cards, `tests/gen_written_pages.rs` for written pages):
//! one mutator, four mutators, and concurrent young and full cycles under one strategy x
//! delivery x marking barrier, each compared with its shadow model at every collection.
//!
//! Invariant: every run verifies the heap before and after each collection
//! (`debug.verify`), and the caller's check sees the heap's whole history afterwards.

use super::shadow::{self, drive, Shadow};
use super::stress_scale;
use faultline::{Barrier, FaultMode, GcMode, Generational, Heap, HeapConfig, Strategy};

/// A small generational heap collected every `stress_every` allocations, with a small old
/// limit, so that full cycles come often too.
pub fn stress_config(kind: Generational, stress_every: u64, gc_threads: usize) -> HeapConfig {
    HeapConfig::with_heap_size(2 << 20).with(|c| {
        c.generational = kind;
        c.debug.stress_every = Some(stress_every);
        c.debug.verify = true;
        c.gc_threads = gc_threads;
        c.pin_large_ref_objects = true;
        c.min_trigger_bytes = 256 << 10;
        c.old_growth = 0.5;
    })
}

/// The cycles' generational figures: (young, full, bytes promoted, remembered-set units
/// scanned), after asserting what every generational run must show: young cycles dominate,
/// full cycles ran, objects were promoted.
pub fn generations(heap: &Heap) -> (usize, usize, usize, usize) {
    let h = heap.history();
    let young = h.iter().filter(|c| c.gen.young == Some(true)).count();
    let full = h.iter().filter(|c| c.gen.young == Some(false)).count();
    let promoted: usize = h.iter().map(|c| c.gen.promoted_bytes).sum();
    let units: usize = h.iter().map(|c| c.gen.dirty_cards).sum();
    assert!(
        young > full,
        "young cycles dominate ({young} young, {full} full)"
    );
    assert!(full > 0, "full cycles ran");
    assert!(promoted > 0, "objects were promoted");
    (young, full, promoted, units)
}

/// One mutator, `stress_scale(3_000)` collections.
pub fn one_thread(kind: Generational, seed: u64, check: impl Fn(&Heap)) {
    let heap = Heap::new(stress_config(kind, 8, 1)).unwrap();
    let t = shadow::register(&heap);
    let mut m = heap.attach();
    let mut sh = Shadow::new(&mut m, t, seed, 1);
    let target = stress_scale(3_000);
    drive(&mut m, &mut sh, target, u64::MAX);
    assert!(heap.flips() >= target);
    assert!(sh.checks >= target);
    check(&heap);
}

/// Four mutators on `heap`, each driving its own shadow model `stress_scale(600)` times.
fn four_mutators(heap: &Heap, seed: u64, seed_step: u64) {
    let t = shadow::register(heap);
    let target = stress_scale(600);
    std::thread::scope(|s| {
        for i in 0..4u64 {
            let heap = heap.clone();
            s.spawn(move || {
                let mut m = heap.attach();
                let mut sh = Shadow::new(&mut m, t, seed + i * seed_step, i + 1);
                drive(&mut m, &mut sh, target, u64::MAX);
            });
        }
    });
}

/// Four mutators, stop-the-world, parallel marking.
pub fn four_threads(kind: Generational, seed: u64, check: impl Fn(&Heap)) {
    let heap = Heap::new(stress_config(kind, 16, 2)).unwrap();
    four_mutators(&heap, seed, 1);
    check(&heap);
}

/// Concurrent young and full cycles under one strategy x delivery (x marking barrier): four
/// mutators, verification before each pause and after each compaction, checkmark after every
/// concurrent mark (it traces through old objects, so a young object reachable only from one
/// must have been marked). The mode label must end in `label_end`; no cycle may make an
/// mmap-family call or a registration.
pub fn concurrent(
    kind: Generational,
    label_end: &str,
    (strategy, faults, barrier): (Strategy, FaultMode, Barrier),
    seed: u64,
    check: impl Fn(&Heap),
) {
    let heap = Heap::new(stress_config(kind, 24, 1).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = strategy;
        c.faults = faults;
        c.barrier = barrier;
        c.debug.checkmark = true;
        c.pin_large_ref_objects = false;
    }))
    .unwrap();
    let info = heap.mode_info();
    assert_eq!(info.mode, GcMode::Concurrent, "{:?}", info.fallback_reason);
    assert!(info.label().ends_with(label_end), "{}", info.label());
    four_mutators(&heap, seed, 31);
    heap.wait_for_compaction();
    heap.verify().unwrap();
    let h = heap.history();
    assert!(h.iter().all(|c| c.mode == GcMode::Concurrent));
    assert!(h
        .iter()
        .all(|c| c.mmap_family() == 0 && c.registrations() == 0));
    eprint!("{}: ", info.label());
    check(&heap);
}

/// One `#[test]` per concurrent strategy x delivery with the SATB barrier, and copy/sigbus
/// with barrier-free (wp_async) marking, each calling `$run(strategy, faults, barrier)` (the
/// calling file's `concurrent` driver, which imports `Strategy`, `FaultMode` and `Barrier`).
/// (Unused in the test binaries that include `common` for other helpers.)
#[allow(unused_macros)]
macro_rules! concurrent_tests {
    ($run:ident) => {
        #[test]
        fn concurrent_copy_sigbus() {
            $run(Strategy::Copy, FaultMode::Sigbus, Barrier::Satb);
        }
        #[test]
        fn concurrent_copy_thread() {
            $run(Strategy::Copy, FaultMode::Thread, Barrier::Satb);
        }
        #[test]
        fn concurrent_move_sigbus() {
            $run(Strategy::Move, FaultMode::Sigbus, Barrier::Satb);
        }
        #[test]
        fn concurrent_move_thread() {
            $run(Strategy::Move, FaultMode::Thread, Barrier::Satb);
        }
        #[test]
        fn concurrent_minor_sigbus() {
            $run(Strategy::Minor, FaultMode::Sigbus, Barrier::Satb);
        }
        #[test]
        fn concurrent_minor_thread() {
            $run(Strategy::Minor, FaultMode::Thread, Barrier::Satb);
        }
        #[test]
        fn concurrent_copy_sigbus_wp_async_marking() {
            $run(Strategy::Copy, FaultMode::Sigbus, Barrier::WpAsync);
        }
    };
}
#[allow(unused_imports)]
pub(crate) use concurrent_tests;

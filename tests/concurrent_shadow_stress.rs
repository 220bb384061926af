//! The shadow-model stress of the stop-the-world collector, run against concurrent compaction:
//! for every strategy x fault-delivery combination, four mutator threads mutate their graphs
//! while compaction runs (stress mode: a collection every few allocations; verification before
//! each pause and after each compaction), and each graph is compared with its model after
//! every collection its thread observes; checkmark re-verifies every concurrent mark. 2,000 cycles per combination by default, 100x under
//! `FAULTLINE_STRESS=long`. The SATB barrier runs with every combination; the barrier-free
//! wp_async marking with the anonymous-arena ones (the minor strategy falls back to SATB).

mod common;
use common::shadow::{self, drive, Shadow};
use common::stress_scale;
use faultline::{Barrier, FaultMode, GcMode, Heap, HeapConfig, Strategy};

fn run(strategy: Strategy, faults: FaultMode) {
    run_with(strategy, faults, Barrier::Satb)
}

fn run_with(strategy: Strategy, faults: FaultMode, barrier: Barrier) {
    if !common::uffd_or_skip(&format!("concurrent shadow stress {strategy:?}/{faults:?}")) {
        return;
    }
    let heap = Heap::new(HeapConfig::with_heap_size(2 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = strategy;
        c.faults = faults;
        c.barrier = barrier;
        c.dense_runs = true; // off by default; the copy strategy's cases check dense runs too
        c.debug.stress_every = Some(24);
        c.debug.verify = true;
        c.debug.checkmark = true;
    }))
    .unwrap();
    let info = heap.mode_info();
    assert_eq!(info.mode, GcMode::Concurrent, "{:?}", info.fallback_reason);
    assert_eq!(info.barrier, Some(barrier));
    let t = shadow::register(&heap);
    let target = stress_scale(2_000);
    let totals: Vec<(u64, u64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4u64)
            .map(|i| {
                let heap = heap.clone();
                s.spawn(move || {
                    let mut m = heap.attach();
                    let mut sh = Shadow::new(&mut m, t, 0x1234 + i * 77, i + 1);
                    drive(&mut m, &mut sh, target, u64::MAX);
                    (sh.checks, sh.objects_checked)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    heap.wait_for_compaction();
    let h = heap.history();
    assert!(heap.flips() >= target);
    assert!(h.iter().all(|c| c.mode == GcMode::Concurrent));
    assert!(h
        .iter()
        .all(|c| c.mmap_family() == 0 && c.registrations() == 0));
    assert!(totals.iter().all(|&(c, o)| c > 50 && o > 500), "{totals:?}");
    let by_fault: u64 = h.iter().map(|c| c.pages_by_fault).sum();
    assert!(by_fault > 0, "mutators resolved pages themselves");
    assert!(h.iter().any(|c| c.mutators == 4));
    eprintln!(
        "{}/{}/{}: {} concurrent cycles, 4 mutators, {} model checks, {} objects compared, {} pages by faults (in place {}, staged {}, copied {}), fault stalls {:?}",
        info.strategy.unwrap(),
        info.faults.unwrap(),
        info.barrier.unwrap(),
        heap.flips(),
        totals.iter().map(|t| t.0).sum::<u64>(),
        totals.iter().map(|t| t.1).sum::<u64>(),
        by_fault,
        h.iter().map(|c| c.pages_in_place).sum::<u64>(),
        h.iter().map(|c| c.pages_staged).sum::<u64>(),
        h.iter().map(|c| c.pages_copied).sum::<u64>(),
        heap.fault_stats()
    );
}

#[test]
fn copy_sigbus() {
    run(Strategy::Copy, FaultMode::Sigbus);
}
#[test]
fn copy_thread() {
    run(Strategy::Copy, FaultMode::Thread);
}
#[test]
fn move_sigbus() {
    run(Strategy::Move, FaultMode::Sigbus);
}
#[test]
fn move_thread() {
    run(Strategy::Move, FaultMode::Thread);
}
#[test]
fn minor_sigbus() {
    run(Strategy::Minor, FaultMode::Sigbus);
}
#[test]
fn minor_thread() {
    run(Strategy::Minor, FaultMode::Thread);
}

#[test]
fn copy_sigbus_wp_async() {
    run_with(Strategy::Copy, FaultMode::Sigbus, Barrier::WpAsync);
}
#[test]
fn move_thread_wp_async() {
    run_with(Strategy::Move, FaultMode::Thread, Barrier::WpAsync);
}
#[test]
fn move_sigbus_wp_async() {
    run_with(Strategy::Move, FaultMode::Sigbus, Barrier::WpAsync);
}

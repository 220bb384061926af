//! The fault path answers "is this destination page mapped already?" from the compaction's
//! own state, never from the page tables: `mincore` (and a pagemap read) wait for the mmap
//! lock, which any thread's `mmap` / `munmap` / `mprotect` holds for writing, so a fault that
//! asked them could sleep for milliseconds behind an unrelated thread.
//!
//! The heap runs on an injected kernel layer whose `mincore` always fails (a failed presence
//! check reads as "absent", so a fault path that relied on one would retry, wait, or chain the
//! fault and crash) and counts every call. One mutator reads a list while the compaction
//! worker that claimed destination page 0 sleeps on its claim (`DebugConfig::worker_stall`):
//! the mutator's fault waits, rescues the page (maps a copy itself), and the worker's own
//! mapping call later meets EEXIST on it, which the arena must believe on the rescue's record.
//! Prefill and recycling are off, so nothing else in the heap calls `mincore`.

mod common;
use common::*;
use faultline::testing::heap::inject::{FaultInjector, Rule, Trigger};
use faultline::testing::heap::sys::{Call, Errno, Sys};
use faultline::{FaultBreakdown, FaultMode, GcMode, Heap, HeapConfig, Strategy};
use std::sync::Arc;
use std::time::Duration;

const N: i64 = 30_000;

/// One heap, one cycle, the worker stalled on page 0; returns the fault breakdown before and
/// after the mutator read the list, and the `mincore` calls the injector saw.
fn attempt(
    strategy: Strategy,
    faults: FaultMode,
    wait: Duration,
) -> (FaultBreakdown, FaultBreakdown, u64) {
    let inj = Arc::new(
        FaultInjector::new(
            vec![Rule::new(Call::Mincore, Errno::ENOMEM, Trigger::Always)],
            0x0dd,
        )
        .disarmed(),
    );
    let heap = Heap::new(HeapConfig::with_heap_size(16 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = strategy;
        c.faults = faults;
        c.gc_threads = 1;
        c.prefill_bytes = 0;
        c.recycle_old_half = false;
        c.debug.worker_stall = Some(Duration::from_millis(400));
        c.debug.sys = Sys::new(inj.clone());
    }))
    .unwrap();
    assert_eq!(heap.mode_info().mode, GcMode::Concurrent);
    inj.arm();
    let t = register(&heap);
    let mut m = heap.attach();
    let (root, b0, got) = read_list_past_a_stalled_claim(&heap, &mut m, &t, N, true, wait);
    heap.wait_for_compaction();
    // A second, undisturbed cycle: its faults race with nothing stalled.
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "{strategy:?}/{faults:?}");
    m.collect().unwrap();
    assert_eq!(read_list(&m, root.value(&m)), (0..N).collect::<Vec<_>>());
    heap.wait_for_compaction();
    let b1 = heap.fault_breakdown();
    let calls = heap.arena_stats().calls_since_creation.get(Call::Mincore);
    assert_eq!(calls, inj.seen(Call::Mincore), "every mincore is counted");
    eprintln!("{strategy:?}/{faults:?}: {b1:?}; mincore calls {calls}");
    drop(root);
    drop(m);
    (b0, b1, calls)
}

fn run(strategy: Strategy, faults: FaultMode) {
    for wait_ms in [20, 60, 150, 250] {
        let (b0, b1, mincore) = attempt(strategy, faults, Duration::from_millis(wait_ms));
        assert!(
            b1.faults > 0,
            "{strategy:?}/{faults:?}: no fault in the run: {b1:?}"
        );
        assert_eq!(
            mincore, 0,
            "{strategy:?}/{faults:?}: the heap asked mincore: {b1:?}"
        );
        assert_eq!(
            (b1.presence_checks, b1.exists_checked),
            (0, 0),
            "{strategy:?}/{faults:?}: {b1:?}"
        );
        if b1.waited_on_worker > b0.waited_on_worker {
            assert!(b1.rescued > b0.rescued, "{strategy:?}/{faults:?}: {b1:?}");
            // The stalled worker's mapping call met the rescued page: an EEXIST believed on
            // the rescue's record (none was checked against the page tables, see above).
            assert!(b1.exists_recorded >= 1, "{strategy:?}/{faults:?}: {b1:?}");
            return;
        }
    }
    panic!("{strategy:?}/{faults:?}: the mutator never met the stalled worker's page");
}

#[test]
fn a_rescue_and_its_claimer_ask_no_mincore() {
    if !uffd_or_skip("a_rescue_and_its_claimer_ask_no_mincore") {
        return;
    }
    for strategy in [Strategy::Copy, Strategy::Move] {
        for faults in [FaultMode::Sigbus, FaultMode::Thread] {
            run(strategy, faults);
        }
    }
}

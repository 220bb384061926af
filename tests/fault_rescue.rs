//! A fault on a page whose claimer is descheduled does not wait for it: past a short bound
//! the faulting thread (or the handler thread) fills a copy of the page itself and maps it,
//! and the claimer's own mapping call later finds the page present (`Heap::fault_breakdown`'s
//! `rescued`). The test knob `DebugConfig::worker_stall` makes the worker that claims
//! destination page 0 sleep with the claim held; the mutator then reads every object, and the
//! values must be intact whichever copy of the page won.

mod common;
use common::*;
use faultline::testing::heap::inject::{FaultInjector, Rule, Trigger};
use faultline::testing::heap::sys::{Call, Errno, Sys};
use faultline::{FaultBreakdown, FaultMode, GcMode, Heap, HeapConfig, Strategy};
use std::sync::Arc;
use std::time::Duration;

const N: i64 = 30_000;

/// One heap, one cycle: returns the fault breakdown before and after the mutator read the
/// list while the worker held page 0 (if it had claimed it by then), and the pages the
/// cycle moved in place.
fn attempt(
    strategy: Strategy,
    faults: FaultMode,
    wait: Duration,
    garbage: bool,
) -> (FaultBreakdown, FaultBreakdown) {
    let (b0, b1, _) = attempt_with(strategy, faults, wait, garbage, None);
    (b0, b1)
}

fn attempt_with(
    strategy: Strategy,
    faults: FaultMode,
    wait: Duration,
    garbage: bool,
    sys: Option<Sys>,
) -> (FaultBreakdown, FaultBreakdown, u64) {
    let heap = Heap::new(HeapConfig::with_heap_size(16 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = strategy;
        c.faults = faults;
        c.gc_threads = 1;
        c.dense_runs = true; // off by default: the copy cases here take dense runs
        c.debug.worker_stall = Some(Duration::from_millis(400));
        if let Some(sys) = sys {
            c.debug.sys = sys;
        }
    }))
    .unwrap();
    assert_eq!(heap.mode_info().mode, GcMode::Concurrent);
    let t = register(&heap);
    let mut m = heap.attach();
    // Without garbage between the list's cells the move strategy's first pages are dense
    // (one fully live old page at the same offset, which its claimer would update in place:
    // the rescuer's hold on the old page must keep it from doing so while the rescuer reads
    // it).
    let (root, b0, got) = read_list_past_a_stalled_claim(&heap, &mut m, &t, N, garbage, wait);
    // (With handler-thread delivery the rescuer's COPY wakes the mutator before the handler
    // records the fault: read the figures once the compaction is over.)
    heap.wait_for_compaction();
    let b1 = heap.fault_breakdown();
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "{strategy:?}/{faults:?}");
    assert_eq!(read_list(&m, root.value(&m)).len(), N as usize);
    let last = heap.history().last().cloned().expect("a cycle");
    eprintln!(
        "{strategy:?}/{faults:?}/garbage {garbage}: {b1:?}; stalls {:?}; in place {}",
        heap.fault_stats(),
        last.pages_in_place
    );
    drop(root);
    drop(m);
    (b0, b1, last.pages_in_place)
}

fn run(strategy: Strategy, faults: FaultMode, garbage: bool) {
    // Whether the worker has claimed page 0 by the time the mutator reads is up to the
    // scheduler: try a few times, waiting longer each time (always well below the stall).
    for wait_ms in [20, 60, 150, 250] {
        let (b0, b1) = attempt(strategy, faults, Duration::from_millis(wait_ms), garbage);
        assert!(b1.rescued <= b1.waited && b1.slept <= b1.waited, "{b1:?}");
        assert!(b1.waited_on_worker <= b1.waited, "{b1:?}");
        assert_eq!(b1.preempted + b1.unpreempted.count, b1.faults, "{b1:?}");
        assert!(b1.blocked <= b1.faults, "{b1:?}");
        // Context switches are counted only on request (`count_fault_context_switches`,
        // never called here): a fault that slept on the stalled worker's page is not
        // `blocked`, and no fault is `preempted`.
        assert_eq!((b1.preempted, b1.blocked), (0, 0), "{b1:?}");
        assert!(
            b1.wait_max <= b1.wait && b1.own_max <= b1.fill + b1.map,
            "{b1:?}"
        );
        if b1.waited_on_worker > b0.waited_on_worker {
            // It waited on the stalled worker's page (the worker sleeps 400 ms, the bound is
            // 30 µs): it must have rescued it.
            assert!(
                b1.rescued > b0.rescued,
                "{strategy:?}/{faults:?}/garbage {garbage}: no fault rescued the page the stalled worker held: {b1:?}"
            );
            return;
        }
    }
    panic!("{strategy:?}/{faults:?}/garbage {garbage}: the mutator never met the stalled worker's page");
}

#[test]
fn a_fault_does_not_wait_for_a_descheduled_worker() {
    if !uffd_or_skip("a_fault_does_not_wait_for_a_descheduled_worker") {
        return;
    }
    for strategy in [Strategy::Copy, Strategy::Move] {
        for faults in [FaultMode::Sigbus, FaultMode::Thread] {
            run(strategy, faults, true);
        }
    }
    // Dense pages (move strategy): rescued too, before their claimer locks the old page.
    for faults in [FaultMode::Sigbus, FaultMode::Thread] {
        run(Strategy::Move, faults, false);
    }
}

/// The rescue's `UFFDIO_COPY` under injected errors (ENOMEM at random into every COPY, the
/// workers' and the faults' alike: the arena retries a transient ENOMEM a bounded number of
/// times; a rescue whose COPY still fails gives up and waits for the claimer, a claimer whose
/// COPY fails gives its claim back): the values stay intact.
#[test]
fn a_failed_rescue_waits_for_the_claimer() {
    if !uffd_or_skip("a_failed_rescue_waits_for_the_claimer") {
        return;
    }
    let mut met = false;
    for wait_ms in [20, 60, 150, 250] {
        let inj = Arc::new(
            FaultInjector::new(
                vec![Rule::new(
                    Call::UffdCopy,
                    Errno::ENOMEM,
                    Trigger::Random { one_in: 2 },
                )],
                0x5eed,
            )
            .disarmed(),
        );
        inj.arm();
        let (b0, b1, _) = attempt_with(
            Strategy::Copy,
            FaultMode::Sigbus,
            Duration::from_millis(wait_ms),
            true,
            Some(Sys::new(inj.clone())),
        );
        inj.disarm();
        assert!(
            inj.injected(Call::UffdCopy) > 0,
            "{:?}",
            inj.injected_summary()
        );
        assert!(b1.rescued <= b1.waited, "{b1:?}");
        if b1.waited_on_worker > b0.waited_on_worker {
            met = true;
            break;
        }
    }
    assert!(met, "the mutator never met the stalled worker's page");
}

/// Copy strategy, no garbage between the cells: the first destination pages are dense (each
/// one fully live old page at its own page offset), so the worker takes them as a dense run:
/// it claims the pages, locks their old pages, forwards their references in place and moves
/// the run with one `UFFDIO_MOVE` (here it stalls on page 0 with the run claimed and page 0's
/// old page locked). A fault on page 0 may not rescue it from its old page (about to be
/// rewritten): it waits for the move, and the values read through the moved pages are intact.
#[test]
fn a_fault_on_a_dense_run_waits_for_its_move() {
    if !uffd_or_skip("a_fault_on_a_dense_run_waits_for_its_move") {
        return;
    }
    for faults in [FaultMode::Sigbus, FaultMode::Thread] {
        let mut met = false;
        for wait_ms in [20, 60, 150, 250] {
            let (b0, b1, in_place) = attempt_with(
                Strategy::Copy,
                faults,
                Duration::from_millis(wait_ms),
                false,
                None,
            );
            assert!(in_place > 0, "{faults:?}: no page was moved in place");
            if b1.waited_on_worker > b0.waited_on_worker {
                // The run's other pages, claimed but not locked yet while the worker stalls,
                // may be rescued (their old pages intact; the worker's lock then fails and it
                // copies them instead); page 0's old page is locked: that wait ends with the
                // move, not with a rescue.
                assert!(
                    b1.waited - b0.waited > b1.rescued - b0.rescued,
                    "{faults:?}: every fault on the stalled dense run rescued its page: {b1:?}"
                );
                met = true;
                break;
            }
        }
        assert!(
            met,
            "{faults:?}: the mutator never met the stalled dense run"
        );
    }
}

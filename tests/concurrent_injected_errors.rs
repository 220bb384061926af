//! Kernel errors injected into concurrent compaction are retried or fail cleanly, never
//! corrupting: EAGAIN with a real partial count (COPY, MOVE, CONTINUE), EEXIST that the page
//! tables contradict (a lost race the kernel misreports), ENOMEM (transient), and EBUSY from
//! MOVE (a page shared after fork). Each runs the four-mutator shadow-model stress with random
//! (seeded) injection and checks that every injected path was hit.

mod common;
use common::shadow::{self, drive, Shadow};
use common::uffd_or_skip;
use faultline::testing::heap::inject::{FaultInjector, Rule, Trigger};
use faultline::testing::heap::sys::{Call, Errno, Sys};
use faultline::testing::heap::PAGE_SIZE;
use faultline::{AllocError, FaultMode, GcMode, Heap, HeapConfig, Strategy};
use std::sync::Arc;

fn stress_with(
    strategy: Strategy,
    faults: FaultMode,
    rules: Vec<Rule>,
    cycles: u64,
) -> Arc<FaultInjector> {
    stress_counting(strategy, faults, rules, cycles).0
}

/// [`stress_with`], also returning the pages the cycles moved in place.
fn stress_counting(
    strategy: Strategy,
    faults: FaultMode,
    rules: Vec<Rule>,
    cycles: u64,
) -> (Arc<FaultInjector>, u64) {
    let inj = Arc::new(FaultInjector::new(rules, 0xfee1).disarmed());
    let heap = Heap::new(HeapConfig::with_heap_size(2 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = strategy;
        c.faults = faults;
        c.debug.stress_every = Some(24);
        c.debug.verify = true;
        c.debug.sys = Sys::new(inj.clone());
        // Off by default; on here so that the copy strategy's runs meet the injected errors.
        c.dense_runs = true;
    }))
    .unwrap();
    assert_eq!(heap.mode_info().mode, GcMode::Concurrent);
    let t = shadow::register(&heap);
    inj.arm();
    std::thread::scope(|s| {
        for i in 0..4u64 {
            let heap = heap.clone();
            s.spawn(move || {
                let mut m = heap.attach();
                let mut sh = Shadow::new(&mut m, t, 0x77 + i, i + 1);
                drive(&mut m, &mut sh, cycles, u64::MAX);
                assert!(sh.checks > 10);
            });
        }
    });
    heap.wait_for_compaction();
    inj.disarm();
    heap.verify().unwrap();
    let in_place = heap.history().iter().map(|c| c.pages_in_place).sum();
    (inj, in_place)
}

#[test]
fn copy_absorbs_partial_copies_enomem_and_false_eexist() {
    if !uffd_or_skip("copy_absorbs_partial_copies_enomem_and_false_eexist") {
        return;
    }
    let inj = stress_with(
        Strategy::Copy,
        FaultMode::Sigbus,
        vec![
            Rule::again_after(Call::UffdCopy, 2 * PAGE_SIZE, Trigger::Random { one_in: 5 }),
            Rule::new(
                Call::UffdCopy,
                Errno::ENOMEM,
                Trigger::Random { one_in: 10 },
            ),
            Rule::new(
                Call::UffdCopy,
                Errno::EEXIST,
                Trigger::Random { one_in: 10 },
            ),
        ],
        300,
    );
    assert!(
        inj.injected(Call::UffdCopy) > 100,
        "{:?}",
        inj.injected_summary()
    );
}

#[test]
fn move_falls_back_on_ebusy_and_retries_partial_moves() {
    if !uffd_or_skip("move_falls_back_on_ebusy_and_retries_partial_moves") {
        return;
    }
    let inj = stress_with(
        Strategy::Move,
        FaultMode::Sigbus,
        vec![
            Rule::new(Call::UffdMove, Errno::EBUSY, Trigger::Random { one_in: 4 }),
            Rule::new(Call::UffdMove, Errno::EAGAIN, Trigger::Random { one_in: 6 }),
            Rule::new(
                Call::UffdMove,
                Errno::ENOMEM,
                Trigger::Random { one_in: 10 },
            ),
        ],
        300,
    );
    assert!(
        inj.injected(Call::UffdMove) > 100,
        "{:?}",
        inj.injected_summary()
    );
}

/// Copy strategy: the dense runs (black objects' fully live pages, updated in place and
/// moved with one `UFFDIO_MOVE`) under every error the layer injects into MOVE: EBUSY (a page
/// shared after fork), EAGAIN with a real partial move, ENOMEM, ENOENT and a false EEXIST. A
/// page the move left behind is copied from its updated old page; nothing is lost or
/// forwarded twice (shadow model, verifier).
#[test]
fn copy_dense_runs_fall_back_on_every_move_error() {
    if !uffd_or_skip("copy_dense_runs_fall_back_on_every_move_error") {
        return;
    }
    let (inj, in_place) = stress_counting(
        Strategy::Copy,
        FaultMode::Sigbus,
        vec![
            Rule::new(Call::UffdMove, Errno::EBUSY, Trigger::Random { one_in: 6 }),
            Rule::again_after(Call::UffdMove, PAGE_SIZE, Trigger::Random { one_in: 6 }),
            Rule::new(Call::UffdMove, Errno::ENOMEM, Trigger::Random { one_in: 8 }),
            Rule::new(Call::UffdMove, Errno::ENOENT, Trigger::Random { one_in: 8 }),
            Rule::new(Call::UffdMove, Errno::EEXIST, Trigger::Random { one_in: 8 }),
        ],
        300,
    );
    assert!(in_place > 0, "no page moved in place");
    assert!(
        inj.injected(Call::UffdMove) > 20,
        "{:?}",
        inj.injected_summary()
    );
}

#[test]
fn minor_retries_continue_errors_with_the_handler_thread() {
    if !uffd_or_skip("minor_retries_continue_errors_with_the_handler_thread") {
        return;
    }
    let inj = stress_with(
        Strategy::Minor,
        FaultMode::Thread,
        vec![
            Rule::new(
                Call::UffdContinue,
                Errno::EAGAIN,
                Trigger::Random { one_in: 5 },
            ),
            Rule::new(
                Call::UffdContinue,
                Errno::ENOMEM,
                Trigger::Random { one_in: 10 },
            ),
            Rule::new(
                Call::UffdContinue,
                Errno::EEXIST,
                Trigger::Random { one_in: 10 },
            ),
        ],
        300,
    );
    assert!(
        inj.injected(Call::UffdContinue) > 100,
        "{:?}",
        inj.injected_summary()
    );
}

#[test]
fn persistent_enomem_fails_allocation_cleanly_and_the_heap_recovers() {
    if !uffd_or_skip("persistent_enomem_fails_allocation_cleanly_and_the_heap_recovers") {
        return;
    }
    let inj = Arc::new(
        FaultInjector::new(
            vec![Rule::new(Call::UffdCopy, Errno::ENOMEM, Trigger::Always)],
            1,
        )
        .disarmed(),
    );
    let heap = Heap::new(
        HeapConfig::with_heap_size(4 << 20).with(|c| c.debug.sys = Sys::new(inj.clone())),
    )
    .unwrap();
    let t = shadow::register(&heap);
    let mut m = heap.attach();
    let keep = m.alloc(t.node, 6).unwrap();
    let root = m.root(keep);
    inj.arm();
    // Allocation needs fresh memory: the kernel refuses, the allocation says so.
    let err = loop {
        match m.alloc(t.blob, 1000) {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, AllocError::Kernel(ref s) if s.contains("ENOMEM")),
        "{err}"
    );
    inj.disarm();
    // Nothing was lost, and allocation works again.
    assert!(root.get(&m).is_some());
    for _ in 0..1000 {
        m.alloc(t.blob, 1000).unwrap();
    }
    m.verify().unwrap();
}

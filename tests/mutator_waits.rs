//! The heap records its mutators' waits by cause (`Heap::mutator_waits`,
//! `Heap::mutator_wait_log`): a mutator parked at a safepoint while another thread collects
//! shows up as a pause (and time to safepoint), an allocating one as allocation stalls, and a
//! mutator touching a page that concurrent compaction has not filled yet as a fault stall
//! (SIGBUS delivery; with a handler thread the fault is only in `fault_stats`).

mod common;
use common::*;
use faultline::{FaultMode, GcMode, Heap, HeapConfig, Strategy, WaitCause};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn a_mutator_parked_while_another_collects_records_a_pause() {
    let heap =
        Heap::new(HeapConfig::with_heap_size(16 << 20).with(|c| c.mode = GcMode::StopTheWorld))
            .unwrap();
    let t = register(&heap);
    let done = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicBool::new(false));
    let poller = {
        let (heap, done, ready) = (heap.clone(), done.clone(), ready.clone());
        std::thread::spawn(move || {
            let mut m = heap.attach();
            ready.store(true, Ordering::SeqCst);
            while !done.load(Ordering::SeqCst) {
                m.safepoint();
            }
        })
    };
    while !ready.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let mut m = heap.attach();
    list(&mut m, &t, 20_000); // live data, so each collection takes a while
    for _ in 0..3 {
        m.collect().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    poller.join().unwrap();
    let w = heap.mutator_waits();
    let pause = w.get(WaitCause::Pause);
    // At least one park: one park may span several collections (the collector can restart the
    // world and stop it again before the parked poller runs; it then stays parked). Below, the
    // log shows that every stop of the world was covered by a parked interval.
    assert!(pause.count >= 1, "{w:?}");
    assert!(
        pause.total > Duration::ZERO && pause.max <= pause.total,
        "{w:?}"
    );
    // 20 000 pairs need many allocation buffers: slow paths were taken and recorded.
    assert!(w.get(WaitCause::AllocStall).count > 0, "{w:?}");
    assert!(w.longest >= pause.max, "{w:?}");
    assert!(w.longest_cause.is_some());
    assert_eq!(
        w.get(WaitCause::FaultStall).count,
        0,
        "no faults in stop-the-world mode"
    );
    assert_eq!(w.mutators, 2);
    // The poller's log holds its parked intervals (each one spans a whole collection).
    let logs = heap.mutator_wait_log();
    let parked: Vec<_> = logs
        .iter()
        .flat_map(|l| l.intervals.iter())
        .filter(|i| i.cause == WaitCause::Pause)
        .collect();
    // Every stop of the world (the three collections, and any the allocation triggered) ended
    // while the poller was parked: some logged park covers the moment the world was released.
    let (stops, _) = heap.pause_timeline();
    assert!(stops.len() >= 3, "{} stops", stops.len());
    for (s, e) in &stops {
        assert!(
            parked.iter().any(|i| i.start <= *e && i.end >= *e),
            "the stop {:?}..{:?} is covered by no parked interval of the poller",
            s,
            e
        );
    }
    // The poller has detached (its thread ended); `m` is still attached.
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert_eq!(logs.iter().filter(|l| l.detached.is_some()).count(), 1);
    for l in &logs {
        if let Some(u) = l.mmu(Duration::from_micros(100), Instant::now()) {
            assert!((0.0..=1.0).contains(&u));
        }
    }
    drop(m);
}

#[test]
fn touching_an_unfilled_page_records_a_fault_stall() {
    if !uffd_or_skip("touching_an_unfilled_page_records_a_fault_stall") {
        return;
    }
    for faults in [FaultMode::Sigbus, FaultMode::Thread] {
        let heap = Heap::new(HeapConfig::with_heap_size(8 << 20).with(|c| {
            c.mode = GcMode::Concurrent;
            c.strategy = Strategy::Copy;
            c.faults = faults;
            c.debug.compaction_delay = Some(Duration::from_millis(500));
        }))
        .unwrap();
        assert_eq!(heap.mode_info().mode, GcMode::Concurrent);
        let t = register(&heap);
        let mut m = heap.attach();
        for _ in 0..5000 {
            m.alloc(t.pair, 0).unwrap(); // garbage below, so the array moves
        }
        let buf = m.alloc(t.string, 6000).unwrap();
        let root = m.root(buf);
        let before = root.value(&m);
        m.start_collection().unwrap();
        // Keep polling (the remark + flip pause needs us) until the flip moved the array; its
        // new pages then stay absent for 500 ms.
        while root.value(&m).bits() == before.bits() {
            m.safepoint();
            std::thread::sleep(Duration::from_micros(200));
        }
        let faults0 = heap.fault_stats().count;
        let mut b = [0u8; 16];
        root.get(&m).unwrap().read_bytes(4000, &mut b); // touches an absent page
                                                        // With handler-thread delivery the handler records the fault after the page is mapped
                                                        // (which is what wakes us): give it the time to do so (bounded: a missing record
                                                        // still fails), rather than race it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while heap.fault_stats().count == faults0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            heap.fault_stats().count > faults0,
            "{faults:?}: no fault taken"
        );
        let w = heap.mutator_waits();
        let stall = w.get(WaitCause::FaultStall);
        match faults {
            FaultMode::Sigbus => {
                assert!(stall.count >= 1, "{w:?}");
                assert!(stall.total > Duration::ZERO && stall.max <= stall.total);
            }
            // The handler thread resolves it; the faulting mutator only sees time.
            _ => assert_eq!(stall.count, 0, "{w:?}"),
        }
        heap.wait_for_compaction();
        drop(root);
        drop(m);
    }
}

/// Allocating mutators that cross the occupancy trigger together, or find the space exhausted,
/// while a concurrent cycle runs never wait for that cycle to end (`cycle-end`): the running
/// cycle satisfies their trigger; they keep allocating into the headroom, or help and wait
/// for its flip. Long cycles (compaction held back 30 ms after each flip) and four mutators
/// make the race at the trigger common.
#[test]
fn allocating_mutators_never_wait_for_a_running_cycle_to_end() {
    let heap = Heap::new(HeapConfig::with_heap_size(8 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.debug.compaction_delay = Some(Duration::from_millis(30));
    }))
    .unwrap();
    if heap.mode_info().mode != GcMode::Concurrent {
        eprintln!("skipped: no concurrent mode here");
        return;
    }
    let t = register(&heap);
    std::thread::scope(|s| {
        for id in 0..4u64 {
            let (heap, t) = (&heap, &t);
            s.spawn(move || {
                let mut m = heap.attach();
                tree(&mut m, t, 12, id);
                for i in 0..600_000u64 {
                    m.alloc(t.pair, 0).unwrap();
                    if i % 1024 == 0 {
                        m.safepoint();
                    }
                }
                assert_eq!(check_tree(&m, m.stack_get(0), 12, id), (1 << 12) - 1);
            });
        }
    });
    heap.wait_for_compaction();
    let cycles = heap.history().len();
    assert!(cycles >= 3, "{cycles} cycles");
    let w = heap.mutator_waits();
    assert_eq!(
        w.get(WaitCause::CycleEnd).count,
        0,
        "{cycles} cycles: {w:?}"
    );
}

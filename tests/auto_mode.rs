//! `Strategy::Auto` and `FaultMode::Auto` choose by measurement (issue 15 item 5): a heap
//! created with both `Auto` records the measured figures in its mode info, the figures are
//! the process's cached measurement ([`faultline::measured_kernel_costs`]), taken once and
//! reused by every later heap, and the choice agrees with them.

use std::time::Instant;

use faultline::testing::heap::{Capability, Probe};
use faultline::{measured_kernel_costs, FaultMode, GcMode, Heap, HeapConfig, Strategy};

fn auto_heap() -> Heap {
    Heap::new(HeapConfig::with_heap_size(2 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = Strategy::Auto;
        c.faults = FaultMode::Auto;
    }))
    .expect("the heap is created")
}

fn line<'a>(reasons: &'a [String], prefix: &str) -> &'a str {
    reasons
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} line in {reasons:#?}"))
}

#[test]
fn auto_records_and_follows_the_measurements_taken_once() {
    let probe = Probe::run();
    let t = Instant::now();
    let first = auto_heap();
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    let info = first.mode_info();
    if info.mode != GcMode::Concurrent || !probe.supports(Capability::Sigbus) {
        eprintln!("concurrent compaction with SIGBUS unavailable here; skipped: {info:?}");
        return;
    }
    let costs = measured_kernel_costs();
    // The delivery: measured, and the pick agrees with the figures.
    let f = costs
        .faults
        .clone()
        .expect("FaultMode::Auto measured")
        .expect("the fault measurement works where SIGBUS does");
    let faults = line(&info.reasons, "faults:");
    assert!(faults.contains("measured"), "{faults}");
    assert!(
        faults.contains(&format!("sigbus {:.0} ns", f.sigbus_ns))
            && faults.contains(&format!("handler thread {:.0} ns", f.thread_ns)),
        "{faults} / {f}"
    );
    let want = if f.thread_over_sigbus() <= 0.8 {
        FaultMode::Thread
    } else {
        FaultMode::Sigbus
    };
    assert_eq!(info.faults, Some(want), "{faults}");
    // The strategy, when move is there to compare against.
    let strategy = line(&info.reasons, "strategy:");
    if probe.supports(Capability::Move) {
        let m = costs
            .mapping
            .clone()
            .expect("Strategy::Auto measured")
            .expect("the mapping measurement works where MOVE does");
        assert!(strategy.contains(&m.to_string()), "{strategy} / {m}");
        let want = if m.move_over_copy() <= 0.8 {
            Strategy::Move
        } else {
            Strategy::Copy
        };
        assert_eq!(info.strategy, Some(want), "{strategy}");
    } else {
        assert!(costs.mapping.is_none(), "{costs:?}");
    }
    // A second heap reuses the measurements: same figures, same reasons.
    let t = Instant::now();
    let second = auto_heap();
    let second_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(measured_kernel_costs(), costs);
    assert_eq!(second.mode_info().reasons, info.reasons);
    eprintln!(
        "heap creation with both Auto: first {first_ms:.1} ms (measures), second {second_ms:.1} ms (cached); {f}; {strategy}"
    );
}

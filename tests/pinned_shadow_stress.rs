//! The shadow-model stress with pins: each mutator pins random reachable objects of its graph
//! (nodes with references and blobs, in the moving space and the large-object space) and
//! drops pins at random, at most four at a time, while collections run every few
//! allocations with the verifier on (and checkmark in concurrent mode); after every
//! collection the graph is compared with its model and every pinned object must be at its
//! pinned address, still itself. Stop-the-world (copy and slide) and concurrent with every
//! strategy x fault delivery and barrier-free marking; 1,000 cycles per mode by default, 100x
//! under `FAULTLINE_STRESS=long`. Objects are pinned wherever they lie: each mode also runs
//! *tall* (100 cycles, 10x under `FAULTLINE_STRESS=long`), collecting only when a half is
//! nearly full, so that pins land at every height of a half, the upper half included (counted
//! and required); and the generational mode (young and full cycles) in both, stop-the-world
//! and concurrent. (Concurrent generational pinned only in the lower half of a half and did
//! not run tall until a young cycle could let an unpinned stranded object leave: an object
//! pinned during a concurrent young cycle from the old generation's half was stranded above
//! the old generation, no full cycle came while it stayed, and the windows climbed above the
//! objects pinned during the young cycles that followed until allocation ran out of memory
//! with every pin dropped; `tests/gen_pins_room.rs` has the focused case, which asserts that
//! such a young cycle ran. Here the young cycles that scanned the whole old generation for
//! unpinned stranded objects (`GenStats::stranded_leave`) and those whose flip let them leave
//! (`PinStats::young_cycles_stranded_left`) are reported and checked against each other: a
//! few in 1,000 cycles of the concurrent runs, not guaranteed by the random scene.)

mod common;
use common::shadow::{self, drive, Shadow};
use common::stress_scale;
use faultline::{
    Barrier, FaultMode, GcMode, Generational, Heap, HeapConfig, Strategy, StwCompaction,
};

/// The heap's size: its halves are as large.
const HEAP: usize = 4 << 20;

fn run(label: &str, config: HeapConfig) {
    run_one(label, config.clone(), false);
    run_one(&format!("{label}/tall"), config, true);
}

fn run_one(label: &str, config: HeapConfig, tall: bool) {
    let heap = Heap::new(config.with(|c| {
        if tall {
            // Collections when a half is about 90 % full: objects lie at every height.
            c.min_trigger_bytes = HEAP / 10 * 9;
        } else {
            c.debug.stress_every = Some(24);
        }
        c.debug.verify = true;
        c.debug.checkmark = true;
    }))
    .unwrap();
    let t = shadow::register(&heap);
    let target = if tall {
        stress_scale(1_000) / 10
    } else {
        stress_scale(1_000)
    };
    let totals: Vec<(u64, u64, u64, u64, u64, u64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2u64)
            .map(|i| {
                let heap = heap.clone();
                s.spawn(move || {
                    let mut m = heap.attach();
                    let mut sh = Shadow::new(&mut m, t, 0x9157 + i * 31, i + 1);
                    sh.pin_every = Some(40);
                    drive(&mut m, &mut sh, target, u64::MAX);
                    (
                        sh.checks,
                        sh.objects_checked,
                        sh.pins_made,
                        sh.pins_high,
                        sh.pins_last_page,
                        sh.oom_pin_drops,
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    heap.wait_for_compaction();
    heap.verify().unwrap();
    let stats = heap.pin_stats();
    assert_eq!(
        stats.pinned_objects, 0,
        "{label}: every pin dropped: {stats:?}"
    );
    assert!(heap.flips() >= target);
    let made: u64 = totals.iter().map(|t| t.2).sum();
    let high: u64 = totals.iter().map(|t| t.3).sum();
    let checks = if tall { 5 } else { 20 };
    assert!(
        totals.iter().all(|&(c, o, ..)| c > checks && o > 200),
        "{label}: {totals:?}"
    );
    assert!(made > 20, "{label}: {totals:?}");
    // Generational: the young cycles that let unpinned stranded objects leave (counted by
    // their flips) began with one and scanned the whole old generation (their records say
    // so), and only young cycles do.
    let history = heap.history();
    let leave_cycles = history.iter().filter(|c| c.gen.stranded_leave).count() as u64;
    assert!(
        history
            .iter()
            .all(|c| !c.gen.stranded_leave || c.gen.young == Some(true)),
        "{label}: only young cycles scan the whole old generation for stranded objects"
    );
    // (The history keeps the last `history_limit` cycles: longer runs compare nothing.)
    let whole = history.len() < heap.config().history_limit.unwrap_or(usize::MAX);
    assert!(
        !whole || stats.young_cycles_stranded_left <= leave_cycles,
        "{label}: {} young cycles let stranded objects leave, {leave_cycles} began to: {stats:?}",
        stats.young_cycles_stranded_left
    );
    if heap.old_generation().is_none() {
        assert_eq!(leave_cycles, 0, "{label}: not generational");
    }
    if tall {
        assert!(high > 0, "{label}: no pin in an upper half: {totals:?}");
    }
    eprintln!(
        "{label}: {} cycles, 2 mutators, {} model checks, {} objects compared, {made} pins made, {high} of them in the upper half of a half, {} on its last page; {} allocations out of room beside pins (pins dropped); {leave_cycles} young cycles scanned the whole old generation for unpinned stranded objects, {} let them leave",
        heap.flips(),
        totals.iter().map(|t| t.0).sum::<u64>(),
        totals.iter().map(|t| t.1).sum::<u64>(),
        totals.iter().map(|t| t.4).sum::<u64>(),
        totals.iter().map(|t| t.5).sum::<u64>(),
        stats.young_cycles_stranded_left,
    );
}

fn base() -> HeapConfig {
    HeapConfig::with_heap_size(HEAP)
}

#[test]
fn pins_in_the_stop_the_world_shadow_stress() {
    run("stw/copy", base().with(|c| c.mode = GcMode::StopTheWorld));
    run(
        "stw/slide",
        base().with(|c| {
            c.mode = GcMode::StopTheWorld;
            c.stw_compaction = StwCompaction::Slide;
        }),
    );
}

#[test]
fn pins_in_the_concurrent_shadow_stress() {
    if !common::uffd_or_skip("pins_in_the_concurrent_shadow_stress") {
        return;
    }
    for strategy in [Strategy::Copy, Strategy::Move, Strategy::Minor] {
        for faults in [FaultMode::Sigbus, FaultMode::Thread] {
            run(
                &format!("{strategy:?}/{faults:?}"),
                base().with(|c| {
                    c.mode = GcMode::Concurrent;
                    c.strategy = strategy;
                    c.faults = faults;
                }),
            );
        }
    }
    run(
        "Copy/Sigbus/wp_async",
        base().with(|c| {
            c.mode = GcMode::Concurrent;
            c.barrier = Barrier::WpAsync;
        }),
    );
}

#[test]
fn pins_in_the_generational_shadow_stress() {
    let gen = |c: &mut HeapConfig| {
        c.generational = Generational::Cards;
        c.min_trigger_bytes = 256 << 10;
        c.old_growth = 0.5;
    };
    // Pins anywhere, and tall: stop-the-world and concurrent.
    run("stw/gen", base().with(gen));
    if !common::uffd_or_skip("pins_in_the_generational_shadow_stress (concurrent)") {
        return;
    }
    for (strategy, faults) in [
        (Strategy::Copy, FaultMode::Sigbus),
        (Strategy::Move, FaultMode::Thread),
        (Strategy::Minor, FaultMode::Sigbus),
    ] {
        run(
            &format!("{strategy:?}/{faults:?}/gen"),
            base().with(gen).with(|c| {
                c.mode = GcMode::Concurrent;
                c.strategy = strategy;
                c.faults = faults;
            }),
        );
    }
}

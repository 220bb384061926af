//! The shadow-model stress with pins: each mutator pins random reachable objects of its graph
//! (nodes with references and blobs, in the moving space and the large-object space) and
//! drops pins at random, at most four at a time, while collections run every few
//! allocations with the verifier on (and checkmark in concurrent mode); after every
//! collection the graph is compared with its model and every pinned object must be at its
//! pinned address, still itself. Stop-the-world (copy and slide) and concurrent with every
//! strategy x fault delivery and barrier-free marking; 1,000 cycles per mode by default, 100x
//! under `FAULTLINE_STRESS=long`; and the generational mode (young and full cycles) in both.

mod common;
use common::shadow::{self, drive, Shadow};
use common::stress_scale;
use faultline::{
    Barrier, FaultMode, GcMode, Generational, Heap, HeapConfig, Strategy, StwCompaction,
};

fn run(label: &str, config: HeapConfig) {
    let heap = Heap::new(config.with(|c| {
        c.debug.stress_every = Some(24);
        c.debug.verify = true;
        c.debug.checkmark = true;
    }))
    .unwrap();
    let t = shadow::register(&heap);
    let target = stress_scale(1_000);
    let totals: Vec<(u64, u64, u64, u64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2u64)
            .map(|i| {
                let heap = heap.clone();
                s.spawn(move || {
                    let mut m = heap.attach();
                    let mut sh = Shadow::new(&mut m, t, 0x9157 + i * 31, i + 1);
                    sh.pin_every = Some(40);
                    drive(&mut m, &mut sh, target, u64::MAX);
                    (sh.checks, sh.objects_checked, sh.pins_made, sh.pins_refused)
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
    assert!(
        totals.iter().all(|&(c, o, _, _)| c > 20 && o > 200),
        "{label}: {totals:?}"
    );
    assert!(made > 20, "{label}: {totals:?}");
    eprintln!(
        "{label}: {} cycles, 2 mutators, {} model checks, {} objects compared, {made} pins made, {} refused (high in a half)",
        heap.flips(),
        totals.iter().map(|t| t.0).sum::<u64>(),
        totals.iter().map(|t| t.1).sum::<u64>(),
        totals.iter().map(|t| t.3).sum::<u64>(),
    );
}

fn base() -> HeapConfig {
    HeapConfig::with_heap_size(4 << 20)
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

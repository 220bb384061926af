//! The per-cycle kernel choreography baseline (`Choreography::PerCycle`): what the Android
//! runtime does each cycle — register only the destination range at the flip, move the old
//! half's pages away with `mremap(MREMAP_DONTUNMAP)` and read them there, unregister and unmap
//! at the end — kept so that the volatile arena's benefit is measured, not asserted.
//!
//! Checked here: it is correct (the four-mutator shadow-model stress, verified, for copy and
//! move with both fault deliveries); it really makes those calls each cycle while the arena
//! makes none; its configuration limits are reported; and a failure of either call leaves the
//! cycle to compact in its pause, losing nothing.

mod common;
use common::shadow::{self, drive, Shadow};
use faultline::testing::heap::inject::{FaultInjector, Rule, Trigger};
use faultline::testing::heap::sys::{Call, Errno, Sys};
use faultline::{
    Barrier, Choreography, ConfigError, FaultMode, GcMode, Heap, HeapConfig, HeapError, Strategy,
};
use std::sync::Arc;

fn config(strategy: Strategy, faults: FaultMode, choreography: Choreography) -> HeapConfig {
    HeapConfig::with_heap_size(2 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = strategy;
        c.faults = faults;
        c.choreography = choreography;
        c.debug.stress_every = Some(24);
        c.debug.verify = true;
    })
}

fn stress(heap: &Heap, cycles: u64) {
    let t = shadow::register(heap);
    std::thread::scope(|s| {
        for i in 0..4u64 {
            let heap = heap.clone();
            s.spawn(move || {
                let mut m = heap.attach();
                let mut sh = Shadow::new(&mut m, t, 0x5eed + i, i + 1);
                drive(&mut m, &mut sh, cycles, u64::MAX);
                assert!(sh.checks > 10);
            });
        }
    });
    heap.wait_for_compaction();
    heap.verify().unwrap();
}

#[test]
fn per_cycle_choreography_passes_the_shadow_stress_and_makes_its_calls_every_cycle() {
    if !common::uffd_or_skip("per_cycle_choreography_passes_the_shadow_stress") {
        return;
    }
    let cycles = common::stress_scale(300);
    for strategy in [Strategy::Copy, Strategy::Move] {
        for faults in [FaultMode::Sigbus, FaultMode::Thread] {
            for choreography in [Choreography::PerCycle, Choreography::Arena] {
                let heap = Heap::new(config(strategy, faults, choreography)).unwrap();
                assert_eq!(heap.mode_info().mode, GcMode::Concurrent);
                stress(&heap, cycles);
                let h = heap.history();
                let flipped: Vec<_> = h
                    .iter()
                    .filter(|c| c.mode == GcMode::Concurrent && c.pages_filled > 0)
                    .collect();
                assert!(flipped.len() as u64 >= cycles, "{} cycles", flipped.len());
                let per = |f: &dyn Fn(&faultline::CycleStats) -> u64| -> u64 {
                    flipped.iter().map(|c| f(c)).sum()
                };
                let regs = per(&|c| c.calls.get(Call::UffdRegister));
                let unregs = per(&|c| c.calls.get(Call::UffdUnregister));
                let mremaps = per(&|c| c.calls.get(Call::Mremap));
                let munmaps = per(&|c| c.calls.get(Call::Munmap));
                let max_vmas = flipped.iter().map(|c| c.vmas.1).max().unwrap();
                eprintln!(
                    "{strategy:?}/{faults:?}/{choreography:?}: {} cycles; register {regs}, unregister {unregs}, mremap {mremaps}, munmap {munmaps}; arena VMAs at creation {}, after a cycle up to {max_vmas}",
                    flipped.len(),
                    flipped[0].vmas.0
                );
                let n = flipped.len() as u64;
                match choreography {
                    Choreography::PerCycle => {
                        assert_eq!((regs, unregs, mremaps, munmaps), (n, n, n, n));
                    }
                    Choreography::Arena => {
                        assert_eq!((regs, unregs, mremaps, munmaps), (0, 0, 0, 0));
                        assert_eq!(max_vmas, flipped[0].vmas.0, "the arena never splits");
                    }
                }
            }
        }
    }
}

#[test]
fn per_cycle_choreography_limits_are_reported() {
    let bad = |c: HeapConfig| match Heap::new(c) {
        Err(HeapError::Config(e)) => e,
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("accepted"),
    };
    let e = bad(
        config(Strategy::Copy, FaultMode::Sigbus, Choreography::PerCycle)
            .with(|c| c.mode = GcMode::StopTheWorld),
    );
    assert!(
        matches!(&e, ConfigError::Invalid(m) if m.contains("mode = Concurrent")),
        "{e}"
    );
    let e = bad(config(
        Strategy::Minor,
        FaultMode::Sigbus,
        Choreography::PerCycle,
    ));
    assert!(
        matches!(&e, ConfigError::Unsupported(m) if m.contains("minor")),
        "{e}"
    );
    let e = bad(
        config(Strategy::Copy, FaultMode::Sigbus, Choreography::PerCycle)
            .with(|c| c.barrier = Barrier::WpAsync),
    );
    assert!(
        matches!(&e, ConfigError::Unsupported(m) if m.contains("wp_async")),
        "{e}"
    );
}

#[test]
fn a_failed_register_or_mremap_compacts_that_cycle_in_its_pause() {
    if !common::uffd_or_skip("a_failed_register_or_mremap_compacts_that_cycle_in_its_pause") {
        return;
    }
    for (call, errno) in [
        (Call::UffdRegister, Errno::ENOMEM),
        (Call::Mremap, Errno::ENOMEM),
        (Call::Mremap, Errno::EFAULT),
    ] {
        let inj = Arc::new(
            FaultInjector::new(
                vec![Rule::new(
                    call,
                    errno,
                    Trigger::Range { start: 3, count: 2 },
                )],
                1,
            )
            .disarmed(),
        );
        let heap = Heap::new(
            config(Strategy::Move, FaultMode::Sigbus, Choreography::PerCycle)
                .with(|c| c.debug.sys = Sys::new(inj.clone())),
        )
        .unwrap();
        inj.arm();
        stress(&heap, 150);
        inj.disarm();
        assert_eq!(inj.injected(call), 2, "{call:?}");
        let h = heap.history();
        let in_pause = h.iter().filter(|c| c.mode == GcMode::StopTheWorld).count();
        let concurrent = h
            .iter()
            .filter(|c| c.mode == GcMode::Concurrent && c.pages_filled > 0)
            .count();
        assert_eq!(
            in_pause, 2,
            "{call:?}: the two failed cycles compacted in their pause"
        );
        assert!(
            concurrent >= 100,
            "{call:?}: later cycles flip again ({concurrent})"
        );
        // A failed mremap unregistered what the cycle had registered: the registrations that
        // succeeded balance the unregistrations.
        let regs: u64 = h.iter().map(|c| c.calls.get(Call::UffdRegister)).sum();
        let unregs: u64 = h.iter().map(|c| c.calls.get(Call::UffdUnregister)).sum();
        let failed_regs = if call == Call::UffdRegister { 2 } else { 0 };
        assert_eq!(regs - failed_regs, unregs, "{call:?}");
    }
}

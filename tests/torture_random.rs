//! Random (seeded) kernel-error injection over every call a concurrent cycle makes, under the
//! multi-threaded shadow-model stress with verification, with a watchdog: if no mutator makes
//! progress for `FAULTLINE_WATCHDOG_SECS` (default 60) the process aborts with a diagnostic, so
//! a hang fails CI instead of hanging it. Short by default (400 cycles, one seed); under
//! `FAULTLINE_STRESS=long` 8,000 cycles for each of four seeds. `FAULTLINE_TORTURE_SEED`
//! replaces the seed list with one seed.
//!
//! The generational variants run the same under both remembered sets (cards, written pages)
//! with a small old-generation limit, so that young and full cycles (and promotions) both
//! meet the injected errors; they assert that both kinds ran.
//!
//! Only errors with a documented recovery are injected (transient EAGAIN/ENOMEM/EINTR, lost
//! races EEXIST, MOVE's EBUSY/ENOENT fallbacks, failed releases and poisoning); the persistent
//! failures and their typed errors are the error-path matrix's subject.

mod common;
use common::shadow::{self, Shadow};
use common::torture::{child_scenario, long, run_child, secs_from_env, Record, Watchdog};
use faultline::testing::heap::inject::{FaultInjector, Rule, Trigger};
use faultline::testing::heap::sys::{Call, Errno, Sys};
use faultline::testing::heap::PAGE_SIZE;
use faultline::{Barrier, FaultMode, GcMode, Generational, Heap, HeapConfig, Strategy};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rules() -> Vec<Rule> {
    let r = |call, errno, one_in| Rule::new(call, errno, Trigger::Random { one_in });
    vec![
        Rule::again_after(Call::UffdCopy, PAGE_SIZE, Trigger::Random { one_in: 9 }),
        r(Call::UffdCopy, Errno::ENOMEM, 17),
        r(Call::UffdCopy, Errno::EEXIST, 23),
        r(Call::UffdMove, Errno::EBUSY, 7),
        r(Call::UffdMove, Errno::ENOENT, 19),
        r(Call::UffdMove, Errno::EAGAIN, 11),
        r(Call::UffdContinue, Errno::EAGAIN, 9),
        r(Call::UffdContinue, Errno::ENOMEM, 17),
        r(Call::UffdPoison, Errno::EINVAL, 5),
        r(Call::UffdWriteprotect, Errno::EAGAIN, 7),
        r(Call::PagemapScan, Errno::EINTR, 7),
        r(Call::Madvise, Errno::EIO, 13),
        r(Call::Fallocate, Errno::EIO, 7),
    ]
}

fn seeds() -> Vec<u64> {
    if let Some(s) = std::env::var("FAULTLINE_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![s];
    }
    if long() {
        (1..=4).map(|i| 0x5eed_0000 + i).collect()
    } else {
        vec![0x5eed_0001]
    }
}

fn torture(name: &str, strategy: Strategy, faults: FaultMode, barrier: Barrier, poison: bool) {
    torture_gen(name, strategy, faults, barrier, poison, Generational::Off);
}

fn torture_gen(
    name: &str,
    strategy: Strategy,
    faults: FaultMode,
    barrier: Barrier,
    poison: bool,
    generational: Generational,
) {
    let t0 = Instant::now();
    let mut rec = Record::default();
    let stall = secs_from_env("FAULTLINE_WATCHDOG_SECS", Duration::from_secs(60));
    for seed in seeds() {
        let inj = Arc::new(FaultInjector::new(rules(), seed).disarmed());
        let heap = Heap::new(HeapConfig::with_heap_size(2 << 20).with(|c| {
            c.mode = GcMode::Concurrent;
            c.strategy = strategy;
            c.faults = faults;
            c.barrier = barrier;
            c.debug.poison_released = poison;
            c.debug.stress_every = Some(24);
            c.debug.verify = true;
            c.debug.checkmark = true;
            c.debug.sys = Sys::new(inj.clone());
            c.generational = generational;
            if generational != Generational::Off {
                // Full cycles every few young ones (as the generational stress).
                c.min_trigger_bytes = 256 << 10;
                c.old_growth = 0.5;
            }
        }))
        .unwrap();
        assert_eq!(heap.mode_info().mode, GcMode::Concurrent);
        assert_eq!(heap.mode_info().generational, generational);
        let t = shadow::register(&heap);
        // 400 cycles per seed; 8,000 under FAULTLINE_STRESS=long.
        let target = if long() { 8_000 } else { 400 };
        let progress = Arc::new(AtomicU64::new(0));
        let _dog = Watchdog::new("torture_random", progress.clone(), stall);
        inj.arm();
        let checks: u64 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..3u64)
                .map(|i| {
                    let heap = heap.clone();
                    let progress = progress.clone();
                    s.spawn(move || {
                        let mut m = heap.attach();
                        let mut sh = Shadow::new(&mut m, t, seed ^ i, i + 1);
                        let mut last = heap.flips();
                        while heap.flips() < target {
                            sh.step(&mut m);
                            progress.fetch_add(1, Ordering::Relaxed);
                            let c = heap.flips();
                            if c != last {
                                sh.check(&m);
                                last = c;
                                if sh.checks.is_multiple_of(500) {
                                    sh.prune();
                                }
                            }
                        }
                        sh.check(&m);
                        sh.checks
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        heap.wait_for_compaction();
        inj.disarm();
        heap.verify().unwrap();
        let injected: u64 = inj.injected_summary().iter().map(|&(_, n)| n).sum();
        assert!(
            injected > 50,
            "seed {seed:#x}: {:?}",
            inj.injected_summary()
        );
        assert!(checks >= target, "seed {seed:#x}: {checks} model checks");
        if generational != Generational::Off {
            let h = heap.history();
            let young = h.iter().filter(|c| c.gen.young == Some(true)).count();
            let full = h.iter().filter(|c| c.gen.young == Some(false)).count();
            let promoted: usize = h.iter().map(|c| c.gen.promoted_bytes).sum();
            assert!(
                young > 0 && full > 0 && promoted > 0,
                "seed {seed:#x}: {young} young, {full} full cycles, {promoted} B promoted"
            );
            eprintln!(
                "{name} seed {seed:#x}: {young} young, {full} full cycles, {promoted} B promoted"
            );
        }
        eprintln!(
            "{name} seed {seed:#x}: {} cycles, {checks} model checks, injected {:?}, releases {:?}",
            heap.flips(),
            inj.injected_summary()
                .iter()
                .map(|&(c, n)| format!("{}={n}", c.name()))
                .collect::<Vec<_>>(),
            heap.release_stats()
        );
        rec.add_heap(&heap);
        rec.add_injector(&inj);
        rec.model_checks += checks;
    }
    rec.duration = t0.elapsed();
    rec.write(name);
}

#[test]
fn random_errors_copy_sigbus() {
    if !common::uffd_or_skip("random_errors_copy_sigbus") {
        return;
    }
    torture(
        "random_copy_sigbus",
        Strategy::Copy,
        FaultMode::Sigbus,
        Barrier::Satb,
        false,
    );
}

#[test]
fn random_errors_move_thread_poisoned() {
    if !common::uffd_or_skip("random_errors_move_thread_poisoned") {
        return;
    }
    torture(
        "random_move_thread_poison",
        Strategy::Move,
        FaultMode::Thread,
        Barrier::Satb,
        true,
    );
}

#[test]
fn random_errors_minor_sigbus() {
    if !common::uffd_or_skip("random_errors_minor_sigbus") {
        return;
    }
    torture(
        "random_minor_sigbus",
        Strategy::Minor,
        FaultMode::Sigbus,
        Barrier::Satb,
        false,
    );
}

#[test]
fn random_errors_wp_async() {
    if !common::uffd_or_skip("random_errors_wp_async") {
        return;
    }
    torture(
        "random_copy_wp_async",
        Strategy::Copy,
        FaultMode::Sigbus,
        Barrier::WpAsync,
        true,
    );
}

#[test]
fn random_errors_gen_cards_copy_sigbus() {
    if !common::uffd_or_skip("random_errors_gen_cards_copy_sigbus") {
        return;
    }
    torture_gen(
        "random_gen_cards_copy_sigbus",
        Strategy::Copy,
        FaultMode::Sigbus,
        Barrier::Satb,
        false,
        Generational::Cards,
    );
}

#[test]
fn random_errors_gen_cards_move_thread_poisoned() {
    if !common::uffd_or_skip("random_errors_gen_cards_move_thread_poisoned") {
        return;
    }
    torture_gen(
        "random_gen_cards_move_thread_poison",
        Strategy::Move,
        FaultMode::Thread,
        Barrier::Satb,
        true,
        Generational::Cards,
    );
}

#[test]
fn random_errors_gen_written_pages_copy_sigbus() {
    if !common::uffd_or_skip("random_errors_gen_written_pages_copy_sigbus") {
        return;
    }
    torture_gen(
        "random_gen_wp_copy_sigbus",
        Strategy::Copy,
        FaultMode::Sigbus,
        Barrier::Satb,
        false,
        Generational::WrittenPages,
    );
}

#[test]
fn random_errors_gen_written_pages_minor_thread_poisoned() {
    if !common::uffd_or_skip("random_errors_gen_written_pages_minor_thread_poisoned") {
        return;
    }
    torture_gen(
        "random_gen_wp_minor_thread_poison",
        Strategy::Minor,
        FaultMode::Thread,
        Barrier::Satb,
        true,
        Generational::WrittenPages,
    );
}

#[test]
fn the_watchdog_turns_a_hang_into_a_failure() {
    if child_scenario().is_some() {
        let progress = Arc::new(AtomicU64::new(0));
        let _dog = Watchdog::new("a stalled child", progress, Duration::from_millis(300));
        std::thread::sleep(Duration::from_secs(30));
        eprintln!("child: the watchdog did not fire");
        std::process::exit(0);
    }
    use std::os::unix::process::ExitStatusExt;
    let t0 = Instant::now();
    let (status, err) = run_child("the_watchdog_turns_a_hang_into_a_failure", "stall");
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}\n{err}");
    assert!(err.contains("a stalled child made no progress"), "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(25),
        "the child was not stopped early"
    );
}

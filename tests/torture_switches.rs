//! The stress switches of `HeapConfig` do what they say, and the suite can fail:
//! - `stress_random`: seeded random collection intervals, reproducible for a seed;
//! - `phase_delay`: sleeps between the phases of a concurrent cycle, and mutators do run into
//!   unfilled pages in the widened windows (under the shadow model and the verifier);
//! - `poison_released`: a deliberately stale read of a released page is caught (it reads the
//!   poison word on plain memory, and dies with SIGBUS on a registered arena, where without
//!   poisoning a handler-thread arena would leave the reader blocked);
//! - `debug_break`: a collector that skips updating references held in large objects is
//!   caught by the verifier (stop-the-world and concurrent) and by the shadow model; the same
//!   scenario without the breakage passes, so the detection is the breakage's.
//!
//! Scenarios that end a process (SIGBUS, abort) run as child processes of this test binary.

mod common;
use common::shadow::{self, drive, Shadow};
use common::torture::{child_scenario, run_child, Record};
use faultline::testing::heap::arena::POISON_WORD;
use faultline::testing::Breakage;
use faultline::{FaultMode, GcMode, Heap, HeapConfig, Strategy, StressRandom, Trigger};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

fn random_run(seed: u64) -> (Vec<usize>, u64, u64) {
    let heap = Heap::new(HeapConfig::with_heap_size(4 << 20).with(|c| {
        c.debug.stress_random = Some(StressRandom { one_in: 50, seed });
        c.debug.verify = true;
    }))
    .unwrap();
    let t = shadow::register(&heap);
    let mut m = heap.attach();
    let mut sh = Shadow::new(&mut m, t, 99, 1);
    drive(&mut m, &mut sh, u64::MAX, 6000);
    let h = heap.history();
    assert!(h
        .iter()
        .all(|c| c.trigger == Trigger::Stress || c.trigger == Trigger::Occupancy));
    (
        h.iter().map(|c| c.moving_before).collect(),
        heap.flips(),
        sh.checks,
    )
}

#[test]
fn random_intervals_are_seeded_and_reproducible() {
    let t0 = Instant::now();
    let (a, cycles, checks) = random_run(1);
    let (b, _, _) = random_run(1);
    let (c, _, _) = random_run(2);
    assert_eq!(a, b, "the same seed gives the same collection points");
    assert_ne!(a, c, "another seed gives other collection points");
    // ~3,300 allocations at one in 50: tens of collections, at irregular intervals.
    assert!((20..=200).contains(&cycles), "{cycles} cycles");
    let gaps: std::collections::HashSet<usize> = a.windows(2).map(|w| w[1] ^ w[0]).collect();
    assert!(gaps.len() > 5, "intervals vary");
    assert!(HeapConfig::default()
        .with(|c| c.debug.stress_random = Some(StressRandom { one_in: 0, seed: 1 }))
        .validate()
        .unwrap_err()
        .to_string()
        .contains("stress_random"));
    let mut r = Record {
        verified_collections: cycles * 3,
        collections: cycles * 3,
        mutator_threads: 1,
        model_checks: checks * 3,
        duration: t0.elapsed(),
        ..Record::default()
    };
    r.notes.insert("one_in".into(), "50".into());
    r.write("switch_random_intervals");
}

#[test]
fn phase_delays_widen_every_concurrent_cycle() {
    if !common::uffd_or_skip("phase_delays_widen_every_concurrent_cycle") {
        return;
    }
    let t0 = Instant::now();
    let delay = Duration::from_millis(5);
    let heap = Heap::new(HeapConfig::with_heap_size(16 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = Strategy::Copy;
        c.faults = FaultMode::Sigbus;
        // No allocation-triggered stress: a mutator that asks for a cycle while one runs waits
        // for it in native state, so with long (delayed) cycles every mutator would sit out the
        // widened windows. A separate thread triggers the cycles instead.
        c.debug.phase_delay = Some(delay);
        c.debug.verify = true;
        c.debug.checkmark = true;
    }))
    .unwrap();
    assert_eq!(heap.mode_info().mode, GcMode::Concurrent);
    let t = shadow::register(&heap);
    let checks: u64 = std::thread::scope(|s| {
        let trigger = heap.clone();
        s.spawn(move || {
            while trigger.flips() < 60 {
                trigger.start_collection().unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let hs: Vec<_> = (0..3u64)
            .map(|i| {
                let heap = heap.clone();
                s.spawn(move || {
                    let mut m = heap.attach();
                    let mut sh = Shadow::new(&mut m, t, 7 + i, i + 1);
                    drive(&mut m, &mut sh, 60, u64::MAX);
                    sh.checks
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    heap.wait_for_compaction();
    heap.verify().unwrap();
    let h = heap.history();
    // Functional, not a timing target: each cycle that compacted slept at least its delays
    // (a cycle with nothing live finishes in its pause and reports the pause alone).
    let compacted: Vec<_> = h.iter().filter(|c| c.pages_filled > 0).collect();
    assert!(
        compacted.len() >= 50,
        "{} cycles compacted",
        compacted.len()
    );
    assert!(
        compacted.iter().all(|c| c.total >= 2 * delay),
        "a cycle skipped its phase delays"
    );
    assert!(
        checks >= 60,
        "the shadow model compared after the cycles: {checks}"
    );
    assert!(
        heap.fault_stats().count > 0,
        "no mutator ran through a widened window into an unfilled page"
    );
    eprintln!(
        "phase delay: {} cycles, {} pages filled, {} by faults, fault stats {:?}",
        h.len(),
        h.iter().map(|c| c.pages_filled).sum::<usize>(),
        h.iter().map(|c| c.pages_by_fault).sum::<u64>(),
        heap.fault_stats()
    );
    let mut r = Record {
        model_checks: checks,
        duration: t0.elapsed(),
        ..Record::default()
    };
    r.add_heap(&heap);
    r.write("switch_phase_delay");
}

/// Allocate a rooted object, collect (it moves), and return its old address.
fn moved_object(heap: &Heap) -> usize {
    let t = shadow::register(heap);
    let mut m = heap.attach();
    let v = m.alloc(t.node, 6).unwrap();
    let old = v.as_ref().unwrap().address();
    let root = m.root(v);
    m.start_collection().unwrap();
    heap.wait_for_compaction();
    let now = root.value(&m);
    assert_ne!(now.as_ref().unwrap().address(), old, "the object moved");
    old
}

#[test]
fn a_stale_read_of_released_memory_is_caught() {
    if let Some(s) = child_scenario() {
        // Child: read a released page of a registered arena; reaching the print is a failure.
        let heap = Heap::new(HeapConfig::with_heap_size(1 << 20).with(|c| {
            c.mode = GcMode::Concurrent;
            c.faults = FaultMode::Thread;
            c.debug.poison_released = s == "poisoned";
        }))
        .unwrap();
        assert!(heap.uses_userfaultfd());
        let old = moved_object(&heap);
        eprintln!("child: reading stale address {old:#x}");
        // SAFETY: deliberately unsound in the way under test: `old` is a released heap page;
        // the read must not complete (poisoned: SIGBUS).
        let w = unsafe { (old as *const u64).read_volatile() };
        eprintln!("child: stale read returned {w:#x}");
        std::process::exit(0);
    }
    let t0 = Instant::now();
    // Plain memory (no userfaultfd): the stale read returns the poison word, not zero.
    // (Compacting into the other half, which is released: a slide would not move the object.)
    for poison in [false, true] {
        let heap = Heap::new(HeapConfig::with_heap_size(1 << 20).with(|c| {
            c.use_userfaultfd = false;
            c.debug.poison_released = poison;
            c.stw_compaction = faultline::StwCompaction::Copy;
        }))
        .unwrap();
        let old = moved_object(&heap);
        // SAFETY: `old` lies in the unregistered arena's released half: plain, mapped,
        // readable memory (zero or the poison pattern), no longer any object's.
        let w = unsafe { (old as *const u64).read_volatile() };
        if poison {
            assert_eq!(w, POISON_WORD, "stale read of poisoned plain memory");
            assert!(heap.release_stats().poisoned_pages > 0);
        } else {
            assert_eq!(
                w, 0,
                "released plain memory reads as zero (nothing to catch)"
            );
        }
        heap.verify().unwrap();
    }
    // Registered arena, handler-thread delivery: poisoned, the read dies with SIGBUS.
    let registered =
        common::uffd_or_skip("a_stale_read_of_released_memory_is_caught (SIGBUS part)");
    if registered {
        let (status, err) = run_child("a_stale_read_of_released_memory_is_caught", "poisoned");
        assert_eq!(
            status.signal(),
            Some(libc::SIGBUS),
            "a stale read of a poisoned page must raise SIGBUS: {status:?}\n{err}"
        );
        assert!(err.contains("reading stale address") && !err.contains("returned"));
    }
    let mut r = Record {
        collections: 3,
        duration: t0.elapsed(),
        ..Record::default()
    };
    r.notes.insert(
        "stale_reads_caught".into(),
        if registered {
            "2 (pattern, SIGBUS)"
        } else {
            "1 (pattern; no userfaultfd here)"
        }
        .into(),
    );
    r.write("switch_poison");
}

/// The verifier alone against concurrent compaction: large objects pointing at small ones,
/// collected repeatedly, with no mutator ever reading a field (the verifier after each cycle,
/// on the GC thread, is the only check).
fn verifier_only_concurrent(broken: bool) {
    let heap = Heap::new(HeapConfig::with_heap_size(2 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.debug.verify = true;
        // SAFETY: a broken run only shows that the verifier catches the stale references; no
        // mutator reads a field of its heap.
        unsafe {
            c.debug
                .set_breakage(broken.then_some(Breakage::SkipLargeObjectRefs))
        };
        // Large objects with references stay in the large-object space, whose reference
        // update the breakage skips.
        c.pin_large_ref_objects = true;
    }))
    .unwrap();
    assert_eq!(heap.mode_info().mode, GcMode::Concurrent);
    let t = shadow::register(&heap);
    let mut m = heap.attach();
    let mut roots = Vec::new();
    for _ in 0..4 {
        let big = m.alloc(t.node, 1100).unwrap();
        let r = m.root(big);
        let small = m.alloc(t.node, 6).unwrap();
        r.get(&m).unwrap().set(2, small);
        roots.push(r);
    }
    for _ in 0..5 {
        for _ in 0..200 {
            m.alloc(t.blob, 100).unwrap();
        }
        m.start_collection().unwrap();
        heap.wait_for_compaction();
    }
    eprintln!(
        "scenario verifier-only: {} cycles, nothing caught",
        heap.flips()
    );
}

/// The broken-collector scenario: the shadow-model stress with `debug_break` set or not.
fn broken_scenario(s: &str) {
    match s {
        "verify-concurrent" => return verifier_only_concurrent(true),
        "control-concurrent" => return verifier_only_concurrent(false),
        _ => {}
    }
    let (mode, verify) = match s {
        "verify-stw" | "control-stw" => (GcMode::StopTheWorld, true),
        "shadow" | "control-shadow" => (GcMode::StopTheWorld, false),
        other => panic!("unknown scenario {other}"),
    };
    let heap = Heap::new(HeapConfig::with_heap_size(2 << 20).with(|c| {
        c.mode = mode;
        c.debug.verify = verify;
        c.debug.stress_every = Some(16);
        // SAFETY: the broken scenarios exist to be caught (by the verifier, or by a mutator's
        // check aborting the child process they run in); the controls run unbroken.
        unsafe {
            c.debug
                .set_breakage((!s.starts_with("control")).then_some(Breakage::SkipLargeObjectRefs))
        };
        c.pin_large_ref_objects = true;
    }))
    .unwrap();
    let t = shadow::register(&heap);
    let mut m = heap.attach();
    let mut sh = Shadow::new(&mut m, t, 0xb0b, 1);
    drive(&mut m, &mut sh, 300, u64::MAX);
    heap.wait_for_compaction();
    heap.verify().unwrap();
    eprintln!(
        "scenario {s}: {} cycles, {} model checks, nothing caught",
        heap.flips(),
        sh.checks
    );
}

#[test]
fn a_broken_collector_is_caught_by_the_verifier_and_the_shadow_model() {
    if let Some(s) = child_scenario() {
        broken_scenario(&s);
        return;
    }
    let t0 = Instant::now();
    let test = "a_broken_collector_is_caught_by_the_verifier_and_the_shadow_model";
    let mut caught = 0;
    let concurrent = common::uffd_or_skip(&format!("{test} (concurrent scenario)"));
    let mut scenarios = vec![
        ("verify-stw", "heap verification failed"),
        ("shadow", "names no object of this heap"),
    ];
    if concurrent {
        scenarios.insert(1, ("verify-concurrent", "heap verification failed"));
    }
    let total = scenarios.len();
    for (scenario, needle) in scenarios {
        let (status, err) = run_child(test, scenario);
        assert!(
            !status.success(),
            "{scenario}: the broken collector was NOT caught\n{err}"
        );
        assert!(
            err.contains(needle),
            "{scenario}: failed, but not by the expected check ({needle:?}):\n{err}"
        );
        caught += 1;
        let (status, err) = run_child(
            test,
            &format!("control-{}", scenario.trim_start_matches("verify-")),
        );
        assert!(status.success(), "control of {scenario} failed:\n{err}");
    }
    let mut r = Record {
        duration: t0.elapsed(),
        ..Record::default()
    };
    r.notes
        .insert("breakages_caught".into(), format!("{caught}/{total}"));
    r.write("broken_collector");
}

//! Soak: several mutator threads churn a fixed-size live set (rings of rooted binary trees and
//! large objects, each replaced at random and checked before it is dropped) for a bounded time,
//! on a concurrent heap whose moving space is about 4x the reachable live set (see [`HEAP`]),
//! with verification of every cycle. The resident set (`/proc/self/statm`) is sampled after
//! every cycle and must not creep: the largest sample of the last quarter of the run may exceed
//! the largest of the first quarter by at most 10% or 4 MiB, whichever is more. The arena's VMA
//! count must stay what it was at creation.
//!
//! Default: 10 s. `FAULTLINE_STRESS=long`: 10 minutes. `FAULTLINE_SOAK_SECS` overrides both.

mod common;
use common::torture::{long, secs_from_env, Record, Watchdog};
use common::{check_tree, tree, Types};
use faultline::{FaultMode, GcMode, Heap, HeapConfig, Mutator, Strategy, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const THREADS: u64 = 3;
/// Trees per thread, and their depth (255 nodes each).
const RING: usize = 48;
const DEPTH: u32 = 8;
/// Large objects per thread (reference arrays of 2,000 slots: 16 KiB).
const LARGE: usize = 4;
/// The moving space (one half of the arena): about 4x the reachable live set (~1.2 MiB). The
/// live size after a concurrent cycle is larger (objects allocated during a cycle survive it)
/// and is reported. Before the allocation path waited for the concurrent cycle it started, this
/// soak failed with OutOfMemory even at 6 MiB.
const HEAP: usize = 5 << 20;

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("statm resident field");
    pages * 4096
}

/// One thread's churn until `deadline`. Stack slots `base..base+RING` hold trees (slot i has
/// id `ids[i]`), then `LARGE` large arrays whose slot 0 holds a tree of their own.
fn churn(m: &mut Mutator, t: &Types, seed: u64, deadline: Instant, progress: &AtomicU64) -> u64 {
    let mut rng = seed | 1;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let base = m.stack_len();
    let mut ids = vec![0u64; RING];
    for (i, id) in ids.iter_mut().enumerate() {
        *id = (seed << 32) | i as u64;
        tree(m, t, DEPTH, *id);
    }
    for _ in 0..LARGE {
        let big = m.alloc(t.vector, 2000).unwrap();
        m.push(big);
    }
    let mut replaced = 0u64;
    let mut fresh = RING as u64;
    while Instant::now() < deadline {
        if next(8) == 0 {
            // Replace a large object's payload tree (a large object holding a moving reference).
            let k = base + RING + next(LARGE as u64) as usize;
            tree(m, t, 4, 7);
            let sub = m.pop().unwrap();
            let big = m.local(m.stack_get(k)).unwrap();
            let old = big.get(0);
            if !old.is_null() {
                assert_eq!(check_tree(m, old, 4, 7), 15);
            }
            big.set(0, sub);
        } else {
            let i = next(RING as u64) as usize;
            let v: Value = m.stack_get(base + i);
            assert_eq!(check_tree(m, v, DEPTH, ids[i]), (1 << DEPTH) - 1);
            fresh += 1;
            ids[i] = (seed << 32) | fresh;
            tree(m, t, DEPTH, ids[i]);
            let v = m.pop().unwrap();
            m.stack_set(base + i, v);
        }
        replaced += 1;
        progress.fetch_add(1, Ordering::Relaxed);
    }
    for (i, &id) in ids.iter().enumerate() {
        assert_eq!(
            check_tree(m, m.stack_get(base + i), DEPTH, id),
            (1 << DEPTH) - 1
        );
    }
    replaced
}

#[test]
fn soak_rss_does_not_creep() {
    if !common::uffd_or_skip("soak_rss_does_not_creep") {
        return;
    }
    let secs = secs_from_env(
        "FAULTLINE_SOAK_SECS",
        Duration::from_secs(if long() { 600 } else { 10 }),
    );
    let samples: Arc<Mutex<Vec<(u64, usize)>>> = Arc::default();
    let s2 = samples.clone();
    // Live set: 3 threads x 48 trees x 255 nodes x 32 bytes ~ 1.2 MiB, plus small trees held by
    // the large objects (the largest `moving_after` of the run is reported).
    let heap = Heap::new(HeapConfig::with_heap_size(HEAP).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = Strategy::Auto;
        c.faults = FaultMode::Auto;
        c.debug.verify = true;
        // Without a limit the cycle history alone grows ~0.5 KiB per cycle: over 10 minutes
        // (~23,000 cycles) the resident set crept from 15 to 24 MiB, which this test caught.
        c.history_limit = Some(1024);
        // The heap is sized for the moving live set above; the large objects live beside it in
        // the large-object space, as this soak was designed.
        c.pin_large_ref_objects = true;
        c.on_cycle = Some(Arc::new(move |c| {
            s2.lock()
                .unwrap()
                .push((rss_bytes(), c.moving_after + c.large_after))
        }));
    }))
    .unwrap();
    assert_eq!(heap.mode_info().mode, GcMode::Concurrent);
    let t = common::register(&heap);
    let t0 = Instant::now();
    let deadline = t0 + secs;
    let progress = Arc::new(AtomicU64::new(0));
    let stall = secs_from_env("FAULTLINE_WATCHDOG_SECS", Duration::from_secs(60));
    let dog = Watchdog::new("soak", progress.clone(), stall);
    let steps: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|i| {
                let heap = heap.clone();
                let t = &t;
                let progress = &progress;
                s.spawn(move || {
                    let mut m = heap.attach();
                    churn(&mut m, t, i + 1, deadline, progress)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    heap.wait_for_compaction();
    drop(dog);
    let rep = heap.verify().unwrap();
    let elapsed = t0.elapsed();
    let h = heap.history();
    let all = samples.lock().unwrap().clone();
    let live_after = all.iter().map(|s| s.1).max().unwrap_or(0);
    let rss: Vec<u64> = all.iter().map(|s| s.0).collect();
    assert!(rss.len() >= 20, "only {} cycles in {elapsed:?}", rss.len());
    let q = rss.len() / 4;
    let first = *rss[..q].iter().max().unwrap();
    let last = *rss[rss.len() - q..].iter().max().unwrap();
    let allowed = first + (first / 10).max(4 << 20);
    eprintln!(
        "soak: {elapsed:?}, {THREADS} threads, {} cycles, {steps} replacements, largest live after a cycle {} KiB (moving space {} KiB), RSS first-quarter max {} KiB, last-quarter max {} KiB (allowed {} KiB), fault stalls {:?}",
        heap.flips(),
        live_after >> 10,
        HEAP >> 10,
        first >> 10,
        last >> 10,
        allowed >> 10,
        heap.fault_stats()
    );
    assert!(
        last <= allowed,
        "RSS crept: first-quarter max {first}, last-quarter max {last}"
    );
    assert!(
        h.iter().all(|c| c.vmas.0 == c.vmas.1),
        "the arena's VMA count changed"
    );
    assert!(rep.objects > 0);
    let mut r = Record {
        model_checks: steps,
        duration: elapsed,
        ..Record::default()
    };
    r.add_heap(&heap);
    r.notes.insert(
        "rss_first_quarter_max_kib".into(),
        (first >> 10).to_string(),
    );
    r.notes
        .insert("rss_last_quarter_max_kib".into(), (last >> 10).to_string());
    r.notes
        .insert("live_max_kib".into(), (live_after >> 10).to_string());
    r.notes.insert("heap_kib".into(), (HEAP >> 10).to_string());
    r.write("soak");
}

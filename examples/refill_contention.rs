//! Refill contention: `THREADS` mutators allocate 64-byte objects at once into one heap, with no
//! collection inside the measured rounds (the occupancy trigger is the whole half; every round
//! starts with an untimed collection that empties the heap). Prints, per round kind, each
//! thread's wall time in its allocations, its own CPU time, the longest single `alloc` call
//! and the number and total time of calls over 2 µs (the refills that waited or made memory
//! present).
//!
//! `cargo run --release --example refill_contention [-- copyzeros] [notime]`: `copyzeros`
//! turns `HeapConfig::recycle_old_half` off (if the build has it); `notime` reads no clock per
//! call (then only wall and CPU time are meaningful).

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use faultline::testing::thread_cpu;
use faultline::{Heap, HeapConfig, TypeInfo};

const HALF: usize = 64 << 20;
const THREADS: usize = 3;
const SIZE: usize = 64;
const ROUNDS: usize = 6;

fn main() {
    let copyzeros = std::env::args().any(|a| a == "copyzeros");
    // `notime`: no clock read per call (the CPU per object is then the allocation's alone).
    let timed = !std::env::args().any(|a| a == "notime");
    let cfg = HeapConfig::with_heap_size(HALF).with(|c| {
        c.min_trigger_bytes = HALF;
    });
    let cfg = set_recycle(cfg, !copyzeros);
    let heap = Heap::new(cfg).expect("heap");
    let ty = heap
        .register_type(TypeInfo::fixed("obj", SIZE - 8, &[]))
        .expect("type");
    let per_thread = (HALF - (4 << 20)) / THREADS / SIZE;
    println!(
        "refill_contention: {THREADS} threads x {per_thread} objects of {SIZE} B per round, {}{} (load: {})",
        if copyzeros { "copyzeros" } else { "default" },
        if timed { "" } else { ", untimed calls" },
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    let mut main_m = heap.attach();
    for round in 0..ROUNDS {
        main_m.collect().expect("collect");
        let barrier = Arc::new(Barrier::new(THREADS));
        let results: Vec<(Duration, Duration, Duration, u64, Duration)> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..THREADS)
                .map(|_| {
                    let heap = heap.clone();
                    let barrier = barrier.clone();
                    s.spawn(move || {
                        let mut m = heap.attach();
                        barrier.wait();
                        let (mut max, mut slow, mut slow_t) =
                            (Duration::ZERO, 0u64, Duration::ZERO);
                        let c0 = thread_cpu();
                        let t0 = Instant::now();
                        for _ in 0..per_thread {
                            if !timed {
                                black_box(m.alloc(ty, 0).expect("alloc"));
                                continue;
                            }
                            let t = Instant::now();
                            black_box(m.alloc(ty, 0).expect("alloc"));
                            let d = t.elapsed();
                            if d > Duration::from_micros(2) {
                                slow += 1;
                                slow_t += d;
                                max = max.max(d);
                            }
                        }
                        (t0.elapsed(), thread_cpu() - c0, max, slow, slow_t)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let wall: Duration = results.iter().map(|r| r.0).sum();
        let cpu: Duration = results.iter().map(|r| r.1).sum();
        let max = results.iter().map(|r| r.2).max().unwrap();
        let slow: u64 = results.iter().map(|r| r.3).sum();
        let slow_t: Duration = results.iter().map(|r| r.4).sum();
        println!(
            "round {round}: wall {:.1} ms, cpu {:.1} ms (sum over threads), slow allocs {slow} / {:.2} ms, longest {:.3} ms, cpu ns per object {:.2}",
            wall.as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e3,
            slow_t.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            cpu.as_nanos() as f64 / (THREADS * per_thread) as f64
        );
    }
}

fn set_recycle(cfg: HeapConfig, on: bool) -> HeapConfig {
    cfg.with(|c| c.recycle_old_half = on)
}

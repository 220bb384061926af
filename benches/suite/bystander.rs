//! The kernel-citizenship probe: a bystander thread of the same process that maps memory and
//! takes page faults while the collector runs, timing every operation.
//!
//! Two operations alternate, each timed on its own:
//! - `map`: `mmap` 4 KiB anonymous, write one byte (first-touch fault), `munmap`: takes the
//!   process's `mmap_lock` for writing twice, so it waits for anybody holding it (a collector
//!   that registers, unregisters or mremaps its heap every cycle does);
//! - `touch`: write one byte to the next page of the bystander's own pre-mapped 2 MiB region
//!   (a first-touch fault, which needs the `mmap_lock` or the VMA lock for reading). When the
//!   region is used up it is released with `MADV_DONTNEED`, untimed.
//!
//! Between two operations the thread sleeps ~50 µs, so it uses little CPU and does not itself
//! slow the workload much. Each sample keeps its time since the run's start, so the report can
//! split samples taken during GC cycles from the others.
//!
//! Invariants: the thread touches only memory it mapped itself; nothing it does is shared with
//! the heap; it stops when `stop` is set and returns all its samples and its own CPU time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which operation a sample timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Map,
    Touch,
}

/// One timed operation.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Nanoseconds from the run's start to the operation's start.
    pub at_ns: u64,
    /// Its latency, nanoseconds.
    pub ns: u64,
    pub op: Op,
}

/// What the bystander returns.
pub struct Outcome {
    pub samples: Vec<Sample>,
    /// The bystander thread's own CPU time, seconds.
    pub cpu_s: f64,
    /// Operations that failed (mmap errors): must be 0.
    pub errors: u64,
}

const REGION: usize = 2 << 20;
const PAGE: usize = 4096;

/// Start the bystander; it runs until `stop` is set, then the handle yields its samples.
pub fn spawn(start: Instant, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Outcome> {
    std::thread::Builder::new()
        .name("bystander".into())
        .spawn(move || run(start, &stop))
        .expect("spawn the bystander thread")
}

fn run(start: Instant, stop: &AtomicBool) -> Outcome {
    let cpu0 = super::metrics::thread_cpu();
    let mut samples = Vec::with_capacity(1 << 16);
    let mut errors = 0;
    // SAFETY: a fresh private anonymous mapping; only this thread uses it.
    let region = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            REGION,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if region == libc::MAP_FAILED {
        return Outcome {
            samples,
            cpu_s: 0.0,
            errors: 1,
        };
    }
    let mut next = 0usize;
    let mut op = Op::Map;
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        match op {
            Op::Map => {
                // SAFETY: a fresh private anonymous page, written once and unmapped; no other
                // reference to it exists.
                let ok = unsafe {
                    let p = libc::mmap(
                        std::ptr::null_mut(),
                        PAGE,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    );
                    if p == libc::MAP_FAILED {
                        false
                    } else {
                        std::ptr::write_volatile(p.cast::<u8>(), 1);
                        libc::munmap(p, PAGE) == 0
                    }
                };
                if !ok {
                    errors += 1;
                }
            }
            Op::Touch => {
                // SAFETY: `next` < REGION: a page of our own live mapping.
                unsafe { std::ptr::write_volatile(region.cast::<u8>().add(next), 1) };
                next += PAGE;
            }
        }
        let t1 = Instant::now();
        samples.push(Sample {
            at_ns: (t0 - start).as_nanos() as u64,
            ns: (t1 - t0).as_nanos() as u64,
            op,
        });
        op = match op {
            Op::Map => Op::Touch,
            Op::Touch => Op::Map,
        };
        if next >= REGION {
            // SAFETY: our own mapping; its contents are not needed.
            unsafe { libc::madvise(region, REGION, libc::MADV_DONTNEED) };
            next = 0;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    // SAFETY: our own mapping, no longer used.
    unsafe { libc::munmap(region, REGION) };
    Outcome {
        samples,
        cpu_s: super::metrics::thread_cpu() - cpu0,
        errors,
    }
}

//! The calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), for the per-phase CPU split of a
//! cycle ([`crate::CpuSplit`]): unlike wall time, it does not grow while the thread waits for
//! a CPU that other processes hold; and its context switches (`getrusage(RUSAGE_THREAD)`), for
//! telling a preempted fault from one that blocked.
//!
//! Invariants: one `clock_gettime` (or `getrusage`) call, which allocates nothing and takes no
//! lock (async-signal-safe); a failure reads as zero CPU time (the split is statistics only)
//! or as no count.

use std::time::Duration;

/// CPU time the calling thread has used since it started.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` that we own, and reads nothing else.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time the calling thread used since `start` (a [`thread_cpu`] reading of this thread).
pub(crate) fn since(start: Duration) -> Duration {
    thread_cpu().saturating_sub(start)
}

/// The calling thread's (involuntary, voluntary) context switches so far
/// (`getrusage(RUSAGE_THREAD)`, a plain system call: async-signal-safe on Linux), or None if
/// the call failed.
pub(crate) fn context_switches() -> Option<(libc::c_long, libc::c_long)> {
    let mut ru = core::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is a writable rusage on this stack.
    let r = unsafe { libc::getrusage(libc::RUSAGE_THREAD, ru.as_mut_ptr()) };
    (r == 0).then(|| {
        // SAFETY: zero-initialised, and filled in on success.
        let ru = unsafe { ru.assume_init() };
        (ru.ru_nivcsw, ru.ru_nvcsw)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_work_costs_cpu_and_sleeping_does_not() {
        let t0 = thread_cpu();
        let mut x = 0u64;
        let w = std::time::Instant::now();
        while w.elapsed() < Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let busy = since(t0);
        assert!(busy > Duration::ZERO, "20 ms of spinning used no CPU");
        let t1 = thread_cpu();
        std::thread::sleep(Duration::from_millis(50));
        // Sleeping 50 ms costs far less than 50 ms of CPU (a wake-up or two).
        assert!(since(t1) < Duration::from_millis(25));
    }
}

//! The background GC threads' scheduling priority ([`crate::HeapConfig::gc_thread_nice`])
//! and time slice ([`crate::HeapConfig::gc_thread_slice_us`]); both off by default.
//!
//! On a machine with few CPUs the concurrent collector's threads (the cycle's GC thread, its
//! helper markers and compaction workers, which inherit the GC thread's priority when it
//! spawns them, and the prefill thread) compete with the mutators for the CPU at the same
//! priority: a mutator that wakes up to serve a request then waits on a run queue behind a
//! marker's time slice. Lowering those threads' priority (a higher nice value) lets a waking
//! mutator run first, while the collector still gets the CPU time the mutators leave, and a
//! weighted share when they leave none; a mutator that outruns a starved collector pays mark
//! or compaction assists at its own priority (see [`crate::pacer`]), so the cycle still
//! reaches its flip.
//!
//! Invariants:
//! - only the calling thread's settings change (Linux keeps a nice value and a slice per
//!   thread; a thread it spawns afterwards inherits them), the nice value only towards a
//!   *lower* priority, which needs no privilege; nothing ever raises it back, so no thread
//!   depends on a privilege that may be missing;
//! - never called from a mutator thread, the fault handler thread (mutators wait on it), or a
//!   signal handler;
//! - the slice changes only the scheduler's preemption decisions, never the thread's share
//!   of the CPU (its weight);
//! - failure is harmless: the thread keeps its settings and the failure is counted
//!   ([`gc_threads_lowered`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// Attempts that failed (`setpriority`, `sched_getattr` or `sched_setattr`).
static FAILURES: AtomicU64 = AtomicU64::new(0);
/// Threads whose priority was lowered.
static LOWERED: AtomicU64 = AtomicU64::new(0);
/// Threads whose time slice was set.
static SLICED: AtomicU64 = AtomicU64::new(0);

/// Lower the calling thread's priority by `steps` nice steps (capped at nice 19); nothing when
/// `steps` is 0. Returns whether the priority is now lowered.
pub(crate) fn lower_this_thread(steps: u8) -> bool {
    if steps == 0 {
        return false;
    }
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
    // getpriority may legitimately return -1: clear errno first and check it after.
    // SAFETY: errno is this thread's own; getpriority reads scheduler state of this thread.
    let now = unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, tid)
    };
    // SAFETY: reading this thread's errno.
    if now == -1 && unsafe { *libc::__errno_location() } != 0 {
        FAILURES.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    let want = (now + steps as libc::c_int).min(19);
    if want <= now {
        return false;
    }
    // SAFETY: setpriority on this thread's own id with a value in [-20, 19]; raising the nice
    // value needs no privilege.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, want) };
    if r == 0 {
        LOWERED.fetch_add(1, Ordering::Relaxed);
        true
    } else {
        FAILURES.fetch_add(1, Ordering::Relaxed);
        false
    }
}

/// Give the calling thread (a normal-policy thread) a scheduler time slice of `us`
/// microseconds (Linux 6.12 and later: `sched_attr.sched_runtime` of a fair task; the kernel
/// clamps it to [0.1 ms, 100 ms]); nothing when `us` is 0. Keeps the thread's policy and nice
/// value. Returns whether the kernel took it.
pub(crate) fn set_slice_this_thread(us: u32) -> bool {
    if us == 0 {
        return false;
    }
    // SAFETY: sched_attr is plain data; all-zero is a valid value.
    let mut a: libc::sched_attr = unsafe { core::mem::zeroed() };
    let size = core::mem::size_of::<libc::sched_attr>() as u32;
    // SAFETY: pid 0 is the calling thread; `a` is a writable sched_attr of `size` bytes.
    let r = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut a as *mut _, size, 0) };
    if r != 0 || a.sched_policy != libc::SCHED_OTHER as u32 {
        FAILURES.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    a.size = size;
    a.sched_flags = 0;
    a.sched_runtime = us as u64 * 1000;
    // SAFETY: pid 0 is the calling thread; `a` is a valid sched_attr (its own policy and nice
    // value, a new slice).
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &a as *const _, 0) };
    if r == 0 {
        SLICED.fetch_add(1, Ordering::Relaxed);
        true
    } else {
        FAILURES.fetch_add(1, Ordering::Relaxed);
        false
    }
}

/// Background GC threads (process-wide, every heap) whose priority was lowered so far
/// ([`crate::HeapConfig::gc_thread_nice`]), whose time slice was set
/// ([`crate::HeapConfig::gc_thread_slice_us`]), and the attempts that failed.
pub fn gc_threads_lowered() -> (u64, u64, u64) {
    (
        LOWERED.load(Ordering::Relaxed),
        SLICED.load(Ordering::Relaxed),
        FAILURES.load(Ordering::Relaxed),
    )
}

/// Apply `config`'s background-thread settings to the calling thread (a background GC thread
/// at its start).
pub(crate) fn enter(config: &crate::HeapConfig) {
    lower_this_thread(config.gc_thread_nice);
    set_slice_this_thread(config.gc_thread_slice_us);
}

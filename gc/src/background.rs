//! The background GC threads' scheduling priority ([`crate::HeapConfig::gc_thread_nice`],
//! [`crate::HeapConfig::gc_thread_boost`]), time slice
//! ([`crate::HeapConfig::gc_thread_slice_us`]), policy ([`crate::HeapConfig::gc_thread_batch`])
//! and yields ([`crate::HeapConfig::prefill_yield_us`], [`Yielder`]).
//!
//! On a machine with few CPUs the concurrent collector's threads (the cycle's GC thread, its
//! helper markers and compaction workers, and the prefill thread) compete with the mutators
//! for the CPU: a mutator that wakes up to serve a request then waits on a run queue behind a
//! marker's time slice. Lowering those threads' priority (a higher nice value) lets a waking
//! mutator run first, while the collector still gets the CPU time the mutators leave, and a
//! weighted share when they leave none; a mutator that outruns a starved collector pays mark
//! or compaction assists at its own priority (see [`crate::pacer`]).
//!
//! A lowered thread that a mutator *waits for* inverts the priorities: the mutator waiting for
//! a flip, for the end of a cycle, in a pause, or for a page a compaction worker claimed then
//! waits behind every other runnable thread. So with [`crate::HeapConfig::gc_thread_boost`]
//! the lowered threads are registered here and *boosted*: while any mutator waits on the
//! collector ([`boost_while_waiting`], held by the waiting thread for the wait), every
//! registered thread runs at the nice value it started with; when the last waiter is done they
//! drop back. Boosting lowers a nice value, which Linux allows only with `CAP_SYS_NICE` or a
//! large enough `RLIMIT_NICE`: without either the threads are not lowered at all in boost mode
//! (no inversion is possible, nothing is gained), and the mode info says so.
//!
//! **Idle mode** ([`crate::HeapConfig::gc_thread_idle`]) uses the same table with policies
//! instead of nice values: a registered thread runs in `SCHED_IDLE` (it gets a CPU only when
//! no other thread wants it, and a waking mutator preempts it at once, where a `SCHED_BATCH`
//! thread keeps the CPU until the next tick) and is boosted back to its normal policy while
//! any mutator waits on the collector or any heap's collector is *behind* its pacer's
//! schedule or its prefill thread behind the refills ([`count_behind`], from a refilling
//! mutator: [`crate::pacer::Pacer::note_schedule`]), or an idle thread is *starved* of the CPU
//! ([`gc_threads_starving`]: runnable at two checks [`STARVE_CHECK`] apart with little CPU
//! time in between, read from `/proc`). Falling behind must boost before anyone waits: an
//! idle marker starves while the mutators keep every CPU busy, an idle prefill thread leaves
//! its work to their refills, and idle compaction workers leave theirs to the mutators'
//! faults, which keep the compaction on schedule while releasing the old half late (at 1 GiB
//! the peak RSS grew by half).
//!
//! Invariants:
//! - a thread lowers only its own priority, and only at its start ([`enter`]) or, for a kept
//!   helper of the GC thread's crew ([`crate::crew`]), to take its caller's nice value for a
//!   part and to put its own back after it (as a helper started for the part would have
//!   inherited it); in boost mode a registered thread's nice value is its `high` value (its
//!   starting one) while [`Registry::waiters`] is non-zero and its `low` value otherwise,
//!   except transiently: every thread that changes a registered thread's priority reads the
//!   waiter count again after its last change and repeats if the count no longer matches what
//!   it applied (so the last writer of any thread's priority has seen the count of that
//!   moment);
//! - a slot's tid is published (SeqCst) only after its `low` / `high` values and its process
//!   id are written, and only threads of the caller's own process are ever changed (a forked
//!   child's copy of the table names its parent's threads, which it leaves alone); a
//!   registered thread unregisters itself before it exits (a crew's helper, after each part),
//!   and [`Registry::unregister`] waits until no boost or drop is under way, so a priority is
//!   never set on a tid that the system may have handed to another thread;
//! - in a forked child the counts of waiting and of busy threads start at zero (the fork
//!   handler, [`reset_in_child`]): the threads that held them do not exist there;
//! - [`boost_while_waiting`] and everything it calls are async-signal-safe (a fault stall in
//!   the SIGBUS handler waits with one): atomics on a static table and `setpriority` or
//!   `sched_setattr` system calls, no allocation, no lock, no panic, `errno` preserved;
//! - never called to *lower* a mutator thread or the fault handler thread (mutators wait on
//!   it; it is never registered);
//! - the slice and the `SCHED_BATCH` policy ([`crate::HeapConfig::gc_thread_batch`]) change
//!   only the scheduler's preemption decisions, never the thread's share of the CPU (its
//!   weight); a thread spawned by a batch thread (a compaction worker, a marker helper)
//!   inherits the policy;
//! - a [`Yielder`] yields only between units of work, never while its thread holds anything
//!   another thread may wait for (a claim, a lock, a fork-gate region), and never in a thread
//!   a mutator waits on: a yield only lets a runnable thread go first, it delays no waiter;
//! - idle mode: a registered thread is in `SCHED_IDLE` only while [`Registry::waiters`] and
//!   [`Registry::behind`] are both zero (settled as the nice levels are), and back in its
//!   normal policy, at its nice value, once it unregisters; each heap adds at most one to
//!   `behind` (its pacer's latch changes it on transitions only, and a dropped pacer takes
//!   its one back); idle mode is used only where [`can_idle`] found that a thread may leave
//!   `SCHED_IDLE` again; a thread started by an idle-mode thread inherits its policy of the
//!   moment and leaves `SCHED_IDLE` when it registers (or, the table full, at once), and
//!   code a hook runs on the GC thread may run in `SCHED_IDLE`;
//! - the starvation check ([`Registry::starving`]) runs on one thread at a time (a
//!   compare-and-swap of its timestamp) and only reads: `/proc` files of registered threads
//!   of this process and the slots' atomics; a slot that another thread (another thread id)
//!   took between two checks is compared only from its next check on;
//! - failure is harmless: a thread keeps its settings and the failure is counted
//!   ([`gc_threads_lowered`], [`gc_thread_boosts`]).

use core::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Attempts that failed (`setpriority`, `sched_getattr` or `sched_setattr`).
static FAILURES: AtomicU64 = AtomicU64::new(0);
/// Threads whose priority was lowered.
static LOWERED: AtomicU64 = AtomicU64::new(0);
/// Threads whose time slice was set.
static SLICED: AtomicU64 = AtomicU64::new(0);
/// Threads put in the `SCHED_BATCH` policy.
static BATCHED: AtomicU64 = AtomicU64::new(0);
/// `sched_yield` calls of [`Yielder`]s.
static YIELDS: AtomicU64 = AtomicU64::new(0);

/// The calling thread's kernel thread id.
pub(crate) fn gettid() -> libc::id_t {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as libc::id_t }
}

/// The start time of a thread of this process (field 22 of `/proc/<task>/stat`, clock ticks
/// since boot), where `task` is `thread-self` or `self/task/<tid>`; `None` if unreadable.
pub(crate) fn thread_start_time(task: &str, tid: libc::id_t) -> Option<u64> {
    stat_fields(task, tid)?
        .split_ascii_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Fields 3.. (the state on) of `/proc/<task>/stat`, where `task` is `thread-self` or
/// `self/task/<tid>`; `None` if unreadable or not thread `tid`'s.
fn stat_fields(task: &str, tid: libc::id_t) -> Option<String> {
    let stat = std::fs::read(format!("/proc/{task}/stat")).ok()?;
    // Field 1 must be `tid`: a `/proc` of another pid namespace names other threads (then
    // nothing is known of the thread, never "another thread's" figures).
    let first = stat.split(|&b| b == b' ').next()?;
    if std::str::from_utf8(first)
        .ok()?
        .parse::<libc::id_t>()
        .ok()?
        != tid
    {
        return None;
    }
    // The command name (field 2) may hold spaces, parentheses and bytes that are not UTF-8:
    // fields 3.. follow the last ')'.
    let close = stat.iter().rposition(|&b| b == b')')?;
    String::from_utf8(stat[close + 1..].to_vec()).ok()
}

/// Whether thread `tid` of this process, which started at `start` (if known, see
/// [`thread_start_time`]), has exited: the kernel no longer knows `tid`, or `tid` now names a
/// later thread (thread ids are reused: `pid_max` is 32768 on many systems). Without `start`, a
/// reused id reads as "alive", the safe answer for its callers.
pub(crate) fn thread_exited(tid: libc::id_t, start: Option<u64>) -> bool {
    // SAFETY: tgkill with signal 0 sends nothing: it only checks that the thread exists in
    // this thread group; errno is read right after the call, on this thread.
    let gone = unsafe {
        libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, 0) == -1
            && *libc::__errno_location() == libc::ESRCH
    };
    // Only a start time read and found different counts: a failed read (out of descriptors,
    // say) must never make a running thread's mutator count as stopped.
    gone || start.is_some_and(|s| {
        thread_start_time(&format!("self/task/{tid}"), tid).is_some_and(|now| now != s)
    })
}

/// The nice value of thread `tid`, or None if it cannot be read. Preserves `errno`.
pub(crate) fn nice_of(tid: libc::id_t) -> Option<i32> {
    // getpriority may legitimately return -1: clear errno first and check it after.
    // SAFETY: errno is this thread's own (saved and restored); getpriority only reads
    // scheduler state.
    unsafe {
        let e = libc::__errno_location();
        let saved = *e;
        *e = 0;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        let failed = now == -1 && *e != 0;
        *e = saved;
        (!failed).then_some(now)
    }
}

/// The calling thread's scheduling settings that a thread it starts inherits: nice value,
/// policy and CPU affinity (not a custom time slice, which a new thread does not inherit; a
/// field that cannot be read is left at its default, so two unreadable settings compare
/// equal).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SchedKey {
    /// Nice value.
    pub nice: Option<i32>,
    policy: u32,
    cpus: [u64; 16],
}

impl SchedKey {
    /// The calling thread's.
    pub(crate) fn mine() -> Self {
        let mut k = SchedKey {
            nice: nice_of(gettid()),
            ..SchedKey::default()
        };
        if let Some(a) = sched_attr_mine() {
            k.policy = a.sched_policy;
        }
        // SAFETY: pid 0 is the calling thread; `cpus` is a writable mask of the size passed.
        unsafe {
            libc::syscall(
                libc::SYS_sched_getaffinity,
                0,
                core::mem::size_of_val(&k.cpus),
                k.cpus.as_mut_ptr(),
            )
        };
        k
    }

    /// Whether a thread started with settings `self` can run work for a caller with settings
    /// `caller` (registered for boosting as `caller_reg` says) as a thread the caller started
    /// would: the same CPUs, the same policy (unless the caller is registered in idle mode:
    /// the registry then sets the policy of the member, which registers for the part as its
    /// caller is), and a nice value no lower than the caller's (a helper takes a caller's
    /// lower, or boost-managed, nice value for a part and goes back up after, which needs no
    /// privilege; going back down would).
    pub(crate) fn serves(&self, caller: &SchedKey, caller_reg: Inherit) -> bool {
        let caller_registered = caller_reg.registered();
        (caller_reg.idle() || self.policy == caller.policy)
            && self.cpus == caller.cpus
            && (caller_registered
                || matches!((self.nice, caller.nice), (Some(mine), Some(theirs)) if theirs <= mine))
    }
}

/// Set thread `tid`'s nice value; whether the kernel took it. Preserves `errno`;
/// async-signal-safe (one system call).
pub(crate) fn set_nice(tid: libc::id_t, nice: i32) -> bool {
    // SAFETY: setpriority on a thread id with a value in [-20, 19]; errno is this thread's
    // own, saved and restored.
    unsafe {
        let e = libc::__errno_location();
        let saved = *e;
        let r = libc::setpriority(libc::PRIO_PROCESS, tid, nice);
        *e = saved;
        r == 0
    }
}

/// Lower the calling thread's priority by `steps` nice steps (capped at nice 19); nothing when
/// `steps` is 0. Returns whether the priority is now lowered.
pub(crate) fn lower_this_thread(steps: u8) -> bool {
    if steps == 0 {
        return false;
    }
    let tid = gettid();
    let Some(now) = nice_of(tid) else {
        FAILURES.fetch_add(1, Ordering::Relaxed);
        return false;
    };
    let want = (now + steps as libc::c_int).min(19);
    if want <= now {
        return false;
    }
    // Raising the nice value needs no privilege.
    if set_nice(tid, want) {
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
    edit_sched_attr(&SLICED, |a| a.sched_runtime = us as u64 * 1000)
}

/// Put the calling thread in the `SCHED_BATCH` policy, keeping its nice value and slice: the
/// fair scheduler then never lets it preempt a running thread when it wakes up (its preemption
/// is left to the tick), while its CPU share is unchanged. Returns whether the kernel took it.
fn batch_this_thread() -> bool {
    edit_sched_attr(&BATCHED, |a| a.sched_policy = libc::SCHED_BATCH as u32)
}

/// The calling thread's `sched_attr`, if it can be read.
fn sched_attr_mine() -> Option<libc::sched_attr> {
    // SAFETY: sched_attr is plain data; all-zero is a valid value.
    let mut a: libc::sched_attr = unsafe { core::mem::zeroed() };
    let size = core::mem::size_of::<libc::sched_attr>() as u32;
    // SAFETY: pid 0 is the calling thread; `a` is a writable sched_attr of `size` bytes.
    let r = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut a as *mut _, size, 0) };
    (r == 0).then_some(a)
}

/// Read the calling thread's `sched_attr`, which must be of the normal policy, apply `edit` to
/// it and set it back; counts a success in `done`, a failure in [`FAILURES`]. Returns whether
/// the kernel took it.
fn edit_sched_attr(done: &AtomicU64, edit: impl FnOnce(&mut libc::sched_attr)) -> bool {
    let Some(mut a) = sched_attr_mine().filter(|a| a.sched_policy == libc::SCHED_OTHER as u32)
    else {
        FAILURES.fetch_add(1, Ordering::Relaxed);
        return false;
    };
    a.size = core::mem::size_of::<libc::sched_attr>() as u32;
    a.sched_flags = 0;
    edit(&mut a);
    // SAFETY: pid 0 is the calling thread; `a` is a valid sched_attr (the thread's own, read
    // above, with `edit`'s slice or policy).
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &a as *const _, 0) };
    if r == 0 {
        done.fetch_add(1, Ordering::Relaxed);
        true
    } else {
        FAILURES.fetch_add(1, Ordering::Relaxed);
        false
    }
}

/// Background GC threads (process-wide, every heap) put in the `SCHED_BATCH` policy so far
/// ([`crate::HeapConfig::gc_thread_batch`]; failures are counted in [`gc_threads_lowered`]).
pub fn gc_threads_batched() -> u64 {
    BATCHED.load(Ordering::Relaxed)
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

/// Yields of background GC threads between units of work so far (process-wide, every heap;
/// [`crate::HeapConfig::prefill_yield_us`]).
pub fn gc_thread_yields() -> u64 {
    YIELDS.load(Ordering::Relaxed)
}

/// A background thread's yields between units of work: [`Yielder::between`] offers the CPU
/// (`sched_yield`) once the thread has worked `every` since its last yield (or since the
/// yielder was made), so a thread that just woke up on its CPU (a mutator serving a request)
/// runs within about one unit of work instead of waiting for the scheduler's next tick (on a
/// kernel with a 4 ms tick, a waking thread often does not preempt a busy one of the same
/// priority before it). A yield costs one system call and returns at once when nobody else
/// is runnable; the thread keeps its priority and its weight.
pub(crate) struct Yielder {
    every: Option<std::time::Duration>,
    since: std::time::Instant,
}

impl Yielder {
    /// Yields after every `us` microseconds of work; never when `us` is 0.
    pub(crate) fn new(us: u32) -> Self {
        Yielder {
            every: (us > 0).then(|| std::time::Duration::from_micros(us as u64)),
            since: std::time::Instant::now(),
        }
    }

    /// The thread finished a unit of work and holds nothing another thread waits for: yield if
    /// it has worked long enough since the last yield. Returns whether it yielded.
    pub(crate) fn between(&mut self) -> bool {
        let Some(every) = self.every else {
            return false;
        };
        if self.since.elapsed() < every {
            return false;
        }
        std::thread::yield_now();
        YIELDS.fetch_add(1, Ordering::Relaxed);
        self.since = std::time::Instant::now();
        true
    }

    /// The thread is about to sleep or park (it stops competing for the CPU anyway): the next
    /// stretch of work counts from when it resumes.
    pub(crate) fn rest(&mut self) {
        self.since = std::time::Instant::now();
    }
}

/// Threads the boost table holds at most (a GC thread that finds it full is not lowered).
const SLOTS: usize = 64;

/// [`Registry::idle`]: the slot's low level is `SCHED_IDLE`.
const IDLE: u32 = 1;
/// [`Registry::idle`]: the slot's boosted policy is `SCHED_BATCH` (else `SCHED_OTHER`).
const IDLE_BATCH: u32 = 2;

/// A registered thread's two levels (see [`Registry`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Level {
    /// Nice value while not boosted (a slot of nice levels).
    low: i32,
    /// Nice value while boosted (and, idle mode, always).
    high: i32,
    /// 0, or [`IDLE`] with [`IDLE_BATCH`] or not (see [`Registry::idle`]).
    idle: u32,
    /// Idle mode: the thread's time slice (0: the kernel's).
    slice_us: u32,
}

/// The boosted policy of an idle-mode slot's `idle` flags.
fn high_policy(idle: u32) -> libc::c_int {
    if idle & IDLE_BATCH != 0 {
        libc::SCHED_BATCH
    } else {
        libc::SCHED_OTHER
    }
}

/// Set thread `tid` (of this process) to `policy` (a fair one: `SCHED_OTHER`, `SCHED_BATCH`
/// or `SCHED_IDLE`) at nice `nice` with a time slice of `slice_us` (0: the kernel's). Returns
/// whether the kernel took it. Preserves `errno`; async-signal-safe (one system call).
pub(crate) fn set_policy(tid: libc::id_t, policy: libc::c_int, nice: i32, slice_us: u32) -> bool {
    // SAFETY: sched_attr is plain data; all-zero is a valid value.
    let mut a: libc::sched_attr = unsafe { core::mem::zeroed() };
    a.size = core::mem::size_of::<libc::sched_attr>() as u32;
    a.sched_policy = policy as u32;
    a.sched_nice = nice;
    a.sched_runtime = slice_us as u64 * 1000;
    // SAFETY: `a` is a valid sched_attr of its size for a fair policy; errno is this thread's
    // own, saved and restored.
    unsafe {
        let e = libc::__errno_location();
        let saved = *e;
        let r = libc::syscall(libc::SYS_sched_setattr, tid, &a as *const _, 0);
        *e = saved;
        r == 0
    }
}

/// Lowered GC threads that a waiting mutator boosts: a fixed table of thread ids with the
/// nice value each runs at when no mutator waits (`low`) and while one does (`high`), and
/// the count of waiting threads. Async-signal-safe to boost and drop (atomics and system
/// calls only). One per process ([`REGISTRY`]); tests make their own.
pub(crate) struct Registry {
    /// 0: free; -1: being filled; otherwise a registered thread's id.
    tids: [AtomicI32; SLOTS],
    low: [AtomicI32; SLOTS],
    high: [AtomicI32; SLOTS],
    /// The process a slot's thread belongs to: a forked child (whose copy of the table names
    /// its parent's threads) never touches them.
    pids: [AtomicI32; SLOTS],
    /// Idle-mode slots ([`crate::HeapConfig::gc_thread_idle`]): 0 for a slot whose level is
    /// its nice value; otherwise [`IDLE`], with [`IDLE_BATCH`] when its boosted policy is
    /// `SCHED_BATCH` (else `SCHED_OTHER`): its low level is `SCHED_IDLE`, its high one that
    /// policy at nice `high`.
    idle: [AtomicU32; SLOTS],
    /// An idle-mode slot's time slice in microseconds (0: the kernel's), set again with every
    /// policy change (a `sched_setattr` without it would clear it).
    slice_us: [AtomicU32; SLOTS],
    /// Threads registered now (a boost with none registered makes no system call).
    registered: AtomicU32,
    /// Threads waiting on the collector now ([`Registry::waiting`]).
    waiters: AtomicU32,
    /// Heaps whose collector is behind its pacer's schedule now ([`Registry::count_behind`]):
    /// registered threads run boosted while any is, as while a thread waits.
    behind: AtomicU32,
    /// Times the behind count left zero.
    behind_boosts: AtomicU64,
    /// Boosts or drops under way (an unregistering thread waits for none).
    busy: AtomicU32,
    /// Times the waiter count left zero (boosts).
    boosts: AtomicU64,
    /// `setpriority` calls of boosts and drops that failed.
    failures: AtomicU64,
    /// Idle mode's starvation check ([`Registry::starving`]): each slot's thread id, its time
    /// on a CPU (ns, from its `schedstat`) and whether it was runnable, at the last check.
    sched_tid: [AtomicI32; SLOTS],
    sched_run: [AtomicU64; SLOTS],
    sched_runnable: [AtomicBool; SLOTS],
    /// When the last starvation check ran (ns, [`starve_clock_ns`]'s clock; 0: never).
    starve_checked: AtomicU64,
    /// The last check's verdict.
    starving: AtomicBool,
}

/// The process's boost table.
static REGISTRY: Registry = Registry::new();

impl Registry {
    pub(crate) const fn new() -> Self {
        Registry {
            tids: [const { AtomicI32::new(0) }; SLOTS],
            low: [const { AtomicI32::new(0) }; SLOTS],
            high: [const { AtomicI32::new(0) }; SLOTS],
            pids: [const { AtomicI32::new(0) }; SLOTS],
            idle: [const { AtomicU32::new(0) }; SLOTS],
            slice_us: [const { AtomicU32::new(0) }; SLOTS],
            registered: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            behind: AtomicU32::new(0),
            behind_boosts: AtomicU64::new(0),
            busy: AtomicU32::new(0),
            boosts: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            sched_tid: [const { AtomicI32::new(0) }; SLOTS],
            sched_run: [const { AtomicU64::new(0) }; SLOTS],
            sched_runnable: [const { AtomicBool::new(false) }; SLOTS],
            starve_checked: AtomicU64::new(0),
            starving: AtomicBool::new(false),
        }
    }

    /// Idle mode: whether a registered idle-mode thread is starved of the CPU: runnable at this
    /// check and at the last one (at least [`STARVE_CHECK`] ago; a call within it returns the
    /// last verdict), with little CPU time in between ([`starved`]). A thread in `SCHED_IDLE`
    /// gets a CPU only when no other thread wants one: with every CPU busy it waits, and its
    /// work falls to the mutators (assists, faults) or to later. Reads each thread's
    /// `/proc/self/task/<tid>/schedstat` and `stat` (never on a signal or fault path).
    /// (The kernel's own run-queue delay, `schedstat`'s second figure, is added only when a
    /// waiting thread runs again: a thread that never runs shows none.)
    fn starving(&self, now_ns: u64) -> bool {
        let last = self.starve_checked.load(Ordering::Relaxed);
        if last != 0 && now_ns.saturating_sub(last) < STARVE_CHECK.as_nanos() as u64
            || self
                .starve_checked
                .compare_exchange(last, now_ns.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return self.starving.load(Ordering::Relaxed);
        }
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let window = now_ns.saturating_sub(last);
        let was = self.starving.load(Ordering::Relaxed);
        let me = gettid() as i32;
        let mut verdict = false;
        for i in 0..SLOTS {
            let tid = self.tids[i].load(Ordering::SeqCst);
            if tid <= 0
                || self.idle[i].load(Ordering::Relaxed) == 0
                || self.pids[i].load(Ordering::Relaxed) != pid
            {
                continue;
            }
            if tid == me {
                // The checking thread is a registered one (the prefill thread): it is on a
                // CPU, so its state reads `R` at every check it makes, and a thread that
                // mostly parks runs little in between: it would judge itself starved at each
                // of its checks and keep the behind latch set with nothing allocating. It is
                // left out, its baseline dropped (the next check by another thread only
                // takes one).
                self.sched_tid[i].store(0, Ordering::Relaxed);
                continue;
            }
            let (Some(run), Some(runnable)) = (schedstat(tid), runnable(tid)) else {
                continue;
            };
            let seen = self.sched_tid[i].swap(tid, Ordering::Relaxed) == tid;
            let run0 = self.sched_run[i].swap(run, Ordering::Relaxed);
            let runnable0 = self.sched_runnable[i].swap(runnable, Ordering::Relaxed);
            verdict |=
                seen && starved(runnable0 && runnable, run.saturating_sub(run0), window, was);
        }
        self.starving.store(verdict, Ordering::Relaxed);
        verdict
    }

    /// Register thread `tid` (the caller itself: it must unregister before it exits) with its
    /// two levels; sets its priority to the level of the moment. Returns its slot, or None if
    /// the table is full.
    fn register_level(&self, tid: libc::id_t, level: Level) -> Option<usize> {
        let Level {
            low,
            high,
            idle,
            slice_us,
        } = level;
        let tid = tid as i32;
        for i in 0..SLOTS {
            if self.tids[i]
                .compare_exchange(0, -1, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                // SAFETY: getpid has no preconditions.
                let pid = unsafe { libc::getpid() };
                self.low[i].store(low, Ordering::Relaxed);
                self.high[i].store(high, Ordering::Relaxed);
                self.pids[i].store(pid, Ordering::Relaxed);
                self.idle[i].store(idle, Ordering::Relaxed);
                self.slice_us[i].store(slice_us, Ordering::Relaxed);
                self.tids[i].store(tid, Ordering::SeqCst);
                self.registered.fetch_add(1, Ordering::SeqCst);
                self.settle(|boosted| self.apply(i, boosted, pid));
                return Some(i);
            }
        }
        None
    }

    /// Unregister `slot` (from the thread that registered it); returns once no boost or drop
    /// that may have read its thread id is under way. The thread keeps its nice value; an
    /// idle-mode thread goes back to its boosted policy (it may run next for a caller that
    /// is not idle-managed: a crew member between parts, a GC thread between jobs).
    pub(crate) fn unregister(&self, slot: usize) {
        let tid = self.tids[slot].swap(0, Ordering::SeqCst);
        self.registered.fetch_sub(1, Ordering::SeqCst);
        while self.busy.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        let idle = self.idle[slot].load(Ordering::Relaxed);
        if idle != 0
            && tid > 0
            && !set_policy(
                tid as libc::id_t,
                high_policy(idle),
                self.high[slot].load(Ordering::Relaxed),
                self.slice_us[slot].load(Ordering::Relaxed),
            )
        {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether registered threads should run boosted now.
    fn boosted(&self) -> bool {
        self.waiters.load(Ordering::SeqCst) > 0 || self.behind.load(Ordering::SeqCst) > 0
    }

    /// A heap's collector fell behind its pacer's schedule (`true`) or is back on it
    /// (`false`); each heap calls it on its transitions only, alternating (see
    /// [`crate::pacer::Pacer::note_schedule`]). Registered threads run boosted while any heap
    /// is behind. Async-signal-safe. (The heaps use its two steps, [`count_behind`] and
    /// [`apply_behind`].)
    #[cfg(test)]
    pub(crate) fn set_behind(&self, behind: bool) {
        if self.count_behind(behind) {
            self.apply_all();
        }
    }

    /// The count of a heap falling behind or back on schedule: whether the count left or reached zero (then
    /// the caller applies the levels, [`Registry::apply_all`], which settles against the count
    /// of that moment whoever applies last).
    fn count_behind(&self, behind: bool) -> bool {
        if behind {
            let first = self.behind.fetch_add(1, Ordering::SeqCst) == 0;
            if first {
                self.behind_boosts.fetch_add(1, Ordering::Relaxed);
            }
            first
        } else {
            self.behind.fetch_sub(1, Ordering::SeqCst) == 1
        }
    }

    /// Run `apply(level)` with the level the waiter count asks for, until the count read after
    /// it still asks for the same (bounded: a count that keeps changing is settled by the
    /// thread that changes it).
    fn settle(&self, apply: impl Fn(bool)) {
        for _ in 0..64 {
            let want = self.boosted();
            apply(want);
            if self.boosted() == want {
                return;
            }
        }
    }

    /// Set slot `i`'s thread to its boosted or its low nice value (nothing for a free slot, or
    /// a thread of another process than `pid`, the caller's).
    fn apply(&self, i: usize, boosted: bool, pid: i32) {
        let tid = self.tids[i].load(Ordering::SeqCst);
        if tid <= 0 || self.pids[i].load(Ordering::Relaxed) != pid {
            return;
        }
        let idle = self.idle[i].load(Ordering::Relaxed);
        let ok = if idle != 0 {
            let policy = if boosted {
                high_policy(idle)
            } else {
                libc::SCHED_IDLE
            };
            let nice = self.high[i].load(Ordering::Relaxed);
            let slice = self.slice_us[i].load(Ordering::Relaxed);
            set_policy(tid as libc::id_t, policy, nice, slice)
        } else {
            let nice = if boosted {
                self.high[i].load(Ordering::Relaxed)
            } else {
                self.low[i].load(Ordering::Relaxed)
            };
            set_nice(tid as libc::id_t, nice)
        };
        if !ok {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Boost or drop every registered thread (settled against the waiter count).
    fn apply_all(&self) {
        self.busy.fetch_add(1, Ordering::SeqCst);
        if self.registered.load(Ordering::SeqCst) > 0 {
            // SAFETY: getpid has no preconditions (and is async-signal-safe).
            let pid = unsafe { libc::getpid() };
            self.settle(|boosted| (0..SLOTS).for_each(|i| self.apply(i, boosted, pid)));
        }
        self.busy.fetch_sub(1, Ordering::SeqCst);
    }

    /// The calling thread waits on the collector until the returned guard is dropped: every
    /// registered thread runs boosted meanwhile. Async-signal-safe.
    pub(crate) fn waiting(&self) -> Boost<'_> {
        if self.waiters.fetch_add(1, Ordering::SeqCst) == 0 {
            self.boosts.fetch_add(1, Ordering::Relaxed);
            self.apply_all();
        }
        Boost(self)
    }

    /// In a forked child (its fork handler, the forking thread the only one): no thread of the
    /// child is inside a boost or a drop, and none holds a [`Boost`] (the forking thread is
    /// in `fork`, never inside a wait on the collector), so the counts the parent's other
    /// threads held at the fork are cleared. A boost or drop under way on another thread at
    /// the fork left `busy` raised for good: every later [`Registry::unregister`] in the
    /// child (a GC thread's at the end of each job, a crew helper's after each part) spun
    /// forever. `behind` stays: each heap's pacer, copied with it, still knows whether it
    /// counted itself. Async-signal-safe (atomic stores).
    pub(crate) fn reset_in_child(&self) {
        self.busy.store(0, Ordering::SeqCst);
        self.waiters.store(0, Ordering::SeqCst);
    }

    /// Times the behind count left zero (boosts for a collector behind its schedule).
    pub(crate) fn behind_boosts(&self) -> u64 {
        self.behind_boosts.load(Ordering::Relaxed)
    }

    /// (boosts so far, threads registered now, failed `setpriority` calls).
    pub(crate) fn stats(&self) -> (u64, u32, u64) {
        (
            self.boosts.load(Ordering::Relaxed),
            self.registered.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}

/// A thread's wait on the collector ([`boost_while_waiting`]): the registered GC threads run
/// boosted until the last such guard is dropped.
#[must_use = "the boost lasts while the guard lives"]
pub(crate) struct Boost<'a>(&'a Registry);

impl Drop for Boost<'_> {
    fn drop(&mut self) {
        if self.0.waiters.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.apply_all();
        }
    }
}

/// The calling thread (a mutator, the fault handler thread, or the GC thread in a pause)
/// waits on the collector until the guard is dropped: the lowered GC threads run at their
/// starting priority meanwhile ([`crate::HeapConfig::gc_thread_boost`]). Cheap when nothing
/// is registered; async-signal-safe.
pub(crate) fn boost_while_waiting() -> Boost<'static> {
    REGISTRY.waiting()
}

/// In a forked child, from its fork handler: clear the boost table's counts of the parent's
/// other threads ([`Registry::reset_in_child`]).
pub(crate) fn reset_in_child() {
    REGISTRY.reset_in_child();
}

/// Boosts so far (the waiting threads' count left zero), GC threads registered for boosting
/// now, and `setpriority` calls of boosts and drops that failed (process-wide, every heap).
pub fn gc_thread_boosts() -> (u64, u32, u64) {
    REGISTRY.stats()
}

thread_local! {
    /// The calling GC thread's registered levels, for the threads it spawns.
    static MINE: Cell<Option<Level>> = const { Cell::new(None) };
}

/// Whether this process may take a thread out of `SCHED_IDLE` again (idle mode needs it):
/// probed once, on a short-lived thread that puts itself in `SCHED_IDLE` and back
/// (`CAP_SYS_NICE`, or an `RLIMIT_NICE` that allows its nice value).
pub(crate) fn can_idle() -> bool {
    static CAN: OnceLock<bool> = OnceLock::new();
    *CAN.get_or_init(|| {
        probe_on_a_thread("faultline-idle-probe", |tid| {
            match (nice_of(tid), sched_attr_mine()) {
                (Some(n), Some(a)) => {
                    let policy = a.sched_policy as libc::c_int;
                    set_policy(tid, libc::SCHED_IDLE, n, 0) && set_policy(tid, policy, n, 0)
                }
                _ => false,
            }
        })
    })
}

/// Run `probe` (given its thread id) on a short-lived thread named `name`, so that what it
/// changes of its own thread's priority dies with that thread; false if the thread could not
/// be started or panicked.
fn probe_on_a_thread(name: &str, probe: fn(libc::id_t) -> bool) -> bool {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || probe(gettid()))
        .ok()
        .and_then(|h| h.join().ok())
        .unwrap_or(false)
}

/// The process-wide idle mode's figures: (boosts because a heap's collector fell behind its
/// schedule or its prefill thread behind the refills, GC threads registered now, heaps
/// behind now).
pub fn gc_thread_idle_stats() -> (u64, u32, u32) {
    (
        REGISTRY.behind_boosts(),
        REGISTRY.stats().1,
        REGISTRY.behind.load(Ordering::SeqCst),
    )
}

/// A heap's collector fell behind its pacer's schedule or is back on it (its transitions
/// only, alternating): idle-mode GC threads run in their normal policy while any heap is
/// behind ([`crate::HeapConfig::gc_thread_idle`]). In two steps: the count (under the caller's lock, so that one heap's raises
/// and drops reach it in order), and, when it returns true, [`apply_behind`] after the lock is
/// released (a GC thread that drops the threads to `SCHED_IDLE` drops itself too: it must
/// hold nothing a mutator may wait for by then).
pub(crate) fn count_behind(behind: bool) -> bool {
    REGISTRY.count_behind(behind)
}

/// Apply the levels after [`count_behind`] changed the count's zeroness.
pub(crate) fn apply_behind() {
    REGISTRY.apply_all();
}

/// Idle mode's starvation check runs at most this often (a thread's CPU time and runnable
/// state are compared over at least this long).
pub(crate) const STARVE_CHECK: Duration = Duration::from_millis(10);

/// Whether an idle-mode thread that was runnable at two checks `window` ns apart
/// (`runnable`) and ran `run` ns in between is starved of the CPU (pure), `was` the last
/// verdict: to become starved it ran at most a quarter of the window (in `SCHED_IDLE` it runs
/// only on a CPU nothing else wants, so busy mutators leave it next to nothing, while
/// mutators that leave CPUs idle part of the time, a burst of requests, leave it more);
/// once starved (back in its normal policy, with a fair share among the mutators) it stays
/// so while it runs at most three quarters of the window, so that the policy does not flip
/// at every check; with more than that, the mutators leave CPUs idle again.
pub(crate) fn starved(runnable: bool, run: u64, window: u64, was: bool) -> bool {
    runnable && run <= if was { window / 4 * 3 } else { window / 4 }
}

/// Nanoseconds since the first call (at least 1): the starvation check's clock.
fn starve_clock_ns() -> u64 {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    let ns = EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos();
    (ns.min(u64::MAX as u128) as u64).max(1)
}

/// Idle mode: whether the registered idle-mode GC threads are starved of the CPU now
/// ([`Registry::starving`], at most one check every [`STARVE_CHECK`] process-wide).
pub(crate) fn gc_threads_starving() -> bool {
    REGISTRY.starving(starve_clock_ns())
}

/// Thread `tid`'s (of this process) time on a CPU in ns, from its `schedstat`; None if it
/// cannot be read (the thread gone, no `/proc`, a kernel without schedstats).
fn schedstat(tid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether thread `tid` (of this process) is runnable (state `R`: running or waiting for a
/// CPU), from its `stat`; None if it cannot be read.
fn runnable(tid: i32) -> Option<bool> {
    let fields = stat_fields(&format!("self/task/{tid}"), tid as libc::id_t)?;
    Some(fields.split_ascii_whitespace().next()? == "R")
}

/// Whether this process may lower a thread's nice value again after raising it (boosting needs
/// it): probed once, on a short-lived thread that raises its own nice value by one and lowers
/// it back (`CAP_SYS_NICE` or a large enough `RLIMIT_NICE`, in whatever namespace).
pub(crate) fn can_boost() -> bool {
    static CAN: OnceLock<bool> = OnceLock::new();
    *CAN.get_or_init(|| {
        probe_on_a_thread("faultline-prio-probe", |tid| match nice_of(tid) {
            Some(n) if n < 19 => set_nice(tid, n + 1) && set_nice(tid, n),
            _ => false,
        })
    })
}

/// A background GC thread's registration for boosting (unregisters when dropped, on the
/// thread itself); empty when the thread is not boosted.
#[must_use = "the thread is unregistered when this is dropped"]
pub(crate) struct GcThread(Option<usize>);

impl Drop for GcThread {
    fn drop(&mut self) {
        if let Some(slot) = self.0 {
            REGISTRY.unregister(slot);
            MINE.with(|m| m.set(None));
        }
    }
}

/// Lower the calling thread and register it for boosting with `level`.
fn register_mine(level: Level) -> GcThread {
    match REGISTRY.register_level(gettid(), level) {
        Some(slot) => {
            LOWERED.fetch_add(1, Ordering::Relaxed);
            MINE.with(|m| m.set(Some(level)));
            GcThread(Some(slot))
        }
        None => {
            // The table is full. A thread spawned by an idle-mode thread in `SCHED_IDLE`
            // inherited that policy: nothing would ever boost it, so it leaves it here.
            if level.idle != 0
                && !set_policy(
                    gettid(),
                    high_policy(level.idle),
                    level.high,
                    level.slice_us,
                )
            {
                FAILURES.fetch_add(1, Ordering::Relaxed);
            }
            GcThread(None)
        }
    }
}

/// What a registered GC thread hands to a thread it spawns ([`inherit`]).
#[derive(Clone, Copy)]
pub(crate) struct Inherit(Option<Level>);

/// Whether the calling thread is registered for boosting (the registry sets its nice value).
pub(crate) fn registered_for_boost() -> bool {
    MINE.with(Cell::get).is_some()
}

/// Called by a background GC thread before it spawns a helper (marker, compaction worker):
/// the spawned thread calls [`Inherit::register`] first thing.
pub(crate) fn inherit() -> Inherit {
    Inherit(MINE.with(Cell::get))
}

impl Inherit {
    /// Whether the spawner is registered for boosting (the spawned thread will be too).
    pub(crate) fn registered(self) -> bool {
        self.0.is_some()
    }

    /// Whether the spawner is registered in idle mode (the registry owns its policy).
    pub(crate) fn idle(self) -> bool {
        self.0.is_some_and(|l| l.idle != 0)
    }

    /// On the spawned thread: register it for boosting as its spawner is (a spawner that is
    /// not registered: nothing; the thread keeps the priority it inherited).
    pub(crate) fn register(self) -> GcThread {
        match self.0 {
            Some(level) => register_mine(level),
            None => GcThread(None),
        }
    }
}

/// Apply `config`'s background-thread settings to the calling thread (a background GC thread
/// at its start). Keep the result until the thread ends.
pub(crate) fn enter(config: &crate::HeapConfig) -> GcThread {
    set_slice_this_thread(config.gc_thread_slice_us);
    if config.gc_thread_batch {
        batch_this_thread();
    }
    if config.gc_thread_idle && can_idle() {
        if let Some(nice) = nice_of(gettid()) {
            let batch = if config.gc_thread_batch {
                IDLE_BATCH
            } else {
                0
            };
            return register_mine(Level {
                low: nice,
                high: nice,
                idle: IDLE | batch,
                slice_us: config.gc_thread_slice_us,
            });
        }
        FAILURES.fetch_add(1, Ordering::Relaxed);
    }
    let steps = config.gc_thread_nice;
    if steps == 0 {
        return GcThread(None);
    }
    if !config.gc_thread_boost {
        lower_this_thread(steps);
        return GcThread(None);
    }
    let Some(high) = nice_of(gettid()) else {
        FAILURES.fetch_add(1, Ordering::Relaxed);
        return GcThread(None);
    };
    let low = (high + steps as i32).min(19);
    if low <= high || !can_boost() {
        return GcThread(None);
    }
    register_mine(Level {
        low,
        high,
        idle: 0,
        slice_us: 0,
    })
}

/// One line for the mode info: the background threads' priority under `config`.
pub(crate) fn describe(config: &crate::HeapConfig) -> String {
    let policy = if config.gc_thread_batch {
        ", SCHED_BATCH (no wakeup preemption of a mutator)"
    } else {
        ""
    };
    format!(
        "{}{policy}{}",
        describe_priority(config),
        describe_raises(config)
    )
}

/// The catch-up raises ([`crate::catchup`]) the mode info names, and whether this process may
/// make them.
fn describe_raises(config: &crate::HeapConfig) -> String {
    let mut raised = Vec::new();
    if config.gc_compact_nice > 0 {
        raised.push(format!(
            "compaction workers nice -{} (gc_compact_nice)",
            config.gc_compact_nice
        ));
    }
    if config.gc_catchup_nice > 0 {
        raised.push(format!(
            "the marker nice -{} while behind (gc_catchup_nice)",
            config.gc_catchup_nice
        ));
    }
    if raised.is_empty()
        || (config.gc_thread_nice > 0 && config.gc_thread_boost)
        || (config.gc_thread_idle && can_idle())
    {
        // Nothing asked for, or every GC thread is registered for boosting, which owns its
        // nice value (the catch-up leaves such a thread alone).
        return String::new();
    }
    let list = raised.join(", ");
    if can_boost() {
        format!("; raised: {list}")
    } else {
        format!("; not raised: {list} (raising needs CAP_SYS_NICE or RLIMIT_NICE)")
    }
}

fn describe_priority(config: &crate::HeapConfig) -> String {
    let n = config.gc_thread_nice;
    if config.gc_thread_idle {
        if can_idle() {
            return "gc threads: SCHED_IDLE while the collector keeps to its schedule, \
                    their normal policy while it (or the prefill thread) is behind or a mutator waits \
                    (gc_thread_idle)"
                .into();
        }
        let rest = describe_priority(&crate::HeapConfig {
            gc_thread_idle: false,
            ..config.clone()
        });
        return format!(
            "{rest}; not idle (gc_thread_idle needs CAP_SYS_NICE or RLIMIT_NICE to take a \
             thread out of SCHED_IDLE)"
        );
    }
    if n == 0 {
        "gc threads: the mutators' priority (gc_thread_nice 0)".into()
    } else if !config.gc_thread_boost {
        format!("gc threads: nice +{n}, fixed (gc_thread_boost off)")
    } else if can_boost() {
        format!("gc threads: nice +{n}, boosted back while a mutator waits (gc_thread_boost)")
    } else {
        format!(
            "gc threads: the mutators' priority (gc_thread_nice {n} asks for boosting, which \
             needs CAP_SYS_NICE or RLIMIT_NICE)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn starvation_is_staying_runnable_with_little_cpu() {
        let ms = |m: u64| m * 1_000_000;
        let w = ms(10);
        assert!(
            !starved(false, 0, w, false),
            "asleep (or woken since the last check)"
        );
        assert!(!starved(false, 0, w, true), "asleep after starving");
        assert!(
            starved(true, ms(1), w, false),
            "SCHED_IDLE behind busy mutators"
        );
        assert!(starved(true, ms(2), w, false), "a fifth of a CPU");
        assert!(
            !starved(true, ms(4), w, false),
            "beside mutators that leave CPUs idle"
        );
        assert!(
            starved(true, ms(5), w, true),
            "a fair share after starving: still starved"
        );
        assert!(!starved(true, ms(8), w, true), "most of a CPU: released");
    }

    #[test]
    fn an_idle_thread_on_a_busy_cpu_is_starved() {
        if !can_idle() {
            eprintln!(
                "SKIPPED: an_idle_thread_on_a_busy_cpu_is_starved: no privilege to take a \
                 thread out of SCHED_IDLE"
            );
            return;
        }
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        static REG: Registry = Registry::new();
        // One CPU of this process's set: the idle thread and two busy ones share it.
        // SAFETY: cpu_set_t is plain data (all-zero is empty); the calls get and set the
        // calling thread's own affinity with a set of its size.
        let cpu = unsafe {
            let mut set: libc::cpu_set_t = core::mem::zeroed();
            assert_eq!(
                libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set),
                0
            );
            (0..libc::CPU_SETSIZE as usize)
                .find(|&c| libc::CPU_ISSET(c, &set))
                .unwrap()
        };
        let pin = move || {
            // SAFETY: as above.
            unsafe {
                let mut set: libc::cpu_set_t = core::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                assert_eq!(
                    libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set),
                    0
                );
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let spin = |stop: Arc<AtomicBool>| {
            let mut x = 0u64;
            while !stop.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        };
        let (tx, rx) = mpsc::channel();
        let idle = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                pin();
                let (tid, slot) = register_idle_here(&REG);
                tx.send(policy_of(tid)).unwrap();
                spin(stop);
                REG.unregister(slot);
            })
        };
        assert_eq!(rx.recv().unwrap(), libc::SCHED_IDLE);
        let busy: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    pin();
                    spin(stop)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(5));
        let t0 = starve_clock_ns();
        assert!(!REG.starving(t0), "the first check only takes its baseline");
        let i = (0..SLOTS)
            .find(|&i| REG.tids[i].load(Ordering::SeqCst) > 0)
            .unwrap();
        let totals = || REG.sched_run[i].load(Ordering::Relaxed);
        let before = totals();
        std::thread::sleep(Duration::from_millis(50));
        let early = REG.starving(t0 + 1);
        let t1 = starve_clock_ns().max(t0 + STARVE_CHECK.as_nanos() as u64);
        let verdict = REG.starving(t1);
        let after = totals();
        stop.store(true, Ordering::Relaxed);
        for b in busy {
            b.join().unwrap();
        }
        idle.join().unwrap();
        assert!(!early, "within the check interval: the last verdict");
        assert!(
            verdict,
            "an idle thread beside two busy ones on CPU {cpu}: over {} ns it ran {} ns",
            t1 - t0,
            after - before
        );
    }

    /// Register the calling thread in `reg` as an idle-mode thread at its own nice value (it
    /// enters `SCHED_IDLE`); returns its id and slot.
    fn register_idle_here(reg: &Registry) -> (libc::id_t, usize) {
        let tid = gettid();
        let n = nice_of(tid).unwrap();
        let level = Level {
            low: n,
            high: n,
            idle: IDLE,
            slice_us: 0,
        };
        (tid, reg.register_level(tid, level).expect("a free slot"))
    }

    #[test]
    fn a_thread_checking_does_not_judge_itself_starved() {
        // A registered idle thread that makes the checks itself, parked in between (the
        // prefill thread between its wake-ups): at each check it is on a CPU (state R), and
        // it ran next to nothing in between. It is not starved: it just ran. (On a thread of
        // its own: registering puts it in SCHED_IDLE.)
        static REG: Registry = Registry::new();
        let verdicts = std::thread::spawn(|| {
            let (_, slot) = register_idle_here(&REG);
            let mut t = starve_clock_ns();
            let mut verdicts = vec![REG.starving(t)];
            for _ in 0..3 {
                std::thread::sleep(Duration::from_millis(30));
                t = starve_clock_ns().max(t + STARVE_CHECK.as_nanos() as u64);
                verdicts.push(REG.starving(t));
            }
            REG.unregister(slot);
            verdicts
        })
        .join()
        .unwrap();
        assert_eq!(verdicts, [false; 4]);
    }

    #[test]
    fn schedstat_reads_a_threads_cpu_time() {
        let tid = gettid() as i32;
        let run0 = schedstat(tid).expect("this thread's schedstat");
        assert_eq!(runnable(tid), Some(true), "running");
        // Spin until 5 ms of CPU time show (at most 10 s: a loaded machine gives less).
        let t = std::time::Instant::now();
        let mut x = 0u64;
        let mut run1 = run0;
        while run1 < run0 + 5_000_000 && t.elapsed() < Duration::from_secs(10) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            run1 = schedstat(tid).unwrap();
        }
        assert!(
            run1 >= run0 + 5_000_000,
            "spinning shows as CPU time: {run0} -> {run1} in {:?}",
            t.elapsed()
        );
        assert_eq!(schedstat(-5), None, "no such thread");
    }

    /// A thread registered in `reg` with nice values (base + 3, base), parked until told to
    /// unregister and exit. Returns its tid, the sender that ends it, and its join handle.
    fn registered_thread(
        reg: &'static Registry,
        base: i32,
    ) -> (
        libc::id_t,
        mpsc::Sender<()>,
        std::thread::JoinHandle<libc::c_int>,
    ) {
        thread_at(reg, move |_| Level {
            low: base + 3,
            high: base,
            idle: 0,
            slice_us: 0,
        })
    }

    /// A thread registered in `reg` with the level `level(its nice value)`, parked until told
    /// to unregister and exit; it returns its policy after unregistering. Returns its tid, the
    /// sender that ends it, and its join handle.
    fn thread_at(
        reg: &'static Registry,
        level: impl FnOnce(i32) -> Level + Send + 'static,
    ) -> (
        libc::id_t,
        mpsc::Sender<()>,
        std::thread::JoinHandle<libc::c_int>,
    ) {
        let (tid_tx, tid_rx) = mpsc::channel();
        let (end_tx, end_rx) = mpsc::channel::<()>();
        let h = std::thread::spawn(move || {
            let tid = gettid();
            let level = level(nice_of(tid).unwrap());
            let slot = reg.register_level(tid, level).expect("a free slot");
            tid_tx.send(tid).unwrap();
            let _ = end_rx.recv();
            reg.unregister(slot);
            policy_of(tid)
        });
        (tid_rx.recv().unwrap(), end_tx, h)
    }

    /// Whether this process may boost ([`can_boost`]); prints the skip notice if not.
    fn boost_here(test: &str) -> bool {
        let ok = can_boost();
        if !ok {
            eprintln!("SKIPPED: {test}: no privilege to raise a lowered thread's priority again");
        }
        ok
    }

    #[test]
    fn a_wait_boosts_registered_threads_and_the_last_one_drops_them() {
        if !can_boost() {
            // Unprivileged: enter() does not lower in boost mode (checked below).
            let c = crate::HeapConfig {
                gc_thread_nice: 5,
                gc_thread_boost: true,
                gc_thread_idle: false,
                ..Default::default()
            };
            let t = std::thread::spawn(move || {
                let g = enter(&c);
                (g.0.is_some(), nice_of(gettid()))
            });
            let (registered, nice) = t.join().unwrap();
            assert!(!registered);
            assert_eq!(nice, nice_of(gettid()));
            return;
        }
        static REG: Registry = Registry::new();
        let base = nice_of(gettid()).unwrap().min(10);
        let (a, end_a, ha) = registered_thread(&REG, base);
        let (b, end_b, hb) = registered_thread(&REG, base);
        assert_eq!(nice_of(a), Some(base + 3), "registered with no waiter: low");
        assert_eq!(nice_of(b), Some(base + 3));
        let w1 = REG.waiting();
        assert_eq!(nice_of(a), Some(base), "boosted while one waits");
        assert_eq!(nice_of(b), Some(base));
        let w2 = REG.waiting();
        drop(w1);
        assert_eq!(nice_of(a), Some(base), "still boosted: one waiter left");
        drop(w2);
        assert_eq!(nice_of(a), Some(base + 3), "dropped after the last waiter");
        assert_eq!(nice_of(b), Some(base + 3));
        // A thread that registers while a wait is under way starts boosted.
        let w3 = REG.waiting();
        let (c, end_c, hc) = registered_thread(&REG, base);
        assert_eq!(nice_of(c), Some(base));
        // An unregistered thread is left alone.
        end_a.send(()).unwrap();
        ha.join().unwrap();
        drop(w3);
        assert_eq!(nice_of(c), Some(base + 3));
        assert_eq!(REG.stats().0, 2, "two boosts");
        assert_eq!(REG.stats().1, 2, "b and c registered");
        assert_eq!(REG.stats().2, 0, "no failed setpriority");
        end_b.send(()).unwrap();
        end_c.send(()).unwrap();
        hb.join().unwrap();
        hc.join().unwrap();
        assert_eq!(REG.stats().1, 0);
    }

    #[test]
    fn waits_from_many_threads_settle_at_the_right_level() {
        if !boost_here("waits_from_many_threads_settle_at_the_right_level") {
            return;
        }
        static REG: Registry = Registry::new();
        let base = nice_of(gettid()).unwrap().min(10);
        let (a, end_a, ha) = registered_thread(&REG, base);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..500 {
                        let _w = REG.waiting();
                    }
                });
            }
        });
        assert_eq!(nice_of(a), Some(base + 3), "no waiter left: low");
        let w = REG.waiting();
        assert_eq!(nice_of(a), Some(base));
        drop(w);
        end_a.send(()).unwrap();
        ha.join().unwrap();
        assert_eq!(REG.stats().2, 0);
    }

    /// A fork while another thread is inside a boost or a drop (`busy` raised, here by hand):
    /// the child's fork handler clears it, so a GC thread of the child unregisters (before,
    /// it spun forever: the thread that would lower `busy` does not exist in the child).
    #[test]
    fn a_child_forked_during_a_boost_can_unregister() {
        // A heap installs the fork handlers.
        let _heap = crate::Heap::new(
            crate::HeapConfig::with_heap_size(1 << 20).mode(crate::GcMode::StopTheWorld),
        )
        .unwrap();
        let tid_nice = nice_of(gettid()).unwrap();
        REGISTRY.busy.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the child touches only the registry's atomics and system calls, then
        // `_exit`s; a watchdog alarm kills it if it spins.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: plain system calls in the child.
            unsafe { libc::alarm(5) };
            let level = Level {
                low: tid_nice,
                high: tid_nice,
                idle: 0,
                slice_us: 0,
            };
            let code = match REGISTRY.register_level(gettid(), level) {
                Some(slot) => {
                    REGISTRY.unregister(slot);
                    0
                }
                None => 2, // The table was full: nothing checked.
            };
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        REGISTRY.busy.fetch_sub(1, Ordering::SeqCst);
        assert!(pid > 0, "fork failed");
        // The child's alarm starts after its fork handlers ran: the parent bounds the wait
        // too, so that a child stuck in a handler fails the test instead of hanging it.
        let mut status = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            // SAFETY: polling our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                break;
            }
            assert_eq!(r, 0, "waitpid");
            if std::time::Instant::now() > deadline {
                // SAFETY: our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("the child hung (in its fork handlers or in unregister)");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child hung in unregister (killed by signal {}) or found the table full \
             (exit {})",
            libc::WTERMSIG(status),
            libc::WEXITSTATUS(status)
        );
    }

    #[test]
    fn threads_of_another_process_are_left_alone() {
        if !boost_here("threads_of_another_process_are_left_alone") {
            return;
        }
        static REG: Registry = Registry::new();
        let base = nice_of(gettid()).unwrap().min(10);
        let (a, end_a, ha) = registered_thread(&REG, base);
        // What a forked child sees: the slot names a thread of its parent.
        let slot = (0..SLOTS)
            .find(|&i| REG.tids[i].load(Ordering::SeqCst) == a as i32)
            .unwrap();
        let mine = REG.pids[slot].swap(1, Ordering::SeqCst);
        let w = REG.waiting();
        assert_eq!(
            nice_of(a),
            Some(base + 3),
            "not this process's thread: untouched"
        );
        drop(w);
        REG.pids[slot].store(mine, Ordering::SeqCst);
        let w = REG.waiting();
        assert_eq!(
            nice_of(a),
            Some(base),
            "this process's thread again: boosted"
        );
        drop(w);
        end_a.send(()).unwrap();
        ha.join().unwrap();
    }

    /// On a new thread: [`enter`] with `c`, `read()` there, then on a thread it spawns that
    /// registers as it ([`inherit`]). Returns (entered registered, in idle mode, the two
    /// readings).
    fn entered_pair<T: Send + 'static>(
        c: crate::HeapConfig,
        read: fn() -> T,
    ) -> (bool, bool, T, T) {
        std::thread::spawn(move || {
            let g = enter(&c);
            let parent = read();
            let inh = inherit();
            let child = std::thread::spawn(move || {
                let _g = inh.register();
                read()
            })
            .join()
            .unwrap();
            (g.0.is_some(), inh.idle(), parent, child)
        })
        .join()
        .unwrap()
    }

    #[test]
    fn spawned_helpers_inherit_the_registration() {
        if !boost_here("spawned_helpers_inherit_the_registration") {
            return;
        }
        let c = crate::HeapConfig {
            gc_thread_nice: 4,
            gc_thread_boost: true,
            gc_thread_idle: false,
            ..Default::default()
        };
        let base = nice_of(gettid()).unwrap();
        let (_, _, parent, child) = entered_pair(c, || nice_of(gettid()));
        // Other tests' heaps may be waiting on the process-wide table: either level is right,
        // both threads at the same one.
        let low = (base + 4).min(19);
        assert!(parent == Some(low) || parent == Some(base), "{parent:?}");
        assert!(child == Some(low) || child == Some(base), "{child:?}");
    }

    #[test]
    fn fixed_lowering_without_boost() {
        let c = crate::HeapConfig {
            gc_thread_nice: 2,
            gc_thread_boost: false,
            gc_thread_idle: false,
            ..Default::default()
        };
        let base = nice_of(gettid()).unwrap();
        let (reg, nice) = std::thread::spawn(move || {
            let g = enter(&c);
            (g.0.is_some(), nice_of(gettid()))
        })
        .join()
        .unwrap();
        assert!(!reg);
        assert_eq!(nice, Some((base + 2).min(19)));
    }

    /// Thread `tid`'s scheduling policy.
    fn policy_of(tid: libc::id_t) -> libc::c_int {
        // SAFETY: sched_getscheduler only reads the thread's policy.
        unsafe { libc::sched_getscheduler(tid as libc::pid_t) }
    }

    /// A thread registered in `reg` in idle mode (boosted policy `SCHED_BATCH`) at its nice
    /// value ([`thread_at`]).
    fn idle_thread(
        reg: &'static Registry,
    ) -> (
        libc::id_t,
        mpsc::Sender<()>,
        std::thread::JoinHandle<libc::c_int>,
    ) {
        thread_at(reg, |nice| Level {
            low: nice,
            high: nice,
            idle: IDLE | IDLE_BATCH,
            slice_us: 0,
        })
    }

    #[test]
    fn idle_threads_leave_sched_idle_while_behind_or_waited_for() {
        if !can_idle() {
            eprintln!(
                "SKIPPED: idle_threads_leave_sched_idle_while_behind_or_waited_for: no \
                 privilege to take a thread out of SCHED_IDLE"
            );
            return;
        }
        static REG: Registry = Registry::new();
        let (a, end_a, ha) = idle_thread(&REG);
        assert_eq!(
            policy_of(a),
            libc::SCHED_IDLE,
            "on schedule, nobody waiting"
        );
        REG.set_behind(true);
        assert_eq!(policy_of(a), libc::SCHED_BATCH, "a heap behind");
        REG.set_behind(true);
        REG.set_behind(false);
        assert_eq!(policy_of(a), libc::SCHED_BATCH, "another heap still behind");
        REG.set_behind(false);
        assert_eq!(policy_of(a), libc::SCHED_IDLE, "no heap behind");
        let w = REG.waiting();
        assert_eq!(policy_of(a), libc::SCHED_BATCH, "a mutator waits");
        // A thread registering while one waits starts in its normal policy.
        let (b, end_b, hb) = idle_thread(&REG);
        assert_eq!(policy_of(b), libc::SCHED_BATCH);
        drop(w);
        assert_eq!(policy_of(a), libc::SCHED_IDLE);
        assert_eq!(policy_of(b), libc::SCHED_IDLE);
        assert_eq!(REG.behind_boosts(), 1);
        assert_eq!(REG.stats().2, 0, "no failed sched_setattr");
        end_a.send(()).unwrap();
        end_b.send(()).unwrap();
        assert_eq!(
            ha.join().unwrap(),
            libc::SCHED_BATCH,
            "unregistered: its normal policy again"
        );
        assert_eq!(hb.join().unwrap(), libc::SCHED_BATCH);
    }

    #[test]
    fn enter_in_idle_mode_registers_and_helpers_inherit() {
        let c = crate::HeapConfig {
            gc_thread_idle: true,
            gc_thread_batch: true,
            ..Default::default()
        };
        let (registered, idle, mine, child) = entered_pair(c, || policy_of(gettid()));
        if !can_idle() {
            assert!(!registered && !idle);
            assert_eq!(mine, libc::SCHED_BATCH, "not idle: the batch policy only");
            return;
        }
        assert!(registered && idle, "registered with the idle-mode level");
        // Another test's heap may be behind (the table is process-wide): either level, the
        // same for both threads unless it changed in between.
        for p in [mine, child] {
            assert!(p == libc::SCHED_IDLE || p == libc::SCHED_BATCH, "{p}");
        }
    }

    #[test]
    fn a_thread_id_that_names_a_later_thread_reads_as_exited() {
        let me = gettid();
        let start = thread_start_time("thread-self", me);
        assert!(start.is_some(), "/proc/thread-self/stat has a start time");
        assert_eq!(thread_start_time(&format!("self/task/{me}"), me), start);
        assert_eq!(
            thread_start_time("thread-self", me + 1),
            None,
            "a stat file of another thread id: unknown"
        );
        assert!(
            !thread_exited(me, start),
            "this thread, its own start time: alive"
        );
        assert!(!thread_exited(me, None), "no start time known: alive");
        assert!(
            thread_exited(me, start.map(|s| s + 1)),
            "another start time: the id names a later thread"
        );
    }

    #[test]
    fn yielder_off_never_yields() {
        let mut y = Yielder::new(0);
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(!y.between());
    }

    #[test]
    fn yielder_yields_after_its_interval_and_counts() {
        // An interval no test run reaches: never.
        let mut long = Yielder::new(u32::MAX);
        assert!(!long.between());
        long.rest();
        assert!(!long.between());
        // A 1 µs interval, passed: yields, counts, and starts the interval again.
        let mut short = Yielder::new(1);
        std::thread::sleep(std::time::Duration::from_millis(1));
        let before = gc_thread_yields();
        assert!(short.between());
        assert!(gc_thread_yields() > before);
        let at = short.since;
        std::thread::sleep(std::time::Duration::from_millis(1));
        assert!(short.between());
        assert!(short.since > at);
    }
}

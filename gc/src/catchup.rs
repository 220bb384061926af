//! Catch-up priority (concurrent mode): the GC threads run some nice steps above the priority
//! they started at while the mutators would otherwise wait for them
//! ([`crate::HeapConfig::gc_catchup_nice`] for marking, [`crate::HeapConfig::gc_compact_nice`]
//! for compaction).
//!
//! - **Marking**: while the markers alone are behind the pacer's schedule
//!   ([`crate::pacer::Pacer::markers_behind`]: what they scanned, without the mutators'
//!   assists, is short of what the allocation so far asks for), the GC thread runs raised; it
//!   drops back as soon as they are on schedule again, and in any case when concurrent
//!   marking ends. (The schedule counting the assists is no signal: the mutators' assists
//!   bring it back on time at every refill, so the marker would find it on time whenever it
//!   looked.)
//! - **Compaction**: a compaction worker runs raised from its start to its end ([`Catchup::
//!   compacting`], by `gc_compact_nice`, off by default: it costs the mutators' longest
//!   waits): from the flip on, every page it has not filled yet is one a mutator may touch,
//!   and then fills itself in a fault.
//!
//! Why: on a machine with few CPUs the GC threads share them with the mutators at the same
//! weight, so three mutators on two CPUs left the marker about a quarter of one CPU; the
//! mutators then did most of the marking as assists, and most of the to-space's pages in
//! faults, and the wall time of both (what a mutator records as waiting on the collector) is
//! mostly preemption: an assist of 0.5 ms of CPU took 5-10 ms. A GC thread that gets the CPU
//! does the same work without a mutator waiting in it. Marking that keeps pace (a light
//! allocator such as a request server) never raises the marker.
//!
//! Invariants:
//! - a GC thread changes only its own nice value, and only between [`Catchup::new`] (or
//!   [`Catchup::compacting`]) and the guard's drop, which sets it back to the value read at
//!   the start (also when unwinding); helper markers spawned while the GC thread is raised
//!   inherit the raised value for their one drain;
//! - the raised value is `start - steps`, never below -20; a thread registered for
//!   [`crate::HeapConfig::gc_thread_boost`] is left alone (the boost registry owns its nice
//!   value);
//! - lowering a nice value needs `CAP_SYS_NICE` or a large enough `RLIMIT_NICE`: a refusal is
//!   harmless (the thread keeps its priority), counted ([`gc_catchup_stats`]), and not retried
//!   by the same guard;
//! - the decision reads only the pacer's atomics ([`crate::pacer::plan_assist`] on them) and
//!   costs one `setpriority` per change of state, checked every [`CHECK_EVERY`] objects traced.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::background::{gettid, nice_of, registered_for_boost, set_nice};
use crate::pacer::Pacer;

/// The GC thread looks at the schedule after tracing this many objects.
pub(crate) const CHECK_EVERY: usize = 1024;

/// Times a GC thread raised its priority to catch up.
static RAISES: AtomicU64 = AtomicU64::new(0);
/// Raises the kernel refused (no privilege).
static REFUSED: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds GC threads spent raised.
static RAISED_NS: AtomicU64 = AtomicU64::new(0);

/// Process-wide catch-up counters: (raises, raises refused, total time raised in ns).
pub fn gc_catchup_stats() -> (u64, u64, u64) {
    (
        RAISES.load(Ordering::Relaxed),
        REFUSED.load(Ordering::Relaxed),
        RAISED_NS.load(Ordering::Relaxed),
    )
}

/// The nice value a thread that started at `start` should run at (pure): `steps` higher
/// priority while marking is `behind`, within the kernel's range.
pub(crate) fn target(start: i32, steps: u8, behind: bool) -> i32 {
    if behind {
        (start - i32::from(steps)).max(-20)
    } else {
        start
    }
}

/// A GC thread's catch-up state for one concurrent mark or one compaction worker (see the
/// module invariants).
pub(crate) struct Catchup {
    tid: libc::id_t,
    start: i32,
    steps: u8,
    /// When the thread was raised (None: at its starting value).
    raised: Option<Instant>,
    /// Off: `steps` is 0, the value could not be read, the thread is boost-registered, or the
    /// kernel refused a raise.
    off: bool,
}

impl Catchup {
    /// On a GC thread, before concurrent marking: remember its nice value.
    pub(crate) fn new(steps: u8) -> Self {
        let tid = gettid();
        let start = if steps == 0 || registered_for_boost() {
            None
        } else {
            nice_of(tid)
        };
        let off = start.is_none_or(|s| target(s, steps, true) == s);
        Catchup {
            tid,
            start: start.unwrap_or(0),
            steps,
            raised: None,
            off,
        }
    }

    /// On a compaction worker, at its start: raised until the guard drops.
    pub(crate) fn compacting(steps: u8) -> Self {
        let mut c = Catchup::new(steps);
        c.update(true);
        c
    }

    /// Whether the thread runs raised now.
    #[cfg(test)]
    pub(crate) fn raised(&self) -> bool {
        self.raised.is_some()
    }

    /// Raise or drop the thread for `behind`.
    pub(crate) fn update(&mut self, behind: bool) {
        if self.off || behind == self.raised.is_some() {
            return;
        }
        if behind {
            if set_nice(self.tid, target(self.start, self.steps, true)) {
                RAISES.fetch_add(1, Ordering::Relaxed);
                self.raised = Some(Instant::now());
            } else {
                REFUSED.fetch_add(1, Ordering::Relaxed);
                self.off = true;
            }
        } else {
            self.drop_back();
        }
    }

    /// Look at the pacer's schedule and raise or drop accordingly.
    pub(crate) fn check(&mut self, pacer: &Pacer) {
        if !self.off {
            self.update(pacer.markers_behind());
        }
    }

    fn drop_back(&mut self) {
        if let Some(t) = self.raised.take() {
            // Raising a nice value back to where it was needs no privilege.
            set_nice(self.tid, self.start);
            let ns = t.elapsed().as_nanos().min(u64::MAX as u128) as u64;
            RAISED_NS.fetch_add(ns, Ordering::Relaxed);
        }
    }
}

impl Drop for Catchup {
    fn drop(&mut self) {
        self.drop_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MIB: usize = 1 << 20;

    #[test]
    fn the_target_is_higher_priority_only_while_behind() {
        assert_eq!(target(0, 10, false), 0);
        assert_eq!(target(0, 10, true), -10);
        assert_eq!(target(5, 3, true), 2);
        assert_eq!(target(-15, 10, true), -20);
    }

    /// Run `f` on a fresh thread (its nice value is its own) and return what it returns.
    fn on_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().expect("the test thread")
    }

    #[test]
    fn the_gc_thread_is_raised_while_the_pacer_says_behind_and_dropped_after() {
        let (start, behind, assisted, on_time, after, privileged) = on_thread(|| {
            let tid = gettid();
            let start = nice_of(tid).expect("nice");
            // Whether this process may lower a nice value below where it started.
            let privileged = set_nice(tid, start - 1) && set_nice(tid, start);
            let p = Pacer::default();
            // First cycle: 8 MiB of mark work expected, marking due by 16 MiB allocated.
            p.begin_cycle(16 * MIB, 20 * MIB);
            let mut c = Catchup::new(4);
            c.check(&p);
            assert!(!c.raised(), "on schedule at the start");
            // A quarter of the deadline allocated, nothing scanned: behind.
            p.note_alloc(4 * MIB);
            c.check(&p);
            let behind = nice_of(tid).unwrap();
            // Assists scanned up to the schedule: the markers alone are still behind.
            p.note_scanned(2 * MIB);
            p.note_assist(Duration::from_micros(500), 2 * MIB);
            assert!(p.assist_plan().is_none());
            c.check(&p);
            let assisted = nice_of(tid).unwrap();
            // The markers scanned up to the schedule themselves: on time again.
            p.note_scanned(2 * MIB);
            assert!(!p.markers_behind());
            c.check(&p);
            let on_time = nice_of(tid).unwrap();
            // Behind again, then the guard ends with marking.
            p.note_alloc(4 * MIB);
            c.check(&p);
            drop(c);
            (
                start,
                behind,
                assisted,
                on_time,
                nice_of(tid).unwrap(),
                privileged,
            )
        });
        if !privileged {
            assert_eq!(assisted, start);
        }
        if privileged {
            assert_eq!(behind, start - 4);
            assert_eq!(
                assisted,
                start - 4,
                "assists do not make the markers on time"
            );
        } else {
            println!("SKIPPED: raising a nice value needs CAP_SYS_NICE or RLIMIT_NICE");
            assert_eq!(behind, start, "a refused raise leaves the priority alone");
        }
        assert_eq!(on_time, start);
        assert_eq!(after, start);
    }

    #[test]
    fn a_compaction_worker_is_raised_until_it_ends() {
        let (start, during, after, privileged) = on_thread(|| {
            let tid = gettid();
            let start = nice_of(tid).expect("nice");
            let privileged = set_nice(tid, start - 1) && set_nice(tid, start);
            let c = Catchup::compacting(3);
            let during = nice_of(tid).unwrap();
            drop(c);
            (start, during, nice_of(tid).unwrap(), privileged)
        });
        if privileged {
            assert_eq!(during, start - 3);
        } else {
            println!("SKIPPED: raising a nice value needs CAP_SYS_NICE or RLIMIT_NICE");
            assert_eq!(during, start);
        }
        assert_eq!(after, start);
    }

    #[test]
    fn no_steps_no_change() {
        let (start, now) = on_thread(|| {
            let tid = gettid();
            let start = nice_of(tid).unwrap();
            let mut c = Catchup::new(0);
            c.update(true);
            assert!(!c.raised());
            (start, nice_of(tid).unwrap())
        });
        assert_eq!(start, now);
    }
}

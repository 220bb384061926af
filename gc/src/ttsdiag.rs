//! Time-to-safepoint diagnostics (`FAULTLINE_TTS_DIAG=1` in the environment): where each stop
//! of the world's time to safepoint and its release go, per mutator, from the kernel's
//! per-thread scheduler statistics (`/proc/self/task/<tid>/schedstat`: time on a CPU,
//! time runnable on a run queue).
//!
//! - At the stop request the stopping thread reads every running mutator's counters
//!   ([`Probe::at_request`]); at its arrival (park or native entry) the mutator reads its own
//!   ([`Probe::at_arrival`]): the difference splits its time to safepoint into *on a CPU*
//!   (running code without reaching a poll), *runnable* (preempted) and the rest (blocked).
//! - After the release each parked mutator reports how long it took to run again after the
//!   stopping thread's `resume` and how much of that it spent runnable (one stderr line).
//!
//! Invariants: off (one relaxed load of a cached flag per stop, park and release) unless the
//! variable is set at the first check; when on, the reads (a file open and read each) run
//! inside the time to safepoint they measure and stretch it by a few microseconds per
//! mutator, so it is for attribution, never for the headline figures. Nothing here runs in a
//! signal handler; the counters are plain atomics written by one thread and read by the
//! stopping thread under the safepoint lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Whether the diagnostics are on.
pub(crate) fn on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FAULTLINE_TTS_DIAG").is_some_and(|v| v != "0"))
}

/// (ns on a CPU, ns runnable on a run queue) of thread `tid` of this process, or `None`.
fn schedstat(tid: libc::id_t) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let mut it = s.split_ascii_whitespace().map(|x| x.parse::<u64>().ok());
    Some((it.next()??, it.next()??))
}

/// One mutator's counters for the stop in progress.
#[derive(Default)]
pub(crate) struct Probe {
    /// Counters at the request (on CPU, runnable), ns.
    req: [AtomicU64; 2],
    /// Deltas at the arrival (on CPU, runnable), ns; `u64::MAX` when not measured.
    arr: [AtomicU64; 2],
}

impl Probe {
    /// The stopping thread, at the request: record `tid`'s counters if it is `running` (not
    /// already stopped), or mark it not measured.
    pub(crate) fn at_request(&self, tid: libc::id_t, running: bool) {
        let (c, r) = if running {
            schedstat(tid).unwrap_or((u64::MAX, u64::MAX))
        } else {
            (u64::MAX, u64::MAX)
        };
        self.req[0].store(c, Ordering::Relaxed);
        self.req[1].store(r, Ordering::Relaxed);
        self.arr[0].store(u64::MAX, Ordering::Relaxed);
        self.arr[1].store(u64::MAX, Ordering::Relaxed);
    }

    /// The mutator, at its arrival: record what it did since the request.
    pub(crate) fn at_arrival(&self, tid: libc::id_t) {
        let Some((c, r)) = schedstat(tid) else { return };
        let (c0, r0) = (
            self.req[0].load(Ordering::Relaxed),
            self.req[1].load(Ordering::Relaxed),
        );
        if c0 != u64::MAX {
            self.arr[0].store(c.saturating_sub(c0), Ordering::Relaxed);
            self.arr[1].store(r.saturating_sub(r0), Ordering::Relaxed);
        }
    }

    /// (on CPU, runnable) ns between the request and the arrival, if measured.
    fn split(&self) -> Option<(u64, u64)> {
        let c = self.arr[0].load(Ordering::Relaxed);
        let r = self.arr[1].load(Ordering::Relaxed);
        (c != u64::MAX).then_some((c, r))
    }
}

/// One mutator's line of a stop report: id, time to safepoint, its split.
pub(crate) type Row = (u64, u64, Option<(u64, u64)>);

/// A mutator's row for the report (under the safepoint lock).
pub(crate) fn row(id: u64, tts_ns: u64, p: &Probe) -> Row {
    (id, tts_ns, p.split())
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Print one stop's report: the stopping thread's time to safepoint, its own wake-up after
/// the last arrival, and each mutator's split.
pub(crate) fn report_stop(seq: u64, tts: std::time::Duration, rows: &[Row]) {
    let tts_ns = u64::try_from(tts.as_nanos()).unwrap_or(u64::MAX);
    let last = rows.iter().map(|r| r.1).max().unwrap_or(0);
    let mut s = format!(
        "[tts] stop {seq}: tts {:.3}ms stopper-wake {:.3}ms |",
        ms(tts_ns),
        ms(tts_ns.saturating_sub(last))
    );
    for (id, t, split) in rows {
        match split {
            Some((c, r)) => s.push_str(&format!(
                " #{id} {:.3} (cpu {:.3} runq {:.3} other {:.3})",
                ms(*t),
                ms(*c),
                ms(*r),
                ms(t.saturating_sub(c + r))
            )),
            None => s.push_str(&format!(" #{id} {:.3}", ms(*t))),
        }
    }
    eprintln!("{s}");
}

/// The release as one parked mutator saw it: from the stopping thread's `resume` until it
/// ran again, and the part of that it was runnable.
pub(crate) struct Release {
    runq0: u64,
}

impl Release {
    /// Before the mutator waits (parked).
    pub(crate) fn before_wait(tid: libc::id_t) -> Option<Release> {
        on().then(|| Release {
            runq0: schedstat(tid).map_or(u64::MAX, |x| x.1),
        })
    }

    /// After it runs again: print the line.
    pub(crate) fn after_wait(self, tid: libc::id_t, id: u64, released: Option<Instant>) {
        let Some(rel) = released else { return };
        let wake = u64::try_from(rel.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let rq = schedstat(tid)
            .filter(|_| self.runq0 != u64::MAX)
            .map_or(0, |x| x.1.saturating_sub(self.runq0));
        eprintln!(
            "[tts] release #{id}: {:.3}ms (runq while parked {:.3}ms)",
            ms(wake),
            ms(rq)
        );
    }
}

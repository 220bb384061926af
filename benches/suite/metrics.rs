//! Metrics of one run: pause percentiles (hdrhistogram), minimum mutator utilization, CPU time
//! of the process and of single threads, peak RSS.
//!
//! Invariants:
//! - every figure is computed from measurements taken in this process (clock readings,
//!   `getrusage`, `/proc/self/status`), never from configuration;
//! - percentiles come from an `hdrhistogram` with 3 significant digits over microseconds
//!   (a reported value is within 0.1 % of a recorded one); an empty input gives `None`, not 0;
//! - MMU is the standard definition: for a window width `w`, the minimum over every window
//!   `[t, t + w]` inside the run of (w - time stopped in the window) / w. It is `None` when the
//!   run is shorter than `w`.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// p50 / p99 / p99.9 / max of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Pct {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// Percentiles of `ms` (milliseconds) through an hdrhistogram of microseconds.
pub fn percentiles_ms(ms: &[f64]) -> Option<Pct> {
    if ms.is_empty() {
        return None;
    }
    let mut h = Histogram::<u64>::new(3).expect("a 3-digit histogram");
    for &x in ms {
        let us = (x * 1e3).round().max(1.0) as u64;
        h.record(us).expect("auto-resizing histogram");
    }
    // The exact maximum, not its bucket; a percentile's bucket bound may lie above the largest
    // recorded value, so percentiles are capped at it.
    let max = ms.iter().copied().fold(0.0, f64::max);
    let q = |p: f64| (h.value_at_quantile(p) as f64 / 1e3).min(max);
    Some(Pct {
        count: h.len(),
        p50: q(0.5),
        p99: q(0.99),
        p999: q(0.999),
        max,
    })
}

/// Percentiles of nanosecond samples, reported in microseconds (for the bystander).
pub fn percentiles_ns_as_us(ns: impl Iterator<Item = u64>) -> Option<Pct> {
    let mut h = Histogram::<u64>::new(3).expect("a 3-digit histogram");
    let mut max = 0u64;
    for x in ns {
        h.record(x.max(1)).expect("auto-resizing histogram");
        max = max.max(x);
    }
    if h.is_empty() {
        return None;
    }
    let max = max as f64 / 1e3;
    let q = |p: f64| (h.value_at_quantile(p) as f64 / 1e3).min(max);
    Some(Pct {
        count: h.len(),
        p50: q(0.5),
        p99: q(0.99),
        p999: q(0.999),
        max,
    })
}

/// Minimum mutator utilization for window `w` (seconds) over a run `[0, run]` with the world
/// stopped during `pauses` (start, end in seconds from the run's start; sorted, disjoint).
pub fn mmu(pauses: &[(f64, f64)], run: f64, w: f64) -> Option<f64> {
    if w <= 0.0 || run < w {
        return None;
    }
    // Stopped time inside [a, a + w]: the minimum utilisation is reached by a window that
    // starts at a pause start or ends at a pause end (the stopped time is piecewise linear in
    // the window position, with breakpoints there), or at the run's edges.
    let stopped_in = |a: f64| -> f64 {
        let b = a + w;
        pauses
            .iter()
            .map(|&(s, e)| (e.min(b) - s.max(a)).max(0.0))
            .sum()
    };
    let mut candidates = vec![0.0, run - w];
    for &(s, e) in pauses {
        candidates.push(s);
        candidates.push(e - w);
    }
    let worst = candidates
        .into_iter()
        .map(|a| a.clamp(0.0, run - w))
        .map(stopped_in)
        .fold(0.0, f64::max);
    Some(((w - worst) / w).clamp(0.0, 1.0))
}

/// The MMU curve at log-spaced window widths from 100 µs to the run's length (for plots).
pub fn mmu_curve(pauses: &[(f64, f64)], run: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut w = 1e-4;
    while w <= run {
        if let Some(u) = mmu(pauses, run, w) {
            out.push((w, u));
        }
        w *= 1.25;
    }
    out
}

/// User + system CPU time of the whole process so far (all threads, exited ones included).
pub fn process_cpu() -> f64 {
    // SAFETY: getrusage writes one plain struct that we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if r != 0 {
        return f64::NAN;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time of the calling thread so far.
pub fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a timespec we own.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// A field of `/proc/self/status` in KiB (e.g. `VmHWM`, the peak resident set).
pub fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Resident and proportional set size of this process, KiB (`/proc/self/smaps_rollup`: `Rss`
/// counts a memfd page once per mapping of it, so the minor strategy's two views count it
/// twice; `Pss` counts it once).
pub fn rss_pss_kib() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(':'))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("Rss")?, field("Pss")?))
}

/// Metered latency (DaCapo Chopin's measure): each request is timed from its *scheduled*
/// start on a fixed arrival schedule, so a request queued behind a stall counts the stall.
///
/// Invariants: the schedule is evenly spaced (`interval` apart from `origin`, the "smoothed"
/// arrival schedule: no bursts); a request never starts before its scheduled time; its latency
/// is `done - scheduled` (never negative: clamped at 0).
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Scheduled start of request 0, seconds.
    pub origin: f64,
    /// Time between two scheduled starts, seconds.
    pub interval: f64,
}

impl Schedule {
    /// Scheduled start of request `i`, seconds.
    pub fn at(&self, i: u64) -> f64 {
        self.origin + i as f64 * self.interval
    }
    /// Metered latency of request `i` completed at `done` (seconds).
    pub fn latency(&self, i: u64, done: f64) -> f64 {
        (done - self.at(i)).max(0.0)
    }
    /// Replay a queue (for checks of the arithmetic): request `i` takes `service[i]` seconds
    /// and starts at the later of its scheduled time and the previous request's end. Returns
    /// every metered latency.
    #[allow(dead_code)]
    pub fn replay(&self, service: &[f64]) -> Vec<f64> {
        let mut free = f64::NEG_INFINITY;
        service
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let start = self.at(i as u64).max(free);
                free = start + s;
                self.latency(i as u64, free)
            })
            .collect()
    }
}

/// An hdrhistogram of metered latencies in nanoseconds, mergeable across threads.
pub struct Metered {
    hist: Histogram<u64>,
    max_ns: u64,
}

impl Default for Metered {
    fn default() -> Self {
        Metered {
            hist: Histogram::new(3).expect("a 3-digit histogram"),
            max_ns: 0,
        }
    }
}

impl Metered {
    /// Record one latency (seconds).
    pub fn record(&mut self, secs: f64) {
        let ns = (secs * 1e9).round().max(1.0) as u64;
        self.hist.record(ns).expect("auto-resizing histogram");
        self.max_ns = self.max_ns.max(ns);
    }
    /// Add another thread's latencies.
    pub fn merge(&mut self, o: &Metered) {
        self.hist.add(&o.hist).expect("auto-resizing histogram");
        self.max_ns = self.max_ns.max(o.max_ns);
    }
    /// p50 / p99 / p99.9 / max in milliseconds (`None` if nothing was recorded).
    pub fn percentiles_ms(&self) -> Option<Pct> {
        if self.hist.is_empty() {
            return None;
        }
        let max = self.max_ns as f64 / 1e6;
        let q = |p: f64| (self.hist.value_at_quantile(p) as f64 / 1e6).min(max);
        Some(Pct {
            count: self.hist.len(),
            p50: q(0.5),
            p99: q(0.99),
            p999: q(0.999),
            max,
        })
    }
}

/// Equal-memory calibration (`footprint.rs`): the next heap factor after a run at `factor`
/// whose peak RSS was `rss_over_live` x the live size missed `bound`, scaled by the overshoot
/// with a 10 % margin and never below 1x; `None` when there is nothing smaller worth trying (the
/// run failed, its RSS is unknown, or it is already at 1x).
pub fn next_footprint_factor(
    ran: bool,
    rss_over_live: Option<f64>,
    factor: f64,
    bound: f64,
) -> Option<f64> {
    if !ran {
        return None;
    }
    let next = (factor * bound / rss_over_live? * 0.9).max(1.0);
    (next < factor - 0.01).then_some(next)
}

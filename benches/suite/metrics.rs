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

/// Resident set size of this process, KiB, from `/proc/self/statm` (the kernel's RSS counter:
/// read without the mmap lock, so a sample does not delay the measured threads' faults and
/// memory calls).
pub fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4)
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
            // Bounded up front (1 ns to 1 hour): an auto-resizing histogram reallocates its
            // counts when a longer latency arrives, and that `mremap` (a write lock on the
            // address space) would itself delay the request being recorded.
            hist: Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
                .expect("a 3-digit histogram of 1 ns .. 1 h"),
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

/// The peak RSS, as a fraction of the bound, under which a run that fits leaves enough of its
/// footprint unused to try a larger heap.
pub const FOOTPRINT_ROOM: f64 = 0.85;

/// Equal-memory calibration: the next heap factor after a run at `factor` that fitted `bound`
/// with room to spare (peak RSS `rss_over_live` x live below [`FOOTPRINT_ROOM`] of the bound),
/// scaled up by the room left with a 10 % margin; `None` when it used the footprint closely
/// enough or its RSS is unknown. A mode is compared at a footprint with the largest heap that
/// fits it, as the peers' `-Xmx` fills theirs.
pub fn grow_footprint_factor(rss_over_live: Option<f64>, factor: f64, bound: f64) -> Option<f64> {
    let rss = rss_over_live?;
    if rss <= 0.0 || rss >= bound * FOOTPRINT_ROOM {
        return None;
    }
    let next = factor * bound / rss * 0.9;
    (next > factor + 0.01).then_some(next)
}

/// This thread's scheduler accounting (`/proc/thread-self/schedstat`: nanoseconds on a CPU,
/// nanoseconds runnable but waiting on a run queue), read through a file kept open (one `pread`
/// a reading). Open it on the thread it describes: `thread-self` resolves at open time.
pub struct SchedStat {
    file: Option<std::fs::File>,
}

impl SchedStat {
    /// Open the calling thread's schedstat (`read` gives `None` where the kernel has none).
    pub fn open() -> SchedStat {
        SchedStat {
            file: std::fs::File::open("/proc/thread-self/schedstat").ok(),
        }
    }

    /// (on-CPU ns, run-queue delay ns) of the opening thread so far.
    pub fn read(&self) -> Option<(u64, u64)> {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 96];
        let n = self.file.as_ref()?.read_at(&mut buf, 0).ok()?;
        parse_schedstat(std::str::from_utf8(&buf[..n]).ok()?)
    }
}

/// The first two fields of a schedstat line (`"<on-cpu ns> <run-queue ns> <timeslices>"`).
pub fn parse_schedstat(s: &str) -> Option<(u64, u64)> {
    let mut it = s.split_whitespace().map(|x| x.parse::<u64>().ok());
    Some((it.next()??, it.next()??))
}

/// Causes of waits in a [`TailSample`] (the heap's `WaitCause::ALL` order and names).
pub const WAIT_CAUSES: [&str; 7] = [
    "pause",
    "time-to-safepoint",
    "flip",
    "cycle-end",
    "alloc-stall",
    "fault-stall",
    "assist",
];

/// What one request's serving thread did and suffered from the request's scheduled start to
/// its end (the window its metered latency covers). The counters are read at the end of every
/// request, so the window starts at the end of the thread's last request before the scheduled
/// start: it may begin a little earlier (by the thread's idle gap), and a figure in it may
/// slightly exceed the latency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TailSample {
    /// Metered latency, ns.
    pub latency_ns: u64,
    /// Time on a CPU in the window, ns.
    pub cpu_ns: u64,
    /// Time runnable but not running (run-queue delay), ns.
    pub run_delay_ns: u64,
    /// Waits the heap recorded for this thread in the window, ns per cause ([`WAIT_CAUSES`]).
    pub wait_ns: [u64; 7],
    /// The collector's phase at the window's start and end (0 idle, 1 marking, 2 remark,
    /// 3 compacting).
    pub phase: [u8; 2],
    /// The request's end, seconds from the workload's start (as `cycle_spans_s`).
    pub end_s: f64,
    /// The serving thread's index.
    pub thread: u8,
}

impl TailSample {
    /// Every recorded wait in the window, ns.
    pub fn waited_ns(&self) -> u64 {
        self.wait_ns.iter().sum()
    }
}

/// The `k` slowest [`TailSample`]s seen (a min-heap on latency), kept per serving thread so
/// that no per-request record outlives its request unless it may be in the tail.
pub struct SlowestK {
    k: usize,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(u64, usize)>>,
    items: Vec<TailSample>,
    /// Sums over every sample offered: (count, latency, cpu, run delay, waited), ns.
    pub all: [u64; 5],
}

impl SlowestK {
    /// Keep the `k` slowest.
    pub fn new(k: usize) -> SlowestK {
        SlowestK {
            k,
            heap: std::collections::BinaryHeap::with_capacity(k + 1),
            items: Vec::with_capacity(k),
            all: [0; 5],
        }
    }

    /// Offer one sample.
    pub fn offer(&mut self, s: TailSample) {
        for (a, x) in
            self.all
                .iter_mut()
                .zip([1, s.latency_ns, s.cpu_ns, s.run_delay_ns, s.waited_ns()])
        {
            *a += x;
        }
        if self.k == 0 {
            return;
        }
        if self.items.len() < self.k {
            self.heap
                .push(std::cmp::Reverse((s.latency_ns, self.items.len())));
            self.items.push(s);
        } else if let Some(&std::cmp::Reverse((min, at))) = self.heap.peek() {
            if s.latency_ns > min {
                self.heap.pop();
                self.items[at] = s;
                self.heap.push(std::cmp::Reverse((s.latency_ns, at)));
            }
        }
    }

    /// Add another thread's samples.
    pub fn merge(&mut self, o: SlowestK) {
        self.k = self.k.max(o.k);
        for (a, x) in self.all.iter_mut().zip(o.all) {
            *a += x;
        }
        let all = self.all;
        for s in o.items {
            self.offer(s);
        }
        self.all = all;
    }

    /// The kept samples.
    pub fn samples(&self) -> &[TailSample] {
        &self.items
    }
}

/// The request workload's tail, split by what its requests' threads suffered (suite JSON
/// `metered.tail_split`): every request slower than `threshold_ms` (the run's p99).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TailSplit {
    /// Requests counted are those with a metered latency above this (the p99), ms.
    pub threshold_ms: f64,
    /// Requests above the threshold.
    pub requests: u64,
    /// The bar for "suffered" below, ms (a wait or a run delay longer than this).
    pub bar_ms: f64,
    /// Share of them with heap-recorded waits over `bar_ms` in their window.
    pub with_wait: f64,
    /// Share of them with a run-queue delay over `bar_ms`.
    pub with_run_delay: f64,
    /// Share with neither.
    pub with_neither: f64,
    /// Means over the tail requests, ms: latency, on-CPU, run-queue delay, recorded waits,
    /// and the rest (off-CPU and not runnable: latency - CPU - run delay, at least 0).
    pub mean_latency_ms: f64,
    pub mean_cpu_ms: f64,
    pub mean_run_delay_ms: f64,
    pub mean_wait_ms: f64,
    pub mean_blocked_ms: f64,
    /// Mean recorded wait per cause over the tail requests, ms.
    pub mean_wait_by_cause_ms: std::collections::BTreeMap<String, f64>,
    /// Tail requests by the collector's phase: `idle` when idle at both ends of the window,
    /// else the phase at its end (or its start, when idle at the end).
    pub phases: std::collections::BTreeMap<String, u64>,
    /// Means over *every* request, ms: latency, on-CPU, run-queue delay, recorded waits.
    pub all_mean_latency_ms: f64,
    pub all_mean_cpu_ms: f64,
    pub all_mean_run_delay_ms: f64,
    pub all_mean_wait_ms: f64,
}

/// Split the requests of `kept` slower than `threshold_ms`; `bar_ms` is the bar of "suffered".
pub fn tail_split(kept: &SlowestK, threshold_ms: f64, bar_ms: f64) -> TailSplit {
    let ms = |ns: u64| ns as f64 / 1e6;
    let bar_ns = (bar_ms * 1e6) as u64;
    let tail: Vec<&TailSample> = kept
        .samples()
        .iter()
        .filter(|s| ms(s.latency_ns) > threshold_ms)
        .collect();
    let n = tail.len() as f64;
    let share = |f: &dyn Fn(&TailSample) -> bool| {
        if tail.is_empty() {
            0.0
        } else {
            tail.iter().filter(|s| f(s)).count() as f64 / n
        }
    };
    let mean = |f: &dyn Fn(&TailSample) -> u64| {
        if tail.is_empty() {
            0.0
        } else {
            tail.iter().map(|s| ms(f(s))).sum::<f64>() / n
        }
    };
    let names = ["idle", "marking", "remark", "compacting"];
    let mut phases = std::collections::BTreeMap::new();
    for s in &tail {
        let p = if s.phase[1] != 0 {
            s.phase[1]
        } else {
            s.phase[0]
        };
        *phases
            .entry(names.get(p as usize).unwrap_or(&"?").to_string())
            .or_insert(0) += 1;
    }
    let [count, lat, cpu, rq, w] = kept.all;
    let all = |x: u64| {
        if count == 0 {
            0.0
        } else {
            ms(x) / count as f64
        }
    };
    TailSplit {
        threshold_ms,
        requests: tail.len() as u64,
        bar_ms,
        with_wait: share(&|s| s.waited_ns() > bar_ns),
        with_run_delay: share(&|s| s.run_delay_ns > bar_ns),
        with_neither: share(&|s| s.waited_ns() <= bar_ns && s.run_delay_ns <= bar_ns),
        mean_latency_ms: mean(&|s| s.latency_ns),
        mean_cpu_ms: mean(&|s| s.cpu_ns),
        mean_run_delay_ms: mean(&|s| s.run_delay_ns),
        mean_wait_ms: mean(&|s| s.waited_ns()),
        mean_blocked_ms: mean(&|s| s.latency_ns.saturating_sub(s.cpu_ns + s.run_delay_ns)),
        mean_wait_by_cause_ms: WAIT_CAUSES
            .iter()
            .enumerate()
            .map(|(i, c)| (c.to_string(), mean(&|s| s.wait_ns[i])))
            .collect(),
        phases,
        all_mean_latency_ms: all(lat),
        all_mean_cpu_ms: all(cpu),
        all_mean_run_delay_ms: all(rq),
        all_mean_wait_ms: all(w),
    }
}

//! One line of `target/peers/results.json`, and the `/proc` readings the Boehm runner uses.
//!
//! Invariants:
//! - `pauses_ms[i]` started `pause_starts_s[i]` seconds after the workload started; both
//!   vectors have the same length and are in start order;
//! - a figure that was not measured is `None` (JSON `null`), never 0.

use serde::{Deserialize, Serialize};

/// One peer x workload x size.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PeerRecord {
    /// `boehm`, `boehm-incremental`, `java-zgc`, `java-shenandoah`, `java-g1`.
    pub peer: String,
    /// `binary-trees`, `gcbench`, `fragmentation`, `churn`.
    pub workload: String,
    /// Nominal live size (see WORKLOADS.md).
    pub live_mib: u64,
    /// Mutator threads.
    pub threads: u64,
    /// Every pause, in ms.
    pub pauses_ms: Vec<f64>,
    /// Start of every pause, seconds after the workload started.
    pub pause_starts_s: Vec<f64>,
    /// Workload wall time (allocation of the first object to the final check), seconds.
    pub total_s: f64,
    /// CPU seconds spent in collector code or collector threads (how: see `note`).
    pub gc_cpu_s: Option<f64>,
    /// Peak resident set of the process (VmHWM), KiB.
    pub peak_rss_kib: Option<u64>,
    /// The checksum the program printed, and whether it equals `spec::expected_checksum`.
    pub checksum: Option<u64>,
    /// Whether `checksum` equals `spec::expected_checksum`.
    pub checksum_ok: bool,
    /// Per-thread waits for the collector that are not world stops (ZGC allocation and
    /// relocation stalls), ms, and their starts in seconds after the workload started. Not in
    /// `pauses_ms`; threads may stall at the same time.
    #[serde(default)]
    pub stalls_ms: Vec<f64>,
    /// Start of each stall in `stalls_ms`, seconds after the workload started.
    #[serde(default)]
    pub stall_starts_s: Vec<f64>,
    /// The request workload's metered latency (each request timed from its scheduled start;
    /// allocation stalls inside requests are folded in); `None` for the other workloads.
    #[serde(default)]
    pub metered: Option<MeteredLatency>,
    /// Collections (Boehm: GC_EVENT_START..END intervals; Java: safepoints in the window).
    pub collections: Option<u64>,
    /// What the pauses are, and anything that makes the row incomparable.
    pub note: String,
}

/// Metered latency of the request workload (nearest-rank percentiles, `spec::nearest_rank`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MeteredLatency {
    /// Requests metered.
    pub count: u64,
    /// Percentiles and maximum, ms.
    pub p50: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// 99.9th percentile, ms.
    pub p999: f64,
    /// Longest, ms.
    pub max: f64,
    /// Scheduled arrival rate, requests per second.
    pub rate_hz: f64,
    /// Requests served per second of the serving phase.
    pub achieved_hz: f64,
}

impl MeteredLatency {
    /// From every latency in ns (any order).
    pub fn from_ns(mut v: Vec<u64>, rate_hz: f64, achieved_hz: f64) -> MeteredLatency {
        v.sort_unstable();
        let ms = |q: f64| crate::spec::nearest_rank(&v, q) as f64 / 1e6;
        MeteredLatency {
            count: v.len() as u64,
            p50: ms(0.5),
            p99: ms(0.99),
            p999: ms(0.999),
            max: ms(1.0),
            rate_hz,
            achieved_hz,
        }
    }
}

impl PeerRecord {
    /// Sorts pauses and stalls by start time (keeping each length with its start).
    pub fn sort_by_start(&mut self) {
        sort_pairs(&mut self.pause_starts_s, &mut self.pauses_ms);
        sort_pairs(&mut self.stall_starts_s, &mut self.stalls_ms);
    }
}

fn sort_pairs(starts: &mut Vec<f64>, lengths: &mut Vec<f64>) {
    let mut pairs: Vec<(f64, f64)> = starts
        .iter()
        .copied()
        .zip(lengths.iter().copied())
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    *starts = pairs.iter().map(|p| p.0).collect();
    *lengths = pairs.iter().map(|p| p.1).collect();
}

/// `VmHWM` of this process, KiB.
pub fn vmhwm_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// (tid, comm, CPU ns) of every thread of this process: `schedstat`'s time on a CPU, or
/// `utime + stime` ticks converted to ns where `schedstat` is missing. A running thread's
/// current slice is not in `schedstat` yet: read it for threads that are parked.
pub fn task_cpu_ns() -> Vec<(u64, String, u64)> {
    let tick_ns = 1_000_000_000 / ticks_per_second().max(1);
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Ok(tid) = e.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let sched_ns = std::fs::read_to_string(e.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
        if let Some((comm, ticks)) = parse_task_stat(&stat) {
            out.push((tid, comm, sched_ns.unwrap_or(ticks * tick_ns)));
        }
    }
    out
}

/// (comm, utime + stime) from a `/proc/<pid>/task/<tid>/stat` line. The comm is in
/// parentheses and may contain spaces and parentheses; fields 14 and 15 follow the last ')'.
pub fn parse_task_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// Clock ticks per second for `/proc` CPU times.
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value; no memory is passed.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_stat_with_spaces_in_comm() {
        let l = "8918 (GC Thread#0) S 8823 8823 1910 0 -1 4194368 567 0 0 0 25 7 0 0 20 0";
        assert_eq!(parse_task_stat(l), Some(("GC Thread#0".to_string(), 32)));
        assert_eq!(parse_task_stat("garbage"), None);
    }

    #[test]
    fn sorting_keeps_pairs() {
        let mut r = PeerRecord {
            peer: "p".into(),
            workload: "w".into(),
            live_mib: 4,
            threads: 1,
            pauses_ms: vec![3.0, 1.0],
            pause_starts_s: vec![0.5, 0.1],
            total_s: 1.0,
            gc_cpu_s: None,
            peak_rss_kib: None,
            checksum: None,
            checksum_ok: false,
            stalls_ms: Vec::new(),
            stall_starts_s: Vec::new(),
            metered: None,
            collections: None,
            note: String::new(),
        };
        r.sort_by_start();
        assert_eq!(r.pause_starts_s, vec![0.1, 0.5]);
        assert_eq!(r.pauses_ms, vec![1.0, 3.0]);
    }

    #[test]
    fn own_process_readings() {
        assert!(vmhwm_kib().unwrap() > 0);
        let tasks = task_cpu_ns();
        let me = std::process::id() as u64;
        assert!(tasks.iter().any(|t| t.0 == me), "{tasks:?}");
    }
}

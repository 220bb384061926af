//! Parsing what a HotSpot (JDK 17) run of `Workloads.java` leaves behind: the unified-logging
//! safepoint log, ZGC allocation and relocation stalls from the GC log, and the program's own
//! stdout (clock readings, checksum, peak RSS, per-thread CPU time); [`build_record`] turns
//! them into one results.json record.
//!
//! The logs must be written with the `timenanos` decoration first
//! (`-Xlog:safepoint:file=sp.log:timenanos,uptimenanos`): `timenanos` is `os::javaTimeNanos`,
//! the clock of `System.nanoTime()`, so pause times line up with the program's own
//! `start_ns=` / `end_ns=` readings.
//!
//! Invariants:
//! - a pause is one safepoint: start = decoration time - `Total`, length = `Total` (time to
//!   reach the safepoint + cleanup + at safepoint; all of it with Java threads stopped);
//! - only safepoints that *end* after `start_ns` and *start* before `end_ns` are kept, and their
//!   start times are reported relative to `start_ns`;
//! - lines that do not parse are counted, never silently turned into zeros (a safepoint line
//!   that does not parse makes [`build_record`] fail);
//! - stalls are per thread and never enter the pauses.

use crate::record::PeerRecord;
use crate::spec::{self, Workload};

/// One safepoint from a `-Xlog:safepoint` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Safepoint {
    /// The `timenanos` decoration: when the line was logged (the safepoint's end).
    pub logged_ns: u64,
    /// The VM operation, e.g. `G1CollectForAllocation`, `ZMarkStart`.
    pub operation: String,
    /// Time to safepoint.
    pub reaching_ns: u64,
    /// Safepoint cleanup.
    pub cleanup_ns: u64,
    /// The operation itself.
    pub at_ns: u64,
    /// `Total:` as printed (reaching + cleanup + at).
    pub total_ns: u64,
}

impl Safepoint {
    /// When the threads were asked to stop.
    pub fn start_ns(&self) -> u64 {
        self.logged_ns.saturating_sub(self.total_ns)
    }
}

/// The leading `[<n>ns]` decoration of a unified-logging line and the rest of the line.
fn decoration_ns(line: &str) -> Option<(u64, &str)> {
    let rest = line.strip_prefix('[')?;
    let close = rest.find(']')?;
    let ns = rest[..close].strip_suffix("ns")?.parse().ok()?;
    Some((ns, &rest[close + 1..]))
}

/// The number after `key` and before " ns".
fn field_ns(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let tail = text[at..].trim_start();
    let end = tail.find(" ns")?;
    tail[..end].trim().parse().ok()
}

/// Parses one safepoint line; `None` for lines that are not safepoint records.
pub fn parse_safepoint(line: &str) -> Option<Safepoint> {
    let (logged_ns, rest) = decoration_ns(line)?;
    let body = &rest[rest.find("Safepoint \"")? + "Safepoint \"".len()..];
    let quote = body.find('"')?;
    let operation = body[..quote].to_string();
    let fields = &body[quote..];
    Some(Safepoint {
        logged_ns,
        operation,
        reaching_ns: field_ns(fields, "Reaching safepoint:")?,
        cleanup_ns: field_ns(fields, "Cleanup:").unwrap_or(0),
        at_ns: field_ns(fields, "At safepoint:")?,
        total_ns: field_ns(fields, "Total:")?,
    })
}

/// Every safepoint in a log, plus the number of non-empty lines that mention a safepoint but
/// did not parse.
pub fn parse_safepoint_log(text: &str) -> (Vec<Safepoint>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match parse_safepoint(line) {
            Some(s) => out.push(s),
            None if line.contains("Safepoint \"") => bad += 1,
            None => {}
        }
    }
    (out, bad)
}

/// A ZGC mutator stall: one thread waited for the collector (no safepoint involved).
#[derive(Clone, Debug, PartialEq)]
pub struct Stall {
    /// `Allocation` (no free memory until a cycle ends) or `Relocation` (an object the thread
    /// touched was being relocated by a GC worker).
    pub kind: String,
    /// The Java thread's name.
    pub thread: String,
    /// The decoration time: when the stall ended.
    pub logged_ns: u64,
    /// Its length.
    pub ms: f64,
}

impl Stall {
    /// When the thread started waiting.
    pub fn start_ns(&self) -> u64 {
        self.logged_ns.saturating_sub((self.ms * 1e6) as u64)
    }
}

/// Parses a ZGC `Allocation Stall (<thread>) <ms>ms` or `Relocation Stall (..)` GC-log line.
pub fn parse_stall(line: &str) -> Option<Stall> {
    let (logged_ns, rest) = decoration_ns(line)?;
    let rest = rest.trim_start();
    let (kind, after) = rest.split_once(" Stall (")?;
    if kind != "Allocation" && kind != "Relocation" {
        return None;
    }
    let close = after.rfind(") ")?;
    let ms = after[close + 2..].trim().strip_suffix("ms")?.parse().ok()?;
    Some(Stall {
        kind: kind.to_string(),
        thread: after[..close].to_string(),
        logged_ns,
        ms,
    })
}

/// Pauses inside the workload window: (lengths in ms, starts in s relative to `start_ns`).
pub fn window(points: &[Safepoint], start_ns: u64, end_ns: u64) -> (Vec<f64>, Vec<f64>) {
    let mut pauses = Vec::new();
    let mut starts = Vec::new();
    for p in points
        .iter()
        .filter(|p| p.logged_ns > start_ns && p.start_ns() < end_ns)
    {
        pauses.push(p.total_ns as f64 / 1e6);
        starts.push((p.start_ns() as f64 - start_ns as f64) / 1e9);
    }
    (pauses, starts)
}

/// What `Workloads.java` prints on stdout.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProgramOutput {
    /// When the workload started (`System.nanoTime`), ns.
    pub start_ns: Option<u64>,
    /// When the workload ended (`System.nanoTime`), ns.
    pub end_ns: Option<u64>,
    /// The workload's checksum.
    pub checksum: Option<u64>,
    /// Peak resident set of the JVM (VmHWM), KiB.
    pub vmhwm_kib: Option<u64>,
    /// Every JVM thread at the end of the workload.
    pub tasks: Vec<Task>,
    /// The request workload: `metered_ns=<count> <p50> <p99> <p99.9> <max>` (nearest rank),
    /// `rate_hz=`, `achieved_hz=`.
    pub metered: Option<crate::record::MeteredLatency>,
}

/// One thread's CPU time as `Workloads.java` read it from `/proc/self/task/<tid>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// The 15-character `comm`.
    pub name: String,
    /// `utime + stime` in clock ticks (`stat` fields 14 and 15).
    pub ticks: u64,
    /// Nanoseconds on a CPU (`schedstat` field 1), if the kernel has it.
    pub on_cpu_ns: Option<u64>,
}

/// Parses `key=value` lines and `task\t<comm>\t<utime>\t<stime>[\t<on-cpu ns>]` lines.
pub fn parse_program_output(text: &str) -> ProgramOutput {
    let mut out = ProgramOutput::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("task\t") {
            let f: Vec<&str> = rest.split('\t').collect();
            if let [name, u, s, ref more @ ..] = f[..] {
                if let (Ok(u), Ok(s)) = (u.parse::<u64>(), s.parse::<u64>()) {
                    out.tasks.push(Task {
                        name: name.to_string(),
                        ticks: u + s,
                        on_cpu_ns: more.first().and_then(|n| n.parse().ok()),
                    });
                }
            }
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() == "metered_ns" {
            let n: Vec<u64> = v
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if let [count, p50, p99, p999, max] = n[..] {
                let ms = |x: u64| x as f64 / 1e6;
                let m = out.metered.get_or_insert(crate::record::MeteredLatency {
                    count: 0,
                    p50: 0.0,
                    p99: 0.0,
                    p999: 0.0,
                    max: 0.0,
                    rate_hz: 0.0,
                    achieved_hz: 0.0,
                });
                (m.count, m.p50, m.p99, m.p999, m.max) =
                    (count, ms(p50), ms(p99), ms(p999), ms(max));
            }
            continue;
        }
        if let (Some(m), Ok(x)) = (out.metered.as_mut(), v.trim().parse::<f64>()) {
            match k.trim() {
                "rate_hz" => m.rate_hz = x,
                "achieved_hz" => m.achieved_hz = x,
                _ => {}
            }
        }
        let v = v.trim().parse().ok();
        match k.trim() {
            "start_ns" => out.start_ns = v,
            "end_ns" => out.end_ns = v,
            "checksum" => out.checksum = v,
            "vmhwm_kib" => out.vmhwm_kib = v,
            _ => {}
        }
    }
    out
}

/// Whether a HotSpot thread (by its 15-character `/proc` comm) does garbage-collection work:
/// G1, ZGC and Shenandoah workers and service threads, and the VM Thread, which runs every
/// stop-the-world operation (mostly collections in these workloads).
pub fn is_gc_thread(comm: &str) -> bool {
    const PREFIXES: [&str; 12] = [
        "GC Thread",
        "G1 ",
        "ZWorker",
        "ZDriver",
        "ZDirector",
        "ZStat",
        "ZUnmapper",
        "ZUncommitter",
        "Shenandoah",
        "VM Thread",
        "RuntimeWorker",
        "ZRelocate",
    ];
    PREFIXES.iter().any(|p| comm.starts_with(p))
}

/// Seconds of CPU used by GC threads: `schedstat` nanoseconds where every GC thread has them,
/// else clock ticks (10 ms resolution at 100 Hz).
pub fn gc_cpu_seconds(tasks: &[Task], ticks_per_s: u64) -> Option<f64> {
    let gc: Vec<&Task> = tasks.iter().filter(|t| is_gc_thread(&t.name)).collect();
    if gc.is_empty() || ticks_per_s == 0 {
        return None;
    }
    if let Some(ns) = gc.iter().map(|t| t.on_cpu_ns).sum::<Option<u64>>() {
        return Some(ns as f64 / 1e9);
    }
    let ticks: u64 = gc.iter().map(|t| t.ticks).sum();
    Some(ticks as f64 / ticks_per_s as f64)
}

/// The inputs of one Java run, already read.
pub struct RunFiles<'a> {
    /// The peer's name (`zgc`, `shenandoah`, `g1`).
    pub peer: &'a str,
    /// The workload run.
    pub workload: Workload,
    /// Live size of the workload, MiB.
    pub live_mib: u64,
    /// Mutator threads.
    pub threads: u64,
    /// The program's stdout.
    pub stdout: &'a str,
    /// `-Xlog:safepoint` output (`timenanos` decoration first).
    pub safepoint_log: &'a str,
    /// `-Xlog:gc` output, if any (for ZGC stalls, degenerated and full GCs).
    pub gc_log: Option<&'a str>,
    /// Prepended to the note (e.g. the heap options).
    pub note_prefix: Option<&'a str>,
    /// Clock ticks per second, for threads without `schedstat`.
    pub ticks_per_s: u64,
}

/// The results.json record of one Java run; an error if the output is incomplete or a
/// safepoint line does not parse (the checksum verdict is in the record).
pub fn build_record(f: &RunFiles) -> Result<PeerRecord, String> {
    let (w, live_mib, threads) = (f.workload, f.live_mib, f.threads);
    let out = parse_program_output(f.stdout);
    let (Some(start), Some(end)) = (out.start_ns, out.end_ns) else {
        return Err("program output has no start_ns/end_ns".into());
    };
    let (points, bad) = parse_safepoint_log(f.safepoint_log);
    if bad > 0 {
        return Err(format!("{bad} safepoint lines did not parse"));
    }
    let (pauses_ms, pause_starts_s) = window(&points, start, end);
    let mut note = f.note_prefix.map_or(String::new(), |p| format!("{p}; "));
    note.push_str(
        "pauses = every safepoint in the workload window (-Xlog:safepoint Total = time to \
         safepoint + cleanup + at safepoint); gc_cpu = CPU time (/proc schedstat) of GC threads and the \
         VM Thread at the end of the workload; peak RSS = VmHWM of the JVM; total includes \
         JIT warm-up (no warm-up run)",
    );
    let in_window: Vec<&Safepoint> = points
        .iter()
        .filter(|p| p.logged_ns > start && p.start_ns() < end)
        .collect();
    let mut ops: Vec<(&str, usize)> = Vec::new();
    for p in &in_window {
        match ops.iter_mut().find(|o| o.0 == p.operation) {
            Some(o) => o.1 += 1,
            None => ops.push((&p.operation, 1)),
        }
    }
    let ops: Vec<String> = ops.iter().map(|(n, c)| format!("{n} x{c}")).collect();
    if ops.is_empty() {
        note.push_str("; no safepoint in the workload window");
    } else {
        note.push_str(&format!("; safepoints: {}", ops.join(", ")));
    }
    let mut stalls: Vec<Stall> = Vec::new();
    if let Some(gc) = f.gc_log {
        stalls = gc
            .lines()
            .filter_map(parse_stall)
            .filter(|s| s.logged_ns > start && s.start_ns() < end)
            .collect();
        for kind in ["Allocation", "Relocation"] {
            let v: Vec<f64> = stalls
                .iter()
                .filter(|s| s.kind == kind)
                .map(|s| s.ms)
                .collect();
            if !v.is_empty() {
                note.push_str(&format!(
                    "; ZGC {kind} Stalls (per thread, not safepoints: in stalls_ms, NOT in \
                     pauses_ms): {} totalling {:.1} ms, max {:.1} ms",
                    v.len(),
                    v.iter().sum::<f64>(),
                    v.iter().copied().fold(0.0, f64::max)
                ));
            }
        }
        let degenerated = gc.lines().filter(|l| l.contains("Degenerated GC")).count();
        let full = gc.lines().filter(|l| l.contains("Pause Full")).count();
        if degenerated + full > 0 {
            note.push_str(&format!(
                "; degenerated GCs: {degenerated}, full GCs: {full} (both are safepoints)"
            ));
        }
    }
    let checksum = out.checksum;
    let mut r = PeerRecord {
        peer: f.peer.to_string(),
        workload: w.name().into(),
        live_mib,
        threads,
        collections: Some(pauses_ms.len() as u64),
        pauses_ms,
        pause_starts_s,
        total_s: end.saturating_sub(start) as f64 / 1e9,
        gc_cpu_s: gc_cpu_seconds(&out.tasks, f.ticks_per_s),
        peak_rss_kib: out.vmhwm_kib,
        checksum,
        checksum_ok: checksum == Some(spec::expected_checksum(w, live_mib, threads)),
        stalls_ms: stalls.iter().map(|s| s.ms).collect(),
        stall_starts_s: stalls
            .iter()
            .map(|s| (s.start_ns() as f64 - start as f64) / 1e9)
            .collect(),
        metered: out.metered.clone(),
        note,
    };
    r.sort_by_start();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line() {
        let l = "[9306792100281ns][159898921ns] Safepoint \"ZMarkStart\", Time since last: \
                 105577388 ns, Reaching safepoint: 3505732 ns, Cleanup: 34111 ns, At safepoint: \
                 29254 ns, Total: 3569097 ns";
        let s = parse_safepoint(l).unwrap();
        assert_eq!(s.operation, "ZMarkStart");
        assert_eq!(s.logged_ns, 9_306_792_100_281);
        assert_eq!(s.reaching_ns + s.cleanup_ns + s.at_ns, s.total_ns);
        assert_eq!(s.start_ns(), 9_306_792_100_281 - 3_569_097);
        assert_eq!(parse_safepoint("[1ns] Using G1"), None);
    }

    #[test]
    fn stall_line() {
        let s = parse_stall("[9307509877345ns] Allocation Stall (main) 2.491ms").unwrap();
        assert_eq!((s.kind.as_str(), s.thread.as_str()), ("Allocation", "main"));
        assert_eq!((s.logged_ns, s.ms), (9_307_509_877_345, 2.491));
        assert_eq!(s.start_ns(), 9_307_509_877_345 - 2_491_000);
        let r = parse_stall("[10ns] Relocation Stall (mutator-1) 11.996ms").unwrap();
        assert_eq!(
            (r.kind.as_str(), r.thread.as_str()),
            ("Relocation", "mutator-1")
        );
        assert_eq!(
            parse_stall("[9ns] GC(1) Garbage Collection (Allocation Stall) 64M"),
            None
        );
        assert_eq!(parse_stall("[5ns] GC(3) Pause Young 1.0ms"), None);
    }

    #[test]
    fn gc_threads() {
        assert!(is_gc_thread("G1 Conc#0"));
        assert!(is_gc_thread("Shenandoah GC T"));
        assert!(!is_gc_thread("C2 CompilerThre"));
        assert!(!is_gc_thread("java"));
    }
}

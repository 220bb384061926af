//! GC telemetry for the command line: the per-cycle GC log line, the end-of-run summary table
//! and the `--stats-json` object, all computed from the heap's public statistics
//! ([`Heap::history`], [`Heap::fault_stats`], [`Heap::arena_stats`], [`Heap::mode_info`]).
//!
//! Invariants: every figure is read from the heap or from `/proc/self/status` (peak RSS), never
//! derived from the configuration; a figure that cannot be measured is reported as absent
//! (`null` in JSON, `n/a` in the table), never as zero.

use std::time::Duration;

use faultline::Call;
use faultline::{CycleStats, GcMode, Heap, Percentiles};
use serde_json::{json, Value as Json};

/// Peak resident set size of the process (VmHWM), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn mode_name(m: GcMode) -> &'static str {
    match m {
        GcMode::StopTheWorld => "stw",
        GcMode::Concurrent => "concurrent",
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One GC-log line for a cycle, in the spirit of JVM unified logging:
/// `[gc,cycle] GC(3) stw (occupancy) pauses: stw 1.234ms | heap 4096K->1024K (moving 3000K->900K, large 1096K->124K) | live 1234 objs, 5 pages | faults 0 | syscalls: mmap-family 0, register 0 | vmas 1->1 | cycle 1.300ms (mark 0.4, plan ahead 0.0, plan in pause 0.1, compact 0.7, safepoint 0.0)`.
/// `faults` is the number of mutator fault stalls since the previous line.
pub fn log_line(s: &CycleStats, faults: u64) -> String {
    let pauses: Vec<String> = s
        .pauses
        .iter()
        .map(|p| {
            if p.kind == "remark+flip" {
                format!(
                    "{} {:.3}ms (remark {:.3}, plan+flip {:.3})",
                    p.kind,
                    ms(p.duration),
                    ms(s.remark),
                    ms(p.duration.saturating_sub(s.remark))
                )
            } else {
                format!("{} {:.3}ms", p.kind, ms(p.duration))
            }
        })
        .collect();
    format!(
        "[gc,cycle] GC({}) {} ({}) pauses: {} | heap {}K->{}K (moving {}K->{}K, large {}K->{}K) | live {} objs, {} pages | faults {} | syscalls: mmap-family {}, register {} | vmas {}->{} | cycle {:.3}ms (mark {:.3}, plan ahead {:.3}, plan in pause {:.3}, compact {:.3}, safepoint {:.3})",
        s.cycle,
        mode_name(s.mode),
        s.trigger.name(),
        if pauses.is_empty() { "none".to_string() } else { pauses.join(", ") },
        s.heap_before() / 1024,
        s.heap_after() / 1024,
        s.moving_before / 1024,
        s.moving_after / 1024,
        s.large_before / 1024,
        s.large_after / 1024,
        s.live_objects,
        s.pages_filled,
        faults,
        s.mmap_family(),
        s.registrations(),
        s.vmas.0,
        s.vmas.1,
        ms(s.total),
        ms(s.mark),
        ms(s.plan_ahead),
        ms(s.plan),
        ms(s.compact),
        ms(s.time_to_safepoint),
    )
}

/// Aggregates over a run.
#[derive(Debug, Clone)]
pub struct RunStats {
    /// Collector mode (`stw` or `concurrent`).
    pub mode: &'static str,
    /// Concurrent strategy in effect, if any.
    pub strategy: Option<&'static str>,
    /// Fault delivery in effect, if any.
    pub fault_delivery: Option<&'static str>,
    /// Barrier in effect, if any.
    pub barrier: Option<&'static str>,
    /// Whether the heap uses userfaultfd.
    pub uses_userfaultfd: bool,
    /// Why the heap fell back from what was asked, if it did.
    pub fallback_reason: Option<String>,
    /// Number of collection cycles.
    pub cycles: usize,
    /// Pause-time percentiles over every pause of every cycle.
    pub pauses: Percentiles,
    /// Total collector time over all cycles.
    pub gc_time: Duration,
    /// Mutator fault stalls.
    pub faults: faultline::FaultStats,
    /// userfaultfd ioctl counts over the run, by name.
    pub uffd: [(&'static str, u64); 8],
    /// Mapping system calls made during cycles, by name.
    pub vm_syscalls_in_cycles: [(&'static str, u64); 4],
    /// Fewest and most arena VMAs seen.
    pub arena_vmas: (usize, usize),
    /// Peak resident set size, if measurable.
    pub peak_rss: Option<u64>,
    /// Wall-clock time of the run.
    pub total: Duration,
}

impl RunStats {
    /// Collects the statistics of `heap` for a run that took `total`.
    pub fn collect(heap: &Heap, total: Duration) -> RunStats {
        let history = heap.history();
        let info = heap.mode_info();
        let arena = heap.arena_stats();
        let calls = &arena.calls_total;
        let pauses: Vec<Duration> = history
            .iter()
            .flat_map(|c| c.pauses.iter().map(|p| p.duration))
            .collect();
        let sum = |call: Call| history.iter().map(|c| c.calls.get(call)).sum::<u64>();
        let mut vmin = arena.vmas;
        let mut vmax = arena.vmas;
        for c in &history {
            for v in [c.vmas.0, c.vmas.1] {
                vmin = vmin.min(v);
                vmax = vmax.max(v);
            }
        }
        RunStats {
            mode: mode_name(info.mode),
            strategy: info.strategy.map(|s| s.name()),
            fault_delivery: info.faults.map(|f| f.name()),
            barrier: info.barrier.map(|b| b.name()),
            uses_userfaultfd: heap.uses_userfaultfd(),
            fallback_reason: info.fallback_reason,
            cycles: heap.cycles() as usize, // completed cycles: one GC-log line each
            pauses: Percentiles::of(pauses),
            gc_time: history.iter().map(|c| c.total).sum(),
            faults: heap.fault_stats(),
            uffd: [
                ("register", calls.get(Call::UffdRegister)),
                ("unregister", calls.get(Call::UffdUnregister)),
                ("copy", calls.get(Call::UffdCopy)),
                ("move", calls.get(Call::UffdMove)),
                ("continue", calls.get(Call::UffdContinue)),
                ("zeropage", calls.get(Call::UffdZeropage)),
                ("wake", calls.get(Call::UffdWake)),
                ("writeprotect", calls.get(Call::UffdWriteprotect)),
            ],
            vm_syscalls_in_cycles: [
                ("mmap", sum(Call::Mmap)),
                ("munmap", sum(Call::Munmap)),
                ("mremap", sum(Call::Mremap)),
                ("mprotect", sum(Call::Mprotect)),
            ],
            arena_vmas: (vmin, vmax),
            peak_rss: peak_rss_bytes(),
            total,
        }
    }

    /// The `--stats-json` object.
    pub fn to_json(&self) -> Json {
        let map = |xs: &[(&'static str, u64)]| -> Json {
            Json::Object(xs.iter().map(|(k, v)| (k.to_string(), json!(v))).collect())
        };
        json!({
            "mode": self.mode,
            "strategy": self.strategy,
            "fault_delivery": self.fault_delivery,
            "barrier": self.barrier,
            "userfaultfd": self.uses_userfaultfd,
            "cycles": self.cycles,
            "pauses": {
                "count": self.pauses.count,
                "p50_us": us(self.pauses.p50),
                "p99_us": us(self.pauses.p99),
                "max_us": us(self.pauses.max),
                "total_ms": ms(self.pauses.total),
            },
            "mutator_faults": {
                "count": self.faults.count,
                "p50_us": us(self.faults.p50),
                "p99_us": us(self.faults.p99),
                "max_us": us(self.faults.max),
            },
            "uffd": map(&self.uffd),
            "vm_syscalls_in_cycles": map(&self.vm_syscalls_in_cycles),
            "arena_vmas": { "min": self.arena_vmas.0, "max": self.arena_vmas.1 },
            "peak_rss_bytes": self.peak_rss,
            "total_ms": ms(self.total),
            "gc_ms": ms(self.gc_time),
            "fallback_reason": self.fallback_reason,
        })
    }

    /// The end-of-run summary table.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut row = |k: &str, v: String| rows.push((k.to_string(), v));
        let mode = match (self.strategy, self.fault_delivery) {
            (Some(s), Some(f)) => format!("{} (strategy {s}, faults via {f})", self.mode),
            _ => self.mode.to_string(),
        };
        row("mode", mode);
        if let Some(b) = self.barrier {
            row("barrier", b.to_string());
        }
        row(
            "userfaultfd",
            if self.uses_userfaultfd {
                "yes (arena registered once)".into()
            } else {
                "no".into()
            },
        );
        if let Some(r) = &self.fallback_reason {
            row("fallback reason", r.clone());
        }
        row("cycles", self.cycles.to_string());
        row(
            "pauses",
            format!(
                "{} (p50 {:.3}ms, p99 {:.3}ms, max {:.3}ms, total {:.3}ms)",
                self.pauses.count,
                ms(self.pauses.p50),
                ms(self.pauses.p99),
                ms(self.pauses.max),
                ms(self.pauses.total)
            ),
        );
        row("gc time", format!("{:.3}ms", ms(self.gc_time)));
        row(
            "mutator fault stalls",
            format!(
                "{} (p50 {:.1}us, p99 {:.1}us, max {:.1}us)",
                self.faults.count,
                us(self.faults.p50),
                us(self.faults.p99),
                us(self.faults.max)
            ),
        );
        let uffd: Vec<String> = self
            .uffd
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        row(
            "uffd calls",
            if uffd.is_empty() {
                "none".into()
            } else {
                uffd.join(", ")
            },
        );
        let vm: Vec<String> = self
            .vm_syscalls_in_cycles
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        row("mapping calls in cycles", vm.join(", "));
        row(
            "arena VMAs",
            format!("min {}, max {}", self.arena_vmas.0, self.arena_vmas.1),
        );
        row(
            "peak RSS",
            self.peak_rss.map_or("n/a".into(), |b| {
                format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
            }),
        );
        row("total time", format!("{:.3}ms", ms(self.total)));
        let mut out = String::from("== GC summary ==\n");
        let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in rows {
            out.push_str(&format!("  {k:<w$}  {v}\n"));
        }
        out
    }
}

//! Equal memory (issue 14 item 2): runs whose configuration is chosen by *measured* peak RSS.
//!
//! For a bound B (`--footprints 2,3`: peak RSS at most B x the live size), each (workload,
//! size, mode) is calibrated: it first runs with the moving half at B x live; while the
//! child's peak RSS exceeds the bound, the factor is scaled down by the measured overshoot
//! (with a 10 % margin) and the run repeated; while a run fits with more than 15 % of the
//! bound unused, the factor is scaled up by the room left (with the same margin) and the run
//! repeated, so that a mode is compared with the largest heap that fits the footprint, as the
//! peers' `-Xmx` fills theirs; at most [`TRIES`] runs, never below 1x. The row is the fitting
//! run with the highest peak RSS, or, if none fitted, the last run: the report then says the
//! mode cannot run at that footprint, with the lowest RSS it reached (or the failure, e.g. out
//! of memory). Peers are shown beside it with their own measured RSS: `-Xmx` and
//! `GC_set_max_heap_size` bound the heap, not the RSS, so they too are judged by measurement.
//!
//! Invariants: a row's figures are one child's measurements (never interpolated); `fits` is
//! recomputed from the row's own peak RSS and bound, so it cannot disagree with them.

use std::fmt::Write as _;

use super::run::RunResult;

/// Runs per (workload, size, mode, bound) at most.
pub const TRIES: u32 = 3;

/// Peak RSS in MiB: the larger of `VmHWM` and the highest sampled `smaps_rollup` RSS (pages
/// moved by UFFDIO_MOVE can leave the kernel's RSS counter, hence `VmHWM`, below what
/// `smaps_rollup` counts).
pub fn peak_rss_mib(r: &RunResult) -> Option<f64> {
    let hwm = r.peak_rss_kib.map(|k| k as f64 / 1024.0);
    let sampled = r.footprint_timeline.iter().map(|s| s.1);
    hwm.into_iter().chain(sampled).reduce(f64::max)
}

/// Peak RSS (see [`peak_rss_mib`]) over the live size, if measured.
pub fn rss_ratio(r: &RunResult) -> Option<f64> {
    let rss = peak_rss_mib(r)?;
    (r.live_mib > 0).then(|| rss / r.live_mib as f64)
}

/// Whether `r` ran and stayed within `bound` x live.
pub fn fits(r: &RunResult, bound: f64) -> bool {
    r.status == "ok" && rss_ratio(r).is_some_and(|x| x <= bound)
}

/// The next heap factor to try after `r` ran at `factor` and missed `bound`, or `None` if
/// there is nothing smaller worth trying (a failed run, or already at 1x).
pub fn next_factor(r: &RunResult, factor: f64, bound: f64) -> Option<f64> {
    super::metrics::next_footprint_factor(r.status == "ok", rss_ratio(r), factor, bound)
}

/// The larger heap factor to try after `r` ran at `factor` and fitted `bound` with room to
/// spare, or `None`.
pub fn grown_factor(r: &RunResult, factor: f64, bound: f64) -> Option<f64> {
    if !fits(r, bound) {
        return None;
    }
    super::metrics::grow_footprint_factor(rss_ratio(r), factor, bound)
}

/// The report section: per (workload, size, bound), every mode's calibrated row and the peers'.
pub fn section(w: &mut String, rows: &[RunResult], peers: &[RunResult]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        w,
        "## Equal memory: configurations chosen by measured peak RSS\n"
    );
    let _ = writeln!(w, "Peak RSS here is the larger of `VmHWM` and the highest sampled `smaps_rollup` RSS (pages moved by UFFDIO_MOVE can leave the kernel's RSS counter below what `smaps_rollup` counts). Each mode was calibrated to a peak RSS of at most B x the live size: first run with the moving half at B x live, then (up to {TRIES} runs) with the factor scaled down by the measured overshoot, or up by the room left when a run used less than 85 % of the bound (a mode is compared with the largest heap that fits, as the peers' `-Xmx` fills theirs); the row is the fitting run with the highest peak RSS, else the last run. `fits` when its peak RSS is within the bound; otherwise the mode *cannot run at this footprint* (its lowest RSS, or why it failed). Peers run at their own settings (`-Xmx`, `GC_set_max_heap_size` bound the heap, not the RSS) and are judged by their measured RSS the same way.\n");
    let mut keys: Vec<(String, u64, u64)> = Vec::new();
    for r in rows {
        let b = (r.footprint_bound.unwrap_or(0.0) * 100.0) as u64;
        if !keys.contains(&(r.workload.clone(), r.live_mib, b)) {
            keys.push((r.workload.clone(), r.live_mib, b));
        }
    }
    for (workload, live, b100) in keys {
        let bound = b100 as f64 / 100.0;
        let _ = writeln!(
            w,
            "### {workload} @ {live} MiB live, peak RSS <= {bound}x\n"
        );
        let _ = writeln!(w, "| mode | heap factor (runs) | peak RSS MiB | RSS / live | fits | longest wait ms | wait MMU 100 ms | metered p99 ms | total s | status |");
        let _ = writeln!(w, "|---|---:|---:|---:|---|---:|---:|---:|---:|---|");
        let f2 = |v: Option<f64>| v.map_or("n/a".to_string(), |x| format!("{x:.2}"));
        let line = |w: &mut String, r: &RunResult, factor: String| {
            let p99 = r.metered.as_ref().and_then(|m| m.latency).map(|p| p.p99);
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} |",
                r.mode,
                factor,
                peak_rss_mib(r).map_or("n/a".into(), |m| format!("{m:.0}")),
                rss_ratio(r).map_or("n/a".to_string(), |x| format!("{x:.2}x")),
                if fits(r, bound) {
                    "yes"
                } else {
                    "**no: cannot run at this footprint**"
                },
                f2(r.longest_wait_ms),
                f2(r.wait_mmu_100ms),
                f2(p99),
                r.total_s,
                r.status
            );
        };
        for r in rows.iter().filter(|r| {
            r.workload == workload
                && r.live_mib == live
                && (r.footprint_bound.unwrap_or(0.0) * 100.0) as u64 == b100
        }) {
            let factor = format!("{} ({})", f2(r.heap_factor), r.footprint_tries.unwrap_or(1));
            line(w, r, factor);
        }
        for p in peers
            .iter()
            .filter(|p| p.workload == workload && p.live_mib == live)
        {
            line(w, p, "own".into());
        }
        let _ = writeln!(w);
    }
}

/// Quick-mode checks of the calibrated rows: the figures a row's verdict rests on are present,
/// and the factor sequence obeys the rules (at least 1x; above the bound only when grown after
/// a first run at the bound left room: the moving half need not be resident in full).
pub fn sanity(rows: &[RunResult]) -> Vec<String> {
    let mut out = Vec::new();
    for r in rows {
        let name = format!("{} {} MiB {} (footprint)", r.workload, r.live_mib, r.mode);
        let (Some(bound), Some(f)) = (r.footprint_bound, r.heap_factor) else {
            out.push(format!("{name}: bound or heap factor missing"));
            continue;
        };
        if !(f.is_finite() && f >= 1.0) {
            out.push(format!("{name}: heap factor {f} below 1"));
        } else if f > bound + 1e-9 && r.footprint_tries.unwrap_or(0) < 2 {
            out.push(format!(
                "{name}: heap factor {f} above the bound {bound} in its first run"
            ));
        }
        if r.status == "ok" && r.peak_rss_kib.is_none() {
            out.push(format!("{name}: ran but no peak RSS"));
        }
        if !(1..=TRIES).contains(&r.footprint_tries.unwrap_or(0)) {
            out.push(format!("{name}: tries {:?}", r.footprint_tries));
        }
    }
    out
}

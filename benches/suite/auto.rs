//! `Auto` by measurement, checked in the same run (issue 15 item 5): the `auto` mode's run
//! records what `Strategy::Auto` and `FaultMode::Auto` picked and the calibration figures they
//! picked by ([`record`], in the child); the parent then sets them beside the same suite run's
//! measured cost of the fixed modes of the same (workload, live size) ([`judge`]): compaction
//! CPU per destination page of `copy/sigbus`, `move/sigbus` and `minor/sigbus`
//! (`CpuSplit::compact` over `CycleStats::pages_filled`), and the total time of `copy/sigbus`
//! against `copy/thread`; with a verdict per choice ("Auto picked the faster": yes / no, or
//! n/a and why). [`section`] is the report's table; [`sanity`] is the quick suite's check that
//! every `auto` run that ran concurrently carries its picks, its figures and both verdicts
//! (present, not that they say yes).
//!
//! Invariants: the figures are the children's measurements, never edited; a verdict compares
//! runs of one suite invocation only; the strategy verdict compares per-page CPU figures (not
//! wall time), the delivery verdict total time (one run each, so noisy on a loaded machine:
//! the table shows both runs' figures).

use std::fmt::Write as _;

use faultline::{measured_kernel_costs, FaultMode, GcMode, Heap, Strategy};
use serde::{Deserialize, Serialize};

use super::modes::Mode;
use super::run::RunResult;

/// What the `auto` run picked and by which figures, and (set by the parent) how the same
/// suite run's fixed modes measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AutoRow {
    /// The strategy `Strategy::Auto` picked (`copy`, `move`).
    pub strategy: String,
    /// The delivery `FaultMode::Auto` picked (`sigbus`, `thread`).
    pub faults: String,
    /// The heap's reason lines for both picks.
    pub strategy_reason: String,
    pub faults_reason: String,
    /// `calibrate::measure_mapping`, ns per page (1 page per call / 16), with another thread
    /// running; `None` when not measured (no `UFFDIO_MOVE`) or failed (`mapping_error`).
    pub copy_single_ns: Option<f64>,
    pub copy_run_ns: Option<f64>,
    pub move_single_ns: Option<f64>,
    pub move_run_ns: Option<f64>,
    pub move_over_copy: Option<f64>,
    pub mapping_error: Option<String>,
    /// `calibrate::measure_faults`, ns per fault round trip; and the measurement's wall time.
    pub sigbus_ns: Option<f64>,
    pub thread_ns: Option<f64>,
    pub thread_over_sigbus: Option<f64>,
    pub fault_calibration_ms: Option<f64>,
    pub faults_error: Option<String>,
    /// The same suite run, same (workload, size): compaction CPU per destination page, µs,
    /// of each fixed strategy with SIGBUS delivery (`None`: that mode did not run or ran no
    /// concurrent cycle), and of this `auto` run itself.
    pub copy_compact_us_per_page: Option<f64>,
    pub move_compact_us_per_page: Option<f64>,
    pub minor_compact_us_per_page: Option<f64>,
    pub auto_compact_us_per_page: Option<f64>,
    /// The same, GC CPU by the split (`CpuSplit::total`) per destination page, µs.
    pub copy_gc_us_per_page: Option<f64>,
    pub move_gc_us_per_page: Option<f64>,
    /// Total time, s, of `copy/sigbus` and `copy/thread` in the same suite run.
    pub sigbus_total_s: Option<f64>,
    pub thread_total_s: Option<f64>,
    /// "yes" / "no": the picked strategy's compaction CPU per page is the lower of copy's
    /// and move's; "n/a: why" when one of them did not run.
    pub strategy_verdict: Option<String>,
    /// "yes" / "no": the picked delivery's run (with copy) took the shorter total time;
    /// "n/a: why".
    pub faults_verdict: Option<String>,
}

/// In the child: the picks and figures of a heap created in `mode`, when both choices were
/// `Auto` and it runs concurrently.
pub fn record(mode: &Mode, heap: &Heap) -> Option<AutoRow> {
    if mode.gc != GcMode::Concurrent
        || mode.strategy != Strategy::Auto
        || mode.faults != FaultMode::Auto
    {
        return None;
    }
    let info = heap.mode_info();
    if info.mode != GcMode::Concurrent {
        return None;
    }
    let reason = |prefix: &str| {
        info.reasons
            .iter()
            .find(|l| l.starts_with(prefix))
            .cloned()
            .unwrap_or_default()
    };
    let mut row = AutoRow {
        strategy: info.strategy.map_or("-", |s| s.name()).into(),
        faults: info.faults.map_or("-", |f| f.name()).into(),
        strategy_reason: reason("strategy:"),
        faults_reason: reason("faults:"),
        ..AutoRow::default()
    };
    let costs = measured_kernel_costs();
    match costs.mapping {
        Some(Ok(m)) => {
            row.copy_single_ns = Some(m.copy_single_ns);
            row.copy_run_ns = Some(m.copy_run_ns);
            row.move_single_ns = Some(m.move_single_ns);
            row.move_run_ns = Some(m.move_run_ns);
            row.move_over_copy = Some(m.move_over_copy());
        }
        Some(Err(e)) => row.mapping_error = Some(e),
        None => row.mapping_error = Some("not measured (no UFFDIO_MOVE to compare)".into()),
    }
    match costs.faults {
        Some(Ok(c)) => {
            row.sigbus_ns = Some(c.sigbus_ns);
            row.thread_ns = Some(c.thread_ns);
            row.thread_over_sigbus = Some(c.thread_over_sigbus());
            row.fault_calibration_ms = Some(c.took_ms);
        }
        Some(Err(e)) => row.faults_error = Some(e),
        None => row.faults_error = Some("not measured (no SIGBUS delivery to compare)".into()),
    }
    Some(row)
}

/// `(compact µs / page, GC CPU µs / page)` of a run, if it ran concurrent cycles that filled
/// pages.
fn per_page(r: &RunResult) -> Option<(f64, f64)> {
    let c = r.cpu_split.as_ref()?;
    if r.status != "ok" || c.concurrent_cycles == 0 || c.pages == 0 {
        return None;
    }
    let pages = c.pages as f64;
    Some((c.compact_ms * 1e3 / pages, c.total_ms * 1e3 / pages))
}

/// In the parent, after every run: set each `auto` row beside the same suite run's fixed
/// modes of its (workload, size), and give the verdicts.
pub fn judge(results: &mut [RunResult]) {
    let snapshot: Vec<RunResult> = results.to_vec();
    let find = |wl: &str, mib: u64, mode: &str| {
        snapshot
            .iter()
            .find(|r| !r.peer && r.workload == wl && r.live_mib == mib && r.mode == mode)
    };
    for r in results.iter_mut() {
        let own = per_page(r);
        let (wl, mib) = (r.workload.clone(), r.live_mib);
        let Some(a) = r.auto.as_mut() else { continue };
        let copy = find(&wl, mib, "copy/sigbus").and_then(per_page);
        let mv = find(&wl, mib, "move/sigbus").and_then(per_page);
        a.copy_compact_us_per_page = copy.map(|p| p.0);
        a.move_compact_us_per_page = mv.map(|p| p.0);
        a.minor_compact_us_per_page = find(&wl, mib, "minor/sigbus")
            .and_then(per_page)
            .map(|p| p.0);
        a.auto_compact_us_per_page = own.map(|p| p.0);
        a.copy_gc_us_per_page = copy.map(|p| p.1);
        a.move_gc_us_per_page = mv.map(|p| p.1);
        a.strategy_verdict = Some(match (copy, mv) {
            (Some(c), Some(m)) => {
                let faster = if c.0 <= m.0 { "copy" } else { "move" };
                if a.strategy == faster { "yes" } else { "no" }.into()
            }
            _ => "n/a: copy/sigbus and move/sigbus did not both run concurrent cycles here".into(),
        });
        let total = |mode: &str| {
            find(&wl, mib, mode)
                .filter(|r| r.status == "ok")
                .map(|r| r.total_s)
        };
        a.sigbus_total_s = total("copy/sigbus");
        a.thread_total_s = total("copy/thread");
        a.faults_verdict = Some(match (a.sigbus_total_s, a.thread_total_s) {
            (Some(s), Some(t)) => {
                let faster = if s <= t { "sigbus" } else { "thread" };
                if a.faults == faster { "yes" } else { "no" }.into()
            }
            _ => "n/a: copy/sigbus and copy/thread did not both run here".into(),
        });
    }
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or("n/a".into(), |v| format!("{v:.digits$}"))
}

/// The report's section: one row per `auto` run.
pub fn section(w: &mut String, results: &[RunResult]) {
    let rows: Vec<(&RunResult, &AutoRow)> = results
        .iter()
        .filter_map(|r| r.auto.as_ref().map(|a| (r, a)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(w, "## Auto by measurement\n");
    let _ = writeln!(w, "What the `auto` mode (`Strategy::Auto`, `FaultMode::Auto`) picked, by the figures it measured at heap creation in its own process (`faultline::calibrate`: `UFFDIO_COPY` against `UFFDIO_MOVE`, ns per page at 1 / 16 pages per call with another thread running, move picked at most 0.8x copy; a fault's round trip by SIGBUS against a handler thread, thread picked at most 0.8x SIGBUS), beside the same suite run's measured cost of the fixed modes of the same workload and size: compaction CPU per destination page (`CpuSplit::compact` / `pages_filled`, the compaction workers' thread CPU; GC CPU per page is the whole split) of `copy/sigbus`, `move/sigbus`, `minor/sigbus` and the `auto` run itself, and total time of `copy/sigbus` against `copy/thread`. `picked the faster`: strategy, whether the pick has the lower compaction CPU per page of copy and move; delivery, whether the pick's run had the shorter total time (one run each: noisy on a loaded machine).\n");
    let _ = writeln!(w, "| workload | live MiB | picked | copy / move ns per page (1 / 16 per call) | move / copy | SIGBUS / thread round trip ns | thread / SIGBUS | calibration ms | compact µs / page: copy, move, minor, auto | GC CPU µs / page: copy, move | strategy: picked the faster | total s: copy/sigbus, copy/thread | delivery: picked the faster |");
    let _ = writeln!(
        w,
        "|---|---:|---|---|---:|---|---:|---:|---|---|---|---|---|"
    );
    for (r, a) in rows {
        let _ = writeln!(
            w,
            "| {} | {} | {}/{} | {} / {}, {} / {} | {} | {} / {} | {} | {} | {}, {}, {}, {} | {}, {} | {} | {}, {} | {} |",
            r.workload,
            r.live_mib,
            a.strategy,
            a.faults,
            opt(a.copy_single_ns, 0),
            opt(a.copy_run_ns, 0),
            opt(a.move_single_ns, 0),
            opt(a.move_run_ns, 0),
            a.mapping_error
                .as_ref()
                .map_or_else(|| opt(a.move_over_copy, 2), |e| format!("n/a: {e}")),
            opt(a.sigbus_ns, 0),
            opt(a.thread_ns, 0),
            a.faults_error
                .as_ref()
                .map_or_else(|| opt(a.thread_over_sigbus, 2), |e| format!("n/a: {e}")),
            opt(a.fault_calibration_ms, 1),
            opt(a.copy_compact_us_per_page, 3),
            opt(a.move_compact_us_per_page, 3),
            opt(a.minor_compact_us_per_page, 3),
            opt(a.auto_compact_us_per_page, 3),
            opt(a.copy_gc_us_per_page, 3),
            opt(a.move_gc_us_per_page, 3),
            a.strategy_verdict.as_deref().unwrap_or("missing"),
            opt(a.sigbus_total_s, 2),
            opt(a.thread_total_s, 2),
            a.faults_verdict.as_deref().unwrap_or("missing"),
        );
    }
    let _ = writeln!(w);
}

/// Quick-mode checks: every `auto` run that ran concurrently carries its picks, the figures
/// (or why they are missing) and both verdicts.
pub fn sanity(results: &[RunResult]) -> Vec<String> {
    let mut out = Vec::new();
    for r in results
        .iter()
        .filter(|r| !r.peer && r.mode == "auto" && r.status == "ok")
    {
        let id = format!("{} @ {} MiB, auto", r.workload, r.live_mib);
        if !r.info.starts_with("Concurrent") {
            continue;
        }
        let Some(a) = &r.auto else {
            out.push(format!("{id}: no Auto-by-measurement record"));
            continue;
        };
        if !["copy", "move"].contains(&a.strategy.as_str())
            || !["sigbus", "thread"].contains(&a.faults.as_str())
        {
            out.push(format!("{id}: picks {}/{}", a.strategy, a.faults));
        }
        for (what, line) in [
            ("strategy", &a.strategy_reason),
            ("faults", &a.faults_reason),
        ] {
            if !line.contains("auto") {
                out.push(format!("{id}: the {what} reason is not Auto's: {line:?}"));
            }
        }
        let figures = |v: &[Option<f64>]| v.iter().all(|x| x.is_some_and(|x| x > 0.0));
        if a.mapping_error.is_none()
            && !figures(&[
                a.copy_single_ns,
                a.copy_run_ns,
                a.move_single_ns,
                a.move_run_ns,
            ])
        {
            out.push(format!("{id}: copy/move figures missing"));
        }
        if a.faults_error.is_none() && !figures(&[a.sigbus_ns, a.thread_ns]) {
            out.push(format!("{id}: fault round-trip figures missing"));
        }
        for (what, v) in [
            ("strategy", &a.strategy_verdict),
            ("delivery", &a.faults_verdict),
        ] {
            match v.as_deref() {
                Some("yes" | "no") => {}
                Some(s) if s.starts_with("n/a: ") => {}
                other => out.push(format!("{id}: {what} verdict {other:?}")),
            }
        }
    }
    out
}

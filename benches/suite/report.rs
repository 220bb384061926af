//! The Markdown report, the peers' rows, and the sanity checks of a run.
//!
//! Invariants:
//! - peers' rows get the same statistics as ours, computed here from their raw pauses (MMU only
//!   when they give pause start times; otherwise "n/a"), and are marked as peers;
//! - the goals table compares figures of the same run and says "n/a" where a side is missing;
//!   it states whether each goal is met, it never adjusts a figure to meet one.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::metrics;
use super::run::RunResult;

#[derive(Deserialize)]
struct PeerFile {
    peers: Vec<PeerRow>,
}

#[derive(Deserialize)]
struct PeerRow {
    peer: String,
    workload: String,
    live_mib: u64,
    pauses_ms: Vec<f64>,
    #[serde(default)]
    pause_starts_s: Option<Vec<f64>>,
    total_s: f64,
    #[serde(default)]
    gc_cpu_s: Option<f64>,
    #[serde(default)]
    peak_rss_kib: Option<u64>,
    #[serde(default)]
    note: String,
    /// The request workload's metered latency (ms).
    #[serde(default)]
    metered: Option<PeerMetered>,
}

#[derive(Deserialize)]
struct PeerMetered {
    count: u64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    rate_hz: f64,
    achieved_hz: f64,
}

/// Peers' rows, and what went wrong reading them.
pub struct Peers {
    pub rows: Vec<RunResult>,
    pub note: String,
}

pub fn load_peers(path: &Path) -> Peers {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(_) => {
            return Peers {
                rows: Vec::new(),
                note: format!("no peers file ({} absent)", path.display()),
            }
        }
    };
    let file: PeerFile = match serde_json::from_str(&text) {
        Ok(f) => f,
        Err(e) => {
            return Peers {
                rows: Vec::new(),
                note: format!("peers file {} unreadable: {e}", path.display()),
            }
        }
    };
    let rows = file
        .peers
        .into_iter()
        .map(|p| {
            let iv: Option<Vec<(f64, f64)>> = p.pause_starts_s.as_ref().and_then(|st| {
                (st.len() == p.pauses_ms.len()).then(|| {
                    let mut v: Vec<(f64, f64)> = st
                        .iter()
                        .zip(&p.pauses_ms)
                        .map(|(&s, &d)| (s, s + d / 1e3))
                        .collect();
                    v.sort_by(|a, b| a.0.total_cmp(&b.0));
                    v
                })
            });
            let mmu = |w: f64| iv.as_ref().and_then(|v| metrics::mmu(v, p.total_s, w));
            RunResult {
                workload: p.workload,
                live_mib: p.live_mib,
                mode: p.peer,
                status: if p.pauses_ms.is_empty() && p.total_s <= 0.0 {
                    format!("failed: {}", p.note)
                } else {
                    "ok".into()
                },
                info: p.note,
                peer: true,
                cycles: p.pauses_ms.len() as u64,
                pause: metrics::percentiles_ms(&p.pauses_ms),
                mmu_1ms: mmu(1e-3),
                mmu_10ms: mmu(1e-2),
                mmu_100ms: mmu(1e-1),
                mmu_curve: iv
                    .as_ref()
                    .map(|v| metrics::mmu_curve(v, p.total_s))
                    .unwrap_or_default(),
                timeline_pauses: iv.as_ref().map_or(0, |v| v.len() as u64),
                pauses_ms: p.pauses_ms,
                total_s: p.total_s,
                gc_cpu_s: p.gc_cpu_s,
                peak_rss_kib: p.peak_rss_kib,
                metered: p.metered.map(|m| super::request::MeteredResult {
                    latency: Some(metrics::Pct {
                        count: m.count,
                        p50: m.p50,
                        p99: m.p99,
                        p999: m.p999,
                        max: m.max,
                    }),
                    requests: m.count,
                    rate_hz: m.rate_hz,
                    achieved_hz: m.achieved_hz,
                    tail_split: None,
                    tail_samples: None,
                    start_mono_ns: None,
                }),
                ..RunResult::default()
            }
        })
        .collect::<Vec<_>>();
    Peers {
        note: format!("{} peer rows from {}", rows.len(), path.display()),
        rows,
    }
}

fn f(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.abs() < 0.01 {
        format!("{x:.4}")
    } else if x.abs() < 1.0 {
        format!("{x:.3}")
    } else if x.abs() < 100.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.0}")
    }
}

fn opt(x: Option<f64>) -> String {
    x.map_or("n/a".into(), f)
}

fn mmu_s(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |u| format!("{u:.2}"))
}

fn pct3(p: &Option<metrics::Pct>) -> String {
    p.map_or("-".into(), |p| {
        format!("{} / {} / {}", f(p.p50), f(p.p99), f(p.max))
    })
}

fn ok(r: &RunResult) -> bool {
    r.status == "ok"
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() {
        format!("{:.2}x", a / b)
    } else {
        "n/a".into()
    }
}

pub fn markdown(
    results: &[RunResult],
    peers: &Peers,
    sizes: &[usize],
    quick: bool,
    command: &str,
    took: Duration,
    machine: Option<&crate::machine::MachineProbe>,
) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# Faultline pause and throughput suite\n");
    let _ = writeln!(
        w,
        "Command: `cargo bench -p faultline --bench suite{}` ({} run, {:.0} s). Machine: {} CPUs, kernel {}, load average at the end {}. **The machine is shared with other builds: compare ratios within this run, not absolute figures across runs.** Peers: {}.\n",
        if command.is_empty() {
            String::new()
        } else {
            format!(" -- {command}")
        },
        if quick { "quick" } else { "full" },
        took.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        peers.note
    );
    if let Some(m) = machine {
        let _ = writeln!(w, "{}\n", m.sentence());
    }
    let _ = writeln!(w, "Every (workload, live size, mode) ran in a fresh child process. The report leads with what the mutators saw (their waits as the heap recorded them, a mutator-side MMU from those wait intervals, the request workload's metered latency, the footprint); the collector's pauses follow. Pauses are the collector's own (`CycleStats`: `stw`, or `initial-mark` + `remark+flip`, each including its time to safepoint), over every cycle of the run. MMU is computed from the world-stopped timeline (`Heap::pause_timeline`: stop requested to world released) over the whole run; n/a when the run is shorter than the window. `mutator-view MMU`: over each mutator's work phase (after building), with every unit of work between two safepoint polls that took over 5 ms counted as lost time (work included, so a lower bound; lowest over the mutator threads): it shows waits the world-stopped timeline does not, such as an allocation waiting for the previous cycle to end. `mutator longest` is the mutator's own view: its longest unit of work between two safepoint polls (includes pauses, fault stalls, TLAB refills, waiting for a previous cycle to end before starting the next one, allocation stalls). `alloc stalls`: allocations that found the heap out of memory, after which the workload waited for the running cycle (and, a second time, one more whole cycle) and retried: count and total seconds. Total: workload start to end plus any cycle still running. GC CPU: process CPU minus the mutator threads' and the bystander's own thread CPU, a stop-the-world pause (on the triggering mutator) counted as GC by its thread CPU (SIGBUS fault handling is on the mutators, so counted as mutator time). RSS: the child's VmHWM. Syscalls: means per cycle of the arena's own counted calls. Peers (marked *peer*) are computed from their raw pause lists.\n");
    if results
        .iter()
        .any(|r| r.workload != "-" && ok(r) && r.bystander.is_none())
    {
        let _ = writeln!(w, "**No bystander thread** ran beside (some of) these workloads (`--no-bystander`): their process had only the workload's and the collector's threads, as the peers' processes have; the kernel-citizenship section is empty for them.\n");
    }
    let mut keys: Vec<(String, u64)> = Vec::new();
    for r in results.iter().chain(peers.rows.iter()) {
        if r.workload != "-" && !keys.contains(&(r.workload.clone(), r.live_mib)) {
            keys.push((r.workload.clone(), r.live_mib));
        }
    }
    headline(w, results, peers, &keys);
    let _ = writeln!(
        w,
        "## Collector pauses, utilization, time, memory, syscalls\n"
    );
    for (wl, mib) in &keys {
        let _ = writeln!(w, "### {wl} @ {mib} MiB live\n");
        let _ = writeln!(w, "| mode | cycles | pause p50 ms | p99 | p99.9 | max | MMU 1 ms | 10 ms | 100 ms | mutator-view MMU 10 / 100 ms | total s | GC CPU s | peak RSS MiB | faults | stall p99 / max µs | uffd / cycle | mmap-family / cycle | register+unreg. / cycle | madvise (+ process_madvise) / cycle | mutator longest ms | alloc stalls (s) | live after MiB | status |");
        let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        for r in results
            .iter()
            .chain(peers.rows.iter())
            .filter(|r| &r.workload == wl && r.live_mib == *mib)
        {
            let name = if r.peer {
                format!("*peer* {}", r.mode)
            } else {
                r.mode.clone()
            };
            if !ok(r) {
                let _ = writeln!(
                    w,
                    "| {name} | | | | | | | | | | | | | | | | | | | | | | {} |",
                    r.status
                );
                continue;
            }
            let p = r.pause;
            let _ = writeln!(
                w,
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.cycles,
                p.map_or("-".into(), |p| f(p.p50)),
                p.map_or("-".into(), |p| f(p.p99)),
                p.map_or("-".into(), |p| f(p.p999)),
                p.map_or("-".into(), |p| f(p.max)),
                mmu_s(r.mmu_1ms),
                mmu_s(r.mmu_10ms),
                mmu_s(r.mmu_100ms),
                if r.peer {
                    "n/a".into()
                } else {
                    format!("{} / {}", mmu_s(r.mutator_mmu_10ms), mmu_s(r.mutator_mmu_100ms))
                },
                f(r.total_s),
                opt(r.gc_cpu_s),
                r.peak_rss_kib.map_or("n/a".into(), |k| format!("{:.0}", k as f64 / 1024.0)),
                if r.peer { "n/a".into() } else { r.faults.to_string() },
                if r.peer { "n/a".into() } else { format!("{} / {}", f(r.fault_p99_us), f(r.fault_max_us)) },
                opt(r.uffd_per_cycle),
                opt(r.mmap_family_per_cycle),
                opt(r.register_per_cycle),
                match r.process_madvise_per_cycle {
                    Some(b) if b > 0.0 => format!("{} (+ {})", opt(r.madvise_per_cycle), f(b)),
                    _ => opt(r.madvise_per_cycle),
                },
                opt(r.longest_unit_ms),
                if r.peer {
                    "n/a".into()
                } else {
                    format!("{} ({})", r.alloc_stalls, f(r.alloc_stall_s))
                },
                opt(r.measured_live_mib),
                if r.peer { format!("ok ({})", r.info) } else { "ok".into() },
            );
        }
        let _ = writeln!(w);
    }

    // Pause anatomy.
    let _ = writeln!(w, "## Longest pause of each kind\n");
    let _ = writeln!(w, "Per run, ms: the longest pause of each kind; `remark part`: the longest remark share of a remark+flip pause (`CycleStats::remark`, the rest is planning and the flip); `ttsp`: the longest time to safepoint of any cycle (inside the pauses). `remark work`: the longest remark share less its cycle's time to safepoint (the remark's own work; a lower bound where another pause of the cycle had the longer time to safepoint). `wp→satb`: barrier-free cycles that fell back to SATB before their remark because the writes outran precleaning (`CycleStats::satb_switch`, with a `satb-switch` pause of O(roots)), of all cycles; `remark pages`: the most written pages one barrier-free remark rescanned. n/a: not in the run's record (recorded by an older version of the suite).\n");
    let _ = writeln!(
        w,
        "| workload | live MiB | mode | longest by kind | remark part | ttsp | remark work | wp→satb | remark pages |"
    );
    let _ = writeln!(w, "|---|---:|---|---|---:|---:|---:|---:|---:|");
    for r in results.iter().filter(|r| ok(r) && r.workload != "-") {
        let kinds: Vec<String> = r
            .pause_max_by_kind
            .iter()
            .map(|(k, v)| format!("{k} {}", f(*v)))
            .collect();
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.workload,
            r.live_mib,
            r.mode,
            kinds.join(", "),
            opt(r.remark_max_ms),
            opt(r.ttsp_max_ms),
            opt(r.remark_work_max_ms),
            if r.mode.contains("wp_async") {
                format!("{} / {}", r.satb_switches, r.cycles)
            } else {
                "-".into()
            },
            if r.mode.contains("wp_async") {
                r.remark_dirty_max.to_string()
            } else {
                "-".into()
            },
        );
    }
    let _ = writeln!(w);

    // Generational modes.
    if results.iter().any(|r| ok(r) && r.mode.contains("gen")) {
        let _ = writeln!(
            w,
            "## Generational cycles
"
        );
        let _ = writeln!(w, "Per generational run (`CycleStats::gen`): young and full cycles, MiB promoted into the old generation, remembered-set cards scanned and old reference slots found in them (all cycles together), the longest remark of a concurrent young cycle (ms), the wall time of the young cycles that left an old generation alone (mean / longest, s) and the mean wall time of the cycles that traced everything (full cycles and the heap's first, s).\n");
        let _ = writeln!(
            w,
            "| workload | live MiB | mode | young | full | promoted MiB | dirty cards | old slots | young remark max | young wall mean / max s | whole-heap wall mean s |"
        );
        let _ = writeln!(w, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in results.iter().filter(|r| ok(r) && r.mode.contains("gen")) {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} / {} | {} |",
                r.workload,
                r.live_mib,
                r.mode,
                r.young_cycles,
                r.full_cycles,
                r.promoted_mib,
                r.dirty_cards,
                r.old_slots,
                opt(r.young_remark_max_ms),
                opt(r.young_wall_mean_s),
                opt(r.young_wall_max_s),
                opt(r.whole_wall_mean_s),
            );
        }
        let _ = writeln!(w);
    }

    // Fault attribution.
    fault_attribution(w, results);
    cpu_split(w, results);
    super::auto::section(w, results);

    // Goals.
    let _ = writeln!(w, "## Goals (measured, per workload)\n");
    let _ = writeln!(w, "`STW max / conc. max`: the stop-the-world run's longest pause over the longest pause of the worst and of the best concurrent mode (goal >= 50x). `growth`: worst concurrent longest pause at the largest size over the smallest (goal: not growing). `conc. p99 / ZGC p99`: the best concurrent mode's p99 over ZGC's (goal <= 1). `conc. total / STW total`: best concurrent mode (goal <= 1.15). `conc. total / Boehm total` (goal <= 1).\n");
    let _ = writeln!(w, "| workload | live MiB | STW max ms | conc. max ms: best (mode) / worst (mode) | STW max / conc. max (worst, best) | growth of worst conc. max | conc. p99 / ZGC p99 | best conc. total / STW total | conc. total / Boehm total |");
    let _ = writeln!(w, "|---|---:|---:|---|---|---:|---:|---:|---:|");
    let conc = |wl: &str, mib: u64| -> Vec<&RunResult> {
        results
            .iter()
            .filter(|r| {
                r.workload == wl
                    && r.live_mib == mib
                    && ok(r)
                    && r.mode != "stw"
                    && r.pause.is_some()
            })
            .collect()
    };
    let find = |set: &[RunResult], wl: &str, mib: u64, mode: &str| -> Option<RunResult> {
        set.iter()
            .find(|r| r.workload == wl && r.live_mib == mib && r.mode == mode && ok(r))
            .cloned()
    };
    let small = sizes.iter().min().map_or(0, |&s| (s >> 20) as u64);
    let large = sizes.iter().max().map_or(0, |&s| (s >> 20) as u64);
    for (wl, mib) in &keys {
        let cs = conc(wl, *mib);
        if cs.is_empty() {
            continue;
        }
        let maxp = |r: &RunResult| r.pause.map_or(0.0, |p| p.max);
        let best = cs
            .iter()
            .min_by(|a, b| maxp(a).total_cmp(&maxp(b)))
            .copied();
        let worst = cs
            .iter()
            .max_by(|a, b| maxp(a).total_cmp(&maxp(b)))
            .copied();
        let stw = find(results, wl, *mib, "stw");
        let stw_max = stw.as_ref().and_then(|r| r.pause).map(|p| p.max);
        let growth = if *mib == large && large != small {
            let lo = conc(wl, small).iter().map(|r| maxp(r)).fold(0.0, f64::max);
            worst.map_or("n/a".into(), |wr| ratio(maxp(wr), lo))
        } else {
            "-".into()
        };
        let zgc = find(&peers.rows, wl, *mib, "java-zgc").and_then(|r| r.pause);
        let best_p99 = cs
            .iter()
            .filter_map(|r| r.pause.map(|p| p.p99))
            .fold(f64::INFINITY, f64::min);
        let best_total = cs.iter().map(|r| r.total_s).fold(f64::INFINITY, f64::min);
        let boehm = find(&peers.rows, wl, *mib, "boehm");
        let _ = writeln!(
            w,
            "| {wl} | {mib} | {} | {} / {} | {} , {} | {growth} | {} | {} | {} |",
            opt(stw_max),
            best.map_or("-".into(), |r| format!("{} ({})", f(maxp(r)), r.mode)),
            worst.map_or("-".into(), |r| format!("{} ({})", f(maxp(r)), r.mode)),
            match (stw_max, worst) {
                (Some(s), Some(c)) => ratio(s, maxp(c)),
                _ => "n/a".into(),
            },
            match (stw_max, best) {
                (Some(s), Some(c)) => ratio(s, maxp(c)),
                _ => "n/a".into(),
            },
            zgc.map_or("n/a (no ZGC row)".into(), |z| ratio(best_p99, z.p99)),
            stw.as_ref()
                .map_or("n/a".into(), |s| ratio(best_total, s.total_s)),
            boehm.map_or("n/a (no Boehm row)".into(), |b| ratio(
                best_total, b.total_s
            )),
        );
    }
    let _ = writeln!(w);

    // Bystander.
    let _ = writeln!(w, "## Kernel citizenship: bystander thread latency\n");
    let _ = writeln!(w, "A thread of the same process maps, touches and unmaps a 4 KiB page (`map`, takes `mmap_lock` for writing) and first-touches a page of its own region (`touch`), one operation every ~50 µs, while the workload runs. p50 / p99 / max in µs, split into samples that started during a GC cycle and the others; the baseline is the same thread alone in a process with no heap. Ratio: p99 during GC cycles over the baseline's p99 (the mutators also compete for the 2 CPUs, so outside-GC figures show the share that is CPU contention, not GC).\n");
    for &size in sizes {
        let mib = (size >> 20) as u64;
        let base = results
            .iter()
            .find(|r| r.mode == "bystander-alone" && r.live_mib == mib && ok(r))
            .and_then(|r| r.bystander.clone());
        let _ = writeln!(
            w,
            "### {mib} MiB: baseline map {}, touch {}\n",
            base.as_ref().map_or("n/a".into(), |b| pct3(&b.map_all)),
            base.as_ref().map_or("n/a".into(), |b| pct3(&b.touch_all))
        );
        let _ = writeln!(w, "| workload | mode | map in GC | map outside | map p99 ratio | touch in GC | touch outside | touch p99 ratio |");
        let _ = writeln!(w, "|---|---|---|---|---:|---|---|---:|");
        for r in results
            .iter()
            .filter(|r| r.live_mib == mib && r.workload != "-" && ok(r))
        {
            let Some(b) = &r.bystander else { continue };
            let rat = |x: &Option<metrics::Pct>, y: Option<&Option<metrics::Pct>>| match (x, y) {
                (Some(x), Some(Some(y))) => ratio(x.p99, y.p99),
                _ => "n/a".into(),
            };
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.workload,
                r.mode,
                pct3(&b.map_in_gc),
                pct3(&b.map_outside),
                rat(&b.map_in_gc, base.as_ref().map(|b| &b.map_all)),
                pct3(&b.touch_in_gc),
                pct3(&b.touch_outside),
                rat(&b.touch_in_gc, base.as_ref().map(|b| &b.touch_all)),
            );
        }
        let _ = writeln!(w);
    }

    let bad: Vec<&RunResult> = results.iter().filter(|r| !ok(r)).collect();
    if !bad.is_empty() {
        let _ = writeln!(w, "## Runs that did not produce figures\n");
        for r in bad {
            let _ = writeln!(
                w,
                "- {} @ {} MiB, {}: {}",
                r.workload, r.live_mib, r.mode, r.status
            );
        }
        let _ = writeln!(w);
    }
    let _ = writeln!(w, "Plots: `pauses-<workload>-<MiB>.svg` (pause histogram per mode), `mmu-<workload>-<MiB>.svg` (MMU curves), `bystander-<MiB>.svg` (bystander map p99 per mode, in and outside GC cycles). Raw records: `results.json`, `runs/*.json`.");
    s
}

/// Every problem that makes a run unusable: what CI checks in quick mode. `bystander`: the
/// runs had the bystander thread (and its baseline row), so its figures must be there; without
/// it (`--no-bystander`) they must not.
pub fn sanity(
    results: &[RunResult],
    workloads: &[String],
    modes: &[String],
    sizes: &[usize],
    bystander: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for &size in sizes {
        let mib = (size >> 20) as u64;
        match results
            .iter()
            .find(|r| r.mode == "bystander-alone" && r.live_mib == mib)
        {
            Some(r) if ok(r) && bystander => {}
            Some(_) if !bystander => out.push(format!(
                "bystander baseline @ {mib} MiB: present with --no-bystander"
            )),
            Some(r) => out.push(format!("bystander baseline @ {mib} MiB: {}", r.status)),
            None if bystander => out.push(format!(
                "bystander baseline @ {mib} MiB: no row (runs made with --no-bystander? pass it here too)"
            )),
            None => {}
        }
        for wl in workloads {
            for m in modes {
                let id = format!("{wl} @ {mib} MiB, {m}");
                let Some(r) = results
                    .iter()
                    .find(|r| &r.workload == wl && r.live_mib == mib && &r.mode == m)
                else {
                    out.push(format!("{id}: no row"));
                    continue;
                };
                if !ok(r) {
                    // The per-cycle baseline may be refused by the heap (not built yet): that
                    // is reported, not a failure of the run.
                    if !(m.ends_with("per-cycle") && r.status.starts_with("not available")) {
                        out.push(format!("{id}: {}", r.status));
                    }
                    continue;
                }
                out.extend(
                    check_row(r, bystander)
                        .into_iter()
                        .map(|e| format!("{id}: {e}")),
                );
            }
        }
    }
    out
}

fn check_row(r: &RunResult, bystander: bool) -> Vec<String> {
    let mut e = Vec::new();
    if r.cycles == 0 {
        e.push("no GC cycle ran".into());
    }
    match r.pause {
        None => e.push("no pauses recorded".into()),
        Some(p) => {
            if r.pauses_ms.iter().any(|&x| x <= 0.0 || !x.is_finite()) {
                e.push("a pause <= 0 or not finite".into());
            }
            if !(p.p50 > 0.0 && p.p50 <= p.p99 && p.p99 <= p.p999 && p.p999 <= p.max * 1.001) {
                e.push(format!("percentiles out of order: {p:?}"));
            }
        }
    }
    if r.timeline_pauses == 0 {
        e.push("empty world-stopped timeline".into());
    }
    for (n, u) in [
        ("1ms", r.mmu_1ms),
        ("10ms", r.mmu_10ms),
        ("100ms", r.mmu_100ms),
    ] {
        if let Some(u) = u {
            if !(0.0..=1.0).contains(&u) {
                e.push(format!("MMU {n} = {u} outside [0, 1]"));
            }
        }
    }
    if r.mmu_1ms.is_none() {
        e.push("MMU at 1 ms missing".into());
    }
    if r.mmu_curve.iter().any(|&(_, u)| !(0.0..=1.0).contains(&u)) {
        e.push("MMU curve outside [0, 1]".into());
    }
    if r.total_s.is_nan() || r.total_s <= 0.0 {
        e.push("total time not positive".into());
    }
    if r.gc_cpu_s.is_none_or(|c| !c.is_finite() || c < 0.0) {
        e.push("GC CPU time missing".into());
    }
    if r.peak_rss_kib.is_none_or(|k| k == 0) {
        e.push("peak RSS missing".into());
    }
    // Generational: every cycle is young or full, and the young cycles' walls are ordered.
    if r.mode.contains("gen") {
        if r.young_cycles + r.full_cycles != r.cycles {
            e.push(format!(
                "{} young + {} full cycles of {}",
                r.young_cycles, r.full_cycles, r.cycles
            ));
        }
        if !r.whole_wall_mean_s.is_some_and(|w| w > 0.0) {
            e.push("no cycle that traced everything (the first is one)".into());
        }
        match (r.young_wall_mean_s, r.young_wall_max_s) {
            (Some(m), Some(x)) if !(m > 0.0 && m <= x * 1.000_001) => e.push(format!(
                "young cycle walls out of order: mean {m} s, max {x} s"
            )),
            (Some(_), None) | (None, Some(_)) => e.push("young cycle walls half missing".into()),
            _ => {}
        }
    }
    // The footprint timeline: present, in time order, and in each sample PSS never above RSS
    // (both from the same `smaps_rollup` read: a page counts at most once in PSS, at least once
    // in RSS). Not compared with `VmHWM`: that is the kernel's RSS counter, which pages moved
    // by UFFDIO_MOVE can leave below what `smaps_rollup` counts (seen in CI: peak PSS 95.7
    // MiB, VmHWM 92.8 MiB, move/sigbus).
    if r.footprint_timeline.is_empty() {
        e.push("footprint timeline missing".into());
    }
    if r.footprint_timeline.windows(2).any(|w| w[1].0 < w[0].0)
        || r.footprint_timeline
            .iter()
            .any(|&(_, rss, pss)| pss > rss + 0.01)
    {
        e.push("footprint timeline out of order, or PSS above RSS".into());
    }
    if r.uffd_per_cycle.is_none()
        || r.mmap_family_per_cycle.is_none()
        || r.register_per_cycle.is_none()
    {
        e.push("syscall counts missing".into());
    }
    if r.mode != "stw" && r.uffd_per_cycle.is_some_and(|u| u <= 0.0) {
        e.push("a concurrent mode made no userfaultfd call".into());
    }
    e.extend(check_waits(r));
    // Fault attribution: every attributed fault filled its page, waited, or found it mapped;
    // rescues and long waits are waits; parts within wholes. (The resolver also counts, in
    // `faults`, faults that raced with the end of a compaction: not attributed.)
    match &r.fault_attr {
        None => e.push("fault attribution missing".into()),
        Some(a) => {
            if a.faults > r.faults
                || a.filled + a.waited + a.found_mapped < a.faults
                || a.rescued > a.waited
                || a.slept > a.waited
                || a.waited_on_worker > a.waited
                || a.wait_on_worker_ms > a.wait_ms * 1.001 + 1e-9
                || a.wait_max_us > a.wait_ms * 1e3 * 1.001 + 1e-6
                || a.own_max_us > (a.fill_ms + a.map_ms) * 1e3 * 1.001 + 1e-6
                || a.preempted + a.unpreempted != a.faults
                || a.blocked > a.faults
                || a.unpreempted_p50_us > a.unpreempted_p99_us
                || a.unpreempted_p99_us > a.unpreempted_max_us * 1.001 + 1e-6
            {
                e.push(format!(
                    "fault attribution inconsistent: {a:?} (faults {})",
                    r.faults
                ));
            }
        }
    }
    if r.satb_switches > r.cycles {
        e.push("more SATB switches than cycles".into());
    }
    match &r.bystander {
        None if bystander => {
            e.push("no bystander figures (a run made with --no-bystander? pass it here too)".into())
        }
        None => {}
        Some(_) if !bystander => e.push("bystander figures with --no-bystander".into()),
        Some(b) if b.map_all.is_none() || b.touch_all.is_none() => {
            e.push("bystander recorded nothing".into());
        }
        Some(_) => {}
    }
    e
}

/// Cause names in report order (`faultline::WaitCause::ALL`).
const CAUSES: [(&str, &str); 7] = [
    ("pause", "pause"),
    ("time-to-safepoint", "ttsp"),
    ("flip", "flip"),
    ("cycle-end", "cycle end"),
    ("alloc-stall", "alloc"),
    ("fault-stall", "fault"),
    ("assist", "assist"),
];

/// Where the fault resolver's time went, per run (`Heap::fault_breakdown`).
fn fault_attribution(w: &mut String, results: &[RunResult]) {
    let rows: Vec<&RunResult> = results
        .iter()
        .filter(|r| ok(r) && !r.peer && r.fault_attr.as_ref().is_some_and(|a| a.faults > 0))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(w, "## Fault attribution\n");
    let _ = writeln!(w, "Where the fault resolver's time went (`Heap::fault_breakdown`, both deliveries; SIGBUS delivery and `sigreturn` themselves, ~3 µs a fault on this machine per the floor benchmark, are outside it). `filled`: faults that claimed their page and filled it (`+N`: pages they filled and mapped around their own in the same call, `HeapConfig::fault_group_pages`; `fill ms` copying live words and rewriting references, `map ms` in the mapping call, `longest µs` the longest fill and map of one fault). `waited`: faults that found their page claimed by another thread: count / total ms / longest µs; `on a worker batch`: of those, pages inside a compaction worker's current batch (count / ms); `slept`: waits that outlasted the 30 µs spin (then rescued, or asleep on the futex where no rescue is possible); `rescued`: waits that outlasted the bound and mapped a copy of the page themselves. `found mapped`: the page was mapped by the time the fault claimed it. `preempted`: faults whose thread the scheduler switched out while it resolved them (an involuntary context switch: CPU contention) count / total ms; `blocked`: faults whose thread gave the CPU up itself while resolving them (a voluntary context switch: a futex sleep on a claimed page, a yield, or a sleep inside a kernel call such as a lock the mapping call waited for) count / total ms; `not preempted p50 / p99 / max µs`: the stalls of all other faults, what the fault path costs whatever the load.\n");
    let _ = writeln!(w, "| workload | live MiB | mode | faults | filled | fill ms | map ms | longest µs | waited | on a worker batch | slept | rescued | found mapped | preempted | blocked | not preempted p50 / p99 / max µs |");
    let _ = writeln!(
        w,
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let Some(a) = &r.fault_attr else { continue };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} (+{}) | {} | {} | {} | {} / {} / {} | {} / {} | {} | {} | {} | {} / {} | {} / {} | {} / {} / {} |",
            r.workload,
            r.live_mib,
            r.mode,
            a.faults,
            a.filled,
            a.neighbours,
            f(a.fill_ms),
            f(a.map_ms),
            f(a.own_max_us),
            a.waited,
            f(a.wait_ms),
            f(a.wait_max_us),
            a.waited_on_worker,
            f(a.wait_on_worker_ms),
            a.slept,
            a.rescued,
            a.found_mapped,
            a.preempted,
            f(a.preempted_ms),
            a.blocked,
            f(a.blocked_ms),
            f(a.unpreempted_p50_us),
            f(a.unpreempted_p99_us),
            f(a.unpreempted_max_us),
        );
    }
    let _ = writeln!(w);
}

/// The collector's CPU by phase per cycle (`CycleStats::cpu`), per run; and the same run's GC
/// CPU per cycle from the process clocks.
fn cpu_split(w: &mut String, results: &[RunResult]) {
    let rows: Vec<&RunResult> = results
        .iter()
        .filter(|r| ok(r) && !r.peer && r.cpu_split.as_ref().is_some_and(|c| c.cycles > 0))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        w,
        "## Collector CPU by phase
"
    );
    let _ = writeln!(w, "Per cycle, ms of thread CPU (`CycleStats::cpu`, `CLOCK_THREAD_CPUTIME_ID` of the threads doing each phase: not inflated by the load). `mark`: the marking thread (stop-the-world: inside the pause; concurrent: the GC thread's concurrent marking, SATB handshakes and ephemerons; parallel marking helpers and mark assists are not in it). `pause`: the thread running the pause (stop-the-world: the whole cycle, of which mark, compact and finish are parts; concurrent: remark+flip). `compact`: stop-the-world, the compaction in the pause; concurrent, the compaction workers summed (mutator faults' fills are in the fault attribution, on the mutators). `finish`: the old half recycled or released and dead large objects. `split total`: what the split accounts for (stop-the-world: the pause; concurrent: mark + pause + compact + finish). `GC CPU / cycle`: the process-clock figure of the pause table, for comparison (it includes the marking helpers and the fault handler thread). `pages / cycle`: destination pages filled; `compact µs / page`: compact CPU over them.\n");
    let _ = writeln!(
        w,
        "| workload | live MiB | mode | cycles (concurrent) | mark | pause | compact | finish | split total | GC CPU / cycle | pages / cycle | compact µs / page |"
    );
    let _ = writeln!(
        w,
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let Some(c) = &r.cpu_split else { continue };
        let n = c.cycles as f64;
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.workload,
            r.live_mib,
            r.mode,
            c.cycles,
            c.concurrent_cycles,
            f(c.mark_ms / n),
            f(c.pause_ms / n),
            f(c.compact_ms / n),
            f(c.finish_ms / n),
            f(c.total_ms / n),
            r.gc_cpu_s.map_or("n/a".into(), |s| f(s * 1e3 / n)),
            f(c.pages as f64 / n),
            f(c.compact_ms * 1e3 / (c.pages as f64).max(1.0)),
        );
    }
    let _ = writeln!(w);
}

fn wait_cell(r: &RunResult, cause: &str) -> String {
    match r.waits.get(cause) {
        Some(c) if c.count > 0 => format!("{} / {} / {}", c.count, f(c.total_ms), f(c.max_ms)),
        Some(_) => "0".into(),
        None => "n/a".into(),
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("n/a".into(), |k| format!("{:.0}", k as f64 / 1024.0))
}

/// The headline: the mutators' latency and the footprint, per (workload, size), and the goals
/// of issue 14 measured on them.
fn headline(w: &mut String, results: &[RunResult], peers: &Peers, keys: &[(String, u64)]) {
    let _ = writeln!(w, "## Mutator latency and footprint (the headline)\n");
    let _ = writeln!(w, "What the application saw. `longest wait`: the longest single wait of any mutator, of any cause, inclusive of what happened inside it (`Heap::mutator_waits`; JSON `longest_wait_ms`). Causes, each `count / total ms / max ms`, totals exclusive of nested waits: `pause` (parked at a safepoint after every mutator stopped), `ttsp` (parked while other mutators were still on their way to a safepoint), `flip` (space exhausted during a cycle: waited for its flip), `cycle end` (a collection was requested while a cycle still ran, so the mutator waited for that cycle to end; or the workload's own `wait_for_cycle` after an out-of-memory), `alloc` (the allocation slow path: refills, triggering or running a collection, minus the above), `fault` (resolving a fault on a page not yet compacted, SIGBUS delivery only: handler-thread faults are in the `faults` column of the pause table), `assist` (mark assists). `wait MMU`: mutator-side minimum utilization from the heap's wait logs, lowest over the mutators: the union of the logged intervals (waits of 10 µs or more) and the short waits (under 10 µs: not logged one by one but summed per 1 ms bucket, each bucket's sum laid into the gaps between logged waits from the bucket's start, so a short wait is placed up to 1 ms early and the 1 ms figure is bucket-granular; JSON `wait_mmu_logged_*` is the MMU of the logged intervals alone, the figure before short waits were counted; directories written before then hold that one as `wait_mmu_*`). `unlogged ms`: the short waits' total time. `metered p50/p99/p99.9/max`: the request workload's latency from each request's scheduled start (ms). Footprint: peak RSS (VmHWM), peak PSS (the highest `smaps_rollup` sample in the minor and move strategies: a memfd page mapped in both of the minor strategy's views counts once; in the other modes, where PSS equals RSS, the samples read `/proc/self/statm` instead, because a `smaps_rollup` read holds the mmap lock while it walks the page tables and delays the measured threads; sampled, so it can miss a short peak; `footprint-<workload>-<MiB>.svg` plots both over time), the configured heap (one half of the moving space + the large-object space) and peak RSS over the measured live size. Peers: their pauses stand in for waits (no per-cause split) and their MMU is the world-stopped one.\n");
    for (wl, mib_live) in keys {
        let rows: Vec<&RunResult> = results
            .iter()
            .chain(peers.rows.iter())
            .filter(|r| &r.workload == wl && r.live_mib == *mib_live)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let request = rows.iter().any(|r| r.metered.is_some());
        let _ = writeln!(w, "### {wl} @ {mib_live} MiB live\n");
        let mut head =
            String::from("| mode | longest wait ms (cause) | wait MMU 1 / 10 / 100 ms |");
        if request {
            head.push_str(" metered p50 / p99 / p99.9 / max ms | achieved / scheduled req/s |");
        }
        for (_, short) in CAUSES {
            head.push_str(&format!(" {short} |"));
        }
        head.push_str(" unlogged ms | peak RSS MiB | peak PSS MiB | heap + LOS MiB | RSS / live | total s | longest pause ms | status |");
        let _ = writeln!(w, "{head}");
        let ncol = head.matches('|').count() - 1;
        let _ = writeln!(w, "|---|{}", "---:|".repeat(ncol - 2) + "---|");
        for r in &rows {
            let name = if r.peer {
                format!("*peer* {}", r.mode)
            } else {
                r.mode.clone()
            };
            if !ok(r) {
                let _ = writeln!(w, "| {name} |{} {} |", " |".repeat(ncol - 2), r.status);
                continue;
            }
            let mut line = format!(
                "| {name} | {} | {} |",
                match (r.longest_wait_ms, &r.longest_wait_cause) {
                    (Some(x), Some(c)) => format!("{} ({c})", f(x)),
                    (Some(x), None) => f(x),
                    (None, _) if r.peer => r
                        .pause
                        .map_or("n/a".into(), |p| format!("{} (pause)", f(p.max))),
                    (None, _) => "n/a".into(),
                },
                if r.peer {
                    format!(
                        "{} / {} / {} (stw)",
                        mmu_s(r.mmu_1ms),
                        mmu_s(r.mmu_10ms),
                        mmu_s(r.mmu_100ms)
                    )
                } else {
                    format!(
                        "{} / {} / {}",
                        mmu_s(r.wait_mmu_1ms),
                        mmu_s(r.wait_mmu_10ms),
                        mmu_s(r.wait_mmu_100ms)
                    )
                },
            );
            if request {
                let m = r.metered.as_ref();
                line.push_str(&format!(
                    " {} | {} |",
                    m.and_then(|m| m.latency).map_or("n/a".into(), |p| format!(
                        "{} / {} / {} / {}",
                        f(p.p50),
                        f(p.p99),
                        f(p.p999),
                        f(p.max)
                    )),
                    m.map_or("n/a".into(), |m| format!(
                        "{:.0} / {:.0}",
                        m.achieved_hz, m.rate_hz
                    )),
                ));
            }
            for (cause, _) in CAUSES {
                line.push_str(&format!(
                    " {} |",
                    if r.peer {
                        "n/a".into()
                    } else {
                        wait_cell(r, cause)
                    }
                ));
            }
            let live = r.measured_live_mib.unwrap_or(r.live_mib as f64);
            line.push_str(&format!(
                " {} | {} | {} | {} | {} | {} | {} | {} |",
                if r.peer {
                    "n/a".into()
                } else {
                    f(r.waits_unlogged_ms)
                },
                mib(r.peak_rss_kib),
                mib(r.peak_pss_kib),
                match (r.heap_mib, r.large_space_mib) {
                    (Some(h), Some(l)) => format!("{} + {}", f(h), f(l)),
                    _ => "n/a".into(),
                },
                r.peak_rss_kib
                    .map_or("n/a".into(), |k| ratio(k as f64 / 1024.0, live)),
                f(r.total_s),
                r.pause.map_or("-".into(), |p| f(p.max)),
                if r.peer {
                    format!("ok ({})", r.info)
                } else {
                    "ok".into()
                },
            ));
            let _ = writeln!(w, "{line}");
        }
        let _ = writeln!(w);
        tail_split_rows(w, &rows);
    }

    let _ = writeln!(w, "### Goals on the mutators' latency (issue 14)\n");
    if !peers.rows.is_empty()
        && results
            .iter()
            .any(|r| r.workload == "request" && ok(r) && r.bystander.is_some())
    {
        let _ = writeln!(w, "Faultline's request runs here had the bystander thread beside them (it wakes up every 50-100 µs, each time for an `mmap`/`munmap` pair or a page fault in the same process); the peers' runs have none. For the comparison with the peers run the suite with `--no-bystander`.\n");
    }
    let _ = writeln!(w, "Per workload and size, for every concurrent mode: the longest wait over the stop-the-world run's longest pause (goal <= 0.10) and in ms (goal <= 50), the wait MMU at 100 ms (goal >= 0.7); for the request workload, Faultline's best metered p99 over ZGC's and Shenandoah's at the same size (goal <= 1; the peers' heap is `-Xmx` = their own setting, see the equal-memory note in BENCHMARKS.md). A goal is *met* or *missed*; n/a when a figure is missing.\n");
    let _ = writeln!(w, "| workload | live MiB | mode | longest wait ms | / STW max pause | <= 50 ms | wait MMU 100 ms | metered p99 ms | / ZGC p99 | / Shenandoah p99 |");
    let _ = writeln!(w, "|---|---:|---|---:|---:|---|---:|---:|---:|---:|");
    let met = |b: bool| if b { "met" } else { "missed" };
    for (wl, mib_live) in keys {
        let stw = results
            .iter()
            .find(|r| &r.workload == wl && r.live_mib == *mib_live && r.mode == "stw" && ok(r))
            .and_then(|r| r.pause.map(|p| p.max));
        let peer_p99 = |name: &str| {
            peers
                .rows
                .iter()
                .find(|r| &r.workload == wl && r.live_mib == *mib_live && r.mode == name && ok(r))
                .and_then(|r| r.metered.as_ref().and_then(|m| m.latency).map(|p| p.p99))
        };
        for r in results.iter().filter(|r| {
            &r.workload == wl && r.live_mib == *mib_live && r.mode != "stw" && !r.peer && ok(r)
        }) {
            let lw = r.longest_wait_ms;
            let p99 = r.metered.as_ref().and_then(|m| m.latency).map(|p| p.p99);
            let rel = |x: Option<f64>, y: Option<f64>| match (x, y) {
                (Some(x), Some(y)) if y > 0.0 => {
                    format!("{} ({})", ratio(x, y), met(x <= y * 0.10 + f64::EPSILON))
                }
                _ => "n/a".into(),
            };
            let vs = |peer: &str| match (p99, peer_p99(peer)) {
                (Some(a), Some(b)) => format!("{} ({})", ratio(a, b), met(a <= b)),
                (Some(_), None) => format!("n/a (no {peer} row)"),
                _ => "-".into(),
            };
            let _ = writeln!(
                w,
                "| {wl} | {mib_live} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.mode,
                opt(lw),
                rel(lw, stw),
                lw.map_or("n/a".into(), |x| met(x <= 50.0).to_string()),
                r.wait_mmu_100ms
                    .map_or("n/a".into(), |u| format!("{u:.2} ({})", met(u >= 0.7))),
                opt(p99),
                vs("java-zgc"),
                vs("java-shenandoah"),
            );
        }
    }
    let _ = writeln!(w);
}

/// The figures of issue 14 are present and sane: every cause recorded, per-cause max within
/// total and within the longest wait, wait MMU in [0, 1] and consistent with the longest wait,
/// the footprint present, the request workload's metered latency ordered and no shorter than
/// its longest wait suggests it could be (orderings and ranges, not targets).
fn check_waits(r: &RunResult) -> Vec<String> {
    let mut e = Vec::new();
    for (cause, _) in CAUSES {
        match r.waits.get(cause) {
            None => e.push(format!("wait cause {cause} missing")),
            Some(c) => {
                if !(c.total_ms >= 0.0 && c.max_ms >= 0.0 && c.max_ms <= c.total_ms + 1e-6) {
                    e.push(format!(
                        "wait cause {cause}: max {} > total {}",
                        c.max_ms, c.total_ms
                    ));
                }
                if (c.count == 0) != (c.total_ms == 0.0) && c.total_ms > 0.0 {
                    e.push(format!("wait cause {cause}: time without a count"));
                }
            }
        }
    }
    let longest = r.longest_wait_ms;
    match longest {
        None => e.push("longest_wait_ms missing".into()),
        Some(l) => {
            let max_cause = r.waits.values().map(|c| c.max_ms).fold(0.0, f64::max);
            if !(l.is_finite() && l >= 0.0 && l + 1e-6 >= max_cause) {
                e.push(format!(
                    "longest wait {l} ms below a cause's max {max_cause} ms"
                ));
            }
            if l > r.total_s * 1e3 + 1.0 {
                e.push(format!("longest wait {l} ms longer than the run"));
            }
            if l > 0.0 && r.longest_wait_cause.is_none() {
                e.push("longest wait without a cause".into());
            }
        }
    }
    // Every run parks or at least refills: something must have been recorded.
    if r.waits.get("alloc-stall").is_none_or(|c| c.count == 0) {
        e.push("no allocation slow path recorded".into());
    }
    if r.mode == "stw" && r.cycles > 0 && r.threads > 1 {
        // In a stop-the-world run with several mutators, either one parked, or every pause
        // ran while the others were in native code (the request workload's idle threads).
        let parked = r.waits.get("pause").map_or(0, |c| c.count);
        if parked == 0 && r.metered.is_none() {
            e.push("several mutators, cycles, but no mutator ever parked".into());
        }
    }
    let mmu = [r.wait_mmu_1ms, r.wait_mmu_10ms, r.wait_mmu_100ms];
    if mmu[0].is_none() {
        e.push("wait MMU at 1 ms missing".into());
    }
    for u in mmu.iter().flatten() {
        if !(0.0..=1.0).contains(u) {
            e.push(format!("wait MMU {u} outside [0, 1]"));
        }
    }
    // MMU is not monotonic in the window, but a window no longer than the longest wait fits
    // inside it (its mutator lived at least that long, so it is in the minimum): the MMU at
    // that window is 0 (when the wait was logged: >= 10 µs, nothing dropped).
    if let (Some(l), 0) = (longest, r.waits_dropped) {
        for (w, u) in [(1.0, mmu[0]), (10.0, mmu[1]), (100.0, mmu[2])] {
            if let Some(u) = u.filter(|_| l >= w) {
                if u > 1e-6 {
                    e.push(format!(
                        "wait MMU {u} at {w} ms, but a wait of {l} ms covers a whole window"
                    ));
                }
            }
        }
    }
    if r.wait_mmu_curve
        .iter()
        .any(|&(_, u)| !(0.0..=1.0).contains(&u))
    {
        e.push("wait MMU curve outside [0, 1]".into());
    }
    // The worst 100 ms window's split by cause (short waits as `short`) adds up to what the
    // MMU at 100 ms says was waited in it (both from the same logs).
    if let Some(u) = mmu[2] {
        let split: f64 = r.wait_worst_100ms.values().sum();
        if (split - (1.0 - u) * 100.0).abs() > 0.5 {
            e.push(format!(
                "worst 100 ms window split {split:.2} ms, MMU {u} says {:.2} ms",
                (1.0 - u) * 100.0
            ));
        }
    }
    if r.refills_ready > r.refills {
        e.push(format!(
            "{} refills found their pages present, of {}",
            r.refills_ready, r.refills
        ));
    }
    if r.heap_mib.is_none_or(|h| h <= 0.0) {
        e.push("configured heap missing".into());
    }
    if r.workload == "request" {
        match r.metered.as_ref() {
            None => e.push("request workload without metered latency".into()),
            Some(m) => match m.latency {
                None => e.push("no request was metered".into()),
                Some(p) => {
                    if !(p.p50 > 0.0
                        && p.p50 <= p.p99
                        && p.p99 <= p.p999
                        && p.p999 <= p.max * 1.001)
                    {
                        e.push(format!("metered percentiles out of order: {p:?}"));
                    }
                    if p.count != m.requests {
                        e.push(format!("{} requests, {} metered", m.requests, p.count));
                    }
                    if !(m.achieved_hz > 0.0 && m.achieved_hz <= m.rate_hz * 1.05) {
                        e.push(format!(
                            "achieved rate {} not in (0, scheduled {}]",
                            m.achieved_hz, m.rate_hz
                        ));
                    }
                    if p.max * 1e3 > r.total_s * 1e6 {
                        e.push("a request took longer than the run".into());
                    }
                    match m.tail_split.as_ref() {
                        None if !r.peer => e.push("request workload without a tail split".into()),
                        None => {}
                        Some(t) => {
                            let share = |x: f64| (0.0..=1.0 + 1e-9).contains(&x);
                            if !(share(t.with_wait)
                                && share(t.with_run_delay)
                                && share(t.with_neither)
                                && t.requests <= p.count
                                && (t.threshold_ms - p.p99).abs() < 1e-9
                                && (t.requests == 0 || t.mean_latency_ms >= t.threshold_ms))
                            {
                                e.push(format!("tail split out of range: {t:?}"));
                            }
                        }
                    }
                }
            },
        }
    }
    e
}

/// The request workload's tail split (`metered.tail_split`), one row per mode that has one.
fn tail_split_rows(w: &mut String, rows: &[&RunResult]) {
    let with: Vec<_> = rows
        .iter()
        .filter_map(|r| Some((r, r.metered.as_ref()?.tail_split.as_ref()?)))
        .collect();
    if with.is_empty() {
        return;
    }
    let _ = writeln!(w, "Tail split: the requests above the p99, by what their serving thread suffered between the request's scheduled start and its end: heap-recorded waits, run-queue delay (runnable, not running: `/proc/thread-self/schedstat`), each counted when over the bar; means in ms; the collector's phase at the window's end (or start). `all` columns: means over every request.\n");
    let _ = writeln!(w, "| mode | p99 ms | tail requests | bar ms | with wait | with run delay | neither | mean latency / CPU / run delay / waits / blocked ms | phases | all: latency / CPU / run delay / waits ms |");
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    for (r, t) in with {
        let phases: Vec<String> = t.phases.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            w,
            "| {} | {:.3} | {} | {} | {:.2} | {:.2} | {:.2} | {:.3} / {:.3} / {:.3} / {:.3} / {:.3} | {} | {:.3} / {:.3} / {:.3} / {:.3} |",
            r.mode,
            t.threshold_ms,
            t.requests,
            t.bar_ms,
            t.with_wait,
            t.with_run_delay,
            t.with_neither,
            t.mean_latency_ms,
            t.mean_cpu_ms,
            t.mean_run_delay_ms,
            t.mean_wait_ms,
            t.mean_blocked_ms,
            phases.join(", "),
            t.all_mean_latency_ms,
            t.all_mean_cpu_ms,
            t.all_mean_run_delay_ms,
            t.all_mean_wait_ms,
        );
    }
    let _ = writeln!(w);
}

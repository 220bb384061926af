//! Section 1's tables: the summary against stop-the-world ([`summary_table`]) and the detail
//! tables ([`pause_tables`]: pauses, every cycle, phases and compaction throughput, fault
//! stalls and mutator progress, per-heap accounting), all from the [`ModeRun`]s.

use std::time::Duration;

use faultline::testing::heap::PAGE_SIZE;
use faultline::{CycleStats, GcMode, Percentiles, Strategy};

use super::common::{mib, MIB};
use super::measure::{modes, ModeData, ModeRun, PhaseAcc};
use super::report::{count, ms, rate, us, Report};

/// p50 and max of the pauses of `kind` over the cycles.
pub fn pause_of(d: &ModeData, kind: &str) -> Option<Percentiles> {
    let xs: Vec<Duration> = d
        .cycles
        .iter()
        .flat_map(|c| c.pauses.iter())
        .filter(|p| p.kind == kind)
        .map(|p| p.duration)
        .collect();
    (!xs.is_empty()).then(|| Percentiles::of(xs))
}

pub fn p50_max(p: Option<Percentiles>) -> String {
    p.map_or("-".into(), |p| format!("{} / {}", ms(p.p50), ms(p.max)))
}

pub fn pct<F: Fn(&CycleStats) -> Duration>(d: &ModeData, f: F) -> Percentiles {
    Percentiles::of(d.cycles.iter().map(f).collect())
}

pub fn max_pause(d: &ModeData) -> Duration {
    d.cycles
        .iter()
        .map(|c| c.pause_max())
        .max()
        .unwrap_or_default()
}

/// Bytes compacted per second of compaction time (median over cycles).
pub fn compaction_rate(d: &ModeData) -> f64 {
    let mut xs: Vec<f64> = d
        .cycles
        .iter()
        .filter(|c| !c.compact.is_zero())
        .map(|c| mib(c.pages_filled * PAGE_SIZE) / c.compact.as_secs_f64())
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

pub fn pause_tables(rep: &mut Report, runs: &[ModeRun]) {
    rep.line("### Pauses (ms, p50 / max over the cycles)");
    rep.line("");
    rep.line("`stw`: the whole cycle in one pause. Concurrent: `initial-mark` (roots) and `remark+flip` (SATB drain, planning, root update, arming the compaction). Every pause includes its time to safepoint. `plan` is the planning part of the pause (p50); the split of the remark+flip pause (p50 of each part) is: time to safepoint, remark (SATB drain, active-buffer walks, in wp_async mode the root and dirty-page rescans), then plan+flip (finishing the plan made before the pause, root and large-object updates, arming the compaction); `planned ahead` is the concurrent planning done before the pause (p50); `ttsp` the longest time to safepoint. All of these are the collector's own figures (`CycleStats`). The last two columns are the mutator's view, timed by the benchmark: how long its `collect()` call blocked (stw: the whole pause; concurrent: the initial-mark pause plus starting the GC thread), and its longest safepoint poll per concurrent cycle (where it parked for the remark+flip pause: that pause from the mutator's side, minus the time the mutator took to reach the poll).");
    rep.line("");
    rep.line("| live MiB | collector | cycles | stw | initial-mark | remark+flip | remark+flip split: ttsp / remark / plan+flip | plan in pause | planned ahead | ttsp max | longest pause | other pause kinds | mutator: collect() call | mutator: longest park |");
    rep.line("|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|");
    for r in runs {
        let d = match &r.outcome {
            Ok(d) => d,
            Err(e) => {
                rep.line(&format!(
                    "| {} | {} | - | {e} | | | | | | | | | | |",
                    r.live / MIB,
                    r.spec.label
                ));
                continue;
            }
        };
        let mut kinds: Vec<&str> = d
            .cycles
            .iter()
            .flat_map(|c| c.pauses.iter().map(|p| p.kind))
            .filter(|k| !["stw", "initial-mark", "remark+flip"].contains(k))
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        let others: Vec<String> = kinds
            .iter()
            .map(|k| format!("{k}: {}", p50_max(pause_of(d, k))))
            .collect();
        let ttsp = d
            .cycles
            .iter()
            .map(|c| c.time_to_safepoint)
            .max()
            .unwrap_or_default();
        let of = |xs: &[Duration]| (!xs.is_empty()).then(|| Percentiles::of(xs.to_vec()));
        let rf = |c: &CycleStats| {
            c.pauses
                .iter()
                .find(|p| p.kind == "remark+flip")
                .map(|p| p.duration)
        };
        let split = if d.cycles.iter().any(|c| rf(c).is_some()) {
            let conc: Vec<&CycleStats> = d.cycles.iter().filter(|c| rf(c).is_some()).collect();
            let p50 = |f: &dyn Fn(&CycleStats) -> Duration| {
                ms(Percentiles::of(conc.iter().map(|c| f(c)).collect()).p50)
            };
            format!(
                "{} / {} / {}",
                p50(&|c| c.time_to_safepoint.min(c.remark)),
                p50(&|c| c.remark.saturating_sub(c.time_to_safepoint)),
                p50(&|c| rf(c).unwrap_or_default().saturating_sub(c.remark)),
            )
        } else {
            "-".to_string()
        };
        rep.line(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.live / MIB,
            r.spec.label,
            d.cycles.len(),
            p50_max(pause_of(d, "stw")),
            p50_max(pause_of(d, "initial-mark")),
            p50_max(pause_of(d, "remark+flip")),
            split,
            ms(pct(d, |c| c.plan).p50),
            ms(pct(d, |c| c.plan_ahead).p50),
            ms(ttsp),
            ms(max_pause(d)),
            others.join("; "),
            p50_max(of(&d.collect_calls)),
            p50_max(of(&d.parks)),
        ));
    }
    rep.line("");

    rep.line("### Every cycle");
    rep.line("");
    rep.line("Per cycle: moving-space MiB before the cycle, then its pauses in ms as the collector recorded them (`im` initial-mark, `rf` remark+flip, `stw`), and in brackets what the mutator saw (stw: its `collect()` call; concurrent: its longest park).");
    rep.line("");
    rep.line("| live MiB | collector | cycles |");
    rep.line("|---:|---|---|");
    for r in runs {
        let Ok(d) = &r.outcome else { continue };
        let cells: Vec<String> = d
            .cycles
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let p: Vec<String> = c
                    .pauses
                    .iter()
                    .map(|p| {
                        let k = match p.kind {
                            "initial-mark" => "im",
                            "remark+flip" => "rf",
                            k => k,
                        };
                        format!("{k} {}", ms(p.duration))
                    })
                    .collect();
                let seen = if r.spec.gc == GcMode::Concurrent {
                    d.parks.get(i)
                } else {
                    d.collect_calls.get(i)
                };
                format!(
                    "{:.0} MiB: {} [{}]",
                    mib(c.moving_before),
                    p.join(" + "),
                    seen.map_or("-".into(), |&s| ms(s))
                )
            })
            .collect();
        rep.line(&format!(
            "| {} | {} | {} |",
            r.live / MIB,
            r.spec.label,
            cells.join("; ")
        ));
    }
    rep.line("");

    rep.line("### Concurrent phases and compaction throughput (p50 over the cycles)");
    rep.line("");
    rep.line("`mark`: concurrent marking (stw: marking inside the pause). `compaction`: from the flip to the last page mapped, while the mutator runs (stw: the compaction part of the pause). MiB/s = destination pages x 4 KiB / compaction time. Pages: destination pages per cycle, filled by mutator faults vs by the GC worker; move strategy: pages moved in place / staged / copied. mmap-family and REGISTER+UNREGISTER calls: the maximum over the cycles (must be 0).");
    rep.line("");
    rep.line("| live MiB | collector | mark ms | compaction ms | compaction MiB/s | pages/cycle | by faults | by worker | in place / staged / copied | mmap-family | register | VMAs |");
    rep.line("|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|");
    for r in runs {
        let Ok(d) = &r.outcome else { continue };
        let n = d.cycles.len().max(1) as u64;
        let pages: u64 = d.cycles.iter().map(|c| c.pages_filled as u64).sum::<u64>() / n;
        let by_fault: u64 = d.cycles.iter().map(|c| c.pages_by_fault).sum::<u64>() / n;
        let concurrent = r.spec.gc == GcMode::Concurrent;
        let sum = |f: fn(&CycleStats) -> u64| d.cycles.iter().map(f).sum::<u64>() / n;
        let placement = if r.spec.strategy == Strategy::Move {
            format!(
                "{} / {} / {}",
                count(sum(|c| c.pages_in_place)),
                count(sum(|c| c.pages_staged)),
                count(sum(|c| c.pages_copied))
            )
        } else {
            "-".into()
        };
        let mmap = d.cycles.iter().map(|c| c.mmap_family()).max().unwrap_or(0);
        let reg = d
            .cycles
            .iter()
            .map(|c| c.registrations())
            .max()
            .unwrap_or(0);
        let vmas = d
            .cycles
            .last()
            .map_or("-".into(), |c| format!("{} -> {}", c.vmas.0, c.vmas.1));
        rep.line(&format!(
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            r.live / MIB,
            r.spec.label,
            ms(pct(d, |c| c.mark).p50),
            ms(pct(d, |c| c.compact).p50),
            compaction_rate(d),
            count(pages),
            if concurrent {
                count(by_fault)
            } else {
                "-".into()
            },
            if concurrent {
                count(pages.saturating_sub(by_fault))
            } else {
                "-".into()
            },
            placement,
            mmap,
            reg,
            vmas
        ));
    }
    rep.line("");

    rep.line("### Mutator fault stalls and mutator progress");
    rep.line("");
    rep.line("Fault stalls: `Heap::fault_stats()` over all cycles of the heap (time inside the fault resolver; with handler-thread delivery that is the handler's time, not the mutator's whole wait). Steps/s: mutator steps per second of wall time in each phase (idle = no cycle running). Step p99 / max: latency of one step as the mutator saw it (includes fault stalls, and a pause if an allocation in the step parked).");
    rep.line("");
    rep.line("| live MiB | collector | faults | stall p50 µs | p99 µs | max µs | steps/s idle | marking | compacting | step p99 idle µs | step p99 / max marking µs | step p99 / max compacting µs |");
    rep.line("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        let Ok(d) = &r.outcome else { continue };
        let concurrent = r.spec.gc == GcMode::Concurrent;
        let pm = |a: &PhaseAcc| {
            if a.steps == 0 {
                "-".to_string()
            } else {
                format!(
                    "{} / {}",
                    us(a.hist.quantile(0.99)),
                    us(Duration::from_nanos(a.hist.max))
                )
            }
        };
        rep.line(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.live / MIB,
            r.spec.label,
            count(d.faults.count),
            us(d.faults.p50),
            us(d.faults.p99),
            us(d.faults.max),
            rate(d.idle.rate()),
            if concurrent {
                rate(d.mark.rate())
            } else {
                "-".into()
            },
            if concurrent {
                rate(d.compact.rate())
            } else {
                "-".into()
            },
            us(d.idle.hist.quantile(0.99)),
            pm(&d.mark),
            pm(&d.compact),
        ));
    }
    rep.line("");

    rep.line("### Per heap: build, check, arena accounting");
    rep.line("");
    rep.line("| live MiB | collector | what ran | shape | objects | measured live MiB | build s | check | arena REGISTER total | mmap-family since creation | other cycles |");
    rep.line("|---:|---|---|---|---:|---:|---:|---|---:|---:|---|");
    for r in runs {
        let Ok(d) = &r.outcome else { continue };
        let live_measured = d
            .cycles
            .last()
            .map_or(0, |c| c.moving_after + c.large_after);
        rep.line(&format!(
            "| {} | {} | {} | {} trees (depth {}) + {} lists ({} cells) | {} | {:.1} | {:.2} | {} | {} | {} | {} |",
            r.live / MIB,
            r.spec.label,
            d.info,
            r.shape.entries / 2,
            r.shape.depth,
            r.shape.entries / 2,
            r.shape.list_len,
            count(r.shape.objects()),
            mib(live_measured),
            d.build.as_secs_f64(),
            match &d.check {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("**FAILED: {e}**"),
            },
            d.arena.registers,
            d.arena.mmap_family_since_creation,
            if d.other_cycles.is_empty() {
                "none".into()
            } else {
                d.other_cycles.join(", ")
            }
        ));
    }
    rep.line("");
}

pub fn summary_table(rep: &mut Report, runs: &[ModeRun], sizes: &[usize]) {
    rep.line("### Summary: concurrent pauses against stop-the-world");
    rep.line("");
    rep.line("| live MiB | stw pause p50 ms (1 / 2 marking threads) | concurrent longest pause ms: best (collector) | worst (collector) | stw p50 (1 thread) / worst concurrent longest | worst concurrent park seen by the mutator ms (collector) | stw p50 / median of the concurrent remark+flip p50s |");
    rep.line("|---:|---|---|---|---:|---|---:|");
    for &size in sizes {
        let at: Vec<(&ModeRun, &ModeData)> = runs
            .iter()
            .filter(|r| r.live == size)
            .filter_map(|r| r.outcome.as_ref().ok().map(|d| (r, d)))
            .collect();
        let stw = |label: &str| {
            at.iter()
                .find(|(r, _)| r.spec.label == label)
                .and_then(|(_, d)| pause_of(d, "stw"))
                .map(|p| p.p50)
        };
        let conc: Vec<(Duration, &str)> = at
            .iter()
            .filter(|(r, _)| r.spec.gc == GcMode::Concurrent)
            .map(|(r, d)| (max_pause(d), r.spec.label))
            .collect();
        let best = conc.iter().min();
        let worst = conc.iter().max();
        let worst_park = at
            .iter()
            .filter(|(r, _)| r.spec.gc == GcMode::Concurrent)
            .filter_map(|(r, d)| d.parks.iter().max().map(|&p| (p, r.spec.label)))
            .max();
        let s1 = stw("stw");
        let mut rf: Vec<Duration> = at
            .iter()
            .filter_map(|(_, d)| pause_of(d, "remark+flip").map(|p| p.p50))
            .collect();
        rf.sort_unstable();
        let typical = match (s1, rf.get(rf.len() / 2)) {
            (Some(s), Some(r)) if !r.is_zero() => {
                format!("{:.0}x", s.as_secs_f64() / r.as_secs_f64())
            }
            _ => "-".into(),
        };
        rep.line(&format!(
            "| {} | {} / {} | {} | {} | {} | {} | {typical} |",
            size / MIB,
            s1.map_or("-".into(), ms),
            stw("stw-2t").map_or("-".into(), ms),
            best.map_or("-".into(), |(d, l)| format!("{} ({l})", ms(*d))),
            worst.map_or("-".into(), |(d, l)| format!("{} ({l})", ms(*d))),
            match (s1, worst) {
                (Some(s), Some((w, _))) if !w.is_zero() => {
                    format!("{:.0}x", s.as_secs_f64() / w.as_secs_f64())
                }
                _ => "-".into(),
            },
            worst_park.map_or("-".into(), |(d, l)| format!("{} ({l})", ms(d)))
        ));
    }
    rep.line("");
    if sizes.len() >= 2 {
        let (lo, hi) = (sizes[0], sizes[sizes.len() - 1]);
        rep.line(&format!(
            "Growth of each pause from {} MiB to {} MiB of live data ({}x the live data): p50 at each size and the ratio.",
            lo / MIB,
            hi / MIB,
            hi / lo
        ));
        rep.line("");
        rep.line("| collector | pause kind | p50 small | p50 large | ratio | of which plan: small / large |");
        rep.line("|---|---|---:|---:|---:|---|");
        for spec in modes() {
            let get = |size: usize| {
                runs.iter()
                    .find(|r| r.live == size && r.spec.label == spec.label)
                    .and_then(|r| r.outcome.as_ref().ok())
            };
            let (Some(a), Some(b)) = (get(lo), get(hi)) else {
                continue;
            };
            let kinds: &[&str] = if spec.gc == GcMode::Concurrent {
                &["initial-mark", "remark+flip"]
            } else {
                &["stw"]
            };
            for &k in kinds {
                let (Some(pa), Some(pb)) = (pause_of(a, k), pause_of(b, k)) else {
                    continue;
                };
                let plan = if k == "initial-mark" {
                    "-".to_string()
                } else {
                    format!(
                        "{} / {}",
                        ms(pct(a, |c| c.plan).p50),
                        ms(pct(b, |c| c.plan).p50)
                    )
                };
                rep.line(&format!(
                    "| {} | {k} | {} | {} | {:.1}x | {plan} |",
                    spec.label,
                    ms(pa.p50),
                    ms(pb.p50),
                    pb.p50.as_secs_f64() / pa.p50.as_secs_f64().max(1e-9)
                ));
            }
        }
        rep.line("");
    }
}

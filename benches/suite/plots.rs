//! SVG plots of a suite run (plotters, SVG backend only: no font library needed).
//!
//! - `pauses-<workload>-<MiB>.svg`: pause histogram per mode (count of pauses per log-spaced
//!   bin of duration, one line per mode);
//! - `mmu-<workload>-<MiB>.svg`: MMU curves (utilization against window width, log x);
//! - `bystander-<MiB>.svg`: the bystander's `map` p99 per run, during GC cycles and outside.
//!
//! Invariant: plots draw the records' figures as they are; a record without the data a plot
//! needs is left out of that plot, not drawn as zero.

use std::path::Path;

use plotters::prelude::*;

use super::run::RunResult;

fn color(i: usize) -> RGBColor {
    const C: [RGBColor; 12] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
        RGBColor(0, 0, 0),
        RGBColor(120, 120, 255),
    ];
    C[i % C.len()]
}

/// Write every plot; returns how many files were written.
pub fn write_all(dir: &Path, rows: &[RunResult], sizes: &[usize]) -> usize {
    let mut keys: Vec<(String, u64)> = Vec::new();
    for r in rows {
        if r.workload != "-" && !keys.contains(&(r.workload.clone(), r.live_mib)) {
            keys.push((r.workload.clone(), r.live_mib));
        }
    }
    let mut n = 0;
    for (wl, mib) in &keys {
        let set: Vec<&RunResult> = rows
            .iter()
            .filter(|r| &r.workload == wl && r.live_mib == *mib && r.status == "ok")
            .collect();
        let p = dir.join(format!("pauses-{wl}-{mib}.svg"));
        match pause_hist(&p, &format!("{wl} @ {mib} MiB: pauses"), &set) {
            Ok(()) => n += 1,
            Err(e) => eprintln!("suite: plot {}: {e}", p.display()),
        }
        let p = dir.join(format!("mmu-{wl}-{mib}.svg"));
        match mmu_plot(&p, &format!("{wl} @ {mib} MiB: MMU"), &set) {
            Ok(()) => n += 1,
            Err(e) => eprintln!("suite: plot {}: {e}", p.display()),
        }
        let p = dir.join(format!("footprint-{wl}-{mib}.svg"));
        let title = format!("{wl} @ {mib} MiB live: PSS (solid) and RSS (thin) over time, MiB");
        match footprint_plot(&p, &title, &set) {
            Ok(()) => n += 1,
            Err(e) => eprintln!("suite: plot {}: {e}", p.display()),
        }
    }
    for &size in sizes {
        let mib = (size >> 20) as u64;
        let set: Vec<&RunResult> = rows
            .iter()
            .filter(|r| r.live_mib == mib && r.status == "ok" && r.bystander.is_some())
            .collect();
        let p = dir.join(format!("bystander-{mib}.svg"));
        match bystander_plot(&p, &format!("bystander map p99 @ {mib} MiB"), &set) {
            Ok(()) => n += 1,
            Err(e) => eprintln!("suite: plot {}: {e}", p.display()),
        }
    }
    n
}

type Res = Result<(), Box<dyn std::error::Error>>;

fn pause_hist(path: &Path, title: &str, set: &[&RunResult]) -> Res {
    // Bins: 8 per decade from 1 µs to 100 s (log10 of ms from -3 to 5).
    let bin = |ms: f64| ((ms.max(1e-3).log10() + 3.0) * 8.0).floor() as i64;
    let series: Vec<(String, Vec<(f64, f64)>)> = set
        .iter()
        .filter(|r| !r.pauses_ms.is_empty())
        .map(|r| {
            let mut counts = std::collections::BTreeMap::<i64, u64>::new();
            for &p in &r.pauses_ms {
                *counts.entry(bin(p)).or_default() += 1;
            }
            let pts = counts
                .into_iter()
                .map(|(b, c)| (b as f64 / 8.0 - 3.0 + 1.0 / 16.0, c as f64))
                .collect();
            (label(r), pts)
        })
        .collect();
    let (x0, x1, ymax) = series.iter().flat_map(|(_, p)| p.iter()).fold(
        (f64::INFINITY, f64::NEG_INFINITY, 1.0f64),
        |(a, b, y), &(x, c)| (a.min(x), b.max(x), y.max(c)),
    );
    let (x0, x1) = if x0.is_finite() {
        (x0.floor(), x1.ceil().max(x0.floor() + 1.0))
    } else {
        (-3.0, 3.0)
    };
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(x0..x1, 0.0..ymax * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("pause, log10(ms)")
        .y_desc("pauses")
        .draw()?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn label(r: &RunResult) -> String {
    if r.peer {
        format!("peer {}", r.mode)
    } else {
        r.mode.clone()
    }
}

fn mmu_plot(path: &Path, title: &str, set: &[&RunResult]) -> Res {
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(-4.0f64..2.0, 0.0f64..1.0)?;
    chart
        .configure_mesh()
        .x_desc("window, log10(s)")
        .y_desc("minimum mutator utilization")
        .draw()?;
    for (i, r) in set.iter().filter(|r| !r.mmu_curve.is_empty()).enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(
                r.mmu_curve.iter().map(|&(w, u)| (w.log10(), u)),
                c.stroke_width(2),
            ))?
            .label(label(r))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn footprint_plot(path: &Path, title: &str, set: &[&RunResult]) -> Res {
    let runs: Vec<&&RunResult> = set
        .iter()
        .filter(|r| !r.footprint_timeline.is_empty() && r.footprint_bound.is_none())
        .collect();
    let t_max = runs
        .iter()
        .flat_map(|r| r.footprint_timeline.iter().map(|s| s.0))
        .fold(0.1f64, f64::max);
    let m_max = runs
        .iter()
        .flat_map(|r| r.footprint_timeline.iter().map(|s| s.1.max(s.2)))
        .fold(1.0f64, f64::max);
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0f64..t_max, 0.0f64..m_max * 1.05)?;
    chart
        .configure_mesh()
        .x_desc("seconds from the start")
        .y_desc("MiB")
        .draw()?;
    for (i, r) in runs.iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(
                r.footprint_timeline.iter().map(|&(t, _, pss)| (t, pss)),
                c.stroke_width(2),
            ))?
            .label(label(r))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
        chart.draw_series(LineSeries::new(
            r.footprint_timeline.iter().map(|&(t, rss, _)| (t, rss)),
            c.stroke_width(1),
        ))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn bystander_plot(path: &Path, title: &str, set: &[&RunResult]) -> Res {
    // One point per run: x = run index, y = map p99 µs (log10), in GC (filled) and outside
    // (hollow); the baseline as a horizontal line.
    let runs: Vec<&&RunResult> = set.iter().filter(|r| r.mode != "bystander-alone").collect();
    let base = set
        .iter()
        .find(|r| r.mode == "bystander-alone")
        .and_then(|r| r.bystander.as_ref())
        .and_then(|b| b.map_all)
        .map(|p| p.p99);
    let vals: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.bystander.as_ref())
        .flat_map(|b| [b.map_in_gc, b.map_outside])
        .flatten()
        .map(|p| p.p99)
        .chain(base)
        .collect();
    let (lo, hi) = vals
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v.max(0.1).log10()), b.max(v.max(0.1).log10()))
        });
    let (lo, hi) = if lo.is_finite() {
        (lo.floor(), hi.ceil().max(lo.floor() + 1.0))
    } else {
        (0.0, 3.0)
    };
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(-0.5f64..(runs.len().max(1) as f64 - 0.5), lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("run (workload x mode, in report order)")
        .y_desc("map p99, log10(µs)")
        .draw()?;
    let pts = |in_gc: bool| -> Vec<(f64, f64)> {
        runs.iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let b = r.bystander.as_ref()?;
                let p = if in_gc { b.map_in_gc } else { b.map_outside }?;
                Some((i as f64, p.p99.max(0.1).log10()))
            })
            .collect()
    };
    chart
        .draw_series(
            pts(true)
                .into_iter()
                .map(|p| Circle::new(p, 4, RED.filled())),
        )?
        .label("during GC cycles")
        .legend(|(x, y)| Circle::new((x + 8, y), 4, RED.filled()));
    chart
        .draw_series(pts(false).into_iter().map(|p| Circle::new(p, 4, BLUE)))?
        .label("outside GC cycles")
        .legend(|(x, y)| Circle::new((x + 8, y), 4, BLUE));
    if let Some(b) = base {
        let y = b.max(0.1).log10();
        chart
            .draw_series(LineSeries::new(
                vec![(-0.5, y), (runs.len().max(1) as f64 - 0.5, y)],
                BLACK.stroke_width(1),
            ))?
            .label("baseline (no heap)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

//! The collector modes the suite compares: the shared stop-the-world mode and concurrent
//! grid (`common::modes`) plus the suite's own variants (adding a mode is one line).
//!
//! Invariant: a mode's label names exactly the configuration [`heap_config`] builds, and a run
//! whose heap does not run that configuration (a fallback, a refused option) is reported as
//! "not available" with the heap's own reason, never measured under the wrong label.

use faultline::{Barrier, Choreography, FaultMode, GcMode, HeapConfig, Strategy};

pub use super::common::modes::Mode;
use super::common::modes::{concurrent, gen, gen_wp, CONCURRENT, STW};

/// Every mode, in report order.
pub fn all() -> Vec<Mode> {
    let mut all = vec![STW];
    all.extend(CONCURRENT);
    all.extend([
        // Both choices by measurement (`auto.rs` sets its picks beside the fixed modes).
        concurrent("auto", Strategy::Auto, FaultMode::Auto),
        Mode {
            barrier: Barrier::WpAsync,
            ..concurrent("move/sigbus/wp_async", Strategy::Move, FaultMode::Sigbus)
        },
        Mode {
            choreography: Choreography::PerCycle,
            ..concurrent("move/sigbus/per-cycle", Strategy::Move, FaultMode::Sigbus)
        },
        // The default's GC threads idle while on schedule (the latency setting).
        Mode {
            idle: true,
            ..concurrent("copy/sigbus/idle", Strategy::Copy, FaultMode::Sigbus)
        },
        // Generational (young cycles, card remembered set) beside the full-heap modes.
        gen("stw/gen", STW),
        gen(
            "copy/sigbus/gen",
            concurrent("", Strategy::Copy, FaultMode::Sigbus),
        ),
        gen(
            "copy/thread/gen",
            concurrent("", Strategy::Copy, FaultMode::Thread),
        ),
        gen(
            "move/sigbus/gen",
            concurrent("", Strategy::Move, FaultMode::Sigbus),
        ),
        gen(
            "minor/sigbus/gen",
            concurrent("", Strategy::Minor, FaultMode::Sigbus),
        ),
        // The same with the barrier-free remembered set (written pages).
        gen_wp("stw/gen-wp", STW),
        gen_wp(
            "copy/sigbus/gen-wp",
            concurrent("", Strategy::Copy, FaultMode::Sigbus),
        ),
        gen_wp(
            "move/sigbus/gen-wp",
            concurrent("", Strategy::Move, FaultMode::Sigbus),
        ),
    ]);
    all
}

/// Look a mode up by label.
pub fn by_label(label: &str) -> Option<Mode> {
    all().into_iter().find(|m| m.label == label)
}

/// The heap configuration of `mode` for a live set of `live` bytes: a moving space of
/// `factor` x the live set (default 4: `FAULTLINE_SUITE_HEAP_FACTOR`, set by `--heap-factor`)
/// and no occupancy trigger below `factor / 2` x, so with the default cycles run at the live
/// size measured and a concurrent cycle has 2x the live size of headroom for what mutators
/// allocate meanwhile.
pub fn heap_config(mode: &Mode, live: usize) -> HeapConfig {
    let factor = heap_factor();
    let half = ((factor * live as f64) as usize).max(8 << 20);
    HeapConfig::with_heap_size(half).with(|c| {
        c.mode = mode.gc;
        c.strategy = mode.strategy;
        c.faults = mode.faults;
        c.barrier = mode.barrier;
        c.choreography = mode.choreography;
        c.generational = mode.generational;
        if mode.idle {
            c.gc_thread_idle = true;
        }
        c.min_trigger_bytes = (factor / 2.0 * live as f64) as usize;
        c.large_object_space_bytes = half;
    })
}

/// The configured heap over the live size (see [`heap_config`]).
pub fn heap_factor() -> f64 {
    std::env::var("FAULTLINE_SUITE_HEAP_FACTOR")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&f: &f64| f >= 1.0)
        .unwrap_or(4.0)
}

/// Check that the heap runs what `mode` asked for (the heap's own `mode_info`).
pub fn check_running(mode: &Mode, heap: &faultline::Heap) -> Result<String, String> {
    let mi = heap.mode_info();
    let reason = mi.fallback_reason.clone().unwrap_or_default();
    if mi.mode != mode.gc {
        return Err(format!("fell back to {:?} ({reason})", mi.mode));
    }
    if mi.generational != mode.generational {
        return Err(format!(
            "generational {} ran instead of {}",
            mi.generational, mode.generational
        ));
    }
    if mode.gc == GcMode::Concurrent {
        let want_s = (mode.strategy != Strategy::Auto).then_some(mode.strategy);
        let want_f = (mode.faults != FaultMode::Auto).then_some(mode.faults);
        let want_b = mode.barrier;
        if want_s.is_some() && mi.strategy != want_s {
            return Err(format!("strategy {:?} ran instead ({reason})", mi.strategy));
        }
        if want_f.is_some() && mi.faults != want_f {
            return Err(format!("faults {:?} ran instead ({reason})", mi.faults));
        }
        if mi.barrier != Some(want_b) {
            return Err(format!("barrier {:?} ran instead ({reason})", mi.barrier));
        }
        if mode.idle {
            if let Some(not) = mi.reasons.iter().find(|r| r.contains("not idle")) {
                return Err(not.clone());
            }
        }
    }
    Ok(format!(
        "{:?} strategy={} faults={} barrier={} choreography={:?} generational={}",
        mi.mode,
        mi.strategy.map_or("-", |s| s.name()),
        mi.faults.map_or("-", |f| f.name()),
        mi.barrier.map_or("-", |b| b.name()),
        heap.config().choreography,
        mi.generational
    ))
}

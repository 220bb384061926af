//! Command-line GC options and their mapping onto a Faultline [`HeapConfig`].
//!
//! Invariant: every option given is either applied to the configuration or rejected with a
//! message naming it; nothing is silently ignored. Options that only mean something for the
//! concurrent collector (`--strategy`, `--faults`, `--barrier`) are rejected with `--gc stw`;
//! whether the heap supports a combination is decided by `Heap::new`, whose error is reported
//! as is.

use std::sync::Arc;

use clap::ValueEnum;
use faultline::{Barrier, FaultMode, GcMode, HeapConfig, Strategy};

/// `--gc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GcArg {
    /// Stop-the-world compaction.
    Stw,
    /// Concurrent compaction (userfaultfd read barrier).
    Concurrent,
}

/// `--strategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    /// `Strategy::Auto`: MOVE if it works here and this kernel's measured cost per page is
    /// at most 0.8x COPY's, else COPY.
    Auto,
    /// `Strategy::Copy`: fill a buffer, `UFFDIO_COPY`.
    Copy,
    /// `Strategy::Move`: fill a staging page, `UFFDIO_MOVE`.
    Move,
    /// `Strategy::Minor`: memfd arena filled through a second view, `UFFDIO_CONTINUE`.
    Minor,
}

/// `--faults`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FaultsArg {
    /// `FaultMode::Auto`: a handler thread if its measured fault round trip is at most 0.8x
    /// SIGBUS's, else SIGBUS (a handler thread where SIGBUS is unavailable).
    Auto,
    /// `FaultMode::Sigbus`: SIGBUS in the faulting thread.
    Sigbus,
    /// `FaultMode::Thread`: handler thread(s).
    Thread,
}

/// `--barrier`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BarrierArg {
    /// `Barrier::Satb`: snapshot-at-the-beginning deletion barrier.
    Satb,
    #[value(name = "wp_async")]
    /// `Barrier::WpAsync`: no barrier; userfaultfd write-protect and `PAGEMAP_SCAN`.
    WpAsync,
}

/// The GC options of `run` (and `repl`).
#[derive(Clone, Debug, Default)]
pub struct GcOptions {
    /// `--heap SIZE` in bytes (default [`DEFAULT_HEAP`]).
    pub heap: Option<usize>,
    /// `--gc stw|concurrent`.
    pub gc: Option<GcArg>,
    /// `--strategy`.
    pub strategy: Option<StrategyArg>,
    /// `--faults`.
    pub faults: Option<FaultsArg>,
    /// `--barrier`.
    pub barrier: Option<BarrierArg>,
    /// `--verify`.
    pub verify: bool,
    /// `--gc-stress N`: a collection every N allocations.
    pub stress: Option<u64>,
    /// `--gc-stress-random N`: seeded random collection intervals of mean N.
    pub stress_random: Option<u64>,
    /// `--gc-stress-seed S` (with `--gc-stress-random`; default 1).
    pub stress_seed: Option<u64>,
    /// `--gc-phase-delay MS` (concurrent only).
    pub phase_delay_ms: Option<u64>,
    /// `--gc-poison`.
    pub poison: bool,
}

/// Default heap size (the moving space; the arena reserves twice this plus the large-object
/// space in address space).
pub const DEFAULT_HEAP: usize = 256 << 20;

/// Parses a size such as `64M`, `1G`, `512K`, `4096` (bytes), `2m`, `1GiB`, `64MB`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(format!(
            "invalid size `{s}`: expected a number such as 64M, 1G or 512K"
        ));
    }
    let n: usize = num
        .parse()
        .map_err(|_| format!("invalid size `{s}`: the number is too large"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "invalid size `{s}`: unknown unit `{unit}` (use K, M or G)"
            ))
        }
    };
    n.checked_mul(1usize << shift)
        .ok_or_else(|| format!("invalid size `{s}`: too large"))
}

impl GcOptions {
    /// The heap configuration these options ask for (before `Heap::new` validates it).
    pub fn heap_config(&self) -> Result<HeapConfig, String> {
        let concurrent = self.gc == Some(GcArg::Concurrent);
        if !concurrent {
            let only = [
                ("--strategy", self.strategy.is_some()),
                ("--faults", self.faults.is_some()),
                ("--barrier", self.barrier.is_some()),
                ("--gc-phase-delay", self.phase_delay_ms.is_some()),
            ];
            if let Some((name, _)) = only.iter().find(|(_, given)| *given) {
                return Err(format!(
                    "{name} applies only to the concurrent collector: add --gc concurrent"
                ));
            }
        }
        let heap = self.heap.unwrap_or(DEFAULT_HEAP);
        let mut c = HeapConfig::with_heap_size(heap);
        // A collection compacts every live object, so its cost is proportional to the live
        // data, not the garbage: collecting less often (at an eighth of the heap rather than
        // the library's 4 MiB floor) cuts GC time for allocation-heavy programs like
        // binary-trees several times over, at the price of more memory in use.
        c.min_trigger_bytes = (heap / 8).clamp(c.min_trigger_bytes, 64 << 20);
        c.mode = if concurrent {
            GcMode::Concurrent
        } else {
            GcMode::StopTheWorld
        };
        if let Some(s) = self.strategy {
            c.strategy = match s {
                StrategyArg::Auto => Strategy::Auto,
                StrategyArg::Copy => Strategy::Copy,
                StrategyArg::Move => Strategy::Move,
                StrategyArg::Minor => Strategy::Minor,
            };
        }
        if let Some(f) = self.faults {
            c.faults = match f {
                FaultsArg::Auto => FaultMode::Auto,
                FaultsArg::Sigbus => FaultMode::Sigbus,
                FaultsArg::Thread => FaultMode::Thread,
            };
        }
        if let Some(b) = self.barrier {
            c.barrier = match b {
                BarrierArg::Satb => Barrier::Satb,
                BarrierArg::WpAsync => Barrier::WpAsync,
            };
        }
        c.debug.verify = self.verify;
        if let Some(n) = self.stress {
            if n == 0 {
                return Err("--gc-stress must be at least 1".into());
            }
            c.debug.stress_every = Some(n);
        }
        match (self.stress, self.stress_random, self.stress_seed) {
            (Some(_), Some(_), _) => {
                return Err("--gc-stress and --gc-stress-random exclude each other".into())
            }
            (_, None, Some(_)) => return Err("--gc-stress-seed needs --gc-stress-random".into()),
            (_, Some(0), _) => return Err("--gc-stress-random must be at least 1".into()),
            (_, Some(n), seed) => {
                c.debug.stress_random = Some(faultline::StressRandom {
                    one_in: n,
                    seed: seed.unwrap_or(1),
                })
            }
            _ => {}
        }
        c.debug.phase_delay = self.phase_delay_ms.map(std::time::Duration::from_millis);
        c.debug.poison_released = self.poison;
        Ok(c)
    }
}

/// Installs a GC-log hook printing [`crate::report::log_line`] to stderr for every cycle. The
/// hook reads mutator fault counts through `heap_slot` once the heap exists.
pub fn install_gc_log(
    c: &mut HeapConfig,
    heap_slot: Arc<std::sync::Mutex<Option<faultline::Heap>>>,
) {
    let last_faults = Arc::new(std::sync::atomic::AtomicU64::new(0));
    c.on_cycle = Some(Arc::new(move |s: &faultline::CycleStats| {
        let total = heap_slot
            .lock()
            .ok()
            .and_then(|h| h.as_ref().map(|h| h.fault_stats().count))
            .unwrap_or(0);
        let prev = last_faults.swap(total, std::sync::atomic::Ordering::Relaxed);
        eprintln!("{}", crate::report::log_line(s, total.saturating_sub(prev)));
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2mib"), Ok(2 << 20));
        assert!(parse_size("M").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn concurrent_only_options_are_rejected_for_stw() {
        let o = GcOptions {
            strategy: Some(StrategyArg::Move),
            ..Default::default()
        };
        assert!(o.heap_config().unwrap_err().contains("--strategy"));
        let o = GcOptions {
            gc: Some(GcArg::Concurrent),
            strategy: Some(StrategyArg::Move),
            faults: Some(FaultsArg::Thread),
            barrier: Some(BarrierArg::WpAsync),
            ..Default::default()
        };
        let c = o.heap_config().unwrap();
        assert_eq!(c.mode, GcMode::Concurrent);
        assert_eq!(c.strategy, Strategy::Move);
        assert_eq!(c.faults, FaultMode::Thread);
        assert_eq!(c.barrier, Barrier::WpAsync);
    }

    #[test]
    fn stress_switches_map_onto_the_config() {
        let o = GcOptions {
            gc: Some(GcArg::Concurrent),
            stress_random: Some(40),
            stress_seed: Some(9),
            phase_delay_ms: Some(3),
            poison: true,
            ..Default::default()
        };
        let c = o.heap_config().unwrap();
        assert_eq!(
            c.debug.stress_random,
            Some(faultline::StressRandom {
                one_in: 40,
                seed: 9
            })
        );
        assert_eq!(
            c.debug.phase_delay,
            Some(std::time::Duration::from_millis(3))
        );
        assert!(c.debug.poison_released);
        for (o, needle) in [
            (
                GcOptions {
                    phase_delay_ms: Some(1),
                    ..Default::default()
                },
                "--gc-phase-delay",
            ),
            (
                GcOptions {
                    stress: Some(5),
                    stress_random: Some(5),
                    ..Default::default()
                },
                "exclude",
            ),
            (
                GcOptions {
                    stress_seed: Some(5),
                    ..Default::default()
                },
                "--gc-stress-seed",
            ),
            (
                GcOptions {
                    stress_random: Some(0),
                    ..Default::default()
                },
                "--gc-stress-random",
            ),
        ] {
            assert!(o.heap_config().unwrap_err().contains(needle), "{needle}");
        }
    }
}

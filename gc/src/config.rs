//! Heap configuration and its validation.
//!
//! Invariant: a [`HeapConfig`] that passed [`HeapConfig::validate`] describes a heap that can be
//! built: sizes are page multiples, the allocation buffer fits in a half, the large-object
//! threshold fits in an allocation buffer, and every option named is implemented (options that
//! are not yet are rejected with [`ConfigError::Unsupported`], never silently ignored).

use std::sync::Arc;

use faultline_heap::{Sys, PAGE_SIZE};

use crate::stats::CycleStats;

/// Which collector runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcMode {
    /// Mark, plan and compact inside one pause (also the fallback when userfaultfd is
    /// unavailable).
    StopTheWorld,
    /// Short pauses; compaction (and marking) run beside the mutators.
    Concurrent,
}

/// How destination pages are mapped by the concurrent compactor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// MOVE if the probe says it works, else COPY.
    Auto,
    /// Fill a buffer, `UFFDIO_COPY`.
    Copy,
    /// Fill a staging page, `UFFDIO_MOVE`.
    Move,
    /// memfd arena, fill through a second view, `UFFDIO_CONTINUE`.
    Minor,
}

/// How mutator faults are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    /// SIGBUS if available, else handler thread.
    Auto,
    /// SIGBUS in the faulting thread.
    Sigbus,
    /// Handler thread(s).
    Thread,
}

/// The write barrier used by concurrent marking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Barrier {
    /// Snapshot-at-the-beginning deletion barrier.
    Satb,
    /// No barrier: userfaultfd write-protect + PAGEMAP_SCAN.
    WpAsync,
}

/// How the heap uses the kernel's userfaultfd registration across collection cycles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Choreography {
    /// The volatile arena: the whole arena is registered once at creation and every cycle
    /// works inside it, so cycles make no VMA split or merge and take no `mmap_lock` for
    /// writing.
    #[default]
    Arena,
    /// What the Android runtime does each cycle, kept as a baseline to measure the arena
    /// against: register only the used range at the flip (`UFFDIO_REGISTER`, a VMA split),
    /// move the from-space pages away with `mremap(MREMAP_DONTUNMAP)`, and unregister at the
    /// end of compaction (a VMA merge). Concurrent mode only.
    PerCycle,
}

/// A callback invoked after every collection cycle (the GC log hook).
pub type CycleHook = Arc<dyn Fn(&CycleStats) + Send + Sync>;

/// Heap configuration.
#[derive(Clone)]
pub struct HeapConfig {
    /// Capacity of the moving space in bytes (one half of the arena; the arena reserves twice
    /// this in virtual address space, but only live data is ever resident).
    pub max_heap_bytes: usize,
    /// Capacity of the non-moving large-object space in bytes.
    pub large_object_space_bytes: usize,
    /// Objects of at least this many bytes go to the large-object space.
    pub large_object_threshold: usize,
    /// Thread-local allocation buffer size.
    pub tlab_bytes: usize,
    /// Fresh memory is made present in batches of this many bytes (one COPY of zeroes).
    pub populate_batch_bytes: usize,
    /// A collection starts when the heap reaches `max(min_trigger_bytes, live after the last
    /// collection * (1 + growth))`.
    pub growth: f64,
    /// The lowest occupancy trigger.
    pub min_trigger_bytes: usize,
    /// Threads used for marking (1: the collecting thread alone).
    pub gc_threads: usize,
    /// Collector mode.
    pub mode: GcMode,
    /// Page-mapping strategy (concurrent mode).
    pub strategy: Strategy,
    /// Fault delivery (concurrent mode).
    pub faults: FaultMode,
    /// Marking barrier (concurrent mode).
    pub barrier: Barrier,
    /// Verify the heap before and after every collection.
    pub verify: bool,
    /// Stress: collect every N allocations of a mutator.
    pub stress_every: Option<u64>,
    /// Stress / test knob: concurrent compaction workers wait this long after the flip before
    /// filling pages, widening the window in which mutators meet absent pages.
    pub compaction_delay: Option<std::time::Duration>,
    /// Concurrent marking: after marking, re-mark with the world stopped and panic if an
    /// object reachable at the snapshot was not marked (Go's `gccheckmark`).
    pub checkmark: bool,
    /// Test hook called by the concurrent marker at [`crate::marking::MarkPoint`]s (it may
    /// block, to force interleavings with mutators).
    pub mark_hook: Option<crate::marking::MarkHook>,
    /// Test-only: disable the SATB barrier, to prove that the race tests and checkmark catch a
    /// collector that loses objects.
    #[doc(hidden)]
    pub debug_disable_barrier: bool,
    /// Kernel choreography per cycle (concurrent mode): the volatile arena, or the per-cycle
    /// register / mremap / unregister baseline.
    pub choreography: Choreography,
    /// Stress: collect at seeded random allocation intervals (see [`crate::stress`]).
    pub stress_random: Option<crate::stress::StressRandom>,
    /// Stress: sleep this long between the phases of a concurrent cycle (after the initial
    /// mark, before the remark, before compaction), widening races with the mutators.
    pub phase_delay: Option<std::time::Duration>,
    /// Debug: poison released memory, so a stale read of a released page faults hard
    /// (`UFFDIO_POISON`) or reads `faultline_heap::arena::POISON_WORD` (unregistered arena).
    pub poison_released: bool,
    /// Test-only: a deliberately broken collector, to prove the verifier and the shadow model
    /// catch one.
    #[doc(hidden)]
    pub debug_break: Option<crate::stress::Breakage>,
    /// Use userfaultfd at all (false forces the unregistered stop-the-world arena).
    pub use_userfaultfd: bool,
    /// The kernel (the real one unless a test injects faults).
    pub sys: Sys,
    /// Called after every cycle.
    pub on_cycle: Option<CycleHook>,
}

impl core::fmt::Debug for HeapConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HeapConfig")
            .field("max_heap_bytes", &self.max_heap_bytes)
            .field("large_object_space_bytes", &self.large_object_space_bytes)
            .field("large_object_threshold", &self.large_object_threshold)
            .field("tlab_bytes", &self.tlab_bytes)
            .field("mode", &self.mode)
            .field("gc_threads", &self.gc_threads)
            .field("verify", &self.verify)
            .field("stress_every", &self.stress_every)
            .field("choreography", &self.choreography)
            .field("stress_random", &self.stress_random)
            .field("phase_delay", &self.phase_delay)
            .field("poison_released", &self.poison_released)
            .finish_non_exhaustive()
    }
}

impl Default for HeapConfig {
    fn default() -> Self {
        HeapConfig {
            max_heap_bytes: 256 << 20,
            large_object_space_bytes: 256 << 20,
            large_object_threshold: 8 << 10,
            tlab_bytes: 32 << 10,
            populate_batch_bytes: 256 << 10,
            growth: 1.0,
            min_trigger_bytes: 4 << 20,
            gc_threads: 1,
            mode: GcMode::StopTheWorld,
            strategy: Strategy::Auto,
            faults: FaultMode::Auto,
            barrier: Barrier::Satb,
            verify: false,
            stress_every: None,
            compaction_delay: None,
            checkmark: false,
            mark_hook: None,
            debug_disable_barrier: false,
            choreography: Choreography::Arena,
            stress_random: None,
            phase_delay: None,
            poison_released: false,
            debug_break: None,
            use_userfaultfd: true,
            sys: Sys::real(),
            on_cycle: None,
        }
    }
}

/// A configuration that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value out of its range.
    #[error("invalid heap configuration: {0}")]
    Invalid(String),
    /// An option that is not implemented (yet).
    #[error("unsupported heap configuration: {0}")]
    Unsupported(String),
}

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

impl HeapConfig {
    /// A configuration with a moving space of `bytes`.
    pub fn with_heap_size(bytes: usize) -> Self {
        HeapConfig {
            max_heap_bytes: bytes,
            large_object_space_bytes: bytes.max(1 << 20),
            min_trigger_bytes: (bytes / 4).clamp(64 << 10, 4 << 20),
            ..HeapConfig::default()
        }
    }

    /// Check the configuration and round sizes to pages.
    pub fn validate(mut self) -> Result<HeapConfig, ConfigError> {
        let bad = |s: String| Err(ConfigError::Invalid(s));
        if self.max_heap_bytes < 64 << 10 {
            return bad(format!(
                "max_heap_bytes = {} is below the 64 KiB minimum",
                self.max_heap_bytes
            ));
        }
        // The live-words prefix sums are 32-bit: at most 2^32 words (32 GiB) per half.
        if self.max_heap_bytes > 32 << 30 {
            return bad(format!(
                "max_heap_bytes = {} is above the 32 GiB maximum",
                self.max_heap_bytes
            ));
        }
        self.max_heap_bytes = round_up(self.max_heap_bytes, PAGE_SIZE);
        self.large_object_space_bytes = round_up(self.large_object_space_bytes, PAGE_SIZE);
        if self.large_object_space_bytes > 1 << 40 {
            return bad("large_object_space_bytes is above the 1 TiB maximum".into());
        }
        if self.tlab_bytes < 1024 || self.tlab_bytes % 8 != 0 {
            return bad(format!(
                "tlab_bytes = {} must be a multiple of 8 and at least 1 KiB",
                self.tlab_bytes
            ));
        }
        if self.tlab_bytes > self.max_heap_bytes / 4 {
            return bad(format!(
                "tlab_bytes = {} must be at most a quarter of max_heap_bytes ({})",
                self.tlab_bytes, self.max_heap_bytes
            ));
        }
        if self.large_object_threshold < 64 || self.large_object_threshold > self.tlab_bytes / 2 {
            return bad(format!(
                "large_object_threshold = {} must lie in [64, tlab_bytes / 2 = {}]",
                self.large_object_threshold,
                self.tlab_bytes / 2
            ));
        }
        if self.populate_batch_bytes < PAGE_SIZE {
            return bad("populate_batch_bytes must be at least one page".into());
        }
        self.populate_batch_bytes = round_up(self.populate_batch_bytes, PAGE_SIZE);
        if !(self.growth.is_finite() && self.growth >= 0.0) {
            return bad(format!(
                "growth = {} must be a finite non-negative number",
                self.growth
            ));
        }
        if self.gc_threads == 0 || self.gc_threads > 64 {
            return bad(format!(
                "gc_threads = {} must lie in [1, 64]",
                self.gc_threads
            ));
        }
        if self.stress_every == Some(0) {
            return bad("stress_every must be at least 1".into());
        }
        if self.choreography == Choreography::PerCycle {
            if self.mode != GcMode::Concurrent {
                return bad("choreography = PerCycle needs mode = Concurrent".into());
            }
            if self.strategy == Strategy::Minor {
                return Err(ConfigError::Unsupported(
                    "choreography = PerCycle with the minor strategy (its memfd arena is registered MINOR once)".into(),
                ));
            }
            if self.barrier == Barrier::WpAsync {
                return Err(ConfigError::Unsupported(
                    "choreography = PerCycle with the wp_async barrier (it needs the whole arena registered WP)".into(),
                ));
            }
        }
        if matches!(self.stress_random, Some(r) if r.one_in == 0) {
            return bad("stress_random.one_in must be at least 1".into());
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_rejected_with_their_name() {
        let cases: Vec<(HeapConfig, &str)> = vec![
            (
                HeapConfig {
                    max_heap_bytes: 1000,
                    ..Default::default()
                },
                "max_heap_bytes",
            ),
            (
                HeapConfig {
                    tlab_bytes: 100,
                    ..Default::default()
                },
                "tlab_bytes",
            ),
            (
                HeapConfig {
                    large_object_threshold: 1 << 30,
                    ..Default::default()
                },
                "large_object_threshold",
            ),
            (
                HeapConfig {
                    gc_threads: 0,
                    ..Default::default()
                },
                "gc_threads",
            ),
            (
                HeapConfig {
                    growth: f64::NAN,
                    ..Default::default()
                },
                "growth",
            ),
            (
                HeapConfig {
                    stress_every: Some(0),
                    ..Default::default()
                },
                "stress_every",
            ),
        ];
        for (c, needle) in cases {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        let ok = HeapConfig {
            max_heap_bytes: (1 << 20) + 1,
            ..HeapConfig::with_heap_size(1 << 20)
        }
        .validate()
        .unwrap();
        assert_eq!(ok.max_heap_bytes % PAGE_SIZE, 0);
    }
}

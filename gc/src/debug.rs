//! The debug, stress and test part of the configuration ([`DebugConfig`]) and the types its
//! knobs take. None of it is needed to embed the heap; all of it is off by default.
//!
//! - `verify`: verify the heap before and after every collection (`crate::verify`);
//! - `checkmark`: after concurrent marking, re-mark with the world stopped and panic if an
//!   object reachable at the snapshot was not marked (Go's `gccheckmark`);
//! - `stress_every`: a collection every N allocations of a mutator;
//! - `stress_random`: a collection at seeded random allocation intervals ([`StressRandom`]);
//! - `phase_delay`: a sleep between the phases of a concurrent cycle ([`Phase`]), widening
//!   the windows in which mutators race with marking and compaction;
//! - `compaction_delay`: compaction workers wait this long after the flip before filling pages;
//! - `poison_released`: released memory is poisoned, so that a stale read faults hard
//!   (`UFFDIO_POISON`) or reads `faultline_heap::arena::POISON_WORD`;
//! - `mark_hook`: called by the concurrent marker at each [`MarkPoint`] (it may block, to force
//!   interleavings with mutators; a panic of it is reported and marking continues; `attach`
//!   is refused in it, `Heap::with_mutator` works);
//! - `sys`: the kernel interface (the real one unless a test injects faults);
//! - `disable_barrier`, `breakage` (hidden, test-only): a deliberately broken collector, to
//!   prove that the race tests, checkmark, the verifier and the shadow model catch one. They
//!   lose objects, so safe code cannot set them: only the `unsafe`
//!   [`DebugConfig::set_disable_barrier`] and [`DebugConfig::set_breakage`] do.
//!
//! There is no "compact everything" switch: every cycle already slides every live object of
//! the moving space into the other half.
//!
//! Invariants: nothing here runs in signal context; [`random_hit`] is pure; every knob safe
//! code can set leaves the collector correct (the breaking ones are private fields behind
//! `unsafe` setters).

use std::sync::Arc;
use std::time::Duration;

use faultline_heap::Sys;

/// Collect at random allocation intervals: each allocation of a mutator triggers a collection
/// with probability 1/`one_in` (mean interval `one_in`), drawn from a hash of `seed`, the
/// mutator's id and its allocation count (reproducible for a single-threaded run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StressRandom {
    /// Mean allocations between collections (at least 1).
    pub one_in: u64,
    /// The seed.
    pub seed: u64,
}

/// A deliberately broken collector (test-only).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breakage {
    /// Do not update the reference fields of large objects at the flip: they keep pointing
    /// into the released half.
    SkipLargeObjectRefs,
    /// Generational mode: a young cycle drops the first range its remembered set reports
    /// (a missed card): young objects reachable only from an old object there are lost.
    SkipDirtyCard,
}

/// Points of a concurrent cycle at which `phase_delay` sleeps (the mutators run meanwhile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// After the initial-mark pause, before concurrent marking.
    AfterInitialMark,
    /// After concurrent marking, before the remark + flip pause.
    BeforeRemark,
    /// After the flip, before the compaction workers start.
    BeforeCompaction,
}

/// Points at which a test hook may park the concurrent marker (to force interleavings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkPoint {
    /// Concurrent marking began (roots marked, nothing traced).
    Started,
    /// `n` objects have been traced so far, by all concurrent markers together (reported by
    /// the GC thread for every `n` in order; helper markers keep tracing while it is parked).
    Traced(usize),
    /// Precleaning is done; the remark pause comes next.
    BeforeRemark,
}

/// A hook called by the marker at each [`MarkPoint`].
pub type MarkHook = Arc<dyn Fn(MarkPoint) + Send + Sync>;

/// The debug, stress and test knobs (see the module documentation). All off by default.
///
/// The knobs that break the collector on purpose cannot be set by safe code:
///
/// ```compile_fail,E0616
/// let mut c = faultline_gc::HeapConfig::with_heap_size(1 << 20);
/// c.debug.disable_barrier = true;
/// ```
///
/// ```compile_fail,E0133
/// let mut c = faultline_gc::HeapConfig::with_heap_size(1 << 20);
/// c.debug.set_breakage(Some(faultline_gc::testing::Breakage::SkipDirtyCard));
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct DebugConfig {
    /// Verify the heap before and after every collection.
    pub verify: bool,
    /// Concurrent marking: after marking, re-mark with the world stopped and panic if an
    /// object reachable at the snapshot was not marked (Go's `gccheckmark`).
    pub checkmark: bool,
    /// Stress: collect every N allocations of a mutator.
    pub stress_every: Option<u64>,
    /// Stress: collect at seeded random allocation intervals.
    pub stress_random: Option<StressRandom>,
    /// Stress: sleep this long between the phases of a concurrent cycle (after the initial
    /// mark, before the remark, before compaction), widening races with the mutators. At
    /// most 60 s.
    pub phase_delay: Option<Duration>,
    /// Stress: concurrent compaction workers wait this long after the flip before filling
    /// pages, widening the window in which mutators meet absent pages. At most 60 s.
    pub compaction_delay: Option<Duration>,
    /// Test: the compaction worker that takes destination page 0 sleeps this long holding
    /// that page's claim (a descheduled worker), so a fault on the page must not wait for it
    /// (see `Heap::fault_breakdown`'s `rescued`). At most 60 s.
    pub worker_stall: Option<Duration>,
    /// Poison released memory, so a stale read of a released page faults hard
    /// (`UFFDIO_POISON`) or reads `faultline_heap::arena::POISON_WORD` (unregistered arena).
    pub poison_released: bool,
    /// Test hook called by the concurrent marker at [`MarkPoint`]s (it may block).
    pub mark_hook: Option<MarkHook>,
    /// The kernel (the real one unless a test injects faults).
    pub sys: Sys,
    /// Test-only: disable the SATB barrier (and barrier-free rescans), to prove that the race
    /// tests and checkmark catch a collector that loses objects. Set with the `unsafe`
    /// [`DebugConfig::set_disable_barrier`].
    pub(crate) disable_barrier: bool,
    /// Test-only: barrier-free (`wp_async`) cycles always fall back to SATB before the remark
    /// (as they do when precleaning is outrun), so tests reach the fallback deterministically.
    #[doc(hidden)]
    pub force_satb_switch: bool,
    /// Test-only: a deliberately broken collector. Set with the `unsafe`
    /// [`DebugConfig::set_breakage`].
    pub(crate) breakage: Option<Breakage>,
}

impl core::fmt::Debug for DebugConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DebugConfig")
            .field("verify", &self.verify)
            .field("checkmark", &self.checkmark)
            .field("stress_every", &self.stress_every)
            .field("stress_random", &self.stress_random)
            .field("phase_delay", &self.phase_delay)
            .field("compaction_delay", &self.compaction_delay)
            .field("worker_stall", &self.worker_stall)
            .field("poison_released", &self.poison_released)
            .field("mark_hook", &self.mark_hook.is_some())
            .field("disable_barrier", &self.disable_barrier)
            .field("force_satb_switch", &self.force_satb_switch)
            .field("breakage", &self.breakage)
            .finish_non_exhaustive()
    }
}

impl DebugConfig {
    /// Test-only: disable the SATB barrier and the barrier-free rescans (a collector that
    /// loses objects reachable only through overwritten references).
    ///
    /// # Safety
    /// With `true`, a heap built from this configuration may free or move objects that are
    /// still reachable: safe code using it may then read another object's data or corrupt
    /// memory. Only for tests that prove a check catches such a collector.
    #[doc(hidden)]
    pub unsafe fn set_disable_barrier(&mut self, on: bool) {
        self.disable_barrier = on;
    }

    /// Test-only: a deliberately broken collector ([`Breakage`]).
    ///
    /// # Safety
    /// With `Some`, a heap built from this configuration leaves references to freed or moved
    /// memory: as [`DebugConfig::set_disable_barrier`].
    #[doc(hidden)]
    pub unsafe fn set_breakage(&mut self, breakage: Option<Breakage>) {
        self.breakage = breakage;
    }

    /// Sleep for the configured phase delay (a no-op without one).
    pub(crate) fn phase_delay(&self, _at: Phase) {
        if let Some(d) = self.phase_delay {
            std::thread::sleep(d);
        }
    }

    /// Call the mark hook, if any. A panic of the hook is caught here, where marking is at a
    /// consistent point (the hook only observes or blocks): reported on stderr (the first one
    /// in the process), and marking continues; unwinding would reach the GC thread's guard,
    /// which aborts the process as a collector failure.
    pub(crate) fn mark_point(&self, p: MarkPoint) {
        if let Some(h) = &self.mark_hook {
            let _scope = crate::reentry::enter(crate::reentry::Callback::MarkHook);
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(p))).is_err()
                && !HOOK_PANIC_REPORTED.swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                eprintln!(
                    "faultline: the mark hook panicked at {p:?} (see the panic above); marking continues (later panics of a mark hook are not reported)"
                );
            }
        }
    }
}

/// Whether a panic of a mark hook was reported (once per process: a hook that always panics
/// would otherwise report every traced object).
static HOOK_PANIC_REPORTED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Whether allocation number `n` of mutator `id` triggers a random stress collection.
pub(crate) fn random_hit(r: StressRandom, id: u64, n: u64) -> bool {
    // splitmix64 of (seed, id, n): cheap, stateless, well mixed.
    let mut z = r
        .seed
        .wrapping_add(id.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(n.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    z.is_multiple_of(r.one_in.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_hits_are_seeded_and_about_one_in_n() {
        let r = StressRandom {
            one_in: 50,
            seed: 3,
        };
        let hits: Vec<u64> = (0..100_000).filter(|&n| random_hit(r, 1, n)).collect();
        assert!((1_500..2_500).contains(&hits.len()), "{}", hits.len());
        let again: Vec<u64> = (0..100_000).filter(|&n| random_hit(r, 1, n)).collect();
        assert_eq!(hits, again);
        let other: Vec<u64> = (0..100_000)
            .filter(|&n| random_hit(StressRandom { seed: 4, ..r }, 1, n))
            .collect();
        assert_ne!(hits, other);
    }
}

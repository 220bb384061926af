//! Collector modes: what the embedder asks for ([`GcMode`], [`Strategy`], [`FaultMode`],
//! [`Barrier`], [`Choreography`]) and what actually runs ([`ResolvedMode`], reported to the
//! embedder as [`ModeInfo`]).
//!
//! The request is resolved **once**, when the heap is created, from **one** run of the
//! capability probe ([`ResolvedMode::resolve`]); every later decision reads the resolved mode,
//! never the request or the probe again. Each choice records why it was made, in words an
//! embedder can act on. `Strategy::Auto` and `FaultMode::Auto` follow measurements of this
//! kernel (copy against move per page; a fault's round trip by SIGBUS against a handler
//! thread; [`faultline_heap::calibrate`], each taken at most once per process and cached,
//! [`measured_kernel_costs`]), not mere availability; the figures are in the reasons.
//!
//! Invariants:
//! - a [`ResolvedMode`] with `gc == GcMode::Concurrent` always has a strategy and a delivery
//!   (the `Option`s are `Some`), and `Auto` never survives resolution;
//! - the resolved mode changes afterwards in one way only: the arena could not be created as
//!   resolved ([`ResolvedMode::fall_back`]), which turns it stop-the-world and records why.

use faultline_heap::calibrate::{FaultCost, MappingCost};
use faultline_heap::{Capability, Probe};

/// Which collector runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcMode {
    /// Mark, plan and compact inside one pause (also the fallback when userfaultfd is
    /// unavailable).
    StopTheWorld,
    /// Short pauses; compaction (and marking) run beside the mutators.
    Concurrent,
}

impl GcMode {
    /// Short name (`"stw"`, `"concurrent"`).
    pub fn name(self) -> &'static str {
        match self {
            GcMode::StopTheWorld => "stw",
            GcMode::Concurrent => "concurrent",
        }
    }
}

/// How destination pages are mapped by the concurrent compactor (the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// COPY or MOVE, whichever this kernel maps pages with more cheaply: measured once per
    /// process when MOVE is available (move must cost at most 0.8x copy; the figures are in the mode's
    /// reasons), COPY otherwise.
    Auto,
    /// Fill a buffer, `UFFDIO_COPY`.
    Copy,
    /// Fill a staging page, `UFFDIO_MOVE`.
    Move,
    /// memfd arena, fill through a second view, `UFFDIO_CONTINUE`.
    Minor,
}

impl Strategy {
    /// Short name (`"auto"`, `"copy"`, `"move"`, `"minor"`).
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Auto => "auto",
            Strategy::Copy => "copy",
            Strategy::Move => "move",
            Strategy::Minor => "minor",
        }
    }
}

/// How mutator faults are delivered (the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    /// Whichever resolves a fault faster here: measured once per process when SIGBUS
    /// delivery works (a handler thread must cost at most 0.8x SIGBUS's round trip; the
    /// figures are in the mode's reasons), the handler thread otherwise.
    Auto,
    /// SIGBUS in the faulting thread.
    Sigbus,
    /// A handler thread reading the userfaultfd.
    Thread,
}

impl FaultMode {
    /// Short name (`"auto"`, `"sigbus"`, `"thread"`).
    pub fn name(self) -> &'static str {
        match self {
            FaultMode::Auto => "auto",
            FaultMode::Sigbus => "sigbus",
            FaultMode::Thread => "thread",
        }
    }
}

/// The write barrier used by concurrent marking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Barrier {
    /// Snapshot-at-the-beginning deletion barrier.
    Satb,
    /// No barrier: userfaultfd write-protect + PAGEMAP_SCAN.
    WpAsync,
}

impl Barrier {
    /// Short name (`"satb"`, `"wp_async"`).
    pub fn name(self) -> &'static str {
        match self {
            Barrier::Satb => "satb",
            Barrier::WpAsync => "wp_async",
        }
    }
}

/// The generational mode and its remembered set ([`crate::HeapConfig::generational`]).
///
/// Generational heaps run **young cycles** that mark from the roots plus the remembered set
/// and compact only the young objects, and full cycles (the whole heap, as a heap that is not
/// generational does every cycle) when the old generation has grown (see the module
/// documentation of `generational`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Generational {
    /// Every cycle marks and compacts the whole heap.
    #[default]
    Off,
    /// Young cycles; old-to-young references found through a card table kept by the store
    /// barrier.
    Cards,
    /// Young cycles; old-to-young references found barrier-free, from the old pages written
    /// since the last young cycle (`UFFD_FEATURE_WP_ASYNC` + `PAGEMAP_SCAN`). A heap refuses it
    /// (`ConfigError::Unsupported`) where the kernel or the arena has no WP_ASYNC.
    WrittenPages,
}

impl Generational {
    /// Short name (`"off"`, `"cards"`, `"written_pages"`).
    pub fn name(self) -> &'static str {
        match self {
            Generational::Off => "off",
            Generational::Cards => "cards",
            Generational::WrittenPages => "written_pages",
        }
    }
    /// Whether young cycles run.
    pub fn enabled(self) -> bool {
        self != Generational::Off
    }
}

/// How a stop-the-world cycle compacts (also a concurrent heap's cycle that compacts in the
/// pause).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StwCompaction {
    /// `Slide` (the default), except with `debug.poison_released`, which needs the halves to
    /// alternate so that stale pointers into the released half fault: then `Copy`. (Either
    /// way a cycle with pinned objects in the way compacts into the other half, see `Slide`.)
    #[default]
    Auto,
    /// Into the other half, as the concurrent collector does: destination pages are filled
    /// into a buffer and mapped with `UFFDIO_COPY` in batches of 64 pages (a plain copy on an
    /// arena without userfaultfd); the old half is released and the halves alternate.
    Copy,
    /// In place (Lisp-2 style sliding, with the same rank-based plan): every run of live words
    /// moves down within the current half with one `memmove`, references are rewritten in a
    /// second pass over each slid chunk while it is in cache, and the free tail is released
    /// (`MADV_DONTNEED`), except the part the mutators will allocate before the next
    /// collection, which stays present and is zeroed by the allocation-buffer refills that
    /// hand it out (with [`crate::HeapConfig::recycle_old_half`]). No kernel call per page, no
    /// second copy of the live data. The halves do not alternate; `debug.poison_released` does
    /// not poison the tail (it stays in the current half and is handed out again). A cycle with
    /// pinned objects, or whose half starts above its base (pinned objects were there),
    /// compacts into the other half instead.
    Slide,
}

impl StwCompaction {
    /// Short name (`"auto"`, `"copy"`, `"slide"`).
    pub fn name(self) -> &'static str {
        match self {
            StwCompaction::Auto => "auto",
            StwCompaction::Copy => "copy",
            StwCompaction::Slide => "slide",
        }
    }

    /// Whether a stop-the-world cycle slides in place (before the per-cycle conditions: no
    /// pinned objects, the window at the half's base), given `debug.poison_released`.
    pub fn slides(self, poison_released: bool) -> bool {
        match self {
            StwCompaction::Auto => !poison_released,
            StwCompaction::Copy => false,
            StwCompaction::Slide => true,
        }
    }
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

impl Choreography {
    /// Short name (`"arena"`, `"per-cycle"`).
    pub fn name(self) -> &'static str {
        match self {
            Choreography::Arena => "arena",
            Choreography::PerCycle => "per-cycle",
        }
    }
}

/// The page-mapping strategy in effect (resolved: never `Auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MapStrategy {
    /// `UFFDIO_COPY` from a filled buffer.
    Copy,
    /// `UFFDIO_MOVE` of a filled staging page (or of a dense page updated in place).
    Move,
    /// `UFFDIO_CONTINUE` of a page filled through the memfd's second view.
    Minor,
}

impl MapStrategy {
    /// The public name of the strategy.
    pub(crate) fn public(self) -> Strategy {
        match self {
            MapStrategy::Copy => Strategy::Copy,
            MapStrategy::Move => Strategy::Move,
            MapStrategy::Minor => Strategy::Minor,
        }
    }
}

/// The fault delivery in effect (resolved: never `Auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// SIGBUS in the faulting thread.
    Sigbus,
    /// A handler thread reading the userfaultfd.
    Thread,
}

impl Delivery {
    /// The public name of the delivery.
    pub(crate) fn public(self) -> FaultMode {
        match self {
            Delivery::Sigbus => FaultMode::Sigbus,
            Delivery::Thread => FaultMode::Thread,
        }
    }
}

/// What runs, resolved once at heap creation from the request and one probe run.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedMode {
    /// Collector mode.
    pub gc: GcMode,
    /// Page-mapping strategy (concurrent mode only).
    pub strategy: Option<MapStrategy>,
    /// Fault delivery (concurrent mode only).
    pub delivery: Option<Delivery>,
    /// Concurrent marking is barrier-free (WP_ASYNC + PAGEMAP_SCAN) instead of SATB.
    pub wp_marking: bool,
    /// Kernel choreography per cycle.
    pub choreography: Choreography,
    /// Why userfaultfd (concurrent compaction, or uffd at all) is not used, if so.
    pub fallback_reason: Option<String>,
    /// Why a requested wp_async barrier fell back to SATB, if it did.
    pub barrier_fallback: Option<String>,
    /// Why each choice was made, one line each ("strategy: copy (requested)").
    pub reasons: Vec<String>,
}

/// `Strategy::Auto` picks move when its measured cost per page is at most this fraction of
/// copy's (move recycles old pages but, on kernels without batched TLB flushes, pays a
/// shootdown per call; copy is the simpler path, so a tie goes to copy).
pub const AUTO_MOVE_MAX_RATIO: f64 = 0.8;

/// `Strategy::Auto` with both copy and move available: pick by `cost` (a measurement, or why
/// it failed), with the reason line.
pub(crate) fn auto_strategy(cost: Result<MappingCost, String>) -> (MapStrategy, String) {
    match cost {
        Ok(c) if c.move_over_copy() <= AUTO_MOVE_MAX_RATIO => (
            MapStrategy::Move,
            format!(
                "strategy: move (auto, measured: move costs {:.2}x copy per page, at most {AUTO_MOVE_MAX_RATIO}: {c})",
                c.move_over_copy()
            ),
        ),
        Ok(c) => (
            MapStrategy::Copy,
            format!(
                "strategy: copy (auto, measured: move costs {:.2}x copy per page, more than {AUTO_MOVE_MAX_RATIO}: {c})",
                c.move_over_copy()
            ),
        ),
        Err(e) => (
            MapStrategy::Copy,
            format!("strategy: copy (auto: measuring copy against move failed: {e})"),
        ),
    }
}

/// The process's measurement of copy against move, taken once (a few milliseconds) by the
/// first heap that needs it, through the real kernel.
pub(crate) fn measured_mapping() -> Result<MappingCost, String> {
    if let Some(c) = MAPPING_COST.get() {
        return c.clone();
    }
    let _measuring = measuring();
    MAPPING_COST
        .get_or_init(|| {
            faultline_heap::calibrate::measure_mapping(&faultline_heap::Sys::real())
                .map_err(|e| e.to_string())
        })
        .clone()
}

/// `FaultMode::Auto` picks the handler thread when its measured round trip is at most this
/// fraction of SIGBUS's (SIGBUS needs no extra thread and no context switch, so a tie goes to
/// SIGBUS).
pub const AUTO_THREAD_MAX_RATIO: f64 = 0.8;

/// `FaultMode::Auto` with SIGBUS delivery working: pick by `cost` (a measurement, or why it
/// failed), with the reason line.
pub(crate) fn auto_delivery(cost: Result<FaultCost, String>) -> (Delivery, String) {
    match cost {
        Ok(c) if c.thread_over_sigbus() <= AUTO_THREAD_MAX_RATIO => (
            Delivery::Thread,
            format!(
                "faults: thread (auto, measured: the handler thread's round trip is {:.2}x SIGBUS's, at most {AUTO_THREAD_MAX_RATIO}: {c})",
                c.thread_over_sigbus()
            ),
        ),
        Ok(c) => (
            Delivery::Sigbus,
            format!(
                "faults: sigbus (auto, measured: the handler thread's round trip is {:.2}x SIGBUS's, more than {AUTO_THREAD_MAX_RATIO}: {c})",
                c.thread_over_sigbus()
            ),
        ),
        Err(e) => (
            Delivery::Sigbus,
            format!(
                "faults: sigbus (auto: measuring the fault round trip failed: {e}; UFFD_FEATURE_SIGBUS works here)"
            ),
        ),
    }
}

static MAPPING_COST: std::sync::OnceLock<Result<MappingCost, String>> = std::sync::OnceLock::new();
static FAULT_COST: std::sync::OnceLock<Result<FaultCost, String>> = std::sync::OnceLock::new();

/// Held while a measurement runs (the initialisation of [`MAPPING_COST`] or [`FAULT_COST`]),
/// and by fork's *prepare* across a fork ([`hold_for_fork`]): a child forked while another
/// thread measured inherited the `OnceLock` in its running state with no thread to finish it,
/// and its first heap that needed the measurement waited forever (audit round nine). The
/// measuring thread may be any thread but a running mutator (a running mutator's thread inside
/// `Heap::new` holds up *prepare*'s stop of its heap until it returns), and waits for nothing
/// a fork holds, so *prepare* waits for at most one measurement (milliseconds).
static MEASURING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn measuring() -> std::sync::MutexGuard<'static, ()> {
    MEASURING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

thread_local! {
    /// [`MEASURING`], held by the forking thread from *prepare* to *parent* / *child* (the
    /// three handlers run on that thread). Never destroyed (no destructor registered: a fork
    /// from a thread-local destructor at thread exit finds it); empty outside a fork.
    static HELD_FOR_FORK: core::mem::ManuallyDrop<core::cell::RefCell<Option<std::sync::MutexGuard<'static, ()>>>> =
        const { core::mem::ManuallyDrop::new(core::cell::RefCell::new(None)) };
}

/// Fork's *prepare*: wait for a measurement in progress on another thread and keep any other
/// from starting until [`release_after_fork`].
pub(crate) fn hold_for_fork() {
    let g = measuring();
    HELD_FOR_FORK.with(|h| *h.borrow_mut() = Some(g));
}

/// Fork's *parent* / *child*: let measurements run again.
pub(crate) fn release_after_fork() {
    HELD_FOR_FORK.with(|h| drop(h.borrow_mut().take()));
}

/// The process's measurement of a fault's round trip by delivery, taken once (a few
/// milliseconds) by the first heap that needs it, through the real kernel.
pub(crate) fn measured_faults() -> Result<FaultCost, String> {
    if let Some(c) = FAULT_COST.get() {
        return c.clone();
    }
    let _measuring = measuring();
    FAULT_COST
        .get_or_init(|| {
            faultline_heap::calibrate::measure_faults(&faultline_heap::Sys::real())
                .map_err(|e| e.to_string())
        })
        .clone()
}

/// The kernel measurements this process has taken for `Auto` (see [`measured_kernel_costs`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct KernelCosts {
    /// Copy against move per page (`Strategy::Auto`): `None` if no heap needed it yet, the
    /// error if the measurement failed.
    pub mapping: Option<Result<MappingCost, String>>,
    /// A fault's round trip by delivery (`FaultMode::Auto`): `None` if no heap needed it yet.
    pub faults: Option<Result<FaultCost, String>>,
}

/// The measurements `Strategy::Auto` and `FaultMode::Auto` chose by in this process (each is
/// taken once, by the first heap created with that `Auto`, and reused by every later one).
/// Never measures anything itself.
pub fn measured_kernel_costs() -> KernelCosts {
    KernelCosts {
        mapping: MAPPING_COST.get().cloned(),
        faults: FAULT_COST.get().cloned(),
    }
}

/// The request a [`ResolvedMode`] is resolved from (the relevant part of the configuration).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ModeRequest {
    pub gc: GcMode,
    pub strategy: Strategy,
    pub faults: FaultMode,
    pub barrier: Barrier,
    pub choreography: Choreography,
    pub use_userfaultfd: bool,
}

impl ResolvedMode {
    /// Resolve `req`. `probe` runs the capability probe; it is called at most once, and only
    /// when userfaultfd is wanted.
    /// `calibrate` measures copy against move ([`faultline_heap::calibrate`]); it is called at
    /// most once, and only when `Strategy::Auto` has both to choose from. `calibrate_faults`
    /// measures a fault's round trip by delivery; it is called at most once, and only when
    /// `FaultMode::Auto` has both to choose from (and concurrent compaction is possible).
    pub(crate) fn resolve(
        req: ModeRequest,
        probe: impl FnOnce() -> Probe,
        calibrate: impl FnOnce() -> Result<MappingCost, String>,
        calibrate_faults: impl FnOnce() -> Result<FaultCost, String>,
    ) -> ResolvedMode {
        let mut r = ResolvedMode {
            gc: GcMode::StopTheWorld,
            strategy: None,
            delivery: None,
            wp_marking: false,
            choreography: req.choreography,
            fallback_reason: None,
            barrier_fallback: None,
            reasons: Vec::new(),
        };
        if !req.use_userfaultfd {
            r.fallback_reason = Some("userfaultfd disabled by configuration".into());
            r.reasons
                .push("gc: stw (use_userfaultfd = false in the configuration)".into());
            return r;
        }
        if req.gc == GcMode::StopTheWorld {
            // No probe: the stop-the-world arena is registered (SIGBUS delivery, so a stray
            // fault crashes instead of hanging) if userfaultfd works, and plain otherwise.
            r.reasons.push("gc: stw (requested)".into());
            return r;
        }
        let probe = probe();
        if !probe.available {
            let why = probe
                .reason
                .clone()
                .unwrap_or_else(|| "userfaultfd unavailable".into());
            r.reasons.push(format!("gc: stw ({why})"));
            r.fallback_reason = Some(why);
            return r;
        }
        let why = |c: Capability| {
            probe
                .detail(c)
                .map_or_else(|| format!("{} unavailable", c.name()), str::to_string)
        };
        let strategy = match req.strategy {
            Strategy::Auto if probe.supports(Capability::Move) => {
                let (s, why) = auto_strategy(calibrate());
                r.reasons.push(why);
                s
            }
            Strategy::Auto => {
                r.reasons.push(format!(
                    "strategy: copy (auto: UFFDIO_MOVE does not work here: {})",
                    why(Capability::Move)
                ));
                MapStrategy::Copy
            }
            Strategy::Copy => {
                r.reasons.push("strategy: copy (requested)".into());
                MapStrategy::Copy
            }
            Strategy::Move if probe.supports(Capability::Move) => {
                r.reasons.push("strategy: move (requested)".into());
                MapStrategy::Move
            }
            Strategy::Move => {
                return r.fall_back(format!(
                    "the move strategy needs UFFDIO_MOVE: {}",
                    why(Capability::Move)
                ))
            }
            Strategy::Minor if probe.supports(Capability::MinorShmem) => {
                r.reasons.push("strategy: minor (requested)".into());
                MapStrategy::Minor
            }
            Strategy::Minor => {
                return r.fall_back(format!(
                    "the minor strategy needs MINOR_SHMEM: {}",
                    why(Capability::MinorShmem)
                ))
            }
        };
        let delivery = match req.faults {
            FaultMode::Auto if probe.supports(Capability::Sigbus) => {
                let (d, why) = auto_delivery(calibrate_faults());
                r.reasons.push(why);
                d
            }
            FaultMode::Auto => {
                r.reasons.push(format!(
                    "faults: thread (auto: SIGBUS delivery does not work here: {})",
                    why(Capability::Sigbus)
                ));
                Delivery::Thread
            }
            FaultMode::Thread => {
                r.reasons.push("faults: thread (requested)".into());
                Delivery::Thread
            }
            FaultMode::Sigbus if probe.supports(Capability::Sigbus) => {
                r.reasons.push("faults: sigbus (requested)".into());
                Delivery::Sigbus
            }
            FaultMode::Sigbus => {
                return r.fall_back(format!(
                    "SIGBUS fault delivery needs UFFD_FEATURE_SIGBUS: {}",
                    why(Capability::Sigbus)
                ))
            }
        };
        // The barrier-free marking mode needs WP_ASYNC + PAGEMAP_SCAN, and an anonymous arena.
        if req.barrier == Barrier::WpAsync {
            if strategy == MapStrategy::Minor {
                r.barrier_fallback = Some(
                    "wp_async marking is not supported with the minor strategy (memfd arena); using the SATB barrier".into(),
                );
            } else if !probe.supports(Capability::WpAsync) {
                r.barrier_fallback =
                    Some("WP_ASYNC or PAGEMAP_SCAN is unavailable; using the SATB barrier".into());
            } else {
                r.wp_marking = true;
                r.reasons.push("barrier: wp_async (requested)".into());
            }
        } else {
            r.reasons.push("barrier: satb (requested)".into());
        }
        if let Some(b) = &r.barrier_fallback {
            r.reasons.push(format!("barrier: satb ({b})"));
        }
        r.reasons.push(format!(
            "choreography: {} (requested)",
            req.choreography.name()
        ));
        r.gc = GcMode::Concurrent;
        r.strategy = Some(strategy);
        r.delivery = Some(delivery);
        r
    }

    /// Concurrent compaction is not possible: run stop-the-world and say why.
    pub(crate) fn fall_back(mut self, why: String) -> ResolvedMode {
        self.gc = GcMode::StopTheWorld;
        self.strategy = None;
        self.delivery = None;
        self.wp_marking = false;
        self.reasons.push(format!("gc: stw ({why})"));
        self.fallback_reason = Some(why);
        self
    }

    /// Concurrent compaction is in effect (before any fork).
    pub(crate) fn concurrent(&self) -> bool {
        self.gc == GcMode::Concurrent
    }
}

/// The collector configuration in effect, as reported to the embedder.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModeInfo {
    /// Collector mode.
    pub mode: GcMode,
    /// Page-mapping strategy of concurrent compaction (never `Auto`).
    pub strategy: Option<Strategy>,
    /// Fault delivery of concurrent compaction (never `Auto`).
    pub faults: Option<FaultMode>,
    /// Concurrent-marking barrier.
    pub barrier: Option<Barrier>,
    /// Kernel choreography (meaningful in concurrent mode).
    pub choreography: Choreography,
    /// Why userfaultfd (or a requested feature) is not used, if so.
    pub fallback_reason: Option<String>,
    /// Why each choice was made, one line each.
    pub reasons: Vec<String>,
    /// The generational mode (young cycles and their remembered set), or `Off`.
    pub generational: Generational,
}

impl ModeInfo {
    /// A short label of what runs: `stw`, or `strategy/faults` in concurrent mode, with
    /// `/gen` (card remembered set) or `/gen-wp` (written pages) appended in generational
    /// mode, e.g. `copy/sigbus/gen`.
    pub fn label(&self) -> String {
        let mut s = match (self.mode, self.strategy, self.faults) {
            (GcMode::Concurrent, Some(st), Some(f)) => format!("{}/{}", st.name(), f.name()),
            _ => "stw".to_string(),
        };
        match self.generational {
            Generational::Off => {}
            Generational::Cards => s.push_str("/gen"),
            Generational::WrittenPages => s.push_str("/gen-wp"),
        }
        s
    }
}

/// The GC log's line at heap creation (`FAULTLINE_GC_LOG`): what runs and why, with the
/// measured figures `Auto` chose by, on one line.
pub(crate) fn creation_log_line(heap: u64, info: &ModeInfo) -> String {
    format!(
        "faultline: heap {heap} created: {}; {}",
        info.label(),
        info.reasons.join("; ")
    )
}

macro_rules! display_by_name {
    ($($t:ty),*) => {$(
        impl core::fmt::Display for $t {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }
    )*};
}
display_by_name!(
    GcMode,
    Strategy,
    FaultMode,
    Barrier,
    Choreography,
    Generational
);

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(copy: f64, mv: f64) -> MappingCost {
        MappingCost {
            copy_single_ns: copy,
            copy_run_ns: copy / 2.0,
            move_single_ns: mv,
            move_run_ns: mv / 2.0,
        }
    }

    #[test]
    fn auto_follows_the_measurement() {
        let (s, why) = auto_strategy(Ok(cost(1000.0, 3000.0)));
        assert_eq!(s, MapStrategy::Copy);
        assert!(why.contains("3.00x") && why.contains("measured"), "{why}");
        let (s, why) = auto_strategy(Ok(cost(1000.0, 400.0)));
        assert_eq!(s, MapStrategy::Move);
        assert!(why.contains("0.40x"), "{why}");
        // A tie goes to copy.
        assert_eq!(auto_strategy(Ok(cost(1000.0, 900.0))).0, MapStrategy::Copy);
        let (s, why) = auto_strategy(Err("UFFDIO_MOVE: ENOMEM".into()));
        assert_eq!(s, MapStrategy::Copy);
        assert!(why.contains("failed: UFFDIO_MOVE: ENOMEM"), "{why}");
    }

    fn faults(sigbus: f64, thread: f64) -> FaultCost {
        FaultCost {
            sigbus_ns: sigbus,
            thread_ns: thread,
            took_ms: 4.0,
        }
    }

    /// A probe of a kernel where everything works.
    fn probe_all() -> Probe {
        Probe {
            available: true,
            open_method: None,
            kernel: "test".into(),
            features: faultline_heap::uffd::Features::NONE,
            ioctls: Default::default(),
            capabilities: Capability::ALL
                .into_iter()
                .map(|c| faultline_heap::CapabilityCheck {
                    capability: c,
                    name: c.name(),
                    ok: true,
                    detail: None,
                })
                .collect(),
            reason: None,
            remedy: None,
        }
    }

    fn request(strategy: Strategy, faults: FaultMode) -> ModeRequest {
        ModeRequest {
            gc: GcMode::Concurrent,
            strategy,
            faults,
            barrier: Barrier::Satb,
            choreography: Choreography::Arena,
            use_userfaultfd: true,
        }
    }

    #[test]
    fn auto_delivery_follows_the_measurement() {
        let (d, why) = auto_delivery(Ok(faults(4000.0, 7000.0)));
        assert_eq!(d, Delivery::Sigbus);
        assert!(
            why.contains("1.75x") && why.contains("measured") && why.contains("sigbus 4000 ns"),
            "{why}"
        );
        let (d, why) = auto_delivery(Ok(faults(4000.0, 2000.0)));
        assert_eq!(d, Delivery::Thread);
        assert!(why.contains("0.50x"), "{why}");
        // A tie goes to SIGBUS.
        assert_eq!(
            auto_delivery(Ok(faults(4000.0, 3600.0))).0,
            Delivery::Sigbus
        );
    }

    #[test]
    fn a_failed_fault_measurement_falls_back_to_availability() {
        let r = ResolvedMode::resolve(
            request(Strategy::Copy, FaultMode::Auto),
            probe_all,
            || unreachable!("copy was requested: no mapping measurement"),
            || Err("UFFDIO_COPY: EIO".into()),
        );
        assert_eq!(r.delivery, Some(Delivery::Sigbus));
        let line = r.reasons.iter().find(|l| l.starts_with("faults:")).unwrap();
        assert!(
            line.contains("measuring the fault round trip failed: UFFDIO_COPY: EIO"),
            "{line}"
        );
        // Without SIGBUS delivery there is nothing to measure: the handler thread, by
        // availability.
        let mut p = probe_all();
        p.capabilities[0].ok = false;
        p.capabilities[0].detail = Some("not offered".into());
        let r = ResolvedMode::resolve(
            request(Strategy::Copy, FaultMode::Auto),
            || p,
            || unreachable!(),
            || unreachable!("no SIGBUS: nothing to compare"),
        );
        assert_eq!(r.delivery, Some(Delivery::Thread));
    }

    #[test]
    fn the_creation_log_line_names_the_label_and_every_reason() {
        let r = ResolvedMode::resolve(
            request(Strategy::Auto, FaultMode::Auto),
            probe_all,
            || Ok(cost(1000.0, 3000.0)),
            || Ok(faults(4000.0, 7000.0)),
        );
        let info = ModeInfo {
            mode: r.gc,
            strategy: r.strategy.map(MapStrategy::public),
            faults: r.delivery.map(Delivery::public),
            barrier: Some(Barrier::Satb),
            choreography: r.choreography,
            fallback_reason: None,
            reasons: r.reasons.clone(),
            generational: Generational::Off,
        };
        let line = creation_log_line(7, &info);
        assert!(
            line.starts_with("faultline: heap 7 created: copy/sigbus; "),
            "{line}"
        );
        for reason in &r.reasons {
            assert!(line.contains(reason.as_str()), "{line} lacks {reason}");
        }
        assert!(!line.contains('\n'));
    }

    #[test]
    fn auto_resolves_both_choices_by_measurement() {
        let r = ResolvedMode::resolve(
            request(Strategy::Auto, FaultMode::Auto),
            probe_all,
            || Ok(cost(1000.0, 3000.0)),
            || Ok(faults(4000.0, 2000.0)),
        );
        assert_eq!(r.strategy, Some(MapStrategy::Copy));
        assert_eq!(r.delivery, Some(Delivery::Thread));
        assert!(r
            .reasons
            .iter()
            .any(|l| l.starts_with("strategy: copy (auto, measured")));
        assert!(r
            .reasons
            .iter()
            .any(|l| l.starts_with("faults: thread (auto, measured")));
        // Requested deliveries are not measured.
        let r = ResolvedMode::resolve(
            request(Strategy::Copy, FaultMode::Sigbus),
            probe_all,
            || unreachable!(),
            || unreachable!("sigbus was requested"),
        );
        assert_eq!(r.delivery, Some(Delivery::Sigbus));
    }
}

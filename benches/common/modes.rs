//! The collector configurations the pause benches compare (`pauses` section 1 and `suite`),
//! built in one place: [`STW`] and the concurrent strategy x fault-delivery grid
//! [`CONCURRENT`]. Each bench assembles its own list from these and builds its own heap
//! configuration from a [`Mode`]'s fields.
//!
//! Invariant: a mode's label names exactly the configuration its fields describe.

use faultline::{Barrier, Choreography, FaultMode, GcMode, Generational, Strategy};

/// One collector configuration.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    /// The name the reports use.
    pub label: &'static str,
    /// Stop-the-world or concurrent.
    pub gc: GcMode,
    /// How the concurrent compaction fills destination pages.
    pub strategy: Strategy,
    /// How faults on unfilled pages reach the collector.
    pub faults: FaultMode,
    /// The concurrent-marking write barrier.
    pub barrier: Barrier,
    /// How the arena is set up for each cycle.
    pub choreography: Choreography,
    /// Marking threads.
    pub gc_threads: usize,
    /// Young cycles and their remembered set (labels of generational modes contain `gen`).
    pub generational: Generational,
    /// The GC threads in `SCHED_IDLE` while the collector keeps to its schedule
    /// (`HeapConfig::gc_thread_idle`; labels of such modes end in `/idle`). Off: the heap's
    /// default (which `FAULTLINE_GC_THREAD_IDLE` may set).
    pub idle: bool,
}

/// Stop-the-world, one marking thread, the heap's defaults otherwise.
pub const STW: Mode = Mode {
    label: "stw",
    gc: GcMode::StopTheWorld,
    strategy: Strategy::Auto,
    faults: FaultMode::Auto,
    barrier: Barrier::Satb,
    choreography: Choreography::Arena,
    gc_threads: 1,
    generational: Generational::Off,
    idle: false,
};

/// A concurrent mode with the SATB barrier, the arena choreography and one marking thread.
pub const fn concurrent(label: &'static str, strategy: Strategy, faults: FaultMode) -> Mode {
    Mode {
        label,
        gc: GcMode::Concurrent,
        strategy,
        faults,
        barrier: Barrier::Satb,
        choreography: Choreography::Arena,
        gc_threads: 1,
        generational: Generational::Off,
        idle: false,
    }
}

/// `base` in generational mode with the card remembered set, labelled `label`.
pub const fn gen(label: &'static str, base: Mode) -> Mode {
    Mode {
        label,
        generational: Generational::Cards,
        ..base
    }
}

/// `base` in generational mode with the barrier-free remembered set (written pages),
/// labelled `label`.
pub const fn gen_wp(label: &'static str, base: Mode) -> Mode {
    Mode {
        label,
        generational: Generational::WrittenPages,
        ..base
    }
}

/// Every concurrent strategy with every fault delivery, in report order.
pub const CONCURRENT: [Mode; 6] = [
    concurrent("copy/sigbus", Strategy::Copy, FaultMode::Sigbus),
    concurrent("copy/thread", Strategy::Copy, FaultMode::Thread),
    concurrent("move/sigbus", Strategy::Move, FaultMode::Sigbus),
    concurrent("move/thread", Strategy::Move, FaultMode::Thread),
    concurrent("minor/sigbus", Strategy::Minor, FaultMode::Sigbus),
    concurrent("minor/thread", Strategy::Minor, FaultMode::Thread),
];

//! Pause-time harness: concurrent compaction against stop-the-world, on the same heap shapes,
//! in one run.
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/target-pause cargo bench -p faultline --bench pauses            # full
//! CARGO_TARGET_DIR=/tmp/target-pause cargo bench -p faultline --bench pauses -- --quick # quick
//! ```
//!
//! (`FAULTLINE_BENCH_QUICK=1` is the same as `--quick`.) Tables go to stdout and to
//! `target/pauses-report.md` (under the workspace root); progress goes to stderr. The full run
//! takes about 4 minutes on an idle 2-CPU machine, the quick one about 30 s. For diagnosis:
//! `FAULTLINE_PAUSES_SIZES_MIB=64,256` (live sizes of section 1), `FAULTLINE_PAUSES_MODES=stw,
//! copy/sigbus` (collector labels), `FAULTLINE_PAUSES_SECTIONS=pauses,floor,barrier` and
//! `FAULTLINE_PAUSES_SLOW_US=N` (print every mutator step slower than N µs).
//!
//! Sections:
//!
//! 1. **Pauses, phases, fault stalls, compaction throughput.** For each live size (64 MiB and
//!    1 GiB; quick: 4 and 16 MiB) and each collector (stop-the-world with 1 and 2 marking
//!    threads; concurrent x {copy, move, minor} x {sigbus, thread}) a fresh heap
//!    (`max_heap_bytes` = 2 x live) gets the same live structure: a root table of ~256
//!    entries, alternately a complete binary tree of 32-byte nodes and a list of 24-byte pairs
//!    built with one garbage pair after every cell (so the first cycle compacts holes away).
//!    Then several explicit cycles run. Around each cycle the mutator (the main thread) works:
//!    a *step* is either a random root-to-leaf walk down a tree swapping the children of about
//!    half the nodes on the path (two reference stores each), or a 16-cell walk along a list
//!    from a per-list cursor (a `Root`) followed by a rotation of the next two cells (three
//!    reference stores) or, within an allocation budget of live/16 bytes per cycle, the
//!    replacement of the next cell by a fresh copy. It polls `safepoint()` after every step.
//!    Before each cycle it works for a fixed idle window; in concurrent mode it keeps working
//!    from `collect()` (which returns after the initial-mark pause) until the cycle is
//!    recorded (an `on_cycle` hook), then calls `wait_for_cycle()`. Steps are attributed to
//!    the phase they started in: idle, concurrent marking (until `Heap::cycles()` moves, which
//!    happens in the remark+flip pause) or concurrent compaction (until the hook fires).
//!    After the last cycle the whole structure is walked and checked (node count and id sum
//!    per tree, cell count and value sum per list: the mutations preserve both). Besides the
//!    collector's own `CycleStats`, the mutator times its `collect()` calls and its safepoint
//!    polls: the longest poll of a concurrent cycle is the remark+flip pause as it saw it.
//! 2. **Physical floor.** A raw SIGBUS + `UFFDIO_COPY` round trip (a `VolatileArena` with
//!    SIGBUS delivery and a resolver registered with `register_region` that COPYs a prepared
//!    page; every fault timed on its own), the same through a handler thread
//!    (`FaultReader`), `UFFDIO_COPY` throughput in 1-, 16- and 64-page calls, one-page COPY
//!    and MOVE with and without a second thread of the process running (MOVE must flush the
//!    source page's TLB entry on every CPU running the process), `memcpy` bandwidth, and a
//!    scheduler-noise probe (how long a busy loop is kept off the CPU).
//! 3. **Barrier cost.** A store-only workload (`B[i] = A[j]` on pairs of 1000-element
//!    reference arrays; `A` holds every object, so no store ever drops the last reference to
//!    anything) measured as stores/s: in a stop-the-world heap (barrier never on), and in
//!    concurrent heaps with the SATB barrier, with the SATB logging switched off (the
//!    `debug_disable_barrier` test knob: a control that keeps the marker running but logs
//!    nothing, safe for this workload for the reason just given) and with `Barrier::WpAsync`
//!    (reported as unsupported if `Heap::new` refuses it, or as the barrier that actually ran
//!    if it falls back). The four heaps live side by side and take turns in interleaved
//!    rounds (an idle window, then collections back to back), so load from other jobs falls
//!    on all of them alike; each batch of stores is attributed to its phase.
//!
//! Invariants:
//! - one heap per collector configuration and size (`Heap::fault_stats` is cumulative per
//!   heap); section 1 drops each heap before building the next;
//! - a heap whose mutator stops polling (section 3 switching to another heap) has no cycle
//!   running: every round ends with `wait_for_cycle()`, so no pause waits on an idle mutator;
//! - no `Value` is held across a safepoint: everything that survives one is in a `Root` or on
//!   the value stack (the borrow checker enforces this for `Local`s);
//! - every cycle measured is an explicit one; cycles with another trigger are counted and
//!   reported, not mixed in;
//! - a watchdog aborts the run with a message naming the stage if nothing progresses for
//!   several minutes, so a collector hang shows up as a failure instead of a stuck job.
//!
//! Layout: this file runs the sections in order and writes the report's header and footer;
//! `opts` (options), `progress` (stages and the watchdog), `report` (the Markdown report and
//! number formats), `hist` (step-latency histogram); section 1 is `world` (the structure and
//! the mutator step), `measure` (one heap per collector and size) and `tables`; section 2 is
//! `floor`, section 3 `barrier`. The random generator, the collector table and the object
//! types come from `benches/common`.

#[path = "../common/mod.rs"]
mod common;

mod barrier;
mod floor;
mod hist;
mod measure;
mod opts;
mod progress;
mod report;
mod tables;
mod world;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use barrier::barrier_section;
use common::{loadavg, mib, MIB};
use floor::floor_section;
use measure::{modes, run_mode};
use opts::Opts;
use progress::{spawn_watchdog, START};
use report::{count, cpu_model, ms, read_trim, Report};
use tables::{max_pause, pause_tables, summary_table};
use world::Shape;

fn main() {
    START.get_or_init(Instant::now);
    let opts = Opts::parse();
    spawn_watchdog(Duration::from_secs(if opts.quick { 120 } else { 300 }));
    let mut rep = Report {
        text: String::new(),
        path: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pauses-report.md"),
    };
    let t_run = Instant::now();
    let load0 = loadavg();
    rep.line(&format!(
        "<!-- faultline pauses benchmark, {} run -->",
        if opts.quick { "quick" } else { "full" }
    ));
    rep.line("");
    rep.line(&format!(
        "Machine: {} CPUs ({}), kernel {}, load average at start {load0}. Mode: {}.",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        read_trim("/proc/sys/kernel/osrelease"),
        if opts.quick { "quick" } else { "full" }
    ));
    rep.line("");
    if opts.section("pauses") {
        let mut runs = Vec::new();
        for &size in &opts.sizes {
            for spec in modes() {
                if !opts.modes.is_empty() && !opts.modes.iter().any(|l| l == spec.label) {
                    continue;
                }
                let r = run_mode(&opts, spec, size);
                match &r.outcome {
                    Ok(d) => {
                        eprintln!(
                            "  {} @ {} MiB: {} cycles, longest pause {} ms, faults {}, check {}",
                            spec.label,
                            size / MIB,
                            d.cycles.len(),
                            ms(max_pause(d)),
                            d.faults.count,
                            if d.check.is_ok() { "ok" } else { "FAILED" }
                        );
                        if let Err(e) = &d.check {
                            eprintln!("  CHECK FAILED: {e}");
                        }
                    }
                    Err(e) => eprintln!("  {} @ {} MiB: {e}", spec.label, size / MIB),
                }
                runs.push(r);
            }
        }
        rep.line("## Pauses, phases, fault stalls, compaction throughput");
        rep.line("");
        let mut shapes = String::new();
        for &s in &opts.sizes {
            let sh = Shape::for_live(s);
            let _ = write!(
                shapes,
                "{} MiB: {} trees of depth {} + {} lists of {} cells, {} objects, {:.1} MiB; ",
                s / MIB,
                sh.entries / 2,
                sh.depth,
                sh.entries / 2,
                sh.list_len,
                count(sh.objects()),
                mib(sh.live_bytes())
            );
        }
        rep.line(&format!(
            "Heap shapes: {}max_heap_bytes = 2 x live; every list cell was followed by a garbage pair when built. Cycles per heap: {} ({} for 512 MiB and more). Concurrent heaps use 1 GC thread (plus one compaction worker; with `thread` delivery also the fault handler thread); `stw-2t` marks with 2 threads.",
            shapes,
            opts.cycles(0),
            opts.cycles(1 << 30)
        ));
        rep.line("");
        summary_table(&mut rep, &runs, &opts.sizes);
        pause_tables(&mut rep, &runs);
        rep.save();
    }
    if opts.section("floor") {
        floor_section(&opts, &mut rep);
        rep.save();
    }
    if opts.section("barrier") {
        barrier_section(&opts, &mut rep);
    }
    rep.line(&format!(
        "Run time {:.0} s; load average at start {load0}, at end {}.",
        t_run.elapsed().as_secs_f64(),
        loadavg()
    ));
    rep.save();
    eprintln!("pauses: report written to {}", rep.path.display());
}

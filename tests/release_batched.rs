//! Early releases go back in batches (issue 15's young cycles at 4 GiB): the copy strategy's
//! workers release the runs of at least 16 dead pages nobody reads any more during the
//! compaction, all the runs a worker holds at once with one `process_madvise` (before, one
//! `madvise` each, and each flushed the TLB of every CPU running the process). The young
//! window of a generational copy heap (which recycles nothing early) holds a live list whose
//! nodes (each with a live 2,000-byte string) lie about 20 pages apart, dead strings between
//! them: every dead run is 18-20 pages long, and the survivors fill hundreds of destination
//! pages, so the workers release several times per cycle.
//!
//! Asserted: every list reads back whole after every cycle and the heap verifies; most of the
//! dead pages are released early, with `process_madvise` calls, not one `madvise` per run.
//! And with `pidfd_open` refused (injected `ENOSYS`), the same cycles release the same pages
//! one `madvise` per run, the refusal reported by `ArenaStats::release_batching`.

mod common;
use common::*;
use faultline::testing::heap::inject::{FaultInjector, Rule, Trigger};
use faultline::testing::heap::probe::kernel_at_least;
use faultline::testing::heap::sys::{Call, Errno, Sys};
use faultline::{FaultMode, GcMode, Generational, Heap, HeapConfig, Strategy, Value};
use std::sync::Arc;

const MIB: usize = 1 << 20;
/// Dead strings allocated after each live node: about 19.5 pages (strings below the
/// large-object threshold, so they lie in the window between the nodes).
const GAP_STRINGS: usize = 20;
const STRING: usize = 4000;
/// Live nodes added per round.
const NODES: i64 = 400;
/// Bytes of each node's live string.
const LIVE: usize = 2000;
const ROUNDS: usize = 6;

#[test]
fn a_cycles_early_releases_go_in_batches() {
    if !uffd_or_skip("a_cycles_early_releases_go_in_batches") {
        return;
    }
    cycles(false);
}

#[test]
fn refused_batches_release_the_same_runs_one_call_each() {
    if !uffd_or_skip("refused_batches_release_the_same_runs_one_call_each") {
        return;
    }
    cycles(true);
}

/// ROUNDS cycles over windows of short-lived strings between live nodes; with `refuse`,
/// `pidfd_open` fails with ENOSYS (so no batch is ever made, on any kernel).
fn cycles(refuse: bool) {
    if !refuse && !kernel_at_least(6, 13) {
        eprintln!(
            "SKIPPED: a_cycles_early_releases_go_in_batches: process_madvise(MADV_DONTNEED) needs Linux 6.13"
        );
        return;
    }
    let heap = Heap::new(HeapConfig::with_heap_size(256 * MIB).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = Strategy::Copy;
        c.faults = FaultMode::Sigbus;
        c.generational = Generational::Cards;
        if refuse {
            let rules = vec![Rule::new(Call::PidfdOpen, Errno::ENOSYS, Trigger::Always)];
            c.debug.sys = Sys::new(Arc::new(FaultInjector::new(rules, 1)));
        }
        // Keeping 1 MiB of each window for the next flip (the default keeps up to 512 MiB,
        // which would be every dead page here): a cycle that keeps recycles nothing early, so
        // the rest of the dead pages are released early.
        c.keep_fresh_bytes = Some(MIB);
        // Cycles only when asked.
        c.min_trigger_bytes = 200 * MIB;
    }))
    .unwrap();
    let t = register(&heap);
    let mut m = heap.attach();
    let mut dead_pages = 0usize;
    for round in 0..ROUNDS {
        // One list per round, each node followed by GAP_STRINGS dead strings; every list stays
        // live (on the stack), so the only dead data in the window lies between live pages.
        m.push(Value::NULL);
        for i in 0..NODES {
            let s = m.alloc(t.string, LIVE).unwrap();
            m.local(s).unwrap().write_bytes(0, &[byte(i); LIVE]);
            let tail = m.pop().unwrap();
            m.push(s);
            m.push(tail);
            cons(&mut m, &t);
            for _ in 0..GAP_STRINGS {
                let s = m.alloc(t.string, STRING).unwrap();
                m.local(s).unwrap().write_bytes(0, &[0x5a; STRING]);
            }
        }
        dead_pages += NODES as usize * (GAP_STRINGS * STRING) / 4096;
        m.collect().unwrap();
        heap.wait_for_compaction();
        for r in 0..=round {
            check_list(&m, m.stack_get(r));
        }
        m.verify().unwrap();
    }
    let h = heap.history();
    let early: u64 = h.iter().map(|c| c.pages_released_early).sum();
    let calls = heap.arena_stats().calls_since_creation;
    let runs = ROUNDS * NODES as usize;
    eprintln!(
        "{} cycles: {early} of about {dead_pages} dead pages released early (about {runs} \
         runs); {} process_madvise, {} madvise calls",
        h.len(),
        calls.get(Call::ProcessMadvise),
        calls.get(Call::Madvise)
    );
    assert!(
        early as usize >= dead_pages / 2,
        "{early} of {dead_pages} dead pages released early"
    );
    if refuse {
        assert_eq!(heap.arena_stats().release_batching, Err(Errno::ENOSYS));
        assert_eq!(calls.get(Call::ProcessMadvise), 0);
        // One madvise per run (runs that became adjacent go together: about 1,100 calls).
        assert!(
            calls.get(Call::Madvise) as usize >= runs / 4,
            "one madvise per run"
        );
        return;
    }
    assert_eq!(heap.arena_stats().release_batching, Ok(()));
    assert!(calls.get(Call::ProcessMadvise) >= ROUNDS as u64);
    assert!(
        (calls.get(Call::Madvise) as usize) < runs / 4,
        "the runs went in batches, not one madvise each"
    );
}

fn byte(i: i64) -> u8 {
    (i % 251) as u8
}

/// The list of one round: NODES nodes, newest first, each string holding its index's byte.
fn check_list(m: &faultline::Mutator, mut v: Value) {
    let mut i = NODES;
    let mut buf = [0u8; LIVE];
    while let Some(p) = m.local(v) {
        i -= 1;
        m.local(p.get(0)).unwrap().read_bytes(0, &mut buf);
        assert!(buf.iter().all(|&b| b == byte(i)), "node {i}");
        v = p.get(1);
    }
    assert_eq!(i, 0, "nodes missing");
}

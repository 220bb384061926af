//! The footprint during a cycle (issue 15 item 4). Copy strategy: old-half pages nobody reads
//! any more are released during the compaction, not all moved into the new half as fresh
//! memory up to the allocation headroom (which kept the old half's footprint resident in the
//! new one: the two halves' sum never fell); recycling feeds only the fresh memory the
//! mutators have just ahead of them. Move strategy: the unread old pages beyond what the
//! compaction can stage into are released right after the flip, not kept to the cycle's end.
//!
//! Measured by the test itself: the process's resident set (`/proc/self/statm`) before a
//! cycle that finds a large region of dead pages (a headroom far above what recycling keeps
//! ahead) and after it. This file holds one test, so no other test's heap moves the figure.

mod common;
use common::*;
use faultline::{FaultMode, GcMode, Heap, HeapConfig, Strategy};

const MIB: usize = 1 << 20;
/// Dead strings allocated before the cycle (all pages, none read by the compaction).
const GARBAGE_MIB: usize = 448;
/// Bytes of each dead string.
const STRING: usize = 4000;

/// Resident set of this process, bytes.
fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// One cycle over a live list, `GARBAGE_MIB` of dead strings above it and, with `sandwich`,
/// a second live list above those (then one destination page holds the end of the first list
/// and the start of the second: its range of old pages spans the dead ones, which it does not
/// read). Returns how far the resident set fell over the cycle, MiB.
fn one_cycle(strategy: Strategy, faults: FaultMode, sandwich: bool, keep_mib: usize) -> usize {
    let heap = Heap::new(HeapConfig::with_heap_size(1024 * MIB).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = strategy;
        c.faults = faults;
        c.keep_fresh_bytes = Some(keep_mib * MIB);
        // No cycle before the one the test asks for; a large headroom after it.
        c.min_trigger_bytes = 960 * MIB;
    }))
    .unwrap();
    let t = register(&heap);
    let mut m = heap.attach();
    list(&mut m, &t, 1000);
    // Strings below the large-object threshold: they live in the moving space.
    for _ in 0..GARBAGE_MIB * MIB / STRING {
        let s = m.alloc(t.string, STRING).unwrap();
        m.local(s).unwrap().write_bytes(0, &[0x5a; STRING]);
    }
    if sandwich {
        list(&mut m, &t, 1000);
    }
    assert!(heap.used_bytes() >= GARBAGE_MIB * MIB);
    let before = rss_bytes();
    m.collect().unwrap();
    heap.wait_for_compaction();
    let after = rss_bytes();
    for i in 0..1 + sandwich as usize {
        assert_eq!(read_list(&m, m.stack_get(i)).len(), 1000);
    }
    m.verify().unwrap();
    let h = heap.history();
    let recycled: usize = h.iter().map(|c| c.pages_recycled).sum();
    let early: u64 = h.iter().map(|c| c.pages_released_early).sum();
    let fell = before.saturating_sub(after) / MIB;
    let kept = heap.release_stats().kept_pages as usize * 4096 / MIB;
    eprintln!(
        "{strategy:?} {faults:?} sandwich {sandwich}, keep {keep_mib} MiB: RSS {} -> {} MiB \
         (fell {fell} MiB); {recycled} pages recycled or kept, {early} released early \
         (recycling included), {kept} MiB kept",
        before / MIB,
        after / MIB
    );
    assert!(kept <= keep_mib, "kept {kept} MiB, bound {keep_mib}");
    fell
}

#[test]
fn a_cycle_releases_dead_old_pages_instead_of_keeping_them() {
    if !uffd_or_skip("a_cycle_releases_dead_old_pages_instead_of_keeping_them") {
        return;
    }
    let can_move = faultline::Probe::run().supports(faultline::Capability::Move);
    // Keeping off (0 MiB), and the copy strategy once keeping 128 MiB of the old half's
    // pages mapped for the next flip into it (`keep_fresh_bytes`).
    let mut runs = vec![
        (Strategy::Copy, FaultMode::Sigbus, false, 0),
        (Strategy::Copy, FaultMode::Thread, false, 0),
        (Strategy::Copy, FaultMode::Sigbus, true, 0),
        (Strategy::Copy, FaultMode::Sigbus, true, 128),
    ];
    if can_move {
        runs.extend([
            (Strategy::Move, FaultMode::Sigbus, false, 0),
            (Strategy::Move, FaultMode::Thread, false, 0),
            (Strategy::Move, FaultMode::Sigbus, true, 0),
        ]);
    }
    for (strategy, faults, sandwich, keep) in runs {
        let fell = one_cycle(strategy, faults, sandwich, keep);
        // Before, nearly every dead page was moved into the new half as fresh memory (copy),
        // or kept to the cycle's end and then moved (move; with `sandwich`, also after the
        // release of the surplus: the dead pages counted the middle page's read): RSS fell by
        // a few MiB at most. Now all but the recycled lookahead (and the kept pages, at most
        // `keep`) are released.
        assert!(
            fell + keep >= GARBAGE_MIB / 2,
            "{strategy:?} {faults:?} sandwich {sandwich}, keep {keep} MiB: RSS fell only \
             {fell} MiB over a cycle that found {GARBAGE_MIB} MiB of dead pages"
        );
    }
}

//! The copy strategy's footprint during a cycle (issue 15 item 4): old-half pages nobody reads
//! any more are released during the compaction, not all moved into the new half as fresh
//! memory up to the allocation headroom (which kept the old half's footprint resident in the
//! new one: the two halves' sum never fell). Recycling feeds only the fresh memory the
//! mutators have just ahead of them.
//!
//! Measured by the test itself: the process's resident set (`/proc/self/statm`) before a
//! cycle that finds a large region of dead pages (a headroom far above what recycling keeps
//! ahead) and after it. This file holds one test, so no other test's heap moves the figure.

mod common;
use common::*;
use faultline::{FaultMode, GcMode, Heap, HeapConfig, Strategy};

const MIB: usize = 1 << 20;
/// Dead strings allocated before the cycle (all pages, none read by the compaction).
const GARBAGE_MIB: usize = 192;
/// Bytes of each dead string.
const STRING: usize = 4000;

/// Resident set of this process, bytes.
fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn a_copy_cycle_releases_dead_old_pages_instead_of_keeping_them_as_fresh_memory() {
    if !uffd_or_skip("a_copy_cycle_releases_dead_old_pages_instead_of_keeping_them_as_fresh_memory")
    {
        return;
    }
    for faults in [FaultMode::Sigbus, FaultMode::Thread] {
        let heap = Heap::new(HeapConfig::with_heap_size(512 * MIB).with(|c| {
            c.mode = GcMode::Concurrent;
            c.strategy = Strategy::Copy;
            c.faults = faults;
            // No cycle before the one the test asks for; a large headroom after it.
            c.min_trigger_bytes = 448 * MIB;
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
        assert!(heap.used_bytes() >= GARBAGE_MIB * MIB);
        let before = rss_bytes();
        m.collect().unwrap();
        heap.wait_for_compaction();
        let after = rss_bytes();
        assert_eq!(read_list(&m, m.stack_get(0)).len(), 1000);
        m.verify().unwrap();
        let h = heap.history();
        let recycled: usize = h.iter().map(|c| c.pages_recycled).sum();
        let early: u64 = h.iter().map(|c| c.pages_released_early).sum();
        let fell = before.saturating_sub(after) / MIB;
        eprintln!(
            "{faults:?}: RSS {} -> {} MiB (fell {fell} MiB); {recycled} pages recycled, \
             {early} released early (recycling included)",
            before / MIB,
            after / MIB
        );
        // Before the change nearly every dead page was moved into the new half (RSS fell by
        // a few MiB at most); now all but the recycled lookahead are released.
        assert!(
            fell >= GARBAGE_MIB / 2,
            "{faults:?}: RSS fell only {fell} MiB over a cycle that found {GARBAGE_MIB} MiB of dead pages"
        );
    }
}

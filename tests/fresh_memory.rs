//! Fresh memory recycled from the old half (issue 16 item 3): at the end of a cycle the pages
//! the old half still holds are moved into the new half's free area instead of being released
//! and re-populated, and each allocation-buffer refill zeroes the part it hands out.
//!
//! Checks, for every strategy and delivery: fresh objects read zero although their memory held
//! garbage in the cycle before; live data survives; recycling happened where it applies
//! (anonymous arenas with `UFFDIO_MOVE`: stop-the-world, sliding (the free tail kept) or
//! copying (the old half moved); the move strategy; the copy strategy, whose compaction
//! recycles the old pages it would release early, as soon as nothing reads them; the minor
//! strategy, whose memfd keeps the old half's pages mapped for the next flip into it), not
//! when switched off; and no cycle made a mapping or registration call. Keeping the old half's
//! pages (the copy and minor strategies, generational too) is also driven through live sets
//! that grow and shrink (the kept pages then overlap the next destination, or lie above it).

mod common;
use common::*;
use faultline::{FaultMode, GcMode, Heap, HeapConfig, Strategy, StwCompaction};

const GARBAGE: usize = 1000;

/// Rounds of: garbage strings filled with 0xa5, a collection, fresh strings that must read
/// zero. A rooted list stays live throughout. Returns the pages recycled over all cycles.
fn churn(heap: &Heap, rounds: usize) -> usize {
    let t = register(heap);
    let mut m = heap.attach();
    list(&mut m, &t, 500);
    for _ in 0..rounds {
        for _ in 0..1500 {
            let s = m.alloc(t.string, GARBAGE).unwrap();
            m.local(s).unwrap().write_bytes(0, &[0xa5; GARBAGE]);
        }
        m.collect().unwrap();
        for i in 0..1500 {
            let s = m.alloc(t.string, GARBAGE).unwrap();
            let b = m.local(s).unwrap().to_bytes();
            assert!(b.iter().all(|&x| x == 0), "fresh string {i} is not zero");
            let p = m.alloc(t.pair, 0).unwrap();
            let pl = m.local(p).unwrap();
            assert!(pl.get(0).is_null() && pl.get(1).is_null());
        }
        m.collect().unwrap();
    }
    assert_eq!(read_list(&m, m.stack_get(0)).len(), 500);
    m.verify().unwrap();
    let h = heap.history();
    assert!(h.iter().all(|c| c.calls.mmap_family() == 0
        && c.calls.get(faultline::testing::heap::Call::UffdRegister) == 0
        && c.calls.get(faultline::testing::heap::Call::UffdUnregister) == 0));
    h.iter().map(|c| c.pages_recycled).sum()
}

fn config(mode: GcMode, strategy: Strategy, faults: FaultMode) -> HeapConfig {
    HeapConfig::with_heap_size(8 << 20).with(|c| {
        c.mode = mode;
        c.strategy = strategy;
        c.faults = faults;
        c.min_trigger_bytes = 6 << 20;
        c.debug.verify = true;
    })
}

#[test]
fn every_mode_hands_out_zeroed_recycled_memory() {
    if !uffd_or_skip("every_mode_hands_out_zeroed_recycled_memory") {
        return;
    }
    let can_move = faultline::Probe::run().supports(faultline::Capability::Move);
    // (Stop-the-world compacting into the other half: the default slides, see
    // `a_slide_keeps_its_free_tail_as_fresh_memory`.)
    let mut runs = vec![(GcMode::StopTheWorld, Strategy::Auto, FaultMode::Auto)];
    for strategy in [Strategy::Copy, Strategy::Move, Strategy::Minor] {
        for faults in [FaultMode::Sigbus, FaultMode::Thread] {
            runs.push((GcMode::Concurrent, strategy, faults));
        }
    }
    for (mode, strategy, faults) in runs {
        let heap = Heap::new(
            config(mode, strategy, faults).with(|c| c.stw_compaction = StwCompaction::Copy),
        )
        .unwrap();
        let memfd = heap.mode_info().strategy == Some(Strategy::Minor);
        let recycled = churn(&heap, 4);
        let early: usize = heap
            .history()
            .iter()
            .map(|c| c.pages_released_early as usize)
            .sum();
        eprintln!(
            "{mode:?} {strategy:?} {faults:?}: {recycled} pages recycled, {early} released early"
        );
        if memfd || can_move {
            assert!(recycled > 0, "{mode:?} {strategy:?} {faults:?}");
        } else {
            assert_eq!(recycled, 0, "{mode:?} {strategy:?} {faults:?}");
        }
    }
}

#[test]
fn switched_off_it_recycles_nothing() {
    if !uffd_or_skip("switched_off_it_recycles_nothing") {
        return;
    }
    let heap = Heap::new(
        config(GcMode::StopTheWorld, Strategy::Auto, FaultMode::Auto)
            .with(|c| c.recycle_old_half = false),
    )
    .unwrap();
    assert_eq!(churn(&heap, 2), 0);
}

#[test]
fn a_slide_keeps_its_free_tail_as_fresh_memory() {
    // An in-place slide keeps the part of its free tail the next cycle will allocate present
    // (garbage until a refill zeroes it): fresh objects still read zero, and pages were kept
    // in every cycle that had a tail (here every one: each round allocates the garbage
    // strings first). Off, nothing is kept.
    for recycle in [true, false] {
        let heap = Heap::new(
            config(GcMode::StopTheWorld, Strategy::Auto, FaultMode::Auto).with(|c| {
                c.stw_compaction = StwCompaction::Slide;
                c.recycle_old_half = recycle;
            }),
        )
        .unwrap();
        let kept = churn(&heap, 4);
        eprintln!("slide, recycle {recycle}: {kept} pages kept");
        if recycle {
            assert!(kept > 0);
            assert!(heap.history().iter().all(|c| c.compact_map.is_zero()));
        } else {
            assert_eq!(kept, 0);
        }
    }
}

#[test]
fn kept_fresh_memory_while_the_live_set_grows_and_shrinks() {
    if !uffd_or_skip("kept_fresh_memory_while_the_live_set_grows_and_shrinks") {
        return;
    }
    let young = faultline::Generational::Cards;
    for (strategy, recycle, faults, gen) in [
        (Strategy::Minor, true, FaultMode::Sigbus, None),
        (Strategy::Minor, true, FaultMode::Thread, None),
        (Strategy::Minor, false, FaultMode::Sigbus, None),
        (Strategy::Copy, true, FaultMode::Sigbus, None),
        (Strategy::Copy, true, FaultMode::Thread, None),
        (Strategy::Copy, true, FaultMode::Sigbus, Some(young)),
        (Strategy::Minor, true, FaultMode::Sigbus, Some(young)),
    ] {
        let heap = Heap::new(config(GcMode::Concurrent, strategy, faults).with(|c| {
            c.recycle_old_half = recycle;
            // (The minor strategy keeps by default, and so does the copy strategy in a
            // generational heap; otherwise the copy strategy when asked to.)
            if strategy == Strategy::Copy && gen.is_none() {
                c.keep_fresh_bytes = Some(64 << 20);
            }
            if let Some(g) = gen {
                c.generational = g;
            }
        }))
        .unwrap();
        if heap.mode_info().strategy != Some(strategy) {
            eprintln!("{strategy:?} strategy unavailable here; skipped");
            continue;
        }
        let t = register(&heap);
        let mut m = heap.attach();
        // Live lists of these lengths, one per round (pairs of 24 bytes: from a few pages to
        // a third of the half), so the next destination ends below, at and above the pages
        // the last cycle kept (100, 100, 120 000: a jump past the prediction from both
        // halves' last destinations).
        let sizes = [
            500i64, 60_000, 2_000, 90_000, 90_000, 100, 100, 120_000, 30_000, 0, 50_000,
        ];
        for (round, &n) in sizes.iter().enumerate() {
            while m.stack_len() > 0 {
                m.pop();
            }
            list(&mut m, &t, n);
            for _ in 0..300 {
                let s = m.alloc(t.string, GARBAGE).unwrap();
                m.local(s).unwrap().write_bytes(0, &[0xa5; GARBAGE]);
            }
            m.collect().unwrap();
            for i in 0..2000 {
                let s = m.alloc(t.string, GARBAGE).unwrap();
                let b = m.local(s).unwrap().to_bytes();
                assert!(
                    b.iter().all(|&x| x == 0),
                    "{strategy:?} round {round}: fresh string {i} is not zero"
                );
                if i % 2 == 0 {
                    // Garbage for the next cycle's kept pages.
                    m.local(s).unwrap().write_bytes(0, &[0x5a; GARBAGE]);
                }
            }
            let got = read_list(&m, m.stack_get(0));
            assert_eq!(got.len() as i64, n, "round {round}");
            assert!(got.iter().enumerate().all(|(i, &v)| v == i as i64));
            m.verify().unwrap();
        }
        m.collect().unwrap();
        m.verify().unwrap();
        let h = heap.history();
        let r = heap.release_stats();
        assert!(h.iter().all(|c| c.calls.mmap_family() == 0
            && c.calls.get(faultline::testing::heap::Call::UffdRegister) == 0));
        eprintln!(
            "{strategy:?}, recycle {recycle}, {faults:?}, {gen:?}: {} pages kept over {} \
             cycles, of them {} covered by a destination in its pause, {} before it, {} \
             dropped",
            r.kept_pages,
            h.len(),
            r.kept_covered,
            r.kept_trimmed,
            r.kept_dropped
        );
        if strategy == Strategy::Copy && gen.is_some() {
            // A cycle that keeps pages of its young window recycles none early.
            assert!(h
                .iter()
                .all(|c| c.pages_kept == 0 || c.pages_recycled_early == 0));
        }
        if recycle {
            assert!(r.kept_pages > 0);
            if gen.is_none() {
                // The live set grows past the prediction in some rounds: the destination
                // covers kept pages (released before the pause, or unmapped in it).
                let covered = r.kept_covered + r.kept_trimmed;
                assert!(covered > 0 && covered < r.kept_pages);
            }
        } else {
            assert_eq!(r.kept_pages, 0);
        }
    }
}

/// Pages of `[lo, lo + pages * 4 KiB)` present in this process's page tables (`mincore`).
fn resident_pages(lo: usize, pages: usize) -> usize {
    let mut v = vec![0u8; pages];
    // SAFETY: `[lo, lo + pages * 4 KiB)` lies in the heap's arena, a mapping that lives as
    // long as the heap; `mincore` only reads the page tables into `v` (one byte a page).
    let r = unsafe { libc::mincore(lo as *mut libc::c_void, pages * 4096, v.as_mut_ptr()) };
    assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
    v.iter().filter(|&&b| b & 1 == 1).count()
}

/// The copy strategy with dense runs keeps the old half's pages where the next compaction
/// into it is predicted to end, and its compaction moves a destination page's old page whole
/// (`UFFDIO_MOVE`) when that page is fully live at the same page offset: not only the black
/// pages above the marking's start, any such page. Here every object is one page (a 511-word
/// reference array) and whole pages die, so every live page is such a page, the kept range
/// included. The pages kept must all be present at the cycle's end (a moved one would be a
/// hole that the next flip into the half hands out as present fresh memory: the refill
/// zeroing it faults outside any compaction), and the next cycles allocate through them.
#[test]
fn dense_runs_move_no_kept_page_away() {
    if !uffd_or_skip("dense_runs_move_no_kept_page_away") {
        return;
    }
    if !faultline::Probe::run().supports(faultline::Capability::Move) {
        eprintln!("SKIPPED: dense_runs_move_no_kept_page_away: UFFDIO_MOVE unavailable here");
        return;
    }
    const MIB: usize = 1 << 20;
    let heap = Heap::new(HeapConfig::with_heap_size(256 * MIB).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = Strategy::Copy;
        c.faults = FaultMode::Sigbus;
        c.dense_runs = true;
        c.keep_fresh_bytes = Some(64 * MIB);
        // No cycle but those the test asks for.
        c.min_trigger_bytes = 200 * MIB;
    }))
    .unwrap();
    if heap.mode_info().strategy != Some(Strategy::Copy) {
        eprintln!("SKIPPED: dense_runs_move_no_kept_page_away: copy strategy unavailable");
        return;
    }
    let t = register(&heap);
    let mut m = heap.attach();
    // A page of 511 references to chunks, each a page of 511 references to leaves (a page
    // each): every object one page, page aligned. A quarter of the leaves die, in whole pages.
    const CHUNKS: usize = 16;
    let top = m.alloc(t.vector, 511).unwrap();
    let base = top.bits();
    assert_eq!(base % 4096, 0, "the first object starts the half");
    let top = m.root(top);
    for c in 0..CHUNKS {
        let chunk = m.alloc(t.vector, 511).unwrap();
        top.get(&m).unwrap().set(c, chunk);
        for i in 0..511 {
            let leaf = m.alloc(t.vector, 511).unwrap();
            if i % 4 != 0 {
                let chunk = top.get(&m).unwrap().get(c);
                m.local(chunk).unwrap().set(i, leaf);
            }
        }
    }
    m.collect().unwrap();
    let r = heap.release_stats();
    let h = heap.history();
    let last = h.last().unwrap();
    let present = resident_pages(base, 64 * MIB / 4096);
    eprintln!(
        "kept {} pages; {} present in the old half; {}",
        r.kept_pages,
        present,
        last.log_line()
    );
    assert!(r.kept_pages > 0, "the flip planned no kept page");
    assert_eq!(
        present as u64, r.kept_pages,
        "a kept page of the old half is absent (moved away whole)"
    );
    // Flip back into the half (its kept pages become fresh memory) and allocate through them.
    for _ in 0..2 {
        m.collect().unwrap();
        for _ in 0..3000 {
            let s = m.alloc(t.string, 4000).unwrap();
            assert!(m.local(s).unwrap().to_bytes().iter().all(|&x| x == 0));
        }
    }
    m.verify().unwrap();
}

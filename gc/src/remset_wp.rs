//! The barrier-free remembered set ([`crate::Generational::WrittenPages`]): the old pages
//! written since the last young cycle, read from the kernel instead of recorded by a store
//! barrier. It implements [`RememberedSet`] (the protocol is in [`crate::remset`]).
//!
//! The old generation's pages are write-protected with `UFFD_FEATURE_WP_ASYNC`: a store into
//! one is resolved inside the kernel (no user fault, no barrier code), which clears the page's
//! write-protect bit. `PAGEMAP_SCAN` with `PM_SCAN_WP_MATCHING` then reports the pages whose bit
//! is clear and sets it again in the same call: one atomic read-and-reset of a hardware dirty
//! set, O(written pages) to report (plus the page-table walk of the range). The scan itself is
//! [`PagemapScanner::written_pages`], shared with the barrier-free marking mode
//! ([`crate::marking`]).
//!
//! A young cycle uses it so:
//! 1. [`WrittenPages::harvest`] (through [`RememberedSet::for_each_dirty_range`]) the old range:
//!    the pages written since the last harvest, plus the pages kept
//!    ([`RememberedSet::keep_dirty`]) or joined since, plus everything after
//!    [`WrittenPages::invalidate`] or a failed scan;
//! 2. the young cycle visits the reference slots on those pages (the old generation's crossing
//!    map, [`crate::generational`]) as roots, and forwards them in the flip pause;
//! 3. the pages whose slots still refer into the young area after the flip are kept: the
//!    harvest re-protected them, so the kernel would not report them again, and the next
//!    harvest returns them from the kept-pages bitmap;
//! 4. the flip's forwarding stored into the harvested pages, which made them read written
//!    again: [`RememberedSet::after_forwarding`] (in the flip pause, right after the
//!    forwarding) write-protects them once more ([`WrittenPages::after_flip`]). Without it
//!    every page ever reported would be reported at every young cycle. Exact because a
//!    concurrent young cycle's last harvest is in the same pause (its remark), so every store
//!    before it was reported, and none came after.
//!
//! Why it is exact: a page reads clean only after a scan that reported it re-protected it
//! (`PM_SCAN_WP_MATCHING` is atomic per page: a store racing with the scan either lands before
//! the page is reported, or faults in the kernel after the protection and clears the bit
//! again). Every other way a page gets new contents leaves it unprotected, so it reads written:
//! pages mapped by `UFFDIO_COPY` or `UFFDIO_CONTINUE` without `MODE_WP`, `UFFDIO_MOVE` (a fresh
//! PTE), anonymous pages zapped and faulted in again; and memory that joins the old generation
//! (promotion) is reported once whatever its protection. Hence every page whose slots changed
//! since a harvest is returned by the next one, and with the kept pages, every old page that
//! may hold a reference into the young area. Nothing here write-protects a page that is not
//! present: `UFFDIO_MOVE` refuses a destination that holds a write-protect marker.
//!
//! In a forked child (which has no userfaultfd registration, so no write tracking) every
//! harvest returns every page, and nothing is protected.
//!
//! When the scan fails (an error from the kernel, or the injector), the harvest returns every
//! page of the old range, says so once on stderr, and counts it ([`ScanStats::fallbacks`]):
//! exact, only slower. Pages that failed scan may or may not have been re-protected; either
//! way they are all in this harvest, and those that still matter are kept by step 3.
//!
//! Invariants:
//! - [`PageRuns`] is sorted, its runs page aligned, non-empty, disjoint and not adjacent;
//! - the heap's arena is registered at creation with WP_ASYNC write tracking
//!   ([`check_arena`] refuses any other, and the heap refuses the configuration);
//! - a kept bit lies inside the old range (bits leaving it are cleared with the world
//!   stopped); every harvest clears the bits it returns;
//! - harvests, range changes and invalidations are made by the GC thread or with the world
//!   stopped (behind one mutex); `keep_dirty` only sets an atomic bit;
//! - nothing here writes the heap.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use faultline_heap::pagemap::PagemapScanner;
use faultline_heap::{page_down, page_up, ArenaError, VolatileArena, PAGE_SIZE};

use crate::mode::Generational;
use crate::remset::{RememberedSet, ScanStats};

/// A set of pages as sorted, disjoint, non-adjacent runs `[start, end)` of absolute,
/// page-aligned addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PageRuns(Vec<(usize, usize)>);

impl PageRuns {
    /// The empty set.
    pub(crate) fn new() -> Self {
        PageRuns(Vec::new())
    }

    /// The set of the pages overlapping `[lo, hi)`.
    pub(crate) fn span(lo: usize, hi: usize) -> Self {
        let mut r = PageRuns::new();
        r.add(lo, hi);
        r
    }

    /// Add the pages overlapping `[s, e)` (any alignment, any order).
    pub(crate) fn add(&mut self, s: usize, e: usize) {
        let (s, e) = (page_down(s), page_up(e));
        if s >= e {
            return;
        }
        // Fast path: appending in order (what a scan produces).
        match self.0.last_mut() {
            None => self.0.push((s, e)),
            Some(last) if s > last.1 => self.0.push((s, e)),
            Some(last) if s >= last.0 => last.1 = last.1.max(e),
            Some(_) => {
                self.0.push((s, e));
                self.normalize();
            }
        }
    }

    /// Add every page of `other`.
    pub(crate) fn union(&mut self, other: &PageRuns) {
        if other.0.is_empty() {
            return;
        }
        self.0.extend_from_slice(&other.0);
        self.normalize();
    }

    fn normalize(&mut self) {
        self.0.sort_unstable();
        let mut out: Vec<(usize, usize)> = Vec::with_capacity(self.0.len());
        for &(s, e) in &self.0 {
            match out.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => out.push((s, e)),
            }
        }
        self.0 = out;
    }

    /// The pages of the set inside `[lo, hi)`.
    pub(crate) fn clipped(&self, lo: usize, hi: usize) -> PageRuns {
        let (lo, hi) = (page_down(lo), page_up(hi));
        PageRuns(
            self.0
                .iter()
                .filter_map(|&(s, e)| {
                    let (s, e) = (s.max(lo), e.min(hi));
                    (s < e).then_some((s, e))
                })
                .collect(),
        )
    }

    /// The runs.
    pub(crate) fn runs(&self) -> &[(usize, usize)] {
        &self.0
    }

    /// Every page's address, in order.
    #[cfg(test)]
    pub(crate) fn pages(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().flat_map(|&(s, e)| (s..e).step_by(PAGE_SIZE))
    }

    /// Number of pages.
    pub(crate) fn page_count(&self) -> usize {
        self.0.iter().map(|&(s, e)| (e - s) / PAGE_SIZE).sum()
    }

    /// Whether the set is empty.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the page holding `a` is in the set.
    #[cfg(test)]
    pub(crate) fn contains(&self, a: usize) -> bool {
        let p = page_down(a);
        let i = self.0.partition_point(|&(_, e)| e <= p);
        self.0.get(i).is_some_and(|&(s, _)| s <= p)
    }
}

/// Why the barrier-free remembered set cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemsetError {
    /// The arena is not registered with `UFFD_FEATURE_WP_ASYNC` write tracking.
    #[error("the written-pages remembered set needs UFFD_FEATURE_WP_ASYNC write tracking on the heap's arena: {0}")]
    NoWriteTracking(String),
    /// `/proc/self/pagemap` could not be opened for `PAGEMAP_SCAN`.
    #[error("the written-pages remembered set needs PAGEMAP_SCAN on /proc/self/pagemap: {0}")]
    NoPagemapScan(String),
}

impl ScanStats {
    fn add(&mut self, o: &ScanStats) {
        self.harvests += o.harvests;
        self.pages_walked += o.pages_walked;
        self.written += o.written;
        self.kept += o.kept;
        self.returned += o.returned;
        self.fallbacks += o.fallbacks;
        self.scan_ns += o.scan_ns;
        self.protect_ns += o.protect_ns;
        self.protect_failures += o.protect_failures;
    }
}

/// What one harvest found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Harvest {
    /// The pages to visit: written since the last harvest, kept, or (after a fallback) all.
    pub pages: PageRuns,
    /// Written pages the scan reported.
    pub written: usize,
    /// Kept pages returned from the side list.
    pub kept: usize,
    /// Pages the scan walked.
    pub walked: usize,
    /// Every page of the ranges was returned: why.
    pub fallback: Option<Fallback>,
    /// Nanoseconds the scan took.
    pub scan_ns: u64,
}

/// Why a harvest returned every page of its ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fallback {
    /// [`WrittenPages::invalidate`] was called since the last harvest (or none ran yet).
    Invalidated,
    /// The scan failed.
    ScanFailed,
    /// A forked child: no write tracking (see [`WrittenPages::harvest`]).
    Forked,
}

/// Says "the scan failed, falling back" once per process.
static SCAN_FAILURE_SAID: AtomicBool = AtomicBool::new(false);

/// Whether `arena` can carry the barrier-free remembered set: registered at creation, with
/// WP_ASYNC write tracking.
pub(crate) fn check_arena(arena: &VolatileArena) -> Result<(), RemsetError> {
    let c = arena.config();
    if !c.write_tracking || !arena.is_registered() || !c.register_at_creation {
        return Err(RemsetError::NoWriteTracking(
            "the arena was created without write tracking (WP_ASYNC unavailable on this kernel, or an unregistered or per-cycle-registered arena)".into(),
        ));
    }
    Ok(())
}

/// The harvest's state (behind the set's mutex).
#[derive(Debug, Default)]
struct State {
    /// `/proc/self/pagemap`, opened at the first harvest (`None` until then, or if opening it
    /// failed: every harvest then falls back).
    scanner: Option<PagemapScanner>,
    /// Opening it was tried.
    opened: bool,
    /// The old range `[lo, hi)`.
    old: (usize, usize),
    /// The next harvest returns every page of the old range.
    all: bool,
    /// Totals.
    stats: ScanStats,
    /// The harvests since the last flip (one young cycle's: up to three when concurrent).
    cur: ScanStats,
    /// The last young cycle's, complete (moved from `cur` by [`WrittenPages::after_flip`]).
    last: ScanStats,
    /// The pages the harvests since the last flip returned: the young cycle's flip writes
    /// their slots (forwarding), and [`WrittenPages::after_flip`] re-protects them.
    returned: PageRuns,
}

/// The barrier-free remembered set of one heap (see the module doc).
#[derive(Debug)]
pub(crate) struct WrittenPages {
    /// Address of the first page the kept bitmap covers (the moving space's base).
    base: usize,
    /// One bit per page of `[base, base + 64 * PAGE_SIZE * kept.len())`: report again.
    kept: Box<[AtomicU64]>,
    state: Mutex<State>,
}

impl WrittenPages {
    /// The remembered set of a moving space of `bytes` at `base` (page aligned). Its old
    /// range is empty; the arena is the one every call passes (see [`check_arena`]).
    pub(crate) fn new(base: usize, bytes: usize) -> Self {
        WrittenPages {
            base,
            kept: (0..(bytes / PAGE_SIZE).div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The totals of every harvest so far, and the last young cycle's (its harvests and the
    /// re-protection after its flip).
    pub(crate) fn stats(&self) -> (ScanStats, ScanStats) {
        let st = self.state();
        (st.stats, st.last)
    }

    /// Write-protect `[lo, hi)` (absolute, page aligned, **present**) now, so only later writes
    /// to it are reported. The caller takes the range's current contents into account itself:
    /// writes made before this call are forgotten.
    #[cfg(test)]
    pub(crate) fn protect(
        &self,
        arena: &VolatileArena,
        lo: usize,
        hi: usize,
    ) -> Result<(), ArenaError> {
        let (lo, hi) = (page_down(lo), page_up(hi));
        if lo >= hi {
            return Ok(());
        }
        let t = Instant::now();
        let r = arena.write_protect(arena.offset_of(lo), hi - lo, true);
        self.state().stats.protect_ns += t.elapsed().as_nanos() as u64;
        r
    }

    /// The next harvest returns every page of the old range (e.g. after something else
    /// re-protected old pages without reporting them here).
    pub(crate) fn invalidate(&self) {
        self.state().all = true;
    }

    /// Report the page holding `a` again at the next harvest (if the bitmap covers it).
    pub(crate) fn keep_page(&self, a: usize) {
        let Some(p) = a.checked_sub(self.base).map(|o| o / PAGE_SIZE) else {
            return;
        };
        if let Some(w) = self.kept.get(p / 64) {
            let bit = 1u64 << (p % 64);
            if w.load(Ordering::Relaxed) & bit == 0 {
                w.fetch_or(bit, Ordering::Relaxed);
            }
        }
    }

    /// Keep every page of `[lo, hi)`.
    fn keep_range(&self, lo: usize, hi: usize) {
        for p in (page_down(lo)..page_up(hi)).step_by(PAGE_SIZE) {
            self.keep_page(p);
        }
    }

    /// Clear the kept bits of `[lo, hi)`, adding their pages to `out` (`take`) or dropping
    /// them.
    fn take_kept(&self, lo: usize, hi: usize, mut out: Option<&mut PageRuns>) -> usize {
        let (lo, hi) = (page_down(lo).max(self.base), page_up(hi));
        let mut n = 0;
        let mut p = lo;
        while p < hi {
            let i = (p - self.base) / PAGE_SIZE;
            let Some(w) = self.kept.get(i / 64) else {
                break;
            };
            // Whole words at a time where the range allows.
            if i.is_multiple_of(64) && p + 64 * PAGE_SIZE <= hi {
                let bits = if w.load(Ordering::Relaxed) == 0 {
                    0
                } else {
                    w.swap(0, Ordering::Relaxed)
                };
                let mut b = bits;
                while b != 0 {
                    let k = b.trailing_zeros() as usize;
                    if let Some(o) = out.as_deref_mut() {
                        o.add(p + k * PAGE_SIZE, p + (k + 1) * PAGE_SIZE);
                    }
                    n += 1;
                    b &= b - 1;
                }
                p += 64 * PAGE_SIZE;
                continue;
            }
            let bit = 1u64 << (i % 64);
            if w.load(Ordering::Relaxed) & bit != 0
                && w.fetch_and(!bit, Ordering::Relaxed) & bit != 0
            {
                if let Some(o) = out.as_deref_mut() {
                    o.add(p, p + PAGE_SIZE);
                }
                n += 1;
            }
            p += PAGE_SIZE;
        }
        n
    }

    /// Set the old range (world stopped). Kept pages that leave it are dropped; pages that
    /// join it are reported by the next harvest (whatever their protection: see the module
    /// doc).
    pub(crate) fn set_old_range(&self, start: usize, end: usize) {
        let mut st = self.state();
        let (lo, hi) = st.old;
        let (start, end) = (page_down(start), page_up(end));
        if end <= start {
            self.take_kept(lo, hi, None);
            st.old = (0, 0);
            st.returned = PageRuns::new();
            return;
        }
        // Dropped: the parts of the old range outside the new one.
        if lo < hi {
            self.take_kept(lo, hi.min(start).max(lo), None);
            self.take_kept(lo.max(end), hi.max(end), None);
        }
        // Joined: the parts of the new range outside the old one.
        if lo >= hi || end <= lo || start >= hi {
            self.keep_range(start, end);
        } else {
            self.keep_range(start, lo.max(start));
            self.keep_range(hi.min(end), end);
        }
        st.old = (start, end);
    }

    /// Read and reset the written pages of the old range, re-protecting them in the same call;
    /// return them with the kept pages. After an invalidation or a failed scan, every page
    /// of the old range (see the module doc).
    pub(crate) fn harvest(&self, arena: &VolatileArena) -> Harvest {
        let mut st = self.state();
        let (lo, hi) = st.old;
        let mut h = Harvest::default();
        if lo >= hi {
            return h;
        }
        // In a forked child the userfaultfd registration (and with it every page's write
        // tracking) is gone, and a scanner opened before the fork reads (and would re-protect)
        // the parent's pages: every page is written as far as the child knows.
        let forked = arena.is_forked();
        if !st.opened && !forked {
            st.opened = true;
            match PagemapScanner::open(arena.sys()) {
                Ok(sc) => st.scanner = Some(sc),
                Err(e) => say_fallback(&e.to_string()),
            }
        }
        let t = Instant::now();
        let mut written = PageRuns::new();
        h.walked = (hi - lo) / PAGE_SIZE;
        let scanned = match &st.scanner {
            _ if forked => Err(String::new()),
            Some(sc) => {
                // SAFETY: `[lo, hi)` is this heap's old generation, whose write tracking is
                // this remembered set's (no one else re-protects it).
                unsafe { sc.written_pages(lo, hi - lo, true, |s, l| written.add(s, s + l)) }
                    .map_err(|e| e.to_string())
            }
            None => Err("/proc/self/pagemap could not be opened".into()),
        };
        h.scan_ns = t.elapsed().as_nanos() as u64;
        let fallback = match scanned {
            Ok(n) => {
                h.written = n;
                st.all.then_some(Fallback::Invalidated)
            }
            Err(_) if forked => Some(Fallback::Forked),
            Err(e) => {
                say_fallback(&e);
                Some(Fallback::ScanFailed)
            }
        };
        h.pages = if fallback.is_some() {
            PageRuns::span(lo, hi)
        } else {
            written
        };
        let mut kept = PageRuns::new();
        self.take_kept(lo, hi, Some(&mut kept));
        let before = h.pages.page_count();
        h.pages.union(&kept);
        h.kept = h.pages.page_count() - before;
        st.all = false;
        h.fallback = fallback;
        let one = ScanStats {
            harvests: 1,
            pages_walked: h.walked as u64,
            written: h.written as u64,
            kept: h.kept as u64,
            returned: h.pages.page_count() as u64,
            fallbacks: u64::from(fallback.is_some()),
            scan_ns: h.scan_ns,
            protect_ns: 0,
            protect_failures: 0,
        };
        st.stats.add(&one);
        st.cur.add(&one);
        // (A concurrent young cycle harvests up to three times before its flip.)
        st.returned.union(&h.pages);
        h
    }

    /// After the flip forwarded the slots on the pages of the last harvest, with the world
    /// still stopped: write-protect those pages again, so the collector's own stores do not
    /// make them read written at the next harvest. Exact because no mutator ran since the
    /// forwarding, and every slot still referring young was kept. A failed protection leaves
    /// pages unprotected, which only makes them reported again (counted, not an error).
    pub(crate) fn after_flip(&self, arena: &VolatileArena) -> usize {
        let mut st = self.state();
        let runs = std::mem::take(&mut st.returned).clipped(st.old.0, st.old.1);
        if arena.is_forked() {
            st.last = std::mem::take(&mut st.cur);
            return 0;
        }
        let t = Instant::now();
        let mut failed = 0;
        for &(s, e) in runs.runs() {
            if arena
                .write_protect(arena.offset_of(s), e - s, true)
                .is_err()
            {
                failed += 1;
            }
        }
        let protect = ScanStats {
            protect_ns: t.elapsed().as_nanos() as u64,
            protect_failures: failed,
            ..ScanStats::default()
        };
        st.stats.add(&protect);
        st.cur.add(&protect);
        st.last = std::mem::take(&mut st.cur);
        runs.page_count()
    }
}

fn say_fallback(why: &str) {
    if !SCAN_FAILURE_SAID.swap(true, Ordering::Relaxed) {
        eprintln!(
            "faultline: the written-pages remembered set's PAGEMAP_SCAN failed ({why}); young cycles treat every old page as written while it fails (exact, slower)"
        );
    }
}

impl RememberedSet for WrittenPages {
    fn kind(&self) -> Generational {
        Generational::WrittenPages
    }

    fn old_range_changed(
        &self,
        _arena: &VolatileArena,
        start: usize,
        end: usize,
    ) -> Result<(), ArenaError> {
        self.set_old_range(start, end);
        Ok(())
    }

    fn for_each_dirty_range(
        &self,
        arena: &VolatileArena,
        f: &mut dyn FnMut(usize, usize),
    ) -> Result<usize, ArenaError> {
        let h = self.harvest(arena);
        for &(s, e) in h.pages.runs() {
            f(s, e);
        }
        Ok(h.pages.page_count())
    }

    fn keep_dirty(&self, slot: usize) {
        self.keep_page(slot);
    }

    fn report_all(&self) {
        self.invalidate();
    }

    fn after_young_cycle(&self, _arena: &VolatileArena) -> Result<(), ArenaError> {
        Ok(())
    }

    fn after_forwarding(&self, arena: &VolatileArena) {
        self.after_flip(arena);
    }

    fn footprint(&self) -> usize {
        self.kept.len() * 8
    }

    fn scan_stats(&self) -> Option<(ScanStats, ScanStats)> {
        Some(self.stats())
    }
}

impl crate::Heap {
    /// With [`crate::Generational::WrittenPages`]: the cost of the barrier-free remembered
    /// set's harvests (`PAGEMAP_SCAN` with re-protection of the old generation), as the totals
    /// since the heap was made and the last young cycle's harvest; `None` otherwise.
    pub fn written_pages_stats(&self) -> Option<(ScanStats, ScanStats)> {
        self.inner.gen.as_ref()?.remset.scan_stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_heap::arena::{ArenaConfig, ArenaOffset, Backing};
    use faultline_heap::inject::{FaultInjector, Rule, Trigger};
    use faultline_heap::probe::{Capability, Probe};
    use faultline_heap::sys::{Call, Errno, Sys};
    use std::sync::Arc;

    fn wp_available() -> bool {
        let ok = Probe::run().supports(Capability::WpAsync);
        if !ok {
            eprintln!("SKIPPED: WP_ASYNC write tracking unavailable here");
        }
        ok
    }

    fn tracking_arena(pages: usize, backing: Backing, sys: Sys) -> VolatileArena {
        let a = VolatileArena::new(
            ArenaConfig::new(pages * PAGE_SIZE)
                .backing(backing)
                .write_tracking(true)
                .sys(sys),
        )
        .unwrap();
        a.populate(ArenaOffset(0), pages * PAGE_SIZE).unwrap();
        a
    }

    /// A set over the whole arena with the old range `[lo, lo + old_pages)`, harvested once
    /// (so everything is protected and nothing pending).
    fn set_over(arena: &VolatileArena, pages: usize, old_pages: usize) -> WrittenPages {
        let lo = arena.base();
        let wp = WrittenPages::new(lo, pages * PAGE_SIZE);
        wp.set_old_range(lo, lo + old_pages * PAGE_SIZE);
        let h = wp.harvest(arena);
        assert_eq!(
            h.pages.page_count(),
            old_pages,
            "a new range is reported once"
        );
        wp
    }

    fn poke(a: usize, v: usize) {
        // SAFETY: test code: `a` is a word of a present page of the test's own arena.
        unsafe { (a as *mut usize).write_volatile(v) };
    }

    fn pages(lo: usize, ps: &[(usize, usize)]) -> Vec<(usize, usize)> {
        ps.iter()
            .map(|&(a, b)| (lo + a * PAGE_SIZE, lo + b * PAGE_SIZE))
            .collect()
    }

    #[test]
    fn page_runs_merge_and_clip() {
        let p = PAGE_SIZE;
        let mut r = PageRuns::new();
        r.add(5 * p, 6 * p);
        r.add(p + 8, 2 * p); // page 1
        r.add(2 * p, 3 * p); // adjacent: merges with page 1
        r.add(5 * p + 1, 5 * p + 2); // already in
        assert_eq!(r.runs(), &[(p, 3 * p), (5 * p, 6 * p)]);
        assert_eq!(r.page_count(), 3);
        assert!(r.contains(2 * p + 17) && !r.contains(4 * p));
        let mut o = PageRuns::span(3 * p, 5 * p);
        o.union(&r);
        assert_eq!(o.runs(), &[(p, 6 * p)]);
        assert_eq!(o.clipped(2 * p, 4 * p).runs(), &[(2 * p, 4 * p)]);
        assert_eq!(
            o.pages().collect::<Vec<_>>(),
            (1..6).map(|i| i * p).collect::<Vec<_>>()
        );
    }

    #[test]
    fn an_arena_without_write_tracking_is_refused() {
        // (Without userfaultfd no arena of this kind can be made: the heap refuses
        // `WrittenPages` before it gets here, see `crate::heap`.)
        let Ok(a) = VolatileArena::new(ArenaConfig::new(4 * PAGE_SIZE)) else {
            eprintln!("SKIPPED: userfaultfd unavailable here");
            return;
        };
        let e = check_arena(&a).unwrap_err();
        assert!(matches!(e, RemsetError::NoWriteTracking(_)), "{e}");
        assert!(e.to_string().contains("WP_ASYNC"), "{e}");
    }

    fn exact_harvests(backing: Backing) {
        let n = 64;
        let arena = tracking_arena(n, backing, Sys::real());
        let lo = arena.base();
        let wp = set_over(&arena, n, 48);
        // Nothing written since: nothing reported.
        let h = wp.harvest(&arena);
        assert_eq!((h.fallback, h.pages.page_count(), h.written), (None, 0, 0));
        // Write pages 3, 4 and 40 (two stores to 40), and page 50 outside the old range.
        for (p, off) in [(3, 0), (4, 8), (40, 4088), (40, 16), (50, 0)] {
            poke(lo + p * PAGE_SIZE + off, 7);
        }
        let h = wp.harvest(&arena);
        assert_eq!(h.pages.runs(), pages(lo, &[(3, 5), (40, 41)]));
        assert_eq!((h.written, h.kept, h.walked), (3, 0, 48));
        // The cycle keeps page 4 (a slot still refers young); page 20 is written meanwhile.
        wp.keep_dirty(lo + 4 * PAGE_SIZE + 100);
        poke(lo + 20 * PAGE_SIZE, 1);
        let mut seen = Vec::new();
        let units = wp
            .for_each_dirty_range(&arena, &mut |s, e| seen.push((s, e)))
            .unwrap();
        assert_eq!(seen, pages(lo, &[(4, 5), (20, 21)]));
        assert_eq!(units, 2);
        // The kept bit was cleared by that harvest.
        assert!(wp.harvest(&arena).pages.is_empty());
        // The old range grows to 56 pages: the 8 joined pages are reported once, with page
        // 50 (written before it joined).
        wp.set_old_range(lo, lo + 56 * PAGE_SIZE);
        assert_eq!(wp.harvest(&arena).pages.runs(), pages(lo, &[(48, 56)]));
        assert!(wp.harvest(&arena).pages.is_empty());
        // Shrinking drops kept pages that leave the range.
        wp.keep_dirty(lo + 2 * PAGE_SIZE);
        wp.keep_dirty(lo + 30 * PAGE_SIZE);
        wp.set_old_range(lo, lo + 16 * PAGE_SIZE);
        assert_eq!(wp.harvest(&arena).pages.runs(), pages(lo, &[(2, 3)]));
        // Emptied (a full cycle): nothing reported, nothing scanned.
        wp.keep_dirty(lo + 2 * PAGE_SIZE);
        wp.set_old_range(lo, lo);
        let h = wp.harvest(&arena);
        assert!(h.pages.is_empty() && h.walked == 0);
        // Invalidation: everything once more.
        wp.set_old_range(lo, lo + 16 * PAGE_SIZE);
        wp.harvest(&arena);
        wp.after_flip(&arena);
        wp.invalidate();
        assert_eq!(wp.harvest(&arena).pages.page_count(), 16);
        assert!(wp.harvest(&arena).pages.is_empty());
        // The cycle's figures: its harvests since the last flip (here the last two).
        wp.after_flip(&arena);
        let (total, last) = wp.stats();
        assert_eq!(total.fallbacks, 1);
        assert_eq!(total.harvests, 11);
        assert_eq!((last.harvests, last.pages_walked), (2, 32));
    }

    #[test]
    fn harvest_reports_exactly_the_written_pages_and_then_the_kept_ones() {
        if wp_available() {
            exact_harvests(Backing::Anonymous);
        }
    }

    /// The minor strategy's memfd arena (registered MISSING | MINOR | WP).
    #[test]
    fn harvests_are_exact_on_a_memfd_arena_too() {
        if wp_available() {
            exact_harvests(Backing::Memfd);
        }
    }

    #[test]
    fn protect_forgets_earlier_writes_and_refilled_pages_read_written() {
        if !wp_available() {
            return;
        }
        let n = 16;
        let arena = tracking_arena(n, Backing::Anonymous, Sys::real());
        let lo = arena.base();
        let wp = set_over(&arena, n, n);
        poke(lo + 2 * PAGE_SIZE, 1);
        wp.protect(&arena, lo, lo + n * PAGE_SIZE).unwrap();
        assert!(wp.harvest(&arena).pages.is_empty());
        // A page released and made present again (as compaction fills one) has a fresh,
        // unprotected PTE: it reads written without any store. So does one made present by
        // UFFDIO_MOVE from a protected page.
        arena
            .release(ArenaOffset(5 * PAGE_SIZE), PAGE_SIZE)
            .unwrap();
        arena
            .populate(ArenaOffset(5 * PAGE_SIZE), PAGE_SIZE)
            .unwrap();
        arena
            .release(ArenaOffset(9 * PAGE_SIZE), PAGE_SIZE)
            .unwrap();
        if arena.can_move() {
            // SAFETY: test code: page 12 is not read at its old place afterwards.
            unsafe {
                arena
                    .resolve_move(
                        ArenaOffset(9 * PAGE_SIZE),
                        ArenaOffset(12 * PAGE_SIZE),
                        PAGE_SIZE,
                        false,
                    )
                    .unwrap()
            };
        } else {
            arena
                .populate(ArenaOffset(9 * PAGE_SIZE), PAGE_SIZE)
                .unwrap();
        }
        // (The MOVE's source, now absent, may read written too: an over-report, harmless.)
        let h = wp.harvest(&arena);
        assert!(h.pages.contains(lo + 5 * PAGE_SIZE) && h.pages.contains(lo + 9 * PAGE_SIZE));
        assert!(h.pages.runs().iter().all(|&(s, e)| {
            [5, 9, 12]
                .iter()
                .any(|&p| s == lo + p * PAGE_SIZE && e == s + PAGE_SIZE)
        }));
    }

    #[test]
    fn a_failing_scan_returns_every_page_once_and_the_next_scan_is_exact_again() {
        if !wp_available() {
            return;
        }
        let inj = Arc::new(
            FaultInjector::new(
                vec![Rule::new(Call::PagemapScan, Errno::EIO, Trigger::Nth(2))],
                1,
            )
            .disarmed(),
        );
        let n = 32;
        let arena = tracking_arena(n, Backing::Anonymous, Sys::new(inj.clone()));
        let lo = arena.base();
        inj.arm();
        let wp = set_over(&arena, n, n); // scan 1: protects everything
        poke(lo + 7 * PAGE_SIZE, 1);
        wp.keep_dirty(lo + 9 * PAGE_SIZE);
        let h = wp.harvest(&arena); // scan 2 fails
        assert_eq!(h.fallback, Some(Fallback::ScanFailed));
        assert_eq!(h.pages.page_count(), n);
        assert_eq!(inj.injected(Call::PagemapScan), 1);
        // The page written before the failure was not re-protected: reported again.
        let h = wp.harvest(&arena);
        assert_eq!(h.fallback, None);
        assert_eq!(h.pages.runs(), pages(lo, &[(7, 8)]));
        assert_eq!(wp.stats().0.fallbacks, 1);
    }

    #[test]
    fn kept_bits_cover_whole_words_and_single_pages() {
        let base = 1 << 30;
        let wp = WrittenPages::new(base, 256 * PAGE_SIZE);
        wp.set_old_range(base, base + 200 * PAGE_SIZE);
        // The range joined: all 200 pages kept; taking them returns one run.
        let mut out = PageRuns::new();
        assert_eq!(
            wp.take_kept(base, base + 200 * PAGE_SIZE, Some(&mut out)),
            200
        );
        assert_eq!(out.runs(), &[(base, base + 200 * PAGE_SIZE)]);
        for p in [0, 63, 64, 130, 199, 250] {
            wp.keep_page(base + p * PAGE_SIZE + 8);
        }
        wp.keep_page(base - 8); // below the bitmap: ignored
        let mut out = PageRuns::new();
        assert_eq!(
            wp.take_kept(base + PAGE_SIZE, base + 200 * PAGE_SIZE, Some(&mut out)),
            4
        );
        assert_eq!(
            out.pages()
                .map(|a| (a - base) / PAGE_SIZE)
                .collect::<Vec<_>>(),
            vec![63, 64, 130, 199]
        );
        assert_eq!(wp.take_kept(base, base + 256 * PAGE_SIZE, None), 2);
        assert_eq!(wp.footprint(), 32);
    }
}

//! The barrier-free remembered set: the old pages written since the last young cycle, read
//! from the kernel instead of recorded by a store barrier.
//!
//! The old generation's pages are write-protected with `UFFD_FEATURE_WP_ASYNC`: a store into
//! one is resolved inside the kernel (no user fault, no barrier code), which clears the page's
//! write-protect bit. `PAGEMAP_SCAN` with `PM_SCAN_WP_MATCHING` then reports the pages whose bit
//! is clear and sets it again in the same call: one atomic read-and-reset of a hardware dirty
//! set, O(written pages) to read (plus the page-table walk of the range). The scan itself is
//! [`PagemapScanner::written_pages`], shared with the barrier-free marking mode
//! ([`crate::marking`]).
//!
//! One young cycle uses it so ([`WrittenPages`]):
//! 1. [`WrittenPages::harvest`] the old ranges: the pages written since the last harvest, plus
//!    the pages the last cycle kept ([`WrittenPages::keep`]), plus everything after
//!    [`WrittenPages::invalidate`] or a failed scan;
//! 2. the young cycle visits the objects on those pages ([`ObjectStarts`] finds the object
//!    covering a page's first byte; [`for_each_slot_on_page`] reads the reference slots that
//!    lie on the page) and uses the references into the young area as roots, and forwards
//!    them in the flip pause;
//! 3. the pages whose objects still refer into the young area after the cycle are handed to
//!    [`WrittenPages::keep`]: they were re-protected by the harvest, so the kernel would not
//!    report them again, and the next harvest returns them from this side list.
//!
//! Why it is exact: a page reads clean only after a scan that reported it re-protected it
//! (`PM_SCAN_WP_MATCHING` is atomic per page: a store racing with the scan either lands before
//! the page is reported, or faults in the kernel after the protection and clears the bit
//! again). Every other way a page gets new contents leaves it unprotected, so it reads written:
//! pages mapped by `UFFDIO_COPY` without `MODE_WP`, `UFFDIO_MOVE` (a fresh PTE) or
//! `UFFDIO_CONTINUE` without `MODE_WP`. Hence the pages written since a harvest H are a superset
//! of the pages whose references changed since H, and, with the kept pages, the harvest
//! returns every old page that may hold a reference into the young area. Anything else that
//! write-protects these pages (the barrier-free marker's own scans of the moving space, an
//! explicit [`WrittenPages::protect`]) must be followed by [`WrittenPages::invalidate`] unless it
//! happens at a point where the caller takes the contents as they are.
//!
//! When the scan fails (an error from the kernel, or the injector), the harvest returns every
//! page of the requested ranges, says so once on stderr, and counts it
//! ([`ScanStats::fallbacks`]): exact, only slower. Pages that failed scan may or may not have
//! been re-protected; either way they are all in this harvest, and those that still matter are
//! kept by step 3.
//!
//! Invariants:
//! - [`PageRuns`] is sorted, its runs page aligned, non-empty, disjoint and not adjacent;
//! - [`WrittenPages`] exists only for an arena registered at creation with write tracking
//!   (`UFFD_FEATURE_WP_ASYNC`); [`WrittenPages::new`] refuses any other with
//!   [`RemsetError::NoWriteTracking`];
//! - the side list holds only pages returned by a harvest (and handed back through `keep`);
//!   it is emptied by every harvest;
//! - [`ObjectStarts`] is valid for `[base, top)` of a parsable region (objects back to back,
//!   fillers of one word between them) whose objects do not move while it is used; it is
//!   extended only upwards.
//! - nothing here writes the heap (the slot callback of [`for_each_slot_on_page`] is where a
//!   caller may, in a pause).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use faultline_heap::object::{TypeRegistry, WORD};
use faultline_heap::pagemap::PagemapScanner;
use faultline_heap::{VolatileArena, PAGE_SIZE};

use crate::trace::{header, SlotAccess};

#[inline]
fn page_down(a: usize) -> usize {
    a & !(PAGE_SIZE - 1)
}

#[inline]
fn page_up(a: usize) -> usize {
    a.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

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
    pub(crate) fn pages(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().flat_map(|&(s, e)| (s..e).step_by(PAGE_SIZE))
    }

    /// Number of pages.
    pub(crate) fn page_count(&self) -> usize {
        self.0.iter().map(|&(s, e)| (e - s) / PAGE_SIZE).sum()
    }

    /// Whether the set is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the page holding `a` is in the set.
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

/// The cost of the harvests so far (the protect + scan half of the barrier-free remembered
/// set; visiting the objects on the pages is the cycle's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Harvests.
    pub harvests: u64,
    /// Pages the harvests' `PAGEMAP_SCAN` calls walked (the ranges' sizes in pages).
    pub pages_walked: u64,
    /// Written pages they reported.
    pub written: u64,
    /// Pages they returned from the side list (kept by the cycle before).
    pub kept: u64,
    /// Pages returned in all (written, kept, or everything after a fallback; each once).
    pub returned: u64,
    /// Harvests that fell back to every page (scan failed, or invalidated).
    pub fallbacks: u64,
    /// Nanoseconds spent in the harvests' scans.
    pub scan_ns: u64,
    /// Nanoseconds spent write-protecting ranges ([`WrittenPages::protect`]).
    pub protect_ns: u64,
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
}

/// Says "the scan failed, falling back" once per process.
static SCAN_FAILURE_SAID: AtomicBool = AtomicBool::new(false);

/// The barrier-free remembered set of one heap (see the module doc).
#[derive(Debug)]
pub(crate) struct WrittenPages {
    scanner: PagemapScanner,
    /// Pages kept by the last cycle (returned by the next harvest, then emptied).
    kept: PageRuns,
    /// The next harvest returns every page of its ranges.
    all: bool,
    /// Totals.
    pub stats: ScanStats,
}

impl WrittenPages {
    /// The remembered set of `arena`; refused unless the arena was registered at creation with
    /// WP_ASYNC write tracking. Its first harvest returns every page (nothing is protected
    /// yet: call [`WrittenPages::protect`] on the old ranges, or let that first harvest protect
    /// what it reports).
    pub(crate) fn new(arena: &VolatileArena) -> Result<Self, RemsetError> {
        let c = arena.config();
        if !c.write_tracking || !arena.is_registered() || !c.register_at_creation {
            return Err(RemsetError::NoWriteTracking(
                "the arena was created without write tracking (WP_ASYNC unavailable on this kernel, or an unregistered / per-cycle-registered arena)".into(),
            ));
        }
        let scanner = PagemapScanner::open(arena.sys())
            .map_err(|e| RemsetError::NoPagemapScan(e.to_string()))?;
        Ok(WrittenPages {
            scanner,
            kept: PageRuns::new(),
            all: true,
            stats: ScanStats::default(),
        })
    }

    /// Write-protect `[lo, hi)` (absolute, page aligned) now, so only later writes to it are
    /// reported. The caller takes the range's current contents into account itself (e.g. the
    /// pages were just filled in a pause and their references are visited there): writes made
    /// before this call are forgotten.
    pub(crate) fn protect(
        &mut self,
        arena: &VolatileArena,
        lo: usize,
        hi: usize,
    ) -> Result<(), faultline_heap::ArenaError> {
        let (lo, hi) = (page_down(lo), page_up(hi));
        if lo >= hi {
            return Ok(());
        }
        let t = Instant::now();
        let r = arena.write_protect(arena.offset_of(lo), hi - lo, true);
        self.stats.protect_ns += t.elapsed().as_nanos() as u64;
        r
    }

    /// The next harvest returns every page (e.g. after a full cycle, or after the barrier-free
    /// marker's scans re-protected old pages without reporting them here).
    pub(crate) fn invalidate(&mut self) {
        self.all = true;
    }

    /// Pages to be returned again by the next harvest (their objects still refer into the
    /// young area after this cycle).
    pub(crate) fn keep(&mut self, pages: &PageRuns) {
        self.kept.union(pages);
    }

    /// Keep one page (the page holding `a`).
    pub(crate) fn keep_page(&mut self, a: usize) {
        self.kept.add(a, a + 1);
    }

    /// Read and reset the written pages of `ranges` (absolute `[lo, hi)`, rounded out to
    /// pages), re-protecting them in the same call; return them with the kept pages. After an
    /// invalidation or a failed scan, every page of the ranges (see the module doc).
    pub(crate) fn harvest(&mut self, ranges: &[(usize, usize)]) -> Harvest {
        let t = Instant::now();
        let mut h = Harvest::default();
        let mut written = PageRuns::new();
        let mut failed = None;
        for &(lo, hi) in ranges {
            let (lo, hi) = (page_down(lo), page_up(hi));
            if lo >= hi {
                continue;
            }
            h.walked += (hi - lo) / PAGE_SIZE;
            match self
                .scanner
                .written_pages(lo, hi - lo, true, |s, l| written.add(s, s + l))
            {
                Ok(n) => h.written += n,
                Err(e) => failed = Some(e),
            }
        }
        h.scan_ns = t.elapsed().as_nanos() as u64;
        let fallback = if let Some(e) = failed {
            if !SCAN_FAILURE_SAID.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "faultline: the written-pages remembered set's PAGEMAP_SCAN failed ({e}); this young cycle treats every old page as written (exact, slower)"
                );
            }
            Some(Fallback::ScanFailed)
        } else if self.all {
            Some(Fallback::Invalidated)
        } else {
            None
        };
        let kept = std::mem::take(&mut self.kept);
        if fallback.is_some() {
            h.pages = PageRuns::new();
            for &(lo, hi) in ranges {
                h.pages.add(lo, hi);
            }
        } else {
            h.pages = written;
        }
        let before = h.pages.page_count();
        h.pages.union(&kept);
        h.kept = h.pages.page_count() - before;
        self.all = false;
        h.fallback = fallback;
        let s = &mut self.stats;
        s.harvests += 1;
        s.pages_walked += h.walked as u64;
        s.written += h.written as u64;
        s.kept += h.kept as u64;
        s.returned += h.pages.page_count() as u64;
        s.fallbacks += u64::from(fallback.is_some());
        s.scan_ns += h.scan_ns;
        h
    }
}

/// A crossing map ("first object per page") of a parsable region `[base, top)`: for each page,
/// the start of the object that covers the page's first byte (or the first object starting on
/// the page when the page's first byte is the end of the region's last object). Built by one
/// walk of the objects; extended upwards as the region grows (promotion).
#[derive(Debug, Clone, Default)]
pub(crate) struct ObjectStarts {
    base: usize,
    top: usize,
    /// Per page from `base`: an object start at or below the page's first byte whose object
    /// reaches into the page, or `usize::MAX` if no object covers the page start yet.
    first: Vec<usize>,
}

impl ObjectStarts {
    /// An empty map of a region starting at `base` (page aligned).
    pub(crate) fn new(base: usize) -> Self {
        ObjectStarts {
            base,
            top: base,
            first: Vec::new(),
        }
    }

    /// The region's start.
    pub(crate) fn base(&self) -> usize {
        self.base
    }

    /// The end of the objects recorded.
    pub(crate) fn top(&self) -> usize {
        self.top
    }

    /// Forget every object (the region was emptied, or is rebuilt from `base`).
    pub(crate) fn reset(&mut self, base: usize) {
        self.base = base;
        self.top = base;
        self.first.clear();
    }

    /// Record the objects of `[self.top, new_top)`: a parsable run of objects whose headers are
    /// present and final (read with plain loads).
    pub(crate) fn extend(&mut self, types: &TypeRegistry, new_top: usize) {
        let mut a = self.top;
        while a < new_top {
            let size = types.size_words(header(a)).unwrap_or(1).max(1);
            self.record(a, size * WORD);
            a += size * WORD;
        }
        self.top = self.top.max(new_top);
    }

    /// Record one object `[o, o + bytes)` (objects recorded in address order).
    pub(crate) fn record(&mut self, o: usize, bytes: usize) {
        let end = o + bytes;
        let first_page = (page_up(o) - self.base) / PAGE_SIZE;
        let last_page = (end - 1 - self.base) / PAGE_SIZE;
        let need = last_page + 1;
        if self.first.len() < need {
            self.first.resize(need, usize::MAX);
        }
        // The object covers the first byte of pages first_page..=last_page (the page it starts
        // on too when it starts at the page's first byte).
        for p in first_page..=last_page {
            self.first[p] = o;
        }
        // The page `o` starts on, if its first byte is not covered (the region's first page).
        let own = (o - self.base) / PAGE_SIZE;
        if self.first[own] == usize::MAX {
            self.first[own] = o;
        }
        self.top = self.top.max(end);
    }

    /// The first object to visit for the page at `pa` (its covering object, or the first one
    /// starting on it), if any object lies on the page.
    pub(crate) fn first_on_page(&self, pa: usize) -> Option<usize> {
        if pa < self.base || pa >= self.top {
            return None;
        }
        self.first
            .get((pa - self.base) / PAGE_SIZE)
            .copied()
            .filter(|&o| o != usize::MAX)
    }
}

/// Call `f(slot, value)` for every reference slot that lies on the page at `pa` of a region
/// mapped by `starts` (objects up to `starts.top()`), with the slot's value read through `A`.
/// Returns the objects visited.
pub(crate) fn for_each_slot_on_page<A: SlotAccess>(
    types: &TypeRegistry,
    starts: &ObjectStarts,
    pa: usize,
    mut f: impl FnMut(usize, usize),
) -> usize {
    let Some(mut o) = starts.first_on_page(pa) else {
        return 0;
    };
    let end = (pa + PAGE_SIZE).min(starts.top());
    let mut visited = 0;
    while o < end {
        let h = header(o);
        let size = types.size_words(h).unwrap_or(1).max(1);
        let obj_end = o + size * WORD;
        if obj_end > pa {
            // Word indices of this object that lie on the page.
            let lo = pa.saturating_sub(o) / WORD;
            let hi = (end - o).div_ceil(WORD).min(size);
            visited += 1;
            types.for_each_ref_word(h, lo, hi, |k| {
                let slot = o + k * WORD;
                f(slot, A::load(slot));
            });
        }
        o = obj_end;
    }
    visited
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Plain;
    use faultline_heap::arena::{ArenaConfig, ArenaOffset};
    use faultline_heap::inject::{FaultInjector, Rule, Trigger};
    use faultline_heap::object::{Header, TypeInfo};
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

    fn tracking_arena(pages: usize, sys: Sys) -> VolatileArena {
        let a = VolatileArena::new(
            ArenaConfig::new(pages * PAGE_SIZE)
                .write_tracking(true)
                .sys(sys),
        )
        .unwrap();
        a.populate(ArenaOffset(0), pages * PAGE_SIZE).unwrap();
        a
    }

    fn poke(a: usize, v: usize) {
        // SAFETY: test code: `a` is a word of a present page of the test's own arena.
        unsafe { (a as *mut usize).write_volatile(v) };
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
        let a = VolatileArena::new(ArenaConfig::new(4 * PAGE_SIZE)).unwrap();
        let e = WrittenPages::new(&a).unwrap_err();
        assert!(matches!(e, RemsetError::NoWriteTracking(_)), "{e}");
        assert!(e.to_string().contains("WP_ASYNC"), "{e}");
    }

    #[test]
    fn harvest_reports_exactly_the_written_pages_and_then_the_kept_ones() {
        if !wp_available() {
            return;
        }
        let n = 64;
        let arena = tracking_arena(n, Sys::real());
        let (lo, hi) = (arena.base(), arena.base() + n * PAGE_SIZE);
        let mut wp = WrittenPages::new(&arena).unwrap();
        // The first harvest returns everything (nothing was protected), and protects what
        // was written (every populated page reads written).
        let h = wp.harvest(&[(lo, hi)]);
        assert_eq!(h.fallback, Some(Fallback::Invalidated));
        assert_eq!(h.pages.page_count(), n);
        // Nothing written since: nothing reported.
        let h = wp.harvest(&[(lo, hi)]);
        assert_eq!((h.fallback, h.pages.page_count(), h.written), (None, 0, 0));
        // Write pages 3, 4 and 40 (two stores to 40).
        for (p, off) in [(3, 0), (4, 8), (40, 4088), (40, 16)] {
            poke(lo + p * PAGE_SIZE + off, 7);
        }
        let h = wp.harvest(&[(lo, hi)]);
        assert_eq!(
            h.pages.runs(),
            &[
                (lo + 3 * PAGE_SIZE, lo + 5 * PAGE_SIZE),
                (lo + 40 * PAGE_SIZE, lo + 41 * PAGE_SIZE)
            ]
        );
        assert_eq!((h.written, h.kept, h.walked), (3, 0, n));
        // The cycle keeps page 4 (still refers young); page 50 is written meanwhile.
        wp.keep_page(lo + 4 * PAGE_SIZE + 100);
        poke(lo + 50 * PAGE_SIZE, 1);
        let h = wp.harvest(&[(lo, hi)]);
        assert_eq!(
            h.pages.runs(),
            &[
                (lo + 4 * PAGE_SIZE, lo + 5 * PAGE_SIZE),
                (lo + 50 * PAGE_SIZE, lo + 51 * PAGE_SIZE)
            ]
        );
        assert_eq!((h.written, h.kept), (1, 1));
        // The side list was emptied by that harvest.
        assert!(wp.harvest(&[(lo, hi)]).pages.is_empty());
        // Only the ranges asked for are scanned; a write outside them stays pending.
        poke(lo + 10 * PAGE_SIZE, 1);
        poke(lo + 20 * PAGE_SIZE, 1);
        let h = wp.harvest(&[(lo, lo + 16 * PAGE_SIZE)]);
        assert_eq!(
            h.pages.runs(),
            &[(lo + 10 * PAGE_SIZE, lo + 11 * PAGE_SIZE)]
        );
        let h = wp.harvest(&[(lo, hi)]);
        assert_eq!(
            h.pages.runs(),
            &[(lo + 20 * PAGE_SIZE, lo + 21 * PAGE_SIZE)]
        );
        // Invalidation: everything once more.
        wp.invalidate();
        assert_eq!(wp.harvest(&[(lo, hi)]).pages.page_count(), n);
        assert!(wp.harvest(&[(lo, hi)]).pages.is_empty());
        assert_eq!(wp.stats.harvests, 9);
        assert_eq!(wp.stats.fallbacks, 2);
    }

    #[test]
    fn protect_forgets_earlier_writes_and_refilled_pages_read_written() {
        if !wp_available() {
            return;
        }
        let n = 16;
        let arena = tracking_arena(n, Sys::real());
        let (lo, hi) = (arena.base(), arena.base() + n * PAGE_SIZE);
        let mut wp = WrittenPages::new(&arena).unwrap();
        wp.harvest(&[(lo, hi)]);
        poke(lo + 2 * PAGE_SIZE, 1);
        wp.protect(&arena, lo, hi).unwrap();
        assert!(wp.harvest(&[(lo, hi)]).pages.is_empty());
        // A page released and made present again (as compaction or promotion fills one) has
        // a fresh, unprotected PTE: it reads written without any store.
        arena
            .release(ArenaOffset(5 * PAGE_SIZE), PAGE_SIZE)
            .unwrap();
        arena
            .populate(ArenaOffset(5 * PAGE_SIZE), PAGE_SIZE)
            .unwrap();
        assert_eq!(
            wp.harvest(&[(lo, hi)]).pages.runs(),
            &[(lo + 5 * PAGE_SIZE, lo + 6 * PAGE_SIZE)]
        );
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
        let arena = tracking_arena(n, Sys::new(inj.clone()));
        let (lo, hi) = (arena.base(), arena.base() + n * PAGE_SIZE);
        let mut wp = WrittenPages::new(&arena).unwrap();
        inj.arm();
        wp.harvest(&[(lo, hi)]); // scan 1: protects everything
        poke(lo + 7 * PAGE_SIZE, 1);
        wp.keep_page(lo + 9 * PAGE_SIZE);
        let h = wp.harvest(&[(lo, hi)]); // scan 2 fails
        assert_eq!(h.fallback, Some(Fallback::ScanFailed));
        assert_eq!(h.pages.page_count(), n);
        assert_eq!(inj.injected(Call::PagemapScan), 1);
        // The page written before the failure was not re-protected: reported again.
        let h = wp.harvest(&[(lo, hi)]);
        assert_eq!(h.fallback, None);
        assert_eq!(h.pages.runs(), &[(lo + 7 * PAGE_SIZE, lo + 8 * PAGE_SIZE)]);
        assert_eq!(wp.stats.fallbacks, 2);
    }

    /// Objects laid out in a plain buffer (no kernel needed): a crossing map and the slots it
    /// finds per page.
    #[test]
    fn object_starts_find_the_objects_and_slots_on_a_page() {
        let mut types = TypeRegistry::default();
        // A pair: 2 reference slots, then a vector of refs.
        let pair = types
            .register(TypeInfo::fixed("pair", 2 * WORD, &[0, WORD]))
            .unwrap();
        let vec_t = types.register(TypeInfo::ref_array("vec")).unwrap();
        let pages = 4;
        let mut buf = vec![0usize; pages * PAGE_SIZE / WORD + PAGE_SIZE / WORD];
        let base = page_up(buf.as_mut_ptr() as usize);
        let w = |a: usize, v: usize| poke(a, v);
        // Layout: 100 pairs (3 words each) from base, then a vector of 600 slots (crosses
        // pages 0..=1), fillers to page 2 + 8 bytes, then a pair on page 2.
        let mut a = base;
        for i in 0..100 {
            w(a, Header::new(pair, 0).0 as usize);
            w(a + WORD, 1000 + i);
            w(a + 2 * WORD, 2000 + i);
            a += 3 * WORD;
        }
        let vec_at = a;
        w(a, Header::new(vec_t, 600).0 as usize);
        for k in 0..600 {
            w(a + (1 + k) * WORD, 5000 + k);
        }
        a += 601 * WORD;
        let pair2 = base + 2 * PAGE_SIZE + WORD;
        // (fillers: zero words, already there)
        w(pair2, Header::new(pair, 0).0 as usize);
        w(pair2 + WORD, 77);
        w(pair2 + 2 * WORD, 78);
        let top = pair2 + 3 * WORD;
        assert!(a < pair2);
        let mut starts = ObjectStarts::new(base);
        starts.extend(&types, top);
        assert_eq!(starts.first_on_page(base), Some(base));
        assert_eq!(starts.first_on_page(base + PAGE_SIZE), Some(vec_at));
        // Page 2's first byte is a filler word (its own object).
        assert_eq!(
            starts.first_on_page(base + 2 * PAGE_SIZE),
            Some(base + 2 * PAGE_SIZE)
        );
        assert_eq!(starts.first_on_page(base + 3 * PAGE_SIZE), None);
        // Slots on page 1: the vector's slots from the page start to its end.
        let mut seen = Vec::new();
        let n = for_each_slot_on_page::<Plain>(&types, &starts, base + PAGE_SIZE, |s, v| {
            seen.push((s, v))
        });
        // The vector, then the one-word fillers between its end and page 2.
        assert_eq!(n, 1 + (base + 2 * PAGE_SIZE - a) / WORD);
        let first_k = (base + PAGE_SIZE - vec_at) / WORD;
        assert_eq!(seen.first(), Some(&(base + PAGE_SIZE, 5000 + first_k - 1)));
        assert_eq!(seen.last(), Some(&(a - WORD, 5000 + 599)));
        assert_eq!(seen.len(), 600 - (first_k - 1));
        // Page 0: 200 pair slots and the vector's slots on page 0.
        let mut on0 = 0;
        for_each_slot_on_page::<Plain>(&types, &starts, base, |s, _| {
            assert!(s < base + PAGE_SIZE);
            on0 += 1;
        });
        assert_eq!(on0, 200 + (first_k - 1));
        // Page 2: the fillers and the second pair.
        let mut on2 = Vec::new();
        for_each_slot_on_page::<Plain>(&types, &starts, base + 2 * PAGE_SIZE, |_, v| on2.push(v));
        assert_eq!(on2, vec![77, 78]);
        drop(buf);
    }
}

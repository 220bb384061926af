//! Concurrent compaction: after the flip pause every reference already holds its object's new
//! address; destination pages are filled while mutators run, and a mutator that touches a page
//! before it is filled takes a userfault that fills exactly that page.
//!
//! # Phases
//!
//! 1. **Flip** (in the pause, after marking and planning, see [`crate::collector`]): roots and
//!    large objects are updated to new addresses (the states of the destination pages were
//!    reset before the pause, [`Compaction::prepare`]; the pause resets only the pages the plan
//!    grew by); the destination half becomes current with
//!    `top` at the end of the compacted region (rounded to a page, so new allocation never
//!    shares a page with compacted data); every destination page is UNPROCESSED and absent;
//!    `active` is set.
//! 2. **Fill**, concurrently: compaction workers walk the destination pages in order; a mutator
//!    fault (SIGBUS in the faulting thread, or a message to a handler thread) resolves the page
//!    it hit. Whoever wins a page's claim ([`crate::pagestate`]) fills it from the intact old
//!    half and maps it; others wait on the page's futex.
//! 3. **Finish**: when every page is MAPPED, `active` is cleared, in-flight resolvers drain
//!    (`users`), the old half and the large objects found dead at the flip are released, and
//!    the cycle's statistics are completed.
//!
//! # Strategies
//!
//! - **copy**: fill a buffer, `UFFDIO_COPY` (workers batch contiguous claimed pages into one
//!   call);
//! - **move**: fill a *staging page* — an old-half page no destination page still reads (its
//!   reader count fell to zero, or it held no live data) — and `UFFDIO_MOVE` it into place: no
//!   kernel allocation, no second copy. A *dense* page (the destination page is exactly one
//!   fully live old page at the same page offset) is updated in place and moved with no copy at
//!   all. With no staging page free, the page is copied. Workers claim runs of up to 16
//!   contiguous pages and, when as many contiguous staging pages are free, map the run with one
//!   MOVE: a MOVE flushes the source's TLB entries on every CPU running the process, so one
//!   flush per run instead of per page. The reader counts are built by the
//!   compaction thread right after the flip (O(pages), out of the pause); pages filled before
//!   they are ready are copied and keep their reads (their old pages never become staging).
//! - **minor**: the arena is a memfd mapped twice; the page is filled through the unregistered
//!   view (allocating the page-cache page) and mapped with `UFFDIO_CONTINUE`.
//!
//! Invariants:
//! - `plan` is written only in the pause while `active` is false and `users` is zero; while
//!   `active`, it is read-only, and the collector's side tables it points to are not touched
//!   (the next cycle waits for [`Compaction::wait_idle`]);
//! - the old half is never written while `active`, except a staging page or a dense page whose
//!   reader count proved that no destination page will read it again;
//! - the fault path (`resolve_fault` and everything it calls) allocates nothing and takes no
//!   lock: page buffers are on the stack, waits are futex waits, errors are `Copy` data;
//! - a fault is claimed only for an address inside the destination range of the active
//!   compaction, or (after the end) inside the current half's used and present part; any other
//!   fault is not ours and is chained (a stray access still crashes as it would).

use core::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Instant;

use faultline_heap::bitmap::{Bitmap, LiveWords};
use faultline_heap::fault::sigbus::FaultOutcome;
use faultline_heap::object::{TypeRegistry, WORD};
use faultline_heap::PAGE_SIZE;

use crate::collector::Plan;
use crate::heap::HeapInner;
use crate::pagestate::{self, Futex, StateWord, MAPPED};
use crate::stats::CycleStats;

const PAGE_WORDS: usize = PAGE_SIZE / WORD;
/// Pages a copy-strategy worker fills per COPY.
const WORKER_BATCH: usize = 16;

/// The page-mapping strategy in effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapStrategy {
    /// `UFFDIO_COPY` from a filled buffer.
    Copy,
    /// `UFFDIO_MOVE` of a filled staging page (or of a dense page updated in place).
    Move,
    /// `UFFDIO_CONTINUE` of a page filled through the memfd's second view.
    Minor,
}

impl MapStrategy {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            MapStrategy::Copy => "copy",
            MapStrategy::Move => "move",
            MapStrategy::Minor => "minor",
        }
    }
}

/// A lock-free stack of page indices (Treiber stack with an ABA tag), async-signal-safe.
pub(crate) struct PageStack {
    head: AtomicU64,
    next: Vec<AtomicU32>,
}

const NIL: u32 = u32::MAX;

impl PageStack {
    fn new(n: usize) -> Self {
        PageStack {
            head: AtomicU64::new(NIL as u64),
            next: (0..n).map(|_| AtomicU32::new(NIL)).collect(),
        }
    }
    fn clear(&self) {
        self.head.store(NIL as u64, Ordering::SeqCst);
    }
    fn push(&self, i: u32) {
        let mut h = self.head.load(Ordering::Acquire);
        loop {
            self.next[i as usize].store(h as u32, Ordering::Relaxed);
            let new = ((h >> 32).wrapping_add(1) << 32) | i as u64;
            match self
                .head
                .compare_exchange_weak(h, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(a) => h = a,
            }
        }
    }
    fn pop(&self) -> Option<u32> {
        let mut h = self.head.load(Ordering::Acquire);
        loop {
            let i = h as u32;
            if i == NIL {
                return None;
            }
            let next = self.next[i as usize].load(Ordering::Relaxed);
            let new = ((h >> 32).wrapping_add(1) << 32) | next as u64;
            match self
                .head
                .compare_exchange_weak(h, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(i),
                Err(a) => h = a,
            }
        }
    }
}

/// The plan of the compaction in progress (see the module invariants).
pub(crate) struct PlanData {
    pub from: usize,
    pub from_top: usize,
    /// End of the old half's present pages (released at the end).
    pub from_populated: usize,
    pub to: usize,
    pub to_offset: usize,
    pub from_offset: usize,
    pub live_words: usize,
    pub pages: usize,
    /// Bitmap words covering the old half's used part.
    pub bitmap_words: usize,
    /// Where the old half's pages are read (and staged): `from`, or the mapping the per-cycle
    /// choreography moved them to.
    pub src: usize,
    /// Per-cycle choreography: the detached old-half pages `(address, length)`, unmapped at
    /// the end (the destination range registered at the flip is unregistered then too).
    pub detached: Option<(usize, usize)>,
    pub live: *const LiveWords,
    pub mark: *const Bitmap,
    pub types: Option<Arc<TypeRegistry>>,
    /// Large objects found dead at the flip, released when the compaction ends.
    pub large_dead: Vec<(usize, usize)>,
}

// SAFETY: the raw pointers target the collector's side tables, which are alive and read-only
// while the plan is in use (module invariants); everything else is plain data.
unsafe impl Sync for PlanData {}
// SAFETY: as above.
unsafe impl Send for PlanData {}

impl PlanData {
    fn empty() -> Self {
        PlanData {
            from: 0,
            from_top: 0,
            from_populated: 0,
            to: 0,
            to_offset: 0,
            from_offset: 0,
            live_words: 0,
            pages: 0,
            bitmap_words: 0,
            src: 0,
            detached: None,
            live: core::ptr::null(),
            mark: core::ptr::null(),
            types: None,
            large_dead: Vec::new(),
        }
    }

    /// The compaction plan as the page filler sees it.
    ///
    /// # Safety
    /// Only while the compaction is active (the side tables are alive and unchanged).
    pub(crate) unsafe fn plan(&self) -> Plan<'_> {
        Plan {
            from: self.from,
            src: self.src,
            from_top: self.from_top,
            to: self.to,
            live_words: self.live_words,
            // SAFETY: the caller guarantees the tables are alive and not modified.
            live: unsafe { &*self.live },
            // SAFETY: as above.
            mark: unsafe { &*self.mark },
            types: self.types.as_deref().expect("set at the flip"),
            bitmap_words: self.bitmap_words,
        }
    }
}

/// Per-cycle counters of how pages were mapped.
#[derive(Debug, Default)]
pub(crate) struct PageCounters {
    pub by_worker: AtomicU64,
    pub by_fault: AtomicU64,
    pub in_place: AtomicU64,
    pub staged: AtomicU64,
    pub copied: AtomicU64,
}

/// The shared state of concurrent compaction.
pub(crate) struct Compaction {
    pub active: AtomicBool,
    pub users: AtomicU32,
    plan: UnsafeCell<PlanData>,
    pub states: Vec<AtomicU32>,
    pub readers: Vec<AtomicU32>,
    /// Move strategy: per destination page, the first and last old page it reads (packed
    /// `first << 32 | last`); valid once `readers_ready` is set.
    src: Vec<AtomicU64>,
    /// Move strategy: `readers`, `src` and the free list are built (by the compaction thread,
    /// after the flip). Until then every page is copied, and such pages never give their
    /// reads back (their old pages simply never become staging pages).
    readers_ready: AtomicBool,
    /// Destination page states already reset to UNPROCESSED before the pause
    /// ([`Compaction::prepare`]).
    prepared: AtomicUsize,
    free: PageStack,
    pub strategy: MapStrategy,
    idle: Mutex<bool>,
    idle_cv: Condvar,
    pub counters: PageCounters,
    cursor: AtomicUsize,
}

// SAFETY: `plan` follows the discipline in the module invariants (written only while no
// reader can exist); everything else is atomic or locked.
unsafe impl Sync for Compaction {}
// SAFETY: as above; the raw pointers in PlanData point into the heap's own collector state.
unsafe impl Send for Compaction {}

#[repr(C, align(4096))]
struct PageBuf([u8; PAGE_SIZE]);

impl Compaction {
    pub(crate) fn new(half_pages: usize, strategy: MapStrategy) -> Self {
        Compaction {
            active: AtomicBool::new(false),
            users: AtomicU32::new(0),
            plan: UnsafeCell::new(PlanData::empty()),
            states: (0..half_pages).map(|_| AtomicU32::new(MAPPED)).collect(),
            readers: (0..half_pages).map(|_| AtomicU32::new(0)).collect(),
            src: (0..half_pages).map(|_| AtomicU64::new(0)).collect(),
            readers_ready: AtomicBool::new(false),
            prepared: AtomicUsize::new(0),
            free: PageStack::new(half_pages),
            strategy,
            idle: Mutex::new(true),
            idle_cv: Condvar::new(),
            counters: PageCounters::default(),
            cursor: AtomicUsize::new(0),
        }
    }

    /// Block until no compaction is in progress.
    pub(crate) fn wait_idle(&self) {
        let mut g = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while !*g {
            g = self.idle_cv.wait(g).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn set_idle(&self, v: bool) {
        *self.idle.lock().unwrap_or_else(PoisonError::into_inner) = v;
        if v {
            self.idle_cv.notify_all();
        }
    }

    /// Whether a compaction is in progress.
    pub(crate) fn is_busy(&self) -> bool {
        !*self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// # Safety
    /// Only while `active` (or in the pause, by the collector).
    unsafe fn plan_data(&self) -> &PlanData {
        // SAFETY: by the caller's contract no writer exists.
        unsafe { &*self.plan.get() }
    }

    /// Install the plan of a new compaction and arm it. Called in the pause, with the world
    /// stopped and the previous compaction finished.
    ///
    /// # Safety
    /// No compaction may be active and no resolver may be inside (`users == 0`).
    pub(crate) unsafe fn arm(&self, pd: PlanData) {
        debug_assert!(!self.active.load(Ordering::SeqCst));
        while self.users.load(Ordering::SeqCst) != 0 {
            std::hint::spin_loop();
        }
        // Only the pages the plan grew by since `prepare` (black allocations and the objects
        // the remark marked) are reset here.
        let ready = self.prepared.swap(0, Ordering::Relaxed).min(pd.pages);
        for s in &self.states[ready..pd.pages] {
            s.store(pagestate::UNPROCESSED, Ordering::Relaxed);
        }
        self.free.clear();
        self.readers_ready.store(false, Ordering::Relaxed);
        self.cursor.store(0, Ordering::Relaxed);
        for c in [
            &self.counters.by_worker,
            &self.counters.by_fault,
            &self.counters.in_place,
            &self.counters.staged,
            &self.counters.copied,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        // SAFETY: no reader exists (caller's contract).
        unsafe { *self.plan.get() = pd };
        self.set_idle(false);
        self.active.store(true, Ordering::SeqCst);
    }

    /// Before the pause (concurrent planning): reset the states of the first `pages`
    /// destination pages, the plan's lower bound (marking only adds live words), so that the
    /// pause resets only the rest. Nothing reads the states while no compaction is active.
    pub(crate) fn prepare(&self, pages: usize) {
        debug_assert!(!self.active.load(Ordering::SeqCst));
        let pages = pages.min(self.states.len());
        for s in &self.states[..pages] {
            s.store(pagestate::UNPROCESSED, Ordering::Relaxed);
        }
        self.prepared.store(pages, Ordering::Relaxed);
    }

    /// A cycle begins (its initial mark): collections and verification wait for its end.
    pub(crate) fn set_busy(&self) {
        self.set_idle(false);
    }

    /// The cycle is over.
    pub(crate) fn set_idle_now(&self) {
        self.set_idle(true);
    }

    /// Move strategy: which old pages each destination page reads, how many readers each old
    /// page has, and the initially free (unread, present) old pages. Runs on the compaction
    /// thread after the flip (O(pages), kept out of the pause); until it is done, pages are
    /// copied.
    fn plan_readers(&self, pd: &PlanData) {
        // SAFETY: called while active; the tables are alive and unchanged.
        let (live, mark) = unsafe { (&*pd.live, &*pd.mark) };
        let old_pages = (pd.from_populated - pd.from) / PAGE_SIZE;
        for r in &self.readers[..old_pages] {
            r.store(0, Ordering::Relaxed);
        }
        // First source word of every destination page in one linear pass; the last source word
        // of page k is the live word just before the first of page k+1.
        let mut starts = Vec::with_capacity(pd.pages);
        live.select_every(PAGE_WORDS, pd.live_words, pd.bitmap_words, |_, w| {
            starts.push(w)
        });
        let end_word = (pd.from_top - pd.from) / WORD;
        for k in 0..pd.pages {
            let first = mark
                .prev_set(starts[k])
                .expect("every live word belongs to a marked object")
                / PAGE_WORDS;
            let last_word = match starts.get(k + 1) {
                Some(&next) => live.bits.prev_set(next - 1),
                None => live.bits.prev_set(end_word.saturating_sub(1)),
            }
            .expect("a live word for every destination word");
            let last = last_word / PAGE_WORDS;
            self.src[k].store(((first as u64) << 32) | last as u64, Ordering::Relaxed);
            for r in &self.readers[first..=last] {
                r.fetch_add(1, Ordering::Relaxed);
            }
        }
        for (j, r) in self.readers[..old_pages].iter().enumerate() {
            if r.load(Ordering::Relaxed) == 0 {
                self.free.push(j as u32);
            }
        }
        self.readers_ready.store(true, Ordering::Release);
    }

    /// Destination page `k` is done: drop its claims on old pages, freeing those nobody reads
    /// any more (except `moved`, which is no longer present).
    fn release_readers(&self, k: usize, moved: Option<u32>) {
        let v = self.src[k].load(Ordering::Relaxed);
        let (a, b) = ((v >> 32) as u32, v as u32);
        for j in a..=b {
            if self.readers[j as usize].fetch_sub(1, Ordering::AcqRel) == 1 && Some(j) != moved {
                self.free.push(j);
            }
        }
    }

    /// If destination page `k` is exactly one fully live old page at the same page offset,
    /// that page's index.
    fn dense_source(&self, pd: &PlanData, plan: &Plan<'_>, k: usize) -> Option<u32> {
        let r0 = k * PAGE_WORDS;
        if r0 + PAGE_WORDS > pd.live_words {
            return None;
        }
        let w0 = plan.live.select(r0, pd.bitmap_words)?;
        if w0 % PAGE_WORDS != 0 {
            return None;
        }
        let first_word = w0 / 64;
        if (first_word..first_word + PAGE_WORDS / 64).all(|i| plan.live.bits.word(i) == u64::MAX) {
            Some((w0 / PAGE_WORDS) as u32)
        } else {
            None
        }
    }

    /// Fill and map destination page `k` (the caller won its claim). Async-signal-safe.
    fn fill_and_map(&self, inner: &HeapInner, pd: &PlanData, k: usize) -> bool {
        // SAFETY: called only while active.
        let plan = unsafe { pd.plan() };
        let arena = &inner.arena;
        let dst = pd.to_offset + k * PAGE_SIZE;
        match self.strategy {
            MapStrategy::Copy => self.copy_page(inner, &plan, k),
            MapStrategy::Minor => {
                let Ok(view) = arena.fill_view_addr(dst) else {
                    return false;
                };
                // SAFETY: the fill view page aliases destination page `k`, which we claimed; it
                // is unregistered, so writing it only allocates its page-cache page.
                let out = unsafe { core::slice::from_raw_parts_mut(view as *mut u8, PAGE_SIZE) };
                plan.fill_page(k, out);
                arena.resolve_continue(dst, PAGE_SIZE).is_ok()
            }
            MapStrategy::Move if !self.readers_ready.load(Ordering::Acquire) => {
                self.copy_page(inner, &plan, k)
            }
            MapStrategy::Move => {
                if let Some(j) = self.dense_source(pd, &plan, k) {
                    // Only this page still reads old page j: update it in place and move it.
                    if self.readers[j as usize].load(Ordering::Acquire) == 1 {
                        plan.update_in_place(k, j as usize);
                        let src = pd.src + j as usize * PAGE_SIZE;
                        // SAFETY: old page j is read by no other destination page.
                        let r = unsafe { arena.resolve_move_from(dst, src, PAGE_SIZE, false) };
                        if r.is_ok() {
                            self.counters.in_place.fetch_add(1, Ordering::Relaxed);
                            self.release_readers(k, Some(j));
                            return true;
                        }
                        // The page stayed where it was (updated); copy it instead.
                        let ok = self.copy_from(inner, pd.src + j as usize * PAGE_SIZE, dst);
                        if ok {
                            self.release_readers(k, None);
                        }
                        return ok;
                    }
                }
                if let Some(s) = self.free.pop() {
                    let stage = pd.src + s as usize * PAGE_SIZE;
                    // SAFETY: staging page `s` is a present old-half page that no destination
                    // page reads; we popped it, so it is ours alone.
                    let out =
                        unsafe { core::slice::from_raw_parts_mut(stage as *mut u8, PAGE_SIZE) };
                    plan.fill_page(k, out);
                    // SAFETY: the staging page is ours; it vanishes from the old half.
                    let r = unsafe { arena.resolve_move_from(dst, stage, PAGE_SIZE, false) };
                    let ok = if r.is_ok() {
                        self.counters.staged.fetch_add(1, Ordering::Relaxed);
                        true
                    } else {
                        // MOVE refused (e.g. EBUSY after a fork): copy the filled staging page.
                        self.copy_from(inner, stage, dst)
                    };
                    if ok {
                        self.release_readers(k, None);
                    }
                    return ok;
                }
                let ok = self.copy_page(inner, &plan, k);
                if ok {
                    self.release_readers(k, None);
                }
                ok
            }
        }
    }

    /// Move strategy, worker side: destination pages `[k, k+n)` are claimed by the caller. If
    /// `n` contiguous staging pages are free, fill them and map the run with one MOVE; else
    /// (or for what a failed MOVE left unmapped) map page by page. Publishes or unclaims every
    /// page of the run; returns how many it mapped.
    fn move_run(&self, inner: &HeapInner, pd: &PlanData, k: usize, n: usize) -> usize {
        let mut stage = [0u32; WORKER_BATCH];
        let mut got = 0;
        if n > 1 {
            while got < n {
                match self.free.pop() {
                    Some(s) => {
                        stage[got] = s;
                        got += 1;
                    }
                    None => break,
                }
            }
            stage[..got].sort_unstable();
        }
        let contiguous = n > 1 && got == n && stage[..n].windows(2).all(|w| w[1] == w[0] + 1);
        let mut mapped = 0;
        if contiguous {
            // SAFETY: active.
            let plan = unsafe { pd.plan() };
            let first = pd.src + stage[0] as usize * PAGE_SIZE;
            for i in 0..n {
                // SAFETY: staging pages `stage[0] + i` are present old-half pages that no
                // destination page reads; we popped them, so they are ours alone.
                let out = unsafe {
                    core::slice::from_raw_parts_mut((first + i * PAGE_SIZE) as *mut u8, PAGE_SIZE)
                };
                plan.fill_page(k + i, out);
            }
            let dst = pd.to_offset + k * PAGE_SIZE;
            // SAFETY: the staging pages are ours; they vanish from the old half.
            let r = unsafe {
                inner
                    .arena
                    .resolve_move_from(dst, first, n * PAGE_SIZE, false)
            };
            for i in 0..n {
                let d = pd.to + (k + i) * PAGE_SIZE;
                // After a failed MOVE a page is either in place (moved before the failure) or
                // still in its staging page (not moved): copy those.
                let ok = r.is_ok()
                    || inner.arena.page_mapped(d)
                    || self.copy_from(inner, first + i * PAGE_SIZE, d - inner.arena.base());
                if ok {
                    if r.is_ok() {
                        self.counters.staged.fetch_add(1, Ordering::Relaxed);
                    }
                    self.release_readers(k + i, None);
                    pagestate::publish::<_, Futex>(&self.states[k + i]);
                    mapped += 1;
                } else {
                    pagestate::unclaim::<_, Futex>(&self.states[k + i]);
                }
            }
            return mapped;
        }
        for &s in &stage[..got] {
            self.free.push(s);
        }
        for i in 0..n {
            if self.fill_and_map(inner, pd, k + i) {
                pagestate::publish::<_, Futex>(&self.states[k + i]);
                mapped += 1;
            } else {
                pagestate::unclaim::<_, Futex>(&self.states[k + i]);
            }
        }
        mapped
    }

    fn copy_page(&self, inner: &HeapInner, plan: &Plan<'_>, k: usize) -> bool {
        let mut buf = PageBuf([0; PAGE_SIZE]);
        plan.fill_page(k, &mut buf.0);
        self.copy_from(inner, buf.0.as_ptr() as usize, plan_dst(inner, k))
    }

    fn copy_from(&self, inner: &HeapInner, src: usize, dst_offset: usize) -> bool {
        self.counters.copied.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `src` is a readable page (a filled buffer or a present heap page).
        unsafe {
            inner
                .arena
                .resolve_copy(dst_offset, src as *const u8, PAGE_SIZE)
        }
        .is_ok()
    }

    /// Make destination page `k` mapped (claim and fill, or wait). Async-signal-safe.
    fn ensure_page(&self, inner: &HeapInner, pd: &PlanData, k: usize) -> bool {
        pagestate::ensure::<_, Futex>(&self.states[k], || self.fill_and_map(inner, pd, k))
    }
}

fn plan_dst(inner: &HeapInner, k: usize) -> usize {
    // SAFETY: called only while active.
    let pd = unsafe { inner.compaction.plan_data() };
    pd.to_offset + k * PAGE_SIZE
}

/// Resolve a mutator fault at `addr`. Async-signal-safe: called from the SIGBUS handler.
pub(crate) fn resolve_fault(inner: &HeapInner, addr: usize) -> FaultOutcome {
    let t0 = Instant::now();
    let c = &inner.compaction;
    c.users.fetch_add(1, Ordering::SeqCst);
    let mut outcome = FaultOutcome::NotMine;
    if c.active.load(Ordering::SeqCst) {
        // SAFETY: active, and our use is announced in `users`.
        let pd = unsafe { c.plan_data() };
        if addr >= pd.to && addr < pd.to + pd.pages * PAGE_SIZE {
            let k = (addr - pd.to) / PAGE_SIZE;
            // A failed fill (a transient kernel error such as ENOMEM) gives the claim back;
            // try again a bounded number of times before letting the fault through.
            for _ in 0..1000 {
                if c.ensure_page(inner, pd, k) {
                    c.counters.by_fault.fetch_add(1, Ordering::Relaxed);
                }
                if StateWord::load(&c.states[k]) == MAPPED {
                    outcome = FaultOutcome::Resolved;
                    break;
                }
                // SAFETY: sched_yield has no preconditions (and is async-signal-safe).
                unsafe { libc::sched_yield() };
            }
        }
    }
    if outcome == FaultOutcome::NotMine {
        // A fault that raced with the end of compaction: the page is there now.
        let m = &inner.moving;
        if addr >= m.base() && addr < m.top.load(Ordering::Acquire) && inner.arena.page_mapped(addr)
        {
            outcome = FaultOutcome::Resolved;
        }
    }
    c.users.fetch_sub(1, Ordering::SeqCst);
    if outcome == FaultOutcome::Resolved {
        inner
            .fault_hist
            .record(t0.elapsed().as_nanos().min(u64::MAX as u128) as u64);
    }
    outcome
}

/// The SIGBUS resolver registered for the moving space.
///
/// # Safety
/// `ctx` is the heap's `HeapInner`, alive while the region is registered.
pub(crate) unsafe fn sigbus_resolver(ctx: *const (), addr: usize) -> FaultOutcome {
    // SAFETY: by the registration's contract.
    let inner = unsafe { &*(ctx as *const HeapInner) };
    resolve_fault(inner, addr)
}

/// Make every page of `[addr, addr+len)` that belongs to the active compaction present (for
/// memory handed to a system call). Not for signal context (it may wait).
pub(crate) fn ensure_range(inner: &HeapInner, addr: usize, len: usize) {
    let c = &inner.compaction;
    c.users.fetch_add(1, Ordering::SeqCst);
    if c.active.load(Ordering::SeqCst) {
        // SAFETY: active, and our use is announced.
        let pd = unsafe { c.plan_data() };
        let end = (addr + len).min(pd.to + pd.pages * PAGE_SIZE);
        let mut a = addr.max(pd.to) & !(PAGE_SIZE - 1);
        while a < end {
            let k = (a - pd.to) / PAGE_SIZE;
            c.ensure_page(inner, pd, k);
            a += PAGE_SIZE;
        }
    }
    c.users.fetch_sub(1, Ordering::SeqCst);
}

/// Run the concurrent phase to its end with `threads` workers, then finish the cycle. Runs on
/// its own thread, holding the heap alive.
pub(crate) fn run_compaction(
    inner: Arc<HeapInner>,
    mut stats: CycleStats,
    t_pause_start: Instant,
    calls0: faultline_heap::sys::CallSnapshot,
) {
    let c = &inner.compaction;
    if c.strategy == MapStrategy::Move {
        // SAFETY: active until we clear it below.
        c.plan_readers(unsafe { c.plan_data() });
    }
    if let Some(d) = inner.config.compaction_delay {
        // Stress / test knob: leave every destination page absent for a while, so mutator
        // faults (and kernel accesses) meet unfilled pages.
        std::thread::sleep(d);
    }
    crate::stress::phase_delay(&inner.config, crate::stress::Phase::BeforeCompaction);
    let t0 = Instant::now();
    // SAFETY: active until we clear it below.
    let pd = unsafe { c.plan_data() };
    let threads = inner.config.gc_threads.max(1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| worker(&inner, pd));
        }
    });
    // Every page is mapped: nobody needs the old half or the plan any more.
    c.active.store(false, Ordering::SeqCst);
    while c.users.load(Ordering::SeqCst) != 0 {
        std::thread::yield_now();
    }
    if inner.config.choreography == crate::config::Choreography::PerCycle {
        // The per-cycle baseline: unregister the destination range (VMAs merge) and unmap the
        // detached old pages.
        if let Err(e) = inner.arena.unregister_range() {
            eprintln!("faultline: per-cycle choreography: unregistering failed: {e}");
        }
        if let Some((a, l)) = pd.detached {
            // SAFETY: the detached mapping of this cycle; every page is filled, nobody reads it.
            if let Err(e) = unsafe { inner.arena.unmap_detached(a, l) } {
                eprintln!("faultline: per-cycle choreography: {e}");
            }
        }
    } else {
        let from_len = pd.from_populated - pd.from;
        crate::stress::release_old_half(&inner, pd.from_offset, from_len);
    }
    if let Err(e) = inner.large.release_dead(&inner.arena, &pd.large_dead) {
        eprintln!("faultline: releasing dead large objects failed: {e}");
    }
    stats.large_after = inner.large.used();
    crate::collector::set_trigger(&inner, inner.moving.used() + stats.large_after);
    stats.compact = t0.elapsed();
    stats.total = t_pause_start.elapsed();
    stats.calls = inner.arena.sys().counters().snapshot().since(&calls0);
    stats.vmas = (inner.arena.vmas_at_creation(), inner.arena.vma_count());
    stats.pages_by_fault = c.counters.by_fault.load(Ordering::Relaxed);
    stats.pages_in_place = c.counters.in_place.load(Ordering::Relaxed);
    stats.pages_staged = c.counters.staged.load(Ordering::Relaxed);
    stats.pages_copied = c.counters.copied.load(Ordering::Relaxed);
    crate::collector::record_cycle(&inner, &stats);
    c.set_idle(true);
    crate::collector::verify_after_concurrent(&inner, stats.cycle);
}

fn worker(inner: &HeapInner, pd: &PlanData) {
    let c = &inner.compaction;
    let mut buf = vec![0u8; WORKER_BATCH * PAGE_SIZE];
    loop {
        let start = c.cursor.fetch_add(WORKER_BATCH, Ordering::Relaxed);
        if start >= pd.pages {
            break;
        }
        let end = (start + WORKER_BATCH).min(pd.pages);
        let mut k = start;
        while k < end {
            if c.strategy == MapStrategy::Move && c.readers_ready.load(Ordering::Acquire) {
                // Claim a run of contiguous pages; with as many contiguous staging pages, fill
                // them and map the run with one MOVE (one TLB flush for the run, not one per
                // page).
                let mut n = 0;
                while k + n < end && pagestate::claim(&c.states[k + n]) == pagestate::Claim::Won {
                    n += 1;
                }
                if n > 0 {
                    let done = c.move_run(inner, pd, k, n);
                    c.counters
                        .by_worker
                        .fetch_add(done as u64, Ordering::Relaxed);
                    k += n;
                    continue;
                }
            }
            if c.strategy == MapStrategy::Copy {
                // Claim a run of contiguous pages and map them with one COPY.
                let mut n = 0;
                while k + n < end && pagestate::claim(&c.states[k + n]) == pagestate::Claim::Won {
                    n += 1;
                }
                if n > 0 {
                    // SAFETY: active.
                    let plan = unsafe { pd.plan() };
                    for i in 0..n {
                        plan.fill_page(k + i, &mut buf[i * PAGE_SIZE..(i + 1) * PAGE_SIZE]);
                    }
                    // SAFETY: `buf` holds `n` filled pages.
                    let ok = unsafe {
                        inner.arena.resolve_copy(
                            pd.to_offset + k * PAGE_SIZE,
                            buf.as_ptr(),
                            n * PAGE_SIZE,
                        )
                    }
                    .is_ok();
                    for i in 0..n {
                        if ok {
                            pagestate::publish::<_, Futex>(&c.states[k + i]);
                        } else {
                            pagestate::unclaim::<_, Futex>(&c.states[k + i]);
                        }
                    }
                    if ok {
                        c.counters.by_worker.fetch_add(n as u64, Ordering::Relaxed);
                        c.counters.copied.fetch_add(n as u64, Ordering::Relaxed);
                        k += n;
                        continue;
                    }
                }
            }
            if c.ensure_page(inner, pd, k) {
                c.counters.by_worker.fetch_add(1, Ordering::Relaxed);
            }
            k += 1;
        }
    }
    // Pages claimed by mutators may still be in flight: wait for all of them, and fill any
    // whose fill failed (a transient kernel error) ourselves, backing off between tries.
    for (k, s) in c.states[..pd.pages].iter().enumerate() {
        let mut tries = 0u32;
        while !pagestate::wait_mapped::<_, Futex>(s) {
            c.ensure_page(inner, pd, k);
            tries += 1;
            if tries > 10_000 {
                // References already point at this page: the heap cannot continue without it.
                eprintln!("faultline: destination page {k} could not be mapped after {tries} attempts; aborting");
                std::process::abort();
            }
            if tries > 10 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
}

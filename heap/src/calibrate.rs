//! Measuring what this kernel gives, so `Strategy::Auto` follows measurement, not
//! availability.
//!
//! `UFFDIO_MOVE` exists from Linux 6.8, but on the kernels we measured (6.18) it costs one TLB
//! shootdown per call while other threads of the process run, and compacts about 3x slower than
//! `UFFDIO_COPY`; 6.19 batches those flushes. Whether move or copy wins is therefore a fact of
//! the running kernel and machine: [`measure_mapping`] times both on a scratch arena, one page
//! per call (as a fault is resolved) and in runs of [`RUN_PAGES`] (as compaction workers fill),
//! with a second thread of the process running meanwhile (as mutators do during a compaction:
//! without it, a move needs no cross-CPU flush and looks cheaper than it will be).
//!
//! [`measure_faults`] times the other choice, the fault delivery (`FaultMode::Auto`): the round
//! trip of a touch of an absent page resolved in the faulting thread's SIGBUS handler, against
//! one read and resolved by a handler thread.
//!
//! Invariants:
//! - the scratch arenas are private to the measurement; [`measure_mapping`] and
//!   [`measure_fresh`] write only where pages are present (move sources, after they were
//!   filled by an ioctl), so no fault is raised and no resolver is needed; [`measure_faults`]
//!   raises faults only inside its own scratch arena, whose resolver (registered for that
//!   arena alone, unregistered before it is unmapped) allocates nothing and takes no lock;
//! - every kernel call goes through the given [`Sys`] (so failures can be injected), except
//!   [`measure_faults`]'s rescue: a fault whose resolving call failed is mapped with a direct
//!   `UFFDIO_ZEROPAGE`, so that no thread is left re-faulting or blocked; a failure is
//!   returned, never unwrapped;
//! - the measured figures are per page: the median over a few rounds for copy against move
//!   ([`measure_mapping`], a comparison), the minimum (the least disturbed) elsewhere.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sched::{sched_getaffinity, sched_getcpu, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use std::sync::Arc;
use std::time::Instant;

use crate::arena::PopulateMethod;
use crate::arena::{ArenaConfig, ArenaError, ArenaOffset, Backing, FaultDelivery, VolatileArena};
use crate::sys::{Sys, PAGE_SIZE};

/// Pages per call in the batched measurement.
pub const RUN_PAGES: usize = 16;
/// Pages measured per round and per way.
const PAGES: usize = 64;
/// Rounds; the minimum is kept.
const ROUNDS: usize = 3;
/// Rounds of [`measure_mapping`]; the median is kept (copy against move is a comparison of
/// two costs under the same disturbance, and a minimum favours whichever way one quiet
/// round flattered).
const MAPPING_ROUNDS: usize = 5;

/// Measured cost of mapping a filled page into a registered range, ns per page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MappingCost {
    /// `UFFDIO_COPY` of one page per call.
    pub copy_single_ns: f64,
    /// `UFFDIO_COPY` of [`RUN_PAGES`] pages per call.
    pub copy_run_ns: f64,
    /// `UFFDIO_MOVE` of one page per call.
    pub move_single_ns: f64,
    /// `UFFDIO_MOVE` of [`RUN_PAGES`] pages per call.
    pub move_run_ns: f64,
}

impl MappingCost {
    /// Move's cost over copy's, the mean of the single-page and run ratios (above 1: move is
    /// slower here).
    pub fn move_over_copy(&self) -> f64 {
        (self.move_single_ns / self.copy_single_ns + self.move_run_ns / self.copy_run_ns) / 2.0
    }
}

impl core::fmt::Display for MappingCost {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "copy {:.0} / {:.0} ns per page, move {:.0} / {:.0} ns per page (1 / {RUN_PAGES} pages per call, another thread running)",
            self.copy_single_ns, self.copy_run_ns, self.move_single_ns, self.move_run_ns
        )
    }
}

/// The measuring thread held on the CPU it runs on, and the other CPUs it may use, for
/// the measurement's duration (its affinity is restored on drop). With the spinner kept on
/// those other CPUs, the two never share one, so a move always needs the cross-CPU flush it
/// needs while mutators run (without this, a process whose spinner landed on the measuring
/// thread's CPU measured move at 0.5x copy, and the next one at 3.9x).
struct Placement {
    saved: CpuSet,
    others: CpuSet,
}

impl Placement {
    /// `None` when there is no other CPU to use, or the affinity cannot be read or set.
    fn split() -> Option<Placement> {
        let me = Pid::from_raw(0);
        let saved = sched_getaffinity(me).ok()?;
        let cpu = sched_getcpu().ok()?;
        let mut others = saved;
        others.unset(cpu).ok()?;
        let any_other = (0..CpuSet::count()).any(|c| others.is_set(c).unwrap_or(false));
        if !any_other {
            return None;
        }
        let mut mine = CpuSet::new();
        mine.set(cpu).ok()?;
        sched_setaffinity(me, &mine).ok()?;
        Some(Placement { saved, others })
    }
}

impl Drop for Placement {
    fn drop(&mut self) {
        let _ = sched_setaffinity(Pid::from_raw(0), &self.saved);
    }
}

/// A thread of this process kept running while the measurement runs (stopped on drop).
struct Spinner {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spinner {
    /// Start the thread and wait (up to 50 ms) until it runs: a measurement begun before it
    /// is scheduled would see moves without cross-CPU flushes, as cheap as they never are
    /// while mutators run (seen: the same binary picking move in one process and copy in
    /// the next).
    fn start(on: Option<CpuSet>) -> Spinner {
        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicBool::new(false));
        let (s, r) = (stop.clone(), running.clone());
        let thread = std::thread::Builder::new()
            .name("faultline-calibrate".into())
            .spawn(move || {
                if let Some(set) = on {
                    let _ = sched_setaffinity(Pid::from_raw(0), &set);
                }
                r.store(true, Ordering::Release);
                while !s.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
            .ok();
        let t0 = Instant::now();
        while thread.is_some()
            && !running.load(Ordering::Acquire)
            && t0.elapsed() < std::time::Duration::from_millis(50)
        {
            std::thread::yield_now();
        }
        Spinner { stop, thread }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A scratch anonymous arena of `bytes` made through `sys`, for timing; an error if the
/// kernel does not offer `UFFDIO_MOVE` (both measurements compare against it).
fn scratch_arena(sys: &Sys, bytes: usize) -> Result<VolatileArena, ArenaError> {
    let arena = VolatileArena::new(
        ArenaConfig::new(bytes)
            .backing(Backing::Anonymous)
            .delivery(FaultDelivery::Sigbus)
            .sys(sys.clone()),
    )?;
    if !arena.can_move() {
        return Err(ArenaError::Config(
            "UFFDIO_MOVE is not offered by this kernel".into(),
        ));
    }
    Ok(arena)
}

/// Time `UFFDIO_COPY` and `UFFDIO_MOVE` on a scratch arena created through `sys` (see the
/// module documentation). Takes a few milliseconds.
pub fn measure_mapping(sys: &Sys) -> Result<MappingCost, ArenaError> {
    let window = PAGES * PAGE_SIZE;
    // [0, window): destination; [window, 2 window): move sources.
    let arena = scratch_arena(sys, 2 * window)?;
    let src = vec![0x5au8; RUN_PAGES * PAGE_SIZE];
    let placement = Placement::split();
    let _spinner = Spinner::start(placement.as_ref().map(|p| p.others));
    let per_page = |d: std::time::Duration| d.as_nanos() as f64 / PAGES as f64;
    let mut rounds = [[0.0f64; 4]; MAPPING_ROUNDS];
    for round in rounds.iter_mut() {
        for (k, pages) in [1, RUN_PAGES].into_iter().enumerate() {
            // Copy: from a buffer into absent destination pages.
            let t = Instant::now();
            for at in (0..window).step_by(pages * PAGE_SIZE) {
                // SAFETY: `src` holds at least `pages` readable pages.
                unsafe { arena.resolve_copy(ArenaOffset(at), src.as_ptr(), pages * PAGE_SIZE) }?;
            }
            round[k] = per_page(t.elapsed());
            arena.release(ArenaOffset(0), window)?;
            // Move: from present source pages, written by this thread as compaction writes a
            // page it fills (not timed: filling them is not the move).
            arena.populate_with(ArenaOffset(window), window, PopulateMethod::CopyZeros)?;
            let s0 = arena.addr_of(ArenaOffset(window));
            // SAFETY: `[s0, s0 + window)` is present (just populated) and private to this
            // function; nothing else reads or writes it.
            unsafe { core::ptr::write_bytes(s0 as *mut u8, 0xa5, window) };
            let t = Instant::now();
            for at in (0..window).step_by(pages * PAGE_SIZE) {
                // SAFETY: nothing reads the source window; it is repopulated before reuse.
                unsafe {
                    arena.resolve_move(
                        ArenaOffset(at),
                        ArenaOffset(window + at),
                        pages * PAGE_SIZE,
                        false,
                    )
                }?;
            }
            round[2 + k] = per_page(t.elapsed());
            arena.release(ArenaOffset(0), window)?;
            arena.release(ArenaOffset(window), window)?;
        }
    }
    let way = |i: usize| median(rounds.map(|r| r[i]));
    let [copy_single_ns, copy_run_ns, move_single_ns, move_run_ns] = [0, 1, 2, 3].map(way);
    Ok(MappingCost {
        copy_single_ns,
        copy_run_ns,
        move_single_ns,
        move_run_ns,
    })
}

/// The median of a few rounds' figures (a round disturbed either way does not decide).
fn median<const N: usize>(mut v: [f64; N]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[N / 2]
}

/// Pages per call when [`measure_fresh`] populates or moves (a refill's populate batch, and
/// recycling's run).
pub const FRESH_RUN_PAGES: usize = 64;
/// Pages per round of [`measure_fresh`]: 64 MiB, twice this machine's L3, so that the old
/// pages are as cold as a half's worth of them is when a cycle ends (and the zeroing pays
/// for fetching them, as a refill does).
const FRESH_PAGES: usize = 16384;

/// Measured cost of one page of fresh memory each way, ns per page (issue 16 item 3): the
/// minimum over a few rounds of each component.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FreshCost {
    /// Today's way, release: `MADV_DONTNEED` of written pages (the old half at a cycle's end).
    pub release_ns: f64,
    /// Today's way, populate: `UFFDIO_COPY` of zeroes, [`FRESH_RUN_PAGES`] per call (a
    /// refill crossing the populated end).
    pub copy_zeros_ns: f64,
    /// Recycling: `UFFDIO_MOVE` of written pages, [`FRESH_RUN_PAGES`] per call.
    pub move_ns: f64,
    /// Recycling: zeroing the moved page in user space (what a refill does).
    pub zero_ns: f64,
    /// Recycling: `MADV_DONTNEED` of the old range after its pages moved away (empty).
    pub release_empty_ns: f64,
    /// Whether another thread of the process ran meanwhile (as mutators do while a
    /// concurrent cycle ends; a move then costs a TLB shootdown per page on kernels before
    /// 6.19).
    pub with_thread: bool,
}

impl FreshCost {
    /// Today's way in total: release + COPY of zeroes.
    pub fn copy_zeros_total(&self) -> f64 {
        self.release_ns + self.copy_zeros_ns
    }
    /// Recycling in total: move + zero + release of the emptied range.
    pub fn recycle_total(&self) -> f64 {
        self.move_ns + self.zero_ns + self.release_empty_ns
    }
}

impl core::fmt::Display for FreshCost {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "CopyZeros {:.0} ns per page (release {:.0} + COPY of zeroes {:.0}); recycle {:.0} ns \
             per page (MOVE {:.0} + zero in user space {:.0} + release of the emptied range \
             {:.0}); {} pages per call, {}",
            self.copy_zeros_total(),
            self.release_ns,
            self.copy_zeros_ns,
            self.recycle_total(),
            self.move_ns,
            self.zero_ns,
            self.release_empty_ns,
            FRESH_RUN_PAGES,
            if self.with_thread {
                "another thread running"
            } else {
                "no other thread running"
            }
        )
    }
}

/// Time both ways of providing fresh pages on a scratch arena created through `sys` (see
/// [`FreshCost`]): today's release + `UFFDIO_COPY` of zeroes, and recycling (move the written
/// page, zero it in user space, release the emptied range). With `with_thread`, another
/// thread of the process spins meanwhile. Takes some tens of milliseconds.
pub fn measure_fresh(sys: &Sys, with_thread: bool) -> Result<FreshCost, ArenaError> {
    let window = FRESH_PAGES * PAGE_SIZE;
    let run = FRESH_RUN_PAGES * PAGE_SIZE;
    // [0, window): the new half's fresh pages; [window, 2 window): the old half's pages.
    let arena = scratch_arena(sys, 2 * window)?;
    let (dst, src) = (arena.base(), arena.base() + window);
    // The old half's pages: present and written, as a cycle leaves them.
    let dirty = |arena: &VolatileArena| -> Result<(), ArenaError> {
        arena.populate_with(ArenaOffset(window), window, PopulateMethod::CopyZeros)?;
        // SAFETY: `[src, src + window)` was just made present and is private to this function.
        unsafe { core::ptr::write_bytes(src as *mut u8, 0xa5, window) };
        Ok(())
    };
    let _spinner = with_thread.then(|| Spinner::start(None));
    let per_page = |d: std::time::Duration| d.as_nanos() as f64 / FRESH_PAGES as f64;
    let mut best = [f64::INFINITY; 5];
    for _ in 0..ROUNDS {
        // Today: release the old pages, COPY zeroes into the new ones.
        dirty(&arena)?;
        let t = Instant::now();
        arena.release(ArenaOffset(window), window)?;
        best[0] = best[0].min(per_page(t.elapsed()));
        let t = Instant::now();
        for at in (0..window).step_by(run) {
            arena.populate_with(ArenaOffset(at), run, PopulateMethod::CopyZeros)?;
        }
        best[1] = best[1].min(per_page(t.elapsed()));
        arena.release(ArenaOffset(0), window)?;
        // Recycling: move the old pages, zero them, release the emptied range.
        dirty(&arena)?;
        let t = Instant::now();
        for at in (0..window).step_by(run) {
            // SAFETY: nothing reads the source pages after they moved.
            unsafe { arena.resolve_move(ArenaOffset(at), ArenaOffset(window + at), run, false) }?;
        }
        best[2] = best[2].min(per_page(t.elapsed()));
        let t = Instant::now();
        // SAFETY: `[dst, dst + window)` is present (just moved in) and private to this
        // function.
        unsafe { core::ptr::write_bytes(dst as *mut u8, 0, window) };
        best[3] = best[3].min(per_page(t.elapsed()));
        let t = Instant::now();
        arena.release(ArenaOffset(window), window)?;
        best[4] = best[4].min(per_page(t.elapsed()));
        arena.release(ArenaOffset(0), window)?;
    }
    Ok(FreshCost {
        release_ns: best[0],
        copy_zeros_ns: best[1],
        move_ns: best[2],
        zero_ns: best[3],
        release_empty_ns: best[4],
        with_thread,
    })
}

/// Measured cost of one page of fresh memory on a memfd arena (the minor strategy), each way,
/// ns per page: the minimum over a few rounds of each component.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemfdFreshCost {
    /// Today's way, release: a hole punch of written pages (frees their page cache).
    pub punch_ns: f64,
    /// Today's way, populate: `UFFDIO_COPY` of zeroes into the holes, [`FRESH_RUN_PAGES`]
    /// per call (allocates page-cache pages).
    pub copy_zeros_ns: f64,
    /// Keeping: `MADV_DONTNEED` of the registered view only (unmaps; the page cache stays).
    pub unmap_ns: f64,
    /// Keeping: `UFFDIO_CONTINUE` of the kept pages, [`FRESH_RUN_PAGES`] per call.
    pub continue_ns: f64,
    /// Keeping: zeroing the mapped page in user space (what a refill does).
    pub zero_ns: f64,
}

impl MemfdFreshCost {
    /// Today's way in total: punch + COPY of zeroes.
    pub fn copy_zeros_total(&self) -> f64 {
        self.punch_ns + self.copy_zeros_ns
    }
    /// Keeping in total: unmap + CONTINUE + zero.
    pub fn keep_total(&self) -> f64 {
        self.unmap_ns + self.continue_ns + self.zero_ns
    }
}

impl core::fmt::Display for MemfdFreshCost {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "memfd: CopyZeros {:.0} ns per page (hole punch {:.0} + COPY of zeroes {:.0}); keep \
             {:.0} ns per page (unmap the registered view {:.0} + CONTINUE {:.0} + zero in user \
             space {:.0}); {} pages per call",
            self.copy_zeros_total(),
            self.punch_ns,
            self.copy_zeros_ns,
            self.keep_total(),
            self.unmap_ns,
            self.continue_ns,
            self.zero_ns,
            FRESH_RUN_PAGES,
        )
    }
}

/// Time both ways of providing fresh pages on a memfd scratch arena created through `sys`
/// (see [`MemfdFreshCost`]): today's hole punch + `UFFDIO_COPY` of zeroes, and keeping the
/// page-cache pages (unmap the registered view, `UFFDIO_CONTINUE`, zero in user space). Takes
/// some tens of milliseconds.
pub fn measure_fresh_memfd(sys: &Sys) -> Result<MemfdFreshCost, ArenaError> {
    let window = FRESH_PAGES * PAGE_SIZE;
    let run = FRESH_RUN_PAGES * PAGE_SIZE;
    let arena = VolatileArena::new(
        ArenaConfig::new(window)
            .backing(Backing::Memfd)
            .delivery(FaultDelivery::Sigbus)
            .sys(sys.clone()),
    )?;
    let base = arena.base();
    // Written pages, present in the registered view, as a cycle leaves a half.
    let dirty = |arena: &VolatileArena| -> Result<(), ArenaError> {
        for at in (0..window).step_by(run) {
            arena.populate_with(ArenaOffset(at), run, PopulateMethod::CopyZeros)?;
        }
        // SAFETY: the range was just made present and is private to this function.
        unsafe { core::ptr::write_bytes(base as *mut u8, 0xa5, window) };
        Ok(())
    };
    let per_page = |d: std::time::Duration| d.as_nanos() as f64 / FRESH_PAGES as f64;
    let mut best = [f64::INFINITY; 5];
    for _ in 0..ROUNDS {
        dirty(&arena)?;
        let t = Instant::now();
        arena.release(ArenaOffset(0), window)?;
        best[0] = best[0].min(per_page(t.elapsed()));
        let t = Instant::now();
        for at in (0..window).step_by(run) {
            arena.populate_with(ArenaOffset(at), run, PopulateMethod::CopyZeros)?;
        }
        best[1] = best[1].min(per_page(t.elapsed()));
        // SAFETY: the range is present now; written to make the pages the next way keeps
        // as a cycle leaves them.
        unsafe { core::ptr::write_bytes(base as *mut u8, 0xa5, window) };
        let t = Instant::now();
        // SAFETY: dropping the registered view's mappings of our own arena (the memfd keeps
        // the pages).
        unsafe {
            sys.madvise(base as *mut core::ffi::c_void, window, libc::MADV_DONTNEED)
                .map_err(|e| ArenaError::Config(format!("madvise(MADV_DONTNEED): {e}")))?
        };
        best[2] = best[2].min(per_page(t.elapsed()));
        let t = Instant::now();
        for at in (0..window).step_by(run) {
            arena.resolve_continue(ArenaOffset(at), run)?;
        }
        best[3] = best[3].min(per_page(t.elapsed()));
        let t = Instant::now();
        // SAFETY: mapped again by CONTINUE, private to this function.
        unsafe { core::ptr::write_bytes(base as *mut u8, 0, window) };
        best[4] = best[4].min(per_page(t.elapsed()));
        arena.release(ArenaOffset(0), window)?;
    }
    Ok(MemfdFreshCost {
        punch_ns: best[0],
        copy_zeros_ns: best[1],
        unmap_ns: best[2],
        continue_ns: best[3],
        zero_ns: best[4],
    })
}

/// Faults per round of [`measure_faults`], per delivery.
const FAULT_PAGES: usize = 64;
/// How long [`measure_faults`] waits for a handler thread to serve one round of faults
/// before it gives up (a safety net: an unserved fault would block its thread forever).
const FAULT_ROUND_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Measured round trip of one mutator fault by delivery, ns per fault: from the touch of an
/// absent page to the touch's return, the page resolved by mapping one page of zeroes
/// (`UFFDIO_COPY`), the minimum over a few rounds (issue 15 item 5: `FaultMode::Auto`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultCost {
    /// SIGBUS in the faulting thread, resolved in its signal handler.
    pub sigbus_ns: f64,
    /// A handler thread reads the fault from the userfaultfd and resolves it (which wakes
    /// the faulting thread).
    pub thread_ns: f64,
    /// Wall time the whole measurement took, ms (arenas, thread and rounds).
    pub took_ms: f64,
}

impl FaultCost {
    /// The handler thread's round trip over SIGBUS's (above 1: the thread is slower here).
    pub fn thread_over_sigbus(&self) -> f64 {
        self.thread_ns / self.sigbus_ns
    }
}

impl core::fmt::Display for FaultCost {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "fault round trip: sigbus {:.0} ns, handler thread {:.0} ns (one page of zeroes mapped per fault, min of {ROUNDS} rounds of {FAULT_PAGES}; measured in {:.1} ms)",
            self.sigbus_ns, self.thread_ns, self.took_ms
        )
    }
}

/// A scratch arena whose faults the measurement resolves, shared with the resolver (the
/// signal handler's context, or the handler thread).
struct FaultScratch {
    arena: VolatileArena,
    /// One page of zeroes, the source of every resolving copy.
    zeroes: Vec<u8>,
    /// A resolving call failed (the page was then mapped by [`rescue`]).
    failed: AtomicBool,
}

impl FaultScratch {
    /// Map the page of `addr` with zeroes. Async-signal-safe: no allocation, no lock (the
    /// copy goes through the arena's [`Sys`], as every resolving call does).
    fn resolve(&self, addr: usize) {
        let page = addr & !(PAGE_SIZE - 1);
        let Some(uffd) = self.arena.uffd() else {
            self.failed.store(true, Ordering::SeqCst);
            return;
        };
        // SAFETY: `zeroes` is one readable page, alive as long as `self`.
        let r = unsafe {
            uffd.copy(
                page,
                self.zeroes.as_ptr(),
                PAGE_SIZE,
                crate::uffd::CopyMode::NONE,
            )
        };
        if !matches!(r, Ok(n) if n == PAGE_SIZE) {
            self.failed.store(true, Ordering::SeqCst);
            rescue(uffd.as_raw_fd(), page);
        }
    }
}

/// Map the zero page at `page` with a direct `UFFDIO_ZEROPAGE`, *not* through the arena's
/// [`Sys`]: when an (injected) failure left a fault unresolved, its thread must still go on
/// (a SIGBUS handler would otherwise re-fault forever, a blocked thread never wake). Errors
/// are ignored (EEXIST: the page is present already). Async-signal-safe.
fn rescue(fd: std::os::fd::RawFd, page: usize) {
    let mut z = crate::uffd::abi::uffdio_zeropage {
        range: crate::uffd::abi::uffdio_range {
            start: page as u64,
            len: PAGE_SIZE as u64,
        },
        mode: 0,
        zeropage: 0,
    };
    // SAFETY: `z` is a live uffdio_zeropage for one page-aligned page of a registered range;
    // the ioctl writes only `z.zeropage`.
    unsafe { libc::ioctl(fd, crate::uffd::abi::req::ZEROPAGE as _, &raw mut z) };
}

/// The SIGBUS resolver of the measurement.
///
/// # Safety
/// `ctx` is a [`FaultScratch`] alive while the region is registered.
unsafe fn scratch_resolver(ctx: *const (), addr: usize) -> crate::fault::sigbus::FaultOutcome {
    // SAFETY: by the registration's contract.
    let scratch = unsafe { &*(ctx as *const FaultScratch) };
    scratch.resolve(addr);
    crate::fault::sigbus::FaultOutcome::Resolved
}

/// Touch every page of `[base, base + FAULT_PAGES pages)` once, ns per touch; `None` if a
/// resolving call failed on the way (the touches go on, rescued, but stop counting).
fn touch_all(base: usize, failed: &AtomicBool) -> Option<f64> {
    let t = Instant::now();
    for k in 0..FAULT_PAGES {
        // SAFETY: the page is inside the scratch arena, registered and resolved by the
        // measurement's resolver (a failed resolution is rescued with the zero page).
        unsafe { core::ptr::read_volatile((base + k * PAGE_SIZE) as *const u8) };
        if failed.load(Ordering::Relaxed) {
            return None;
        }
    }
    Some(t.elapsed().as_nanos() as f64 / FAULT_PAGES as f64)
}

fn fault_scratch(sys: &Sys, delivery: FaultDelivery) -> Result<Arc<FaultScratch>, ArenaError> {
    let arena = VolatileArena::new(
        ArenaConfig::new(FAULT_PAGES * PAGE_SIZE)
            .backing(Backing::Anonymous)
            .delivery(delivery)
            .sys(sys.clone()),
    )?;
    Ok(Arc::new(FaultScratch {
        arena,
        zeroes: vec![0; PAGE_SIZE],
        failed: AtomicBool::new(false),
    }))
}

fn resolving_failed(delivery: &str) -> ArenaError {
    ArenaError::Config(format!(
        "a resolving UFFDIO_COPY failed while measuring {delivery} faults"
    ))
}

/// Time the round trip of a mutator fault by each delivery (see [`FaultCost`]) on scratch
/// arenas created through `sys`: SIGBUS with the resolver in the faulting thread, and a
/// handler thread reading the userfaultfd. Takes a few milliseconds. A failing call is
/// returned as an error (after its fault was rescued, so no thread is left blocked).
pub fn measure_faults(sys: &Sys) -> Result<FaultCost, ArenaError> {
    let start = Instant::now();
    let mut best = [f64::INFINITY; 2];
    // SIGBUS: the resolver runs in this thread's signal handler.
    {
        let scratch = fault_scratch(sys, FaultDelivery::Sigbus)?;
        let base = scratch.arena.base();
        // SAFETY: the context is `scratch`, which outlives the guard (dropped first, below);
        // the resolver is async-signal-safe.
        let guard = unsafe {
            crate::fault::sigbus::register_region(
                base,
                FAULT_PAGES * PAGE_SIZE,
                scratch_resolver,
                Arc::as_ptr(&scratch).cast(),
            )
        }
        .map_err(|e| ArenaError::Config(e.to_string()))?;
        let mut r = Ok(());
        for _ in 0..ROUNDS {
            match touch_all(base, &scratch.failed) {
                Some(ns) => best[0] = best[0].min(ns),
                None => {
                    r = Err(resolving_failed("SIGBUS"));
                    break;
                }
            }
            if let Err(e) = scratch
                .arena
                .release(ArenaOffset(0), FAULT_PAGES * PAGE_SIZE)
            {
                r = Err(e);
                break;
            }
        }
        drop(guard);
        r?;
    }
    // Handler thread: faults are read and resolved by a reader thread; the touches run on a
    // helper thread so that this one can rescue them if the reader stops serving.
    {
        let scratch = fault_scratch(sys, FaultDelivery::Thread)?;
        let uffd = scratch
            .arena
            .uffd()
            .ok_or(ArenaError::NotRegistered("fault calibration"))?
            .clone();
        let fd = uffd.as_raw_fd();
        let served = scratch.clone();
        let mut reader =
            crate::fault::reader::FaultReader::spawn(uffd, "faultline-calibrate", move |ev| {
                if let crate::uffd::UffdEvent::PageFault { address, .. } = *ev {
                    served.resolve(address);
                }
            })
            .map_err(|e| ArenaError::Config(format!("spawning the handler thread: {e}")))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let toucher = scratch.clone();
        let base = scratch.arena.base();
        let worker = std::thread::Builder::new()
            .name("faultline-calibrate-touch".into())
            .spawn(move || {
                for _ in 0..ROUNDS {
                    let ns = touch_all(base, &toucher.failed);
                    let released = toucher
                        .arena
                        .release(ArenaOffset(0), FAULT_PAGES * PAGE_SIZE);
                    let stop = ns.is_none() || released.is_err();
                    if tx.send((ns, released)).is_err() || stop {
                        return;
                    }
                }
            })
            .map_err(|e| ArenaError::Config(format!("spawning the touching thread: {e}")))?;
        let mut r = Ok(());
        for _ in 0..ROUNDS {
            // Wait for the round, in short steps so that a reader that stopped on an error
            // is noticed at once.
            let waited = Instant::now();
            let got = loop {
                match rx.recv_timeout(std::time::Duration::from_millis(5)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                        if reader.error().is_none() && waited.elapsed() < FAULT_ROUND_LIMIT => {}
                    other => break other,
                }
            };
            match got {
                Ok((Some(ns), Ok(()))) => best[1] = best[1].min(ns),
                Ok((None, _)) => {
                    r = Err(resolving_failed("handler-thread"));
                    break;
                }
                Ok((_, Err(e))) => {
                    r = Err(e);
                    break;
                }
                Err(_) => {
                    // The reader stopped serving (or never started): map every page so
                    // the touching thread goes on, and give up.
                    scratch.failed.store(true, Ordering::SeqCst);
                    for k in 0..FAULT_PAGES {
                        rescue(fd, base + k * PAGE_SIZE);
                    }
                    r = Err(ArenaError::Config(format!(
                        "the handler thread stopped serving faults (waited at most {FAULT_ROUND_LIMIT:?}){}",
                        reader.error().map(|e| format!(": {e}")).unwrap_or_default()
                    )));
                    break;
                }
            }
        }
        let _ = worker.join();
        reader.stop();
        r?;
    }
    Ok(FaultCost {
        sigbus_ns: best[0],
        thread_ns: best[1],
        took_ms: start.elapsed().as_secs_f64() * 1e3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::{FaultInjector, Rule, Trigger};
    use crate::sys::{Call, Errno};

    fn uffd_here() -> bool {
        crate::probe::Probe::run().supports(crate::probe::Capability::Move)
    }

    #[test]
    fn measures_both_ways() {
        if !uffd_here() {
            eprintln!("measures_both_ways: UFFDIO_MOVE unavailable here; skipped");
            return;
        }
        let me = Pid::from_raw(0);
        let before = sched_getaffinity(me).unwrap();
        let c = measure_mapping(&Sys::real()).unwrap();
        // The measuring thread was held on one CPU meanwhile; it gets its own mask back.
        assert_eq!(sched_getaffinity(me).unwrap(), before);
        for v in [
            c.copy_single_ns,
            c.copy_run_ns,
            c.move_single_ns,
            c.move_run_ns,
        ] {
            assert!(v.is_finite() && v > 0.0, "{c}");
        }
        assert!(c.move_over_copy() > 0.0);
        eprintln!("{c}; move / copy {:.2}", c.move_over_copy());
    }

    #[test]
    fn the_spinner_never_shares_the_measuring_threads_cpu() {
        let Some(p) = Placement::split() else {
            eprintln!("one CPU, or no affinity control here; skipped");
            return;
        };
        let me = Pid::from_raw(0);
        let mine = sched_getaffinity(me).unwrap();
        let held: Vec<usize> = (0..CpuSet::count())
            .filter(|&c| mine.is_set(c).unwrap())
            .collect();
        assert_eq!(held.len(), 1, "held on one CPU");
        assert!(!p.others.is_set(held[0]).unwrap());
        assert!((0..CpuSet::count()).any(|c| p.others.is_set(c).unwrap()));
        let saved = p.saved;
        drop(p);
        assert_eq!(sched_getaffinity(me).unwrap(), saved);
    }

    #[test]
    fn measures_fresh_memory_both_ways() {
        if !uffd_here() {
            eprintln!("measures_fresh_memory_both_ways: UFFDIO_MOVE unavailable here; skipped");
            return;
        }
        for with_thread in [false, true] {
            let c = measure_fresh(&Sys::real(), with_thread).unwrap();
            for v in [
                c.release_ns,
                c.copy_zeros_ns,
                c.move_ns,
                c.zero_ns,
                c.release_empty_ns,
            ] {
                assert!(v.is_finite() && v > 0.0, "{c}");
            }
            eprintln!("{c}");
        }
    }

    #[test]
    fn measures_memfd_fresh_memory_both_ways() {
        if !crate::probe::Probe::run().supports(crate::probe::Capability::MinorShmem) {
            eprintln!("measures_memfd_fresh_memory_both_ways: MINOR_SHMEM unavailable; skipped");
            return;
        }
        let c = measure_fresh_memfd(&Sys::real()).unwrap();
        for v in [
            c.punch_ns,
            c.copy_zeros_ns,
            c.unmap_ns,
            c.continue_ns,
            c.zero_ns,
        ] {
            assert!(v.is_finite() && v > 0.0, "{c}");
        }
        eprintln!("{c}");
        // A failing call is returned.
        for call in [Call::UffdContinue, Call::Fallocate] {
            let sys = Sys::new(Arc::new(FaultInjector::new(
                vec![Rule::new(call, Errno::EIO, Trigger::Always)],
                1,
            )));
            assert!(measure_fresh_memfd(&sys).is_err(), "{call:?}");
        }
    }

    #[test]
    fn a_failing_fresh_memory_call_is_returned() {
        if !uffd_here() {
            return;
        }
        // The arena's creation makes one madvise (MADV_NOHUGEPAGE): the second is a release.
        for (call, trigger) in [
            (Call::UffdCopy, Trigger::Always),
            (Call::UffdMove, Trigger::Always),
            (Call::Madvise, Trigger::Nth(2)),
        ] {
            let sys = Sys::new(Arc::new(FaultInjector::new(
                vec![Rule::new(call, Errno::EIO, trigger)],
                1,
            )));
            let r = measure_fresh(&sys, false);
            assert!(r.is_err(), "{call:?}: {r:?}");
        }
    }

    #[test]
    fn a_failing_kernel_call_is_returned() {
        if !uffd_here() {
            return;
        }
        for call in [Call::UffdCopy, Call::UffdMove, Call::UffdRegister] {
            let sys = Sys::new(Arc::new(FaultInjector::new(
                vec![Rule::new(call, Errno::ENOMEM, Trigger::Always)],
                1,
            )));
            let r = measure_mapping(&sys);
            assert!(r.is_err(), "{call:?}: {r:?}");
        }
    }

    #[test]
    fn measures_fault_round_trips() {
        if !crate::probe::Probe::run().supports(crate::probe::Capability::Sigbus) {
            eprintln!("measures_fault_round_trips: SIGBUS delivery unavailable here; skipped");
            return;
        }
        let c = measure_faults(&Sys::real()).unwrap();
        for v in [c.sigbus_ns, c.thread_ns, c.took_ms] {
            assert!(v.is_finite() && v > 0.0, "{c}");
        }
        assert!(c.thread_over_sigbus() > 0.0);
        eprintln!("{c}; thread / sigbus {:.2}", c.thread_over_sigbus());
    }

    #[test]
    fn a_failing_fault_measurement_is_returned_and_leaves_no_thread_blocked() {
        if !crate::probe::Probe::run().supports(crate::probe::Capability::Sigbus) {
            return;
        }
        // Creation (register) of each delivery's arena, each delivery's resolving copy (the
        // first is SIGBUS's; SIGBUS makes ROUNDS x FAULT_PAGES, the next is the handler
        // thread's), and the reader's read (the reader stops: its faults are rescued).
        for (call, trigger) in [
            (Call::UffdRegister, Trigger::Always),
            (Call::UffdRegister, Trigger::Nth(2)),
            (Call::UffdCopy, Trigger::Nth(1)),
            (
                Call::UffdCopy,
                Trigger::Nth((ROUNDS * FAULT_PAGES) as u64 + 1),
            ),
            (Call::Read, Trigger::Always),
        ] {
            let sys = Sys::new(Arc::new(FaultInjector::new(
                vec![Rule::new(call, Errno::EIO, trigger)],
                1,
            )));
            let r = measure_faults(&sys);
            assert!(r.is_err(), "{call:?} {trigger:?}: {r:?}");
            eprintln!("{call:?} {trigger:?}: {}", r.unwrap_err());
        }
    }
}

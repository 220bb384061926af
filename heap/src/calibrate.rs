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
//! Invariants:
//! - the scratch arena is private to the measurement; it is written only where pages are
//!   present (move sources, after they were filled by an ioctl), so no fault is raised and no
//!   resolver is needed;
//! - every kernel call goes through the given [`Sys`] (so failures can be injected); a failure
//!   is returned, never unwrapped;
//! - the measured figures are the minimum over a few rounds (the least disturbed), per page.

use std::sync::atomic::{AtomicBool, Ordering};
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

/// A thread of this process kept running while the measurement runs (stopped on drop).
struct Spinner {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spinner {
    fn start() -> Spinner {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("faultline-calibrate".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
            .ok();
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
    let _spinner = Spinner::start();
    let per_page = |d: std::time::Duration| d.as_nanos() as f64 / PAGES as f64;
    let mut best = [f64::INFINITY; 4];
    for _ in 0..ROUNDS {
        for (k, pages) in [1, RUN_PAGES].into_iter().enumerate() {
            // Copy: from a buffer into absent destination pages.
            let t = Instant::now();
            for at in (0..window).step_by(pages * PAGE_SIZE) {
                // SAFETY: `src` holds at least `pages` readable pages.
                unsafe { arena.resolve_copy(ArenaOffset(at), src.as_ptr(), pages * PAGE_SIZE) }?;
            }
            best[k] = best[k].min(per_page(t.elapsed()));
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
            best[2 + k] = best[2 + k].min(per_page(t.elapsed()));
            arena.release(ArenaOffset(0), window)?;
            arena.release(ArenaOffset(window), window)?;
        }
    }
    Ok(MappingCost {
        copy_single_ns: best[0],
        copy_run_ns: best[1],
        move_single_ns: best[2],
        move_run_ns: best[3],
    })
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
    let _spinner = with_thread.then(Spinner::start);
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
        let c = measure_mapping(&Sys::real()).unwrap();
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
}

//! The fault path: how a mutator's touch of an unfilled destination page becomes a filled,
//! mapped page, for both deliveries.
//!
//! ```text
//!  SIGBUS delivery:   faulting thread -> faultline_heap::fault::sigbus handler
//!                       -> sigbus_resolver (this file) -> resolve_fault
//!  thread delivery:   faulting thread sleeps in the kernel; the handler thread
//!                     (faultline_heap::fault::reader) reads the event -> on_fault_event
//!                       -> resolve_fault, then wakes the faulting thread
//!  resolve_fault:     destination page k of the active compaction?
//!                       -> Compaction::fault_page (crate::compaction): claim the page
//!                          (crate::pagestate) and fill it from the plan (crate::plan) and map
//!                          it (UFFDIO_COPY / MOVE / CONTINUE through the arena; copy strategy
//!                          with `fault_group_pages` > 1: with the unclaimed pages of its
//!                          group, one fill and one COPY, crate::faultbatch), or wait for
//!                          the thread that claimed it (spin, then the page's futex), and past
//!                          a bound fill and map a copy of it here (the claimer's mapping call
//!                          then finds it present)
//! ```
//!
//! Invariants:
//! - [`resolve_fault`] is async-signal-safe: no allocation, no lock, no panic (errors are
//!   retried a bounded number of times, then the fault is left to the next handler);
//! - a fault is claimed only for an address inside the destination range of the active
//!   compaction, or (after the end) inside the current half's used and present part; any other
//!   fault is not ours and is chained (a stray access still crashes as it would);
//! - whether a page is mapped is answered from the compaction's state (page-state words, the
//!   old pages' reader counts, the range of the compaction that just finished, the arena's
//!   record of a rescue's mapping), never by the page tables (`mincore`, or a pagemap read:
//!   both wait for the mmap lock, which any thread's `mmap` / `munmap` / `mprotect` holds for
//!   writing), except where that state cannot tell: a fault that raced with the end of a
//!   compaction outside its destination range (`FaultBreakdown::presence_checks`), and an
//!   EEXIST nobody recorded (`FaultBreakdown::exists_checked`);
//! - the resolver's context is the heap's `HeapInner`, kept alive until the plumbing (dropped
//!   first in `HeapInner`'s `Drop`) is gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use faultline_heap::arena::ArenaError;
use faultline_heap::fault::reader::FaultReader;
use faultline_heap::fault::sigbus::{register_region, FaultOutcome};
use faultline_heap::uffd::UffdEvent;
use faultline_heap::{ArenaOffset, VolatileArena, PAGE_SIZE};

use crate::compaction::Compaction;
use crate::inner::{HeapInner, Plumbing};
use crate::mode::Delivery;
use crate::space::MovingSpace;
use crate::stats::AtomicHistogram;

/// Whether the resolver reads the faulting thread's context switches around each fault (for
/// `FaultBreakdown::preempted` / `blocked`): off by default, two `getrusage` calls a fault.
static COUNT_SWITCHES: AtomicBool = AtomicBool::new(false);

/// Count, for every fault resolved from now on (all heaps of the process), whether its thread
/// was preempted or blocked while resolving it (`FaultBreakdown::preempted` and `blocked`).
/// Off by default: it costs two `getrusage` calls a fault (~0.3 µs). Diagnostics (the
/// benchmark suite turns it on).
pub fn count_fault_context_switches(on: bool) {
    COUNT_SWITCHES.store(on, Ordering::Relaxed);
}

/// Resolve a mutator fault at `addr`: make its page present if it belongs to the active
/// compaction (or already is). Async-signal-safe: called from the SIGBUS handler.
pub(crate) fn resolve_fault(
    c: &Compaction,
    arena: &VolatileArena,
    moving: &MovingSpace,
    stalls: &AtomicHistogram,
    addr: usize,
) -> FaultOutcome {
    let t0 = Instant::now();
    let count_switches = COUNT_SWITCHES.load(Ordering::Relaxed);
    let switches0 = if count_switches {
        crate::cputime::context_switches()
    } else {
        None
    };
    c.users.fetch_add(1, Ordering::SeqCst);
    let mut outcome = FaultOutcome::NotMine;
    let mut attributed = false;
    if c.active.load(Ordering::SeqCst) {
        // SAFETY: active, and our use is announced in `users`.
        let pd = unsafe { c.plan() };
        if let Some(k) = pd.dest_page_at(addr) {
            // A failed fill (a transient kernel error such as ENOMEM) gives the claim back;
            // try again a bounded number of times before letting the fault through.
            for _ in 0..1000 {
                if c.fault_page(arena, pd, k) {
                    outcome = FaultOutcome::Resolved;
                    attributed = true;
                    break;
                }
                // SAFETY: sched_yield has no preconditions (and is async-signal-safe).
                unsafe { libc::sched_yield() };
            }
        }
    }
    if outcome == FaultOutcome::NotMine {
        // A fault that raced with the end of compaction: the page is there now. On a page of
        // the compaction that just finished the compaction's state says so; anywhere else in
        // the used part of the space (a promoted object's page lies below the window, in the
        // old generation) only the page tables can tell (counted: `presence_checks`).
        if c.finished_page(addr) {
            outcome = FaultOutcome::Resolved;
        } else if (addr >= moving.base() && addr < moving.top.load(Ordering::Acquire))
            || moving.contains_old(addr)
        {
            c.count_presence_check();
            if arena.page_mapped(addr) {
                outcome = FaultOutcome::Resolved;
            }
        }
    }
    c.users.fetch_sub(1, Ordering::SeqCst);
    if outcome == FaultOutcome::Resolved {
        // One clock read for both records (this runs in the faulting thread's SIGBUS handler).
        let end = Instant::now();
        let ns = (end - t0).as_nanos().min(u64::MAX as u128) as u64;
        stalls.record(ns);
        crate::waits::record(crate::waits::WaitCause::FaultStall, t0, end);
        if attributed {
            // Preempted: the scheduler took the CPU from this thread while it resolved the
            // fault (CPU contention), so the stall says little about the fault path itself.
            // Blocked: it gave the CPU up itself (a futex sleep on a claim, a yield, or a sleep
            // inside a kernel call such as a lock the mapping ioctl waited for).
            // (Not counted: neither.)
            let (preempted, blocked) = match switches0 {
                None if !count_switches => (false, false),
                None => (true, false),
                Some((i0, v0)) => match crate::cputime::context_switches() {
                    Some((i1, v1)) => (i1 != i0, v1 != v0),
                    None => (true, false),
                },
            };
            c.attrib.count_fault(ns, preempted, blocked);
        }
    }
    outcome
}

/// Resolve a fault of the heap `inner`.
fn resolve_in(inner: &HeapInner, addr: usize) -> FaultOutcome {
    resolve_fault(
        &inner.compaction,
        &inner.arena,
        &inner.moving,
        &inner.fault_hist,
        addr,
    )
}

/// The SIGBUS resolver registered for the moving space.
///
/// # Safety
/// `ctx` is the heap's `HeapInner`, alive while the region is registered.
unsafe fn sigbus_resolver(ctx: *const (), addr: usize) -> FaultOutcome {
    // SAFETY: by the registration's contract.
    let inner = unsafe { &*(ctx as *const HeapInner) };
    resolve_in(inner, addr)
}

/// Install the fault plumbing of a concurrent heap: register the moving space's SIGBUS region,
/// or start the handler thread. The caller stores the result in `inner.plumbing`, which
/// `HeapInner`'s `Drop` drops first.
pub(crate) fn install(inner: &Arc<HeapInner>, delivery: Delivery) -> Result<Plumbing, ArenaError> {
    let ctx = Arc::as_ptr(inner) as usize;
    match delivery {
        Delivery::Sigbus => {
            // SAFETY: `ctx` is this HeapInner; the guard lives in its `plumbing` and is dropped
            // first in its Drop, so the context outlives the registration; the resolver is
            // async-signal-safe.
            let guard = unsafe {
                register_region(
                    inner.moving.half_base[0],
                    2 * inner.moving.half_bytes,
                    sigbus_resolver,
                    ctx as *const (),
                )
            }
            .map_err(|e| ArenaError::Config(e.to_string()))?;
            Ok(Plumbing::Sigbus(guard))
        }
        Delivery::Thread => {
            let uffd = inner
                .arena
                .uffd()
                .ok_or(ArenaError::NotRegistered("fault handler thread"))?
                .clone();
            let reader = FaultReader::spawn(uffd, "faultline-faults", move |ev| {
                if let UffdEvent::PageFault { address, .. } = *ev {
                    // SAFETY: the reader is stopped (joined) in HeapInner's Drop before any
                    // other field is dropped, so `ctx` is alive here.
                    let inner = unsafe { &*(ctx as *const HeapInner) };
                    // A fork waits for a page this thread claimed to be mapped and published
                    // (its mutator may be parked already: `crate::forkgate`).
                    let fork_gate = crate::forkgate::Region::enter();
                    resolve_in(inner, address);
                    drop(fork_gate);
                    // Whoever mapped the page woke the waiters on it; wake once more in case
                    // the page was mapped before this fault was queued.
                    let page = (address - inner.arena.base()) & !(PAGE_SIZE - 1);
                    let _ = inner.arena.wake(ArenaOffset(page), PAGE_SIZE);
                }
            })
            .map_err(|e| ArenaError::Config(format!("spawning the fault handler thread: {e}")))?;
            Ok(Plumbing::Thread(reader))
        }
    }
}

//! SIGBUS-mode fault resolution: threads touching absent arena pages get their pages resolved
//! by the resolver registered for the arena, in their own signal handler.
//!
//! Invariant: the resolver context outlives the region guard (both live in the test's frame and
//! the guard is dropped first).

mod common;

use common::*;
use core::sync::atomic::{AtomicU64, Ordering};
use faultline_heap::arena::{ArenaConfig, FaultDelivery, VolatileArena};
use faultline_heap::fault::sigbus::{self, FaultOutcome};
use faultline_heap::ArenaOffset;
use faultline_heap::PAGE_SIZE;

struct Ctx {
    arena: VolatileArena,
    pattern: Vec<u8>,
    resolved: AtomicU64,
}

/// Async-signal-safe: one COPY of a prepared buffer; no allocation.
unsafe fn resolve(ctx: *const (), addr: usize) -> FaultOutcome {
    // SAFETY: `ctx` is the `Ctx` registered with the region and outlives the guard.
    let ctx = unsafe { &*(ctx as *const Ctx) };
    let offset = (addr - ctx.arena.base()) & !(PAGE_SIZE - 1);
    // SAFETY: `pattern` is readable for a page.
    match unsafe {
        ctx.arena
            .resolve_copy(ArenaOffset(offset), ctx.pattern.as_ptr(), PAGE_SIZE)
    } {
        Ok(_) => {
            ctx.resolved.fetch_add(1, Ordering::Relaxed);
            FaultOutcome::Resolved
        }
        Err(_) => FaultOutcome::NotMine,
    }
}

#[test]
fn sigbus_faults_are_resolved_in_the_faulting_threads() {
    if !uffd_available() {
        return;
    }
    const PAGES: usize = 256;
    let ctx = Box::new(Ctx {
        arena: VolatileArena::new(
            ArenaConfig::new(PAGES * PAGE_SIZE).delivery(FaultDelivery::Sigbus),
        )
        .unwrap(),
        pattern: (0..PAGE_SIZE).map(|i| (i % 251) as u8).collect(),
        resolved: AtomicU64::new(0),
    });
    let base = ctx.arena.base();
    // SAFETY: `ctx` outlives `guard` (dropped explicitly below); `resolve` is signal-safe.
    let guard = unsafe {
        sigbus::register_region(
            base,
            PAGES * PAGE_SIZE,
            resolve,
            &*ctx as *const Ctx as *const (),
        )
    }
    .unwrap();
    let (before, _) = sigbus::counts();
    // Four threads touch every page, in different orders, so some faults race on one page.
    std::thread::scope(|s| {
        for t in 0..4usize {
            s.spawn(move || {
                for k in 0..PAGES {
                    let page = if t % 2 == 0 { k } else { PAGES - 1 - k };
                    let off = (page * 61 + t) % PAGE_SIZE;
                    assert_eq!(read_byte(base + page * PAGE_SIZE + off), (off % 251) as u8);
                }
            });
        }
    });
    let (after, _) = sigbus::counts();
    let resolved = ctx.resolved.load(Ordering::Relaxed);
    assert!(
        resolved >= PAGES as u64,
        "every page was resolved by a SIGBUS"
    );
    assert!(after - before >= PAGES as u64);
    for p in 0..PAGES {
        assert!(present(base + p * PAGE_SIZE));
    }
    // Writes to resolved pages do not fault again.
    // SAFETY: page 0 is present and ours.
    unsafe { (base as *mut u8).write_volatile(0xee) };
    assert_eq!(read_byte(base), 0xee);
    assert_eq!(ctx.resolved.load(Ordering::Relaxed), resolved);
    drop(guard);
}

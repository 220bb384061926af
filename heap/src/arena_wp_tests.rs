//! Tests of the arena's late write protection (pages populated while write tracking starts end
//! up write-protected; its error path). A module of its own, beside `arena`, because they ask
//! [`crate::probe`] (which builds arenas) whether the kernel has write tracking.
//!
//! Invariants: test code only; every arena here is private to its test.

use std::sync::Arc;

use crate::arena::{ArenaConfig, ArenaOffset, VolatileArena};
use crate::inject::{FaultInjector, Rule, Trigger};
use crate::probe::{Capability, Probe};
use crate::sys::{Call, Errno, Sys, PAGE_SIZE};
use std::sync::{OnceLock, Weak};

/// A write-tracking arena whose kernel switches write-protected population on right after
/// its first `UFFDIO_COPY` (as barrier-free marking does when it starts while a refill is
/// populating), with `rules` on top.
fn tracking_arena(rules: Vec<Rule>) -> Option<(Arc<VolatileArena>, Arc<FaultInjector>)> {
    if !Probe::run().supports(Capability::WpAsync) {
        eprintln!("SKIPPED: write tracking unavailable here");
        return None;
    }
    let cell: Arc<OnceLock<Weak<VolatileArena>>> = Arc::new(OnceLock::new());
    let c = cell.clone();
    // SAFETY: the hook does not issue a COPY, and this arena's faults are never resolved in
    // signal context (the test populates; no mutator faults on it).
    let inj = Arc::new(
        unsafe {
            FaultInjector::new(rules, 3).after_call(
                Call::UffdCopy,
                Arc::new(move || {
                    if let Some(a) = c.get().and_then(Weak::upgrade) {
                        a.set_populate_protected(true).unwrap();
                    }
                }),
            )
        }
        .disarmed(),
    );
    let arena = Arc::new(
        VolatileArena::new(
            ArenaConfig::new(64 * PAGE_SIZE)
                .write_tracking(true)
                .sys(Sys::new(inj.clone())),
        )
        .unwrap(),
    );
    cell.set(Arc::downgrade(&arena)).unwrap();
    inj.arm();
    Some((arena, inj))
}

#[test]
fn pages_populated_while_tracking_starts_end_up_protected() {
    let Some((arena, inj)) = tracking_arena(vec![Rule::new(
        Call::UffdWriteprotect,
        Errno::EAGAIN,
        Trigger::Nth(1),
    )]) else {
        return;
    };
    arena.populate(ArenaOffset(0), 4 * PAGE_SIZE).unwrap();
    // The COPY mapped them writable; the flag flipped meanwhile, so populate protected them
    // (after one EAGAIN, retried).
    assert_eq!(inj.injected(Call::UffdWriteprotect), 1);
    assert_eq!(inj.seen(Call::UffdWriteprotect), 2);
    for p in 0..4 {
        assert!(
            crate::pagemap::uffd_wp_bit(arena.base() + p * PAGE_SIZE),
            "page {p}"
        );
    }
    // From now on population is protected at once (COPY mode WP): no further protect.
    arena
        .populate(ArenaOffset(8 * PAGE_SIZE), PAGE_SIZE)
        .unwrap();
    assert_eq!(inj.seen(Call::UffdWriteprotect), 2);
    assert!(crate::pagemap::uffd_wp_bit(arena.base() + 8 * PAGE_SIZE));
}

#[test]
fn a_failing_late_protection_is_an_error() {
    let Some((arena, inj)) = tracking_arena(vec![Rule::new(
        Call::UffdWriteprotect,
        Errno::EIO,
        Trigger::Always,
    )]) else {
        return;
    };
    assert!(arena.populate(ArenaOffset(0), PAGE_SIZE).is_err());
    assert_eq!(inj.injected(Call::UffdWriteprotect), 1);
}

#[test]
fn without_tracking_nothing_is_protected() {
    if !Probe::run().supports(Capability::WpAsync) {
        return;
    }
    let arena = VolatileArena::new(ArenaConfig::new(16 * PAGE_SIZE).write_tracking(true)).unwrap();
    arena.populate(ArenaOffset(0), PAGE_SIZE).unwrap();
    assert!(!crate::pagemap::uffd_wp_bit(arena.base()));
}

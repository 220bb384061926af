//! Handler-thread fault delivery: a `FaultReader` thread resolves the faults of an arena opened
//! without the SIGBUS feature, and the faulting threads continue with the right contents.
//!
//! Invariant: the reader is stopped (joined) before the arena is dropped.

mod common;

use common::*;
use core::sync::atomic::{AtomicU64, Ordering};
use faultline_heap::arena::{ArenaConfig, FaultDelivery, VolatileArena};
use faultline_heap::fault::reader::FaultReader;
use faultline_heap::uffd::UffdEvent;
use faultline_heap::PAGE_SIZE;
use std::sync::Arc;

#[test]
fn handler_thread_resolves_faults() {
    if !uffd_available() {
        return;
    }
    const PAGES: usize = 128;
    let arena = Arc::new(
        VolatileArena::new(ArenaConfig::new(PAGES * PAGE_SIZE).delivery(FaultDelivery::Thread))
            .unwrap(),
    );
    let resolved = Arc::new(AtomicU64::new(0));
    let (a2, r2) = (arena.clone(), resolved.clone());
    let pattern: Vec<u8> = (0..PAGE_SIZE).map(|i| (i % 13) as u8).collect();
    let mut reader = FaultReader::spawn(
        arena.uffd().unwrap().clone(),
        "faultline-test-reader",
        move |ev| {
            if let UffdEvent::PageFault { address, .. } = *ev {
                let off = (address - a2.base()) & !(PAGE_SIZE - 1);
                // SAFETY: `pattern` is a readable page. COPY wakes the faulting thread; if another
                // fault on the same page was already resolved, the arena reports AlreadyPresent
                // and we wake explicitly.
                match unsafe { a2.resolve_copy(off, pattern.as_ptr(), PAGE_SIZE) } {
                    Ok(faultline_heap::Resolution::Mapped) => {}
                    Ok(faultline_heap::Resolution::AlreadyPresent) => {
                        a2.wake(off, PAGE_SIZE).unwrap()
                    }
                    Err(e) => panic!("resolve failed: {e}"),
                }
                r2.fetch_add(1, Ordering::Relaxed);
            }
        },
    )
    .unwrap();
    let base = arena.base();
    std::thread::scope(|s| {
        for t in 0..3usize {
            s.spawn(move || {
                for p in 0..PAGES {
                    let off = (p * 7 + t * 3) % PAGE_SIZE;
                    assert_eq!(read_byte(base + p * PAGE_SIZE + off), (off % 13) as u8);
                }
            });
        }
    });
    assert!(resolved.load(Ordering::Relaxed) >= PAGES as u64);
    assert!(reader.events() >= PAGES as u64);
    reader.stop();
}

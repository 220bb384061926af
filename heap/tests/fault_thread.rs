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
use faultline_heap::ArenaOffset;
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
                match unsafe { a2.resolve_copy(ArenaOffset(off), pattern.as_ptr(), PAGE_SIZE) } {
                    Ok(faultline_heap::Resolution::Mapped) => {}
                    Ok(faultline_heap::Resolution::AlreadyPresent) => {
                        a2.wake(ArenaOffset(off), PAGE_SIZE).unwrap()
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

#[test]
fn a_reader_whose_descriptor_fails_records_why() {
    if !uffd_available() {
        return;
    }
    use faultline_heap::inject::{FaultInjector, Rule, Trigger};
    use faultline_heap::sys::{Call, Errno, Sys};
    let inj = Arc::new(FaultInjector::new(
        vec![Rule::new(Call::Read, Errno::EIO, Trigger::Always)],
        1,
    ));
    let arena = Arc::new(
        VolatileArena::new(
            ArenaConfig::new(PAGE_SIZE)
                .delivery(FaultDelivery::Thread)
                .sys(Sys::new(inj.clone())),
        )
        .unwrap(),
    );
    let mut reader = FaultReader::spawn(
        arena.uffd().unwrap().clone(),
        "faultline-test-reader-err",
        |_| {},
    )
    .unwrap();
    assert_eq!(reader.error(), None);
    // A fault makes the descriptor readable; the (injected) read failure must be recorded.
    let base = arena.base();
    let toucher = std::thread::spawn(move || read_byte(base));
    for _ in 0..5000 {
        if reader.error().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(
        reader.error().is_some_and(|e| e.contains("EIO")),
        "{:?}",
        reader.error()
    );
    assert!(inj.injected(Call::Read) >= 1);
    // Nobody serves faults now: resolve the waiting toucher by hand (COPY wakes it).
    arena.populate(ArenaOffset(0), PAGE_SIZE).unwrap();
    assert_eq!(toucher.join().unwrap(), 0);
    reader.stop();
}

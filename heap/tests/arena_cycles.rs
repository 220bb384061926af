//! The volatile arena's promise: simulated GC cycles (populate a half, fill the other half's
//! pages by COPY and by MOVE, or by CONTINUE for a memfd arena, release the first half, swap)
//! make exactly one REGISTER, no UNREGISTER, no mmap-family call after creation, and leave the
//! VMA count of the arena unchanged.
//!
//! Invariant: the cycle count defaults to 10,000 (1,000 for the memfd variant) and is multiplied
//! by 100 under `FAULTLINE_STRESS=long`.

mod common;

use common::*;
use faultline_heap::arena::{ArenaConfig, Backing, FaultDelivery, VolatileArena};
use faultline_heap::sys::Call;
use faultline_heap::ArenaOffset;
use faultline_heap::PAGE_SIZE;

fn scale(n: usize) -> usize {
    if std::env::var("FAULTLINE_STRESS").as_deref() == Ok("long") {
        n * 100
    } else {
        n
    }
}

const HALF_PAGES: usize = 32;

#[test]
fn ten_thousand_cycles_without_vma_changes() {
    if !uffd_available() {
        return;
    }
    let half = HALF_PAGES * PAGE_SIZE;
    let a = VolatileArena::new(ArenaConfig::new(2 * half).delivery(FaultDelivery::Thread)).unwrap();
    assert!(
        a.can_move(),
        "this kernel offers MOVE (checked by the probe)"
    );
    let vmas = a.vmas_at_creation();
    assert_eq!(vmas, 1, "one VMA covers the arena");
    let stats0 = a.stats();
    assert_eq!(stats0.registers, 1);
    let mut buf = vec![0u8; PAGE_SIZE];
    let cycles = scale(10_000);
    for cycle in 0..cycles {
        let (from, to) = if cycle % 2 == 0 { (0, half) } else { (half, 0) };
        // "Allocation" into the current half.
        a.populate(ArenaOffset(from), half).unwrap();
        for p in 0..HALF_PAGES {
            // SAFETY: the page was just populated.
            unsafe {
                ((a.base() + from + p * PAGE_SIZE) as *mut u64).write((cycle * 1000 + p) as u64)
            };
        }
        // "Compaction" into the other half: even pages by COPY, odd pages by MOVE.
        for p in 0..HALF_PAGES {
            let (src, dst) = (from + p * PAGE_SIZE, to + p * PAGE_SIZE);
            if p % 2 == 0 {
                // SAFETY: the source page is present.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        (a.base() + src) as *const u8,
                        buf.as_mut_ptr(),
                        PAGE_SIZE,
                    )
                };
                // SAFETY: `buf` is a readable page.
                unsafe { a.resolve_copy(ArenaOffset(dst), buf.as_ptr(), PAGE_SIZE) }.unwrap();
            } else {
                // SAFETY: nothing reads the source page after the move.
                unsafe { a.resolve_move(ArenaOffset(dst), ArenaOffset(src), PAGE_SIZE, false) }
                    .unwrap();
            }
        }
        for p in 0..HALF_PAGES {
            // SAFETY: every destination page was just filled.
            let v = unsafe { ((a.base() + to + p * PAGE_SIZE) as *const u64).read() };
            assert_eq!(v, (cycle * 1000 + p) as u64, "cycle {cycle} page {p}");
        }
        // Release the old half (its moved-out pages are already holes) and swap.
        a.release(ArenaOffset(from), half).unwrap();
        if cycle % 500 == 0 {
            assert_eq!(a.vma_count(), vmas, "VMA count changed at cycle {cycle}");
        }
        // Leave the destination half empty for the next cycle's compaction target.
        a.release(ArenaOffset(to), half).unwrap();
    }
    let s = a.stats();
    assert_eq!(s.registers, 1);
    assert_eq!(s.unregisters, 0);
    assert_eq!(s.mmap_family_since_creation, 0);
    assert_eq!(s.vmas, vmas);
    let c = s.calls_since_creation;
    assert_eq!(c.get(Call::UffdMove), (cycles * HALF_PAGES / 2) as u64);
    assert!(c.get(Call::UffdCopy) >= (cycles * (HALF_PAGES / 2 + 1)) as u64);
    assert_eq!(c.get(Call::Madvise), (cycles * 2) as u64);
}

#[test]
fn memfd_cycles_by_continue_without_vma_changes() {
    if !uffd_available() {
        return;
    }
    let half = HALF_PAGES * PAGE_SIZE;
    let a = VolatileArena::new(
        ArenaConfig::new(2 * half)
            .backing(Backing::Memfd)
            .delivery(FaultDelivery::Thread),
    )
    .unwrap();
    let vmas = a.vmas_at_creation();
    assert_eq!(vmas, 2, "the registered view and the fill view");
    let cycles = scale(1_000);
    for cycle in 0..cycles {
        let (from, to) = if cycle % 2 == 0 { (0, half) } else { (half, 0) };
        a.populate(ArenaOffset(from), half).unwrap();
        for p in 0..HALF_PAGES {
            // SAFETY: populated above.
            unsafe { ((a.base() + from + p * PAGE_SIZE) as *mut u64).write((cycle + p) as u64) };
        }
        for p in 0..HALF_PAGES {
            // Fill through the unregistered view, then map with CONTINUE.
            let view = a.fill_view_addr(ArenaOffset(to + p * PAGE_SIZE)).unwrap();
            // SAFETY: source present; the fill view is writable and unregistered.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    (a.base() + from + p * PAGE_SIZE) as *const u8,
                    view as *mut u8,
                    PAGE_SIZE,
                )
            };
        }
        a.resolve_continue(ArenaOffset(to), half).unwrap();
        for p in 0..HALF_PAGES {
            // SAFETY: mapped by CONTINUE.
            let v = unsafe { ((a.base() + to + p * PAGE_SIZE) as *const u64).read() };
            assert_eq!(v, (cycle + p) as u64);
        }
        a.release(ArenaOffset(from), half).unwrap();
        a.release(ArenaOffset(to), half).unwrap();
        assert!(!present(a.base() + to));
    }
    let s = a.stats();
    assert_eq!(
        (s.registers, s.unregisters, s.mmap_family_since_creation),
        (1, 0, 0)
    );
    assert_eq!(s.vmas, vmas);
}

#[test]
fn misuse_is_an_error_not_undefined_behaviour() {
    if !uffd_available() {
        return;
    }
    use faultline_heap::arena::ArenaError;
    let a = VolatileArena::new(ArenaConfig::new(4 * PAGE_SIZE).delivery(FaultDelivery::Thread))
        .unwrap();
    assert!(matches!(
        a.populate(ArenaOffset(PAGE_SIZE * 3), PAGE_SIZE * 2),
        Err(ArenaError::OutOfRange { .. })
    ));
    assert!(matches!(
        a.populate(ArenaOffset(usize::MAX - PAGE_SIZE + 1), PAGE_SIZE),
        Err(ArenaError::OutOfRange { .. })
    ));
    assert!(matches!(
        a.populate(ArenaOffset(1), PAGE_SIZE),
        Err(ArenaError::Unaligned { .. })
    ));
    assert!(matches!(
        a.release(ArenaOffset(0), 0),
        Err(ArenaError::Unaligned { .. })
    ));
    assert!(matches!(
        a.release(ArenaOffset(0), 100),
        Err(ArenaError::Unaligned { .. })
    ));
    // SAFETY: rejected before any memory is touched.
    let r = unsafe { a.resolve_move(ArenaOffset(0), ArenaOffset(8 * PAGE_SIZE), PAGE_SIZE, true) };
    assert!(matches!(r, Err(ArenaError::OutOfRange { .. })));
    assert!(matches!(
        a.fill_view_addr(ArenaOffset(0)),
        Err(ArenaError::NeedsMemfd(_))
    ));
    assert!(
        matches!(
            a.write_protect(ArenaOffset(0), PAGE_SIZE, true),
            Err(ArenaError::Uffd(_))
        ),
        "WP not negotiated"
    );
    assert!(matches!(
        VolatileArena::new(ArenaConfig::new(0)),
        Err(ArenaError::Config(_))
    ));
    // Nothing above reached the kernel's mapping calls.
    assert_eq!(a.stats().mmap_family_since_creation, 0);
    // ZEROPAGE population leaves readable zero pages.
    a.populate_with(
        ArenaOffset(0),
        PAGE_SIZE,
        faultline_heap::PopulateMethod::ZeroPage,
    )
    .unwrap();
    assert_eq!(read_byte(a.base() + 5), 0);
    // Populating a range that is partly present keeps the present page and fills the rest.
    // SAFETY: page 0 is present (zero page; the write takes a kernel CoW fault).
    unsafe { (a.base() as *mut u8).write_volatile(7) };
    assert_eq!(
        a.populate(ArenaOffset(0), 3 * PAGE_SIZE).unwrap(),
        faultline_heap::Resolution::AlreadyPresent
    );
    assert_eq!(read_byte(a.base()), 7);
    assert!(present(a.base() + 2 * PAGE_SIZE));
}

#[test]
fn failed_creation_releases_what_it_made() {
    if !uffd_available() {
        return;
    }
    use faultline_heap::inject::{FaultInjector, Rule, Trigger};
    use faultline_heap::sys::{Errno, Sys};
    use std::sync::Arc;
    for (call, errno) in [
        (Call::Userfaultfd, Errno::EPERM),
        (Call::UffdApi, Errno::EINVAL),
        (Call::Mmap, Errno::ENOMEM),
        (Call::Madvise, Errno::EINVAL),
        (Call::UffdRegister, Errno::EBUSY),
        (Call::MemfdCreate, Errno::EMFILE),
        (Call::Ftruncate, Errno::ENOSPC),
    ] {
        let inj = Arc::new(FaultInjector::new(
            vec![Rule::new(call, errno, Trigger::Always)],
            1,
        ));
        let sys = Sys::new(inj.clone());
        let backing = if matches!(call, Call::MemfdCreate | Call::Ftruncate) {
            Backing::Memfd
        } else {
            Backing::Anonymous
        };
        let r = VolatileArena::new(
            ArenaConfig::new(64 * PAGE_SIZE)
                .backing(backing)
                .delivery(FaultDelivery::Thread)
                .sys(sys),
        );
        assert!(r.is_err(), "{call:?} failure must fail creation");
        assert!(inj.injected(call) >= 1, "{call:?} was injected");
        let msg = r.unwrap_err().to_string();
        assert!(!msg.is_empty());
        // Exact, whatever other tests do meanwhile: every mapping made through this kernel
        // was unmapped, and every descriptor opened was closed.
        let ok = |c: Call| inj.seen(c) - inj.injected(c);
        assert_eq!(
            ok(Call::Mmap),
            inj.seen(Call::Munmap),
            "{call:?}: a mapping leaked ({msg})"
        );
        let opened = ok(Call::Userfaultfd) + ok(Call::MemfdCreate) + ok(Call::Open);
        assert_eq!(
            opened,
            inj.seen(Call::Close),
            "{call:?}: a descriptor leaked ({msg})"
        );
    }
}

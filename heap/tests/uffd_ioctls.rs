//! Every userfaultfd ioctl on real memory, with its error paths: one scenario per test.
//!
//! Invariant: each test opens its own descriptor and maps its own memory; nothing is shared
//! between tests, so they may run in parallel.

mod common;

use common::*;
use faultline_heap::inject::{FaultInjector, Rule, Trigger};
use faultline_heap::sys::{Call, Errno, Sys, PAGE_SIZE};
use faultline_heap::uffd::{
    ContinueMode, CopyMode, ErrorKind, Feature, Features, IoctlKind, MoveMode, RegisterMode, Uffd,
    UffdOptions,
};
use faultline_heap::ArenaOffset;
use std::sync::Arc;

fn open(features: &[Feature]) -> Uffd {
    Uffd::open(
        &Sys::real(),
        UffdOptions {
            required: Features::of(features),
            nonblocking: true,
            ..Default::default()
        },
    )
    .expect("open userfaultfd")
}

#[test]
fn api_offers_and_negotiates_features() {
    if !uffd_available() {
        return;
    }
    let (offered, ioctls, _) = Uffd::available(&Sys::real()).unwrap();
    assert!(ioctls.contains(IoctlKind::Register));
    assert!(offered.contains(Feature::Sigbus));
    let u = open(&[Feature::Sigbus]);
    assert!(u.features().contains(Feature::Sigbus));
    assert!(
        !u.features().contains(Feature::Move),
        "MOVE was not requested"
    );
    // The API handshake happens once per descriptor: a second UFFDIO_API is refused.
    let mut api = faultline_heap::uffd::abi::uffdio_api {
        api: faultline_heap::uffd::abi::UFFD_API,
        ..Default::default()
    };
    // SAFETY: a live uffdio_api for UFFDIO_API on our own descriptor.
    let r = unsafe {
        libc::ioctl(
            u.as_raw_fd(),
            faultline_heap::uffd::abi::req::API as libc::Ioctl,
            &mut api,
        )
    };
    assert_eq!(r, -1);
    assert_eq!(Errno::last(), Errno::EINVAL);
}

#[test]
fn register_returns_range_ioctls_and_rejects_bad_ranges() {
    if !uffd_available() {
        return;
    }
    let u = open(&[Feature::Move]);
    let m = Scratch::new(4);
    // SAFETY: the test's own scratch mapping (or a range the call refuses).
    let ioctls = unsafe { u.register(m.base, m.len, RegisterMode::MISSING) }.unwrap();
    assert!(ioctls.contains(IoctlKind::Copy));
    assert!(ioctls.contains(IoctlKind::Zeropage));
    assert!(ioctls.contains(IoctlKind::Move));
    assert!(ioctls.contains(IoctlKind::Wake));
    // Unaligned and empty ranges never reach the kernel.
    let before = u.sys().counters().get(Call::UffdRegister);
    // SAFETY: the test's own scratch mapping (or a range the call refuses).
    let e = unsafe { u.register(m.base + 1, PAGE_SIZE, RegisterMode::MISSING) }.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Unaligned { .. }));
    // SAFETY: the test's own scratch mapping (or a range the call refuses).
    let e = unsafe { u.register(m.base, 0, RegisterMode::MISSING) }.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Unaligned { .. }));
    // SAFETY: the test's own scratch mapping (or a range the call refuses).
    let e = unsafe {
        u.register(
            usize::MAX - PAGE_SIZE + 1,
            PAGE_SIZE * 2,
            RegisterMode::MISSING,
        )
    };
    assert!(matches!(e.unwrap_err().kind, ErrorKind::Unaligned { .. }));
    assert_eq!(u.sys().counters().get(Call::UffdRegister), before);
    // WP mode needs the WP feature negotiated.
    // SAFETY: the test's own scratch mapping (or a range the call refuses).
    let e = unsafe { u.register(m.base, m.len, RegisterMode::WP) }.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotNegotiated(Feature::PagefaultFlagWp));
    // An unmapped range is refused by the kernel. (Page 1 lies below vm.mmap_min_addr, so no
    // other test's mapping can ever land there.)
    // SAFETY: the test's own scratch mapping (or a range the call refuses).
    let e = unsafe { u.register(PAGE_SIZE, PAGE_SIZE, RegisterMode::MISSING) }.unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Invalid | ErrorKind::NoMemory),
        "{e}"
    );
    u.unregister(m.base, m.len).unwrap();
}

#[test]
fn copy_maps_pages_and_copy_onto_present_page_is_eexist() {
    if !uffd_available() {
        return;
    }
    let u = open(&[]);
    let m = Scratch::new(4);
    // SAFETY: the test's own scratch mapping (or a range the call refuses).
    unsafe { u.register(m.base, m.len, RegisterMode::MISSING) }.unwrap();
    let src = vec![0xabu8; 2 * PAGE_SIZE];
    // SAFETY: `src` is readable for two pages.
    let n = unsafe { u.copy(m.base, src.as_ptr(), 2 * PAGE_SIZE, CopyMode::NONE) }.unwrap();
    assert_eq!(n, 2 * PAGE_SIZE);
    assert!(present(m.page(0)) && present(m.page(1)) && !present(m.page(2)));
    assert_eq!(read_byte(m.page(1) + 17), 0xab);
    // SAFETY: as above.
    let e = unsafe { u.copy(m.base, src.as_ptr(), PAGE_SIZE, CopyMode::DONTWAKE) }.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Exists);
    // A range that starts absent and runs into a present page: the kernel copies the absent
    // part and reports it as a partial count, never as a huge number.
    let m2 = Scratch::new(3);
    // SAFETY: the test's own scratch mapping (or a range the call refuses).
    unsafe { u.register(m2.base, m2.len, RegisterMode::MISSING) }.unwrap();
    // SAFETY: as above.
    unsafe { u.copy(m2.page(1), src.as_ptr(), PAGE_SIZE, CopyMode::NONE) }.unwrap();
    let big = vec![1u8; 3 * PAGE_SIZE];
    // SAFETY: `big` is readable for three pages.
    let e = unsafe { u.copy(m2.base, big.as_ptr(), 3 * PAGE_SIZE, CopyMode::NONE) }.unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Again { done } if done == PAGE_SIZE)
            || e.kind == ErrorKind::Exists,
        "{e:?}"
    );
    // COPY with WP needs the WP feature.
    // SAFETY: as above.
    let e = unsafe { u.copy(m.page(3), src.as_ptr(), PAGE_SIZE, CopyMode::WP) }.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotNegotiated(Feature::PagefaultFlagWp));
}

#[test]
fn ops_on_an_unregistered_range_fail() {
    if !uffd_available() {
        return;
    }
    let u = open(&[Feature::Move]);
    let m = Scratch::new(2);
    let src = page_of(1);
    // SAFETY: `src` is readable for a page.
    let e = unsafe { u.copy(m.base, src.as_ptr(), PAGE_SIZE, CopyMode::NONE) }.unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::NoEntry | ErrorKind::Invalid),
        "{e}"
    );
    let e = u.zeropage(m.base, PAGE_SIZE, false).unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::NoEntry | ErrorKind::Invalid),
        "{e}"
    );
    let e = u.unregister(m.base, m.len);
    // Unregistering a never-registered range is a no-op for the kernel.
    assert!(e.is_ok(), "{e:?}");
    // SAFETY: the scratch pages are ours.
    let e = unsafe { u.move_pages(m.page(1), m.page(0), PAGE_SIZE, MoveMode::NONE) }.unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::NoEntry | ErrorKind::Invalid),
        "{e}"
    );
}

#[test]
fn zeropage_maps_zeroes() {
    if !uffd_available() {
        return;
    }
    let u = open(&[]);
    let m = Scratch::new(2);
    // SAFETY: the test's own scratch mapping (or a range the call refuses).
    unsafe { u.register(m.base, m.len, RegisterMode::MISSING) }.unwrap();
    assert_eq!(u.zeropage(m.base, m.len, true).unwrap(), m.len);
    assert!(present(m.page(0)));
    assert_eq!(read_byte(m.page(1) + 100), 0);
    let e = u.zeropage(m.base, PAGE_SIZE, false).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Exists);
}

#[test]
fn move_moves_pages_and_reports_holes() {
    if !uffd_available() {
        return;
    }
    let u = open(&[Feature::Move]);
    let m = Scratch::new(8);
    // SAFETY: the test's own scratch mapping (or a range the call refuses).
    unsafe { u.register(m.base, m.len, RegisterMode::MISSING) }.unwrap();
    let src = page_of(0x42);
    // Source: page 0 present, page 1 a hole.
    // SAFETY: `src` is readable for a page.
    unsafe { u.copy(m.page(0), src.as_ptr(), PAGE_SIZE, CopyMode::NONE) }.unwrap();
    // SAFETY: page 0 is ours; nothing reads it at the source afterwards.
    let n = unsafe { u.move_pages(m.page(4), m.page(0), PAGE_SIZE, MoveMode::NONE) }.unwrap();
    assert_eq!(n, PAGE_SIZE);
    assert!(!present(m.page(0)) && present(m.page(4)));
    assert_eq!(read_byte(m.page(4) + 9), 0x42);
    // A hole without ALLOW_SRC_HOLES: ENOENT.
    // SAFETY: as above.
    let e = unsafe { u.move_pages(m.page(5), m.page(1), PAGE_SIZE, MoveMode::NONE) }.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NoEntry);
    // With ALLOW_SRC_HOLES the hole is skipped and counted as done.
    // SAFETY: as above.
    let n = unsafe { u.move_pages(m.page(5), m.page(1), PAGE_SIZE, MoveMode::ALLOW_SRC_HOLES) }
        .unwrap();
    assert_eq!(n, PAGE_SIZE);
    assert!(!present(m.page(5)));
    // Onto a present destination: EEXIST.
    // SAFETY: as above.
    unsafe { u.copy(m.page(2), src.as_ptr(), PAGE_SIZE, CopyMode::NONE) }.unwrap();
    // SAFETY: as above.
    let e = unsafe { u.move_pages(m.page(4), m.page(2), PAGE_SIZE, MoveMode::NONE) }.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Exists);
    // Unaligned source.
    // SAFETY: rejected before the kernel.
    let e =
        unsafe { u.move_pages(m.page(6), m.page(2) + 8, PAGE_SIZE, MoveMode::NONE) }.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Unaligned { .. }));
}

#[test]
fn move_of_a_page_shared_with_a_forked_child_is_ebusy() {
    if !uffd_available() {
        return;
    }
    let u = open(&[Feature::Move]);
    let m = Scratch::new(2);
    // SAFETY: the test's own scratch mapping (or a range the call refuses).
    unsafe { u.register(m.base, m.len, RegisterMode::MISSING) }.unwrap();
    let src = page_of(7);
    // SAFETY: `src` is readable for a page.
    unsafe { u.copy(m.page(0), src.as_ptr(), PAGE_SIZE, CopyMode::NONE) }.unwrap();
    // After fork the page is mapped by two processes: not anon-exclusive, so MOVE refuses.
    let (rfd, wfd) = nix::unistd::pipe().unwrap();
    // SAFETY: the child only blocks on a read and exits; it runs no Rust code needing locks.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let mut b = [0u8; 1];
        // SAFETY: plain syscalls in the child.
        unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&rfd),
                b.as_mut_ptr().cast(),
                1,
            );
            libc::_exit(0);
        }
    }
    // SAFETY: page 0 is ours.
    let r = unsafe { u.move_pages(m.page(1), m.page(0), PAGE_SIZE, MoveMode::NONE) };
    nix::unistd::write(&wfd, &[1]).unwrap();
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r.unwrap_err().kind, ErrorKind::Busy);
}

#[test]
fn continue_maps_the_page_cache_page_of_a_memfd() {
    if !uffd_available() {
        return;
    }
    use faultline_heap::arena::{ArenaConfig, Backing, FaultDelivery, VolatileArena};
    let a = VolatileArena::new(
        ArenaConfig::new(4 * PAGE_SIZE)
            .backing(Backing::Memfd)
            .delivery(FaultDelivery::Thread),
    )
    .unwrap();
    let view = a.fill_view_addr(ArenaOffset(PAGE_SIZE)).unwrap();
    // SAFETY: the fill view is an unregistered mapping of the arena's memfd.
    unsafe { core::ptr::write_bytes(view as *mut u8, 0x33, PAGE_SIZE) };
    a.resolve_continue(ArenaOffset(PAGE_SIZE), PAGE_SIZE)
        .unwrap();
    assert_eq!(read_byte(a.base() + PAGE_SIZE + 5), 0x33);
    // CONTINUE where the page cache has no page: the kernel refuses (EFAULT).
    let e =
        a.uffd()
            .unwrap()
            .continue_range(a.base() + 2 * PAGE_SIZE, PAGE_SIZE, ContinueMode::NONE);
    assert!(
        matches!(
            e.unwrap_err().kind,
            ErrorKind::BadAddress | ErrorKind::NoEntry
        ),
        "CONTINUE without a page-cache page must fail"
    );
    // CONTINUE onto a mapped page: EEXIST.
    let e = a
        .uffd()
        .unwrap()
        .continue_range(a.base() + PAGE_SIZE, PAGE_SIZE, ContinueMode::NONE);
    assert_eq!(e.unwrap_err().kind, ErrorKind::Exists);
    // Hole punch removes it from both views: the next CONTINUE has nothing to map.
    a.release(ArenaOffset(PAGE_SIZE), PAGE_SIZE).unwrap();
    assert!(!present(a.base() + PAGE_SIZE));
    // CONTINUE on an anonymous arena is refused before the kernel.
    let anon =
        VolatileArena::new(ArenaConfig::new(PAGE_SIZE).delivery(FaultDelivery::Thread)).unwrap();
    assert!(anon.resolve_continue(ArenaOffset(0), PAGE_SIZE).is_err());
    let e = open(&[]).continue_range(anon.base(), PAGE_SIZE, ContinueMode::NONE);
    assert_eq!(
        e.unwrap_err().kind,
        ErrorKind::NotNegotiated(Feature::MinorShmem)
    );
}

#[test]
fn writeprotect_with_wp_async_and_pagemap_scan_track_writes() {
    if !uffd_available() {
        return;
    }
    use faultline_heap::pagemap::PagemapScanner;
    let u = open(&[
        Feature::PagefaultFlagWp,
        Feature::WpAsync,
        Feature::WpUnpopulated,
    ]);
    let m = Scratch::new(8);
    // Make the pages present first (unregistered), then arm write protection.
    // SAFETY: our own mapping.
    unsafe { core::ptr::write_bytes(m.base as *mut u8, 1, m.len) };
    // SAFETY: the test's own scratch mapping (or a range the call refuses).
    unsafe { u.register(m.base, m.len, RegisterMode::WP) }.unwrap();
    u.writeprotect(m.base, m.len, true, false).unwrap();
    let scan = PagemapScanner::open(&Sys::real()).unwrap();
    // SAFETY: (every scan below) the test's own mapping: no one else tracks its writes.
    let harvest = |f: &mut dyn FnMut(usize, usize)| unsafe {
        scan.written_pages(m.base, m.len, true, &mut *f)
    };
    let mut seen = Vec::new();
    assert_eq!(harvest(&mut |s, l| seen.push((s, l))).unwrap(), 0);
    // Writes resolve inside the kernel (no fault delivered), and are reported once.
    // SAFETY: present pages of our mapping.
    unsafe {
        (m.page(3) as *mut u8).write_volatile(9);
        (m.page(4) as *mut u8).write_volatile(9);
        (m.page(7) as *mut u8).write_volatile(9);
    }
    let n = harvest(&mut |s, l| seen.push((s, l))).unwrap();
    assert_eq!(n, 3);
    assert_eq!(
        seen,
        vec![(m.page(3), 2 * PAGE_SIZE), (m.page(7), PAGE_SIZE)]
    );
    // Re-protected by the scan: nothing written since.
    assert_eq!(harvest(&mut |_, _| {}).unwrap(), 0);
    // Clearing protection then writing: the write is not tracked, the scan of a range whose
    // pages are no longer WP-async armed still works.
    u.writeprotect(m.base, m.len, false, false).unwrap();
    // Unaligned range rejected.
    assert!(u.writeprotect(m.base + 1, PAGE_SIZE, true, false).is_err());
    // Without the WP feature, WRITEPROTECT is refused before the kernel.
    let plain = open(&[]);
    assert_eq!(
        plain
            .writeprotect(m.base, PAGE_SIZE, true, false)
            .unwrap_err()
            .kind,
        ErrorKind::NotNegotiated(Feature::PagefaultFlagWp)
    );
}

#[test]
fn wake_and_poison() {
    if !uffd_available() {
        return;
    }
    let u = open(&[Feature::Poison]);
    let m = Scratch::new(2);
    // SAFETY: the test's own scratch mapping (or a range the call refuses).
    unsafe { u.register(m.base, m.len, RegisterMode::MISSING) }.unwrap();
    // WAKE with nobody waiting succeeds.
    u.wake(m.base, m.len).unwrap();
    // POISON a missing page installs a marker (touching it would raise SIGBUS with a
    // memory-error code, which the fault handler never claims). Fills treat a marker like an
    // empty PTE, so a COPY may replace it; POISON onto a present page is EEXIST.
    assert_eq!(u.poison(m.base, PAGE_SIZE, false).unwrap(), PAGE_SIZE);
    assert!(!present(m.base));
    let src = page_of(1);
    // SAFETY: `src` is readable for a page.
    unsafe { u.copy(m.base, src.as_ptr(), PAGE_SIZE, CopyMode::NONE) }.unwrap();
    assert_eq!(read_byte(m.base), 1);
    assert_eq!(
        u.poison(m.base, PAGE_SIZE, false).unwrap_err().kind,
        ErrorKind::Exists
    );
    // Without the feature: refused before the kernel.
    assert_eq!(
        open(&[])
            .poison(m.page(1), PAGE_SIZE, false)
            .unwrap_err()
            .kind,
        ErrorKind::NotNegotiated(Feature::Poison)
    );
}

#[test]
fn closed_descriptor_is_an_error_not_ub() {
    if !uffd_available() {
        return;
    }
    let u = open(&[]);
    let m = Scratch::new(1);
    u.close().unwrap();
    assert_eq!(u.close().unwrap_err().kind, ErrorKind::Closed);
    assert_eq!(
        // SAFETY: the test's own scratch mapping (or a range the call refuses).
        unsafe { u.register(m.base, m.len, RegisterMode::MISSING) }
            .unwrap_err()
            .kind,
        ErrorKind::Closed
    );
    let src = page_of(0);
    // SAFETY: `src` is readable.
    let e = unsafe { u.copy(m.base, src.as_ptr(), PAGE_SIZE, CopyMode::NONE) }.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Closed);
    let mut evs = [faultline_heap::uffd::UffdEvent::Unknown(0); 2];
    assert_eq!(u.read_events(&mut evs).unwrap_err().kind, ErrorKind::Closed);
    // A descriptor closed behind the wrapper's back: the kernel says EBADF. In a forked
    // child, which has one thread: in this multi-threaded test process another test could
    // open a descriptor that reuses the number between the close and the ioctl.
    let u2 = open(&[]);
    // SAFETY: the child only closes a descriptor, makes one ioctl through the wrapper (no
    // allocation on its error path that could meet a lock held at the fork) and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: deliberately closing the wrapper's descriptor to test the error path.
        unsafe { libc::close(u2.as_raw_fd()) };
        let ok = matches!(
            // SAFETY: the test's own scratch mapping (or a range the call refuses).
            unsafe { u2.register(m.base, m.len, RegisterMode::MISSING) },
            Err(e) if e.kind == ErrorKind::BadDescriptor
        );
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "register on a closed descriptor did not fail with EBADF (status {status})"
    );
}

#[test]
fn injected_eagain_reports_the_partial_count_and_the_arena_retries() {
    if !uffd_available() {
        return;
    }
    use faultline_heap::arena::{ArenaConfig, FaultDelivery, VolatileArena};
    let inj = Arc::new(FaultInjector::new(
        vec![Rule::again_after(
            Call::UffdCopy,
            2 * PAGE_SIZE,
            Trigger::Nth(1),
        )],
        1,
    ));
    let sys = Sys::new(inj.clone());
    let u = Uffd::open(&sys, UffdOptions::default()).unwrap();
    let m = Scratch::new(4);
    // SAFETY: the test's own scratch mapping (or a range the call refuses).
    unsafe { u.register(m.base, m.len, RegisterMode::MISSING) }.unwrap();
    let src = vec![5u8; 4 * PAGE_SIZE];
    // SAFETY: `src` is readable for four pages.
    let e = unsafe { u.copy(m.base, src.as_ptr(), 4 * PAGE_SIZE, CopyMode::NONE) }.unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::Again {
            done: 2 * PAGE_SIZE
        }
    );
    assert!(
        present(m.page(1)) && !present(m.page(2)),
        "exactly 2 pages done"
    );
    // EAGAIN with nothing done: the count is 0, never the negated errno read as unsigned.
    let inj0 = Arc::new(FaultInjector::new(
        vec![Rule::new(Call::UffdCopy, Errno::EAGAIN, Trigger::Nth(1))],
        1,
    ));
    let u0 = Uffd::open(&Sys::new(inj0), UffdOptions::default()).unwrap();
    let m0 = Scratch::new(1);
    // SAFETY: the test's own scratch mapping (or a range the call refuses).
    unsafe { u0.register(m0.base, m0.len, RegisterMode::MISSING) }.unwrap();
    // SAFETY: as above.
    let e = unsafe { u0.copy(m0.base, src.as_ptr(), PAGE_SIZE, CopyMode::NONE) }.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Again { done: 0 });

    // The arena retries from where the kernel stopped and maps everything.
    let inj = Arc::new(
        FaultInjector::new(
            vec![
                Rule::again_after(Call::UffdCopy, PAGE_SIZE, Trigger::Nth(1)),
                Rule::new(Call::UffdCopy, Errno::EAGAIN, Trigger::Nth(2)),
            ],
            1,
        )
        .disarmed(),
    );
    let a = VolatileArena::new(
        ArenaConfig::new(4 * PAGE_SIZE)
            .delivery(FaultDelivery::Thread)
            .sys(Sys::new(inj.clone())),
    )
    .unwrap();
    inj.arm();
    // SAFETY: `src` is readable for four pages.
    unsafe { a.resolve_copy(ArenaOffset(0), src.as_ptr(), 4 * PAGE_SIZE) }.unwrap();
    assert_eq!(inj.injected(Call::UffdCopy), 2);
    for i in 0..4 {
        assert_eq!(read_byte(a.base() + i * PAGE_SIZE), 5);
    }
}

#[test]
fn injected_errors_surface_as_their_kinds() {
    if !uffd_available() {
        return;
    }
    use faultline_heap::arena::{ArenaConfig, ArenaError, FaultDelivery, VolatileArena};
    for (call, errno, kind) in [
        (Call::UffdCopy, Errno::ENOMEM, ErrorKind::NoMemory),
        (Call::UffdCopy, Errno::ESRCH, ErrorKind::NoProcess),
        (Call::UffdMove, Errno::EBUSY, ErrorKind::Busy),
        (Call::UffdZeropage, Errno::EFAULT, ErrorKind::BadAddress),
    ] {
        let inj = Arc::new(
            FaultInjector::new(vec![Rule::new(call, errno, Trigger::Always)], 3).disarmed(),
        );
        let a = VolatileArena::new(
            ArenaConfig::new(4 * PAGE_SIZE)
                .delivery(FaultDelivery::Thread)
                .sys(Sys::new(inj.clone())),
        )
        .unwrap();
        a.populate(ArenaOffset(PAGE_SIZE), PAGE_SIZE).unwrap();
        inj.arm();
        let src = page_of(1);
        let r = match call {
            // SAFETY: `src` readable.
            Call::UffdCopy => unsafe { a.resolve_copy(ArenaOffset(0), src.as_ptr(), PAGE_SIZE) },
            // SAFETY: page 1 is ours.
            Call::UffdMove => unsafe {
                a.resolve_move(ArenaOffset(0), ArenaOffset(PAGE_SIZE), PAGE_SIZE, false)
            },
            _ => a.populate_with(
                ArenaOffset(0),
                PAGE_SIZE,
                faultline_heap::PopulateMethod::ZeroPage,
            ),
        };
        match r {
            Err(ArenaError::Uffd(e)) => assert_eq!(e.kind, kind, "{call:?}"),
            other => panic!("{call:?}: expected {kind:?}, got {other:?}"),
        }
        assert!(!present(a.base()), "a failed resolve maps nothing");
    }
}

#[test]
fn handler_thread_reads_fault_messages() {
    if !uffd_available() {
        return;
    }
    use faultline_heap::uffd::UffdEvent;
    let u = Arc::new(open(&[Feature::ThreadId]));
    let m = Scratch::new(1);
    // SAFETY: the test's own scratch mapping (or a range the call refuses).
    unsafe { u.register(m.base, m.len, RegisterMode::MISSING) }.unwrap();
    let base = m.base;
    let toucher = std::thread::spawn(move || read_byte(base + 3));
    // Poll for the message (the toucher blocks in the kernel until we resolve).
    let mut evs = [UffdEvent::Unknown(0); 4];
    let mut got = None;
    for _ in 0..5000 {
        let n = u.read_events(&mut evs).unwrap();
        if n > 0 {
            got = Some(evs[0]);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    match got {
        Some(UffdEvent::PageFault {
            address,
            write,
            thread_id,
            ..
        }) => {
            assert_eq!(address & !(PAGE_SIZE - 1), base);
            assert!(!write);
            assert!(thread_id.is_some_and(|t| t > 0));
        }
        other => panic!("expected a page fault, got {other:?}"),
    }
    let src = page_of(0x77);
    // SAFETY: `src` readable; COPY also wakes the waiting toucher.
    unsafe { u.copy(base, src.as_ptr(), PAGE_SIZE, CopyMode::NONE) }.unwrap();
    assert_eq!(toucher.join().unwrap(), 0x77);
}

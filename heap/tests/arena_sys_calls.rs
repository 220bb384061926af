//! The arena's presence checks (`mincore`, a `pread` of `/proc/self/pagemap`) and its copy of a
//! memfd after fork (`lseek` SEEK_DATA / SEEK_HOLE, `pread`) go through [`Sys`]: they are
//! counted as [`Call::Mincore`], [`Call::Pread`] and [`Call::Lseek`], and each can be injected,
//! with the documented outcome asserted here:
//! - a failed presence check reads as "not mapped" (the caller retries or copies instead);
//! - in a forked child, a failed `lseek(SEEK_DATA)` (other than ENXIO, "no more data") or a
//!   failed `pread` makes `detach_after_fork` fail with a typed error naming the call; a failed
//!   `lseek(SEEK_HOLE)` copies to the end of the arena instead (holes read as zero), so the
//!   child's copy is still right.

mod common;
use common::{injector, uffd_or_skip};
use faultline_heap::arena::{ArenaConfig, ArenaError, Backing, FaultDelivery, VolatileArena};
use faultline_heap::inject::{FaultInjector, Rule, Trigger};
use faultline_heap::sys::{Call, Errno, Sys};
use faultline_heap::ArenaOffset;
use faultline_heap::PAGE_SIZE;
use std::sync::Arc;

fn arena(backing: Backing, pages: usize, inj: &Arc<FaultInjector>) -> VolatileArena {
    VolatileArena::new(
        ArenaConfig::new(pages * PAGE_SIZE)
            .backing(backing)
            .delivery(FaultDelivery::Thread)
            .sys(Sys::new(inj.clone())),
    )
    .unwrap()
}

#[test]
fn anonymous_presence_check_is_a_counted_injectable_mincore() {
    if !uffd_or_skip("anonymous_presence_check_is_a_counted_injectable_mincore") {
        return;
    }
    let inj = injector(vec![Rule::new(
        Call::Mincore,
        Errno::ENOMEM,
        Trigger::Always,
    )]);
    let a = arena(Backing::Anonymous, 2, &inj);
    a.populate(ArenaOffset(0), PAGE_SIZE).unwrap();
    let before = a.sys().counters().get(Call::Mincore);
    assert!(a.page_mapped(a.base()));
    assert!(!a.page_mapped(a.base() + PAGE_SIZE));
    assert_eq!(a.sys().counters().get(Call::Mincore), before + 2);
    inj.arm();
    assert!(!a.page_mapped(a.base()), "a failed mincore reads as absent");
    inj.disarm();
    assert_eq!(inj.injected(Call::Mincore), 1);
    assert!(a.page_mapped(a.base()));
}

#[test]
fn memfd_presence_check_is_a_counted_injectable_pagemap_pread() {
    if !uffd_or_skip("memfd_presence_check_is_a_counted_injectable_pagemap_pread") {
        return;
    }
    let inj = injector(vec![Rule::new(Call::Pread, Errno::EIO, Trigger::Always)]);
    let a = arena(Backing::Memfd, 2, &inj);
    a.populate(ArenaOffset(0), PAGE_SIZE).unwrap();
    let before = a.sys().counters().get(Call::Pread);
    assert!(a.page_mapped(a.base()));
    assert!(!a.page_mapped(a.base() + PAGE_SIZE));
    assert_eq!(a.sys().counters().get(Call::Pread), before + 2);
    assert_eq!(a.sys().counters().get(Call::Mincore), 0);
    inj.arm();
    assert!(!a.page_mapped(a.base()), "a failed pread reads as absent");
    inj.disarm();
    assert_eq!(inj.injected(Call::Pread), 1);
}

/// What a forked child found (its exit code).
const CHILD_OK: i32 = 0;

/// Fork; in the child, arm `inj`, detach the arena and judge the result with `judge`, then
/// `_exit` with its code. Returns the child's exit code.
fn in_forked_child(
    a: &VolatileArena,
    inj: &FaultInjector,
    judge: fn(&VolatileArena, Result<(), ArenaError>) -> i32,
) -> i32 {
    // SAFETY: the child makes only system calls through the arena's `Sys` (no allocation on
    // the paths taken: errors are `Copy` data and static strings), reads its own memory and
    // `_exit`s, so it meets no lock another thread held at the fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        inj.arm();
        let r = a.detach_after_fork();
        inj.disarm();
        let code = judge(a, r);
        // SAFETY: ends the child at once, running no destructor of the parent's state.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child died: status {status:#x}");
    libc::WEXITSTATUS(status)
}

/// A memfd arena of four pages with data in pages 0 and 2 (words 0xA0 and 0xA2) and holes at
/// 1 and 3.
fn memfd_with_data(inj: &Arc<FaultInjector>) -> VolatileArena {
    let a = arena(Backing::Memfd, 4, inj);
    for p in [0, 2] {
        a.populate(ArenaOffset(p * PAGE_SIZE), PAGE_SIZE).unwrap();
        // SAFETY: the page was just populated.
        unsafe { ((a.base() + p * PAGE_SIZE) as *mut u64).write_volatile(0xA0 + p as u64) };
    }
    a
}

/// Pages 0 and 2 read their words and the child's write stays private (code 0), else a code
/// naming what went wrong.
fn copy_is_right(a: &VolatileArena) -> i32 {
    // SAFETY: after a successful detach the arena is private, fully mapped plain memory.
    let word = |p: usize| unsafe { ((a.base() + p * PAGE_SIZE) as *const u64).read_volatile() };
    if word(0) != 0xA0 || word(2) != 0xA2 {
        return 10;
    }
    if word(1) != 0 || word(3) != 0 {
        return 11;
    }
    // SAFETY: as above; this write must not reach the parent.
    unsafe { (a.base() as *mut u64).write_volatile(0xC0) };
    CHILD_OK
}

fn parent_unchanged(a: &VolatileArena) {
    // SAFETY: page 0 was populated by the parent and is never released.
    let w = unsafe { (a.base() as *const u64).read_volatile() };
    assert_eq!(w, 0xA0, "the child's write reached the parent");
}

#[test]
fn detach_after_fork_walks_extents_through_sys() {
    if !uffd_or_skip("detach_after_fork_walks_extents_through_sys") {
        return;
    }
    let inj = injector(Vec::new());
    let a = memfd_with_data(&inj);
    let code = in_forked_child(&a, &inj, |a, r| {
        if r.is_err() {
            return 1;
        }
        let c = a.sys().counters();
        // Two data extents: SEEK_DATA + SEEK_HOLE for each, and a final SEEK_DATA (ENXIO).
        if c.get(Call::Lseek) != 5 || c.get(Call::Pread) < 2 {
            return 2;
        }
        copy_is_right(a)
    });
    assert_eq!(code, CHILD_OK);
    parent_unchanged(&a);
}

#[test]
fn injected_seek_data_failure_is_a_typed_error() {
    if !uffd_or_skip("injected_seek_data_failure_is_a_typed_error") {
        return;
    }
    let inj = injector(vec![Rule::new(Call::Lseek, Errno::EINVAL, Trigger::Nth(1))]);
    let a = memfd_with_data(&inj);
    let code = in_forked_child(&a, &inj, |_, r| match r {
        Err(ArenaError::Sys {
            call: "lseek(SEEK_DATA) (private copy after fork)",
            errno: Errno::EINVAL,
        }) => CHILD_OK,
        Err(_) => 3,
        Ok(()) => 4,
    });
    assert_eq!(code, CHILD_OK);
    parent_unchanged(&a);
}

#[test]
fn injected_seek_hole_failure_copies_to_the_end() {
    if !uffd_or_skip("injected_seek_hole_failure_copies_to_the_end") {
        return;
    }
    let inj = injector(vec![Rule::new(Call::Lseek, Errno::EINVAL, Trigger::Nth(2))]);
    let a = memfd_with_data(&inj);
    let code = in_forked_child(&a, &inj, |a, r| {
        if r.is_err() {
            return 5;
        }
        copy_is_right(a)
    });
    assert_eq!(code, CHILD_OK);
    parent_unchanged(&a);
}

#[test]
fn injected_pread_failure_is_a_typed_error() {
    if !uffd_or_skip("injected_pread_failure_is_a_typed_error") {
        return;
    }
    let inj = injector(vec![Rule::new(Call::Pread, Errno::EIO, Trigger::Nth(1))]);
    let a = memfd_with_data(&inj);
    let code = in_forked_child(&a, &inj, |_, r| match r {
        Err(ArenaError::Sys {
            call: "pread (private copy after fork)",
            errno: Errno::EIO,
        }) => CHILD_OK,
        Err(_) => 6,
        Ok(()) => 7,
    });
    assert_eq!(code, CHILD_OK);
    parent_unchanged(&a);
}

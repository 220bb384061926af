//! `VolatileArena::release_many`: many ranges released with one `process_madvise` of the
//! process itself, and every way that can fail falls back to one `madvise` per range with the
//! same result:
//! - a batch releases exactly its ranges (the pages between them stay, with their contents),
//!   with one `pidfd_open` for the arena's life and one `process_madvise` per batch;
//! - an injected refusal of `process_madvise` or of `pidfd_open` still releases every range,
//!   is reported by `release_batching` with its errno, and stops batching for good; a
//!   transient error (`ENOMEM`) sends only that batch range by range;
//! - a kernel that stops after some of the ranges (a partial count) has the rest released one
//!   range at a time;
//! - a range outside the arena is refused before anything is released;
//! - `release_leading` says how many leading ranges were released whole: all on success, those
//!   before the failing range after an error (the others are still present), 0 when refused;
//! - a lone range (or none) is released by `release` and opens no descriptor.

use core::ffi::{c_int, c_void, CStr};
use faultline_heap::arena::{ArenaConfig, ArenaError, Backing, FaultDelivery, VolatileArena};
use faultline_heap::inject::{FaultInjector, Rule, Trigger};
use faultline_heap::sys::{Call, Errno, Kernel, RealKernel, Sys};
use faultline_heap::uffd::Uffd;
use faultline_heap::ArenaOffset;
use faultline_heap::PAGE_SIZE;
use std::os::fd::RawFd;
use std::sync::Arc;

const PAGES: usize = 64;

fn uffd_available() -> bool {
    Uffd::available(&Sys::real()).is_ok()
}

/// Whether the running kernel is Linux 6.13 or later, where `process_madvise` of the process
/// itself takes `MADV_DONTNEED` (before, it refuses with EINVAL and the arena falls back).
fn kernel_batches() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut v = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|x| x.parse::<u32>().unwrap_or(0));
    (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (6, 13)
}

fn arena(sys: Sys) -> VolatileArena {
    VolatileArena::new(
        ArenaConfig::new(PAGES * PAGE_SIZE)
            .backing(Backing::Anonymous)
            .delivery(FaultDelivery::Thread)
            .sys(sys),
    )
    .unwrap()
}

/// Populate every page and write its index into its first word.
fn fill(a: &VolatileArena) {
    a.populate(ArenaOffset(0), PAGES * PAGE_SIZE).unwrap();
    for p in 0..PAGES {
        // SAFETY: page `p` of the arena is present (populated above) and nothing else uses it.
        unsafe { ((a.base() + p * PAGE_SIZE) as *mut u64).write_volatile(p as u64 + 1) };
    }
}

/// Runs of 1, 2 and 3 pages with a page between each (the shape of dead gaps between live
/// pages): pages 0, 2-3, 5-7, 9, 11-12, ...
fn gaps() -> Vec<(ArenaOffset, usize)> {
    let mut v = Vec::new();
    let mut p = 0;
    for n in [1, 2, 3].into_iter().cycle() {
        if p + n > PAGES {
            break;
        }
        v.push((ArenaOffset(p * PAGE_SIZE), n * PAGE_SIZE));
        p += n + 1;
    }
    v
}

/// Every page of `ranges` is absent, every other page present with its index.
fn check(a: &VolatileArena, ranges: &[(ArenaOffset, usize)]) {
    let released = |p: usize| {
        ranges
            .iter()
            .any(|&(o, l)| (o.get()..o.get() + l).contains(&(p * PAGE_SIZE)))
    };
    for p in 0..PAGES {
        let addr = a.base() + p * PAGE_SIZE;
        if released(p) {
            assert!(!a.page_mapped(addr), "page {p} was to be released");
        } else {
            assert!(a.page_mapped(addr), "page {p} was not to be released");
            // SAFETY: page `p` is present (checked above).
            let word = unsafe { (addr as *const u64).read_volatile() };
            assert_eq!(word, p as u64 + 1);
        }
    }
}

#[test]
fn a_batch_releases_exactly_its_ranges_with_one_call() {
    if !uffd_available() {
        return;
    }
    if !kernel_batches() {
        eprintln!("SKIPPED: process_madvise(MADV_DONTNEED) needs Linux 6.13 (the fallback is tested below)");
        return;
    }
    let a = arena(Sys::real());
    fill(&a);
    let ranges = gaps();
    assert!(ranges.len() > 10);
    let before = a.stats().calls_since_creation;
    a.release_many(&ranges).unwrap();
    let calls = a.stats().calls_since_creation.since(&before);
    assert_eq!(
        a.release_batching(),
        Ok(()),
        "this kernel batches (Linux 6.13 or later)"
    );
    assert_eq!(calls.get(Call::PidfdOpen), 1);
    assert_eq!(calls.get(Call::ProcessMadvise), 1);
    assert_eq!(calls.get(Call::Madvise), 0);
    check(&a, &ranges);
    // The descriptor is opened once: a second batch makes one call.
    fill(&a);
    let before = a.stats().calls_since_creation;
    a.release_many(&ranges).unwrap();
    let calls = a.stats().calls_since_creation.since(&before);
    assert_eq!(calls.get(Call::PidfdOpen), 0);
    assert_eq!(calls.get(Call::ProcessMadvise), 1);
    check(&a, &ranges);
}

#[test]
fn a_refused_batch_falls_back_to_one_call_per_range_for_good() {
    if !uffd_available() {
        return;
    }
    for (call, errno) in [
        (Call::ProcessMadvise, Errno::EINVAL),
        (Call::PidfdOpen, Errno::ENOSYS),
    ] {
        let inj = Arc::new(FaultInjector::new(
            vec![Rule::new(call, errno, Trigger::Always)],
            3,
        ));
        let a = arena(Sys::new(inj.clone()));
        fill(&a);
        let ranges = gaps();
        a.release_many(&ranges).unwrap();
        assert_eq!(inj.injected(call), 1, "{call:?}");
        assert_eq!(a.release_batching(), Err(errno), "{call:?}");
        check(&a, &ranges);
        // Refused once, never tried again: every range its own madvise.
        fill(&a);
        let before = a.stats().calls_since_creation;
        a.release_many(&ranges).unwrap();
        let calls = a.stats().calls_since_creation.since(&before);
        assert_eq!(
            calls.get(Call::ProcessMadvise) + calls.get(Call::PidfdOpen),
            0
        );
        assert_eq!(calls.get(Call::Madvise), ranges.len() as u64, "{call:?}");
        check(&a, &ranges);
    }
}

#[test]
fn a_transient_error_sends_one_batch_range_by_range() {
    if !uffd_available() || !kernel_batches() {
        return;
    }
    let inj = Arc::new(FaultInjector::new(
        vec![Rule::new(
            Call::ProcessMadvise,
            Errno::ENOMEM,
            Trigger::Nth(1),
        )],
        3,
    ));
    let a = arena(Sys::new(inj.clone()));
    let ranges = gaps();
    fill(&a);
    let before = a.stats().calls_since_creation;
    a.release_many(&ranges).unwrap();
    let calls = a.stats().calls_since_creation.since(&before);
    assert_eq!(inj.injected(Call::ProcessMadvise), 1);
    assert_eq!(calls.get(Call::Madvise), ranges.len() as u64);
    assert_eq!(a.release_batching(), Ok(()), "ENOMEM is not a refusal");
    check(&a, &ranges);
    // The next batch is one call again.
    fill(&a);
    let before = a.stats().calls_since_creation;
    a.release_many(&ranges).unwrap();
    let calls = a.stats().calls_since_creation.since(&before);
    assert_eq!(calls.get(Call::ProcessMadvise), 1);
    assert_eq!(calls.get(Call::Madvise), 0);
    check(&a, &ranges);
}

#[test]
fn a_failed_fallback_is_a_typed_error() {
    if !uffd_available() {
        return;
    }
    let inj = Arc::new(
        FaultInjector::new(
            vec![
                Rule::new(Call::ProcessMadvise, Errno::ENOMEM, Trigger::Always),
                Rule::new(Call::Madvise, Errno::EIO, Trigger::Always),
            ],
            3,
        )
        .disarmed(),
    );
    let a = arena(Sys::new(inj.clone()));
    fill(&a);
    inj.arm();
    match a.release_many(&gaps()) {
        Err(ArenaError::Sys { call, errno }) => {
            assert!(call.contains("MADV_DONTNEED"), "{call}");
            assert_eq!(errno, Errno::EIO);
        }
        r => panic!("expected the madvise error, got {r:?}"),
    }
    assert_eq!(inj.injected(Call::ProcessMadvise), 1);
}

#[test]
fn a_range_outside_the_arena_releases_nothing() {
    if !uffd_available() {
        return;
    }
    let a = arena(Sys::real());
    fill(&a);
    let mut ranges = gaps();
    ranges.push((ArenaOffset(PAGES * PAGE_SIZE), PAGE_SIZE));
    assert!(matches!(
        a.release_many(&ranges),
        Err(ArenaError::OutOfRange { .. })
    ));
    check(&a, &[]);
    assert_eq!(a.release_leading(&ranges).0, 0);
}

/// An error after some ranges: `release_leading` counts the ranges released before it, and
/// exactly those are absent (what frees the objects they held relies on it).
#[test]
fn release_leading_counts_the_ranges_released_before_an_error() {
    if !uffd_available() {
        return;
    }
    let inj = Arc::new(
        FaultInjector::new(
            vec![
                Rule::new(Call::ProcessMadvise, Errno::EINVAL, Trigger::Always),
                Rule::new(Call::Madvise, Errno::EIO, Trigger::Nth(3)),
            ],
            3,
        )
        .disarmed(),
    );
    let a = arena(Sys::new(inj.clone()));
    fill(&a);
    let ranges = gaps();
    inj.arm();
    let (released, r) = a.release_leading(&ranges);
    inj.disarm();
    assert!(
        matches!(
            r,
            Err(ArenaError::Sys {
                errno: Errno::EIO,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(released, 2, "the two ranges before the failed third");
    check(&a, &ranges[..2]);
}

/// The real kernel, but `process_madvise` advises only the first half of its ranges and
/// returns their bytes (as the kernel does when a range fails after others were advised).
struct FirstHalf;

// SAFETY: every call is the real one; `process_madvise` advises a prefix of its ranges and
// returns exactly the bytes it advised, which the kernel may also do.
unsafe impl Kernel for FirstHalf {
    fn userfaultfd(&self, flags: c_int) -> Result<RawFd, Errno> {
        RealKernel.userfaultfd(flags)
    }
    fn open(&self, path: &CStr, flags: c_int) -> Result<RawFd, Errno> {
        RealKernel.open(path, flags)
    }
    unsafe fn ioctl(
        &self,
        fd: RawFd,
        call: Call,
        request: u64,
        arg: *mut c_void,
    ) -> Result<c_int, Errno> {
        // SAFETY: forwarded from the caller's contract.
        unsafe { RealKernel.ioctl(fd, call, request, arg) }
    }
    fn read(&self, fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
        RealKernel.read(fd, buf)
    }
    fn close(&self, fd: RawFd) -> Result<(), Errno> {
        RealKernel.close(fd)
    }
    unsafe fn mmap(
        &self,
        addr: *mut c_void,
        len: usize,
        prot: c_int,
        flags: c_int,
        fd: RawFd,
        offset: i64,
    ) -> Result<*mut c_void, Errno> {
        // SAFETY: forwarded from the caller's contract.
        unsafe { RealKernel.mmap(addr, len, prot, flags, fd, offset) }
    }
    unsafe fn munmap(&self, addr: *mut c_void, len: usize) -> Result<(), Errno> {
        // SAFETY: forwarded from the caller's contract.
        unsafe { RealKernel.munmap(addr, len) }
    }
    unsafe fn mremap(
        &self,
        old: *mut c_void,
        old_len: usize,
        new_len: usize,
        flags: c_int,
        new_addr: *mut c_void,
    ) -> Result<*mut c_void, Errno> {
        // SAFETY: forwarded from the caller's contract.
        unsafe { RealKernel.mremap(old, old_len, new_len, flags, new_addr) }
    }
    unsafe fn mprotect(&self, addr: *mut c_void, len: usize, prot: c_int) -> Result<(), Errno> {
        // SAFETY: forwarded from the caller's contract.
        unsafe { RealKernel.mprotect(addr, len, prot) }
    }
    unsafe fn madvise(&self, addr: *mut c_void, len: usize, advice: c_int) -> Result<(), Errno> {
        // SAFETY: forwarded from the caller's contract.
        unsafe { RealKernel.madvise(addr, len, advice) }
    }
    fn memfd_create(&self, name: &CStr, flags: u32) -> Result<RawFd, Errno> {
        RealKernel.memfd_create(name, flags)
    }
    fn ftruncate(&self, fd: RawFd, len: i64) -> Result<(), Errno> {
        RealKernel.ftruncate(fd, len)
    }
    fn fallocate(&self, fd: RawFd, mode: c_int, offset: i64, len: i64) -> Result<(), Errno> {
        RealKernel.fallocate(fd, mode, offset, len)
    }
    unsafe fn process_madvise(
        &self,
        pidfd: RawFd,
        iov: &[libc::iovec],
        advice: c_int,
    ) -> Result<usize, Errno> {
        let half = &iov[..iov.len() / 2];
        // SAFETY: forwarded from the caller's contract (a prefix of its ranges).
        unsafe { RealKernel.process_madvise(pidfd, half, advice) }
    }
}

#[test]
fn a_partial_batch_has_the_rest_released_range_by_range() {
    if !uffd_available() || !kernel_batches() {
        return;
    }
    let a = arena(Sys::new(Arc::new(FirstHalf)));
    fill(&a);
    let ranges = gaps();
    let before = a.stats().calls_since_creation;
    let (released, r) = a.release_leading(&ranges);
    r.unwrap();
    assert_eq!(
        released,
        ranges.len(),
        "every range, half of them by the batch"
    );
    let calls = a.stats().calls_since_creation.since(&before);
    assert_eq!(calls.get(Call::ProcessMadvise), 1);
    assert_eq!(
        calls.get(Call::Madvise),
        (ranges.len() - ranges.len() / 2) as u64,
        "the ranges the batch did not advise, one call each"
    );
    assert_eq!(
        a.release_batching(),
        Ok(()),
        "a partial count is not a refusal"
    );
    check(&a, &ranges);
}

/// A forked child's `release_many` releases its own copy of the arena only: the descriptor
/// the parent opened names the parent (and the kernel refuses `MADV_DONTNEED` of another
/// process), so a child never batches; the parent's pages stay present with their contents.
#[test]
fn a_forked_childs_release_leaves_the_parent_alone() {
    if !uffd_available() || !kernel_batches() {
        return;
    }
    let a = arena(Sys::real());
    fill(&a);
    let ranges = gaps();
    // One batch in the parent opens the descriptor; the pages are refilled after it.
    a.release_many(&ranges[..2]).unwrap();
    assert!(a.batches_releases());
    fill(&a);
    // SAFETY: the child makes system calls only (no allocation, no lock) and leaves by `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = !a.batches_releases()
            && a.release_many(&ranges).is_ok()
            && ranges
                .iter()
                .all(|&(o, _)| !a.page_mapped(a.base() + o.get()));
        // SAFETY: ends the child without running the parent's destructors or atexit handlers.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child's release failed: status {status:#x}"
    );
    assert!(a.batches_releases());
    check(&a, &[]);
}

/// Many ranges split across batches: at most 256 ranges and 8 MiB a call, and a range longer
/// than 8 MiB released alone (by `release`, in pieces) between two batches. Exactly the ranges
/// are released; the pages between them keep their contents.
#[test]
fn ranges_split_across_batches_and_a_range_over_8_mib_alone() {
    if !uffd_available() || !kernel_batches() {
        return;
    }
    const BIG: usize = 4096;
    let a = VolatileArena::new(
        ArenaConfig::new(BIG * PAGE_SIZE)
            .backing(Backing::Anonymous)
            .delivery(FaultDelivery::Thread),
    )
    .unwrap();
    a.populate(ArenaOffset(0), BIG * PAGE_SIZE).unwrap();
    let word = |p: usize| (a.base() + p * PAGE_SIZE) as *mut u64;
    for p in 0..BIG {
        // SAFETY: page `p` of the arena is present (populated above) and nothing else uses it.
        unsafe { word(p).write_volatile(p as u64 + 1) };
    }
    let page = |p: usize| (ArenaOffset(p * PAGE_SIZE), PAGE_SIZE);
    // 500 single pages, one run of 2050 pages (8 MiB and two pages), 224 single pages.
    let mut ranges: Vec<_> = (0..1000).step_by(2).map(page).collect();
    ranges.push((ArenaOffset(1000 * PAGE_SIZE), 2050 * PAGE_SIZE));
    ranges.extend((3052..3500).step_by(2).map(page));
    let before = a.stats().calls_since_creation;
    assert_eq!(a.release_leading(&ranges), (ranges.len(), Ok(())));
    let calls = a.stats().calls_since_creation.since(&before);
    assert_eq!(
        calls.get(Call::ProcessMadvise),
        3,
        "256 ranges, the 244 before the long one, the 224 after it"
    );
    assert_eq!(calls.get(Call::Madvise), 2, "the long range, in two pieces");
    let released = |p: usize| {
        (p < 1000 && p % 2 == 0)
            || (1000..3050).contains(&p)
            || (3052..3500).contains(&p) && p % 2 == 0
    };
    for p in 0..BIG {
        let present = a.page_mapped(a.base() + p * PAGE_SIZE);
        assert_eq!(present, !released(p), "page {p}");
        if present {
            // SAFETY: page `p` is present (checked above).
            assert_eq!(unsafe { word(p).read_volatile() }, p as u64 + 1, "page {p}");
        }
    }
}

#[test]
fn a_lone_range_opens_no_descriptor() {
    if !uffd_available() {
        return;
    }
    let a = arena(Sys::real());
    fill(&a);
    let before = a.stats().calls_since_creation;
    a.release_many(&[]).unwrap();
    a.release_many(&[(ArenaOffset(0), PAGE_SIZE)]).unwrap();
    let calls = a.stats().calls_since_creation.since(&before);
    assert_eq!(calls.get(Call::PidfdOpen), 0);
    assert_eq!(calls.get(Call::ProcessMadvise), 0);
    assert_eq!(calls.get(Call::Madvise), 1);
    check(&a, &[(ArenaOffset(0), PAGE_SIZE)]);
}

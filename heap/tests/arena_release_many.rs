//! `VolatileArena::release_many`: many ranges released with one `process_madvise` of the
//! process itself, and every way that can fail falls back to one `madvise` per range with the
//! same result:
//! - a batch releases exactly its ranges (the pages between them stay, with their contents),
//!   with one `pidfd_open` for the arena's life and one `process_madvise` per batch;
//! - an injected refusal of `process_madvise` or of `pidfd_open` still releases every range,
//!   is reported by `release_batching` with its errno, and stops batching for good; a
//!   transient error (`ENOMEM`) sends only that batch range by range;
//! - a kernel that stops after some of the ranges (a short count, injected with
//!   `Rule::stop_after`) has the rest released one range at a time;
//! - a range outside the arena is refused before anything is released;
//! - `release_leading` says how many leading ranges were released whole: all on success, those
//!   before the failing range after an error (the others are still present), 0 when refused;
//! - a lone range (or none) is released by `release` and opens no descriptor.

mod common;
use common::{injector, uffd_or_skip};
use faultline_heap::arena::{ArenaConfig, ArenaError, Backing, FaultDelivery, VolatileArena};
use faultline_heap::inject::{Rule, Trigger};
use faultline_heap::probe::kernel_at_least;
use faultline_heap::sys::{Call, CallSnapshot, Errno, Sys};
use faultline_heap::ArenaOffset;
use faultline_heap::PAGE_SIZE;

const PAGES: usize = 64;

/// Whether userfaultfd works and the kernel is Linux 6.13 or later, where `process_madvise` of
/// the process itself takes `MADV_DONTNEED` (before, it refuses with EINVAL and the arena
/// falls back: tested by the tests that run everywhere); if not, prints `test`'s skip notice.
fn batching_or_skip(test: &str) -> bool {
    if !uffd_or_skip(test) {
        return false;
    }
    let ok = kernel_at_least(6, 13);
    if !ok {
        eprintln!("SKIPPED: {test}: process_madvise(MADV_DONTNEED) needs Linux 6.13");
    }
    ok
}

fn arena(sys: Sys) -> VolatileArena {
    arena_of(PAGES, sys)
}

fn arena_of(pages: usize, sys: Sys) -> VolatileArena {
    VolatileArena::new(
        ArenaConfig::new(pages * PAGE_SIZE)
            .backing(Backing::Anonymous)
            .delivery(FaultDelivery::Thread)
            .sys(sys),
    )
    .unwrap()
}

/// Populate every page and write its index into its first word.
fn fill(a: &VolatileArena) {
    a.populate(ArenaOffset(0), a.size()).unwrap();
    for p in 0..a.size() / PAGE_SIZE {
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
    for p in 0..a.size() / PAGE_SIZE {
        let addr = a.base() + p * PAGE_SIZE;
        if released(p) {
            assert!(!a.page_mapped(addr), "page {p} was to be released");
        } else {
            assert!(a.page_mapped(addr), "page {p} was not to be released");
            // SAFETY: page `p` is present (checked above).
            let word = unsafe { (addr as *const u64).read_volatile() };
            assert_eq!(word, p as u64 + 1, "page {p}");
        }
    }
}

/// Fill the arena, `release_many(ranges)` (which must succeed), check that exactly the ranges
/// are absent, and return the calls the release made.
fn release_counted(a: &VolatileArena, ranges: &[(ArenaOffset, usize)]) -> CallSnapshot {
    fill(a);
    let before = a.stats().calls_since_creation;
    a.release_many(ranges).unwrap();
    let calls = a.stats().calls_since_creation.since(&before);
    check(a, ranges);
    calls
}

#[test]
fn a_batch_releases_exactly_its_ranges_with_one_call() {
    if !batching_or_skip("a_batch_releases_exactly_its_ranges_with_one_call") {
        return;
    }
    let a = arena(Sys::real());
    let ranges = gaps();
    assert!(ranges.len() > 10);
    let calls = release_counted(&a, &ranges);
    assert_eq!(
        a.release_batching(),
        Ok(()),
        "this kernel batches (Linux 6.13 or later)"
    );
    assert_eq!(calls.get(Call::PidfdOpen), 1);
    assert_eq!(calls.get(Call::ProcessMadvise), 1);
    assert_eq!(calls.get(Call::Madvise), 0);
    // The descriptor is opened once: a second batch makes one call.
    let calls = release_counted(&a, &ranges);
    assert_eq!(calls.get(Call::PidfdOpen), 0);
    assert_eq!(calls.get(Call::ProcessMadvise), 1);
}

#[test]
fn a_refused_batch_falls_back_to_one_call_per_range_for_good() {
    if !uffd_or_skip("a_refused_batch_falls_back_to_one_call_per_range_for_good") {
        return;
    }
    for (call, errno) in [
        (Call::ProcessMadvise, Errno::EINVAL),
        (Call::PidfdOpen, Errno::ENOSYS),
    ] {
        let inj = injector(vec![Rule::new(call, errno, Trigger::Always)]);
        let a = arena(Sys::new(inj.clone()));
        inj.arm();
        let ranges = gaps();
        release_counted(&a, &ranges);
        assert_eq!(inj.injected(call), 1, "{call:?}");
        assert_eq!(a.release_batching(), Err(errno), "{call:?}");
        // Refused once, never tried again: every range its own madvise.
        let calls = release_counted(&a, &ranges);
        assert_eq!(
            calls.get(Call::ProcessMadvise) + calls.get(Call::PidfdOpen),
            0
        );
        assert_eq!(calls.get(Call::Madvise), ranges.len() as u64, "{call:?}");
    }
}

#[test]
fn a_transient_error_sends_one_batch_range_by_range() {
    if !batching_or_skip("a_transient_error_sends_one_batch_range_by_range") {
        return;
    }
    let inj = injector(vec![Rule::new(
        Call::ProcessMadvise,
        Errno::ENOMEM,
        Trigger::Nth(1),
    )]);
    let a = arena(Sys::new(inj.clone()));
    inj.arm();
    let ranges = gaps();
    let calls = release_counted(&a, &ranges);
    assert_eq!(inj.injected(Call::ProcessMadvise), 1);
    assert_eq!(calls.get(Call::Madvise), ranges.len() as u64);
    assert_eq!(a.release_batching(), Ok(()), "ENOMEM is not a refusal");
    // The next batch is one call again.
    let calls = release_counted(&a, &ranges);
    assert_eq!(calls.get(Call::ProcessMadvise), 1);
    assert_eq!(calls.get(Call::Madvise), 0);
}

#[test]
fn a_failed_fallback_is_a_typed_error() {
    if !uffd_or_skip("a_failed_fallback_is_a_typed_error") {
        return;
    }
    let inj = injector(vec![
        Rule::new(Call::ProcessMadvise, Errno::ENOMEM, Trigger::Always),
        Rule::new(Call::Madvise, Errno::EIO, Trigger::Always),
    ]);
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
    if !uffd_or_skip("a_range_outside_the_arena_releases_nothing") {
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
    if !uffd_or_skip("release_leading_counts_the_ranges_released_before_an_error") {
        return;
    }
    let inj = injector(vec![
        Rule::new(Call::ProcessMadvise, Errno::EINVAL, Trigger::Always),
        Rule::new(Call::Madvise, Errno::EIO, Trigger::Nth(3)),
    ]);
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

#[test]
fn a_partial_batch_has_the_rest_released_range_by_range() {
    if !batching_or_skip("a_partial_batch_has_the_rest_released_range_by_range") {
        return;
    }
    let ranges = gaps();
    let half = ranges.len() / 2;
    // The kernel advises the first half of the ranges, then stops at an error (EFAULT).
    let first_half = ranges[..half].iter().map(|&(_, l)| l).sum();
    let inj = injector(vec![Rule::stop_after(
        first_half,
        Errno::EFAULT,
        Trigger::Always,
    )]);
    let a = arena(Sys::new(inj.clone()));
    fill(&a);
    inj.arm();
    let before = a.stats().calls_since_creation;
    let (released, r) = a.release_leading(&ranges);
    r.unwrap();
    assert_eq!(
        released,
        ranges.len(),
        "every range, half of them by the batch"
    );
    let calls = a.stats().calls_since_creation.since(&before);
    assert_eq!(inj.injected(Call::ProcessMadvise), 1);
    assert_eq!(
        calls.get(Call::Madvise),
        (ranges.len() - half) as u64,
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
    if !batching_or_skip("a_forked_childs_release_leaves_the_parent_alone") {
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
    if !batching_or_skip("ranges_split_across_batches_and_a_range_over_8_mib_alone") {
        return;
    }
    let a = arena_of(4096, Sys::real());
    let page = |p: usize| (ArenaOffset(p * PAGE_SIZE), PAGE_SIZE);
    // 500 single pages, one run of 2050 pages (8 MiB and two pages), 224 single pages.
    let mut ranges: Vec<_> = (0..1000).step_by(2).map(page).collect();
    ranges.push((ArenaOffset(1000 * PAGE_SIZE), 2050 * PAGE_SIZE));
    ranges.extend((3052..3500).step_by(2).map(page));
    let calls = release_counted(&a, &ranges);
    assert_eq!(
        calls.get(Call::ProcessMadvise),
        3,
        "256 ranges, the 244 before the long one, the 224 after it"
    );
    assert_eq!(calls.get(Call::Madvise), 2, "the long range, in two pieces");
    fill(&a);
    assert_eq!(a.release_leading(&ranges), (ranges.len(), Ok(())));
    check(&a, &ranges);
}

#[test]
fn a_lone_range_opens_no_descriptor() {
    if !uffd_or_skip("a_lone_range_opens_no_descriptor") {
        return;
    }
    let a = arena(Sys::real());
    let none = release_counted(&a, &[]);
    let lone = release_counted(&a, &[(ArenaOffset(0), PAGE_SIZE)]);
    for calls in [none, lone] {
        assert_eq!(calls.get(Call::PidfdOpen), 0);
        assert_eq!(calls.get(Call::ProcessMadvise), 0);
    }
    assert_eq!(none.get(Call::Madvise), 0);
    assert_eq!(lone.get(Call::Madvise), 1);
}

//! How the arena believes an EEXIST from a mapping call ("a page is there already"):
//! - a page mapped by [`VolatileArena::resolve_copy_racing`] (a fault's rescue, racing the
//!   page's claimer) or by a populate is recorded, and another call's EEXIST on it is believed
//!   on that record, with no page-table lookup (`mincore` waits for the mmap lock);
//! - any other EEXIST is checked against the page tables (one counted `mincore`), so an EEXIST
//!   the page tables contradict is retried, not believed;
//! - releasing a page, or moving it away, forgets its record: a later EEXIST there is checked
//!   again;
//! - `resolve_copy_racing` itself believes an EEXIST without a lookup (its caller copes).

use faultline_heap::arena::{ArenaConfig, FaultDelivery, Resolution, VolatileArena};
use faultline_heap::inject::{FaultInjector, Rule, Trigger};
use faultline_heap::sys::{Call, Errno, Sys};
use faultline_heap::uffd::Uffd;
use faultline_heap::{ArenaOffset, PAGE_SIZE};
use std::sync::Arc;

/// An 8-page arena whose `nth` COPY fails with a false EEXIST, and its (armed) injector; `None`
/// (after a skip notice) where userfaultfd is unavailable.
fn arena_with_false_eexist(test: &str, nth: u64) -> Option<(VolatileArena, Arc<FaultInjector>)> {
    if let Err(e) = Uffd::available(&Sys::real()) {
        eprintln!("SKIPPED: {test}: userfaultfd unavailable here: {e}");
        return None;
    }
    let inj = Arc::new(
        FaultInjector::new(
            vec![Rule::new(Call::UffdCopy, Errno::EEXIST, Trigger::Nth(nth))],
            1,
        )
        .disarmed(),
    );
    let a = VolatileArena::new(
        ArenaConfig::new(8 * PAGE_SIZE)
            .delivery(FaultDelivery::Thread)
            .sys(Sys::new(inj.clone())),
    )
    .unwrap();
    inj.arm();
    Some((a, inj))
}

/// `pages` pages of 0x5a bytes copied to `offset` by `resolve_copy` (or
/// `resolve_copy_racing`).
fn copy_pages(a: &VolatileArena, offset: usize, pages: usize, racing: bool) -> Resolution {
    let buf = vec![0x5au8; pages * PAGE_SIZE];
    // SAFETY: `buf` is readable for `pages` pages.
    unsafe {
        if racing {
            a.resolve_copy_racing(ArenaOffset(offset), buf.as_ptr(), buf.len())
        } else {
            a.resolve_copy(ArenaOffset(offset), buf.as_ptr(), buf.len())
        }
    }
    .unwrap()
}

/// One page: [`copy_pages`].
fn copy(a: &VolatileArena, offset: usize, racing: bool) -> Resolution {
    copy_pages(a, offset, 1, racing)
}

#[test]
fn a_recorded_mapping_answers_an_eexist_and_release_forgets_it() {
    // The tenth COPY (onto the released page 1) fails with a false EEXIST.
    let Some((a, inj)) = arena_with_false_eexist(
        "a_recorded_mapping_answers_an_eexist_and_release_forgets_it",
        10,
    ) else {
        return;
    };
    let mincore = || inj.seen(Call::Mincore);
    assert_eq!(copy(&a, 0, true), Resolution::Mapped);
    // The claimer's own COPY meets the rescued page: believed on the record, as often as it
    // comes.
    assert_eq!(copy(&a, 0, false), Resolution::AlreadyPresent);
    assert_eq!((a.exists_counts(), mincore()), ((1, 0), 0));
    assert_eq!(copy(&a, 0, false), Resolution::AlreadyPresent);
    assert_eq!((a.exists_counts(), mincore()), ((2, 0), 0));
    // A racing resolver meeting EEXIST believes it with no lookup.
    assert_eq!(copy(&a, 0, true), Resolution::AlreadyPresent);
    assert_eq!((a.exists_counts(), mincore()), ((2, 0), 0));
    // A page mapped by a plain resolve is not recorded: an EEXIST on it is checked.
    assert_eq!(copy(&a, 2 * PAGE_SIZE, false), Resolution::Mapped);
    assert_eq!(copy(&a, 2 * PAGE_SIZE, false), Resolution::AlreadyPresent);
    assert_eq!((a.exists_counts(), mincore()), ((2, 1), 1));
    assert_eq!(a.stats().exists_checked, 1);
    // A populated page is recorded.
    a.populate(ArenaOffset(3 * PAGE_SIZE), PAGE_SIZE).unwrap();
    assert_eq!(copy(&a, 3 * PAGE_SIZE, false), Resolution::AlreadyPresent);
    assert_eq!((a.exists_counts(), mincore()), ((3, 1), 1));
    // Page 1 rescued, then released: its record is gone, so the injected (false) EEXIST of
    // the next COPY onto it is checked, found absent and retried: the page is mapped.
    assert_eq!(copy(&a, PAGE_SIZE, true), Resolution::Mapped);
    a.release(ArenaOffset(PAGE_SIZE), PAGE_SIZE).unwrap();
    assert!(!a.page_mapped(a.base() + PAGE_SIZE));
    let checks = mincore();
    assert_eq!(copy(&a, PAGE_SIZE, false), Resolution::Mapped);
    assert_eq!(
        inj.injected(Call::UffdCopy),
        1,
        "{:?}",
        inj.injected_summary()
    );
    assert_eq!(a.exists_counts(), (3, 2));
    assert_eq!(mincore(), checks + 1);
    assert!(a.page_mapped(a.base() + PAGE_SIZE));
    // SAFETY: page 1 is mapped and ours.
    assert_eq!(unsafe { *((a.base() + PAGE_SIZE) as *const u8) }, 0x5a);
    // Pages 4..8 mapped by one plain resolve (not recorded): resolving them again meets one
    // EEXIST, and one lookup (of all four) steps over all of them.
    assert_eq!(copy_pages(&a, 4 * PAGE_SIZE, 4, false), Resolution::Mapped);
    let (m0, c0) = (mincore(), a.exists_counts().1);
    assert_eq!(
        copy_pages(&a, 4 * PAGE_SIZE, 4, false),
        Resolution::AlreadyPresent
    );
    assert_eq!((mincore(), a.exists_counts().1), (m0 + 1, c0 + 1));
    // Populated pages are stepped over on their records: no lookup at all.
    a.release(ArenaOffset(4 * PAGE_SIZE), 4 * PAGE_SIZE)
        .unwrap();
    a.populate(ArenaOffset(4 * PAGE_SIZE), 4 * PAGE_SIZE)
        .unwrap();
    let m1 = mincore();
    assert_eq!(
        copy_pages(&a, 4 * PAGE_SIZE, 4, false),
        Resolution::AlreadyPresent
    );
    assert_eq!(mincore(), m1);
}

#[test]
fn unmapping_the_view_forgets_the_record_too() {
    // The second COPY (onto page 0 after it was unmapped) fails with a false EEXIST.
    let Some((a, inj)) = arena_with_false_eexist("unmapping_the_view_forgets_the_record_too", 2)
    else {
        return;
    };
    assert_eq!(copy(&a, 0, true), Resolution::Mapped);
    a.unmap_view(ArenaOffset(0), PAGE_SIZE).unwrap();
    assert!(!a.page_mapped(a.base()));
    // Believed on a stale record, this EEXIST would leave the page absent (a fault on it
    // never resolved: the minor strategy's kept pages hung the injected-error stress so).
    assert_eq!(copy(&a, 0, false), Resolution::Mapped);
    assert_eq!(
        inj.injected(Call::UffdCopy),
        1,
        "{:?}",
        inj.injected_summary()
    );
    assert!(a.page_mapped(a.base()));
}

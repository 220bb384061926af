//! `fork(2)` during the concurrent compaction of a generational cycle that promotes (the
//! heap's first cycle, and a full cycle, which promotes what it traced with
//! `HeapConfig::first_cycle_promotion`): the old generation's range changes at the flip, but
//! its card crossing map, and the remembered-set entries of the references from the promoted
//! objects to the black objects kept young, are made only once the compaction has placed the
//! promoted objects (`OldGen::build_pending`, at the cycle's finish on the GC thread). The
//! child ends that cycle itself (it fills the destination pages the parent had not), so it must
//! make them too: else its first young cycle finds no crossing map for the old generation
//! (written pages: every old page is reported in a child, and reading the slots of the first
//! one indexed an empty map), and does not know that the promoted `x` refers to the black `b`
//! (cards: `b`, referenced only from `x`, was freed, and `x` pointed into the released half).
//!
//! Scenario: `x` (old after the cycle) gets the black `b` (stored while the cycle is parked
//! before its remark, its only reference); `fork` right after the flip, while the compaction
//! workers are held back (`compaction_delay`); the child runs young cycles, verifying, and
//! reads `b` through `x`; the parent finishes the cycle and does the same.
//!
//! Invariant: the tests run their forks one at a time (`common::forking::serial`).

mod common;
use common::forking::{serial, wait_child};
use common::gen::{
    alloc_with_ballast, check_promoted_keeps_black, in_old, remembered_sets, young_cycle,
};
use common::park::Park;
use common::{fix, unfix};
use faultline::testing::heap::PAGE_SIZE;
use faultline::{
    GcMode, Generational, Heap, HeapConfig, MarkPoint, Mutator, Root, TypeId, TypeInfo,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exit codes of the child.
const CHILD_OK: i32 = 0;
const CHILD_FAILED: i32 = 3;
/// The fork did not land in the cycle's compaction (the delay elapsed first).
const CHILD_MISSED: i32 = 4;

/// Fork; in the child (which must have ended the running cycle itself, else the fork missed
/// `phase`) run `child` and exit with its verdict; in the parent run `meanwhile`, wait for
/// `heap`'s cycle to end, then wait for the child and fail if the fork missed `phase` or the
/// child failed. (The parent's cycle ends before a failure unwinds: a heap dropped in the
/// middle of its cycle lives on until its GC thread ends that cycle, and the next test's
/// child would end it too and count two cycles: a miss there, whatever that test's scene.)
fn fork_and_check(
    heap: &Heap,
    what: &str,
    phase: &str,
    child: impl FnOnce(),
    meanwhile: impl FnOnce(),
) {
    // SAFETY: the child only runs heap code (fork-aware) and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        if faultline::testing::child_finish_counts().0 != 1 {
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(CHILD_MISSED) };
        }
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).is_ok();
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(if ok { CHILD_OK } else { CHILD_FAILED }) };
    }
    meanwhile();
    heap.wait_for_compaction();
    let code = wait_child(pid);
    assert_ne!(
        code, CHILD_MISSED,
        "{what}: the fork did not land in {phase}"
    );
    assert_eq!(
        code, CHILD_OK,
        "{what}: the child failed (its stderr says why)"
    );
}

/// After the heap's first cycle (young, promoting), large objects past the old generation's
/// large limit (`min_trigger_bytes / 2`; only full cycles free large objects): the next cycle
/// is full, from the old half, nothing pinned. `LIVE_LARGE` bytes of them stay rooted (the
/// roots are returned) and `DEAD_LARGE` are garbage: that full cycle sets the next large limit
/// to twice the live ones, which covers the garbage too. A child forked during its compaction
/// releases the garbage (its fork handler releases the large objects found dead at the flip),
/// and its cycles are young (they are what the tests check): with only garbage, the limit
/// counted from what is live would be the floor, under what a child that kept it held.
fn until_a_full_cycle_is_next(heap: &Heap, m: &mut Mutator, bytes: TypeId) -> Vec<Root> {
    m.collect().unwrap();
    heap.wait_for_compaction();
    heap.verify().unwrap();
    let first = heap.history().last().unwrap().clone();
    assert!(first.gen.promoted_bytes > 0, "{:?}", first.gen);
    let live: Vec<Root> = (0..LIVE_LARGE / LARGE)
        .map(|_| {
            let v = m.alloc(bytes, LARGE).unwrap();
            m.root(v)
        })
        .collect();
    for _ in 0..DEAD_LARGE / LARGE {
        m.alloc(bytes, LARGE).unwrap();
    }
    live
}

const MIN_TRIGGER: usize = 4 << 20;
const LARGE: usize = 10 << 10;
/// The large objects kept, and the garbage: together past `MIN_TRIGGER / 2` (by 512 KiB),
/// the garbage under the kept ones (by 512 KiB; `old_growth` is 1). Each object takes whole
/// pages (3 of them), a fifth more of both: the margins grow.
const LIVE_LARGE: usize = 3 << 19;
const DEAD_LARGE: usize = 1 << 20;
const _: () = assert!(LIVE_LARGE + DEAD_LARGE > MIN_TRIGGER / 2 && DEAD_LARGE < LIVE_LARGE);

/// A concurrent generational heap of 16 MiB with checkmark, `park`'s mark hook and the given
/// compaction delay.
fn gen_heap(kind: Generational, park: &Arc<Park>, compaction_delay: Option<Duration>) -> Heap {
    Heap::new(HeapConfig::with_heap_size(16 << 20).with(|c| {
        c.generational = kind;
        c.mode = GcMode::Concurrent;
        c.min_trigger_bytes = MIN_TRIGGER;
        c.debug.checkmark = true;
        c.debug.mark_hook = Some(park.hook());
        c.debug.compaction_delay = compaction_delay;
    }))
    .unwrap()
}

/// The scenario of the module doc; `full`: the forked cycle is a full one (else the heap's
/// first cycle).
fn fork_during_promoting_compaction(kind: Generational, full: bool) {
    let what = format!(
        "{kind:?}, {}",
        if full { "full cycle" } else { "first cycle" }
    );
    let park = Arc::new(Park::default());
    let heap = gen_heap(kind, &park, Some(Duration::from_millis(500)));
    assert_eq!(heap.mode_info().mode, GcMode::Concurrent, "{what}");
    let node = heap.register_type(TypeInfo::ref_array("node")).unwrap();
    let mut m = heap.attach();
    let (x, _xb) = alloc_with_ballast(&mut m, node, 7);
    let _large = if full {
        let bytes = heap.register_type(TypeInfo::byte_array("bytes")).unwrap();
        until_a_full_cycle_is_next(&heap, &mut m, bytes)
    } else {
        Vec::new()
    };
    let recorded = heap.history().len();
    assert_eq!(recorded, usize::from(full), "{what}: no cycle of its own");
    let flips = heap.flips();
    park.arm(MarkPoint::BeforeRemark);
    m.start_collection().unwrap();
    park.wait(&mut m);
    let b = m.alloc(node, 2).unwrap();
    m.local(b).unwrap().set(0, fix(99));
    x.get(&m).unwrap().set(1, b);
    park.disarm();
    let t0 = Instant::now();
    while heap.flips() == flips {
        assert!(t0.elapsed() < Duration::from_secs(20), "{what}: no flip");
        m.safepoint();
        std::thread::yield_now();
    }
    fork_and_check(
        &heap,
        &what,
        "the compaction",
        || {
            assert!(in_old(&heap, x.value(&m).bits()), "{what}: x not old");
            let b = x.get(&m).unwrap().get(1);
            assert!(!in_old(&heap, b.bits()), "{what}: b (black) was promoted");
            for _ in 0..3 {
                young_cycle(&heap, &mut m);
                let xl = x.get(&m).unwrap();
                assert_eq!(unfix(xl.get(0)), 7, "{what}");
                assert_eq!(unfix(m.local(xl.get(1)).unwrap().get(0)), 99, "{what}");
            }
        },
        || {},
    );
    heap.wait_for_compaction();
    heap.verify().unwrap();
    let c = heap.history()[recorded].clone();
    assert_eq!(c.gen.young, Some(!full), "{what}: {:?}", c.gen);
    assert!(c.gen.promoted_bytes > 0, "{what}: {:?}", c.gen);
    check_promoted_keeps_black(&heap, &mut m, &x, 7, true, &what);
}

/// A concurrent young cycle's remembered-set scan (after its initial mark) takes and clears
/// the dirty ranges; a fork during its marking abandons the cycle in the child, so the old
/// slots it took must be remembered again there: `x` (old) refers to the young `y` (stored
/// before the cycle started, its only reference, so only `x`'s dirty card names it); `fork`
/// while the cycle is parked before its remark; the child's young cycles must keep `y`.
fn fork_during_young_marking(kind: Generational) {
    let what = format!("{kind:?}, young cycle's marking");
    let park = Arc::new(Park::default());
    let heap = gen_heap(kind, &park, None);
    let node = heap.register_type(TypeInfo::ref_array("node")).unwrap();
    let mut m = heap.attach();
    let (x, _xb) = alloc_with_ballast(&mut m, node, 7);
    young_cycle(&heap, &mut m);
    assert!(in_old(&heap, x.value(&m).bits()), "{what}: x not old");
    let y = m.alloc(node, 2).unwrap();
    m.local(y).unwrap().set(0, fix(5));
    x.get(&m).unwrap().set(1, y);
    park.arm(MarkPoint::BeforeRemark);
    m.start_collection().unwrap();
    park.wait(&mut m);
    fork_and_check(
        &heap,
        &what,
        "marking",
        || {
            for _ in 0..3 {
                young_cycle(&heap, &mut m);
                let xl = x.get(&m).unwrap();
                assert_eq!(unfix(m.local(xl.get(1)).unwrap().get(0)), 5, "{what}");
            }
        },
        || park.release(),
    );
    heap.wait_for_compaction();
    heap.verify().unwrap();
    for _ in 0..2 {
        young_cycle(&heap, &mut m);
        let xl = x.get(&m).unwrap();
        assert_eq!(unfix(m.local(xl.get(1)).unwrap().get(0)), 5, "{what}");
    }
}

/// A child forked during the compaction of a full cycle releases the large objects that cycle
/// found dead, as the parent's finish does: its first cycle begins with only the live large
/// objects (`CycleStats::large_before`, the parent's `large_after` for that full cycle).
/// Before, the child's fork handler left them to its next full cycle, and its young cycles
/// (this scene's: the large limit counts the live ones twice) rooted them and traced their
/// slots, which the flip had not forwarded.
fn fork_during_full_compaction_releases_dead_large(kind: Generational) {
    let what = format!("{kind:?}, a full cycle's dead large objects");
    let park = Arc::new(Park::default());
    let heap = gen_heap(kind, &park, Some(Duration::from_millis(500)));
    let node = heap.register_type(TypeInfo::ref_array("node")).unwrap();
    let bytes = heap.register_type(TypeInfo::byte_array("bytes")).unwrap();
    let mut m = heap.attach();
    let (x, _xb) = alloc_with_ballast(&mut m, node, 7);
    let live = until_a_full_cycle_is_next(&heap, &mut m, bytes);
    // Each large object takes whole pages.
    let live_bytes = live.len() * LARGE.next_multiple_of(PAGE_SIZE);
    let recorded = heap.history().len();
    common::start_and_wait_for_flip(&heap, &mut m);
    fork_and_check(
        &heap,
        &what,
        "the compaction",
        || {
            for k in 0..3 {
                let c = young_cycle(&heap, &mut m);
                assert_eq!(
                    c.large_before, live_bytes,
                    "{what}: child cycle {k} began with the live large objects only"
                );
                assert_eq!(unfix(x.get(&m).unwrap().get(0)), 7, "{what}");
            }
            for r in &live {
                assert_eq!(m.local(r.value(&m)).unwrap().to_bytes().len(), LARGE);
            }
        },
        || {},
    );
    heap.wait_for_compaction();
    heap.verify().unwrap();
    let c = heap.history()[recorded].clone();
    assert_eq!(c.gen.young, Some(false), "{what}: {:?}", c.gen);
    assert_eq!(
        c.large_after, live_bytes,
        "{what}: the parent released them"
    );
}

#[test]
fn a_child_forked_during_a_full_cycles_compaction_releases_the_dead_large_objects() {
    if !common::uffd_or_skip("fork during a full cycle's compaction, dead large objects") {
        return;
    }
    let _one = serial();
    for kind in remembered_sets("fork during a full cycle's compaction, dead large objects") {
        fork_during_full_compaction_releases_dead_large(kind);
    }
}

#[test]
fn a_child_forked_during_a_promoting_compaction_keeps_the_promoted_objects_references() {
    if !common::uffd_or_skip("fork during a promoting compaction") {
        return;
    }
    let _one = serial();
    for kind in remembered_sets("fork during a promoting compaction") {
        fork_during_promoting_compaction(kind, true);
        fork_during_promoting_compaction(kind, false);
    }
}

#[test]
fn a_child_forked_during_a_young_cycles_marking_remembers_what_its_scan_took() {
    if !common::uffd_or_skip("fork during a young cycle's marking") {
        return;
    }
    let _one = serial();
    for kind in remembered_sets("fork during a young cycle's marking") {
        fork_during_young_marking(kind);
    }
}

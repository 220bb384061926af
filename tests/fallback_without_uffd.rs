//! Where userfaultfd is refused (EPERM from a seccomp policy, ENOSYS from a kernel without it:
//! driven here by the fault injector), the heap falls back to stop-the-world compaction on
//! plain memory, reports why, and passes the same verification and shadow-model checks.

mod common;
use common::shadow::{self, drive, Shadow};
use faultline::testing::heap::inject::{FaultInjector, Rule, Trigger};
use faultline::testing::heap::sys::{Call, Errno, Sys};
use faultline::{Heap, HeapConfig, HeapError};
use std::sync::Arc;

fn refused(errno: Errno) -> Heap {
    let inj = Arc::new(FaultInjector::new(
        vec![Rule::new(Call::Userfaultfd, errno, Trigger::Always)],
        7,
    ));
    Heap::new(HeapConfig::with_heap_size(2 << 20).with(|c| {
        c.debug.sys = Sys::new(inj);
        c.debug.stress_every = Some(8);
        c.debug.verify = true;
    }))
    .expect("the heap falls back instead of failing")
}

#[test]
fn refused_uffd_falls_back_with_a_reason() {
    for (errno, needle) in [
        (Errno::EPERM, "policy"),
        (Errno::ENOSYS, "CONFIG_USERFAULTFD"),
    ] {
        let heap = refused(errno);
        assert!(!heap.uses_userfaultfd());
        let reason = heap.fallback_reason().expect("a reason is reported");
        assert!(reason.contains(needle), "{reason}");
        let t = shadow::register(&heap);
        let mut m = heap.attach();
        let mut sh = Shadow::new(&mut m, t, errno as u64, 1);
        drive(&mut m, &mut sh, 300, u64::MAX);
        assert!(heap.flips() >= 300);
        assert!(sh.checks >= 300);
        // Plain memory: no userfaultfd calls at all, and still no mapping calls per cycle.
        assert!(heap
            .history()
            .iter()
            .all(|c| c.mmap_family() == 0 && c.registrations() == 0));
        assert_eq!(heap.arena_stats().registers, 0);
    }
}

#[test]
fn disabling_uffd_by_configuration_says_so() {
    let heap =
        Heap::new(HeapConfig::with_heap_size(1 << 20).with(|c| c.use_userfaultfd = false)).unwrap();
    assert_eq!(
        heap.fallback_reason(),
        Some("userfaultfd disabled by configuration")
    );
}

#[test]
fn bad_configuration_is_rejected_at_creation() {
    let e = Heap::new(HeapConfig::default().with(|c| c.gc_threads = 0)).unwrap_err();
    assert!(matches!(e, HeapError::Config(_)));
    assert!(e.to_string().contains("gc_threads"), "{e}");
    let e = Heap::new(HeapConfig::default().with(|c| c.max_heap_bytes = 10)).unwrap_err();
    assert!(e.to_string().contains("max_heap_bytes"), "{e}");
    // An arena that cannot even be mapped is an error, not a panic.
    let inj = Arc::new(FaultInjector::new(
        vec![Rule::new(Call::Mmap, Errno::ENOMEM, Trigger::Always)],
        1,
    ));
    let e = Heap::new(HeapConfig::with_heap_size(1 << 20).with(|c| c.debug.sys = Sys::new(inj)))
        .unwrap_err();
    assert!(matches!(e, HeapError::Arena(_)), "{e}");
}

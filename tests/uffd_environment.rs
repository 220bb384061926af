//! The userfaultfd environment the suite runs in, checked against what the heap reports.
//!
//! `.ci/torture-env` runs every test binary under a seccomp filter that makes `userfaultfd(2)`
//! fail with EPERM, one that makes it fail with ENOSYS, and as the unprivileged user `nobody`
//! (with `vm.unprivileged_userfaultfd=0`). It tells this test what to expect through
//! `FAULTLINE_EXPECT_UFFD` (`denied:EPERM`, `denied:ENOSYS` or `available`), so a run in which
//! the filter silently did not apply, or the heap did not notice, fails here. Unset, the test
//! checks that the heap's report agrees with a raw `userfaultfd(2)` call, whatever the
//! environment. `FAULTLINE_EXPECT_UNPRIVILEGED=1` makes the unprivileged checks mandatory.

mod common;
use common::shadow::{self, drive, Shadow};
use faultline::testing::heap::Call;
use faultline::{GcMode, Heap, HeapConfig};

const UFFD_USER_MODE_ONLY: libc::c_int = 1;

/// A raw `userfaultfd(2)` (closed at once): Ok, or the errno.
fn raw_uffd(flags: libc::c_int) -> Result<(), i32> {
    // SAFETY: plain system call; the descriptor, if any, is closed right away.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags as libc::c_long) };
    if fd >= 0 {
        // SAFETY: closing the descriptor just created.
        unsafe { libc::close(fd as i32) };
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

fn unprivileged_sysctl() -> Option<String> {
    std::fs::read_to_string("/proc/sys/vm/unprivileged_userfaultfd")
        .ok()
        .map(|s| s.trim().to_string())
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// A concurrent heap; it must work (fall back or not) and never open `/dev/userfaultfd`.
fn exercise() -> Heap {
    let heap = Heap::new(HeapConfig::with_heap_size(2 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.debug.verify = true;
        c.debug.stress_every = Some(16);
    }))
    .expect("the heap is created, falling back if it must");
    let t = shadow::register(&heap);
    let mut m = heap.attach();
    let mut sh = Shadow::new(&mut m, t, 11, 1);
    drive(&mut m, &mut sh, 40, u64::MAX);
    heap.wait_for_compaction();
    assert!(heap.flips() >= 40);
    // One check per cycle change this mutator observes (several cycles can pass in one step).
    assert!(sh.checks >= 10, "{} checks", sh.checks);
    m.verify().unwrap();
    assert_eq!(
        heap.arena_stats().calls_total.get(Call::OpenDevUserfaultfd),
        0,
        "the heap never opens /dev/userfaultfd"
    );
    heap
}

#[test]
fn the_heap_reports_the_environment() {
    let raw = raw_uffd(libc::O_CLOEXEC | UFFD_USER_MODE_ONLY);
    let heap = exercise();
    let info = heap.mode_info();
    eprintln!(
        "environment: euid {}, vm.unprivileged_userfaultfd {:?}, raw userfaultfd(UFFD_USER_MODE_ONLY) {:?}, heap {:?}, uses uffd {}, fallback reason {:?}",
        euid(),
        unprivileged_sysctl(),
        raw,
        info.mode,
        heap.uses_userfaultfd(),
        heap.fallback_reason()
    );
    let denied = |errno: i32, needle: &str| {
        assert_eq!(raw, Err(errno), "the filter did not apply");
        assert!(!faultline::Probe::run().available);
        assert!(!heap.uses_userfaultfd());
        assert_eq!(info.mode, GcMode::StopTheWorld);
        let reason = heap
            .fallback_reason()
            .expect("the fallback reason is reported");
        assert!(reason.contains(needle), "{reason}");
        assert!(heap
            .history()
            .iter()
            .all(|c| c.mode == GcMode::StopTheWorld));
    };
    match std::env::var("FAULTLINE_EXPECT_UFFD").ok().as_deref() {
        Some("denied:EPERM") => denied(libc::EPERM, "(EPERM)"),
        Some("denied:ENOSYS") => denied(libc::ENOSYS, "(ENOSYS)"),
        Some("available") => {
            assert_eq!(raw, Ok(()));
            assert!(heap.uses_userfaultfd());
            assert_eq!(info.mode, GcMode::Concurrent, "{info:?}");
            assert_eq!(heap.fallback_reason(), None);
            assert!(heap.history().iter().all(|c| c.mode == GcMode::Concurrent));
        }
        Some(other) => panic!("unknown FAULTLINE_EXPECT_UFFD={other}"),
        None => {
            assert_eq!(raw.is_ok(), heap.uses_userfaultfd(), "{info:?}");
            assert_eq!(raw.is_err(), heap.fallback_reason().is_some());
        }
    }
}

/// With `vm.unprivileged_userfaultfd=0`, an unprivileged process gets EPERM from a plain
/// `userfaultfd(2)` and a descriptor with `UFFD_USER_MODE_ONLY`: the heap (which always asks
/// for user-mode-only) runs concurrently, no root, no sysctl, no `/dev/userfaultfd`.
#[test]
fn user_mode_only_is_what_works_unprivileged() {
    let required = std::env::var("FAULTLINE_EXPECT_UNPRIVILEGED").as_deref() == Ok("1");
    let why_not = if euid() == 0 {
        Some("running as root".to_string())
    } else if unprivileged_sysctl().as_deref() != Some("0") {
        Some(format!(
            "vm.unprivileged_userfaultfd is {:?}, not 0",
            unprivileged_sysctl()
        ))
    } else if raw_uffd(libc::O_CLOEXEC | UFFD_USER_MODE_ONLY).is_err() {
        Some("userfaultfd is denied outright here".to_string())
    } else {
        None
    };
    if let Some(why) = why_not {
        assert!(!required, "FAULTLINE_EXPECT_UNPRIVILEGED=1 but {why}");
        eprintln!("SKIPPED: unprivileged userfaultfd check: {why}");
        return;
    }
    assert_eq!(
        raw_uffd(libc::O_CLOEXEC),
        Err(libc::EPERM),
        "without UFFD_USER_MODE_ONLY an unprivileged open must be refused"
    );
    let heap = exercise();
    assert!(heap.uses_userfaultfd());
    assert_eq!(heap.mode_info().mode, GcMode::Concurrent);
    assert!(heap.history().iter().all(|c| c.mode == GcMode::Concurrent));
    eprintln!(
        "unprivileged (euid {}): concurrent heap on UFFD_USER_MODE_ONLY",
        euid()
    );
}

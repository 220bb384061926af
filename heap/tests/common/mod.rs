//! Helpers shared by the heap's integration tests: scratch mappings, presence checks, the
//! skip notice where userfaultfd is unavailable, and fault injectors.
//!
//! Invariant: every helper works on memory the test itself mapped; nothing here touches an
//! arena page that may be absent (that would fault), except where the name says so.

#![allow(dead_code)]

use faultline_heap::inject::{FaultInjector, Rule};
use faultline_heap::sys::Sys;
use faultline_heap::uffd::Uffd;
use faultline_heap::PAGE_SIZE;
use std::sync::Arc;

/// Whether userfaultfd works here; if not, prints `test`'s skip notice (the torture
/// environments count them) and the test returns.
pub fn uffd_or_skip(test: &str) -> bool {
    match Uffd::available(&Sys::real()) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIPPED: {test}: userfaultfd unavailable here: {e}");
            false
        }
    }
}

/// A disarmed injector of `rules` (`arm` it once the arena is set up).
pub fn injector(rules: Vec<Rule>) -> Arc<FaultInjector> {
    Arc::new(FaultInjector::new(rules, 7).disarmed())
}

/// A private anonymous mapping owned by a test, unmapped on drop.
pub struct Scratch {
    pub base: usize,
    pub len: usize,
}

impl Scratch {
    pub fn new(pages: usize) -> Self {
        let len = pages * PAGE_SIZE;
        // SAFETY: a fresh anonymous mapping at a kernel-chosen address.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap failed");
        Scratch {
            base: p as usize,
            len,
        }
    }
    pub fn page(&self, i: usize) -> usize {
        self.base + i * PAGE_SIZE
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: our own mapping.
        unsafe { libc::munmap(self.base as *mut _, self.len) };
    }
}

/// Whether the page at `addr` is present in this process (mincore).
pub fn present(addr: usize) -> bool {
    let mut v = 0u8;
    // SAFETY: mincore reads page-table state for a page-aligned address we mapped.
    let r = unsafe { libc::mincore(addr as *mut _, PAGE_SIZE, &mut v) };
    assert_eq!(r, 0, "mincore failed");
    v & 1 == 1
}

/// A page-sized buffer filled with `byte`.
pub fn page_of(byte: u8) -> Vec<u8> {
    vec![byte; PAGE_SIZE]
}

/// Read one byte at `addr` (must be present or resolvable).
pub fn read_byte(addr: usize) -> u8 {
    // SAFETY: the caller guarantees the page is mapped or will be resolved.
    unsafe { (addr as *const u8).read_volatile() }
}

/// Whether userfaultfd works here at all (tests that need it are skipped, loudly, otherwise:
/// the denied-environment suite runs the same tests and checks the fallback instead).
pub fn uffd_available() -> bool {
    let ok = faultline_heap::uffd::Uffd::available(&faultline_heap::Sys::real()).is_ok();
    if !ok {
        // CI sets FAULTLINE_REQUIRE_UFFD=1 on machines where uffd must work, so a skip there
        // is a failure rather than a silent pass.
        assert!(
            std::env::var_os("FAULTLINE_REQUIRE_UFFD").is_none(),
            "userfaultfd is unavailable but FAULTLINE_REQUIRE_UFFD is set"
        );
        eprintln!("userfaultfd unavailable here: kernel-level test skipped");
    }
    ok
}

//! The `PAGEMAP_SCAN` ioctl on `/proc/self/pagemap` (Linux 6.7+): a hardware dirty-page tracker
//! when combined with `UFFD_FEATURE_WP_ASYNC` write-protection.
//!
//! Invariants:
//! - the scanner owns one read-only descriptor of `/proc/self/pagemap`, closed on drop;
//! - a scan acts on any address range of the process, whoever registered it: with
//!   `PM_SCAN_WP_MATCHING` it write-protects again the pages written since they were last
//!   protected, so the next scan (by whoever tracks that range: a heap's barrier-free marking
//!   or remembered set) no longer sees those writes, and that owner loses references
//!   (audit round eight: a reference stored into an old object, its page re-protected by a
//!   safe call here, was missed by the next young cycle, which freed its target). So
//!   [`PagemapScanner::scan`] and [`PagemapScanner::written_pages`] are `unsafe`: the
//!   caller owns the write tracking of the range it scans;
//! - results are returned as page-aligned `[start, end)` regions with their category bits; a
//!   scan stopped early (output full or `max_pages` reached) reports `walk_end` < `end`, and
//!   [`PagemapScanner::written_pages`] resumes from there until the range is done.

use core::ffi::c_void;
use std::os::fd::RawFd;

use crate::sys::{Call, Sys, PAGE_SIZE};
use crate::uffd::{abi, check_range, ErrorKind, Op, UffdError};

/// One region reported by the scan.
pub type PageRegion = abi::page_region;

/// Whether the page at `addr` of this process is mapped write-protected by userfaultfd
/// (`/proc/self/pagemap` entry bit 57, `PM_UFFD_WP`), read with a plain `pread`: for tests and
/// diagnostics (`false` if the file cannot be read).
pub fn uffd_wp_bit(addr: usize) -> bool {
    use std::os::unix::fs::FileExt;
    let mut e = [0u8; 8];
    std::fs::File::open("/proc/self/pagemap")
        .and_then(|f| f.read_exact_at(&mut e, (addr / PAGE_SIZE * 8) as u64))
        .is_ok()
        && u64::from_ne_bytes(e) & (1 << 57) != 0
}

/// The outcome of one `PAGEMAP_SCAN` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Regions written into the output slice.
    pub regions: usize,
    /// Where the walk stopped (equal to the range's end when it finished).
    pub walk_end: usize,
}

/// Parameters of one scan.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanArgs {
    /// `PM_SCAN_*` flags.
    pub flags: u64,
    /// Categories that must all match (after inversion).
    pub category_mask: u64,
    /// Categories to invert before matching.
    pub category_inverted: u64,
    /// At least one of these must match (0: no constraint).
    pub category_anyof_mask: u64,
    /// Categories reported in the output.
    pub return_mask: u64,
    /// Stop after this many pages (0: no limit).
    pub max_pages: u64,
}

/// A descriptor of `/proc/self/pagemap` for `PAGEMAP_SCAN`.
#[derive(Debug)]
pub struct PagemapScanner {
    fd: RawFd,
    sys: Sys,
}

impl PagemapScanner {
    /// Open `/proc/self/pagemap`.
    pub fn open(sys: &Sys) -> Result<Self, UffdError> {
        let fd = sys
            .open(c"/proc/self/pagemap", libc::O_RDONLY | libc::O_CLOEXEC)
            .map_err(|e| UffdError::errno(Op::PagemapScan, e))?;
        Ok(Self {
            fd,
            sys: sys.clone(),
        })
    }

    /// One raw `PAGEMAP_SCAN` over `[start, start+len)`.
    ///
    /// # Safety
    /// With `PM_SCAN_WP_MATCHING` in `args.flags`, the caller owns the write tracking of
    /// `[start, start+len)`: re-protecting the pages written there hides those writes from
    /// every later scan, so no one else (a heap of this process, in its barrier-free modes)
    /// may rely on it. Without that flag the scan only reads.
    ///
    /// ```compile_fail,E0133
    /// use faultline_heap::pagemap::{PageRegion, PagemapScanner, ScanArgs};
    /// use faultline_heap::Sys;
    /// let sc = PagemapScanner::open(&Sys::real()).unwrap();
    /// let mut out = [PageRegion::default(); 4];
    /// let _ = sc.scan(0x10000, 4096, ScanArgs { flags: 1, ..ScanArgs::default() }, &mut out);
    /// ```
    pub unsafe fn scan(
        &self,
        start: usize,
        len: usize,
        args: ScanArgs,
        out: &mut [PageRegion],
    ) -> Result<ScanOutcome, UffdError> {
        let op = Op::PagemapScan;
        check_range(op, start, len)?;
        if out.is_empty() {
            return Err(UffdError::new(op, ErrorKind::Invalid));
        }
        let mut a = abi::pm_scan_arg {
            size: core::mem::size_of::<abi::pm_scan_arg>() as u64,
            flags: args.flags,
            start: start as u64,
            end: (start + len) as u64,
            walk_end: 0,
            vec: out.as_mut_ptr() as u64,
            vec_len: out.len() as u64,
            max_pages: args.max_pages,
            category_inverted: args.category_inverted,
            category_mask: args.category_mask,
            category_anyof_mask: args.category_anyof_mask,
            return_mask: args.return_mask,
        };
        // SAFETY: `a` is a live pm_scan_arg whose `vec` points at `out.len()` writable regions.
        let r = unsafe {
            self.sys.ioctl(
                self.fd,
                Call::PagemapScan,
                abi::req::PAGEMAP_SCAN,
                (&raw mut a).cast::<c_void>(),
            )
        }
        .map_err(|e| UffdError::errno(op, e))?;
        Ok(ScanOutcome {
            regions: r as usize,
            walk_end: a.walk_end as usize,
        })
    }

    /// Report every page of `[start, start+len)` written since it was last write-protected,
    /// calling `each(region_start, region_len)`; with `reprotect`, atomically write-protect the
    /// reported pages again (`PM_SCAN_WP_MATCHING`). Needs the range registered WP with
    /// `WP_ASYNC`. Returns the number of written pages.
    ///
    /// # Safety
    /// With `reprotect`, as [`PagemapScanner::scan`] with `PM_SCAN_WP_MATCHING`: the caller
    /// owns the write tracking of the range (a safe call here over a heap's old generation
    /// made its next young cycle free an object an old one still referred to).
    ///
    /// ```compile_fail,E0133
    /// use faultline_heap::pagemap::PagemapScanner;
    /// use faultline_heap::Sys;
    /// let sc = PagemapScanner::open(&Sys::real()).unwrap();
    /// let _ = sc.written_pages(0x10000, 4096, true, |_, _| {});
    /// ```
    pub unsafe fn written_pages(
        &self,
        start: usize,
        len: usize,
        reprotect: bool,
        mut each: impl FnMut(usize, usize),
    ) -> Result<usize, UffdError> {
        let mut buf = [PageRegion::default(); 64];
        let end = start + len;
        let mut at = start;
        let mut pages = 0;
        let mut flags = abi::PM_SCAN_CHECK_WPASYNC;
        if reprotect {
            flags |= abi::PM_SCAN_WP_MATCHING;
        }
        while at < end {
            // SAFETY: the caller's contract (the flags re-protect only with `reprotect`).
            let out = unsafe {
                self.scan(
                    at,
                    end - at,
                    ScanArgs {
                        flags,
                        category_mask: abi::PAGE_IS_WRITTEN,
                        return_mask: abi::PAGE_IS_WRITTEN,
                        ..ScanArgs::default()
                    },
                    &mut buf,
                )
            }?;
            for r in &buf[..out.regions] {
                let (s, e) = (r.start as usize, r.end as usize);
                pages += (e - s) / PAGE_SIZE;
                each(s, e - s);
            }
            if out.walk_end <= at {
                break;
            }
            at = out.walk_end;
        }
        Ok(pages)
    }
}

impl Drop for PagemapScanner {
    fn drop(&mut self) {
        let _ = self.sys.close(self.fd);
    }
}

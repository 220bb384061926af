//! The kernel interface: every system call the heap makes on its memory, its userfaultfd, its
//! memfd and `/proc/self/pagemap` goes through [`Kernel`].
//!
//! This module owns the [`Kernel`] trait, [`Call`] (one kind per system call or ioctl, for
//! counting and fault injection), [`RealKernel`] and [`Sys`]. Two kernels exist: [`RealKernel`]
//! (the system calls themselves) and [`crate::inject::FaultInjector`] (a wrapper that makes
//! chosen calls fail with chosen errors, so that every error path can be driven by a test even
//! where the kernel cannot be made to fail on demand). [`Sys`] pairs a kernel with a set of
//! [`CallCounters`] and is what the rest of the crate holds.
//!
//! Invariants:
//! - every mapping (mmap family, madvise, process_madvise), userfaultfd, memfd (including the `lseek` / `pread`
//!   walk that copies it after fork), `PAGEMAP_SCAN` and presence-check (`mincore`, pagemap
//!   `pread`) call of the heap goes through [`Sys`], so its counters are a complete record of
//!   those calls (what the statistics report as "register/unregister/mmap-family calls since
//!   creation"). Plumbing calls that touch no heap memory are made directly: the eventfd and
//!   `poll(2)` of the fault reader thread ([`crate::fault::reader`]), `sigaction` of the SIGBUS
//!   handler ([`crate::fault::sigbus`]), `pthread_atfork` ([`crate::fork`]), `sysconf`
//!   ([`os_page_size`]), and the free function [`crate::arena::page_present`], which asks the
//!   real kernel uncounted (an arena's own checks use its [`Sys`]);
//! - every method is async-signal-safe in [`RealKernel`] (plain syscalls, no allocation, no
//!   locks), so the SIGBUS fault path may use it;
//! - errors are returned as [`Errno`], never read from a thread-local `errno` later;
//! - [`Call`] discriminants index the counters: [`Call::ALL`] lists every variant in
//!   declaration order, and new variants are appended.

use core::ffi::{c_int, c_void, CStr};
use core::sync::atomic::{AtomicU64, Ordering};
use std::os::fd::RawFd;
use std::sync::Arc;

pub use nix::errno::Errno;

/// One kind of kernel call, for counting and for fault injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Call {
    /// `userfaultfd(2)`.
    Userfaultfd,
    /// The `/dev/userfaultfd` fallback: counted once per attempt and once for its
    /// `USERFAULTFD_IOC_NEW` ioctl (injected there); opening the node counts as [`Call::Open`].
    OpenDevUserfaultfd,
    /// `UFFDIO_API`.
    UffdApi,
    /// `UFFDIO_REGISTER`.
    UffdRegister,
    /// `UFFDIO_UNREGISTER`.
    UffdUnregister,
    /// `UFFDIO_WAKE`.
    UffdWake,
    /// `UFFDIO_COPY`.
    UffdCopy,
    /// `UFFDIO_ZEROPAGE`.
    UffdZeropage,
    /// `UFFDIO_MOVE`.
    UffdMove,
    /// `UFFDIO_WRITEPROTECT`.
    UffdWriteprotect,
    /// `UFFDIO_CONTINUE`.
    UffdContinue,
    /// `UFFDIO_POISON`.
    UffdPoison,
    /// The `PAGEMAP_SCAN` ioctl on `/proc/self/pagemap`.
    PagemapScan,
    /// `read(2)` of userfaultfd messages.
    Read,
    /// `open(2)` (`/dev/userfaultfd`, `/proc/self/pagemap`).
    Open,
    /// `close(2)`.
    Close,
    /// `mmap(2)`.
    Mmap,
    /// `munmap(2)`.
    Munmap,
    /// `mremap(2)`.
    Mremap,
    /// `mprotect(2)`.
    Mprotect,
    /// `madvise(2)`.
    Madvise,
    /// `memfd_create(2)`.
    MemfdCreate,
    /// `ftruncate(2)`.
    Ftruncate,
    /// `fallocate(2)` (the hole punch that releases memfd pages).
    Fallocate,
    /// `lseek(2)` with `SEEK_DATA` / `SEEK_HOLE` (the memfd walk of
    /// [`crate::arena::VolatileArena::detach_after_fork`]).
    Lseek,
    /// `pread(2)`: a `/proc/self/pagemap` entry (memfd presence check) or memfd contents
    /// (the copy of [`crate::arena::VolatileArena::detach_after_fork`]).
    Pread,
    /// `mincore(2)` (anonymous presence check of
    /// [`crate::arena::VolatileArena::page_mapped`]).
    Mincore,
    /// `pidfd_open(2)` of the process itself (the descriptor [`Call::ProcessMadvise`] needs).
    PidfdOpen,
    /// `process_madvise(2)` of the process itself: `MADV_DONTNEED` of many ranges in one call
    /// ([`crate::arena::VolatileArena::release_many`]).
    ProcessMadvise,
}

impl Call {
    /// Every call kind, in declaration order.
    pub const ALL: [Call; 29] = [
        Call::Userfaultfd,
        Call::OpenDevUserfaultfd,
        Call::UffdApi,
        Call::UffdRegister,
        Call::UffdUnregister,
        Call::UffdWake,
        Call::UffdCopy,
        Call::UffdZeropage,
        Call::UffdMove,
        Call::UffdWriteprotect,
        Call::UffdContinue,
        Call::UffdPoison,
        Call::PagemapScan,
        Call::Read,
        Call::Open,
        Call::Close,
        Call::Mmap,
        Call::Munmap,
        Call::Mremap,
        Call::Mprotect,
        Call::Madvise,
        Call::MemfdCreate,
        Call::Ftruncate,
        Call::Fallocate,
        Call::Lseek,
        Call::Pread,
        Call::Mincore,
        Call::PidfdOpen,
        Call::ProcessMadvise,
    ];
    /// Number of call kinds.
    pub const COUNT: usize = Self::ALL.len();

    /// Short lowercase name (used in statistics and JSON).
    pub const fn name(self) -> &'static str {
        match self {
            Call::Userfaultfd => "userfaultfd",
            Call::OpenDevUserfaultfd => "dev_userfaultfd",
            Call::UffdApi => "api",
            Call::UffdRegister => "register",
            Call::UffdUnregister => "unregister",
            Call::UffdWake => "wake",
            Call::UffdCopy => "copy",
            Call::UffdZeropage => "zeropage",
            Call::UffdMove => "move",
            Call::UffdWriteprotect => "writeprotect",
            Call::UffdContinue => "continue",
            Call::UffdPoison => "poison",
            Call::PagemapScan => "pagemap_scan",
            Call::Read => "read",
            Call::Open => "open",
            Call::Close => "close",
            Call::Mmap => "mmap",
            Call::Munmap => "munmap",
            Call::Mremap => "mremap",
            Call::Mprotect => "mprotect",
            Call::Madvise => "madvise",
            Call::MemfdCreate => "memfd_create",
            Call::Ftruncate => "ftruncate",
            Call::Fallocate => "fallocate",
            Call::Lseek => "lseek",
            Call::Pread => "pread",
            Call::Mincore => "mincore",
            Call::PidfdOpen => "pidfd_open",
            Call::ProcessMadvise => "process_madvise",
        }
    }

    /// True for the calls that change the address-space layout (VMAs) and take the
    /// `mmap_lock` for writing: mmap, munmap, mremap, mprotect.
    pub const fn is_mmap_family(self) -> bool {
        matches!(
            self,
            Call::Mmap | Call::Munmap | Call::Mremap | Call::Mprotect
        )
    }
}

/// The system calls the heap makes.
///
/// # Safety
/// The heap trusts every successful call: an implementation must do what the call it names
/// does (a mapping it returns is that mapping, a count it returns is of bytes really moved, an
/// ioctl that returns success did its work), or fail with an error the kernel may return for
/// that call. It must be async-signal-safe if it is used by an arena whose faults are
/// delivered by SIGBUS (no allocation, no lock a mutator may hold). An implementation that
/// lies (a fake address, a COPY that copied nothing) lets the heap corrupt memory, so safe code
/// cannot provide one:
///
/// ```compile_fail,E0200
/// use faultline_heap::sys::{Call, Errno, Kernel, RealKernel};
/// use std::ffi::{c_int, c_void, CStr};
/// use std::os::fd::RawFd;
/// type R<T> = Result<T, Errno>;
/// struct Liar; // every call "succeeds", nothing happens
/// impl Kernel for Liar {
///     fn userfaultfd(&self, f: c_int) -> R<RawFd> { RealKernel.userfaultfd(f) }
///     fn open(&self, p: &CStr, f: c_int) -> R<RawFd> { RealKernel.open(p, f) }
///     unsafe fn ioctl(&self, _: RawFd, _: Call, _: u64, _: *mut c_void) -> R<c_int> { Ok(0) }
///     fn read(&self, _: RawFd, _: &mut [u8]) -> R<usize> { Ok(0) }
///     fn close(&self, _: RawFd) -> R<()> { Ok(()) }
///     unsafe fn mmap(&self, _: *mut c_void, _: usize, _: c_int, _: c_int, _: RawFd, _: i64)
///         -> R<*mut c_void> { Ok(0x1000 as *mut c_void) }
///     unsafe fn munmap(&self, _: *mut c_void, _: usize) -> R<()> { Ok(()) }
///     unsafe fn mremap(&self, o: *mut c_void, _: usize, _: usize, _: c_int, _: *mut c_void)
///         -> R<*mut c_void> { Ok(o) }
///     unsafe fn mprotect(&self, _: *mut c_void, _: usize, _: c_int) -> R<()> { Ok(()) }
///     unsafe fn madvise(&self, _: *mut c_void, _: usize, _: c_int) -> R<()> { Ok(()) }
///     fn memfd_create(&self, _: &CStr, _: u32) -> R<RawFd> { Ok(0) }
///     fn ftruncate(&self, _: RawFd, _: i64) -> R<()> { Ok(()) }
///     fn fallocate(&self, _: RawFd, _: c_int, _: i64, _: i64) -> R<()> { Ok(()) }
/// }
/// ```
pub unsafe trait Kernel: Send + Sync + 'static {
    /// `userfaultfd(2)`.
    fn userfaultfd(&self, flags: c_int) -> Result<RawFd, Errno>;
    /// `open(2)` (used for `/dev/userfaultfd` and `/proc/self/pagemap`).
    fn open(&self, path: &CStr, flags: c_int) -> Result<RawFd, Errno>;
    /// `ioctl(2)`; `call` names the request for counting and injection.
    ///
    /// # Safety
    /// `arg` must be what `request` expects: a pointer to a live, writable struct of the
    /// request's type, or an integer argument cast to a pointer for `_IO` requests.
    unsafe fn ioctl(
        &self,
        fd: RawFd,
        call: Call,
        request: u64,
        arg: *mut c_void,
    ) -> Result<c_int, Errno>;
    /// `read(2)` into `buf`.
    fn read(&self, fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno>;
    /// `close(2)`.
    fn close(&self, fd: RawFd) -> Result<(), Errno>;
    /// `mmap(2)`.
    ///
    /// # Safety
    /// As `mmap(2)`: a `MAP_FIXED` mapping replaces whatever was at `addr`.
    unsafe fn mmap(
        &self,
        addr: *mut c_void,
        len: usize,
        prot: c_int,
        flags: c_int,
        fd: RawFd,
        offset: i64,
    ) -> Result<*mut c_void, Errno>;
    /// `munmap(2)`.
    ///
    /// # Safety
    /// Nothing may use the range afterwards.
    unsafe fn munmap(&self, addr: *mut c_void, len: usize) -> Result<(), Errno>;
    /// `mremap(2)`.
    ///
    /// # Safety
    /// As `mremap(2)`; the old range's contents move.
    unsafe fn mremap(
        &self,
        old: *mut c_void,
        old_len: usize,
        new_len: usize,
        flags: c_int,
        new_addr: *mut c_void,
    ) -> Result<*mut c_void, Errno>;
    /// `mprotect(2)`.
    ///
    /// # Safety
    /// Nothing may rely on the old protection of the range.
    unsafe fn mprotect(&self, addr: *mut c_void, len: usize, prot: c_int) -> Result<(), Errno>;
    /// `madvise(2)`.
    ///
    /// # Safety
    /// `MADV_DONTNEED` discards the contents of the range.
    unsafe fn madvise(&self, addr: *mut c_void, len: usize, advice: c_int) -> Result<(), Errno>;
    /// `memfd_create(2)`.
    fn memfd_create(&self, name: &CStr, flags: u32) -> Result<RawFd, Errno>;
    /// `ftruncate(2)`.
    fn ftruncate(&self, fd: RawFd, len: i64) -> Result<(), Errno>;
    /// `fallocate(2)`.
    fn fallocate(&self, fd: RawFd, mode: c_int, offset: i64, len: i64) -> Result<(), Errno>;
    /// `lseek(2)`; returns the new offset. The arena uses `SEEK_DATA` / `SEEK_HOLE` on its memfd.
    ///
    /// The default makes the real call (so a kernel written before this method existed keeps
    /// its old behaviour); a wrapping kernel should forward to its inner kernel.
    fn lseek(&self, fd: RawFd, offset: i64, whence: c_int) -> Result<i64, Errno> {
        real_lseek(fd, offset, whence)
    }
    /// `pread(2)` into `buf` at file offset `offset`; returns the bytes read (0 at end of file).
    ///
    /// The default makes the real call, as for [`Kernel::lseek`].
    fn pread(&self, fd: RawFd, buf: &mut [u8], offset: i64) -> Result<usize, Errno> {
        real_pread(fd, buf, offset)
    }
    /// `mincore(2)` of `[addr, addr+len)` into `vec` (one byte per page; bit 0 set when the
    /// page is resident). Only page tables are read, never the memory itself. Fails with
    /// `EINVAL` without calling the kernel when `vec` holds fewer than `len / PAGE_SIZE` bytes
    /// (rounded up).
    ///
    /// The default makes the real call, as for [`Kernel::lseek`].
    fn mincore(&self, addr: usize, len: usize, vec: &mut [u8]) -> Result<(), Errno> {
        real_mincore(addr, len, vec)
    }
    /// `pidfd_open(2)` of process `pid` (flags 0); the arena opens one of itself.
    ///
    /// The default makes the real call, as for [`Kernel::lseek`].
    fn pidfd_open(&self, pid: libc::pid_t) -> Result<RawFd, Errno> {
        real_pidfd_open(pid)
    }
    /// `process_madvise(2)` of the process `pidfd` names with `advice` over every range of
    /// `iov`, in order; returns the bytes advised (fewer than the ranges hold when the kernel
    /// stopped at an error after advising some).
    ///
    /// The default makes the real call, as for [`Kernel::lseek`].
    ///
    /// # Safety
    /// As [`Kernel::madvise`] for every range of `iov`.
    unsafe fn process_madvise(
        &self,
        pidfd: RawFd,
        iov: &[libc::iovec],
        advice: c_int,
    ) -> Result<usize, Errno> {
        // SAFETY: forwarded from the caller's contract.
        unsafe { real_process_madvise(pidfd, iov, advice) }
    }
}

fn real_pidfd_open(pid: libc::pid_t) -> Result<RawFd, Errno> {
    // SAFETY: pidfd_open passes no memory; a bad pid fails with ESRCH.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r as RawFd)
    }
}

/// # Safety
/// As [`Kernel::madvise`] for every range of `iov`.
unsafe fn real_process_madvise(
    pidfd: RawFd,
    iov: &[libc::iovec],
    advice: c_int,
) -> Result<usize, Errno> {
    // SAFETY: the kernel reads `iov.len()` iovecs from `iov` (a live slice); what advising the
    // ranges does to memory is the caller's contract.
    let r = unsafe {
        libc::syscall(
            libc::SYS_process_madvise,
            pidfd,
            iov.as_ptr(),
            iov.len(),
            advice,
            0,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r as usize)
    }
}

fn real_lseek(fd: RawFd, offset: i64, whence: c_int) -> Result<i64, Errno> {
    // SAFETY: lseek passes no memory; on a bad descriptor it fails with EBADF.
    let r = unsafe { libc::lseek(fd, offset, whence) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

fn real_pread(fd: RawFd, buf: &mut [u8], offset: i64) -> Result<usize, Errno> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let r = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), offset) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r as usize)
    }
}

fn real_mincore(addr: usize, len: usize, vec: &mut [u8]) -> Result<(), Errno> {
    // Pages are at least PAGE_SIZE bytes on every Linux target, so this many bytes always
    // suffice for the kernel's one byte per page.
    if vec.len() < len.div_ceil(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: mincore only reads page-table state of the range (an unmapped or unaligned range
    // is an error, not a memory access) and writes at most `len / page size` bytes (rounded up)
    // into `vec`, which holds at least that many.
    check(unsafe { libc::mincore(addr as *mut c_void, len, vec.as_mut_ptr()) }).map(drop)
}

/// The real system calls.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealKernel;

fn check(ret: c_int) -> Result<c_int, Errno> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

// SAFETY: every call is the real system call.
unsafe impl Kernel for RealKernel {
    fn userfaultfd(&self, flags: c_int) -> Result<RawFd, Errno> {
        // SAFETY: the syscall takes an integer and returns a new descriptor or -1.
        let r = unsafe { libc::syscall(libc::SYS_userfaultfd, flags as libc::c_long) };
        if r < 0 {
            Err(Errno::last())
        } else {
            Ok(r as RawFd)
        }
    }

    fn open(&self, path: &CStr, flags: c_int) -> Result<RawFd, Errno> {
        // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
        check(unsafe { libc::open(path.as_ptr(), flags) })
    }

    unsafe fn ioctl(
        &self,
        fd: RawFd,
        _call: Call,
        request: u64,
        arg: *mut c_void,
    ) -> Result<c_int, Errno> {
        // SAFETY: forwarded from the caller's contract on `arg`.
        check(unsafe { libc::ioctl(fd, request as libc::Ioctl, arg) })
    }

    fn read(&self, fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if r < 0 {
            Err(Errno::last())
        } else {
            Ok(r as usize)
        }
    }

    fn close(&self, fd: RawFd) -> Result<(), Errno> {
        // SAFETY: closing a descriptor number has no memory-safety effect on this process.
        check(unsafe { libc::close(fd) }).map(drop)
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
        let p = unsafe { libc::mmap(addr, len, prot, flags, fd, offset) };
        if p == libc::MAP_FAILED {
            Err(Errno::last())
        } else {
            Ok(p)
        }
    }

    unsafe fn munmap(&self, addr: *mut c_void, len: usize) -> Result<(), Errno> {
        // SAFETY: forwarded from the caller's contract.
        check(unsafe { libc::munmap(addr, len) }).map(drop)
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
        let p = unsafe { libc::mremap(old, old_len, new_len, flags, new_addr) };
        if p == libc::MAP_FAILED {
            Err(Errno::last())
        } else {
            Ok(p)
        }
    }

    unsafe fn mprotect(&self, addr: *mut c_void, len: usize, prot: c_int) -> Result<(), Errno> {
        // SAFETY: forwarded from the caller's contract.
        check(unsafe { libc::mprotect(addr, len, prot) }).map(drop)
    }

    unsafe fn madvise(&self, addr: *mut c_void, len: usize, advice: c_int) -> Result<(), Errno> {
        // SAFETY: forwarded from the caller's contract.
        check(unsafe { libc::madvise(addr, len, advice) }).map(drop)
    }

    fn memfd_create(&self, name: &CStr, flags: u32) -> Result<RawFd, Errno> {
        // SAFETY: `name` is a valid NUL-terminated string.
        check(unsafe { libc::memfd_create(name.as_ptr(), flags) })
    }

    fn ftruncate(&self, fd: RawFd, len: i64) -> Result<(), Errno> {
        // SAFETY: no memory is passed.
        check(unsafe { libc::ftruncate(fd, len) }).map(drop)
    }

    fn fallocate(&self, fd: RawFd, mode: c_int, offset: i64, len: i64) -> Result<(), Errno> {
        // SAFETY: no memory is passed.
        check(unsafe { libc::fallocate(fd, mode, offset, len) }).map(drop)
    }

    // lseek, pread and mincore: the trait's defaults make the real calls.
}

/// Atomic per-call counters: how many times each [`Call`] was issued (successful or not).
#[derive(Debug)]
pub struct CallCounters {
    counts: [AtomicU64; Call::COUNT],
}

impl Default for CallCounters {
    fn default() -> Self {
        Self {
            counts: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl CallCounters {
    /// Count one call of `call`.
    #[inline]
    pub fn bump(&self, call: Call) {
        self.counts[call as usize].fetch_add(1, Ordering::Relaxed);
    }
    /// How many calls of `call` so far.
    pub fn get(&self, call: Call) -> u64 {
        self.counts[call as usize].load(Ordering::Relaxed)
    }
    /// A copy of all counters.
    pub fn snapshot(&self) -> CallSnapshot {
        CallSnapshot {
            counts: core::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
        }
    }
}

/// A point-in-time copy of [`CallCounters`]; subtract two to get the calls of an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallSnapshot {
    counts: [u64; Call::COUNT],
}

impl CallSnapshot {
    /// Calls of `call` in this snapshot.
    pub fn get(&self, call: Call) -> u64 {
        self.counts[call as usize]
    }
    /// Sum of mmap, munmap, mremap and mprotect.
    pub fn mmap_family(&self) -> u64 {
        Call::ALL
            .iter()
            .filter(|c| c.is_mmap_family())
            .map(|&c| self.get(c))
            .sum()
    }
    /// `self - earlier`, call by call.
    pub fn since(&self, earlier: &CallSnapshot) -> CallSnapshot {
        CallSnapshot {
            counts: core::array::from_fn(|i| self.counts[i].saturating_sub(earlier.counts[i])),
        }
    }
    /// (name, count) pairs of the non-zero counters.
    pub fn nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Call::ALL
            .iter()
            .map(|&c| (c.name(), self.get(c)))
            .filter(|&(_, n)| n > 0)
    }
}

/// A kernel plus the counters of the calls made through it. Cheap to clone (two `Arc`s).
#[derive(Clone)]
pub struct Sys {
    kernel: Arc<dyn Kernel>,
    counters: Arc<CallCounters>,
}

impl core::fmt::Debug for Sys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sys").finish_non_exhaustive()
    }
}

impl Default for Sys {
    fn default() -> Self {
        Self::real()
    }
}

impl Sys {
    /// The real kernel with fresh counters.
    pub fn real() -> Self {
        Self::new(Arc::new(RealKernel))
    }
    /// `kernel` with fresh counters.
    pub fn new(kernel: Arc<dyn Kernel>) -> Self {
        Self {
            kernel,
            counters: Arc::new(CallCounters::default()),
        }
    }
    /// The same kernel with fresh counters (for a component that reports its own calls).
    pub fn with_fresh_counters(&self) -> Self {
        Self::new(self.kernel.clone())
    }
    /// The counters of calls made through this handle (and its clones).
    pub fn counters(&self) -> &CallCounters {
        &self.counters
    }
    /// The kernel, for components that count separately.
    pub fn kernel(&self) -> &Arc<dyn Kernel> {
        &self.kernel
    }

    pub(crate) fn userfaultfd(&self, flags: c_int) -> Result<RawFd, Errno> {
        self.counters.bump(Call::Userfaultfd);
        self.kernel.userfaultfd(flags)
    }
    pub(crate) fn open(&self, path: &CStr, flags: c_int) -> Result<RawFd, Errno> {
        self.counters.bump(Call::Open);
        self.kernel.open(path, flags)
    }
    /// # Safety
    /// See [`Kernel::ioctl`].
    pub(crate) unsafe fn ioctl(
        &self,
        fd: RawFd,
        call: Call,
        request: u64,
        arg: *mut c_void,
    ) -> Result<c_int, Errno> {
        self.counters.bump(call);
        // SAFETY: forwarded from the caller's contract.
        unsafe { self.kernel.ioctl(fd, call, request, arg) }
    }
    pub(crate) fn read(&self, fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
        self.counters.bump(Call::Read);
        self.kernel.read(fd, buf)
    }
    pub(crate) fn close(&self, fd: RawFd) -> Result<(), Errno> {
        self.counters.bump(Call::Close);
        self.kernel.close(fd)
    }
    /// # Safety
    /// See [`Kernel::mmap`].
    pub(crate) unsafe fn mmap(
        &self,
        addr: *mut c_void,
        len: usize,
        prot: c_int,
        flags: c_int,
        fd: RawFd,
        offset: i64,
    ) -> Result<*mut c_void, Errno> {
        self.counters.bump(Call::Mmap);
        // SAFETY: forwarded from the caller's contract.
        unsafe { self.kernel.mmap(addr, len, prot, flags, fd, offset) }
    }
    /// # Safety
    /// See [`Kernel::munmap`].
    pub(crate) unsafe fn munmap(&self, addr: *mut c_void, len: usize) -> Result<(), Errno> {
        self.counters.bump(Call::Munmap);
        // SAFETY: forwarded from the caller's contract.
        unsafe { self.kernel.munmap(addr, len) }
    }
    /// `mremap(2)`, counted (used only by the per-cycle choreography baseline).
    ///
    /// # Safety
    /// See [`Kernel::mremap`].
    pub unsafe fn mremap(
        &self,
        old: *mut c_void,
        old_len: usize,
        new_len: usize,
        flags: c_int,
        new_addr: *mut c_void,
    ) -> Result<*mut c_void, Errno> {
        self.counters.bump(Call::Mremap);
        // SAFETY: forwarded from the caller's contract.
        unsafe { self.kernel.mremap(old, old_len, new_len, flags, new_addr) }
    }
    /// `mprotect(2)`, counted (used only by the per-cycle choreography baseline).
    ///
    /// # Safety
    /// See [`Kernel::mprotect`].
    pub unsafe fn mprotect(&self, addr: *mut c_void, len: usize, prot: c_int) -> Result<(), Errno> {
        self.counters.bump(Call::Mprotect);
        // SAFETY: forwarded from the caller's contract.
        unsafe { self.kernel.mprotect(addr, len, prot) }
    }
    /// # Safety
    /// See [`Kernel::madvise`].
    pub(crate) unsafe fn madvise(
        &self,
        addr: *mut c_void,
        len: usize,
        advice: c_int,
    ) -> Result<(), Errno> {
        self.counters.bump(Call::Madvise);
        // SAFETY: forwarded from the caller's contract.
        unsafe { self.kernel.madvise(addr, len, advice) }
    }
    pub(crate) fn memfd_create(&self, name: &CStr, flags: u32) -> Result<RawFd, Errno> {
        self.counters.bump(Call::MemfdCreate);
        self.kernel.memfd_create(name, flags)
    }
    pub(crate) fn ftruncate(&self, fd: RawFd, len: i64) -> Result<(), Errno> {
        self.counters.bump(Call::Ftruncate);
        self.kernel.ftruncate(fd, len)
    }
    pub(crate) fn fallocate(
        &self,
        fd: RawFd,
        mode: c_int,
        offset: i64,
        len: i64,
    ) -> Result<(), Errno> {
        self.counters.bump(Call::Fallocate);
        self.kernel.fallocate(fd, mode, offset, len)
    }
    pub(crate) fn lseek(&self, fd: RawFd, offset: i64, whence: c_int) -> Result<i64, Errno> {
        self.counters.bump(Call::Lseek);
        self.kernel.lseek(fd, offset, whence)
    }
    pub(crate) fn pread(&self, fd: RawFd, buf: &mut [u8], offset: i64) -> Result<usize, Errno> {
        self.counters.bump(Call::Pread);
        self.kernel.pread(fd, buf, offset)
    }
    pub(crate) fn mincore(&self, addr: usize, len: usize, vec: &mut [u8]) -> Result<(), Errno> {
        self.counters.bump(Call::Mincore);
        self.kernel.mincore(addr, len, vec)
    }
    pub(crate) fn pidfd_open(&self, pid: libc::pid_t) -> Result<RawFd, Errno> {
        self.counters.bump(Call::PidfdOpen);
        self.kernel.pidfd_open(pid)
    }
    /// # Safety
    /// See [`Kernel::process_madvise`].
    pub(crate) unsafe fn process_madvise(
        &self,
        pidfd: RawFd,
        iov: &[libc::iovec],
        advice: c_int,
    ) -> Result<usize, Errno> {
        self.counters.bump(Call::ProcessMadvise);
        // SAFETY: forwarded from the caller's contract.
        unsafe { self.kernel.process_madvise(pidfd, iov, advice) }
    }
}

/// The system page size (4096 on every platform Faultline targets; checked at arena creation).
pub const PAGE_SIZE: usize = 4096;

/// `a` rounded down to a page boundary.
#[inline]
pub const fn page_down(a: usize) -> usize {
    a & !(PAGE_SIZE - 1)
}

/// `a` rounded up to a page boundary.
#[inline]
pub const fn page_up(a: usize) -> usize {
    a.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

/// The page size the kernel reports.
pub fn os_page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let r = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if r <= 0 {
        PAGE_SIZE
    } else {
        r as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_call_in_declaration_order_with_distinct_names() {
        for (i, c) in Call::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{c:?}");
        }
        let mut names: Vec<_> = Call::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Call::COUNT);
    }

    #[test]
    fn mincore_refuses_a_short_vector_without_calling_the_kernel() {
        let mut v = [0u8; 1];
        assert_eq!(
            RealKernel.mincore(0, 2 * PAGE_SIZE, &mut v),
            Err(Errno::EINVAL)
        );
    }
}

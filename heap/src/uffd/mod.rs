//! Safe wrappers over every userfaultfd operation the collector uses.
//!
//! A [`Uffd`] owns one userfaultfd descriptor whose API has been negotiated. Every operation
//! checks its arguments (page alignment, non-empty, no overflow) and the negotiated features
//! *before* calling the kernel, and returns a typed [`UffdError`] otherwise; every call goes
//! through [`Sys`], which counts it per kind.
//!
//! Invariants:
//! - the descriptor is opened with `O_CLOEXEC | UFFD_USER_MODE_ONLY`: only user-mode faults are
//!   reported, so an unprivileged process can create it whatever `vm.unprivileged_userfaultfd`
//!   says, and kernel-mode accesses to a missing page fail with EFAULT instead of blocking;
//! - `UFFDIO_API` is called exactly once per descriptor (the kernel refuses a second call), so
//!   the features the kernel *offers* are read on a throwaway descriptor first
//!   ([`Uffd::available`]) and the real descriptor requests a subset of them;
//! - `fd` holds -1 once [`Uffd::close`] ran; every operation then fails with
//!   [`ErrorKind::Closed`] without touching the kernel. `close` must not race with other
//!   operations on the same `Uffd` (the owner guarantees it; `Drop` trivially does);
//! - the operations that change what a range's pages hold or do (`register`, `copy`,
//!   `move_pages`) are `unsafe`; the others act only on ranges registered with this
//!   descriptor (the kernel checks), so `register`'s contract (the caller owns and resolves
//!   the range) covers them;
//! - all operations are async-signal-safe (no allocation, no locks) when the kernel is, so the
//!   SIGBUS handler may call them.

pub mod abi;
mod error;
mod features;

use core::ffi::c_void;
use core::sync::atomic::{AtomicI32, Ordering};
use std::os::fd::RawFd;

pub(crate) use error::fill_result;
pub use error::{ErrorKind, Op, UffdError};
pub use features::{
    ContinueMode, CopyMode, Feature, Features, IoctlKind, IoctlSet, MoveMode, RegisterMode,
};

use crate::sys::{Call, Errno, Sys, PAGE_SIZE};

/// How the descriptor was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMethod {
    /// The `userfaultfd(2)` system call.
    Syscall,
    /// `/dev/userfaultfd` and its `USERFAULTFD_IOC_NEW` ioctl (Linux 6.1+).
    DevNode,
}

/// What to ask of `UFFDIO_API`.
#[derive(Debug, Clone, Copy, Default)]
pub struct UffdOptions {
    /// Features without which opening fails with [`ErrorKind::NotNegotiated`].
    pub required: Features,
    /// Features requested if the kernel offers them.
    pub optional: Features,
    /// Open with `O_NONBLOCK` (reads return no events instead of blocking).
    pub nonblocking: bool,
    /// Try `/dev/userfaultfd` if the system call is refused (never needed on a kernel with
    /// `UFFD_USER_MODE_ONLY`; off by default).
    pub allow_dev_node: bool,
}

/// A page fault or an event read from the descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UffdEvent {
    /// A thread faulted on a registered page and waits for it to be resolved.
    PageFault {
        /// The faulting address (page aligned unless EXACT_ADDRESS was negotiated).
        address: usize,
        /// The access was a write.
        write: bool,
        /// The fault is a write-protect fault.
        wp: bool,
        /// The fault is a minor fault (page in the page cache, not mapped).
        minor: bool,
        /// The faulting thread, with THREAD_ID.
        thread_id: Option<u32>,
    },
    /// The process forked; `uffd` is the child's descriptor (EVENT_FORK).
    Fork {
        /// The child's userfaultfd.
        uffd: RawFd,
    },
    /// A registered range was mremap'ed (EVENT_REMAP).
    Remap {
        /// Old start address.
        from: usize,
        /// New start address.
        to: usize,
        /// Length in bytes.
        len: usize,
    },
    /// A registered range was released by madvise (EVENT_REMOVE).
    Remove {
        /// First byte.
        start: usize,
        /// One past the last byte.
        end: usize,
    },
    /// A registered range was unmapped (EVENT_UNMAP).
    Unmap {
        /// First byte.
        start: usize,
        /// One past the last byte.
        end: usize,
    },
    /// An event code Faultline does not know.
    Unknown(u8),
}

impl UffdEvent {
    /// Decode one kernel message.
    pub fn decode(msg: &abi::uffd_msg, thread_ids: bool) -> Self {
        let [a0, a1, a2] = msg.arg;
        match msg.event {
            abi::UFFD_EVENT_PAGEFAULT => UffdEvent::PageFault {
                address: a1 as usize,
                write: a0 & abi::UFFD_PAGEFAULT_FLAG_WRITE != 0,
                wp: a0 & abi::UFFD_PAGEFAULT_FLAG_WP != 0,
                minor: a0 & abi::UFFD_PAGEFAULT_FLAG_MINOR != 0,
                thread_id: thread_ids.then_some(a2 as u32),
            },
            abi::UFFD_EVENT_FORK => UffdEvent::Fork {
                uffd: a0 as u32 as RawFd,
            },
            abi::UFFD_EVENT_REMAP => UffdEvent::Remap {
                from: a0 as usize,
                to: a1 as usize,
                len: a2 as usize,
            },
            abi::UFFD_EVENT_REMOVE => UffdEvent::Remove {
                start: a0 as usize,
                end: a1 as usize,
            },
            abi::UFFD_EVENT_UNMAP => UffdEvent::Unmap {
                start: a0 as usize,
                end: a1 as usize,
            },
            other => UffdEvent::Unknown(other),
        }
    }
}

/// Check that `[addr, addr+len)` is a non-empty, page-aligned, non-overflowing range.
pub fn check_range(op: Op, addr: usize, len: usize) -> Result<(), UffdError> {
    if len == 0
        || !addr.is_multiple_of(PAGE_SIZE)
        || !len.is_multiple_of(PAGE_SIZE)
        || addr.checked_add(len).is_none()
    {
        return Err(UffdError::new(op, ErrorKind::Unaligned { addr, len }));
    }
    Ok(())
}

/// One negotiated userfaultfd descriptor.
#[derive(Debug)]
pub struct Uffd {
    fd: AtomicI32,
    features: Features,
    ioctls: IoctlSet,
    method: OpenMethod,
    sys: Sys,
}

impl Uffd {
    fn open_raw(
        sys: &Sys,
        nonblocking: bool,
        allow_dev: bool,
    ) -> Result<(RawFd, OpenMethod), UffdError> {
        let mut flags = libc::O_CLOEXEC | abi::UFFD_USER_MODE_ONLY;
        if nonblocking {
            flags |= libc::O_NONBLOCK;
        }
        match sys.userfaultfd(flags) {
            Ok(fd) => Ok((fd, OpenMethod::Syscall)),
            Err(e) if allow_dev && matches!(e, Errno::EPERM | Errno::ENOSYS) => {
                sys.counters().bump(Call::OpenDevUserfaultfd);
                let dev = sys
                    .open(c"/dev/userfaultfd", libc::O_RDWR | libc::O_CLOEXEC)
                    .map_err(|_| UffdError::errno(Op::Open, e))?;
                // SAFETY: USERFAULTFD_IOC_NEW is an `_IO` request whose argument is the open
                // flags passed by value.
                let r = unsafe {
                    sys.ioctl(
                        dev,
                        Call::OpenDevUserfaultfd,
                        abi::req::DEV_NEW,
                        flags as usize as *mut c_void,
                    )
                };
                let _ = sys.close(dev);
                r.map(|fd| (fd, OpenMethod::DevNode))
                    .map_err(|e2| UffdError::errno(Op::Open, e2))
            }
            Err(e) => Err(UffdError::errno(Op::Open, e)),
        }
    }

    fn api(sys: &Sys, fd: RawFd, features: Features) -> Result<(Features, IoctlSet), UffdError> {
        let mut api = abi::uffdio_api {
            api: abi::UFFD_API,
            features: features.0,
            ioctls: 0,
        };
        // SAFETY: `api` is a live uffdio_api for UFFDIO_API.
        unsafe { sys.ioctl(fd, Call::UffdApi, abi::req::API, (&raw mut api).cast()) }
            .map_err(|e| UffdError::errno(Op::Api, e))?;
        Ok((Features(api.features), IoctlSet(api.ioctls)))
    }

    /// The features and ioctls this kernel offers, read on a throwaway descriptor.
    pub fn available(sys: &Sys) -> Result<(Features, IoctlSet, OpenMethod), UffdError> {
        let (fd, method) = Self::open_raw(sys, true, false)?;
        let r = Self::api(sys, fd, Features::NONE);
        let _ = sys.close(fd);
        r.map(|(f, i)| (f, i, method))
    }

    /// Open a descriptor and negotiate `opts.required` plus whatever of `opts.optional` the
    /// kernel offers.
    pub fn open(sys: &Sys, opts: UffdOptions) -> Result<Uffd, UffdError> {
        let (offered, _, _) = match Self::available(sys) {
            Ok(v) => v,
            Err(e) if opts.allow_dev_node => {
                let (fd, _) = Self::open_raw(sys, true, true).map_err(|_| e)?;
                let r = Self::api(sys, fd, Features::NONE);
                let _ = sys.close(fd);
                let (f, i) = r?;
                (f, i, OpenMethod::DevNode)
            }
            Err(e) => return Err(e),
        };
        if let Some(missing) = opts.required.missing_from(offered).next() {
            return Err(UffdError::new(Op::Api, ErrorKind::NotNegotiated(missing)));
        }
        let wanted = opts.required.union(opts.optional.intersect(offered));
        let (fd, method) = Self::open_raw(sys, opts.nonblocking, opts.allow_dev_node)?;
        match Self::api(sys, fd, wanted) {
            Ok((_, ioctls)) => Ok(Uffd {
                fd: AtomicI32::new(fd),
                // The kernel echoes every offered feature in `features`; what this descriptor
                // has is what was requested.
                features: wanted,
                ioctls,
                method,
                sys: sys.clone(),
            }),
            Err(e) => {
                let _ = sys.close(fd);
                Err(e)
            }
        }
    }

    /// The features negotiated for this descriptor.
    pub fn features(&self) -> Features {
        self.features
    }
    /// The ioctls the kernel reported for this descriptor.
    pub fn ioctls(&self) -> IoctlSet {
        self.ioctls
    }
    /// How the descriptor was opened.
    pub fn open_method(&self) -> OpenMethod {
        self.method
    }
    /// The raw descriptor (-1 once closed).
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.load(Ordering::Acquire)
    }
    /// The kernel handle (and its counters) this descriptor uses.
    pub fn sys(&self) -> &Sys {
        &self.sys
    }

    fn fd(&self, op: Op) -> Result<RawFd, UffdError> {
        match self.fd.load(Ordering::Acquire) {
            -1 => Err(UffdError::new(op, ErrorKind::Closed)),
            fd => Ok(fd),
        }
    }

    fn need(&self, op: Op, f: Feature) -> Result<(), UffdError> {
        if self.features.contains(f) {
            Ok(())
        } else {
            Err(UffdError::new(op, ErrorKind::NotNegotiated(f)))
        }
    }

    /// Close the descriptor now (the `Drop` does it otherwise). Later operations fail with
    /// [`ErrorKind::Closed`]. Must not race with other operations on this `Uffd`.
    pub fn close(&self) -> Result<(), UffdError> {
        let fd = self.fd.swap(-1, Ordering::AcqRel);
        if fd == -1 {
            return Err(UffdError::new(Op::Open, ErrorKind::Closed));
        }
        self.sys
            .close(fd)
            .map_err(|e| UffdError::errno(Op::Open, e))
    }

    /// `UFFDIO_REGISTER` `[start, start+len)` in `mode`; returns the ioctls allowed there.
    ///
    /// # Safety
    /// `[start, start+len)` must be memory the caller owns and manages (an arena it mapped),
    /// not memory other code reads and writes as ordinary memory (a `Vec`'s pages, a stack,
    /// the allocator's heap): once registered, an access to a missing page there blocks until
    /// this descriptor resolves it, a write to a write-protected page blocks until it is
    /// unprotected, and the safe resolving operations ([`Uffd::poison`], [`Uffd::zeropage`],
    /// [`Uffd::writeprotect`], [`Uffd::continue_range`]) decide what later accesses see (the
    /// kernel applies them only to ranges registered with this descriptor, so this is the one
    /// gate). The caller must resolve every fault it lets happen there.
    ///
    /// Registering memory the caller does not own used to be safe (audit round seven): with a
    /// range of a `Vec`'s untouched pages registered, `poison` made a safe read of the `Vec`
    /// raise SIGBUS, and a plain MISSING registration left it blocked in the fault forever.
    ///
    /// ```compile_fail,E0133
    /// use faultline_heap::uffd::{RegisterMode, Uffd, UffdOptions};
    /// let u = Uffd::open(&faultline_heap::Sys::real(), UffdOptions::default()).unwrap();
    /// let v = vec![0u8; 8 << 20];
    /// let base = (v.as_ptr() as usize).next_multiple_of(faultline_heap::PAGE_SIZE);
    /// let _ = u.register(base, 1 << 20, RegisterMode::MISSING);
    /// ```
    pub unsafe fn register(
        &self,
        start: usize,
        len: usize,
        mode: RegisterMode,
    ) -> Result<IoctlSet, UffdError> {
        let op = Op::Register;
        check_range(op, start, len)?;
        if mode.0 == 0
            || mode.0 & !(RegisterMode::MISSING | RegisterMode::WP | RegisterMode::MINOR).0 != 0
        {
            return Err(UffdError::new(op, ErrorKind::Invalid));
        }
        if mode.contains(RegisterMode::WP) {
            self.need(op, Feature::PagefaultFlagWp)?;
        }
        let fd = self.fd(op)?;
        let mut reg = abi::uffdio_register {
            range: abi::uffdio_range {
                start: start as u64,
                len: len as u64,
            },
            mode: mode.0,
            ioctls: 0,
        };
        // SAFETY: `reg` is a live uffdio_register.
        unsafe {
            self.sys.ioctl(
                fd,
                Call::UffdRegister,
                abi::req::REGISTER,
                (&raw mut reg).cast(),
            )
        }
        .map_err(|e| UffdError::errno(op, e))?;
        Ok(IoctlSet(reg.ioctls))
    }

    /// `UFFDIO_UNREGISTER` `[start, start+len)`.
    pub fn unregister(&self, start: usize, len: usize) -> Result<(), UffdError> {
        self.range_op(
            Op::Unregister,
            Call::UffdUnregister,
            abi::req::UNREGISTER,
            start,
            len,
        )
    }

    /// `UFFDIO_WAKE`: wake the threads waiting on faults in the range.
    pub fn wake(&self, start: usize, len: usize) -> Result<(), UffdError> {
        self.range_op(Op::Wake, Call::UffdWake, abi::req::WAKE, start, len)
    }

    fn range_op(
        &self,
        op: Op,
        call: Call,
        req: u64,
        start: usize,
        len: usize,
    ) -> Result<(), UffdError> {
        check_range(op, start, len)?;
        let fd = self.fd(op)?;
        let mut range = abi::uffdio_range {
            start: start as u64,
            len: len as u64,
        };
        // SAFETY: `range` is a live uffdio_range, the argument of UNREGISTER and WAKE.
        unsafe { self.sys.ioctl(fd, call, req, (&raw mut range).cast()) }
            .map(drop)
            .map_err(|e| UffdError::errno(op, e))
    }

    /// `UFFDIO_COPY`: allocate pages at `dst`, copy `len` bytes from `src` into them, map them.
    /// Returns the bytes copied; on [`ErrorKind::Again`] the first `done` bytes were copied.
    ///
    /// # Safety
    /// `src` must be readable for `len` bytes. (The kernel reads it with `copy_from_user` and
    /// fails with EFAULT otherwise, so this is not a memory-safety requirement for *this*
    /// process; it is marked unsafe because `dst` becomes visible to every thread at once and
    /// the caller decides what appears there.)
    pub unsafe fn copy(
        &self,
        dst: usize,
        src: *const u8,
        len: usize,
        mode: CopyMode,
    ) -> Result<usize, UffdError> {
        let op = Op::Copy;
        check_range(op, dst, len)?;
        if mode.contains(CopyMode::WP) {
            self.need(op, Feature::PagefaultFlagWp)?;
        }
        let fd = self.fd(op)?;
        let mut c = abi::uffdio_copy {
            dst: dst as u64,
            src: src as u64,
            len: len as u64,
            mode: mode.0,
            copy: 0,
        };
        // SAFETY: `c` is a live uffdio_copy.
        let r = unsafe {
            self.sys
                .ioctl(fd, Call::UffdCopy, abi::req::COPY, (&raw mut c).cast())
        };
        fill_result(op, r, c.copy, len)
    }

    /// `UFFDIO_ZEROPAGE`: map the shared zero page over `[start, start+len)` (read-only: the
    /// first write takes a kernel-handled copy-on-write fault).
    pub fn zeropage(&self, start: usize, len: usize, dontwake: bool) -> Result<usize, UffdError> {
        let op = Op::Zeropage;
        check_range(op, start, len)?;
        let fd = self.fd(op)?;
        let mut z = abi::uffdio_zeropage {
            range: abi::uffdio_range {
                start: start as u64,
                len: len as u64,
            },
            mode: if dontwake {
                abi::UFFDIO_ZEROPAGE_MODE_DONTWAKE
            } else {
                0
            },
            zeropage: 0,
        };
        // SAFETY: `z` is a live uffdio_zeropage.
        let r = unsafe {
            self.sys.ioctl(
                fd,
                Call::UffdZeropage,
                abi::req::ZEROPAGE,
                (&raw mut z).cast(),
            )
        };
        fill_result(op, r, z.zeropage, len)
    }

    /// `UFFDIO_CONTINUE`: map the page-cache pages of a MINOR-registered shmem range.
    pub fn continue_range(
        &self,
        start: usize,
        len: usize,
        mode: ContinueMode,
    ) -> Result<usize, UffdError> {
        let op = Op::Continue;
        check_range(op, start, len)?;
        if !self.features.contains(Feature::MinorShmem)
            && !self.features.contains(Feature::MinorHugetlbfs)
        {
            return Err(UffdError::new(
                op,
                ErrorKind::NotNegotiated(Feature::MinorShmem),
            ));
        }
        if mode.contains(ContinueMode::WP) {
            self.need(op, Feature::PagefaultFlagWp)?;
        }
        let fd = self.fd(op)?;
        let mut c = abi::uffdio_continue {
            range: abi::uffdio_range {
                start: start as u64,
                len: len as u64,
            },
            mode: mode.0,
            mapped: 0,
        };
        // SAFETY: `c` is a live uffdio_continue.
        let r = unsafe {
            self.sys.ioctl(
                fd,
                Call::UffdContinue,
                abi::req::CONTINUE,
                (&raw mut c).cast(),
            )
        };
        fill_result(op, r, c.mapped, len)
    }

    /// `UFFDIO_MOVE`: move the anonymous pages at `src` to `dst` (no copy). Returns the bytes
    /// moved (holes skipped with ALLOW_SRC_HOLES count as moved).
    ///
    /// # Safety
    /// The pages at `src` disappear from `src`: nothing may rely on their contents there.
    pub unsafe fn move_pages(
        &self,
        dst: usize,
        src: usize,
        len: usize,
        mode: MoveMode,
    ) -> Result<usize, UffdError> {
        let op = Op::Move;
        check_range(op, dst, len)?;
        check_range(op, src, len)?;
        self.need(op, Feature::Move)?;
        let fd = self.fd(op)?;
        let mut m = abi::uffdio_move {
            dst: dst as u64,
            src: src as u64,
            len: len as u64,
            mode: mode.0,
            move_: 0,
        };
        // SAFETY: `m` is a live uffdio_move.
        let r = unsafe {
            self.sys
                .ioctl(fd, Call::UffdMove, abi::req::MOVE, (&raw mut m).cast())
        };
        fill_result(op, r, m.move_, len)
    }

    /// `UFFDIO_WRITEPROTECT`: set (`protect`) or clear write protection on the range.
    pub fn writeprotect(
        &self,
        start: usize,
        len: usize,
        protect: bool,
        dontwake: bool,
    ) -> Result<(), UffdError> {
        let op = Op::Writeprotect;
        check_range(op, start, len)?;
        self.need(op, Feature::PagefaultFlagWp)?;
        let fd = self.fd(op)?;
        let mut mode = 0;
        if protect {
            mode |= abi::UFFDIO_WRITEPROTECT_MODE_WP;
        }
        if dontwake {
            mode |= abi::UFFDIO_WRITEPROTECT_MODE_DONTWAKE;
        }
        let mut w = abi::uffdio_writeprotect {
            range: abi::uffdio_range {
                start: start as u64,
                len: len as u64,
            },
            mode,
        };
        // SAFETY: `w` is a live uffdio_writeprotect.
        unsafe {
            self.sys.ioctl(
                fd,
                Call::UffdWriteprotect,
                abi::req::WRITEPROTECT,
                (&raw mut w).cast(),
            )
        }
        .map(drop)
        .map_err(|e| UffdError::errno(op, e))
    }

    /// `UFFDIO_POISON`: mark the range poisoned (an access raises SIGBUS like a memory error).
    pub fn poison(&self, start: usize, len: usize, dontwake: bool) -> Result<usize, UffdError> {
        let op = Op::Poison;
        check_range(op, start, len)?;
        self.need(op, Feature::Poison)?;
        let fd = self.fd(op)?;
        let mut p = abi::uffdio_poison {
            range: abi::uffdio_range {
                start: start as u64,
                len: len as u64,
            },
            mode: if dontwake {
                abi::UFFDIO_POISON_MODE_DONTWAKE
            } else {
                0
            },
            updated: 0,
        };
        // SAFETY: `p` is a live uffdio_poison.
        let r = unsafe {
            self.sys
                .ioctl(fd, Call::UffdPoison, abi::req::POISON, (&raw mut p).cast())
        };
        fill_result(op, r, p.updated, len)
    }

    /// Read pending messages into `out`; returns how many were decoded. With a non-blocking
    /// descriptor and nothing pending, returns `Ok(0)`.
    pub fn read_events(&self, out: &mut [UffdEvent]) -> Result<usize, UffdError> {
        const BATCH: usize = 16;
        let op = Op::Read;
        let fd = self.fd(op)?;
        let mut msgs = [abi::uffd_msg::default(); BATCH];
        let want = out.len().min(BATCH);
        if want == 0 {
            return Ok(0);
        }
        // SAFETY: `uffd_msg` is plain old data; viewing the array as bytes is sound.
        let bytes = unsafe {
            core::slice::from_raw_parts_mut(
                msgs.as_mut_ptr().cast::<u8>(),
                want * core::mem::size_of::<abi::uffd_msg>(),
            )
        };
        match self.sys.read(fd, bytes) {
            Ok(n) => {
                let count = n / core::mem::size_of::<abi::uffd_msg>();
                let tids = self.features.contains(Feature::ThreadId);
                for (slot, msg) in out.iter_mut().zip(&msgs[..count]) {
                    *slot = UffdEvent::decode(msg, tids);
                }
                Ok(count)
            }
            Err(Errno::EAGAIN) => Ok(0),
            Err(e) => Err(UffdError::errno(op, e)),
        }
    }
}

impl Drop for Uffd {
    fn drop(&mut self) {
        let fd = *self.fd.get_mut();
        if fd != -1 {
            let _ = self.sys.close(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(event: u8, arg: [u64; 3]) -> abi::uffd_msg {
        abi::uffd_msg {
            event,
            arg,
            ..Default::default()
        }
    }

    #[test]
    fn every_event_kind_decodes() {
        let flags = abi::UFFD_PAGEFAULT_FLAG_WRITE | abi::UFFD_PAGEFAULT_FLAG_MINOR;
        assert_eq!(
            UffdEvent::decode(&msg(abi::UFFD_EVENT_PAGEFAULT, [flags, 0x5000, 77]), true),
            UffdEvent::PageFault {
                address: 0x5000,
                write: true,
                wp: false,
                minor: true,
                thread_id: Some(77)
            }
        );
        assert_eq!(
            UffdEvent::decode(&msg(abi::UFFD_EVENT_REMAP, [0x1000, 0x9000, 0x2000]), false),
            UffdEvent::Remap {
                from: 0x1000,
                to: 0x9000,
                len: 0x2000
            }
        );
        assert_eq!(
            UffdEvent::decode(&msg(abi::UFFD_EVENT_FORK, [12, 0, 0]), false),
            UffdEvent::Fork { uffd: 12 }
        );
        assert_eq!(
            UffdEvent::decode(&msg(abi::UFFD_EVENT_REMOVE, [0x1000, 0x3000, 0]), false),
            UffdEvent::Remove {
                start: 0x1000,
                end: 0x3000
            }
        );
        assert_eq!(
            UffdEvent::decode(&msg(abi::UFFD_EVENT_UNMAP, [0x1000, 0x2000, 0]), false),
            UffdEvent::Unmap {
                start: 0x1000,
                end: 0x2000
            }
        );
        assert_eq!(
            UffdEvent::decode(&msg(0x7f, [0; 3]), false),
            UffdEvent::Unknown(0x7f)
        );
    }
}

//! Typed userfaultfd errors.
//!
//! Invariants:
//! - an `EAGAIN` from a fill-type ioctl (COPY, ZEROPAGE, MOVE, CONTINUE, POISON) always carries
//!   the number of bytes the kernel *did* process before stopping, taken from the struct's
//!   result field only when that field is positive; a negative field (a negated errno) is read
//!   as 0 bytes, never cast to a huge unsigned count;
//! - every errno the kernel documents for these calls maps to its own [`ErrorKind`] variant, so
//!   callers match on meaning (`Exists`, `Busy`, ...) rather than on numbers.

use core::fmt;

use super::features::Feature;
use crate::sys::Errno;

/// The operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Opening the descriptor (`userfaultfd(2)` or `/dev/userfaultfd`).
    Open,
    /// `UFFDIO_API`.
    Api,
    /// `UFFDIO_REGISTER`.
    Register,
    /// `UFFDIO_UNREGISTER`.
    Unregister,
    /// `UFFDIO_COPY`.
    Copy,
    /// `UFFDIO_ZEROPAGE`.
    Zeropage,
    /// `UFFDIO_MOVE`.
    Move,
    /// `UFFDIO_CONTINUE`.
    Continue,
    /// `UFFDIO_WRITEPROTECT`.
    Writeprotect,
    /// `UFFDIO_WAKE`.
    Wake,
    /// `UFFDIO_POISON`.
    Poison,
    /// `read(2)` of fault messages.
    Read,
    /// The `PAGEMAP_SCAN` ioctl.
    PagemapScan,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Op::Open => "userfaultfd open",
            Op::Api => "UFFDIO_API",
            Op::Register => "UFFDIO_REGISTER",
            Op::Unregister => "UFFDIO_UNREGISTER",
            Op::Copy => "UFFDIO_COPY",
            Op::Zeropage => "UFFDIO_ZEROPAGE",
            Op::Move => "UFFDIO_MOVE",
            Op::Continue => "UFFDIO_CONTINUE",
            Op::Writeprotect => "UFFDIO_WRITEPROTECT",
            Op::Wake => "UFFDIO_WAKE",
            Op::Poison => "UFFDIO_POISON",
            Op::Read => "read(uffd)",
            Op::PagemapScan => "PAGEMAP_SCAN",
        };
        f.write_str(s)
    }
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// EEXIST: the destination page is already mapped (a lost race with another resolver).
    Exists,
    /// EAGAIN: the kernel stopped after `done` bytes (mmap changes in flight, or a later page
    /// failed); the rest may be retried from `start + done`.
    Again {
        /// Bytes processed before the kernel stopped.
        done: usize,
    },
    /// ENOENT: MOVE found a hole in the source (without ALLOW_SRC_HOLES), or the mm is gone.
    NoEntry,
    /// EBUSY: MOVE source page is shared (not anon-exclusive) or pinned.
    Busy,
    /// ESRCH: the target mm has exited.
    NoProcess,
    /// EPERM: denied by policy (sysctl, seccomp, LSM).
    Permission,
    /// ENOSYS: userfaultfd not built into the kernel, or a seccomp filter returns ENOSYS.
    NotSupported,
    /// EINVAL: bad arguments, a range not registered, a mode the range does not allow, or a
    /// kernel too old for the request.
    Invalid,
    /// EFAULT: a user pointer (source buffer) is not accessible.
    BadAddress,
    /// ENOMEM: the kernel could not allocate a page or page table.
    NoMemory,
    /// EBADF: the descriptor is closed or not a userfaultfd.
    BadDescriptor,
    /// The [`super::Uffd`] was closed with [`super::Uffd::close`].
    Closed,
    /// The operation needs a feature that was not negotiated by `UFFDIO_API`.
    NotNegotiated(Feature),
    /// An address or length that is not page aligned, or a zero or overflowing length.
    Unaligned {
        /// Address asked for.
        addr: usize,
        /// Length asked for.
        len: usize,
    },
    /// Any other errno.
    Other(Errno),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Exists => write!(f, "destination already populated (EEXIST)"),
            ErrorKind::Again { done } => {
                write!(f, "stopped after {done} bytes (EAGAIN); retry the rest")
            }
            ErrorKind::NoEntry => write!(f, "source page missing (ENOENT)"),
            ErrorKind::Busy => write!(f, "source page shared or pinned (EBUSY)"),
            ErrorKind::NoProcess => write!(f, "address space has exited (ESRCH)"),
            ErrorKind::Permission => write!(f, "denied by policy (EPERM)"),
            ErrorKind::NotSupported => write!(f, "not supported by this kernel (ENOSYS)"),
            ErrorKind::Invalid => write!(f, "invalid argument or unregistered range (EINVAL)"),
            ErrorKind::BadAddress => write!(f, "bad user address (EFAULT)"),
            ErrorKind::NoMemory => write!(f, "kernel out of memory (ENOMEM)"),
            ErrorKind::BadDescriptor => write!(f, "bad or closed descriptor (EBADF)"),
            ErrorKind::Closed => write!(f, "userfaultfd already closed"),
            ErrorKind::NotNegotiated(feat) => {
                write!(f, "feature {} was not negotiated", feat.name())
            }
            ErrorKind::Unaligned { addr, len } => {
                write!(
                    f,
                    "range {addr:#x}+{len:#x} is not page aligned or is empty"
                )
            }
            ErrorKind::Other(e) => write!(f, "{e}"),
        }
    }
}

impl ErrorKind {
    /// Map an errno (for EAGAIN, `done` is the partial byte count).
    pub fn from_errno(e: Errno, done: usize) -> Self {
        match e {
            Errno::EEXIST => ErrorKind::Exists,
            Errno::EAGAIN => ErrorKind::Again { done },
            Errno::ENOENT => ErrorKind::NoEntry,
            Errno::EBUSY => ErrorKind::Busy,
            Errno::ESRCH => ErrorKind::NoProcess,
            Errno::EPERM => ErrorKind::Permission,
            Errno::ENOSYS => ErrorKind::NotSupported,
            Errno::EINVAL => ErrorKind::Invalid,
            Errno::EFAULT => ErrorKind::BadAddress,
            Errno::ENOMEM => ErrorKind::NoMemory,
            Errno::EBADF => ErrorKind::BadDescriptor,
            other => ErrorKind::Other(other),
        }
    }

    /// The errno this kind stands for, if any.
    pub fn errno(&self) -> Option<Errno> {
        Some(match self {
            ErrorKind::Exists => Errno::EEXIST,
            ErrorKind::Again { .. } => Errno::EAGAIN,
            ErrorKind::NoEntry => Errno::ENOENT,
            ErrorKind::Busy => Errno::EBUSY,
            ErrorKind::NoProcess => Errno::ESRCH,
            ErrorKind::Permission => Errno::EPERM,
            ErrorKind::NotSupported => Errno::ENOSYS,
            ErrorKind::Invalid => Errno::EINVAL,
            ErrorKind::BadAddress => Errno::EFAULT,
            ErrorKind::NoMemory => Errno::ENOMEM,
            ErrorKind::BadDescriptor => Errno::EBADF,
            ErrorKind::Other(e) => *e,
            ErrorKind::Closed | ErrorKind::NotNegotiated(_) | ErrorKind::Unaligned { .. } => {
                return None
            }
        })
    }
}

/// A failed userfaultfd operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {kind}")]
pub struct UffdError {
    /// The operation.
    pub op: Op,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl UffdError {
    /// Build from an operation and a kind.
    pub fn new(op: Op, kind: ErrorKind) -> Self {
        Self { op, kind }
    }
    /// Build from an errno.
    pub fn errno(op: Op, e: Errno) -> Self {
        Self::new(op, ErrorKind::from_errno(e, 0))
    }
}

/// Decode the result of a fill-type ioctl (`result_field` is the struct's `copy` / `move` /
/// `zeropage` / `mapped` / `updated` field after the call).
pub(crate) fn fill_result(
    op: Op,
    ret: Result<i32, Errno>,
    result_field: i64,
    len: usize,
) -> Result<usize, UffdError> {
    // A negative field is a negated errno, never a byte count.
    let done = if result_field > 0 {
        (result_field as u64).min(len as u64) as usize
    } else {
        0
    };
    match ret {
        Ok(_) => Ok(if result_field > 0 { done } else { len }),
        Err(e) => Err(UffdError::new(op, ErrorKind::from_errno(e, done))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_result_field_is_never_a_huge_count() {
        let e =
            fill_result(Op::Copy, Err(Errno::EAGAIN), -(Errno::EAGAIN as i64), 8192).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Again { done: 0 });
        let e = fill_result(Op::Copy, Err(Errno::EAGAIN), 4096, 8192).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Again { done: 4096 });
        assert_eq!(fill_result(Op::Copy, Ok(0), 8192, 8192), Ok(8192));
    }

    #[test]
    fn every_documented_errno_has_its_own_kind() {
        let errs = [
            Errno::EEXIST,
            Errno::EAGAIN,
            Errno::ENOENT,
            Errno::EBUSY,
            Errno::ESRCH,
            Errno::EPERM,
            Errno::ENOSYS,
            Errno::EINVAL,
            Errno::EFAULT,
            Errno::ENOMEM,
            Errno::EBADF,
        ];
        let kinds: Vec<_> = errs.iter().map(|&e| ErrorKind::from_errno(e, 0)).collect();
        for (i, a) in kinds.iter().enumerate() {
            assert_eq!(a.errno(), Some(errs[i]));
            for b in &kinds[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}

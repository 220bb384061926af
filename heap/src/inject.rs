//! A fault-injecting [`Kernel`]: wraps another kernel and makes chosen calls fail with chosen
//! errors, at chosen counts or at random with a seed.
//!
//! This module owns [`FaultInjector`] and its [`Rule`]s and [`Trigger`]s. It overrides every
//! [`Kernel`] method, so a rule can target every [`Call`].
//!
//! Invariants:
//! - the rule set is fixed when the injector is built; evaluating a rule touches only atomics,
//!   so the injector stays async-signal-safe and lock-free like the kernel it wraps (it may sit
//!   under the SIGBUS fault path);
//! - an injected `EAGAIN` with a partial count is *real*: the wrapped kernel performs the first
//!   `partial` bytes of the operation and the result field reports exactly those bytes, as the
//!   kernel does when it is interrupted, so callers' retry logic is exercised on true state;
//!   likewise a short count of `process_madvise` ([`Rule::stop_after`]): the leading ranges it
//!   reports were advised for real;
//! - calls are counted per kind only while the injector is armed; a rule's `Nth` counts calls
//!   of its kind seen while armed (1-based).

use core::ffi::{c_int, c_void, CStr};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::os::fd::RawFd;
use std::sync::Arc;

use crate::sys::{Call, Errno, Kernel, RealKernel};
use crate::uffd::abi;

/// When a rule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// On the n-th armed call of the kind (1-based), once.
    Nth(u64),
    /// On every armed call from the n-th on (1-based).
    From(u64),
    /// On the calls numbered `start .. start + count` (1-based).
    Range {
        /// First call number that fails (1-based).
        start: u64,
        /// How many consecutive calls fail.
        count: u64,
    },
    /// On every call.
    Always,
    /// With probability 1/`one_in`, from a seeded generator shared by the injector.
    Random {
        /// The inverse probability (0 never fires).
        one_in: u64,
    },
}

/// One injection rule.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The call kind it applies to.
    pub call: Call,
    /// The error returned.
    pub errno: Errno,
    /// When it fires.
    pub trigger: Trigger,
    /// For `EAGAIN` on COPY / ZEROPAGE / MOVE / CONTINUE / POISON: perform this many bytes
    /// (rounded down to whole pages, at most the request) before failing. For
    /// `process_madvise`: advise the leading whole ranges within this many bytes and return
    /// their count ([`Rule::stop_after`]).
    pub partial: Option<usize>,
}

impl Rule {
    /// Fail `call` with `errno` when `trigger` says so.
    pub fn new(call: Call, errno: Errno, trigger: Trigger) -> Self {
        Self {
            call,
            errno,
            trigger,
            partial: None,
        }
    }
    /// `EAGAIN` after really performing `bytes` of the operation.
    pub fn again_after(call: Call, bytes: usize, trigger: Trigger) -> Self {
        Self {
            partial: Some(bytes),
            ..Self::new(call, Errno::EAGAIN, trigger)
        }
    }
    /// `process_madvise` stopping at an error after some ranges, as the kernel does: the
    /// leading whole ranges within `bytes` are advised for real and their byte count returned;
    /// `errno` is returned only when not even the first range fits.
    pub fn stop_after(bytes: usize, errno: Errno, trigger: Trigger) -> Self {
        Self {
            partial: Some(bytes),
            ..Self::new(Call::ProcessMadvise, errno, trigger)
        }
    }
}

/// A [`Kernel`] that injects failures into another one.
pub struct FaultInjector {
    inner: Arc<dyn Kernel>,
    rules: Vec<Rule>,
    armed: AtomicBool,
    seen: [AtomicU64; Call::COUNT],
    injected: [AtomicU64; Call::COUNT],
    rng: AtomicU64,
    /// Run after every armed, uninjected ioctl of this kind (see [`FaultInjector::after_call`]).
    after: Option<(Call, AfterHook)>,
}

/// What [`FaultInjector::after_call`] runs.
pub type AfterHook = Arc<dyn Fn() + Send + Sync>;

impl core::fmt::Debug for FaultInjector {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FaultInjector")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl FaultInjector {
    /// Wrap the real kernel.
    pub fn new(rules: Vec<Rule>, seed: u64) -> Self {
        Self::wrapping(Arc::new(RealKernel), rules, seed)
    }

    /// Wrap `inner`.
    pub fn wrapping(inner: Arc<dyn Kernel>, rules: Vec<Rule>, seed: u64) -> Self {
        Self {
            inner,
            rules,
            armed: AtomicBool::new(true),
            seen: core::array::from_fn(|_| AtomicU64::new(0)),
            injected: core::array::from_fn(|_| AtomicU64::new(0)),
            rng: AtomicU64::new(seed | 1),
            after: None,
        }
    }

    /// Builder: run `hook` right after every armed ioctl of kind `call` that reaches the inner
    /// kernel (not after an injected failure), on the calling thread: a test's way to make
    /// something happen *during* a caller's sequence of calls, deterministically (a flag
    /// flipped between a call and the caller's next step).
    ///
    /// # Safety
    /// The hook runs inside the kernel handle, which the heap trusts as a [`Kernel`]: it must
    /// not call back into the same handle's ioctl of kind `call`, and with SIGBUS delivery it
    /// must be async-signal-safe (no allocation, no lock a mutator may hold).
    pub unsafe fn after_call(mut self, call: Call, hook: AfterHook) -> Self {
        self.after = Some((call, hook));
        self
    }

    /// Start (or resume) counting calls and firing rules.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }
    /// Stop firing rules; calls pass through uncounted.
    pub fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }
    /// Build disarmed (useful to let setup succeed, then `arm()` for the phase under test).
    pub fn disarmed(self) -> Self {
        self.armed.store(false, Ordering::SeqCst);
        self
    }
    /// How many failures were injected into `call`.
    pub fn injected(&self, call: Call) -> u64 {
        self.injected[call as usize].load(Ordering::Relaxed)
    }
    /// How many armed calls of `call` were seen.
    pub fn seen(&self, call: Call) -> u64 {
        self.seen[call as usize].load(Ordering::Relaxed)
    }
    /// (call, injected count) for every call with at least one injection.
    pub fn injected_summary(&self) -> Vec<(Call, u64)> {
        Call::ALL
            .iter()
            .map(|&c| (c, self.injected(c)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }

    fn next_random(&self) -> u64 {
        // xorshift64*, advanced with a CAS loop (lock-free).
        let mut cur = self.rng.load(Ordering::Relaxed);
        loop {
            let mut x = cur;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            match self
                .rng
                .compare_exchange_weak(cur, x, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return x.wrapping_mul(0x2545_F491_4F6C_DD1D),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Decide whether this call fails; returns the rule that fires.
    fn decide(&self, call: Call) -> Option<Rule> {
        if !self.armed.load(Ordering::Relaxed) {
            return None;
        }
        let n = self.seen[call as usize].fetch_add(1, Ordering::Relaxed) + 1;
        for rule in self.rules.iter().filter(|r| r.call == call) {
            let fire = match rule.trigger {
                Trigger::Nth(k) => n == k,
                Trigger::From(k) => n >= k,
                Trigger::Range { start, count } => n >= start && n < start + count,
                Trigger::Always => true,
                Trigger::Random { one_in } => {
                    one_in > 0 && self.next_random().is_multiple_of(one_in)
                }
            };
            if fire {
                self.injected[call as usize].fetch_add(1, Ordering::Relaxed);
                return Some(*rule);
            }
        }
        None
    }

    /// Perform the first `bytes` of a fill-type ioctl for real, then report EAGAIN with the
    /// count in the struct's result field.
    ///
    /// # Safety
    /// `arg` points to the struct of `call`'s request.
    unsafe fn partial_then_again(
        &self,
        fd: RawFd,
        call: Call,
        request: u64,
        arg: *mut c_void,
        bytes: usize,
    ) -> Result<c_int, Errno> {
        let page = crate::sys::PAGE_SIZE as u64;
        // (pointer to len, pointer to result) for each struct.
        // SAFETY: the caller guarantees `arg` points to the struct matching `call`.
        let (len_ptr, res_ptr): (*mut u64, *mut i64) = unsafe {
            match call {
                Call::UffdCopy => {
                    let a = arg.cast::<abi::uffdio_copy>();
                    (&raw mut (*a).len, &raw mut (*a).copy)
                }
                Call::UffdMove => {
                    let a = arg.cast::<abi::uffdio_move>();
                    (&raw mut (*a).len, &raw mut (*a).move_)
                }
                Call::UffdZeropage => {
                    let a = arg.cast::<abi::uffdio_zeropage>();
                    (&raw mut (*a).range.len, &raw mut (*a).zeropage)
                }
                Call::UffdContinue => {
                    let a = arg.cast::<abi::uffdio_continue>();
                    (&raw mut (*a).range.len, &raw mut (*a).mapped)
                }
                Call::UffdPoison => {
                    let a = arg.cast::<abi::uffdio_poison>();
                    (&raw mut (*a).range.len, &raw mut (*a).updated)
                }
                _ => return Err(Errno::EAGAIN),
            }
        };
        // SAFETY: both pointers point into the caller's live struct.
        unsafe {
            let full = *len_ptr;
            let part = ((bytes as u64).min(full) / page) * page;
            let mut done: i64 = -(Errno::EAGAIN as i64);
            if part > 0 {
                *len_ptr = part;
                let r = self.inner.ioctl(fd, call, request, arg);
                *len_ptr = full;
                match r {
                    Ok(_) => done = part as i64,
                    Err(e) => return Err(e),
                }
            }
            *res_ptr = done;
        }
        Err(Errno::EAGAIN)
    }
}

// SAFETY: every call is the wrapped kernel's (itself a `Kernel`), or fails with the rule's
// error after performing nothing or, for `again_after`, whole pages of the operation really
// performed (as the kernel's EAGAIN does); the rules are checked without allocating; the
// `after_call` hook was vouched for by its `unsafe` caller.
unsafe impl Kernel for FaultInjector {
    fn userfaultfd(&self, flags: c_int) -> Result<RawFd, Errno> {
        match self.decide(Call::Userfaultfd) {
            Some(r) => Err(r.errno),
            None => self.inner.userfaultfd(flags),
        }
    }

    fn open(&self, path: &CStr, flags: c_int) -> Result<RawFd, Errno> {
        match self.decide(Call::Open) {
            Some(r) => Err(r.errno),
            None => self.inner.open(path, flags),
        }
    }

    unsafe fn ioctl(
        &self,
        fd: RawFd,
        call: Call,
        request: u64,
        arg: *mut c_void,
    ) -> Result<c_int, Errno> {
        match self.decide(call) {
            Some(Rule {
                errno: Errno::EAGAIN,
                partial: Some(bytes),
                ..
            }) => {
                // SAFETY: forwarded from the caller's contract on `arg`.
                unsafe { self.partial_then_again(fd, call, request, arg, bytes) }
            }
            Some(r) => {
                // Fill the result field the way the kernel does on failure (negated errno), so
                // that callers never read a stale count.
                // SAFETY: forwarded from the caller's contract on `arg`.
                unsafe { write_negated_errno(call, arg, r.errno) };
                Err(r.errno)
            }
            None => {
                // SAFETY: forwarded from the caller's contract on `arg`.
                let r = unsafe { self.inner.ioctl(fd, call, request, arg) };
                if let Some((c, hook)) = &self.after {
                    if *c == call && self.armed.load(Ordering::SeqCst) {
                        hook();
                    }
                }
                r
            }
        }
    }

    fn read(&self, fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
        match self.decide(Call::Read) {
            Some(r) => Err(r.errno),
            None => self.inner.read(fd, buf),
        }
    }

    fn close(&self, fd: RawFd) -> Result<(), Errno> {
        match self.decide(Call::Close) {
            // Still close: an injected close failure must not leak the descriptor.
            Some(r) => {
                let _ = self.inner.close(fd);
                Err(r.errno)
            }
            None => self.inner.close(fd),
        }
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
        match self.decide(Call::Mmap) {
            Some(r) => Err(r.errno),
            // SAFETY: forwarded from the caller's contract.
            None => unsafe { self.inner.mmap(addr, len, prot, flags, fd, offset) },
        }
    }

    unsafe fn munmap(&self, addr: *mut c_void, len: usize) -> Result<(), Errno> {
        match self.decide(Call::Munmap) {
            Some(r) => Err(r.errno),
            // SAFETY: forwarded from the caller's contract.
            None => unsafe { self.inner.munmap(addr, len) },
        }
    }

    unsafe fn mremap(
        &self,
        old: *mut c_void,
        old_len: usize,
        new_len: usize,
        flags: c_int,
        new_addr: *mut c_void,
    ) -> Result<*mut c_void, Errno> {
        match self.decide(Call::Mremap) {
            Some(r) => Err(r.errno),
            // SAFETY: forwarded from the caller's contract.
            None => unsafe { self.inner.mremap(old, old_len, new_len, flags, new_addr) },
        }
    }

    unsafe fn mprotect(&self, addr: *mut c_void, len: usize, prot: c_int) -> Result<(), Errno> {
        match self.decide(Call::Mprotect) {
            Some(r) => Err(r.errno),
            // SAFETY: forwarded from the caller's contract.
            None => unsafe { self.inner.mprotect(addr, len, prot) },
        }
    }

    unsafe fn madvise(&self, addr: *mut c_void, len: usize, advice: c_int) -> Result<(), Errno> {
        match self.decide(Call::Madvise) {
            Some(r) => Err(r.errno),
            // SAFETY: forwarded from the caller's contract.
            None => unsafe { self.inner.madvise(addr, len, advice) },
        }
    }

    fn memfd_create(&self, name: &CStr, flags: u32) -> Result<RawFd, Errno> {
        match self.decide(Call::MemfdCreate) {
            Some(r) => Err(r.errno),
            None => self.inner.memfd_create(name, flags),
        }
    }

    fn ftruncate(&self, fd: RawFd, len: i64) -> Result<(), Errno> {
        match self.decide(Call::Ftruncate) {
            Some(r) => Err(r.errno),
            None => self.inner.ftruncate(fd, len),
        }
    }

    fn fallocate(&self, fd: RawFd, mode: c_int, offset: i64, len: i64) -> Result<(), Errno> {
        match self.decide(Call::Fallocate) {
            Some(r) => Err(r.errno),
            None => self.inner.fallocate(fd, mode, offset, len),
        }
    }

    fn lseek(&self, fd: RawFd, offset: i64, whence: c_int) -> Result<i64, Errno> {
        match self.decide(Call::Lseek) {
            Some(r) => Err(r.errno),
            None => self.inner.lseek(fd, offset, whence),
        }
    }

    fn pread(&self, fd: RawFd, buf: &mut [u8], offset: i64) -> Result<usize, Errno> {
        match self.decide(Call::Pread) {
            Some(r) => Err(r.errno),
            None => self.inner.pread(fd, buf, offset),
        }
    }

    fn mincore(&self, addr: usize, len: usize, vec: &mut [u8]) -> Result<(), Errno> {
        match self.decide(Call::Mincore) {
            Some(r) => Err(r.errno),
            None => self.inner.mincore(addr, len, vec),
        }
    }

    fn pidfd_open(&self, pid: libc::pid_t) -> Result<RawFd, Errno> {
        match self.decide(Call::PidfdOpen) {
            Some(r) => Err(r.errno),
            None => self.inner.pidfd_open(pid),
        }
    }

    unsafe fn process_madvise(
        &self,
        pidfd: RawFd,
        iov: &[libc::iovec],
        advice: c_int,
    ) -> Result<usize, Errno> {
        let iov = match self.decide(Call::ProcessMadvise) {
            Some(Rule {
                partial: Some(bytes),
                errno,
                ..
            }) => {
                let mut n = 0;
                let mut sum = 0;
                while n < iov.len() && sum + iov[n].iov_len <= bytes {
                    sum += iov[n].iov_len;
                    n += 1;
                }
                if n == 0 {
                    return Err(errno);
                }
                &iov[..n]
            }
            Some(r) => return Err(r.errno),
            None => iov,
        };
        // SAFETY: forwarded from the caller's contract (all its ranges, or a prefix of them).
        unsafe { self.inner.process_madvise(pidfd, iov, advice) }
    }
}

/// Write `-errno` into the result field of a fill-type ioctl struct, as the kernel does.
///
/// # Safety
/// `arg` points to the struct of `call`'s request.
unsafe fn write_negated_errno(call: Call, arg: *mut c_void, errno: Errno) {
    let v = -(errno as i64);
    // SAFETY: the caller guarantees `arg` points to the struct matching `call`.
    unsafe {
        match call {
            Call::UffdCopy => (*arg.cast::<abi::uffdio_copy>()).copy = v,
            Call::UffdMove => (*arg.cast::<abi::uffdio_move>()).move_ = v,
            Call::UffdZeropage => (*arg.cast::<abi::uffdio_zeropage>()).zeropage = v,
            Call::UffdContinue => (*arg.cast::<abi::uffdio_continue>()).mapped = v,
            Call::UffdPoison => (*arg.cast::<abi::uffdio_poison>()).updated = v,
            _ => {}
        }
    }
}

//! SIGBUS fault delivery: a process-wide signal handler that claims faults inside registered
//! regions and chains every other SIGBUS / SIGSEGV to the handler that was installed before.
//!
//! With `UFFD_FEATURE_SIGBUS`, a thread that touches a missing page of a registered range gets
//! SIGBUS (`si_code == BUS_ADRERR`, `si_addr` = the address). The handler looks the address up in
//! a fixed table of regions and calls the region's resolver, which makes the page present (COPY,
//! MOVE, CONTINUE) and returns; the faulting instruction then re-executes.
//!
//! ```text
//!  slot.state:  FREE --claim--> CLAIMED --publish--> ACTIVE --retire--> RETIRING --drain--> FREE
//!  handler:     users += 1; if state == ACTIVE && start <= addr < end { resolve }; users -= 1
//! ```
//!
//! Invariants:
//! - the handler allocates nothing and takes no lock: the region table is a fixed static array of
//!   atomics, and a resolver must itself be async-signal-safe (ioctls, atomics, futex);
//! - a region's context stays valid while any handler may use it: a handler announces itself in
//!   the slot's `users` count *before* it reads the slot, and [`RegionGuard`]'s drop retires the
//!   slot and waits for `users` to drain before the slot (and the context) can go away;
//! - `errno` is preserved across the handler;
//! - a fault that no region claims is handed to the previous disposition exactly as the kernel
//!   would have: a previous handler is called with the same arguments; a default disposition is
//!   restored and the fault re-executes (or the signal is re-raised if it was sent, not raised by
//!   an access), so a fault outside any arena still crashes the way it would without Faultline;
//! - SIGBUS is handled on the thread's own stack (resolvers may need more than an alternate
//!   stack holds), SIGSEGV on the alternate stack if one is set (so Rust's stack-overflow
//!   report still works through the chain); the handler is `extern "C"`, so a panic inside it
//!   aborts instead of unwinding across the signal frame.

use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Once;

/// What a resolver did with a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOutcome {
    /// The page is present now (or was already): retry the access.
    Resolved,
    /// Not this region's business: chain to the previous handler.
    NotMine,
}

/// A resolver: called in signal context with the region's context and the faulting address.
///
/// # Safety
/// Implementations must be async-signal-safe: no allocation, no locks a mutator may hold, no
/// panics.
pub type Resolver = unsafe fn(ctx: *const (), addr: usize) -> FaultOutcome;

/// How many regions may be registered at once.
pub const MAX_REGIONS: usize = 64;

const FREE: u32 = 0;
const CLAIMED: u32 = 1;
const ACTIVE: u32 = 2;
const RETIRING: u32 = 3;

struct Slot {
    state: AtomicU32,
    users: AtomicU32,
    start: AtomicUsize,
    end: AtomicUsize,
    resolver: AtomicUsize,
    ctx: AtomicUsize,
}

impl Slot {
    const fn new() -> Self {
        Slot {
            state: AtomicU32::new(FREE),
            users: AtomicU32::new(0),
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            resolver: AtomicUsize::new(0),
            ctx: AtomicUsize::new(0),
        }
    }
}

static SLOTS: [Slot; MAX_REGIONS] = [const { Slot::new() }; MAX_REGIONS];

/// Faults claimed and resolved by a region.
static RESOLVED: AtomicU64 = AtomicU64::new(0);
/// Faults handed to the previous handler.
static CHAINED: AtomicU64 = AtomicU64::new(0);

struct PrevActions(UnsafeCell<[MaybeUninit<libc::sigaction>; 2]>);
// SAFETY: written once inside `INSTALL.call_once` before the handler that reads it is installed,
// read-only afterwards.
unsafe impl Sync for PrevActions {}
static PREV: PrevActions = PrevActions(UnsafeCell::new([MaybeUninit::zeroed(); 2]));
static INSTALL: Once = Once::new();
static INSTALL_ERR: AtomicU32 = AtomicU32::new(0);

fn prev_index(sig: c_int) -> usize {
    if sig == libc::SIGBUS {
        0
    } else {
        1
    }
}

/// Errors registering a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    /// All [`MAX_REGIONS`] slots are in use.
    #[error("all {MAX_REGIONS} fault regions are in use")]
    Full,
    /// The range is empty or overflows.
    #[error("empty or overflowing fault region")]
    BadRange,
    /// `sigaction` failed while installing the handler.
    #[error("installing the SIGBUS handler failed: errno {0}")]
    Install(i32),
}

/// Install the process-wide SIGBUS/SIGSEGV handler (idempotent). Called by
/// [`register_region`]; exposed so a runtime can install it early, before its own handlers.
pub fn install() -> Result<(), RegionError> {
    INSTALL.call_once(|| {
        for (sig, onstack) in [(libc::SIGBUS, 0), (libc::SIGSEGV, libc::SA_ONSTACK)] {
            // SAFETY: plain sigaction calls; PREV is written before our handler is installed
            // and never again (Once).
            unsafe {
                let slot = (*PREV.0.get())[prev_index(sig)].as_mut_ptr();
                if libc::sigaction(sig, core::ptr::null(), slot) != 0 {
                    INSTALL_ERR.store(nix::errno::Errno::last_raw() as u32, Ordering::SeqCst);
                    return;
                }
                let mut sa: libc::sigaction = core::mem::zeroed();
                sa.sa_sigaction = handler as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_RESTART | onstack;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(sig, &sa, core::ptr::null_mut()) != 0 {
                    INSTALL_ERR.store(nix::errno::Errno::last_raw() as u32, Ordering::SeqCst);
                    return;
                }
            }
        }
    });
    match INSTALL_ERR.load(Ordering::SeqCst) {
        0 => Ok(()),
        e => Err(RegionError::Install(e as i32)),
    }
}

/// A registered region; dropping it unregisters the region and waits until no handler uses it.
#[derive(Debug)]
pub struct RegionGuard {
    slot: usize,
}

/// Register `[start, start+len)` so that SIGBUS faults there call `resolver(ctx, addr)`.
///
/// # Safety
/// `ctx` must stay valid for `resolver` until the returned guard is dropped, and `resolver` must
/// be async-signal-safe.
pub unsafe fn register_region(
    start: usize,
    len: usize,
    resolver: Resolver,
    ctx: *const (),
) -> Result<RegionGuard, RegionError> {
    let end = start.checked_add(len).ok_or(RegionError::BadRange)?;
    if len == 0 {
        return Err(RegionError::BadRange);
    }
    install()?;
    for (i, slot) in SLOTS.iter().enumerate() {
        if slot
            .state
            .compare_exchange(FREE, CLAIMED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            slot.start.store(start, Ordering::SeqCst);
            slot.end.store(end, Ordering::SeqCst);
            slot.resolver.store(resolver as usize, Ordering::SeqCst);
            slot.ctx.store(ctx as usize, Ordering::SeqCst);
            slot.state.store(ACTIVE, Ordering::SeqCst);
            return Ok(RegionGuard { slot: i });
        }
    }
    Err(RegionError::Full)
}

impl Drop for RegionGuard {
    fn drop(&mut self) {
        let slot = &SLOTS[self.slot];
        slot.state.store(RETIRING, Ordering::SeqCst);
        // Handlers that announced themselves before the retire may still be resolving.
        while slot.users.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        slot.resolver.store(0, Ordering::SeqCst);
        slot.ctx.store(0, Ordering::SeqCst);
        slot.state.store(FREE, Ordering::SeqCst);
    }
}

/// (faults resolved by a region, faults chained to the previous handler) since process start.
pub fn counts() -> (u64, u64) {
    (
        RESOLVED.load(Ordering::Relaxed),
        CHAINED.load(Ordering::Relaxed),
    )
}

/// Look `addr` up and resolve it. Async-signal-safe.
fn dispatch(addr: usize) -> FaultOutcome {
    for slot in SLOTS.iter() {
        if slot.state.load(Ordering::Acquire) != ACTIVE {
            continue;
        }
        slot.users.fetch_add(1, Ordering::SeqCst);
        let outcome = if slot.state.load(Ordering::SeqCst) == ACTIVE
            && addr >= slot.start.load(Ordering::SeqCst)
            && addr < slot.end.load(Ordering::SeqCst)
        {
            let f = slot.resolver.load(Ordering::SeqCst);
            let ctx = slot.ctx.load(Ordering::SeqCst) as *const ();
            // SAFETY: `f` was stored from a `Resolver` by `register_region` and the slot is
            // ACTIVE with our use announced, so `ctx` is still valid (RegionGuard's contract).
            unsafe {
                let f: Resolver = core::mem::transmute::<usize, Resolver>(f);
                f(ctx, addr)
            }
        } else {
            FaultOutcome::NotMine
        };
        slot.users.fetch_sub(1, Ordering::SeqCst);
        if outcome == FaultOutcome::Resolved {
            return outcome;
        }
    }
    FaultOutcome::NotMine
}

extern "C" fn handler(sig: c_int, info: *mut libc::siginfo_t, uctx: *mut c_void) {
    // SAFETY: errno is thread-local; saving and restoring it is what a handler must do.
    let saved_errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    if sig == libc::SIGBUS && code == libc::BUS_ADRERR && dispatch(addr) == FaultOutcome::Resolved {
        RESOLVED.fetch_add(1, Ordering::Relaxed);
    } else {
        CHAINED.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarding the kernel's own arguments to the previous disposition.
        unsafe { chain(sig, info, uctx) };
    }
    // SAFETY: see above.
    unsafe { *libc::__errno_location() = saved_errno };
}

/// Hand a signal to the disposition that was installed before ours.
///
/// # Safety
/// Signal context; `info` and `uctx` are the kernel's.
unsafe fn chain(sig: c_int, info: *mut libc::siginfo_t, uctx: *mut c_void) {
    // SAFETY: PREV was written before the handler was installed.
    let prev = unsafe { (*PREV.0.get())[prev_index(sig)].assume_init_ref() };
    let h = prev.sa_sigaction;
    if h == libc::SIG_DFL || h == libc::SIG_IGN {
        // Restore the default and let it act: a fault re-executes and now kills the process as
        // it would have; a sent signal is raised again.
        // SAFETY: plain async-signal-safe calls.
        unsafe {
            let mut dfl: libc::sigaction = core::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut dfl.sa_mask);
            libc::sigaction(sig, &dfl, core::ptr::null_mut());
            if (*info).si_code <= 0 {
                libc::raise(sig);
            }
        }
    } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was installed with SA_SIGINFO, so it has this type.
        unsafe {
            let f: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) =
                core::mem::transmute(h);
            f(sig, info, uctx);
        }
    } else {
        // SAFETY: a plain handler.
        unsafe {
            let f: extern "C" fn(c_int) = core::mem::transmute(h);
            f(sig);
        }
    }
}

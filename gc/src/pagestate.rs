//! The destination-page state machine of concurrent compaction: one 32-bit atomic word per
//! page, claimed by CAS, waited on by futex, published after the mapping ioctl.
//!
//! ```text
//!   UNPROCESSED --CAS by a filler--> CLAIMED --swap after the ioctl--> MAPPED
//!                                       |                               ^
//!                                       +--CAS by a waiter--> WAITED ---+  (publisher wakes)
//! ```
//!
//! | value | state        | meaning |
//! |-------|--------------|---------|
//! | 0     | UNPROCESSED  | nobody fills the page yet; the page is absent |
//! | 1     | CLAIMED      | one thread (GC worker, faulting mutator, handler thread) fills it |
//! | 2     | WAITED       | claimed, and at least one thread sleeps on the word |
//! | 3     | MAPPED       | the page is present with its final contents |
//!
//! Invariants:
//! - exactly one thread wins the claim of a page, and only it fills and maps the page;
//! - MAPPED is stored only after the mapping ioctl returned, so a thread that sees MAPPED may
//!   touch the page without faulting again;
//! - a waiter sleeps only on the value WAITED, and the publisher wakes all sleepers whenever the
//!   value it replaced was WAITED: no lost wake-up (a waiter that announces itself after the
//!   publish finds MAPPED and does not sleep);
//! - CLAIMED and WAITED mean "not known to be mapped", not "absent": a waiter that gave up on a
//!   descheduled filler may map the page itself (`crate::compaction`'s rescue; the filler's own
//!   mapping call then finds it present), and only the claimer ever stores MAPPED.
//!
//! The functions are generic over [`StateWord`] and [`Sleeper`] so the loom model
//! (`gc/tests/loom_pagestate.rs`) explores the same code with loom's atomics.

use core::sync::atomic::{AtomicU32, Ordering};

/// No thread fills the page yet.
pub const UNPROCESSED: u32 = 0;
/// One thread fills the page.
pub const CLAIMED: u32 = 1;
/// Claimed, and someone waits.
pub const WAITED: u32 = 2;
/// Present with its final contents.
pub const MAPPED: u32 = 3;

/// The atomic word of one page.
pub trait StateWord {
    /// Load (acquire).
    fn load(&self) -> u32;
    /// Compare-and-swap (acq-rel); `Err(actual)` on failure.
    fn cas(&self, current: u32, new: u32) -> Result<u32, u32>;
    /// Swap (acq-rel), returning the old value.
    fn swap(&self, v: u32) -> u32;
}

impl StateWord for AtomicU32 {
    #[inline]
    fn load(&self) -> u32 {
        AtomicU32::load(self, Ordering::Acquire)
    }
    #[inline]
    fn cas(&self, current: u32, new: u32) -> Result<u32, u32> {
        self.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
    }
    #[inline]
    fn swap(&self, v: u32) -> u32 {
        AtomicU32::swap(self, v, Ordering::AcqRel)
    }
}

/// Sleeping on a word and waking its sleepers.
pub trait Sleeper<W: ?Sized> {
    /// Sleep while the word holds `expected` (may return spuriously).
    fn sleep(word: &W, expected: u32);
    /// Wake every sleeper on the word.
    fn wake_all(word: &W);
    /// Sleep while the word holds `expected`, at most about `ns` nanoseconds (may return
    /// spuriously). The default ignores the bound (a model without time).
    fn sleep_for(word: &W, expected: u32, ns: u64) {
        let _ = ns;
        Self::sleep(word, expected);
    }
}

/// The Linux futex: async-signal-safe, so a SIGBUS handler may wait on a page.
pub struct Futex;

impl Sleeper<AtomicU32> for Futex {
    fn sleep(word: &AtomicU32, expected: u32) {
        // SAFETY: FUTEX_WAIT on a live, aligned u32; it only reads the word.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                expected,
                core::ptr::null::<libc::timespec>(),
            );
        }
    }
    fn sleep_for(word: &AtomicU32, expected: u32, ns: u64) {
        let ts = libc::timespec {
            tv_sec: (ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (ns % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: FUTEX_WAIT on a live, aligned u32 with a relative timeout on the stack; it
        // only reads the word.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                expected,
                &ts as *const libc::timespec,
            );
        }
    }
    fn wake_all(word: &AtomicU32) {
        // SAFETY: FUTEX_WAKE on a live, aligned u32.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                i32::MAX,
            );
        }
    }
}

/// The result of trying to claim a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This thread must fill and map the page, then [`publish`].
    Won,
    /// Another thread fills it: [`wait_mapped`].
    Busy,
    /// Already mapped.
    Mapped,
}

/// Try to claim a page.
#[inline]
pub fn claim<W: StateWord + ?Sized>(w: &W) -> Claim {
    match w.cas(UNPROCESSED, CLAIMED) {
        Ok(_) => Claim::Won,
        Err(MAPPED) => Claim::Mapped,
        Err(_) => Claim::Busy,
    }
}

/// Mark a claimed page mapped and wake its waiters. Call only after the mapping ioctl.
#[inline]
pub fn publish<W: StateWord + ?Sized, S: Sleeper<W>>(w: &W) {
    if w.swap(MAPPED) == WAITED {
        S::wake_all(w);
    }
}

/// Give a claim back without mapping (the filler failed); waiters retry the claim.
#[inline]
pub fn unclaim<W: StateWord + ?Sized, S: Sleeper<W>>(w: &W) {
    if w.swap(UNPROCESSED) == WAITED {
        S::wake_all(w);
    }
}

/// Wait until the page is mapped, or unclaimed again (then returns false: claim it yourself).
pub fn wait_mapped<W: StateWord + ?Sized, S: Sleeper<W>>(w: &W) -> bool {
    loop {
        match w.load() {
            MAPPED => return true,
            UNPROCESSED => return false,
            CLAIMED => {
                // Announce a sleeper; if the state moved meanwhile, look again.
                if w.cas(CLAIMED, WAITED).is_ok() {
                    S::sleep(w, WAITED);
                }
            }
            _ => S::sleep(w, WAITED),
        }
    }
}

/// How a bounded wait ([`wait_mapped_for`]) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The page is mapped.
    Mapped,
    /// The claim was given back: claim the page yourself.
    Unclaimed,
    /// Still claimed when the bound passed (the filler may be descheduled).
    TimedOut,
}

/// Wait for a claimed page with a bound: announce the waiter (so a filler that maps pages in
/// runs maps the run early, see `crate::compaction`), spin while `elapsed_ns()` is below
/// `spin_ns`, then sleep on the word until `limit_ns` has passed. `elapsed_ns` reads the time
/// since the wait began.
pub fn wait_mapped_for<W: StateWord + ?Sized, S: Sleeper<W>>(
    w: &W,
    spin_ns: u64,
    limit_ns: u64,
    mut elapsed_ns: impl FnMut() -> u64,
) -> Waited {
    loop {
        match w.load() {
            MAPPED => return Waited::Mapped,
            UNPROCESSED => return Waited::Unclaimed,
            CLAIMED => {
                // Announce a waiter; if the state moved meanwhile, look again.
                let _ = w.cas(CLAIMED, WAITED);
            }
            _ => {
                let e = elapsed_ns();
                if e >= limit_ns {
                    return Waited::TimedOut;
                }
                if e < spin_ns {
                    core::hint::spin_loop();
                } else {
                    S::sleep_for(w, WAITED, limit_ns - e);
                }
            }
        }
    }
}

/// Make sure a page is mapped: claim and run `fill_and_map` (which returns whether it mapped
/// the page), or wait for whoever claimed it. Returns true if this call mapped it.
pub fn ensure<W: StateWord + ?Sized, S: Sleeper<W>>(
    w: &W,
    mut fill_and_map: impl FnMut() -> bool,
) -> bool {
    loop {
        match claim(w) {
            Claim::Mapped => return false,
            Claim::Won => {
                if fill_and_map() {
                    publish::<W, S>(w);
                    return true;
                }
                unclaim::<W, S>(w);
                return false;
            }
            Claim::Busy => {
                if wait_mapped::<W, S>(w) {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[test]
    fn one_filler_per_page_and_waiters_wake() {
        for _ in 0..200 {
            let w = Arc::new(AtomicU32::new(UNPROCESSED));
            let fills = Arc::new(AtomicUsize::new(0));
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let (w, fills) = (w.clone(), fills.clone());
                    std::thread::spawn(move || {
                        ensure::<_, Futex>(&*w, || {
                            fills.fetch_add(1, Ordering::SeqCst);
                            std::thread::yield_now();
                            true
                        });
                        assert_eq!(StateWord::load(&*w), MAPPED);
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(fills.load(Ordering::SeqCst), 1);
        }
    }

    #[test]
    fn a_bounded_wait_times_out_on_a_held_claim_and_sees_the_publish() {
        let w = AtomicU32::new(UNPROCESSED);
        assert_eq!(claim(&w), Claim::Won);
        let t0 = std::time::Instant::now();
        let el = || t0.elapsed().as_nanos() as u64;
        // Nobody publishes: the wait announces itself and times out.
        assert_eq!(
            wait_mapped_for::<_, Futex>(&w, 1_000, 200_000, el),
            Waited::TimedOut
        );
        assert!(t0.elapsed() >= std::time::Duration::from_micros(200));
        assert_eq!(StateWord::load(&w), WAITED);
        // The holder publishes from another thread: the waiter wakes with Mapped.
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(5));
                publish::<_, Futex>(&w);
            });
            let t1 = std::time::Instant::now();
            let r = wait_mapped_for::<_, Futex>(&w, 0, u64::MAX, || t1.elapsed().as_nanos() as u64);
            assert_eq!(r, Waited::Mapped);
        });
        let u = AtomicU32::new(UNPROCESSED);
        assert_eq!(claim(&u), Claim::Won);
        unclaim::<_, Futex>(&u);
        assert_eq!(
            wait_mapped_for::<_, Futex>(&u, 0, 1, || 0),
            Waited::Unclaimed
        );
    }

    #[test]
    fn a_failed_fill_lets_another_thread_claim() {
        let w = AtomicU32::new(UNPROCESSED);
        assert!(!ensure::<_, Futex>(&w, || false));
        assert_eq!(StateWord::load(&w), UNPROCESSED);
        assert!(ensure::<_, Futex>(&w, || true));
        assert_eq!(claim(&w), Claim::Mapped);
    }
}

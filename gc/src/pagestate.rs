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
//!   publish finds MAPPED and does not sleep).
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
    fn a_failed_fill_lets_another_thread_claim() {
        let w = AtomicU32::new(UNPROCESSED);
        assert!(!ensure::<_, Futex>(&w, || false));
        assert_eq!(StateWord::load(&w), UNPROCESSED);
        assert!(ensure::<_, Futex>(&w, || true));
        assert_eq!(claim(&w), Claim::Mapped);
    }
}

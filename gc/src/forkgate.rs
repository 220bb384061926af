//! The fork gate: how `fork` (see [`crate::fork`]) brings the collector's own threads to a
//! boundary without waiting for the running cycle to end.
//!
//! With every heap's world stopped, only collector-side threads still run: the GC thread,
//! compaction workers, parallel markers, the fault handler thread (thread delivery). A child
//! of `fork` inherits their memory but not the threads, so at the fork instant none of them
//! may be half-way through something the child relies on: a destination page filled but not
//! mapped (the child would refill a dense page already updated in place), or a lock the child
//! will take (the large-object space, the weak table, the history...). Such stretches are
//! *regions*: [`Region::enter`] before, drop after. The forking thread *closes* the gate
//! ([`close`]): new entries wait, and it waits until no thread is inside; the fork follows,
//! then [`open`] (parent) or [`reset_in_child`] (child).
//!
//! Invariants:
//! - while the gate is closed, no thread is inside a region: a thread enters only after it
//!   saw the gate open with its own count already published (both sides use `SeqCst`, so a
//!   closer and an enterer cannot both miss each other);
//! - regions nest per thread (a thread-local depth): only the outermost entry counts, so a
//!   thread inside never waits for the gate (it would wait for itself);
//! - a thread inside a region never waits for anything the closing thread holds or waits for:
//!   no safepoint lock, no stop of the world, no thread that may be blocked entering a region,
//!   no user callback; so [`close`] returns after at most the longest region (one batch of
//!   pages, one short critical section);
//! - the gate is process-wide (forks are too) and lock-free: two atomic words with futex
//!   waits, so a child inherits no lock from it, only counts that [`reset_in_child`] clears;
//! - nothing here allocates; entering and leaving are not for signal handlers (the SIGBUS path
//!   needs no region: a mutator in its fault handler is RUNNING, and the gate is only closed
//!   with every mutator stopped, so it has published its page by then). The fault handler
//!   thread (thread delivery) does enter one per fault: its mutator is woken by the mapping
//!   ioctl and may park before the thread publishes the page.

use core::cell::Cell;
use core::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::pagestate::{Futex, Sleeper};

/// A gate: whether a fork has closed it, and how many threads are inside a region of it
/// (outermost entries only). The process has one ([`GATE`]); tests make their own, so that
/// closing theirs never holds up the heaps of other tests running in the same process.
pub(crate) struct Gate {
    /// 1 while a fork has closed the gate.
    closed: AtomicU32,
    /// Threads inside a region (outermost entries only).
    inside: AtomicU32,
}

/// The process's gate (forks are process-wide).
static GATE: Gate = Gate::new();

thread_local! {
    /// This thread's region nesting depth.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// A region: while it lives, a fork waits (see the module documentation). Not `Send`: it
/// counts for the thread that entered.
pub(crate) struct Region {
    gate: &'static Gate,
    _thread: PhantomData<*const ()>,
}

impl Region {
    /// Enter a region of the process's gate, waiting first while a fork has it closed.
    pub(crate) fn enter() -> Region {
        GATE.enter()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        DEPTH.with(|d| {
            d.set(d.get() - 1);
            if d.get() == 0 {
                self.gate.leave();
            }
        });
    }
}

impl Gate {
    /// An open gate with nobody inside.
    const fn new() -> Gate {
        Gate {
            closed: AtomicU32::new(0),
            inside: AtomicU32::new(0),
        }
    }

    /// Enter a region, waiting first while the gate is closed.
    fn enter(&'static self) -> Region {
        DEPTH.with(|d| {
            if d.get() == 0 {
                loop {
                    self.inside.fetch_add(1, Ordering::SeqCst);
                    if self.closed.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                    // A fork is closing or has closed the gate: step back out and wait.
                    self.leave();
                    while self.closed.load(Ordering::SeqCst) != 0 {
                        Futex::sleep(&self.closed, 1);
                    }
                }
            }
            d.set(d.get() + 1);
        });
        Region {
            gate: self,
            _thread: PhantomData,
        }
    }

    /// One outermost region ends: wake a closing fork when it was the last one inside.
    fn leave(&self) {
        if self.inside.fetch_sub(1, Ordering::SeqCst) == 1
            && self.closed.load(Ordering::SeqCst) != 0
        {
            Futex::wake_all(&self.inside);
        }
    }

    /// Close the gate and wait until no thread is inside a region.
    fn close(&self) {
        debug_assert_eq!(
            DEPTH.with(Cell::get),
            0,
            "fork from inside a fork-gate region"
        );
        self.closed.store(1, Ordering::SeqCst);
        loop {
            let v = self.inside.load(Ordering::SeqCst);
            if v == 0 {
                return;
            }
            Futex::sleep(&self.inside, v);
        }
    }

    /// Open the gate again and wake the threads waiting to enter.
    fn open(&self) {
        self.closed.store(0, Ordering::SeqCst);
        Futex::wake_all(&self.closed);
    }
}

/// Close the process's gate and wait until no thread is inside a region. The caller (the
/// forking thread) must not be inside one.
pub(crate) fn close() {
    GATE.close();
}

/// Open the process's gate again (in the parent, after the fork) and wake the threads waiting
/// to enter.
pub(crate) fn open() {
    GATE.open();
}

/// In the child, which has only the forking thread: nobody is inside or waiting.
pub(crate) fn reset_in_child() {
    GATE.inside.store(0, Ordering::SeqCst);
    GATE.closed.store(0, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    /// Regions of several threads against repeated closes: while the gate is closed no thread
    /// is ever inside, and every close returns (no lost wake-up).
    #[test]
    fn closed_gate_has_nobody_inside() {
        // Its own gate: closing the process's gate here would hold up the collector threads
        // of other tests running in this process (their regions assume a stopped world).
        static TEST_GATE: Gate = Gate::new();
        let stop = Arc::new(AtomicBool::new(false));
        let inside_now = Arc::new(AtomicU32::new(0));
        let started = Arc::new(AtomicU32::new(0));
        let hs: Vec<_> = (0..3)
            .map(|_| {
                let (stop, inside_now, started) =
                    (stop.clone(), inside_now.clone(), started.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        if n == 1 {
                            started.fetch_add(1, Ordering::SeqCst);
                        }
                        let _r = TEST_GATE.enter();
                        let _nested = TEST_GATE.enter();
                        inside_now.fetch_add(1, Ordering::SeqCst);
                        std::hint::spin_loop();
                        inside_now.fetch_sub(1, Ordering::SeqCst);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        // Every thread is in its loop before the closing starts (on a loaded machine a thread
        // may otherwise first run after the last close).
        while started.load(Ordering::SeqCst) < 3 {
            std::thread::yield_now();
        }
        for _ in 0..200 {
            TEST_GATE.close();
            // (`inside` itself may read 1 here: a thread entering counts itself before it
            // sees the gate closed and steps back out. What matters is that none is inside.)
            assert_eq!(inside_now.load(Ordering::SeqCst), 0);
            std::thread::sleep(Duration::from_micros(50));
            assert_eq!(inside_now.load(Ordering::SeqCst), 0);
            TEST_GATE.open();
            std::thread::sleep(Duration::from_micros(20));
        }
        stop.store(true, Ordering::SeqCst);
        let entered: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert!(entered >= 3);
    }
}

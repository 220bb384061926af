//! Shared gray work for concurrent marking: the objects shaded but not yet scanned, split
//! between a global queue and one local deque per worker, so that the GC thread, its helper
//! markers (`gc_threads`) and mutators doing mark assists can all take part in one mark
//! (crossbeam's work-stealing deques); the stop-the-world `Tracer::trace_parallel` shares it.
//!
//! - [`GrayPool`] (one per heap, in the marking state): the global [`Injector`], the stealers
//!   of the registered markers' deques, and `pending`, the count of gray objects pushed and not
//!   yet finished (scanned, children pushed).
//! - [`Idle`]: how a worker with nothing to take waits while another still holds work.
//! - [`GrayLocal`]: one worker's part: a private stack (a `Vec`: no atomic operation per push
//!   or pop) and a deque. The objects a worker shades go on its stack; every
//!   [`SPILL_CHECK`] pushes, if the injector is empty (another worker or an assist may be
//!   idle), the older half of the stack moves to the injector, where anyone can take it. A
//!   marker registers its deque ([`GrayLocal::shared`]) so idle workers and assists can steal
//!   from it; an assist's deque is private ([`GrayLocal::private`]); either hands what is left
//!   (deque and stack) back to the injector when it ends ([`GrayLocal::give_back`], also on
//!   drop), so no work ever stays with a mutator.
//!
//! Invariants:
//! - `pending` counts each object in the injector or a deque, each such object being scanned
//!   (until its children are pushed), and one per worker whose stack is non-empty or that is
//!   scanning an object taken from its stack (the stack's *token*: taken before the first
//!   object goes on an empty stack, given back after a scan that leaves the stack empty). It
//!   is incremented before an object becomes visible in the injector or a deque and
//!   decremented only after the scan (and the children's pushes) are done: `pending == 0`
//!   means no gray object exists anywhere, which is how markers detect the end of a drain;
//! - a gray object is in exactly one stack or deque (or being scanned by exactly one worker);
//! - between cycles the pool is empty (`pending == 0`, no registered stealers): the remark
//!   drains it with the world stopped, and mutators only take work while marking is active and
//!   never across a safepoint.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use crossbeam::deque::{Injector, Steal, Stealer, Worker};

/// A worker that found no gray object while the pool's `pending` count says another worker
/// holds some (and may push more) waits with [`Idle::wait`]: spinning briefly, then yielding,
/// then, where it may sleep, sleeping 20 µs doubling up to 320 µs (an idle concurrent helper
/// must not take a CPU from the mutators: the GC CPU budget). A stop-the-world tracer keeps
/// yielding instead (the world waits for it). [`Idle::reset`] once it has work again.
#[derive(Debug, Default)]
pub(crate) struct Idle {
    rounds: u32,
}

impl Idle {
    /// One round of waiting; `may_sleep`: past the spins and yields, sleep instead of yielding.
    pub(crate) fn wait(&mut self, may_sleep: bool) {
        self.rounds += 1;
        if self.rounds < 64 {
            std::hint::spin_loop();
        } else if self.rounds < 80 || !may_sleep {
            std::thread::yield_now();
        } else {
            let us = 20u64 << (self.rounds - 80).min(4);
            std::thread::sleep(Duration::from_micros(us));
        }
    }

    /// Work was found: the next wait starts with spinning again.
    pub(crate) fn reset(&mut self) {
        self.rounds = 0;
    }
}

/// The shared part of the gray set.
#[derive(Default)]
pub(crate) struct GrayPool {
    injector: Injector<usize>,
    stealers: RwLock<Vec<(u64, Stealer<usize>)>>,
    next_id: AtomicU64,
    pending: AtomicUsize,
}

impl core::fmt::Debug for GrayPool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GrayPool")
            .field("pending", &self.pending())
            .finish_non_exhaustive()
    }
}

impl GrayPool {
    /// Gray objects not yet finished, in any deque or being scanned.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Whether there may be work to take without waiting (the injector or a marker's deque
    /// holds some).
    pub(crate) fn has_work(&self) -> bool {
        !self.injector.is_empty()
            || self
                .stealers
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .any(|(_, s)| !s.is_empty())
    }

    /// Take work into `w`: a batch from the injector, else one object from a marker's deque.
    fn steal_into(&self, w: &Worker<usize>) -> Option<usize> {
        loop {
            let mut retry = false;
            match self.injector.steal_batch_and_pop(w) {
                Steal::Success(o) => return Some(o),
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
            for (_, s) in self
                .stealers
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
            {
                match s.steal() {
                    Steal::Success(o) => return Some(o),
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
            if !retry {
                return None;
            }
        }
    }
}

/// A worker with a stack of at least two objects looks this often (in pushes) whether the
/// injector is empty, and then moves the older half of its stack there.
pub(crate) const SPILL_CHECK: u32 = 32;

/// One worker's part of the gray set.
pub(crate) struct GrayLocal<'p> {
    pool: &'p GrayPool,
    w: Worker<usize>,
    /// The registration of `w`'s stealer (markers only).
    id: Option<u64>,
    /// Gray objects only this worker takes; one `pending` unit (the token) stands for all of
    /// them and for the object being scanned from here.
    stack: Vec<usize>,
    /// This worker holds its stack's token.
    token: bool,
    /// The object last popped came from `stack` (its finish may give the token back).
    from_stack: bool,
    /// Pushes since the last spill check.
    pushes: u32,
}

impl<'p> GrayLocal<'p> {
    fn new(pool: &'p GrayPool, w: Worker<usize>, id: Option<u64>) -> Self {
        GrayLocal {
            pool,
            w,
            id,
            stack: Vec::new(),
            token: false,
            from_stack: false,
            pushes: 0,
        }
    }

    /// A marker's deque, registered so that others can steal from it.
    pub(crate) fn shared(pool: &'p GrayPool) -> Self {
        let w = Worker::new_lifo();
        let id = pool.next_id.fetch_add(1, Ordering::Relaxed);
        pool.stealers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, w.stealer()));
        Self::new(pool, w, Some(id))
    }

    /// A private deque (an assist): nobody steals from it; what is left goes back to the
    /// injector.
    pub(crate) fn private(pool: &'p GrayPool) -> Self {
        Self::new(pool, Worker::new_lifo(), None)
    }

    /// The pool.
    pub(crate) fn pool(&self) -> &'p GrayPool {
        self.pool
    }

    /// Gray objects on this worker's stack (counted as one in `pending`).
    pub(crate) fn stacked(&self) -> usize {
        self.stack.len()
    }

    /// A newly shaded object becomes gray (on this worker's stack).
    #[inline]
    pub(crate) fn push(&mut self, o: usize) {
        if !self.token {
            self.pool.pending.fetch_add(1, Ordering::SeqCst);
            self.token = true;
        }
        self.stack.push(o);
        self.pushes += 1;
        if self.pushes >= SPILL_CHECK {
            self.pushes = 0;
            if self.stack.len() >= 2 && self.pool.injector.is_empty() {
                self.spill(self.stack.len() / 2);
            }
        }
    }

    /// Move the `n` oldest objects of the stack to the injector (counted there first).
    fn spill(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.pool.pending.fetch_add(n, Ordering::SeqCst);
        for o in self.stack.drain(..n) {
            self.pool.injector.push(o);
        }
    }

    /// The next gray object to scan: from the stack, else the deque, else stolen. Call
    /// [`GrayLocal::finished`] after scanning it.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<usize> {
        if let Some(o) = self.stack.pop() {
            self.from_stack = true;
            return Some(o);
        }
        self.from_stack = false;
        self.w.pop().or_else(|| self.pool.steal_into(&self.w))
    }

    /// The entry the next [`GrayLocal::pop`] takes from this worker's stack if the scan in
    /// progress pushes nothing (a hint: to prefetch it).
    #[inline]
    pub(crate) fn peek(&self) -> Option<usize> {
        self.stack.last().copied()
    }

    /// The object last popped is scanned (its children pushed).
    #[inline]
    pub(crate) fn finished(&mut self) {
        if !self.from_stack {
            self.pool.pending.fetch_sub(1, Ordering::SeqCst);
        } else if self.stack.is_empty() {
            self.token = false;
            self.pool.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Move what is left in this deque and stack to the injector (still pending). Not
    /// between a [`GrayLocal::pop`] and its [`GrayLocal::finished`].
    pub(crate) fn give_back(&mut self) {
        while let Some(o) = self.w.pop() {
            self.pool.injector.push(o);
        }
        self.spill(self.stack.len());
        if self.token {
            self.token = false;
            self.pool.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for GrayLocal<'_> {
    fn drop(&mut self) {
        // (Between a pop and its finish only by a panic: the object is lost then anyway.)
        self.give_back();
        if let Some(id) = self.id {
            self.pool
                .stealers
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|(i, _)| *i != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_counts_once_and_work_moves_between_workers() {
        let pool = GrayPool::default();
        let mut a = GrayLocal::shared(&pool);
        let mut b = GrayLocal::private(&pool);
        // Fewer pushes than a spill check: all on `a`'s stack, one token in `pending`.
        for o in 1..SPILL_CHECK as usize {
            a.push(o * 8);
        }
        assert_eq!(pool.pending(), 1);
        assert_eq!(a.stacked(), SPILL_CHECK as usize - 1);
        assert!(!pool.has_work());
        assert_eq!(b.pop(), None);
        // The next push checks: the injector is empty, so the older half moves there.
        a.push(SPILL_CHECK as usize * 8);
        let spilled = SPILL_CHECK as usize / 2;
        assert_eq!(a.stacked(), SPILL_CHECK as usize - spilled);
        assert_eq!(pool.pending(), 1 + spilled);
        assert!(pool.has_work());
        // `b` takes the oldest objects; each finish counts.
        let o = b.pop().expect("stolen from the injector");
        assert_eq!(o, 8);
        b.finished();
        assert_eq!(pool.pending(), spilled);
        // An assist hands its leftovers (deque and stack) back: still pending.
        let mut c = GrayLocal::private(&pool);
        c.push(1000);
        c.push(1008);
        assert_eq!(pool.pending(), spilled + 1);
        drop(c);
        assert_eq!(pool.pending(), spilled + 2);
        drop(b);
        // `a` scans its stack; its token goes only with the last one.
        let mut seen = 0;
        while let Some(_o) = a.pop() {
            assert!(pool.pending() > 0);
            a.finished();
            seen += 1;
        }
        assert_eq!(seen, SPILL_CHECK as usize + 1);
        assert_eq!(pool.pending(), 0);
        assert!(!pool.has_work());
        drop(a);
        assert!(pool
            .stealers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty());
    }

    #[test]
    fn children_pushed_while_scanning_the_last_stacked_object_keep_the_drain_open() {
        let pool = GrayPool::default();
        let mut a = GrayLocal::shared(&pool);
        a.push(8);
        assert_eq!(a.pop(), Some(8));
        // Scanning the only object: its children go on the stack under the same token.
        a.push(16);
        assert_eq!(pool.pending(), 1);
        a.finished();
        assert_eq!(pool.pending(), 1, "a child is still gray");
        assert_eq!(a.pop(), Some(16));
        a.finished();
        assert_eq!(pool.pending(), 0);
        // An object taken from the injector carries its own count.
        pool.pending.fetch_add(1, Ordering::SeqCst);
        pool.injector.push(24);
        assert_eq!(a.pop(), Some(24));
        a.push(32);
        assert_eq!(pool.pending(), 2);
        a.finished();
        assert_eq!(pool.pending(), 1);
        assert_eq!(a.pop(), Some(32));
        a.finished();
        assert_eq!(pool.pending(), 0);
    }
}

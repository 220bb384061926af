//! Shared gray work for concurrent marking: the objects shaded but not yet scanned, split
//! between a global queue and one local deque per worker, so that the GC thread, its helper
//! markers (`gc_threads`) and mutators doing mark assists can all take part in one mark
//! (crossbeam's work-stealing deques, as the stop-the-world `Tracer::trace_parallel`).
//!
//! - [`GrayPool`] (one per heap, in the marking state): the global [`Injector`], the stealers
//!   of the registered markers' deques, and `pending`, the count of gray objects pushed and not
//!   yet finished (scanned, children pushed).
//! - [`GrayLocal`]: one worker's deque. A marker registers it ([`GrayLocal::shared`]) so idle
//!   workers and assists can steal from it; an assist's deque is private
//!   ([`GrayLocal::private`]) and hands what is left back to the injector when the assist ends
//!   ([`GrayLocal::give_back`], also on drop), so no work ever stays with a mutator.
//!
//! Invariants:
//! - `pending` is incremented before an object becomes visible in any deque and decremented
//!   only after its scan (and its children's pushes) are done: `pending == 0` means no gray
//!   object exists anywhere, which is how markers detect the end of a drain;
//! - a gray object is in exactly one deque (or being scanned by exactly one worker);
//! - between cycles the pool is empty (`pending == 0`, no registered stealers): the remark
//!   drains it with the world stopped, and mutators only take work while marking is active and
//!   never across a safepoint.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};

use crossbeam::deque::{Injector, Steal, Stealer, Worker};

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

/// One worker's part of the gray set.
pub(crate) struct GrayLocal<'p> {
    pool: &'p GrayPool,
    w: Worker<usize>,
    /// The registration of `w`'s stealer (markers only).
    id: Option<u64>,
}

impl<'p> GrayLocal<'p> {
    /// A marker's deque, registered so that others can steal from it.
    pub(crate) fn shared(pool: &'p GrayPool) -> Self {
        let w = Worker::new_lifo();
        let id = pool.next_id.fetch_add(1, Ordering::Relaxed);
        pool.stealers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, w.stealer()));
        GrayLocal {
            pool,
            w,
            id: Some(id),
        }
    }

    /// A private deque (an assist): nobody steals from it; what is left goes back to the
    /// injector.
    pub(crate) fn private(pool: &'p GrayPool) -> Self {
        GrayLocal {
            pool,
            w: Worker::new_lifo(),
            id: None,
        }
    }

    /// The pool.
    pub(crate) fn pool(&self) -> &'p GrayPool {
        self.pool
    }

    /// A newly shaded object becomes gray.
    #[inline]
    pub(crate) fn push(&self, o: usize) {
        self.pool.pending.fetch_add(1, Ordering::SeqCst);
        self.w.push(o);
    }

    /// The next gray object to scan: ours, else stolen. Call [`GrayLocal::finished`] after
    /// scanning it.
    #[inline]
    pub(crate) fn pop(&self) -> Option<usize> {
        self.w.pop().or_else(|| self.pool.steal_into(&self.w))
    }

    /// The object last popped is scanned (its children pushed).
    #[inline]
    pub(crate) fn finished(&self) {
        self.pool.pending.fetch_sub(1, Ordering::SeqCst);
    }

    /// Move what is left in this deque to the injector (still pending).
    pub(crate) fn give_back(&self) {
        while let Some(o) = self.w.pop() {
            self.pool.injector.push(o);
        }
    }
}

impl Drop for GrayLocal<'_> {
    fn drop(&mut self) {
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
    fn work_moves_between_deques_and_pending_counts_it() {
        let pool = GrayPool::default();
        let a = GrayLocal::shared(&pool);
        let b = GrayLocal::private(&pool);
        for o in 1..=10 {
            a.push(o * 8);
        }
        assert_eq!(pool.pending(), 10);
        assert!(pool.has_work());
        // `b` steals from `a`'s registered deque.
        let o = b.pop().expect("stolen");
        b.finished();
        assert_eq!(pool.pending(), 9);
        assert!(o % 8 == 0);
        // An assist hands its leftovers back: still pending, now in the injector.
        let c = GrayLocal::private(&pool);
        c.push(1000);
        drop(c);
        assert_eq!(pool.pending(), 10);
        let mut seen = 0;
        while let Some(_o) = a.pop() {
            a.finished();
            seen += 1;
        }
        assert_eq!(seen, 10);
        assert_eq!(pool.pending(), 0);
        assert!(!pool.has_work());
        drop(a);
        assert!(pool
            .stealers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty());
    }
}

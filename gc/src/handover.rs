//! Lock-free hand-overs from the mutators to the collector: the queues that mutators push into
//! while marking runs (flushed SATB buffers, retired allocation buffers, new large objects) and
//! the marker empties.
//!
//! These were `Mutex<Vec<_>>`s. A mutator's flush appended its buffer to the global vector
//! under the lock, so the append could reallocate and copy the whole queue there; and on a
//! machine with more runnable threads than CPUs a holder switched out at a scheduler tick kept
//! every other mutator waiting for its lock for a whole tick (4 ms at `HZ=250`: a futex trace
//! of the suite's request and churn workloads showed it). Here no mutator ever waits for
//! another thread:
//!
//! - [`BufferQueue`] takes a whole SATB buffer in O(1): the mutator's buffer is *swapped* for
//!   a spare one (a recycled, emptied buffer of the same capacity, or a new one when none is
//!   spare) and the full one is pushed onto a lock-free queue (crossbeam's `SegQueue`).
//!   Nothing is copied or reallocated on the mutator's side; the consumer empties the buffers
//!   it pops and gives them back as spares (at most [`MAX_SPARES`] are kept);
//! - [`Handover`] is the same queue for single items (a retired buffer's range, a large
//!   object).
//!
//! Invariants:
//! - every item pushed before a [`BufferQueue::drain`] or [`Handover::take`] begins (in the
//!   happens-before order: the push returned, and the consumer synchronised with the pusher,
//!   e.g. through the safepoint lock of a stop of the world) is returned by it; items pushed
//!   concurrently are returned by it or by a later call. The queue's push (release) and pop
//!   (acquire) order a buffer's contents before its consumption;
//! - a drain or take pops at most as many entries as the queue held when it began, so a
//!   consumer racing with fast producers always returns; it answers "empty"
//!   ([`BufferQueue::is_empty`]) only after the queue was seen empty;
//! - mutators push only while RUNNING; the collector pops. Neither side holds a lock, so
//!   neither can be held up by the other being switched out (a `SegQueue` push or pop may spin
//!   for a few instructions' worth while another thread is between the two halves of its own
//!   push or pop: bounded, no sleep);
//! - fork: every mutator is stopped at a fork (see [`crate::fork`]), so no push is half done in
//!   a child; a forked child never runs concurrent marking again, so it never pops.

use crossbeam::queue::SegQueue;

/// Spare buffers kept for recycling (beyond this, emptied buffers are freed).
pub(crate) const MAX_SPARES: usize = 64;

/// A lock-free queue of flushed buffers of `usize` entries, each of capacity `CAP` (see the
/// module documentation).
pub(crate) struct BufferQueue<const CAP: usize> {
    /// Buffers handed over, not yet drained.
    full: Handover<Vec<usize>>,
    /// Emptied buffers for the next hand-overs (capacity at least `CAP`; at most about
    /// [`MAX_SPARES`]: its length is read before a push, racing only with the pops).
    spare: SegQueue<Vec<usize>>,
}

impl<const CAP: usize> Default for BufferQueue<CAP> {
    fn default() -> Self {
        BufferQueue {
            full: Handover::default(),
            spare: SegQueue::new(),
        }
    }
}

impl<const CAP: usize> core::fmt::Debug for BufferQueue<CAP> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BufferQueue")
            .field("full", &self.full.q.len())
            .field("spare", &self.spare.len())
            .finish()
    }
}

impl<const CAP: usize> BufferQueue<CAP> {
    /// Hand `buf` over whole (a mutator's flush): O(1), no copy, no lock. `buf` is left empty
    /// with a capacity of at least `CAP`. Nothing happens if it is empty.
    pub(crate) fn hand_over(&self, buf: &mut Vec<usize>) {
        if buf.is_empty() {
            return;
        }
        let fresh = self.spare.pop().unwrap_or_else(|| Vec::with_capacity(CAP));
        self.full.push(std::mem::replace(buf, fresh));
    }

    /// Call `f` on every entry of the buffers handed over before this call (see the module
    /// invariants), in no particular order, and recycle the buffers. Returns the entries seen.
    pub(crate) fn drain(&self, mut f: impl FnMut(usize)) -> usize {
        let mut n = 0;
        self.full.pop_each(|mut b| {
            n += b.len();
            b.drain(..).for_each(&mut f);
            self.recycle(b);
        });
        n
    }

    /// Whether no buffer is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.full.is_empty()
    }

    /// Drop every queued entry (the buffers are recycled).
    pub(crate) fn clear(&self) {
        self.drain(|_| {});
    }

    /// Keep an emptied buffer as a spare if it has the usual capacity and there is room.
    fn recycle(&self, b: Vec<usize>) {
        if (CAP..=2 * CAP).contains(&b.capacity()) && self.spare.len() < MAX_SPARES {
            self.spare.push(b);
        }
    }
}

/// A lock-free queue of single items handed over by mutators (see the module documentation).
pub(crate) struct Handover<T> {
    q: SegQueue<T>,
}

impl<T> Default for Handover<T> {
    fn default() -> Self {
        Handover { q: SegQueue::new() }
    }
}

impl<T> core::fmt::Debug for Handover<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Handover")
            .field("len", &self.q.len())
            .finish()
    }
}

impl<T> Handover<T> {
    /// Hand `t` over: O(1), no lock.
    pub(crate) fn push(&self, t: T) {
        self.q.push(t);
    }

    /// Call `f` on each item handed over before this call (see the module invariants),
    /// oldest first: at most as many as the queue held when it began, so it returns however
    /// fast others push.
    fn pop_each(&self, mut f: impl FnMut(T)) {
        for _ in 0..self.q.len() {
            match self.q.pop() {
                Some(t) => f(t),
                None => break,
            }
        }
    }

    /// The items handed over before this call (see the module invariants), oldest first.
    pub(crate) fn take(&self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.q.len());
        self.pop_each(|t| out.push(t));
        out
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Drop every queued item.
    pub(crate) fn clear(&self) {
        self.pop_each(drop);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_handed_over_whole_and_recycled() {
        let q = BufferQueue::<4>::default();
        let mut buf = vec![8, 16, 24];
        q.hand_over(&mut buf);
        assert!(buf.is_empty());
        assert!(buf.capacity() >= 4);
        assert!(!q.is_empty());
        let mut seen = Vec::new();
        assert_eq!(q.drain(|v| seen.push(v)), 3);
        assert_eq!(seen, vec![8, 16, 24]);
        assert!(q.is_empty());
        // (The drained buffer had capacity 3, so it was not kept: a new one came back.)
        buf.extend([1, 2, 3, 4]);
        q.hand_over(&mut buf);
        assert!(buf.is_empty() && buf.capacity() >= 4);
        // An empty buffer is not queued.
        q.hand_over(&mut buf);
        assert_eq!(q.drain(|_| {}), 4);
        assert_eq!(q.drain(|_| {}), 0);
    }

    #[test]
    fn spares_stay_bounded() {
        let q = BufferQueue::<4>::default();
        for i in 0..3 * MAX_SPARES {
            let mut b = Vec::with_capacity(4);
            b.push(i);
            q.hand_over(&mut b);
        }
        q.clear();
        assert_eq!(q.spare.len(), MAX_SPARES);
    }

    #[test]
    fn concurrent_hand_overs_lose_nothing() {
        const THREADS: usize = 4;
        const PER: usize = 2000;
        let q = BufferQueue::<8>::default();
        let mut got = std::collections::HashSet::new();
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let q = &q;
                s.spawn(move || {
                    let mut buf = Vec::new();
                    for i in 0..PER {
                        buf.push(t * PER + i);
                        if buf.len() == 8 {
                            q.hand_over(&mut buf);
                        }
                    }
                    q.hand_over(&mut buf);
                });
            }
            while got.len() < THREADS * PER {
                q.drain(|v| assert!(got.insert(v), "entry {v} seen twice"));
                std::thread::yield_now();
            }
        });
        assert!(q.is_empty());
        let h = Handover::default();
        h.push((1usize, 2usize));
        h.push((3, 4));
        assert_eq!(h.take(), vec![(1, 2), (3, 4)]);
        assert!(h.is_empty());
    }
}

//! Buffers for faults that fill more than their own page (copy strategy,
//! [`crate::HeapConfig::fault_group_pages`]): a fault that claims destination page `k` also
//! claims the pages around it in its group that nobody claimed yet, fills them with one pass
//! and maps them with one `UFFDIO_COPY` ([`crate::compaction::Compaction::fault_page`]), so a mutator that
//! touches those pages later finds them mapped instead of taking a fault each (a fault costs
//! its signal delivery, `sigreturn` and a mapping call of its own; a page more in a run costs
//! its fill and its share of one copy).
//!
//! The run is filled into one of a fixed set of buffers allocated with the heap: the SIGBUS
//! resolver runs on the faulting thread's own stack, whose size the embedder chose, so a run
//! of pages is not put there.
//!
//! Invariants:
//! - [`BatchBuffers::take`] and dropping its [`BatchBuffer`] are async-signal-safe: one atomic
//!   bit per buffer, taken with a compare-and-swap and never waited for (no buffer free: the
//!   caller fills its own page alone, on its stack), so no allocation, no lock, no panic;
//! - a buffer is used by the one thread that holds its bit, from `take` until the guard is
//!   dropped (a handler interrupted by another fault on the same thread takes another bit or
//!   none).

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use faultline_heap::PAGE_SIZE;

/// The most pages one fault fills (its own and those around it): the size of a buffer.
pub(crate) const MAX_FAULT_RUN: usize = 16;
/// Buffers per heap (at most 64: one bit each in a word). Faults beyond this many at once
/// fill their own page alone.
const BUFFERS: usize = 8;

/// One buffer's bytes.
const RUN_BYTES: usize = MAX_FAULT_RUN * PAGE_SIZE;

/// A fixed set of run buffers, each taken by one faulting thread at a time.
pub(crate) struct BatchBuffers {
    /// One bit per buffer: set while a thread holds it.
    busy: AtomicU64,
    /// `count` buffers of `RUN_BYTES`, one after the other, page aligned (a mapping call's
    /// source), allocated zeroed (untouched pages cost no memory); none when runs are off.
    mem: Option<NonNull<u8>>,
    count: usize,
}

// SAFETY: a buffer is only reached through a `BatchBuffer` guard, which the thread that set
// the buffer's `busy` bit holds alone until it is dropped (the module invariants); the
// allocation itself is owned by this value and freed only in its `Drop`.
unsafe impl Sync for BatchBuffers {}
// SAFETY: as above (the pointer is an owned allocation).
unsafe impl Send for BatchBuffers {}

/// The layout of `n` buffers.
fn layout(n: usize) -> Layout {
    Layout::from_size_align(n * RUN_BYTES, PAGE_SIZE).expect("a few buffers of 64 KiB")
}

impl BatchBuffers {
    /// Buffers for runs, or an empty set (`on` false: faults fill one page each). Allocated
    /// here, outside any signal handler (the memory is only touched by the faults using it).
    pub(crate) fn new(on: bool) -> Self {
        let mem = on.then(|| {
            let l = layout(BUFFERS);
            // SAFETY: `l` has a non-zero size.
            let p = unsafe { std::alloc::alloc_zeroed(l) };
            NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(l))
        });
        BatchBuffers {
            busy: AtomicU64::new(0),
            mem,
            count: if on { BUFFERS } else { 0 },
        }
    }

    /// A free buffer, or None (none configured, or every one in use). Never waits.
    /// Async-signal-safe.
    pub(crate) fn take(&self) -> Option<BatchBuffer<'_>> {
        let mut busy = self.busy.load(Ordering::Relaxed);
        loop {
            let free = !busy & mask(self.count);
            if free == 0 {
                return None;
            }
            let i = free.trailing_zeros() as usize;
            match self.busy.compare_exchange_weak(
                busy,
                busy | 1 << i,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(BatchBuffer { set: self, i }),
                Err(b) => busy = b,
            }
        }
    }
}

/// The bits of `n` buffers.
fn mask(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// A buffer held by the calling thread (given back when dropped).
pub(crate) struct BatchBuffer<'a> {
    set: &'a BatchBuffers,
    i: usize,
}

impl BatchBuffer<'_> {
    /// The buffer's pages.
    pub(crate) fn pages(&mut self) -> &mut [u8] {
        let base = self.set.mem.expect("a buffer was taken, so they exist");
        // SAFETY: buffer `i` lies inside the allocation (`i < count`), is initialised (it was
        // allocated zeroed), and this guard holds its bit: no other thread reaches it until
        // the guard is dropped, and `&mut self` makes this the only borrow through the guard.
        unsafe { std::slice::from_raw_parts_mut(base.as_ptr().add(self.i * RUN_BYTES), RUN_BYTES) }
    }
}

impl Drop for BatchBuffers {
    fn drop(&mut self) {
        if let Some(p) = self.mem {
            // SAFETY: allocated in `new` with this layout; no guard outlives `self`.
            unsafe { std::alloc::dealloc(p.as_ptr(), layout(self.count)) };
        }
    }
}

impl Drop for BatchBuffer<'_> {
    fn drop(&mut self) {
        self.set
            .busy
            .fetch_and(!(1u64 << self.i), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_buffer_is_held_by_one_taker_at_a_time() {
        let set = BatchBuffers::new(true);
        let mut held: Vec<_> = (0..BUFFERS).map(|_| set.take().expect("free")).collect();
        assert!(set.take().is_none(), "every buffer is taken");
        let ptrs: std::collections::HashSet<_> = held
            .iter_mut()
            .map(|b| b.pages().as_ptr() as usize)
            .collect();
        assert_eq!(ptrs.len(), BUFFERS, "distinct buffers");
        assert!(ptrs.iter().all(|p| p % PAGE_SIZE == 0), "page aligned");
        held.pop();
        let mut again = set.take().expect("the dropped one is free again");
        assert_eq!(again.pages().len(), MAX_FAULT_RUN * PAGE_SIZE);
    }

    #[test]
    fn no_buffers_when_off() {
        assert!(BatchBuffers::new(false).take().is_none());
    }
}

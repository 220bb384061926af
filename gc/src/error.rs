//! The embedding API's error types for collections and attaching (allocation errors live with
//! allocation, [`crate::AllocError`], which wraps [`CollectError`]).
//!
//! Invariant: every message names what the embedder did or set, never an internal field.

use faultline_heap::ArenaError;

use crate::reentry::Callback;

/// Why a collection (or a wait for one) did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    /// A collection, verification or wait for the cycle was requested from inside a callback
    /// that runs as part of a collection. It would wait for itself (or deadlock on the
    /// safepoint lock), so it is refused: do it after the callback returns (for example, set
    /// a flag in the callback and collect from the mutator's loop).
    #[error("{request} called from inside {callback}, which runs as part of a collection: it would wait for itself, so it is refused (do it after the callback returns)")]
    Reentrant {
        /// What was asked for (`"collect"`, `"verify"`, ...).
        request: &'static str,
        /// The callback the request came from.
        callback: Callback,
    },
    /// A kernel call of the collection failed where failing is allowed (failures after
    /// references were rewritten end the process instead): the heap stays consistent and
    /// usable. The [`ArenaError`] names the call and its errno where known
    /// ([`ArenaError::Sys`], [`ArenaError::Uffd`]).
    #[error("the collection failed in the kernel: {0}")]
    Kernel(#[source] ArenaError),
    /// The live objects do not fit in the destination half beside the pinned objects that
    /// stay there (its largest part free of them: see [`crate::Mutator::pin`]). Nothing was
    /// moved: the heap stays consistent and usable, and the cycle frees nothing; dropping
    /// pins lets a later cycle fit.
    #[error("the live objects ({live_bytes} bytes) do not fit beside the pinned objects of the destination half (its largest part free of them holds {room_bytes} bytes): this cycle moves nothing; drop pins to let a later one fit")]
    NoRoomBesidePins {
        /// Bytes the compacted objects need (whole pages).
        live_bytes: usize,
        /// Bytes of the destination window.
        room_bytes: usize,
    },
    /// The concurrent collector's thread could not be started.
    #[error("starting the GC thread failed: {0}")]
    Spawn(String),
    /// A wait on one heap (a collection, a verification, a wait for a cycle) was asked for by a
    /// thread whose mutator of another heap is running. Both heaps' pauses could then wait for
    /// each other's threads (a deadlock), so it is refused: make the call inside that
    /// mutator's [`crate::Mutator::native`] section, or from another thread.
    #[error("{request} on heap #{heap} called by a thread whose mutator #{mutator} of heap #{other_heap} is running: a pause of heap #{other_heap} would wait for this thread while it waits for heap #{heap}, so it is refused (call it inside that mutator's Mutator::native, or from another thread)")]
    AttachedElsewhere {
        /// What was asked for (`"collect"`, `"verify"`, ...).
        request: &'static str,
        /// The heap the request was for ([`crate::Heap::id`]).
        heap: u64,
        /// The heap of the calling thread's running mutator.
        other_heap: u64,
        /// That mutator's id ([`crate::Mutator::id`]).
        mutator: u64,
    },
}

impl From<ArenaError> for CollectError {
    fn from(e: ArenaError) -> Self {
        CollectError::Kernel(e)
    }
}

/// Why a thread could not attach to a heap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The calling thread already has a mutator of this heap. A thread's second mutator would
    /// never reach a safepoint while the first one runs (or waits), so any collection would
    /// wait for it forever: use the existing mutator, or drop it first.
    #[error("this thread already has mutator #{mutator} of heap #{heap}: one mutator per heap per thread (use that one, or drop it first)")]
    AlreadyAttached {
        /// The heap's id ([`crate::Heap::id`]).
        heap: u64,
        /// The existing mutator's id ([`crate::Mutator::id`]).
        mutator: u64,
    },
    /// The calling thread already has a mutator of another heap. A thread is attached to one
    /// heap at a time: blocked in one heap's call (a pause, an allocation waiting for memory),
    /// it could not reach a safepoint of the other, and two such threads could wait for each
    /// other forever. Drop that mutator first, or use another thread.
    #[error("this thread already has mutator #{mutator} of heap #{other_heap}: a thread is attached to one heap at a time (a wait in heap #{heap} while that mutator runs could deadlock with another thread); drop it first, or attach from another thread")]
    OtherHeap {
        /// The heap attach was called on ([`crate::Heap::id`]).
        heap: u64,
        /// The heap this thread is attached to.
        other_heap: u64,
        /// The existing mutator's id ([`crate::Mutator::id`]).
        mutator: u64,
    },
    /// `attach` was called from inside a callback that runs with the world stopped.
    #[error("attach called from inside {0}, which runs with the world stopped: it would deadlock")]
    Reentrant(Callback),
    /// `attach` (or `try_attach`, `attach_named`) was called from inside a callback a
    /// collection runs on its own thread (the `on_cycle` hook of a concurrent cycle, the mark
    /// hook): a mutator kept there after the callback returns (in a thread-local, say) would
    /// be attached to a collector thread that never reaches a safepoint, and every later
    /// collection would wait for it forever. [`crate::Heap::with_mutator`] works there: its
    /// mutator is detached when its closure returns.
    #[error("attach called from inside {0}: a mutator kept after the callback returns would hold up every later collection; use Heap::with_mutator there, whose mutator is detached when its closure returns")]
    InsideCallback(Callback),
}

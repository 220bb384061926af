//! Re-entrancy from user callbacks: which callback (if any) the calling thread is inside.
//!
//! Faultline calls embedder code from inside a collection: the `on_cycle` hook (after a cycle
//! is recorded, before it is idle), [`crate::RootSource::for_each_root`] (with the world
//! stopped by the calling thread, the safepoint lock held) and the debug mark hook (on the GC
//! thread, during concurrent marking). From there, a request that waits for the cycle
//! (`collect`, `start_collection`, `verify`, `wait_for_cycle`, an allocation that needs a
//! collection) would wait for itself, and one that takes the safepoint lock would deadlock on
//! it. Such requests check [`current`] first and are refused with
//! [`crate::CollectError::Reentrant`] (or, for calls that return no `Result`, a panic naming
//! the mistake). `attach` is refused in all three (`AttachError::Reentrant` in a root source,
//! `AttachError::InsideCallback` in the hooks, where a mutator kept past the callback would
//! stay attached to a collector thread); `Heap::with_mutator` works in the hooks.
//!
//! Invariants:
//! - the per-thread marker is set only by [`enter`] and restored (to what it was before, so
//!   nested callbacks unwind correctly, panics included) when its [`CallbackScope`] drops;
//! - every place that runs embedder code during a collection does so inside a scope.

use core::cell::Cell;

/// A callback Faultline runs during a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Callback {
    /// The `on_cycle` hook ([`crate::HeapConfig::on_cycle`]).
    OnCycle,
    /// [`crate::RootSource::for_each_root`] (runs with the world stopped).
    RootSource,
    /// The debug mark hook ([`crate::DebugConfig`]'s `mark_hook`, on the GC thread).
    MarkHook,
}

impl core::fmt::Display for Callback {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Callback::OnCycle => "the on_cycle hook",
            Callback::RootSource => "RootSource::for_each_root",
            Callback::MarkHook => "the debug mark hook",
        })
    }
}

thread_local! {
    static CURRENT: Cell<Option<Callback>> = const { Cell::new(None) };
}

/// The callback the calling thread is inside, if any.
#[inline]
pub(crate) fn current() -> Option<Callback> {
    CURRENT.with(Cell::get)
}

/// Panic, naming `what`, if the calling thread is inside [`crate::RootSource::for_each_root`]:
/// the world is stopped there in the middle of a collection (roots part visited, part
/// forwarded), so a mutator reached from it (through a thread-local, say) must not read or
/// write the heap or its roots, nor allocate. A panic there aborts the process (see
/// [`crate::RootSource`]). One thread-local load on the accessors that call it.
#[inline(always)]
pub(crate) fn refuse_in_root_source(what: &'static str) {
    if current() == Some(Callback::RootSource) {
        in_root_source(what);
    }
}

#[cold]
#[inline(never)]
fn in_root_source(what: &'static str) -> ! {
    panic!(
        "{what}: called from inside RootSource::for_each_root, which runs with the world stopped in the middle of a collection (objects and roots half moved): no heap, root or allocation access is allowed there"
    )
}

/// Marks the calling thread as inside a callback until dropped.
pub(crate) struct CallbackScope {
    previous: Option<Callback>,
}

/// Enter callback `cb` on the calling thread.
pub(crate) fn enter(cb: Callback) -> CallbackScope {
    CallbackScope {
        previous: CURRENT.with(|c| c.replace(Some(cb))),
    }
}

impl Drop for CallbackScope {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
    }
}

//! Root storage: what the collector scans as roots, apart from the heap itself.
//!
//! - per mutator ([`LocalRoots`]): `Root` handles, the precise value stack, the mutator's
//!   root sources, and its unflushed SATB entries (not roots, but owned and handed over the
//!   same way);
//! - per heap ([`HeapRoots`]): the global-root table (`GlobalRoot` handles) and heap-wide
//!   [`RootSource`]s.
//!
//! Invariants:
//! - a root slot holds a `Value`'s bits: 0 (null), an immediate, or the address of a live
//!   object; the collector rewrites object addresses in place when objects move;
//! - `LocalRoots` is touched only by its owning thread while it runs, or by the collector while
//!   the owner is stopped (see [`crate::safepoint`]); `HeapRoots` is behind its own mutexes,
//!   which the collector takes only while the world is stopped.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, PoisonError};

use crate::reentry::{self, Callback};

/// Embedder root slots outside Faultline's own handles and stacks (a runtime's globals, say).
///
/// `for_each_root` is called only while every mutator is stopped; it must present every slot
/// that may hold a reference, and the collector may store an updated value into each.
///
/// It runs with the world stopped by the calling thread: it must not collect, verify, wait for
/// a cycle, attach, drop a mutator or add a root source. Those requests are refused there
/// (collections and waits with [`crate::CollectError::Reentrant`], the others with a panic
/// naming the mistake) instead of deadlocking.
pub trait RootSource: Send + Sync {
    /// Call `visit` once for every root slot.
    fn for_each_root(&self, visit: &mut dyn FnMut(&AtomicUsize));
}

/// The roots owned by one mutator.
#[derive(Default)]
pub(crate) struct LocalRoots {
    /// `Root` handle slots (0 when free).
    pub handles: Vec<usize>,
    /// Free handle slots.
    pub free: Vec<u32>,
    /// The precise value stack.
    pub stack: Vec<usize>,
    /// The mutator's own root sources.
    pub sources: Vec<Arc<dyn RootSource>>,
    /// SATB entries not yet flushed to the heap's queue.
    pub satb: Vec<usize>,
}

/// The global-root table.
#[derive(Default)]
pub(crate) struct GlobalSlots {
    /// Slots (0 when free).
    pub slots: Vec<usize>,
    /// Free slots.
    pub free: Vec<usize>,
}

/// Heap-wide roots.
#[derive(Default)]
pub(crate) struct HeapRoots {
    /// `GlobalRoot` slots.
    pub globals: Mutex<GlobalSlots>,
    /// Heap-wide root sources.
    pub sources: Mutex<Vec<Arc<dyn RootSource>>>,
}

impl HeapRoots {
    /// Lock the global table (a poisoned lock is still consistent: every update is one step).
    pub(crate) fn globals(&self) -> std::sync::MutexGuard<'_, GlobalSlots> {
        self.globals.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Add a heap-wide root source.
    ///
    /// # Panics
    /// From inside a root source (the sources are being visited: it would deadlock).
    pub(crate) fn add_source(&self, src: Arc<dyn RootSource>) {
        if reentry::current() == Some(Callback::RootSource) {
            panic!("add_root_source called from inside RootSource::for_each_root (the root sources are being visited): it would deadlock");
        }
        self.sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(src);
    }

    /// Visit every heap-wide root slot; `f` may rewrite it.
    pub(crate) fn visit(&self, f: &mut dyn FnMut(&mut usize)) {
        let mut globals = self.globals();
        for s in globals.slots.iter_mut() {
            f(s);
        }
        drop(globals);
        let sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        for src in sources.iter() {
            visit_source(src.as_ref(), f);
        }
    }
}

/// Visit the slots of one root source through `f` (which may rewrite them).
pub(crate) fn visit_source(src: &dyn RootSource, f: &mut dyn FnMut(&mut usize)) {
    use std::sync::atomic::Ordering;
    let _scope = reentry::enter(Callback::RootSource);
    src.for_each_root(&mut |a: &AtomicUsize| {
        let mut v = a.load(Ordering::Relaxed);
        f(&mut v);
        a.store(v, Ordering::Relaxed);
    });
}

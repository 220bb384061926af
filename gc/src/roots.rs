//! Root storage: what the collector scans as roots, apart from the heap itself.
//!
//! - per mutator ([`LocalRoots`]): `Root` handles, the precise value stack, the mutator's
//!   root sources, and its unflushed SATB entries (not roots, but owned and handed over the
//!   same way);
//! - per heap ([`HeapRoots`]): the global-root table (`GlobalRoot` handles), heap-wide
//!   [`RootSource`]s, and the strong slots of the weak table ([`crate::weak`]: finalization
//!   held values, pending and delivered), and the reference slots of stranded pinned objects
//!   ([`crate::pins`]).
//!
//! Invariants:
//! - a root slot holds a `Value`'s bits: 0 (null), an immediate, or the address of a live
//!   object; the collector rewrites object addresses in place when objects move;
//! - `HeapRoots::era` is the heap's era (see [`crate::value`]): changed only while the world is
//!   stopped, before any root is rewritten; between [`HeapRoots::new_era`] and
//!   [`HeapRoots::end_forwarding`] (the flip's root update, or the initial mark's root
//!   visit) root-source slots are visited if
//!   current in the previous era and stamped with the new one, at every other visit if current
//!   in the era (and stamped with it);
//! - `LocalRoots` is touched only by its owning thread while it runs, or by the collector while
//!   the owner is stopped (see [`crate::safepoint`]); `HeapRoots` is behind its own locks,
//!   which the collector takes only while the world is stopped; the global table's is a
//!   reader-writer lock, so mutators reading `GlobalRoot`s never wait for each other (a
//!   reader switched out holding it holds up only writers).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crate::pins::PinTable;
use crate::reentry::{self, Callback};
use crate::value::{next_era, RootSlot};
use crate::weak::WeakTables;

/// Embedder root slots outside Faultline's own handles and stacks (a runtime's globals, say).
///
/// `for_each_root` is called only while every mutator is stopped; it must present every slot
/// that may hold a reference, and the collector may store an updated value into each. The
/// embedder reads and writes its slots through a mutator ([`crate::Mutator::load`],
/// [`crate::Mutator::store`]), with no `unsafe`; a slot it does not present goes stale at the
/// next collection and is refused on read.
///
/// It runs with the world stopped by the calling thread, in the middle of a collection: it
/// must not collect, verify, wait for a cycle, attach, drop a mutator or add a root source,
/// nor use a mutator (one reached through a thread-local, say) to read or write objects,
/// roots or the value stack, or to allocate. Those requests are refused there (collections
/// and waits with [`crate::CollectError::Reentrant`], the others with a panic naming the
/// mistake) instead of deadlocking or reading half-moved objects.
///
/// It must not panic: a panic in `for_each_root` (a refusal above included) leaves a stopped
/// world with its roots half visited, so it ends the process (an abort, after the panic's
/// message and a line saying why) instead of unwinding into a heap that every other mutator
/// would wait on forever.
pub trait RootSource: Send + Sync {
    /// Call `visit` once for every root slot.
    fn for_each_root(&self, visit: &mut dyn FnMut(&RootSlot));
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

impl LocalRoots {
    /// Free `Root` slot `index` (its object no longer rooted by it).
    pub(crate) fn free_slot(&mut self, index: u32) {
        self.handles[index as usize] = 0;
        self.free.push(index);
    }
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
pub(crate) struct HeapRoots {
    /// The heap's era: a `Value` naming an object is valid only in the era it was read in.
    pub era: AtomicU64,
    /// The era before the current one, while the pause that started the current one visits
    /// the roots (the flip, the initial mark, the barrier switch; else 0).
    forwarding_from: AtomicU64,
    /// `GlobalRoot` slots (readers, `GlobalRoot::get` on any mutator, share the lock).
    pub globals: RwLock<GlobalSlots>,
    /// Heap-wide root sources.
    pub sources: Mutex<Vec<Arc<dyn RootSource>>>,
    /// Weak references, ephemerons and finalization ([`crate::weak`]): only its held values
    /// are roots.
    pub weak: WeakTables,
    /// Pinned moving-space objects ([`crate::pins`]): the reference slots of stranded ones are
    /// roots.
    pub pins: PinTable,
}

impl Default for HeapRoots {
    fn default() -> Self {
        HeapRoots {
            era: AtomicU64::new(next_era()),
            forwarding_from: AtomicU64::new(0),
            globals: RwLock::default(),
            sources: Mutex::default(),
            weak: WeakTables::default(),
            pins: PinTable::default(),
        }
    }
}

impl HeapRoots {
    /// Heap roots whose weak table uses `weak_box` as the weak-box type.
    pub(crate) fn with_weak_box(weak_box: faultline_heap::object::TypeId) -> HeapRoots {
        HeapRoots {
            weak: WeakTables::new(weak_box),
            ..HeapRoots::default()
        }
    }

    /// The current era.
    #[inline]
    pub(crate) fn era(&self) -> u64 {
        self.era.load(Ordering::Relaxed)
    }

    /// Start a new era (the world is stopped): objects are about to move or be freed (a flip),
    /// or a marking snapshot is taken (an initial mark); the roots are about to be visited
    /// from the old era (until [`HeapRoots::end_forwarding`]).
    pub(crate) fn new_era(&self) {
        self.forwarding_from.store(self.era(), Ordering::Relaxed);
        self.era.store(next_era(), Ordering::Relaxed);
    }

    /// The root visit that followed [`HeapRoots::new_era`] is done.
    pub(crate) fn end_forwarding(&self) {
        self.forwarding_from.store(0, Ordering::Relaxed);
    }

    /// The eras a root-source slot is visited from and stamped with (see the module
    /// invariants).
    pub(crate) fn visit_eras(&self) -> (u64, u64) {
        let era = self.era();
        match self.forwarding_from.load(Ordering::Relaxed) {
            0 => (era, era),
            from => (from, era),
        }
    }

    /// Lock the global table for writing (a poisoned lock is still consistent: every update
    /// is one step).
    pub(crate) fn globals(&self) -> std::sync::RwLockWriteGuard<'_, GlobalSlots> {
        self.globals.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lock the global table for reading: readers never wait for each other (only for a
    /// writer: a new, set or dropped `GlobalRoot`, or a pause visiting the table).
    pub(crate) fn globals_read(&self) -> std::sync::RwLockReadGuard<'_, GlobalSlots> {
        self.globals.read().unwrap_or_else(PoisonError::into_inner)
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

    /// Visit every heap-wide root slot; `f` may rewrite it. `live`, if given, decides which
    /// references of root-source slots are visited (see [`visit_source`]).
    pub(crate) fn visit(
        &self,
        live: Option<&dyn Fn(usize) -> bool>,
        f: &mut dyn FnMut(&mut usize),
    ) {
        let mut globals = self.globals();
        for s in globals.slots.iter_mut() {
            f(s);
        }
        drop(globals);
        let sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        for src in sources.iter() {
            visit_source(src.as_ref(), self.visit_eras(), live, f);
        }
        drop(sources);
        self.weak.visit_strong(f);
        self.pins.visit_slots(f);
    }
}

/// Visit the slots of one root source through `f` (which may rewrite them), those current in
/// `eras.0` (and, if `live` is given, whose reference it says is live); each visited one is
/// current in `eras.1` afterwards.
///
/// `live` guards the flip's forwarding against a source that presents a slot there it did not
/// present to marking (a source is embedder code: nothing makes it present the same slots at
/// every call): that slot's object was not marked, and forwarding its address would give it
/// another object's new address. Such a slot is left alone, stale, and refused on read.
pub(crate) fn visit_source(
    src: &dyn RootSource,
    eras: (u64, u64),
    live: Option<&dyn Fn(usize) -> bool>,
    f: &mut dyn FnMut(&mut usize),
) {
    let _scope = reentry::enter(Callback::RootSource);
    let visited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        src.for_each_root(&mut |slot: &RootSlot| slot.visit(eras.0, eras.1, live, f))
    }));
    if visited.is_err() {
        // The world is stopped by this thread and the roots are part visited (part forwarded,
        // at the flip): unwinding would leave every other mutator parked for good and the
        // heap half updated. End the process, saying why (the panic's message is above).
        eprintln!(
            "faultline: RootSource::for_each_root panicked during a collection (see the panic above); the world is stopped and its roots half visited, so the heap cannot continue: aborting"
        );
        std::process::abort();
    }
}

//! The embedding API of weak references, ephemerons and finalization queues (the collector's
//! side is [`crate::weak`]).
//!
//! - [`Mutator::new_weak`] allocates a weak box: a heap object (store it anywhere a value goes)
//!   whose referent [`Mutator::weak_get`] returns until the collector finds the referent
//!   unreachable, and null from then on.
//! - [`Mutator::new_ephemeron`] allocates an ephemeron box `(key, value)`: the value is kept
//!   alive only while the box and the key are ([`Mutator::ephemeron_value`]); both read null
//!   once the key is found dead. A weak hash table is an array of ephemerons.
//! - [`FinalizationQueue`] (as JavaScript's `FinalizationRegistry` or Java's `Cleaner`):
//!   register `(target, held)`; once the target is found dead, `held` is delivered to the
//!   queue, and the embedder takes it with [`FinalizationQueue::take`] and runs its cleanup.
//!   The target is never resurrected: the cleanup sees only `held`.
//!
//! Invariants (see [`crate::weak`] for the collector's part):
//! - nothing here holds the weak table's lock across an allocation or a safepoint: an entry
//!   is created after the box is allocated, with the key and value carried across the
//!   allocation on the value stack;
//! - every key and value handed out while concurrent marking runs has been logged by the
//!   keep-alive barrier ([`Mutator::keep_alive`]) before it is returned;
//! - a box is accepted only if its table entry names it back: a box whose index word was
//!   overwritten, or a value that is not a box, is refused with a panic naming the mistake.

use faultline_heap::object::TypeId;

use crate::heap::Heap;
use crate::mutator::{AllocError, Mutator};
use crate::value::Value;
use crate::weak::{Entry, WeakStats};

impl Mutator {
    /// The weak-box type (registered when the heap was created).
    fn weak_box_type(&self) -> TypeId {
        self.heap()
            .inner
            .roots
            .weak
            .box_type
            .expect("registered at heap creation")
    }

    /// Allocate a box for `key` and `value` (carried across the allocation on the value stack)
    /// and enter it in the weak table.
    fn new_box(&mut self, key: Value, value: Value, ephemeron: bool) -> Result<Value, AllocError> {
        self.check_ours(key, "Mutator::new_weak/new_ephemeron (key)");
        self.check_ours(value, "Mutator::new_ephemeron (value)");
        let ty = self.weak_box_type();
        let sp = self.stack_len();
        self.push(key);
        self.push(value);
        let b = self.alloc_builtin(ty);
        let (key, value) = (self.stack_get(sp), self.stack_get(sp + 1));
        self.stack_truncate(sp);
        let b = b?;
        let l = self.local(b).expect("a fresh allocation");
        // No safepoint from here to the end: the entry and the box are made together.
        let index = self.heap().inner.roots.weak.insert(Entry {
            boxa: b.bits(),
            key: key.bits(),
            value: value.bits(),
            ephemeron,
        });
        l.set_word(0, index);
        // Created during marking: the box is black; its key and value may be the only path to
        // objects the snapshot no longer reaches (a value read from a weak box, say).
        self.keep_alive(key.bits());
        self.keep_alive(value.bits());
        Ok(b)
    }

    /// The table entry of the box `b`.
    ///
    /// # Panics
    /// If `b` is not a weak box or ephemeron of this heap (or its index word was overwritten),
    /// or is stale.
    fn box_entry(&self, b: Value, what: &'static str) -> Entry {
        let ty = Some(self.weak_box_type());
        let l = self
            .local(b)
            .unwrap_or_else(|| panic!("{what}: {b:?} is not a weak box (null or an immediate)"));
        if Some(l.type_id()) != ty {
            panic!("{what}: {b:?} is not a weak box or ephemeron");
        }
        let index = l.word(0);
        match self.heap().inner.roots.weak.entry(index, b.bits()) {
            Some(e) => e,
            None => panic!(
                "{what}: the weak box {b:?} names table entry {index}, which is not its own (its data word was overwritten)"
            ),
        }
    }

    /// A new weak reference to `target` (a weak box): see [`Mutator::weak_get`]. May collect
    /// (an allocation); `target` is carried across it. Null or an immediate gives a box that
    /// never clears.
    ///
    /// # Errors
    /// As [`Mutator::alloc`].
    ///
    /// # Panics
    /// If `target` is stale or of another heap.
    pub fn new_weak(&mut self, target: Value) -> Result<Value, AllocError> {
        self.new_box(target, Value::NULL, false)
    }

    /// A new ephemeron `(key, value)` (a weak box whose value is kept alive only while the box
    /// and the key are). May collect; `key` and `value` are carried across it.
    ///
    /// # Errors
    /// As [`Mutator::alloc`].
    ///
    /// # Panics
    /// If `key` or `value` is stale or of another heap.
    pub fn new_ephemeron(&mut self, key: Value, value: Value) -> Result<Value, AllocError> {
        self.new_box(key, value, true)
    }

    /// The referent of the weak box `w` (the key of an ephemeron): the object, until the
    /// collector finds it unreachable; null from then on (the clearing happens in the pause
    /// that decides it, so a referent found dead is never returned). While concurrent marking
    /// runs, the referent is logged so this cycle keeps it (the keep-alive barrier).
    ///
    /// # Panics
    /// If `w` is not a weak box or ephemeron of this heap, or is stale.
    pub fn weak_get(&self, w: Value) -> Value {
        let e = self.box_entry(w, "Mutator::weak_get");
        self.keep_alive(e.key);
        Value::minted(e.key, self.era())
    }

    /// The value of the ephemeron `e` (null for a plain weak box, and once the key was found
    /// dead). Logged while marking runs, as [`Mutator::weak_get`].
    ///
    /// # Panics
    /// As [`Mutator::weak_get`].
    pub fn ephemeron_value(&self, e: Value) -> Value {
        let en = self.box_entry(e, "Mutator::ephemeron_value");
        self.keep_alive(en.value);
        Value::minted(en.value, self.era())
    }

    /// Whether `v` is a weak box or ephemeron of this heap (not stale).
    pub fn is_weak_box(&self, v: Value) -> bool {
        let ty = self.weak_box_type();
        self.local(v).is_some_and(|l| l.type_id() == ty)
    }

    /// Whether `v` is an ephemeron (a weak box made by [`Mutator::new_ephemeron`]).
    ///
    /// # Panics
    /// As [`Mutator::weak_get`].
    pub fn is_ephemeron(&self, v: Value) -> bool {
        self.box_entry(v, "Mutator::is_ephemeron").ephemeron
    }
}

/// A finalization queue (a cleanup queue): objects registered with it are watched weakly;
/// when the collector finds one dead, the value registered with it (`held`) is delivered to
/// the queue, to be taken by the embedder ([`FinalizationQueue::take`]) and cleaned up.
///
/// Post-mortem: the target is gone when its held value is delivered, and nothing resurrects
/// it. `held` is kept alive (a root) until delivered and taken; if `held` reaches the target,
/// the target never dies (as with JavaScript's `FinalizationRegistry`). Each registration is
/// delivered at most once, in the flip of the cycle that found its target dead. Dropping the
/// queue forgets its registrations and undelivered values. Usable from any thread, with a
/// mutator of its heap.
pub struct FinalizationQueue {
    heap: Heap,
    id: u64,
}

impl core::fmt::Debug for FinalizationQueue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "FinalizationQueue(#{} of heap #{})",
            self.id,
            self.heap.id()
        )
    }
}

impl FinalizationQueue {
    /// A new, empty queue of `heap`.
    pub fn new(heap: &Heap) -> FinalizationQueue {
        FinalizationQueue {
            heap: heap.clone(),
            id: heap.inner.roots.weak.new_queue(),
        }
    }

    fn check_heap(&self, m: &Mutator, what: &'static str) {
        if m.heap().inner.id != self.heap.inner.id {
            panic!(
                "{what}: this FinalizationQueue belongs to heap #{}, but was used with a mutator of heap #{}",
                self.heap.inner.id,
                m.heap().inner.id
            );
        }
    }

    /// Watch `target`; deliver `held` (any value: an object is kept alive until delivered)
    /// once `target` is found dead. Returns a token for [`FinalizationQueue::unregister`].
    ///
    /// # Panics
    /// If `target` is not an object reference, if either value is stale or of another heap,
    /// or if `m` is a mutator of another heap.
    pub fn register(&self, m: &Mutator, target: Value, held: Value) -> u64 {
        self.check_heap(m, "FinalizationQueue::register");
        crate::reentry::refuse_in_root_source("FinalizationQueue::register");
        m.check_ours(target, "FinalizationQueue::register (target)");
        m.check_ours(held, "FinalizationQueue::register (held)");
        if !target.is_ref() {
            panic!("FinalizationQueue::register: the target {target:?} is not an object");
        }
        // The target is only watched; `held` becomes a root. (No keep-alive: registering is
        // not a read.)
        self.heap
            .inner
            .roots
            .weak
            .register(self.id, target.bits(), held.bits())
    }

    /// Stop watching registration `token`; false if it was already delivered or unregistered
    /// (or is another queue's).
    pub fn unregister(&self, token: u64) -> bool {
        self.heap.inner.roots.weak.unregister(self.id, token)
    }

    /// Take the held values delivered since the last call, oldest cycle first. They are valid
    /// until `m`'s next safepoint (root those that must live longer).
    ///
    /// # Panics
    /// If `m` is a mutator of another heap.
    pub fn take(&self, m: &Mutator) -> Vec<Value> {
        self.check_heap(m, "FinalizationQueue::take");
        crate::reentry::refuse_in_root_source("FinalizationQueue::take");
        let era = m.era();
        self.heap
            .inner
            .roots
            .weak
            .take(self.id)
            .into_iter()
            .map(|b| Value::minted(b, era))
            .collect()
    }

    /// Held values delivered and not yet taken.
    pub fn delivered(&self) -> usize {
        self.heap.inner.roots.weak.queue_counts(self.id).0
    }

    /// Registrations still watching their target.
    pub fn registered(&self) -> usize {
        self.heap.inner.roots.weak.queue_counts(self.id).1
    }
}

impl Drop for FinalizationQueue {
    fn drop(&mut self) {
        self.heap.inner.roots.weak.drop_queue(self.id);
    }
}

impl Heap {
    /// Weak-processing totals over the heap's life (cleared weak references and ephemerons,
    /// delivered finalizations, entries in use). Per cycle: [`crate::CycleStats::weak`].
    pub fn weak_stats(&self) -> WeakStats {
        self.inner.roots.weak.totals()
    }
}

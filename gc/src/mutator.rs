//! Mutators: threads attached to a heap. Allocation, safepoints, native sections, and the
//! per-mutator roots (handles and the value stack).
//!
//! # Reference validity
//!
//! A [`Value`] that refers to an object, and a [`Local`], are valid only until the mutator's
//! next safepoint: an allocation, [`Mutator::safepoint`], [`Mutator::collect`] or a native
//! section, where the collector may move every object. A [`Local`] borrows the mutator, and
//! everything that can reach a safepoint takes `&mut Mutator`, so the compiler rejects a
//! `Local` held across one. Values that must survive are kept in roots: a [`Root`] handle, the
//! mutator's value stack, a [`crate::GlobalRoot`] or a [`crate::RootSlot`] of a
//! [`crate::RootSource`]; the collector updates those.
//!
//! A `Value` cannot be checked by the compiler (it is `Copy` and has no lifetime), so it is
//! checked at run time: it records the heap's era it was read in (see the `value` module), and
//! every conversion back to an object ([`Mutator::local`], a store into a field, a root or
//! the value stack) refuses, with a panic naming the mistake, a value of another era: one held
//! across a collection, or one of another heap. A value that passes names exactly the object
//! it was read as: no sequence of safe calls reaches memory that is not the object it names.
//! [`Mutator::value_from_bits`] is the `unsafe` escape hatch for runtimes that keep raw words.
//!
//! # Ownership
//!
//! Handles know their owner. A [`Root`] belongs to the mutator that created it (it keeps that
//! mutator's root storage alive, so it can always answer): using it with another mutator, or
//! after its mutator was dropped (its slot is no longer scanned, so its value would be
//! stale), panics naming the mistake. A reference is stored into an object, a root or the
//! value stack only if it points into this mutator's heap: storing another heap's reference
//! panics. A thread has at most one mutator per heap ([`crate::AttachError`]).
//!
//! Invariants:
//! - the mutator's roots (`MutatorShared::roots`, see [`crate::safepoint`]) are touched only by
//!   the owning thread while it is RUNNING, or by the collector while the owner is stopped;
//! - `[tlab_cursor, tlab_limit)` lies in the current half below the populated watermark, so the
//!   allocation fast path is a bump and a header store: no syscall, no fault;
//! - a `Mutator` never leaves its thread (`!Send`), and neither do `Root`s or `Local`s;
//! - the accessors read and write heap memory only with (relaxed) atomics, words or bytes:
//!   mutators on several threads may touch one object at once, and a race then yields old or
//!   new contents, never undefined behaviour.

use core::cell::{Cell, RefCell};
use core::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use faultline_heap::object::{Header, ObjectRef, TypeId, TypeInfo, TypeKind, TypeRegistry, WORD};

use crate::error::{AttachError, CollectError};
use crate::inner::{Heap, HeapInner};
use crate::marking::SATB_BUFFER;
use crate::reentry;
use crate::roots::RootSource;
use crate::safepoint::{
    attached_elsewhere, attached_here, note_attached, note_detached, MutatorShared,
};
use crate::stats::Trigger;
use crate::value::{RootSlot, Value};

/// Allocation failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// The heap is full even after a full collection.
    #[error("out of memory: {requested} bytes requested, {live} bytes live of a {capacity}-byte {space}")]
    OutOfMemory {
        /// Bytes asked for.
        requested: usize,
        /// Live bytes in that space after collecting.
        live: usize,
        /// Capacity of the space.
        capacity: usize,
        /// Which space.
        space: &'static str,
    },
    /// The type is not registered.
    #[error("type {0:?} is not registered")]
    UnknownType(TypeId),
    /// The length does not fit the header or the address space.
    #[error("length {0} is too large")]
    TooLarge(usize),
    /// A length given for a fixed-size type.
    #[error("type {0:?} is fixed-size; its length must be 0")]
    NotAnArray(TypeId),
    /// A type id of the collector's own (the weak-box type): its objects are made only by the
    /// API that keeps their side table, [`Mutator::new_weak`] and [`Mutator::new_ephemeron`].
    #[error("type {0:?} is the collector's built-in weak-box type: weak boxes are made with Mutator::new_weak or Mutator::new_ephemeron, not allocated by type id")]
    BuiltinType(TypeId),
    /// The kernel refused to make memory present for the allocation.
    #[error("the kernel refused memory: {0}")]
    Kernel(String),
    /// A collection the allocation needed failed, or was refused (an allocation that must
    /// collect, from inside a callback that runs as part of a collection).
    #[error(transparent)]
    Collect(#[from] CollectError),
}

/// One type's entry in the allocation fast path's size table: an object of length `len` takes
/// `base + round_up(len * per_elem, WORD)` bytes, header included (the same as
/// [`TypeInfo::size_words`]). Fixed types have `per_elem` 0 and take only `len` 0; reference
/// arrays have `per_elem` `WORD`, byte arrays 1.
#[derive(Clone, Copy, Debug)]
struct AllocSize {
    base: u32,
    per_elem: u32,
}

impl AllocSize {
    /// Not on the fast path (the filler, or a fixed size of 4 GiB or more): a base no fast-path
    /// limit lets through.
    const NONE: AllocSize = AllocSize {
        base: u32::MAX,
        per_elem: 0,
    };

    fn of(t: &TypeInfo) -> AllocSize {
        match t.kind {
            TypeKind::Filler => AllocSize::NONE,
            TypeKind::Fixed { .. } => u32::try_from(t.size_words(0) * WORD)
                .map_or(AllocSize::NONE, |base| AllocSize { base, per_elem: 0 }),
            TypeKind::RefArray => AllocSize {
                base: WORD as u32,
                per_elem: WORD as u32,
            },
            TypeKind::ByteArray => AllocSize {
                base: WORD as u32,
                per_elem: 1,
            },
        }
    }

    /// The entries of `types` from type id `from` on. The built-in types (below
    /// [`crate::weak::FIRST_EMBEDDER_TYPE`]) are not on the fast path: the slow path refuses
    /// them.
    fn table(types: &TypeRegistry, from: usize) -> Vec<AllocSize> {
        (from..types.len())
            .map(|i| match types.get(TypeId(i as u32)) {
                Some(t) if i as u32 >= crate::weak::FIRST_EMBEDDER_TYPE => AllocSize::of(t),
                _ => AllocSize::NONE,
            })
            .collect()
    }

    /// Bytes of an object of length `len`, for `len <= Header::MAX_LEN` (so no overflow).
    #[inline(always)]
    fn bytes(self, len: usize) -> usize {
        self.base as usize + (len * self.per_elem as usize).next_multiple_of(WORD)
    }
}

/// A thread attached to a heap.
pub struct Mutator {
    heap: Heap,
    shared: Arc<MutatorShared>,
    /// The heap's arena, `[arena_base, arena_base + arena_size)`: where this heap's references
    /// point (cached here for the cross-heap check on stores).
    arena_base: usize,
    arena_size: usize,
    /// Points to the last snapshot in `held_types` (the newest this mutator has taken).
    types: Cell<*const TypeRegistry>,
    /// The registry snapshots `types` has pointed to since this mutator's last `&mut self`
    /// point: a `&TypeRegistry` handed out through `&self` (a `Local` keeps one) may point to
    /// any of them, so they are dropped (all but the newest) only with `&mut self`
    /// ([`Mutator::drop_old_types`]). Never borrowed across a call that could reach it again.
    held_types: RefCell<Vec<Arc<TypeRegistry>>>,
    /// The allocation fast path's size table, indexed by type id: one entry per type registered
    /// when it was last extended (at attach, and by the slow path on a type beyond it).
    /// Registered types never change, so an entry stays valid for the heap's life.
    sizes: Vec<AllocSize>,
    /// Objects of fewer bytes may take the fast path: the large-object threshold capped at
    /// `u32::MAX` (so [`AllocSize::NONE`] never passes), or 0 in the stress modes (every
    /// allocation then takes the slow path, which counts it).
    fast_limit: usize,
    allocs: u64,
    waits: crate::waits::Attachment,
    /// The last SATB handshake epoch this mutator answered (see `crate::marking`).
    satb_epoch: u64,
    /// The buffer of the I/O methods for moving-space arrays (`crate::io`), kept for reuse.
    io_buf: Vec<u8>,
    _not_send: PhantomData<*const ()>,
}

impl core::fmt::Debug for Mutator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Mutator")
            .field("id", &self.shared.id)
            .field("name", &self.shared.name)
            .field("heap", &self.shared.heap_id)
            .finish_non_exhaustive()
    }
}

impl Mutator {
    pub(crate) fn attach(
        heap: Heap,
        name: Option<&str>,
        scoped: bool,
    ) -> Result<Mutator, AttachError> {
        match reentry::current() {
            Some(cb @ reentry::Callback::RootSource) => return Err(AttachError::Reentrant(cb)),
            // Only a scoped mutator (`Heap::with_mutator`) inside the other callbacks: one
            // that outlived the callback would stay attached to a collector thread.
            Some(cb) if !scoped => return Err(AttachError::InsideCallback(cb)),
            _ => {}
        }
        if let Some(m) = attached_here(heap.inner.key()) {
            return Err(AttachError::AlreadyAttached {
                heap: heap.inner.id,
                mutator: m.id,
            });
        }
        if let Some(m) = attached_elsewhere(heap.inner.key()) {
            return Err(AttachError::OtherHeap {
                heap: heap.inner.id,
                other_heap: m.heap_id,
                mutator: m.id,
            });
        }
        let shared = Arc::new(MutatorShared::new(
            heap.inner.next_mutator_id.fetch_add(1, Ordering::Relaxed),
            heap.inner.id,
            name.map(Arc::from),
            SATB_BUFFER,
        ));
        heap.inner.sp.attach(shared.clone());
        note_attached(heap.inner.key(), &shared);
        let registry = heap.types();
        let sizes = AllocSize::table(&registry, 0);
        let types = Cell::new(Arc::as_ptr(&registry));
        let held_types = RefCell::new(vec![registry]);
        let waits = heap.inner.waits.attach(shared.id);
        let debug = &heap.inner.config.debug;
        let fast_limit = if debug.stress_every.is_some() || debug.stress_random.is_some() {
            0
        } else {
            heap.inner
                .config
                .large_object_threshold
                .min(u32::MAX as usize)
        };
        Ok(Mutator {
            arena_base: heap.inner.arena.base(),
            arena_size: heap.inner.arena.size(),
            heap,
            shared,
            types,
            held_types,
            sizes,
            fast_limit,
            allocs: 0,
            waits,
            satb_epoch: 0,
            io_buf: Vec::new(),
            _not_send: PhantomData,
        })
    }

    /// The heap.
    pub fn heap(&self) -> &Heap {
        &self.heap
    }

    fn inner(&self) -> &HeapInner {
        &self.heap.inner
    }

    /// Whether `addr` lies in the non-moving (large-object) space.
    pub(crate) fn non_moving(&self, addr: usize) -> bool {
        self.inner().large.contains(addr)
    }

    /// The I/O buffer (see `crate::io`).
    pub(crate) fn io_buffer(&mut self) -> &mut Vec<u8> {
        &mut self.io_buf
    }

    /// Allocate in the non-moving space whatever the size (see `Mutator::alloc_pinned`).
    pub(crate) fn alloc_non_moving(&mut self, ty: TypeId, len: usize) -> Result<Value, AllocError> {
        let bytes = self.type_size(ty, len, false)?;
        self.alloc_refill(ty, len, bytes, true)
    }

    /// This mutator's id (unique within its heap, 1-based; named in statistics).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The name given at [`crate::Heap::attach_named`], if any.
    pub fn name(&self) -> Option<&str> {
        self.shared.name.as_deref()
    }

    /// Panic unless `v` is null, an immediate, or a reference of this mutator's heap read in
    /// the current era.
    #[inline(always)]
    pub(crate) fn check_ours(&self, v: Value, what: &'static str) {
        if v.is_ref() && v.era() != self.era() {
            self.not_current(v, what);
        }
    }

    /// The heap's current era (fixed while this mutator runs: eras change only in pauses).
    #[inline]
    pub(crate) fn era(&self) -> u64 {
        self.heap.inner.roots.era()
    }

    /// The id of this mutator's heap.
    #[inline]
    pub(crate) fn heap_id(&self) -> u64 {
        self.shared.heap_id
    }

    #[cold]
    #[inline(never)]
    fn not_current(&self, v: Value, what: &'static str) -> ! {
        let a = v.bits();
        let heap = self.shared.heap_id;
        if v.era() == 0 {
            panic!(
                "{what}: {v:?} does not name an object: it was read from a non-reference word (raw data), not from a reference slot, a root or an allocation"
            );
        }
        let ours = a.wrapping_sub(self.arena_base) < self.arena_size;
        match crate::fork::heap_owning(a) {
            Some(other) if !ours => panic!(
                "{what}: {v:?} is a reference of heap #{other}, not of this mutator's heap #{heap}: references cannot cross heaps"
            ),
            _ if ours => panic!(
                "{what}: stale reference {v:?}: it was read before a collection of heap #{heap} (now in era {}) and held across a safepoint without a root; keep it in a Root, the value stack, a GlobalRoot or a RootSlot",
                self.era()
            ),
            _ => panic!(
                "{what}: {v:?} is not a reference of this mutator's heap #{heap} (a reference of a heap that was dropped, or of another heap)"
            ),
        }
    }

    /// A value from a raw slot word, valid in the current era: the escape hatch for runtimes
    /// that keep references as raw words (read back with [`Value::bits`]).
    ///
    /// # Safety
    /// If `bits` is non-zero with a zero low tag, it must be the address of a live object
    /// header of this mutator's heap, current in this era: a word stored since the last
    /// safepoint from a `Value` of this heap, or kept in memory the collector updates.
    #[inline]
    pub unsafe fn value_from_bits(&self, bits: usize) -> Value {
        Value::minted(bits, self.era())
    }

    /// The value in an embedder's root slot (see [`crate::RootSource`]).
    ///
    /// # Panics
    /// If the slot holds a reference that is not current: the slot was not presented to this
    /// heap's collector by a registered root source (so a collection did not update it), or it
    /// belongs to another heap.
    #[inline]
    pub fn load(&self, slot: &RootSlot) -> Value {
        reentry::refuse_in_root_source("Mutator::load (RootSlot)");
        let v = slot.peek();
        self.check_ours(v, "Mutator::load (RootSlot)");
        v
    }

    /// Store `v` into an embedder's root slot (see [`crate::RootSource`]).
    ///
    /// # Panics
    /// If `v` is a reference of another heap or a stale one.
    #[inline]
    pub fn store(&self, slot: &RootSlot, v: Value) {
        reentry::refuse_in_root_source("Mutator::store (RootSlot)");
        self.check_ours(v, "Mutator::store (RootSlot)");
        slot.put(v);
    }
    /// The cached type registry; refreshed when a type beyond it is seen.
    #[inline]
    fn types_for(&self, ty: TypeId) -> &TypeRegistry {
        // SAFETY: the pointer targets a snapshot in `held_types`, whose snapshots are dropped
        // only with `&mut self` (so not while the returned borrow of `self` lives).
        let t = unsafe { &*self.types.get() };
        if (ty.0 as usize) < t.len() {
            return t;
        }
        self.newest_types()
    }

    /// Take the heap's current registry snapshot into `held_types` and point `types` to it.
    #[cold]
    #[inline(never)]
    fn newest_types(&self) -> &TypeRegistry {
        let newest = self.heap.types();
        let p = Arc::as_ptr(&newest);
        self.held_types.borrow_mut().push(newest);
        self.types.set(p);
        // SAFETY: `p` targets the snapshot just pushed to `held_types`, dropped only with
        // `&mut self` (so not while the returned borrow of `self` lives).
        unsafe { &*p }
    }

    /// Drop the registry snapshots `types` no longer points to (no borrow of them can be
    /// alive: `&mut self`), so a mutator that reads many newly registered types through
    /// `&self` holds one snapshot, not one per refresh.
    fn drop_old_types(&mut self) {
        let held = self.held_types.get_mut();
        if held.len() > 1 {
            held.drain(..held.len() - 1);
        }
        debug_assert!(held
            .last()
            .is_some_and(|t| Arc::as_ptr(t) == self.types.get()));
    }

    /// The SATB barrier's slow path: log `old`, the reference being overwritten.
    #[cold]
    fn satb_log(&self, old: usize) {
        if self.heap.inner.config.debug.disable_barrier {
            return;
        }
        // SAFETY: the owner thread, RUNNING.
        let r = unsafe { self.shared.roots_mut() };
        r.satb.push(old);
        if r.satb.len() >= SATB_BUFFER {
            self.heap.inner.marking.flush(&mut r.satb);
        }
    }

    /// The keep-alive barrier of weak references ([`crate::weak`]): while concurrent marking
    /// runs (either barrier mode), log `a`, a reference just read out of the weak table, into
    /// this mutator's SATB buffer, so the remark shades it.
    #[inline]
    pub(crate) fn keep_alive(&self, a: usize) {
        if a != 0
            && a.is_multiple_of(WORD)
            && self.heap.inner.marking.active.load(Ordering::Relaxed)
        {
            // SAFETY: the owner thread, RUNNING (`&self`: a Mutator never leaves its thread).
            let r = unsafe { self.shared.roots_mut() };
            r.satb.push(a);
            if r.satb.len() >= SATB_BUFFER {
                self.heap.inner.marking.flush(&mut r.satb);
            }
        }
    }

    /// The generational card barrier ([`crate::remset`]), after a store of `v` into the slot
    /// at `a`: a reference stored into an old object dirties its card. Off the generational
    /// mode: one test of a field that is `None`.
    #[inline(always)]
    pub(crate) fn card_barrier(&self, a: usize, v: Value) {
        if let Some(cards) = &self.heap.inner.cards {
            if v.is_ref() {
                cards.note_store(a);
            }
        }
    }

    /// Whether concurrent marking is on (the barrier's fast path: one load).
    #[inline]
    fn marking(&self) -> bool {
        self.heap.inner.marking.barrier.load(Ordering::Relaxed)
    }

    /// Wait until the heap's running cycle (marking and compaction) is over and recorded, in
    /// native state (the cycle's pauses do not wait for this mutator). Returns at once if no
    /// cycle runs.
    ///
    /// # Errors
    /// [`CollectError::Reentrant`] from inside a callback run by a collection (the `on_cycle`
    /// hook runs before its cycle is over: waiting there would wait for itself).
    pub fn wait_for_cycle(&mut self) -> Result<(), CollectError> {
        crate::cycle::refuse_reentry("wait_for_cycle")?;
        self.heap.inner.wait_idle_as(Some(&self.shared));
        Ok(())
    }

    /// Wait until the heap has flipped more than `flips` times or no cycle is running any more
    /// (the space is exhausted). Meanwhile take the marking (before the flip) or compaction
    /// (after it) work the collector's threads share, one bounded slice at a time with a poll
    /// after each (with mark assists on); sleep in native state (the cycle's pauses do not wait
    /// for us) only while there is none, [`FLIP_WAIT_NAP`] at a time. The wait used to sleep
    /// from the moment the shared work first ran dry: the marker spills more of its work every
    /// few hundred objects, and with every mutator asleep nobody took it (on 2 CPUs, one idled
    /// through multi-second flip waits: churn at 1 GiB, BENCHMARKS.md s13). Returns the time
    /// spent asleep (the pacer's flip-wait figure: waiting, not helping).
    fn wait_for_flip(&mut self, flips: u64) -> std::time::Duration {
        let _wait = crate::waits::Span::begin(crate::waits::WaitCause::Flip);
        let _boost = crate::background::boost_while_waiting();
        let inner = self.heap.inner.clone();
        let assists = inner.config.mark_assists;
        let waiting = |inner: &HeapInner| {
            inner.cycles.load(Ordering::SeqCst) <= flips && inner.gate.is_busy()
        };
        let mut asleep = std::time::Duration::ZERO;
        while waiting(&inner) {
            if assists
                && (crate::assist::assist(&inner, None) > 0
                    || crate::assist::compaction_assist(&inner) > 0)
            {
                self.safepoint();
                continue;
            }
            let nap = inner.clone();
            let t = std::time::Instant::now();
            self.native(move || {
                if waiting(&nap) {
                    std::thread::sleep(FLIP_WAIT_NAP);
                }
            });
            asleep += t.elapsed();
        }
        asleep
    }

    /// The safepoint poll: if a collection is requested, stop here until it is done.
    #[inline]
    pub fn safepoint(&mut self) {
        if self.inner().sp.requested.load(Ordering::Acquire) {
            self.park();
        }
    }

    #[cold]
    fn park(&mut self) {
        self.heap.inner.sp.park(&self.shared);
    }

    /// Run `f` in native state: collections may run meanwhile (the thread counts as stopped).
    /// `f` cannot touch the heap: it is `Send`, so it holds no `Mutator`, `Root` or `Local`.
    ///
    /// If `f` panics, the mutator leaves native state as the panic unwinds (waiting for a pause
    /// in progress to end), so a caller that catches the panic holds a running mutator again.
    pub fn native<R>(&mut self, f: impl FnOnce() -> R + Send) -> R {
        /// Leaves native state when dropped: at the end of `f`, or as its panic unwinds.
        struct Leave<'a>(&'a crate::safepoint::Safepoint, &'a MutatorShared);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.leave_native(self.1);
            }
        }
        let sp = &self.heap.inner.sp;
        sp.enter_native(&self.shared);
        let _leave = Leave(sp, &self.shared);
        f()
    }

    /// Run a full collection and wait for it to complete: in concurrent mode, this returns
    /// after the cycle's compaction has finished and the cycle is recorded (the mutator waits
    /// in native state meanwhile). See [`Mutator::start_collection`] for the variant that
    /// does not wait.
    ///
    /// # Errors
    /// [`CollectError::Reentrant`] from inside a callback that runs as part of a collection
    /// (the `on_cycle` hook, a root source, the mark hook): the request is refused, not
    /// deferred. [`CollectError::Kernel`] if a kernel call failed before any object moved.
    pub fn collect(&mut self) -> Result<(), CollectError> {
        self.start_collection()?;
        self.heap.inner.wait_idle_as(Some(&self.shared));
        Ok(())
    }

    /// Start a collection. Stop-the-world mode: the whole cycle runs before this returns.
    /// Concurrent mode: returns after the initial-mark pause; marking and compaction continue
    /// on the collector's thread ([`Mutator::wait_for_cycle`] waits for the end,
    /// [`crate::Heap::phase`] tells where it is). If a cycle is running, waits for it to end
    /// first (in native state) and then starts a new one.
    ///
    /// # Errors
    /// As [`Mutator::collect`].
    pub fn start_collection(&mut self) -> Result<(), CollectError> {
        crate::cycle::collect(&self.heap.inner, Some(&self.shared), Trigger::Explicit)?;
        Ok(())
    }

    /// Make the pages of the object `v` refers to present, before handing its memory to a
    /// system call.
    ///
    /// During concurrent compaction an object's page may still be absent, and the kernel does
    /// not raise a user fault for its own accesses: a `read(2)` into an absent page of a byte
    /// array fails with EFAULT (the descriptor is opened with `UFFD_USER_MODE_ONLY`). Call this
    /// right before such a call; it is cheap when nothing is absent. The guarantee lasts until
    /// the next safepoint, so it does not cover a blocking call (a native section is a
    /// safepoint): for those, use the safe I/O methods ([`Mutator::read_into`] and its family)
    /// or a pinned array ([`Mutator::alloc_pinned`], [`Mutator::pin`]).
    pub fn ensure_present(&self, v: Value) {
        if let Some(l) = self.local(v) {
            let words = l.payload_words() + 1;
            let inner = &self.heap.inner;
            inner
                .compaction
                .ensure_range(&inner.arena, l.object().address(), words * WORD);
        }
    }

    /// A collection for an allocation. Inside a callback run by a collection, an occupancy or
    /// stress trigger is deferred (the allocation proceeds if it fits; the next allocation
    /// outside the callback triggers); an exhausted space is refused with
    /// [`CollectError::Reentrant`].
    fn collect_for(&mut self, t: Trigger) -> Result<(), AllocError> {
        if reentry::current().is_some() && matches!(t, Trigger::Occupancy | Trigger::Stress) {
            return Ok(());
        }
        crate::cycle::collect(&self.heap.inner, Some(&self.shared), t)?;
        Ok(())
    }

    /// Verify the heap now (stops the world). Refused (a [`crate::VerifyError`] naming the
    /// mistake) from inside a callback run by a collection.
    pub fn verify(&mut self) -> Result<crate::verify::VerifyReport, crate::verify::VerifyError> {
        crate::cycle::verify_stopped(&self.heap.inner, Some(&self.shared))
    }

    /// Whether objects of type `ty` (a registered type) can hold references.
    fn holds_refs(&self, ty: TypeId) -> bool {
        self.types_for(ty).get(ty).is_some_and(|i| match &i.kind {
            faultline_heap::object::TypeKind::Fixed { ref_offsets, .. } => !ref_offsets.is_empty(),
            faultline_heap::object::TypeKind::RefArray => true,
            _ => false,
        })
    }

    /// The size of an object of type `ty` and length `len`, or the error refusing it. A
    /// built-in type (the weak box) only for `builtin` (the weak-reference API's own
    /// allocation).
    #[inline]
    fn type_size(&mut self, ty: TypeId, len: usize, builtin: bool) -> Result<usize, AllocError> {
        let info = match self.types_for(ty).get(ty) {
            Some(i) if ty != TypeId::FILLER => i,
            _ => return Err(AllocError::UnknownType(ty)),
        };
        if ty.0 < crate::weak::FIRST_EMBEDDER_TYPE && !builtin {
            return Err(AllocError::BuiltinType(ty));
        }
        if !info.is_array() && len != 0 {
            return Err(AllocError::NotAnArray(ty));
        }
        if len > Header::MAX_LEN {
            return Err(AllocError::TooLarge(len));
        }
        Ok(info.size_words(len) * WORD)
    }

    /// Allocate an object of type `ty` (with `len` elements or bytes for arrays, 0 otherwise),
    /// zero-filled. The result is valid until the next safepoint. The collector's built-in
    /// weak-box type is refused ([`AllocError::BuiltinType`]): weak boxes are made with
    /// [`Mutator::new_weak`] and [`Mutator::new_ephemeron`].
    ///
    /// The fast path, inlined into the caller: the size from the mutator's table (a
    /// bounds-checked load; for a fixed type and a constant `len` of 0 the length arithmetic
    /// folds away), the safepoint poll, the bump and the header store. Everything else (an
    /// unknown or newly registered type, a bad length, a large object, a full buffer, a
    /// requested safepoint, the stress modes) goes to the out-of-line slow path, which checks
    /// again from scratch.
    #[inline]
    pub fn alloc(&mut self, ty: TypeId, len: usize) -> Result<Value, AllocError> {
        if let Some(&s) = self.sizes.get(ty.0 as usize) {
            // `len` within the header's field, and 0 unless the type is an array.
            if len <= Header::MAX_LEN && (len == 0 || s.per_elem != 0) {
                let bytes = s.bytes(len);
                if bytes < self.fast_limit && !self.inner().sp.requested.load(Ordering::Relaxed) {
                    let cur = self.shared.tlab_cursor.load(Ordering::Relaxed);
                    if cur + bytes <= self.shared.tlab_limit.load(Ordering::Relaxed) {
                        self.shared
                            .tlab_cursor
                            .store(cur + bytes, Ordering::Relaxed);
                        return Ok(self.init(cur, ty, len));
                    }
                }
            }
        }
        self.alloc_slow(ty, len, false)
    }

    /// Allocate an object of a built-in type (the weak box: `crate::weakref`), which
    /// [`Mutator::alloc`] refuses. Always the slow path (the fast path's table has no entry
    /// for built-in types).
    pub(crate) fn alloc_builtin(&mut self, ty: TypeId) -> Result<Value, AllocError> {
        self.alloc_slow(ty, 0, true)
    }

    #[inline]
    fn init(&self, addr: usize, ty: TypeId, len: usize) -> Value {
        // SAFETY: `addr` is a fresh, present, zeroed, word-aligned block of the object's size
        // handed to this mutator alone.
        unsafe { (addr as *mut u64).write(Header::new(ty, len as u32).0) };
        Value::minted(addr, self.era())
    }

    /// Everything the fast path leaves: the checks with their errors (a built-in type refused
    /// unless `builtin`), the size table's extension, the stress modes, then the bump if it
    /// fits after all, or a refill.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&mut self, ty: TypeId, len: usize, builtin: bool) -> Result<Value, AllocError> {
        // (While the world is stopped, `requested` sends every allocation here.)
        reentry::refuse_in_root_source("Mutator::alloc");
        self.drop_old_types();
        let bytes = self.type_size(ty, len, builtin)?;
        if ty.0 as usize >= self.sizes.len() {
            let more = AllocSize::table(self.types_for(ty), self.sizes.len());
            self.sizes.extend(more);
        }
        if let Some(n) = self.inner().config.debug.stress_every {
            self.allocs += 1;
            if self.allocs.is_multiple_of(n) {
                self.collect_for(Trigger::Stress)?;
            }
        } else if let Some(r) = self.inner().config.debug.stress_random {
            self.allocs += 1;
            if crate::debug::random_hit(r, self.shared.id, self.allocs) {
                self.collect_for(Trigger::Stress)?;
            }
        }
        if bytes < self.inner().config.large_object_threshold
            && !self.inner().sp.requested.load(Ordering::Relaxed)
        {
            let cur = self.shared.tlab_cursor.load(Ordering::Relaxed);
            if cur + bytes <= self.shared.tlab_limit.load(Ordering::Relaxed) {
                self.shared
                    .tlab_cursor
                    .store(cur + bytes, Ordering::Relaxed);
                return Ok(self.init(cur, ty, len));
            }
        }
        self.alloc_refill(ty, len, bytes, false)
    }

    /// A new allocation buffer or a large object, collecting if needed.
    #[cold]
    #[inline(never)]
    fn alloc_refill(
        &mut self,
        ty: TypeId,
        len: usize,
        bytes: usize,
        non_moving: bool,
    ) -> Result<Value, AllocError> {
        let _wait = crate::waits::Span::begin(crate::waits::WaitCause::AllocStall);
        self.safepoint();
        // The flat remark's handshake: hand the SATB buffer over if the marker asks.
        // SAFETY: the owner thread, RUNNING.
        let r = unsafe { self.shared.roots_mut() };
        self.heap
            .inner
            .marking
            .answer_handshake(&mut self.satb_epoch, &mut r.satb);
        let large = non_moving
            || (bytes >= self.inner().config.large_object_threshold
                && (self.inner().config.pin_large_ref_objects || !self.holds_refs(ty)));
        // Collections tried for this allocation. A stop-the-world collection frees what it can
        // before it returns: one is enough. A concurrent one frees nothing until its flip, and
        // other mutators may take what it freed: up to `CONCURRENT_TRIES` full cycles.
        const CONCURRENT_TRIES: u32 = 4;
        let tries = if self.heap.inner.mode.concurrent() {
            CONCURRENT_TRIES
        } else {
            1
        };
        let mut collected = 0;
        // Generational: a young cycle frees no old object and no large one, and the collections
        // tried may all have been young (this allocation's occupancy cycle; its exhausted one
        // with nothing old; cycles other threads started, which satisfy its exhausted
        // trigger). Before failing, it asks that the next cycle be full
        // (`GenState::request_full`) and goes on, up to `FULL_TRIES` more steps (a flip or an
        // end: the running cycle, a young one from the half without the old generation that
        // promotes everything, then the full one), until a full cycle has flipped since it
        // began: OutOfMemory only when the live data do not fit after a full collection.
        const FULL_TRIES: u32 = 8;
        let full_flips0 = self.heap.inner.gen.as_ref().map(|g| g.full_flips());
        let mut full_tries = 0;
        // Whether this allocation's new buffer was not yet present (the prefill thread behind
        // the refills; `prefiller::poke`).
        let mut prefill_behind = false;
        loop {
            let inner = &self.heap.inner;
            let over_trigger = inner.used() >= inner.trigger_bytes.load(Ordering::Relaxed);
            // Pacing: while a concurrent cycle runs, crossing the occupancy trigger does not
            // wait for it (the cycle frees memory at its flip and end; waiting would stall this
            // mutator for the rest of the cycle). It keeps allocating into the headroom; only an
            // allocation that finds the space exhausted waits (below).
            let cycle_running = inner.concurrent_now() && inner.gate.is_busy();
            if over_trigger && collected == 0 && !cycle_running {
                self.collect_for(Trigger::Occupancy)?;
                collected = 1;
                continue;
            }
            let inner = &self.heap.inner;
            let got = if large {
                let a = inner
                    .large
                    .alloc(&inner.arena, bytes)
                    .map_err(|e| AllocError::Kernel(e.to_string()))?;
                if let Some(a) = a {
                    if inner.marking.active.load(Ordering::SeqCst) {
                        // Allocated black (barrier-free marking also scans it).
                        inner.large.marks.set(inner.large.page_of(a));
                        if inner.mode.wp_marking {
                            inner.marking.note_new_large(a);
                        }
                    }
                }
                a
            } else {
                // Retire the buffer (its tail stays zero: one-word fillers) and take a new one.
                let tlab = inner.config.tlab_bytes.max(bytes);
                let ready_before = inner.moving.ready_end();
                match inner
                    .moving
                    .bump(&inner.arena, tlab, inner.config.populate_batch_bytes)
                    .map_err(|e| AllocError::Kernel(e.to_string()))?
                {
                    Some(start) => {
                        prefill_behind = crate::prefiller::poke(
                            &self.heap.inner,
                            start,
                            start + tlab,
                            ready_before,
                        );
                        if inner.marking.active.load(Ordering::SeqCst) {
                            // The old buffer's objects were allocated black: mark them here
                            // (SATB), or hand them to the marker to walk and scan
                            // (barrier-free).
                            let (s, e) = (
                                self.shared.tlab_start.load(Ordering::Relaxed),
                                self.shared.tlab_cursor.load(Ordering::Relaxed),
                            );
                            if inner.mode.wp_marking {
                                inner.marking.retire(s, e);
                            } else {
                                crate::assist::mark_own_buffer(inner, s, e);
                            }
                        }
                        self.shared.tlab_start.store(start, Ordering::Relaxed);
                        self.shared
                            .tlab_cursor
                            .store(start + bytes, Ordering::Relaxed);
                        self.shared
                            .tlab_limit
                            .store(start + tlab, Ordering::Relaxed);
                        Some(start)
                    }
                    None => None,
                }
            };
            if let Some(addr) = got {
                // The pacer's allocation rate counts what the slow path hands out.
                let inner = &self.heap.inner;
                inner.pacer.note_alloc(if large {
                    bytes
                } else {
                    inner.config.tlab_bytes.max(bytes)
                });
                // Mark assist: an allocator that outruns marking pays with a bounded slice of
                // marking work (see `crate::pacer`).
                if inner.config.mark_assists && inner.marking.active.load(Ordering::Relaxed) {
                    if let Some(plan) = inner.pacer.assist_plan() {
                        // Marking is behind this mutator: the GC threads at full priority.
                        let _boost = crate::background::boost_while_waiting();
                        crate::assist::paced_assist(inner, plan);
                    }
                }
                // Compaction assists: a mutator that outruns the compaction fills pages, so
                // that the next cycle's marking finds its headroom (see `crate::pacer`; and a
                // young cycle's budget, `crate::youngpace`).
                if inner.config.mark_assists {
                    crate::assist::paced_compaction_assist(inner);
                }
                // Idle-mode GC threads run in their normal policy while the collector is
                // behind the schedule or the prefill thread behind the refills
                // (`HeapConfig::gc_thread_idle`).
                if inner.config.gc_thread_idle {
                    crate::assist::note_schedule(inner, prefill_behind);
                }
                return Ok(self.init(addr, ty, len));
            }
            let inner = &self.heap.inner;
            let young_only = inner.gen.as_ref().filter(|gs| {
                collected >= tries
                    && full_tries < FULL_TRIES
                    && full_flips0 == Some(gs.full_flips())
            });
            if let Some(gs) = young_only {
                // Every collection tried was young: the next cycle is full (see above).
                gs.request_full();
                full_tries += 1;
            } else if collected >= tries {
                return Err(if large {
                    AllocError::OutOfMemory {
                        requested: bytes,
                        live: inner.large.used(),
                        capacity: inner.large.size,
                        space: "large-object space",
                    }
                } else {
                    // Pinned objects (`crate::pins`) narrow the current half's window: the
                    // capacity is the window's and the old generation's (generational mode;
                    // its objects are live too), and the message says so.
                    let window = inner.moving.end() - inner.moving.base();
                    let (old_lo, old_hi) = inner.moving.old_range();
                    let old = old_hi - old_lo;
                    AllocError::OutOfMemory {
                        requested: bytes,
                        live: inner.moving.used() + old,
                        capacity: window + old,
                        space: if window + old >= inner.moving.half_bytes {
                            "moving space"
                        } else if inner.gen.is_some() {
                            "moving-space window and old generation (a half less the pages of pinned objects)"
                        } else {
                            "moving-space window (the half less the pages of pinned objects)"
                        },
                    }
                });
            }
            let flips = inner.cycles.load(Ordering::SeqCst);
            // Inside a callback run by a collection (the `on_cycle` hook, the mark hook: a
            // mutator lent by `Heap::with_mutator` on the GC thread) the running cycle cannot
            // flip or end until the callback returns: waiting for it would wait for itself.
            // There, an exhausted space is refused (`collect_for` answers `Reentrant`).
            if inner.concurrent_now() && inner.gate.is_busy() && reentry::current().is_none() {
                // The space is exhausted while a concurrent cycle runs: wait for its flip (or
                // its end), helping it there meanwhile (`wait_for_flip`): the last resort. Not
                // counted as a collection tried: it ends at the running cycle's flip or end.
                let asleep = self.wait_for_flip(flips);
                self.heap.inner.pacer.note_flip_wait(asleep);
                continue;
            }
            self.collect_for(Trigger::Exhausted)?;
            // A concurrent cycle frees nothing until its flip: wait for a flip before the retry
            // (without this, a mutator outrunning the collector fails with OutOfMemory while
            // most of the heap is garbage; found by the soak test). Not for the end of the
            // compaction: after the flip the new half is free above the compacted data.
            let asleep = self.wait_for_flip(flips);
            if self.heap.inner.mode.concurrent() {
                self.heap.inner.pacer.note_flip_wait(asleep);
            }
            collected += 1;
        }
    }

    /// Access the object `v` refers to; `None` for null and immediates.
    #[inline]
    ///
    /// # Panics
    /// If `v` is stale (read before a collection and held across a safepoint without a root),
    /// of another heap, or was read from a non-reference word: see the module documentation.
    pub fn local(&self, v: Value) -> Option<Local<'_>> {
        let o = v.as_ref()?;
        reentry::refuse_in_root_source("Mutator::local");
        self.check_ours(v, "Mutator::local");
        let a = o.address();
        let inner = self.inner();
        let in_heap = inner.holds_objects_at(a);
        // SAFETY: only read when the address lies in present heap memory.
        let h = in_heap.then(|| Header(unsafe { (a as *const u64).read() }));
        let types = h.map(|h| self.types_for(h.type_id()));
        match (h, types) {
            (Some(h), Some(types))
                if h.type_id() != TypeId::FILLER && (h.type_id().0 as usize) < types.len() =>
            {
                // The type's facts every access needs, looked up once here.
                let info = types.get(h.type_id()).expect("checked above");
                let shape = match &info.kind {
                    TypeKind::Fixed { .. } => Shape::Fixed,
                    TypeKind::RefArray => Shape::RefArray,
                    TypeKind::ByteArray => Shape::ByteArray,
                    TypeKind::Filler => Shape::ByteArray,
                };
                Some(Local {
                    obj: o,
                    header: h,
                    era: v.era(),
                    now: &inner.roots.era,
                    words: info.size_words(h.len()) - 1,
                    shape,
                    refs: types.ref_words(h.type_id()),
                    types,
                    m: self,
                })
            }
            // Unreachable from safe code with a correct collector (the era check passed): a
            // broken `value_from_bits` contract, or a slot the collector failed to update
            // (the torture suite's deliberate breakage lands here).
            _ => panic!(
                "Mutator::local: {v:?} is current but names no object of this heap (a raw word given to `value_from_bits` that was not a live object's address, or a collector bug)"
            ),
        }
    }

    /// The identity hash code of the object `v` names: the same for that object for as long as
    /// it lives, wherever the collector moves it (unlike [`Value::bits`], or `Value`'s own
    /// `Hash`, which follow its address); `None` for null and immediates. Kept in a side
    /// table, not in the object (see the `hashes` module for the cost).
    ///
    /// # Panics
    /// As [`Mutator::local`].
    pub fn identity_hash(&self, v: Value) -> Option<u64> {
        let l = self.local(v)?;
        Some(self.inner().hashes.get(l.object().address()))
    }

    /// Create a handle that keeps `v` alive and up to date across collections. The handle
    /// belongs to this mutator (see the module documentation, "Ownership").
    ///
    /// # Panics
    /// If `v` is a reference of another heap.
    pub fn root(&self, v: Value) -> Root {
        reentry::refuse_in_root_source("Mutator::root");
        self.check_ours(v, "Mutator::root");
        // Slots of roots dropped while NATIVE and not freed on the way back (none, normally).
        self.shared.free_deferred();
        // SAFETY: the owner thread, RUNNING.
        let r = unsafe { self.shared.roots_mut() };
        let index = match r.free.pop() {
            Some(i) => {
                r.handles[i as usize] = v.bits();
                i
            }
            None => {
                r.handles.push(v.bits());
                (r.handles.len() - 1) as u32
            }
        };
        Root {
            shared: self.shared.clone(),
            index,
            _not_send: PhantomData,
        }
    }

    /// Add a root source scanned with this mutator's roots.
    pub fn add_root_source(&self, src: Arc<dyn RootSource>) {
        reentry::refuse_in_root_source("Mutator::add_root_source");
        // SAFETY: the owner thread, RUNNING.
        unsafe { self.shared.roots_mut() }.sources.push(src);
    }

    // The value stack: a precise root area for an interpreter's operand stack and frames.

    /// Push onto the value stack.
    ///
    /// # Panics
    /// If `v` is a reference of another heap.
    #[inline]
    pub fn push(&self, v: Value) {
        reentry::refuse_in_root_source("Mutator::push");
        self.check_ours(v, "Mutator::push");
        // SAFETY: the owner thread, RUNNING.
        unsafe { self.shared.roots_mut() }.stack.push(v.bits());
    }
    /// Pop from the value stack.
    #[inline]
    pub fn pop(&self) -> Option<Value> {
        reentry::refuse_in_root_source("Mutator::pop");
        // SAFETY: the owner thread; the stack holds valid values.
        unsafe {
            self.shared
                .roots_mut()
                .stack
                .pop()
                .map(|b| Value::minted(b, self.era()))
        }
    }
    /// Value-stack slot `i` (0 = bottom).
    #[inline]
    pub fn stack_get(&self, i: usize) -> Value {
        reentry::refuse_in_root_source("Mutator::stack_get");
        // SAFETY: the owner thread, RUNNING.
        Value::minted(unsafe { self.shared.roots_mut() }.stack[i], self.era())
    }
    /// Set value-stack slot `i`.
    ///
    /// # Panics
    /// If `v` is a reference of another heap.
    #[inline]
    pub fn stack_set(&self, i: usize, v: Value) {
        reentry::refuse_in_root_source("Mutator::stack_set");
        self.check_ours(v, "Mutator::stack_set");
        // SAFETY: the owner thread, RUNNING.
        unsafe { self.shared.roots_mut() }.stack[i] = v.bits();
    }
    /// Value-stack depth.
    #[inline]
    pub fn stack_len(&self) -> usize {
        reentry::refuse_in_root_source("Mutator::stack_len");
        // SAFETY: the owner thread, RUNNING.
        unsafe { self.shared.roots_mut() }.stack.len()
    }
    /// Shrink the value stack to `n` slots.
    #[inline]
    pub fn stack_truncate(&self, n: usize) {
        reentry::refuse_in_root_source("Mutator::stack_truncate");
        // SAFETY: the owner thread, RUNNING.
        unsafe { self.shared.roots_mut() }.stack.truncate(n);
    }
}

impl Drop for Mutator {
    fn drop(&mut self) {
        let inner = &self.heap.inner;
        let mut g = inner.sp.lock();
        // Hand over what marking needs from us: unflushed SATB entries, our black buffer.
        // (Under the handshake lock: no pause can be in progress.)
        // SAFETY: the owner thread, RUNNING.
        let r = unsafe { self.shared.roots_mut() };
        inner.marking.flush(&mut r.satb);
        if inner.marking.active.load(Ordering::SeqCst) {
            inner.marking.retire(
                self.shared.tlab_start.load(Ordering::Relaxed),
                self.shared.tlab_cursor.load(Ordering::Relaxed),
            );
        }
        note_detached(inner.key(), &self.shared);
        self.waits.detach(&inner.waits);
        // Roots of this mutator are no longer scanned: they refuse to be read from now on.
        self.shared.detached.store(true, Ordering::SeqCst);
        g.mutators.retain(|m| !Arc::ptr_eq(m, &self.shared));
        inner.sp.arrived(&g);
        drop(g);
    }
}

/// How long a mutator waiting for a flip sleeps between looks for shared collector work
/// ([`Mutator::wait_for_flip`]).
const FLIP_WAIT_NAP: std::time::Duration = std::time::Duration::from_micros(200);

/// A handle on one object, updated by the collector when the object moves.
///
/// A `Root` belongs to the [`Mutator`] that created it and must be used with that mutator:
/// every accessor takes it and checks. It keeps its mutator's root storage alive (not the
/// mutator), so a misuse is always answered with a panic naming it, never with another
/// object.
pub struct Root {
    shared: Arc<MutatorShared>,
    index: u32,
    _not_send: PhantomData<*const ()>,
}

impl Root {
    /// Panic unless `m` is this root's mutator (alive: it is borrowed).
    #[inline]
    fn check_owner(&self, m: &Mutator, what: &'static str) {
        if !Arc::ptr_eq(&self.shared, &m.shared) {
            self.wrong_owner(m, what);
        }
    }

    #[cold]
    #[inline(never)]
    fn wrong_owner(&self, m: &Mutator, what: &'static str) -> ! {
        let mine = &self.shared;
        if mine.detached.load(Ordering::SeqCst) {
            panic!(
                "{what}: this Root's Mutator (#{} of heap #{}) was dropped; a Root dies with its Mutator (keep the Mutator alive, or use a GlobalRoot)",
                mine.id, mine.heap_id
            );
        } else if mine.heap_id != m.shared.heap_id {
            panic!(
                "{what}: this Root belongs to heap #{}, but was used with a mutator of heap #{}",
                mine.heap_id, m.shared.heap_id
            );
        } else {
            panic!(
                "{what}: this Root belongs to mutator #{} but was used with mutator #{} of the same heap #{} (roots are per mutator)",
                mine.id, m.shared.id, mine.heap_id
            );
        }
    }

    /// The current value (valid until the next safepoint of `m`).
    ///
    /// # Panics
    /// If `m` is not the mutator that created this root (or that mutator was dropped).
    pub fn value(&self, m: &Mutator) -> Value {
        self.read(m, "Root::value")
    }

    fn read(&self, m: &Mutator, what: &'static str) -> Value {
        self.check_owner(m, what);
        reentry::refuse_in_root_source(what);
        // SAFETY: `m` is the owner, borrowed (so alive and RUNNING on this thread: Root is
        // !Send).
        let bits = unsafe { self.shared.roots_mut() }.handles[self.index as usize];
        // The slot is a root: the collector keeps it current.
        Value::minted(bits, m.era())
    }

    /// The object, borrowed from `m`: usable until `m`'s next safepoint.
    ///
    /// # Panics
    /// As [`Root::value`].
    pub fn get<'m>(&self, m: &'m Mutator) -> Option<Local<'m>> {
        m.local(self.read(m, "Root::get"))
    }
    /// Replace the rooted value.
    ///
    /// # Panics
    /// As [`Root::value`], and if `v` is a reference of another heap.
    pub fn set(&self, m: &Mutator, v: Value) {
        self.check_owner(m, "Root::set");
        reentry::refuse_in_root_source("Root::set");
        m.check_ours(v, "Root::set");
        // SAFETY: the owner thread, RUNNING.
        unsafe { self.shared.roots_mut() }.handles[self.index as usize] = v.bits();
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        // Inside `RootSource::for_each_root` the collection is visiting this thread's roots
        // (its handle table is borrowed by the visit): the slot is left as it is, and its
        // object stays rooted until the mutator detaches (a leak of one slot, not a write into
        // a table being visited).
        if reentry::current() == Some(reentry::Callback::RootSource) {
            return;
        }
        // On the owner thread (a `Root` is not `Send`); deferred if it is in a native section.
        self.shared.drop_root(self.index);
    }
}

/// A `Local` or `Obj` used after a collection that its borrow of the mutator did not keep away
/// (one run through the `Heap` handle on the same thread).
#[cold]
#[inline(never)]
pub(crate) fn stale_access(what: &str, was: u64, now: u64) -> ! {
    panic!(
        "{what}: the object was reached in era {was}, and a collection has run since (era {now}; \
         one started through the Heap handle on this thread, e.g. Heap::collect or \
         register_type, while the {what} was held): reach it again from a root"
    )
}

/// Read the heap word at `a` (relaxed atomic: another mutator may write it at the same time,
/// and a race then gives a stale value, never undefined behaviour).
///
/// # Safety
/// `a` is a word-aligned address inside a live object's payload (or header).
#[inline]
pub(crate) unsafe fn racy_word(a: usize) -> u64 {
    // SAFETY: the caller's contract: aligned, inside a live heap object, valid for reads.
    unsafe { AtomicU64::from_ptr(a as *mut u64) }.load(Ordering::Relaxed)
}

/// Store `bits` into the heap word at `a` (relaxed atomic, as [`racy_word`]).
///
/// # Safety
/// `a` is a word-aligned address inside a live object's payload, and writing `bits` there
/// keeps the object well formed (a data word, or a reference slot the caller's barrier covers).
#[inline]
pub(crate) unsafe fn set_racy_word(a: usize, bits: u64) {
    // SAFETY: the caller's contract: aligned, inside a live heap object, valid for writes.
    unsafe { AtomicU64::from_ptr(a as *mut u64) }.store(bits, Ordering::Relaxed);
}

// Byte copies between heap byte arrays and Rust memory. Heap memory is shared between threads
// (two mutators may access one array at once), so it is read and written only with relaxed
// atomics: a race gives mixed old and new bytes, never undefined behaviour. Whole aligned
// words go as `AtomicU64`, the unaligned ends byte by byte.

/// Copy `dst.len()` bytes from heap address `a` into `dst`.
pub(crate) fn racy_copy_out(a: usize, dst: &mut [u8]) {
    let n = dst.len();
    let mut i = 0;
    while i < n && !(a + i).is_multiple_of(WORD) {
        // SAFETY: `[a, a + n)` lies in a live byte array (the caller checked the range).
        dst[i] = unsafe { AtomicU8::from_ptr((a + i) as *mut u8) }.load(Ordering::Relaxed);
        i += 1;
    }
    while i + WORD <= n {
        // SAFETY: as above, and `a + i` is word-aligned.
        let w = unsafe { AtomicU64::from_ptr((a + i) as *mut u64) }.load(Ordering::Relaxed);
        dst[i..i + WORD].copy_from_slice(&w.to_ne_bytes());
        i += WORD;
    }
    while i < n {
        // SAFETY: as above.
        dst[i] = unsafe { AtomicU8::from_ptr((a + i) as *mut u8) }.load(Ordering::Relaxed);
        i += 1;
    }
}

/// Copy `src` to heap address `a`.
pub(crate) fn racy_copy_in(src: &[u8], a: usize) {
    let n = src.len();
    let mut i = 0;
    while i < n && !(a + i).is_multiple_of(WORD) {
        // SAFETY: `[a, a + n)` lies in a live byte array (the caller checked the range); byte
        // arrays hold no references.
        unsafe { AtomicU8::from_ptr((a + i) as *mut u8) }.store(src[i], Ordering::Relaxed);
        i += 1;
    }
    while i + WORD <= n {
        let w = u64::from_ne_bytes(src[i..i + WORD].try_into().expect("a word"));
        // SAFETY: as above, and `a + i` is word-aligned.
        unsafe { AtomicU64::from_ptr((a + i) as *mut u64) }.store(w, Ordering::Relaxed);
        i += WORD;
    }
    while i < n {
        // SAFETY: as above.
        unsafe { AtomicU8::from_ptr((a + i) as *mut u8) }.store(src[i], Ordering::Relaxed);
        i += 1;
    }
}

/// What a [`Local`]'s accessors may do with its object (from its type, looked up once).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    /// Fixed-size: words, some of them reference slots.
    Fixed,
    /// Every payload word is a reference slot.
    RefArray,
    /// Bytes only.
    ByteArray,
}

/// Access to one object, valid until its mutator's next safepoint (enforced by the borrow;
/// a collection run on this thread through the `Heap` handle meanwhile makes every accessor
/// that reaches the object panic instead).
#[derive(Clone, Copy)]
pub struct Local<'m> {
    obj: ObjectRef,
    header: Header,
    /// The era the object was reached in (the values read from it are minted in it).
    era: u64,
    /// The heap's era, read by every accessor that reaches the object (one load).
    now: &'m AtomicU64,
    /// Payload words.
    words: usize,
    /// Which accessors apply.
    shape: Shape,
    /// Reference-slot word indices (header = 0) of a fixed type; empty otherwise.
    refs: &'m [u32],
    types: &'m TypeRegistry,
    m: &'m Mutator,
}

impl core::fmt::Debug for Local<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Local({:?}, {:?})", self.obj, self.header)
    }
}

impl<'m> Local<'m> {
    /// The reference as a value (to store in a field or a root).
    pub fn value(&self) -> Value {
        Value::minted(self.obj.address(), self.era)
    }
    /// The object reference.
    ///
    /// # Panics
    /// If a collection ran since the object was reached (see [`Local`]'s accessors).
    #[inline]
    pub fn object(&self) -> ObjectRef {
        self.check_current();
        self.obj
    }
    /// Its type.
    pub fn type_id(&self) -> TypeId {
        self.header.type_id()
    }
    /// Length of an array (elements or bytes); 0 for fixed-size objects.
    pub fn len(&self) -> usize {
        self.header.len()
    }
    /// Whether an array is empty (always true for fixed-size objects).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Its type's kind.
    pub(crate) fn kind_of(&self) -> &'m TypeKind {
        self.kind()
    }
    fn kind(&self) -> &'m TypeKind {
        &self
            .types
            .get(self.header.type_id())
            .expect("checked at creation")
            .kind
    }
    /// Payload words of the object.
    #[inline]
    pub fn payload_words(&self) -> usize {
        self.words
    }
    #[inline]
    fn is_ref_word(&self, i: usize) -> bool {
        match self.shape {
            Shape::RefArray => true,
            // Reference words are below 2^32 (their byte offsets fit in 32 bits): a word index
            // past that is data, never one cut down to a reference word's index.
            Shape::Fixed => u32::try_from(1 + i).is_ok_and(|w| self.refs.contains(&w)),
            Shape::ByteArray => false,
        }
    }
    #[inline]
    fn word_addr(&self, i: usize) -> usize {
        if i >= self.words || self.shape == Shape::ByteArray {
            self.word_out_of_bounds(i);
        }
        self.check_current();
        self.obj.payload_word(i)
    }
    #[cold]
    #[inline(never)]
    fn word_out_of_bounds(&self, i: usize) -> ! {
        panic!("word {i} out of bounds for {:?}", self.header)
    }
    /// Refuse access once the heap's era moved on: the borrow of the mutator keeps its own
    /// safepoints away, but a heap-level call on this thread (`Heap::collect`,
    /// `start_collection`, `wait_for_cycle`, `register_type`, which take `&Heap` and stop or
    /// wait as this thread's mutator) may run a collection that moves or frees the object.
    #[inline]
    fn check_current(&self) {
        let now = self.now.load(Ordering::Relaxed);
        if self.era != now {
            stale_access("Local", self.era, now);
        }
    }

    /// Payload word `i` as a value (for arrays: element `i`). A non-reference word is
    /// returned as a value too, but one that never names an object (see the `value` module).
    #[inline]
    pub fn get(&self, i: usize) -> Value {
        let a = self.word_addr(i);
        // SAFETY: an in-bounds, word-aligned payload word of a live object (read atomically: the
        // marker and other mutators may access it concurrently).
        let bits = unsafe { AtomicUsize::from_ptr(a as *mut usize).load(Ordering::Relaxed) };
        if self.is_ref_word(i) {
            // A reference slot of a live object: null, an immediate or a current reference.
            Value::minted(bits, self.era)
        } else {
            Value::minted(bits, 0)
        }
    }
    /// Store `v` into payload word `i`. A reference may only be stored into a reference slot.
    ///
    /// # Panics
    /// If `i` is out of bounds, if a reference goes into a non-reference word, or if `v` is a
    /// reference of another heap.
    #[inline]
    pub fn set(&self, i: usize, v: Value) {
        let a = self.word_addr(i);
        self.m.check_ours(v, "Local::set");
        assert!(
            !v.is_ref() || self.is_ref_word(i),
            "word {i} of {:?} is not a reference slot",
            self.header
        );
        // SAFETY: an in-bounds, word-aligned payload word of a live object, a reference slot
        // of its type (asserted above), and `v` was checked by `check_ours`.
        unsafe { self.store_slot(a, v) };
    }

    /// The store shared by [`Local::set`] and typed views (`crate::typed`): the SATB barrier,
    /// then the store.
    ///
    /// # Safety
    /// `a` is the address of a reference slot of this object (word aligned, in its payload,
    /// a reference word of its type), and `v` passed [`Mutator::check_ours`].
    #[inline]
    pub(crate) unsafe fn store_slot(&self, a: usize, v: Value) {
        // SAFETY: the caller's contract. Slots are accessed atomically because the concurrent
        // marker reads them while mutators run.
        let slot = unsafe { AtomicUsize::from_ptr(a as *mut usize) };
        if self.m.marking() {
            // The SATB (Yuasa deletion) barrier: log the reference being overwritten.
            let old = slot.load(Ordering::Relaxed);
            if old != 0 && old % WORD == 0 {
                self.m.satb_log(old);
            }
        }
        slot.store(v.bits(), Ordering::Relaxed);
        self.m.card_barrier(a, v);
    }

    /// The load shared by [`Local::get`] and typed views: a reference slot's value, minted in
    /// the era the object was reached in.
    ///
    /// # Safety
    /// `a` is the address of a reference slot of this object (word aligned, in its payload,
    /// a reference word of its type).
    #[inline]
    pub(crate) unsafe fn load_slot(&self, a: usize) -> Value {
        // SAFETY: the caller's contract (read atomically: the marker and other mutators may
        // access it concurrently).
        let bits = unsafe { AtomicUsize::from_ptr(a as *mut usize).load(Ordering::Relaxed) };
        // A reference slot of a live object: null, an immediate or a current reference.
        Value::minted(bits, self.era)
    }

    /// The mutator this access borrows.
    #[inline]
    pub(crate) fn mutator(&self) -> &'m Mutator {
        self.m
    }

    /// The name of this object's type (for diagnostics).
    pub(crate) fn type_name(&self) -> &'m str {
        self.types
            .get(self.header.type_id())
            .map_or("?", |t| t.name.as_str())
    }
    /// Raw payload word `i` (a non-reference data word).
    #[inline]
    pub fn word(&self, i: usize) -> u64 {
        let a = self.word_addr(i);
        // SAFETY: an in-bounds, word-aligned payload word of this live object.
        unsafe { racy_word(a) }
    }
    /// Store raw bits into non-reference payload word `i`.
    #[inline]
    pub fn set_word(&self, i: usize, bits: u64) {
        let a = self.word_addr(i);
        assert!(
            !self.is_ref_word(i),
            "word {i} of {:?} is a reference slot",
            self.header
        );
        // SAFETY: in bounds, word-aligned, and not a reference slot.
        unsafe { set_racy_word(a, bits) };
    }
    fn byte_range(&self, offset: usize, n: usize) -> usize {
        assert!(
            self.shape == Shape::ByteArray
                && offset.checked_add(n).is_some_and(|e| e <= self.len()),
            "bytes {offset}..+{n} out of bounds for {:?}",
            self.header
        );
        self.check_current();
        self.obj.payload_word(0) + offset
    }
    /// Copy bytes out of a byte array.
    pub fn read_bytes(&self, offset: usize, dst: &mut [u8]) {
        let a = self.byte_range(offset, dst.len());
        racy_copy_out(a, dst);
    }
    /// Copy bytes into a byte array.
    pub fn write_bytes(&self, offset: usize, src: &[u8]) {
        let a = self.byte_range(offset, src.len());
        racy_copy_in(src, a);
    }
    /// The whole byte array as a vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = vec![0; self.len()];
        self.read_bytes(0, &mut v);
        v
    }
    /// The address of the first byte of a byte array, for handing to a system call (see the
    /// documentation of `ensure_present` in concurrent mode).
    pub fn byte_ptr(&self) -> *mut u8 {
        self.byte_range(0, 0) as *mut u8
    }
}

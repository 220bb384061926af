//! Checked-once object access for interpreters: a [`Layout`] (a registered type's facts,
//! looked up once per runtime, not per access) and an [`Obj`], an object validated once
//! against a layout by [`Mutator::obj`], whose accessors then skip the type-registry work of
//! [`Mutator::local`] and [`Local`]'s accessors; plus `unsafe` unchecked accessors
//! ([`Obj::get_unchecked`] and its family) for runtimes that have proved an index in bounds
//! and of the right kind, and want no per-access check at all.
//!
//! # Why
//!
//! [`Mutator::local`] does, on every access, what an interpreter already knows: it checks the
//! value's era, that its address lies in a used part of the heap, reads the header, looks the
//! type up in the registry and builds a [`Local`] with the type's facts. An interpreter that
//! asks "is this a pair?" knows the pair layout; [`Mutator::obj`] checks only what it does not
//! know: the value's era (which proves the value names an object header of this mutator's
//! heap, see the `value` module) and the header's type id against the layout's.
//!
//! # Soundness
//!
//! The safe API here is exactly as sound as [`Local`]'s: an [`Obj`] borrows its mutator, so it
//! cannot outlive a safepoint (everything that reaches one takes `&mut Mutator`); its
//! accessors check the index against the object's payload, refuse a reference stored into a
//! data word, mint a reference only from a reference slot, and check a stored value's heap
//! and era. Only the `unsafe` accessors skip checks; their contracts say what the caller
//! must have proved instead.
//!
//! Invariants:
//! - a [`Layout`] is built only by [`Heap::layout`] from the heap's registry: its type id, kind,
//!   payload size and reference mask are that type's, and it records the heap's id; an
//!   [`Obj`] is built only by [`Mutator::obj`], which checks the layout's heap id against the
//!   mutator's (type ids of different heaps mean different types), the value's era against the
//!   heap's current one, and the object's header type id against the layout's;
//! - so an `Obj` names a live object of the layout's type until its mutator's next safepoint,
//!   and `words` is its payload size in words (a fixed type's size, or a reference array's
//!   length from its header; 0 for byte arrays, whose words are not accessed here);
//! - reference stores keep the SATB barrier of [`Local::set`] (the overwritten reference is
//!   logged while the barrier is on); values are read and written with relaxed atomics, as
//!   in `crate::mutator`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use faultline_heap::object::{Header, TypeId, TypeKind, WORD};

use crate::inner::Heap;
use crate::mutator::{racy_word, set_racy_word, Local, Mutator};
use crate::value::Value;

/// Which words of a layout's objects are reference slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slots {
    /// A fixed-size type of `words` payload words (at most 64); bit `i` of `refs` is set if
    /// payload word `i` is a reference slot.
    Fixed { words: u32, refs: u64 },
    /// Every payload word (there are `len` of them) is a reference slot.
    RefArray,
    /// Bytes only.
    ByteArray,
}

/// A registered type's facts for checked-once access ([`Mutator::obj`]), taken from the
/// registry once by [`Heap::layout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    heap: u64,
    ty: TypeId,
    slots: Slots,
}

impl Layout {
    /// The type.
    pub fn type_id(&self) -> TypeId {
        self.ty
    }
    /// The id of the heap it was registered in.
    pub fn heap_id(&self) -> u64 {
        self.heap
    }
    /// Whether payload word `i` of a fixed-size type's objects is a reference slot (every
    /// word of a reference array is; no word of a byte array is).
    pub fn is_ref_word(&self, i: usize) -> bool {
        match self.slots {
            Slots::Fixed { words, refs } => i < words as usize && refs >> i & 1 == 1,
            Slots::RefArray => true,
            Slots::ByteArray => false,
        }
    }
}

impl Heap {
    /// The layout of registered type `ty`, for [`Mutator::obj`]. `None` if `ty` is not
    /// registered, is the filler, or is a fixed-size type of more than 64 payload words (use
    /// [`Mutator::local`] for those).
    pub fn layout(&self, ty: TypeId) -> Option<Layout> {
        let types = self.inner.types();
        let info = types.get(ty).filter(|_| ty != TypeId::FILLER)?;
        let slots = match &info.kind {
            TypeKind::Filler => return None,
            TypeKind::Fixed {
                payload_bytes,
                ref_offsets,
            } => {
                let words = u32::try_from(payload_bytes.div_ceil(WORD))
                    .ok()
                    .filter(|&w| w <= 64)?;
                let refs = ref_offsets
                    .iter()
                    .fold(0u64, |m, &off| m | 1 << (off as usize / WORD));
                Slots::Fixed { words, refs }
            }
            TypeKind::RefArray => Slots::RefArray,
            TypeKind::ByteArray => Slots::ByteArray,
        };
        Some(Layout {
            heap: self.inner.id,
            ty,
            slots,
        })
    }
}

impl Mutator {
    /// The object `v` names, validated once as an object of `layout`'s type: `None` for null,
    /// an immediate, or an object of another type. The accessors of the result then check
    /// only the index (and a stored value's heap and era).
    ///
    /// # Panics
    /// As [`Mutator::local`] for a stale or foreign reference; if `layout` is another heap's.
    #[inline(always)]
    pub fn obj(&self, v: Value, layout: &Layout) -> Option<Obj<'_>> {
        let o = v.as_ref()?;
        crate::reentry::refuse_in_root_source("Mutator::obj");
        self.check_ours(v, "Mutator::obj");
        if layout.heap != self.heap_id() {
            foreign_layout(layout, self.heap_id());
        }
        let a = o.address();
        let h = self.header_of(v, a);
        if h.type_id() != layout.ty {
            return None;
        }
        let (words, refs) = match layout.slots {
            Slots::Fixed { words, refs } => (words as usize, refs),
            Slots::RefArray => (h.len(), u64::MAX),
            Slots::ByteArray => (0, 0),
        };
        Some(Obj {
            addr: a,
            header: h,
            era: v.era(),
            words,
            refs,
            all_refs: layout.slots == Slots::RefArray,
            m: self,
        })
    }

    /// The type of the object `v` names (`None` for null and immediates), without building a
    /// [`Local`].
    ///
    /// # Panics
    /// As [`Mutator::local`] for a stale or foreign reference.
    #[inline]
    pub fn type_of(&self, v: Value) -> Option<TypeId> {
        let o = v.as_ref()?;
        crate::reentry::refuse_in_root_source("Mutator::type_of");
        self.check_ours(v, "Mutator::type_of");
        Some(self.header_of(v, o.address()).type_id())
    }

    /// The header of the object at `a`, the address of `v`, a reference current in this era
    /// of this heap (checked by the caller). That alone proves `a` names a live object (the
    /// `value` module's invariant); the range check is [`Mutator::local`]'s defence against a
    /// broken `value_from_bits` contract or a collector bug: a panic instead of a read outside
    /// the heap's used memory. Always inlined: out of line, the call costs an interpreter more
    /// than the checks.
    #[inline(always)]
    fn header_of(&self, v: Value, a: usize) -> Header {
        if !self.heap().inner.holds_objects_at(a) {
            names_no_object(v);
        }
        // SAFETY: `a` is the address of a live object's header (the era invariant, above) in
        // heap memory that holds objects (checked just above); read atomically, as the collector may set header flags
        // meanwhile.
        Header(unsafe { AtomicU64::from_ptr(a as *mut u64) }.load(Ordering::Relaxed))
    }
}

#[cold]
#[inline(never)]
fn names_no_object(v: Value) -> ! {
    panic!(
        "Mutator::obj: {v:?} is current but names no object of this heap (a raw word given to `value_from_bits` that was not a live object's address, or a collector bug)"
    )
}

#[cold]
#[inline(never)]
fn foreign_layout(layout: &Layout, heap: u64) -> ! {
    panic!(
        "Mutator::obj: the layout of type {:?} belongs to heap #{}, not to this mutator's heap #{heap}",
        layout.ty, layout.heap
    )
}

/// An object validated once against a [`Layout`] by [`Mutator::obj`]: valid until its
/// mutator's next safepoint (enforced by the borrow, as for [`Local`]; the checked accessors
/// panic after a collection run through the `Heap` handle meanwhile, the `unsafe` ones leave
/// that to their caller).
#[derive(Clone, Copy)]
pub struct Obj<'m> {
    addr: usize,
    header: Header,
    /// The era the object was reached in (reference slots read from it are minted in it).
    era: u64,
    /// Payload words that the word accessors may touch.
    words: usize,
    /// Reference-slot mask of a fixed type (bit `i`: payload word `i`); all ones for a
    /// reference array, 0 for a byte array.
    refs: u64,
    /// Every payload word is a reference slot (a reference array, of any length).
    all_refs: bool,
    m: &'m Mutator,
}

impl core::fmt::Debug for Obj<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Obj({:#x}, {:?})", self.addr, self.header)
    }
}

impl<'m> Obj<'m> {
    /// The reference as a value (to store in a field or a root).
    #[inline]
    pub fn value(&self) -> Value {
        Value::minted(self.addr, self.era)
    }
    /// Its type.
    #[inline]
    pub fn type_id(&self) -> TypeId {
        self.header.type_id()
    }
    /// The length of an array (elements or bytes); 0 for fixed-size objects.
    #[inline]
    pub fn len(&self) -> usize {
        self.header.len()
    }
    /// Whether an array is empty (always true for fixed-size objects).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Payload words the word accessors reach (0 for a byte array).
    #[inline]
    pub fn payload_words(&self) -> usize {
        self.words
    }
    /// The same object as a [`Local`] (for the accessors only it has, such as bytes).
    pub fn local(&self) -> Local<'m> {
        self.m.local(self.value()).expect("a validated object")
    }

    #[inline]
    fn is_ref_word(&self, i: usize) -> bool {
        self.all_refs || (i < 64 && self.refs >> i & 1 == 1)
    }
    #[inline]
    fn word_addr(&self, i: usize) -> usize {
        if i >= self.words {
            self.out_of_bounds(i);
        }
        // As `Local`'s accessors: a collection run through the `Heap` handle on this thread
        // since the object was reached may have moved or freed it.
        if self.era != self.m.era() {
            crate::mutator::stale_access("Obj", self.era, self.m.era());
        }
        self.addr + WORD * (1 + i)
    }
    #[cold]
    #[inline(never)]
    fn out_of_bounds(&self, i: usize) -> ! {
        panic!("word {i} out of bounds for {:?}", self.header)
    }

    /// Payload word `i` as a value (for arrays: element `i`); a data word is returned as a
    /// value that never names an object, as by [`Local::get`].
    ///
    /// # Panics
    /// If `i` is out of bounds.
    #[inline]
    pub fn get(&self, i: usize) -> Value {
        let a = self.word_addr(i);
        // SAFETY: an in-bounds, word-aligned payload word of a live object (see the module
        // invariants), read atomically as in `Local::get`.
        let bits = unsafe { AtomicUsize::from_ptr(a as *mut usize) }.load(Ordering::Relaxed);
        Value::minted(bits, if self.is_ref_word(i) { self.era } else { 0 })
    }

    /// Store `v` into payload word `i`, with the SATB barrier.
    ///
    /// # Panics
    /// If `i` is out of bounds, if a reference goes into a data word, or if `v` is a stale
    /// reference or another heap's.
    #[inline]
    pub fn set(&self, i: usize, v: Value) {
        let a = self.word_addr(i);
        self.m.check_ours(v, "Obj::set");
        if v.is_ref() && !self.is_ref_word(i) {
            self.not_a_ref_slot(i);
        }
        // SAFETY: `a` is an in-bounds payload word of a live object; a reference goes only into
        // a reference slot (checked above), and `v` passed `check_ours`.
        unsafe { self.store(a, v) }
    }
    #[cold]
    #[inline(never)]
    fn not_a_ref_slot(&self, i: usize) -> ! {
        panic!("word {i} of {:?} is not a reference slot", self.header)
    }

    /// Raw payload word `i`.
    ///
    /// # Panics
    /// If `i` is out of bounds.
    #[inline]
    pub fn word(&self, i: usize) -> u64 {
        let a = self.word_addr(i);
        // SAFETY: an in-bounds, word-aligned payload word of this live object.
        unsafe { racy_word(a) }
    }

    /// Store raw bits into data word `i`.
    ///
    /// # Panics
    /// If `i` is out of bounds or a reference slot.
    #[inline]
    pub fn set_word(&self, i: usize, bits: u64) {
        let a = self.word_addr(i);
        assert!(
            !self.is_ref_word(i),
            "word {i} of {:?} is a reference slot",
            self.header
        );
        // SAFETY: in bounds, word-aligned, not a reference slot.
        unsafe { set_racy_word(a, bits) };
    }

    /// Reference slot `i`, with no check at all.
    ///
    /// # Safety
    /// `i` is in bounds (below [`Obj::payload_words`]) and a reference slot of the object's
    /// type (any element of a reference array).
    #[inline]
    pub unsafe fn get_unchecked(&self, i: usize) -> Value {
        // SAFETY: the caller's contract: an in-bounds reference slot of a live object, which
        // holds null, an immediate or a reference current in the era it was reached in.
        let bits = unsafe { AtomicUsize::from_ptr((self.addr + WORD * (1 + i)) as *mut usize) }
            .load(Ordering::Relaxed);
        Value::minted(bits, self.era)
    }

    /// Store `v` into reference slot `i` with the SATB barrier, and no other check.
    ///
    /// # Safety
    /// `i` is in bounds and a reference slot of the object's type, and `v` is null, an
    /// immediate, or a reference of this mutator's heap current in this era (one minted since
    /// the mutator's last safepoint).
    #[inline]
    pub unsafe fn set_unchecked(&self, i: usize, v: Value) {
        debug_assert!(i < self.words && self.is_ref_word(i));
        debug_assert!(!v.is_ref() || v.era() == self.m.era());
        // SAFETY: the caller's contract.
        unsafe { self.store(self.addr + WORD * (1 + i), v) }
    }

    /// Data word `i`, with no bounds check.
    ///
    /// # Safety
    /// `i` is in bounds (below [`Obj::payload_words`]).
    #[inline]
    pub unsafe fn word_unchecked(&self, i: usize) -> u64 {
        debug_assert!(i < self.words);
        // SAFETY: the caller's contract: an in-bounds, word-aligned payload word.
        unsafe { AtomicU64::from_ptr((self.addr + WORD * (1 + i)) as *mut u64) }
            .load(Ordering::Relaxed)
    }

    /// The store of [`Obj::set`] and [`Obj::set_unchecked`]: the SATB (deletion) barrier, then
    /// the store.
    ///
    /// # Safety
    /// `a` is a payload word of this object; if `v` is a reference, `a` is a reference slot
    /// and `v` is current in this mutator's heap.
    #[inline]
    unsafe fn store(&self, a: usize, v: Value) {
        // SAFETY: the caller's contract; slots are accessed atomically because the concurrent
        // marker reads them while mutators run.
        let slot = unsafe { AtomicUsize::from_ptr(a as *mut usize) };
        let inner = &self.m.heap().inner;
        if inner.marking.barrier.load(Ordering::Relaxed) {
            let old = slot.load(Ordering::Relaxed);
            if old != 0 && old % WORD == 0 && !inner.config.debug.disable_barrier {
                // While the barrier is on, marking is active, so this logs `old` into the
                // mutator's SATB buffer exactly as `Local::set`'s barrier does.
                self.m.keep_alive(old);
            }
        }
        slot.store(v.bits(), Ordering::Relaxed);
        self.m.card_barrier(a, v);
    }
}

#[cfg(test)]
mod tests {
    use faultline_heap::object::TypeInfo;

    use crate::{Heap, HeapConfig, Value};

    fn heap() -> Heap {
        Heap::new(HeapConfig::with_heap_size(4 << 20)).unwrap()
    }

    #[test]
    fn layouts_follow_the_registry() {
        let h = heap();
        let pair = h
            .register_type(TypeInfo::fixed("pair", 24, &[0, 16]))
            .unwrap();
        let vec = h.register_type(TypeInfo::ref_array("vector")).unwrap();
        let s = h.register_type(TypeInfo::byte_array("string")).unwrap();
        let big = h
            .register_type(TypeInfo::fixed("big", 65 * 8, &[]))
            .unwrap();
        let l = h.layout(pair).unwrap();
        assert_eq!(l.type_id(), pair);
        assert_eq!(l.heap_id(), h.id());
        assert!(l.is_ref_word(0) && !l.is_ref_word(1) && l.is_ref_word(2) && !l.is_ref_word(3));
        assert!(h.layout(vec).unwrap().is_ref_word(1000));
        assert!(!h.layout(s).unwrap().is_ref_word(0));
        assert!(h.layout(big).is_none());
        assert!(h.layout(faultline_heap::object::TypeId(999)).is_none());
        assert!(h.layout(faultline_heap::object::TypeId::FILLER).is_none());
    }

    #[test]
    fn obj_checks_the_type_and_the_index() {
        let h = heap();
        let pair = h
            .register_type(TypeInfo::fixed("pair", 24, &[0, 16]))
            .unwrap();
        let vec = h.register_type(TypeInfo::ref_array("vector")).unwrap();
        let (lp, lv) = (h.layout(pair).unwrap(), h.layout(vec).unwrap());
        let mut m = h.attach();
        let p = m.alloc(pair, 0).unwrap();
        let v = m.alloc(vec, 3).unwrap();
        let imm = Value::immediate(0x19).unwrap();
        assert!(m.obj(imm, &lp).is_none());
        assert!(m.obj(Value::NULL, &lp).is_none());
        assert!(m.obj(v, &lp).is_none(), "a vector is not a pair");
        assert_eq!(m.type_of(v), Some(vec));
        assert_eq!(m.type_of(imm), None);
        let o = m.obj(p, &lp).unwrap();
        assert_eq!((o.type_id(), o.payload_words(), o.value()), (pair, 3, p));
        o.set(0, v);
        o.set_word(1, 77);
        o.set(2, imm);
        assert_eq!(o.get(0), v);
        assert_eq!(o.word(1), 77);
        assert_eq!(o.get(1).era(), 0, "a data word never names an object");
        assert_eq!(m.local(p).unwrap().get(0), v, "the same memory as Local's");
        let a = m.obj(v, &lv).unwrap();
        assert_eq!(a.payload_words(), 3);
        a.set(2, p);
        // SAFETY: index 2 < 3 of a reference array; `p` was minted since the last safepoint.
        unsafe { a.set_unchecked(1, p) };
        // SAFETY: in bounds, reference slots.
        assert_eq!(unsafe { (a.get_unchecked(1), a.get_unchecked(2)) }, (p, p));
        // SAFETY: in bounds.
        assert_eq!(unsafe { m.obj(p, &lp).unwrap().word_unchecked(1) }, 77);
        let bad: [&dyn Fn(); 4] = [
            &|| {
                m.obj(p, &lp).unwrap().get(3);
            },
            &|| m.obj(p, &lp).unwrap().set(1, v),
            &|| m.obj(p, &lp).unwrap().set_word(0, 1),
            &|| {
                m.obj(v, &lv).unwrap().get(3);
            },
        ];
        for f in bad {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            assert!(r.is_err());
        }
    }

    #[test]
    fn obj_refuses_stale_values_and_foreign_layouts() {
        let h = heap();
        let pair = h
            .register_type(TypeInfo::fixed("pair", 16, &[0, 8]))
            .unwrap();
        let lp = h.layout(pair).unwrap();
        let other = heap();
        let opair = other
            .register_type(TypeInfo::fixed("pair", 16, &[0, 8]))
            .unwrap();
        let olp = other.layout(opair).unwrap();
        let mut m = h.attach();
        let p = m.alloc(pair, 0).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.obj(p, &olp).is_some()));
        assert!(r.is_err(), "another heap's layout is refused");
        m.collect().unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.obj(p, &lp).is_some()));
        let msg = r.unwrap_err();
        let msg = msg.downcast_ref::<String>().unwrap();
        assert!(msg.contains("stale reference"), "{msg}");
    }
}

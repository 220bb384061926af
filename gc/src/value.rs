//! The embedder's [`Value`]: the content of a reference slot, plus the *era* it was read in,
//! and [`RootSlot`], a root slot an embedder's [`crate::RootSource`] owns.
//!
//! # Why an era
//!
//! A `Value` is `Copy` and carries no lifetime, so safe code can keep one across a safepoint,
//! where the collector may move or free every object. A heap has an era: a number taken from
//! one process-wide counter when the heap is created and again each time its collector moves
//! or frees objects (in the flip pause, before any reference is rewritten) or takes a marking
//! snapshot (in a concurrent cycle's initial-mark pause: an unrooted value held across it
//! names an object the snapshot may not reach, which the cycle would free while the mutator
//! could still store it into a live object). Every `Value` that
//! names an object is minted by the mutator API with the era it was read in; every conversion
//! back to an object (`Mutator::local`, a store into a field, a root or the value stack)
//! checks that era against the heap's. A value held across a collection, or taken from
//! another heap (whose eras are different numbers), is refused with a panic naming the
//! mistake instead of reading whatever now lies at its address.
//!
//! Invariants:
//! - a `Value` whose bits look like a reference (non-zero, low three bits zero) and whose era
//!   is the current era of a heap holds the address of an object header of that heap: such
//!   values are only minted from an allocation, a reference slot of a live object, or a root
//!   (all of which the collector keeps current), or by the `unsafe` escape hatch
//!   (`Mutator::value_from_bits`), whose contract says the same;
//! - null and immediates carry era 0 and are valid everywhere; a reference-looking value read
//!   from a non-reference word (or built from raw bits by safe code) carries era 0 too, so it
//!   can be compared and stored as data but never names an object;
//! - eras are never reused (a 64-bit counter shared by all heaps), so equal eras mean the same
//!   heap and no collection in between;
//! - a [`RootSlot`] holds bits and the era they are valid in. The collector visits (traces,
//!   forwards) a slot only if it holds null, an immediate, or a reference of the era the
//!   collection starts from, and stamps the new era on what it visited; a slot holding a stale
//!   reference (one no registered source presented at an earlier collection) or another heap's
//!   is neither traced nor rewritten, stays stale, and is refused on read;
//! - a `RootSlot`'s bits and era are read and written as one pair (a sequence lock: writers,
//!   the collector's visit included, exclude each other; readers retry across a write): a slot
//!   is `Sync` and may be written by mutators of different heaps at once, and two interleaved
//!   plain stores could leave one heap's bits with the other heap's era, a value every check
//!   of the first heap would accept.

use core::fmt;
use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};

use faultline_heap::object::ObjectRef;

/// The era counter shared by every heap of the process. Starts at 1: era 0 means "names no
/// object".
static NEXT_ERA: AtomicU64 = AtomicU64::new(1);

/// A new era, never handed out before.
pub(crate) fn next_era() -> u64 {
    NEXT_ERA.fetch_add(1, Ordering::Relaxed)
}

/// The content of a reference slot: null, a reference to an object, or a tagged immediate.
///
/// A reference is valid until its mutator's next safepoint (an allocation, `safepoint`,
/// `collect`, a native section): after a collection begins (its initial mark, in concurrent
/// mode) or moves objects (its flip) it is *stale*, and using it panics with a
/// message saying so; keep values that must survive in a [`crate::Root`], the value stack, a
/// [`crate::GlobalRoot`] or a [`RootSlot`]. Null and immediates never go stale.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Value {
    bits: usize,
    era: u64,
}

impl Value {
    /// The null value.
    pub const NULL: Value = Value { bits: 0, era: 0 };
    /// Mask of the tag bits that mark an immediate.
    pub const TAG_MASK: usize = 0b111;

    /// An immediate; `bits` must have a non-zero low tag (checked).
    pub const fn immediate(bits: usize) -> Option<Value> {
        if bits & Self::TAG_MASK == 0 {
            None
        } else {
            Some(Value { bits, era: 0 })
        }
    }
    /// A value read from a slot word in era `era` (0 for a word that is not a reference slot).
    #[inline]
    pub(crate) const fn minted(bits: usize, era: u64) -> Value {
        if bits != 0 && bits & Self::TAG_MASK == 0 {
            Value { bits, era }
        } else {
            Value { bits, era: 0 }
        }
    }
    /// Whether it holds an object reference (which may be stale).
    pub const fn is_ref(self) -> bool {
        self.bits != 0 && self.bits & Self::TAG_MASK == 0
    }
    /// Whether it is null.
    pub const fn is_null(self) -> bool {
        self.bits == 0
    }
    /// The referenced address, if it holds a reference: only an address (it may be stale);
    /// use `Mutator::local` to reach the object.
    pub const fn as_ref(self) -> Option<ObjectRef> {
        if self.is_ref() {
            ObjectRef::from_address(self.bits)
        } else {
            None
        }
    }
    /// The raw word.
    pub const fn bits(self) -> usize {
        self.bits
    }
    /// The era it was read in (0 for null and immediates, and for reference-looking words that
    /// never came from a reference slot).
    pub const fn era(self) -> u64 {
        self.era
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_null() {
            write!(f, "null")
        } else if self.is_ref() {
            write!(f, "ref@{:#x}(era {})", self.bits, self.era)
        } else {
            write!(f, "imm({:#x})", self.bits)
        }
    }
}

/// A root slot owned by an embedder's [`crate::RootSource`]: the source presents it to the
/// collector, which keeps the reference in it current; the embedder reads and writes it
/// through a mutator, with no `unsafe`.
///
/// A slot that no registered source presents is not updated by collections: reading a
/// reference from it after one panics (it is stale), as for a [`Value`]. (A collection stamps
/// a presented slot with its new era when it starts one: at a concurrent cycle's initial mark,
/// at a barrier switch, and at the flip.)
#[derive(Default)]
pub struct RootSlot {
    /// The sequence lock over `bits` and `era`: even when they form a pair, odd while a writer
    /// is between its stores (see the module invariants).
    seq: AtomicU64,
    bits: AtomicUsize,
    era: AtomicU64,
}

impl fmt::Debug for RootSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootSlot({:?})", self.peek())
    }
}

impl RootSlot {
    /// A null slot.
    pub const fn new() -> RootSlot {
        RootSlot {
            seq: AtomicU64::new(0),
            bits: AtomicUsize::new(0),
            era: AtomicU64::new(0),
        }
    }
    /// Whether it holds null.
    pub fn is_null(&self) -> bool {
        self.bits.load(Ordering::Relaxed) == 0
    }
    /// The content with the era it was stored in (checked by the mutator that reads it): a
    /// pair one write stored, never halves of two.
    #[inline]
    pub(crate) fn peek(&self) -> Value {
        loop {
            let s = self.seq.load(Ordering::Acquire);
            if s & 1 == 0 {
                let bits = self.bits.load(Ordering::Relaxed);
                let era = self.era.load(Ordering::Relaxed);
                // The data loads complete before the sequence is read again.
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == s {
                    return Value::minted(bits, era);
                }
            }
            std::hint::spin_loop();
        }
    }
    /// Take the write side of the sequence lock (other writers wait); returns the even
    /// sequence it was taken at, for [`RootSlot::unlock`].
    #[inline]
    fn lock(&self) -> u64 {
        let mut s = self.seq.load(Ordering::Relaxed);
        loop {
            if s & 1 == 0 {
                match self
                    .seq
                    .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
                {
                    // Readers that see the odd sequence retry; the data stores stay after it.
                    Ok(_) => {
                        fence(Ordering::Release);
                        return s;
                    }
                    Err(now) => s = now,
                }
            } else {
                std::hint::spin_loop();
                s = self.seq.load(Ordering::Relaxed);
            }
        }
    }
    /// Store the pair and release the write side taken at sequence `s`.
    #[inline]
    fn unlock(&self, s: u64, v: Value) {
        self.bits.store(v.bits, Ordering::Relaxed);
        self.era.store(v.era, Ordering::Relaxed);
        self.seq.store(s + 2, Ordering::Release);
    }
    /// Store a value already checked for the current era `era` of the storing heap.
    #[inline]
    pub(crate) fn put(&self, v: Value) {
        let s = self.lock();
        self.unlock(s, v);
    }
    /// The collector's visit (see the module invariants): if the slot is current in `from`
    /// (and, for a reference, `live` holds for it), `f` sees (and may rewrite) the word, and
    /// the slot is current in `to` after; otherwise it is left alone.
    pub(crate) fn visit(
        &self,
        from: u64,
        to: u64,
        live: Option<&dyn Fn(usize) -> bool>,
        f: &mut dyn FnMut(&mut usize),
    ) {
        // The whole visit under the write side: a store by a mutator of another heap (which
        // this heap's stop does not stop) comes before it or after it, never in between.
        let s = self.lock();
        let v = Value::minted(
            self.bits.load(Ordering::Relaxed),
            self.era.load(Ordering::Relaxed),
        );
        if v.is_ref() && (v.era != from || live.is_some_and(|live| !live(v.bits))) {
            self.unlock(s, v);
            return;
        }
        let mut bits = v.bits;
        f(&mut bits);
        self.unlock(s, Value::minted(bits, to));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_distinguish_refs_from_immediates() {
        assert!(Value::minted(0x1000, 7).is_ref());
        assert_eq!(Value::minted(0x1000, 7).era(), 7);
        assert!(!Value::immediate(0x1001).unwrap().is_ref());
        assert_eq!(Value::minted(0x1001, 7), Value::immediate(0x1001).unwrap());
        assert!(!Value::NULL.is_ref());
        assert_eq!(Value::minted(0, 9), Value::NULL);
        assert!(Value::immediate(8).is_none());
        assert_eq!(Value::immediate(0x11).unwrap().as_ref(), None);
    }

    #[test]
    fn eras_are_never_reused() {
        let a = next_era();
        let b = next_era();
        assert!(a != 0 && b > a);
    }

    #[test]
    fn a_root_slot_takes_the_era_of_its_visit() {
        let s = RootSlot::new();
        assert!(s.is_null());
        s.put(Value::minted(0x2000, 3));
        assert_eq!(s.peek(), Value::minted(0x2000, 3));
        s.visit(3, 4, None, &mut |w| *w += 0x1000);
        assert_eq!(s.peek(), Value::minted(0x3000, 4));
        // Not current in the era a visit starts from (stale, or another heap's): untouched.
        s.visit(9, 10, None, &mut |_| panic!("a stale slot is not visited"));
        assert_eq!(s.peek(), Value::minted(0x3000, 4));
        s.put(Value::immediate(0x11).unwrap());
        assert_eq!(s.peek().era(), 0);
    }
}

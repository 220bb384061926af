//! Value representation: how Scheme values are encoded in Faultline heap words.
//!
//! Every runtime value is one [`Value`] word. The low three bits are the tag:
//!
//! | low bits | meaning                | payload (`bits >> 3`)                                   |
//! |----------|------------------------|---------------------------------------------------------|
//! | `000`    | heap reference / null  | the object address (null = 0, never a Scheme value)     |
//! | `001`    | fixnum                 | a signed 61-bit integer                                 |
//! | `010`    | character              | a Unicode scalar value                                  |
//! | `011`    | special constant       | `#f` `#t` `()` unspecified, end-of-file, unbound        |
//! | `100`    | symbol                 | the [`SymbolId`] (symbols are interned and immortal)    |
//! | `101`    | primitive procedure    | index into the primitive table                          |
//! | `110`    | VM-internal word       | return addresses and saved base pointers on the stack    |
//!
//! Heap objects (all registered once per heap by [`Types::register`]):
//!
//! | type      | layout                                                                   |
//! |-----------|--------------------------------------------------------------------------|
//! | `pair`    | fixed, 2 reference words: car, cdr                                       |
//! | `flonum`  | fixed, 1 data word: the `f64` bits                                        |
//! | `string`  | byte array: UTF-8 text                                                    |
//! | `vector`  | reference array                                                          |
//! | `closure` | fixed: word 0 = prototype id (data), word 1 = captured frame (reference)  |
//! | `frame`   | reference array: element 0 = enclosing frame (or null), then the slots    |
//! | `thread`  | fixed, 1 data word: index into the VM's thread table                      |
//!
//! Bounds of traversals over heap data ([`list_limit`], [`MAX_DEPTH`]) are here too, next to
//! the layouts they follow from. This module depends only on [`crate::symbols`].
//!
//! Invariants:
//! - A fixnum always fits 61 bits: arithmetic that leaves the range [`FIX_MIN`]..=[`FIX_MAX`]
//!   promotes its result to a flonum (the numeric tower here is fixnum + flonum; there are no
//!   bignums or rationals). Integer literals outside the range (but within `i64`, beyond which
//!   the reader rejects them) become flonums when their constants are materialized.
//! - Null (`Value::NULL`) is never a Scheme value: in a frame slot it means "not yet assigned"
//!   (a letrec violation if read), in a global slot "unbound".
//! - VM-internal words (tag `110`) only ever appear on the VM's value stack, never in objects.

use faultline::{Heap, Layout, TypeId, TypeInfo, Value};

use crate::symbols::SymbolId;

/// Tag of a fixnum.
pub const TAG_FIX: usize = 1;
/// Tag of a character.
pub const TAG_CHAR: usize = 2;
/// Tag of the special constants.
pub const TAG_SPECIAL: usize = 3;
/// Tag of a symbol.
pub const TAG_SYM: usize = 4;
/// Tag of a primitive procedure.
pub const TAG_PRIM: usize = 5;
/// Tag of a VM-internal stack word.
pub const TAG_INTERNAL: usize = 6;

/// Smallest fixnum.
pub const FIX_MIN: i64 = -(1 << 60);
/// Largest fixnum.
pub const FIX_MAX: i64 = (1 << 60) - 1;

/// An immediate from its raw bits (the tag must be non-zero, which every caller guarantees).
pub const fn imm(bits: usize) -> Value {
    match Value::immediate(bits) {
        Some(v) => v,
        None => Value::NULL,
    }
}

/// `#f`.
pub const FALSE: Value = imm(TAG_SPECIAL);
/// `#t`.
pub const TRUE: Value = imm((1 << 3) | TAG_SPECIAL);
/// The empty list.
pub const NIL: Value = imm((2 << 3) | TAG_SPECIAL);
/// The unspecified value.
pub const UNSPEC: Value = imm((3 << 3) | TAG_SPECIAL);
/// The end-of-file object.
pub const EOF: Value = imm((4 << 3) | TAG_SPECIAL);

/// The tag of `v` (0 for references and null).
#[inline]
pub fn tag(v: Value) -> usize {
    v.bits() & Value::TAG_MASK
}

/// A boolean.
#[inline]
pub fn boolean(b: bool) -> Value {
    if b {
        TRUE
    } else {
        FALSE
    }
}

/// Whether `v` counts as true (everything but `#f`).
#[inline]
pub fn truthy(v: Value) -> bool {
    v != FALSE
}

/// A fixnum, if `n` fits.
#[inline]
pub fn fix(n: i64) -> Option<Value> {
    (FIX_MIN..=FIX_MAX)
        .contains(&n)
        .then(|| imm(((n as usize) << 3) | TAG_FIX))
}

/// Whether `v` is a fixnum.
#[inline]
pub fn is_fix(v: Value) -> bool {
    tag(v) == TAG_FIX
}

/// The integer of a fixnum (meaningless for other values).
#[inline]
pub fn unfix(v: Value) -> i64 {
    (v.bits() as i64) >> 3
}

/// A character.
#[inline]
pub fn character(c: char) -> Value {
    imm(((c as usize) << 3) | TAG_CHAR)
}

/// The character of a character value.
#[inline]
pub fn as_char(v: Value) -> Option<char> {
    (tag(v) == TAG_CHAR)
        .then(|| char::from_u32((v.bits() >> 3) as u32))
        .flatten()
}

/// A symbol.
#[inline]
pub fn symbol(id: SymbolId) -> Value {
    imm(((id.0 as usize) << 3) | TAG_SYM)
}

/// The id of a symbol value.
#[inline]
pub fn as_symbol(v: Value) -> Option<SymbolId> {
    (tag(v) == TAG_SYM).then(|| SymbolId((v.bits() >> 3) as u32))
}

/// A primitive procedure.
#[inline]
pub fn prim(index: usize) -> Value {
    imm((index << 3) | TAG_PRIM)
}

/// The index of a primitive.
#[inline]
pub fn as_prim(v: Value) -> Option<usize> {
    (tag(v) == TAG_PRIM).then(|| v.bits() >> 3)
}

/// A VM-internal stack word carrying `n`.
#[inline]
pub fn internal(n: usize) -> Value {
    imm((n << 3) | TAG_INTERNAL)
}

/// The payload of a VM-internal word.
#[inline]
pub fn as_internal(v: Value) -> usize {
    v.bits() >> 3
}

/// More pairs than this cannot exist in `heap` (a pair takes 16 bytes): a traversal of a list
/// longer than this has met a cycle.
pub fn list_limit(heap: &Heap) -> usize {
    let c = heap.config();
    (c.max_heap_bytes + c.large_object_space_bytes) / 16 + 16
}

/// Depth limit of recursive traversals of heap data (`equal?`, printing).
pub const MAX_DEPTH: usize = 10_000;

/// The heap types of the runtime, registered once per heap.
#[derive(Clone, Copy, Debug)]
pub struct Types {
    /// Pairs.
    pub pair: TypeId,
    /// Flonums.
    pub flonum: TypeId,
    /// Strings.
    pub string: TypeId,
    /// Vectors.
    pub vector: TypeId,
    /// Closures.
    pub closure: TypeId,
    /// Activation frames.
    pub frame: TypeId,
    /// Threads (`spawn` results).
    pub thread: TypeId,
    /// The layouts of the types the interpreter's hot paths touch, for checked-once access
    /// (`Mutator::obj`): the type check of an access is one header compare. Their reference
    /// slots are checked once here, so the interpreter's `unsafe` unchecked accessors
    /// (`Obj::get_unchecked`, `Obj::set_unchecked`) can rely on them.
    pub lay: Layouts,
}

/// Layouts of the runtime's types (see [`Types::lay`]).
#[derive(Clone, Copy, Debug)]
pub struct Layouts {
    /// Pairs: payload words 0 (car) and 1 (cdr), both reference slots.
    pub pair: Layout,
    /// Flonums: payload word 0, data.
    pub flonum: Layout,
    /// Vectors: reference arrays.
    pub vector: Layout,
    /// Closures: word 0 the prototype id (data), word 1 the captured frame (reference).
    pub closure: Layout,
    /// Frames: reference arrays, element 0 the enclosing frame.
    pub frame: Layout,
}

impl Types {
    /// Registers the runtime's types in `heap`.
    pub fn register(heap: &Heap) -> Result<Types, String> {
        let reg = |info: TypeInfo| heap.register_type(info).map_err(|e| format!("{e:?}"));
        let pair = reg(TypeInfo::fixed("pair", 16, &[0, 8]))?;
        let flonum = reg(TypeInfo::fixed("flonum", 8, &[]))?;
        let string = reg(TypeInfo::byte_array("string"))?;
        let vector = reg(TypeInfo::ref_array("vector"))?;
        let closure = reg(TypeInfo::fixed("closure", 16, &[8]))?;
        let frame = reg(TypeInfo::ref_array("frame"))?;
        let thread = reg(TypeInfo::fixed("thread", 8, &[]))?;
        let layout = |ty| {
            heap.layout(ty)
                .ok_or_else(|| format!("no layout for the registered type {ty:?}"))
        };
        let lay = Layouts {
            pair: layout(pair)?,
            flonum: layout(flonum)?,
            vector: layout(vector)?,
            closure: layout(closure)?,
            frame: layout(frame)?,
        };
        // The facts the interpreter's unchecked accesses rely on (their SAFETY comments cite
        // this check): a pair's words 0 and 1 and a closure's word 1 are reference slots, and
        // every element of a frame is.
        let (l, c, f) = (&lay.pair, &lay.closure, &lay.frame);
        if !(l.is_ref_word(0) && l.is_ref_word(1) && c.is_ref_word(1) && f.is_ref_word(0)) {
            return Err("the runtime's layouts do not have their reference slots".into());
        }
        Ok(Types {
            pair,
            flonum,
            string,
            vector,
            closure,
            frame,
            thread,
            lay,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixnum_range_and_tags() {
        assert_eq!(unfix(fix(FIX_MAX).unwrap()), FIX_MAX);
        assert_eq!(unfix(fix(FIX_MIN).unwrap()), FIX_MIN);
        assert_eq!(unfix(fix(-5).unwrap()), -5);
        assert!(fix(FIX_MAX + 1).is_none());
        assert!(fix(FIX_MIN - 1).is_none());
        for v in [
            FALSE,
            TRUE,
            NIL,
            UNSPEC,
            EOF,
            character('λ'),
            prim(3),
            internal(9),
        ] {
            assert!(!v.is_ref() && !v.is_null());
        }
        assert_eq!(as_char(character('λ')), Some('λ'));
        assert_eq!(as_symbol(symbol(SymbolId(77))), Some(SymbolId(77)));
        assert_eq!(as_prim(prim(12)), Some(12));
        assert_eq!(as_internal(internal(123456)), 123456);
        assert!(truthy(NIL) && !truthy(FALSE));
    }
}

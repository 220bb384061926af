//! The mock runtime's object types, shared by the benches that build structures: 32-byte
//! tree nodes, 24-byte pairs, reference arrays, and tagged fixnums for data stored in
//! reference slots.
//!
//! Invariant: the layouts (and names) are those the benches registered before they shared
//! this module, so heaps built with them are byte for byte the same.

use faultline::{Heap, TypeId, TypeInfo, Value};

/// Bytes of a node: header, two reference slots (left/next, right/other), one data word.
pub const NODE_BYTES: usize = 32;
/// Bytes of a pair: header, car, cdr (both reference slots).
pub const PAIR_BYTES: usize = 24;

/// Register the node type (`"node"`: 24 payload bytes, references at 0 and 8).
pub fn node_type(heap: &Heap) -> TypeId {
    heap.register_type(TypeInfo::fixed("node", 24, &[0, 8]))
        .expect("node type")
}

/// Register the pair type (`"pair"`: 16 payload bytes, references at 0 and 8).
pub fn pair_type(heap: &Heap) -> TypeId {
    heap.register_type(TypeInfo::fixed("pair", 16, &[0, 8]))
        .expect("pair type")
}

/// Register a reference-array type named `name`.
pub fn ref_array_type(heap: &Heap, name: &str) -> TypeId {
    heap.register_type(TypeInfo::ref_array(name))
        .expect("ref array type")
}

/// `n` as a tagged fixnum (an immediate, not a reference).
pub fn fix(n: u64) -> Value {
    Value::immediate(((n as usize) << 3) | 1).expect("a tagged fixnum")
}

/// The number a [`fix`] value holds.
pub fn unfix(v: Value) -> u64 {
    (v.bits() >> 3) as u64
}

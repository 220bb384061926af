//! Embedder root tables: the global variables and the materialized constants of the program.
//!
//! A [`SlotTable`] is an append-only, lock-free table of root slots ([`RootSlot`]s, read and
//! written through a mutator, which checks every value), registered with the heap as a
//! [`RootSource`]. Slots live in chunks
//! allocated on first write and never freed or moved, so a slot index stays valid for the life
//! of the table and readers need no lock.
//!
//! Invariants:
//! - A slot only ever holds a valid [`Value`] (stored by [`SlotTable::set`]) or null
//!   ("unbound" / "not yet materialized"); the collector, which scans the table while every
//!   mutator is stopped, rewrites reference slots to the objects' new addresses.
//! - Mutators read and write slots with relaxed atomics; the collector's updates are ordered
//!   before a mutator's next read by the safepoint handshake (a mutex), so a value read after a
//!   safepoint is current (and the mutator's check of the slot's era proves it).

use std::sync::OnceLock;

use faultline::{Mutator, RootSlot, RootSource, Value};

const CHUNK_BITS: usize = 10;
const CHUNK: usize = 1 << CHUNK_BITS;
/// Number of chunks: the table holds at most `CHUNK * MAX_CHUNKS` (about a million) slots.
const MAX_CHUNKS: usize = 1024;

/// Maximum number of slots a table can hold.
pub const MAX_SLOTS: usize = CHUNK * MAX_CHUNKS;

/// A chunked, append-only table of root slots.
pub struct SlotTable {
    chunks: Box<[OnceLock<Box<[RootSlot]>>]>,
}

impl Default for SlotTable {
    fn default() -> Self {
        SlotTable {
            chunks: (0..MAX_CHUNKS).map(|_| OnceLock::new()).collect(),
        }
    }
}

impl std::fmt::Debug for SlotTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let used = self.chunks.iter().filter(|c| c.get().is_some()).count();
        write!(f, "SlotTable({used} chunks)")
    }
}

impl SlotTable {
    /// The value in slot `i` (null if it was never set), read by `m`.
    #[inline]
    pub fn get(&self, m: &Mutator, i: usize) -> Value {
        match self.chunks.get(i >> CHUNK_BITS).and_then(OnceLock::get) {
            Some(chunk) => m.load(&chunk[i & (CHUNK - 1)]),
            None => Value::NULL,
        }
    }

    /// Stores `v` in slot `i` through `m`. Returns false if `i` is beyond [`MAX_SLOTS`].
    pub fn set(&self, m: &Mutator, i: usize, v: Value) -> bool {
        let Some(cell) = self.chunks.get(i >> CHUNK_BITS) else {
            return false;
        };
        let chunk = cell.get_or_init(|| (0..CHUNK).map(|_| RootSlot::new()).collect());
        m.store(&chunk[i & (CHUNK - 1)], v);
        true
    }
}

impl RootSource for SlotTable {
    fn for_each_root(&self, visit: &mut dyn FnMut(&RootSlot)) {
        for chunk in self.chunks.iter().filter_map(OnceLock::get) {
            for slot in chunk.iter() {
                if !slot.is_null() {
                    visit(slot);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{fix, unfix};

    #[test]
    fn slots_start_null_and_keep_values() {
        let heap = faultline::Heap::new(faultline::HeapConfig::with_heap_size(1 << 20)).unwrap();
        let m = heap.attach();
        let t = SlotTable::default();
        assert!(t.get(&m, 5).is_null());
        assert!(t.get(&m, MAX_SLOTS + 10).is_null());
        assert!(t.set(&m, 5, fix(42).unwrap()));
        assert!(t.set(&m, 70_000, fix(-1).unwrap()));
        assert!(!t.set(&m, MAX_SLOTS, fix(1).unwrap()));
        assert_eq!(unfix(t.get(&m, 5)), 42);
        assert_eq!(unfix(t.get(&m, 70_000)), -1);
        let mut n = 0;
        t.for_each_root(&mut |_| n += 1);
        assert_eq!(n, 2);
    }
}

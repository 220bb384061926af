//! Shared, append-only storage behind the type registry's snapshots
//! ([`crate::object::TypeRegistry`]).
//!
//! A [`Snapshot`] is a pointer to each of two columns' buffers and a length: cloning one copies
//! four words, so a heap publishes a new snapshot per registered type without copying the types
//! before it (until s14 each registration copied the whole registry and every copy was kept:
//! memory quadratic in the number of types).
//!
//! Invariants:
//! - a column's buffers are `Vec`s whose capacity is fixed when they are made: an entry is
//!   pushed only below the capacity, so a buffer never reallocates; no buffer is moved, shrunk
//!   or freed while its store lives (a full buffer is retired, kept until the store drops, and
//!   a buffer of twice its capacity holding copies of its entries takes over: total memory at
//!   most about twice the entries');
//! - an entry, once pushed, is never written again, so entries `[0, len)` of every buffer
//!   (current or retired) hold the store's first `len` entries;
//! - entries are pushed with the store's mutex held, and a snapshot's pointers and length are
//!   taken under that mutex after its entries were written; a snapshot reaches another thread
//!   only through something that synchronises (a lock, an `Arc` handed over, a thread spawn),
//!   so its entries happen-before every read through it. Readers take no lock and allocate
//!   nothing (a fault handler in signal context may read a snapshot);
//! - a snapshot holds an `Arc` of its store, so its buffers outlive it;
//! - a snapshot whose store has grown past it (another snapshot of the same store pushed
//!   first) moves to a store of its own before it pushes: snapshots behave as values.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The first buffer's capacity.
const FIRST_CAPACITY: usize = 16;

/// One column: the buffer pushed into and the full ones before it.
struct Column<T> {
    current: Vec<T>,
    retired: Vec<Vec<T>>,
}

impl<T: Clone> Column<T> {
    fn new() -> Self {
        Column {
            current: Vec::with_capacity(FIRST_CAPACITY),
            retired: Vec::new(),
        }
    }

    /// Make room for one more entry in the current buffer without moving any entry already
    /// pushed (a full buffer is retired, not freed).
    fn make_room(&mut self) {
        if self.current.len() == self.current.capacity() {
            let mut next = Vec::with_capacity(2 * self.current.capacity().max(FIRST_CAPACITY));
            next.extend_from_slice(&self.current);
            self.retired
                .push(std::mem::replace(&mut self.current, next));
        }
    }
}

/// Both columns, pushed in step.
struct Columns<A, B> {
    a: Column<A>,
    b: Column<B>,
}

impl<A: Clone, B: Clone> Columns<A, B> {
    fn new() -> Self {
        Columns {
            a: Column::new(),
            b: Column::new(),
        }
    }

    fn len(&self) -> usize {
        self.a.current.len()
    }

    /// Push `(a, b)`: room is made in both columns first (where a clone may panic, leaving
    /// both as they were), then both pushes are below capacity (no reallocation, no panic).
    fn push(&mut self, a: A, b: B) {
        self.a.make_room();
        self.b.make_room();
        self.a.current.push(a);
        self.b.current.push(b);
    }
}

/// The storage shared by the snapshots made from one another.
struct Store<A, B> {
    columns: Mutex<Columns<A, B>>,
}

impl<A: Clone, B: Clone> Store<A, B> {
    fn lock(&self) -> MutexGuard<'_, Columns<A, B>> {
        // A push never stops halfway through (`Columns::push`): a poisoned lock holds
        // consistent columns.
        self.columns.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A view of the first `len` entries of a store's two columns.
pub(crate) struct Snapshot<A, B> {
    store: Arc<Store<A, B>>,
    a: *const A,
    b: *const B,
    len: usize,
}

impl<A, B> Clone for Snapshot<A, B> {
    fn clone(&self) -> Self {
        Snapshot {
            store: self.store.clone(),
            a: self.a,
            b: self.b,
            len: self.len,
        }
    }
}

// SAFETY: a snapshot reads `&A` and `&B` entries (shared, never written: see the module
// invariants) and holds an `Arc` of a store that owns them, pushes to it under its mutex and
// drops it on whichever thread drops the last snapshot: sound to send or share when the entries
// may be sent and shared.
unsafe impl<A: Send + Sync, B: Send + Sync> Send for Snapshot<A, B> {}
// SAFETY: as for `Send`: `&Snapshot` gives only shared reads of immutable entries.
unsafe impl<A: Send + Sync, B: Send + Sync> Sync for Snapshot<A, B> {}

impl<A: Clone, B: Clone> Snapshot<A, B> {
    /// A new store holding `(a, b)` as entry 0, and its snapshot.
    pub(crate) fn new(a: A, b: B) -> Self {
        let mut columns = Columns::new();
        columns.push(a, b);
        Self::of(Arc::new(Store {
            columns: Mutex::new(columns),
        }))
    }

    /// The snapshot of all of `store`'s entries.
    fn of(store: Arc<Store<A, B>>) -> Self {
        let (a, b, len) = {
            let g = store.lock();
            (g.a.current.as_ptr(), g.b.current.as_ptr(), g.len())
        };
        Snapshot { store, a, b, len }
    }

    /// Number of entries.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first column's entries.
    #[inline]
    pub(crate) fn a(&self) -> &[A] {
        // SAFETY: `self.a` points to a buffer of the store `self` keeps alive, taken under the
        // store's mutex when it held at least `self.len` entries; those entries are never
        // written, moved or freed while the store lives, and were written before this snapshot
        // was made, which happens-before any read through it (module invariants).
        unsafe { std::slice::from_raw_parts(self.a, self.len) }
    }

    /// The second column's entries.
    #[inline]
    pub(crate) fn b(&self) -> &[B] {
        // SAFETY: as in `a`.
        unsafe { std::slice::from_raw_parts(self.b, self.len) }
    }

    /// Append `(a, b)` as entry `self.len()` and take it into this snapshot (other snapshots
    /// do not change). If the store already holds more entries than this snapshot (another
    /// snapshot pushed first), this snapshot first moves to a new store holding copies of its
    /// own entries.
    pub(crate) fn push(&mut self, a: A, b: B) {
        let mut g = self.store.lock();
        if g.len() != self.len {
            drop(g);
            let mut own = Columns::new();
            for (x, y) in self.a().iter().zip(self.b()) {
                own.push(x.clone(), y.clone());
            }
            *self = Self::of(Arc::new(Store {
                columns: Mutex::new(own),
            }));
            // The new store is this snapshot's alone (it was just made and `self` is borrowed
            // mutably): nothing can push to it in between.
            g = self.store.lock();
        }
        g.push(a, b);
        let (pa, pb, len) = (g.a.current.as_ptr(), g.b.current.as_ptr(), g.len());
        drop(g);
        self.a = pa;
        self.b = pb;
        self.len = len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_snapshots_keep_their_entries_while_the_store_grows() {
        // (Fewer under Miri, which runs these tests to check the module's unsafe code.)
        let n: u64 = if cfg!(miri) { 100 } else { 1000 };
        let mut s = Snapshot::new(0u64, String::from("0"));
        let mut kept = vec![s.clone()];
        for i in 1..n {
            s.push(i, i.to_string());
            kept.push(s.clone());
        }
        for (n, k) in kept.iter().enumerate() {
            assert_eq!(k.len(), n + 1);
            assert!(k.a().iter().enumerate().all(|(i, &v)| v == i as u64));
            assert!(k.b().iter().enumerate().all(|(i, v)| *v == i.to_string()));
        }
        // The columns hold every entry at most about twice (current + retired buffers).
        let g = s.store.lock();
        let held: usize =
            g.a.retired.iter().map(Vec::capacity).sum::<usize>() + g.a.current.capacity();
        assert!(held <= 4 * n as usize, "{held} slots for {n} entries");
    }

    #[test]
    fn a_snapshot_behind_its_store_pushes_into_a_copy() {
        let mut a = Snapshot::new(0u32, 0u32);
        a.push(1, 10);
        let mut b = a.clone();
        let mut c = a.clone();
        b.push(2, 20);
        c.push(3, 30);
        assert_eq!(a.a(), &[0, 1]);
        assert_eq!(b.a(), &[0, 1, 2]);
        assert_eq!(b.b(), &[0, 10, 20]);
        assert_eq!(c.a(), &[0, 1, 3]);
        assert_eq!(c.b(), &[0, 10, 30]);
        assert!(!Arc::ptr_eq(&b.store, &c.store));
    }

    #[test]
    fn readers_on_other_threads_see_whole_entries_while_the_store_grows() {
        let current = std::sync::Mutex::new(Snapshot::new(0u64, vec![0u64]));
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..if cfg!(miri) { 20 } else { 200 } {
                        let snap = current.lock().unwrap().clone();
                        for (i, (&a, b)) in snap.a().iter().zip(snap.b()).enumerate() {
                            assert_eq!(a, i as u64);
                            assert_eq!(b, &vec![i as u64; 1 + i % 3]);
                        }
                    }
                });
            }
            for i in 1..if cfg!(miri) { 40 } else { 200u64 } {
                let mut next = current.lock().unwrap().clone();
                next.push(i, vec![i; 1 + i as usize % 3]);
                *current.lock().unwrap() = next;
            }
        });
    }
}

//! Identity hash codes that stay the same when objects move, without a hash word in every
//! object: a side table from the current address of each object that was ever asked for its
//! hash to that hash.
//!
//! Cost: nothing for objects never hashed; a table entry (about 16 bytes plus the map's
//! overhead) per hashed live object; a lookup under one mutex per `identity_hash` call; and at
//! every flip, one pass over the table inside the pause (entries of dead objects dropped, the
//! others re-keyed by their new address).
//!
//! Invariants:
//! - the table is keyed by current addresses: it is rewritten only while the world is stopped,
//!   in the same pause (and with the same forwarding) as the roots; mutators touch it only while
//!   running, and never across a safepoint, so the pause never waits on its lock;
//! - a hash, once handed out for an object, is returned for that object until it dies; hashes
//!   come from a per-heap counter mixed by a bijection, so two objects alive together in one
//!   heap never share one.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// The side table of one heap.
#[derive(Default, Debug)]
pub(crate) struct IdentityHashes {
    inner: Mutex<Table>,
}

#[derive(Default, Debug)]
struct Table {
    by_addr: HashMap<usize, u64>,
    /// An empty map kept for the next re-keying (its capacity reused: the pause allocates
    /// nothing once the table's size is steady).
    spare: HashMap<usize, u64>,
    next: u64,
}

/// splitmix64's finalizer: a bijection on u64, so distinct counters give distinct hashes.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl IdentityHashes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The hash of the object at `addr` (its current address), assigned on first request.
    pub(crate) fn get(&self, addr: usize) -> u64 {
        let mut t = self.lock();
        if let Some(&h) = t.by_addr.get(&addr) {
            return h;
        }
        let h = mix(t.next);
        t.next += 1;
        t.by_addr.insert(addr, h);
        h
    }

    /// At a flip (world stopped): keep the entries of survivors under their new address
    /// (`moved(addr)` is `Some(new address)` for a live object, `None` for a dead one).
    /// Returns the number of entries kept.
    pub(crate) fn rekey(&self, mut moved: impl FnMut(usize) -> Option<usize>) -> usize {
        let mut t = self.lock();
        if t.by_addr.is_empty() {
            return 0;
        }
        let spare = std::mem::take(&mut t.spare);
        let mut old = std::mem::replace(&mut t.by_addr, spare);
        t.by_addr.reserve(old.len());
        for (a, h) in old.drain() {
            if let Some(n) = moved(a) {
                t.by_addr.insert(n, h);
            }
        }
        t.spare = old;
        t.by_addr.len()
    }

    /// Number of hashed objects.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().by_addr.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_follow_moves_and_die_with_their_objects() {
        let t = IdentityHashes::default();
        let a = t.get(0x1000);
        let b = t.get(0x2000);
        assert_ne!(a, b);
        assert_eq!(t.get(0x1000), a);
        // 0x1000 moves to 0x8000; 0x2000 dies.
        assert_eq!(t.rekey(|x| (x == 0x1000).then_some(0x8000)), 1);
        assert_eq!(t.get(0x8000), a);
        assert_eq!(t.len(), 1);
        // A new object at a dead one's address gets a new hash.
        assert_ne!(t.get(0x2000), b);
    }
}

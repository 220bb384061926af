//! Weak references, ephemerons and finalization queues: the references the collector does not
//! trace, and what it does with them when it finds their targets dead.
//!
//! # Representation
//!
//! A *weak box* is a small heap object of a built-in type (`faultline.weak-box`, registered
//! when the heap is created, so it is type 1 and embedders' types start at 2) whose one payload word is an index into the heap's **weak table** (this module's
//! [`WeakTables`], kept outside the heap). Entry `i` holds the box's address, a *key* and a
//! *value*:
//! - a weak reference ([`crate::Mutator::new_weak`]) is an entry with a key (the referent) and
//!   no value;
//! - an ephemeron ([`crate::Mutator::new_ephemeron`]) has both: the value is kept alive only
//!   while both the box and the key are alive.
//!
//! The box holds its index as plain data, so the tracer, the planner and the compactor see an
//! ordinary object without references: nothing in the moving machinery knows about weak
//! references. A box is valid only if its table entry names it back (a forged index is refused
//! with a panic). A *finalization registration* ([`FinalizationQueue::register`]) is a table
//! record `(target, held, queue)`: the target is weak, the held value strong (a root) until it
//! is delivered.
//!
//! # When references are cleared (both collectors)
//!
//! Clearing happens in exactly one place: [`WeakTables::sweep`], called by the flip with the
//! world stopped, after marking (ephemerons included) is complete and before any reference is
//! rewritten. For every entry: a dead box frees the entry; a dead key clears key and value
//! (counted); a live one is forwarded to its new address. For every registration whose target
//! is dead, the held value moves to its queue (post-mortem: the target itself is never
//! reachable again, nothing is resurrected). The decision "dead" and the clearing happen in the
//! same pause, so no mutator can read a referent that was decided dead.
//!
//! # The keep-alive barrier (concurrent marking)
//!
//! Reading a key or value out of the table while concurrent marking runs
//! ([`crate::marking::MarkingState::active`]) logs the reference into the mutator's SATB
//! buffer, as the deletion barrier does: the remark shades it, so an object the mutator just
//! obtained from a weak reference is live in this cycle (in both barrier modes: the remark
//! drains every mutator's buffer). Creating a weak box or ephemeron during marking logs its key
//! and value the same way. An object that was unreachable at the snapshot and is read through a
//! weak reference before the remark is thereby kept (it is "floating"); one that is not read is
//! cleared at this cycle's flip.
//!
//! # Ephemerons: fix-point marking
//!
//! [`WeakTables::ephemeron_fixpoint`] repeats: find the entries whose box and key are marked
//! and whose value is not; mark and trace from those values; until a round finds none. The
//! concurrent collector runs it once concurrently after marking (most values get marked off
//! the pause) and again, to completion, in the remark pause after the remark's trace; the
//! stop-the-world collector runs it after its trace. Its cost in the pause is O(rounds x
//! pending ephemerons) table work plus tracing what only ephemeron values reach (rounds is at
//! most the length of the longest key-to-value chain, +1).
//!
//! Invariants:
//! - every box, key, value, target and held word in the table is 0, a non-reference word, or
//!   the address of an object of the current half or the large-object space, current in the
//!   heap's era (the flip rewrites them in the same pause as the roots);
//! - keys and values of entries whose box is dead are never traced; held values are roots
//!   (visited with the heap's roots, [`WeakTables::visit_strong`]);
//! - the table's mutex is never held across a safepoint, a heap access that may fault, or a
//!   root visit; the collector takes it only with the world stopped, or (the concurrent
//!   ephemeron pass) briefly to copy the entries out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use faultline_heap::bitmap::Bitmap;
use faultline_heap::object::{TypeId, WORD};

use crate::space::LargeSpace;

/// The name the weak-box type is registered under.
pub(crate) const BOX_TYPE_NAME: &str = "faultline.weak-box";

/// The first type id an embedder's registration gets: below it are the filler (0) and the
/// weak-box type (1, registered first by `Heap::new`), which `Mutator::alloc` and
/// `Mutator::alloc_pinned` refuse (a box made without its table entry would be refused on
/// every use).
pub(crate) const FIRST_EMBEDDER_TYPE: u32 = 2;

/// Whether `a` looks like an object reference (non-zero, low tag bits clear).
#[inline]
pub(crate) fn is_ref(a: usize) -> bool {
    a != 0 && a.is_multiple_of(WORD)
}

/// One weak-table entry. `boxa == 0`: free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The weak box's address.
    pub boxa: usize,
    /// The weak referent (ephemeron key); 0 once cleared.
    pub key: usize,
    /// The ephemeron value (0 for a weak reference); 0 once cleared.
    pub value: usize,
    /// An ephemeron (else a weak reference).
    pub ephemeron: bool,
}

/// A finalization registration.
#[derive(Debug, Clone, Copy)]
struct Registration {
    target: usize,
    held: usize,
    queue: u64,
}

/// Weak processing counts: per cycle ([`crate::CycleStats::weak`]) or totals over the heap's
/// life ([`crate::Heap::weak_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WeakStats {
    /// Weak references cleared because their referent was found dead.
    pub weak_cleared: u64,
    /// Ephemerons cleared (key and value) because their key was found dead.
    pub ephemerons_cleared: u64,
    /// Held values queued because their finalization target was found dead.
    pub finalized: u64,
    /// Table entries freed because their weak box itself was found dead.
    pub boxes_freed: u64,
    /// Ephemeron fix-point rounds that marked something (in the pause and, concurrent mode,
    /// before it).
    pub ephemeron_rounds: u64,
    /// Ephemeron values marked because their key was found live.
    pub ephemeron_values_marked: u64,
    /// Table entries in use after the cycle (weak references and ephemerons).
    pub entries: u64,
    /// Finalization registrations pending after the cycle.
    pub registrations: u64,
    /// Time spent on weak processing with the world stopped (the ephemeron fix-point in the
    /// pause and the sweep).
    pub pause_time: Duration,
}

impl WeakStats {
    fn add(&mut self, o: &WeakStats) {
        self.weak_cleared += o.weak_cleared;
        self.ephemerons_cleared += o.ephemerons_cleared;
        self.finalized += o.finalized;
        self.boxes_freed += o.boxes_freed;
        self.ephemeron_rounds += o.ephemeron_rounds;
        self.ephemeron_values_marked += o.ephemeron_values_marked;
        self.entries = o.entries;
        self.registrations = o.registrations;
        self.pause_time += o.pause_time;
    }
}

/// What the table holds (behind [`WeakTables`]'s mutex).
#[derive(Default)]
pub(crate) struct Tables {
    entries: Vec<Entry>,
    free: Vec<u32>,
    /// Registrations by token.
    regs: HashMap<u64, Registration>,
    /// Delivered held values not yet taken, by queue.
    queues: HashMap<u64, Vec<usize>>,
    next_token: u64,
}

/// The heap's weak table, finalization registrations and queues (see the module documentation).
#[derive(Default)]
pub(crate) struct WeakTables {
    t: Mutex<Tables>,
    /// The weak-box type (registered when the heap is created; `None` only in unit tests).
    pub box_type: Option<TypeId>,
    next_queue: AtomicU64,
    /// The running cycle's counts so far (the fix-point's), completed by the sweep.
    cycle: Mutex<WeakStats>,
    /// Totals over the heap's life.
    totals: Mutex<WeakStats>,
}

/// Which objects marking found live, for weak processing.
pub(crate) struct Liveness<'a> {
    /// Base of the moving space's current half.
    pub from: usize,
    /// Objects in `[limit, top)` were allocated during marking: live (black).
    pub limit: usize,
    /// End of the range of the current half that may hold objects.
    pub top: usize,
    /// The mark bitmap over `[from, limit)`.
    pub mark: &'a Bitmap,
    /// The large-object space and its marks.
    pub large: &'a LargeSpace,
}

impl Liveness<'_> {
    /// Whether `a` is live: non-references always are; objects by their mark.
    #[inline]
    pub(crate) fn is_live(&self, a: usize) -> bool {
        if !is_ref(a) {
            return true;
        }
        if a >= self.from && a < self.top {
            a >= self.limit || self.mark.get((a - self.from) / WORD)
        } else if self.large.contains(a) {
            self.large.marks.get(self.large.page_of(a))
        } else {
            true
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl WeakTables {
    /// An empty table whose boxes have type `box_type`.
    pub(crate) fn new(box_type: TypeId) -> WeakTables {
        WeakTables {
            box_type: Some(box_type),
            ..WeakTables::default()
        }
    }

    /// The table's lock, for fork's *prepare* to hold across the fork (`crate::fork`): a
    /// `FinalizationQueue` is used (and dropped) by any thread, native mutators' included,
    /// which *prepare* does not wait for.
    pub(crate) fn lock_for_fork(&self) -> MutexGuard<'_, Tables> {
        lock(&self.t)
    }

    /// Add an entry for the box at `boxa`; returns its index (to store in the box).
    pub(crate) fn insert(&self, e: Entry) -> u64 {
        let mut t = lock(&self.t);
        match t.free.pop() {
            Some(i) => {
                t.entries[i as usize] = e;
                u64::from(i)
            }
            None => {
                t.entries.push(e);
                (t.entries.len() - 1) as u64
            }
        }
    }

    /// Entry `index`, if it belongs to the box at `boxa`.
    pub(crate) fn entry(&self, index: u64, boxa: usize) -> Option<Entry> {
        let t = lock(&self.t);
        let e = *t.entries.get(usize::try_from(index).ok()?)?;
        (e.boxa == boxa && boxa != 0).then_some(e)
    }

    /// A new queue id.
    pub(crate) fn new_queue(&self) -> u64 {
        let q = self.next_queue.fetch_add(1, Ordering::Relaxed) + 1;
        lock(&self.t).queues.insert(q, Vec::new());
        q
    }

    /// Forget queue `q`: its registrations and undelivered values (its handle was dropped).
    pub(crate) fn drop_queue(&self, q: u64) {
        let mut t = lock(&self.t);
        t.queues.remove(&q);
        t.regs.retain(|_, r| r.queue != q);
    }

    /// Register `target` (a reference) with `held` on queue `q`; returns the token.
    pub(crate) fn register(&self, q: u64, target: usize, held: usize) -> u64 {
        let mut t = lock(&self.t);
        t.next_token += 1;
        let token = t.next_token;
        t.regs.insert(
            token,
            Registration {
                target,
                held,
                queue: q,
            },
        );
        token
    }

    /// Remove registration `token` of queue `q` if it is still pending.
    pub(crate) fn unregister(&self, q: u64, token: u64) -> bool {
        let mut t = lock(&self.t);
        match t.regs.get(&token) {
            Some(r) if r.queue == q => {
                t.regs.remove(&token);
                true
            }
            _ => false,
        }
    }

    /// Take the values delivered to queue `q`.
    pub(crate) fn take(&self, q: u64) -> Vec<usize> {
        lock(&self.t)
            .queues
            .get_mut(&q)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// `(delivered and not taken, registrations pending)` of queue `q`.
    pub(crate) fn queue_counts(&self, q: u64) -> (usize, usize) {
        let t = lock(&self.t);
        (
            t.queues.get(&q).map_or(0, Vec::len),
            t.regs.values().filter(|r| r.queue == q).count(),
        )
    }

    /// Visit the strong slots: every pending registration's held value and every delivered
    /// value not yet taken (roots: `f` may rewrite them). The world is stopped.
    pub(crate) fn visit_strong(&self, f: &mut dyn FnMut(&mut usize)) {
        let mut t = lock(&self.t);
        let t = &mut *t;
        for r in t.regs.values_mut() {
            f(&mut r.held);
        }
        for q in t.queues.values_mut() {
            for v in q.iter_mut() {
                f(v);
            }
        }
    }

    /// The entries in use, with their indices (verification).
    pub(crate) fn entries(&self) -> Vec<(usize, Entry)> {
        lock(&self.t)
            .entries
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, e)| e.boxa != 0)
            .collect()
    }

    /// The pending registrations' targets (verification).
    pub(crate) fn targets(&self) -> Vec<usize> {
        lock(&self.t).regs.values().map(|r| r.target).collect()
    }

    /// Whether any ephemeron has a value to decide (a cheap test before the fix-point).
    pub(crate) fn has_ephemerons(&self) -> bool {
        lock(&self.t)
            .entries
            .iter()
            .any(|e| e.ephemeron && e.boxa != 0 && is_ref(e.value))
    }

    /// Ephemeron fix-point: while some entry's box and key are live and its value is not,
    /// hand those values to `mark` (which marks and traces from them). `in_pause`: count the
    /// time as pause time. Returns the rounds that marked something.
    pub(crate) fn ephemeron_fixpoint(
        &self,
        live: &Liveness<'_>,
        in_pause: bool,
        mut mark: impl FnMut(&[usize]),
    ) -> u64 {
        let t0 = Instant::now();
        let mut pending: Vec<(usize, usize, usize)> = lock(&self.t)
            .entries
            .iter()
            .filter(|e| e.ephemeron && e.boxa != 0 && is_ref(e.value))
            .map(|e| (e.boxa, e.key, e.value))
            .collect();
        let (mut rounds, mut values) = (0u64, 0u64);
        let mut ready = Vec::new();
        loop {
            ready.clear();
            pending.retain(|&(b, k, v)| {
                if live.is_live(v) {
                    false
                } else if live.is_live(b) && live.is_live(k) {
                    ready.push(v);
                    false
                } else {
                    true
                }
            });
            if ready.is_empty() {
                break;
            }
            rounds += 1;
            values += ready.len() as u64;
            mark(&ready);
        }
        let mut c = lock(&self.cycle);
        c.ephemeron_rounds += rounds;
        c.ephemeron_values_marked += values;
        if in_pause {
            c.pause_time += t0.elapsed();
        }
        rounds
    }

    /// The flip's weak processing (world stopped, marking complete, before objects move):
    /// free the entries of dead boxes, clear dead keys (and their values), queue the held
    /// values of dead targets, and rewrite everything else with `forward`. Held and queued
    /// values are roots: the flip's root visit has already forwarded them. Returns the cycle's
    /// counts (and adds them to the totals).
    pub(crate) fn sweep(&self, live: &Liveness<'_>, forward: impl Fn(usize) -> usize) -> WeakStats {
        let t0 = Instant::now();
        let mut s = std::mem::take(&mut *lock(&self.cycle));
        let mut t = lock(&self.t);
        let t = &mut *t;
        for (i, e) in t.entries.iter_mut().enumerate() {
            if e.boxa == 0 {
                continue;
            }
            if !live.is_live(e.boxa) {
                *e = Entry::default();
                t.free.push(i as u32);
                s.boxes_freed += 1;
                continue;
            }
            e.boxa = forward(e.boxa);
            if live.is_live(e.key) {
                e.key = forward(e.key);
                debug_assert!(live.is_live(e.value), "an ephemeron value left unmarked");
                e.value = forward(e.value);
            } else {
                e.key = 0;
                e.value = 0;
                if e.ephemeron {
                    s.ephemerons_cleared += 1;
                } else {
                    s.weak_cleared += 1;
                }
            }
        }
        let mut delivered = Vec::new();
        t.regs.retain(|_, r| {
            if live.is_live(r.target) {
                r.target = forward(r.target);
                true
            } else {
                delivered.push((r.queue, r.held));
                false
            }
        });
        s.finalized = delivered.len() as u64;
        for (q, held) in delivered {
            if let Some(v) = t.queues.get_mut(&q) {
                v.push(held);
            }
        }
        s.entries = (t.entries.len() - t.free.len()) as u64;
        s.registrations = t.regs.len() as u64;
        s.pause_time += t0.elapsed();
        lock(&self.totals).add(&s);
        s
    }

    /// Totals over the heap's life.
    pub(crate) fn totals(&self) -> WeakStats {
        *lock(&self.totals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_recycled_and_checked_against_their_box() {
        let w = WeakTables::default();
        let a = w.insert(Entry {
            boxa: 0x1000,
            key: 0x2000,
            value: 0,
            ephemeron: false,
        });
        assert_eq!(w.entry(a, 0x1000).map(|e| e.key), Some(0x2000));
        assert_eq!(w.entry(a, 0x1008), None, "another box's index is refused");
        assert_eq!(w.entry(a + 1, 0x1000), None);
        let q = w.new_queue();
        let tok = w.register(q, 0x3000, 0x11);
        assert_eq!(w.queue_counts(q), (0, 1));
        assert!(!w.unregister(q + 1, tok));
        assert!(w.unregister(q, tok));
        assert!(!w.unregister(q, tok));
        w.drop_queue(q);
        assert_eq!(w.take(q), Vec::<usize>::new());
    }
}

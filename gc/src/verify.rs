//! Heap verification: every reachable object is well formed and every reference points at an
//! object start in a live space.
//!
//! Checks, with the world stopped:
//! 1. the current half parses from its base to `top` as a sequence of objects of registered
//!    types (zero words are one-word fillers) that ends exactly at `top`; so does the old
//!    generation (generational mode, [`crate::generational`]);
//! 2. every large object has a registered type and fits in its pages;
//! 3. from the roots, every reachable reference points at an object start found by (1), a
//!    large object of (2), an old object of (1) or a stranded pinned object ([`crate::pins`], whose reference
//!    slots are roots) — never into the released half, never outside the heap;
//! 4. ([`check_marks`], after marking) every marked object's words are all set in the
//!    live-words bitmap, and the live-words bitmap holds nothing else;
//! 5. ([`checkmark`], after concurrent marking, like Go's `gccheckmark`) everything reachable
//!    now and allocated before marking began was marked.
//!
//! Invariant: verification reads the heap and writes nothing to it; it runs only with the
//! world stopped by the calling thread.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use faultline_heap::bitmap::Bitmap;
use faultline_heap::object::{Header, TypeId, TypeRegistry, WORD};

use crate::roots::HeapRoots;
use crate::safepoint::{visit_roots, SpState};
use crate::space::{LargeSpace, MovingSpace};
use crate::trace::{header, Atomic, SlotAccess};

/// What verification reads: the stopped world's roots and the two spaces.
pub(crate) struct HeapView<'a> {
    /// The stopped world (its mutators' roots).
    pub g: &'a SpState,
    /// Heap-wide roots.
    pub roots: &'a HeapRoots,
    /// The moving space.
    pub moving: &'a MovingSpace,
    /// The large-object space.
    pub large: &'a LargeSpace,
}

/// The type and size in words of the object at `a`, if its header names a registered type.
fn object_words(types: &TypeRegistry, a: usize) -> Option<(TypeId, usize)> {
    let h = header(a);
    types.size_words(h).map(|s| (h.type_id(), s))
}

/// What a successful verification saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Objects parsed in the current half (fillers excluded).
    pub objects: usize,
    /// Reachable objects.
    pub reachable: usize,
    /// Large objects.
    pub large_objects: usize,
    /// Root slots holding references.
    pub roots: usize,
}

/// A verification failure, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct VerifyError(pub String);

fn err<T>(s: String) -> Result<T, VerifyError> {
    Err(VerifyError(s))
}

/// Verify the whole heap. The world must be stopped.
pub(crate) fn verify_heap(
    view: &HeapView<'_>,
    types: &TypeRegistry,
) -> Result<VerifyReport, VerifyError> {
    let moving = view.moving;
    let base = moving.base();
    let top = moving.top.load(Ordering::Relaxed);
    let mut report = VerifyReport::default();
    // 1. Parse the current half (and the old generation, in generational mode).
    let starts = parse(types, base, top, &mut report)?;
    let (old_lo, old_hi) = moving.old_range();
    let old_starts = parse(types, old_lo, old_hi, &mut report)?;
    // 2. Large objects.
    let large = view.large.lock();
    for (&s, &len) in large.objects.iter() {
        match object_words(types, s) {
            Some((ty, size)) if ty != TypeId::FILLER && size * WORD <= len => {}
            _ => return err(format!("large object at {s:#x} has a bad header or size")),
        }
        report.large_objects += 1;
    }
    // 3. Trace from the roots.
    let check = |v: usize, what: &dyn Fn() -> String| -> Result<bool, VerifyError> {
        if v == 0 || !v.is_multiple_of(WORD) {
            return Ok(false);
        }
        if v >= base && v < top {
            if !starts.get((v - base) / WORD) {
                return err(format!("{}: {v:#x} is not an object start", what()));
            }
            Ok(true)
        } else if v >= old_lo && v < old_hi {
            if !old_starts.get((v - old_lo) / WORD) {
                return err(format!("{}: {v:#x} is not an old object's start", what()));
            }
            Ok(true)
        } else if view.large.contains(v) {
            if !large.objects.contains_key(&v) {
                return err(format!("{}: {v:#x} is not a live large object", what()));
            }
            Ok(true)
        } else if view.roots.pins.is_stranded(v) {
            // A stranded pinned object: its reference slots are root slots (checked there).
            Ok(false)
        } else if moving.in_other_half(v) {
            err(format!("{}: {v:#x} points into the released half", what()))
        } else if v >= base && v < moving.end() {
            err(format!("{}: {v:#x} points above top {top:#x}", what()))
        } else {
            err(format!("{}: {v:#x} points outside the heap", what()))
        }
    };
    let mut stack = Vec::new();
    let mut first_err = None;
    let mut root_index = 0usize;
    visit_roots(view.g, view.roots, None, &mut |s| {
        root_index += 1;
        if first_err.is_some() {
            return;
        }
        let v = *s;
        match check(v, &|| format!("root slot #{root_index}")) {
            Ok(true) => {
                report.roots += 1;
                stack.push(v);
            }
            Ok(false) => {}
            Err(e) => first_err = Some(e),
        }
    });
    if let Some(e) = first_err {
        return Err(e);
    }
    // 3b. The weak table: every entry's box is a weak box naming the entry back; keys, values
    //     and finalization targets are objects (not yet swept garbage at worst, whose
    //     contents are intact until the next flip: traced like the rest).
    let weak = &view.roots.weak;
    let box_type = weak.box_type;
    for (i, e) in weak.entries() {
        match check(e.boxa, &|| format!("weak entry {i}'s box")) {
            Ok(true) => {}
            Ok(false) => return err(format!("weak entry {i} has no box ({:#x})", e.boxa)),
            Err(e) => return Err(e),
        }
        let h = header(e.boxa);
        // SAFETY: `e.boxa` passed `check`: an object start in present memory; word 1 is
        // within the box (two words).
        let index = unsafe { ((e.boxa + WORD) as *const u64).read() };
        if Some(h.type_id()) != box_type || index != i as u64 {
            return err(format!(
                "weak entry {i}: {:#x} is not its weak box (type {:?}, index word {index})",
                e.boxa,
                h.type_id()
            ));
        }
        for (v, what) in [(e.key, "key"), (e.value, "value")] {
            if check(v, &|| format!("weak entry {i}'s {what}"))? {
                stack.push(v);
            }
        }
    }
    for t in weak.targets() {
        if check(t, &|| "a finalization target".to_string())? {
            stack.push(t);
        }
    }
    let mut seen = HashSet::new();
    while let Some(o) = stack.pop() {
        if !seen.insert(o) {
            continue;
        }
        report.reachable += 1;
        // SAFETY: `o` passed `check`: an object start in present memory.
        let h = Header(unsafe { (o as *const u64).read() });
        let size = types.size_words(h).unwrap_or(1);
        let mut result = Ok(());
        types.for_each_ref_word(h, 0, size, |k| {
            if result.is_err() {
                return;
            }
            // SAFETY: a slot inside a verified object.
            let v = unsafe { ((o + k * WORD) as *const usize).read() };
            match check(v, &|| {
                format!(
                    "word {k} of {:?} at {o:#x}",
                    types
                        .get(h.type_id())
                        .map(|t| t.name.as_str())
                        .unwrap_or("?")
                )
            }) {
                Ok(true) => stack.push(v),
                Ok(false) => {}
                Err(e) => result = Err(e),
            }
        });
        result?;
    }
    Ok(report)
}

/// Parse `[lo, hi)` as a sequence of objects of registered types (zero words: one-word
/// fillers) ending exactly at `hi`; their starts, as a bitmap of words from `lo`.
fn parse(
    types: &TypeRegistry,
    lo: usize,
    hi: usize,
    report: &mut VerifyReport,
) -> Result<Bitmap, VerifyError> {
    let starts = Bitmap::new(hi.saturating_sub(lo) / WORD + 1);
    let mut a = lo;
    while a < hi {
        let Some((ty, size)) = object_words(types, a) else {
            // SAFETY: `a` lies in the present, used part of the current half or the old
            // generation.
            let h = Header(unsafe { (a as *const u64).read() });
            return err(format!("object at {a:#x} has unregistered type ({h:?})"));
        };
        if a + size * WORD > hi {
            return err(format!(
                "object at {a:#x} ({size} words) runs past the end {hi:#x}"
            ));
        }
        if ty != TypeId::FILLER {
            starts.set((a - lo) / WORD);
            report.objects += 1;
        }
        a += size * WORD;
    }
    Ok(starts)
}

/// Check that the mark and live-words bitmaps agree over the first `words` words at `from`.
pub(crate) fn check_marks(
    mark: &Bitmap,
    live: &Bitmap,
    from: usize,
    words: usize,
    types: &TypeRegistry,
) -> Result<(), VerifyError> {
    let mut sum = 0;
    let mut w = 0;
    while let Some(m) = mark.next_set(w, words) {
        let Some((_, size)) = object_words(types, from + m * WORD) else {
            return err(format!("marked word {m} holds no valid header"));
        };
        for i in m..m + size {
            if !live.get(i) {
                return err(format!(
                    "live bit {i} missing inside the marked object at word {m}"
                ));
            }
        }
        sum += size;
        w = m + size;
    }
    let ones = live.count_ones(words.div_ceil(64) + 1);
    if ones != sum {
        return err(format!(
            "{ones} live words set but marked objects cover {sum}"
        ));
    }
    Ok(())
}

/// Checkmark (like Go's gccheckmark): re-mark everything reachable now, with the world
/// stopped, into a fresh bitmap, and insist that concurrent marking marked every object it
/// should have (everything reachable below `mark_top`).
pub(crate) fn checkmark(
    view: &HeapView<'_>,
    mark: &Bitmap,
    from: usize,
    mark_top: usize,
    types: &TypeRegistry,
) {
    let top = view.moving.top.load(Ordering::Relaxed);
    let seen = Bitmap::new((top - from) / WORD + 1);
    let mut stack: Vec<(usize, usize)> = Vec::new();
    visit_roots(view.g, view.roots, None, &mut |s| stack.push((*s, 0)));
    let mut large_seen = std::collections::HashSet::new();
    let mut old_seen = std::collections::HashSet::new();
    let describe = |p: usize| -> String {
        if p == 0 {
            return "a root".into();
        }
        let kind = if p >= from && p < mark_top {
            if mark.get((p - from) / WORD) {
                "marked old object"
            } else {
                "UNMARKED old object"
            }
        } else if p >= mark_top && p < top {
            "black (allocated during marking) object"
        } else if view.large.contains(p) {
            if view.large.marks.get(view.large.page_of(p)) {
                "marked large object"
            } else {
                "UNMARKED large object"
            }
        } else if view.moving.contains_old(p) {
            "old-generation object"
        } else {
            "?"
        };
        format!("{kind} at {p:#x}")
    };
    // Ephemerons: a value is reachable if its box and its key are (the fix-point, run below
    // each time the stack empties).
    let ephemerons: Vec<(usize, usize, usize)> = view
        .roots
        .weak
        .entries()
        .into_iter()
        .filter(|(_, e)| e.ephemeron)
        .map(|(_, e)| (e.boxa, e.key, e.value))
        .collect();
    let mut ephemerons_done = vec![false; ephemerons.len()];
    loop {
        if stack.is_empty() {
            let reached = |a: usize, seen: &Bitmap, large_seen: &HashSet<usize>| {
                if a == 0 || !a.is_multiple_of(WORD) {
                    true
                } else if a >= from && a < top {
                    seen.get((a - from) / WORD)
                } else if view.large.contains(a) {
                    large_seen.contains(&a)
                } else {
                    true
                }
            };
            for (i, &(b, k, v)) in ephemerons.iter().enumerate() {
                if !ephemerons_done[i]
                    && reached(b, &seen, &large_seen)
                    && reached(k, &seen, &large_seen)
                {
                    ephemerons_done[i] = true;
                    stack.push((v, b));
                }
            }
            if stack.is_empty() {
                break;
            }
        }
        let Some((v, parent)) = stack.pop() else {
            continue;
        };
        if v == 0 || v % WORD != 0 {
            continue;
        }
        let fresh = if v >= from && v < top {
            let w = (v - from) / WORD;
            if v < mark_top && !mark.get(w) {
                panic!(
                    "checkmark: object at {v:#x} is reachable but was not marked by concurrent marking (referenced by {})",
                    describe(parent)
                );
            }
            seen.set(w)
        } else if view.large.contains(v) {
            if !view.large.marks.get(view.large.page_of(v)) {
                panic!("checkmark: large object at {v:#x} is reachable but was not marked");
            }
            large_seen.insert(v)
        } else if view.moving.contains_old(v) {
            // An old object (generational mode): live by definition, and traced through, so
            // a young object reachable only from it must have been marked (the remembered
            // set's exactness).
            old_seen.insert(v)
        } else {
            false
        };
        if fresh {
            let h = Header(Atomic::load(v) as u64);
            let size = types.size_words(h).unwrap_or(1);
            types.for_each_ref_word(h, 0, size, |k| stack.push((Atomic::load(v + k * WORD), v)));
        }
    }
}

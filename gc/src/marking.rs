//! Concurrent marking: the SATB queue the write barrier feeds, the concurrent marker, and the
//! barrier-free (`wp_async`) rescans. The phases are driven by [`crate::cycle`]; this module
//! does the work of each (its numbers refer to the cycle's list there).
//!
//! - **SATB** (snapshot at the beginning, Yuasa deletion barrier): while `barrier` is on,
//!   `Local::set` logs the reference it overwrites into the mutator's buffer, flushed to the
//!   global queue every [`SATB_BUFFER`] entries. Objects allocated during marking are black:
//!   buffers retired while marking are walked (their objects marked, not traced; by the
//!   retiring mutator itself, [`crate::assist::mark_own_buffer`]); large objects get their
//!   mark bit at allocation.
//! - **Barrier-free** (`wp_async`, incremental update): the used moving space and the live
//!   large objects are write-protected with `UFFD_FEATURE_WP_ASYNC` before tracing; writes are
//!   resolved in the kernel, and `PAGEMAP_SCAN` reports (and re-protects) the pages written
//!   since the last scan, whose marked objects are rescanned ([`rescan_dirty`]). Precleaning
//!   repeats until a round finds at most [`PRECLEAN_DONE`] written pages, or
//!   [`PRECLEAN_ROUNDS`] rounds ran; the remark rescans the roots and the pages written since.
//!
//! - **Weak references** ([`crate::weak`]): a reference read out of the weak table while
//!   `active` is logged in the reader's SATB buffer in either mode (the keep-alive barrier;
//!   the remark drains every buffer); ephemeron values are marked by [`trace_from`], once
//!   after concurrent marking and again in the remark pause.
//! - **Shared gray work**: the gray objects live in a work-stealing pool
//!   ([`crate::graypool`]): the GC thread's marker, `gc_threads - 1` helper markers (scoped
//!   threads started for each concurrent drain) and mutators' mark assists
//!   ([`crate::assist`]) all take from it and push to it; a drain ends when no gray object is
//!   pending anywhere. An object of more than [`SCAN_CHUNK_WORDS`] words is scanned a chunk
//!   at a time: a pool entry is an object or a continuation ([`chunk`]), so no single step of
//!   a marker or an assist scans more than a chunk (an assist stays within its slice).
//! - **Flat remark** (SATB): before the remark pause, [`satb_handshake`] asks each mutator to
//!   hand its SATB buffer over at its next allocation slow path (no global stop; at most
//!   [`HANDSHAKE_WAIT`]), and precleans what arrives (flushed entries and retired allocation
//!   buffers, until a drain ends with nothing new). It runs twice: after concurrent marking,
//!   and again as the last step before the pause (after the ephemeron pass and the concurrent
//!   plan, whose time grows with the heap: see [`crate::cycle`]).
//!
//! Why nothing reachable is lost (SATB): every object reachable at the snapshot is either
//! reached by tracing, or the last reference to it on the traced path was overwritten after
//! the snapshot, and the barrier logged that reference; objects created after the snapshot are
//! black. An object unreachable at the snapshot can never become reachable again.
//!
//! # Remark bound
//!
//! SATB: the remark traces from at most `mutators x 256` SATB entries (precleaning empties the
//! global queue first; after the handshake, a mutator that answered holds only what it logged
//! since) plus what only they reach, and walks at most one active allocation
//! buffer per mutator, plus the buffers retired and the entries flushed between the last
//! handshake's final drain and the stop (what mutators do during the time to safepoint).
//! [`crate::CycleStats`] reports each part (`remark_buffers`, `remark_queues`,
//! `remark_trace`; `remark_buffer_bytes`, `remark_queue_entries`). Barrier-free: the pages
//! written since the last precleaning round, the active allocation buffers (black objects get
//! no barrier) and the large objects allocated since the last round, plus what only those
//! reach; [`crate::CycleStats`] reports the rounds, the last round's written pages and the
//! pages the remark rescanned. That is bounded only
//! while precleaning keeps up with the writes: a last round runs right before the remark
//! pause ([`wp_final_round`], after concurrent planning), and when it still finds more than
//! [`PRECLEAN_DONE`] written pages, the cycle **falls back to SATB for its last stretch**
//! ([`satb_switch`]): a short pause (the roots, like the initial mark) switches the SATB
//! barrier on, one concurrent rescan covers the pages written so far, the SATB handshake
//! runs, and the remark is SATB's flat remark (`CycleStats::satb_switch` records it and why).
//!
//! Invariants:
//! - `active` is true exactly between the end of the initial-mark pause and the remark pause;
//!   the barrier reads `barrier` with one relaxed load;
//! - heap slots are read by the marker and written by mutators with atomic (relaxed) accesses
//!   (the marker's tracer uses [`Atomic`] slot access); headers never change after allocation;
//! - the marker marks only objects below `mark_top` in the moving space; everything between
//!   `mark_top` and `top` is black and reaches the bitmaps only through the buffer walks;
//! - the SATB queue, the retired buffers and the new large objects are lock-free queues
//!   ([`crate::handover`]): a mutator's flush, retire or large allocation hands its item over
//!   in O(1) (a SATB buffer whole, swapped for an empty one) and never waits for another
//!   thread; the marker's drains see every item handed over before they begin, so the remark
//!   (world stopped) sees every entry flushed before the stop;
//! - a marker's references in flight (read by its steps, not yet shaded: the tracer's ring)
//!   exist only while its local stack holds work, and a dropped marker shades them first;
//! - the gray pool is empty outside marking (see [`crate::graypool`]); helper markers live
//!   only inside one drain, so none runs outside the GC thread's marking phases;
//! - the handshake never makes correctness depend on an answer: the remark still drains
//!   every mutator's buffer.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use faultline_heap::object::{TypeId, WORD};
use faultline_heap::pagemap::PagemapScanner;
use faultline_heap::{VolatileArena, PAGE_SIZE};

use crate::catchup::{Catchup, CHECK_EVERY as CATCHUP_EVERY};
use crate::debug::{DebugConfig, MarkPoint};
use crate::graypool::{GrayLocal, GrayPool, Idle};
use crate::handover::{BufferQueue, Handover};
use crate::pacer::Pacer;
use crate::safepoint::SpState;
use crate::space::{LargeSpace, MovingSpace};
use crate::stats::SwitchReason;
use crate::trace::{header, Ahead, Atomic, Tracer};

/// Objects larger than this many words are scanned a chunk of this many words at a time (see
/// [`chunk`]): 16 KiB, tens of microseconds of shading.
pub(crate) const SCAN_CHUNK_WORDS: usize = 2048;

/// Gray-pool entries: an object's address (word aligned), or a continuation `address | 1 |
/// k << 48` meaning "words `k x SCAN_CHUNK_WORDS ..` of the object at `address`" (user-space
/// addresses are below 2^47). An object needing more than 2^16 chunks (512 MiB) is scanned
/// whole from its last encodable chunk.
pub(crate) mod chunk {
    const SHIFT: u32 = 48;

    /// The entry for chunk `k` of the object at `o` (`k == 0`: the object itself); `None` if
    /// it cannot be encoded (then the caller scans the rest at once).
    pub(crate) fn encode(o: usize, k: usize) -> Option<usize> {
        if k == 0 {
            return Some(o);
        }
        (o >> SHIFT == 0 && o & 7 == 0 && k < 1 << (usize::BITS - SHIFT))
            .then_some(o | 1 | k << SHIFT)
    }

    /// The object and chunk index an entry names.
    pub(crate) fn decode(e: usize) -> (usize, usize) {
        if e & 1 == 0 {
            (e, 0)
        } else {
            (e & ((1 << SHIFT) - 1) & !1, e >> SHIFT)
        }
    }
}

/// SATB entries a mutator buffers before flushing them to the global queue.
pub(crate) const SATB_BUFFER: usize = 256;

/// Barrier-free mode: stop precleaning when a round found at most this many written pages...
pub(crate) const PRECLEAN_DONE: usize = 32;
/// ...or after this many rounds.
pub(crate) const PRECLEAN_ROUNDS: usize = 8;

/// Shared marking state.
#[derive(Debug, Default)]
pub(crate) struct MarkingState {
    /// Marking is running (objects allocated now are black).
    pub active: AtomicBool,
    /// The SATB barrier logs overwritten references (satb mode only).
    pub barrier: AtomicBool,
    /// Objects at or above this address were allocated during marking.
    pub mark_top: AtomicUsize,
    /// Where the range marked starts (the window, or a generational full cycle's old
    /// generation start): what every tracer of this cycle (mark assists too) is built with.
    pub mark_from: AtomicUsize,
    /// Flushed SATB buffers (handed over whole, lock-free: [`crate::handover`]).
    pub satb: BufferQueue<SATB_BUFFER>,
    /// Allocation buffers retired during marking: `[start, end)` of black objects.
    pub retired: Handover<(usize, usize)>,
    /// Large objects allocated during marking (black). Barrier-free mode scans them: under
    /// incremental update a black object's contents must be traced too.
    pub new_large: Handover<usize>,
    /// SATB entries logged (statistics).
    pub logged: AtomicU64,
    /// The gray objects, shared by the markers and the mutators' assists.
    pub pool: GrayPool,
    /// With a mark hook: objects traced by all markers together in this cycle (the count
    /// [`MarkPoint::Traced`] reports).
    pub traced_total: AtomicUsize,
    /// The flat remark's SATB handshake: its epoch. A mutator that has not answered the
    /// current epoch hands its SATB buffer over at its next allocation slow path
    /// ([`MarkingState::answer_handshake`]).
    pub flush_epoch: AtomicU64,
    /// Mutators that answered the current handshake.
    pub flush_acks: AtomicUsize,
    /// Barrier-free mode: the written pages the last cycle's remark rescanned (or, if it
    /// switched to SATB, its switch's rescan found): the write rate a remark must expect
    /// ([`wp_final_round`]).
    pub wp_last_dirty: AtomicUsize,
}

impl MarkingState {
    /// Move a mutator's SATB buffer to the global queue: the buffer is handed over whole and
    /// replaced by an empty one (O(1), no lock: [`crate::handover`]).
    pub(crate) fn flush(&self, buf: &mut Vec<usize>) {
        if buf.is_empty() {
            return;
        }
        self.logged.fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.satb.hand_over(buf);
    }

    /// A mutator's answer to the SATB handshake (its allocation slow path, RUNNING, owning
    /// `buf`): if a handshake newer than `seen` is open, flush `buf` to the global queue and
    /// count the answer.
    #[inline]
    pub(crate) fn answer_handshake(&self, seen: &mut u64, buf: &mut Vec<usize>) {
        let e = self.flush_epoch.load(Ordering::Acquire);
        if e != *seen {
            *seen = e;
            if self.barrier.load(Ordering::Relaxed) {
                self.flush(buf);
            }
            self.flush_acks.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// A mutator retires the allocation buffer `[start, end)` while marking runs: its objects
    /// are black, the marker walks them.
    pub(crate) fn retire(&self, start: usize, end: usize) {
        if end > start && start >= self.mark_top.load(Ordering::Relaxed) {
            self.retired.push((start, end));
        }
    }

    /// A large object allocated during barrier-free marking (scanned by the marker).
    pub(crate) fn note_new_large(&self, a: usize) {
        self.new_large.push(a);
    }

    /// Phase 1 (initial-mark pause): start marking `[from, mark_top)`, with `mark_top` as the
    /// black boundary.
    pub(crate) fn begin(&self, from: usize, mark_top: usize, satb_barrier: bool) {
        debug_assert_eq!(
            self.pool.pending(),
            0,
            "gray objects left from the last cycle"
        );
        self.mark_top.store(mark_top, Ordering::SeqCst);
        self.mark_from.store(from, Ordering::SeqCst);
        self.satb.clear();
        self.retired.clear();
        self.active.store(true, Ordering::SeqCst);
        self.barrier.store(satb_barrier, Ordering::SeqCst);
    }

    /// Phase 4 (remark pause): marking is over, the barrier off.
    pub(crate) fn end(&self) {
        self.active.store(false, Ordering::SeqCst);
        self.barrier.store(false, Ordering::SeqCst);
    }

    fn queues_empty(&self) -> bool {
        self.satb.is_empty() && self.retired.is_empty()
    }
}

/// What concurrent marking works on (handed out by the cycle).
pub(crate) struct MarkCtx<'a> {
    /// The arena (write protection, PAGEMAP_SCAN).
    pub arena: &'a VolatileArena,
    /// The moving space.
    pub moving: &'a MovingSpace,
    /// The large-object space.
    pub large: &'a LargeSpace,
    /// The shared marking state.
    pub state: &'a MarkingState,
    /// Debug knobs (mark hook, disabled barrier).
    pub debug: &'a DebugConfig,
    /// Barrier-free marking.
    pub wp: bool,
    /// Markers that share the mark (the GC thread and `threads - 1` helpers), `gc_threads`.
    pub threads: usize,
    /// The pacer (bytes scanned, published as marking goes).
    pub pacer: &'a Pacer,
    /// `gc_catchup_nice`: nice steps the GC thread rises while marking is behind the pacer's
    /// schedule ([`crate::catchup`]).
    pub catchup_nice: u8,
}

/// A concurrent marker: the shared tracer (atomic slot access) plus its part of the shared
/// gray set ([`GrayLocal`]): the GC thread's, a helper marker's or an assist's.
pub(crate) struct ConcMarker<'a> {
    /// The tracer over `[from, mark_top)`.
    pub t: Tracer<'a, Atomic>,
    gray: GrayLocal<'a>,
    /// Objects shaded.
    pub marked: usize,
    /// Objects scanned.
    pub traced: usize,
    /// Bytes of objects scanned and not yet published to the pacer.
    pub scanned_bytes: usize,
    /// `traced` at the last [`ConcMarker::publish`].
    published_at: usize,
    /// Scans since [`ConcMarker::drain`] last called its periodic work (kept across drains,
    /// so short drains in a row still reach it).
    since_each: u32,
    /// With a mark hook: the cycle's count of objects traced by all markers.
    count_all: Option<&'a AtomicUsize>,
    /// References read by [`ConcMarker::step`]'s scans and not yet shaded (kept in flight
    /// across objects). Invariant: empty whenever the local stack is, after every step (so
    /// the drain's end and a stack that releases its pending token never leave one behind),
    /// and emptied into the gray set on drop.
    ahead: Ahead,
}

impl Drop for ConcMarker<'_> {
    fn drop(&mut self) {
        self.flush_ahead();
    }
}

impl<'a> ConcMarker<'a> {
    /// A marker whose deque others may steal from.
    pub(crate) fn new(t: Tracer<'a, Atomic>, pool: &'a GrayPool) -> Self {
        Self::with(t, GrayLocal::shared(pool))
    }

    /// A marker over `gray` (an assist's private deque, or a marker's shared one).
    pub(crate) fn with(t: Tracer<'a, Atomic>, gray: GrayLocal<'a>) -> Self {
        ConcMarker {
            t,
            gray,
            marked: 0,
            traced: 0,
            scanned_bytes: 0,
            published_at: 0,
            since_each: 0,
            count_all: None,
            ahead: Ahead::default(),
        }
    }

    /// Shade the references [`ConcMarker::step`] still holds in flight (a marker dropped
    /// between steps); the new ones become gray.
    fn flush_ahead(&mut self) {
        if self.ahead.is_empty() {
            return;
        }
        let (t, gray, marked) = (&self.t, &mut self.gray, &mut self.marked);
        self.ahead.flush(t, &mut |c| {
            *marked += 1;
            gray.push(c);
        });
    }

    /// Shade `v`; a newly shaded object becomes gray.
    pub(crate) fn shade(&mut self, v: usize) {
        if self.t.shade(v) {
            self.marked += 1;
            self.gray.push(v);
        }
    }

    /// Scan one gray-set entry: a whole object, or its first [`SCAN_CHUNK_WORDS`] words
    /// with a continuation for the rest pushed first (so another marker can take it). Its
    /// references go through the marker's ring (`ahead`): each is shaded up to
    /// [`crate::trace::SHADE_AHEAD`] references later, in this step or a later one. Returns
    /// whether it was an object (not a continuation).
    fn scan(&mut self, entry: usize) -> bool {
        let (o, k) = chunk::decode(entry);
        let lo = k * SCAN_CHUNK_WORDS;
        let h = header(o);
        let l = self.t.scan.get(h);
        let size = l.size_words(h);
        let hi = match chunk::encode(o, k + 1) {
            Some(next) if size > lo + SCAN_CHUNK_WORDS => {
                self.gray.push(next);
                lo + SCAN_CHUNK_WORDS
            }
            _ => size,
        };
        self.scanned_bytes += hi.saturating_sub(lo) * WORD;
        // (With the continuation pushed first, the ring stays in flight to the next step; it
        // is emptied into the stack once the stack runs empty.)
        let t = &self.t;
        self.marked += t.scan_words_ahead(o, h, l, lo, hi, &mut self.ahead, &mut self.gray);
        k == 0
    }

    /// Shade the references held in words `[from_k, to_k)` of the object at `o` (word 0 is
    /// its header; `to_k` is clipped to the object's size).
    fn scan_words(&mut self, o: usize, from_k: usize, to_k: usize) {
        if self.scan_range(o, self.t.size_words(o), from_k, to_k) {
            self.traced += 1;
        }
    }

    /// [`ConcMarker::scan_words`] of the object at `o` of `size` words (its caller has read
    /// it already), without counting an object traced; false if the range is empty.
    fn scan_range(&mut self, o: usize, size: usize, from_k: usize, to_k: usize) -> bool {
        if from_k >= to_k.min(size) {
            return false;
        }
        self.scanned_bytes += (to_k.min(size) - from_k) * WORD;
        let (t, gray, marked) = (&self.t, &mut self.gray, &mut self.marked);
        t.shade_refs(o, from_k, to_k, |c| {
            *marked += 1;
            gray.push(c);
        });
        true
    }

    /// Hand the bytes scanned since the last call to the pacer (assists compare them with
    /// what mutators allocated).
    pub(crate) fn publish(&mut self, pacer: &Pacer) {
        pacer.note_scanned(std::mem::take(&mut self.scanned_bytes));
        self.published_at = self.traced;
    }

    /// Publish to the pacer if [`PUBLISH_EVERY`] objects were traced since the last time.
    fn publish_due(&mut self, pacer: &Pacer) {
        if self.traced - self.published_at >= PUBLISH_EVERY {
            self.publish(pacer);
        }
    }

    /// Scan one gray object, or one [`SCAN_CHUNK_WORDS`] chunk of a large one (ours or
    /// stolen); false if none could be taken now. `traced` (and the mark hook's count) count
    /// objects, once each, at their first chunk.
    pub(crate) fn step(&mut self) -> bool {
        match self.gray.pop() {
            Some(e) => {
                // The next entry's header is read when it is scanned, often long after it was
                // shaded (its siblings' subtrees came first): ask for it now.
                if let Some(next) = self.gray.peek() {
                    crate::dense::prefetch(chunk::decode(next).0);
                }
                let object = self.scan(e);
                self.gray.finished();
                if object {
                    self.traced += 1;
                    if let Some(c) = self.count_all {
                        c.fetch_add(1, Ordering::SeqCst);
                    }
                }
                true
            }
            None => false,
        }
    }

    /// Scan gray objects until none is left anywhere (other markers and assists may still
    /// hold some: wait for them), calling `each` after every [`EACH_STEPS`] scans of this
    /// marker, counted across its drains (after every scan while a mark hook counts them, so
    /// that its count stays exact).
    fn drain(&mut self, mut each: impl FnMut(&mut Self)) {
        let mut idle = Idle::default();
        let every = if self.count_all.is_some() {
            1
        } else {
            EACH_STEPS
        };
        loop {
            if self.step() {
                idle.reset();
                self.since_each += 1;
                if self.since_each >= every {
                    self.since_each = 0;
                    each(self);
                }
                continue;
            }
            if self.gray.pool().pending() == 0 {
                break;
            }
            // Another worker holds the rest (and may push more).
            idle.wait(true);
        }
    }

    /// Mark every object of a black buffer `[s, e)`; with `trace` (barrier-free mode, where a
    /// black object's contents are not covered by a barrier) also scan it. The objects whose
    /// headers share a mark-bitmap word (a [`BlackSegment`]) are marked with one `fetch_or`,
    /// and made live with one [`LiveWords::mark_range`] when that call marked them all and no
    /// filler lies between them (else one per object it marked): not an atomic operation per
    /// object. As with one object at a time, only the objects this call marked are made live
    /// and counted in `marked` (a buffer walked twice, e.g. the remark's active buffer and
    /// then its retirement, changes nothing the second time).
    ///
    /// [`LiveWords::mark_range`]: faultline_heap::bitmap::LiveWords::mark_range
    pub(crate) fn walk_black(&mut self, s: usize, e: usize, trace: bool) {
        let from = self.t.from;
        let mut seg = BlackSegment::default();
        let mut a = s;
        while a < e {
            let h = header(a);
            let size = self.t.scan.get(h).size_words(h);
            if h.type_id() != TypeId::FILLER {
                let w = (a - from) / WORD;
                if seg.bits == 0 || w / 64 != seg.word {
                    self.mark_segment(&seg);
                    seg = BlackSegment {
                        word: w / 64,
                        bits: 0,
                        start: a,
                        end: a,
                        gapless: true,
                    };
                }
                seg.gapless &= a == seg.end;
                seg.bits |= 1 << (w % 64);
                seg.end = a + size * WORD;
                if trace {
                    self.scan_words(a, 0, usize::MAX);
                }
            }
            a += size * WORD;
        }
        self.mark_segment(&seg);
    }

    /// Mark a [`BlackSegment`]'s objects and make those this call marked live.
    fn mark_segment(&mut self, seg: &BlackSegment) {
        if seg.bits == 0 {
            return;
        }
        let from = self.t.from;
        let new = self.t.mark.set_bits(seg.word, seg.bits);
        self.marked += new.count_ones() as usize;
        if new == seg.bits && seg.gapless {
            self.t
                .live
                .mark_range((seg.start - from) / WORD, (seg.end - from) / WORD);
        } else if new != 0 {
            let mut a = seg.start;
            while a < seg.end {
                let h = header(a);
                let size = self.t.scan.get(h).size_words(h);
                let w = (a - from) / WORD;
                if h.type_id() != TypeId::FILLER && new & 1 << (w % 64) != 0 {
                    self.t.live.mark_range(w, w + size);
                }
                a += size * WORD;
            }
        }
    }

    /// Rescan every marked object that overlaps the moving-space page at `pa` (barrier-free
    /// mode: the page was written since it was last protected).
    fn rescan_page(&mut self, pa: usize, top: usize) {
        let from = self.t.from;
        if pa < from || pa >= top {
            return;
        }
        let lo = (pa - from) / WORD;
        let hi = ((pa + PAGE_SIZE).min(top) - from) / WORD;
        // Only the words on this page: a write elsewhere in a large object marks that page
        // written, and its rescan covers it. (Rescanning whole objects made a written page of
        // a multi-megabyte array cost the whole array.)
        // The object straddling into the page from before it, if marked.
        if lo > 0 {
            if let Some(w) = self.t.mark.prev_set(lo - 1) {
                let o = from + w * WORD;
                let size = self.t.size_words(o);
                if w + size > lo {
                    self.scan_words(o, lo - w, hi - w);
                }
            }
        }
        let mut w = lo;
        while let Some(m) = self.t.mark.next_set(w, hi) {
            let o = from + m * WORD;
            self.scan_words(o, 0, hi - m);
            w = m + 1;
        }
    }
}

/// Black objects of one buffer whose headers lie in mark-bitmap word `word`, between `start`
/// (the first one's address) and `end` (the last one's end), their header bits `bits`
/// ([`ConcMarker::walk_black`]); `gapless`: no filler lies between them.
#[derive(Default)]
struct BlackSegment {
    word: usize,
    bits: u64,
    start: usize,
    end: usize,
    gapless: bool,
}

/// In the remark pause, gray objects pending below which the drain does not start helper
/// markers (a bounded, usually small remainder). Concurrent drains always start them: they
/// begin from a few roots whose children fan out.
const HELP_MIN: usize = 64;
/// A helper publishes its scanned bytes every this many objects.
const PUBLISH_EVERY: usize = 1024;

/// A drain calls its caller's periodic work (publishing to the pacer, the catch-up check, the
/// SATB queue) once every this many scans: per scan, the calls cost the concurrent marker
/// about a tenth of its CPU on trees and lists (`benches/mark.rs`).
const EACH_STEPS: u32 = 64;

/// Concurrent marking takes the SATB queue's entries every this many objects traced.
const SATB_EVERY: usize = 4096;

/// Drain the shared gray pool to empty with `m` (the GC thread's marker, calling `each` every
/// [`EACH_STEPS`] scans, see [`ConcMarker::drain`]) and `ctx.threads - 1` helper markers, all
/// stealing work from each other and from assists. Helpers run one drain each, on the GC
/// thread's crew ([`crate::crew`]: threads kept between drains); a drain that starts with fewer than `help_min` gray objects (or none) runs on
/// the GC thread alone.
fn drain_shared(
    ctx: &MarkCtx<'_>,
    m: &mut ConcMarker<'_>,
    help_min: usize,
    mut each: impl FnMut(&mut ConcMarker<'_>),
) {
    let pool = &ctx.state.pool;
    if ctx.threads <= 1 || pool.pending() + m.gray.stacked() < help_min.max(1) {
        m.drain(|m| {
            m.publish_due(ctx.pacer);
            each(m);
        });
        m.publish(ctx.pacer);
        return;
    }
    let pacer = ctx.pacer;
    let (t, count_all) = (m.t.clone(), m.count_all);
    let ((), marked) = crate::crew::fan_out(
        "faultline-mark",
        ctx.threads - 1,
        |_| {
            let mut h = ConcMarker::new(t.clone(), pool);
            h.count_all = count_all;
            h.drain(|h| h.publish_due(pacer));
            h.publish(pacer);
            h.marked
        },
        || {
            m.drain(|m| {
                m.publish_due(pacer);
                each(m);
            })
        },
    );
    let marked: usize = marked.into_iter().sum();
    m.publish(pacer);
    m.marked += marked;
}

/// What concurrent marking found, for the cycle's statistics.
#[derive(Debug, Default)]
pub(crate) struct MarkReport {
    /// Barrier-free precleaning rounds.
    pub preclean_rounds: usize,
    /// Written pages found by the last precleaning round.
    pub preclean_last_dirty: usize,
    /// Written pages the remark rescanned.
    pub remark_dirty_pages: usize,
    /// SATB mode: mutators the handshake waited for (RUNNING when it began), and those that
    /// answered before the remark.
    pub handshake: (usize, usize),
    /// SATB mode: entries the remark took from mutators' unflushed buffers.
    pub remark_satb_entries: usize,
    /// Barrier-free mode: precleaning was outrun, so the cycle switched to the SATB barrier
    /// for its last stretch ([`wp_final_round`], [`satb_switch`]); why.
    pub satb_switch: Option<SwitchReason>,
    /// Written pages the switch's final concurrent rescan found.
    pub switch_dirty_pages: usize,
    /// The remark's parts (see the `remark_*` fields of [`crate::CycleStats`]): mutators'
    /// buffers, queues, trace.
    pub remark_buffers: Duration,
    /// See above.
    pub remark_queues: Duration,
    /// See above.
    pub remark_trace: Duration,
    /// Global SATB queue entries the remark took.
    pub remark_queue_entries: usize,
    /// Bytes of allocation buffers whose black objects the remark walked.
    pub remark_buffer_bytes: usize,
    /// Objects the remark scanned.
    pub remark_traced: usize,
    /// SATB mode: bytes of retired allocation buffers the last handshake walked (black
    /// objects precleaned right before the pause instead of in it).
    pub handshake_buffer_bytes: usize,
}

/// Barrier-free mode, after a short pause that took the roots (`roots`) and switched the SATB
/// barrier on (GC thread, mutators running): the cycle's fallback to SATB for its last
/// stretch. Shade the roots; rescan, once and concurrently, the pages written since the last
/// precleaning round (this is what the remark would have rescanned, plus what is written
/// meanwhile), and trace from them. From here on the remark neither rescans written pages nor
/// the roots: it drains SATB buffers like SATB mode's flat remark.
///
/// Why nothing reachable is lost: let T be the switch pause. Every object reachable at T is
/// reached from the roots at T (shaded here) through a path whose objects were either not yet
/// scanned, or scanned (black) with a reference to an unmarked object written after their
/// last scan, on a page therefore reported written by the rescan below. That rescan reads the
/// reference unless a mutator overwrote it after T, and then the SATB barrier logged it. From
/// the objects so shaded, the SATB argument holds with T as the snapshot. Objects allocated
/// after T are black; those allocated before it, and black, are traced as in barrier-free
/// mode (their buffers are walked with tracing, and their pages are write-tracked).
pub(crate) fn satb_switch<'a>(
    ctx: &MarkCtx<'a>,
    m: &mut ConcMarker<'a>,
    sc: &PagemapScanner,
    roots: &[usize],
    reason: SwitchReason,
    report: &mut MarkReport,
) {
    let ms = ctx.state;
    report.satb_switch = Some(reason);
    for &r in roots {
        m.shade(r);
    }
    report.switch_dirty_pages = rescan_dirty(ctx, sc, m);
    ms.wp_last_dirty
        .store(report.switch_dirty_pages, Ordering::Relaxed);
    scan_new_large(ms, m);
    loop {
        ms.satb.drain(|v| m.shade(v));
        for (s, e) in ms.retired.take() {
            m.walk_black(s, e, true);
        }
        drain_shared(ctx, m, 0, |_| {});
        if ms.queues_empty() {
            break;
        }
    }
}

/// The flat remark's handshake waits at most this long for the running mutators' answers.
pub(crate) const HANDSHAKE_WAIT: Duration = Duration::from_millis(2);

/// End of phase 2, SATB mode (GC thread, mutators running): the flat remark's handshake. Ask
/// every mutator to hand over its SATB buffer at its next allocation slow path (no global
/// stop), preclean what arrives, until the `running` mutators answered or [`HANDSHAKE_WAIT`]
/// passed; then drain to empty. The remark then traces only what was logged since each
/// mutator's answer (and the whole buffer of one that did not answer: correctness never
/// depends on the handshake).
pub(crate) fn satb_handshake<'a>(
    ctx: &MarkCtx<'a>,
    m: &mut ConcMarker<'a>,
    running: usize,
    report: &mut MarkReport,
) {
    let ms = ctx.state;
    ms.flush_acks.store(0, Ordering::SeqCst);
    ms.flush_epoch.fetch_add(1, Ordering::SeqCst);
    report.handshake_buffer_bytes = 0;
    let t0 = Instant::now();
    loop {
        let answered = ms.flush_acks.load(Ordering::SeqCst);
        let waited = answered >= running || t0.elapsed() >= HANDSHAKE_WAIT;
        ms.satb.drain(|v| m.shade(v));
        for (s, e) in ms.retired.take() {
            report.handshake_buffer_bytes += e - s;
            // Barrier-free marking that switched to SATB: a buffer retired after the switch
            // may hold black objects allocated before it, whose writes only the page tracking
            // saw (and the rescan of written pages skips objects not marked yet): traced, as
            // barrier-free marking traces every black object (see `satb_switch`).
            m.walk_black(s, e, ctx.wp);
        }
        drain_shared(ctx, m, 0, |_| {});
        if waited && ms.queues_empty() {
            report.handshake = (running, answered.min(running));
            return;
        }
        if !waited {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// Phase 2 (GC thread, mutators running): shade the snapshot's roots, trace, and preclean
/// (drain flushed SATB entries and retired buffers; barrier-free: rescan written pages) until
/// nothing is left to do concurrently. Returns the barrier-free scanner (armed before tracing)
/// for the remark.
pub(crate) fn concurrent_mark<'a>(
    ctx: &MarkCtx<'a>,
    m: &mut ConcMarker<'a>,
    roots: &[usize],
    report: &mut MarkReport,
) -> Option<PagemapScanner> {
    let ms = ctx.state;
    let wp = ctx.wp;
    let scanner = wp.then(|| arm_write_tracking(ctx, m.t.from));
    // Test-only: with the barrier "disabled", barrier-free mode skips its rescans.
    let rescans = !ctx.debug.disable_barrier;
    for &r in roots {
        m.shade(r);
    }
    ctx.debug.mark_point(MarkPoint::Started);
    ctx.debug.phase_delay(crate::debug::Phase::AfterInitialMark);
    let hooked = ctx.debug.mark_hook.is_some();
    // Raised while behind the pacer's schedule; back at its start value when this returns.
    let mut catchup = Catchup::new(ctx.catchup_nice);
    catchup.check(ctx.pacer);
    // With a hook, `Traced(n)` is reported for n = 1, 2, ... objects traced by all markers
    // together, each once and in order, by the GC thread (helpers keep marking while it is
    // parked in the hook).
    let mut reported = 0;
    let mut report_traced = |ms: &MarkingState| {
        let total = ms.traced_total.load(Ordering::SeqCst);
        while reported < total {
            reported += 1;
            ctx.debug.mark_point(MarkPoint::Traced(reported));
        }
    };
    if hooked {
        m.count_all = Some(&ms.traced_total);
    }
    // What each drain's periodic call last saw of `traced`: the catch-up check every
    // `CATCHUP_EVERY` objects, the SATB queue every `SATB_EVERY`.
    let (mut caught_up_at, mut satb_at) = (m.traced, m.traced);
    loop {
        drain_shared(ctx, m, 0, |m| {
            if hooked {
                report_traced(ms);
            }
            if m.traced - caught_up_at >= CATCHUP_EVERY {
                caught_up_at = m.traced;
                catchup.check(ctx.pacer);
            }
            if m.traced - satb_at >= SATB_EVERY {
                satb_at = m.traced;
                ms.satb.drain(|v| m.shade(v));
            }
        });
        if hooked {
            report_traced(ms);
        }
        let satb = ms.satb.drain(|v| m.shade(v));
        let retired = ms.retired.take();
        if satb == 0 && retired.is_empty() {
            break;
        }
        for (s, e) in retired {
            m.walk_black(s, e, wp);
        }
    }
    if wp {
        scan_new_large(ms, m);
    }
    if let Some(sc) = scanner.as_ref().filter(|_| rescans) {
        loop {
            let dirty = preclean_round(ctx, m, sc, report);
            if dirty <= PRECLEAN_DONE || report.preclean_rounds >= PRECLEAN_ROUNDS {
                break;
            }
        }
    }
    scanner
}

/// One barrier-free precleaning round: rescan the pages written since the last scan (and
/// re-protect them), walk retired buffers and new large objects, and trace. Returns the
/// written pages found; counted in `report`.
fn preclean_round<'a>(
    ctx: &MarkCtx<'a>,
    m: &mut ConcMarker<'a>,
    sc: &PagemapScanner,
    report: &mut MarkReport,
) -> usize {
    let ms = ctx.state;
    let dirty = rescan_dirty(ctx, sc, m);
    report.preclean_last_dirty = dirty;
    drain_shared(ctx, m, 0, |_| {});
    for (s, e) in ms.retired.take() {
        m.walk_black(s, e, true);
    }
    scan_new_large(ms, m);
    drain_shared(ctx, m, 0, |_| {});
    report.preclean_rounds += 1;
    dirty
}

/// Barrier-free mode, right before the remark pause (after concurrent planning, GC thread,
/// mutators running): a last precleaning round over what was written since precleaning ended
/// (during the ephemeron pass and planning). Returns whether precleaning is outrun (that
/// round still found more than [`PRECLEAN_DONE`] written pages, so the remark's rescan of the
/// pages written since would grow with the write rate and the time planning took): the cycle
/// then switches to the SATB barrier for its last stretch instead ([`satb_switch`]).
/// The same fallback is taken when the previous cycle's remark rescanned (or its switch found)
/// more than [`PRECLEAN_DONE`] written pages: mutators that write that much between two
/// safepoint polls outrun any precleaning, since the pages they write while the pause waits
/// for them (its time to safepoint) are rescanned inside it.
/// (`DebugConfig::force_satb_switch` makes every such cycle switch, for tests.)
pub(crate) fn wp_final_round<'a>(
    ctx: &MarkCtx<'a>,
    m: &mut ConcMarker<'a>,
    sc: &PagemapScanner,
    report: &mut MarkReport,
) -> Option<SwitchReason> {
    if ctx.debug.disable_barrier {
        return None;
    }
    let dirty = preclean_round(ctx, m, sc, report);
    let last = ctx.state.wp_last_dirty.load(Ordering::Relaxed);
    if dirty > PRECLEAN_DONE {
        Some(SwitchReason::Outrun { pages: dirty })
    } else if last > PRECLEAN_DONE {
        Some(SwitchReason::WriteRate { pages: last })
    } else if ctx.debug.force_satb_switch {
        Some(SwitchReason::Forced)
    } else {
        None
    }
}

/// Phase 4 (remark, world stopped): drain every mutator's unflushed SATB entries and walk the
/// buffers still in use (retiring them); barrier-free: rescan the roots (`roots`) and the pages
/// written since the last precleaning round; then trace to completion and switch marking off.
pub(crate) fn remark(
    ctx: &MarkCtx<'_>,
    m: &mut ConcMarker<'_>,
    g: &SpState,
    scanner: Option<&PagemapScanner>,
    roots: impl FnOnce() -> Vec<usize>,
    report: &mut MarkReport,
) {
    let ms = ctx.state;
    let wp = ctx.wp;
    let mark_top = m.t.limit;
    let traced0 = m.traced;
    let t0 = Instant::now();
    for mu in &g.mutators {
        // SAFETY: the world is stopped.
        let r = unsafe { mu.roots_mut() };
        report.remark_satb_entries += r.satb.len();
        for v in r.satb.drain(..) {
            m.shade(v);
        }
        let (s, c) = (
            mu.tlab_start.load(Ordering::Relaxed),
            mu.tlab_cursor.load(Ordering::Relaxed),
        );
        if s >= mark_top && c > s {
            report.remark_buffer_bytes += c - s;
            m.walk_black(s, c, wp);
        }
        mu.retire_tlab();
    }
    let t1 = Instant::now();
    report.remark_buffers = t1 - t0;
    if let Some(sc) = scanner.filter(|_| !ctx.debug.disable_barrier) {
        if report.satb_switch.is_none() {
            // Incremental update: roots are rescanned, and so is every page written since
            // the last preclean round.
            for r in roots() {
                m.shade(r);
            }
            report.remark_dirty_pages = rescan_dirty(ctx, sc, m);
            ms.wp_last_dirty
                .store(report.remark_dirty_pages, Ordering::Relaxed);
        }
        // (After a switch to SATB, the SATB buffers drained above and below stand for the
        // rescans: see `satb_switch`.)
        scan_new_large(ms, m);
    }
    let mut queues = t1.elapsed();
    let mut trace = Duration::ZERO;
    loop {
        let tq = Instant::now();
        report.remark_queue_entries += ms.satb.drain(|v| m.shade(v));
        for (s, e) in ms.retired.take() {
            report.remark_buffer_bytes += e - s;
            m.walk_black(s, e, wp);
        }
        let tt = Instant::now();
        queues += tt - tq;
        drain_shared(ctx, m, HELP_MIN, |_| {});
        trace += tt.elapsed();
        if ms.queues_empty() {
            break;
        }
    }
    report.remark_queues = queues;
    report.remark_trace = trace;
    // (With helper markers the scans of the helpers are not in `traced`: a lower bound.)
    report.remark_traced = m.traced - traced0;
    ms.end();
    if wp {
        let _ = ctx.arena.set_populate_protected(false);
    }
}

/// Shade `values` and trace from them to completion with the shared gray pool: the ephemeron
/// fix-point's marking ([`crate::weak`]), concurrently after phase 2 (`in_pause` false) or in
/// the remark pause after [`remark`] (true: helpers only for a large remainder).
pub(crate) fn trace_from(
    ctx: &MarkCtx<'_>,
    m: &mut ConcMarker<'_>,
    values: &[usize],
    in_pause: bool,
) {
    for &v in values {
        m.shade(v);
    }
    drain_shared(ctx, m, if in_pause { HELP_MIN } else { 0 }, |_| {});
}

/// Barrier-free marking is only correct if every write-protection and every scan succeeds:
/// retry a transient failure a few times, and otherwise stop loudly (the GC thread's panic
/// aborts the process) rather than mark from incomplete dirty information.
fn must<T, E: std::fmt::Display>(what: &str, mut f: impl FnMut() -> Result<T, E>) -> T {
    let mut last = None;
    for _ in 0..100 {
        match f() {
            Ok(v) => return v,
            Err(e) => last = Some(e.to_string()),
        }
        std::thread::yield_now();
    }
    panic!(
        "barrier-free marking: {what} failed: {}",
        last.unwrap_or_default()
    );
}

/// Barrier-free mode: scan the large objects allocated (black) since the last call.
fn scan_new_large(ms: &MarkingState, m: &mut ConcMarker<'_>) {
    for o in ms.new_large.take() {
        m.scan_words(o, 0, usize::MAX);
    }
}

/// Barrier-free mode: write-protect the used moving space and the live large objects, and map
/// fresh memory write-protected from now on, so `PAGEMAP_SCAN` reports every page written
/// while marking runs. On the GC thread, before tracing starts (writes before this point meet
/// only unscanned objects).
fn arm_write_tracking(ctx: &MarkCtx<'_>, from: usize) -> PagemapScanner {
    let arena = ctx.arena;
    {
        // Under the populate lock, so no chunk is made present between the flag and the
        // protection. (A fork waits for these two locks: a forked child needs them.)
        let _fork = crate::forkgate::Region::enter();
        let pop = ctx
            .moving
            .populated
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let _ = arena.set_populate_protected(true);
        if *pop > from {
            must("write-protecting the moving space", || {
                arena.write_protect(arena.offset_of(from), *pop - from, true)
            });
        }
    }
    {
        let _fork = crate::forkgate::Region::enter();
        let lg = ctx.large.lock();
        for (&s, &l) in lg.objects.iter() {
            must("write-protecting a large object", || {
                arena.write_protect(arena.offset_of(s), l, true)
            });
        }
    }
    // (Pages written before this point need no rescan: nothing has been traced yet. The first
    // precleaning round rescans them anyway, which is merely redundant.)
    must("opening /proc/self/pagemap", || {
        PagemapScanner::open(arena.sys())
    })
}

/// Rescan the marked objects on every page written since the last scan (and re-protect the
/// pages in the same call). Returns the number of written pages.
fn rescan_dirty(ctx: &MarkCtx<'_>, sc: &PagemapScanner, m: &mut ConcMarker<'_>) -> usize {
    let top = ctx.moving.top.load(Ordering::Acquire);
    let from = m.t.from;
    let mut pages = Vec::new();
    let span = (top.max(from + PAGE_SIZE)).div_ceil(PAGE_SIZE) * PAGE_SIZE - from;
    must("PAGEMAP_SCAN of the moving space", || {
        pages.clear();
        // SAFETY: the moving space is this heap's, and its write tracking is this marking's
        // (no one else re-protects it).
        unsafe {
            sc.written_pages(from, span, true, |s, l| {
                pages.extend((0..l / PAGE_SIZE).map(|i| s + i * PAGE_SIZE))
            })
        }
    });
    let n = pages.len();
    for pa in pages {
        m.rescan_page(pa, top);
    }
    // Large objects: one scan of the whole large-object space (its free parts are absent and
    // report nothing), each written page mapped back to the object that holds it; the words of
    // marked objects on written pages are rescanned.
    let large = ctx.large;
    let mut regions = Vec::new();
    let large_dirty = must("PAGEMAP_SCAN of the large-object space", || {
        regions.clear();
        // SAFETY: as above, for the heap's large-object space.
        unsafe { sc.written_pages(large.base, large.size, true, |s, l| regions.push((s, l))) }
    });
    // (object, first word, end word) on the written pages.
    let mut parts = Vec::new();
    {
        let _fork = crate::forkgate::Region::enter(); // a lock a forked child needs
        let lg = large.lock();
        for (s, l) in regions {
            for (&start, &len) in lg.objects.range(..s + l).rev() {
                if start + len <= s {
                    break;
                }
                let a = s.max(start);
                let b = (s + l).min(start + len);
                parts.push((start, (a - start) / WORD, (b - start) / WORD));
            }
        }
    }
    for (o, a, b) in parts {
        if large.marks.get(large.page_of(o)) {
            m.scan_words(o, a, b);
        }
    }
    n + large_dirty
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::tests::PairTree;

    /// A black buffer in a plain vector: `pairs` of 3-word objects with 2-word fillers after
    /// the objects at the indices in `fillers_after`; returns the words and the objects'
    /// (start word, size) list.
    fn black_buffer(
        types: &mut faultline_heap::object::TypeRegistry,
        objects: usize,
        fillers_after: &[usize],
    ) -> (Vec<u64>, Vec<(usize, usize)>) {
        use faultline_heap::object::{Header, TypeInfo};
        let pair = types
            .register(TypeInfo::fixed("pair", 16, &[0, 8]))
            .expect("a valid layout");
        let mut words = Vec::new();
        let mut objs = Vec::new();
        for i in 0..objects {
            objs.push((words.len(), 3));
            words.extend([Header::new(pair, 16).0, 0, 0]);
            if fillers_after.contains(&i) {
                words.extend([Header::new(TypeId::FILLER, 8).0, 0]);
            }
        }
        (words, objs)
    }

    /// The references a marker's steps keep in flight across objects are never lost: after
    /// every step they are gone or the marker's stack still holds work (so its pending token
    /// keeps a drain open), and a marker dropped between steps shades them and hands them to
    /// the pool, where another marker finishes the mark.
    #[test]
    fn references_in_flight_across_steps_reach_the_gray_set() {
        let h = PairTree::new(1023, 0);
        let pool = GrayPool::default();
        let mut a = ConcMarker::new(h.tracer(), &pool);
        a.shade(h.pair(0));
        let mut held = false;
        for _ in 0..40 {
            assert!(a.step());
            assert!(
                a.ahead.is_empty() || a.gray.stacked() > 0,
                "references in flight with an empty stack"
            );
            held |= !a.ahead.is_empty();
        }
        assert!(
            held,
            "the steps kept no reference in flight: the test tests nothing"
        );
        assert!(pool.pending() > 0);
        drop(a);
        assert!(
            pool.pending() > 0,
            "the dropped marker's work is in the pool"
        );
        let mut b = ConcMarker::new(h.tracer(), &pool);
        b.drain(|_| {});
        drop(b);
        assert_eq!(pool.pending(), 0);
        h.assert_exactly_the_tree_marked("after the second marker's drain");
    }

    /// A drain calls its periodic work once every [`EACH_STEPS`] scans of its marker, counted
    /// across drains: a run of short drains (the SATB passes at the end of concurrent marking)
    /// still reaches it.
    #[test]
    fn a_drain_calls_its_periodic_work_every_each_steps_scans_across_drains() {
        let h = PairTree::new(1023, 0);
        let pool = GrayPool::default();
        let mut m = ConcMarker::new(h.tracer(), &pool);
        // Short drains: each subtree of 31 pairs (fewer scans than EACH_STEPS) on its own.
        let short = 31;
        assert!(short < EACH_STEPS as usize);
        let mut calls = 0usize;
        let mut roots = 0;
        // The subtrees rooted at the 32 pairs of depth 5 (indices 31..63), 31 pairs each.
        for i in 31..63 {
            m.shade(h.pair(i));
            m.drain(|_| calls += 1);
            roots += 1;
        }
        assert_eq!(m.traced, roots * short);
        assert_eq!(
            calls,
            m.traced / EACH_STEPS as usize,
            "periodic calls across drains"
        );
        assert!(calls > 0);
    }

    #[test]
    fn walking_a_black_buffer_marks_each_object_once_and_exactly_its_words_live() {
        let mut types = faultline_heap::object::TypeRegistry::default();
        // 100 objects (300+ words: several bitmap words, segments across their boundaries),
        // fillers inside some segments.
        let (mut heap, objs) = black_buffer(&mut types, 100, &[3, 40, 41, 77]);
        let n = heap.len();
        let from = heap.as_mut_ptr() as usize;
        let mark = faultline_heap::bitmap::Bitmap::new(n + 64);
        let live = faultline_heap::bitmap::LiveWords::new(n + 64);
        let large = LargeSpace::new(0, 0);
        let pool = GrayPool::default();
        let t = Tracer::<Atomic>::new(from, from, &mark, &live, &large, &types);
        let mut m = ConcMarker::with(t, GrayLocal::private(&pool));
        // First a prefix that ends inside a bitmap word (the remark's walk of an active
        // buffer), then the whole buffer (its retirement): the second walk marks the rest,
        // some of whose segments were half marked by the first.
        let cut = objs[30].0 + 3;
        m.walk_black(from, from + cut * WORD, false);
        assert_eq!(m.marked, 31);
        m.walk_black(from, from + n * WORD, false);
        assert_eq!(m.marked, objs.len(), "each object counted once");
        let mut want_live = vec![false; n];
        for &(w, size) in &objs {
            want_live[w..w + size].iter_mut().for_each(|b| *b = true);
        }
        for (w, want) in want_live.iter().enumerate() {
            let is_object = objs.iter().any(|&(o, _)| o == w);
            assert_eq!(mark.get(w), is_object, "mark bit of word {w}");
            assert_eq!(live.bits.get(w), *want, "live bit of word {w}");
        }
        // A third walk changes nothing: no chunk is flagged for the planner again.
        live.plan_ahead(n.div_ceil(64) + 1);
        m.walk_black(from, from + n * WORD, false);
        assert_eq!(m.marked, objs.len());
        let (total, redone) = live.finish_prefix(n.div_ceil(64) + 1);
        assert_eq!(total, objs.len() * 3);
        assert_eq!(redone, 0, "a walk that marked nothing dirtied a chunk");
    }

    #[test]
    fn chunk_entries_name_an_object_and_a_chunk() {
        let o = 0x7f12_3456_7890usize;
        assert_eq!(chunk::encode(o, 0), Some(o));
        assert_eq!(chunk::decode(o), (o, 0));
        for k in [1, 2, 777, (1 << 16) - 1] {
            let e = chunk::encode(o, k).expect("encodable");
            assert_ne!(e, o);
            assert_eq!(chunk::decode(e), (o, k));
        }
        // Past 2^16 chunks, or an address that needs the high bits: not encodable.
        assert_eq!(chunk::encode(o, 1 << 16), None);
        assert_eq!(chunk::encode(1 << 50, 1), None);
    }

    #[test]
    fn a_mutator_answers_each_handshake_once_handing_its_buffer_over() {
        let ms = MarkingState::default();
        ms.begin(0, 0, true);
        let mut seen = 0;
        let mut buf = vec![8, 16, 24];
        // No handshake open: nothing happens.
        ms.answer_handshake(&mut seen, &mut buf);
        assert_eq!(buf.len(), 3);
        assert_eq!(ms.flush_acks.load(Ordering::SeqCst), 0);
        // A handshake: the buffer goes to the global queue, the answer is counted once.
        ms.flush_epoch.fetch_add(1, Ordering::SeqCst);
        ms.answer_handshake(&mut seen, &mut buf);
        ms.answer_handshake(&mut seen, &mut buf);
        assert!(buf.is_empty());
        let mut got = Vec::new();
        ms.satb.drain(|v| got.push(v));
        assert_eq!(got, vec![8, 16, 24]);
        assert_eq!(ms.flush_acks.load(Ordering::SeqCst), 1);
        // With the barrier off (marking over), an answer hands nothing over.
        ms.end();
        ms.flush_epoch.fetch_add(1, Ordering::SeqCst);
        buf.push(32);
        ms.answer_handshake(&mut seen, &mut buf);
        assert_eq!(buf, vec![32]);
        assert_eq!(ms.flush_acks.load(Ordering::SeqCst), 2);
    }
}

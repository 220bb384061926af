//! Mark assists: an allocating mutator that outruns concurrent marking does a bounded slice
//! of the marking itself, from the shared gray pool ([`crate::graypool`]), so a fast allocator
//! slows down smoothly instead of stopping at the space's end for a whole cycle. Compaction
//! assists ([`compaction_assist`]): a mutator whose allocation found the space exhausted
//! after the flip fills destination pages instead of sleeping until the compaction ends. When it
//! assists and how much it owes is the pacer's decision ([`crate::pacer`]); the allocation
//! slow path ([`crate::mutator`]) calls [`assist`].
//!
//! Invariants:
//! - one assist scans for at most [`ASSIST_SLICE`] (checked every [`ASSIST_CHECK`] objects)
//!   and never polls a safepoint, so no pause can begin while a mutator holds gray objects;
//!   what it has not scanned goes back to the pool when it ends (`GrayLocal`'s drop);
//! - it takes work only while marking is active: the pool holds objects only between the
//!   concurrent marker's first shade (after the bitmaps are cleared) and the remark, which
//!   drains it with the world stopped.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::graypool::GrayLocal;
use crate::inner::HeapInner;
use crate::marking::ConcMarker;
use crate::pacer::{ASSIST_CHECK, ASSIST_SLICE};
use crate::trace::{Atomic, Tracer};

/// A mark assist (a mutator's allocation slow path, marking active): scan gray objects from
/// the shared pool until this assist has scanned `owed` bytes (`None`: until the slice ends),
/// the pool is empty, or [`ASSIST_SLICE`] has passed. Returns the bytes scanned (0: there was
/// nothing to take). Leftover gray objects go back to the pool. Counted in the pacer.
///
/// Safe with respect to the cycle: the pool holds objects only between the concurrent
/// marker's first shade (after the bitmaps are cleared) and the remark, and a mutator cannot
/// be inside an assist during a pause (it polls no safepoint here).
pub(crate) fn assist(inner: &HeapInner, owed: Option<usize>) -> usize {
    let ms = &inner.marking;
    if !ms.active.load(Ordering::SeqCst) || !ms.pool.has_work() {
        return 0;
    }
    let t0 = Instant::now();
    let types = inner.types();
    let tables = &inner.tables;
    let mut m = ConcMarker::with(
        Tracer::<Atomic>::new(
            ms.mark_from.load(Ordering::SeqCst),
            ms.mark_top.load(Ordering::SeqCst),
            &tables.mark,
            &tables.live,
            &inner.large,
            &types,
        ),
        GrayLocal::private(&ms.pool),
    );
    while m.step() {
        if owed.is_some_and(|o| m.scanned_bytes >= o)
            || (m.traced % ASSIST_CHECK == 0 && t0.elapsed() >= ASSIST_SLICE)
        {
            break;
        }
    }
    let bytes = m.scanned_bytes;
    m.publish(&inner.pacer);
    drop(m);
    if bytes > 0 {
        let end = Instant::now();
        crate::waits::record(crate::waits::WaitCause::Assist, t0, end);
        inner.pacer.note_assist(end - t0, bytes);
    }
    bytes
}

/// A compaction assist: fill destination pages of the running compaction for at most
/// [`ASSIST_SLICE`]. Returns the pages taken (0: no compaction active, or nothing left to
/// take). Counted in the pacer.
pub(crate) fn compaction_assist(inner: &HeapInner) -> usize {
    let t0 = Instant::now();
    let pages = inner.compaction.assist(&inner.arena, ASSIST_SLICE);
    if pages > 0 {
        let end = Instant::now();
        crate::waits::record(crate::waits::WaitCause::Assist, t0, end);
        inner.pacer.note_compaction_assist(end - t0, pages);
    }
    pages
}

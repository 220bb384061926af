//! The per-cycle kernel choreography baseline (`Choreography::PerCycle`): what the Android
//! runtime does each cycle, kept so the volatile arena's benefit can be measured side by side.
//!
//! At the flip ([`setup`]): `UFFDIO_REGISTER` of the destination range only (a VMA split), and
//! `mremap(MREMAP_DONTUNMAP)` of the old half's pages to a new mapping, where compaction reads
//! them. At the end ([`teardown`]): `UFFDIO_UNREGISTER` (a VMA merge) and `munmap` of the
//! detached pages. The default choreography (`Arena`) does none of this: the arena is
//! registered once at creation and a cycle makes no mapping or registration call at all.
//!
//! Invariants: [`setup`] runs in the flip pause before any reference changes and either fully
//! succeeds or leaves the arena as it was (the cycle then compacts in the pause); [`teardown`]
//! runs after every destination page is mapped, when nothing reads the detached pages.

use faultline_heap::{ArenaError, ArenaOffset, VolatileArena};

/// The detached old-half pages of one cycle: `(address, length)`.
pub(crate) type Detached = (usize, usize);

/// Register the destination range `[to_offset, +len)` and detach the old half's present
/// pages `[from, old_end)`; returns where they can be read now.
pub(crate) fn setup(
    arena: &VolatileArena,
    to_offset: ArenaOffset,
    len: usize,
    from: usize,
    old_end: usize,
) -> Result<Detached, ArenaError> {
    arena.register_range(to_offset, len)?;
    match arena.detach_pages(arena.offset_of(from), old_end - from) {
        Ok(a) => Ok((a, old_end - from)),
        Err(e) => {
            let _ = arena.unregister_range();
            Err(e)
        }
    }
}

/// Unregister the destination range (the VMAs merge) and unmap the detached old pages.
pub(crate) fn teardown(arena: &VolatileArena, detached: Option<Detached>) {
    if let Err(e) = arena.unregister_range() {
        eprintln!("faultline: per-cycle choreography: unregistering failed: {e}");
    }
    if let Some((a, l)) = detached {
        // SAFETY: the detached mapping of this cycle; every page is filled, nobody reads it.
        if let Err(e) = unsafe { arena.unmap_detached(a, l) } {
            eprintln!("faultline: per-cycle choreography: {e}");
        }
    }
}

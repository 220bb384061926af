//! `fork(2)` while heaps are live.
//!
//! A child of `fork` gets a copy of every heap, but not the parent's threads (GC workers, the
//! fault handler thread, other mutators) and not a usable userfaultfd: the inherited descriptor
//! still acts on the *parent's* address space, and the child's copy of the arena is no longer
//! registered, so a destination page the parent had not filled yet would read as zeroes there.
//! Faultline therefore makes fork a quiescent point, with three `pthread_atfork` handlers
//! (installed once, when the first heap is created) over a registry of live heaps. A fork
//! does **not** wait for a running cycle: it waits for one pause at most (a remark + flip
//! pause in progress) and one batch of work of the collector's threads.
//!
//! 1. *prepare* (forking thread, before the fork): turn native in every heap the thread is
//!    attached to (so no pause waits for it from here on); wait for any other thread's fork to
//!    finish; then for every live heap stop the world and keep it stopped, *holding the
//!    safepoint lock* across the fork (taken once every world is stopped: holding one
//!    heap's while stopping the next would wait, through a running mutator of that next heap
//!    blocked on the first heap's lock in a query, for itself), so no cycle phase can change
//!    (the remark + flip pause runs with that lock held: a fork that arrives during it waits
//!    for its end), every other
//!    mutator is parked at a safepoint or in native code while the address space is copied,
//!    and no other thread can be inside the handshake's critical section at the fork (the
//!    child would inherit the lock held by a thread that does not exist there); finally close
//!    the fork gate ([`crate::forkgate`]): the collector's threads (GC thread, compaction
//!    workers, markers) finish the batch or short critical section in hand and wait, so no
//!    destination page is half filled and no lock the child needs is held at the fork;
//! 2. *parent*: if a heap's arena is a memfd (minor strategy), first wait until the child has
//!    made its private copy of it (`faultline_heap::fork`'s child-ready handshake): until then
//!    the child reads the same page cache, and a write by the parent (a mutator's store, a
//!    page filled, the old half punched at the end of the compaction) would reach the child's
//!    copy half-way; then open the gate, restart the world of every heap and leave native
//!    state (waiting, like any mutator leaving native code, if a pause began meanwhile); the
//!    running cycle simply continues;
//! 3. *child*: the arena detects that it is in a forked child (the fork generation, see
//!    `faultline_heap::fork`) and from then on never touches the userfaultfd; every memfd
//!    arena is replaced by a private copy (then the parent is told); the heap runs every
//!    later cycle stop-the-world on plain memory (`HeapInner::concurrent_now`) and reports
//!    [`FORKED_REASON`] as its fallback reason. A cycle that was running is ended here,
//!    before `fork` returns (a plain access by the embedder could not be intercepted later):
//!    *marking* is abandoned (marking and the barrier off, every mutator's SATB buffer
//!    emptied, write-protected population off; the bitmaps, gray objects and queues it leaves
//!    are never read again: the child's next collection is stop-the-world and starts from
//!    clear bitmaps; in generational mode the remembered set reports the whole old generation
//!    at the next young cycle, since an abandoned young cycle's scan took its dirty ranges);
//!    a *compaction* is finished
//!    on plain memory ([`crate::compaction::Compaction::finish_in_child`]: every destination
//!    page not yet mapped is filled from the intact old half), then the whole old half is
//!    released (the parent may have been releasing it at the fork) but for the pages of
//!    stranded pinned objects and of the old generation (a young cycle that does not promote
//!    leaves it in the half it compacted out of), and in generational mode
//!    the cycle's promotion is completed (`GenState::finish_in_child`); the large objects the
//!    flip found dead are released, as the cycle's finish would have
//!    ([`crate::space::LargeSpace::release_flip_dead`]: they wait in the large space from the
//!    flip to the cycle's end, whoever ends it). Before, the child kept them until its next
//!    collection that frees large objects, in generational mode its next full cycle: its
//!    young cycles rooted them and traced their slots, which the flip had not forwarded
//!    (stale addresses into the half it compacted out of). The cycle is then idle and the
//!    world is restarted.
//!    Mutators of threads that do not exist in the child stay parked (or native) forever:
//!    their roots stay roots, and they never hold up a pause.
//!
//! Invariants:
//! - between *prepare* and *parent*/*child*, every registered heap has `gc_active` set by the
//!   forking thread and its safepoint lock held by that thread, and the fork gate is closed
//!   (no collector thread inside a region); the list of those heaps (with the lock guards) is
//!   the forking thread's `HELD`; no heap joins the registry from *prepare*'s last read of
//!   it (after every heap it read is stopped, and once no other fork runs) until *parent* /
//!   *child* (`REGISTRY_CLOSED`: `register` waits), so every heap of the process at the fork
//!   is one *prepare* stopped;
//! - no lock that a mutator in native code may take is held across the fork by anyone else:
//!   the safepoint lock is held by the forking thread, the locks the collector's threads take
//!   outside a pause are taken inside fork-gate regions, whether a cycle is in progress
//!   ([`crate::phase`]) is an atomic word with futex waits, no lock, and the tables of the
//!   handles made for threads *prepare* does not wait for (`Pin`: the pin table and the
//!   global roots; `GlobalRoot`; `FinalizationQueue`: the weak table), the type registry
//!   (`Heap::register_type`), the heap structs' map (`Heap::register_struct`), the heap-wide
//!   root sources (`Heap::add_root_source`), the cycle history and the wait registry (the
//!   queries `Heap::history`, `Heap::mutator_waits`, `Heap::mutator_wait_log`) are locked by the
//!   forking thread from after the gate closed until *parent* / *child* (`Held::tables`), and
//!   so is the kernel measurement of `Auto` modes (`crate::mode`'s `MEASURING`, which every
//!   `Heap::new` can take: the handlers are installed before it);
//! - the child never issues a userfaultfd ioctl and never joins a thread; it never reads a
//!   page the parent left absent: it fills every such destination page before returning from
//!   `fork`;
//! - the registry holds weak references only: it never keeps a heap alive;
//! - forks are serialised (`FORKING`): one thread's *prepare* never waits on a heap another
//!   forking thread holds stopped.
//!
//! Limits (documented in the README): forking from inside the collector (an `on_cycle`,
//! `mark_hook` or `RootSource::for_each_root` callback) is not supported; a thread that is *not* a running mutator (an
//! unattached thread, or one inside its mutator's native section) but is inside another
//! heap-level call at the moment of the fork may leave a lock held in the child, as with any
//! multi-threaded fork. The heap-level queries are not such calls since audit round nine
//! (each reads atomics, or takes a lock *prepare* holds: the safepoint lock, the tables
//! above; `Heap::old_generation` took the old generation's lock until the review of round
//! nine); nor are the handle types, type and struct registration and root sources (round
//! seven; structs and root sources since the review of round nine), nor a `Heap::new`
//! or a heap's drop (probed in round nine). What may remain (read, not reproduced): the
//! once-per-process set-up of the first heap (installing these handlers and the SIGBUS
//! handler: `Once`s held for microseconds). (A thread is
//! attached to one heap at a time, see `crate::safepoint`, so no thread parked in one heap's
//! pause holds up *prepare*'s stop of another; and no heap's safepoint lock is held by
//! *prepare* while it waits for another heap's mutators.)

use core::cell::RefCell;
use core::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError, RwLockReadGuard, Weak};

use faultline_heap::arena::Backing;
use faultline_heap::fork::ChildReady;
use faultline_heap::object::TypeRegistry;
use faultline_heap::PAGE_SIZE;

use crate::inner::HeapInner;
use crate::phase::CyclePhase;
use crate::pins::{merge, subtract};
use crate::release::release_old_half;
use crate::safepoint::{attached_here, Me, MutatorShared, SpState, NATIVE};

/// The fallback reason a heap reports in a forked child.
pub const FORKED_REASON: &str =
    "forked child: the userfaultfd belongs to the parent process; collections run stop-the-world on plain memory";

static REGISTRY: Mutex<Vec<Weak<HeapInner>>> = Mutex::new(Vec::new());

thread_local! {
    /// The heaps *prepare* stopped, for *parent* / *child*: the three handlers run on the
    /// forking thread (in the child, that thread is the only one), so a thread-local carries
    /// them, safepoint-lock guards included. Never destroyed (`ManuallyDrop`: no destructor
    /// is registered), so that a fork from a later thread-local destructor at thread exit
    /// finds it (a destroyed one panicked in *prepare*, which aborts: audit round eight); it
    /// is empty, with no buffer, outside a fork, so nothing leaks.
    static HELD: ManuallyDrop<RefCell<Vec<Held>>> =
        const { ManuallyDrop::new(RefCell::new(Vec::new())) };
}

/// A heap stopped by *prepare*: its safepoint lock, held across the fork, and the forking
/// thread's mutator of it (if attached) with the state it had before it turned native.
struct Held {
    /// The safepoint lock of `heap`, held from *prepare* to *parent* / *child*, so that no other
    /// thread is inside the handshake's critical section when the address space is copied (a
    /// child would inherit the lock held by a thread that does not exist there). Declared
    /// before `heap`, so it is dropped first.
    guard: Option<MutexGuard<'static, SpState>>,
    /// The locks of `heap`'s tables that a thread with no running mutator takes (a native
    /// section's or an unattached thread's `Pin`, `GlobalRoot` or `FinalizationQueue`, and its
    /// [`crate::Heap::register_type`]), held from *prepare* (after the fork gate closed) to
    /// *parent* / *child*: *prepare* does not
    /// wait for such threads, and a child forked while one of them held a table's lock
    /// inherited it held, its first collection waiting forever (audit round seven). Released
    /// before the child's handler reads the pin table. Declared before `heap`.
    tables: Option<Tables>,
    heap: Arc<HeapInner>,
    me: Option<(Arc<MutatorShared>, u8)>,
}
/// A heap's table locks held across a fork (see [`Held::tables`]).
struct Tables {
    pins: MutexGuard<'static, crate::pins::PinInner>,
    globals: std::sync::RwLockWriteGuard<'static, crate::roots::GlobalSlots>,
    weak: MutexGuard<'static, crate::weak::Tables>,
    /// The type registry's lock, read: [`crate::Heap::register_type`] writes it (and the
    /// registry's store under it) from any thread, a native section's included.
    types: RwLockReadGuard<'static, Arc<TypeRegistry>>,
    /// The cycle history's lock: [`crate::Heap::history`] takes it from any thread, and the
    /// child's first collection records its cycle there (audit round nine: a query in a
    /// native section at the fork left the child's collections waiting forever).
    history: MutexGuard<'static, Vec<crate::stats::CycleStats>>,
    /// The wait registry's lock: [`crate::Heap::mutator_waits`] and
    /// [`crate::Heap::mutator_wait_log`] take it from any thread, and every attach and detach
    /// in the child does (round nine, as `history`).
    waits: MutexGuard<'static, crate::waits::RegistryState>,
    /// The heap structs' map: [`crate::Heap::register_struct`] takes it from any thread
    /// (review of round nine: a registration in a native section at the fork left it held in
    /// the child, whose next `register_struct` waited forever).
    structs: MutexGuard<'static, StructMap>,
    /// The heap-wide root sources: [`crate::Heap::add_root_source`] takes it from any thread
    /// (as `structs`: the child's next collection waited forever); the collector reads it only
    /// in pauses, which the stopped worlds exclude.
    sources: MutexGuard<'static, SourceList>,
}

/// `guard` with its borrow of the lock's owner unbounded (a `'static` guard).
///
/// # Safety
/// The caller keeps the lock's owner alive, and the guard's lock unmoved, until the returned
/// guard is dropped.
unsafe fn unbound<T: ?Sized>(guard: MutexGuard<'_, T>) -> MutexGuard<'static, T> {
    // SAFETY: the two types differ in a lifetime only (the same layout); the caller keeps
    // what it borrows alive (this function's contract).
    unsafe { core::mem::transmute::<MutexGuard<'_, T>, MutexGuard<'static, T>>(guard) }
}

/// The type of [`crate::inner::HeapInner::structs`].
type StructMap = std::collections::HashMap<core::any::TypeId, faultline_heap::object::TypeId>;
/// The type of [`crate::roots::HeapRoots::sources`].
type SourceList = Vec<Arc<dyn crate::roots::RootSource>>;

impl Tables {
    /// Take the table locks of `heap` (the world stopped and the fork gate closed: no pause
    /// and no collector region holds them, so only a short critical section of a native or
    /// unattached thread is waited for). Order: pins, globals, weak, types, history, waits,
    /// structs, sources (no code path holds one of them while taking another; a registration
    /// holds the types lock only while it adds its entry, never while it waits for a cycle;
    /// the history is written inside a fork-gate region; the wait registry is taken under the
    /// safepoint lock (a detach), which *prepare* holds already, or alone; the structs' map is
    /// taken alone, never across `register_type`; the root sources are read with the world
    /// stopped (under a safepoint lock *prepare* holds) and added to alone).
    fn take(heap: &Arc<HeapInner>) -> Tables {
        let pins = heap.roots.pins.lock_for_fork();
        let globals = heap.roots.globals();
        let weak = heap.roots.weak.lock_for_fork();
        let types = heap.types.read().unwrap_or_else(PoisonError::into_inner);
        let history = heap.history.lock().unwrap_or_else(PoisonError::into_inner);
        let waits = heap.waits.lock_for_fork();
        let structs = heap.structs.lock().unwrap_or_else(PoisonError::into_inner);
        let sources = heap
            .roots
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // SAFETY: (every `unbound` below) each guard borrows a table (or the type registry's,
        // the history's, the wait registry's, the structs' or the root sources' lock) of
        // `heap`, which lives as long as the `Arc` stored beside the `Tables` in the same
        // `Held`; the `tables` field is declared before `heap` and is taken (or dropped) before
        // it.
        unsafe {
            Tables {
                pins: unbound(pins),
                globals: core::mem::transmute::<
                    std::sync::RwLockWriteGuard<'_, crate::roots::GlobalSlots>,
                    std::sync::RwLockWriteGuard<'static, crate::roots::GlobalSlots>,
                >(globals),
                weak: unbound(weak),
                types: core::mem::transmute::<
                    RwLockReadGuard<'_, Arc<TypeRegistry>>,
                    RwLockReadGuard<'static, Arc<TypeRegistry>>,
                >(types),
                history: unbound(history),
                waits: unbound(waits),
                structs: unbound(structs),
                sources: unbound(sources),
            }
        }
    }

    /// Release them, the last taken first.
    fn release(self) {
        let Tables {
            pins,
            globals,
            weak,
            types,
            history,
            waits,
            structs,
            sources,
        } = self;
        drop(sources);
        drop(structs);
        drop(waits);
        drop(history);
        drop(types);
        drop(weak);
        drop(globals);
        drop(pins);
    }
}

/// Set from *prepare* to *parent*/*child*: two threads forking at once would otherwise each
/// stop some heaps and wait for the others'. An atomic, not a lock, so a child never inherits
/// it held.
static FORKING: AtomicBool = AtomicBool::new(false);
/// Set by *prepare* (under the registry's lock) once every registered heap is stopped, until
/// *parent* / *child*: [`register`] waits meanwhile, so every heap of the process at the fork
/// is one *prepare* stopped. An atomic: a child never inherits it held (its handler clears it).
static REGISTRY_CLOSED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Install the atfork handlers (once per process). [`crate::Heap::new`] calls it first thing,
/// before it may measure the kernel (`crate::mode`'s `MEASURING`, which *prepare* waits for):
/// installed only when the first heap registered, a fork during the first heap's measurement
/// ran no handler, and its child inherited the measurement half done (audit round nine).
pub(crate) fn install() {
    INSTALL.call_once(|| {
        // The arena's own child handler (the fork generation) must be in place too; asking for
        // the generation installs it.
        let _ = faultline_heap::fork::generation();
        // SAFETY: the three handlers are plain functions valid for the life of the process.
        let r = unsafe {
            libc::pthread_atfork(
                Some(prepare as unsafe extern "C" fn()),
                Some(parent as unsafe extern "C" fn()),
                Some(child as unsafe extern "C" fn()),
            )
        };
        assert_eq!(r, 0, "pthread_atfork failed: {r}");
    });
}

/// Add a heap to the fork registry (and install the atfork handlers if not yet done).
pub(crate) fn register(inner: &Arc<HeapInner>) {
    install();
    loop {
        let mut reg = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        if !REGISTRY_CLOSED.load(Ordering::SeqCst) {
            reg.retain(|w| w.strong_count() > 0);
            reg.push(Arc::downgrade(inner));
            return;
        }
        // A fork's *prepare* has stopped every registered heap: this one joins after the
        // fork (nothing waits for this thread meanwhile: a thread whose mutator runs was
        // stopped before the registry closed, and a stopped one makes no heap).
        drop(reg);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The id of the live heap whose arena holds `addr`, if any (the registry of heaps also
/// answers this, for misuse messages naming the heap a foreign reference belongs to).
pub(crate) fn heap_owning(addr: usize) -> Option<u64> {
    let heaps: Vec<Arc<HeapInner>> = REGISTRY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .collect();
    // The lock is released before the strong references drop (a heap may end here).
    heaps.iter().find(|h| h.arena.contains(addr)).map(|h| h.id)
}

/// Stop the world of `inner` (whatever phase its cycle is in) and keep its safepoint lock
/// (returned). The calling thread's own mutator (if any) is already native.
fn quiesce<'a>(inner: &'a HeapInner, me: Me<'_>) -> MutexGuard<'a, SpState> {
    loop {
        // Keep the world stopped and the lock held through the fork: a thread leaving native
        // code or parking takes this lock, and one that held it at the fork would leave it
        // held in the child forever.
        if let Some(g) = inner.sp.stop_the_world(me) {
            return g;
        }
        // Someone else stopped the world (a remark + flip pause, a collection, verification):
        // `stop_the_world` parked `me` until that stop ended and made it RUNNING again. Turn
        // native again before retrying, or the next pause of this heap would wait for a
        // thread that polls no safepoint (and this thread for that pause).
        if let Some(m) = me {
            let g = inner.sp.lock();
            m.state.store(NATIVE, Ordering::SeqCst);
            inner.sp.arrived(&g);
        }
    }
}

extern "C" fn prepare() {
    let heaps: Vec<Arc<HeapInner>> = REGISTRY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    // First turn native in every heap this thread is attached to: from here on it may wait
    // (for another fork, for a cycle), and no pause of those heaps may wait for it meanwhile.
    let mut held: Vec<Held> = heaps
        .into_iter()
        .map(|heap| {
            let me = attached_here(heap.key()).map(|m| {
                let g = heap.sp.lock();
                let was = m.state.swap(NATIVE, Ordering::SeqCst);
                heap.sp.arrived(&g);
                (m, was)
            });
            Held {
                guard: None,
                tables: None,
                heap,
                me,
            }
        })
        .collect();
    while FORKING
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let t0 = std::time::Instant::now();
    // Stop every world first, without keeping a stopped heap's lock while the next one
    // stops: a running mutator of heap A may be inside a call that takes heap B's lock (a
    // query such as `Heap::mutator_count`), and with B's lock held, A's stop waited for that
    // mutator and the mutator for the lock (a deadlock, audit round eight). A stopped world
    // stays stopped with its lock released (`gc_active` is ours: other stoppers and every
    // mutator wait for our release), as it is while any stopper waits for its mutators.
    //
    // The heaps made since the list above was read (while this thread waited for another
    // fork, or stopped the others) are found by reading the registry again after each round
    // of stops, until a read finds none; that read closes the registry (`REGISTRY_CLOSED`,
    // set under its lock), so no heap joins it until *parent* / *child*: a heap made in
    // between, with a cycle running, would have been left running in the parent's stop and
    // not ended in the child, whose collections of it would then wait forever (review of
    // round eight). (This thread is attached to none of them: it is in this handler.)
    let mut stopped_upto = 0;
    loop {
        for h in &held[stopped_upto..] {
            drop(quiesce(&h.heap, h.me.as_ref().map(|m| &m.0)));
        }
        stopped_upto = held.len();
        let reg = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        let live: Vec<Arc<HeapInner>> = reg.iter().filter_map(Weak::upgrade).collect();
        let late: Vec<Arc<HeapInner>> = live
            .iter()
            .filter(|x| !held.iter().any(|h| Arc::ptr_eq(&h.heap, x)))
            .cloned()
            .collect();
        if late.is_empty() {
            REGISTRY_CLOSED.store(true, Ordering::SeqCst);
        }
        drop(reg);
        // (The strong references drop outside the lock: a heap may end here.)
        drop(live);
        if late.is_empty() {
            break;
        }
        held.extend(late.into_iter().map(|heap| Held {
            guard: None,
            tables: None,
            heap,
            me: None,
        }));
    }
    // A kernel measurement another thread runs for `Strategy::Auto` / `FaultMode::Auto`
    // (`crate::mode`) ends first, and none starts until *parent* / *child* (round nine).
    crate::mode::hold_for_fork();
    for h in &mut held {
        // Only short critical sections hold it now: every world is stopped by this thread, and
        // stays so until *parent* / *child* resume it.
        let g = h.heap.sp.lock();
        // SAFETY: the guard borrows `h.heap.sp`, which lives as long as the `Arc` stored beside
        // it in the same `Held`; the guard field is dropped (or taken) before that `Arc`.
        let g: MutexGuard<'static, SpState> = unsafe { core::mem::transmute(g) };
        h.guard = Some(g);
    }
    // Every world is stopped: only the collector's own threads run. Let them reach a boundary.
    let stopped = std::time::Instant::now();
    crate::forkgate::close();
    for h in &mut held {
        h.tables = Some(Tables::take(&h.heap));
    }
    // A memfd arena stays shared with the child until the child has copied it: the parent
    // keeps its worlds stopped and its gate closed until the child says so.
    let memfd = held
        .iter()
        .any(|h| h.heap.arena.config().backing == Backing::Memfd);
    *AWAIT_CHILD.lock().unwrap_or_else(PoisonError::into_inner) = if memfd {
        faultline_heap::fork::expect_child_ready()
    } else {
        None
    };
    let ns = |d: std::time::Duration| d.as_nanos().min(u64::MAX as u128) as u64;
    LAST_STOP_NS.store(ns(stopped - t0), Ordering::Relaxed);
    LAST_GATE_NS.store(ns(stopped.elapsed()), Ordering::Relaxed);
    HELD.with(|x| *x.borrow_mut() = held);
}

/// Set by *prepare* when the parent must wait for the child's copy of its memfd arenas: the
/// answer expected (see `faultline_heap::fork`'s child-ready handshake); taken by *parent* /
/// *child*. Only the forking thread locks it (forks are serialised), never across the fork.
static AWAIT_CHILD: Mutex<Option<ChildReady>> = Mutex::new(None);
/// How long a parent waits for that answer at most (a child killed before it answered).
const CHILD_READY_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

static LAST_STOP_NS: AtomicU64 = AtomicU64::new(0);
static LAST_GATE_NS: AtomicU64 = AtomicU64::new(0);

/// The last fork's *prepare* in this process: how long stopping every heap's world took
/// (including the rest of a pause in progress), and how long closing the fork gate waited for
/// the collector's threads to reach a boundary (for benchmarks).
pub fn last_fork_prepare() -> (std::time::Duration, std::time::Duration) {
    (
        std::time::Duration::from_nanos(LAST_STOP_NS.load(Ordering::Relaxed)),
        std::time::Duration::from_nanos(LAST_GATE_NS.load(Ordering::Relaxed)),
    )
}

/// Restart every held heap's world, then leave native state as a mutator does (waiting for a
/// pause that may have started in between).
fn release_all(child: bool) {
    let mut held = HELD.with(|x| std::mem::take(&mut *x.borrow_mut()));
    let answer = AWAIT_CHILD
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    crate::mode::release_after_fork();
    if child {
        crate::forkgate::reset_in_child();
        crate::background::reset_in_child();
        // The arena already knows it is forked (its generation changed in the heap layer's
        // child handler); a memfd arena still shares its pages with the parent until
        // detached. Detach first (finishing a compaction writes destination pages), and all of
        // them before the parent, which waits for this, writes its heaps again.
        for h in &held {
            if let Err(e) = h.heap.arena.detach_after_fork() {
                // Continuing would write into the parent's heap.
                eprintln!(
                    "faultline: forked child cannot detach a memfd arena from the parent: {e}"
                );
                if let Some(c) = &answer {
                    // SAFETY: this forked child is about to end without touching its heaps.
                    unsafe { faultline_heap::fork::child_ready(c) };
                }
                std::process::abort();
            }
        }
        if let Some(c) = &answer {
            // SAFETY: this forked child detached every memfd arena above: it no longer shares
            // memory its parent writes.
            unsafe { faultline_heap::fork::child_ready(c) };
        }
    } else {
        if answer
            .as_ref()
            .is_some_and(|c| !faultline_heap::fork::wait_child_ready(c, CHILD_READY_LIMIT))
        {
            eprintln!(
                "faultline: a forked child did not copy its memfd heap within {CHILD_READY_LIMIT:?}; the parent goes on"
            );
        }
        crate::forkgate::open();
    }
    for h in &mut held {
        let g = h
            .guard
            .take()
            .expect("prepare holds every heap's safepoint lock");
        if let Some(t) = h.tables.take() {
            t.release();
        }
        if child {
            end_cycle_in_child(&h.heap, &g);
            // The forking thread goes on in the child under another thread id: its mutator
            // must not read as leaked by an exited thread (see `safepoint::adopt_orphans`).
            if let Some((m, _)) = &h.me {
                m.owner_forked();
            }
        }
        h.heap.sp.resume(g);
    }
    for h in &held {
        if let Some((m, was)) = &h.me {
            let g = h.heap.sp.wait_released(h.heap.sp.lock());
            m.state.store(*was, Ordering::SeqCst);
            drop(g);
            if *was == crate::safepoint::RUNNING {
                // Roots dropped by fork handlers meanwhile (it was NATIVE) were only queued.
                m.free_deferred();
            }
        }
    }
    drop(held);
    REGISTRY_CLOSED.store(false, Ordering::SeqCst);
    FORKING.store(false, Ordering::Release);
}

/// In the child, with the world stopped (`g`): end the cycle the parent was running, if any
/// (see the module documentation, *child*).
fn end_cycle_in_child(inner: &HeapInner, g: &SpState) {
    if !inner.gate.is_busy() {
        return;
    }
    // Marking (if it was on) is abandoned: nothing logs, retires or assists any more.
    inner.marking.end();
    let _ = inner.arena.set_populate_protected(false);
    for m in &g.mutators {
        // SAFETY: every mutator is stopped (parked or native) and the world is stopped by this
        // thread, the only one in the child.
        unsafe { m.roots_mut() }.satb.clear();
    }
    let after_flip = match inner.compaction.finish_in_child(&inner.arena) {
        Some(filled) => {
            CHILD_FILLED_PAGES.fetch_add(filled as u64, Ordering::Relaxed);
            true
        }
        // Compaction over (or no flip yet).
        None => inner.gate.phase() == CyclePhase::Compacting,
    };
    if !after_flip {
        // Generational: a concurrent young cycle took (and cleared) the remembered set's dirty
        // ranges after its initial mark; its flip would have forwarded the old slots it found
        // and kept those still young. Abandoned here, it did neither: the next young cycle
        // scans the whole old generation instead (else the references it took were lost: cards;
        // written pages report every old page in a child anyway).
        if let Some(gs) = inner.gen.as_ref() {
            gs.remset.report_all();
        }
    } else {
        // After the flip: the other half is the old one. Release all of it (a superset of its
        // used part; the parent may have been releasing it at the fork), nothing reads it
        // any more. No poisoning: that may take a userfaultfd call.
        // Pages holding stranded pinned objects (kept at the flip) stay: their objects live
        // there ([`crate::pins`]). So does the old generation (generational mode): a young
        // cycle that does not promote compacts its window out of the old half and leaves the
        // old generation where it is, in the half that is no longer current (before, the
        // child released it with the rest, and every promoted object read as zeroes).
        let old = 1 - inner.moving.current.load(Ordering::Relaxed);
        let lo = inner.moving.half_base[old];
        let mut keep = inner.roots.pins.stranded_pages();
        let (old_lo, old_hi) = inner.moving.old_range();
        if old_hi > old_lo {
            keep.push((
                old_lo / PAGE_SIZE * PAGE_SIZE,
                old_hi.next_multiple_of(PAGE_SIZE),
            ));
            keep = merge(keep);
        }
        for (s, e) in subtract(lo, lo + inner.moving.half_bytes, &keep) {
            release_old_half(
                &inner.arena,
                &inner.release,
                false,
                inner.arena.offset_of(s),
                e - s,
            );
        }
        // Generational: the cycle's finish (on the parent's GC thread, which the child lacks)
        // builds the crossing map over the objects it promoted and keeps dirty their references
        // to the survivors kept young; they are in place now. (A no-op when the parent's GC
        // thread did it before the fork.) Without it the child's next young cycle had no
        // crossing map for them and lost those references.
        if let Some(gs) = inner.gen.as_ref() {
            gs.finish_in_child(&inner.types());
        }
        // The large objects the flip found dead, as the finish releases them (none when the
        // parent's finish did before the fork: it takes them under the large space's lock,
        // in a fork-gate region). The lock is free here: the flip's pause and the GC
        // thread's regions take it, mutators only outside safepoints, and every mutator is
        // parked or native. Their slots were not forwarded at the flip; kept, they were roots
        // of the child's young cycles until its next full cycle.
        if let Err(e) = inner.large.release_flip_dead(&inner.arena) {
            // The rest stay allocated: the next full cycle finds them dead again.
            eprintln!("faultline: forked child: releasing dead large objects failed: {e}");
        }
    }
    inner.set_trigger(inner.used());
    CHILD_ENDED_CYCLES.fetch_add(1, Ordering::Relaxed);
    inner.gate.set_idle();
}

/// In a forked child: how many running cycles its fork handler ended, and how many destination
/// pages it filled to finish compactions (for tests and benchmarks; zero in a process that
/// was not forked during a cycle).
pub fn child_finish_counts() -> (u64, u64) {
    (
        CHILD_ENDED_CYCLES.load(Ordering::Relaxed),
        CHILD_FILLED_PAGES.load(Ordering::Relaxed),
    )
}

static CHILD_ENDED_CYCLES: AtomicU64 = AtomicU64::new(0);
static CHILD_FILLED_PAGES: AtomicU64 = AtomicU64::new(0);

extern "C" fn parent() {
    release_all(false);
}

extern "C" fn child() {
    release_all(true);
}

//! `fork(2)` while heaps are live.
//!
//! A child of `fork` gets a copy of every heap, but not the parent's threads (GC workers, the
//! fault handler thread, other mutators) and not a usable userfaultfd: the inherited descriptor
//! still acts on the *parent's* address space, and the child's copy of the arena is no longer
//! registered, so a destination page the parent had not filled yet would read as zeroes there.
//! Faultline therefore makes fork a quiescent point, with three `pthread_atfork` handlers
//! (installed once, when the first heap is created) over a registry of live heaps:
//!
//! 1. *prepare* (forking thread, before the fork): turn native in every heap the thread is
//!    attached to (so no pause waits for it from here on); wait for any other thread's fork to
//!    finish; then for every live heap: wait until no cycle is in progress (marking, remark,
//!    flip and compaction all finish: every destination page is mapped), stop the world and
//!    keep it stopped, *holding the safepoint lock* across the fork, so no new cycle phase can
//!    start, every other mutator is parked at a safepoint or in native code while the address
//!    space is copied, and no other thread can be inside the handshake's critical section at
//!    the fork (the child would inherit the lock held by a thread that does not exist there);
//! 2. *parent*: restart the world of every heap and leave native state (waiting, like any
//!    mutator leaving native code, if a pause began meanwhile); nothing else changes;
//! 3. *child*: the arena detects that it is in a forked child (the fork generation, see
//!    `faultline_heap::fork`) and from then on never touches the userfaultfd; a memfd arena
//!    is replaced by a private copy; the heap runs every later cycle stop-the-world on plain
//!    memory (`HeapInner::concurrent_now`) and reports [`FORKED_REASON`] as its fallback
//!    reason; the world is restarted. Mutators of threads that do not exist in the child stay
//!    parked (or native) forever: their roots stay roots, and they never hold up a pause.
//!
//! Invariants:
//! - between *prepare* and *parent*/*child*, every registered heap has `gc_active` set by the
//!   forking thread, its safepoint lock held by that thread, and no cycle in progress; the list
//!   of those heaps (with the lock guards) is the forking thread's `HELD`;
//! - no lock that a mutator in native code may take is held across the fork by anyone else:
//!   the safepoint lock is held by the forking thread, and whether a cycle is in progress
//!   ([`crate::phase`]) is an atomic word with futex waits, no lock;
//! - the child never issues a userfaultfd ioctl, never joins a thread, and never reads a page
//!   the parent left absent (there is none: compaction was complete);
//! - the registry holds weak references only: it never keeps a heap alive;
//! - forks are serialised (`FORKING`): one thread's *prepare* never waits on a heap another
//!   forking thread holds stopped.
//!
//! Limits (documented in the README): forking from inside the collector (an `on_cycle` or
//! `mark_hook` callback, which run while a cycle is in progress) deadlocks, as would any other
//! wait for the end of the running cycle there; a thread that is *not* a mutator but is inside
//! a heap call at the moment of the fork (e.g. [`crate::Heap::verify`] from an unattached
//! thread) may leave a lock held in the child, as with any multi-threaded fork; a thread
//! attached to several heaps can hold up *prepare* (parked in one heap's pause, it cannot
//! reach a safepoint of the next), exactly as it would hold up two simultaneous collections.

use core::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError, Weak};

use crate::inner::HeapInner;
use crate::safepoint::{attached_here, Me, MutatorShared, SpState, NATIVE};

/// The fallback reason a heap reports in a forked child.
pub const FORKED_REASON: &str =
    "forked child: the userfaultfd belongs to the parent process; collections run stop-the-world on plain memory";

static REGISTRY: Mutex<Vec<Weak<HeapInner>>> = Mutex::new(Vec::new());

thread_local! {
    /// The heaps *prepare* stopped, for *parent* / *child*: the three handlers run on the
    /// forking thread (in the child, that thread is the only one), so a thread-local carries
    /// them, safepoint-lock guards included.
    static HELD: RefCell<Vec<Held>> = const { RefCell::new(Vec::new()) };
}

/// A heap stopped by *prepare*: its safepoint lock, held across the fork, and the forking
/// thread's mutator of it (if attached) with the state it had before it turned native.
struct Held {
    /// The safepoint lock of `heap`, held from *prepare* to *parent* / *child*, so that no other
    /// thread is inside the handshake's critical section when the address space is copied (a
    /// child would inherit the lock held by a thread that does not exist there). Declared
    /// before `heap`, so it is dropped first.
    guard: Option<MutexGuard<'static, SpState>>,
    heap: Arc<HeapInner>,
    me: Option<(Arc<MutatorShared>, u8)>,
}
/// Set from *prepare* to *parent*/*child*: two threads forking at once would otherwise each
/// stop some heaps and wait for the others'. An atomic, not a lock, so a child never inherits
/// it held.
static FORKING: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Add a heap to the fork registry (and install the atfork handlers the first time).
pub(crate) fn register(inner: &Arc<HeapInner>) {
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
    let mut reg = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    reg.retain(|w| w.strong_count() > 0);
    reg.push(Arc::downgrade(inner));
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

/// Make `inner` quiescent: no cycle in progress, the world stopped by this thread, and its
/// safepoint lock held (returned). The calling thread's own mutator (if any) is already native.
fn quiesce<'a>(inner: &'a HeapInner, me: Me<'_>) -> MutexGuard<'a, SpState> {
    loop {
        inner.gate.wait_idle();
        let Some(g) = inner.sp.stop_the_world(me) else {
            continue; // Someone else stopped the world; try again when they are done.
        };
        if inner.gate.is_busy() {
            // A cycle started between the wait and the stop: let it run and wait again.
            inner.sp.resume(g);
            continue;
        }
        // Keep the world stopped and the lock held through the fork: a thread leaving native
        // code or parking takes this lock, and one that held it at the fork would leave it held
        // in the child forever.
        return g;
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
                let _g = heap.sp.lock();
                let was = m.state.swap(NATIVE, Ordering::SeqCst);
                heap.sp.notify();
                (m, was)
            });
            Held {
                guard: None,
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
    for h in &mut held {
        let g = quiesce(&h.heap, h.me.as_ref().map(|m| &m.0));
        // SAFETY: the guard borrows `h.heap.sp`, which lives as long as the `Arc` stored beside
        // it in the same `Held`; the guard field is dropped (or taken) before that `Arc`.
        let g: MutexGuard<'static, SpState> = unsafe { core::mem::transmute(g) };
        h.guard = Some(g);
    }
    HELD.with(|x| *x.borrow_mut() = held);
}

/// Restart every held heap's world, then leave native state as a mutator does (waiting for a
/// pause that may have started in between).
fn release_all(child: bool) {
    let mut held = HELD.with(|x| std::mem::take(&mut *x.borrow_mut()));
    for h in &mut held {
        if child {
            // The arena already knows it is forked (its generation changed in the heap layer's
            // child handler); a memfd arena still shares its pages with the parent until
            // detached.
            if let Err(e) = h.heap.arena.detach_after_fork() {
                // Continuing would write into the parent's heap.
                eprintln!(
                    "faultline: forked child cannot detach a memfd arena from the parent: {e}"
                );
                std::process::abort();
            }
        }
        let g = h
            .guard
            .take()
            .expect("prepare holds every heap's safepoint lock");
        h.heap.sp.resume(g);
    }
    for h in &held {
        if let Some((m, was)) = &h.me {
            let mut g = h.heap.sp.lock();
            while g.gc_active {
                g = h.heap.sp.wait(g);
            }
            m.state.store(*was, Ordering::SeqCst);
        }
    }
    drop(held);
    FORKING.store(false, Ordering::Release);
}

extern "C" fn parent() {
    release_all(false);
}

extern "C" fn child() {
    release_all(true);
}

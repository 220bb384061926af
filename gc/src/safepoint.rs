//! The safepoint handshake: stopping and restarting the mutators of one heap, mutator thread
//! states, and the per-mutator state the collector reads while they are stopped.
//!
//! # Handshake
//!
//! ```text
//!  collector: lock; gc_active = true; requested = true;
//!             wait until every other mutator is PARKED or NATIVE;   <- time to safepoint
//!             ... pause work (the lock stays held) ...
//!             requested = false; gc_active = false; notify_all; unlock
//!  mutator at a safepoint poll: if requested { lock; state = PARKED; notify_all;
//!             wait while gc_active; state = RUNNING }
//!  native:    enter: lock; state = NATIVE; notify_all.  leave: lock; wait while gc_active;
//!             state = RUNNING
//! ```
//!
//! Invariants:
//! - [`SpState`] (behind `Safepoint::lock`) holds the list of attached mutators; a mutator's
//!   `state` only changes under that lock, so the collector's "everyone stopped" check is
//!   exact;
//! - while `gc_active` is set, no attached mutator other than the collector touches the heap or
//!   its own roots: parked ones wait on the condition variable, native ones run code that
//!   cannot reach the heap (the native closure is `Send`, so it cannot hold a `Root`, a
//!   `Local` or the `Mutator`);
//! - `MutatorShared::roots` is touched only by the owning thread while it is RUNNING, or by the
//!   thread that stopped the world while the owner is PARKED or NATIVE;
//! - `[tlab_cursor, tlab_limit)` is written by the owner while RUNNING and reset by the
//!   collector only with the world stopped.

use core::cell::{RefCell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::reentry::{self, Callback};
use crate::stats::MutatorTts;
use crate::ttsdiag;

use crate::roots::{visit_source, HeapRoots, LocalRoots};
use crate::timeline::PauseTimeline;

/// Mutator state: running Rust code that may touch the heap.
pub(crate) const RUNNING: u8 = 0;
/// Mutator state: stopped at a safepoint poll, waiting for the pause to end.
pub(crate) const PARKED: u8 = 1;
/// Mutator state: in a native section (cannot touch the heap; counts as stopped).
pub(crate) const NATIVE: u8 = 2;

/// The part of a mutator the collector sees.
pub(crate) struct MutatorShared {
    /// Unique within the heap (1-based).
    pub id: u64,
    /// The heap's id (see [`crate::inner::HeapInner::id`]).
    pub heap_id: u64,
    /// The name given at attach, if any (for diagnostics).
    pub name: Option<Arc<str>>,
    /// Set when the `Mutator` is dropped: its roots are no longer scanned, so a `Root` still
    /// pointing here must not be read.
    pub detached: AtomicBool,
    /// Time to safepoint in the last stop of the world, in nanoseconds (0 if it was already
    /// stopped, or is the thread that stopped the world). Written under the safepoint lock.
    pub last_tts_ns: AtomicU64,
    /// RUNNING, PARKED or NATIVE (changed under the safepoint lock).
    pub state: AtomicU8,
    /// Start of the current allocation buffer.
    pub tlab_start: AtomicUsize,
    /// Bump pointer of the current allocation buffer.
    pub tlab_cursor: AtomicUsize,
    /// End of the current allocation buffer.
    pub tlab_limit: AtomicUsize,
    /// The mutator's roots (see the module invariants).
    pub roots: UnsafeCell<LocalRoots>,
    /// The owning thread's kernel id (a `Mutator` is not `Send`).
    pub tid: libc::id_t,
    /// Time-to-safepoint diagnostics (see [`crate::ttsdiag`]).
    pub probe: ttsdiag::Probe,
}

// SAFETY: `roots` is accessed by the owner while RUNNING and by the collector only while the
// owner is stopped; the handshake (mutex + condvar) orders those accesses. Everything else is
// atomic.
unsafe impl Sync for MutatorShared {}
// SAFETY: as above; the root sources are Send + Sync.
unsafe impl Send for MutatorShared {}

impl MutatorShared {
    /// A running mutator with empty roots.
    pub(crate) fn new(id: u64, heap_id: u64, name: Option<Arc<str>>, satb_capacity: usize) -> Self {
        MutatorShared {
            id,
            heap_id,
            name,
            detached: AtomicBool::new(false),
            last_tts_ns: AtomicU64::new(0),
            state: AtomicU8::new(RUNNING),
            tlab_start: AtomicUsize::new(0),
            tlab_cursor: AtomicUsize::new(0),
            tlab_limit: AtomicUsize::new(0),
            roots: UnsafeCell::new(LocalRoots {
                satb: Vec::with_capacity(satb_capacity),
                ..LocalRoots::default()
            }),
            tid: crate::background::gettid(),
            probe: ttsdiag::Probe::default(),
        }
    }

    /// The roots.
    ///
    /// # Safety
    /// The owner must be stopped (PARKED or NATIVE) with the world stopped by the caller, or
    /// the caller must be the owner, RUNNING.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn roots_mut(&self) -> &mut LocalRoots {
        // SAFETY: exclusive by the caller's contract.
        unsafe { &mut *self.roots.get() }
    }

    /// Retire the allocation buffer (the world is stopped, or the caller is the owner).
    pub(crate) fn retire_tlab(&self) {
        self.tlab_start.store(0, Ordering::Relaxed);
        self.tlab_cursor.store(0, Ordering::Relaxed);
        self.tlab_limit.store(0, Ordering::Relaxed);
    }
}

/// The state behind the safepoint lock.
pub(crate) struct SpState {
    /// Attached mutators.
    pub mutators: Vec<Arc<MutatorShared>>,
    /// The world is stopped (or being stopped) by some thread.
    pub gc_active: bool,
    /// Start and end of every stop of the world (see [`crate::timeline`]).
    pub timeline: PauseTimeline,
    /// When the last mutator of the latest stop of the world stopped (for `crate::waits`).
    pub stopped_at: Option<std::time::Instant>,
    /// When the stop in progress began (`None` when the world runs).
    pub stop_began: Option<Instant>,
    /// When the latest stop of the world ended (for the release diagnostics).
    pub released_at: Option<Instant>,
    /// Stops of the world so far (for the diagnostics' lines).
    pub stops: u64,
    /// The diagnostics' rows of the stop in progress, printed after its release.
    diag_rows: Vec<ttsdiag::Row>,
}

impl SpState {
    /// Time to safepoint of every mutator in the last (or current) stop of the world.
    pub(crate) fn tts_by_mutator(&self) -> Vec<MutatorTts> {
        self.mutators
            .iter()
            .map(|m| MutatorTts {
                mutator: m.id,
                name: m.name.as_deref().map(str::to_string),
                time: Duration::from_nanos(m.last_tts_ns.load(Ordering::Relaxed)),
            })
            .collect()
    }

    /// `me` stops for the pause in progress (under the lock): record its time to safepoint.
    fn note_stopped(&self, me: &MutatorShared) {
        if let Some(t0) = self.stop_began {
            let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
            me.last_tts_ns.store(ns, Ordering::Relaxed);
            if ttsdiag::on() {
                me.probe.at_arrival(me.tid);
            }
        }
    }
}

/// The handshake of one heap.
pub(crate) struct Safepoint {
    /// Mutators poll this at safepoints.
    pub requested: AtomicBool,
    lock: Mutex<SpState>,
    cv: Condvar,
}

impl Default for Safepoint {
    fn default() -> Self {
        Safepoint {
            requested: AtomicBool::new(false),
            lock: Mutex::new(SpState {
                mutators: Vec::new(),
                gc_active: false,
                timeline: PauseTimeline::default(),
                stopped_at: None,
                stop_began: None,
                released_at: None,
                stops: 0,
                diag_rows: Vec::new(),
            }),
            cv: Condvar::new(),
        }
    }
}

/// `me` is the calling thread's own mutator of this heap, if it has one.
pub(crate) type Me<'a> = Option<&'a Arc<MutatorShared>>;

impl Safepoint {
    /// Take the safepoint lock.
    ///
    /// # Panics
    /// From inside [`crate::RootSource::for_each_root`], which runs with the world stopped by
    /// the calling thread (the lock held): taking it again would deadlock.
    pub(crate) fn lock(&self) -> MutexGuard<'_, SpState> {
        if reentry::current() == Some(Callback::RootSource) {
            panic!(
                "a heap operation that needs the safepoint (attach, dropping a Mutator, a native section, mutator_count, pause_timeline) was called from inside RootSource::for_each_root, which runs with the world stopped by this thread: it would deadlock"
            );
        }
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait on the handshake's condition variable.
    pub(crate) fn wait<'a>(&self, g: MutexGuard<'a, SpState>) -> MutexGuard<'a, SpState> {
        self.cv.wait(g).unwrap_or_else(PoisonError::into_inner)
    }

    /// Wake every waiter.
    pub(crate) fn notify(&self) {
        self.cv.notify_all();
    }

    /// Stop every mutator but `me`. Returns `None` (after parking `me` until the other stop
    /// ends) if another thread already stopped the world.
    pub(crate) fn stop_the_world(&self, me: Me<'_>) -> Option<MutexGuard<'_, SpState>> {
        let mut g = self.lock();
        if g.gc_active {
            // Someone else collects: behave as a parked mutator until it is done.
            let arrived = std::time::Instant::now();
            if let Some(me) = me {
                g.note_stopped(me);
                me.state.store(PARKED, Ordering::SeqCst);
                self.notify();
            }
            while g.gc_active {
                g = self.wait(g);
            }
            if let Some(me) = me {
                me.state.store(RUNNING, Ordering::SeqCst);
                crate::waits::record_parked(arrived, g.stopped_at, std::time::Instant::now());
            }
            return None;
        }
        g.gc_active = true;
        if ttsdiag::on() {
            for m in &g.mutators {
                let running = m.state.load(Ordering::SeqCst) == RUNNING
                    && !me.is_some_and(|me| Arc::ptr_eq(me, m));
                m.probe.at_request(m.tid, running);
            }
        }
        let now = Instant::now();
        g.timeline.begin(now);
        g.stop_began = Some(now);
        g.stops += 1;
        for m in &g.mutators {
            m.last_tts_ns.store(0, Ordering::Relaxed);
        }
        self.requested.store(true, Ordering::SeqCst);
        loop {
            let all_stopped = g.mutators.iter().all(|m| {
                me.is_some_and(|me| Arc::ptr_eq(me, m)) || {
                    let s = m.state.load(Ordering::SeqCst);
                    s == PARKED || s == NATIVE
                }
            });
            if all_stopped {
                let at = Instant::now();
                g.stopped_at = Some(at);
                if ttsdiag::on() {
                    g.diag_rows = g
                        .mutators
                        .iter()
                        .map(|m| {
                            ttsdiag::row(m.id, m.last_tts_ns.load(Ordering::Relaxed), &m.probe)
                        })
                        .collect();
                }
                return Some(g);
            }
            g = self.wait(g);
        }
    }

    /// Stop the world, retrying until this thread is the one that stopped it.
    pub(crate) fn stop_the_world_as(&self, me: Me<'_>) -> MutexGuard<'_, SpState> {
        loop {
            if let Some(g) = self.stop_the_world(me) {
                return g;
            }
        }
    }

    /// Restart the world.
    pub(crate) fn resume(&self, mut g: MutexGuard<'_, SpState>) {
        self.requested.store(false, Ordering::SeqCst);
        g.gc_active = false;
        let now = Instant::now();
        let tts = g
            .stop_began
            .zip(g.stopped_at)
            .map(|(a, b)| b.saturating_duration_since(a));
        g.stop_began = None;
        g.released_at = Some(now);
        g.timeline.end(now);
        let rows = std::mem::take(&mut g.diag_rows);
        let seq = g.stops;
        drop(g);
        self.notify();
        if let (true, Some(tts)) = (ttsdiag::on(), tts) {
            ttsdiag::report_stop(seq, tts, &rows);
        }
    }

    /// The mutator `me` stops at a poll until the pause ends.
    pub(crate) fn park(&self, me: &MutatorShared) {
        let arrived = std::time::Instant::now();
        let mut g = self.lock();
        let waited = g.gc_active;
        let diag = if waited {
            ttsdiag::Release::before_wait(me.tid)
        } else {
            None
        };
        while g.gc_active {
            if me.state.load(Ordering::Relaxed) == RUNNING {
                g.note_stopped(me);
            }
            me.state.store(PARKED, Ordering::SeqCst);
            self.notify();
            g = self.wait(g);
        }
        me.state.store(RUNNING, Ordering::SeqCst);
        if waited {
            crate::waits::record_parked(arrived, g.stopped_at, std::time::Instant::now());
        }
        if let Some(d) = diag {
            let released = g.released_at;
            drop(g);
            d.after_wait(me.tid, me.id, released);
        }
    }

    /// `me` enters a native section.
    pub(crate) fn enter_native(&self, me: &MutatorShared) {
        let g = self.lock();
        if g.gc_active {
            g.note_stopped(me);
        }
        me.state.store(NATIVE, Ordering::SeqCst);
        self.notify();
    }

    /// `me` leaves a native section (waiting for a pause in progress to end).
    pub(crate) fn leave_native(&self, me: &MutatorShared) {
        let arrived = std::time::Instant::now();
        let mut g = self.lock();
        let waited = g.gc_active;
        while g.gc_active {
            g = self.wait(g);
        }
        me.state.store(RUNNING, Ordering::SeqCst);
        if waited {
            // Came back from native code into a pause: the rest of the pause is a wait.
            crate::waits::record_parked(arrived, None, std::time::Instant::now());
        }
    }

    /// Run `f` (a wait) in native state if the calling thread is a mutator of this heap, so
    /// that no pause waits for it meanwhile.
    pub(crate) fn wait_native<R>(&self, me: Me<'_>, f: impl FnOnce() -> R) -> R {
        match me {
            None => f(),
            Some(me) => {
                self.enter_native(me);
                let r = f();
                self.leave_native(me);
                r
            }
        }
    }

    /// Add a mutator (waiting for a pause in progress to end).
    pub(crate) fn attach(&self, m: Arc<MutatorShared>) {
        let mut g = self.lock();
        while g.gc_active {
            g = self.wait(g);
        }
        g.mutators.push(m);
    }
}

/// Visit every root slot of a stopped world: each mutator's handles, value stack and root
/// sources, then the heap's global roots and root sources. `f` may rewrite a slot.
pub(crate) fn visit_roots(g: &SpState, heap: &HeapRoots, f: &mut dyn FnMut(&mut usize)) {
    for m in &g.mutators {
        // SAFETY: every mutator is stopped (or is the collecting thread itself, which is inside
        // this call and touches no roots meanwhile).
        let r = unsafe { m.roots_mut() };
        for h in r.handles.iter_mut() {
            f(h);
        }
        for s in r.stack.iter_mut() {
            f(s);
        }
        for src in &r.sources {
            visit_source(src.as_ref(), heap.visit_eras(), f);
        }
    }
    heap.visit(f);
}

thread_local! {
    /// The mutators attached on this thread, by heap key: lets heap-level waits from an
    /// attached thread wait in native state (so they cannot hold up a pause).
    static ATTACHED: RefCell<Vec<(u64, Arc<MutatorShared>)>> = const { RefCell::new(Vec::new()) };
}

/// Record that this thread attached `m` to the heap identified by `key`.
pub(crate) fn note_attached(key: u64, m: &Arc<MutatorShared>) {
    ATTACHED.with(|a| a.borrow_mut().push((key, m.clone())));
}

/// Forget `m` (it detaches).
pub(crate) fn note_detached(key: u64, m: &Arc<MutatorShared>) {
    ATTACHED.with(|a| {
        a.borrow_mut()
            .retain(|(k, x)| !(*k == key && Arc::ptr_eq(x, m)))
    });
}

/// The mutator this thread has attached to the heap identified by `key`, if any.
pub(crate) fn attached_here(key: u64) -> Option<Arc<MutatorShared>> {
    ATTACHED.with(|a| {
        a.borrow()
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, m)| m.clone())
    })
}

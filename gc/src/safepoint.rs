//! The safepoint handshake: stopping and restarting the mutators of one heap, mutator thread
//! states, and the per-mutator state the collector reads while they are stopped.
//!
//! # Handshake
//!
//! ```text
//!  collector: lock; gc_active = true; requested = true;
//!             wait on `arrivals` until every other mutator is PARKED or NATIVE;  <- tts
//!             ... pause work (the lock stays held) ...
//!             requested = false; gc_active = false; unlock; `released`.notify_all
//!  mutator at a safepoint poll: if requested { lock; state = PARKED; arrived();
//!             wait on `released` while gc_active; state = RUNNING }
//!  native:    enter: lock; state = NATIVE; arrived().  leave: lock; wait on `released`
//!             while gc_active; state = RUNNING
//!  arrived(): if a stop is in progress and every mutator but the stopper is now stopped,
//!             `arrivals`.notify_one (the stopper is its only waiter)
//! ```
//!
//! Two condition variables, so that nobody wakes for nothing: the stopping thread sleeps on
//! `arrivals` and is woken once, by the last arrival (not by every one); parked mutators and
//! everyone else waiting for a stop to end sleep on `released` and are woken once, by the
//! release (not by every later arrival). On a machine with fewer CPUs than threads those
//! futile wake-ups take CPU from the mutators still on their way to a poll.
//! `SpState::futile_wakeups` counts the wake-ups that found their condition still unmet.
//!
//! A stopper that has waited [`stall_report_after`] (10 s) for its mutators says on stderr which
//! ones it waits for, once per stop, and goes on waiting: a leaked `Mutator` (or a thread that
//! blocks outside `native`) cannot be told from a busy one, so the hang it causes is named, not
//! broken (the stopper looks at the clock every [`STALL_CHECK`]; such a timeout is not counted
//! as a futile wake-up). One case can be told: a late mutator whose *thread has exited* (its
//! `Mutator` leaked there, so no code can ever use it again: a `Mutator` is neither `Send` nor
//! `Sync`). At each such timeout the stopper asks the kernel whether each late mutator's thread
//! still exists (and, its thread id taken by a later thread, tells the two apart by the start
//! time recorded at attach); one that does not is turned NATIVE for good (its roots stay roots) and named
//! on stderr once ([`adopt_orphans`]), and the stop goes on without it.
//!
//! # One heap per thread
//!
//! A thread is attached to at most one heap at a time ([`attached_elsewhere`]: attach refuses
//! a second heap), and a heap-level wait on another heap (collect, verify, wait for a cycle,
//! `GlobalRoot::new` of a reference) is refused while the thread's own mutator runs
//! ([`running_elsewhere`]; inside `Mutator::native` it is allowed). Otherwise two threads attached to heaps A and B could each
//! wait in one heap while their mutator of the other runs, each stop waiting for the other
//! thread: a deadlock. The running mutator cannot be turned native for such a wait instead, as
//! a `Local` of it (a raw address, valid until its next safepoint) may be live across the call.
//! So a thread that blocks in a heap's call is stopped in every heap it is attached to, and no
//! stop waits, through a chain of threads, for itself.
//!
//! Invariants:
//! - [`SpState`] (behind `Safepoint::lock`) holds the list of attached mutators; a mutator's
//!   `state` only changes under that lock, so the collector's "everyone stopped" check is
//!   exact;
//! - while `gc_active` is set, no attached mutator other than the collector touches the heap or
//!   its own roots: parked ones wait on the condition variable, native ones run code that
//!   cannot reach the heap (the native closure is `Send`, so it cannot hold a `Root`, a
//!   `Local` or the `Mutator`; a `Root` it reaches through a thread-local and drops only
//!   queues its slot, freed when the owner runs again: [`MutatorShared::drop_root`]);
//! - `MutatorShared::roots` is touched only by the owning thread while it is RUNNING (or after
//!   its `Mutator` detached: a late `Root` drop), or by the thread that stopped the world while
//!   the owner is PARKED or NATIVE; a mutator NATIVE in its own native section stays NATIVE
//!   through heap-level waits made there ([`Safepoint::wait_native`], the parked branch of
//!   [`Safepoint::stop_the_world`]);
//! - `[tlab_cursor, tlab_limit)` is written by the owner while RUNNING and reset by the
//!   collector only with the world stopped;
//! - every change that can complete a stop (a state turning PARKED or NATIVE, a mutator
//!   leaving the list) calls [`Safepoint::arrived`] under the lock, so the stopper, which
//!   checks under the same lock before each wait, never sleeps through its last arrival; at
//!   most one thread waits on `arrivals` (the one that set `gc_active`).

use core::cell::{RefCell, UnsafeCell};
use core::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::reentry::{self, Callback};
use crate::stats::MutatorTts;
use crate::ttsdiag;

use crate::roots::{visit_source, HeapRoots, LocalRoots};
use crate::timeline::PauseTimeline;

/// [`MutatorShared`]'s start time when it could not be read.
const NO_START: u64 = u64::MAX;

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
    /// The owning thread's kernel id (a `Mutator` is not `Send`). Rewritten by a forked
    /// child's fork handler for the forking thread's mutators ([`MutatorShared::owner_forked`]):
    /// the child's copy of that thread has another id.
    tid: AtomicU32,
    /// The owning thread's start time (field 22 of `/proc/thread-self/stat`, clock ticks since
    /// boot), read at attach: a later thread that reuses `tid` has another one, so it is not
    /// mistaken for the owner ([`crate::background::thread_exited`]). [`NO_START`] where
    /// `/proc` is unreadable (then a reused id reads as alive, as before).
    tid_start: AtomicU64,
    /// Time-to-safepoint diagnostics (see [`crate::ttsdiag`]).
    pub probe: ttsdiag::Probe,
    /// Slots of `Root`s the owner dropped while NATIVE (a `Root` reached through a thread-local
    /// inside a native section, while a pause may be visiting `roots`): freed by the owner
    /// once it runs again ([`MutatorShared::free_deferred`]); their objects stay rooted until
    /// then.
    deferred: Mutex<Vec<u32>>,
    /// `deferred` is not empty.
    has_deferred: AtomicBool,
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
        let me = MutatorShared {
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
            tid: AtomicU32::new(0),
            tid_start: AtomicU64::new(NO_START),
            probe: ttsdiag::Probe::default(),
            deferred: Mutex::new(Vec::new()),
            has_deferred: AtomicBool::new(false),
        };
        me.owned_by_this_thread();
        me
    }

    /// Record the calling thread as the owner: its kernel id and start time.
    fn owned_by_this_thread(&self) {
        let tid = crate::background::gettid();
        let start = crate::background::thread_start_time("thread-self", tid);
        self.tid.store(tid, Ordering::Relaxed);
        self.tid_start
            .store(start.unwrap_or(NO_START), Ordering::Relaxed);
    }

    /// The owning thread's kernel id.
    pub(crate) fn tid(&self) -> libc::id_t {
        self.tid.load(Ordering::Relaxed)
    }

    /// The owning thread's start time, if it could be read.
    pub(crate) fn tid_start(&self) -> Option<u64> {
        Some(self.tid_start.load(Ordering::Relaxed)).filter(|&s| s != NO_START)
    }

    /// In a forked child, on the forking thread (the owner): the child's copy of the thread has
    /// its own id and start time. Without this the stopper of a later pause took the running
    /// owner for a thread that had exited (its parent's id names no thread of the child) and
    /// collected under it.
    pub(crate) fn owner_forked(&self) {
        self.owned_by_this_thread();
    }

    /// The roots.
    ///
    /// # Safety
    /// The owner must be stopped (PARKED or NATIVE) with the world stopped by the caller, or
    /// the caller must be the owner, RUNNING, or the owner after its `Mutator` detached (no
    /// collector visits the roots any more).
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn roots_mut(&self) -> &mut LocalRoots {
        // SAFETY: exclusive by the caller's contract.
        unsafe { &mut *self.roots.get() }
    }

    /// The owner thread drops its `Root` of slot `index`: the slot is freed now if the owner
    /// is RUNNING (or detached: nothing visits its roots any more); while it is NATIVE (the
    /// `Root` reached through a thread-local inside a native section) a pause on another
    /// thread may be visiting the table, so the slot is only queued, and freed when the owner
    /// leaves native state.
    pub(crate) fn drop_root(&self, index: u32) {
        if self.state.load(Ordering::SeqCst) == NATIVE && !self.detached.load(Ordering::SeqCst) {
            self.deferred
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(index);
            self.has_deferred.store(true, Ordering::Relaxed);
            return;
        }
        // SAFETY: the owner thread (a `Root` is not `Send`), RUNNING (a pause waits for it to
        // park before it visits the table), or detached (no collector visits the table).
        unsafe { self.roots_mut() }.free_slot(index);
    }

    /// The owner, RUNNING again after a native section (or at a fork's end, or creating a
    /// root): free the slots of the `Root`s it dropped meanwhile
    /// ([`MutatorShared::drop_root`]).
    pub(crate) fn free_deferred(&self) {
        if !self.has_deferred.load(Ordering::Relaxed) {
            return;
        }
        let mut d = self.deferred.lock().unwrap_or_else(PoisonError::into_inner);
        self.has_deferred.store(false, Ordering::Relaxed);
        // SAFETY: the owner, RUNNING (called by `Safepoint::leave_native` on its thread).
        let r = unsafe { self.roots_mut() };
        for index in d.drain(..) {
            r.free_slot(index);
        }
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
    /// The stop in progress was requested by this mutator (`None`: by a thread without one,
    /// or no stop).
    stopper: Option<u64>,
    /// Wake-ups from a wait of this handshake that found their condition unmet (the stopper:
    /// not everyone stopped; a waiter for the release: the world still stopped).
    pub futile_wakeups: u64,
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

    /// Every attached mutator but the stopper is PARKED or NATIVE.
    fn all_stopped(&self) -> bool {
        self.mutators.iter().all(|m| {
            Some(m.id) == self.stopper || {
                let s = m.state.load(Ordering::SeqCst);
                s == PARKED || s == NATIVE
            }
        })
    }

    /// `me` stops for the pause in progress (under the lock): record its time to safepoint.
    fn note_stopped(&self, me: &MutatorShared) {
        if let Some(t0) = self.stop_began {
            let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
            me.last_tts_ns.store(ns, Ordering::Relaxed);
            if ttsdiag::on() {
                me.probe.at_arrival(me.tid());
            }
        }
    }
}

/// The handshake of one heap.
pub(crate) struct Safepoint {
    /// Mutators poll this at safepoints.
    pub requested: AtomicBool,
    lock: Mutex<SpState>,
    /// The stopper waits here for the last arrival.
    arrivals: Condvar,
    /// Everyone else waits here for the end of a stop.
    released: Condvar,
}

/// How often a stopper waiting for the mutators looks at the clock (for [`report_stall`]) and at
/// the late mutators' threads (for [`adopt_orphans`]).
const STALL_CHECK: Duration = Duration::from_millis(50);

/// How long a stop of the world waits for the mutators before it says so on stderr (once per
/// stop; it keeps waiting): 10 s, or `FAULTLINE_STALL_REPORT_MS` from the environment (read
/// once).
pub(crate) fn stall_report_after() -> Duration {
    static AFTER: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *AFTER.get_or_init(|| {
        Duration::from_millis(
            crate::config::env_number::<u64>("FAULTLINE_STALL_REPORT_MS", |_| true)
                .unwrap_or(10_000),
        )
    })
}

/// Say which mutators a stop of the world has waited `waited` for (under the lock): a mutator
/// leaked with `std::mem::forget` or `Box::leak`, or one whose thread blocks outside `native`
/// or never polls, holds every collection of its heap; the library cannot tell it from a busy
/// one, so it waits, and says why here.
fn report_stall(g: &SpState, waited: Duration) {
    let late: Vec<String> = g
        .mutators
        .iter()
        .filter(|m| {
            Some(m.id) != g.stopper && {
                let s = m.state.load(Ordering::SeqCst);
                s != PARKED && s != NATIVE
            }
        })
        .map(|m| match &m.name {
            Some(n) => format!("#{} '{n}' (thread {})", m.id, m.tid()),
            None => format!("#{} (thread {})", m.id, m.tid()),
        })
        .collect();
    let heap = g.mutators.first().map_or(0, |m| m.heap_id);
    eprintln!(
        "faultline: heap #{heap}: a stop of the world has waited {:.1} s for mutator(s) {} to \
         reach a safepoint, and keeps waiting: a Mutator leaked (std::mem::forget, Box::leak) \
         on a thread that still runs, or whose thread blocks outside Mutator::native or never \
         polls, holds every collection of its heap (Heap::with_mutator lends a mutator that \
         cannot be leaked)",
        waited.as_secs_f64(),
        late.join(", ")
    );
}

/// Turn NATIVE, for good, every late mutator whose thread has exited (under the lock, by the
/// stopper): its `Mutator` was leaked on that thread (`std::mem::forget`, `Box::leak`), and as a
/// `Mutator` is neither `Send` nor `Sync`, no code can reach it any more. Its roots stay roots
/// (its handles may still be the only path to objects it had stored: nothing reads them, but
/// keeping them costs nothing and needs no detach work from another thread). Says so on stderr,
/// once per such mutator (it is never late again). A thread id reused by a later thread is
/// told apart by its start time (recorded at attach).
fn adopt_orphans(g: &SpState) {
    for m in &g.mutators {
        if Some(m.id) == g.stopper
            || m.state.load(Ordering::SeqCst) != RUNNING
            || !crate::background::thread_exited(m.tid(), m.tid_start())
        {
            continue;
        }
        m.state.store(NATIVE, Ordering::SeqCst);
        let name = m
            .name
            .as_deref()
            .map(|n| format!(" '{n}'"))
            .unwrap_or_default();
        eprintln!(
            "faultline: heap #{}: mutator #{}{name} was leaked (std::mem::forget, Box::leak) by \
             thread {}, which has exited: it is counted as stopped from now on (its roots stay \
             roots)",
            m.heap_id,
            m.id,
            m.tid()
        );
    }
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
                stopper: None,
                futile_wakeups: 0,
            }),
            arrivals: Condvar::new(),
            released: Condvar::new(),
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

    /// Wait until no stop of the world is in progress (the lock is released meanwhile).
    pub(crate) fn wait_released<'a>(
        &self,
        mut g: MutexGuard<'a, SpState>,
    ) -> MutexGuard<'a, SpState> {
        while g.gc_active {
            g = self
                .released
                .wait(g)
                .unwrap_or_else(PoisonError::into_inner);
            if g.gc_active {
                g.futile_wakeups += 1;
            }
        }
        g
    }

    /// A thread stopped (turned PARKED or NATIVE) or a mutator left the list, under the lock
    /// `g`: wake the stopper if that completed the stop in progress.
    pub(crate) fn arrived(&self, g: &SpState) {
        if g.gc_active && g.all_stopped() {
            self.arrivals.notify_one();
        }
    }

    /// Stop every mutator but `me`. Returns `None` (after parking `me` until the other stop
    /// ends) if another thread already stopped the world.
    pub(crate) fn stop_the_world(&self, me: Me<'_>) -> Option<MutexGuard<'_, SpState>> {
        let mut g = self.lock();
        if g.gc_active {
            // Someone else collects: behave as a parked mutator until it is done, then go back
            // to the state `me` had (NATIVE for a heap-level call inside its own native
            // section, which must not leave it RUNNING: see `wait_native`).
            let arrived = std::time::Instant::now();
            let was = me.map(|me| me.state.load(Ordering::SeqCst));
            if let Some(me) = me {
                if was == Some(RUNNING) {
                    g.note_stopped(me);
                }
                me.state.store(PARKED, Ordering::SeqCst);
                self.arrived(&g);
            }
            g = self.wait_released(g);
            if let (Some(me), Some(was)) = (me, was) {
                me.state.store(was, Ordering::SeqCst);
                crate::waits::record_parked(arrived, g.stopped_at, std::time::Instant::now());
            }
            return None;
        }
        g.gc_active = true;
        g.stopper = me.map(|m| m.id);
        if ttsdiag::on() {
            for m in &g.mutators {
                let running = m.state.load(Ordering::SeqCst) == RUNNING
                    && !me.is_some_and(|me| Arc::ptr_eq(me, m));
                m.probe.at_request(m.tid(), running);
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
        let mut woken = false;
        let mut reported = false;
        loop {
            if g.all_stopped() {
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
            if woken {
                g.futile_wakeups += 1;
            }
            let (ng, wait) = self
                .arrivals
                .wait_timeout(g, STALL_CHECK)
                .unwrap_or_else(PoisonError::into_inner);
            g = ng;
            woken = !wait.timed_out();
            if !woken {
                adopt_orphans(&g);
            }
            if !reported && now.elapsed() >= stall_report_after() {
                reported = true;
                report_stall(&g, now.elapsed());
            }
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
        g.stopper = None;
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
        self.released.notify_all();
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
            ttsdiag::Release::before_wait(me.tid())
        } else {
            None
        };
        if waited {
            if me.state.load(Ordering::Relaxed) == RUNNING {
                g.note_stopped(me);
            }
            me.state.store(PARKED, Ordering::SeqCst);
            self.arrived(&g);
            g = self.wait_released(g);
        }
        me.state.store(RUNNING, Ordering::SeqCst);
        if waited {
            crate::waits::record_parked(arrived, g.stopped_at, std::time::Instant::now());
        }
        if let Some(d) = diag {
            let released = g.released_at;
            drop(g);
            d.after_wait(me.tid(), me.id, released);
        }
    }

    /// `me` enters a native section.
    pub(crate) fn enter_native(&self, me: &MutatorShared) {
        let g = self.lock();
        if g.gc_active {
            g.note_stopped(me);
        }
        me.state.store(NATIVE, Ordering::SeqCst);
        self.arrived(&g);
    }

    /// `me` leaves a native section (waiting for a pause in progress to end).
    pub(crate) fn leave_native(&self, me: &MutatorShared) {
        let arrived = std::time::Instant::now();
        let g = self.lock();
        let waited = g.gc_active;
        let released = self.wait_released(g);
        me.state.store(RUNNING, Ordering::SeqCst);
        drop(released);
        me.free_deferred();
        if waited {
            // Came back from native code into a pause: the rest of the pause is a wait.
            crate::waits::record_parked(arrived, None, std::time::Instant::now());
        }
    }

    /// Run `f` (a wait) in native state if the calling thread is a mutator of this heap, so
    /// that no pause waits for it meanwhile. A mutator already NATIVE (a heap-level wait inside
    /// its own native section) stays so: leaving native state at the end of the wait made it
    /// RUNNING inside the section, where it never polls, and the next pause of another thread
    /// waited for it while it waited for that pause to leave its section (a deadlock). Only
    /// the owner changes its state, so the read is exact.
    pub(crate) fn wait_native<R>(&self, me: Me<'_>, f: impl FnOnce() -> R) -> R {
        match me {
            None => f(),
            Some(me) if me.state.load(Ordering::SeqCst) == NATIVE => f(),
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
        let mut g = self.wait_released(self.lock());
        g.mutators.push(m);
    }
}

/// Visit every root slot of a stopped world: each mutator's handles, value stack and root
/// sources, then the heap's global roots and root sources. `f` may rewrite a slot. `live`, if
/// given, says which references of root-source slots are visited (the flip's forwarding: see
/// [`visit_source`]); the crate's own root slots were all marked.
pub(crate) fn visit_roots(
    g: &SpState,
    heap: &HeapRoots,
    live: Option<&dyn Fn(usize) -> bool>,
    f: &mut dyn FnMut(&mut usize),
) {
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
            visit_source(src.as_ref(), heap.visit_eras(), live, f);
        }
    }
    heap.visit(live, f);
}

thread_local! {
    /// The mutators attached on this thread, by heap key: lets heap-level waits from an
    /// attached thread wait in native state (so they cannot hold up a pause).
    ///
    /// Never destroyed (`ManuallyDrop`: no destructor is registered for it), so that it can
    /// be read at thread exit by any later thread-local destructor: one that uses a heap
    /// (attaches, collects, roots) found it destroyed if it had been used first after this
    /// list, and the panic reaching it aborted the process (audit round eight). It is empty
    /// at thread exit unless a `Mutator` was leaked on the thread (its buffer is freed when
    /// the last entry goes: [`note_detached`]).
    static ATTACHED: ManuallyDrop<RefCell<Vec<Attached>>> =
        const { ManuallyDrop::new(RefCell::new(Vec::new())) };
}

/// An entry of [`ATTACHED`]: a heap's key and this thread's mutator of it.
type Attached = (u64, Arc<MutatorShared>);

/// Record that this thread attached `m` to the heap identified by `key`.
pub(crate) fn note_attached(key: u64, m: &Arc<MutatorShared>) {
    ATTACHED.with(|a| a.borrow_mut().push((key, m.clone())));
}

/// Forget `m` (it detaches; also from a `Mutator` kept in another thread-local and dropped
/// at thread exit: the list is never destroyed). The list's buffer is freed with its last
/// entry, so a thread that exits with nothing attached leaks nothing.
pub(crate) fn note_detached(key: u64, m: &Arc<MutatorShared>) {
    ATTACHED.with(|a| {
        let mut a = a.borrow_mut();
        a.retain(|(k, x)| !(*k == key && Arc::ptr_eq(x, m)));
        if a.is_empty() {
            *a = Vec::new();
        }
    });
}

/// A mutator this thread has attached to a heap other than the one identified by `key`, if
/// any (one heap per thread: see the module doc).
pub(crate) fn attached_elsewhere(key: u64) -> Option<Arc<MutatorShared>> {
    ATTACHED.with(|a| {
        a.borrow()
            .iter()
            .find(|(k, _)| *k != key)
            .map(|(_, m)| m.clone())
    })
}

/// This thread's mutator of a heap other than the one identified by `key` if it is RUNNING
/// (not inside `Mutator::native`): a wait on the heap `key` must be refused then (see the
/// module doc). Only the owner changes its own mutator's state, so this is exact.
pub(crate) fn running_elsewhere(key: u64) -> Option<Arc<MutatorShared>> {
    attached_elsewhere(key).filter(|m| m.state.load(Ordering::SeqCst) == RUNNING)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn mutators(sp: &Safepoint, n: u64) -> Vec<Arc<MutatorShared>> {
        (1..=n)
            .map(|id| {
                let m = Arc::new(MutatorShared::new(id, 0, None, 0));
                sp.attach(m.clone());
                m
            })
            .collect()
    }

    /// Mutators arriving one at a time: the stopper is woken only by the last one and the
    /// parked ones only by the release (the shared condition variable woke the stopper and
    /// every parked mutator on every arrival).
    #[test]
    fn arrivals_wake_nobody_for_nothing() {
        const N: u64 = 6;
        let sp = Arc::new(Safepoint::default());
        let ms = mutators(&sp, N);
        let stopper = {
            let sp = sp.clone();
            std::thread::spawn(move || {
                let g = sp.stop_the_world(None).expect("nobody else stops");
                sp.resume(g);
            })
        };
        let threads: Vec<_> = ms
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let (sp, m, prev) = (
                    sp.clone(),
                    m.clone(),
                    i.checked_sub(1).map(|p| ms[p].clone()),
                );
                std::thread::spawn(move || {
                    while !sp.requested.load(Ordering::Acquire) {
                        std::thread::yield_now();
                    }
                    // Arrive after the previous one has parked, and after any wake-up its
                    // arrival caused has had time to happen (ordering only: nothing is timed).
                    if let Some(p) = prev {
                        while p.state.load(Ordering::SeqCst) != PARKED {
                            std::thread::yield_now();
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    sp.park(&m);
                })
            })
            .collect();
        for t in threads {
            t.join().expect("mutator");
        }
        stopper.join().expect("stopper");
        assert_eq!(sp.lock().futile_wakeups, 0);
        assert!(ms.iter().all(|m| m.state.load(Ordering::SeqCst) == RUNNING));
    }

    /// Mutators polling, parking, entering and leaving native sections and stopping the world
    /// themselves in a loop, against a stopper without a mutator: no mutator is RUNNING (or
    /// sees itself running) while a stop is held, and every stop completes.
    #[test]
    fn no_mutator_runs_during_a_stop() {
        const N: u64 = 4;
        const STOPS: usize = 400;
        let sp = Arc::new(Safepoint::default());
        let ms = mutators(&sp, N);
        let in_stop = Arc::new(AtomicUsize::new(0));
        let violations = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let check = |g: &SpState, stopper: Option<u64>, violations: &AtomicUsize| {
            for m in &g.mutators {
                let s = m.state.load(Ordering::SeqCst);
                if Some(m.id) != stopper && s != PARKED && s != NATIVE {
                    violations.fetch_add(1, Ordering::SeqCst);
                }
            }
        };
        let threads: Vec<_> = ms
            .iter()
            .map(|m| {
                let (sp, m, in_stop, violations, done) = (
                    sp.clone(),
                    m.clone(),
                    in_stop.clone(),
                    violations.clone(),
                    done.clone(),
                );
                std::thread::spawn(move || {
                    let mut i = 0u64;
                    while !done.load(Ordering::SeqCst) {
                        i += 1;
                        if sp.requested.load(Ordering::Acquire) {
                            sp.park(&m);
                        }
                        // Running: no stop may be held now.
                        if in_stop.load(Ordering::SeqCst) != 0 {
                            violations.fetch_add(1, Ordering::SeqCst);
                        }
                        match (i + m.id) % 16 {
                            0 => {
                                sp.enter_native(&m);
                                std::thread::yield_now();
                                sp.leave_native(&m);
                            }
                            5 if m.id == 1 => {
                                if let Some(g) = sp.stop_the_world(Some(&m)) {
                                    in_stop.fetch_add(1, Ordering::SeqCst);
                                    check(&g, Some(m.id), &violations);
                                    in_stop.fetch_sub(1, Ordering::SeqCst);
                                    sp.resume(g);
                                }
                            }
                            9 => std::thread::yield_now(),
                            _ => {}
                        }
                    }
                    // Leave as a native thread, so no later stop waits for it.
                    sp.enter_native(&m);
                })
            })
            .collect();
        for _ in 0..STOPS {
            let g = sp.stop_the_world_as(None);
            in_stop.fetch_add(1, Ordering::SeqCst);
            check(&g, None, &violations);
            std::thread::yield_now();
            in_stop.fetch_sub(1, Ordering::SeqCst);
            sp.resume(g);
        }
        done.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().expect("mutator");
        }
        assert_eq!(violations.load(Ordering::SeqCst), 0);
        assert!(sp.lock().stops >= STOPS as u64);
    }
}

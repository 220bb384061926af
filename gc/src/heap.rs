//! The public heap handle: creating a heap (resolving its mode, building the arena and its
//! spaces, installing the fault plumbing), registering types, attaching mutators, collection
//! entry points for unattached threads, statistics, and global roots.
//!
//! Invariants:
//! - `Heap::new` resolves the mode once ([`ResolvedMode::resolve`], one probe run) and says
//!   why it falls back, on stderr once per process and in [`Heap::mode_info`] always;
//! - a heap is registered for fork handling ([`crate::fork`]) before `new` returns, and its
//!   fault plumbing is installed before any concurrent cycle can run.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use faultline_heap::arena::{ArenaConfig, FaultDelivery};
use faultline_heap::object::{TypeError, TypeId, TypeInfo, TypeRegistry};
use faultline_heap::{ArenaError, Backing, Probe, VolatileArena, PAGE_SIZE};

use crate::compaction::Compaction;
use crate::config::{ConfigError, HeapConfig};
use crate::error::{AttachError, CollectError};
pub use crate::inner::Heap;
use crate::inner::{HeapInner, BATCH_PAGES};
use crate::marking::MarkingState;
use crate::mode::{
    Barrier, Choreography, Delivery, GcMode, MapStrategy, ModeInfo, ModeRequest, ResolvedMode,
};
use crate::mutator::Mutator;
use crate::pacer::Pacer;
use crate::phase::{CycleGate, CyclePhase};
use crate::plan::SideTables;
use crate::release::ReleaseState;
use crate::roots::{HeapRoots, RootSource};
use crate::safepoint::{attached_here, running_elsewhere, Safepoint};
use crate::space::{LargeSpace, MovingSpace};
use crate::stats::{AtomicHistogram, CycleStats, Trigger};
use crate::value::Value;

/// Errors creating a heap.
#[derive(Debug, thiserror::Error)]
pub enum HeapError {
    /// The configuration is invalid or unsupported.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The arena could not be created.
    #[error("creating the heap's arena failed: {0}")]
    Arena(#[from] ArenaError),
}

impl core::fmt::Debug for Heap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Heap")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

static FALLBACK_SAID: AtomicBool = AtomicBool::new(false);

impl Heap {
    /// Build a heap. Bad configuration is rejected here; if userfaultfd is unavailable the
    /// heap falls back to an unregistered arena and says why once (stderr and
    /// [`Heap::fallback_reason`]).
    pub fn new(config: HeapConfig) -> Result<Heap, HeapError> {
        let config = config.validate()?;
        // Before anything a fork must wait for (the kernel measurement of `Auto` modes).
        crate::fork::install();
        let half = config.max_heap_bytes;
        let size = 2 * half + config.large_object_space_bytes;
        let sys = config.debug.sys.clone();
        let plain = || {
            VolatileArena::new(
                ArenaConfig::new(size)
                    .delivery(FaultDelivery::Unregistered)
                    .sys(sys.clone()),
            )
        };
        let mut mode = ResolvedMode::resolve(
            ModeRequest {
                gc: config.mode,
                strategy: config.strategy,
                faults: config.faults,
                barrier: config.barrier,
                choreography: config.choreography,
                use_userfaultfd: config.use_userfaultfd,
            },
            || Probe::run_with(&sys),
            crate::mode::measured_mapping,
            crate::mode::measured_faults,
        );
        if let Some(r) = &mode.barrier_fallback {
            eprintln!("faultline: {r}");
        }
        // The barrier-free remembered set write-protects the old generation (WP_ASYNC).
        let wp_remset = config.generational == crate::Generational::WrittenPages;
        let arena = if let (Some(strategy), Some(delivery)) = (mode.strategy, mode.delivery) {
            let backing = if strategy == MapStrategy::Minor {
                Backing::Memfd
            } else {
                Backing::Anonymous
            };
            let delivery = match delivery {
                Delivery::Sigbus => FaultDelivery::Sigbus,
                Delivery::Thread => FaultDelivery::Thread,
            };
            match VolatileArena::new(
                ArenaConfig::new(size)
                    .backing(backing)
                    .delivery(delivery)
                    .write_tracking(mode.wp_marking || wp_remset)
                    .register_at_creation(config.choreography == Choreography::Arena)
                    .sys(sys.clone()),
            ) {
                Ok(a) => a,
                Err(e) => {
                    mode = mode.fall_back(format!("creating the concurrent arena failed: {e}"));
                    plain()?
                }
            }
        } else if mode.fallback_reason.is_none() {
            // Stop-the-world compaction never leaves a reachable page absent, so a fault is a
            // bug: SIGBUS delivery (with no resolver registered) turns it into a crash instead
            // of a thread blocked forever on an unread fault.
            match VolatileArena::new(
                ArenaConfig::new(size)
                    .delivery(FaultDelivery::Sigbus)
                    .write_tracking(wp_remset)
                    .sys(sys.clone()),
            ) {
                Ok(a) => a,
                Err(e) => {
                    let reason = match &e {
                        ArenaError::Uffd(u) => faultline_heap::probe::explain(u).0,
                        other => other.to_string(),
                    };
                    mode = mode.fall_back(reason);
                    plain()?
                }
            }
        } else {
            plain()?
        };
        if let Some(r) = &mode.fallback_reason {
            if !FALLBACK_SAID.swap(true, Ordering::Relaxed) {
                eprintln!("faultline: falling back to stop-the-world compaction: {r}");
            }
        }
        if wp_remset {
            crate::remset_wp::check_arena(&arena).map_err(|e| {
                ConfigError::Unsupported(match &mode.fallback_reason {
                    Some(r) => format!("{e} ({r})"),
                    None => e.to_string(),
                })
            })?;
        }
        if config.generational.enabled() {
            mode.reasons.push(format!(
                "generational: {} (requested: young cycles, full cycles when the old generation grew by old_growth = {}; {})",
                config.generational.name(),
                config.old_growth,
                if config.first_cycle_promotion {
                    "a cycle that traces everything (the first, a full one) promotes what it traced"
                } else {
                    "first-cycle promotion off"
                }
            ));
        } else {
            mode.reasons.push(crate::generational::OFF_REASON.into());
        }
        let base = arena.base();
        let moving = MovingSpace::new(base, half);
        moving.set_wait_rounds(config.refill_wait_rounds as usize);
        let large = LargeSpace::new(base + 2 * half, config.large_object_space_bytes);
        let trigger = config.min_trigger_bytes.min(half);
        // The weak-box type is registered first, here: a type registered while a concurrent
        // cycle runs would be unknown to that cycle's registry snapshot.
        let mut registry = TypeRegistry::default();
        let weak_box = registry
            .register(TypeInfo::fixed(crate::weak::BOX_TYPE_NAME, 8, &[]))
            .expect("a fresh registry has room");
        assert_eq!(weak_box.0 + 1, crate::weak::FIRST_EMBEDDER_TYPE);
        let registry = Arc::new(registry);
        let strategy = mode.strategy.unwrap_or(MapStrategy::Copy);
        let (cards, gen) = crate::generational::create(&config, base, half);
        let inner = Arc::new(HeapInner {
            id: crate::inner::next_heap_id(),
            plumbing: OnceLock::new(),
            compaction: Compaction::new(
                half / PAGE_SIZE,
                strategy,
                config.fault_group_pages as usize,
            ),
            marking: MarkingState::default(),
            gate: CycleGate::default(),
            mode,
            arena,
            moving,
            large,
            tables: Arc::new(SideTables::new(half / 8)),
            scratch: Mutex::new(vec![0; BATCH_PAGES * PAGE_SIZE]),
            types: RwLock::new(registry),
            structs: Mutex::default(),
            sp: Safepoint::default(),
            roots: HeapRoots::with_weak_box(weak_box),
            hashes: Default::default(),
            trigger_bytes: AtomicUsize::new(trigger),
            pacer: Pacer::default(),
            prefill: Default::default(),
            gc_thread: Default::default(),
            pause_crew: Mutex::new(crate::crew::Crew::named("faultline-pause")),
            cycles: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            next_mutator_id: AtomicU64::new(1),
            history: Mutex::new(Vec::new()),
            fault_hist: AtomicHistogram::default(),
            release: ReleaseState::default(),
            waits: Default::default(),
            cards,
            gen,
            config,
        });
        let keep = match (inner.mode.strategy, inner.config.keep_fresh_bytes) {
            (Some(MapStrategy::Minor), None) => true,
            (Some(MapStrategy::Copy), None) => inner.config.generational.enabled(),
            (Some(MapStrategy::Minor | MapStrategy::Copy), Some(n)) => n > 0,
            _ => false,
        };
        if keep && inner.config.choreography == Choreography::Arena && inner.config.recycle_old_half
        {
            inner.release.enable_keep();
        }
        if let Some(delivery) = inner.mode.delivery.filter(|_| inner.mode.concurrent()) {
            let p = crate::fault::install(&inner, delivery)?;
            let _ = inner.plumbing.set(p);
        }
        crate::fork::register(&inner);
        let heap = Heap { inner };
        if crate::cycle::gc_trace() {
            eprintln!(
                "{}",
                crate::mode::creation_log_line(heap.id(), &heap.mode_info())
            );
        }
        Ok(heap)
    }

    /// The validated configuration.
    pub fn config(&self) -> &HeapConfig {
        &self.inner.config
    }

    /// Why the heap runs without userfaultfd, if it does.
    pub fn fallback_reason(&self) -> Option<&str> {
        if self.inner.arena.is_forked() {
            return Some(crate::fork::FORKED_REASON);
        }
        self.inner.mode.fallback_reason.as_deref()
    }

    /// Register an object type. While a concurrent cycle runs, this waits for it to end (in
    /// native state from a thread attached to this heap, so the cycle's pauses do not wait for
    /// it): the cycle parses objects with the types it started with.
    ///
    /// # Errors
    /// A bad layout or a full registry; [`TypeError::InsideCollection`] from inside a callback
    /// run by a collection while its cycle is still running (waiting would wait for itself);
    /// [`TypeError::WaitRefused`] while a cycle runs, from a thread whose mutator of another
    /// heap is running (as [`CollectError::AttachedElsewhere`]; inside that mutator's
    /// `native` section it waits).
    pub fn register_type(&self, info: TypeInfo) -> Result<TypeId, TypeError> {
        // A concurrent cycle parses objects with the registry it took when it began (marking
        // walks new allocation buffers, planning sizes every object): a type registered while
        // it runs would be unknown to it. So registration waits for the running cycle to end
        // (in native state from an attached thread, as `wait_for_cycle`). Checked under the
        // registry's lock: a cycle marks itself busy before it takes its registry, so either
        // it takes this registration or this registration waits for it.
        let mut g = loop {
            let g = self
                .inner
                .types
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if !self.inner.gate.is_busy() {
                break g;
            }
            drop(g);
            match self.wait_for_cycle() {
                Ok(()) => {}
                Err(e @ CollectError::Reentrant { .. }) => {
                    return Err(TypeError::InsideCollection(e.to_string()))
                }
                Err(e) => return Err(TypeError::WaitRefused(e.to_string())),
            }
        };
        // A clone shares the registry's append-only storage: registering copies no type.
        let mut reg = (**g).clone();
        let id = reg.register(info)?;
        *g = Arc::new(reg);
        Ok(id)
    }

    /// A snapshot of the type registry.
    pub fn types(&self) -> Arc<TypeRegistry> {
        self.inner.types()
    }

    /// This heap's id: unique within the process, never reused (named in misuse messages and
    /// [`AttachError`]).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Attach the calling thread as a mutator (waits if a collection's pause is in progress).
    ///
    /// # Panics
    /// If this thread already has a mutator of this heap (a thread's second mutator would
    /// never reach a safepoint while the first runs, so every collection would wait for it
    /// forever) or of another heap (a thread is attached to one heap at a time), or from inside
    /// a root source, the `on_cycle` hook or the mark hook: see [`Heap::try_attach`].
    pub fn attach(&self) -> Mutator {
        self.try_attach()
            .unwrap_or_else(|e| panic!("Heap::attach: {e}"))
    }

    /// Attach the calling thread as a mutator named `name` (named in [`CycleStats`]'
    /// time-to-safepoint figures and the GC log line).
    ///
    /// # Panics
    /// As [`Heap::attach`].
    pub fn attach_named(&self, name: &str) -> Mutator {
        Mutator::attach(self.clone(), Some(name), false)
            .unwrap_or_else(|e| panic!("Heap::attach_named: {e}"))
    }

    /// Attach the calling thread as a mutator, or say why not.
    ///
    /// # Errors
    /// [`AttachError::AlreadyAttached`] if this thread already has a mutator of this heap;
    /// [`AttachError::OtherHeap`] if it has one of another heap (drop that one first);
    /// [`AttachError::Reentrant`] from inside [`RootSource::for_each_root`];
    /// [`AttachError::InsideCallback`] from inside the `on_cycle` hook or the mark hook (use
    /// [`Heap::with_mutator`] there).
    pub fn try_attach(&self) -> Result<Mutator, AttachError> {
        Mutator::attach(self.clone(), None, false)
    }

    /// Run `f` with a mutator of this heap attached to the calling thread, detached when `f`
    /// returns or unwinds: the attach that cannot leak.
    ///
    /// A `Mutator` from [`Heap::attach`] can be leaked (`std::mem::forget`, `Box::leak`) on a
    /// thread that goes on running, and then every collection of its heap waits for it
    /// forever (named on stderr after 10 s). The one lent to `f` cannot: leaking it would need
    /// moving it out of the `&mut`, which needs another `Mutator` to put in its place
    /// (`std::mem::replace` / `swap`; `Mutator` has no `Default`), and inside `f` this thread
    /// can get none (one mutator per heap per thread, one heap per thread, and a `Mutator` is
    /// neither `Send` nor `Sync`, so none arrives from another thread).
    ///
    /// # Errors
    /// As [`Heap::try_attach`]: [`AttachError::AlreadyAttached`] or
    /// [`AttachError::OtherHeap`] if this thread already has a mutator (nested scopes
    /// included), [`AttachError::Reentrant`] from inside a root source. Unlike `attach`, it
    /// works inside the `on_cycle` hook and the mark hook (on a concurrent cycle's thread).
    pub fn with_mutator<R>(&self, f: impl FnOnce(&mut Mutator) -> R) -> Result<R, AttachError> {
        let mut m = Mutator::attach(self.clone(), None, true)?;
        Ok(f(&mut m))
    }

    /// Add a heap-wide root source (a runtime's globals).
    pub fn add_root_source(&self, src: Arc<dyn RootSource>) {
        self.inner.roots.add_source(src);
    }

    /// Where the heap's collection cycle is now (see [`CyclePhase`]).
    pub fn phase(&self) -> CyclePhase {
        self.inner.gate.phase()
    }

    /// Wait until the running cycle (if any) has finished, compaction included, and is
    /// recorded in [`Heap::history`]. From a thread attached to this heap, the wait is in
    /// native state (the cycle's pauses do not wait for it).
    ///
    /// # Errors
    /// [`CollectError::Reentrant`] from inside a callback run by a collection (the `on_cycle`
    /// hook runs before its cycle is over: waiting there would wait for itself);
    /// [`CollectError::AttachedElsewhere`] from a thread whose mutator of another heap is
    /// running (outside its `native` section).
    pub fn wait_for_cycle(&self) -> Result<(), CollectError> {
        crate::cycle::refuse_reentry("wait_for_cycle")?;
        let me = self.waiter("wait_for_cycle")?;
        self.inner.wait_idle_as(me.as_ref());
        Ok(())
    }

    /// [`Heap::wait_for_cycle`] for callers that want no `Result`.
    ///
    /// # Panics
    /// Where `wait_for_cycle` returns an error (inside a callback run by a collection; from a
    /// thread whose mutator of another heap is running).
    pub fn wait_for_compaction(&self) {
        if let Err(e) = self.wait_for_cycle() {
            panic!("Heap::wait_for_compaction: {e}");
        }
    }

    /// Run a full collection and wait for it to complete (concurrent mode: compaction
    /// included). From a thread attached to this heap, this is [`Mutator::collect`] of that
    /// thread's mutator (it waits in native state).
    ///
    /// # Errors
    /// [`CollectError::Reentrant`] from inside a callback run by a collection;
    /// [`CollectError::AttachedElsewhere`] from a thread whose mutator of another heap is
    /// running (outside its `native` section);
    /// [`CollectError::Kernel`] if a kernel call failed before any object moved.
    pub fn collect(&self) -> Result<(), CollectError> {
        let me = self.waiter("collect")?;
        crate::cycle::collect(&self.inner, me.as_ref(), Trigger::Explicit)?;
        self.inner.wait_idle_as(me.as_ref());
        Ok(())
    }

    /// Start a collection: stop-the-world mode runs the whole cycle; concurrent mode returns
    /// after the initial-mark pause (see [`Mutator::start_collection`]).
    ///
    /// # Errors
    /// As [`Heap::collect`].
    pub fn start_collection(&self) -> Result<(), CollectError> {
        let me = self.waiter("start_collection")?;
        crate::cycle::collect(&self.inner, me.as_ref(), Trigger::Explicit).map(drop)
    }

    /// Verify the heap now (stops the world; waits for a running cycle to end first). Refused
    /// (a [`crate::VerifyError`] naming the mistake) from inside a callback run by a
    /// collection, or from a thread whose mutator of another heap is running (as
    /// [`CollectError::AttachedElsewhere`]).
    pub fn verify(&self) -> Result<crate::verify::VerifyReport, crate::verify::VerifyError> {
        let me = self
            .waiter("verify")
            .map_err(|e| crate::verify::VerifyError(e.to_string()))?;
        crate::cycle::verify_stopped(&self.inner, me.as_ref())
    }

    /// The calling thread's mutator of this heap (its waits here are in native state), or
    /// `None` for an unattached thread; refused for a thread whose mutator of another heap
    /// runs (see `crate::safepoint`'s "One heap per thread").
    fn waiter(
        &self,
        request: &'static str,
    ) -> Result<Option<std::sync::Arc<crate::safepoint::MutatorShared>>, CollectError> {
        let key = self.inner.key();
        if let Some(m) = running_elsewhere(key) {
            return Err(CollectError::AttachedElsewhere {
                request,
                heap: self.inner.id,
                other_heap: m.heap_id,
                mutator: m.id,
            });
        }
        Ok(attached_here(key))
    }

    /// Completed cycles: a concurrent cycle counts once its compaction has finished and it is
    /// recorded (see [`Heap::flips`] for cycles that reached their flip).
    pub fn cycles(&self) -> u64 {
        self.inner.completed.load(Ordering::SeqCst)
    }

    /// Cycles that reached their flip (a concurrent cycle counts from its flip, while its
    /// compaction may still be running; a stop-the-world cycle flips inside its pause).
    pub fn flips(&self) -> u64 {
        self.inner.cycles.load(Ordering::SeqCst)
    }

    /// Start and end of every stop of the world so far (oldest first; at most about a
    /// million are kept), and how many intervals were not kept.
    pub fn pause_timeline(&self) -> (Vec<(std::time::Instant, std::time::Instant)>, u64) {
        self.inner.sp.lock().timeline.snapshot()
    }

    /// Statistics of every completed cycle.
    pub fn history(&self) -> Vec<CycleStats> {
        self.inner
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Bytes in use now (moving space + large objects).
    pub fn used_bytes(&self) -> usize {
        self.inner.used()
    }

    /// The arena's accounting (calls since creation, VMA count).
    pub fn arena_stats(&self) -> faultline_heap::ArenaStats {
        self.inner.arena.stats()
    }

    /// Whether the arena is registered with userfaultfd.
    pub fn uses_userfaultfd(&self) -> bool {
        self.inner.arena.is_registered()
    }

    /// Mutator fault stalls since the heap was created (zero in stop-the-world mode, where no
    /// mutator ever touches an absent page).
    pub fn fault_stats(&self) -> crate::stats::FaultStats {
        self.inner.fault_hist.summary()
    }

    /// Where mutator faults spent their time since the heap was created: filling their page,
    /// mapping it, or waiting for another thread's claim (see [`crate::FaultBreakdown`]).
    pub fn fault_breakdown(&self) -> crate::stats::FaultBreakdown {
        let mut b = self.inner.compaction.attrib.snapshot();
        (b.exists_recorded, b.exists_checked) = self.inner.arena.exists_counts();
        b
    }

    /// Every mutator's waits by cause since the heap was created (attached and detached
    /// mutators): count, total and longest per cause, and the longest wait of any cause. See
    /// [`crate::WaitCause`] for what each cause covers.
    pub fn mutator_waits(&self) -> crate::waits::MutatorWaits {
        self.inner.waits.summary()
    }

    /// The logged wait intervals of every attached mutator and of the most recently detached
    /// ones (bounded rings: see [`crate::MutatorWaitLog`]), for mutator-side MMU curves.
    pub fn mutator_wait_log(&self) -> Vec<crate::waits::MutatorWaitLog> {
        self.inner.waits.logs()
    }

    /// What the prefill thread did: fresh memory made present ahead of the allocators
    /// (concurrent mode; see [`crate::HeapConfig::prefill_bytes`]).
    pub fn prefill_stats(&self) -> crate::prefill::PrefillStats {
        self.inner.prefill.stats(self.inner.moving.overlap_counts())
    }

    /// Old-half releases that failed (redone at the next flip) and pages poisoned in
    /// `poison_released` mode, since creation.
    pub fn release_stats(&self) -> crate::release::ReleaseStats {
        self.inner.release.stats()
    }

    /// What actually runs: the mode, and for concurrent mode the strategy, fault delivery and
    /// barrier chosen (after auto-selection and fallback), with the reason for each choice.
    pub fn mode_info(&self) -> ModeInfo {
        let inner = &self.inner;
        let concurrent = inner.concurrent_now();
        let m = &inner.mode;
        ModeInfo {
            mode: if concurrent {
                GcMode::Concurrent
            } else {
                GcMode::StopTheWorld
            },
            strategy: m.strategy.map(MapStrategy::public).filter(|_| concurrent),
            faults: m.delivery.map(Delivery::public).filter(|_| concurrent),
            barrier: concurrent.then_some(if m.wp_marking {
                Barrier::WpAsync
            } else {
                Barrier::Satb
            }),
            choreography: m.choreography,
            fallback_reason: self
                .fallback_reason()
                .map(str::to_string)
                .or_else(|| m.barrier_fallback.clone()),
            reasons: {
                let mut r = m.reasons.clone();
                if concurrent {
                    r.push(crate::background::describe(&inner.config));
                }
                r
            },
            generational: inner.config.generational,
        }
    }

    /// Generational mode: which remembered set, the old generation's bytes and the remembered
    /// set's side memory in bytes; `None` when the heap is not generational.
    pub fn old_generation(&self) -> Option<(crate::Generational, usize, usize)> {
        let gs = self.inner.gen.as_ref()?;
        // The moving space's copy of the range (atomics, set with it at every flip), not the
        // old generation's lock: a query from a thread fork's *prepare* does not wait for (a
        // native section, an unattached thread) left that lock held in a forked child, whose
        // next flip then waited for it forever (review of audit round nine).
        let (lo, hi) = self.inner.moving.old_range();
        Some((gs.remset.kind(), hi - lo, gs.remset.footprint()))
    }

    /// Number of attached mutators.
    pub fn mutator_count(&self) -> usize {
        self.inner.sp.lock().mutators.len()
    }
}

/// A root usable from any thread: a slot in the heap's global table.
///
/// It keeps its heap alive (so it never answers for another heap mapped at the same address)
/// and must be read and written with a mutator of that heap: every accessor checks.
pub struct GlobalRoot {
    heap: Heap,
    index: usize,
}

impl GlobalRoot {
    /// Panic unless `m` is a mutator of this root's heap.
    fn check_heap(&self, m: &Mutator, what: &'static str) {
        if m.heap().inner.id != self.heap.inner.id {
            panic!(
                "{what}: this GlobalRoot belongs to heap #{}, but was used with a mutator of heap #{}",
                self.heap.inner.id,
                m.heap().inner.id
            );
        }
    }

    /// Root `v` globally.
    ///
    /// # Panics
    /// If `v` is a reference of another heap, or a stale one (read before a collection); if
    /// `v` is a reference and the calling thread's mutator of another heap is running (outside
    /// its `native` section: rooting it may have to wait for this heap's pause, which could
    /// wait, through other threads, for that mutator; root it inside the section, or root
    /// null and `set` the value with a mutator of this heap).
    pub fn new(heap: &Heap, v: Value) -> GlobalRoot {
        crate::reentry::refuse_in_root_source("GlobalRoot::new");
        // A thread with no running mutator of this heap (unattached, in a native section, or
        // attached elsewhere) could otherwise root a reference in the middle of a pause:
        // after the pause's marking visited the roots and before its flip starts the new era,
        // a value whose object was not marked passes the era check and the flip forwards it
        // to another object. So it waits for any pause to end, and roots the value holding
        // the safepoint lock (no pause starts meanwhile). Null and immediates name no object
        // and need no wait. A running mutator's thread needs no wait: no pause gets past its
        // stop while that mutator runs (and the stopper's own thread must not wait for
        // itself). A thread whose mutator of another heap runs must not wait (that heap's
        // stops wait for it: two such threads rooting in each other's heap while both heaps
        // stop deadlocked), so a reference is refused there, as `Heap::collect` is.
        let key = heap.inner.key();
        let running = crate::safepoint::attached_here(key)
            .is_some_and(|m| m.state.load(Ordering::SeqCst) == crate::safepoint::RUNNING);
        let wait = !running && v.is_ref();
        if wait {
            if !heap.inner.arena.contains(v.bits()) {
                // Not this heap's at all: say so (rather than suggest a native section, where
                // it would be refused all the same).
                panic!(
                    "GlobalRoot::new: {v:?} cannot be rooted in heap #{}: it is not a reference of this heap: references cannot cross heaps",
                    heap.inner.id
                );
            }
            if let Some(m) = running_elsewhere(key) {
                panic!(
                    "GlobalRoot::new: {v:?} cannot be rooted in heap #{} from this thread, whose mutator #{} of heap #{} is running: the wait for heap #{}'s pause could deadlock (root it inside that mutator's native section, or root null and set it with a mutator of heap #{})",
                    heap.inner.id, m.id, m.heap_id, heap.inner.id, heap.inner.id
                );
            }
        }
        let _no_pause = wait.then(|| heap.inner.sp.wait_released(heap.inner.sp.lock()));
        // Checked under the table's lock: a collection rewrites the table under it, after
        // starting its new era, so a value that passes here is updated by that collection.
        let mut g = heap.inner.roots.globals();
        if v.is_ref() && v.era() != heap.inner.roots.era() {
            drop(g);
            let why = if heap.inner.arena.contains(v.bits()) {
                "it is stale (read before a collection and held without a root)"
            } else {
                "it is not a reference of this heap: references cannot cross heaps"
            };
            panic!(
                "GlobalRoot::new: {v:?} cannot be rooted in heap #{}: {why}",
                heap.inner.id
            );
        }
        let index = match g.free.pop() {
            Some(i) => {
                g.slots[i] = v.bits();
                i
            }
            None => {
                g.slots.push(v.bits());
                g.slots.len() - 1
            }
        };
        GlobalRoot {
            heap: heap.clone(),
            index,
        }
    }
    /// The current value (valid until `m`'s next safepoint).
    ///
    /// # Panics
    /// If `m` is a mutator of another heap.
    pub fn get(&self, m: &Mutator) -> Value {
        self.check_heap(m, "GlobalRoot::get");
        crate::reentry::refuse_in_root_source("GlobalRoot::get");
        let g = self.heap.inner.roots.globals_read();
        // A root: the collector keeps the slot current.
        Value::minted(g.slots[self.index], m.era())
    }
    /// Replace the value.
    ///
    /// # Panics
    /// If `m` is a mutator of another heap, or `v` a reference of another heap.
    pub fn set(&self, m: &Mutator, v: Value) {
        self.check_heap(m, "GlobalRoot::set");
        crate::reentry::refuse_in_root_source("GlobalRoot::set");
        m.check_ours(v, "GlobalRoot::set");
        let mut g = self.heap.inner.roots.globals();
        g.slots[self.index] = v.bits();
    }
}

impl Drop for GlobalRoot {
    fn drop(&mut self) {
        let mut g = self.heap.inner.roots.globals();
        g.slots[self.index] = 0;
        g.free.push(self.index);
    }
}

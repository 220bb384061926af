//! The heap: the arena, its spaces, the type registry, the mutator registry with its
//! stop-the-world handshake, global roots, and the entry points of collection.
//!
//! # Handshake
//!
//! ```text
//!  collector: lock; gc_active = true; requested = true;
//!             wait until every other mutator is PARKED or NATIVE;   <- time to safepoint
//!             ... collect (the lock stays held) ...
//!             requested = false; gc_active = false; notify_all; unlock
//!  mutator at a safepoint poll: if requested { lock; state = PARKED; notify_all;
//!             wait while gc_active; state = RUNNING }
//!  native:    enter: lock; state = NATIVE; notify_all.  leave: lock; wait while gc_active;
//!             state = RUNNING
//! ```
//!
//! Invariants:
//! - `SpState` (behind `sp.lock`) holds the list of attached mutators; a mutator's `state` only
//!   changes under that lock, so the collector's "everyone stopped" check is exact;
//! - while `gc_active` is set, no attached mutator other than the collector touches the heap or
//!   its own roots: parked ones wait on the condition variable, native ones run code that
//!   cannot reach the heap (the native closure is `Send`, so it cannot hold a `Root`,
//!   a `Local` or the `Mutator`);
//! - all mutation of shared collector state (bitmaps, spaces, the registry snapshot) happens
//!   with `gc_active` set by the thread that set it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};

use faultline_heap::arena::{ArenaConfig, FaultDelivery};
use faultline_heap::object::{TypeError, TypeId, TypeInfo, TypeRegistry, Value};
use faultline_heap::{ArenaError, VolatileArena, PAGE_SIZE};

use crate::collector::CollectorState;
use crate::config::{ConfigError, HeapConfig};
use crate::mutator::{Mutator, MutatorShared, NATIVE, PARKED};
use crate::space::{LargeSpace, MovingSpace};
use crate::stats::{CycleStats, Trigger};

/// Embedder root slots outside Faultline's own handles and stacks (a runtime's globals, say).
///
/// `for_each_root` is called only while every mutator is stopped; it must present every slot
/// that may hold a reference, and the collector may store an updated value into each.
pub trait RootSource: Send + Sync {
    /// Call `visit` once for every root slot.
    fn for_each_root(&self, visit: &mut dyn FnMut(&AtomicUsize));
}

/// The collector configuration in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeInfo {
    /// Collector mode.
    pub mode: crate::config::GcMode,
    /// Page-mapping strategy of concurrent compaction ("copy", "move", "minor").
    pub strategy: Option<&'static str>,
    /// Fault delivery of concurrent compaction ("sigbus", "thread").
    pub faults: Option<&'static str>,
    /// Concurrent-marking barrier ("satb", "wp_async").
    pub barrier: Option<&'static str>,
    /// Why userfaultfd (or a requested feature) is not used, if so.
    pub fallback_reason: Option<String>,
}

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

pub(crate) struct SpState {
    pub mutators: Vec<Arc<MutatorShared>>,
    pub gc_active: bool,
    /// Start and end of every stop of the world (see [`crate::timeline`]).
    pub timeline: crate::timeline::PauseTimeline,
}

pub(crate) struct Safepoint {
    pub requested: AtomicBool,
    pub lock: Mutex<SpState>,
    pub cv: Condvar,
}

impl Safepoint {
    pub fn lock(&self) -> MutexGuard<'_, SpState> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }
    pub fn wait<'a>(&self, g: MutexGuard<'a, SpState>) -> MutexGuard<'a, SpState> {
        self.cv.wait(g).unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) struct HeapInner {
    /// Fault plumbing (the SIGBUS region or the handler thread); dropped first.
    pub plumbing: std::sync::OnceLock<Plumbing>,
    pub config: HeapConfig,
    /// Concurrent compaction is in effect (after auto-selection and fallback).
    pub concurrent: bool,
    pub compaction: crate::concurrent::Compaction,
    pub marking: crate::marking::MarkingState,
    /// Concurrent marking is barrier-free (WP_ASYNC + PAGEMAP_SCAN) instead of SATB.
    pub wp_marking: bool,
    /// Why a requested wp_async barrier fell back to SATB, if it did.
    pub barrier_fallback: Option<String>,
    pub delivery: Option<&'static str>,
    pub arena: VolatileArena,
    pub moving: MovingSpace,
    pub large: LargeSpace,
    pub types: RwLock<Arc<TypeRegistry>>,
    /// Every registry version ever published: mutators hold plain references into them, so
    /// they live as long as the heap (a handful of small copies: types are registered rarely).
    pub type_versions: Mutex<Vec<Arc<TypeRegistry>>>,
    pub sp: Safepoint,
    pub globals: Mutex<GlobalSlots>,
    pub sources: Mutex<Vec<Arc<dyn RootSource>>>,
    pub collector: Mutex<CollectorState>,
    pub fallback_reason: Option<String>,
    pub trigger_bytes: AtomicUsize,
    pub cycles: AtomicU64,
    pub next_mutator_id: AtomicU64,
    pub history: Mutex<Vec<CycleStats>>,
    /// Mutator fault stalls (recorded by the fault resolvers, possibly in signal context).
    pub fault_hist: crate::stats::AtomicHistogram,
    /// Released-half bookkeeping (failed releases, poisoning).
    pub release: crate::stress::ReleaseState,
}

/// How faults reach the compactor; kept alive as long as the heap.
pub(crate) enum Plumbing {
    /// The SIGBUS region of the moving space.
    Sigbus(#[allow(dead_code)] faultline_heap::fault::sigbus::RegionGuard),
    /// A handler thread reading the userfaultfd.
    Thread(#[allow(dead_code)] faultline_heap::fault::reader::FaultReader),
}

impl Drop for HeapInner {
    fn drop(&mut self) {
        // Stop fault delivery before the arena (a field dropped later) is unmapped. In a forked
        // child the handler thread does not exist: joining it would hang (see `fork`).
        match self.plumbing.take() {
            Some(p @ Plumbing::Thread(_)) if self.arena.is_forked() => std::mem::forget(p),
            p => drop(p),
        }
    }
}

#[derive(Default)]
pub(crate) struct GlobalSlots {
    pub slots: Vec<usize>,
    pub free: Vec<usize>,
}

/// A handle to a heap. Cheap to clone; the heap lives until the last clone and the last
/// mutator are gone.
#[derive(Clone)]
pub struct Heap {
    pub(crate) inner: Arc<HeapInner>,
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
        let half = config.max_heap_bytes;
        let los = config.large_object_space_bytes;
        let size = 2 * half + los;
        let plain = |sys: &faultline_heap::Sys| {
            VolatileArena::new(
                ArenaConfig::new(size)
                    .delivery(FaultDelivery::Unregistered)
                    .sys(sys.clone()),
            )
        };
        let mut fallback_reason = None;
        let mut concurrent = None;
        if config.mode == crate::config::GcMode::Concurrent {
            if !config.use_userfaultfd {
                fallback_reason = Some("userfaultfd disabled by configuration".to_string());
            } else {
                match resolve_concurrent(&config) {
                    Ok(choice) => concurrent = Some(choice),
                    Err(reason) => fallback_reason = Some(reason),
                }
            }
        }
        // The barrier-free marking mode needs WP_ASYNC + PAGEMAP_SCAN, and an anonymous arena.
        let mut wp_marking = false;
        let mut barrier_fallback = None;
        if let Some((strategy, _)) = concurrent {
            if config.barrier == crate::config::Barrier::WpAsync {
                if strategy == crate::concurrent::MapStrategy::Minor {
                    barrier_fallback = Some(
                        "wp_async marking is not supported with the minor strategy (memfd arena); using the SATB barrier".to_string(),
                    );
                } else if !faultline_heap::Probe::run_with(&config.sys).has("wp_async") {
                    barrier_fallback = Some(
                        "WP_ASYNC or PAGEMAP_SCAN is unavailable; using the SATB barrier"
                            .to_string(),
                    );
                } else {
                    wp_marking = true;
                }
            }
        }
        if let Some(r) = &barrier_fallback {
            eprintln!("faultline: {r}");
        }
        let arena = if let Some((strategy, delivery)) = concurrent {
            let backing = if strategy == crate::concurrent::MapStrategy::Minor {
                faultline_heap::Backing::Memfd
            } else {
                faultline_heap::Backing::Anonymous
            };
            match VolatileArena::new(
                ArenaConfig::new(size)
                    .backing(backing)
                    .delivery(delivery)
                    .write_tracking(wp_marking)
                    .register_at_creation(config.choreography == crate::config::Choreography::Arena)
                    .sys(config.sys.clone()),
            ) {
                Ok(a) => a,
                Err(e) => {
                    concurrent = None;
                    fallback_reason = Some(format!("creating the concurrent arena failed: {e}"));
                    plain(&config.sys)?
                }
            }
        } else if config.use_userfaultfd && fallback_reason.is_none() {
            // Stop-the-world compaction never leaves a reachable page absent, so a fault is a
            // bug: SIGBUS delivery (with no resolver registered) turns it into a crash instead
            // of a thread blocked forever on an unread fault.
            match VolatileArena::new(
                ArenaConfig::new(size)
                    .delivery(FaultDelivery::Sigbus)
                    .sys(config.sys.clone()),
            ) {
                Ok(a) => a,
                Err(e) => {
                    let reason = match &e {
                        ArenaError::Uffd(u) => faultline_heap::probe::explain(u).0,
                        other => other.to_string(),
                    };
                    fallback_reason = Some(reason);
                    plain(&config.sys)?
                }
            }
        } else {
            if fallback_reason.is_none() {
                fallback_reason = Some("userfaultfd disabled by configuration".into());
            }
            plain(&config.sys)?
        };
        if let Some(r) = &fallback_reason {
            if !FALLBACK_SAID.swap(true, Ordering::Relaxed) {
                eprintln!("faultline: falling back to stop-the-world compaction: {r}");
            }
        }
        let base = arena.base();
        let moving = MovingSpace {
            half_bytes: half,
            half_offset: [0, half],
            half_base: [base, base + half],
            current: AtomicUsize::new(0),
            top: AtomicUsize::new(base),
            populated: Mutex::new(base),
        };
        let large = LargeSpace::new(base + 2 * half, los);
        let collector = CollectorState::new(half / 8);
        let trigger = config.min_trigger_bytes.min(half);
        let registry = Arc::new(TypeRegistry::default());
        let strategy = concurrent.map(|c| c.0);
        let delivery = concurrent.map(|c| match c.1 {
            FaultDelivery::Sigbus => "sigbus",
            _ => "thread",
        });
        let heap = Heap {
            inner: Arc::new(HeapInner {
                plumbing: std::sync::OnceLock::new(),
                concurrent: concurrent.is_some(),
                compaction: crate::concurrent::Compaction::new(
                    half / PAGE_SIZE,
                    strategy.unwrap_or(crate::concurrent::MapStrategy::Copy),
                ),
                delivery,
                marking: crate::marking::MarkingState::default(),
                wp_marking: wp_marking && concurrent.is_some(),
                barrier_fallback,
                arena,
                moving,
                large,
                types: RwLock::new(registry.clone()),
                type_versions: Mutex::new(vec![registry]),
                sp: Safepoint {
                    requested: AtomicBool::new(false),
                    lock: Mutex::new(SpState {
                        mutators: Vec::new(),
                        gc_active: false,
                        timeline: Default::default(),
                    }),
                    cv: Condvar::new(),
                },
                globals: Mutex::new(GlobalSlots::default()),
                sources: Mutex::new(Vec::new()),
                collector: Mutex::new(collector),
                fallback_reason,
                trigger_bytes: AtomicUsize::new(trigger),
                cycles: AtomicU64::new(0),
                next_mutator_id: AtomicU64::new(1),
                history: Mutex::new(Vec::new()),
                fault_hist: crate::stats::AtomicHistogram::default(),
                release: crate::stress::ReleaseState::default(),
                config,
            }),
        };
        heap.install_plumbing()?;
        crate::fork::register(&heap.inner);
        Ok(heap)
    }

    fn install_plumbing(&self) -> Result<(), HeapError> {
        let inner = &self.inner;
        if !inner.concurrent {
            return Ok(());
        }
        let ctx = Arc::as_ptr(inner) as usize;
        let plumbing = if inner.delivery == Some("sigbus") {
            // SAFETY: `ctx` is this HeapInner; the guard lives in its `plumbing` and is dropped
            // first in its Drop, so the context outlives the registration; the resolver is
            // async-signal-safe.
            let guard = unsafe {
                faultline_heap::fault::sigbus::register_region(
                    inner.moving.half_base[0],
                    2 * inner.moving.half_bytes,
                    crate::concurrent::sigbus_resolver,
                    ctx as *const (),
                )
            }
            .map_err(|e| HeapError::Arena(ArenaError::Config(e.to_string())))?;
            Plumbing::Sigbus(guard)
        } else {
            let uffd = inner
                .arena
                .uffd()
                .ok_or(HeapError::Arena(ArenaError::NotRegistered(
                    "fault handler thread",
                )))?
                .clone();
            let reader = faultline_heap::fault::reader::FaultReader::spawn(
                uffd,
                "faultline-faults",
                move |ev| {
                    if let faultline_heap::uffd::UffdEvent::PageFault { address, .. } = *ev {
                        // SAFETY: the reader is stopped (joined) in HeapInner's Drop before
                        // any other field is dropped, so `ctx` is alive here.
                        let inner = unsafe { &*(ctx as *const HeapInner) };
                        crate::concurrent::resolve_fault(inner, address);
                        // Whoever mapped the page woke the waiters on it; wake once more in
                        // case the page was mapped before this fault was queued.
                        let page = (address - inner.arena.base()) & !(PAGE_SIZE - 1);
                        let _ = inner.arena.wake(page, PAGE_SIZE);
                    }
                },
            )
            .map_err(|e| {
                HeapError::Arena(ArenaError::Config(format!(
                    "spawning the fault handler thread: {e}"
                )))
            })?;
            Plumbing::Thread(reader)
        };
        let _ = inner.plumbing.set(plumbing);
        Ok(())
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
        self.inner.fallback_reason.as_deref()
    }

    /// Register an object type.
    pub fn register_type(&self, info: TypeInfo) -> Result<TypeId, TypeError> {
        let mut g = self
            .inner
            .types
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut reg = (**g).clone();
        let id = reg.register(info)?;
        let reg = Arc::new(reg);
        self.inner
            .type_versions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(reg.clone());
        *g = reg;
        Ok(id)
    }

    /// A snapshot of the type registry.
    pub fn types(&self) -> Arc<TypeRegistry> {
        self.inner
            .types
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Attach the calling thread as a mutator (waits if a collection is running).
    pub fn attach(&self) -> Mutator {
        Mutator::attach(self.clone())
    }

    /// Add a heap-wide root source (a runtime's globals).
    pub fn add_root_source(&self, src: Arc<dyn RootSource>) {
        self.inner
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(src);
    }

    /// Wait until a concurrent compaction in progress (if any) has finished and its cycle is
    /// recorded in [`Heap::history`].
    pub fn wait_for_compaction(&self) {
        // The cycle is recorded before it turns idle. From a thread attached to this heap, wait
        // in native state so the cycle's remark pause can proceed.
        let me = crate::mutator::attached_here(&self.inner);
        self.inner.wait_idle_as(me.as_ref());
    }

    /// Collect now, from a thread that is not attached (an attached thread uses
    /// [`Mutator::collect`]).
    pub fn collect(&self) -> Result<(), ArenaError> {
        let me = crate::mutator::attached_here(&self.inner);
        crate::collector::collect(&self.inner, me.as_ref(), Trigger::Explicit).map(drop)
    }

    /// Verify the heap now (stops the world), from a thread that is not attached.
    pub fn verify(&self) -> Result<crate::verify::VerifyReport, crate::verify::VerifyError> {
        let me = crate::mutator::attached_here(&self.inner);
        crate::collector::verify_stopped(&self.inner, me.as_ref())
    }

    /// Completed cycles.
    pub fn cycles(&self) -> u64 {
        self.inner.cycles.load(Ordering::Relaxed)
    }

    /// Start and end of every stop of the world so far (oldest first; see
    /// [`crate::timeline`]), and how many intervals were not kept.
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
        self.inner.moving.used() + self.inner.large.used()
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

    /// Old-half releases that failed (redone at the next flip) and pages poisoned in
    /// `poison_released` mode, since creation.
    pub fn release_stats(&self) -> crate::stress::ReleaseStats {
        self.inner.release.stats()
    }

    /// What actually runs: the mode, and for concurrent mode the strategy and fault delivery
    /// chosen (after auto-selection and fallback).
    pub fn mode_info(&self) -> ModeInfo {
        let inner = &self.inner;
        let concurrent = inner.concurrent_now();
        ModeInfo {
            barrier: concurrent.then_some(if inner.wp_marking { "wp_async" } else { "satb" }),
            mode: if concurrent {
                crate::config::GcMode::Concurrent
            } else {
                crate::config::GcMode::StopTheWorld
            },
            strategy: concurrent.then(|| inner.compaction.strategy.name()),
            faults: inner.delivery.filter(|_| concurrent),
            fallback_reason: self
                .fallback_reason()
                .map(str::to_string)
                .or_else(|| inner.barrier_fallback.clone()),
        }
    }

    /// Number of attached mutators.
    pub fn mutator_count(&self) -> usize {
        self.inner.sp.lock().mutators.len()
    }
}

impl HeapInner {
    /// Concurrent compaction is in effect in this process (never in a forked child: see
    /// [`crate::fork`]).
    pub(crate) fn concurrent_now(&self) -> bool {
        self.concurrent && !self.arena.is_forked()
    }

    /// Stop every mutator but `me`. Returns false (after parking `me` until the other
    /// collection ends) if another thread is already collecting.
    pub(crate) fn stop_the_world<'a>(
        &'a self,
        me: Option<&Arc<MutatorShared>>,
    ) -> Option<MutexGuard<'a, SpState>> {
        let mut g = self.sp.lock();
        if g.gc_active {
            // Someone else collects: behave as a parked mutator until it is done.
            if let Some(me) = me {
                me.state.store(PARKED, Ordering::SeqCst);
                self.sp.cv.notify_all();
            }
            while g.gc_active {
                g = self.sp.wait(g);
            }
            if let Some(me) = me {
                me.state.store(crate::mutator::RUNNING, Ordering::SeqCst);
            }
            return None;
        }
        g.gc_active = true;
        g.timeline.begin(std::time::Instant::now());
        self.sp.requested.store(true, Ordering::SeqCst);
        loop {
            let all_stopped = g.mutators.iter().all(|m| {
                me.is_some_and(|me| Arc::ptr_eq(me, m)) || {
                    let s = m.state.load(Ordering::SeqCst);
                    s == PARKED || s == NATIVE
                }
            });
            if all_stopped {
                return Some(g);
            }
            g = self.sp.wait(g);
        }
    }

    /// Restart the world.
    pub(crate) fn resume(&self, mut g: MutexGuard<'_, SpState>) {
        self.sp.requested.store(false, Ordering::SeqCst);
        g.gc_active = false;
        g.timeline.end(std::time::Instant::now());
        drop(g);
        self.sp.cv.notify_all();
    }

    /// Wait for the running cycle (if any) to end. A mutator waits in native state, so the
    /// cycle's pauses do not wait for it.
    pub(crate) fn wait_idle_as(&self, me: Option<&Arc<MutatorShared>>) {
        if !self.compaction.is_busy() {
            return;
        }
        match me {
            None => self.compaction.wait_idle(),
            Some(me) => {
                {
                    let _g = self.sp.lock();
                    me.state.store(NATIVE, Ordering::SeqCst);
                    self.sp.cv.notify_all();
                }
                self.compaction.wait_idle();
                let mut g = self.sp.lock();
                while g.gc_active {
                    g = self.sp.wait(g);
                }
                me.state.store(crate::mutator::RUNNING, Ordering::SeqCst);
            }
        }
    }

    /// Round `x` up to pages.
    pub(crate) fn page_up(x: usize) -> usize {
        x.div_ceil(PAGE_SIZE) * PAGE_SIZE
    }
}

/// A root usable from any thread: a slot in the heap's global table.
pub struct GlobalRoot {
    heap: Heap,
    index: usize,
}

impl GlobalRoot {
    /// Root `v` globally.
    pub fn new(heap: &Heap, v: Value) -> GlobalRoot {
        let mut g = heap
            .inner
            .globals
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
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
    pub fn get(&self, _m: &Mutator) -> Value {
        let g = self
            .heap
            .inner
            .globals
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // SAFETY: the slot holds a value rooted by this handle and updated by the collector.
        unsafe { Value::from_bits(g.slots[self.index]) }
    }
    /// Replace the value.
    pub fn set(&self, _m: &Mutator, v: Value) {
        let mut g = self
            .heap
            .inner
            .globals
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        g.slots[self.index] = v.bits();
    }
}

impl Drop for GlobalRoot {
    fn drop(&mut self) {
        let mut g = self
            .heap
            .inner
            .globals
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        g.slots[self.index] = 0;
        g.free.push(self.index);
    }
}

/// Choose the concurrent strategy and fault delivery from the probe, or say why not.
fn resolve_concurrent(
    config: &HeapConfig,
) -> Result<(crate::concurrent::MapStrategy, FaultDelivery), String> {
    use crate::concurrent::MapStrategy;
    use crate::config::{FaultMode, Strategy};
    let probe = faultline_heap::Probe::run_with(&config.sys);
    if !probe.available {
        return Err(probe
            .reason
            .unwrap_or_else(|| "userfaultfd unavailable".into()));
    }
    let why = |name: &str| {
        probe
            .capabilities
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.detail.clone())
            .unwrap_or_else(|| format!("{name} unavailable"))
    };
    let strategy = match config.strategy {
        Strategy::Auto if probe.has("move") => MapStrategy::Move,
        Strategy::Auto | Strategy::Copy => MapStrategy::Copy,
        Strategy::Move if probe.has("move") => MapStrategy::Move,
        Strategy::Move => {
            return Err(format!(
                "the move strategy needs UFFDIO_MOVE: {}",
                why("move")
            ))
        }
        Strategy::Minor if probe.has("minor_shmem") => MapStrategy::Minor,
        Strategy::Minor => {
            return Err(format!(
                "the minor strategy needs MINOR_SHMEM: {}",
                why("minor_shmem")
            ))
        }
    };
    let delivery = match config.faults {
        FaultMode::Auto if probe.has("sigbus") => FaultDelivery::Sigbus,
        FaultMode::Auto | FaultMode::Thread => FaultDelivery::Thread,
        FaultMode::Sigbus if probe.has("sigbus") => FaultDelivery::Sigbus,
        FaultMode::Sigbus => {
            return Err(format!(
                "SIGBUS fault delivery needs UFFD_FEATURE_SIGBUS: {}",
                why("sigbus")
            ))
        }
    };
    Ok((strategy, delivery))
}

//! The Boehm-Demers-Weiser collector (Debian's `libgc1`, 8.2) through a minimal FFI layer:
//! initialisation, allocation into a tiny object model, thread registration, and a
//! collection-event recorder that timestamps every collection and every stopped world.
//!
//! # Object model
//!
//! Every object is `[header][payload words]`; the header word is `nrefs << 32 | nwords`: the
//! first `nrefs` payload words are references (0 or the header address of another object made
//! here), the rest are data. The header plays the part of Faultline's one-word header, so the
//! nominal sizes of WORKLOADS.md hold for both. Objects without references come from
//! `GC_malloc_atomic` (never scanned) and are zeroed here; the others from `GC_malloc` (zeroed
//! by libgc).
//!
//! # Invariants
//!
//! - [`Obj`] always holds the header address of an object allocated by [`alloc`]; every access
//!   checks the index against the header, and only [`Obj::set_ref`] writes reference words, so
//!   a reference word is always 0 or such an address;
//! - an `Obj` is kept alive by libgc only while it is in a scanned place: a stack, registers,
//!   or a word of another live object. The runner never stores one anywhere else (Rust heap
//!   memory is `malloc`ed and invisible to libgc). [`init`] is `unsafe` for that reason; `Obj`
//!   is `!Send` so it cannot leave its thread;
//! - every thread that touches the heap is registered ([`registered`]) for its whole life;
//! - the event callback runs in the collecting thread while other threads may be stopped
//!   inside `malloc`: it allocates nothing, takes no lock and cannot panic (atomics into
//!   buffers allocated by [`init`], `clock_gettime` only).

use std::ffi::{c_int, c_void};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;

pub mod workloads;

/// `struct GC_stack_base` on x86-64 Linux (the `reg_base` field exists only on IA-64).
#[repr(C)]
struct GcStackBase {
    mem_base: *mut c_void,
}

/// `GC_on_collection_event_proc`.
type EventProc = extern "C" fn(c_int);

#[link(name = "gc")]
extern "C" {
    fn GC_init();
    fn GC_set_max_heap_size(n: usize);
    fn GC_enable_incremental();
    fn GC_malloc(bytes: usize) -> *mut c_void;
    fn GC_malloc_atomic(bytes: usize) -> *mut c_void;
    fn GC_get_gc_no() -> usize;
    fn GC_get_heap_size() -> usize;
    fn GC_set_on_collection_event(f: Option<EventProc>);
    fn GC_allow_register_threads();
    fn GC_get_stack_base(sb: *mut GcStackBase) -> c_int;
    fn GC_register_my_thread(sb: *const GcStackBase) -> c_int;
    fn GC_unregister_my_thread() -> c_int;
}

// `GC_EventType` (gc.h, libgc 8.2).
const GC_EVENT_START: c_int = 0;
const GC_EVENT_END: c_int = 5;
const GC_EVENT_PRE_STOP_WORLD: c_int = 6;
const GC_EVENT_POST_START_WORLD: c_int = 9;
/// `GC_SUCCESS` and `GC_DUPLICATE` from gc.h.
const GC_SUCCESS: c_int = 0;
const GC_DUPLICATE: c_int = 1;

/// A heap object made by [`alloc`] (see the module invariants).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Obj {
    header: NonNull<u64>,
    _not_send: PhantomData<*const ()>,
}

impl Obj {
    /// The object's address, to hand to another registered thread (see [`Obj::from_addr`]).
    pub fn addr(self) -> usize {
        self.header.as_ptr() as usize
    }
    /// The object at `addr`.
    ///
    /// # Safety
    /// `addr` came from [`Obj::addr`] of an object that is still reachable from a scanned
    /// root (a registered thread's stack) while the result is used.
    pub unsafe fn from_addr(addr: usize) -> Obj {
        Obj {
            header: NonNull::new(addr as *mut u64).expect("a non-null object address"),
            _not_send: PhantomData,
        }
    }
    fn header(self) -> u64 {
        // SAFETY: `header` is the first word of a live object (module invariant).
        unsafe { self.header.as_ptr().read() }
    }
    /// Payload words.
    pub fn len(self) -> usize {
        (self.header() & 0xffff_ffff) as usize
    }
    /// Whether the payload is empty.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
    /// Reference words (the first ones of the payload).
    pub fn refs(self) -> usize {
        (self.header() >> 32) as usize
    }
    fn word_ptr(self, i: usize) -> *mut u64 {
        // SAFETY: callers check `i < len()`, so the result stays inside the object.
        unsafe { self.header.as_ptr().add(1 + i) }
    }
    /// Reference word `i`; panics if it is not a reference word.
    pub fn get_ref(self, i: usize) -> Option<Obj> {
        assert!(i < self.refs(), "ref index {i} of {}", self.refs());
        // SAFETY: in bounds (checked); reference words hold 0 or an object's header address.
        let v = unsafe { self.word_ptr(i).read() };
        NonNull::new(v as *mut u64).map(|header| Obj {
            header,
            _not_send: PhantomData,
        })
    }
    /// Stores reference word `i`.
    pub fn set_ref(self, i: usize, v: Option<Obj>) {
        assert!(i < self.refs(), "ref index {i} of {}", self.refs());
        let bits = v.map_or(0, |o| o.header.as_ptr() as u64);
        // SAFETY: in bounds (checked); the value is 0 or an object's header address.
        unsafe { self.word_ptr(i).write(bits) }
    }
    /// Data word `i` (counting from the start of the payload).
    pub fn get(self, i: usize) -> u64 {
        assert!(i >= self.refs() && i < self.len(), "data index {i}");
        // SAFETY: in bounds (checked) and initialised (zeroed at allocation).
        unsafe { self.word_ptr(i).read() }
    }
    /// Stores data word `i`.
    pub fn set(self, i: usize, v: u64) {
        assert!(i >= self.refs() && i < self.len(), "data index {i}");
        // SAFETY: in bounds (checked); a data word is never read as a reference.
        unsafe { self.word_ptr(i).write(v) }
    }
}

/// Allocates an object of `words` payload words whose first `refs` words are references.
pub fn alloc(words: usize, refs: usize) -> Obj {
    if !TIME_ALLOCS.load(Relaxed) {
        return alloc_untimed(words, refs);
    }
    let t0 = now_ns();
    let o = alloc_untimed(words, refs);
    let d = now_ns().saturating_sub(t0);
    if let Some(r) = RECORDER.get().filter(|_| d >= SLOW_ALLOC_NS) {
        r.slow_allocs.push(t0, t0 + d);
    }
    o
}

/// Allocation calls at least this long are recorded when allocation timing is on.
pub const SLOW_ALLOC_NS: u64 = 50_000;

/// Whether [`alloc`] times every call (see [`time_allocations`]).
static TIME_ALLOCS: AtomicBool = AtomicBool::new(false);

/// Times every allocation call from now on and records those of at least
/// [`SLOW_ALLOC_NS`]: what a mutator waits for inside libgc outside any world stop
/// (incremental marking steps, lazy sweeping, heap growth). Costs two clock reads per object.
pub fn time_allocations() {
    TIME_ALLOCS.store(true, Relaxed);
}

fn alloc_untimed(words: usize, refs: usize) -> Obj {
    assert!(refs <= words && words < u32::MAX as usize);
    let bytes = (words + 1) * 8;
    // SAFETY: libgc is initialised (init() is the only way to reach this module's workloads);
    // both calls return null or `bytes` writable bytes, 8-aligned.
    let p = unsafe {
        if refs == 0 {
            let p = GC_malloc_atomic(bytes) as *mut u64;
            if !p.is_null() {
                p.write_bytes(0, words + 1);
            }
            p
        } else {
            GC_malloc(bytes) as *mut u64
        }
    };
    let Some(header) = NonNull::new(p) else {
        eprintln!("libgc: out of memory allocating {bytes} bytes");
        std::process::abort();
    };
    // SAFETY: `header` points to at least one writable word.
    unsafe { header.as_ptr().write(((refs as u64) << 32) | words as u64) };
    Obj {
        header,
        _not_send: PhantomData,
    }
}

/// Intervals recorded by the callback: one writer at a time (libgc holds its allocation lock
/// around collections), read after the workload.
struct Intervals {
    starts: Box<[AtomicU64]>,
    ends: Box<[AtomicU64]>,
    len: AtomicUsize,
    open: AtomicU64,
    dropped: AtomicU64,
}

impl Intervals {
    fn new(cap: usize) -> Intervals {
        Intervals {
            starts: zeroed_atomics(cap),
            ends: zeroed_atomics(cap),
            len: AtomicUsize::new(0),
            open: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }
    /// Appends a closed interval; safe from several threads at once (slots are claimed by
    /// `fetch_add`; readers run after the writers are done).
    fn push(&self, start: u64, end: u64) {
        let i = self.len.fetch_add(1, Relaxed);
        match (self.starts.get(i), self.ends.get(i)) {
            (Some(s), Some(e)) => {
                s.store(start, Relaxed);
                e.store(end, Relaxed);
            }
            _ => {
                self.dropped.fetch_add(1, Relaxed);
            }
        }
    }
    fn begin(&self, t: u64) {
        self.open.store(t, Relaxed);
    }
    fn end(&self, t: u64) {
        let i = self.len.load(Relaxed);
        match (self.starts.get(i), self.ends.get(i)) {
            (Some(s), Some(e)) => {
                s.store(self.open.load(Relaxed), Relaxed);
                e.store(t, Relaxed);
                self.len.store(i + 1, Relaxed);
            }
            _ => {
                self.dropped.fetch_add(1, Relaxed);
            }
        }
    }
    fn snapshot(&self) -> Vec<(u64, u64)> {
        (0..self.len.load(Relaxed).min(self.starts.len()))
            .map(|i| (self.starts[i].load(Relaxed), self.ends[i].load(Relaxed)))
            .collect()
    }
}

/// `cap` zeroed atomics from a zeroed allocation: large buffers come straight from `mmap` and
/// stay untouched (out of the RSS being measured) until a slot is written.
fn zeroed_atomics(cap: usize) -> Box<[AtomicU64]> {
    let words: Box<[u64]> = vec![0u64; cap].into_boxed_slice();
    let raw = Box::into_raw(words) as *mut [AtomicU64];
    // SAFETY: AtomicU64 has the same size and bit validity as u64 and, on x86-64, the same
    // alignment (8), so the slice's layout is unchanged; ownership moves from one Box to the
    // other.
    unsafe { Box::from_raw(raw) }
}

struct Recorder {
    /// GC_EVENT_START .. GC_EVENT_END.
    collections: Intervals,
    /// GC_EVENT_PRE_STOP_WORLD .. GC_EVENT_POST_START_WORLD.
    stopped: Intervals,
    /// Allocation calls of at least SLOW_ALLOC_NS (only with `time_allocations`).
    slow_allocs: Intervals,
    cpu_open: AtomicU64,
    cpu_ns: AtomicU64,
}

static RECORDER: OnceLock<Recorder> = OnceLock::new();

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; clock_gettime is async-signal-safe.
    let r = unsafe { libc::clock_gettime(clock, &mut ts) };
    if r != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// CLOCK_MONOTONIC, ns.
pub fn now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

extern "C" fn on_event(ev: c_int) {
    let Some(r) = RECORDER.get() else {
        return;
    };
    match ev {
        GC_EVENT_START => {
            r.cpu_open
                .store(clock_ns(libc::CLOCK_THREAD_CPUTIME_ID), Relaxed);
            r.collections.begin(now_ns());
        }
        GC_EVENT_END => {
            r.collections.end(now_ns());
            let cpu = clock_ns(libc::CLOCK_THREAD_CPUTIME_ID);
            r.cpu_ns
                .fetch_add(cpu.saturating_sub(r.cpu_open.load(Relaxed)), Relaxed);
        }
        GC_EVENT_PRE_STOP_WORLD => r.stopped.begin(now_ns()),
        GC_EVENT_POST_START_WORLD => r.stopped.end(now_ns()),
        _ => {}
    }
}

/// Initialises libgc (incremental mode or not) with room for `capacity` recorded intervals
/// of each kind, and allows other threads to register. `max_heap` (bytes), if given, is the
/// heap limit (`GC_set_max_heap_size`: libgc fails an allocation rather than grow past it).
///
/// # Safety
///
/// Call once, from the main thread, before any other function of this module; afterwards
/// never store an [`Obj`] outside a stack, registers or another object (module invariants).
pub unsafe fn init(incremental: bool, capacity: usize, max_heap: Option<usize>) {
    let fresh = RECORDER.set(Recorder {
        collections: Intervals::new(capacity),
        stopped: Intervals::new(capacity),
        slow_allocs: Intervals::new(capacity),
        cpu_open: AtomicU64::new(0),
        cpu_ns: AtomicU64::new(0),
    });
    assert!(fresh.is_ok(), "boehm::init called twice");
    // SAFETY: the callback obeys the no-allocation/no-lock rule (module invariants); both
    // initialisers are called once, from the main thread, as libgc requires.
    unsafe {
        GC_set_on_collection_event(Some(on_event));
        if incremental {
            GC_enable_incremental(); // includes GC_init()
        } else {
            GC_init();
        }
        GC_allow_register_threads();
        if let Some(n) = max_heap {
            GC_set_max_heap_size(n);
        }
    }
}

/// Runs `f` in the calling (non-main) thread registered with libgc.
pub fn registered<R: Send>(f: impl FnOnce() -> R) -> R {
    let mut sb = GcStackBase {
        mem_base: std::ptr::null_mut(),
    };
    // SAFETY: `sb` is a valid out-pointer; registration follows GC_allow_register_threads
    // (init) and is undone below before the thread ends.
    let r = unsafe { GC_get_stack_base(&mut sb) };
    assert_eq!(r, GC_SUCCESS, "GC_get_stack_base failed");
    // SAFETY: as above; `sb` describes this thread's stack.
    let r = unsafe { GC_register_my_thread(&sb) };
    assert!(
        r == GC_SUCCESS || r == GC_DUPLICATE,
        "GC_register_my_thread: {r}"
    );
    let out = f();
    // SAFETY: this thread was registered above, and it holds no Obj past this point: `f` has
    // returned, and its result is `Send`, which `Obj` is not.
    unsafe { GC_unregister_my_thread() };
    out
}

/// The calling thread's id.
pub fn gettid() -> u64 {
    // SAFETY: gettid takes no arguments and cannot fail.
    (unsafe { libc::gettid() }) as u64
}

/// What the recorder and libgc report after a run.
pub struct Report {
    pub collections: Vec<(u64, u64)>,
    pub stopped: Vec<(u64, u64)>,
    pub slow_allocs: Vec<(u64, u64)>,
    pub dropped: u64,
    pub collector_thread_cpu_ns: u64,
    pub gc_no: u64,
    pub heap_bytes: u64,
}

/// The recorded intervals (absolute CLOCK_MONOTONIC ns) and counters.
pub fn report() -> Report {
    let r = RECORDER.get().expect("boehm::init not called");
    // SAFETY: plain getters of libgc's counters.
    let (gc_no, heap) = unsafe { (GC_get_gc_no(), GC_get_heap_size()) };
    Report {
        collections: r.collections.snapshot(),
        stopped: r.stopped.snapshot(),
        slow_allocs: r.slow_allocs.snapshot(),
        dropped: r.collections.dropped.load(Relaxed)
            + r.stopped.dropped.load(Relaxed)
            + r.slow_allocs.dropped.load(Relaxed),
        collector_thread_cpu_ns: r.cpu_ns.load(Relaxed),
        gc_no: gc_no as u64,
        heap_bytes: heap as u64,
    }
}

//! Boehm-Demers-Weiser's allocation entry points (`GC_malloc`, `GC_malloc_atomic`), loaded at
//! run time from Debian's `libgc1` (`libgc.so.1`, the library `benches/peers` links with its
//! `boehm` feature), for benches that put Boehm's allocation next to Faultline's in the same run.
//!
//! The library is opened with `dlopen` rather than linked, so a bench using this module builds
//! and runs everywhere: without `libgc.so.1` [`Boehm::get`] says why and the bench leaves its
//! Boehm rows out. A call through the resolved pointer costs what a linked call costs (Rust
//! calls a shared library's function through its GOT entry, an indirect call, either way).
//!
//! libgc runs in its default configuration: collections enabled (an allocation that finds the
//! free lists empty may collect, so a timed loop includes libgc's collections, amortised),
//! thread-local free lists for the initialising thread, and `GC_all_interior_pointers` on, so
//! every object gets one extra byte before size-class rounding (`GC_malloc(16)` takes a 32-byte
//! granule pair; see gc.h).
//!
//! Invariants:
//! - `GC_init` runs once, in the first thread that calls [`Boehm::get`]; only that thread may
//!   allocate (no other thread is registered with libgc): `get` refuses every other thread, and
//!   [`Boehm`] is `!Send`;
//! - nothing libgc returns is kept outside a scanned place (stack, registers, static data): the
//!   benches drop every object at once, so libgc is free to reuse it at its next collection.

use std::ffi::{c_char, c_void, CStr};
use std::marker::PhantomData;
use std::sync::OnceLock;
use std::thread::ThreadId;

type MallocFn = unsafe extern "C" fn(usize) -> *mut c_void;
type VoidFn = unsafe extern "C" fn();
type WordFn = unsafe extern "C" fn() -> usize;
type ExpandFn = unsafe extern "C" fn(usize) -> std::ffi::c_int;

/// libgc's entry points.
#[derive(Clone, Copy)]
struct Fns {
    malloc: MallocFn,
    malloc_atomic: MallocFn,
    gc_no: WordFn,
    heap_size: WordFn,
    expand_hp: ExpandFn,
}

/// libgc's entry points, resolved and initialised, usable in the thread that initialised libgc.
#[derive(Clone, Copy)]
pub struct Boehm {
    f: Fns,
    _not_send: PhantomData<*const ()>,
}

/// The entry points and the thread `GC_init` ran in, or why libgc is unavailable.
static LOADED: OnceLock<Result<(Fns, ThreadId), String>> = OnceLock::new();

/// The last `dlerror()` message, or `what`.
fn dl_error(what: &str) -> String {
    // SAFETY: `dlerror` returns null or a NUL-terminated string valid until the next dl* call
    // on this thread; it is copied at once.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        what.to_string()
    } else {
        // SAFETY: non-null, NUL-terminated (above).
        format!("{what}: {}", unsafe { CStr::from_ptr(e) }.to_string_lossy())
    }
}

impl Boehm {
    /// libgc, loaded and initialised in this thread, or why not (no `libgc.so.1`, or libgc was
    /// initialised in another thread).
    pub fn get() -> Result<Boehm, String> {
        let (f, tid) = LOADED.get_or_init(Self::load).clone()?;
        if tid != std::thread::current().id() {
            return Err("libgc was initialised in another thread".into());
        }
        Ok(Boehm {
            f,
            _not_send: PhantomData,
        })
    }

    /// Resolve and initialise libgc in this thread (runs once per process).
    fn load() -> Result<(Fns, ThreadId), String> {
        const LIB: &CStr = c"libgc.so.1";
        // SAFETY: a NUL-terminated library name; loading libgc runs no code that depends on
        // the caller (its constructors only set up its own state).
        let h = unsafe { libc::dlopen(LIB.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if h.is_null() {
            return Err(dl_error("dlopen libgc.so.1 (Debian package libgc1)"));
        }
        let sym = |name: &CStr| -> Result<*mut c_void, String> {
            // SAFETY: `h` is a live handle (never closed); `name` is NUL-terminated.
            let p = unsafe { libc::dlsym(h, name.as_ptr() as *const c_char) };
            if p.is_null() {
                Err(dl_error(&format!("dlsym {}", name.to_string_lossy())))
            } else {
                Ok(p)
            }
        };
        // SAFETY: (for the transmutes below too) the symbols are libgc's functions with these C
        // signatures (gc.h, libgc 8.x): `void GC_init(void)`, `void *GC_malloc(size_t)`,
        // `void *GC_malloc_atomic(size_t)`, `GC_word GC_get_gc_no(void)`, `size_t
        // GC_get_heap_size(void)`, `int GC_expand_hp(size_t)`; `GC_word` and `size_t` are
        // `usize` on Linux.
        let init: VoidFn = unsafe { std::mem::transmute::<*mut c_void, VoidFn>(sym(c"GC_init")?) };
        let f = Fns {
            // SAFETY: see above.
            malloc: unsafe { std::mem::transmute::<*mut c_void, MallocFn>(sym(c"GC_malloc")?) },
            // SAFETY: see above.
            malloc_atomic: unsafe {
                std::mem::transmute::<*mut c_void, MallocFn>(sym(c"GC_malloc_atomic")?)
            },
            // SAFETY: see above.
            gc_no: unsafe { std::mem::transmute::<*mut c_void, WordFn>(sym(c"GC_get_gc_no")?) },
            // SAFETY: see above.
            heap_size: unsafe {
                std::mem::transmute::<*mut c_void, WordFn>(sym(c"GC_get_heap_size")?)
            },
            // SAFETY: see above.
            expand_hp: unsafe {
                std::mem::transmute::<*mut c_void, ExpandFn>(sym(c"GC_expand_hp")?)
            },
        };
        // SAFETY: `GC_init` has no preconditions; it runs once (`load` runs once per process)
        // and registers this thread, the only one `get` hands a `Boehm` to.
        unsafe { init() };
        Ok((f, std::thread::current().id()))
    }

    /// `GC_malloc(bytes)`: zeroed, scanned conservatively.
    #[inline]
    pub fn malloc(&self, bytes: usize) -> *mut c_void {
        // SAFETY: libgc is initialised, and this is the thread it registered (`get` checks;
        // `Boehm` is `!Send`). Any size is valid; null means out of memory.
        unsafe { (self.f.malloc)(bytes) }
    }

    /// `GC_malloc_atomic(bytes)`: not zeroed, never scanned.
    #[inline]
    pub fn malloc_atomic(&self, bytes: usize) -> *mut c_void {
        // SAFETY: as for `malloc`.
        unsafe { (self.f.malloc_atomic)(bytes) }
    }

    /// Collections libgc has run so far (`GC_get_gc_no`).
    pub fn collections(&self) -> usize {
        // SAFETY: a getter without preconditions after `GC_init`.
        unsafe { (self.f.gc_no)() }
    }

    /// libgc's heap size in bytes (`GC_get_heap_size`).
    pub fn heap_size(&self) -> usize {
        // SAFETY: as for `collections`.
        unsafe { (self.f.heap_size)() }
    }

    /// Grow libgc's heap to at least `bytes` (`GC_expand_hp`), so that it collects far less
    /// often than with its small initial heap. Returns whether libgc could.
    pub fn expand_heap_to(&self, bytes: usize) -> bool {
        let have = self.heap_size();
        // SAFETY: as for `malloc`; any size is valid (0 on failure).
        have >= bytes || unsafe { (self.f.expand_hp)(bytes - have) } != 0
    }
}

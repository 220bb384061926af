//! The machine state every primitive works on: [`Vm`] (one thread's mutator, code snapshot and
//! step count), [`Shared`] (what all threads of one program share: heap, types, root
//! tables, code, symbols, output, threads), [`VmConfig`], and the operations below the
//! interpreter: allocation helpers, interning, program output, error rendering, and threads.
//!
//! The interpreter ([`crate::vm`]) and the primitives ([`crate::builtins`]) both build on this
//! module; it depends on neither. A spawned thread runs its thunk through
//! `Shared::thread_main`, which the interpreter installs when it creates the program.
//!
//! Invariants:
//! - Every allocation helper may reach a safepoint: a caller holding a `Value` that may be a
//!   reference in a Rust variable across one must re-read it afterwards (from the value stack,
//!   a frame or a root table). `Vm::cons_at` takes its operands as stack slots for this reason.
//! - `Shared::globals` slot `i` is the global variable named by `SymbolId(i)`; a null slot is
//!   unbound. `Shared::prim_rebound[i]` is set before any store into the slot of a
//!   primitive's name other than the binding of the primitive itself at start-up. Constants live in `Shared::consts` at the slots the compiler assigned.
//! - `Vm::code` is a snapshot of `Shared::code`, which only grows: an op index or prototype
//!   id valid in a snapshot stays valid in every later one.
//! - A thread's result leaves it as a [`GlobalRoot`], so it survives collections until `join`
//!   reads it back onto the joiner's stack.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use faultline::{GlobalRoot, Heap, Layout, Local, Mutator, Obj, TypeId, Value};

use crate::compile::Code;
use crate::diag::{Diagnostic, SourceMap};
use crate::error::{ErrorKind, EvalError, RtError, R};
use crate::roots::SlotTable;
use crate::symbols::{SymbolId, SymbolTable};
use crate::value::{self, Types};

/// Limits and switches of a VM.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// Maximum value-stack depth in slots (activation records take 3 slots plus operands).
    pub max_stack: usize,
    /// Maximum number of procedure calls per thread (for fuzzing), if any.
    pub max_steps: Option<u64>,
    /// Wall-clock limit of the whole VM from its creation (for fuzzing), if any.
    pub time_limit: Option<Duration>,
    /// Maximum number of threads `spawn` may create over the VM's life.
    pub max_threads: usize,
    /// Maximum bytes of program output, if any.
    pub output_limit: Option<usize>,
    /// What `(command-line)` returns.
    pub args: Vec<String>,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            max_stack: 16 << 20,
            max_steps: None,
            time_limit: None,
            max_threads: 256,
            output_limit: None,
            args: Vec::new(),
        }
    }
}

/// Where program output goes.
pub struct Output {
    sink: Box<dyn Write + Send>,
    written: usize,
    limit: Option<usize>,
}

impl Output {
    /// Output to `sink`, failing once more than `limit` bytes (if any) are written.
    pub(crate) fn new(sink: Box<dyn Write + Send>, limit: Option<usize>) -> Output {
        Output {
            sink,
            written: 0,
            limit,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> R<()> {
        self.written += bytes.len();
        if self.limit.is_some_and(|l| self.written > l) {
            return Err(RtError::of(ErrorKind::Limit, "output limit exceeded"));
        }
        self.sink
            .write_all(bytes)
            .map_err(|e| RtError::new(format!("write failed: {e}")))
    }
}

/// State of a thread created by `spawn`.
pub(crate) enum ThreadSlot {
    Running(JoinHandle<Result<GlobalRoot, RtError>>),
    Joining,
    Done(Result<GlobalRoot, RtError>),
}

/// What every thread of one program shares.
pub struct Shared {
    /// The heap every value lives in.
    pub heap: Heap,
    /// The runtime's heap types, registered in `heap`.
    pub types: Types,
    /// Limits and switches.
    pub config: VmConfig,
    pub(crate) globals: Arc<SlotTable>,
    pub(crate) consts: Arc<SlotTable>,
    pub(crate) code: RwLock<Arc<Code>>,
    pub(crate) next_const: Mutex<u32>,
    pub(crate) symbols: RwLock<SymbolTable>,
    /// Primitive index by symbol id (for `PrimCall` ops).
    pub(crate) prim_of: Vec<Option<u16>>,
    /// By symbol id (as `prim_of`): whether the global of a primitive's name was ever assigned
    /// after the primitives were bound. While it was not, a `PrimCall` of it needs not read
    /// the global to know it still holds the primitive.
    pub(crate) prim_rebound: Vec<AtomicBool>,
    pub(crate) out: Mutex<Output>,
    pub(crate) threads: Mutex<Vec<ThreadSlot>>,
    pub(crate) sources: Mutex<SourceMap>,
    pub(crate) started: Instant,
    pub(crate) inputs: AtomicU32,
    /// How a spawned thread runs its thunk (installed by the interpreter).
    pub(crate) thread_main: ThreadMain,
    /// The program's finalization queue (`register-finalizer!`, `take-finalized`).
    pub(crate) finalizers: faultline::FinalizationQueue,
}

/// The body of a spawned thread: attach a [`Vm`] to the program, call the thunk (held by the
/// root) with no arguments, and return its result as a root.
pub(crate) type ThreadMain = fn(Arc<Shared>, GlobalRoot) -> Result<GlobalRoot, RtError>;

impl Shared {
    /// The name of symbol `id` (read access to the symbol table).
    pub fn symbol_name(&self, id: SymbolId) -> String {
        self.symbols
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .name(id)
            .to_string()
    }
}

/// The internal error of [`Vm::known`].
#[cold]
#[inline(never)]
fn not_of_type(v: Value, layout: &Layout) -> RtError {
    RtError::new(format!(
        "internal error: {v:?} is not an object of type {:?}",
        layout.type_id()
    ))
}

/// Locks `m`, ignoring poisoning (a panicking thread leaves the data consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One thread's machine: its mutator, a snapshot of the program's code, and a step counter.
/// The interpreter ([`crate::vm`]) runs Scheme code on it.
pub struct Vm {
    /// What every thread of the program shares.
    pub shared: Arc<Shared>,
    /// This thread's mutator (its value stack is the VM's stack).
    pub m: Mutator,
    pub(crate) code: Arc<Code>,
    pub(crate) steps: u64,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm").field("steps", &self.steps).finish()
    }
}

impl Vm {
    /// A VM for another thread of the same program.
    pub(crate) fn attach(shared: Arc<Shared>, m: Mutator) -> Vm {
        let code = shared
            .code
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Vm {
            shared,
            m,
            code,
            steps: 0,
        }
    }

    /// The heap.
    pub fn heap(&self) -> &Heap {
        &self.shared.heap
    }

    /// Flushes program output.
    pub fn flush(&self) {
        let _ = lock(&self.shared.out).sink.flush();
    }

    /// Writes program output.
    pub(crate) fn write_out(&self, bytes: &[u8]) -> R<()> {
        lock(&self.shared.out).write(bytes)
    }

    /// Writes to the program's output (for hosts such as the REPL).
    pub fn write_out_public(&self, bytes: &[u8]) -> R<()> {
        self.write_out(bytes)
    }

    /// Renders a diagnostic against the sources loaded so far.
    pub fn render_diag(&self, d: &Diagnostic) -> String {
        d.render(&lock(&self.shared.sources))
    }

    /// Renders a runtime error.
    pub fn render(&self, e: &EvalError) -> String {
        match e {
            EvalError::Syntax(d) => self.render_diag(d),
            EvalError::Runtime(r) => self.render_diag(&r.diagnostic()),
        }
    }

    /// The symbol named `name` (interning it).
    pub fn intern(&self, name: &str) -> Value {
        let id = self
            .shared
            .symbols
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .intern(name);
        value::symbol(id)
    }

    /// Access to an object (an internal error for a non-reference).
    #[inline]
    pub(crate) fn obj(&self, v: Value) -> R<Local<'_>> {
        self.m
            .local(v)
            .ok_or_else(|| RtError::new(format!("internal error: {v:?} is not an object")))
    }

    /// The object `v` names as one of the type of `layout` (an internal error for anything
    /// else): validated once, then accessed with index checks only (see `faultline::Obj`).
    #[inline]
    pub(crate) fn known(&self, v: Value, layout: &Layout) -> R<Obj<'_>> {
        match self.m.obj(v, layout) {
            Some(o) => Ok(o),
            None => Err(not_of_type(v, layout)),
        }
    }

    /// The activation frame `v` (an internal error if it is not one).
    #[inline]
    pub(crate) fn frame(&self, v: Value) -> R<Obj<'_>> {
        self.known(v, &self.shared.types.lay.frame)
    }

    /// The heap type of `v`, if it is a reference.
    #[inline]
    pub(crate) fn type_of(&self, v: Value) -> Option<TypeId> {
        self.m.type_of(v)
    }

    /// A flonum.
    pub(crate) fn make_float(&mut self, x: f64) -> R<Value> {
        let v = self.m.alloc(self.shared.types.flonum, 0)?;
        self.known(v, &self.shared.types.lay.flonum)?
            .set_word(0, x.to_bits());
        Ok(v)
    }

    /// An integer: a fixnum, or a flonum if it does not fit 61 bits.
    pub(crate) fn make_int(&mut self, n: i64) -> R<Value> {
        match value::fix(n) {
            Some(v) => Ok(v),
            None => self.make_float(n as f64),
        }
    }

    /// A string.
    pub(crate) fn make_string(&mut self, s: &str) -> R<Value> {
        let v = self.m.alloc(self.shared.types.string, s.len())?;
        self.obj(v)?.write_bytes(0, s.as_bytes());
        Ok(v)
    }

    /// Makes a pair of the values in stack slots `car_at` and `cdr_at`; the pair replaces the
    /// lower of the two slots and the stack is truncated just above it.
    pub(crate) fn cons_at(&mut self, car_at: usize, cdr_at: usize) -> R<()> {
        let p = self.m.alloc(self.shared.types.pair, 0)?;
        let l = self.known(p, &self.shared.types.lay.pair)?;
        // SAFETY: payload words 0 and 1 of a pair are reference slots (the pair layout,
        // checked in `Types::register`); both values are read from the value stack after the
        // allocation, the last safepoint, so they are current values of this heap.
        unsafe {
            l.set_unchecked(0, self.m.stack_get(car_at));
            l.set_unchecked(1, self.m.stack_get(cdr_at));
        }
        let at = car_at.min(cdr_at);
        self.m.stack_truncate(at + 1);
        self.m.stack_set(at, p);
        Ok(())
    }

    /// Takes a new snapshot of the program's code (after another thread loaded more).
    pub(crate) fn refresh_code(&mut self) {
        self.code = self
            .shared
            .code
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
    }

    /// Starts `(spawn thunk)`: the thunk is at stack slot `at`.
    pub(crate) fn spawn_thread(&mut self, at: usize) -> R<Value> {
        let thunk = self.m.stack_get(at);
        let index = {
            let mut threads = lock(&self.shared.threads);
            if threads.len() >= self.shared.config.max_threads {
                return Err(RtError::of(
                    ErrorKind::Limit,
                    format!(
                        "spawn: thread limit ({}) reached",
                        self.shared.config.max_threads
                    ),
                ));
            }
            let root = GlobalRoot::new(&self.shared.heap, thunk);
            let shared = self.shared.clone();
            let thread_main = shared.thread_main;
            let handle = std::thread::Builder::new()
                .name(format!("scheme-{}", threads.len() + 1))
                .stack_size(64 << 20)
                .spawn(move || thread_main(shared, root))
                .map_err(|e| RtError::new(format!("spawn: cannot start a thread: {e}")))?;
            threads.push(ThreadSlot::Running(handle));
            threads.len() - 1
        };
        let t = self.m.alloc(self.shared.types.thread, 0)?;
        self.obj(t)?.set_word(0, index as u64);
        Ok(t)
    }

    /// `(join t)`: waits for the thread (in a native section) and returns its result.
    pub(crate) fn join_thread(&mut self, index: usize) -> R<Value> {
        let slot = {
            let mut threads = lock(&self.shared.threads);
            match threads.get_mut(index) {
                Some(s) => std::mem::replace(s, ThreadSlot::Joining),
                None => return Err(RtError::new("join: unknown thread")),
            }
        };
        let result = match slot {
            ThreadSlot::Running(h) => match self.m.native(move || h.join()) {
                Ok(r) => r,
                Err(_) => Err(RtError::new(format!(
                    "thread {} panicked (an internal error)",
                    index + 1
                ))),
            },
            ThreadSlot::Done(r) => r,
            ThreadSlot::Joining => {
                lock(&self.shared.threads)[index] = ThreadSlot::Joining;
                return Err(RtError::new("join: the thread is being joined elsewhere"));
            }
        };
        let out = match &result {
            Ok(root) => Ok(root.get(&self.m)),
            Err(e) => {
                let mut err = RtError::of(
                    match e.kind {
                        ErrorKind::OutOfMemory => ErrorKind::OutOfMemory,
                        ErrorKind::Exit(c) => ErrorKind::Exit(c),
                        _ => ErrorKind::Runtime,
                    },
                    format!("joined thread {} failed: {}", index + 1, e.message),
                );
                err.notes.push((
                    e.span.clone(),
                    format!("thread {}: {}", index + 1, e.message),
                ));
                Err(err)
            }
        };
        lock(&self.shared.threads)[index] = ThreadSlot::Done(result);
        out
    }

    /// Waits for every thread not joined yet; returns the first failure among them.
    pub fn join_all(&mut self) -> R<()> {
        let n = lock(&self.shared.threads).len();
        let mut first = Ok(());
        for i in 0..n {
            let running = matches!(lock(&self.shared.threads)[i], ThreadSlot::Running(_));
            if running {
                if let Err(e) = self.join_thread(i) {
                    if first.is_ok() {
                        first = Err(e);
                    }
                }
            }
        }
        first
    }
}

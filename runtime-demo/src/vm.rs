//! The virtual machine: a bytecode interpreter whose every value lives in the Faultline heap.
//!
//! This is the top layer of the runtime. It loads programs (read, compile with
//! [`crate::syntax`] and [`crate::compile`], materialize constants) and runs their bytecode on
//! the machine state of [`crate::machine`], calling the primitives of [`crate::builtins`]. It
//! is also where the primitive table is wired in: [`Vm::new`] binds every primitive's name as
//! a global and gives the compiler its primitive lookup, and installs the body of spawned
//! threads in the shared state. Nothing below this module imports it.
//!
//! # Machine state
//!
//! Each OS thread running Scheme code owns a [`Vm`]: one Faultline [`faultline::Mutator`] plus two
//! registers, `pc` (an index into the shared [`Code`] store) and `bp` (the base of the current
//! activation on the mutator's **value stack**). The value stack is the only place a value
//! survives a safepoint, so it holds *everything*: operands, and the activation records
//!
//! ```text
//!   bp+0  frame      the activation's heap frame (reference array: [parent, slots...])
//!   bp+1  return pc  VM-internal word; HOST_RET when the caller is Rust
//!   bp+2  caller bp  VM-internal word
//!   bp+3  operands ...
//! ```
//!
//! Variables live in heap frames (closures capture them), so a closure outlives its activation
//! for free. Global variables and materialized constants live in [`SlotTable`]s registered as
//! root sources.
//!
//! # Invariants
//! - No `Value` that may be a reference is held in a Rust variable across anything that can
//!   reach a safepoint (`alloc`, `safepoint`, `native`, `collect`): it is re-read from the value
//!   stack, a frame, or a root table afterwards.
//! - The interpreter never recurses in Rust for Scheme calls: a non-tail call pushes an
//!   activation record on the value stack, a tail call overwrites the current one, so Scheme
//!   recursion depth is bounded only by [`VmConfig::max_stack`] (a clean "stack depth exceeded"
//!   error) and tail calls run in constant space. Rust recursion happens only over data
//!   (printing, `equal?`, materializing constants), each bounded by a depth limit.
//! - `m.safepoint()` is polled on every procedure call; since the compiler guarantees there are
//!   no loops inside an activation, every loop passes a safepoint.
//! - A runtime error unwinds the value stack to the host entry ([`Vm::apply`]) after recording
//!   a backtrace of the call sites of the live activations.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use faultline::{GlobalRoot, Heap, Value};

use crate::builtins::{self, PRIMS};
use crate::compile::{Code, Gen, Op};
use crate::diag::{Frame, SourceMap};
use crate::error::{ErrorKind, EvalError, RtError, R};
use crate::machine::{lock, Output, Shared};
use crate::reader::{read_all, Datum, DatumKind};
use crate::roots::{SlotTable, MAX_SLOTS};
use crate::symbols::{SymbolId, SymbolTable};
use crate::syntax::compile_program;
use crate::value::{self, as_internal, internal, Types, NIL, UNSPEC};

pub use crate::machine::{Vm, VmConfig};

/// Return-address word of an activation entered from Rust.
const HOST_RET: usize = u32::MAX as usize;

/// What a call did.
enum Next {
    /// A primitive returned this value (the procedure and arguments are popped).
    Value(Value),
    /// A closure was entered at `pc` with base `bp`.
    Enter { pc: usize, bp: usize },
}

/// How a call links to its caller.
#[derive(Clone, Copy)]
enum Link {
    Host,
    Normal { ret: usize, bp: usize },
    Tail { bp: usize },
}

const PRELUDE: &str = include_str!("prelude.scm");

impl Vm {
    /// A VM on `heap` (whose runtime types are registered here: one VM per heap), writing
    /// program output to `out`. Loads the prelude.
    pub fn new(heap: Heap, config: VmConfig, out: Box<dyn Write + Send>) -> Result<Vm, String> {
        let types = Types::register(&heap)?;
        let globals = Arc::new(SlotTable::default());
        let consts = Arc::new(SlotTable::default());
        heap.add_root_source(globals.clone());
        heap.add_root_source(consts.clone());
        let mut symbols = SymbolTable::new();
        let mut prim_of = Vec::new();
        let mut prim_globals = Vec::new();
        for (i, p) in PRIMS.iter().enumerate() {
            let id = symbols.intern(p.name).0 as usize;
            if prim_of.len() <= id {
                prim_of.resize(id + 1, None);
            }
            if !p.special {
                prim_of[id] = Some(i as u16);
            }
            prim_globals.push((id, value::prim(i)));
        }
        let limit = config.output_limit;
        let shared = Arc::new(Shared {
            heap: heap.clone(),
            types,
            config,
            globals,
            consts,
            code: RwLock::new(Arc::new(Code::default())),
            next_const: Mutex::new(0),
            symbols: RwLock::new(symbols),
            prim_rebound: prim_of.iter().map(|_| AtomicBool::new(false)).collect(),
            prim_of,
            out: Mutex::new(Output::new(out, limit)),
            threads: Mutex::new(Vec::new()),
            sources: Mutex::new(SourceMap::new()),
            started: Instant::now(),
            inputs: AtomicU32::new(0),
            thread_main,
            finalizers: faultline::FinalizationQueue::new(&heap),
        });
        let mut vm = Vm::attach(shared, heap.attach());
        for (id, p) in prim_globals {
            vm.shared.globals.set(&vm.m, id, p);
        }
        vm.eval_source("<prelude>", PRELUDE)
            .map_err(|e| format!("the prelude failed: {}", vm.render(&e)))?;
        Ok(vm)
    }

    // ---- loading ----

    /// Reads, compiles and runs every form of `src`; returns the last form's value.
    pub fn eval_source(&mut self, file: &str, src: &str) -> Result<Value, EvalError> {
        let forms = self.load(file, src)?;
        let mut last = UNSPEC;
        for id in forms {
            last = self.run_toplevel(id).map_err(EvalError::Runtime)?;
        }
        Ok(last)
    }

    /// A fresh file name for the `n`th interactive input.
    pub fn next_input_name(&self) -> String {
        let n = self.shared.inputs.fetch_add(1, Ordering::Relaxed) + 1;
        format!("<repl:{n}>")
    }

    /// Reads and compiles `src` and materializes its constants; returns the top-level forms'
    /// prototype ids (nothing has run yet).
    pub fn load(&mut self, file: &str, src: &str) -> Result<Vec<u32>, EvalError> {
        lock(&self.shared.sources).add(file, src);
        let data = read_all(file, src).map_err(|e| EvalError::Syntax(e.into()))?;
        let out = {
            let mut syms = self
                .shared
                .symbols
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let tls = compile_program(&data, &mut syms).map_err(|e| EvalError::Syntax(e.into()))?;
            let mut code_slot = self
                .shared
                .code
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let mut code = (**code_slot).clone();
            let mut next_const = lock(&self.shared.next_const);
            let prim_of = |s: SymbolId, argc: usize| {
                let p = self
                    .shared
                    .prim_of
                    .get(s.0 as usize)
                    .copied()
                    .flatten()
                    .map(usize::from)?;
                Some((p, builtins::fast_code(p, argc)))
            };
            let out = Gen::new(&mut code, &mut syms, &prim_of, &mut next_const).toplevels(&tls);
            if *next_const as usize > MAX_SLOTS {
                return Err(EvalError::Runtime(RtError::new(
                    "too many constants in the program",
                )));
            }
            *code_slot = Arc::new(code);
            self.code = code_slot.clone();
            out
        };
        for (slot, datum) in &out.pending {
            self.materialize(datum).map_err(EvalError::Runtime)?;
            let v = self.m.pop().unwrap_or(UNSPEC);
            self.shared.consts.set(&self.m, *slot as usize, v);
        }
        Ok(out.toplevels)
    }

    /// Pushes the heap value of a constant datum.
    fn materialize(&mut self, d: &Datum) -> R<()> {
        match &d.kind {
            DatumKind::Fixnum(n) => {
                let v = self.make_int(*n)?;
                self.m.push(v);
            }
            DatumKind::Float(x) => {
                let v = self.make_float(*x)?;
                self.m.push(v);
            }
            DatumKind::Bool(b) => self.m.push(value::boolean(*b)),
            DatumKind::Char(c) => self.m.push(value::character(*c)),
            DatumKind::Str(s) => {
                let v = self.make_string(s)?;
                self.m.push(v);
            }
            DatumKind::Symbol(s) => {
                let v = self.intern(s);
                self.m.push(v);
            }
            DatumKind::List(items) => {
                self.m.push(NIL);
                self.materialize_prefix(items)?;
            }
            DatumKind::Dotted(items, tail) => {
                self.materialize(tail)?;
                self.materialize_prefix(items)?;
            }
            DatumKind::Vector(items) => {
                let base = self.m.stack_len();
                for it in items {
                    self.materialize(it)?;
                }
                let v = self.m.alloc(self.shared.types.vector, items.len())?;
                let l = self.obj(v)?;
                for i in 0..items.len() {
                    l.set(i, self.m.stack_get(base + i));
                }
                self.m.stack_truncate(base);
                self.m.push(v);
            }
        }
        Ok(())
    }

    /// With a list tail on the stack top, conses `items` in front of it.
    fn materialize_prefix(&mut self, items: &[Datum]) -> R<()> {
        for it in items.iter().rev() {
            self.materialize(it)?;
            let top = self.m.stack_len() - 1;
            self.cons_at(top, top - 1)?;
        }
        Ok(())
    }

    // ---- running ----

    /// Runs a top-level form.
    pub fn run_toplevel(&mut self, id: u32) -> R<Value> {
        let base = self.m.stack_len();
        let r = self.enter_toplevel(id);
        self.m.stack_truncate(base);
        r
    }

    fn enter_toplevel(&mut self, id: u32) -> R<Value> {
        let p = self.code.protos[id as usize].clone();
        let frame = self
            .m
            .alloc(self.shared.types.frame, p.frame_len as usize)?;
        let bp = self.m.stack_len();
        self.m.push(frame);
        self.m.push(internal(HOST_RET));
        self.m.push(internal(0));
        self.run(p.entry as usize, bp)
    }

    /// Calls the procedure below the top `argc` stack values with them as arguments; pops
    /// them all, and returns the result.
    pub fn apply(&mut self, argc: usize) -> R<Value> {
        let base = self.m.stack_len() - argc - 1;
        let r = match self.call(argc, Link::Host) {
            Ok(Next::Value(v)) => Ok(v),
            Ok(Next::Enter { pc, bp }) => self.run(pc, bp),
            Err(e) => Err(e),
        };
        self.m.stack_truncate(base);
        r
    }

    /// Counts a step and checks the limits and the safepoint.
    #[inline]
    fn tick(&mut self) -> R<()> {
        self.steps += 1;
        self.m.safepoint();
        if self.steps & 0x3ff == 0 {
            self.check_limits()?;
        }
        Ok(())
    }

    #[cold]
    fn check_limits(&mut self) -> R<()> {
        let c = &self.shared.config;
        if c.max_steps.is_some_and(|n| self.steps > n) {
            return Err(RtError::of(ErrorKind::Limit, "step limit exceeded"));
        }
        if c.time_limit
            .is_some_and(|t| self.shared.started.elapsed() > t)
        {
            return Err(RtError::of(ErrorKind::Limit, "time limit exceeded"));
        }
        Ok(())
    }

    /// Calls the procedure at stack position `len - argc - 1` (see [`Next`]).
    fn call(&mut self, mut argc: usize, link: Link) -> R<Next> {
        self.tick()?;
        loop {
            let fpos = self.m.stack_len() - argc - 1;
            let f = self.m.stack_get(fpos);
            if let Some(p) = value::as_prim(f) {
                let def = &PRIMS[p];
                if def.name == "apply" {
                    argc = self.spread_apply(fpos, argc)?;
                    continue;
                }
                builtins::check_arity(def, argc)?;
                let r = (def.f)(self, fpos + 1, argc)?;
                self.m.stack_truncate(fpos);
                return Ok(Next::Value(r));
            }
            let Some(l) = self.m.obj(f, &self.shared.types.lay.closure) else {
                return Err(RtError::new(format!(
                    "not a procedure: {}",
                    crate::printer::to_string(self, f, true)
                )));
            };
            let id = l.word(0) as usize;
            if id >= self.code.protos.len() {
                self.refresh_code();
            }
            let p = &self.code.protos[id];
            let (nparams, rest, frame_len, entry) = (
                p.nparams as usize,
                p.rest,
                p.frame_len as usize,
                p.entry as usize,
            );
            if argc < nparams || (!rest && argc > nparams) {
                return Err(self.arity_error(id, argc));
            }
            if rest {
                // The rest list goes on the stack top.
                self.m.push(NIL);
                for i in (nparams..argc).rev() {
                    let top = self.m.stack_len() - 1;
                    self.m.push(self.m.stack_get(fpos + 1 + i));
                    self.cons_at(top + 1, top)?;
                }
            }
            let frame = self.m.alloc(self.shared.types.frame, frame_len)?;
            {
                let fr = self.frame(frame)?;
                let clo = self.known(self.m.stack_get(fpos), &self.shared.types.lay.closure)?;
                // One bounds check for the whole fill (the compiler sizes a prototype's frame
                // for its parameters; this does not take that on trust).
                if fr.payload_words() < 1 + nparams + usize::from(rest) {
                    return Err(RtError::new(
                        "internal error: a frame too small for its arguments",
                    ));
                }
                // SAFETY: `fr` is a frame (a reference array, every element a reference slot)
                // of at least `1 + nparams + rest` elements (checked just above), so every
                // index below is an in-bounds reference slot; `closure` word 1 is a reference
                // slot of the closure layout (checked in `Types::register`); every stored value
                // was read from the value stack or a reference slot after the allocation, the
                // last safepoint, so it is null, an immediate or a current reference of this
                // heap.
                unsafe {
                    fr.set_unchecked(0, clo.get_unchecked(1));
                    for i in 0..nparams {
                        fr.set_unchecked(1 + i, self.m.stack_get(fpos + 1 + i));
                    }
                    if rest {
                        fr.set_unchecked(1 + nparams, self.m.stack_get(self.m.stack_len() - 1));
                    }
                }
            }
            return Ok(match link {
                Link::Tail { bp } => {
                    self.m.stack_set(bp, frame);
                    self.m.stack_truncate(bp + 3);
                    Next::Enter { pc: entry, bp }
                }
                Link::Normal { ret, bp: caller } => {
                    if fpos > self.shared.config.max_stack {
                        return Err(RtError::of(
                            ErrorKind::Limit,
                            format!(
                                "stack depth exceeded ({} value-stack slots)",
                                self.shared.config.max_stack
                            ),
                        ));
                    }
                    self.m.stack_truncate(fpos);
                    self.m.push(frame);
                    self.m.push(internal(ret));
                    self.m.push(internal(caller));
                    Next::Enter {
                        pc: entry,
                        bp: fpos,
                    }
                }
                Link::Host => {
                    self.m.stack_truncate(fpos);
                    self.m.push(frame);
                    self.m.push(internal(HOST_RET));
                    self.m.push(internal(0));
                    Next::Enter {
                        pc: entry,
                        bp: fpos,
                    }
                }
            });
        }
    }

    #[cold]
    fn arity_error(&self, id: usize, argc: usize) -> RtError {
        let p = &self.code.protos[id];
        let name = p.name.as_deref().unwrap_or("anonymous procedure");
        let expects = match (p.nparams, p.rest) {
            (1, false) => "1 argument".to_string(),
            (n, false) => format!("{n} arguments"),
            (1, true) => "at least 1 argument".to_string(),
            (n, true) => format!("at least {n} arguments"),
        };
        RtError::new(format!(
            "wrong number of arguments: `{name}` expects {expects}, got {argc}"
        ))
    }

    /// `(apply f a ... list)` at `fpos`: rewrites the stack to `f a ... elements` and returns
    /// the new argument count.
    fn spread_apply(&mut self, fpos: usize, argc: usize) -> R<usize> {
        if argc == 0 {
            return Err(RtError::new(
                "wrong number of arguments: `apply` expects at least 1 argument, got 0",
            ));
        }
        let list = if argc >= 2 {
            self.m.pop().unwrap_or(NIL)
        } else {
            NIL
        };
        // Drop `apply` itself: shift f and the fixed arguments down by one.
        let n = self.m.stack_len();
        for i in fpos..n - 1 {
            self.m.stack_set(i, self.m.stack_get(i + 1));
        }
        self.m.stack_truncate(n - 1);
        let mut count = argc.saturating_sub(2);
        let mut cur = list;
        let limit = value::list_limit(self.heap());
        while cur != NIL {
            let Some(l) = self.m.obj(cur, &self.shared.types.lay.pair) else {
                return Err(RtError::new("apply: the last argument must be a list"));
            };
            if count > limit || self.m.stack_len() > self.shared.config.max_stack {
                return Err(RtError::new("apply: argument list too long or circular"));
            }
            self.m.push(l.get(0));
            cur = l.get(1);
            count += 1;
        }
        Ok(count)
    }

    /// Slot `index` of the frame `depth` levels out from the current one. Always inlined (as
    /// is [`Vm::load_local`]): out of line, the calls and their `R<Value>` results returned
    /// through memory cost the interpreter more than the loads.
    #[inline(always)]
    fn frame_at(&self, bp: usize, depth: u32) -> R<Value> {
        let mut env = self.m.stack_get(bp);
        for _ in 0..depth {
            env = self.frame(env)?.get(0);
        }
        Ok(env)
    }

    #[inline(always)]
    fn load_local(&self, bp: usize, depth: u32, index: u32) -> R<Value> {
        let env = self.frame_at(bp, depth)?;
        let v = self.frame(env)?.get(index as usize + 1);
        if v.is_null() {
            return Err(RtError::new(
                "variable used before its definition (letrec restriction)",
            ));
        }
        Ok(v)
    }

    #[inline]
    fn pop(&self) -> Value {
        self.m.pop().unwrap_or(UNSPEC)
    }

    #[inline]
    fn global(&self, sym: u32) -> R<Value> {
        let v = self.shared.globals.get(&self.m, sym as usize);
        if v.is_null() {
            return Err(RtError::new(format!(
                "unbound variable `{}`",
                self.shared.symbol_name(SymbolId(sym))
            )));
        }
        Ok(v)
    }

    /// Before a store into global `sym`: if it names a primitive, the global may no longer
    /// hold it (see [`Vm::still_prim`]).
    #[inline]
    fn note_rebound(&self, sym: u32) {
        if let Some(f) = self.shared.prim_rebound.get(sym as usize) {
            f.store(true, Ordering::Relaxed);
        }
    }

    /// Whether global `sym` holds primitive `prim`: known without reading it while the
    /// global was never assigned after start-up (it then holds the primitive bound there).
    #[inline]
    fn still_prim(&self, sym: u32, prim: u16) -> bool {
        match self.shared.prim_rebound.get(sym as usize) {
            Some(f) if !f.load(Ordering::Relaxed) => true,
            _ => self.shared.globals.get(&self.m, sym as usize) == value::prim(prim as usize),
        }
    }

    /// The interpreter loop: runs from `pc` in the activation at `bp` until the activation
    /// entered from the host returns.
    fn run(&mut self, mut pc: usize, mut bp: usize) -> R<Value> {
        macro_rules! tri {
            ($e:expr, $site:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => return Err(self.fail(e, $site, pc - 1, bp)),
                }
            };
        }
        loop {
            let op = self.code.ops[pc];
            pc += 1;
            match op {
                Op::Imm(v) => self.m.push(v),
                Op::Const(s) => self.m.push(self.shared.consts.get(&self.m, s as usize)),
                Op::Local0(i) => {
                    let v = tri!(self.load_local(bp, 0, i), None);
                    self.m.push(v);
                }
                Op::Local1(i) => {
                    let v = tri!(self.load_local(bp, 1, i), None);
                    self.m.push(v);
                }
                Op::Local { depth, index } => {
                    let v = tri!(self.load_local(bp, depth, index), None);
                    self.m.push(v);
                }
                Op::SetLocal0(i) => {
                    let v = self.pop();
                    let env = self.m.stack_get(bp);
                    tri!(self.frame(env), None).set(i as usize + 1, v);
                }
                Op::SetLocal { depth, index } => {
                    let v = self.pop();
                    let env = tri!(self.frame_at(bp, depth), None);
                    tri!(self.frame(env), None).set(index as usize + 1, v);
                }
                Op::Global { sym, site } => {
                    let v = tri!(self.global(sym), Some(site));
                    self.m.push(v);
                }
                Op::SetGlobal { sym, site } => {
                    tri!(self.global(sym), Some(site));
                    let v = self.pop();
                    self.note_rebound(sym);
                    self.shared.globals.set(&self.m, sym as usize, v);
                }
                Op::DefGlobal(sym) => {
                    let v = self.pop();
                    self.note_rebound(sym);
                    self.shared.globals.set(&self.m, sym as usize, v);
                }
                Op::Pop => {
                    self.m.pop();
                }
                Op::Jump(t) => pc = t as usize,
                Op::JumpIfFalse(t) => {
                    if self.pop() == value::FALSE {
                        pc = t as usize;
                    }
                }
                Op::AndJump(t) => {
                    let top = self.m.stack_len() - 1;
                    if self.m.stack_get(top) == value::FALSE {
                        pc = t as usize;
                    } else {
                        self.m.pop();
                    }
                }
                Op::OrJump(t) => {
                    let top = self.m.stack_len() - 1;
                    if self.m.stack_get(top) != value::FALSE {
                        pc = t as usize;
                    } else {
                        self.m.pop();
                    }
                }
                Op::CaseImm { value, target } => {
                    let key = self.m.stack_get(self.m.stack_len() - 1);
                    if key == value {
                        pc = target as usize;
                    }
                }
                Op::CaseConst { slot, target } => {
                    let key = self.m.stack_get(self.m.stack_len() - 1);
                    let c = self.shared.consts.get(&self.m, slot as usize);
                    if builtins::eqv(self, key, c) {
                        pc = target as usize;
                    }
                }
                Op::Closure(id) => {
                    let c = tri!(
                        self.m
                            .alloc(self.shared.types.closure, 0)
                            .map_err(RtError::from),
                        None
                    );
                    let l = tri!(self.known(c, &self.shared.types.lay.closure), None);
                    l.set_word(0, id as u64);
                    // SAFETY: word 1 of a closure is a reference slot (the closure layout,
                    // checked in `Types::register`); the frame was read from the value stack
                    // after the allocation, the last safepoint.
                    unsafe { l.set_unchecked(1, self.m.stack_get(bp)) };
                    self.m.push(c);
                }
                Op::Call { argc, site } => {
                    let link = Link::Normal { ret: pc, bp };
                    match tri!(self.call(argc as usize, link), Some(site)) {
                        Next::Value(v) => self.m.push(v),
                        Next::Enter { pc: p, bp: b } => {
                            pc = p;
                            bp = b;
                        }
                    }
                }
                Op::TailCall { argc, site } => {
                    match tri!(self.call(argc as usize, Link::Tail { bp }), Some(site)) {
                        Next::Value(v) => {
                            self.m.push(v);
                            match self.ret(&mut pc, &mut bp) {
                                Some(v) => return Ok(v),
                                None => continue,
                            }
                        }
                        Next::Enter { pc: p, bp: b } => {
                            pc = p;
                            bp = b;
                        }
                    }
                }
                Op::PrimCall {
                    sym,
                    prim,
                    argc,
                    fast,
                    site,
                }
                | Op::PrimTail {
                    sym,
                    prim,
                    argc,
                    fast,
                    site,
                } => {
                    let tail = matches!(op, Op::PrimTail { .. });
                    let argc = argc as usize;
                    if self.still_prim(sym, prim) {
                        let base = self.m.stack_len() - argc;
                        let r = match builtins::fast_path(self, fast, base) {
                            Some(v) => v,
                            None => tri!(
                                builtins::call_prim(self, prim as usize, base, argc),
                                Some(site)
                            ),
                        };
                        self.m.stack_truncate(base);
                        self.m.push(r);
                        if tail {
                            match self.ret(&mut pc, &mut bp) {
                                Some(v) => return Ok(v),
                                None => continue,
                            }
                        }
                        continue;
                    }
                    // The global was redefined: call whatever it holds now.
                    let g = tri!(self.global(sym), Some(site));
                    let n = self.m.stack_len();
                    self.m.push(g);
                    for i in (n - argc..n).rev() {
                        self.m.stack_set(i + 1, self.m.stack_get(i));
                    }
                    self.m.stack_set(n - argc, g);
                    let link = if tail {
                        Link::Tail { bp }
                    } else {
                        Link::Normal { ret: pc, bp }
                    };
                    match tri!(self.call(argc, link), Some(site)) {
                        Next::Value(v) => {
                            self.m.push(v);
                            if tail {
                                match self.ret(&mut pc, &mut bp) {
                                    Some(v) => return Ok(v),
                                    None => continue,
                                }
                            }
                        }
                        Next::Enter { pc: p, bp: b } => {
                            pc = p;
                            bp = b;
                        }
                    }
                }
                Op::Return => match self.ret(&mut pc, &mut bp) {
                    Some(v) => return Ok(v),
                    None => continue,
                },
            }
        }
    }

    /// Returns the stack top from the activation at `bp`. `Some(v)` if it returns to the host.
    #[inline]
    fn ret(&mut self, pc: &mut usize, bp: &mut usize) -> Option<Value> {
        let v = self.pop();
        let ret = as_internal(self.m.stack_get(*bp + 1));
        let caller = as_internal(self.m.stack_get(*bp + 2));
        self.m.stack_truncate(*bp);
        if ret == HOST_RET {
            return Some(v);
        }
        self.m.push(v);
        *pc = ret;
        *bp = caller;
        None
    }

    /// Completes an error raised at `pc` (the failing op) in the activation at `bp`: its span
    /// and the backtrace of live activations.
    #[cold]
    fn fail(&self, mut e: RtError, site: Option<u32>, pc: usize, bp: usize) -> RtError {
        let code = &self.code;
        if e.span.is_none() {
            e.span = match site {
                Some(s) => code.sites.get(s as usize).cloned(),
                None => code.proto_at(pc).map(|p| p.span.clone()),
            };
        }
        let mut frames = Vec::new();
        let mut cur_pc = pc;
        let mut b = bp;
        while b + 2 < self.m.stack_len() && frames.len() < 100_000 {
            let ret = as_internal(self.m.stack_get(b + 1));
            if ret == HOST_RET {
                break;
            }
            let callee = code
                .proto_at(cur_pc)
                .and_then(|p| p.name.as_deref().map(str::to_string));
            let call_site = match code.ops.get(ret.wrapping_sub(1)) {
                Some(
                    Op::Call { site, .. }
                    | Op::PrimCall { site, .. }
                    | Op::TailCall { site, .. }
                    | Op::PrimTail { site, .. },
                ) => code.sites.get(*site as usize).cloned(),
                _ => None,
            };
            if let Some(call_site) = call_site {
                frames.push(Frame { call_site, callee });
            }
            cur_pc = ret;
            b = as_internal(self.m.stack_get(b + 2));
        }
        e.backtrace = frames;
        e
    }
}

/// The body of a thread started by `spawn` (see [`crate::machine::ThreadMain`]): a VM of its
/// own on the same program, calling the thunk with no arguments.
fn thread_main(shared: Arc<Shared>, root: GlobalRoot) -> Result<GlobalRoot, RtError> {
    let m = shared.heap.attach();
    let mut vm = Vm::attach(shared.clone(), m);
    let f = root.get(&vm.m);
    drop(root);
    vm.m.push(f);
    let r = vm.apply(0);
    r.map(|v| GlobalRoot::new(&shared.heap, v))
}

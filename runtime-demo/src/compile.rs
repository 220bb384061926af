//! Code generation: resolved [`Expr`] trees to a flat, stack-machine bytecode ([`Op`]).
//!
//! All code of a VM lives in one append-only [`Code`] store: a vector of ops in which every
//! procedure prototype ([`Proto`]) owns the contiguous range `entry..end`, a prototype table,
//! and a table of source spans ("sites") that ops name by index for error messages and
//! backtraces. Jump targets and return addresses are absolute op indices.
//!
//! Stack discipline (what the interpreter may rely on):
//! - every expression compiled in value context pushes exactly one value; in effect context
//!   (`Gen::effect`) it pushes nothing;
//! - a procedure body is compiled in tail context: every path ends in `Return`, `TailCall` or
//!   `PrimTail`, so control never runs off the end of a prototype's range;
//! - top-level forms are prototypes with no parameters whose calls are never tail calls
//!   (as the compiler marks them), so backtraces keep their call sites;
//! - constants that are immediates become `Imm` ops; the others (strings, flonums, lists,
//!   vectors) get a slot in the VM's constant table, returned in [`Output::pending`] to be
//!   materialized in the heap before the code runs.
//!
//! The generator does not know the primitive table: which globals name primitives, and the
//! inline fast-path code of a call to one, come from the [`PrimLookup`] the VM passes to
//! [`Gen::new`] (a `PrimCall` op records both; the VM re-checks the global when it runs).
//!
//! Invariant: codegen never panics and recursion is bounded by the compiler's
//! [`crate::syntax::MAX_NESTING`].

use std::sync::Arc;

use faultline::Value;

use crate::reader::{Datum, DatumKind, Span};
use crate::symbols::{SymbolId, SymbolTable};
use crate::syntax::{CaseClause, Const, Expr, Lambda, LocalAddr, TopLevel};
use crate::value::{self, NIL};

/// One instruction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// Push an immediate.
    Imm(Value),
    /// Push constant-table slot.
    Const(u32),
    /// Push slot `index` of the current frame.
    Local0(u32),
    /// Push slot `index` of the enclosing frame.
    Local1(u32),
    /// Push a local `depth` frames out.
    Local {
        /// Frames to walk outward.
        depth: u32,
        /// Slot in that frame.
        index: u32,
    },
    /// Pop into slot `index` of the current frame.
    SetLocal0(u32),
    /// Pop into a local `depth` frames out.
    SetLocal {
        /// Frames to walk outward.
        depth: u32,
        /// Slot in that frame.
        index: u32,
    },
    /// Push a global (error if unbound).
    Global {
        /// The global's symbol id.
        sym: u32,
        /// Site of the reference.
        site: u32,
    },
    /// Pop into an existing global (error if unbound).
    SetGlobal {
        /// The global's symbol id.
        sym: u32,
        /// Site of the `set!`.
        site: u32,
    },
    /// Pop into a global, defining it.
    DefGlobal(u32),
    /// Drop the top of the stack.
    Pop,
    /// Jump.
    Jump(u32),
    /// Pop; jump if it was `#f`.
    JumpIfFalse(u32),
    /// If the top is `#f`, jump keeping it; else pop it.
    AndJump(u32),
    /// If the top is true, jump keeping it; else pop it.
    OrJump(u32),
    /// If the top is `eqv?` to the immediate, jump (the key stays on the stack).
    CaseImm {
        /// The datum, an immediate.
        value: Value,
        /// Where the matching clause starts.
        target: u32,
    },
    /// If the top is `eqv?` to the constant, jump (the key stays on the stack).
    CaseConst {
        /// Constant-table slot of the datum.
        slot: u32,
        /// Where the matching clause starts.
        target: u32,
    },
    /// Push a closure of prototype `id` over the current frame.
    Closure(u32),
    /// Call the procedure below the top `argc` values.
    Call {
        /// Number of arguments.
        argc: u32,
        /// Site of the call.
        site: u32,
    },
    /// Tail call: the callee replaces the current activation.
    TailCall {
        /// Number of arguments.
        argc: u32,
        /// Site of the call.
        site: u32,
    },
    /// Call of a global that named primitive `prim` when compiled: the arguments are on the
    /// stack (no procedure below them). If the global still holds that primitive it is called
    /// directly (through an inline fast path if `fast` is non-zero, see
    /// [`crate::builtins::fast_code`]), otherwise the global's value is called like `Call`.
    PrimCall {
        /// The global called.
        sym: u32,
        /// The primitive it held when compiled.
        prim: u16,
        /// Number of arguments.
        argc: u8,
        /// Inline fast-path code (0: none).
        fast: u8,
        /// Site of the call.
        site: u32,
    },
    /// As `PrimCall`, in tail position (returns the primitive's result, or tail-calls).
    PrimTail {
        /// The global called.
        sym: u32,
        /// The primitive it held when compiled.
        prim: u16,
        /// Number of arguments.
        argc: u8,
        /// Inline fast-path code (0: none).
        fast: u8,
        /// Site of the call.
        site: u32,
    },
    /// Return the top of the stack.
    Return,
}

/// A procedure prototype (a compiled `lambda` or top-level form).
#[derive(Clone, Debug)]
pub struct Proto {
    /// First op.
    pub entry: u32,
    /// One past the last op.
    pub end: u32,
    /// Required parameters.
    pub nparams: u32,
    /// Whether extra arguments are collected in a rest list.
    pub rest: bool,
    /// Length of the frame object: 1 (the enclosing-frame link) + the compiler's frame size.
    pub frame_len: u32,
    /// Name for messages.
    pub name: Option<Arc<str>>,
    /// The whole form.
    pub span: Span,
}

/// The code store.
#[derive(Clone, Debug, Default)]
pub struct Code {
    /// The instructions of every prototype.
    pub ops: Vec<Op>,
    /// Prototypes by id (closures name them in their word 0).
    pub protos: Vec<Proto>,
    /// Source spans that ops name by index (`site`).
    pub sites: Vec<Span>,
}

impl Code {
    /// The prototype whose range holds `pc`.
    pub fn proto_at(&self, pc: usize) -> Option<&Proto> {
        self.protos
            .iter()
            .find(|p| (p.entry as usize..p.end as usize).contains(&pc))
    }
}

/// What compiling a batch of top-level forms produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Prototype ids of the top-level forms, in order.
    pub toplevels: Vec<u32>,
    /// Constants to materialize: (constant-table slot, datum).
    pub pending: Vec<(u32, Datum)>,
}

/// How the compiler learns about primitives: for a global name and an argument count, the
/// index of the primitive the global names when compiling (if any) and the inline fast-path
/// code for such a call (0: none). The VM supplies it from its primitive table, so the
/// compiler does not depend on the primitives.
pub type PrimLookup<'a> = dyn Fn(SymbolId, usize) -> Option<(usize, u8)> + 'a;

/// Code generator state for one batch.
pub struct Gen<'a> {
    code: &'a mut Code,
    symbols: &'a mut SymbolTable,
    /// See [`PrimLookup`].
    prim_of: &'a PrimLookup<'a>,
    /// Next free constant slot.
    next_const: &'a mut u32,
    out: Output,
}

/// A prototype body under construction (jump targets relative to its start).
#[derive(Default)]
struct Buf {
    ops: Vec<Op>,
}

impl Buf {
    fn pc(&self) -> u32 {
        self.ops.len() as u32
    }
    fn emit(&mut self, op: Op) -> usize {
        self.ops.push(op);
        self.ops.len() - 1
    }
    fn patch(&mut self, at: usize, target: u32) {
        match &mut self.ops[at] {
            Op::Jump(t)
            | Op::JumpIfFalse(t)
            | Op::AndJump(t)
            | Op::OrJump(t)
            | Op::CaseImm { target: t, .. }
            | Op::CaseConst { target: t, .. } => *t = target,
            _ => {}
        }
    }
}

/// How a constant is represented.
enum ConstRep {
    Imm(Value),
    Slot(u32),
}

impl<'a> Gen<'a> {
    /// A generator appending to `code`, interning into `symbols`, resolving primitives through
    /// `prim_of` and numbering constant slots from `*next_const` (advanced as slots are used).
    pub fn new(
        code: &'a mut Code,
        symbols: &'a mut SymbolTable,
        prim_of: &'a PrimLookup<'a>,
        next_const: &'a mut u32,
    ) -> Gen<'a> {
        Gen {
            code,
            symbols,
            prim_of,
            next_const,
            out: Output::default(),
        }
    }

    /// Compiles top-level forms; returns their prototypes and the constants to materialize.
    pub fn toplevels(mut self, forms: &[TopLevel]) -> Output {
        for tl in forms {
            let mut buf = Buf::default();
            self.value(&mut buf, &tl.body);
            buf.emit(Op::Return);
            let id = self.finish(buf, 0, false, tl.frame_size, None, &tl.span);
            self.out.toplevels.push(id);
        }
        self.out
    }

    fn site(&mut self, span: &Span) -> u32 {
        self.code.sites.push(span.clone());
        (self.code.sites.len() - 1) as u32
    }

    fn finish(
        &mut self,
        buf: Buf,
        nparams: u32,
        rest: bool,
        frame_size: u32,
        name: Option<Arc<str>>,
        span: &Span,
    ) -> u32 {
        let base = self.code.ops.len() as u32;
        for mut op in buf.ops {
            match &mut op {
                Op::Jump(t)
                | Op::JumpIfFalse(t)
                | Op::AndJump(t)
                | Op::OrJump(t)
                | Op::CaseImm { target: t, .. }
                | Op::CaseConst { target: t, .. } => *t += base,
                _ => {}
            }
            self.code.ops.push(op);
        }
        self.code.protos.push(Proto {
            entry: base,
            end: self.code.ops.len() as u32,
            nparams,
            rest,
            frame_len: frame_size + 1,
            name,
            span: span.clone(),
        });
        (self.code.protos.len() - 1) as u32
    }

    fn constant(&mut self, c: &Const) -> ConstRep {
        let d = &c.datum;
        match &d.kind {
            DatumKind::Fixnum(n) => match value::fix(*n) {
                Some(v) => ConstRep::Imm(v),
                None => self.slot(d),
            },
            DatumKind::Bool(b) => ConstRep::Imm(value::boolean(*b)),
            DatumKind::Char(ch) => ConstRep::Imm(value::character(*ch)),
            DatumKind::Symbol(s) => ConstRep::Imm(value::symbol(self.symbols.intern(s))),
            DatumKind::List(items) if items.is_empty() => ConstRep::Imm(NIL),
            _ => self.slot(d),
        }
    }

    fn slot(&mut self, d: &Datum) -> ConstRep {
        let slot = *self.next_const;
        *self.next_const += 1;
        self.out.pending.push((slot, d.clone()));
        ConstRep::Slot(slot)
    }

    fn local_ref(buf: &mut Buf, a: LocalAddr) {
        buf.emit(match a.depth {
            0 => Op::Local0(a.index),
            1 => Op::Local1(a.index),
            depth => Op::Local {
                depth,
                index: a.index,
            },
        });
    }

    /// Compiles `e` for its effect only (pushes nothing).
    fn effect(&mut self, buf: &mut Buf, e: &Expr) {
        match e {
            Expr::Const(_) | Expr::Unspecified | Expr::LocalRef(_) | Expr::Lambda(_) => {}
            Expr::SetLocal { addr, value } => {
                self.value(buf, value);
                buf.emit(if addr.depth == 0 {
                    Op::SetLocal0(addr.index)
                } else {
                    Op::SetLocal {
                        depth: addr.depth,
                        index: addr.index,
                    }
                });
            }
            Expr::SetGlobal { sym, value, span } => {
                self.value(buf, value);
                let site = self.site(span);
                buf.emit(Op::SetGlobal { sym: sym.0, site });
            }
            Expr::DefineGlobal { sym, value, .. } => {
                self.value(buf, value);
                buf.emit(Op::DefGlobal(sym.0));
            }
            Expr::Seq(es) => {
                for e in es {
                    self.effect(buf, e);
                }
            }
            _ => {
                self.value(buf, e);
                buf.emit(Op::Pop);
            }
        }
    }

    /// Compiles `e` in value context (pushes one value).
    fn value(&mut self, buf: &mut Buf, e: &Expr) {
        match e {
            Expr::Const(c) => match self.constant(c) {
                ConstRep::Imm(v) => {
                    buf.emit(Op::Imm(v));
                }
                ConstRep::Slot(s) => {
                    buf.emit(Op::Const(s));
                }
            },
            Expr::Unspecified => {
                buf.emit(Op::Imm(value::UNSPEC));
            }
            Expr::LocalRef(a) => Self::local_ref(buf, *a),
            Expr::GlobalRef { sym, span } => {
                let site = self.site(span);
                buf.emit(Op::Global { sym: sym.0, site });
            }
            Expr::SetLocal { .. } | Expr::SetGlobal { .. } | Expr::DefineGlobal { .. } => {
                self.effect(buf, e);
                buf.emit(Op::Imm(value::UNSPEC));
            }
            Expr::If { test, then, else_ } => {
                self.value(buf, test);
                let jf = buf.emit(Op::JumpIfFalse(0));
                self.value(buf, then);
                let j = buf.emit(Op::Jump(0));
                let pc = buf.pc();
                buf.patch(jf, pc);
                self.value(buf, else_);
                let pc = buf.pc();
                buf.patch(j, pc);
            }
            Expr::And(es) | Expr::Or(es) => {
                let and = matches!(e, Expr::And(_));
                let mut jumps = Vec::with_capacity(es.len());
                for (i, x) in es.iter().enumerate() {
                    self.value(buf, x);
                    if i + 1 < es.len() {
                        jumps.push(buf.emit(if and { Op::AndJump(0) } else { Op::OrJump(0) }));
                    }
                }
                let pc = buf.pc();
                for j in jumps {
                    buf.patch(j, pc);
                }
            }
            Expr::Case {
                key,
                clauses,
                default,
            } => self.case(buf, key, clauses, default, false),
            Expr::Seq(es) => {
                let (last, init) = es.split_last().expect("Seq has at least two elements");
                for x in init {
                    self.effect(buf, x);
                }
                self.value(buf, last);
            }
            Expr::Lambda(l) => {
                let id = self.lambda(l);
                buf.emit(Op::Closure(id));
            }
            Expr::Call {
                func, args, span, ..
            } => self.call(buf, func, args, span, false),
        }
    }

    /// Compiles `e` in tail position of a procedure body: every path returns.
    fn tail(&mut self, buf: &mut Buf, e: &Expr) {
        match e {
            Expr::If { test, then, else_ } => {
                self.value(buf, test);
                let jf = buf.emit(Op::JumpIfFalse(0));
                self.tail(buf, then);
                let pc = buf.pc();
                buf.patch(jf, pc);
                self.tail(buf, else_);
            }
            Expr::Seq(es) => {
                let (last, init) = es.split_last().expect("Seq has at least two elements");
                for x in init {
                    self.effect(buf, x);
                }
                self.tail(buf, last);
            }
            Expr::And(es) | Expr::Or(es) => {
                let and = matches!(e, Expr::And(_));
                let mut jumps = Vec::with_capacity(es.len());
                let (last, init) = es.split_last().expect("And/Or has operands");
                for x in init {
                    self.value(buf, x);
                    jumps.push(buf.emit(if and { Op::AndJump(0) } else { Op::OrJump(0) }));
                }
                self.tail(buf, last);
                let pc = buf.pc();
                for j in jumps {
                    buf.patch(j, pc);
                }
                buf.emit(Op::Return);
            }
            Expr::Case {
                key,
                clauses,
                default,
            } => self.case(buf, key, clauses, default, true),
            Expr::Call {
                func,
                args,
                span,
                tail,
            } => {
                self.call(buf, func, args, span, *tail);
                if !*tail {
                    buf.emit(Op::Return);
                }
            }
            _ => {
                self.value(buf, e);
                buf.emit(Op::Return);
            }
        }
    }

    fn case(
        &mut self,
        buf: &mut Buf,
        key: &Expr,
        clauses: &[CaseClause],
        default: &Expr,
        tail: bool,
    ) {
        self.value(buf, key);
        let mut tests = Vec::new();
        for (ci, clause) in clauses.iter().enumerate() {
            for c in &clause.data {
                let op = match self.constant(c) {
                    ConstRep::Imm(value) => Op::CaseImm { value, target: 0 },
                    ConstRep::Slot(slot) => Op::CaseConst { slot, target: 0 },
                };
                tests.push((ci, buf.emit(op)));
            }
        }
        let mut ends = Vec::new();
        // Default: drop the key, run the default.
        buf.emit(Op::Pop);
        if tail {
            self.tail(buf, default);
        } else {
            self.value(buf, default);
            ends.push(buf.emit(Op::Jump(0)));
        }
        for (ci, clause) in clauses.iter().enumerate() {
            let pc = buf.pc();
            for (i, at) in &tests {
                if *i == ci {
                    buf.patch(*at, pc);
                }
            }
            buf.emit(Op::Pop);
            if tail {
                self.tail(buf, &clause.body);
            } else {
                self.value(buf, &clause.body);
                ends.push(buf.emit(Op::Jump(0)));
            }
        }
        let pc = buf.pc();
        for j in ends {
            buf.patch(j, pc);
        }
    }

    fn call(&mut self, buf: &mut Buf, func: &Expr, args: &[Expr], span: &Span, tail: bool) {
        let site = self.site(span);
        if let Expr::GlobalRef { sym, .. } = func {
            if let Some((prim, fast)) = (self.prim_of)(*sym, args.len()) {
                if let (Ok(prim), Ok(argc)) = (u16::try_from(prim), u8::try_from(args.len())) {
                    for a in args {
                        self.value(buf, a);
                    }
                    let sym = sym.0;
                    buf.emit(if tail {
                        Op::PrimTail {
                            sym,
                            prim,
                            argc,
                            fast,
                            site,
                        }
                    } else {
                        Op::PrimCall {
                            sym,
                            prim,
                            argc,
                            fast,
                            site,
                        }
                    });
                    return;
                }
            }
        }
        self.value(buf, func);
        for a in args {
            self.value(buf, a);
        }
        let argc = args.len() as u32;
        buf.emit(if tail {
            Op::TailCall { argc, site }
        } else {
            Op::Call { argc, site }
        });
    }

    fn lambda(&mut self, l: &Lambda) -> u32 {
        let mut buf = Buf::default();
        self.tail(&mut buf, &l.body);
        self.finish(
            buf,
            l.nparams,
            l.rest,
            l.frame_size,
            l.name.clone(),
            &l.span,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::read_all;
    use crate::syntax::compile_program;

    fn gen(src: &str) -> (Code, Output) {
        let mut syms = SymbolTable::new();
        let data = read_all("t.scm", src).unwrap();
        let tls = compile_program(&data, &mut syms).unwrap();
        let mut code = Code::default();
        let mut next = 0;
        let car = syms.intern("car");
        let prim_of = move |s: SymbolId, _argc: usize| (s == car).then_some((0, 0));
        let out = Gen::new(&mut code, &mut syms, &prim_of, &mut next).toplevels(&tls);
        (code, out)
    }

    #[test]
    fn every_proto_ends_in_a_control_transfer() {
        let (code, out) = gen(
            "(define (f x) (if (car x) (and x (f x)) (case x ((1 2) 'a) ((\"s\") 2) (else (or x 3)))))
             (define (g . r) (let loop ((i 0)) (if (< i 3) (loop (+ i 1)) r)))
             (f '(1 2)) \"str\" 1.5",
        );
        assert_eq!(out.toplevels.len(), 5);
        assert_eq!(out.pending.len(), 4); // '(1 2), "s", "str", 1.5
        for p in &code.protos {
            let last = code.ops[p.end as usize - 1];
            assert!(
                matches!(last, Op::Return | Op::TailCall { .. } | Op::PrimTail { .. }),
                "{last:?}"
            );
            for op in &code.ops[p.entry as usize..p.end as usize] {
                if let Op::Jump(t) | Op::JumpIfFalse(t) | Op::AndJump(t) | Op::OrJump(t) = op {
                    assert!((p.entry..p.end).contains(t));
                }
            }
        }
        assert!(code.ops.iter().any(|o| matches!(o, Op::PrimCall { .. })));
        assert!(code.ops.iter().any(|o| matches!(o, Op::TailCall { .. })));
    }
}

//! The compiler front end: [`Datum`] trees to resolved, lexically addressed [`Expr`] trees with
//! tail calls marked, which [`crate::compile`] turns into bytecode for the VM.
//!
//! Invariants of the output (what code generation and the VM may rely on):
//! - **Frames.** Every procedure activation has exactly one frame, a vector of
//!   [`Lambda::frame_size`] slots: slots `0..nparams` hold the required arguments, slot
//!   `nparams` the rest list if [`Lambda::rest`], and the remaining slots the variables bound
//!   inside the body (`let`, `let*`, `letrec`, `letrec*`, named `let`, `do`, internal `define`)
//!   plus hidden temporaries (`cond`/`case` `=>`, loop procedures). A [`TopLevel`] form runs in
//!   its own frame of [`TopLevel::frame_size`] slots (possibly 0), which is the outermost frame
//!   seen by every lambda created inside it. Slots other than arguments start out *unassigned*
//!   (the VM picks the marker; reading one before its `SetLocal` is a letrec violation).
//! - **Addressing.** Every variable reference is resolved: [`Expr::LocalRef`] with
//!   `depth` = number of frames to walk outward (0 = the current frame) and `index` = slot, or
//!   [`Expr::GlobalRef`] with an interned [`SymbolId`]. No names are looked up at run time.
//! - **No intra-frame loops.** Within one activation every expression of the frame's own body
//!   (not counting nested lambdas) is evaluated at most once; all iteration (named `let`, `do`)
//!   goes through procedure calls. So slots are never reused and a closure capturing a frame
//!   always sees the binding it closed over. (A VM that adds re-entrant continuations must
//!   revisit this: re-entering a `let` body would then reuse its slots.)
//! - **Tail calls.** [`Expr::Call::tail`] is true exactly when the call is in tail position of the
//!   enclosing lambda body (last expression of a body, branches of `if`/`cond`/`case`, last
//!   operand of `and`/`or`, bodies of `when`/`unless`, `=>` receivers). Calls directly in a
//!   [`TopLevel`] form are never marked tail.
//! - **Constants** stay as [`Datum`]s inside [`Expr::Const`] and [`CaseClause::data`]; each has
//!   a [`ConstId`] that is dense per top-level form (`0..const_count`), so the VM can materialize
//!   them once into a table.
//! - **Sequences** ([`Expr::Seq`]) have at least two elements and never directly contain
//!   another `Seq`; [`Expr::And`] / [`Expr::Or`] have at least two operands.
//! - **Special forms** are recognized by name unless the name is lexically bound (a local
//!   variable named `if` makes `(if ...)` a call). Keywords cannot be defined, assigned, or
//!   referenced as global variables.
//! - The compiler never panics: malformed forms are [`CompileError`]s carrying the span of the
//!   offending (sub)form; nesting beyond [`MAX_NESTING`] is an error, not a stack overflow.

use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::reader::{Datum, DatumKind, Span};
use crate::symbols::{SymbolId, SymbolTable};

/// Maximum nesting of expressions being compiled (the reader's nesting limit keeps read data
/// well below it).
pub const MAX_NESTING: usize = 256;

/// Names that are special forms (or auxiliary syntax) unless lexically shadowed.
pub const KEYWORDS: &[&str] = &[
    "quote",
    "quasiquote",
    "unquote",
    "unquote-splicing",
    "lambda",
    "define",
    "if",
    "set!",
    "let",
    "let*",
    "letrec",
    "letrec*",
    "begin",
    "cond",
    "case",
    "and",
    "or",
    "when",
    "unless",
    "do",
    "else",
    "=>",
];

/// A resolved local variable: walk `depth` frames outward, then take slot `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LocalAddr {
    /// Frames to walk outward (0: the current frame).
    pub depth: u32,
    /// Slot in that frame.
    pub index: u32,
}

/// Index of a constant within its [`TopLevel`] form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConstId(pub u32);

/// A constant: a quoted or self-evaluating datum.
#[derive(Clone, Debug, PartialEq)]
pub struct Const {
    /// Its id, dense per top-level form.
    pub id: ConstId,
    /// The datum.
    pub datum: Datum,
}

/// A resolved expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A constant.
    Const(Const),
    /// The unspecified value (`(if #f #f)`, a `when` whose test fails, ...).
    Unspecified,
    /// A local variable.
    LocalRef(LocalAddr),
    /// A global variable; `span` is the reference (for "unbound variable" errors).
    GlobalRef {
        /// The global.
        sym: SymbolId,
        /// The reference.
        span: Span,
    },
    /// Assigns a local (`set!`, and initialization of `let`-family and internal-define slots);
    /// yields the unspecified value.
    SetLocal {
        /// The slot.
        addr: LocalAddr,
        /// The new value.
        value: Box<Expr>,
    },
    /// `set!` of a global; `span` is the whole `set!` form.
    SetGlobal {
        /// The global.
        sym: SymbolId,
        /// The new value.
        value: Box<Expr>,
        /// The `set!` form.
        span: Span,
    },
    /// Top-level `define`; yields the unspecified value.
    DefineGlobal {
        /// The global.
        sym: SymbolId,
        /// Its value.
        value: Box<Expr>,
        /// The `define` form.
        span: Span,
    },
    /// `(if test then else)`; a missing else branch is [`Expr::Unspecified`].
    If {
        /// The test.
        test: Box<Expr>,
        /// Evaluated if the test is true.
        then: Box<Expr>,
        /// Evaluated otherwise.
        else_: Box<Expr>,
    },
    /// Evaluates operands left to right, stopping at the first false one (yielding `#f`);
    /// otherwise yields the last operand's value. At least two operands.
    And(Vec<Expr>),
    /// Evaluates operands left to right, yielding the first true value, else `#f`. At least two.
    Or(Vec<Expr>),
    /// Evaluates `key`, then the body of the first clause with a datum `eqv?` to it, else
    /// `default`.
    Case {
        /// The key.
        key: Box<Expr>,
        /// The clauses, in order.
        clauses: Vec<CaseClause>,
        /// Evaluated when no clause matches.
        default: Box<Expr>,
    },
    /// Evaluates all elements in order, yielding the last one's value. At least two elements.
    Seq(Vec<Expr>),
    /// Creates a closure over the current frame.
    Lambda(Arc<Lambda>),
    /// A procedure call; `span` is the whole call form (the call site, for backtraces).
    Call {
        /// The procedure.
        func: Box<Expr>,
        /// The arguments.
        args: Vec<Expr>,
        /// Whether the call is in tail position.
        tail: bool,
        /// The call form.
        span: Span,
    },
}

/// One clause of [`Expr::Case`].
#[derive(Clone, Debug, PartialEq)]
pub struct CaseClause {
    /// The data the key is compared with.
    pub data: Vec<Const>,
    /// What the clause evaluates to.
    pub body: Expr,
}

/// A compiled `lambda`.
#[derive(Clone, Debug, PartialEq)]
pub struct Lambda {
    /// Number of required parameters (slots `0..nparams`).
    pub nparams: u32,
    /// Whether extra arguments are collected into a list in slot `nparams`.
    pub rest: bool,
    /// Slots of a frame of this procedure (parameters included).
    pub frame_size: u32,
    /// The body, in tail context.
    pub body: Expr,
    /// The name it was defined or bound under, if any (for backtraces).
    pub name: Option<Arc<str>>,
    /// The whole `lambda` (or `define`, named `let`, `do`) form.
    pub span: Span,
}

/// A compiled top-level form.
#[derive(Clone, Debug, PartialEq)]
pub struct TopLevel {
    /// The form, compiled.
    pub body: Expr,
    /// Slots of the frame the form runs in.
    pub frame_size: u32,
    /// Number of constants; their ids are `0..const_count`.
    pub const_count: u32,
    /// The whole form.
    pub span: Span,
}

impl TopLevel {
    /// All constants of the form (including those inside lambdas), ordered by id.
    pub fn constants(&self) -> Vec<&Const> {
        let mut out = Vec::new();
        self.body.for_each_const(&mut |c| out.push(c));
        out.sort_by_key(|c| c.id);
        out
    }
}

/// A compile error: a message and the span of the offending form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    /// What is wrong.
    pub message: String,
    /// The offending form.
    pub span: Span,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.span, self.message)
    }
}

impl std::error::Error for CompileError {}

type R<T> = Result<T, CompileError>;

fn error<T>(span: &Span, message: impl Into<String>) -> R<T> {
    Err(CompileError {
        message: message.into(),
        span: span.clone(),
    })
}

/// Compiles one top-level form. `define`s directly at top level (or inside top-level `begin`s)
/// define globals; everything else is an expression.
pub fn compile_toplevel(
    datum: &Datum,
    symbols: &mut SymbolTable,
) -> Result<TopLevel, CompileError> {
    let mut c = Compiler {
        symbols,
        frame: FrameEnv::default(),
        outer: Vec::new(),
        next_const: 0,
        nesting: 0,
    };
    let body = c.top(datum)?;
    Ok(TopLevel {
        body,
        frame_size: c.frame.size,
        const_count: c.next_const,
        span: datum.span.clone(),
    })
}

/// Compiles top-level forms in order, stopping at the first error.
pub fn compile_program(
    data: &[Datum],
    symbols: &mut SymbolTable,
) -> Result<Vec<TopLevel>, CompileError> {
    data.iter().map(|d| compile_toplevel(d, symbols)).collect()
}

/// Builds a sequence: flattens nested `Seq`s and unwraps a single element.
fn seq(items: Vec<Expr>) -> Expr {
    let mut out = Vec::with_capacity(items.len());
    for e in items {
        match e {
            Expr::Seq(inner) => out.extend(inner),
            e => out.push(e),
        }
    }
    if out.len() == 1 {
        out.pop().unwrap_or(Expr::Unspecified)
    } else if out.is_empty() {
        Expr::Unspecified
    } else {
        Expr::Seq(out)
    }
}

fn local(depth: u32, index: u32) -> LocalAddr {
    LocalAddr { depth, index }
}

/// The compile-time view of one frame.
#[derive(Default)]
struct FrameEnv {
    /// Visible names and their slots, innermost binding last.
    names: Vec<(String, u32)>,
    /// Slots allocated so far.
    size: u32,
}

/// The parts of a `define` form.
struct Definition<'d> {
    name: &'d str,
    value: DefValue<'d>,
    span: &'d Span,
}

enum DefValue<'d> {
    Expr(&'d Datum),
    Lambda {
        required: &'d [Datum],
        rest: Option<&'d Datum>,
        body: &'d [Datum],
    },
}

/// A body element after splicing `begin`s and binding defined names.
enum BodyItem<'d> {
    Def(u32, Definition<'d>),
    Expr(&'d Datum),
}

/// A `cond` clause compiled, before the clauses are chained.
enum CondClause {
    Else(Expr),
    Test(Expr, Expr),
    TestOnly(Expr),
    Arrow {
        slot: u32,
        test: Expr,
        receiver: Expr,
        span: Span,
    },
}

/// A `(name expr)` binding.
struct Binding<'d> {
    name: &'d str,
    span: &'d Span,
    init: &'d Datum,
}

struct Compiler<'s> {
    symbols: &'s mut SymbolTable,
    /// The innermost frame.
    frame: FrameEnv,
    /// Enclosing frames, innermost last.
    outer: Vec<FrameEnv>,
    next_const: u32,
    nesting: usize,
}

impl Compiler<'_> {
    // ---- environment ----

    fn lookup(&self, name: &str) -> Option<LocalAddr> {
        let frames = std::iter::once(&self.frame).chain(self.outer.iter().rev());
        for (depth, frame) in frames.enumerate() {
            if let Some((_, slot)) = frame.names.iter().rev().find(|(n, _)| n == name) {
                return Some(local(depth as u32, *slot));
            }
        }
        None
    }

    /// The special form `d` is, if it is a list headed by an unshadowed keyword.
    fn keyword_of(&self, d: &Datum) -> Option<&'static str> {
        let head = d.as_list()?.first()?.as_symbol()?;
        let kw = KEYWORDS.iter().copied().find(|k| *k == head)?;
        self.lookup(kw).is_none().then_some(kw)
    }

    /// Whether `d` is the unshadowed auxiliary keyword `kw` (`else`, `=>`).
    fn is_aux(&self, d: &Datum, kw: &str) -> bool {
        d.is_symbol(kw) && self.lookup(kw).is_none()
    }

    fn bind(&mut self, name: &str) -> u32 {
        let slot = self.hidden();
        self.frame.names.push((name.to_string(), slot));
        slot
    }

    fn hidden(&mut self) -> u32 {
        let slot = self.frame.size;
        self.frame.size += 1;
        slot
    }

    fn scope_mark(&self) -> usize {
        self.frame.names.len()
    }

    fn end_scope(&mut self, mark: usize) {
        self.frame.names.truncate(mark);
    }

    fn push_frame(&mut self) {
        let outer = std::mem::take(&mut self.frame);
        self.outer.push(outer);
    }

    fn pop_frame(&mut self) -> FrameEnv {
        let outer = self.outer.pop().unwrap_or_default();
        std::mem::replace(&mut self.frame, outer)
    }

    fn constant(&mut self, d: &Datum) -> Const {
        let id = ConstId(self.next_const);
        self.next_const += 1;
        Const {
            id,
            datum: d.clone(),
        }
    }

    // ---- top level ----

    fn top(&mut self, d: &Datum) -> R<Expr> {
        match self.keyword_of(d) {
            Some("define") => {
                let def = self.parse_define(d)?;
                let sym = self.symbols.intern(def.name);
                let value = self.def_value(&def)?;
                Ok(Expr::DefineGlobal {
                    sym,
                    value: Box::new(value),
                    span: d.span.clone(),
                })
            }
            Some("begin") => {
                let items = d.as_list().unwrap_or_default();
                let mut out = Vec::new();
                for form in &items[1..] {
                    self.nesting += 1;
                    if self.nesting > MAX_NESTING {
                        return error(&form.span, "forms nested too deeply");
                    }
                    out.push(self.top(form)?);
                    self.nesting -= 1;
                }
                Ok(seq(out))
            }
            _ => self.expr(d, false),
        }
    }

    // ---- expressions ----

    fn expr(&mut self, d: &Datum, tail: bool) -> R<Expr> {
        self.expr_named(d, tail, None)
    }

    /// Compiles `d`; a `lambda` form gets `name` (the variable it is bound to).
    fn expr_named(&mut self, d: &Datum, tail: bool, name: Option<&str>) -> R<Expr> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return error(&d.span, "expression nested too deeply");
        }
        let result = self.expr_inner(d, tail, name);
        self.nesting -= 1;
        result
    }

    fn expr_inner(&mut self, d: &Datum, tail: bool, name: Option<&str>) -> R<Expr> {
        match &d.kind {
            DatumKind::Symbol(s) => self.variable(s, &d.span),
            DatumKind::Fixnum(_)
            | DatumKind::Float(_)
            | DatumKind::Bool(_)
            | DatumKind::Char(_)
            | DatumKind::Str(_)
            | DatumKind::Vector(_) => Ok(Expr::Const(self.constant(d))),
            DatumKind::Dotted(..) => error(&d.span, "a dotted list is not a valid expression"),
            DatumKind::List(items) => match items.split_first() {
                None => error(
                    &d.span,
                    "empty combination () is not an expression (write '() for the empty list)",
                ),
                Some((head, args)) => match self.keyword_of(d) {
                    Some(kw) => self.special(kw, d, items, tail, name),
                    None => self.call(head, args, tail, &d.span),
                },
            },
        }
    }

    fn variable(&mut self, name: &str, span: &Span) -> R<Expr> {
        if let Some(addr) = self.lookup(name) {
            return Ok(Expr::LocalRef(addr));
        }
        if KEYWORDS.contains(&name) {
            return error(
                span,
                format!("syntactic keyword `{name}` cannot be used as a variable"),
            );
        }
        Ok(Expr::GlobalRef {
            sym: self.symbols.intern(name),
            span: span.clone(),
        })
    }

    fn call(&mut self, head: &Datum, args: &[Datum], tail: bool, span: &Span) -> R<Expr> {
        let func = self.expr(head, false)?;
        let args = args
            .iter()
            .map(|a| self.expr(a, false))
            .collect::<R<Vec<_>>>()?;
        Ok(Expr::Call {
            func: Box::new(func),
            args,
            tail,
            span: span.clone(),
        })
    }

    fn special(
        &mut self,
        kw: &str,
        d: &Datum,
        items: &[Datum],
        tail: bool,
        name: Option<&str>,
    ) -> R<Expr> {
        match kw {
            "quote" => match items {
                [_, datum] => Ok(Expr::Const(self.constant(datum))),
                _ => error(&d.span, "bad `quote`: expected (quote datum)"),
            },
            "lambda" => self.lambda_form(d, items, name),
            "define" => error(
                &d.span,
                "`define` is only allowed at top level or at the beginning of a body",
            ),
            "if" => self.if_form(d, items, tail),
            "set!" => self.set_form(d, items),
            "let" => self.let_form(d, items, tail),
            "let*" => self.let_star_form(d, items, tail),
            "letrec" | "letrec*" => self.letrec_form(kw, d, items, tail),
            "begin" => self.begin_form(d, items, tail),
            "cond" => self.cond_form(d, items, tail),
            "case" => self.case_form(d, items, tail),
            "and" | "or" => self.and_or_form(kw, d, items, tail),
            "when" | "unless" => self.when_form(kw, d, items, tail),
            "do" => self.do_form(d, items, tail),
            "else" | "=>" => error(
                &d.span,
                format!("`{kw}` is only allowed inside a `cond` or `case` clause"),
            ),
            _ => error(&d.span, format!("`{kw}` is not supported")),
        }
    }

    fn if_form(&mut self, d: &Datum, items: &[Datum], tail: bool) -> R<Expr> {
        let (test, then, else_) = match items {
            [_, test, then] => (test, then, None),
            [_, test, then, else_] => (test, then, Some(else_)),
            _ => {
                return error(
                    &d.span,
                    "bad `if`: expected (if test then) or (if test then else)",
                )
            }
        };
        let test = self.expr(test, false)?;
        let then = self.expr(then, tail)?;
        let else_ = match else_ {
            Some(e) => self.expr(e, tail)?,
            None => Expr::Unspecified,
        };
        Ok(Expr::If {
            test: Box::new(test),
            then: Box::new(then),
            else_: Box::new(else_),
        })
    }

    fn set_form(&mut self, d: &Datum, items: &[Datum]) -> R<Expr> {
        let [_, target, value] = items else {
            return error(&d.span, "bad `set!`: expected (set! variable expression)");
        };
        let Some(name) = target.as_symbol() else {
            return error(&target.span, "bad `set!`: the target must be a variable");
        };
        let value = Box::new(self.expr_named(value, false, Some(name))?);
        if let Some(addr) = self.lookup(name) {
            return Ok(Expr::SetLocal { addr, value });
        }
        if KEYWORDS.contains(&name) {
            return error(
                &target.span,
                format!("cannot assign to syntactic keyword `{name}`"),
            );
        }
        Ok(Expr::SetGlobal {
            sym: self.symbols.intern(name),
            value,
            span: d.span.clone(),
        })
    }

    fn begin_form(&mut self, d: &Datum, items: &[Datum], tail: bool) -> R<Expr> {
        if items.len() < 2 {
            return error(&d.span, "bad `begin`: expected at least one expression");
        }
        self.sequence(&items[1..], tail)
    }

    /// Compiles expressions in order, the last one in `tail` position (`forms` non-empty).
    fn sequence(&mut self, forms: &[Datum], tail: bool) -> R<Expr> {
        let n = forms.len();
        let out = forms
            .iter()
            .enumerate()
            .map(|(i, f)| self.expr(f, tail && i + 1 == n))
            .collect::<R<Vec<_>>>()?;
        Ok(seq(out))
    }

    fn and_or_form(&mut self, kw: &str, d: &Datum, items: &[Datum], tail: bool) -> R<Expr> {
        let operands = &items[1..];
        if operands.is_empty() {
            let value = Datum::new(DatumKind::Bool(kw == "and"), d.span.clone());
            return Ok(Expr::Const(self.constant(&value)));
        }
        let n = operands.len();
        let mut out = operands
            .iter()
            .enumerate()
            .map(|(i, f)| self.expr(f, tail && i + 1 == n))
            .collect::<R<Vec<_>>>()?;
        if out.len() == 1 {
            return Ok(out.pop().unwrap_or(Expr::Unspecified));
        }
        Ok(if kw == "and" {
            Expr::And(out)
        } else {
            Expr::Or(out)
        })
    }

    fn when_form(&mut self, kw: &str, d: &Datum, items: &[Datum], tail: bool) -> R<Expr> {
        if items.len() < 3 {
            return error(
                &d.span,
                format!("bad `{kw}`: expected ({kw} test expression ...)"),
            );
        }
        let test = self.expr(&items[1], false)?;
        let body = self.sequence(&items[2..], tail)?;
        let (then, else_) = if kw == "when" {
            (body, Expr::Unspecified)
        } else {
            (Expr::Unspecified, body)
        };
        Ok(Expr::If {
            test: Box::new(test),
            then: Box::new(then),
            else_: Box::new(else_),
        })
    }

    // ---- lambda, define, bodies ----

    fn lambda_form(&mut self, d: &Datum, items: &[Datum], name: Option<&str>) -> R<Expr> {
        if items.len() < 2 {
            return error(&d.span, "bad `lambda`: expected (lambda formals body ...)");
        }
        let formals = &items[1];
        let (required, rest): (&[Datum], Option<&Datum>) = match &formals.kind {
            DatumKind::Symbol(_) => (&[], Some(formals)),
            DatumKind::List(xs) => (xs, None),
            DatumKind::Dotted(xs, tail) => (xs, Some(tail)),
            _ => {
                return error(
                    &formals.span,
                    "bad `lambda` formals: expected a variable or a list of variables",
                )
            }
        };
        self.lambda(required, rest, &items[2..], name, &d.span)
    }

    /// Compiles a procedure with the given parameters and (non-empty) body.
    fn lambda(
        &mut self,
        required: &[Datum],
        rest: Option<&Datum>,
        body: &[Datum],
        name: Option<&str>,
        span: &Span,
    ) -> R<Expr> {
        let mut params: Vec<&str> = Vec::with_capacity(required.len() + 1);
        for p in required.iter().chain(rest) {
            let Some(s) = p.as_symbol() else {
                return error(&p.span, "bad parameter: expected a variable");
            };
            if params.contains(&s) {
                return error(&p.span, format!("duplicate parameter `{s}`"));
            }
            params.push(s);
        }
        self.push_frame();
        for p in &params {
            self.bind(p);
        }
        let body = self.body(body, true, span)?;
        let frame = self.pop_frame();
        Ok(Expr::Lambda(Arc::new(Lambda {
            nparams: required.len() as u32,
            rest: rest.is_some(),
            frame_size: frame.size,
            body,
            name: name.map(Arc::from),
            span: span.clone(),
        })))
    }

    fn parse_define<'d>(&self, d: &'d Datum) -> R<Definition<'d>> {
        const USAGE: &str =
            "bad `define`: expected (define name expression) or (define (name . formals) body ...)";
        let items = d.as_list().unwrap_or_default();
        let Some(target) = items.get(1) else {
            return error(&d.span, USAGE);
        };
        let (name_datum, value) = match &target.kind {
            DatumKind::Symbol(_) => match items {
                [_, _, value] => (target, DefValue::Expr(value)),
                [_, _] => {
                    return error(
                        &d.span,
                        format!("`define` of `{target}` is missing its value"),
                    )
                }
                _ => return error(&d.span, USAGE),
            },
            DatumKind::List(xs) if !xs.is_empty() => (
                &xs[0],
                DefValue::Lambda {
                    required: &xs[1..],
                    rest: None,
                    body: &items[2..],
                },
            ),
            DatumKind::Dotted(xs, tail) => (
                &xs[0],
                DefValue::Lambda {
                    required: &xs[1..],
                    rest: Some(tail),
                    body: &items[2..],
                },
            ),
            _ => return error(&target.span, USAGE),
        };
        let Some(name) = name_datum.as_symbol() else {
            return error(&name_datum.span, "bad `define`: the name must be a symbol");
        };
        if KEYWORDS.contains(&name) {
            return error(
                &name_datum.span,
                format!("cannot define syntactic keyword `{name}`"),
            );
        }
        if let DefValue::Lambda { body: [], .. } = value {
            return error(&d.span, format!("procedure `{name}` has an empty body"));
        }
        Ok(Definition {
            name,
            value,
            span: &d.span,
        })
    }

    fn def_value(&mut self, def: &Definition<'_>) -> R<Expr> {
        match def.value {
            DefValue::Expr(e) => self.expr_named(e, false, Some(def.name)),
            DefValue::Lambda {
                required,
                rest,
                body,
            } => {
                self.nesting += 1;
                if self.nesting > MAX_NESTING {
                    return error(def.span, "expression nested too deeply");
                }
                let e = self.lambda(required, rest, body, Some(def.name), def.span);
                self.nesting -= 1;
                e
            }
        }
    }

    /// Appends `forms` to `out`, splicing (unshadowed) `begin` forms.
    fn splice<'d>(&self, forms: &'d [Datum], out: &mut Vec<&'d Datum>) {
        for f in forms {
            match (self.keyword_of(f), f.as_list()) {
                (Some("begin"), Some(items)) => self.splice(&items[1..], out),
                _ => out.push(f),
            }
        }
    }

    /// Compiles a body: internal definitions (letrec* semantics, in the current frame) mixed
    /// with expressions, ending with an expression in `tail` position.
    fn body(&mut self, forms: &[Datum], tail: bool, span: &Span) -> R<Expr> {
        let mut flat = Vec::new();
        self.splice(forms, &mut flat);
        if flat.is_empty() {
            return error(span, "empty body: expected at least one expression");
        }
        let mark = self.scope_mark();
        let mut items = Vec::with_capacity(flat.len());
        let mut defined: Vec<&str> = Vec::new();
        for f in flat {
            if self.keyword_of(f) == Some("define") {
                let def = self.parse_define(f)?;
                if defined.contains(&def.name) {
                    return error(
                        def.span,
                        format!("`{}` is defined twice in the same body", def.name),
                    );
                }
                defined.push(def.name);
                items.push(BodyItem::Def(0, def));
            } else {
                items.push(BodyItem::Expr(f));
            }
        }
        if let Some(BodyItem::Def(_, def)) = items.last() {
            return error(
                def.span,
                "a body must end with an expression, not a definition",
            );
        }
        for item in &mut items {
            if let BodyItem::Def(slot, def) = item {
                *slot = self.bind(def.name);
            }
        }
        let n = items.len();
        let mut out = Vec::with_capacity(n);
        for (i, item) in items.iter().enumerate() {
            match item {
                BodyItem::Def(slot, def) => {
                    let value = self.def_value(def)?;
                    out.push(Expr::SetLocal {
                        addr: local(0, *slot),
                        value: Box::new(value),
                    });
                }
                BodyItem::Expr(f) => out.push(self.expr(f, tail && i + 1 == n)?),
            }
        }
        self.end_scope(mark);
        Ok(seq(out))
    }

    // ---- let family ----

    /// Parses `((name init) ...)`; rejects duplicate names unless `allow_dups`.
    fn bindings<'d>(&self, kw: &str, list: &'d Datum, allow_dups: bool) -> R<Vec<Binding<'d>>> {
        let Some(items) = list.as_list() else {
            return error(
                &list.span,
                format!("bad `{kw}` bindings: expected a list of (name expression)"),
            );
        };
        let mut out: Vec<Binding<'d>> = Vec::with_capacity(items.len());
        for b in items {
            let parsed = match b.as_list() {
                Some([name, init]) => name.as_symbol().map(|n| Binding {
                    name: n,
                    span: &name.span,
                    init,
                }),
                _ => None,
            };
            let Some(binding) = parsed else {
                return error(
                    &b.span,
                    format!("bad `{kw}` binding: expected (name expression)"),
                );
            };
            if !allow_dups && out.iter().any(|o| o.name == binding.name) {
                return error(
                    binding.span,
                    format!("duplicate binding `{}` in `{kw}`", binding.name),
                );
            }
            out.push(binding);
        }
        Ok(out)
    }

    fn let_form(&mut self, d: &Datum, items: &[Datum], tail: bool) -> R<Expr> {
        if let Some(loop_name) = items.get(1).and_then(Datum::as_symbol) {
            return self.named_let(loop_name, d, items, tail);
        }
        if items.len() < 2 {
            return error(
                &d.span,
                "bad `let`: expected (let ((name expression) ...) body ...)",
            );
        }
        let bindings = self.bindings("let", &items[1], false)?;
        let mut inits = Vec::with_capacity(bindings.len());
        for b in &bindings {
            inits.push(self.expr_named(b.init, false, Some(b.name))?);
        }
        let mark = self.scope_mark();
        let mut out = Vec::with_capacity(bindings.len() + 1);
        for (b, init) in bindings.iter().zip(inits) {
            let slot = self.bind(b.name);
            out.push(Expr::SetLocal {
                addr: local(0, slot),
                value: Box::new(init),
            });
        }
        out.push(self.body(&items[2..], tail, &d.span)?);
        self.end_scope(mark);
        Ok(seq(out))
    }

    fn named_let(&mut self, loop_name: &str, d: &Datum, items: &[Datum], tail: bool) -> R<Expr> {
        if items.len() < 3 {
            return error(
                &d.span,
                "bad named `let`: expected (let name ((name expression) ...) body ...)",
            );
        }
        let bindings = self.bindings("let", &items[2], false)?;
        let mut inits = Vec::with_capacity(bindings.len());
        for b in &bindings {
            inits.push(self.expr_named(b.init, false, Some(b.name))?);
        }
        let params: Vec<Datum> = bindings
            .iter()
            .map(|b| Datum::new(DatumKind::Symbol(b.name.to_string()), b.span.clone()))
            .collect();
        let mark = self.scope_mark();
        let slot = self.bind(loop_name);
        let proc = self.lambda(&params, None, &items[3..], Some(loop_name), &d.span)?;
        self.end_scope(mark);
        Ok(Expr::Seq(vec![
            Expr::SetLocal {
                addr: local(0, slot),
                value: Box::new(proc),
            },
            Expr::Call {
                func: Box::new(Expr::LocalRef(local(0, slot))),
                args: inits,
                tail,
                span: d.span.clone(),
            },
        ]))
    }

    fn let_star_form(&mut self, d: &Datum, items: &[Datum], tail: bool) -> R<Expr> {
        if items.len() < 2 {
            return error(
                &d.span,
                "bad `let*`: expected (let* ((name expression) ...) body ...)",
            );
        }
        let bindings = self.bindings("let*", &items[1], true)?;
        let mark = self.scope_mark();
        let mut out = Vec::with_capacity(bindings.len() + 1);
        for b in &bindings {
            let init = self.expr_named(b.init, false, Some(b.name))?;
            let slot = self.bind(b.name);
            out.push(Expr::SetLocal {
                addr: local(0, slot),
                value: Box::new(init),
            });
        }
        out.push(self.body(&items[2..], tail, &d.span)?);
        self.end_scope(mark);
        Ok(seq(out))
    }

    fn letrec_form(&mut self, kw: &str, d: &Datum, items: &[Datum], tail: bool) -> R<Expr> {
        if items.len() < 2 {
            return error(
                &d.span,
                format!("bad `{kw}`: expected ({kw} ((name expression) ...) body ...)"),
            );
        }
        let bindings = self.bindings(kw, &items[1], false)?;
        let mark = self.scope_mark();
        let slots: Vec<u32> = bindings.iter().map(|b| self.bind(b.name)).collect();
        let mut out = Vec::with_capacity(bindings.len() + 1);
        for (b, slot) in bindings.iter().zip(slots) {
            let init = self.expr_named(b.init, false, Some(b.name))?;
            out.push(Expr::SetLocal {
                addr: local(0, slot),
                value: Box::new(init),
            });
        }
        out.push(self.body(&items[2..], tail, &d.span)?);
        self.end_scope(mark);
        Ok(seq(out))
    }

    // ---- conditionals ----

    fn cond_form(&mut self, d: &Datum, items: &[Datum], tail: bool) -> R<Expr> {
        let clauses = &items[1..];
        if clauses.is_empty() {
            return error(&d.span, "bad `cond`: expected at least one clause");
        }
        let mut compiled = Vec::with_capacity(clauses.len());
        for (i, clause) in clauses.iter().enumerate() {
            let parts = match clause.as_list() {
                Some(p) if !p.is_empty() => p,
                _ => {
                    return error(
                        &clause.span,
                        "bad `cond` clause: expected (test expression ...)",
                    )
                }
            };
            if self.is_aux(&parts[0], "else") {
                if i + 1 != clauses.len() {
                    return error(&clause.span, "`else` must be the last clause of `cond`");
                }
                if parts.len() < 2 {
                    return error(&clause.span, "empty `else` clause in `cond`");
                }
                compiled.push(CondClause::Else(self.sequence(&parts[1..], tail)?));
            } else if parts.len() >= 2 && self.is_aux(&parts[1], "=>") {
                let [test, _, receiver] = parts else {
                    return error(&clause.span, "bad `=>` clause: expected (test => receiver)");
                };
                let slot = self.hidden();
                compiled.push(CondClause::Arrow {
                    slot,
                    test: self.expr(test, false)?,
                    receiver: self.expr(receiver, false)?,
                    span: clause.span.clone(),
                });
            } else if parts.len() == 1 {
                // `(test)` yields the test's value: in tail position only as the last clause.
                let last = i + 1 == clauses.len();
                compiled.push(CondClause::TestOnly(self.expr(&parts[0], tail && last)?));
            } else {
                let test = self.expr(&parts[0], false)?;
                compiled.push(CondClause::Test(test, self.sequence(&parts[1..], tail)?));
            }
        }
        let mut result = Expr::Unspecified;
        for clause in compiled.into_iter().rev() {
            result = match clause {
                CondClause::Else(e) => e,
                CondClause::Test(test, then) => Expr::If {
                    test: Box::new(test),
                    then: Box::new(then),
                    else_: Box::new(result),
                },
                CondClause::TestOnly(test) => match result {
                    Expr::Unspecified => test,
                    Expr::Or(mut rest) => {
                        rest.insert(0, test);
                        Expr::Or(rest)
                    }
                    rest => Expr::Or(vec![test, rest]),
                },
                CondClause::Arrow {
                    slot,
                    test,
                    receiver,
                    span,
                } => Expr::Seq(vec![
                    Expr::SetLocal {
                        addr: local(0, slot),
                        value: Box::new(test),
                    },
                    Expr::If {
                        test: Box::new(Expr::LocalRef(local(0, slot))),
                        then: Box::new(Expr::Call {
                            func: Box::new(receiver),
                            args: vec![Expr::LocalRef(local(0, slot))],
                            tail,
                            span,
                        }),
                        else_: Box::new(result),
                    },
                ]),
            };
        }
        Ok(result)
    }

    fn case_form(&mut self, d: &Datum, items: &[Datum], tail: bool) -> R<Expr> {
        if items.len() < 3 {
            return error(&d.span, "bad `case`: expected (case key clause ...)");
        }
        let clauses = &items[2..];
        let uses_arrow = clauses.iter().any(|c| {
            c.as_list()
                .and_then(|p| p.get(1))
                .is_some_and(|x| self.is_aux(x, "=>"))
        });
        let key = self.expr(&items[1], false)?;
        let (prefix, key, key_slot) = if uses_arrow {
            let slot = self.hidden();
            let set = Expr::SetLocal {
                addr: local(0, slot),
                value: Box::new(key),
            };
            (Some(set), Expr::LocalRef(local(0, slot)), slot)
        } else {
            (None, key, 0)
        };
        let mut out = Vec::with_capacity(clauses.len());
        let mut default = Expr::Unspecified;
        for (i, clause) in clauses.iter().enumerate() {
            let parts = match clause.as_list() {
                Some(p) if p.len() >= 2 => p,
                _ => {
                    return error(
                        &clause.span,
                        "bad `case` clause: expected ((datum ...) expression ...) or (else expression ...)",
                    )
                }
            };
            let data = if self.is_aux(&parts[0], "else") {
                if i + 1 != clauses.len() {
                    return error(&clause.span, "`else` must be the last clause of `case`");
                }
                None
            } else {
                let Some(data) = parts[0].as_list() else {
                    return error(&parts[0].span, "bad `case` clause: expected a list of data");
                };
                Some(data.iter().map(|x| self.constant(x)).collect())
            };
            let body = if self.is_aux(&parts[1], "=>") {
                let [_, _, receiver] = parts else {
                    return error(
                        &clause.span,
                        "bad `=>` clause: expected ((datum ...) => receiver)",
                    );
                };
                Expr::Call {
                    func: Box::new(self.expr(receiver, false)?),
                    args: vec![Expr::LocalRef(local(0, key_slot))],
                    tail,
                    span: clause.span.clone(),
                }
            } else {
                self.sequence(&parts[1..], tail)?
            };
            match data {
                Some(data) => out.push(CaseClause { data, body }),
                None => default = body,
            }
        }
        let case = Expr::Case {
            key: Box::new(key),
            clauses: out,
            default: Box::new(default),
        };
        Ok(match prefix {
            Some(set) => Expr::Seq(vec![set, case]),
            None => case,
        })
    }

    // ---- do ----

    fn do_form(&mut self, d: &Datum, items: &[Datum], tail: bool) -> R<Expr> {
        const USAGE: &str =
            "bad `do`: expected (do ((variable init [step]) ...) (test expression ...) command ...)";
        if items.len() < 3 {
            return error(&d.span, USAGE);
        }
        let Some(specs) = items[1].as_list() else {
            return error(&items[1].span, USAGE);
        };
        let mut vars: Vec<(&Datum, &Datum, Option<&Datum>)> = Vec::with_capacity(specs.len());
        for spec in specs {
            let parsed = match spec.as_list() {
                Some([var, init]) => Some((var, init, None)),
                Some([var, init, step]) => Some((var, init, Some(step))),
                _ => None,
            };
            let Some((var, init, step)) = parsed.filter(|(v, _, _)| v.as_symbol().is_some()) else {
                return error(
                    &spec.span,
                    "bad `do` variable: expected (variable init) or (variable init step)",
                );
            };
            if vars
                .iter()
                .any(|(v, _, _)| v.as_symbol() == var.as_symbol())
            {
                return error(&var.span, format!("duplicate `do` variable `{var}`"));
            }
            vars.push((var, init, step));
        }
        let exit = match items[2].as_list() {
            Some(e) if !e.is_empty() => e,
            _ => {
                return error(
                    &items[2].span,
                    "bad `do` exit clause: expected (test expression ...)",
                )
            }
        };
        let inits = vars
            .iter()
            .map(|(_, init, _)| self.expr(init, false))
            .collect::<R<Vec<_>>>()?;
        let loop_slot = self.hidden();

        self.push_frame();
        for (var, _, _) in &vars {
            self.bind(var.as_symbol().unwrap_or_default());
        }
        let test = self.expr(&exit[0], false)?;
        let result = if exit.len() > 1 {
            self.sequence(&exit[1..], true)?
        } else {
            Expr::Unspecified
        };
        let mut again = Vec::with_capacity(items.len() - 2);
        for cmd in &items[3..] {
            again.push(self.expr(cmd, false)?);
        }
        let mut steps = Vec::with_capacity(vars.len());
        for (i, (_, _, step)) in vars.iter().enumerate() {
            steps.push(match step {
                Some(s) => self.expr(s, false)?,
                None => Expr::LocalRef(local(0, i as u32)),
            });
        }
        again.push(Expr::Call {
            func: Box::new(Expr::LocalRef(local(1, loop_slot))),
            args: steps,
            tail: true,
            span: d.span.clone(),
        });
        let body = Expr::If {
            test: Box::new(test),
            then: Box::new(result),
            else_: Box::new(seq(again)),
        };
        let frame = self.pop_frame();
        let proc = Expr::Lambda(Arc::new(Lambda {
            nparams: vars.len() as u32,
            rest: false,
            frame_size: frame.size,
            body,
            name: None,
            span: d.span.clone(),
        }));
        Ok(Expr::Seq(vec![
            Expr::SetLocal {
                addr: local(0, loop_slot),
                value: Box::new(proc),
            },
            Expr::Call {
                func: Box::new(Expr::LocalRef(local(0, loop_slot))),
                args: inits,
                tail,
                span: d.span.clone(),
            },
        ]))
    }
}

impl Expr {
    /// Calls `f` on every constant in the tree (including nested lambdas and `case` data).
    pub fn for_each_const<'a>(&'a self, f: &mut dyn FnMut(&'a Const)) {
        match self {
            Expr::Const(c) => f(c),
            Expr::Unspecified | Expr::LocalRef(_) | Expr::GlobalRef { .. } => {}
            Expr::SetLocal { value, .. }
            | Expr::SetGlobal { value, .. }
            | Expr::DefineGlobal { value, .. } => value.for_each_const(f),
            Expr::If { test, then, else_ } => {
                test.for_each_const(f);
                then.for_each_const(f);
                else_.for_each_const(f);
            }
            Expr::And(es) | Expr::Or(es) | Expr::Seq(es) => {
                es.iter().for_each(|e| e.for_each_const(f));
            }
            Expr::Case {
                key,
                clauses,
                default,
            } => {
                key.for_each_const(f);
                for c in clauses {
                    c.data.iter().for_each(&mut *f);
                    c.body.for_each_const(f);
                }
                default.for_each_const(f);
            }
            Expr::Lambda(l) => l.body.for_each_const(f),
            Expr::Call { func, args, .. } => {
                func.for_each_const(f);
                args.iter().for_each(|e| e.for_each_const(f));
            }
        }
    }

    /// A compact s-expression rendering, for debugging and tests:
    /// locals are `l<depth>.<index>`, globals `g:<name>`, constants `'<datum>`, tail calls
    /// `(tail f ...)`, other calls `(call f ...)`, lambdas
    /// `(lambda <name|_> n=<nparams>[ rest] frame=<size> body)`.
    pub fn show(&self, symbols: &SymbolTable) -> String {
        let mut out = String::new();
        self.show_into(symbols, &mut out);
        out
    }

    fn show_into(&self, symbols: &SymbolTable, out: &mut String) {
        let list = |out: &mut String, head: &str, es: &[&Expr]| {
            out.push('(');
            out.push_str(head);
            for e in es {
                out.push(' ');
                e.show_into(symbols, out);
            }
            out.push(')');
        };
        match self {
            Expr::Const(c) => {
                let _ = write!(out, "'{}", c.datum);
            }
            Expr::Unspecified => out.push_str("#<unspecified>"),
            Expr::LocalRef(a) => {
                let _ = write!(out, "l{}.{}", a.depth, a.index);
            }
            Expr::GlobalRef { sym, .. } => {
                let _ = write!(out, "g:{}", symbols.name(*sym));
            }
            Expr::SetLocal { addr, value } => {
                list(
                    out,
                    &format!("set! l{}.{}", addr.depth, addr.index),
                    &[value],
                );
            }
            Expr::SetGlobal { sym, value, .. } => {
                list(out, &format!("set! g:{}", symbols.name(*sym)), &[value]);
            }
            Expr::DefineGlobal { sym, value, .. } => {
                list(out, &format!("define g:{}", symbols.name(*sym)), &[value]);
            }
            Expr::If { test, then, else_ } => list(out, "if", &[test, then, else_]),
            Expr::And(es) => list(out, "and", &es.iter().collect::<Vec<_>>()),
            Expr::Or(es) => list(out, "or", &es.iter().collect::<Vec<_>>()),
            Expr::Seq(es) => list(out, "seq", &es.iter().collect::<Vec<_>>()),
            Expr::Case {
                key,
                clauses,
                default,
            } => {
                out.push_str("(case ");
                key.show_into(symbols, out);
                for c in clauses {
                    out.push_str(" ((");
                    for (i, k) in c.data.iter().enumerate() {
                        if i > 0 {
                            out.push(' ');
                        }
                        let _ = write!(out, "{}", k.datum);
                    }
                    out.push_str(") ");
                    c.body.show_into(symbols, out);
                    out.push(')');
                }
                out.push_str(" (else ");
                default.show_into(symbols, out);
                out.push_str("))");
            }
            Expr::Lambda(l) => {
                let _ = write!(
                    out,
                    "(lambda {} n={}{} frame={} ",
                    l.name.as_deref().unwrap_or("_"),
                    l.nparams,
                    if l.rest { " rest" } else { "" },
                    l.frame_size
                );
                l.body.show_into(symbols, out);
                out.push(')');
            }
            Expr::Call {
                func, args, tail, ..
            } => {
                let mut es: Vec<&Expr> = vec![func];
                es.extend(args.iter());
                list(out, if *tail { "tail" } else { "call" }, &es);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::read_all;
    use proptest::prelude::*;

    fn compile_src(src: &str, syms: &mut SymbolTable) -> Result<Vec<TopLevel>, CompileError> {
        let data = read_all("t.scm", src).unwrap_or_else(|e| panic!("read error: {e}"));
        compile_program(&data, syms)
    }

    /// Compiles `src` and shows every top-level form, one per line.
    fn c(src: &str) -> String {
        let mut syms = SymbolTable::new();
        let tls = compile_src(src, &mut syms).unwrap_or_else(|e| panic!("{src}: {e}"));
        tls.iter()
            .map(|t| t.body.show(&syms))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn c1(src: &str) -> TopLevel {
        let mut tls = compile_src(src, &mut SymbolTable::new()).unwrap();
        assert_eq!(tls.len(), 1);
        tls.pop().unwrap()
    }

    /// The error for `src` as (line, col, message).
    fn cerr(src: &str) -> (u32, u32, String) {
        match compile_src(src, &mut SymbolTable::new()) {
            Ok(t) => panic!("expected a compile error for {src}, got {t:?}"),
            Err(e) => (e.span.line, e.span.col, e.message),
        }
    }

    fn assert_err(src: &str, line: u32, col: u32, needle: &str) {
        let (l, c, m) = cerr(src);
        assert_eq!((l, c), (line, col), "{src}: {m}");
        assert!(m.contains(needle), "{src}: message {m:?} lacks {needle:?}");
    }

    fn lambdas(e: &Expr) -> Vec<&Lambda> {
        let mut out = Vec::new();
        collect_lambdas(e, &mut out);
        out
    }

    fn collect_lambdas<'a>(e: &'a Expr, out: &mut Vec<&'a Lambda>) {
        children(e)
            .into_iter()
            .for_each(|c| collect_lambdas(c, out));
        if let Expr::Lambda(l) = e {
            out.insert(0, l);
        }
    }

    fn children(e: &Expr) -> Vec<&Expr> {
        match e {
            Expr::Const(_) | Expr::Unspecified | Expr::LocalRef(_) | Expr::GlobalRef { .. } => {
                vec![]
            }
            Expr::SetLocal { value, .. }
            | Expr::SetGlobal { value, .. }
            | Expr::DefineGlobal { value, .. } => vec![value],
            Expr::If { test, then, else_ } => vec![test, then, else_],
            Expr::And(es) | Expr::Or(es) | Expr::Seq(es) => es.iter().collect(),
            Expr::Case {
                key,
                clauses,
                default,
            } => {
                let mut v: Vec<&Expr> = vec![key];
                v.extend(clauses.iter().map(|c| &c.body));
                v.push(default);
                v
            }
            Expr::Lambda(l) => vec![&l.body],
            Expr::Call { func, args, .. } => {
                let mut v: Vec<&Expr> = vec![func];
                v.extend(args.iter());
                v
            }
        }
    }

    fn walk<'a>(e: &'a Expr, f: &mut dyn FnMut(&'a Expr)) {
        f(e);
        for c in children(e) {
            walk(c, f);
        }
    }

    /// Every call node as (shown callee, tail).
    fn calls(e: &Expr, syms: &SymbolTable) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        walk(e, &mut |x| {
            if let Expr::Call { func, tail, .. } = x {
                out.push((func.show(syms), *tail));
            }
        });
        out
    }

    /// Checks the structural invariants promised in the module doc.
    fn check_invariants(tl: &TopLevel) {
        fn go(e: &Expr, frames: &mut Vec<u32>) {
            match e {
                Expr::LocalRef(a) | Expr::SetLocal { addr: a, .. } => {
                    let d = a.depth as usize;
                    assert!(d < frames.len(), "depth {d} with {} frames", frames.len());
                    let size = frames[frames.len() - 1 - d];
                    assert!(a.index < size, "slot {} of frame of size {size}", a.index);
                }
                Expr::Seq(es) => {
                    assert!(es.len() >= 2);
                    assert!(es.iter().all(|e| !matches!(e, Expr::Seq(_))));
                }
                Expr::And(es) | Expr::Or(es) => assert!(es.len() >= 2),
                _ => {}
            }
            if let Expr::Lambda(l) = e {
                assert!(l.nparams + u32::from(l.rest) <= l.frame_size);
                frames.push(l.frame_size);
                go(&l.body, frames);
                frames.pop();
            } else {
                for c in children(e) {
                    go(c, frames);
                }
            }
        }
        go(&tl.body, &mut vec![tl.frame_size]);
        let consts = tl.constants();
        assert_eq!(consts.len(), tl.const_count as usize);
        for (i, k) in consts.iter().enumerate() {
            assert_eq!(k.id, ConstId(i as u32));
        }
    }

    // ---- symbols ----

    #[test]
    fn symbol_table_interns() {
        let mut t = SymbolTable::new();
        assert!(t.is_empty());
        let a = t.intern("car");
        let b = t.intern("cdr");
        assert_eq!(t.intern("car"), a);
        assert_ne!(a, b);
        assert_eq!((a, b), (SymbolId(0), SymbolId(1)));
        assert_eq!(t.name(b), "cdr");
        assert_eq!(t.lookup("cdr"), Some(b));
        assert_eq!(t.lookup("cons"), None);
        assert_eq!(t.len(), 2);
        assert_eq!(t.name(SymbolId(99)), "<unknown symbol>");
        // Globals of later forms share the table.
        let mut syms = SymbolTable::new();
        let tls = compile_src("(define x 1) (set! x 2) x", &mut syms).unwrap();
        let id = syms.lookup("x").unwrap();
        assert!(matches!(tls[0].body, Expr::DefineGlobal { sym, .. } if sym == id));
        assert!(matches!(tls[1].body, Expr::SetGlobal { sym, .. } if sym == id));
        assert!(matches!(tls[2].body, Expr::GlobalRef { sym, .. } if sym == id));
        assert_eq!(syms.len(), 1);
    }

    // ---- constants and variables ----

    #[test]
    fn constants() {
        assert_eq!(c("42"), "'42");
        assert_eq!(c("-1.5"), "'-1.5");
        assert_eq!(c("\"s\""), "'\"s\"");
        assert_eq!(c("#\\a"), "'#\\a");
        assert_eq!(c("#t"), "'#t");
        assert_eq!(c("#(1 x)"), "'#(1 x)");
        assert_eq!(c("'x"), "'x");
        assert_eq!(c("'(1 . 2)"), "'(1 . 2)");
        assert_eq!(c("'()"), "'()");
        assert_eq!(c("(quote (quote x))"), "''x");
        let tl = c1("(list 1 '(a b) \"s\" (case k ((x y) 'z)))");
        check_invariants(&tl);
        assert_eq!(tl.const_count, 6);
        let shown: Vec<String> = tl.constants().iter().map(|k| k.datum.to_string()).collect();
        assert_eq!(shown, ["1", "(a b)", "\"s\"", "x", "y", "z"]);
        // The datum keeps its source span.
        let k = tl.constants()[1];
        assert_eq!((k.datum.span.line, k.datum.span.col), (1, 10));
        // Constants inside lambdas are numbered within the same top-level form.
        let tl = c1("(define (f) (g 1 (lambda () \"x\")))");
        assert_eq!(tl.const_count, 2);
        check_invariants(&tl);
    }

    #[test]
    fn quote_errors() {
        assert_err("(quote)", 1, 1, "bad `quote`");
        assert_err("(quote a b)", 1, 1, "bad `quote`");
        assert_err("\n `x", 2, 2, "`quasiquote` is not supported");
        assert_err(",x", 1, 1, "`unquote` is not supported");
    }

    #[test]
    fn variables() {
        assert_eq!(c("x"), "g:x");
        assert_eq!(c("(car x)"), "(call g:car g:x)");
        let tl = c1("  foo");
        match tl.body {
            Expr::GlobalRef { span, .. } => assert_eq!((span.line, span.col, span.len), (1, 3, 3)),
            e => panic!("{e:?}"),
        }
        assert_err(
            "(f if)",
            1,
            4,
            "syntactic keyword `if` cannot be used as a variable",
        );
        assert_err("else", 1, 1, "keyword `else`");
        assert_err("()", 1, 1, "empty combination");
        assert_err("(f . x)", 1, 1, "dotted list");
        assert_err("(f (1 . 2))", 1, 4, "dotted list");
        assert_err(
            "(else 1)",
            1,
            1,
            "only allowed inside a `cond` or `case` clause",
        );
    }

    // ---- define ----

    #[test]
    fn define_forms() {
        assert_eq!(c("(define x 1)"), "(define g:x '1)");
        assert_eq!(
            c("(define (f x) x)"),
            "(define g:f (lambda f n=1 frame=1 l0.0))"
        );
        assert_eq!(
            c("(define (f . args) args)"),
            "(define g:f (lambda f n=0 rest frame=1 l0.0))"
        );
        assert_eq!(
            c("(define (f a b . c) (list c b a))"),
            "(define g:f (lambda f n=2 rest frame=3 (tail g:list l0.2 l0.1 l0.0)))"
        );
        assert_eq!(
            c("(define f (lambda (x) x))"),
            "(define g:f (lambda f n=1 frame=1 l0.0))"
        );
        assert_eq!(
            c("(define (f) 1 2)"),
            "(define g:f (lambda f n=0 frame=0 (seq '1 '2)))"
        );
        // `begin` at top level splices definitions.
        assert_eq!(
            c("(begin (define a 1) (begin (define b a)) b)"),
            "(seq (define g:a '1) (define g:b g:a) g:b)"
        );
        assert_eq!(c("(begin)"), "#<unspecified>");
        let tl = c1("(define x 1)");
        assert!(matches!(tl.body, Expr::DefineGlobal { ref span, .. } if span.len == 12));
    }

    #[test]
    fn define_errors() {
        assert_err("(define)", 1, 1, "bad `define`");
        assert_err("(define x)", 1, 1, "`define` of `x` is missing its value");
        assert_err("(define x 1 2)", 1, 1, "bad `define`");
        assert_err("(define 1 2)", 1, 9, "bad `define`");
        assert_err("(define () 2)", 1, 9, "bad `define`");
        assert_err("(define (1 x) 2)", 1, 10, "the name must be a symbol");
        assert_err("(define (f x))", 1, 1, "procedure `f` has an empty body");
        assert_err(
            "(define if 1)",
            1,
            9,
            "cannot define syntactic keyword `if`",
        );
        assert_err("(define (f x x) x)", 1, 14, "duplicate parameter `x`");
        assert_err("(define (f 1) 1)", 1, 12, "bad parameter");
        assert_err("(define (f . 1) 1)", 1, 14, "bad parameter");
        assert_err(
            "(if x\n    (define y 1))",
            2,
            5,
            "`define` is only allowed at top level or at the beginning of a body",
        );
        assert_err("(f (define y 1))", 1, 4, "only allowed at top level");
        assert_err(
            "(begin (define y 1))\n(when x (define z 1))",
            2,
            9,
            "only allowed",
        );
    }

    // ---- lambda ----

    #[test]
    fn lambda_forms() {
        assert_eq!(c("(lambda (x y) y)"), "(lambda _ n=2 frame=2 l0.1)");
        assert_eq!(c("(lambda x x)"), "(lambda _ n=0 rest frame=1 l0.0)");
        assert_eq!(c("(lambda (a . b) b)"), "(lambda _ n=1 rest frame=2 l0.1)");
        assert_eq!(c("(lambda () 1)"), "(lambda _ n=0 frame=0 '1)");
        assert_eq!(
            c("(lambda (x) (display x) x)"),
            "(lambda _ n=1 frame=1 (seq (call g:display l0.0) l0.0))"
        );
        let tl = c1("\n  (lambda (x) x)");
        let l = lambdas(&tl.body)[0];
        assert_eq!((l.span.line, l.span.col, l.name.clone()), (2, 3, None));
    }

    #[test]
    fn lambda_errors() {
        assert_err("(lambda 1 2)", 1, 9, "bad `lambda` formals");
        assert_err("(lambda (x))", 1, 1, "empty body");
        assert_err("(lambda)", 1, 1, "bad `lambda`");
        assert_err("(lambda (x x) x)", 1, 12, "duplicate parameter `x`");
        assert_err("(lambda (x . x) x)", 1, 14, "duplicate parameter `x`");
        assert_err("(lambda (\"a\") 1)", 1, 10, "bad parameter");
        assert_err("(lambda (x) (begin))", 1, 1, "empty body");
        assert_eq!(c("(lambda (x) (begin) x)"), "(lambda _ n=1 frame=1 l0.0)");
    }

    // ---- let family ----

    #[test]
    fn let_forms() {
        assert_eq!(
            c("(let ((x 1) (y 2)) (+ x y))"),
            "(seq (set! l0.0 '1) (set! l0.1 '2) (call g:+ l0.0 l0.1))"
        );
        assert_eq!(c1("(let ((x 1) (y 2)) x)").frame_size, 2);
        assert_eq!(
            c("(lambda (a) (let ((x a)) x))"),
            "(lambda _ n=1 frame=2 (seq (set! l0.1 l0.0) l0.1))"
        );
        // Inits are evaluated outside the new scope.
        assert_eq!(
            c("(let ((x 1)) (let ((x 2) (y x)) y))"),
            "(seq (set! l0.0 '1) (set! l0.1 '2) (set! l0.2 l0.0) l0.2)"
        );
        assert_eq!(c("(let () 1)"), "'1");
        // Scopes end: a later `x` is global again, and slots are not reused.
        let tl = c1("(begin (let ((x 1)) x) (let ((y 2)) y) x)");
        assert_eq!(
            tl.body
                .show(&SymbolTable::new())
                .replace("<unknown symbol>", "x"),
            "(seq (set! l0.0 '1) l0.0 (set! l0.1 '2) l0.1 g:x)"
        );
        assert_eq!(tl.frame_size, 2);
        // Names of lambdas bound by let.
        let tl = c1("(let ((g (lambda () 1))) g)");
        assert_eq!(lambdas(&tl.body)[0].name.as_deref(), Some("g"));
    }

    #[test]
    fn let_star_forms() {
        assert_eq!(
            c("(let* ((x 1) (y x) (x (+ x y))) x)"),
            "(seq (set! l0.0 '1) (set! l0.1 l0.0) (set! l0.2 (call g:+ l0.0 l0.1)) l0.2)"
        );
        assert_eq!(c("(let* () 5)"), "'5");
    }

    #[test]
    fn letrec_forms() {
        let src = "(letrec ((even? (lambda (n) (if (= n 0) #t (odd? (- n 1)))))
                           (odd? (lambda (n) (if (= n 0) #f (even? (- n 1))))))
                    (even? 10))";
        assert_eq!(
            c(src),
            "(seq (set! l0.0 (lambda even? n=1 frame=1 (if (call g:= l0.0 '0) '#t (tail l1.1 (call g:- l0.0 '1))))) \
             (set! l0.1 (lambda odd? n=1 frame=1 (if (call g:= l0.0 '0) '#f (tail l1.0 (call g:- l0.0 '1))))) \
             (call l0.0 '10))"
        );
        assert_eq!(
            c("(letrec* ((a 1) (b (+ a 1))) b)"),
            "(seq (set! l0.0 '1) (set! l0.1 (call g:+ l0.0 '1)) l0.1)"
        );
    }

    #[test]
    fn named_let() {
        let src =
            "(define (f n) (let loop ((i 0) (acc 1)) (if (= i n) acc (loop (+ i 1) (* acc 2)))))";
        assert_eq!(
            c(src),
            "(define g:f (lambda f n=1 frame=2 (seq (set! l0.1 (lambda loop n=2 frame=2 \
             (if (call g:= l0.0 l1.0) l0.1 (tail l1.1 (call g:+ l0.0 '1) (call g:* l0.1 '2))))) \
             (tail l0.1 '0 '1))))"
        );
        // Inits do not see the loop variable or the loop procedure.
        assert_eq!(
            c("(let loop ((loop loop)) loop)"),
            "(seq (set! l0.0 (lambda loop n=1 frame=1 l0.0)) (call l0.0 g:loop))"
        );
        assert_eq!(
            c("(let l () 1)"),
            "(seq (set! l0.0 (lambda l n=0 frame=0 '1)) (call l0.0))"
        );
    }

    #[test]
    fn let_errors() {
        assert_err(
            "(let ((x)) x)",
            1,
            7,
            "bad `let` binding: expected (name expression)",
        );
        assert_err("(let ((x 1 2)) x)", 1, 7, "bad `let` binding");
        assert_err("(let ((1 2)) 1)", 1, 7, "bad `let` binding");
        assert_err("(let (x) x)", 1, 7, "bad `let` binding");
        assert_err("(let x)", 1, 1, "bad named `let`");
        assert_err("(let loop ((i 0)))", 1, 1, "empty body");
        assert_err("(let loop (i) 1)", 1, 12, "bad `let` binding");
        assert_err("(let loop 5 1)", 1, 11, "bad `let` bindings");
        assert_err("(let)", 1, 1, "bad `let`");
        assert_err("(let ((x 1)))", 1, 1, "empty body");
        assert_err("(let 5 x)", 1, 6, "bad `let` bindings");
        assert_err(
            "(let ((x 1) (x 2)) x)",
            1,
            14,
            "duplicate binding `x` in `let`",
        );
        assert_err("(let loop ((x 1) (x 2)) x)", 1, 19, "duplicate binding `x`");
        assert_err(
            "(letrec ((x 1) (x 2)) x)",
            1,
            17,
            "duplicate binding `x` in `letrec`",
        );
        assert_err("(letrec* ((x)) x)", 1, 11, "bad `letrec*` binding");
        assert_err("(letrec)", 1, 1, "bad `letrec`");
        assert_err("(let* ((x 1) (y)) x)", 1, 14, "bad `let*` binding");
        assert_err("(let* x)", 1, 7, "bad `let*` bindings");
        assert_err("(let ((x (if))) x)", 1, 10, "bad `if`");
    }

    // ---- bodies ----

    #[test]
    fn internal_defines() {
        let src = "(define (f x) (define a 1) (define (g) (+ a x)) (g))";
        assert_eq!(
            c(src),
            "(define g:f (lambda f n=1 frame=3 (seq (set! l0.1 '1) \
             (set! l0.2 (lambda g n=0 frame=0 (tail g:+ l1.1 l1.0))) (tail l0.2))))"
        );
        // letrec* semantics: definitions see each other, including later ones.
        assert_eq!(
            c("(lambda () (define (a) (b)) (define (b) 1) (a))"),
            "(lambda _ n=0 frame=2 (seq (set! l0.0 (lambda a n=0 frame=0 (tail l1.1))) \
             (set! l0.1 (lambda b n=0 frame=0 '1)) (tail l0.0)))"
        );
        // Definitions may shadow parameters and come after expressions; `begin` splices.
        assert_eq!(
            c("(lambda (x) (display x) (begin (define x 2) (define y x)) y)"),
            "(lambda _ n=1 frame=3 (seq (call g:display l0.1) (set! l0.1 '2) (set! l0.2 l0.1) l0.2))"
        );
        // Let bodies are bodies too; top-level let bodies define locals, not globals.
        assert_eq!(
            c("(let ((x 1)) (define y x) y)"),
            "(seq (set! l0.0 '1) (set! l0.1 l0.0) l0.1)"
        );
        assert_eq!(
            c("(let loop ((i 0)) (define j i) j)"),
            "(seq (set! l0.0 (lambda loop n=1 frame=2 (seq (set! l0.1 l0.0) l0.1))) (call l0.0 '0))"
        );
    }

    #[test]
    fn body_errors() {
        assert_err(
            "(define (f)\n  (define a 1))",
            2,
            3,
            "a body must end with an expression",
        );
        assert_err(
            "(lambda () (define a 1) (define a 2) a)",
            1,
            25,
            "`a` is defined twice",
        );
        assert_err("(lambda () (begin))", 1, 1, "empty body");
        assert_err(
            "(let () (define (if) 1) 2)",
            1,
            18,
            "cannot define syntactic keyword",
        );
        assert_err("(lambda () (define) 1)", 1, 12, "bad `define`");
    }

    // ---- conditionals ----

    #[test]
    fn if_forms() {
        assert_eq!(c("(if a b c)"), "(if g:a g:b g:c)");
        assert_eq!(c("(if a b)"), "(if g:a g:b #<unspecified>)");
        assert_err("(if)", 1, 1, "bad `if`");
        assert_err("(if a)", 1, 1, "bad `if`");
        assert_err("(if 1 2 3 4)", 1, 1, "bad `if`");
    }

    #[test]
    fn cond_forms() {
        assert_eq!(
            c("(cond ((a) 1) ((b) 2 3) (else 4))"),
            "(if (call g:a) '1 (if (call g:b) (seq '2 '3) '4))"
        );
        assert_eq!(c("(cond (a 1))"), "(if g:a '1 #<unspecified>)");
        assert_eq!(c("(cond (a) (b) (else c))"), "(or g:a g:b g:c)");
        assert_eq!(c("(cond (a))"), "g:a");
        assert_eq!(c("(cond (else 1 2))"), "(seq '1 '2)");
        assert_eq!(
            c("(lambda (x) (cond ((assv x l) => cdr) (else #f)))"),
            "(lambda _ n=1 frame=2 (seq (set! l0.1 (call g:assv l0.0 g:l)) \
             (if l0.1 (tail g:cdr l0.1) '#f)))"
        );
        // `else` shadowed by a local is an ordinary test.
        assert_eq!(
            c("(lambda (else) (cond (else 1)))"),
            "(lambda _ n=1 frame=1 (if l0.0 '1 #<unspecified>))"
        );
    }

    #[test]
    fn cond_errors() {
        assert_err("(cond)", 1, 1, "at least one clause");
        assert_err("(cond ())", 1, 7, "bad `cond` clause");
        assert_err("(cond x)", 1, 7, "bad `cond` clause");
        assert_err(
            "(cond (else 1) (a 2))",
            1,
            7,
            "`else` must be the last clause",
        );
        assert_err("(cond\n (else))", 2, 2, "empty `else` clause");
        assert_err("(cond (a => f g))", 1, 7, "bad `=>` clause");
        assert_err("(cond (a =>))", 1, 7, "bad `=>` clause");
        assert_err("(cond (a b) (c (if)))", 1, 16, "bad `if`");
    }

    #[test]
    fn case_forms() {
        assert_eq!(
            c("(case (f) ((1 2) 'low) ((a) 'sym 'x) (else 'other))"),
            "(case (call g:f) ((1 2) 'low) ((a) (seq 'sym 'x)) (else 'other))"
        );
        assert_eq!(
            c("(case x ((1) 2))"),
            "(case g:x ((1) '2) (else #<unspecified>))"
        );
        assert_eq!(
            c("(case x (() 2))"),
            "(case g:x (() '2) (else #<unspecified>))"
        );
        assert_eq!(
            c("(lambda (k) (case k ((1) => f) (else => g)))"),
            "(lambda _ n=1 frame=2 (seq (set! l0.1 l0.0) \
             (case l0.1 ((1) (tail g:f l0.1)) (else (tail g:g l0.1)))))"
        );
    }

    #[test]
    fn case_errors() {
        assert_err("(case)", 1, 1, "bad `case`");
        assert_err("(case x)", 1, 1, "bad `case`");
        assert_err("(case x (1 2))", 1, 10, "expected a list of data");
        assert_err("(case x ((1)))", 1, 9, "bad `case` clause");
        assert_err("(case x y)", 1, 9, "bad `case` clause");
        assert_err(
            "(case x (else 1) ((2) 3))",
            1,
            9,
            "`else` must be the last clause of `case`",
        );
        assert_err("(case x ((1) => f g))", 1, 9, "bad `=>` clause");
        assert_err("(case x ((1 . 2) 3))", 1, 10, "expected a list of data");
    }

    #[test]
    fn and_or() {
        assert_eq!(c("(and)"), "'#t");
        assert_eq!(c("(or)"), "'#f");
        assert_eq!(c("(and a)"), "g:a");
        assert_eq!(c("(or a b c)"), "(or g:a g:b g:c)");
        assert_eq!(
            c("(lambda () (and (f) (g)))"),
            "(lambda _ n=0 frame=0 (and (call g:f) (tail g:g)))"
        );
        assert_eq!(
            c("(lambda () (or (f)))"),
            "(lambda _ n=0 frame=0 (tail g:f))"
        );
    }

    #[test]
    fn when_unless() {
        assert_eq!(c("(when a b c)"), "(if g:a (seq g:b g:c) #<unspecified>)");
        assert_eq!(c("(unless a b)"), "(if g:a #<unspecified> g:b)");
        assert_err("(when a)", 1, 1, "bad `when`");
        assert_err("(unless)", 1, 1, "bad `unless`");
    }

    // ---- assignment and sequencing ----

    #[test]
    fn set_forms() {
        assert_eq!(c("(set! x 1)"), "(set! g:x '1)");
        assert_eq!(
            c("(lambda (x) (set! x 1))"),
            "(lambda _ n=1 frame=1 (set! l0.0 '1))"
        );
        assert_eq!(
            c("(lambda (x) (lambda () (set! x 1)))"),
            "(lambda _ n=1 frame=1 (lambda _ n=0 frame=0 (set! l1.0 '1)))"
        );
        assert_eq!(
            lambdas(&c1("(set! f (lambda () 1))").body)[0]
                .name
                .as_deref(),
            Some("f")
        );
        assert_err("(set! x)", 1, 1, "bad `set!`");
        assert_err("(set! x 1 2)", 1, 1, "bad `set!`");
        assert_err("(set! 1 2)", 1, 7, "the target must be a variable");
        assert_err(
            "(set! if 2)",
            1,
            7,
            "cannot assign to syntactic keyword `if`",
        );
        let tl = c1("  (set! x 1)");
        assert!(matches!(tl.body, Expr::SetGlobal { ref span, .. } if span.col == 3));
    }

    #[test]
    fn begin_forms() {
        assert_eq!(c("(f (begin 1 2))"), "(call g:f (seq '1 '2))");
        assert_eq!(c("(f (begin 1))"), "(call g:f '1)");
        assert_eq!(
            c("(lambda () (begin (a) (begin (b) (c))))"),
            "(lambda _ n=0 frame=0 (seq (call g:a) (call g:b) (tail g:c)))"
        );
        assert_err("(f (begin))", 1, 4, "bad `begin`");
    }

    #[test]
    fn do_loops() {
        let src = "(define (f v n) (do ((i 0 (+ i 1)) (acc '())) ((= i n) (display i) acc) (vector-set! v i i)))";
        assert_eq!(
            c(src),
            "(define g:f (lambda f n=2 frame=3 (seq (set! l0.2 (lambda _ n=2 frame=2 \
             (if (call g:= l0.0 l1.1) (seq (call g:display l0.0) l0.1) \
             (seq (call g:vector-set! l1.0 l0.0 l0.0) (tail l1.2 (call g:+ l0.0 '1) l0.1))))) \
             (tail l0.2 '0 '()))))"
        );
        assert_eq!(
            c("(do () (#t))"),
            "(seq (set! l0.0 (lambda _ n=0 frame=0 (if '#t #<unspecified> (tail l1.0)))) (call l0.0))"
        );
        assert_err("(do)", 1, 1, "bad `do`");
        assert_err("(do ((i)) (#t))", 1, 6, "bad `do` variable");
        assert_err("(do ((1 2)) (#t))", 1, 6, "bad `do` variable");
        assert_err(
            "(do ((i 0) (i 1)) (#t))",
            1,
            13,
            "duplicate `do` variable `i`",
        );
        assert_err("(do ((i 0)) ())", 1, 13, "bad `do` exit clause");
        assert_err("(do x (#t))", 1, 5, "bad `do`");
        assert_err(
            "(do () (#t) (define x 1))",
            1,
            13,
            "only allowed at top level",
        );
    }

    // ---- tail positions ----

    #[test]
    fn tail_calls_are_marked() {
        let mut syms = SymbolTable::new();
        let tls = compile_src(
            "(define (f n) (if (= n 0) 0 (f (- n 1))))
             (define (g x) (+ 1 (f x)))
             (f 10)",
            &mut syms,
        )
        .unwrap();
        let s = |e: &str| e.to_string();
        assert_eq!(
            calls(&tls[0].body, &syms),
            [(s("g:="), false), (s("g:f"), true), (s("g:-"), false)]
        );
        assert_eq!(
            calls(&tls[1].body, &syms),
            [(s("g:+"), true), (s("g:f"), false)]
        );
        // Calls directly at top level are not tail calls.
        assert_eq!(calls(&tls[2].body, &syms), [(s("g:f"), false)]);
    }

    #[test]
    fn tail_positions_in_every_form() {
        let mut syms = SymbolTable::new();
        let src = "(lambda (x)
          (a)
          (let ((y (b)))
            (c)
            (cond ((d) (e))
                  ((f) => g)
                  ((h))
                  (else (when (i) (j))
                        (unless (k) (l))
                        (case (m) ((1) (n)) ((2) => o) (else (and (p) (q)))))))
          (or (r) (s)))";
        let tl = compile_src(src, &mut syms).unwrap().pop().unwrap();
        check_invariants(&tl);
        let tails: Vec<String> = calls(&tl.body, &syms)
            .into_iter()
            .filter(|(_, t)| *t)
            .map(|(f, _)| f)
            .collect();
        assert_eq!(tails, ["g:s"]);
        let src = "(lambda (x)
          (let ((y (b)))
            (c)
            (cond ((d) (e))
                  ((f) => g)
                  ((h))
                  (else (when (i) (j))
                        (unless (k) (l))
                        (case (m) ((1) (n)) ((2) => o) (else (and (p) (q))))))))";
        let tl = compile_src(src, &mut syms).unwrap().pop().unwrap();
        let all = calls(&tl.body, &syms);
        let tails: Vec<&str> = all
            .iter()
            .filter(|(_, t)| *t)
            .map(|(f, _)| f.as_str())
            .collect();
        assert_eq!(tails, ["g:e", "g:g", "g:n", "g:o", "g:q"]);
        let non_tails: Vec<&str> = all
            .iter()
            .filter(|(_, t)| !*t)
            .map(|(f, _)| f.as_str())
            .collect();
        assert_eq!(
            non_tails,
            ["g:b", "g:c", "g:d", "g:f", "g:h", "g:i", "g:j", "g:k", "g:l", "g:m", "g:p"]
        );
        // `(cond ((h)) ...)` with more clauses: `h` is not a tail call; as last clause it is.
        let tl = compile_src("(lambda () (cond ((h))))", &mut syms)
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(calls(&tl.body, &syms), [("g:h".to_string(), true)]);
        // Inside `do`, only the loop call and the result are tail calls.
        let tl = compile_src("(lambda () (do ((i 0 (f i))) ((g i) (h)) (k)))", &mut syms)
            .unwrap()
            .pop()
            .unwrap();
        let all = calls(&tl.body, &syms);
        let tails: Vec<&str> = all
            .iter()
            .filter(|(_, t)| *t)
            .map(|(f, _)| f.as_str())
            .collect();
        assert_eq!(tails, ["g:h", "l1.0", "l0.0"]);
    }

    #[test]
    fn call_sites_keep_spans() {
        let tl = c1("(define (f)\n  (g 1\n     (h)))");
        let mut spans = Vec::new();
        walk(&tl.body, &mut |e| {
            if let Expr::Call { span, .. } = e {
                spans.push((span.line, span.col, span.len));
            }
        });
        assert_eq!(spans, [(2, 3, 14), (3, 6, 3)]);
    }

    // ---- lexical addressing ----

    #[test]
    fn nested_lambdas_address_outward() {
        assert_eq!(
            c("(lambda (a) (lambda (b) (lambda (c) (list a b c))))"),
            "(lambda _ n=1 frame=1 (lambda _ n=1 frame=1 (lambda _ n=1 frame=1 \
             (tail g:list l2.0 l1.0 l0.0))))"
        );
        assert_eq!(
            c("(lambda (a) (let ((b 1)) (lambda (c) (let ((d 2)) (list a b c d)))))"),
            "(lambda _ n=1 frame=2 (seq (set! l0.1 '1) (lambda _ n=1 frame=2 \
             (seq (set! l0.1 '2) (tail g:list l1.0 l1.1 l0.0 l0.1)))))"
        );
        // Inner bindings shadow outer ones.
        assert_eq!(
            c("(lambda (x) (lambda (x) x))"),
            "(lambda _ n=1 frame=1 (lambda _ n=1 frame=1 l0.0))"
        );
        // A top-level let's frame is the outermost frame of its lambdas.
        let tl = c1("(let ((x 1)) (lambda () x))");
        assert_eq!(tl.frame_size, 1);
        assert_eq!(
            tl.body.show(&SymbolTable::new()),
            "(seq (set! l0.0 '1) (lambda _ n=0 frame=0 l1.0))"
        );
        // Without a top-level let, the top-level frame is empty but still counted.
        let tl = c1("(define (f x) (lambda () x))");
        assert_eq!(tl.frame_size, 0);
        check_invariants(&tl);
    }

    #[test]
    fn shadowed_keywords_are_variables() {
        assert_eq!(
            c("(lambda (if) (if 1 2))"),
            "(lambda _ n=1 frame=1 (tail l0.0 '1 '2))"
        );
        assert_eq!(
            c("(let ((define list)) (define x 1))"),
            "(seq (set! l0.0 g:list) (call l0.0 g:x '1))"
        );
        assert_eq!(
            c("(lambda (begin) (begin 1))"),
            "(lambda _ n=1 frame=1 (tail l0.0 '1))"
        );
        assert_eq!(
            c("(lambda (quote) 'x)"),
            "(lambda _ n=1 frame=1 (tail l0.0 g:x))"
        );
        assert_eq!(
            c("(lambda (=>) (cond (a => b)))"),
            "(lambda _ n=1 frame=1 (if g:a (seq l0.0 g:b) #<unspecified>))"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        // The deepest data the reader accepts compile on half of a test thread's default
        // 2 MiB stack, even in a debug build.
        let depth = crate::reader::MAX_DEPTH;
        let nest = |open: &str, leaf: &str, close: &str, n: usize| {
            format!("{}{leaf}{}", open.repeat(n), close.repeat(n))
        };
        let sources = [
            nest("(f ", "x", ")", depth),
            nest("(lambda () ", "x", ")", depth - 1), // `()` is one level deeper
            nest("(if ", "x", " 1 2)", depth),
            nest("(let ((x ", "x", ")) x)", depth / 3),
            nest("(begin ", "x", ")", depth),
            nest("'", "x", "", depth),
        ];
        let handle = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                let mut syms = SymbolTable::new();
                for src in &sources {
                    compile_src(src, &mut syms).unwrap();
                }
            })
            .unwrap();
        handle.join().unwrap();
        // Deeper data built by hand are rejected by the compiler's own limit.
        let span = Span {
            file: Arc::from("gen"),
            line: 1,
            col: 1,
            offset: 0,
            len: 0,
        };
        let mut d = Datum::new(DatumKind::Symbol("x".into()), span.clone());
        for _ in 0..MAX_NESTING + 10 {
            let f = Datum::new(DatumKind::Symbol("f".into()), span.clone());
            d = Datum::new(DatumKind::List(vec![f, d]), span.clone());
        }
        let handle = std::thread::Builder::new()
            .stack_size(8 << 20)
            .spawn(move || {
                let e = compile_toplevel(&d, &mut SymbolTable::new()).unwrap_err();
                assert!(e.message.contains("nested too deeply"));
            })
            .unwrap();
        handle.join().unwrap();
    }

    #[test]
    fn errors_display_with_position() {
        let e = compile_src("\n\n   (if)", &mut SymbolTable::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.scm:3:4: bad `if`: expected (if test then) or (if test then else)"
        );
    }

    // ---- never panic ----

    fn sexpr() -> impl Strategy<Value = String> {
        let leaf = prop::sample::select(vec![
            "x", "y", "f", "1", "#t", "\"s\"", "'a", "()", "#(1)", ".", "define", "lambda", "if",
            "set!", "let", "let*", "letrec", "letrec*", "begin", "cond", "case", "and", "or",
            "when", "unless", "do", "quote", "else", "=>", "`x", "(x)", "(x y)", "(x . y)",
        ])
        .prop_map(String::from);
        leaf.prop_recursive(6, 80, 6, |inner| {
            prop::collection::vec(inner, 0..6).prop_map(|v| format!("({})", v.join(" ")))
        })
    }

    /// Well-formed expressions over every special form, with a few shared variable names so
    /// that shadowing and lexical addressing are exercised.
    fn valid_expr() -> impl Strategy<Value = String> {
        let var = || prop::sample::select(vec!["a", "b", "c", "x"]);
        let leaf = prop_oneof![
            var().prop_map(String::from),
            prop::sample::select(vec!["1", "#t", "'(p q)", "\"s\"", "#\\a", "2.5", "car"])
                .prop_map(String::from),
        ];
        leaf.prop_recursive(5, 48, 3, move |e| {
            let e2 = (e.clone(), e.clone());
            let e3 = (e.clone(), e.clone(), e.clone());
            prop_oneof![
                e3.clone().prop_map(|(a, b, c)| format!("(if {a} {b} {c})")),
                (e.clone(), e.clone()).prop_map(|(a, b)| format!("(if {a} {b})")),
                (var(), e2.clone()).prop_map(|(v, (a, b))| format!("(lambda ({v}) {a} {b})")),
                (var(), e.clone()).prop_map(|(v, a)| format!("(lambda {v} {a})")),
                (var(), e.clone()).prop_map(|(v, a)| format!("(lambda ({v} . r) r {a})")),
                (var(), e2.clone()).prop_map(|(v, (a, b))| format!("(let (({v} {a})) {b})")),
                (var(), e2.clone())
                    .prop_map(|(v, (a, b))| format!("(let* (({v} {a}) (y {v})) {b})")),
                (var(), e2.clone()).prop_map(|(v, (a, b))| format!("(letrec (({v} {a})) {b})")),
                (var(), e2.clone()).prop_map(|(v, (a, b))| format!("(letrec* (({v} {a})) {b})")),
                (var(), e2.clone())
                    .prop_map(|(v, (a, b))| format!("(let lp (({v} {a})) (lp {b}))")),
                e3.clone().prop_map(|(a, b, c)| format!(
                    "(cond ({a} {b}) ({c} => car) ({a}) (else {b}))"
                )),
                e3.clone().prop_map(|(a, b, c)| format!(
                    "(case {a} ((1 z) {b}) ((2) => {c}) (else {b}))"
                )),
                e2.clone().prop_map(|(a, b)| format!("(and {a} {b})")),
                e2.clone().prop_map(|(a, b)| format!("(or {a} {b})")),
                e2.clone().prop_map(|(a, b)| format!("(when {a} {b})")),
                e2.clone().prop_map(|(a, b)| format!("(unless {a} {b})")),
                (var(), e.clone()).prop_map(|(v, a)| format!("(set! {v} {a})")),
                e2.clone().prop_map(|(a, b)| format!("(begin {a} {b})")),
                (var(), e3.clone())
                    .prop_map(|(v, (a, b, c))| format!("(do (({v} {a} {b}) (i 0)) ({c} {v}) {a})")),
                e3.clone().prop_map(|(a, b, c)| format!("({a} {b} {c})")),
                e3.prop_map(|(a, b, c)| {
                    format!("(lambda () (define d1 {a}) {b} (define (d2 q) d1 {c}) (d2 d1))")
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn well_formed_programs_compile(body in valid_expr(), toplevel in any::<bool>()) {
            let src = if toplevel { format!("(define (g a b) {body})") } else { body };
            let data = read_all("ok", &src).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut syms = SymbolTable::new();
            for d in &data {
                let tl = compile_toplevel(d, &mut syms)
                    .map_err(|e| TestCaseError::fail(format!("{src}: {e}")))?;
                check_invariants(&tl);
            }
        }

        #[test]
        fn random_forms_compile_or_error_without_panicking(forms in prop::collection::vec(sexpr(), 1..4)) {
            let src = forms.join("\n");
            let Ok(data) = read_all("fz", &src) else { return Ok(()) };
            let mut syms = SymbolTable::new();
            for d in &data {
                match compile_toplevel(d, &mut syms) {
                    Ok(tl) => check_invariants(&tl),
                    Err(e) => {
                        prop_assert!(e.span.end() <= src.len());
                        prop_assert!(!e.message.is_empty());
                    }
                }
            }
        }

        #[test]
        fn random_bytes_compile_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..120)) {
            let src = String::from_utf8_lossy(&bytes);
            if let Ok(data) = read_all("fz", &src) {
                let mut syms = SymbolTable::new();
                for d in &data {
                    if let Ok(tl) = compile_toplevel(d, &mut syms) {
                        check_invariants(&tl);
                    }
                }
            }
        }
    }
}

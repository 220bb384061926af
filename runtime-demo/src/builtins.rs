//! Primitive procedures.
//!
//! A primitive is a Rust function called with its arguments on the VM's value stack
//! (`stack[base..base + argc]`); it returns one value, and the VM pops the arguments. The
//! table [`PRIMS`] gives each one its name and arity, which the VM checks before the call.
//! Primitives work on the machine state of [`crate::machine`] and never import the interpreter
//! ([`crate::vm`]), which dispatches to them through [`PRIMS`]; [`fast_code`] / [`fast_path`]
//! are the inline fast paths of hot primitives (the compiler gets the codes through the VM's
//! lookup). The printer's view of a [`Vm`] ([`PrintEnv`]) is implemented here, since primitive
//! names come from [`PRIMS`].
//!
//! Invariants:
//! - A primitive that allocates re-reads its arguments from the stack after every allocation
//!   and keeps intermediate results on the stack (`push` before the next allocation): it never
//!   holds a reference in a Rust variable across a safepoint.
//! - Primitives never call back into Scheme code (higher-order procedures such as `map` are
//!   written in Scheme in the prelude; `apply` is handled by the VM's call path), so the VM
//!   never recurses in Rust.
//! - Traversals of possibly circular data are bounded by [`value::list_limit`] (more pairs
//!   than the heap can hold means a cycle) or by [`MAX_DEPTH`], so a primitive always
//!   terminates.
//! - Numbers: fixnums (61-bit) and flonums only. Exact integer operations that overflow the
//!   fixnum range return flonums; `/` of exact integers that do not divide evenly returns a
//!   flonum (there are no rationals); exact division by zero is an error.

use std::cmp::Ordering;

use faultline::{Heap, Mutator, Value};

use crate::error::{ErrorKind, RtError, R};
use crate::machine::Vm;
use crate::printer::{self, format_float, PrintEnv};
use crate::symbols::SymbolId;
use crate::value::{
    self, as_char, as_prim, as_symbol, boolean, character, fix, is_fix, unfix, Types, FALSE,
    MAX_DEPTH, NIL, TRUE, UNSPEC,
};

/// A primitive's implementation.
pub type PrimFn = fn(&mut Vm, usize, usize) -> R<Value>;

/// Variadic marker for [`PrimDef::max`].
pub const MANY: u16 = u16::MAX;

/// A primitive.
pub struct PrimDef {
    /// The name it is bound to as a global.
    pub name: &'static str,
    /// Minimum number of arguments.
    pub min: u16,
    /// Maximum number of arguments ([`MANY`]: no maximum).
    pub max: u16,
    /// Handled by the VM itself (not callable through `PrimCall`).
    pub special: bool,
    /// The implementation.
    pub f: PrimFn,
}

const fn p(name: &'static str, min: u16, max: u16, f: PrimFn) -> PrimDef {
    PrimDef {
        name,
        min,
        max,
        special: false,
        f,
    }
}

/// Checks the argument count of a primitive call.
#[inline]
pub fn check_arity(def: &PrimDef, argc: usize) -> R<()> {
    if argc < def.min as usize || (def.max != MANY && argc > def.max as usize) {
        let expects = if def.max == MANY {
            format!("at least {}", def.min)
        } else if def.min == def.max {
            format!("{}", def.min)
        } else {
            format!("{} to {}", def.min, def.max)
        };
        let plural = if def.min == 1 && def.max == 1 {
            ""
        } else {
            "s"
        };
        return Err(RtError::new(format!(
            "wrong number of arguments: `{}` expects {expects} argument{plural}, got {argc}",
            def.name
        )));
    }
    Ok(())
}

/// Calls primitive `idx` after checking its arity.
#[inline]
pub fn call_prim(vm: &mut Vm, idx: usize, base: usize, argc: usize) -> R<Value> {
    let def = &PRIMS[idx];
    check_arity(def, argc)?;
    (def.f)(vm, base, argc)
}

/// The inline fast path of primitive `idx` called with `argc` arguments (0: none). The code
/// is stored in `PrimCall` ops; [`fast_path`] runs it.
pub fn fast_code(idx: usize, argc: usize) -> u8 {
    let name = PRIMS.get(idx).map_or("", |p| p.name);
    match (name, argc) {
        ("car", 1) => 1,
        ("cdr", 1) => 2,
        ("cons", 2) => 3,
        ("null?", 1) => 4,
        ("pair?", 1) => 5,
        ("not", 1) => 6,
        ("eq?", 2) => 7,
        ("+", 2) => 8,
        ("-", 2) => 9,
        ("<", 2) => 10,
        (">", 2) => 11,
        ("=", 2) => 12,
        ("<=", 2) => 13,
        (">=", 2) => 14,
        _ => 0,
    }
}

/// Runs the inline fast path `code` on the arguments at `stack[base..]`; `None` when it does
/// not apply (wrong types, overflow, an allocation failure): the caller then runs the full
/// primitive, which also produces the error message.
#[inline]
pub fn fast_path(vm: &mut Vm, code: u8, base: usize) -> Option<Value> {
    let a = || arg(vm, base, 0);
    match code {
        0 => None,
        1 | 2 => {
            let l = vm.m.obj(a(), &vm.shared.types.lay.pair)?;
            // SAFETY: `code - 1` is 0 or 1, a reference slot of a pair (the pair layout,
            // checked in `Types::register`), and `l` was validated as a pair.
            Some(unsafe { l.get_unchecked((code - 1) as usize) })
        }
        3 => {
            let p = vm.m.alloc(vm.shared.types.pair, 0).ok()?;
            let l = vm.m.obj(p, &vm.shared.types.lay.pair)?;
            // SAFETY: words 0 and 1 of a pair are reference slots (the pair layout, checked in
            // `Types::register`); both values are read from the value stack after the
            // allocation, the last safepoint.
            unsafe {
                l.set_unchecked(0, arg(vm, base, 0));
                l.set_unchecked(1, arg(vm, base, 1));
            }
            Some(p)
        }
        4 => Some(boolean(a() == NIL)),
        5 => Some(boolean(vm.m.type_of(a()) == Some(vm.shared.types.pair))),
        6 => Some(boolean(a() == FALSE)),
        7 => Some(boolean(a() == arg(vm, base, 1))),
        _ => {
            let (x, y) = (arg(vm, base, 0), arg(vm, base, 1));
            if !(is_fix(x) && is_fix(y)) {
                return None;
            }
            let (bx, by) = (x.bits() as i64, y.bits() as i64);
            Some(match code {
                8 => value::imm((bx - 1).checked_add(by)? as usize),
                9 => value::imm(bx.checked_sub(by - 1)? as usize),
                10 => boolean(bx < by),
                11 => boolean(bx > by),
                12 => boolean(bx == by),
                13 => boolean(bx <= by),
                _ => boolean(bx >= by),
            })
        }
    }
}

/// More pairs than the heap can hold (see [`value::list_limit`]): a longer traversal is a cycle.
#[inline]
fn list_limit(vm: &Vm) -> usize {
    value::list_limit(vm.heap())
}

#[inline]
fn arg(vm: &Vm, base: usize, i: usize) -> Value {
    vm.m.stack_get(base + i)
}

fn describe(vm: &Vm, v: Value) -> String {
    let mut s = printer::to_string(vm, v, true);
    if s.len() > 60 {
        let mut cut = 57;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn type_err(vm: &Vm, who: &str, expected: &str, v: Value) -> RtError {
    RtError::new(format!(
        "{who}: expected {expected}, got {}",
        describe(vm, v)
    ))
}

// ---------------------------------------------------------------------------------------------
// Numbers

#[derive(Clone, Copy, Debug)]
enum Num {
    I(i64),
    F(f64),
}

impl Num {
    fn f(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::F(x) => x,
        }
    }
}

fn flonum(vm: &Vm, v: Value) -> Option<f64> {
    let l = vm.m.obj(v, &vm.shared.types.lay.flonum)?;
    Some(f64::from_bits(l.word(0)))
}

fn num_of(vm: &Vm, v: Value) -> Option<Num> {
    if is_fix(v) {
        Some(Num::I(unfix(v)))
    } else {
        flonum(vm, v).map(Num::F)
    }
}

fn num(vm: &Vm, who: &str, v: Value) -> R<Num> {
    num_of(vm, v).ok_or_else(|| type_err(vm, who, "a number", v))
}

fn int(vm: &Vm, who: &str, v: Value) -> R<i64> {
    if is_fix(v) {
        Ok(unfix(v))
    } else {
        Err(type_err(vm, who, "an exact integer", v))
    }
}

fn index(vm: &Vm, who: &str, v: Value) -> R<usize> {
    if is_fix(v) && unfix(v) >= 0 {
        Ok(unfix(v) as usize)
    } else {
        Err(type_err(vm, who, "a non-negative exact integer", v))
    }
}

fn make_num(vm: &mut Vm, n: Num) -> R<Value> {
    match n {
        Num::I(i) => vm.make_int(i),
        Num::F(x) => vm.make_float(x),
    }
}

fn arith(vm: &mut Vm, who: &str, base: usize, argc: usize, op: u8) -> R<Value> {
    let mut acc = if argc == 0 {
        Num::I(if op == b'*' { 1 } else { 0 })
    } else {
        num(vm, who, arg(vm, base, 0))?
    };
    if argc == 1 && op == b'-' {
        acc = match acc {
            Num::I(i) => i.checked_neg().map_or(Num::F(-(i as f64)), Num::I),
            Num::F(x) => Num::F(-x),
        };
    }
    for i in 1..argc {
        let b = num(vm, who, arg(vm, base, i))?;
        acc = match (acc, b) {
            (Num::I(x), Num::I(y)) => {
                let r = match op {
                    b'+' => x.checked_add(y),
                    b'-' => x.checked_sub(y),
                    _ => x.checked_mul(y),
                };
                match r {
                    Some(r) => Num::I(r),
                    None => Num::F(match op {
                        b'+' => x as f64 + y as f64,
                        b'-' => x as f64 - y as f64,
                        _ => x as f64 * y as f64,
                    }),
                }
            }
            (x, y) => Num::F(match op {
                b'+' => x.f() + y.f(),
                b'-' => x.f() - y.f(),
                _ => x.f() * y.f(),
            }),
        };
    }
    make_num(vm, acc)
}

fn add(vm: &mut Vm, base: usize, argc: usize) -> R<Value> {
    // Fixnums only, any count: the tagged sum, one step per argument: (a<<3|1) + (b<<3|1) - 1
    // = (a+b)<<3|1, and an i64 overflow is a fixnum overflow. A partial sum that overflows or
    // a non-fixnum argument hands the whole call to `arith` (which promotes, or reports).
    let mut sum = value::fix(0).map_or(0, |z| z.bits() as i64);
    for i in 0..argc {
        let a = arg(vm, base, i);
        match (sum - 1).checked_add(a.bits() as i64) {
            Some(r) if is_fix(a) => sum = r,
            _ => return arith(vm, "+", base, argc, b'+'),
        }
    }
    Ok(value::imm(sum as usize))
}

fn sub(vm: &mut Vm, base: usize, argc: usize) -> R<Value> {
    if argc == 2 {
        let (a, b) = (arg(vm, base, 0), arg(vm, base, 1));
        if is_fix(a) && is_fix(b) {
            if let Some(r) = (a.bits() as i64).checked_sub(b.bits() as i64 - 1) {
                return Ok(value::imm(r as usize));
            }
        }
    }
    arith(vm, "-", base, argc, b'-')
}

fn mul(vm: &mut Vm, base: usize, argc: usize) -> R<Value> {
    arith(vm, "*", base, argc, b'*')
}

fn div(vm: &mut Vm, base: usize, argc: usize) -> R<Value> {
    let first = num(vm, "/", arg(vm, base, 0))?;
    let (mut acc, start) = if argc == 1 {
        (Num::I(1), 0)
    } else {
        (first, 1)
    };
    for i in start..argc {
        let d = num(vm, "/", arg(vm, base, i))?;
        acc = match (acc, d) {
            (_, Num::I(0)) => return Err(RtError::new("/: division by zero")),
            (Num::I(x), Num::I(y)) if x.checked_rem(y) == Some(0) => {
                x.checked_div(y).map_or(Num::F(x as f64 / y as f64), Num::I)
            }
            (x, y) => Num::F(x.f() / y.f()),
        };
    }
    make_num(vm, acc)
}

fn int_div(vm: &mut Vm, base: usize, who: &str, kind: u8) -> R<Value> {
    let a = num(vm, who, arg(vm, base, 0))?;
    let b = num(vm, who, arg(vm, base, 1))?;
    let integral = |n: Num| match n {
        Num::I(_) => true,
        Num::F(x) => x.fract() == 0.0 && x.is_finite(),
    };
    if !integral(a) {
        return Err(type_err(vm, who, "an integer", arg(vm, base, 0)));
    }
    if !integral(b) {
        return Err(type_err(vm, who, "an integer", arg(vm, base, 1)));
    }
    match (a, b) {
        (Num::I(_), Num::I(0)) => Err(RtError::new(format!("{who}: division by zero"))),
        (Num::I(x), Num::I(y)) => {
            let r = match kind {
                b'q' => x.checked_div(y),
                b'r' => x.checked_rem(y),
                _ => x.checked_rem(y).map(|r| {
                    if r != 0 && (r < 0) != (y < 0) {
                        r + y
                    } else {
                        r
                    }
                }),
            };
            match r {
                Some(r) => vm.make_int(r),
                None => vm.make_float(if kind == b'q' { -(x as f64) } else { 0.0 }),
            }
        }
        (x, y) => {
            let (x, y) = (x.f(), y.f());
            if y == 0.0 {
                return Err(RtError::new(format!("{who}: division by zero")));
            }
            let r = match kind {
                b'q' => (x / y).trunc(),
                b'r' => x % y,
                _ => {
                    let r = x % y;
                    if r != 0.0 && (r < 0.0) != (y < 0.0) {
                        r + y
                    } else {
                        r
                    }
                }
            };
            vm.make_float(r)
        }
    }
}

fn quotient(vm: &mut Vm, base: usize, _: usize) -> R<Value> {
    int_div(vm, base, "quotient", b'q')
}
fn remainder(vm: &mut Vm, base: usize, _: usize) -> R<Value> {
    int_div(vm, base, "remainder", b'r')
}
fn modulo(vm: &mut Vm, base: usize, _: usize) -> R<Value> {
    int_div(vm, base, "modulo", b'm')
}

fn cmp_nums(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::I(x), Num::I(y)) => Some(x.cmp(&y)),
        (x, y) => x.f().partial_cmp(&y.f()),
    }
}

fn compare(vm: &mut Vm, who: &str, base: usize, argc: usize, ok: fn(Ordering) -> bool) -> R<Value> {
    if argc == 2 {
        let (a, b) = (arg(vm, base, 0), arg(vm, base, 1));
        if is_fix(a) && is_fix(b) {
            return Ok(boolean(ok(unfix(a).cmp(&unfix(b)))));
        }
    }
    let mut result = true;
    let mut prev = num(vm, who, arg(vm, base, 0))?;
    for i in 1..argc {
        let n = num(vm, who, arg(vm, base, i))?;
        if !cmp_nums(prev, n).is_some_and(ok) {
            result = false;
        }
        prev = n;
    }
    Ok(boolean(result))
}

fn num_eq(vm: &mut Vm, b: usize, n: usize) -> R<Value> {
    compare(vm, "=", b, n, |o| o == Ordering::Equal)
}
fn num_lt(vm: &mut Vm, b: usize, n: usize) -> R<Value> {
    compare(vm, "<", b, n, |o| o == Ordering::Less)
}
fn num_gt(vm: &mut Vm, b: usize, n: usize) -> R<Value> {
    compare(vm, ">", b, n, |o| o == Ordering::Greater)
}
fn num_le(vm: &mut Vm, b: usize, n: usize) -> R<Value> {
    compare(vm, "<=", b, n, |o| o != Ordering::Greater)
}
fn num_ge(vm: &mut Vm, b: usize, n: usize) -> R<Value> {
    compare(vm, ">=", b, n, |o| o != Ordering::Less)
}

fn minmax(vm: &mut Vm, base: usize, argc: usize, who: &str, want: Ordering) -> R<Value> {
    let mut best = num(vm, who, arg(vm, base, 0))?;
    let mut inexact = matches!(best, Num::F(_));
    for i in 1..argc {
        let n = num(vm, who, arg(vm, base, i))?;
        inexact |= matches!(n, Num::F(_));
        if cmp_nums(n, best) == Some(want) || n.f().is_nan() {
            best = n;
        }
    }
    if inexact {
        best = Num::F(best.f());
    }
    make_num(vm, best)
}
fn min(vm: &mut Vm, b: usize, n: usize) -> R<Value> {
    minmax(vm, b, n, "min", Ordering::Less)
}
fn max(vm: &mut Vm, b: usize, n: usize) -> R<Value> {
    minmax(vm, b, n, "max", Ordering::Greater)
}

fn abs(vm: &mut Vm, base: usize, _: usize) -> R<Value> {
    match num(vm, "abs", arg(vm, base, 0))? {
        Num::I(i) => vm.make_int(i.abs()),
        Num::F(x) => vm.make_float(x.abs()),
    }
}

fn float_fn(vm: &mut Vm, base: usize, who: &str, f: fn(f64) -> f64) -> R<Value> {
    let x = num(vm, who, arg(vm, base, 0))?.f();
    vm.make_float(f(x))
}

fn sqrt(vm: &mut Vm, base: usize, _: usize) -> R<Value> {
    let n = num(vm, "sqrt", arg(vm, base, 0))?;
    if let Num::I(i) = n {
        if i >= 0 {
            let r = (i as f64).sqrt() as i64;
            for c in [r - 1, r, r + 1] {
                if c >= 0 && c.checked_mul(c) == Some(i) {
                    return vm.make_int(c);
                }
            }
        }
    }
    let x = n.f();
    if x < 0.0 {
        return Err(RtError::new(format!(
            "sqrt: negative argument {} (no complex numbers)",
            describe(vm, arg(vm, base, 0))
        )));
    }
    vm.make_float(x.sqrt())
}

fn expt(vm: &mut Vm, base: usize, _: usize) -> R<Value> {
    let a = num(vm, "expt", arg(vm, base, 0))?;
    let b = num(vm, "expt", arg(vm, base, 1))?;
    if let (Num::I(x), Num::I(y)) = (a, b) {
        if y >= 0 {
            if let Some(r) = u32::try_from(y).ok().and_then(|y| x.checked_pow(y)) {
                return vm.make_int(r);
            }
        }
    }
    vm.make_float(a.f().powf(b.f()))
}

fn exp(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    float_fn(vm, b, "exp", f64::exp)
}
fn log(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    float_fn(vm, b, "log", f64::ln)
}
fn sin(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    float_fn(vm, b, "sin", f64::sin)
}
fn cos(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    float_fn(vm, b, "cos", f64::cos)
}
fn tan(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    float_fn(vm, b, "tan", f64::tan)
}
fn atan(vm: &mut Vm, base: usize, argc: usize) -> R<Value> {
    let y = num(vm, "atan", arg(vm, base, 0))?.f();
    if argc == 2 {
        let x = num(vm, "atan", arg(vm, base, 1))?.f();
        return vm.make_float(y.atan2(x));
    }
    vm.make_float(y.atan())
}

fn rounding(vm: &mut Vm, base: usize, who: &str, f: fn(f64) -> f64) -> R<Value> {
    match num(vm, who, arg(vm, base, 0))? {
        Num::I(i) => vm.make_int(i),
        Num::F(x) => vm.make_float(f(x)),
    }
}
fn floor(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    rounding(vm, b, "floor", f64::floor)
}
fn ceiling(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    rounding(vm, b, "ceiling", f64::ceil)
}
fn round(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    rounding(vm, b, "round", f64::round_ties_even)
}
fn truncate(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    rounding(vm, b, "truncate", f64::trunc)
}

fn to_inexact(vm: &mut Vm, base: usize, _: usize) -> R<Value> {
    let x = num(vm, "exact->inexact", arg(vm, base, 0))?.f();
    vm.make_float(x)
}

fn to_exact(vm: &mut Vm, base: usize, _: usize) -> R<Value> {
    match num(vm, "inexact->exact", arg(vm, base, 0))? {
        Num::I(i) => vm.make_int(i),
        Num::F(x) => {
            if x.fract() == 0.0 && x.abs() < 1.15e18 {
                if let Some(v) = fix(x as i64) {
                    return Ok(v);
                }
            }
            Err(RtError::new(format!(
                "inexact->exact: {} has no exact fixnum equivalent",
                describe(vm, arg(vm, base, 0))
            )))
        }
    }
}

fn pred_num(vm: &Vm, base: usize, f: fn(Num) -> bool) -> Value {
    boolean(num_of(vm, arg(vm, base, 0)).is_some_and(f))
}
fn is_number(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    Ok(pred_num(vm, b, |_| true))
}
fn is_integer(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    Ok(pred_num(vm, b, |n| match n {
        Num::I(_) => true,
        Num::F(x) => x.is_finite() && x.fract() == 0.0,
    }))
}
fn is_exact(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let n = num(vm, "exact?", arg(vm, b, 0))?;
    Ok(boolean(matches!(n, Num::I(_))))
}
fn is_inexact(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let n = num(vm, "inexact?", arg(vm, b, 0))?;
    Ok(boolean(matches!(n, Num::F(_))))
}
fn sign_test(vm: &mut Vm, b: usize, who: &str, want: Ordering) -> R<Value> {
    let n = num(vm, who, arg(vm, b, 0))?;
    Ok(boolean(cmp_nums(n, Num::I(0)) == Some(want)))
}
fn is_zero(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    sign_test(vm, b, "zero?", Ordering::Equal)
}
fn is_positive(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    sign_test(vm, b, "positive?", Ordering::Greater)
}
fn is_negative(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    sign_test(vm, b, "negative?", Ordering::Less)
}
fn parity(vm: &mut Vm, b: usize, who: &str) -> R<i64> {
    match num(vm, who, arg(vm, b, 0))? {
        Num::I(i) => Ok(i.rem_euclid(2)),
        Num::F(x) if x.is_finite() && x.fract() == 0.0 => Ok(x.rem_euclid(2.0) as i64),
        _ => Err(type_err(vm, who, "an integer", arg(vm, b, 0))),
    }
}
fn is_odd(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    Ok(boolean(parity(vm, b, "odd?")? == 1))
}
fn is_even(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    Ok(boolean(parity(vm, b, "even?")? == 0))
}

fn gcd2(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}
fn gcd(vm: &mut Vm, base: usize, argc: usize) -> R<Value> {
    let mut g = 0;
    for i in 0..argc {
        g = gcd2(g, int(vm, "gcd", arg(vm, base, i))?);
    }
    vm.make_int(g)
}
fn lcm(vm: &mut Vm, base: usize, argc: usize) -> R<Value> {
    let mut l: i64 = 1;
    for i in 0..argc {
        let x = int(vm, "lcm", arg(vm, base, i))?;
        if x == 0 {
            return Ok(value::imm(value::TAG_FIX));
        }
        let g = gcd2(l, x);
        l = match (l / g).checked_mul(x.abs()) {
            Some(v) => v,
            None => return vm.make_float((l / g) as f64 * x.abs() as f64),
        };
    }
    vm.make_int(l)
}

fn number_to_string(vm: &mut Vm, base: usize, argc: usize) -> R<Value> {
    let n = num(vm, "number->string", arg(vm, base, 0))?;
    let radix = if argc == 2 {
        int(vm, "number->string", arg(vm, base, 1))?
    } else {
        10
    };
    let s = match (n, radix) {
        (Num::I(i), 10) => i.to_string(),
        (Num::I(i), 2 | 8 | 16) => {
            let digits = match radix {
                2 => format!("{:b}", i.unsigned_abs()),
                8 => format!("{:o}", i.unsigned_abs()),
                _ => format!("{:x}", i.unsigned_abs()),
            };
            if i < 0 {
                format!("-{digits}")
            } else {
                digits
            }
        }
        (Num::F(x), 10) => format_float(x),
        _ => return Err(RtError::new("number->string: radix must be 2, 8, 10 or 16")),
    };
    vm.make_string(&s)
}

fn string_to_number(vm: &mut Vm, base: usize, _: usize) -> R<Value> {
    let s = string(vm, "string->number", arg(vm, base, 0))?;
    let d = crate::reader::read_all("<string>", &s);
    match d.as_deref() {
        Ok([d]) => match d.kind {
            crate::reader::DatumKind::Fixnum(i) => vm.make_int(i),
            crate::reader::DatumKind::Float(x) => vm.make_float(x),
            _ => Ok(FALSE),
        },
        _ => Ok(FALSE),
    }
}

// ---------------------------------------------------------------------------------------------
// Equivalence

/// `eqv?`: identity, or equal flonums (bitwise).
pub fn eqv(vm: &Vm, a: Value, b: Value) -> bool {
    if a == b {
        return true;
    }
    match (flonum(vm, a), flonum(vm, b)) {
        (Some(x), Some(y)) => x.to_bits() == y.to_bits(),
        _ => false,
    }
}

/// `equal?`: structural equality of pairs, vectors and strings; `eqv?` otherwise.
pub fn equal(vm: &Vm, a: Value, b: Value) -> R<bool> {
    let mut budget = list_limit(vm);
    equal_rec(vm, a, b, 0, &mut budget)
}

fn equal_rec(vm: &Vm, mut a: Value, mut b: Value, depth: usize, budget: &mut usize) -> R<bool> {
    if depth > MAX_DEPTH {
        return Err(RtError::new("equal?: structure nested too deeply"));
    }
    let t = &vm.shared.types;
    loop {
        if eqv(vm, a, b) {
            return Ok(true);
        }
        *budget = budget
            .checked_sub(1)
            .ok_or_else(|| RtError::new("equal?: circular structure"))?;
        let (Some(la), Some(lb)) = (vm.m.local(a), vm.m.local(b)) else {
            return Ok(false);
        };
        if la.type_id() != lb.type_id() {
            return Ok(false);
        }
        let ty = la.type_id();
        if ty == t.pair {
            if !equal_rec(vm, la.get(0), lb.get(0), depth + 1, budget)? {
                return Ok(false);
            }
            a = la.get(1);
            b = lb.get(1);
        } else if ty == t.string {
            return Ok(la.to_bytes() == lb.to_bytes());
        } else if ty == t.vector {
            if la.len() != lb.len() {
                return Ok(false);
            }
            for i in 0..la.len() {
                if !equal_rec(vm, la.get(i), lb.get(i), depth + 1, budget)? {
                    return Ok(false);
                }
            }
            return Ok(true);
        } else {
            return Ok(false);
        }
    }
}

fn eq_p(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    Ok(boolean(arg(vm, b, 0) == arg(vm, b, 1)))
}
/// `(eq-hash obj)`: a non-negative fixnum, equal for `eq?` objects and stable while the object
/// lives, however often the collector moves it (the heap's identity hash; immediates hash
/// their bits).
fn eq_hash(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let v = arg(vm, b, 0);
    let h = match vm.m.identity_hash(v) {
        Some(h) => h,
        None => (v.bits() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    };
    Ok(fix((h >> 8) as i64).expect("56 bits fit a fixnum"))
}
fn eqv_p(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    Ok(boolean(eqv(vm, arg(vm, b, 0), arg(vm, b, 1))))
}
fn equal_p(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    Ok(boolean(equal(vm, arg(vm, b, 0), arg(vm, b, 1))?))
}
fn not(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    Ok(boolean(arg(vm, b, 0) == FALSE))
}

fn has_type(vm: &Vm, v: Value, ty: faultline::TypeId) -> bool {
    vm.type_of(v) == Some(ty)
}

fn is_boolean(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let v = arg(vm, b, 0);
    Ok(boolean(v == TRUE || v == FALSE))
}
fn is_symbol(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    Ok(boolean(as_symbol(arg(vm, b, 0)).is_some()))
}
fn is_string(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    Ok(boolean(has_type(vm, arg(vm, b, 0), vm.shared.types.string)))
}
fn is_char(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    Ok(boolean(as_char(arg(vm, b, 0)).is_some()))
}
fn is_vector(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    Ok(boolean(has_type(vm, arg(vm, b, 0), vm.shared.types.vector)))
}
fn is_pair(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    Ok(boolean(has_type(vm, arg(vm, b, 0), vm.shared.types.pair)))
}
fn is_null(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    Ok(boolean(arg(vm, b, 0) == NIL))
}
fn is_procedure(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let v = arg(vm, b, 0);
    Ok(boolean(
        as_prim(v).is_some() || has_type(vm, v, vm.shared.types.closure),
    ))
}
fn is_thread(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    Ok(boolean(has_type(vm, arg(vm, b, 0), vm.shared.types.thread)))
}

// ---------------------------------------------------------------------------------------------
// Pairs and lists

fn pair_field(vm: &Vm, who: &str, v: Value, i: usize) -> R<Value> {
    match vm.m.obj(v, &vm.shared.types.lay.pair) {
        Some(l) => Ok(l.get(i)),
        _ => Err(type_err(vm, who, "a pair", v)),
    }
}

fn cons(vm: &mut Vm, base: usize, _: usize) -> R<Value> {
    let p = vm.m.alloc(vm.shared.types.pair, 0)?;
    let l = vm.known(p, &vm.shared.types.lay.pair)?;
    l.set(0, arg(vm, base, 0));
    l.set(1, arg(vm, base, 1));
    Ok(p)
}
fn car(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    pair_field(vm, "car", arg(vm, b, 0), 0)
}
fn cdr(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    pair_field(vm, "cdr", arg(vm, b, 0), 1)
}

fn cxr(vm: &Vm, who: &str, v: Value, path: &[usize]) -> R<Value> {
    let mut v = v;
    for &i in path.iter().rev() {
        v = pair_field(vm, who, v, i)?;
    }
    Ok(v)
}
fn caar(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    cxr(vm, "caar", arg(vm, b, 0), &[0, 0])
}
fn cadr(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    cxr(vm, "cadr", arg(vm, b, 0), &[0, 1])
}
fn cdar(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    cxr(vm, "cdar", arg(vm, b, 0), &[1, 0])
}
fn cddr(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    cxr(vm, "cddr", arg(vm, b, 0), &[1, 1])
}
fn caddr(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    cxr(vm, "caddr", arg(vm, b, 0), &[0, 1, 1])
}
fn cdddr(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    cxr(vm, "cdddr", arg(vm, b, 0), &[1, 1, 1])
}
fn cadddr(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    cxr(vm, "cadddr", arg(vm, b, 0), &[0, 1, 1, 1])
}

fn set_field(vm: &mut Vm, base: usize, who: &str, i: usize) -> R<Value> {
    let v = arg(vm, base, 0);
    match vm.m.obj(v, &vm.shared.types.lay.pair) {
        Some(l) => {
            l.set(i, arg(vm, base, 1));
            Ok(UNSPEC)
        }
        _ => Err(type_err(vm, who, "a pair", v)),
    }
}
fn set_car(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    set_field(vm, b, "set-car!", 0)
}
fn set_cdr(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    set_field(vm, b, "set-cdr!", 1)
}

/// Builds a list from stack slots `from..to` (in order) with tail `NIL`; leaves the stack as
/// it was and returns the list.
fn list_from_stack(vm: &mut Vm, from: usize, to: usize) -> R<Value> {
    vm.m.push(NIL);
    for i in (from..to).rev() {
        let top = vm.m.stack_len() - 1;
        vm.m.push(vm.m.stack_get(i));
        vm.cons_at(top + 1, top)?;
    }
    Ok(vm.m.pop().unwrap_or(NIL))
}

fn list(vm: &mut Vm, base: usize, argc: usize) -> R<Value> {
    list_from_stack(vm, base, base + argc)
}

/// Pushes the elements of the proper list `v` onto the stack; returns their number.
fn spill_list(vm: &mut Vm, who: &str, v: Value) -> R<usize> {
    let limit = list_limit(vm);
    let mut n = 0;
    let mut cur = v;
    while cur != NIL {
        match vm.m.obj(cur, &vm.shared.types.lay.pair) {
            Some(l) => {
                vm.m.push(l.get(0));
                cur = l.get(1);
            }
            _ => return Err(type_err(vm, who, "a proper list", v)),
        }
        n += 1;
        if n > limit || vm.m.stack_len() > vm.shared.config.max_stack {
            return Err(RtError::new(format!("{who}: list too long or circular")));
        }
    }
    Ok(n)
}

/// The length of a proper list, or `None` for improper and circular ones.
fn list_length(vm: &Vm, v: Value) -> Option<usize> {
    let pair = vm.shared.types.lay.pair;
    let next = |x: Value| -> Option<Value> { Some(vm.m.obj(x, &pair)?.get(1)) };
    let (mut slow, mut fast, mut n) = (v, v, 0usize);
    loop {
        if fast == NIL {
            return Some(n);
        }
        fast = next(fast)?;
        n += 1;
        if fast == NIL {
            return Some(n);
        }
        fast = next(fast)?;
        n += 1;
        slow = next(slow)?;
        if fast == slow {
            return None;
        }
    }
}

fn length(vm: &mut Vm, base: usize, _: usize) -> R<Value> {
    let v = arg(vm, base, 0);
    match list_length(vm, v) {
        Some(n) => vm.make_int(n as i64),
        None => Err(type_err(vm, "length", "a proper list", v)),
    }
}
fn is_list(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    Ok(boolean(list_length(vm, arg(vm, b, 0)).is_some()))
}

fn append(vm: &mut Vm, base: usize, argc: usize) -> R<Value> {
    if argc == 0 {
        return Ok(NIL);
    }
    // Result accumulates on the stack top, built from the last list backwards.
    vm.m.push(arg(vm, base, argc - 1));
    for i in (0..argc - 1).rev() {
        let acc_at = vm.m.stack_len() - 1;
        let n = spill_list(vm, "append", arg(vm, base, i))?;
        // Stack: acc e0 .. e(n-1); cons from the back onto acc.
        vm.m.push(vm.m.stack_get(acc_at));
        for k in (0..n).rev() {
            let top = vm.m.stack_len() - 1;
            vm.m.push(vm.m.stack_get(acc_at + 1 + k));
            vm.cons_at(top + 1, top)?;
        }
        let r = vm.m.pop().unwrap_or(NIL);
        vm.m.stack_truncate(acc_at);
        vm.m.push(r);
    }
    Ok(vm.m.pop().unwrap_or(NIL))
}

fn reverse(vm: &mut Vm, base: usize, _: usize) -> R<Value> {
    let limit = list_limit(vm);
    // Stack: acc, cur.
    vm.m.push(NIL);
    vm.m.push(arg(vm, base, 0));
    let at = vm.m.stack_len() - 2;
    let mut n = 0;
    loop {
        let cur = vm.m.stack_get(at + 1);
        if cur == NIL {
            break;
        }
        let (head, next) = match vm.m.obj(cur, &vm.shared.types.lay.pair) {
            Some(l) => (l.get(0), l.get(1)),
            _ => return Err(type_err(vm, "reverse", "a proper list", arg(vm, base, 0))),
        };
        n += 1;
        if n > limit {
            return Err(RtError::new("reverse: circular list"));
        }
        vm.m.stack_set(at + 1, next);
        vm.m.push(head);
        vm.m.push(vm.m.stack_get(at));
        vm.cons_at(at + 2, at + 3)?;
        let p = vm.m.pop().unwrap_or(NIL);
        vm.m.stack_set(at, p);
    }
    let r = vm.m.stack_get(at);
    vm.m.stack_truncate(at);
    Ok(r)
}

fn list_tail_of(vm: &Vm, who: &str, base: usize) -> R<Value> {
    let k = index(vm, who, arg(vm, base, 1))?;
    let mut v = arg(vm, base, 0);
    for _ in 0..k {
        v = match vm.m.obj(v, &vm.shared.types.lay.pair) {
            Some(l) => l.get(1),
            _ => return Err(RtError::new(format!("{who}: index {k} is out of range"))),
        };
    }
    Ok(v)
}
fn list_tail(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    list_tail_of(vm, "list-tail", b)
}
fn list_ref(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let t = list_tail_of(vm, "list-ref", b)?;
    match vm.m.obj(t, &vm.shared.types.lay.pair) {
        Some(l) => Ok(l.get(0)),
        _ => Err(RtError::new(format!(
            "list-ref: index {} is out of range",
            describe(vm, arg(vm, b, 1))
        ))),
    }
}

fn mem_generic(vm: &mut Vm, base: usize, who: &str, kind: u8) -> R<Value> {
    let x = arg(vm, base, 0);
    let mut cur = arg(vm, base, 1);
    let limit = list_limit(vm);
    for _ in 0..limit {
        let Some(l) = vm.m.obj(cur, &vm.shared.types.lay.pair) else {
            return Ok(FALSE);
        };
        let hit = match kind {
            b'q' => l.get(0) == x,
            b'v' => eqv(vm, l.get(0), x),
            _ => equal(vm, l.get(0), x)?,
        };
        if hit {
            return Ok(cur);
        }
        cur = l.get(1);
    }
    Err(RtError::new(format!("{who}: circular list")))
}
fn memq(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    mem_generic(vm, b, "memq", b'q')
}
fn memv(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    mem_generic(vm, b, "memv", b'v')
}
fn member(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    mem_generic(vm, b, "member", b'e')
}

fn ass_generic(vm: &mut Vm, base: usize, who: &str, kind: u8) -> R<Value> {
    let x = arg(vm, base, 0);
    let mut cur = arg(vm, base, 1);
    let limit = list_limit(vm);
    for _ in 0..limit {
        let Some(l) = vm.m.obj(cur, &vm.shared.types.lay.pair) else {
            return Ok(FALSE);
        };
        let entry = l.get(0);
        let key = pair_field(vm, who, entry, 0)
            .map_err(|_| type_err(vm, who, "a list of pairs", arg(vm, base, 1)))?;
        let hit = match kind {
            b'q' => key == x,
            b'v' => eqv(vm, key, x),
            _ => equal(vm, key, x)?,
        };
        if hit {
            return Ok(entry);
        }
        cur = l.get(1);
    }
    Err(RtError::new(format!("{who}: circular list")))
}
fn assq(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    ass_generic(vm, b, "assq", b'q')
}
fn assv(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    ass_generic(vm, b, "assv", b'v')
}
fn assoc(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    ass_generic(vm, b, "assoc", b'e')
}

fn list_copy(vm: &mut Vm, base: usize, _: usize) -> R<Value> {
    let from = vm.m.stack_len();
    let n = spill_list(vm, "list-copy", arg(vm, base, 0))?;
    let r = list_from_stack(vm, from, from + n)?;
    vm.m.stack_truncate(from);
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// Symbols, characters, strings

/// The text of a string value.
pub fn string(vm: &Vm, who: &str, v: Value) -> R<String> {
    match vm.m.local(v) {
        Some(l) if l.type_id() == vm.shared.types.string => {
            Ok(String::from_utf8_lossy(&l.to_bytes()).into_owned())
        }
        _ => Err(type_err(vm, who, "a string", v)),
    }
}

fn chr(vm: &Vm, who: &str, v: Value) -> R<char> {
    as_char(v).ok_or_else(|| type_err(vm, who, "a character", v))
}

fn symbol_to_string(vm: &mut Vm, base: usize, _: usize) -> R<Value> {
    let v = arg(vm, base, 0);
    let id = as_symbol(v).ok_or_else(|| type_err(vm, "symbol->string", "a symbol", v))?;
    let name = vm.shared.symbol_name(id);
    vm.make_string(&name)
}
fn string_to_symbol(vm: &mut Vm, base: usize, _: usize) -> R<Value> {
    let s = string(vm, "string->symbol", arg(vm, base, 0))?;
    Ok(vm.intern(&s))
}

fn char_to_integer(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let c = chr(vm, "char->integer", arg(vm, b, 0))?;
    vm.make_int(c as i64)
}
fn integer_to_char(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let v = arg(vm, b, 0);
    let n = int(vm, "integer->char", v)?;
    u32::try_from(n)
        .ok()
        .and_then(char::from_u32)
        .map(character)
        .ok_or_else(|| type_err(vm, "integer->char", "a Unicode scalar value", v))
}
fn char_cmp(
    vm: &mut Vm,
    base: usize,
    argc: usize,
    who: &str,
    ok: fn(Ordering) -> bool,
) -> R<Value> {
    let mut prev = chr(vm, who, arg(vm, base, 0))?;
    let mut result = true;
    for i in 1..argc {
        let c = chr(vm, who, arg(vm, base, i))?;
        result &= ok(prev.cmp(&c));
        prev = c;
    }
    Ok(boolean(result))
}
fn char_eq(vm: &mut Vm, b: usize, n: usize) -> R<Value> {
    char_cmp(vm, b, n, "char=?", |o| o == Ordering::Equal)
}
fn char_lt(vm: &mut Vm, b: usize, n: usize) -> R<Value> {
    char_cmp(vm, b, n, "char<?", |o| o == Ordering::Less)
}
fn char_gt(vm: &mut Vm, b: usize, n: usize) -> R<Value> {
    char_cmp(vm, b, n, "char>?", |o| o == Ordering::Greater)
}
fn char_map(vm: &mut Vm, b: usize, who: &str, f: fn(char) -> char) -> R<Value> {
    Ok(character(f(chr(vm, who, arg(vm, b, 0))?)))
}
fn char_upcase(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    char_map(vm, b, "char-upcase", |c| {
        c.to_uppercase().next().unwrap_or(c)
    })
}
fn char_downcase(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    char_map(vm, b, "char-downcase", |c| {
        c.to_lowercase().next().unwrap_or(c)
    })
}
fn char_test(vm: &mut Vm, b: usize, who: &str, f: fn(char) -> bool) -> R<Value> {
    Ok(boolean(f(chr(vm, who, arg(vm, b, 0))?)))
}
fn char_alphabetic(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    char_test(vm, b, "char-alphabetic?", char::is_alphabetic)
}
fn char_numeric(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    char_test(vm, b, "char-numeric?", char::is_numeric)
}
fn char_whitespace(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    char_test(vm, b, "char-whitespace?", char::is_whitespace)
}

fn string_length(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let v = arg(vm, b, 0);
    let n = match vm.m.local(v) {
        Some(l) if l.type_id() == vm.shared.types.string => {
            let bytes = l.to_bytes();
            if bytes.is_ascii() {
                bytes.len()
            } else {
                String::from_utf8_lossy(&bytes).chars().count()
            }
        }
        _ => return Err(type_err(vm, "string-length", "a string", v)),
    };
    vm.make_int(n as i64)
}
fn string_ref(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let s = string(vm, "string-ref", arg(vm, b, 0))?;
    let k = index(vm, "string-ref", arg(vm, b, 1))?;
    s.chars().nth(k).map(character).ok_or_else(|| {
        RtError::new(format!(
            "string-ref: index {k} is out of range for a string of length {}",
            s.chars().count()
        ))
    })
}
fn substring(vm: &mut Vm, b: usize, argc: usize) -> R<Value> {
    let s = string(vm, "substring", arg(vm, b, 0))?;
    let n = s.chars().count();
    let start = index(vm, "substring", arg(vm, b, 1))?;
    let end = if argc == 3 {
        index(vm, "substring", arg(vm, b, 2))?
    } else {
        n
    };
    if start > end || end > n {
        return Err(RtError::new(format!(
            "substring: range {start}..{end} is out of bounds for a string of length {n}"
        )));
    }
    let sub: String = s.chars().skip(start).take(end - start).collect();
    vm.make_string(&sub)
}
fn string_append(vm: &mut Vm, base: usize, argc: usize) -> R<Value> {
    let mut out = String::new();
    for i in 0..argc {
        out.push_str(&string(vm, "string-append", arg(vm, base, i))?);
    }
    vm.make_string(&out)
}
fn string_cmp(
    vm: &mut Vm,
    base: usize,
    argc: usize,
    who: &str,
    ok: fn(Ordering) -> bool,
) -> R<Value> {
    let mut prev = string(vm, who, arg(vm, base, 0))?;
    let mut result = true;
    for i in 1..argc {
        let s = string(vm, who, arg(vm, base, i))?;
        result &= ok(prev.cmp(&s));
        prev = s;
    }
    Ok(boolean(result))
}
fn string_eq(vm: &mut Vm, b: usize, n: usize) -> R<Value> {
    string_cmp(vm, b, n, "string=?", |o| o == Ordering::Equal)
}
fn string_lt(vm: &mut Vm, b: usize, n: usize) -> R<Value> {
    string_cmp(vm, b, n, "string<?", |o| o == Ordering::Less)
}
fn string_gt(vm: &mut Vm, b: usize, n: usize) -> R<Value> {
    string_cmp(vm, b, n, "string>?", |o| o == Ordering::Greater)
}
fn string_copy(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let s = string(vm, "string-copy", arg(vm, b, 0))?;
    vm.make_string(&s)
}
fn string_upcase(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let s = string(vm, "string-upcase", arg(vm, b, 0))?;
    vm.make_string(&s.to_uppercase())
}
fn string_downcase(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let s = string(vm, "string-downcase", arg(vm, b, 0))?;
    vm.make_string(&s.to_lowercase())
}
fn make_string(vm: &mut Vm, b: usize, argc: usize) -> R<Value> {
    let n = index(vm, "make-string", arg(vm, b, 0))?;
    let c = if argc == 2 {
        chr(vm, "make-string", arg(vm, b, 1))?
    } else {
        ' '
    };
    if n.saturating_mul(c.len_utf8()) > vm.heap().config().large_object_space_bytes {
        return Err(RtError::of(
            ErrorKind::OutOfMemory,
            format!("out of memory: make-string of {n} characters"),
        ));
    }
    let s: String = std::iter::repeat_n(c, n).collect();
    vm.make_string(&s)
}
fn string_from_chars(vm: &mut Vm, base: usize, argc: usize) -> R<Value> {
    let mut s = String::new();
    for i in 0..argc {
        s.push(chr(vm, "string", arg(vm, base, i))?);
    }
    vm.make_string(&s)
}
fn string_to_list(vm: &mut Vm, base: usize, _: usize) -> R<Value> {
    let s = string(vm, "string->list", arg(vm, base, 0))?;
    let from = vm.m.stack_len();
    for c in s.chars() {
        vm.m.push(character(c));
    }
    let r = list_from_stack(vm, from, vm.m.stack_len())?;
    vm.m.stack_truncate(from);
    Ok(r)
}
fn list_to_string(vm: &mut Vm, base: usize, _: usize) -> R<Value> {
    let from = vm.m.stack_len();
    let n = spill_list(vm, "list->string", arg(vm, base, 0))?;
    let mut s = String::with_capacity(n);
    for i in 0..n {
        let v = vm.m.stack_get(from + i);
        match as_char(v) {
            Some(c) => s.push(c),
            None => {
                vm.m.stack_truncate(from);
                return Err(type_err(
                    vm,
                    "list->string",
                    "a list of characters",
                    arg(vm, base, 0),
                ));
            }
        }
    }
    vm.m.stack_truncate(from);
    vm.make_string(&s)
}

// ---------------------------------------------------------------------------------------------
// Vectors

fn vector_arg<'a>(vm: &'a Vm, who: &str, v: Value) -> R<faultline::Obj<'a>> {
    match vm.m.obj(v, &vm.shared.types.lay.vector) {
        Some(l) => Ok(l),
        _ => Err(type_err(vm, who, "a vector", v)),
    }
}

fn make_vector(vm: &mut Vm, base: usize, argc: usize) -> R<Value> {
    let n = index(vm, "make-vector", arg(vm, base, 0))?;
    let v = vm.m.alloc(vm.shared.types.vector, n)?;
    let fill = if argc == 2 { arg(vm, base, 1) } else { FALSE };
    let l = vm.known(v, &vm.shared.types.lay.vector)?;
    for i in 0..n {
        l.set(i, fill);
    }
    Ok(v)
}
fn vector(vm: &mut Vm, base: usize, argc: usize) -> R<Value> {
    let v = vm.m.alloc(vm.shared.types.vector, argc)?;
    let l = vm.known(v, &vm.shared.types.lay.vector)?;
    for i in 0..argc {
        l.set(i, arg(vm, base, i));
    }
    Ok(v)
}
fn vector_ref(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let l = vector_arg(vm, "vector-ref", arg(vm, b, 0))?;
    let k = index(vm, "vector-ref", arg(vm, b, 1))?;
    if k >= l.len() {
        return Err(RtError::new(format!(
            "vector-ref: index {k} is out of range for a vector of length {}",
            l.len()
        )));
    }
    Ok(l.get(k))
}
fn vector_set(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let l = vector_arg(vm, "vector-set!", arg(vm, b, 0))?;
    let k = index(vm, "vector-set!", arg(vm, b, 1))?;
    if k >= l.len() {
        return Err(RtError::new(format!(
            "vector-set!: index {k} is out of range for a vector of length {}",
            l.len()
        )));
    }
    l.set(k, arg(vm, b, 2));
    Ok(UNSPEC)
}
fn vector_length(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let n = vector_arg(vm, "vector-length", arg(vm, b, 0))?.len();
    vm.make_int(n as i64)
}
fn vector_fill(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let l = vector_arg(vm, "vector-fill!", arg(vm, b, 0))?;
    for i in 0..l.len() {
        l.set(i, arg(vm, b, 1));
    }
    Ok(UNSPEC)
}
fn vector_to_list(vm: &mut Vm, base: usize, _: usize) -> R<Value> {
    let n = vector_arg(vm, "vector->list", arg(vm, base, 0))?.len();
    vm.m.push(NIL);
    for i in (0..n).rev() {
        let top = vm.m.stack_len() - 1;
        let e = vector_arg(vm, "vector->list", arg(vm, base, 0))?.get(i);
        vm.m.push(e);
        vm.cons_at(top + 1, top)?;
    }
    Ok(vm.m.pop().unwrap_or(NIL))
}
fn list_to_vector(vm: &mut Vm, base: usize, _: usize) -> R<Value> {
    let from = vm.m.stack_len();
    let n = spill_list(vm, "list->vector", arg(vm, base, 0))?;
    let v = vm.m.alloc(vm.shared.types.vector, n)?;
    let l = vm.obj(v)?;
    for i in 0..n {
        l.set(i, vm.m.stack_get(from + i));
    }
    vm.m.stack_truncate(from);
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Output, control, threads, system

fn display(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let s = printer::to_string(vm, arg(vm, b, 0), false);
    vm.write_out(s.as_bytes())?;
    Ok(UNSPEC)
}
fn write(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let s = printer::to_string(vm, arg(vm, b, 0), true);
    vm.write_out(s.as_bytes())?;
    Ok(UNSPEC)
}
fn newline(vm: &mut Vm, _: usize, _: usize) -> R<Value> {
    vm.write_out(b"\n")?;
    Ok(UNSPEC)
}
fn write_char(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let c = chr(vm, "write-char", arg(vm, b, 0))?;
    vm.write_out(c.to_string().as_bytes())?;
    Ok(UNSPEC)
}

fn error(vm: &mut Vm, base: usize, argc: usize) -> R<Value> {
    let first = arg(vm, base, 0);
    let mut msg = match string(vm, "error", first) {
        Ok(s) => s,
        Err(_) => printer::to_string(vm, first, true),
    };
    for i in 1..argc {
        msg.push(' ');
        msg.push_str(&printer::to_string(vm, arg(vm, base, i), true));
    }
    Err(RtError::new(msg))
}
fn exit(vm: &mut Vm, b: usize, argc: usize) -> R<Value> {
    let code = if argc == 0 {
        0
    } else {
        match arg(vm, b, 0) {
            v if v == TRUE => 0,
            v if v == FALSE => 1,
            v => int(vm, "exit", v)?.clamp(0, 255) as i32,
        }
    };
    Err(RtError::of(ErrorKind::Exit(code), format!("exit {code}")))
}
fn apply_dummy(_: &mut Vm, _: usize, _: usize) -> R<Value> {
    Err(RtError::new("internal error: apply is handled by the VM"))
}
fn runtime(vm: &mut Vm, _: usize, _: usize) -> R<Value> {
    let ms = vm.shared.started.elapsed().as_millis() as i64;
    vm.make_int(ms)
}
fn gc(vm: &mut Vm, _: usize, _: usize) -> R<Value> {
    // Starts a cycle (concurrent mode: returns after the initial mark, as before).
    vm.m.start_collection()?;
    Ok(UNSPEC)
}
fn gc_full(vm: &mut Vm, _: usize, _: usize) -> R<Value> {
    // A whole cycle, waited for (concurrent mode too): what it finds dead is cleared.
    vm.m.collect()?;
    Ok(UNSPEC)
}

// ---------------------------------------------------------------------------------------------
// Weak boxes, ephemerons, finalization (the heap's weak references: `Mutator::new_weak` and
// friends; a cleared box reads as the default, `#f` unless given)

fn weak_arg(vm: &Vm, who: &str, v: Value) -> R<()> {
    if vm.m.is_weak_box(v) {
        Ok(())
    } else {
        Err(type_err(vm, who, "a weak box or ephemeron", v))
    }
}
fn or_default(vm: &Vm, v: Value, base: usize, argc: usize) -> Value {
    if !v.is_null() {
        v
    } else if argc == 2 {
        arg(vm, base, 1)
    } else {
        FALSE
    }
}
fn make_weak_box(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    Ok(vm.m.new_weak(arg(vm, b, 0))?)
}
fn weak_box_value(vm: &mut Vm, b: usize, argc: usize) -> R<Value> {
    let w = arg(vm, b, 0);
    weak_arg(vm, "weak-box-value", w)?;
    Ok(or_default(vm, vm.m.weak_get(w), b, argc))
}
fn is_weak_box(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let v = arg(vm, b, 0);
    Ok(boolean(vm.m.is_weak_box(v) && !vm.m.is_ephemeron(v)))
}
fn make_ephemeron(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    Ok(vm.m.new_ephemeron(arg(vm, b, 0), arg(vm, b, 1))?)
}
fn ephemeron_key(vm: &mut Vm, b: usize, argc: usize) -> R<Value> {
    let e = arg(vm, b, 0);
    weak_arg(vm, "ephemeron-key", e)?;
    Ok(or_default(vm, vm.m.weak_get(e), b, argc))
}
fn ephemeron_value(vm: &mut Vm, b: usize, argc: usize) -> R<Value> {
    let e = arg(vm, b, 0);
    weak_arg(vm, "ephemeron-value", e)?;
    Ok(or_default(vm, vm.m.ephemeron_value(e), b, argc))
}
fn is_ephemeron(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let v = arg(vm, b, 0);
    Ok(boolean(vm.m.is_weak_box(v) && vm.m.is_ephemeron(v)))
}
fn register_finalizer(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let target = arg(vm, b, 0);
    if !target.is_ref() {
        return Err(type_err(vm, "register-finalizer!", "a heap object", target));
    }
    vm.shared.finalizers.register(&vm.m, target, arg(vm, b, 1));
    Ok(UNSPEC)
}
fn take_finalized(vm: &mut Vm, _: usize, _: usize) -> R<Value> {
    let got = vm.shared.finalizers.take(&vm.m);
    let base = vm.m.stack_len();
    for v in got {
        vm.m.push(v);
    }
    let top = vm.m.stack_len();
    let l = list_from_stack(vm, base, top);
    vm.m.stack_truncate(base);
    l
}

fn heap_used(vm: &mut Vm, _: usize, _: usize) -> R<Value> {
    let n = vm.heap().used_bytes() as i64;
    vm.make_int(n)
}
fn void(_: &mut Vm, _: usize, _: usize) -> R<Value> {
    Ok(UNSPEC)
}
fn command_line(vm: &mut Vm, _: usize, _: usize) -> R<Value> {
    let args = vm.shared.config.args.clone();
    let from = vm.m.stack_len();
    for a in &args {
        let s = vm.make_string(a)?;
        vm.m.push(s);
    }
    let r = list_from_stack(vm, from, vm.m.stack_len())?;
    vm.m.stack_truncate(from);
    Ok(r)
}
fn spawn(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let f = arg(vm, b, 0);
    if as_prim(f).is_none() && !has_type(vm, f, vm.shared.types.closure) {
        return Err(type_err(vm, "spawn", "a procedure", f));
    }
    vm.spawn_thread(b)
}
fn join(vm: &mut Vm, b: usize, _: usize) -> R<Value> {
    let t = arg(vm, b, 0);
    let idx = match vm.m.local(t) {
        Some(l) if l.type_id() == vm.shared.types.thread => l.word(0) as usize,
        _ => return Err(type_err(vm, "join", "a thread", t)),
    };
    vm.join_thread(idx)
}

impl PrintEnv for Vm {
    fn heap(&self) -> &Heap {
        Vm::heap(self)
    }
    fn mutator(&self) -> &Mutator {
        &self.m
    }
    fn types(&self) -> &Types {
        &self.shared.types
    }
    fn symbol_name(&self, id: SymbolId) -> String {
        self.shared.symbol_name(id)
    }
    fn procedure_name(&self, id: usize) -> Option<&str> {
        self.code.protos.get(id).and_then(|p| p.name.as_deref())
    }
    fn primitive_name(&self, index: usize) -> &str {
        PRIMS.get(index).map_or("?", |d| d.name)
    }
}

/// Every primitive. Names are bound as globals when a VM starts.
pub static PRIMS: &[PrimDef] = &[
    p("+", 0, MANY, add),
    p("-", 1, MANY, sub),
    p("*", 0, MANY, mul),
    p("/", 1, MANY, div),
    p("quotient", 2, 2, quotient),
    p("remainder", 2, 2, remainder),
    p("modulo", 2, 2, modulo),
    p("=", 1, MANY, num_eq),
    p("<", 1, MANY, num_lt),
    p(">", 1, MANY, num_gt),
    p("<=", 1, MANY, num_le),
    p(">=", 1, MANY, num_ge),
    p("min", 1, MANY, min),
    p("max", 1, MANY, max),
    p("abs", 1, 1, abs),
    p("sqrt", 1, 1, sqrt),
    p("expt", 2, 2, expt),
    p("exp", 1, 1, exp),
    p("log", 1, 1, log),
    p("sin", 1, 1, sin),
    p("cos", 1, 1, cos),
    p("tan", 1, 1, tan),
    p("atan", 1, 2, atan),
    p("floor", 1, 1, floor),
    p("ceiling", 1, 1, ceiling),
    p("round", 1, 1, round),
    p("truncate", 1, 1, truncate),
    p("exact->inexact", 1, 1, to_inexact),
    p("inexact->exact", 1, 1, to_exact),
    p("inexact", 1, 1, to_inexact),
    p("exact", 1, 1, to_exact),
    p("number?", 1, 1, is_number),
    p("integer?", 1, 1, is_integer),
    p("exact?", 1, 1, is_exact),
    p("inexact?", 1, 1, is_inexact),
    p("zero?", 1, 1, is_zero),
    p("positive?", 1, 1, is_positive),
    p("negative?", 1, 1, is_negative),
    p("odd?", 1, 1, is_odd),
    p("even?", 1, 1, is_even),
    p("gcd", 0, MANY, gcd),
    p("lcm", 0, MANY, lcm),
    p("number->string", 1, 2, number_to_string),
    p("string->number", 1, 1, string_to_number),
    p("eq?", 2, 2, eq_p),
    p("eq-hash", 1, 1, eq_hash),
    p("eqv?", 2, 2, eqv_p),
    p("equal?", 2, 2, equal_p),
    p("not", 1, 1, not),
    p("boolean?", 1, 1, is_boolean),
    p("symbol?", 1, 1, is_symbol),
    p("string?", 1, 1, is_string),
    p("char?", 1, 1, is_char),
    p("vector?", 1, 1, is_vector),
    p("pair?", 1, 1, is_pair),
    p("null?", 1, 1, is_null),
    p("list?", 1, 1, is_list),
    p("procedure?", 1, 1, is_procedure),
    p("thread?", 1, 1, is_thread),
    p("cons", 2, 2, cons),
    p("car", 1, 1, car),
    p("cdr", 1, 1, cdr),
    p("caar", 1, 1, caar),
    p("cadr", 1, 1, cadr),
    p("cdar", 1, 1, cdar),
    p("cddr", 1, 1, cddr),
    p("caddr", 1, 1, caddr),
    p("cdddr", 1, 1, cdddr),
    p("cadddr", 1, 1, cadddr),
    p("set-car!", 2, 2, set_car),
    p("set-cdr!", 2, 2, set_cdr),
    p("list", 0, MANY, list),
    p("length", 1, 1, length),
    p("append", 0, MANY, append),
    p("reverse", 1, 1, reverse),
    p("list-tail", 2, 2, list_tail),
    p("list-ref", 2, 2, list_ref),
    p("list-copy", 1, 1, list_copy),
    p("memq", 2, 2, memq),
    p("memv", 2, 2, memv),
    p("member", 2, 2, member),
    p("assq", 2, 2, assq),
    p("assv", 2, 2, assv),
    p("assoc", 2, 2, assoc),
    p("symbol->string", 1, 1, symbol_to_string),
    p("string->symbol", 1, 1, string_to_symbol),
    p("char->integer", 1, 1, char_to_integer),
    p("integer->char", 1, 1, integer_to_char),
    p("char=?", 1, MANY, char_eq),
    p("char<?", 1, MANY, char_lt),
    p("char>?", 1, MANY, char_gt),
    p("char-upcase", 1, 1, char_upcase),
    p("char-downcase", 1, 1, char_downcase),
    p("char-alphabetic?", 1, 1, char_alphabetic),
    p("char-numeric?", 1, 1, char_numeric),
    p("char-whitespace?", 1, 1, char_whitespace),
    p("string-length", 1, 1, string_length),
    p("string-ref", 2, 2, string_ref),
    p("substring", 2, 3, substring),
    p("string-append", 0, MANY, string_append),
    p("string=?", 1, MANY, string_eq),
    p("string<?", 1, MANY, string_lt),
    p("string>?", 1, MANY, string_gt),
    p("string-copy", 1, 1, string_copy),
    p("string-upcase", 1, 1, string_upcase),
    p("string-downcase", 1, 1, string_downcase),
    p("make-string", 1, 2, make_string),
    p("string", 0, MANY, string_from_chars),
    p("string->list", 1, 1, string_to_list),
    p("list->string", 1, 1, list_to_string),
    p("make-vector", 1, 2, make_vector),
    p("vector", 0, MANY, vector),
    p("vector-ref", 2, 2, vector_ref),
    p("vector-set!", 3, 3, vector_set),
    p("vector-length", 1, 1, vector_length),
    p("vector-fill!", 2, 2, vector_fill),
    p("vector->list", 1, 1, vector_to_list),
    p("list->vector", 1, 1, list_to_vector),
    p("display", 1, 1, display),
    p("write", 1, 1, write),
    p("newline", 0, 0, newline),
    p("write-char", 1, 1, write_char),
    p("error", 1, MANY, error),
    p("exit", 0, 1, exit),
    PrimDef {
        name: "apply",
        min: 1,
        max: MANY,
        special: true,
        f: apply_dummy,
    },
    p("runtime", 0, 0, runtime),
    p("gc", 0, 0, gc),
    p("heap-used", 0, 0, heap_used),
    p("gc-full", 0, 0, gc_full),
    p("make-weak-box", 1, 1, make_weak_box),
    p("weak-box-value", 1, 2, weak_box_value),
    p("weak-box?", 1, 1, is_weak_box),
    p("make-ephemeron", 2, 2, make_ephemeron),
    p("ephemeron-key", 1, 2, ephemeron_key),
    p("ephemeron-value", 1, 2, ephemeron_value),
    p("ephemeron?", 1, 1, is_ephemeron),
    p("register-finalizer!", 2, 2, register_finalizer),
    p("take-finalized", 0, 0, take_finalized),
    p("void", 0, MANY, void),
    p("command-line", 0, 0, command_line),
    p("spawn", 1, 1, spawn),
    p("join", 1, 1, join),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::truthy;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = PRIMS.iter().map(|p| p.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len());
    }

    #[test]
    fn truthiness_helpers() {
        assert!(truthy(TRUE));
        assert_eq!(format_float(1.0), "1.0");
        assert_eq!(format_float(f64::INFINITY), "+inf.0");
        assert_eq!(format_float(f64::NAN), "+nan.0");
    }
}

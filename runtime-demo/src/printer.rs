//! Printing values: `display` (human-readable) and `write` (readable back where possible).
//!
//! The printer depends only on the value encoding ([`crate::value`]) and symbol ids; what it
//! needs from a running program (reading heap objects, the names of symbols, procedures and
//! primitives) it asks through [`PrintEnv`], which the VM implements.
//!
//! Invariants:
//! - Printing never allocates in the heap and never reaches a safepoint, so it may hold
//!   references it reads in Rust variables.
//! - Printing always terminates: nesting deeper than [`MAX_DEPTH`] prints as `...`, and once
//!   more elements have been printed than the heap can hold (a cycle) the rest prints as `...`.
//! - `write` output of numbers, booleans, characters, strings, symbols, lists and vectors reads
//!   back as an equal datum (symbols that need `|...|` quoting are not quoted).

use std::fmt::Write as _;

use faultline::{Heap, Mutator, Value};

use crate::symbols::SymbolId;
use crate::value::{
    as_char, as_prim, as_symbol, list_limit, tag, unfix, Types, EOF, FALSE, MAX_DEPTH, NIL,
    TAG_FIX, TAG_INTERNAL, TRUE, UNSPEC,
};

/// What printing reads besides the value itself. None of these may allocate or reach a
/// safepoint.
pub trait PrintEnv {
    /// The heap the values live in (its size bounds list traversals).
    fn heap(&self) -> &Heap;
    /// The mutator through which heap objects are read.
    fn mutator(&self) -> &Mutator;
    /// The runtime's heap types.
    fn types(&self) -> &Types;
    /// The name of symbol `id`.
    fn symbol_name(&self, id: SymbolId) -> String;
    /// The name of procedure prototype `id`, if it has one.
    fn procedure_name(&self, id: usize) -> Option<&str>;
    /// The name of primitive `index` (`"?"` for an unknown index).
    fn primitive_name(&self, index: usize) -> &str;
}

/// The printed form of `v` (`write` style if `write`, else `display` style).
pub fn to_string<E: PrintEnv + ?Sized>(env: &E, v: Value, write: bool) -> String {
    let mut out = String::new();
    let mut budget = list_limit(env.heap());
    print(env, v, write, &mut out, 0, &mut budget);
    out
}

/// Formats a flonum the way `write` shows it.
pub fn format_float(x: f64) -> String {
    if x.is_nan() {
        "+nan.0".into()
    } else if x.is_infinite() {
        if x > 0.0 { "+inf.0" } else { "-inf.0" }.into()
    } else {
        format!("{x:?}")
    }
}

fn char_name(c: char) -> Option<&'static str> {
    Some(match c {
        ' ' => "space",
        '\n' => "newline",
        '\t' => "tab",
        '\0' => "nul",
        '\r' => "return",
        '\u{7}' => "alarm",
        '\u{8}' => "backspace",
        '\u{7f}' => "delete",
        '\u{1b}' => "escape",
        _ => return None,
    })
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:x};", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn print<E: PrintEnv + ?Sized>(
    vm: &E,
    v: Value,
    write: bool,
    out: &mut String,
    depth: usize,
    budget: &mut usize,
) {
    if depth > MAX_DEPTH || *budget == 0 {
        out.push_str("...");
        return;
    }
    *budget -= 1;
    if v.is_null() {
        out.push_str("#<unassigned>");
        return;
    }
    if !v.is_ref() {
        match tag(v) {
            TAG_FIX => {
                let _ = write!(out, "{}", unfix(v));
            }
            TAG_INTERNAL => out.push_str("#<internal>"),
            _ => {
                if let Some(c) = as_char(v) {
                    if write {
                        match char_name(c) {
                            Some(n) => {
                                let _ = write!(out, "#\\{n}");
                            }
                            None if c.is_control() => {
                                let _ = write!(out, "#\\x{:x}", c as u32);
                            }
                            None => {
                                let _ = write!(out, "#\\{c}");
                            }
                        }
                    } else {
                        out.push(c);
                    }
                } else if let Some(id) = as_symbol(v) {
                    out.push_str(&vm.symbol_name(id));
                } else if let Some(p) = as_prim(v) {
                    let name = vm.primitive_name(p);
                    let _ = write!(out, "#<primitive {name}>");
                } else {
                    out.push_str(match v {
                        x if x == TRUE => "#t",
                        x if x == FALSE => "#f",
                        x if x == NIL => "()",
                        x if x == UNSPEC => "#<unspecified>",
                        x if x == EOF => "#<eof>",
                        _ => "#<unknown>",
                    });
                }
            }
        }
        return;
    }
    let Some(l) = vm.mutator().local(v) else {
        out.push_str("#<?>");
        return;
    };
    let t = vm.types();
    let ty = l.type_id();
    if ty == t.pair {
        out.push('(');
        print(vm, l.get(0), write, out, depth + 1, budget);
        let mut rest = l.get(1);
        loop {
            if rest == NIL {
                break;
            }
            if *budget == 0 {
                out.push_str(" ...");
                break;
            }
            match vm.mutator().local(rest).filter(|r| r.type_id() == t.pair) {
                Some(p) => {
                    out.push(' ');
                    print(vm, p.get(0), write, out, depth + 1, budget);
                    rest = p.get(1);
                }
                None => {
                    out.push_str(" . ");
                    print(vm, rest, write, out, depth + 1, budget);
                    break;
                }
            }
        }
        out.push(')');
    } else if ty == t.flonum {
        out.push_str(&format_float(f64::from_bits(l.word(0))));
    } else if ty == t.string {
        let s = String::from_utf8_lossy(&l.to_bytes()).into_owned();
        if write {
            write_string(&s, out);
        } else {
            out.push_str(&s);
        }
    } else if ty == t.vector {
        out.push_str("#(");
        for i in 0..l.len() {
            if i > 0 {
                out.push(' ');
            }
            print(vm, l.get(i), write, out, depth + 1, budget);
        }
        out.push(')');
    } else if ty == t.closure {
        let id = l.word(0) as usize;
        match vm.procedure_name(id) {
            Some(name) => {
                let _ = write!(out, "#<procedure {name}>");
            }
            None => out.push_str("#<procedure>"),
        }
    } else if ty == t.thread {
        let _ = write!(out, "#<thread {}>", l.word(0) + 1);
    } else if ty == t.frame {
        out.push_str("#<frame>");
    } else if vm.mutator().is_weak_box(v) {
        out.push_str(if vm.mutator().is_ephemeron(v) {
            "#<ephemeron>"
        } else {
            "#<weak-box>"
        });
    } else {
        out.push_str("#<object>");
    }
}

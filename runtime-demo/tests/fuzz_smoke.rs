//! Stable-toolchain fuzz smoke test: runs the libFuzzer target's entry point
//! (`runtime_demo::fuzz::eval_with`) over a few thousand generated and mutated programs and
//! checks that none panics (program errors are fine) and that the whole run stays bounded.
//!
//! Inputs: random expressions over the language's special forms and primitives (including
//! threads, deep nesting, big numbers and bad arities), and byte-level mutations (flips,
//! deletions, duplications, bracket insertion) of the golden programs. Deterministic seeds,
//! so a failure reproduces; `FUZZ_SMOKE_CASES=N` changes the count.

use std::time::{Duration, Instant};

use runtime_demo::fuzz::{eval_with, Outcome};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const PRIMS: &[&str] = &[
    "+",
    "-",
    "*",
    "/",
    "quotient",
    "remainder",
    "modulo",
    "=",
    "<",
    ">",
    "<=",
    ">=",
    "abs",
    "min",
    "max",
    "sqrt",
    "expt",
    "exact->inexact",
    "inexact->exact",
    "number->string",
    "string->number",
    "eq?",
    "eqv?",
    "equal?",
    "not",
    "null?",
    "pair?",
    "cons",
    "car",
    "cdr",
    "set-car!",
    "set-cdr!",
    "list",
    "length",
    "append",
    "reverse",
    "list-ref",
    "list-tail",
    "memq",
    "member",
    "assq",
    "assoc",
    "vector",
    "make-vector",
    "vector-ref",
    "vector-set!",
    "vector-length",
    "vector->list",
    "list->vector",
    "string-length",
    "string-append",
    "substring",
    "string->symbol",
    "symbol->string",
    "string=?",
    "string->list",
    "list->string",
    "char->integer",
    "integer->char",
    "display",
    "write",
    "newline",
    "map",
    "for-each",
    "filter",
    "fold-left",
    "fold-right",
    "apply",
    "iota",
    "error",
    "spawn",
    "join",
    "make-string",
    "vector-fill!",
    "gc",
    "procedure?",
    "length",
];

const ATOMS: &[&str] = &[
    "0",
    "1",
    "-1",
    "42",
    "1152921504606846975",
    "-1152921504606846976",
    "9223372036854775807",
    "2.5",
    "-0.0",
    "+inf.0",
    "+nan.0",
    "#t",
    "#f",
    "#\\a",
    "\"str\"",
    "\"\"",
    "'()",
    "'sym",
    "'(1 2 3)",
    "'(a . b)",
    "#(1 2)",
    "x",
    "y",
    "f",
    "g",
    "lst",
    "v",
];

fn expr(r: &mut Rng, depth: usize, out: &mut String) {
    if depth == 0 || r.below(4) == 0 {
        out.push_str(r.pick(ATOMS));
        return;
    }
    let d = depth - 1;
    match r.below(14) {
        0 => {
            out.push_str("(if ");
            expr(r, d, out);
            out.push(' ');
            expr(r, d, out);
            out.push(' ');
            expr(r, d, out);
            out.push(')');
        }
        1 => {
            out.push_str("(lambda (x . y) ");
            expr(r, d, out);
            out.push(')');
        }
        2 => {
            out.push_str("(let ((x ");
            expr(r, d, out);
            out.push_str(") (y ");
            expr(r, d, out);
            out.push_str(")) ");
            expr(r, d, out);
            out.push(')');
        }
        3 => {
            out.push_str("(let loop ((x ");
            expr(r, d, out);
            out.push_str(")) (if (and (number? x) (< x 50)) (loop (+ x 1)) ");
            expr(r, d, out);
            out.push_str("))");
        }
        4 => {
            out.push_str("(letrec ((f (lambda (x) ");
            expr(r, d, out);
            out.push_str("))) (f ");
            expr(r, d, out);
            out.push_str("))");
        }
        5 => {
            out.push_str("(cond (");
            expr(r, d, out);
            out.push_str(" => (lambda (x) x)) (else ");
            expr(r, d, out);
            out.push_str("))");
        }
        6 => {
            out.push_str("(begin (set! x ");
            expr(r, d, out);
            out.push_str(") x)");
        }
        7 => {
            out.push_str("(join (spawn (lambda () ");
            expr(r, d, out);
            out.push_str(")))");
        }
        8 => {
            out.push_str("(case ");
            expr(r, d, out);
            out.push_str(" ((1 2) 'a) ((x) 'b) (else ");
            expr(r, d, out);
            out.push_str("))");
        }
        _ => {
            out.push('(');
            out.push_str(r.pick(PRIMS));
            for _ in 0..r.below(4) {
                out.push(' ');
                expr(r, d, out);
            }
            out.push(')');
        }
    }
}

fn program(r: &mut Rng) -> String {
    let mut s = String::from("(define x 1) (define y '(1 2)) (define lst (iota 5)) (define v (make-vector 3 0))\n(define (f a) ");
    expr(r, 4, &mut s);
    s.push_str(")\n(define (g . a) (f a))\n");
    for _ in 0..1 + r.below(4) {
        s.push_str("(display ");
        expr(r, 5, &mut s);
        s.push_str(")\n");
    }
    s
}

fn mutate(r: &mut Rng, src: &[u8]) -> Vec<u8> {
    let mut b = src.to_vec();
    for _ in 0..1 + r.below(6) {
        if b.is_empty() {
            break;
        }
        let i = r.below(b.len());
        match r.below(5) {
            0 => b[i] = r.next() as u8,
            1 => {
                let n = r.below(16).min(b.len() - i);
                b.drain(i..i + n);
            }
            2 => {
                let n = r.below(32).min(b.len() - i);
                let chunk = b[i..i + n].to_vec();
                let j = r.below(b.len());
                b.splice(j..j, chunk);
            }
            3 => b.insert(i, *b"()[]'\"#".get(r.below(7)).unwrap()),
            _ => b.truncate(i),
        }
    }
    b
}

#[test]
fn fuzz_smoke() {
    let cases: usize = std::env::var("FUZZ_SMOKE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&golden)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "scm")
                .then(|| std::fs::read(&p).ok())
                .flatten()
        })
        .collect();
    seeds.sort();
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let start = Instant::now();
    let mut counts = [0usize; 4];
    let mut slowest = (Duration::ZERO, String::new());
    for i in 0..cases {
        let input = if i % 2 == 0 {
            program(&mut r).into_bytes()
        } else {
            let seed = &seeds[r.below(seeds.len())];
            mutate(&mut r, seed)
        };
        let t = Instant::now();
        let outcome = eval_with(&input, 2_000);
        let took = t.elapsed();
        if took > slowest.0 {
            slowest = (took, String::from_utf8_lossy(&input).into_owned());
        }
        counts[match outcome {
            Outcome::Skipped => 0,
            Outcome::Ok => 1,
            Outcome::SyntaxError => 2,
            Outcome::RuntimeError => 3,
        }] += 1;
    }
    println!(
        "{cases} inputs in {:?}: {} skipped (not UTF-8), {} ok, {} syntax errors, {} runtime errors; slowest {:?}",
        start.elapsed(),
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        slowest.0
    );
    assert!(
        counts[1] > cases / 20,
        "too few inputs ran to completion: {counts:?}"
    );
    assert!(counts[3] > cases / 20, "too few runtime errors: {counts:?}");
    assert!(
        slowest.0 < Duration::from_secs(10),
        "an input took {:?}:\n{}",
        slowest.0,
        slowest.1
    );
}

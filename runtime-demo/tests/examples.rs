//! The bundled programs (`examples/*.scm`): their output at the default sizes (binary-trees at
//! depth 12), and at small sizes under GC stress (`--gc-stress 50 --verify`) in every GC mode
//! (see `common::MODES`; a mode the heap reports as unsupported is skipped with a message).
//!
//! binary-trees output is checked against the Benchmarks Game formula computed here; the
//! others against `tests/golden/examples/NAME-ARG.out` (`BLESS=1` rewrites those from the
//! stop-the-world runs).

mod common;

use common::{crate_dir, mode_supported, run_program, Mode, MODES};

/// The Benchmarks Game's binary-trees output for `n`.
fn binary_trees(n: u32) -> String {
    let n = n.max(6);
    let check = |d: u32| (1u64 << (d + 1)) - 1;
    let mut out = format!(
        "stretch tree of depth {}\t check: {}\n",
        n + 1,
        check(n + 1)
    );
    let mut d = 4;
    while d <= n {
        let iters = 1u64 << (n - d + 4);
        out += &format!(
            "{iters}\t trees of depth {d}\t check: {}\n",
            iters * check(d)
        );
        d += 2;
    }
    out + &format!("long lived tree of depth {n}\t check: {}\n", check(n))
}

fn expected(name: &str, arg: &str, mode: &Mode, got: &str) -> String {
    if name == "binary-trees" {
        return binary_trees(arg.parse().unwrap());
    }
    let path = crate_dir().join(format!("tests/golden/examples/{name}-{arg}.out"));
    if std::env::var("BLESS").is_ok() && mode.name.starts_with("stw") {
        std::fs::write(&path, got).unwrap();
    }
    std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing {}", path.display()))
}

fn check(mode: &Mode, runs: &[(&str, &str)], extra: &[String]) {
    if let Err(why) = mode_supported(mode) {
        println!("SKIPPED mode {}: {why}", mode.name);
        return;
    }
    let dir = crate_dir().join("examples");
    for (name, arg) in runs {
        let r = run_program(&dir, &format!("{name}.scm"), mode, extra, &[arg]);
        assert_eq!(
            (r.code, r.diagnostics.as_str()),
            (0, ""),
            "{name} -- {arg} [{}] failed:\n{}",
            mode.name,
            r.diagnostics
        );
        assert!(r.summary_seen, "{name}: no GC summary");
        assert_eq!(
            r.stdout,
            expected(name, arg, mode, &r.stdout),
            "{name} -- {arg} [{}]",
            mode.name
        );
    }
}

const SMALL: [(&str, &str); 5] = [
    ("binary-trees", "6"),
    ("gcbench", "6"),
    ("closures", "100"),
    ("threads", "10"),
    ("weak", "100"),
];

#[test]
fn formula_matches_the_benchmarks_game() {
    assert!(binary_trees(10).starts_with(
        "stretch tree of depth 11\t check: 4095\n1024\t trees of depth 4\t check: 31744\n"
    ));
}

#[test]
fn examples_default_sizes_stw() {
    check(
        &MODES[0],
        &[
            ("binary-trees", "12"),
            ("gcbench", "14"),
            ("closures", "100000"),
            ("threads", "1500"),
            ("weak", "1000"),
        ],
        &[],
    );
}

macro_rules! stressed {
    ($($fn_name:ident => $index:expr),* $(,)?) => {
        $(
            #[test]
            fn $fn_name() {
                check(&MODES[$index], &SMALL, &[]);
            }
        )*
    };
}

stressed! {
    examples_stw_stressed => 1,
    examples_concurrent_copy_sigbus_stressed => 2,
    examples_concurrent_copy_thread_stressed => 3,
    examples_concurrent_move_sigbus_stressed => 4,
    examples_concurrent_move_thread_stressed => 5,
    examples_concurrent_minor_sigbus_stressed => 6,
    examples_concurrent_minor_thread_stressed => 7,
}

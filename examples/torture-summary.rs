//! Prints the torture-suite summary from the records the torture tests write (one `key value`
//! file per test under `<target>/tmp/torture/`), and exits non-zero if a record is missing or
//! a count that must not be zero is zero.
//!
//! Run after the tests: `cargo run --release --example torture-summary [-- <dir>]`.
//!
//! Invariant: every figure printed is read from a record; a record exists only if its test
//! passed (it is the test's last act), so "failures: 0" means every listed test passed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// The records the suite must produce, and whether each must show mutator faults.
const EXPECTED: &[&str] = &[
    "error_paths",
    "random_copy_sigbus",
    "random_move_thread_poison",
    "random_minor_sigbus",
    "random_copy_wp_async",
    "switch_random_intervals",
    "switch_phase_delay",
    "switch_poison",
    "broken_collector",
    "soak",
];

fn default_dir() -> PathBuf {
    // <target>/<profile>/examples/torture-summary -> <target>/tmp/torture
    let exe = std::env::current_exe().expect("own path");
    exe.ancestors()
        .nth(3)
        .expect("target directory")
        .join("tmp")
        .join("torture")
}

fn main() -> ExitCode {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(default_dir);
    let mut records: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("torture summary: no records in {}", dir.display());
        return ExitCode::FAILURE;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "txt") {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let kv = text
                .lines()
                .filter_map(|l| l.split_once(' '))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            records.insert(name, kv);
        }
    }
    let num = |r: &BTreeMap<String, String>, k: &str| -> u64 {
        r.get(k).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    let mut problems = Vec::new();
    println!("torture summary ({})", dir.display());
    println!(
        "{:<26} {:>7} {:>9} {:>8} {:>7} {:>8} {:>9} {:>9}",
        "test", "stress", "verified", "cycles", "threads", "faults", "checks", "seconds"
    );
    let mut injected: BTreeMap<String, u64> = BTreeMap::new();
    let (mut verified, mut cycles, mut threads, mut faults, mut secs) = (0, 0, 0, 0, 0.0);
    for name in EXPECTED {
        let Some(r) = records.get(*name) else {
            problems.push(format!("no record for {name} (did its test run and pass?)"));
            continue;
        };
        let d = num(r, "duration_ms") as f64 / 1000.0;
        println!(
            "{:<26} {:>7} {:>9} {:>8} {:>7} {:>8} {:>9} {:>9.1}",
            name,
            r.get("stress").map(String::as_str).unwrap_or("?"),
            num(r, "verified_collections"),
            num(r, "collections"),
            num(r, "mutator_threads"),
            num(r, "faults"),
            num(r, "model_checks"),
            d
        );
        verified += num(r, "verified_collections");
        cycles += num(r, "collections");
        threads = threads.max(num(r, "mutator_threads"));
        faults += num(r, "faults");
        secs += d;
        for (k, v) in r {
            if let Some(call) = k.strip_prefix("injected.") {
                *injected.entry(call.to_string()).or_default() += v.parse::<u64>().unwrap_or(0);
            }
            if let Some(n) = k.strip_prefix("note.") {
                println!("    {n}: {v}");
            }
        }
    }
    println!(
        "total: {verified} collections under verification ({cycles} in all), up to {threads} mutator threads, {faults} mutator faults, {secs:.1} s"
    );
    println!("injected errors per kernel call:");
    for (c, n) in &injected {
        println!("    {c:<16} {n}");
    }
    if let Some(r) = records.get("error_paths") {
        if r.get("note.calls_covered").map(|v| {
            let (a, b) = v.split_once('/').unwrap_or(("0", "1"));
            a == b
        }) != Some(true)
        {
            problems.push("the error-path matrix did not cover every kernel call".into());
        }
    }
    for (what, n) in [
        ("collections under verification", verified),
        ("mutator threads > 1", threads.saturating_sub(1)),
        ("mutator faults", faults),
        ("injected errors", injected.values().sum()),
    ] {
        if n == 0 {
            problems.push(format!("{what}: zero"));
        }
    }
    if problems.is_empty() {
        println!("failures: 0 (every record above was written by a test that passed)");
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            println!("PROBLEM: {p}");
        }
        ExitCode::FAILURE
    }
}

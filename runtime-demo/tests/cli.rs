//! The command line: subcommands, option validation (exit code 2), the GC log, the summary and
//! `--stats-json`, the REPL's multi-line input, and the interpreter's stack guarantees (deep
//! recursion, constant-space tail calls) on programs too long for the stressed golden runs.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{golden_dir, run_program, BIN, MODES};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .current_dir(golden_dir())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A program written to a fresh directory (of a name nobody used, removed with the program when
/// the directory handle is dropped), and its path.
fn temp_program(name: &str, src: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("runtime-demo-cli-")
        .tempdir()
        .unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, src).unwrap();
    (dir, p)
}

#[test]
fn probe_prints_a_table_and_json() {
    let (code, out, _) = run(&["probe"]);
    assert_eq!(code, 0);
    assert!(out.contains("userfaultfd"), "{out}");
    let (code, out, _) = run(&["probe", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v.get("available").is_some() && v.get("features").is_some());
}

#[test]
fn usage_errors_exit_with_2() {
    for (args, needle) in [
        (vec!["run", "hello.scm", "--heap", "12Q"], "unknown unit"),
        (
            vec!["run", "hello.scm", "--strategy", "move"],
            "--gc concurrent",
        ),
        (
            vec!["run", "hello.scm", "--faults", "thread"],
            "--gc concurrent",
        ),
        (
            vec!["run", "hello.scm", "--barrier", "satb"],
            "--gc concurrent",
        ),
        (
            vec!["run", "hello.scm", "--gc", "sometimes"],
            "invalid value",
        ),
        (vec!["run", "hello.scm", "--heap", "1K"], "64 KiB"),
        (vec!["run", "hello.scm", "--gc-stress", "0"], "at least 1"),
        (vec!["run", "no-such-file.scm"], "cannot read"),
        (vec!["frobnicate"], "unrecognized subcommand"),
    ] {
        let (code, out, err) = run(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}");
    }
}

#[test]
fn summary_gc_log_and_stats_json() {
    let dir = tempfile::Builder::new()
        .prefix("runtime-demo-stats-")
        .tempdir()
        .unwrap();
    let json = dir.path().join("stats.json");
    let (code, out, err) = run(&[
        "run",
        "lists.scm",
        "--heap",
        "8M",
        "--gc-log",
        "--gc-stress",
        "500",
        "--stats-json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("(1 . 2)"));
    let log_lines = err
        .lines()
        .filter(|l| l.starts_with("[gc,cycle] GC("))
        .count();
    assert!(log_lines > 0, "{err}");
    assert!(
        err.contains("[gc,mode] gc: "),
        "the log says what runs and why: {err}"
    );
    let summary = &err[err.find("== GC summary ==").expect("summary")..];
    for key in [
        "mode",
        "cycles",
        "pauses",
        "mutator fault stalls",
        "peak RSS",
        "uffd calls",
    ] {
        assert!(summary.contains(key), "{key}: {summary}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for key in [
        "mode",
        "strategy",
        "fault_delivery",
        "cycles",
        "pauses",
        "mutator_faults",
        "uffd",
        "vm_syscalls_in_cycles",
        "arena_vmas",
        "peak_rss_bytes",
        "total_ms",
        "gc_ms",
        "fallback_reason",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert_eq!(v["mode"], "stw");
    assert_eq!(v["cycles"].as_u64().unwrap() as usize, log_lines);
    for k in ["count", "p50_us", "p99_us", "max_us", "total_ms"] {
        assert!(v["pauses"][k].is_number(), "{k}");
    }
    for k in [
        "register",
        "unregister",
        "copy",
        "move",
        "continue",
        "zeropage",
        "wake",
        "writeprotect",
    ] {
        assert!(v["uffd"][k].is_u64(), "{k}");
    }
    for k in ["mmap", "munmap", "mremap", "mprotect"] {
        assert_eq!(v["vm_syscalls_in_cycles"][k], 0, "{k}");
    }
    assert!(v["arena_vmas"]["min"].as_u64().unwrap() <= v["arena_vmas"]["max"].as_u64().unwrap());
}

#[test]
fn summary_is_printed_even_when_the_program_fails() {
    let (code, _, err) = run(&["run", "err-type.scm"]);
    assert_eq!(code, 1);
    let at = err.find("== GC summary ==").expect("summary");
    assert!(err[..at].contains("car: expected a pair"));
}

#[test]
fn deep_recursion_and_long_tail_loops() {
    let (_dir, p) = temp_program(
        "deep.scm",
        "(define (f n) (if (= n 0) 0 (+ 1 (f (- n 1)))))\n\
         (display (f 100000)) (newline)\n\
         (display (f 1000000)) (newline)\n\
         (display (let loop ((i 0)) (if (< i 10000000) (loop (+ i 1)) i))) (newline)\n",
    );
    let r = run_program(p.parent().unwrap(), "deep.scm", &MODES[0], &[], &[]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "100000\n1000000\n10000000\n"),
        "{}",
        r.diagnostics
    );
}

#[test]
fn program_arguments_reach_command_line() {
    let (_dir, p) = temp_program("args.scm", "(write (command-line))");
    let r = run_program(
        p.parent().unwrap(),
        "args.scm",
        &MODES[0],
        &[],
        &["a", "b c"],
    );
    assert_eq!(r.stdout, "(\"a\" \"b c\")");
}

#[test]
fn repl_reads_multi_line_input_and_survives_errors() {
    let mut child = Command::new(BIN)
        .arg("repl")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"(define (sq x)\n  (* x x))\n(sq\n 12)\n(car 1)\n\"still alive\"\n(display \"a\n b\")\n'(1\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout, "144\n\"still alive\"\na\n b");
    assert!(stderr.contains("car: expected a pair, got 1"), "{stderr}");
    assert!(stderr.contains("unterminated list"), "{stderr}");
    assert_eq!(out.status.code(), Some(1));
}

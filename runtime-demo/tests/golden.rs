//! Golden-output tests: every program under `tests/golden/` runs through the real binary and its
//! stdout, diagnostics (stderr up to the GC summary) and exit code are compared with
//! `NAME.out`, `NAME.err` (absent = no diagnostics) and `NAME.code` (absent = 0). A first line
//! `;; args: ...` adds command-line options for that program.
//!
//! Each program runs once per GC mode: plain stop-the-world, stop-the-world under GC stress
//! (`--gc-stress 50 --verify`), and the concurrent collector with every strategy × fault
//! delivery combination, also stressed. A mode the heap rejects as unsupported (`Heap::new`
//! returning `ConfigError::Unsupported`, which the binary reports with exit code 2) is skipped
//! with a message; any other failure fails the test.
//!
//! `BLESS=1 cargo test -p runtime-demo --test golden` rewrites the expectation files from the
//! plain stop-the-world run (review the diff!).

mod common;

use common::{golden_dir, mode_supported, run_program, Mode, MODES};

fn cases() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .filter_map(|e| {
            let p = e.ok()?.path();
            if p.extension()? != "scm" {
                return None;
            }
            Some(p.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    names
}

fn expected(name: &str, ext: &str) -> Option<String> {
    std::fs::read_to_string(golden_dir().join(format!("{name}.{ext}"))).ok()
}

/// Hides figures that depend on the collector's timing: the live bytes of an out-of-memory
/// message ("..., 1043112 bytes live of ...").
fn normalize(diag: &str) -> String {
    diag.lines()
        .map(|l| match l.find(" bytes live") {
            Some(end) => {
                let start = l[..end].rfind(' ').map_or(0, |i| i + 1);
                format!("{}N{}\n", &l[..start], &l[end..])
            }
            None => format!("{l}\n"),
        })
        .collect()
}

fn check_mode(mode: &Mode) {
    if let Err(why) = mode_supported(mode) {
        println!("SKIPPED mode {}: {why}", mode.name);
        return;
    }
    let bless = std::env::var("BLESS").is_ok() && mode.name == "stw";
    let mut failures = Vec::new();
    for name in cases() {
        let src = std::fs::read_to_string(golden_dir().join(format!("{name}.scm"))).unwrap();
        let extra: Vec<String> = src
            .lines()
            .next()
            .and_then(|l| l.strip_prefix(";; args:"))
            .map(|a| a.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let file = format!("{name}.scm");
        let r = run_program(&golden_dir(), &file, mode, &extra, &[]);
        if bless {
            let dir = golden_dir();
            std::fs::write(dir.join(format!("{name}.out")), &r.stdout).unwrap();
            let err = dir.join(format!("{name}.err"));
            if r.diagnostics.is_empty() {
                let _ = std::fs::remove_file(err);
            } else {
                std::fs::write(err, &r.diagnostics).unwrap();
            }
            let code = dir.join(format!("{name}.code"));
            if r.code == 0 {
                let _ = std::fs::remove_file(code);
            } else {
                std::fs::write(code, format!("{}\n", r.code)).unwrap();
            }
            continue;
        }
        let want_out = expected(&name, "out").unwrap_or_default();
        let want_err = normalize(&expected(&name, "err").unwrap_or_default());
        let want_code: i32 = expected(&name, "code").map_or(0, |c| c.trim().parse().unwrap());
        let got_err = normalize(&r.diagnostics);
        if r.stdout != want_out || got_err != want_err || r.code != want_code {
            failures.push(format!(
                "--- {name} [{}]: exit {} (want {want_code})\n--- stdout:\n{}\n--- want stdout:\n{}\n--- diagnostics:\n{}\n--- want diagnostics:\n{}",
                mode.name, r.code, r.stdout, want_out, r.diagnostics, want_err
            ));
        }
        if !r.summary_seen {
            failures.push(format!(
                "--- {name} [{}]: no GC summary on stderr",
                mode.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

macro_rules! mode_tests {
    ($($fn_name:ident => $index:expr),* $(,)?) => {
        $(
            #[test]
            fn $fn_name() {
                check_mode(&MODES[$index]);
            }
        )*
    };
}

mode_tests! {
    golden_stw => 0,
    golden_stw_stressed => 1,
    golden_concurrent_copy_sigbus_stressed => 2,
    golden_concurrent_copy_thread_stressed => 3,
    golden_concurrent_move_sigbus_stressed => 4,
    golden_concurrent_move_thread_stressed => 5,
    golden_concurrent_minor_sigbus_stressed => 6,
    golden_concurrent_minor_thread_stressed => 7,
}

#[test]
fn every_mode_has_a_test() {
    assert_eq!(MODES.len(), 8);
}

//! Shared helpers of the integration tests: running the `runtime-demo` binary in a GC mode and
//! splitting its stderr into diagnostics and the GC summary.
//!
//! Invariant: stderr lines the heap prints about itself (`faultline: ...`, e.g. the one-time
//! fallback notice when userfaultfd is unavailable) are not diagnostics and are dropped.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_runtime-demo");

/// A GC mode: a name and the options selecting it.
pub struct Mode {
    pub name: &'static str,
    pub args: &'static [&'static str],
}

/// Every mode the tests run programs in. The first is the plain baseline.
pub const MODES: [Mode; 8] = [
    Mode {
        name: "stw",
        args: &["--gc", "stw"],
    },
    Mode {
        name: "stw-stressed",
        args: &["--gc", "stw", "--gc-stress", "50", "--verify"],
    },
    Mode {
        name: "concurrent-copy-sigbus-stressed",
        args: &[
            "--gc",
            "concurrent",
            "--strategy",
            "copy",
            "--faults",
            "sigbus",
            "--gc-stress",
            "50",
            "--verify",
        ],
    },
    Mode {
        name: "concurrent-copy-thread-stressed",
        args: &[
            "--gc",
            "concurrent",
            "--strategy",
            "copy",
            "--faults",
            "thread",
            "--gc-stress",
            "50",
            "--verify",
        ],
    },
    Mode {
        name: "concurrent-move-sigbus-stressed",
        args: &[
            "--gc",
            "concurrent",
            "--strategy",
            "move",
            "--faults",
            "sigbus",
            "--gc-stress",
            "50",
            "--verify",
        ],
    },
    Mode {
        name: "concurrent-move-thread-stressed",
        args: &[
            "--gc",
            "concurrent",
            "--strategy",
            "move",
            "--faults",
            "thread",
            "--gc-stress",
            "50",
            "--verify",
        ],
    },
    Mode {
        name: "concurrent-minor-sigbus-stressed",
        args: &[
            "--gc",
            "concurrent",
            "--strategy",
            "minor",
            "--faults",
            "sigbus",
            "--gc-stress",
            "50",
            "--verify",
        ],
    },
    Mode {
        name: "concurrent-minor-thread-stressed",
        args: &[
            "--gc",
            "concurrent",
            "--strategy",
            "minor",
            "--faults",
            "thread",
            "--gc-stress",
            "50",
            "--verify",
        ],
    },
];

pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn golden_dir() -> PathBuf {
    crate_dir().join("tests/golden")
}

/// What a run printed.
pub struct RunResult {
    pub stdout: String,
    /// stderr before the GC summary, without the heap's own notices.
    pub diagnostics: String,
    /// The GC summary and anything after it.
    pub summary: String,
    pub summary_seen: bool,
    pub code: i32,
}

/// Runs `file` (relative to `dir`, which becomes the working directory) in `mode`.
pub fn run_program(
    dir: &Path,
    file: &str,
    mode: &Mode,
    extra: &[String],
    prog_args: &[&str],
) -> RunResult {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .arg("run")
        .arg(file)
        .args(mode.args)
        .args(extra);
    if !prog_args.is_empty() {
        cmd.arg("--").args(prog_args);
    }
    let out = cmd.output().expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let (before, summary) = match stderr.find("== GC summary ==") {
        Some(i) => (&stderr[..i], &stderr[i..]),
        None => (&stderr[..], ""),
    };
    let diagnostics: String = before
        .lines()
        .filter(|l| !l.starts_with("faultline: "))
        .map(|l| format!("{l}\n"))
        .collect();
    RunResult {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        diagnostics,
        summary: summary.to_string(),
        summary_seen: !summary.is_empty(),
        code: out.status.code().unwrap_or(-1),
    }
}

/// Whether the heap accepts `mode`: `Err` with the binary's message if it reports the
/// configuration as unsupported. Any other failure panics.
pub fn mode_supported(mode: &Mode) -> Result<(), String> {
    let r = run_program(&golden_dir(), "hello.scm", mode, &[], &[]);
    if r.code == 2
        && r.diagnostics
            .contains("does not support this configuration")
    {
        return Err(r.diagnostics.trim().to_string());
    }
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "hello, world\n"),
        "mode {} fails on hello.scm: {}",
        mode.name,
        r.diagnostics
    );
    Ok(())
}

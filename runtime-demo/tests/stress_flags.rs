//! The torture switches on the command line (`--gc-stress-random N --gc-stress-seed S`,
//! `--gc-phase-delay MS`, `--gc-poison`, with `--verify`): golden programs print exactly their
//! golden output with all of them on, in the stop-the-world and concurrent collectors, and
//! collections did run.

mod common;

use common::{golden_dir, run_program, Mode};

const MODES: [Mode; 2] = [
    Mode {
        name: "stw-torture",
        args: &[
            "--gc",
            "stw",
            "--verify",
            "--gc-stress-random",
            "100",
            "--gc-stress-seed",
            "3",
            "--gc-poison",
        ],
    },
    Mode {
        name: "concurrent-torture",
        args: &[
            "--gc",
            "concurrent",
            "--verify",
            "--gc-stress-random",
            "100",
            "--gc-stress-seed",
            "3",
            "--gc-phase-delay",
            "1",
            "--gc-poison",
        ],
    },
];

#[test]
fn golden_programs_pass_under_every_torture_switch() {
    for mode in &MODES {
        // control.scm runs ~2,000 stressed cycles: too slow with phase delays.
        let progs: &[&str] = if mode.name == "stw-torture" {
            &["lists", "control", "threads"]
        } else {
            &["lists", "threads"]
        };
        for prog in progs {
            let r = run_program(&golden_dir(), &format!("{prog}.scm"), mode, &[], &[]);
            let want = std::fs::read_to_string(golden_dir().join(format!("{prog}.out"))).unwrap();
            assert_eq!(
                (r.code, r.stdout.as_str()),
                (0, want.as_str()),
                "{prog} in {}: {}",
                mode.name,
                r.diagnostics
            );
            assert!(r.summary_seen, "{prog} in {}: no GC summary", mode.name);
            let cycles: u64 = r
                .summary
                .lines()
                .find_map(|l| l.trim().strip_prefix("cycles"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no cycle count in the summary:\n{}", r.summary));
            assert!(cycles > 0, "{prog} in {}: no collection ran", mode.name);
        }
    }
}

//! The Boehm runner end to end (needs `--features boehm` and libgc-dev): every workload in
//! both modes at 4 MiB, run as a child process (libgc is initialised once per process).
#![cfg(feature = "boehm")]

use std::process::Command;

use faultline_peers::record::PeerRecord;

fn run(workload: &str, incremental: bool) -> PeerRecord {
    run_with(workload, incremental, &[])
}

fn run_with(workload: &str, incremental: bool, extra: &[&str]) -> PeerRecord {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline-peers"));
    cmd.args(["boehm", "--workload", workload, "--live-mib", "4"]);
    if incremental {
        cmd.arg("--incremental");
    }
    cmd.args(extra);
    let out = cmd.output().expect("run faultline-peers");
    assert!(
        out.status.success(),
        "{workload}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON record")
}

#[test]
fn every_workload_in_both_modes() {
    for w in ["binary-trees", "gcbench", "fragmentation", "churn"] {
        for inc in [false, true] {
            let r = run(w, inc);
            assert!(r.checksum_ok, "{w}: checksum");
            // 4 MiB live with 8x that allocated cannot finish without collecting.
            assert!(!r.pauses_ms.is_empty(), "{w} incremental={inc}: no pauses");
            assert_eq!(r.pauses_ms.len(), r.pause_starts_s.len());
            assert!(r.pauses_ms.iter().all(|&p| p >= 0.0));
            assert!(r
                .pause_starts_s
                .iter()
                .all(|&s| (0.0..=r.total_s).contains(&s)));
            assert_eq!(r.gc_cpu_s.is_some(), !inc);
            assert_eq!(r.threads, if w == "churn" { 2 } else { 1 });
            assert!(
                r.peak_rss_kib.unwrap() > 4 << 10,
                "{w}: RSS below the live size"
            );
        }
    }
}

#[test]
fn timed_allocations_contain_the_collections_they_triggered() {
    for w in ["binary-trees", "churn"] {
        let r = run_with(w, false, &["--time-allocs"]);
        assert!(r.checksum_ok);
        assert!(!r.stalls_ms.is_empty(), "{w}: no slow allocation recorded");
        assert!(
            r.stalls_ms.iter().all(|&s| s >= 0.05),
            "{w}: below the threshold"
        );
        // Default mode collects inside the allocation call that found no free memory, so
        // every collection of 50 us or more lies inside one recorded slow allocation.
        let eps = 1e-6;
        for (&ps, &pl) in r.pause_starts_s.iter().zip(&r.pauses_ms) {
            if pl < 0.05 {
                continue;
            }
            let inside = r
                .stall_starts_s
                .iter()
                .zip(&r.stalls_ms)
                .any(|(&ss, &sl)| ss <= ps + eps && ss + sl / 1e3 + eps >= ps + pl / 1e3);
            assert!(
                inside,
                "{w}: collection at {ps} s ({pl} ms) not inside an allocation"
            );
        }
    }
}

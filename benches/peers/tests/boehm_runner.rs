//! The Boehm runner end to end (needs `--features boehm` and libgc-dev): every workload in
//! both modes at 4 MiB, run as a child process (libgc is initialised once per process).
#![cfg(feature = "boehm")]

use std::process::Command;

use faultline_peers::record::PeerRecord;

fn run(workload: &str, incremental: bool) -> PeerRecord {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline-peers"));
    cmd.args(["boehm", "--workload", workload, "--live-mib", "4"]);
    if incremental {
        cmd.arg("--incremental");
    }
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

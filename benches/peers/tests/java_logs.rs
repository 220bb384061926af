//! Parsing checked-in HotSpot 17 logs and program output (from real runs of run.sh) into
//! results.json records, with every figure compared against values worked out by hand from
//! the fixture files.

use faultline_peers::javalog::{self, RunFiles};
use faultline_peers::metrics;
use faultline_peers::spec::Workload;

const ZGC_SP: &str = include_str!("data/zgc-churn-16.safepoint.log");
const ZGC_GC: &str = include_str!("data/zgc-churn-16.gc.log");
const ZGC_OUT: &str = include_str!("data/zgc-churn-16.out");
const G1_SP: &str = include_str!("data/g1-fragmentation-4.safepoint.log");
const G1_OUT: &str = include_str!("data/g1-fragmentation-4.out");

fn zgc_files<'a>(sp: &'a str, out: &'a str) -> RunFiles<'a> {
    RunFiles {
        peer: "java-zgc",
        workload: Workload::Churn,
        live_mib: 16,
        threads: 2,
        stdout: out,
        safepoint_log: sp,
        gc_log: Some(ZGC_GC),
        note_prefix: Some("java -Xmx64m"),
        ticks_per_s: 100,
    }
}

#[test]
fn zgc_churn_record() {
    let r = javalog::build_record(&zgc_files(ZGC_SP, ZGC_OUT)).unwrap();
    // 12 safepoints, all inside [start_ns, end_ns]; Total sums to 9 384 732 ns.
    assert_eq!(r.pauses_ms.len(), 12);
    assert_eq!(r.pause_starts_s.len(), 12);
    let sum: f64 = r.pauses_ms.iter().sum();
    assert!((sum - 9.384732).abs() < 1e-9, "{sum}");
    // First: ZMarkStart, Total 8 377 867 ns, logged at 9728212487650 ns; start_ns 9728139116989.
    assert!((r.pauses_ms[0] - 8.377867).abs() < 1e-9);
    assert!((r.pause_starts_s[0] - 0.064992794).abs() < 1e-9);
    assert!(r.pause_starts_s.windows(2).all(|w| w[0] <= w[1]));
    // end_ns - start_ns = 377 325 538 ns.
    assert!((r.total_s - 0.377325538).abs() < 1e-12);
    // 17 Allocation/Relocation Stall lines, the longest 65.918 ms; not counted as pauses.
    assert_eq!(r.stalls_ms.len(), 17);
    assert_eq!(r.stalls_ms.iter().copied().fold(0.0, f64::max), 65.918);
    assert!(r.note.starts_with("java -Xmx64m; "));
    assert!(r.note.contains("ZMarkStart x4"), "{}", r.note);
    assert!(r.note.contains("ZGC Allocation Stalls"), "{}", r.note);
    // GC threads' schedstat ns: ZWorker#0, ZUnmapper, ZUncommitter, ZDriver, ZDirector, ZStat,
    // RuntimeWorker#0 and the VM Thread: 201 134 939 ns.
    assert!((r.gc_cpu_s.unwrap() - 0.201134939).abs() < 1e-12);
    assert_eq!(r.peak_rss_kib, Some(244_640));
    // The Java program's checksum equals the Rust replay of the same random sequence.
    assert!(r.checksum_ok, "checksum {:?}", r.checksum);
    // MMU over 10 ms: the 8.38 ms ZMarkStart fits in one window.
    let m = metrics::mmu(&r.pause_starts_s, &r.pauses_ms, r.total_s, 0.010).unwrap();
    assert!((m - (1.0 - 0.8377867)).abs() < 1e-6, "{m}");
}

#[test]
fn incomplete_or_corrupt_input_is_an_error() {
    let truncated = ZGC_SP.replacen("Total: 8377867 ns", "Tot", 1);
    let err = javalog::build_record(&zgc_files(&truncated, ZGC_OUT)).unwrap_err();
    assert!(err.contains("did not parse"), "{err}");
    let no_end: String = ZGC_OUT
        .lines()
        .filter(|l| !l.starts_with("end_ns="))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(javalog::build_record(&zgc_files(ZGC_SP, &no_end)).is_err());
    let wrong_sum = ZGC_OUT.replace(
        "checksum=5672267268832293951",
        "checksum=5672267268832293952",
    );
    let r = javalog::build_record(&zgc_files(ZGC_SP, &wrong_sum)).unwrap();
    assert!(!r.checksum_ok);
}

#[test]
fn g1_window_and_ticks_fallback() {
    let (points, bad) = javalog::parse_safepoint_log(G1_SP);
    assert_eq!((points.len(), bad), (4, 0));
    assert!(points
        .iter()
        .all(|p| p.operation == "G1CollectForAllocation"));
    // A window starting between the first and second safepoint keeps the last three.
    let (pauses, starts) = javalog::window(&points, 9_717_381_000_000, 9_717_406_282_712);
    assert_eq!(pauses, vec![6.728174, 2.900663, 3.218866]);
    assert!(
        (starts[0] - (9_717_388_230_811u64 - 6_728_174 - 9_717_381_000_000) as f64 / 1e9).abs()
            < 1e-12
    );
    // Without schedstat figures the GC CPU comes from ticks.
    let mut out = javalog::parse_program_output(G1_OUT);
    assert_eq!(out.checksum, Some(284_565_678));
    for t in &mut out.tasks {
        t.on_cpu_ns = None;
    }
    let ticks: u64 = out
        .tasks
        .iter()
        .filter(|t| javalog::is_gc_thread(&t.name))
        .map(|t| t.ticks)
        .sum();
    assert_eq!(
        javalog::gc_cpu_seconds(&out.tasks, 100),
        Some(ticks as f64 / 100.0)
    );
}

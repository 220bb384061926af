//! Registering many types: time and resident memory (issue 13's "registering many types").
//!
//! `cargo run --release --example register-types -- N` registers `N` fixed types (default
//! 10 000; 32-byte payload, two reference slots, names `class0`, `class1`, ...) on one heap
//! while a mutator attached to it allocates an object of each new type and reads it back, and
//! prints the wall time, this process's resident memory (`VmRSS`) before and after, its peak
//! (`VmHWM`) and the growth per type. Run one `N` per process (the figures are the process's).

use std::time::Instant;

use faultline::{Heap, HeapConfig, TypeInfo};

/// A `/proc/self/status` field in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |a| a.parse().expect("N: a number of types"));
    let heap = Heap::new(HeapConfig::with_heap_size(16 << 20)).expect("heap");
    let mut m = heap.attach();
    let rss0 = status_kib("VmRSS");
    let t0 = Instant::now();
    for i in 0..n {
        let t = heap
            .register_type(TypeInfo::fixed(&format!("class{i}"), 32, &[0, 16]))
            .expect("register_type");
        let v = m.alloc(t, 0).expect("alloc");
        let o = m.local(v).expect("an object");
        assert!(o.get(0).is_null());
    }
    let secs = t0.elapsed().as_secs_f64();
    let rss1 = status_kib("VmRSS");
    let hwm = status_kib("VmHWM");
    println!(
        "types {n} seconds {secs:.3} rss_before_mib {:.1} rss_after_mib {:.1} hwm_mib {:.1} bytes_per_type {:.0}",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        hwm as f64 / 1024.0,
        (rss1.saturating_sub(rss0) * 1024) as f64 / n.max(1) as f64
    );
}

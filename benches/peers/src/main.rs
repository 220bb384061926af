//! `faultline-peers`: the helper of `benches/peers/run.sh`.
//!
//! ```text
//! faultline-peers boehm --workload W --live-mib N [--threads T] [--incremental] [--time-allocs]
//!                       [--max-heap-mib M]
//! faultline-peers java-record --peer P --workload W --live-mib N [--threads T]
//!     --stdout F --safepoint-log F [--gc-log F] [--note-prefix TEXT]
//! faultline-peers merge --records F [--missing TEXT]... [--failed TEXT]... --out F
//! faultline-peers expected --workload W --live-mib N [--threads T]
//! faultline-peers summary --results target/peers/results.json
//! ```
//!
//! `summary` prints a Markdown table of every record: pause count, p50/p99/p99.9/max (nearest
//! rank), MMU at 10 and 100 ms, total time, GC CPU, peak RSS, checksum verdict.
//!
//! `boehm` and `java-record` print one JSON record (see `record::PeerRecord`) on stdout and
//! exit non-zero if the workload's checksum is wrong or its output is incomplete.
//!
//! Invariant: a record is printed only for a run that completed; failures go to stderr and
//! to the exit status, never into `pauses_ms`.

use std::collections::HashMap;
use std::process::ExitCode;

use faultline_peers::record::{self, PeerRecord};
use faultline_peers::spec::{self, Workload};
use faultline_peers::{javalog, metrics};

/// `--key value` pairs and bare `--flag`s; repeated keys keep every value.
struct Args(HashMap<String, Vec<String>>);

impl Args {
    fn parse(args: &[String]) -> Result<Args, String> {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        let mut i = 0;
        while i < args.len() {
            let k = args[i]
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {}", args[i]))?;
            let v = match args.get(i + 1) {
                Some(v) if !v.starts_with("--") => {
                    i += 1;
                    v.clone()
                }
                _ => String::new(),
            };
            m.entry(k.to_string()).or_default().push(v);
            i += 1;
        }
        Ok(Args(m))
    }
    fn get(&self, k: &str) -> Result<&str, String> {
        self.0
            .get(k)
            .and_then(|v| v.last())
            .map(String::as_str)
            .ok_or_else(|| format!("missing --{k}"))
    }
    fn num(&self, k: &str, default: Option<u64>) -> Result<u64, String> {
        match (self.get(k), default) {
            (Ok(v), _) => v.parse().map_err(|_| format!("--{k}: not a number: {v}")),
            (Err(_), Some(d)) => Ok(d),
            (Err(e), None) => Err(e),
        }
    }
    #[cfg_attr(not(feature = "boehm"), allow(dead_code))]
    fn flag(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }
    fn all(&self, k: &str) -> Vec<String> {
        self.0.get(k).cloned().unwrap_or_default()
    }
    fn workload(&self) -> Result<Workload, String> {
        let w = self.get("workload")?;
        Workload::parse(w).ok_or_else(|| format!("unknown workload {w}"))
    }
    fn threads(&self, w: Workload) -> Result<u64, String> {
        let multi = matches!(w, Workload::Churn | Workload::Request);
        let t = self.num("threads", Some(if multi { 2 } else { 1 }))?;
        if !multi && t != 1 {
            return Err("--threads applies to churn and request only".into());
        }
        Ok(t.max(1))
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first() else {
        eprintln!("usage: faultline-peers boehm|java-record|merge|expected ...");
        return ExitCode::from(2);
    };
    let result = Args::parse(&argv[1..]).and_then(|a| match cmd.as_str() {
        "boehm" => boehm(&a),
        "java-record" => java_record(&a),
        "merge" => merge(&a),
        "summary" => summary(&a),
        "expected" => {
            let w = a.workload()?;
            let mib = a.num("live-mib", None)?;
            println!("{}", spec::expected_checksum(w, mib, a.threads(w)?));
            Ok(())
        }
        other => Err(format!("unknown command {other}")),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faultline-peers {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_record(r: &PeerRecord) -> Result<(), String> {
    println!("{}", serde_json::to_string(r).map_err(|e| e.to_string())?);
    if r.checksum_ok {
        Ok(())
    } else {
        Err(format!(
            "checksum {:?} != expected {}",
            r.checksum,
            spec::expected_checksum(
                Workload::parse(&r.workload).ok_or("workload")?,
                r.live_mib,
                r.threads
            )
        ))
    }
}

fn java_record(a: &Args) -> Result<(), String> {
    let w = a.workload()?;
    let read = |k: &str| {
        let path = a.get(k)?;
        std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
    };
    let gc = read("gc-log").ok();
    let r = javalog::build_record(&javalog::RunFiles {
        peer: a.get("peer")?,
        workload: w,
        live_mib: a.num("live-mib", None)?,
        threads: a.threads(w)?,
        stdout: &read("stdout")?,
        safepoint_log: &read("safepoint-log")?,
        gc_log: gc.as_deref(),
        note_prefix: a.get("note-prefix").ok(),
        ticks_per_s: record::ticks_per_second(),
    })?;
    print_record(&r)
}

#[cfg(not(feature = "boehm"))]
fn boehm(_: &Args) -> Result<(), String> {
    Err("built without the `boehm` feature (cargo build --features boehm)".into())
}

#[cfg(feature = "boehm")]
fn boehm(a: &Args) -> Result<(), String> {
    use faultline_peers::boehm;
    let w = a.workload()?;
    let live_mib = a.num("live-mib", None)?;
    let threads = a.threads(w)?;
    let incremental = a.flag("incremental");
    let max_heap_mib = a.num("max-heap-mib", Some(0))?;
    let max_heap = (max_heap_mib > 0).then_some((max_heap_mib as usize) << 20);
    // SAFETY: called once, first, from the main thread; the workloads keep every Obj on a
    // stack or in another object (boehm::workloads invariants).
    unsafe { boehm::init(incremental, 1 << 20, max_heap) };
    let time_allocs = a.flag("time-allocs");
    if time_allocs {
        boehm::time_allocations();
    }
    let t0 = boehm::now_ns();
    let (checksum, mutator_tids) = boehm::workloads::run(w, live_mib, threads);
    let t1 = boehm::now_ns();
    let rep = boehm::report();
    let peak_rss_kib = record::vmhwm_kib();
    // libgc's own threads (parallel markers) are every thread that is not a mutator.
    let tasks = record::task_cpu_ns();
    let markers: Vec<_> = tasks
        .iter()
        .filter(|t| !mutator_tids.contains(&t.0))
        .collect();
    let marker_ns: u64 = markers.iter().map(|t| t.2).sum();
    // In incremental mode libgc reports no GC_EVENT_START/END around its marking steps, so
    // the collecting thread's share cannot be separated from the mutator's: not measured.
    let gc_cpu_s = (!incremental).then(|| (rep.collector_thread_cpu_ns + marker_ns) as f64 / 1e9);
    let in_window = |v: &[(u64, u64)]| -> Vec<(u64, u64)> {
        v.iter()
            .copied()
            .filter(|&(s, _)| s >= t0 && s < t1)
            .collect()
    };
    let colls = in_window(&rep.collections);
    let slow = in_window(&rep.slow_allocs);
    let stops = in_window(&rep.stopped);
    let max_ms = |v: &[(u64, u64)]| {
        v.iter()
            .map(|&(s, e)| e.saturating_sub(s) as f64 / 1e6)
            .fold(0.0, f64::max)
    };
    let (chosen, what) = if incremental {
        (
            &stops,
            "pauses = world-stopped intervals (GC_EVENT_PRE_STOP_WORLD..POST_START_WORLD); \
             incremental marking done inside allocation calls is not a pause here",
        )
    } else {
        (
            &colls,
            "pauses = whole collections (GC_EVENT_START..GC_EVENT_END): the allocating thread \
             is blocked throughout and the others are stopped for marking and then wait on the \
             allocation lock",
        )
    };
    let timing = if time_allocs {
        format!(
            "; ALLOCATION TIMING ON (two clock reads per object: total_s is inflated): {} \
             allocation calls of >= {} us in stalls_ms (per thread; they contain the world stops \
             their thread ran), totalling {:.1} ms, max {:.2} ms",
            slow.len(),
            boehm::SLOW_ALLOC_NS / 1000,
            slow.iter().map(|&(s, e)| (e - s) as f64 / 1e6).sum::<f64>(),
            max_ms(&slow)
        )
    } else {
        String::new()
    };
    let note = format!(
        "{what}; {} collections (max {:.2} ms), {} world stops (max {:.2} ms); gc_no {}; heap \
         {} MiB at the end; {} libgc marker thread(s); gc_cpu = CPU of the collecting thread \
         inside GC_EVENT_START..END + all CPU of libgc's marker threads (null in incremental \
         mode: its marking steps are not bracketed by events){}; lazy sweeping inside allocation \
         is not counted; peak RSS = VmHWM; libgc default settings ({}, \
         GC_free_space_divisor 3)",
        colls.len(),
        max_ms(&colls),
        stops.len(),
        max_ms(&stops),
        rep.gc_no,
        rep.heap_bytes >> 20,
        markers.len(),
        if rep.dropped > 0 {
            format!("; {} intervals dropped (buffer full)", rep.dropped)
        } else {
            String::new()
        },
        if max_heap_mib > 0 {
            format!("GC_set_max_heap_size {max_heap_mib} MiB")
        } else {
            "no heap limit".to_string()
        }
    ) + &timing;
    let mut r = PeerRecord {
        peer: if incremental {
            "boehm-incremental"
        } else {
            "boehm"
        }
        .into(),
        workload: w.name().into(),
        live_mib,
        threads,
        pauses_ms: chosen
            .iter()
            .map(|&(s, e)| e.saturating_sub(s) as f64 / 1e6)
            .collect(),
        pause_starts_s: chosen.iter().map(|&(s, _)| (s - t0) as f64 / 1e9).collect(),
        total_s: (t1 - t0) as f64 / 1e9,
        gc_cpu_s,
        peak_rss_kib,
        checksum: Some(checksum),
        checksum_ok: checksum == spec::expected_checksum(w, live_mib, threads),
        collections: Some(colls.len() as u64),
        stalls_ms: slow.iter().map(|&(s, e)| (e - s) as f64 / 1e6).collect(),
        stall_starts_s: slow.iter().map(|&(s, _)| (s - t0) as f64 / 1e9).collect(),
        metered: boehm::workloads::take_metered(),
        note,
    };
    r.sort_by_start();
    print_record(&r)
}

fn merge(a: &Args) -> Result<(), String> {
    let path = a.get("records")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut peers = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|l| !l.1.trim().is_empty()) {
        let r: PeerRecord =
            serde_json::from_str(line).map_err(|e| format!("{path}:{}: {e}", i + 1))?;
        peers.push(r);
    }
    let doc = serde_json::json!({
        "peers": peers,
        "missing": a.all("missing"),
        "failed": a.all("failed"),
    });
    let out = a.get("out")?;
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(out, text + "\n").map_err(|e| format!("{out}: {e}"))?;
    eprintln!("wrote {out}: {} records", peers.len());
    Ok(())
}

fn summary(a: &Args) -> Result<(), String> {
    let path = a.get("results")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let peers: Vec<PeerRecord> =
        serde_json::from_value(doc["peers"].clone()).map_err(|e| e.to_string())?;
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.2}"));
    let frac = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.2}"));
    println!(
        "| live MiB | workload | peer | pauses | p50 ms | p99 ms | p99.9 ms | max ms | MMU 10 ms \
         | MMU 100 ms | stalls: n, max ms | total s | GC CPU s | peak RSS MiB | checksum |"
    );
    println!("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|");
    for r in &peers {
        let mut sorted = r.pauses_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let p = |q| metrics::percentile(&sorted, q);
        let m = |w| metrics::mmu(&r.pause_starts_s, &r.pauses_ms, r.total_s, w);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {} | {} |",
            r.live_mib,
            r.workload,
            r.peer,
            sorted.len(),
            ms(p(50.0)),
            ms(p(99.0)),
            ms(p(99.9)),
            ms(sorted.last().copied()),
            frac(m(0.010)),
            frac(m(0.100)),
            if r.stalls_ms.is_empty() {
                "-".to_string()
            } else {
                let max = r.stalls_ms.iter().copied().fold(0.0, f64::max);
                format!("{}, {max:.1}", r.stalls_ms.len())
            },
            r.total_s,
            r.gc_cpu_s.map_or("-".to_string(), |x| format!("{x:.2}")),
            r.peak_rss_kib
                .map_or("-".to_string(), |k| format!("{}", k / 1024)),
            if r.checksum_ok { "ok" } else { "WRONG" },
        );
    }
    for k in ["missing", "failed"] {
        if let Some(v) = doc[k].as_array().filter(|v| !v.is_empty()) {
            println!("\n{k}:");
            for m in v {
                println!("- {}", m.as_str().unwrap_or_default());
            }
        }
    }
    Ok(())
}

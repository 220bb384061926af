//! Unit checks of the benchmark suite's metrics (`benches/suite/metrics.rs`, compiled here
//! as a module so that `cargo test` runs them): the MMU definition and the percentile order.

#[allow(dead_code)]
#[path = "../benches/suite/metrics.rs"]
mod metrics;

use metrics::{grow_footprint_factor, mmu, next_footprint_factor, percentiles_ms};

#[test]
fn mmu_of_one_pause() {
    // 10 ms pause in a 1 s run.
    let p = [(0.5, 0.51)];
    assert_eq!(mmu(&p, 1.0, 0.005), Some(0.0));
    let u = mmu(&p, 1.0, 0.1).unwrap();
    assert!((u - 0.9).abs() < 1e-9, "{u}");
    assert_eq!(mmu(&p, 1.0, 2.0), None);
    assert_eq!(mmu(&[], 1.0, 0.1), Some(1.0));
}

#[test]
fn percentiles_are_ordered() {
    let xs: Vec<f64> = (1..=1000).map(|i| i as f64 / 10.0).collect();
    let p = percentiles_ms(&xs).unwrap();
    assert!(p.p50 <= p.p99 && p.p99 <= p.p999 && p.p999 <= p.max);
    assert!((p.p50 - 50.0).abs() < 0.1, "{p:?}");
    assert_eq!(p.max, 100.0);
    assert!(percentiles_ms(&[]).is_none());
}

#[test]
fn mmu_is_the_minimum_over_every_window() {
    // Two 1 ms pauses 1 ms apart: MMU is not monotonic in the window width.
    let p = [(0.001, 0.002), (0.003, 0.004)];
    let at = |w: f64| mmu(&p, 0.010, w).unwrap();
    assert!((at(0.002) - 0.5).abs() < 1e-9, "{}", at(0.002));
    assert!((at(0.003) - 1.0 / 3.0).abs() < 1e-9, "{}", at(0.003));
    // Against a brute force over window starts on a fine grid, for pseudo-random pauses.
    let mut x = 0x1234_5678u64;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 10_000) as f64 / 10_000.0
    };
    let mut pauses = Vec::new();
    let mut t = 0.0;
    for _ in 0..20 {
        t += 0.01 + 0.05 * rnd();
        let d = 0.02 * rnd();
        pauses.push((t, t + d));
        t += d;
    }
    let run = t + 0.01;
    for w in [0.001, 0.01, 0.05, 0.2] {
        let exact = mmu(&pauses, run, w).unwrap();
        let mut brute: f64 = 1.0;
        let steps = 20_000;
        for i in 0..=steps {
            let a = (run - w) * i as f64 / steps as f64;
            let stopped: f64 = pauses
                .iter()
                .map(|&(s, e): &(f64, f64)| (e.min(a + w) - s.max(a)).max(0.0))
                .sum();
            brute = brute.min((w - stopped) / w);
        }
        // The exact minimum is never above a sampled one, and the grid gets within its step.
        assert!(exact <= brute + 1e-9, "w {w}: {exact} > {brute}");
        assert!(
            brute - exact < 2.0 * (run / steps as f64) / w + 1e-9,
            "w {w}: {exact} vs {brute}"
        );
    }
}

#[test]
fn metered_latency_counts_queueing_behind_a_stall() {
    use metrics::Schedule;
    // One request every 1 ms, each taking 0.1 ms; request 3 is held up by a 10 ms stall.
    let s = Schedule {
        origin: 0.0,
        interval: 1e-3,
    };
    let mut service = vec![1e-4; 20];
    service[3] = 10e-3 + 1e-4;
    let lat = s.replay(&service);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert!(close(lat[0], 1e-4) && close(lat[2], 1e-4));
    assert!(close(lat[3], 10.1e-3));
    // Request 4 was scheduled at 4 ms but could start only at 13.1 ms: its latency is 9.2 ms,
    // although its own service time is 0.1 ms.
    assert!(close(lat[4], 9.2e-3), "{}", lat[4]);
    // The queue drains by 0.9 ms per request: request 12 still waits 1.9 ms, request 14
    // 0.1 ms, request 15 is on time again.
    assert!(close(lat[12], 2.0e-3), "{}", lat[12]);
    assert!(close(lat[14], 0.2e-3), "{}", lat[14]);
    assert!(close(lat[15], 1e-4), "{}", lat[15]);
    // Never negative: a request done before its scheduled time (clock skew) counts as 0.
    assert_eq!(s.latency(5, 0.0), 0.0);
}

#[test]
fn metered_percentiles_merge_and_order() {
    let mut a = metrics::Metered::default();
    let mut b = metrics::Metered::default();
    for i in 1..=990 {
        a.record(i as f64 * 1e-6);
    }
    for _ in 0..10 {
        b.record(0.05);
    }
    a.merge(&b);
    let p = a.percentiles_ms().unwrap();
    assert_eq!(p.count, 1000);
    assert!(p.p50 <= p.p99 && p.p99 <= p.p999 && p.p999 <= p.max);
    assert!((p.max - 50.0).abs() < 1e-9);
    assert!(p.p50 < 1.0 && p.p999 > 40.0, "{p:?}");
    assert!(metrics::Metered::default().percentiles_ms().is_none());
}

#[test]
fn the_footprint_factor_follows_the_overshoot() {
    // At factor 3 the run used 5x the live size: next try 3 * 3 / 5 * 0.9 = 1.62.
    let f = next_footprint_factor(true, Some(5.0), 3.0, 3.0).unwrap();
    assert!((f - 1.62).abs() < 1e-9, "{f}");
    // Never below 1x; at 1x there is nothing left to try.
    assert_eq!(
        next_footprint_factor(true, Some(100.0), 1.2, 2.0),
        Some(1.0)
    );
    assert_eq!(next_footprint_factor(true, Some(100.0), 1.0, 2.0), None);
    // A failed run, or one without an RSS, ends the search.
    assert_eq!(next_footprint_factor(false, Some(5.0), 3.0, 3.0), None);
    assert_eq!(next_footprint_factor(true, None, 3.0, 3.0), None);
}

#[test]
fn a_footprint_with_room_left_grows_the_factor() {
    // At factor 6 the run used 3.6x of a 6x bound: next try 6 * 6 / 3.6 * 0.9 = 9.
    let f = grow_footprint_factor(Some(3.6), 6.0, 6.0).unwrap();
    assert!((f - 9.0).abs() < 1e-9, "{f}");
    // Within 85 % of the bound: close enough, no growth.
    assert_eq!(grow_footprint_factor(Some(5.2), 6.0, 6.0), None);
    // Over the bound (not a fit) or no RSS: nothing to grow.
    assert_eq!(grow_footprint_factor(Some(7.0), 6.0, 6.0), None);
    assert_eq!(grow_footprint_factor(None, 6.0, 6.0), None);
}

#[test]
fn schedstat_parses_and_reads() {
    assert_eq!(metrics::parse_schedstat("123 456 7\n"), Some((123, 456)));
    assert_eq!(metrics::parse_schedstat("12"), None);
    assert_eq!(metrics::parse_schedstat("x 1 2"), None);
    // This thread's own figures, where the kernel has them: 30 ms of spinning is 30 ms on a
    // CPU or waiting for one (the kernel updates a running thread's figure at ticks and
    // switches, so allow it a tick or two of lag).
    let ss = metrics::SchedStat::open();
    if let Some((cpu0, rq0)) = ss.read() {
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(30) {
            std::hint::spin_loop();
        }
        let (cpu1, rq1) = ss.read().unwrap();
        assert!(cpu1 >= cpu0 && rq1 >= rq0);
        assert!(
            (cpu1 - cpu0) + (rq1 - rq0) >= 15_000_000,
            "{cpu0} -> {cpu1}, {rq0} -> {rq1}"
        );
    }
}

fn sample(lat_ms: f64, rq_ms: f64, wait_ms: f64, phase: u8) -> metrics::TailSample {
    let ns = |ms: f64| (ms * 1e6) as u64;
    let mut wait_ns = [0; 7];
    wait_ns[5] = ns(wait_ms); // fault-stall
    metrics::TailSample {
        latency_ns: ns(lat_ms),
        cpu_ns: ns(0.01),
        run_delay_ns: ns(rq_ms),
        wait_ns,
        phase: [0, phase],
        ..Default::default()
    }
}

#[test]
fn slowest_k_keeps_the_slowest_across_merges() {
    let mut a = metrics::SlowestK::new(3);
    let mut b = metrics::SlowestK::new(3);
    for i in 0..100 {
        a.offer(sample(i as f64 * 0.01, 0.0, 0.0, 0));
        b.offer(sample(i as f64 * 0.02, 0.0, 0.0, 0));
    }
    let mut all = metrics::SlowestK::new(0);
    all.merge(a);
    all.merge(b);
    let mut kept: Vec<u64> = all.samples().iter().map(|s| s.latency_ns).collect();
    kept.sort_unstable();
    assert_eq!(kept, vec![1_940_000, 1_960_000, 1_980_000]);
    // Sums cover every sample offered, not only those kept.
    assert_eq!(all.all[0], 200);
}

#[test]
fn tail_split_counts_what_the_tail_suffered() {
    let mut k = metrics::SlowestK::new(100);
    // 90 fast requests, then 10 slow: 4 with a run delay, 3 with a wait, 3 with neither.
    for _ in 0..90 {
        k.offer(sample(0.05, 0.0, 0.0, 0));
    }
    for _ in 0..4 {
        k.offer(sample(2.0, 1.5, 0.0, 1));
    }
    for _ in 0..3 {
        k.offer(sample(2.0, 0.0, 1.0, 3));
    }
    for _ in 0..3 {
        k.offer(sample(2.0, 0.05, 0.0, 0));
    }
    let t = metrics::tail_split(&k, 1.0, 0.1);
    assert_eq!(t.requests, 10);
    assert!((t.with_run_delay - 0.4).abs() < 1e-9, "{t:?}");
    assert!((t.with_wait - 0.3).abs() < 1e-9, "{t:?}");
    assert!((t.with_neither - 0.3).abs() < 1e-9, "{t:?}");
    assert!((t.mean_run_delay_ms - (4.0 * 1.5 + 3.0 * 0.05) / 10.0).abs() < 1e-6);
    assert!((t.mean_wait_by_cause_ms["fault-stall"] - 0.3).abs() < 1e-6);
    assert_eq!(t.phases.get("marking"), Some(&4));
    assert_eq!(t.phases.get("compacting"), Some(&3));
    assert_eq!(t.phases.get("idle"), Some(&3));
    // Blocked = latency - CPU - run delay.
    let blocked = (4.0 * (2.0 - 0.01 - 1.5) + 6.0 * 2.0 - 6.0 * 0.01 - 3.0 * 0.05) / 10.0;
    assert!((t.mean_blocked_ms - blocked).abs() < 1e-6, "{t:?}");
    assert!((t.all_mean_latency_ms - (90.0 * 0.05 + 20.0) / 100.0).abs() < 1e-6);
}

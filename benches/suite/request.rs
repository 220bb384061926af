//! The request workload (issue 14): a server's shape, measured the way DaCapo Chopin measures
//! latency.
//!
//! `threads` mutator threads serve requests against one shared cache: a table of `slots`
//! entries reachable from a [`GlobalRoot`], evicted first-in first-out (a shared clock picks
//! the slot each new entry replaces, so every entry lives `slots` requests: an LRU under a
//! uniform access pattern). An entry is a node whose first slot holds a byte array of
//! 1-4 KiB (its first 8 bytes are the key) and whose second slot holds a 3-node list; its data
//! word is the key. A request reads a random entry (checks its key against its bytes, reads
//! its list), builds a new entry (allocates and writes ~2.7 KiB) and installs it.
//!
//! Arrivals: a fixed total rate (`FAULTLINE_SUITE_REQUEST_RATE`, default 30 000 requests/s),
//! evenly spaced per thread and staggered across threads (a smoothed schedule, no bursts),
//! each thread's schedule starting 20 ms after it has filled its share of the cache (as the
//! peers' workload, `benches/peers/java/Workloads.java`, does). A
//! thread ahead of its schedule sleeps in a native section (so no pause waits for it, as a
//! server blocked in I/O); a thread behind it starts at once. Latency is measured from each
//! request's *scheduled* start ([`Schedule`]), so a request queued behind a stall counts the
//! stall; allocation stalls are inside requests and so are folded in.
//!
//! Invariants: nothing is held across an allocation or a safepoint except through the value
//! stack, a `Root` or the `GlobalRoot`; the end-of-run check walks every entry and compares its
//! data word, its bytes and its list with the key it was built for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faultline::{AllocError, CyclePhase, GlobalRoot, Heap, Mutator, Value};
use serde::{Deserialize, Serialize};

use super::common::rng::SplitMix;
use super::metrics::{
    tail_split, thread_cpu, Metered, Pct, SchedStat, Schedule, SlowestK, TailSample, TailSplit,
};
use super::workloads::{alloc, Types, Units, WorkResult};

/// Mean bytes an entry occupies (node 32 + bytes ~2.5 KiB + 3 nodes 96).
const ENTRY_BYTES: usize = 32 + 2560 + 8 + 3 * 32;

/// The request workload's own figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MeteredResult {
    /// Metered latency (ms) of every request served.
    pub latency: Option<Pct>,
    /// Requests served (metered; the initial fill is not).
    pub requests: u64,
    /// Scheduled arrival rate, requests per second (all threads).
    pub rate_hz: f64,
    /// Requests served per second of the serving phase (below `rate_hz`: fell behind).
    pub achieved_hz: f64,
    /// The requests above the p99, split by what their threads suffered (waits the heap
    /// recorded, run-queue delay, collector phase); `None` for peers.
    #[serde(default)]
    pub tail_split: Option<TailSplit>,
    /// Diagnosis (`FAULTLINE_SUITE_TAIL_SAMPLES=1`): every kept tail sample (the slowest 1.1 %
    /// of the requests), and the workload's start as `CLOCK_MONOTONIC` ns (to line them up
    /// with a `perf record -k mono` trace); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail_samples: Option<Vec<TailSample>>,
    /// The workload's start, `CLOCK_MONOTONIC` ns (with `tail_samples` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_mono_ns: Option<u64>,
}

/// `CLOCK_MONOTONIC` ns of an `Instant` in the past: the clock read now, less the time
/// elapsed since `t` (`Instant` is `CLOCK_MONOTONIC` on Linux; the two reads are
/// nanoseconds apart). `None` if the clock cannot be read.
fn mono_ns(t: Instant) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } == 0;
    let now = u64::try_from(ts.tv_sec).ok()? * 1_000_000_000 + u64::try_from(ts.tv_nsec).ok()?;
    ok.then(|| now.saturating_sub(t.elapsed().as_nanos() as u64))
}

/// The bar (ms) of a wait or a run delay that counts in [`TailSplit`] (ZGC's p99 at 64 MiB is
/// 0.12 ms: anything above this bar alone could cost the goal).
const TAIL_BAR_MS: f64 = 0.1;

/// One thread's cumulative counters at a point in time (seconds since the origin).
#[derive(Clone, Copy)]
struct Snap {
    at: f64,
    cpu_ns: u64,
    run_delay_ns: u64,
    waits: [u64; 7],
    phase: u8,
}

impl Snap {
    fn take(heap: &Heap, ss: &SchedStat, at: f64) -> Snap {
        let (cpu_ns, run_delay_ns) = ss.read().unwrap_or((0, 0));
        Snap {
            at,
            cpu_ns,
            run_delay_ns,
            waits: faultline::thread_wait_totals().unwrap_or_default(),
            phase: match heap.phase() {
                CyclePhase::Marking => 1,
                CyclePhase::Remark => 2,
                CyclePhase::Compacting => 3,
                _ => 0,
            },
        }
    }

    /// What happened from `self` to `end`, for a request of metered latency `latency` (s).
    fn sample(&self, end: &Snap, latency: f64, thread: usize) -> TailSample {
        let mut wait_ns = [0; 7];
        for (i, w) in wait_ns.iter_mut().enumerate() {
            *w = end.waits[i].saturating_sub(self.waits[i]);
        }
        TailSample {
            latency_ns: (latency * 1e9).round() as u64,
            cpu_ns: end.cpu_ns.saturating_sub(self.cpu_ns),
            run_delay_ns: end.run_delay_ns.saturating_sub(self.run_delay_ns),
            wait_ns,
            phase: [self.phase, end.phase],
            end_s: end.at, // from the thread's origin; the caller adds the origin's offset
            thread: thread as u8,
        }
    }
}

fn rate() -> f64 {
    std::env::var("FAULTLINE_SUITE_REQUEST_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&r: &f64| r > 0.0)
        .unwrap_or(30_000.0)
}

/// Run the request workload.
pub fn run(
    heap: &Heap,
    t: Types,
    live: usize,
    budget: u64,
    threads: usize,
    start: Instant,
) -> Result<WorkResult, String> {
    let slots = (live / ENTRY_BYTES).max(64);
    let table = {
        let mut m = heap.attach();
        let v = alloc(&mut m, t.refs, slots).map_err(|e| format!("request: table: {e}"))?;
        Arc::new(GlobalRoot::new(heap, v))
    };
    let clock = Arc::new(AtomicU64::new(0));
    // Fill the cache (not metered), split over the threads.
    let rate = rate();
    let per_thread = rate / threads as f64;
    let requests = (budget / ENTRY_BYTES as u64).max(slots as u64) / threads as u64;
    // The tail split keeps each thread's slowest 1.1 % of all requests: the run's top 1 % fits
    // even if every one of them was on one thread.
    let keep = (requests * threads as u64).div_ceil(90) as usize + 16;
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let heap = heap.clone();
            let table = table.clone();
            let clock = clock.clone();
            std::thread::Builder::new()
                .name(format!("request-{i}"))
                .spawn(move || {
                    let sched = Schedule {
                        origin: 0.0,
                        interval: 1.0 / per_thread,
                    };
                    // Stagger: thread i's requests sit i/threads of an interval later.
                    let offset = sched.interval * i as f64 / threads as f64;
                    serve(
                        &heap,
                        t,
                        &table,
                        &clock,
                        slots,
                        slots.div_ceil(threads),
                        i,
                        requests,
                        keep,
                        sched,
                        offset,
                        start,
                    )
                    .map_err(|e| format!("request thread {i}: allocation failed: {e}"))
                })
                .expect("spawn a request thread")
        })
        .collect();
    let mut out = WorkResult::empty(threads);
    let mut lat = Metered::default();
    let mut slow = SlowestK::new(0);
    let mut served = 0;
    let mut serving_s: f64 = 0.0;
    for h in handles {
        let (r, m, secs, k) = h
            .join()
            .map_err(|_| "a request thread panicked".to_string())??;
        out.absorb(r);
        lat.merge(&m);
        slow.merge(k);
        served += requests;
        serving_s = serving_s.max(secs);
    }
    if out.check.is_ok() {
        out.check = check(heap, t, &table, slots);
    }
    let latency = lat.percentiles_ms();
    let dump = std::env::var("FAULTLINE_SUITE_TAIL_SAMPLES").is_ok_and(|v| v == "1");
    out.metered = Some(MeteredResult {
        tail_samples: dump.then(|| slow.samples().to_vec()),
        start_mono_ns: if dump { mono_ns(start) } else { None },
        tail_split: latency.map(|p| tail_split(&slow, p.p99, TAIL_BAR_MS)),
        latency,
        requests: served,
        rate_hz: rate,
        achieved_hz: served as f64 / serving_s.max(1e-9),
    });
    Ok(out)
}

/// Build an entry for `key` and leave it on the value stack. Returns the bytes allocated.
fn build_entry(m: &mut Mutator, t: &Types, key: u64, len: usize) -> Result<u64, AllocError> {
    let b = alloc(m, t.bytes, len)?;
    {
        let l = m.local(b).expect("byte array");
        let mut buf = [0u8; 64];
        buf[..8].copy_from_slice(&key.to_le_bytes());
        for (j, x) in buf[8..].iter_mut().enumerate() {
            *x = (key as u8).wrapping_add(j as u8);
        }
        // Mutate the whole array (a few KiB), 64 bytes at a time.
        let mut off = 0;
        while off + 64 <= len {
            l.write_bytes(off, &buf);
            off += 64;
        }
    }
    m.push(b);
    m.push(Value::NULL);
    for j in 0..3u64 {
        let n = alloc(m, t.node, 0)?;
        let next = m.pop().expect("list");
        let l = m.local(n).expect("node");
        l.set(0, next);
        l.set_word(2, key + j);
        m.push(n);
    }
    let e = alloc(m, t.node, 0)?;
    let list = m.pop().expect("list");
    let bytes = m.pop().expect("bytes");
    let l = m.local(e).expect("entry");
    l.set(0, bytes);
    l.set(1, list);
    l.set_word(2, key);
    m.push(e);
    Ok((8 + len.next_multiple_of(8) + 4 * 32) as u64)
}

/// Check one entry: its key, bytes and list agree. `None` if the slot is empty.
fn entry_ok(m: &Mutator, e: Value) -> Option<Result<u64, String>> {
    let l = m.local(e)?;
    let key = l.word(2);
    let b = m.local(l.get(0)).expect("entry bytes");
    let mut k = [0u8; 8];
    b.read_bytes(0, &mut k);
    if u64::from_le_bytes(k) != key {
        return Some(Err(format!(
            "entry {key}: bytes say {}",
            u64::from_le_bytes(k)
        )));
    }
    let mut n = l.get(1);
    let mut want = key + 3;
    while let Some(x) = m.local(n) {
        want -= 1;
        if x.word(2) != want {
            return Some(Err(format!("entry {key}: list has {}", x.word(2))));
        }
        n = x.get(0);
    }
    Some(if want == key {
        Ok(key)
    } else {
        Err(format!("entry {key}: short list"))
    })
}

#[allow(clippy::too_many_arguments)]
fn serve(
    heap: &Heap,
    t: Types,
    table: &GlobalRoot,
    clock: &AtomicU64,
    slots: usize,
    fill: usize,
    id: usize,
    requests: u64,
    keep: usize,
    sched: Schedule,
    offset: f64,
    start: Instant,
) -> Result<(WorkResult, Metered, f64, SlowestK), AllocError> {
    let mut m = heap.attach();
    let cpu0 = thread_cpu();
    let mut rng = SplitMix(0x5e7 + id as u64);
    let mut allocated = 0;
    let mut bad = Ok(());
    let mut one = |m: &mut Mutator, rng: &mut SplitMix| -> Result<(), AllocError> {
        // Read a random entry.
        let tv = table.get(m);
        let e = m.local(tv).expect("table").get(rng.below(slots));
        if let Some(Err(e)) = entry_ok(m, e) {
            if bad.is_ok() {
                bad = Err(e);
            }
        }
        // Build and install a new one.
        let key = clock.fetch_add(1, Ordering::Relaxed);
        let len = 1024 + 8 * rng.below(385);
        allocated += build_entry(m, &t, key, len)?;
        let e = m.pop().expect("entry");
        let tv = table.get(m);
        m.local(tv).expect("table").set(key as usize % slots, e);
        Ok(())
    };
    // Fill (this thread's share of the cache), not metered.
    for _ in 0..fill {
        one(&mut m, &mut rng)?;
        m.safepoint();
    }
    // This thread's schedule starts 20 ms after its own share of the fill (as the peers'
    // workload does): a schedule that started before the fill ended would meter the fill's
    // overrun as a queue behind it.
    let origin = Instant::now() + Duration::from_millis(20);
    let mut lat = Metered::default();
    let mut units = Units::new(start);
    let secs = |t: Instant| t.saturating_duration_since(origin).as_secs_f64();
    let origin_s = origin.saturating_duration_since(start).as_secs_f64();
    // The tail split: keep the slowest 1.1 % of all threads' requests (so this thread's share
    // of the run's top 1 % fits even if every one of them is here), and the counters at the
    // end of the recent requests, to find those at a late request's scheduled start.
    let mut slow = SlowestK::new(keep);
    let ss = SchedStat::open();
    let mut recent: std::collections::VecDeque<Snap> =
        std::collections::VecDeque::with_capacity(4097);
    recent.push_back(Snap::take(heap, &ss, secs(Instant::now())));
    for i in 0..requests {
        let at = sched.at(i) + offset;
        let now = secs(Instant::now());
        if at > now {
            let d = Duration::from_secs_f64(at - now);
            m.native(move || std::thread::sleep(d));
        }
        one(&mut m, &mut rng)?;
        let done = secs(Instant::now());
        let latency = sched.latency(i, done - offset);
        lat.record(latency);
        // The counters when request i was due: at the end of the last request that ended
        // before then (back-to-back requests since), or the oldest kept.
        let end = Snap::take(heap, &ss, done);
        let base = recent
            .iter()
            .rev()
            .find(|s| s.at <= at)
            .or(recent.front())
            .copied()
            .unwrap_or(end);
        let mut sample = base.sample(&end, latency, id);
        sample.end_s += origin_s;
        slow.offer(sample);
        if recent.len() >= 4096 {
            recent.pop_front();
        }
        recent.push_back(end);
        units.poll(&mut m);
    }
    let served_s = secs(Instant::now());
    Ok((
        WorkResult::one_thread(cpu0, &units, allocated, bad),
        lat,
        served_s,
        slow,
    ))
}

/// Every entry in the table is whole.
fn check(heap: &Heap, _t: Types, table: &GlobalRoot, slots: usize) -> Result<(), String> {
    let mut m = heap.attach();
    let mut seen = 0;
    for s in 0..slots {
        if s % 1024 == 0 {
            m.safepoint();
        }
        let tv = table.get(&m);
        let e = m.local(tv).expect("table").get(s);
        match entry_ok(&m, e) {
            Some(Ok(key)) if key as usize % slots == s => seen += 1,
            Some(Ok(key)) => return Err(format!("slot {s} holds key {key}")),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    if seen * 2 < slots {
        return Err(format!("only {seen} of {slots} slots filled"));
    }
    Ok(())
}

//! Section 2, the physical floor: fault round trips (SIGBUS and handler thread),
//! `UFFDIO_COPY` throughput, one-page COPY against MOVE with and without a second running
//! thread, `memcpy` bandwidth and scheduler noise, measured on bare arenas (no heap).

use faultline::testing::heap::ArenaOffset;
use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faultline::testing::heap::fault::reader::FaultReader;
use faultline::testing::heap::fault::sigbus::{register_region, FaultOutcome};
use faultline::testing::heap::uffd::UffdEvent;
use faultline::testing::heap::VolatileArena;
use faultline::testing::heap::{ArenaConfig, FaultDelivery, PAGE_SIZE};

use super::common::{mib, MIB};
use super::opts::Opts;
use super::progress::{stage, tick};
use super::report::{count, ms, us, Report};

/// One page-aligned page.
#[repr(C, align(4096))]
pub struct PageBuf([u8; PAGE_SIZE]);

pub const PATTERN: u8 = 0xA5;
/// Pages per round of the round-trip measurement.
pub const ROUND_PAGES: usize = 512;

/// What the SIGBUS resolver needs; lives (boxed) until the region guard is dropped.
pub struct SigbusCtx {
    pub arena: VolatileArena,
    pub page: Box<PageBuf>,
}

/// Resolve the faulting page by COPY of the prepared page. Async-signal-safe: one ioctl and
/// atomic counters; nothing allocated.
///
/// # Safety
/// `ctx` points to a live [`SigbusCtx`] (it does while the region guard lives).
pub unsafe fn resolve_by_copy(ctx: *const (), addr: usize) -> FaultOutcome {
    // SAFETY: the caller's contract; the context is only read.
    let ctx = unsafe { &*ctx.cast::<SigbusCtx>() };
    if !ctx.arena.contains(addr) {
        return FaultOutcome::NotMine;
    }
    let offset = (addr - ctx.arena.base()) & !(PAGE_SIZE - 1);
    // SAFETY: `page` is one live, readable page.
    match unsafe {
        ctx.arena
            .resolve_copy(ArenaOffset(offset), ctx.page.0.as_ptr(), PAGE_SIZE)
    } {
        Ok(_) => FaultOutcome::Resolved,
        // Chaining crashes the process with the default SIGBUS: loud, not a hang.
        Err(_) => FaultOutcome::NotMine,
    }
}

pub fn read_at(addr: usize) -> u8 {
    // SAFETY: callers pass an address inside a live arena whose absent pages are resolved (by
    // the SIGBUS resolver or the handler thread) before the read completes.
    unsafe { core::ptr::read_volatile(addr as *const u8) }
}

/// Time `n` reads of absent pages of `arena` one by one (after one untimed round); ns.
pub fn fault_latencies(arena: &VolatileArena, n: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    let mut warm = true;
    while out.len() < n {
        let k_max = if warm {
            ROUND_PAGES
        } else {
            (n - out.len()).min(ROUND_PAGES)
        };
        for k in 0..k_max {
            let addr = arena.base() + k * PAGE_SIZE;
            let t = Instant::now();
            let v = read_at(addr);
            let dt = t.elapsed();
            assert_eq!(v, PATTERN, "a resolved page holds the prepared pattern");
            if !warm {
                out.push(dt.as_nanos() as u64);
            }
        }
        arena
            .release(ArenaOffset(0), k_max * PAGE_SIZE)
            .expect("release the round's pages");
        warm = false;
        tick();
    }
    out
}

pub struct Spread {
    pub n: usize,
    pub mean: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

pub fn spread(mut ns: Vec<u64>) -> Spread {
    ns.sort_unstable();
    let q = |p: f64| ns[((ns.len() as f64 * p).ceil() as usize).clamp(1, ns.len()) - 1];
    Spread {
        n: ns.len(),
        mean: ns.iter().sum::<u64>() / ns.len().max(1) as u64,
        p50: q(0.5),
        p99: q(0.99),
        p999: q(0.999),
        max: ns[ns.len() - 1],
    }
}

pub fn sigbus_roundtrip(n: usize) -> Result<Spread, String> {
    let ctx = Box::new(SigbusCtx {
        arena: VolatileArena::new(
            ArenaConfig::new(ROUND_PAGES * PAGE_SIZE).delivery(FaultDelivery::Sigbus),
        )
        .map_err(|e| format!("creating a SIGBUS arena: {e}"))?,
        page: Box::new(PageBuf([PATTERN; PAGE_SIZE])),
    });
    // SAFETY: `ctx` outlives `guard` (dropped first, below), and `resolve_by_copy` is
    // async-signal-safe.
    let guard = unsafe {
        register_region(
            ctx.arena.base(),
            ctx.arena.size(),
            resolve_by_copy,
            (&*ctx as *const SigbusCtx).cast(),
        )
    }
    .map_err(|e| format!("registering the SIGBUS region: {e}"))?;
    let ns = fault_latencies(&ctx.arena, n);
    drop(guard);
    drop(ctx);
    Ok(spread(ns))
}

pub fn thread_roundtrip(n: usize) -> Result<Spread, String> {
    let arena = Arc::new(
        VolatileArena::new(
            ArenaConfig::new(ROUND_PAGES * PAGE_SIZE).delivery(FaultDelivery::Thread),
        )
        .map_err(|e| format!("creating a handler-thread arena: {e}"))?,
    );
    let uffd = arena.uffd().ok_or("the arena has no userfaultfd")?.clone();
    let page = Arc::new(PageBuf([PATTERN; PAGE_SIZE]));
    let a2 = arena.clone();
    let mut reader = FaultReader::spawn(uffd, "pauses-faults", move |ev| {
        if let UffdEvent::PageFault { address, .. } = *ev {
            let offset = (address - a2.base()) & !(PAGE_SIZE - 1);
            // SAFETY: `page` is one live, readable page.
            let _ = unsafe { a2.resolve_copy(ArenaOffset(offset), page.0.as_ptr(), PAGE_SIZE) };
        }
    })
    .map_err(|e| format!("spawning the fault reader: {e}"))?;
    let ns = fault_latencies(&arena, n);
    reader.stop();
    drop(reader);
    Ok(spread(ns))
}

/// MiB/s of `UFFDIO_COPY` into `bytes` of absent arena memory, in calls of `pages` pages
/// (best of `reps`), and ns per page.
pub fn copy_throughput(bytes: usize, pages: usize, reps: usize) -> Result<(f64, f64), String> {
    let arena = VolatileArena::new(ArenaConfig::new(bytes).delivery(FaultDelivery::Sigbus))
        .map_err(|e| format!("creating an arena: {e}"))?;
    let src = vec![PATTERN; pages * PAGE_SIZE];
    let mut best = Duration::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        let mut off = 0;
        while off < bytes {
            // SAFETY: `src` is readable for `pages` pages.
            unsafe { arena.resolve_copy(ArenaOffset(off), src.as_ptr(), pages * PAGE_SIZE) }
                .map_err(|e| format!("UFFDIO_COPY: {e}"))?;
            off += pages * PAGE_SIZE;
        }
        best = best.min(t.elapsed());
        arena
            .release(ArenaOffset(0), bytes)
            .map_err(|e| format!("release: {e}"))?;
        tick();
    }
    let s = best.as_secs_f64();
    Ok((mib(bytes) / s, s * 1e9 / (bytes / PAGE_SIZE) as f64))
}

/// ns per page of one-page `UFFDIO_COPY` and `UFFDIO_MOVE` calls into absent memory (best of
/// `reps`), alone or with a second thread of this process spinning (on the other CPU, if the
/// scheduler keeps it there). A MOVE takes its source page out of the page table, so the
/// kernel must flush that TLB entry on every CPU running this address space; a COPY into an
/// absent entry flushes nothing.
pub fn copy_move_per_page(pages: usize, spinner: bool, reps: usize) -> Result<(f64, f64), String> {
    let len = pages * PAGE_SIZE;
    let arena = VolatileArena::new(ArenaConfig::new(2 * len).delivery(FaultDelivery::Sigbus))
        .map_err(|e| format!("creating an arena: {e}"))?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spin = spinner.then(|| {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
    });
    if spin.is_some() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let page = PageBuf([PATTERN; PAGE_SIZE]);
    let (mut copy, mut mv) = (Duration::MAX, Duration::MAX);
    let result = (|| {
        for _ in 0..reps {
            let t = Instant::now();
            for i in 0..pages {
                // SAFETY: `page` is one readable page.
                unsafe {
                    arena.resolve_copy(ArenaOffset(len + i * PAGE_SIZE), page.0.as_ptr(), PAGE_SIZE)
                }
                .map_err(|e| format!("UFFDIO_COPY: {e}"))?;
            }
            copy = copy.min(t.elapsed());
            arena
                .release(ArenaOffset(len), len)
                .map_err(|e| format!("release: {e}"))?;
            arena
                .populate(ArenaOffset(0), len)
                .map_err(|e| format!("populate: {e}"))?;
            let t = Instant::now();
            for i in 0..pages {
                // SAFETY: the source pages are ours, present, and never read again before
                // the release below.
                unsafe {
                    arena.resolve_move(
                        ArenaOffset(len + i * PAGE_SIZE),
                        ArenaOffset(i * PAGE_SIZE),
                        PAGE_SIZE,
                        false,
                    )
                }
                .map_err(|e| format!("UFFDIO_MOVE: {e}"))?;
            }
            mv = mv.min(t.elapsed());
            arena
                .release(ArenaOffset(0), 2 * len)
                .map_err(|e| format!("release: {e}"))?;
            tick();
        }
        Ok::<(), String>(())
    })();
    stop.store(true, Ordering::Relaxed);
    if let Some(h) = spin {
        let _ = h.join();
    }
    result?;
    let per = |d: Duration| d.as_secs_f64() * 1e9 / pages as f64;
    Ok((per(copy), per(mv)))
}

/// memcpy MiB/s between two resident buffers of `bytes` (median of `reps`).
pub fn memcpy_bandwidth(bytes: usize, reps: usize) -> f64 {
    let src = vec![0x5au8; bytes];
    let mut dst = vec![0xa5u8; bytes];
    let mut xs: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
            tick();
            mib(bytes) / t.elapsed().as_secs_f64()
        })
        .collect();
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Scheduler noise: a busy loop reads the clock for `secs`; returns (gaps over 1 ms, the
/// longest gap). Nothing else of this process runs meanwhile, so the gaps are time the thread
/// was not on a CPU: what every tail latency in this report is exposed to.
pub fn sched_noise(secs: f64) -> (u64, Duration) {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut last = Instant::now();
    let (mut n, mut longest) = (0u64, Duration::ZERO);
    while last < end {
        let now = Instant::now();
        let gap = now - last;
        if gap > Duration::from_millis(1) {
            n += 1;
            longest = longest.max(gap);
            tick();
        }
        last = now;
    }
    (n, longest)
}

pub fn floor_section(opts: &Opts, rep: &mut Report) {
    rep.line("## Physical floor (same run)");
    rep.line("");
    let n = if opts.quick { 5_000 } else { 20_000 };
    stage(format!("floor: {n} SIGBUS round trips"));
    let sig = sigbus_roundtrip(n);
    stage(format!("floor: {n} handler-thread round trips"));
    let thr = thread_roundtrip(n);
    rep.line("Fault round trip: a read of an absent arena page until it returns, the page resolved by one `UFFDIO_COPY` of a prepared page; every fault timed on its own (µs). The handler thread is not pinned.");
    rep.line("");
    rep.line("| delivery | faults | mean | p50 | p99 | p99.9 | max |");
    rep.line("|---|---:|---:|---:|---:|---:|---:|");
    for (name, r) in [
        ("SIGBUS, resolved in the faulting thread", sig),
        ("handler thread (`FaultReader`)", thr),
    ] {
        match r {
            Ok(s) => {
                let f = |ns: u64| us(Duration::from_nanos(ns));
                rep.line(&format!(
                    "| {name} | {} | {} | {} | {} | {} | {} |",
                    count(s.n as u64),
                    f(s.mean),
                    f(s.p50),
                    f(s.p99),
                    f(s.p999),
                    f(s.max)
                ));
            }
            Err(e) => rep.line(&format!("| {name} | unavailable: {e} | | | | | |")),
        }
    }
    rep.line("");
    let copy_bytes = if opts.quick { 16 * MIB } else { 64 * MIB };
    let mem_bytes = if opts.quick { 64 * MIB } else { 256 * MIB };
    rep.line(&format!(
        "Bandwidth: `UFFDIO_COPY` of {} MiB into absent arena memory (best of 3), `memcpy` of a {} MiB resident buffer (median of 5).",
        copy_bytes / MIB,
        mem_bytes / MIB
    ));
    rep.line("");
    rep.line("| operation | MiB/s | ns per 4 KiB page |");
    rep.line("|---|---:|---:|");
    for pages in [1, 16, 64] {
        stage(format!("floor: UFFDIO_COPY throughput, {pages}-page calls"));
        match copy_throughput(copy_bytes, pages, 3) {
            Ok((r, ns)) => rep.line(&format!(
                "| `UFFDIO_COPY`, {pages} page(s) per call | {r:.0} | {ns:.0} |"
            )),
            Err(e) => rep.line(&format!(
                "| `UFFDIO_COPY`, {pages} page(s) per call | {e} | |"
            )),
        }
    }
    let pages = if opts.quick { 1024 } else { 4096 };
    for spinner in [false, true] {
        stage(format!(
            "floor: one-page COPY and MOVE, {}",
            if spinner {
                "second thread spinning"
            } else {
                "alone"
            }
        ));
        let what = if spinner {
            "another thread of the process running"
        } else {
            "the process's only running thread"
        };
        match copy_move_per_page(pages, spinner, 3) {
            Ok((c, m)) => {
                let r = |ns: f64| PAGE_SIZE as f64 / ns * 1e9 / MIB as f64;
                rep.line(&format!(
                    "| `UFFDIO_COPY`, 1 page per call, {what} | {:.0} | {c:.0} |",
                    r(c)
                ));
                rep.line(&format!(
                    "| `UFFDIO_MOVE`, 1 page per call, {what} | {:.0} | {m:.0} |",
                    r(m)
                ));
            }
            Err(e) => rep.line(&format!("| one-page COPY / MOVE, {what} | {e} | |")),
        }
    }
    let noise_secs = if opts.quick { 2.0 } else { 10.0 };
    stage(format!("floor: scheduler noise ({noise_secs} s busy loop)"));
    let (gaps, longest) = sched_noise(noise_secs);
    stage("floor: memcpy bandwidth".into());
    let bw = memcpy_bandwidth(mem_bytes, 5);
    rep.line(&format!(
        "| `memcpy` ({} MiB) | {bw:.0} | {:.0} |",
        mem_bytes / MIB,
        PAGE_SIZE as f64 / (bw * MIB as f64) * 1e9
    ));
    rep.line("");
    rep.line(&format!(
        "Scheduler noise: a busy loop reading the clock for {noise_secs:.0} s (nothing else of this process running) was off the CPU {gaps} times for more than 1 ms, the longest for {} ms. Every tail latency in this report is exposed to this.",
        ms(longest)
    ));
    rep.line("");
}

//! Per-page cost of the userfaultfd operations the heap is built on, with their physical and
//! kernel baselines, all measured in one run so the numbers can be compared with each other:
//!
//! 1. `first_touch/{write,read}`: an ordinary first-touch fault of an anonymous page on a plain,
//!    unregistered mapping (one byte per page of a range freshly `MADV_DONTNEED`ed);
//! 2. `uffd_{zeropage,copy,move,continue}/{1,16,512}`: one resolving ioctl of 1, 16 or 512 pages
//!    into absent pages of a [`VolatileArena`] (CONTINUE on a memfd-backed arena whose page cache
//!    was filled through the fill view; MOVE from pages of the same arena populated beforehand);
//! 3. `populate_512/*`: [`VolatileArena::populate_with`] of 512 pages by `CopyZeros` and by
//!    `ZeroPage`, alone and followed by a write to every page (the copy-on-write fault that
//!    `ZeroPage` defers);
//! 4. `fault_roundtrip/{sigbus_copy,thread_copy_*}`: a mutator's read of an absent arena page
//!    until the read completes, the page resolved by `UFFDIO_COPY` either in the faulting thread's
//!    SIGBUS handler or by a [`FaultReader`] handler thread; the handler thread is measured on the
//!    mutator's CPU (`same_cpu`), on another CPU (`cross_cpu`) and where the scheduler puts it
//!    (`unpinned`), because the placement dominates its cost. After each criterion run a second
//!    pass times every fault individually and prints the spread (percentiles) on stdout;
//! 5. `memcpy/{4KiB,2MiB}`: `memcpy` of one page (cache hot) and of 512 pages, the floor under
//!    COPY;
//! 6. `release/{madvise,batched}_{1,16}`: making runs of 1 or 16 present pages absent (a page
//!    left present between runs, as dead pages lie between live ones), one
//!    [`VolatileArena::release`] (`MADV_DONTNEED`) per run against one
//!    [`VolatileArena::release_many`] (`process_madvise`, a few hundred runs per call), while a
//!    second thread of the process spins, as mutators run beside a collector: every call then
//!    flushes that thread's CPU's TLB too. One iteration releases the whole pattern.
//!
//! Every benchmark reports one *iteration* = one call (or one touch / one fault), with
//! `Throughput::Elements(pages per call)`, so criterion's time per iteration divided by the page
//! count is the cost per page.
//!
//! Invariants:
//! - only the operation is timed: each benchmark works in *rounds* over one 512-page window
//!   (`iter_custom`); a round's preparation (populating MOVE sources, filling the page cache for
//!   CONTINUE) and its clean-up (`VolatileArena::release` / `MADV_DONTNEED`) run outside the
//!   timed region, so every timed call maps pages that were absent;
//! - every timed call succeeds or the benchmark panics (outside signal context); the contents
//!   are checked once per benchmark before it is timed, so a broken operation cannot produce a
//!   fast, wrong number;
//! - no arena page is read while absent except in `fault_roundtrip`, where a resolver is
//!   registered for exactly that arena (an unexpected fault elsewhere still crashes);
//! - transparent huge pages are disabled on every mapping measured here (the arena does it
//!   itself), so a fault maps one 4 KiB page;
//! - CPU pinning is confined to `fault_roundtrip`: the main thread's original affinity is
//!   restored when the group ends.

use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use faultline_heap::fault::reader::FaultReader;
use faultline_heap::fault::sigbus::{register_region, FaultOutcome};
use faultline_heap::uffd::UffdEvent;
use faultline_heap::ArenaOffset;
use faultline_heap::{
    ArenaConfig, Backing, FaultDelivery, PopulateMethod, Resolution, VolatileArena, PAGE_SIZE,
};

const PAGE: usize = PAGE_SIZE;
/// Pages in the window one round works on (the largest call size).
const ROUND_PAGES: usize = 512;
const ROUND: usize = ROUND_PAGES * PAGE;
/// Pages per call for the ioctl benchmarks.
const SIZES: [usize; 3] = [1, 16, 512];
/// Faults timed one by one in the spread pass of each delivery mode.
const SPREAD_FAULTS: usize = 20_000;
/// Byte written into source pages, so a mapped page can be told from a zero page.
const PATTERN: u8 = 0xA5;

/// One page-aligned page.
#[repr(C, align(4096))]
#[derive(Clone, Copy)]
struct Page([u8; PAGE]);

/// `n` page-aligned pages filled with [`PATTERN`] (so they are present and private).
fn pattern_pages(n: usize) -> Vec<Page> {
    vec![Page([PATTERN; PAGE]); n]
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_secs(2));
}

/// Run `iters` timed calls of `pages` pages each, in rounds over the 512-page window.
/// `prepare(len)` runs untimed before a round that will use the first `len` bytes of the window,
/// `call(at)` is timed (`at` = byte offset of the call inside the window) and `reset(len)` runs
/// untimed after the round. Returns the time spent in `call` only.
fn rounds(
    iters: u64,
    pages: usize,
    mut prepare: impl FnMut(usize),
    mut call: impl FnMut(usize),
    mut reset: impl FnMut(usize),
) -> Duration {
    let per_round = (ROUND_PAGES / pages) as u64;
    let mut left = iters;
    let mut total = Duration::ZERO;
    while left > 0 {
        let n = left.min(per_round) as usize;
        let len = n * pages * PAGE;
        prepare(len);
        let start = Instant::now();
        for k in 0..n {
            call(k * pages * PAGE);
        }
        total += start.elapsed();
        reset(len);
        left -= n as u64;
    }
    total
}

fn arena(backing: Backing, delivery: FaultDelivery) -> VolatileArena {
    VolatileArena::new(
        ArenaConfig::new(2 * ROUND)
            .backing(backing)
            .delivery(delivery),
    )
    .expect("create a volatile arena (is userfaultfd available?)")
}

/// Read the byte at `addr` (a page of a mapping that is present or resolvable).
fn read_at(addr: usize) -> u8 {
    // SAFETY: callers pass an address inside a live mapping of this process that is present,
    // or whose fault is resolved (SIGBUS resolver or handler thread) before the read completes.
    unsafe { core::ptr::read_volatile(addr as *const u8) }
}

/// Write `v` at `addr` (same contract as [`read_at`], for a writable mapping).
fn write_at(addr: usize, v: u8) {
    // SAFETY: as in `read_at`; the mappings written here are PROT_READ | PROT_WRITE.
    unsafe { core::ptr::write_volatile(addr as *mut u8, v) }
}

/// A plain anonymous private mapping, never registered with a userfaultfd.
struct PlainMap {
    base: usize,
    len: usize,
}

impl PlainMap {
    fn new(len: usize) -> Self {
        // SAFETY: a fresh anonymous mapping at a kernel-chosen address replaces nothing.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(
            p,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: advice on our own fresh mapping; it discards nothing.
        let r = unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
        assert_eq!(
            r,
            0,
            "madvise(NOHUGEPAGE): {}",
            std::io::Error::last_os_error()
        );
        PlainMap {
            base: p as usize,
            len,
        }
    }

    /// Make `[base, base+len)` absent again.
    fn discard(&self, len: usize) {
        // SAFETY: discarding pages of our own mapping; nothing holds references into it.
        let r = unsafe { libc::madvise(self.base as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        assert_eq!(
            r,
            0,
            "madvise(DONTNEED): {}",
            std::io::Error::last_os_error()
        );
    }
}

impl Drop for PlainMap {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and nothing refers to it any more.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Ordinary first-touch faults.

fn bench_first_touch(c: &mut Criterion) {
    let map = PlainMap::new(ROUND);
    let mut g = c.benchmark_group("first_touch");
    configure(&mut g);
    g.throughput(Throughput::Elements(1));
    g.bench_function("write", |b| {
        b.iter_custom(|iters| {
            rounds(
                iters,
                1,
                |_| {},
                |at| write_at(map.base + at, 1),
                |len| map.discard(len),
            )
        })
    });
    g.bench_function("read", |b| {
        b.iter_custom(|iters| {
            rounds(
                iters,
                1,
                |_| {},
                |at| {
                    black_box(read_at(map.base + at));
                },
                |len| map.discard(len),
            )
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// 2. The resolving ioctls.

fn bench_zeropage(c: &mut Criterion) {
    let a = arena(Backing::Anonymous, FaultDelivery::Sigbus);
    a.populate_with(ArenaOffset(0), PAGE, PopulateMethod::ZeroPage)
        .unwrap();
    assert_eq!(read_at(a.base()), 0);
    a.release(ArenaOffset(0), PAGE).unwrap();

    let mut g = c.benchmark_group("uffd_zeropage");
    configure(&mut g);
    for pages in SIZES {
        g.throughput(Throughput::Elements(pages as u64));
        g.bench_with_input(BenchmarkId::from_parameter(pages), &pages, |b, &pages| {
            b.iter_custom(|iters| {
                rounds(
                    iters,
                    pages,
                    |_| {},
                    |at| {
                        a.populate_with(ArenaOffset(at), pages * PAGE, PopulateMethod::ZeroPage)
                            .unwrap();
                    },
                    |len| a.release(ArenaOffset(0), len).unwrap(),
                )
            })
        });
    }
    g.finish();
}

fn bench_copy(c: &mut Criterion) {
    let a = arena(Backing::Anonymous, FaultDelivery::Sigbus);
    let src = pattern_pages(ROUND_PAGES);
    let src_at = |at: usize| src.as_ptr().cast::<u8>().wrapping_add(at);
    // SAFETY: `src` holds ROUND bytes, so one page at offset 0 is readable.
    let r = unsafe { a.resolve_copy(ArenaOffset(0), src_at(0), PAGE) };
    assert_eq!(r, Ok(Resolution::Mapped));
    assert_eq!(read_at(a.base()), PATTERN);
    a.release(ArenaOffset(0), PAGE).unwrap();

    let mut g = c.benchmark_group("uffd_copy");
    configure(&mut g);
    for pages in SIZES {
        g.throughput(Throughput::Elements(pages as u64));
        g.bench_with_input(BenchmarkId::from_parameter(pages), &pages, |b, &pages| {
            b.iter_custom(|iters| {
                rounds(
                    iters,
                    pages,
                    |_| {},
                    |at| {
                        // SAFETY: `at + pages * PAGE <= ROUND`, the size of `src`.
                        unsafe { a.resolve_copy(ArenaOffset(at), src_at(at), pages * PAGE) }
                            .unwrap();
                    },
                    |len| a.release(ArenaOffset(0), len).unwrap(),
                )
            })
        });
    }
    g.finish();
}

fn bench_move(c: &mut Criterion) {
    let a = arena(Backing::Anonymous, FaultDelivery::Sigbus);
    if !a.can_move() {
        eprintln!("uffd_move: UFFD_FEATURE_MOVE not offered by this kernel; skipped");
        return;
    }
    // Destination window: [0, ROUND); source window: [ROUND, 2 * ROUND).
    let src = pattern_pages(1);
    // SAFETY: `src` is one readable page.
    unsafe { a.resolve_copy(ArenaOffset(ROUND), src.as_ptr().cast(), PAGE) }.unwrap();
    // SAFETY: the source page is not read at its old place afterwards.
    let r = unsafe { a.resolve_move(ArenaOffset(0), ArenaOffset(ROUND), PAGE, false) };
    assert_eq!(r, Ok(Resolution::Mapped));
    assert_eq!(read_at(a.base()), PATTERN);
    a.release(ArenaOffset(0), PAGE).unwrap();

    let mut g = c.benchmark_group("uffd_move");
    configure(&mut g);
    for pages in SIZES {
        g.throughput(Throughput::Elements(pages as u64));
        g.bench_with_input(BenchmarkId::from_parameter(pages), &pages, |b, &pages| {
            b.iter_custom(|iters| {
                rounds(
                    iters,
                    pages,
                    // Sources: private zero-filled pages, present and exclusive (COPY).
                    |len| {
                        a.populate_with(ArenaOffset(ROUND), len, PopulateMethod::CopyZeros)
                            .unwrap();
                    },
                    |at| {
                        // SAFETY: nothing reads the source window; it is repopulated before
                        // the next round.
                        unsafe {
                            a.resolve_move(
                                ArenaOffset(at),
                                ArenaOffset(ROUND + at),
                                pages * PAGE,
                                false,
                            )
                        }
                        .unwrap();
                    },
                    |len| a.release(ArenaOffset(0), len).unwrap(),
                )
            })
        });
    }
    g.finish();
}

fn bench_continue(c: &mut Criterion) {
    let a = arena(Backing::Memfd, FaultDelivery::Sigbus);
    let fill = a.fill_view_addr(ArenaOffset(0)).unwrap();
    let src = pattern_pages(1);
    // Fill the page cache of `[0, len)` through the unregistered fill view.
    let fill_cache = |len: usize| {
        for at in (0..len).step_by(PAGE) {
            // SAFETY: the fill view is a live, writable, unregistered shared mapping of the
            // whole arena and `at < len <= ROUND <= arena size`; `src` is one page.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    src.as_ptr().cast::<u8>(),
                    (fill + at) as *mut u8,
                    PAGE,
                )
            };
        }
    };
    fill_cache(PAGE);
    assert_eq!(
        a.resolve_continue(ArenaOffset(0), PAGE),
        Ok(Resolution::Mapped)
    );
    assert_eq!(read_at(a.base()), PATTERN);
    a.release(ArenaOffset(0), PAGE).unwrap();

    let mut g = c.benchmark_group("uffd_continue");
    configure(&mut g);
    for pages in SIZES {
        g.throughput(Throughput::Elements(pages as u64));
        g.bench_with_input(BenchmarkId::from_parameter(pages), &pages, |b, &pages| {
            b.iter_custom(|iters| {
                rounds(
                    iters,
                    pages,
                    fill_cache,
                    |at| {
                        a.resolve_continue(ArenaOffset(at), pages * PAGE).unwrap();
                    },
                    // The hole punch frees the page cache and unmaps the registered view.
                    |len| a.release(ArenaOffset(0), len).unwrap(),
                )
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// 3. Populate methods.

fn bench_populate(c: &mut Criterion) {
    let a = arena(Backing::Anonymous, FaultDelivery::Sigbus);
    let write_all = |len: usize| {
        for at in (0..len).step_by(PAGE) {
            write_at(a.base() + at, 1);
        }
    };
    let variants: [(&str, PopulateMethod, bool); 4] = [
        ("copy_zeros", PopulateMethod::CopyZeros, false),
        ("zeropage", PopulateMethod::ZeroPage, false),
        ("copy_zeros+write", PopulateMethod::CopyZeros, true),
        ("zeropage+write", PopulateMethod::ZeroPage, true),
    ];
    for (_, method, write) in variants {
        a.populate_with(ArenaOffset(0), ROUND, method).unwrap();
        if write {
            write_all(ROUND);
        }
        assert_eq!(read_at(a.base() + ROUND - PAGE), u8::from(write));
        a.release(ArenaOffset(0), ROUND).unwrap();
    }

    let mut g = c.benchmark_group("populate_512");
    configure(&mut g);
    g.throughput(Throughput::Elements(ROUND_PAGES as u64));
    for (name, method, write) in variants {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rounds(
                    iters,
                    ROUND_PAGES,
                    |_| {},
                    |at| {
                        a.populate_with(ArenaOffset(at), ROUND, method).unwrap();
                        if write {
                            write_all(ROUND);
                        }
                    },
                    |len| a.release(ArenaOffset(0), len).unwrap(),
                )
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// 4. Fault round trip: SIGBUS in the faulting thread vs a handler thread.

/// What the SIGBUS resolver needs; lives (boxed) until the region guard is dropped.
struct SigbusCtx {
    arena: VolatileArena,
    page: Box<Page>,
}

/// Resolve the faulting page of `ctx.arena` by COPY of `ctx.page`. Async-signal-safe: the
/// arena's resolve path makes one ioctl and bumps atomic counters; it allocates nothing.
///
/// # Safety
/// `ctx` must point to a live [`SigbusCtx`] (it does while the region guard lives).
unsafe fn resolve_by_copy(ctx: *const (), addr: usize) -> FaultOutcome {
    // SAFETY: the caller's contract; the context is only read.
    let ctx = unsafe { &*ctx.cast::<SigbusCtx>() };
    if !ctx.arena.contains(addr) {
        return FaultOutcome::NotMine;
    }
    let offset = (addr - ctx.arena.base()) & !(PAGE - 1);
    // SAFETY: `page` is one live, readable page.
    match unsafe {
        ctx.arena
            .resolve_copy(ArenaOffset(offset), ctx.page.0.as_ptr(), PAGE)
    } {
        Ok(_) => FaultOutcome::Resolved,
        // Chaining crashes the process with the default SIGBUS: loud, not a hang.
        Err(_) => FaultOutcome::NotMine,
    }
}

/// Time every one of `faults` reads of absent pages of `arena` individually; returns ns.
fn fault_latencies(arena: &VolatileArena, faults: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(faults);
    while out.len() < faults {
        let n = (faults - out.len()).min(ROUND_PAGES);
        for k in 0..n {
            let addr = arena.base() + k * PAGE;
            let t = Instant::now();
            let v = read_at(addr);
            let dt = t.elapsed();
            assert_eq!(v, PATTERN);
            out.push(dt.as_nanos() as u64);
        }
        arena.release(ArenaOffset(0), n * PAGE).unwrap();
    }
    out
}

fn print_spread(label: &str, mut ns: Vec<u64>) {
    ns.sort_unstable();
    let q = |p: f64| ns[((ns.len() - 1) as f64 * p).round() as usize];
    let mean = ns.iter().sum::<u64>() / ns.len() as u64;
    println!(
        "fault_roundtrip spread {label:<22} n={:<6} mean={mean} min={} p10={} p50={} p90={} p99={} p99.9={} max={} (ns per fault)",
        ns.len(),
        ns[0],
        q(0.10),
        q(0.50),
        q(0.90),
        q(0.99),
        q(0.999),
        ns[ns.len() - 1],
    );
}

/// CPU the fault-reader thread should run on ([`ANY_CPU`]: wherever the scheduler puts it).
/// Read by the handler at every event; it re-pins itself when the wish changes.
static HANDLER_CPU: AtomicUsize = AtomicUsize::new(ANY_CPU);
const ANY_CPU: usize = usize::MAX;

/// The calling thread's CPU affinity mask.
fn affinity() -> libc::cpu_set_t {
    // SAFETY: `cpu_set_t` is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: `set` is a live cpu_set_t of the size passed; 0 = the calling thread.
    let r = unsafe { libc::sched_getaffinity(0, core::mem::size_of_val(&set), &mut set) };
    assert_eq!(
        r,
        0,
        "sched_getaffinity: {}",
        std::io::Error::last_os_error()
    );
    set
}

/// Restrict the calling thread to `set`.
fn set_affinity(set: &libc::cpu_set_t) {
    // SAFETY: `set` is a live cpu_set_t of the size passed; 0 = the calling thread.
    let r = unsafe { libc::sched_setaffinity(0, core::mem::size_of_val(set), set) };
    assert_eq!(
        r,
        0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
}

/// The set holding `cpu` only (or `all` for [`ANY_CPU`]).
fn cpu_set(cpu: usize, all: &libc::cpu_set_t) -> libc::cpu_set_t {
    if cpu == ANY_CPU {
        return *all;
    }
    // SAFETY: as in `affinity`.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: `cpu` < CPU_SETSIZE (it came from `cpus_in`); `set` is live.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set
}

/// The CPUs in `set`, in order.
fn cpus_in(set: &libc::cpu_set_t) -> Vec<usize> {
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` < CPU_SETSIZE; `set` is a live cpu_set_t.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, set) })
        .collect()
}

fn bench_fault_roundtrip(c: &mut Criterion) {
    let all = affinity();
    let cpus = cpus_in(&all);

    // SIGBUS delivery: the resolver runs in the faulting thread.
    let ctx = Box::new(SigbusCtx {
        arena: arena(Backing::Anonymous, FaultDelivery::Sigbus),
        page: Box::new(Page([PATTERN; PAGE])),
    });
    // SAFETY: `ctx` outlives `guard` (dropped explicitly below, before `ctx`), and
    // `resolve_by_copy` is async-signal-safe.
    let guard = unsafe {
        register_region(
            ctx.arena.base(),
            ctx.arena.size(),
            resolve_by_copy,
            (&raw const *ctx).cast(),
        )
    }
    .expect("register the SIGBUS region");
    let sig = &ctx.arena;
    assert_eq!(read_at(sig.base()), PATTERN);
    sig.release(ArenaOffset(0), PAGE).unwrap();

    // Handler-thread delivery: a FaultReader resolves by COPY, which wakes the faulter.
    let thr = Arc::new(arena(Backing::Anonymous, FaultDelivery::Thread));
    let src = Box::new(Page([PATTERN; PAGE]));
    let handler_arena = thr.clone();
    let uffd = thr
        .uffd()
        .expect("a Thread-delivery arena is registered")
        .clone();
    let mut pinned = ANY_CPU;
    let reader = FaultReader::spawn(uffd, "bench-fault-reader", move |ev| {
        let want = HANDLER_CPU.load(Ordering::Relaxed);
        if want != pinned {
            set_affinity(&cpu_set(want, &all));
            pinned = want;
        }
        if let UffdEvent::PageFault { address, .. } = *ev {
            let a = &handler_arena;
            let offset = (address - a.base()) & !(PAGE - 1);
            // SAFETY: `src` (owned by this closure) is one live, readable page.
            match unsafe { a.resolve_copy(ArenaOffset(offset), src.0.as_ptr(), PAGE) } {
                Ok(Resolution::Mapped) => {}
                // Someone else mapped it; the faulter may still sleep: wake it.
                Ok(Resolution::AlreadyPresent) => a.wake(ArenaOffset(offset), PAGE).unwrap(),
                Err(e) => {
                    eprintln!("fault reader: {e}");
                    std::process::abort();
                }
            }
        }
    })
    .expect("spawn the fault reader");
    assert_eq!(read_at(thr.base()), PATTERN);
    thr.release(ArenaOffset(0), PAGE).unwrap();

    // (name, arena, mutator CPU, handler CPU). With handler-thread delivery the round trip
    // depends on whether the two threads share a CPU (a local switch) or not (a cross-CPU
    // wake-up of a possibly idle CPU, twice per fault), so both placements are measured, and
    // the unpinned one shows what the scheduler picks.
    let mut variants: Vec<(&str, &VolatileArena, usize, usize)> = vec![
        ("sigbus_copy", sig, cpus[0], ANY_CPU),
        ("thread_copy_same_cpu", &thr, cpus[0], cpus[0]),
    ];
    if let Some(&other) = cpus.get(1) {
        variants.push(("thread_copy_cross_cpu", &thr, cpus[0], other));
    }
    variants.push(("thread_copy_unpinned", &thr, ANY_CPU, ANY_CPU));

    let mut g = c.benchmark_group("fault_roundtrip");
    configure(&mut g);
    g.throughput(Throughput::Elements(1));
    for (name, a, mutator_cpu, handler_cpu) in variants {
        set_affinity(&cpu_set(mutator_cpu, &all));
        HANDLER_CPU.store(handler_cpu, Ordering::Relaxed);
        // One untimed fault lets the handler apply its new placement.
        assert_eq!(read_at(a.base()), PATTERN);
        a.release(ArenaOffset(0), PAGE).unwrap();
        let ran = Cell::new(0u64);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                ran.set(ran.get() + iters);
                rounds(
                    iters,
                    1,
                    |_| {},
                    |at| {
                        black_box(read_at(a.base() + at));
                    },
                    |len| a.release(ArenaOffset(0), len).unwrap(),
                )
            })
        });
        // The spread pass runs only when criterion really measured (not under `cargo test`,
        // not when filtered out or listing): a test run calls each routine once.
        if ran.get() > 1000 {
            print_spread(name, fault_latencies(a, SPREAD_FAULTS));
        }
    }
    g.finish();
    set_affinity(&all);
    HANDLER_CPU.store(ANY_CPU, Ordering::Relaxed);

    drop(reader);
    drop(guard);
    drop(ctx);
}

// ---------------------------------------------------------------------------------------------
// 5. memcpy: the physical floor under COPY.

fn bench_memcpy(c: &mut Criterion) {
    let src = pattern_pages(ROUND_PAGES);
    let mut dst = vec![Page([0; PAGE]); ROUND_PAGES];
    let mut g = c.benchmark_group("memcpy");
    configure(&mut g);
    for (name, pages) in [("4KiB", 1usize), ("2MiB", ROUND_PAGES)] {
        g.throughput(Throughput::Elements(pages as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                // SAFETY: both buffers hold ROUND_PAGES >= `pages` pages and do not overlap.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        black_box(src.as_ptr().cast::<u8>()),
                        black_box(dst.as_mut_ptr().cast::<u8>()),
                        pages * PAGE,
                    )
                };
                black_box(&mut dst);
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// 6. Releasing scattered runs: one MADV_DONTNEED per run vs one process_madvise per batch.

fn bench_release(c: &mut Criterion) {
    let a = arena(Backing::Anonymous, FaultDelivery::Sigbus);
    let pages = 2 * ROUND_PAGES;
    // A second thread of this process, busy on the other CPU while releases are timed.
    let stop = Arc::new(AtomicUsize::new(0));
    let spinner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while stop.load(Ordering::Relaxed) == 0 {
                n = black_box(n.wrapping_add(1));
            }
        })
    };
    let mut g = c.benchmark_group("release");
    configure(&mut g);
    for run in [1, 16] {
        let ranges: Vec<(ArenaOffset, usize)> = (0..pages / (run + 1))
            .map(|i| (ArenaOffset(i * (run + 1) * PAGE), run * PAGE))
            .collect();
        let released = |p: usize| p % (run + 1) < run && p / (run + 1) < ranges.len();
        g.throughput(Throughput::Elements((ranges.len() * run) as u64));
        for batched in [false, true] {
            let release = || {
                if batched {
                    a.release_many(&ranges).unwrap();
                } else {
                    for &(o, l) in &ranges {
                        a.release(o, l).unwrap();
                    }
                }
            };
            let refill = || {
                a.release(ArenaOffset(0), pages * PAGE).unwrap();
                a.populate(ArenaOffset(0), pages * PAGE).unwrap();
            };
            // Checked once before timing: exactly the runs are absent, the gaps present.
            refill();
            release();
            for p in 0..pages {
                assert_eq!(a.page_mapped(a.base() + p * PAGE), !released(p), "page {p}");
            }
            let name = format!("{}_{run}", if batched { "batched" } else { "madvise" });
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        refill();
                        let start = Instant::now();
                        release();
                        total += start.elapsed();
                    }
                    total
                })
            });
        }
    }
    g.finish();
    stop.store(1, Ordering::Relaxed);
    spinner.join().unwrap();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_first_touch(&mut c);
    bench_zeropage(&mut c);
    bench_copy(&mut c);
    bench_move(&mut c);
    bench_continue(&mut c);
    bench_populate(&mut c);
    bench_fault_roundtrip(&mut c);
    bench_memcpy(&mut c);
    bench_release(&mut c);
    c.final_summary();
}

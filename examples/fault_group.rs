//! Faults that fill the unclaimed pages of their group (`HeapConfig::fault_group_pages`): what
//! a mutator pays to read data a compaction has not filled yet, by how many pages a fault may
//! take.
//!
//! Each round builds, on a fresh concurrent copy/sigbus heap, a list of `CELLS` cells with a
//! garbage pair between cells (every page moves), and an array of `CELLS` byte strings
//! (garbage between them too); starts a collection whose compaction worker sleeps on its
//! first claim (`DebugConfig::worker_stall`, so every page the mutator touches is filled by
//! its own faults, as when the workers are starved of CPU), and after the flip reads either
//! the whole list in order (`seq`) or one string in four, at random (`rand`). Prints per
//! `fault_group_pages` the reading thread's CPU time (its faults' signal delivery, fill and
//! mapping included; not inflated by waiting for a CPU), the faults, the pages they filled
//! after their own, and the fault stalls (all, and those not preempted), medians over the
//! rounds, the settings alternated within each round.
//!
//! Besides those it prints, per fault, the resolver's own split (µs filling the page, µs in
//! the mapping call) and the CPU a fault costs the reader: the read's thread CPU less that of
//! the same read repeated once every page is mapped, over the faults. `FAULT_GROUPS` (a
//! comma-separated list) measures only those group sizes; `FAULT_STRATEGY=move` runs the move
//! strategy (a fault fills a free old page and moves it) instead of the copy strategy.
//!
//! `[FAULT_GROUPS=1] [FAULT_STRATEGY=move] cargo run --release --example fault_group [-- ROUNDS]`

use std::time::{Duration, Instant};

use faultline::testing::thread_cpu;
use faultline::{FaultMode, GcMode, Heap, HeapConfig, Mutator, Root, Strategy, TypeInfo, Value};

const CELLS: usize = 120_000;
const GROUPS: [u32; 4] = [1, 4, 8, 16];

struct Row {
    cpu_ms: f64,
    wall_ms: f64,
    faults: u64,
    neighbours: u64,
    p99_us: f64,
    max_us: f64,
    unpre_p99_us: f64,
    unpre_max_us: f64,
    /// Per fault: µs filling the page, µs in the mapping call (the resolver's own split).
    fill_us: f64,
    map_us: f64,
    /// The same read again once every page is mapped (no faults): its thread CPU.
    again_ms: f64,
}

fn round(group: u32, random: bool, seed: u64) -> Row {
    let heap = Heap::new(HeapConfig::with_heap_size(64 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        // `FAULT_STRATEGY=move`: the move strategy (a fault fills a free old page and moves
        // it) instead of the copy strategy.
        c.strategy = match std::env::var("FAULT_STRATEGY").as_deref() {
            Ok("move") => Strategy::Move,
            _ => Strategy::Copy,
        };
        c.faults = FaultMode::Sigbus;
        c.gc_threads = 1;
        c.compaction_workers = Some(1);
        c.fault_group_pages = group;
        c.min_trigger_bytes = 64 << 20;
        c.debug.compaction_delay = Some(Duration::from_millis(300));
    }))
    .expect("heap");
    faultline::count_fault_context_switches(true);
    let pair = heap
        .register_type(TypeInfo::fixed("pair", 16, &[0, 8]))
        .unwrap();
    let string = heap.register_type(TypeInfo::byte_array("string")).unwrap();
    let vector = heap.register_type(TypeInfo::ref_array("vector")).unwrap();
    let mut m = heap.attach();
    let root = if random {
        let v = m.alloc(vector, CELLS).unwrap();
        let table = m.root(v);
        for i in 0..CELLS {
            m.alloc(pair, 0).unwrap();
            let s = m.alloc(string, 16).unwrap();
            table.get(&m).unwrap().set(i, s);
        }
        table
    } else {
        m.push(Value::NULL);
        for i in (0..CELLS).rev() {
            m.alloc(pair, 0).unwrap();
            let p = m.alloc(pair, 0).unwrap();
            let tail = m.pop().unwrap();
            let l = m.local(p).unwrap();
            l.set(0, Value::immediate((i << 3) | 1).unwrap());
            l.set(1, tail);
            m.push(p);
        }
        let head = m.pop().unwrap();
        m.root(head)
    };
    let before = root.value(&m);
    m.start_collection().unwrap();
    while root.value(&m).bits() == before.bits() {
        m.safepoint();
        std::thread::sleep(Duration::from_micros(200));
    }
    std::thread::sleep(Duration::from_millis(20));
    let b0 = heap.fault_breakdown();
    if std::env::var_os("FAULT_GROUP_DEBUG").is_some() {
        eprintln!("before the read: {} cycles done", heap.history().len());
    }
    let (c0, t0) = (thread_cpu(), Instant::now());
    let sum = read(&m, &root, random, seed);
    let (cpu, wall) = (thread_cpu() - c0, t0.elapsed());
    std::hint::black_box(sum);
    heap.wait_for_compaction();
    let c1 = thread_cpu();
    std::hint::black_box(read(&m, &root, random, seed));
    let again = thread_cpu() - c1;
    let b1 = heap.fault_breakdown();
    let f = heap.fault_stats();
    if std::env::var_os("FAULT_GROUP_DEBUG").is_some() {
        for c in heap.history() {
            eprintln!(
                "cycle {} compact {:?} filled {} by fault {} moving_before {}",
                c.cycle, c.compact, c.pages_filled, c.pages_by_fault, c.moving_before
            );
        }
        eprintln!("{b1:?}");
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let faults = b1.faults - b0.faults;
    let per_fault = |d: Duration| us(d) / faults.max(1) as f64;
    Row {
        cpu_ms: cpu.as_secs_f64() * 1e3,
        wall_ms: wall.as_secs_f64() * 1e3,
        faults,
        neighbours: b1.neighbours - b0.neighbours,
        p99_us: us(f.p99),
        max_us: us(f.max),
        unpre_p99_us: us(b1.unpreempted.p99),
        unpre_max_us: us(b1.unpreempted.max),
        fill_us: per_fault(b1.fill - b0.fill),
        map_us: per_fault(b1.map - b0.map),
        again_ms: again.as_secs_f64() * 1e3,
    }
}

/// Read the structure built by [`round`]: the whole list in order, or a quarter of the
/// strings at random (seeded); returns a checksum.
fn read(m: &Mutator, root: &Root, random: bool, seed: u64) -> u64 {
    let mut sum = 0u64;
    if random {
        let table = root.get(m).unwrap();
        let mut x = seed | 1;
        for _ in 0..CELLS / 4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let s = table.get((x % CELLS as u64) as usize);
            sum += m.local(s).unwrap().len() as u64;
        }
    } else {
        let mut v = root.value(m);
        while let Some(p) = m.local(v) {
            sum += p.get(0).bits() as u64 >> 3;
            v = p.get(1);
        }
    }
    sum
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    // `FAULT_GROUPS=1` (a comma-separated list) measures only those group sizes.
    let groups: Vec<u32> = match std::env::var("FAULT_GROUPS") {
        Ok(v) => v.split(',').filter_map(|g| g.trim().parse().ok()).collect(),
        Err(_) => GROUPS.to_vec(),
    };
    println!("| order | fault_group_pages | read CPU ms | read wall ms | faults | neighbour pages | stall p99 / max µs | not preempted p99 / max µs | fill / map µs per fault | read again CPU ms | CPU per fault µs |");
    println!("|---|---:|---:|---:|---:|---:|---|---|---|---:|---:|");
    for random in [false, true] {
        let mut rows: Vec<Vec<Row>> = groups.iter().map(|_| Vec::new()).collect();
        for r in 0..rounds {
            let order: Vec<usize> = if r % 2 == 0 {
                (0..groups.len()).collect()
            } else {
                (0..groups.len()).rev().collect()
            };
            for i in order {
                rows[i].push(round(groups[i], random, 0x9e37 + r as u64));
            }
        }
        for (i, rs) in rows.iter().enumerate() {
            let med = |f: &dyn Fn(&Row) -> f64| median(rs.iter().map(f).collect());
            println!(
                "| {} | {} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} / {:.0} | {:.0} / {:.0} | {:.2} / {:.2} | {:.2} | {:.2} |",
                if random { "rand" } else { "seq" },
                groups[i],
                med(&|r| r.cpu_ms),
                med(&|r| r.wall_ms),
                med(&|r| r.faults as f64),
                med(&|r| r.neighbours as f64),
                med(&|r| r.p99_us),
                med(&|r| r.max_us),
                med(&|r| r.unpre_p99_us),
                med(&|r| r.unpre_max_us),
                med(&|r| r.fill_us),
                med(&|r| r.map_us),
                med(&|r| r.again_ms),
                med(&|r| (r.cpu_ms - r.again_ms) * 1e3 / r.faults.max(1) as f64),
            );
        }
    }
}

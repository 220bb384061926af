//! The five workloads of WORKLOADS.md on libgc, in safe code over [`super::Obj`].
//!
//! Invariants: the random draws happen in exactly the order WORKLOADS.md gives (so the
//! checksums equal `spec::expected_checksum`); every `Obj` lives in a local variable or in
//! another object, never in Rust heap memory (see the parent module).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::{alloc, gettid, now_ns, registered, Obj};
use crate::record::MeteredLatency;
use crate::spec::{self, Rng, Workload};

/// A `{left, right, value}` node (2 references, 1 data word: 32 nominal bytes).
fn node(left: Option<Obj>, right: Option<Obj>, value: u64) -> Obj {
    let n = alloc(3, 2);
    n.set_ref(0, left);
    n.set_ref(1, right);
    n.set(2, value);
    n
}

/// A complete tree of depth `d`, children before parents; every node holds `value`.
fn tree(d: u32, value: u64) -> Obj {
    if d == 0 {
        node(None, None, value)
    } else {
        let l = tree(d - 1, value);
        let r = tree(d - 1, value);
        node(Some(l), Some(r), value)
    }
}

/// Nodes reachable from `t` (a tree of `node`s or gcbench nodes).
fn count(t: Obj) -> u64 {
    match (t.get_ref(0), t.get_ref(1)) {
        (Some(l), Some(r)) => 1 + count(l) + count(r),
        _ => 1,
    }
}

/// Sum of the `value` words of a tree of `node`s (wrapping).
fn sum(t: Obj) -> u64 {
    let own = t.get(2);
    match (t.get_ref(0), t.get_ref(1)) {
        (Some(l), Some(r)) => own.wrapping_add(sum(l)).wrapping_add(sum(r)),
        _ => own,
    }
}

/// A two-level root table: a reference array of chunks of `TABLE_CHUNK` slots.
struct Table {
    top: Obj,
}

impl Table {
    fn new(slots: u64) -> Table {
        let chunks = slots.div_ceil(spec::TABLE_CHUNK) as usize;
        let top = alloc(chunks, chunks);
        for c in 0..chunks {
            let chunk = alloc(spec::TABLE_CHUNK as usize, spec::TABLE_CHUNK as usize);
            top.set_ref(c, Some(chunk));
        }
        Table { top }
    }
    fn chunk(&self, i: u64) -> Obj {
        self.top
            .get_ref((i / spec::TABLE_CHUNK) as usize)
            .expect("table chunk")
    }
    fn get(&self, i: u64) -> Obj {
        self.chunk(i)
            .get_ref((i % spec::TABLE_CHUNK) as usize)
            .expect("table slot")
    }
    fn set(&self, i: u64, v: Obj) {
        self.chunk(i)
            .set_ref((i % spec::TABLE_CHUNK) as usize, Some(v));
    }
}

fn binary_trees(live_mib: u64) -> u64 {
    let long_lived = tree(spec::bt_long_depth(live_mib), 0);
    let mut check = 0u64;
    for (d, n) in spec::bt_rounds(live_mib) {
        for _ in 0..n {
            check += count(tree(d, u64::from(d)));
        }
    }
    check + count(long_lived)
}

/// A gcbench node `{left, right, i, j}` (2 references, 2 data words: 40 nominal bytes).
fn gnode(left: Option<Obj>, right: Option<Obj>) -> Obj {
    let n = alloc(4, 2);
    n.set_ref(0, left);
    n.set_ref(1, right);
    n
}

/// GCBench's `Populate`: children are allocated before they are filled in (top-down).
fn populate(d: u32, n: Obj) {
    if d == 0 {
        return;
    }
    let l = gnode(None, None);
    n.set_ref(0, Some(l));
    let r = gnode(None, None);
    n.set_ref(1, Some(r));
    populate(d - 1, l);
    populate(d - 1, r);
}

/// GCBench's `MakeTree` (bottom-up).
fn make_tree(d: u32) -> Obj {
    if d == 0 {
        gnode(None, None)
    } else {
        let l = make_tree(d - 1);
        let r = make_tree(d - 1);
        gnode(Some(l), Some(r))
    }
}

fn gcbench(live_mib: u64) -> u64 {
    let long_lived = gnode(None, None);
    populate(spec::gcb_long_depth(live_mib), long_lived);
    let nchunks = spec::gcb_chunks(live_mib);
    let chunks = alloc(nchunks as usize, nchunks as usize);
    let per = spec::GCB_CHUNK_DOUBLES;
    for c in 0..nchunks {
        let chunk = alloc(per as usize, 0);
        for k in 0..per {
            chunk.set(k as usize, ((c * per + k) as f64).to_bits());
        }
        chunks.set_ref(c as usize, Some(chunk));
    }
    let mut check = 0u64;
    for (d, n) in spec::gcb_rounds(live_mib) {
        for _ in 0..n {
            let top_down = gnode(None, None);
            populate(d, top_down);
            check += count(top_down);
            check += count(make_tree(d));
        }
    }
    check += count(long_lived);
    for c in 0..nchunks {
        let chunk = chunks.get_ref(c as usize).expect("gcbench chunk");
        check += f64::from_bits(chunk.get((c % per) as usize)) as u64;
    }
    check
}

fn fragmentation(live_mib: u64) -> u64 {
    let s = spec::frag_slots(live_mib);
    let mut rng = Rng::new(spec::SEED);
    let table = Table::new(s);
    let make = |id: u64, words: u64| {
        let o = alloc(words as usize, 0);
        o.set(0, id);
        o.set(1, words);
        o
    };
    for i in 0..s {
        let words = spec::frag_words(&mut rng);
        table.set(i, make(i, words));
    }
    for step in 0..spec::STEPS_PER_SLOT * s {
        let idx = rng.below(s);
        let words = spec::frag_words(&mut rng);
        table.set(idx, make(s + step, words));
    }
    (0..s).fold(0u64, |acc, i| {
        let o = table.get(i);
        acc.wrapping_add(o.get(0)).wrapping_add(o.get(1))
    })
}

/// One churn mutator: its own table of depth-4 trees, replaced at random.
fn churn_thread(live_mib: u64, threads: u64, t: u64) -> u64 {
    let k = spec::churn_slots(live_mib, threads);
    let mut rng = Rng::new(spec::churn_seed(t));
    let table = Table::new(k);
    for i in 0..k {
        let v = rng.next_u64();
        table.set(i, tree(spec::CHURN_TREE_DEPTH, v));
    }
    for _ in 0..spec::STEPS_PER_SLOT * k {
        let idx = rng.below(k);
        let v = rng.next_u64();
        table.set(idx, tree(spec::CHURN_TREE_DEPTH, v));
    }
    (0..k).fold(0u64, |acc, i| acc.wrapping_add(sum(table.get(i))))
}

fn churn(live_mib: u64, threads: u64) -> (u64, Vec<u64>) {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::Builder::new()
                .name(format!("mutator-{t}"))
                .spawn(move || registered(|| (gettid(), churn_thread(live_mib, threads, t))))
                .expect("spawn mutator")
        })
        .collect();
    let mut total = 0u64;
    let mut tids = Vec::new();
    for h in handles {
        let (tid, sum) = h.join().expect("mutator panicked");
        tids.push(tid);
        total = total.wrapping_add(sum);
    }
    (total, tids)
}

/// Runs a workload on the calling (main) thread; returns its checksum and the thread ids of
/// every mutator (the caller's included).
pub fn run(w: Workload, live_mib: u64, threads: u64) -> (u64, Vec<u64>) {
    let (checksum, mut tids) = match w {
        Workload::BinaryTrees => (binary_trees(live_mib), Vec::new()),
        Workload::GcBench => (gcbench(live_mib), Vec::new()),
        Workload::Fragmentation => (fragmentation(live_mib), Vec::new()),
        Workload::Churn => churn(live_mib, threads),
        Workload::Request => request(live_mib, threads),
    };
    tids.push(gettid());
    (checksum, tids)
}

/// The request workload's latencies (ns) and achieved rate, left for the runner.
static METERED: Mutex<Option<(Vec<u64>, f64)>> = Mutex::new(None);

/// The metered latency of the last request run (`None` after another workload).
pub fn take_metered() -> Option<MeteredLatency> {
    let (v, achieved) = METERED.lock().ok()?.take()?;
    Some(MeteredLatency::from_ns(v, spec::REQUEST_RATE_HZ, achieved))
}

/// A cache entry for `key`: node {bytes, list, key}; bytes = `words` data words (word 0 = the
/// key, the rest written); list = 3 nodes holding key+2, key+1, key (head first).
fn request_entry(key: u64, words: usize) -> Obj {
    let bytes = alloc(words, 0);
    for i in 0..words {
        bytes.set(i, if i == 0 { key } else { key ^ i as u64 });
    }
    let mut list = None;
    for j in 0..3u64 {
        list = Some(node(list, None, key + j));
    }
    let e = alloc(3, 2);
    e.set_ref(0, Some(bytes));
    e.set_ref(1, list);
    e.set(2, key);
    e
}

/// 1 if the entry in `slot` is whole (or the slot is empty), 0 otherwise.
fn request_check(e: Option<Obj>) -> u64 {
    let Some(e) = e else { return 1 };
    let key = e.get(2);
    let bytes = e.get_ref(0).expect("entry bytes");
    let mut ok = bytes.get(0) == key;
    let mut n = e.get_ref(1);
    let mut want = key + 3;
    while let Some(x) = n {
        want -= 1;
        ok &= x.get(2) == want;
        n = x.get_ref(0);
    }
    u64::from(ok && want == key)
}

fn request_thread(
    table: usize,
    clock: &AtomicU64,
    live_mib: u64,
    threads: u64,
    t: u64,
) -> (u64, Vec<u64>, u64) {
    // SAFETY: the table is kept reachable by the main thread (a registered stack) until every
    // request thread has been joined.
    let top = unsafe { Obj::from_addr(table) };
    let table = Table { top };
    let slots = spec::request_slots(live_mib);
    let mut rng = Rng::new(spec::request_seed(t));
    let one = |rng: &mut Rng| -> u64 {
        let s = rng.below(slots);
        let ok = request_check(table.chunk(s).get_ref((s % spec::TABLE_CHUNK) as usize));
        let key = clock.fetch_add(1, Ordering::Relaxed);
        let words = (1024 + 8 * rng.below(385)) as usize / 8;
        let e = request_entry(key, words);
        table.set(key % slots, e);
        ok
    };
    let mut check = 0;
    for _ in 0..spec::request_fill(live_mib, threads) {
        check += one(&mut rng);
    }
    let n = spec::request_count(live_mib, threads);
    let interval = threads as f64 * 1e9 / spec::REQUEST_RATE_HZ;
    let offset = interval * t as f64 / threads as f64;
    let origin = now_ns() + 20_000_000;
    let mut lat = Vec::with_capacity(n as usize);
    for i in 0..n {
        let at = origin + (i as f64 * interval + offset) as u64;
        let now = now_ns();
        if at > now {
            std::thread::sleep(std::time::Duration::from_nanos(at - now));
        }
        check += one(&mut rng);
        lat.push(now_ns().saturating_sub(at));
    }
    (check, lat, now_ns().saturating_sub(origin))
}

/// The request workload (WORKLOADS.md 5): `threads` threads serve requests against one shared
/// cache at a fixed total arrival rate; latency from each request's scheduled start.
fn request(live_mib: u64, threads: u64) -> (u64, Vec<u64>) {
    let slots = spec::request_slots(live_mib);
    let table = Table::new(slots);
    let addr = table.top.addr();
    let clock = AtomicU64::new(0);
    let (sum, tids, lat, secs) = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let clock = &clock;
                sc.spawn(move || {
                    registered(|| {
                        let (c, l, ns) = request_thread(addr, clock, live_mib, threads, t);
                        (gettid(), c, l, ns)
                    })
                })
            })
            .collect();
        let mut sum = 0u64;
        let mut tids = Vec::new();
        let mut lat = Vec::new();
        let mut secs: f64 = 0.0;
        for h in hs {
            let (tid, c, l, ns) = h.join().expect("request thread panicked");
            sum += c;
            tids.push(tid);
            lat.extend(l);
            secs = secs.max(ns as f64 / 1e9);
        }
        (sum, tids, lat, secs)
    });
    // The table stays reachable from this stack until here.
    std::hint::black_box(table.top);
    let achieved = lat.len() as f64 / secs.max(1e-9);
    if let Ok(mut m) = METERED.lock() {
        *m = Some((lat, achieved));
    }
    (sum, tids)
}

//! The four peer workloads as numbers: the seeded generator, the parameters derived from the
//! nominal live size, and the checksum every implementation must print.
//!
//! `benches/peers/WORKLOADS.md` is the prose version of this module; the two must agree.
//! The checksums here are computed without allocating the structures (closed forms for the
//! tree workloads, a replay of the random sequence for the others), so they check an
//! implementation independently of any collector.
//!
//! Invariants:
//! - every parameter is a pure function of (workload, live MiB, threads): implementations in
//!   Rust, Java and C that follow WORKLOADS.md draw the same random numbers in the same order;
//! - checksums use wrapping 64-bit arithmetic (Java `long` overflow, Rust `wrapping_add`).

/// The generator's seed (thread `t` of `churn` uses `SEED + t + 1`, wrapping).
pub const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// xorshift64* (Vigna): three shifts on the state, then one multiply of the output.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator with a non-zero seed.
    pub fn new(seed: u64) -> Rng {
        assert_ne!(seed, 0, "xorshift64* needs a non-zero seed");
        Rng(seed)
    }
    /// The next 64-bit output.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// `next_u64() % n` (unsigned; Java `Long.remainderUnsigned`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The workloads, by their names in results.json.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Binary trees (the Benchmarks Game's shape).
    BinaryTrees,
    /// Boehm's GCBench.
    GcBench,
    /// Objects of random sizes, a fraction kept (fragments the heap).
    Fragmentation,
    /// Several mutators replacing parts of a shared structure.
    Churn,
    /// Requests at a fixed arrival rate against a shared cache; metered latency.
    Request,
}

impl Workload {
    /// All five, in report order.
    pub const ALL: [Workload; 5] = [
        Workload::BinaryTrees,
        Workload::GcBench,
        Workload::Fragmentation,
        Workload::Churn,
        Workload::Request,
    ];
    /// The name used on command lines and in results.json.
    pub fn name(self) -> &'static str {
        match self {
            Workload::BinaryTrees => "binary-trees",
            Workload::GcBench => "gcbench",
            Workload::Fragmentation => "fragmentation",
            Workload::Churn => "churn",
            Workload::Request => "request",
        }
    }
    /// Parses a name produced by [`Workload::name`].
    pub fn parse(s: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == s)
    }
}

/// Nominal live bytes.
pub fn live_bytes(live_mib: u64) -> u64 {
    live_mib << 20
}

/// floor(log2(n)), n > 0.
fn log2(n: u64) -> u32 {
    63 - n.leading_zeros()
}

/// Nodes in a complete binary tree of depth `d` (a single node has depth 0).
pub fn tree_nodes(d: u32) -> u64 {
    (1u64 << (d + 1)) - 1
}

/// binary-trees: depth of the long-lived tree (32-byte nominal nodes: header + left, right,
/// value), so that the tree is about the live size.
pub fn bt_long_depth(live_mib: u64) -> u32 {
    log2(live_bytes(live_mib) / 32).saturating_sub(1).max(4)
}

/// binary-trees: (depth, iterations) of the temporary trees: depths 4, 8, 12, 16 up to the
/// long-lived depth, `2^(L + 1 - d)` trees each, i.e. about twice the long-lived tree's nodes
/// per depth.
pub fn bt_rounds(live_mib: u64) -> Vec<(u32, u64)> {
    let l = bt_long_depth(live_mib);
    (4..=16)
        .step_by(4)
        .filter(|&d| d <= l)
        .map(|d| (d, 1u64 << (l + 1 - d)))
        .collect()
}

/// gcbench: depth of the long-lived tree (40-byte nominal nodes: header + left, right, i, j).
pub fn gcb_long_depth(live_mib: u64) -> u32 {
    log2(live_bytes(live_mib) / 32).saturating_sub(2).max(4)
}

/// gcbench: number of long-lived 64 KiB chunks of 8192 doubles (about live / 4 bytes).
pub fn gcb_chunks(live_mib: u64) -> u64 {
    (live_bytes(live_mib) / 262_144).max(1)
}

/// Doubles per gcbench chunk.
pub const GCB_CHUNK_DOUBLES: u64 = 8192;

/// gcbench: (depth, iterations): depths 4, 6, .. up to min(16, long-lived depth);
/// `max(1, 2^(L - d - 1))` iterations, each one top-down and one bottom-up tree.
pub fn gcb_rounds(live_mib: u64) -> Vec<(u32, u64)> {
    let l = gcb_long_depth(live_mib);
    (4..=16.min(l))
        .step_by(2)
        .map(|d| (d, 1u64 << (l - d).saturating_sub(1)))
        .collect()
}

/// fragmentation: number of slots (704 nominal bytes per object on average).
pub fn frag_slots(live_mib: u64) -> u64 {
    live_bytes(live_mib) / 704
}

/// Slots per chunk of the two-level root tables of `fragmentation` and `churn`.
pub const TABLE_CHUNK: u64 = 1024;

/// fragmentation: the payload size in words of the next object: two draws.
pub fn frag_words(rng: &mut Rng) -> u64 {
    let r = rng.below(100);
    if r < 50 {
        2 + rng.below(7)
    } else if r < 85 {
        16 + rng.below(48)
    } else if r < 99 {
        128 + rng.below(384)
    } else {
        1024 + rng.below(3072)
    }
}

/// Replacement steps per slot in `fragmentation` and `churn` (allocation = 8 x live).
pub const STEPS_PER_SLOT: u64 = 8;

/// churn: depth of every tree (31 nodes of 32 nominal bytes).
pub const CHURN_TREE_DEPTH: u32 = 4;

/// churn: slots per thread.
pub fn churn_slots(live_mib: u64, threads: u64) -> u64 {
    (live_bytes(live_mib) / threads / (tree_nodes(CHURN_TREE_DEPTH) * 32)).max(1)
}

/// The seed of churn thread `t`.
pub fn churn_seed(t: u64) -> u64 {
    SEED.wrapping_add(t + 1)
}

/// request: nominal bytes of one cache entry (node 32 + byte array 8 + 2560 mean + 3 list
/// nodes of 32).
pub const REQUEST_ENTRY_BYTES: u64 = 32 + 8 + 2560 + 3 * 32;
/// request: scheduled arrival rate, requests per second, all threads together.
pub const REQUEST_RATE_HZ: f64 = 30_000.0;

/// request: slots of the shared cache.
pub fn request_slots(live_mib: u64) -> u64 {
    (live_bytes(live_mib) / REQUEST_ENTRY_BYTES).max(64)
}

/// request: unmetered requests per thread that fill the cache first.
pub fn request_fill(live_mib: u64, threads: u64) -> u64 {
    request_slots(live_mib).div_ceil(threads)
}

/// request: metered requests per thread (4 x the live size allocated in all).
pub fn request_count(live_mib: u64, threads: u64) -> u64 {
    (4 * live_bytes(live_mib) / REQUEST_ENTRY_BYTES).max(request_slots(live_mib)) / threads
}

/// The seed of request thread `t`.
pub fn request_seed(t: u64) -> u64 {
    SEED.wrapping_add(0x100 + t)
}

/// Nearest-rank percentile `q` (0..=1) of sorted `v` (0 if empty): the definition every
/// implementation of the request workload uses.
pub fn nearest_rank(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let k = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[k - 1]
}

/// The checksum an implementation must print for this workload.
pub fn expected_checksum(w: Workload, live_mib: u64, threads: u64) -> u64 {
    match w {
        Workload::BinaryTrees => {
            let temp: u64 = bt_rounds(live_mib)
                .iter()
                .map(|&(d, n)| n * tree_nodes(d))
                .sum();
            temp + tree_nodes(bt_long_depth(live_mib))
        }
        Workload::GcBench => {
            let temp: u64 = gcb_rounds(live_mib)
                .iter()
                .map(|&(d, n)| 2 * n * tree_nodes(d))
                .sum();
            let chunks: u64 = (0..gcb_chunks(live_mib))
                .map(|c| c * GCB_CHUNK_DOUBLES + c % GCB_CHUNK_DOUBLES)
                .sum();
            temp + tree_nodes(gcb_long_depth(live_mib)) + chunks
        }
        Workload::Fragmentation => {
            let s = frag_slots(live_mib);
            let mut rng = Rng::new(SEED);
            // (id, words) of the object in each slot.
            let mut slots: Vec<(u64, u64)> = (0..s).map(|i| (i, frag_words(&mut rng))).collect();
            for step in 0..STEPS_PER_SLOT * s {
                let idx = rng.below(s) as usize;
                let words = frag_words(&mut rng);
                slots[idx] = (s + step, words);
            }
            slots
                .iter()
                .fold(0u64, |acc, &(id, n)| acc.wrapping_add(id).wrapping_add(n))
        }
        Workload::Churn => (0..threads).fold(0u64, |acc, t| {
            let k = churn_slots(live_mib, threads);
            let mut rng = Rng::new(churn_seed(t));
            let mut values: Vec<u64> = (0..k).map(|_| rng.next_u64()).collect();
            for _ in 0..STEPS_PER_SLOT * k {
                let idx = rng.below(k) as usize;
                values[idx] = rng.next_u64();
            }
            let nodes = tree_nodes(CHURN_TREE_DEPTH);
            values
                .iter()
                .fold(acc, |a, &v| a.wrapping_add(v.wrapping_mul(nodes)))
        }),
        // Every request (fill included) that read a whole entry or an empty slot counts 1.
        Workload::Request => {
            threads * (request_fill(live_mib, threads) + request_count(live_mib, threads))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xorshift64star_first_outputs() {
        // Computed by hand from the definition for seed 1: x = 1 ^ (1 << 25) = 0x2000001,
        // then x ^= x >> 27 leaves it unchanged; output = x * M.
        let mut r = Rng::new(1);
        assert_eq!(
            r.next_u64(),
            0x0200_0001u64.wrapping_mul(0x2545_F491_4F6C_DD1D)
        );
        // The generator never returns to a zero state and does not repeat immediately.
        let a = r.next_u64();
        let b = r.next_u64();
        assert_ne!(a, b);
    }

    #[test]
    fn parameters_match_the_spec_table() {
        assert_eq!(
            [4, 16, 64, 1024].map(bt_long_depth),
            [16, 18, 20, 24],
            "binary-trees depths"
        );
        assert_eq!([4, 16, 64, 1024].map(gcb_long_depth), [15, 17, 19, 23]);
        assert_eq!(bt_rounds(4), vec![(4, 8192), (8, 512), (12, 32), (16, 2)]);
        assert_eq!(gcb_rounds(4).first(), Some(&(4, 1024)));
        assert_eq!(gcb_rounds(4).last(), Some(&(14, 1)));
        assert_eq!(gcb_chunks(64), 256);
        assert_eq!(
            [4, 16, 64, 1024].map(frag_slots),
            [5_957, 23_831, 95_325, 1_525_201]
        );
        assert_eq!(
            [4, 16, 64, 1024].map(|m| churn_slots(m, 2)),
            [2_114, 8_456, 33_825, 541_200]
        );
    }

    #[test]
    fn fragmentation_sizes_have_the_documented_mean() {
        let mut rng = Rng::new(SEED);
        let n = 400_000u64;
        let total: u64 = (0..n).map(|_| frag_words(&mut rng)).sum();
        let mean = total as f64 / n as f64;
        // Exact mean: 0.5*5 + 0.35*39.5 + 0.14*319.5 + 0.01*2559.5 = 86.65 words.
        assert!((mean - 86.65).abs() < 2.0, "mean payload {mean} words");
    }

    #[test]
    fn tree_checksums_are_closed_forms() {
        // binary-trees at 4 MiB: 4 rounds of 2^(L+1-d) trees of 2^(d+1)-1 nodes, plus the tree.
        let l = 16;
        let want: u64 = [4u32, 8, 12, 16]
            .iter()
            .map(|&d| (1u64 << (l + 1 - d)) * ((1u64 << (d + 1)) - 1))
            .sum::<u64>()
            + (1u64 << (l + 1))
            - 1;
        assert_eq!(expected_checksum(Workload::BinaryTrees, 4, 1), want);
        assert_ne!(
            expected_checksum(Workload::Fragmentation, 4, 1),
            expected_checksum(Workload::Fragmentation, 16, 1)
        );
    }
}

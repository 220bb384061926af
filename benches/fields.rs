//! Field access cost: typed views ([`faultline::heap_struct!`], [`Typed::get`] / [`Typed::set`])
//! against the word-index path ([`Local::get`] / [`Local::set`] / [`Local::word`] /
//! [`Local::set_word`]), on the same objects (issue 13, item 6: the typed path must not be
//! more than 10 % slower).
//!
//! Setup, untimed: a 64 MiB heap (no collection runs: the trigger is the whole half), one
//! `Node { left: Ref, right: Ref, key: u64, weight: f64 }` type, 4096 nodes allocated
//! consecutively and held in a rooted reference array, each node's `left` naming the next and
//! `key` its index.
//!
//! Benchmarks (criterion *elements* are field accesses, so its throughput figure is accesses
//! per second; ns/access = time per iteration / accesses per iteration):
//! - `access_read/{index,typed}`: one iteration reads the 4 fields of one node (2 references,
//!   a `u64`, an `f64`) through a `Local` / `Typed` made before the timed loop: the accessors
//!   alone;
//! - `access_write/{index,typed}`: one iteration writes 3 fields of one node (a reference, with
//!   the SATB barrier's fast path and the heap/era check of the value, a `u64` and an `f64`);
//! - `visit_read/{index,typed}`: one iteration reaches a node from the array
//!   (`Mutator::local`, plus the type check of `HeapType::view` on the typed side) and reads its
//!   4 fields: what an interpreter pays per object;
//! - `visit_write/{index,typed}`: the same with the 3 writes;
//! - `visit_read/obj`, `visit_write/obj`: the same through checked-once access
//!   ([`faultline::Mutator::obj`] with the type's [`faultline::Layout`], then [`faultline::Obj`]'s
//!   index-checked accessors): what an interpreter that knows its types pays per object
//!   (issue 16, item 6); `visit_read/obj_unchecked` reads with the `unsafe` unchecked
//!   accessors instead.
//!
//! Invariants: both paths touch the same objects in the same order; every read feeds
//! `black_box`, every written value comes through `black_box`, so nothing is elided; the
//! cycle counter is asserted unchanged across each timed loop.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use faultline::{
    heap_struct, Generational, Heap, HeapConfig, HeapType, Local, Mutator, Obj, Ref, Root, TypeInfo,
};

#[path = "common/mod.rs"]
mod common;

heap_struct! {
    /// The benchmark's node.
    struct Node {
        left: Ref,
        right: Ref,
        key: u64,
        weight: f64,
    }
}

/// Nodes.
const N: usize = 4096;
/// Payload word indices of the index path (the same layout).
const LEFT: usize = 0;
const RIGHT: usize = 1;
const KEY: usize = 2;
const WEIGHT: usize = 3;

struct Subject {
    heap: Heap,
    m: Mutator,
    nodes: HeapType<Node>,
    array: Root,
}

impl Subject {
    fn new() -> Subject {
        Subject::with(Generational::Off, false)
    }

    /// The subject on a heap with `generational`; `promote`: two collections run after setup,
    /// so (generational) the nodes are in the old generation.
    fn with(generational: Generational, promote: bool) -> Subject {
        let half = 64 << 20;
        let heap = Heap::new(HeapConfig::with_heap_size(half).with(|c| {
            c.min_trigger_bytes = half;
            c.generational = generational;
        }))
        .expect("heap");
        let nodes = heap.register_struct::<Node>().expect("type");
        let vector = heap.register_type(TypeInfo::ref_array("vector")).unwrap();
        let mut m = heap.attach();
        let a = m.alloc(vector, N).unwrap();
        let array = m.root(a);
        for i in 0..N {
            let v = nodes.alloc(&mut m).unwrap();
            let arr = array.get(&m).unwrap();
            arr.set(i, v);
            let p = nodes.view(m.local(v).unwrap()).unwrap();
            p.set(Node::key, i as u64);
            p.set(Node::weight, i as f64 * 0.5);
            if i > 0 {
                let prev = nodes.view(m.local(arr.get(i - 1)).unwrap()).unwrap();
                prev.set(Node::left, v);
            }
        }
        assert_eq!(
            Node::weight.offset(),
            WEIGHT * 8,
            "the index path's layout is the struct's"
        );
        if promote {
            m.collect().unwrap();
            m.collect().unwrap();
            if generational.enabled() {
                let (_, old, _) = heap.old_generation().unwrap();
                assert!(old >= N * 40, "the nodes are old ({old} B old)");
            }
        }
        Subject {
            heap,
            m,
            nodes,
            array,
        }
    }

    /// Time `iters` iterations of `f(i)` over nodes `i = 0, 1, ...` (wrapping).
    fn timed(&self, iters: u64, mut f: impl FnMut(usize)) -> Duration {
        let flips = self.heap.flips();
        let t = Instant::now();
        let mut i = 0;
        for _ in 0..iters {
            f(i);
            i = if i + 1 == N { 0 } else { i + 1 };
        }
        let d = t.elapsed();
        assert_eq!(self.heap.flips(), flips, "a collection ran in a timed loop");
        d
    }
}

#[inline(always)]
fn read_index(l: &Local<'_>) -> u64 {
    (l.get(LEFT).bits() ^ l.get(RIGHT).bits()) as u64 ^ l.word(KEY) ^ l.word(WEIGHT)
}

#[inline(always)]
fn read_typed(p: &faultline::Typed<'_, Node>) -> u64 {
    (p.get(Node::left).bits() ^ p.get(Node::right).bits()) as u64
        ^ p.get(Node::key)
        ^ p.get(Node::weight).to_bits()
}

#[inline(always)]
fn read_obj(o: &Obj<'_>) -> u64 {
    (o.get(LEFT).bits() ^ o.get(RIGHT).bits()) as u64 ^ o.word(KEY) ^ o.word(WEIGHT)
}

#[inline(always)]
fn read_obj_unchecked(o: &Obj<'_>) -> u64 {
    // SAFETY: `Node` has 4 payload words (LEFT and RIGHT are its reference slots), so every
    // index is in bounds and the two `get_unchecked` reads are of reference slots.
    unsafe {
        (o.get_unchecked(LEFT).bits() ^ o.get_unchecked(RIGHT).bits()) as u64
            ^ o.word_unchecked(KEY)
            ^ o.word_unchecked(WEIGHT)
    }
}

fn benches(c: &mut Criterion) {
    let s = Subject::new();
    let m = &s.m;
    let arr = s.array.get(m).unwrap();
    let values: Vec<_> = (0..N).map(|i| arr.get(i)).collect();
    let locals: Vec<Local<'_>> = values.iter().map(|&v| m.local(v).unwrap()).collect();
    let views: Vec<_> = locals.iter().map(|&l| s.nodes.view(l).unwrap()).collect();
    let layout = s.heap.layout(s.nodes.type_id()).unwrap();
    assert!(layout.is_ref_word(LEFT) && layout.is_ref_word(RIGHT) && !layout.is_ref_word(KEY));

    let mut g = c.benchmark_group("fields");
    g.throughput(Throughput::Elements(4));
    g.bench_function("access_read/index", |b| {
        b.iter_custom(|iters| {
            s.timed(iters, |i| {
                black_box(read_index(&locals[i]));
            })
        })
    });
    g.bench_function("access_read/typed", |b| {
        b.iter_custom(|iters| {
            s.timed(iters, |i| {
                black_box(read_typed(&views[i]));
            })
        })
    });
    g.bench_function("visit_read/index", |b| {
        b.iter_custom(|iters| {
            s.timed(iters, |i| {
                let l = m.local(black_box(values[i])).unwrap();
                black_box(read_index(&l));
            })
        })
    });
    g.bench_function("visit_read/typed", |b| {
        b.iter_custom(|iters| {
            s.timed(iters, |i| {
                let p = s
                    .nodes
                    .view(m.local(black_box(values[i])).unwrap())
                    .unwrap();
                black_box(read_typed(&p));
            })
        })
    });
    g.bench_function("visit_read/obj", |b| {
        b.iter_custom(|iters| {
            s.timed(iters, |i| {
                let o = m.obj(black_box(values[i]), &layout).unwrap();
                black_box(read_obj(&o));
            })
        })
    });
    g.bench_function("visit_read/obj_unchecked", |b| {
        b.iter_custom(|iters| {
            s.timed(iters, |i| {
                let o = m.obj(black_box(values[i]), &layout).unwrap();
                assert_eq!(o.payload_words(), WEIGHT + 1);
                black_box(read_obj_unchecked(&o));
            })
        })
    });

    g.throughput(Throughput::Elements(3));
    g.bench_function("access_write/index", |b| {
        b.iter_custom(|iters| {
            s.timed(iters, |i| {
                let l = &locals[i];
                l.set(LEFT, black_box(values[(i + 1) % N]));
                l.set_word(KEY, black_box(i as u64));
                l.set_word(WEIGHT, black_box(0.25f64).to_bits());
            })
        })
    });
    g.bench_function("access_write/typed", |b| {
        b.iter_custom(|iters| {
            s.timed(iters, |i| {
                let p = &views[i];
                p.set(Node::left, black_box(values[(i + 1) % N]));
                p.set(Node::key, black_box(i as u64));
                p.set(Node::weight, black_box(0.25f64));
            })
        })
    });
    g.bench_function("visit_write/index", |b| {
        b.iter_custom(|iters| {
            s.timed(iters, |i| {
                let l = m.local(black_box(values[i])).unwrap();
                l.set(LEFT, black_box(values[(i + 1) % N]));
                l.set_word(KEY, black_box(i as u64));
                l.set_word(WEIGHT, black_box(0.25f64).to_bits());
            })
        })
    });
    g.bench_function("visit_write/typed", |b| {
        b.iter_custom(|iters| {
            s.timed(iters, |i| {
                let p = s
                    .nodes
                    .view(m.local(black_box(values[i])).unwrap())
                    .unwrap();
                p.set(Node::left, black_box(values[(i + 1) % N]));
                p.set(Node::key, black_box(i as u64));
                p.set(Node::weight, black_box(0.25f64));
            })
        })
    });
    g.bench_function("visit_write/obj", |b| {
        b.iter_custom(|iters| {
            s.timed(iters, |i| {
                let o = m.obj(black_box(values[i]), &layout).unwrap();
                o.set(LEFT, black_box(values[(i + 1) % N]));
                o.set_word(KEY, black_box(i as u64));
                o.set_word(WEIGHT, black_box(0.25f64).to_bits());
            })
        })
    });
    g.finish();

    // The objects still hold what the writes put there (nothing was elided).
    let l = m.local(values[7]).unwrap();
    assert_eq!(l.word(KEY), 7);
    assert_eq!(l.get(LEFT), values[8]);
}

/// The store barrier's cost in the generational mode: `access_write/index` (a reference store
/// with the SATB fast path and the card barrier, two data stores) on a heap that is not
/// generational, on a generational heap whose nodes are young (the card barrier's compare
/// fails) and on one whose nodes are old (each reference store marks a card).
fn store_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("fields_store");
    g.throughput(Throughput::Elements(3));
    for (name, generational, promote) in [
        ("access_write/index/no-gen", Generational::Off, true),
        ("access_write/index/gen-young", Generational::Cards, false),
        ("access_write/index/gen-old", Generational::Cards, true),
    ] {
        let s = Subject::with(generational, promote);
        let m = &s.m;
        let arr = s.array.get(m).unwrap();
        let values: Vec<_> = (0..N).map(|i| arr.get(i)).collect();
        let locals: Vec<Local<'_>> = values.iter().map(|&v| m.local(v).unwrap()).collect();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                s.timed(iters, |i| {
                    let l = &locals[i];
                    l.set(LEFT, black_box(values[(i + 1) % N]));
                    l.set_word(KEY, black_box(i as u64));
                    l.set_word(WEIGHT, black_box(0.25f64).to_bits());
                })
            })
        });
        let l = m.local(values[7]).unwrap();
        assert_eq!(l.get(LEFT), values[8]);
    }
    g.finish();
}

criterion_group! {
    name = fields;
    config = common::criterion_config();
    targets = benches, store_benches
}
criterion_main!(fields);

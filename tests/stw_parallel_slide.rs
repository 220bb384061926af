//! The stop-the-world slide on several threads (`HeapConfig::compaction_workers` above 1): a
//! heap of about 14 MiB of pairs, vectors and strings, live and dead at random and linked
//! into chains with references across them, is slid by 2 and 3 threads over three cycles
//! (garbage and new objects in between); after each cycle every chain is walked and compared
//! with a model of it (ids, order, cross references, string bytes) and the heap verifier
//! (on before and after every collection) has walked the half. With one worker, and with too
//! little to slide, the slide stays on the pausing thread.

mod common;
use common::shadow::{fix, unfix, Rng};
use faultline::{
    CycleStats, Heap, HeapConfig, Mutator, Root, StwCompaction, TypeId, TypeInfo, Value,
};

const CHAINS: usize = 2000;
const HALF: usize = 24 << 20;

struct Types {
    pair: TypeId,
    vector: TypeId,
    string: TypeId,
}

/// What one chain element is.
#[derive(Clone)]
enum Elem {
    /// A pair `(id . next)`.
    Pair,
    /// A pair `(string . next)`; the string's bytes are `string_bytes(id, len)`.
    Str(usize),
    /// A vector `[id, next, refs...]`: each ref the id of an element of any chain, or a
    /// fixnum (`None` stands for `fix(0)`).
    Vector(Vec<Option<u64>>),
}

fn string_bytes(id: u64, len: usize) -> Vec<u8> {
    let mut b: Vec<u8> = (0..len).map(|i| (id as usize * 31 + i) as u8).collect();
    b[..8].copy_from_slice(&id.to_le_bytes());
    b
}

struct World {
    heap: Heap,
    m: Mutator,
    t: Types,
    chains: Root,
    /// The model: each chain's elements, oldest first, as (id, element).
    model: Vec<Vec<(u64, Elem)>>,
    next_id: u64,
    rng: Rng,
}

fn config(workers: usize) -> HeapConfig {
    HeapConfig::with_heap_size(HALF).with(|c| {
        c.min_trigger_bytes = HALF;
        c.gc_threads = 1;
        c.compaction_workers = Some(workers);
        c.stw_compaction = StwCompaction::Slide;
        c.debug.verify = true;
    })
}

impl World {
    fn new(workers: usize, seed: u64) -> World {
        let heap = Heap::new(config(workers)).unwrap();
        let t = Types {
            pair: heap
                .register_type(TypeInfo::fixed("pair", 16, &[0, 8]))
                .unwrap(),
            vector: heap.register_type(TypeInfo::ref_array("vector")).unwrap(),
            string: heap.register_type(TypeInfo::byte_array("string")).unwrap(),
        };
        let mut m = heap.attach();
        let c = m.alloc(t.vector, CHAINS).unwrap();
        let chains = m.root(c);
        World {
            heap,
            m,
            t,
            chains,
            model: vec![Vec::new(); CHAINS],
            next_id: 1,
            rng: Rng::from_state(seed | 1),
        }
    }

    /// Allocate about `bytes` of objects, a fraction `live` of them linked into chains.
    fn grow(&mut self, bytes: usize, live: f64) {
        // Values are held across allocations below: no collection may run meanwhile.
        let flips = self.heap.flips();
        let mut used = 0;
        while used < bytes {
            let keep = (self.rng.below(1000) as f64) < live * 1000.0;
            let id = self.next_id;
            self.next_id += 1;
            let chain = self.rng.below(CHAINS as u64) as usize;
            let head = self.chains.get(&self.m).unwrap().get(chain);
            let (v, elem, size) = match self.rng.below(10) {
                0..=5 => {
                    let p = self.m.alloc(self.t.pair, 0).unwrap();
                    let l = self.m.local(p).unwrap();
                    l.set(0, fix(id));
                    l.set(1, head);
                    (p, Elem::Pair, 24)
                }
                6 | 7 => {
                    let len = 8 + self.rng.below(200) as usize;
                    let s = self.m.alloc(self.t.string, len).unwrap();
                    self.m
                        .local(s)
                        .unwrap()
                        .write_bytes(0, &string_bytes(id, len));
                    self.m.push(s);
                    let p = self.m.alloc(self.t.pair, 0).unwrap();
                    let s = self.m.pop().unwrap();
                    let l = self.m.local(p).unwrap();
                    l.set(0, s);
                    l.set(1, head);
                    (p, Elem::Str(len), 24 + 8 + len.div_ceil(8) * 8)
                }
                _ => {
                    let n = 2 + if self.rng.below(16) == 0 {
                        self.rng.below(900) as usize
                    } else {
                        self.rng.below(30) as usize
                    };
                    let v = self.m.alloc(self.t.vector, n).unwrap();
                    let l = self.m.local(v).unwrap();
                    l.set(0, fix(id));
                    l.set(1, head);
                    let mut refs = Vec::new();
                    for i in 2..n {
                        // The head of a chain at random (anywhere in the heap, or just
                        // allocated), or a fixnum.
                        let c = self.rng.below(CHAINS as u64) as usize;
                        match self.model[c].last().filter(|_| self.rng.below(8) != 0) {
                            Some(e) => {
                                l.set(i, self.chains.get(&self.m).unwrap().get(c));
                                refs.push(Some(e.0));
                            }
                            None => {
                                l.set(i, fix(0));
                                refs.push(None);
                            }
                        }
                    }
                    (v, Elem::Vector(refs), 16 + 8 * n)
                }
            };
            used += size;
            if keep {
                self.chains.get(&self.m).unwrap().set(chain, v);
                self.model[chain].push((id, elem));
            }
        }
        assert_eq!(self.heap.flips(), flips, "no collection while growing");
    }

    /// Drop every `n`-th chain: its elements become garbage, but those a vector of another
    /// chain references (the check follows those references by id).
    fn drop_chains(&mut self, n: usize) {
        for c in (0..CHAINS).step_by(n) {
            self.chains.get(&self.m).unwrap().set(c, Value::NULL);
            self.model[c].clear();
        }
    }

    /// The id held by element `v`.
    fn id_of(&self, v: Value) -> u64 {
        let l = self.m.local(v).expect("an element");
        let first = l.get(0);
        if first.is_ref() {
            let s = self.m.local(first).unwrap();
            assert_eq!(s.type_id(), self.t.string);
            let mut b = [0u8; 8];
            s.read_bytes(0, &mut b);
            u64::from_le_bytes(b)
        } else {
            unfix(first)
        }
    }

    /// Walk every chain and compare it with the model; returns the elements checked.
    fn check(&self) -> usize {
        let chains = self.chains.get(&self.m).unwrap();
        let mut n = 0;
        for c in 0..CHAINS {
            let mut v = chains.get(c);
            for (id, elem) in self.model[c].iter().rev() {
                let l = self
                    .m
                    .local(v)
                    .unwrap_or_else(|| panic!("chain {c}: id {id} missing"));
                assert_eq!(self.id_of(v), *id, "chain {c}");
                match elem {
                    Elem::Pair => assert_eq!(l.type_id(), self.t.pair),
                    Elem::Str(len) => {
                        let s = self.m.local(l.get(0)).unwrap();
                        assert_eq!(s.len(), *len);
                        assert_eq!(s.to_bytes(), string_bytes(*id, *len), "string of {id}");
                    }
                    Elem::Vector(refs) => {
                        assert_eq!(l.type_id(), self.t.vector);
                        assert_eq!(l.len(), refs.len() + 2);
                        for (i, r) in refs.iter().enumerate() {
                            match r {
                                Some(target) => {
                                    assert_eq!(self.id_of(l.get(i + 2)), *target, "ref of {id}")
                                }
                                None => assert_eq!(unfix(l.get(i + 2)), 0),
                            }
                        }
                    }
                }
                n += 1;
                v = l.get(1);
            }
            assert!(v.is_null(), "chain {c} is longer than its model");
        }
        n
    }

    fn collect(&mut self) -> CycleStats {
        self.m.collect().unwrap();
        self.heap.history().last().unwrap().clone()
    }
}

#[test]
fn several_threads_slide_the_heap_and_every_reference_still_leads_where_it_did() {
    for workers in [2, 3] {
        let mut w = World::new(workers, 0x51de_0000 + workers as u64);
        w.grow(14 << 20, 0.6);
        let mut checked = 0;
        for round in 0..3 {
            let st = w.collect();
            assert_eq!(st.slide_threads, workers, "round {round}: {st:?}");
            assert!(
                st.compact_map.is_zero() && st.pages_copied == 0,
                "slid in place"
            );
            assert!(st.moving_after > 6 << 20, "enough live data to split");
            checked += w.check();
            let v = w.m.verify().expect("the heap verifies");
            assert_eq!(v.objects, st.live_objects);
            // New garbage and new live objects, and some chains dropped, between cycles.
            w.drop_chains(7 + round);
            w.grow(6 << 20, 0.3);
        }
        assert!(checked > 150_000, "{checked} elements checked");
        eprintln!("{workers} slide threads: {checked} elements checked over 3 cycles");
    }
}

#[test]
fn one_worker_or_a_small_heap_slides_on_the_pausing_thread() {
    let mut w = World::new(1, 7);
    w.grow(8 << 20, 0.6);
    let st = w.collect();
    assert_eq!(st.slide_threads, 1);
    assert_eq!(st.slide_waits, 0);
    w.check();
    // A thread is attached to one heap at a time.
    drop(w);
    // Two workers, but under a MiB live: not worth a helper.
    let mut w = World::new(2, 8);
    w.grow(2 << 20, 0.3);
    let st = w.collect();
    assert!(st.moving_after < 1 << 20);
    assert_eq!(st.slide_threads, 1);
    w.check();
}

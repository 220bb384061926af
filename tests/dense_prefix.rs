//! The stop-the-world slide's dense prefix (`HeapConfig::dense_prefix`): a heap whose first
//! pages are dense (95 % live) and whose tail is sparse (10 % live) keeps the dense pages in
//! place (their objects keep their addresses, their dead gaps become fillers that the
//! verifier walks) and compacts the tail; references from the kept objects to the moved ones
//! are forwarded, handles survive, and once the prefix turns sparse a later slide moves it and
//! gives its dead bytes back.

use faultline::{Heap, HeapConfig, Mutator, TypeId, TypeInfo, Value};

const PAGE: usize = 4096;
/// A pair's size: header + two slots.
const PAIR_BYTES: usize = 24;
const DENSE: usize = 6000;
const TAIL: usize = 30_000;

fn fix(n: usize) -> Value {
    Value::immediate((n << 3) | 1).unwrap()
}

fn unfix(v: Value) -> usize {
    assert_eq!(v.bits() & 7, 1, "not a fixnum: {v:?}");
    v.bits() >> 3
}

struct Built {
    heap: Heap,
    dense: faultline::Root,
    tail: faultline::Root,
    /// Addresses of the dense pairs kept alive, by index (0: dead).
    addr: Vec<usize>,
    /// Addresses of the dense pairs that died.
    dead: Vec<usize>,
    /// Addresses of the tail pairs kept alive, by index.
    tail_addr: Vec<usize>,
}

fn heap(threshold: Option<f64>) -> Heap {
    let half = 8 << 20;
    Heap::new(HeapConfig::with_heap_size(half).with(|c| {
        c.min_trigger_bytes = half;
        c.dense_prefix = threshold;
        c.debug.verify = true;
    }))
    .unwrap()
}

/// Dense pairs first (every 20th dies), then a sparse tail (every 10th lives); dense pair `i`
/// holds `(i, tail pair i % kept tail)`, tail pair `j` holds `(j, dense pair j % DENSE or
/// null)`.
fn build(threshold: Option<f64>) -> (Built, Mutator, TypeId, TypeId) {
    let heap = heap(threshold);
    let pair = heap
        .register_type(TypeInfo::fixed("pair", 16, &[0, 8]))
        .unwrap();
    let vector = heap.register_type(TypeInfo::ref_array("vector")).unwrap();
    let mut m = heap.attach();
    let d = m.alloc(vector, DENSE).unwrap();
    let dense = m.root(d);
    let mut addr = vec![0; DENSE];
    let mut dead = Vec::new();
    for (i, a) in addr.iter_mut().enumerate() {
        let p = m.alloc(pair, 0).unwrap();
        m.local(p).unwrap().set(0, fix(i));
        if i % 20 != 7 {
            dense.get(&m).unwrap().set(i, p);
            *a = p.bits();
        } else {
            dead.push(p.bits());
        }
    }
    let mut tail_addr = Vec::new();
    let t = m.alloc(vector, TAIL / 10).unwrap();
    let tail = m.root(t);
    for j in 0..TAIL {
        let p = m.alloc(pair, 0).unwrap();
        if j % 10 == 3 {
            let k = j / 10;
            let l = m.local(p).unwrap();
            l.set(0, fix(k));
            l.set(1, dense.get(&m).unwrap().get(k % DENSE));
            tail.get(&m).unwrap().set(k, p);
            tail_addr.push(p.bits());
        }
    }
    let tails = TAIL / 10;
    for i in 0..DENSE {
        let dv = dense.get(&m).unwrap();
        if let Some(p) = m.local(dv.get(i)) {
            p.set(1, tail.get(&m).unwrap().get(i % tails));
        }
    }
    assert_eq!(heap.flips(), 0, "no collection while building");
    (
        Built {
            heap,
            dense,
            tail,
            addr,
            dead,
            tail_addr,
        },
        m,
        pair,
        vector,
    )
}

/// Every reference still leads where it did: dense pair `i` holds `i` and tail pair
/// `i % tails`; tail pair `k` holds `k` and dense pair `k % DENSE` (or null, if it died).
fn check(b: &Built, m: &Mutator) -> usize {
    let tails = TAIL / 10;
    let dv = b.dense.get(m).unwrap();
    let tv = b.tail.get(m).unwrap();
    let mut live = 0;
    for i in 0..DENSE {
        let Some(p) = m.local(dv.get(i)) else {
            continue;
        };
        live += 1;
        assert_eq!(unfix(p.get(0)), i);
        let t = m.local(p.get(1)).expect("a tail pair");
        assert_eq!(unfix(t.get(0)), i % tails);
    }
    for k in 0..tails {
        let t = m.local(tv.get(k)).expect("a tail pair");
        assert_eq!(unfix(t.get(0)), k);
        assert_eq!(t.get(1).bits(), dv.get(k % DENSE).bits());
    }
    live
}

#[test]
fn a_dense_prefix_stays_in_place_and_the_sparse_tail_slides() {
    let (b, mut m, _, _) = build(Some(0.9));
    let base = b.dense.value(&m).bits() & !(PAGE - 1);
    m.collect().unwrap();
    let st = b.heap.history().last().unwrap().clone();
    // The dense pages: the vector (full) and the pairs (95 % live); the tail (10 % live)
    // stops it.
    let dense_end = base + st.dense_kept_pages * PAGE;
    assert!(
        st.dense_kept_pages * PAGE >= DENSE * PAIR_BYTES,
        "{} pages kept",
        st.dense_kept_pages
    );
    // (The tail's vector, fully live, may extend it; its 10 %-live pairs stop it within a
    // few pages: the prefix's dead words stay within 10 % of it.)
    assert!(
        st.dense_kept_pages * PAGE
            < DENSE * PAIR_BYTES + (DENSE + 1 + TAIL / 10 + 1) * 8 + 4 * PAGE
    );
    // Dead bytes: at least the dead dense pairs (one in 20) in the prefix, fillers now;
    // never more than 10 % of the prefix.
    let dead_in = b
        .dead
        .iter()
        .filter(|&&a| a + PAIR_BYTES <= dense_end)
        .count();
    assert!(
        dead_in * 20 >= DENSE * 9 / 10,
        "{dead_in} dead pairs in the prefix"
    );
    assert!(st.dense_dead_bytes >= dead_in * PAIR_BYTES);
    assert!(st.dense_dead_bytes * 10 <= st.dense_kept_pages * PAGE);
    // The prefix's objects kept their addresses; the tail's moved down.
    let dv = b.dense.get(&m).unwrap();
    let mut kept = 0;
    for (i, &a) in b.addr.iter().enumerate() {
        if a != 0 && a + PAIR_BYTES <= dense_end {
            assert_eq!(dv.get(i).bits(), a, "dense pair {i} moved");
            kept += 1;
        }
    }
    assert!(
        kept * 20 >= DENSE * 18,
        "{kept} dense pairs checked in place"
    );
    let tv = b.tail.get(&m).unwrap();
    let moved = (0..TAIL / 10)
        .filter(|&k| tv.get(k).bits() < b.tail_addr[k])
        .count();
    assert_eq!(moved, TAIL / 10, "every tail pair slid down");
    // Handles and references survive; the fillers parse (verification walks the half: the
    // objects it counts are exactly the live ones).
    let live_dense = check(&b, &m);
    assert_eq!(live_dense, b.addr.iter().filter(|&&a| a != 0).count());
    let v = m.verify().unwrap();
    assert_eq!(v.objects, st.live_objects, "fillers are not objects");
    // What is in use is the live objects plus the fillers.
    let live_bytes = (1 + DENSE) * 8 + (1 + TAIL / 10) * 8 + (live_dense + TAIL / 10) * PAIR_BYTES;
    assert_eq!(st.moving_after, live_bytes + st.dense_dead_bytes);

    // A second slide finds the same prefix (the fillers are dead words), now followed by the
    // compacted tail, fully live: nothing moves at all.
    let (dv, tv) = (b.dense.get(&m).unwrap(), b.tail.get(&m).unwrap());
    let before: Vec<usize> = (0..DENSE).map(|i| dv.get(i).bits()).collect();
    let tail_before: Vec<usize> = (0..TAIL / 10).map(|k| tv.get(k).bits()).collect();
    m.collect().unwrap();
    let st2 = b.heap.history().last().unwrap().clone();
    assert!(st2.dense_kept_pages > st.dense_kept_pages);
    assert_eq!(st2.dense_dead_bytes, st.dense_dead_bytes);
    assert_eq!(st2.moving_after, st.moving_after);
    let (dv, tv) = (b.dense.get(&m).unwrap(), b.tail.get(&m).unwrap());
    assert!((0..DENSE).all(|i| dv.get(i).bits() == before[i]));
    assert!((0..TAIL / 10).all(|k| tv.get(k).bits() == tail_before[k]));
    check(&b, &m);

    // Half the dense pairs die: the prefix is sparse now, the slide moves it and gives the
    // dead bytes back.
    for i in (0..DENSE).step_by(2) {
        b.dense.get(&m).unwrap().set(i, Value::NULL);
    }
    for k in 0..TAIL / 10 {
        if (k % DENSE).is_multiple_of(2) {
            let t = b.tail.get(&m).unwrap().get(k);
            m.local(t).unwrap().set(1, Value::NULL);
        }
    }
    m.collect().unwrap();
    let st3 = b.heap.history().last().unwrap().clone();
    // Only the dense vector's own pages (fully live) may stay.
    assert!(
        st3.dense_kept_pages * PAGE <= (DENSE + 1) * 8 + PAGE,
        "{} pages",
        st3.dense_kept_pages
    );
    let live_dense = check(&b, &m);
    let live_bytes = (1 + DENSE) * 8 + (1 + TAIL / 10) * 8 + (live_dense + TAIL / 10) * PAIR_BYTES;
    assert_eq!(st3.moving_after, live_bytes + st3.dense_dead_bytes);
    assert!(st3.dense_dead_bytes < PAGE);
    m.verify().unwrap();
}

#[test]
fn without_the_knob_the_slide_moves_everything() {
    let (b, mut m, _, _) = build(None);
    m.collect().unwrap();
    let st = b.heap.history().last().unwrap().clone();
    assert_eq!((st.dense_kept_pages, st.dense_dead_bytes), (0, 0));
    let live_dense = check(&b, &m);
    let live_bytes = (1 + DENSE) * 8 + (1 + TAIL / 10) * 8 + (live_dense + TAIL / 10) * PAIR_BYTES;
    assert_eq!(st.moving_after, live_bytes, "no dead byte is kept");
    // The first dead dense pair and everything after it moved.
    let dv = b.dense.get(&m).unwrap();
    let moved = b
        .addr
        .iter()
        .enumerate()
        .filter(|&(i, &a)| a != 0 && dv.get(i).bits() != a)
        .count();
    assert!(moved * 2 > DENSE, "{moved} dense pairs moved");
}

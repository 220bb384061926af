//! Large arrays are marked a chunk at a time (`marking::SCAN_CHUNK_WORDS`: the markers and
//! the mutators' assists take one chunk per step), and mutators mark the allocation buffers
//! they retire during marking themselves. Three mutators each keep a 100,000-slot vector (a
//! large object of about fifty scan chunks) whose slots are the only references to their
//! pairs, overwrite slots and allocate garbage fast while concurrent cycles run, with
//! verification and checkmark on. Every slot must read back the value last stored; the
//! cycles' live-object counts must include what the mutators marked.
//!
//! No timing is asserted.

mod common;
use common::*;
use faultline::{GcMode, Heap, HeapConfig, Mutator, Value};

const SLOTS: usize = 100_000;

/// A splitmix step (deterministic slot choice).
fn next(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A pair holding `n`, stored into slot `i` of the vector on the stack top.
fn store(m: &mut Mutator, t: &Types, i: usize, n: i64) {
    let p = m.alloc(t.pair, 0).unwrap();
    let l = m.local(p).unwrap();
    l.set(0, fix(n));
    l.set(1, Value::NULL);
    m.local(m.stack_get(0)).unwrap().set(i, p);
}

fn check(m: &Mutator, want: &[i64]) {
    let v = m.local(m.stack_get(0)).unwrap();
    for (i, &w) in want.iter().enumerate() {
        let p = m
            .local(v.get(i))
            .unwrap_or_else(|| panic!("slot {i} lost its pair"));
        assert_eq!(unfix(p.get(0)), w, "slot {i}");
    }
}

fn worker(heap: &Heap, t: &Types, id: u64, rounds: usize) {
    let mut m = heap.attach();
    let v = m.alloc(t.vector, SLOTS).unwrap();
    m.push(v);
    let base = id as i64 * 10_000_000;
    let mut want = vec![0i64; SLOTS];
    for (i, w) in want.iter_mut().enumerate() {
        *w = base + i as i64;
        store(&mut m, t, i, *w);
    }
    let mut rng = id;
    for round in 0..rounds {
        for k in 0..20_000 {
            let i = (next(&mut rng) % SLOTS as u64) as usize;
            want[i] = base + (round * 20_000 + k) as i64;
            store(&mut m, t, i, want[i]);
            // Garbage: a short list.
            for _ in 0..4 {
                m.alloc(t.pair, 0).unwrap();
            }
            if k % 256 == 0 {
                m.safepoint();
            }
        }
        if round % 4 == 3 {
            check(&m, &want);
        }
    }
    check(&m, &want);
    m.verify().unwrap();
}

#[test]
fn large_arrays_are_marked_in_chunks_while_mutators_mark_their_own_buffers() {
    if !uffd_or_skip("large_arrays_are_marked_in_chunks_while_mutators_mark_their_own_buffers") {
        return;
    }
    let heap = Heap::new(HeapConfig::with_heap_size(32 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.debug.verify = true;
        c.debug.checkmark = true;
    }))
    .unwrap();
    assert_eq!(heap.mode_info().mode, GcMode::Concurrent);
    let t = register(&heap);
    std::thread::scope(|s| {
        for id in 1..=3u64 {
            let (heap, t) = (&heap, &t);
            s.spawn(move || worker(heap, t, id, 12));
        }
    });
    heap.wait_for_compaction();
    let h = heap.history();
    assert!(h.len() >= 2, "{} cycles", h.len());
    for c in &h {
        assert_eq!(c.mode, GcMode::Concurrent);
        // At least the three vectors and their (at least partly live) pairs.
        assert!(c.live_objects > 3, "{}", c.log_line());
        let p = &c.pacing;
        assert!(p.assists_urgent <= p.assists, "{p:?}");
    }
    eprintln!("last: {}", h.last().unwrap().log_line());
    heap.attach().verify().unwrap();
}

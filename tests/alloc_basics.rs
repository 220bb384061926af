//! Allocation of every object kind through the public API: fresh objects are zeroed, fields
//! read back what was written, misuse is an error or a clear panic, and the allocation path
//! made no mapping call.

mod common;
use common::*;
use faultline::{AllocError, TypeId, TypeInfo, Value};

#[test]
fn every_kind_allocates_zeroed_and_reads_back() {
    let heap = heap(4 << 20);
    let t = register(&heap);
    let mut m = heap.attach();
    let p = m.alloc(t.pair, 0).unwrap();
    let pl = m.local(p).unwrap();
    assert!(pl.get(0).is_null() && pl.get(1).is_null());
    pl.set(0, fix(42));
    assert_eq!(unfix(pl.get(0)), 42);
    let v = m.alloc(t.vector, 100).unwrap();
    let vl = m.local(v).unwrap();
    assert_eq!(vl.len(), 100);
    assert!((0..100).all(|i| vl.get(i).is_null()));
    vl.set(99, p);
    assert_eq!(vl.get(99), p);
    let s = m.alloc(t.string, 13).unwrap();
    let sl = m.local(s).unwrap();
    sl.write_bytes(0, b"hello, world!");
    assert_eq!(sl.to_bytes(), b"hello, world!");
    let n = m.alloc(t.node, 0).unwrap();
    m.local(n).unwrap().set_word(2, u64::MAX);
    assert_eq!(m.local(n).unwrap().word(2), u64::MAX);
    // Immediates are not references; NULL is not an object.
    assert!(m.local(fix(1)).is_none());
    assert!(m.local(Value::NULL).is_none());
}

#[test]
fn misuse_is_an_error_or_a_clear_panic() {
    let heap = heap(4 << 20);
    let t = register(&heap);
    let mut m = heap.attach();
    assert_eq!(
        m.alloc(TypeId(999), 0),
        Err(AllocError::UnknownType(TypeId(999)))
    );
    assert_eq!(
        m.alloc(TypeId::FILLER, 0),
        Err(AllocError::UnknownType(TypeId::FILLER))
    );
    assert_eq!(m.alloc(t.pair, 3), Err(AllocError::NotAnArray(t.pair)));
    assert!(matches!(
        m.alloc(t.vector, 1 << 40),
        Err(AllocError::TooLarge(_))
    ));
    let p = m.alloc(t.pair, 0).unwrap();
    let n = m.alloc(t.node, 0).unwrap();
    let nl = m.local(n).unwrap();
    // A reference into a data word would hide it from the collector: refused.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| nl.set(2, p)));
    assert!(r.is_err());
    // Raw bits into a reference slot: refused.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| nl.set_word(0, 8)));
    assert!(r.is_err());
    // Out of bounds.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| nl.get(3)));
    assert!(r.is_err());
}

#[test]
fn allocation_makes_no_mapping_calls() {
    let heap = heap(16 << 20);
    let t = register(&heap);
    let mut m = heap.attach();
    let before = heap.arena_stats();
    for _ in 0..100_000 {
        m.alloc(t.pair, 0).unwrap();
    }
    let after = heap.arena_stats();
    assert_eq!(
        after.mmap_family_since_creation,
        before.mmap_family_since_creation
    );
    assert_eq!(after.registers, u64::from(heap.uses_userfaultfd()));
    assert_eq!(after.vmas, before.vmas);
}

/// Byte copies at every alignment round-trip, and two mutators racing on one array see only
/// bytes someone wrote (the accessors use atomics: a race is stale data, never UB).
#[test]
fn byte_copies_at_any_alignment_and_under_races() {
    let heap = heap(4 << 20);
    let t = register(&heap);
    let mut m = heap.attach();
    let s = m.alloc(t.string, 100).unwrap();
    let pattern: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(37)).collect();
    for off in 0..9 {
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 60] {
            let l = m.local(s).unwrap();
            l.write_bytes(0, &[0; 100]);
            l.write_bytes(off, &pattern[..len]);
            let back = l.to_bytes();
            assert_eq!(
                &back[off..off + len],
                &pattern[..len],
                "offset {off} len {len}"
            );
            assert!(back[..off]
                .iter()
                .chain(&back[off + len..])
                .all(|&b| b == 0));
        }
    }
    m.local(s).unwrap().write_bytes(0, &[0; 100]);
    let g = faultline::GlobalRoot::new(&heap, s);
    let h2 = heap.clone();
    let writer = std::thread::spawn(move || {
        let m2 = h2.attach();
        for k in 0..20_000 {
            let v = g.get(&m2);
            m2.local(v)
                .unwrap()
                .write_bytes(3, &[if k % 2 == 0 { 0xaa } else { 0x55 }; 90]);
        }
    });
    let mut buf = [0u8; 90];
    while !writer.is_finished() {
        m.local(s).unwrap().read_bytes(3, &mut buf);
        assert!(
            buf.iter().all(|&b| b == 0xaa || b == 0x55 || b == 0),
            "{buf:?}"
        );
    }
    m.native(|| writer.join().unwrap());
}

/// The allocation fast path takes sizes from the mutator's own table: every kind and length
/// gets exactly the registry's size (consecutive small objects of a fresh buffer are adjacent),
/// including types registered after the mutator attached, and misuse of those is still an
/// error.
#[test]
fn fast_path_sizes_match_the_registry() {
    let heap = heap(4 << 20);
    let t = register(&heap);
    let big = heap
        .register_type(TypeInfo::fixed("big", 9000, &[]))
        .unwrap();
    let mut m = heap.attach();
    // Registered after `attach`: the mutator's table does not have them yet.
    let late_fixed = heap
        .register_type(TypeInfo::fixed("late", 40, &[8]))
        .unwrap();
    let late_refs = heap
        .register_type(TypeInfo::ref_array("late-refs"))
        .unwrap();
    let late_bytes = heap
        .register_type(TypeInfo::byte_array("late-bytes"))
        .unwrap();
    assert_eq!(
        m.alloc(late_fixed, 1),
        Err(AllocError::NotAnArray(late_fixed))
    );
    let mut seq = vec![(t.pair, 0), (t.node, 0), (late_fixed, 0)];
    for len in 0..20 {
        seq.extend([
            (t.vector, len),
            (t.string, len),
            (late_refs, len),
            (late_bytes, len),
        ]);
    }
    seq.extend([(late_fixed, 0), (t.pair, 0)]);
    let types = heap.types();
    let size = |ty: TypeId, len: usize| types.get(ty).unwrap().size_words(len) * 8;
    let total: usize = seq.iter().map(|&(ty, len)| size(ty, len)).sum();
    assert!(total < 16 << 10, "the sequence fits one allocation buffer");
    // The first allocation takes a fresh buffer (32 KiB at this heap size); the rest bump it.
    let mut prev = (t.pair, 0, m.alloc(t.pair, 0).unwrap());
    for (ty, len) in seq {
        let v = m.alloc(ty, len).unwrap();
        let (pty, plen, pv) = prev;
        let gap = v.as_ref().unwrap().address() - pv.as_ref().unwrap().address();
        assert_eq!(gap, size(pty, plen), "after {pty:?} len {plen}");
        let l = m.local(v).unwrap();
        assert_eq!((l.type_id(), l.len()), (ty, len));
        prev = (ty, len, v);
    }
    // A fixed type above the large-object threshold leaves the fast path for the large space.
    let b = m.alloc(big, 0).unwrap();
    assert_eq!(m.local(b).unwrap().payload_words(), 9000 / 8);
    m.verify()
        .expect("the heap parses with the sizes the fast path used");
}

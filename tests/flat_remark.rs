//! The flat remark: what the mutators allocate while the collector finishes its concurrent
//! work (the ephemeron pass, the plan, the remembered set: work that grows with the heap) is
//! precleaned by the last SATB handshake, right before the remark+flip pause, not walked in
//! the pause.
//!
//! The marker is parked where its concurrent work ends (`MarkPoint::BeforeRemark`, standing
//! for a long plan); meanwhile the mutator allocates several MiB of black objects (each
//! retired allocation buffer queued for the marker), then waits for the cycle without
//! allocating. The statistics (counts, not timings) must show those buffers walked by the
//! handshake and the remark walking at most the one buffer still in use; the heap must stay
//! exact (checkmark, verification, every list read back). Both SATB and barrier-free marking
//! that falls back to SATB before its remark (forced) take this path.

mod common;
use common::park::Park;
use common::*;
use faultline::{Barrier, GcMode, Heap, HeapConfig, MarkPoint, Strategy, Value};
use std::sync::Arc;

const TLAB: usize = 32 << 10;
/// Bytes of garbage pairs allocated while the marker is parked.
const DURING: usize = 4 << 20;

fn run(barrier: Barrier) {
    let park = Arc::new(Park::default());
    let heap = Heap::new(HeapConfig::with_heap_size(64 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = Strategy::Copy;
        c.barrier = barrier;
        c.tlab_bytes = TLAB;
        c.debug.checkmark = true;
        c.debug.verify = true;
        c.debug.force_satb_switch = barrier == Barrier::WpAsync;
        c.debug.mark_hook = Some(park.hook());
        // No cycle but the explicit one.
        c.min_trigger_bytes = 60 << 20;
    }))
    .unwrap();
    assert_eq!(heap.mode_info().mode, GcMode::Concurrent);
    let t = register(&heap);
    let mut m = heap.attach();
    for _ in 0..4 {
        list(&mut m, &t, 2_000);
    }
    let flips = heap.flips();
    park.arm(MarkPoint::BeforeRemark);
    m.start_collection().unwrap();
    park.wait(&mut m);
    // The collector's concurrent work "takes long": the mutator allocates meanwhile (black
    // objects: retired buffers queue up for the marker).
    for _ in 0..DURING / 16 {
        m.alloc(t.pair, 0).unwrap();
    }
    park.release();
    m.wait_for_cycle().unwrap();
    heap.wait_for_compaction();
    assert_eq!(heap.flips(), flips + 1);
    for i in 0..4 {
        assert_eq!(read_list(&m, m.stack_get(i)).len(), 2_000);
    }
    m.verify().unwrap();
    let c = heap.history().last().unwrap().clone();
    eprintln!("{barrier:?}: {}", c.log_line());
    assert_eq!(c.mode, GcMode::Concurrent);
    if barrier == Barrier::WpAsync {
        assert!(c.satb_switch.is_some(), "{c:?}");
    }
    // The buffers retired while the marker was parked were walked by the last handshake, or
    // (SATB) marked by the mutator itself as it retired them (24-byte pairs)...
    assert!(
        c.handshake_buffer_bytes + c.mutator_black_objects * 24 >= DURING - 2 * TLAB,
        "{barrier:?}: the last handshake walked {} bytes of buffers, the mutator marked {} objects",
        c.handshake_buffer_bytes,
        c.mutator_black_objects
    );
    // ...and the remark only the buffer still in use (nothing was allocated after).
    assert!(
        c.remark_buffer_bytes <= TLAB,
        "{barrier:?}: the remark walked {} bytes of buffers",
        c.remark_buffer_bytes
    );
    assert_eq!(c.remark_queue_entries, 0, "{c:?}");
    // The parts are parts of the remark.
    assert!(c.remark_buffers + c.remark_queues + c.remark_trace <= c.remark);
    let pause = c
        .pauses
        .iter()
        .find(|p| p.kind == "remark+flip")
        .expect("a remark+flip pause");
    assert!(
        c.remark + c.flip_quiesce + c.plan + c.flip_prepare + c.flip_refs + c.flip_arm
            <= pause.duration
    );
}

#[test]
fn satb_remark_walks_only_what_follows_the_last_handshake() {
    if !uffd_or_skip("satb_remark_walks_only_what_follows_the_last_handshake") {
        return;
    }
    run(Barrier::Satb);
}

#[test]
fn switched_wp_remark_walks_only_what_follows_the_last_handshake() {
    if !uffd_or_skip("switched_wp_remark_walks_only_what_follows_the_last_handshake") {
        return;
    }
    run(Barrier::WpAsync);
}

/// Barrier-free marking that switched to SATB: an object allocated (black) before the switch
/// in an allocation buffer still in use at the switch holds the only reference to an object
/// written into it before the switch. Barrier-free marking must trace black objects (their
/// writes are tracked by page, and the rescan of written pages skips objects not marked yet,
/// which a buffer in use is not). The buffer is retired after the switch and walked by the
/// last handshake: it must trace them, or the object is lost (checkmark reports it).
#[test]
fn switched_handshake_traces_black_objects_allocated_before_the_switch() {
    if !uffd_or_skip("switched_handshake_traces_black_objects_allocated_before_the_switch") {
        return;
    }
    let park = Arc::new(Park::default());
    let heap = Heap::new(HeapConfig::with_heap_size(16 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = Strategy::Copy;
        c.barrier = Barrier::WpAsync;
        c.tlab_bytes = TLAB;
        c.gc_threads = 1;
        c.debug.checkmark = true;
        c.debug.verify = true;
        c.debug.force_satb_switch = true;
        c.debug.mark_hook = Some(park.hook());
        c.min_trigger_bytes = 12 << 20;
    }))
    .unwrap();
    let t = register(&heap);
    let mut m = heap.attach();
    let w = pair(&mut m, &t, fix(7), Value::NULL);
    let b = pair(&mut m, &t, w, Value::NULL);
    m.push(b); // stack[0] = B -> W
    park.arm(MarkPoint::Started);
    m.start_collection().unwrap();
    park.wait(&mut m);
    // Roots shaded, nothing traced: B is gray. X is allocated black in a fresh buffer; W moves
    // from B into X.
    let x = pair(&mut m, &t, Value::NULL, Value::NULL);
    m.push(x); // stack[1] = X
    let (b, x) = (m.stack_get(0), m.stack_get(1));
    let w = m.local(b).unwrap().get(0);
    m.local(x).unwrap().set(0, w);
    m.local(b).unwrap().set(0, Value::NULL);
    // (Arming the next point lets the marker go on, to the switch and then there.)
    park.arm(MarkPoint::BeforeRemark);
    park.wait(&mut m);
    // After the switch: retire X's buffer (it goes to the marker's queue of retired buffers).
    for _ in 0..2 * TLAB / 16 {
        m.alloc(t.pair, 0).unwrap();
    }
    park.release();
    m.wait_for_cycle().unwrap();
    heap.wait_for_compaction();
    let c = heap.history().last().unwrap().clone();
    assert!(c.satb_switch.is_some(), "{c:?}");
    let x = m.local(m.stack_get(1)).unwrap();
    let w = m.local(x.get(0)).expect("W survived");
    assert_eq!(unfix(w.get(0)), 7);
    m.verify().unwrap();
}

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
use common::*;
use faultline::{Barrier, GcMode, Heap, HeapConfig, MarkPoint, Strategy};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Parks the marker at `MarkPoint::BeforeRemark` until released; the mutator polls for it
/// (a barrier-free cycle's switch to SATB stops the world before that point).
#[derive(Default)]
struct Park {
    parked: AtomicBool,
    released: AtomicBool,
}

const TLAB: usize = 32 << 10;
/// Bytes of garbage pairs allocated while the marker is parked.
const DURING: usize = 4 << 20;

fn run(barrier: Barrier) {
    let park = Arc::new(Park::default());
    let hook_park = park.clone();
    let heap = Heap::new(HeapConfig::with_heap_size(64 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = Strategy::Copy;
        c.barrier = barrier;
        c.tlab_bytes = TLAB;
        c.debug.checkmark = true;
        c.debug.verify = true;
        c.debug.force_satb_switch = barrier == Barrier::WpAsync;
        c.debug.mark_hook = Some(Arc::new(move |p| {
            if p == MarkPoint::BeforeRemark {
                hook_park.parked.store(true, Ordering::SeqCst);
                while !hook_park.released.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        }));
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
    m.start_collection().unwrap();
    while !park.parked.load(Ordering::SeqCst) {
        m.safepoint();
        std::thread::sleep(Duration::from_micros(100));
    }
    // The collector's concurrent work "takes long": the mutator allocates meanwhile (black
    // objects: retired buffers queue up for the marker).
    for _ in 0..DURING / 16 {
        m.alloc(t.pair, 0).unwrap();
    }
    park.released.store(true, Ordering::SeqCst);
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
    // The buffers retired while the marker was parked were walked by the last handshake...
    assert!(
        c.handshake_buffer_bytes >= DURING - 2 * TLAB,
        "{barrier:?}: the last handshake walked {} bytes of buffers",
        c.handshake_buffer_bytes
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
    assert!(c.remark + c.plan + c.flip_prepare + c.flip_refs + c.flip_arm <= pause.duration);
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

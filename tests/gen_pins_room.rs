//! A generational heap keeps room for its cycles beside pinned objects, and a cycle that
//! failed for room is not chosen again once nothing holds the room any more.
//!
//! Before, the window of a cycle that promotes (the young cycle that follows a full one with
//! nothing old, the first cycle) and of every cycle into the old generation's half started
//! above every stranded object of its half (`crate::pins`: objects a compaction kept in place
//! because they were pinned), and only a full cycle lets a stranded object leave: with pins
//! held across flips, each young cycle's window started above the pins the full cycle before
//! it had kept, and climbed to the last pages of its half; every cycle then failed with
//! `CollectError::NoRoomBesidePins` ("the live objects ... do not fit beside the pinned
//! objects ...") and was chosen again forever, even once every pin was dropped (the unpinned
//! stranded objects stayed: young cycles keep them, and no full cycle was due), until
//! allocations failed with `OutOfMemory` with the window full of garbage (audit probe p06,
//! 150-1200 failed cycles a run).
//!
//! The scenes (deterministic: one mutator, explicit collections; stop-the-world with both
//! remembered sets, and concurrent):
//! - a small byte array pinned in the last eighth of its half (garbage allocated below it),
//!   with ~160 KiB live (more than an eighth of the 1 MiB halves): collections with the pin
//!   held succeed and leave it in place with its bytes; after the pin is dropped, with nothing
//!   pinned, every collection succeeds and the stranded object is gone;
//! - the same with the pin dropped right after the collection that kept it;
//! - `OutOfMemory` counts the old generation among the live bytes;
//! - (concurrent, cards) the young cycle that scans the whole old generation for an unpinned
//!   stranded object counts old slots a young cycle never forwards (references to large
//!   objects): that count does not make the next cycles full (`young_slots_max`);
//! - (concurrent, both remembered sets) an object referenced only from an old one and pinned
//!   while a young cycle from the old generation's half marks, so kept by it right above the
//!   old generation, leaves at the first cycle after its pin is dropped (a young one: the
//!   old slot that refers to it is forwarded), and full cycles run again. Before, a stranded
//!   object above the old generation stayed for good once unpinned (young cycles kept every
//!   stranded object, and no full cycle ran while it lay there: every cycle was young), and
//!   so did the objects pinned during those young cycles: the windows of both halves
//!   climbed above them until the heap ran out of memory with every pin dropped;
//! - (concurrent, both remembered sets) unpinned stranded objects that do not fit beside a
//!   pin of the destination half in the young cycle that would let them leave stay one cycle
//!   more, and leave at the next (into their own half). Before, that cycle failed with
//!   `NoRoomBesidePins`, and so did every collection after it while the pin was held, though
//!   the survivors alone fit.
//!
//! Invariants checked: every collection succeeds, the pinned object never moves while pinned
//! and keeps its bytes, an unpinned one keeps its bytes where it moved (through the old
//! object that refers to it), the live data are intact, and the heap verifies.

mod common;

use std::sync::Arc;

use common::park::Park;
use faultline::{
    AllocError, Capability, GcMode, Generational, Heap, HeapConfig, MarkPoint, Mutator, Pin, Probe,
    Root, TypeId, TypeInfo, Value,
};

const HALF: usize = 1 << 20;
/// Live reference arrays of 512 words (4 KiB) each: 160 KiB, more than the last eighth of a
/// half holds.
const LIVE: usize = 40;

fn config(mode: GcMode, kind: Generational) -> HeapConfig {
    HeapConfig::with_heap_size(HALF).with(|c| {
        c.mode = mode;
        c.generational = kind;
        // Occupancy cycles only when a half is nearly full: objects land at every height.
        c.min_trigger_bytes = HALF;
        c.debug.verify = true;
    })
}

/// The modes to run: stop-the-world with both remembered sets (written pages where WP_ASYNC
/// is available), concurrent with cards (where userfaultfd is).
fn modes(test: &str) -> Vec<(String, HeapConfig)> {
    let mut v = vec![(
        "stw/cards".to_string(),
        config(GcMode::StopTheWorld, Generational::Cards),
    )];
    if Probe::run().supports(Capability::WpAsync) {
        v.push((
            "stw/written-pages".into(),
            config(GcMode::StopTheWorld, Generational::WrittenPages),
        ));
    } else {
        eprintln!("SKIPPED: {test}: written pages (WP_ASYNC unavailable)");
    }
    if common::uffd_or_skip(test) {
        v.push((
            "concurrent/cards".into(),
            config(GcMode::Concurrent, Generational::Cards),
        ));
    }
    v
}

struct Scene {
    heap: Heap,
    vec: TypeId,
    bytes: TypeId,
    live: Root,
}

impl Scene {
    fn new(cfg: HeapConfig) -> (Scene, Mutator) {
        let heap = Heap::new(cfg).unwrap();
        let vec = heap.register_type(TypeInfo::ref_array("vector")).unwrap();
        let bytes = heap.register_type(TypeInfo::byte_array("bytes")).unwrap();
        let mut m = heap.attach();
        let live = common::rooted_arrays(&mut m, vec, LIVE, 511, false);
        for i in 0..LIVE {
            let a = live.get(&m).unwrap().get(i);
            m.local(a).unwrap().set(0, common::fix(1000 + i as i64));
        }
        // The first cycle promotes what it traced: an old generation.
        m.collect().unwrap();
        (
            Scene {
                heap,
                vec,
                bytes,
                live,
            },
            m,
        )
    }

    fn check_live(&self, m: &Mutator, what: &str) {
        let l = self.live.get(m).unwrap();
        for i in 0..LIVE {
            let a = m.local(l.get(i)).unwrap();
            assert_eq!(
                common::unfix(a.get(0)),
                1000 + i as i64,
                "{what}: live array {i}"
            );
        }
    }

    /// A pinned byte array in the last eighth of its half: garbage is allocated until one
    /// lands there. Its pin, its contents and its address.
    fn pin_high(&self, m: &mut Mutator, what: &str) -> (Pin, Vec<u8>, usize) {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 13 + 7) as u8).collect();
        for _ in 0..4000 {
            let b = m.alloc(self.bytes, data.len()).unwrap();
            let (start, _, half) = {
                let p = m.pin(b).unwrap();
                let place = p.place_in_half().unwrap();
                drop(p);
                place
            };
            if start >= half / 8 * 7 {
                m.local(b).unwrap().write_bytes(0, &data);
                let pin = m.pin(b).unwrap();
                let addr = pin.value(m).bits();
                return (pin, data, addr);
            }
            common::garbage(m, self.vec, 16 << 10);
        }
        panic!("{what}: no object landed in the last eighth of its half");
    }

    /// Collections that must all succeed, with `pin` (if any) in place and intact.
    fn collect_n(&self, m: &mut Mutator, n: usize, pin: Option<(&Pin, &[u8], usize)>, what: &str) {
        for k in 0..n {
            if let Err(e) = m.collect() {
                let hist: Vec<_> = self
                    .heap
                    .history()
                    .iter()
                    .map(|c| (c.trigger, c.gen.young))
                    .collect();
                panic!(
                    "{what}: collection {k} failed: {e}; pins {:?}; cycles {hist:?}",
                    self.heap.pin_stats()
                );
            }
            if let Some((p, data, addr)) = pin {
                let v = p.value(m);
                assert_eq!(v.bits(), addr, "{what}: the pinned object moved");
                assert_eq!(m.local(v).unwrap().to_bytes(), data, "{what}: pinned bytes");
            }
            self.check_live(m, what);
            // Some garbage between cycles, as a program makes.
            common::garbage(m, self.vec, 64 << 10);
        }
    }
}

/// A pin held high in a half across collections, then dropped.
#[test]
fn a_pin_held_high_in_a_half_leaves_room_for_every_cycle() {
    for (label, cfg) in modes("a_pin_held_high_in_a_half_leaves_room_for_every_cycle") {
        let (s, mut m) = Scene::new(cfg);
        let (pin, data, addr) = s.pin_high(&mut m, &label);
        s.collect_n(
            &mut m,
            6,
            Some((&pin, &data, addr)),
            &format!("{label}, pinned"),
        );
        drop(pin);
        s.collect_n(&mut m, 4, None, &format!("{label}, unpinned"));
        let st = s.heap.pin_stats();
        assert_eq!(
            (st.pinned_objects, st.stranded_objects),
            (0, 0),
            "{label}: nothing pinned or stranded after the collections: {st:?}"
        );
        // Allocation goes on: twice a half of garbage.
        common::garbage(&mut m, s.vec, 2 * HALF);
        s.check_live(&m, &label);
        assert!(s.heap.history().iter().any(|c| c.gen.young == Some(true)));
        s.heap.verify().unwrap();
    }
}

/// A pinned object stranded high in a half and unpinned right after: with nothing pinned,
/// no collection may fail for room beside pinned objects.
#[test]
fn an_unpinned_stranded_object_does_not_hold_the_window() {
    for (label, cfg) in modes("an_unpinned_stranded_object_does_not_hold_the_window") {
        let (s, mut m) = Scene::new(cfg);
        let (pin, _, _) = s.pin_high(&mut m, &label);
        m.collect().unwrap();
        assert_eq!(s.heap.pin_stats().stranded_objects, 1, "{label}: kept");
        drop(pin);
        s.collect_n(&mut m, 6, None, &format!("{label}, nothing pinned"));
        let st = s.heap.pin_stats();
        assert_eq!(st.stranded_objects, 0, "{label}: {st:?}");
        common::garbage(&mut m, s.vec, 2 * HALF);
        s.check_live(&m, &label);
        s.heap.verify().unwrap();
    }
}

/// `OutOfMemory` counts the old generation's live bytes.
#[test]
fn out_of_memory_counts_the_old_generation() {
    let heap = Heap::new(config(GcMode::StopTheWorld, Generational::Cards)).unwrap();
    let vec = heap.register_type(TypeInfo::ref_array("vector")).unwrap();
    let mut m = heap.attach();
    let table = m.alloc(vec, 1000).unwrap();
    let table = m.root(table);
    let mut kept = 0usize;
    let err = loop {
        match m.alloc(vec, 511) {
            Ok(v) => {
                table.get(&m).unwrap().set(kept, v);
                kept += 1;
                assert!(kept < 1000, "a 1 MiB half held 4 MiB");
            }
            Err(e) => break e,
        }
    };
    let old = heap.old_generation().unwrap().1;
    assert!(old > 0, "the full cycles promoted the live arrays");
    match err {
        AllocError::OutOfMemory { live, capacity, .. } => {
            let arrays = kept * 512 * 8;
            assert!(
                live >= arrays && live <= capacity,
                "live {live} counts the {arrays} bytes of live arrays ({old} old) of {capacity}"
            );
        }
        e => panic!("{e}"),
    }
    heap.verify().unwrap();
}

/// An object pinned while a concurrent young cycle from the old generation's half marks is
/// kept by that cycle above the old generation (stranded between the old generation and the
/// window); once unpinned it leaves at the next cycle, referenced only from an old object,
/// and full cycles run again. Before, no cycle let it leave: young cycles keep stranded
/// objects, and a full cycle from the old half (its source `[old lo, top)`) was never chosen
/// while a stranded object lay above the old generation, so every later cycle was young; the
/// objects pinned during them stayed stranded too, and the windows of both halves climbed
/// above them until no cycle had room (the concurrent generational run of
/// `tests/pinned_shadow_stress.rs` with pins anywhere ran out of memory so).
#[test]
fn an_object_pinned_during_a_young_cycle_leaves_once_unpinned() {
    let test = "an_object_pinned_during_a_young_cycle_leaves_once_unpinned";
    if !common::uffd_or_skip(test) {
        return;
    }
    let kinds = common::gen::remembered_sets(test);
    for kind in kinds {
        let label = format!("concurrent/{kind:?}");
        let park = Arc::new(Park::default());
        let cfg = config(GcMode::Concurrent, kind).with(|c| c.debug.mark_hook = Some(park.hook()));
        let (s, mut m) = Scene::new(cfg);
        s.heap.wait_for_compaction();
        let (lo, hi) = s.heap.old_generation_range().unwrap();
        assert!(hi > lo, "{label}: the first cycle promoted");
        // A young byte array in the window right above the old generation, referenced only
        // from an old array (slot 1 of live array 0), after 16 KiB of young arrays rooted
        // (they are compacted in front of it when it leaves, so that its new place is not
        // its old one, where a slot left unforwarded would still find it).
        let young = m.alloc(s.vec, 4).unwrap();
        let _young = m.root(young);
        for i in 0..4 {
            let a = m.alloc(s.vec, 511).unwrap();
            _young.get(&m).unwrap().set(i, a);
        }
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        let b = m.alloc(s.bytes, data.len()).unwrap();
        m.local(b).unwrap().write_bytes(0, &data);
        let holder = s.live.get(&m).unwrap().get(0);
        assert!(
            common::gen::in_old(&s.heap, holder.bits()),
            "{label}: old holder"
        );
        m.local(holder).unwrap().set(1, b);
        let held = |m: &Mutator| m.local(s.live.get(m).unwrap().get(0)).unwrap().get(1);
        // A young cycle from the old half; `b` is pinned while it marks.
        let flips = s.heap.flips();
        let (pin, addr) = pin_while_marking(&mut m, &park, held);
        s.heap.wait_for_compaction();
        let young = s.heap.history()[flips as usize..]
            .iter()
            .all(|c| c.gen.young == Some(true));
        assert!(young && s.heap.flips() > flips, "{label}: a young cycle");
        assert_eq!(held(&m).bits(), addr, "{label}: the pinned object stayed");
        assert!(
            addr >= hi && !common::gen::in_old(&s.heap, addr),
            "{label}: kept above the old generation"
        );
        let st = s.heap.pin_stats();
        assert_eq!(st.stranded_objects, 1, "{label}: stranded");
        assert_eq!(
            st.young_cycles_stranded_left, 0,
            "{label}: no young cycle let a stranded object leave yet"
        );
        drop(pin);
        // Unpinned: it leaves at the next cycle (the old slot that holds it forwarded), and
        // the cycles that follow include a full one.
        let flips = s.heap.flips();
        m.collect().unwrap();
        s.heap.wait_for_compaction();
        let st = s.heap.pin_stats();
        assert_eq!(st.stranded_objects, 0, "{label}: it left: {st:?}");
        assert_eq!(
            s.heap.history()[flips as usize].gen.young,
            Some(true),
            "{label}: it left in a young cycle (a full cycle always let it leave)"
        );
        assert!(
            s.heap.history()[flips as usize].gen.stranded_leave,
            "{label}: that cycle scanned the whole old generation to let it leave"
        );
        assert_eq!(
            st.young_cycles_stranded_left, 1,
            "{label}: counted as a young cycle that let stranded objects leave: {st:?}"
        );
        assert_ne!(held(&m).bits(), addr, "{label}: it moved");
        assert_eq!(
            m.local(held(&m)).unwrap().to_bytes(),
            data,
            "{label}: its bytes, through its old holder"
        );
        s.heap.verify().unwrap();
        s.collect_n(&mut m, 3, None, &format!("{label}, unpinned"));
        assert_eq!(
            m.local(held(&m)).unwrap().to_bytes(),
            data,
            "{label}: its bytes after more cycles"
        );
        let kinds: Vec<_> = s.heap.history()[flips as usize..]
            .iter()
            .map(|c| c.gen.young)
            .collect();
        assert!(
            kinds.contains(&Some(false)),
            "{label}: a full cycle ran again: {kinds:?}"
        );
        common::garbage(&mut m, s.vec, 2 * HALF);
        s.check_live(&m, &label);
        s.heap.verify().unwrap();
    }
}

/// The young cycle that scans the whole old generation to let an unpinned stranded object
/// leave finds every old slot that refers to anything but an old object, those the
/// remembered set would not name included (here 40 references to large objects, stored
/// before their holder was promoted): they are not the old-to-young references a young cycle
/// forwards in its pauses, so that cycle's count does not decide `young_slots_max`'s full
/// cycles. Before, its count (41) was taken as the next young cycle's, over the bound of 16,
/// and the next four cycles were full.
#[test]
fn a_whole_old_generation_scan_does_not_make_young_cycles_look_long() {
    let test = "a_whole_old_generation_scan_does_not_make_young_cycles_look_long";
    if !common::uffd_or_skip(test) {
        return;
    }
    const MAX: usize = 16;
    const LARGE: usize = 40;
    let park = Arc::new(Park::default());
    let cfg = config(GcMode::Concurrent, Generational::Cards).with(|c| {
        c.young_slots_max = MAX;
        c.debug.mark_hook = Some(park.hook());
    });
    let heap = Heap::new(cfg).unwrap();
    let vec = heap.register_type(TypeInfo::ref_array("vector")).unwrap();
    let bytes = heap.register_type(TypeInfo::byte_array("bytes")).unwrap();
    let mut m = heap.attach();
    let live = common::rooted_arrays(&mut m, vec, LIVE, 511, false);
    // Live array 1 refers to 40 large byte arrays (8 KiB: the large-object threshold).
    for j in 1..=LARGE {
        let l = m.alloc(bytes, 8 << 10).unwrap();
        m.local(live.get(&m).unwrap().get(1)).unwrap().set(j, l);
    }
    // The first cycle promotes what it traced: the arrays are old, their slots clean.
    m.collect().unwrap();
    heap.wait_for_compaction();
    let (_, hi) = heap.old_generation_range().unwrap();
    let holder = live.get(&m).unwrap().get(0);
    assert!(common::gen::in_old(&heap, holder.bits()), "old holder");
    let b = m.alloc(bytes, 1000).unwrap();
    m.local(holder).unwrap().set(1, b);
    let held = |m: &Mutator| m.local(live.get(m).unwrap().get(0)).unwrap().get(1);
    // A young cycle from the old half; `b` is pinned while it marks: kept above the old
    // generation. The next cycle (from the other half) keeps it too.
    let (pin, addr) = pin_while_marking(&mut m, &park, held);
    heap.wait_for_compaction();
    m.collect().unwrap();
    heap.wait_for_compaction();
    assert!(
        addr >= hi && !common::gen::in_old(&heap, addr),
        "kept above the old generation"
    );
    assert_eq!(heap.pin_stats().stranded_objects, 1, "stranded");
    let flips = heap.flips();
    assert!(
        heap.history()
            .iter()
            .all(|c| c.gen.young == Some(true) && c.gen.young_slots_over.is_none()),
        "the scene: young cycles only, none over the bound: {:?}",
        heap.history()
            .iter()
            .map(|c| (c.gen.young, c.gen.old_slots))
            .collect::<Vec<_>>()
    );
    // Unpinned: the next cycle (young, from the old half) scans the whole old generation and
    // lets it leave.
    drop(pin);
    m.collect().unwrap();
    heap.wait_for_compaction();
    let c = heap.history()[flips as usize].clone();
    assert!(
        c.gen.young == Some(true) && c.gen.stranded_leave,
        "{:?}",
        c.gen
    );
    assert_eq!(heap.pin_stats().stranded_objects, 0, "it left");
    assert!(
        c.gen.old_slots > LARGE,
        "it found every old slot that refers to a large object: {:?}",
        c.gen
    );
    assert_eq!(
        c.gen.young_slots_over, None,
        "its count is not a young cycle's pause work: {:?}",
        c.gen
    );
    assert_eq!(c.gen.fallback, 0, "{:?}", c.gen);
    // The next cycle is young, and its remembered set names few slots.
    m.collect().unwrap();
    heap.wait_for_compaction();
    let n = heap.history()[flips as usize + 1].clone();
    assert_eq!(n.gen.young, Some(true), "young cycles go on: {:?}", n.gen);
    assert!(n.gen.old_slots <= MAX, "{:?}", n.gen);
    assert_eq!(m.local(held(&m)).unwrap().to_bytes().len(), 1000);
    heap.verify().unwrap();
}

/// Start a cycle, pin `held(m)` while it marks (parked before its remark), and let the cycle
/// end: the pin and the address pinned.
fn pin_while_marking(
    m: &mut Mutator,
    park: &Park,
    held: impl Fn(&Mutator) -> Value,
) -> (Pin, usize) {
    park.arm(MarkPoint::BeforeRemark);
    m.start_collection().unwrap();
    park.wait(m);
    let pin = m.pin(held(m)).unwrap();
    let addr = pin.value(m).bits();
    park.disarm();
    m.wait_for_cycle().unwrap();
    (pin, addr)
}

/// Unpinned stranded objects that do not fit beside the pins of the destination half in the
/// young cycle that scans the whole old generation to let them leave: that cycle keeps them
/// in place instead of failing, and they leave at a later cycle that has the room.
///
/// The scene (concurrent, 2 MiB halves; deterministic: one mutator, explicit collections,
/// and every allocation made while a cycle is parked in its marking, so that none starts an
/// occupancy cycle), the old generation in half A: 896 KiB of arrays referenced only from an
/// old array are allocated and pinned while a young cycle from A marks, so kept in A right
/// above the old generation (their dead copies take as much room at the start of B); while
/// the next cycle (from B into A, the arrays still pinned) marks, a byte array is allocated
/// and pinned above those copies, in the middle of B, then 400 KiB of survivors: the cycle
/// keeps the byte array there, and puts the survivors in A above the arrays. Once the arrays
/// are unpinned, the young cycle from A (it scans the whole old generation to let them leave)
/// would copy the survivors and the 896 KiB into the largest gap of B beside the pinned byte
/// array (1.1 MiB): they do not fit (1.3 MiB), while the survivors alone do. Before, that
/// cycle failed with `NoRoomBesidePins`, and so did every collection after it (3 of 3: each
/// began with the unpinned arrays, a young cycle from A that let them leave and failed).
#[test]
fn stranded_objects_without_room_to_leave_stay_one_cycle_more() {
    let test = "stranded_objects_without_room_to_leave_stay_one_cycle_more";
    if !common::uffd_or_skip(test) {
        return;
    }
    let kinds = common::gen::remembered_sets(test);
    // Halves of 2 MiB; 224 arrays of 4 KiB (896 KiB), in slots 1..=224 of live array 0
    // (old); 100 arrays of 4 KiB of survivors (400 KiB).
    const HALF2: usize = 2 << 20;
    const WORDS: usize = 511;
    const BYTES: usize = (WORDS + 1) * 8;
    const ARRAYS: usize = 224;
    const YOUNG: usize = 100;
    for kind in kinds {
        let label = format!("concurrent/{kind:?}");
        let park = Arc::new(Park::default());
        let cfg = HeapConfig::with_heap_size(HALF2).with(|c| {
            c.mode = GcMode::Concurrent;
            c.generational = kind;
            c.min_trigger_bytes = HALF2;
            // (Verified by the test between cycles: a concurrent cycle's own verification
            // waits for the next cycle, which the test parks in its marking.)
            c.debug.mark_hook = Some(park.hook());
        });
        let (s, mut m) = Scene::new(cfg);
        s.heap.wait_for_compaction();
        let (lo, hi) = s.heap.old_generation_range().unwrap();
        assert!(hi > lo, "{label}: the first cycle promoted");
        let holder = |m: &Mutator| s.live.get(m).unwrap().get(0);
        assert!(
            common::gen::in_old(&s.heap, holder(&m).bits()),
            "{label}: old holder"
        );
        let held = |m: &Mutator, j: usize| m.local(holder(m)).unwrap().get(j);
        // A young cycle from A; the arrays are allocated and pinned while it marks.
        let flips = s.heap.flips();
        park.arm(MarkPoint::BeforeRemark);
        m.start_collection().unwrap();
        park.wait(&mut m);
        for j in 1..=ARRAYS {
            let a = m.alloc(s.vec, WORDS).unwrap();
            m.local(a).unwrap().set(0, common::fix(7000 + j as i64));
            m.local(holder(&m)).unwrap().set(j, a);
        }
        let pins: Vec<Pin> = (1..=ARRAYS).map(|j| m.pin(held(&m, j)).unwrap()).collect();
        let addrs: Vec<usize> = pins.iter().map(|p| p.value(&m).bits()).collect();
        park.disarm();
        m.wait_for_cycle().unwrap();
        s.heap.wait_for_compaction();
        assert_eq!(s.heap.flips(), flips + 1, "{label}: one cycle");
        assert_eq!(s.heap.history()[flips as usize].gen.young, Some(true));
        assert!(
            addrs
                .iter()
                .all(|&a| a >= hi && !common::gen::in_old(&s.heap, a)),
            "{label}: kept above the old generation"
        );
        assert_eq!(s.heap.pin_stats().stranded_objects, ARRAYS, "{label}");
        // B is current: a young cycle from it; while it marks, 1 MiB of garbage, a byte
        // array pinned in the middle of B, then the survivors. The cycle keeps the byte array
        // (stranded) and the arrays.
        let flips = s.heap.flips();
        park.arm(MarkPoint::BeforeRemark);
        m.start_collection().unwrap();
        park.wait(&mut m);
        let b = m.alloc(s.bytes, 1000).unwrap();
        let pin_b = m.pin(b).unwrap();
        let b_addr = pin_b.value(&m).bits();
        let (b_start, b_end, half) = pin_b.place_in_half().unwrap();
        let young = m.alloc(s.vec, YOUNG).unwrap();
        let young = m.root(young);
        for i in 0..YOUNG {
            let a = m.alloc(s.vec, WORDS).unwrap();
            m.local(a).unwrap().set(0, common::fix(9000 + i as i64));
            young.get(&m).unwrap().set(i, a);
        }
        park.disarm();
        m.wait_for_cycle().unwrap();
        s.heap.wait_for_compaction();
        assert_eq!(s.heap.flips(), flips + 1, "{label}: one cycle");
        assert_eq!(s.heap.history()[flips as usize].gen.young, Some(true));
        assert_eq!(
            pin_b.value(&m).bits(),
            b_addr,
            "{label}: the byte array stayed"
        );
        assert_eq!(
            s.heap.pin_stats().stranded_objects,
            ARRAYS + 1,
            "{label}: the arrays and the byte array stranded"
        );
        s.heap.verify().unwrap();
        // The largest gap beside the byte array holds the survivors, not the arrays too.
        let gap = b_start.max(half - b_end) / 4096 * 4096;
        let survivors = YOUNG * BYTES + 4096;
        assert!(
            survivors + ARRAYS * BYTES > gap && survivors + 4096 < gap,
            "{label}: the scene: byte array at {b_start}..{b_end} of {half}"
        );
        // Unpinned: both collections succeed; the arrays stay at the first (no room beside
        // the byte array), and leave at the second (into A: their own pages are room there);
        // the byte array stays. (Not more with the byte array pinned: the full cycle due
        // next, from A, would need room for every live object, 1.4 MiB, beside it.)
        drop(pins);
        let flips = s.heap.flips();
        let left0 = s.heap.pin_stats().young_cycles_stranded_left;
        for k in 0..2u64 {
            // (A concurrent cycle that fails reports it on stderr: `collect` returns Ok.)
            m.collect().unwrap();
            let done = s.heap.flips() - flips;
            if done != k + 1 {
                let hist: Vec<_> = s.heap.history()[flips as usize..]
                    .iter()
                    .map(|c| (c.trigger, c.gen.young, c.gen.stranded_leave))
                    .collect();
                panic!(
                    "{label}: collection {k} after the unpin did not flip (NoRoomBesidePins, \
                     see stderr); pins {:?}; cycles since the unpin {hist:?}",
                    s.heap.pin_stats()
                );
            }
            s.heap.wait_for_compaction();
            assert_eq!(
                pin_b.value(&m).bits(),
                b_addr,
                "{label}: the byte array stayed"
            );
            if k == 0 {
                let st = s.heap.pin_stats();
                let c = s.heap.history()[flips as usize].clone();
                assert!(
                    c.gen.young == Some(true) && c.gen.stranded_leave && c.gen.stranded_stayed,
                    "{label}: the first cycle after the unpin: {:?}",
                    c.gen
                );
                assert_eq!(
                    (st.stranded_objects, st.young_cycles_stranded_left),
                    (ARRAYS + 1, left0),
                    "{label}: the arrays stayed one cycle more: {st:?}"
                );
                for (j, &a) in addrs.iter().enumerate() {
                    assert_eq!(held(&m, j + 1).bits(), a, "{label}: array {} stayed", j + 1);
                }
            }
        }
        let st = s.heap.pin_stats();
        assert_eq!(st.stranded_objects, 1, "{label}: the arrays left: {st:?}");
        for j in 1..=ARRAYS {
            let a = held(&m, j);
            assert_ne!(a.bits(), addrs[j - 1], "{label}: array {j} moved");
            assert_eq!(
                common::unfix(m.local(a).unwrap().get(0)),
                7000 + j as i64,
                "{label}: array {j}, through its old holder"
            );
        }
        for i in 0..YOUNG {
            let a = young.get(&m).unwrap().get(i);
            assert_eq!(common::unfix(m.local(a).unwrap().get(0)), 9000 + i as i64);
        }
        s.check_live(&m, &label);
        s.heap.verify().unwrap();
        drop(pin_b);
        s.collect_n(&mut m, 3, None, &format!("{label}, nothing pinned"));
        s.heap.verify().unwrap();
    }
}

//! A mutator fault fills the unclaimed pages of its group with its own
//! (`HeapConfig::fault_group_pages`, copy strategy): with the compaction held back
//! (`DebugConfig::compaction_delay`, so only the reader's faults fill pages), reading a list
//! down through memory (built from its tail) and reading objects at random both take fewer
//! faults than pages, the pages filled beside a fault's own are counted in
//! `FaultBreakdown::neighbours`, and every value read is intact; with groups of one page every
//! page is a fault of its own.

mod common;
use common::*;
use faultline::{FaultMode, GcMode, Heap, HeapConfig, Strategy, Value};
use std::time::Duration;

const N: i64 = 20_000;

struct Read {
    faults: u64,
    neighbours: u64,
    pages_by_fault: u64,
}

/// One heap, one cycle whose compaction starts 300 ms after its flip: build `N` objects with
/// a garbage pair between them (every page moves), collect, and after the flip read them
/// (`random`: every other string of an array of `N`, in a scrambled order, then all; else a
/// list from its head, which lies at the top: it was built from its tail). Checks the values.
fn read(group: u32, faults: FaultMode, random: bool) -> Read {
    let heap = Heap::new(HeapConfig::with_heap_size(16 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = Strategy::Copy;
        c.faults = faults;
        c.gc_threads = 1;
        c.min_trigger_bytes = 16 << 20; // no cycle but the one started below
        c.fault_group_pages = group;
        c.debug.compaction_delay = Some(Duration::from_millis(300));
    }))
    .unwrap();
    assert_eq!(heap.mode_info().mode, GcMode::Concurrent);
    let t = register(&heap);
    let mut m = heap.attach();
    let root = if random {
        let v = m.alloc(t.vector, N as usize).unwrap();
        let table = m.root(v);
        for i in 0..N {
            m.alloc(t.pair, 0).unwrap();
            let s = m.alloc(t.string, 8).unwrap();
            m.local(s)
                .unwrap()
                .write_bytes(0, &(i as u64).to_le_bytes());
            table.get(&m).unwrap().set(i as usize, s);
        }
        table
    } else {
        m.push(Value::NULL);
        for i in (0..N).rev() {
            m.alloc(t.pair, 0).unwrap();
            let tail = m.pop().unwrap();
            m.push(fix(i));
            m.push(tail);
            cons(&mut m, &t);
        }
        let head = m.pop().unwrap();
        m.root(head)
    };
    let before = root.value(&m);
    let b0 = heap.fault_breakdown();
    m.start_collection().unwrap();
    while root.value(&m).bits() == before.bits() {
        m.safepoint();
        std::thread::sleep(Duration::from_micros(200));
    }
    if random {
        let table = root.get(&m).unwrap();
        let read_at = |i: usize| {
            let s = m.local(table.get(i)).unwrap();
            let mut b = [0u8; 8];
            s.read_bytes(0, &mut b);
            assert_eq!(u64::from_le_bytes(b), i as u64, "string {i}");
        };
        // Every other string, scattered (a stride coprime with N), then every one.
        let n = N as usize;
        for j in 0..n / 2 {
            read_at((j * 7919) % n);
        }
        for i in 0..n {
            read_at(i);
        }
    } else {
        assert_eq!(
            read_list(&m, root.value(&m)),
            (0..N).collect::<Vec<_>>(),
            "{faults:?}"
        );
    }
    heap.wait_for_compaction();
    let b1 = heap.fault_breakdown();
    let last = heap.history().last().cloned().expect("a cycle");
    assert_eq!(heap.history().len(), 1, "one cycle");
    drop(root);
    drop(m);
    let r = Read {
        faults: b1.filled - b0.filled,
        neighbours: b1.neighbours - b0.neighbours,
        pages_by_fault: last.pages_by_fault,
    };
    eprintln!(
        "group {group}, {faults:?}, random {random}: {} faults, {} neighbour pages, {} pages by faults of {}",
        r.faults, r.neighbours, r.pages_by_fault, last.pages_filled
    );
    r
}

#[test]
fn a_fault_fills_the_free_pages_of_its_group() {
    if !uffd_or_skip("a_fault_fills_the_free_pages_of_its_group") {
        return;
    }
    for faults in [FaultMode::Sigbus, FaultMode::Thread] {
        for random in [false, true] {
            let r = read(4, faults, random);
            // Every page was filled by a fault (the compaction was held back), each fault's
            // own page or one beside it.
            assert_eq!(r.faults + r.neighbours, r.pages_by_fault, "{faults:?}");
            assert!(r.pages_by_fault > 100, "the read met unfilled pages");
            // A walk down through memory meets each group at its top page and takes the pages
            // below it; reads at random take the group around the page. Groups of 4: at most
            // about a quarter of the pages, plus the groups' parts other faults took first.
            assert!(
                r.faults * 2 < r.pages_by_fault,
                "{faults:?} random {random}: {} faults for {} pages",
                r.faults,
                r.pages_by_fault
            );
        }
    }
}

#[test]
fn groups_of_one_page_fill_one_page_a_fault() {
    if !uffd_or_skip("groups_of_one_page_fill_one_page_a_fault") {
        return;
    }
    let r = read(1, FaultMode::Sigbus, true);
    assert_eq!(r.neighbours, 0);
    assert_eq!(r.faults, r.pages_by_fault);
}

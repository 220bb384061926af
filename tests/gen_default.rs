//! Issue 15: the generational mode is the default "once it wins". It does not yet (see
//! BENCHMARKS.md), so a default heap is not generational and its mode info says why, on the
//! `generational:` line; a generational heap's line names its remembered set instead.
//!
//! Invariant: every heap's mode info has exactly one `generational:` line.

use faultline::{Generational, Heap, HeapConfig};

fn generational_line(heap: &Heap) -> String {
    let reasons = heap.mode_info().reasons;
    let lines: Vec<&String> = reasons
        .iter()
        .filter(|r| r.starts_with("generational:"))
        .collect();
    assert_eq!(lines.len(), 1, "one generational line in {reasons:#?}");
    lines[0].clone()
}

#[test]
fn a_default_heap_is_not_generational_and_says_why() {
    let heap = Heap::new(HeapConfig::with_heap_size(8 << 20)).unwrap();
    assert_eq!(heap.mode_info().generational, Generational::Off);
    assert!(!heap.mode_info().label().contains("gen"));
    let line = generational_line(&heap);
    assert!(
        line.starts_with("generational: off (the default until"),
        "{line}"
    );
    assert!(line.contains("BENCHMARKS.md"), "{line}");
}

#[test]
fn a_generational_heap_names_its_remembered_set() {
    let heap = Heap::new(
        HeapConfig::with_heap_size(8 << 20).with(|c| c.generational = Generational::Cards),
    )
    .unwrap();
    assert_eq!(heap.mode_info().generational, Generational::Cards);
    let line = generational_line(&heap);
    assert!(line.starts_with("generational: cards (requested"), "{line}");
}

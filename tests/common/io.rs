//! What the pinned-I/O tests share: the test stream's bytes, a mutator that keeps cycles
//! coming while another one does blocking I/O, and a scratch directory for their files.
//!
//! Invariants: `churn` holds no `Value` across an allocation (its structures live on its value
//! stack); a [`scratch`] directory is this process's alone (created fresh, never reused) and
//! is removed with what it holds when dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use faultline::Heap;

use super::{register, tree};

/// A fresh directory of this process's own under the temporary directory (a name nobody
/// used yet, created by this call: the torture environments run the tests as `nobody` after
/// root, whose leftovers must never be written into), removed with its files when dropped.
pub fn scratch(what: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("faultline-{what}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("creating a scratch directory for {what}: {e}"))
}

/// The byte at position `i` of the test stream.
pub fn byte_at(i: u64) -> u8 {
    let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i >> 7);
    (x >> 24) as u8
}

/// Keep a changing live structure and garbage coming until `stop`, so cycles run.
pub fn churn(heap: Heap, stop: Arc<AtomicBool>) {
    let mut m = heap.attach_named("churn");
    let t = register(&heap);
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tree(&mut m, &t, 9, round);
        for _ in 0..3000 {
            m.alloc(t.pair, 0).unwrap();
        }
        if m.stack_len() > 8 {
            m.stack_truncate(4);
        }
        round += 1;
        if round.is_multiple_of(2) {
            let _ = m.start_collection();
        }
    }
}
